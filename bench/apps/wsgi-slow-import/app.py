"""A WSGI app whose import is slow on purpose and whose requests are cheap (bench/python.mjs).

Importing this module does real, deterministic work, the kind a big app does at start-up:
  1. compiles COUNT_REGEXES distinct regular expressions (re's compiler is pure Python, so this
     is what importing a framework with many routes and validators costs);
  2. builds a table: the primes below SIEVE_LIMIT (a bytearray sieve), then a dict of
     TABLE_ROWS rows keyed by a short string, each row a tuple derived from the primes;
  3. folds everything into one checksum (so every server must compute the same table).
The sizes were calibrated to ~0.5 s of import under Debian 12's CPython 3.11 on the bench
machine (2 cores); Pyodide's CPython (wasm) takes longer, see the bench output.

A request does one dict lookup and one regex match and answers a short text line with the
checksum and how long this process's import took (IMPORT_MS, measured by the module itself).
"""
import re
import time

_t0 = time.perf_counter()

COUNT_REGEXES = 600
SIEVE_LIMIT = 1_000_000
TABLE_ROWS = 100_000

# 1. regexes: a route table and validators, all distinct (re's cache would not help)
PATTERNS = []
for i in range(COUNT_REGEXES):
    PATTERNS.append(re.compile(
        r"^/api/v%d/(?P<kind>item|user|order|tag%d)/(?P<id>[0-9]{1,%d})(?:/(?P<sub>[a-z_]{2,%d}))?/?(?:\?(?P<q>[^#]*))?$"
        % (i % 7 + 1, i, i % 9 + 3, i % 11 + 4),
        re.IGNORECASE if i % 3 == 0 else 0,
    ))
ROUTE = PATTERNS[COUNT_REGEXES // 2]

# 2. a table built from a prime sieve
sieve = bytearray([1]) * SIEVE_LIMIT
sieve[0] = sieve[1] = 0
for p in range(2, int(SIEVE_LIMIT ** 0.5) + 1):
    if sieve[p]:
        sieve[p * p :: p] = bytes(len(range(p * p, SIEVE_LIMIT, p)))
PRIMES = [i for i in range(SIEVE_LIMIT) if sieve[i]]
del sieve

TABLE = {}
_n = len(PRIMES)
for i in range(TABLE_ROWS):
    p = PRIMES[(i * 7919) % _n]
    q = PRIMES[(i * 104729 + 13) % _n]
    TABLE["k%05x" % i] = (p, q, (p * q) % 1_000_003, format(p ^ q, "x"))

# 3. one checksum over all of it
_acc = 0
for key in sorted(TABLE)[:: 97]:
    p, q, m, h = TABLE[key]
    _acc = (_acc * 31 + m + len(h)) % 1_000_000_007
CHECKSUM = "%d/%d/%d/%d" % (len(PATTERNS), len(PRIMES), len(TABLE), _acc)

IMPORT_MS = (time.perf_counter() - _t0) * 1000.0


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    row = TABLE.get("k%05x" % (len(path) * 977 % TABLE_ROWS))
    m = ROUTE.match("/api/v%d/item/%d" % (COUNT_REGEXES // 2 % 7 + 1, row[2] % 1000))
    body = ("slow-import ok checksum=%s row=%s route=%s import_ms=%.1f\n" % (CHECKSUM, row[3], m.group("id") if m else "-", IMPORT_MS)).encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]

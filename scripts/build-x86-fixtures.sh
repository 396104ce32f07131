#!/usr/bin/env bash
# Builds the x86 test programs from test/fixtures/x86/ into test/fixtures/build/x86/ (git-ignored):
#   *.S       GNU as (64-bit), linked static with ld; a "# link: FLAGS" line in the source
#             replaces the default "-z separate-code"
#   hello.c   musl-gcc -static -O2 (a clean program) and gcc -O2 (hello-dynamic: glibc, dynamic)
#   busybox   a copy of Debian's busybox-static (/bin/busybox), when installed
# Idempotent: an output is rebuilt only when it is missing or older than its source or this
# script. Safe to run from parallel test workers (flock). Needs binutils, musl-tools, gcc.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
SRC="$ROOT/test/fixtures/x86"
OUT="$ROOT/test/fixtures/build/x86"
SELF="$ROOT/scripts/build-x86-fixtures.sh"
mkdir -p "$OUT"

need() {
  command -v "$1" >/dev/null || { echo "build-x86-fixtures: $1 not found (apt-get install $2)" >&2; exit 1; }
}
need as binutils
need ld binutils
need musl-gcc musl-tools
need gcc gcc

exec 9>"$OUT/.lock"
flock 9

# stale OUTPUT SOURCE: true when OUTPUT must be (re)built
stale() {
  [ ! -e "$1" ] || [ "$2" -nt "$1" ] || [ "$SELF" -nt "$1" ]
}

built=0
for src in "$SRC"/*.S; do
  name="$(basename "$src" .S)"
  out="$OUT/$name"
  stale "$out" "$src" || continue
  flags="$(sed -n 's/^# link: //p' "$src" | head -n 1)"
  [ -n "$flags" ] || flags="-z separate-code"
  as --64 -o "$out.o" "$src"
  # shellcheck disable=SC2086 # flags are words
  ld -static $flags -o "$out.tmp" "$out.o"
  rm -f "$out.o"
  mv -f "$out.tmp" "$out"
  built=$((built + 1))
done

if stale "$OUT/hello" "$SRC/hello.c"; then
  musl-gcc -static -O2 -o "$OUT/hello.tmp" "$SRC/hello.c"
  mv -f "$OUT/hello.tmp" "$OUT/hello"
  built=$((built + 1))
fi
if stale "$OUT/hello-dynamic" "$SRC/hello.c"; then
  gcc -O2 -o "$OUT/hello-dynamic.tmp" "$SRC/hello.c"
  mv -f "$OUT/hello-dynamic.tmp" "$OUT/hello-dynamic"
  built=$((built + 1))
fi
if [ -x /bin/busybox ] && stale "$OUT/busybox" /bin/busybox; then
  cp /bin/busybox "$OUT/busybox.tmp"
  mv -f "$OUT/busybox.tmp" "$OUT/busybox"
  built=$((built + 1))
fi

[ "$built" -eq 0 ] || echo "build-x86-fixtures: built $built programs in ${OUT#"$ROOT"/}" >&2

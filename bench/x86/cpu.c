/*
 * CPU-bound work for bench/x86.mjs: emulated (Zerocell's x86 engine) vs native time.
 *
 *   cpu [ROUNDS] [PHASES]      PHASES: any of "s" (sieve), "m" (mixing), "a" (ALU); default "sma"
 *
 * Per round:
 *   s  sieve of Eratosthenes over 4 MB of bytes: byte stores in strided loops (memory-store heavy);
 *   m  SHA-256-style mixing over a 1 MB array of 32-bit words: 4 passes, each word read, mixed
 *      with its neighbours through rotates/xors/adds and stored back (loads + ALU + stores);
 *   a  ALU only: a 64-bit xorshift/multiply chain in registers, no memory traffic.
 * Prints one checksum line, the same natively and emulated (the bench compares them).
 * Static, no system calls beyond malloc's and one write: built with musl-gcc -static -O2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIEVE_N (4u << 20)
#define WORDS (1u << 18) /* 1 MB of uint32 */
#define ALU_STEPS (4u << 20)

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static uint64_t sieve(unsigned char *s)
{
    memset(s, 0, SIEVE_N + 1);
    uint64_t primes = 0;
    for (uint32_t i = 2; i <= SIEVE_N; i++) {
        if (s[i]) continue;
        primes += i;
        for (uint64_t j = (uint64_t)i * i; j <= SIEVE_N; j += i) s[j] = 1;
    }
    return primes;
}

static uint64_t mix(uint32_t *w, uint32_t seed)
{
    uint32_t x = seed | 1;
    for (uint32_t i = 0; i < WORDS; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        w[i] = x;
    }
    for (int pass = 0; pass < 4; pass++) {
        uint32_t a = 0x6a09e667u ^ (uint32_t)pass, e = 0x510e527fu;
        for (uint32_t i = 0; i < WORDS; i++) {
            uint32_t v = w[i], p = w[(i + WORDS - 15) & (WORDS - 1)], q = w[(i + WORDS - 2) & (WORDS - 1)];
            uint32_t s0 = rotr(p, 7) ^ rotr(p, 18) ^ (p >> 3);
            uint32_t s1 = rotr(q, 17) ^ rotr(q, 19) ^ (q >> 10);
            uint32_t ch = (e & v) ^ (~e & a);
            uint32_t t = v + s0 + s1 + ch + 0x428a2f98u;
            a = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            a += t;
            e = e + (t ^ rotr(e, 6));
            w[i] = t ^ a;
        }
    }
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < WORDS; i += 64) h = (h ^ w[i]) * 1099511628211ull;
    return h;
}

static uint64_t alu(uint64_t x)
{
    uint64_t acc = 0;
    for (uint32_t i = 0; i < ALU_STEPS; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        acc += (x * 0x9e3779b97f4a7c15ull) >> (x & 31);
    }
    return acc ^ x;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 1;
    const char *phases = argc > 2 ? argv[2] : "sma";
    unsigned char *s = malloc(SIEVE_N + 1);
    uint32_t *w = malloc(WORDS * sizeof *w);
    if (s == NULL || w == NULL) return 1;
    uint64_t total = 0;
    for (long r = 0; r < rounds; r++) {
        if (strchr(phases, 's')) total += sieve(s);
        if (strchr(phases, 'm')) total = total * 31 + mix(w, 2463534242u + 2u * (uint32_t)r);
        if (strchr(phases, 'a')) total += alu(88172645463325252ull + (uint64_t)r);
    }
    printf("cpu rounds=%ld phases=%s checksum=%016llx\n", rounds, phases, (unsigned long long)total);
    return 0;
}

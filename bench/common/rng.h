/*
 * bench/common/rng.h - the benchmarks' pseudo-random numbers: splitmix64
 * (Steele, Lea and Flood).  Its finaliser alone (bench_mix64) also serves as
 * a hash, so that a stream can be derived from (seed, kind, index) without
 * state: radix_bench's and rpc_bench's token streams, gsp's prompts,
 * trace_replay's expansion of block hashes into tokens, the reference
 * engine's weights.  Every recorded result depends on these exact bits.
 *
 * Header-only: inlined into the hot loops that generate tokens.  The tests
 * have their own (tests/harness/prng.h): neither side depends on the other.
 */
#ifndef BENCH_COMMON_RNG_H
#define BENCH_COMMON_RNG_H

#include <stdint.h>

/* The splitmix64 finaliser. */
static inline uint64_t bench_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* splitmix64 generator: advances *s by the golden gamma, returns the mix. */
static inline uint64_t bench_rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return bench_mix64(*s);
}

#endif

/*
 * tests/harness/prng.h - the tests' pseudo-random numbers: splitmix64
 * (Steele, Lea and Flood), whose whole state is one uint64_t, so that a
 * failing property test is replayed from the seed it prints.
 *
 * Header-only, so that tests without a daemon use it without linking the
 * harness.  The benches have their own (bench/common/rng.h): tests do not
 * depend on bench/ and the benches not on tests/.
 */
#ifndef PC_TESTS_PRNG_H
#define PC_TESTS_PRNG_H

#include <stdint.h>

/* Advance *s by the golden gamma and return the mix of the new state. */
static inline uint64_t test_rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

#endif /* PC_TESTS_PRNG_H */

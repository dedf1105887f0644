/*
 * tests/harness/client_check.h - what the end-to-end tests that drive the
 * daemon through libprefixcache share: the assertion on a pc_client call
 * (code, name, and the daemon's own message on failure) and the
 * deterministic prompts their engines write.  Header-only; Criterion's
 * assertions, so test workers only.
 */
#ifndef PC_TESTS_CLIENT_CHECK_H
#define PC_TESTS_CLIENT_CHECK_H

#include <criterion/criterion.h>

#include <stddef.h>
#include <stdint.h>

#include "proto/errors.h"
#include "rpc/client.h"

/* expr (a pc_client call on c) returned want; else the line, both codes
 * by name, and pc_client_last_error(c). */
#define RC_EQ(c, expr, want)                                                   \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        cr_assert_eq(rc_, (want), "line %d: %s = %d (%s), want %d (%s); %s",   \
                     __LINE__, #expr, rc_, pc_errname(rc_), (int)(want),       \
                     pc_errname(want), pc_client_last_error(c));               \
    } while (0)

/* Deterministic prompt: distinct per seed, never token 0. */
static inline void hd_prompt(uint32_t *t, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        t[i] = seed * 100003u + (uint32_t)i + 1u;
}

#endif /* PC_TESTS_CLIENT_CHECK_H */

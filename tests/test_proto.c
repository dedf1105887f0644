/*
 * tests/test_proto.c - the error table (proto/proto.h, proto/errors.c).
 *
 * The codes travel on the wire, so the table must stay a set of distinct
 * non-positive numbers with a message and a symbolic name each.
 */
#include <criterion/criterion.h>

#include <stddef.h>
#include <string.h>

#include "proto/proto.h"

typedef struct err_row {
    const char *name; /* "PC_E_INVAL" */
    int value;
    const char *msg;
} err_row;

static const err_row rows[] = {
#define ROW(name, value, msg) {"PC_E_" #name, (value), (msg)},
    PC_ERRNO_MAP(ROW)
#undef ROW
};

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

Test(proto, codes_are_distinct_and_non_positive)
{
    cr_assert_gt(N_ROWS, 1);
    cr_assert_eq(rows[0].value, 0, "PC_E_OK must be 0");
    cr_assert_eq(PC_E_OK, 0);
    for (size_t i = 0; i < N_ROWS; i++) {
        cr_assert_leq(rows[i].value, 0, "%s = %d is positive", rows[i].name,
                      rows[i].value);
        for (size_t j = i + 1; j < N_ROWS; j++)
            cr_assert_neq(rows[i].value, rows[j].value,
                          "%s and %s share the value %d", rows[i].name,
                          rows[j].name, rows[i].value);
    }
}

Test(proto, enum_values_match_the_table)
{
    /* The enum is generated from the same table; spot-check the contract
     * that other rooms rely on (codes are stable: never renumbered). */
    cr_assert_eq(PC_E_INVAL, -1);
    cr_assert_eq(PC_E_NOMEM, -2);
    cr_assert_eq(PC_E_RANGE, -3);
    cr_assert_eq(PC_E_NOTLOCKED, -4);
    cr_assert_eq(PC_E_CORRUPT, -5);
}

Test(proto, strerror_is_non_empty_for_every_code)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        const char *s = pc_strerror(rows[i].value);
        cr_assert_not_null(s, "%s", rows[i].name);
        cr_assert_gt(strlen(s), 0, "%s has an empty message", rows[i].name);
        cr_assert_str_eq(s, rows[i].msg, "%s", rows[i].name);
        cr_assert_str_neq(s, "unknown error", "%s", rows[i].name);
    }
}

Test(proto, strerror_of_unknown_code)
{
    const int strangers[] = {1, 42, -1000, -19, 0x7fffffff, -0x7fffffff - 1};
    for (size_t i = 0; i < sizeof(strangers) / sizeof(strangers[0]); i++) {
        int c = strangers[i];
        int known = 0;
        for (size_t j = 0; j < N_ROWS; j++)
            known |= rows[j].value == c;
        if (known)
            continue; /* the table grew to cover it: not a stranger */
        cr_assert_str_eq(pc_strerror(c), "unknown error", "code %d", c);
        cr_assert_not_null(pc_errname(c), "code %d", c);
        cr_assert_gt(strlen(pc_errname(c)), 0, "code %d", c);
    }
}

Test(proto, errname_round_trip)
{
    cr_assert_str_eq(pc_errname(PC_E_INVAL), "PC_E_INVAL");
    cr_assert_str_eq(pc_errname(PC_E_OK), "PC_E_OK");
    cr_assert_str_eq(pc_errname(PC_E_NOTLOCKED), "PC_E_NOTLOCKED");
    for (size_t i = 0; i < N_ROWS; i++) {
        const char *name = pc_errname(rows[i].value);
        cr_assert_not_null(name);
        cr_assert_str_eq(name, rows[i].name);
        /* name -> value: the name identifies exactly one row */
        size_t hits = 0;
        for (size_t j = 0; j < N_ROWS; j++)
            if (strcmp(rows[j].name, name) == 0) {
                hits++;
                cr_assert_eq(rows[j].value, rows[i].value);
            }
        cr_assert_eq(hits, 1, "%s", name);
    }
}

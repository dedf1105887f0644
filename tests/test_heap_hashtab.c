/*
 * tests/test_heap_hashtab.c - proto/heap.h and proto/hashtab.h, the heap
 * and the open-addressing deletion that radix/ and cache/ share.
 *
 * Random operations against naive references (an array scanned for its
 * minimum; a list of live keys), with pc_heap_check / pc_hashtab_check
 * after every operation, and each checker shown to catch the corruption it
 * is for.  PC_DS_SEED=<n> changes the seed.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/hashtab.h"
#include "proto/heap.h"
#include "proto/proto.h"

static uint64_t rng;

static uint64_t rnd(void)
{
    uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }

static void seed(void)
{
    const char *s = getenv("PC_DS_SEED");
    rng = s ? strtoull(s, NULL, 0) : 12345;
    cr_log_info("PC_DS_SEED=%" PRIu64, rng);
}

/* ---- heap ------------------------------------------------------------------ */

typedef struct item {
    uint64_t key, tie; /* ordered by (key, tie), as the radix policies are */
    uint32_t pos;
    bool in;
} item;

static bool item_before(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return x->key != y->key ? x->key < y->key : x->tie < y->tie;
}

static const pc_heap_ops item_heap = {item_before, offsetof(item, pos)};

#define NITEMS 300

/* The item the reference says goes first: the minimum of those in. */
static item *ref_min(item *it)
{
    item *m = NULL;
    for (int i = 0; i < NITEMS; i++)
        if (it[i].in && (!m || item_before(&it[i], m)))
            m = &it[i];
    return m;
}

Test(heap, random_ops_against_a_scan)
{
    seed();
    static item it[NITEMS];
    void *v[NITEMS + 1];
    pc_heap h = {v, 0};
    for (int i = 0; i < NITEMS; i++)
        it[i] = (item){below(50), (uint64_t)i, 0, false};
    cr_assert_null(pc_heap_top(&h));
    for (int op = 0; op < 200000; op++) {
        item *x = &it[below(NITEMS)];
        switch (below(4)) {
        case 0: /* push or remove */
            if (x->in)
                pc_heap_remove(&h, &item_heap, x);
            else
                pc_heap_push(&h, &item_heap, x);
            x->in = !x->in;
            cr_assert_eq(x->pos != 0, x->in, "op %d: position %u", op, x->pos);
            break;
        case 1: /* a key changes either way */
            x->key = below(50);
            if (x->in)
                pc_heap_fix(&h, &item_heap, x);
            break;
        case 2: /* pop the top */
            if (h.n) {
                item *t = pc_heap_top(&h);
                cr_assert_eq(t, ref_min(it), "op %d: wrong top", op);
                pc_heap_remove(&h, &item_heap, t);
                t->in = false;
            }
            break;
        default:
            if (below(100) == 0) {
                pc_heap_clear(&h, &item_heap);
                for (int i = 0; i < NITEMS; i++) {
                    cr_assert_eq(it[i].pos, 0);
                    it[i].in = false;
                }
            }
        }
        cr_assert_eq(pc_heap_check(&h, &item_heap, "test"), 0, "op %d", op);
        cr_assert_eq(pc_heap_top(&h), ref_min(it), "op %d: top", op);
    }
}

Test(heap, check_catches_disorder_and_stale_positions)
{
    item a = {1, 0, 0, false}, b = {2, 0, 0, false}, c = {3, 0, 0, false};
    void *v[4];
    pc_heap h = {v, 0};
    pc_heap_push(&h, &item_heap, &b);
    pc_heap_push(&h, &item_heap, &a);
    pc_heap_push(&h, &item_heap, &c);
    cr_assert_eq(pc_heap_top(&h), &a);
    cr_assert_eq(pc_heap_check(&h, &item_heap, "test"), 0);
    a.key = 9; /* changed without a fix */
    cr_assert_eq(pc_heap_check(&h, &item_heap, "test (expected)"), PC_E_CORRUPT);
    pc_heap_fix(&h, &item_heap, &a);
    cr_assert_eq(pc_heap_check(&h, &item_heap, "test"), 0);
    cr_assert_eq(pc_heap_top(&h), &b);
    b.pos = 3; /* a stale position */
    cr_assert_eq(pc_heap_check(&h, &item_heap, "test (expected)"), PC_E_CORRUPT);
}

/* ---- hashtab --------------------------------------------------------------- */

typedef struct slot {
    uint32_t key; /* 0: empty */
    uint32_t val;
} slot;

static bool slot_empty(const void *s) { return ((const slot *)s)->key == 0; }

/* A poor hash on purpose: long runs of colliding homes, and wrap-around. */
static uint32_t slot_hash(const void *ctx, const void *s)
{
    (void)ctx;
    return ((const slot *)s)->key % 7 + 60;
}

static const pc_hashtab_ops slot_table = {sizeof(slot), slot_empty, slot_hash};

#define CAP 64u

static uint32_t find(const slot *t, uint32_t key)
{
    slot probe = {key, 0};
    for (uint32_t i = slot_hash(NULL, &probe) & (CAP - 1); t[i].key;
         i = (i + 1) & (CAP - 1))
        if (t[i].key == key)
            return i;
    return UINT32_MAX;
}

static void put(slot *t, uint32_t key, uint32_t val)
{
    slot probe = {key, val};
    uint32_t i = slot_hash(NULL, &probe) & (CAP - 1);
    while (t[i].key)
        i = (i + 1) & (CAP - 1);
    t[i] = probe;
}

Test(hashtab, random_inserts_and_deletes_against_a_list)
{
    seed();
    slot t[CAP] = {{0, 0}};
    bool live[200] = {false};
    uint32_t n = 0, count;
    for (int op = 0; op < 200000; op++) {
        uint32_t key = 1 + below(199);
        if (live[key]) {
            uint32_t i = find(t, key);
            cr_assert_neq(i, UINT32_MAX, "op %d: key %u lost", op, key);
            cr_assert_eq(t[i].val, key * 3, "op %d: value moved apart", op);
            pc_hashtab_delete(t, CAP - 1, i, &slot_table, NULL);
            live[key] = false;
            n--;
        } else if (n < 3 * CAP / 4) {
            put(t, key, key * 3);
            live[key] = true;
            n++;
        }
        cr_assert_eq(pc_hashtab_check(t, CAP, &slot_table, NULL, &count, "test"),
                     0, "op %d", op);
        cr_assert_eq(count, n, "op %d: %u entries, %u live", op, count, n);
        for (uint32_t k = 1; k < 200; k++)
            cr_assert_eq(find(t, k) != UINT32_MAX, live[k], "op %d key %u", op, k);
    }
}

Test(hashtab, check_catches_an_unreachable_entry)
{
    slot t[CAP] = {{0, 0}};
    put(t, 7, 1);  /* home 60 */
    put(t, 14, 2); /* home 60: lands in 61 */
    cr_assert_eq(pc_hashtab_check(t, CAP, &slot_table, NULL, NULL, "test"), 0);
    t[60].key = 0; /* deleted without the shift: 14 is cut off */
    cr_assert_eq(pc_hashtab_check(t, CAP, &slot_table, NULL, NULL,
                                  "test (expected)"),
                 PC_E_CORRUPT);
    cr_assert_eq(pc_hashtab_check(t, 48, &slot_table, NULL, NULL,
                                  "test (expected)"),
                 PC_E_CORRUPT, "48 is no power of two");
}

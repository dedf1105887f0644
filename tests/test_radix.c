/*
 * tests/test_radix.c - scenario tests for the radix tree (radix/radix.h).
 *
 * Each Test is one scenario from the contract in radix.h.  pc_radix_check()
 * runs after every mutation (insert, match with SPLIT, lock, unlock, evict);
 * when it fails the whole tree is dumped to stderr first.
 *
 * Conventions: block ids are chosen so that a test can tell whose they are
 * (e.g. 1xx for sequence A, 2xx for B), token runs come from seq_fill().
 * Trees are destroyed and buffers freed before the final assertions where
 * that is practical; on an assertion failure a test may leak.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radix/radix.h"

/* ---- helpers ------------------------------------------------------------- */

/* pc_radix_check() must pass; dump the tree first if it does not.  The
 * helpers below take the caller's line so that a failure names the test's
 * line, not the helper's. */
#define CHECK_AT(t, line)                                                      \
    do {                                                                       \
        int check_rc_ = pc_radix_check(t);                                     \
        if (check_rc_ != 0)                                                    \
            pc_radix_dump((t), stderr);                                        \
        cr_assert_eq(check_rc_, 0, "pc_radix_check() = %d (%s) after line %d", \
                     check_rc_, pc_errname(check_rc_), (line));                \
    } while (0)
#define CHECK(t) CHECK_AT(t, __LINE__)

/* Assert on a tree: dump it when the condition fails. */
#define TASSERT(t, cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            pc_radix_dump((t), stderr);                                        \
            cr_assert_fail(__VA_ARGS__);                                       \
        }                                                                      \
    } while (0)

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static pc_radix *mk(uint32_t P)
{
    pc_radix *t = NULL;
    int rc = pc_radix_create(P, &t);
    cr_assert_eq(rc, 0, "pc_radix_create(%u) = %d", P, rc);
    cr_assert_not_null(t);
    cr_assert_eq(pc_radix_page_tokens(t), P);
    CHECK(t);
    return t;
}

static pc_radix_stats stats(const pc_radix *t)
{
    pc_radix_stats s;
    memset(&s, 0xa5, sizeof(s));
    pc_radix_stats_get(t, &s);
    return s;
}

/* Compare every field; name the first that differs. */
static const char *stats_diff(const pc_radix_stats *a, const pc_radix_stats *b)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
#define F(x) {#x, offsetof(pc_radix_stats, x)}
        F(namespaces),      F(nodes),           F(pages),
        F(tokens),          F(evictable_pages), F(protected_pages),
        F(metadata_bytes),  F(lookups),         F(hit_pages),
        F(miss_pages),      F(inserts),         F(inserted_pages),
        F(duplicate_pages), F(splits),          F(evicted_pages),
        F(evicted_nodes),   F(reserved_pages),  F(evicted_quota_pages),
#undef F
    };
    cr_assert_eq(sizeof(fields) / sizeof(fields[0]) * sizeof(uint64_t),
                 sizeof(pc_radix_stats), "a stats field is not compared");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        uint64_t x, y;
        memcpy(&x, (const char *)a + fields[i].off, sizeof(x));
        memcpy(&y, (const char *)b + fields[i].off, sizeof(y));
        if (x != y)
            return fields[i].name;
    }
    return NULL;
}

#define STATS_SAME(t, before)                                                  \
    do {                                                                       \
        pc_radix_stats now_ = stats(t);                                        \
        const char *d_ = stats_diff(&(before), &now_);                         \
        TASSERT(t, d_ == NULL, "stats.%s changed at %s:%d", d_ ? d_ : "",      \
                __FILE__, __LINE__);                                           \
    } while (0)

/* dst[i] = first + i */
static void seq_fill(uint32_t *dst, size_t n, uint32_t first)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = first + (uint32_t)i;
}

/* TASSERT for the helpers: names the caller's line. */
#define HASSERT(t, cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            char hmsg_[256];                                                   \
            snprintf(hmsg_, sizeof(hmsg_), __VA_ARGS__);                       \
            pc_radix_dump((t), stderr);                                        \
            cr_assert_fail("line %d: %s", line, hmsg_);                        \
        }                                                                      \
    } while (0)

/* Insert (must succeed), then check the tree. */
static pc_radix_insert_result ins_at(int line, pc_radix *t, const char *ns,
                                     const uint32_t *tok, size_t n,
                                     const uint32_t *blk, uint32_t *canon)
{
    pc_radix_insert_result r;
    memset(&r, 0xa5, sizeof(r));
    int rc = pc_radix_insert(t, ns, strlen(ns), tok, n, blk, canon, &r);
    HASSERT(t, rc == 0, "insert ns=\"%s\" n=%zu: %s", ns, n, pc_errname(rc));
    CHECK_AT(t, line);
    return r;
}
#define ins(...) ins_at(__LINE__, __VA_ARGS__)

/* Match (must succeed); checks the tree when SPLIT may have changed it. */
static pc_radix_match_result mt_at(int line, pc_radix *t, const char *ns,
                                   const uint32_t *tok, size_t n, uint32_t *blk,
                                   size_t cap, unsigned flags)
{
    pc_radix_match_result r;
    memset(&r, 0xa5, sizeof(r));
    int rc = pc_radix_match(t, ns, strlen(ns), tok, n, blk, cap, flags, &r);
    HASSERT(t, rc == 0, "match ns=\"%s\" n=%zu: %s", ns, n, pc_errname(rc));
    CHECK_AT(t, line); /* cheap here, and match with SPLIT is a mutation */
    uint32_t P = pc_radix_page_tokens(t);
    HASSERT(t, r.tokens == r.pages * P, "tokens %zu != pages %zu * P", r.tokens,
            r.pages);
    HASSERT(t, (r.node == NULL) == (r.pages == 0),
            "node %p with %zu pages matched", (void *)r.node, r.pages);
    if (r.node) {
        size_t d = pc_radix_node_depth_pages(r.node);
        if (flags & PC_RADIX_MATCH_SPLIT)
            HASSERT(t, d == r.pages, "SPLIT handle depth %zu != pages %zu", d,
                    r.pages);
        else
            HASSERT(t, d >= r.pages, "handle depth %zu < pages %zu", d,
                    r.pages);
    }
    return r;
}
#define mt(...) mt_at(__LINE__, __VA_ARGS__)

/* Matched page count only. */
static size_t mpages_at(int line, pc_radix *t, const char *ns,
                        const uint32_t *tok, size_t n)
{
    return mt_at(line, t, ns, tok, n, NULL, 0, PC_RADIX_MATCH_PEEK).pages;
}
#define mpages(...) mpages_at(__LINE__, __VA_ARGS__)

static void lock_ok_at(int line, pc_radix *t, pc_radix_node *n)
{
    int rc = pc_radix_lock(t, n);
    HASSERT(t, rc == 0, "lock: %s", pc_errname(rc));
    CHECK_AT(t, line);
}
#define lock_ok(...) lock_ok_at(__LINE__, __VA_ARGS__)

static void unlock_ok_at(int line, pc_radix *t, pc_radix_node *n)
{
    int rc = pc_radix_unlock(t, n);
    HASSERT(t, rc == 0, "unlock: %s", pc_errname(rc));
    CHECK_AT(t, line);
}
#define unlock_ok(...) unlock_ok_at(__LINE__, __VA_ARGS__)

/* Eviction recorder: the callback's block ids, in order. */
typedef struct evrec {
    uint32_t ids[1024];
    size_t n;
} evrec;

static void ev_cb(void *ctx, uint32_t block)
{
    evrec *r = ctx;
    if (r->n < NELEM(r->ids))
        r->ids[r->n] = block;
    r->n++;
}

/* Evict, check the tree, return the ids in r (reset first). */
static size_t ev_at(int line, pc_radix *t, size_t k, evrec *r)
{
    r->n = 0;
    size_t got = pc_radix_evict(t, k, ev_cb, r);
    CHECK_AT(t, line);
    HASSERT(t, got == r->n, "evict returned %zu but called back %zu times", got,
            r->n);
    return got;
}
#define ev(...) ev_at(__LINE__, __VA_ARGS__)

static void assert_ids_at(int line, pc_radix *t, const uint32_t *got,
                          size_t n_got, const uint32_t *want, size_t n_want,
                          const char *what)
{
    bool same = n_got == n_want;
    for (size_t i = 0; same && i < n_want; i++)
        same = got[i] == want[i];
    if (!same) {
        fprintf(stderr, "%s: got [", what);
        for (size_t i = 0; i < n_got; i++)
            fprintf(stderr, "%s%" PRIu32, i ? " " : "", got[i]);
        fprintf(stderr, "] want [");
        for (size_t i = 0; i < n_want; i++)
            fprintf(stderr, "%s%" PRIu32, i ? " " : "", want[i]);
        fprintf(stderr, "]\n");
    }
    HASSERT(t, same, "%s: block ids differ (see stderr)", what);
}
#define assert_ids(...) assert_ids_at(__LINE__, __VA_ARGS__)

/* Same multiset of ids, any order. */
static void assert_id_set_at(int line, pc_radix *t, const uint32_t *got,
                             size_t n_got, const uint32_t *want, size_t n_want,
                             const char *what)
{
    HASSERT(t, n_got == n_want, "%s: %zu ids, want %zu", what, n_got, n_want);
    bool used[1024] = {false};
    cr_assert_leq(n_want, NELEM(used), "line %d", line);
    for (size_t i = 0; i < n_got; i++) {
        size_t j = 0;
        while (j < n_want && (used[j] || want[j] != got[i]))
            j++;
        HASSERT(t, j < n_want, "%s: unexpected block %" PRIu32, what, got[i]);
        used[j] = true;
    }
}
#define assert_id_set(...) assert_id_set_at(__LINE__, __VA_ARGS__)

/* ---- P = 1: shared prefix, divergence ------------------------------------ */

Test(radix, p1_shared_prefix)
{
    pc_radix *t = mk(1);
    uint32_t a[8], ab[8], b[] = {1, 2, 9, 10}, bb[] = {201, 202, 203, 204};
    uint32_t canon[4];
    seq_fill(a, 8, 1);    /* 1..8     */
    seq_fill(ab, 8, 101); /* 101..108 */

    pc_radix_insert_result r = ins(t, "m", a, 8, ab, NULL);
    cr_assert_eq(r.cached_tokens, 0);
    cr_assert_eq(r.inserted_pages, 8);
    cr_assert_not_null(r.node);
    cr_assert_eq(pc_radix_node_depth_pages(r.node), 8);

    r = ins(t, "m", b, 4, bb, canon);
    cr_assert_eq(r.cached_tokens, 2);
    cr_assert_eq(r.inserted_pages, 2);
    cr_assert_eq(pc_radix_node_depth_pages(r.node), 4);
    assert_ids(t, canon, 4, (uint32_t[]){101, 102, 203, 204}, 4, "canon");

    pc_radix_stats s = stats(t);
    cr_assert_eq(s.tokens, 10);
    cr_assert_eq(s.pages, 10);
    cr_assert_eq(s.namespaces, 1);
    cr_assert_eq(s.nodes, 3, "upper [1 2], lower [3..8], new [9 10]");
    cr_assert_eq(s.splits, 1);

    uint32_t q[] = {1, 2, 3, 4, 999, 1000}, got[8];
    memset(got, 0, sizeof(got));
    pc_radix_match_result m = mt(t, "m", q, NELEM(q), got, NELEM(got), 0);
    cr_assert_eq(m.tokens, 4);
    cr_assert_eq(m.pages, 4);
    assert_ids(t, got, m.pages, ab, 4, "match blocks");

    uint32_t q2[] = {1, 2, 9, 10, 11};
    m = mt(t, "m", q2, NELEM(q2), got, NELEM(got), 0);
    cr_assert_eq(m.pages, 4);
    assert_ids(t, got, 4, canon, 4, "second path");

    pc_radix_destroy(t);
}

/* ---- P = 4: no partial page ever ----------------------------------------- */

Test(radix, p4_never_partial_pages)
{
    pc_radix *t = mk(4);
    uint32_t tok[12], blk[] = {11, 12}, got[4];
    seq_fill(tok, 12, 1); /* 1..12; only 1..10 inserted */

    pc_radix_insert_result r = ins(t, "m", tok, 10, blk, NULL);
    cr_assert_eq(r.cached_tokens, 0);
    cr_assert_eq(r.inserted_pages, 2);
    cr_assert_eq(pc_radix_node_depth_pages(r.node), 2);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.tokens, 8);
    cr_assert_eq(s.pages, 2);

    /* 7-token prefix: one full page matches, the partial one never does */
    pc_radix_match_result m = mt(t, "m", tok, 7, got, 4, 0);
    cr_assert_eq(m.tokens, 4);
    cr_assert_eq(got[0], 11);
    /* 11 tokens: both pages */
    m = mt(t, "m", tok, 11, got, 4, 0);
    cr_assert_eq(m.tokens, 8);
    assert_ids(t, got, 2, blk, 2, "11 tokens");
    /* exactly 8 */
    cr_assert_eq(mt(t, "m", tok, 8, got, 4, 0).tokens, 8);
    /* 3 tokens: nothing, no handle */
    m = mt(t, "m", tok, 3, got, 4, 0);
    cr_assert_eq(m.tokens, 0);
    cr_assert_null(m.node);
    /* divergence in the middle of page 2 (token index 5) */
    uint32_t d[] = {1, 2, 3, 4, 5, 99, 7, 8, 9, 10, 11};
    m = mt(t, "m", d, NELEM(d), got, 4, 0);
    cr_assert_eq(m.tokens, 4);
    cr_assert_eq(got[0], 11);
    /* divergence at the last token of page 1 */
    uint32_t e[] = {1, 2, 3, 77, 5, 6, 7, 8};
    cr_assert_eq(mt(t, "m", e, NELEM(e), got, 4, 0).tokens, 0);
    /* the same with SPLIT: the handle covers exactly one page */
    m = mt(t, "m", d, NELEM(d), got, 4, PC_RADIX_MATCH_SPLIT);
    cr_assert_eq(m.tokens, 4);
    cr_assert_eq(pc_radix_node_pages(m.node), 1);
    cr_assert_eq(pc_radix_node_depth_pages(m.node), 1);
    cr_assert_eq(stats(t).splits, 1);
    cr_assert_eq(stats(t).pages, 2);

    /* an insert with no full page changes nothing but the insert count and
     * creates no namespace */
    pc_radix_stats before = stats(t);
    r = ins(t, "other", tok, 3, NULL, NULL);
    cr_assert_eq(r.cached_tokens, 0);
    cr_assert_eq(r.inserted_pages, 0);
    cr_assert_null(r.node);
    s = stats(t);
    cr_assert_eq(s.inserts, before.inserts + 1);
    cr_assert_eq(s.namespaces, 1);
    cr_assert_eq(s.pages, 2);

    pc_radix_destroy(t);
}

/* A child is keyed by its whole first page: pages that share their first
 * token (or all but their last token) are different children. */
Test(radix, children_keyed_by_whole_page)
{
    pc_radix *t = mk(4);
    uint32_t got[4];
    /* 20 siblings below a shared page: first pages differ only in the last
     * token, enough of them to outgrow a small child array. */
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t tok[] = {1, 1, 1, 1, 7, 7, 7, i};
        uint32_t blk[] = {1000 + i, 2000 + i}, canon[2];
        pc_radix_insert_result r = ins(t, "m", tok, 8, blk, canon);
        cr_assert_eq(r.cached_tokens, i ? 4 : 0, "sibling %u", i);
        cr_assert_eq(canon[0], 1000);
        cr_assert_eq(canon[1], 2000 + i);
    }
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t tok[] = {1, 1, 1, 1, 7, 7, 7, i};
        pc_radix_match_result m = mt(t, "m", tok, 8, got, 4, 0);
        cr_assert_eq(m.pages, 2, "sibling %u", i);
        cr_assert_eq(got[1], 2000 + i);
    }
    uint32_t miss[] = {1, 1, 1, 1, 7, 7, 7, 20};
    cr_assert_eq(mpages(t, "m", miss, 8), 1);
    uint32_t miss2[] = {1, 1, 1, 1, 7, 8, 7, 0};
    cr_assert_eq(mpages(t, "m", miss2, 8), 1);
    cr_assert_eq(stats(t).pages, 21);
    cr_assert_eq(stats(t).nodes, 21);

    /* evict half of them (each a 1-page leaf): the rest still match */
    evrec e;
    cr_assert_eq(ev(t, 10, &e), 10);
    size_t alive = 0;
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t tok[] = {1, 1, 1, 1, 7, 7, 7, i};
        size_t p = mpages(t, "m", tok, 8);
        cr_assert(p == 1 || p == 2);
        alive += p == 2;
    }
    cr_assert_eq(alive, 10);
    pc_radix_destroy(t);
}

/* ---- namespaces ---------------------------------------------------------- */

Test(radix, namespaces_are_isolated)
{
    pc_radix *t = mk(4);
    uint32_t tok[16], got[8], canon[4];
    seq_fill(tok, 16, 1);
    uint32_t ba[] = {1, 2, 3, 4}, bb[] = {11, 12, 13, 14},
             be[] = {21, 22, 23, 24};

    cr_assert_eq(ins(t, "A", tok, 16, ba, NULL).inserted_pages, 4);
    pc_radix_insert_result r = ins(t, "B", tok, 16, bb, canon);
    cr_assert_eq(r.cached_tokens, 0, "B must not see A's pages");
    cr_assert_eq(r.inserted_pages, 4);
    assert_ids(t, canon, 4, bb, 4, "B canon");
    /* never inserted: matches nothing, including the empty namespace */
    cr_assert_eq(mpages(t, "C", tok, 16), 0);
    cr_assert_eq(mpages(t, "", tok, 16), 0);
    cr_assert_eq(mpages(t, "AB", tok, 16), 0);
    cr_assert_eq(stats(t).namespaces, 2);
    /* the empty namespace is a namespace of its own */
    r = ins(t, "", tok, 16, be, NULL);
    cr_assert_eq(r.cached_tokens, 0);
    cr_assert_eq(stats(t).namespaces, 3);

    pc_radix_match_result m = mt(t, "A", tok, 16, got, 8, 0);
    assert_ids(t, got, m.pages, ba, 4, "A");
    m = mt(t, "B", tok, 16, got, 8, 0);
    assert_ids(t, got, m.pages, bb, 4, "B");
    m = mt(t, "", tok, 16, got, 8, 0);
    assert_ids(t, got, m.pages, be, 4, "empty ns");
    cr_assert_neq(mt(t, "A", tok, 16, NULL, 0, 0).node,
                  mt(t, "B", tok, 16, NULL, 0, 0).node);

    /* inserting a diverging path into A does not touch B */
    uint32_t div[] = {1, 2, 3, 4, 5, 6, 7, 8, 50, 51, 52, 53};
    uint32_t bd[] = {91, 92, 93};
    r = ins(t, "A", div, 12, bd, canon);
    cr_assert_eq(r.cached_tokens, 8);
    cr_assert_eq(stats(t).pages, 13);
    m = mt(t, "B", tok, 16, got, 8, 0);
    assert_ids(t, got, m.pages, bb, 4, "B after A's split");
    cr_assert_eq(mpages(t, "B", div, 12), 2);

    /* lock B and "", evict everything: only A's pages go, and A (now empty)
     * disappears as a namespace */
    pc_radix_node *nb = mt(t, "B", tok, 16, NULL, 0, PC_RADIX_MATCH_SPLIT).node;
    pc_radix_node *ne = mt(t, "", tok, 16, NULL, 0, PC_RADIX_MATCH_SPLIT).node;
    lock_ok(t, nb);
    lock_ok(t, ne);
    evrec e;
    cr_assert_eq(ev(t, SIZE_MAX, &e), 5);
    assert_id_set(t, e.ids, e.n, (uint32_t[]){1, 2, 3, 4, 93}, 5, "A evicted");
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.namespaces, 2);
    cr_assert_eq(s.pages, 8);
    cr_assert_eq(mpages(t, "A", tok, 16), 0);
    m = mt(t, "B", tok, 16, got, 8, 0);
    assert_ids(t, got, m.pages, bb, 4, "B survives");
    m = mt(t, "", tok, 16, got, 8, 0);
    assert_ids(t, got, m.pages, be, 4, "empty ns survives");

    /* LRU across namespaces: unlock both, "" was matched last, so B goes
     * first and then the empty namespace; each disappears with its last
     * page. */
    unlock_ok(t, nb);
    unlock_ok(t, ne);
    cr_assert_eq(ev(t, 4, &e), 4);
    assert_ids(t, e.ids, e.n, (uint32_t[]){14, 13, 12, 11}, 4, "B evicted");
    cr_assert_eq(stats(t).namespaces, 1);
    cr_assert_eq(mpages(t, "", tok, 16), 4);
    cr_assert_eq(ev(t, SIZE_MAX, &e), 4);
    assert_ids(t, e.ids, e.n, (uint32_t[]){24, 23, 22, 21}, 4, "'' evicted");
    s = stats(t);
    cr_assert_eq(s.namespaces, 0);
    cr_assert_eq(s.nodes, 0);
    cr_assert_eq(s.pages, 0);
    pc_radix_destroy(t);
}

/* Namespaces are bytes, not C strings: embedded NULs and the full 256 bytes
 * count. */
Test(radix, namespaces_are_binary)
{
    pc_radix *t = mk(2);
    uint32_t tok[] = {5, 6, 7, 8}, b1[] = {1, 2}, b2[] = {3, 4}, b3[] = {5, 6},
             b4[] = {7, 8}, got[2], canon[2];
    const char n1[] = {'x', 0, 'y'}, n2[] = {'x', 0, 'z'};
    char big[PC_RADIX_NS_MAX];
    memset(big, 'q', sizeof(big));
    pc_radix_insert_result r;

    cr_assert_eq(pc_radix_insert(t, n1, 3, tok, 4, b1, canon, &r), 0);
    CHECK(t);
    cr_assert_eq(pc_radix_insert(t, n2, 3, tok, 4, b2, canon, &r), 0);
    CHECK(t);
    cr_assert_eq(r.cached_tokens, 0, "x\\0z must not see x\\0y");
    cr_assert_eq(pc_radix_insert(t, big, sizeof(big), tok, 4, b3, canon, &r),
                 0);
    CHECK(t);
    cr_assert_eq(r.cached_tokens, 0);
    cr_assert_eq(
        pc_radix_insert(t, big, sizeof(big) - 1, tok, 4, b4, canon, &r), 0);
    CHECK(t);
    cr_assert_eq(r.cached_tokens, 0, "255-byte prefix is another namespace");
    cr_assert_eq(stats(t).namespaces, 4);

    pc_radix_match_result m;
    cr_assert_eq(pc_radix_match(t, n1, 3, tok, 4, got, 2, 0, &m), 0);
    assert_ids(t, got, m.pages, b1, 2, "x\\0y");
    cr_assert_eq(pc_radix_match(t, n2, 3, tok, 4, got, 2, 0, &m), 0);
    assert_ids(t, got, m.pages, b2, 2, "x\\0z");
    cr_assert_eq(pc_radix_match(t, n1, 1, tok, 4, got, 2, 0, &m), 0);
    cr_assert_eq(m.pages, 0, "\"x\" is not \"x\\0y\"");
    cr_assert_eq(pc_radix_match(t, big, sizeof(big), tok, 4, got, 2, 0, &m), 0);
    assert_ids(t, got, m.pages, b3, 2, "256 bytes");
    pc_radix_destroy(t);
}

/* ---- duplicates ---------------------------------------------------------- */

Test(radix, duplicate_insert_keeps_canonical_ids)
{
    pc_radix *t = mk(4);
    uint32_t tok[12], first[] = {1, 2, 3}, again[] = {7, 8, 9}, canon[4];
    seq_fill(tok, 12, 100);

    pc_radix_insert_result r1 = ins(t, "m", tok, 12, first, NULL);
    pc_radix_stats s0 = stats(t);

    memset(canon, 0, sizeof(canon));
    pc_radix_insert_result r = ins(t, "m", tok, 12, again, canon);
    cr_assert_eq(r.cached_tokens, 12);
    cr_assert_eq(r.inserted_pages, 0);
    cr_assert_eq(r.node, r1.node, "same path, same node");
    assert_ids(t, canon, 3, first, 3, "canon = original ids");
    for (int i = 0; i < 3; i++)
        cr_assert_neq(canon[i], again[i]);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.pages, s0.pages);
    cr_assert_eq(s.nodes, s0.nodes);
    cr_assert_eq(s.inserts, 2);
    cr_assert_eq(s.inserted_pages, 3);
    cr_assert_eq(s.duplicate_pages, 3);

    /* partially cached: 2 cached pages, 2 new ones, and a trailing partial
     * page that is ignored */
    uint32_t tok2[] = {100, 101, 102, 103, 104, 105, 106, 107, 50,
                       51,  52,  53,  60,  61,  62,  63,  70,  71};
    uint32_t b2[] = {31, 32, 33, 34};
    memset(canon, 0, sizeof(canon));
    r = ins(t, "m", tok2, NELEM(tok2), b2, canon);
    cr_assert_eq(r.cached_tokens, 8);
    cr_assert_eq(r.inserted_pages, 2);
    cr_assert_eq(pc_radix_node_depth_pages(r.node), 4);
    assert_ids(t, canon, 4, (uint32_t[]){1, 2, 33, 34}, 4, "partial canon");
    s = stats(t);
    cr_assert_eq(s.pages, 5);
    cr_assert_eq(s.duplicate_pages, 5);
    cr_assert_eq(s.inserted_pages, 5);

    /* a cached prefix ending inside a node: the handle covers exactly it */
    uint32_t b3[] = {41};
    r = ins(t, "m", tok, 4, b3, canon);
    cr_assert_eq(r.cached_tokens, 4);
    cr_assert_eq(r.inserted_pages, 0);
    cr_assert_eq(canon[0], 1);
    cr_assert_eq(pc_radix_node_depth_pages(r.node), 1);
    cr_assert_eq(pc_radix_node_pages(r.node), 1);

    /* canon may be NULL */
    r = ins(t, "m", tok, 12, again, NULL);
    cr_assert_eq(r.cached_tokens, 12);
    pc_radix_destroy(t);
}

/* ---- locks --------------------------------------------------------------- */

Test(radix, locked_path_survives_evict_all)
{
    pc_radix *t = mk(4);
    uint32_t x[16], y[12], z[16], got[8];
    seq_fill(x, 16, 1);
    seq_fill(y, 12, 100);
    seq_fill(z, 8, 1);
    seq_fill(z + 8, 8, 200);
    uint32_t bx[] = {1, 2, 3, 4}, by[] = {11, 12, 13}, bz[] = {21, 22, 23, 24};
    ins(t, "m", x, 16, bx, NULL);
    ins(t, "m", y, 12, by, NULL);
    cr_assert_eq(ins(t, "m", z, 16, bz, NULL).cached_tokens, 8);
    cr_assert_eq(stats(t).pages, 9);

    /* pin the first 3 pages of x: ends inside x's lower node -> split */
    pc_radix_match_result m = mt(t, "m", x, 12, got, 8, PC_RADIX_MATCH_SPLIT);
    cr_assert_eq(m.pages, 3);
    cr_assert_eq(pc_radix_node_depth_pages(m.node), 3);
    pc_radix_node *pin = m.node;
    lock_ok(t, pin);
    cr_assert_eq(pc_radix_node_lock_ref(pin), 1);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.protected_pages, 3);
    cr_assert_eq(s.evictable_pages, 6);

    evrec e;
    cr_assert_eq(ev(t, SIZE_MAX, &e), 6);
    assert_id_set(t, e.ids, e.n, (uint32_t[]){4, 11, 12, 13, 23, 24}, 6,
                  "unprotected pages");
    s = stats(t);
    cr_assert_eq(s.pages, 3);
    cr_assert_eq(s.protected_pages, 3);
    cr_assert_eq(s.evictable_pages, 0);
    m = mt(t, "m", x, 16, got, 8, 0);
    assert_ids(t, got, m.pages, bx, 3, "pinned prefix");
    cr_assert_eq(mpages(t, "m", y, 12), 0);
    cr_assert_eq(mpages(t, "m", z, 16), 2);
    cr_assert_eq(ev(t, SIZE_MAX, &e), 0, "nothing evictable");

    unlock_ok(t, pin);
    s = stats(t);
    cr_assert_eq(s.protected_pages, 0);
    cr_assert_eq(s.evictable_pages, 3);
    cr_assert_eq(ev(t, SIZE_MAX, &e), 3);
    assert_ids(t, e.ids, e.n, (uint32_t[]){3, 2, 1}, 3, "deepest first");
    s = stats(t);
    cr_assert_eq(s.pages, 0);
    cr_assert_eq(s.nodes, 0);
    cr_assert_eq(s.namespaces, 0);
    pc_radix_destroy(t);
}

Test(radix, lock_counts_and_insert_handle)
{
    pc_radix *t = mk(4);
    uint32_t x[16], b[] = {1, 2, 3, 4};
    seq_fill(x, 16, 1);
    pc_radix_node *n = ins(t, "m", x, 16, b, NULL).node;
    /* the insert handle can be locked, several times */
    lock_ok(t, n);
    lock_ok(t, n);
    cr_assert_eq(pc_radix_node_lock_ref(n), 2);
    /* a shorter pin splits; the upper half carries both locks */
    pc_radix_node *u = mt(t, "m", x, 8, NULL, 0, PC_RADIX_MATCH_SPLIT).node;
    cr_assert_neq(u, n);
    cr_assert_eq(pc_radix_node_lock_ref(u), 2);
    lock_ok(t, u);
    cr_assert_eq(pc_radix_node_lock_ref(u), 3);
    cr_assert_eq(pc_radix_node_lock_ref(n), 2);
    cr_assert_eq(stats(t).protected_pages, 4);
    unlock_ok(t, n);
    unlock_ok(t, n);
    cr_assert_eq(pc_radix_node_lock_ref(u), 1);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.protected_pages, 2);
    cr_assert_eq(s.evictable_pages, 2);
    evrec e;
    cr_assert_eq(ev(t, SIZE_MAX, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){4, 3}, 2, "below the pin");
    unlock_ok(t, u);
    cr_assert_eq(ev(t, SIZE_MAX, &e), 2);
    pc_radix_destroy(t);
}

Test(radix, unlock_below_zero_is_refused)
{
    pc_radix *t = mk(4);
    uint32_t x[16], b[] = {1, 2, 3, 4};
    seq_fill(x, 16, 1);
    ins(t, "m", x, 16, b, NULL);
    pc_radix_node *top =
        mt(t, "m", x, 8, NULL, 0, PC_RADIX_MATCH_SPLIT).node; /* pages 1-2 */
    pc_radix_node *deep = mt(t, "m", x, 16, NULL, 0, 0).node; /* pages 3-4 */
    cr_assert_neq(top, deep);

    /* never locked */
    pc_radix_stats before = stats(t);
    cr_assert_eq(pc_radix_unlock(t, top), PC_E_NOTLOCKED);
    CHECK(t);
    STATS_SAME(t, before);

    /* locked only through a descendant: its own count is 0 */
    lock_ok(t, deep);
    cr_assert_eq(pc_radix_node_lock_ref(top), 1);
    before = stats(t);
    cr_assert_eq(pc_radix_unlock(t, top), PC_E_NOTLOCKED);
    CHECK(t);
    STATS_SAME(t, before);
    cr_assert_eq(pc_radix_node_lock_ref(top), 1);
    cr_assert_eq(pc_radix_node_lock_ref(deep), 1);

    /* one lock, two unlocks */
    unlock_ok(t, deep);
    before = stats(t);
    cr_assert_eq(pc_radix_unlock(t, deep), PC_E_NOTLOCKED);
    CHECK(t);
    STATS_SAME(t, before);
    cr_assert_eq(pc_radix_node_lock_ref(deep), 0);
    cr_assert_eq(pc_radix_node_lock_ref(top), 0);
    cr_assert_eq(before.protected_pages, 0);
    cr_assert_eq(before.evictable_pages, 4);

    /* the refused unlocks did not corrupt anything: all evictable */
    evrec e;
    cr_assert_eq(ev(t, SIZE_MAX, &e), 4);
    pc_radix_destroy(t);
}

Test(radix, split_keeps_lock_coverage)
{
    pc_radix *t = mk(4);
    uint32_t l[32], bl[8], got[8], canon[5];
    seq_fill(l, 32, 1);
    seq_fill(bl, 8, 1);
    ins(t, "m", l, 32, bl, NULL);
    pc_radix_node *n = mt(t, "m", l, 32, NULL, 0, PC_RADIX_MATCH_SPLIT).node;
    cr_assert_eq(pc_radix_node_pages(n), 8);
    lock_ok(t, n);

    /* diverge after page 3: splits the locked node */
    uint32_t d[20], bd[] = {81, 82, 83, 84, 85};
    seq_fill(d, 12, 1);
    seq_fill(d + 12, 8, 900);
    pc_radix_insert_result r = ins(t, "m", d, 20, bd, canon);
    cr_assert_eq(r.cached_tokens, 12);
    assert_ids(t, canon, 5, (uint32_t[]){1, 2, 3, 84, 85}, 5, "canon");
    cr_assert_eq(pc_radix_node_depth_pages(n), 8, "handle still ends at 8");
    cr_assert_eq(pc_radix_node_pages(n), 5, "the lower half is the handle");
    cr_assert_eq(pc_radix_node_lock_ref(n), 1);
    /* a prefix-only insert splits the upper half again */
    r = ins(t, "m", l, 8, bd, NULL);
    cr_assert_eq(r.cached_tokens, 8);
    cr_assert_eq(pc_radix_node_lock_ref(r.node), 1, "inherited lock_ref");
    /* and a SPLIT match inside the locked node itself */
    pc_radix_node *w = mt(t, "m", l, 24, NULL, 0, PC_RADIX_MATCH_SPLIT).node;
    cr_assert_eq(pc_radix_node_depth_pages(w), 6);
    cr_assert_eq(pc_radix_node_lock_ref(w), 1);
    cr_assert_eq(pc_radix_node_pages(n), 2);
    pc_radix_stats before = stats(t);
    cr_assert_eq(before.splits, 3);
    cr_assert_eq(before.protected_pages, 8);
    cr_assert_eq(before.evictable_pages, 2);
    cr_assert_eq(pc_radix_unlock(t, w), PC_E_NOTLOCKED,
                 "the upper half inherits lock_ref, not the lock");
    CHECK(t);
    STATS_SAME(t, before);

    evrec e;
    cr_assert_eq(ev(t, SIZE_MAX, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){85, 84}, 2, "only the branch");
    pc_radix_match_result m = mt(t, "m", l, 32, got, 8, 0);
    assert_ids(t, got, m.pages, bl, 8, "locked path intact");

    unlock_ok(t, n);
    cr_assert_eq(ev(t, SIZE_MAX, &e), 8);
    assert_ids(t, e.ids, e.n, (uint32_t[]){8, 7, 6, 5, 4, 3, 2, 1}, 8,
               "deepest first");
    pc_radix_destroy(t);
}

/* ---- eviction order ------------------------------------------------------ */

Test(radix, evict_is_lru)
{
    pc_radix *t = mk(4);
    uint32_t a[8], b[8], c[8];
    seq_fill(a, 8, 100);
    seq_fill(b, 8, 200);
    seq_fill(c, 8, 300);
    ins(t, "m", a, 8, (uint32_t[]){101, 102}, NULL);
    ins(t, "m", b, 8, (uint32_t[]){201, 202}, NULL);
    ins(t, "m", c, 8, (uint32_t[]){301, 302}, NULL);
    cr_assert_eq(mt(t, "m", a, 8, NULL, 0, 0).pages, 2); /* A: most recent */

    evrec e;
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){202, 201}, 2, "B first");
    cr_assert_eq(mpages(t, "m", b, 8), 0);
    cr_assert_eq(mpages(t, "m", c, 8), 2);
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){302, 301}, 2, "then C");
    cr_assert_eq(mpages(t, "m", a, 8), 2);
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){102, 101}, 2, "then A");
    cr_assert_eq(ev(t, 2, &e), 0);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.evicted_pages, 6);
    cr_assert_eq(s.evicted_nodes, 3);
    pc_radix_destroy(t);
}

Test(radix, insert_counts_as_use)
{
    pc_radix *t = mk(4);
    uint32_t a[8], b[8];
    seq_fill(a, 8, 100);
    seq_fill(b, 8, 200);
    ins(t, "m", a, 8, (uint32_t[]){101, 102}, NULL);
    ins(t, "m", b, 8, (uint32_t[]){201, 202}, NULL);
    /* re-inserting A (all duplicates) makes it the most recently used */
    ins(t, "m", a, 8, (uint32_t[]){901, 902}, NULL);
    evrec e;
    cr_assert_eq(ev(t, 1, &e), 1);
    cr_assert_eq(e.ids[0], 202);
    pc_radix_destroy(t);
}

Test(radix, parent_evicted_after_children)
{
    /* S = 2 shared pages, children c1 and c2 of one page each */
    uint32_t s1[12], s2[12];
    seq_fill(s1, 8, 1);
    s1[8] = 50, s1[9] = 51, s1[10] = 52, s1[11] = 53;
    memcpy(s2, s1, sizeof(s2));
    s2[8] = 60;
    evrec e;

    /* (a) S used last: children go first, in their LRU order */
    pc_radix *t = mk(4);
    ins(t, "m", s1, 12, (uint32_t[]){1, 2, 11}, NULL);
    cr_assert_eq(
        ins(t, "m", s2, 12, (uint32_t[]){9, 9, 21}, NULL).cached_tokens, 8);
    cr_assert_eq(mt(t, "m", s1, 8, NULL, 0, 0).pages, 2); /* touch S only */
    cr_assert_eq(ev(t, 1, &e), 1);
    cr_assert_eq(e.ids[0], 11, "c1 is the oldest leaf");
    cr_assert_eq(ev(t, 1, &e), 1);
    cr_assert_eq(e.ids[0], 21, "then c2, although S is more recent");
    cr_assert_eq(mpages(t, "m", s1, 12), 2);
    cr_assert_eq(ev(t, 1, &e), 1);
    cr_assert_eq(e.ids[0], 2, "S's deepest page only now");
    cr_assert_eq(ev(t, 5, &e), 1);
    cr_assert_eq(e.ids[0], 1);
    pc_radix_destroy(t);

    /* (b) c1 used last: c2, then c1, then S, in one call */
    t = mk(4);
    ins(t, "m", s1, 12, (uint32_t[]){1, 2, 11}, NULL);
    ins(t, "m", s2, 12, (uint32_t[]){9, 9, 21}, NULL);
    cr_assert_eq(mt(t, "m", s1, 12, NULL, 0, 0).pages, 3);
    cr_assert_eq(ev(t, SIZE_MAX, &e), 4);
    assert_ids(t, e.ids, e.n, (uint32_t[]){21, 11, 2, 1}, 4, "order");
    pc_radix_destroy(t);
}

Test(radix, leaf_loses_deepest_page_first)
{
    pc_radix *t = mk(4);
    uint32_t x[16], b[] = {1, 2, 3, 4}, got[4];
    seq_fill(x, 16, 1);
    ins(t, "m", x, 16, b, NULL);
    evrec e;
    cr_assert_eq(ev(t, 1, &e), 1);
    cr_assert_eq(e.ids[0], 4);
    pc_radix_match_result m = mt(t, "m", x, 16, got, 4, 0);
    cr_assert_eq(m.pages, 3, "a 3-page prefix still matches");
    assert_ids(t, got, 3, b, 3, "prefix blocks");
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.pages, 3);
    cr_assert_eq(s.tokens, 12);
    cr_assert_eq(s.evicted_pages, 1);
    cr_assert_eq(s.evicted_nodes, 0, "the node still holds 3 pages");
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){3, 2}, 2, "next two");
    cr_assert_eq(mpages(t, "m", x, 16), 1);
    cr_assert_eq(ev(t, 5, &e), 1, "only one page left");
    s = stats(t);
    cr_assert_eq(s.evicted_nodes, 1);
    cr_assert_eq(s.namespaces, 0);
    pc_radix_destroy(t);
}

/* ---- 10,000 sequences sharing a 10,000-token prefix ---------------------- */

Test(radix, shared_prefix_stored_once)
{
    enum { P = 16, PREFIX = 10000, NSEQ = 10000, MAXSUF = 32 };
    pc_radix *t = mk(P);
    uint32_t *tok = malloc((PREFIX + MAXSUF) * sizeof(*tok));
    uint32_t *blk = malloc(((PREFIX + MAXSUF) / P) * sizeof(*blk));
    cr_assert(tok && blk);
    seq_fill(tok, PREFIX, 7); /* the shared prompt */
    uint64_t want_tokens = PREFIX, want_pages = PREFIX / P;
    uint32_t next_block = 0;

    for (uint32_t i = 0; i < NSEQ; i++) {
        size_t suf = 16 + i % 17;        /* 16..32 tokens: 1 or 2 full pages */
        for (size_t j = 0; j < suf; j++) /* distinct first suffix page */
            tok[PREFIX + j] = 1000000u + i * 64u + (uint32_t)j;
        size_t n = PREFIX + suf, pages = n / P;
        for (size_t j = 0; j < pages; j++)
            blk[j] = next_block++;
        pc_radix_insert_result r;
        int rc = pc_radix_insert(t, "m", 1, tok, n, blk, NULL, &r);
        cr_assert_eq(rc, 0, "insert %u: %s", i, pc_errname(rc));
        cr_assert_eq(r.cached_tokens, i ? (size_t)PREFIX : 0, "insert %u", i);
        cr_assert_eq(r.inserted_pages, i ? pages - PREFIX / P : pages);
        want_tokens += (suf / P) * P;
        want_pages += suf / P;
    }
    CHECK(t);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.tokens, want_tokens);
    cr_assert_eq(s.pages, want_pages);
    cr_assert_eq(s.namespaces, 1);
    cr_assert_eq(s.nodes, 1 + NSEQ, "one prefix node + one leaf each");

    /* Memory bound.  raw = what the content itself needs: 4 bytes per
     * cached token + 4 bytes per block id.  Allowed:
     *
     *     metadata_bytes <= 1.5 * raw + 64 KiB + 112 bytes per node
     *
     * The 112 bytes per node pay for a node header (96: LRU links, parent,
     * child table, counters, the eviction policies' key and heap slot) and
     * its slot in the parent's child table.  They are
     * needed because here 10,001 nodes hold only 1 or 2 pages each (68 or
     * 136 raw bytes), so a per-node header cannot hide in 0.5 * raw; the
     * plain "1.5 * raw + 64 KiB" would forbid any node header above ~34
     * bytes.  Storing the shared prefix once per sequence would need
     * ~400 MB, so the bound still proves that it is stored once. */
    uint64_t raw = 4 * s.tokens + 4 * s.pages;
    uint64_t bound = raw + raw / 2 + 64 * 1024 + 112 * s.nodes;
    cr_log_info("shared_prefix: tokens=%" PRIu64 " pages=%" PRIu64
                " nodes=%" PRIu64 " metadata=%" PRIu64 " raw=%" PRIu64
                " bound=%" PRIu64,
                s.tokens, s.pages, s.nodes, s.metadata_bytes, raw, bound);
    cr_assert_leq(s.metadata_bytes, bound,
                  "metadata %" PRIu64 " > bound %" PRIu64 " (raw %" PRIu64
                  ", %" PRIu64 " nodes)",
                  s.metadata_bytes, bound, raw, s.nodes);

    /* a few spot matches: every sequence finds its own suffix */
    for (uint32_t i = 0; i < NSEQ; i += 997) {
        size_t suf = 16 + i % 17;
        for (size_t j = 0; j < suf; j++)
            tok[PREFIX + j] = 1000000u + i * 64u + (uint32_t)j;
        pc_radix_match_result m;
        cr_assert_eq(pc_radix_match(t, "m", 1, tok, PREFIX + suf, NULL, 0,
                                    PC_RADIX_MATCH_PEEK, &m),
                     0);
        cr_assert_eq(m.tokens, PREFIX + (suf / P) * P, "seq %u", i);
    }
    free(tok);
    free(blk);
    pc_radix_destroy(t);
}

/* ---- argument errors ----------------------------------------------------- */

Test(radix, argument_errors)
{
    pc_radix *t = (pc_radix *)&t; /* must stay untouched on failure */
    pc_radix *t0 = t;
    cr_assert_eq(pc_radix_create(0, &t), PC_E_INVAL);
    cr_assert_eq(pc_radix_create(PC_RADIX_PAGE_TOKENS_MAX + 1, &t), PC_E_INVAL);
    cr_assert_eq(pc_radix_create(UINT32_MAX, &t), PC_E_INVAL);
    /* *out is either untouched or NULL after a failure */
    cr_assert(t == t0 || t == NULL, "out holds garbage after a failure");
    cr_assert_eq(pc_radix_create(16, NULL), PC_E_INVAL);
    pc_radix_destroy(NULL);

    /* the extremes are fine */
    t = mk(PC_RADIX_PAGE_TOKENS_MAX);
    pc_radix_destroy(t);
    t = mk(PC_RADIX_PAGE_TOKENS_MIN);
#if SIZE_MAX > UINT32_MAX
    {
        /* more than UINT32_MAX pages: refused before any token is read */
        uint32_t one = 1, blk1 = 1;
        pc_radix_insert_result r;
        pc_radix_stats before = stats(t);
        cr_assert_eq(pc_radix_insert(t, "m", 1, &one, (size_t)UINT32_MAX + 1,
                                     &blk1, NULL, &r),
                     PC_E_RANGE);
        CHECK(t);
        STATS_SAME(t, before);
    }
#endif
    pc_radix_destroy(t);

    t = mk(4);
    uint32_t tok[8], blk[] = {1, 2}, got[2], canon[2];
    seq_fill(tok, 8, 1);
    ins(t, "m", tok, 8, blk, NULL);
    pc_radix_node *n = mt(t, "m", tok, 8, NULL, 0, 0).node;
    char big[PC_RADIX_NS_MAX + 1];
    memset(big, 'm', sizeof(big));
    pc_radix_stats before = stats(t);
    pc_radix_match_result m;
    pc_radix_insert_result r;

    /* namespace too long */
    cr_assert_eq(
        pc_radix_match(t, big, PC_RADIX_NS_MAX + 1, tok, 8, got, 2, 0, &m),
        PC_E_INVAL);
    cr_assert_eq(
        pc_radix_insert(t, big, PC_RADIX_NS_MAX + 1, tok, 8, blk, canon, &r),
        PC_E_INVAL);
    /* NULL tokens with n > 0 */
    cr_assert_eq(pc_radix_match(t, "m", 1, NULL, 8, got, 2, 0, &m), PC_E_INVAL);
    cr_assert_eq(
        pc_radix_match(t, "m", 1, NULL, 1, got, 2, PC_RADIX_MATCH_SPLIT, &m),
        PC_E_INVAL);
    cr_assert_eq(pc_radix_insert(t, "m", 1, NULL, 8, blk, canon, &r),
                 PC_E_INVAL);
    /* NULL blocks with a full page */
    cr_assert_eq(pc_radix_insert(t, "z", 1, tok, 8, NULL, canon, &r),
                 PC_E_INVAL);
    /* NULL tree / out */
    cr_assert_eq(pc_radix_match(NULL, "m", 1, tok, 8, got, 2, 0, &m),
                 PC_E_INVAL);
    cr_assert_eq(pc_radix_match(t, "m", 1, tok, 8, got, 2, 0, NULL),
                 PC_E_INVAL);
    cr_assert_eq(pc_radix_insert(NULL, "m", 1, tok, 8, blk, canon, &r),
                 PC_E_INVAL);
    cr_assert_eq(pc_radix_insert(t, "z", 1, tok, 8, blk, canon, NULL),
                 PC_E_INVAL);
    /* unknown flags */
    cr_assert_eq(pc_radix_match(t, "m", 1, tok, 8, got, 2, 1u << 7, &m),
                 PC_E_INVAL);
    /* lock / unlock NULL */
    cr_assert_eq(pc_radix_lock(t, NULL), PC_E_INVAL);
    cr_assert_eq(pc_radix_unlock(t, NULL), PC_E_INVAL);
    cr_assert_eq(pc_radix_lock(NULL, n), PC_E_INVAL);
    cr_assert_eq(pc_radix_unlock(NULL, n), PC_E_INVAL);
    CHECK(t);
    STATS_SAME(t, before);
    cr_assert_eq(pc_radix_node_lock_ref(n), 0);

    /* valid edge cases: a 256-byte namespace, NULL tokens with n == 0,
     * NULL blocks without a full page, an empty match */
    cr_assert_eq(pc_radix_match(t, big, PC_RADIX_NS_MAX, tok, 8, got, 2, 0, &m),
                 0);
    cr_assert_eq(m.pages, 0);
    cr_assert_eq(pc_radix_match(t, "m", 1, NULL, 0, NULL, 0, 0, &m), 0);
    cr_assert_eq(m.pages, 0);
    cr_assert_null(m.node);
    cr_assert_eq(pc_radix_insert(t, "m", 1, NULL, 0, NULL, NULL, &r), 0);
    cr_assert_eq(r.inserted_pages, 0);
    cr_assert_null(r.node);
    cr_assert_eq(pc_radix_insert(t, "m", 1, tok, 3, NULL, NULL, &r), 0);
    cr_assert_null(r.node);
    CHECK(t);
    cr_assert_eq(stats(t).pages, 2);
    pc_radix_destroy(t);
}

/* With the test hook, every allocation an operation makes can fail in turn:
 * the call returns PC_E_NOMEM and the tree is exactly as before. */
static void oom_changes_nothing(pc_radix_policy policy)
{
    pc_radix *t = mk(4);
    cr_assert_eq(pc_radix_set_policy(t, policy), 0);
    uint32_t tok[24], b[6], b2[6], canon[6], got[6];
    seq_fill(tok, 24, 1);
    seq_fill(b, 6, 1);
    seq_fill(b2, 6, 100);
    /* 7 siblings + tok's tail = 8 children under [1 2 3 4]; the third op
     * below adds a ninth, so that the child table has to grow too */
    for (uint32_t i = 0; i < 7; i++) {
        uint32_t s[8] = {1, 2, 3, 4, 500 + i, 0, 0, 0};
        ins(t, "m", s, 8, (uint32_t[]){1, 900 + i}, NULL);
    }
    ins(t, "m", tok, 24, b, NULL);

    /* insert into a new namespace, one that splits, and one that adds a
     * ninth child; SPLIT match */
    uint32_t div[24];
    memcpy(div, tok, sizeof(div));
    div[13] = 77; /* diverges inside page 4 */
    struct {
        const char *ns;
        const uint32_t *tok;
        size_t n;
        unsigned match_flags; /* 0: insert */
    } ops[] = {
        {"new", tok, 24, 0},
        {"m", div, 24, 0},
        {"m", (uint32_t[]){1, 2, 3, 4, 600, 0, 0, 0}, 8, 0},
        {"m", tok, 10, PC_RADIX_MATCH_SPLIT},
    };
    for (size_t o = 0; o < NELEM(ops); o++) {
        int rc = PC_E_NOMEM;
        unsigned nth;
        for (nth = 1; nth < 64 && rc == PC_E_NOMEM; nth++) {
            pc_radix_stats before = stats(t);
            pc_radix_debug_fail_alloc(t, nth);
            if (ops[o].match_flags) {
                pc_radix_match_result m;
                rc = pc_radix_match(t, ops[o].ns, strlen(ops[o].ns), ops[o].tok,
                                    ops[o].n, got, 6, ops[o].match_flags, &m);
            } else {
                pc_radix_insert_result r;
                rc = pc_radix_insert(t, ops[o].ns, strlen(ops[o].ns),
                                     ops[o].tok, ops[o].n, b2, canon, &r);
            }
            pc_radix_debug_fail_alloc(t, 0);
            CHECK(t);
            if (rc == PC_E_NOMEM)
                STATS_SAME(t, before);
            else
                TASSERT(t, rc == 0, "op %zu nth %u: %s", o, nth,
                        pc_errname(rc));
        }
        cr_assert_eq(rc, 0, "op %zu never succeeded", o);
        cr_assert_gt(nth, 2, "op %zu allocated nothing?", o);
    }
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.namespaces, 2);
    cr_assert_eq(mpages(t, "new", tok, 24), 6);
    cr_assert_eq(mpages(t, "m", div, 24), 6);
    pc_radix_destroy(t);
}

Test(radix, out_of_memory_changes_nothing) { oom_changes_nothing(PC_POLICY_LRU); }
Test(radix, out_of_memory_changes_nothing_s3fifo)
{
    oom_changes_nothing(PC_POLICY_S3FIFO);
}
Test(radix, out_of_memory_changes_nothing_lfu) { oom_changes_nothing(PC_POLICY_LFU); }

/* ---- blocks_cap ---------------------------------------------------------- */

Test(radix, match_stops_at_blocks_cap)
{
    pc_radix *t = mk(4);
    uint32_t tok[20], b[5], got[6];
    seq_fill(tok, 20, 1);
    seq_fill(b, 5, 41);
    ins(t, "m", tok, 20, b, NULL);

    for (size_t i = 0; i < NELEM(got); i++)
        got[i] = 0xdeadbeef;
    pc_radix_match_result m = mt(t, "m", tok, 20, got, 2, 0);
    cr_assert_eq(m.pages, 2);
    cr_assert_eq(m.tokens, 8);
    assert_ids(t, got, 2, b, 2, "capped");
    cr_assert_eq(got[2], 0xdeadbeef, "wrote past blocks_cap");

    m = mt(t, "m", tok, 20, got, 0, 0);
    cr_assert_eq(m.pages, 0, "cap 0 with a buffer matches nothing");
    cr_assert_null(m.node);
    m = mt(t, "m", tok, 20, NULL, 0, 0);
    cr_assert_eq(m.pages, 5, "no buffer, no cap");
    m = mt(t, "m", tok, 20, got, 6, 0);
    cr_assert_eq(m.pages, 5);
    assert_ids(t, got, 5, b, 5, "uncapped");

    /* with SPLIT the handle covers exactly the capped pages */
    m = mt(t, "m", tok, 20, got, 3, PC_RADIX_MATCH_SPLIT);
    cr_assert_eq(m.pages, 3);
    cr_assert_eq(pc_radix_node_depth_pages(m.node), 3);
    pc_radix_destroy(t);
}

/* ---- PEEK ---------------------------------------------------------------- */

Test(radix, peek_changes_no_stats_and_no_recency)
{
    pc_radix *t = mk(4);
    uint32_t a[8], b[8], got[2];
    seq_fill(a, 8, 100);
    seq_fill(b, 8, 200);
    ins(t, "m", a, 8, (uint32_t[]){101, 102}, NULL);
    ins(t, "m", b, 8, (uint32_t[]){201, 202}, NULL);
    pc_radix_node *na = mt(t, "m", a, 8, NULL, 0, PC_RADIX_MATCH_PEEK).node;
    uint64_t hits = pc_radix_node_hits(na);

    pc_radix_stats before = stats(t);
    for (int i = 0; i < 3; i++) {
        pc_radix_match_result m = mt(t, "m", a, 8, got, 2, PC_RADIX_MATCH_PEEK);
        cr_assert_eq(m.pages, 2);
        cr_assert_eq(got[1], 102);
        mt(t, "m", b, 3, got, 2, PC_RADIX_MATCH_PEEK);  /* no full page */
        mt(t, "zz", a, 8, got, 2, PC_RADIX_MATCH_PEEK); /* unknown ns */
    }
    STATS_SAME(t, before);
    cr_assert_eq(pc_radix_node_hits(na), hits);

    /* A is still the least recently used */
    evrec e;
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){102, 101}, 2, "A first");
    pc_radix_destroy(t);
}

/* ---- stats --------------------------------------------------------------- */

Test(radix, stats_worked_example)
{
    pc_radix *t = mk(4);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.namespaces, 0);
    cr_assert_eq(s.nodes, 0);
    cr_assert_eq(s.pages, 0);
    cr_assert_eq(s.lookups, 0);
    cr_assert_eq(s.inserts, 0);
    uint64_t meta0 = s.metadata_bytes;

    uint32_t x[14], y[12];
    seq_fill(x, 14, 1);
    seq_fill(y, 8, 1);
    seq_fill(y + 8, 4, 50);
    /* X = 3 pages + 2 tokens, blocks 1..3 */
    ins(t, "m", x, 14, (uint32_t[]){1, 2, 3}, NULL);
    s = stats(t);
    cr_assert_eq(s.inserts, 1);
    cr_assert_eq(s.inserted_pages, 3);
    cr_assert_eq(s.duplicate_pages, 0);
    cr_assert_eq(s.nodes, 1);
    cr_assert_eq(s.pages, 3);
    cr_assert_eq(s.tokens, 12);
    cr_assert_eq(s.namespaces, 1);
    cr_assert_eq(s.evictable_pages, 3);
    cr_assert_eq(s.protected_pages, 0);
    cr_assert_gt(s.metadata_bytes, meta0);

    /* Y shares 2 pages: split X into [1 2] + [3], add [50..53] = block 6 */
    ins(t, "m", y, 12, (uint32_t[]){4, 5, 6}, NULL);
    s = stats(t);
    cr_assert_eq(s.inserts, 2);
    cr_assert_eq(s.inserted_pages, 4);
    cr_assert_eq(s.duplicate_pages, 2);
    cr_assert_eq(s.splits, 1);
    cr_assert_eq(s.nodes, 3);
    cr_assert_eq(s.pages, 4);

    /* lookups: full hit (3 of 3 full pages), partial hit (1 of 3), miss in
     * an unknown namespace (0 of 2), no full page at all (0 of 0) */
    cr_assert_eq(mt(t, "m", x, 14, NULL, 0, 0).pages, 3);
    uint32_t z[12] = {1, 2, 3, 4, 99, 99, 99, 99, 7, 7, 7, 7};
    cr_assert_eq(mt(t, "m", z, 12, NULL, 0, 0).pages, 1);
    cr_assert_eq(mt(t, "zz", x, 8, NULL, 0, 0).pages, 0);
    cr_assert_eq(mt(t, "m", x, 3, NULL, 0, 0).pages, 0);
    s = stats(t);
    cr_assert_eq(s.lookups, 4);
    cr_assert_eq(s.hit_pages, 4);
    cr_assert_eq(s.miss_pages, 4);
    /* PEEK counts nothing */
    mt(t, "m", z, 12, NULL, 0, PC_RADIX_MATCH_PEEK);
    s = stats(t);
    cr_assert_eq(s.lookups, 4);
    cr_assert_eq(s.hit_pages, 4);
    cr_assert_eq(s.miss_pages, 4);

    /* SPLIT at page 1: [1 2] becomes [1] + [2] */
    cr_assert_eq(mt(t, "m", x, 4, NULL, 0, PC_RADIX_MATCH_SPLIT).pages, 1);
    s = stats(t);
    cr_assert_eq(s.splits, 2);
    cr_assert_eq(s.nodes, 4);
    cr_assert_eq(s.lookups, 5);
    cr_assert_eq(s.hit_pages, 5);
    cr_assert_eq(s.pages, 4);

    /* LRU: Y's leaf [50..53] (used by the insert) is older than X's leaf
     * [9..12] (matched after it) */
    evrec e;
    cr_assert_eq(ev(t, 1, &e), 1);
    cr_assert_eq(e.ids[0], 6);
    s = stats(t);
    cr_assert_eq(s.evicted_pages, 1);
    cr_assert_eq(s.evicted_nodes, 1);
    cr_assert_eq(s.nodes, 3);
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){3, 2}, 2, "X leaf, then [2]");
    s = stats(t);
    cr_assert_eq(s.evicted_pages, 3);
    cr_assert_eq(s.evicted_nodes, 3);
    cr_assert_eq(s.nodes, 1);
    cr_assert_eq(s.pages, 1);
    cr_assert_eq(ev(t, SIZE_MAX, &e), 1);
    cr_assert_eq(e.ids[0], 1);
    s = stats(t);
    cr_assert_eq(s.evicted_pages, 4);
    cr_assert_eq(s.evicted_nodes, 4);
    cr_assert_eq(s.nodes, 0);
    cr_assert_eq(s.pages, 0);
    cr_assert_eq(s.tokens, 0);
    cr_assert_eq(s.namespaces, 0);
    cr_assert_eq(s.evictable_pages, 0);
    /* history counters survive eviction */
    cr_assert_eq(s.inserts, 2);
    cr_assert_eq(s.inserted_pages, 4);
    cr_assert_eq(s.lookups, 5);
    pc_radix_destroy(t);
}

/* ---- dump ---------------------------------------------------------------- */

Test(radix, dump_mentions_namespace)
{
    pc_radix *t = mk(4);
    uint32_t x[8];
    seq_fill(x, 8, 1);
    ins(t, "llama3-ns", x, 8, (uint32_t[]){31, 32}, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    pc_radix_dump(t, f);
    fclose(f);
    bool nonempty = len > 0;
    bool has_ns = buf && strstr(buf, "llama3-ns") != NULL;
    if (!has_ns)
        fprintf(stderr, "dump:\n%s\n", buf ? buf : "(null)");
    free(buf);

    /* an empty tree dumps without crashing */
    pc_radix *e = mk(4);
    f = tmpfile();
    cr_assert_not_null(f);
    pc_radix_dump(e, f);
    fclose(f);
    pc_radix_destroy(e);
    pc_radix_destroy(t);
    cr_assert(nonempty, "empty dump");
    cr_assert(has_ns, "dump does not mention the namespace");
}

/* ---- insert with a veto, per-namespace eviction -------------------------- */

typedef struct veto {
    int rc;            /* what the check returns                         */
    size_t calls, cached;
    uint32_t seen[16]; /* canonical ids it was shown                     */
} veto;

static int veto_cb(void *ctx, const uint32_t *canon, size_t cached)
{
    veto *v = ctx;
    v->calls++;
    v->cached = cached;
    for (size_t i = 0; i < cached && i < NELEM(v->seen); i++)
        v->seen[i] = canon[i];
    return v->rc;
}

Test(radix, insert_checked_veto_changes_nothing)
{
    pc_radix *t = mk(4);
    uint32_t tok[16], blk[4] = {10, 11, 12, 13}, blk2[4] = {20, 21, 22, 23};
    uint32_t canon[4];
    seq_fill(tok, 16, 100);
    ins(t, "m", tok, 8, blk, NULL); /* two pages cached */
    pc_radix_stats before = stats(t);

    /* The check sees the cached pages' canonical ids; a veto changes
     * nothing, not even recency or counters. */
    veto v = {PC_E_PERM, 0, 0, {0}};
    pc_radix_insert_result r;
    int rc = pc_radix_insert_checked(t, "m", 1, tok, 16, blk2, canon, veto_cb,
                                     &v, &r);
    cr_assert_eq(rc, PC_E_PERM);
    cr_assert_eq(v.calls, 1);
    cr_assert_eq(v.cached, 2);
    cr_assert_eq(v.seen[0], 10);
    cr_assert_eq(v.seen[1], 11);
    CHECK(t);
    STATS_SAME(t, before);
    cr_assert_eq(mpages(t, "m", tok, 16), 2);

    /* A check that says yes: the insert goes through as usual. */
    v.rc = 0;
    rc = pc_radix_insert_checked(t, "m", 1, tok, 16, blk2, canon, veto_cb, &v,
                                 &r);
    cr_assert_eq(rc, 0);
    CHECK(t);
    cr_assert_eq(r.cached_tokens, 8);
    cr_assert_eq(r.inserted_pages, 2);
    uint32_t want[4] = {10, 11, 22, 23};
    assert_ids(t, canon, 4, want, 4, "canon after checked insert");

    /* A veto on a brand-new namespace creates no namespace. */
    v.rc = PC_E_LIMIT;
    before = stats(t);
    rc = pc_radix_insert_checked(t, "other", 5, tok, 16, blk2, canon, veto_cb,
                                 &v, &r);
    cr_assert_eq(rc, PC_E_LIMIT);
    cr_assert_eq(v.cached, 0);
    STATS_SAME(t, before);
    CHECK(t);
    /* check without canon is an argument error */
    cr_assert_eq(pc_radix_insert_checked(t, "m", 1, tok, 16, blk2, NULL,
                                         veto_cb, &v, &r),
                 PC_E_INVAL);
    pc_radix_destroy(t);
}

Test(radix, evict_ns_flushes_one_namespace_and_keeps_pins)
{
    pc_radix *t = mk(4);
    uint32_t a[16], b[16], c[16], blk[4];
    seq_fill(a, 16, 1000);
    seq_fill(b, 16, 1000);
    b[8] = 7; /* shares two pages with a */
    seq_fill(c, 16, 5000);
    seq_fill(blk, 4, 100);
    ins(t, "A", a, 16, blk, NULL);
    seq_fill(blk, 4, 200);
    ins(t, "A", b, 16, blk, NULL);
    seq_fill(blk, 4, 300);
    ins(t, "B", c, 16, blk, NULL);
    pc_radix_stats s = stats(t);
    cr_assert_eq(s.pages, 4 + 2 + 4);

    /* Pin a's first three pages. */
    pc_radix_match_result m = mt(t, "A", a, 12, NULL, 0, PC_RADIX_MATCH_SPLIT);
    cr_assert_eq(m.pages, 3);
    lock_ok(t, m.node);

    evrec r = {{0}, 0};
    size_t n = 0;
    cr_assert_eq(pc_radix_evict_ns(t, "A", 1, ev_cb, &r, &n), 0);
    CHECK(t);
    /* a's 4th page and b's two own pages go; the pinned three stay. */
    cr_assert_eq(n, 3);
    cr_assert_eq(r.n, 3);
    uint32_t want[3] = {103, 202, 203};
    assert_id_set(t, r.ids, r.n, want, 3, "flushed ids");
    cr_assert_eq(mpages(t, "A", a, 16), 3);
    cr_assert_eq(mpages(t, "A", b, 16), 2);
    cr_assert_eq(mpages(t, "B", c, 16), 4, "another namespace is untouched");

    /* Unknown namespace: nothing, no error. */
    cr_assert_eq(pc_radix_evict_ns(t, "nope", 4, ev_cb, &r, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(pc_radix_evict_ns(t, NULL, 300, ev_cb, &r, &n), PC_E_INVAL);

    /* Unpinned, the namespace goes entirely, and with it its root. */
    unlock_ok(t, m.node);
    r.n = 0;
    cr_assert_eq(pc_radix_evict_ns(t, "A", 1, ev_cb, &r, &n), 0);
    CHECK(t);
    cr_assert_eq(n, 3);
    s = stats(t);
    cr_assert_eq(s.namespaces, 1);
    cr_assert_eq(s.pages, 4);
    pc_radix_destroy(t);
}

/* What pc_radix_evict_paths reported: each page's block, its index and
 * the tokens of its whole prefix, copied. */
typedef struct pathrec {
    size_t n;
    uint32_t block[32];
    size_t page[32];
    uint32_t prefix[32][16];
    char ns[32][8];
} pathrec;

static void path_cb(void *ctx, const pc_radix_evicted *e)
{
    pathrec *r = ctx;
    cr_assert(e->tokens, "the prefix was assembled");
    cr_assert_gt(e->n_pages, 0);
    for (size_t i = 0; i < e->n_pages; i++) {
        cr_assert_lt(r->n, 32);
        size_t pg = e->first_page + i;
        r->block[r->n] = e->blocks[i];
        r->page[r->n] = pg;
        cr_assert_leq((pg + 1) * 4, 16);
        memcpy(r->prefix[r->n], e->tokens, (pg + 1) * 4 * sizeof(uint32_t));
        snprintf(r->ns[r->n], sizeof(r->ns[0]), "%.*s", (int)e->ns_len,
                 (const char *)e->ns);
        r->n++;
    }
}

Test(radix, evict_paths_reports_each_page_with_its_prefix)
{
    /* a and b share two pages, then split; b's own pages sit in a child
     * node, a's in another: the prefix must be assembled across nodes */
    pc_radix *t = mk(4);
    uint32_t a[16], b[16], c[8];
    seq_fill(a, 16, 1000);
    seq_fill(b, 16, 1000);
    b[8] = 7;
    seq_fill(c, 8, 5000);
    ins(t, "A", a, 16, (uint32_t[]){101, 102, 103, 104}, NULL);
    ins(t, "A", b, 16, (uint32_t[]){101, 102, 203, 204}, NULL);
    ins(t, "Bq", c, 8, (uint32_t[]){301, 302}, NULL);
    pathrec r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(pc_radix_evict_paths(t, 100, path_cb, &r), 8);
    CHECK(t);
    cr_assert_eq(r.n, 8);
    cr_assert_eq(stats(t).pages, 0);
    for (size_t i = 0; i < r.n; i++) {
        const uint32_t *src = NULL;
        uint32_t b0 = r.block[i];
        if (b0 >= 300)
            src = c;
        else if (b0 >= 200 || r.page[i] < 2)
            src = (b0 >= 200) ? b : a; /* shared pages: a's tokens = b's */
        else
            src = a;
        cr_assert_str_eq(r.ns[i], b0 >= 300 ? "Bq" : "A");
        cr_assert_eq(r.page[i], (size_t)(b0 % 100 - 1), "block %u at page %zu",
                     b0, r.page[i]);
        cr_assert_arr_eq(r.prefix[i], src, (r.page[i] + 1) * 4 * sizeof(uint32_t),
                         "block %u: prefix differs", b0);
    }
    /* a pinned path is never reported: only what is evicted */
    ins(t, "A", a, 16, (uint32_t[]){101, 102, 103, 104}, NULL);
    pc_radix_match_result m = mt(t, "A", a, 8, NULL, 0, PC_RADIX_MATCH_SPLIT);
    lock_ok(t, m.node);
    memset(&r, 0, sizeof(r));
    cr_assert_eq(pc_radix_evict_paths(t, 100, path_cb, &r), 2);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.block[0] + r.block[1], 103 + 104);
    unlock_ok(t, m.node);
    CHECK(t);
    pc_radix_destroy(t);
}

/* What pc_radix_evict_ns_paths reported: each page with its whole prefix. */
typedef struct nspathrec {
    int n;              /* pages reported                          */
    uint32_t blk[16];
    uint32_t tok[16][16]; /* per page: the prefix through it (4-token pages) */
    size_t depth[16];   /* pages from the root through it          */
    char ns[16][4];
} nspathrec;

static void nspath_cb(void *ctx, const pc_radix_evicted *e)
{
    nspathrec *r = ctx;
    cr_assert_not_null(e->tokens);
    for (size_t i = 0; i < e->n_pages; i++) {
        int k = r->n++;
        cr_assert_lt(k, 16);
        size_t d = e->first_page + i + 1;
        r->blk[k] = e->blocks[i];
        r->depth[k] = d;
        memcpy(r->tok[k], e->tokens, d * 4 * sizeof(uint32_t));
        memcpy(r->ns[k], e->ns, e->ns_len);
        r->ns[k][e->ns_len] = 0;
    }
}

Test(radix, evict_ns_paths_reports_every_page_with_its_prefix)
{
    pc_radix *t = mk(4);
    uint32_t a[16], b[16], c[16], blk[4];
    seq_fill(a, 16, 1000);
    seq_fill(b, 16, 1000);
    b[8] = 7; /* shares two pages with a */
    seq_fill(c, 16, 5000);
    seq_fill(blk, 4, 100);
    ins(t, "A", a, 16, blk, NULL);
    seq_fill(blk, 4, 200);
    ins(t, "A", b, 16, blk, NULL);
    seq_fill(blk, 4, 300);
    ins(t, "B", c, 16, blk, NULL);
    /* Pin a's first page: it stays, everything else of A goes. */
    pc_radix_match_result m = mt(t, "A", a, 4, NULL, 0, PC_RADIX_MATCH_SPLIT);
    lock_ok(t, m.node);
    nspathrec r;
    memset(&r, 0, sizeof(r));
    size_t n = 0;
    cr_assert_eq(pc_radix_evict_ns_paths(t, "A", 1, nspath_cb, &r, &n), 0);
    CHECK(t);
    cr_assert_eq(n, 5);
    cr_assert_eq(r.n, 5);
    for (int k = 0; k < r.n; k++) {
        /* block 10x is a's page x, 20x b's page x: the prefix must be that
         * sequence's, through that page */
        const uint32_t *seq = r.blk[k] / 100 == 1 ? a : b;
        cr_assert_eq(r.depth[k], r.blk[k] % 100 + 1, "block %u", r.blk[k]);
        cr_assert_str_eq(r.ns[k], "A");
        cr_assert_arr_eq(r.tok[k], seq, r.depth[k] * 4 * sizeof(uint32_t));
    }
    uint32_t want[5] = {101, 102, 103, 202, 203};
    assert_id_set(t, r.blk, (size_t)r.n, want, 5, "flushed ids");
    cr_assert_eq(mpages(t, "A", a, 16), 1);
    cr_assert_eq(mpages(t, "B", c, 16), 4);
    unlock_ok(t, m.node);
    memset(&r, 0, sizeof(r));
    cr_assert_eq(pc_radix_evict_ns_paths(t, "A", 1, nspath_cb, &r, &n), 0);
    CHECK(t);
    cr_assert_eq(n, 1);
    cr_assert_eq(r.blk[0], 100);
    cr_assert_eq(stats(t).namespaces, 1);
    cr_assert_eq(pc_radix_evict_ns_paths(t, NULL, 300, nspath_cb, &r, &n),
                 PC_E_INVAL);
    pc_radix_destroy(t);
}

/* ---- eviction policies ----------------------------------------------------- */

/* Three 2-page prompts A (1xx), B (2xx), C (3xx) under one namespace, as in
 * evict_is_lru; `seqs` gets their tokens. */
static pc_radix *abc(pc_radix_policy policy, uint32_t seqs[3][8])
{
    pc_radix *t = mk(4);
    cr_assert_eq(pc_radix_set_policy(t, policy), 0);
    cr_assert_eq(pc_radix_get_policy(t), policy);
    CHECK(t);
    for (uint32_t i = 0; i < 3; i++) {
        seq_fill(seqs[i], 8, 100 * (i + 1));
        ins(t, "m", seqs[i], 8,
            (uint32_t[]){100 * (i + 1) + 1, 100 * (i + 1) + 2}, NULL);
    }
    return t;
}

Test(radix_policy, names_parse_and_refuse)
{
    for (int p = 0; p < PC_POLICY_COUNT; p++) {
        pc_radix_policy back;
        const char *name = pc_radix_policy_name((pc_radix_policy)p);
        cr_assert_not_null(name);
        cr_assert_eq(pc_radix_policy_parse(name, &back), 0);
        cr_assert_eq(back, (pc_radix_policy)p);
    }
    pc_radix_policy x;
    cr_assert_eq(pc_radix_policy_parse("LRU", &x), PC_E_INVAL);
    cr_assert_eq(pc_radix_policy_parse("", &x), PC_E_INVAL);
    cr_assert_null(pc_radix_policy_name(PC_POLICY_COUNT));
    pc_radix *t = mk(4);
    cr_assert_eq(pc_radix_set_policy(t, PC_POLICY_COUNT), PC_E_INVAL);
    cr_assert_eq(pc_radix_set_policy(NULL, PC_POLICY_LFU), PC_E_INVAL);
    cr_assert_eq(pc_radix_get_policy(t), PC_POLICY_LRU);
    cr_assert_eq(pc_radix_set_ns_priority(t, NULL, 3, 1), PC_E_INVAL);
    pc_radix_destroy(t);
}

Test(radix_policy, fifo_ignores_hits)
{
    uint32_t s[3][8];
    pc_radix *t = abc(PC_POLICY_FIFO, s);
    cr_assert_eq(mt(t, "m", s[0], 8, NULL, 0, 0).pages, 2); /* A hit: no matter */
    evrec e;
    cr_assert_eq(ev(t, 3, &e), 3);
    assert_ids(t, e.ids, e.n, (uint32_t[]){102, 101, 202}, 3, "A, then B's tail");
    pc_radix_destroy(t);
}

Test(radix_policy, lfu_keeps_the_frequent_and_ages)
{
    uint32_t s[3][8];
    pc_radix *t = abc(PC_POLICY_LFU, s);
    for (int i = 0; i < 3; i++)
        mt(t, "m", s[0], 8, NULL, 0, 0); /* A: 3 hits */
    mt(t, "m", s[2], 8, NULL, 0, 0);     /* C: 1 hit  */
    evrec e;
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){202, 201}, 2, "B: never hit");
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){302, 301}, 2, "C: one hit");
    /* Ageing: the last victim's key (L = 2) is where newcomers start, so a
     * prompt that is hit now and then soon outranks A's old three hits. */
    uint32_t d[8];
    seq_fill(d, 8, 400);
    for (int round = 0; round < 3; round++) {
        ins(t, "m", d, 8, (uint32_t[]){401, 402}, NULL);
        mt(t, "m", d, 8, NULL, 0, 0);
        mt(t, "m", d, 8, NULL, 0, 0);
        cr_assert_eq(ev(t, 2, &e), 2);
        if (e.ids[0] == 102)
            break; /* A went: its stale count aged out */
        assert_ids(t, e.ids, e.n, (uint32_t[]){402, 401}, 2, "D before A");
    }
    assert_ids(t, e.ids, e.n, (uint32_t[]){102, 101}, 2, "A aged out");
    cr_assert_eq(mpages(t, "m", d, 8), 2);
    pc_radix_destroy(t);
}

Test(radix_policy, s3fifo_small_queue_ghost_and_main)
{
    uint32_t s[3][8];
    pc_radix *t = abc(PC_POLICY_S3FIFO, s); /* A, B, C in the small queue */
    mt(t, "m", s[0], 8, NULL, 0, 0);          /* A hit while small      */
    evrec e;
    /* The small queue holds every page (>= 10%): A, hit, moves to main;
     * B, the oldest never hit, goes (to the ghost). */
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){202, 201}, 2, "B first");
    /* B comes back: remembered by the ghost, it goes straight to main. */
    ins(t, "m", s[1], 8, (uint32_t[]){211, 212}, NULL);
    /* Now small = {C} (2 of 6 pages, >= 10%): C goes next although A and
     * B are older in main. */
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){302, 301}, 2, "C from small");
    /* Main in FIFO order: A (moved first), then B. */
    cr_assert_eq(ev(t, 4, &e), 4);
    assert_ids(t, e.ids, e.n, (uint32_t[]){102, 101, 212, 211}, 4, "main FIFO");
    pc_radix_destroy(t);
}

Test(radix_policy, s3fifo_main_gives_hit_pages_another_round)
{
    uint32_t s[3][8];
    pc_radix *t = abc(PC_POLICY_S3FIFO, s);
    for (int i = 0; i < 3; i++) /* all three hit: all move to main */
        mt(t, "m", s[i], 8, NULL, 0, 0);
    evrec e;
    /* Moving resets the counters; main evicts A first (moved first)... */
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){102, 101}, 2, "A");
    /* ...but a hit in main buys B another round: C goes before it. */
    mt(t, "m", s[1], 8, NULL, 0, 0);
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){302, 301}, 2, "C before B");
    pc_radix_destroy(t);
}

Test(radix_policy, priority_evicts_low_namespaces_first)
{
    pc_radix *t = mk(4);
    cr_assert_eq(pc_radix_set_policy(t, PC_POLICY_PRIORITY), 0);
    /* set before the namespace exists: remembered */
    cr_assert_eq(pc_radix_set_ns_priority(t, "gold", 4, 10), 0);
    uint32_t g1[8], g2[8], b1[8];
    seq_fill(g1, 8, 100);
    seq_fill(g2, 8, 200);
    seq_fill(b1, 8, 300);
    ins(t, "gold", g1, 8, (uint32_t[]){101, 102}, NULL);
    ins(t, "gold", g2, 8, (uint32_t[]){201, 202}, NULL);
    ins(t, "bronze", b1, 8, (uint32_t[]){301, 302}, NULL);
    mt(t, "gold", g1, 8, NULL, 0, 0); /* g1 most recent within gold */
    evrec e;
    cr_assert_eq(ev(t, 4, &e), 4);
    assert_ids(t, e.ids, e.n, (uint32_t[]){302, 301, 202, 201}, 4,
               "bronze (0) although newest, then gold LRU");
    /* Lowering gold's priority below a new namespace's re-orders at once. */
    ins(t, "bronze", b1, 8, (uint32_t[]){311, 312}, NULL);
    cr_assert_eq(pc_radix_set_ns_priority(t, "gold", 4, -1), 0);
    CHECK(t);
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){102, 101}, 2, "gold now lower");
    pc_radix_clear_ns_priorities(t);
    CHECK(t);
    pc_radix_destroy(t);
}

/* Switching at run time keeps everything cached and pinned, under every
 * pair of policies. */
Test(radix_policy, switching_keeps_content_and_locks)
{
    for (int from = 0; from < PC_POLICY_COUNT; from++)
        for (int to = 0; to < PC_POLICY_COUNT; to++) {
            uint32_t s[3][8];
            pc_radix *t = abc((pc_radix_policy)from, s);
            pc_radix_match_result m = mt(t, "m", s[1], 8, NULL, 0, 0);
            lock_ok(t, m.node);
            cr_assert_eq(pc_radix_set_policy(t, (pc_radix_policy)to), 0);
            CHECK(t);
            for (int i = 0; i < 3; i++)
                cr_assert_eq(mpages(t, "m", s[i], 8), 2);
            evrec e;
            cr_assert_eq(ev(t, SIZE_MAX, &e), 4, "%d -> %d", from, to);
            cr_assert_eq(mpages(t, "m", s[1], 8), 2, "the pinned prompt stays");
            unlock_ok(t, m.node);
            cr_assert_eq(ev(t, SIZE_MAX, &e), 2);
            pc_radix_destroy(t);
        }
}

/* auto: a miss-or-insert cache of `cap` pages driven by 1-page prompts. */
static void auto_access(pc_radix *t, uint32_t key, size_t cap, size_t *hits)
{
    uint32_t tok = key, blk = key;
    pc_radix_match_result m = mt(t, "m", &tok, 1, NULL, 0, 0);
    if (m.pages) {
        ++*hits;
        return;
    }
    ins(t, "m", &tok, 1, &blk, NULL);
    pc_radix_stats s = stats(t);
    if (s.pages > cap) {
        evrec e;
        ev(t, s.pages - cap, &e);
    }
}

Test(radix_policy, auto_follows_the_simulation_that_hits_more)
{
    enum { CAP = 64, HOT = 30 };
    pc_radix *t = mk(1);
    cr_assert_eq(pc_radix_set_capacity(t, CAP), 0);
    cr_assert_eq(pc_radix_set_policy(t, PC_POLICY_AUTO), 0);
    CHECK(t);
    pc_radix_auto_stats a;
    pc_radix_auto_stats_get(t, &a);
    cr_assert_eq(a.using_s3fifo, 0, "starts as LRU");

    /* A loop over 40 pages fits: both simulations hit alike, no switch. */
    size_t hits = 0;
    for (uint32_t i = 0; i < 4000; i++)
        auto_access(t, 1 + i % 40, CAP, &hits);
    pc_radix_auto_stats_get(t, &a);
    cr_assert_eq(a.switches, 0, "switched on a tie");
    cr_assert_eq(a.using_s3fifo, 0);
    cr_assert_geq(hits, 4000 - 40 - 40, "a loop that fits must hit");
    cr_assert_gt(a.sampled, 3000);

    /* A hot set of 30 pages between scans of 3 one-time pages each: LRU's
     * reuse distance (120) exceeds the cache and it misses every time;
     * S3-FIFO keeps the hot set in its main queue.  auto must switch and
     * then hit most hot accesses. */
    hits = 0;
    uint32_t next_cold = 1000000, hot_seen = 0;
    size_t hot_hits = 0;
    for (uint32_t i = 0; i < 8000; i++) {
        size_t before = hits;
        if (i % 4 == 0) {
            auto_access(t, 100 + (i / 4) % HOT, CAP, &hits);
            if (i >= 6000) {
                hot_seen++;
                hot_hits += hits - before;
            }
        } else {
            auto_access(t, next_cold++, CAP, &hits);
        }
    }
    pc_radix_auto_stats_get(t, &a);
    cr_log_info("auto: switches %llu, sampled %llu, lru hits %llu, s3fifo hits %llu",
                (unsigned long long)a.switches, (unsigned long long)a.sampled,
                (unsigned long long)a.lru_hits, (unsigned long long)a.s3fifo_hits);
    cr_assert_eq(a.using_s3fifo, 1, "S3-FIFO hits more here");
    cr_assert_geq(a.switches, 1);
    cr_assert_gt(a.s3fifo_hits, a.lru_hits);
    cr_assert_geq(hot_hits * 10, (size_t)hot_seen * 8,
                  "hot pages hit %zu of %u in the last quarter", hot_hits, hot_seen);
    /* Switching away drops the simulations; the stats go quiet. */
    cr_assert_eq(pc_radix_set_policy(t, PC_POLICY_LRU), 0);
    CHECK(t);
    pc_radix_auto_stats_get(t, &a);
    cr_assert_eq(a.switches, 0);
    pc_radix_destroy(t);
}

/* A failed switch changes nothing: not the policy, not the memory, and the
 * tree still checks (the heaps made for the switch are dropped). */
Test(radix_policy, failed_switch_changes_nothing)
{
    uint32_t s[3][8];
    pc_radix *t = abc(PC_POLICY_LRU, s);
    cr_assert_eq(pc_radix_set_capacity(t, 1000), 0);
    cr_assert_eq(pc_radix_set_capacity(t, UINT64_C(1) << 33), PC_E_RANGE);
    for (pc_radix_policy p = PC_POLICY_LFU; p < PC_POLICY_COUNT; p++) {
        int rc = PC_E_NOMEM;
        unsigned nth;
        for (nth = 1; nth < 16 && rc == PC_E_NOMEM; nth++) {
            pc_radix_stats before = stats(t);
            pc_radix_debug_fail_alloc(t, nth);
            rc = pc_radix_set_policy(t, p);
            pc_radix_debug_fail_alloc(t, 0);
            CHECK(t);
            if (rc == PC_E_NOMEM) {
                STATS_SAME(t, before);
                cr_assert_eq(pc_radix_get_policy(t), PC_POLICY_LRU);
            }
        }
        cr_assert_eq(rc, 0, "%s never switched", pc_radix_policy_name(p));
        cr_assert_gt(nth, 2, "%s allocated nothing?", pc_radix_policy_name(p));
        cr_assert_eq(pc_radix_set_policy(t, PC_POLICY_LRU), 0);
        CHECK(t);
    }
    /* auto without a capacity: the simulations go, victims are LRU's */
    cr_assert_eq(pc_radix_set_policy(t, PC_POLICY_AUTO), 0);
    cr_assert_eq(pc_radix_set_capacity(t, 0), 0);
    CHECK(t);
    pc_radix_auto_stats a;
    pc_radix_auto_stats_get(t, &a);
    cr_assert_eq(a.using_s3fifo, 0);
    mt(t, "m", s[0], 8, NULL, 0, 0); /* A most recent: LRU takes B */
    evrec e;
    cr_assert_eq(ev(t, 2, &e), 2);
    assert_ids(t, e.ids, e.n, (uint32_t[]){202, 201}, 2, "LRU order");
    pc_radix_destroy(t);
}

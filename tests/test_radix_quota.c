/*
 * tests/test_radix_quota.c - per-namespace limits (radix/radix.h, issue
 * 14): page counts per namespace, the quota (max_pages) enforced by
 * eviction on insert and on a lower limit, the reserve (min_pages) that
 * eviction for space respects under every policy, limits remembered for
 * namespaces that do not exist yet, and the reserve / clear / set steps that
 * let a caller apply a whole new set all or nothing.
 *
 * pc_radix_check() runs after every mutation; it recomputes the namespace
 * counts and the evictable / reserved / protected pages from scratch.
 * Page size 1 (one token per page) unless said otherwise: a prompt of n
 * tokens is n pages, and block ids name their page (ns a: 1xx, b: 2xx).
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "radix/radix.h"

#define CHECK(t)                                                               \
    do {                                                                       \
        int check_rc_ = pc_radix_check(t);                                     \
        if (check_rc_ != 0)                                                    \
            pc_radix_dump((t), stderr);                                        \
        cr_assert_eq(check_rc_, 0, "pc_radix_check() = %d (%s) at line %d",    \
                     check_rc_, pc_errname(check_rc_), __LINE__);              \
    } while (0)

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static pc_radix *mk(void)
{
    pc_radix *t = NULL;
    cr_assert_eq(pc_radix_create(1, &t), 0);
    CHECK(t);
    return t;
}

/* Recorder for evicted block ids (the hook's and pc_radix_evict's). */
typedef struct evrec {
    uint32_t ids[256];
    size_t n;
} evrec;

static void ev_cb(void *ctx, uint32_t block)
{
    evrec *r = ctx;
    if (r->n < NELEM(r->ids))
        r->ids[r->n] = block;
    r->n++;
}

/* Insert tokens first..first+n-1 (one page each) with blocks blk0.. into
 * ns; returns the handle. */
static pc_radix_node *put(pc_radix *t, const char *ns, uint32_t first,
                          size_t n, uint32_t blk0)
{
    uint32_t tok[64], blk[64];
    cr_assert(n <= NELEM(tok));
    for (size_t i = 0; i < n; i++) {
        tok[i] = first + (uint32_t)i;
        blk[i] = blk0 + (uint32_t)i;
    }
    pc_radix_insert_result r;
    int rc = pc_radix_insert(t, ns, strlen(ns), tok, n, blk, NULL, &r);
    cr_assert_eq(rc, 0, "insert: %s", pc_errname(rc));
    CHECK(t);
    return r.node;
}

static uint64_t ns_pages(const pc_radix *t, const char *ns)
{
    uint64_t p = 0xdead;
    cr_assert_eq(pc_radix_ns_pages(t, ns, strlen(ns), &p), 0);
    return p;
}

static pc_radix_stats st(const pc_radix *t)
{
    pc_radix_stats s;
    pc_radix_stats_get(t, &s);
    cr_assert_eq(s.evictable_pages + s.reserved_pages + s.protected_pages,
                 s.pages, "evictable + reserved + protected != pages");
    return s;
}

static void limits(pc_radix *t, const char *ns, uint64_t min, uint64_t max)
{
    int rc = pc_radix_set_ns_limits(t, ns, strlen(ns), min, max);
    cr_assert_eq(rc, 0, "set_ns_limits(%s, %" PRIu64 ", %" PRIu64 "): %s", ns,
                 min, max, pc_errname(rc));
    CHECK(t);
}

/* Is the page of token tok cached in ns (as the first page of a prompt)? */
static bool has(pc_radix *t, const char *ns, uint32_t tok)
{
    pc_radix_match_result r;
    cr_assert_eq(pc_radix_match(t, ns, strlen(ns), &tok, 1, NULL, 0,
                                PC_RADIX_MATCH_PEEK, &r), 0);
    return r.pages == 1;
}

/* ---- page counts ------------------------------------------------------------ */

Test(radix_quota, namespace_page_counts_are_exact)
{
    pc_radix *t = mk();
    cr_assert_eq(ns_pages(t, "a"), 0);
    put(t, "a", 10, 3, 100);
    pc_radix_node *n = put(t, "a", 20, 2, 110);
    put(t, "b", 10, 4, 200);
    cr_assert_eq(ns_pages(t, "a"), 5);
    cr_assert_eq(ns_pages(t, "b"), 4);
    cr_assert_eq(pc_radix_lock(t, n), 0);
    CHECK(t);
    cr_assert_eq(st(t).protected_pages, 2);
    evrec e = {.n = 0};
    cr_assert_eq(pc_radix_evict(t, 100, ev_cb, &e), 7);
    CHECK(t);
    cr_assert_eq(ns_pages(t, "a"), 2);
    cr_assert_eq(ns_pages(t, "b"), 0);
    cr_assert_eq(pc_radix_unlock(t, n), 0);
    CHECK(t);
    cr_assert_eq(pc_radix_ns_pages(t, NULL, 1, &(uint64_t){0}), PC_E_INVAL);
    cr_assert_eq(pc_radix_ns_pages(t, "a", 1, NULL), PC_E_INVAL);
    pc_radix_destroy(t);
}

/* ---- quota ------------------------------------------------------------------ */

Test(radix_quota, insert_keeps_namespace_at_max_lru_first)
{
    pc_radix *t = mk();
    evrec hook = {.n = 0};
    pc_radix_set_evict_hook(t, ev_cb, &hook);
    limits(t, "a", 0, 4);
    put(t, "a", 10, 2, 100); /* oldest */
    put(t, "a", 20, 2, 110);
    put(t, "b", 10, 6, 200); /* another namespace: not a's quota */
    cr_assert_eq(hook.n, 0);
    put(t, "a", 30, 3, 120); /* 7 > 4: the oldest leaf, then the next */
    cr_assert_eq(ns_pages(t, "a"), 4);
    cr_assert_eq(ns_pages(t, "b"), 6);
    /* 10-11 whole (deepest first), then 21 (deepest of the next leaf) */
    uint32_t want[] = {101, 100, 111};
    cr_assert_eq(hook.n, NELEM(want));
    for (size_t i = 0; i < NELEM(want); i++)
        cr_assert_eq(hook.ids[i], want[i], "hook id %zu: %u != %u", i,
                     hook.ids[i], want[i]);
    pc_radix_stats s = st(t);
    cr_assert_eq(s.evicted_quota_pages, 3);
    cr_assert_eq(s.evicted_pages, 3);
    cr_assert(!has(t, "a", 10) && has(t, "a", 20) && has(t, "a", 30));
    pc_radix_destroy(t);
}

Test(radix_quota, never_locked_never_the_inserted_node)
{
    pc_radix *t = mk();
    evrec hook = {.n = 0};
    pc_radix_set_evict_hook(t, ev_cb, &hook);
    limits(t, "a", 0, 4);
    pc_radix_node *x = put(t, "a", 10, 2, 100);
    pc_radix_node *y = put(t, "a", 20, 2, 110);
    cr_assert_eq(pc_radix_lock(t, x), 0);
    CHECK(t);
    /* Over by 2: y goes (x is locked), not the pages just inserted. */
    pc_radix_node *z = put(t, "a", 30, 2, 120);
    cr_assert_eq(ns_pages(t, "a"), 4);
    cr_assert(has(t, "a", 10) && !has(t, "a", 20) && has(t, "a", 30));
    (void)y;
    /* Everything else locked: the namespace stays above its quota rather
     * than lose a locked page or the ones this insert returns. */
    cr_assert_eq(pc_radix_lock(t, z), 0);
    CHECK(t);
    hook.n = 0;
    pc_radix_node *w = put(t, "a", 40, 3, 130);
    cr_assert_eq(hook.n, 0);
    cr_assert_eq(ns_pages(t, "a"), 7);
    cr_assert_eq(pc_radix_node_pages(w), 3);
    cr_assert_eq(pc_radix_lock(t, w), 0); /* the handle is valid */
    CHECK(t);
    cr_assert_eq(pc_radix_unlock(t, w), 0);
    cr_assert_eq(pc_radix_unlock(t, z), 0);
    CHECK(t);
    /* The next insert there brings it back: w (older) goes before z. */
    put(t, "a", 50, 1, 140);
    cr_assert_eq(ns_pages(t, "a"), 4);
    cr_assert(has(t, "a", 10) && !has(t, "a", 40) && has(t, "a", 50));
    cr_assert_eq(pc_radix_unlock(t, x), 0);
    CHECK(t);
    pc_radix_destroy(t);
}

Test(radix_quota, shared_prefix_deepest_page_first)
{
    pc_radix *t = mk();
    evrec hook = {.n = 0};
    pc_radix_set_evict_hook(t, ev_cb, &hook);
    /* 1 2 3 4 then 1 2 9: the shared 1 2 can go only after its children */
    put(t, "a", 1, 4, 100);
    uint32_t tok[] = {1, 2, 9}, blk[] = {900, 901, 190};
    pc_radix_insert_result r;
    cr_assert_eq(pc_radix_insert(t, "a", 1, tok, 3, blk, NULL, &r), 0);
    CHECK(t);
    cr_assert_eq(ns_pages(t, "a"), 5);
    limits(t, "a", 0, 2); /* a lower quota evicts at once */
    cr_assert_eq(ns_pages(t, "a"), 2);
    uint32_t want[] = {103, 102, 190};
    cr_assert_eq(hook.n, 3);
    for (size_t i = 0; i < NELEM(want); i++)
        cr_assert_eq(hook.ids[i], want[i], "id %zu: %u", i, hook.ids[i]);
    limits(t, "a", 0, 0); /* no quota */
    put(t, "a", 30, 5, 130);
    cr_assert_eq(ns_pages(t, "a"), 7);
    pc_radix_destroy(t);
}

Test(radix_quota, limits_for_namespaces_created_later_and_reborn)
{
    pc_radix *t = mk();
    evrec hook = {.n = 0};
    pc_radix_set_evict_hook(t, ev_cb, &hook);
    limits(t, "later", 1, 3);
    uint64_t mn, mx;
    cr_assert_eq(pc_radix_get_ns_limits(t, "later", 5, &mn, &mx), 0);
    cr_assert(mn == 1 && mx == 3);
    put(t, "later", 10, 2, 100);
    put(t, "later", 20, 2, 110);
    cr_assert_eq(ns_pages(t, "later"), 3);
    /* flushed: the namespace goes, its limits stay */
    size_t n = 0;
    cr_assert_eq(pc_radix_evict_ns(t, "later", 5, NULL, NULL, &n), 0);
    CHECK(t);
    cr_assert_eq(n, 3);
    cr_assert_eq(st(t).namespaces, 0);
    put(t, "later", 30, 2, 130);
    put(t, "later", 40, 2, 140);
    cr_assert_eq(ns_pages(t, "later"), 3, "reborn namespace kept its quota");
    /* One insert bigger than the quota stays whole: its pages are what the
     * call returns. */
    pc_radix_node *big = put(t, "later", 50, 5, 150);
    cr_assert_eq(pc_radix_node_pages(big), 5);
    cr_assert_eq(ns_pages(t, "later"), 5);
    pc_radix_destroy(t);
}

/* ---- reserve ---------------------------------------------------------------- */

/* Under policy p: ns "r" (reserve 3) holds the least recently used, least
 * frequently used, oldest, lowest-priority pages, so that every policy
 * would take it first; eviction for space stops it at 3 and takes "o". */
static void reserve_under(pc_radix_policy p, uint64_t capacity)
{
    pc_radix *t = mk();
    cr_assert_eq(pc_radix_set_policy(t, p), 0);
    if (capacity)
        cr_assert_eq(pc_radix_set_capacity(t, capacity), 0);
    cr_assert_eq(pc_radix_set_ns_priority(t, "r", 1, -5), 0);
    limits(t, "r", 3, 0);
    put(t, "r", 10, 2, 100);
    put(t, "r", 20, 2, 110);
    put(t, "r", 30, 1, 120);
    put(t, "o", 10, 3, 200);
    put(t, "o", 20, 3, 210);
    for (int i = 0; i < 3; i++) { /* o is hit; r is not */
        uint32_t tok[] = {10, 11, 12};
        pc_radix_match_result m;
        cr_assert_eq(pc_radix_match(t, "o", 1, tok, 3, NULL, 0, 0, &m), 0);
        tok[0] = 20, tok[1] = 21, tok[2] = 22;
        cr_assert_eq(pc_radix_match(t, "o", 1, tok, 3, NULL, 0, 0, &m), 0);
    }
    CHECK(t);
    pc_radix_stats s = st(t);
    cr_assert_eq(s.evictable_pages, 2 + 6, "%s", pc_radix_policy_name(p));
    cr_assert_eq(s.reserved_pages, 3);
    evrec e = {.n = 0};
    cr_assert_eq(pc_radix_evict(t, 4, ev_cb, &e), 4);
    CHECK(t);
    cr_assert_eq(ns_pages(t, "r"), 3, "%s: r below its reserve",
                 pc_radix_policy_name(p));
    cr_assert_eq(ns_pages(t, "o"), 4, "%s", pc_radix_policy_name(p));
    /* Asking for everything frees exactly evictable_pages, no more. */
    s = st(t);
    cr_assert_eq(s.evictable_pages, 4);
    e.n = 0;
    cr_assert_eq(pc_radix_evict(t, 100, ev_cb, &e), 4);
    CHECK(t);
    cr_assert_eq(ns_pages(t, "r"), 3);
    cr_assert_eq(ns_pages(t, "o"), 0);
    for (size_t i = 0; i < e.n; i++)
        cr_assert(e.ids[i] >= 200, "%s: evicted r's block %u",
                  pc_radix_policy_name(p), e.ids[i]);
    s = st(t);
    cr_assert(s.evictable_pages == 0 && s.reserved_pages == 3);
    cr_assert_eq(pc_radix_evict(t, 100, NULL, NULL), 0);
    CHECK(t);
    /* evict_paths respects it too; a new, recent o page goes instead */
    put(t, "o", 40, 2, 240);
    cr_assert_eq(pc_radix_evict_paths(t, 100, NULL, NULL), 2);
    CHECK(t);
    cr_assert_eq(ns_pages(t, "r"), 3);
    /* Without the reserve the same pages are evictable again. */
    pc_radix_clear_ns_limits(t);
    CHECK(t);
    s = st(t);
    cr_assert(s.evictable_pages == 3 && s.reserved_pages == 0);
    cr_assert_eq(pc_radix_evict(t, 100, NULL, NULL), 3);
    CHECK(t);
    pc_radix_destroy(t);
}

Test(radix_quota, reserve_lru) { reserve_under(PC_POLICY_LRU, 0); }
Test(radix_quota, reserve_lfu) { reserve_under(PC_POLICY_LFU, 0); }
Test(radix_quota, reserve_fifo) { reserve_under(PC_POLICY_FIFO, 0); }
Test(radix_quota, reserve_s3fifo) { reserve_under(PC_POLICY_S3FIFO, 0); }
Test(radix_quota, reserve_priority) { reserve_under(PC_POLICY_PRIORITY, 0); }
Test(radix_quota, reserve_auto) { reserve_under(PC_POLICY_AUTO, 0); }
Test(radix_quota, reserve_auto_with_capacity) { reserve_under(PC_POLICY_AUTO, 64); }

Test(radix_quota, reserve_with_locks_and_flush_ignores_it)
{
    pc_radix *t = mk();
    limits(t, "r", 3, 0);
    pc_radix_node *x = put(t, "r", 10, 2, 100);
    put(t, "r", 20, 3, 110);
    cr_assert_eq(pc_radix_lock(t, x), 0);
    CHECK(t);
    /* 5 pages, 2 locked: 2 may go before the reserve; 1 unlocked held */
    pc_radix_stats s = st(t);
    cr_assert(s.protected_pages == 2 && s.evictable_pages == 2 &&
              s.reserved_pages == 1);
    cr_assert_eq(pc_radix_evict(t, 100, NULL, NULL), 2);
    CHECK(t);
    cr_assert_eq(ns_pages(t, "r"), 3);
    /* An operator's flush takes every unlocked page, reserve or not. */
    size_t n = 0;
    cr_assert_eq(pc_radix_evict_ns(t, "r", 1, NULL, NULL, &n), 0);
    CHECK(t);
    cr_assert_eq(n, 1);
    cr_assert_eq(ns_pages(t, "r"), 2);
    s = st(t);
    cr_assert(s.reserved_pages == 0 && s.evictable_pages == 0);
    cr_assert_eq(pc_radix_unlock(t, x), 0);
    CHECK(t);
    /* 2 pages under a reserve of 3: all held */
    s = st(t);
    cr_assert(s.reserved_pages == 2 && s.evictable_pages == 0);
    pc_radix_destroy(t);
}

/* ---- setting limits -------------------------------------------------------- */

Test(radix_quota, argument_errors)
{
    pc_radix *t = mk();
    cr_assert_eq(pc_radix_set_ns_limits(NULL, "a", 1, 0, 1), PC_E_INVAL);
    cr_assert_eq(pc_radix_set_ns_limits(t, NULL, 1, 0, 1), PC_E_INVAL);
    cr_assert_eq(pc_radix_set_ns_limits(t, "a", PC_RADIX_NS_MAX + 1, 0, 1),
                 PC_E_INVAL);
    cr_assert_eq(pc_radix_set_ns_limits(t, "a", 1, 5, 4), PC_E_INVAL);
    cr_assert_eq(pc_radix_set_ns_limits(t, "a", 1, 0, UINT64_C(1) << 32),
                 PC_E_RANGE);
    cr_assert_eq(pc_radix_set_ns_limits(t, "a", 1, UINT64_C(1) << 32, 0),
                 PC_E_RANGE);
    cr_assert_eq(pc_radix_reserve_ns_limits(NULL, 4), PC_E_INVAL);
    uint64_t mn = 9, mx = 9;
    cr_assert_eq(pc_radix_get_ns_limits(t, "a", 1, &mn, &mx), 0);
    cr_assert(mn == 0 && mx == 0, "a refused call set a limit");
    limits(t, "a", 5, 0); /* a reserve without a quota */
    limits(t, "a", 5, 5); /* min == max */
    limits(t, "", 1, 2);  /* the empty namespace is one too */
    CHECK(t);
    pc_radix_destroy(t);
}

/* Reserve room (the step that can fail), then clear and set (that cannot):
 * a whole set applies all or nothing. */
Test(radix_quota, failed_reserve_changes_nothing_then_all_or_nothing)
{
    pc_radix *t = mk();
    limits(t, "a", 1, 4);
    put(t, "a", 10, 3, 100);
    pc_radix_stats before = st(t);
    pc_radix_debug_fail_alloc(t, 1);
    cr_assert_eq(pc_radix_reserve_ns_limits(t, 64), PC_E_NOMEM);
    CHECK(t);
    pc_radix_stats after = st(t);
    cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0,
                 "a failed reserve changed the stats");
    uint64_t mn, mx;
    cr_assert_eq(pc_radix_get_ns_limits(t, "a", 1, &mn, &mx), 0);
    cr_assert(mn == 1 && mx == 4);
    /* A new entry with no room left and no memory: refused whole. */
    char name[8];
    for (int i = 0; i < 3; i++) { /* fill the initial room of 4 */
        snprintf(name, sizeof(name), "n%d", i);
        limits(t, name, 0, 10);
    }
    before = st(t);
    pc_radix_debug_fail_alloc(t, 1);
    cr_assert_eq(pc_radix_set_ns_limits(t, "new", 3, 1, 2), PC_E_NOMEM);
    pc_radix_debug_fail_alloc(t, 0);
    CHECK(t);
    after = st(t);
    cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
    cr_assert_eq(pc_radix_get_ns_limits(t, "new", 3, &mn, &mx), 0);
    cr_assert(mn == 0 && mx == 0);
    /* The all-or-nothing way: room for 32, then no allocation may fail. */
    cr_assert_eq(pc_radix_reserve_ns_limits(t, 32), 0);
    CHECK(t);
    pc_radix_debug_fail_alloc(t, 1); /* any allocation now would fail */
    pc_radix_clear_ns_limits(t);
    CHECK(t);
    for (int i = 0; i < 32; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        cr_assert_eq(pc_radix_set_ns_limits(t, name, strlen(name), 0, 1), 0,
                     "set %d failed after its room was reserved", i);
    }
    pc_radix_debug_fail_alloc(t, 0);
    CHECK(t);
    cr_assert_eq(pc_radix_get_ns_limits(t, "a", 1, &mn, &mx), 0);
    cr_assert(mn == 0 && mx == 0, "clear kept a's limits");
    put(t, "a", 20, 9, 120);
    cr_assert_eq(ns_pages(t, "a"), 12, "no quota any more");
    pc_radix_destroy(t);
}

Test(radix_quota, quota_and_reserve_together_switching_policy)
{
    pc_radix *t = mk();
    evrec hook = {.n = 0};
    pc_radix_set_evict_hook(t, ev_cb, &hook);
    limits(t, "a", 2, 5);
    for (uint32_t i = 0; i < 6; i++)
        put(t, "a", 10 * (i + 1), 2, 100 + 10 * i);
    cr_assert_eq(ns_pages(t, "a"), 5);
    for (int p = 0; p < PC_POLICY_COUNT; p++) {
        cr_assert_eq(pc_radix_set_policy(t, (pc_radix_policy)p), 0);
        CHECK(t);
        put(t, "a", 100 + 10 * (uint32_t)p, 2, 200 + 10 * (uint32_t)p);
        cr_assert_eq(ns_pages(t, "a"), 5);
        put(t, "b", 100 + 10 * (uint32_t)p, 2, 300 + 10 * (uint32_t)p);
        pc_radix_evict(t, 100, NULL, NULL);
        CHECK(t);
        cr_assert_eq(ns_pages(t, "a"), 2, "%s", pc_radix_policy_name(p));
        cr_assert_eq(ns_pages(t, "b"), 0);
        put(t, "a", 500 + 10 * (uint32_t)p, 4, 400 + 10 * (uint32_t)p);
    }
    pc_radix_destroy(t);
}

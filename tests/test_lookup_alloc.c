/*
 * tests/test_lookup_alloc.c - lookup with alloc never hands out a block twice.
 *
 * The defect (issue 11): pool of 4 blocks, page_tokens 4; insert 16 tokens,
 * then lookup(the same 16 tokens + 8 more, alloc) without pin answered
 * blocks [0,1,2,3] and alloc_blocks [2,3]: the allocation evicted the
 * unpinned prefix it had just matched, and an engine writing its new pages
 * into 2 and 3 would overwrite the prefix it was told to read.
 *
 * The rule now (cache.h, pc_cache_lookup_alloc): the matched path is
 * protected for the length of the call, so the allocation never evicts it;
 * when only it could have made room, alloc_status is PC_E_NOSPACE.
 *
 *   scenario        the issue's exact case, and its neighbours, per policy
 *   property        random lifecycles on tiny pools (3..9 blocks), every
 *                   eviction policy: after every lookup_alloc, no id appears
 *                   twice across blocks and fresh, every matched block holds
 *                   its page's signature (what the engine that inserted it
 *                   wrote), every fresh block is LEASED; after every op
 *                   pc_cache_check() == 0.  An engine writes its fresh
 *                   blocks with its pages' signatures right away (as a real
 *                   one would), so a block handed out twice shows up as a
 *                   corrupt read.
 *
 * Reproduce with PC_PROP_SEED=<seed>.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/inspect.h"
#include "tests/harness/prng.h"

#define P 4u
#define NS "la"
#define NSL 2u
#define MAXPAGES 8u
#define MAXCAP 16u

static uint64_t rng;
static uint32_t below(uint32_t n) { return (uint32_t)(test_rng_next(&rng) % n); }

static uint64_t g_now = 1000;
static uint64_t clock_fn(void *ctx)
{
    (void)ctx;
    return g_now;
}

/* A "none" pool: block ids index the engines' own memory (here mem[]). */
static pc_cache *make(uint32_t cap, pc_radix_policy pol)
{
    pc_cache_config cc;
    pc_cache_config_defaults(&cc);
    cr_assert_eq(pc_pool_layout_init(&cc.pool.layout, 1, 1, 2, P, PC_DTYPE_FP32), 0);
    cc.pool.backend = PC_POOL_NONE;
    cc.pool.capacity_blocks = cap;
    cc.eviction_policy = pol;
    cc.lease_ttl_ms = 100;
    cc.clock = clock_fn;
    pc_cache *c;
    int rc = pc_cache_create(&cc, &c);
    cr_assert_eq(rc, 0, "create: %s", pc_errname(rc));
    return c;
}

static void check(const pc_cache *c, const char *what)
{
    cr_assert_eq(pc_cache_check(c), 0, "pc_cache_check after %s", what);
}

/* No id twice across blocks[0..m) and fresh[0..k); all below cap. */
static void distinct(const uint32_t *blocks, size_t m, const uint32_t *fresh,
                     size_t k, uint32_t cap, const char *ctx)
{
    uint8_t seen[MAXCAP] = {0};
    for (size_t i = 0; i < m + k; i++) {
        uint32_t b = i < m ? blocks[i] : fresh[i - m];
        cr_assert_lt(b, cap, "%s: block %u beyond the pool", ctx, b);
        cr_assert_eq(seen[b], 0, "%s: block %u returned twice (blocks %zu, "
                     "fresh %zu)", ctx, b, m, k);
        seen[b] = 1;
    }
}

/* ---- the issue's scenario ------------------------------------------------- */

Test(lookup_alloc, issue_case_every_policy)
{
    for (int pol = 0; pol < PC_POLICY_COUNT; pol++) {
        const char *pn = pc_radix_policy_name((pc_radix_policy)pol);
        pc_cache *c = make(4, (pc_radix_policy)pol);
        uint32_t tok[24], blk[6], fresh[6], canon[4];
        for (uint32_t i = 0; i < 24; i++)
            tok[i] = 1000 + i;
        uint64_t lease = 0;
        cr_assert_eq(pc_cache_alloc(c, 4, &lease, blk), 0);
        pc_insert_result ir;
        cr_assert_eq(pc_cache_insert(c, NS, NSL, tok, 16, blk, lease, canon, &ir), 0);
        cr_assert_eq(pc_cache_release(c, lease), 0);
        check(c, "insert");

        /* all 4 blocks cached, unpinned; lookup 24 tokens with alloc */
        pc_lookup_result r;
        cr_assert_eq(pc_cache_lookup_alloc(c, NS, NSL, tok, 24, 0, 0, blk, fresh, &r), 0);
        check(c, "lookup_alloc");
        cr_assert_eq(r.pages, 4, "%s: the prefix must still match", pn);
        cr_assert_eq(r.alloc_status, PC_E_NOSPACE, "%s: alloc_status %s", pn,
                     pc_errname(r.alloc_status));
        cr_assert_eq(r.alloc_n, 0);
        cr_assert_eq(r.lease, 0, "%s: a refused alloc left a lease", pn);
        pc_cache_stats st;
        pc_cache_stats_get(c, &st);
        cr_assert_eq(st.pool.cached, 4, "%s: the prefix was evicted", pn);
        cr_assert_eq(st.tree.protected_pages, 0, "%s: the hold outlived the call", pn);

        /* with pin: the same answer, and the pin holds */
        cr_assert_eq(pc_cache_lookup_alloc(c, NS, NSL, tok, 24, 1, 0, blk, fresh, &r), 0);
        check(c, "lookup_alloc pin");
        cr_assert_eq(r.pages, 4);
        cr_assert_eq(r.alloc_status, PC_E_NOSPACE);
        cr_assert_neq(r.lease, 0);
        cr_assert_eq(pc_cache_release(c, r.lease), 0);

        /* everything asked for is cached: nothing to allocate, no error */
        cr_assert_eq(pc_cache_lookup_alloc(c, NS, NSL, tok, 8, 0, 0, blk, fresh, &r), 0);
        cr_assert_eq(r.pages, 2);
        cr_assert_eq(r.alloc_status, 0, "%s: nothing left to allocate", pn);

        /* another prompt sharing nothing: may evict the whole prefix */
        uint32_t other[16];
        for (uint32_t i = 0; i < 16; i++)
            other[i] = 9000 + i;
        cr_assert_eq(pc_cache_lookup_alloc(c, NS, NSL, other, 16, 0, 0, blk, fresh, &r), 0);
        check(c, "lookup_alloc other");
        cr_assert_eq(r.pages, 0);
        cr_assert_eq(r.alloc_status, 0, "%s: %s", pn, pc_errname(r.alloc_status));
        cr_assert_eq(r.alloc_n, 4);
        distinct(blk, 0, fresh, 4, 4, pn);
        cr_assert_eq(pc_cache_release(c, r.lease), 0);
        check(c, "release");
        pc_cache_destroy(c);
    }
}

/* Room beyond the matched prefix: the allocation takes other pages. */
Test(lookup_alloc, evicts_other_pages_only)
{
    for (int pol = 0; pol < PC_POLICY_COUNT; pol++) {
        pc_cache *c = make(6, (pc_radix_policy)pol);
        uint32_t a[16], b[8], blk[6], fresh[6];
        for (uint32_t i = 0; i < 16; i++)
            a[i] = 100 + i;
        for (uint32_t i = 0; i < 8; i++)
            b[i] = 500 + i;
        uint64_t la = 0, lb = 0;
        pc_insert_result ir;
        cr_assert_eq(pc_cache_alloc(c, 2, &lb, blk), 0);
        cr_assert_eq(pc_cache_insert(c, NS, NSL, b, 8, blk, lb, NULL, &ir), 0);
        cr_assert_eq(pc_cache_alloc(c, 4, &la, blk), 0);
        cr_assert_eq(pc_cache_insert(c, NS, NSL, a, 16, blk, la, NULL, &ir), 0);
        cr_assert_eq(pc_cache_release(c, la), 0);
        cr_assert_eq(pc_cache_release(c, lb), 0);
        uint32_t q[24];
        memcpy(q, a, sizeof(a));
        for (uint32_t i = 16; i < 24; i++)
            q[i] = 7000 + i;
        pc_lookup_result r;
        cr_assert_eq(pc_cache_lookup_alloc(c, NS, NSL, q, 24, 0, 0, blk, fresh, &r), 0);
        check(c, "lookup_alloc");
        cr_assert_eq(r.pages, 4);
        cr_assert_eq(r.alloc_status, 0, "%s",
                     pc_radix_policy_name((pc_radix_policy)pol));
        cr_assert_eq(r.alloc_n, 2);
        distinct(blk, 4, fresh, 2, 6, "evicts_other_pages_only");
        uint32_t again[4];
        cr_assert_eq(pc_cache_lookup(c, NS, NSL, a, 16, 0, 0, again, &r), 0);
        cr_assert_eq(r.pages, 4, "the matched prefix was evicted");
        cr_assert_eq(pc_cache_lookup(c, NS, NSL, b, 8, 0, 0, again, &r), 0);
        cr_assert_eq(r.pages, 0, "the other prompt should have made room");
        pc_cache_destroy(c);
    }
}

/* ---- the property --------------------------------------------------------- */

/* Page i of prompt family f, variant v: its signature, which depends on the
 * whole prefix (the tree shares prefixes, so must the signature). */
static uint64_t sig_of(const uint32_t *tok, uint32_t page)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < (page + 1) * P; i++)
        h = (h ^ tok[i]) * 1099511628211ull;
    return h;
}

typedef struct eng {
    uint64_t lease;
    uint32_t tok[MAXPAGES * P + 3];
    size_t n;
    uint32_t blk[MAXPAGES]; /* canonical prefix, then the fresh ones */
    size_t m, k;
    bool busy;
} eng;

static void gen(eng *e)
{
    /* few families with shared heads so that prefixes match often */
    uint32_t fam = below(3), pages = 1 + below(MAXPAGES), split = below(pages + 1);
    e->n = pages * P + below(P);
    for (uint32_t i = 0; i < e->n; i++)
        e->tok[i] = i < split * P ? fam * 1000 + i : 50000 + below(4) * 100 + i;
}

static void run_property(pc_radix_policy pol, uint32_t cap, uint64_t seed,
                         size_t ops)
{
    rng = seed;
    uint64_t mem[MAXCAP] = {0}; /* the engines' KV: one signature a block */
    pc_cache *c = make(cap, pol);
    eng E[3] = {{0}};
    size_t n_la = 0, n_hit = 0, n_nospace = 0, n_ins = 0, n_bad = 0;
    char ctx[96];
    for (size_t op = 0; op < ops; op++) {
        snprintf(ctx, sizeof(ctx), "%s cap %u seed %" PRIu64 " op %zu",
                 pc_radix_policy_name(pol), cap, seed, op);
        eng *e = &E[below(3)];
        uint32_t r = below(100);
        g_now += below(3);
        if (!e->busy && r < 60) { /* lookup + alloc, pin or not */
            gen(e);
            int pin = below(2);
            pc_lookup_result lr;
            uint32_t fresh[MAXPAGES];
            int rc = pc_cache_lookup_alloc(c, NS, NSL, e->tok, e->n, pin, 0,
                                           e->blk, fresh, &lr);
            cr_assert_eq(rc, 0, "%s: %s", ctx, pc_errname(rc));
            check(c, ctx);
            n_la++;
            n_hit += lr.pages > 0;
            n_nospace += lr.alloc_status == PC_E_NOSPACE;
            distinct(e->blk, lr.pages, fresh, lr.alloc_n, cap, ctx);
            for (size_t i = 0; i < lr.pages; i++)
                if (mem[e->blk[i]] != sig_of(e->tok, (uint32_t)i))
                    n_bad++;
            cr_assert_eq(n_bad, 0, "%s: a matched block holds another page", ctx);
            for (size_t i = 0; i < lr.alloc_n; i++) {
                pc_block_state st;
                cr_assert_eq(pc_pool_state(pc_cache_pool(c), fresh[i], &st), 0);
                cr_assert_eq(st, PC_BLOCK_LEASED, "%s: fresh block not LEASED", ctx);
                /* the engine computes and writes its new pages at once */
                mem[fresh[i]] = sig_of(e->tok, (uint32_t)(lr.pages + i));
                e->blk[lr.pages + i] = fresh[i];
            }
            /* the prefix it reads must still be intact after the writes */
            for (size_t i = 0; i < lr.pages; i++)
                cr_assert_eq(mem[e->blk[i]], sig_of(e->tok, (uint32_t)i),
                             "%s: a fresh block overwrote the matched prefix", ctx);
            e->m = lr.pages;
            e->k = lr.alloc_n;
            e->lease = lr.lease;
            e->busy = lr.lease != 0;
            if (lr.alloc_status == 0 && lr.alloc_n == 0 && !pin)
                cr_assert_eq(lr.lease, 0, "%s: a lease for nothing", ctx);
        } else if (e->busy && r < 80) { /* insert (when all pages are in hand) + release */
            if (e->m + e->k == e->n / P) {
                pc_insert_result ir;
                int rc = pc_cache_insert(c, NS, NSL, e->tok, e->n, e->blk,
                                         e->lease, NULL, &ir);
                /* LEASE: it expired meanwhile; PERM: a canonical block of
                 * an unpinned prefix was evicted and is no longer canonical */
                cr_assert(rc == 0 || rc == PC_E_LEASE || rc == PC_E_PERM,
                          "%s: insert %s", ctx, pc_errname(rc));
                n_ins += rc == 0;
                check(c, ctx);
            }
            int rc = pc_cache_release(c, e->lease);
            cr_assert(rc == 0 || rc == PC_E_LEASE, "%s", ctx);
            check(c, ctx);
            e->busy = false;
        } else if (r < 90) { /* a peek that touches recency */
            uint32_t b[MAXPAGES];
            eng t;
            gen(&t);
            pc_lookup_result lr;
            cr_assert_eq(pc_cache_lookup(c, NS, NSL, t.tok, t.n, 0, 0, b, &lr), 0);
            check(c, ctx);
        } else if (r < 95) {
            g_now += 150; /* past the TTL: engines vanish */
            pc_cache_expire(c);
            check(c, ctx);
        } else {
            pc_cache_evict(c, below(3));
            check(c, ctx);
        }
    }
    g_now += 1000;
    pc_cache_expire(c);
    check(c, "wind down");
    pc_cache_stats st;
    pc_cache_stats_get(c, &st);
    cr_assert_eq(st.pool.leased, 0);
    cr_assert_eq(st.pool.free + st.pool.cached, cap);
    cr_log_info("%s cap %u: %zu lookup_allocs, %zu hits, %zu NOSPACE, %zu inserts",
                pc_radix_policy_name(pol), cap, n_la, n_hit, n_nospace, n_ins);
    cr_assert(n_hit > 0 && n_ins > 0, "a path was never taken");
    pc_cache_destroy(c);
}

static uint64_t seed_env(void)
{
    const char *v = getenv("PC_PROP_SEED");
    return v && *v ? strtoull(v, NULL, 0) : UINT64_C(0x5eed11a110c);
}

Test(lookup_alloc, property_every_policy_tiny_pools, .timeout = 300)
{
    static const uint32_t caps[] = {3, 4, 5, 7, 9};
    uint64_t seed = seed_env();
    for (int pol = 0; pol < PC_POLICY_COUNT; pol++)
        for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
            run_property((pc_radix_policy)pol, caps[i],
                         seed + (uint64_t)pol * 131 + i, 15000);
}

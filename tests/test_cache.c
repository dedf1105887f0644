/*
 * tests/test_cache.c - scenario tests for the cache layer (cache/cache.h).
 *
 * One Test per state transition or error path of the lease API: lookup with
 * and without pin, alloc (with eviction and the all-or-nothing NOSPACE),
 * insert (adoption, duplicates from a second engine, canonical + own blocks,
 * every refused block), release, TTL expiry on an injected clock, limits,
 * watermarks, two processes sharing a host pool, and a cuda pool on the
 * fake device (what describe hands to hello; bad ops names and devices).
 *
 * pc_cache_check() runs after every cache mutation; on failure the tree is
 * dumped to stderr.  "Nothing changes" is checked with a snapshot: all cache
 * stats, every block's state, a fingerprint of the tree (pages, block ids,
 * pins per node) and the next lease deadline.
 *
 * The clock is a fake (g_now) that tests advance by hand: no test sleeps.
 * Caches are registered and the suite's .fini destroys what a failed test
 * left behind (host pools: their shm names are unlinked); a crash guard
 * unlinks the names on a fatal signal too.
 *
 * Two tests were written against bugs of an early cache.c and keep them
 * fixed (search for "Was a bug"): a divergence from DESIGN.md and a heap
 * that lost its order.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/inspect.h"
#include "tests/shm_guard.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define NS "model-a"
#define P 4u /* page_tokens of every cache here */
#define TTL 1000u
#define MAXCAP 64u

/* ---- fake clock and cleanup ---------------------------------------------- */

static uint64_t g_now;
static uint64_t fake_clock(void *ctx) { return *(const uint64_t *)ctx; }
static void tick(uint64_t ms) { g_now += ms; }

static pc_cache *g_caches[8];

static void track(pc_cache *c)
{
    for (size_t i = 0; i < NELEM(g_caches); i++)
        if (!g_caches[i]) {
            g_caches[i] = c;
            name_add(pc_cache_pool(c));
            return;
        }
    cr_assert_fail("too many caches in one test");
}

static void cache_del(pc_cache *c)
{
    for (size_t i = 0; i < NELEM(g_caches); i++)
        if (g_caches[i] == c)
            g_caches[i] = NULL;
    if (c)
        name_del(pc_cache_pool(c));
    pc_cache_destroy(c);
}

static void setup(void)
{
    g_now = 1000000;
    crash_guard();
}

static void cleanup(void)
{
    for (size_t i = 0; i < NELEM(g_caches); i++) {
        pc_cache_destroy(g_caches[i]);
        g_caches[i] = NULL;
    }
    name_clear();
}

TestSuite(cache, .init = setup, .fini = cleanup);

/* ---- helpers ------------------------------------------------------------- */

#define CHECK_AT(c, line)                                                      \
    do {                                                                       \
        int check_rc_ = pc_cache_check(c);                                     \
        if (check_rc_ != 0)                                                    \
            pc_radix_dump(pc_cache_tree(c), stderr);                           \
        cr_assert_eq(check_rc_, 0, "pc_cache_check() = %d (%s) after line %d", \
                     check_rc_, pc_errname(check_rc_), (line));                \
    } while (0)
#define CHECK(c) CHECK_AT(c, __LINE__)

#define RC_EQ(expr, want)                                                      \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        cr_assert_eq(rc_, (want), "line %d: %s = %d (%s), want %s", __LINE__,  \
                     #expr, rc_, pc_errname(rc_), pc_errname(want));           \
    } while (0)

static void seq_fill(uint32_t *dst, size_t n, uint32_t first)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = first + (uint32_t)i;
}

static int g_shm_seq;

/* A cache with a tiny layout (1 layer x 1 head x 8 dim x P tokens, fp16),
 * `cap` blocks, backend "none", TTL 1000 ms on the fake clock. */
static pc_cache_config cfg_of(uint64_t cap, pc_pool_backend backend)
{
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    int rc = pc_pool_layout_init(&cfg.pool.layout, 1, 1, 8, P, PC_DTYPE_FP16);
    cr_assert_eq(rc, 0);
    cfg.pool.backend = backend;
    cfg.pool.capacity_blocks = cap;
    if (backend == PC_POOL_HOST) {
        static char name[8][64];
        char *n = name[g_shm_seq % 8];
        snprintf(n, sizeof(name[0]), "/pctest-cache-%ld-%d", (long)getpid(),
                 g_shm_seq++);
        cfg.pool.shm_name = n;
    }
    cfg.lease_ttl_ms = TTL;
    cfg.clock = fake_clock;
    cfg.clock_ctx = &g_now;
    return cfg;
}

static pc_cache *mk_cfg_at(int line, const pc_cache_config *cfg)
{
    pc_cache *c = NULL;
    int rc = pc_cache_create(cfg, &c);
    cr_assert_eq(rc, 0, "line %d: pc_cache_create = %s", line, pc_errname(rc));
    cr_assert_not_null(c);
    track(c);
    CHECK_AT(c, line);
    return c;
}
#define mk_cfg(cfg) mk_cfg_at(__LINE__, (cfg))

static pc_cache *mk(uint64_t cap)
{
    pc_cache_config cfg = cfg_of(cap, PC_POOL_NONE);
    return mk_cfg(&cfg);
}

static pc_cache_stats cstats(const pc_cache *c)
{
    pc_cache_stats s;
    memset(&s, 0xa5, sizeof(s));
    pc_cache_stats_get(c, &s);
    return s;
}

static pc_block_state bstate(const pc_cache *c, uint32_t id)
{
    pc_block_state s = (pc_block_state)99;
    int rc = pc_pool_state(pc_cache_pool(c), id, &s);
    cr_assert_eq(rc, 0, "pc_pool_state(%u) = %s", id, pc_errname(rc));
    return s;
}

static void states_at(int line, const pc_cache *c, const uint32_t *ids,
                      size_t n, pc_block_state want)
{
    for (size_t i = 0; i < n; i++) {
        pc_block_state s = bstate(c, ids[i]);
        cr_assert_eq(s, want, "line %d: block %u is in state %d, want %d", line,
                     ids[i], (int)s, (int)want);
    }
}
#define STATES(c, ids, n, want) states_at(__LINE__, (c), (ids), (n), (want))

/* pool counts: free/leased/cached, and they add up to the capacity */
static void counts_at(int line, const pc_cache *c, uint64_t f, uint64_t l,
                      uint64_t k)
{
    pc_cache_stats s = cstats(c);
    cr_assert(s.pool.free == f && s.pool.leased == l && s.pool.cached == k,
              "line %d: free/leased/cached = %" PRIu64 "/%" PRIu64 "/%" PRIu64
              ", want %" PRIu64 "/%" PRIu64 "/%" PRIu64,
              line, s.pool.free, s.pool.leased, s.pool.cached, f, l, k);
    cr_assert_eq(s.pool.free + s.pool.leased + s.pool.cached, s.pool.capacity,
                 "line %d", line);
    cr_assert_eq(s.tree.pages, k, "line %d: tree pages != CACHED blocks", line);
}
#define COUNTS(c, f, l, k) counts_at(__LINE__, (c), (f), (l), (k))

static void ids_eq_at(int line, const uint32_t *got, const uint32_t *want,
                      size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "line %d: %s[%zu] = %u, want %u", line,
                     what, i, got[i], want[i]);
}
#define IDS_EQ(got, want, n, what) ids_eq_at(__LINE__, (got), (want), (n), (what))

/* lookup (must succeed), check */
static pc_lookup_result lk_at(int line, pc_cache *c, const char *ns,
                              const uint32_t *tok, size_t n, int pin,
                              uint64_t lease, uint32_t *blocks)
{
    pc_lookup_result r;
    memset(&r, 0xa5, sizeof(r));
    int rc = pc_cache_lookup(c, ns, strlen(ns), tok, n, pin, lease, blocks, &r);
    cr_assert_eq(rc, 0, "line %d: lookup(n=%zu pin=%d) = %s", line, n, pin,
                 pc_errname(rc));
    CHECK_AT(c, line);
    cr_assert_eq(r.tokens, r.pages * P, "line %d", line);
    cr_assert_leq(r.pages, n / P, "line %d", line);
    return r;
}
#define lk(...) lk_at(__LINE__, __VA_ARGS__)

/* pages matched by a lookup without pin */
static size_t lk_pages_at(int line, pc_cache *c, const char *ns,
                          const uint32_t *tok, size_t n)
{
    uint32_t blocks[64];
    cr_assert_leq(n / P, NELEM(blocks));
    return lk_at(line, c, ns, tok, n, 0, 0, blocks).pages;
}
#define lk_pages(...) lk_pages_at(__LINE__, __VA_ARGS__)

/* alloc (must succeed), check; the ids are distinct and LEASED */
static void al_at(int line, pc_cache *c, uint32_t n, uint64_t *lease,
                  uint32_t *ids)
{
    uint64_t in = *lease;
    int rc = pc_cache_alloc(c, n, lease, ids);
    cr_assert_eq(rc, 0, "line %d: alloc(%u) = %s", line, n, pc_errname(rc));
    CHECK_AT(c, line);
    cr_assert_neq(*lease, 0, "line %d: no lease id", line);
    if (in)
        cr_assert_eq(*lease, in, "line %d: lease id changed", line);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_lt(ids[i], pc_pool_capacity(pc_cache_pool(c)));
        for (uint32_t j = 0; j < i; j++)
            cr_assert_neq(ids[i], ids[j], "line %d: id %u twice", line, ids[i]);
    }
    states_at(line, c, ids, n, PC_BLOCK_LEASED);
}
#define al(...) al_at(__LINE__, __VA_ARGS__)

/* insert (must succeed), check */
static pc_insert_result in_at(int line, pc_cache *c, const char *ns,
                              const uint32_t *tok, size_t n,
                              const uint32_t *blocks, uint64_t lease,
                              uint32_t *canon)
{
    pc_insert_result r;
    memset(&r, 0xa5, sizeof(r));
    int rc = pc_cache_insert(c, ns, strlen(ns), tok, n, blocks, lease, canon,
                             &r);
    cr_assert_eq(rc, 0, "line %d: insert(n=%zu) = %s", line, n, pc_errname(rc));
    CHECK_AT(c, line);
    cr_assert_eq(r.cached_tokens % P, 0, "line %d", line);
    cr_assert_eq(r.cached_tokens / P + r.inserted_pages, n / P,
                 "line %d: cached %zu tokens + inserted %zu pages != %zu pages",
                 line, r.cached_tokens, r.inserted_pages, n / P);
    if (canon)
        states_at(line, c, canon, n / P, PC_BLOCK_CACHED);
    return r;
}
#define in(...) in_at(__LINE__, __VA_ARGS__)

static void rel_at(int line, pc_cache *c, uint64_t lease)
{
    int rc = pc_cache_release(c, lease);
    cr_assert_eq(rc, 0, "line %d: release = %s", line, pc_errname(rc));
    CHECK_AT(c, line);
}
#define rel(c, l) rel_at(__LINE__, (c), (l))

/* Cache a prompt the way one engine would (alloc, insert, release) and
 * return the canonical ids in blocks[0 .. n/P). */
static void put_at(int line, pc_cache *c, const char *ns, const uint32_t *tok,
                   size_t n, uint32_t *blocks)
{
    uint32_t own[64];
    uint64_t lease = 0;
    cr_assert_leq(n / P, NELEM(own));
    al_at(line, c, (uint32_t)(n / P), &lease, own);
    in_at(line, c, ns, tok, n, own, lease, blocks);
    rel_at(line, c, lease);
}
#define put(...) put_at(__LINE__, __VA_ARGS__)

/* ---- snapshots: "a rejected call changes nothing" ------------------------- */

typedef struct snap {
    pc_cache_stats st;
    uint8_t state[MAXCAP];
    uint64_t tree; /* fingerprint */
    uint64_t next_deadline;
} snap;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + UINT64_C(0x9e3779b97f4a7c15) + (h << 6) + (h >> 2);
    return h * UINT64_C(0x100000001b3);
}

static int fp_node(void *ctx, const void *ns, size_t ns_len,
                   const pc_radix_node *n, const uint32_t *blocks,
                   uint32_t npages)
{
    uint64_t *h = ctx;
    for (size_t i = 0; i < ns_len; i++)
        *h = mix(*h, ((const uint8_t *)ns)[i]);
    *h = mix(*h, ns_len);
    *h = mix(*h, npages);
    for (uint32_t i = 0; i < npages; i++)
        *h = mix(*h, blocks[i]);
    *h = mix(*h, pc_radix_node_pins(n));
    *h = mix(*h, pc_radix_node_lock_ref(n));
    *h = mix(*h, pc_radix_node_depth_pages(n));
    return 0;
}

static snap take(pc_cache *c)
{
    snap s;
    memset(&s, 0, sizeof(s));
    s.st = cstats(c);
    uint32_t cap = pc_pool_capacity(pc_cache_pool(c));
    cr_assert_leq(cap, MAXCAP);
    for (uint32_t i = 0; i < cap; i++)
        s.state[i] = (uint8_t)bstate(c, i);
    s.tree = 1;
    cr_assert_eq(pc_radix_foreach(pc_cache_tree(c), fp_node, &s.tree), 0);
    s.next_deadline = pc_cache_next_deadline_ms(c);
    return s;
}

static void same_at(int line, pc_cache *c, const snap *before)
{
    CHECK_AT(c, line);
    snap now = take(c);
    _Static_assert(sizeof(pc_cache_stats) % sizeof(uint64_t) == 0,
                   "pc_cache_stats is not all uint64_t");
    const uint64_t *a = (const uint64_t *)&before->st;
    const uint64_t *b = (const uint64_t *)&now.st;
    for (size_t i = 0; i < sizeof(pc_cache_stats) / sizeof(uint64_t); i++)
        cr_assert_eq(a[i], b[i],
                     "line %d: stats word %zu changed: %" PRIu64 " -> %" PRIu64,
                     line, i, a[i], b[i]);
    cr_assert(memcmp(before->state, now.state, sizeof(now.state)) == 0,
              "line %d: a block changed state", line);
    cr_assert_eq(before->tree, now.tree, "line %d: the tree changed", line);
    cr_assert_eq(before->next_deadline, now.next_deadline,
                 "line %d: a lease deadline changed", line);
}
#define SAME(c, before) same_at(__LINE__, (c), &(before))

/* A FREE block, or fail. */
static uint32_t some_free(const pc_cache *c)
{
    for (uint32_t i = 0; i < pc_pool_capacity(pc_cache_pool(c)); i++)
        if (bstate(c, i) == PC_BLOCK_FREE)
            return i;
    cr_assert_fail("no FREE block");
    return 0;
}

/* ---- create and config --------------------------------------------------- */

Test(cache, config_defaults)
{
    pc_cache_config cfg;
    memset(&cfg, 0x5a, sizeof(cfg));
    pc_cache_config_defaults(&cfg);
    cr_assert_eq(cfg.lease_ttl_ms, 30000);
    cr_assert_eq(cfg.max_leases, 65536);
    cr_assert_eq(cfg.max_pins_per_lease, 256);
    cr_assert_eq(cfg.max_blocks_per_lease, 65536);
    cr_assert_eq(cfg.low_watermark, 0);
    cr_assert_eq(cfg.high_watermark, 0);
    cr_assert_null(cfg.clock);
    cr_assert_null(cfg.clock_ctx);
    cr_assert_eq(cfg.pool.layout.block_bytes, 0);
    cr_assert_eq(cfg.pool.capacity_blocks, 0);
    cr_assert_eq(cfg.pool.capacity_bytes, 0);
    cr_assert_null(cfg.pool.shm_name);

    pc_cache_config good = cfg_of(8, PC_POOL_NONE);
    pc_cache *c = mk_cfg(&good);
    cr_assert_not_null(pc_cache_pool(c));
    cr_assert_not_null(pc_cache_tree(c));
    cr_assert_eq(pc_pool_capacity(pc_cache_pool(c)), 8);
    cr_assert_eq(pc_radix_page_tokens(pc_cache_tree(c)), P);
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.leases, 0);
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(pc_cache_next_deadline_ms(c), UINT64_MAX);
    COUNTS(c, 8, 0, 0);
    cache_del(c);

    /* the real clock works too */
    good.clock = NULL;
    good.clock_ctx = NULL;
    c = mk_cfg(&good);
    uint64_t lease = 0;
    uint32_t id;
    al(c, 1, &lease, &id);
    uint64_t d = pc_cache_next_deadline_ms(c);
    cr_assert(d <= TTL && d + 10000 > TTL, "next deadline %" PRIu64, d);
    rel(c, lease);
    cache_del(c);
}

Test(cache, create_refuses_bad_config)
{
    pc_cache *c = (pc_cache *)0x1;
    pc_cache_config cfg = cfg_of(8, PC_POOL_NONE);
    RC_EQ(pc_cache_create(NULL, &c), PC_E_INVAL);
    RC_EQ(pc_cache_create(&cfg, NULL), PC_E_INVAL);

    struct {
        const char *what;
        uint64_t low, high, ttl;
        uint32_t leases, pins, blocks;
    } bad[] = {
        {"low > high", 5, 4, TTL, 16, 16, 16},
        {"high > capacity", 0, 9, TTL, 16, 16, 16},
        {"low > capacity", 9, 9, TTL, 16, 16, 16},
        {"zero TTL", 0, 0, 0, 16, 16, 16},
        {"zero max_leases", 0, 0, TTL, 0, 16, 16},
        {"zero max_pins_per_lease", 0, 0, TTL, 16, 0, 16},
        {"zero max_blocks_per_lease", 0, 0, TTL, 16, 16, 0},
    };
    for (size_t i = 0; i < NELEM(bad); i++) {
        pc_cache_config b = cfg;
        b.low_watermark = bad[i].low;
        b.high_watermark = bad[i].high;
        b.lease_ttl_ms = bad[i].ttl;
        b.max_leases = bad[i].leases;
        b.max_pins_per_lease = bad[i].pins;
        b.max_blocks_per_lease = bad[i].blocks;
        c = (pc_cache *)0x1;
        int rc = pc_cache_create(&b, &c);
        if (rc == 0)
            track(c);
        cr_assert_eq(rc, PC_E_INVAL, "%s: %s", bad[i].what, pc_errname(rc));
        cr_assert_null(c, "%s: *out set", bad[i].what);
    }
    /* edges that are fine: high == capacity, low == high */
    pc_cache_config ok = cfg;
    ok.low_watermark = 8;
    ok.high_watermark = 8;
    cache_del(mk_cfg(&ok));

    /* the pool's own errors come through */
    pc_cache_config b = cfg;
    b.pool.capacity_blocks = 1;
    RC_EQ(pc_cache_create(&b, &c), PC_E_RANGE);
    b = cfg;
    b.pool.layout.block_bytes++;
    RC_EQ(pc_cache_create(&b, &c), PC_E_INVAL);

    /* a host-backed cache refused for its limits leaves no shm object */
    b = cfg_of(8, PC_POOL_HOST);
    b.lease_ttl_ms = 0;
    char name[64];
    snprintf(name, sizeof(name), "%s", b.pool.shm_name);
    RC_EQ(pc_cache_create(&b, &c), PC_E_INVAL);
    void *m = NULL;
    RC_EQ(pc_pool_map(name, 8 * b.pool.layout.block_bytes, &m), PC_E_NOENT);
    /* and one that was created is unlinked by destroy */
    b.lease_ttl_ms = TTL;
    c = mk_cfg(&b);
    RC_EQ(pc_pool_map(name, 8 * b.pool.layout.block_bytes, &m), 0);
    pc_pool_unmap(m, 8 * b.pool.layout.block_bytes);
    cache_del(c);
    RC_EQ(pc_pool_map(name, 8 * b.pool.layout.block_bytes, &m), PC_E_NOENT);
}

/* ---- lookup -------------------------------------------------------------- */

Test(cache, lookup_without_pin)
{
    pc_cache *c = mk(16);
    uint32_t a[14], ab[4], got[8];
    seq_fill(a, 14, 100); /* 3 pages + 2 tokens */
    put(c, NS, a, 14, ab);
    COUNTS(c, 13, 0, 3);
    snap before = take(c);

    pc_lookup_result r = lk(c, NS, a, 14, 0, 0, got);
    cr_assert_eq(r.pages, 3);
    cr_assert_eq(r.tokens, 12);
    cr_assert_eq(r.lease, 0);
    IDS_EQ(got, ab, 3, "blocks");
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.leases, before.st.leases, "a lookup without pin made a lease");
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.tree.pages, 3);
    cr_assert_eq(s.tree.evictable_pages, 3);
    cr_assert_eq(s.tree.lookups, before.st.tree.lookups + 1);
    cr_assert_eq(s.tree.hit_pages, before.st.tree.hit_pages + 3);

    /* a prefix; a partial page never matches */
    r = lk(c, NS, a, 9, 0, 0, got);
    cr_assert_eq(r.pages, 2);
    IDS_EQ(got, ab, 2, "prefix blocks");
    r = lk(c, NS, a, 3, 0, 0, NULL); /* no full page: no room needed */
    cr_assert_eq(r.pages, 0);
    /* diverging in the second page */
    uint32_t d[12];
    memcpy(d, a, sizeof(d));
    d[6] = 9999;
    r = lk(c, NS, d, 12, 0, 0, got);
    cr_assert_eq(r.pages, 1);
    cr_assert_eq(got[0], ab[0]);
    /* namespaces are separate */
    r = lk(c, "model-b", a, 14, 0, 0, got);
    cr_assert_eq(r.pages, 0);
    r = lk(c, "", a, 14, 0, 0, got);
    cr_assert_eq(r.pages, 0);

    /* argument errors */
    pc_lookup_result out;
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 14, 0, 0, NULL, &out),
          PC_E_INVAL);
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 14, 0, 0, got, NULL),
          PC_E_INVAL);
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), NULL, 14, 0, 0, got, &out),
          PC_E_INVAL);
    char longns[PC_RADIX_NS_MAX + 1];
    memset(longns, 'n', sizeof(longns));
    RC_EQ(pc_cache_lookup(c, longns, sizeof(longns), a, 14, 0, 0, got, &out),
          PC_E_INVAL);
    RC_EQ(pc_cache_lookup(c, longns, sizeof(longns), a, 14, 1, 0, got, &out),
          PC_E_INVAL);
    CHECK(c);
    s = cstats(c);
    cr_assert_eq(s.leases, 0, "a refused lookup with pin left a lease");
    COUNTS(c, 13, 0, 3);
    cache_del(c);
}

Test(cache, lookup_pin_creates_lease_and_protects)
{
    pc_cache *c = mk(16);
    uint32_t a[12], b[8], ab[3], bb[2], got[8];
    seq_fill(a, 12, 100);
    seq_fill(b, 8, 200);
    put(c, NS, a, 12, ab);
    put(c, NS, b, 8, bb);
    COUNTS(c, 11, 0, 5);
    pc_cache_stats s0 = cstats(c);

    pc_lookup_result r = lk(c, NS, a, 12, 1, 0, got);
    cr_assert_eq(r.pages, 3);
    IDS_EQ(got, ab, 3, "pinned blocks");
    uint64_t la = r.lease;
    cr_assert_neq(la, 0, "a pin must create a lease");
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.leases, 1);
    cr_assert_eq(s.leases_created, s0.leases_created + 1);
    cr_assert_eq(s.pins, 1);
    cr_assert_eq(s.tree.protected_pages, 3);
    cr_assert_eq(s.tree.evictable_pages, 2);

    /* evict everything: only b goes */
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 2);
    CHECK(c);
    COUNTS(c, 13, 0, 3);
    cr_assert_eq(lk_pages(c, NS, b, 8), 0);
    r = lk(c, NS, a, 12, 0, 0, got);
    cr_assert_eq(r.pages, 3);
    IDS_EQ(got, ab, 3, "pinned blocks after evict");

    /* a second pin under the same lease, a pin by another lease */
    r = lk(c, NS, a, 4, 1, la, got);
    cr_assert_eq(r.pages, 1);
    cr_assert_eq(r.lease, la, "the named lease holds the pin");
    r = lk(c, NS, a, 8, 1, 0, got);
    uint64_t lb = r.lease;
    cr_assert(lb != 0 && lb != la, "a new lease for lease 0");
    s = cstats(c);
    cr_assert_eq(s.leases, 2);
    cr_assert_eq(s.pins, 3);

    /* releasing la leaves b's pin on the first two pages */
    rel(c, la);
    s = cstats(c);
    cr_assert_eq(s.pins, 1);
    cr_assert_eq(s.tree.protected_pages, 2);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 1);
    CHECK(c);
    cr_assert_eq(lk_pages(c, NS, a, 12), 2);
    rel(c, lb);
    cr_assert_eq(cstats(c).tree.evictable_pages, 2);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 2);
    CHECK(c);
    COUNTS(c, 16, 0, 0);
    cache_del(c);
}

Test(cache, lookup_pin_with_nothing_matched_creates_no_lease)
{
    pc_cache *c = mk(8);
    uint32_t a[8], x[8], ab[2], got[2];
    seq_fill(a, 8, 100);
    seq_fill(x, 8, 900);

    /* empty cache */
    pc_lookup_result r = lk(c, NS, a, 8, 1, 0, got);
    cr_assert_eq(r.pages, 0);
    cr_assert_eq(r.lease, 0);
    cr_assert_eq(cstats(c).leases, 0);
    cr_assert_eq(cstats(c).leases_created, 0);

    /* something cached, but not this prompt; a partial page */
    put(c, NS, a, 8, ab);
    uint64_t created = cstats(c).leases_created;
    r = lk(c, NS, x, 8, 1, 0, got);
    cr_assert_eq(r.pages, 0);
    cr_assert_eq(r.lease, 0);
    r = lk(c, NS, a, 3, 1, 0, NULL);
    cr_assert_eq(r.pages, 0);
    cr_assert_eq(r.lease, 0);
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.leases, 0);
    cr_assert_eq(s.leases_created, created);
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.tree.evictable_pages, 2);

    /* a named lease with nothing matched: no pin, only renewed */
    uint64_t l = 0;
    uint32_t id;
    al(c, 1, &l, &id);
    tick(600);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL - 600);
    r = lk(c, NS, x, 8, 1, l, got);
    cr_assert_eq(r.pages, 0);
    s = cstats(c);
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.leases, 1);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL, "the lease was not renewed");
    rel(c, l);
    cache_del(c);
}

Test(cache, lookup_with_unknown_lease)
{
    pc_cache *c = mk(8);
    uint32_t a[8], ab[2], got[2];
    seq_fill(a, 8, 100);
    put(c, NS, a, 8, ab);
    uint64_t l = 0;
    uint32_t id;
    al(c, 1, &l, &id);
    pc_lookup_result out;
    snap before = take(c);
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 8, 1, l ^ 1, got, &out),
          PC_E_LEASE);
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 8, 1, UINT64_MAX, got, &out),
          PC_E_LEASE);
    SAME(c, before);
    rel(c, l);
    before = take(c);
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 8, 1, l, got, &out), PC_E_LEASE);
    SAME(c, before);
    cache_del(c);
}

/* DESIGN.md section 4 and the header of cache.h: every op that names a lease
 * renews it, and lookup's errors include PC_E_LEASE for an unknown lease.
 * A lookup WITHOUT pin that names a lease must therefore check and renew it
 * too (an engine may name its lease on a plain lookup as a heartbeat).
 * Was a bug: pc_cache_lookup() ignored `lease` entirely when pin == 0 (no
 * renewal, an unknown lease was not refused). */
Test(cache, lookup_without_pin_naming_a_lease)
{
    pc_cache *c = mk(8);
    uint32_t a[8], ab[2], got[2];
    seq_fill(a, 8, 100);
    put(c, NS, a, 8, ab);
    uint64_t l = 0;
    uint32_t id;
    al(c, 1, &l, &id);
    tick(700);
    pc_lookup_result r = lk(c, NS, a, 8, 0, l, got);
    cr_assert_eq(r.pages, 2);
    cr_assert_eq(cstats(c).pins, 0, "no pin without pin");
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL,
                 "lookup(pin=0, lease=L) did not renew L");
    pc_lookup_result out;
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 8, 0, l ^ 1, got, &out),
          PC_E_LEASE);
    rel(c, l);
    cache_del(c);
}

/* ---- alloc --------------------------------------------------------------- */

Test(cache, alloc_blocks_are_leased_by_the_lease)
{
    pc_cache *c = mk(8);
    uint32_t ids[8], more[2];
    uint64_t l = 0;
    al(c, 3, &l, ids);
    cr_assert(ids[0] == 0 && ids[1] == 1 && ids[2] == 2,
              "a fresh pool hands out 0, 1, 2");
    COUNTS(c, 5, 3, 0);
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.leases, 1);
    cr_assert_eq(s.leases_created, 1);

    /* more blocks under the same lease */
    uint64_t l2 = l;
    al(c, 2, &l2, more);
    cr_assert_eq(l2, l);
    COUNTS(c, 3, 5, 0);
    cr_assert_eq(cstats(c).leases, 1);

    /* another lease */
    uint64_t m = 0;
    uint32_t mid;
    al(c, 1, &m, &mid);
    cr_assert_neq(m, l);
    cr_assert_eq(cstats(c).leases, 2);

    /* refused: unknown lease, bad arguments; nothing changes */
    snap before = take(c);
    uint64_t bogus = l ^ m ^ 0x5555;
    uint32_t x[2] = {77, 77};
    RC_EQ(pc_cache_alloc(c, 1, &bogus, x), PC_E_LEASE);
    cr_assert_eq(bogus, l ^ m ^ 0x5555, "lease id overwritten on failure");
    cr_assert_eq(x[0], 77, "ids written on failure");
    RC_EQ(pc_cache_alloc(c, 1, NULL, x), PC_E_INVAL);
    RC_EQ(pc_cache_alloc(c, 1, &l2, NULL), PC_E_INVAL);
    SAME(c, before);

    /* release frees exactly the blocks of that lease */
    rel(c, l);
    COUNTS(c, 7, 1, 0);
    STATES(c, ids, 3, PC_BLOCK_FREE);
    STATES(c, more, 2, PC_BLOCK_FREE);
    STATES(c, &mid, 1, PC_BLOCK_LEASED);
    rel(c, m);
    COUNTS(c, 8, 0, 0);
    cache_del(c);
}

Test(cache, alloc_evicts_lru_pages_first)
{
    pc_cache *c = mk(8);
    uint32_t a[8], b[8], d[8], ab[2], bb[2], db[2], got[2], ids[8];
    seq_fill(a, 8, 100);
    seq_fill(b, 8, 200);
    seq_fill(d, 8, 300);
    put(c, NS, a, 8, ab);
    tick(1);
    put(c, NS, b, 8, bb);
    tick(1);
    put(c, NS, d, 8, db);
    COUNTS(c, 2, 0, 6);
    tick(1);
    /* a is used again: b is now the least recently used */
    cr_assert_eq(lk_pages(c, NS, a, 8), 2);
    uint32_t free_before[2];
    cr_assert_eq(bstate(c, 6), PC_BLOCK_FREE);
    cr_assert_eq(bstate(c, 7), PC_BLOCK_FREE);
    free_before[0] = 6;
    free_before[1] = 7;

    uint64_t l = 0;
    al(c, 4, &l, ids);
    COUNTS(c, 0, 4, 4);
    cr_assert_eq(cstats(c).evictions_alloc, 2);
    /* the four are b's two blocks and the two that were free */
    uint32_t want[4] = {bb[0], bb[1], free_before[0], free_before[1]};
    for (int i = 0; i < 4; i++) {
        bool found = false;
        for (int j = 0; j < 4; j++)
            found |= ids[j] == want[i];
        cr_assert(found, "block %u not handed out", want[i]);
    }
    cr_assert_eq(lk_pages(c, NS, b, 8), 0, "b should be evicted");
    /* look d up before a: d becomes the LRU one */
    pc_lookup_result r = lk(c, NS, d, 8, 0, 0, got);
    cr_assert_eq(r.pages, 2);
    IDS_EQ(got, db, 2, "d");
    r = lk(c, NS, a, 8, 0, 0, got);
    cr_assert_eq(r.pages, 2);
    IDS_EQ(got, ab, 2, "a");

    /* one more: d loses its deepest page, and that block is handed out */
    uint32_t one;
    al(c, 1, &l, &one);
    cr_assert_eq(one, db[1], "the evicted block comes back first (LIFO)");
    cr_assert_eq(cstats(c).evictions_alloc, 3);
    cr_assert_eq(lk_pages(c, NS, d, 8), 1);
    cr_assert_eq(lk_pages(c, NS, a, 8), 2);
    COUNTS(c, 0, 5, 3);
    rel(c, l);
    COUNTS(c, 5, 0, 3);
    cache_del(c);
}

Test(cache, alloc_nospace_changes_nothing)
{
    pc_cache *c = mk(8);
    uint32_t a[16], b[8], ab[4], bb[2], got[4], ids[8];
    seq_fill(a, 16, 100);
    seq_fill(b, 8, 200);
    put(c, NS, a, 16, ab);
    put(c, NS, b, 8, bb);
    COUNTS(c, 2, 0, 6);
    pc_lookup_result r = lk(c, NS, a, 16, 1, 0, got); /* pin a: 4 pages */
    uint64_t la = r.lease;
    cr_assert_eq(r.pages, 4);

    /* free 2 + evictable 2 < 5 */
    uint64_t l = 0;
    snap before = take(c);
    for (int i = 0; i < 8; i++)
        ids[i] = 0xdead;
    RC_EQ(pc_cache_alloc(c, 5, &l, ids), PC_E_NOSPACE);
    cr_assert_eq(l, 0);
    cr_assert_eq(ids[0], 0xdead);
    before.st.nospace++; /* the one counter a refusal moves */
    SAME(c, before);
    RC_EQ(pc_cache_alloc(c, 5, &la, ids), PC_E_NOSPACE);
    before.st.nospace++;
    SAME(c, before);
    RC_EQ(pc_cache_alloc(c, 9, &la, ids), PC_E_NOSPACE); /* > capacity */
    before.st.nospace++;
    SAME(c, before);
    cr_assert_eq(lk_pages(c, NS, b, 8), 2, "b was evicted by a refused alloc");
    cr_assert_eq(lk_pages(c, NS, a, 16), 4);

    /* 4 fit: b goes, a stays */
    al(c, 4, &l, ids);
    cr_assert_eq(lk_pages(c, NS, b, 8), 0);
    cr_assert_eq(lk_pages(c, NS, a, 16), 4);
    COUNTS(c, 0, 4, 4);

    /* only pinned pages remain: nothing to evict */
    uint64_t l2 = 0;
    before = take(c);
    RC_EQ(pc_cache_alloc(c, 1, &l2, ids + 4), PC_E_NOSPACE);
    RC_EQ(pc_cache_alloc(c, 1, &l, ids + 4), PC_E_NOSPACE);
    before.st.nospace += 2;
    SAME(c, before);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 0);
    SAME(c, before);
    r = lk(c, NS, a, 16, 0, 0, got);
    cr_assert_eq(r.pages, 4);
    IDS_EQ(got, ab, 4, "pinned a");

    rel(c, la);
    al(c, 1, &l, ids + 4); /* now a's deepest page can go */
    cr_assert_eq(ids[4], ab[3]);
    cr_assert_eq(lk_pages(c, NS, a, 16), 3);
    rel(c, l);
    COUNTS(c, 5, 0, 3);
    cache_del(c);
}

/* ---- insert -------------------------------------------------------------- */

Test(cache, insert_adopts_the_lease_blocks)
{
    pc_cache *c = mk(8);
    uint32_t a[14], got[3], ids[3], canon[3];
    seq_fill(a, 14, 100); /* 3 pages + 2 tokens */
    pc_lookup_result r = lk(c, NS, a, 14, 1, 0, got);
    cr_assert_eq(r.pages, 0);
    uint64_t l = 0;
    al(c, 3, &l, ids);
    pc_insert_result ir = in(c, NS, a, 14, ids, l, canon);
    cr_assert_eq(ir.cached_tokens, 0);
    cr_assert_eq(ir.inserted_pages, 3);
    cr_assert_eq(ir.freed_blocks, 0);
    IDS_EQ(canon, ids, 3, "canon");
    STATES(c, ids, 3, PC_BLOCK_CACHED);
    COUNTS(c, 5, 0, 3);
    cr_assert_eq(cstats(c).leases, 1, "insert does not end the lease");

    /* the lease no longer owns them: release must not free them */
    rel(c, l);
    STATES(c, ids, 3, PC_BLOCK_CACHED);
    COUNTS(c, 5, 0, 3);
    r = lk(c, NS, a, 14, 0, 0, got);
    cr_assert_eq(r.pages, 3);
    IDS_EQ(got, ids, 3, "lookup after insert");
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 3);
    CHECK(c);
    COUNTS(c, 8, 0, 0);
    cache_del(c);
}

Test(cache, insert_duplicate_from_a_second_engine)
{
    pc_cache *c = mk(16);
    uint32_t a[12], got[4], ia[3], ib[3], canon[4];
    seq_fill(a, 12, 100);

    /* both engines miss, both allocate and compute */
    cr_assert_eq(lk(c, NS, a, 12, 1, 0, got).pages, 0);
    cr_assert_eq(lk(c, NS, a, 12, 1, 0, got).pages, 0);
    uint64_t la = 0, lb = 0;
    al(c, 3, &la, ia);
    al(c, 3, &lb, ib);
    COUNTS(c, 10, 6, 0);

    pc_insert_result r = in(c, NS, a, 12, ia, la, canon);
    cr_assert_eq(r.inserted_pages, 3);
    IDS_EQ(canon, ia, 3, "first engine canon");
    COUNTS(c, 10, 3, 3);

    memset(canon, 0xff, sizeof(canon));
    r = in(c, NS, a, 12, ib, lb, canon);
    cr_assert_eq(r.cached_tokens, 12);
    cr_assert_eq(r.inserted_pages, 0);
    cr_assert_eq(r.freed_blocks, 3);
    IDS_EQ(canon, ia, 3, "second engine gets the first engine's blocks");
    STATES(c, ib, 3, PC_BLOCK_FREE);
    COUNTS(c, 13, 0, 3);
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.tree.duplicate_pages, 3);

    rel(c, la);
    rel(c, lb);
    COUNTS(c, 13, 0, 3);
    cr_assert_eq(lk(c, NS, a, 12, 0, 0, got).pages, 3);
    IDS_EQ(got, ia, 3, "canonical blocks");

    /* partial overlap: B computed 4 pages, 3 of them cached meanwhile */
    uint32_t a4[16], i4[4];
    seq_fill(a4, 16, 100);
    lb = 0;
    al(c, 4, &lb, i4);
    r = in(c, NS, a4, 16, i4, lb, canon);
    cr_assert_eq(r.cached_tokens, 12);
    cr_assert_eq(r.inserted_pages, 1);
    cr_assert_eq(r.freed_blocks, 3);
    IDS_EQ(canon, ia, 3, "overlap canon");
    cr_assert_eq(canon[3], i4[3]);
    STATES(c, i4, 3, PC_BLOCK_FREE);
    STATES(c, i4 + 3, 1, PC_BLOCK_CACHED);
    COUNTS(c, 12, 0, 4);
    rel(c, lb);
    COUNTS(c, 12, 0, 4);
    cache_del(c);
}

Test(cache, insert_canonical_plus_own_blocks)
{
    pc_cache *c = mk(16);
    uint32_t a[20], cb[2], got[5], own[3], blocks[5], canon[5];
    seq_fill(a, 20, 100);
    put(c, NS, a, 8, cb); /* the first 2 pages are cached */

    pc_lookup_result r = lk(c, NS, a, 20, 1, 0, got);
    cr_assert_eq(r.pages, 2);
    IDS_EQ(got, cb, 2, "lookup");
    uint64_t l = r.lease;
    al(c, 3, &l, own);
    memcpy(blocks, got, 2 * sizeof(uint32_t));
    memcpy(blocks + 2, own, 3 * sizeof(uint32_t));
    pc_insert_result ir = in(c, NS, a, 20, blocks, l, canon);
    cr_assert_eq(ir.cached_tokens, 8);
    cr_assert_eq(ir.inserted_pages, 3);
    cr_assert_eq(ir.freed_blocks, 0);
    IDS_EQ(canon, blocks, 5, "canon");
    COUNTS(c, 11, 0, 5);
    rel(c, l);
    COUNTS(c, 11, 0, 5);
    r = lk(c, NS, a, 20, 0, 0, got);
    cr_assert_eq(r.pages, 5);
    IDS_EQ(got, blocks, 5, "lookup after insert");

    /* inserting an already cached prompt with its canonical ids only */
    uint64_t l2 = 0;
    uint32_t tmp;
    al(c, 1, &l2, &tmp);
    tick(500);
    ir = in(c, NS, a, 20, blocks, l2, canon);
    cr_assert_eq(ir.cached_tokens, 20);
    cr_assert_eq(ir.inserted_pages, 0);
    cr_assert_eq(ir.freed_blocks, 0);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL, "insert renews the lease");
    STATES(c, &tmp, 1, PC_BLOCK_LEASED);
    rel(c, l2);
    COUNTS(c, 11, 0, 5);
    cache_del(c);
}

Test(cache, insert_refuses_blocks_the_lease_does_not_own)
{
    pc_cache *c = mk(16);
    const size_t nsl = strlen(NS);
    uint32_t a[8], x[8], ab[2], ia[2], ib[2], canon[2], blk[2];
    seq_fill(a, 8, 100);
    seq_fill(x, 8, 500);
    put(c, NS, a, 8, ab); /* cached: a -> ab */
    uint64_t la = 0, lb = 0;
    al(c, 2, &la, ia);
    al(c, 2, &lb, ib);
    uint32_t f = some_free(c);
    pc_insert_result out;
    tick(10);
    snap before = take(c);

#define REFUSED(tok, b0, b1, lease, want)                                      \
    do {                                                                       \
        blk[0] = (b0);                                                         \
        blk[1] = (b1);                                                         \
        memset(canon, 0xee, sizeof(canon));                                    \
        RC_EQ(pc_cache_insert(c, NS, nsl, (tok), 8, blk, (lease), canon, &out), \
              (want));                                                         \
        SAME(c, before);                                                       \
    } while (0)

    /* another lease's blocks */
    REFUSED(x, ib[0], ib[1], la, PC_E_PERM);
    REFUSED(x, ia[0], ib[1], la, PC_E_PERM);
    REFUSED(x, ia[0], ia[1], lb, PC_E_PERM);
    /* no lease at all: nothing is owned, only canonical ids could pass */
    REFUSED(x, ia[0], ia[1], 0, PC_E_PERM);
    REFUSED(x, f, ia[0], 0, PC_E_PERM);
    /* a FREE block */
    REFUSED(x, ia[0], f, la, PC_E_PERM);
    REFUSED(x, f, ia[1], la, PC_E_PERM);
    /* a CACHED block of another page */
    REFUSED(x, ia[0], ab[0], la, PC_E_PERM);
    REFUSED(x, ab[1], ia[1], la, PC_E_PERM);
    /* a's canonical ids, but on the wrong pages */
    REFUSED(a, ab[1], ab[0], la, PC_E_PERM);
    /* out of range */
    REFUSED(x, ia[0], 16, la, PC_E_RANGE);
    REFUSED(x, UINT32_MAX, ia[1], la, PC_E_RANGE);
    /* the same block twice */
    REFUSED(x, ia[0], ia[0], la, PC_E_INVAL);
    /* unknown lease */
    REFUSED(x, ia[0], ia[1], la ^ lb ^ 1, PC_E_LEASE);
#undef REFUSED
    cache_del(c);
}

Test(cache, insert_argument_errors)
{
    pc_cache *c = mk(8);
    uint32_t a[8], ids[2], canon[2];
    seq_fill(a, 8, 100);
    uint64_t l = 0;
    al(c, 2, &l, ids);
    pc_insert_result out;
    snap before = take(c);
    RC_EQ(pc_cache_insert(c, NS, strlen(NS), a, 8, NULL, l, canon, &out),
          PC_E_INVAL);
    RC_EQ(pc_cache_insert(c, NS, strlen(NS), NULL, 8, ids, l, canon, &out),
          PC_E_INVAL);
    RC_EQ(pc_cache_insert(c, NS, strlen(NS), a, 8, ids, l, canon, NULL),
          PC_E_INVAL);
    char longns[PC_RADIX_NS_MAX + 1];
    memset(longns, 'n', sizeof(longns));
    RC_EQ(pc_cache_insert(c, longns, sizeof(longns), a, 8, ids, l, canon, &out),
          PC_E_INVAL);
    SAME(c, before);
    /* after all that, the real insert works */
    pc_insert_result r = in(c, NS, a, 8, ids, l, canon);
    cr_assert_eq(r.inserted_pages, 2);
    rel(c, l);
    cache_del(c);
}

/* ---- release ------------------------------------------------------------- */

Test(cache, release_unpins_and_frees)
{
    pc_cache *c = mk(8);
    uint32_t a[16], ab[2], got[4], own[2];
    seq_fill(a, 16, 100);
    put(c, NS, a, 8, ab);
    pc_lookup_result r = lk(c, NS, a, 16, 1, 0, got);
    uint64_t l = r.lease;
    cr_assert_eq(r.pages, 2);
    al(c, 2, &l, own);
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.pins, 1);
    cr_assert_eq(s.tree.protected_pages, 2);
    COUNTS(c, 4, 2, 2);

    rel(c, l);
    s = cstats(c);
    cr_assert_eq(s.leases, 0);
    cr_assert_eq(s.leases_released, 2, "put() released one, this the other");
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.tree.protected_pages, 0);
    cr_assert_eq(s.tree.evictable_pages, 2);
    STATES(c, own, 2, PC_BLOCK_FREE);
    STATES(c, ab, 2, PC_BLOCK_CACHED);
    COUNTS(c, 6, 0, 2);

    snap before = take(c);
    RC_EQ(pc_cache_release(c, l), PC_E_LEASE);
    RC_EQ(pc_cache_release(c, 0), PC_E_LEASE);
    RC_EQ(pc_cache_release(c, l ^ 0x8000000000000000ull), PC_E_LEASE);
    RC_EQ(pc_cache_touch(c, l), PC_E_LEASE);
    SAME(c, before);
    uint32_t tmp;
    RC_EQ(pc_cache_alloc(c, 1, &l, &tmp), PC_E_LEASE);
    SAME(c, before);
    cache_del(c);
}

/* ---- TTL ----------------------------------------------------------------- */

Test(cache, lease_expires_after_ttl)
{
    pc_cache *c = mk(8);
    uint32_t a[8], ab[2], got[2], own[2], x[8];
    seq_fill(a, 8, 100);
    seq_fill(x, 8, 500);
    put(c, NS, a, 8, ab);
    pc_lookup_result r = lk(c, NS, a, 8, 1, 0, got);
    uint64_t l = r.lease;
    al(c, 2, &l, own);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL);

    tick(TTL - 1); /* one millisecond left */
    cr_assert_eq(pc_cache_next_deadline_ms(c), 1);
    cr_assert_eq(pc_cache_expire(c), 0);
    CHECK(c);
    cr_assert_eq(cstats(c).leases, 1);

    tick(1); /* TTL ms since the lease was last named */
    cr_assert_eq(pc_cache_next_deadline_ms(c), 0);
    snap before = take(c);
    pc_lookup_result lr;
    pc_insert_result ir;
    uint32_t tmp;
    RC_EQ(pc_cache_touch(c, l), PC_E_LEASE);
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 8, 1, l, got, &lr), PC_E_LEASE);
    RC_EQ(pc_cache_alloc(c, 1, &l, &tmp), PC_E_LEASE);
    RC_EQ(pc_cache_insert(c, NS, strlen(NS), x, 8, own, l, NULL, &ir),
          PC_E_LEASE);
    RC_EQ(pc_cache_release(c, l), PC_E_LEASE);
    SAME(c, before); /* not reaped by the requests: expire does that */
    cr_assert_eq(cstats(c).leases, 1);

    cr_assert_eq(pc_cache_expire(c), 1);
    CHECK(c);
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.leases, 0);
    cr_assert_eq(s.leases_expired, 1);
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.tree.evictable_pages, 2, "the pins are gone");
    STATES(c, own, 2, PC_BLOCK_FREE);
    COUNTS(c, 6, 0, 2);
    cr_assert_eq(pc_cache_next_deadline_ms(c), UINT64_MAX);
    cr_assert_eq(pc_cache_expire(c), 0);
    RC_EQ(pc_cache_touch(c, l), PC_E_LEASE);
    RC_EQ(pc_cache_release(c, l), PC_E_LEASE);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 2);
    CHECK(c);
    COUNTS(c, 8, 0, 0);
    cache_del(c);
}

Test(cache, every_op_naming_a_lease_renews_it)
{
    pc_cache *c = mk(32);
    const size_t nsl = strlen(NS);
    uint32_t a[8], ab[2], got[8];
    seq_fill(a, 8, 100);
    put(c, NS, a, 8, ab);
    pc_lookup_result r = lk(c, NS, a, 8, 1, 0, got);
    uint64_t l = r.lease;
    uint64_t start = g_now;

    for (int round = 0; round < 3; round++) {
        for (int op = 0; op < 6; op++) {
            tick(TTL - 1);
            uint32_t own[2], p[8], canon[2];
            seq_fill(p, 8, 1000u + (uint32_t)(round * 100 + op * 10));
            pc_insert_result ir;
            pc_lookup_result lr;
            switch (op) {
            case 0: RC_EQ(pc_cache_touch(c, l), 0); break;
            case 1: /* lookup with pin, matched */
                RC_EQ(pc_cache_lookup(c, NS, nsl, a, 8, 1, l, got, &lr), 0);
                cr_assert_eq(lr.lease, l);
                break;
            case 2: /* lookup with pin, nothing matched */
                RC_EQ(pc_cache_lookup(c, NS, nsl, p, 8, 1, l, got, &lr), 0);
                break;
            case 3: { /* alloc */
                uint64_t ll = l;
                RC_EQ(pc_cache_alloc(c, 2, &ll, own), 0);
                break;
            }
            case 4: { /* insert of a new prompt with own blocks */
                uint64_t ll = l;
                RC_EQ(pc_cache_alloc(c, 2, &ll, own), 0);
                RC_EQ(pc_cache_insert(c, NS, nsl, p, 8, own, l, canon, &ir), 0);
                break;
            }
            case 5: /* insert of a cached prompt with canonical ids only */
                RC_EQ(pc_cache_insert(c, NS, nsl, a, 8, ab, l, canon, &ir), 0);
                break;
            }
            CHECK(c);
            cr_assert_eq(pc_cache_next_deadline_ms(c), TTL,
                         "round %d op %d did not renew the lease", round, op);
            cr_assert_eq(pc_cache_expire(c), 0);
        }
    }
    cr_assert_gt(g_now - start, 10 * TTL);
    RC_EQ(pc_cache_touch(c, l), 0);

    /* a refused request does not renew */
    tick(TTL - 1);
    uint32_t bad[2] = {ab[0], 999};
    pc_insert_result ir;
    RC_EQ(pc_cache_insert(c, NS, nsl, a, 8, bad, l, NULL, &ir), PC_E_RANGE);
    cr_assert_eq(pc_cache_next_deadline_ms(c), 1);
    tick(1);
    RC_EQ(pc_cache_touch(c, l), PC_E_LEASE);
    cr_assert_eq(pc_cache_expire(c), 1);
    CHECK(c);
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.pool.leased, 0);
    cr_assert_eq(s.pins, 0);
    cache_del(c);
}

Test(cache, next_deadline)
{
    pc_cache *c = mk(8);
    uint32_t id[2];
    cr_assert_eq(pc_cache_next_deadline_ms(c), UINT64_MAX);
    uint64_t l1 = 0, l2 = 0;
    al(c, 1, &l1, id);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL);
    tick(300);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL - 300);
    al(c, 1, &l2, id + 1);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL - 300, "l1 is due first");
    tick(100);
    RC_EQ(pc_cache_touch(c, l1), 0);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL - 100, "now l2 is due first");
    rel(c, l2);
    cr_assert_eq(pc_cache_next_deadline_ms(c), TTL);
    tick(5 * TTL);
    cr_assert_eq(pc_cache_next_deadline_ms(c), 0, "overdue");
    cr_assert_eq(pc_cache_expire(c), 1);
    CHECK(c);
    cr_assert_eq(pc_cache_next_deadline_ms(c), UINT64_MAX);
    COUNTS(c, 8, 0, 0);
    cache_del(c);
}

/* Many leases expiring in a mixed order: the heap keeps up. */
Test(cache, expire_in_deadline_order)
{
    pc_cache *c = mk(64);
    uint64_t l[40];
    uint32_t id;
    for (int i = 0; i < 40; i++) {
        l[i] = 0;
        al(c, 1, &l[i], &id);
        tick(10);
    }
    /* renew the even ones: odd ones expire first, in creation order */
    for (int i = 0; i < 40; i += 2) {
        RC_EQ(pc_cache_touch(c, l[i]), 0);
        CHECK(c);
    }
    /* now = t0 + 400; odd i has deadline t0 + 10 i + TTL */
    uint64_t t0 = g_now - 400;
    for (int i = 1; i < 40; i += 2) {
        g_now = t0 + 10 * (uint64_t)i + TTL;
        cr_assert_eq(pc_cache_expire(c), 1, "lease %d", i);
        CHECK(c);
        RC_EQ(pc_cache_touch(c, l[i]), PC_E_LEASE);
    }
    cr_assert_eq(cstats(c).leases, 20);
    g_now = t0 + 400 + TTL;
    cr_assert_eq(pc_cache_expire(c), 20);
    CHECK(c);
    COUNTS(c, 64, 0, 0);
    cache_del(c);
}

/* Thousands of leases: the id table grows and deletes in any order, the
 * expiry heap keeps up, unknown ids miss, ids are unguessable. */
Test(cache, many_leases)
{
    enum { N = 2000 };
    pc_cache *c = mk(8);
    uint32_t a[4], ab[1], got[1];
    seq_fill(a, 4, 100);
    put(c, NS, a, 4, ab);
    uint64_t *id = calloc(N, sizeof(*id));
    bool *gone = calloc(N, sizeof(*gone));
    cr_assert(id && gone);
    uint64_t hi = 0;
    for (int i = 0; i < N; i++) {
        if (i % 7 == 0)
            tick(1);
        pc_lookup_result r = lk(c, NS, a, 4, 1, 0, got);
        cr_assert_eq(r.pages, 1);
        id[i] = r.lease;
        hi |= id[i] >> 40;
    }
    cr_assert_neq(hi, 0, "lease ids look small, not random 64-bit numbers");
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.leases, N);
    cr_assert_eq(s.pins, N);
    /* all distinct (sorted copy) */
    uint64_t *sorted = malloc(N * sizeof(*sorted));
    cr_assert_not_null(sorted);
    memcpy(sorted, id, N * sizeof(*sorted));
    for (int i = 1; i < N; i++) { /* insertion sort: N is small */
        uint64_t v = sorted[i];
        int j = i - 1;
        while (j >= 0 && sorted[j] > v) {
            sorted[j + 1] = sorted[j];
            j--;
        }
        sorted[j + 1] = v;
    }
    for (int i = 1; i < N; i++)
        cr_assert_neq(sorted[i], sorted[i - 1], "lease id handed out twice");
    free(sorted);

    /* release 3/4 of them in a scrambled order, touch others meanwhile */
    uint64_t x = 88172645463325252ull;
    int released = 0;
    for (int k = 0; k < N * 3 / 4; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int i = (int)(x % N);
        while (gone[i])
            i = (i + 1) % N;
        rel(c, id[i]);
        gone[i] = true;
        released++;
        int t = (int)((x >> 20) % N);
        RC_EQ(pc_cache_touch(c, id[t]), gone[t] ? PC_E_LEASE : 0);
        CHECK(c);
        RC_EQ(pc_cache_touch(c, id[t] ^ 0x100), PC_E_LEASE);
        if (k % 50 == 0)
            tick(1);
    }
    s = cstats(c);
    cr_assert_eq(s.leases, (uint64_t)(N - released));
    cr_assert_eq(s.pins, (uint64_t)(N - released));
    for (int i = 0; i < N; i++)
        RC_EQ(pc_cache_touch(c, id[i]), gone[i] ? PC_E_LEASE : 0);
    CHECK(c);
    tick(TTL);
    cr_assert_eq(pc_cache_expire(c), (size_t)(N - released));
    CHECK(c);
    s = cstats(c);
    cr_assert_eq(s.leases, 0);
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.leases_expired, (uint64_t)(N - released));
    free(id);
    free(gone);
    cache_del(c);
}

/* ---- limits -------------------------------------------------------------- */

Test(cache, limit_max_leases)
{
    pc_cache_config cfg = cfg_of(16, PC_POOL_NONE);
    cfg.max_leases = 2;
    pc_cache *c = mk_cfg(&cfg);
    uint32_t a[8], ab[2], got[2], ids[4];
    seq_fill(a, 8, 100);
    put(c, NS, a, 8, ab);
    uint64_t l1 = 0, l2 = 0, l3 = 0;
    al(c, 1, &l1, ids);
    al(c, 1, &l2, ids + 1);
    snap before = take(c);
    pc_lookup_result lr;
    RC_EQ(pc_cache_alloc(c, 1, &l3, ids + 2), PC_E_LIMIT);
    cr_assert_eq(l3, 0);
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 8, 1, 0, got, &lr), PC_E_LIMIT);
    SAME(c, before);
    /* named leases still work */
    al(c, 1, &l1, ids + 2);
    cr_assert_eq(lk(c, NS, a, 8, 1, l2, got).pages, 2);
    /* raised at run time */
    pc_cache_config lim = cfg;
    lim.max_leases = 3;
    RC_EQ(pc_cache_set_limits(c, &lim), 0);
    CHECK(c);
    al(c, 1, &l3, ids + 3);
    uint64_t l4 = 0;
    RC_EQ(pc_cache_alloc(c, 1, &l4, ids), PC_E_LIMIT);
    /* a slot comes back when a lease ends */
    rel(c, l1);
    al(c, 1, &l4, ids);
    rel(c, l2);
    rel(c, l3);
    rel(c, l4);
    COUNTS(c, 14, 0, 2);
    cache_del(c);
}

Test(cache, limit_max_pins_per_lease)
{
    pc_cache_config cfg = cfg_of(16, PC_POOL_NONE);
    cfg.max_pins_per_lease = 2;
    pc_cache *c = mk_cfg(&cfg);
    uint32_t a[8], ab[2], got[2];
    seq_fill(a, 8, 100);
    put(c, NS, a, 8, ab);
    pc_lookup_result r = lk(c, NS, a, 8, 1, 0, got);
    uint64_t l = r.lease;
    lk(c, NS, a, 4, 1, l, got);
    cr_assert_eq(cstats(c).pins, 2);
    snap before = take(c);
    pc_lookup_result lr;
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 8, 1, l, got, &lr), PC_E_LIMIT);
    SAME(c, before);
    /* other leases have their own budget */
    uint64_t m = lk(c, NS, a, 8, 1, 0, got).lease;
    cr_assert(m != 0 && m != l);
    lk(c, NS, a, 8, 1, m, got);
    cr_assert_eq(cstats(c).pins, 4);
    /* raised at run time */
    pc_cache_config lim = cfg;
    lim.max_pins_per_lease = 3;
    RC_EQ(pc_cache_set_limits(c, &lim), 0);
    lk(c, NS, a, 8, 1, l, got);
    cr_assert_eq(cstats(c).pins, 5);
    rel(c, l);
    rel(c, m);
    cr_assert_eq(cstats(c).pins, 0);
    cache_del(c);
}

Test(cache, limit_max_blocks_per_lease)
{
    pc_cache_config cfg = cfg_of(16, PC_POOL_NONE);
    cfg.max_blocks_per_lease = 4;
    pc_cache *c = mk_cfg(&cfg);
    uint32_t ids[8], p[8], canon[2];
    seq_fill(p, 8, 100);
    uint64_t l = 0;
    snap before = take(c);
    RC_EQ(pc_cache_alloc(c, 5, &l, ids), PC_E_LIMIT);
    cr_assert_eq(l, 0);
    SAME(c, before);
    al(c, 3, &l, ids);
    before = take(c);
    RC_EQ(pc_cache_alloc(c, 2, &l, ids + 3), PC_E_LIMIT);
    SAME(c, before);
    al(c, 1, &l, ids + 3);
    RC_EQ(pc_cache_alloc(c, 1, &l, ids + 4), PC_E_LIMIT);
    /* inserted blocks no longer count towards the lease */
    in(c, NS, p, 8, ids, l, canon);
    al(c, 2, &l, ids + 4);
    RC_EQ(pc_cache_alloc(c, 1, &l, ids + 6), PC_E_LIMIT);

    /* lowered at run time: the lease keeps its 4, gets no more */
    pc_cache_config lim = cfg;
    lim.max_blocks_per_lease = 2;
    RC_EQ(pc_cache_set_limits(c, &lim), 0);
    CHECK(c);
    RC_EQ(pc_cache_alloc(c, 1, &l, ids + 6), PC_E_LIMIT);
    STATES(c, ids + 2, 4, PC_BLOCK_LEASED);
    uint64_t m = 0;
    RC_EQ(pc_cache_alloc(c, 3, &m, ids + 6), PC_E_LIMIT);
    al(c, 2, &m, ids + 6);
    rel(c, m);

    /* refused reconfigurations change nothing */
    pc_cache_config bad = lim;
    bad.max_blocks_per_lease = 100;
    bad.low_watermark = 5;
    bad.high_watermark = 4;
    RC_EQ(pc_cache_set_limits(c, &bad), PC_E_INVAL);
    bad.low_watermark = 0;
    bad.high_watermark = 17;
    RC_EQ(pc_cache_set_limits(c, &bad), PC_E_INVAL);
    bad.high_watermark = 0;
    bad.lease_ttl_ms = 0;
    RC_EQ(pc_cache_set_limits(c, &bad), PC_E_INVAL);
    RC_EQ(pc_cache_set_limits(c, NULL), PC_E_INVAL);
    CHECK(c);
    RC_EQ(pc_cache_alloc(c, 1, &l, ids + 6), PC_E_LIMIT); /* still 2 */
    rel(c, l);
    COUNTS(c, 14, 0, 2);
    cache_del(c);
}

/* Reloading a SHORTER TTL, then renewing a lease: its new deadline is
 * earlier than those of leases that were not renewed, so the lease must
 * move up in the expiry heap.
 * Was a bug: lease_renew() only moved a lease down the heap ("a later
 * deadline only ever moves a lease down"), which no longer holds once
 * pc_cache_set_limits() lowered lease_ttl_ms; pc_cache_check() reported a
 * broken heap order, and pc_cache_expire() would not reap the renewed lease
 * when due (it sat below a later deadline). */
Test(cache, shorter_ttl_reload_then_renew)
{
    pc_cache_config cfg = cfg_of(8, PC_POOL_NONE);
    cfg.lease_ttl_ms = 10000;
    pc_cache *c = mk_cfg(&cfg);
    uint32_t id[2];
    uint64_t l1 = 0, l2 = 0;
    al(c, 1, &l1, id);     /* deadline t + 10000 */
    tick(1);
    al(c, 1, &l2, id + 1); /* deadline t + 10001 */
    pc_cache_config lim = cfg;
    lim.lease_ttl_ms = 100;
    RC_EQ(pc_cache_set_limits(c, &lim), 0);
    CHECK(c);
    cr_assert_eq(pc_cache_next_deadline_ms(c), 9999, "existing deadlines stay");
    RC_EQ(pc_cache_touch(c, l2), 0); /* deadline now t + 101 */
    CHECK(c);
    cr_assert_eq(pc_cache_next_deadline_ms(c), 100);
    tick(100);
    cr_assert_eq(pc_cache_expire(c), 1, "l2 is due");
    CHECK(c);
    RC_EQ(pc_cache_touch(c, l1), 0);
    RC_EQ(pc_cache_touch(c, l2), PC_E_LEASE);
    rel(c, l1);
    cache_del(c);
}

/* ---- eviction and watermarks -------------------------------------------- */

Test(cache, evict_counts_and_spares_pins)
{
    pc_cache *c = mk(16);
    uint32_t a[16], b[16], ab[4], bb[4], got[4];
    seq_fill(a, 16, 100);
    seq_fill(b, 16, 200);
    put(c, NS, a, 16, ab);
    put(c, NS, b, 16, bb);
    uint64_t l = lk(c, NS, a, 8, 1, 0, got).lease; /* pins a's first 2 */
    cr_assert_eq(pc_cache_evict(c, 0), 0);
    CHECK(c);
    cr_assert_eq(pc_cache_evict(c, 3), 3);
    CHECK(c);
    COUNTS(c, 11, 0, 5);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 3);
    CHECK(c);
    COUNTS(c, 14, 0, 2);
    pc_lookup_result r = lk(c, NS, a, 16, 0, 0, got);
    cr_assert_eq(r.pages, 2);
    IDS_EQ(got, ab, 2, "pinned pages");
    cr_assert_eq(lk_pages(c, NS, b, 16), 0);
    rel(c, l);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 2);
    CHECK(c);
    COUNTS(c, 16, 0, 0);
    cache_del(c);
}

Test(cache, watermarks)
{
    pc_cache_config cfg = cfg_of(32, PC_POOL_NONE);
    cfg.low_watermark = 8;
    cfg.high_watermark = 16;
    pc_cache *c = mk_cfg(&cfg);
    uint32_t tok[7][16], blk[7][4], got[4];
    for (int i = 0; i < 7; i++) {
        seq_fill(tok[i], 16, 1000u * (uint32_t)(i + 1));
        put(c, NS, tok[i], 16, blk[i]);
        tick(1);
    }
    COUNTS(c, 4, 0, 28);
    /* pin prompts 0 and 1 (8 pages) */
    uint64_t l = lk(c, NS, tok[0], 16, 1, 0, got).lease;
    lk(c, NS, tok[1], 16, 1, l, got);

    /* free 4 < low 8: evict up to free >= high 16, i.e. 12 pages, LRU */
    cr_assert_eq(pc_cache_maintain(c), 12);
    CHECK(c);
    COUNTS(c, 16, 0, 16);
    cr_assert_eq(cstats(c).evictions_watermark, 12);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(lk_pages(c, NS, tok[i], 16), i >= 2 && i <= 4 ? 0 : 4,
                     "prompt %d", i);
    /* free >= low: nothing */
    cr_assert_eq(pc_cache_maintain(c), 0);
    CHECK(c);

    /* free == low exactly: nothing */
    uint64_t m = 0;
    uint32_t ids[16];
    al(c, 8, &m, ids);
    COUNTS(c, 8, 8, 16);
    cr_assert_eq(pc_cache_maintain(c), 0);
    CHECK(c);
    /* free 2 < low, but only 8 pages are evictable: all go, free 10 */
    al(c, 6, &m, ids + 8);
    COUNTS(c, 2, 14, 16);
    cr_assert_eq(pc_cache_maintain(c), 8);
    CHECK(c);
    COUNTS(c, 10, 14, 8);
    cr_assert_eq(cstats(c).evictions_watermark, 20);
    cr_assert_eq(lk_pages(c, NS, tok[0], 16), 4, "pinned");
    cr_assert_eq(lk_pages(c, NS, tok[1], 16), 4, "pinned");
    cr_assert_eq(pc_cache_maintain(c), 0);

    /* watermarks disabled (0/0) at run time: nothing, however full */
    al(c, 10, &m, ids);
    rel(c, l);
    COUNTS(c, 0, 24, 8);
    pc_cache_config lim = cfg;
    lim.low_watermark = lim.high_watermark = 0;
    RC_EQ(pc_cache_set_limits(c, &lim), 0);
    cr_assert_eq(pc_cache_maintain(c), 0);
    CHECK(c);
    /* and back on: low == high == 4 */
    lim.low_watermark = lim.high_watermark = 4;
    RC_EQ(pc_cache_set_limits(c, &lim), 0);
    cr_assert_eq(pc_cache_maintain(c), 4);
    CHECK(c);
    COUNTS(c, 4, 24, 4);
    rel(c, m);
    COUNTS(c, 28, 0, 4);
    cache_del(c);
}

/* ---- two processes ------------------------------------------------------- */

static uint8_t pattern(uint32_t page, uint64_t byte)
{
    return (uint8_t)(0xa5 ^ (page * 29u) ^ (uint32_t)(byte * 7u));
}

/* 0 if block `b` of the mapping at base holds page `page`'s pattern. */
static int verify(const uint8_t *base, uint64_t bb, uint32_t b, uint32_t page)
{
    for (uint64_t j = 0; j < bb; j++)
        if (base[(uint64_t)b * bb + j] != pattern(page, j))
            return -1;
    return 0;
}

static void fill(uint8_t *base, uint64_t bb, uint32_t b, uint32_t page)
{
    for (uint64_t j = 0; j < bb; j++)
        base[(uint64_t)b * bb + j] = pattern(page, j);
}

/* What the "engine" child is told through the pipe. */
typedef struct job {
    char shm[PC_POOL_SHM_NAME_MAX + 1];
    uint64_t bytes, block_bytes;
    uint32_t pages, cached; /* pages [0, cached) are to be read, the rest
                               computed and written */
    uint32_t blocks[8];
} job;

/* The child: only _exit codes, no Criterion. */
_Noreturn static void engine_child(int fd)
{
    job j;
    size_t got = 0;
    while (got < sizeof(j)) {
        ssize_t n = read(fd, (char *)&j + got, sizeof(j) - got);
        if (n <= 0)
            _exit(10);
        got += (size_t)n;
    }
    void *base = NULL;
    if (pc_pool_map(j.shm, j.bytes, &base) != 0)
        _exit(11);
    for (uint32_t i = 0; i < j.cached; i++)
        if (verify(base, j.block_bytes, j.blocks[i], i) != 0)
            _exit(12); /* the cached page is not what the parent wrote */
    for (uint32_t i = j.cached; i < j.pages; i++)
        fill(base, j.block_bytes, j.blocks[i], i);
    pc_pool_unmap(base, j.bytes);
    _exit(0);
}

static void wait_child(pid_t pid)
{
    int st = 0;
    pid_t w;
    do
        w = waitpid(pid, &st, 0);
    while (w < 0 && errno == EINTR);
    cr_assert_eq(w, pid, "waitpid");
    cr_assert(WIFEXITED(st), "child died (status 0x%x)", st);
    cr_assert_eq(WEXITSTATUS(st), 0, "child exited with %d", WEXITSTATUS(st));
}

Test(cache, two_processes_engine_maps_the_pool_by_name)
{
    pc_cache_config cfg = cfg_of(16, PC_POOL_HOST);
    pc_cache *c = mk_cfg(&cfg);
    pc_pool *pool = pc_cache_pool(c);
    const uint64_t bb = pc_pool_layout_get(pool)->block_bytes;
    uint8_t *base = pc_pool_base(pool);
    cr_assert_not_null(base);
    job j;
    memset(&j, 0, sizeof(j));
    const char *name = NULL;
    RC_EQ(pc_pool_shm_info(pool, &name, &j.bytes), 0);
    snprintf(j.shm, sizeof(j.shm), "%s", name);
    j.block_bytes = bb;

    /* page 0 was computed earlier (by the parent, through its mapping) */
    uint32_t tok[12], first[1];
    seq_fill(tok, 12, 700);
    uint64_t l0 = 0;
    uint32_t b0;
    al(c, 1, &l0, &b0);
    fill(base, bb, b0, 0);
    in(c, NS, tok, 4, &b0, l0, first);
    rel(c, l0);

    /* the engine's request: lookup + pin, alloc the rest */
    pc_lookup_result r = lk(c, NS, tok, 12, 1, 0, j.blocks);
    cr_assert_eq(r.pages, 1);
    cr_assert_eq(j.blocks[0], b0);
    uint64_t l = r.lease;
    al(c, 2, &l, j.blocks + 1);
    j.pages = 3;
    j.cached = 1;

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork");
    if (pid == 0) {
        close(fds[1]);
        engine_child(fds[0]);
    }
    close(fds[0]);
    cr_assert_eq(write(fds[1], &j, sizeof(j)), (ssize_t)sizeof(j));
    close(fds[1]);
    wait_child(pid);

    /* the engine computed: insert its blocks */
    uint32_t canon[3];
    pc_insert_result ir = in(c, NS, tok, 12, j.blocks, l, canon);
    cr_assert_eq(ir.cached_tokens, 4);
    cr_assert_eq(ir.inserted_pages, 2);
    IDS_EQ(canon, j.blocks, 3, "canon");
    rel(c, l);

    /* another request finds all three pages, bytes as the child wrote */
    uint32_t got[3];
    r = lk(c, NS, tok, 12, 0, 0, got);
    cr_assert_eq(r.pages, 3);
    IDS_EQ(got, j.blocks, 3, "lookup");
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq((uint8_t *)pc_pool_block_ptr(pool, got[i]),
                     base + got[i] * bb);
        cr_assert_eq(verify(base, bb, got[i], i), 0,
                     "page %u through the daemon's mapping", i);
    }
    void *m = NULL;
    RC_EQ(pc_pool_map(j.shm, j.bytes, &m), 0);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(verify(m, bb, got[i], i), 0,
                     "page %u through a fresh mapping", i);
    pc_pool_unmap(m, j.bytes);
    cache_del(c);
    RC_EQ(pc_pool_map(j.shm, j.bytes, &m), PC_E_NOENT);
}

Test(cache, two_processes_child_only_writes)
{
    pc_cache_config cfg = cfg_of(16, PC_POOL_HOST);
    pc_cache *c = mk_cfg(&cfg);
    pc_pool *pool = pc_cache_pool(c);
    const uint64_t bb = pc_pool_layout_get(pool)->block_bytes;
    const char *name = NULL;
    uint64_t bytes = 0;
    RC_EQ(pc_pool_shm_info(pool, &name, &bytes), 0);
    char shm[PC_POOL_SHM_NAME_MAX + 1];
    snprintf(shm, sizeof(shm), "%s", name);

    uint32_t tok[16], ids[4], got[4];
    seq_fill(tok, 16, 800);
    cr_assert_eq(lk(c, NS, tok, 16, 1, 0, got).pages, 0);
    uint64_t l = 0;
    al(c, 4, &l, ids);

    /* the child inherits the ids and the daemon's MAP_SHARED mapping and
     * does nothing but write through it */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork");
    if (pid == 0) {
        for (uint32_t i = 0; i < 4; i++) {
            uint8_t *b = pc_pool_block_ptr(pool, ids[i]);
            if (!b)
                _exit(20);
            for (uint64_t k = 0; k < bb; k++)
                b[k] = pattern(100 + i, k);
        }
        _exit(0);
    }
    wait_child(pid);

    uint32_t canon[4];
    in(c, NS, tok, 16, ids, l, canon);
    rel(c, l);
    pc_lookup_result r = lk(c, NS, tok, 16, 0, 0, got);
    cr_assert_eq(r.pages, 4);
    IDS_EQ(got, ids, 4, "lookup");
    void *m = NULL;
    RC_EQ(pc_pool_map(shm, bytes, &m), 0);
    for (uint32_t i = 0; i < 4; i++) {
        const uint8_t *mine = pc_pool_block_ptr(pool, got[i]);
        const uint8_t *fresh = (const uint8_t *)m + got[i] * bb;
        for (uint64_t k = 0; k < bb; k++) {
            cr_assert_eq(mine[k], pattern(100 + i, k), "page %u byte %" PRIu64,
                         i, k);
            cr_assert_eq(fresh[k], pattern(100 + i, k), "page %u byte %" PRIu64,
                         i, k);
        }
    }
    pc_pool_unmap(m, bytes);
    cache_del(c);
}

Test(cache, null_is_harmless)
{
    pc_cache_destroy(NULL);
}

/* ---- admin flush of one namespace ------------------------------------------ */

Test(cache, flush_ns_returns_unpinned_blocks)
{
    pc_cache *c = mk(32);
    uint32_t a[16], b[16], ab[4], bb[4], got[4];
    seq_fill(a, 16, 100);
    seq_fill(b, 16, 900);
    put(c, NS, a, 16, ab);
    put(c, "model-b", b, 16, bb);
    COUNTS(c, 24, 0, 8);

    /* pin a's first two pages */
    pc_lookup_result r = lk(c, NS, a, 8, 1, 0, got);
    cr_assert_eq(r.pages, 2);

    size_t n = 99;
    RC_EQ(pc_cache_flush_ns(c, NS, strlen(NS), &n), 0);
    CHECK(c);
    cr_assert_eq(n, 2, "the two unpinned pages of %s go", NS);
    COUNTS(c, 26, 0, 6);
    cr_assert_eq(lk_pages(c, NS, a, 16), 2, "pinned pages stay");
    cr_assert_eq(lk_pages(c, "model-b", b, 16), 4, "other namespace untouched");
    STATES(c, ab + 2, 2, PC_BLOCK_FREE);

    RC_EQ(pc_cache_flush_ns(c, "unknown", 7, &n), 0);
    cr_assert_eq(n, 0);
    RC_EQ(pc_cache_flush_ns(NULL, NS, strlen(NS), &n), PC_E_INVAL);

    rel(c, r.lease);
    RC_EQ(pc_cache_flush_ns(c, NS, strlen(NS), &n), 0);
    CHECK(c);
    cr_assert_eq(n, 2);
    COUNTS(c, 28, 0, 4);
    cache_del(c);
}

/* insert with pin: the inserted prefix stays pinned under the lease (an
 * engine inserting after its prefill reads the pages safely while it
 * decodes), others can reuse it at once, release ends the pin; refusals
 * change nothing. */
Test(cache, insert_pin_keeps_the_prefix_pinned)
{
    pc_cache *c = mk(8);
    uint32_t a[12], b[8], own[3], canon[3], got[3], bb[2];
    seq_fill(a, 12, 100);
    seq_fill(b, 8, 200);
    uint64_t la = 0;
    al(c, 3, &la, own);

    /* refused: a pin without a lease to hold it */
    snap s0 = take(c);
    pc_insert_result ir;
    RC_EQ(pc_cache_insert_pin(c, NS, strlen(NS), a, 12, own, 0, 1, canon, &ir),
          PC_E_INVAL);
    SAME(c, s0);

    RC_EQ(pc_cache_insert_pin(c, NS, strlen(NS), a, 12, own, la, 1, canon, &ir), 0);
    CHECK(c);
    cr_assert_eq(ir.inserted_pages, 3);
    IDS_EQ(canon, own, 3, "adopted");
    pc_cache_stats s = cstats(c);
    cr_assert_eq(s.pins, 1);
    cr_assert_eq(s.tree.protected_pages, 3);
    COUNTS(c, 5, 0, 3);

    /* another engine reuses it at once */
    pc_lookup_result r = lk(c, NS, a, 12, 0, 0, got);
    cr_assert_eq(r.pages, 3);
    IDS_EQ(got, own, 3, "shared");

    /* pressure: fill the pool, evict everything evictable: a stays */
    put(c, NS, b, 8, bb);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 2);
    CHECK(c);
    cr_assert_eq(lk_pages(c, NS, a, 12), 3, "pinned pages survive");

    /* the pin limit is checked before anything changes */
    pc_cache_config lim = cfg_of(8, PC_POOL_NONE);
    lim.max_pins_per_lease = 1;
    RC_EQ(pc_cache_set_limits(c, &lim), 0);
    uint32_t own2[1], x[4];
    seq_fill(x, 4, 300);
    al(c, 1, &la, own2);
    snap s1 = take(c);
    RC_EQ(pc_cache_insert_pin(c, NS, strlen(NS), x, 4, own2, la, 1, canon, &ir),
          PC_E_LIMIT);
    SAME(c, s1);

    /* release: the pin ends, a becomes evictable */
    rel(c, la);
    s = cstats(c);
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.tree.protected_pages, 0);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 3);
    CHECK(c);
    COUNTS(c, 8, 0, 0);
    cache_del(c);
}

/* Every refusal says which lease or limit, and with what value. */
Test(cache, refusals_say_why)
{
    pc_cache_config cfg = cfg_of(8, PC_POOL_NONE);
    cfg.max_pins_per_lease = 1;
    cfg.max_blocks_per_lease = 3;
    cfg.max_leases = 2;
    pc_cache *c = mk_cfg(&cfg);
    uint32_t t[8], ids[8];
    for (uint32_t i = 0; i < 8; i++)
        t[i] = 500 + i;
    uint64_t l = 0;
    RC_EQ(pc_cache_alloc(c, 4, &l, ids), PC_E_LIMIT);
    cr_assert(strstr(pc_cache_why(c), "max_blocks_per_lease (3)"), "%s",
              pc_cache_why(c));
    RC_EQ(pc_cache_alloc(c, 2, &l, ids), 0);
    RC_EQ(pc_cache_insert(c, NS, strlen(NS), t, 2 * P, ids, l, NULL,
                          &(pc_insert_result){0}), 0);
    pc_lookup_result r;
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), t, 2 * P, 1, l, ids, &r), 0);
    cr_assert_str_eq(pc_cache_why(c), "", "a success says nothing");
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), t, 2 * P, 1, l, ids, &r), PC_E_LIMIT);
    cr_assert(strstr(pc_cache_why(c), "max_pins_per_lease (1)"), "%s",
              pc_cache_why(c));
    uint64_t l2 = 0, l3 = 0;
    RC_EQ(pc_cache_alloc(c, 1, &l2, ids), 0);
    RC_EQ(pc_cache_alloc(c, 1, &l3, ids), PC_E_LIMIT);
    cr_assert(strstr(pc_cache_why(c), "max_leases (2)"), "%s", pc_cache_why(c));
    RC_EQ(pc_cache_release(c, 0x5eed), PC_E_LEASE);
    cr_assert(strstr(pc_cache_why(c), "lease 0x5eed unknown or expired"), "%s",
              pc_cache_why(c));
    CHECK(c);
    pc_cache *small = mk(2);
    uint64_t l4 = 0;
    RC_EQ(pc_cache_alloc(small, 3, &l4, ids), PC_E_NOSPACE);
    cr_assert(strstr(pc_cache_why(small), "no space for 3 blocks: 2 free"), "%s",
              pc_cache_why(small));
}

/* ---- a cuda pool on the fake device ------------------------------------- */

/* pc_cache_create registers the device operations the config names, and
 * describe hands out what hello exports; bad names and devices say why. */
Test(cache, cuda_pool_on_the_fake_device)
{
    pc_cache_config cfg = cfg_of(16, PC_POOL_CUDA);
    cfg.gpu_ops = "fake";
    pc_cache *c = mk_cfg(&cfg);
    pc_cache_desc d;
    pc_cache_describe(c, &d);
    cr_assert_str_eq(d.backend, "cuda");
    cr_assert_str_eq(d.device_ops, "fake");
    cr_assert_null(d.shm_name);
    static const uint8_t zero[128];
    cr_assert_neq(memcmp(d.device_uuid, zero, sizeof(d.device_uuid)), 0);
    cr_assert_neq(memcmp(d.ipc_handle, zero, sizeof(d.ipc_handle)), 0);
    uint64_t l = 0;
    uint32_t ids[4];
    RC_EQ(pc_cache_alloc(c, 4, &l, ids), 0); /* the cache works as ever */
    CHECK(c);

    pc_cache *bad = NULL;
    cfg.gpu_ops = "rocm";
    RC_EQ(pc_cache_create(&cfg, &bad), PC_E_INVAL);
    cr_assert_null(bad);
    cr_assert(strstr(pc_cache_create_why(), "gpu_ops 'rocm': unknown"), "%s",
              pc_cache_create_why());
    cfg.gpu_ops = "fake";
    cfg.gpu_device = 9;
    RC_EQ(pc_cache_create(&cfg, &bad), PC_E_NOENT);
    cr_assert(strstr(pc_cache_create_why(), "device 9: no such device"), "%s",
              pc_cache_create_why());
    /* other backends say nothing of devices; a success clears the why */
    pc_cache_config none = cfg_of(16, PC_POOL_NONE);
    pc_cache *n = mk_cfg(&none);
    cr_assert_str_eq(pc_cache_create_why(), "");
    pc_cache_describe(n, &d);
    cr_assert_null(d.device_ops);
}

/* ---- per-request flags: no_count, no_cache (issue 14) ---------------------- */

Test(cache, no_count_lookup_is_left_out_of_the_counters)
{
    pc_cache *c = mk(16);
    uint32_t a[12], ab[3], got[3];
    seq_fill(a, 12, 100);
    put(c, NS, a, 12, ab);
    pc_cache_stats s0 = cstats(c);
    pc_lookup_result r = lk(c, NS, a, 12, PC_CACHE_NO_COUNT, 0, got);
    cr_assert_eq(r.pages, 3, "the match is returned");
    IDS_EQ(got, ab, 3, "blocks");
    pc_cache_stats s1 = cstats(c);
    cr_assert_eq(s1.tree.lookups, s0.tree.lookups);
    cr_assert_eq(s1.tree.hit_pages, s0.tree.hit_pages);
    cr_assert_eq(s1.tree.miss_pages, s0.tree.miss_pages);
    /* pinning works with it */
    r = lk(c, NS, a, 12, PC_CACHE_PIN | PC_CACHE_NO_COUNT, 0, got);
    cr_assert_neq(r.lease, 0);
    cr_assert_eq(cstats(c).tree.lookups, s0.tree.lookups);
    rel(c, r.lease);
    /* a counted one for contrast */
    lk(c, NS, a, 12, 0, 0, got);
    cr_assert_eq(cstats(c).tree.lookups, s0.tree.lookups + 1);
    cr_assert_eq(cstats(c).tree.hit_pages, s0.tree.hit_pages + 3);
    pc_lookup_result out;
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), a, 12, 64, 0, got, &out), PC_E_INVAL);
    cache_del(c);
}

Test(cache, no_cache_lookup_keeps_no_page_alive)
{
    /* two prompts in a pool of 4 blocks; A is the least recently used */
    for (int flag = 0; flag < 2; flag++) {
        pc_cache *c = mk(4);
        uint32_t a[8], b[8], ab[2], bb[2], got[2];
        seq_fill(a, 8, 100);
        seq_fill(b, 8, 500);
        put(c, NS, a, 8, ab);
        put(c, NS, b, 8, bb);
        /* look A up: a normal lookup makes B the LRU, no_cache does not */
        lk(c, NS, a, 8, flag ? PC_CACHE_NO_CACHE : 0, 0, got);
        size_t ev = pc_cache_evict(c, 2);
        cr_assert_eq(ev, 2);
        CHECK(c);
        size_t a_left = lk_pages(c, NS, a, 8), b_left = lk_pages(c, NS, b, 8);
        if (flag)
            cr_assert(a_left == 0 && b_left == 2, "no_cache refreshed A: A %zu B %zu",
                      a_left, b_left);
        else
            cr_assert(a_left == 2 && b_left == 0, "a lookup did not refresh A");
        cache_del(c);
    }
}

Test(cache, no_cache_insert_caches_nothing)
{
    pc_cache *c = mk(16);
    uint32_t a[12], ab[3], own[3], canon[3];
    seq_fill(a, 12, 100);
    put(c, NS, a, 4, ab); /* the first page is cached */
    uint64_t lease = 0;
    al(c, 3, &lease, own);
    pc_cache_stats s0 = cstats(c);
    pc_insert_result r;
    uint32_t blocks[3] = {ab[0], own[1], own[2]};
    RC_EQ(pc_cache_insert_pin(c, NS, strlen(NS), a, 12, blocks, lease,
                              PC_CACHE_NO_CACHE, canon, &r), 0);
    CHECK(c);
    cr_assert_eq(r.cached_tokens, 4);
    cr_assert_eq(r.inserted_pages, 0);
    cr_assert_eq(canon[0], ab[0]);
    cr_assert_eq(canon[1], own[1]);
    cr_assert_eq(canon[2], own[2]);
    pc_cache_stats s1 = cstats(c);
    cr_assert_eq(s1.tree.pages, s0.tree.pages, "nothing cached");
    cr_assert_eq(s1.pool.leased, s0.pool.leased, "the lease keeps its blocks");
    cr_assert_eq(lk_pages(c, NS, a, 12), 1);
    /* pin with no_cache makes no sense: refused, nothing changes */
    RC_EQ(pc_cache_insert_pin(c, NS, strlen(NS), a, 12, blocks, lease,
                              PC_CACHE_NO_CACHE | PC_CACHE_PIN, canon, &r),
          PC_E_INVAL);
    rel(c, lease);
    COUNTS(c, 15, 0, 1);
    cache_del(c);
}

/* ---- operator-pinned prefixes (issue 14) ------------------------------------ */

typedef struct stat_q {
    const char *name;
    uint64_t v;
    bool found;
} stat_q;

static void stat_pick(void *ctx, const char *name, uint64_t v)
{
    stat_q *q = ctx;
    if (strcmp(name, q->name) == 0)
        q->v = v, q->found = true;
}

static uint64_t stat_named(const pc_cache *c, const char *name)
{
    stat_q q = {name, 0, false};
    pc_cache_stats_visit(c, stat_pick, &q);
    cr_assert(q.found, "no stat %s", name);
    return q.v;
}

Test(cache, operator_pins_keep_a_prefix_and_grow_with_it)
{
    pc_cache *c = mk(8);
    uint32_t sys[16], other[16], ids[4], got[4];
    seq_fill(sys, 16, 100);
    seq_fill(other, 16, 900);
    pc_cache_pin_spec spec = {NS, strlen(NS), sys, 16};
    RC_EQ(pc_cache_set_operator_pins(c, &spec, 1), 0);
    CHECK(c);
    cr_assert_eq(stat_named(c, "pins.operator_prefixes"), 1);
    cr_assert_eq(stat_named(c, "pins.operator_pages"), 0, "nothing cached yet");
    cr_assert_eq(stat_named(c, "pins.operator_pages_wanted"), 4);

    put(c, NS, sys, 8, ids); /* an engine caches the first two pages */
    cr_assert_eq(stat_named(c, "pins.operator_pages"), 2);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 0, "pinned pages were evicted");
    CHECK(c);
    put(c, NS, sys, 16, ids); /* then all of it */
    cr_assert_eq(stat_named(c, "pins.operator_pages"), 4);
    /* pressure: the other prompts come and go, the pinned one stays */
    for (uint32_t k = 0; k < 6; k++) {
        seq_fill(other, 16, 900 + 50 * k);
        put(c, NS, other, 16, got);
        CHECK(c);
    }
    cr_assert_eq(lk_pages(c, NS, sys, 16), 4);
    /* a prefix of it in another namespace is another prefix */
    cr_assert_eq(lk_pages(c, "model-b", sys, 16), 0);

    /* refused whole when it cannot fit: 12 distinct pages in 8 blocks */
    uint32_t big[48];
    seq_fill(big, 48, 5000);
    pc_cache_pin_spec two[2] = {{NS, strlen(NS), sys, 16}, {NS, strlen(NS), big, 48}};
    RC_EQ(pc_cache_set_operator_pins(c, two, 2), PC_E_NOSPACE);
    cr_assert(strstr(pc_cache_why(c), "pages"), "why: %s", pc_cache_why(c));
    cr_assert_eq(stat_named(c, "pins.operator_prefixes"), 1, "a refusal changed the set");
    /* shared pages count once: sys and sys's first half make 4, not 6 */
    pc_cache_pin_spec shared[2] = {{NS, strlen(NS), sys, 16}, {NS, strlen(NS), sys, 8}};
    RC_EQ(pc_cache_set_operator_pins(c, shared, 2), 0);
    CHECK(c);
    cr_assert_eq(stat_named(c, "pins.operator_pages"), 4 + 2);
    pc_cache_pin_spec bad = {NS, strlen(NS), sys, 3};
    RC_EQ(pc_cache_set_operator_pins(c, &bad, 1), PC_E_INVAL);

    /* unpinned: evictable again */
    RC_EQ(pc_cache_set_operator_pins(c, NULL, 0), 0);
    CHECK(c);
    cr_assert_eq(stat_named(c, "pins.operator_pages"), 0);
    cr_assert_geq(pc_cache_evict(c, SIZE_MAX), 4);
    cr_assert_eq(lk_pages(c, NS, sys, 16), 0);
    CHECK(c);
    cache_del(c);
}

/* ---- namespace quotas and reserves by pattern (issue 14) ----------------- */

static uint64_t ns_pages(pc_cache *c, const char *ns)
{
    uint64_t n = 0;
    cr_assert_eq(pc_radix_ns_pages(pc_cache_tree(c), ns, strlen(ns), &n), 0);
    return n;
}

Test(cache, ns_quotas_cap_and_reserve_by_pattern)
{
    pc_cache *c = mk(8);
    uint32_t t[8], ids[2];
    /* a quota for tenant-a, a reserve for keep, nothing for the rest */
    pc_cache_quota rules[2] = {{"tenant-a/*", 4, 0}, {"keep", 0, 4}};
    RC_EQ(pc_cache_set_ns_quotas(c, rules, 2), 0);
    CHECK(c);
    for (uint32_t k = 0; k < 4; k++) { /* 8 pages into a quota of 4 */
        seq_fill(t, 8, 1000 + 100 * k);
        put(c, "tenant-a/chat", t, 8, ids);
        cr_assert_leq(ns_pages(c, "tenant-a/chat"), 4, "quota exceeded");
    }
    cr_assert_eq(ns_pages(c, "tenant-a/chat"), 4);
    cr_assert_eq(stat_named(c, "tree.evicted_quota_pages"), 4);
    /* the reserve: keep's 4 pages survive pressure from another namespace */
    for (uint32_t k = 0; k < 2; k++) {
        seq_fill(t, 8, 5000 + 100 * k);
        put(c, "keep", t, 8, ids);
    }
    for (uint32_t k = 0; k < 6; k++) {
        seq_fill(t, 8, 9000 + 100 * k);
        put(c, "other", t, 8, ids);
        CHECK(c);
    }
    cr_assert_eq(ns_pages(c, "keep"), 4, "the reserve was evicted");
    cr_assert_eq(stat_named(c, "quota.namespaces"), 2);
    cr_assert_eq(stat_named(c, "quota.reserved_pages"), 4);
    /* refused whole: a reserve above its quota; reserves above the pool */
    pc_cache_quota bad1 = {"x*", 2, 3};
    RC_EQ(pc_cache_set_ns_quotas(c, &bad1, 1), PC_E_INVAL);
    pc_cache_quota bad2[2] = {{"keep", 0, 6}, {"other", 0, 6}};
    RC_EQ(pc_cache_set_ns_quotas(c, bad2, 2), PC_E_NOSPACE);
    cr_assert(strstr(pc_cache_why(c), "reserves"), "%s", pc_cache_why(c));
    cr_assert_eq(stat_named(c, "quota.rules"), 2, "a refusal changed the rules");
    /* live change: no rules, no limits; everything evictable again */
    RC_EQ(pc_cache_set_ns_quotas(c, NULL, 0), 0);
    CHECK(c);
    cr_assert_eq(stat_named(c, "quota.namespaces"), 0);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), 8);
    CHECK(c);
    cache_del(c);
}

/* ---- bounded memory: max_tree_nodes (issue 15) ------------------------------ */

Test(cache, max_tree_nodes_refuses_growth_with_a_reason)
{
    pc_cache_config cfg = cfg_of(64, PC_POOL_HOST);
    cfg.max_tree_nodes = 8;
    pc_cache *c = mk_cfg(&cfg);
    uint32_t t[8], own[2], ids[2];
    /* diverging two-page prompts: each adds a leaf (and a split) */
    size_t ok = 0;
    int rc = 0;
    for (uint32_t k = 0; k < 16 && rc == 0; k++) {
        seq_fill(t, 8, 100);
        t[4] = 1000 + k; /* shares the first page, diverges in the second */
        uint64_t lease = 0;
        al(c, 2, &lease, own);
        pc_insert_result r;
        snap before = take(c);
        rc = pc_cache_insert(c, NS, strlen(NS), t, 8, own, lease, ids, &r);
        CHECK(c);
        if (rc == 0) {
            ok++;
        } else {
            cr_assert_eq(rc, PC_E_LIMIT);
            cr_assert(strstr(pc_cache_why(c), "max_tree_nodes (8)"), "%s",
                      pc_cache_why(c));
            SAME(c, before);
        }
        rel(c, lease);
        pc_radix_stats ts;
        pc_radix_stats_get(pc_cache_tree(c), &ts);
        cr_assert_leq(ts.nodes + ts.namespaces, 8, "the bound was passed");
    }
    cr_assert_eq(rc, PC_E_LIMIT, "never refused");
    cr_assert_geq(ok, 3);
    /* a prompt that is cached already adds nothing: still accepted */
    seq_fill(t, 8, 100);
    t[4] = 1000;
    uint64_t lease = 0;
    al(c, 2, &lease, own);
    in(c, NS, t, 8, own, lease, ids);
    rel(c, lease);
    /* eviction makes room again */
    cr_assert_gt(pc_cache_evict(c, SIZE_MAX), 0);
    seq_fill(t, 8, 5000);
    put(c, NS, t, 8, ids);
    CHECK(c);
    cache_del(c);
}

/* Leases belong to the identity that made them (issue 15): to any other,
 * a lease is exactly an unknown one -- same code, same text shape -- and
 * nothing of it is renewed, used or ended; the owner keeps it whole. */
Test(cache, lease_owner)
{
    pc_cache *c = mk(16);
    uint32_t ids[4], more[1];
    pc_cache_set_owner(c, 0x1111);
    uint64_t la = 0;
    RC_EQ(pc_cache_alloc(c, 2, &la, ids), 0);
    cr_assert_eq(pc_cache_lease_owner(c, la), 0x1111);
    uint64_t deadline = pc_cache_next_deadline_ms(c);
    CHECK(c);

    pc_cache_set_owner(c, 0x2222);
    char unknown_why[200];
    RC_EQ(pc_cache_release(c, la ^ 1), PC_E_LEASE);
    snprintf(unknown_why, sizeof(unknown_why), "%s", pc_cache_why(c));
    g_now += 5;
    RC_EQ(pc_cache_release(c, la), PC_E_LEASE);
    /* the text differs only in the id it repeats */
    char want[220];
    snprintf(want, sizeof(want), "lease 0x%" PRIx64 " unknown or expired", la);
    cr_assert_str_eq(pc_cache_why(c), want);
    cr_assert(strstr(unknown_why, " unknown or expired"));
    RC_EQ(pc_cache_touch(c, la), PC_E_LEASE);
    uint64_t l2 = la;
    RC_EQ(pc_cache_alloc(c, 1, &l2, more), PC_E_LEASE);
    cr_assert_eq(pc_cache_next_deadline_ms(c), deadline - 5, "renewed by a "
                 "stranger");
    counts_at(__LINE__, c, 14, 2, 0);
    CHECK(c);

    /* the stranger's own lease is its own */
    uint64_t lb = 0;
    RC_EQ(pc_cache_alloc(c, 1, &lb, more), 0);
    cr_assert_eq(pc_cache_lease_owner(c, lb), 0x2222);
    pc_cache_set_owner(c, 0x1111);
    RC_EQ(pc_cache_release(c, lb), PC_E_LEASE);
    RC_EQ(pc_cache_release(c, la), 0);
    pc_cache_set_owner(c, 0x2222);
    RC_EQ(pc_cache_release(c, lb), 0);
    counts_at(__LINE__, c, 16, 0, 0);
    CHECK(c);
}

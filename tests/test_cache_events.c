/*
 * tests/test_cache_events.c - the cache's event hook (cache.h, KV events).
 *
 * A random workload (requests that share prefixes, a pool small enough to
 * evict, a second tier, promotions, flushes of one namespace, of tier 2,
 * of everything, watermarks, pins left over) runs against a cache whose
 * hook rebuilds, per medium, the set of block hashes it was told of.
 * After every operation: pc_cache_check passes, and each set equals what
 * the cache really holds (pc_cache_list_hashes, computed from the tree and
 * the tier, not from the events).  On the way every STORED page must be
 * new to its medium, every REMOVED one known, and every hash must be the
 * chain of proto/pagehash.h over the event's own namespace and tokens.
 */
#include <criterion/criterion.h>
#define XXH_INLINE_ALL /* the reference the unrolled step must match */
#include <xxhash.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "cache/inspect.h"
#include "tests/harness/prng.h"
#include "proto/pagehash.h"

#define P 4
#define MAXH 4096

typedef struct hset {
    uint64_t v[MAXH];
    size_t n;
} hset;

static long hfind(const hset *s, uint64_t h)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == h)
            return (long)i;
    return -1;
}

#define MAXB 64

typedef struct model {
    hset tier[3]; /* [1] pool, [2] tier 2 */
    uint64_t stored[3], removed[3], cleared;
    const char *medium[3];
    bool by_block;        /* the hook keeps the pool's hashes itself */
    pc_page_hash bt[MAXB]; /*   per block, as rpc/events.c does */
    uint64_t by_parent;   /*   STOREDs chained on from a parent's block */
    bool forgive_unknown; /* a hook set on a non-empty cache: REMOVED of
                             pages it never had is expected (by hash) */
} model;

static void on_event_hashes(model *m, const pc_cache_event *ev);

/* A by-block event: what rpc/events.c's thread does, then the checks of
 * an event with hashes.  STORED: the chain goes on from the parent
 * block's kept value, or from start; each new block keeps its value. */
static void on_event_blocks(model *m, const pc_cache_event *ev)
{
    cr_assert(m->by_block);
    cr_assert_eq(ev->tier, 1, "tier 2 names its pages by hash");
    cr_assert_null(ev->hashes);
    uint64_t lo[8 * MAXB];
    cr_assert_leq(ev->n_pages, 8 * MAXB);
    pc_cache_event h = *ev;
    h.hashes = lo;
    if (ev->type == PC_CACHE_EV_STORED) {
        pc_page_hash start = ev->start, out[8 * MAXB];
        if (ev->has_parent && ev->parent_block != PC_CACHE_EV_NO_BLOCK) {
            cr_assert_lt(ev->parent_block, MAXB);
            start = m->bt[ev->parent_block];
            m->by_parent++;
        }
        pc_page_hash_chain_from(start, ev->tokens + ev->first_page * P,
                                ev->n_pages, P, out);
        for (size_t i = 0; i < ev->n_pages; i++) {
            cr_assert_lt(ev->blocks[i], MAXB);
            m->bt[ev->blocks[i]] = out[i];
            lo[i] = out[i].lo;
        }
        h.parent = start.lo;
    } else {
        for (size_t i = 0; i < ev->n_pages; i++) {
            uint32_t b = ev->blocks[i];
            cr_assert_lt(b, MAXB);
            cr_assert(m->bt[b].lo | m->bt[b].hi,
                      "REMOVED by block %u, which this hook never had", b);
            lo[i] = m->bt[b].lo;
            m->bt[b] = (pc_page_hash){0, 0};
        }
    }
    on_event_hashes(m, &h);
}

static void on_event(void *ctx, const pc_cache_event *ev)
{
    model *m = ctx;
    if (ev->type != PC_CACHE_EV_CLEARED && ev->blocks)
        on_event_blocks(m, ev);
    else
        on_event_hashes(m, ev);
}

static void on_event_hashes(model *m, const pc_cache_event *ev)
{
    if (ev->type == PC_CACHE_EV_CLEARED) {
        m->tier[1].n = m->tier[2].n = 0;
        m->cleared++;
        return;
    }
    cr_assert(ev->tier == 1 || ev->tier == 2);
    cr_assert_str_eq(ev->medium, m->medium[ev->tier]);
    hset *s = &m->tier[ev->tier];
    cr_assert_gt(ev->n_pages, 0);
    if (ev->type == PC_CACHE_EV_STORED) {
        size_t end = ev->first_page + ev->n_pages;
        pc_page_hash *h = malloc(end * sizeof(*h));
        cr_assert_not_null(h);
        pc_page_hash_chain(ev->ns, ev->ns_len, ev->tokens, end, P, h);
        cr_assert_eq(ev->has_parent, ev->first_page > 0);
        if (ev->first_page)
            cr_assert_eq(ev->parent, h[ev->first_page - 1].lo);
        for (size_t i = 0; i < ev->n_pages; i++) {
            uint64_t x = ev->hashes[i];
            cr_assert_eq(x, h[ev->first_page + i].lo, "hash of page %zu",
                         ev->first_page + i);
            cr_assert_lt(hfind(s, x), 0, "page %016llx stored twice in tier %d",
                         (unsigned long long)x, ev->tier);
            cr_assert_lt(s->n, MAXH);
            s->v[s->n++] = x;
        }
        free(h);
        m->stored[ev->tier] += ev->n_pages;
    } else {
        cr_assert_eq(ev->type, PC_CACHE_EV_REMOVED);
        for (size_t i = 0; i < ev->n_pages; i++) {
            long k = hfind(s, ev->hashes[i]);
            if (k < 0 && m->forgive_unknown)
                continue;
            cr_assert_geq(k, 0, "removed %016llx never stored in tier %d",
                          (unsigned long long)ev->hashes[i], ev->tier);
            s->v[k] = s->v[--s->n];
        }
        m->removed[ev->tier] += ev->n_pages;
    }
}

static int cmp64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sets the events built equal the cache's content, medium by medium. */
static void agree(pc_cache *c, model *m, int step)
{
    cr_assert_eq(pc_cache_check(c), 0, "step %d", step);
    cr_assert_eq(pc_cache_events_lost(c), 0);
    static uint64_t got[MAXH], want[MAXH];
    for (int t = 1; t <= 2; t++) {
        size_t n = pc_cache_list_hashes(c, t, got, MAXH);
        cr_assert_leq(n, MAXH);
        memcpy(want, m->tier[t].v, m->tier[t].n * sizeof(*want));
        cr_assert_eq(n, m->tier[t].n, "step %d tier %d: cache holds %zu pages, "
                     "events say %zu", step, t, n, m->tier[t].n);
        qsort(got, n, sizeof(*got), cmp64);
        qsort(want, n, sizeof(*want), cmp64);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(got[i], want[i], "step %d tier %d: content differs",
                         step, t);
    }
}

static pc_cache *mk(uint64_t blocks, uint64_t tier2_blocks,
                    pc_pool_backend backend)
{
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    cr_assert_eq(pc_pool_layout_init(&cfg.pool.layout, 1, 1, 8, P,
                                     PC_DTYPE_FP16), 0);
    cfg.pool.backend = backend;
    cfg.gpu_ops = "fake"; /* a cuda pool: the CPU stand-in */
    cfg.pool.capacity_blocks = blocks;
    cfg.tier2_bytes = tier2_blocks * cfg.pool.layout.block_bytes;
    cfg.tier2_path = "/tmp";
    cfg.low_watermark = 2;
    cfg.high_watermark = 6;
    pc_cache *c = NULL;
    int rc = pc_cache_create(&cfg, &c);
    cr_assert_eq(rc, 0, "pc_cache_create: %s %s", pc_errname(rc),
                 pc_cache_create_why());
    return c;
}

/* A prompt of 1..8 pages: one of a few families of shared first pages,
 * then a tail from a small alphabet, so that prefixes repeat. */
static size_t prompt(uint64_t *rng, uint32_t *tok, const char **ns)
{
    *ns = test_rng_next(rng) % 3 ? "a" : "b";
    size_t pages = 1 + test_rng_next(rng) % 8;
    uint32_t fam = (uint32_t)(test_rng_next(rng) % 4);
    size_t shared = test_rng_next(rng) % (pages + 1);
    for (size_t i = 0; i < pages * P; i++)
        tok[i] = i < shared * P ? fam * 1000 + (uint32_t)i
                                : (uint32_t)(test_rng_next(rng) % 3);
    return pages * P;
}

/* Wait for every promotion to finish (the file tier reads on a worker). */
static void drain(pc_cache *c)
{
    uint64_t done[16];
    for (int i = 0; i < 20000 && pc_cache_poll(c, done, 16) == 0; i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

static void promoted_of(void *ctx, const char *name, uint64_t v)
{
    if (strcmp(name, "tier2.promoted_pages") == 0)
        *(uint64_t *)ctx = v;
}

static void quota_evicted_of(void *ctx, const char *name, uint64_t v)
{
    if (strcmp(name, "tree.evicted_quota_pages") == 0)
        *(uint64_t *)ctx = v;
}

/* tier2: a host pool (file tier), or a cuda pool on the fake device
 * (page-locked host tier) with cuda; else a pool without a second tier. */
static void run(uint64_t seed, bool tier2, int steps, bool cuda, bool by_block)
{
    uint64_t rng = seed;
    pc_cache *c = mk(24, tier2 ? 16 : 0, cuda ? PC_POOL_CUDA
                                         : tier2 ? PC_POOL_HOST : PC_POOL_NONE);
    model *m = calloc(1, sizeof(*m));
    cr_assert_not_null(m);
    m->medium[1] = pc_cache_medium(c, 1);
    m->medium[2] = pc_cache_medium(c, 2);
    cr_assert_str_eq(m->medium[1], cuda ? "GPU" : "CPU");
    if (tier2)
        cr_assert_str_eq(m->medium[2], cuda ? "CPU" : "DISK");
    else
        cr_assert_null(m->medium[2]);
    m->by_block = by_block;
    if (by_block)
        pc_cache_set_event_fn_by_block(c, on_event, m);
    else
        pc_cache_set_event_fn(c, on_event, m);
    /* namespace b under a quota: its inserts evict its own pages (radix's
     * quota hook, which names blocks only) */
    pc_cache_quota q = {"b", 6, 0};
    cr_assert_eq(pc_cache_set_ns_quotas(c, &q, 1), 0);
    uint32_t tok[8 * P], blocks[8], fresh[8];
    uint64_t held = 0; /* a lease kept pinned for a while */
    for (int step = 0; step < steps; step++) {
        const char *ns;
        size_t n = prompt(&rng, tok, &ns);
        uint64_t op = test_rng_next(&rng) % 100;
        if (op < 70) { /* a request: (promote,) look up, allocate, insert */
            if (tier2 && op < 20) {
                uint64_t job = 1;
                for (int k = 0; k < 8 && job; k++) {
                    cr_assert_eq(pc_cache_promote(c, ns, 1, tok, n, &job, NULL), 0);
                    if (job)
                        drain(c);
                }
            }
            pc_lookup_result r;
            cr_assert_eq(pc_cache_lookup_alloc(c, ns, 1, tok, n, 1, 0, blocks,
                                               fresh, &r), 0);
            if (r.alloc_status == 0) {
                memcpy(blocks + r.pages, fresh, r.alloc_n * sizeof(*fresh));
                pc_insert_result ir;
                cr_assert_eq(pc_cache_insert_pin(c, ns, 1, tok, n, blocks,
                                                 r.lease, op % 7 == 0, NULL,
                                                 &ir), 0);
            }
            if (r.lease && !held && op % 7 == 0)
                held = r.lease;
            else if (r.lease)
                cr_assert_eq(pc_cache_release(c, r.lease), 0);
        } else if (op < 76) {
            size_t ev;
            cr_assert_eq(pc_cache_flush_ns(c, ns, 1, &ev), 0);
        } else if (op < 80) {
            pc_cache_flush_tier2(c, ns, 1, false);
        } else if (op < 84) {
            pc_cache_flush_all(c, NULL, NULL);
        } else if (op < 90) {
            pc_cache_evict(c, 1 + test_rng_next(&rng) % 4);
        } else if (op < 95) {
            pc_cache_maintain(c);
        } else if (op == 99) { /* a new quota: lowering it evicts at once */
            q.max_pages = 1 + test_rng_next(&rng) % 8;
            cr_assert_eq(pc_cache_set_ns_quotas(c, &q, 1), 0);
        } else if (held) {
            cr_assert_eq(pc_cache_release(c, held), 0);
            held = 0;
        }
        agree(c, m, step);
    }
    /* Everything released, a flush of everything says CLEARED. */
    if (held)
        cr_assert_eq(pc_cache_release(c, held), 0);
    uint64_t cl = m->cleared;
    pc_cache_flush_all(c, NULL, NULL);
    cr_assert_eq(m->cleared, cl + 1);
    agree(c, m, steps);
    cr_assert_eq(m->tier[1].n + m->tier[2].n, 0);
    cr_assert_gt(m->stored[1], 0);
    cr_assert_gt(m->removed[1], 0);
    uint64_t quota_evicted = 0;
    pc_cache_stats_visit(c, quota_evicted_of, &quota_evicted);
    cr_assert_gt(quota_evicted, 0, "no quota eviction");
    if (by_block)
        cr_assert_gt(m->by_parent, 0, "no insert chained on from a block");
    if (tier2) {
        uint64_t promoted = 0;
        pc_cache_stats_visit(c, promoted_of, &promoted);
        cr_assert_gt(promoted, 0, "no promotion finished");
        cr_assert_gt(m->stored[2], 0, "no demotion seen");
        cr_assert_gt(m->removed[2], 0, "no tier-2 drop seen");
    }
    pc_cache_destroy(c);
    free(m);
}

Test(cache_events, random_workload_with_tier2)
{
    for (uint64_t seed = 1; seed <= 6; seed++)
        run(seed, true, 1500, false, false);
}

Test(cache_events, random_workload_pool_only)
{
    for (uint64_t seed = 11; seed <= 14; seed++)
        run(seed, false, 1500, false, false);
}

Test(cache_events, random_workload_cuda_pool_and_host_tier)
{
    for (uint64_t seed = 21; seed <= 23; seed++)
        run(seed, true, 1500, true, false);
}

/* rpc/events.c's mode: the pool's pages named by their blocks, hashed by
 * the hook; tier 2's by hash as before.  The same workloads, the same
 * agreement with the cache's content after every step. */
Test(cache_events, random_workload_by_block)
{
    for (uint64_t seed = 31; seed <= 34; seed++)
        run(seed, true, 1500, false, true);
    for (uint64_t seed = 41; seed <= 43; seed++)
        run(seed, false, 1500, false, true);
    run(51, true, 1500, true, true);
}

/* Inserts name only the new pages, with their parent; a duplicate insert
 * says nothing; pinned pages survive a flush of everything, which then
 * says REMOVED for what went, not CLEARED. */
Test(cache_events, insert_names_new_pages_and_flush_keeps_pins)
{
    pc_cache *c = mk(16, 0, PC_POOL_NONE);
    model *m = calloc(1, sizeof(*m));
    m->medium[1] = pc_cache_medium(c, 1);
    pc_cache_set_event_fn(c, on_event, m);
    uint32_t tok[4 * P], blocks[4], fresh[4];
    for (int i = 0; i < 4 * P; i++)
        tok[i] = (uint32_t)i;
    pc_lookup_result r;
    pc_insert_result ir;
    cr_assert_eq(pc_cache_lookup_alloc(c, "x", 1, tok, 2 * P, 0, 0, blocks,
                                       fresh, &r), 0);
    cr_assert_eq(pc_cache_insert(c, "x", 1, tok, 2 * P, fresh, r.lease, NULL,
                                 &ir), 0);
    cr_assert_eq(m->stored[1], 2);
    cr_assert_eq(pc_cache_release(c, r.lease), 0);
    /* the same two pages again, and two more: only those two are new */
    cr_assert_eq(pc_cache_lookup_alloc(c, "x", 1, tok, 4 * P, 1, 0, blocks,
                                       fresh, &r), 0);
    cr_assert_eq(r.pages, 2);
    memcpy(blocks + 2, fresh, 2 * sizeof(*fresh));
    cr_assert_eq(pc_cache_insert(c, "x", 1, tok, 4 * P, blocks, r.lease, NULL,
                                 &ir), 0);
    cr_assert_eq(m->stored[1], 4);
    agree(c, m, 0);
    /* r.lease pins pages 0-1: a flush of everything leaves them */
    uint64_t cl = m->cleared;
    size_t ev = 0;
    pc_cache_flush_all(c, &ev, NULL);
    cr_assert_eq(ev, 2);
    cr_assert_eq(m->cleared, cl);
    cr_assert_eq(m->removed[1], 2);
    agree(c, m, 1);
    /* no hook: nothing more is said, and nothing breaks */
    pc_cache_set_event_fn(c, NULL, NULL);
    cr_assert_eq(pc_cache_release(c, r.lease), 0);
    pc_cache_flush_all(c, &ev, NULL);
    cr_assert_eq(m->removed[1], 2);
    pc_cache_destroy(c);
    free(m);
}

/* An insert chains on from its cached prefix's kept hash; pages cached
 * while no hook was attached have none (and a block reused meanwhile
 * keeps its old page's): the chain must start over from the namespace,
 * which on_event checks against a full chain. */
static void insert_pages(pc_cache *c, const char *ns, const uint32_t *tok,
                         size_t pages)
{
    uint32_t blocks[8], fresh[8];
    pc_lookup_result r;
    pc_insert_result ir;
    cr_assert_eq(pc_cache_lookup_alloc(c, ns, strlen(ns), tok, pages * P, 0, 0,
                                       blocks, fresh, &r), 0);
    memcpy(blocks + r.pages, fresh, (pages - r.pages) * sizeof(*fresh));
    cr_assert_eq(pc_cache_insert(c, ns, strlen(ns), tok, pages * P, blocks,
                                 r.lease, NULL, &ir), 0);
    if (r.lease) /* none when every page was cached already */
        cr_assert_eq(pc_cache_release(c, r.lease), 0);
    cr_assert_eq(pc_cache_check(c), 0);
}

Test(cache_events, prefix_cached_without_a_hook_is_rehashed)
{
    model *m = calloc(1, sizeof(*m));
    uint32_t a[8 * P], b[8 * P];
    for (int i = 0; i < 8 * P; i++) {
        a[i] = (uint32_t)i;
        b[i] = (uint32_t)(1000 + i);
    }
    /* a prefix cached before the hook: its hashes were never kept */
    pc_cache *c = mk(8, 0, PC_POOL_NONE);
    m->medium[1] = pc_cache_medium(c, 1);
    insert_pages(c, "x", a, 2);
    pc_cache_set_event_fn(c, on_event, m);
    insert_pages(c, "x", a, 4); /* pages 2-3 new, their parent unknown */
    cr_assert_eq(m->stored[1], 2);
    insert_pages(c, "x", a, 4); /* all cached: nothing */
    cr_assert_eq(m->stored[1], 2);
    pc_cache_destroy(c);
    /* blocks that kept a's hashes, reused while no hook was attached */
    memset(m, 0, sizeof(*m));
    c = mk(8, 0, PC_POOL_NONE);
    m->medium[1] = pc_cache_medium(c, 1);
    pc_cache_set_event_fn(c, on_event, m);
    insert_pages(c, "x", a, 8); /* every block holds one of a's pages */
    cr_assert_eq(m->stored[1], 8);
    pc_cache_set_event_fn(c, NULL, NULL);
    size_t ev = 0;
    pc_cache_flush_all(c, &ev, NULL);
    cr_assert_eq(ev, 8);
    insert_pages(c, "x", b, 2);
    memset(m, 0, sizeof(*m));
    m->medium[1] = pc_cache_medium(c, 1);
    pc_cache_set_event_fn(c, on_event, m);
    insert_pages(c, "x", b, 4);
    cr_assert_eq(m->stored[1], 2);
    pc_cache_destroy(c);
    free(m);
}

/* By-block mode: a prefix cached before the hook goes on from start (the
 * cache rehashes it), a second hook learns nothing of the first one's
 * pages (no parent block or REMOVED by block it never had), and a flush
 * of everything that a namespace's reserve survives says REMOVED for
 * what went, not CLEARED.  The model checks every hash it is told. */
Test(cache_events, by_block_late_hook_second_hook_and_reserves)
{
    model *m = calloc(1, sizeof(*m)), *m2 = calloc(1, sizeof(*m2));
    uint32_t a[8 * P], b[8 * P];
    for (int i = 0; i < 8 * P; i++) {
        a[i] = (uint32_t)i;
        b[i] = (uint32_t)(1000 + i);
    }
    pc_cache *c = mk(16, 0, PC_POOL_NONE);
    m->medium[1] = m2->medium[1] = pc_cache_medium(c, 1);
    m->by_block = m2->by_block = true;
    insert_pages(c, "x", a, 2); /* before any hook */
    pc_cache_set_event_fn_by_block(c, on_event, m);
    insert_pages(c, "x", a, 4); /* pages 2-3: their parent's block unknown */
    cr_assert_eq(m->stored[1], 2);
    cr_assert_eq(m->by_parent, 0);
    insert_pages(c, "x", a, 6); /* pages 4-5 chain on from page 3's block */
    cr_assert_eq(m->by_parent, 1);
    /* a second hook: pages 0-1 were never named to it, 2-5 only to m */
    m2->forgive_unknown = true;
    pc_cache_set_event_fn_by_block(c, on_event, m2);
    insert_pages(c, "x", a, 8); /* from start, not from page 5's block */
    cr_assert_eq(m2->stored[1], 2);
    cr_assert_eq(m2->by_parent, 0);
    pc_cache_evict(c, 16); /* by hash for the pages m2 lacks, never by block */
    cr_assert_eq(m2->tier[1].n, 0);
    cr_assert_eq(pc_cache_check(c), 0);
    /* a reserve of 2 pages for "r": flushing everything leaves them */
    memset(m2, 0, sizeof(*m2)); /* the cache is empty: m2 learns it all */
    m2->medium[1] = pc_cache_medium(c, 1);
    m2->by_block = true;
    pc_cache_quota q = {"r", 8, 2};
    cr_assert_eq(pc_cache_set_ns_quotas(c, &q, 1), 0);
    insert_pages(c, "r", b, 4);
    insert_pages(c, "x", a, 3);
    size_t ev = 0;
    pc_cache_flush_all(c, &ev, NULL);
    cr_assert_eq(ev, 5);
    cr_assert_eq(m2->cleared, 0, "CLEARED while a reserve holds 2 pages");
    agree(c, m2, 1);
    cr_assert_eq(m2->tier[1].n, 2);
    pc_cache_destroy(c);
    free(m);
    free(m2);
}

/* The test vectors docs/cluster.md gives consumers, so that the docs and
 * the chain cannot drift apart. */
Test(cache_events, chain_hash_test_vectors)
{
    uint32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pc_page_hash h[2];
    pc_page_hash n = pc_page_hash_ns("llama-3-8b", 10);
    cr_assert_eq(n.lo, 0xfc4a05901c269ad8ull);
    cr_assert_eq(n.hi, 0xee76924ca884b7c7ull);
    pc_page_hash_chain("llama-3-8b", 10, tok, 2, 4, h);
    cr_assert_eq(h[0].lo, 0x107e8a15c7425681ull);
    cr_assert_eq(h[0].hi, 0xed715cec6abaad1eull);
    cr_assert_eq(h[1].lo, 0x9111eb4abe49f28eull);
    cr_assert_eq(h[1].lo, 10453394916356256398ull);
}

/* pagehash.c unrolls the step for 16-token pages: it must stay XXH3_128 of
 * h[i-1] || the page, bit for bit, as for any other page size. */
static pc_page_hash xxh3_step(pc_page_hash prev, const uint32_t *page, uint32_t pt)
{
    uint8_t buf[16 + 4 * 64];
    memcpy(buf, &prev.lo, 8);
    memcpy(buf + 8, &prev.hi, 8);
    memcpy(buf + 16, page, (size_t)pt * 4);
    XXH128_hash_t x = XXH3_128bits(buf, 16 + (size_t)pt * 4);
    return (pc_page_hash){x.low64, x.high64};
}

Test(cache_events, chain_hash_is_xxh3_for_every_page_size)
{
    uint64_t s = 42;
    uint32_t tok[64 * 9];
    for (size_t i = 0; i < sizeof(tok) / sizeof(tok[0]); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (uint32_t)(s >> 32); /* every bit of the ids matters */
    }
    pc_page_hash out[9];
    const uint32_t sizes[] = {1, 4, 15, 16, 17, 32, 64};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint32_t pt = sizes[k];
        pc_page_hash h = pc_page_hash_ns("ns", 2), prev = h;
        pc_page_hash_chain_from(prev, tok, 9, pt, out);
        for (size_t i = 0; i < 9; i++) {
            h = xxh3_step(h, tok + i * pt, pt);
            cr_assert(pc_page_hash_eq(h, out[i]), "P %u, page %zu", pt, i);
            pc_page_hash one = pc_page_hash_next(i ? out[i - 1] : prev, tok + i * pt, pt);
            cr_assert(pc_page_hash_eq(h, one), "P %u, page %zu (next)", pt, i);
        }
        pc_page_hash whole[9];
        pc_page_hash_chain("ns", 2, tok, 9, pt, whole);
        cr_assert_arr_eq(whole, out, sizeof(out));
    }
}

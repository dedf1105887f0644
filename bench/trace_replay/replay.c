/*
 * bench/trace_replay/replay.c - a trace through the real cache in-process
 * (cache/cache.h) and through a real daemon (rpc/client.h).  The two run the
 * same steps per request, so they must give the same hits page for page.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/common/report.h"
#include "bench/trace_replay/trace.h"
#include "cache/cache.h"
#include "cache/inspect.h"
#include "rpc/client.h"

/* Pages of the request that fit: all n - m missing ones, or what the pool
 * can hold next to the m pinned ones (then a prefix is inserted). */
static uint64_t fit(uint64_t n, uint64_t m, uint64_t capacity, tr_result *out)
{
    uint64_t k = n - m;
    if (k > capacity - m) {
        k = capacity - m;
        out->truncated++;
    }
    return k;
}

/* A promotion that takes longer than this is a cache bug, not a slow disk:
 * the tier's reads are page-sized preads of a file the kernel caches. */
#define PROMOTE_TIMEOUT_MS 30000

/* Wait until pc_cache_poll reports `job` (finished: its pages are in the
 * tree, or were dropped when the read failed).  PC_E_TIMEOUT when it never
 * comes. */
static int wait_promotion(pc_cache *c, uint64_t job)
{
    uint64_t done[16];
    int waited_ms = 0;
    for (;;) {
        size_t n = pc_cache_poll(c, done, sizeof done / sizeof done[0]);
        for (size_t i = 0; i < n; i++)
            if (done[i] == job)
                return 0;
        if (n == sizeof done / sizeof done[0])
            continue; /* more may be finished already */
        if (waited_ms >= PROMOTE_TIMEOUT_MS)
            return PC_E_TIMEOUT;
        int fd = pc_cache_wait_fd(c);
        if (fd >= 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int r = poll(&pfd, 1, 100);
            if (r < 0 && errno != EINTR)
                return PC_E_IO;
            waited_ms += r == 0 ? 100 : 0;
        } else { /* a device tier: polled */
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
            waited_ms += 1; /* coarse: only bounds the wait */
        }
    }
}

typedef struct tier_stats_ctx {
    tr_result *out;
} tier_stats_ctx;

static void on_tier_stat(void *ctx, const char *name, uint64_t v)
{
    tr_result *r = ((tier_stats_ctx *)ctx)->out;
    if (!strcmp(name, "tier2.capacity_pages"))
        r->tier2_capacity_pages = v;
    else if (!strcmp(name, "tier2.demoted_pages"))
        r->tier2_demoted_pages = v;
    else if (!strcmp(name, "tier2.promoted_pages"))
        r->tier2_promoted_pages = v;
    else if (!strcmp(name, "tier2.evicted_pages"))
        r->tier2_evicted_pages = v;
    else if (!strcmp(name, "tier2.promotions"))
        r->tier2_promotions = v;
}

/* Promote the tier-2 pages after the pool's prefix of this request, one
 * job after another until the cache has nothing more to start.  NOSPACE
 * (the pool cannot take even one page next to the pins) ends it quietly:
 * those pages stay misses. */
static int promote_all(pc_cache *c, const char *ns, size_t ns_len,
                       const uint32_t *tok, size_t n_tok, size_t n_pages,
                       tr_result *out)
{
    /* each job brings at least one page, so this bounds a loop that would
     * otherwise hang on a cache bug */
    for (size_t iter = 0; iter <= n_pages; iter++) {
        uint64_t job = 0;
        int rc = pc_cache_promote(c, ns, ns_len, tok, n_tok, &job, NULL);
        if (rc == PC_E_NOSPACE)
            return 0;
        if (rc)
            return rc;
        if (!job)
            return 0;
        out->promote_jobs++;
        if ((rc = wait_promotion(c, job)))
            return rc;
    }
    return PC_E_CORRUPT;
}

int tr_replay_cache(const tr_trace *t, const tr_replay_opts *o, tr_result *out)
{
    if (!t || !o || !out)
        return PC_E_INVAL;
    memset(out, 0, sizeof(*out));
    if (o->capacity < 2 || o->capacity > PC_POOL_MAX_BLOCKS)
        return PC_E_RANGE; /* the pool's limits */
    uint32_t P = t->page_tokens;
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    /* Index only: a 1x1x1 fp16 shape keeps the layout valid, no memory. */
    /* Index only: a 1x1x1 shape keeps the layout valid, no memory.  Two
     * tiers need bytes to copy (the file tier refuses a pool without
     * memory): a host pool of fp8 blocks, the smallest (2 x P bytes). */
    int rc = pc_pool_layout_init(&cfg.pool.layout, 1, 1, 1, P,
                                 o->two_tier ? PC_DTYPE_FP8 : PC_DTYPE_FP16);
    if (rc)
        return rc;
    cfg.pool.backend = o->two_tier ? PC_POOL_HOST : PC_POOL_NONE;
    cfg.pool.capacity_blocks = o->capacity;
    if (o->two_tier && o->tier2_pages) {
        if (o->tier2_pages > UINT64_MAX / cfg.pool.layout.block_bytes)
            return PC_E_RANGE;
        cfg.tier2_bytes = o->tier2_pages * cfg.pool.layout.block_bytes;
        cfg.tier2_path = o->tier2_path;
    }
    cfg.eviction_policy = o->policy;
    /* One request at a time: a request's pins and blocks never exceed it. */
    cfg.max_blocks_per_lease = (uint32_t)(o->capacity < UINT32_MAX ? o->capacity : UINT32_MAX);
    pc_cache *c = NULL;
    if ((rc = pc_cache_create(&cfg, &c)))
        return rc;
    pc_radix *tree = pc_cache_tree(c);
    for (size_t i = 0; i < o->n_prio; i++)
        if ((rc = pc_radix_set_ns_priority(tree, o->prio[i].ns, strlen(o->prio[i].ns),
                                           o->prio[i].priority)))
            goto out_cache;
    size_t maxp = (size_t)t->max_req_pages + 1;
    uint32_t *buf = malloc(maxp * P * sizeof(*buf));
    uint32_t *ids = malloc(maxp * sizeof(*ids));
    if (!buf || !ids) {
        rc = PC_E_NOMEM;
        goto out;
    }
    uint64_t lookup_pages = 0; /* what the tree must have counted */
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < t->n_req; i++) {
        const tr_request *q = &t->req[i];
        const char *ns = t->ns[q->ns];
        size_t ns_len = t->ns_len[q->ns];
        const uint32_t *tok = tr_request_tokens(t, i, buf);
        size_t n_tok = (size_t)q->n_pages * P;
        pc_lookup_result lr;
        if ((rc = pc_cache_lookup(c, ns, ns_len, tok, n_tok, 1, 0, ids, &lr)))
            goto out;
        lookup_pages += lr.pages;
        uint64_t m1 = lr.pages;
        if (lr.tier2_pages) {
            /* The first lookup's pin keeps the tier-1 prefix while the
             * promotions make room; the second one pins what came back, so
             * that the alloc below cannot evict it again. */
            uint64_t lease1 = lr.lease;
            if ((rc = promote_all(c, ns, ns_len, tok, n_tok, q->n_pages, out)))
                goto out;
            if ((rc = pc_cache_lookup(c, ns, ns_len, tok, n_tok, 1, lease1, ids,
                                      &lr)))
                goto out;
            lookup_pages += lr.pages;
            if (lr.pages < m1 || (lease1 && lr.lease != lease1)) {
                rc = PC_E_CORRUPT; /* the pinned prefix went away */
                goto out;
            }
            out->tier2_unpromoted += lr.tier2_pages;
        }
        out->tier1_hit_pages += m1;
        out->tier2_hit_pages += lr.pages - m1;
        uint64_t lease = lr.lease;
        uint64_t k = fit(q->n_pages, lr.pages, o->capacity, out);
        if (k && (rc = pc_cache_alloc(c, (uint32_t)k, &lease, ids + lr.pages)))
            goto out;
        if (lr.pages + k) {
            pc_insert_result ir;
            rc = pc_cache_insert(c, ns, ns_len, tok, (size_t)(lr.pages + k) * P,
                                 ids, lease, NULL, &ir);
            if (rc)
                goto out;
            if (ir.inserted_pages != k || ir.cached_tokens != lr.pages * P) {
                rc = PC_E_CORRUPT; /* nothing else runs: must be exact */
                goto out;
            }
        }
        if (lease && (rc = pc_cache_release(c, lease)))
            goto out;
        out->hit_pages += lr.pages;
        out->total_pages += q->n_pages;
        out->inserted_pages += k;
        if (o->per_req_hits)
            o->per_req_hits[i] = (uint32_t)lr.pages;
        if (o->check_every && (rc = pc_cache_check(c)))
            goto out;
        if (o->progress && o->progress_every && (i + 1) % o->progress_every == 0)
            o->progress(o->progress_ctx, i + 1, t->n_req);
    }
    out->seconds = (double)(bench_now_ns() - t0) / 1e9;
    rc = pc_cache_check(c);
    pc_cache_stats st;
    pc_cache_stats_get(c, &st);
    out->evicted_pages = st.tree.evicted_pages;
    tier_stats_ctx sc = {out};
    pc_cache_stats_visit(c, on_tier_stat, &sc);
    /* The tree's own count must agree with ours. */
    if (!rc && (st.tree.hit_pages != lookup_pages || st.leases != 0))
        rc = PC_E_CORRUPT;
out:
    free(buf);
    free(ids);
out_cache:
    pc_cache_destroy(c);
    return rc;
}

int tr_replay_daemon(const tr_trace *t, pc_client *c, uint64_t capacity,
                     uint32_t *per_req_hits,
                     void (*progress)(void *ctx, size_t done, size_t total),
                     void *progress_ctx, size_t progress_every, tr_result *out)
{
    if (!t || !c || !out || capacity < 2)
        return PC_E_INVAL;
    memset(out, 0, sizeof(*out));
    uint32_t P = t->page_tokens;
    size_t maxp = (size_t)t->max_req_pages + 1;
    uint32_t *buf = malloc(maxp * P * sizeof(*buf));
    uint32_t *ids = malloc(maxp * sizeof(*ids));
    int rc = 0;
    if (!buf || !ids) {
        rc = PC_E_NOMEM;
        goto out;
    }
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < t->n_req; i++) {
        const tr_request *q = &t->req[i];
        const char *ns = t->ns[q->ns];
        size_t ns_len = t->ns_len[q->ns];
        const uint32_t *tok = tr_request_tokens(t, i, buf);
        size_t n_tok = (size_t)q->n_pages * P;
        if (n_tok == 0) {
            if (per_req_hits)
                per_req_hits[i] = 0;
            continue;
        }
        /* One round trip when everything fits (the common case): the
         * daemon allocates all missing pages right after the pin, which is
         * what the in-process replay does; a refused alloc changes nothing,
         * so asking again for what fits is the same as asking only for it. */
        pc_client_lookup_result lr;
        if ((rc = pc_client_lookup(c, ns, ns_len, tok, n_tok,
                                   PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &lr)))
            goto out;
        size_t m = lr.pages;
        uint64_t lease = lr.lease;
        memcpy(ids, lr.blocks, m * sizeof(*ids));
        uint64_t k = fit(q->n_pages, m, capacity, out);
        if (k && lr.alloc_status == 0 && lr.n_alloc == k) {
            memcpy(ids + m, lr.alloc_blocks, k * sizeof(*ids));
        } else if (k) {
            if (lr.alloc_status == 0 && lr.n_alloc) { /* cannot be: k < n - m */
                rc = PC_E_CORRUPT;
                goto out;
            }
            if ((rc = pc_client_alloc(c, (uint32_t)k, &lease, ids + m)))
                goto out;
        }
        if (m + k) {
            pc_client_insert_result ir;
            rc = pc_client_insert(c, ns, ns_len, tok, (size_t)(m + k) * P, ids,
                                  lease, PC_CLIENT_RELEASE, NULL, &ir);
            if (rc)
                goto out;
            if (ir.inserted_pages != k || ir.cached_tokens != m * P) {
                rc = PC_E_CORRUPT;
                goto out;
            }
        } else if (lease && (rc = pc_client_release(c, lease))) {
            goto out;
        }
        out->hit_pages += m;
        out->total_pages += q->n_pages;
        out->inserted_pages += k;
        if (per_req_hits)
            per_req_hits[i] = (uint32_t)m;
        if (progress && progress_every && (i + 1) % progress_every == 0)
            progress(progress_ctx, i + 1, t->n_req);
    }
    out->seconds = (double)(bench_now_ns() - t0) / 1e9;
out:
    free(buf);
    free(ids);
    return rc;
}

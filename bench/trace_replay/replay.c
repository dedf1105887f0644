/*
 * bench/trace_replay/replay.c - a trace through the real cache in-process
 * (cache/cache.h) and through a real daemon (rpc/client.h).  The two run the
 * same steps per request, so they must give the same hits page for page.
 */
#include <stdlib.h>
#include <string.h>

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
    int rc = pc_pool_layout_init(&cfg.pool.layout, 1, 1, 1, P, PC_DTYPE_FP16);
    if (rc)
        return rc;
    cfg.pool.backend = PC_POOL_NONE;
    cfg.pool.capacity_blocks = o->capacity;
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
    /* The tree's own count must agree with ours. */
    if (!rc && (st.tree.hit_pages != out->hit_pages || st.leases != 0))
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

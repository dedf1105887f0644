/*
 * bench/cluster_sim/cluster_sim.c - a fleet of prefix caches behind a
 * router that knows only what their KV events say (bench/README.md,
 * "cluster_sim").
 *
 *   trace (Mooncake) ─► router ─┬─► node 0: a real pc_cache ──┐ event hook
 *        request i      │       ├─► node 1                    │ (cache.h)
 *                       │       └─► node N-1                  │
 *                       │                                     ▼
 *                       └── per node: the set of block hashes STORED and
 *                           not yet REMOVED (CLEARED empties it)
 *
 * Policies:
 *   rr      request i goes to node i mod N
 *   prefix  the node with the longest cached prefix of the request (the
 *           router recomputes the chain hash of each page, proto/pagehash.h,
 *           and counts the leading pages its set for that node holds); ties
 *           to the node with the fewest requests so far
 *   aware   the node that would finish the request first by a simple cost:
 *           backlog(n) + miss(n), where miss(n) = pages of the request
 *           node n does not hold (to prefill) and backlog(n) = the missed
 *           pages of the requests routed to n among the last W = 4 x N
 *           (work still queued there); ties as for prefix.  The backlog is
 *           the load-balance penalty: a node that caches everything but is
 *           busy loses to an idle one once its queue costs more than the
 *           prefill it would save.
 *
 * Each node replays its requests the way bench/trace_replay does (lookup
 * with pin, allocate what fits, insert, release; pool backend "none").  The
 * router never looks into a cache: the self-checks do, and say CHECK FAILED
 * when the router's predicted hit differs from the node's real lookup, or
 * its sets differ from the nodes' content at the end.
 *
 * Usage: cluster_sim [--node-pages N] [--nodes 1,2,4,8] [--limit R]
 *                    [--json FILE] [--md FILE] TRACE...
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/trace_replay/trace.h"
#include "cache/cache.h"
#include "cache/inspect.h"
#include "proto/pagehash.h"

#define MAX_NODES 64

/* ---- the router's view of one node: a set of 64-bit hashes --------------- */

typedef struct hset {
    uint64_t *v; /* 0 = empty; the hash 0 itself is `zero` */
    size_t cap, n;
    bool zero;
} hset;

static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n, s);
    if (!p) {
        fprintf(stderr, "cluster_sim: out of memory\n");
        exit(1);
    }
    return p;
}

static size_t hs_slot(const hset *s, uint64_t h)
{
    size_t m = s->cap - 1, i = (size_t)(h ^ (h >> 29)) & m;
    while (s->v[i] && s->v[i] != h)
        i = (i + 1) & m;
    return i;
}

static bool hs_has(const hset *s, uint64_t h)
{
    return h ? s->v[hs_slot(s, h)] == h : s->zero;
}

static void hs_add(hset *s, uint64_t h)
{
    if (!h) {
        s->n += !s->zero;
        s->zero = true;
        return;
    }
    if (2 * (s->n + 1) > s->cap) { /* grow: load <= 1/2 */
        hset g = {xcalloc(s->cap * 2, sizeof(uint64_t)), s->cap * 2, 0, s->zero};
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i])
                g.v[hs_slot(&g, s->v[i])] = s->v[i];
        g.n = s->n;
        free(s->v);
        *s = g;
    }
    size_t i = hs_slot(s, h);
    s->n += s->v[i] == 0;
    s->v[i] = h;
}

/* Backward-shift deletion: linear probing without tombstones. */
static void hs_del(hset *s, uint64_t h)
{
    if (!h) {
        s->n -= s->zero;
        s->zero = false;
        return;
    }
    size_t m = s->cap - 1, i = hs_slot(s, h);
    if (!s->v[i])
        return;
    s->v[i] = 0;
    s->n--;
    for (size_t j = (i + 1) & m; s->v[j]; j = (j + 1) & m) {
        size_t home = (size_t)(s->v[j] ^ (s->v[j] >> 29)) & m;
        /* move v[j] into the hole when its home is not in (i, j] */
        if (((j - home) & m) >= ((j - i) & m)) {
            s->v[i] = s->v[j];
            s->v[j] = 0;
            i = j;
        }
    }
}

static void hs_clear(hset *s)
{
    memset(s->v, 0, s->cap * sizeof(*s->v));
    s->n = 0;
    s->zero = false;
}

typedef struct node {
    pc_cache *c;
    hset seen;            /* the router's: stored and not removed */
    uint64_t events, requests, bad_events;
} node;

static void on_event(void *ctx, const pc_cache_event *ev)
{
    node *nd = ctx;
    nd->events++;
    if (ev->type == PC_CACHE_EV_CLEARED) {
        hs_clear(&nd->seen);
        return;
    }
    if (ev->tier != 1)
        return; /* no second tier here */
    for (size_t i = 0; i < ev->n_pages; i++) {
        bool had = hs_has(&nd->seen, ev->hashes[i]);
        if (ev->type == PC_CACHE_EV_STORED) {
            nd->bad_events += had;
            hs_add(&nd->seen, ev->hashes[i]);
        } else {
            nd->bad_events += !had;
            hs_del(&nd->seen, ev->hashes[i]);
        }
    }
}

/* ---- one run: a trace, N nodes, a policy ---------------------------------- */

enum { POL_RR, POL_PREFIX, POL_AWARE, POL_COUNT };
static const char *const POL_NAME[] = {"rr", "prefix", "aware"};

typedef struct result {
    uint64_t hit, total;
    uint64_t req[MAX_NODES];
    uint64_t mismatches, bad_events, set_diff, nospace;
    double max_over_mean;
} result;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The router's set for nd equals the node's content (inspect.h). */
static bool same_content(node *nd)
{
    size_t n = pc_cache_list_hashes(nd->c, 1, NULL, 0);
    uint64_t *a = xcalloc(n + 1, sizeof(*a)), *b = xcalloc(n + 1, sizeof(*b));
    pc_cache_list_hashes(nd->c, 1, a, n);
    size_t k = 0;
    for (size_t i = 0; i < nd->seen.cap; i++)
        if (nd->seen.v[i] && k < n)
            b[k++] = nd->seen.v[i];
    if (nd->seen.zero && k < n)
        b[k++] = 0;
    bool ok = n == nd->seen.n && k == n;
    qsort(a, n, sizeof(*a), cmp_u64);
    qsort(b, k, sizeof(*b), cmp_u64);
    ok = ok && memcmp(a, b, n * sizeof(*a)) == 0;
    free(a);
    free(b);
    return ok;
}

static int run(const tr_trace *t, uint32_t nn, int pol, uint64_t node_pages,
               result *r)
{
    memset(r, 0, sizeof(*r));
    node nodes[MAX_NODES];
    memset(nodes, 0, sizeof(nodes));
    uint32_t P = t->page_tokens;
    for (uint32_t i = 0; i < nn; i++) {
        pc_cache_config cfg;
        pc_cache_config_defaults(&cfg);
        pc_pool_layout_init(&cfg.pool.layout, 1, 1, 1, P, PC_DTYPE_FP16);
        cfg.pool.backend = PC_POOL_NONE;
        cfg.pool.capacity_blocks = node_pages;
        cfg.max_blocks_per_lease = (uint32_t)node_pages;
        cfg.max_pins_per_lease = 4;
        int rc = pc_cache_create(&cfg, &nodes[i].c);
        if (rc) {
            fprintf(stderr, "cluster_sim: pc_cache_create: %s %s\n",
                    pc_strerror(rc), pc_cache_create_why());
            return rc;
        }
        nodes[i].seen.cap = 1024;
        nodes[i].seen.v = xcalloc(1024, sizeof(uint64_t));
        pc_cache_set_event_fn(nodes[i].c, on_event, &nodes[i]);
    }
    size_t maxp = t->max_req_pages;
    uint32_t *buf = xcalloc(maxp * P + 1, sizeof(*buf));
    uint32_t *blocks = xcalloc(maxp + 1, sizeof(*blocks));
    pc_page_hash *ch = xcalloc(maxp + 1, sizeof(*ch));
    /* the aware policy's window: who got each of the last W requests and
     * the pages it missed there */
    size_t W = 4 * (size_t)nn;
    uint32_t *win_node = xcalloc(W, sizeof(*win_node));
    uint64_t *win_miss = xcalloc(W, sizeof(*win_miss));
    uint64_t backlog[MAX_NODES] = {0};
    int rc = 0;
    for (size_t q = 0; q < t->n_req && rc == 0; q++) {
        const tr_request *rq = &t->req[q];
        size_t np = rq->n_pages;
        const uint32_t *tok = tr_request_tokens(t, q, buf);
        const char *ns = t->ns[rq->ns];
        size_t nsl = t->ns_len[rq->ns];
        uint32_t best = 0;
        uint64_t hit[MAX_NODES] = {0};
        if (pol != POL_RR || nn > 1) {
            pc_page_hash_chain(ns, nsl, tok, np, P, ch);
            for (uint32_t n = 0; n < nn; n++) {
                size_t k = 0;
                while (k < np && hs_has(&nodes[n].seen, ch[k].lo))
                    k++;
                hit[n] = k;
            }
        }
        if (pol == POL_RR) {
            best = (uint32_t)(q % nn);
        } else {
            for (uint32_t n = 1; n < nn; n++) {
                bool better, tie;
                if (pol == POL_PREFIX) {
                    better = hit[n] > hit[best];
                    tie = hit[n] == hit[best];
                } else {
                    uint64_t cn = backlog[n] + (np - hit[n]);
                    uint64_t cb = backlog[best] + (np - hit[best]);
                    better = cn < cb;
                    tie = cn == cb;
                }
                if (better || (tie && nodes[n].requests < nodes[best].requests))
                    best = n;
            }
        }
        node *nd = &nodes[best];
        nd->requests++;
        /* the node serves it: lookup + pin, allocate what fits, insert */
        pc_lookup_result lr;
        uint32_t *fresh = blocks;
        rc = pc_cache_lookup(nd->c, ns, nsl, tok, np * P, 1, 0, blocks, &lr);
        if (rc)
            break;
        if (nn > 1 || pol != POL_RR)
            r->mismatches += lr.pages != hit[best];
        size_t m = lr.pages, k = np - m;
        if (m + k > node_pages)
            k = node_pages - m;
        uint64_t lease = lr.lease;
        if (k) {
            fresh = blocks + m;
            int arc = pc_cache_alloc(nd->c, (uint32_t)k, &lease, fresh);
            if (arc) { /* the pinned prefix leaves no room: serve uncached */
                r->nospace++;
                k = 0;
            }
        }
        if (k) {
            pc_insert_result ir;
            rc = pc_cache_insert(nd->c, ns, nsl, tok, (m + k) * P, blocks,
                                 lease, NULL, &ir);
        }
        if (lease)
            pc_cache_release(nd->c, lease);
        r->hit += m;
        r->total += np;
        if (pol == POL_AWARE) {
            size_t w = q % W;
            if (q >= W)
                backlog[win_node[w]] -= win_miss[w];
            win_node[w] = best;
            win_miss[w] = np - m;
            backlog[best] += np - m;
        }
    }
    uint64_t mx = 0, sum = 0;
    for (uint32_t n = 0; n < nn; n++) {
        r->req[n] = nodes[n].requests;
        mx = nodes[n].requests > mx ? nodes[n].requests : mx;
        sum += nodes[n].requests;
        r->bad_events += nodes[n].bad_events;
        r->set_diff += !same_content(&nodes[n]);
        if (pc_cache_events_lost(nodes[n].c) || pc_cache_check(nodes[n].c))
            r->set_diff++;
        pc_cache_destroy(nodes[n].c);
        free(nodes[n].seen.v);
    }
    r->max_over_mean = sum ? (double)mx * nn / (double)sum : 0;
    free(buf);
    free(blocks);
    free(ch);
    free(win_node);
    free(win_miss);
    return rc;
}

int main(int argc, char **argv)
{
    uint64_t node_pages = 6000; /* ~3M tokens of 512-token pages a node */
    uint32_t ns_list[16] = {1, 2, 4, 8};
    size_t n_ns = 4, limit = 0;
    const char *json = NULL, *md = NULL;
    int a = 1;
    for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
        if (a + 1 >= argc) {
            fprintf(stderr, "cluster_sim: %s needs a value\n", argv[a]);
            return 2;
        }
        const char *v = argv[++a];
        if (strcmp(argv[a - 1], "--node-pages") == 0) {
            node_pages = strtoull(v, NULL, 10);
        } else if (strcmp(argv[a - 1], "--limit") == 0) {
            limit = strtoull(v, NULL, 10);
        } else if (strcmp(argv[a - 1], "--json") == 0) {
            json = v;
        } else if (strcmp(argv[a - 1], "--md") == 0) {
            md = v;
        } else if (strcmp(argv[a - 1], "--nodes") == 0) {
            n_ns = 0;
            for (const char *p = v; *p && n_ns < 16; p += strcspn(p, ","),
                            p += *p == ',') {
                unsigned long x = strtoul(p, NULL, 10);
                if (x < 1 || x > MAX_NODES) {
                    fprintf(stderr, "cluster_sim: nodes 1..%d\n", MAX_NODES);
                    return 2;
                }
                ns_list[n_ns++] = (uint32_t)x;
            }
        } else {
            fprintf(stderr, "cluster_sim: unknown option %s\n", argv[a - 1]);
            return 2;
        }
    }
    if (a >= argc || node_pages < 2 || node_pages > UINT32_MAX) {
        fprintf(stderr, "usage: cluster_sim [--node-pages N] [--nodes 1,2,4,8] "
                        "[--limit R] [--json FILE] [--md FILE] TRACE...\n");
        return 2;
    }
    FILE *jf = json ? fopen(json, "w") : NULL, *mf = md ? fopen(md, "w") : NULL;
    if ((json && !jf) || (md && !mf)) {
        fprintf(stderr, "cluster_sim: cannot write the output files\n");
        return 1;
    }
    FILE *outs[2] = {stdout, mf};
    for (int o = 0; o < 2; o++)
        if (outs[o])
            fprintf(outs[o], "| trace | nodes | policy | hit rate | max/mean "
                             "requests | requests per node |\n"
                             "|---|---:|---|---:|---:|---|\n");
    if (jf)
        fprintf(jf, "{\"node_pages\": %" PRIu64 ", \"rows\": [", node_pages);
    int failed = 0, first = 1;
    for (; a < argc; a++) {
        tr_load_opts lo = {.page_tokens = 512, .limit = limit};
        tr_trace *t;
        int rc = tr_trace_load(argv[a], &lo, &t);
        if (rc) {
            fprintf(stderr, "cluster_sim: %s: %s\n", argv[a], pc_strerror(rc));
            return 1;
        }
        fprintf(stderr, "%s: %zu requests, %" PRIu64 " pages, working set %u "
                "pages; %" PRIu64 " pages a node; ideal hit rate %.4f\n",
                t->name, t->n_req, tr_total_pages(t), t->n_distinct, node_pages,
                (double)t->ideal_hits / (double)tr_total_pages(t));
        for (size_t s = 0; s < n_ns; s++)
            for (int pol = 0; pol < POL_COUNT; pol++) {
                uint32_t nn = ns_list[s];
                if (nn == 1 && pol != POL_RR)
                    continue; /* one node: every policy is the same */
                result r;
                if ((rc = run(t, nn, pol, node_pages, &r))) {
                    fprintf(stderr, "cluster_sim: %s\n", pc_strerror(rc));
                    return 1;
                }
                if (r.mismatches || r.bad_events || r.set_diff) {
                    fprintf(stderr, "CHECK FAILED: %s N=%u %s: %" PRIu64
                            " predictions off, %" PRIu64 " bad events, %" PRIu64
                            " nodes whose content differs from the router's\n",
                            t->name, nn, POL_NAME[pol], r.mismatches,
                            r.bad_events, r.set_diff);
                    failed = 1;
                }
                double hr = r.total ? (double)r.hit / (double)r.total : 0;
                char per[512] = "";
                size_t off = 0;
                for (uint32_t n = 0; n < nn && off < sizeof(per) - 24; n++)
                    off += (size_t)snprintf(per + off, sizeof(per) - off,
                                            "%s%" PRIu64, n ? " " : "", r.req[n]);
                for (int o = 0; o < 2; o++)
                    if (outs[o])
                        fprintf(outs[o], "| %s | %u | %s | %.4f | %.2f | %s |\n",
                                t->name, nn, nn == 1 ? "(any)" : POL_NAME[pol],
                                hr, r.max_over_mean, per);
                if (jf) {
                    fprintf(jf, "%s\n  {\"trace\": \"%s\", \"nodes\": %u, "
                            "\"policy\": \"%s\", \"hit_rate\": %.6f, "
                            "\"hit_pages\": %" PRIu64 ", \"total_pages\": %"
                            PRIu64 ", \"max_over_mean\": %.4f, \"requests\": [",
                            first ? "" : ",", t->name, nn, POL_NAME[pol], hr,
                            r.hit, r.total, r.max_over_mean);
                    for (uint32_t n = 0; n < nn; n++)
                        fprintf(jf, "%s%" PRIu64, n ? ", " : "", r.req[n]);
                    fprintf(jf, "]}");
                    first = 0;
                }
                fflush(stdout);
            }
        tr_trace_free(t);
    }
    if (jf) {
        fprintf(jf, "\n]}\n");
        fclose(jf);
    }
    if (mf)
        fclose(mf);
    return failed;
}

/*
 * bench/trace_replay/belady.c - Belady's offline optimum (MIN), adapted to a
 * prefix tree.
 *
 * Classic MIN evicts the cached item whose next use lies furthest in the
 * future.  In a prefix tree only leaves may go (a cached prefix has no hole),
 * and every request that uses a page also uses all the pages above it, so
 * next use can only grow going down a path:
 *
 *        root                     next(p) = the next request that uses p
 *         |                                (TR_NEVER if none)
 *         A  next 7
 *        / \                      next(parent) <= next(child), always:
 *  next 9 B   C next 12           a request reaching C passes through A.
 *       |
 *       D  next never             The largest (next, depth) among the
 *                                 unpinned cached pages is therefore a leaf
 *                                 (here D, then C, then B...).
 *
 * So one max-heap over ALL unpinned cached pages keyed (next, depth) gives
 * the victim in O(log n), without tracking which pages are leaves: the
 * maximum's children, if any were cached, would have a key at least as large
 * and a greater depth.  (Pinned pages are a prefix of the current request and
 * sit above everything else, so the argument holds with pins too.)
 *
 * Per request, the same steps as the real cache (trace.h): the m cached
 * leading pages hit and are pinned (taken out of the heap), then
 * k = min(n - m, capacity - m) pages are needed: pop the largest keys until
 * k are free, insert the first k missing pages, and put the request's m + k
 * pages back into the heap with their next use after this request.
 *
 * Ties: equal finite next uses only happen along one path (one request uses
 * them all), where the deeper goes first; pages never used again are
 * interchangeable.  The hit count does not depend on how ties break.
 */
#include <stdlib.h>
#include <string.h>

#include "bench/common/report.h"
#include "bench/trace_replay/trace.h"

typedef struct heap {
    uint32_t *h;   /* page ids, a max-heap on key[]           */
    uint32_t *pos; /* index in h, TR_NO_PAGE when not in heap */
    uint64_t *key; /* (next << 32) | depth                    */
    size_t n;
} heap;

static inline int above(const heap *H, uint32_t a, uint32_t b)
{
    return H->key[a] > H->key[b];
}

static void sift_up(heap *H, size_t i)
{
    uint32_t x = H->h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!above(H, x, H->h[p]))
            break;
        H->h[i] = H->h[p];
        H->pos[H->h[i]] = (uint32_t)i;
        i = p;
    }
    H->h[i] = x;
    H->pos[x] = (uint32_t)i;
}

static void sift_down(heap *H, size_t i)
{
    uint32_t x = H->h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= H->n)
            break;
        if (c + 1 < H->n && above(H, H->h[c + 1], H->h[c]))
            c++;
        if (!above(H, H->h[c], x))
            break;
        H->h[i] = H->h[c];
        H->pos[H->h[i]] = (uint32_t)i;
        i = c;
    }
    H->h[i] = x;
    H->pos[x] = (uint32_t)i;
}

static void heap_push(heap *H, uint32_t id)
{
    H->h[H->n] = id;
    sift_up(H, H->n++);
}

static void heap_remove(heap *H, uint32_t id)
{
    size_t i = H->pos[id];
    H->pos[id] = TR_NO_PAGE;
    uint32_t last = H->h[--H->n];
    if (i == H->n)
        return;
    H->h[i] = last;
    H->pos[last] = (uint32_t)i;
    sift_up(H, i);
    sift_down(H, H->pos[last]);
}

static uint32_t heap_pop(heap *H)
{
    uint32_t top = H->h[0];
    heap_remove(H, top);
    return top;
}

/* Every invariant, from scratch (the check mode and the tests). */
static int check_state(const tr_trace *t, const heap *H, const uint8_t *cached,
                       const uint32_t *kids, uint64_t used)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < t->n_distinct; i++) {
        if (!cached[i]) {
            if (H->pos[i] != TR_NO_PAGE)
                return PC_E_CORRUPT;
            continue;
        }
        n++;
        if (t->parent[i] != TR_NO_PAGE && !cached[t->parent[i]])
            return PC_E_CORRUPT; /* a hole in a cached prefix */
        if (H->pos[i] == TR_NO_PAGE || H->h[H->pos[i]] != i)
            return PC_E_CORRUPT; /* between requests nothing is pinned */
    }
    if (n != used || H->n != used)
        return PC_E_CORRUPT;
    for (size_t i = 1; i < H->n; i++)
        if (above(H, H->h[i], H->h[(i - 1) / 2]))
            return PC_E_CORRUPT;
    uint32_t *k = calloc((size_t)t->n_distinct + 1, sizeof(*k));
    if (!k)
        return PC_E_NOMEM;
    for (uint32_t i = 0; i < t->n_distinct; i++)
        if (cached[i] && t->parent[i] != TR_NO_PAGE)
            k[t->parent[i]]++;
    int rc = memcmp(k, kids, t->n_distinct * sizeof(*k)) ? PC_E_CORRUPT : 0;
    free(k);
    return rc;
}

int tr_replay_belady(const tr_trace *t, uint64_t capacity, bool check,
                     uint32_t *per_req_hits, tr_result *out)
{
    if (!t || !out || capacity < 1)
        return PC_E_INVAL;
    memset(out, 0, sizeof(*out));
    uint64_t t0 = bench_now_ns();
    size_t nd = (size_t)t->n_distinct + 1;
    heap H = {0};
    H.h = malloc(nd * sizeof(*H.h));
    H.pos = malloc(nd * sizeof(*H.pos));
    H.key = malloc(nd * sizeof(*H.key));
    uint8_t *cached = calloc(nd, 1);
    uint32_t *kids = calloc(nd, sizeof(*kids)); /* cached children */
    int rc = 0;
    if (!H.h || !H.pos || !H.key || !cached || !kids) {
        rc = PC_E_NOMEM;
        goto out;
    }
    memset(H.pos, 0xff, nd * sizeof(*H.pos));
    uint64_t used = 0;
    for (size_t r = 0; r < t->n_req; r++) {
        const tr_request *q = &t->req[r];
        const uint32_t *pid = t->pid + q->occ;
        const uint32_t *nxt = t->next + q->occ;
        uint32_t n = q->n_pages, m = 0;
        while (m < n && cached[pid[m]])
            m++;
        for (uint32_t j = 0; j < m; j++) /* pin */
            heap_remove(&H, pid[j]);
        uint64_t k = n - m;
        if (k > capacity - m) { /* m <= capacity: m pages are cached */
            k = capacity - m;
            out->truncated++;
        }
        while (used + k > capacity) {
            uint32_t v = heap_pop(&H);
            if (kids[v]) { /* cannot happen: see the top of this file */
                rc = PC_E_CORRUPT;
                goto out;
            }
            cached[v] = 0;
            if (t->parent[v] != TR_NO_PAGE)
                kids[t->parent[v]]--;
            used--;
            out->evicted_pages++;
        }
        for (uint32_t j = m; j < m + k; j++) {
            cached[pid[j]] = 1;
            if (t->parent[pid[j]] != TR_NO_PAGE)
                kids[t->parent[pid[j]]]++;
        }
        used += k;
        out->inserted_pages += k;
        for (uint32_t j = 0; j < m + k; j++) { /* unpin, with the new keys */
            H.key[pid[j]] = ((uint64_t)nxt[j] << 32) | t->depth[pid[j]];
            heap_push(&H, pid[j]);
        }
        out->hit_pages += m;
        out->total_pages += n;
        if (per_req_hits)
            per_req_hits[r] = m;
        if (check && (rc = check_state(t, &H, cached, kids, used)))
            goto out;
    }
    rc = check_state(t, &H, cached, kids, used);
out:
    out->seconds = (double)(bench_now_ns() - t0) / 1e9;
    free(H.h);
    free(H.pos);
    free(H.key);
    free(cached);
    free(kids);
    return rc;
}

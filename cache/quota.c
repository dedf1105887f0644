/*
 * cache/quota.c - namespace quotas and reserved minimums by pattern.
 * (Patterns below are shown as tenant-a/STAR: a star and a slash would
 * end this comment.)
 *
 *   rules (in order)            namespaces seen (by 64-bit hash)
 *   "tenant-a/STAR" max 400      ├─ "tenant-a/chat"  → rule 0: limits set
 *   "batch-STAR"  max 50 min 0   ├─ "batch-7"        → rule 1: limits set
 *   "STAR"        min 20         └─ "other"          → rule 2 (reserve 20)
 *        │
 *        └─► pc_radix_set_ns_limits(ns, min, max) for each namespace the
 *            first time it is inserted into (or when the rules change, for
 *            every namespace cached then): radix enforces them by eviction
 *
 * Why patterns live here and not in radix/: the tree keeps exact limits
 * per namespace (cheap to enforce); which namespace gets which is policy.
 * A pattern is an fnmatch(3) glob over the namespace as text (a namespace
 * with a NUL byte is matched up to it); the first rule that matches wins.
 * Reserves are per namespace: their sum over the namespaces that have one
 * may not exceed the pool, so a rule set is refused whole when the
 * namespaces cached now (and one per rule that matches none yet) would
 * need more, and a namespace that appears later gets what is left of its
 * reserve (counted in quota.reserve_trimmed).
 */
#include "cache/quota.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

typedef struct rule {
    char pattern[PC_NS_MAX + 1];
    uint64_t max, min;
} rule;

struct pc_quota {
    rule *rules;
    size_t n;
    uint32_t capacity;
    uint64_t *seen; /* hashes of namespaces evaluated (0: empty slot) */
    size_t seen_cap, seen_n;
    uint64_t reserved;  /* sum of the reserves applied                 */
    uint32_t limited;   /* namespaces given limits (radix entries)     */
    uint64_t trimmed;
};

static uint64_t ns_key(const void *ns, size_t len)
{
    return XXH3_64bits(len ? ns : "", len) | 1;
}

/* The first rule ns matches, or NULL. */
static const rule *match(const pc_quota *q, const void *ns, size_t len)
{
    char text[PC_NS_MAX + 1];
    memcpy(text, len ? ns : "", len);
    text[len] = 0;
    for (size_t i = 0; i < q->n; i++)
        if (fnmatch(q->rules[i].pattern, text, 0) == 0)
            return &q->rules[i];
    return NULL;
}

/* Mark key seen; false when it was already, or when there is no memory
 * (the namespace is then looked at again next time). */
static bool seen_add(pc_quota *q, uint64_t key)
{
    if (2 * (q->seen_n + 1) > q->seen_cap) {
        size_t cap = q->seen_cap ? 2 * q->seen_cap : 64;
        uint64_t *s = calloc(cap, sizeof(*s));
        if (!s)
            return false;
        for (size_t i = 0; i < q->seen_cap; i++)
            if (q->seen[i]) {
                size_t j = q->seen[i] & (cap - 1);
                while (s[j])
                    j = (j + 1) & (cap - 1);
                s[j] = q->seen[i];
            }
        free(q->seen);
        q->seen = s;
        q->seen_cap = cap;
    }
    size_t j = key & (q->seen_cap - 1);
    while (q->seen[j] && q->seen[j] != key)
        j = (j + 1) & (q->seen_cap - 1);
    if (q->seen[j])
        return false;
    q->seen[j] = key;
    q->seen_n++;
    return true;
}

/* Give ns the limits of its rule (room reserved by the caller). */
static void apply(pc_quota *q, pc_radix *t, const void *ns, size_t len)
{
    const rule *r = match(q, ns, len);
    if (!r || (!r->max && !r->min))
        return;
    uint64_t min = r->min, left = q->capacity - q->reserved;
    if (min > left) {
        min = left;
        q->trimmed++;
    }
    if (pc_radix_set_ns_limits(t, ns, len, min, r->max) == 0) {
        q->reserved += min;
        q->limited++;
    }
}

void pc_quota_before_insert(pc_quota *q, pc_radix *t, const void *ns,
                            size_t ns_len)
{
    if (!q || !q->n)
        return;
    uint64_t key = ns_key(ns, ns_len);
    /* radix keeps room for limited + 1 entries: the set that fails (no
     * memory) leaves the namespace unlimited and unseen, to retry */
    if (!seen_add(q, key))
        return;
    if (pc_radix_reserve_ns_limits(t, q->limited + 1) == 0)
        apply(q, t, ns, ns_len);
}

/* ---- replacing the rules ------------------------------------------------------ */

typedef struct ns_list {
    pc_quota *q;
    char (*ns)[PC_NS_MAX];
    uint32_t *len;
    size_t n, cap;
    uint64_t need; /* reserves the cached namespaces would take */
    bool nomem;
} ns_list;

/* Each cached namespace once (its root is visited first). */
static int collect(void *ctx, const void *ns, size_t ns_len,
                   const pc_radix_node *node, const uint32_t *blocks,
                   uint32_t npages)
{
    (void)node, (void)blocks, (void)npages;
    ns_list *L = ctx;
    if (!seen_add(L->q, ns_key(ns, ns_len)))
        return 0; /* another node of a namespace listed already */
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 16;
        void *a = realloc(L->ns, cap * sizeof(*L->ns));
        if (a)
            L->ns = a;
        void *b = a ? realloc(L->len, cap * sizeof(*L->len)) : NULL;
        if (!a || !b) {
            L->nomem = true;
            return PC_E_NOMEM;
        }
        L->len = b;
        L->cap = cap;
    }
    memcpy(L->ns[L->n], ns, ns_len);
    L->len[L->n++] = (uint32_t)ns_len;
    const rule *r = match(L->q, ns, ns_len);
    L->need += r ? r->min : 0;
    return 0;
}

int pc_quota_set(pc_quota **qp, pc_radix *t, uint32_t capacity,
                 const pc_cache_quota *v, size_t n, char *why, size_t wl)
{
    pc_quota *q = calloc(1, sizeof(*q));
    if (!q || (n && !(q->rules = calloc(n, sizeof(*q->rules))))) {
        free(q);
        return PC_E_NOMEM;
    }
    q->n = n;
    q->capacity = capacity;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rule *r = &q->rules[i];
        size_t pl = v[i].pattern ? strlen(v[i].pattern) : 0;
        if (!pl || pl > PC_NS_MAX)
            rc = PC_E_INVAL, snprintf(why, wl, "quota rule %zu: a pattern of "
                                      "1 to %d bytes", i, PC_NS_MAX);
        else if (v[i].max_pages && v[i].min_pages > v[i].max_pages)
            rc = PC_E_INVAL, snprintf(why, wl, "quota rule '%s': reserve %"
                                      PRIu64 " above its maximum %" PRIu64,
                                      v[i].pattern, v[i].min_pages, v[i].max_pages);
        else if (v[i].max_pages > UINT32_MAX || v[i].min_pages > capacity)
            rc = PC_E_RANGE, snprintf(why, wl, "quota rule '%s': %" PRIu64
                                      " pages, the pool holds %u", v[i].pattern,
                                      v[i].max_pages > UINT32_MAX ? v[i].max_pages : v[i].min_pages,
                                      capacity);
        else {
            memcpy(r->pattern, v[i].pattern, pl + 1);
            r->max = v[i].max_pages;
            r->min = v[i].min_pages;
        }
    }
    ns_list L = {q, NULL, NULL, 0, 0, 0, false};
    if (!rc && n) {
        rc = pc_radix_foreach(t, collect, &L);
        if (L.nomem)
            rc = PC_E_NOMEM;
    }
    if (!rc) {
        /* a rule no cached namespace matches yet counts once */
        uint64_t need = L.need;
        for (size_t i = 0; i < n; i++) {
            bool used = false;
            for (size_t k = 0; k < L.n && !used; k++)
                used = match(q, L.ns[k], L.len[k]) == &q->rules[i];
            need += used ? 0 : q->rules[i].min;
        }
        if (need > capacity)
            rc = PC_E_NOSPACE, snprintf(why, wl, "quota rules: their reserves "
                                        "need %" PRIu64 " pages, the pool holds "
                                        "%u", need, capacity);
    }
    if (!rc && (rc = pc_radix_reserve_ns_limits(t, (uint32_t)(L.n + 1))))
        snprintf(why, wl, "quota rules: %s", pc_strerror(rc));
    if (rc) {
        free(L.ns), free(L.len);
        pc_quota_free(q);
        return rc;
    }
    /* cannot fail from here: room reserved */
    pc_radix_clear_ns_limits(t);
    for (size_t k = 0; k < L.n; k++) /* marked seen by collect */
        apply(q, t, L.ns[k], L.len[k]);
    free(L.ns), free(L.len);
    pc_quota_free(*qp);
    *qp = q;
    return 0;
}

void pc_quota_free(pc_quota *q)
{
    if (!q)
        return;
    free(q->rules);
    free(q->seen);
    free(q);
}

void pc_quota_stats_visit(const pc_quota *q, pc_stat_fn fn, void *ctx)
{
    fn(ctx, "quota.rules", q ? q->n : 0);
    fn(ctx, "quota.namespaces", q ? q->limited : 0);
    fn(ctx, "quota.reserved_pages", q ? q->reserved : 0);
    fn(ctx, "quota.reserve_trimmed", q ? q->trimmed : 0);
}

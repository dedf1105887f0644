/*
 * cache/metrics.c - the cache's counters for dashboards: lookups per
 * namespace with bounded cardinality, refusals by reason, flush evictions.
 *
 * Per namespace, with a hard cap and every series monotonic:
 *
 *   lookup(ns) ──► one of the series (<= 16)? ── yes ──► its counters
 *                    │ no
 *                    ▼
 *                  "other"'s counters
 *                  candidates (64 slots, Space-Saving counts):
 *                    known: count + 1; a free slot: count 1;
 *                    full: the least counted slot is taken over, count + 1
 *                  32 lookups surely its own (count - the count it
 *                  inherited) and a series free ──► promoted: its own
 *                    series from now on, for the daemon's life
 *
 * Why this scheme: Prometheus wants every series to only grow, so a
 * namespace may never give its series back (its counters would vanish or
 * restart) and "other" may never shrink; and an unbounded label set would
 * swamp the time-series database.  So the first 16 namespaces that reach
 * 32 lookups while in the candidate table (heavy namespaces get there
 * first and are never the least counted, so never lose their slot; a
 * stream of one-off namespaces never gets there, since only lookups
 * counted after taking a slot over count) keep a series; all
 * other traffic, including a promoted namespace's lookups before its
 * promotion, stays in "other".  The sum over the series is the total.
 * Cost: a hash and a scan of at most 16 series per lookup, plus at most
 * 64 candidates while series are still free. *
 * Storage tiers: tier 1 is the pool; tier 2 (cache/tier.c) counts the
 * pages a lookup finds there after the pool's match (what a promote would
 * bring back).  A miss is a page of no tier.  Another tier would be two
 * more counters here, fed by the lookup hook, and two rows in
 * daemon/metrics.c's ROWS with its tier label.
 */
#include "cache/metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/errors.h"
#include "proto/limits.h"

#define NS_CANDIDATES 64

/* Per namespace.  Hits per storage tier: a tier is a pair of rows here
 * (and a pair in daemon/metrics.c's ROWS, with its tier label). */
enum {
    C_LOOKUPS, C_MISS_TOKENS, C_MISS_PAGES,
    C_HIT_TOKENS_T1, C_HIT_PAGES_T1, C_HIT_TOKENS_T2, C_HIT_PAGES_T2, C_N
};
static const char *const counter_names[C_N] = {
    "lookups", "miss_tokens", "miss_pages", "hit_tokens.tier1",
    "hit_pages.tier1", "hit_tokens.tier2", "hit_pages.tier2"};
static const char *const other_names[C_N] = {
    "ns_other.lookups", "ns_other.miss_tokens", "ns_other.miss_pages",
    "ns_other.hit_tokens.tier1", "ns_other.hit_pages.tier1",
    "ns_other.hit_tokens.tier2", "ns_other.hit_pages.tier2"};

/* Refusal reasons with a counter of their own; anything else: "other". */
#define REFUSALS(X)                                                            \
    X(NOSPACE, "cache.refused.nospace")                                        \
    X(LIMIT, "cache.refused.limit")                                            \
    X(LEASE, "cache.refused.lease")                                            \
    X(PERM, "cache.refused.perm")                                              \
    X(RANGE, "cache.refused.range")
#define R_ENUM(code, name) R_##code,
enum { REFUSALS(R_ENUM) R_OTHER, R_N };
#undef R_ENUM

typedef struct series {
    uint64_t hash;
    size_t len;
    unsigned char ns[PC_NS_MAX];
    uint64_t v[C_N];
    char *name[C_N]; /* "ns.<counter>.<display>" */
} series;

typedef struct candidate {
    uint64_t hash, count;
    uint64_t base; /* the count inherited on taking a slot over: count -
                      base lookups are surely this namespace's own */
    size_t len;
    unsigned char ns[PC_NS_MAX];
} candidate;

struct pc_cache_metrics {
    series s[PC_CACHE_NS_SERIES_MAX];
    unsigned n;
    uint64_t other[C_N];
    candidate cand[NS_CANDIDATES];
    unsigned ncand;
    uint64_t refused[R_N];
    uint64_t evictions_flush;
};

int pc_cache_metrics_create(pc_cache_metrics **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : PC_E_NOMEM;
}

void pc_cache_metrics_destroy(pc_cache_metrics *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < m->n; i++)
        for (int c = 0; c < C_N; c++)
            free(m->s[i].name[c]);
    free(m);
}

char *pc_cache_ns_display(const void *ns, size_t ns_len, char *buf)
{
    const unsigned char *p = ns;
    bool plain = ns_len > 0 && p[0] != '(' &&
                 !(ns_len >= 2 && p[0] == '0' && p[1] == 'x');
    for (size_t i = 0; plain && i < ns_len; i++)
        plain = p[i] >= 0x20 && p[i] <= 0x7e;
    if (plain) {
        memcpy(buf, p, ns_len);
        buf[ns_len] = 0;
        return buf;
    }
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    buf[o++] = '0';
    buf[o++] = 'x';
    for (size_t i = 0; i < ns_len; i++) {
        buf[o++] = hex[p[i] >> 4];
        buf[o++] = hex[p[i] & 15];
    }
    buf[o] = 0;
    return buf;
}

static uint64_t ns_hash(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: short keys, no library */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static bool same(uint64_t h, size_t len, const unsigned char *ns, uint64_t h2,
                 size_t len2, const unsigned char *ns2)
{
    return h == h2 && len == len2 && memcmp(ns, ns2, len) == 0;
}

/* Give candidate i a series; false (it stays a candidate) without memory. */
static bool promote(pc_cache_metrics *m, unsigned i)
{
    candidate *cd = &m->cand[i];
    series *s = &m->s[m->n];
    char disp[2 * PC_NS_MAX + 3];
    pc_cache_ns_display(cd->ns, cd->len, disp);
    memset(s, 0, sizeof(*s));
    for (int c = 0; c < C_N; c++) {
        size_t len = strlen(disp) + strlen(counter_names[c]) + 5;
        if (!(s->name[c] = malloc(len))) {
            for (int k = 0; k < c; k++)
                free(s->name[k]);
            return false;
        }
        snprintf(s->name[c], len, "ns.%s.%s", counter_names[c], disp);
    }
    s->hash = cd->hash;
    s->len = cd->len;
    memcpy(s->ns, cd->ns, cd->len);
    m->n++;
    m->cand[i] = m->cand[--m->ncand];
    return true;
}

/* Space-Saving: count ns among the candidates; promote when it qualifies. */
static void candidate_count(pc_cache_metrics *m, uint64_t h,
                            const unsigned char *ns, size_t len)
{
    unsigned i, min = 0;
    for (i = 0; i < m->ncand; i++) {
        if (same(h, len, ns, m->cand[i].hash, m->cand[i].len, m->cand[i].ns))
            break;
        if (m->cand[i].count < m->cand[min].count)
            min = i;
    }
    if (i == m->ncand) { /* new: a free slot, or the least counted one's */
        uint64_t base = 0;
        if (m->ncand < NS_CANDIDATES)
            i = m->ncand++;
        else
            base = m->cand[i = min].count;
        m->cand[i].hash = h;
        m->cand[i].len = len;
        m->cand[i].count = base;
        m->cand[i].base = base;
        memcpy(m->cand[i].ns, ns, len);
    }
    if (++m->cand[i].count - m->cand[i].base >= PC_CACHE_NS_PROMOTE_LOOKUPS)
        promote(m, i);
}

void pc_cache_metrics_lookup(pc_cache_metrics *m, const void *ns, size_t ns_len,
                             size_t n_tokens, size_t hit_tokens,
                             size_t hit_pages, size_t tier2_pages, uint32_t P)
{
    if (!m || ns_len > PC_NS_MAX || !P)
        return;
    const unsigned char *p = ns;
    uint64_t h = ns_hash(p, ns_len), *v = m->other;
    unsigned i;
    for (i = 0; i < m->n; i++)
        if (same(h, ns_len, p, m->s[i].hash, m->s[i].len, m->s[i].ns)) {
            v = m->s[i].v;
            break;
        }
    if (i == m->n && m->n < PC_CACHE_NS_SERIES_MAX)
        candidate_count(m, h, p, ns_len); /* counted in "other" this time */
    size_t pages = n_tokens / P, t2_tokens = tier2_pages * P;
    if (hit_pages + tier2_pages > pages) /* not expected: keep monotonic */
        tier2_pages = t2_tokens = 0;
    v[C_LOOKUPS]++;
    v[C_HIT_TOKENS_T1] += hit_tokens;
    v[C_HIT_PAGES_T1] += hit_pages;
    v[C_HIT_TOKENS_T2] += t2_tokens;
    v[C_HIT_PAGES_T2] += tier2_pages;
    v[C_MISS_TOKENS] += n_tokens - hit_tokens - t2_tokens;
    v[C_MISS_PAGES] += pages - hit_pages - tier2_pages;
}

void pc_cache_metrics_refused(pc_cache_metrics *m, int code)
{
    if (!m)
        return;
    switch (code) {
#define R_CASE(c, name) case PC_E_##c: m->refused[R_##c]++; break;
    REFUSALS(R_CASE)
#undef R_CASE
    default: m->refused[R_OTHER]++; break;
    }
}

void pc_cache_metrics_flushed(pc_cache_metrics *m, size_t pages)
{
    if (m)
        m->evictions_flush += pages;
}

void pc_cache_metrics_visit(const pc_cache_metrics *m, pc_stat_fn fn, void *ctx)
{
    if (!m)
        return;
#define R_VISIT(c, name) fn(ctx, name, m->refused[R_##c]);
    REFUSALS(R_VISIT)
#undef R_VISIT
    fn(ctx, "cache.refused.other", m->refused[R_OTHER]);
    fn(ctx, "cache.evictions_flush", m->evictions_flush);
    for (int c = 0; c < C_N; c++)
        fn(ctx, other_names[c], m->other[c]);
    for (unsigned i = 0; i < m->n; i++)
        for (int c = 0; c < C_N; c++)
            fn(ctx, m->s[i].name[c], m->s[i].v[c]);
}

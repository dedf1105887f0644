/*
 * tests/test_radix_prop.c - random operations against a naive reference.
 *
 * The model knows nothing about nodes.  Per namespace it keeps the set of
 * cached page-paths: a page is identified by the whole token prefix up to
 * and including it, and holds one block id.  Held locks are kept as the
 * page-path they protect.  Everything is a linear scan over small vectors.
 *
 * Operations (insert, match, match+SPLIT+lock, unlock, refused unlocks,
 * evict) run over 3 namespaces (the empty one, a text one and a binary one
 * that shares the text one's first bytes), for P in {1, 4, 16}, and random
 * per-namespace limits (quota and reserve, set and cleared now and then).
 * After every operation: pc_radix_check() == 0 and the counters agree with
 * the model (pages, tokens, protected/evictable/reserved pages, pages per
 * namespace, namespaces).  The model also proves the limits' rules: quota
 * evictions take only unlocked leaves of the inserting namespace off the
 * inserted path, and leave it at its quota unless nothing else there is
 * evictable; eviction for space never takes a namespace below its reserve
 * and frees exactly what the model says is evictable.
 *
 * Reproduce a failure with PC_PROP_SEED=<seed> (printed in every failure
 * message together with P and the op index); PC_PROP_OPS=<n> changes the
 * number of operations per P.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radix/radix.h"
#include "tests/harness/prng.h"

#define DEFAULT_SEED UINT64_C(0x5eed0f0ddba11)
#define DEFAULT_OPS 100000 /* per P: 3 x 100,000 = 300,000 operations */
#define MAX_PAGES 8        /* per generated sequence (+ a partial page) */
#define MAX_TOKENS ((MAX_PAGES + 1) * 16)
#define POOL 48      /* remembered sequences per namespace */
#define MAX_LOCKS 12 /* held locks at most */
#define SOFT_CAP 240 /* model pages: evict down to 2/3 of it */
#define ALPHABET 3u  /* tokens 0..2: plenty of accidental sharing */

/* ---- PRNG (tests/harness/prng.h) ----------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void) { return test_rng_next(&rng_state); }

/* uniform in [0, n) for n > 0 */
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }
static bool chance(unsigned pct) { return below(100) < pct; }

/* ---- failure reporting --------------------------------------------------- */

static struct {
    uint64_t seed; /* PC_PROP_SEED value (or the default) */
    uint32_t P;
    size_t op;
    const char *what; /* current operation */
    pc_radix *t;
    /* coverage counters, logged at the end of a run */
    size_t hits, locks, refused_extra, extra_ok, refused_ancestor, evict_calls,
        sum_pages, reserve_held; /* evict calls with a reserve holding pages */
} g;

#define PASSERT(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            char m_[512];                                                      \
            snprintf(m_, sizeof(m_), __VA_ARGS__);                             \
            if (g.t)                                                           \
                pc_radix_dump(g.t, stderr);                                    \
            cr_assert_fail("PC_PROP_SEED=%" PRIu64 " P=%u op=%zu (%s): %s "    \
                           "[%s] at line %d",                                  \
                           g.seed, g.P, g.op, g.what, m_, #cond, __LINE__);    \
        }                                                                      \
    } while (0)

/* ---- namespaces ---------------------------------------------------------- */

typedef struct nsdef {
    const char *bytes;
    size_t len;
} nsdef;

static const char ns_bin[] = {'m', 'o', 'd', 'e', 'l', 0, 'x'};
static const nsdef NS[] = {
    {"", 0},
    {"model", 5},
    {ns_bin, sizeof(ns_bin)}, /* "model\0x": same first 5 bytes */
};
#define N_NS ((int)(sizeof(NS) / sizeof(NS[0])))

/* ---- the model ----------------------------------------------------------- */

/* FNV-1a style hash of a namespace index and a token prefix. */
static uint64_t h_start(int ns)
{
    return UINT64_C(0xcbf29ce484222325) ^ (uint64_t)(ns + 1) * 0x100000001b3u;
}
static uint64_t h_step(uint64_t h, uint32_t tok)
{
    h ^= tok;
    h *= UINT64_C(0x100000001b3);
    h ^= h >> 29;
    return h;
}

/* hashes of every page prefix: ph[d] for the first d pages, d = 0..pages */
static void prefix_hashes(int ns, const uint32_t *tok, uint32_t pages,
                          uint32_t P, uint64_t *ph)
{
    uint64_t h = h_start(ns);
    ph[0] = h;
    for (uint32_t d = 0; d < pages; d++) {
        for (uint32_t i = 0; i < P; i++)
            h = h_step(h, tok[(size_t)d * P + i]);
        ph[d + 1] = h;
    }
}

typedef struct entry {
    int ns;
    uint32_t depth;  /* pages, >= 1 */
    uint64_t h;      /* hash of the path */
    uint64_t parent; /* hash of the path minus its last page */
    uint32_t *tok;   /* depth * P tokens */
    uint32_t block;
} entry;

typedef struct held {
    pc_radix_node *node;
    int ns;
    uint32_t pages;
    uint32_t *tok;              /* pages * P tokens */
    uint64_t ph[MAX_PAGES + 1]; /* prefix hashes */
} held;

typedef struct seq {
    uint32_t tok[MAX_TOKENS];
    uint32_t n;
} seq;

typedef struct model {
    uint32_t P;
    entry *e;
    size_t n, cap;
    held locks[MAX_LOCKS];
    size_t nlocks;
    seq pool[N_NS][POOL];
    uint32_t npool[N_NS];
    uint32_t next_block;
    uint32_t lmin[N_NS], lmax[N_NS]; /* limits in force; 0: none */
} model;

static bool same_path(const model *m, const entry *e, int ns, uint32_t depth,
                      uint64_t h, const uint32_t *tok)
{
    return e->ns == ns && e->depth == depth && e->h == h &&
           memcmp(e->tok, tok, (size_t)depth * m->P * sizeof(uint32_t)) == 0;
}

static entry *find_path(model *m, int ns, uint32_t depth, uint64_t h,
                        const uint32_t *tok)
{
    for (size_t i = 0; i < m->n; i++)
        if (same_path(m, &m->e[i], ns, depth, h, tok))
            return &m->e[i];
    return NULL;
}

static entry *find_block(model *m, uint32_t block)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].block == block)
            return &m->e[i];
    return NULL;
}

/* Longest cached prefix (pages) of tok, at most `pages`; ids to out. */
static uint32_t longest(model *m, int ns, const uint32_t *tok, uint32_t pages,
                        const uint64_t *ph, uint32_t *ids)
{
    uint32_t d = 0;
    while (d < pages) {
        entry *e = find_path(m, ns, d + 1, ph[d + 1], tok);
        if (!e)
            break;
        if (ids)
            ids[d] = e->block;
        d++;
    }
    return d;
}

static void add_entry(model *m, int ns, const uint32_t *tok, uint32_t depth,
                      const uint64_t *ph, uint32_t block)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 256;
        m->e = realloc(m->e, m->cap * sizeof(*m->e));
        cr_assert_not_null(m->e);
    }
    entry *e = &m->e[m->n++];
    e->ns = ns;
    e->depth = depth;
    e->h = ph[depth];
    e->parent = ph[depth - 1];
    e->tok = malloc((size_t)depth * m->P * sizeof(uint32_t));
    cr_assert_not_null(e->tok);
    memcpy(e->tok, tok, (size_t)depth * m->P * sizeof(uint32_t));
    e->block = block;
}

static void remove_entry(model *m, entry *e)
{
    free(e->tok);
    *e = m->e[--m->n];
}

/* Does held lock l protect page-path e? */
static bool lock_covers(const model *m, const held *l, const entry *e)
{
    return l->ns == e->ns && l->pages >= e->depth && l->ph[e->depth] == e->h &&
           memcmp(l->tok, e->tok, (size_t)e->depth * m->P * sizeof(uint32_t)) ==
               0;
}

static bool is_protected(const model *m, const entry *e)
{
    for (size_t i = 0; i < m->nlocks; i++)
        if (lock_covers(m, &m->locks[i], e))
            return true;
    return false;
}

static bool has_child(const model *m, const entry *e)
{
    for (size_t i = 0; i < m->n; i++) {
        const entry *f = &m->e[i];
        if (f->ns == e->ns && f->depth == e->depth + 1 && f->parent == e->h &&
            memcmp(f->tok, e->tok,
                   (size_t)e->depth * m->P * sizeof(uint32_t)) == 0)
            return true;
    }
    return false;
}

static size_t count_protected(const model *m)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        k += is_protected(m, &m->e[i]);
    return k;
}

/* Pages of namespace ns, and how many of them are unlocked. */
static void ns_count(const model *m, int ns, size_t *pages, size_t *unlocked)
{
    *pages = *unlocked = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].ns == ns) {
            ++*pages;
            *unlocked += !is_protected(m, &m->e[i]);
        }
}

/* What eviction for space may take from ns: its unlocked pages, down to
 * its reserve. */
static size_t ns_avail_model(const model *m, int ns)
{
    size_t n, u;
    ns_count(m, ns, &n, &u);
    size_t room = n > m->lmin[ns] ? n - m->lmin[ns] : 0;
    return m->lmin[ns] && room < u ? room : u;
}

static size_t avail_model(const model *m)
{
    size_t a = 0;
    for (int ns = 0; ns < N_NS; ns++)
        a += ns_avail_model(m, ns);
    return a;
}

/* Held locks whose path extends the d-page path `tok` (lock_ref of the node
 * that ends there). */
static uint32_t locks_below(const model *m, int ns, const uint32_t *tok,
                            uint32_t d, const uint64_t *ph)
{
    uint32_t k = 0;
    for (size_t i = 0; i < m->nlocks; i++) {
        const held *l = &m->locks[i];
        k += l->ns == ns && l->pages >= d && l->ph[d] == ph[d] &&
             memcmp(l->tok, tok, (size_t)d * m->P * sizeof(uint32_t)) == 0;
    }
    return k;
}

/* Held locks on exactly this node (its own lock count). */
static uint32_t locks_on(const model *m, const pc_radix_node *n)
{
    uint32_t k = 0;
    for (size_t i = 0; i < m->nlocks; i++)
        k += m->locks[i].node == n;
    return k;
}

static void drop_lock(model *m, size_t i)
{
    free(m->locks[i].tok);
    m->locks[i] = m->locks[--m->nlocks];
}

/* ---- sequence generation ------------------------------------------------- */

/* Mostly an extension of a remembered sequence (a random prefix of it, cut
 * on or off a page boundary, plus random tokens), else fresh random tokens.
 * Lengths up to MAX_PAGES pages, sometimes with a trailing partial page. */
static void gen(model *m, int ns, seq *s, bool remember)
{
    uint32_t P = m->P, n = 0;
    if (m->npool[ns] && chance(80)) {
        const seq *b = &m->pool[ns][below(m->npool[ns])];
        uint32_t cut = below(b->n + 1);
        if (chance(50))
            cut -= cut % P;
        memcpy(s->tok, b->tok, cut * sizeof(uint32_t));
        n = cut;
    }
    uint32_t want = below(MAX_PAGES + 1) * P;
    if (P > 1 && chance(30))
        want += 1 + below(P - 1);
    if (chance(50) && want < n) /* sometimes keep the whole base */
        want = n;
    if (want > MAX_PAGES * P + P - 1)
        want = MAX_PAGES * P + P - 1;
    if (want < n)
        n = want; /* truncate the base */
    while (n < want)
        s->tok[n++] = below(ALPHABET);
    s->n = n;

    /* remember it (inserted sequences: they are the ones worth extending) */
    if (!remember)
        return;
    if (m->npool[ns] < POOL)
        m->pool[ns][m->npool[ns]++] = *s;
    else
        m->pool[ns][below(POOL)] = *s;
}

/* ---- checks after every operation ---------------------------------------- */

static void check_all(model *m)
{
    int rc = pc_radix_check(g.t);
    PASSERT(rc == 0, "pc_radix_check() = %s", pc_errname(rc));
    pc_radix_stats s;
    pc_radix_stats_get(g.t, &s);
    size_t prot = count_protected(m);
    PASSERT(s.pages == m->n, "stats.pages %" PRIu64 " != model %zu", s.pages,
            m->n);
    PASSERT(s.tokens == (uint64_t)m->n * m->P, "stats.tokens %" PRIu64,
            s.tokens);
    PASSERT(s.protected_pages == prot,
            "stats.protected_pages %" PRIu64 " != model %zu", s.protected_pages,
            prot);
    size_t avail = avail_model(m);
    PASSERT(s.evictable_pages == avail,
            "stats.evictable_pages %" PRIu64 " != model %zu", s.evictable_pages,
            avail);
    PASSERT(s.reserved_pages == m->n - prot - avail,
            "stats.reserved_pages %" PRIu64 " != model %zu", s.reserved_pages,
            m->n - prot - avail);
    for (int ns = 0; ns < N_NS; ns++) {
        size_t n, u;
        uint64_t got = UINT64_MAX;
        ns_count(m, ns, &n, &u);
        int rc2 = pc_radix_ns_pages(g.t, NS[ns].bytes, NS[ns].len, &got);
        PASSERT(rc2 == 0 && got == n, "ns %d pages %" PRIu64 " != model %zu",
                ns, got, n);
    }
    uint64_t nns = 0;
    for (int ns = 0; ns < N_NS; ns++) {
        bool any = false;
        for (size_t i = 0; i < m->n && !any; i++)
            any = m->e[i].ns == ns;
        nns += any;
    }
    PASSERT(s.namespaces == nns,
            "stats.namespaces %" PRIu64 " != model %" PRIu64, s.namespaces,
            nns);
    PASSERT(s.nodes <= s.pages, "more nodes (%" PRIu64 ") than pages", s.nodes);
}

static pc_radix_stats stats_now(void)
{
    pc_radix_stats s;
    pc_radix_stats_get(g.t, &s);
    return s;
}

static void assert_stats_same(const pc_radix_stats *a)
{
    pc_radix_stats b = stats_now();
    PASSERT(memcmp(a, &b, sizeof(b)) == 0, "a refused call changed the stats");
}

/* ---- quota evictions ------------------------------------------------------ */

/* What the quota hook may take: leaves of namespace ns, unlocked, not on
 * the path tok[0 .. pages * P) (the inserting call's; pages 0: none). */
static struct {
    model *m;
    int ns;
    const uint32_t *tok;
    uint32_t pages;
    size_t count;
    char err[256];
} qh;

static bool on_path(const model *m, const entry *e, int ns,
                    const uint32_t *tok, uint32_t pages)
{
    return e->ns == ns && e->depth <= pages &&
           memcmp(e->tok, tok, (size_t)e->depth * m->P * sizeof(uint32_t)) == 0;
}

static void on_quota_evict(void *ctx, uint32_t block)
{
    (void)ctx;
    qh.count++;
    if (qh.err[0])
        return;
    entry *e = qh.m ? find_block(qh.m, block) : NULL;
    if (!qh.m)
        snprintf(qh.err, sizeof(qh.err), "quota eviction of %u outside an "
                 "insert or a limit change", block);
    else if (!e)
        snprintf(qh.err, sizeof(qh.err), "quota evicted block %u, not cached",
                 block);
    else if (e->ns != qh.ns)
        snprintf(qh.err, sizeof(qh.err), "quota of ns %d evicted block %u of "
                 "ns %d", qh.ns, block, e->ns);
    else if (is_protected(qh.m, e))
        snprintf(qh.err, sizeof(qh.err), "quota evicted locked block %u",
                 block);
    else if (has_child(qh.m, e))
        snprintf(qh.err, sizeof(qh.err), "quota evicted block %u with a "
                 "cached child", block);
    else if (on_path(qh.m, e, qh.ns, qh.tok, qh.pages))
        snprintf(qh.err, sizeof(qh.err), "quota evicted block %u on the "
                 "inserted path", block);
    else
        remove_entry(qh.m, e);
}

static void quota_begin(model *m, int ns, const uint32_t *tok, uint32_t pages)
{
    qh.m = m;
    qh.ns = ns;
    qh.tok = tok;
    qh.pages = pages;
    qh.count = 0;
    qh.err[0] = 0;
}

/* After a quota could act on ns: no violation, and ns at its quota unless
 * all that is left above it is locked or on the protected path. */
static void quota_end(model *m, int ns, const uint32_t *tok, uint32_t pages)
{
    PASSERT(qh.err[0] == 0, "%s", qh.err);
    qh.m = NULL;
    size_t n, u;
    ns_count(m, ns, &n, &u);
    if (!m->lmax[ns] || n <= m->lmax[ns])
        return;
    for (size_t i = 0; i < m->n; i++) {
        const entry *e = &m->e[i];
        PASSERT(e->ns != ns || is_protected(m, e) || on_path(m, e, ns, tok, pages),
                "ns %d holds %zu pages > quota %u with block %u evictable", ns,
                n, m->lmax[ns], e->block);
    }
}

/* ---- operations ---------------------------------------------------------- */

static void op_insert(model *m)
{
    g.what = "insert";
    int ns = (int)below(N_NS);
    seq s;
    gen(m, ns, &s, true);
    uint32_t P = m->P, pages = s.n / P;
    uint64_t ph[MAX_PAGES + 2];
    uint32_t want[MAX_PAGES + 1], blocks[MAX_PAGES + 1], canon[MAX_PAGES + 1];
    prefix_hashes(ns, s.tok, pages, P, ph);
    uint32_t c = longest(m, ns, s.tok, pages, ph, want);
    for (uint32_t i = 0; i < pages; i++) {
        blocks[i] = m->next_block++;
        canon[i] = UINT32_MAX;
    }
    bool want_canon = chance(85);

    pc_radix_insert_result r;
    quota_begin(m, ns, s.tok, pages);
    int rc = pc_radix_insert(g.t, NS[ns].bytes, NS[ns].len, s.tok, s.n, blocks,
                             want_canon ? canon : NULL, &r);
    PASSERT(rc == 0, "insert n=%u: %s", s.n, pc_errname(rc));
    PASSERT(qh.err[0] == 0, "%s", qh.err);
    qh.m = NULL;
    PASSERT(r.cached_tokens == (size_t)c * P,
            "cached_tokens %zu, model has %u pages", r.cached_tokens, c);
    PASSERT(r.inserted_pages == pages - c, "inserted_pages %zu, want %u",
            r.inserted_pages, pages - c);
    for (uint32_t i = 0; want_canon && i < pages; i++) {
        uint32_t w = i < c ? want[i] : blocks[i];
        PASSERT(canon[i] == w, "canon[%u] = %u, want %u (cached %u)", i,
                canon[i], w, c);
    }
    PASSERT((r.node == NULL) == (pages == 0), "node %p for %u pages",
            (void *)r.node, pages);
    if (r.node) {
        size_t d = pc_radix_node_depth_pages(r.node);
        PASSERT(d == pages, "insert handle depth %zu, want %u", d, pages);
    }
    for (uint32_t i = c; i < pages; i++)
        add_entry(m, ns, s.tok, i + 1, ph, blocks[i]);
    if (r.node) {
        uint32_t lr = pc_radix_node_lock_ref(r.node);
        uint32_t want_lr = locks_below(m, ns, s.tok, pages, ph);
        PASSERT(lr == want_lr, "insert handle lock_ref %u, want %u", lr,
                want_lr);
    }
    if (pages) /* an insert without a full page changes nothing */
        quota_end(m, ns, s.tok, pages);
}

/* A match of a generated sequence; returns the handle (SPLIT: exact). */
static pc_radix_node *do_match(model *m, int ns, const seq *s, unsigned flags,
                               uint32_t *pages_out, uint64_t *ph)
{
    uint32_t P = m->P, pages = s->n / P;
    uint32_t want[MAX_PAGES + 1], got[MAX_PAGES + 2];
    prefix_hashes(ns, s->tok, pages, P, ph);
    uint32_t c = longest(m, ns, s->tok, pages, ph, want);
    /* the buffer: usually big enough, sometimes capped, sometimes absent */
    uint32_t *buf = got;
    size_t cap = MAX_PAGES + 2;
    unsigned mode = below(10);
    if (mode == 0)
        buf = NULL, cap = below(4); /* cap ignored without a buffer */
    else if (mode == 1)
        cap = below(MAX_PAGES + 1);
    uint32_t expect = buf && c > cap ? (uint32_t)cap : c;
    for (size_t i = 0; i < MAX_PAGES + 2; i++)
        got[i] = UINT32_MAX - 1;

    pc_radix_match_result r;
    int rc = pc_radix_match(g.t, NS[ns].bytes, NS[ns].len, s->tok, s->n, buf,
                            cap, flags, &r);
    PASSERT(rc == 0, "match: %s", pc_errname(rc));
    PASSERT(r.pages == expect, "matched %zu pages, model %u (cap %zu%s)",
            r.pages, expect, cap, buf ? "" : ", no buffer");
    PASSERT(r.tokens == r.pages * P, "tokens %zu for %zu pages", r.tokens,
            r.pages);
    for (uint32_t i = 0; buf && i < expect; i++)
        PASSERT(got[i] == want[i], "block[%u] = %u, model %u", i, got[i],
                want[i]);
    if (buf)
        PASSERT(got[expect] == UINT32_MAX - 1, "wrote past the matched pages");
    PASSERT((r.node == NULL) == (expect == 0), "node %p for %u pages",
            (void *)r.node, expect);
    if (r.node) {
        size_t d = pc_radix_node_depth_pages(r.node);
        if (flags & PC_RADIX_MATCH_SPLIT) {
            PASSERT(d == expect, "SPLIT handle depth %zu, want %u", d, expect);
            uint32_t lr = pc_radix_node_lock_ref(r.node);
            uint32_t want_lr = locks_below(m, ns, s->tok, expect, ph);
            PASSERT(lr == want_lr, "handle lock_ref %u, model %u", lr, want_lr);
        } else {
            PASSERT(d >= expect, "handle depth %zu < %u", d, expect);
        }
    }
    g.hits += expect > 0;
    *pages_out = expect;
    return r.node;
}

static void op_match(model *m)
{
    g.what = "match";
    int ns = (int)below(N_NS);
    seq s;
    gen(m, ns, &s, false);
    unsigned flags = 0;
    if (chance(30))
        flags |= PC_RADIX_MATCH_PEEK;
    if (chance(30))
        flags |= PC_RADIX_MATCH_SPLIT;
    uint32_t pages;
    uint64_t ph[MAX_PAGES + 2];
    do_match(m, ns, &s, flags, &pages, ph);
}

static void op_lock(model *m)
{
    g.what = "match+SPLIT+lock";
    if (m->nlocks == MAX_LOCKS)
        return;
    int ns = (int)below(N_NS);
    seq s;
    gen(m, ns, &s, false);
    uint32_t pages;
    uint64_t ph[MAX_PAGES + 2];
    unsigned flags =
        PC_RADIX_MATCH_SPLIT | (chance(20) ? PC_RADIX_MATCH_PEEK : 0);
    pc_radix_node *n = do_match(m, ns, &s, flags, &pages, ph);
    check_all(m); /* the SPLIT is a mutation */
    if (!n)
        return;
    int rc = pc_radix_lock(g.t, n);
    PASSERT(rc == 0, "lock: %s", pc_errname(rc));
    g.locks++;
    held *l = &m->locks[m->nlocks++];
    l->node = n;
    l->ns = ns;
    l->pages = pages;
    l->tok = malloc((size_t)pages * m->P * sizeof(uint32_t));
    cr_assert_not_null(l->tok);
    memcpy(l->tok, s.tok, (size_t)pages * m->P * sizeof(uint32_t));
    memcpy(l->ph, ph, sizeof(uint64_t) * (pages + 1));
    uint32_t lr = pc_radix_node_lock_ref(n);
    uint32_t want_lr = locks_below(m, ns, l->tok, pages, l->ph);
    PASSERT(lr == want_lr, "lock_ref after lock %u, model %u", lr, want_lr);
}

static void op_unlock(model *m)
{
    g.what = "unlock";
    if (!m->nlocks)
        return;
    size_t i = below((uint32_t)m->nlocks);
    pc_radix_node *n = m->locks[i].node;
    int rc = pc_radix_unlock(g.t, n);
    PASSERT(rc == 0, "unlock of a held lock: %s", pc_errname(rc));
    drop_lock(m, i);
    if (!chance(30))
        return;
    /* One more unlock of the same handle.  It is still valid (only evict and
     * destroy free nodes); it succeeds only if we hold another lock on this
     * very node, else it is refused and changes nothing. */
    check_all(m);
    g.what = "extra unlock";
    uint32_t own = locks_on(m, n);
    pc_radix_stats before = stats_now();
    rc = pc_radix_unlock(g.t, n);
    if (own) {
        PASSERT(rc == 0, "unlock of a node we hold %u locks on: %s", own,
                pc_errname(rc));
        for (size_t j = 0; j < m->nlocks; j++)
            if (m->locks[j].node == n) {
                drop_lock(m, j);
                break;
            }
        g.extra_ok++;
    } else {
        PASSERT(rc == PC_E_NOTLOCKED, "unlock below zero: %s (want NOTLOCKED)",
                pc_errname(rc));
        assert_stats_same(&before);
        g.refused_extra++;
    }
}

/* Pin a prefix of a held lock's path again (SPLIT), which must be cached in
 * full; unlocking that handle is refused unless we hold a lock on that very
 * node (an ancestor is locked only through its descendants). */
static void op_ancestor_unlock(model *m)
{
    g.what = "ancestor unlock";
    if (!m->nlocks)
        return;
    const held *l = &m->locks[below((uint32_t)m->nlocks)];
    uint32_t q = 1 + below(l->pages);
    seq s;
    s.n = q * m->P;
    memcpy(s.tok, l->tok, (size_t)s.n * sizeof(uint32_t));
    if (m->P > 1 && chance(30))
        s.tok[s.n++] = 0; /* a trailing partial page changes nothing */
    int ns = l->ns;
    pc_radix_node *ln = l->node;
    uint32_t lpages = l->pages;
    uint32_t pages;
    uint64_t ph[MAX_PAGES + 2];
    pc_radix_node *n = do_match(
        m, ns, &s, PC_RADIX_MATCH_SPLIT | PC_RADIX_MATCH_PEEK, &pages, ph);
    check_all(m);
    /* do_match may cap the pages (blocks_cap); a pinned path is cached */
    if (!n)
        return;
    if (pages == lpages)
        PASSERT(n == ln, "the whole pinned path must end at the pinned node");
    PASSERT(pc_radix_node_lock_ref(n) > 0, "ancestor of a pin is unlocked");
    if (locks_on(m, n))
        return; /* we own a lock there: an unlock would succeed */
    pc_radix_stats before = stats_now();
    int rc = pc_radix_unlock(g.t, n);
    PASSERT(rc == PC_E_NOTLOCKED, "unlock of an ancestor: %s", pc_errname(rc));
    assert_stats_same(&before);
    g.refused_ancestor++;
}

typedef struct evctx {
    model *m;
    size_t count;
    char err[256]; /* first violation */
} evctx;

static void on_evict(void *ctx, uint32_t block)
{
    evctx *c = ctx;
    c->count++;
    if (c->err[0])
        return;
    entry *e = find_block(c->m, block);
    if (!e)
        snprintf(c->err, sizeof(c->err),
                 "evicted block %u (#%zu) is not cached", block, c->count);
    else if (is_protected(c->m, e))
        snprintf(c->err, sizeof(c->err),
                 "evicted block %u (#%zu, depth %u) is protected by a lock",
                 block, c->count, e->depth);
    else if (has_child(c->m, e))
        snprintf(c->err, sizeof(c->err),
                 "evicted block %u (#%zu, depth %u) still has a cached child",
                 block, c->count, e->depth);
    else {
        int ns = e->ns;
        remove_entry(c->m, e);
        size_t n, u;
        ns_count(c->m, ns, &n, &u);
        if (n < c->m->lmin[ns])
            snprintf(c->err, sizeof(c->err),
                     "evicted block %u takes ns %d below its reserve (%zu < "
                     "%u)", block, ns, n, c->m->lmin[ns]);
    }
}

static void do_evict(model *m, size_t k)
{
    size_t avail = avail_model(m);
    size_t want = k < avail ? k : avail;
    evctx c = {.m = m, .count = 0, .err = ""};
    g.reserve_held += k && stats_now().reserved_pages > 0;
    size_t got = pc_radix_evict(g.t, k, on_evict, &c);
    g.evict_calls++;
    PASSERT(c.err[0] == 0, "evict(%zu): %s", k, c.err);
    PASSERT(got == c.count, "evict returned %zu, %zu callbacks", got, c.count);
    PASSERT(got == want, "evict(%zu) freed %zu, want %zu (of %zu unprotected)",
            k, got, want, avail);
}

static void op_evict(model *m)
{
    g.what = "evict";
    size_t k;
    unsigned mode = below(10);
    if (mode < 5)
        k = 1 + below(4);
    else if (mode < 9)
        k = below((uint32_t)m->n / 4 + 2);
    else if (chance(30))
        k = SIZE_MAX;
    else
        k = 0;
    do_evict(m, k);
}

/* ---- the driver ---------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long long x = strtoull(v, &end, 0);
    return *end ? dflt : (uint64_t)x;
}

/* Eviction policy for a run: one of pc_radix_policy, or SWITCHING: start
 * with LRU and switch to a random policy now and then (it is reloadable). */
#define SWITCHING (-1)

/* Runtime changes the policies allow: a switch (SWITCHING runs), and a
 * namespace priority (any run; it only orders the priority policy). */
static void op_policy(int policy)
{
    if (policy == SWITCHING && chance(50)) {
        pc_radix_policy p = (pc_radix_policy)below(PC_POLICY_COUNT);
        g.what = "set_policy";
        int rc = pc_radix_set_policy(g.t, p);
        PASSERT(rc == 0, "set_policy(%s): %s", pc_radix_policy_name(p),
                pc_errname(rc));
        PASSERT(pc_radix_get_policy(g.t) == p, "policy not switched");
    } else {
        int ns = (int)below((uint32_t)(sizeof(NS) / sizeof(NS[0])));
        int32_t prio = (int32_t)below(5) - 2;
        g.what = "set_ns_priority";
        int rc = pc_radix_set_ns_priority(g.t, NS[ns].bytes, NS[ns].len, prio);
        PASSERT(rc == 0, "set_ns_priority: %s", pc_errname(rc));
    }
}

/* New limits for one namespace (or all cleared), like a reloaded config;
 * sometimes an invalid pair, which must change nothing. */
static void op_limits(model *m)
{
    if (chance(20)) {
        g.what = "clear_ns_limits";
        pc_radix_clear_ns_limits(g.t); /* evicts nothing */
        memset(m->lmin, 0, sizeof(m->lmin));
        memset(m->lmax, 0, sizeof(m->lmax));
        return;
    }
    int ns = (int)below(N_NS);
    uint32_t mn = chance(50) ? 0 : 1 + below(60);
    uint32_t mx = chance(50) ? 0 : (mn ? mn : 1) + below(100);
    if (chance(5) && mn > 1) { /* refused: the reserve above the quota */
        g.what = "set_ns_limits (refused)";
        pc_radix_stats before = stats_now();
        int rc = pc_radix_set_ns_limits(g.t, NS[ns].bytes, NS[ns].len, mn,
                                        mn - 1);
        PASSERT(rc == PC_E_INVAL, "min > max: %s", pc_errname(rc));
        assert_stats_same(&before);
        return;
    }
    g.what = "set_ns_limits";
    quota_begin(m, ns, NULL, 0); /* a lower quota evicts at once */
    int rc = pc_radix_set_ns_limits(g.t, NS[ns].bytes, NS[ns].len, mn, mx);
    PASSERT(rc == 0, "set_ns_limits(%u, %u): %s", mn, mx, pc_errname(rc));
    m->lmin[ns] = mn;
    m->lmax[ns] = mx;
    quota_end(m, ns, NULL, 0);
}

static void run_policy(uint32_t P, int policy, size_t ops_div)
{
    g.seed = env_u64("PC_PROP_SEED", DEFAULT_SEED);
    g.P = P;
    g.op = 0;
    g.what = "create";
    size_t ops = (size_t)env_u64("PC_PROP_OPS", DEFAULT_OPS) / ops_div;
    rng_state = g.seed ^ ((uint64_t)P * UINT64_C(0x9e3779b97f4a7c15));
    cr_log_info("radix prop: PC_PROP_SEED=%" PRIu64 " P=%u ops=%zu", g.seed, P,
                ops);

    g.t = NULL;
    g.hits = g.locks = g.refused_extra = g.extra_ok = g.refused_ancestor = 0;
    g.evict_calls = g.sum_pages = g.reserve_held = 0;
    int rc = pc_radix_create(P, &g.t);
    PASSERT(rc == 0, "create: %s", pc_errname(rc));
    /* auto's simulations need a capacity: about what the soft cap keeps */
    rc = pc_radix_set_capacity(g.t, SOFT_CAP);
    PASSERT(rc == 0, "set_capacity: %s", pc_errname(rc));
    pc_radix_set_evict_hook(g.t, on_quota_evict, NULL);
    if (policy != SWITCHING) {
        rc = pc_radix_set_policy(g.t, (pc_radix_policy)policy);
        PASSERT(rc == 0, "set_policy: %s", pc_errname(rc));
    }
    model *m = calloc(1, sizeof(*m));
    cr_assert_not_null(m);
    m->P = P;
    m->next_block = 1;

    size_t max_pages = 0;
    uint64_t splits_seen = 0, dup_seen = 0;
    for (g.op = 0; g.op < ops; g.op++) {
        unsigned r = below(100);
        if (r < 36)
            op_insert(m);
        else if (r < 62)
            op_match(m);
        else if (r < 75)
            op_lock(m);
        else if (r < 86)
            op_unlock(m);
        else if (r < 91)
            op_ancestor_unlock(m);
        else if (r < 99)
            op_evict(m);
        else if (chance(50))
            op_limits(m);
        else if (!chance(policy == SWITCHING ? 50 : 10))
            op_evict(m);
        else
            op_policy(policy);
        check_all(m);
        g.sum_pages += m->n;
        if (m->n > max_pages)
            max_pages = m->n;
        if (m->n > SOFT_CAP) { /* keep the tree small: check is O(size) */
            g.what = "evict (soft cap)";
            do_evict(m, m->n - SOFT_CAP * 2 / 3);
            check_all(m);
        }
    }

    /* the run did exercise what it is for */
    pc_radix_stats s = stats_now();
    splits_seen = s.splits;
    dup_seen = s.duplicate_pages;
    cr_log_info("radix prop P=%u: max pages %zu, splits %" PRIu64
                ", duplicate pages %" PRIu64 ", evicted %" PRIu64
                " (by quotas %" PRIu64 ")",
                P, max_pages, splits_seen, dup_seen, s.evicted_pages,
                s.evicted_quota_pages);
    cr_log_info("radix prop P=%u: mean pages %zu, matches with a hit %zu, "
                "locks %zu, refused unlocks %zu (+%zu ok) / ancestors %zu, "
                "evict calls %zu (%zu with reserves holding pages)",
                P, g.sum_pages / (ops ? ops : 1), g.hits, g.locks,
                g.refused_extra, g.extra_ok, g.refused_ancestor, g.evict_calls,
                g.reserve_held);
    g.what = "end";
    PASSERT(splits_seen > ops / 100, "few splits: %" PRIu64, splits_seen);
    PASSERT(dup_seen > ops / 100, "few duplicates: %" PRIu64, dup_seen);
    PASSERT(g.reserve_held > ops / 1000, "few evictions against a reserve: %zu",
            g.reserve_held);
    PASSERT(s.evicted_quota_pages > ops / 1000, "few quota evictions: %" PRIu64,
            s.evicted_quota_pages);

    /* release every lock and every limit; then everything is evictable */
    g.what = "final clear limits";
    pc_radix_clear_ns_limits(g.t);
    memset(m->lmin, 0, sizeof(m->lmin));
    memset(m->lmax, 0, sizeof(m->lmax));
    check_all(m);
    g.what = "final unlock";
    while (m->nlocks) {
        rc = pc_radix_unlock(g.t, m->locks[m->nlocks - 1].node);
        PASSERT(rc == 0, "final unlock: %s", pc_errname(rc));
        drop_lock(m, m->nlocks - 1);
        check_all(m);
    }
    g.what = "final evict";
    do_evict(m, SIZE_MAX);
    check_all(m);
    PASSERT(m->n == 0, "%zu pages left", m->n);
    s = stats_now();
    PASSERT(s.nodes == 0 && s.namespaces == 0, "nodes %" PRIu64 " ns %" PRIu64,
            s.nodes, s.namespaces);

    pc_radix_destroy(g.t);
    g.t = NULL;
    for (size_t i = 0; i < m->n; i++)
        free(m->e[i].tok);
    free(m->e);
    free(m);
}

static void run(uint32_t P) { run_policy(P, PC_POLICY_LRU, 1); }

Test(radix_prop, p1, .timeout = 300) { run(1); }
Test(radix_prop, p4, .timeout = 300) { run(4); }
Test(radix_prop, p16, .timeout = 300) { run(16); }

/* Every other policy, and switching between them at run time: the model
 * proves that only unlocked leaves lose pages, deepest first. */
Test(radix_prop, lfu, .timeout = 300) { run_policy(4, PC_POLICY_LFU, 2); }
Test(radix_prop, fifo, .timeout = 300) { run_policy(4, PC_POLICY_FIFO, 2); }
Test(radix_prop, s3fifo, .timeout = 300) { run_policy(4, PC_POLICY_S3FIFO, 2); }
Test(radix_prop, s3fifo_p1, .timeout = 300) { run_policy(1, PC_POLICY_S3FIFO, 2); }
Test(radix_prop, priority, .timeout = 300) { run_policy(4, PC_POLICY_PRIORITY, 2); }
Test(radix_prop, auto_p4, .timeout = 300) { run_policy(4, PC_POLICY_AUTO, 2); }
Test(radix_prop, switching, .timeout = 300) { run_policy(4, SWITCHING, 1); }

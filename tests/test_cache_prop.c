/*
 * tests/test_cache_prop.c - random engine traffic against the cache layer.
 *
 * Several simulated engines ("clients") run the engine flow, one cache call
 * per step, their steps interleaved at random with each other and with noise:
 *
 *   lookup(ns, prompt, pin) -> alloc(rest, lease) -> write the KV of the new
 *   pages -> insert(canonical ids + own ids, lease) -> release (or keep the
 *   lease for the next prompt)
 *
 * Noise: lookups without pin, bogus inserts (another lease's block, a FREE
 * block, a CACHED block of another page, an id beyond the pool, a block twice,
 * an unknown lease), releases of ended or unknown leases, touches, allocs
 * under dead leases, pc_cache_evict(), pc_cache_maintain() with watermarks,
 * "ghost" engines that take a lease and never come back, clients that vanish
 * mid-flow, and clock jumps past the TTL.  pc_cache_expire() runs regularly.
 *
 * A small pool (48-96 blocks, page_tokens 4) keeps eviction busy.  The model
 * knows every lease: its deadline (every op that names it successfully renews
 * it), its pins (prompt, pages, block ids) and the blocks it holds LEASED.
 * The outcome of every call is predicted exactly (error code included) from
 * the model and the stats taken just before it.  After EVERY operation:
 *   - pc_cache_check() == 0;
 *   - the leases, pins and LEASED blocks in the stats equal the model's;
 *   - every block a lease holds is LEASED;
 *   - every pin of a lease that is still in the cache (not yet reaped) is
 *     still cached with the same block ids (a lookup without pin, of exactly
 *     the pinned pages: it only touches locked nodes, so it does not change
 *     the eviction order);
 *   - pc_cache_next_deadline_ms() agrees with the model;
 *   - a rejected call changed nothing (stats, block states, tree, deadlines).
 * Every block also carries a signature of (namespace, token prefix) that its
 * engine wrote after alloc: a lookup must only ever return blocks holding the
 * signature of the page asked for (host backend: the shared memory itself;
 * "none": the engine-side array that the ids index).
 *
 * Reproduce with PC_PROP_SEED=<seed> (printed with the run and op index in
 * every failure); PC_PROP_OPS=<n> sets the operations per run (4 runs;
 * default 100,000 each, 400,000 in all).
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/inspect.h"
#include "tests/harness/prng.h"

#define DEFAULT_SEED UINT64_C(0xcafe5eed2024)
#define DEFAULT_OPS 100000
#define P 4u
#define TTL 1000u
#define MAXP 12u                 /* pages per prompt at most */
#define MAXT (MAXP * P + 3)      /* tokens per prompt at most */
#define MAXCAP 128u
#define MAXL 40                  /* model leases */
#define MAXPINS 4
#define MAXOWN 128
#define MAXCLIENTS 8
#define NGROUPS 6
#define NSUFFIX 8

/* ---- PRNG (tests/harness/prng.h) ----------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void) { return test_rng_next(&rng_state); }
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }
static bool chance(unsigned per_mille) { return below(1000) < per_mille; }

static uint64_t hash2(uint64_t a, uint64_t b)
{
    uint64_t h = a * UINT64_C(0x9e3779b97f4a7c15) ^ (b + UINT64_C(0x632be59bd9b4e019));
    h ^= h >> 31;
    h *= UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 29;
    return h;
}

/* ---- run configuration and global state --------------------------------- */

typedef struct runcfg {
    const char *name;
    pc_pool_backend backend;
    uint32_t cap;
    int clients;
    int nns;
    uint32_t max_leases, max_pins;
    uint64_t low, high;
    unsigned jump_pm; /* per mille of ops that jump the clock past the TTL */
    bool roomy;       /* pool big enough that NOSPACE is not expected */
} runcfg;

static const struct {
    const char *bytes;
    size_t len;
} NSS[] = {{"ns-a", 4}, {"ns-b", 4}, {"", 0}};

typedef struct prompt {
    int ns;
    size_t n;
    uint32_t tok[MAXT];
    uint64_t sig[MAXP]; /* signature of each full page's prefix */
} prompt;

typedef struct pinrec {
    prompt pr;
    uint32_t pages;
    uint32_t blocks[MAXP];
} pinrec;

typedef struct mlease {
    uint64_t id, deadline;
    int client; /* -1: a ghost, nobody will name it again */
    int npins;
    pinrec pins[MAXPINS];
    int nown;
    uint32_t own[MAXOWN];
} mlease;

enum { IDLE, LOOKED, ALLOCATED, INSERTED, DROP };

typedef struct client {
    int st;
    prompt pr;
    uint64_t lease;        /* 0: none */
    uint32_t m;            /* pages matched (and pinned) by the lookup */
    uint32_t blk[MAXP];    /* canonical ids [0, m), own ids [m, pages) */
} client;

static struct {
    uint64_t seed;
    const runcfg *cfg;
    size_t op;
    const char *what;
    pc_cache *c;
    uint64_t now;
    uint32_t cap;
    mlease L[MAXL];
    int nl;
    client cl[MAXCLIENTS];
    uint64_t ended[16]; /* ids of leases that ended, for noise */
    unsigned nended;
    uint64_t fresh; /* token counter for never-cached prompts */
    uint64_t sigmem[MAXCAP]; /* "none" backend: the engine-side block memory */
    /* coverage */
    size_t n_lookups, n_hits, n_allocs, n_nospace, n_limit, n_inserts,
        n_dups, n_released, n_expired, n_lease_err, n_bogus, n_evicted,
        n_maintain, n_vanish, n_ghosts, n_jumps, n_pinchecks;
} g;

#define PASSERT(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            char m_[512];                                                      \
            snprintf(m_, sizeof(m_), __VA_ARGS__);                             \
            if (g.c)                                                           \
                pc_radix_dump(pc_cache_tree(g.c), stderr);                     \
            cr_assert_fail("PC_PROP_SEED=%" PRIu64 " run=%s op=%zu (%s): %s "  \
                           "[%s] at line %d",                                  \
                           g.seed, g.cfg ? g.cfg->name : "?", g.op, g.what,    \
                           m_, #cond, __LINE__);                               \
        }                                                                      \
    } while (0)

#define RC_IS(rc, want)                                                        \
    PASSERT((rc) == (want), "rc %s, want %s", pc_errname(rc), pc_errname(want))

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return g.now;
}

static void cleanup(void)
{
    pc_cache_destroy(g.c);
    g.c = NULL;
}

TestSuite(cache_prop, .fini = cleanup);

/* ---- prompts, signatures, block memory ----------------------------------- */

static void sign(prompt *pr)
{
    uint64_t h = hash2(0x5157, (uint64_t)pr->ns + 1);
    for (size_t i = 0; i < pr->n; i++) {
        h = hash2(h, pr->tok[i]);
        if ((i + 1) % P == 0)
            pr->sig[i / P] = h;
    }
}

/* An engine-like prompt: one of NGROUPS system prompts (4..19 tokens; the
 * same tokens in every namespace), then one of NSUFFIX suffixes cut at a
 * random length, sometimes a token changed inside a page. */
static void gen_prompt(prompt *pr)
{
    pr->ns = (int)below((uint32_t)g.cfg->nns);
    uint32_t grp = below(NGROUPS), suf = below(NSUFFIX);
    size_t sys = 4 + 3 * grp + (grp & 1);
    size_t n = 0;
    for (size_t i = 0; i < sys; i++)
        pr->tok[n++] = (uint32_t)hash2(grp, i) % 50000;
    size_t extra = below((uint32_t)(MAXT - sys + 1));
    for (size_t i = 0; i < extra; i++)
        pr->tok[n++] = (uint32_t)hash2(1000 + grp * NSUFFIX + suf, i) % 50000;
    if (n > 8 && chance(100))
        pr->tok[below((uint32_t)n)] ^= 1;
    pr->n = n;
    sign(pr);
}

/* A prompt of `pages` full pages that nobody ever caches. */
static void gen_fresh(prompt *pr, uint32_t pages)
{
    pr->ns = (int)below((uint32_t)g.cfg->nns);
    pr->n = (size_t)pages * P;
    for (size_t i = 0; i < pr->n; i++)
        pr->tok[i] = 0x80000000u + (uint32_t)(g.fresh++);
    sign(pr);
}

static uint32_t pages_of(const prompt *pr) { return (uint32_t)(pr->n / P); }

static uint8_t *blockmem(uint32_t b)
{
    return g.cfg->backend == PC_POOL_HOST
               ? pc_pool_block_ptr(pc_cache_pool(g.c), b)
               : (uint8_t *)&g.sigmem[b];
}

static void blk_write(uint32_t b, uint64_t sig)
{
    memcpy(blockmem(b), &sig, sizeof(sig));
}

static uint64_t blk_read(uint32_t b)
{
    uint64_t s;
    memcpy(&s, blockmem(b), sizeof(s));
    return s;
}

static void verify_sigs(const prompt *pr, const uint32_t *blocks, size_t pages)
{
    for (size_t i = 0; i < pages; i++)
        PASSERT(blk_read(blocks[i]) == pr->sig[i],
                "block %u holds the KV of another prefix (page %zu, ns %d)",
                blocks[i], i, pr->ns);
}

/* ---- the model ------------------------------------------------------------ */

static int ml_find(uint64_t id)
{
    for (int i = 0; id && i < g.nl; i++)
        if (g.L[i].id == id)
            return i;
    return -1;
}

static bool ml_live(uint64_t id)
{
    int i = ml_find(id);
    return i >= 0 && g.L[i].deadline > g.now;
}

static mlease *ml_new(uint64_t id, int client)
{
    PASSERT(id != 0, "lease id 0");
    PASSERT(ml_find(id) < 0, "lease id %" PRIx64 " handed out twice", id);
    PASSERT(g.nl < MAXL, "too many leases in the model");
    mlease *l = &g.L[g.nl++];
    memset(l, 0, sizeof(*l));
    l->id = id;
    l->deadline = g.now + TTL;
    l->client = client;
    return l;
}

static void ml_ended(uint64_t id)
{
    g.ended[g.nended++ % 16] = id;
}

static void ml_remove(int i)
{
    ml_ended(g.L[i].id);
    g.L[i] = g.L[--g.nl];
}

static void ml_drop_own(mlease *l, uint32_t b)
{
    for (int i = 0; i < l->nown; i++)
        if (l->own[i] == b) {
            l->own[i] = l->own[--l->nown];
            return;
        }
    PASSERT(0, "block %u is not the lease's", b);
}

/* The lease of some client (never a ghost): renewals stay realistic. */
static mlease *ml_any_client(void)
{
    int cand[MAXL], n = 0;
    for (int i = 0; i < g.nl; i++)
        if (g.L[i].client >= 0)
            cand[n++] = i;
    return n ? &g.L[cand[below((uint32_t)n)]] : NULL;
}

static uint64_t unknown_lease(void)
{
    if (g.nended && chance(600)) {
        uint64_t id = g.ended[below(g.nended < 16 ? g.nended : 16)];
        if (ml_find(id) < 0)
            return id;
    }
    for (;;) {
        uint64_t id = rnd();
        if (id && ml_find(id) < 0)
            return id;
    }
}

/* ---- probes and invariants ----------------------------------------------- */

static pc_cache_stats cstats(void)
{
    pc_cache_stats s;
    pc_cache_stats_get(g.c, &s);
    return s;
}

/* Pages of pr cached now, and their ids, without touching anything. */
static uint32_t peek(const prompt *pr, uint32_t *blocks)
{
    pc_radix_match_result m;
    uint32_t tmp[MAXP];
    int rc = pc_radix_match(pc_cache_tree(g.c), NSS[pr->ns].bytes,
                            NSS[pr->ns].len, pr->tok, pr->n,
                            blocks ? blocks : tmp, MAXP, PC_RADIX_MATCH_PEEK,
                            &m);
    PASSERT(rc == 0, "peek: %s", pc_errname(rc));
    return (uint32_t)m.pages;
}

static pc_block_state bstate(uint32_t b)
{
    pc_block_state s = PC_BLOCK_FREE;
    int rc = pc_pool_state(pc_cache_pool(g.c), b, &s);
    PASSERT(rc == 0, "pc_pool_state(%u): %s", b, pc_errname(rc));
    return s;
}

typedef struct snap {
    pc_cache_stats st;
    uint8_t state[MAXCAP];
    uint64_t tree;
    uint64_t next;
} snap;

static int fp_node(void *ctx, const void *ns, size_t ns_len,
                   const pc_radix_node *n, const uint32_t *blocks,
                   uint32_t npages)
{
    uint64_t *h = ctx;
    *h = hash2(*h, ns_len ? ((const uint8_t *)ns)[ns_len - 1] : 0);
    *h = hash2(*h, npages);
    for (uint32_t i = 0; i < npages; i++)
        *h = hash2(*h, blocks[i]);
    *h = hash2(*h, pc_radix_node_pins(n));
    *h = hash2(*h, pc_radix_node_lock_ref(n));
    return 0;
}

static void take(snap *s)
{
    memset(s, 0, sizeof(*s));
    s->st = cstats();
    for (uint32_t b = 0; b < g.cap; b++)
        s->state[b] = (uint8_t)bstate(b);
    s->tree = 7;
    pc_radix_foreach(pc_cache_tree(g.c), fp_node, &s->tree);
    s->next = pc_cache_next_deadline_ms(g.c);
}

static void same(const snap *a)
{
    snap b;
    take(&b);
    PASSERT(memcmp(&a->st, &b.st, sizeof(a->st)) == 0,
            "a rejected call changed the stats");
    PASSERT(memcmp(a->state, b.state, sizeof(a->state)) == 0,
            "a rejected call changed a block state");
    PASSERT(a->tree == b.tree, "a rejected call changed the tree");
    PASSERT(a->next == b.next, "a rejected call changed a deadline");
}

static void invariants(void)
{
    int rc = pc_cache_check(g.c);
    PASSERT(rc == 0, "pc_cache_check: %s", pc_errname(rc));
    pc_cache_stats s = cstats();
    PASSERT(s.pool.free + s.pool.leased + s.pool.cached == g.cap,
            "pool counts do not add up");
    PASSERT(s.leases == (uint64_t)g.nl, "%" PRIu64 " leases, model %d",
            s.leases, g.nl);
    uint64_t pins = 0, own = 0, next = UINT64_MAX;
    for (int i = 0; i < g.nl; i++) {
        const mlease *l = &g.L[i];
        pins += (uint64_t)l->npins;
        own += (uint64_t)l->nown;
        uint64_t d = l->deadline > g.now ? l->deadline - g.now : 0;
        next = d < next ? d : next;
        for (int j = 0; j < l->nown; j++)
            PASSERT(bstate(l->own[j]) == PC_BLOCK_LEASED,
                    "block %u of lease %d not LEASED", l->own[j], i);
        for (int j = 0; j < l->npins; j++) {
            const pinrec *p = &l->pins[j];
            uint32_t got[MAXP];
            pc_lookup_result r;
            rc = pc_cache_lookup(g.c, NSS[p->pr.ns].bytes, NSS[p->pr.ns].len,
                                 p->pr.tok, (size_t)p->pages * P, 0, 0, got,
                                 &r);
            PASSERT(rc == 0, "pin lookup: %s", pc_errname(rc));
            g.n_pinchecks++;
            PASSERT(r.pages == p->pages &&
                        memcmp(got, p->blocks, p->pages * sizeof(uint32_t)) == 0,
                    "lease %d pin %d: %u pinned pages, %zu still cached as "
                    "pinned (deadline %+" PRId64 ")",
                    i, j, p->pages, r.pages,
                    (int64_t)(l->deadline - g.now));
        }
    }
    PASSERT(s.pins == pins, "%" PRIu64 " pins, model %" PRIu64, s.pins, pins);
    PASSERT(s.pool.leased == own, "%" PRIu64 " LEASED, model %" PRIu64,
            s.pool.leased, own);
    uint64_t nd = pc_cache_next_deadline_ms(g.c);
    PASSERT(nd == next, "next deadline %" PRIu64 ", model %" PRIu64, nd, next);
}

/* ---- cache calls with predicted outcomes --------------------------------- */

/* lookup with pin under `lease` (0: new).  Returns the rc; on success the
 * pin is recorded in the model and *lease / blocks / *pages are set. */
static int do_pin(const prompt *pr, uint64_t *lease, int client,
                  uint32_t *blocks, uint32_t *pages)
{
    pc_cache_stats s = cstats();
    uint32_t cached = peek(pr, NULL);
    int li = ml_find(*lease);
    int want = 0, alt = 1;
    if (*lease) {
        if (!ml_live(*lease))
            want = PC_E_LEASE;
        else if (g.L[li].npins + 1 > (int)g.cfg->max_pins)
            want = PC_E_LIMIT; /* only asked for when something matches */
    } else if (s.leases >= g.cfg->max_leases) {
        /* nothing matched: no lease needed, so either answer is fine */
        want = PC_E_LIMIT;
        alt = cached ? 1 : 0;
    }
    snap before;
    if (want)
        take(&before);
    pc_lookup_result r;
    int rc = pc_cache_lookup(g.c, NSS[pr->ns].bytes, NSS[pr->ns].len, pr->tok,
                             pr->n, 1, *lease, blocks, &r);
    g.n_lookups++;
    PASSERT(rc == want || rc == alt, "pin lookup: rc %s, want %s",
            pc_errname(rc), pc_errname(want));
    if (rc) {
        same(&before);
        if (rc == PC_E_LIMIT)
            g.n_limit++;
        else
            g.n_lease_err++;
        return rc;
    }
    PASSERT(r.pages == cached, "matched %zu pages, %u cached", r.pages, cached);
    verify_sigs(pr, blocks, r.pages);
    *pages = (uint32_t)r.pages;
    g.n_hits += r.pages > 0;
    if (*lease) {
        mlease *l = &g.L[li];
        l->deadline = g.now + TTL; /* renewed, pin or not */
        if (r.pages) {
            PASSERT(r.lease == *lease, "pin under another lease");
            pinrec *p = &l->pins[l->npins++];
            p->pr = *pr;
            p->pages = (uint32_t)r.pages;
            memcpy(p->blocks, blocks, r.pages * sizeof(uint32_t));
        }
    } else if (r.pages) {
        PASSERT(r.lease != 0, "a pin without a lease");
        mlease *l = ml_new(r.lease, client);
        pinrec *p = &l->pins[l->npins++];
        p->pr = *pr;
        p->pages = (uint32_t)r.pages;
        memcpy(p->blocks, blocks, r.pages * sizeof(uint32_t));
        *lease = r.lease;
    } else {
        PASSERT(r.lease == 0, "a lease for nothing matched");
        PASSERT(cstats().leases == s.leases, "a lease for nothing matched");
    }
    return 0;
}

/* alloc n under *lease (0: new).  On success the blocks are in the model. */
static int do_alloc(uint32_t n, uint64_t *lease, int client, uint32_t *ids)
{
    pc_cache_stats s = cstats();
    int want = 0, alt = 1;
    bool nospace = n > s.pool.free + s.tree.evictable_pages;
    if (*lease && !ml_live(*lease))
        want = PC_E_LEASE;
    else if (!*lease && s.leases >= g.cfg->max_leases) {
        want = PC_E_LIMIT;
        alt = nospace ? PC_E_NOSPACE : 1; /* both apply: either */
    } else if (nospace)
        want = PC_E_NOSPACE;
    snap before;
    if (want)
        take(&before);
    uint64_t in = *lease;
    int rc = pc_cache_alloc(g.c, n, lease, ids);
    PASSERT(rc == want || rc == alt, "alloc(%u): rc %s, want %s (free %" PRIu64
            ", evictable %" PRIu64 ")",
            n, pc_errname(rc), pc_errname(want), s.pool.free,
            s.tree.evictable_pages);
    if (rc) {
        if (rc == PC_E_NOSPACE) {
            before.st.nospace++;
            g.n_nospace++;
        } else if (rc == PC_E_LIMIT)
            g.n_limit++;
        else
            g.n_lease_err++;
        same(&before);
        PASSERT(*lease == in, "lease id changed by a refused alloc");
        return rc;
    }
    g.n_allocs++;
    pc_cache_stats s2 = cstats();
    uint64_t need = n > s.pool.free ? n - s.pool.free : 0;
    PASSERT(s2.evictions_alloc - s.evictions_alloc == need,
            "alloc evicted %" PRIu64 ", needed %" PRIu64,
            s2.evictions_alloc - s.evictions_alloc, need);
    mlease *l;
    if (in) {
        PASSERT(*lease == in, "lease id changed");
        l = &g.L[ml_find(in)];
        l->deadline = g.now + TTL;
    } else
        l = ml_new(*lease, client);
    for (uint32_t i = 0; i < n; i++) {
        PASSERT(l->nown < MAXOWN, "model: too many blocks");
        l->own[l->nown++] = ids[i];
    }
    return 0;
}

/* insert pr with blocks (canonical [0, m), own [m, pages)) under lease */
static int do_insert(const prompt *pr, const uint32_t *blocks, uint32_t m,
                     uint64_t lease)
{
    uint32_t pages = pages_of(pr), have[MAXP], canon[MAXP];
    uint32_t cached = peek(pr, have);
    if (!ml_live(lease)) {
        snap before;
        take(&before);
        pc_insert_result r;
        int rc = pc_cache_insert(g.c, NSS[pr->ns].bytes, NSS[pr->ns].len,
                                 pr->tok, pr->n, blocks, lease, canon, &r);
        RC_IS(rc, PC_E_LEASE);
        same(&before);
        g.n_lease_err++;
        return rc;
    }
    PASSERT(cached >= m, "pinned pages were evicted before insert");
    pc_insert_result r;
    int rc = pc_cache_insert(g.c, NSS[pr->ns].bytes, NSS[pr->ns].len, pr->tok,
                             pr->n, blocks, lease, canon, &r);
    RC_IS(rc, 0);
    g.n_inserts++;
    mlease *l = &g.L[ml_find(lease)];
    l->deadline = g.now + TTL;
    size_t freed = 0;
    for (uint32_t i = 0; i < pages; i++) {
        uint32_t want = i < cached ? have[i] : blocks[i];
        PASSERT(canon[i] == want, "canon[%u] = %u, want %u", i, canon[i], want);
        if (i >= m) {
            ml_drop_own(l, blocks[i]); /* adopted or returned */
            if (i < cached) {
                freed++;
                PASSERT(bstate(blocks[i]) == PC_BLOCK_FREE,
                        "duplicate block %u not freed", blocks[i]);
            }
        }
        PASSERT(bstate(canon[i]) == PC_BLOCK_CACHED, "canon %u not CACHED",
                canon[i]);
    }
    PASSERT(r.cached_tokens == (size_t)cached * P, "cached_tokens %zu, want %u",
            r.cached_tokens, cached * P);
    PASSERT(r.inserted_pages == pages - cached, "inserted %zu, want %u",
            r.inserted_pages, pages - cached);
    PASSERT(r.freed_blocks == freed, "freed %zu, want %zu", r.freed_blocks,
            freed);
    g.n_dups += freed;
    verify_sigs(pr, canon, pages);
    return 0;
}

static int do_release(uint64_t lease)
{
    if (!ml_live(lease)) {
        snap before;
        take(&before);
        int rc = pc_cache_release(g.c, lease);
        RC_IS(rc, PC_E_LEASE);
        same(&before);
        g.n_lease_err++;
        return rc;
    }
    int i = ml_find(lease);
    mlease l = g.L[i];
    int rc = pc_cache_release(g.c, lease);
    RC_IS(rc, 0);
    ml_remove(i);
    for (int j = 0; j < l.nown; j++)
        PASSERT(bstate(l.own[j]) == PC_BLOCK_FREE,
                "released block %u not FREE", l.own[j]);
    g.n_released++;
    return 0;
}

static void do_expire(void)
{
    size_t due = 0;
    for (int i = 0; i < g.nl; i++)
        due += g.L[i].deadline <= g.now;
    uint32_t freed[MAXCAP];
    size_t nfreed = 0;
    for (int i = 0; i < g.nl; i++)
        if (g.L[i].deadline <= g.now)
            for (int j = 0; j < g.L[i].nown; j++)
                freed[nfreed++] = g.L[i].own[j];
    size_t n = pc_cache_expire(g.c);
    PASSERT(n == due, "expired %zu, model %zu", n, due);
    for (int i = 0; i < g.nl;)
        if (g.L[i].deadline <= g.now)
            ml_remove(i);
        else
            i++;
    for (size_t j = 0; j < nfreed; j++)
        PASSERT(bstate(freed[j]) == PC_BLOCK_FREE,
                "block %u of an expired lease not FREE", freed[j]);
    g.n_expired += n;
}

/* ---- clients -------------------------------------------------------------- */

static void client_reset(client *k)
{
    k->st = IDLE;
    k->lease = 0;
}

static void client_step(int ci)
{
    client *k = &g.cl[ci];
    uint32_t pages;
    switch (k->st) {
    case IDLE:
        g.what = "client lookup+pin";
        gen_prompt(&k->pr);
        if (do_pin(&k->pr, &k->lease, ci, k->blk, &k->m)) {
            k->lease = 0; /* LIMIT or a dead kept lease: start afresh */
            k->st = IDLE;
            return;
        }
        k->st = LOOKED;
        return;
    case LOOKED:
        pages = pages_of(&k->pr);
        if (k->m == pages) { /* everything cached: nothing to compute */
            k->st = k->lease ? ALLOCATED : IDLE;
            if (!k->lease)
                return;
            g.what = "client touch";
            int rc = pc_cache_touch(g.c, k->lease);
            RC_IS(rc, ml_live(k->lease) ? 0 : PC_E_LEASE);
            if (rc) {
                g.n_lease_err++;
                client_reset(k);
            } else
                g.L[ml_find(k->lease)].deadline = g.now + TTL;
            return;
        }
        g.what = "client alloc";
        if (do_alloc(pages - k->m, &k->lease, ci, k->blk + k->m)) {
            k->st = k->lease && ml_live(k->lease) ? DROP : IDLE;
            if (k->st == IDLE)
                k->lease = 0;
            return;
        }
        for (uint32_t i = k->m; i < pages; i++)
            blk_write(k->blk[i], k->pr.sig[i]); /* "compute" the KV */
        k->st = ALLOCATED;
        return;
    case ALLOCATED: {
        int li = ml_find(k->lease);
        if (li >= 0 && chance(100)) { /* pin another prompt meanwhile */
            g.what = "client extra pin";
            prompt other;
            gen_prompt(&other);
            uint32_t b[MAXP], m;
            if (peek(&other, NULL) == 0 &&
                g.L[li].npins + 1 > (int)g.cfg->max_pins)
                return; /* LIMIT with nothing matched: unspecified */
            uint64_t lease = k->lease;
            if (do_pin(&other, &lease, ci, b, &m) == PC_E_LEASE)
                client_reset(k);
            return;
        }
        g.what = "client insert";
        if (do_insert(&k->pr, k->blk, k->m, k->lease)) {
            client_reset(k);
            return;
        }
        k->st = INSERTED;
        return;
    }
    case INSERTED:
    case DROP: {
        int li = ml_find(k->lease);
        if (k->st == INSERTED && li >= 0 && g.L[li].deadline > g.now &&
            g.L[li].npins < (int)g.cfg->max_pins && chance(250)) {
            k->st = IDLE; /* keep the lease for the next prompt */
            return;
        }
        g.what = "client release";
        do_release(k->lease);
        client_reset(k);
        return;
    }
    }
}

/* ---- noise ---------------------------------------------------------------- */

static void bogus_insert(void)
{
    prompt pr;
    uint32_t blocks[MAXP], canon[MAXP];
    uint64_t lease = 0;
    int want;
    /* the lease the insert is made under: a live one, or none */
    mlease *l = NULL;
    for (int tries = 0; tries < 4 && !l; tries++) {
        mlease *c = ml_any_client();
        if (c && c->deadline > g.now)
            l = c;
    }
    lease = l ? l->id : 0;
    switch (below(6)) {
    case 0: { /* beyond the pool */
        g.what = "bogus insert: id beyond the pool";
        gen_fresh(&pr, 1 + below(3));
        for (uint32_t i = 0; i < pages_of(&pr); i++)
            blocks[i] = g.cap + i * 7 + below(3) * (i == 0 ? 1000000u : 1);
        want = PC_E_RANGE;
        break;
    }
    case 1: { /* a block of another lease */
        g.what = "bogus insert: another lease's block";
        int i = (int)below((uint32_t)(g.nl ? g.nl : 1));
        if (!g.nl || !g.L[i].nown || &g.L[i] == l)
            return;
        gen_fresh(&pr, 1);
        blocks[0] = g.L[i].own[below((uint32_t)g.L[i].nown)];
        want = PC_E_PERM;
        break;
    }
    case 2: { /* a FREE block, a CACHED block of another page */
        g.what = "bogus insert: FREE or CACHED block";
        pc_block_state st = chance(500) ? PC_BLOCK_FREE : PC_BLOCK_CACHED;
        uint32_t start = below(g.cap), b = UINT32_MAX;
        for (uint32_t j = 0; j < g.cap; j++)
            if (bstate((start + j) % g.cap) == st) {
                b = (start + j) % g.cap;
                break;
            }
        if (b == UINT32_MAX)
            return;
        gen_fresh(&pr, 1);
        blocks[0] = b;
        want = PC_E_PERM;
        break;
    }
    case 3: { /* canonical ids on the wrong pages */
        g.what = "bogus insert: canonical ids shifted";
        gen_prompt(&pr);
        uint32_t have[MAXP], c = peek(&pr, have);
        if (c < 2)
            return;
        pr.n = (size_t)c * P;
        for (uint32_t i = 0; i < c; i++)
            blocks[i] = have[(i + 1) % c];
        want = PC_E_PERM;
        break;
    }
    case 4: { /* the same block twice */
        g.what = "bogus insert: a block twice";
        if (!l || !l->nown)
            return;
        gen_fresh(&pr, 2);
        blocks[0] = blocks[1] = l->own[below((uint32_t)l->nown)];
        want = PC_E_INVAL;
        break;
    }
    default: { /* an unknown or ended lease, blocks otherwise fine */
        g.what = "bogus insert: unknown lease";
        gen_prompt(&pr);
        uint32_t c = peek(&pr, blocks);
        pr.n = (size_t)c * P + below(P); /* canonical ids only */
        lease = unknown_lease();
        want = PC_E_LEASE;
        break;
    }
    }
    snap before;
    take(&before);
    pc_insert_result r;
    int rc = pc_cache_insert(g.c, NSS[pr.ns].bytes, NSS[pr.ns].len, pr.tok,
                             pr.n, blocks, lease, canon, &r);
    RC_IS(rc, want);
    same(&before);
    g.n_bogus++;
}

static void noise(void)
{
    uint32_t k = below(100);
    if (k < 22) { /* lookup without pin */
        g.what = "lookup without pin";
        prompt pr;
        gen_prompt(&pr);
        uint32_t blocks[MAXP];
        uint32_t want = peek(&pr, NULL);
        pc_lookup_result r;
        int rc = pc_cache_lookup(g.c, NSS[pr.ns].bytes, NSS[pr.ns].len, pr.tok,
                                 pr.n, 0, 0, blocks, &r);
        RC_IS(rc, 0);
        PASSERT(r.pages == want && r.lease == 0, "lookup: %zu pages, want %u",
                r.pages, want);
        verify_sigs(&pr, blocks, r.pages);
        g.n_lookups++;
    } else if (k < 40) {
        bogus_insert();
    } else if (k < 46) { /* release / touch / alloc / pin of a dead lease */
        g.what = "op under an unknown or ended lease";
        uint64_t id = unknown_lease();
        snap before;
        take(&before);
        uint32_t ids[2], blocks[MAXP];
        pc_lookup_result lr;
        prompt pr;
        int rc;
        switch (below(4)) {
        case 0: rc = pc_cache_release(g.c, id); break;
        case 1: rc = pc_cache_touch(g.c, id); break;
        case 2: rc = pc_cache_alloc(g.c, 1 + below(2), &id, ids); break;
        default:
            gen_prompt(&pr);
            rc = pc_cache_lookup(g.c, NSS[pr.ns].bytes, NSS[pr.ns].len, pr.tok,
                                 pr.n, 1, id, blocks, &lr);
            break;
        }
        RC_IS(rc, PC_E_LEASE);
        same(&before);
        g.n_lease_err++;
    } else if (k < 52) { /* a heartbeat from a client */
        g.what = "touch";
        mlease *l = ml_any_client();
        if (!l)
            return;
        int rc = pc_cache_touch(g.c, l->id);
        RC_IS(rc, l->deadline > g.now ? 0 : PC_E_LEASE);
        if (!rc)
            l->deadline = g.now + TTL;
    } else if (k < 62) { /* evict */
        g.what = "evict";
        size_t n = chance(20) ? SIZE_MAX : below(6);
        pc_cache_stats s = cstats();
        size_t got = pc_cache_evict(g.c, n);
        pc_cache_stats s2 = cstats();
        uint64_t expect = n < s.tree.evictable_pages ? n : s.tree.evictable_pages;
        PASSERT(got == expect, "evicted %zu of %zu, %" PRIu64 " evictable", got,
                n, s.tree.evictable_pages);
        PASSERT(s2.pool.free == s.pool.free + got, "evicted blocks not FREE");
        g.n_evicted += got;
    } else if (k < 72) { /* watermarks */
        g.what = "maintain";
        pc_cache_stats s = cstats();
        size_t got = pc_cache_maintain(g.c);
        pc_cache_stats s2 = cstats();
        uint64_t expect = 0;
        if (s.pool.free < g.cfg->low) {
            expect = g.cfg->high - s.pool.free;
            if (expect > s.tree.evictable_pages)
                expect = s.tree.evictable_pages;
        }
        PASSERT(got == expect, "maintain evicted %zu, want %" PRIu64
                " (free %" PRIu64 ", evictable %" PRIu64 ")",
                got, expect, s.pool.free, s.tree.evictable_pages);
        PASSERT(s2.pool.free == s.pool.free + got, "evicted blocks not FREE");
        PASSERT(s2.evictions_watermark == s.evictions_watermark + got,
                "evictions_watermark");
        g.n_maintain += got;
    } else if (k < 75) { /* a ghost: takes a lease and never comes back */
        uint64_t lease = 0;
        if (chance(500)) {
            g.what = "ghost alloc";
            uint32_t ids[4];
            if (do_alloc(1 + below(4), &lease, -1, ids) == 0)
                g.n_ghosts++;
        } else {
            g.what = "ghost pin";
            prompt pr;
            gen_prompt(&pr);
            uint32_t blocks[MAXP], m;
            if (do_pin(&pr, &lease, -1, blocks, &m) == 0 && lease)
                g.n_ghosts++;
        }
    } else if (k < 85) {
        g.what = "expire";
        do_expire();
    } else if (k < 87) { /* a client vanishes: its lease becomes a ghost */
        g.what = "client vanishes";
        client *c = &g.cl[below((uint32_t)g.cfg->clients)];
        int li = ml_find(c->lease);
        if (li >= 0)
            g.L[li].client = -1;
        client_reset(c);
        g.n_vanish++;
    } else if (k < 89) { /* the clock jumps (a stall): leases run out */
        g.what = "clock jump";
        if (chance(1000 - g.cfg->jump_pm * 10)) {
            g.now += TTL / 4 + below(TTL / 2);
        } else {
            g.now += TTL + below(TTL);
            g.n_jumps++;
        }
    } else { /* next_deadline, stats: read-only */
        g.what = "read-only";
        snap before;
        take(&before);
        (void)pc_cache_next_deadline_ms(g.c);
        same(&before);
    }
}

/* ---- the run -------------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : def;
}

/* The eviction policy a run starts with; with g_switching it changes to a
 * random one now and then (a reload), which must keep every invariant. */
static pc_radix_policy g_policy = PC_POLICY_LRU;
static bool g_switching = false;

static void run(const runcfg *cfg, uint64_t salt)
{
    memset(&g, 0, sizeof(g));
    g.seed = env_u64("PC_PROP_SEED", DEFAULT_SEED);
    size_t ops = (size_t)env_u64("PC_PROP_OPS", DEFAULT_OPS);
    g.cfg = cfg;
    g.what = "setup";
    rng_state = g.seed ^ salt;
    g.now = 5000;
    g.cap = cfg->cap;
    cr_assert_leq(cfg->clients, MAXCLIENTS);
    cr_assert_leq(cfg->cap, MAXCAP);

    pc_cache_config cc;
    pc_cache_config_defaults(&cc);
    int rc = pc_pool_layout_init(&cc.pool.layout, 1, 1, 2, P, PC_DTYPE_FP32);
    cr_assert_eq(rc, 0);
    cr_assert_geq(cc.pool.layout.block_bytes, sizeof(uint64_t));
    cc.pool.backend = cfg->backend;
    cc.pool.capacity_blocks = cfg->cap;
    char shm[64];
    if (cfg->backend == PC_POOL_HOST) {
        snprintf(shm, sizeof(shm), "/pctest-prop-%ld-%s", (long)getpid(),
                 cfg->name);
        cc.pool.shm_name = shm;
    }
    cc.lease_ttl_ms = TTL;
    cc.max_leases = cfg->max_leases;
    cc.max_pins_per_lease = cfg->max_pins;
    cc.low_watermark = cfg->low;
    cc.high_watermark = cfg->high;
    cc.clock = fake_clock;
    cc.eviction_policy = g_policy;
    rc = pc_cache_create(&cc, &g.c);
    cr_assert_eq(rc, 0, "pc_cache_create: %s", pc_errname(rc));
    /* Nobody maps this pool by name: unlink it now, so that not even a
     * crash (an assert in the implementation) leaves an shm object behind.
     * The mapping stays valid; destroy's own unlink then finds nothing. */
    if (cfg->backend == PC_POOL_HOST)
        shm_unlink(shm);
    invariants();

    for (g.op = 0; g.op < ops; g.op++) {
        g.now += below(5);
        if (g_switching && below(500) == 0) {
            g.what = "switch policy";
            cc.eviction_policy = (pc_radix_policy)below(PC_POLICY_COUNT);
            rc = pc_cache_set_limits(g.c, &cc);
            PASSERT(rc == 0, "set_limits(policy %s): %s",
                    pc_radix_policy_name(cc.eviction_policy), pc_errname(rc));
        } else if (below(100) < 70)
            client_step((int)below((uint32_t)cfg->clients));
        else
            noise();
        invariants();
    }

    /* wind down: clients release, everything else expires */
    g.what = "wind down";
    for (int i = 0; i < cfg->clients; i++) {
        if (g.cl[i].lease && ml_live(g.cl[i].lease))
            do_release(g.cl[i].lease);
        client_reset(&g.cl[i]);
        invariants();
    }
    g.now += TTL;
    do_expire();
    invariants();
    pc_cache_stats s = cstats();
    PASSERT(g.nl == 0 && s.leases == 0 && s.pins == 0, "leases left");
    PASSERT(s.pool.leased == 0, "%" PRIu64 " blocks leaked", s.pool.leased);
    PASSERT(s.pool.free + s.pool.cached == g.cap, "blocks lost");
    PASSERT(s.tree.protected_pages == 0, "pages still pinned");
    size_t ev = pc_cache_evict(g.c, SIZE_MAX);
    PASSERT(ev == s.pool.cached, "evicted %zu of %" PRIu64, ev, s.pool.cached);
    invariants();
    s = cstats();
    PASSERT(s.pool.free == g.cap && s.tree.pages == 0, "not all FREE");
    for (uint32_t b = 0; b < g.cap; b++)
        PASSERT(bstate(b) == PC_BLOCK_FREE, "block %u not FREE", b);

    cr_log_info("%s: %zu ops seed %" PRIu64 ": lookups %zu (hits %zu) allocs %zu "
                "nospace %zu limit %zu inserts %zu dup-blocks %zu released %zu "
                "expired %zu lease-errors %zu bogus %zu evicted %zu "
                "watermark %zu vanished %zu ghosts %zu jumps %zu pin-checks %zu",
                cfg->name, ops, g.seed, g.n_lookups, g.n_hits, g.n_allocs,
                g.n_nospace, g.n_limit, g.n_inserts, g.n_dups, g.n_released,
                g.n_expired, g.n_lease_err, g.n_bogus, g.n_evicted,
                g.n_maintain, g.n_vanish, g.n_ghosts, g.n_jumps, g.n_pinchecks);
    /* a full-length run must have exercised what it is about */
    PASSERT(ops < 20000 ||
                (g.n_hits && (g.n_nospace || cfg->roomy) && g.n_inserts &&
                 g.n_dups && g.n_expired && g.n_evicted && g.n_bogus &&
                 g.n_lease_err),
            "a path was never taken");
    pc_cache_destroy(g.c);
    g.c = NULL;
}

Test(cache_prop, host_64_blocks, .timeout = 300)
{
    static const runcfg cfg = {"host64", PC_POOL_HOST, 64, 6, 2, 12, 3,
                               6, 12, 2, false};
    run(&cfg, 1);
}

Test(cache_prop, none_48_blocks_three_namespaces, .timeout = 300)
{
    static const runcfg cfg = {"none48", PC_POOL_NONE, 48, 6, 3, 10, 3,
                               4, 10, 2, false};
    run(&cfg, 2);
}

Test(cache_prop, none_96_blocks_eight_clients, .timeout = 300)
{
    static const runcfg cfg = {"none96", PC_POOL_NONE, 96, 8, 2, 16, 4,
                               0, 0, 1, true};
    run(&cfg, 3);
}

Test(cache_prop, tight_limits, .timeout = 300)
{
    static const runcfg cfg = {"tight", PC_POOL_NONE, 48, 6, 2, 6, 2,
                               8, 24, 5, false};
    run(&cfg, 4);
}

/* The same machinery under the other eviction policies: whatever the order,
 * pinned pages stay, no block leaks, every cross-check holds. */
Test(cache_prop, s3fifo_48_blocks, .timeout = 300)
{
    static const runcfg cfg = {"s3fifo48", PC_POOL_NONE, 48, 6, 3, 10, 3,
                               4, 10, 2, false};
    g_policy = PC_POLICY_S3FIFO;
    run(&cfg, 5);
}

Test(cache_prop, switching_policies_64_blocks, .timeout = 300)
{
    static const runcfg cfg = {"switch64", PC_POOL_NONE, 64, 6, 2, 12, 3,
                               6, 12, 2, false};
    g_switching = true;
    run(&cfg, 6);
}

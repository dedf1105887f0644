/*
 * radix/auto.c - the auto eviction policy: S3-FIFO's bookkeeping (its
 * methods come from policies.c), but each victim comes from LRU (the head
 * of the core's list) or from S3-FIFO, whichever of two miniature
 * simulations hits more lately.
 *
 *   lookup's pages ──hash < thr?──► sampled page ──┬──► mini LRU      hits
 *   (observe)        (1 in rate)                   └──► mini S3-FIFO  hits
 *                                                          │
 *   every AUTO_EVERY sampled: decayed scores ──► lead big enough? switch
 *                                                          │
 *   pc_radix_evict ──► victim: auto_s3 ? S3-FIFO's pick : LRU list head
 *
 * The simulations are SHARDS-style spatial samples (Waldspurger et al.,
 * ATC'17): a page is sampled when a cheap hash of it falls under a
 * threshold, and each simulation holds capacity x the sampling rate pages,
 * about MINI_PAGES whatever the capacity (pc_radix_set_capacity).  A
 * simulation's pages sit in one slot array, linked into FIFO lists by
 * index; an open-addressing table (proto/hashtab.h) finds a page's slot:
 *
 *   tab[hash & mask] = slot + 1 ──► slot[] { key, prev, next, q, freq }
 *                                    q: MQ_MAIN | MQ_SMALL | MQ_GHOST | MQ_FREE
 *
 * S3-FIFO wins big on small caches, LRU where the reuse distance fits the
 * cache.  Without a capacity there are no simulations and auto is LRU.
 */
#include "radix/radix_int.h"

#include <stdio.h>

#include "proto/hashtab.h"

#define MINI_PAGES 2048u /* a simulation holds about this many pages     */
#define MINI_MIN 16u
#define MINI_NONE UINT32_MAX
#define AUTO_EVERY 512u  /* sampled accesses between decisions           */

/* ---- the miniature simulations ---------------------------------------------- */

static bool mtab_empty(const void *s) { return *(const uint32_t *)s == 0; }

static uint32_t mtab_hash(const void *ctx, const void *s)
{
    const mini *m = ctx;
    return (uint32_t)m->slot[*(const uint32_t *)s - 1].key;
}

static const pc_hashtab_ops mtab_table = {sizeof(uint32_t), mtab_empty,
                                          mtab_hash};

static void ml_push(mini *m, unsigned q, uint32_t i)
{
    mlist *l = &m->q[q];
    m->slot[i].q = (uint8_t)q;
    m->slot[i].prev = l->tail;
    m->slot[i].next = MINI_NONE;
    if (l->tail != MINI_NONE)
        m->slot[l->tail].next = i;
    else
        l->head = i;
    l->tail = i;
    l->n++;
}

static void ml_unlink(mini *m, uint32_t i)
{
    mslot *x = &m->slot[i];
    mlist *l = &m->q[x->q];
    if (x->prev != MINI_NONE)
        m->slot[x->prev].next = x->next;
    else
        l->head = x->next;
    if (x->next != MINI_NONE)
        m->slot[x->next].prev = x->prev;
    else
        l->tail = x->prev;
    l->n--;
}

static uint32_t mt_find(const mini *m, uint64_t key)
{
    uint32_t mask = m->tcap - 1;
    for (uint32_t i = (uint32_t)key & mask; m->tab[i]; i = (i + 1) & mask)
        if (m->slot[m->tab[i] - 1].key == key)
            return m->tab[i] - 1;
    return MINI_NONE;
}

static void mt_add(mini *m, uint32_t si)
{
    uint32_t mask = m->tcap - 1, i = (uint32_t)m->slot[si].key & mask;
    while (m->tab[i])
        i = (i + 1) & mask;
    m->tab[i] = si + 1;
}

static void mt_del(mini *m, uint32_t si)
{
    uint32_t mask = m->tcap - 1, i = (uint32_t)m->slot[si].key & mask;
    while (m->tab[i] != si + 1)
        i = (i + 1) & mask;
    pc_hashtab_delete(m->tab, mask, i, &mtab_table, m);
}

/* Drop slot i from the simulation (back to the free list). */
static void mini_drop(mini *m, uint32_t i)
{
    ml_unlink(m, i);
    mt_del(m, i);
    ml_push(m, MQ_FREE, i);
}

/* S3-FIFO: make room for one page (the rules of pc_radix_s3_pick). */
static void mini_s3_room(mini *m)
{
    while (m->q[MQ_SMALL].n + m->q[MQ_MAIN].n >= m->cap) {
        bool small = m->q[MQ_SMALL].n &&
                     (m->q[MQ_SMALL].n >= m->small_cap || !m->q[MQ_MAIN].n);
        uint32_t i = m->q[small ? MQ_SMALL : MQ_MAIN].head;
        ml_unlink(m, i);
        if (m->slot[i].freq) {
            m->slot[i].freq = small ? 0 : m->slot[i].freq - 1;
            ml_push(m, MQ_MAIN, i);
        } else if (small) {
            if (m->q[MQ_GHOST].n >= m->ghost_cap)
                mini_drop(m, m->q[MQ_GHOST].head);
            ml_push(m, MQ_GHOST, i);
        } else {
            mt_del(m, i);
            ml_push(m, MQ_FREE, i);
        }
    }
}

/* One access to a page: a hit or a miss that caches it. */
static void mini_access(mini *m, uint64_t key)
{
    uint32_t i = mt_find(m, key);
    if (i != MINI_NONE && m->slot[i].q != MQ_GHOST) {
        m->hits++;
        m->window++;
        if (!m->s3) { /* LRU: to the tail */
            ml_unlink(m, i);
            ml_push(m, MQ_MAIN, i);
        } else if (m->slot[i].freq < S3_FREQ_MAX) {
            m->slot[i].freq++;
        }
        return;
    }
    if (!m->s3) {
        if (m->q[MQ_MAIN].n >= m->cap)
            mini_drop(m, m->q[MQ_MAIN].head);
    } else {
        if (i != MINI_NONE) /* a ghost: back, into main */
            mini_drop(m, i);
        mini_s3_room(m);
    }
    uint32_t f = m->q[MQ_FREE].head;
    assert(f != MINI_NONE);
    ml_unlink(m, f);
    m->slot[f].key = key;
    m->slot[f].freq = 0;
    mt_add(m, f);
    ml_push(m, !m->s3 || i != MINI_NONE ? MQ_MAIN : MQ_SMALL, f);
}

static void mini_free(pc_radix *t, mini *m)
{
    rx_free(t, m->slot);
    rx_free(t, m->tab);
    memset(m, 0, sizeof(*m));
}

static void sims_free(pc_radix *t)
{
    mini_free(t, &t->sim[0]);
    mini_free(t, &t->sim[1]);
}

static int mini_init(pc_radix *t, mini *m, uint32_t cap, bool s3)
{
    memset(m, 0, sizeof(*m));
    m->s3 = s3;
    m->cap = cap;
    m->small_cap = cap / 10 ? cap / 10 : 1;
    m->ghost_cap = s3 ? cap * S3_GHOST_FACTOR : 0;
    m->nslots = cap + m->ghost_cap + 1;
    m->tcap = 64;
    while (m->tcap < 2 * m->nslots)
        m->tcap *= 2;
    m->slot = rx_alloc(t, (size_t)m->nslots * sizeof(*m->slot));
    m->tab = rx_alloc(t, (size_t)m->tcap * sizeof(*m->tab));
    if (!m->slot || !m->tab) {
        mini_free(t, m);
        return PC_E_NOMEM;
    }
    memset(m->tab, 0, (size_t)m->tcap * sizeof(*m->tab));
    for (unsigned q = 0; q < MQ_N; q++)
        m->q[q] = (mlist){MINI_NONE, MINI_NONE, 0};
    for (uint32_t i = 0; i < m->nslots; i++)
        ml_push(m, MQ_FREE, i);
    return 0;
}

/* (Re)build the simulations for the capacity (known); the old ones stay
 * on failure. */
static int sims_build(pc_radix *t)
{
    uint64_t rate = t->capacity / MINI_PAGES; /* 1 page in `rate` sampled */
    uint64_t thr = rate > 1 ? (UINT64_C(1) << 32) / rate : UINT64_C(1) << 32;
    uint64_t cap = t->capacity * thr >> 32; /* capacity < 2^32: no overflow */
    if (cap < MINI_MIN)
        cap = MINI_MIN;
    mini n[2];
    if (mini_init(t, &n[0], (uint32_t)cap, false))
        return PC_E_NOMEM;
    if (mini_init(t, &n[1], (uint32_t)cap, true)) {
        mini_free(t, &n[0]);
        return PC_E_NOMEM;
    }
    sims_free(t);
    t->sim[0] = n[0];
    t->sim[1] = n[1];
    t->sample_thr = thr;
    t->auto_score[0] = t->auto_score[1] = 0;
    t->auto_next = t->auto_sampled + AUTO_EVERY;
    return 0;
}

/* ---- the policy -------------------------------------------------------------- */

/* observe: feed a lookup's pages to the simulations, then maybe change
 * course.  Scores decay by 1/16 every AUTO_EVERY sampled accesses (a
 * memory of ~16 windows).  LRU is the safe side: S3-FIFO takes over only
 * when its score leads by a quarter plus two standard deviations of the
 * noise, LRU takes back at a lead of 1/16 plus the same.  Why so reluctant:
 * every switch costs, since each order then evicts pages the other would
 * have kept, and a rule that flips on small leads lost to both (symmetric
 * 1/16 with a 1/8 decay: -4.6% against LRU on the synthetic trace at 1.5%
 * of its working set; this rule: never below LRU on the full Mooncake
 * traces, bench/README.md "trace_replay"). */
static void auto_observe(pc_radix *t, uint32_t root_hash,
                         const uint32_t *tokens, size_t pages)
{
    if (!t->sim[0].slot) /* no capacity known */
        return;
    for (size_t i = 0; i < pages; i++) {
        const uint32_t *pg = tokens + i * t->P;
        uint32_t h = (pg[0] * 0x9E3779B1u) ^ (pg[t->P - 1] * 0x85EBCA77u) ^
                     ((uint32_t)i * 0xC2B2AE3Du) ^ root_hash;
        h ^= h >> 15;
        h *= 0x2C1B3C6Du;
        h ^= h >> 12;
        if (h >= t->sample_thr)
            continue;
        uint64_t key = page_ident(t, root_hash, pg, i);
        mini_access(&t->sim[0], key);
        mini_access(&t->sim[1], key);
        if (++t->auto_sampled < t->auto_next)
            continue;
        t->auto_next = t->auto_sampled + AUTO_EVERY;
        for (int k = 0; k < 2; k++) {
            t->auto_score[k] += t->sim[k].window - t->auto_score[k] / 16;
            t->sim[k].window = 0;
        }
        uint64_t cur = t->auto_score[t->auto_s3], other = t->auto_score[!t->auto_s3];
        /* ~1 standard deviation of the difference of two hit counts */
        uint64_t sd = 0;
        while ((sd + 1) * (sd + 1) <= cur + other)
            sd++;
        if (other > cur + cur / (t->auto_s3 ? 16 : 4) + 2 * sd + 8) {
            t->auto_s3 = !t->auto_s3;
            t->auto_switches++;
        }
    }
}

/* Whichever order the simulations favour; S3-FIFO's ghost remembers what
 * leaves its small queue either way (pc_radix_s3_evicting). */
static pc_radix_node *auto_pick(pc_radix *t)
{
    return t->auto_s3 ? pc_radix_s3_pick(t) : lru_head(t);
}

/* A leaf set aside leaves the order it was picked from (the choice does not
 * change during an eviction call); in the other it stays. */
static void auto_aside(pc_radix *t, pc_radix_node *x)
{
    if (t->auto_s3)
        pc_radix_heap_aside(t, x);
    else
        lru_aside(t, x);
}

static void auto_restore(pc_radix *t)
{
    lru_restore(t);
    pc_radix_heap_restore(t);
}

/* prepare: the heaps, and the simulations when the capacity is known; on
 * failure heaps made for this call go again. */
static int auto_prepare(pc_radix *t)
{
    bool had_heaps = t->hcap != 0;
    if (pc_radix_heap_prepare(t))
        return PC_E_NOMEM;
    if (t->capacity && sims_build(t)) {
        if (!had_heaps)
            pc_radix_heaps_free(t);
        return PC_E_NOMEM;
    }
    return 0;
}

static void auto_stop(pc_radix *t)
{
    pc_radix_heap_stop(t);
    sims_free(t);
    t->auto_s3 = false;
}

#define CHECK(cond, ...) PC_CHECK_OR_OUT("pc_radix_check", cond, __VA_ARGS__)

/* The simulations: lists well linked, every live page findable. */
static int sims_check(const pc_radix *t)
{
    int rc = 0;
    CHECK(!t->sim[0].slot == !t->sim[1].slot, "one simulation missing");
    for (int k = 0; k < 2; k++) {
        const mini *m = &t->sim[k];
        if (!m->slot)
            continue;
        uint32_t total = 0, entries = 0;
        for (unsigned q = 0; q < MQ_N; q++) {
            uint32_t n = 0, prev = MINI_NONE;
            for (uint32_t i = m->q[q].head; i != MINI_NONE; i = m->slot[i].next) {
                CHECK(i < m->nslots && m->slot[i].q == q && m->slot[i].prev == prev,
                      "simulation %d list %u broken", k, q);
                CHECK(q == MQ_FREE || mt_find(m, m->slot[i].key) == i,
                      "simulation %d page not found", k);
                prev = i;
                CHECK(++n <= m->nslots, "simulation %d list %u loops", k, q);
            }
            CHECK(n == m->q[q].n && m->q[q].tail == prev,
                  "simulation %d list %u counts %u, holds %u", k, q, m->q[q].n, n);
            total += n;
        }
        CHECK(total == m->nslots, "simulation %d holds %u of %u slots", k, total,
              m->nslots);
        CHECK(m->q[MQ_MAIN].n + m->q[MQ_SMALL].n <= m->cap &&
                  m->q[MQ_GHOST].n <= m->ghost_cap,
              "simulation %d over capacity", k);
        if ((rc = pc_hashtab_check(m->tab, m->tcap, &mtab_table, m, &entries,
                                   "pc_radix_check")))
            goto out;
        CHECK(entries == m->nslots - m->q[MQ_FREE].n,
              "simulation %d table holds %u of %u pages", k, entries,
              m->nslots - m->q[MQ_FREE].n);
    }
    CHECK(!t->capacity || t->sim[0].slot, "auto without its simulations");
out:
    return rc;
}

static int auto_check(const pc_radix *t)
{
    int rc = pc_radix_s3_check(t);
    return rc ? rc : sims_check(t);
}

/* The other policies' check: no simulations. */
int pc_radix_auto_check_idle(const pc_radix *t)
{
    int rc = 0;
    CHECK(!t->sim[0].slot && !t->sim[1].slot, "simulations kept under %s",
          pc_radix_policy_name(t->ops->id));
out:
    return rc;
}

const pc_radix_policy_ops pc_radix_auto_ops = {
    .version = PC_RADIX_POLICY_OPS_VERSION,
    .id = PC_POLICY_AUTO,
    .prepare = auto_prepare,
    .stop = auto_stop,
    .rebuild = pc_radix_s3_rebuild,
    .reserve = pc_radix_heap_reserve,
    .admit = pc_radix_s3_admit,
    .touch = pc_radix_s3_touch,
    .update = pc_radix_heap_update,
    .trim = pc_radix_s3_trim,
    .observe = auto_observe,
    .pick = auto_pick,
    .evicting = pc_radix_s3_evicting,
    .aside = auto_aside,
    .restore = auto_restore,
    .check = auto_check,
};

/* ---- the API of auto ---------------------------------------------------------- */

void pc_radix_auto_stats_get(const pc_radix *t, pc_radix_auto_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (!t || t->ops != &pc_radix_auto_ops)
        return;
    out->using_s3fifo = t->auto_s3;
    out->switches = t->auto_switches;
    out->sampled = t->auto_sampled;
    out->lru_hits = t->sim[0].hits;
    out->s3fifo_hits = t->sim[1].hits;
}

int pc_radix_set_capacity(pc_radix *t, uint64_t pages)
{
    if (!t)
        return PC_E_INVAL;
    if (pages > UINT32_MAX)
        return PC_E_RANGE;
    uint64_t old = t->capacity;
    t->capacity = pages;
    if (pages == old)
        return 0;
    if (!pages) { /* auto without a capacity: plain LRU victims */
        sims_free(t);
        t->auto_s3 = false;
        return 0;
    }
    int rc = t->ops == &pc_radix_auto_ops ? sims_build(t) : 0;
    if (rc)
        t->capacity = old;
    return rc;
}

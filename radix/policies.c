/*
 * radix/policies.c - the eviction policies lru, lfu, fifo, priority and
 * s3fifo, one ops table each (the table's type and the call points:
 * radix_int.h; auto, which reuses s3fifo's methods: auto.c).
 *
 * What every policy has for free, kept by the core: the LRU list of the
 * unlocked nodes, each before its parent (so its head is an evictable
 * leaf), last_access, hits and the lock counts.  LRU needs nothing else:
 * its victim is the list's head, O(1) per page with no scan and no heap,
 * and its other methods are NULL.
 *
 * The others keep every evictable leaf (unlocked, no children, not a root)
 * in a binary min-heap (proto/heap.h) by (pkey, last_access); s3fifo one
 * heap per queue.  Only leaves are in a heap, so its top is always a legal
 * victim, and a node joins when its last child goes, at the place its own
 * key gives it.  The heaps always have room for every node (reserved before
 * a node is created), so pushes never fail.
 *
 * A namespace's reserve (limits.c) can veto a victim: the driver then sets
 * the leaf aside (aside: out of the heap, parked at the top of the heap's
 * own array; LRU: onto a side list) and picks again; restore puts every
 * such leaf back when the eviction call ends.  No allocation either way.
 *
 *   policy    pkey of a node                 victim           O(per page)
 *   lru       -                              list head        1
 *   lfu       L + hits + 1 (L: last victim)  heap top         log n
 *   fifo      tick of its birth              heap top         log n
 *   priority  its namespace's priority       heap top         log n
 *   s3fifo    tick of entry into its queue   small or main    log n
 *
 * s3fifo's two queues, each a heap by the tick of entry:
 *
 *   new leaf ──► small ─── hit while there ───► main ◄──┐ hit: the counter
 *      │           │ no hit: evicted, its pages  ▲  │   │ drops by one,
 *      │           ▼                             │  └───┘ another round
 *      │         ghost (4x the cached pages)     │  no hit: evicted
 *      └── its first page in the ghost ──────────┘
 */
#include "radix/radix_int.h"

#include <stdio.h>

#include "proto/hashtab.h"

/* ---- the heap the policies share ------------------------------------------- */

static bool node_before(const void *a, const void *b)
{
    const pc_radix_node *x = a, *y = b;
    return x->pkey != y->pkey ? x->pkey < y->pkey
                              : x->last_access < y->last_access;
}

static const pc_heap_ops node_heap = {node_before,
                                      offsetof(pc_radix_node, hidx)};

static inline bool heap_wants(const pc_radix_node *n)
{
    return n->parent && n->lock_ref == 0 && n->kids.n == 0;
}

/* s3fifo's queue; 0 under the other policies (their pol is 0). */
static inline pc_heap *heap_of(pc_radix *t, const pc_radix_node *n)
{
    return &t->heap[S3_Q(n)];
}

static void heap_push(pc_radix *t, pc_radix_node *n)
{
    assert(heap_of(t, n)->n + 1 < t->hcap);
    pc_heap_push(heap_of(t, n), &node_heap, n);
}

static void heap_remove(pc_radix *t, pc_radix_node *n)
{
    pc_heap_remove(heap_of(t, n), &node_heap, n);
}

/* n's key changed: restore the heap order around it. */
static void heap_fix(pc_radix *t, pc_radix_node *n)
{
    pc_heap_fix(heap_of(t, n), &node_heap, n);
}

/* update: make n's heap membership match its state (leaf, unlocked). */
void pc_radix_heap_update(pc_radix *t, pc_radix_node *n)
{
    bool want = heap_wants(n);
    if (want && !n->hidx)
        heap_push(t, n);
    else if (!want && n->hidx)
        heap_remove(t, n);
}

/* reserve: room for `nodes` nodes in both heaps. */
int pc_radix_heap_reserve(pc_radix *t, uint64_t nodes)
{
    if (nodes + 1 < t->hcap)
        return 0;
    uint64_t cap = t->hcap ? t->hcap : 64;
    while (cap <= nodes + 1)
        cap *= 2;
    if (cap > UINT32_MAX)
        return PC_E_NOMEM;
    void **h[2] = {rx_alloc(t, cap * sizeof(void *)),
                   rx_alloc(t, cap * sizeof(void *))};
    if (!h[0] || !h[1]) {
        rx_free(t, h[0]);
        rx_free(t, h[1]);
        return PC_E_NOMEM;
    }
    for (int q = 0; q < 2; q++) {
        if (t->heap[q].n)
            memcpy(h[q], t->heap[q].v, (t->heap[q].n + 1) * sizeof(void *));
        rx_free(t, t->heap[q].v);
        t->heap[q].v = h[q];
    }
    t->hcap = (uint32_t)cap;
    return 0;
}

void pc_radix_heaps_free(pc_radix *t)
{
    for (int q = 0; q < 2; q++) {
        rx_free(t, t->heap[q].v);
        t->heap[q] = (pc_heap){NULL, 0};
    }
    t->hcap = 0;
}

/* prepare: heaps with room for every node (kept if they are there). */
int pc_radix_heap_prepare(pc_radix *t)
{
    return pc_radix_heap_reserve(t, t->st.nodes + 1);
}

static void ghost_free(pc_radix *t, ghost *g);

/* stop: every heap policy's state goes; the heaps' storage stays for the
 * next policy (LRU's rebuild frees it). */
void pc_radix_heap_stop(pc_radix *t)
{
    pc_heap_clear(&t->heap[0], &node_heap);
    pc_heap_clear(&t->heap[1], &node_heap);
    ghost_free(t, &t->gh);
    t->lfu_L = 0;
    t->s3_pages[0] = t->s3_pages[1] = 0;
}

/* trim: a leaf emptied by eviction leaves its heap. */
static void heap_trim(pc_radix *t, pc_radix_node *x, size_t take)
{
    (void)take;
    if (!x->npages && x->hidx)
        heap_remove(t, x);
}

/* rebuild: every node's key from what the core keeps (recency, hits), in
 * pre-order, and every evictable leaf into the heaps: O(n log n). */
static void heap_rebuild(pc_radix *t,
                         void (*init)(pc_radix *t, const pc_radix_node *root,
                                      pc_radix_node *n))
{
    pc_radix_node *r;
    KT_FOREACH(&t->ns, i, r) {
        int depth = 0;
        for (pc_radix_node *n = pc_radix_next_preorder(t, r, &depth); n;
             n = pc_radix_next_preorder(t, n, &depth)) {
            n->pol = 0;
            init(t, r, n);
            if (heap_wants(n))
                heap_push(t, n);
        }
    }
}

/* The victim of a one-heap policy. */
static pc_radix_node *heap_top(pc_radix *t)
{
    return pc_heap_top(&t->heap[0]);
}

/* aside: out of its heap, onto the top of that heap's array (v[hcap - 1]
 * downwards).  A heap and its set-aside leaves are at most the nodes, and
 * hcap > nodes, so the two never meet: no allocation, O(log n). */
void pc_radix_heap_aside(pc_radix *t, pc_radix_node *x)
{
    unsigned q = S3_Q(x);
    heap_remove(t, x);
    assert(t->heap[q].n + t->heap_aside[q] + 1 < t->hcap);
    t->heap[q].v[t->hcap - 1 - t->heap_aside[q]++] = x;
}

/* restore: every set-aside leaf back into its heap, lowest slot first so a
 * push never writes over one still waiting. */
void pc_radix_heap_restore(pc_radix *t)
{
    for (unsigned q = 0; q < 2; q++)
        while (t->heap_aside[q]) {
            uint32_t k = --t->heap_aside[q];
            heap_push(t, t->heap[q].v[t->hcap - 1 - k]);
        }
}

static int ghost_check(const pc_radix *t, bool used);

#define CHECK(cond, ...) PC_CHECK_OR_OUT("pc_radix_check", cond, __VA_ARGS__)

/* What the heap policies keep: exactly the evictable leaves in `queues`
 * heaps (0: none at all, LRU), each ordered; s3fifo's page counts. */
static int check_heaps(const pc_radix *t, unsigned queues)
{
    int rc = 0;
    uint64_t wanted = 0, s3_pages[2] = {0, 0};
    const char *name = pc_radix_policy_name(t->ops->id);
    pc_radix_node *r;
    KT_FOREACH(&t->ns, i, r) {
        int depth = 0;
        for (const pc_radix_node *n = pc_radix_next_preorder(t, r, &depth); n;
             n = pc_radix_next_preorder(t, n, &depth)) {
            const pc_heap *h = &t->heap[S3_Q(n)];
            if (queues == 0) {
                CHECK(n->hidx == 0, "node %p in a heap under lru", (void *)n);
                continue;
            }
            CHECK(queues == 2 || n->pol == 0, "node %p has s3fifo state under %s",
                  (void *)n, name);
            CHECK(heap_wants(n) == (n->hidx != 0),
                  "node %p heap membership %u, evictable leaf %d", (void *)n,
                  n->hidx, (int)heap_wants(n));
            CHECK(!n->hidx || (n->hidx <= h->n && h->v[n->hidx] == n),
                  "node %p heap index %u stale", (void *)n, n->hidx);
            wanted += heap_wants(n);
            s3_pages[S3_Q(n)] += n->npages;
        }
    }
    if (queues == 0) {
        CHECK(t->heap[0].n == 0 && t->heap[1].n == 0 && t->hcap == 0 &&
                  !t->heap[0].v && !t->heap[1].v,
              "heaps kept under lru");
        goto out;
    }
    CHECK(t->hcap > t->st.nodes, "heap capacity %u for %llu nodes", t->hcap,
          (unsigned long long)t->st.nodes);
    CHECK(t->heap[0].n + (uint64_t)t->heap[1].n == wanted,
          "heaps hold %u + %u, %llu evictable leaves", t->heap[0].n,
          t->heap[1].n, (unsigned long long)wanted);
    for (unsigned q = 0; q < 2; q++)
        if ((rc = pc_heap_check(&t->heap[q], &node_heap, "pc_radix_check")))
            goto out;
    if (queues == 1)
        CHECK(t->heap[1].n == 0, "second heap used by %s", name);
    else
        CHECK(s3_pages[0] == t->s3_pages[0] && s3_pages[1] == t->s3_pages[1],
              "s3fifo pages small %llu main %llu, recomputed %llu %llu",
              (unsigned long long)t->s3_pages[0],
              (unsigned long long)t->s3_pages[1],
              (unsigned long long)s3_pages[0], (unsigned long long)s3_pages[1]);
out:
    return rc;
}

/* The check of every policy but auto: its heaps, no ghost unless s3fifo,
 * no simulations. */
static int check_policy(const pc_radix *t, unsigned queues)
{
    int rc = check_heaps(t, queues);
    if (!rc)
        rc = ghost_check(t, queues == 2);
    if (!rc)
        rc = pc_radix_auto_check_idle(t);
    return rc;
}

/* ---- lru ------------------------------------------------------------------- */

static pc_radix_node *lru_pick(pc_radix *t)
{
    pc_radix_node *x = lru_head(t);
    if (x) {
        __builtin_prefetch(x->lru.next); /* the next victim, most likely */
        __builtin_prefetch(&x->parent->kids.slots[x->hash & (x->parent->kids.cap - 1)]);
    }
    return x;
}

/* The policy before kept heaps (it emptied them in its stop). */
static void lru_rebuild(pc_radix *t) { pc_radix_heaps_free(t); }

static int lru_check(const pc_radix *t) { return check_policy(t, 0); }

const pc_radix_policy_ops pc_radix_lru_ops = {
    .version = PC_RADIX_POLICY_OPS_VERSION,
    .id = PC_POLICY_LRU,
    .rebuild = lru_rebuild,
    .pick = lru_pick,
    .aside = lru_aside,
    .restore = lru_restore,
    .check = lru_check,
};

/* ---- lfu: LFU with dynamic ageing (LFU-DA) --------------------------------- */

static void lfu_init(pc_radix *t, const pc_radix_node *root, pc_radix_node *n)
{
    (void)t, (void)root;
    n->pkey = n->hits + 1;
}

static void lfu_rebuild(pc_radix *t) { heap_rebuild(t, lfu_init); }

static void lfu_admit(pc_radix *t, pc_radix_node *n, const pc_radix_node *root,
                      const uint32_t *page, size_t index)
{
    (void)root, (void)page, (void)index;
    n->pkey = t->lfu_L + 1;
    pc_radix_heap_update(t, n);
}

/* Every node of the path gets its new frequency; only n can be a leaf. */
static void lfu_touch(pc_radix *t, pc_radix_node *n, bool hit)
{
    (void)hit;
    for (pc_radix_node *p = n; p->parent; p = p->parent)
        p->pkey = t->lfu_L + p->hits + 1;
    if (n->hidx)
        heap_fix(t, n);
}

/* Ageing: newcomers start at the key of the last victim. */
static void lfu_evicting(pc_radix *t, pc_radix_node *x, size_t take)
{
    (void)take;
    if (x->pkey > t->lfu_L)
        t->lfu_L = x->pkey;
}

static int one_heap_check(const pc_radix *t) { return check_policy(t, 1); }

const pc_radix_policy_ops pc_radix_lfu_ops = {
    .version = PC_RADIX_POLICY_OPS_VERSION,
    .id = PC_POLICY_LFU,
    .prepare = pc_radix_heap_prepare,
    .stop = pc_radix_heap_stop,
    .rebuild = lfu_rebuild,
    .reserve = pc_radix_heap_reserve,
    .admit = lfu_admit,
    .touch = lfu_touch,
    .update = pc_radix_heap_update,
    .trim = heap_trim,
    .pick = heap_top,
    .evicting = lfu_evicting,
    .aside = pc_radix_heap_aside,
    .restore = pc_radix_heap_restore,
    .check = one_heap_check,
};

/* ---- fifo and priority ----------------------------------------------------- */

/* Their keys do not change with use, but last_access breaks ties. */
static void recency_touch(pc_radix *t, pc_radix_node *n, bool hit)
{
    (void)hit;
    if (n->hidx)
        heap_fix(t, n);
}

/* Insertion order is not kept across a switch; recency is. */
static void fifo_init(pc_radix *t, const pc_radix_node *root, pc_radix_node *n)
{
    (void)t, (void)root;
    n->pkey = n->last_access;
}

static void fifo_rebuild(pc_radix *t) { heap_rebuild(t, fifo_init); }

static void fifo_admit(pc_radix *t, pc_radix_node *n, const pc_radix_node *root,
                       const uint32_t *page, size_t index)
{
    (void)root, (void)page, (void)index;
    n->pkey = t->tick + 1; /* its birth: the insert's touch tick */
    pc_radix_heap_update(t, n);
}

const pc_radix_policy_ops pc_radix_fifo_ops = {
    .version = PC_RADIX_POLICY_OPS_VERSION,
    .id = PC_POLICY_FIFO,
    .prepare = pc_radix_heap_prepare,
    .stop = pc_radix_heap_stop,
    .rebuild = fifo_rebuild,
    .reserve = pc_radix_heap_reserve,
    .admit = fifo_admit,
    .touch = recency_touch,
    .update = pc_radix_heap_update,
    .trim = heap_trim,
    .pick = heap_top,
    .aside = pc_radix_heap_aside,
    .restore = pc_radix_heap_restore,
    .check = one_heap_check,
};

static void prio_init(pc_radix *t, const pc_radix_node *root, pc_radix_node *n)
{
    (void)t;
    n->pkey = root->pkey;
}

static void prio_rebuild(pc_radix *t) { heap_rebuild(t, prio_init); }

static void prio_admit(pc_radix *t, pc_radix_node *n, const pc_radix_node *root,
                       const uint32_t *page, size_t index)
{
    (void)page, (void)index;
    n->pkey = root->pkey;
    pc_radix_heap_update(t, n);
}

const pc_radix_policy_ops pc_radix_priority_ops = {
    .version = PC_RADIX_POLICY_OPS_VERSION,
    .id = PC_POLICY_PRIORITY,
    .prepare = pc_radix_heap_prepare,
    .stop = pc_radix_heap_stop,
    .rebuild = prio_rebuild,
    .reserve = pc_radix_heap_reserve,
    .admit = prio_admit,
    .touch = recency_touch,
    .update = pc_radix_heap_update,
    .trim = heap_trim,
    .pick = heap_top,
    .aside = pc_radix_heap_aside,
    .restore = pc_radix_heap_restore,
    .check = one_heap_check,
};

/* ---- s3fifo: the ghost ------------------------------------------------------ */

static bool ghost_ent_empty(const void *s)
{
    return ((const ghost_ent *)s)->key == 0;
}

static uint32_t ghost_ent_hash(const void *ctx, const void *s)
{
    (void)ctx;
    return (uint32_t)((const ghost_ent *)s)->key;
}

static const pc_hashtab_ops ghost_table = {sizeof(ghost_ent), ghost_ent_empty,
                                           ghost_ent_hash};

static ghost_ent *ghost_find(ghost *g, uint64_t key)
{
    if (!g->rcap)
        return NULL;
    uint32_t mask = 2 * g->rcap - 1;
    for (uint32_t i = (uint32_t)key & mask; g->set[i].key; i = (i + 1) & mask)
        if (g->set[i].key == key)
            return &g->set[i];
    return NULL;
}

static void ghost_unset(ghost *g, ghost_ent *e)
{
    pc_hashtab_delete(g->set, 2 * g->rcap - 1, (uint32_t)(e - g->set),
                      &ghost_table, NULL);
}

static void ghost_set(ghost *g, uint64_t key, uint64_t seq)
{
    uint32_t mask = 2 * g->rcap - 1, i = (uint32_t)key & mask;
    while (g->set[i].key && g->set[i].key != key)
        i = (i + 1) & mask;
    g->set[i].key = key;
    g->set[i].seq = seq;
}

static void ghost_free(pc_radix *t, ghost *g)
{
    rx_free(t, g->ring);
    rx_free(t, g->set);
    memset(g, 0, sizeof(*g));
}

/* Grow to rcap (a power of two), keeping the newest entries; false if out
 * of memory (the ghost then just stays smaller). */
static bool ghost_grow(pc_radix *t, ghost *g, uint32_t rcap)
{
    uint64_t *ring = rx_alloc(t, (size_t)rcap * sizeof(*ring));
    ghost_ent *set = rx_alloc(t, (size_t)2 * rcap * sizeof(*set));
    if (!ring || !set) {
        rx_free(t, ring);
        rx_free(t, set);
        return false;
    }
    memset(set, 0, (size_t)2 * rcap * sizeof(*set));
    ghost ng = {ring, set, rcap, 0, 0};
    for (uint64_t s = g->seq - g->count; s < g->seq; s++) {
        uint64_t key = g->ring[s & (g->rcap - 1)];
        ghost_ent *e = ghost_find(g, key);
        if (e && e->seq == s) { /* still a member, not a stale ring slot */
            ng.ring[ng.seq & (rcap - 1)] = key;
            ghost_set(&ng, key, ng.seq++);
            ng.count++;
        }
    }
    ghost_free(t, g);
    *g = ng;
    return true;
}

/* Remember an evicted page; the ghost holds S3_GHOST_FACTOR times as many
 * pages as the cache, oldest forgotten first. */
static void ghost_add(pc_radix *t, uint64_t key)
{
    ghost *g = &t->gh;
    uint64_t want = t->st.pages * S3_GHOST_FACTOR;
    if (want < 64)
        want = 64;
    if (ghost_find(g, key)) /* already remembered: keep the older slot */
        return;
    if (g->count == g->rcap && g->rcap < want && g->rcap < (1u << 30))
        ghost_grow(t, g, g->rcap ? 2 * g->rcap : 64);
    if (!g->rcap)
        return;
    uint32_t rmask = g->rcap - 1;
    /* Ring slots of pages taken back still count: they age out in order. */
    while (g->count && (g->count == g->rcap || g->count >= want)) {
        uint64_t old = g->seq - g->count;
        ghost_ent *e = ghost_find(g, g->ring[old & rmask]);
        if (e && e->seq == old)
            ghost_unset(g, e);
        g->count--;
    }
    g->ring[g->seq & rmask] = key;
    ghost_set(g, key, g->seq++);
    g->count++;
}

/* Was this page evicted recently?  Forgets it if so. */
static bool ghost_take(pc_radix *t, uint64_t key)
{
    ghost_ent *e = ghost_find(&t->gh, key);
    if (!e)
        return false;
    ghost_unset(&t->gh, e);
    return true;
}

/* Every member points at its own ring slot; no ghost unless `used`. */
static int ghost_check(const pc_radix *t, bool used)
{
    int rc = 0;
    const ghost *g = &t->gh;
    uint32_t members = 0;
    CHECK(used || (!g->rcap && !g->ring && !g->set),
          "ghost kept under %s", pc_radix_policy_name(t->ops->id));
    CHECK(g->count <= g->rcap, "ghost count %u > ring %u", g->count, g->rcap);
    if (g->rcap &&
        (rc = pc_hashtab_check(g->set, 2 * g->rcap, &ghost_table, NULL,
                               &members, "pc_radix_check")))
        goto out;
    for (uint32_t i = 0; g->rcap && i < 2 * g->rcap; i++)
        CHECK(!g->set[i].key ||
                  (g->set[i].seq < g->seq && g->set[i].seq >= g->seq - g->count &&
                   g->ring[g->set[i].seq & (g->rcap - 1)] == g->set[i].key),
              "ghost member %u stale", i);
    CHECK(members <= g->count, "ghost has %u members, %u slots", members,
          g->count);
out:
    return rc;
}

/* ---- s3fifo: the queues ----------------------------------------------------- */

/* rebuild: what is cached has proven itself: all of it in main. */
static void s3_init(pc_radix *t, const pc_radix_node *root, pc_radix_node *n)
{
    (void)t, (void)root;
    n->pol = 1;
    n->pkey = n->last_access;
}

void pc_radix_s3_rebuild(pc_radix *t)
{
    t->s3_pages[0] = 0;
    t->s3_pages[1] = t->st.pages;
    heap_rebuild(t, s3_init);
}

/* A new leaf enters the small queue, or main when its first page was
 * evicted recently (the ghost remembers it). */
void pc_radix_s3_admit(pc_radix *t, pc_radix_node *n, const pc_radix_node *root,
                       const uint32_t *page, size_t index)
{
    unsigned q = t->gh.count &&
                 ghost_take(t, page_ident(t, root->hash, page, index));
    n->pol = q;
    n->pkey = t->tick + 1;
    t->s3_pages[q] += n->npages;
    pc_radix_heap_update(t, n);
}

/* A hit raises the 2-bit counter of every node on the path. */
void pc_radix_s3_touch(pc_radix *t, pc_radix_node *n, bool hit)
{
    for (pc_radix_node *p = n; hit && p->parent; p = p->parent)
        if (S3_FREQ(p) < S3_FREQ_MAX)
            p->pol += 2;
    if (n->hidx)
        heap_fix(t, n);
}

void pc_radix_s3_trim(pc_radix *t, pc_radix_node *x, size_t take)
{
    t->s3_pages[S3_Q(x)] -= take;
    heap_trim(t, x, take);
}

/* The leaf to evict from next (NULL: nothing evictable): from the small
 * queue while it holds >= 10% of the pages, moving its hit leaves to main
 * instead of evicting them; main gives a leaf with hits another round (its
 * counter drops by one) before evicting it. */
pc_radix_node *pc_radix_s3_pick(pc_radix *t)
{
    for (;;) {
        bool small = t->heap[0].n &&
                     (!t->heap[1].n || t->s3_pages[0] * 10 >=
                                           t->s3_pages[0] + t->s3_pages[1]);
        if (!small && !t->heap[1].n)
            return NULL;
        pc_radix_node *x = t->heap[small ? 0 : 1].v[1];
        if (!S3_FREQ(x))
            return x;
        if (small) {
            heap_remove(t, x);
            t->s3_pages[0] -= x->npages;
            t->s3_pages[1] += x->npages;
            x->pol = 1; /* main, counter 0 */
            x->pkey = ++t->tick;
            heap_push(t, x);
        } else {
            x->pol -= 2;
            x->pkey = ++t->tick;
            heap_fix(t, x);
        }
    }
}

/* The victim x loses its last `take` pages, its deepest: from the small
 * queue, the ghost remembers them. */
void pc_radix_s3_evicting(pc_radix *t, pc_radix_node *x, size_t take)
{
    size_t depth = 0;
    if (S3_Q(x) != 0)
        return;
    const pc_radix_node *r = x->parent;
    for (; r->parent; r = r->parent)
        depth += r->npages;
    for (size_t i = 0; i < take; i++) {
        size_t k = x->npages - 1 - i;
        ghost_add(t, page_ident(t, r->hash, node_tokens(t, x) + k * t->P,
                                depth + k));
    }
}

/* s3fifo's check, and the part of auto's that is s3fifo's. */
int pc_radix_s3_check(const pc_radix *t)
{
    int rc = check_heaps(t, 2);
    return rc ? rc : ghost_check(t, true);
}

static int s3_check(const pc_radix *t)
{
    int rc = pc_radix_s3_check(t);
    return rc ? rc : pc_radix_auto_check_idle(t);
}

const pc_radix_policy_ops pc_radix_s3fifo_ops = {
    .version = PC_RADIX_POLICY_OPS_VERSION,
    .id = PC_POLICY_S3FIFO,
    .prepare = pc_radix_heap_prepare,
    .stop = pc_radix_heap_stop,
    .rebuild = pc_radix_s3_rebuild,
    .reserve = pc_radix_heap_reserve,
    .admit = pc_radix_s3_admit,
    .touch = pc_radix_s3_touch,
    .update = pc_radix_heap_update,
    .trim = pc_radix_s3_trim,
    .pick = pc_radix_s3_pick,
    .evicting = pc_radix_s3_evicting,
    .aside = pc_radix_heap_aside,
    .restore = pc_radix_heap_restore,
    .check = s3_check,
};

/* ---- namespace priorities (the priority policy's keys) ---------------------- */

/* Index of ns's priority entry; t->nprios when it has none. */
static uint32_t prio_find(const pc_radix *t, const void *ns, size_t len)
{
    uint32_t i = 0;
    while (i < t->nprios &&
           !(t->prios[i].len == len &&
             (len == 0 || memcmp(t->prios[i].ns, ns, len) == 0)))
        i++;
    return i;
}

static uint64_t prio_key(int32_t prio)
{
    return (uint64_t)((int64_t)prio + 2147483648LL);
}

uint64_t pc_radix_ns_prio_key(const pc_radix *t, const void *ns, size_t len)
{
    uint32_t i = prio_find(t, ns, len);
    return prio_key(i < t->nprios ? t->prios[i].prio : 0);
}

int pc_radix_set_ns_priority(pc_radix *t, const void *ns, size_t ns_len,
                             int32_t priority)
{
    if (!t || ns_len > PC_RADIX_NS_MAX || (ns_len && !ns))
        return PC_E_INVAL;
    uint32_t i = prio_find(t, ns, ns_len);
    if (i == t->nprios && priority != 0) { /* a new entry */
        if (t->nprios == t->cprios &&
            pc_radix_reserve_ns_priorities(t, t->cprios ? 2 * t->cprios : 4))
            return PC_E_NOMEM;
        ns_prio *v = t->prios;
        t->nprios++;
        v[i].len = (uint32_t)ns_len;
        if (ns_len)
            memcpy(v[i].ns, ns, ns_len);
    }
    if (i < t->nprios) {
        t->prios[i].prio = priority;
        if (priority == 0) /* the default needs no entry (room is kept) */
            t->prios[i] = t->prios[--t->nprios];
    }
    pc_radix_node *r = pc_radix_ns_find(t, ns, ns_len, hash32(ns, ns_len));
    if (!r)
        return 0;
    r->pkey = prio_key(priority);
    if (t->ops != &pc_radix_priority_ops)
        return 0;
    int depth = 0;
    for (pc_radix_node *n = pc_radix_next_preorder(t, r, &depth); n;
         n = pc_radix_next_preorder(t, n, &depth)) {
        n->pkey = r->pkey;
        if (n->hidx)
            heap_fix(t, n);
    }
    return 0;
}

int pc_radix_reserve_ns_priorities(pc_radix *t, uint32_t n)
{
    if (!t)
        return PC_E_INVAL;
    if (n <= t->cprios)
        return 0;
    ns_prio *v = rx_alloc(t, (size_t)n * sizeof(*v));
    if (!v)
        return PC_E_NOMEM;
    if (t->nprios)
        memcpy(v, t->prios, t->nprios * sizeof(*v));
    rx_free(t, t->prios);
    t->prios = v;
    t->cprios = n;
    return 0;
}

void pc_radix_clear_ns_priorities(pc_radix *t)
{
    while (t && t->nprios) {
        ns_prio *e = &t->prios[t->nprios - 1];
        uint8_t ns[PC_RADIX_NS_MAX];
        uint32_t len = e->len;
        memcpy(ns, e->ns, len);
        pc_radix_set_ns_priority(t, ns, len, 0); /* cannot fail: no alloc */
    }
}

/*
 * radix/radix.c - the page-granular radix tree of token-id prefixes.
 *
 * A tree (P = page_tokens = 4 here) with two namespaces; edges hold whole
 * pages, one block id per page:
 *
 *   ns table ──► root "llama3"                  root "qwen"
 *                  │ kids (keyed by first page)   │
 *        ┌─────────┴────────────┐                 ▼
 *        ▼                      ▼             [9 9 9 9] b40
 *   A [1 2 3 4|5 6 7 8]    D [7 7 7 7]
 *      b10     b11            b30      lock_ref=0 ─► on the LRU list
 *        │  kids: hash table once > 8 children
 *   ┌────┴──────────────┐
 *   ▼                   ▼
 *  B [9 9 9 9]        C [2 2 2 2|3 3 3 3|4 4 4 4]
 *     b12 (pinned)       b20     b21     b22
 *
 *   LRU list (unlocked nodes only, least recent first; each node before
 *   its parent, so the head is always an evictable leaf):
 *
 *     head ─► C ─► D ─► root-less ... ─► tail        (B, A locked: absent)
 *
 * Node memory: one allocation per node, header + tokens + block ids:
 *
 *   ┌────────── header (80 B) ──────────┬── tokens[cap*P] ──┬─ blocks[cap] ─┐
 *   │ lru links, parent, kid table, ... │ . . [live pages]  │ . [live ids]  │
 *   └───────────────────────────────────┴──────▲────────────┴───────────────┘
 *                                         off ─┘ (pages before `off` went to
 *                                                 the upper half of a split)
 *
 * Why it is shaped this way:
 * - Nodes never move: leases hold pointers to them.  A split at page k of X
 *   creates a NEW upper node U for pages [0,k) and keeps X as the deeper half
 *   (X's live window moves up by `off`), so a lock on X still covers exactly
 *   the pages it pinned; U inherits X's lock_ref and recency.  The cost is
 *   slack: X keeps its allocation.  Splits are rare next to lookups, and the
 *   slack is counted in metadata_bytes.
 * - Children are keyed by their whole first page.  Up to 8 children sit in a
 *   small array keyed by the first token (no hashing on the hot path); more
 *   (a system prompt followed by thousands of questions) in an open-addressing
 *   table keyed by a 32-bit XXH3 of the page.  Either way a candidate is
 *   confirmed with memcmp of the page, and the rest of the edge with one
 *   memcmp: a 2,048-token match touches a handful of nodes, never a pointer
 *   per token.
 * - Eviction is O(1) per page with no scan and no heap: unlocked nodes sit on
 *   one intrusive list in LRU order with every node before its parent (touch
 *   a path deepest node first; when a lock drops to 0, append bottom-up).
 *   Then the head is always an unlocked leaf; evicting trims its deepest page
 *   first, so a cached prefix never has a hole, and a parent that becomes a
 *   leaf is already in place.  Locked nodes are simply not on the list
 *   (SQLite pcache1).
 * - Every operation allocates all it needs before it mutates anything, so an
 *   out-of-memory failure leaves the tree exactly as it was.
 * - Nodes are not merged back after eviction leaves a single child: merging
 *   would move pages between nodes that leases may hold.
 */
#include "radix/radix.h"

#include <assert.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- types ---------------------------------------------------------------- */

typedef struct lru_link {
    struct lru_link *prev, *next;
} lru_link;

/* Child table (also used for the namespace table): slots[cap], key beside
 * its pointer so that a probe costs one cache line.  cap <= KT_SMALL: dense
 * small array, key = first token (children) or ns hash; cap > KT_SMALL: open
 * addressing with linear probing, key = 32-bit hash, NULL node = empty. */
typedef struct kslot {
    pc_radix_node *node;
    uint32_t key;
} kslot;

typedef struct kidtab {
    kslot *slots;
    uint32_t n, cap;
} kidtab;

#define KT_SMALL 8u

struct pc_radix_node {
    lru_link lru;          /* first member: list links <-> node by cast     */
    pc_radix_node *parent; /* NULL for a namespace root                     */
    kidtab kids;
    uint32_t npages;    /* live pages on the edge                           */
    uint32_t cap_pages; /* pages the inline storage was sized for           */
    uint32_t off;       /* first live page; for a root: the ns length       */
    uint32_t lock_ref;  /* own pins + children's lock_ref                   */
    uint32_t pins;      /* locks taken on this node itself                  */
    uint32_t hash;      /* roots: hash of the namespace bytes; others: of
                           the first page (so that finding a node's slot,
                           e.g. to evict it, never reads its cold tokens)  */
    uint64_t last_access;
    uint64_t hits;
    uint64_t pkey;  /* heap policies: eviction key, smallest goes first (lfu:
                       L + hits + 1; fifo: birth tick; s3fifo: tick of entry
                       into its queue; priority: biased ns priority).  A
                       root: its namespace's priority                      */
    uint32_t hidx;  /* 1-based position in the policy heap; 0: not in it   */
    uint32_t pol;   /* s3fifo: bit 0 queue (0 small, 1 main), bits 1-2 freq */
    uint32_t data[]; /* tokens[cap_pages*P], blocks[cap_pages]; roots: ns   */
};

/* A namespace priority remembered for namespaces that come and go. */
typedef struct ns_prio {
    int32_t prio;
    uint32_t len;
    uint8_t ns[PC_RADIX_NS_MAX];
} ns_prio;

/* S3-FIFO's ghost: identities of pages recently evicted from the small
 * queue, FIFO (ring) + membership (open addressing, key -> ring seq). */
typedef struct ghost_ent {
    uint64_t key; /* 0: empty */
    uint64_t seq;
} ghost_ent;

typedef struct ghost {
    uint64_t *ring; /* keys by seq & (rcap - 1) */
    ghost_ent *set; /* scap = 2 * rcap          */
    uint32_t rcap, count;
    uint64_t seq; /* next seq; the oldest live is seq - count */
} ghost;

/* The auto policy's miniature simulations: a page-level LRU and S3-FIFO
 * over a hash-sampled subset of the page identities that lookups ask for
 * (SHARDS-style spatial sampling, Waldspurger et al., ATC'17), each holding
 * capacity x the sampling rate pages.  Slots live in one array, linked into
 * FIFO lists by index; a hash table finds a page's slot. */
typedef struct mslot {
    uint64_t key;
    uint32_t prev, next;
    uint8_t q, freq;
} mslot;

enum { MQ_MAIN, MQ_SMALL, MQ_GHOST, MQ_FREE, MQ_N };

typedef struct mlist {
    uint32_t head, tail, n; /* head: the oldest */
} mlist;

typedef struct mini {
    mslot *slot;
    uint32_t *tab; /* slot index + 1; 0: empty */
    uint32_t nslots, tcap, cap, small_cap, ghost_cap;
    bool s3;
    mlist q[MQ_N];
    uint64_t hits, window;
} mini;

struct pc_radix {
    uint32_t P;          /* tokens per page                                 */
    uint32_t page_bytes; /* P * 4                                           */
    kidtab ns;           /* namespace roots                                 */
    lru_link lru;        /* sentinel: next = least recently used            */
    uint64_t tick;       /* logical clock for last_access                   */
    unsigned fail_countdown;
    pc_radix_stats st;
    /* Eviction policy (lru: the list above only; the others also keep the
     * evictable leaves in a min-heap by pkey, s3fifo one heap per queue). */
    pc_radix_policy policy;
    pc_radix_node **heap[2]; /* 1-based; heap[q][0] unused               */
    uint32_t hn[2], hcap;    /* entries; slots allocated (both heaps)     */
    uint64_t lfu_L;          /* LFU-DA inflation: key of the last victim  */
    uint64_t s3_pages[2];    /* cached pages per s3fifo queue             */
    ghost gh;
    ns_prio *prios;
    uint32_t nprios, cprios; /* entries, room */
    /* auto: the simulations, and which of them the victims follow */
    uint64_t capacity;   /* pages; 0 unknown                            */
    mini sim[2];         /* [0] LRU, [1] S3-FIFO                        */
    uint64_t sample_thr; /* sampled when a page's 32-bit hash < this     */
    bool auto_s3;
    uint64_t auto_switches, auto_sampled, auto_score[2], auto_next;
};

static inline bool s3_like(const pc_radix *t)
{
    return t->policy == PC_POLICY_S3FIFO || t->policy == PC_POLICY_AUTO;
}

enum kt_kind { KT_CHILD, KT_NS };

/* ---- small helpers -------------------------------------------------------- */

static inline uint32_t *node_tokens(const pc_radix *t, const pc_radix_node *n)
{
    return (uint32_t *)n->data + (size_t)n->off * t->P;
}

static inline uint32_t *node_blocks(const pc_radix *t, const pc_radix_node *n)
{
    return (uint32_t *)n->data + (size_t)n->cap_pages * t->P + n->off;
}

static inline const uint8_t *root_ns(const pc_radix_node *r)
{
    return (const uint8_t *)r->data;
}

static inline uint32_t hash32(const void *p, size_t len)
{
    uint64_t h = XXH3_64bits(p, len);
    return (uint32_t)(h ^ (h >> 32));
}

static inline bool page_eq(const pc_radix *t, const uint32_t *a,
                           const uint32_t *b)
{
    return memcmp(a, b, t->page_bytes) == 0;
}

static void *rx_alloc(pc_radix *t, size_t size)
{
    if (t->fail_countdown && --t->fail_countdown == 0)
        return NULL;
    void *p = malloc(size);
    if (p)
        t->st.metadata_bytes += malloc_usable_size(p);
    return p;
}

static void rx_free(pc_radix *t, void *p)
{
    if (!p)
        return;
    t->st.metadata_bytes -= malloc_usable_size(p);
    free(p);
}

/* ---- LRU list ------------------------------------------------------------- */

static inline void lru_unlink(pc_radix_node *n)
{
    n->lru.prev->next = n->lru.next;
    n->lru.next->prev = n->lru.prev;
    n->lru.prev = n->lru.next = NULL;
}

static inline void lru_insert_after(lru_link *pos, pc_radix_node *n)
{
    n->lru.prev = pos;
    n->lru.next = pos->next;
    pos->next->prev = &n->lru;
    pos->next = &n->lru;
}

static inline void lru_append(pc_radix *t, pc_radix_node *n)
{
    lru_insert_after(t->lru.prev, n);
}

/* ---- policy heaps ---------------------------------------------------------- */

/* The policies other than LRU keep every evictable leaf (unlocked, no
 * children, not a root) in a binary min-heap by (pkey, last_access); s3fifo
 * keeps one heap per queue.  Only leaves are in a heap, so its top is always
 * a legal victim, and a node joins when its last child goes (at the place
 * its own key gives it).  The heaps' storage always has room for every node
 * (reserved before a node is created), so pushes never fail. */

#define S3_Q(n) ((n)->pol & 1u)
#define S3_FREQ(n) (((n)->pol >> 1) & 3u)
#define S3_FREQ_MAX 3u
/* The ghost remembers this many times the cached pages.  The paper sizes
 * it like the main queue; on the Mooncake traces (bench/trace_replay) a
 * longer memory pays: a conversation's next turn often comes back after
 * its pages left the small queue long ago (x1: +47% over LRU at 1% of the
 * conversation trace's working set, x4: +77%). */
#define S3_GHOST_FACTOR 4u

static inline unsigned heap_of(const pc_radix *t, const pc_radix_node *n)
{
    return s3_like(t) ? S3_Q(n) : 0;
}

static inline bool key_before(const pc_radix_node *a, const pc_radix_node *b)
{
    return a->pkey != b->pkey ? a->pkey < b->pkey
                              : a->last_access < b->last_access;
}

static void heap_put(pc_radix_node **h, uint32_t i, pc_radix_node *n)
{
    h[i] = n;
    n->hidx = i;
}

static void heap_up(pc_radix_node **h, uint32_t i)
{
    pc_radix_node *n = h[i];
    while (i > 1 && key_before(n, h[i / 2])) {
        heap_put(h, i, h[i / 2]);
        i /= 2;
    }
    heap_put(h, i, n);
}

static void heap_down(pc_radix_node **h, uint32_t len, uint32_t i)
{
    pc_radix_node *n = h[i];
    for (;;) {
        uint32_t c = 2 * i;
        if (c > len)
            break;
        if (c < len && key_before(h[c + 1], h[c]))
            c++;
        if (!key_before(h[c], n))
            break;
        heap_put(h, i, h[c]);
        i = c;
    }
    heap_put(h, i, n);
}

static void heap_push(pc_radix *t, pc_radix_node *n)
{
    unsigned q = heap_of(t, n);
    assert(!n->hidx && t->hn[q] + 1 < t->hcap);
    heap_put(t->heap[q], ++t->hn[q], n);
    heap_up(t->heap[q], n->hidx);
}

static void heap_remove(pc_radix *t, pc_radix_node *n)
{
    unsigned q = heap_of(t, n);
    pc_radix_node **h = t->heap[q];
    uint32_t i = n->hidx, last = t->hn[q]--;
    assert(i && h[i] == n);
    n->hidx = 0;
    if (i == last)
        return;
    heap_put(h, i, h[last]);
    heap_up(h, i);
    heap_down(h, t->hn[q], h[i]->hidx);
}

/* n's key changed: restore the heap order around it. */
static void heap_fix(pc_radix *t, pc_radix_node *n)
{
    unsigned q = heap_of(t, n);
    heap_up(t->heap[q], n->hidx);
    heap_down(t->heap[q], t->hn[q], n->hidx);
}

static inline bool heap_wants(const pc_radix_node *n)
{
    return n->parent && n->lock_ref == 0 && n->kids.n == 0;
}

/* Make n's heap membership match its state (leaf, unlocked). */
static inline void heap_sync(pc_radix *t, pc_radix_node *n)
{
    if (t->policy == PC_POLICY_LRU)
        return;
    bool want = heap_wants(n);
    if (want && !n->hidx)
        heap_push(t, n);
    else if (!want && n->hidx)
        heap_remove(t, n);
}

/* Room for `nodes` nodes in the heaps (phase 1 of anything that creates a
 * node); a no-op under LRU. */
static int heap_grow(pc_radix *t, uint64_t nodes)
{
    if (nodes + 1 < t->hcap)
        return 0;
    uint64_t cap = t->hcap ? t->hcap : 64;
    while (cap <= nodes + 1)
        cap *= 2;
    if (cap > UINT32_MAX)
        return PC_E_NOMEM;
    pc_radix_node **h[2] = {rx_alloc(t, cap * sizeof(void *)),
                            rx_alloc(t, cap * sizeof(void *))};
    if (!h[0] || !h[1]) {
        rx_free(t, h[0]);
        rx_free(t, h[1]);
        return PC_E_NOMEM;
    }
    for (int q = 0; q < 2; q++) {
        if (t->hn[q])
            memcpy(h[q], t->heap[q], (t->hn[q] + 1) * sizeof(void *));
        rx_free(t, t->heap[q]);
        t->heap[q] = h[q];
    }
    t->hcap = (uint32_t)cap;
    return 0;
}

static void heaps_free(pc_radix *t)
{
    rx_free(t, t->heap[0]);
    rx_free(t, t->heap[1]);
    t->heap[0] = t->heap[1] = NULL;
    t->hcap = 0;
}

static int heap_reserve(pc_radix *t, uint64_t nodes)
{
    return t->policy == PC_POLICY_LRU ? 0 : heap_grow(t, nodes);
}

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

/* ---- S3-FIFO ghost ---------------------------------------------------------- */

/* Identity of page `index` (0-based from the namespace root) with the given
 * tokens: what the ghost remembers of an evicted page.  Two prefixes that
 * share this (same page, same depth, same namespace) but differ earlier
 * would collide; the ghost only steers admission, so that is harmless. */
static uint64_t page_ident(const pc_radix *t, uint32_t root_hash,
                           const uint32_t *page, size_t index)
{
    uint64_t seed = (uint64_t)root_hash * 0x9E3779B97F4A7C15ull + index;
    return XXH3_64bits_withSeed(page, t->page_bytes, seed) | 1u;
}

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
    uint32_t mask = 2 * g->rcap - 1, i = (uint32_t)(e - g->set), j = i;
    g->set[i].key = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!g->set[j].key)
            break;
        uint32_t home = (uint32_t)g->set[j].key & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            g->set[i] = g->set[j];
            g->set[j].key = 0;
            i = j;
        }
    }
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

/* ---- auto: miniature simulations ---------------------------------------------- */

#define MINI_PAGES 2048u  /* a simulation holds about this many pages     */
#define MINI_MIN 16u
#define MINI_NONE UINT32_MAX
#define AUTO_EVERY 512u   /* sampled accesses between decisions           */

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
    uint32_t mask = m->tcap - 1, i = (uint32_t)m->slot[si].key & mask, j;
    while (m->tab[i] != si + 1)
        i = (i + 1) & mask;
    m->tab[i] = 0;
    for (j = i;;) {
        j = (j + 1) & mask;
        if (!m->tab[j])
            break;
        uint32_t home = (uint32_t)m->slot[m->tab[j] - 1].key & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->tab[i] = m->tab[j];
            m->tab[j] = 0;
            i = j;
        }
    }
}

/* Drop slot i from the simulation (back to the free list). */
static void mini_drop(mini *m, uint32_t i)
{
    ml_unlink(m, i);
    mt_del(m, i);
    ml_push(m, MQ_FREE, i);
}

/* S3-FIFO: make room for one page (the same rules as heap_victim). */
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

/* (Re)build the simulations for the capacity; the old ones stay on
 * failure.  Nothing to do unless auto is active and a capacity known. */
static int auto_build(pc_radix *t)
{
    if (t->policy != PC_POLICY_AUTO || !t->capacity)
        return 0;
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
    mini_free(t, &t->sim[0]);
    mini_free(t, &t->sim[1]);
    t->sim[0] = n[0];
    t->sim[1] = n[1];
    t->sample_thr = thr;
    t->auto_score[0] = t->auto_score[1] = 0;
    t->auto_next = t->auto_sampled + AUTO_EVERY;
    return 0;
}

/* Feed a lookup's pages to the simulations, then maybe change course.
 * Scores decay by 1/16 every AUTO_EVERY sampled accesses (a memory of ~16
 * windows).  LRU is the safe side: S3-FIFO takes over only when its score
 * leads by a quarter plus two standard deviations of the noise, LRU takes
 * back at a lead of 1/16 plus the same.  Why so reluctant: every switch
 * costs, since each order then evicts pages the other would have kept, and
 * a rule that flips on small leads lost to both (symmetric 1/16 with a
 * 1/8 decay: -4.6% against LRU on the synthetic trace at 1.5% of its
 * working set; this rule: never below LRU on the full Mooncake traces,
 * bench/README.md "trace_replay"). */
static void auto_feed(pc_radix *t, uint32_t root_hash, const uint32_t *tokens,
                      size_t pages)
{
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

void pc_radix_auto_stats_get(const pc_radix *t, pc_radix_auto_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (!t || t->policy != PC_POLICY_AUTO)
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
        mini_free(t, &t->sim[0]);
        mini_free(t, &t->sim[1]);
        t->auto_s3 = false;
        return 0;
    }
    int rc = auto_build(t);
    if (rc)
        t->capacity = old;
    return rc;
}

/* ---- recency ------------------------------------------------------------- */

/* Mark the path from n up to its root most recently used, deepest first so
 * that every node still stands before its parent; the heap policies update
 * their keys along (only n itself can be a leaf in a heap). */
static void touch_path(pc_radix *t, pc_radix_node *n, bool hit)
{
    uint64_t now = ++t->tick;
    pc_radix_node *first = n;
    for (; n->parent; n = n->parent) {
        n->last_access = now;
        n->hits += hit;
        if (n->lock_ref == 0) {
            lru_unlink(n);
            lru_append(t, n);
        }
        if (t->policy == PC_POLICY_LFU)
            n->pkey = t->lfu_L + n->hits + 1;
        else if (s3_like(t) && hit && S3_FREQ(n) < S3_FREQ_MAX)
            n->pol += 2;
    }
    if (first->hidx)
        heap_fix(t, first);
}

/* ---- child / namespace tables --------------------------------------------- */

/* Entries of a kid table in slot order (dense for small tables). */
#define KT_FOREACH(kt, i, c)                                                   \
    for (uint32_t i = 0; i < ((kt)->cap <= KT_SMALL ? (kt)->n : (kt)->cap); i++) \
        if (((c) = (kt)->slots[i].node) != NULL)

static inline uint32_t kt_key_of(const pc_radix *t, enum kt_kind kind,
                                 uint32_t cap, const pc_radix_node *n)
{
    (void)t;
    if (kind == KT_NS || cap > KT_SMALL)
        return n->hash;
    return n->data[(size_t)n->off * t->P]; /* first token */
}

/* Capacity a table of n entries is rebuilt with: a small array up to 8,
 * then a power-of-two hash table at most half full. */
static uint32_t kt_cap_for(uint32_t n)
{
    uint32_t want = n <= KT_SMALL ? n : 2 * n, cap = 1;
    if (n == 0)
        return 0;
    while (cap < want)
        cap <<= 1;
    return cap < 16 && n > KT_SMALL ? 16 : cap;
}

static bool kt_full(const kidtab *kt)
{
    if (kt->cap <= KT_SMALL)
        return kt->n == kt->cap;
    return (uint64_t)(kt->n + 1) * 4 > (uint64_t)kt->cap * 3;
}

/* Raw placement; the caller guarantees room and a correct key. */
static void kt_place(kidtab *kt, pc_radix_node *n, uint32_t key)
{
    uint32_t i = kt->n;
    if (kt->cap > KT_SMALL) {
        uint32_t mask = kt->cap - 1;
        for (i = key & mask; kt->slots[i].node; i = (i + 1) & mask)
            ;
    }
    kt->slots[i].node = n;
    kt->slots[i].key = key;
    kt->n++;
}

/* Storage for a table of `cap` entries (NULL for cap 0 or on failure). */
static kslot *kt_alloc(pc_radix *t, uint32_t cap)
{
    if (cap == 0)
        return NULL;
    size_t size = (size_t)cap * sizeof(kslot);
    kslot *mem = rx_alloc(t, size);
    if (mem)
        memset(mem, 0, size);
    return mem;
}

/* Move every entry of kt into fresh storage `mem` of capacity `cap`. */
static void kt_rebuild(pc_radix *t, enum kt_kind kind, kidtab *kt,
                       kslot *mem, uint32_t cap)
{
    kidtab nt = {mem, 0, cap};
    pc_radix_node *c;
    KT_FOREACH(kt, i, c)
        kt_place(&nt, c, kt_key_of(t, kind, cap, c));
    assert(nt.n == kt->n);
    rx_free(t, kt->slots);
    *kt = nt;
}

/* Phase 1 of adding an entry: allocate bigger storage if the table is full.
 * Nothing changes; *pending is NULL when no growth is needed. */
static int kt_prepare_add(pc_radix *t, const kidtab *kt, kslot **pending)
{
    *pending = NULL;
    if (!kt_full(kt))
        return 0;
    *pending = kt_alloc(t, kt_cap_for(kt->n + 1));
    return *pending ? 0 : PC_E_NOMEM;
}

/* Phase 2: cannot fail. */
static void kt_commit_add(pc_radix *t, enum kt_kind kind, kidtab *kt,
                          kslot *pending, pc_radix_node *n)
{
    if (pending)
        kt_rebuild(t, kind, kt, pending, kt_cap_for(kt->n + 1));
    kt_place(kt, n, kt_key_of(t, kind, kt->cap, n));
}

/* Slot index of entry n (by pointer), or UINT32_MAX. */
static uint32_t kt_slot(const pc_radix *t, enum kt_kind kind, const kidtab *kt,
                        const pc_radix_node *n)
{
    if (kt->cap <= KT_SMALL) {
        for (uint32_t i = 0; i < kt->n; i++)
            if (kt->slots[i].node == n)
                return i;
        return UINT32_MAX;
    }
    uint32_t mask = kt->cap - 1;
    for (uint32_t i = kt_key_of(t, kind, kt->cap, n) & mask; kt->slots[i].node;
         i = (i + 1) & mask)
        if (kt->slots[i].node == n)
            return i;
    return UINT32_MAX;
}

/* Remove n; shrinks the table when it gets sparse (best effort: a failed
 * shrink keeps the bigger table, so removal itself never fails). */
static void kt_remove(pc_radix *t, enum kt_kind kind, kidtab *kt,
                      const pc_radix_node *n)
{
    uint32_t i = kt_slot(t, kind, kt, n);
    kslot *sl = kt->slots;
    assert(i != UINT32_MAX);
    if (kt->cap <= KT_SMALL) {
        kt->n--;
        sl[i] = sl[kt->n];
        sl[kt->n].node = NULL;
    } else {
        /* Backward-shift deletion: no tombstones, probes stay short. */
        uint32_t mask = kt->cap - 1, j = i;
        sl[i].node = NULL;
        kt->n--;
        for (;;) {
            j = (j + 1) & mask;
            if (!sl[j].node)
                break;
            uint32_t home = sl[j].key & mask;
            /* Entry j may fill hole i unless its home lies in (i, j]. */
            if (((j - home) & mask) >= ((j - i) & mask)) {
                sl[i] = sl[j];
                sl[j].node = NULL;
                i = j;
            }
        }
    }
    if (kt->n == 0) {
        rx_free(t, kt->slots);
        kt->slots = NULL;
        kt->cap = 0;
    } else if (kt->cap > KT_SMALL && kt_cap_for(kt->n) * 4 <= kt->cap) {
        uint32_t cap = kt_cap_for(kt->n);
        kslot *mem = kt_alloc(t, cap);
        if (mem)
            kt_rebuild(t, kind, kt, mem, cap);
    }
}

/* The key a page is looked up by in table kt (first token or hash). */
static inline uint32_t kids_key(const pc_radix *t, const kidtab *kt,
                                const uint32_t *page)
{
    return kt->cap <= KT_SMALL ? page[0] : hash32(page, t->page_bytes);
}

/* Where the probe for key starts: prefetched one edge ahead by walk_down. */
static inline const kslot *kids_home(const kidtab *kt, uint32_t key)
{
    return kt->cap <= KT_SMALL ? kt->slots : &kt->slots[key & (kt->cap - 1)];
}

/* Child of parent whose first page equals page[0..P), or NULL; key is
 * kids_key(page). */
static inline pc_radix_node *kids_find(const pc_radix *t,
                                       const pc_radix_node *parent,
                                       const uint32_t *page, uint32_t key)
{
    const kidtab *kt = &parent->kids;
    const kslot *sl = kt->slots;
    if (kt->cap <= KT_SMALL) {
        for (uint32_t i = 0; i < kt->n; i++)
            if (sl[i].key == key && page_eq(t, node_tokens(t, sl[i].node), page))
                return sl[i].node;
        return NULL;
    }
    uint32_t mask = kt->cap - 1;
    for (uint32_t i = key & mask; sl[i].node; i = (i + 1) & mask)
        if (sl[i].key == key && page_eq(t, node_tokens(t, sl[i].node), page))
            return sl[i].node;
    return NULL;
}

static pc_radix_node *ns_find(const pc_radix *t, const void *ns, size_t len,
                              uint32_t h)
{
    const kidtab *kt = &t->ns;
    const kslot *sl = kt->slots;
    uint32_t mask = kt->cap - 1;
    if (kt->n == 0)
        return NULL;
    for (uint32_t i = kt->cap <= KT_SMALL ? 0 : h & mask;
         kt->cap <= KT_SMALL ? i < kt->n : sl[i].node != NULL;
         i = kt->cap <= KT_SMALL ? i + 1 : (i + 1) & mask) {
        pc_radix_node *r = sl[i].node;
        if (sl[i].key == h && r->off == len &&
            (len == 0 || memcmp(root_ns(r), ns, len) == 0))
            return r;
    }
    return NULL;
}

/* ---- node life cycle ------------------------------------------------------ */

/* A detached node for `npages` pages copied from tokens/blocks. */
static pc_radix_node *node_new(pc_radix *t, uint32_t npages,
                               const uint32_t *tokens, const uint32_t *blocks)
{
    size_t words = (size_t)npages * t->P + npages;
    pc_radix_node *n = rx_alloc(t, sizeof(*n) + words * sizeof(uint32_t));
    if (!n)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->npages = n->cap_pages = npages;
    n->hash = hash32(tokens, t->page_bytes); /* from the caller's warm copy */
    memcpy(n->data, tokens, (size_t)npages * t->page_bytes);
    memcpy(n->data + (size_t)npages * t->P, blocks, (size_t)npages * 4);
    return n;
}

static void node_free(pc_radix *t, pc_radix_node *n)
{
    rx_free(t, n->kids.slots);
    rx_free(t, n);
}

static pc_radix_node *root_new(pc_radix *t, const void *ns, size_t len,
                               uint32_t h)
{
    pc_radix_node *r = rx_alloc(t, sizeof(*r) + len);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->off = (uint32_t)len;
    r->hash = h;
    if (len)
        memcpy(r->data, ns, len);
    uint32_t i = prio_find(t, ns, len);
    r->pkey = prio_key(i < t->nprios ? t->prios[i].prio : 0);
    return r;
}

/* An empty namespace goes away with its last page. */
static void root_remove(pc_radix *t, pc_radix_node *r)
{
    assert(r->kids.n == 0 && r->lock_ref == 0);
    kt_remove(t, KT_NS, &t->ns, r);
    node_free(t, r);
    t->st.namespaces--;
}

/*
 * Split x after its first k pages (0 < k < npages) using the preallocated
 * upper node u (already holding those pages) whose kid table has room for
 * x.  x stays the deeper half, so locks held on x keep their coverage.
 */
static void split_commit(pc_radix *t, pc_radix_node *x, uint32_t k,
                         pc_radix_node *u)
{
    pc_radix_node *p = x->parent;
    uint32_t slot = kt_slot(t, KT_CHILD, &p->kids, x);
    assert(slot != UINT32_MAX && k > 0 && k < x->npages);
    p->kids.slots[slot].node = u; /* same first page, so the same key */
    u->parent = p;
    u->lock_ref = x->lock_ref;
    u->last_access = x->last_access;
    u->hits = x->hits;
    u->pkey = x->pkey; /* same age, frequency, queue and namespace */
    u->pol = x->pol;
    x->off += k;
    x->npages -= k;
    x->hash = hash32(node_tokens(t, x), t->page_bytes);
    x->parent = u;
    kt_place(&u->kids, x, kt_key_of(t, KT_CHILD, u->kids.cap, x));
    if (x->lock_ref == 0)
        lru_insert_after(&x->lru, u); /* just behind its child */
    t->st.nodes++;
    t->st.splits++;
}

/* Upper half for splitting x after k pages, with room for `kids` children. */
static pc_radix_node *split_prepare(pc_radix *t, const pc_radix_node *x,
                                    uint32_t k, uint32_t kids)
{
    pc_radix_node *u = node_new(t, k, node_tokens(t, x), node_blocks(t, x));
    if (!u)
        return NULL;
    u->kids.cap = kt_cap_for(kids);
    u->kids.slots = kt_alloc(t, u->kids.cap);
    if (!u->kids.slots) {
        node_free(t, u);
        return NULL;
    }
    return u;
}

/* ---- create / destroy ----------------------------------------------------- */

int pc_radix_create(uint32_t page_tokens, pc_radix **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    if (page_tokens < PC_RADIX_PAGE_TOKENS_MIN ||
        page_tokens > PC_RADIX_PAGE_TOKENS_MAX)
        return PC_E_INVAL;
    pc_radix *t = calloc(1, sizeof(*t));
    if (!t)
        return PC_E_NOMEM;
    t->P = page_tokens;
    t->page_bytes = page_tokens * 4;
    t->lru.prev = t->lru.next = &t->lru;
    t->st.metadata_bytes = malloc_usable_size(t);
    *out = t;
    return 0;
}

void pc_radix_destroy(pc_radix *t)
{
    if (!t)
        return;
    /* Depth-first with an explicit stack made of the nodes themselves:
     * reuse lru.next as the "next to visit" link (the list is dead now). */
    lru_link stack = {NULL, NULL};
    pc_radix_node *r;
    KT_FOREACH(&t->ns, i, r) {
        r->lru.next = stack.next;
        stack.next = &r->lru;
    }
    while (stack.next) {
        pc_radix_node *n = (pc_radix_node *)stack.next;
        stack.next = n->lru.next;
        pc_radix_node *c;
        KT_FOREACH(&n->kids, i, c) {
            c->lru.next = stack.next;
            stack.next = &c->lru;
        }
        node_free(t, n);
    }
    free(t->ns.slots);
    free(t->heap[0]);
    free(t->heap[1]);
    free(t->gh.ring);
    free(t->gh.set);
    free(t->prios);
    for (int k = 0; k < 2; k++) {
        free(t->sim[k].slot);
        free(t->sim[k].tab);
    }
    free(t);
}

uint32_t pc_radix_page_tokens(const pc_radix *t) { return t ? t->P : 0; }

void pc_radix_debug_fail_alloc(pc_radix *t, unsigned nth)
{
    if (t)
        t->fail_countdown = nth;
}

/* ---- the walk shared by match and insert ---------------------------------- */

/* Where a walk down the tree stopped. */
typedef struct walk {
    pc_radix_node *root; /* NULL: unknown namespace                          */
    pc_radix_node *node; /* deepest fully matched node (or the root)          */
    pc_radix_node *part; /* child of node matched only in part, or NULL       */
    uint32_t part_pages; /* pages of part matched (0 < part_pages < npages)   */
    size_t pages;        /* total matched pages                               */
} walk;

/* Pages in common between a and b (at most m), comparing page by page only
 * after the whole-range memcmp says they differ. */
static uint32_t common_pages(const pc_radix *t, const uint32_t *a,
                             const uint32_t *b, uint32_t m)
{
    if (memcmp(a, b, (size_t)m * t->page_bytes) == 0)
        return m;
    uint32_t i = 0;
    while (i < m && page_eq(t, a + (size_t)i * t->P, b + (size_t)i * t->P))
        i++;
    return i;
}

/* Walk at most max_pages pages of tokens; copies the matched block ids to
 * blocks (when not NULL).
 * Latency, not bandwidth, is what a lookup pays: most of a match is cache
 * misses on child-table slots and nodes that depend on each other.  So
 * while one edge is compared, the slot that the next page will probe and
 * the edge's block ids are already on their way (-16..22% on W1; loading
 * the next child itself, or the LRU neighbours, measured no gain). */
static void walk_down(const pc_radix *t, pc_radix_node *root,
                      const uint32_t *tokens, size_t max_pages,
                      uint32_t *blocks, walk *w)
{
    memset(w, 0, sizeof(*w));
    w->root = w->node = root;
    if (!root || !max_pages)
        return;
    uint32_t key = kids_key(t, &root->kids, tokens);
    while (w->pages < max_pages) {
        const uint32_t *q = tokens + w->pages * t->P;
        pc_radix_node *c = kids_find(t, w->node, q, key);
        if (!c)
            break;
        size_t left = max_pages - w->pages;
        uint32_t m = c->npages < left ? c->npages : (uint32_t)left;
        if (m < left && c->kids.n) {
            key = kids_key(t, &c->kids, q + (size_t)m * t->P);
            __builtin_prefetch(kids_home(&c->kids, key));
        }
        if (blocks)
            __builtin_prefetch(node_blocks(t, c));
        uint32_t got = 1 + common_pages(t, node_tokens(t, c) + t->P, q + t->P, m - 1);
        if (blocks)
            memcpy(blocks + w->pages, node_blocks(t, c), (size_t)got * 4);
        w->pages += got;
        if (got < c->npages) {
            w->part = c;
            w->part_pages = got;
            break;
        }
        w->node = c;
    }
}

static int check_args(const pc_radix *t, const void *ns, size_t ns_len,
                      const uint32_t *tokens, size_t n_tokens)
{
    if (!t || ns_len > PC_RADIX_NS_MAX || (ns_len && !ns) ||
        (n_tokens && !tokens))
        return PC_E_INVAL;
    if (n_tokens / t->P > UINT32_MAX)
        return PC_E_RANGE;
    return 0;
}

/* ---- match ---------------------------------------------------------------- */

int pc_radix_match(pc_radix *t, const void *ns, size_t ns_len,
                   const uint32_t *tokens, size_t n_tokens, uint32_t *blocks,
                   size_t blocks_cap, unsigned flags, pc_radix_match_result *out)
{
    int rc = check_args(t, ns, ns_len, tokens, n_tokens);
    if (rc == 0 && (!out || (flags & ~(unsigned)(PC_RADIX_MATCH_SPLIT |
                                                   PC_RADIX_MATCH_PEEK))))
        rc = PC_E_INVAL;
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    size_t want = n_tokens / t->P, max = want;
    if (blocks && blocks_cap < max)
        max = blocks_cap;

    walk w;
    uint32_t h = hash32(ns, ns_len);
    walk_down(t, ns_find(t, ns, ns_len, h), tokens, max, blocks, &w);
    pc_radix_node *hit = w.part ? w.part : w.node;
    if (w.part && (flags & PC_RADIX_MATCH_SPLIT)) {
        pc_radix_node *u = split_prepare(t, w.part, w.part_pages, 1);
        if (!u)
            return PC_E_NOMEM;
        if (heap_reserve(t, t->st.nodes + 1)) {
            node_free(t, u);
            return PC_E_NOMEM;
        }
        split_commit(t, w.part, w.part_pages, u);
        hit = u;
    }
    out->pages = w.pages;
    out->tokens = w.pages * t->P;
    out->node = w.pages ? hit : NULL;
    if (!(flags & PC_RADIX_MATCH_PEEK)) {
        t->st.lookups++;
        t->st.hit_pages += w.pages;
        t->st.miss_pages += want - w.pages;
        if (w.pages)
            touch_path(t, hit, true);
        if (t->policy == PC_POLICY_AUTO && t->sim[0].slot)
            auto_feed(t, h, tokens, want);
    }
    return 0;
}

/* ---- insert --------------------------------------------------------------- */

/* A new leaf n (holding pages index.. of the prompt, first page `page`)
 * gets its policy state and joins the heap.  s3fifo: into the small queue,
 * or straight into main when its first page was evicted recently (ghost). */
static void leaf_admit(pc_radix *t, pc_radix_node *n, const pc_radix_node *root,
                       const uint32_t *page, size_t index)
{
    switch (t->policy) {
    case PC_POLICY_LFU:
        n->pkey = t->lfu_L + 1;
        break;
    case PC_POLICY_FIFO:
        n->pkey = t->tick + 1; /* its birth: touch_path's tick */
        break;
    case PC_POLICY_PRIORITY:
        n->pkey = root->pkey;
        break;
    case PC_POLICY_S3FIFO:
    case PC_POLICY_AUTO: {
        unsigned q = t->gh.count &&
                     ghost_take(t, page_ident(t, root->hash, page, index));
        n->pol = q;
        n->pkey = t->tick + 1;
        t->s3_pages[q] += n->npages;
        break;
    }
    default:
        return;
    }
    heap_sync(t, n);
}

int pc_radix_insert(pc_radix *t, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens,
                    const uint32_t *blocks, uint32_t *canon,
                    pc_radix_insert_result *out)
{
    return pc_radix_insert_checked(t, ns, ns_len, tokens, n_tokens, blocks,
                                   canon, NULL, NULL, out);
}

int pc_radix_insert_checked(pc_radix *t, const void *ns, size_t ns_len,
                            const uint32_t *tokens, size_t n_tokens,
                            const uint32_t *blocks, uint32_t *canon,
                            pc_radix_precheck_fn check, void *ctx,
                            pc_radix_insert_result *out)
{
    int rc = check_args(t, ns, ns_len, tokens, n_tokens);
    size_t want = t && rc == 0 ? n_tokens / t->P : 0;
    if (rc == 0 && (!out || (want && !blocks) || (check && !canon)))
        rc = PC_E_INVAL;
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    if (want == 0) {
        if (check && (rc = check(ctx, canon, 0)))
            return rc;
        t->st.inserts++;
        return 0;
    }

    uint32_t h = hash32(ns, ns_len);
    walk w;
    walk_down(t, ns_find(t, ns, ns_len, h), tokens, want, canon, &w);
    size_t rest = want - w.pages;
    /* The caller vets the request against what is cached before anything
     * changes: one walk serves both. */
    if (check && (rc = check(ctx, canon, w.pages)))
        return rc;

    /* Phase 1: allocate everything; on failure free it all, change nothing. */
    pc_radix_node *root = w.root, *u = NULL, *leaf = NULL;
    kslot *ns_grow = NULL, *kid_grow = NULL;
    rc = PC_E_NOMEM;
    if (!root) {
        if (kt_prepare_add(t, &t->ns, &ns_grow) ||
            !(root = root_new(t, ns, ns_len, h)))
            goto fail;
        w.node = root;
    }
    if (w.part && !(u = split_prepare(t, w.part, w.part_pages, rest ? 2 : 1)))
        goto fail;
    if (rest) {
        if (!(leaf = node_new(t, (uint32_t)rest, tokens + w.pages * t->P,
                              blocks + w.pages)))
            goto fail;
        if (!u && kt_prepare_add(t, &w.node->kids, &kid_grow))
            goto fail;
    }
    /* Last, so that a failure before it leaves the heaps' size alone. */
    if (heap_reserve(t, t->st.nodes + 2)) /* a split and a leaf at most */
        goto fail;

    /* Phase 2: commit; nothing below can fail. */
    if (!w.root) {
        kt_commit_add(t, KT_NS, &t->ns, ns_grow, root);
        t->st.namespaces++;
    }
    pc_radix_node *deepest = w.node;
    if (u) {
        split_commit(t, w.part, w.part_pages, u);
        deepest = u;
    }
    if (leaf) {
        kt_commit_add(t, KT_CHILD, &deepest->kids, kid_grow, leaf);
        leaf->parent = deepest;
        lru_append(t, leaf); /* placed for real by touch_path below */
        heap_sync(t, deepest); /* no longer a leaf */
        leaf_admit(t, leaf, root, tokens + w.pages * t->P, w.pages);
        deepest = leaf;
        t->st.nodes++;
        t->st.pages += rest;
        t->st.tokens += rest * t->P;
        t->st.evictable_pages += rest;
    }
    if (canon)
        memcpy(canon + w.pages, blocks + w.pages, rest * 4);
    touch_path(t, deepest, false);
    t->st.inserts++;
    t->st.inserted_pages += rest;
    t->st.duplicate_pages += w.pages;
    out->cached_tokens = w.pages * t->P;
    out->inserted_pages = rest;
    out->node = deepest;
    return 0;

fail:
    if (!w.root && root)
        node_free(t, root);
    rx_free(t, ns_grow);
    if (u)
        node_free(t, u);
    if (leaf)
        node_free(t, leaf);
    rx_free(t, kid_grow);
    return rc;
}

/* ---- locks ---------------------------------------------------------------- */

int pc_radix_lock(pc_radix *t, pc_radix_node *node)
{
    if (!t || !node || !node->parent)
        return PC_E_INVAL;
    pc_radix_node *n = node;
    while (n->parent)
        n = n->parent;
    if (n->lock_ref == UINT32_MAX) /* the root carries the largest count */
        return PC_E_RANGE;
    node->pins++;
    for (n = node; n; n = n->parent) {
        if (n->lock_ref++ == 0 && n->parent) {
            lru_unlink(n);
            heap_sync(t, n);
            t->st.evictable_pages -= n->npages;
            t->st.protected_pages += n->npages;
        }
    }
    return 0;
}

int pc_radix_unlock(pc_radix *t, pc_radix_node *node)
{
    if (!t || !node || !node->parent)
        return PC_E_INVAL;
    if (node->pins == 0)
        return PC_E_NOTLOCKED;
    uint64_t now = ++t->tick;
    node->pins--;
    /* Bottom-up, so nodes that become unlocked are appended before their
     * parents, keeping the list rule. */
    for (pc_radix_node *n = node; n; n = n->parent) {
        assert(n->lock_ref > 0);
        if (--n->lock_ref == 0 && n->parent) {
            n->last_access = now;
            lru_append(t, n);
            heap_sync(t, n);
            t->st.evictable_pages += n->npages;
            t->st.protected_pages -= n->npages;
        }
    }
    return 0;
}

/* ---- eviction ------------------------------------------------------------- */

/* Evict the last `take` pages of the unlocked leaf x (deepest first); a
 * leaf left without pages goes, and a namespace left without nodes too. */
static void evict_tail(pc_radix *t, pc_radix_node *x, size_t take,
                       pc_radix_evict_fn fn, void *ctx)
{
    assert(x->kids.n == 0 && x->lock_ref == 0 && x->parent && take <= x->npages);
    const uint32_t *b = node_blocks(t, x);
    for (size_t i = 0; i < take; i++)
        if (fn)
            fn(ctx, b[x->npages - 1 - i]);
    x->npages -= (uint32_t)take;
    if (s3_like(t))
        t->s3_pages[S3_Q(x)] -= take;
    t->st.pages -= take;
    t->st.tokens -= take * t->P;
    t->st.evictable_pages -= take;
    t->st.evicted_pages += take;
    if (x->npages)
        return;
    pc_radix_node *p = x->parent;
    lru_unlink(x);
    if (x->hidx)
        heap_remove(t, x);
    /* kt_remove finds x by its stored first-page hash. */
    kt_remove(t, KT_CHILD, &p->kids, x);
    node_free(t, x);
    heap_sync(t, p); /* its last child gone: a leaf now */
    t->st.nodes--;
    t->st.evicted_nodes++;
    if (!p->parent && p->kids.n == 0)
        root_remove(t, p);
}

/* The leaf a heap policy evicts from next (NULL: nothing evictable).
 * s3fifo: evict from the small queue while it holds >= 10% of the pages,
 * moving its hit leaves to main instead of evicting them; main gives a leaf
 * with hits another round (its counter drops by one) before evicting it. */
static pc_radix_node *heap_victim(pc_radix *t)
{
    if (!s3_like(t))
        return t->hn[0] ? t->heap[0][1] : NULL;
    for (;;) {
        bool small = t->hn[0] && (!t->hn[1] || t->s3_pages[0] * 10 >=
                                                   t->s3_pages[0] + t->s3_pages[1]);
        if (!small && !t->hn[1])
            return NULL;
        pc_radix_node *x = t->heap[small ? 0 : 1][1];
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

/* s3fifo: remember the last `take` pages of leaf x, about to be evicted
 * from the small queue, in the ghost. */
static void ghost_record(pc_radix *t, const pc_radix_node *x, size_t take)
{
    size_t depth = 0;
    const pc_radix_node *r = x->parent;
    for (; r->parent; r = r->parent)
        depth += r->npages;
    for (size_t i = 0; i < take; i++) {
        size_t k = x->npages - 1 - i;
        ghost_add(t, page_ident(t, r->hash, node_tokens(t, x) + k * t->P,
                                depth + k));
    }
}

size_t pc_radix_evict(pc_radix *t, size_t n_blocks, pc_radix_evict_fn fn,
                      void *ctx)
{
    size_t freed = 0;
    if (!t)
        return 0;
    while (t->policy != PC_POLICY_LRU && freed < n_blocks) {
        pc_radix_node *x;
        if (t->policy == PC_POLICY_AUTO && !t->auto_s3) /* LRU's turn */
            x = t->lru.next != &t->lru ? (pc_radix_node *)t->lru.next : NULL;
        else
            x = heap_victim(t);
        if (!x)
            break;
        size_t take = n_blocks - freed;
        if (take > x->npages)
            take = x->npages;
        if (t->policy == PC_POLICY_LFU && x->pkey > t->lfu_L)
            t->lfu_L = x->pkey; /* ageing: newcomers start at the victim's key */
        else if (s3_like(t) && S3_Q(x) == 0)
            ghost_record(t, x, take);
        freed += take;
        evict_tail(t, x, take, fn, ctx);
    }
    while (t->policy == PC_POLICY_LRU && freed < n_blocks &&
           t->lru.next != &t->lru) {
        pc_radix_node *x = (pc_radix_node *)t->lru.next;
        __builtin_prefetch(x->lru.next); /* the next victim, most likely */
        __builtin_prefetch(&x->parent->kids.slots[x->hash & (x->parent->kids.cap - 1)]);
        size_t take = n_blocks - freed;
        if (take > x->npages)
            take = x->npages;
        freed += take;
        evict_tail(t, x, take, fn, ctx);
    }
    return freed;
}

static const pc_radix_node *next_preorder(const pc_radix *t,
                                          const pc_radix_node *n, int *depth);

int pc_radix_evict_ns(pc_radix *t, const void *ns, size_t ns_len,
                      pc_radix_evict_fn fn, void *ctx, size_t *evicted)
{
    if (evicted)
        *evicted = 0;
    if (!t || ns_len > PC_RADIX_NS_MAX || (ns_len && !ns))
        return PC_E_INVAL;
    pc_radix_node *r = ns_find(t, ns, ns_len, hash32(ns, ns_len));
    if (!r)
        return 0;
    /* The namespace's nodes in pre-order; walked backwards, every node
     * comes after all of its children, so each unlocked node is a leaf by
     * the time it is reached.  O(nodes of the namespace): an admin op. */
    size_t n = 0, cap = 64, pages = 0;
    pc_radix_node **v = malloc(cap * sizeof(*v));
    if (!v)
        return PC_E_NOMEM;
    int depth = 0;
    for (const pc_radix_node *x = next_preorder(t, r, &depth); x;
         x = next_preorder(t, x, &depth)) {
        if (n == cap) {
            pc_radix_node **g = realloc(v, 2 * cap * sizeof(*v));
            if (!g) {
                free(v);
                return PC_E_NOMEM;
            }
            v = g;
            cap *= 2;
        }
        v[n++] = (pc_radix_node *)x;
    }
    bool last = false; /* the namespace itself may go with its last node */
    for (size_t i = n; i-- > 0 && !last;) {
        pc_radix_node *x = v[i];
        if (x->lock_ref || x->kids.n)
            continue;
        last = x->parent == r && r->kids.n == 1;
        pages += x->npages;
        evict_tail(t, x, x->npages, fn, ctx);
    }
    free(v);
    if (evicted)
        *evicted = pages;
    return 0;
}

/* ---- eviction policy ------------------------------------------------------ */

static const char *const policy_names[PC_POLICY_COUNT] = {
    [PC_POLICY_LRU] = "lru",   [PC_POLICY_LFU] = "lfu",
    [PC_POLICY_FIFO] = "fifo", [PC_POLICY_S3FIFO] = "s3fifo",
    [PC_POLICY_PRIORITY] = "priority", [PC_POLICY_AUTO] = "auto",
};

const char *pc_radix_policy_name(pc_radix_policy p)
{
    return (unsigned)p < PC_POLICY_COUNT ? policy_names[p] : NULL;
}

int pc_radix_policy_parse(const char *name, pc_radix_policy *out)
{
    if (!name || !out)
        return PC_E_INVAL;
    for (int i = 0; i < PC_POLICY_COUNT; i++)
        if (strcmp(name, policy_names[i]) == 0) {
            *out = (pc_radix_policy)i;
            return 0;
        }
    return PC_E_INVAL;
}

/* Every node's policy state from what any policy keeps (recency, hits),
 * then the heap rebuilt: an admin operation, O(n log n). */
int pc_radix_set_policy(pc_radix *t, pc_radix_policy p)
{
    if (!t || !pc_radix_policy_name(p))
        return PC_E_INVAL;
    if (p == t->policy)
        return 0;
    bool had_heaps = t->hcap != 0;
    if (p != PC_POLICY_LRU && heap_grow(t, t->st.nodes + 1))
        return PC_E_NOMEM;
    pc_radix_policy old = t->policy;
    t->policy = p;
    int rc = auto_build(t); /* only for auto */
    t->policy = old;
    if (rc) { /* change nothing: drop heaps made for this call */
        if (!had_heaps)
            heaps_free(t);
        return rc;
    }
    if (p != PC_POLICY_AUTO) {
        mini_free(t, &t->sim[0]);
        mini_free(t, &t->sim[1]);
    }
    t->auto_s3 = false;
    for (int q = 0; q < 2; q++) {
        for (uint32_t i = 1; i <= t->hn[q]; i++)
            t->heap[q][i]->hidx = 0;
        t->hn[q] = 0;
    }
    ghost_free(t, &t->gh);
    t->lfu_L = 0;
    t->s3_pages[0] = 0;
    t->s3_pages[1] = t->st.pages; /* what is cached has proven itself */
    t->policy = p;
    if (p == PC_POLICY_LRU) {
        heaps_free(t);
        return 0;
    }
    pc_radix_node *r;
    KT_FOREACH(&t->ns, i, r) {
        int depth = 0;
        for (pc_radix_node *n = (pc_radix_node *)next_preorder(t, r, &depth); n;
             n = (pc_radix_node *)next_preorder(t, n, &depth)) {
            n->pol = 0;
            switch (p) {
            case PC_POLICY_LFU:
                n->pkey = n->hits + 1;
                break;
            case PC_POLICY_PRIORITY:
                n->pkey = r->pkey;
                break;
            case PC_POLICY_S3FIFO:
            case PC_POLICY_AUTO:
                n->pol = 1;
                /* fall through */
            default: /* fifo: insertion order is not kept; recency is */
                n->pkey = n->last_access;
                break;
            }
            if (heap_wants(n))
                heap_push(t, n);
        }
    }
    return 0;
}

pc_radix_policy pc_radix_get_policy(const pc_radix *t)
{
    return t ? t->policy : PC_POLICY_LRU;
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
    pc_radix_node *r = ns_find(t, ns, ns_len, hash32(ns, ns_len));
    if (!r)
        return 0;
    r->pkey = prio_key(priority);
    if (t->policy != PC_POLICY_PRIORITY)
        return 0;
    int depth = 0;
    for (pc_radix_node *n = (pc_radix_node *)next_preorder(t, r, &depth); n;
         n = (pc_radix_node *)next_preorder(t, n, &depth)) {
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

/* ---- stats and accessors -------------------------------------------------- */

void pc_radix_stats_get(const pc_radix *t, pc_radix_stats *out)
{
    if (t && out)
        *out = t->st;
    else if (out)
        memset(out, 0, sizeof(*out));
}

uint32_t pc_radix_node_lock_ref(const pc_radix_node *n) { return n ? n->lock_ref : 0; }
uint32_t pc_radix_node_pins(const pc_radix_node *n) { return n ? n->pins : 0; }
uint32_t pc_radix_node_pages(const pc_radix_node *n) { return n ? n->npages : 0; }
uint64_t pc_radix_node_hits(const pc_radix_node *n) { return n ? n->hits : 0; }

size_t pc_radix_node_depth_pages(const pc_radix_node *n)
{
    size_t d = 0;
    for (; n; n = n->parent)
        d += n->npages;
    return d;
}

/* ---- pc_radix_check ------------------------------------------------------- */

/* A pointer set for the check (open addressing, never shrinks). */
typedef struct ptrset {
    const void **slot;
    size_t cap, n;
} ptrset;

static bool ptrset_add(ptrset *s, const void *p)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        const void **ns = calloc(cap, sizeof(*ns));
        if (!ns)
            return false;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) {
                size_t j = ((uintptr_t)s->slot[i] >> 4) * 0x9E3779B97F4A7C15ull % cap;
                while (ns[j])
                    j = (j + 1) % cap;
                ns[j] = s->slot[i];
            }
        free(s->slot);
        s->slot = ns;
        s->cap = cap;
    }
    size_t j = ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull % s->cap;
    while (s->slot[j]) {
        if (s->slot[j] == p)
            return true;
        j = (j + 1) % s->cap;
    }
    s->slot[j] = p;
    s->n++;
    return true;
}

static bool ptrset_has(const ptrset *s, const void *p)
{
    if (!s->cap)
        return false;
    size_t j = ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull % s->cap;
    while (s->slot[j]) {
        if (s->slot[j] == p)
            return true;
        j = (j + 1) % s->cap;
    }
    return false;
}

#define CHECK(cond, ...) PC_CHECK_OR_OUT("pc_radix_check", cond, __VA_ARGS__)

/* Verify one kid table: count, keys, reachability by lookup. */
static int check_kidtab(const pc_radix *t, enum kt_kind kind, const kidtab *kt,
                        const pc_radix_node *parent)
{
    int rc = 0;
    uint32_t count = 0;
    const pc_radix_node *c;
    CHECK((kt->cap == 0) == (kt->slots == NULL), "table storage/cap mismatch");
    CHECK(kt->n <= kt->cap, "table holds %u > cap %u", kt->n, kt->cap);
    CHECK(kt->cap <= KT_SMALL || (kt->cap & (kt->cap - 1)) == 0,
          "hash capacity %u not a power of two", kt->cap);
    KT_FOREACH(kt, i, c) {
        count++;
        CHECK(kt->slots[i].key == kt_key_of(t, kind, kt->cap, c),
              "stale key in slot %u", i);
        if (kind == KT_CHILD) {
            CHECK(c->parent == parent, "child %p has parent %p, expected %p",
                  (void *)c, (void *)c->parent, (void *)parent);
            CHECK(kids_find(t, parent, node_tokens(t, c),
                            kids_key(t, kt, node_tokens(t, c))) == c,
                  "child %p not found by its first page (duplicate page?)",
                  (void *)c);
        } else {
            CHECK(ns_find(t, root_ns(c), c->off, c->hash) == c,
                  "namespace root %p not found by its name", (void *)c);
        }
    }
    CHECK(count == kt->n, "table counts %u entries, holds %u", kt->n, count);
out:
    return rc;
}

int pc_radix_check(const pc_radix *t)
{
    int rc = 0;
    ptrset nodes = {0}, seen = {0};
    pc_radix_node **stack = NULL;
    size_t sp = 0, scap = 0;
    pc_radix_stats c = {0};
    uint64_t unlocked = 0;
    const pc_radix_node *r;
    if (!t)
        return PC_E_INVAL;
    uint64_t s3_pages[2] = {0, 0}, heap_wanted = 0;
    c.metadata_bytes = malloc_usable_size((void *)t);
    const void *extra[] = {t->ns.slots, t->heap[0],   t->heap[1],
                           t->gh.ring,  t->gh.set,    t->prios,
                           t->sim[0].slot, t->sim[0].tab, t->sim[1].slot,
                           t->sim[1].tab};
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
        c.metadata_bytes += extra[i] ? malloc_usable_size((void *)extra[i]) : 0;
    CHECK(t->page_bytes == t->P * 4, "page_bytes");
    if ((rc = check_kidtab(t, KT_NS, &t->ns, NULL)))
        goto out;

    KT_FOREACH(&t->ns, i, r) {
        c.namespaces++;
        CHECK(r->parent == NULL && r->npages == 0 && r->pins == 0,
              "root %p malformed", (void *)r);
        CHECK(r->hash == hash32(root_ns(r), r->off), "root hash stale");
        CHECK(r->kids.n > 0, "empty namespace kept");
        CHECK(r->lru.prev == NULL && r->lru.next == NULL, "root on LRU list");
        if (sp == scap) {
            scap = scap ? 2 * scap : 64;
            pc_radix_node **s = realloc(stack, scap * sizeof(*s));
            CHECK(s, "check out of memory");
            stack = s;
        }
        stack[sp++] = (pc_radix_node *)r;
    }
    while (sp) {
        const pc_radix_node *n = stack[--sp], *k;
        uint64_t kid_locks = 0;
        CHECK(ptrset_add(&nodes, n), "check out of memory");
        c.metadata_bytes += malloc_usable_size((void *)n) +
                            (n->kids.slots ? malloc_usable_size(n->kids.slots) : 0);
        if ((rc = check_kidtab(t, KT_CHILD, &n->kids, n)))
            goto out;
        KT_FOREACH(&n->kids, i, k) {
            kid_locks += k->lock_ref;
            if (sp == scap) {
                scap *= 2;
                pc_radix_node **s = realloc(stack, scap * sizeof(*s));
                CHECK(s, "check out of memory");
                stack = s;
            }
            stack[sp++] = (pc_radix_node *)k;
        }
        CHECK(n->lock_ref == n->pins + kid_locks,
              "node %p lock_ref %u != pins %u + children %llu", (void *)n,
              n->lock_ref, n->pins, (unsigned long long)kid_locks);
        if (!n->parent)
            continue;
        c.nodes++;
        c.pages += n->npages;
        CHECK(n->npages >= 1, "node %p has no pages", (void *)n);
        CHECK(n->hash == hash32(node_tokens(t, n), t->page_bytes),
              "node %p first-page hash stale", (void *)n);
        CHECK((uint64_t)n->off + n->npages <= n->cap_pages,
              "node %p window %u+%u beyond %u", (void *)n, n->off, n->npages,
              n->cap_pages);
        if (t->policy == PC_POLICY_LRU) {
            CHECK(n->hidx == 0, "node %p in a heap under lru", (void *)n);
        } else {
            unsigned q = heap_of(t, n);
            CHECK(heap_wants(n) == (n->hidx != 0),
                  "node %p heap membership %u, evictable leaf %d", (void *)n,
                  n->hidx, (int)heap_wants(n));
            CHECK(!n->hidx || (n->hidx <= t->hn[q] && t->heap[q][n->hidx] == n),
                  "node %p heap index %u stale", (void *)n, n->hidx);
            heap_wanted += heap_wants(n);
            s3_pages[S3_Q(n)] += n->npages;
        }
        if (n->lock_ref) {
            c.protected_pages += n->npages;
            CHECK(n->lru.prev == NULL, "locked node %p on LRU list", (void *)n);
        } else {
            c.evictable_pages += n->npages;
            unlocked++;
            CHECK(n->lru.prev != NULL, "unlocked node %p off the LRU list",
                  (void *)n);
        }
    }
    c.tokens = c.pages * t->P;

    /* LRU list: exactly the unlocked nodes, every node after its children. */
    uint64_t listed = 0;
    const lru_link *prev = &t->lru;
    for (const lru_link *l = t->lru.next; l != &t->lru; prev = l, l = l->next) {
        const pc_radix_node *n = (const pc_radix_node *)l, *k;
        CHECK(l->prev == prev, "LRU back link broken at %p", (void *)n);
        CHECK(ptrset_has(&nodes, n), "LRU holds a node not in the tree: %p",
              (void *)n);
        CHECK(n->lock_ref == 0 && n->parent, "LRU holds locked/root %p",
              (void *)n);
        KT_FOREACH(&n->kids, i, k)
            CHECK(ptrset_has(&seen, k),
                  "LRU order: node %p stands before its child %p", (void *)n,
                  (void *)k);
        CHECK(ptrset_add(&seen, n), "check out of memory");
        CHECK(++listed <= unlocked, "LRU list longer than unlocked nodes");
    }
    CHECK(t->lru.prev == prev, "LRU tail link broken");
    CHECK(listed == unlocked, "LRU lists %llu nodes, %llu unlocked",
          (unsigned long long)listed, (unsigned long long)unlocked);

    /* Policy heaps: ordered, exactly the evictable leaves (counted above). */
    if (t->policy != PC_POLICY_LRU) {
        CHECK(t->hcap > t->st.nodes, "heap capacity %u for %llu nodes", t->hcap,
              (unsigned long long)t->st.nodes);
        CHECK(t->hn[0] + (uint64_t)t->hn[1] == heap_wanted,
              "heaps hold %u + %u, %llu evictable leaves", t->hn[0], t->hn[1],
              (unsigned long long)heap_wanted);
        for (unsigned q = 0; q < 2; q++)
            for (uint32_t i = 2; i <= t->hn[q]; i++)
                CHECK(!key_before(t->heap[q][i], t->heap[q][i / 2]),
                      "heap %u order broken at %u", q, i);
        if (!s3_like(t))
            CHECK(t->hn[1] == 0, "second heap used by %s",
                  pc_radix_policy_name(t->policy));
        else
            CHECK(s3_pages[0] == t->s3_pages[0] && s3_pages[1] == t->s3_pages[1],
                  "s3fifo pages small %llu main %llu, recomputed %llu %llu",
                  (unsigned long long)t->s3_pages[0],
                  (unsigned long long)t->s3_pages[1],
                  (unsigned long long)s3_pages[0], (unsigned long long)s3_pages[1]);
    } else {
        CHECK(t->hn[0] == 0 && t->hn[1] == 0 && t->hcap == 0,
              "heaps kept under lru");
    }
    /* The simulations: lists well linked, every live page findable. */
    CHECK(!t->sim[0].slot == !t->sim[1].slot, "one simulation missing");
    for (int k = 0; k < 2; k++) {
        const mini *m = &t->sim[k];
        if (!m->slot)
            continue;
        CHECK(t->policy == PC_POLICY_AUTO, "simulations kept under %s",
              pc_radix_policy_name(t->policy));
        uint32_t total = 0;
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
    }
    CHECK(t->policy != PC_POLICY_AUTO || !t->capacity || t->sim[0].slot,
          "auto without its simulations");

    /* The ghost: every member points at its own ring slot. */
    {
        const ghost *g = &t->gh;
        uint32_t members = 0;
        CHECK(g->count <= g->rcap, "ghost count %u > ring %u", g->count, g->rcap);
        for (uint32_t i = 0; g->rcap && i < 2 * g->rcap; i++) {
            if (!g->set[i].key)
                continue;
            members++;
            CHECK(g->set[i].seq < g->seq && g->set[i].seq >= g->seq - g->count &&
                      g->ring[g->set[i].seq & (g->rcap - 1)] == g->set[i].key,
                  "ghost member %u stale", i);
        }
        CHECK(members <= g->count, "ghost has %u members, %u slots", members,
              g->count);
    }

#define CHECK_COUNTER(f)                                                       \
    CHECK(c.f == t->st.f, "counter " #f " = %llu, recomputed %llu",            \
          (unsigned long long)t->st.f, (unsigned long long)c.f)
    CHECK_COUNTER(namespaces);
    CHECK_COUNTER(nodes);
    CHECK_COUNTER(pages);
    CHECK_COUNTER(tokens);
    CHECK_COUNTER(evictable_pages);
    CHECK_COUNTER(protected_pages);
    CHECK_COUNTER(metadata_bytes);
#undef CHECK_COUNTER
out:
    free(nodes.slot);
    free(seen.slot);
    free(stack);
    return rc;
}

/* ---- traversal ----------------------------------------------------------- */

static const pc_radix_node *first_kid(const pc_radix_node *n)
{
    const pc_radix_node *k;
    KT_FOREACH(&n->kids, i, k)
        return k;
    return NULL;
}

/* Next node after n in pre-order within n's namespace (NULL at the end),
 * without a stack: descend to the first child, else climb to the next
 * sibling in slot order.  *depth follows the node's depth. */
static const pc_radix_node *next_preorder(const pc_radix *t,
                                          const pc_radix_node *n, int *depth)
{
    const pc_radix_node *next = first_kid(n);
    if (next) {
        ++*depth;
        return next;
    }
    for (; n->parent; n = n->parent, --*depth) {
        const kidtab *kt = &n->parent->kids;
        uint32_t lim = kt->cap <= KT_SMALL ? kt->n : kt->cap;
        for (uint32_t j = kt_slot(t, KT_CHILD, kt, n) + 1; j < lim; j++)
            if (kt->slots[j].node)
                return kt->slots[j].node;
    }
    return NULL;
}

int pc_radix_foreach(const pc_radix *t, pc_radix_visit_fn fn, void *ctx)
{
    const pc_radix_node *r;
    if (!t || !fn)
        return PC_E_INVAL;
    KT_FOREACH(&t->ns, i, r) {
        int depth = 0, rc;
        for (const pc_radix_node *n = next_preorder(t, r, &depth); n;
             n = next_preorder(t, n, &depth))
            if ((rc = fn(ctx, root_ns(r), r->off, n, node_blocks(t, n),
                         n->npages)))
                return rc;
    }
    return 0;
}

/* ---- dump ----------------------------------------------------------------- */

static void dump_node(const pc_radix *t, const pc_radix_node *n, int depth,
                      FILE *f)
{
    const uint32_t *tok = node_tokens(t, n), *blk = node_blocks(t, n);
    size_t ntok = (size_t)n->npages * t->P;
    fprintf(f, "%*s[%u page%s lock=%u pins=%u hits=%llu%s] tokens", 2 * depth,
            "", n->npages, n->npages == 1 ? "" : "s", n->lock_ref, n->pins,
            (unsigned long long)n->hits, n->kids.cap > KT_SMALL ? " hashed" : "");
    for (size_t i = 0; i < ntok && i < 8; i++)
        fprintf(f, " %u", tok[i]);
    fprintf(f, "%s | blocks", ntok > 8 ? " ..." : "");
    for (uint32_t i = 0; i < n->npages && i < 8; i++)
        fprintf(f, " %u", blk[i]);
    fprintf(f, "%s\n", n->npages > 8 ? " ..." : "");
}

void pc_radix_dump(const pc_radix *t, FILE *f)
{
    if (!t || !f)
        return;
    fprintf(f, "radix P=%u namespaces=%llu nodes=%llu pages=%llu "
               "(evictable %llu, protected %llu) metadata=%llu B\n",
            t->P, (unsigned long long)t->st.namespaces,
            (unsigned long long)t->st.nodes, (unsigned long long)t->st.pages,
            (unsigned long long)t->st.evictable_pages,
            (unsigned long long)t->st.protected_pages,
            (unsigned long long)t->st.metadata_bytes);
    const pc_radix_node *r;
    KT_FOREACH(&t->ns, i, r) {
        fprintf(f, "ns \"");
        for (uint32_t j = 0; j < r->off; j++) {
            uint8_t ch = root_ns(r)[j];
            fprintf(f, ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\'
                           ? "%c" : "\\x%02x", ch);
        }
        fprintf(f, "\" lock=%u\n", r->lock_ref);
        int depth = 0;
        for (const pc_radix_node *n = next_preorder(t, r, &depth); n;
             n = next_preorder(t, n, &depth))
            dump_node(t, n, depth, f);
    }
}

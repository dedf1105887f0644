/*
 * radix/radix_int.h - private to radix/ (included only by radix/ files): the
 * node and tree structs, the child table, the eviction policies' ops table
 * and the small helpers the files share.
 *
 * The files of the room, and what each one owns:
 *
 *   radix.c     the core: namespaces, match, insert, split, locks, the
 *               eviction driver, policy switching, stats
 *   children.c  the child table (small array / hash table) and pre-order
 *   policies.c  lru, lfu, fifo, priority, s3fifo: one ops table each, the
 *               heap they share, S3-FIFO's ghost, namespace priorities
 *   auto.c      the auto policy: two miniature simulations pick LRU or
 *               S3-FIFO victims
 *   limits.c    per-namespace quota and reserve: their table, the API,
 *               quota eviction
 *   check.c     pc_radix_check, pc_radix_foreach, pc_radix_dump
 *
 *   pc_radix ──ops──► const pc_radix_policy_ops  (one per pc_radix_policy)
 *       │              admit touch update trim pick evicting aside ...
 *       ├── ns table ──► roots ──kids──► nodes ...   (children.c)
 *       │               (a root: its namespace's page counts and limits)
 *       ├── lru list: every unlocked node, each before its parent
 *       └── policy state: heaps, ghost, priorities, simulations
 */
#ifndef PC_RADIX_INT_H
#define PC_RADIX_INT_H

#include "radix/radix.h"

#include <assert.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "proto/heap.h"

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

enum kt_kind { KT_CHILD, KT_NS };

struct pc_radix_node {
    lru_link lru;          /* first member: list links <-> node by cast     */
    pc_radix_node *parent; /* NULL for a namespace root                     */
    kidtab kids;
    uint32_t npages;    /* live pages on the edge                           */
    union {
        uint32_t cap_pages; /* pages the inline storage was sized for       */
        uint32_t ns_max;    /* a root: its namespace's quota (0: none)      */
    };
    uint32_t off;       /* first live page; for a root: the ns length       */
    uint32_t lock_ref;  /* own pins + children's lock_ref                   */
    uint32_t pins;      /* locks taken on this node itself                  */
    uint32_t hash;      /* roots: hash of the namespace bytes; others: of
                           the first page (so that finding a node's slot,
                           e.g. to evict it, never reads its cold tokens)  */
    /* A root has no recency or hits of its own: it keeps its namespace's
     * page counts there (radix.c's ns_account keeps them exact). */
    union {
        uint64_t last_access;
        uint64_t ns_pages; /* a root: pages in its namespace              */
    };
    union {
        uint64_t hits;
        uint64_t ns_unlocked; /* a root: of those, pages in unlocked nodes */
    };
    uint64_t pkey;  /* heap policies: eviction key, smallest goes first (lfu:
                       L + hits + 1; fifo: birth tick; s3fifo: tick of entry
                       into its queue; priority: biased ns priority).  A
                       root: its namespace's priority                      */
    uint32_t hidx;  /* 1-based position in the policy heap; 0: not in it   */
    union {
        uint32_t pol;    /* s3fifo: bit 0 queue (0 small, 1 main), bits 1-2
                            freq; 0 under every other policy               */
        uint32_t ns_min; /* a root: its namespace's reserve (0: none)      */
    };
    uint32_t data[]; /* tokens[cap_pages*P], blocks[cap_pages]; roots: ns   */
};

/* The header size that radix.c's picture and tests/test_radix.c's memory
 * bound quote (on 64-bit targets). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct pc_radix_node) == 96,
               "node header is 96 bytes");

/* A namespace priority remembered for namespaces that come and go. */
typedef struct ns_prio {
    int32_t prio;
    uint32_t len;
    uint8_t ns[PC_RADIX_NS_MAX];
} ns_prio;

/* A namespace's page limits (pc_radix_set_ns_limits), remembered like the
 * priorities for namespaces that come and go; a root copies its entry. */
typedef struct ns_limit {
    uint32_t min_pages, max_pages; /* 0: none */
    uint32_t len;
    uint8_t ns[PC_RADIX_NS_MAX];
} ns_limit;

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

/* The auto policy's miniature simulations (auto.c): slots in one array,
 * linked into FIFO lists by index; a hash table finds a page's slot. */
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

/*
 * An eviction policy, the way SQLite's pcache1 makes its page cache
 * replaceable (sqlite3_pcache_methods2): one const table of methods per
 * policy, t->ops pointing at the current one.  The core keeps what every
 * policy may read (the LRU list, last_access, hits, lock counts) and calls
 * these where a policy's own state has to follow.  A NULL method does
 * nothing (LRU leaves most of them NULL, so its hot paths pay one load
 * and a branch).  `version` says which methods a table has, should the
 * table grow.
 */
#define PC_RADIX_POLICY_OPS_VERSION 2 /* 2: victim split into pick,
                                          evicting, aside, restore */

typedef struct pc_radix_policy_ops {
    int version;
    pc_radix_policy id;
    /* Switching (pc_radix_set_policy): the new policy's prepare, then the
     * old one's stop, then the new one's rebuild. */
    int (*prepare)(pc_radix *t); /* allocate what it needs; on failure
                                    (PC_E_NOMEM) nothing has changed   */
    void (*stop)(pc_radix *t);   /* leaving: drop its per-node state
                                    and what only it uses              */
    void (*rebuild)(pc_radix *t); /* its state for every node from
                                     recency and hits: O(nodes), evicts
                                     nothing, cannot fail              */
    /* Room for `nodes` nodes, in phase 1 of anything that creates one. */
    int (*reserve)(pc_radix *t, uint64_t nodes);
    /* A new leaf holding pages index.. of the prompt (the first is page). */
    void (*admit)(pc_radix *t, pc_radix_node *leaf, const pc_radix_node *root,
                  const uint32_t *page, size_t index);
    /* After the core made the path from n up most recently used (a match:
     * hit; an insert: not). */
    void (*touch)(pc_radix *t, pc_radix_node *n, bool hit);
    /* n may have joined or left the evictable leaves: its lock_ref went to
     * or from 0, it got its first child or lost its last one. */
    void (*update)(pc_radix *t, pc_radix_node *n);
    /* take pages were evicted from the end of leaf x; x->npages == 0: x is
     * about to be freed. */
    void (*trim)(pc_radix *t, pc_radix_node *x, size_t take);
    /* The pages a lookup asked for (not a peek). */
    void (*observe)(pc_radix *t, uint32_t ns_hash, const uint32_t *tokens,
                    size_t pages);
    /* The next unlocked leaf to evict from (NULL: none).  Only the policy's
     * own reordering may happen here (s3fifo's second rounds): the driver
     * may set the leaf aside instead of evicting it (a namespace at its
     * reserve).  Required. */
    pc_radix_node *(*pick)(pc_radix *t);
    /* The driver takes the last `take` pages of the picked leaf x (what a
     * victim means to the policy: LFU-DA's L, s3fifo's ghost). */
    void (*evicting)(pc_radix *t, pc_radix_node *x, size_t take);
    /* Take the picked leaf x out of the candidates until restore (which
     * puts every such leaf back where it was); both required.  Only
     * inside one eviction call. */
    void (*aside)(pc_radix *t, pc_radix_node *x);
    void (*restore)(pc_radix *t);
    /* The policy's own invariants (pc_radix_check has verified the tree,
     * the list and the counters).  Required. */
    int (*check)(const pc_radix *t);
} pc_radix_policy_ops;

extern const pc_radix_policy_ops pc_radix_lru_ops, pc_radix_lfu_ops,
    pc_radix_fifo_ops, pc_radix_s3fifo_ops, pc_radix_priority_ops,
    pc_radix_auto_ops;

struct pc_radix {
    uint32_t P;          /* tokens per page                                 */
    uint32_t page_bytes; /* P * 4                                           */
    kidtab ns;           /* namespace roots                                 */
    lru_link lru;        /* sentinel: next = least recently used            */
    uint64_t tick;       /* logical clock for last_access                   */
    unsigned fail_countdown;
    pc_radix_stats st;
    const pc_radix_policy_ops *ops; /* the eviction policy                  */
    /* Heap policies (policies.c): the evictable leaves in a min-heap by
     * pkey, s3fifo one heap per queue; room for hcap - 1 nodes in each. */
    pc_heap heap[2];
    uint32_t hcap;
    uint64_t lfu_L;       /* LFU-DA inflation: key of the last victim  */
    uint64_t s3_pages[2]; /* cached pages per s3fifo queue             */
    ghost gh;
    ns_prio *prios;
    uint32_t nprios, cprios; /* entries, room */
    ns_limit *limits;        /* limits.c: per-namespace quota and reserve */
    uint32_t nlimits, climits;
    pc_radix_evict_fn hook;  /* where quota evictions go */
    void *hook_ctx;
    /* Leaves set aside by one eviction call (a namespace at its reserve):
     * the LRU list's in list order; the heaps' at the top of each heap's
     * array, v[hcap - 1] downwards (room that heap never reaches: a heap
     * and its set-aside leaves together are at most the nodes). */
    lru_link lru_aside;
    uint32_t heap_aside[2];
    /* auto (auto.c): the simulations, and which of them the victims follow */
    uint64_t capacity;   /* pages; 0 unknown                            */
    mini sim[2];         /* [0] LRU, [1] S3-FIFO                        */
    uint64_t sample_thr; /* sampled when a page's 32-bit hash < this     */
    bool auto_s3;
    uint64_t auto_switches, auto_sampled, auto_score[2], auto_next;
};

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

/* Identity of page `index` (0-based from the namespace root) with the given
 * tokens: what S3-FIFO's ghost and the auto policy's simulations know of a
 * page.  Two prefixes that share this (same page, same depth, same
 * namespace) but differ earlier would collide; both only steer eviction,
 * so that is harmless. */
static inline uint64_t page_ident(const pc_radix *t, uint32_t root_hash,
                                  const uint32_t *page, size_t index)
{
    uint64_t seed = (uint64_t)root_hash * 0x9E3779B97F4A7C15ull + index;
    return XXH3_64bits_withSeed(page, t->page_bytes, seed) | 1u;
}

/* Every allocation of the tree: counted in metadata_bytes, and failed on
 * demand by pc_radix_debug_fail_alloc. */
static inline void *rx_alloc(pc_radix *t, size_t size)
{
    if (t->fail_countdown && --t->fail_countdown == 0)
        return NULL;
    void *p = malloc(size);
    if (p)
        t->st.metadata_bytes += malloc_usable_size(p);
    return p;
}

static inline void rx_free(pc_radix *t, void *p)
{
    if (!p)
        return;
    t->st.metadata_bytes -= malloc_usable_size(p);
    free(p);
}

/* Every allocation the tree holds besides its nodes and their child tables
 * (NULL where a policy does not use it), for destroy and the check. */
#define RX_STATE_N 11
static inline void rx_state(const pc_radix *t, void *out[RX_STATE_N])
{
    void *v[RX_STATE_N] = {t->ns.slots,    t->heap[0].v,  t->heap[1].v,
                           t->gh.ring,     t->gh.set,     t->prios,
                           t->sim[0].slot, t->sim[0].tab, t->sim[1].slot,
                           t->sim[1].tab,  t->limits};
    memcpy(out, v, sizeof(v));
}

/* ---- the LRU list ---------------------------------------------------------- */

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

/* The least recently used unlocked node, always a leaf; NULL: none. */
static inline pc_radix_node *lru_head(const pc_radix *t)
{
    return t->lru.next != &t->lru ? (pc_radix_node *)t->lru.next : NULL;
}

/* Aside for a policy whose victims are the list's head: the picked leaf is
 * always the head, so the set-aside leaves keep their order and restore
 * puts them back in front in O(1). */
static inline void lru_aside(pc_radix *t, pc_radix_node *x)
{
    lru_unlink(x);
    lru_insert_after(t->lru_aside.prev, x);
}

static inline void lru_restore(pc_radix *t)
{
    lru_link *a = &t->lru_aside;
    if (a->next == a)
        return;
    a->prev->next = t->lru.next;
    t->lru.next->prev = a->prev;
    t->lru.next = a->next;
    a->next->prev = &t->lru;
    a->prev = a->next = a;
}

/* ---- per-namespace accounting ---------------------------------------------- */

/* Unlocked pages of namespace root r that eviction for space may take: all
 * of them, unless the reserve holds some back. */
static inline uint64_t ns_avail(const pc_radix_node *r)
{
    uint64_t e = r->ns_unlocked;
    if (!r->ns_min)
        return e;
    uint64_t room = r->ns_pages > r->ns_min ? r->ns_pages - r->ns_min : 0;
    return e < room ? e : room;
}

/* Namespace r gains dn pages, de of them unlocked (either may be negative);
 * the tree's evictable / reserved / protected counters follow.  Unsigned
 * wrap-around makes the differences exact. */
static inline void ns_account(pc_radix *t, pc_radix_node *r, int64_t dn,
                              int64_t de)
{
    uint64_t a0 = ns_avail(r), e0 = r->ns_unlocked;
    r->ns_pages += (uint64_t)dn;
    r->ns_unlocked += (uint64_t)de;
    uint64_t a1 = ns_avail(r);
    t->st.evictable_pages += a1 - a0;
    t->st.reserved_pages += (r->ns_unlocked - a1) - (e0 - a0);
    t->st.protected_pages += (uint64_t)(dn - de);
}

static inline pc_radix_node *root_of(pc_radix_node *n)
{
    while (n->parent)
        n = n->parent;
    return n;
}

/* ---- the child table (children.c) ------------------------------------------ */

/* Entries of a kid table in slot order (dense for small tables). */
#define KT_FOREACH(kt, i, c)                                                   \
    for (uint32_t i = 0; i < ((kt)->cap <= KT_SMALL ? (kt)->n : (kt)->cap); i++) \
        if (((c) = (kt)->slots[i].node) != NULL)

static inline uint32_t kt_key_of(const pc_radix *t, enum kt_kind kind,
                                 uint32_t cap, const pc_radix_node *n)
{
    if (kind == KT_NS || cap > KT_SMALL)
        return n->hash;
    return n->data[(size_t)n->off * t->P]; /* first token */
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

uint32_t pc_radix_kt_cap_for(uint32_t n);
kslot *pc_radix_kt_alloc(pc_radix *t, uint32_t cap);
void pc_radix_kt_place(kidtab *kt, pc_radix_node *n, uint32_t key);
int pc_radix_kt_prepare_add(pc_radix *t, const kidtab *kt, kslot **pending);
void pc_radix_kt_commit_add(pc_radix *t, enum kt_kind kind, kidtab *kt,
                            kslot *pending, pc_radix_node *n);
uint32_t pc_radix_kt_slot(const pc_radix *t, enum kt_kind kind,
                          const kidtab *kt, const pc_radix_node *n);
void pc_radix_kt_remove(pc_radix *t, enum kt_kind kind, kidtab *kt,
                        const pc_radix_node *n);
int pc_radix_kt_check(const pc_radix *t, enum kt_kind kind, const kidtab *kt,
                      const pc_radix_node *parent);
pc_radix_node *pc_radix_ns_find(const pc_radix *t, const void *ns, size_t len,
                                uint32_t h);
/* Next node after n in pre-order within n's namespace (NULL at the end);
 * *depth follows the node's depth. */
pc_radix_node *pc_radix_next_preorder(const pc_radix *t, const pc_radix_node *n,
                                      int *depth);

/* ---- what the policy files share ------------------------------------------ */

#define S3_Q(n) ((n)->pol & 1u)
#define S3_FREQ(n) (((n)->pol >> 1) & 3u)
#define S3_FREQ_MAX 3u
/* The ghost remembers this many times the cached pages.  The paper sizes
 * it like the main queue; on the Mooncake traces (bench/trace_replay) a
 * longer memory pays: a conversation's next turn often comes back after
 * its pages left the small queue long ago (x1: +47% over LRU at 1% of the
 * conversation trace's working set, x4: +77%). */
#define S3_GHOST_FACTOR 4u

/* policies.c: the heap policies' methods that auto reuses */
int pc_radix_heap_prepare(pc_radix *t);
void pc_radix_heap_stop(pc_radix *t);
void pc_radix_heaps_free(pc_radix *t);
int pc_radix_heap_reserve(pc_radix *t, uint64_t nodes);
void pc_radix_heap_update(pc_radix *t, pc_radix_node *n);
void pc_radix_s3_rebuild(pc_radix *t);
void pc_radix_s3_admit(pc_radix *t, pc_radix_node *n, const pc_radix_node *root,
                       const uint32_t *page, size_t index);
void pc_radix_s3_touch(pc_radix *t, pc_radix_node *n, bool hit);
void pc_radix_s3_trim(pc_radix *t, pc_radix_node *x, size_t take);
pc_radix_node *pc_radix_s3_pick(pc_radix *t);
void pc_radix_s3_evicting(pc_radix *t, pc_radix_node *x, size_t take);
int pc_radix_s3_check(const pc_radix *t);
/* The root key of a namespace (its priority, biased), for a new root. */
uint64_t pc_radix_ns_prio_key(const pc_radix *t, const void *ns, size_t len);

/* radix.c: evict the last `take` pages of the unlocked leaf x of namespace
 * root r (the namespace may go with its last page). */
void pc_radix_evict_tail(pc_radix *t, pc_radix_node *r, pc_radix_node *x,
                         size_t take, pc_radix_evict_fn fn, void *ctx);
/* policies.c: aside/restore for the heap policies */
void pc_radix_heap_aside(pc_radix *t, pc_radix_node *x);
void pc_radix_heap_restore(pc_radix *t);
/* limits.c: a new root's limits; quota eviction down to max_pages, never
 * the node `keep` (NULL: any). */
void pc_radix_ns_limits_init(const pc_radix *t, pc_radix_node *r);
void pc_radix_quota_evict(pc_radix *t, pc_radix_node *r,
                          const pc_radix_node *keep);

/* auto.c: no simulations unless the policy is auto (for the others' check) */
int pc_radix_auto_check_idle(const pc_radix *t);

#endif /* PC_RADIX_INT_H */

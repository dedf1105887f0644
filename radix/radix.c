/*
 * radix/radix.c - the page-granular radix tree of token-id prefixes: the
 * core (namespaces, match, insert, split, locks, the eviction driver,
 * policy switching, stats).  The other files of the room: radix_int.h.
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
 *   ┌────────── header (96 B) ──────────┬── tokens[cap*P] ──┬─ blocks[cap] ─┐
 *   │ lru links, parent, kid table, ... │ . . [live pages]  │ . [live ids]  │
 *   └───────────────────────────────────┴──────▲────────────┴───────────────┘
 *                                         off ─┘ (pages before `off` went to
 *                                                 the upper half of a split)
 *
 * Why it is shaped this way:
 * - Nodes never move: leases hold pointers to them.  A split at page k of X
 *   creates a NEW upper node U for pages [0,k) and keeps X as the deeper half
 *   (X's live window moves up by `off`), so a lock on X still covers exactly
 *   the pages it pinned; U inherits X's lock_ref, recency and policy state.
 *   The cost is slack: X keeps its allocation.  Splits are rare next to
 *   lookups, and the slack is counted in metadata_bytes.
 * - Children are keyed by their whole first page (children.c): a small
 *   array keyed by the first token, a hash table past 8 children.  Either
 *   way a candidate is confirmed with memcmp of the page, and the rest of
 *   the edge with one memcmp: a 2,048-token match touches a handful of
 *   nodes, never a pointer per token.
 * - Unlocked nodes sit on one intrusive list in LRU order with every node
 *   before its parent (touch a path deepest node first; when a lock drops
 *   to 0, append bottom-up), whatever the policy.  Its head is always an
 *   unlocked leaf.  Locked nodes are simply not on it (SQLite pcache1).
 * - The eviction policy decides which leaf goes (t->ops, policies.c and
 *   auto.c): LRU takes the list's head, O(1) per page with no scan and no
 *   heap; the others keep the evictable leaves in heaps, O(log n).  Either
 *   way only leaves lose pages, deepest first, so a cached prefix never has
 *   a hole, and a parent that becomes a leaf is a candidate at once.
 * - Every operation allocates all it needs before it mutates anything, so an
 *   out-of-memory failure leaves the tree exactly as it was.
 * - Nodes are not merged back after eviction leaves a single child: merging
 *   would move pages between nodes that leases may hold.
 */
#include "radix/radix_int.h"

/* ---- recency ------------------------------------------------------------- */

/* Mark the path from n up to its root most recently used, deepest first so
 * that every node still stands before its parent; then the policy. */
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
    }
    if (t->ops->touch)
        t->ops->touch(t, first, hit);
}

static inline void policy_update(pc_radix *t, pc_radix_node *n)
{
    if (t->ops->update)
        t->ops->update(t, n);
}

static inline int policy_reserve(pc_radix *t, uint64_t nodes)
{
    return t->ops->reserve ? t->ops->reserve(t, nodes) : 0;
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
    r->pkey = pc_radix_ns_prio_key(t, ns, len);
    pc_radix_ns_limits_init(t, r);
    return r;
}

/* An empty namespace goes away with its last page. */
static void root_remove(pc_radix *t, pc_radix_node *r)
{
    assert(r->kids.n == 0 && r->lock_ref == 0);
    pc_radix_kt_remove(t, KT_NS, &t->ns, r);
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
    uint32_t slot = pc_radix_kt_slot(t, KT_CHILD, &p->kids, x);
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
    pc_radix_kt_place(&u->kids, x, kt_key_of(t, KT_CHILD, u->kids.cap, x));
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
    u->kids.cap = pc_radix_kt_cap_for(kids);
    u->kids.slots = pc_radix_kt_alloc(t, u->kids.cap);
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
    t->lru_aside.prev = t->lru_aside.next = &t->lru_aside;
    t->ops = &pc_radix_lru_ops;
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
    void *state[RX_STATE_N];
    rx_state(t, state);
    for (size_t i = 0; i < RX_STATE_N; i++)
        free(state[i]);
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
                                                   PC_RADIX_MATCH_PEEK |
                                                   PC_RADIX_MATCH_NOSTATS |
                                                   PC_RADIX_MATCH_NORECENCY))))
        rc = PC_E_INVAL;
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    size_t want = n_tokens / t->P, max = want;
    if (blocks && blocks_cap < max)
        max = blocks_cap;

    walk w;
    uint32_t h = hash32(ns, ns_len);
    walk_down(t, pc_radix_ns_find(t, ns, ns_len, h), tokens, max, blocks, &w);
    pc_radix_node *hit = w.part ? w.part : w.node;
    if (w.part && (flags & PC_RADIX_MATCH_SPLIT)) {
        pc_radix_node *u = split_prepare(t, w.part, w.part_pages, 1);
        if (!u)
            return PC_E_NOMEM;
        if (policy_reserve(t, t->st.nodes + 1)) {
            node_free(t, u);
            return PC_E_NOMEM;
        }
        split_commit(t, w.part, w.part_pages, u);
        hit = u;
    }
    out->pages = w.pages;
    out->tokens = w.pages * t->P;
    out->node = w.pages ? hit : NULL;
    if (!(flags & (PC_RADIX_MATCH_PEEK | PC_RADIX_MATCH_NOSTATS))) {
        t->st.lookups++;
        t->st.hit_pages += w.pages;
        t->st.miss_pages += want - w.pages;
    }
    if (!(flags & (PC_RADIX_MATCH_PEEK | PC_RADIX_MATCH_NORECENCY))) {
        if (w.pages)
            touch_path(t, hit, true);
        if (t->ops->observe)
            t->ops->observe(t, h, tokens, want);
    }
    return 0;
}

/* ---- insert --------------------------------------------------------------- */

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
    walk_down(t, pc_radix_ns_find(t, ns, ns_len, h), tokens, want, canon, &w);
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
        if (pc_radix_kt_prepare_add(t, &t->ns, &ns_grow) ||
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
        if (!u && pc_radix_kt_prepare_add(t, &w.node->kids, &kid_grow))
            goto fail;
    }
    /* Last, so that a failure before it leaves the policy's room alone. */
    if (policy_reserve(t, t->st.nodes + 2)) /* a split and a leaf at most */
        goto fail;

    /* Phase 2: commit; nothing below can fail. */
    if (!w.root) {
        pc_radix_kt_commit_add(t, KT_NS, &t->ns, ns_grow, root);
        t->st.namespaces++;
    }
    pc_radix_node *deepest = w.node;
    if (u) {
        split_commit(t, w.part, w.part_pages, u);
        deepest = u;
    }
    if (leaf) {
        pc_radix_kt_commit_add(t, KT_CHILD, &deepest->kids, kid_grow, leaf);
        leaf->parent = deepest;
        lru_append(t, leaf); /* placed for real by touch_path below */
        policy_update(t, deepest); /* no longer a leaf */
        if (t->ops->admit)
            t->ops->admit(t, leaf, root, tokens + w.pages * t->P, w.pages);
        deepest = leaf;
        t->st.nodes++;
        t->st.pages += rest;
        t->st.tokens += rest * t->P;
        ns_account(t, root, (int64_t)rest, (int64_t)rest);
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
    /* Over its quota: the namespace pays, never with what this call
     * returns (one branch when there is no quota). */
    if (root->ns_max && root->ns_pages > root->ns_max)
        pc_radix_quota_evict(t, root, deepest);
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
    pc_radix_node *r = n;
    uint64_t moved = 0; /* pages that became locked */
    node->pins++;
    for (n = node; n; n = n->parent) {
        if (n->lock_ref++ == 0 && n->parent) {
            lru_unlink(n);
            policy_update(t, n);
            moved += n->npages;
        }
    }
    ns_account(t, r, 0, -(int64_t)moved);
    return 0;
}

int pc_radix_unlock(pc_radix *t, pc_radix_node *node)
{
    if (!t || !node || !node->parent)
        return PC_E_INVAL;
    if (node->pins == 0)
        return PC_E_NOTLOCKED;
    uint64_t now = ++t->tick, moved = 0; /* pages that became unlocked */
    pc_radix_node *r = node;
    node->pins--;
    /* Bottom-up, so nodes that become unlocked are appended before their
     * parents, keeping the list rule. */
    for (pc_radix_node *n = node; n; n = n->parent) {
        assert(n->lock_ref > 0);
        r = n;
        if (--n->lock_ref == 0 && n->parent) {
            n->last_access = now;
            lru_append(t, n);
            policy_update(t, n);
            moved += n->npages;
        }
    }
    ns_account(t, r, 0, (int64_t)moved);
    return 0;
}

/* ---- eviction ------------------------------------------------------------- */

/* Evict the last `take` pages of the unlocked leaf x of namespace root r
 * (deepest first); a leaf left without pages goes, and a namespace left
 * without nodes too. */
void pc_radix_evict_tail(pc_radix *t, pc_radix_node *r, pc_radix_node *x,
                         size_t take, pc_radix_evict_fn fn, void *ctx)
{
    assert(x->kids.n == 0 && x->lock_ref == 0 && x->parent && take <= x->npages);
    assert(root_of(x) == r);
    const uint32_t *b = node_blocks(t, x);
    for (size_t i = 0; i < take; i++)
        if (fn)
            fn(ctx, b[x->npages - 1 - i]);
    x->npages -= (uint32_t)take;
    if (t->ops->trim)
        t->ops->trim(t, x, take);
    t->st.pages -= take;
    t->st.tokens -= take * t->P;
    ns_account(t, r, -(int64_t)take, -(int64_t)take);
    t->st.evicted_pages += take;
    if (x->npages)
        return;
    pc_radix_node *p = x->parent;
    lru_unlink(x);
    /* pc_radix_kt_remove finds x by its stored first-page hash. */
    pc_radix_kt_remove(t, KT_CHILD, &p->kids, x);
    node_free(t, x);
    policy_update(t, p); /* its last child gone: a leaf now */
    t->st.nodes--;
    t->st.evicted_nodes++;
    if (p == r && p->kids.n == 0)
        root_remove(t, p);
}

/* The eviction driver of pc_radix_evict and pc_radix_evict_paths: the
 * policy's victims, minus those of namespaces at their reserve (set aside
 * for this call, then put back where they were).  Each pass evicts a page
 * or sets a leaf aside, so it ends. */
typedef void (*victim_report_fn)(pc_radix *t, void *ctx,
                                 const pc_radix_node *r,
                                 const pc_radix_node *x, size_t take);

static size_t evict_driver(pc_radix *t, size_t n_blocks, pc_radix_evict_fn fn,
                           void *ctx, victim_report_fn report, void *rctx)
{
    size_t freed = 0;
    bool aside = false;
    const pc_radix_policy_ops *ops = t->ops;
    while (freed < n_blocks) {
        pc_radix_node *x = ops->pick(t);
        if (!x)
            break;
        pc_radix_node *r = root_of(x);
        size_t take = n_blocks - freed;
        if (take > x->npages)
            take = x->npages;
        if (r->ns_min) {
            uint64_t room = r->ns_pages > r->ns_min ? r->ns_pages - r->ns_min : 0;
            if (!room) {
                ops->aside(t, x);
                aside = true;
                continue;
            }
            if (take > room)
                take = (size_t)room;
        }
        if (ops->evicting)
            ops->evicting(t, x, take);
        if (report)
            report(t, rctx, r, x, take);
        freed += take;
        pc_radix_evict_tail(t, r, x, take, fn, ctx);
    }
    if (aside)
        ops->restore(t);
    return freed;
}

size_t pc_radix_evict(pc_radix *t, size_t n_blocks, pc_radix_evict_fn fn,
                      void *ctx)
{
    return t ? evict_driver(t, n_blocks, fn, ctx, NULL, NULL) : 0;
}

/* The tokens from x's namespace root through x's last live page (`pages`
 * pages) into *buf, grown as needed; NULL on NOMEM. */
static const uint32_t *path_tokens(const pc_radix *t, const pc_radix_node *x,
                                   size_t pages, uint32_t **buf, size_t *cap)
{
    size_t end = pages * t->P;
    if (end > *cap) {
        uint32_t *g = realloc(*buf, end * sizeof(**buf));
        if (!g)
            return NULL;
        *buf = g;
        *cap = end;
    }
    for (const pc_radix_node *n = x; n->parent; n = n->parent) {
        size_t k = (size_t)n->npages * t->P;
        end -= k;
        memcpy(*buf + end, node_tokens(t, n), k * sizeof(**buf));
    }
    return *buf;
}

typedef struct paths_ctx {
    pc_radix_evict_path_fn fn;
    void *ctx;
    uint32_t *buf;
    size_t cap;
} paths_ctx;

static void report_path(pc_radix *t, void *ctx, const pc_radix_node *r,
                        const pc_radix_node *x, size_t take)
{
    paths_ctx *pc = ctx;
    size_t depth = pc_radix_node_depth_pages(x); /* through x's last page */
    pc_radix_evicted e = {
        .ns = root_ns(r),
        .ns_len = r->off,
        .tokens = path_tokens(t, x, depth, &pc->buf, &pc->cap),
        .first_page = depth - take,
        .n_pages = take,
        .blocks = node_blocks(t, x) + x->npages - take,
    };
    pc->fn(pc->ctx, &e);
}

size_t pc_radix_evict_paths(pc_radix *t, size_t n_blocks,
                            pc_radix_evict_path_fn fn, void *ctx)
{
    if (!t)
        return 0;
    paths_ctx pc = {fn, ctx, NULL, 0};
    size_t freed = evict_driver(t, n_blocks, NULL, NULL,
                                fn ? report_path : NULL, &pc);
    free(pc.buf);
    return freed;
}

/* pc_radix_evict_ns and its path-reporting variant: one of fn, pfn. */
static int evict_ns(pc_radix *t, const void *ns, size_t ns_len,
                    pc_radix_evict_fn fn, pc_radix_evict_path_fn pfn,
                    void *ctx, size_t *evicted)
{
    if (evicted)
        *evicted = 0;
    if (!t || ns_len > PC_RADIX_NS_MAX || (ns_len && !ns))
        return PC_E_INVAL;
    pc_radix_node *r = pc_radix_ns_find(t, ns, ns_len, hash32(ns, ns_len));
    if (!r)
        return 0;
    /* The namespace's nodes in pre-order; walked backwards, every node
     * comes after all of its children, so each unlocked node is a leaf by
     * the time it is reached.  O(nodes of the namespace): an admin op. */
    size_t n = 0, cap = 64, pages = 0, bcap = 0;
    uint32_t *buf = NULL;
    pc_radix_node **v = malloc(cap * sizeof(*v));
    if (!v)
        return PC_E_NOMEM;
    int depth = 0;
    for (pc_radix_node *x = pc_radix_next_preorder(t, r, &depth); x;
         x = pc_radix_next_preorder(t, x, &depth)) {
        if (n == cap) {
            pc_radix_node **g = realloc(v, 2 * cap * sizeof(*v));
            if (!g) {
                free(v);
                return PC_E_NOMEM;
            }
            v = g;
            cap *= 2;
        }
        v[n++] = x;
    }
    bool last = false; /* the namespace itself may go with its last node */
    for (size_t i = n; i-- > 0 && !last;) {
        pc_radix_node *x = v[i];
        if (x->lock_ref || x->kids.n)
            continue;
        last = x->parent == r && r->kids.n == 1;
        pages += x->npages;
        if (pfn) { /* before the pages go (r with them, when last) */
            size_t depth = pc_radix_node_depth_pages(x);
            pc_radix_evicted e = {
                .ns = root_ns(r),
                .ns_len = r->off,
                .tokens = path_tokens(t, x, depth, &buf, &bcap),
                .first_page = depth - x->npages,
                .n_pages = x->npages,
                .blocks = node_blocks(t, x),
            };
            pfn(ctx, &e);
        }
        pc_radix_evict_tail(t, r, x, x->npages, fn, ctx);
    }
    free(v);
    free(buf);
    if (evicted)
        *evicted = pages;
    return 0;
}

int pc_radix_evict_ns(pc_radix *t, const void *ns, size_t ns_len,
                      pc_radix_evict_fn fn, void *ctx, size_t *evicted)
{
    return evict_ns(t, ns, ns_len, fn, NULL, ctx, evicted);
}

int pc_radix_evict_ns_paths(pc_radix *t, const void *ns, size_t ns_len,
                            pc_radix_evict_path_fn fn, void *ctx,
                            size_t *evicted)
{
    return evict_ns(t, ns, ns_len, NULL, fn, ctx, evicted);
}

/* ---- eviction policy ------------------------------------------------------ */

static const pc_radix_policy_ops *const policies[PC_POLICY_COUNT] = {
    [PC_POLICY_LRU] = &pc_radix_lru_ops,
    [PC_POLICY_LFU] = &pc_radix_lfu_ops,
    [PC_POLICY_FIFO] = &pc_radix_fifo_ops,
    [PC_POLICY_S3FIFO] = &pc_radix_s3fifo_ops,
    [PC_POLICY_PRIORITY] = &pc_radix_priority_ops,
    [PC_POLICY_AUTO] = &pc_radix_auto_ops,
};

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

/* The new policy allocates first (the old one stays if that fails), then
 * the old one lets go and the new one derives its state for every node from
 * what any policy keeps (recency, hits): an admin operation, O(n log n). */
int pc_radix_set_policy(pc_radix *t, pc_radix_policy p)
{
    if (!t || !pc_radix_policy_name(p))
        return PC_E_INVAL;
    const pc_radix_policy_ops *to = policies[p];
    if (to == t->ops)
        return 0;
    int rc = to->prepare ? to->prepare(t) : 0;
    if (rc)
        return rc;
    if (t->ops->stop)
        t->ops->stop(t);
    t->ops = to;
    if (to->rebuild)
        to->rebuild(t);
    return 0;
}

pc_radix_policy pc_radix_get_policy(const pc_radix *t)
{
    return t ? t->ops->id : PC_POLICY_LRU;
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

const uint32_t *pc_radix_node_tokens(const pc_radix *t,
                                     const pc_radix_node *n)
{
    return node_tokens(t, n);
}

size_t pc_radix_node_depth_pages(const pc_radix_node *n)
{
    size_t d = 0;
    for (; n; n = n->parent)
        d += n->npages;
    return d;
}

/*
 * radix/children.c - the child table of a node (and the tree's namespace
 * table, the same structure keyed by the namespace's hash).
 *
 * Children are keyed by their whole first page.  Up to 8 sit in a small
 * dense array keyed by the first token: no hashing on the hot path, and a
 * candidate is confirmed with memcmp of the page.  More (a system prompt
 * followed by thousands of questions) go to an open-addressing table keyed
 * by a 32-bit XXH3 of the page, at most 3/4 full (rebuilt at half), linear
 * probing, backward-shift deletion (proto/hashtab.h):
 *
 *   n <= 8:   slots ─► [c0 key=tok0][c1 key=tok0][c2 ...]   dense, cap <= 8
 *
 *   n > 8:    slots ─► [    ][c7 h][c2 h][    ][c9 h] ...    cap = 2^k >= 16
 *                              ▲ probe from hash & (cap - 1)
 *
 * Each node keeps the hash of its own first page (node->hash), computed
 * from the inserting caller's warm copy, so that finding a node's slot
 * (to evict it, or to rebuild a table) never reads its cold tokens.  The
 * lookup itself (kids_find) is inline in radix_int.h: it is the hot path.
 *
 * Growth allocates in a phase of its own (prepare, then commit) so that an
 * insert can allocate everything before it changes anything; shrinking is
 * best effort, so that removal never fails.
 */
#include "radix/radix_int.h"

#include <stdio.h>

#include "proto/hashtab.h"

static bool kslot_empty(const void *s)
{
    return ((const kslot *)s)->node == NULL;
}

static uint32_t kslot_hash(const void *ctx, const void *s)
{
    (void)ctx;
    return ((const kslot *)s)->key;
}

static const pc_hashtab_ops kslot_table = {sizeof(kslot), kslot_empty,
                                           kslot_hash};

/* Capacity a table of n entries is rebuilt with: a small array up to 8,
 * then a power-of-two hash table at most half full. */
uint32_t pc_radix_kt_cap_for(uint32_t n)
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
void pc_radix_kt_place(kidtab *kt, pc_radix_node *n, uint32_t key)
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
kslot *pc_radix_kt_alloc(pc_radix *t, uint32_t cap)
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
static void kt_rebuild(pc_radix *t, enum kt_kind kind, kidtab *kt, kslot *mem,
                       uint32_t cap)
{
    kidtab nt = {mem, 0, cap};
    pc_radix_node *c;
    KT_FOREACH(kt, i, c)
        pc_radix_kt_place(&nt, c, kt_key_of(t, kind, cap, c));
    assert(nt.n == kt->n);
    rx_free(t, kt->slots);
    *kt = nt;
}

/* Phase 1 of adding an entry: allocate bigger storage if the table is full.
 * Nothing changes; *pending is NULL when no growth is needed. */
int pc_radix_kt_prepare_add(pc_radix *t, const kidtab *kt, kslot **pending)
{
    *pending = NULL;
    if (!kt_full(kt))
        return 0;
    *pending = pc_radix_kt_alloc(t, pc_radix_kt_cap_for(kt->n + 1));
    return *pending ? 0 : PC_E_NOMEM;
}

/* Phase 2: cannot fail. */
void pc_radix_kt_commit_add(pc_radix *t, enum kt_kind kind, kidtab *kt,
                            kslot *pending, pc_radix_node *n)
{
    if (pending)
        kt_rebuild(t, kind, kt, pending, pc_radix_kt_cap_for(kt->n + 1));
    pc_radix_kt_place(kt, n, kt_key_of(t, kind, kt->cap, n));
}

/* Slot index of entry n (by pointer), or UINT32_MAX. */
uint32_t pc_radix_kt_slot(const pc_radix *t, enum kt_kind kind,
                          const kidtab *kt, const pc_radix_node *n)
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
void pc_radix_kt_remove(pc_radix *t, enum kt_kind kind, kidtab *kt,
                        const pc_radix_node *n)
{
    uint32_t i = pc_radix_kt_slot(t, kind, kt, n);
    assert(i != UINT32_MAX);
    kt->n--;
    if (kt->cap <= KT_SMALL) {
        kt->slots[i] = kt->slots[kt->n];
        kt->slots[kt->n].node = NULL;
    } else {
        pc_hashtab_delete(kt->slots, kt->cap - 1, i, &kslot_table, NULL);
    }
    if (kt->n == 0) {
        rx_free(t, kt->slots);
        kt->slots = NULL;
        kt->cap = 0;
    } else if (kt->cap > KT_SMALL && pc_radix_kt_cap_for(kt->n) * 4 <= kt->cap) {
        uint32_t cap = pc_radix_kt_cap_for(kt->n);
        kslot *mem = pc_radix_kt_alloc(t, cap);
        if (mem)
            kt_rebuild(t, kind, kt, mem, cap);
    }
}

pc_radix_node *pc_radix_ns_find(const pc_radix *t, const void *ns, size_t len,
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

/* ---- traversal ----------------------------------------------------------- */

static pc_radix_node *first_kid(const pc_radix_node *n)
{
    pc_radix_node *k;
    KT_FOREACH(&n->kids, i, k)
        return k;
    return NULL;
}

/* Pre-order without a stack: descend to the first child, else climb to the
 * next sibling in slot order. */
pc_radix_node *pc_radix_next_preorder(const pc_radix *t, const pc_radix_node *n,
                                      int *depth)
{
    pc_radix_node *next = first_kid(n);
    if (next) {
        ++*depth;
        return next;
    }
    for (; n->parent; n = n->parent, --*depth) {
        const kidtab *kt = &n->parent->kids;
        uint32_t lim = kt->cap <= KT_SMALL ? kt->n : kt->cap;
        for (uint32_t j = pc_radix_kt_slot(t, KT_CHILD, kt, n) + 1; j < lim; j++)
            if (kt->slots[j].node)
                return kt->slots[j].node;
    }
    return NULL;
}

/* ---- check ---------------------------------------------------------------- */

#define CHECK(cond, ...) PC_CHECK_OR_OUT("pc_radix_check", cond, __VA_ARGS__)

/* One table: count, keys, every entry found by its own key. */
int pc_radix_kt_check(const pc_radix *t, enum kt_kind kind, const kidtab *kt,
                      const pc_radix_node *parent)
{
    int rc = 0;
    uint32_t count = 0;
    const pc_radix_node *c;
    CHECK((kt->cap == 0) == (kt->slots == NULL), "table storage/cap mismatch");
    CHECK(kt->n <= kt->cap, "table holds %u > cap %u", kt->n, kt->cap);
    if (kt->cap > KT_SMALL &&
        (rc = pc_hashtab_check(kt->slots, kt->cap, &kslot_table, NULL, NULL,
                               "pc_radix_check")))
        goto out;
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
            CHECK(pc_radix_ns_find(t, root_ns(c), c->off, c->hash) == c,
                  "namespace root %p not found by its name", (void *)c);
        }
    }
    CHECK(count == kt->n, "table counts %u entries, holds %u", kt->n, count);
out:
    return rc;
}

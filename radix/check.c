/*
 * radix/check.c - pc_radix_check() and the read-only walks over the tree
 * (pc_radix_foreach, pc_radix_dump).
 *
 * The check recomputes everything from scratch and compares: the tree's
 * shape (parent links, child tables: children.c's pc_radix_kt_check), the
 * lock counts, the LRU list (exactly the unlocked non-root nodes, every
 * node after its children), every counter including metadata_bytes (each
 * allocation as the allocator sized it), and last the policy's own
 * invariants (t->ops->check: heaps, ghost, simulations).  Tests call it
 * after every mutation, so it favours plain code over speed: O(size).
 */
#include "radix/radix_int.h"

#include <stdio.h>


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

int pc_radix_check(const pc_radix *t)
{
    int rc = 0;
    ptrset nodes = {0}, seen = {0};
    pc_radix_node **stack = NULL;
    size_t sp = 0, scap = 0;
    pc_radix_stats c = {0};
    uint64_t unlocked = 0, unlocked_pages = 0, locked_pages = 0;
    const pc_radix_node *r;
    if (!t)
        return PC_E_INVAL;
    c.metadata_bytes = malloc_usable_size((void *)t);
    void *state[RX_STATE_N];
    rx_state(t, state);
    for (size_t i = 0; i < RX_STATE_N; i++)
        c.metadata_bytes += state[i] ? malloc_usable_size(state[i]) : 0;
    CHECK(t->page_bytes == t->P * 4, "page_bytes");
    if ((rc = pc_radix_kt_check(t, KT_NS, &t->ns, NULL)))
        goto out;

    KT_FOREACH(&t->ns, i, r) {
        c.namespaces++;
        CHECK(r->parent == NULL && r->npages == 0 && r->pins == 0,
              "root %p malformed", (void *)r);
        CHECK(r->hash == hash32(root_ns(r), r->off), "root hash stale");
        CHECK(r->kids.n > 0, "empty namespace kept");
        CHECK(r->lru.prev == NULL && r->lru.next == NULL, "root on LRU list");
        /* The namespace's counts, recomputed; the tree's evictable,
         * reserved and protected pages are their sums. */
        uint64_t np = 0, nu = 0;
        int depth = 0;
        for (const pc_radix_node *n = pc_radix_next_preorder(t, r, &depth); n;
             n = pc_radix_next_preorder(t, n, &depth)) {
            np += n->npages;
            nu += n->lock_ref ? 0 : n->npages;
        }
        CHECK(r->ns_pages == np && r->ns_unlocked == nu,
              "namespace %p counts %llu pages (%llu unlocked), recomputed "
              "%llu (%llu)", (void *)r, (unsigned long long)r->ns_pages,
              (unsigned long long)r->ns_unlocked, (unsigned long long)np,
              (unsigned long long)nu);
        {
            uint64_t lmin = 0, lmax = 0;
            pc_radix_get_ns_limits(t, root_ns(r), r->off, &lmin, &lmax);
            CHECK(r->ns_min == lmin && r->ns_max == lmax,
                  "namespace %p limits %u..%u, the table says %llu..%llu",
                  (void *)r, r->ns_min, r->ns_max, (unsigned long long)lmin,
                  (unsigned long long)lmax);
        }
        c.evictable_pages += ns_avail(r);
        c.reserved_pages += nu - ns_avail(r);
        c.protected_pages += np - nu;
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
        if ((rc = pc_radix_kt_check(t, KT_CHILD, &n->kids, n)))
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
        if (n->lock_ref) {
            locked_pages += n->npages;
            CHECK(n->lru.prev == NULL, "locked node %p on LRU list", (void *)n);
        } else {
            unlocked_pages += n->npages;
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
    CHECK_COUNTER(reserved_pages);
#undef CHECK_COUNTER
    CHECK(unlocked_pages == c.evictable_pages + c.reserved_pages &&
              locked_pages == c.protected_pages,
          "per-namespace counts miss pages");
    /* Set-aside leaves exist only inside an eviction call. */
    CHECK(t->lru_aside.next == &t->lru_aside && t->lru_aside.prev == &t->lru_aside &&
              t->heap_aside[0] == 0 && t->heap_aside[1] == 0,
          "leaves left set aside");
    for (uint32_t i = 0; i < t->nlimits; i++)
        CHECK(t->limits[i].min_pages || t->limits[i].max_pages,
              "limits entry %u holds no limit", i);
    CHECK(t->nlimits <= t->climits, "limits table %u > room %u", t->nlimits,
          t->climits);
    CHECK(t->ops && t->ops->version == PC_RADIX_POLICY_OPS_VERSION &&
              pc_radix_policy_name(t->ops->id),
          "policy ops table malformed");
    rc = t->ops->check(t);
out:
    free(nodes.slot);
    free(seen.slot);
    free(stack);
    return rc;
}

/* ---- traversal ----------------------------------------------------------- */

int pc_radix_foreach(const pc_radix *t, pc_radix_visit_fn fn, void *ctx)
{
    const pc_radix_node *r;
    if (!t || !fn)
        return PC_E_INVAL;
    KT_FOREACH(&t->ns, i, r) {
        int depth = 0, rc;
        for (const pc_radix_node *n = pc_radix_next_preorder(t, r, &depth); n;
             n = pc_radix_next_preorder(t, n, &depth))
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
        for (const pc_radix_node *n = pc_radix_next_preorder(t, r, &depth); n;
             n = pc_radix_next_preorder(t, n, &depth))
            dump_node(t, n, depth, f);
    }
}

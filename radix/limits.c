/*
 * radix/limits.c - per-namespace quota (max_pages) and reserve (min_pages):
 * the table that remembers them for namespaces that come and go, the API,
 * and quota eviction.  The reserve is enforced by the eviction driver
 * (radix.c's evict_driver) through the policies' aside/restore; the counts
 * both rely on live on the namespace roots (ns_pages, ns_unlocked: kept by
 * radix_int.h's ns_account, verified by pc_radix_check).
 *
 * Like the priorities (policies.c), the table is a small array scanned
 * linearly: it is read when a namespace is created and when a limit is set,
 * never on a lookup or an insert into an existing namespace.
 */
#include "radix/radix_int.h"

static int ns_args(const pc_radix *t, const void *ns, size_t len)
{
    return !t || len > PC_RADIX_NS_MAX || (len && !ns) ? PC_E_INVAL : 0;
}

/* Index of ns's entry; t->nlimits when it has none. */
static uint32_t limit_find(const pc_radix *t, const void *ns, size_t len)
{
    uint32_t i = 0;
    while (i < t->nlimits &&
           !(t->limits[i].len == len &&
             (len == 0 || memcmp(t->limits[i].ns, ns, len) == 0)))
        i++;
    return i;
}

void pc_radix_ns_limits_init(const pc_radix *t, pc_radix_node *r)
{
    uint32_t i = t->nlimits ? limit_find(t, root_ns(r), r->off) : 0;
    r->ns_min = i < t->nlimits ? t->limits[i].min_pages : 0;
    r->ns_max = i < t->nlimits ? t->limits[i].max_pages : 0;
}

int pc_radix_ns_pages(const pc_radix *t, const void *ns, size_t ns_len,
                      uint64_t *pages)
{
    if (ns_args(t, ns, ns_len) || !pages)
        return PC_E_INVAL;
    const pc_radix_node *r = pc_radix_ns_find(t, ns, ns_len, hash32(ns, ns_len));
    *pages = r ? r->ns_pages : 0;
    return 0;
}

void pc_radix_set_evict_hook(pc_radix *t, pc_radix_evict_fn fn, void *ctx)
{
    if (!t)
        return;
    t->hook = fn;
    t->hook_ctx = ctx;
}

/*
 * Evict the namespace of root r down to its quota: each time its least
 * recently used unlocked leaf (one walk of the namespace: O(its nodes) per
 * victim leaf, at most max_pages nodes), never `keep`, deepest page first.
 * Locked pages never go; when nothing more is evictable the namespace stays
 * above its quota.  No allocation: cannot fail.
 */
void pc_radix_quota_evict(pc_radix *t, pc_radix_node *r,
                          const pc_radix_node *keep)
{
    while (r->ns_max && r->ns_pages > r->ns_max) {
        pc_radix_node *best = NULL;
        int depth = 0;
        for (pc_radix_node *n = pc_radix_next_preorder(t, r, &depth); n;
             n = pc_radix_next_preorder(t, n, &depth))
            if (!n->lock_ref && !n->kids.n && n != keep &&
                (!best || n->last_access < best->last_access))
                best = n;
        if (!best)
            return;
        uint64_t over = r->ns_pages - r->ns_max;
        size_t take = over < best->npages ? (size_t)over : best->npages;
        /* The namespace goes with its last node (then it is at 0 pages). */
        bool last = take == best->npages && best->parent == r && r->kids.n == 1;
        t->st.evicted_quota_pages += take;
        pc_radix_evict_tail(t, r, best, take, t->hook, t->hook_ctx);
        if (last)
            return;
    }
}

/* Set root r's limits, keeping the tree's counters exact (the reserve
 * decides which unlocked pages count as evictable); a lower quota evicts. */
static void root_set_limits(pc_radix *t, pc_radix_node *r, uint32_t min,
                            uint32_t max)
{
    uint64_t a0 = ns_avail(r);
    r->ns_min = min;
    r->ns_max = max;
    uint64_t a1 = ns_avail(r);
    t->st.evictable_pages += a1 - a0;
    t->st.reserved_pages -= a1 - a0;
    pc_radix_quota_evict(t, r, NULL);
}

int pc_radix_reserve_ns_limits(pc_radix *t, uint32_t n)
{
    if (!t)
        return PC_E_INVAL;
    if (n <= t->climits)
        return 0;
    ns_limit *v = rx_alloc(t, (size_t)n * sizeof(*v));
    if (!v)
        return PC_E_NOMEM;
    if (t->nlimits)
        memcpy(v, t->limits, t->nlimits * sizeof(*v));
    rx_free(t, t->limits);
    t->limits = v;
    t->climits = n;
    return 0;
}

int pc_radix_set_ns_limits(pc_radix *t, const void *ns, size_t ns_len,
                           uint64_t min_pages, uint64_t max_pages)
{
    if (ns_args(t, ns, ns_len) || (max_pages && min_pages > max_pages))
        return PC_E_INVAL;
    if (min_pages > UINT32_MAX || max_pages > UINT32_MAX)
        return PC_E_RANGE;
    bool none = !min_pages && !max_pages;
    uint32_t i = limit_find(t, ns, ns_len);
    if (i == t->nlimits && !none) { /* a new entry */
        if (t->nlimits == t->climits &&
            pc_radix_reserve_ns_limits(t, t->climits ? 2 * t->climits : 4))
            return PC_E_NOMEM;
        ns_limit *e = &t->limits[t->nlimits++];
        e->len = (uint32_t)ns_len;
        if (ns_len)
            memcpy(e->ns, ns, ns_len);
    }
    if (i < t->nlimits) {
        t->limits[i].min_pages = (uint32_t)min_pages;
        t->limits[i].max_pages = (uint32_t)max_pages;
        if (none) /* the default needs no entry (the room is kept) */
            t->limits[i] = t->limits[--t->nlimits];
    }
    pc_radix_node *r = pc_radix_ns_find(t, ns, ns_len, hash32(ns, ns_len));
    if (r)
        root_set_limits(t, r, (uint32_t)min_pages, (uint32_t)max_pages);
    return 0;
}

int pc_radix_get_ns_limits(const pc_radix *t, const void *ns, size_t ns_len,
                           uint64_t *min_pages, uint64_t *max_pages)
{
    if (ns_args(t, ns, ns_len) || !min_pages || !max_pages)
        return PC_E_INVAL;
    uint32_t i = limit_find(t, ns, ns_len);
    *min_pages = i < t->nlimits ? t->limits[i].min_pages : 0;
    *max_pages = i < t->nlimits ? t->limits[i].max_pages : 0;
    return 0;
}

void pc_radix_clear_ns_limits(pc_radix *t)
{
    while (t && t->nlimits) {
        ns_limit *e = &t->limits[t->nlimits - 1];
        uint8_t ns[PC_RADIX_NS_MAX];
        uint32_t len = e->len;
        memcpy(ns, e->ns, len);
        pc_radix_set_ns_limits(t, ns, len, 0, 0); /* cannot fail: no alloc */
    }
}

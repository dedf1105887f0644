/* radix/stats.c - the tree's counters, named once (proto/stats.h). */
#include "radix/radix.h"

void pc_radix_stats_visit(const pc_radix *t, pc_stat_fn fn, void *ctx)
{
    pc_radix_stats s;
    pc_radix_auto_stats as;
    pc_radix_stats_get(t, &s);
    pc_radix_auto_stats_get(t, &as);
    fn(ctx, "tree.namespaces", s.namespaces);
    fn(ctx, "tree.nodes", s.nodes);
    fn(ctx, "tree.pages", s.pages);
    fn(ctx, "tree.tokens", s.tokens);
    fn(ctx, "tree.evictable_pages", s.evictable_pages);
    fn(ctx, "tree.protected_pages", s.protected_pages);
    fn(ctx, "tree.metadata_bytes", s.metadata_bytes);
    fn(ctx, "tree.lookups", s.lookups);
    fn(ctx, "tree.hit_pages", s.hit_pages);
    fn(ctx, "tree.miss_pages", s.miss_pages);
    fn(ctx, "tree.inserts", s.inserts);
    fn(ctx, "tree.inserted_pages", s.inserted_pages);
    fn(ctx, "tree.duplicate_pages", s.duplicate_pages);
    fn(ctx, "tree.splits", s.splits);
    fn(ctx, "tree.evicted_pages", s.evicted_pages);
    fn(ctx, "tree.evicted_nodes", s.evicted_nodes);
    fn(ctx, "tree.reserved_pages", s.reserved_pages);
    fn(ctx, "tree.evicted_quota_pages", s.evicted_quota_pages);
    fn(ctx, "evict.policy", (uint64_t)pc_radix_get_policy(t)); /* pc_radix_policy */
    fn(ctx, "evict.auto.using_s3fifo", as.using_s3fifo);
    fn(ctx, "evict.auto.switches", as.switches);
    fn(ctx, "evict.auto.sampled", as.sampled);
    fn(ctx, "evict.auto.lru_hits", as.lru_hits);
    fn(ctx, "evict.auto.s3fifo_hits", as.s3fifo_hits);
}

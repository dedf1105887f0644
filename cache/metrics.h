/*
 * cache/metrics.h - counters of the cache kept apart from cache.c (private
 * to cache/): lookups per namespace with bounded cardinality, refusals by
 * reason, flush evictions.  cache.c calls the pc_cache_metrics_* hooks at
 * the points where these things happen and pc_cache_metrics_visit from
 * pc_cache_stats_visit; the daemon's /metrics maps the names
 * (daemon/metrics.c).
 */
#ifndef PC_CACHE_METRICS_H
#define PC_CACHE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/stats.h"

/* Namespaces with series of their own, at most (the rest: "other"). */
#define PC_CACHE_NS_SERIES_MAX 16
/* Lookups a candidate namespace must have (as the candidate table counts
 * them) before it gets a series of its own. */
#define PC_CACHE_NS_PROMOTE_LOOKUPS 32

typedef struct pc_cache_metrics pc_cache_metrics;

int pc_cache_metrics_create(pc_cache_metrics **out);
void pc_cache_metrics_destroy(pc_cache_metrics *m);

/* A lookup of n_tokens in ns that matched hit_tokens (hit_pages pages) in
 * the pool (tier 1), and then tier2_pages more in tier 2; P: tokens per
 * page.  Not called for NO_COUNT lookups. */
void pc_cache_metrics_lookup(pc_cache_metrics *m, const void *ns, size_t ns_len,
                             size_t n_tokens, size_t hit_tokens,
                             size_t hit_pages, size_t tier2_pages, uint32_t P);
/* A refusal with code (PC_E_*), from cache.c's refuse(). */
void pc_cache_metrics_refused(pc_cache_metrics *m, int code);
/* Pages evicted by an admin flush (pc_cache_evict, pc_cache_flush_ns). */
void pc_cache_metrics_flushed(pc_cache_metrics *m, size_t pages);

/* cache.refused.*, cache.evictions_flush, ns_other.<counter>,
 * ns.<counter>.<namespace> (the counter first: a namespace may hold dots,
 * and a name must still say which counter it is). */
void pc_cache_metrics_visit(const pc_cache_metrics *m, pc_stat_fn fn, void *ctx);

/* The text a namespace is shown as, in stats names and labels (printable
 * ASCII as is, else "0x" and hex; also hex when the text itself starts
 * with "0x" or "(", so that no two namespaces look alike and none looks
 * like "(other)").  buf needs 2 * ns_len + 3 bytes.  Returns buf. */
char *pc_cache_ns_display(const void *ns, size_t ns_len, char *buf);

#endif /* PC_CACHE_METRICS_H */

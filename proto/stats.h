/*
 * proto/stats.h - how every room names its counters: a visitor.
 *
 * Each layer lists its own counters once, by dotted name (jemalloc's
 * mallctl style: "pool.blocks.free"), and callers that show them -- the
 * STATS reply, the CLI, the test harness, a metrics exporter -- walk that
 * one list instead of keeping their own copy of the names.  A new counter
 * is one line in the layer that owns it.
 *
 *   pc_cache_stats_visit ─► pc_radix_stats_visit   tree.*, evict.*
 *                        ─► pc_pool_stats_visit    pool.*
 *                        ─► its own                leases.*, cache.*
 *   rpc server           ─► the above + rpc.*, uptime_ms
 */
#ifndef PC_STATS_H
#define PC_STATS_H

#include <stdint.h>

/* One counter or gauge; name is a static string. */
typedef void (*pc_stat_fn)(void *ctx, const char *name, uint64_t value);

#endif /* PC_STATS_H */

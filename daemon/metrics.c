/*
 * daemon/metrics.c - Prometheus text exposition at /metrics (docs/metrics.md).
 *
 *   scraper ──HTTP──► libmicrohttpd, external polling (MHD_USE_EPOLL,
 *                     no thread of its own)
 *                       │ its epoll fd is the server loop's watch fd
 *                       ▼ (pc_rpc_config.watch): MHD_run on the loop thread
 *   on_request("/metrics")
 *     pc_rpc_server_stats_visit ──► [name, value]...  (the very list STATS
 *                                                      replies with)
 *     pcd_metrics_render: each stat ──ROWS[]──► family, labels, value
 *       one family at a time (HELP, TYPE, its samples in visit order)
 *
 * Why here and not in rpc/: HTTP exposition is an operator's concern of the
 * daemon, configured by a daemon knob; rpc/ (and libprefixcache) stay free
 * of libmicrohttpd and only offer the generic watch fd.  Why no thread: the
 * cache has no locks and belongs to the loop; a scrape reads live state
 * between two requests, and costs the loop one render (~100 µs).
 * A slow scraper cannot stall the loop: MHD's sockets are non-blocking, it
 * holds at most CONN_MAX connections and drops idle ones after
 * CONN_TIMEOUT_S.
 *
 * ROWS[] is the one mapping from stats names to metrics; NOT_EXPORTED[]
 * lists, with the reason, every stat deliberately left out.  A test
 * (test_metrics) walks a live server's visitor and fails on any stat in
 * neither, so a new counter is never dropped silently.
 */
#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#define CONN_MAX 16       /* scrapers at once; more wait in the backlog  */
#define CONN_PER_IP 8
#define CONN_TIMEOUT_S 10 /* an idle or stalled connection is closed     */
#define CONN_MEM (64 * 1024)

/* ---- the mapping table ------------------------------------------------------ */

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype;
static const char *const type_name[] = {"counter", "gauge", "histogram"};

/* A stat pattern: '*' stands for one label value (of cap[0], then cap[1]);
 * the capture "le_us" is a bucket bound in microseconds, written as
 * seconds ("0.000005", "+Inf" for "inf").  labels: fixed labels, written
 * as they appear.  digits: the value is divided by 10^digits (ms -> s: 3,
 * ns -> s: 9), exactly, in integers. */
typedef struct row {
    const char *stat;
    const char *metric;
    mtype type;
    const char *suffix; /* histograms: "_bucket", "_sum", "_count" */
    const char *labels;
    const char *cap[2];
    int digits;
    const char *help;   /* on the family's first row */
} row;

#define TIER1 "tier=\"1\""
#define TIER2 "tier=\"2\""
#define NS_OTHER "namespace=\"(other)\""
#define NSC {"namespace", NULL}

/* A storage tier is one row per counter and per "ns." / "ns_other." form,
 * next to the other tiers' rows of the same family (tier 2's below). */
static const row ROWS[] = {
    /* lookups, per namespace (cache/metrics.c: up to 16 and "(other)") */
    {"ns.lookups.*", "prefixcache_lookups_total", M_COUNTER, "", "", NSC, 0,
     "Lookups, per namespace (up to 16 namespaces get a series of their own, "
     "the rest is namespace=\"(other)\")."},
    {"ns_other.lookups", "prefixcache_lookups_total", M_COUNTER, "", NS_OTHER, {0}, 0, NULL},
    {"ns.hit_tokens.tier1.*", "prefixcache_hit_tokens_total", M_COUNTER, "", TIER1, NSC, 0,
     "Tokens of lookups found cached, per namespace and storage tier (1: the "
     "pool; 2: the second tier, after the pool's match)."},
    {"ns_other.hit_tokens.tier1", "prefixcache_hit_tokens_total", M_COUNTER, "",
     NS_OTHER "," TIER1, {0}, 0, NULL},
    {"ns.hit_tokens.tier2.*", "prefixcache_hit_tokens_total", M_COUNTER, "", TIER2, NSC, 0,
     NULL},
    {"ns_other.hit_tokens.tier2", "prefixcache_hit_tokens_total", M_COUNTER, "",
     NS_OTHER "," TIER2, {0}, 0, NULL},
    {"ns.miss_tokens.*", "prefixcache_miss_tokens_total", M_COUNTER, "", "", NSC, 0,
     "Tokens of lookups found in no tier (including a last partial page), "
     "per namespace."},
    {"ns_other.miss_tokens", "prefixcache_miss_tokens_total", M_COUNTER, "", NS_OTHER,
     {0}, 0, NULL},
    {"ns.hit_pages.tier1.*", "prefixcache_hit_pages_total", M_COUNTER, "", TIER1, NSC, 0,
     "Pages of lookups found cached, per namespace and storage tier."},
    {"ns_other.hit_pages.tier1", "prefixcache_hit_pages_total", M_COUNTER, "",
     NS_OTHER "," TIER1, {0}, 0, NULL},
    {"ns.hit_pages.tier2.*", "prefixcache_hit_pages_total", M_COUNTER, "", TIER2, NSC, 0,
     NULL},
    {"ns_other.hit_pages.tier2", "prefixcache_hit_pages_total", M_COUNTER, "",
     NS_OTHER "," TIER2, {0}, 0, NULL},
    {"ns.miss_pages.*", "prefixcache_miss_pages_total", M_COUNTER, "", "", NSC, 0,
     "Full pages of lookups found in no tier, per namespace."},
    {"ns_other.miss_pages", "prefixcache_miss_pages_total", M_COUNTER, "", NS_OTHER,
     {0}, 0, NULL},
    /* inserts, allocations, refusals */
    {"tree.inserts", "prefixcache_inserts_total", M_COUNTER, "", "", {0}, 0,
     "Insert calls on the tree."},
    {"tree.inserted_pages", "prefixcache_inserted_pages_total", M_COUNTER, "", "",
     {0}, 0, "Pages added to the tree by inserts."},
    {"tree.duplicate_pages", "prefixcache_duplicate_pages_total", M_COUNTER, "", "",
     {0}, 0, "Inserted pages that were cached already (their blocks went back "
     "to the pool)."},
    {"pool.allocs", "prefixcache_allocated_blocks_total", M_COUNTER, "", "", {0}, 0,
     "Blocks handed out (free -> leased)."},
    {"pool.frees", "prefixcache_freed_blocks_total", M_COUNTER, "", "", {0}, 0,
     "Blocks returned to the free list."},
    {"cache.refused.*", "prefixcache_refusals_total", M_COUNTER, "", "",
     {"reason", NULL}, 0,
     "Cache operations refused, by reason: nospace (no free or evictable "
     "block), limit (a lease limit), lease (unknown or expired lease), perm "
     "(a block the lease does not own), range, other."},
    /* evictions */
    {"cache.evictions_alloc", "prefixcache_evicted_pages_total", M_COUNTER, "",
     "reason=\"alloc\"", {0}, 0,
     "Pages evicted, by reason: alloc (to make room for an allocation), "
     "watermark (below low_watermark), flush (admin FLUSH), quota (a "
     "namespace over its namespace_quotas maximum)."},
    {"cache.evictions_watermark", "prefixcache_evicted_pages_total", M_COUNTER, "",
     "reason=\"watermark\"", {0}, 0, NULL},
    {"cache.evictions_flush", "prefixcache_evicted_pages_total", M_COUNTER, "",
     "reason=\"flush\"", {0}, 0, NULL},
    {"tree.evicted_quota_pages", "prefixcache_evicted_pages_total", M_COUNTER, "",
     "reason=\"quota\"", {0}, 0, NULL},
    {"tree.evicted_nodes", "prefixcache_evicted_nodes_total", M_COUNTER, "", "", {0},
     0, "Tree nodes removed by eviction."},
    {"tree.splits", "prefixcache_tree_splits_total", M_COUNTER, "", "", {0}, 0,
     "Tree edges split at a page boundary."},
    {"evict.auto.switches", "prefixcache_auto_policy_switches_total", M_COUNTER, "",
     "", {0}, 0, "Switches of the auto eviction policy between LRU and S3-FIFO."},
    {"evict.auto.sampled", "prefixcache_auto_sampled_pages_total", M_COUNTER, "", "",
     {0}, 0, "Pages the auto policy's simulations sampled."},
    {"evict.auto.lru_hits", "prefixcache_auto_simulated_hits_total", M_COUNTER, "",
     "policy=\"lru\"", {0}, 0,
     "Hits of the auto policy's sampled simulations, per simulated policy."},
    {"evict.auto.s3fifo_hits", "prefixcache_auto_simulated_hits_total", M_COUNTER, "",
     "policy=\"s3fifo\"", {0}, 0, NULL},
    /* leases */
    {"leases.created", "prefixcache_leases_created_total", M_COUNTER, "", "", {0}, 0,
     "Leases created."},
    {"leases.released", "prefixcache_leases_ended_total", M_COUNTER, "",
     "reason=\"released\"", {0}, 0,
     "Leases ended, by reason: released (RELEASE or insert with release), "
     "expired (not renewed within lease_ttl_ms: a client gone?)."},
    {"leases.expired", "prefixcache_leases_ended_total", M_COUNTER, "",
     "reason=\"expired\"", {0}, 0, NULL},
    /* requests */
    {"rpc.requests", "prefixcache_messages_total", M_COUNTER, "", "", {0}, 0,
     "Request messages answered (decodable or not)."},
    {"rpc.op.*", "prefixcache_requests_total", M_COUNTER, "", "", {"op", NULL}, 0,
     "Requests, per op."},
    {"rpc.errors", "prefixcache_request_errors_total", M_COUNTER, "", "", {0}, 0,
     "Requests answered with an error status."},
    {"rpc.dropped", "prefixcache_dropped_messages_total", M_COUNTER, "", "", {0}, 0,
     "Messages dropped unanswered (no envelope, or an oversized one)."},
    {"rpc.bytes_in", "prefixcache_received_bytes_total", M_COUNTER, "", "", {0}, 0,
     "Request bytes received (payload and envelope)."},
    {"rpc.bytes_out", "prefixcache_sent_bytes_total", M_COUNTER, "", "", {0}, 0,
     "Reply payload bytes sent."},
    {"rpc.latency.*.bucket_us.*", "prefixcache_request_duration_seconds",
     M_HISTOGRAM, "_bucket", "", {"op", "le_us"}, 0,
     "Time to decode, run and encode a request, per op (not the transport)."},
    {"rpc.latency.*.sum_ns", "prefixcache_request_duration_seconds", M_HISTOGRAM,
     "_sum", "", {"op", NULL}, 9, NULL},
    {"rpc.latency.*.count", "prefixcache_request_duration_seconds", M_HISTOGRAM,
     "_count", "", {"op", NULL}, 0, NULL},
    /* the second tier (cache/tier.c; zeros without one) */
    {"tier2.demoted_pages", "prefixcache_tier2_demoted_pages_total", M_COUNTER, "",
     "", {0}, 0, "Pages copied into tier 2 as the pool evicted them."},
    {"tier2.demote_dedup_pages", "prefixcache_tier2_demote_skipped_pages_total",
     M_COUNTER, "", "reason=\"dedup\"", {0}, 0,
     "Evicted pages not copied into tier 2: dedup (it held them already), "
     "dropped (no room for their identity, or every slot busy)."},
    {"tier2.demote_dropped_pages", "prefixcache_tier2_demote_skipped_pages_total",
     M_COUNTER, "", "reason=\"dropped\"", {0}, 0, NULL},
    {"tier2.evicted_pages", "prefixcache_tier2_evicted_pages_total", M_COUNTER, "",
     "", {0}, 0, "Pages dropped by tier 2's own LRU to make room."},
    {"tier2.flushed_pages", "prefixcache_tier2_flushed_pages_total", M_COUNTER, "",
     "", {0}, 0, "Pages dropped from tier 2 by admin FLUSH."},
    {"tier2.promotions", "prefixcache_tier2_promotions_total", M_COUNTER, "", "",
     {0}, 0, "Promotions started (pages copied back from tier 2 to the pool)."},
    {"tier2.promoted_pages", "prefixcache_tier2_promoted_pages_total", M_COUNTER,
     "", "", {0}, 0, "Pages promoted back into the pool."},
    {"tier2.promote_failed_pages", "prefixcache_tier2_promote_failed_pages_total",
     M_COUNTER, "", "", {0}, 0, "Pages whose promotion failed."},
    {"tier2.bytes_demoted", "prefixcache_tier2_demoted_bytes_total", M_COUNTER, "",
     "", {0}, 0, "Bytes copied into tier 2."},
    {"tier2.bytes_promoted", "prefixcache_tier2_promoted_bytes_total", M_COUNTER,
     "", "", {0}, 0, "Bytes copied back from tier 2."},
    {"tier2.capacity_pages", "prefixcache_tier2_capacity_pages", M_GAUGE, "", "",
     {0}, 0, "Pages tier 2 can hold (0: no second tier)."},
    {"tier2.pages", "prefixcache_tier2_pages", M_GAUGE, "", "", {0}, 0,
     "Pages in tier 2."},
    {"tier2.busy_pages", "prefixcache_tier2_busy_pages", M_GAUGE, "", "", {0}, 0,
     "Tier 2 pages being read by a promotion."},
    {"tier2.promotions_inflight", "prefixcache_tier2_promotions_inflight", M_GAUGE,
     "", "", {0}, 0, "Promotions under way."},
    /* gauges: the pool */
    {"pool.blocks.free", "prefixcache_pool_blocks", M_GAUGE, "", "state=\"free\"",
     {0}, 0, "Pool blocks by state: free, leased (allocated, not yet "
     "inserted), cached (holding a tree page)."},
    {"pool.blocks.leased", "prefixcache_pool_blocks", M_GAUGE, "",
     "state=\"leased\"", {0}, 0, NULL},
    {"pool.blocks.cached", "prefixcache_pool_blocks", M_GAUGE, "",
     "state=\"cached\"", {0}, 0, NULL},
    {"pool.blocks.capacity", "prefixcache_pool_capacity_blocks", M_GAUGE, "", "",
     {0}, 0, "Blocks in the pool."},
    {"pool.bytes", "prefixcache_pool_bytes", M_GAUGE, "", "", {0}, 0,
     "Bytes of the pool (capacity x block size; mapped, not all resident)."},
    {"pool.block_bytes", "prefixcache_block_bytes", M_GAUGE, "", "", {0}, 0,
     "Bytes of one block (one page of KV)."},
    /* gauges: the tree */
    {"tree.namespaces", "prefixcache_tree_namespaces", M_GAUGE, "", "", {0}, 0,
     "Namespaces with cached pages."},
    {"tree.nodes", "prefixcache_tree_nodes", M_GAUGE, "", "", {0}, 0, "Tree nodes."},
    {"tree.pages", "prefixcache_tree_pages", M_GAUGE, "", "", {0}, 0, "Cached pages."},
    {"tree.tokens", "prefixcache_tree_tokens", M_GAUGE, "", "", {0}, 0,
     "Cached tokens."},
    {"tree.evictable_pages", "prefixcache_tree_evictable_pages", M_GAUGE, "", "",
     {0}, 0, "Cached pages no lease pins."},
    {"tree.reserved_pages", "prefixcache_tree_reserved_pages", M_GAUGE, "", "",
     {0}, 0, "Unpinned pages a namespace's reserved minimum (namespace_quotas) "
     "keeps from eviction for space."},
    {"tree.protected_pages", "prefixcache_tree_pinned_pages", M_GAUGE, "", "", {0},
     0, "Cached pages pinned by leases (never evicted)."},
    {"tree.metadata_bytes", "prefixcache_tree_metadata_bytes", M_GAUGE, "", "", {0},
     0, "Bytes of the tree's own memory (nodes, child tables)."},
    {"evict.auto.using_s3fifo", "prefixcache_auto_using_s3fifo", M_GAUGE, "", "",
     {0}, 0, "1 while the auto eviction policy runs S3-FIFO, else 0."},
    /* gauges: operator-pinned prefixes (pinned_prefixes) */
    {"pins.operator_prefixes", "prefixcache_operator_pinned_prefixes", M_GAUGE, "",
     "", {0}, 0, "Prefixes pinned by the operator (pinned_prefixes)."},
    {"pins.operator_pages", "prefixcache_operator_pinned_pages", M_GAUGE, "", "",
     {0}, 0, "Pages of operator-pinned prefixes cached and pinned now."},
    {"pins.operator_pages_wanted", "prefixcache_operator_pinned_pages_wanted",
     M_GAUGE, "", "", {0}, 0,
     "Pages the operator-pinned prefixes span (pinned as engines cache them)."},
    /* namespace_quotas */
    {"quota.rules", "prefixcache_quota_rules", M_GAUGE, "", "", {0}, 0,
     "Rules of namespace_quotas in force."},
    {"quota.namespaces", "prefixcache_quota_namespaces", M_GAUGE, "", "", {0}, 0,
     "Namespaces given a quota or a reserve by namespace_quotas."},
    {"quota.reserved_pages", "prefixcache_quota_reserved_pages", M_GAUGE, "", "",
     {0}, 0, "Pages reserved for namespaces (the sum of their minimums)."},
    {"quota.reserve_trimmed", "prefixcache_quota_reserves_trimmed_total",
     M_COUNTER, "", "", {0}, 0,
     "Namespaces that got less than their rule's reserve (the pool was "
     "reserved already)."},
    /* the KV-events publisher (kv_events_endpoint; absent when off) */
    {"events.batches", "prefixcache_kv_event_batches_total", M_COUNTER, "", "",
     {0}, 0, "KV-event batches published (including ones whose send failed)."},
    {"events.events", "prefixcache_kv_events_total", M_COUNTER, "", "", {0}, 0,
     "KV events published (BlockStored, BlockRemoved, AllBlocksCleared)."},
    {"events.bytes", "prefixcache_kv_event_bytes_total", M_COUNTER, "", "", {0},
     0, "Bytes of KV-event batch payloads published (msgpack; each batch "
     "also carries its topic and an 8-byte sequence number)."},
    {"events.send_failed", "prefixcache_kv_event_send_failures_total",
     M_COUNTER, "", "", {0}, 0,
     "KV-event batches the PUB socket refused (subscribers see the gap)."},
    {"events.replays", "prefixcache_kv_event_replays_total", M_COUNTER, "", "",
     {0}, 0, "Replay requests answered."},
    {"events.replay_dropped_batches",
     "prefixcache_kv_event_replay_dropped_batches_total", M_COUNTER, "", "",
     {0}, 0, "Kept batches dropped early by kv_events_buffer_bytes."},
    {"events.lost_pages", "prefixcache_kv_event_lost_pages_total", M_COUNTER,
     "", "", {0}, 0, "Pages stored or removed that no event could name."},
    {"events.queue_waits", "prefixcache_kv_event_queue_waits_total", M_COUNTER,
     "", "", {0}, 0,
     "Times the request loop waited for the events thread (its 4 MiB queue "
     "full)."},
    /* gauges: leases, the process */
    {"leases.live", "prefixcache_leases", M_GAUGE, "", "", {0}, 0, "Live leases."},
    {"leases.pins", "prefixcache_lease_pins", M_GAUGE, "", "", {0}, 0,
     "Pins held by live leases."},
    {"uptime_ms", "prefixcache_uptime_seconds", M_GAUGE, "", "", {0}, 3,
     "Seconds since the server started."},
};
#define NROWS (sizeof(ROWS) / sizeof(ROWS[0]))

/* Stats deliberately not exported, and why (docs/metrics.md repeats it). */
static const struct {
    const char *stat, *why;
} NOT_EXPORTED[] = {
    {"tree.lookups", "the tree's match calls, inserts' included: "
                     "prefixcache_lookups_total counts the cache's lookups"},
    {"tree.hit_pages", "the same, per tree match: prefixcache_hit_pages_total"},
    {"tree.miss_pages", "the same: prefixcache_miss_pages_total"},
    {"tree.evicted_pages", "= the sum of prefixcache_evicted_pages_total"},
    {"cache.nospace", "= prefixcache_refusals_total{reason=\"nospace\"}"},
    {"evict.policy", "an enum, not a quantity: CONFIG get eviction_policy"},
    {"tier2.hit_pages", "the tier's own count of the pages lookups found "
                        "there: the sum of prefixcache_hit_pages_total{tier=\"2\"}"},
    {"tier2.miss_pages", "the same: prefixcache_miss_pages_total (which "
                         "counts without a tier 2 too)"},
};
#define NNOT (sizeof(NOT_EXPORTED) / sizeof(NOT_EXPORTED[0]))

/* Glob with at most two '*' (each matching one or more bytes); the
 * captures point into s.  Backtracks, so a '*' in the middle may take a
 * value with dots in it. */
typedef struct span {
    const char *p;
    size_t n;
} span;

static bool glob(const char *pat, const char *s, span *cap, int k)
{
    for (; *pat && *pat != '*'; pat++, s++)
        if (*pat != *s)
            return false;
    if (!*pat)
        return !*s;
    for (size_t n = 1; s[n - 1]; n++) {
        cap[k] = (span){s, n};
        if (glob(pat + 1, s + n, cap, k + 1))
            return true;
    }
    return false;
}

static bool not_exported(const char *stat)
{
    span cap[2];
    for (size_t i = 0; i < NNOT; i++)
        if (glob(NOT_EXPORTED[i].stat, stat, cap, 0))
            return true;
    return false;
}

/* The row of a stat (NULL: none), and its captures. */
static const row *row_of(const char *stat, span *cap)
{
    if (not_exported(stat))
        return NULL;
    for (size_t i = 0; i < NROWS; i++)
        if (glob(ROWS[i].stat, stat, cap, 0))
            return &ROWS[i];
    return NULL;
}

int pcd_metrics_classify(const char *stat)
{
    span cap[2];
    if (!stat)
        return -1;
    if (not_exported(stat))
        return 0;
    return row_of(stat, cap) ? 1 : -1;
}

/* ---- rendering -------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 16384;
        while (c < b->n + n + 1)
            c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...)
{
    char t[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t, sizeof(t), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, t, (size_t)n < sizeof(t) ? (size_t)n : sizeof(t) - 1);
}

/* A label value: backslash, double quote and newline escaped (the text
 * format's rule). */
static void put_label_value(buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            puts_(b, "\\\\");
        else if (s[i] == '"')
            puts_(b, "\\\"");
        else if (s[i] == '\n')
            puts_(b, "\\n");
        else
            put(b, &s[i], 1);
    }
}

/* v / 10^digits, exactly ("1.5", "0.000005", "3"). */
static void put_fixed(buf *b, uint64_t v, int digits)
{
    uint64_t d = 1;
    for (int i = 0; i < digits; i++)
        d *= 10;
    uint64_t frac = v % d;
    putf(b, "%" PRIu64, v / d);
    if (!frac)
        return;
    char t[24];
    int w = digits;
    while (frac % 10 == 0) { /* no trailing zeros */
        frac /= 10;
        w--;
    }
    snprintf(t, sizeof(t), ".%0*" PRIu64, w, frac);
    puts_(b, t);
}

/* A bucket bound in microseconds as seconds ("inf": "+Inf"). */
static void put_le(buf *b, const span *s)
{
    char t[24];
    size_t n = s->n < sizeof(t) - 1 ? s->n : sizeof(t) - 1;
    memcpy(t, s->p, n);
    t[n] = 0;
    if (strcmp(t, "inf") == 0) {
        puts_(b, "+Inf");
        return;
    }
    put_fixed(b, strtoull(t, NULL, 10), 6);
}

static void put_sample(buf *b, const row *r, const span *cap, uint64_t v)
{
    puts_(b, r->metric);
    puts_(b, r->suffix);
    bool any = false;
    if (r->labels[0]) {
        puts_(b, "{");
        puts_(b, r->labels);
        any = true;
    }
    for (int k = 0; k < 2 && r->cap[k]; k++) {
        puts_(b, any ? "," : "{");
        any = true;
        if (strcmp(r->cap[k], "le_us") == 0) {
            puts_(b, "le=\"");
            put_le(b, &cap[k]);
        } else {
            puts_(b, r->cap[k]);
            puts_(b, "=\"");
            put_label_value(b, cap[k].p, cap[k].n);
        }
        puts_(b, "\"");
    }
    if (any)
        puts_(b, "}");
    puts_(b, " ");
    put_fixed(b, v, r->digits);
    puts_(b, "\n");
}

/* The family of each row: the index of the first row with its metric name
 * (computed once; the daemon renders on one thread). */
static const unsigned short *families(void)
{
    static unsigned short fam[NROWS];
    static bool done;
    for (size_t r = 0; r < NROWS && !done; r++) {
        fam[r] = (unsigned short)r;
        for (size_t q = 0; q < r; q++)
            if (strcmp(ROWS[q].metric, ROWS[r].metric) == 0) {
                fam[r] = (unsigned short)q;
                break;
            }
    }
    done = true;
    return fam;
}

/* What row_of found for a stat, kept between scrapes: the visitor's names
 * are stable pointers and come in the same order every time, so a scrape
 * matches only what changed (a namespace promoted since). */
typedef struct memo {
    const char *name;
    const row *r;
    unsigned short off[2], len[2];
} memo;

static int render(const pcd_stat *st, size_t n, memo *mm, char **out,
                  size_t *len);

int pcd_metrics_render(const pcd_stat *st, size_t n, char **out, size_t *len)
{
    return render(st, n, NULL, out, len);
}

static int render(const pcd_stat *st, size_t n, memo *mm, char **out,
                  size_t *len)
{
    if (!out || (n && !st))
        return PC_E_INVAL;
    *out = NULL;
    const unsigned short *fam = families();
    const row **rows = n ? malloc(n * sizeof(*rows)) : NULL;
    span(*caps)[2] = n ? malloc(n * sizeof(*caps)) : NULL;
    int *sfam = n ? malloc(n * sizeof(*sfam)) : NULL;
    if (n && (!rows || !caps || !sfam)) {
        free(rows);
        free(caps);
        free(sfam);
        return PC_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        memo *m = mm ? &mm[i] : NULL;
        if (m && m->name == st[i].name) {
            rows[i] = m->r;
            for (int k = 0; k < 2; k++)
                caps[i][k] = (span){st[i].name + m->off[k], m->len[k]};
        } else {
            caps[i][0] = caps[i][1] = (span){st[i].name, 0};
            rows[i] = row_of(st[i].name, caps[i]);
            if (m) {
                m->name = st[i].name;
                m->r = rows[i];
                for (int k = 0; k < 2; k++) {
                    m->off[k] = (unsigned short)(caps[i][k].p - st[i].name);
                    m->len[k] = (unsigned short)caps[i][k].n;
                }
            }
        }
        sfam[i] = rows[i] ? fam[rows[i] - ROWS] : -1;
    }
    buf b = {0};
    /* One family at a time, at its first row: HELP, TYPE, then every stat
     * of any of its rows, in the visitor's order (a histogram's buckets,
     * sum and count stay together per op). */
    for (size_t r = 0; r < NROWS; r++) {
        if (fam[r] != r)
            continue;
        bool header = false;
        for (size_t i = 0; i < n; i++) {
            if (sfam[i] != (int)r)
                continue;
            if (!header) {
                putf(&b, "# HELP %s ", ROWS[r].metric);
                puts_(&b, ROWS[r].help ? ROWS[r].help : "");
                putf(&b, "\n# TYPE %s %s\n", ROWS[r].metric, type_name[ROWS[r].type]);
                header = true;
            }
            put_sample(&b, rows[i], caps[i], st[i].value);
        }
    }
    free(rows);
    free(caps);
    free(sfam);
    if (b.oom) {
        free(b.p);
        return PC_E_NOMEM;
    }
    if (!b.p)
        put(&b, "", 0);
    if (b.oom)
        return PC_E_NOMEM;
    *out = b.p;
    if (len)
        *len = b.n;
    return 0;
}

/* ---- listen address ----------------------------------------------------------- */

int pcd_metrics_listen_parse(const char *text, uint32_t *addr, uint16_t *port,
                             char *err, size_t errlen)
{
    char host[64];
    const char *colon = text ? strrchr(text, ':') : NULL;
    const char *ps = colon ? colon + 1 : text;
    if (!text || !text[0]) {
        snprintf(err, errlen, "metrics_listen: empty");
        return PC_E_INVAL;
    }
    size_t hl = colon ? (size_t)(colon - text) : 0;
    if (hl >= sizeof(host)) {
        snprintf(err, errlen, "metrics_listen: host too long");
        return PC_E_INVAL;
    }
    memcpy(host, text, hl);
    host[hl] = 0;
    char *end;
    unsigned long p = strtoul(ps, &end, 10);
    if (!*ps || *end || p > 65535 || ps[0] < '0' || ps[0] > '9') {
        snprintf(err, errlen, "metrics_listen: '%s': the port must be a number "
                 "0..65535 (\"PORT\" or \"HOST:PORT\")", text);
        return PC_E_INVAL;
    }
    struct in_addr a;
    if (!colon || strcmp(host, "localhost") == 0)
        a.s_addr = htonl(INADDR_LOOPBACK);
    else if (strcmp(host, "*") == 0)
        a.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &a) != 1) {
        snprintf(err, errlen, "metrics_listen: '%s' is not an IPv4 address "
                 "(or localhost, or * for all)", host);
        return PC_E_INVAL;
    }
    if (addr)
        *addr = ntohl(a.s_addr);
    if (port)
        *port = (uint16_t)p;
    return 0;
}

/* ---- the listener ------------------------------------------------------------- */

struct pcd_metrics {
    struct MHD_Daemon *mhd;
    pc_rpc_server *srv;
    uint16_t port;
    char addr[INET_ADDRSTRLEN];
    pcd_stat *st; /* the scrape's stats, reused */
    memo *memo;   /* st's rows, from the last scrape */
    size_t n, cap;
    uint64_t scrapes;
};

static void collect(void *ctx, const char *name, uint64_t v)
{
    pcd_metrics *m = ctx;
    if (m->n == m->cap) {
        size_t c = m->cap ? m->cap * 2 : 512;
        pcd_stat *p = realloc(m->st, c * sizeof(*p));
        memo *q = p ? realloc(m->memo, c * sizeof(*q)) : NULL;
        if (p)
            m->st = p;
        if (!q)
            return; /* the scrape misses a few; the next one will not */
        memset(q + m->cap, 0, (c - m->cap) * sizeof(*q));
        m->memo = q;
        m->cap = c;
    }
    m->st[m->n++] = (pcd_stat){name, v};
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code,
                             const char *type, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version, (void)upload, (void)con_cls;
    pcd_metrics *m = cls;
    static char not_found[] = "not found: the metrics are at /metrics\n";
    static char bad_method[] = "only GET and HEAD\n";
    static char oom[] = "out of memory\n";
    if (*upload_size) /* no body expected: drop it */
        *upload_size = 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                     bad_method, strlen(bad_method), MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", not_found,
                     strlen(not_found), MHD_RESPMEM_PERSISTENT);
    m->n = 0;
    pc_rpc_server_stats_visit(m->srv, collect, m); /* live, on the loop thread */
    m->scrapes++;
    char *text;
    size_t len;
    if (render(m->st, m->n, m->memo, &text, &len) != 0)
        return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", oom,
                     strlen(oom), MHD_RESPMEM_PERSISTENT);
    return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                 text, len, MHD_RESPMEM_MUST_FREE);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = 0;
    pcd_log(PC_LOG_WARN, "metrics http: %s", line);
}

int pcd_metrics_create(const char *listen, pcd_metrics **out, char *err,
                       size_t errlen)
{
    uint32_t ip;
    uint16_t port;
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    int rc = pcd_metrics_listen_parse(listen, &ip, &port, err, errlen);
    if (rc)
        return rc;
    pcd_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return PC_E_NOMEM;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(ip)};
    inet_ntop(AF_INET, &sa.sin_addr, m->addr, sizeof(m->addr));
    m->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, port, NULL, NULL, on_request, m,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, as MHD asks */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_MAX,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)CONN_PER_IP,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEM,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)16, MHD_OPTION_END);
    if (!m->mhd) {
        snprintf(err, errlen, "metrics_listen: cannot listen on %s:%u (in use? "
                 "a privileged port?)", m->addr, (unsigned)port);
        free(m);
        return PC_E_IO;
    }
    const union MHD_DaemonInfo *pi =
        MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
    m->port = pi ? pi->port : port;
    *out = m;
    return 0;
}

void pcd_metrics_attach(pcd_metrics *m, pc_rpc_server *srv)
{
    if (m)
        m->srv = srv;
}

static void watch_ready(void *ctx)
{
    pcd_metrics *m = ctx;
    if (m->srv) /* before attach nothing is served; the fd stays readable */
        MHD_run(m->mhd);
}

static int watch_timeout(void *ctx)
{
    pcd_metrics *m = ctx;
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(m->mhd, &ms) != MHD_YES)
        return -1;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

pc_rpc_watch pcd_metrics_watch(pcd_metrics *m)
{
    pc_rpc_watch w = {0};
    const union MHD_DaemonInfo *i =
        m ? MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (i && i->epoll_fd > 0) {
        w.fd = i->epoll_fd;
        w.ready = watch_ready;
        w.timeout_ms = watch_timeout;
        w.ctx = m;
    }
    return w;
}

uint16_t pcd_metrics_port(const pcd_metrics *m) { return m ? m->port : 0; }
const char *pcd_metrics_addr(const pcd_metrics *m) { return m ? m->addr : ""; }

void pcd_metrics_destroy(pcd_metrics *m)
{
    if (!m)
        return;
    if (m->mhd)
        MHD_stop_daemon(m->mhd);
    free(m->st);
    free(m->memo);
    free(m);
}

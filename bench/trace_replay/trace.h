/*
 * bench/trace_replay/trace.h - request traces for the replay benchmark: the
 * parsers, the page model, and the replays (the real cache in-process, the
 * real daemon over libprefixcache, Belady's offline optimum, the ideal).
 *
 * A private helper of bench/trace_replay (the static library trace_replay_core,
 * linked by the program and by tests/test_trace_replay.c).
 *
 * Two input formats, detected per file (the first line that is neither blank
 * nor a '#' comment starts with '{': Mooncake):
 *
 *  Mooncake (FAST'25 release): one JSON object a line,
 *    {"timestamp": 0, "input_length": 6758, "output_length": 500,
 *     "hash_ids": [0, 1, 2, ...]}
 *    input_length and hash_ids are required; timestamp and output_length are
 *    checked (non-negative numbers) and ignored; other keys are skipped.
 *    There must be exactly ceil(input_length / P) hash ids (one per block,
 *    the last one usually partly full).  One namespace per file: its name.
 *
 *  simple (ours): one request a line, four fields separated by TABs,
 *    NAMESPACE <TAB> N_TOKENS <TAB> KIND <TAB> IDS
 *    KIND "tokens": IDS = N_TOKENS comma-separated token ids (uint32);
 *    KIND "blocks": IDS = ceil(N_TOKENS / P) comma-separated block hashes
 *    (uint64), each expanding to its P tokens as below.  Blank lines and
 *    lines starting with '#' are skipped.  An empty IDS needs N_TOKENS = 0.
 *
 * Expansion: block hash h becomes P deterministic token ids: h's low and high
 * 32 bits, then splitmix64(h, i) truncated to 32 bits, so two distinct hashes
 * always give two distinct pages (P >= 2).
 *
 * Only full pages count: a request has floor(N_TOKENS / P) of them, and the
 * partly full last block can neither hit nor be cached, so it is neither
 * sent nor counted.  Timestamps are ignored: requests are replayed one after
 * another in file order, each one's life complete (lookup+pin, alloc, insert,
 * release) before the next starts.
 *
 * Page identity is what the tree sees: a page is (namespace, the pages before
 * it, its own tokens).  Pages are interned to dense ids 0..working_set-1 once
 * at load; "blocks" pages by their hash, "tokens" pages by XXH3-128 of their
 * tokens.
 *
 * Every int-returning function returns 0 or a negative PC_E_* code.
 */
#ifndef BENCH_TRACE_REPLAY_TRACE_H
#define BENCH_TRACE_REPLAY_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/proto.h"
#include "radix/radix.h"

#define TR_NEVER UINT32_MAX /* "no next use" */
#define TR_NO_PAGE UINT32_MAX

typedef enum tr_format { TR_FMT_AUTO = 0, TR_FMT_MOONCAKE, TR_FMT_SIMPLE } tr_format;
enum { TR_KIND_BLOCKS = 0, TR_KIND_TOKENS = 1 };

typedef struct tr_request {
    uint32_t ns;       /* namespace index                                   */
    uint32_t kind;     /* TR_KIND_*                                         */
    uint64_t n_tokens; /* input tokens as the trace says                    */
    uint32_t n_pages;  /* full pages = n_tokens / P                         */
    uint64_t src;      /* blocks: index of its first hash in hashes[];
                          tokens: index of its first token in tokens[]      */
    uint64_t occ;      /* index of its first page in pid[] / next[]         */
} tr_request;

typedef struct tr_trace {
    char *name;          /* file name without directory and extension       */
    uint32_t page_tokens;
    char **ns;           /* namespace names (bytes, NUL-terminated)         */
    size_t *ns_len;
    size_t n_ns;
    tr_request *req;
    size_t n_req;
    uint64_t *hashes;    /* block hashes of the full pages (blocks kind)    */
    size_t n_hashes;
    uint32_t *tokens;    /* tokens of the full pages (tokens kind)          */
    size_t n_tokens;
    /* per page occurrence (n_occ = sum of n_pages) */
    uint32_t *pid;       /* the interned page                               */
    uint32_t *next;      /* next request using the page, TR_NEVER if none   */
    size_t n_occ;
    /* per interned page (n_pages_distinct = the working set) */
    uint32_t *parent;    /* TR_NO_PAGE for a page right below a namespace   */
    uint32_t *depth;     /* 1 for the first page of a prompt                */
    uint32_t n_distinct;
    uint32_t max_req_pages;
    uint64_t ideal_hits; /* hits of an infinite cache                       */
    size_t skipped;      /* malformed lines skipped (skip_bad)              */
} tr_trace;

typedef struct tr_load_opts {
    uint32_t page_tokens; /* 0: 512                                         */
    tr_format format;
    bool skip_bad;        /* warn and skip malformed lines instead of failing */
    size_t limit;         /* 0: all requests                                */
    FILE *err;            /* diagnostics (NULL: stderr)                     */
} tr_load_opts;

/* Parse a trace file (path "-" = stdin).  A malformed line fails the load
 * with PC_E_INVAL after printing "path:line: reason" (or is skipped with
 * skip_bad).  PC_E_IO, PC_E_NOMEM, PC_E_RANGE (more than 2^32-1 pages). */
int tr_trace_load(const char *path, const tr_load_opts *o, tr_trace **out);

/* The same from a memory buffer (tests); name is the trace's name. */
int tr_trace_load_mem(const char *buf, size_t len, const char *name,
                      const tr_load_opts *o, tr_trace **out);

void tr_trace_free(tr_trace *t);

/* The P tokens of block hash h. */
void tr_expand_block(uint64_t h, uint32_t page_tokens, uint32_t *out);

/* The n_pages * P tokens of request i's full pages: a pointer into the
 * trace (tokens kind) or into buf (blocks kind, room for max_req_pages * P). */
const uint32_t *tr_request_tokens(const tr_trace *t, size_t i, uint32_t *buf);

/* Total full pages (= n_occ). */
static inline uint64_t tr_total_pages(const tr_trace *t) { return t->n_occ; }

/* ---- replays -------------------------------------------------------------- */

typedef struct tr_result {
    uint64_t hit_pages;     /* matched full pages                            */
    uint64_t total_pages;   /* full pages asked for                          */
    uint64_t inserted_pages;
    uint64_t evicted_pages;
    uint64_t truncated;     /* requests that did not fit (prefix inserted)   */
    double seconds;
    /* Two-tier replays (tr_replay_opts.two_tier); hit_pages = tier1 + tier2. */
    uint64_t tier1_hit_pages;   /* matched in the pool by the first lookup   */
    uint64_t tier2_hit_pages;   /* promoted from tier 2, then matched        */
    uint64_t tier2_unpromoted;  /* in tier 2 but not promoted (no room)      */
    uint64_t promote_jobs;      /* promotions waited for                     */
    /* the cache's tier2.* counters at the end */
    uint64_t tier2_capacity_pages, tier2_demoted_pages, tier2_promoted_pages,
             tier2_evicted_pages, tier2_promotions;
} tr_result;

static inline double tr_hit_rate(const tr_result *r)
{
    return r->total_pages ? (double)r->hit_pages / (double)r->total_pages : 0.0;
}

typedef struct tr_priority {
    const char *ns; /* namespace name */
    int32_t priority;
} tr_priority;

typedef struct tr_replay_opts {
    pc_radix_policy policy;
    uint64_t capacity;       /* pages (>= 2: the pool's minimum)             */
    bool check_every;        /* pc_cache_check after every request           */
    const tr_priority *prio; /* namespace priorities (the priority policy)   */
    size_t n_prio;
    uint32_t *per_req_hits;  /* when not NULL: hits of each request          */
    /* progress: called every progress_every requests (0: never) */
    void (*progress)(void *ctx, size_t done, size_t total);
    void *progress_ctx;
    size_t progress_every;
    /* Two tiers: a host pool (memory: 1x1x1 fp8 blocks, 2 bytes a token)
     * plus tier2_pages pages of tier 2 in a file under tier2_path (NULL:
     * /var/tmp); 0 pages: no tier, but still the host pool and the
     * two-tier steps, which must then give the one-tier results. */
    bool two_tier;
    uint64_t tier2_pages;
    const char *tier2_path;
} tr_replay_opts;

/* Replay through a real pc_cache (pool backend "none", 1x1x1 fp16 blocks of
 * P tokens, capacity_blocks = capacity).  Per request: lookup with pin (m
 * pages hit) -> alloc k = min(n - m, capacity - m) (evicting by policy) ->
 * insert the first m + k pages -> release.  pc_cache_check at the end (and
 * after every request with check_every).  PC_E_INVAL for a policy the cache
 * refuses (e.g. one not implemented yet), PC_E_CORRUPT when a check fails,
 * PC_E_RANGE for a capacity below 2, else what the cache returns. */
int tr_replay_cache(const tr_trace *t, const tr_replay_opts *o, tr_result *out);
/* Two-tier steps (two_tier): lookup with pin (m1 pages: tier-1 hits); when
 * it reports pages in tier 2, pc_cache_promote and wait for each job
 * until none is returned, then lookup again with pin under the same lease
 * (m2 >= m1: m2 - m1 tier-2 hits), then alloc/insert/release as above
 * from m2.  The tree's hit count then includes both lookups. */

/* Belady's offline optimum adapted to the prefix tree (belady.c), with the
 * same per-request steps and the same truncation rule.  per_req_hits may be
 * NULL.  check: verify the structure after every request (slow). */
int tr_replay_belady(const tr_trace *t, uint64_t capacity, bool check,
                     uint32_t *per_req_hits, tr_result *out);

/* The infinite cache (from the load). */
void tr_ideal(const tr_trace *t, tr_result *out);

struct pc_client;
/* Replay through a running daemon (libprefixcache): the same steps over the
 * wire (lookup pin+alloc, alloc of what fits when that failed, insert with
 * release).  capacity: the daemon's pool, for the truncation rule.  The
 * daemon should hold nothing else (its pool is shared by all namespaces). */
int tr_replay_daemon(const tr_trace *t, struct pc_client *c, uint64_t capacity,
                     uint32_t *per_req_hits,
                     void (*progress)(void *ctx, size_t done, size_t total),
                     void *progress_ctx, size_t progress_every,
                     tr_result *out);

#endif

/*
 * cache/tier.h - private to cache/: the second tier, where pages the pool
 * evicts go instead of vanishing (tier.c has the picture).
 *
 * The tier knows pages by their chained identity (proto/pagehash.h) and
 * holds their bytes in slots of one block each:
 *   host pool  ──► a memory-mapped file (tier2_path; e.g. on an NVMe disk):
 *                  demotion is a memcpy into the mapping, promotion a pread
 *                  on a worker thread (the loop never waits for the disk)
 *   cuda pool  ──► page-locked host memory (gpu ops host_alloc): demotion a
 *                  device-to-host copy, promotion a host-to-device copy on a
 *                  stream with an event; the fake device runs it on CPUs
 * It has its own LRU.  A slot being read by a promotion is busy: never
 * overwritten or dropped until the promotion is freed.
 *
 * Threading: the cache's thread calls everything; the file tier's worker
 * only reads slots into blocks that a promotion holds.
 */
#ifndef PC_CACHE_TIER_H
#define PC_CACHE_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockpool/blockpool.h"
#include "proto/pagehash.h"
#include "proto/stats.h"

typedef struct pc_tier pc_tier;
typedef struct pc_tier_job pc_tier_job;

typedef struct pc_tier_config {
    uint64_t bytes;          /* capacity: bytes / block_bytes slots       */
    const char *path;        /* file tier: a file (created, removed at
                                the end) or a directory (an unnamed file
                                in it); NULL or "": one in /var/tmp       */
    uint32_t read_delay_us;  /* test aid: sleep before each page read    */
} pc_tier_config;

typedef struct pc_tier_stats {
    uint64_t capacity_pages, pages, busy_pages, jobs_inflight; /* gauges */
    uint64_t hit_pages, miss_pages;   /* pages asked of the tier by lookups */
    uint64_t demoted_pages, demote_dedup_pages, demote_dropped_pages;
    uint64_t evicted_pages;           /* dropped by the tier's own LRU     */
    uint64_t flushed_pages;
    uint64_t promotions, promoted_pages, promote_failed_pages;
    uint64_t bytes_demoted, bytes_promoted;
} pc_tier_stats;

/* PC_E_INVAL (no room for one block, a pool without memory: "none"),
 * PC_E_IO (the file: errno holds the cause), PC_E_NOMEM; why says which. */
int pc_tier_create(const pc_tier_config *cfg, pc_pool *pool, pc_tier **out,
                   char *why, size_t whylen);
/* Waits for running promotions' reads; frees everything. */
void pc_tier_destroy(pc_tier *t);

/* The slot holding the page with this identity and these tokens, or -1. */
int64_t pc_tier_find(const pc_tier *t, pc_page_hash key, const uint32_t *page);
void pc_tier_touch(pc_tier *t, uint32_t slot); /* most recently used */
bool pc_tier_busy(const pc_tier *t, uint32_t slot);
uint32_t pc_tier_pages(const pc_tier *t); /* pages held now */

/* Copy `block`'s bytes into the tier as the page `key` (of namespace nsid,
 * tokens `page`), making room by the tier's LRU (busy slots stay).  A page
 * already there is only touched.  0, or PC_E_NOSPACE when every slot is
 * busy.  The copy may still be in flight for a device tier: call
 * pc_tier_demote_flush before the block is reused. */
int pc_tier_demote(pc_tier *t, pc_page_hash key, uint64_t nsid,
                   const uint32_t *page, uint32_t block);
void pc_tier_demote_flush(pc_tier *t);

/* Make slots busy (hold) or idle again (unhold; drop: forget them too,
 * their bytes are in doubt).  A promotion holds its slots from before it
 * allocates its blocks (whose evictions demote pages into the tier) until
 * its job is freed. */
void pc_tier_hold(pc_tier *t, const uint32_t *slots, uint32_t n);
void pc_tier_unhold(pc_tier *t, const uint32_t *slots, uint32_t n, bool drop);

/* Start copying held slots[i] into pool block blocks[i] (i < n).
 * PC_E_NOMEM, PC_E_IO. */
int pc_tier_promote(pc_tier *t, const uint32_t *slots, const uint32_t *blocks,
                    uint32_t n, pc_tier_job **out);
/* 0 done, PC_E_BUSY still copying, another code: done but failed. */
int pc_tier_job_status(pc_tier *t, pc_tier_job *j);
/* A finished job (status not BUSY): its slots are unheld (dropped when it
 * failed) and its counters counted. */
void pc_tier_job_free(pc_tier *t, pc_tier_job *j);

/* Let every started copy finish (destroy's first step: the jobs can then
 * be freed). */
void pc_tier_quiesce(pc_tier *t);

/* Readable when a job may have finished (the file tier's eventfd; empty
 * it with pc_tier_drain_fd before looking at the jobs); -1 when completion
 * must be polled (a device tier: see pc_tier_polls). */
int pc_tier_wait_fd(const pc_tier *t);
void pc_tier_drain_fd(pc_tier *t);
/* Make the wait fd readable again (a caller that drained it and left a
 * finished job behind); nothing for a device tier. */
void pc_tier_kick(pc_tier *t);
bool pc_tier_polls(const pc_tier *t); /* jobs in flight that only polling sees */

/* Drop every page that is not busy (all) or those of namespace nsid;
 * returns how many. */
size_t pc_tier_flush(pc_tier *t, bool all, uint64_t nsid);

/* Told of every page the tier forgets (its LRU making room, a flush, a
 * failed promotion's slots), before the slot is reused; NULL: nobody. */
typedef void (*pc_tier_drop_fn)(void *ctx, pc_page_hash key);
void pc_tier_set_drop_fn(pc_tier *t, pc_tier_drop_fn fn, void *ctx);

/* The keys of every page held, into out[0..cap); returns how many are
 * held (tests). */
size_t pc_tier_list(const pc_tier *t, pc_page_hash *out, size_t cap);

void pc_tier_stats_get(const pc_tier *t, pc_tier_stats *out);
pc_tier_stats *pc_tier_counters(pc_tier *t); /* the cache counts lookups */
void pc_tier_stats_visit(const pc_tier *t, pc_stat_fn fn, void *ctx);
/* The storage ("file", "host") and, for a file, its path. */
const char *pc_tier_kind(const pc_tier *t);

/* Index, LRU, free list and busy counts agree.  0 or PC_E_CORRUPT. */
int pc_tier_check(const pc_tier *t);

#endif /* PC_CACHE_TIER_H */

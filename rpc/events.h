/*
 * rpc/events.h - KV events for cluster routers: the cache's event hook
 * (cache.h) published the way vLLM publishes its own, so that a router
 * that consumes vLLM's (llm-d's KV-cache indexer, NVIDIA Dynamo's KV
 * router) can consume ours (docs/cluster.md).
 *
 *   PUB  (endpoint)  three frames per batch:
 *                    topic | sequence number (8 bytes, big-endian, from 0) |
 *                    msgpack [timestamp (float s), [event, ...], dp_rank|nil]
 *   ROUTER (replay_endpoint, optional)  [id, "", start_seq (8 bytes BE)] ->
 *                    (id, "", seq, payload) per kept batch from start_seq on,
 *                    then (id, "", -1 as 8 signed bytes BE, "")
 *
 * Batches gather for interval_ms: the events the cache reports are queued
 * raw by the hook (on the loop's thread) and packed by the events thread
 * into the pending batch (runs of REMOVED of one medium merged into one
 * event), which it publishes once its first event is that old, or at
 * 1 MiB.  Why gather: a message costs the publisher, libzmq's I/O thread
 * and every subscriber a wakeup each, which on an insert-heavy load cost
 * far more than packing (one batch per round cost +40% cycle latency and
 * -30% throughput in rpc_bench); vLLM itself publishes once per engine
 * step.  PUB never blocks: a subscriber that is too slow loses batches (it
 * sees the gap in the sequence numbers and replays).
 * Threading: the hook, tick, flush, set_interval and stats are the loop's
 * calls; packing, the PUB and ROUTER sockets and the arena of kept batches
 * belong to the events thread (events.c says why).
 */
#ifndef PC_RPC_EVENTS_H
#define PC_RPC_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

typedef struct pc_rpc_events pc_rpc_events;

enum {
    PC_KV_EVENTS_MAP = 0,   /* each event a map with "type" (vLLM today)   */
    PC_KV_EVENTS_ARRAY = 1, /* each an array, the type first (older vLLM)  */
};

/* "map", "array"; NULL past the last (for the knob table). */
const char *pc_rpc_events_format_name(int i);

typedef struct pc_rpc_events_config {
    const char *endpoint;        /* the PUB socket (tcp, ipc endpoint)       */
    const char *topic;           /* the first frame of every batch           */
    const char *replay_endpoint; /* NULL or "": no replay                    */
    uint32_t buffer;             /* batches kept for replay (>= 1)           */
    uint64_t buffer_bytes;       /* and at most this many payload bytes (0: no bound) */
    uint32_t interval_ms;        /* a batch gathers events this long (0: one
                                    batch per call of pc_rpc_events_tick)    */
    int format;                  /* PC_KV_EVENTS_*                           */
    int64_t dp_rank;             /* < 0: nil                                 */
    char *err;                   /* optional: why create failed             */
    size_t errlen;
} pc_rpc_events_config;

/* Bind the sockets and start the events thread.  PC_E_INVAL for a bad
 * config, PC_E_BUSY for an endpoint in use, PC_E_IO, PC_E_NOMEM. */
int pc_rpc_events_create(const pc_rpc_events_config *cfg, pc_rpc_events **out);

/* Publish what cache c reports from now on (its hook; NULL: stop).  The
 * hook is the cache's by-block one: the events thread hashes the pool's
 * pages and keeps each block's chain value, 16 bytes a pool block. */
void pc_rpc_events_attach(pc_rpc_events *e, pc_cache *c);

/* Publish everything reported so far (the events thread packs what is
 * queued and sends it; this waits for it): 0, PC_E_NOMEM (the batch is
 * lost, the sequence number still moves on so that subscribers see a gap)
 * or PC_E_TIMEOUT (the thread did not answer within 10 s). */
int pc_rpc_events_flush(pc_rpc_events *e);

/* Called by the loop after each round: the cache's count of pages it could
 * not name goes to the stats, and with interval 0 the round's events go
 * out as one batch.  0, or PC_E_INVAL for NULL.  (The events thread keeps
 * the batches' time itself: the loop need not wake up for them.) */
int pc_rpc_events_tick(pc_rpc_events *e);

/* The interval is reloadable: it applies to the pending batch at once. */
void pc_rpc_events_set_interval(pc_rpc_events *e, uint32_t ms);

/* Stop the events thread (what it has not published is lost: flush
 * first), close the sockets.  Detach it from the cache
 * first.  NULL is a no-op. */
void pc_rpc_events_destroy(pc_rpc_events *e);

/* The endpoints actually bound (tcp port 0 / * resolved); "" for none. */
const char *pc_rpc_events_endpoint(const pc_rpc_events *e);
const char *pc_rpc_events_replay_endpoint(const pc_rpc_events *e);

typedef struct pc_rpc_events_stats {
    uint64_t batches, events, send_failed, replays;
    uint64_t bytes; /* the batches' payloads (msgpack), topic and seq aside */
    uint64_t replay_dropped; /* kept batches dropped early: buffer_bytes */
    uint64_t lost_pages; /* pages the cache could not name (cache.h)   */
    uint64_t queue_waits; /* times the loop waited for the events thread */
} pc_rpc_events_stats;

void pc_rpc_events_stats_get(const pc_rpc_events *e, pc_rpc_events_stats *out);

#endif /* PC_RPC_EVENTS_H */

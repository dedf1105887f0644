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
 * Batches gather for interval_ms: the events the cache reports go into
 * the pending batch (runs of REMOVED of one medium merged into one event),
 * and pc_rpc_events_tick, called by the loop after each round of requests,
 * publishes it once its first event is that old.  Why gather: a message
 * costs the publisher, libzmq's I/O thread and every subscriber a wakeup
 * each, which on an insert-heavy load cost far more than packing (one
 * batch per round cost +40% cycle latency and -30% throughput in
 * rpc_bench); vLLM itself publishes once per engine step.  PUB never
 * blocks: a subscriber that is too slow loses batches (it sees the gap in
 * the sequence numbers and replays).
 *
 * Threading: everything but the replay socket belongs to the caller's
 * thread (the loop); replay is answered by a thread of its own, from a
 * ring of the last `buffer` batches shared under a mutex.
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

/* Bind the sockets (and start the replay thread).  PC_E_INVAL for a bad
 * config, PC_E_BUSY for an endpoint in use, PC_E_IO, PC_E_NOMEM. */
int pc_rpc_events_create(const pc_rpc_events_config *cfg, pc_rpc_events **out);

/* Publish what cache c reports from now on (its hook; NULL: stop). */
void pc_rpc_events_attach(pc_rpc_events *e, pc_cache *c);

/* Publish the pending batch, if any: 0, or PC_E_NOMEM (the batch is lost,
 * the sequence number still moves on so that subscribers see a gap). */
int pc_rpc_events_flush(pc_rpc_events *e);

/* Called by the loop after each round: publish the pending batch once its
 * first event is interval_ms old (or it holds 1 MiB).  *wait_ms (may be
 * NULL): how long the loop may sleep before the next call is due, -1 for
 * as long as it likes (nothing pending).  Returns what flush returns. */
int pc_rpc_events_tick(pc_rpc_events *e, int *wait_ms);

/* The interval is reloadable: it applies from the next tick. */
void pc_rpc_events_set_interval(pc_rpc_events *e, uint32_t ms);

/* Stop the replay thread, close the sockets.  Detach it from the cache
 * first.  NULL is a no-op. */
void pc_rpc_events_destroy(pc_rpc_events *e);

/* The endpoints actually bound (tcp port 0 / * resolved); "" for none. */
const char *pc_rpc_events_endpoint(const pc_rpc_events *e);
const char *pc_rpc_events_replay_endpoint(const pc_rpc_events *e);

typedef struct pc_rpc_events_stats {
    uint64_t batches, events, send_failed, replays;
    uint64_t replay_dropped; /* kept batches dropped early: buffer_bytes */
    uint64_t lost_pages; /* pages the cache could not name (cache.h)   */
} pc_rpc_events_stats;

void pc_rpc_events_stats_get(const pc_rpc_events *e, pc_rpc_events_stats *out);

#endif /* PC_RPC_EVENTS_H */

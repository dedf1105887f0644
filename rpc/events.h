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
 * One batch per loop iteration: the events the cache reports go into the
 * pending batch (runs of REMOVED of one medium merged into one event), and
 * pc_rpc_events_flush, called by the loop after each round of requests,
 * publishes it.  PUB never blocks: a subscriber that is too slow loses
 * batches (it sees the gap in the sequence numbers and replays).
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

/* Stop the replay thread, close the sockets.  Detach it from the cache
 * first.  NULL is a no-op. */
void pc_rpc_events_destroy(pc_rpc_events *e);

/* The endpoints actually bound (tcp port 0 / * resolved); "" for none. */
const char *pc_rpc_events_endpoint(const pc_rpc_events *e);
const char *pc_rpc_events_replay_endpoint(const pc_rpc_events *e);

typedef struct pc_rpc_events_stats {
    uint64_t batches, events, send_failed, replays;
    uint64_t lost_pages; /* pages the cache could not name (cache.h)   */
} pc_rpc_events_stats;

void pc_rpc_events_stats_get(const pc_rpc_events *e, pc_rpc_events_stats *out);

#endif /* PC_RPC_EVENTS_H */

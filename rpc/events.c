/*
 * rpc/events.c - KV events (events.h): the cache's hook -> msgpack batches
 * -> a PUB socket, and a replay ROUTER served by a thread of its own.
 *
 *   cache hook (loop thread)          pc_rpc_events_tick (loop thread, after
 *   │                                 │  each round: once the batch is
 *   │                                 │  interval_ms old or 1 MiB; _flush: now)
 *   ├─ STORED/CLEARED ─► pack into ev │  ev = [head (15 B, filled here), ev...,
 *   └─ REMOVED ─► rm[] (merged while  │        rank] ─► one refcounted blob
 *                 the medium stays)   ├─► PUB: topic | seq BE | blob (zero-copy)
 *                                     └─► ring[seq % buffer] (mutex; the blob,
 *                                          oldest dropped past buffer_bytes)
 *                                              ▲
 *   replay thread: ROUTER [id,"",start] ───────┘ copies every kept batch
 *                  from start on, then the -1 end marker
 *
 * Why a thread for replay: the loop's poll set belongs to rpc/server.c;
 * a replay is rare, and copying at most `buffer` payloads under the mutex
 * costs the loop nothing it would notice.  The PUB socket stays the
 * loop's: libzmq sockets are single-threaded, the context is not.
 */
#include "rpc/events.h"
#include "rpc/zparts.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <zmq.h>

/* A published payload, shared by the ring and libzmq (which frees its
 * reference from its I/O thread when the message is sent or dropped): one
 * copy of every batch instead of one each. */
typedef struct blob {
    atomic_uint refs;
    size_t len;
    char data[];
} blob;

static void blob_put(blob *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
}

static void blob_zmq_free(void *data, void *hint)
{
    (void)data;
    blob_put(hint);
}

typedef struct batch {
    uint64_t seq;
    blob *b; /* NULL: empty slot */
} batch;

struct pc_rpc_events {
    void *zctx, *pub, *rep;
    char topic[256];
    char endpoint[512], replay_endpoint[512];
    int format;
    int64_t rank;
    pc_cache *cache;
    /* the pending batch: events packed so far, and a REMOVED run */
    msgpack_sbuffer evbuf;
    msgpack_packer evpk;
    uint32_t nev;
    uint64_t *rm;
    size_t nrm, rm_cap;
    const char *rm_medium;
    int nomem;
    uint64_t seq;           /* the next batch's */
    uint64_t since_ms;      /* when the pending batch began; 0: none */
    uint32_t interval_ms;   /* how long a batch may gather (0: per round) */
    /* replay */
    batch *ring;
    uint32_t cap;
    pthread_mutex_t mu;
    pthread_t thr;
    bool thr_up;
    uint64_t ring_next;     /* one past the newest kept seq (mutex) */
    uint64_t ring_bytes, ring_max_bytes; /* payload bytes kept, their bound */
    atomic_bool stop;
    atomic_uint_fast64_t replays; /* the replay thread's one counter */
    pc_rpc_events_stats st;
};

static const char *const FORMATS[] = {"map", "array"};

const char *pc_rpc_events_format_name(int i)
{
    return i >= 0 && i < 2 ? FORMATS[i] : NULL;
}

/* ---- packing ---------------------------------------------------------------- */

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* Room for n more bytes at the end of the pending batch (NULL, and the
 * batch marked lost, without memory). */
static unsigned char *room(pc_rpc_events *e, size_t n)
{
    msgpack_sbuffer *b = &e->evbuf;
    if (b->size + n > b->alloc) {
        size_t cap = b->alloc ? b->alloc * 2 : 64 * 1024;
        while (cap < b->size + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            e->nomem = 1;
            return NULL;
        }
        b->data = d;
        b->alloc = cap;
    }
    return (unsigned char *)b->data + b->size;
}

/* The payload's head, [timestamp, [events, ...: 15 bytes of fixed form
 * (float64, array32) kept free at the start of the batch and written when
 * it is published, so that the events need not be copied behind it. */
#define HEAD_BYTES 15

/* The start of an event: its tag, and in map form how many fields follow. */
static void pack_head(pc_rpc_events *e, const char *tag, uint32_t fields)
{
    msgpack_packer *pk = &e->evpk;
    if (e->evbuf.size == 0) { /* the batch's first event */
        if (!room(e, HEAD_BYTES))
            return;
        e->evbuf.size = HEAD_BYTES;
    }
    if (e->format == PC_KV_EVENTS_MAP) {
        msgpack_pack_map(pk, fields + 1);
        pack_cstr(pk, "type");
    } else {
        msgpack_pack_array(pk, fields + 1);
    }
    pack_cstr(pk, tag);
    e->nev++;
}

static void pack_key(pc_rpc_events *e, const char *key)
{
    if (e->format == PC_KV_EVENTS_MAP)
        pack_cstr(&e->evpk, key);
}

/* Block hashes as msgpack uint64 (0xcf and 8 bytes big-endian), written
 * straight into the batch; a random 64-bit hash needs that form anyway. */
static void pack_hashes(pc_rpc_events *e, const uint64_t *h, size_t n)
{
    msgpack_pack_array(&e->evpk, n);
    unsigned char *p = room(e, n * 9 + 8);
    if (!p)
        return;
    for (size_t i = 0; i < n; i++) {
        uint64_t be = __builtin_bswap64(h[i]);
        p[i * 9] = 0xcf;
        memcpy(p + i * 9 + 1, &be, 8);
    }
    e->evbuf.size += n * 9;
}

/* Token ids as msgpack uint32 (0xce and 4 bytes big-endian), every one in
 * that one form: a fixed stride packs 4-6x faster than picking each id's
 * shortest form (measured: 0.8 against 3-5 ns a token; a 2,048-token insert
 * spent more on this than on everything else the events cost), and every
 * msgpack decoder reads any integer width.  One 8-byte store per token
 * (the 3 bytes past its 5 are overwritten by the next; room keeps 8
 * spare). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "pack_tokens stores its encodings as little-endian words");

static void pack_tokens(pc_rpc_events *e, const uint32_t *t, size_t n)
{
    unsigned char *p = room(e, n * 5 + 8);
    if (!p)
        return;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = 0xceu | (uint64_t)__builtin_bswap32(t[i]) << 8;
        memcpy(p + i * 5, &w, 8);
    }
    e->evbuf.size += n * 5;
}

/* The REMOVED run goes out before anything else is packed. */
static void rm_pack(pc_rpc_events *e)
{
    if (!e->nrm)
        return;
    msgpack_packer *pk = &e->evpk;
    pack_head(e, "BlockRemoved", 2);
    pack_key(e, "block_hashes");
    pack_hashes(e, e->rm, e->nrm);
    pack_key(e, "medium");
    pack_cstr(pk, e->rm_medium);
    e->nrm = 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_event(void *ctx, const pc_cache_event *ev)
{
    pc_rpc_events *e = ctx;
    msgpack_packer *pk = &e->evpk;
    if (!e->since_ms)
        e->since_ms = now_ms() | 1; /* never 0: 0 means "none pending" */
    if (ev->type == PC_CACHE_EV_REMOVED) {
        if (e->nrm && e->rm_medium != ev->medium)
            rm_pack(e);
        if (e->nrm + ev->n_pages > e->rm_cap) {
            size_t cap = e->rm_cap ? e->rm_cap : 64;
            while (cap < e->nrm + ev->n_pages)
                cap *= 2;
            uint64_t *g = realloc(e->rm, cap * sizeof(*g));
            if (!g) {
                e->nomem = 1;
                return;
            }
            e->rm = g;
            e->rm_cap = cap;
        }
        memcpy(e->rm + e->nrm, ev->hashes, ev->n_pages * sizeof(*ev->hashes));
        e->nrm += ev->n_pages;
        e->rm_medium = ev->medium;
        return;
    }
    rm_pack(e);
    if (ev->type == PC_CACHE_EV_CLEARED) {
        pack_head(e, "AllBlocksCleared", 0);
        return;
    }
    /* BlockStored: the fields of vLLM's, in its order (the array form is
     * positional: older consumers know seven fields, so no lora_name) */
    bool map = e->format == PC_KV_EVENTS_MAP;
    pack_head(e, "BlockStored", map ? 7 : 6);
    pack_key(e, "block_hashes");
    pack_hashes(e, ev->hashes, ev->n_pages);
    pack_key(e, "parent_block_hash");
    if (ev->has_parent)
        msgpack_pack_uint64(pk, ev->parent);
    else
        msgpack_pack_nil(pk);
    pack_key(e, "token_ids");
    size_t nt = ev->n_pages * ev->page_tokens;
    msgpack_pack_array(pk, nt);
    pack_tokens(e, ev->tokens + ev->first_page * ev->page_tokens, nt);
    pack_key(e, "block_size");
    msgpack_pack_uint32(pk, ev->page_tokens);
    pack_key(e, "lora_id");
    msgpack_pack_nil(pk);
    pack_key(e, "medium");
    pack_cstr(pk, ev->medium);
    if (map) {
        pack_key(e, "lora_name");
        msgpack_pack_nil(pk);
    }
}

/* ---- publishing --------------------------------------------------------------- */

static void be64(uint64_t v, unsigned char b[8])
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)v;
}

int pc_rpc_events_flush(pc_rpc_events *e)
{
    if (!e)
        return PC_E_INVAL;
    rm_pack(e);
    if (e->cache) {
        uint64_t lost = pc_cache_events_lost(e->cache);
        e->st.lost_pages = lost;
    }
    if (e->nev == 0 && !e->nomem)
        return 0;
    int rc = 0;
    uint64_t seq = e->seq++;
    if (e->nomem) {
        rc = PC_E_NOMEM;
        goto done;
    }
    if (e->rank >= 0)
        msgpack_pack_int64(&e->evpk, e->rank);
    else
        msgpack_pack_nil(&e->evpk);
    blob *b = e->nomem ? NULL : malloc(sizeof(*b) + e->evbuf.size);
    if (!b) {
        rc = PC_E_NOMEM;
        goto done;
    }
    /* the head: [ts (float64), [ (array32 of nev) ... ], rank] */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    uint64_t tb;
    memcpy(&tb, &t, 8);
    unsigned char *h = (unsigned char *)e->evbuf.data;
    h[0] = 0x93;
    h[1] = 0xcb;
    be64(tb, h + 2);
    h[10] = 0xdd;
    for (int i = 0; i < 4; i++)
        h[11 + i] = (unsigned char)(e->nev >> (24 - 8 * i));
    b->len = e->evbuf.size;
    memcpy(b->data, e->evbuf.data, b->len);
    atomic_init(&b->refs, e->ring ? 2u : 1u); /* libzmq's, the ring's */
    unsigned char sb[8];
    be64(seq, sb);
    /* PUB drops rather than blocks (its high-water mark): a failed send
     * is a batch the subscribers will see missing.  libzmq takes its
     * reference with the last frame, and drops it when done. */
    zmq_msg_t m;
    if (zmq_send(e->pub, e->topic, strlen(e->topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(e->pub, sb, 8, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        e->st.send_failed++;
        blob_put(b);
    } else if (zmq_msg_init_data(&m, b->data, b->len, blob_zmq_free, b) != 0) {
        e->st.send_failed++;
        blob_put(b);
    } else if (zmq_msg_send(&m, e->pub, ZMQ_DONTWAIT) < 0) {
        e->st.send_failed++;
        zmq_msg_close(&m); /* drops libzmq's reference */
    }
    e->st.batches++;
    e->st.events += e->nev;
    if (e->ring) {
        pthread_mutex_lock(&e->mu);
        batch *o = &e->ring[seq % e->cap];
        e->ring_bytes -= o->b ? o->b->len : 0;
        blob_put(o->b);
        o->seq = seq;
        o->b = b;
        e->ring_bytes += b->len;
        e->ring_next = seq + 1;
        /* The byte bound: drop the oldest kept batches (never this one);
         * a replay then starts later, as if they had aged out. */
        uint64_t lo = e->ring_next > e->cap ? e->ring_next - e->cap : 0;
        for (uint64_t s = lo; e->ring_bytes > e->ring_max_bytes && s < seq; s++) {
            batch *x = &e->ring[s % e->cap];
            if (x->b && x->seq == s) {
                e->ring_bytes -= x->b->len;
                blob_put(x->b);
                x->b = NULL;
                e->st.replay_dropped++;
            }
        }
        pthread_mutex_unlock(&e->mu);
    }
done:
    msgpack_sbuffer_clear(&e->evbuf);
    e->nev = 0;
    e->nrm = 0;
    e->nomem = 0;
    e->since_ms = 0;
    return rc;
}

/* A batch bigger than this goes out without waiting for its interval: it
 * bounds the pending buffer and the size of one message. */
#define FLUSH_BYTES ((size_t)1 << 20)

int pc_rpc_events_tick(pc_rpc_events *e, int *wait_ms)
{
    if (wait_ms)
        *wait_ms = -1;
    if (!e)
        return PC_E_INVAL;
    if (!e->since_ms) /* nothing pending (a lost page count alone waits) */
        return 0;
    uint64_t now = now_ms(), due = e->since_ms + e->interval_ms;
    if (now >= due || e->evbuf.size + e->nrm * 9 >= FLUSH_BYTES)
        return pc_rpc_events_flush(e);
    if (wait_ms)
        *wait_ms = (int)(due - now);
    return 0;
}

void pc_rpc_events_set_interval(pc_rpc_events *e, uint32_t ms)
{
    if (e)
        e->interval_ms = ms;
}

/* ---- replay ------------------------------------------------------------------ */

static int send3(void *sock, zmq_msg_t *id, const void *seq, const void *p,
                 size_t n)
{
    zmq_msg_t idc;
    zmq_msg_init(&idc);
    zmq_msg_copy(&idc, id);
    if (zmq_msg_send(&idc, sock, ZMQ_SNDMORE) < 0) {
        zmq_msg_close(&idc);
        return -1;
    }
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, seq, 8, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, p, n, 0) < 0)
        return -1;
    return 0;
}

/* One request: [id, "", start_seq]; anything else is dropped. */
static void replay_one(pc_rpc_events *e)
{
    zmq_msg_t part[4];
    int n = pc_rpc_recv_parts(e->rep, part, 4);
    if (n == 3 && zmq_msg_size(&part[1]) == 0 && zmq_msg_size(&part[2]) == 8) {
        const unsigned char *b = zmq_msg_data(&part[2]);
        uint64_t start = 0;
        for (int i = 0; i < 8; i++)
            start = start << 8 | b[i];
        atomic_fetch_add(&e->replays, 1);
        pthread_mutex_lock(&e->mu);
        /* seq s sits in ring[s % cap] while it is among the last cap */
        uint64_t lo = e->ring_next > e->cap ? e->ring_next - e->cap : 0;
        for (uint64_t s = start > lo ? start : lo; s < e->ring_next; s++) {
            batch *bt = &e->ring[s % e->cap];
            if (!bt->b || bt->seq != s)
                continue; /* a batch that could not be kept */
            unsigned char sb[8];
            be64(s, sb);
            if (send3(e->rep, &part[0], sb, bt->b->data, bt->b->len) < 0)
                break;
        }
        pthread_mutex_unlock(&e->mu);
        unsigned char end[8];
        be64(UINT64_MAX, end); /* -1 as a signed 64-bit big-endian */
        send3(e->rep, &part[0], end, "", 0);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

static void *replay_main(void *arg)
{
    pc_rpc_events *e = arg;
    while (!atomic_load(&e->stop)) {
        zmq_pollitem_t it = {e->rep, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, 100); /* the stop flag, 10 times a second */
        if (rc > 0)
            replay_one(e);
    }
    return NULL;
}

/* ---- life cycle ---------------------------------------------------------------- */

static int say(const pc_rpc_events_config *cfg, int rc, const char *what,
               const char *ep)
{
    if (cfg->err && cfg->errlen)
        snprintf(cfg->err, cfg->errlen, "%s %s: %s", what, ep,
                 zmq_strerror(zmq_errno()));
    return rc;
}

static int open_sock(pc_rpc_events *e, const pc_rpc_events_config *cfg,
                     int type, const char *ep, void **sock, char *bound,
                     size_t blen)
{
    int zero = 0;
    if (!*sock && !(*sock = zmq_socket(e->zctx, type)))
        return say(cfg, PC_E_IO, "socket for", ep);
    zmq_setsockopt(*sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_bind(*sock, ep) != 0)
        return say(cfg, zmq_errno() == EADDRINUSE ? PC_E_BUSY : PC_E_IO,
                   "cannot bind", ep);
    size_t len = blen;
    if (zmq_getsockopt(*sock, ZMQ_LAST_ENDPOINT, bound, &len) != 0)
        snprintf(bound, blen, "%s", ep);
    return 0;
}

int pc_rpc_events_create(const pc_rpc_events_config *cfg, pc_rpc_events **out)
{
    if (!out || !cfg || !cfg->endpoint || !cfg->endpoint[0] || !cfg->topic ||
        strlen(cfg->topic) >= 256 || !pc_rpc_events_format_name(cfg->format) ||
        (cfg->replay_endpoint && cfg->replay_endpoint[0] && cfg->buffer == 0))
        return PC_E_INVAL;
    *out = NULL;
    pc_rpc_events *e = calloc(1, sizeof(*e));
    if (!e)
        return PC_E_NOMEM;
    snprintf(e->topic, sizeof(e->topic), "%s", cfg->topic);
    e->format = cfg->format;
    e->rank = cfg->dp_rank;
    e->interval_ms = cfg->interval_ms;
    e->ring_max_bytes = cfg->buffer_bytes ? cfg->buffer_bytes : UINT64_MAX;
    msgpack_sbuffer_init(&e->evbuf);
    msgpack_packer_init(&e->evpk, &e->evbuf, msgpack_sbuffer_write);
    pthread_mutex_init(&e->mu, NULL);
    int rc = PC_E_IO;
    if (!(e->zctx = zmq_ctx_new()))
        goto fail;
    if ((rc = open_sock(e, cfg, ZMQ_PUB, cfg->endpoint, &e->pub, e->endpoint,
                        sizeof(e->endpoint))))
        goto fail;
    if (cfg->replay_endpoint && cfg->replay_endpoint[0]) {
        rc = PC_E_NOMEM;
        e->cap = cfg->buffer;
        if (!(e->ring = calloc(e->cap, sizeof(*e->ring))))
            goto fail;
        /* A ROUTER drops what is over its high-water mark without a word:
         * a replay is at most `buffer` batches, let them all queue. */
        int unlimited = 0;
        rc = PC_E_IO;
        if (!(e->rep = zmq_socket(e->zctx, ZMQ_ROUTER)) ||
            zmq_setsockopt(e->rep, ZMQ_SNDHWM, &unlimited, sizeof(unlimited)))
            goto fail;
        if ((rc = open_sock(e, cfg, ZMQ_ROUTER, cfg->replay_endpoint, &e->rep,
                            e->replay_endpoint, sizeof(e->replay_endpoint))))
            goto fail;
        rc = PC_E_IO;
        if (pthread_create(&e->thr, NULL, replay_main, e) != 0)
            goto fail;
        e->thr_up = true;
    }
    *out = e;
    return 0;
fail:
    pc_rpc_events_destroy(e);
    return rc;
}

void pc_rpc_events_attach(pc_rpc_events *e, pc_cache *c)
{
    if (!e)
        return;
    if (e->cache && e->cache != c)
        pc_cache_set_event_fn(e->cache, NULL, NULL);
    e->cache = c;
    if (c)
        pc_cache_set_event_fn(c, on_event, e);
}

void pc_rpc_events_destroy(pc_rpc_events *e)
{
    if (!e)
        return;
    if (e->thr_up) {
        atomic_store(&e->stop, true);
        pthread_join(e->thr, NULL);
    }
    if (e->pub)
        zmq_close(e->pub);
    if (e->rep)
        zmq_close(e->rep);
    if (e->zctx)
        zmq_ctx_term(e->zctx);
    for (uint32_t i = 0; e->ring && i < e->cap; i++)
        blob_put(e->ring[i].b);
    free(e->ring);
    free(e->rm);
    msgpack_sbuffer_destroy(&e->evbuf);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

const char *pc_rpc_events_endpoint(const pc_rpc_events *e)
{
    return e ? e->endpoint : "";
}

const char *pc_rpc_events_replay_endpoint(const pc_rpc_events *e)
{
    return e ? e->replay_endpoint : "";
}

void pc_rpc_events_stats_get(const pc_rpc_events *e, pc_rpc_events_stats *out)
{
    if (!out)
        return;
    if (!e) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = e->st;
    out->replays = atomic_load(&((pc_rpc_events *)e)->replays);
}

/*
 * rpc/events.c - KV events (events.h): the cache's hook -> a queue -> the
 * events thread, which packs msgpack batches, publishes them on a PUB
 * socket and answers replays from an arena of kept batches.
 *
 *   loop thread                        events thread (owns PUB, ROUTER, arena)
 *   ───────────                        ───────────────────────────────────────
 *   cache hook ─► on_event: the raw    wakes on the eventfd (idle -> busy, the
 *     event (pool blocks or, for   ┐     queue a quarter full, flush, stop), a
 *     tier 2, hashes; token ids)   ▼     replay request, or the batch's due time
 *            q: SPSC byte ring ───────► drain: hash a STORED's pool pages on
 *                                          from bh[parent block] (bh: each
 *                                          block's chain value), name a
 *                                          REMOVED's from bh; pack into evbuf
 *   tick: lost pages; interval 0:  ──►  publish (interval_ms old, 1 MiB, flush,
 *     a round mark                       a round mark): head in place ─►
 *   flush: wake it, wait for it          with replay: a copy in the arena, kept
 *                                          in ring[seq % buffer]; without: the
 *                                          buffer itself (back to a slot after)
 *                                        ─► PUB topic|seq|payload (zero-copy)
 *                                        ROUTER replays from the ring, 1 MiB a
 *                                          step between batches
 *
 *   arena (replay on): one mapping, touched at start; records in order
 *   ┌─────┬────────┬────────┬────────┬──────────────────────┬─────┐
 *   │free │ kept 7 │ kept 8 │ sent 9 │         free         │ pad │─► wraps
 *   └─────┴────────┴────────┴────────┴──────────────────────┴─────┘
 *          ^ tail: the oldest record kept for replay or still held by libzmq
 *
 * Why a thread: packing ~2,000 token ids per insert, copying the batch and
 * page-faulting fresh memory for it cost the daemon's single-threaded loop
 * a fifth of its time on an insert-heavy load (rpc_bench); now the loop
 * copies the raw event into the queue (8.5 KB for 128 pages: ~1-2 us on a
 * slow VM) and goes on.  The chain hash of the new pages, and the 16-byte
 * value kept per block to go on from it and to name the page when it
 * goes, are the thread's too (the cache's by-block hook, cache.h): the
 * loop keeps one bit a block.
 * vLLM's publisher runs on a thread of its own too.  Why an arena: a
 * malloc'd megabyte per batch, freed when libzmq was done, came back from
 * the allocator as fresh pages every time.  The thread's packing is the
 * same code and order as before: events are packed in the order the cache
 * reported them, one batch at a time.
 */
#include "rpc/events.h"
#include "rpc/zparts.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include <msgpack.h>
#include <zmq.h>

#define Q_BYTES ((size_t)4 << 20)       /* the queue: ~400 128-page inserts  */
#define Q_KICK (Q_BYTES / 4)            /* wake the thread past this         */
#define Q_REC_MAX (Q_BYTES / 8)         /* a longer event is split           */
#define FLUSH_BYTES ((size_t)1 << 20)   /* a batch this big goes out now     */
#define ARENA_SLACK ((size_t)8 << 20)   /* beyond buffer_bytes: the batch in
                                           flight and a wrap's pad           */
#define POPULATE_MAX ((size_t)1 << 30)  /* touched at start at most          */

/* ---- the queue: one raw event per record ------------------------------------- */

enum { Q_PAD, Q_STORED, Q_REMOVED, Q_CLEARED, Q_ROUND, Q_STORED_B, Q_REMOVED_B };

/* Q_STORED, Q_REMOVED: pages named by their hashes (tier 2, or pages the
 * cache named itself); Q_STORED_B, Q_REMOVED_B: pool pages named by their
 * blocks, which the thread hashes (the cache's by-block hook, cache.h). */
typedef struct qrec {
    uint32_t len; /* the whole record, a multiple of 8 */
    uint8_t type, has_parent;
    char medium[10];
    uint32_t n_pages, page_tokens;
    uint64_t parent; /* _B: the parent page's block, or PC_CACHE_EV_NO_BLOCK */
    /* Q_STORED, Q_REMOVED: uint64_t hashes[n_pages];
     *                      uint32_t tokens[n_pages * page_tokens]
     * Q_STORED_B: pc_page_hash start (the chain before the first page when
     *             parent is NO_BLOCK); uint32_t blocks[n_pages] (to 8
     *             bytes); uint32_t tokens[n_pages * page_tokens]
     * Q_REMOVED_B: uint32_t blocks[n_pages] */
} qrec;
_Static_assert(sizeof(qrec) == 32, "qrec: 32 bytes, 8-aligned");

/* ---- the arena: published batches ------------------------------------------------ */

/* A published payload.  refs: one for the ring while it is kept for
 * replay, one for libzmq while it sends it (dropped from libzmq's I/O
 * thread).  An arena record's space is reused once refs is 0; a heap
 * record (the arena was full of records libzmq still held) is freed then. */
typedef struct arec {
    atomic_uint refs;
    uint16_t heap; /* malloc'd, outside the arena */
    uint16_t kept; /* in the ring (the events thread's flag) */
    uint64_t pos;  /* arena position where its space starts (a pad first) */
    size_t len;    /* payload bytes */
    char data[];
} arec;

static void arec_put(arec *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1 && r->heap)
        free(r);
}

static void arec_zmq_free(void *data, void *hint)
{
    (void)data;
    arec_put(hint);
}

/* Without replay a batch is sent from the buffer it was packed in; the
 * buffer comes back when libzmq is done (state HELD -> IDLE, from libzmq's
 * I/O thread) and packs a later batch: two or three buffers, warm, that
 * never page-fault again. */
#define PSLOTS 8
enum { PS_EMPTY, PS_HELD, PS_IDLE };

typedef struct pslot {
    atomic_int state;
    char *data;
    size_t cap;
} pslot;

static void pslot_zmq_free(void *data, void *hint)
{
    (void)data;
    atomic_store(&((pslot *)hint)->state, PS_IDLE);
}

static void buf_zmq_free(void *data, void *hint) /* every slot held */
{
    (void)hint;
    free(data);
}

typedef struct batch {
    uint64_t seq;
    arec *r; /* NULL: empty slot */
} batch;

struct pc_rpc_events {
    void *zctx, *pub, *rep;
    char topic[256];
    char endpoint[512], replay_endpoint[512];
    int format;
    int64_t rank;
    pc_cache *cache;
    int efd;               /* wakes the events thread */
    pthread_t thr;
    bool thr_up;
    atomic_bool stop;

    /* the queue: the loop writes at qhead, the thread reads at qtail */
    unsigned char *q;
    uint64_t qhead_w;      /* the loop's own copy of qhead */
    bool pushed;           /* the loop queued events since its last tick */
    _Alignas(64) atomic_uint_fast64_t qhead;
    _Alignas(64) atomic_uint_fast64_t qtail;
    atomic_bool idle;      /* the thread sleeps with nothing pending */
    atomic_bool kicked;    /* the loop woke it for a full queue */
    atomic_uint_fast64_t flush_req, flush_done;
    atomic_int flush_rc;
    atomic_uint interval_ms; /* how long a batch may gather (0: at once) */

    /* the thread's: the batch being packed, and (without replay) the
     * buffers of batches libzmq sends from, back in their slots when sent */
    msgpack_sbuffer evbuf;
    pslot slots[PSLOTS];
    msgpack_packer evpk;
    uint32_t nev;
    uint64_t *rm;
    size_t nrm, rm_cap;
    pc_page_hash *bh;      /* per pool block: its page's chain value (the
                            * by-block hook's; written and read here only) */
    uint32_t bh_cap;
    uint64_t *hlo;         /* one STORED_B's block hashes */
    size_t hlo_cap;
    char rm_medium[10];
    int nomem;
    uint64_t seq;          /* the next batch's */
    uint64_t since_ms;     /* when the pending batch began; 0: none */

    /* the thread's: the arena, its records in position order (fifo), and
     * the replay ring of kept batches */
    unsigned char *arena;
    size_t asize, populated, to_populate;
    uint64_t ahead;        /* where the next record goes */
    arec **fifo;
    size_t fcap, ffront, fn;
    batch *ring;
    uint32_t cap;
    uint64_t ring_next;    /* one past the newest kept seq */
    bool replaying;        /* a replay is going out: to rid, from rnext */
    zmq_msg_t rid;
    uint64_t rnext, rend;
    uint64_t ring_bytes, ring_max_bytes;

    /* counters: the thread's, read by the loop (STATS) */
    atomic_uint_fast64_t batches, events, bytes, send_failed, replays, replay_dropped,
        lost_pages, queue_waits;
    atomic_uint_fast64_t lost_here; /* pages the thread could not name */
};

static const char *const FORMATS[] = {"map", "array"};

const char *pc_rpc_events_format_name(int i)
{
    return i >= 0 && i < 2 ? FORMATS[i] : NULL;
}

static void wake(pc_rpc_events *e)
{
    uint64_t one = 1;
    ssize_t n = write(e->efd, &one, sizeof(one)); /* EAGAIN: already awake */
    (void)n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the loop's side: the hook ---------------------------------------------------- */

/* Room for a record of len bytes (a multiple of 8, <= Q_REC_MAX) at the
 * queue's head, a pad first when it would not fit before the end.  A full
 * queue (the thread is behind by 4 MiB of events) wakes the thread and
 * waits for it: events are never dropped, and it never happens in
 * practice (counted: events.queue_waits). */
static qrec *q_reserve(pc_rpc_events *e, size_t len)
{
    for (bool waited = false;; waited = true) {
        uint64_t head = e->qhead_w, tail = atomic_load(&e->qtail);
        size_t off = head & (Q_BYTES - 1), to_end = Q_BYTES - off;
        size_t need = len <= to_end ? len : to_end + len;
        if (Q_BYTES - (head - tail) >= need) {
            if (len > to_end) {
                qrec *pad = (qrec *)(e->q + off);
                pad->len = (uint32_t)to_end;
                pad->type = Q_PAD;
                e->qhead_w += to_end;
                off = 0;
            }
            return (qrec *)(e->q + off);
        }
        if (!waited)
            atomic_fetch_add(&e->queue_waits, 1);
        atomic_store(&e->kicked, true);
        wake(e);
        usleep(50);
    }
}

static void q_commit(pc_rpc_events *e, qrec *r)
{
    e->qhead_w += r->len;
    e->pushed = true;
    atomic_store(&e->qhead, e->qhead_w);
    if (r->type == Q_ROUND) { /* interval 0: publish it now */
        atomic_store(&e->idle, false);
        wake(e);
        return;
    }
    /* seq_cst with the thread's store of idle and load of qhead: one of
     * the two sees the other (it never sleeps on a non-empty queue). */
    if (atomic_load(&e->idle) && atomic_exchange(&e->idle, false))
        wake(e);
    else if (e->qhead_w - atomic_load(&e->qtail) > Q_KICK &&
             !atomic_exchange(&e->kicked, true))
        wake(e);
}

/* A record of len bytes with its head filled in (q_commit makes it the
 * thread's). */
static qrec *q_head(pc_rpc_events *e, size_t len, int type, const char *medium,
                    size_t n, uint32_t page_tokens, bool has_parent,
                    uint64_t parent)
{
    qrec *r = q_reserve(e, len);
    r->len = (uint32_t)len;
    r->type = (uint8_t)type;
    r->has_parent = has_parent;
    size_t ml = medium ? strnlen(medium, sizeof(r->medium) - 1) : 0;
    if (ml)
        memcpy(r->medium, medium, ml);
    r->medium[ml] = 0;
    r->n_pages = (uint32_t)n;
    r->page_tokens = page_tokens;
    r->parent = parent;
    return r;
}

#define PAD8(x) (((x) + 7) & ~(size_t)7)

static void q_push(pc_rpc_events *e, int type, const char *medium,
                   const uint64_t *h, size_t n, const uint32_t *tok,
                   uint32_t page_tokens, bool has_parent, uint64_t parent)
{
    size_t nt = tok ? n * page_tokens : 0;
    size_t len = PAD8(sizeof(qrec) + n * 8 + nt * 4);
    qrec *r = q_head(e, len, type, medium, n, page_tokens, has_parent, parent);
    unsigned char *p = (unsigned char *)(r + 1);
    if (n)
        memcpy(p, h, n * 8);
    if (nt)
        memcpy(p + n * 8, tok, nt * 4);
    q_commit(e, r);
}

static void q_push_blocks(pc_rpc_events *e, bool stored, const char *medium,
                          const uint32_t *blocks, size_t n, const uint32_t *tok,
                          uint32_t page_tokens, bool has_parent,
                          uint64_t parent, pc_page_hash start)
{
    size_t head = stored ? sizeof(start) : 0, nt = stored ? n * page_tokens : 0;
    size_t len = sizeof(qrec) + head + PAD8(n * 4) + PAD8(nt * 4);
    qrec *r = q_head(e, len, stored ? Q_STORED_B : Q_REMOVED_B, medium, n,
                     page_tokens, has_parent, parent);
    unsigned char *p = (unsigned char *)(r + 1);
    memcpy(p, &start, head);
    memcpy(p + head, blocks, n * 4);
    if (nt)
        memcpy(p + head + PAD8(n * 4), tok, nt * 4);
    q_commit(e, r);
}

/* The cache's hook: each event as one record, or several when it is longer
 * than a record allows, each STORED part chained on from the last page of
 * the part before (its hash; with a by-block event, its block, which the
 * thread will have hashed by then). */
static void on_event(void *ctx, const pc_cache_event *ev)
{
    pc_rpc_events *e = ctx;
    if (ev->type == PC_CACHE_EV_CLEARED) {
        q_push(e, Q_CLEARED, NULL, NULL, 0, NULL, 0, false, 0);
        return;
    }
    bool stored = ev->type == PC_CACHE_EV_STORED, by_block = ev->blocks;
    uint32_t P = stored ? ev->page_tokens : 0;
    size_t per = by_block ? (Q_REC_MAX - sizeof(qrec) - sizeof(pc_page_hash) - 16) /
                                (4 + 4 * (size_t)P)
                          : (Q_REC_MAX - sizeof(qrec)) / (8 + 4 * (size_t)P);
    const uint32_t *tok = stored ? ev->tokens + ev->first_page * P : NULL;
    bool has_parent = stored && ev->has_parent;
    uint64_t parent = by_block ? ev->parent_block : ev->parent;
    for (size_t i = 0; i < ev->n_pages; i += per) {
        size_t n = ev->n_pages - i < per ? ev->n_pages - i : per;
        const uint32_t *t = tok ? tok + i * P : NULL;
        if (by_block)
            q_push_blocks(e, stored, ev->medium, ev->blocks + i, n, t, P,
                          has_parent, parent, ev->start);
        else
            q_push(e, stored ? Q_STORED : Q_REMOVED, ev->medium, ev->hashes + i,
                   n, t, P, has_parent, parent);
        has_parent = stored;
        parent = by_block ? ev->blocks[i + n - 1] : ev->hashes[i + n - 1];
    }
}

/* ---- the thread's side: packing ---------------------------------------------------- */

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
static void pack_hashes(pc_rpc_events *e, const unsigned char *h, size_t n)
{
    msgpack_pack_array(&e->evpk, n);
    unsigned char *p = room(e, n * 9 + 8);
    if (!p)
        return;
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, h + i * 8, 8);
        v = __builtin_bswap64(v);
        p[i * 9] = 0xcf;
        memcpy(p + i * 9 + 1, &v, 8);
    }
    e->evbuf.size += n * 9;
}

/* Token ids as msgpack uint32 (0xce and 4 bytes big-endian), every one in
 * that one form: a fixed stride packs several times faster than picking
 * each id's shortest form (measured: 0.28 ns a token with the shuffle
 * below, against 1.0-1.5 for a vectorised shortest form and 3-5 for
 * msgpack-c's), and every msgpack decoder reads any integer width.  One 8-byte store per token (the 3
 * bytes past its 5 are overwritten by the next; room keeps 8 spare). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "pack_tokens stores its encodings as little-endian words");

static void pack_tokens_scalar(unsigned char *p, const unsigned char *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, t + i * 4, 4);
        uint64_t w = 0xceu | (uint64_t)__builtin_bswap32(v) << 8;
        memcpy(p + i * 5, &w, 8);
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
/* Four tokens (16 bytes) -> 20: one shuffle puts three of them, byte-
 * swapped behind their 0xce, and the fourth's 0xce in 16 bytes; the
 * fourth's 4 bytes follow.  ~4x the scalar loop. */
__attribute__((target("ssse3"))) static void
pack_tokens_ssse3(unsigned char *p, const unsigned char *t, size_t n)
{
    const __m128i shuf = _mm_setr_epi8(-1, 3, 2, 1, 0, -1, 7, 6, 5, 4, -1, 11,
                                       10, 9, 8, -1);
    const __m128i tag = _mm_setr_epi8((char)0xce, 0, 0, 0, 0, (char)0xce, 0,
                                      0, 0, 0, (char)0xce, 0, 0, 0, 0,
                                      (char)0xce);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m128i v = _mm_loadu_si128((const __m128i *)(t + i * 4));
        _mm_storeu_si128((__m128i *)(p + i * 5),
                         _mm_or_si128(_mm_shuffle_epi8(v, shuf), tag));
        uint32_t w;
        memcpy(&w, t + i * 4 + 12, 4);
        w = __builtin_bswap32(w);
        memcpy(p + i * 5 + 16, &w, 4);
    }
    pack_tokens_scalar(p + i * 5, t + i * 4, n - i);
}
#endif

static void pack_tokens(pc_rpc_events *e, const unsigned char *t, size_t n)
{
    unsigned char *p = room(e, n * 5 + 8);
    if (!p)
        return;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("ssse3"))
        pack_tokens_ssse3(p, t, n);
    else
#endif
        pack_tokens_scalar(p, t, n);
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
    pack_hashes(e, (const unsigned char *)e->rm, e->nrm);
    pack_key(e, "medium");
    pack_cstr(pk, e->rm_medium);
    e->nrm = 0;
}

/* Room for n more hashes in the pending REMOVED run of medium (NULL, and
 * the batch marked lost, without memory); a run of another medium goes
 * out first.  The caller fills them and counts them in nrm. */
static uint64_t *rm_room(pc_rpc_events *e, const char *medium, size_t n)
{
    if (e->nrm && strcmp(e->rm_medium, medium))
        rm_pack(e);
    if (e->nrm + n > e->rm_cap) {
        size_t cap = e->rm_cap ? e->rm_cap : 64;
        while (cap < e->nrm + n)
            cap *= 2;
        uint64_t *g = realloc(e->rm, cap * sizeof(*g));
        if (!g) {
            e->nomem = 1;
            return NULL;
        }
        e->rm = g;
        e->rm_cap = cap;
    }
    memcpy(e->rm_medium, medium, sizeof(e->rm_medium));
    return e->rm + e->nrm;
}

/* BlockStored: the fields of vLLM's, in its order (the array form is
 * positional: older consumers know seven fields, so no lora_name).  h: n
 * hashes as little-endian uint64; tok: n * P token ids. */
static void pack_stored(pc_rpc_events *e, const char *medium,
                        const unsigned char *h, size_t n, bool has_parent,
                        uint64_t parent, const unsigned char *tok, uint32_t P)
{
    msgpack_packer *pk = &e->evpk;
    bool map = e->format == PC_KV_EVENTS_MAP;
    pack_head(e, "BlockStored", map ? 7 : 6);
    pack_key(e, "block_hashes");
    pack_hashes(e, h, n);
    pack_key(e, "parent_block_hash");
    if (has_parent)
        msgpack_pack_uint64(pk, parent);
    else
        msgpack_pack_nil(pk);
    pack_key(e, "token_ids");
    size_t nt = n * P;
    msgpack_pack_array(pk, nt);
    pack_tokens(e, tok, nt);
    pack_key(e, "block_size");
    msgpack_pack_uint32(pk, P);
    pack_key(e, "lora_id");
    msgpack_pack_nil(pk);
    pack_key(e, "medium");
    pack_cstr(pk, medium);
    if (map) {
        pack_key(e, "lora_name");
        msgpack_pack_nil(pk);
    }
}

/* Are blocks b[0..n) (and parent, unless NO_BLOCK) in the table?  The
 * cache's blocks always are; a record that is not cannot be named (its
 * pages counted lost) rather than read or write past the table. */
static bool in_table(pc_rpc_events *e, const uint32_t *b, size_t n, uint64_t parent)
{
    bool ok = parent == PC_CACHE_EV_NO_BLOCK || parent < e->bh_cap;
    for (size_t i = 0; ok && i < n; i++)
        ok = b[i] < e->bh_cap;
    if (!ok)
        atomic_fetch_add(&e->lost_here, n);
    return ok;
}

/* Q_STORED_B: the pages' chain values, from their parent's (kept here
 * when its STORED went by) or the record's start, each kept for the
 * block's later events (before anything can fail: a later record chains
 * on from them), then packed as a STORED. */
static void pack_stored_blocks(pc_rpc_events *e, const qrec *r)
{
    size_t n = r->n_pages;
    uint32_t P = r->page_tokens;
    const unsigned char *p = (const unsigned char *)(r + 1);
    const uint32_t *blk = (const uint32_t *)(const void *)(p + sizeof(pc_page_hash));
    const uint32_t *tok = (const uint32_t *)(const void *)(p + sizeof(pc_page_hash) +
                                                           PAD8(n * 4));
    if (!in_table(e, blk, n, r->has_parent ? r->parent : PC_CACHE_EV_NO_BLOCK))
        return;
    pc_page_hash start, h, part[64];
    memcpy(&start, p, sizeof(start));
    if (r->has_parent && r->parent != PC_CACHE_EV_NO_BLOCK)
        start = e->bh[r->parent];
    h = start;
    for (size_t i = 0; i < n; i += 64) {
        size_t m = n - i < 64 ? n - i : 64;
        pc_page_hash_chain_from(h, tok + i * P, m, P, part);
        for (size_t j = 0; j < m; j++)
            e->bh[blk[i + j]] = part[j];
        h = part[m - 1];
    }
    if (n > e->hlo_cap) {
        uint64_t *lo = realloc(e->hlo, n * sizeof(*lo));
        if (!lo) {
            e->nomem = 1;
            return;
        }
        e->hlo = lo;
        e->hlo_cap = n;
    }
    for (size_t i = 0; i < n; i++)
        e->hlo[i] = e->bh[blk[i]].lo;
    pack_stored(e, r->medium, (const unsigned char *)e->hlo, n, r->has_parent,
                start.lo, (const unsigned char *)tok, P);
}

/* One queued event into the pending batch: runs of REMOVED of one medium
 * merge into one event. */
static void pack_event(pc_rpc_events *e, const qrec *r)
{
    const unsigned char *h = (const unsigned char *)(r + 1);
    if (!e->since_ms)
        e->since_ms = now_ms() | 1; /* never 0: 0 means "none pending" */
    if (r->type == Q_REMOVED || r->type == Q_REMOVED_B) {
        uint64_t *out = rm_room(e, r->medium, r->n_pages);
        if (!out)
            return;
        if (r->type == Q_REMOVED) {
            memcpy(out, h, (size_t)r->n_pages * 8);
        } else { /* the hashes their STORED left here */
            const uint32_t *blk = (const uint32_t *)(const void *)h;
            if (!in_table(e, blk, r->n_pages, PC_CACHE_EV_NO_BLOCK))
                return;
            for (size_t i = 0; i < r->n_pages; i++)
                out[i] = e->bh[blk[i]].lo;
        }
        e->nrm += r->n_pages;
        return;
    }
    rm_pack(e);
    if (r->type == Q_CLEARED)
        pack_head(e, "AllBlocksCleared", 0);
    else if (r->type == Q_STORED_B)
        pack_stored_blocks(e, r);
    else
        pack_stored(e, r->medium, h, r->n_pages, r->has_parent, r->parent,
                    h + (size_t)r->n_pages * 8, r->page_tokens);
}

/* ---- the thread's side: the arena ------------------------------------------------- */

/* Reuse the space of the oldest records libzmq and the ring are done with. */
static void arena_reclaim(pc_rpc_events *e)
{
    while (e->fn && atomic_load(&e->fifo[e->ffront]->refs) == 0) {
        e->ffront = (e->ffront + 1) % e->fcap;
        e->fn--;
    }
}

static uint64_t arena_tail(const pc_rpc_events *e)
{
    return e->fn ? e->fifo[e->ffront]->pos : e->ahead;
}

/* Drop the oldest kept batch from the ring (its space goes once libzmq is
 * done with it): false when there is none. */
static bool ring_drop_oldest(pc_rpc_events *e)
{
    uint64_t lo = e->ring_next > e->cap ? e->ring_next - e->cap : 0;
    for (uint64_t s = lo; e->ring && s < e->ring_next; s++) {
        batch *x = &e->ring[s % e->cap];
        if (x->r && x->seq == s) {
            e->ring_bytes -= x->r->len;
            x->r->kept = 0;
            arec_put(x->r);
            x->r = NULL;
            atomic_fetch_add(&e->replay_dropped, 1);
            return true;
        }
    }
    return false;
}

/* A record for len payload bytes: in the arena when it has room (the
 * oldest kept batches give theirs up), else on the heap (libzmq still
 * holds the oldest record: a subscriber far behind).  NULL: no memory. */
static arec *arena_alloc(pc_rpc_events *e, size_t len)
{
    size_t span = (sizeof(arec) + len + 7) & ~(size_t)7;
    while (e->arena && span <= e->asize / 2) {
        arena_reclaim(e);
        uint64_t head = e->ahead, tail = arena_tail(e);
        size_t off = head % e->asize, to_end = e->asize - off;
        size_t need = span <= to_end ? span : to_end + span;
        if (e->asize - (head - tail) < need) {
            arec *f = e->fifo[e->ffront]; /* fn > 0: the arena is not empty */
            if (!f->kept || atomic_load(&f->refs) > 1)
                break; /* libzmq holds it: the heap, this time */
            while (f->kept && ring_drop_oldest(e))
                ;
            if (f->kept) /* a kept record is in the ring: cannot be; no spin */
                break;
            continue;
        }
        if (e->fn == e->fcap) { /* the fifo grows */
            size_t nc = e->fcap ? e->fcap * 2 : 1024;
            arec **g = malloc(nc * sizeof(*g));
            if (!g)
                break;
            for (size_t i = 0; i < e->fn; i++)
                g[i] = e->fifo[(e->ffront + i) % e->fcap];
            free(e->fifo);
            e->fifo = g;
            e->fcap = nc;
            e->ffront = 0;
        }
        if (span > to_end) /* after a pad: pos, where the pad starts, counts it */
            off = 0;
        arec *r = (arec *)(e->arena + off);
        atomic_init(&r->refs, 0);
        r->heap = r->kept = 0;
        r->pos = head;
        r->len = len;
        e->ahead = head + need;
        e->fifo[(e->ffront + e->fn) % e->fcap] = r;
        e->fn++;
        return r;
    }
    arec *r = malloc(sizeof(*r) + len);
    if (r) {
        atomic_init(&r->refs, 0);
        r->heap = 1;
        r->kept = 0;
        r->len = len;
        r->pos = 0;
    }
    return r;
}

/* ---- the thread's side: publishing ----------------------------------------------- */

static void be64(uint64_t v, unsigned char b[8])
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)v;
}

/* A slot for the batch buffer libzmq is about to send (NULL: all are in
 * use; the buffer is then freed when sent). */
static pslot *slot_hold(pc_rpc_events *e, char *data, size_t cap)
{
    for (int i = 0; i < PSLOTS; i++)
        if (atomic_load(&e->slots[i].state) == PS_EMPTY) {
            e->slots[i].data = data;
            e->slots[i].cap = cap;
            atomic_store(&e->slots[i].state, PS_HELD);
            return &e->slots[i];
        }
    return NULL;
}

/* The next batch packs into a buffer libzmq has given back, if any. */
static void slot_refill(pc_rpc_events *e)
{
    e->evbuf.data = NULL;
    e->evbuf.alloc = e->evbuf.size = 0;
    for (int i = 0; i < PSLOTS; i++)
        if (atomic_load(&e->slots[i].state) == PS_IDLE) {
            e->evbuf.data = e->slots[i].data;
            e->evbuf.alloc = e->slots[i].cap;
            atomic_store(&e->slots[i].state, PS_EMPTY);
            return;
        }
}

/* Publish the pending batch, if any: 0, or PC_E_NOMEM (the batch is lost,
 * the sequence number still moves on so that subscribers see a gap). */
static int publish(pc_rpc_events *e)
{
    rm_pack(e);
    if (e->nev == 0 && !e->nomem)
        return 0;
    int rc = 0;
    uint64_t seq = e->seq++;
    if (e->rank >= 0)
        msgpack_pack_int64(&e->evpk, e->rank);
    else
        msgpack_pack_nil(&e->evpk);
    if (e->nomem) {
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
    /* What libzmq sends without a copy: with replay, the batch's copy in
     * the arena (the ring keeps it); without, the batch buffer itself,
     * which comes back to a slot when libzmq is done with it. */
    arec *r = NULL;
    pslot *sl = NULL;
    void *data = e->evbuf.data, *hint = NULL;
    size_t len = e->evbuf.size;
    zmq_free_fn *ffn;
    if (e->ring) {
        if (!(r = arena_alloc(e, len))) {
            rc = PC_E_NOMEM;
            goto done;
        }
        memcpy(r->data, e->evbuf.data, len);
        r->kept = 1;
        atomic_store(&r->refs, 2u); /* the ring's, libzmq's */
        data = r->data;
        ffn = arec_zmq_free;
        hint = r;
    } else {
        sl = slot_hold(e, e->evbuf.data, e->evbuf.alloc);
        ffn = sl ? pslot_zmq_free : buf_zmq_free;
        hint = sl;
        slot_refill(e); /* the next batch's buffer */
    }
    /* counted before it goes: a subscriber never sees a batch STATS does
     * not count yet */
    atomic_fetch_add(&e->batches, 1);
    atomic_fetch_add(&e->events, e->nev);
    atomic_fetch_add(&e->bytes, len);
    unsigned char sb[8];
    be64(seq, sb);
    /* PUB drops rather than blocks (its high-water mark): a failed send
     * is a batch the subscribers will see missing.  libzmq takes its
     * reference with the last frame, and drops it when done. */
    zmq_msg_t m;
    if (zmq_send(e->pub, e->topic, strlen(e->topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(e->pub, sb, 8, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_init_data(&m, data, len, ffn, hint) != 0) {
        atomic_fetch_add(&e->send_failed, 1);
        ffn(data, hint); /* libzmq never took it */
    } else if (zmq_msg_send(&m, e->pub, ZMQ_DONTWAIT) < 0) {
        atomic_fetch_add(&e->send_failed, 1);
        zmq_msg_close(&m); /* drops libzmq's reference */
    }
    if (e->ring) {
        batch *o = &e->ring[seq % e->cap];
        if (o->r) { /* seq - cap: past the count bound */
            e->ring_bytes -= o->r->len;
            o->r->kept = 0;
            arec_put(o->r);
        }
        o->seq = seq;
        o->r = r;
        e->ring_bytes += r->len;
        e->ring_next = seq + 1;
        /* The byte bound: drop the oldest kept batches (never this one);
         * a replay then starts later, as if they had aged out. */
        while (e->ring_bytes > e->ring_max_bytes && e->ring_bytes > r->len &&
               ring_drop_oldest(e))
            ;
    }
done:
    msgpack_sbuffer_clear(&e->evbuf);
    e->nev = 0;
    e->nrm = 0;
    e->nomem = 0;
    e->since_ms = 0;
    return rc;
}

/* Pack everything queued; a batch that reaches 1 MiB goes out at once. */
static void drain(pc_rpc_events *e)
{
    uint64_t tail = atomic_load(&e->qtail), head = atomic_load(&e->qhead);
    while (tail != head) {
        const qrec *r = (const qrec *)(e->q + (tail & (Q_BYTES - 1)));
        int type = r->type;
        if (type != Q_PAD && type != Q_ROUND)
            pack_event(e, r);
        tail += r->len;
        atomic_store(&e->qtail, tail);
        if (type == Q_ROUND && atomic_load(&e->interval_ms) == 0)
            publish(e); /* the round's batch */
        if (e->evbuf.size + e->nrm * 9 >= FLUSH_BYTES)
            publish(e);
        if (tail == head)
            head = atomic_load(&e->qhead);
    }
    atomic_store(&e->kicked, false);
}

/* ---- the thread's side: replay --------------------------------------------------- */

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

/* A replay goes out a megabyte at a time between the thread's other work
 * (a replay of the whole ring would otherwise hold publishing up for as
 * long as copying hundreds of megabytes takes, and the loop's queue
 * behind it); the requests after it wait in the socket.  What the byte
 * bound drops meanwhile ahead of the cursor is skipped, as if it had aged
 * out before the request.  It ends at the newest batch kept when it came:
 * the requester gets the later ones live. */
#define REPLAY_STEP_BYTES ((size_t)1 << 20)

static void replay_step(pc_rpc_events *e)
{
    uint64_t lo = e->ring_next > e->cap ? e->ring_next - e->cap : 0;
    size_t sent = 0;
    uint64_t s = e->rnext > lo ? e->rnext : lo;
    /* seq s sits in ring[s % cap] while it is among the last cap */
    for (; s < e->rend && sent < REPLAY_STEP_BYTES; s++) {
        batch *bt = &e->ring[s % e->cap];
        if (!bt->r || bt->seq != s)
            continue; /* a batch that could not be kept */
        unsigned char sb[8];
        be64(s, sb);
        if (send3(e->rep, &e->rid, sb, bt->r->data, bt->r->len) < 0) {
            s = e->rend; /* the requester is gone: end it */
            break;
        }
        sent += bt->r->len;
    }
    e->rnext = s;
    if (s < e->rend)
        return; /* more next time round */
    unsigned char end[8];
    be64(UINT64_MAX, end); /* -1 as a signed 64-bit big-endian */
    send3(e->rep, &e->rid, end, "", 0);
    zmq_msg_close(&e->rid);
    e->replaying = false;
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
        zmq_msg_init(&e->rid);
        zmq_msg_move(&e->rid, &part[0]);
        e->rnext = start;
        e->rend = e->ring_next; /* what was kept when it asked; later
                                   batches it gets live */
        e->replaying = true;
        replay_step(e);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

/* ---- the events thread ------------------------------------------------------------- */

/* Touch the arena once (4 MiB at a time between batches, the first GiB at
 * most), before batches need it: publishing then never waits on the kernel
 * for fresh pages. */
static void populate(pc_rpc_events *e)
{
    size_t n = e->to_populate - e->populated;
    n = n < ((size_t)4 << 20) ? n : (size_t)4 << 20;
    unsigned char *p = e->arena + e->populated;
    e->populated += n;
#ifdef MADV_POPULATE_WRITE
    if (madvise(p, n, MADV_POPULATE_WRITE) == 0)
        return;
#endif
    for (size_t i = 0; i < n; i += 4096) /* an older kernel: touch it */
        ((volatile unsigned char *)p)[i] = 0;
}

static void *events_main(void *arg)
{
    pc_rpc_events *e = arg;
    while (!atomic_load(&e->stop)) {
        /* a flush asked for covers what was queued before it: read first */
        uint64_t fr = atomic_load(&e->flush_req);
        drain(e);
        uint64_t now = now_ms();
        uint32_t iv = atomic_load(&e->interval_ms);
        if (fr != atomic_load(&e->flush_done) ||
            (e->since_ms && iv && now >= e->since_ms + iv)) {
            int rc = publish(e);
            if (fr != atomic_load(&e->flush_done)) {
                atomic_store(&e->flush_rc, rc);
                atomic_store(&e->flush_done, fr);
            }
        }
        int timeout = -1;
        if (e->populated < e->to_populate) {
            populate(e); /* a slice at a time, between batches */
            timeout = 0;
        } else if (e->since_ms && iv) {
            now = now_ms();
            timeout = now >= e->since_ms + iv ? 0 : (int)(e->since_ms + iv - now);
        } else if (!e->since_ms) {
            atomic_store(&e->idle, true);
            if (atomic_load(&e->qhead) != atomic_load(&e->qtail) ||
                atomic_load(&e->flush_req) != atomic_load(&e->flush_done) ||
                atomic_load(&e->stop)) {
                atomic_store(&e->idle, false);
                continue;
            }
        }
        if (e->replaying)
            timeout = 0; /* its next megabyte, after a look at the rest */
        zmq_pollitem_t it[2] = {{NULL, e->efd, ZMQ_POLLIN, 0},
                                {e->rep, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(it, e->rep && !e->replaying ? 2 : 1, timeout);
        atomic_store(&e->idle, false);
        if (rc > 0 && (it[0].revents & ZMQ_POLLIN)) {
            uint64_t v;
            ssize_t r = read(e->efd, &v, sizeof(v));
            (void)r;
        }
        if (e->replaying)
            replay_step(e);
        else if (rc > 0 && e->rep && (it[1].revents & ZMQ_POLLIN))
            replay_one(e);
    }
    return NULL;
}

/* ---- the loop's side: flush, tick, stats --------------------------------------------- */

int pc_rpc_events_flush(pc_rpc_events *e)
{
    if (!e)
        return PC_E_INVAL;
    if (e->cache)
        atomic_store(&e->lost_pages, pc_cache_events_lost(e->cache));
    uint64_t want = atomic_fetch_add(&e->flush_req, 1) + 1;
    wake(e);
    /* the thread packs and sends what is queued: milliseconds at most */
    for (int i = 0; atomic_load(&e->flush_done) < want; i++) {
        if (i == 100000) /* 10 s: it is stuck (it never is) */
            return PC_E_TIMEOUT;
        usleep(100);
    }
    return atomic_load(&e->flush_rc);
}

int pc_rpc_events_tick(pc_rpc_events *e)
{
    if (!e)
        return PC_E_INVAL;
    if (e->cache)
        atomic_store(&e->lost_pages, pc_cache_events_lost(e->cache));
    /* interval 0: one batch per round, as the loop's rounds end */
    if (e->pushed && atomic_load(&e->interval_ms) == 0)
        q_push(e, Q_ROUND, NULL, NULL, 0, NULL, 0, false, 0);
    e->pushed = false;
    return 0;
}

void pc_rpc_events_set_interval(pc_rpc_events *e, uint32_t ms)
{
    if (e) {
        atomic_store(&e->interval_ms, ms);
        if (ms == 0) /* what is pending goes now */
            q_push(e, Q_ROUND, NULL, NULL, 0, NULL, 0, false, 0);
        wake(e); /* a pending batch's due time moves */
    }
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
    e->efd = -1;
    snprintf(e->topic, sizeof(e->topic), "%s", cfg->topic);
    e->format = cfg->format;
    e->rank = cfg->dp_rank;
    atomic_init(&e->interval_ms, cfg->interval_ms);
    e->ring_max_bytes = cfg->buffer_bytes ? cfg->buffer_bytes : UINT64_MAX;
    msgpack_sbuffer_init(&e->evbuf);
    msgpack_packer_init(&e->evpk, &e->evbuf, msgpack_sbuffer_write);
    bool replay = cfg->replay_endpoint && cfg->replay_endpoint[0];
    /* the arena: the kept bytes and room for the batches in flight (no
     * bound on the kept bytes: heap records only) */
    e->asize = !replay ? 0
               : cfg->buffer_bytes && cfg->buffer_bytes <= SIZE_MAX / 2
                   ? ((size_t)cfg->buffer_bytes + ARENA_SLACK + 4095) & ~(size_t)4095
                   : 0;
    int rc = PC_E_NOMEM;
    /* touched now: the loop never page-faults on it */
    e->q = mmap(NULL, Q_BYTES, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (e->q == MAP_FAILED) {
        e->q = NULL;
        goto fail;
    }
    if (e->asize) {
        e->arena = mmap(NULL, e->asize, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (e->arena == MAP_FAILED) {
            e->arena = NULL;
            goto fail;
        }
        e->to_populate = e->asize < POPULATE_MAX ? e->asize : POPULATE_MAX;
    }
    rc = PC_E_IO;
    if ((e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        goto fail;
    if (!(e->zctx = zmq_ctx_new()))
        goto fail;
    if ((rc = open_sock(e, cfg, ZMQ_PUB, cfg->endpoint, &e->pub, e->endpoint,
                        sizeof(e->endpoint))))
        goto fail;
    if (replay) {
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
    }
    /* the sockets are the thread's from here (thread creation is the
     * full barrier libzmq asks of a socket that changes threads) */
    rc = PC_E_IO;
    if (pthread_create(&e->thr, NULL, events_main, e) != 0)
        goto fail;
    e->thr_up = true;
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
    if (!c)
        return;
    /* The thread hashes pool pages and keeps each block's chain value
     * (16 bytes a block, touched as blocks are used): the loop does not.
     * A table is replaced only once the thread is done with the old one;
     * without a table the cache names the pages itself. */
    pc_cache_desc d;
    pc_cache_describe(c, &d);
    if (e->bh && e->bh_cap < d.capacity && pc_rpc_events_flush(e) == 0) {
        free(e->bh);
        e->bh = NULL;
        e->bh_cap = 0;
    }
    if (!e->bh && (e->bh = calloc(d.capacity ? d.capacity : 1, sizeof(*e->bh))))
        e->bh_cap = d.capacity;
    if (e->bh && e->bh_cap >= d.capacity)
        pc_cache_set_event_fn_by_block(c, on_event, e);
    else
        pc_cache_set_event_fn(c, on_event, e);
}

void pc_rpc_events_destroy(pc_rpc_events *e)
{
    if (!e)
        return;
    if (e->thr_up) {
        atomic_store(&e->stop, true);
        wake(e);
        pthread_join(e->thr, NULL);
    }
    if (e->replaying)
        zmq_msg_close(&e->rid);
    if (e->pub)
        zmq_close(e->pub);
    if (e->rep)
        zmq_close(e->rep);
    if (e->zctx)
        zmq_ctx_term(e->zctx); /* libzmq drops its references here */
    for (uint32_t i = 0; e->ring && i < e->cap; i++)
        arec_put(e->ring[i].r);
    for (int i = 0; i < PSLOTS; i++) /* libzmq gave every one back */
        if (atomic_load(&e->slots[i].state) == PS_IDLE)
            free(e->slots[i].data);
    if (e->efd >= 0)
        close(e->efd);
    if (e->q)
        munmap(e->q, Q_BYTES);
    if (e->arena)
        munmap(e->arena, e->asize);
    free(e->fifo);
    free(e->ring);
    free(e->rm);
    free(e->bh);
    free(e->hlo);
    msgpack_sbuffer_destroy(&e->evbuf);
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
    memset(out, 0, sizeof(*out));
    if (!e)
        return;
    pc_rpc_events *m = (pc_rpc_events *)e; /* atomics: loads only */
    out->batches = atomic_load(&m->batches);
    out->events = atomic_load(&m->events);
    out->bytes = atomic_load(&m->bytes);
    out->send_failed = atomic_load(&m->send_failed);
    out->replays = atomic_load(&m->replays);
    out->replay_dropped = atomic_load(&m->replay_dropped);
    out->lost_pages = atomic_load(&m->lost_pages) + atomic_load(&m->lost_here);
    out->queue_waits = atomic_load(&m->queue_waits);
}

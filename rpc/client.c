/*
 * rpc/client.c - libprefixcache: the C client of prefixcached.
 *
 *   engine thread                      pc_client                   prefixcached
 *   ─────────────                      ─────────                   ────────────
 *   pc_client_lookup() ──encode──► sbuf ─► DEALER ═[ "" | payload ]═► ROUTER
 *          ▲                                 │   (empty delimiter: the wire
 *          │                                 │    looks like REQ's)
 *          │                                 ▼
 *          └─decode◄─ last frame ◄── DEALER ◄═[ "" | reply ]═══════════ ROUTER
 *                         │                      (envelope echoed)
 *                         ├── id == call's id ─────────► the answer
 *                         ├── id of a pipelined request ► stash (FIFO), for
 *                         │                               pc_client_recv()
 *                         └── any other id ────────────► dropped: the late
 *                                                         reply of a call
 *                                                         that timed out
 *
 *   pipelined:  send_lookup/send_insert ─► pending[id -> op]
 *               (at most PC_CLIENT_WINDOW on the wire: past that, replies
 *                are read into the stash before more requests go out)
 *               pc_client_recv ─► stash first, then the socket, in arrival
 *                                 order; decoded by the op that was sent
 *
 *   hello (backend "host") ─► pc_pool_map(shm_name, shm_bytes)
 *               pc_client_block(id) = base + id * block_bytes
 *
 * Socket options, and why:
 *   ZMQ_LINGER 0     close never waits for undelivered requests.
 *   ZMQ_IMMEDIATE 1  a request is only queued on a live connection: while
 *                    the daemon is down, a call waits for POLLOUT until its
 *                    deadline and fails with PC_E_TIMEOUT, and nothing is
 *                    left queued that a daemon started later would execute
 *                    out of context (a pin nobody waits for).
 *   ZMQ_RCVHWM 0     ROUTER drops replies to a peer whose pipe is full; an
 *                    unlimited receive queue on our side keeps that pipe
 *                    drained for deep pipelines.
 * One deadline covers the whole call (waiting to send + waiting for the
 * reply), measured on CLOCK_MONOTONIC and enforced with zmq_poll.
 *
 * Memory: one sbuffer for requests, one decoder for replies, id buffers that
 * grow to the largest reply seen.  The reply message stays alive while it is
 * decoded (msgpack objects borrow from it) and is closed before a call
 * returns; everything handed to the caller is a copy in a client buffer.
 */
#include "rpc/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "blockpool/blockpool.h"

#define PC_CLIENT_TIMEOUT_DEFAULT 5000
/* Pipelined requests on the wire at most: well under ROUTER's default send
 * queue of 1000 replies per peer (see send_pipelined). */
#define PC_CLIENT_WINDOW 256

typedef struct pc__pending {
    uint64_t id;
    int op;          /* PC_OP_LOOKUP or PC_OP_INSERT */
} pc__pending;

struct pc_client {
    void *ctx, *sock;
    char *endpoint;
    int timeout_ms;
    uint64_t next_id;
    char err[512];

    msgpack_sbuffer sb;
    msgpack_packer pk;
    pc_decoder dec;
    zmq_msg_t reply;   /* the payload being decoded (objects borrow it) */
    bool have_reply;

    /* result buffers, valid until the next call */
    uint32_t *blk, *ablk, *canon;
    size_t blk_cap, ablk_cap, canon_cap;
    char *txt;          /* NUL-terminated copies for callbacks        */
    size_t txt_cap;

    /* from hello */
    bool have_layout;
    uint32_t page_tokens;
    uint64_t max_msg;
    void *pool;         /* mapped host pool, or NULL                  */
    uint64_t pool_bytes, block_bytes, pool_blocks;

    /* pipelined requests in flight, and their replies that arrived during a
     * blocking call (kept so that pc_client_recv still sees them) */
    pc__pending *pend;
    size_t n_pend, pend_cap;
    zmq_msg_t *stash;
    size_t stash_head, n_stash, stash_cap; /* ring buffer */
};

/* ---- small helpers ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(pc_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return code;
}

static int zmq_code(void)
{
    return errno == ENOMEM ? PC_E_NOMEM : PC_E_IO;
}

/* Namespaces are bytes.  msgpack's str is meant to be UTF-8 (strict
 * decoders in other languages reject anything else), so a namespace goes
 * as str when it is valid UTF-8, which keeps dumps readable, and as bin
 * otherwise; the daemon accepts both and compares the bytes only. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t k;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            k = 1, cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            k = 2, cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            k = 3, cp = b & 0x07;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
            (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static void pack_ns(msgpack_packer *pk, const void *ns, size_t len)
{
    pc_pack_cstr(pk, "ns");
    if (utf8_ok(ns, len)) {
        msgpack_pack_str(pk, len);
        if (len)
            msgpack_pack_str_body(pk, ns, len);
    } else {
        msgpack_pack_bin(pk, len);
        if (len)
            msgpack_pack_bin_body(pk, ns, len);
    }
}

/* Start a request: {op, id, <fields more>}; returns the id. */
static uint64_t begin(pc_client *c, int op, size_t fields)
{
    uint64_t id = c->next_id++;
    msgpack_sbuffer_clear(&c->sb);
    msgpack_pack_map(&c->pk, 2 + fields);
    pc_pack_kv_str(&c->pk, "op", pc_op_name(op));
    pc_pack_kv_u64(&c->pk, "id", id);
    return id;
}

static void reply_done(pc_client *c)
{
    if (c->have_reply) {
        zmq_msg_close(&c->reply);
        c->have_reply = false;
    }
}

/* A NUL-terminated copy of n bytes in the client's text buffer. */
static const char *text(pc_client *c, const char *s, size_t n, size_t at)
{
    if (at + n + 1 > c->txt_cap) {
        size_t cap = (at + n + 1) * 2;
        char *t = realloc(c->txt, cap);
        if (!t)
            return NULL;
        c->txt = t;
        c->txt_cap = cap;
    }
    if (n)
        memcpy(c->txt + at, s, n);
    c->txt[at + n] = 0;
    return c->txt + at;
}

/* ---- pending table and stash ------------------------------------------------ */

static int pend_add(pc_client *c, uint64_t id, int op)
{
    if (c->n_pend == c->pend_cap) {
        size_t cap = c->pend_cap ? c->pend_cap * 2 : 16;
        pc__pending *p = realloc(c->pend, cap * sizeof(*p));
        if (!p)
            return PC_E_NOMEM;
        c->pend = p;
        c->pend_cap = cap;
    }
    c->pend[c->n_pend++] = (pc__pending){id, op};
    return 0;
}

static long pend_find(const pc_client *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].id == id)
            return (long)i;
    return -1;
}

static void pend_del(pc_client *c, size_t i)
{
    c->pend[i] = c->pend[--c->n_pend]; /* order does not matter */
}

/* Move msg into the stash.  Bounded by the requests the caller has in
 * flight: only replies of pending ids are stashed. */
static int stash_push(pc_client *c, zmq_msg_t *msg)
{
    if (c->n_stash == c->stash_cap) {
        size_t cap = c->stash_cap ? c->stash_cap * 2 : 8;
        zmq_msg_t *s = malloc(cap * sizeof(*s));
        if (!s)
            return PC_E_NOMEM;
        for (size_t i = 0; i < c->n_stash; i++) {
            zmq_msg_init(&s[i]);
            zmq_msg_move(&s[i], &c->stash[(c->stash_head + i) % c->stash_cap]);
            zmq_msg_close(&c->stash[(c->stash_head + i) % c->stash_cap]);
        }
        free(c->stash);
        c->stash = s;
        c->stash_cap = cap;
        c->stash_head = 0;
    }
    zmq_msg_t *slot = &c->stash[(c->stash_head + c->n_stash) % c->stash_cap];
    zmq_msg_init(slot);
    zmq_msg_move(slot, msg);
    c->n_stash++;
    return 0;
}

static void stash_pop(pc_client *c, zmq_msg_t *out)
{
    zmq_msg_t *slot = &c->stash[c->stash_head];
    zmq_msg_move(out, slot);
    zmq_msg_close(slot);
    c->stash_head = (c->stash_head + 1) % c->stash_cap;
    c->n_stash--;
}

/* ---- transport -------------------------------------------------------------- */

static int wait_for(pc_client *c, short events, int64_t deadline)
{
    zmq_pollitem_t it = {c->sock, 0, events, 0};
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left < 0)
            left = 0;
        int n = zmq_poll(&it, 1, (long)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return zmq_code();
        if (left == 0)
            return PC_E_TIMEOUT;
        /* EINTR (a signal), or an early wake-up: wait for what is left */
    }
}

static int timeout_msg(pc_client *c, const char *what)
{
    return fail(c, PC_E_TIMEOUT,
                "%s %s within %d ms (is prefixcached running there?)", what,
                c->endpoint, c->timeout_ms);
}

/* Send the request in c->sb as [empty delimiter, payload]. */
static int xsend(pc_client *c, int64_t deadline)
{
    if (c->max_msg && c->sb.size > c->max_msg)
        /* Checked here because a daemon with ZMQ_MAXMSGSIZE would drop the
         * connection instead of answering. */
        return fail(c, PC_E_TOOBIG,
                    "request of %zu bytes exceeds the daemon's max_msg %llu",
                    c->sb.size, (unsigned long long)c->max_msg);
    int rc = wait_for(c, ZMQ_POLLOUT, deadline);
    if (rc == PC_E_TIMEOUT)
        return timeout_msg(c, "could not reach");
    if (rc)
        return fail(c, rc, "zmq_poll: %s", zmq_strerror(errno));
    /* Once the first frame is accepted, ZeroMQ takes the whole message. */
    if (zmq_send(c->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(c->sock, c->sb.data, c->sb.size, ZMQ_DONTWAIT) < 0) {
        if (errno == EAGAIN)
            return timeout_msg(c, "could not send to");
        return fail(c, zmq_code(), "zmq_send: %s", zmq_strerror(errno));
    }
    return 0;
}

/* Receive one message; *out gets its last frame (the payload). */
static int xrecv(pc_client *c, int64_t deadline, zmq_msg_t *out)
{
    int rc = wait_for(c, ZMQ_POLLIN, deadline);
    if (rc == PC_E_TIMEOUT)
        return timeout_msg(c, "no reply from");
    if (rc)
        return fail(c, rc, "zmq_poll: %s", zmq_strerror(errno));
    zmq_msg_init(out);
    for (;;) {
        /* All frames of a message arrive together: no wait after the first. */
        if (zmq_msg_recv(out, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(out);
            return fail(c, zmq_code(), "zmq_msg_recv: %s", zmq_strerror(errno));
        }
        if (!zmq_msg_more(out))
            return 0;
        /* an envelope frame: the next recv into `out` replaces it */
    }
}

/* Decode the payload in c->reply; *id gets the reply's id (0 if absent). */
static int decode(pc_client *c, const msgpack_object **map, uint64_t *id)
{
    int rc = pc_payload_decode(&c->dec, zmq_msg_data(&c->reply),
                               zmq_msg_size(&c->reply), NULL, map);
    if (rc)
        return fail(c, rc, "malformed reply from %s: %s", c->endpoint,
                    c->dec.err);
    *id = 0;
    if (pc_mp_get_u64(*map, "id", id) == PC_E_BADMSG)
        return fail(c, PC_E_BADMSG, "reply with a mistyped 'id'");
    return 0;
}

/* The reply's status; on an error, its text goes to c->err. */
static int status_of(pc_client *c, const msgpack_object *map)
{
    int64_t st;
    int rc = pc_mp_get_i64(map, "status", &st);
    if (rc)
        return fail(c, PC_E_BADMSG, "reply without an integer 'status'");
    if (st >= 0)
        return 0;
    if (st < INT32_MIN)
        st = INT32_MIN;
    const msgpack_object *e = pc_mp_get(map, "error");
    if (e && e->type == MSGPACK_OBJECT_STR)
        return fail(c, (int)st, "%.*s", (int)e->via.str.size, e->via.str.ptr);
    return fail(c, (int)st, "%s", pc_strerror((int)st));
}

/*
 * Send c->sb (request `id`) and wait for its reply, which is left in
 * c->reply and decoded into *map.  Returns the transport outcome (0 when a
 * reply came); the reply's own status is the caller's to read.
 */
static int call(pc_client *c, uint64_t id, const msgpack_object **map)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    reply_done(c);
    int rc = xsend(c, deadline);
    if (rc)
        return rc;
    for (;;) {
        uint64_t rid;
        if ((rc = xrecv(c, deadline, &c->reply)))
            return rc;
        c->have_reply = true;
        if ((rc = decode(c, map, &rid))) {
            reply_done(c);
            return rc;
        }
        if (rid == id)
            return 0;
        /* Id 0 with an error: the daemon could not read our id (say, a
         * message it refused before decoding).  Our requests always carry
         * one, so such a reply answers the request in flight. */
        int64_t st;
        if (rid == 0 && pc_mp_get_i64(*map, "status", &st) == 0 && st < 0)
            return 0;
        if (pend_find(c, rid) >= 0) {
            rc = stash_push(c, &c->reply);
            c->have_reply = false;
            if (rc)
                return fail(c, rc, "out of memory");
        } else {
            reply_done(c); /* the late reply of a call that timed out */
        }
    }
}

/* call + status: 0 with the reply map, or the failure (text in c->err). */
static int rpc(pc_client *c, uint64_t id, const msgpack_object **map)
{
    int rc = call(c, id, map);
    if (rc)
        return rc;
    if ((rc = status_of(c, *map)))
        reply_done(c);
    return rc;
}

static int need_u64(pc_client *c, const msgpack_object *m, const char *key,
                    uint64_t *out)
{
    int rc = pc_mp_get_u64(m, key, out);
    if (rc == PC_E_NOENT)
        return fail(c, PC_E_BADMSG, "reply lacks '%s'", key);
    if (rc)
        return fail(c, rc, "reply's '%s' is not a non-negative integer", key);
    return 0;
}

static int opt_u64(pc_client *c, const msgpack_object *m, const char *key,
                   uint64_t *out)
{
    *out = 0;
    int rc = pc_mp_get_u64(m, key, out);
    return rc == PC_E_NOENT ? 0 : rc ? need_u64(c, m, key, out) : 0;
}

static int get_ids(pc_client *c, const msgpack_object *m, const char *key,
                   uint32_t **buf, size_t *cap, size_t *n, bool required)
{
    *n = 0;
    int rc = pc_mp_get_u32s(m, key, buf, cap, n);
    if (rc == PC_E_NOENT && !required)
        return 0;
    if (rc == PC_E_NOENT)
        return fail(c, PC_E_BADMSG, "reply lacks '%s'", key);
    if (rc)
        return fail(c, rc, "reply's '%s' is not a list of uint32", key);
    return 0;
}

static int get_str(pc_client *c, const msgpack_object *m, const char *key,
                   char *dst, size_t cap, bool required)
{
    const msgpack_object *o = pc_mp_get(m, key);
    dst[0] = 0;
    if (!o)
        return required ? fail(c, PC_E_BADMSG, "reply lacks '%s'", key) : 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return fail(c, PC_E_BADMSG, "reply's '%s' is not a string", key);
    if (o->via.str.size >= cap)
        return fail(c, PC_E_BADMSG, "reply's '%s' is longer than %zu bytes",
                    key, cap - 1);
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = 0;
    return 0;
}

/* ---- connection --------------------------------------------------------------- */

int pc_client_connect(const char *endpoint, int timeout_ms, pc_client **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    if (!endpoint || !*endpoint)
        return PC_E_INVAL;
    pc_client *c = calloc(1, sizeof(*c));
    if (!c)
        return PC_E_NOMEM;
    c->next_id = 1;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : PC_CLIENT_TIMEOUT_DEFAULT;
    msgpack_sbuffer_init(&c->sb);
    msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    pc_decoder_init(&c->dec);
    int rc = PC_E_NOMEM;
    if (!(c->endpoint = strdup(endpoint)))
        goto fail;
    /* A context per client: its I/O thread and sockets end with the client,
     * and clients in one process never share state. */
    if (!(c->ctx = zmq_ctx_new()) || !(c->sock = zmq_socket(c->ctx, ZMQ_DEALER))) {
        rc = zmq_code();
        goto fail;
    }
    int zero = 0, one = 1;
    if (zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero)) ||
        zmq_setsockopt(c->sock, ZMQ_IMMEDIATE, &one, sizeof(one)) ||
        zmq_setsockopt(c->sock, ZMQ_RCVHWM, &zero, sizeof(zero))) {
        rc = zmq_code();
        goto fail;
    }
    if (zmq_connect(c->sock, endpoint) < 0) {
        rc = errno == ENOMEM ? PC_E_NOMEM : PC_E_INVAL; /* bad endpoint */
        goto fail;
    }
    *out = c;
    return 0;
fail:
    pc_client_close(c);
    return rc;
}

static void unmap_pool(pc_client *c)
{
    if (c->pool)
        pc_pool_unmap(c->pool, c->pool_bytes);
    c->pool = NULL;
    c->pool_bytes = c->pool_blocks = 0;
}

void pc_client_close(pc_client *c)
{
    if (!c)
        return;
    reply_done(c);
    while (c->n_stash) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        stash_pop(c, &m);
        zmq_msg_close(&m);
    }
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    unmap_pool(c);
    msgpack_sbuffer_destroy(&c->sb);
    pc_decoder_free(&c->dec);
    free(c->blk);
    free(c->ablk);
    free(c->canon);
    free(c->txt);
    free(c->pend);
    free(c->stash);
    free(c->endpoint);
    free(c);
}

void pc_client_set_timeout(pc_client *c, int timeout_ms)
{
    if (c)
        c->timeout_ms = timeout_ms > 0 ? timeout_ms : PC_CLIENT_TIMEOUT_DEFAULT;
}

const char *pc_client_last_error(const pc_client *c)
{
    return c ? c->err : "";
}

/* ---- hello -------------------------------------------------------------------- */

static int do_hello(pc_client *c, pc_hello *h, bool map_pool)
{
    const msgpack_object *m;
    memset(h, 0, sizeof(*h));
    uint64_t id = begin(c, PC_OP_HELLO, 1);
    pc_pack_kv_u64(&c->pk, "version", PC_PROTO_MAJOR);
    int rc = rpc(c, id, &m);
    if (rc)
        return rc;
    uint64_t v[16] = {0};
    static const char *const need[] = {"version", "page_tokens", "block_bytes",
                                       "capacity"};
    static const char *const opt[] = {"version_minor", "layers", "kv_heads",
                                      "head_dim", "token_bytes", "kv_bytes",
                                      "shm_bytes", "lease_ttl_ms",
                                      "max_tokens", "max_msg"};
    for (size_t i = 0; i < 4 && !rc; i++)
        rc = need_u64(c, m, need[i], &v[i]);
    for (size_t i = 0; i < 10 && !rc; i++)
        rc = opt_u64(c, m, opt[i], &v[4 + i]);
    if (!rc)
        rc = get_str(c, m, "dtype", h->dtype, sizeof(h->dtype), false);
    if (!rc)
        rc = get_str(c, m, "backend", h->backend, sizeof(h->backend), true);
    if (!rc)
        rc = get_str(c, m, "shm_name", h->shm_name, sizeof(h->shm_name), false);
    reply_done(c);
    if (rc)
        return rc;
    if (v[0] > UINT32_MAX || v[1] == 0 || v[1] > UINT32_MAX || v[4] > UINT32_MAX ||
        v[5] > UINT32_MAX || v[6] > UINT32_MAX || v[7] > UINT32_MAX)
        return fail(c, PC_E_BADMSG, "hello reply with out-of-range fields");
    h->version = (uint32_t)v[0];
    h->page_tokens = (uint32_t)v[1];
    h->block_bytes = v[2];
    h->capacity = v[3];
    h->version_minor = (uint32_t)v[4];
    h->layers = (uint32_t)v[5];
    h->kv_heads = (uint32_t)v[6];
    h->head_dim = (uint32_t)v[7];
    h->token_bytes = v[8];
    h->kv_bytes = v[9];
    h->shm_bytes = v[10];
    h->lease_ttl_ms = v[11];
    h->max_tokens = v[12];
    h->max_msg = v[13];
    /* A daemon that accepted our major but speaks another one itself: the
     * layout fields may mean something else, so trust none of them. */
    if (h->version != PC_PROTO_MAJOR)
        return fail(c, PC_E_VERSION,
                    "daemon speaks protocol %u.%u, this client %u.%u",
                    h->version, h->version_minor, PC_PROTO_MAJOR,
                    PC_PROTO_MINOR);
    c->have_layout = true;
    c->page_tokens = h->page_tokens;
    c->max_msg = h->max_msg;
    if (!map_pool)
        return 0;
    unmap_pool(c);
    c->block_bytes = h->block_bytes;
    if (strcmp(h->backend, "host") != 0)
        return 0;
    if (!h->shm_name[0] || !h->shm_bytes)
        return fail(c, PC_E_BADMSG, "host pool without shm_name/shm_bytes");
    /* The out fields are filled: a caller that only wants the layout (the
     * CLI, a remote engine) can still use them when mapping fails. */
    if ((rc = pc_pool_map(h->shm_name, h->shm_bytes, &c->pool)))
        return fail(c, rc, "cannot map the host pool %s (%llu bytes): %s",
                    h->shm_name, (unsigned long long)h->shm_bytes,
                    rc == PC_E_PERM ? "permission denied (the daemon's "
                                      "pool_mode and pool_group do not let "
                                      "this user map it)"
                    : rc == PC_E_NOENT ? "no such object (is the daemon on "
                                         "another machine?)"
                                       : pc_strerror(rc));
    c->pool_bytes = h->shm_bytes;
    /* Only blocks that lie wholly inside the mapping are addressable. */
    c->pool_blocks = h->block_bytes ? h->shm_bytes / h->block_bytes : 0;
    if (c->pool_blocks > h->capacity)
        c->pool_blocks = h->capacity;
    return 0;
}

int pc_client_hello(pc_client *c, pc_hello *out)
{
    pc_hello tmp;
    if (!c)
        return PC_E_INVAL;
    return do_hello(c, out ? out : &tmp, true);
}

void *pc_client_block(const pc_client *c, uint32_t id)
{
    if (!c || !c->pool || id >= c->pool_blocks)
        return NULL;
    return (char *)c->pool + (uint64_t)id * c->block_bytes;
}

/* Insert sends n_tokens / page_tokens block ids, so it needs the layout: a
 * hello without mapping when the caller has not said hello yet. */
static int need_layout(pc_client *c)
{
    pc_hello h;
    return c->have_layout ? 0 : do_hello(c, &h, false);
}

/* ---- lookup / insert encoders and decoders (shared by both forms) ------------- */

static uint64_t enc_lookup(pc_client *c, const void *ns, size_t ns_len,
                           const uint32_t *tokens, size_t n, unsigned flags,
                           uint64_t lease)
{
    size_t f = 2 + !!(flags & PC_CLIENT_PIN) + !!(flags & PC_CLIENT_ALLOC) +
               (lease != 0);
    uint64_t id = begin(c, PC_OP_LOOKUP, f);
    pack_ns(&c->pk, ns, ns_len);
    pc_pack_kv_u32s(&c->pk, "tokens", tokens, n);
    if (flags & PC_CLIENT_PIN)
        pc_pack_kv_bool(&c->pk, "pin", true);
    if (flags & PC_CLIENT_ALLOC)
        pc_pack_kv_bool(&c->pk, "alloc", true);
    if (lease)
        pc_pack_kv_u64(&c->pk, "lease", lease);
    return id;
}

/* Id lists handed out are never NULL, even when empty: callers memcpy them
 * with a zero length, which is undefined behaviour with NULL. */
static const uint32_t *ids_or_empty(const uint32_t *p)
{
    static const uint32_t none[1];
    return p ? p : none;
}

static int dec_lookup(pc_client *c, const msgpack_object *m,
                      pc_client_lookup_result *out)
{
    uint64_t tokens, lease;
    int64_t ast = 0;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = need_u64(c, m, "tokens", &tokens)) ||
        (rc = get_ids(c, m, "blocks", &c->blk, &c->blk_cap, &out->pages, true)) ||
        (rc = opt_u64(c, m, "lease", &lease)) ||
        (rc = get_ids(c, m, "alloc_blocks", &c->ablk, &c->ablk_cap,
                      &out->n_alloc, false)))
        return rc;
    rc = pc_mp_get_i64(m, "alloc_status", &ast);
    if (rc == PC_E_BADMSG || ast > 0 || ast < INT32_MIN)
        return fail(c, PC_E_BADMSG, "reply's 'alloc_status' is not a code");
    out->tokens = tokens;
    out->blocks = ids_or_empty(c->blk);
    out->lease = lease;
    out->alloc_status = (int)ast;
    out->alloc_blocks = ids_or_empty(c->ablk);
    return 0;
}

static int chk_insert(pc_client *c, const void *ns, size_t ns_len,
                      const uint32_t *tokens, size_t n, const uint32_t *blocks)
{
    if ((!ns && ns_len) || (!tokens && n))
        return fail(c, PC_E_INVAL, "NULL namespace or tokens");
    int rc = need_layout(c);
    if (rc)
        return rc;
    if (n / c->page_tokens && !blocks)
        return fail(c, PC_E_INVAL, "NULL blocks for %zu pages",
                    n / c->page_tokens);
    return 0;
}

static uint64_t enc_insert(pc_client *c, const void *ns, size_t ns_len,
                           const uint32_t *tokens, size_t n,
                           const uint32_t *blocks, uint64_t lease,
                           unsigned flags)
{
    size_t f = 3 + (lease != 0) + !!(flags & PC_CLIENT_RELEASE) +
               !!(flags & PC_CLIENT_PIN);
    uint64_t id = begin(c, PC_OP_INSERT, f);
    pack_ns(&c->pk, ns, ns_len);
    pc_pack_kv_u32s(&c->pk, "tokens", tokens, n);
    pc_pack_kv_u32s(&c->pk, "blocks", blocks, n / c->page_tokens);
    if (lease)
        pc_pack_kv_u64(&c->pk, "lease", lease);
    if (flags & PC_CLIENT_RELEASE)
        pc_pack_kv_bool(&c->pk, "release", true);
    if (flags & PC_CLIENT_PIN)
        pc_pack_kv_bool(&c->pk, "pin", true);
    return id;
}

static int dec_insert(pc_client *c, const msgpack_object *m,
                      pc_client_insert_result *out, size_t *n_canon)
{
    uint64_t v[3];
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = need_u64(c, m, "cached_tokens", &v[0])) ||
        (rc = need_u64(c, m, "inserted_pages", &v[1])) ||
        (rc = need_u64(c, m, "freed_blocks", &v[2])) ||
        (rc = get_ids(c, m, "canon", &c->canon, &c->canon_cap, n_canon, false)))
        return rc;
    out->cached_tokens = v[0];
    out->inserted_pages = v[1];
    out->freed_blocks = v[2];
    return 0;
}

static bool lookup_args_ok(const void *ns, size_t ns_len, const uint32_t *t,
                           size_t n)
{
    return (ns || !ns_len) && (t || !n);
}

/* ---- blocking calls ------------------------------------------------------------ */

int pc_client_lookup(pc_client *c, const void *ns, size_t ns_len,
                     const uint32_t *tokens, size_t n_tokens, unsigned flags,
                     uint64_t lease, pc_client_lookup_result *out)
{
    const msgpack_object *m;
    pc_client_lookup_result tmp;
    if (!c)
        return PC_E_INVAL;
    if (!out)
        out = &tmp;
    memset(out, 0, sizeof(*out));
    if (!lookup_args_ok(ns, ns_len, tokens, n_tokens))
        return fail(c, PC_E_INVAL, "NULL namespace or tokens");
    uint64_t id = enc_lookup(c, ns, ns_len, tokens, n_tokens, flags, lease);
    int rc = rpc(c, id, &m);
    if (rc)
        return rc;
    rc = dec_lookup(c, m, out);
    reply_done(c);
    return rc;
}

int pc_client_alloc(pc_client *c, uint32_t n, uint64_t *lease, uint32_t *ids)
{
    const msgpack_object *m;
    if (!c)
        return PC_E_INVAL;
    if (!lease || (n && !ids))
        return fail(c, PC_E_INVAL, "NULL lease or ids");
    uint64_t id = begin(c, PC_OP_ALLOC, 1 + (*lease != 0));
    pc_pack_kv_u64(&c->pk, "n", n);
    if (*lease)
        pc_pack_kv_u64(&c->pk, "lease", *lease);
    int rc = rpc(c, id, &m);
    if (rc)
        return rc;
    uint64_t l;
    size_t got;
    if (!(rc = need_u64(c, m, "lease", &l)) &&
        !(rc = get_ids(c, m, "blocks", &c->ablk, &c->ablk_cap, &got, true))) {
        if (got != n)
            rc = fail(c, PC_E_BADMSG, "alloc of %u blocks answered with %zu",
                      n, got);
        else {
            if (n)
                memcpy(ids, c->ablk, n * sizeof(*ids));
            *lease = l;
        }
    }
    reply_done(c);
    return rc;
}

int pc_client_insert(pc_client *c, const void *ns, size_t ns_len,
                     const uint32_t *tokens, size_t n_tokens,
                     const uint32_t *blocks, uint64_t lease, unsigned flags,
                     uint32_t *canon, pc_client_insert_result *out)
{
    const msgpack_object *m;
    pc_client_insert_result tmp;
    if (!c)
        return PC_E_INVAL;
    if (!out)
        out = &tmp;
    memset(out, 0, sizeof(*out));
    int rc = chk_insert(c, ns, ns_len, tokens, n_tokens, blocks);
    if (rc)
        return rc;
    size_t pages = n_tokens / c->page_tokens, n_canon;
    uint64_t id = enc_insert(c, ns, ns_len, tokens, n_tokens, blocks, lease,
                             flags);
    if ((rc = rpc(c, id, &m)))
        return rc;
    rc = dec_insert(c, m, out, &n_canon);
    reply_done(c);
    if (rc)
        return rc;
    if (canon) {
        if (n_canon != pages)
            return fail(c, PC_E_BADMSG, "insert of %zu pages answered with "
                        "%zu canonical ids", pages, n_canon);
        if (pages)
            memcpy(canon, c->canon, pages * sizeof(*canon));
    }
    return 0;
}

/* An op whose request is {op, id[, lease]} and whose reply we only check. */
static int simple(pc_client *c, int op, uint64_t lease, bool with_lease)
{
    const msgpack_object *m;
    if (!c)
        return PC_E_INVAL;
    uint64_t id = begin(c, op, with_lease);
    if (with_lease)
        pc_pack_kv_u64(&c->pk, "lease", lease);
    int rc = rpc(c, id, &m);
    reply_done(c);
    return rc;
}

int pc_client_release(pc_client *c, uint64_t lease)
{
    return simple(c, PC_OP_RELEASE, lease, true);
}

int pc_client_ping(pc_client *c)
{
    return simple(c, PC_OP_PING, 0, false);
}

int pc_client_flush(pc_client *c, const void *ns, size_t ns_len,
                    uint64_t *evicted)
{
    const msgpack_object *m;
    uint64_t ev = 0;
    if (!c)
        return PC_E_INVAL;
    uint64_t id = begin(c, PC_OP_FLUSH, ns != NULL);
    if (ns)
        pack_ns(&c->pk, ns, ns_len);
    int rc = rpc(c, id, &m);
    if (rc)
        return rc;
    rc = need_u64(c, m, "evicted", &ev);
    reply_done(c);
    if (!rc && evicted)
        *evicted = ev;
    return rc;
}

int pc_client_stats(pc_client *c, pc_client_stat_fn fn, void *ctx)
{
    const msgpack_object *m;
    if (!c)
        return PC_E_INVAL;
    uint64_t id = begin(c, PC_OP_STATS, 0);
    int rc = rpc(c, id, &m);
    if (rc)
        return rc;
    const msgpack_object *s = pc_mp_get(m, "stats");
    if (!s || s->type != MSGPACK_OBJECT_MAP) {
        reply_done(c);
        return fail(c, PC_E_BADMSG, "reply lacks a 'stats' map");
    }
    for (uint32_t i = 0; i < s->via.map.size && fn; i++) {
        const msgpack_object *k = &s->via.map.ptr[i].key;
        const msgpack_object *v = &s->via.map.ptr[i].val;
        /* Counters are uints; a value of another type (a newer daemon's
         * richer stat) is skipped rather than misreported. */
        if (k->type != MSGPACK_OBJECT_STR ||
            v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            continue;
        const char *name = text(c, k->via.str.ptr, k->via.str.size, 0);
        if (!name) {
            rc = fail(c, PC_E_NOMEM, "out of memory");
            break;
        }
        fn(ctx, name, v->via.u64);
    }
    reply_done(c);
    return rc;
}

/* ---- config ------------------------------------------------------------------ */

/* Render a knob's value as text into c->txt at offset `at`. */
static const char *render(pc_client *c, const msgpack_object *v, size_t at)
{
    char b[64];
    switch (v->type) {
    case MSGPACK_OBJECT_STR:
        return text(c, v->via.str.ptr, v->via.str.size, at);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(b, sizeof(b), "%llu", (unsigned long long)v->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(b, sizeof(b), "%lld", (long long)v->via.i64);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        snprintf(b, sizeof(b), "%s", v->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        /* the shortest text that reads back as the same double */
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(b, sizeof(b), "%.*g", prec, v->via.f64);
            double back = strtod(b, NULL);
            if (v->type == MSGPACK_OBJECT_FLOAT32 ? (float)back == (float)v->via.f64
                                                  : back == v->via.f64)
                break;
        }
        break;
    case MSGPACK_OBJECT_NIL:
        snprintf(b, sizeof(b), "null");
        break;
    default:
        snprintf(b, sizeof(b), "(unsupported type %d)", (int)v->type);
        break;
    }
    return text(c, b, strlen(b), at);
}

static int config_reply(pc_client *c, const msgpack_object *m,
                        pc_client_config_fn fn, void *ctx)
{
    const msgpack_object *cfg = pc_mp_get(m, "config");
    if (!cfg || cfg->type != MSGPACK_OBJECT_MAP)
        return fail(c, PC_E_BADMSG, "reply lacks a 'config' map");
    for (uint32_t i = 0; i < cfg->via.map.size && fn; i++) {
        const msgpack_object *k = &cfg->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            continue;
        /* value first, name after it: text() may move the buffer */
        const char *val = render(c, &cfg->via.map.ptr[i].val, 0);
        size_t vlen = val ? strlen(val) : 0;
        const char *name = val ? text(c, k->via.str.ptr, k->via.str.size,
                                      vlen + 1) : NULL;
        if (!name)
            return fail(c, PC_E_NOMEM, "out of memory");
        fn(ctx, name, c->txt);
    }
    return 0;
}

int pc_client_config_get(pc_client *c, const char *name,
                         pc_client_config_fn fn, void *ctx)
{
    const msgpack_object *m;
    if (!c)
        return PC_E_INVAL;
    uint64_t id = begin(c, PC_OP_CONFIG, name != NULL);
    if (name) {
        pc_pack_cstr(&c->pk, "get");
        msgpack_pack_array(&c->pk, 1);
        pc_pack_cstr(&c->pk, name);
    }
    int rc = rpc(c, id, &m);
    if (rc)
        return rc;
    rc = config_reply(c, m, fn, ctx);
    reply_done(c);
    return rc;
}

int pc_client_config_set(pc_client *c, const char *name, const char *value,
                         pc_client_config_fn fn, void *ctx)
{
    const msgpack_object *m;
    if (!c)
        return PC_E_INVAL;
    if (!name || !value)
        return fail(c, PC_E_INVAL, "NULL name or value");
    uint64_t id = begin(c, PC_OP_CONFIG, 1);
    /* The value goes as text; the daemon parses it by the knob's type. */
    pc_pack_cstr(&c->pk, "set");
    msgpack_pack_map(&c->pk, 1);
    pc_pack_kv_str(&c->pk, name, value);
    int rc = rpc(c, id, &m);
    if (rc)
        return rc;
    rc = config_reply(c, m, fn, ctx);
    reply_done(c);
    return rc;
}

/* ---- pipelined form ---------------------------------------------------------- */

/* Read one message off the socket into the stash (a reply of a pipelined
 * request) or drop it (a late reply of a blocking call). */
static int pull_one(pc_client *c, int64_t deadline)
{
    const msgpack_object *m;
    uint64_t rid;
    int64_t st;
    reply_done(c);
    int rc = xrecv(c, deadline, &c->reply);
    if (rc)
        return rc;
    c->have_reply = true;
    if ((rc = decode(c, &m, &rid))) {
        reply_done(c);
        return rc;
    }
    if (pend_find(c, rid) >= 0 ||
        (rid == 0 && pc_mp_get_i64(m, "status", &st) == 0 && st < 0)) {
        rc = stash_push(c, &c->reply);
        c->have_reply = false;
        return rc ? fail(c, rc, "out of memory") : 0;
    }
    reply_done(c);
    return 0;
}

/* Send what is in c->sb as request `id` of kind op, without waiting for the
 * reply (only, within the timeout, for room to send it).
 *
 * The window: ROUTER silently drops a reply when its queue to the peer is
 * full (ZMQ_SNDHWM, 1000 by default), which happens when thousands of
 * requests are sent before any reply is read.  So at most
 * PC_CLIENT_WINDOW requests are on the wire: beyond that, replies are read
 * into the stash (where pc_client_recv finds them) before sending more. */
static int64_t send_pipelined(pc_client *c, uint64_t id, int op)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    int rc;
    while (c->n_pend - c->n_stash >= PC_CLIENT_WINDOW)
        if ((rc = pull_one(c, deadline)))
            return rc;
    if ((rc = pend_add(c, id, op)))
        return fail(c, rc, "out of memory");
    if ((rc = xsend(c, deadline))) {
        c->n_pend--; /* just added: the last entry */
        return rc;
    }
    return (int64_t)id;
}

int64_t pc_client_send_lookup(pc_client *c, const void *ns, size_t ns_len,
                              const uint32_t *tokens, size_t n_tokens,
                              unsigned flags, uint64_t lease)
{
    if (!c)
        return PC_E_INVAL;
    if (!lookup_args_ok(ns, ns_len, tokens, n_tokens))
        return fail(c, PC_E_INVAL, "NULL namespace or tokens");
    /* Knowing max_msg, an oversized request is refused here: the daemon's
     * answer to one (id 0: refused before its id was read) could not be
     * matched to a request among many in flight. */
    int rc = need_layout(c);
    if (rc)
        return rc;
    uint64_t id = enc_lookup(c, ns, ns_len, tokens, n_tokens, flags, lease);
    return send_pipelined(c, id, PC_OP_LOOKUP);
}

int64_t pc_client_send_insert(pc_client *c, const void *ns, size_t ns_len,
                              const uint32_t *tokens, size_t n_tokens,
                              const uint32_t *blocks, uint64_t lease,
                              unsigned flags)
{
    if (!c)
        return PC_E_INVAL;
    int rc = chk_insert(c, ns, ns_len, tokens, n_tokens, blocks);
    if (rc)
        return rc;
    uint64_t id = enc_insert(c, ns, ns_len, tokens, n_tokens, blocks, lease,
                             flags);
    return send_pipelined(c, id, PC_OP_INSERT);
}

int pc_client_recv(pc_client *c, pc_client_reply *out)
{
    pc_client_reply tmp;
    if (!c)
        return PC_E_INVAL;
    if (!out)
        out = &tmp;
    memset(out, 0, sizeof(*out));
    int64_t deadline = now_ms() + c->timeout_ms;
    reply_done(c);
    for (;;) {
        const msgpack_object *m;
        uint64_t rid;
        int rc;
        if (c->n_stash) {
            zmq_msg_init(&c->reply);
            stash_pop(c, &c->reply);
        } else if (!c->n_pend) {
            return fail(c, PC_E_TIMEOUT, "no pipelined request in flight");
        } else if ((rc = xrecv(c, deadline, &c->reply))) {
            return rc;
        }
        c->have_reply = true;
        if ((rc = decode(c, &m, &rid))) {
            reply_done(c);
            return rc;
        }
        long i = pend_find(c, rid);
        if (i < 0) {
            int64_t st;
            if (rid == 0 && pc_mp_get_i64(m, "status", &st) == 0 && st < 0) {
                /* A request the daemon refused before reading its id: it
                 * cannot be matched, but the caller must hear of it. */
                out->status = status_of(c, m);
                reply_done(c);
                return 0;
            }
            reply_done(c); /* a late reply of a blocking call: drop it */
            continue;
        }
        int op = c->pend[i].op;
        pend_del(c, (size_t)i);
        out->id = rid;
        if ((out->status = status_of(c, m)) == 0) {
            if (op == PC_OP_LOOKUP)
                out->status = dec_lookup(c, m, &out->lookup);
            else {
                out->status = dec_insert(c, m, &out->insert, &out->n_canon);
                out->canon = ids_or_empty(c->canon);
            }
        }
        reply_done(c);
        return 0;
    }
}

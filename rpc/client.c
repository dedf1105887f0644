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
 *   hello (backend "cuda") ─► pc_gpu_ops_get(device_ops): the local device
 *               whose UUID is device_uuid ─► import_handle(ipc_handle)
 *               pc_client_block(id) = imported dptr + id * block_bytes
 *               (gpu/ counts imports per process: many clients in one
 *                process share one mapping; each closes its own import)
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
 * Wire: requests and replies are the typed messages of proto/wire.h,
 * encoded and decoded from its one table; nothing here spells a key.
 *
 * Memory: one sbuffer for requests, one decoder for replies, whose two id
 * buffers grow to the largest reply seen and hold the id lists handed to
 * the caller until the next call.  The reply message stays alive while it
 * is decoded (msgpack objects borrow from it) and is closed before a call
 * returns; texts handed to callbacks are copies in a client buffer.
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
#include "gpu/dev.h"

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

    /* results, valid until the next call: id lists stay in dec's buffers */
    char *txt;          /* NUL-terminated copies for callbacks        */
    size_t txt_cap;

    /* from hello */
    bool have_layout;
    uint32_t page_tokens;
    uint64_t max_msg;
    void *pool;         /* mapped host pool or imported device pool   */
    uint64_t instance;  /* the daemon's whose pool is mapped (0: none) */
    uint64_t pool_bytes, block_bytes, pool_blocks;
    const pc_gpu_ops *gpu; /* pool is an import of these ops, or NULL */

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

/* Start a request: the op's typed message, encoded from the wire table
 * into c->sb; returns the id.  (Namespaces go as str when they are valid
 * UTF-8, which keeps dumps readable, and as bin otherwise: the wire
 * table's "bytes" type; the daemon compares the bytes only.) */
static uint64_t begin(pc_client *c, int op, const void *req)
{
    uint64_t id = c->next_id++;
    msgpack_sbuffer_clear(&c->sb);
    pc_wire_encode_request(&c->pk, op, id, req);
    return id;
}

static pc_wire_str bytes_of(const void *p, size_t n)
{
    return (pc_wire_str){p, n};
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
static int decode(pc_client *c, const msgpack_object **map, pc_reply_head *h)
{
    int rc = pc_payload_decode(&c->dec, zmq_msg_data(&c->reply),
                               zmq_msg_size(&c->reply), NULL, map);
    if (!rc)
        rc = pc_wire_read_head(&c->dec, *map, h);
    if (rc)
        return fail(c, rc, "malformed reply from %s: %s", c->endpoint,
                    c->dec.err);
    return 0;
}

/* The reply's status; on an error, its text goes to c->err. */
static int status_of(pc_client *c, const pc_reply_head *h)
{
    if (h->status >= 0)
        return 0;
    if (h->error.p)
        return fail(c, (int)h->status, "%.*s", (int)h->error.n, h->error.p);
    return fail(c, (int)h->status, "%s", pc_strerror((int)h->status));
}

/* The rows of a successful reply to op into rep. */
static int rows(pc_client *c, const msgpack_object *m, int op, void *rep)
{
    int rc = pc_wire_read_reply(&c->dec, m, op, rep);
    return rc ? fail(c, rc, "malformed %s reply: %s", pc_op_name(op), c->dec.err)
              : 0;
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
        pc_reply_head h;
        if ((rc = xrecv(c, deadline, &c->reply)))
            return rc;
        c->have_reply = true;
        if ((rc = decode(c, map, &h))) {
            reply_done(c);
            return rc;
        }
        if (h.id == id)
            return status_of(c, &h);
        /* Id 0 with an error: the daemon could not read our id (say, a
         * message it refused before decoding).  Our requests always carry
         * one, so such a reply answers the request in flight. */
        if (h.id == 0 && h.status < 0)
            return status_of(c, &h);
        if (pend_find(c, h.id) >= 0) {
            rc = stash_push(c, &c->reply);
            c->have_reply = false;
            if (rc)
                return fail(c, rc, "out of memory");
        } else {
            reply_done(c); /* the late reply of a call that timed out */
        }
    }
}

/* call + the reply's rows: 0 with *rep filled (the reply stays alive for
 * its str and maps until reply_done), or the failure (text in c->err). */
static int rpc(pc_client *c, int op, uint64_t id, void *rep)
{
    const msgpack_object *m;
    int rc = call(c, id, &m);
    if (!rc && rep)
        rc = rows(c, m, op, rep);
    if (rc)
        reply_done(c);
    return rc;
}

/* A reply str into a NUL-terminated buffer of cap bytes. */
static int copy_str(pc_client *c, const char *key, pc_wire_str v, char *dst,
                    size_t cap)
{
    dst[0] = 0;
    if (v.n >= cap)
        return fail(c, PC_E_BADMSG, "reply's '%s' is longer than %zu bytes",
                    key, cap - 1);
    if (v.n)
        memcpy(dst, v.p, v.n);
    dst[v.n] = 0;
    return 0;
}

/* ---- connection --------------------------------------------------------------- */

int pc_client_connect(const char *endpoint, int timeout_ms, pc_client **out)
{
    return pc_client_connect_curve(endpoint, timeout_ms, NULL, out);
}

int pc_client_connect_curve(const char *endpoint, int timeout_ms,
                            const pc_client_curve *curve, pc_client **out)
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
    /* The keys before connect: libzmq reads them when the pipe starts. */
    if (curve && (!pc_rpc_key_valid(curve->server_public) ||
                  !pc_rpc_key_valid(curve->public_key) ||
                  !pc_rpc_key_valid(curve->secret_key))) {
        rc = PC_E_INVAL;
        goto fail;
    }
    if (curve &&
        (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, curve->server_public,
                        PC_CURVE_KEY_LEN) ||
         zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, curve->public_key,
                        PC_CURVE_KEY_LEN) ||
         zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, curve->secret_key,
                        PC_CURVE_KEY_LEN))) {
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
    if (c->pool && c->gpu)
        (void)c->gpu->close_handle(c->pool); /* nothing to do with a code */
    else if (c->pool)
        pc_pool_unmap(c->pool, c->pool_bytes);
    c->pool = NULL;
    c->gpu = NULL;
    c->pool_bytes = c->pool_blocks = 0;
    c->instance = 0;
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

/* A cuda pool: import its handle on the local device of device_ops whose
 * UUID is the daemon's (devices are matched by UUID, never by index).  h's
 * layout is filled in already, so a caller that fails here keeps it. */
static int import_pool(pc_client *c, const pc_hello *h)
{
    static const uint8_t zero[sizeof(h->ipc_handle)];
    if (!h->device_ops[0] || !memcmp(h->ipc_handle, zero, sizeof(zero)))
        return fail(c, PC_E_BADMSG, "cuda pool without device_ops/ipc_handle");
    const pc_gpu_ops *ops = pc_gpu_ops_get(h->device_ops);
    if (!ops)
        return fail(c, PC_E_INVAL, "the pool lives on '%s' devices, which this "
                    "client cannot use (%s)", h->device_ops,
                    strcmp(h->device_ops, "cuda") == 0
                        ? "libprefixcache was built without CUDA"
                        : "unknown device operations");
    int n = 0, dev = -1, rc = ops->device_count(&n);
    if (rc)
        return fail(c, rc, "cannot count the local %s devices: %s",
                    h->device_ops, pc_strerror(rc));
    for (int i = 0; i < n && dev < 0; i++) {
        pc_gpu_uuid u;
        if (ops->device_uuid(i, &u) == 0 &&
            memcmp(u.b, h->device_uuid, sizeof(u.b)) == 0)
            dev = i;
    }
    char hex[2 * sizeof(h->device_uuid) + 1];
    for (size_t i = 0; i < sizeof(h->device_uuid); i++)
        snprintf(hex + 2 * i, 3, "%02x", h->device_uuid[i]);
    if (dev < 0)
        return fail(c, PC_E_PERM, "the pool is on %s device %s, which is not "
                    "one of this process's %d %s device(s) (another GPU or "
                    "another machine: the daemon's device must be visible "
                    "here)", h->device_ops, hex, n, h->device_ops);
    pc_gpu_handle hd;
    memcpy(hd.b, h->ipc_handle, sizeof(hd.b));
    void *p = NULL;
    uint64_t bytes = 0;
    if ((rc = ops->import_handle(dev, &hd, &p, &bytes)))
        return fail(c, rc, "cannot import the pool's handle on %s device %d "
                    "(%s): %s", h->device_ops, dev, hex, pc_strerror(rc));
    c->pool = p;
    c->gpu = ops;
    c->pool_bytes = bytes;
    /* Only blocks that lie wholly inside the allocation are addressable. */
    c->pool_blocks = h->block_bytes ? bytes / h->block_bytes : 0;
    if (c->pool_blocks > h->capacity)
        c->pool_blocks = h->capacity;
    return 0;
}

static int do_hello(pc_client *c, pc_hello *h, bool map_pool)
{
    memset(h, 0, sizeof(*h));
    pc_hello_req q = {0};
    PC_SET(&q, hello_req, version, PC_PROTO_MAJOR);
    pc_hello_rep o;
    int rc = rpc(c, PC_OP_HELLO, begin(c, PC_OP_HELLO, &q), &o);
    if (rc)
        return rc;
#define COPY(m) copy_str(c, PC_WIRE_KEY(hello_rep, m), o.m, h->m, sizeof(h->m))
    if (!(rc = COPY(dtype)) && !(rc = COPY(backend)) && !(rc = COPY(shm_name)) &&
        !(rc = COPY(device_ops)))
        rc = COPY(tier2);
#undef COPY
    if (!rc && PC_IS_SET(&o, hello_rep, device_uuid) &&
        o.device_uuid.n != sizeof(h->device_uuid))
        rc = fail(c, PC_E_BADMSG, "hello: device_uuid of %zu bytes, not %zu",
                  o.device_uuid.n, sizeof(h->device_uuid));
    else if (!rc && PC_IS_SET(&o, hello_rep, ipc_handle) &&
             o.ipc_handle.n != sizeof(h->ipc_handle))
        rc = fail(c, PC_E_BADMSG, "hello: ipc_handle of %zu bytes, not %zu",
                  o.ipc_handle.n, sizeof(h->ipc_handle));
    else if (!rc) { /* they borrow from the reply: copy before reply_done */
        if (PC_IS_SET(&o, hello_rep, device_uuid))
            memcpy(h->device_uuid, o.device_uuid.p, sizeof(h->device_uuid));
        if (PC_IS_SET(&o, hello_rep, ipc_handle))
            memcpy(h->ipc_handle, o.ipc_handle.p, sizeof(h->ipc_handle));
    }
    reply_done(c);
    if (rc)
        return rc;
    if (o.version > UINT32_MAX || o.page_tokens == 0 || o.page_tokens > UINT32_MAX ||
        o.version_minor > UINT32_MAX || o.layers > UINT32_MAX ||
        o.kv_heads > UINT32_MAX || o.head_dim > UINT32_MAX)
        return fail(c, PC_E_BADMSG, "hello reply with out-of-range fields");
    h->version = (uint32_t)o.version;
    h->page_tokens = (uint32_t)o.page_tokens;
    h->block_bytes = o.block_bytes;
    h->capacity = o.capacity;
    h->version_minor = (uint32_t)o.version_minor;
    h->layers = (uint32_t)o.layers;
    h->kv_heads = (uint32_t)o.kv_heads;
    h->head_dim = (uint32_t)o.head_dim;
    h->token_bytes = o.token_bytes;
    h->kv_bytes = o.kv_bytes;
    h->shm_bytes = o.shm_bytes;
    h->tier2_pages = o.tier2_pages;
    h->lease_ttl_ms = o.lease_ttl_ms;
    h->max_tokens = o.max_tokens;
    h->max_msg = o.max_msg;
    h->instance = PC_IS_SET(&o, hello_rep, instance) ? o.instance : 0;
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
    c->instance = h->instance; /* named only while c->pool is mapped */
    if (strcmp(h->backend, "cuda") == 0)
        return import_pool(c, h);
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
    pc_lookup_req q = {.ns = bytes_of(ns, ns_len), .tokens = {tokens, n}};
    if (c->pool && c->instance)
        PC_SET(&q, lookup_req, instance, c->instance);
    if (flags & PC_CLIENT_PIN)
        PC_SET(&q, lookup_req, pin, true);
    if (flags & PC_CLIENT_ALLOC)
        PC_SET(&q, lookup_req, alloc, true);
    if (flags & PC_CLIENT_PROMOTE)
        PC_SET(&q, lookup_req, promote, true);
    if (flags & PC_CLIENT_NO_CACHE)
        PC_SET(&q, lookup_req, no_cache, true);
    if (flags & PC_CLIENT_NO_COUNT)
        PC_SET(&q, lookup_req, no_count, true);
    if (lease)
        PC_SET(&q, lookup_req, lease, lease);
    return begin(c, PC_OP_LOOKUP, &q);
}

/* Id lists handed out are never NULL, even when empty: callers memcpy them
 * with a zero length, which is undefined behaviour with NULL. */
static const uint32_t *ids_or_empty(const uint32_t *p)
{
    static const uint32_t none[1];
    return p ? p : none;
}

/* The id lists stay in the decoder's buffers until the next call on c. */
static void dec_lookup(pc_client *c, const pc_lookup_rep *o,
                       pc_client_lookup_result *out)
{
    memset(out, 0, sizeof(*out));
    out->tokens = o->tokens;
    out->pages = o->blocks.n;
    out->blocks = ids_or_empty(o->blocks.p);
    out->lease = o->lease;
    out->alloc_status = (int)o->alloc_status;
    out->n_alloc = o->alloc_blocks.n;
    out->alloc_blocks = ids_or_empty(o->alloc_blocks.p);
    out->tier2_tokens = o->tier2_tokens;
    out->promoted_tokens = o->promoted_tokens;
    if (o->alloc_status < 0) { /* the call succeeded; the reason: last_error */
        if (o->alloc_error.p)
            fail(c, 0, "%.*s", (int)o->alloc_error.n, o->alloc_error.p);
        else
            fail(c, 0, "alloc: %s", pc_strerror((int)o->alloc_status));
    }
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
    pc_insert_req q = {.ns = bytes_of(ns, ns_len), .tokens = {tokens, n},
                       .blocks = {blocks, n / c->page_tokens}};
    if (lease)
        PC_SET(&q, insert_req, lease, lease);
    if (flags & PC_CLIENT_RELEASE)
        PC_SET(&q, insert_req, release, true);
    if (flags & PC_CLIENT_PIN)
        PC_SET(&q, insert_req, pin, true);
    if (flags & PC_CLIENT_NO_CACHE)
        PC_SET(&q, insert_req, no_cache, true);
    if (c->pool && c->instance)
        PC_SET(&q, insert_req, instance, c->instance);
    return begin(c, PC_OP_INSERT, &q);
}

static void dec_insert(const pc_insert_rep *o, pc_client_insert_result *out)
{
    out->cached_tokens = o->cached_tokens;
    out->inserted_pages = o->inserted_pages;
    out->freed_blocks = o->freed_blocks;
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
    pc_client_lookup_result tmp;
    if (!c)
        return PC_E_INVAL;
    if (!out)
        out = &tmp;
    memset(out, 0, sizeof(*out));
    if (!lookup_args_ok(ns, ns_len, tokens, n_tokens))
        return fail(c, PC_E_INVAL, "NULL namespace or tokens");
    uint64_t id = enc_lookup(c, ns, ns_len, tokens, n_tokens, flags, lease);
    pc_lookup_rep o;
    int rc = rpc(c, PC_OP_LOOKUP, id, &o);
    if (rc)
        return rc;
    dec_lookup(c, &o, out);
    reply_done(c);
    return 0;
}

int pc_client_alloc(pc_client *c, uint32_t n, uint64_t *lease, uint32_t *ids)
{
    if (!c)
        return PC_E_INVAL;
    if (!lease || (n && !ids))
        return fail(c, PC_E_INVAL, "NULL lease or ids");
    pc_alloc_req q = {.n = n};
    if (*lease)
        PC_SET(&q, alloc_req, lease, *lease);
    if (c->pool && c->instance)
        PC_SET(&q, alloc_req, instance, c->instance);
    pc_alloc_rep o;
    int rc = rpc(c, PC_OP_ALLOC, begin(c, PC_OP_ALLOC, &q), &o);
    if (rc)
        return rc;
    if (o.blocks.n != n) {
        rc = fail(c, PC_E_BADMSG, "alloc of %u blocks answered with %zu", n,
                  o.blocks.n);
    } else {
        if (n)
            memcpy(ids, o.blocks.p, n * sizeof(*ids));
        *lease = o.lease;
    }
    reply_done(c);
    return rc;
}

int pc_client_insert(pc_client *c, const void *ns, size_t ns_len,
                     const uint32_t *tokens, size_t n_tokens,
                     const uint32_t *blocks, uint64_t lease, unsigned flags,
                     uint32_t *canon, pc_client_insert_result *out)
{
    pc_client_insert_result tmp;
    if (!c)
        return PC_E_INVAL;
    if (!out)
        out = &tmp;
    memset(out, 0, sizeof(*out));
    int rc = chk_insert(c, ns, ns_len, tokens, n_tokens, blocks);
    if (rc)
        return rc;
    size_t pages = n_tokens / c->page_tokens;
    uint64_t id = enc_insert(c, ns, ns_len, tokens, n_tokens, blocks, lease,
                             flags);
    pc_insert_rep o;
    if ((rc = rpc(c, PC_OP_INSERT, id, &o)))
        return rc;
    dec_insert(&o, out);
    if (canon && o.canon.n != pages)
        rc = fail(c, PC_E_BADMSG, "insert of %zu pages answered with %zu "
                  "canonical ids", pages, o.canon.n);
    else if (canon && pages)
        memcpy(canon, o.canon.p, pages * sizeof(*canon));
    reply_done(c);
    return rc;
}

int pc_client_release(pc_client *c, uint64_t lease)
{
    if (!c)
        return PC_E_INVAL;
    pc_release_req q = {.lease = lease};
    int rc = rpc(c, PC_OP_RELEASE, begin(c, PC_OP_RELEASE, &q), NULL);
    reply_done(c);
    return rc;
}

int pc_client_ping(pc_client *c)
{
    if (!c)
        return PC_E_INVAL;
    int rc = rpc(c, PC_OP_PING, begin(c, PC_OP_PING, NULL), NULL);
    reply_done(c);
    return rc;
}

int pc_client_flush(pc_client *c, const void *ns, size_t ns_len,
                    uint64_t *evicted)
{
    if (!c)
        return PC_E_INVAL;
    pc_flush_req q = {0};
    if (ns)
        PC_SET(&q, flush_req, ns, bytes_of(ns, ns_len));
    pc_flush_rep o;
    int rc = rpc(c, PC_OP_FLUSH, begin(c, PC_OP_FLUSH, &q), &o);
    reply_done(c);
    if (!rc && evicted)
        *evicted = o.evicted;
    return rc;
}

/* STATS, with the daemon's check when check != NULL. */
static int stats(pc_client *c, pc_client_stat_fn fn, void *ctx, int64_t *check)
{
    if (!c)
        return PC_E_INVAL;
    pc_stats_req q = {0};
    if (check)
        PC_SET(&q, stats_req, check, true);
    pc_stats_rep o;
    int rc = rpc(c, PC_OP_STATS, begin(c, PC_OP_STATS, check ? &q : NULL), &o);
    if (rc)
        return rc;
    if (check) {
        if (!PC_IS_SET(&o, stats_rep, check)) {
            reply_done(c);
            return fail(c, PC_E_BADMSG, "stats: the daemon sent no check verdict");
        }
        *check = o.check;
    }
    const msgpack_object *s = o.stats.obj;
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

int pc_client_stats(pc_client *c, pc_client_stat_fn fn, void *ctx)
{
    return stats(c, fn, ctx, NULL);
}

int pc_client_stats_check(pc_client *c, pc_client_stat_fn fn, void *ctx,
                          int64_t *check)
{
    return check ? stats(c, fn, ctx, check) : PC_E_INVAL;
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

static int config_reply(pc_client *c, const pc_config_rep *o,
                        pc_client_config_fn fn, void *ctx)
{
    const msgpack_object *cfg = o->config.obj;
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

/* config with the request's get/set already built in q */
static int config_call(pc_client *c, const pc_config_req *q,
                       pc_client_config_fn fn, void *ctx)
{
    pc_config_rep o;
    int rc = rpc(c, PC_OP_CONFIG, begin(c, PC_OP_CONFIG, q), &o);
    if (rc)
        return rc;
    rc = config_reply(c, &o, fn, ctx);
    reply_done(c);
    return rc;
}

int pc_client_config_get(pc_client *c, const char *name,
                         pc_client_config_fn fn, void *ctx)
{
    if (!c)
        return PC_E_INVAL;
    pc_config_req q = {0};
    msgpack_object key = {.type = MSGPACK_OBJECT_STR};
    msgpack_object names = {.type = MSGPACK_OBJECT_ARRAY};
    if (name) {
        key.via.str.ptr = name;
        key.via.str.size = (uint32_t)strlen(name);
        names.via.array.size = 1;
        names.via.array.ptr = &key;
        PC_SET(&q, config_req, get, ((pc_wire_map){&names, NULL, NULL}));
    }
    return config_call(c, &q, fn, ctx);
}

int pc_client_config_set(pc_client *c, const char *name, const char *value,
                         pc_client_config_fn fn, void *ctx)
{
    if (!c)
        return PC_E_INVAL;
    if (!name || !value)
        return fail(c, PC_E_INVAL, "NULL name or value");
    /* The value goes as text; the daemon parses it by the knob's type. */
    msgpack_object_kv kv = {.key = {.type = MSGPACK_OBJECT_STR},
                            .val = {.type = MSGPACK_OBJECT_STR}};
    kv.key.via.str.ptr = name;
    kv.key.via.str.size = (uint32_t)strlen(name);
    kv.val.via.str.ptr = value;
    kv.val.via.str.size = (uint32_t)strlen(value);
    msgpack_object set = {.type = MSGPACK_OBJECT_MAP};
    set.via.map.size = 1;
    set.via.map.ptr = &kv;
    pc_config_req q = {0};
    PC_SET(&q, config_req, set, ((pc_wire_map){&set, NULL, NULL}));
    return config_call(c, &q, fn, ctx);
}

/* ---- pipelined form ---------------------------------------------------------- */

/* Read one message off the socket into the stash (a reply of a pipelined
 * request) or drop it (a late reply of a blocking call). */
static int pull_one(pc_client *c, int64_t deadline)
{
    const msgpack_object *m;
    pc_reply_head h;
    reply_done(c);
    int rc = xrecv(c, deadline, &c->reply);
    if (rc)
        return rc;
    c->have_reply = true;
    if ((rc = decode(c, &m, &h))) {
        reply_done(c);
        return rc;
    }
    if (pend_find(c, h.id) >= 0 || (h.id == 0 && h.status < 0)) {
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
        pc_reply_head h;
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
        if ((rc = decode(c, &m, &h))) {
            reply_done(c);
            return rc;
        }
        long i = pend_find(c, h.id);
        if (i < 0) {
            if (h.id == 0 && h.status < 0) {
                /* A request the daemon refused before reading its id: it
                 * cannot be matched, but the caller must hear of it. */
                out->status = status_of(c, &h);
                reply_done(c);
                return 0;
            }
            reply_done(c); /* a late reply of a blocking call: drop it */
            continue;
        }
        int op = c->pend[i].op;
        pend_del(c, (size_t)i);
        out->id = h.id;
        if ((out->status = status_of(c, &h)) == 0) {
            if (op == PC_OP_LOOKUP) {
                pc_lookup_rep o;
                if (!(out->status = rows(c, m, op, &o)))
                    dec_lookup(c, &o, &out->lookup);
            } else {
                pc_insert_rep o;
                if (!(out->status = rows(c, m, op, &o))) {
                    dec_insert(&o, &out->insert);
                    out->n_canon = o.canon.n;
                    out->canon = ids_or_empty(o.canon.p);
                }
            }
        }
        reply_done(c);
        return 0;
    }
}

/*
 * rpc/server.c - the prefixcache server: one ROUTER socket, one pc_cache,
 * one thread (the caller's), no locks.
 *
 *   pc_rpc_server_poll(s, timeout)
 *   │
 *   ├─ zmq_poll(ROUTER, deadline timerfd, wakeup fd, watch fd; timeout)
 *   │      watch fd ready (the metrics listener) ─► its ready(): on this
 *   │                                               thread, between requests
 *   │      EINTR ──────────────────────────────► return 0 (caller checks
 *   │                                               its signal flags)
 *   ├─ drain: until EAGAIN (at most DRAIN_MAX per call)
 *   │   │
 *   │   │  [env 0]..[env k-1][payload]      every frame but the last is the
 *   │   │   identity, "" (REQ), ...         envelope, echoed unchanged
 *   │   │        │                │
 *   │   │        │                ▼
 *   │   │        │   pc_wire_decode_request ─► op_* ─► pc_cache_*
 *   │   │        │    (limits first)        │ (rejected: nothing changed;
 *   │   │        │                          │  the text: pc_cache_why)
 *   │   │        │                          ▼
 *   │   │        │        pc_wire_encode_reply(typed reply) into one
 *   │   │        │        reused sbuffer
 *   │   │        ▼                          │
 *   │   │  [env 0]..[env k-1][reply] ◄──────┘   one reply per request
 *   │   │
 *   │   └─ between requests: pc_cache_expire (crashed engines' leases),
 *   │                        pc_cache_maintain (watermarks)
 *   │
 *   └─ housekeeping once more (a timeout may have been a lease deadline)
 *
 * Why drain with ZMQ_DONTWAIT before blocking again: zmq_poll costs a
 * syscall round; under load the queue holds many requests and taking them
 * back to back halves the per-request overhead.  DRAIN_MAX bounds one call
 * so the daemon's loop still sees its signal flags under a flood.
 *
 * Why the envelope is copied as zmq_msg_t and sent back as is: a REQ client
 * needs its empty delimiter, a DEALER behind a proxy needs every routing
 * frame, and the server has no business interpreting any of them.
 *
 * Endpoint exclusivity: libzmq unlinks an existing ipc socket file when it
 * binds, so a second daemon would silently steal the endpoint from a live
 * one.  Hence the flock'ed "<path>.lock": whoever holds it owns the path;
 * a stale socket file (a crashed daemon never removes it) is replaced.  A
 * lock or socket file of another user is never used or replaced: in a
 * directory others can write (the default endpoint is never in one, see
 * rpc/endpoint.c) that is a squatter, and we say so instead of serving
 * next to it.
 *
 * The socket's mode: whoever may connect may read and change the index
 * (and, as the daemon's own uid or root, flush and reconfigure it: who()),
 * so the mode is set explicitly (cfg->ipc_mode, ipc_gid) after bind and
 * never left to the umask.
 *
 * Who may do what (docs/SECURITY.md): each request's caller is resolved
 * from the frame's properties (who(): a CURVE key's User-Id, an ipc peer's
 * uid, else the connection) and authorize() runs after decoding and before
 * any cache call, so a refusal changes nothing and reads nothing of the
 * cache.  Leases carry their maker (pc_cache_set_owner).  A tcp endpoint
 * off loopback needs CURVE, whose ZAP handler is one more poll item
 * (setup_auth, zap_serve).  bind runs under umask 0177, so the file is
 * born 0600 and only widened once its group is right.
 */
#include "rpc/rpc.h"
#include "rpc/events.h"
#include "rpc/zparts.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "rpc/client.h" /* PC_CURVE_KEY_LEN */

#define ENV_MAX 32           /* envelope frames we echo; more: dropped    */
#define ENV_BYTES_MAX 65536  /* total envelope bytes; more: dropped       */
#define MSG_SLACK 65536      /* ZMQ_MAXMSGSIZE beyond limits.max_msg: a
                                payload a little too big still gets its
                                TOOBIG reply; far too big ones cost the
                                sender its connection (libzmq's rule)     */
#define DRAIN_MAX 4096       /* requests per poll call                    */
#define PARKED_MAX 4096      /* lookups waiting for promotions            */
#define PARKED 1             /* op_lookup: the reply waits for a promotion */
#define PARK_ROUNDS_MAX 8    /* promotions one lookup waits for, at most:
                                pages promoted for it can be evicted again
                                (by other promotions) before it runs, and
                                waiting must end                          */
#define ERR_MAX 256

/* The latency buckets' bounds (rpc.h); their stats names are formatted
 * once, at create, into the server (the visitor hands out pointers). */
#define LAT_US(us) us,
static const uint64_t lat_bounds_us[] = {PC_RPC_LATENCY_BUCKETS_US(LAT_US)};
#undef LAT_US
#define LAT_NB (sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))
/* Per op: LAT_NB bucket names, .inf, .sum_ns, .count */
#define LAT_NAMES (LAT_NB + 3)

/* One stats entry (names are static strings), and a reply's worth. */
typedef struct stat_kv {
    const char *name;
    uint64_t v;
} stat_kv;

typedef struct stat_list {
    stat_kv kv[768]; /* ~80 of the cache, ~80 namespaces, ~150 latency */
    size_t n;
    bool no_ns;      /* leave out the ns.* rows (a caller not an admin) */
} stat_list;

/* A lookup with promote whose reply waits for a promotion (pc_cache_poll
 * reports it done): its envelope, and the request with its own copy of
 * the namespace and tokens (the frame they came in is gone). */
typedef struct parked {
    uint64_t job, id;
    uint64_t owner;     /* the lease owner it runs for (pc_cache_set_owner) */
    size_t first_pages; /* cached when it arrived: promoted = now - this  */
    unsigned rounds;    /* promotions waited for                         */
    int nenv;
    zmq_msg_t env[ENV_MAX];
    pc_lookup_req req;
    struct parked *next;
    uint32_t data[];   /* tokens, then the namespace bytes               */
} parked;

/* Who the request at hand comes from (resolved once per request, lazily:
 * ping and hello never pay for it). */
typedef struct caller {
    uint64_t owner;                /* lease owner tag; 0: the host itself */
    bool admin;
    bool revoked;                  /* a CURVE key no longer listed        */
    const pc_rpc_allow_entry *ent; /* its tenant patterns (NULL: any)     */
    char name[64];                 /* for log lines                       */
} caller;

struct pc_rpc_server {
    void *zctx, *sock;
    void *zap;          /* ZAP handler (CURVE only): inproc REP          */
    bool curve, tcp, tcp_open; /* tcp_open: insecure_tcp, not loopback */
    pc_rpc_allow *allow;
    zmq_msg_t *cur_msg, *cur_rid; /* the request's payload and routing id */
    caller who;
    bool who_done;
    uint64_t denied_logged_ms, denied_unlogged;
    uint64_t zap_logged_ms, zap_unlogged;
    pc_cache *cache;
    pc_rpc_events *events; /* NULL: no events.* in STATS */
    pc_rpc_hooks hooks;
    pc_proto_limits lim;
    uint32_t page_tokens, capacity;
    char endpoint[512];        /* ZMQ_LAST_ENDPOINT                     */
    char *ipc_path, *lock_path; /* ipc file endpoints only (else NULL)  */
    int lock_fd;
    uint32_t ipc_mode, ipc_gid;
    bool ipc_chgrp;

    pc_decoder dec;
    msgpack_sbuffer sb; /* the reply, reused request after request      */
    msgpack_packer pk;
    uint32_t *ids, *ids2; /* scratch: lookup / alloc / canon block ids  */
    size_t ids_cap, ids2_cap;
    zmq_msg_t env[ENV_MAX];
    char err[ERR_MAX]; /* the failing request's error text              */
    char aerr[ERR_MAX]; /* lookup: the failed allocation's text         */
    msgpack_sbuffer cfg_sb; /* config: the knobs, packed by the host    */
    stat_list stats;        /* stats: the entries of the reply being sent */
    pc_cache_desc desc;     /* hello: the pool as the cache describes it */

    pc_rpc_stats st;
    /* Latency per op: lat[op][b] requests in bucket b (not cumulative; the
     * last is beyond the largest bound), and their total in nanoseconds. */
    uint64_t lat[PC_OP_COUNT][LAT_NB + 1];
    uint64_t lat_sum_ns[PC_OP_COUNT];
    char lat_name[PC_OP_COUNT][LAT_NAMES][48];
    pc_rpc_watch watch;
    uint64_t t0_ms;
    /* Random per server: hello gives it, and a client that mapped the
     * pool names it in lookup/alloc/insert, so that a daemon restarted
     * underneath it (same endpoint, a new pool) refuses its block ids
     * instead of letting it resolve them in the dead pool's mapping. */
    uint64_t instance;
    /* Lines above it are not even formatted (a request costs no formatting
     * when DEBUG is off); the host pushes changes (set_log_level). */
    int log_level;
    uint64_t dropped_logged_ms, dropped_unlogged;
    /* Lease deadlines wake the loop through a timerfd rather than a poll
     * timeout: poll can then sleep without a timer of its own (no hrtimer,
     * no clock reads per wait), and since renewals only push deadlines
     * later, the timer is re-armed about once per TTL, not per request. */
    int tfd;
    uint64_t armed_at; /* coarse ms the timer fires at; 0: disarmed     */
    int wakeup_fd;
    /* lookups parked on promotions; op_lookup's word on the one at hand */
    parked *parked;
    uint32_t nparked;
    uint64_t park_job;
    size_t park_first, resumed_first;
    bool resuming, last_round;
    char *cfg_err; /* during create: where its last ERROR line goes */
    size_t cfg_errlen;
};

/* ---- small helpers -------------------------------------------------------- */

static uint64_t mono_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

const char *pc_rpc_log_level_name(int level)
{
    return level >= PC_LOG_ERROR && level <= PC_LOG_DEBUG ? level_names[level]
                                                          : NULL;
}

void pc_rpc_server_set_log_level(pc_rpc_server *s, int level)
{
    if (s && level >= PC_LOG_ERROR && level <= PC_LOG_DEBUG)
        s->log_level = level;
}

static void slog(pc_rpc_server *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void slog(pc_rpc_server *s, int level, const char *fmt, ...)
{
    if (s && level > s->log_level && !(level == PC_LOG_ERROR && s->cfg_err))
        return; /* the host would drop it anyway: skip the formatting */
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (s && level == PC_LOG_ERROR && s->cfg_err) /* create's caller reads it */
        snprintf(s->cfg_err, s->cfg_errlen, "%s", buf);
    if (s && s->hooks.log) {
        s->hooks.log(s->hooks.ctx, level, buf);
        return;
    }
    if (level <= PC_LOG_INFO) /* no host logger: stderr, INFO and up */
        fprintf(stderr, "prefixcache rpc %s: %s\n", level_names[level], buf);
}

/* Format the error text of the current request; returns code. */
static int fail(pc_rpc_server *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(pc_rpc_server *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return code;
}

static int grow(uint32_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < n)
        c *= 2;
    uint32_t *b = realloc(*buf, c * sizeof(*b));
    if (!b)
        return PC_E_NOMEM;
    *buf = b;
    *cap = c;
    return 0;
}

/* A namespace for log and error lines: printable ASCII as is, else hex. */
static const char *ns_text(const char *ns, size_t len, char *buf, size_t cap)
{
    size_t i, o = 0;
    int printable = 1;
    for (i = 0; i < len; i++)
        if (ns[i] < 0x20 || ns[i] > 0x7e)
            printable = 0;
    if (printable) {
        snprintf(buf, cap, "'%.*s'", (int)(len > 64 ? 64 : len), ns);
        return buf;
    }
    o = (size_t)snprintf(buf, cap, "0x");
    for (i = 0; i < len && o + 3 < cap && i < 32; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%02x", (unsigned char)ns[i]);
    return buf;
}

/* ---- housekeeping --------------------------------------------------------- */

static void resume_parked(pc_rpc_server *s);

static void housekeeping(pc_rpc_server *s)
{
    /* The common case (no deadline due) costs one heap peek and one
     * clock read: this runs after every request. */
    if (pc_cache_next_deadline_ms(s->cache) == 0) {
        pc_cache_stats before, after;
        pc_cache_stats_get(s->cache, &before);
        size_t n = pc_cache_expire(s->cache);
        pc_cache_stats_get(s->cache, &after);
        uint64_t freed = after.pool.free - before.pool.free;
        if (n)
            slog(s, PC_LOG_INFO,
                 "expired %zu lease%s (not renewed within the TTL: a client "
                 "gone away?); %" PRIu64 " un-inserted block%s freed",
                 n, n == 1 ? "" : "s", freed, freed == 1 ? "" : "s");
    }
    resume_parked(s);
    size_t ev = pc_cache_maintain(s->cache);
    if (ev)
        slog(s, PC_LOG_DEBUG, "watermark: evicted %zu page%s", ev,
             ev == 1 ? "" : "s");
}

/* ---- who: the caller of the request at hand --------------------------------- */

/* FNV-1a: routing ids are not secrets, only distinct per connection. */
static uint64_t fnv64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The peer's uid from libzmq's Peer-Address of an ipc connection
 * (SO_PEERCRED): "HOST:uid:gid:pid", where libzmq 4.3.4 here writes
 * "localhost" for HOST (the docs show it empty); so the uid is the field
 * before the last two, whatever comes first. */
static bool ipc_uid(zmq_msg_t *m, uint32_t *uid)
{
    const char *pa = zmq_msg_gets(m, "Peer-Address");
    if (!pa)
        return false;
    const char *c3 = strrchr(pa, ':'), *c2 = NULL, *c1 = NULL;
    for (const char *p = pa; c3 && p < c3; p++)
        if (*p == ':') {
            c1 = c2;
            c2 = p;
        }
    if (!c1 || c1[1] < '0' || c1[1] > '9')
        return false;
    char *end;
    unsigned long u = strtoul(c1 + 1, &end, 10);
    if (end != c2 || u > UINT32_MAX)
        return false;
    *uid = (uint32_t)u;
    return true;
}

/*
 * CURVE: the User-Id the ZAP handler gave the connection (its Z85 key),
 * looked up in the allow-list in force now (so a key removed by a reload
 * loses its open connections' service too).  ipc: the peer's uid; the
 * daemon's own uid and root are admins.  tcp without CURVE: the
 * connection; admin on loopback (as before CURVE existed), never on an
 * insecure_tcp endpoint.
 */
static const caller *who(pc_rpc_server *s)
{
    caller *c = &s->who;
    if (s->who_done)
        return c;
    s->who_done = true;
    memset(c, 0, sizeof(*c));
    if (!s->cur_msg) { /* pc_rpc_server_handle_payload: the host itself */
        c->admin = true;
        snprintf(c->name, sizeof(c->name), "the host");
        return c;
    }
    uint32_t uid;
    if (s->curve) {
        const char *k = zmq_msg_gets(s->cur_msg, "User-Id");
        c->ent = pc_rpc_allow_key(s->allow, k);
        snprintf(c->name, sizeof(c->name), "key %.40s", k ? k : "?");
        if (!c->ent) {
            c->revoked = true;
            c->owner = k ? pc_rpc_owner_of_key(k) : PC_RPC_OWNER_KEY;
            return c;
        }
        c->admin = c->ent->admin;
        c->owner = c->ent->owner;
    } else if (!s->tcp && ipc_uid(s->cur_msg, &uid)) {
        c->owner = PC_RPC_OWNER_UID | uid;
        c->ent = pc_rpc_allow_uid(s->allow, uid);
        c->admin = uid == (uint32_t)geteuid() || uid == 0 ||
                   (c->ent && c->ent->admin);
        snprintf(c->name, sizeof(c->name), "uid %lu", (unsigned long)uid);
    } else {
        const void *rid = s->cur_rid ? zmq_msg_data(s->cur_rid) : "";
        size_t n = s->cur_rid ? zmq_msg_size(s->cur_rid) : 0;
        c->owner = PC_RPC_OWNER_CONN | (fnv64(rid, n) & PC_RPC_OWNER_MASK);
        c->admin = s->tcp && !s->tcp_open;
        snprintf(c->name, sizeof(c->name), "connection %016llx",
                 (unsigned long long)(c->owner & PC_RPC_OWNER_MASK));
    }
    if (c->admin)
        c->ent = NULL; /* an admin is bound to no namespace */
    return c;
}

/* At most one line a second for refusals: a client probing namespaces or
 * admin ops must not flood the log. */
static bool log_slot(uint64_t *last, uint64_t *unlogged)
{
    uint64_t now = mono_ms(CLOCK_MONOTONIC_COARSE);
    if (*last && now - *last < 1000) {
        ++*unlogged;
        return false;
    }
    *last = now;
    return true;
}

/* Refuse with PC_E_PERM.  The text names only the caller's own request,
 * never what the cache holds: a refusal looks the same whatever exists. */
static int deny(pc_rpc_server *s, const char *op, const char *why)
{
    const caller *c = who(s);
    if (log_slot(&s->denied_logged_ms, &s->denied_unlogged)) {
        slog(s, PC_LOG_WARN, "refused %s from %s: %s (%" PRIu64 " more "
             "refusals since the last report)", op, c->name, why,
             s->denied_unlogged);
        s->denied_unlogged = 0;
    }
    return fail(s, PC_E_PERM, "%s: %s", op, why);
}

static const char *op_ns(const pc_request *r, pc_wire_str *ns)
{
    switch (r->op) {
    case PC_OP_LOOKUP: *ns = r->u.lookup.ns; return "lookup";
    case PC_OP_INSERT: *ns = r->u.insert.ns; return "insert";
    default: return NULL;
    }
}

/* Everything authorization says about a decoded request, before any of it
 * runs (so a refused request changes nothing, not even a counter of the
 * namespace it named).  Sets the cache's lease owner for the op. */
static int authorize(pc_rpc_server *s, const pc_request *r)
{
    if (r->op == PC_OP_PING || r->op == PC_OP_HELLO)
        return 0;
    const caller *c = who(s);
    const char *opn = pc_op_name(r->op);
    if (c->revoked)
        return deny(s, opn, "this client's key is no longer on the daemon's "
                    "allow-list");
    switch (r->op) {
    case PC_OP_FLUSH:
        return c->admin ? 0 : deny(s, "flush", "an admin op (this client is "
                                   "not an admin)");
    case PC_OP_CONFIG:
        /* get too: knobs name namespaces (priorities, quotas, pins) and
         * files, which a tenant must not learn. */
        return c->admin ? 0 : deny(s, "config", "an admin op (this client "
                                   "is not an admin)");
    case PC_OP_STATS:
        return !r->u.stats.check || c->admin
                   ? 0 : deny(s, "stats", "check is an admin option (it walks "
                              "the whole cache)");
    default:
        break;
    }
    pc_wire_str ns = {NULL, 0};
    const char *what = op_ns(r, &ns);
    if (what && !pc_rpc_allow_ns(c->ent, ns.p, ns.n))
        return deny(s, what, "this client may not use that namespace (see its "
                    "patterns on the daemon's allow-list)");
    pc_cache_set_owner(s->cache, c->owner);
    return 0;
}

/* ---- per-op handlers: pack the reply's fields after the head, or return a
 * negative code with s->err set (and nothing packed, nothing changed) ---- */

/* The cache says which lease, limit or count refused the call. */
static int cache_fail(pc_rpc_server *s, int rc, const char *what)
{
    const char *why = pc_cache_why(s->cache);
    if (rc == PC_E_NOMEM)
        return fail(s, rc, "%s: out of memory in the daemon", what);
    return fail(s, rc, "%s: %s", what, why[0] ? why : pc_strerror(rc));
}

/* Every op's reply; the handler fills its member, handle() encodes it. */
typedef union reply_any {
#define PC__REP(NAME, wire, low) pc_##low##_rep low;
    PC_OP_TABLE(PC__REP)
#undef PC__REP
} reply_any;

static pc_wire_str cstr(const char *s)
{
    return (pc_wire_str){s, strlen(s)};
}

static int op_hello(pc_rpc_server *s, const pc_hello_req *r, pc_hello_rep *o)
{
    if (r->version && r->version != PC_PROTO_MAJOR)
        return fail(s, PC_E_VERSION, "client speaks protocol %" PRIu64
                    ", daemon speaks %d", r->version, PC_PROTO_MAJOR);
    pc_cache_desc *d = &s->desc; /* its strings must outlive the encoding */
    pc_cache_describe(s->cache, d);
    o->version = PC_PROTO_MAJOR;
    o->version_minor = PC_PROTO_MINOR;
    PC_SET(o, hello_rep, instance, s->instance);
    o->page_tokens = d->layout.page_tokens;
    o->layers = d->layout.layers;
    o->kv_heads = d->layout.kv_heads;
    o->head_dim = d->layout.head_dim;
    o->dtype = cstr(pc_dtype_name(d->layout.dtype));
    o->block_bytes = d->layout.block_bytes;
    o->token_bytes = d->layout.token_bytes;
    o->kv_bytes = d->layout.kv_bytes;
    o->capacity = d->capacity;
    o->backend = cstr(d->backend);
    if (d->shm_name) {
        PC_SET(o, hello_rep, shm_name, cstr(d->shm_name));
        PC_SET(o, hello_rep, shm_bytes, d->shm_bytes);
    }
    if (d->device_ops) { /* a cuda pool: what an engine imports (5.1) */
        PC_SET(o, hello_rep, device_ops, cstr(d->device_ops));
        PC_SET(o, hello_rep, device_uuid,
               ((pc_wire_str){(const char *)d->device_uuid,
                              sizeof(d->device_uuid)}));
        PC_SET(o, hello_rep, ipc_handle,
               ((pc_wire_str){(const char *)d->ipc_handle,
                              sizeof(d->ipc_handle)}));
    }
    if (d->tier2) {
        PC_SET(o, hello_rep, tier2, cstr(d->tier2));
        PC_SET(o, hello_rep, tier2_pages, d->tier2_pages);
    }
    o->lease_ttl_ms = d->lease_ttl_ms;
    o->max_tokens = s->lim.max_tokens;
    o->max_msg = s->lim.max_msg;
    return 0;
}

static int op_lookup(pc_rpc_server *s, const pc_lookup_req *r, pc_lookup_rep *o)
{
    size_t np = r->tokens.n / s->page_tokens;
    bool pin = r->pin || r->promote; /* what is promoted is for reading */
    unsigned flags = (pin ? PC_CACHE_PIN : 0) |
                     (r->no_cache ? PC_CACHE_NO_CACHE : 0) |
                     (r->no_count ? PC_CACHE_NO_COUNT : 0);
    if (r->promote && s->desc.tier2 && !s->last_round) {
        uint64_t job;
        size_t first;
        int rc = pc_cache_promote(s->cache, r->ns.p, r->ns.n, r->tokens.p,
                                  r->tokens.n, &job, &first);
        if (rc && rc != PC_E_NOSPACE) /* no room: answer what is cached */
            return cache_fail(s, rc, "lookup with promote");
        if (!s->resuming)
            s->resumed_first = first;
        if (job) {
            if (!s->resuming && s->nparked >= PARKED_MAX)
                return fail(s, PC_E_LIMIT, "lookup with promote: %u lookups "
                            "already wait for promotions", PARKED_MAX);
            s->park_job = job;
            s->park_first = s->resumed_first;
            return PARKED;
        }
    }
    if (grow(&s->ids, &s->ids_cap, np) ||
        (r->alloc && grow(&s->ids2, &s->ids2_cap, np)))
        return fail(s, PC_E_NOMEM, "lookup: out of memory for %zu block ids", np);
    pc_lookup_result lr;
    int rc = r->alloc
                 ? pc_cache_lookup_alloc(s->cache, r->ns.p, r->ns.n, r->tokens.p,
                                         r->tokens.n, flags, r->lease, s->ids,
                                         s->ids2, &lr)
                 : pc_cache_lookup(s->cache, r->ns.p, r->ns.n, r->tokens.p,
                                   r->tokens.n, flags, r->lease, s->ids, &lr);
    if (rc)
        return cache_fail(s, rc, pin ? "lookup with pin" : "lookup");
    o->tokens = lr.tokens;
    o->blocks = (pc_wire_ids){s->ids, lr.pages};
    o->lease = lr.lease;
    if (s->desc.tier2)
        PC_SET(o, lookup_rep, tier2_tokens, lr.tier2_pages * s->page_tokens);
    if (r->promote && s->desc.tier2)
        PC_SET(o, lookup_rep, promoted_tokens,
               lr.pages > s->resumed_first
                   ? (lr.pages - s->resumed_first) * s->page_tokens : 0);
    if (!r->alloc)
        return 0;
    /* The lookup stands: a failed alloc is reported in alloc_status. */
    PC_SET(o, lookup_rep, alloc_status, lr.alloc_status);
    PC_SET(o, lookup_rep, alloc_blocks, ((pc_wire_ids){s->ids2, lr.alloc_n}));
    if (lr.alloc_status) {
        cache_fail(s, lr.alloc_status, "alloc");
        snprintf(s->aerr, sizeof(s->aerr), "%s", s->err);
        s->err[0] = 0;
        PC_SET(o, lookup_rep, alloc_error, cstr(s->aerr));
    }
    return 0;
}

static int op_alloc(pc_rpc_server *s, const pc_alloc_req *r, pc_alloc_rep *o)
{
    /* n <= max_tokens <= UINT32_MAX: checked by the decoder and create */
    if (grow(&s->ids2, &s->ids2_cap, r->n))
        return fail(s, PC_E_NOMEM, "alloc: out of memory for %" PRIu64 " ids", r->n);
    uint64_t lease = r->lease;
    int rc = pc_cache_alloc(s->cache, (uint32_t)r->n, &lease, s->ids2);
    if (rc)
        return cache_fail(s, rc, "alloc");
    o->lease = lease;
    o->blocks = (pc_wire_ids){s->ids2, (size_t)r->n};
    return 0;
}

static int op_insert(pc_rpc_server *s, const pc_insert_req *r, pc_insert_rep *o)
{
    size_t np = r->tokens.n / s->page_tokens;
    if (r->blocks.n != np)
        return fail(s, PC_E_INVAL,
                    "insert: %zu tokens make %zu full page%s of %u tokens, but "
                    "%zu block%s given (one per full page)", r->tokens.n, np,
                    np == 1 ? "" : "s", s->page_tokens, r->blocks.n,
                    r->blocks.n == 1 ? " was" : "s were");
    if (r->pin && r->no_cache)
        return fail(s, PC_E_INVAL, "insert: pin and no_cache together (no_cache "
                    "caches nothing to pin)");
    if (grow(&s->ids, &s->ids_cap, np))
        return fail(s, PC_E_NOMEM, "insert: out of memory for %zu ids", np);
    pc_insert_result ir;
    int rc = pc_cache_insert_pin(s->cache, r->ns.p, r->ns.n, r->tokens.p,
                                 r->tokens.n, r->blocks.p, r->lease,
                                 (r->pin ? PC_CACHE_PIN : 0) |
                                     (r->no_cache ? PC_CACHE_NO_CACHE : 0),
                                 s->ids, &ir);
    switch (rc) {
    case 0:
        break;
    case PC_E_PERM:
        return fail(s, rc, "insert: a block is neither the page's cached block "
                    "nor LEASED by lease 0x%" PRIx64 " (allocate it first)", r->lease);
    case PC_E_RANGE:
        return fail(s, rc, "insert: a block id is beyond the pool (capacity %u)",
                    s->capacity);
    case PC_E_INVAL: /* all else was checked before: the vetting's verdict */
        return fail(s, rc, "insert: the same block id is given for two pages");
    default:
        return cache_fail(s, rc, "insert");
    }
    /* Release only after a successful insert: a rejected insert must leave
     * the lease (and its blocks) for the client to retry. */
    if (r->release && r->lease) {
        int rr = pc_cache_release(s->cache, r->lease);
        assert(rr == 0); /* the insert just renewed it */
        (void)rr;
    }
    o->cached_tokens = ir.cached_tokens;
    o->inserted_pages = ir.inserted_pages;
    o->freed_blocks = ir.freed_blocks;
    o->canon = (pc_wire_ids){s->ids, np};
    return 0;
}

static int op_release(pc_rpc_server *s, const pc_release_req *r)
{
    int rc = pc_cache_release(s->cache, r->lease);
    return rc ? cache_fail(s, rc, "release") : 0;
}


static const char *const op_stat_names[PC_OP_COUNT] = {
#define PC__OP_STAT(NAME, wire, low) "rpc.op." wire,
    PC_OP_TABLE(PC__OP_STAT)
#undef PC__OP_STAT
};

static void pack_stats(msgpack_packer *pk, void *ctx)
{
    const stat_list *l = ctx;
    msgpack_pack_map(pk, l->n);
    for (size_t i = 0; i < l->n; i++)
        pc_pack_kv_u64(pk, l->kv[i].name, l->kv[i].v);
}

static void add_stat(void *ctx, const char *name, uint64_t v)
{
    stat_list *l = ctx;
    /* Per-namespace rows name namespaces: admins only (SECURITY.md). */
    if (l->no_ns && name[0] == 'n' && strncmp(name, "ns.", 3) == 0)
        return;
    assert(l->n < sizeof(l->kv) / sizeof(l->kv[0]));
    if (l->n < sizeof(l->kv) / sizeof(l->kv[0]))
        l->kv[l->n++] = (stat_kv){name, v};
}

void pc_rpc_server_stats_visit(const pc_rpc_server *s, pc_stat_fn fn, void *ctx)
{
    if (!s || !fn)
        return;
    if (s->cache)
        pc_cache_stats_visit(s->cache, fn, ctx); /* tree, evict, pool, leases, cache */
    fn(ctx, "rpc.requests", s->st.requests);
    fn(ctx, "rpc.errors", s->st.errors);
    fn(ctx, "rpc.dropped", s->st.dropped);
    fn(ctx, "rpc.bytes_in", s->st.bytes_in);
    fn(ctx, "rpc.bytes_out", s->st.bytes_out);
    for (int i = 0; i < PC_OP_COUNT; i++)
        fn(ctx, op_stat_names[i], s->st.by_op[i]);
    if (s->events) {
        pc_rpc_events_stats es;
        pc_rpc_events_stats_get(s->events, &es);
        fn(ctx, "events.batches", es.batches);
        fn(ctx, "events.events", es.events);
        fn(ctx, "events.bytes", es.bytes);
        fn(ctx, "events.send_failed", es.send_failed);
        fn(ctx, "events.replays", es.replays);
        fn(ctx, "events.replay_dropped_batches", es.replay_dropped);
        fn(ctx, "events.lost_pages", es.lost_pages);
        fn(ctx, "events.queue_waits", es.queue_waits);
    }
    fn(ctx, "uptime_ms", mono_ms(CLOCK_MONOTONIC) - s->t0_ms);
    /* Last: the longest part, which readers that keep a bounded map (the
     * test harness) can afford to lose. */
    for (int op = 0; op < PC_OP_COUNT; op++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= LAT_NB; b++) { /* cumulative, as Prometheus's */
            cum += s->lat[op][b];
            fn(ctx, s->lat_name[op][b], cum);
        }
        fn(ctx, s->lat_name[op][LAT_NB + 1], s->lat_sum_ns[op]);
        fn(ctx, s->lat_name[op][LAT_NB + 2], cum);
    }
}

static int op_stats(pc_rpc_server *s, const pc_stats_req *r, pc_stats_rep *o)
{
    if (r->check)
        PC_SET(o, stats_rep, check, pc_cache_check(s->cache));
    stat_list *l = &s->stats;
    l->n = 0;
    l->no_ns = !who(s)->admin;
    pc_rpc_server_stats_visit(s, add_stat, l);
    o->stats = (pc_wire_map){NULL, pack_stats, l};
    return 0;
}

static int op_flush(pc_rpc_server *s, const pc_flush_req *r, pc_flush_rep *o)
{
    size_t evicted = 0, t2 = 0;
    char nsb[160];
    if (PC_IS_SET(r, flush_req, ns)) {
        int rc = pc_cache_flush_ns(s->cache, r->ns.p, r->ns.n, &evicted);
        if (rc)
            return fail(s, rc, "flush of namespace %s: %s",
                        ns_text(r->ns.p, r->ns.n, nsb, sizeof(nsb)),
                        pc_strerror(rc));
        t2 = pc_cache_flush_tier2(s->cache, r->ns.p, r->ns.n, false);
        slog(s, PC_LOG_INFO, "flush namespace %s: %zu page%s evicted, %zu from "
             "tier 2 (pinned pages stay)", ns_text(r->ns.p, r->ns.n, nsb,
             sizeof(nsb)), evicted, evicted == 1 ? "" : "s", t2);
    } else {
        /* one call, so that KV events can say "all cleared" */
        pc_cache_flush_all(s->cache, &evicted, &t2);
        slog(s, PC_LOG_INFO, "flush all namespaces: %zu page%s evicted, %zu "
             "from tier 2 (pinned pages stay)", evicted, evicted == 1 ? "" : "s",
             t2);
    }
    o->evicted = evicted;
    if (s->desc.tier2)
        PC_SET(o, flush_rep, tier2_evicted, t2);
    return 0;
}

/* The host packs the knobs into s->cfg_sb first (it may fail half-way);
 * the reply then copies those bytes as the value of "config". */
static void pack_raw(msgpack_packer *pk, void *ctx)
{
    const msgpack_sbuffer *sb = ctx;
    pk->callback(pk->data, sb->data, sb->size);
}

static int op_config(pc_rpc_server *s, const pc_config_req *r, pc_config_rep *o)
{
    const msgpack_object *set = r->set.obj;
    if (!s->hooks.config_get || (set && !s->hooks.config_set))
        return fail(s, PC_E_BADOP, "config: this server has no configuration");
    const msgpack_object *names = r->get.obj;
    msgpack_object keys = {.type = MSGPACK_OBJECT_ARRAY};
    msgpack_object *kv = NULL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->cfg_sb, msgpack_sbuffer_write);
    if (set && names) {
        /* get's names are checked before set changes anything: a refused
         * request changes nothing. */
        msgpack_sbuffer_clear(&s->cfg_sb);
        int rc = s->hooks.config_get(s->hooks.ctx, names, &pk, s->err,
                                     sizeof(s->err));
        if (rc)
            return s->err[0] ? rc : fail(s, rc, "config get: %s", pc_strerror(rc));
    }
    if (set) {
        /* Checked as a whole by the host: all knobs or none. */
        int rc = s->hooks.config_set(s->hooks.ctx, set, s->err, sizeof(s->err));
        if (rc)
            return s->err[0] ? rc : fail(s, rc, "config set: %s", pc_strerror(rc));
        if (!names) { /* reply with the new values of what was set */
            uint32_t n = set->via.map.size;
            if (n && !(kv = malloc(n * sizeof(*kv))))
                return fail(s, PC_E_NOMEM, "config: out of memory");
            for (uint32_t i = 0; i < n; i++)
                kv[i] = set->via.map.ptr[i].key;
            keys.via.array.size = n;
            keys.via.array.ptr = kv;
            names = &keys;
        }
    }
    msgpack_sbuffer_clear(&s->cfg_sb);
    int rc = s->hooks.config_get(s->hooks.ctx, names, &pk, s->err, sizeof(s->err));
    free(kv);
    if (rc)
        return s->err[0] ? rc : fail(s, rc, "config get: %s", pc_strerror(rc));
    o->config = (pc_wire_map){NULL, pack_raw, &s->cfg_sb};
    return 0;
}

/* Decode, run and pack the reply of one payload into s->sb. */
/* PC_E_STALE for a request naming another server's instance (1.3). */
static int same_instance(pc_rpc_server *s, const pc_request *r)
{
    bool set;
    uint64_t v;
    switch (r->op) {
    case PC_OP_LOOKUP:
        set = PC_IS_SET(&r->u.lookup, lookup_req, instance);
        v = r->u.lookup.instance;
        break;
    case PC_OP_ALLOC:
        set = PC_IS_SET(&r->u.alloc, alloc_req, instance);
        v = r->u.alloc.instance;
        break;
    case PC_OP_INSERT:
        set = PC_IS_SET(&r->u.insert, insert_req, instance);
        v = r->u.insert.instance;
        break;
    default:
        return 0;
    }
    if (!set || v == s->instance)
        return 0;
    return fail(s, PC_E_STALE, "%s: this daemon (instance %016" PRIx64 ") is "
                "not the one whose hello this client had (%016" PRIx64 "): it "
                "restarted, and its pool is a new one; say hello again and map "
                "the pool it names", pc_op_name(r->op), s->instance, v);
}

static int handle(pc_rpc_server *s, const void *buf, size_t len, pc_request *r)
{
    s->err[0] = 0;
    s->who_done = false;
    msgpack_sbuffer_clear(&s->sb);
    int rc = pc_wire_decode_request(&s->dec, buf, len, &s->lim, r);
    if (r->op >= 0 && r->op < PC_OP_COUNT)
        s->st.by_op[r->op]++; /* before running it: stats counts itself */
    reply_any o;
    memset(&o, 0, sizeof(o));
    if (rc) {
        snprintf(s->err, sizeof(s->err), "%s",
                 s->dec.err[0] ? s->dec.err : pc_strerror(rc));
    } else if ((rc = authorize(s, r)) == 0 && (rc = same_instance(s, r)) == 0) {
        switch (r->op) {
        case PC_OP_HELLO: rc = op_hello(s, &r->u.hello, &o.hello); break;
        case PC_OP_LOOKUP: rc = op_lookup(s, &r->u.lookup, &o.lookup); break;
        case PC_OP_ALLOC: rc = op_alloc(s, &r->u.alloc, &o.alloc); break;
        case PC_OP_INSERT: rc = op_insert(s, &r->u.insert, &o.insert); break;
        case PC_OP_RELEASE: rc = op_release(s, &r->u.release); break;
        case PC_OP_STATS: rc = op_stats(s, &r->u.stats, &o.stats); break;
        case PC_OP_PING: break;
        case PC_OP_FLUSH: rc = op_flush(s, &r->u.flush, &o.flush); break;
        case PC_OP_CONFIG: rc = op_config(s, &r->u.config, &o.config); break;
        default: rc = fail(s, PC_E_BADOP, "unknown op"); break; /* not reached */
        }
    }
    if (rc == PARKED)
        return rc; /* answered when its promotion is done */
    if (rc)
        s->st.errors++;
    pc_wire_encode_reply(&s->pk, r->op, r->id, rc, s->err, &o);
    return rc;
}

/* ---- the socket ------------------------------------------------------------ */

static void dropped(pc_rpc_server *s, const char *why)
{
    s->st.dropped++;
    /* At most one line a second: a misbehaving peer must not flood the log. */
    uint64_t now = mono_ms(CLOCK_MONOTONIC_COARSE);
    if (s->dropped_logged_ms && now - s->dropped_logged_ms < 1000) {
        s->dropped_unlogged++;
        return;
    }
    slog(s, PC_LOG_WARN, "dropped a message: %s (%" PRIu64 " more dropped "
         "since the last report)", why, s->dropped_unlogged);
    s->dropped_logged_ms = now;
    s->dropped_unlogged = 0;
}

/* Send the envelope frames then the reply; the envelope is consumed. */
static void send_reply(pc_rpc_server *s, int nenv)
{
    int i = 0, ok = 1;
    for (; i < nenv && ok; i++) {
        if (zmq_msg_send(&s->env[i], s->sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            ok = 0;
        zmq_msg_close(&s->env[i]); /* a no-op after a successful send */
    }
    for (; i < nenv; i++)
        zmq_msg_close(&s->env[i]);
    if (ok && zmq_send(s->sock, s->sb.data, s->sb.size, ZMQ_DONTWAIT) >= 0) {
        s->st.bytes_out += s->sb.size;
        return;
    }
    /* ROUTER drops replies to vanished peers silently; this is a full
     * send queue (the peer does not read) or a closing socket. */
    slog(s, PC_LOG_DEBUG, "reply not sent: %s", zmq_strerror(zmq_errno()));
}

/* Two vDSO clock reads per request (~20 ns each): the price of the
 * latency histograms, next to microseconds of handling. */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void time_request(pc_rpc_server *s, int op, uint64_t ns)
{
    if (op < 0 || op >= PC_OP_COUNT)
        return; /* undecodable: no op to file it under (rpc.errors has it) */
    size_t b = 0;
    while (b < LAT_NB && ns > lat_bounds_us[b] * 1000) /* 13 bounds: a short scan */
        b++;
    s->lat[op][b]++;
    s->lat_sum_ns[op] += ns;
}

/* Keep a lookup until its promotion is done: the envelope moves in, the
 * namespace and tokens are copied (they live in the request's frame). */
static void park(pc_rpc_server *s, int nenv, uint64_t id, const pc_lookup_req *r)
{
    parked *p = malloc(sizeof(*p) + r->tokens.n * sizeof(uint32_t) + r->ns.n);
    if (!p) { /* answer now, from what is cached: the promotion goes on */
        for (int i = 0; i < nenv; i++)
            zmq_msg_close(&s->env[i]);
        slog(s, PC_LOG_WARN, "lookup id=%" PRIu64 ": no memory to wait for "
             "its promotion; not answered", id);
        return;
    }
    p->job = s->park_job;
    p->id = id;
    p->owner = who(s)->owner;
    p->first_pages = s->park_first;
    p->rounds = 1;
    p->nenv = nenv;
    for (int i = 0; i < nenv; i++) {
        zmq_msg_init(&p->env[i]);
        zmq_msg_move(&p->env[i], &s->env[i]);
        zmq_msg_close(&s->env[i]);
    }
    p->req = *r;
    memcpy(p->data, r->tokens.p, r->tokens.n * sizeof(uint32_t));
    char *ns = (char *)(p->data + r->tokens.n);
    memcpy(ns, r->ns.p, r->ns.n);
    p->req.tokens.p = p->data;
    p->req.ns.p = ns;
    p->next = s->parked;
    s->parked = p;
    s->nparked++;
    slog(s, PC_LOG_DEBUG, "lookup id=%" PRIu64 " waits for promotion %" PRIu64,
         id, p->job);
}

/* Promotions done: run each lookup parked on one again; it answers, or
 * parks on the promotion of the pages after (a run is promoted in parts
 * when the pool has room only for some of it). */
static void resume_parked(pc_rpc_server *s)
{
    uint64_t done[64];
    size_t n;
    while ((n = pc_cache_poll(s->cache, done, 64)) > 0) {
        for (parked **pp = &s->parked; *pp;) {
            parked *p = *pp;
            size_t i = 0;
            while (i < n && done[i] != p->job)
                i++;
            if (i == n) {
                pp = &p->next;
                continue;
            }
            s->err[0] = 0;
            msgpack_sbuffer_clear(&s->sb);
            reply_any o;
            memset(&o, 0, sizeof(o));
            s->resuming = true;
            s->last_round = p->rounds >= PARK_ROUNDS_MAX;
            s->resumed_first = p->first_pages;
            pc_cache_set_owner(s->cache, p->owner); /* its pin's lease */
            int rc = op_lookup(s, &p->req, &o.lookup);
            s->resuming = s->last_round = false;
            if (rc == PARKED) {
                p->job = s->park_job;
                p->rounds++;
                pp = &p->next;
                continue;
            }
            if (rc)
                s->st.errors++;
            pc_wire_encode_reply(&s->pk, PC_OP_LOOKUP, p->id, rc, s->err, &o);
            for (int k = 0; k < p->nenv; k++) {
                zmq_msg_init(&s->env[k]);
                zmq_msg_move(&s->env[k], &p->env[k]);
                zmq_msg_close(&p->env[k]);
            }
            send_reply(s, p->nenv);
            *pp = p->next;
            s->nparked--;
            free(p);
        }
        if (n < 64)
            break;
    }
}

/* Receive and answer one message: 1 answered, 2 consumed but dropped, 0
 * none ready, negative on a fatal socket error. */
static int serve_one(pc_rpc_server *s)
{
    zmq_msg_t part;
    int nenv = 0, first = 1, over = 0;
    size_t env_bytes = 0;
    for (;;) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, s->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&part);
            if (e == EINTR && !first)
                continue; /* the rest of a multipart is already queued */
            for (int i = 0; i < nenv; i++)
                zmq_msg_close(&s->env[i]);
            if (first && (e == EAGAIN || e == EINTR))
                return 0;
            if (!first) { /* libzmq delivers multiparts whole: not expected */
                dropped(s, "truncated multipart message");
                return 2;
            }
            slog(s, PC_LOG_ERROR, "receive on %s: %s", s->endpoint, zmq_strerror(e));
            return PC_E_IO;
        }
        first = 0;
        if (!zmq_msg_more(&part))
            break;
        env_bytes += zmq_msg_size(&part);
        if (nenv < ENV_MAX && env_bytes <= ENV_BYTES_MAX) {
            s->env[nenv++] = part;
        } else {
            over = 1;
            zmq_msg_close(&part);
        }
    }
    size_t len = zmq_msg_size(&part);
    s->st.bytes_in += len + env_bytes;
    if (nenv == 0 || over) {
        for (int i = 0; i < nenv; i++)
            zmq_msg_close(&s->env[i]);
        zmq_msg_close(&part);
        dropped(s, over ? "an envelope of more than 32 frames or 64 KiB"
                        : "a single frame: no envelope to reply to");
        return 2;
    }
    s->st.requests++;
    pc_request r;
    /* The request borrows from the frame: keep it until the reply is out. */
    uint64_t t0 = mono_ns();
    s->cur_msg = &part; /* who(): its properties (User-Id, Peer-Address) */
    s->cur_rid = &s->env[0];
    int rc = handle(s, zmq_msg_data(&part), len, &r);
    s->cur_msg = s->cur_rid = NULL;
    time_request(s, r.op, mono_ns() - t0);
    if (s->log_level >= PC_LOG_DEBUG) {
        const char *op = pc_op_name(r.op);
        size_t nt = r.op == PC_OP_LOOKUP ? r.u.lookup.tokens.n
                    : r.op == PC_OP_INSERT ? r.u.insert.tokens.n : 0;
        uint64_t lease = r.op == PC_OP_LOOKUP ? r.u.lookup.lease
                         : r.op == PC_OP_INSERT ? r.u.insert.lease
                         : r.op == PC_OP_ALLOC ? r.u.alloc.lease
                         : r.op == PC_OP_RELEASE ? r.u.release.lease : 0;
        slog(s, PC_LOG_DEBUG, "request id=%" PRIu64 " op=%s bytes=%zu "
             "tokens=%zu lease=0x%" PRIx64 " -> %d%s%s", r.id, op ? op : "?",
             len, nt, lease, rc, rc ? " " : "", rc ? s->err : "");
    }
    if (rc == PARKED)
        park(s, nenv, r.id, &r.u.lookup);
    else
        send_reply(s, nenv);
    zmq_msg_close(&part);
    return 1;
}

/* ---- ZAP (RFC 27): the CURVE handshake asks us about each client key ----- */

static void zap_send(pc_rpc_server *s, const zmq_msg_t *reqid, const char *code,
                     const char *text, const char *user)
{
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, (zmq_msg_t *)reqid);
    zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_msg_send(&id, s->zap, ZMQ_SNDMORE);
    zmq_msg_close(&id);
    zmq_send(s->zap, code, 3, ZMQ_SNDMORE);
    zmq_send(s->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(s->zap, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(s->zap, "", 0, 0); /* metadata: none */
}

/*
 * One ZAP request: [version, request id, domain, address, routing id,
 * mechanism, credentials...]; for CURVE the one credential is the client's
 * 32-byte public key.  Listed: 200 with the Z85 key as User-Id (each
 * request's frames carry it, who() looks it up again, so a reload that
 * drops the key cuts its service at once).  Else 400, logged with the key
 * and the address (at most a line a second).
 */
static bool zap_serve(pc_rpc_server *s)
{
    zmq_msg_t f[8];
    int n = pc_rpc_recv_parts(s->zap, f, 8);
    if (n == 0)
        return false; /* nothing there */
    char key[PC_CURVE_KEY_LEN + 1] = "", addr[64] = "";
    const char *code = "400", *text = "unknown client key";
    if (n >= 7 && zmq_msg_size(&f[0]) == 3 &&
        memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0 &&
        zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&f[6]) == 32) {
        zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
        size_t al = zmq_msg_size(&f[3]);
        snprintf(addr, sizeof(addr), "%.*s", (int)(al < 63 ? al : 63),
                 (const char *)zmq_msg_data(&f[3]));
        if (pc_rpc_allow_key(s->allow, key)) {
            code = "200";
            text = "OK";
        }
    } else {
        text = "not a CURVE handshake";
    }
    if (n >= 2)
        zap_send(s, &f[1], code, text, code[0] == '2' ? key : "");
    if (code[0] != '2' &&
        log_slot(&s->zap_logged_ms, &s->zap_unlogged)) {
        slog(s, PC_LOG_WARN, "refused a client from %s: key %s is not on the "
             "allow-list (%s; %" PRIu64 " more refusals since the last report)",
             addr[0] ? addr : "?", key[0] ? key : "?", text, s->zap_unlogged);
        s->zap_unlogged = 0;
    } else if (code[0] == '2') {
        slog(s, PC_LOG_DEBUG, "client key %s from %s accepted", key, addr);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return true;
}

void pc_rpc_server_set_allow(pc_rpc_server *s, pc_rpc_allow *a)
{
    if (!s) {
        pc_rpc_allow_free(a);
        return;
    }
    pc_rpc_allow_free(s->allow);
    s->allow = a;
}

/*
 * Decide how the endpoint is protected, before it is bound: CURVE (a ZAP
 * handler bound first, so that no handshake ever runs without it), or
 * none for ipc and loopback tcp, or none with a warning for insecure_tcp;
 * a tcp endpoint open to the network without either is refused.
 *
 * Why the ZAP handler is served by the loop rather than a thread: the
 * allow-list then belongs to one thread, so a reload swaps it between two
 * requests with no lock, and a handshake (once per connection) costs the
 * loop microseconds.  The price: a handshake waits for the request at hand.
 */
static int setup_auth(pc_rpc_server *s, const pc_rpc_config *cfg)
{
    const char *ep = cfg->endpoint;
    s->tcp = strncmp(ep, "tcp://", 6) == 0;
    bool keys = cfg->curve_secret_key && cfg->curve_secret_key[0];
    if (keys && !s->tcp) {
        slog(s, PC_LOG_INFO, "curve_key_file: not used on %s (an ipc endpoint: "
             "uids identify its clients)", ep);
        keys = false;
    }
    if (!s->tcp)
        return 0;
    bool loop = pc_rpc_tcp_loopback(ep);
    if (!keys) {
        if (loop)
            return 0;
        if (!cfg->insecure_tcp) {
            slog(s, PC_LOG_ERROR, "%s is not a loopback address: a tcp endpoint "
                 "open to the network needs CURVE (curve_key_file and "
                 "allow_list_file; docs/SECURITY.md), or insecure_tcp = true "
                 "to run it unauthenticated; refusing to start", ep);
            return PC_E_INVAL;
        }
        s->tcp_open = true;
        slog(s, PC_LOG_WARN, "insecure_tcp: %s is open to the network without "
             "CURVE: anyone who reaches it may look up, insert, allocate and "
             "read the stats of every namespace (admin ops are refused over "
             "it); use CURVE keys (docs/SECURITY.md)", ep);
        return 0;
    }
    if (!zmq_has("curve")) {
        slog(s, PC_LOG_ERROR, "curve_key_file: this libzmq has no CURVE");
        return PC_E_INVAL;
    }
    if (!s->allow || pc_rpc_allow_count(s->allow) == 0) {
        slog(s, PC_LOG_ERROR, "curve_key_file is set but allow_list_file lists "
             "no client key: no client could connect");
        return PC_E_INVAL;
    }
    int one = 1;
    if (!(s->zap = zmq_socket(s->zctx, ZMQ_REP)) ||
        zmq_setsockopt(s->zap, ZMQ_LINGER, (int[]){0}, sizeof(int)) ||
        zmq_bind(s->zap, "inproc://zeromq.zap.01") ||
        zmq_setsockopt(s->sock, ZMQ_ZAP_DOMAIN, "prefixcache", 11) ||
        zmq_setsockopt(s->sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) ||
        zmq_setsockopt(s->sock, ZMQ_CURVE_SECRETKEY, cfg->curve_secret_key,
                       PC_CURVE_KEY_LEN)) {
        slog(s, PC_LOG_ERROR, "CURVE setup: %s", zmq_strerror(zmq_errno()));
        return PC_E_IO;
    }
    s->curve = true;
    slog(s, PC_LOG_INFO, "CURVE on %s: server key %s, %zu allow-list "
         "entr%s", ep, cfg->curve_public_key ? cfg->curve_public_key : "?",
         pc_rpc_allow_count(s->allow),
         pc_rpc_allow_count(s->allow) == 1 ? "y" : "ies");
    return 0;
}

/* Never sleep past a lease deadline: expiry is what frees a crashed
 * engine's pins and blocks.  Arm the timer when the earliest deadline is
 * earlier than what it is armed for (a spurious early wakeup is harmless:
 * the loop finds nothing to expire and re-arms). */
static void arm_deadline(pc_rpc_server *s, uint64_t now)
{
    uint64_t dl = pc_cache_next_deadline_ms(s->cache);
    if (dl == UINT64_MAX || (s->armed_at && s->armed_at <= now + dl))
        return;
    uint64_t ms = dl ? dl : 1; /* 0 would disarm */
    struct itimerspec its = {{0, 0}, {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L}};
    if (timerfd_settime(s->tfd, 0, &its, NULL) == 0)
        s->armed_at = now + ms;
}

int pc_rpc_server_attach(pc_rpc_server *s, pc_cache *cache)
{
    if (!s || !cache || s->cache)
        return PC_E_INVAL;
    s->cache = cache;
    pc_cache_describe(s->cache, &s->desc);
    s->page_tokens = s->desc.layout.page_tokens;
    s->capacity = s->desc.capacity;
    return 0;
}

void pc_rpc_server_set_events(pc_rpc_server *s, pc_rpc_events *ev)
{
    if (s)
        s->events = ev;
}

int pc_rpc_server_poll(pc_rpc_server *s, int timeout_ms)
{
    if (!s || !s->cache)
        return PC_E_INVAL;
    arm_deadline(s, mono_ms(CLOCK_MONOTONIC_COARSE));
    /* Fixed slots (an fd of -1 never fires): the socket, the lease timer,
     * the wakeup fd, the cache's (a promotion done), the host's watch fd. */
    int wfd = pc_cache_wait_fd(s->cache);
    zmq_pollitem_t it[6] = {{s->sock, 0, ZMQ_POLLIN, 0},
                            {NULL, s->tfd, ZMQ_POLLIN, 0},
                            {NULL, s->wakeup_fd > 0 ? s->wakeup_fd : -1, ZMQ_POLLIN, 0},
                            {NULL, wfd >= 0 ? wfd : -1, ZMQ_POLLIN, 0},
                            {NULL, s->watch.fd > 0 ? s->watch.fd : -1, ZMQ_POLLIN, 0},
                            {s->zap, -1, ZMQ_POLLIN, 0}};
    int nit = s->zap ? 6 : s->watch.fd > 0 ? 5 : wfd >= 0 ? 4
              : s->wakeup_fd > 0 ? 3 : 2;
    if (timeout_ms < 0)
        timeout_ms = -1;
    if (s->watch.fd > 0 && s->watch.timeout_ms) {
        int wt = s->watch.timeout_ms(s->watch.ctx);
        if (wt >= 0 && (timeout_ms < 0 || wt < timeout_ms))
            timeout_ms = wt;
    }
    int rc = zmq_poll(it, nit, timeout_ms);
    if (s->watch.fd > 0 && s->watch.ready &&
        (rc == 0 || (rc > 0 && (it[4].revents & ZMQ_POLLIN))))
        s->watch.ready(s->watch.ctx); /* a timeout may be the watch's own */
    if (rc > 0 && (it[1].revents & ZMQ_POLLIN)) {
        uint64_t ticks;
        if (read(s->tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
            slog(s, PC_LOG_WARN, "lease timer: %s", strerror(errno));
        s->armed_at = 0;
    }
    if (rc > 0 && s->zap && (it[5].revents & ZMQ_POLLIN))
        for (int k = 0; k < 64 && zap_serve(s); k++) { /* requests wait too */
        }
    if (rc > 0 && wfd >= 0 && (it[3].revents & ZMQ_POLLIN))
        pc_cache_wait_fd_drain(s->cache); /* then housekeeping polls */
    if (rc > 0 && s->wakeup_fd > 0 && (it[2].revents & ZMQ_POLLIN)) {
        /* Drained here, where it woke us: the caller tests its flags after
         * we return, so nothing is lost and nothing stays readable. */
        char buf[64];
        while (read(s->wakeup_fd, buf, sizeof(buf)) > 0) {
        }
    }
    if (rc < 0) {
        if (zmq_errno() == EINTR)
            return 0; /* a signal: let the caller look at its flags */
        slog(s, PC_LOG_ERROR, "poll on %s: %s", s->endpoint,
             zmq_strerror(zmq_errno()));
        return PC_E_IO;
    }
    int n = 0;
    for (int i = 0; rc > 0 && (it[0].revents & ZMQ_POLLIN) && i < DRAIN_MAX; i++) {
        int k = serve_one(s);
        if (k < 0)
            return k;
        if (k == 0)
            break;
        if (k == 1) {
            n++;
            housekeeping(s); /* between requests */
        }
    }
    if (n == 0)
        housekeeping(s); /* a timeout may have been a lease deadline */
    return n;
}

/* ---- life cycle ------------------------------------------------------------ */

/* PC_E_PERM (logged) when path exists and is not ours: a squatter. */
static int not_ours(pc_rpc_server *s, const char *path, const char *what)
{
    struct stat st;
    if (lstat(path, &st) != 0 || st.st_uid == geteuid())
        return 0;
    slog(s, PC_LOG_ERROR, "%s %s belongs to uid %lu, not to us (uid %lu): "
         "another user holds this path; not touching it (use an endpoint in "
         "a directory only we can write, such as the default)", what, path,
         (unsigned long)st.st_uid, (unsigned long)geteuid());
    return PC_E_PERM;
}

/* Take "<path>.lock" (created 0600) with flock: whoever holds it owns the
 * endpoint.  The inode check closes a race with a server that is just
 * shutting down: it unlinks the lock file while we wait on the old inode. */
static int take_lock(pc_rpc_server *s)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        int rc = not_ours(s, s->lock_path, "the lock file");
        if (rc)
            return rc;
        int fd = open(s->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                      0600);
        if (fd < 0) {
            slog(s, PC_LOG_ERROR, "cannot create the lock file %s: %s",
                 s->lock_path, strerror(errno));
            return PC_E_IO;
        }
        struct stat own;
        if (fstat(fd, &own) != 0 || own.st_uid != geteuid() ||
            !S_ISREG(own.st_mode)) {
            close(fd); /* swapped in since the check: look again */
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK) {
                slog(s, PC_LOG_ERROR, "endpoint %s is in use: another server "
                     "holds %s", s->endpoint, s->lock_path);
                return PC_E_BUSY;
            }
            slog(s, PC_LOG_ERROR, "flock %s: %s", s->lock_path, strerror(e));
            return PC_E_IO;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(s->lock_path, &b) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            s->lock_fd = fd;
            return 0;
        }
        close(fd); /* unlinked under us: try the new file */
    }
    slog(s, PC_LOG_ERROR, "cannot take %s: it keeps changing", s->lock_path);
    return PC_E_BUSY;
}

/* Parse the endpoint; for an ipc file, take the lock and clear a stale
 * socket file. */
static int claim_endpoint(pc_rpc_server *s, const char *ep)
{
    if (strncmp(ep, "tcp://", 6) == 0 && ep[6])
        return 0;
    if (strncmp(ep, "ipc://", 6) != 0 || !ep[6]) {
        slog(s, PC_LOG_ERROR, "unsupported endpoint '%s' (use ipc://PATH or "
             "tcp://HOST:PORT)", ep);
        return PC_E_INVAL;
    }
    const char *path = ep + 6;
    if (path[0] == '@')
        return 0; /* Linux abstract socket: no file; bind says EADDRINUSE */
    size_t n = strlen(path);
    if (n >= 108) { /* sun_path */
        slog(s, PC_LOG_ERROR, "ipc path %s is too long (%zu bytes; a Unix "
             "socket path holds at most 107)", path, n);
        return PC_E_INVAL;
    }
    if (!(s->ipc_path = strdup(path)) || !(s->lock_path = malloc(n + 6)))
        return PC_E_NOMEM;
    memcpy(s->lock_path, path, n);
    memcpy(s->lock_path + n, ".lock", 6);
    int rc = take_lock(s);
    if (rc || (rc = not_ours(s, path, "the socket file")))
        return rc;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            slog(s, PC_LOG_ERROR, "%s exists and is not a socket: not "
                 "replacing it", path);
            return PC_E_INVAL;
        }
        /* We hold the lock, so no live server owns this: a stale file. */
        slog(s, PC_LOG_INFO, "replacing the stale socket file %s", path);
        unlink(path);
    }
    return 0;
}

/* Warn when the mode lets group or others connect but the directory does
 * not let them reach the socket: the daemon changes no directory's mode
 * (the default ones are per user; a shared one is the operator's). */
static void check_dir_search(pc_rpc_server *s)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s", s->ipc_path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else
        slash[slash == dir] = 0; /* "/x.sock" -> "/" */
    struct stat st;
    if (stat(dir, &st) != 0)
        return;
    bool grp = (s->ipc_mode & 060) &&
               !((st.st_mode & S_IXGRP) &&
                 st.st_gid == (s->ipc_chgrp ? s->ipc_gid : getegid())) &&
               !(st.st_mode & S_IXOTH);
    bool oth = (s->ipc_mode & 006) && !(st.st_mode & S_IXOTH);
    if (grp || oth)
        slog(s, PC_LOG_WARN, "the socket's mode %04o lets %s connect, but its "
             "directory %s (mode %04o) does not let them reach it: give the "
             "directory the search bit (0710 with the socket's group, or "
             "0711)", (unsigned)s->ipc_mode, grp ? "its group" : "others",
             dir, (unsigned)(st.st_mode & 07777));
}

/* Bind, with the socket file born 0600 and then given its group and mode.
 * umask is process-wide: during these microseconds a file another thread
 * creates gets a narrower mode, never a wider one; the daemon's other
 * threads (libzmq's I/O thread, the prefault thread) create no files.
 * libzmq binds an ipc socket in the calling thread, inside zmq_bind. */
/* chmod without following a symlink.  fchmodat's AT_SYMLINK_NOFOLLOW is
 * not there everywhere (older glibc: ENOTSUP; glibc 2.32-2.38 without /proc:
 * EOPNOTSUPP); then lstat says it is a socket of ours and a plain chmod
 * follows -- we hold the endpoint's lock, so nobody else swaps the file. */
static int chmod_socket(const char *path, mode_t mode)
{
    if (fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (errno != ENOTSUP && errno != EOPNOTSUPP)
        return -1;
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
        errno = EPERM;
        return -1;
    }
    return chmod(path, mode);
}

static int bind_socket(pc_rpc_server *s, const char *ep)
{
    mode_t old = s->ipc_path ? umask(0177) : 0;
    int rc = zmq_bind(s->sock, ep);
    int e = zmq_errno();
    if (s->ipc_path)
        umask(old);
    if (rc < 0) {
        rc = e == EADDRINUSE ? PC_E_BUSY
             : (e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO ||
                e == ENODEV || e == ENAMETOOLONG) ? PC_E_INVAL : PC_E_IO;
        slog(s, PC_LOG_ERROR, "cannot bind %s: %s%s", ep, zmq_strerror(e),
             rc == PC_E_BUSY ? " (another process listens there)" : "");
        return rc;
    }
    if (!s->ipc_path)
        return 0;
    /* NOFOLLOW: never chmod what a symlink swapped in would point to */
    if (s->ipc_chgrp && fchownat(AT_FDCWD, s->ipc_path, (uid_t)-1,
                                 (gid_t)s->ipc_gid, AT_SYMLINK_NOFOLLOW) != 0) {
        slog(s, PC_LOG_ERROR, "cannot give %s to group %lu: %s", s->ipc_path,
             (unsigned long)s->ipc_gid, strerror(errno));
        return PC_E_IO;
    }
    if (chmod_socket(s->ipc_path, (mode_t)s->ipc_mode) != 0) {
        slog(s, PC_LOG_ERROR, "cannot set mode %04o on %s: %s",
             (unsigned)s->ipc_mode, s->ipc_path, strerror(errno));
        return PC_E_IO;
    }
    if (s->ipc_mode & 077)
        check_dir_search(s);
    return 0;
}

int pc_rpc_server_create(const pc_rpc_config *cfg, pc_rpc_server **out)
{
    if (!out) {
        pc_rpc_allow_free(cfg ? cfg->allow : NULL);
        return PC_E_INVAL;
    }
    *out = NULL;
    if (!cfg || !cfg->endpoint) {
        pc_rpc_allow_free(cfg ? cfg->allow : NULL);
        return PC_E_INVAL;
    }
    pc_rpc_server *s = calloc(1, sizeof(*s));
    if (!s) {
        pc_rpc_allow_free(cfg->allow);
        return PC_E_NOMEM;
    }
    s->allow = cfg->allow;
    s->lock_fd = -1;
    s->tfd = -1;
    s->wakeup_fd = cfg->wakeup_fd > 0 ? cfg->wakeup_fd : 0;
    s->watch = cfg->watch;
    if (s->watch.fd < 0)
        s->watch.fd = 0;
    for (int op = 0; op < PC_OP_COUNT; op++) {
        const char *w = pc_op_name(op);
        for (size_t b = 0; b < LAT_NB; b++)
            snprintf(s->lat_name[op][b], sizeof(s->lat_name[op][b]),
                     "rpc.latency.%s.bucket_us.%" PRIu64, w, lat_bounds_us[b]);
        snprintf(s->lat_name[op][LAT_NB], 48, "rpc.latency.%s.bucket_us.inf", w);
        snprintf(s->lat_name[op][LAT_NB + 1], 48, "rpc.latency.%s.sum_ns", w);
        snprintf(s->lat_name[op][LAT_NB + 2], 48, "rpc.latency.%s.count", w);
    }
    s->hooks = cfg->hooks;
    if (cfg->err && cfg->errlen) {
        s->cfg_err = cfg->err;
        s->cfg_errlen = cfg->errlen;
        cfg->err[0] = 0;
    }
    s->lim = cfg->limits;
    s->ipc_mode = cfg->ipc_mode ? cfg->ipc_mode : 0600;
    s->ipc_chgrp = cfg->ipc_chgrp;
    s->ipc_gid = cfg->ipc_gid;
    if (!s->lim.max_msg)
        s->lim.max_msg = PC_PROTO_MAX_MSG_DEFAULT;
    if (!s->lim.max_tokens)
        s->lim.max_tokens = PC_PROTO_MAX_TOKENS_DEFAULT;
    if (cfg->cache)
        pc_rpc_server_attach(s, cfg->cache);
    s->t0_ms = mono_ms(CLOCK_MONOTONIC);
    while (!s->instance) /* a clock mix if getrandom is short: not a secret */
        if (getrandom(&s->instance, sizeof(s->instance), GRND_NONBLOCK) !=
            (ssize_t)sizeof(s->instance))
            s->instance = mono_ns() ^ ((uint64_t)getpid() << 32);
    snprintf(s->endpoint, sizeof(s->endpoint), "%s", cfg->endpoint);
    pc_decoder_init(&s->dec);
    msgpack_sbuffer_init(&s->sb);
    msgpack_sbuffer_init(&s->cfg_sb);
    msgpack_packer_init(&s->pk, &s->sb, msgpack_sbuffer_write);
    /* No host logger: stderr, INFO and up; a host's logger filters by
     * itself until the host says its level (set_log_level). */
    s->log_level = s->hooks.log ? PC_LOG_DEBUG : PC_LOG_INFO;

    int rc = PC_E_INVAL;
    if (s->lim.max_tokens > UINT32_MAX || s->lim.max_msg > INT64_MAX - MSG_SLACK) {
        slog(s, PC_LOG_ERROR, "limits out of range (max_tokens %zu, max_msg %zu)",
             s->lim.max_tokens, s->lim.max_msg);
        goto fail;
    }
    if (s->ipc_mode > 0777) {
        slog(s, PC_LOG_ERROR, "ipc_mode %o is beyond 0777", (unsigned)s->ipc_mode);
        rc = PC_E_RANGE;
        goto fail;
    }
    if ((rc = claim_endpoint(s, cfg->endpoint)))
        goto fail;
    rc = PC_E_IO;
    if ((s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
        slog(s, PC_LOG_ERROR, "timerfd: %s", strerror(errno));
        goto fail;
    }
    if (!(s->zctx = zmq_ctx_new()) || !(s->sock = zmq_socket(s->zctx, ZMQ_ROUTER))) {
        slog(s, PC_LOG_ERROR, "zmq: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int zero = 0;
    int64_t maxmsg = (int64_t)(s->lim.max_msg + MSG_SLACK);
    if (zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof(zero)) ||
        zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg))) {
        slog(s, PC_LOG_ERROR, "zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if ((rc = setup_auth(s, cfg)))
        goto fail;
    if ((rc = bind_socket(s, cfg->endpoint)))
        goto fail;
    size_t len = sizeof(s->endpoint);
    if (zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &len))
        snprintf(s->endpoint, sizeof(s->endpoint), "%s", cfg->endpoint);
    s->cfg_err = NULL; /* only create's own failures go there */
    *out = s;
    return 0;
fail:
    s->cfg_err = NULL;
    pc_rpc_server_destroy(s);
    return rc;
}

void pc_rpc_server_destroy(pc_rpc_server *s)
{
    if (!s)
        return;
    if (s->sock)
        zmq_close(s->sock); /* LINGER 0: pending replies are dropped */
    if (s->zap)
        zmq_close(s->zap);
    if (s->zctx)
        zmq_ctx_term(s->zctx);
    /* The files go while we still hold the lock, so nobody else can have
     * bound the path in between. */
    if (s->lock_fd >= 0) {
        if (s->sock)
            unlink(s->ipc_path); /* libzmq may have removed it already */
        unlink(s->lock_path);
        close(s->lock_fd);
    }
    if (s->tfd >= 0)
        close(s->tfd);
    free(s->ipc_path);
    free(s->lock_path);
    pc_rpc_allow_free(s->allow);
    pc_decoder_free(&s->dec);
    msgpack_sbuffer_destroy(&s->sb);
    msgpack_sbuffer_destroy(&s->cfg_sb);
    free(s->ids);
    free(s->ids2);
    while (s->parked) {
        parked *p = s->parked;
        s->parked = p->next;
        for (int i = 0; i < p->nenv; i++)
            zmq_msg_close(&p->env[i]);
        free(p);
    }
    free(s);
}

const char *pc_rpc_server_endpoint(const pc_rpc_server *s)
{
    return s ? s->endpoint : NULL;
}

void pc_rpc_server_stats(const pc_rpc_server *s, pc_rpc_stats *out)
{
    if (!out)
        return;
    if (!s)
        memset(out, 0, sizeof(*out));
    else
        *out = s->st;
}

/* ---- one payload without the socket (tests, fuzzers; rpc.h) ---------------- */

int pc_rpc_server_handle_payload(pc_rpc_server *s, const void *req, size_t len,
                                 const void **reply, size_t *reply_len)
{
    if (reply)
        *reply = NULL;
    if (reply_len)
        *reply_len = 0;
    if (!s || !s->cache || (!req && len))
        return PC_E_INVAL;
    /* pc_rpc_server_poll runs housekeeping after every request, after its
     * reply is sent; here it runs before the next payload instead, since a
     * resumed lookup reuses s->sb, which holds the reply handed out. */
    housekeeping(s);
    /* serve_one's path for a payload it kept, less the frames. */
    s->st.requests++;
    s->st.bytes_in += len;
    pc_request r;
    uint64_t t0 = mono_ns();
    int rc = handle(s, req ? req : "", len, &r);
    time_request(s, r.op, mono_ns() - t0);
    if (rc == PARKED) {
        /* No envelope: its reply, when the promotion is done, goes to no
         * peer (ROUTER drops it), as for a client that went away. */
        park(s, 0, r.id, &r.u.lookup);
        return 1;
    }
    s->st.bytes_out += s->sb.size;
    if (reply)
        *reply = s->sb.data;
    if (reply_len)
        *reply_len = s->sb.size;
    return 0;
}

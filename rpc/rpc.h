/*
 * rpc/rpc.h - the prefixcache server: a ZeroMQ ROUTER socket in front of one
 * pc_cache, driven by one thread that owns all state (no locks).
 *
 * Wire protocol: proto/PROTOCOL.md.  In short: the daemon binds a ROUTER;
 * clients use DEALER or REQ.  A request is a multipart message whose LAST
 * frame is the msgpack payload; every frame before it is the envelope
 * (ROUTER's identity frame, REQ's empty delimiter, any others), echoed
 * unchanged before the reply payload.  A message whose envelope is too big
 * to echo (more than 32 frames or 64 KiB) is dropped and logged.
 *
 * Requests and replies (all maps; replies always carry id, status and, when
 * status < 0, error; unknown request keys are ignored; tokens/blocks are bin
 * of little-endian uint32, or arrays of uint for scripting):
 *
 *   hello   {version?}                  -> {version, version_minor,
 *             page_tokens, layers, kv_heads, head_dim, dtype (str),
 *             block_bytes, token_bytes, kv_bytes, capacity (blocks),
 *             backend ("host"|"none"|"cuda"), shm_name (host), shm_bytes
 *             (host), device_ops/device_uuid/ipc_handle (cuda),
 *             tier2/tier2_pages (a second tier), lease_ttl_ms, max_tokens,
 *             max_msg}
 *   lookup  {ns, tokens, pin?, lease?, alloc?} -> {tokens (matched count),
 *             blocks (bin), lease: the lease holding this request's pin or
 *             allocation (a named lease with pin comes back even when nothing
 *             matched), else 0; a lease named without pin is renewed}; with
 *             alloc: also
 *             alloc_status (and alloc_error, text, when it failed), and
 *             alloc_blocks (bin) for the prompt's remaining
 *             full pages, allocated under the same lease (created if
 *             needed); with a second tier also tier2_tokens; promote? (pins)
 *             first copies those back, the reply parked until they are in
 *             the pool (promoted_tokens); no_cache? refreshes nothing,
 *             no_count? counts nothing
 *   alloc   {n, lease?}                  -> {lease, blocks}
 *   insert  {ns, tokens, blocks, lease?, release?} -> {cached_tokens,
 *             inserted_pages, freed_blocks, canon (bin)}; with release, the
 *             lease ends after a successful insert; pin? keeps the prefix
 *             pinned; no_cache? caches nothing
 *   release {lease}                      -> {}
 *   stats   {check?}                     -> {stats: map of dotted name ->
 *             uint, e.g. "pool.blocks.free", "tree.pages", "rpc.requests"};
 *             with check: true, also check: the result of pc_cache_check()
 *             (0 or a negative code; O(size), for tests and debugging)
 *   ping    {}                           -> {}
 * flush, config and stats' check are admin ops; a client bound to
 * namespace patterns may lookup/insert only there; leases belong to their
 * maker (PROTOCOL.md 12, docs/SECURITY.md: who() and authorize()).
 *
 *   flush   {ns?}                        -> {evicted (pages), tier2_evicted}:
 *             every unpinned page of the namespace (or of all namespaces),
 *             in the pool and in tier 2
 *   config  {get?: [names], set?: {name: value}} -> {config: {name: value}}:
 *             with set, all-or-nothing over reloadable knobs, then the new
 *             values; with neither, every knob
 *
 * Between requests the loop expires leases (pc_cache_expire) and enforces
 * the watermarks (pc_cache_maintain); it drains every ready message before
 * blocking again, and blocks no longer than the next lease deadline.
 */
#ifndef PC_RPC_H
#define PC_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "proto/proto.h"

typedef struct pc_rpc_server pc_rpc_server;

enum { PC_LOG_ERROR = 0, PC_LOG_WARN, PC_LOG_INFO, PC_LOG_DEBUG };

/* "error", "warn", "info", "debug"; NULL past the last (for config tables). */
const char *pc_rpc_log_level_name(int level);

/* One more descriptor for the loop to watch (the daemon's metrics listener:
 * libmicrohttpd's epoll fd), so that whatever serves it runs on the loop's
 * thread, between requests, and may read the cache (which has no locks).
 * ready() is called when fd is readable; timeout_ms() (may be NULL) says
 * how long the loop may sleep before ready() must run anyway (-1: no
 * limit), e.g. for the listener's idle-connection timeouts. */
typedef struct pc_rpc_watch {
    int fd; /* 0: none (fd 0 is never one) */
    void (*ready)(void *ctx);
    int (*timeout_ms)(void *ctx);
    void *ctx;
} pc_rpc_watch;

/* What the server needs from its host (the daemon) without including it. */
typedef struct pc_rpc_hooks {
    void *ctx;
    /* Log a line at a level (PC_LOG_*); NULL: stderr, INFO and up. */
    void (*log)(void *ctx, int level, const char *msg);
    /* config get: pack ONE map of name -> value for the names in `names`
     * (an array of str) or for every knob when names is NULL.  Return 0,
     * or a PC_E_* code (with err) before packing anything. */
    int (*config_get)(void *ctx, const msgpack_object *names,
                      msgpack_packer *pk, char *err, size_t errlen);
    /* config set: apply a map of name -> value, all or nothing. */
    int (*config_set)(void *ctx, const msgpack_object *set, char *err,
                      size_t errlen);
} pc_rpc_hooks;

/* ---- who may do what (rpc/auth.c, docs/SECURITY.md) -------------------- */

/* The allow-list (allow_list_file): CURVE public keys and ipc uids, each
 * with a role and, for users, namespace patterns (fnmatch globs). */
typedef struct pc_rpc_allow pc_rpc_allow;
#define PC_RPC_ALLOW_MAX 4096    /* entries in one file                  */
#define PC_RPC_PATTERNS_MAX 16   /* namespace patterns per entry          */

typedef struct pc_rpc_allow_entry {
    char key[41];      /* Z85 public key ("" for a uid entry)              */
    uint32_t uid;
    bool is_uid, admin;
    uint32_t npat;     /* 0: every namespace                               */
    char **pat;
    uint64_t owner;    /* the lease owner tag of this identity             */
} pc_rpc_allow_entry;

/* Lease owner tags (pc_cache_set_owner): the kind in the top two bits. */
#define PC_RPC_OWNER_UID (1ull << 62)  /* | uid                            */
#define PC_RPC_OWNER_KEY (2ull << 62)  /* | 62 bits of the public key      */
#define PC_RPC_OWNER_CONN (3ull << 62) /* | a hash of the routing id       */
#define PC_RPC_OWNER_MASK ((1ull << 62) - 1)

/* Parse a whole allow-list file: 0 and *out, or PC_E_* with the file, the
 * line and the reason in err (nothing is returned: a bad file is refused
 * whole). */
int pc_rpc_allow_load(const char *path, pc_rpc_allow **out, char *err,
                      size_t errlen);
void pc_rpc_allow_free(pc_rpc_allow *a);
size_t pc_rpc_allow_count(const pc_rpc_allow *a);
/* The entry of a Z85 key or a uid; NULL when not listed. */
const pc_rpc_allow_entry *pc_rpc_allow_key(const pc_rpc_allow *a,
                                           const char *z85);
const pc_rpc_allow_entry *pc_rpc_allow_uid(const pc_rpc_allow *a, uint32_t uid);
/* May the entry's client use namespace ns?  (NULL entry, admin, or no
 * patterns: any.) */
bool pc_rpc_allow_ns(const pc_rpc_allow_entry *e, const void *ns, size_t len);
uint64_t pc_rpc_owner_of_key(const char *z85);
/* 1 when a tcp:// endpoint binds a loopback address only (127.x.y.z,
 * localhost, ::1); 0 for every other (0.0.0.0, *, an interface, a name). */
int pc_rpc_tcp_loopback(const char *endpoint);

typedef struct pc_rpc_config {
    const char *endpoint;   /* "ipc:///path" or "tcp://host:port"           */
    pc_proto_limits limits; /* 0 fields: the PC_PROTO_*_DEFAULT values        */
    pc_cache *cache;        /* driven by the server, owned by the caller;
                               NULL: attached later (pc_rpc_server_attach),
                               so that the endpoint is claimed before the
                               pool is                                      */
    pc_rpc_hooks hooks;
    /* A non-blocking descriptor that, once readable, makes
     * pc_rpc_server_poll return (e.g. the read end of a pipe a signal
     * handler writes to after setting its flag, so that a signal is never
     * missed however long poll sleeps); the server reads it empty, and the
     * caller tests its flags after poll returns.  0: none (fd 0 is never
     * one). */
    int wakeup_fd;
    pc_rpc_watch watch; /* optional: one more fd for the loop (above)  */
    /* ipc file endpoints: the socket file's permission bits, set with
     * chmod after bind whatever the umask (0: 0600; at most 0777); with
     * ipc_chgrp, its group becomes ipc_gid first, so that engines under
     * another uid in that group can connect.  Who may connect is who may
     * send flush and config: never leave it to the umask. */
    uint32_t ipc_mode;
    bool ipc_chgrp;
    uint32_t ipc_gid;
    /* Authentication (docs/SECURITY.md).  curve_secret_key (40 Z85
     * characters, with curve_public_key for the log): a tcp endpoint
     * requires CURVE, clients checked by a ZAP handler against `allow`.
     * allow (may be NULL; the server owns it from create on, failure
     * included): CURVE keys and ipc uids with their roles and tenant
     * patterns.  A tcp endpoint that is not loopback refuses to start
     * without CURVE unless insecure_tcp (logged at WARN; admin ops are then
     * refused over it). */
    const char *curve_secret_key, *curve_public_key;
    pc_rpc_allow *allow;
    bool insecure_tcp;
    /* Optional: when create fails, the reason as it was logged, with the
     * OS's cause ("cannot create the lock file X: Permission denied"). */
    char *err;
    size_t errlen;
} pc_rpc_config;

/*
 * Bind the endpoint.  For ipc:// the socket file is guarded by an flock'ed
 * "<path>.lock" so that a second server on the same endpoint fails with
 * PC_E_BUSY instead of silently stealing it (libzmq would unlink and
 * rebind); a stale socket file from a crashed server is replaced.  A lock
 * or socket file that belongs to another user is never used or replaced
 * (PC_E_PERM: someone squats the path).  The socket file gets ipc_mode and
 * ipc_gid.  tcp:// in use also gives PC_E_BUSY.  PC_E_INVAL for a bad
 * endpoint, PC_E_RANGE for ipc_mode beyond 0777, PC_E_IO.
 */
int pc_rpc_server_create(const pc_rpc_config *cfg, pc_rpc_server **out);

/* The cache a server created without one serves (before the first poll;
 * requests that arrive meanwhile wait in ZeroMQ's queue).  PC_E_INVAL when
 * one is attached already. */
int pc_rpc_server_attach(pc_rpc_server *s, pc_cache *cache);

/* The KV-events publisher whose counters STATS reports (events.*), or
 * NULL; it must outlive its use by s. */
struct pc_rpc_events;
void pc_rpc_server_set_events(pc_rpc_server *s, struct pc_rpc_events *ev);

/*
 * Serve: wait up to timeout_ms (-1: no limit) for requests, a lease
 * deadline (a timerfd armed at the earliest one) or the wakeup fd, then
 * handle every ready request, then run expiry and watermarks.  Returns the
 * number of requests handled, 0 on timeout, on a deadline, on a wakeup or
 * when interrupted by a signal (EINTR: the caller checks its flags and
 * calls again), or a negative PC_E_* on a fatal socket error.
 */
int pc_rpc_server_poll(pc_rpc_server *s, int timeout_ms);

/* Replace the allow-list (a reload): the server owns a from here on and
 * frees the old one; NULL: none.  Takes effect from the next request and
 * the next handshake (a key no longer listed is refused everything on its
 * open connections too). */
void pc_rpc_server_set_allow(pc_rpc_server *s, pc_rpc_allow *a);

/* Close the socket (ZMQ_LINGER 0), remove the ipc socket and lock files. */
void pc_rpc_server_destroy(pc_rpc_server *s);

/* The most verbose level the server formats lines for (PC_LOG_*): the host
 * pushes its own, at start and whenever it changes, so that a request at
 * INFO costs no formatting of DEBUG lines and nothing is polled. */
void pc_rpc_server_set_log_level(pc_rpc_server *s, int level);

/* The endpoint actually bound (e.g. "tcp://127.0.0.1:43521" for port *). */
const char *pc_rpc_server_endpoint(const pc_rpc_server *s);

typedef struct pc_rpc_stats {
    uint64_t requests, errors, dropped; /* dropped: unanswerable messages */
    uint64_t by_op[PC_OP_COUNT];
    uint64_t bytes_in, bytes_out;
} pc_rpc_stats;

void pc_rpc_server_stats(const pc_rpc_server *s, pc_rpc_stats *out);

/*
 * Every counter the STATS reply carries, in its order: the cache's
 * (pc_cache_stats_visit), then rpc.* (requests, errors, per op), the
 * request latency histograms and uptime_ms.  STATS and the daemon's
 * /metrics both walk this one list, so they cannot disagree.  Names stay
 * valid as long as the server and its cache.
 *
 * Latency: per op, the time from a decoded-or-refused request to its
 * encoded reply (handle(): decode, run, encode; not the socket), in
 * cumulative buckets, like Prometheus's:
 *   rpc.latency.<op>.bucket_us.<N>   requests that took <= N microseconds
 *   rpc.latency.<op>.bucket_us.inf   all of them (= .count)
 *   rpc.latency.<op>.sum_ns          total nanoseconds
 *   rpc.latency.<op>.count           requests timed
 * with N in PC_RPC_LATENCY_BUCKETS_US.
 */
void pc_rpc_server_stats_visit(const pc_rpc_server *s, pc_stat_fn fn, void *ctx);

/* The bucket bounds, microseconds: µs-scale pings to second-scale stalls. */
#define PC_RPC_LATENCY_BUCKETS_US(M)                                           \
    M(5) M(10) M(25) M(50) M(100) M(250) M(500) M(1000) M(2500) M(10000)      \
    M(50000) M(250000) M(1000000)

/*
 * For tests and fuzzers, not for hosts: handle ONE request payload the way
 * the loop handles a payload it received (decode, run against the cache,
 * encode the reply; counted in the stats and latency histograms like one),
 * without the socket and without an envelope.  The loop's housekeeping
 * (lease expiry, watermarks, resumed promotions) runs first, as it runs
 * between two requests.  *reply gets the reply payload, valid until the
 * next call on s or pc_rpc_server_destroy.  Returns 0 (a reply, which may
 * carry an error status), 1 when the lookup waits for a promotion (no reply
 * now: the one that comes later goes to no peer), PC_E_INVAL when s has no
 * cache.  The server still needs pc_rpc_server_create (an ipc endpoint in
 * a private temporary directory does).
 */
int pc_rpc_server_handle_payload(pc_rpc_server *s, const void *req, size_t len,
                                 const void **reply, size_t *reply_len);

#endif /* PC_RPC_H */

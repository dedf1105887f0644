/*
 * rpc/client.h - libprefixcache, the C client of prefixcached.
 *
 * One pc_client = one ZeroMQ DEALER socket to one daemon; not thread-safe
 * (one per engine thread).  Every call has a timeout (PC_E_TIMEOUT); a reply
 * that arrives after its call timed out is recognised by its id and dropped.
 * Errors are the proto/ codes; the daemon's message for the last failed call
 * is pc_client_last_error().
 *
 * A prompt's life in two round trips:
 *
 *   pc_client_lookup(c, ns, tokens, n, PIN | ALLOC, 0, &r)
 *       r.tokens cached in r.blocks[0..r.pages), pinned under r.lease;
 *       r.alloc_blocks[0..r.n_alloc) for the remaining full pages
 *   ... read cached KV from pc_client_block(c, id), write the new KV ...
 *   pc_client_insert(c, ns, tokens, n, ids, r.lease, RELEASE, canon, &ir)
 */
#ifndef PC_CLIENT_H
#define PC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

typedef struct pc_client pc_client;

/* ---- the default endpoint (rpc/endpoint.c) -------------------------------- */

/*
 * The endpoint prefixcached listens on when none is configured, as the
 * daemon computes it: "ipc://DIR/prefixcache.sock" in the first private
 * directory (a real directory, owned by our euid, not writable by group or
 * others) of $XDG_RUNTIME_DIR, /run/prefixcache (euid 0), then
 * /tmp/prefixcache-<euid> and $HOME/.prefixcache, which are created 0700
 * when missing.  A directory that fails the check (another user made it
 * first) is skipped: nobody else can squat the path or impersonate the
 * daemon.  0; PC_E_PERM when no candidate is usable (buf gets ""),
 * PC_E_RANGE when buf is too small.  128 bytes are always enough.
 */
int pc_rpc_default_endpoint(char *buf, size_t len);
/* Room for any endpoint the daemon accepts, its terminating NUL included. */
#define PC_RPC_ENDPOINT_MAX 256

/* The same over an explicit list of candidate directories (tests; tools
 * with a policy of their own): the first usable one wins; create: make it
 * 0700 when it is missing.  NULL or relative paths are skipped. */
typedef struct pc_rpc_rundir {
    const char *path;
    bool create;
} pc_rpc_rundir;
int pc_rpc_endpoint_from(const pc_rpc_rundir *dirs, size_t n, char *buf,
                         size_t len);

/* Connect (lazily, as ZeroMQ does) to endpoint; calls wait at most
 * timeout_ms (<= 0: 5000). */
int pc_client_connect(const char *endpoint, int timeout_ms, pc_client **out);

/* ---- CURVE (docs/SECURITY.md) ----------------------------------------------- */

/* A CURVE key as text: 40 Z85 characters (32 bytes). */
#define PC_CURVE_KEY_LEN 40

/* What a client needs to talk to a daemon that requires CURVE: the daemon's
 * public key and the client's own key pair (its public key must be on the
 * daemon's allow_list_file). */
typedef struct pc_client_curve {
    char server_public[PC_CURVE_KEY_LEN + 1];
    char public_key[PC_CURVE_KEY_LEN + 1];
    char secret_key[PC_CURVE_KEY_LEN + 1];
} pc_client_curve;

/* pc_client_connect over CURVE (curve NULL: plain pc_client_connect).  A
 * daemon that does not know the key never answers: calls time out
 * (PC_E_TIMEOUT), as the handshake never completes.  PC_E_INVAL for a key
 * that is not 40 Z85 characters. */
int pc_client_connect_curve(const char *endpoint, int timeout_ms,
                            const pc_client_curve *curve, pc_client **out);

/* 1 when z85 is a well-formed CURVE key (40 Z85 characters), else 0. */
int pc_rpc_key_valid(const char *z85);

/* Read a key file ("public-key = Z85" and, for a key pair, "secret-key =
 * Z85" lines; '#' comments).  sec NULL: only the public key is read (a
 * key pair file serves too); else the secret key is required, must match
 * the public key, and the file must not be readable by group or others
 * (PC_E_PERM).  0 or PC_E_* with a readable message in err. */
int pc_rpc_keyfile_read(const char *path, char pub[PC_CURVE_KEY_LEN + 1],
                        char sec[PC_CURVE_KEY_LEN + 1], char *err,
                        size_t errlen);
/* Write a new key file (never replacing one: PC_E_BUSY when path exists):
 * with sec, a key pair file of mode 0600; without, a public key file,
 * 0644. */
int pc_rpc_keyfile_write(const char *path, const char *pub, const char *sec);
void pc_client_close(pc_client *c);
void pc_client_set_timeout(pc_client *c, int timeout_ms);

/* The daemon's message for the last failed call, or for the allocation of
 * the last lookup whose alloc_status was negative ("" if none). */
const char *pc_client_last_error(const pc_client *c);

typedef struct pc_hello {
    uint32_t version, version_minor;
    uint32_t page_tokens, layers, kv_heads, head_dim;
    char dtype[8];
    uint64_t block_bytes, token_bytes, kv_bytes, capacity;
    char backend[8];     /* "host", "none", "cuda"                      */
    char shm_name[256];  /* host                                        */
    uint64_t shm_bytes;  /* host                                        */
    uint64_t lease_ttl_ms, max_tokens, max_msg;
    /* cuda: the device operations ("cuda", or "fake": the CPU stand-in),
     * the device's UUID and the pool's IPC handle (opaque bytes: the
     * sizes are gpu/dev.h's PC_GPU_UUID_BYTES and PC_GPU_HANDLE_BYTES,
     * spelled out so that this header needs nothing of gpu/). */
    char device_ops[8];
    uint8_t device_uuid[16];
    uint8_t ipc_handle[128];
    /* a second tier (protocol 1.2): "file" or "host", "" for none, and
     * its capacity in pages */
    char tier2[8];
    uint64_t tier2_pages;
    /* the daemon's instance (protocol 1.3; 0 from older daemons): a
     * client that mapped the pool names it in lookup, alloc and insert, and
     * a restarted daemon (a new pool under the same name) refuses those
     * with PC_E_STALE until pc_client_hello maps the new pool */
    uint64_t instance;
} pc_hello;

/* Handshake: checks the protocol version (PC_E_VERSION on a different
 * major) and, for a host pool, maps it read-write into this process; for
 * a cuda pool, imports its handle on the local device whose UUID matches
 * (PC_E_PERM, with the layout filled in, when no device here has it; the
 * import is closed by pc_client_close or the next hello). */
int pc_client_hello(pc_client *c, pc_hello *out);

/* Address of block id (after hello): in the mapped host pool, or for a
 * cuda pool a device pointer into the imported allocation (host-visible
 * on the fake device); NULL for backend none or an id beyond the pool. */
void *pc_client_block(const pc_client *c, uint32_t id);

/* PROMOTE (lookup, protocol 1.2): first bring back the prompt's pages the
 * daemon's second tier holds (a copy instead of a prefill); implies PIN,
 * and the reply comes when they are in the pool, so the call's timeout
 * must cover the copy. */
/* NO_CACHE (lookup, insert; 1.2): a private or one-off prompt: a lookup
 * refreshes nothing, an insert caches nothing.  NO_COUNT (lookup; 1.2):
 * warm-up traffic, left out of the hit/miss counters. */
enum { PC_CLIENT_PIN = 1, PC_CLIENT_ALLOC = 2, PC_CLIENT_RELEASE = 4,
       PC_CLIENT_PROMOTE = 8, PC_CLIENT_NO_CACHE = 16, PC_CLIENT_NO_COUNT = 32 };

typedef struct pc_client_lookup_result {
    size_t tokens;            /* matched tokens                           */
    size_t pages;             /* = entries in blocks                      */
    const uint32_t *blocks;   /* valid until the next call on c           */
    uint64_t lease;           /* 0 when nothing was pinned or allocated   */
    int alloc_status;         /* with ALLOC: 0 or e.g. PC_E_NOSPACE (the
                                 reason: pc_client_last_error)            */
    size_t n_alloc;
    const uint32_t *alloc_blocks; /* valid until the next call on c       */
    size_t tier2_tokens;      /* after `tokens`, held by the second tier  */
    size_t promoted_tokens;   /* PROMOTE: brought back for this call      */
} pc_client_lookup_result;

int pc_client_lookup(pc_client *c, const void *ns, size_t ns_len,
                     const uint32_t *tokens, size_t n_tokens, unsigned flags,
                     uint64_t lease, pc_client_lookup_result *out);

/* n blocks under *lease (0: a new lease, written back). */
int pc_client_alloc(pc_client *c, uint32_t n, uint64_t *lease, uint32_t *ids);

typedef struct pc_client_insert_result {
    size_t cached_tokens, inserted_pages, freed_blocks;
} pc_client_insert_result;

/* flags: PC_CLIENT_RELEASE ends the lease after a successful insert;
 * PC_CLIENT_PIN keeps the inserted prefix pinned under the lease until it
 * is released (insert right after the prefill, read the pages safely while
 * decoding; not with RELEASE, needs a lease).  canon (may be NULL) receives
 * n_tokens / page_tokens canonical ids. */
int pc_client_insert(pc_client *c, const void *ns, size_t ns_len,
                     const uint32_t *tokens, size_t n_tokens,
                     const uint32_t *blocks, uint64_t lease, unsigned flags,
                     uint32_t *canon, pc_client_insert_result *out);

int pc_client_release(pc_client *c, uint64_t lease);
int pc_client_ping(pc_client *c);

/* Admin: flush one namespace (ns != NULL) or all; pinned pages stay. */
int pc_client_flush(pc_client *c, const void *ns, size_t ns_len,
                    uint64_t *evicted);

/* stats: fn is called for every counter (dotted name, value). */
typedef void (*pc_client_stat_fn)(void *ctx, const char *name, uint64_t v);
int pc_client_stats(pc_client *c, pc_client_stat_fn fn, void *ctx);

/* Admin: stats (fn may be NULL), and the daemon's consistency check of the
 * whole cache (it walks every structure: for tests, soaks and operators
 * after an incident, not for dashboards).  *check gets its verdict: 0, or
 * the first failed invariant's negative code. */
int pc_client_stats_check(pc_client *c, pc_client_stat_fn fn, void *ctx,
                          int64_t *check);

/* config: fn is called for every knob returned (value rendered as text).
 * get: name NULL = all knobs.  set: one knob, value as text (parsed by the
 * daemon according to the knob's type). */
typedef void (*pc_client_config_fn)(void *ctx, const char *name,
                                    const char *value);
int pc_client_config_get(pc_client *c, const char *name,
                         pc_client_config_fn fn, void *ctx);
int pc_client_config_set(pc_client *c, const char *name, const char *value,
                         pc_client_config_fn fn, void *ctx);

/* ---- pipelined form: send many, receive many ------------------------------ */

/* Queue a lookup / insert without waiting; returns its request id (> 0) or
 * a negative code.  Arguments are copied. */
int64_t pc_client_send_lookup(pc_client *c, const void *ns, size_t ns_len,
                              const uint32_t *tokens, size_t n_tokens,
                              unsigned flags, uint64_t lease);
int64_t pc_client_send_insert(pc_client *c, const void *ns, size_t ns_len,
                              const uint32_t *tokens, size_t n_tokens,
                              const uint32_t *blocks, uint64_t lease,
                              unsigned flags);

/* One reply of a pipelined request, in arrival order. */
typedef struct pc_client_reply {
    uint64_t id;
    int status;
    pc_client_lookup_result lookup;  /* for a lookup                       */
    pc_client_insert_result insert;  /* for an insert                      */
    const uint32_t *canon;           /* for an insert; valid until next call */
    size_t n_canon;
} pc_client_reply;

/* Wait up to the timeout for the next reply.  PC_E_TIMEOUT when none. */
int pc_client_recv(pc_client *c, pc_client_reply *out);

#endif /* PC_CLIENT_H */

/*
 * proto/wire.h - every message of the protocol, from one table.
 *
 *   PC_WIRE_<OP>_REQ / _REP (below)        one row per field: member, key,
 *        │                                 type, required?, bound
 *        ├──► typed structs                pc_lookup_req, pc_lookup_rep, ...
 *        ├──► descriptor arrays (wire.c)   key, type, offset, bound
 *        │       ├──► pc_wire_encode_request / _reply   (client, server,
 *        │       │                                       benches, tests)
 *        │       └──► pc_wire_decode_request / _reply   (the pre-validator's
 *        │                                               field checks)
 *        └──► PROTOCOL.md section 5 tables  (tests/test_codec.c compares
 *                                            them with pc_wire_fields())
 *
 * A new field is one row here (and one in PROTOCOL.md, which a test
 * enforces): no map size is counted by hand, no field is read by position.
 * Key order on the wire is the row order (the worked example in PROTOCOL.md
 * pins the bytes); a decoder accepts any order.
 *
 * Presence: each struct has `has`, a bit per row (PC_HAS(msg, member)).
 * Required rows are always encoded; optional ones only when their bit is
 * set (PC_SET sets value and bit).  A decoded struct has the bit of every
 * row that was present; absent optional rows are zero.
 *
 * Lifetime: decoded str/bytes/maps borrow from the message buffer and the
 * decoder; decoded id lists live in the decoder's buffers (host order,
 * aligned).  Both are valid until the next decode on that decoder.
 */
#ifndef PC_WIRE_H
#define PC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/errors.h"
#include "proto/limits.h"

/* ---- field types ------------------------------------------------------------ */

typedef enum pc_wire_type {
    PC_WT_UINT,  /* uint64_t: a non-negative msgpack integer                  */
    PC_WT_INT,   /* int64_t: any msgpack integer that fits                    */
    PC_WT_BOOL,  /* bool: msgpack true/false (0 and 1 are refused)            */
    PC_WT_STR,   /* pc_wire_str: msgpack str (sent as valid UTF-8)            */
    PC_WT_BYTES, /* pc_wire_str: str or bin, only the bytes count (ns)        */
    PC_WT_IDS,   /* pc_wire_ids: bin of little-endian uint32; requests also
                    accept an array of uints                                  */
    PC_WT_NAMES, /* pc_wire_map: an array (of str: checked by its user)       */
    PC_WT_MAP,   /* pc_wire_map: a map (its entries checked by its user)      */
    PC_WT_BIN,   /* pc_wire_str: msgpack bin, always (opaque bytes: a device
                    UUID, an IPC handle); a str is refused                    */
    PC_WT_COUNT
} pc_wire_type;

typedef struct pc_wire_str {
    const char *p; /* not NUL-terminated when decoded */
    size_t n;
} pc_wire_str;

typedef struct pc_wire_ids {
    const uint32_t *p;
    size_t n;
} pc_wire_ids;

/* A nested array or map: decoded, obj points into the message; to encode,
 * either obj is packed as is, or pack(pk, ctx) writes the whole value (a
 * stats visitor, a config table). */
typedef struct pc_wire_map {
    const msgpack_object *obj;
    void (*pack)(msgpack_packer *pk, void *ctx);
    void *ctx;
} pc_wire_map;

/* Bounds: 0 none; PC_WIRE_MAX_TOKENS the request's max_tokens limit (ids
 * counted, or the uint's value); else the constant itself (bytes, entries). */
#define PC_WIRE_MAX_TOKENS UINT64_MAX

/* ---- the table -----------------------------------------------------------------
 * F(struct, member, "key", TYPE, REQ|OPT, bound).  Every request also
 * carries op and id, every reply id, status and (status < 0) error: those
 * are the heads below, not rows. */

#define PC_WIRE_HELLO_REQ(F)                                                   \
    F(hello_req, version, "version", UINT, OPT, 0)

#define PC_WIRE_HELLO_REP(F)                                                   \
    F(hello_rep, version, "version", UINT, REQ, 0)                             \
    F(hello_rep, version_minor, "version_minor", UINT, REQ, 0)                 \
    F(hello_rep, page_tokens, "page_tokens", UINT, REQ, 0)                     \
    F(hello_rep, layers, "layers", UINT, REQ, 0)                               \
    F(hello_rep, kv_heads, "kv_heads", UINT, REQ, 0)                           \
    F(hello_rep, head_dim, "head_dim", UINT, REQ, 0)                           \
    F(hello_rep, dtype, "dtype", STR, REQ, 0)                                  \
    F(hello_rep, block_bytes, "block_bytes", UINT, REQ, 0)                     \
    F(hello_rep, token_bytes, "token_bytes", UINT, REQ, 0)                     \
    F(hello_rep, kv_bytes, "kv_bytes", UINT, REQ, 0)                           \
    F(hello_rep, capacity, "capacity", UINT, REQ, 0)                           \
    F(hello_rep, backend, "backend", STR, REQ, 0)                              \
    F(hello_rep, shm_name, "shm_name", STR, OPT, 0)                            \
    F(hello_rep, shm_bytes, "shm_bytes", UINT, OPT, 0)                         \
    F(hello_rep, device_ops, "device_ops", STR, OPT, 0)                        \
    F(hello_rep, device_uuid, "device_uuid", BIN, OPT, 0)                      \
    F(hello_rep, ipc_handle, "ipc_handle", BIN, OPT, 0)                        \
    F(hello_rep, tier2, "tier2", STR, OPT, 0)                                  \
    F(hello_rep, tier2_pages, "tier2_pages", UINT, OPT, 0)                     \
    F(hello_rep, lease_ttl_ms, "lease_ttl_ms", UINT, REQ, 0)                   \
    F(hello_rep, max_tokens, "max_tokens", UINT, REQ, 0)                       \
    F(hello_rep, max_msg, "max_msg", UINT, REQ, 0)                             \
    F(hello_rep, instance, "instance", UINT, OPT, 0)

#define PC_WIRE_LOOKUP_REQ(F)                                                  \
    F(lookup_req, ns, "ns", BYTES, REQ, PC_WIRE_NS_MAX)                        \
    F(lookup_req, tokens, "tokens", IDS, REQ, PC_WIRE_MAX_TOKENS)              \
    F(lookup_req, pin, "pin", BOOL, OPT, 0)                                    \
    F(lookup_req, alloc, "alloc", BOOL, OPT, 0)                                \
    F(lookup_req, lease, "lease", UINT, OPT, 0)                                \
    F(lookup_req, promote, "promote", BOOL, OPT, 0)                            \
    F(lookup_req, no_cache, "no_cache", BOOL, OPT, 0)                          \
    F(lookup_req, no_count, "no_count", BOOL, OPT, 0)                          \
    F(lookup_req, instance, "instance", UINT, OPT, 0)

#define PC_WIRE_LOOKUP_REP(F)                                                  \
    F(lookup_rep, tokens, "tokens", UINT, REQ, 0)                              \
    F(lookup_rep, blocks, "blocks", IDS, REQ, 0)                               \
    F(lookup_rep, lease, "lease", UINT, REQ, 0)                                \
    F(lookup_rep, alloc_status, "alloc_status", INT, OPT, 0)                   \
    F(lookup_rep, alloc_blocks, "alloc_blocks", IDS, OPT, 0)                   \
    F(lookup_rep, alloc_error, "alloc_error", STR, OPT, 0)                     \
    F(lookup_rep, tier2_tokens, "tier2_tokens", UINT, OPT, 0)                  \
    F(lookup_rep, promoted_tokens, "promoted_tokens", UINT, OPT, 0)

#define PC_WIRE_ALLOC_REQ(F)                                                   \
    F(alloc_req, n, "n", UINT, REQ, PC_WIRE_MAX_TOKENS)                        \
    F(alloc_req, lease, "lease", UINT, OPT, 0)                                 \
    F(alloc_req, instance, "instance", UINT, OPT, 0)

#define PC_WIRE_ALLOC_REP(F)                                                   \
    F(alloc_rep, lease, "lease", UINT, REQ, 0)                                 \
    F(alloc_rep, blocks, "blocks", IDS, REQ, 0)

#define PC_WIRE_INSERT_REQ(F)                                                  \
    F(insert_req, ns, "ns", BYTES, REQ, PC_WIRE_NS_MAX)                        \
    F(insert_req, tokens, "tokens", IDS, REQ, PC_WIRE_MAX_TOKENS)              \
    F(insert_req, blocks, "blocks", IDS, REQ, PC_WIRE_MAX_TOKENS)              \
    F(insert_req, lease, "lease", UINT, OPT, 0)                                \
    F(insert_req, release, "release", BOOL, OPT, 0)                            \
    F(insert_req, pin, "pin", BOOL, OPT, 0)                                    \
    F(insert_req, no_cache, "no_cache", BOOL, OPT, 0)                          \
    F(insert_req, instance, "instance", UINT, OPT, 0)

#define PC_WIRE_INSERT_REP(F)                                                  \
    F(insert_rep, cached_tokens, "cached_tokens", UINT, REQ, 0)                \
    F(insert_rep, inserted_pages, "inserted_pages", UINT, REQ, 0)              \
    F(insert_rep, freed_blocks, "freed_blocks", UINT, REQ, 0)                  \
    F(insert_rep, canon, "canon", IDS, REQ, 0)

#define PC_WIRE_RELEASE_REQ(F)                                                 \
    F(release_req, lease, "lease", UINT, REQ, 0)

#define PC_WIRE_RELEASE_REP(F)

#define PC_WIRE_STATS_REQ(F)                                                   \
    F(stats_req, check, "check", BOOL, OPT, 0)

#define PC_WIRE_STATS_REP(F)                                                   \
    F(stats_rep, stats, "stats", MAP, REQ, 0)                                  \
    F(stats_rep, check, "check", INT, OPT, 0)

#define PC_WIRE_PING_REQ(F)
#define PC_WIRE_PING_REP(F)

#define PC_WIRE_FLUSH_REQ(F)                                                   \
    F(flush_req, ns, "ns", BYTES, OPT, PC_WIRE_NS_MAX)

#define PC_WIRE_FLUSH_REP(F)                                                   \
    F(flush_rep, evicted, "evicted", UINT, REQ, 0)                             \
    F(flush_rep, tier2_evicted, "tier2_evicted", UINT, OPT, 0)

#define PC_WIRE_CONFIG_REQ(F)                                                  \
    F(config_req, get, "get", NAMES, OPT, 0)                                   \
    F(config_req, set, "set", MAP, OPT, 0)

#define PC_WIRE_CONFIG_REP(F)                                                  \
    F(config_rep, config, "config", MAP, REQ, 0)

/* The ops, in their numeric order (pc_op): M(NAME, "wire name", lower) */
#define PC_OP_TABLE(M)                                                         \
    M(HELLO, "hello", hello)                                                   \
    M(LOOKUP, "lookup", lookup)                                                \
    M(ALLOC, "alloc", alloc)                                                   \
    M(INSERT, "insert", insert)                                                \
    M(RELEASE, "release", release)                                             \
    M(STATS, "stats", stats)                                                   \
    M(PING, "ping", ping)                                                      \
    M(FLUSH, "flush", flush)                                                   \
    M(CONFIG, "config", config)

/* The heads' keys, and the bound of every namespace. */
#define PC_WIRE_KEY_OP "op"
#define PC_WIRE_KEY_ID "id"
#define PC_WIRE_KEY_STATUS "status"
#define PC_WIRE_KEY_ERROR "error"
#define PC_WIRE_NS_MAX PC_NS_MAX

/* ---- generated: structs, presence bits ------------------------------------------ */

#define PC__WCT_UINT uint64_t
#define PC__WCT_INT int64_t
#define PC__WCT_BOOL bool
#define PC__WCT_STR pc_wire_str
#define PC__WCT_BYTES pc_wire_str
#define PC__WCT_BIN pc_wire_str
#define PC__WCT_IDS pc_wire_ids
#define PC__WCT_NAMES pc_wire_map
#define PC__WCT_MAP pc_wire_map
#define PC__W_MEMBER(s, m, k, t, p, b) PC__WCT_##t m;
#define PC__W_BIT(s, m, k, t, p, b) PC_F_##s##_##m,

#define PC__W_STRUCTS(NAME, wire, low)                                         \
    enum { PC_WIRE_##NAME##_REQ(PC__W_BIT) PC_F_##low##_req__n };              \
    enum { PC_WIRE_##NAME##_REP(PC__W_BIT) PC_F_##low##_rep__n };              \
    typedef struct pc_##low##_req {                                            \
        uint32_t has;                                                          \
        PC_WIRE_##NAME##_REQ(PC__W_MEMBER)                                     \
    } pc_##low##_req;                                                          \
    typedef struct pc_##low##_rep {                                            \
        uint32_t has;                                                          \
        PC_WIRE_##NAME##_REP(PC__W_MEMBER)                                     \
    } pc_##low##_rep;
PC_OP_TABLE(PC__W_STRUCTS)
#undef PC__W_STRUCTS

/* The bit of a member in its struct's `has`. */
#define PC_HAS(s, m) (1u << PC_F_##s##_##m)
/* Set an optional member and its bit: PC_SET(&req, lookup_req, pin, true). */
#define PC_SET(msg, s, m, v) ((msg)->m = (v), (msg)->has |= PC_HAS(s, m))
/* Was it present (decoded) / will it be sent (encoded)? */
#define PC_IS_SET(msg, s, m) (((msg)->has & PC_HAS(s, m)) != 0)

/* A decoded request: op, id, and the op's struct. */
typedef struct pc_request {
    int op;      /* pc_op; -1 when it could not be read  */
    uint64_t id; /* echoed in the reply (0 when absent)  */
    union {
#define PC__W_UNION(NAME, wire, low) pc_##low##_req low;
        PC_OP_TABLE(PC__W_UNION)
#undef PC__W_UNION
    } u;
} pc_request;

/* A decoded reply's head. */
typedef struct pc_reply_head {
    uint64_t id;
    int64_t status;
    pc_wire_str error; /* when status < 0 */
} pc_reply_head;

/* ---- descriptors ------------------------------------------------------------------ */

typedef struct pc_wire_field {
    const char *key;
    pc_wire_type type;
    bool required;
    uint16_t offset; /* of the member in its struct */
    uint64_t bound;
    uint8_t key_len; /* strlen(key): compared first, packed as is */
} pc_wire_field;

/* The rows of op's request (reply = false) or reply, in order; *n gets the
 * count.  NULL for an unknown op. */
const pc_wire_field *pc_wire_fields(int op, bool reply, size_t *n);

/* The key of a row: PC_WIRE_KEY(hello_rep, dtype) is "dtype", for texts
 * that name a field without spelling it again. */
#define PC_WIRE_KEY(s, m) pc_wire_key(PC__W_MSG_##s, PC_F_##s##_##m)
/* msg: 2 * op + (reply ? 1 : 0), as the PC__W_MSG_* names number them */
const char *pc_wire_key(unsigned msg, unsigned field);
#define PC__W_MSGNO(NAME, wire, low) PC__W_MSG_##low##_req, PC__W_MSG_##low##_rep,
enum { PC_OP_TABLE(PC__W_MSGNO) PC__W_MSG_COUNT };
#undef PC__W_MSGNO

/* The type's name as PROTOCOL.md's tables spell it ("uint", "ids", ...). */
const char *pc_wire_type_name(pc_wire_type t);

/* ---- codec ------------------------------------------------------------------------ */

/* {op, id, rows...}: required rows always, optional ones when set. */
void pc_wire_encode_request(msgpack_packer *pk, int op, uint64_t id,
                            const void *req);

/* {id, status, rows...} for status 0; {id, status, error} otherwise (rep
 * may then be NULL).  Every str is sent as valid UTF-8 (pc_pack_str). */
void pc_wire_encode_reply(msgpack_packer *pk, int op, uint64_t id, int status,
                          const char *error, const void *rep);

typedef struct pc_proto_limits {
    size_t max_msg;    /* bytes in one payload                           */
    size_t max_tokens; /* tokens (and block ids) in one request          */
} pc_proto_limits;

/* Decoder state: the unpacked message, id-list buffers, the last reason. */
typedef struct pc_decoder {
    msgpack_unpacked up;
    uint32_t *ids[2]; /* the first and second id list of a message   */
    size_t ids_cap[2];
    char err[200];    /* the reason of the last failure              */
} pc_decoder;

void pc_decoder_init(pc_decoder *d);
void pc_decoder_free(pc_decoder *d);

/*
 * Decode one request payload, checking in the order PROTOCOL.md section 4
 * gives: size, msgpack, id, duplicates, op, then the op's rows in table
 * order (presence, type, bound) and its cross-row rules.  Limits are
 * checked before anything is allocated.  On failure: a negative code
 * (BADMSG, BADOP, TOOBIG, INVAL, NOMEM), d->err says why, and out->id holds
 * the request's id when it could be read.
 */
int pc_wire_decode_request(pc_decoder *d, const void *buf, size_t len,
                           const pc_proto_limits *lim, pc_request *out);

/*
 * Decode a reply to op: the head, and when status is 0 the op's rows into
 * rep (required ones must be there; unknown keys are ignored: newer minor
 * versions add some).  PC_E_BADMSG with d->err on a malformed reply.
 */
int pc_wire_decode_reply(pc_decoder *d, const void *buf, size_t len, int op,
                         pc_reply_head *head, void *rep);

/* The same in steps, for a client that must read the id of a reply before
 * it knows which request (and op) it answers: the head of a decoded map
 * (a missing id is 0; PC_E_BADMSG for a mistyped id, a missing or
 * impossible status), then its rows. */
int pc_wire_read_head(pc_decoder *d, const msgpack_object *map,
                      pc_reply_head *head);
int pc_wire_read_reply(pc_decoder *d, const msgpack_object *map, int op,
                       void *rep);

/* Any payload into a map (for tests and tools that read raw replies). */
int pc_payload_decode(pc_decoder *d, const void *buf, size_t len,
                      const pc_proto_limits *lim, const msgpack_object **map);

#endif /* PC_WIRE_H */

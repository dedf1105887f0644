/*
 * proto/proto.h - the wire-level vocabulary shared by every prefixcache room.
 *
 * For now: the one error enum.  Every function in the project returns 0 or one
 * of these negative codes, and the same numbers travel in the `status` field of
 * protocol replies, so the codes are stable: append new ones, never renumber.
 *
 * The table is an X-macro so that the enum, pc_strerror() and pc_errname()
 * cannot drift apart (the libuv/nng pattern).
 */
#ifndef PC_PROTO_H
#define PC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

/*      name        value  message */
#define PC_ERRNO_MAP(X)                                                        \
    X(OK,           0,   "success")                                            \
    X(INVAL,       -1,   "invalid argument")                                   \
    X(NOMEM,       -2,   "out of memory")                                      \
    X(RANGE,       -3,   "value out of range")                                 \
    X(NOTLOCKED,   -4,   "node is not locked (unlock below zero)")             \
    X(CORRUPT,     -5,   "internal invariant violated")                        \
    X(NOSPACE,     -6,   "no free blocks and nothing evictable")               \
    X(NOENT,       -7,   "no such entry")                                      \
    X(BADMSG,      -8,   "malformed message")                                  \
    X(BADOP,       -9,   "unknown operation")                                  \
    X(TOOBIG,      -10,  "message or field exceeds a limit")                   \
    X(LEASE,       -11,  "unknown or expired lease")                           \
    X(PERM,        -12,  "block is not owned by this lease")                   \
    X(STATE,       -13,  "block is in the wrong state")                        \
    X(VERSION,     -14,  "unsupported protocol version")                       \
    X(TIMEOUT,     -15,  "operation timed out")                                \
    X(IO,          -16,  "system or I/O error")                                \
    X(LIMIT,       -17,  "a configured limit was reached")                     \
    X(BUSY,        -18,  "resource busy")

enum pc_errno {
#define PC__ERR_ENUM(name, value, msg) PC_E_##name = (value),
    PC_ERRNO_MAP(PC__ERR_ENUM)
#undef PC__ERR_ENUM
};

/* Readable message for a code; never NULL ("unknown error" for strangers). */
const char *pc_strerror(int code);

/* Symbolic name of a code ("PC_E_INVAL"); never NULL. */
const char *pc_errname(int code);

/*
 * For *_check() implementations: when cond is false, print
 * "<who>: <message> [cond]" to stderr, set the local `rc` to PC_E_CORRUPT
 * and jump to the local label `out` (which frees the check's scratch).
 * Needs <stdio.h>.
 */
#define PC_CHECK_OR_OUT(who, cond, ...)                                        \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s: ", (who));                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " [%s]\n", #cond);                                 \
            rc = PC_E_CORRUPT;                                                 \
            goto out;                                                          \
        }                                                                      \
    } while (0)

/* ---- the wire protocol (see proto/PROTOCOL.md) ---------------------------- */

#define PC_PROTO_MAJOR 1
#define PC_PROTO_MINOR 0
#define PC_PROTO_NS_MAX 256u          /* bytes in a namespace                 */
#define PC_PROTO_DEPTH_MAX 4u         /* nesting of a request or reply        */
#define PC_PROTO_MAX_MSG_DEFAULT (16u << 20)
#define PC_PROTO_MAX_TOKENS_DEFAULT (1u << 20)

/*      name      wire name */
#define PC_OP_MAP(X)                                                           \
    X(HELLO,   "hello")                                                        \
    X(LOOKUP,  "lookup")                                                       \
    X(ALLOC,   "alloc")                                                        \
    X(INSERT,  "insert")                                                       \
    X(RELEASE, "release")                                                      \
    X(STATS,   "stats")                                                        \
    X(PING,    "ping")                                                         \
    X(FLUSH,   "flush")                                                        \
    X(CONFIG,  "config")

typedef enum pc_op {
#define PC__OP_ENUM(name, wire) PC_OP_##name,
    PC_OP_MAP(PC__OP_ENUM)
#undef PC__OP_ENUM
    PC_OP_COUNT
} pc_op;

const char *pc_op_name(int op);                  /* NULL when unknown */
int pc_op_parse(const char *s, size_t len);      /* PC_E_BADOP when unknown */

typedef struct pc_proto_limits {
    size_t max_msg;    /* bytes in one payload                           */
    size_t max_tokens; /* tokens (and block ids) in one request          */
} pc_proto_limits;

/*
 * Check that buf[0..len) is exactly one msgpack object, nested at most
 * max_depth deep, whose every declared length fits in the bytes that
 * remain.  msgpack-c's unpacker sizes its allocations from declared lengths;
 * after this check nothing it allocates can exceed a small multiple of len.
 * PC_E_BADMSG (with a reason in err, when not NULL) or 0.
 */
int pc_mp_validate(const void *buf, size_t len, unsigned max_depth,
                   char *err, size_t errlen);

/* A decoded request.  Borrows from the message buffer and the decoder: valid
 * until the next decode on the same decoder or the buffer is freed. */
typedef struct pc_request {
    int op;               /* pc_op                                        */
    uint64_t id;          /* echoed in the reply (0 when absent)          */
    const char *ns;       /* namespace bytes (not NUL-terminated)         */
    size_t ns_len;
    const uint32_t *tokens; /* host order, aligned (decoder's copy)       */
    size_t n_tokens;
    const uint32_t *blocks;
    size_t n_blocks;
    uint64_t lease;       /* 0 = none                                     */
    uint64_t n;           /* alloc: how many blocks                       */
    uint64_t version;     /* hello: the client's major (0 = not given)    */
    bool pin, alloc, release, has_ns;
    const msgpack_object *get; /* config: array of names, or NULL         */
    const msgpack_object *set; /* config: map name -> value, or NULL      */
} pc_request;

typedef struct pc_decoder {
    msgpack_unpacked up;
    uint32_t *tok, *blk;
    size_t tok_cap, blk_cap;
    char err[200]; /* the reason of the last failure, for the reply     */
} pc_decoder;

void pc_decoder_init(pc_decoder *d);
void pc_decoder_free(pc_decoder *d);

/*
 * Decode one request payload.  Limits are checked before anything is
 * allocated.  On failure: a negative code (BADMSG, BADOP, TOOBIG, INVAL),
 * d->err says why, and out->id holds the request's id when it could be
 * read (so that the error reply can echo it).
 */
int pc_request_decode(pc_decoder *d, const void *buf, size_t len,
                      const pc_proto_limits *lim, pc_request *out);

/* Decode any payload into a map (replies, for clients and tests). */
int pc_payload_decode(pc_decoder *d, const void *buf, size_t len,
                      const pc_proto_limits *lim, const msgpack_object **map);

/* Typed access to a decoded map; NULL / PC_E_NOENT when the key is absent,
 * PC_E_BADMSG when it has the wrong type. */
const msgpack_object *pc_mp_get(const msgpack_object *map, const char *key);
int pc_mp_get_u64(const msgpack_object *map, const char *key, uint64_t *out);
int pc_mp_get_i64(const msgpack_object *map, const char *key, int64_t *out);
/* bin of little-endian uint32 -> host-order copy in *buf (grown as needed) */
int pc_mp_get_u32s(const msgpack_object *map, const char *key, uint32_t **buf,
                   size_t *cap, size_t *n);

/* Is s[0..n) well-formed UTF-8 (RFC 3629: no overlongs, no surrogates)? */
bool pc_utf8_valid(const void *s, size_t n);

/* Encoding helpers over msgpack-c's packer.  Every str they write is valid
 * UTF-8: a byte that starts no well-formed sequence is sent as the four
 * characters \xNN (error texts quote request bytes). */
void pc_pack_str(msgpack_packer *pk, const void *s, size_t n);
void pc_pack_cstr(msgpack_packer *pk, const char *s);
void pc_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v);
void pc_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v);
void pc_pack_kv_str(msgpack_packer *pk, const char *key, const char *v);
void pc_pack_kv_bin(msgpack_packer *pk, const char *key, const void *v, size_t len);
void pc_pack_kv_bool(msgpack_packer *pk, const char *key, bool v);
/* uint32 ids/tokens as a bin of little-endian uint32 */
void pc_pack_kv_u32s(msgpack_packer *pk, const char *key, const uint32_t *v,
                     size_t n);
/* Start a reply map of `fields` more pairs after id, status (and error). */
void pc_pack_reply_head(msgpack_packer *pk, uint64_t id, int status,
                        const char *error, size_t fields);

#endif /* PC_PROTO_H */

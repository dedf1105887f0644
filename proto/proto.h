/*
 * proto/proto.h - the wire: protocol version, ops, limits, the msgpack
 * helpers, and (proto/wire.h) every message from one table.
 *
 * Rooms that only need the error codes include proto/errors.h, which has
 * no msgpack in it.
 */
#ifndef PC_PROTO_H
#define PC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/errors.h"
#include "proto/wire.h"

/* ---- the wire protocol (see proto/PROTOCOL.md) ---------------------------- */

#define PC_PROTO_MAJOR 1
#define PC_PROTO_MINOR 3
#define PC_PROTO_NS_MAX PC_WIRE_NS_MAX /* bytes in a namespace                */
#define PC_PROTO_DEPTH_MAX 4u         /* nesting of a request or reply        */
#define PC_PROTO_MAX_MSG_DEFAULT 16777216    /* 16 MiB                     */
#define PC_PROTO_MAX_TOKENS_DEFAULT 1048576 /* 2^20                        */

typedef enum pc_op {
#define PC__OP_ENUM(NAME, wire, low) PC_OP_##NAME,
    PC_OP_TABLE(PC__OP_ENUM)
#undef PC__OP_ENUM
    PC_OP_COUNT
} pc_op;

const char *pc_op_name(int op);                  /* NULL when unknown */
int pc_op_parse(const char *s, size_t len);      /* PC_E_BADOP when unknown */

/*
 * Check that buf[0..len) is exactly one msgpack object, nested at most
 * max_depth deep, whose every declared length fits in the bytes that
 * remain.  msgpack-c's unpacker sizes its allocations from declared lengths;
 * after this check nothing it allocates can exceed a small multiple of len.
 * PC_E_BADMSG (with a reason in err, when not NULL) or 0.
 */
int pc_mp_validate(const void *buf, size_t len, unsigned max_depth,
                   char *err, size_t errlen);

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
void pc_pack_u32s(msgpack_packer *pk, const uint32_t *v, size_t n);
void pc_pack_kv_u32s(msgpack_packer *pk, const char *key, const uint32_t *v,
                     size_t n);

#endif /* PC_PROTO_H */

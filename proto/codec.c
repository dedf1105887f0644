/*
 * proto/codec.c - the msgpack layer under the wire table: op names, the
 * pre-validator, typed map access, and the packers (every str valid UTF-8).
 *
 *   zmq frame ──► pc_mp_validate ──► msgpack_unpack_next ──► proto/wire.c
 *   (borrowed)    (walks headers,    (zero-copy: str/bin      (the table's
 *                  no allocation)     point into the frame)    rows; id lists
 *                                                              copied, host
 *                                                              order)
 *
 * Why validate first: msgpack-c allocates an array's or map's object table
 * from its declared length before reading the elements, so a 5-byte message
 * declaring 2^32 elements would ask for ~100 GB.  The validator checks every
 * declared length against the bytes that are really left (an element takes
 * at least one byte) and the nesting depth, allocating nothing; afterwards
 * the unpacker's allocations are bounded by a small multiple of the message.
 *
 * Lifetime: the decoded objects borrow from the frame and the decoder's zone;
 * the caller keeps the frame alive until it is done with the request.
 */
#include "proto/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ops ------------------------------------------------------------------ */

static const char *const op_names[PC_OP_COUNT] = {
#define PC__OP_NAME(NAME, wire, low) wire,
    PC_OP_TABLE(PC__OP_NAME)
#undef PC__OP_NAME
};

const char *pc_op_name(int op)
{
    return op >= 0 && op < PC_OP_COUNT ? op_names[op] : NULL;
}

int pc_op_parse(const char *s, size_t len)
{
    for (int i = 0; s && i < PC_OP_COUNT; i++)
        if (strlen(op_names[i]) == len && memcmp(op_names[i], s, len) == 0)
            return i;
    return PC_E_BADOP;
}

/* ---- validation ----------------------------------------------------------- */

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int pc_mp_validate(const void *buf, size_t len, unsigned max_depth, char *err,
                   size_t errlen)
{
    const uint8_t *p = buf;
    uint64_t left[PC_PROTO_DEPTH_MAX + 2]; /* objects still due per level */
    unsigned depth = 0;
    size_t pos = 0;
    const char *why = NULL;
    if (max_depth > PC_PROTO_DEPTH_MAX)
        max_depth = PC_PROTO_DEPTH_MAX;
    if (!p || len == 0) {
        why = "empty payload";
        goto bad;
    }
    left[0] = 1;
    for (;;) {
        while (left[depth] == 0) {
            if (depth == 0)
                goto done;
            depth--;
        }
        left[depth]--;
        if (pos >= len) {
            why = "truncated";
            goto bad;
        }
        uint8_t b = p[pos++];
        uint64_t skip = 0, items = 0; /* payload bytes / child objects */
        int hdr = 0, container = 0;   /* length bytes after the type   */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) {
            items = 2ull * (b & 0x0f), container = 1;
        } else if (b >= 0x90 && b <= 0x9f) {
            items = b & 0x0f, container = 1;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4: case 0xd9: hdr = 1; break;           /* bin8 str8   */
            case 0xc5: case 0xda: hdr = 2; break;           /* bin16 str16 */
            case 0xc6: case 0xdb: hdr = 4; break;           /* bin32 str32 */
            case 0xc7: hdr = 1, skip = 1; break;            /* ext8        */
            case 0xc8: hdr = 2, skip = 1; break;            /* ext16       */
            case 0xc9: hdr = 4, skip = 1; break;            /* ext32       */
            case 0xca: case 0xce: case 0xd2: skip = 4; break;
            case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xd4: skip = 2; break;                     /* fixext1..16 */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: hdr = 2, container = 1; break;       /* array16/32  */
            case 0xdd: hdr = 4, container = 1; break;
            case 0xde: hdr = 2, container = 2; break;       /* map16/32    */
            case 0xdf: hdr = 4, container = 2; break;
            default: why = "invalid type byte 0xc1"; goto bad;
            }
        }
        if (hdr) {
            if (len - pos < (size_t)hdr) {
                why = "truncated length";
                goto bad;
            }
            uint64_t n = be(p + pos, hdr);
            pos += hdr;
            if (container)
                items = n * (uint64_t)container;
            else
                skip += n;
        }
        if (skip > len - pos) {
            why = "declared length beyond the message";
            goto bad;
        }
        pos += skip;
        if (container || items) {
            if (items > len - pos) {
                why = "declared element count beyond the message";
                goto bad;
            }
            if (depth + 1 > max_depth) {
                why = "nested too deep";
                goto bad;
            }
            left[++depth] = items;
        }
    }
done:
    if (pos != len) {
        why = "trailing bytes after the object";
        goto bad;
    }
    return 0;
bad:
    if (err && errlen)
        snprintf(err, errlen, "malformed msgpack: %s (at byte %zu)", why, pos);
    return PC_E_BADMSG;
}

/* ---- typed access ----------------------------------------------------------- */

static bool key_is(const msgpack_object *k, const char *key)
{
    size_t n = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, key, n) == 0;
}

const msgpack_object *pc_mp_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

int pc_mp_get_u64(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = pc_mp_get(map, key);
    if (!o)
        return PC_E_NOENT;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return PC_E_BADMSG;
    *out = o->via.u64;
    return 0;
}

int pc_mp_get_i64(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *o = pc_mp_get(map, key);
    if (!o)
        return PC_E_NOENT;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t)o->via.u64;
    else
        return PC_E_BADMSG;
    return 0;
}

/* ---- encoding ------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence that starts s[0..n), or 0 when
 * none does: RFC 3629's rules, so no overlong forms, no surrogates
 * (U+D800..U+DFFF) and nothing beyond U+10FFFF -- what strict decoders
 * (Python's, Rust's, Java's) insist on. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    size_t k;
    uint32_t cp;
    if (b < 0x80)
        return 1;
    if ((b & 0xe0) == 0xc0)
        k = 1, cp = b & 0x1f;
    else if ((b & 0xf0) == 0xe0)
        k = 2, cp = b & 0x0f;
    else if ((b & 0xf8) == 0xf0)
        k = 3, cp = b & 0x07;
    else
        return 0;
    if (n - 1 < k)
        return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[j] & 0x3f);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
        (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k + 1;
}

bool pc_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0, k; i < n; i += k) {
        if (s[i] < 0x80) { /* ASCII runs, the usual case, without the decoder */
            k = 1;
            continue;
        }
        if (!(k = utf8_seq(s + i, n - i)))
            return false;
    }
    return true;
}

/* Every str the daemon sends must decode under a strict UTF-8 decoder, or
 * the whole reply (id and status included) is unreadable to it; error texts
 * quote request bytes (an unknown op, a knob name), so a byte that starts
 * no valid sequence goes out as the four characters "\xNN".  Keys and
 * texts are almost always ASCII: one pass decides, a second escapes. */
void pc_pack_str(msgpack_packer *pk, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t out = 0, i, k;
    for (i = 0; i < n; i += k)
        out += (k = utf8_seq(s + i, n - i)) ? k : (k = 1, 4);
    msgpack_pack_str(pk, out);
    if (out == n) {
        if (n)
            msgpack_pack_str_body(pk, s, n);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    for (i = 0; i < n; i += k) {
        if ((k = utf8_seq(s + i, n - i))) {
            msgpack_pack_str_body(pk, s + i, k);
        } else {
            char esc[4] = {'\\', 'x', hex[s[i] >> 4], hex[s[i] & 15]};
            msgpack_pack_str_body(pk, esc, 4);
            k = 1;
        }
    }
}

void pc_pack_cstr(msgpack_packer *pk, const char *s)
{
    pc_pack_str(pk, s, strlen(s));
}

void pc_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    pc_pack_cstr(pk, key);
    msgpack_pack_uint64(pk, v);
}

void pc_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v)
{
    pc_pack_cstr(pk, key);
    msgpack_pack_int64(pk, v);
}

void pc_pack_kv_str(msgpack_packer *pk, const char *key, const char *v)
{
    pc_pack_cstr(pk, key);
    pc_pack_cstr(pk, v);
}

void pc_pack_kv_bin(msgpack_packer *pk, const char *key, const void *v,
                    size_t len)
{
    pc_pack_cstr(pk, key);
    msgpack_pack_bin(pk, len);
    if (len)
        msgpack_pack_bin_body(pk, v, len);
}

void pc_pack_kv_bool(msgpack_packer *pk, const char *key, bool v)
{
    pc_pack_cstr(pk, key);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void pc_pack_kv_u32s(msgpack_packer *pk, const char *key, const uint32_t *v,
                     size_t n)
{
    pc_pack_cstr(pk, key);
    pc_pack_u32s(pk, v, n);
}

void pc_pack_u32s(msgpack_packer *pk, const uint32_t *v, size_t n)
{
    msgpack_pack_bin(pk, n * 4);
    if (!n)
        return;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    msgpack_pack_bin_body(pk, v, n * 4); /* the wire order is the host's */
#else
    uint8_t tmp[256]; /* little-endian on the wire: convert in chunks */
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof(tmp) && i < n; i++, k += 4) {
            tmp[k] = (uint8_t)v[i];
            tmp[k + 1] = (uint8_t)(v[i] >> 8);
            tmp[k + 2] = (uint8_t)(v[i] >> 16);
            tmp[k + 3] = (uint8_t)(v[i] >> 24);
        }
        msgpack_pack_bin_body(pk, tmp, k);
    }
#endif
}

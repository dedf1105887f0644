/*
 * proto/wire.c - the messages of proto/wire.h: descriptors generated from
 * the table, one encoder and one decoder that walk them.
 *
 *   request:  zmq frame ─► pc_payload_decode ─► id ─► duplicates ─► op
 *                           (size, validate,                       │
 *                            unpack, map?)       rows in table order ◄┘
 *                                                (present? type? bound?)
 *                                                 ─► cross-row rules
 *   reply:    ... ─► id, status (error) ─► status 0: rows (required present,
 *                                          types), unknown keys ignored
 *   encode:   map(heads + rows present) ─► heads ─► rows in table order
 *
 * Why one walker instead of a function per message: the field list is the
 * only thing that differs, and written once it can also be checked against
 * PROTOCOL.md.  The walk costs what the hand-written decoders cost: one
 * linear key search per row, as msgpack maps of a few keys want.
 */
#include "proto/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- descriptors ---------------------------------------------------------- */

#define PC__WT(t) PC_WT_##t
#define PC__WREQ_REQ true
#define PC__WREQ_OPT false
#define PC__W_DESC(s, m, k, t, p, b)                                           \
    {k, PC__WT(t), PC__WREQ_##p, (uint16_t)offsetof(pc_##s, m), b,            \
     sizeof(k) - 1},
#define PC__W_ARRAYS(NAME, wire, low)                                          \
    static const pc_wire_field f_##low##_req[] = {                             \
        PC_WIRE_##NAME##_REQ(PC__W_DESC){NULL, 0, false, 0, 0, 0}};            \
    static const pc_wire_field f_##low##_rep[] = {                             \
        PC_WIRE_##NAME##_REP(PC__W_DESC){NULL, 0, false, 0, 0, 0}};
PC_OP_TABLE(PC__W_ARRAYS)

static const struct {
    const pc_wire_field *f[2];
    size_t n[2], size[2]; /* rows; sizeof the struct */
} msgs[PC_OP_COUNT] = {
#define PC__W_MSG(NAME, wire, low)                                             \
    {{f_##low##_req, f_##low##_rep},                                           \
     {sizeof(f_##low##_req) / sizeof(pc_wire_field) - 1,                       \
      sizeof(f_##low##_rep) / sizeof(pc_wire_field) - 1},                      \
     {sizeof(pc_##low##_req), sizeof(pc_##low##_rep)}},
    PC_OP_TABLE(PC__W_MSG)
#undef PC__W_MSG
};

/* Presence bits are a uint32_t; the decoder has two id-list buffers. */
#define PC__W_ISIDS_IDS 1
#define PC__W_ISIDS_UINT 0
#define PC__W_ISIDS_INT 0
#define PC__W_ISIDS_BOOL 0
#define PC__W_ISIDS_STR 0
#define PC__W_ISIDS_BYTES 0
#define PC__W_ISIDS_NAMES 0
#define PC__W_ISIDS_MAP 0
#define PC__W_ISIDS_BIN 0
#define PC__W_NIDS(s, m, k, t, p, b) +PC__W_ISIDS_##t
#define PC__W_COUNT(NAME, wire, low)                                           \
    _Static_assert(PC_F_##low##_req__n <= 32 && PC_F_##low##_rep__n <= 32,     \
                   #low ": more rows than presence bits");                     \
    _Static_assert(0 PC_WIRE_##NAME##_REQ(PC__W_NIDS) <= 2 &&                   \
                       0 PC_WIRE_##NAME##_REP(PC__W_NIDS) <= 2,                \
                   #low ": more id lists than the decoder's two buffers");
PC_OP_TABLE(PC__W_COUNT)
#undef PC__W_COUNT

const pc_wire_field *pc_wire_fields(int op, bool reply, size_t *n)
{
    if (op < 0 || op >= PC_OP_COUNT)
        return NULL;
    if (n)
        *n = msgs[op].n[reply];
    return msgs[op].f[reply];
}

const char *pc_wire_key(unsigned msg, unsigned field)
{
    if (msg >= 2 * PC_OP_COUNT || field >= msgs[msg / 2].n[msg % 2])
        return "?";
    return msgs[msg / 2].f[msg % 2][field].key;
}

const char *pc_wire_type_name(pc_wire_type t)
{
    static const char *const names[PC_WT_COUNT] = {
        "uint", "int", "bool", "str", "bytes", "ids", "array of str", "map",
        "bin"};
    return (unsigned)t < PC_WT_COUNT ? names[t] : "?";
}

/* Every key some request reads (ops' rows, repeated across ops, and the
 * heads): what the duplicate check counts. */
#define PC__W_KEY(s, m, k, t, p, b) {k, sizeof(k) - 1},
#define PC__W_REQKEYS(NAME, wire, low) PC_WIRE_##NAME##_REQ(PC__W_KEY)
static const struct {
    const char *s;
    uint32_t n;
} request_keys[] = {
    PC__W_KEY(, , PC_WIRE_KEY_ID, , , ) PC__W_KEY(, , PC_WIRE_KEY_OP, , , )
    PC_OP_TABLE(PC__W_REQKEYS)
};
#undef PC__W_REQKEYS
#undef PC__W_KEY
#define N_REQUEST_KEYS (sizeof(request_keys) / sizeof(request_keys[0]))
_Static_assert(N_REQUEST_KEYS <= 64, "the duplicate check's set is 64 bits");

/* ---- id lists ------------------------------------------------------------- */

static int grow_u32(uint32_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    uint32_t *b = realloc(*buf, n * sizeof(*b));
    if (!b)
        return PC_E_NOMEM;
    *buf = b;
    *cap = n;
    return 0;
}

static void le32_copy(uint32_t *dst, const uint8_t *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n) /* the wire order is the host's: one copy (and it aligns) */
        memcpy(dst, src, n * 4);
#else
    for (size_t i = 0; i < n; i++, src += 4)
        dst[i] = (uint32_t)src[0] | (uint32_t)src[1] << 8 |
                 (uint32_t)src[2] << 16 | (uint32_t)src[3] << 24;
#endif
}

/* A list of uint32: bin of little-endian uint32 or (for scripting) an array
 * of non-negative integers; at most max entries.  why says what failed. */
static int u32_list(const msgpack_object *o, size_t max, uint32_t **buf,
                    size_t *cap, size_t *n, const char **why)
{
    if (o->type == MSGPACK_OBJECT_BIN) {
        if (o->via.bin.size % 4) {
            *why = "bin length is not a multiple of 4";
            return PC_E_BADMSG;
        }
        *n = o->via.bin.size / 4;
        if (*n > max) {
            *why = "too many entries";
            return PC_E_TOOBIG;
        }
        if (grow_u32(buf, cap, *n))
            return PC_E_NOMEM;
        le32_copy(*buf, (const uint8_t *)o->via.bin.ptr, *n);
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        *n = o->via.array.size;
        if (*n > max) {
            *why = "too many entries";
            return PC_E_TOOBIG;
        }
        if (grow_u32(buf, cap, *n))
            return PC_E_NOMEM;
        for (size_t i = 0; i < *n; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > UINT32_MAX) {
                *why = "array entry is not a uint32";
                return PC_E_BADMSG;
            }
            (*buf)[i] = (uint32_t)e->via.u64;
        }
        return 0;
    }
    *why = "expected bin (little-endian uint32) or array of uint";
    return PC_E_BADMSG;
}

int pc_mp_get_u32s(const msgpack_object *map, const char *key, uint32_t **buf,
                   size_t *cap, size_t *n)
{
    const char *why = NULL;
    const msgpack_object *o = pc_mp_get(map, key);
    if (!o)
        return PC_E_NOENT;
    return u32_list(o, SIZE_MAX / 4, buf, cap, n, &why);
}

/* ---- decoding ------------------------------------------------------------- */

void pc_decoder_init(pc_decoder *d)
{
    memset(d, 0, sizeof(*d));
    msgpack_unpacked_init(&d->up);
}

void pc_decoder_free(pc_decoder *d)
{
    msgpack_unpacked_destroy(&d->up);
    free(d->ids[0]);
    free(d->ids[1]);
    memset(d, 0, sizeof(*d));
}

int pc_payload_decode(pc_decoder *d, const void *buf, size_t len,
                      const pc_proto_limits *lim, const msgpack_object **map)
{
    *map = NULL;
    d->err[0] = 0;
    if (lim && len > lim->max_msg) {
        snprintf(d->err, sizeof(d->err),
                 "message of %zu bytes exceeds the limit of %zu", len,
                 lim->max_msg);
        return PC_E_TOOBIG;
    }
    int rc = pc_mp_validate(buf, len, PC_PROTO_DEPTH_MAX, d->err, sizeof(d->err));
    if (rc)
        return rc;
    /* A fresh zone per message: nothing from the last one survives. */
    msgpack_unpacked_destroy(&d->up);
    msgpack_unpacked_init(&d->up);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&d->up, buf, len, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
        snprintf(d->err, sizeof(d->err), "malformed msgpack (unpack %d)", (int)ur);
        return ur == MSGPACK_UNPACK_NOMEM_ERROR ? PC_E_NOMEM : PC_E_BADMSG;
    }
    if (d->up.data.type != MSGPACK_OBJECT_MAP) {
        snprintf(d->err, sizeof(d->err), "payload is not a map");
        return PC_E_BADMSG;
    }
    *map = &d->up.data;
    return 0;
}

#define FAIL(code, ...)                                                        \
    do {                                                                       \
        snprintf(d->err, sizeof(d->err), __VA_ARGS__);                         \
        return (code);                                                         \
    } while (0)

/* The value of key (n bytes) in map m, by a length-first compare; NULL
 * when absent. */
static const msgpack_object *find_n(const msgpack_object *m, const char *key,
                                    size_t n)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

/* How many times key (n > 0 bytes) appears in map m. */
static unsigned key_count(const msgpack_object *m, const char *key, size_t n)
{
    unsigned c = 0;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        c += k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
             memcmp(k->via.str.ptr, key, n) == 0;
    }
    return c;
}

static const msgpack_object *find(const msgpack_object *m, const char *key)
{
    return find_n(m, key, strlen(key));
}

/* The first key the request reads that appears twice in m, or NULL.
 * Duplicates are refused rather than resolved: a proxy or another decoder
 * that took the other copy would see a different request from ours.  Only
 * known keys are counted (unknown ones are ignored anyway), so the cost is
 * one pass of short compares, whatever the map holds. */
static const char *twice_key(const msgpack_object *m)
{
    /* A request has a handful of keys: compare them with each other, and
     * only a key seen twice is looked up among the known ones.  A big map
     * (only unknown keys can make one) takes the linear way below. */
    uint32_t n = m->via.map.size;
    const msgpack_object_kv *kv = m->via.map.ptr;
    if (n <= 16) {
        for (uint32_t i = 1; i < n; i++) {
            const msgpack_object *a = &kv[i].key;
            if (a->type != MSGPACK_OBJECT_STR)
                continue;
            for (uint32_t j = 0; j < i; j++) {
                const msgpack_object *b = &kv[j].key;
                /* Two empty keys are equal without a memcmp: msgpack-c
                 * gives an empty str a NULL pointer, and memcmp(NULL, ...)
                 * is undefined even for 0 bytes (UBSan aborts on it). */
                if (b->type != MSGPACK_OBJECT_STR || b->via.str.size != a->via.str.size ||
                    (a->via.str.size &&
                     memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) != 0))
                    continue;
                for (unsigned k = 0; k < N_REQUEST_KEYS; k++)
                    if (a->via.str.size == request_keys[k].n &&
                        memcmp(a->via.str.ptr, request_keys[k].s, request_keys[k].n) == 0)
                        return request_keys[k].s;
                break; /* an unknown key twice: ignored like any unknown key */
            }
        }
        return NULL;
    }
    uint64_t seen = 0;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *key = &m->via.map.ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR)
            continue;
        for (unsigned k = 0; k < N_REQUEST_KEYS; k++)
            if (key->via.str.size == request_keys[k].n &&
                memcmp(key->via.str.ptr, request_keys[k].s, request_keys[k].n) == 0) {
                if (seen & UINT64_C(1) << k)
                    return request_keys[k].s;
                seen |= UINT64_C(1) << k;
                break;
            }
    }
    return NULL;
}

/* One row of a message from map m into the struct at base.  reply: the
 * message is a reply (no bounds, other texts).  *ids_used counts the id
 * lists taken from the decoder's buffers. */
static int decode_row(pc_decoder *d, const msgpack_object *m,
                      const pc_wire_field *f, size_t max_tokens, bool reply,
                      char *base, uint32_t bit, int *ids_used)
{
    const msgpack_object *o = find_n(m, f->key, f->key_len);
    uint32_t *has = (uint32_t *)(void *)base;
    void *at = base + f->offset;
    if (!o) {
        if (f->required)
            FAIL(PC_E_BADMSG, reply ? "reply lacks '%s'" : "missing '%s'", f->key);
        return 0;
    }
    uint64_t bound = f->bound == PC_WIRE_MAX_TOKENS ? max_tokens : f->bound;
    switch (f->type) {
    case PC_WT_UINT:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            FAIL(PC_E_BADMSG, "'%s' must be a non-negative integer", f->key);
        if (!reply && bound && o->via.u64 > bound)
            FAIL(PC_E_TOOBIG, "'%s' of %llu exceeds %llu", f->key,
                 (unsigned long long)o->via.u64, (unsigned long long)bound);
        *(uint64_t *)at = o->via.u64;
        break;
    case PC_WT_INT:
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            *(int64_t *)at = o->via.i64;
        else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
            *(int64_t *)at = (int64_t)o->via.u64;
        else
            FAIL(PC_E_BADMSG, "'%s' must be an integer", f->key);
        break;
    case PC_WT_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            FAIL(PC_E_BADMSG, "'%s' must be a bool", f->key);
        *(bool *)at = o->via.boolean;
        break;
    case PC_WT_STR:
    case PC_WT_BYTES: {
        pc_wire_str *v = at;
        if (o->type == MSGPACK_OBJECT_STR) {
            v->p = o->via.str.ptr;
            v->n = o->via.str.size;
        } else if (f->type == PC_WT_BYTES && o->type == MSGPACK_OBJECT_BIN) {
            v->p = o->via.bin.ptr;
            v->n = o->via.bin.size;
        } else {
            FAIL(PC_E_BADMSG, f->type == PC_WT_STR ? "'%s' must be a str"
                                                   : "'%s' must be str or bin",
                 f->key);
        }
        if (!reply && bound && v->n > bound)
            FAIL(PC_E_TOOBIG, "'%s' of %zu bytes exceeds %llu", f->key, v->n,
                 (unsigned long long)bound);
        break;
    }
    case PC_WT_BIN: {
        pc_wire_str *v = at;
        if (o->type != MSGPACK_OBJECT_BIN)
            FAIL(PC_E_BADMSG, "'%s' must be a bin", f->key);
        v->p = o->via.bin.ptr;
        v->n = o->via.bin.size;
        if (!reply && bound && v->n > bound)
            FAIL(PC_E_TOOBIG, "'%s' of %zu bytes exceeds %llu", f->key, v->n,
                 (unsigned long long)bound);
        break;
    }
    case PC_WT_IDS: {
        const char *why = "";
        int k = (*ids_used)++; /* < 2: PC__W_NIDS below */
        pc_wire_ids *v = at;
        int rc = u32_list(o, reply || !bound ? SIZE_MAX / 4 : (size_t)bound,
                          &d->ids[k], &d->ids_cap[k], &v->n, &why);
        if (rc == PC_E_TOOBIG)
            FAIL(rc, "'%s': more than %llu entries", f->key, (unsigned long long)bound);
        if (rc == PC_E_NOMEM)
            FAIL(rc, "out of memory");
        if (rc)
            FAIL(rc, "'%s': %s", f->key, why);
        v->p = d->ids[k];
        break;
    }
    case PC_WT_NAMES:
        if (o->type != MSGPACK_OBJECT_ARRAY)
            FAIL(PC_E_BADMSG, "'%s' must be an array of names", f->key);
        ((pc_wire_map *)at)->obj = o;
        break;
    case PC_WT_MAP:
        if (o->type != MSGPACK_OBJECT_MAP)
            FAIL(PC_E_BADMSG, "'%s' must be a map", f->key);
        ((pc_wire_map *)at)->obj = o;
        break;
    default:
        FAIL(PC_E_BADMSG, "'%s': unknown field type", f->key);
    }
    *has |= bit;
    return 0;
}

static int decode_rows(pc_decoder *d, const msgpack_object *m, int op,
                       bool reply, size_t max_tokens, void *out)
{
    size_t n = 0;
    const pc_wire_field *f = pc_wire_fields(op, reply, &n);
    int ids_used = 0, rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = decode_row(d, m, &f[i], max_tokens, reply, out,
                             1u << i, &ids_used)))
            return rc;
    return 0;
}

int pc_wire_decode_request(pc_decoder *d, const void *buf, size_t len,
                           const pc_proto_limits *lim, pc_request *r)
{
    const msgpack_object *m, *o;
    memset(r, 0, sizeof(*r));
    r->op = -1;
    int rc = pc_payload_decode(d, buf, len, lim, &m);
    if (rc)
        return rc;
    /* The id first, so that every later error can echo it -- unless the id
     * itself is given twice: which one would the reply echo? */
    /* Counted apart: twice_key names the first duplicate in map order, and
     * an earlier one (say "op" twice, then "id" twice) would hide this one
     * (found by tests/fuzz/fuzz_handler). */
    const char *twice = twice_key(m);
    if (key_count(m, PC_WIRE_KEY_ID, sizeof(PC_WIRE_KEY_ID) - 1) > 1)
        FAIL(PC_E_BADMSG, "key 'id' given twice");
    if ((o = find(m, PC_WIRE_KEY_ID))) {
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            FAIL(PC_E_BADMSG, "'id' must be a non-negative integer");
        r->id = o->via.u64;
    }
    if (twice)
        FAIL(PC_E_BADMSG, "key '%s' given twice", twice);
    if (!(o = find(m, PC_WIRE_KEY_OP)))
        FAIL(PC_E_BADMSG, "missing 'op'");
    if (o->type != MSGPACK_OBJECT_STR)
        FAIL(PC_E_BADMSG, "'op' must be a string");
    /* out->op stays -1 for an unknown op (wire.h), not pc_op_parse's code */
    int op = pc_op_parse(o->via.str.ptr, o->via.str.size);
    if (op < 0)
        FAIL(PC_E_BADOP, "unknown op '%.*s'",
             (int)(o->via.str.size > 40 ? 40 : o->via.str.size), o->via.str.ptr);
    r->op = op;
    /* `lease`, the key most ops share, is checked for every op right after
     * the op (PROTOCOL.md section 4), also where the op has no use for it. */
    if ((o = find(m, "lease")) && o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        FAIL(PC_E_BADMSG, "'lease' must be a non-negative integer");
    size_t max = lim && lim->max_tokens ? lim->max_tokens
                                        : PC_PROTO_MAX_TOKENS_DEFAULT;
    if ((rc = decode_rows(d, m, r->op, false, max, &r->u)))
        return rc;
    if (r->op == PC_OP_INSERT) { /* the rules that span rows */
        const pc_insert_req *q = &r->u.insert;
        if (q->pin && q->release)
            FAIL(PC_E_INVAL, "insert: 'pin' and 'release' together (a pin "
                             "lasts until its lease ends)");
        if (q->pin && !q->lease)
            FAIL(PC_E_INVAL, "insert: 'pin' needs a 'lease' to hold the pin");
    }
    return 0;
}

int pc_wire_read_head(pc_decoder *d, const msgpack_object *m,
                      pc_reply_head *head)
{
    const msgpack_object *o;
    memset(head, 0, sizeof(*head));
    if ((o = find(m, PC_WIRE_KEY_ID))) {
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            FAIL(PC_E_BADMSG, "reply with a mistyped 'id'");
        head->id = o->via.u64;
    }
    if (pc_mp_get_i64(m, PC_WIRE_KEY_STATUS, &head->status))
        FAIL(PC_E_BADMSG, "reply without an integer 'status'");
    if (head->status > 0 || head->status < INT32_MIN)
        FAIL(PC_E_BADMSG, "reply's 'status' %lld is not a code",
             (long long)head->status);
    if (head->status < 0 && (o = find(m, PC_WIRE_KEY_ERROR)) &&
        o->type == MSGPACK_OBJECT_STR) {
        head->error.p = o->via.str.ptr;
        head->error.n = o->via.str.size;
    }
    return 0;
}

int pc_wire_read_reply(pc_decoder *d, const msgpack_object *m, int op, void *rep)
{
    if (op < 0 || op >= PC_OP_COUNT)
        FAIL(PC_E_INVAL, "no such op %d", op);
    memset(rep, 0, msgs[op].size[1]);
    return decode_rows(d, m, op, true, 0, rep);
}

int pc_wire_decode_reply(pc_decoder *d, const void *buf, size_t len, int op,
                         pc_reply_head *head, void *rep)
{
    const msgpack_object *m;
    memset(head, 0, sizeof(*head));
    if (op < 0 || op >= PC_OP_COUNT)
        FAIL(PC_E_INVAL, "no such op %d", op);
    int rc = pc_payload_decode(d, buf, len, NULL, &m);
    if (rc || (rc = pc_wire_read_head(d, m, head)) || head->status < 0)
        return rc;
    return pc_wire_read_reply(d, m, op, rep);
}

/* ---- encoding ------------------------------------------------------------- */

static void pack_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

static void pack_row(msgpack_packer *pk, const pc_wire_field *f, const char *base)
{
    const void *at = base + f->offset;
    msgpack_pack_str(pk, f->key_len);
    msgpack_pack_str_body(pk, f->key, f->key_len);
    switch (f->type) {
    case PC_WT_UINT: msgpack_pack_uint64(pk, *(const uint64_t *)at); break;
    case PC_WT_INT: msgpack_pack_int64(pk, *(const int64_t *)at); break;
    case PC_WT_BOOL:
        if (*(const bool *)at)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case PC_WT_STR: {
        const pc_wire_str *v = at;
        pc_pack_str(pk, v->p, v->n);
        break;
    }
    case PC_WT_BYTES: { /* str when it is UTF-8 (readable dumps), else bin */
        const pc_wire_str *v = at;
        if (pc_utf8_valid(v->p, v->n)) {
            msgpack_pack_str(pk, v->n);
            if (v->n)
                msgpack_pack_str_body(pk, v->p, v->n);
        } else {
            msgpack_pack_bin(pk, v->n);
            msgpack_pack_bin_body(pk, v->p, v->n);
        }
        break;
    }
    case PC_WT_BIN: { /* opaque bytes: bin even when they happen to be UTF-8 */
        const pc_wire_str *v = at;
        msgpack_pack_bin(pk, v->n);
        if (v->n)
            msgpack_pack_bin_body(pk, v->p, v->n);
        break;
    }
    case PC_WT_IDS: {
        const pc_wire_ids *v = at;
        pc_pack_u32s(pk, v->p, v->n);
        break;
    }
    case PC_WT_NAMES:
    case PC_WT_MAP: {
        const pc_wire_map *v = at;
        if (v->pack)
            v->pack(pk, v->ctx);
        else if (v->obj)
            msgpack_pack_object(pk, *v->obj);
        else
            msgpack_pack_nil(pk);
        break;
    }
    default: msgpack_pack_nil(pk); break;
    }
}

/* Rows present in the struct: required ones, and optional ones set. */
static size_t rows_present(const pc_wire_field *f, size_t n, uint32_t has)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += f[i].required || (has & 1u << i);
    return k;
}

static void pack_rows(msgpack_packer *pk, const pc_wire_field *f, size_t n,
                      const void *msg)
{
    uint32_t has = *(const uint32_t *)msg;
    for (size_t i = 0; i < n; i++)
        if (f[i].required || (has & 1u << i))
            pack_row(pk, &f[i], msg);
}

void pc_wire_encode_request(msgpack_packer *pk, int op, uint64_t id,
                            const void *req)
{
    size_t n;
    const pc_wire_field *f = pc_wire_fields(op, false, &n);
    size_t k = f && req ? rows_present(f, n, *(const uint32_t *)req) : 0;
    msgpack_pack_map(pk, 2 + k);
    pack_key(pk, PC_WIRE_KEY_OP);
    const char *name = pc_op_name(op);
    pc_pack_cstr(pk, name ? name : "");
    pack_key(pk, PC_WIRE_KEY_ID);
    msgpack_pack_uint64(pk, id);
    if (k)
        pack_rows(pk, f, n, req);
}

void pc_wire_encode_reply(msgpack_packer *pk, int op, uint64_t id, int status,
                          const char *error, const void *rep)
{
    size_t n = 0;
    const pc_wire_field *f = status ? NULL : pc_wire_fields(op, true, &n);
    size_t k = f && rep ? rows_present(f, n, *(const uint32_t *)rep) : 0;
    msgpack_pack_map(pk, 2 + (status ? 1 : k));
    pack_key(pk, PC_WIRE_KEY_ID);
    msgpack_pack_uint64(pk, id);
    pack_key(pk, PC_WIRE_KEY_STATUS);
    msgpack_pack_int64(pk, status);
    if (status) {
        pack_key(pk, PC_WIRE_KEY_ERROR);
        pc_pack_cstr(pk, error && *error ? error : pc_strerror(status));
    } else if (k) {
        pack_rows(pk, f, n, rep);
    }
}

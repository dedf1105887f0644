/*
 * tests/harness/wire.c - raw messages to a harness daemon: libzmq sockets,
 * msgpack requests, decoded replies and the stats map (see harness.h).
 * Nothing here goes through libprefixcache, so that the tests of the client
 * and the server do not trust the code under test.
 */
#include "tests/harness/harness.h"

/* ---- raw ZeroMQ ---------------------------------------------------------------- */

static void *hd_zctx_;
static pid_t hd_zctx_pid_;

/* The process's context (a forked child gets a fresh one; the parent's is
 * not touched from the child). */
static void *hd_zctx(void)
{
    if (!hd_zctx_ || hd_zctx_pid_ != getpid()) {
        hd_zctx_ = zmq_ctx_new();
        hd_zctx_pid_ = getpid();
        cr_assert(hd_zctx_, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    }
    return hd_zctx_;
}

void hd_quiesce(void)
{
    if (hd_zctx_ && hd_zctx_pid_ == getpid())
        zmq_ctx_term(hd_zctx_);
    hd_zctx_ = NULL;
}

void hd_conn_open(hd_conn *c, const char *endpoint, int type)
{
    c->sock = zmq_socket(hd_zctx(), type);
    cr_assert(c->sock, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero));
    cr_assert_eq(zmq_connect(c->sock, endpoint), 0, "zmq_connect(%s): %s",
                 endpoint, zmq_strerror(zmq_errno()));
}

void hd_conn_close(hd_conn *c)
{
    if (c->sock)
        zmq_close(c->sock);
    c->sock = NULL;
}

void hd_send(hd_conn *c, const void *const *frames, const size_t *lens, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = zmq_send(c->sock, lens[i] ? frames[i] : "", lens[i],
                          i + 1 < n ? ZMQ_SNDMORE : 0);
        cr_assert(rc >= 0, "zmq_send: %s", zmq_strerror(zmq_errno()));
    }
}

void hd_msg_free(hd_msg *m)
{
    for (int i = 0; i < m->n; i++)
        zmq_msg_close(&m->frames[i]);
    m->n = m->total = 0;
}

void hd_recv(hd_conn *c, int timeout_ms, hd_msg *m)
{
    memset(m, 0, sizeof(*m));
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    int rc;
    do
        rc = zmq_poll(&it, 1, timeout_ms);
    while (rc < 0 && zmq_errno() == EINTR);
    cr_assert(rc >= 0, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    if (rc == 0)
        return;
    int more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        int r = zmq_msg_recv(&f, c->sock, 0);
        cr_assert(r >= 0, "zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
        more = zmq_msg_more(&f);
        if (m->n < (int)HD_NELEM(m->frames)) {
            m->frames[m->n++] = f;
        } else { /* keep the last frame (the payload) in the last slot */
            zmq_msg_close(&m->frames[m->n - 1]);
            m->frames[m->n - 1] = f;
        }
        m->total++;
    }
}

const void *hd_frame(hd_msg *m, int i, size_t *len)
{
    *len = zmq_msg_size(&m->frames[i]);
    return zmq_msg_data(&m->frames[i]);
}

/* ---- msgpack helpers ------------------------------------------------------------ */

void hd_buf_init(hd_buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

void hd_buf_free(hd_buf *b) { msgpack_sbuffer_destroy(&b->sb); }

void hd_buf_raw(hd_buf *b, const void *p, size_t n)
{
    msgpack_sbuffer_write(&b->sb, p, n);
}

void hd_reply_free(hd_reply *r)
{
    if (r->arrived)
        pc_decoder_free(&r->dec);
    free(r->payload);
    memset(r, 0, sizeof(*r));
}

/* Strict UTF-8, written from RFC 3629's grammar (section 4) rather than
 * shared with the codec under test: the byte ranges of each well-formed
 * sequence, so overlongs, surrogates and code points past U+10FFFF fail. */
bool hd_utf8_strict(const uint8_t *s, size_t n)
{
    static const struct { uint8_t lo, hi, n2lo, n2hi; int tails; } seq[] = {
        {0x00, 0x7f, 0, 0, 0},       {0xc2, 0xdf, 0x80, 0xbf, 1},
        {0xe0, 0xe0, 0xa0, 0xbf, 2}, {0xe1, 0xec, 0x80, 0xbf, 2},
        {0xed, 0xed, 0x80, 0x9f, 2}, {0xee, 0xef, 0x80, 0xbf, 2},
        {0xf0, 0xf0, 0x90, 0xbf, 3}, {0xf1, 0xf3, 0x80, 0xbf, 3},
        {0xf4, 0xf4, 0x80, 0x8f, 3},
    };
    size_t i = 0;
    while (i < n) {
        size_t k = 0;
        while (k < HD_NELEM(seq) && (s[i] < seq[k].lo || s[i] > seq[k].hi))
            k++;
        if (k == HD_NELEM(seq))
            return false;
        int t = seq[k].tails;
        if ((size_t)t > n - i - 1)
            return false;
        if (t && (s[i + 1] < seq[k].n2lo || s[i + 1] > seq[k].n2hi))
            return false;
        for (int j = 2; j <= t; j++)
            if (s[i + (size_t)j] < 0x80 || s[i + (size_t)j] > 0xbf)
                return false;
        i += (size_t)t + 1;
    }
    return true;
}

/* Every str anywhere in o (keys included) is strict UTF-8; else the first
 * offender is copied, escaped, into bad. */
bool hd_strs_utf8(const msgpack_object *o, char *bad, size_t cap)
{
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        if (hd_utf8_strict((const uint8_t *)o->via.str.ptr, o->via.str.size))
            return true;
        for (size_t i = 0, w = 0; i < o->via.str.size && w + 5 < cap; i++)
            w += (size_t)snprintf(bad + w, cap - w, "%02x ",
                                  (uint8_t)o->via.str.ptr[i]);
        return false;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!hd_strs_utf8(&o->via.array.ptr[i], bad, cap))
                return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (!hd_strs_utf8(&o->via.map.ptr[i].key, bad, cap) ||
                !hd_strs_utf8(&o->via.map.ptr[i].val, bad, cap))
                return false;
        return true;
    default:
        return true;
    }
}

void hd_reply_decode(hd_msg *m, hd_reply *r)
{
    memset(r, 0, sizeof(*r));
    r->frames = m->n;
    if (m->n == 0)
        return;
    r->arrived = true;
    size_t len;
    const void *p = hd_frame(m, m->n - 1, &len);
    r->payload = malloc(len ? len : 1);
    cr_assert(r->payload);
    memcpy(r->payload, p, len);
    r->payload_len = len;
    pc_decoder_init(&r->dec);
    r->rc = pc_payload_decode(&r->dec, r->payload, len, NULL, &r->map);
    cr_assert_eq(r->rc, 0, "reply does not decode: %d (%s)", r->rc, r->dec.err);
    char bad[200] = "";
    cr_assert(hd_strs_utf8(r->map, bad, sizeof(bad)),
              "reply holds a str that is not UTF-8: %s", bad);
    cr_assert_not_null(pc_mp_get(r->map, PC_WIRE_KEY_ID), "reply without an id");
    pc_reply_head h;
    cr_assert_eq(pc_wire_read_head(&r->dec, r->map, &h), 0, "reply head: %s",
                 r->dec.err);
    r->id = h.id;
    r->status = h.status;
    if (r->status != 0)
        cr_assert(h.error.n > 0, "error reply (status %" PRId64 ") without "
                  "error text", r->status);
    size_t n = h.error.n < sizeof(r->error) - 1 ? h.error.n : sizeof(r->error) - 1;
    if (n)
        memcpy(r->error, h.error.p, n);
    r->error[n] = '\0';
}

void hd_call_on(hd_conn *c, const void *payload, size_t len,
                hd_reply *r)
{
    const void *f[1] = {payload};
    size_t l[1] = {len};
    hd_send(c, f, l, 1);
    hd_msg m;
    hd_recv(c, HD_CALL_MS, &m);
    cr_assert(m.n > 0, "no reply within %d ms", HD_CALL_MS);
    hd_reply_decode(&m, r);
    hd_msg_free(&m);
}

void hd_call_buf(hd_conn *c, hd_buf *b, hd_reply *r)
{
    hd_call_on(c, b->sb.data, b->sb.size, r);
}

void hd_pack_op(hd_buf *b, const char *op, uint64_t id,
                size_t more_fields)
{
    msgpack_pack_map(&b->pk, 2 + more_fields);
    pc_pack_kv_str(&b->pk, PC_WIRE_KEY_OP, op);
    pc_pack_kv_u64(&b->pk, PC_WIRE_KEY_ID, id);
}

bool hd_ping(const char *endpoint, int timeout_ms)
{
    hd_conn c;
    hd_conn_open(&c, endpoint, ZMQ_DEALER);
    hd_buf b;
    hd_buf_init(&b);
    pc_wire_encode_request(&b.pk, PC_OP_PING, 1, NULL);
    const void *f[1] = {b.sb.data};
    size_t l[1] = {b.sb.size};
    hd_send(&c, f, l, 1);
    hd_msg m;
    hd_recv(&c, timeout_ms, &m);
    bool ok = false;
    if (m.n > 0) {
        hd_reply r;
        hd_reply_decode(&m, &r);
        ok = r.status == 0 && r.id == 1;
        hd_reply_free(&r);
    }
    hd_msg_free(&m);
    hd_buf_free(&b);
    hd_conn_close(&c);
    return ok;
}

/* ---- stats ----------------------------------------------------------------------- */

uint64_t hd_stat(const hd_statmap *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return s->value[i];
    return UINT64_MAX;
}

uint64_t hd_stat_req(const hd_statmap *s, const char *name)
{
    uint64_t v = hd_stat(s, name);
    cr_assert(v != UINT64_MAX, "stats has no '%s'", name);
    return v;
}

void hd_stats_on(hd_conn *c, hd_statmap *s)
{
    hd_buf b;
    hd_buf_init(&b);
    pc_stats_req q = {0};
    PC_SET(&q, stats_req, check, true);
    pc_wire_encode_request(&b.pk, PC_OP_STATS, 424242, &q);
    hd_reply r;
    hd_call_buf(c, &b, &r);
    hd_buf_free(&b);
    cr_assert_eq(r.status, 0, "stats: %" PRId64 " %s", r.status, r.error);
    cr_assert_eq(r.id, 424242);
    memset(s, 0, sizeof(*s));
    pc_stats_rep o;
    cr_assert_eq(pc_wire_read_reply(&r.dec, r.map, PC_OP_STATS, &o), 0,
                 "stats reply: %s", r.dec.err);
    const msgpack_object *m = o.stats.obj;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;
        cr_assert(k->type == MSGPACK_OBJECT_STR, "stats key not a string");
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || s->n >= 512)
            continue;
        size_t kl = k->via.str.size < 63 ? k->via.str.size : 63;
        memcpy(s->name[s->n], k->via.str.ptr, kl);
        s->name[s->n][kl] = '\0';
        s->value[s->n++] = v->via.u64;
    }
    s->has_check = PC_IS_SET(&o, stats_rep, check);
    s->check = o.check;
    hd_reply_free(&r);
    cr_assert(s->has_check, "stats reply without 'check' (asked check: true)");
    cr_assert_eq(s->check, 0, "the daemon's consistency check failed: %" PRId64
                 " (%s)", s->check, pc_errname((int)s->check));
}

void hd_stats_get(const hd_daemon *d, hd_statmap *s)
{
    hd_conn c;
    hd_conn_open(&c, d->endpoint, ZMQ_DEALER);
    hd_stats_on(&c, s);
    hd_conn_close(&c);
}

/* The gauges that describe the cache state ("nothing changed" compares
 * these; the rpc.* and lookup counters move with every request). */
static const char *const hd_gauges[] = {
    HD_ST_TREE_PAGES, HD_ST_TREE_NODES,  HD_ST_TREE_NS,
    HD_ST_TREE_PROT,  HD_ST_POOL_FREE,   HD_ST_POOL_LEASED,
    HD_ST_POOL_CACHED, HD_ST_LEASES,     HD_ST_PINS,
};

void hd_gauges_eq(const hd_statmap *a, const hd_statmap *b, const char *what)
{
    for (size_t i = 0; i < HD_NELEM(hd_gauges); i++) {
        uint64_t va = hd_stat_req(a, hd_gauges[i]);
        uint64_t vb = hd_stat_req(b, hd_gauges[i]);
        cr_assert_eq(va, vb, "%s: %s changed from %" PRIu64 " to %" PRIu64,
                     what, hd_gauges[i], va, vb);
    }
}


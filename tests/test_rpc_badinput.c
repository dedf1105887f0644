/*
 * tests/test_rpc_badinput.c - prefixcached against hostile and broken input.
 *
 * Every case is sent as RAW frames on a fresh libzmq DEALER socket (so the
 * frames are exactly what the table says), to a daemon whose cache holds a
 * known state:
 *
 *   namespace "model-a": prompt A (2 pages), pinned by lease L1
 *   namespace "ns-b":    prompt B (2 pages), unpinned
 *   lease L1: 1 pin (A), 2 LEASED blocks;  lease L2: 1 LEASED block
 *   lease D: created and released (dead);  the rest of the 64 blocks FREE
 *
 * For each case the table gives the expected outcome: a reply with a given
 * status (an error reply must carry non-empty error text and echo the id when
 * the request's id could be read, else id 0), or no reply at all (dropped).
 * Around each case the state gauges (tree.pages, tree.nodes,
 * tree.namespaces, tree.protected_pages, pool.blocks.free/leased/cached,
 * leases.live, leases.pins) are compared before/after and the daemon's own
 * consistency check (stats with check: true) must return 0.  rpc.errors must
 * move by exactly one for an error reply and not at all otherwise.
 *
 * The daemon runs with --max_tokens=1024 --max_msg_bytes=65536; the server
 * sets ZMQ_MAXMSGSIZE to max_msg + 64 KiB, so a payload a little over the
 * limit still gets its TOOBIG reply while a frame over ZMQ_MAXMSGSIZE makes
 * libzmq drop the connection (no reply; the daemon neither sees nor logs it,
 * and the client's socket reconnects by itself).
 *
 * "The identity alone" (a ROUTER message without a payload frame) cannot be
 * produced by any ZeroMQ peer: a ZMTP message has at least one frame, and
 * ROUTER prepends the identity, so the server always sees >= 2 frames and
 * its "single frame: no envelope to reply to" branch is unreachable from
 * the wire.  Its drop path is reachable through the envelope limits
 * instead: more than 32 envelope frames (ROUTER's identity included), or
 * more than 64 KiB of them.  Those cases check "no reply within 300 ms,
 * rpc.dropped + 1, a 'dropped' log line" (the server logs drops at most
 * once a second, so a drop case waits out that second after the last).
 * The nearest wire equivalents of "no payload" ([""] and ["x", ""]: an
 * empty last frame) are answered PC_E_BADMSG.
 *
 * Each table is one Criterion test with its own daemon (malformed, types,
 * ops, limits, semantic, config, frames), plus config_unchanged (rejected
 * config sets leave the knobs alone) and burst_one_socket (bad and good
 * requests interleaved on one socket: every request gets its own reply, in
 * order).  Each case's name is printed to stderr, with the daemon's error
 * text; at the end the daemon must answer ping, the fixture's leases must
 * still release, and the daemon must exit 0 on SIGTERM with a clean log.
 */
#include "tests/harness/harness.h"
#include "tests/harness/client_check.h"
#include "tests/harness/prng.h"

#include "rpc/client.h"

#define NS "model-a"
#define NSL (sizeof(NS) - 1)
#define NSB "ns-b"
#define P HD_PAGE_TOKENS
#define MAX_TOKENS 1024u
#define MAX_MSG 65536u
#define ZMQ_MAX (MAX_MSG + 65536u) /* the server's ZMQ_MAXMSGSIZE */
#define DEAD_LEASE 0x0badc0ffee0ddf00ull /* never handed out (random ids) */
#define NOREPLY_MS 300

TestSuite(badinput, .fini = hd_cleanup, .timeout = 60);

/* ---- the fixture ------------------------------------------------------------------ */

typedef struct fixture {
    hd_daemon d;
    uint32_t tok_a[8], tok_b[8], tok_c[8]; /* A, B cached; C never */
    uint32_t canon_a[2], canon_b[2];
    uint64_t l1, l2, dead;
    uint32_t l1_blocks[2], l2_block;
    uint32_t free_block; /* a FREE block id */
} fixture;

static void put(pc_client *c, const char *ns, const uint32_t *t, size_t n,
                uint32_t *canon)
{
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, ns, strlen(ns), t, n, PC_CLIENT_ALLOC, 0, &r), 0);
    cr_assert_eq(r.n_alloc, n / P);
    uint32_t ids[8];
    memcpy(ids, r.alloc_blocks, r.n_alloc * sizeof(*ids));
    RC_EQ(c, pc_client_insert(c, ns, strlen(ns), t, n, ids, r.lease,
                              PC_CLIENT_RELEASE, canon, NULL), 0);
}

static void fixture_up(fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    char mt[64], mm[64];
    snprintf(mt, sizeof(mt), "--max_tokens=%u", MAX_TOKENS);
    snprintf(mm, sizeof(mm), "--max_msg_bytes=%u", MAX_MSG);
    hd_start(&fx->d, mt, mm, "--log_level=info", NULL);
    hd_prompt(fx->tok_a, 8, 1);
    hd_prompt(fx->tok_b, 8, 2);
    hd_prompt(fx->tok_c, 8, 3);
    pc_client *c;
    pc_hello h;
    cr_assert_eq(pc_client_connect(fx->d.endpoint, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.max_tokens, MAX_TOKENS);
    cr_assert_eq(h.max_msg, MAX_MSG);
    put(c, NS, fx->tok_a, 8, fx->canon_a);
    put(c, NSB, fx->tok_b, 8, fx->canon_b);
    /* L1: pins A and allocates one page for A + 4 tokens, then one more */
    uint32_t t12[12];
    memcpy(t12, fx->tok_a, sizeof(fx->tok_a));
    hd_prompt(t12 + 8, 4, 9);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t12, 12, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                              0, &r), 0);
    cr_assert_eq(r.tokens, 8);
    cr_assert_eq(r.n_alloc, 1);
    fx->l1 = r.lease;
    fx->l1_blocks[0] = r.alloc_blocks[0];
    RC_EQ(c, pc_client_alloc(c, 1, &fx->l1, &fx->l1_blocks[1]), 0);
    cr_assert_eq(fx->l1, r.lease);
    RC_EQ(c, pc_client_alloc(c, 1, &fx->l2, &fx->l2_block), 0);
    uint32_t x;
    RC_EQ(c, pc_client_alloc(c, 1, &fx->dead, &x), 0);
    RC_EQ(c, pc_client_release(c, fx->dead), 0);
    cr_assert(fx->l1 && fx->l2 && fx->dead);
    cr_assert(fx->l1 != fx->l2 && fx->l2 != fx->dead && fx->l1 != DEAD_LEASE &&
              fx->l2 != DEAD_LEASE);
    pc_client_close(c);

    /* a FREE block: none of the ids in use */
    uint8_t used[HD_POOL_BLOCKS] = {0};
    used[fx->canon_a[0]] = used[fx->canon_a[1]] = 1;
    used[fx->canon_b[0]] = used[fx->canon_b[1]] = 1;
    used[fx->l1_blocks[0]] = used[fx->l1_blocks[1]] = used[fx->l2_block] = 1;
    fx->free_block = HD_POOL_BLOCKS;
    for (uint32_t i = 0; i < HD_POOL_BLOCKS && fx->free_block == HD_POOL_BLOCKS; i++)
        if (!used[i])
            fx->free_block = i;

    hd_statmap s;
    hd_stats_get(&fx->d, &s);
    cr_assert_eq(hd_stat_req(&s, HD_ST_TREE_PAGES), 4);
    cr_assert_eq(hd_stat_req(&s, HD_ST_TREE_NS), 2);
    cr_assert_eq(hd_stat_req(&s, HD_ST_TREE_PROT), 2);
    cr_assert_eq(hd_stat_req(&s, HD_ST_POOL_LEASED), 3);
    cr_assert_eq(hd_stat_req(&s, HD_ST_POOL_FREE), HD_POOL_BLOCKS - 7);
    cr_assert_eq(hd_stat_req(&s, HD_ST_LEASES), 2);
    cr_assert_eq(hd_stat_req(&s, HD_ST_PINS), 1);
}

static void fixture_down(fixture *fx)
{
    cr_assert(hd_ping(fx->d.endpoint, HD_CALL_MS), "daemon no longer answers ping");
    /* the fixture is intact: both leases still release */
    pc_client *c;
    cr_assert_eq(pc_client_connect(fx->d.endpoint, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_release(c, fx->l1), 0);
    RC_EQ(c, pc_client_release(c, fx->l2), 0);
    pc_client_close(c);
    hd_statmap s;
    hd_stats_get(&fx->d, &s);
    cr_assert_eq(hd_stat_req(&s, HD_ST_POOL_LEASED), 0);
    cr_assert_eq(hd_stat_req(&s, HD_ST_PINS), 0);
    hd_stop(&fx->d);
}

/* ---- the table ----------------------------------------------------------------------- */

#define EXPECT_DROP 1 /* no reply; the daemon drops it (rpc.dropped + 1) */
#define EXPECT_CUT 2  /* no reply; libzmq cuts the connection (MAXMSGSIZE) */

typedef enum frames_kind {
    F_PAYLOAD = 0, /* [payload]                                    */
    F_ENV,         /* [env..., payload] (env strings of the case)  */
    F_MANY,        /* `many` 1-byte envelope frames, then the payload */
    F_BIGENV,      /* one 70000-byte envelope frame, then payload   */
} frames_kind;

typedef void (*build_fn)(hd_buf *b, const fixture *fx, uint64_t id);

typedef struct bad_case {
    const char *name;
    build_fn build;
    int expect;        /* a status (0 or PC_E_*), or EXPECT_DROP/CUT    */
    uint64_t id;       /* the id the builder puts in the request         */
    bool echo;         /* the reply must echo id (else: id 0)            */
    frames_kind frames;
    const char *env[3]; /* F_ENV: the envelope frames (NULL-ended)       */
    int many;           /* F_MANY: how many envelope frames              */
} bad_case;

#define UNUSED __attribute__((unused))
#define BUILD(name) static void name(hd_buf *b UNUSED, const fixture *fx UNUSED, \
                                     uint64_t id UNUSED)
#define PK (&b->pk)
#define MAP(n) msgpack_pack_map(PK, (n))
#define ARR(n) msgpack_pack_array(PK, (n))
#define KEY(k) pc_pack_cstr(PK, (k))
#define STR(v) pc_pack_cstr(PK, (v))
#define KSTR(k, v) pc_pack_kv_str(PK, (k), (v))
#define KU(k, v) pc_pack_kv_u64(PK, (k), (v))
#define KI(k, v) pc_pack_kv_i64(PK, (k), (v))
#define KB(k, v) pc_pack_kv_bool(PK, (k), (v))
#define KIDS(k, p, n) pc_pack_kv_u32s(PK, (k), (p), (n))
#define HEAD(op, more) (MAP(2 + (more)), KSTR("op", (op)), KU("id", id))
#define RAW(...)                                                               \
    do {                                                                       \
        static const uint8_t raw_[] = {__VA_ARGS__};                           \
        hd_buf_raw(b, raw_, sizeof(raw_));                                     \
    } while (0)
#define NSKV() KSTR("ns", NS)

static void bin_of(hd_buf *b, const char *key, size_t n, uint8_t fill)
{
    KEY(key);
    msgpack_pack_bin(PK, n);
    uint8_t chunk[4096];
    memset(chunk, fill, sizeof(chunk));
    for (size_t left = n; left;) {
        size_t k = left < sizeof(chunk) ? left : sizeof(chunk);
        msgpack_pack_bin_body(PK, chunk, k);
        left -= k;
    }
}

/* --- malformed msgpack -------------------------------------------------------- */

BUILD(b_not_msgpack) { hd_buf_raw(b, "GET / HTTP/1.1\r\n\r\n", 18); }
BUILD(b_empty) { (void)b; }
BUILD(b_truncated_map) { RAW(0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i'); }
BUILD(b_truncated_str) { RAW(0x81, 0xa2, 'o', 'p', 0xd9, 200, 'p', 'i', 'n', 'g'); }
BUILD(b_truncated_u64) { RAW(0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0xcf, 1, 2); }
BUILD(b_array_payload) { RAW(0x91, 0xa4, 'p', 'i', 'n', 'g'); }
BUILD(b_nil_payload) { RAW(0xc0); }
BUILD(b_str_payload) { RAW(0xa4, 'p', 'i', 'n', 'g'); }
BUILD(b_c1) { RAW(0xc1); }
BUILD(b_c1_in_map) { RAW(0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0xc1); }
BUILD(b_trailing) { HEAD("ping", 0); RAW(0x00); }
BUILD(b_two_maps) { HEAD("ping", 0); HEAD("ping", 0); }
BUILD(b_array32_huge) { RAW(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01); }
BUILD(b_map32_huge) { RAW(0xdf, 0xff, 0xff, 0xff, 0xff, 0xa2, 'o', 'p'); }
BUILD(b_map16_huge) { RAW(0xde, 0xff, 0xff, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g'); }
BUILD(b_fixarray_short) { HEAD("ping", 1); KEY("x"); RAW(0x9f, 0x01); }
BUILD(b_bin32_huge_tokens)
{
    HEAD("lookup", 2);
    NSKV();
    KEY("tokens");
    RAW(0xc6, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0);
}
BUILD(b_str32_huge_op) { RAW(0x81, 0xa2, 'o', 'p', 0xdb, 0xff, 0xff, 0xff, 0xff, 'p'); }
BUILD(b_ext32_huge) { HEAD("ping", 1); KEY("x"); RAW(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01); }
BUILD(b_too_deep) /* map > array > array > array > array: depth 5 */
{
    HEAD("ping", 1);
    KEY("x");
    ARR(1), ARR(1), ARR(1), ARR(1);
    msgpack_pack_uint8(PK, 1);
}
BUILD(b_deep_ok) /* depth 4: the limit, accepted */
{
    HEAD("ping", 1);
    KEY("x");
    ARR(1), ARR(1), ARR(1);
    msgpack_pack_uint8(PK, 1);
}
BUILD(b_map_as_key) /* a non-string key: ignored like any unknown key */
{
    MAP(3);
    MAP(1), msgpack_pack_uint8(PK, 1), msgpack_pack_uint8(PK, 2);
    msgpack_pack_uint8(PK, 3);
    KSTR("op", "ping");
    KU("id", id);
}

/* --- mistyped keys -------------------------------------------------------------- */

BUILD(b_op_int) { MAP(2), KU("op", 5), KU("id", id); }
BUILD(b_op_nil) { MAP(2), KEY("op"), msgpack_pack_nil(PK), KU("id", id); }
BUILD(b_op_bin) { MAP(2), KEY("op"), msgpack_pack_bin(PK, 4), msgpack_pack_bin_body(PK, "ping", 4), KU("id", id); }
BUILD(b_op_array) { MAP(2), KEY("op"), ARR(1), STR("ping"), KU("id", id); }
BUILD(b_id_negative) { MAP(2), KSTR("op", "ping"), KI("id", -1); }
BUILD(b_id_string) { MAP(2), KSTR("op", "ping"), KSTR("id", "7"); }
BUILD(b_id_float) { MAP(2), KSTR("op", "ping"), KEY("id"), msgpack_pack_double(PK, 1.5); }
BUILD(b_id_bool) { MAP(2), KSTR("op", "ping"), KB("id", true); }
BUILD(b_ns_int) { HEAD("lookup", 2), KU("ns", 5), KIDS("tokens", fx->tok_a, 8); }
BUILD(b_ns_nil) { HEAD("lookup", 2), KEY("ns"), msgpack_pack_nil(PK), KIDS("tokens", fx->tok_a, 8); }
BUILD(b_ns_array) { HEAD("insert", 4), KEY("ns"), ARR(0), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1), KU("lease", fx->l1); }
BUILD(b_tokens_str) { HEAD("lookup", 2), NSKV(), KSTR("tokens", "abcdefgh"); }
BUILD(b_tokens_bin7) { HEAD("lookup", 2), NSKV(), bin_of(b, "tokens", 7, 1); }
BUILD(b_tokens_bin4097) { HEAD("lookup", 2), NSKV(), bin_of(b, "tokens", 4097, 1); }
BUILD(b_tokens_neg)
{
    HEAD("lookup", 2), NSKV(), KEY("tokens"), ARR(3);
    msgpack_pack_uint32(PK, 1), msgpack_pack_int32(PK, -2), msgpack_pack_uint32(PK, 3);
}
BUILD(b_tokens_2p33)
{
    HEAD("lookup", 2), NSKV(), KEY("tokens"), ARR(2);
    msgpack_pack_uint32(PK, 1), msgpack_pack_uint64(PK, 1ull << 33);
}
BUILD(b_tokens_2p32)
{
    HEAD("lookup", 2), NSKV(), KEY("tokens"), ARR(4);
    msgpack_pack_uint32(PK, 1), msgpack_pack_uint32(PK, 2), msgpack_pack_uint32(PK, 3);
    msgpack_pack_uint64(PK, 1ull << 32);
}
BUILD(b_tokens_strelem) { HEAD("lookup", 2), NSKV(), KEY("tokens"), ARR(2), msgpack_pack_uint32(PK, 1), STR("2"); }
BUILD(b_tokens_float) { HEAD("lookup", 2), NSKV(), KEY("tokens"), ARR(1), msgpack_pack_double(PK, 1.0); }
BUILD(b_tokens_map) { HEAD("lookup", 2), NSKV(), KEY("tokens"), MAP(0); }
BUILD(b_tokens_nil) { HEAD("lookup", 2), NSKV(), KEY("tokens"), msgpack_pack_nil(PK); }
BUILD(b_ins_tokens_str) { HEAD("insert", 4), NSKV(), KSTR("tokens", "abcd"), KIDS("blocks", fx->l1_blocks, 1), KU("lease", fx->l1); }
BUILD(b_ins_lease_str) { HEAD("insert", 4), NSKV(), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1), KSTR("lease", "1"); }
BUILD(b_ins_ns_int) { HEAD("insert", 4), KU("ns", 1), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1), KU("lease", fx->l1); }
BUILD(b_tokens_empty) { HEAD("lookup", 2), NSKV(), KIDS("tokens", fx->tok_a, 0); }
BUILD(b_ns_empty) { HEAD("lookup", 2), KSTR("ns", ""), KIDS("tokens", fx->tok_a, 8); }
BUILD(b_blocks_str) { HEAD("insert", 4), NSKV(), KIDS("tokens", fx->tok_c, 4), KSTR("blocks", "ab"), KU("lease", fx->l1); }
BUILD(b_blocks_bin6) { HEAD("insert", 4), NSKV(), KIDS("tokens", fx->tok_c, 4), bin_of(b, "blocks", 6, 0), KU("lease", fx->l1); }
BUILD(b_blocks_neg)
{
    HEAD("insert", 4), NSKV(), KIDS("tokens", fx->tok_c, 4);
    KEY("blocks"), ARR(1), msgpack_pack_int32(PK, -1);
    KU("lease", fx->l1);
}
BUILD(b_lease_str) { HEAD("lookup", 3), NSKV(), KIDS("tokens", fx->tok_a, 8), KSTR("lease", "abc"); }
BUILD(b_lease_neg) { HEAD("release", 1), KI("lease", -5); }
BUILD(b_lease_float) { HEAD("release", 1), KEY("lease"), msgpack_pack_double(PK, (double)fx->l2); }
BUILD(b_lease_bin) { HEAD("alloc", 2), KU("n", 1), KEY("lease"), msgpack_pack_bin(PK, 8), msgpack_pack_bin_body(PK, &fx->l2, 8); }
BUILD(b_pin_int) { HEAD("lookup", 3), NSKV(), KIDS("tokens", fx->tok_a, 8), KU("pin", 1); }
BUILD(b_pin_str) { HEAD("lookup", 3), NSKV(), KIDS("tokens", fx->tok_a, 8), KSTR("pin", "true"); }
BUILD(b_alloc_str) { HEAD("lookup", 3), NSKV(), KIDS("tokens", fx->tok_c, 8), KSTR("alloc", "yes"); }
BUILD(b_release_int)
{
    HEAD("insert", 5), NSKV(), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1);
    KU("lease", fx->l1), KU("release", 1);
}
BUILD(b_ins_pin_int)
{
    HEAD("insert", 5), NSKV(), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1);
    KU("lease", fx->l1), KU("pin", 1);
}
BUILD(b_ins_pin_release)
{
    HEAD("insert", 6), NSKV(), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1);
    KU("lease", fx->l1), KB("pin", true), KB("release", true);
}
BUILD(b_ins_pin_no_lease)
{
    HEAD("insert", 4), NSKV(), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1);
    KB("pin", true);
}
BUILD(b_n_str) { HEAD("alloc", 1), KSTR("n", "3"); }
BUILD(b_n_neg) { HEAD("alloc", 1), KI("n", -3); }
BUILD(b_n_float) { HEAD("alloc", 1), KEY("n"), msgpack_pack_double(PK, 2.0); }
BUILD(b_version_str) { HEAD("hello", 1), KSTR("version", "1"); }
BUILD(b_version_neg) { HEAD("hello", 1), KI("version", -1); }
BUILD(b_get_str) { HEAD("config", 1), KSTR("get", "lease_ttl_ms"); }
BUILD(b_set_array) { HEAD("config", 1), KEY("set"), ARR(1), msgpack_pack_uint8(PK, 1); }
BUILD(b_flush_ns_int) { HEAD("flush", 1), KU("ns", 7); }
BUILD(b_check_int) { HEAD("stats", 1), KU("check", 1); }

/* --- ops and missing keys ------------------------------------------------------- */

BUILD(b_unknown_op) { HEAD("frobnicate", 0); }
BUILD(b_op_empty) { HEAD("", 0); }
BUILD(b_op_case) { HEAD("PING", 0); }
BUILD(b_op_prefix) { HEAD("pin", 0); }
BUILD(b_op_longer) { HEAD("pings", 0); }
BUILD(b_op_nul)
{
    MAP(2), KEY("op"), msgpack_pack_str(PK, 5), msgpack_pack_str_body(PK, "ping\0", 5);
    KU("id", id);
}
BUILD(b_op_long)
{
    char s[300];
    memset(s, 'x', sizeof(s) - 1);
    s[sizeof(s) - 1] = 0;
    HEAD(s, 0);
}
/* strs that are not UTF-8: the daemon quotes them in its error text, which
 * must still be UTF-8 (issue 11: a strict decoder could not read the reply) */
#define RAWSTR(lit) (msgpack_pack_str(PK, sizeof(lit) - 1), \
                     msgpack_pack_str_body(PK, lit, sizeof(lit) - 1))
BUILD(b_issue11_bytes) /* the issue's exact payload: {op: "\xff", id: 1} */
{
    RAW(0x82, 0xa2, 'o', 'p', 0xa1, 0xff, 0xa2, 'i', 'd', 0x01);
}
BUILD(b_op_ff) { MAP(2), KEY("op"), RAWSTR("\xff"), KU("id", id); }
BUILD(b_op_surrogate) { MAP(2), KEY("op"), RAWSTR("p\xed\xa0\x80g"), KU("id", id); }
BUILD(b_op_overlong) { MAP(2), KEY("op"), RAWSTR("\xc0\xafping"), KU("id", id); }
BUILD(b_op_truncated_seq) { MAP(2), KEY("op"), RAWSTR("ping\xe2\x82"), KU("id", id); }
BUILD(b_op_beyond_10ffff) { MAP(2), KEY("op"), RAWSTR("\xf4\x90\x80\x80"), KU("id", id); }
BUILD(b_op_valid_utf8) { MAP(2), KEY("op"), RAWSTR("p\xc3\xafng \xe2\x82\xac \xf0\x9f\x98\x80"), KU("id", id); }
BUILD(b_set_knob_ff) { HEAD("config", 1), KEY("set"), MAP(1), RAWSTR("lease_ttl\xff"), msgpack_pack_uint8(PK, 5); }
BUILD(b_get_knob_ff) { HEAD("config", 1), KEY("get"), ARR(1), RAWSTR("\xfe\xffknob"); }
BUILD(b_lookup_ns_ff) /* a namespace is bytes: str or bin, any bytes */
{
    HEAD("lookup", 2), KEY("ns"), RAWSTR("\xff\xfe"), KIDS("tokens", fx->tok_a, 8);
}
BUILD(b_bad_key_ff) { HEAD("ping", 1), RAWSTR("\x80key"), msgpack_pack_uint8(PK, 1); }
/* a key given twice: refused, not resolved by order (issue 11) */
BUILD(b_dup_tokens)
{
    HEAD("lookup", 3), NSKV(), KIDS("tokens", fx->tok_a, 8), KIDS("tokens", fx->tok_b, 8);
}
BUILD(b_dup_op) { MAP(3), KSTR("op", "ping"), KU("id", id), KSTR("op", "flush"); }
BUILD(b_dup_id) { MAP(3), KSTR("op", "ping"), KU("id", id), KU("id", id + 1); }
/* id twice behind another duplicate: still id 0 (tests/fuzz found it echoed) */
BUILD(b_dup_op_then_id)
{
    MAP(4), KSTR("op", "ping"), KSTR("op", "ping"), KU("id", id), KU("id", id + 1);
}
BUILD(b_dup_unknown) { HEAD("ping", 2), KU("x", 1), KU("x", 2); }
BUILD(b_missing_op) { MAP(1), KU("id", id); }
BUILD(b_empty_map) { MAP(0); }
BUILD(b_lookup_no_tokens) { HEAD("lookup", 1), NSKV(); }
BUILD(b_lookup_no_ns) { HEAD("lookup", 1), KIDS("tokens", fx->tok_a, 8); }
BUILD(b_insert_no_blocks) { HEAD("insert", 3), NSKV(), KIDS("tokens", fx->tok_c, 4), KU("lease", fx->l1); }
BUILD(b_insert_no_tokens) { HEAD("insert", 3), NSKV(), KIDS("blocks", fx->l1_blocks, 1), KU("lease", fx->l1); }
BUILD(b_insert_no_ns) { HEAD("insert", 3), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", fx->l1_blocks, 1), KU("lease", fx->l1); }
BUILD(b_release_no_lease) { HEAD("release", 0); }
BUILD(b_alloc_no_n) { HEAD("alloc", 1), KU("lease", fx->l2); }

/* --- limits ------------------------------------------------------------------------ */

static void tokens_n(hd_buf *b, size_t n)
{
    uint32_t *t = calloc(n, sizeof(*t));
    cr_assert(t);
    hd_prompt(t, n, 77);
    pc_pack_kv_u32s(PK, "tokens", t, n);
    free(t);
}

BUILD(b_tokens_over) { HEAD("lookup", 2), NSKV(), tokens_n(b, MAX_TOKENS + 1); }
BUILD(b_tokens_at_max) { HEAD("lookup", 2), NSKV(), tokens_n(b, MAX_TOKENS); }
BUILD(b_tokens_over_array)
{
    HEAD("lookup", 2), NSKV(), KEY("tokens"), ARR(MAX_TOKENS + 1);
    for (uint32_t i = 0; i <= MAX_TOKENS; i++)
        msgpack_pack_uint32(PK, i + 1);
}
BUILD(b_blocks_over)
{
    HEAD("insert", 4), NSKV(), KIDS("tokens", fx->tok_c, 4);
    bin_of(b, "blocks", 4 * (MAX_TOKENS + 1), 0);
    KU("lease", fx->l1);
}
BUILD(b_n_over) { HEAD("alloc", 1), KU("n", MAX_TOKENS + 1); }
BUILD(b_n_2p40) { HEAD("alloc", 1), KU("n", 1ull << 40); }
BUILD(b_ns_257)
{
    char ns[257];
    memset(ns, 'n', sizeof(ns));
    HEAD("lookup", 2), KEY("ns"), msgpack_pack_str(PK, 257), msgpack_pack_str_body(PK, ns, 257);
    KIDS("tokens", fx->tok_a, 8);
}
BUILD(b_ns_257_bin)
{
    char ns[257];
    memset(ns, 0xfe, sizeof(ns));
    HEAD("flush", 1), KEY("ns"), msgpack_pack_bin(PK, 257), msgpack_pack_bin_body(PK, ns, 257);
}
BUILD(b_ns_256) /* the limit: accepted; an unknown namespace matches nothing */
{
    char ns[256];
    memset(ns, 'n', sizeof(ns));
    HEAD("lookup", 2), KEY("ns"), msgpack_pack_str(PK, 256), msgpack_pack_str_body(PK, ns, 256);
    KIDS("tokens", fx->tok_a, 8);
}
BUILD(b_msg_over) /* over max_msg, within ZMQ_MAXMSGSIZE: TOOBIG reply */
{
    HEAD("ping", 1);
    bin_of(b, "junk", MAX_MSG + 100, 0x33);
}
BUILD(b_msg_way_over) /* over ZMQ_MAXMSGSIZE: libzmq drops the connection */
{
    HEAD("ping", 1);
    bin_of(b, "junk", ZMQ_MAX + 4096, 0x44);
}

/* --- cache semantics ----------------------------------------------------------------- */

static void insert_c(hd_buf *b, uint64_t id, const uint32_t *tok, size_t n,
                     const uint32_t *blocks, size_t nb, uint64_t lease)
{
    HEAD("insert", 3 + (lease != 0));
    KSTR("ns", NS);
    KIDS("tokens", tok, n);
    KIDS("blocks", blocks, nb);
    if (lease)
        KU("lease", lease);
}

BUILD(b_blk_range) { uint32_t x = HD_POOL_BLOCKS + 1000; insert_c(b, id, fx->tok_c, 4, &x, 1, fx->l1); }
BUILD(b_blk_cap) { uint32_t x = HD_POOL_BLOCKS; insert_c(b, id, fx->tok_c, 4, &x, 1, fx->l1); }
BUILD(b_blk_u32max) { uint32_t x = UINT32_MAX; insert_c(b, id, fx->tok_c, 4, &x, 1, fx->l1); }
BUILD(b_blk_other_lease) { insert_c(b, id, fx->tok_c, 4, &fx->l2_block, 1, fx->l1); }
BUILD(b_blk_free) { insert_c(b, id, fx->tok_c, 4, &fx->free_block, 1, fx->l1); }
BUILD(b_blk_cached_other) { insert_c(b, id, fx->tok_c, 4, &fx->canon_b[0], 1, fx->l1); }
BUILD(b_blk_wrong_canon) /* A's page 0 given B's block */
{
    uint32_t x[2] = {fx->canon_b[0], fx->canon_a[1]};
    insert_c(b, id, fx->tok_a, 8, x, 2, fx->l1);
}
BUILD(b_blk_no_lease) { insert_c(b, id, fx->tok_c, 4, &fx->l1_blocks[0], 1, 0); }
BUILD(b_blk_dup) { uint32_t x[2] = {fx->l1_blocks[0], fx->l1_blocks[0]}; insert_c(b, id, fx->tok_c, 8, x, 2, fx->l1); }
BUILD(b_blk_second_bad) /* page 0 fine, page 1 not the lease's: all or nothing */
{
    uint32_t x[2] = {fx->l1_blocks[0], fx->l2_block};
    insert_c(b, id, fx->tok_c, 8, x, 2, fx->l1);
}
BUILD(b_blk_count_short) { insert_c(b, id, fx->tok_c, 8, fx->l1_blocks, 1, fx->l1); }
BUILD(b_blk_count_long) { insert_c(b, id, fx->tok_c, 4, fx->l1_blocks, 2, fx->l1); }
BUILD(b_insert_dead_lease) { insert_c(b, id, fx->tok_c, 4, fx->l1_blocks, 1, DEAD_LEASE); }
BUILD(b_insert_released_lease) { insert_c(b, id, fx->tok_c, 4, fx->l1_blocks, 1, fx->dead); }
BUILD(b_insert_release_bad) /* release: true on a rejected insert: lease stays */
{
    uint32_t x = fx->l2_block;
    HEAD("insert", 5), NSKV(), KIDS("tokens", fx->tok_c, 4), KIDS("blocks", &x, 1);
    KU("lease", fx->l1), KB("release", true);
}
BUILD(b_lookup_dead_lease) { HEAD("lookup", 3), NSKV(), KIDS("tokens", fx->tok_a, 8), KU("lease", DEAD_LEASE); }
BUILD(b_lookup_pin_dead_lease)
{
    HEAD("lookup", 4), NSKV(), KIDS("tokens", fx->tok_a, 8), KU("lease", DEAD_LEASE), KB("pin", true);
}
BUILD(b_lookup_alloc_dead_lease)
{
    HEAD("lookup", 4), NSKV(), KIDS("tokens", fx->tok_c, 8), KU("lease", fx->dead), KB("alloc", true);
}
BUILD(b_alloc_dead_lease) { HEAD("alloc", 2), KU("n", 1), KU("lease", DEAD_LEASE); }
BUILD(b_alloc_nospace) { HEAD("alloc", 1), KU("n", 1000); }
BUILD(b_alloc_nospace_lease) { HEAD("alloc", 2), KU("n", HD_POOL_BLOCKS), KU("lease", fx->l2); }
BUILD(b_release_dead) { HEAD("release", 1), KU("lease", DEAD_LEASE); }
BUILD(b_release_twice) { HEAD("release", 1), KU("lease", fx->dead); }
BUILD(b_release_zero) { HEAD("release", 1), KU("lease", 0); }
BUILD(b_hello_v2) { HEAD("hello", 1), KU("version", 2); }
BUILD(b_hello_vhuge) { HEAD("hello", 1), KU("version", UINT64_MAX); }
BUILD(b_lookup_alloc_nospace) /* a 300-page prompt: lookup ok, alloc refused */
{
    HEAD("lookup", 3), NSKV(), tokens_n(b, 300 * P > MAX_TOKENS ? MAX_TOKENS : 300 * P);
    KB("alloc", true);
}
BUILD(b_flush_unknown_ns) { HEAD("flush", 1), KSTR("ns", "no-such-namespace"); }

/* --- config ------------------------------------------------------------------------------ */

BUILD(b_set_unknown) { HEAD("config", 1), KEY("set"), MAP(1), KU("no_such_knob", 1); }
BUILD(b_set_nonreloadable) { HEAD("config", 1), KEY("set"), MAP(1), KU("pool_blocks", 128); }
BUILD(b_set_bad_value) { HEAD("config", 1), KEY("set"), MAP(1), KSTR("lease_ttl_ms", "banana"); }
BUILD(b_set_zero_ttl) { HEAD("config", 1), KEY("set"), MAP(1), KU("lease_ttl_ms", 0); }
BUILD(b_set_neg_ttl) { HEAD("config", 1), KEY("set"), MAP(1), KI("lease_ttl_ms", -5); }
BUILD(b_set_float_ttl) { HEAD("config", 1), KEY("set"), MAP(1), KEY("lease_ttl_ms"), msgpack_pack_double(PK, 1.5); }
BUILD(b_set_nested) { HEAD("config", 1), KEY("set"), MAP(1), KEY("lease_ttl_ms"), ARR(1), msgpack_pack_uint8(PK, 1); }
BUILD(b_set_bool_ttl) { HEAD("config", 1), KEY("set"), MAP(1), KB("lease_ttl_ms", true); }
BUILD(b_set_low_wm) { HEAD("config", 1), KEY("set"), MAP(1), KU("low_watermark", 50); }
/* a good set with a get of an unknown knob: refused, and the set not made */
BUILD(b_set_get_unknown)
{
    HEAD("config", 2), KEY("get"), ARR(1), STR("no_such_knob"),
        KEY("set"), MAP(1), KU("lease_ttl_ms", 778);
}
BUILD(b_set_partly_bad) /* all or nothing: the good half is not applied */
{
    HEAD("config", 1), KEY("set"), MAP(2), KU("lease_ttl_ms", 777), KU("no_such_knob", 1);
}
BUILD(b_set_key_int) { HEAD("config", 1), KEY("set"), MAP(1), msgpack_pack_uint8(PK, 1), msgpack_pack_uint8(PK, 2); }
BUILD(b_get_unknown) { HEAD("config", 1), KEY("get"), ARR(1), STR("no_such_knob"); }
BUILD(b_set_twice) { HEAD("config", 1), KEY("set"), MAP(2), KU("lease_ttl_ms", 777), KU("lease_ttl_ms", 778); }
BUILD(b_get_int_name) { HEAD("config", 1), KEY("get"), ARR(1), msgpack_pack_uint8(PK, 5); }

/* --- frames -------------------------------------------------------------------------------- */

BUILD(b_ping) { HEAD("ping", 0); }

#define E(name_, fn_, expect_, id_, echo_)                                     \
    {.name = name_, .build = fn_, .expect = expect_, .id = id_, .echo = echo_,   \
     .frames = F_PAYLOAD}

static const bad_case g_malformed[] = {
    E("not msgpack (HTTP)", b_not_msgpack, PC_E_BADMSG, 0, false),
    E("empty payload", b_empty, PC_E_BADMSG, 0, false),
    E("truncated map", b_truncated_map, PC_E_BADMSG, 0, false),
    E("truncated str8", b_truncated_str, PC_E_BADMSG, 0, false),
    E("truncated uint64", b_truncated_u64, PC_E_BADMSG, 0, false),
    E("payload is an array", b_array_payload, PC_E_BADMSG, 0, false),
    E("payload is nil", b_nil_payload, PC_E_BADMSG, 0, false),
    E("payload is a str", b_str_payload, PC_E_BADMSG, 0, false),
    E("0xc1 byte", b_c1, PC_E_BADMSG, 0, false),
    E("0xc1 inside the map", b_c1_in_map, PC_E_BADMSG, 0, false),
    E("trailing byte after the map", b_trailing, PC_E_BADMSG, 101, false),
    E("two maps in one frame", b_two_maps, PC_E_BADMSG, 102, false),
    E("array32 claiming 2^32-1", b_array32_huge, PC_E_BADMSG, 0, false),
    E("map32 claiming 2^32-1", b_map32_huge, PC_E_BADMSG, 0, false),
    E("map16 claiming 65535", b_map16_huge, PC_E_BADMSG, 0, false),
    E("fixarray claiming 15, holding 1", b_fixarray_short, PC_E_BADMSG, 103, false),
    E("bin32 tokens claiming 2^32-1", b_bin32_huge_tokens, PC_E_BADMSG, 104, false),
    E("str32 op claiming 2^32-1", b_str32_huge_op, PC_E_BADMSG, 0, false),
    E("ext32 claiming 2^32-1", b_ext32_huge, PC_E_BADMSG, 105, false),
    E("nested 5 deep", b_too_deep, PC_E_BADMSG, 106, false),
    E("nested 4 deep (limit, accepted)", b_deep_ok, 0, 107, true),
    E("map as key (ignored)", b_map_as_key, 0, 108, true),
};

static const bad_case g_types[] = {
    E("op is an int", b_op_int, PC_E_BADMSG, 201, true),
    E("op is nil", b_op_nil, PC_E_BADMSG, 202, true),
    E("op is bin", b_op_bin, PC_E_BADMSG, 203, true),
    E("op is an array", b_op_array, PC_E_BADMSG, 204, true),
    E("id negative", b_id_negative, PC_E_BADMSG, 0, false),
    E("id a string", b_id_string, PC_E_BADMSG, 0, false),
    E("id a float", b_id_float, PC_E_BADMSG, 0, false),
    E("id a bool", b_id_bool, PC_E_BADMSG, 0, false),
    E("lookup: ns an int", b_ns_int, PC_E_BADMSG, 205, true),
    E("lookup: ns nil", b_ns_nil, PC_E_BADMSG, 206, true),
    E("insert: ns an array", b_ns_array, PC_E_BADMSG, 207, true),
    E("lookup: tokens a string", b_tokens_str, PC_E_BADMSG, 208, true),
    E("lookup: tokens bin of 7 bytes", b_tokens_bin7, PC_E_BADMSG, 209, true),
    E("lookup: tokens bin of 4097 bytes", b_tokens_bin4097, PC_E_BADMSG, 210, true),
    E("lookup: tokens array with a negative", b_tokens_neg, PC_E_BADMSG, 211, true),
    E("lookup: tokens array with 2^33", b_tokens_2p33, PC_E_BADMSG, 212, true),
    E("lookup: tokens array with 2^32", b_tokens_2p32, PC_E_BADMSG, 213, true),
    E("lookup: tokens array with a string", b_tokens_strelem, PC_E_BADMSG, 214, true),
    E("lookup: tokens array with a float", b_tokens_float, PC_E_BADMSG, 215, true),
    E("lookup: tokens a map", b_tokens_map, PC_E_BADMSG, 216, true),
    E("lookup: tokens nil", b_tokens_nil, PC_E_BADMSG, 217, true),
    E("insert: blocks a string", b_blocks_str, PC_E_BADMSG, 218, true),
    E("insert: tokens a string", b_ins_tokens_str, PC_E_BADMSG, 238, true),
    E("insert: lease a string", b_ins_lease_str, PC_E_BADMSG, 239, true),
    E("insert: ns an int", b_ins_ns_int, PC_E_BADMSG, 240, true),
    E("lookup: empty tokens (accepted)", b_tokens_empty, 0, 241, true),
    E("lookup: empty namespace (accepted)", b_ns_empty, 0, 242, true),
    E("insert: blocks bin of 6 bytes", b_blocks_bin6, PC_E_BADMSG, 219, true),
    E("insert: blocks array with -1", b_blocks_neg, PC_E_BADMSG, 220, true),
    E("lookup: lease a string", b_lease_str, PC_E_BADMSG, 221, true),
    E("release: lease negative", b_lease_neg, PC_E_BADMSG, 222, true),
    E("release: lease a float", b_lease_float, PC_E_BADMSG, 223, true),
    E("alloc: lease bin", b_lease_bin, PC_E_BADMSG, 224, true),
    E("lookup: pin an int", b_pin_int, PC_E_BADMSG, 225, true),
    E("lookup: pin a string", b_pin_str, PC_E_BADMSG, 226, true),
    E("lookup: alloc a string", b_alloc_str, PC_E_BADMSG, 227, true),
    E("insert: release an int", b_release_int, PC_E_BADMSG, 228, true),
    E("insert: pin an int", b_ins_pin_int, PC_E_BADMSG, 614, true),
    E("insert: pin and release together", b_ins_pin_release, PC_E_INVAL, 615, true),
    E("insert: pin without a lease", b_ins_pin_no_lease, PC_E_INVAL, 616, true),
    E("alloc: n a string", b_n_str, PC_E_BADMSG, 229, true),
    E("alloc: n negative", b_n_neg, PC_E_BADMSG, 230, true),
    E("alloc: n a float", b_n_float, PC_E_BADMSG, 231, true),
    E("hello: version a string", b_version_str, PC_E_BADMSG, 232, true),
    E("hello: version negative", b_version_neg, PC_E_BADMSG, 233, true),
    E("config: get a string", b_get_str, PC_E_BADMSG, 234, true),
    E("config: set an array", b_set_array, PC_E_BADMSG, 235, true),
    E("flush: ns an int (must not flush all)", b_flush_ns_int, PC_E_BADMSG, 236, true),
    E("stats: check an int", b_check_int, PC_E_BADMSG, 237, true),
};

static const bad_case g_ops[] = {
    E("unknown op", b_unknown_op, PC_E_BADOP, 301, true),
    E("op empty string", b_op_empty, PC_E_BADOP, 302, true),
    E("op upper case", b_op_case, PC_E_BADOP, 303, true),
    E("op a prefix of ping", b_op_prefix, PC_E_BADOP, 304, true),
    E("op ping + 's'", b_op_longer, PC_E_BADOP, 305, true),
    E("op 'ping\\0'", b_op_nul, PC_E_BADOP, 306, true),
    E("op of 299 bytes", b_op_long, PC_E_BADOP, 307, true),
    E("unknown op, id 2^64-1", b_unknown_op, PC_E_BADOP, UINT64_MAX, true),
    E("op '\\xff' (the issue's bytes, id 1)", b_issue11_bytes, PC_E_BADOP, 1, true),
    E("op '\\xff'", b_op_ff, PC_E_BADOP, 316, true),
    E("op with a UTF-16 surrogate", b_op_surrogate, PC_E_BADOP, 317, true),
    E("op with an overlong '/'", b_op_overlong, PC_E_BADOP, 318, true),
    E("op ending in half a sequence", b_op_truncated_seq, PC_E_BADOP, 319, true),
    E("op beyond U+10FFFF", b_op_beyond_10ffff, PC_E_BADOP, 320, true),
    E("op of valid non-ASCII UTF-8", b_op_valid_utf8, PC_E_BADOP, 321, true),
    E("lookup: ns str of bytes that are not UTF-8 (accepted)", b_lookup_ns_ff, 0, 322, true),
    E("ping: an unknown key that is not UTF-8 (ignored)", b_bad_key_ff, 0, 323, true),
    E("lookup: 'tokens' twice", b_dup_tokens, PC_E_BADMSG, 324, true),
    E("'op' twice (ping, flush)", b_dup_op, PC_E_BADMSG, 325, true),
    E("'id' twice (id 0 echoed)", b_dup_id, PC_E_BADMSG, 326, false),
    E("'op' twice, then 'id' twice (id 0 echoed)", b_dup_op_then_id, PC_E_BADMSG, 328, false),
    E("an unknown key twice (ignored)", b_dup_unknown, 0, 327, true),
    E("missing op", b_missing_op, PC_E_BADMSG, 308, true),
    E("empty map", b_empty_map, PC_E_BADMSG, 0, false),
    E("lookup without tokens", b_lookup_no_tokens, PC_E_BADMSG, 309, true),
    E("lookup without ns", b_lookup_no_ns, PC_E_BADMSG, 310, true),
    E("insert without blocks", b_insert_no_blocks, PC_E_BADMSG, 311, true),
    E("insert without tokens", b_insert_no_tokens, PC_E_BADMSG, 312, true),
    E("insert without ns", b_insert_no_ns, PC_E_BADMSG, 313, true),
    E("release without lease", b_release_no_lease, PC_E_BADMSG, 314, true),
    E("alloc without n", b_alloc_no_n, PC_E_BADMSG, 315, true),
};

static const bad_case g_limits[] = {
    E("tokens: max_tokens + 1 (bin)", b_tokens_over, PC_E_TOOBIG, 401, true),
    E("tokens: max_tokens + 1 (array)", b_tokens_over_array, PC_E_TOOBIG, 402, true),
    E("tokens: max_tokens (limit, accepted)", b_tokens_at_max, 0, 403, true),
    E("insert: blocks max_tokens + 1", b_blocks_over, PC_E_TOOBIG, 404, true),
    E("alloc: n max_tokens + 1", b_n_over, PC_E_TOOBIG, 405, true),
    E("alloc: n 2^40", b_n_2p40, PC_E_TOOBIG, 406, true),
    E("lookup: namespace of 257 bytes", b_ns_257, PC_E_TOOBIG, 407, true),
    E("flush: namespace of 257 bytes (bin)", b_ns_257_bin, PC_E_TOOBIG, 408, true),
    E("lookup: namespace of 256 bytes (limit, accepted)", b_ns_256, 0, 409, true),
    E("payload max_msg + 100 bytes", b_msg_over, PC_E_TOOBIG, 0, false),
    E("payload over ZMQ_MAXMSGSIZE", b_msg_way_over, EXPECT_CUT, 0, false),
    E("ping after the cut", b_ping, 0, 410, true),
};

static const bad_case g_semantic[] = {
    E("insert: block id capacity + 1000", b_blk_range, PC_E_RANGE, 501, true),
    E("insert: block id = capacity", b_blk_cap, PC_E_RANGE, 502, true),
    E("insert: block id 2^32-1", b_blk_u32max, PC_E_RANGE, 503, true),
    E("insert: block of another lease", b_blk_other_lease, PC_E_PERM, 504, true),
    E("insert: a FREE block", b_blk_free, PC_E_PERM, 505, true),
    E("insert: a block cached for another page", b_blk_cached_other, PC_E_PERM, 506, true),
    E("insert: cached page given a wrong block", b_blk_wrong_canon, PC_E_PERM, 507, true),
    E("insert: own block but no lease named", b_blk_no_lease, PC_E_PERM, 508, true),
    E("insert: the same block for two pages", b_blk_dup, PC_E_INVAL, 509, true),
    E("insert: second page's block not owned", b_blk_second_bad, PC_E_PERM, 510, true),
    E("insert: fewer blocks than pages", b_blk_count_short, PC_E_INVAL, 511, true),
    E("insert: more blocks than pages", b_blk_count_long, PC_E_INVAL, 512, true),
    E("insert: unknown lease", b_insert_dead_lease, PC_E_LEASE, 513, true),
    E("insert: released lease", b_insert_released_lease, PC_E_LEASE, 514, true),
    E("insert+release rejected: lease stays", b_insert_release_bad, PC_E_PERM, 515, true),
    E("lookup: unknown lease", b_lookup_dead_lease, PC_E_LEASE, 516, true),
    E("lookup+pin: unknown lease", b_lookup_pin_dead_lease, PC_E_LEASE, 517, true),
    E("lookup+alloc: released lease", b_lookup_alloc_dead_lease, PC_E_LEASE, 518, true),
    E("alloc: unknown lease", b_alloc_dead_lease, PC_E_LEASE, 519, true),
    E("alloc: 1000 blocks (NOSPACE)", b_alloc_nospace, PC_E_NOSPACE, 520, true),
    E("alloc: 64 more on a lease (NOSPACE)", b_alloc_nospace_lease, PC_E_NOSPACE, 521, true),
    E("lookup+alloc beyond the pool: alloc_status", b_lookup_alloc_nospace, 0, 522, true),
    E("release: unknown lease", b_release_dead, PC_E_LEASE, 523, true),
    E("release twice", b_release_twice, PC_E_LEASE, 524, true),
    E("release: lease 0", b_release_zero, PC_E_LEASE, 525, true),
    E("hello: version 2", b_hello_v2, PC_E_VERSION, 526, true),
    E("hello: version 2^64-1", b_hello_vhuge, PC_E_VERSION, 527, true),
    E("flush: unknown namespace", b_flush_unknown_ns, 0, 528, true),
};

static const bad_case g_config[] = {
    E("config set: unknown knob", b_set_unknown, PC_E_NOENT, 601, true),
    E("config set: non-reloadable knob", b_set_nonreloadable, PC_E_PERM, 602, true),
    E("config set: lease_ttl_ms 'banana'", b_set_bad_value, PC_E_INVAL, 603, true),
    E("config set: lease_ttl_ms 0", b_set_zero_ttl, PC_E_RANGE, 604, true),
    E("config set: lease_ttl_ms a bool", b_set_bool_ttl, PC_E_INVAL, 609, true),
    E("config set: lease_ttl_ms -5", b_set_neg_ttl, PC_E_RANGE, 611, true),
    E("config set: lease_ttl_ms 1.5", b_set_float_ttl, PC_E_INVAL, 612, true),
    E("config set: lease_ttl_ms an array", b_set_nested, PC_E_INVAL, 613, true),
    E("config set: low_watermark above high", b_set_low_wm, PC_E_RANGE, 610, true),
    E("config set: good + unknown (all or nothing)", b_set_partly_bad, PC_E_NOENT, 605, true),
    E("config set good + get unknown (set not made)", b_set_get_unknown, PC_E_NOENT, 617, true),
    E("config set: an int as name", b_set_key_int, PC_E_BADMSG, 606, true),
    E("config get: unknown knob", b_get_unknown, PC_E_NOENT, 607, true),
    E("config get: an int as name", b_get_int_name, PC_E_BADMSG, 608, true),
    E("config set: a knob name that is not UTF-8", b_set_knob_ff, PC_E_NOENT, 614, true),
    E("config set: the same knob twice", b_set_twice, PC_E_INVAL, 616, true),
    E("config get: a knob name that is not UTF-8", b_get_knob_ff, PC_E_NOENT, 615, true),
};

static const bad_case g_frames[] = {
    {.name = "extra frames [a, b, payload]: answered, envelope echoed",
     .build = b_ping, .expect = 0, .id = 701, .echo = true, .frames = F_ENV,
     .env = {"a", "b", NULL}},
    {.name = "REQ-style [\"\", payload] from a DEALER", .build = b_ping,
     .expect = 0, .id = 702, .echo = true, .frames = F_ENV, .env = {"", NULL}},
    {.name = "[\"x\", <empty payload>]", .build = b_empty,
     .expect = PC_E_BADMSG, .frames = F_ENV, .env = {"x", NULL}},
    {.name = "[\"\", <not msgpack>]", .build = b_not_msgpack,
     .expect = PC_E_BADMSG, .frames = F_ENV, .env = {"", NULL}},
    /* the server keeps 32 envelope frames, ROUTER's identity included */
    {.name = "31 envelope frames (+ identity = 32): answered", .build = b_ping,
     .expect = 0, .id = 706, .echo = true, .frames = F_MANY, .many = 31},
    {.name = "32 envelope frames (+ identity = 33): dropped", .build = b_ping,
     .expect = EXPECT_DROP, .id = 707, .frames = F_MANY, .many = 32},
    {.name = "40 envelope frames: dropped", .build = b_ping,
     .expect = EXPECT_DROP, .id = 703, .frames = F_MANY, .many = 40},
    {.name = "70000-byte envelope frame: dropped", .build = b_ping,
     .expect = EXPECT_DROP, .id = 704, .frames = F_BIGENV},
    E("ping after the drops", b_ping, 0, 705, true),
};

/* ---- the runner -------------------------------------------------------------------------- */

/* rpc.errors / rpc.dropped in a stats map. */
static uint64_t counter(const hd_statmap *s, const char *name)
{
    return hd_stat_req(s, name);
}

static void send_case(hd_conn *c, const bad_case *k, hd_buf *payload,
                      int *nenv_out)
{
    const void *f[48];
    size_t l[48];
    int n = 0;
    static char big[70000];
    switch (k->frames) {
    case F_PAYLOAD:
        break;
    case F_ENV:
        for (int i = 0; k->env[i]; i++, n++) {
            f[n] = k->env[i];
            l[n] = strlen(k->env[i]);
        }
        break;
    case F_MANY:
        cr_assert(k->many < 48);
        for (; n < k->many; n++) {
            f[n] = "e";
            l[n] = 1;
        }
        break;
    case F_BIGENV:
        memset(big, 'E', sizeof(big));
        f[n] = big;
        l[n++] = sizeof(big);
        break;
    }
    *nenv_out = n;
    f[n] = payload->sb.data;
    l[n++] = payload->sb.size;
    hd_send(c, f, l, n);
}

/* The server logs at most one "dropped" line a second (a flooding peer must
 * not flood the log): a drop case waits out that second after the last. */
static int64_t g_last_drop_ms;

static void run_case(fixture *fx, const bad_case *k)
{
    fprintf(stderr, "  case: %s\n", k->name);
    if (k->expect == EXPECT_DROP) {
        int64_t since = hd_now_ms() - g_last_drop_ms;
        if (g_last_drop_ms && since < 1100)
            hd_sleep_ms((int)(1100 - since));
        g_last_drop_ms = hd_now_ms();
    }
    hd_statmap before, after;
    hd_stats_get(&fx->d, &before);
    size_t log_at = hd_log_size(&fx->d);

    hd_buf b;
    hd_buf_init(&b);
    k->build(&b, fx, k->id);
    hd_conn c;
    hd_conn_open(&c, fx->d.endpoint, ZMQ_DEALER);
    int nenv;
    send_case(&c, k, &b, &nenv);
    hd_msg m;
    bool want_reply = k->expect <= 0;
    hd_recv(&c, want_reply ? HD_CALL_MS : NOREPLY_MS, &m);

    if (!want_reply) {
        cr_assert_eq(m.n, 0, "[%s] expected no reply, got %d frames", k->name, m.n);
    } else {
        cr_assert(m.n > 0, "[%s] no reply within %d ms", k->name, HD_CALL_MS);
        /* the envelope comes back unchanged before the reply */
        cr_assert_eq(m.total, nenv + 1, "[%s] reply has %d frames, want %d",
                     k->name, m.total, nenv + 1);
        for (int i = 0; i < nenv && i < m.n - 1; i++) {
            size_t len;
            const void *p = hd_frame(&m, i, &len);
            const char *want = k->frames == F_ENV ? k->env[i] : "e";
            cr_assert(len == strlen(want) && memcmp(p, want, len) == 0,
                      "[%s] envelope frame %d not echoed", k->name, i);
        }
        hd_reply r;
        hd_reply_decode(&m, &r);
        cr_assert_eq(r.status, k->expect, "[%s] status %" PRId64 " (%s: %s), want "
                     "%d (%s)", k->name, r.status, pc_errname((int)r.status),
                     r.error, k->expect, pc_errname(k->expect));
        uint64_t want_id = k->echo ? k->id : 0;
        cr_assert_eq(r.id, want_id, "[%s] reply id %" PRIu64 ", want %" PRIu64,
                     k->name, r.id, want_id);
        if (r.status)
            fprintf(stderr, "        -> %s: %s\n", pc_errname((int)r.status), r.error);
        /* a successful lookup+alloc beyond the pool reports the alloc */
        if (k->build == b_lookup_alloc_nospace) {
            int64_t ast = 1;
            cr_assert_eq(pc_mp_get_i64(r.map, "alloc_status", &ast), 0);
            cr_assert_eq(ast, PC_E_NOSPACE);
            uint64_t lease = 1;
            cr_assert_eq(pc_mp_get_u64(r.map, "lease", &lease), 0);
            cr_assert_eq(lease, 0, "[%s] a refused alloc left a lease", k->name);
        }
        hd_reply_free(&r);
    }
    hd_msg_free(&m);
    hd_conn_close(&c);
    hd_buf_free(&b);

    cr_assert(hd_alive(&fx->d), "[%s] the daemon died", k->name);
    hd_stats_get(&fx->d, &after); /* asserts check == 0 */
    hd_gauges_eq(&before, &after, k->name);
    uint64_t de = counter(&after, HD_ST_RPC_ERRORS) - counter(&before, HD_ST_RPC_ERRORS);
    uint64_t dd = counter(&after, HD_ST_RPC_DROPPED) - counter(&before, HD_ST_RPC_DROPPED);
    cr_assert_eq(de, k->expect < 0 ? 1u : 0u, "[%s] rpc.errors moved by %" PRIu64,
                 k->name, de);
    cr_assert_eq(dd, k->expect == EXPECT_DROP ? 1u : 0u,
                 "[%s] rpc.dropped moved by %" PRIu64, k->name, dd);
    if (k->expect == EXPECT_DROP)
        cr_assert(hd_log_has(&fx->d, log_at, 2000, "dropped", NULL),
                  "[%s] the drop was not logged", k->name);
}

static void run_table(const char *group, const bad_case *t, size_t n)
{
    fixture fx;
    fprintf(stderr, "group %s: %zu cases\n", group, n);
    fixture_up(&fx);
    for (size_t i = 0; i < n; i++)
        run_case(&fx, &t[i]);
    fixture_down(&fx);
}

#define TABLE(t) run_table(#t, t, HD_NELEM(t))

Test(badinput, malformed) { TABLE(g_malformed); }
Test(badinput, types) { TABLE(g_types); }
Test(badinput, ops) { TABLE(g_ops); }
Test(badinput, limits) { TABLE(g_limits); }
Test(badinput, semantic) { TABLE(g_semantic); }
Test(badinput, config) { TABLE(g_config); }
Test(badinput, frames) { TABLE(g_frames); }

/* The config cases must leave the knobs as they were, too. */
Test(badinput, config_unchanged)
{
    fixture fx;
    fixture_up(&fx);
    pc_client *c;
    pc_hello h0, h1;
    cr_assert_eq(pc_client_connect(fx.d.endpoint, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_hello(c, &h0), 0);
    for (size_t i = 0; i < HD_NELEM(g_config); i++)
        run_case(&fx, &g_config[i]);
    RC_EQ(c, pc_client_hello(c, &h1), 0);
    cr_assert_eq(h1.lease_ttl_ms, h0.lease_ttl_ms, "a rejected config set "
                 "changed lease_ttl_ms to %" PRIu64, h1.lease_ttl_ms);
    cr_assert_eq(h1.capacity, h0.capacity);
    pc_client_close(c);
    fixture_down(&fx);
}

/* Many bad messages back to back on ONE socket, interleaved with good ones:
 * every request gets exactly its reply, in order, and the daemon stays up. */
Test(badinput, burst_one_socket)
{
    fixture fx;
    fixture_up(&fx);
    const bad_case *all[] = {&g_malformed[0], &g_malformed[8], &g_types[4],
                             &g_types[12], &g_ops[0], &g_ops[9], &g_limits[0],
                             &g_semantic[0], &g_semantic[22]};
    hd_conn c;
    hd_conn_open(&c, fx.d.endpoint, ZMQ_DEALER);
    enum { ROUNDS = 20 };
    for (int round = 0; round < ROUNDS; round++)
        for (size_t i = 0; i < HD_NELEM(all); i++) {
            hd_buf b;
            hd_buf_init(&b);
            all[i]->build(&b, &fx, all[i]->id);
            const void *f[1] = {b.sb.data};
            size_t l[1] = {b.sb.size};
            hd_send(&c, f, l, 1);
            hd_buf_free(&b);
            hd_buf_init(&b);
            uint64_t id = 10000 + (uint64_t)round * 100 + i;
            b_ping(&b, &fx, id);
            f[0] = b.sb.data;
            l[0] = b.sb.size;
            hd_send(&c, f, l, 1);
            hd_buf_free(&b);
        }
    for (int round = 0; round < ROUNDS; round++)
        for (size_t i = 0; i < HD_NELEM(all); i++) {
            hd_msg m;
            hd_reply r;
            hd_recv(&c, HD_CALL_MS, &m);
            hd_reply_decode(&m, &r);
            cr_assert_eq(r.status, all[i]->expect, "%s", all[i]->name);
            hd_reply_free(&r);
            hd_msg_free(&m);
            hd_recv(&c, HD_CALL_MS, &m);
            hd_reply_decode(&m, &r);
            cr_assert_eq(r.status, 0);
            cr_assert_eq(r.id, 10000 + (uint64_t)round * 100 + i);
            hd_reply_free(&r);
            hd_msg_free(&m);
        }
    hd_conn_close(&c);
    hd_statmap s;
    hd_stats_get(&fx.d, &s);
    cr_assert_eq(hd_stat_req(&s, HD_ST_TREE_PAGES), 4);
    cr_assert_eq(hd_stat_req(&s, HD_ST_LEASES), 2);
    fixture_down(&fx);
}

/* ---- mutations ------------------------------------------------------------------------ */

/*
 * A seeded mutation loop (issue 11): every payload of the tables above that
 * gets a reply, mutated 1-3 times (random bytes, bytes >= 0x80, inserts,
 * deletes, truncation, splices, +-1 on a byte), MUTATIONS of them pipelined
 * on one DEALER.  Every reply must arrive, in order, and decode as a reply
 * whose every str is strict UTF-8 (hd_reply_decode).  Mutants may be valid
 * requests, admin ones included, so the state is not compared; at the end
 * the daemon answers, its self-check passes and every block is accounted
 * for.  PC_MUT_SEED / PC_MUT_N reproduce or lengthen a run.
 */
#define MUTATIONS 100000
#define MUT_WINDOW 128
#define MUT_MAX 8192

static uint64_t mut_rng;

static uint64_t mut_rnd(void) { return test_rng_next(&mut_rng); }
static size_t mut_below(size_t n) { return n ? (size_t)(mut_rnd() % n) : 0; }

static size_t mutate(uint8_t *m, size_t n, const uint8_t *donor, size_t dn)
{
    for (size_t k = 1 + mut_below(3); k > 0; k--) {
        size_t at = mut_below(n + 1), len = 1 + mut_below(8);
        switch (mut_below(7)) {
        case 0: if (at < n) m[at] = (uint8_t)mut_rnd(); break;
        case 1: if (at < n) m[at] = (uint8_t)(0x80 | mut_rnd()); break;
        case 2:
            if (n + len > MUT_MAX)
                break;
            memmove(m + at + len, m + at, n - at);
            for (size_t i = 0; i < len; i++)
                m[at + i] = (uint8_t)mut_rnd();
            n += len;
            break;
        case 3:
            if (at + len > n)
                len = n - at;
            memmove(m + at, m + at + len, n - at - len);
            n -= len;
            break;
        case 4: n = at; break;
        case 5: /* splice a piece of another seed over this one */
            if (!dn)
                break;
            for (size_t i = 0, from = mut_below(dn); i < len && at + i < n && from + i < dn; i++)
                m[at + i] = donor[from + i];
            break;
        default: if (at < n) m[at] = (uint8_t)(m[at] + (mut_rnd() & 1 ? 1 : -1)); break;
        }
    }
    return n;
}

Test(badinput, mutations_strict_utf8, .timeout = 300)
{
    fixture fx;
    fixture_up(&fx);
    const char *e = getenv("PC_MUT_SEED");
    mut_rng = e && *e ? strtoull(e, NULL, 0) : UINT64_C(0x11badc0de);
    e = getenv("PC_MUT_N");
    size_t total = e && *e ? (size_t)strtoull(e, NULL, 0) : MUTATIONS;

    /* the seeds: every table payload that is answered, small enough */
    static const struct { const bad_case *t; size_t n; } tables[] = {
        {g_malformed, HD_NELEM(g_malformed)}, {g_types, HD_NELEM(g_types)},
        {g_ops, HD_NELEM(g_ops)},             {g_limits, HD_NELEM(g_limits)},
        {g_semantic, HD_NELEM(g_semantic)},   {g_config, HD_NELEM(g_config)},
    };
    hd_buf seeds[256];
    size_t ns = 0;
    for (size_t t = 0; t < HD_NELEM(tables); t++)
        for (size_t i = 0; i < tables[t].n; i++) {
            const bad_case *k = &tables[t].t[i];
            if (k->expect > 0 || k->frames != F_PAYLOAD)
                continue;
            cr_assert_lt(ns, HD_NELEM(seeds));
            hd_buf_init(&seeds[ns]);
            k->build(&seeds[ns], &fx, k->id);
            if (seeds[ns].sb.size > MUT_MAX / 2)
                hd_buf_free(&seeds[ns]);
            else
                ns++;
        }
    cr_assert_gt(ns, 100, "only %zu seeds", ns);

    hd_conn c;
    hd_conn_open(&c, fx.d.endpoint, ZMQ_DEALER);
    static uint8_t msg[MUT_MAX];
    size_t sent = 0, got = 0, errors = 0, ok = 0;
    int64_t t0 = hd_now_ms();
    while (got < total) {
        while (sent < total && sent - got < MUT_WINDOW) {
            const hd_buf *s = &seeds[mut_below(ns)], *d = &seeds[mut_below(ns)];
            if (s->sb.size) /* the empty payload is a seed too */
                memcpy(msg, s->sb.data, s->sb.size);
            size_t n = mutate(msg, s->sb.size, (const uint8_t *)d->sb.data, d->sb.size);
            const void *f[1] = {msg};
            size_t l[1] = {n};
            hd_send(&c, f, l, 1);
            sent++;
        }
        hd_msg m;
        hd_recv(&c, HD_CALL_MS, &m);
        cr_assert(m.n > 0, "no reply to mutant %zu (seed %#" PRIx64 ")", got,
                  mut_rng);
        hd_reply r;
        hd_reply_decode(&m, &r); /* asserts the reply's shape and UTF-8 */
        if (r.status < 0)
            errors++;
        else
            ok++;
        hd_reply_free(&r);
        hd_msg_free(&m);
        got++;
        if (got % 25000 == 0)
            fprintf(stderr, "mutations: %zu of %zu (%zu errors, %zu ok)\n", got,
                    total, errors, ok);
    }
    hd_conn_close(&c);
    fprintf(stderr, "mutations: %zu replies in %" PRId64 " ms: %zu errors, %zu "
            "accepted; every str strict UTF-8\n", got, hd_now_ms() - t0, errors, ok);
    cr_assert(hd_alive(&fx.d), "the daemon died");
    hd_statmap st;
    hd_stats_get(&fx.d, &st); /* asserts check == 0 */
    cr_assert_eq(hd_stat_req(&st, HD_ST_POOL_FREE) + hd_stat_req(&st, HD_ST_POOL_LEASED) +
                     hd_stat_req(&st, HD_ST_POOL_CACHED),
                 HD_POOL_BLOCKS);
    for (size_t i = 0; i < ns; i++)
        hd_buf_free(&seeds[i]);
    hd_stop(&fx.d);
}

/* ---- the fuzzers' seed corpus ------------------------------------------------------------
 * Not a test of the daemon: with PC_FUZZ_CORPUS_DIR set, every payload of
 * the tables above (up to 64 KiB) is written there, one file per case,
 * "bad-<table>-<NN>", for tests/fuzz/gen_corpus.py; skipped otherwise.
 * No daemon runs: the fixture's leases and blocks are stand-ins (the
 * fuzzers' own cache holds the same prompts, not the same leases). */
static void dump_table(const char *dir, const char *group, const bad_case *t,
                       size_t n, const fixture *fx)
{
    for (size_t i = 0; i < n; i++) {
        hd_buf b;
        hd_buf_init(&b);
        t[i].build(&b, fx, t[i].id);
        if (b.sb.size <= 65536) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/bad-%s-%02zu", dir, group, i);
            FILE *f = fopen(path, "wb");
            cr_assert(f, "%s: %s", path, strerror(errno));
            cr_assert_eq(fwrite(b.sb.data ? b.sb.data : "", 1, b.sb.size, f),
                         b.sb.size);
            cr_assert_eq(fclose(f), 0);
        }
        hd_buf_free(&b);
    }
}

Test(badinput, dump_corpus)
{
    const char *dir = getenv("PC_FUZZ_CORPUS_DIR");
    if (!dir || !*dir)
        cr_skip_test("PC_FUZZ_CORPUS_DIR not set (tests/fuzz/gen_corpus.py sets it)");
    fixture fx;
    memset(&fx, 0, sizeof(fx));
    hd_prompt(fx.tok_a, 8, 1);
    hd_prompt(fx.tok_b, 8, 2);
    hd_prompt(fx.tok_c, 8, 3);
    fx.canon_a[0] = 0, fx.canon_a[1] = 1, fx.canon_b[0] = 2, fx.canon_b[1] = 3;
    fx.l1 = 0x1111, fx.l2 = 0x2222, fx.dead = 0x3333;
    fx.l1_blocks[0] = 4, fx.l1_blocks[1] = 5, fx.l2_block = 6, fx.free_block = 7;
#define DUMP(t) dump_table(dir, &(#t)[2], t, HD_NELEM(t), &fx)
    DUMP(g_malformed);
    DUMP(g_types);
    DUMP(g_ops);
    DUMP(g_limits);
    DUMP(g_semantic);
    DUMP(g_config);
    DUMP(g_frames);
#undef DUMP
}

/*
 * tests/fuzz/fuzz_handler.c - libFuzzer target: the whole request handler.
 *
 * Each input is one request payload, handled by the server's own code path
 * (pc_rpc_server_handle_payload: decode, run against the cache, encode the
 * reply; the loop's housekeeping before it) against a real cache: a "none"
 * pool of 64 blocks of 4 tokens, LRU, a TTL of 1000 ms on a fake clock, a
 * quota on namespaces "q*", and the bad-input test's known state, restored
 * before every input (see reset()) so that an input's outcome does not
 * depend on the ones before it: a saved crash reproduces alone.
 *
 *   namespace "model-a": prompt 1 (2 pages), pinned by a lease
 *   namespace "ns-b":    prompt 2 (2 pages), unpinned
 *   one more lease holding 1 LEASED block
 *
 * (Lease ids are random: inputs cannot name a live one, they exercise the
 * dead-lease paths.)  The server has no config hooks: config is refused
 * with BADOP (the daemon's knob table is tested by test_daemon_config).
 *
 * Properties, on every input:
 *   - a reply comes back (a lookup waiting for a promotion cannot happen
 *     here: there is no second tier);
 *   - it decodes (pc_payload_decode), its every str (keys included) is
 *     strict UTF-8 by fuzz_util.h's own reader, not the codec's;
 *   - its head reads (pc_wire_read_head): status 0 or an error code with a
 *     non-empty error text; with status 0 its rows read as the op's reply
 *     (pc_wire_read_reply: what a client does);
 *   - its id is the request's whenever the request's id could be read
 *     (read here with the same limits, without the server's decoder: a map
 *     with exactly one "id" key holding a non-negative integer), else 0;
 * and every 16 inputs pc_cache_check() returns 0.  A violation aborts.
 */
#include "cache/cache.h"
#include "proto/proto.h"
#include "rpc/rpc.h"
#include "tests/fuzz/fuzz_util.h"

#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PAGE 4u
#define BLOCKS 64u
#define TTL_MS 1000u
#define CHECK_EVERY 16u

static struct {
    uint64_t now;
    pc_cache *cache;
    pc_rpc_server *srv;
    char dir[64];
    pc_decoder req_dec, rep_dec;
    uint64_t inputs;
} g;

static uint64_t fake_clock(void *ctx)
{
    return *(const uint64_t *)ctx;
}

static void quiet_log(void *ctx, int level, const char *msg)
{
    (void)ctx, (void)level, (void)msg; /* error replies log at INFO/DEBUG */
}

static void prompt(uint32_t *t, size_t n, uint32_t seed)
{ /* the harness's hd_prompt: the corpus's requests name these tokens */
    for (size_t i = 0; i < n; i++)
        t[i] = seed * 100003u + (uint32_t)i + 1u;
}

static void must(int rc, const char *what)
{
    FZ_CHECK(rc == 0, "setup: %s: %d (%s; %s)", what, rc, pc_strerror(rc),
             g.cache ? pc_cache_why(g.cache) : pc_cache_create_why());
}

/* Cache a prompt of 2 pages in ns through a lease of its own. */
static void put(const char *ns, uint32_t seed)
{
    uint32_t t[2 * PAGE], b[2], canon[2];
    uint64_t lease = 0;
    pc_insert_result ir;
    prompt(t, 2 * PAGE, seed);
    must(pc_cache_alloc(g.cache, 2, &lease, b), "alloc");
    must(pc_cache_insert(g.cache, ns, strlen(ns), t, 2 * PAGE, b, lease, canon,
                         &ir), "insert");
    must(pc_cache_release(g.cache, lease), "release");
}

/* Back to the known state: every lease ends (the clock jumps past the TTL),
 * every page goes, then the state above is built again. */
static void reset(void)
{
    g.now += 2 * TTL_MS;
    pc_cache_expire(g.cache);
    pc_cache_evict(g.cache, SIZE_MAX);
    put("model-a", 1);
    put("ns-b", 2);
    uint32_t t[3 * PAGE], b[BLOCKS];
    pc_lookup_result r;
    prompt(t, 3 * PAGE, 1);
    must(pc_cache_lookup(g.cache, "model-a", 7, t, 2 * PAGE, PC_CACHE_PIN, 0, b,
                         &r), "lookup pin");
    uint64_t l2 = 0;
    must(pc_cache_alloc(g.cache, 1, &l2, b), "alloc l2");
}

static void teardown(void)
{
    pc_rpc_server_destroy(g.srv); /* removes the socket and lock files */
    pc_cache_destroy(g.cache);
    pc_decoder_free(&g.req_dec);
    pc_decoder_free(&g.rep_dec);
    rmdir(g.dir);
}

static void setup(void)
{
    pc_cache_config cc;
    pc_cache_config_defaults(&cc);
    must(pc_pool_layout_init(&cc.pool.layout, 1, 1, 8, PAGE, PC_DTYPE_FP16),
         "layout");
    cc.pool.backend = PC_POOL_NONE;
    cc.pool.capacity_blocks = BLOCKS;
    cc.lease_ttl_ms = TTL_MS;
    cc.clock = fake_clock;
    cc.clock_ctx = &g.now;
    g.now = 1000000;
    must(pc_cache_create(&cc, &g.cache), "cache");
    const pc_cache_quota q = {"q*", 8, 2};
    must(pc_cache_set_ns_quotas(g.cache, &q, 1), "quota");

    snprintf(g.dir, sizeof(g.dir), "/tmp/pc-fuzz-XXXXXX");
    FZ_CHECK(mkdtemp(g.dir) != NULL, "mkdtemp");
    char ep[128];
    snprintf(ep, sizeof(ep), "ipc://%s/s.sock", g.dir);
    pc_rpc_config rc = {.endpoint = ep, .cache = g.cache,
                        .limits = {PC_PROTO_MAX_MSG_DEFAULT,
                                   PC_PROTO_MAX_TOKENS_DEFAULT},
                        .hooks = {.log = quiet_log}};
    must(pc_rpc_server_create(&rc, &g.srv), "server");
    pc_decoder_init(&g.req_dec);
    pc_decoder_init(&g.rep_dec);
    atexit(teardown);
}

/* The id the reply must carry: the request's, when it could be read. */
static uint64_t expected_id(const uint8_t *data, size_t size)
{
    const pc_proto_limits lim = {PC_PROTO_MAX_MSG_DEFAULT,
                                 PC_PROTO_MAX_TOKENS_DEFAULT};
    const msgpack_object *m;
    if (pc_payload_decode(&g.req_dec, data, size, &lim, &m))
        return 0;
    unsigned n;
    const msgpack_object *id = fz_map_get(m, "id", 2, &n);
    return n == 1 && id->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? id->via.u64 : 0;
}

/* The op the request names, as the reply's rows must match (-1: none). */
static int request_op(const uint8_t *data, size_t size)
{
    const pc_proto_limits lim = {PC_PROTO_MAX_MSG_DEFAULT,
                                 PC_PROTO_MAX_TOKENS_DEFAULT};
    const msgpack_object *m;
    if (pc_payload_decode(&g.req_dec, data, size, &lim, &m))
        return -1;
    unsigned n;
    const msgpack_object *op = fz_map_get(m, "op", 2, &n);
    if (n != 1 || op->type != MSGPACK_OBJECT_STR)
        return -1;
    int k = pc_op_parse(op->via.str.ptr, op->via.str.size);
    return k < 0 ? -1 : k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g.cache)
        setup();
    reset();
    const void *rep;
    size_t rep_len;
    int rc = pc_rpc_server_handle_payload(g.srv, data, size, &rep, &rep_len);
    FZ_CHECK(rc == 0 && rep && rep_len, "no reply: %d", rc);

    const msgpack_object *m;
    rc = pc_payload_decode(&g.rep_dec, rep, rep_len, NULL, &m);
    FZ_CHECK(rc == 0, "the reply (%zu bytes) does not decode: %d (%s)",
             rep_len, rc, g.rep_dec.err);
    FZ_CHECK(fz_strs_utf8(m), "a str in the reply is not UTF-8");
    pc_reply_head h;
    rc = pc_wire_read_head(&g.rep_dec, m, &h);
    FZ_CHECK(rc == 0, "the reply's head does not read: %s", g.rep_dec.err);
    uint64_t want = expected_id(data, size);
    FZ_CHECK(h.id == want, "reply id %llu, request id %llu (status %lld)",
             (unsigned long long)h.id, (unsigned long long)want,
             (long long)h.status);
    if (h.status < 0) {
        FZ_CHECK(h.error.n > 0, "status %lld without error text", (long long)h.status);
    } else {
        int op = request_op(data, size);
        FZ_CHECK(op >= 0, "status 0 for a request without a readable op");
        union {
#define FZ_REP(NAME, wire, low) pc_##low##_rep low;
            PC_OP_TABLE(FZ_REP)
#undef FZ_REP
        } out;
        rc = pc_wire_read_reply(&g.rep_dec, m, op, &out);
        FZ_CHECK(rc == 0, "op %s: the reply's rows do not read: %s",
                 pc_op_name(op), g.rep_dec.err);
    }
    if (++g.inputs % CHECK_EVERY == 0) {
        rc = pc_cache_check(g.cache);
        FZ_CHECK(rc == 0, "pc_cache_check: %d after %llu inputs", rc,
                 (unsigned long long)g.inputs);
    }
    return 0;
}

/*
 * tests/test_rpc_e2e.c - prefixcached end to end, through the C client.
 *
 * Every test starts its own daemon (tests/harness/harness.h: a private ipc
 * endpoint, a private shm name, a 64-block pool of 1 KiB blocks, 4 tokens a
 * page) and stops it with SIGTERM, asserting exit status 0, that the socket,
 * lock and shm object are gone and that its log holds no sanitizer report.
 * Cache state is read from the daemon's stats with `check: true` (its own
 * pc_cache_check must pass every time).
 *
 *   lifecycle          hello (layout, mapping), lookup+pin+alloc, KV bytes
 *                      written through pc_client_block, insert+release,
 *                      lookup again, stats
 *   shared_prefix      forked engines (own pc_client) compute prompts; the
 *                      parent gets their blocks and reads their bytes
 *   eviction           a full pool: LRU eviction, pinned pages survive,
 *                      NOSPACE changes nothing
 *   lease_expiry       a forked engine pins + allocates, then vanishes: the
 *                      idle daemon expires its lease; heartbeats renew
 *   config, flush, pipelined, pipelined_deep, req_socket, timeouts,
 *   late_reply (SIGSTOPped daemon), msg_limits, limits, watermarks,
 *   namespaces, concurrent_engines (6 engines, every cached block's bytes
 *   checked), backend_none
 *   cuda_pool_fake     --pool_backend=cuda --gpu_ops=fake: hello exports the
 *                      device allocation, engines in three processes import
 *                      it, write and read each other's KV bytes; a client
 *                      on "another GPU" (another fake seed) is refused;
 *                      cuda_pool_no_such_device: the daemon says which
 *   sighup_reload      --config FILE, SIGHUP: applied / rejected / ignored
 *   shutdown           SIGTERM/SIGINT cleanup; a second daemon on the same
 *                      endpoint; a stale socket after SIGKILL
 *   bad_start, endpoint_not_a_socket, abstract_endpoint, tcp_endpoint,
 *   daemon_restart, daemon_help_version, cli (prefixcache-cli)
 *
 * Children forked here use only pc_client and report through their exit
 * status (and a pipe, and a line on stderr): no Criterion assertion runs
 * outside the test worker.  Before such a fork the test closes its own
 * ZeroMQ contexts (hd_quiesce, see tests/harness/harness.h).
 */
#include "tests/harness/harness.h"
#include "tests/harness/client_check.h"

#include "gpu/dev.h" /* the fake device's identity and shm names */
#include "rpc/client.h"

#include <sys/file.h>

#define NS "model-a"
#define NSL (sizeof(NS) - 1)
#define P HD_PAGE_TOKENS
#define CAP HD_POOL_BLOCKS
#define BB HD_BLOCK_BYTES

TestSuite(e2e, .fini = hd_cleanup, .timeout = 60);

/* ---- helpers ------------------------------------------------------------------- */

/* The KV byte the engine "computed" for byte i of page `page` of `seed`. */
static uint8_t kv_byte(uint32_t seed, size_t page, size_t i)
{
    return (uint8_t)(seed * 131u + page * 31u + i * 7u + 1u);
}

static void client_open(const hd_daemon *d, pc_client **c, pc_hello *h)
{
    cr_assert_eq(pc_client_connect(d->endpoint, HD_CALL_MS, c), 0);
    if (h)
        RC_EQ(*c, pc_client_hello(*c, h), 0);
}

/* One gauge, through the raw stats request (with check: true). */
static uint64_t gauge(const hd_daemon *d, const char *name)
{
    hd_statmap s;
    hd_stats_get(d, &s);
    return hd_stat_req(&s, name);
}

typedef struct gauges {
    uint64_t pages, nodes, ns, prot, evictable, free, leased, cached, leases,
        pins;
} gauges;

static gauges gauges_get(const hd_daemon *d)
{
    hd_statmap s;
    hd_stats_get(d, &s);
    gauges g = {
        hd_stat_req(&s, HD_ST_TREE_PAGES),  hd_stat_req(&s, HD_ST_TREE_NODES),
        hd_stat_req(&s, HD_ST_TREE_NS),     hd_stat_req(&s, HD_ST_TREE_PROT),
        hd_stat_req(&s, HD_ST_TREE_EVICTABLE), hd_stat_req(&s, HD_ST_POOL_FREE),
        hd_stat_req(&s, HD_ST_POOL_LEASED), hd_stat_req(&s, HD_ST_POOL_CACHED),
        hd_stat_req(&s, HD_ST_LEASES),      hd_stat_req(&s, HD_ST_PINS),
    };
    /* invariants that hold whatever the test did */
    cr_assert_eq(g.free + g.leased + g.cached, CAP, "free %" PRIu64 " + leased %"
                 PRIu64 " + cached %" PRIu64 " != %u", g.free, g.leased,
                 g.cached, CAP);
    cr_assert_eq(g.pages, g.cached);
    cr_assert_eq(g.prot + g.evictable, g.pages);
    return g;
}

#define GAUGES_ARE(d, PAGES, FREE, LEASED, LEASES, PINS, PROT)                 \
    do {                                                                       \
        gauges g_ = gauges_get(d);                                             \
        cr_assert(g_.pages == (PAGES) && g_.free == (FREE) &&                  \
                      g_.leased == (LEASED) && g_.leases == (LEASES) &&        \
                      g_.pins == (PINS) && g_.prot == (PROT),                  \
                  "line %d: pages %" PRIu64 " free %" PRIu64 " leased %"       \
                  PRIu64 " leases %" PRIu64 " pins %" PRIu64 " protected %"    \
                  PRIu64 ", want %d %d %d %d %d %d", __LINE__, g_.pages,       \
                  g_.free, g_.leased, g_.leases, g_.pins, g_.prot,             \
                  (int)(PAGES), (int)(FREE), (int)(LEASED), (int)(LEASES),     \
                  (int)(PINS), (int)(PROT));                                   \
    } while (0)

/* Compute a prompt the way an engine does (lookup+pin+alloc, write the new
 * pages' KV, insert+release); canon (n / P ids) gets its canonical ids. */
static void put_prompt(pc_client *c, const void *ns, size_t ns_len,
                       const uint32_t *t, size_t n, uint32_t seed,
                       uint32_t *canon)
{
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, ns, ns_len, t, n, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                              0, &r), 0);
    RC_EQ(c, r.alloc_status, 0);
    size_t pages = n / P;
    cr_assert_eq(r.pages + r.n_alloc, pages, "cached %zu + allocated %zu != %zu",
                 r.pages, r.n_alloc, pages);
    uint32_t ids[256];
    cr_assert(pages <= 256);
    if (r.pages) /* blocks may be NULL when empty */
        memcpy(ids, r.blocks, r.pages * sizeof(*ids));
    if (r.n_alloc)
        memcpy(ids + r.pages, r.alloc_blocks, r.n_alloc * sizeof(*ids));
    for (size_t p = r.pages; p < pages; p++) {
        uint8_t *b = pc_client_block(c, ids[p]);
        if (b)
            for (size_t i = 0; i < BB; i++)
                b[i] = kv_byte(seed, p, i);
    }
    uint64_t lease = r.lease;
    if (pages)
        cr_assert_neq(lease, 0);
    pc_client_insert_result ir;
    RC_EQ(c, pc_client_insert(c, ns, ns_len, t, n, ids, lease, PC_CLIENT_RELEASE,
                              canon, &ir), 0);
    if (lease)
        RC_EQ(c, pc_client_release(c, lease), PC_E_LEASE); /* already ended */
}

/* Matched tokens of a plain lookup (no pin). */
static size_t matched(pc_client *c, const void *ns, size_t ns_len,
                      const uint32_t *t, size_t n)
{
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, ns, ns_len, t, n, 0, 0, &r), 0);
    cr_assert_eq(r.lease, 0);
    cr_assert_eq(r.pages * P, r.tokens);
    return r.tokens;
}

/* ---- the prompt lifecycle ----------------------------------------------------------- */

Test(e2e, lifecycle)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);

    /* hello: the layout and how to map the pool */
    cr_assert_eq(h.version, PC_PROTO_MAJOR);
    cr_assert_eq(h.version_minor, PC_PROTO_MINOR);
    cr_assert_eq(h.page_tokens, P);
    cr_assert_eq(h.layers, HD_LAYERS);
    cr_assert_eq(h.kv_heads, HD_KV_HEADS);
    cr_assert_eq(h.head_dim, HD_HEAD_DIM);
    cr_assert_str_eq(h.dtype, HD_DTYPE);
    cr_assert_eq(h.block_bytes, BB);
    cr_assert_eq(h.token_bytes, BB / P);
    cr_assert_eq(h.kv_bytes, HD_KV_HEADS * HD_HEAD_DIM * P * HD_DTYPE_BYTES);
    cr_assert_eq(h.capacity, CAP);
    cr_assert_str_eq(h.backend, "host");
    cr_assert_str_eq(h.shm_name, d.shm_name);
    cr_assert_geq(h.shm_bytes, (uint64_t)CAP * BB);
    cr_assert_eq(h.lease_ttl_ms, 30000);
    cr_assert_gt(h.max_tokens, 0);
    cr_assert_gt(h.max_msg, 0);
    cr_assert(pc_client_block(c, 0) != NULL);
    cr_assert(pc_client_block(c, CAP - 1) != NULL);
    cr_assert_eq((char *)pc_client_block(c, 1) - (char *)pc_client_block(c, 0),
                 (ptrdiff_t)BB);
    cr_assert(pc_client_block(c, CAP) == NULL);
    GAUGES_ARE(&d, 0, CAP, 0, 0, 0, 0);

    /* round trip 1: lookup + pin + alloc of a 10-token prompt (2 pages + 2) */
    uint32_t t[14];
    hd_prompt(t, 14, 1);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 10, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                              0, &r), 0);
    cr_assert_eq(r.tokens, 0);
    cr_assert_eq(r.pages, 0);
    cr_assert_neq(r.lease, 0, "alloc must create a lease");
    cr_assert_eq(r.alloc_status, 0);
    cr_assert_eq(r.n_alloc, 2);
    uint32_t ids[2] = {r.alloc_blocks[0], r.alloc_blocks[1]};
    uint64_t lease = r.lease;
    cr_assert(ids[0] < CAP && ids[1] < CAP && ids[0] != ids[1]);
    GAUGES_ARE(&d, 0, CAP - 2, 2, 1, 0, 0);

    /* the engine writes its KV straight into the pool */
    for (size_t p = 0; p < 2; p++) {
        uint8_t *b = pc_client_block(c, ids[p]);
        cr_assert(b);
        for (size_t i = 0; i < BB; i++)
            b[i] = kv_byte(1, p, i);
    }

    /* round trip 2: insert + release */
    uint32_t canon[3];
    pc_client_insert_result ir;
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, 10, ids, lease, PC_CLIENT_RELEASE,
                              canon, &ir), 0);
    cr_assert_eq(ir.cached_tokens, 0);
    cr_assert_eq(ir.inserted_pages, 2);
    cr_assert_eq(ir.freed_blocks, 0);
    cr_assert_eq(canon[0], ids[0]);
    cr_assert_eq(canon[1], ids[1]);
    RC_EQ(c, pc_client_release(c, lease), PC_E_LEASE); /* ended by insert */
    cr_assert_gt(strlen(pc_client_last_error(c)), 0);
    GAUGES_ARE(&d, 2, CAP - 2, 0, 0, 0, 0);
    cr_assert_eq(gauge(&d, HD_ST_TREE_NS), 1);

    /* lookup again: all full pages cached, the canonical ids, the bytes */
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 10, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 8);
    cr_assert_eq(r.pages, 2);
    cr_assert_eq(r.lease, 0);
    cr_assert_eq(r.blocks[0], canon[0]);
    cr_assert_eq(r.blocks[1], canon[1]);
    for (size_t p = 0; p < 2; p++) {
        const uint8_t *b = pc_client_block(c, canon[p]);
        for (size_t i = 0; i < BB; i++)
            cr_assert_eq(b[i], kv_byte(1, p, i), "page %zu byte %zu", p, i);
    }
    /* another namespace sees nothing */
    cr_assert_eq(matched(c, "model-b", 7, t, 10), 0);

    /* a longer prompt: 2 cached pages pinned, 1 new page allocated */
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 14, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                              0, &r), 0);
    cr_assert_eq(r.tokens, 8);
    cr_assert_eq(r.pages, 2);
    cr_assert_eq(r.n_alloc, 1);
    cr_assert_neq(r.lease, 0);
    lease = r.lease;
    uint32_t ids3[3] = {r.blocks[0], r.blocks[1], r.alloc_blocks[0]};
    GAUGES_ARE(&d, 2, CAP - 3, 1, 1, 1, 2);
    uint8_t *b = pc_client_block(c, ids3[2]);
    memset(b, 0x5a, BB);
    /* insert without release, then an explicit release */
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, 14, ids3, lease, 0, canon, &ir), 0);
    cr_assert_eq(ir.cached_tokens, 8);
    cr_assert_eq(ir.inserted_pages, 1);
    cr_assert_eq(ir.freed_blocks, 0);
    cr_assert_eq(canon[2], ids3[2]);
    GAUGES_ARE(&d, 3, CAP - 3, 0, 1, 1, 2); /* still pinned */
    RC_EQ(c, pc_client_release(c, lease), 0);
    RC_EQ(c, pc_client_release(c, lease), PC_E_LEASE);
    GAUGES_ARE(&d, 3, CAP - 3, 0, 0, 0, 0);

    /* no full page: nothing to insert, no block needed; release without a
     * lease is ignored */
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, 3, NULL, 0, PC_CLIENT_RELEASE, NULL,
                              &ir), 0);
    cr_assert_eq(ir.inserted_pages + ir.cached_tokens + ir.freed_blocks, 0);
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 3, PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0,
                              &r), 0);
    cr_assert(r.tokens == 0 && r.n_alloc == 0 && r.lease == 0,
              "a 3-token prompt (no full page) pinned or allocated something");
    GAUGES_ARE(&d, 3, CAP - 3, 0, 0, 0, 0);

    /* lease ids: non-zero, distinct, not a counter (DESIGN.md 4: random,
     * unguessable); a released id is never handed out again here */
    uint64_t ls[16];
    for (int i = 0; i < 16; i++) {
        ls[i] = 0;
        RC_EQ(c, pc_client_alloc(c, 0, &ls[i], NULL), 0); /* an empty lease */
        cr_assert_neq(ls[i], 0);
        cr_assert_neq(ls[i], lease);
        for (int j = 0; j < i; j++)
            cr_assert_neq(ls[i], ls[j]);
        RC_EQ(c, pc_client_release(c, ls[i]), 0);
    }
    int near = 0;
    for (int i = 1; i < 16; i++)
        near += (ls[i] > ls[i - 1] ? ls[i] - ls[i - 1] : ls[i - 1] - ls[i]) < (1u << 20);
    cr_assert_lt(near, 3, "lease ids look sequential");
    GAUGES_ARE(&d, 3, CAP - 3, 0, 0, 0, 0);

    /* the counters agree with what happened */
    hd_statmap s;
    hd_stats_get(&d, &s);
    if (hd_stat(&s, "rpc.requests") != UINT64_MAX)
        cr_assert_geq(hd_stat(&s, "rpc.requests"), 10);
    if (hd_stat(&s, "rpc.errors") != UINT64_MAX)
        cr_assert_eq(hd_stat(&s, "rpc.errors"), 2); /* the 2 bad releases */

    pc_client_close(c);
    hd_stop(&d);
}

/* ---- two engines sharing a prefix ------------------------------------------------------ */

/* A forked child's failure: what failed goes to stderr (no Criterion in a
 * child), the step number becomes the exit status. */
static int child_fail(pc_client *c, int step, int rc)
{
    fprintf(stderr, "child %ld: step %d failed: %d (%s): %s\n", (long)getpid(),
            step, rc, pc_errname(rc), c ? pc_client_last_error(c) : "");
    return step;
}

/* The child engine: computes the prompt and inserts it.  Exit status: 0, or
 * the step that failed. */
static int engine_child(const char *endpoint, const uint32_t *t, size_t n,
                        uint32_t seed)
{
    pc_client *c;
    pc_hello h;
    int rc;
    if ((rc = pc_client_connect(endpoint, HD_CALL_MS, &c)))
        return child_fail(NULL, 10, rc);
    if ((rc = pc_client_hello(c, &h)))
        return child_fail(c, 11, rc);
    pc_client_lookup_result r;
    if ((rc = pc_client_lookup(c, NS, NSL, t, n, PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0,
                               &r)))
        return child_fail(c, 12, rc);
    if (r.tokens != 0 || r.alloc_status != 0 || r.n_alloc != n / P || !r.lease)
        return child_fail(c, 13, 0);
    uint32_t ids[64];
    memcpy(ids, r.alloc_blocks, r.n_alloc * sizeof(*ids));
    for (size_t p = 0; p < n / P; p++) {
        uint8_t *b = pc_client_block(c, ids[p]);
        if (!b)
            return child_fail(c, 14, 0);
        for (size_t i = 0; i < BB; i++)
            b[i] = kv_byte(seed, p, i);
    }
    uint32_t canon[64];
    pc_client_insert_result ir;
    if ((rc = pc_client_insert(c, NS, NSL, t, n, ids, r.lease, PC_CLIENT_RELEASE,
                               canon, &ir)))
        return child_fail(c, 15, rc);
    for (size_t p = 0; p < n / P; p++)
        if (canon[p] != ids[p])
            return child_fail(c, 16, 0);
    pc_client_close(c);
    return 0;
}

static void wait_child_ok(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child engine failed: status 0x%x (exit code %d = failed step)", st,
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

Test(e2e, shared_prefix)
{
    hd_daemon d;
    hd_start(&d, NULL);
    uint32_t t[24];
    hd_prompt(t, 24, 7);

    hd_quiesce(); /* see harness.h: no busy ZeroMQ thread at fork */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        _exit(engine_child(d.endpoint, t, 16, 7)); /* 4 pages */
    wait_child_ok(pid);
    GAUGES_ARE(&d, 4, CAP - 4, 0, 0, 0, 0);

    /* engine B: same prefix, longer prompt */
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 24, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                              0, &r), 0);
    cr_assert_eq(r.tokens, 16);
    cr_assert_eq(r.pages, 4);
    cr_assert_eq(r.n_alloc, 2);
    uint64_t lease = r.lease;
    uint32_t ids[6];
    memcpy(ids, r.blocks, 4 * sizeof(*ids));
    memcpy(ids + 4, r.alloc_blocks, 2 * sizeof(*ids));
    /* A's bytes, through B's own mapping */
    for (size_t p = 0; p < 4; p++) {
        const uint8_t *b = pc_client_block(c, ids[p]);
        cr_assert(b);
        for (size_t i = 0; i < BB; i++)
            cr_assert_eq(b[i], kv_byte(7, p, i), "page %zu byte %zu", p, i);
    }
    GAUGES_ARE(&d, 4, CAP - 6, 2, 1, 1, 4);
    uint32_t canon[6];
    pc_client_insert_result ir;
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, 24, ids, lease, PC_CLIENT_RELEASE,
                              canon, &ir), 0);
    cr_assert_eq(ir.cached_tokens, 16);
    cr_assert_eq(ir.inserted_pages, 2);
    cr_assert_eq(memcmp(canon, ids, sizeof(ids)), 0);
    GAUGES_ARE(&d, 6, CAP - 6, 0, 0, 0, 0);

    /* B computes A's prompt again on its own blocks (it raced A): its
     * duplicates go back to the pool, the canonical (A's) ids win */
    uint64_t l2 = 0;
    uint32_t mine[4];
    RC_EQ(c, pc_client_alloc(c, 4, &l2, mine), 0);
    cr_assert_neq(l2, 0);
    GAUGES_ARE(&d, 6, CAP - 10, 4, 1, 0, 0);
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, 16, mine, l2, PC_CLIENT_RELEASE,
                              canon, &ir), 0);
    cr_assert_eq(ir.cached_tokens, 16);
    cr_assert_eq(ir.inserted_pages, 0);
    cr_assert_eq(ir.freed_blocks, 4);
    cr_assert_eq(memcmp(canon, ids, 4 * sizeof(*ids)), 0);
    GAUGES_ARE(&d, 6, CAP - 6, 0, 0, 0, 0);

    /* two children at once on distinct prompts, then both visible */
    uint32_t u[2][8];
    hd_prompt(u[0], 8, 100);
    hd_prompt(u[1], 8, 101);
    pid_t k[2];
    pc_client_close(c); /* no ZeroMQ thread of ours busy at fork */
    hd_quiesce();
    fflush(NULL);
    for (int i = 0; i < 2; i++) {
        k[i] = fork();
        cr_assert(k[i] >= 0);
        if (k[i] == 0)
            _exit(engine_child(d.endpoint, u[i], 8, 100 + (uint32_t)i));
    }
    wait_child_ok(k[0]);
    wait_child_ok(k[1]);
    client_open(&d, &c, &h);
    for (int i = 0; i < 2; i++) {
        RC_EQ(c, pc_client_lookup(c, NS, NSL, u[i], 8, 0, 0, &r), 0);
        cr_assert_eq(r.tokens, 8);
        for (size_t p = 0; p < 2; p++) {
            const uint8_t *b = pc_client_block(c, r.blocks[p]);
            for (size_t j = 0; j < BB; j++)
                cr_assert_eq(b[j], kv_byte(100 + (uint32_t)i, p, j));
        }
    }
    GAUGES_ARE(&d, 10, CAP - 10, 0, 0, 0, 0);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- eviction policy: reloadable, priorities steer eviction ------------------------------ */

static void knob(pc_client *c, const char *name, char *out, size_t cap);

Test(e2e, eviction_policy_reload)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    client_open(&d, &c, NULL);
    char v[256];
    knob(c, "eviction_policy", v, sizeof(v));
    cr_assert_str_eq(v, "lru");

    /* 8 prompts of 4 pages in "bulk" (32 blocks), then switch with content
     * in place: nothing is lost */
    enum { N = 8, T = 4 * P };
    uint32_t t[2 * N][T], canon[4];
    for (uint32_t i = 0; i < 2 * N; i++)
        hd_prompt(t[i], T, 3000 + i);
    for (uint32_t i = 0; i < N; i++)
        put_prompt(c, "bulk", 4, t[i], T, 3000 + i, canon);
    RC_EQ(c, pc_client_config_set(c, "namespace_priorities", "gold=5", NULL, NULL), 0);
    RC_EQ(c, pc_client_config_set(c, "eviction_policy", "priority", NULL, NULL), 0);
    knob(c, "eviction_policy", v, sizeof(v));
    cr_assert_str_eq(v, "priority");
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(matched(c, "bulk", 4, t[i], T), T, "prompt %u kept", i);

    /* 8 prompts in "gold" fill the pool; 8 more in "bulk" must evict bulk's
     * own pages, never gold's (priority 5 > 0), although gold is less
     * recently used (LRU would take gold's) */
    for (uint32_t i = N; i < 2 * N; i++)
        put_prompt(c, "gold", 4, t[i], T, 3000 + i, canon);
    for (uint32_t i = 0; i < N; i++) /* bulk: now the most recently used */
        cr_assert_eq(matched(c, "bulk", 4, t[i], T), T);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t fresh[T];
        hd_prompt(fresh, T, 4000 + i);
        put_prompt(c, "bulk", 4, fresh, T, 4000 + i, canon);
    }
    for (uint32_t i = N; i < 2 * N; i++)
        cr_assert_eq(matched(c, "gold", 4, t[i], T), T, "gold prompt %u kept", i);
    hd_statmap st;
    hd_stats_get(&d, &st); /* includes the daemon's own pc_cache_check */

    /* a bad value is refused with a message and changes nothing */
    int rc = pc_client_config_set(c, "eviction_policy", "clock", NULL, NULL);
    cr_assert_eq(rc, PC_E_INVAL, "%s", pc_errname(rc));
    rc = pc_client_config_set(c, "namespace_priorities", "gold=top", NULL, NULL);
    cr_assert_lt(rc, 0);
    cr_assert(strstr(pc_client_last_error(c), "namespace_priorities"), "%s",
              pc_client_last_error(c));
    knob(c, "namespace_priorities", v, sizeof(v));
    cr_assert_str_eq(v, "gold=5");

    /* every policy runs the same cycle with the daemon's check passing */
    const char *pol[] = {"lfu", "fifo", "s3fifo", "lru"};
    for (size_t k = 0; k < 4; k++) {
        RC_EQ(c, pc_client_config_set(c, "eviction_policy", pol[k], NULL, NULL), 0);
        for (uint32_t i = 0; i < N; i++) {
            uint32_t fresh[T];
            hd_prompt(fresh, T, 5000 + 100 * (uint32_t)k + i);
            put_prompt(c, "bulk", 4, fresh, T, 5000 + 100 * (uint32_t)k + i, canon);
        }
        hd_stats_get(&d, &st);
    }
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- insert with pin: insert after the prefill, read while decoding ---- */

Test(e2e, insert_pin)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    client_open(&d, &c, NULL);
    enum { T = 4 * P };
    uint32_t t[T], ids[4], canon[4];
    hd_prompt(t, T, 7000);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, T, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                              0, &r), 0);
    cr_assert_eq(r.n_alloc, 4);
    memcpy(ids, r.alloc_blocks, sizeof(ids));
    uint64_t lease = r.lease;
    pc_client_insert_result ir;

    /* pin with release, pin without a lease: refused, nothing changes */
    int rc = pc_client_insert(c, NS, NSL, t, T, ids, lease,
                              PC_CLIENT_PIN | PC_CLIENT_RELEASE, canon, &ir);
    cr_assert_eq(rc, PC_E_INVAL, "%s", pc_errname(rc));
    cr_assert(strstr(pc_client_last_error(c), "pin"), "%s", pc_client_last_error(c));
    rc = pc_client_insert(c, NS, NSL, t, T, ids, 0, PC_CLIENT_PIN, canon, &ir);
    cr_assert_eq(rc, PC_E_INVAL, "%s", pc_errname(rc));
    cr_assert_eq(matched(c, NS, NSL, t, T), 0);

    RC_EQ(c, pc_client_insert(c, NS, NSL, t, T, ids, lease, PC_CLIENT_PIN,
                              canon, &ir), 0);
    cr_assert_eq(ir.inserted_pages, 4);
    cr_assert_eq(gauge(&d, "leases.pins"), 1);
    cr_assert_eq(gauge(&d, "tree.protected_pages"), 4);

    /* the rest of the pool churns: the pinned prompt stays */
    for (uint32_t i = 0; i < CAP / 4 + 4; i++) {
        uint32_t o[T], oc[4];
        hd_prompt(o, T, 7100 + i);
        put_prompt(c, NS, NSL, o, T, 7100 + i, oc);
    }
    cr_assert_eq(matched(c, NS, NSL, t, T), T, "pinned pages survive eviction");
    RC_EQ(c, pc_client_release(c, lease), 0);
    cr_assert_eq(gauge(&d, "leases.pins"), 0);
    hd_statmap st;
    hd_stats_get(&d, &st);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- eviction under pressure ------------------------------------------------------------ */

Test(e2e, eviction)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);

    /* 16 distinct prompts of 4 pages fill the 64 blocks */
    enum { N = 16, T = 4 * P };
    uint32_t t[N + 4][T], canon[N + 4][4];
    for (uint32_t i = 0; i < N + 4; i++)
        hd_prompt(t[i], T, 1000 + i);
    for (uint32_t i = 0; i < N; i++)
        put_prompt(c, NS, NSL, t[i], T, 1000 + i, canon[i]);
    GAUGES_ARE(&d, CAP, 0, 0, 0, 0, 0);

    /* pin prompt 1: LRU order is now 0, 2, 3, ..., 15 (1 is off the list) */
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t[1], T, PC_CLIENT_PIN, 0, &r), 0);
    cr_assert_eq(r.tokens, T);
    uint64_t pin = r.lease;
    cr_assert_neq(pin, 0);
    GAUGES_ARE(&d, CAP, 0, 0, 1, 1, 4);

    /* two more prompts evict the two least recently used: 0 and 2 */
    put_prompt(c, NS, NSL, t[N], T, 1000 + N, canon[N]);
    put_prompt(c, NS, NSL, t[N + 1], T, 1000 + N + 1, canon[N + 1]);
    GAUGES_ARE(&d, CAP, 0, 0, 1, 1, 4);
    cr_assert_eq(matched(c, NS, NSL, t[0], T), 0, "LRU prompt 0 not evicted");
    cr_assert_eq(matched(c, NS, NSL, t[2], T), 0, "LRU prompt 2 not evicted");
    cr_assert_eq(matched(c, NS, NSL, t[1], T), T, "pinned prompt 1 evicted");
    cr_assert_eq(matched(c, NS, NSL, t[3], T), T);
    cr_assert_eq(matched(c, NS, NSL, t[N + 1], T), T);
    /* the pinned prompt kept its blocks and bytes */
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t[1], T, 0, 0, &r), 0);
    cr_assert_eq(memcmp(r.blocks, canon[1], sizeof(canon[1])), 0);
    for (size_t p = 0; p < 4; p++) {
        const uint8_t *b = pc_client_block(c, r.blocks[p]);
        for (size_t i = 0; i < BB; i += 97)
            cr_assert_eq(b[i], kv_byte(1001, p, i));
    }

    /* more than free + evictable: NOSPACE and nothing changes */
    hd_statmap before, after;
    hd_stats_get(&d, &before);
    uint64_t l = 0;
    uint32_t ids[CAP];
    RC_EQ(c, pc_client_alloc(c, CAP - 4 + 1, &l, ids), PC_E_NOSPACE);
    cr_assert_gt(strlen(pc_client_last_error(c)), 0);
    cr_assert_eq(l, 0);
    hd_stats_get(&d, &after);
    hd_gauges_eq(&before, &after, "alloc NOSPACE");
    /* the same through lookup+alloc: the lookup succeeds, the alloc does not */
    uint32_t big[(CAP + 1) * P];
    hd_prompt(big, (CAP + 1) * P, 5000);
    RC_EQ(c, pc_client_lookup(c, NS, NSL, big, (CAP + 1) * P, PC_CLIENT_ALLOC, 0,
                              &r), 0);
    cr_assert_eq(r.tokens, 0);
    cr_assert_eq(r.alloc_status, PC_E_NOSPACE);
    cr_assert_eq(r.n_alloc, 0);
    cr_assert_eq(r.lease, 0, "a failed alloc left lease %" PRIu64, r.lease);
    hd_stats_get(&d, &after);
    hd_gauges_eq(&before, &after, "lookup+alloc NOSPACE");

    /* exactly free + evictable works: everything unpinned goes */
    RC_EQ(c, pc_client_alloc(c, CAP - 4, &l, ids), 0);
    cr_assert_neq(l, 0);
    GAUGES_ARE(&d, 4, 0, CAP - 4, 2, 1, 4);
    cr_assert_eq(matched(c, NS, NSL, t[1], T), T);
    cr_assert_eq(matched(c, NS, NSL, t[3], T), 0);
    RC_EQ(c, pc_client_release(c, l), 0);
    GAUGES_ARE(&d, 4, CAP - 4, 0, 1, 1, 4);
    RC_EQ(c, pc_client_release(c, pin), 0);
    GAUGES_ARE(&d, 4, CAP - 4, 0, 0, 0, 0);
    cr_assert_eq(gauge(&d, HD_ST_TREE_EVICTABLE), 4);
    pc_client_close(c);
    hd_stop(&d);
}

/* Issue 11: pool of 4 blocks; insert 16 tokens; lookup(the 16 + 8 more,
 * alloc) without pin answered blocks [0,1,2,3] and alloc_blocks [2,3].
 * The matched pages are now held for the request: the allocation may not
 * evict them, so with nothing else to evict it fails (NOSPACE) and the
 * prefix stays.  Under every eviction policy, through a real daemon. */
Test(e2e, lookup_alloc_never_returns_a_block_twice)
{
    static const char *const pols[] = {"lru", "lfu", "fifo", "s3fifo",
                                       "priority", "auto"};
    for (size_t pi = 0; pi < HD_NELEM(pols); pi++) {
        char pol[64];
        snprintf(pol, sizeof(pol), "--eviction_policy=%s", pols[pi]);
        hd_daemon d;
        hd_start(&d, "--pool_blocks=4", pol, NULL);
        pc_client *c;
        pc_hello h;
        client_open(&d, &c, &h);
        cr_assert_eq(h.capacity, 4);
        uint32_t t[6 * P], canon[4];
        hd_prompt(t, 6 * P, 77);
        put_prompt(c, NS, NSL, t, 4 * P, 77, canon);
        pc_client_lookup_result r;
        RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 6 * P, PC_CLIENT_ALLOC, 0, &r), 0);
        cr_assert_eq(r.pages, 4, "[%s] the prefix no longer matches", pols[pi]);
        for (size_t i = 0; i < r.n_alloc; i++)
            for (size_t j = 0; j < r.pages; j++)
                cr_assert_neq(r.alloc_blocks[i], r.blocks[j], "[%s] block %u "
                              "both matched and fresh", pols[pi], r.blocks[j]);
        cr_assert_eq(r.alloc_status, PC_E_NOSPACE, "[%s] alloc_status %d",
                     pols[pi], r.alloc_status);
        cr_assert_eq(r.n_alloc, 0);
        cr_assert_eq(r.lease, 0);
        cr_assert(strstr(pc_client_last_error(c), "matched page"),
                  "[%s] alloc_error: %s", pols[pi], pc_client_last_error(c));
        /* the prefix and its bytes are intact */
        RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 4 * P, 0, 0, &r), 0);
        cr_assert_eq(r.pages, 4);
        cr_assert_eq(memcmp(r.blocks, canon, sizeof(canon)), 0);
        for (size_t p = 0; p < 4; p++) {
            const uint8_t *b = pc_client_block(c, r.blocks[p]);
            for (size_t i = 0; i < BB; i += 61)
                cr_assert_eq(b[i], kv_byte(77, p, i), "[%s]", pols[pi]);
        }
        cr_assert_eq(gauge(&d, HD_ST_POOL_CACHED), 4);
        cr_assert_eq(gauge(&d, HD_ST_TREE_PROT), 0, "[%s] the hold outlived "
                     "the request", pols[pi]);
        cr_assert_eq(gauge(&d, HD_ST_LEASES), 0);
        pc_client_close(c);
        hd_stop(&d);
    }
}

/* ---- lease expiry of an engine that vanished ----------------------------------------------- */

#define TTL_SHORT 600

Test(e2e, lease_expiry)
{
    hd_daemon d;
    char ttl[64];
    snprintf(ttl, sizeof(ttl), "--lease_ttl_ms=%d", TTL_SHORT);
    hd_start(&d, ttl, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    cr_assert_eq(h.lease_ttl_ms, TTL_SHORT);
    uint32_t t[16], canon[4];
    hd_prompt(t, 16, 3);
    put_prompt(c, NS, NSL, t, 8, 3, canon); /* 2 pages cached */
    GAUGES_ARE(&d, 2, CAP - 2, 0, 0, 0, 0);

    /* the parent's own lease, idle from here on: it expires too */
    uint64_t mine = 0;
    uint32_t mine_blk[1];
    RC_EQ(c, pc_client_alloc(c, 1, &mine, mine_blk), 0);

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pc_client_close(c); /* no ZeroMQ thread of ours busy at fork */
    hd_quiesce();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* pin the 2 cached pages, allocate 2 more, vanish */
        pc_client *k;
        pc_client_lookup_result r;
        if (pc_client_connect(d.endpoint, HD_CALL_MS, &k))
            _exit(10);
        if (pc_client_lookup(k, NS, NSL, t, 16, PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0,
                             &r))
            _exit(11);
        if (r.tokens != 8 || r.n_alloc != 2 || !r.lease)
            _exit(12);
        if (write(fds[1], &r.lease, sizeof(r.lease)) != sizeof(r.lease))
            _exit(13);
        _exit(0); /* no release, no close */
    }
    close(fds[1]);
    wait_child_ok(pid);
    client_open(&d, &c, &h);
    int64_t t0 = hd_now_ms();
    uint64_t lease = 0;
    cr_assert_eq(read(fds[0], &lease, sizeof(lease)), (ssize_t)sizeof(lease));
    close(fds[0]);
    /* right after the child's exit the leases are live (the TTL is 600 ms) */
    GAUGES_ARE(&d, 2, CAP - 5, 3, 2, 1, 2);

    /* within a bounded wait it expires, with no request to wake the daemon
     * (its loop sleeps no longer than the next lease deadline): watch the
     * log, send nothing */
    bool logged = hd_log_has(&d, 0, TTL_SHORT + 3000, "expired", "lease", NULL);
    cr_assert(logged, "no expiry logged %d ms after the leases' last use "
              "while the daemon was idle", (int)(hd_now_ms() - t0));
    gauges g;
    do {
        g = gauges_get(&d);
        if (g.leases)
            hd_sleep_ms(50);
    } while (g.leases != 0 && hd_now_ms() - t0 < TTL_SHORT + 3000);
    cr_assert_eq(g.leases, 0, "lease not expired %d ms after its last use",
                 (int)(hd_now_ms() - t0));
    GAUGES_ARE(&d, 2, CAP - 2, 0, 0, 0, 0);
    cr_assert_eq(gauge(&d, HD_ST_TREE_EVICTABLE), 2);
    {
        hd_statmap s;
        hd_stats_get(&d, &s);
        cr_assert_eq(hd_stat_req(&s, HD_ST_LEASES_EXPIRED), 2);
    }
    /* an engine that was too slow: its insert under the expired lease is
     * refused and nothing is cached */
    uint32_t late[4];
    hd_prompt(late, 4, 4);
    RC_EQ(c, pc_client_insert(c, NS, NSL, late, 4, mine_blk, mine, PC_CLIENT_RELEASE,
                              NULL, NULL), PC_E_LEASE);
    cr_assert_eq(matched(c, NS, NSL, late, 4), 0);
    /* the lease is gone for good, and its pins are evictable */
    RC_EQ(c, pc_client_release(c, lease), PC_E_LEASE);
    uint64_t ev = 0;
    RC_EQ(c, pc_client_flush(c, NULL, 0, &ev), 0);
    cr_assert_eq(ev, 2);
    GAUGES_ARE(&d, 0, CAP, 0, 0, 0, 0);

    /* a lease that is used keeps living past its TTL, whichever heartbeat
     * renews it (PROTOCOL.md 6): a lookup naming it, an empty lookup naming
     * it, an alloc of 0.  One lease per kind, renewed every 0.6 TTL: a kind
     * that did not renew would let its lease expire before its next beat. */
    uint64_t hb[3] = {0, 0, 0};
    uint32_t hb_blk[3];
    for (int k = 0; k < 3; k++)
        RC_EQ(c, pc_client_alloc(c, 1, &hb[k], &hb_blk[k]), 0);
    for (int round = 0; round < 3; round++) {
        hd_sleep_ms(TTL_SHORT * 6 / 10);
        RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 8, 0, hb[0], NULL), 0);
        RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 0, 0, hb[1], NULL), 0);
        RC_EQ(c, pc_client_alloc(c, 0, &hb[2], NULL), 0);
    }
    GAUGES_ARE(&d, 0, CAP - 3, 3, 3, 0, 0);
    for (int k = 0; k < 3; k++)
        RC_EQ(c, pc_client_release(c, hb[k]), 0);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- config get / set through the client ------------------------------------------------- */

typedef struct kv_seen {
    int n;
    char name[8][64], value[8][256];
    int total;
    bool saw_ttl, saw_blocks, saw_endpoint;
} kv_seen;

static void on_kv(void *ctx, const char *name, const char *value)
{
    kv_seen *k = ctx;
    if (k->n < 8) {
        snprintf(k->name[k->n], sizeof(k->name[0]), "%s", name);
        snprintf(k->value[k->n], sizeof(k->value[0]), "%s", value);
        k->n++;
    }
    k->total++;
    k->saw_ttl |= strcmp(name, "lease_ttl_ms") == 0;
    k->saw_blocks |= strcmp(name, "pool_blocks") == 0;
    k->saw_endpoint |= strcmp(name, "endpoint") == 0;
}

/* The value of one knob, through config get. */
static void knob(pc_client *c, const char *name, char *out, size_t cap)
{
    kv_seen k = {0};
    RC_EQ(c, pc_client_config_get(c, name, on_kv, &k), 0);
    cr_assert_eq(k.total, 1, "config get %s: %d knobs", name, k.total);
    cr_assert_str_eq(k.name[0], name);
    snprintf(out, cap, "%s", k.value[0]);
}

Test(e2e, config)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    client_open(&d, &c, NULL);
    char v[256];

    knob(c, "lease_ttl_ms", v, sizeof(v));
    cr_assert_str_eq(v, "30000");
    knob(c, "pool_blocks", v, sizeof(v));
    cr_assert_str_eq(v, "64");
    knob(c, "endpoint", v, sizeof(v));
    cr_assert_str_eq(v, d.endpoint);

    /* every knob */
    kv_seen all = {0};
    RC_EQ(c, pc_client_config_get(c, NULL, on_kv, &all), 0);
    cr_assert_geq(all.total, 10);
    cr_assert(all.saw_ttl && all.saw_blocks && all.saw_endpoint);

    /* a reloadable knob: applied, answered with the new value */
    kv_seen k = {0};
    RC_EQ(c, pc_client_config_set(c, "lease_ttl_ms", "5000", on_kv, &k), 0);
    cr_assert_eq(k.total, 1);
    cr_assert_str_eq(k.name[0], "lease_ttl_ms");
    cr_assert_str_eq(k.value[0], "5000");
    knob(c, "lease_ttl_ms", v, sizeof(v));
    cr_assert_str_eq(v, "5000");
    pc_hello h;
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.lease_ttl_ms, 5000);

    /* a non-reloadable knob: refused, unchanged */
    int rc = pc_client_config_set(c, "pool_blocks", "128", NULL, NULL);
    cr_assert_lt(rc, 0, "setting pool_blocks at run time must fail");
    cr_assert_gt(strlen(pc_client_last_error(c)), 0);
    fprintf(stderr, "config set pool_blocks: %s: %s\n", pc_errname(rc),
            pc_client_last_error(c));
    knob(c, "pool_blocks", v, sizeof(v));
    cr_assert_str_eq(v, "64");
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.capacity, CAP);

    /* an unknown knob, a bad value: refused, unchanged */
    rc = pc_client_config_set(c, "no_such_knob", "1", NULL, NULL);
    cr_assert_lt(rc, 0);
    cr_assert_gt(strlen(pc_client_last_error(c)), 0);
    rc = pc_client_config_get(c, "no_such_knob", NULL, NULL);
    cr_assert_lt(rc, 0);
    rc = pc_client_config_set(c, "lease_ttl_ms", "banana", NULL, NULL);
    cr_assert_lt(rc, 0);
    rc = pc_client_config_set(c, "lease_ttl_ms", "-5", NULL, NULL);
    cr_assert_lt(rc, 0);
    knob(c, "lease_ttl_ms", v, sizeof(v));
    cr_assert_str_eq(v, "5000");

    /* a reloadable knob that changes behaviour at once: the TTL */
    RC_EQ(c, pc_client_config_set(c, "lease_ttl_ms", "300", NULL, NULL), 0);
    uint64_t l = 0;
    uint32_t id;
    RC_EQ(c, pc_client_alloc(c, 1, &l, &id), 0);
    int64_t t0 = hd_now_ms();
    while (gauge(&d, HD_ST_LEASES) != 0 && hd_now_ms() - t0 < 3000)
        hd_sleep_ms(50);
    cr_assert_eq(gauge(&d, HD_ST_LEASES), 0, "lease not expired with TTL 300");
    /* native msgpack values in set (PROTOCOL.md 5.9) */
    {
        hd_conn q;
        hd_conn_open(&q, d.endpoint, ZMQ_DEALER);
        struct {
            const char *name;
            int kind; /* 0 uint, 1 bool, 2 str */
            uint64_t v;
            const char *sv;
            int want;
        } cases[] = {
            {"lease_ttl_ms", 0, 4321, NULL, 0},
            {"log_utc", 1, 1, NULL, 0},
            {"log_utc", 0, 0, NULL, 0}, /* 0/1 for a bool knob */
            {"log_utc", 0, 2, NULL, PC_E_INVAL},
            {"log_level", 0, 3, NULL, PC_E_INVAL}, /* an enum takes its name */
            {"max_leases", 2, 0, "1K", PC_E_INVAL}, /* an int knob: no suffix */
            {"max_leases", 2, 0, "100000", 0},
            {"max_msg_bytes", 2, 0, "1MiB", PC_E_PERM},
        };
        for (size_t i = 0; i < HD_NELEM(cases); i++) {
            hd_buf b;
            hd_buf_init(&b);
            hd_pack_op(&b, "config", 900 + i, 1);
            pc_pack_cstr(&b.pk, "set");
            msgpack_pack_map(&b.pk, 1);
            pc_pack_cstr(&b.pk, cases[i].name);
            if (cases[i].kind == 0)
                msgpack_pack_uint64(&b.pk, cases[i].v);
            else if (cases[i].kind == 1)
                cases[i].v ? msgpack_pack_true(&b.pk) : msgpack_pack_false(&b.pk);
            else
                pc_pack_cstr(&b.pk, cases[i].sv);
            hd_reply rr;
            hd_call_buf(&q, &b, &rr);
            cr_assert_eq(rr.status, cases[i].want, "config set %s (case %zu): %"
                         PRId64 " %s", cases[i].name, i, rr.status, rr.error);
            cr_assert_eq(rr.id, 900 + i);
            if (rr.status == 0) {
                const msgpack_object *cfg = pc_mp_get(rr.map, "config");
                cr_assert(cfg && cfg->type == MSGPACK_OBJECT_MAP &&
                          cfg->via.map.size == 1, "set's reply: the knob set");
                cr_assert(pc_mp_get(cfg, cases[i].name) != NULL);
            }
            hd_reply_free(&rr);
            hd_buf_free(&b);
        }
        hd_conn_close(&q);
        knob(c, "lease_ttl_ms", v, sizeof(v));
        cr_assert_str_eq(v, "4321");
        knob(c, "log_utc", v, sizeof(v));
        cr_assert_str_eq(v, "false");
        knob(c, "max_leases", v, sizeof(v));
        cr_assert_str_eq(v, "100000");
    }
    /* log_level is reloadable too */
    RC_EQ(c, pc_client_config_set(c, "log_level", "debug", NULL, NULL), 0);
    knob(c, "log_level", v, sizeof(v));
    cr_assert_str_eq(v, "debug");
    size_t at = hd_log_size(&d);
    RC_EQ(c, pc_client_ping(c), 0);
    cr_assert(hd_log_has(&d, at, 2000, "ping", NULL), "no debug line for a ping");
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- flush ------------------------------------------------------------------------------------ */

Test(e2e, flush)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    uint32_t a1[8], a2[8], b1[12], canon[3];
    hd_prompt(a1, 8, 11);
    hd_prompt(a2, 8, 12);
    hd_prompt(b1, 12, 13);
    put_prompt(c, "ns-a", 4, a1, 8, 11, canon);
    put_prompt(c, "ns-a", 4, a2, 8, 12, canon);
    put_prompt(c, "ns-b", 4, b1, 12, 13, canon);
    GAUGES_ARE(&d, 7, CAP - 7, 0, 0, 0, 0);
    cr_assert_eq(gauge(&d, HD_ST_TREE_NS), 2);

    /* pin a1 */
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, "ns-a", 4, a1, 8, PC_CLIENT_PIN, 0, &r), 0);
    uint64_t pin = r.lease;
    cr_assert_neq(pin, 0);

    /* flush ns-a: a2 goes, a1 (pinned) stays, ns-b untouched */
    uint64_t ev = 99;
    RC_EQ(c, pc_client_flush(c, "ns-a", 4, &ev), 0);
    cr_assert_eq(ev, 2);
    cr_assert_eq(matched(c, "ns-a", 4, a1, 8), 8);
    cr_assert_eq(matched(c, "ns-a", 4, a2, 8), 0);
    cr_assert_eq(matched(c, "ns-b", 4, b1, 12), 12);
    GAUGES_ARE(&d, 5, CAP - 5, 0, 1, 1, 2);
    /* flushing it again: nothing left to evict */
    RC_EQ(c, pc_client_flush(c, "ns-a", 4, &ev), 0);
    cr_assert_eq(ev, 0);
    /* an unknown namespace: nothing, no error */
    RC_EQ(c, pc_client_flush(c, "ns-zz", 5, &ev), 0);
    cr_assert_eq(ev, 0);

    /* flush all: ns-b goes, the pinned pages stay */
    RC_EQ(c, pc_client_flush(c, NULL, 0, &ev), 0);
    cr_assert_eq(ev, 3);
    cr_assert_eq(matched(c, "ns-b", 4, b1, 12), 0);
    cr_assert_eq(matched(c, "ns-a", 4, a1, 8), 8);
    GAUGES_ARE(&d, 2, CAP - 2, 0, 1, 1, 2);

    /* unpinned, they go too */
    RC_EQ(c, pc_client_release(c, pin), 0);
    RC_EQ(c, pc_client_flush(c, NULL, 0, &ev), 0);
    cr_assert_eq(ev, 2);
    GAUGES_ARE(&d, 0, CAP, 0, 0, 0, 0);
    cr_assert_eq(gauge(&d, HD_ST_TREE_NS), 0);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- the pipelined API -------------------------------------------------------------------------- */

Test(e2e, pipelined)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    uint32_t base[16], canon[4];
    hd_prompt(base, 16, 21);
    put_prompt(c, NS, NSL, base, 16, 21, canon);

    /* 16 lookups in flight: prompt i is the first 4 * (i % 4 + 1) tokens of
     * base followed by 3 tokens of its own (a partial page) */
    enum { N = 16 };
    int64_t ids[N];
    size_t want[N];
    for (int i = 0; i < N; i++) {
        uint32_t t[19];
        size_t n = 4 * (size_t)(i % 4 + 1);
        memcpy(t, base, n * sizeof(*t));
        hd_prompt(t + n, 3, 500 + (uint32_t)i);
        want[i] = n;
        ids[i] = pc_client_send_lookup(c, NS, NSL, t, n + 3, 0, 0);
        cr_assert_gt(ids[i], 0, "send_lookup %d: %s", i, pc_client_last_error(c));
        for (int j = 0; j < i; j++)
            cr_assert_neq(ids[i], ids[j]);
    }
    bool seen[N] = {false};
    for (int k = 0; k < N; k++) {
        pc_client_reply rep;
        RC_EQ(c, pc_client_recv(c, &rep), 0);
        RC_EQ(c, rep.status, 0);
        int i = 0;
        while (i < N && (uint64_t)ids[i] != rep.id)
            i++;
        cr_assert_lt(i, N, "reply with id %" PRIu64 " was never sent", rep.id);
        cr_assert(!seen[i], "two replies for id %" PRIu64, rep.id);
        seen[i] = true;
        cr_assert_eq(rep.lookup.tokens, want[i], "reply %d: %zu tokens, want %zu",
                     i, rep.lookup.tokens, want[i]);
        cr_assert_eq(rep.lookup.pages, want[i] / P);
        cr_assert_eq(memcmp(rep.lookup.blocks, canon, rep.lookup.pages * 4), 0);
    }
    /* nothing more in flight */
    pc_client_set_timeout(c, 200);
    RC_EQ(c, pc_client_recv(c, NULL), PC_E_TIMEOUT);
    pc_client_set_timeout(c, HD_CALL_MS);

    /* pipelined inserts of 4 new prompts (blocks allocated first), and a
     * blocking call in the middle whose reply must not eat theirs */
    uint64_t lease = 0;
    uint32_t blk[8];
    RC_EQ(c, pc_client_alloc(c, 8, &lease, blk), 0);
    int64_t iid[4];
    uint32_t q[4][8];
    for (int i = 0; i < 4; i++) {
        hd_prompt(q[i], 8, 600 + (uint32_t)i);
        iid[i] = pc_client_send_insert(c, NS, NSL, q[i], 8, blk + 2 * i, lease, 0);
        cr_assert_gt(iid[i], 0);
        if (i == 1)
            RC_EQ(c, pc_client_ping(c), 0);
    }
    for (int k = 0; k < 4; k++) {
        pc_client_reply rep;
        RC_EQ(c, pc_client_recv(c, &rep), 0);
        RC_EQ(c, rep.status, 0);
        int i = 0;
        while (i < 4 && (uint64_t)iid[i] != rep.id)
            i++;
        cr_assert_lt(i, 4);
        cr_assert_eq(rep.insert.inserted_pages, 2);
        cr_assert_eq(rep.n_canon, 2);
        cr_assert_eq(rep.canon[0], blk[2 * i]);
        cr_assert_eq(rep.canon[1], blk[2 * i + 1]);
    }
    RC_EQ(c, pc_client_release(c, lease), 0);
    GAUGES_ARE(&d, 12, CAP - 12, 0, 0, 0, 0);

    /* an error reply in a pipeline comes back with its id and status */
    int64_t bad = pc_client_send_lookup(c, NS, NSL, base, 16, 0, 0xdeadbeefull);
    cr_assert_gt(bad, 0);
    pc_client_reply rep;
    RC_EQ(c, pc_client_recv(c, &rep), 0);
    cr_assert_eq(rep.id, (uint64_t)bad);
    cr_assert_eq(rep.status, PC_E_LEASE);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- a raw REQ socket ---------------------------------------------------------------------------- */

Test(e2e, req_socket)
{
    hd_daemon d;
    hd_start(&d, NULL);
    hd_conn q;
    hd_conn_open(&q, d.endpoint, ZMQ_REQ);
    for (uint64_t id = 77; id < 80; id++) { /* REQ: strict send/recv turns */
        hd_buf b;
        hd_buf_init(&b);
        hd_pack_op(&b, id == 78 ? "stats" : "ping", id, 0);
        hd_reply r;
        hd_call_buf(&q, &b, &r);
        cr_assert_eq(r.frames, 1, "REQ strips the delimiter: 1 frame");
        cr_assert_eq(r.status, 0);
        cr_assert_eq(r.id, id);
        if (id == 78)
            cr_assert(pc_mp_get(r.map, "stats") != NULL);
        hd_reply_free(&r);
        hd_buf_free(&b);
    }
    /* every request counted under its op */
    hd_statmap s0, s1;
    hd_stats_get(&d, &s0);
    for (int i = 0; i < 3; i++)
        cr_assert(hd_ping(d.endpoint, HD_CALL_MS));
    hd_stats_get(&d, &s1);
    cr_assert_eq(hd_stat_req(&s1, "rpc.op.ping") - hd_stat_req(&s0, "rpc.op.ping"), 3);
    cr_assert_eq(hd_stat_req(&s1, "rpc.op.stats") - hd_stat_req(&s0, "rpc.op.stats"), 1);
    cr_assert_eq(hd_stat_req(&s1, "rpc.requests") - hd_stat_req(&s0, "rpc.requests"), 4);

    /* an error reply reaches a REQ socket too */
    hd_buf b;
    hd_buf_init(&b);
    hd_pack_op(&b, "release", 80, 1);
    pc_pack_kv_u64(&b.pk, "lease", 12345);
    hd_reply r;
    hd_call_buf(&q, &b, &r);
    cr_assert_eq(r.status, PC_E_LEASE);
    cr_assert_eq(r.id, 80);
    cr_assert_gt(strlen(r.error), 0);
    hd_reply_free(&r);
    hd_buf_free(&b);
    hd_conn_close(&q);
    hd_stop(&d);
}

/* ---- timeouts ------------------------------------------------------------------------------------ */

Test(e2e, timeouts)
{
    /* no daemon at the endpoint: PC_E_TIMEOUT within the timeout */
    hd_daemon d;
    hd_init(&d);
    pc_client *c;
    cr_assert_eq(pc_client_connect(d.endpoint, 300, &c), 0);
    int64_t t0 = hd_now_ms();
    RC_EQ(c, pc_client_ping(c), PC_E_TIMEOUT);
    int64_t dt = hd_now_ms() - t0;
    cr_assert(dt >= 250 && dt < 2000, "ping timed out after %d ms (timeout 300)",
              (int)dt);
    cr_assert_gt(strlen(pc_client_last_error(c)), 0);
    pc_hello h;
    t0 = hd_now_ms();
    RC_EQ(c, pc_client_hello(c, &h), PC_E_TIMEOUT);
    dt = hd_now_ms() - t0;
    cr_assert(dt >= 250 && dt < 2000, "hello timed out after %d ms", (int)dt);
    cr_assert_lt(pc_client_send_lookup(c, NS, NSL, (uint32_t[]){1, 2, 3, 4}, 4, 0, 0),
                 0, "a pipelined send with no daemon must fail (timeout)");

    /* the daemon comes up: the same client now works (ZeroMQ reconnects) */
    hd_spawn(&d, true, (const char *const[]){NULL});
    hd_wait_ready(&d);
    pc_client_set_timeout(c, HD_CALL_MS);
    RC_EQ(c, pc_client_ping(c), 0);
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.capacity, CAP);
    pc_client_close(c);
    hd_stop(&d);

    /* and after it went away again: a timeout, not a hang */
    cr_assert_eq(pc_client_connect(d.endpoint, 300, &c), 0);
    t0 = hd_now_ms();
    RC_EQ(c, pc_client_ping(c), PC_E_TIMEOUT);
    cr_assert_lt(hd_now_ms() - t0, 2000);
    pc_client_close(c);
}

/* A reply that comes after its call timed out is dropped by id: the next
 * call gets its own answer.  The daemon is SIGSTOPped so that replies are
 * late for sure. */
Test(e2e, late_reply)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    uint32_t a[8], b[16], canon[4];
    hd_prompt(a, 8, 31);
    hd_prompt(b, 16, 32);
    put_prompt(c, NS, NSL, a, 8, 31, canon);
    put_prompt(c, NS, NSL, b, 16, 32, canon);

    cr_assert_eq(kill(d.pid, SIGSTOP), 0);
    pc_client_set_timeout(c, 200);
    /* two blocking lookups of a (8 tokens) time out ... */
    for (int i = 0; i < 2; i++) {
        int64_t t0 = hd_now_ms();
        RC_EQ(c, pc_client_lookup(c, NS, NSL, a, 8, 0, 0, NULL), PC_E_TIMEOUT);
        cr_assert_lt(hd_now_ms() - t0, 2000);
    }
    /* ... and a pipelined lookup of b is in flight */
    int64_t pid_b = pc_client_send_lookup(c, NS, NSL, b, 16, 0, 0);
    cr_assert_gt(pid_b, 0);
    RC_EQ(c, pc_client_ping(c), PC_E_TIMEOUT);
    cr_assert_eq(kill(d.pid, SIGCONT), 0);
    pc_client_set_timeout(c, HD_CALL_MS);

    /* the late replies (8 tokens, then b's, then a ping's) arrive now: each
     * call gets its own */
    for (int i = 0; i < 5; i++) {
        pc_client_lookup_result r;
        RC_EQ(c, pc_client_lookup(c, NS, NSL, b, 12, 0, 0, &r), 0);
        cr_assert_eq(r.tokens, 12, "call %d got a stale reply (%zu tokens)", i,
                     r.tokens);
    }
    /* the pipelined reply was kept for pc_client_recv */
    pc_client_reply rep;
    RC_EQ(c, pc_client_recv(c, &rep), 0);
    cr_assert_eq(rep.id, (uint64_t)pid_b);
    RC_EQ(c, rep.status, 0);
    cr_assert_eq(rep.lookup.tokens, 16);
    pc_client_set_timeout(c, 200);
    RC_EQ(c, pc_client_recv(c, &rep), PC_E_TIMEOUT);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- SIGHUP reload ----------------------------------------------------------------------------- */

/* The whole configuration in the file (only --config on the command line),
 * so that a reload compares like with like. */
static void write_conf(const hd_daemon *d, const char *extra_lines)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "# prefixcached test configuration\n"
             "endpoint = %s\n"
             "shm_name = \"%s\"\n"
             "pool_backend = host\n"
             "pool_blocks = %u\n"
             "layers = %u\n"
             "kv_heads = %u\n"
             "head_dim = %u\n"
             "dtype = %s\n"
             "page_tokens = %u   # tokens per block\n"
             "log_level = info\n"
             "%s",
             d->endpoint, d->shm_name, HD_POOL_BLOCKS, HD_LAYERS, HD_KV_HEADS,
             HD_HEAD_DIM, HD_DTYPE, HD_PAGE_TOKENS, extra_lines);
    hd_write_file(d->conf_path, text);
}

static uint64_t ttl_now(pc_client *c)
{
    char v[256];
    knob(c, "lease_ttl_ms", v, sizeof(v));
    return strtoull(v, NULL, 10);
}

/* Rewrite the file, SIGHUP, and wait for a log line with all the needles. */
static void hup_and_wait(hd_daemon *d, const char *extra_lines,
                         const char *needle1, const char *needle2)
{
    write_conf(d, extra_lines);
    size_t at = hd_log_size(d);
    cr_assert_eq(kill(d->pid, SIGHUP), 0);
    char line[1024] = "";
    const char *const n[] = {needle1, needle2, NULL};
    bool ok = hd_log_wait_line(d, at, 5000, line, sizeof(line), n);
    if (!ok)
        hd_dump_log(d, 4096);
    cr_assert(ok, "after SIGHUP with [%s]: no log line with '%s' and '%s'",
              extra_lines, needle1, needle2 ? needle2 : "");
    fprintf(stderr, "SIGHUP [%.*s] -> %s\n", (int)strcspn(extra_lines, "\n"),
            extra_lines, line);
}

Test(e2e, sighup_reload)
{
    hd_daemon d;
    hd_init(&d);
    write_conf(&d, "lease_ttl_ms = 30000\n");
    hd_spawn(&d, false, (const char *const[]){"--config", d.conf_path, NULL});
    hd_wait_ready(&d);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    cr_assert_eq(h.capacity, CAP);
    cr_assert_eq(ttl_now(c), 30000);

    /* a valid change is applied, and logged */
    hup_and_wait(&d, "lease_ttl_ms = 1234\n", "lease_ttl_ms", "1234");
    cr_assert(hd_log_has(&d, 0, 0, "lease_ttl_ms: 30000 -> 1234", NULL),
              "no 'lease_ttl_ms: 30000 -> 1234' line");
    int64_t t0 = hd_now_ms();
    while (ttl_now(c) != 1234 && hd_now_ms() - t0 < 3000)
        hd_sleep_ms(20);
    cr_assert_eq(ttl_now(c), 1234);
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.lease_ttl_ms, 1234);

    /* invalid files are rejected as a whole: the old value stays, the error
     * (naming the file) is logged */
    static const char *const bad[] = {
        "lease_ttl_ms = 777\nno_such_knob = 1\n",      /* unknown knob      */
        "lease_ttl_ms = 777\nthis line is broken\n",   /* not key = value   */
        "lease_ttl_ms = banana\n",                     /* not a number      */
        "lease_ttl_ms = 0\n",                          /* below the minimum */
        "lease_ttl_ms = 777\nlease_ttl_ms = 778\n",    /* set twice         */
        "lease_ttl_ms = 777\nlow_watermark = 50\nhigh_watermark = 10\n",
    };
    for (size_t i = 0; i < HD_NELEM(bad); i++) {
        hup_and_wait(&d, bad[i], "reload", "refused");
        RC_EQ(c, pc_client_ping(c), 0);
        cr_assert_eq(ttl_now(c), 1234, "bad file %zu changed the TTL", i);
    }
    /* a missing file: the same */
    unlink(d.conf_path);
    size_t at = hd_log_size(&d);
    cr_assert_eq(kill(d.pid, SIGHUP), 0);
    cr_assert(hd_log_has(&d, at, 5000, "refused", d.conf_path, NULL),
              "a missing config file on SIGHUP was not logged");
    cr_assert_eq(ttl_now(c), 1234);

    /* a changed non-reloadable knob is ignored (logged), the reloadable
     * change in the same file is applied */
    write_conf(&d, "lease_ttl_ms = 2000\n");
    {
        char text[4096];
        char *cur = hd_read_file(d.conf_path, NULL);
        char *p = strstr(cur, "pool_blocks = 64");
        cr_assert(p);
        memcpy(p, "pool_blocks = 99", 16);
        snprintf(text, sizeof(text), "%s", cur);
        free(cur);
        hd_write_file(d.conf_path, text);
    }
    at = hd_log_size(&d);
    cr_assert_eq(kill(d.pid, SIGHUP), 0);
    cr_assert(hd_log_has(&d, at, 5000, "pool_blocks", "ignored", NULL),
              "no log line for the ignored pool_blocks change");
    cr_assert(hd_log_has(&d, at, 5000, "lease_ttl_ms: 1234 -> 2000", NULL));
    cr_assert_eq(ttl_now(c), 2000);
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.capacity, CAP);
    char v[256];
    knob(c, "pool_blocks", v, sizeof(v));
    cr_assert_str_eq(v, "64");
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- clean shutdown, one daemon per endpoint ---------------------------------------------------- */

Test(e2e, shutdown)
{
    hd_daemon a, b;
    hd_start(&a, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&a, &c, &h);
    uint32_t t[8], canon[2];
    hd_prompt(t, 8, 41);
    put_prompt(c, NS, NSL, t, 8, 41, canon);

    /* a second daemon on the same endpoint fails at start, clearly */
    hd_init(&b);
    char ep[200];
    snprintf(ep, sizeof(ep), "--endpoint=%s", a.endpoint);
    hd_spawn(&b, true, (const char *const[]){ep, NULL});
    bool exited = hd_reap(&b, HD_START_MS);
    if (!exited)
        hd_dump_log(&b, 4096);
    cr_assert(exited, "a second daemon on %s did not exit", a.endpoint);
    cr_assert(WIFEXITED(b.status) && WEXITSTATUS(b.status) != 0,
              "second daemon: status 0x%x, want a non-zero exit", b.status);
    char *log = hd_read_file(b.log_path, NULL);
    fprintf(stderr, "second daemon says:\n%s", log);
    cr_assert(hd_stristr(log, "in use") && strstr(log, a.sock_path),
              "no clear message (endpoint in use) from the second daemon");
    cr_assert(!hd_stristr(log, "runtime error:") && !strstr(log, "Sanitizer"));
    free(log);
    cr_assert(!hd_exists(b.shm_path), "the second daemon left its shm %s", b.shm_path);
    hd_unlink_files(&b); /* its log; NOT a's socket: b.sock_path is b's own */

    /* the first keeps serving, its files intact */
    cr_assert(hd_exists(a.sock_path) && hd_exists(a.lock_path));
    RC_EQ(c, pc_client_ping(c), 0);
    cr_assert_eq(matched(c, NS, NSL, t, 8), 8);
    pc_client_close(c);
    hd_stop(&a); /* exit 0; socket, lock and shm gone */

    /* a daemon killed hard leaves a stale socket file; the next one on that
     * endpoint replaces it */
    hd_daemon k, n;
    hd_start(&k, NULL);
    kill(k.pid, SIGKILL);
    cr_assert(hd_reap(&k, HD_STOP_MS));
    cr_assert(hd_exists(k.sock_path), "SIGKILL left no socket file?");
    hd_init(&n);
    snprintf(ep, sizeof(ep), "--endpoint=%s", k.endpoint);
    hd_spawn(&n, true, (const char *const[]){ep, NULL});
    snprintf(n.sock_path, sizeof(n.sock_path), "%s", k.sock_path);
    snprintf(n.endpoint, sizeof(n.endpoint), "%s", k.endpoint);
    snprintf(n.lock_path, sizeof(n.lock_path), "%s", k.lock_path);
    hd_wait_ready(&n);
    cr_assert(hd_log_has(&n, 0, 0, "stale", NULL), "no 'stale socket' log line");
    shm_unlink(k.shm_name); /* SIGKILL could not */
    unlink(k.log_path);
    hd_forget(&k); /* its socket and lock paths are n's now */
    /* SIGINT stops cleanly too */
    cr_assert_eq(kill(n.pid, SIGINT), 0);
    cr_assert(hd_reap(&n, HD_STOP_MS));
    cr_assert(WIFEXITED(n.status) && WEXITSTATUS(n.status) == 0,
              "SIGINT: status 0x%x", n.status);
    hd_assert_clean_log(&n);
    cr_assert(!hd_exists(n.sock_path) && !hd_exists(n.lock_path) &&
              !hd_exists(n.shm_path));
    hd_unlink_files(&n);
}

/* ---- the CLI ------------------------------------------------------------------------------------- */

typedef struct cli_out {
    int status; /* exit code, or -signal */
    char *out, *err;
} cli_out;

static void cli_free(cli_out *o)
{
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof(*o));
}

/* Run the CLI with argv (NULL-ended; argv[0] is added), stdout and stderr
 * captured. */
static const char *g_cli_stdin = "/dev/null"; /* the CLI's stdin */

static cli_out cli_run(const char *const *args)
{
    const char *bin = hd_env("PREFIXCACHE_CLI");
    char outp[128], errp[128];
    snprintf(outp, sizeof(outp), "/tmp/pc-test-%ld-cli.out", (long)getpid());
    snprintf(errp, sizeof(errp), "/tmp/pc-test-%ld-cli.err", (long)getpid());
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = open(g_cli_stdin, O_RDONLY);
        if (o < 0 || e < 0 || in < 0)
            _exit(126);
        dup2(in, 0), dup2(o, 1), dup2(e, 2);
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st;
    if (!hd_wait_child(pid, 20000, &st))
        cr_assert_fail("the CLI hung");
    cli_out o;
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    o.out = hd_read_file(outp, NULL);
    o.err = hd_read_file(errp, NULL);
    unlink(outp);
    unlink(errp);
    cr_assert(!strstr(o.err, "ERROR: AddressSanitizer") &&
              !strstr(o.err, "ERROR: LeakSanitizer") &&
              !strstr(o.err, "runtime error:"),
              "the CLI's stderr has a sanitizer report:\n%s", o.err);
    return o;
}

#define CLI(...) cli_run((const char *const[]){__VA_ARGS__, NULL})

/* Entries of a flat JSON object {"name": uint, ...}; -1 if it is not one. */
static int json_flat_object(const char *s)
{
    int n = 0;
#define WS() while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++
    WS();
    if (*s++ != '{')
        return -1;
    WS();
    if (*s == '}')
        return 0;
    for (;;) {
        WS();
        if (*s++ != '"')
            return -1;
        while (*s && *s != '"')
            if (*s++ == '\\' && !*s++)
                return -1;
        if (*s++ != '"')
            return -1;
        WS();
        if (*s++ != ':')
            return -1;
        WS();
        if (*s < '0' || *s > '9')
            return -1;
        while (*s >= '0' && *s <= '9')
            s++;
        n++;
        WS();
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s++ != '}')
            return -1;
        WS();
        return *s ? -1 : n;
    }
#undef WS
}

#define CLI_OK(o, ...)                                                         \
    do {                                                                       \
        o = CLI(__VA_ARGS__);                                                  \
        cr_assert_eq(o.status, 0, "line %d: CLI exit %d\nstdout:\n%s\nstderr:\n%s", \
                     __LINE__, o.status, o.out, o.err);                        \
    } while (0)

Test(e2e, cli)
{
    hd_daemon d;
    hd_start(&d, NULL);
    const char *ep = d.endpoint;
    cli_out o;

    CLI_OK(o, "--endpoint", ep, "ping");
    cr_assert(strstr(o.out, "pong"), "ping: %s", o.out);
    cli_free(&o);
    CLI_OK(o, "--help");
    cr_assert(strstr(o.out, "usage"), "%s", o.out);
    cli_free(&o);

    CLI_OK(o, "--endpoint", ep, "hello");
    cr_assert(strstr(o.out, "page_tokens") && strstr(o.out, d.shm_name), "%s", o.out);
    cli_free(&o);

    /* a prompt to find */
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    uint32_t t[10], canon[2];
    hd_prompt(t, 10, 51);
    put_prompt(c, NS, NSL, t, 10, 51, canon);

    CLI_OK(o, "--endpoint", ep, "stats", "--json");
    cr_assert_eq(o.out[0], '{', "stats --json: %.80s", o.out);
    cr_assert(strstr(o.out, "\"tree.pages\": 2"), "stats --json: %s", o.out);
    cr_assert_gt(json_flat_object(o.out), 40, "stats --json is not a flat JSON "
                 "object of counters:\n%s", o.out);
    cli_free(&o);
    CLI_OK(o, "--endpoint", ep, "stats");
    cr_assert(strstr(o.out, "pool.blocks.free"), "%s", o.out);
    cli_free(&o);

    /* lookup of a token file */
    char tokp[128];
    snprintf(tokp, sizeof(tokp), "/tmp/pc-test-%ld-tokens.txt", (long)getpid());
    char text[256] = "";
    for (int i = 0; i < 10; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%u%s", t[i],
                 i % 4 == 3 ? "\n" : " ");
    hd_write_file(tokp, text);
    CLI_OK(o, "--endpoint", ep, "lookup", "--ns", NS, tokp);
    cr_assert(strstr(o.out, "matched    8 of 10 tokens"), "lookup: %s", o.out);
    char blocks[64];
    snprintf(blocks, sizeof(blocks), " %u %u\n", canon[0], canon[1]);
    cr_assert(strstr(o.out, blocks), "lookup: blocks%s not in %s", blocks, o.out);
    cli_free(&o);
    g_cli_stdin = tokp; /* '-': the tokens from stdin */
    CLI_OK(o, "--endpoint", ep, "lookup", "--ns", NS, "-");
    g_cli_stdin = "/dev/null";
    cr_assert(strstr(o.out, "matched    8 of 10 tokens"), "lookup -: %s", o.out);
    cli_free(&o);
    CLI_OK(o, "--endpoint", ep, "lookup", tokp); /* the default namespace "" */
    cr_assert(strstr(o.out, "matched    0 of 10 tokens"), "lookup: %s", o.out);
    cli_free(&o);
    hd_write_file(tokp, "1 2 x 4\n");
    o = CLI("--endpoint", ep, "lookup", "--ns", NS, tokp);
    cr_assert_eq(o.status, 1, "a bad token file: exit %d", o.status);
    cli_free(&o);
    unlink(tokp);

    /* config get / set */
    CLI_OK(o, "--endpoint", ep, "config", "get", "lease_ttl_ms");
    cr_assert(strstr(o.out, "lease_ttl_ms") && strstr(o.out, "30000"), "%s", o.out);
    cli_free(&o);
    CLI_OK(o, "--endpoint", ep, "config", "set", "lease_ttl_ms", "4000");
    cr_assert(strstr(o.out, "4000"), "%s", o.out);
    cli_free(&o);
    CLI_OK(o, "--endpoint", ep, "config", "get");
    cr_assert(strstr(o.out, "pool_blocks") && strstr(o.out, "4000"), "%s", o.out);
    cli_free(&o);
    o = CLI("--endpoint", ep, "config", "get", "no_such_knob");
    cr_assert_eq(o.status, 1, "unknown knob: exit %d", o.status);
    cr_assert(strstr(o.err, "PC_E_NOENT"), "stderr: %s", o.err);
    cli_free(&o);
    CLI_OK(o, "--endpoint", ep, "ping", "-c", "3");
    cr_assert(strstr(o.out, "3 pings"), "ping -c 3: %s", o.out);
    cli_free(&o);
    o = CLI("--endpoint", ep, "config", "set", "pool_blocks", "128");
    cr_assert_eq(o.status, 1, "non-reloadable set: exit %d", o.status);
    cr_assert(strstr(o.err, "PC_E_"), "stderr: %s", o.err);
    cli_free(&o);
    cr_assert_eq(ttl_now(c), 4000);

    /* flush */
    CLI_OK(o, "--endpoint", ep, "flush", "--ns", NS);
    cr_assert(strstr(o.out, "evicted 2 pages"), "flush: %s", o.out);
    cli_free(&o);
    CLI_OK(o, "--endpoint", ep, "flush");
    cr_assert(strstr(o.out, "evicted 0 pages"), "flush: %s", o.out);
    cli_free(&o);
    cr_assert_eq(matched(c, NS, NSL, t, 10), 0);

    /* usage errors and a missing daemon */
    o = CLI("--endpoint", ep, "frobnicate");
    cr_assert_eq(o.status, 2);
    cli_free(&o);
    o = CLI("--endpoint", ep, "config", "set", "lease_ttl_ms");
    cr_assert_eq(o.status, 2);
    cli_free(&o);
    char dead[160];
    snprintf(dead, sizeof(dead), "ipc:///tmp/pc-test-%ld-nobody.sock", (long)getpid());
    int64_t t0 = hd_now_ms();
    o = CLI("--endpoint", dead, "--timeout", "200", "ping");
    cr_assert_eq(o.status, 1);
    cr_assert(strstr(o.err, "PC_E_TIMEOUT"), "stderr: %s", o.err);
    cr_assert_lt(hd_now_ms() - t0, 10000);
    cli_free(&o);

    pc_client_close(c);
    hd_stop(&d);
}

/* ---- a daemon that cannot start ------------------------------------------------------------------ */

/* Start with extra args; it must exit non-zero within the bound with a
 * message containing `needle`, leaving no socket, lock or shm behind. */
static void start_fails(const char *const *extra, const char *needle)
{
    hd_daemon d;
    hd_init(&d);
    hd_spawn(&d, true, extra);
    bool exited = hd_reap(&d, HD_START_MS);
    if (!exited)
        hd_dump_log(&d, 4096);
    cr_assert(exited, "prefixcached %s did not exit", extra[0]);
    char *log = hd_read_file(d.log_path, NULL);
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1,
              "prefixcached %s: status 0x%x, want exit 1\n%s", extra[0], d.status, log);
    cr_assert(hd_stristr(log, needle), "prefixcached %s: no '%s' in:\n%s", extra[0],
              needle, log);
    cr_assert(!strstr(log, "runtime error:") && !strstr(log, "Sanitizer"), "%s", log);
    fprintf(stderr, "%s -> %s", extra[0], log);
    free(log);
    cr_assert(!hd_exists(d.sock_path) && !hd_exists(d.lock_path),
              "a failed start left %s or its lock", d.sock_path);
    hd_unlink_files(&d);
}

/* A daemon that loses the race for an endpoint must not touch any pool:
 * it claims the endpoint before the pool.  The object below stands for the
 * pool of a live daemon that holds no pool lock (as daemons before the pool
 * lock did): an object of ours that nobody locks, which a start would
 * otherwise take for a dead daemon's and replace. */
Test(e2e, endpoint_before_pool)
{
    hd_daemon a, b;
    hd_start(&a, NULL);
    hd_init(&b);
    char name[64];
    snprintf(name, sizeof(name), "/pc-test-%ld-unlocked", (long)getpid());
    shm_unlink(name);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert(fd >= 0, "shm_open: %s", strerror(errno));
    cr_assert_eq(ftruncate(fd, 4096), 0);
    struct stat before, after;
    cr_assert_eq(fstat(fd, &before), 0);
    char ep[300], shm[100];
    snprintf(ep, sizeof(ep), "--endpoint=%s", a.endpoint);
    snprintf(shm, sizeof(shm), "--shm_name=%s", name);
    hd_spawn(&b, true, (const char *const[]){ep, shm, NULL});
    cr_assert(hd_reap(&b, HD_START_MS), "the second daemon did not exit");
    char *log = hd_read_file(b.log_path, NULL);
    cr_assert(hd_stristr(log, "in use"), "%s", log);
    cr_assert(!hd_stristr(log, "was left by"), "it reclaimed a pool: %s", log);
    free(log);
    int fd2 = shm_open(name, O_RDWR, 0);
    cr_assert(fd2 >= 0, "the loser removed the live pool %s", name);
    cr_assert_eq(fstat(fd2, &after), 0);
    cr_assert(after.st_ino == before.st_ino, "the live pool was replaced");
    close(fd2);
    close(fd);
    shm_unlink(name);
    cr_assert(hd_ping(a.endpoint, HD_CALL_MS), "the first daemon stopped answering");
    hd_unlink_files(&b);
    hd_stop(&a);
}

Test(e2e, bad_start)
{
    start_fails((const char *const[]){"--pool_blocks=1", NULL}, "pool");
    start_fails((const char *const[]){"--dtype=fp64", NULL}, "dtype");
    start_fails((const char *const[]){"--no_such_option=1", NULL}, "no_such_option");
    start_fails((const char *const[]){"--endpoint=udp://x", NULL}, "endpoint");
    start_fails((const char *const[]){"--low_watermark=9", "--high_watermark=8", NULL},
                "watermark");
    start_fails((const char *const[]){"--lease_ttl_ms=0", NULL}, "lease_ttl_ms");
    start_fails((const char *const[]){"--config", "/nonexistent/pc.conf", NULL},
                "/nonexistent/pc.conf");
    start_fails((const char *const[]){"stray-argument", NULL}, "stray-argument");
    /* an OS failure says its cause, not just "system or I/O error" */
    start_fails((const char *const[]){"--endpoint=ipc:///nonexistent-dir/pc.sock", NULL},
                "cannot start: cannot listen on ipc:///nonexistent-dir/pc.sock: "
                "cannot create the lock file /nonexistent-dir/pc.sock.lock: No such "
                "file or directory");

    /* a shm object of our name exists and is alive (its creator holds its
     * lock, as a running daemon does): refused, and the object is NOT
     * removed by the failed daemon.  (A dead one's is reclaimed:
     * test_daemon_start.c.) */
    hd_daemon d;
    hd_init(&d);
    int fd = shm_open(d.shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert(fd >= 0, "shm_open: %s", strerror(errno));
    cr_assert_eq(flock(fd, LOCK_EX), 0);
    hd_spawn(&d, true, (const char *const[]){NULL});
    cr_assert(hd_reap(&d, HD_START_MS), "daemon with a taken shm name kept running");
    close(fd);
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1);
    cr_assert(hd_log_has(&d, 0, 0, d.shm_name, "in use", NULL),
              "no message naming the shm");
    cr_assert(hd_exists(d.shm_path), "the failed daemon removed a shm object "
              "that was not its own");
    cr_assert(!hd_exists(d.sock_path) && !hd_exists(d.lock_path));
    hd_unlink_files(&d); /* and the shm object */
    cr_assert(!hd_exists(d.shm_path));
}

/* ---- limits and watermarks ---------------------------------------------------------------------- */

Test(e2e, limits)
{
    hd_daemon d;
    hd_start(&d, "--max_leases=2", "--max_pins_per_lease=1",
             "--max_blocks_per_lease=3", NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    uint32_t t[3][8], canon[2];
    for (uint32_t i = 0; i < 3; i++) {
        hd_prompt(t[i], 8, 60 + i);
        put_prompt(c, NS, NSL, t[i], 8, 60 + i, canon);
    }
    uint64_t l1 = 0, l2 = 0, l3 = 0;
    uint32_t ids[4];
    /* blocks per lease */
    RC_EQ(c, pc_client_alloc(c, 4, &l1, ids), PC_E_LIMIT);
    RC_EQ(c, pc_client_alloc(c, 3, &l1, ids), 0);
    RC_EQ(c, pc_client_alloc(c, 1, &l1, ids), PC_E_LIMIT);
    /* pins per lease */
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t[0], 8, PC_CLIENT_PIN, l1, &r), 0);
    cr_assert_eq(r.lease, l1);
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t[1], 8, PC_CLIENT_PIN, l1, &r), PC_E_LIMIT);
    cr_assert_gt(strlen(pc_client_last_error(c)), 0);
    /* leases */
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t[1], 8, PC_CLIENT_PIN, 0, &r), 0);
    l2 = r.lease;
    cr_assert_neq(l2, 0);
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t[2], 8, PC_CLIENT_PIN, 0, &r), PC_E_LIMIT);
    RC_EQ(c, pc_client_alloc(c, 1, &l3, ids), PC_E_LIMIT);
    cr_assert_eq(l3, 0);
    GAUGES_ARE(&d, 6, CAP - 9, 3, 2, 2, 4);
    /* limits are reloadable */
    RC_EQ(c, pc_client_config_set(c, "max_leases", "3", NULL, NULL), 0);
    RC_EQ(c, pc_client_alloc(c, 1, &l3, ids), 0);
    RC_EQ(c, pc_client_release(c, l1), 0);
    RC_EQ(c, pc_client_release(c, l2), 0);
    RC_EQ(c, pc_client_release(c, l3), 0);
    GAUGES_ARE(&d, 6, CAP - 6, 0, 0, 0, 0);
    pc_client_close(c);
    hd_stop(&d);
}

Test(e2e, watermarks)
{
    hd_daemon d;
    hd_start(&d, "--low_watermark=8", "--high_watermark=16", NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    /* 14 prompts of 4 pages: 56 blocks cached, 8 free: not below low */
    uint32_t t[16][16], canon[4];
    for (uint32_t i = 0; i < 14; i++) {
        hd_prompt(t[i], 16, 70 + i);
        put_prompt(c, NS, NSL, t[i], 16, 70 + i, canon);
    }
    gauges g = gauges_get(&d);
    cr_assert_eq(g.free, 8, "free %" PRIu64, g.free);
    cr_assert_eq(gauge(&d, "cache.evictions_watermark"), 0);
    /* one more: 4 free < 8 -> between requests the daemon evicts LRU pages
     * until 16 are free (prompts 0..2, the least recently used) */
    hd_prompt(t[14], 16, 84);
    put_prompt(c, NS, NSL, t[14], 16, 84, canon);
    int64_t t0 = hd_now_ms();
    while ((g = gauges_get(&d)).free < 16 && hd_now_ms() - t0 < 2000)
        hd_sleep_ms(10);
    cr_assert_eq(g.free, 16, "free %" PRIu64 " after crossing the low watermark",
                 g.free);
    cr_assert_eq(gauge(&d, "cache.evictions_watermark"), 12);
    cr_assert_eq(matched(c, NS, NSL, t[0], 16), 0);
    cr_assert_eq(matched(c, NS, NSL, t[2], 16), 0);
    cr_assert_eq(matched(c, NS, NSL, t[3], 16), 16);
    cr_assert_eq(matched(c, NS, NSL, t[14], 16), 16);
    /* watermarks are reloadable: off */
    RC_EQ(c, pc_client_config_set(c, "low_watermark", "0", NULL, NULL), 0);
    RC_EQ(c, pc_client_config_set(c, "high_watermark", "0", NULL, NULL), 0);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- namespaces are bytes ----------------------------------------------------------------------- */

Test(e2e, namespaces)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    /* distinct namespaces, some not UTF-8 (sent as bin), one with a NUL,
     * one empty, one of 256 bytes: the same tokens, never shared */
    char big[256];
    memset(big, 'z', sizeof(big));
    const struct {
        const char *ns;
        size_t len;
    } nss[] = {{"", 0},       {"a", 1},          {"a\0", 2},  {"\xff\xfe", 2},
               {"\xff", 1},   {"a\0b", 3},       {big, 256},  {"A", 1}};
    uint32_t t[8], canon[2];
    hd_prompt(t, 8, 90);
    for (size_t i = 0; i < HD_NELEM(nss); i++) {
        for (size_t j = 0; j < i; j++)
            cr_assert_eq(matched(c, nss[i].ns, nss[i].len, t, 8), 0,
                         "namespace %zu sees namespace %zu's pages", i, j);
        put_prompt(c, nss[i].ns, nss[i].len, t, 8, 90, canon);
        cr_assert_eq(matched(c, nss[i].ns, nss[i].len, t, 8), 8);
    }
    cr_assert_eq(gauge(&d, HD_ST_TREE_NS), HD_NELEM(nss));
    cr_assert_eq(gauge(&d, HD_ST_TREE_PAGES), 2 * HD_NELEM(nss));
    uint64_t ev;
    RC_EQ(c, pc_client_flush(c, "a\0", 2, &ev), 0);
    cr_assert_eq(ev, 2);
    cr_assert_eq(matched(c, "a", 1, t, 8), 8);
    cr_assert_eq(matched(c, "a\0b", 3, t, 8), 8);
    cr_assert_eq(matched(c, "a\0", 2, t, 8), 0);
    /* "a" as str (the client's choice for UTF-8) and as bin: the same */
    {
        hd_conn q;
        hd_conn_open(&q, d.endpoint, ZMQ_DEALER);
        hd_buf b;
        hd_buf_init(&b);
        hd_pack_op(&b, "lookup", 5, 2);
        pc_pack_kv_bin(&b.pk, "ns", "a", 1);
        pc_pack_kv_u32s(&b.pk, "tokens", t, 8);
        hd_reply rr;
        hd_call_buf(&q, &b, &rr);
        cr_assert_eq(rr.status, 0);
        uint64_t got = 0;
        cr_assert_eq(pc_mp_get_u64(rr.map, "tokens", &got), 0);
        cr_assert_eq(got, 8, "ns 'a' as bin does not see ns 'a' as str");
        hd_reply_free(&rr);
        hd_buf_free(&b);
        hd_conn_close(&q);
    }
    /* 257 bytes: refused by the daemon */
    char over[257];
    memset(over, 'z', sizeof(over));
    RC_EQ(c, pc_client_lookup(c, over, 257, t, 8, 0, 0, NULL), PC_E_TOOBIG);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- several engines at once -------------------------------------------------------------------- */

/* Every page's KV is a function of its tokens (and position), so any block
 * found in the cache can be checked by whoever reads it: a block handed to
 * two owners, or a page pointing at the wrong block, shows as wrong bytes. */
static uint8_t page_byte(const uint32_t *page, size_t pos, size_t i)
{
    uint32_t h = page[0] * 2654435761u ^ page[P - 1] * 40503u ^ (uint32_t)pos * 97u;
    return (uint8_t)(h >> 8 ^ i * 13u);
}

static bool page_ok(const uint8_t *b, const uint32_t *page, size_t pos)
{
    for (size_t i = 0; i < BB; i++)
        if (b[i] != page_byte(page, pos, i))
            return false;
    return true;
}

/* 3 system prompts (2 pages) x 12 questions (2 pages) + 2 loose tokens */
static void conc_prompt(uint32_t *t, unsigned sys, unsigned q)
{
    hd_prompt(t, 8, 200 + sys);
    hd_prompt(t + 8, 10, 300 + sys * 100 + q);
}

/* One engine: `rounds` prompts; exit code 0, or what went wrong. */
static int conc_engine(const char *endpoint, unsigned seed, int rounds)
{
    pc_client *c;
    pc_hello h;
    if (pc_client_connect(endpoint, 5000, &c) || pc_client_hello(c, &h))
        return 10;
    unsigned x = seed * 7919u + 1;
    for (int k = 0; k < rounds; k++) {
        x = x * 1103515245u + 12345u;
        uint32_t t[18], ids[4];
        conc_prompt(t, (x >> 8) % 3, (x >> 12) % 12);
        pc_client_lookup_result r;
        int rc = pc_client_lookup(c, NS, NSL, t, 18, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                                  0, &r);
        if (rc)
            return 11;
        if (r.pages + r.n_alloc != 4 && r.alloc_status == 0)
            return 12;
        /* the cached pages are pinned: their bytes must be right */
        for (size_t p = 0; p < r.pages; p++) {
            const uint8_t *b = pc_client_block(c, r.blocks[p]);
            if (!b || !page_ok(b, t + p * P, p))
                return 13;
        }
        uint64_t lease = r.lease;
        if (r.alloc_status) { /* the pool is full of pins: try later */
            if (lease && pc_client_release(c, lease))
                return 14;
            continue;
        }
        if (r.pages) /* NULL when empty */
            memcpy(ids, r.blocks, r.pages * sizeof(*ids));
        if (r.n_alloc)
            memcpy(ids + r.pages, r.alloc_blocks, r.n_alloc * sizeof(*ids));
        for (size_t p = r.pages; p < 4; p++) {
            uint8_t *b = pc_client_block(c, ids[p]);
            if (!b)
                return 15;
            for (size_t i = 0; i < BB; i++)
                b[i] = page_byte(t + p * P, p, i);
        }
        uint32_t canon[4];
        pc_client_insert_result ir;
        if (pc_client_insert(c, NS, NSL, t, 18, ids, lease, PC_CLIENT_RELEASE, canon,
                             &ir))
            return 16;
        if (ir.cached_tokens < r.tokens || ir.inserted_pages + ir.freed_blocks != r.n_alloc)
            return 17;
    }
    pc_client_close(c);
    return 0;
}

Test(e2e, concurrent_engines)
{
    hd_daemon d;
    hd_start(&d, NULL);
    enum { KIDS = 6, ROUNDS = 40 };
    pid_t kid[KIDS];
    hd_quiesce(); /* no ZeroMQ thread of ours busy at fork */
    fflush(NULL);
    for (unsigned i = 0; i < KIDS; i++) {
        kid[i] = fork();
        cr_assert(kid[i] >= 0);
        if (kid[i] == 0)
            _exit(conc_engine(d.endpoint, i, ROUNDS));
    }
    for (unsigned i = 0; i < KIDS; i++)
        wait_child_ok(kid[i]);
    /* quiet now: everything cached must hold its page's bytes */
    gauges g = gauges_get(&d); /* includes the daemon's own check */
    cr_assert_eq(g.leases, 0);
    cr_assert_eq(g.leased, 0);
    cr_assert_eq(g.pins, 0);
    cr_assert_gt(g.pages, 0);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    size_t checked = 0;
    for (unsigned s = 0; s < 3; s++)
        for (unsigned q = 0; q < 12; q++) {
            uint32_t t[18];
            conc_prompt(t, s, q);
            pc_client_lookup_result r;
            RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 18, 0, 0, &r), 0);
            for (size_t p = 0; p < r.pages; p++, checked++)
                cr_assert(page_ok(pc_client_block(c, r.blocks[p]), t + p * P, p),
                          "sys %u question %u page %zu: wrong bytes in block %u",
                          s, q, p, r.blocks[p]);
        }
    cr_assert_gt(checked, 0);
    hd_statmap st;
    hd_stats_get(&d, &st);
    fprintf(stderr, "concurrent_engines: %zu cached pages checked; %" PRIu64
            " requests, %" PRIu64 " evictions for alloc, %" PRIu64 " duplicate pages\n",
            checked, hd_stat_req(&st, "rpc.requests"),
            hd_stat_req(&st, "cache.evictions_alloc"),
            hd_stat_req(&st, "tree.duplicate_pages"));
    cr_assert_eq(hd_stat_req(&st, HD_ST_RPC_ERRORS), 0);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- the daemon's own options ------------------------------------------------------------------- */

Test(e2e, daemon_help_version)
{
    hd_daemon d;
    hd_init(&d);
    hd_spawn(&d, false, (const char *const[]){"--version", NULL});
    cr_assert(hd_reap(&d, HD_START_MS));
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 0);
    cr_assert(hd_log_has(&d, 0, 0, "prefixcached", NULL));
    cr_assert(hd_log_has(&d, 0, 0, "cuda: ", NULL)); /* built or not */
    unlink(d.log_path);
    hd_spawn(&d, false, (const char *const[]){"--help", NULL});
    cr_assert(hd_reap(&d, HD_START_MS));
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 0);
    cr_assert(hd_log_has(&d, 0, 0, "lease_ttl_ms", NULL));
    cr_assert(hd_log_has(&d, 0, 0, "max_msg_bytes", NULL));
    hd_assert_clean_log(&d);
    hd_unlink_files(&d);
}

/* ---- limits on the message size, through the client -------------------------------------------- */

Test(e2e, msg_limits)
{
    hd_daemon d;
    hd_start(&d, "--max_msg_bytes=64KiB", "--max_tokens=100000", NULL);
    pc_client *c;
    cr_assert_eq(pc_client_connect(d.endpoint, 600, &c), 0);
    enum { N = 40000 }; /* 160 KB of tokens: beyond max_msg + 64 KiB */
    uint32_t *t = calloc(N, sizeof(*t));
    cr_assert(t);
    hd_prompt(t, N, 95);
    /* before hello the client does not know the limit: the daemon's libzmq
     * cuts the connection, the call times out ... */
    int64_t t0 = hd_now_ms();
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, N, 0, 0, NULL), PC_E_TIMEOUT);
    cr_assert_lt(hd_now_ms() - t0, 3000);
    /* ... and the client reconnects by itself */
    pc_client_set_timeout(c, HD_CALL_MS);
    RC_EQ(c, pc_client_ping(c), 0);
    /* after hello it refuses locally, at once */
    pc_hello h;
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.max_msg, 64 * 1024);
    cr_assert_eq(h.max_tokens, 100000);
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, N, 0, 0, NULL), PC_E_TOOBIG);
    /* a little over max_msg: the daemon answers TOOBIG */
    pc_client *raw;
    cr_assert_eq(pc_client_connect(d.endpoint, HD_CALL_MS, &raw), 0);
    RC_EQ(raw, pc_client_lookup(raw, NS, NSL, t, 17000, 0, 0, NULL), PC_E_TOOBIG);
    cr_assert_gt(strlen(pc_client_last_error(raw)), 0);
    pc_client_close(raw);
    /* within the limit: fine */
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 15000, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 0);
    free(t);
    GAUGES_ARE(&d, 0, CAP, 0, 0, 0, 0);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- a deep pipeline: every reply arrives ------------------------------------------------------- */

Test(e2e, pipelined_deep)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    uint32_t base[8], canon[2];
    hd_prompt(base, 8, 97);
    put_prompt(c, NS, NSL, base, 8, 97, canon);
    enum { N = 4096 };
    int64_t first = 0;
    for (int i = 0; i < N; i++) {
        int64_t id = pc_client_send_lookup(c, NS, NSL, base, (size_t)(i % 3) * 4, 0, 0);
        cr_assert_gt(id, 0, "send %d: %s", i, pc_client_last_error(c));
        if (i == 0)
            first = id;
    }
    static bool seen[N];
    memset(seen, 0, sizeof(seen));
    for (int k = 0; k < N; k++) {
        pc_client_reply rep;
        RC_EQ(c, pc_client_recv(c, &rep), 0);
        RC_EQ(c, rep.status, 0);
        int64_t i = (int64_t)rep.id - first;
        cr_assert(i >= 0 && i < N && !seen[i], "reply id %" PRIu64, rep.id);
        seen[i] = true;
        cr_assert_eq(rep.lookup.tokens, (size_t)(i % 3) * 4);
    }
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- a daemon restarted under a connected client ------------------------------------------------ */

Test(e2e, daemon_restart)
{
    hd_daemon a, b;
    hd_start(&a, NULL);
    pc_client *c;
    pc_hello h;
    client_open(&a, &c, &h);
    uint32_t t[8], canon[2];
    hd_prompt(t, 8, 98);
    put_prompt(c, NS, NSL, t, 8, 98, canon);
    uint64_t l = 0;
    uint32_t id;
    RC_EQ(c, pc_client_alloc(c, 1, &l, &id), 0);
    hd_stop(&a);

    /* the same endpoint, a new pool */
    hd_init(&b);
    char ep[200];
    snprintf(ep, sizeof(ep), "--endpoint=%s", a.endpoint);
    hd_spawn(&b, true, (const char *const[]){ep, NULL});
    snprintf(b.sock_path, sizeof(b.sock_path), "%s", a.sock_path);
    snprintf(b.endpoint, sizeof(b.endpoint), "%s", a.endpoint);
    snprintf(b.lock_path, sizeof(b.lock_path), "%s", a.lock_path);
    hd_wait_ready(&b);

    /* the old client carries on: the new daemon knows nothing of before,
     * and refuses what would hand it block ids of a pool it has not
     * mapped (protocol 1.3) until it says hello again */
    RC_EQ(c, pc_client_ping(c), 0);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 8, 0, 0, &r), PC_E_STALE);
    uint64_t l2 = 0;
    RC_EQ(c, pc_client_alloc(c, 1, &l2, &id), PC_E_STALE);
    RC_EQ(c, pc_client_release(c, l), PC_E_LEASE);
    RC_EQ(c, pc_client_hello(c, &h), 0); /* maps the new pool */
    cr_assert_str_eq(h.shm_name, b.shm_name);
    put_prompt(c, NS, NSL, t, 8, 98, canon);
    /* a fresh client reads what the old one wrote into the new pool */
    pc_client *c2;
    pc_hello h2;
    client_open(&b, &c2, &h2);
    RC_EQ(c2, pc_client_lookup(c2, NS, NSL, t, 8, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 8);
    for (size_t p = 0; p < 2; p++) {
        const uint8_t *blk = pc_client_block(c2, r.blocks[p]);
        for (size_t i = 0; i < BB; i++)
            cr_assert_eq(blk[i], kv_byte(98, p, i));
    }
    pc_client_close(c2);
    pc_client_close(c);
    hd_stop(&b);
}

/* ---- tcp:// ------------------------------------------------------------------------------------- */

Test(e2e, tcp_endpoint)
{
    /* port 0 in libzmq's notation: "*"; the daemon logs the real one */
    hd_daemon d;
    hd_init(&d);
    hd_spawn(&d, true, (const char *const[]){"--endpoint=tcp://127.0.0.1:*", NULL});
    char line[1024];
    const char *const n[] = {"listening on tcp://127.0.0.1:", NULL};
    bool up = hd_log_wait_line(&d, 0, HD_START_MS, line, sizeof(line), n);
    if (!up)
        hd_dump_log(&d, 4096);
    cr_assert(up, "no 'listening on tcp://' line");
    const char *p = strstr(line, "tcp://");
    char ep[128];
    snprintf(ep, sizeof(ep), "%.*s", (int)strcspn(p, " \n"), p);
    cr_assert(!strchr(ep, '*'), "the log shows the wildcard, not the port: %s", ep);
    pc_client *c;
    pc_hello h;
    cr_assert_eq(pc_client_connect(ep, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(h.capacity, CAP);
    uint32_t t[8], canon[2];
    hd_prompt(t, 8, 99);
    put_prompt(c, NS, NSL, t, 8, 99, canon);

    /* a second daemon on that port: refused */
    hd_daemon e;
    hd_init(&e);
    char arg[160];
    snprintf(arg, sizeof(arg), "--endpoint=%s", ep);
    hd_spawn(&e, true, (const char *const[]){arg, NULL});
    cr_assert(hd_reap(&e, HD_START_MS), "a second daemon on %s kept running", ep);
    cr_assert(WIFEXITED(e.status) && WEXITSTATUS(e.status) == 1, "status 0x%x",
              e.status);
    cr_assert(hd_log_has(&e, 0, 0, "in use", NULL), "no 'in use' message");
    cr_assert(!hd_exists(e.shm_path));
    hd_unlink_files(&e);
    RC_EQ(c, pc_client_ping(c), 0);
    pc_client_close(c);

    /* SIGTERM: exit 0, shm gone (no socket file for tcp) */
    cr_assert_eq(kill(d.pid, SIGTERM), 0);
    cr_assert(hd_reap(&d, HD_STOP_MS));
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 0);
    hd_assert_clean_log(&d);
    cr_assert(!hd_exists(d.shm_path));
    hd_unlink_files(&d);
}

/* ---- the index-only backend ---------------------------------------------------------------------- */

Test(e2e, backend_none)
{
    hd_daemon d;
    hd_start(&d, "--pool_backend=none", NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    cr_assert_str_eq(h.backend, "none");
    cr_assert_eq(h.shm_name[0], 0);
    cr_assert_eq(h.capacity, CAP);
    cr_assert(pc_client_block(c, 0) == NULL, "no memory behind a 'none' pool");
    cr_assert(!hd_exists(d.shm_path));
    pc_client_lookup_result r;
    uint32_t t[8];
    hd_prompt(t, 8, 110);
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 8, PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0,
                              &r), 0);
    cr_assert_eq(r.n_alloc, 2);
    uint32_t ids[2] = {r.alloc_blocks[0], r.alloc_blocks[1]}, canon[2];
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, 8, ids, r.lease, PC_CLIENT_RELEASE,
                              canon, NULL), 0);
    cr_assert_eq(matched(c, NS, NSL, t, 8), 8);
    GAUGES_ARE(&d, 2, CAP - 2, 0, 0, 0, 0);
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- a GPU pool, on the fake device ------------------------------------------------------------ */

/* Engine B or C of cuda_pool_fake, in its own process: hello imports the
 * pool, then every page of t[0..n) must hold seed's bytes (pages [0, had)
 * written by someone else, read through this import); pages [had, n/P)
 * are allocated and written here.  Exit status: 0, or the failed step. */
static int gpu_engine_child(const char *endpoint, const uint32_t *t, size_t n,
                            size_t had, uint32_t seed)
{
    pc_client *c;
    pc_hello h;
    int rc;
    if ((rc = pc_client_connect(endpoint, HD_CALL_MS, &c)))
        return child_fail(NULL, 20, rc);
    if ((rc = pc_client_hello(c, &h)))
        return child_fail(c, 21, rc);
    if (strcmp(h.backend, "cuda") || strcmp(h.device_ops, "fake"))
        return child_fail(c, 22, 0);
    pc_client_lookup_result r;
    if ((rc = pc_client_lookup(c, NS, NSL, t, n, PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                               0, &r)))
        return child_fail(c, 23, rc);
    if (r.tokens != had * P || r.alloc_status || r.pages + r.n_alloc != n / P)
        return child_fail(c, 24, 0);
    uint32_t ids[64];
    memcpy(ids, r.blocks, r.pages * sizeof(*ids));
    if (r.n_alloc)
        memcpy(ids + r.pages, r.alloc_blocks, r.n_alloc * sizeof(*ids));
    for (size_t p = 0; p < n / P; p++) {
        uint8_t *b = pc_client_block(c, ids[p]);
        if (!b)
            return child_fail(c, 25, 0);
        for (size_t i = 0; i < BB; i++) {
            if (p >= had)
                b[i] = kv_byte(seed, p, i);
            else if (b[i] != kv_byte(seed, p, i))
                return child_fail(c, 26, 0); /* another process's bytes */
        }
    }
    if ((rc = pc_client_insert(c, NS, NSL, t, n, ids, r.lease, PC_CLIENT_RELEASE,
                               NULL, NULL)))
        return child_fail(c, 27, rc);
    pc_client_close(c);
    return 0;
}

/* A client whose fake device is "another GPU" (another seed, so another
 * UUID): hello fills the layout in, then refuses with PC_E_PERM. */
static int gpu_stranger_child(const char *endpoint)
{
    pc_client *c;
    pc_hello h;
    int rc;
    if ((rc = pc_gpu_fake_configure(0x5eed0f07a11e2ull, 1)))
        return child_fail(NULL, 30, rc);
    if ((rc = pc_client_connect(endpoint, HD_CALL_MS, &c)))
        return child_fail(NULL, 31, rc);
    if ((rc = pc_client_hello(c, &h)) != PC_E_PERM)
        return child_fail(c, 32, rc);
    if (strcmp(h.backend, "cuda") || h.block_bytes != BB || h.capacity != CAP)
        return child_fail(c, 33, 0); /* the layout is still filled in */
    if (!strstr(pc_client_last_error(c), "not one of this process's"))
        return child_fail(c, 34, 0);
    if (pc_client_block(c, 0) != NULL)
        return child_fail(c, 35, 0);
    pc_client_close(c);
    return 0;
}

/* The file mapped at addr in this process (/proc/self/maps): the shm
 * object behind an imported fake allocation (pc_gpu_fake_shm_name knows
 * only the allocations of the process that made them: the daemon's). */
static void mapped_file(const void *addr, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    char line[512];
    out[0] = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        int off = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) >= 2 &&
            off && lo == (unsigned long)(uintptr_t)addr) {
            line[strcspn(line, "\n")] = 0;
            snprintf(out, len, "%s", line + off);
            break;
        }
    }
    fclose(f);
    cr_assert(out[0], "nothing mapped at %p", addr);
}

Test(e2e, cuda_pool_fake)
{
    hd_daemon d;
    hd_start(&d, "--pool_backend=cuda", "--gpu_ops=fake", NULL);
    cr_assert(!hd_exists(d.shm_path), "a cuda pool makes no host pool");

    /* engine A (this process): what hello says, and the import */
    pc_client *c;
    pc_hello h;
    client_open(&d, &c, &h);
    cr_assert_str_eq(h.backend, "cuda");
    cr_assert_str_eq(h.device_ops, "fake");
    cr_assert_eq(h.shm_name[0], 0);
    cr_assert_eq(h.block_bytes, BB);
    cr_assert_eq(h.capacity, CAP);
    const pc_gpu_ops *fake = pc_gpu_ops_get("fake");
    cr_assert_not_null(fake);
    pc_gpu_uuid mine;
    cr_assert_eq(fake->device_uuid(0, &mine), 0);
    cr_assert_eq(memcmp(h.device_uuid, mine.b, sizeof(mine.b)), 0,
                 "the daemon's device is our fake device 0 (same seed)");
    pc_gpu_handle hd;
    memcpy(hd.b, h.ipc_handle, sizeof(hd.b));
    uint64_t bytes = 0;
    pc_gpu_uuid hu;
    cr_assert_eq(pc_gpu_handle_info(&hd, &bytes, &hu), 0, "128 bytes of a handle");
    cr_assert_geq(bytes, (uint64_t)CAP * BB);
    cr_assert_eq(memcmp(hu.b, mine.b, sizeof(mine.b)), 0);
    uint8_t *b0 = pc_client_block(c, 0);
    cr_assert_not_null(b0, "a device pointer per block");
    cr_assert_eq((uint8_t *)pc_client_block(c, CAP - 1) - b0, (ptrdiff_t)(CAP - 1) * BB);
    cr_assert_null(pc_client_block(c, CAP));
    char path[256];
    mapped_file(b0, path, sizeof(path));
    cr_assert(strncmp(path, "/dev/shm/", 9) == 0 && hd_exists(path),
              "%s: the fake device's allocation", path);

    /* A computes 2 pages into fresh blocks and inserts them */
    uint32_t t[24];
    hd_prompt(t, 24, 13);
    uint32_t canon[2];
    put_prompt(c, NS, NSL, t, 8, 13, canon);
    GAUGES_ARE(&d, 2, CAP - 2, 0, 0, 0, 0);
    /* hello again: the import is closed and reopened, the bytes stay */
    RC_EQ(c, pc_client_hello(c, &h), 0);
    cr_assert_eq(((uint8_t *)pc_client_block(c, canon[1]))[5], kv_byte(13, 1, 5));
    pc_client_close(c); /* no ZeroMQ thread of ours busy at fork */

    /* B (another process): reads A's 2 pages through its own import,
     * writes 2 more; C (a third): reads all 4, writes 2 more */
    hd_quiesce();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        _exit(gpu_engine_child(d.endpoint, t, 16, 2, 13));
    wait_child_ok(pid);
    GAUGES_ARE(&d, 4, CAP - 4, 0, 0, 0, 0);
    fflush(NULL);
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        _exit(gpu_engine_child(d.endpoint, t, 24, 4, 13));
    wait_child_ok(pid);
    GAUGES_ARE(&d, 6, CAP - 6, 0, 0, 0, 0);

    /* a client on another GPU: a clear error, no mapping */
    fflush(NULL);
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        _exit(gpu_stranger_child(d.endpoint));
    wait_child_ok(pid);

    /* A again: B's and C's bytes through A's (new) import */
    client_open(&d, &c, &h);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 24, 0, 0, &r), 0);
    cr_assert_eq(r.pages, 6);
    for (size_t p = 0; p < 6; p++) {
        const uint8_t *b = pc_client_block(c, r.blocks[p]);
        for (size_t i = 0; i < BB; i++)
            cr_assert_eq(b[i], kv_byte(13, p, i), "page %zu byte %zu", p, i);
    }
    pc_client_close(c);
    hd_stop(&d);
    cr_assert(!hd_exists(path), "%s left in /dev/shm", path);
}

static void start_fails(const char *const *extra, const char *needle);

/* A device the operations do not have stops the daemon with a message that
 * names it (the fake device has 1 device unless configured). */
Test(e2e, cuda_pool_no_such_device)
{
    start_fails((const char *const[]){"--pool_backend=cuda", "--gpu_ops=fake",
                                      "--gpu_device=7", NULL},
                "gpu_ops 'fake': device 7: no such device");
}

/* ---- endpoints without a file, and a file that is not ours ------------------------------------- */

Test(e2e, abstract_endpoint)
{
    hd_daemon d, e;
    hd_init(&d);
    char ep[128];
    snprintf(ep, sizeof(ep), "--endpoint=ipc://@pc-test-%ld-abstract", (long)getpid());
    hd_spawn(&d, true, (const char *const[]){ep, NULL});
    snprintf(d.endpoint, sizeof(d.endpoint), "%s", ep + strlen("--endpoint="));
    d.sock_path[0] = d.lock_path[0] = 0; /* no files */
    hd_wait_ready(&d);
    cr_assert(hd_ping(d.endpoint, HD_CALL_MS));
    /* a second daemon there: refused by bind */
    hd_init(&e);
    hd_spawn(&e, true, (const char *const[]){ep, NULL});
    cr_assert(hd_reap(&e, HD_START_MS));
    cr_assert(WIFEXITED(e.status) && WEXITSTATUS(e.status) == 1, "0x%x", e.status);
    cr_assert(hd_log_has(&e, 0, 0, "in use", NULL));
    cr_assert(!hd_exists(e.shm_path));
    hd_unlink_files(&e);
    cr_assert(hd_ping(d.endpoint, HD_CALL_MS));
    hd_stop(&d);
}

Test(e2e, endpoint_not_a_socket)
{
    /* a regular file where the socket would go: not replaced, not removed */
    hd_daemon d;
    hd_init(&d);
    hd_write_file(d.sock_path, "precious\n");
    hd_spawn(&d, true, (const char *const[]){NULL});
    cr_assert(hd_reap(&d, HD_START_MS));
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1, "0x%x", d.status);
    cr_assert(hd_log_has(&d, 0, 0, "not a socket", NULL), "no clear message");
    char *text = hd_read_file(d.sock_path, NULL);
    cr_assert_str_eq(text, "precious\n", "the daemon touched a file not its own");
    free(text);
    cr_assert(!hd_exists(d.lock_path), "lock file left behind");
    cr_assert(!hd_exists(d.shm_path), "shm left behind");
    hd_unlink_files(&d);

    /* a socket path beyond what a Unix socket holds */
    char ep[300] = "--endpoint=ipc:///tmp/";
    memset(ep + strlen(ep), 'x', 120);
    start_fails((const char *const[]){ep, NULL}, "107");
}

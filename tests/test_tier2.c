/*
 * tests/test_tier2.c - the second tier (cache/tier.c through cache/cache.h):
 * demotion on eviction, lookup's tier2_pages, promotion and its completion
 * (pc_cache_promote / pc_cache_poll / pc_cache_wait_fd), flush, and the
 * invariants that must hold while copies run.
 *
 * Both kinds of tier are driven: a memory-mapped file under a host pool
 * (the worker thread preads into the pool while the test goes on) and
 * page-locked host memory under a cuda pool on the fake device.
 *
 * Bytes are the point: like an engine, the tests write into every block
 * they are given a pattern derived from (namespace, the tokens of the
 * prefix through the page, the page index) before inserting it, and every
 * block a lookup returns must hold its page's pattern.  A demotion or a
 * promotion that copies the wrong slot, or a block handed out (and written
 * by its new owner) while a copy still writes into it or while a page
 * still names it, shows up as a wrong pattern.  Blocks allocated and never
 * inserted are filled with junk for the same reason.
 *
 * The property test replays from its seed: PC_TIER2_SEED=<seed>,
 * PC_TIER2_OPS=<ops per run> (each failure prints the run, seed and op).
 *
 * Cleanup: caches are registered and the suite's .fini destroys what a
 * failed test left (host pools: their shm names; the fake device frees its
 * own); the tier files live in a mkdtemp directory removed by .fini; on
 * a fatal signal, a crash guard removes it and unlinks the shm names.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/inspect.h"
#include "tests/harness/prng.h"
#include "tests/shm_guard.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define P 4u     /* page_tokens of every cache here */
#define MAXP 16u /* pages per prompt at most */
#define NS "model-a"

/* ---- cleanup --------------------------------------------------------------- */

static uint64_t g_now = 1000000; /* the fake clock: leases expire only when told */
static uint64_t fake_clock(void *ctx) { return *(const uint64_t *)ctx; }

static pc_cache *g_caches[8];
static char g_dir[64];        /* the tier files' directory */
static char g_named[128];     /* a named tier file a test creates */

static void track(pc_cache *c)
{
    for (size_t i = 0; i < NELEM(g_caches); i++)
        if (!g_caches[i]) {
            g_caches[i] = c;
            name_add(pc_cache_pool(c));
            return;
        }
    cr_assert_fail("too many caches in one test");
}

static void cache_del(pc_cache *c)
{
    for (size_t i = 0; i < NELEM(g_caches); i++)
        if (g_caches[i] == c)
            g_caches[i] = NULL;
    if (c)
        name_del(pc_cache_pool(c));
    pc_cache_destroy(c);
}

/* A fatal signal skips .fini: remove the directory (and a named tier
 * file) first, then hand over to shm_guard.h's handler, which unlinks the
 * pools' names and restores what was there before. */
static struct sigaction g_prev[SHM_GUARD_NELEM(g_fatal)];

static void on_fatal_dir(int sig)
{
    if (getpid() == g_owner) {
        if (g_named[0])
            unlink(g_named);
        if (g_dir[0])
            rmdir(g_dir);
    }
    for (size_t i = 0; i < SHM_GUARD_NELEM(g_fatal); i++)
        if (g_fatal[i] == sig) {
            sigaction(sig, &g_prev[i], NULL);
            if (!(g_prev[i].sa_flags & SA_SIGINFO) &&
                g_prev[i].sa_handler != SIG_DFL &&
                g_prev[i].sa_handler != SIG_IGN)
                g_prev[i].sa_handler(sig);
        }
}

static void setup(void)
{
    crash_guard();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_dir;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < SHM_GUARD_NELEM(g_fatal); i++)
        sigaction(g_fatal[i], &sa, &g_prev[i]);
    snprintf(g_dir, sizeof(g_dir), "/tmp/pctest-tier2-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
    g_named[0] = 0;
}

static void cleanup(void)
{
    for (size_t i = 0; i < NELEM(g_caches); i++) {
        pc_cache_destroy(g_caches[i]);
        g_caches[i] = NULL;
    }
    name_clear();
    if (g_named[0])
        unlink(g_named); /* normally gone with its cache already */
    if (g_dir[0] && rmdir(g_dir) != 0)
        fprintf(stderr, "test_tier2: rmdir %s: %s\n", g_dir, strerror(errno));
}

TestSuite(tier2, .init = setup, .fini = cleanup);

/* ---- configuration --------------------------------------------------------- */

static int g_shm_seq;

/* A cache of `cap` blocks of 4 KiB (2 layers x 2 heads x 64 dims x P
 * tokens, fp16) with a tier of `tier_blocks` blocks (0: none) in g_dir;
 * the tier's bytes are not a whole number of blocks (it rounds down). */
static pc_cache_config tcfg(uint32_t cap, pc_pool_backend be,
                            uint32_t tier_blocks, uint32_t delay_us)
{
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    int rc = pc_pool_layout_init(&cfg.pool.layout, 2, 2, 64, P, PC_DTYPE_FP16);
    cr_assert_eq(rc, 0);
    cfg.pool.backend = be;
    cfg.pool.capacity_blocks = cap;
    if (be == PC_POOL_HOST) {
        static char name[8][64];
        char *n = name[g_shm_seq % 8];
        snprintf(n, sizeof(name[0]), "/pctest-tier2-%ld-%d", (long)getpid(),
                 g_shm_seq++);
        cfg.pool.shm_name = n;
    }
    if (be == PC_POOL_CUDA)
        cfg.gpu_ops = "fake";
    uint64_t bb = cfg.pool.layout.block_bytes;
    cfg.tier2_bytes = tier_blocks ? tier_blocks * bb + bb / 2 : 0;
    cfg.tier2_path = g_dir;
    cfg.tier2_read_delay_us = delay_us;
    cfg.clock = fake_clock;
    cfg.clock_ctx = &g_now;
    return cfg;
}

#define CHECK_AT(c, line)                                                      \
    do {                                                                       \
        int check_rc_ = pc_cache_check(c);                                     \
        cr_assert_eq(check_rc_, 0, "pc_cache_check() = %s after line %d",     \
                     pc_errname(check_rc_), (line));                           \
    } while (0)
#define CHECK(c) CHECK_AT(c, __LINE__)

#define RC_EQ(expr, want)                                                      \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        cr_assert_eq(rc_, (want), "line %d: %s = %s, want %s", __LINE__,       \
                     #expr, pc_errname(rc_), pc_errname(want));                \
    } while (0)

static pc_cache *mk_at(int line, const pc_cache_config *cfg)
{
    pc_cache *c = NULL;
    int rc = pc_cache_create(cfg, &c);
    cr_assert_eq(rc, 0, "line %d: pc_cache_create = %s (%s)", line,
                 pc_errname(rc), pc_cache_create_why());
    track(c);
    CHECK_AT(c, line);
    return c;
}
#define mk(cfg) mk_at(__LINE__, (cfg))

static pc_cache *mk_tier(uint32_t cap, pc_pool_backend be, uint32_t tier_blocks,
                         uint32_t delay_us)
{
    pc_cache_config cfg = tcfg(cap, be, tier_blocks, delay_us);
    return mk(&cfg);
}

/* ---- stats ----------------------------------------------------------------- */

typedef struct statq {
    const char *name;
    uint64_t v;
    bool found;
} statq;

static void stat_cb(void *ctx, const char *name, uint64_t v)
{
    statq *q = ctx;
    if (strcmp(name, q->name) == 0) {
        q->v = v;
        q->found = true;
    }
}

static uint64_t tstat(const pc_cache *c, const char *name)
{
    statq q = {name, 0, false};
    pc_cache_stats_visit(c, stat_cb, &q);
    cr_assert(q.found, "no stat %s", name);
    return q.v;
}

static pc_pool_stats pstats(const pc_cache *c)
{
    pc_cache_stats s;
    pc_cache_stats_get(c, &s);
    return s.pool;
}

/* Nothing held: no LEASED block, no busy slot, no promotion, check clean. */
static void quiet_at(int line, const pc_cache *c)
{
    pc_pool_stats ps = pstats(c);
    cr_assert_eq(ps.leased, 0, "line %d: %" PRIu64 " blocks still leased", line,
                 ps.leased);
    cr_assert_eq(ps.free + ps.cached, ps.capacity, "line %d", line);
    cr_assert_eq(tstat(c, "tier2.busy_pages"), 0, "line %d: busy slots", line);
    cr_assert_eq(tstat(c, "tier2.promotions_inflight"), 0, "line %d", line);
    CHECK_AT(c, line);
}
#define QUIET(c) quiet_at(__LINE__, (c))

/* ---- the engine's bytes ------------------------------------------------------ */

static uint64_t mix64(uint64_t h, uint64_t v)
{
    h ^= v + UINT64_C(0x9e3779b97f4a7c15) + (h << 6) + (h >> 2);
    return h * UINT64_C(0x100000001b3);
}

/* The seed of page `page` of a prompt: its namespace, every token through
 * the page, and the index. */
static uint64_t page_seed(const char *ns, size_t ns_len, const uint32_t *tok,
                          size_t page)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < ns_len; i++)
        h = mix64(h, (uint8_t)ns[i]);
    h = mix64(h, ns_len);
    for (size_t i = 0; i < (page + 1) * P; i++)
        h = mix64(h, tok[i]);
    return mix64(h, page);
}

static size_t bbytes(const pc_cache *c)
{
    return (size_t)pc_pool_layout_get(pc_cache_pool(c))->block_bytes;
}

static uint64_t *bptr(const pc_cache *c, uint32_t id)
{
    uint64_t *p = pc_pool_block_ptr(pc_cache_pool(c), id);
    cr_assert_not_null(p, "block %u has no memory", id);
    return p;
}

static void fill(const pc_cache *c, uint32_t id, uint64_t seed)
{
    uint64_t *p = bptr(c, id), s = seed;
    for (size_t i = 0; i < bbytes(c) / 8; i++)
        p[i] = test_rng_next(&s);
}

/* -1 when block id holds the pattern of seed, else the first bad word. */
static long bad_word(const pc_cache *c, uint32_t id, uint64_t seed)
{
    const uint64_t *p = bptr(c, id);
    uint64_t s = seed;
    for (size_t i = 0; i < bbytes(c) / 8; i++)
        if (p[i] != test_rng_next(&s))
            return (long)i;
    return -1;
}

/* Every block of blocks[0..pages) holds its page's pattern. */
static void bytes_ok_at(int line, const pc_cache *c, const char *ns,
                        const uint32_t *tok, const uint32_t *blocks,
                        size_t pages)
{
    for (size_t i = 0; i < pages; i++) {
        long w = bad_word(c, blocks[i], page_seed(ns, strlen(ns), tok, i));
        cr_assert_eq(w, -1, "line %d: page %zu (block %u): word %ld is not "
                     "its pattern", line, i, blocks[i], w);
    }
}
#define BYTES_OK(c, ns, tok, blocks, pages)                                    \
    bytes_ok_at(__LINE__, (c), (ns), (tok), (blocks), (pages))

static void prompt_fill(uint32_t *tok, size_t n, uint32_t first)
{
    for (size_t i = 0; i < n; i++)
        tok[i] = first + (uint32_t)i;
}

/* ---- the engine's calls --------------------------------------------------------- */

/* lookup without pin (must succeed); checks the bytes of what matched */
static pc_lookup_result lk_at(int line, pc_cache *c, const char *ns,
                              const uint32_t *tok, size_t n, uint32_t *blocks)
{
    pc_lookup_result r;
    uint32_t own[MAXP];
    if (!blocks)
        blocks = own;
    cr_assert_leq(n / P, MAXP);
    int rc = pc_cache_lookup(c, ns, strlen(ns), tok, n, 0, 0, blocks, &r);
    cr_assert_eq(rc, 0, "line %d: lookup = %s", line, pc_errname(rc));
    CHECK_AT(c, line);
    cr_assert_eq(r.tokens, r.pages * P, "line %d", line);
    cr_assert_leq(r.pages + r.tier2_pages, n / P, "line %d", line);
    bytes_ok_at(line, c, ns, tok, blocks, r.pages);
    return r;
}
#define lk(c, ns, tok, n, blocks) lk_at(__LINE__, (c), (ns), (tok), (n), (blocks))

/* The engine's flow: lookup_alloc with pin, write the new pages, insert,
 * release.  canon (when not NULL) gets the canonical ids. */
static void put_at(int line, pc_cache *c, const char *ns, const uint32_t *tok,
                   size_t n, uint32_t *canon)
{
    uint32_t blocks[MAXP], fresh[MAXP], ids[MAXP], cn[MAXP];
    size_t np = n / P, ns_len = strlen(ns);
    cr_assert_leq(np, MAXP);
    pc_lookup_result r;
    int rc = pc_cache_lookup_alloc(c, ns, ns_len, tok, n, 1, 0, blocks, fresh,
                                   &r);
    cr_assert_eq(rc, 0, "line %d: lookup_alloc = %s", line, pc_errname(rc));
    cr_assert_eq(r.alloc_status, 0, "line %d: alloc = %s (%s)", line,
                 pc_errname(r.alloc_status), pc_cache_why(c));
    CHECK_AT(c, line);
    bytes_ok_at(line, c, ns, tok, blocks, r.pages);
    memcpy(ids, blocks, r.pages * sizeof(*ids));
    for (size_t i = 0; i < r.alloc_n; i++) {
        fill(c, fresh[i], page_seed(ns, ns_len, tok, r.pages + i));
        ids[r.pages + i] = fresh[i];
    }
    pc_insert_result ir;
    rc = pc_cache_insert(c, ns, ns_len, tok, n, ids, r.lease, cn, &ir);
    cr_assert_eq(rc, 0, "line %d: insert = %s", line, pc_errname(rc));
    CHECK_AT(c, line);
    bytes_ok_at(line, c, ns, tok, cn, np);
    if (r.lease)
        cr_assert_eq(pc_cache_release(c, r.lease), 0, "line %d", line);
    CHECK_AT(c, line);
    if (canon)
        memcpy(canon, cn, np * sizeof(*cn));
}
#define put(c, ns, tok, n, canon) put_at(__LINE__, (c), (ns), (tok), (n), (canon))

/* Make the pool evict k unpinned pages (LRU) into tier 2: take every free
 * block and k more, fill them with junk, give them back. */
static void squeeze_at(int line, pc_cache *c, uint32_t k)
{
    pc_pool_stats ps = pstats(c);
    uint32_t n = (uint32_t)ps.free + k, *ids = calloc(n ? n : 1, sizeof(*ids));
    uint64_t lease = 0;
    cr_assert_not_null(ids);
    int rc = pc_cache_alloc(c, n, &lease, ids);
    cr_assert_eq(rc, 0, "line %d: alloc(%u) = %s (%s)", line, n,
                 pc_errname(rc), pc_cache_why(c));
    CHECK_AT(c, line);
    for (uint32_t i = 0; i < n; i++)
        fill(c, ids[i], UINT64_C(0xbad0000) + ids[i]);
    free(ids);
    cr_assert_eq(pc_cache_release(c, lease), 0, "line %d", line);
    CHECK_AT(c, line);
}
#define squeeze(c, k) squeeze_at(__LINE__, (c), (k))

static uint64_t promote_at(int line, pc_cache *c, const char *ns,
                           const uint32_t *tok, size_t n)
{
    uint64_t job = UINT64_MAX;
    int rc = pc_cache_promote(c, ns, strlen(ns), tok, n, &job, NULL);
    cr_assert_eq(rc, 0, "line %d: promote = %s (%s)", line, pc_errname(rc),
                 pc_cache_why(c));
    CHECK_AT(c, line);
    return job;
}
#define promote(c, ns, tok, n) promote_at(__LINE__, (c), (ns), (tok), (n))

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Block until the cache's wait fd is readable (or `ms` pass); a device
 * tier has none: a millisecond's nap, as its next deadline says. */
static void wait_a_bit(const pc_cache *c, int ms)
{
    int fd = pc_cache_wait_fd(c);
    if (fd >= 0) {
        struct pollfd pf = {fd, POLLIN, 0};
        (void)poll(&pf, 1, ms);
    } else {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Poll until job is reported (each poll's ids are distinct and known). */
static void wait_job_at(int line, pc_cache *c, uint64_t job)
{
    uint64_t t0 = ms_now();
    for (;;) {
        uint64_t done[8];
        size_t n = pc_cache_poll(c, done, NELEM(done));
        CHECK_AT(c, line);
        for (size_t i = 0; i < n; i++)
            if (done[i] == job)
                return;
        cr_assert_lt(ms_now() - t0, 20000, "line %d: promotion %" PRIu64
                     " never reported", line, job);
        wait_a_bit(c, 100);
    }
}
#define wait_job(c, job) wait_job_at(__LINE__, (c), (job))

/* ---- 1. demotion and promotion keep the bytes ------------------------------------ */

#define NPROMPTS 6

/* Six prompts of four pages through an 8-block pool: the four oldest go
 * to tier 2 whole; each comes back by promotion with its bytes, evicting
 * (and so demoting) others, until every one has made the round trip. */
static void round_trip_on(pc_pool_backend be)
{
    pc_cache *c = mk_tier(8, be, 32, 0);
    pc_cache_desc d;
    pc_cache_describe(c, &d);
    cr_assert_str_eq(d.tier2, be == PC_POOL_HOST ? "file" : "host");
    cr_assert_eq(d.tier2_pages, 32);
    cr_assert_eq(pc_cache_wait_fd(c) >= 0, be == PC_POOL_HOST);
    uint32_t tok[NPROMPTS][4 * P];
    for (int i = 0; i < NPROMPTS; i++) {
        prompt_fill(tok[i], 4 * P, 1000u * (uint32_t)(i + 1));
        put(c, NS, tok[i], 4 * P, NULL);
    }
    cr_assert_eq(tstat(c, "tier2.pages"), 16);
    cr_assert_eq(tstat(c, "tier2.demoted_pages"), 16);
    for (int i = 0; i < NPROMPTS; i++) {
        pc_lookup_result r = lk(c, NS, tok[i], 4 * P, NULL);
        cr_assert_eq(r.pages, i < 4 ? 0 : 4, "prompt %d", i);
        cr_assert_eq(r.tier2_pages, i < 4 ? 4 : 0, "prompt %d", i);
    }
    /* every prompt, twice round: promote, look up, check the bytes */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < NPROMPTS; i++) {
            pc_lookup_result r = lk(c, NS, tok[i], 4 * P, NULL);
            if (r.pages < 4) {
                cr_assert_eq(r.pages + r.tier2_pages, 4, "prompt %d", i);
                uint64_t job = promote(c, NS, tok[i], 4 * P);
                cr_assert_neq(job, 0, "prompt %d", i);
                wait_job(c, job);
            }
            uint32_t blocks[4];
            r = lk(c, NS, tok[i], 4 * P, blocks);
            cr_assert_eq(r.pages, 4, "round %d prompt %d", round, i);
            cr_assert_eq(r.tier2_pages, 0);
            /* nothing more to bring back */
            cr_assert_eq(promote(c, NS, tok[i], 4 * P), 0);
            QUIET(c);
        }
    cr_assert_geq(tstat(c, "tier2.promoted_pages"), 16);
    cr_assert_eq(tstat(c, "tier2.promote_failed_pages"), 0);
    cr_assert_eq(tstat(c, "tier2.bytes_promoted"),
                 tstat(c, "tier2.promoted_pages") * bbytes(c));
    cache_del(c);
}

Test(tier2, round_trip_file_tier) { round_trip_on(PC_POOL_HOST); }
Test(tier2, round_trip_device_tier) { round_trip_on(PC_POOL_CUDA); }

/* A prompt whose first pages stay in the pool and whose last ones went to
 * tier 2: the promotion brings back only the tail, under the cached head
 * (which it pins: squeezing the pool meanwhile cannot take it). */
static void tail_on(pc_pool_backend be)
{
    pc_cache *c = mk_tier(8, be, 32, 0);
    uint32_t tok[6 * P + 2], canon[6];
    prompt_fill(tok, NELEM(tok), 7);
    put(c, NS, tok, NELEM(tok), canon);
    squeeze(c, 3); /* pages 3, 4, 5 */
    pc_lookup_result r = lk(c, NS, tok, NELEM(tok), NULL);
    cr_assert_eq(r.pages, 3);
    cr_assert_eq(r.tier2_pages, 3);
    cr_assert_eq(tstat(c, "tier2.pages"), 3);
    uint64_t job = promote(c, NS, tok, NELEM(tok));
    cr_assert_neq(job, 0);
    /* done or not (the fake device copies at once), nothing is visible
     * before poll reports it, and a second promote joins */
    r = lk(c, NS, tok, NELEM(tok), NULL);
    cr_assert_eq(r.pages, 3);
    cr_assert_eq(r.tier2_pages, 3);
    cr_assert_eq(promote(c, NS, tok, NELEM(tok)), job);
    if (be == PC_POOL_HOST) { /* the worker wakes the loop's poll(2) */
        struct pollfd pf = {pc_cache_wait_fd(c), POLLIN, 0};
        cr_assert_eq(poll(&pf, 1, 10000), 1, "the wait fd never woke");
    } else { /* nothing to wait on: the loop must come back in 1 ms */
        cr_assert_eq(pc_cache_next_deadline_ms(c), 1);
    }
    wait_job(c, job);
    cr_assert_eq(pc_cache_next_deadline_ms(c), UINT64_MAX);
    uint32_t blocks[6];
    r = lk(c, NS, tok, NELEM(tok), blocks);
    cr_assert_eq(r.pages, 6);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(blocks[i], canon[i], "the head kept its blocks");
    QUIET(c);
    /* a shorter prompt of the same prefix: nothing to promote */
    cr_assert_eq(promote(c, NS, tok, 2 * P), 0);
    /* another namespace with the same tokens has nothing in tier 2 */
    r = lk(c, "model-b", tok, NELEM(tok), NULL);
    cr_assert_eq(r.pages + r.tier2_pages, 0);
    cr_assert_eq(promote(c, "model-b", tok, NELEM(tok)), 0);
    cache_del(c);
}

Test(tier2, promote_tail_file_tier) { tail_on(PC_POOL_HOST); }
Test(tier2, promote_tail_device_tier) { tail_on(PC_POOL_CUDA); }

/* A run longer than the pool can take now: the promotion brings what
 * fits, the next call says NOSPACE while nothing more can be evicted, and
 * brings the rest once it can. */
static void partial_on(pc_pool_backend be)
{
    pc_cache *c = mk_tier(8, be, 32, 0);
    uint32_t a[6 * P], b[4 * P], blocks[6];
    prompt_fill(a, NELEM(a), 10);
    prompt_fill(b, NELEM(b), 5000);
    put(c, NS, a, NELEM(a), NULL);
    squeeze(c, 6);
    put(c, NS, b, NELEM(b), NULL);
    pc_lookup_result pin;
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), b, NELEM(b), 1, 0, blocks, &pin),
          0);
    cr_assert_eq(pin.pages, 4);
    uint64_t job = promote(c, NS, a, NELEM(a));
    cr_assert_eq(pstats(c).leased, 4, "only the 4 free blocks");
    wait_job(c, job);
    pc_lookup_result r = lk(c, NS, a, NELEM(a), NULL);
    cr_assert_eq(r.pages, 4);
    cr_assert_eq(r.tier2_pages, 2);
    uint64_t j2 = 1;
    RC_EQ(pc_cache_promote(c, NS, strlen(NS), a, NELEM(a), &j2, NULL), PC_E_NOSPACE);
    cr_assert_eq(j2, 0);
    cr_assert(strstr(pc_cache_why(c), "no room to promote"), "%s",
              pc_cache_why(c));
    QUIET(c);
    RC_EQ(pc_cache_release(c, pin.lease), 0);
    job = promote(c, NS, a, NELEM(a));
    cr_assert_neq(job, 0);
    wait_job(c, job);
    cr_assert_eq(lk(c, NS, a, NELEM(a), NULL).pages, 6);
    r = lk(c, NS, b, NELEM(b), NULL); /* b's tail made the room */
    cr_assert_eq(r.pages, 2);
    cr_assert_eq(r.tier2_pages, 2);
    QUIET(c);
    cache_del(c);
}

Test(tier2, promote_partial_file_tier) { partial_on(PC_POOL_HOST); }
Test(tier2, promote_partial_device_tier) { partial_on(PC_POOL_CUDA); }

/* Watermark maintenance evicts through tier 2 as allocation does. */
Test(tier2, maintain_demotes)
{
    pc_cache_config cfg = tcfg(8, PC_POOL_HOST, 32, 0);
    cfg.low_watermark = 3;
    cfg.high_watermark = 5;
    pc_cache *c = mk(&cfg);
    uint32_t tok[6 * P];
    prompt_fill(tok, NELEM(tok), 77);
    put(c, NS, tok, NELEM(tok), NULL);
    cr_assert_eq(pc_cache_maintain(c), 3);
    CHECK(c);
    cr_assert_eq(tstat(c, "tier2.pages"), 3);
    pc_lookup_result r = lk(c, NS, tok, NELEM(tok), NULL);
    cr_assert_eq(r.pages, 3);
    cr_assert_eq(r.tier2_pages, 3);
    uint64_t job = promote(c, NS, tok, NELEM(tok));
    wait_job(c, job);
    cr_assert_eq(lk(c, NS, tok, NELEM(tok), NULL).pages, 6);
    QUIET(c);
}

/* tier2_path naming a file: created for the cache, removed with it, and
 * never shared (O_EXCL: a second cache on it fails with PC_E_IO). */
Test(tier2, named_file)
{
    snprintf(g_named, sizeof(g_named), "%s/tier2.bin", g_dir);
    pc_cache_config cfg = tcfg(8, PC_POOL_HOST, 4, 0);
    cfg.tier2_path = g_named;
    pc_cache *c = mk(&cfg);
    struct stat st;
    cr_assert_eq(stat(g_named, &st), 0, "%s", strerror(errno));
    cr_assert_geq((uint64_t)st.st_size, 4 * bbytes(c));
    pc_cache *c2 = NULL;
    pc_cache_config cfg2 = tcfg(8, PC_POOL_HOST, 4, 0);
    cfg2.tier2_path = g_named;
    RC_EQ(pc_cache_create(&cfg2, &c2), PC_E_IO);
    cr_assert_null(c2);
    cr_assert(strstr(pc_cache_create_why(), "tier2_path"), "%s",
              pc_cache_create_why());
    cr_assert_eq(shm_unlink(cfg2.pool.shm_name), -1, "the pool stayed");
    uint32_t tok[4 * P];
    prompt_fill(tok, NELEM(tok), 1);
    put(c, NS, tok, NELEM(tok), NULL);
    squeeze(c, 4);
    uint64_t job = promote(c, NS, tok, NELEM(tok));
    wait_job(c, job);
    cr_assert_eq(lk(c, NS, tok, NELEM(tok), NULL).pages, 4);
    cache_del(c);
    cr_assert_neq(stat(g_named, &st), 0, "%s is still there", g_named);
    /* no path: an unnamed file in /var/tmp (nothing to clean up) */
    cfg = tcfg(8, PC_POOL_HOST, 4, 0);
    cfg.tier2_path = NULL;
    c = mk(&cfg);
    pc_cache_desc d;
    pc_cache_describe(c, &d);
    cr_assert_str_eq(d.tier2, "file");
    put(c, NS, tok, NELEM(tok), NULL);
    squeeze(c, 4);
    wait_job(c, promote(c, NS, tok, NELEM(tok)));
    cr_assert_eq(lk(c, NS, tok, NELEM(tok), NULL).pages, 4);
}

/* A promotion whose read fails (the tier file cut short under it): its
 * blocks go back, its slots are forgotten, nothing is inserted, and the
 * tier works again once the file is whole. */
Test(tier2, failed_read)
{
    snprintf(g_named, sizeof(g_named), "%s/tier2.bin", g_dir);
    pc_cache_config cfg = tcfg(8, PC_POOL_HOST, 8, 0);
    cfg.tier2_path = g_named;
    pc_cache *c = mk(&cfg);
    struct stat st;
    cr_assert_eq(stat(g_named, &st), 0);
    uint32_t tok[4 * P];
    prompt_fill(tok, NELEM(tok), 31);
    put(c, NS, tok, NELEM(tok), NULL);
    squeeze(c, 4); /* all 8 blocks free again: the promotion evicts nothing */
    cr_assert_eq(truncate(g_named, 0), 0, "%s", strerror(errno));
    uint64_t job = promote(c, NS, tok, NELEM(tok));
    cr_assert_neq(job, 0);
    wait_job(c, job);
    cr_assert_eq(tstat(c, "tier2.promote_failed_pages"), 4);
    cr_assert_eq(tstat(c, "tier2.promoted_pages"), 0);
    cr_assert_eq(tstat(c, "tier2.pages"), 0, "failed slots are forgotten");
    pc_lookup_result r = lk(c, NS, tok, NELEM(tok), NULL);
    cr_assert_eq(r.pages, 0);
    cr_assert_eq(r.tier2_pages, 0);
    cr_assert_eq(promote(c, NS, tok, NELEM(tok)), 0);
    QUIET(c);
    cr_assert_eq(pstats(c).free, 8);
    /* whole again (a store into the cut mapping would be SIGBUS) */
    cr_assert_eq(truncate(g_named, st.st_size), 0, "%s", strerror(errno));
    put(c, NS, tok, NELEM(tok), NULL);
    squeeze(c, 4);
    job = promote(c, NS, tok, NELEM(tok));
    wait_job(c, job);
    cr_assert_eq(lk(c, NS, tok, NELEM(tok), NULL).pages, 4);
    QUIET(c);
}

/* ---- 2. a page on its way is not returned --------------------------------------- */

/* A slow promotion (20 ms a page): until poll reports it, lookups match
 * only the tier-1 prefix and still count the pages in tier 2, a second
 * promote joins the same job, and nothing it holds leaks into a lookup. */
Test(tier2, in_flight_pages_are_invisible)
{
    pc_cache *c = mk_tier(12, PC_POOL_HOST, 32, 20000);
    uint32_t tok[6 * P], canon[6];
    prompt_fill(tok, NELEM(tok), 500);
    put(c, NS, tok, NELEM(tok), canon);
    squeeze(c, 4); /* pages 2 .. 5 */
    pc_lookup_result r = lk(c, NS, tok, NELEM(tok), NULL);
    cr_assert_eq(r.pages, 2);
    cr_assert_eq(r.tier2_pages, 4);
    uint64_t job = promote(c, NS, tok, NELEM(tok));
    cr_assert_neq(job, 0);
    cr_assert_eq(tstat(c, "tier2.busy_pages"), 4);
    cr_assert_eq(tstat(c, "tier2.promotions_inflight"), 1);
    cr_assert_eq(pstats(c).leased, 4);
    /* pinned or not, the lookup stops at the tier-1 prefix */
    uint32_t blocks[6];
    r = lk(c, NS, tok, NELEM(tok), blocks);
    cr_assert_eq(r.pages, 2);
    cr_assert_eq(r.tokens, 2 * P);
    cr_assert_eq(r.tier2_pages, 4);
    pc_lookup_result rp;
    RC_EQ(pc_cache_lookup(c, NS, strlen(NS), tok, NELEM(tok), 1, 0, blocks,
                          &rp), 0);
    CHECK(c);
    cr_assert_eq(rp.pages, 2);
    cr_assert_eq(rp.tier2_pages, 4);
    BYTES_OK(c, NS, tok, blocks, 2);
    /* the same prompt, or a longer one, joins; a shorter one too */
    cr_assert_eq(promote(c, NS, tok, NELEM(tok)), job);
    cr_assert_eq(promote(c, NS, tok, 3 * P), job);
    cr_assert_eq(tstat(c, "tier2.promotions"), 1);
    /* the pool's pressure cannot take the promotion's blocks or its
     * pinned prefix: 12 - 4 (promotion) - 2 (prefix) = 6 */
    uint64_t l = 0;
    uint32_t ids[12];
    RC_EQ(pc_cache_alloc(c, 7, &l, ids), PC_E_NOSPACE);
    RC_EQ(pc_cache_alloc(c, 6, &l, ids), 0);
    CHECK(c);
    for (int i = 0; i < 6; i++)
        fill(c, ids[i], 0xfeed);
    RC_EQ(pc_cache_release(c, l), 0);
    RC_EQ(pc_cache_release(c, rp.lease), 0);
    /* still not reported? then still not visible */
    uint64_t done[4];
    size_t n = pc_cache_poll(c, done, NELEM(done));
    if (n == 0) {
        r = lk(c, NS, tok, NELEM(tok), NULL);
        cr_assert_eq(r.pages, 2);
    }
    else
        cr_assert(n == 1 && done[0] == job);
    if (n == 0)
        wait_job(c, job);
    r = lk(c, NS, tok, NELEM(tok), blocks);
    cr_assert_eq(r.pages, 6);
    cr_assert_eq(r.tier2_pages, 0);
    QUIET(c);
    cr_assert_eq(pc_cache_poll(c, done, NELEM(done)), 0);
}

/* While a slow promotion runs, an engine computes the same pages and
 * inserts them: the engine's pages stay, the promotion's copies are
 * duplicates that go back to the pool. */
Test(tier2, engine_inserts_while_promoting)
{
    pc_cache *c = mk_tier(12, PC_POOL_HOST, 32, 20000);
    uint32_t tok[6 * P], canon[6], mine[6];
    prompt_fill(tok, NELEM(tok), 900);
    put(c, NS, tok, NELEM(tok), canon);
    squeeze(c, 4);
    uint64_t job = promote(c, NS, tok, NELEM(tok));
    cr_assert_neq(job, 0);
    put(c, NS, tok, NELEM(tok), mine); /* head cached, tail computed */
    for (int i = 0; i < 2; i++)
        cr_assert_eq(mine[i], canon[i]);
    cr_assert_eq(pstats(c).cached, 6);
    cr_assert_eq(pstats(c).leased, 4);
    wait_job(c, job);
    uint32_t blocks[6];
    pc_lookup_result r = lk(c, NS, tok, NELEM(tok), blocks);
    cr_assert_eq(r.pages, 6);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(blocks[i], mine[i], "page %d", i);
    cr_assert_eq(pstats(c).cached, 6);
    QUIET(c);
}

/* A capped poll that leaves finished promotions behind must leave the
 * wait fd readable: an event loop polls only when it is. */
Test(tier2, capped_poll_keeps_the_fd_readable)
{
    pc_cache *c = mk_tier(16, PC_POOL_HOST, 32, 0);
    uint32_t a[2 * P], b[2 * P];
    prompt_fill(a, NELEM(a), 100);
    prompt_fill(b, NELEM(b), 200);
    put(c, NS, a, NELEM(a), NULL);
    put(c, NS, b, NELEM(b), NULL);
    squeeze(c, 4);
    uint64_t ja = promote(c, NS, a, NELEM(a)), jb = promote(c, NS, b, NELEM(b));
    cr_assert(ja && jb && ja != jb);
    int fd = pc_cache_wait_fd(c);
    cr_assert_geq(fd, 0);
    /* both copies (4 pages of 4 KiB, no delay) are done well within this */
    struct timespec ts = {0, 50 * 1000000};
    nanosleep(&ts, NULL);
    uint64_t done[2];
    cr_assert_eq(pc_cache_poll(c, done, 1), 1);
    CHECK(c);
    struct pollfd pf = {fd, POLLIN, 0};
    cr_assert_eq(poll(&pf, 1, 0), 1, "a finished promotion is left, but the "
                 "wait fd is not readable");
    cr_assert_eq(pc_cache_poll(c, done + 1, 1), 1);
    cr_assert(done[0] != done[1] && (done[0] == ja || done[0] == jb) &&
              (done[1] == ja || done[1] == jb));
    cr_assert_eq(lk(c, NS, a, NELEM(a), NULL).pages, 2);
    cr_assert_eq(lk(c, NS, b, NELEM(b), NULL).pages, 2);
    QUIET(c);
}

/* ---- 3. nobody waits: nothing leaks ---------------------------------------------- */

Test(tier2, abandoned_promotion_finishes_alone)
{
    pc_cache *c = mk_tier(8, PC_POOL_HOST, 32, 5000);
    uint32_t tok[4 * P];
    prompt_fill(tok, NELEM(tok), 42);
    put(c, NS, tok, NELEM(tok), NULL);
    squeeze(c, 4);
    uint64_t job = promote(c, NS, tok, NELEM(tok));
    cr_assert_neq(job, 0);
    /* the client's leases expire meanwhile: the promotion's does not */
    g_now += 10 * PC_CACHE_LEASE_TTL_MS_DEFAULT;
    pc_cache_expire(c);
    CHECK(c);
    cr_assert_eq(pstats(c).leased, 4);
    uint64_t t0 = ms_now();
    while (tstat(c, "tier2.promotions_inflight")) {
        uint64_t done[4];
        (void)pc_cache_poll(c, done, NELEM(done));
        CHECK(c);
        cr_assert_lt(ms_now() - t0, 20000);
        wait_a_bit(c, 100);
    }
    QUIET(c);
    pc_cache_stats s;
    pc_cache_stats_get(c, &s);
    cr_assert_eq(s.leases, 0);
    cr_assert_eq(s.pins, 0);
    cr_assert_eq(s.pool.cached, 4);
    cr_assert_eq(lk(c, NS, tok, NELEM(tok), NULL).pages, 4);
}

/* Destroying a cache while a slow promotion still reads (file tier), or
 * one nobody polled (device tier): no leak, no use after free (ASan). */
static void destroy_in_flight_on(pc_pool_backend be)
{
    pc_cache *c = mk_tier(8, be, 32, 20000);
    uint32_t tok[4 * P], other[4 * P];
    prompt_fill(tok, NELEM(tok), 42);
    prompt_fill(other, NELEM(other), 4242);
    put(c, NS, tok, NELEM(tok), NULL);
    put(c, NS, other, 2 * P, NULL);
    squeeze(c, 6);
    uint64_t l = 0;
    uint32_t ids[2];
    RC_EQ(pc_cache_alloc(c, 2, &l, ids), 0); /* a client lease, too */
    cr_assert_neq(promote(c, NS, tok, NELEM(tok)), 0);
    cr_assert_neq(promote(c, NS, other, 2 * P), 0);
    cache_del(c);
}

Test(tier2, destroy_in_flight_file_tier) { destroy_in_flight_on(PC_POOL_HOST); }
Test(tier2, destroy_in_flight_device_tier) { destroy_in_flight_on(PC_POOL_CUDA); }

/* ---- 4. flush ----------------------------------------------------------------------- */

static void flush_on(pc_pool_backend be)
{
    pc_cache *c = mk_tier(8, be, 32, 0);
    uint32_t tok[3][4 * P];
    for (int i = 0; i < 3; i++) {
        prompt_fill(tok[i], 4 * P, 100u * (uint32_t)(i + 1));
        put(c, "ns-a", tok[i], 4 * P, NULL);
        put(c, "ns-b", tok[i], 4 * P, NULL);
    }
    squeeze(c, 8); /* everything is in tier 2 now */
    cr_assert_eq(tstat(c, "tier2.pages"), 24);
    cr_assert_eq(pc_cache_flush_tier2(c, "ns-zz", 5, false), 0);
    cr_assert_eq(pc_cache_flush_tier2(c, "ns-a", 4, false), 12);
    CHECK(c);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(lk(c, "ns-a", tok[i], 4 * P, NULL).tier2_pages, 0);
        cr_assert_eq(lk(c, "ns-b", tok[i], 4 * P, NULL).tier2_pages, 4);
        cr_assert_eq(promote(c, "ns-a", tok[i], 4 * P), 0);
    }
    cr_assert_eq(pc_cache_flush_tier2(c, "ns-a", 4, false), 0);
    cr_assert_eq(pc_cache_flush_tier2(c, NULL, 0, true), 12);
    CHECK(c);
    cr_assert_eq(tstat(c, "tier2.pages"), 0);
    cr_assert_eq(tstat(c, "tier2.flushed_pages"), 24);
    cr_assert_eq(lk(c, "ns-b", tok[0], 4 * P, NULL).tier2_pages, 0);
    /* the empty namespace is a namespace like any other */
    put(c, "", tok[0], 4 * P, NULL);
    squeeze(c, 4);
    cr_assert_eq(pc_cache_flush_tier2(c, "ns-b", 4, false), 0);
    cr_assert_eq(pc_cache_flush_tier2(c, "", 0, false), 4);
    QUIET(c);
    cache_del(c);
}

Test(tier2, flush_file_tier) { flush_on(PC_POOL_HOST); }
Test(tier2, flush_device_tier) { flush_on(PC_POOL_CUDA); }

/* A flush leaves the slots a promotion reads; its pages arrive intact. */
Test(tier2, flush_spares_busy_slots)
{
    pc_cache *c = mk_tier(8, PC_POOL_HOST, 32, 20000);
    uint32_t a[4 * P], b[4 * P];
    prompt_fill(a, NELEM(a), 1);
    prompt_fill(b, NELEM(b), 1001);
    put(c, NS, a, NELEM(a), NULL);
    put(c, NS, b, NELEM(b), NULL);
    squeeze(c, 8);
    uint64_t job = promote(c, NS, a, NELEM(a));
    cr_assert_neq(job, 0);
    cr_assert_eq(pc_cache_flush_tier2(c, NULL, 0, true), 4); /* b's */
    CHECK(c);
    cr_assert_eq(pc_cache_flush_tier2(c, NS, strlen(NS), false), 0);
    cr_assert_eq(tstat(c, "tier2.pages"), 4);
    cr_assert_eq(tstat(c, "tier2.busy_pages"), 4);
    cr_assert_eq(lk(c, NS, a, NELEM(a), NULL).tier2_pages, 4);
    cr_assert_eq(lk(c, NS, b, NELEM(b), NULL).tier2_pages, 0);
    wait_job(c, job);
    cr_assert_eq(lk(c, NS, a, NELEM(a), NULL).pages, 4);
    QUIET(c);
    /* promoted pages stay in tier 2 too (a later eviction dedups) */
    cr_assert_eq(tstat(c, "tier2.pages"), 4);
    cr_assert_eq(pc_cache_flush_tier2(c, NULL, 0, true), 4);
    QUIET(c);
}

/* Bad arguments: nothing flushed, nothing promoted, no crash. */
Test(tier2, bad_arguments)
{
    pc_cache *c = mk_tier(8, PC_POOL_HOST, 8, 0);
    uint32_t tok[4 * P];
    prompt_fill(tok, NELEM(tok), 3);
    put(c, NS, tok, NELEM(tok), NULL);
    squeeze(c, 4);
    char big[PC_NS_MAX + 2];
    memset(big, 'n', sizeof(big));
    cr_assert_eq(pc_cache_flush_tier2(c, NULL, 4, false), 0);
    cr_assert_eq(pc_cache_flush_tier2(c, big, sizeof(big), false), 0);
    uint64_t job = 5;
    RC_EQ(pc_cache_promote(c, NULL, 4, tok, NELEM(tok), &job, NULL), PC_E_INVAL);
    RC_EQ(pc_cache_promote(c, big, sizeof(big), tok, NELEM(tok), &job, NULL),
          PC_E_INVAL);
    RC_EQ(pc_cache_promote(c, NS, strlen(NS), NULL, NELEM(tok), &job, NULL),
          PC_E_INVAL);
    RC_EQ(pc_cache_promote(c, NS, strlen(NS), tok, NELEM(tok), NULL, NULL),
          PC_E_INVAL);
    RC_EQ(pc_cache_promote(NULL, NS, strlen(NS), tok, NELEM(tok), &job, NULL),
          PC_E_INVAL);
    /* less than a page: nothing to do */
    RC_EQ(pc_cache_promote(c, NS, strlen(NS), tok, P - 1, &job, NULL), 0);
    cr_assert_eq(job, 0);
    uint64_t done[1];
    cr_assert_eq(pc_cache_poll(NULL, done, 1), 0);
    cr_assert_eq(pc_cache_poll(c, done, 0), 0);
    cr_assert_eq(pc_cache_wait_fd(NULL), -1);
    cr_assert_eq(pc_cache_flush_tier2(NULL, NULL, 0, true), 0);
    cr_assert_eq(tstat(c, "tier2.pages"), 4);
    QUIET(c);
}

/* ---- 6. no second tier ------------------------------------------------------------- */

Test(tier2, none)
{
    pc_cache *c = mk_tier(8, PC_POOL_HOST, 0, 0);
    uint32_t tok[4 * P];
    prompt_fill(tok, NELEM(tok), 3);
    put(c, NS, tok, NELEM(tok), NULL);
    squeeze(c, 4);
    pc_lookup_result r = lk(c, NS, tok, NELEM(tok), NULL);
    cr_assert_eq(r.pages, 0);
    cr_assert_eq(r.tier2_pages, 0);
    uint64_t job = 77;
    RC_EQ(pc_cache_promote(c, NS, strlen(NS), tok, NELEM(tok), &job, NULL), 0);
    cr_assert_eq(job, 0);
    uint64_t done[2];
    cr_assert_eq(pc_cache_poll(c, done, 2), 0);
    cr_assert_eq(pc_cache_wait_fd(c), -1);
    cr_assert_eq(pc_cache_flush_tier2(c, NULL, 0, true), 0);
    cr_assert_eq(tstat(c, "tier2.capacity_pages"), 0);
    pc_cache_desc d;
    pc_cache_describe(c, &d);
    cr_assert_null(d.tier2);
    /* bad arguments are still bad */
    RC_EQ(pc_cache_promote(c, NS, strlen(NS), tok, NELEM(tok), NULL, NULL),
          PC_E_INVAL);
    RC_EQ(pc_cache_promote(c, NS, strlen(NS), NULL, 4, &job, NULL), PC_E_INVAL);
    QUIET(c);
}

/* ---- 7. bad configurations ---------------------------------------------------------- */

Test(tier2, bad_config)
{
    pc_cache *c = NULL;
    pc_cache_config cfg = tcfg(8, PC_POOL_HOST, 1, 0);
    uint64_t bb = cfg.pool.layout.block_bytes;
    cfg.tier2_bytes = bb - 1;
    RC_EQ(pc_cache_create(&cfg, &c), PC_E_INVAL);
    cr_assert_null(c);
    cr_assert(strstr(pc_cache_create_why(), "tier2_bytes"), "why: '%s'",
              pc_cache_create_why());
    cr_assert_eq(shm_unlink(cfg.pool.shm_name), -1, "the pool stayed");

    cfg = tcfg(8, PC_POOL_CUDA, 1, 0);
    cfg.tier2_bytes = 1;
    RC_EQ(pc_cache_create(&cfg, &c), PC_E_INVAL);
    cr_assert(strstr(pc_cache_create_why(), "tier2_bytes"), "why: '%s'",
              pc_cache_create_why());

    cfg = tcfg(8, PC_POOL_NONE, 4, 0);
    RC_EQ(pc_cache_create(&cfg, &c), PC_E_INVAL);
    cr_assert_null(c);
    cr_assert(strstr(pc_cache_create_why(), "none"), "why: '%s'",
              pc_cache_create_why());

    cfg = tcfg(8, PC_POOL_HOST, 4, 0);
    cfg.tier2_path = "/nonexistent-pctest-dir/tier2.bin";
    RC_EQ(pc_cache_create(&cfg, &c), PC_E_IO);
    cr_assert(strstr(pc_cache_create_why(), "tier2_path"), "why: '%s'",
              pc_cache_create_why());
    cr_assert_eq(shm_unlink(cfg.pool.shm_name), -1, "the pool stayed");

    /* a good one clears the reason */
    cfg = tcfg(8, PC_POOL_HOST, 4, 0);
    mk(&cfg);
    cr_assert_str_eq(pc_cache_create_why(), "");
}

/* ---- 5. random traffic ------------------------------------------------------------- */

#define MAXKEEP 6  /* leases the model keeps (pins, allocations) */
#define MAXJOBS 64
#define NGROUPS 4
#define NVAR 4

static const struct {
    const char *s;
} NSS[] = {{"ns-a"}, {"ns-b"}, {""}};

typedef struct rprompt {
    int ns;
    size_t n;
    uint32_t tok[MAXP * P + 3];
} rprompt;

typedef struct kept {
    uint64_t lease;
    rprompt pr;      /* the pinned prompt (pages 0: none) */
    uint32_t pages;
    uint32_t blocks[MAXP];
    uint32_t nown;   /* blocks allocated and never inserted: junk */
    uint32_t own[MAXP];
} kept;

typedef struct prun {
    const char *name;
    pc_pool_backend be;
    uint32_t cap, tier;
    uint64_t low, high;
    pc_radix_policy policy;
    uint32_t delay_us; /* file tier: promotions stay in flight for ops */
    uint64_t seed;
} prun;

static uint64_t rs;
static uint32_t below(uint32_t n) { return (uint32_t)(test_rng_next(&rs) % n); }

/* Namespaces, groups of shared prefixes (branching after 1..3 pages),
 * variants, lengths of 1..10 pages and a ragged end. */
static void rand_prompt(rprompt *p)
{
    p->ns = (int)below(NELEM(NSS));
    uint32_t g = below(NGROUPS), v = below(NVAR), pages = 1 + below(10);
    uint32_t branch = (1 + g % 3) * P;
    p->n = pages * P + below(P);
    for (size_t i = 0; i < p->n; i++)
        p->tok[i] = i < branch ? 1 + g * 1000 + (uint32_t)i
                               : 100000 + g * 10000 + v * 1000 + (uint32_t)i;
}

static const char *pns(const rprompt *p) { return NSS[p->ns].s; }

typedef struct pstate {
    const prun *r;
    pc_cache *c;
    kept keep[MAXKEEP];
    int nkeep;
    uint64_t jobs[MAXJOBS]; /* outstanding promotions */
    rprompt jobp[MAXJOBS];  /* the prompt that started each */
    size_t jobm[MAXJOBS];   /* its pages cached then (pinned by it) */
    int njobs;
    long op;
    uint64_t hits, promoted, joined;
} pstate;

/* assert, naming the run, its seed and the op (at least one argument) */
#define PA(st, cond, fmt, ...)                                                 \
    cr_assert(cond, "run %s seed %#" PRIx64 " op %ld: " fmt, (st)->r->name,   \
              (st)->r->seed, (st)->op, __VA_ARGS__)

static void pcheck(pstate *st, const char *what)
{
    int rc = pc_cache_check(st->c);
    cr_assert_eq(rc, 0, "run %s seed %#" PRIx64 " op %ld: check after %s",
                 st->r->name, st->r->seed, st->op, what);
}

static void pbytes(pstate *st, const rprompt *p, const uint32_t *blocks,
                   size_t pages, const char *what)
{
    const char *ns = pns(p);
    for (size_t i = 0; i < pages; i++) {
        long w = bad_word(st->c, blocks[i], page_seed(ns, strlen(ns), p->tok, i));
        cr_assert_eq(w, -1, "run %s seed %#" PRIx64 " op %ld: %s: ns '%s' "
                     "page %zu block %u: word %ld is not its pattern",
                     st->r->name, st->r->seed, st->op, what, ns, i, blocks[i],
                     w);
    }
}

static void junk(pstate *st, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fill(st->c, ids[i], test_rng_next(&rs));
}

static kept *keep_slot(pstate *st)
{
    if (st->nkeep == MAXKEEP)
        return NULL;
    kept *k = &st->keep[st->nkeep++];
    memset(k, 0, sizeof(*k));
    return k;
}

static void drop_kept(pstate *st, int i)
{
    int rc = pc_cache_release(st->c, st->keep[i].lease);
    cr_assert_eq(rc, 0, "run %s op %ld: release = %s", st->r->name, st->op,
                 pc_errname(rc));
    st->keep[i] = st->keep[--st->nkeep];
}

/* lookup_alloc (pin), write, insert; keep the lease (and its pin) or not */
static void op_put(pstate *st)
{
    rprompt p;
    rand_prompt(&p);
    const char *ns = pns(&p);
    size_t np = p.n / P;
    uint32_t blocks[MAXP], fresh[MAXP], ids[MAXP], canon[MAXP];
    pc_lookup_result r;
    int rc = pc_cache_lookup_alloc(st->c, ns, strlen(ns), p.tok, p.n, 1, 0,
                                   blocks, fresh, &r);
    PA(st, rc == 0, "lookup_alloc = %s", pc_errname(rc));
    pcheck(st, "lookup_alloc");
    pbytes(st, &p, blocks, r.pages, "lookup_alloc hit");
    st->hits += r.pages;
    if (r.alloc_status) {
        PA(st, r.alloc_status == PC_E_NOSPACE, "alloc = %s",
           pc_errname(r.alloc_status));
        if (r.lease)
            cr_assert_eq(pc_cache_release(st->c, r.lease), 0);
        return;
    }
    memcpy(ids, blocks, r.pages * sizeof(*ids));
    for (size_t i = 0; i < r.alloc_n; i++) {
        fill(st->c, fresh[i], page_seed(ns, strlen(ns), p.tok, r.pages + i));
        ids[r.pages + i] = fresh[i];
    }
    pc_insert_result ir;
    bool pin = below(3) == 0;
    kept *k = pin && r.lease ? keep_slot(st) : NULL;
    rc = pc_cache_insert_pin(st->c, ns, strlen(ns), p.tok, p.n, ids, r.lease,
                             k != NULL, canon, &ir);
    PA(st, rc == 0, "insert = %s", pc_errname(rc));
    pcheck(st, "insert");
    PA(st, ir.cached_tokens == r.pages * P && ir.inserted_pages == r.alloc_n,
       "insert cached %zu tokens, inserted %zu pages after a match of %zu",
       ir.cached_tokens, ir.inserted_pages, r.pages);
    pbytes(st, &p, canon, np, "insert");
    if (k) {
        k->lease = r.lease;
        k->pr = p;
        k->pages = (uint32_t)np;
        memcpy(k->blocks, canon, np * sizeof(*canon));
    } else if (r.lease) {
        cr_assert_eq(pc_cache_release(st->c, r.lease), 0);
    }
}

static void op_lookup(pstate *st)
{
    rprompt p;
    rand_prompt(&p);
    const char *ns = pns(&p);
    uint32_t blocks[MAXP];
    kept *k = below(3) == 0 ? keep_slot(st) : NULL;
    pc_lookup_result r;
    int rc = pc_cache_lookup(st->c, ns, strlen(ns), p.tok, p.n, k != NULL, 0,
                             blocks, &r);
    PA(st, rc == 0, "lookup = %s", pc_errname(rc));
    pcheck(st, "lookup");
    PA(st, r.pages + r.tier2_pages <= p.n / P, "lookup: %zu + %zu pages",
       r.pages, r.tier2_pages);
    pbytes(st, &p, blocks, r.pages, "lookup hit");
    st->hits += r.pages;
    if (k) {
        if (!r.lease) { /* nothing matched: no lease */
            PA(st, r.pages == 0, "%zu pages pinned without a lease", r.pages);
            st->nkeep--;
            return;
        }
        k->lease = r.lease;
        k->pr = p;
        k->pages = (uint32_t)r.pages;
        memcpy(k->blocks, blocks, r.pages * sizeof(*blocks));
    }
}

static void op_alloc(pstate *st)
{
    kept *k = keep_slot(st);
    uint32_t n = 1 + below(st->r->cap / 2), ids[MAXP * 4];
    if (n > MAXP)
        n = MAXP;
    uint64_t lease = 0;
    int rc = pc_cache_alloc(st->c, n, &lease, ids);
    pcheck(st, "alloc");
    if (rc) {
        PA(st, rc == PC_E_NOSPACE, "alloc = %s", pc_errname(rc));
        if (k)
            st->nkeep--;
        return;
    }
    junk(st, ids, n); /* an engine writes what it was given */
    if (k) {
        k->lease = lease;
        k->nown = n;
        memcpy(k->own, ids, n * sizeof(*ids));
    } else {
        cr_assert_eq(pc_cache_release(st->c, lease), 0);
    }
}

static void op_promote(pstate *st)
{
    rprompt p;
    rand_prompt(&p);
    const char *ns = pns(&p);
    uint32_t blocks[MAXP];
    pc_lookup_result r0, r;
    int rc = pc_cache_lookup(st->c, ns, strlen(ns), p.tok, p.n, 0, 0, blocks,
                             &r0);
    PA(st, rc == 0, "lookup = %s", pc_errname(rc));
    pbytes(st, &p, blocks, r0.pages, "lookup before promote");
    uint64_t job = UINT64_MAX;
    rc = pc_cache_promote(st->c, ns, strlen(ns), p.tok, p.n, &job, NULL);
    pcheck(st, "promote");
    if (rc) {
        PA(st, rc == PC_E_NOSPACE && r0.tier2_pages > 0, "promote = %s (%s)",
           pc_errname(rc), pc_cache_why(st->c));
        return;
    }
    /* what lookup counts in tier 2 is what promote brings (or joins) */
    PA(st, (job == 0) == (r0.tier2_pages == 0), "promote's job %" PRIu64
       " after a lookup of %zu tier-2 pages", job, r0.tier2_pages);
    if (!job)
        return;
    for (int i = 0; i < st->njobs; i++)
        if (st->jobs[i] == job) { /* joined one already bringing page m */
            st->joined++;
            return;
        }
    PA(st, st->njobs < MAXJOBS, "%d promotions", st->njobs);
    /* a new one: the pages on their way are not visible yet, but counted;
     * the prefix it pinned is all still there */
    rc = pc_cache_lookup(st->c, ns, strlen(ns), p.tok, p.n, 0, 0, blocks, &r);
    PA(st, rc == 0, "lookup = %s", pc_errname(rc));
    pbytes(st, &p, blocks, r.pages, "lookup after promote");
    PA(st, r.pages == r0.pages && r.tier2_pages > 0 &&
       r.tier2_pages <= r0.tier2_pages, "promotion %" PRIu64 " started "
       "after a lookup of %zu + %zu pages, but lookup now says %zu + %zu",
       job, r0.pages, r0.tier2_pages, r.pages, r.tier2_pages);
    st->jobs[st->njobs] = job;
    st->jobm[st->njobs] = r.pages;
    st->jobp[st->njobs++] = p;
}

/* Finish promotions; look each one's prompt up at once: more of it is
 * cached than when it started, every page with its bytes. */
static void op_poll(pstate *st, size_t cap)
{
    uint64_t done[MAXJOBS];
    size_t n = pc_cache_poll(st->c, done, cap);
    pcheck(st, "poll");
    PA(st, n <= cap, "poll returned %zu > %zu", n, cap);
    for (size_t i = 0; i < n; i++) {
        int j = 0;
        while (j < st->njobs && st->jobs[j] != done[i])
            j++;
        PA(st, j < st->njobs, "poll reported %" PRIu64 ", unknown or twice",
           done[i]);
        rprompt p = st->jobp[j];
        size_t m = st->jobm[j];
        st->jobs[j] = st->jobs[--st->njobs];
        st->jobp[j] = st->jobp[st->njobs];
        st->jobm[j] = st->jobm[st->njobs];
        uint32_t blocks[MAXP];
        pc_lookup_result r;
        int rc = pc_cache_lookup(st->c, pns(&p), strlen(pns(&p)), p.tok, p.n,
                                 0, 0, blocks, &r);
        PA(st, rc == 0, "lookup = %s", pc_errname(rc));
        pbytes(st, &p, blocks, r.pages, "lookup after a promotion");
        /* its prefix was pinned and its pages are in now (this poll's
         * other finishes insert, they never evict) */
        PA(st, r.pages > m, "promotion %" PRIu64 " done, but only %zu pages "
           "cached (%zu before it)", done[i], r.pages, m);
        st->promoted++;
    }
}

/* The kept pins must still hold their pages' bytes. */
static void verify_kept(pstate *st, int which)
{
    for (int i = 0; i < st->nkeep; i++)
        if (which < 0 || which == i)
            pbytes(st, &st->keep[i].pr, st->keep[i].blocks, st->keep[i].pages,
                   "a pinned page");
}

static void prop_run(const prun *r, long ops)
{
    pstate *st = calloc(1, sizeof(*st));
    cr_assert_not_null(st);
    st->r = r;
    rs = r->seed;
    pc_cache_config cfg = tcfg(r->cap, r->be, r->tier, r->delay_us);
    cfg.low_watermark = r->low;
    cfg.high_watermark = r->high;
    cfg.eviction_policy = r->policy;
    st->c = mk(&cfg);
    for (st->op = 0; st->op < ops; st->op++) {
        uint32_t x = below(100);
        if (x < 25)
            op_put(st);
        else if (x < 45)
            op_lookup(st);
        else if (x < 55) {
            if (st->nkeep)
                drop_kept(st, (int)below((uint32_t)st->nkeep));
        } else if (x < 62)
            op_alloc(st);
        else if (x < 77)
            op_promote(st);
        else if (x < 90)
            op_poll(st, 1 + below(3));
        else if (x < 94) {
            pc_cache_maintain(st->c);
            pcheck(st, "maintain");
        } else if (x < 96) {
            size_t n;
            if (below(2))
                n = pc_cache_flush_tier2(st->c, NULL, 0, true);
            else {
                const char *ns = NSS[below(NELEM(NSS))].s;
                n = pc_cache_flush_tier2(st->c, ns, strlen(ns), false);
            }
            (void)n;
            pcheck(st, "flush_tier2");
        } else if (x < 97) {
            pc_cache_evict(st->c, 1 + below(4));
            pcheck(st, "evict");
        } else if (x < 98) {
            if (below(4)) { /* an admin flush of one namespace */
                size_t n;
                const char *ns = NSS[below(NELEM(NSS))].s;
                int rc = pc_cache_flush_ns(st->c, ns, strlen(ns), &n);
                PA(st, rc == 0, "flush_ns = %s", pc_errname(rc));
                pcheck(st, "flush_ns");
            } else { /* every client lease expires; promotions go on */
                g_now += PC_CACHE_LEASE_TTL_MS_DEFAULT + 1;
                pc_cache_expire(st->c);
                pcheck(st, "expire");
                st->nkeep = 0;
            }
        } else {
            /* let the worker finish something now and then */
            wait_a_bit(st->c, 1);
        }
        verify_kept(st, st->nkeep ? (int)below((uint32_t)st->nkeep) : -1);
        if (st->op % 16 == 0)
            verify_kept(st, -1);
    }
    /* drain: every promotion is reported exactly once */
    uint64_t t0 = ms_now();
    while (st->njobs) {
        op_poll(st, MAXJOBS);
        PA(st, ms_now() - t0 < 20000, "%d promotions never reported",
           st->njobs);
        if (st->njobs)
            wait_a_bit(st->c, 10);
    }
    uint64_t done[4];
    PA(st, pc_cache_poll(st->c, done, 4) == 0, "%s", "a promotion reported twice");
    verify_kept(st, -1);
    while (st->nkeep)
        drop_kept(st, st->nkeep - 1);
    QUIET(st->c);
    cr_log_info("tier2 prop %s: %ld ops, %" PRIu64 " pages hit, %" PRIu64
                " promotions (%" PRIu64 " joins), %" PRIu64 " demoted, %"
                PRIu64 " promoted pages", r->name, ops, st->hits, st->promoted,
                st->joined, tstat(st->c, "tier2.demoted_pages"),
                tstat(st->c, "tier2.promoted_pages"));
    PA(st, st->promoted > 0 && tstat(st->c, "tier2.demoted_pages") > 0,
       "%s", "the run never promoted");
    cache_del(st->c);
    free(st);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static void prop(pc_pool_backend be)
{
    const bool host = be == PC_POOL_HOST;
    uint64_t seed = env_u64("PC_TIER2_SEED", 0);
    long ops = (long)env_u64("PC_TIER2_OPS", 3000);
    const prun runs[] = {
        {host ? "file-lru" : "dev-lru", be, 16, 24, 0, 0, PC_POLICY_LRU, 0,
         seed ? seed : UINT64_C(0x7132a001)},
        /* a tier smaller than the pool: its own LRU and busy slots bite;
         * slow reads keep promotions in flight across many ops */
        {host ? "file-small-tier-slow" : "dev-small-tier-auto", be, 12, 6, 2,
         5, host ? PC_POLICY_LRU : PC_POLICY_AUTO, host ? 300 : 0,
         seed ? seed : UINT64_C(0x7132a002)},
        {host ? "file-s3fifo-slow" : "dev-lfu", be, 14, 20, 3, 6,
         host ? PC_POLICY_S3FIFO : PC_POLICY_LFU, host ? 100 : 0,
         seed ? seed : UINT64_C(0x7132a003)},
    };
    for (size_t i = 0; i < NELEM(runs); i++)
        prop_run(&runs[i], ops);
}

Test(tier2, prop_file_tier, .timeout = 120) { prop(PC_POOL_HOST); }
Test(tier2, prop_device_tier, .timeout = 120) { prop(PC_POOL_CUDA); }

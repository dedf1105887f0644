/*
 * tests/test_blockpool.c - the block pool (blockpool/blockpool.h).
 *
 * Layout arithmetic and dtypes, every refused configuration with its code,
 * the block state machine (FREE -> LEASED -> CACHED -> FREE) with the counts
 * after every step, LIFO order, all-or-nothing alloc, the "none" and "host"
 * backends, a 64 GiB host pool that must not fault in its region,
 * pc_pool_map() from the same process, and who owns a name: a live
 * creator's pool is busy, a dead one's (a forked creator that exits
 * without destroying it) is reclaimed, another user's is never touched;
 * the object's mode and group are set explicitly, whatever the umask.
 *
 * pc_pool_check() runs after every pool mutation.  Every pool a test creates
 * is registered; the suite's .fini (which Criterion runs after a failed
 * assertion too) destroys what is left, and a crash guard unlinks the shm
 * names on a fatal signal, so a failing test leaves no shm object behind.
 * Host pools get unique names "/pctest-<pid>-<n>".
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blockpool/blockpool.h"
#include "tests/shm_guard.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define GiB (UINT64_C(1) << 30)
#define MiB (UINT64_C(1) << 20)

/* ---- cleanup registry ---------------------------------------------------- */

/* Pools and foreign mappings a test holds; the suite fini releases them. */
static pc_pool *g_pools[16];
static struct {
    void *base;
    uint64_t bytes;
} g_maps[8];

static void track(pc_pool *p)
{
    for (size_t i = 0; i < NELEM(g_pools); i++)
        if (!g_pools[i]) {
            g_pools[i] = p;
            name_add(p);
            return;
        }
    cr_assert_fail("too many pools in one test");
}

/* Destroy a tracked pool (NULL is fine). */
static void pool_del(pc_pool *p)
{
    for (size_t i = 0; i < NELEM(g_pools); i++)
        if (g_pools[i] == p)
            g_pools[i] = NULL;
    if (p)
        name_del(p);
    pc_pool_destroy(p);
}

static void map_track(void *base, uint64_t bytes)
{
    for (size_t i = 0; i < NELEM(g_maps); i++)
        if (!g_maps[i].base) {
            g_maps[i].base = base;
            g_maps[i].bytes = bytes;
            return;
        }
    cr_assert_fail("too many mappings in one test");
}

static void map_del(void *base)
{
    for (size_t i = 0; i < NELEM(g_maps); i++)
        if (g_maps[i].base == base) {
            pc_pool_unmap(base, g_maps[i].bytes);
            g_maps[i].base = NULL;
            return;
        }
    cr_assert_fail("unmapping an untracked mapping");
}

/* Objects a test made by hand (not pools), and a forked creator. */
static char g_raw[4][PC_POOL_SHM_NAME_MAX + 1];
static pid_t g_child;

static void raw_track(const char *name)
{
    for (size_t i = 0; i < NELEM(g_raw); i++)
        if (!g_raw[i][0]) {
            snprintf(g_raw[i], sizeof(g_raw[i]), "%s", name);
            return;
        }
    cr_assert_fail("too many raw shm objects in one test");
}

static void cleanup(void)
{
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
        g_child = 0;
    }
    for (size_t i = 0; i < NELEM(g_raw); i++)
        if (g_raw[i][0]) {
            shm_unlink(g_raw[i]);
            g_raw[i][0] = 0;
        }
    for (size_t i = 0; i < NELEM(g_maps); i++)
        if (g_maps[i].base) {
            pc_pool_unmap(g_maps[i].base, g_maps[i].bytes);
            g_maps[i].base = NULL;
        }
    for (size_t i = 0; i < NELEM(g_pools); i++) {
        pc_pool_destroy(g_pools[i]);
        g_pools[i] = NULL;
    }
    name_clear();
}

TestSuite(blockpool, .init = crash_guard, .fini = cleanup);

/* ---- helpers ------------------------------------------------------------- */

#define CHECK_AT(p, line)                                                      \
    do {                                                                       \
        int check_rc_ = pc_pool_check(p);                                      \
        cr_assert_eq(check_rc_, 0, "pc_pool_check() = %d (%s) after line %d", \
                     check_rc_, pc_errname(check_rc_), (line));                \
    } while (0)
#define CHECK(p) CHECK_AT(p, __LINE__)

#define RC_EQ(expr, want)                                                      \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        cr_assert_eq(rc_, (want), "%s = %d (%s), want %s", #expr, rc_,         \
                     pc_errname(rc_), pc_errname(want));                       \
    } while (0)

/* A unique shm name for this process: "/pctest-<pid>-<n>". */
static const char *shm_name(void)
{
    static char buf[8][64];
    static unsigned n;
    char *b = buf[n % NELEM(buf)];
    snprintf(b, sizeof(buf[0]), "/pctest-%ld-%u", (long)getpid(), n++);
    return b;
}

static pc_pool_layout layout(uint32_t layers, uint32_t heads, uint32_t dim,
                             uint32_t P, pc_dtype dt)
{
    pc_pool_layout l;
    memset(&l, 0, sizeof(l));
    int rc = pc_pool_layout_init(&l, layers, heads, dim, P, dt);
    cr_assert_eq(rc, 0, "layout_init(%u,%u,%u,%u,%d) = %s", layers, heads, dim,
                 P, (int)dt, pc_errname(rc));
    return l;
}

/* A small layout: 2 layers x 2 heads x 4 dim x 4 tokens x fp16 = 256 bytes. */
static pc_pool_layout small_layout(void)
{
    return layout(2, 2, 4, 4, PC_DTYPE_FP16);
}

static pc_pool_config config(pc_pool_backend b, uint64_t blocks)
{
    pc_pool_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.layout = small_layout();
    cfg.backend = b;
    cfg.capacity_blocks = blocks;
    cfg.shm_name = b == PC_POOL_HOST ? shm_name() : NULL;
    return cfg;
}

/* Create (must succeed), register, check. */
static pc_pool *mk_at(int line, const pc_pool_config *cfg)
{
    pc_pool *p = (pc_pool *)0x1;
    int rc = pc_pool_create(cfg, &p);
    cr_assert_eq(rc, 0, "line %d: pc_pool_create = %d (%s)", line, rc,
                 pc_errname(rc));
    cr_assert_not_null(p);
    track(p);
    CHECK_AT(p, line);
    return p;
}
#define mk(cfg) mk_at(__LINE__, (cfg))

/* Create must fail with `want` and leave *out NULL. */
static void refused_at(int line, const pc_pool_config *cfg, int want)
{
    pc_pool *p = (pc_pool *)0x1;
    int rc = pc_pool_create(cfg, &p);
    if (rc == 0)
        track(p);
    cr_assert_eq(rc, want, "line %d: pc_pool_create = %d (%s), want %s", line,
                 rc, pc_errname(rc), pc_errname(want));
    cr_assert_null(p, "line %d: *out not NULL after a refused create", line);
}
#define refused(cfg, want) refused_at(__LINE__, (cfg), (want))

static pc_pool_stats pstats(const pc_pool *p)
{
    pc_pool_stats s;
    memset(&s, 0xa5, sizeof(s));
    pc_pool_stats_get(p, &s);
    return s;
}

/* free/leased/cached counts, and their sum is the capacity. */
static void counts_at(int line, const pc_pool *p, uint64_t f, uint64_t l,
                      uint64_t c)
{
    pc_pool_stats s = pstats(p);
    cr_assert_eq(s.capacity, pc_pool_capacity(p), "line %d", line);
    cr_assert(s.free == f && s.leased == l && s.cached == c,
              "line %d: free/leased/cached = %" PRIu64 "/%" PRIu64 "/%" PRIu64
              ", want %" PRIu64 "/%" PRIu64 "/%" PRIu64,
              line, s.free, s.leased, s.cached, f, l, c);
    cr_assert_eq(s.free + s.leased + s.cached, s.capacity,
                 "line %d: counts do not add up to the capacity", line);
}
#define COUNTS(p, f, l, c) counts_at(__LINE__, (p), (f), (l), (c))

static pc_block_state state_of(const pc_pool *p, uint32_t id)
{
    pc_block_state s = (pc_block_state)99;
    int rc = pc_pool_state(p, id, &s);
    cr_assert_eq(rc, 0, "pc_pool_state(%u) = %s", id, pc_errname(rc));
    return s;
}

static bool stats_equal(const pc_pool_stats *a, const pc_pool_stats *b)
{
    return a->capacity == b->capacity && a->free == b->free &&
           a->leased == b->leased && a->cached == b->cached &&
           a->allocs == b->allocs && a->frees == b->frees &&
           a->bytes == b->bytes;
}

/* Resident pages of this process. */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    unsigned long size = 0, res = 0;
    int n = fscanf(f, "%lu %lu", &size, &res);
    fclose(f);
    cr_assert_eq(n, 2, "cannot parse /proc/self/statm");
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- layout -------------------------------------------------------------- */

Test(blockpool, layout_llama3_8b_is_2mib_per_block)
{
    pc_pool_layout l = layout(32, 8, 128, 16, PC_DTYPE_FP16);
    cr_assert_eq(l.layers, 32);
    cr_assert_eq(l.kv_heads, 8);
    cr_assert_eq(l.head_dim, 128);
    cr_assert_eq(l.page_tokens, 16);
    cr_assert_eq(l.dtype, PC_DTYPE_FP16);
    cr_assert_eq(l.dtype_bytes, 2);
    cr_assert_eq(l.kv_bytes, UINT64_C(16) * 8 * 128 * 2); /* 32 KiB */
    cr_assert_eq(l.token_bytes, UINT64_C(2) * 32 * 8 * 128 * 2);
    cr_assert_eq(l.block_bytes, 2 * MiB);
    cr_assert_eq(l.block_bytes, l.token_bytes * l.page_tokens);
}

Test(blockpool, layout_every_dtype)
{
    static const struct {
        pc_dtype d;
        const char *name;
        uint32_t bytes;
    } dt[] = {
        {PC_DTYPE_FP32, "fp32", 4}, {PC_DTYPE_FP16, "fp16", 2},
        {PC_DTYPE_BF16, "bf16", 2}, {PC_DTYPE_FP8, "fp8", 1},
        {PC_DTYPE_INT8, "int8", 1},
    };
    cr_assert_eq(NELEM(dt), PC_DTYPE_COUNT, "a dtype is not covered");
    /* Llama-3-8B-like, an MQA shape (one kv head) and an odd small one. */
    static const uint32_t shapes[][4] = {
        {32, 8, 128, 16}, {40, 1, 128, 16}, {3, 5, 7, 1}, {1, 1, 1, 1024}};
    for (size_t i = 0; i < NELEM(dt); i++) {
        cr_assert_eq(pc_dtype_bytes(dt[i].d), dt[i].bytes);
        cr_assert_str_eq(pc_dtype_name(dt[i].d), dt[i].name);
        pc_dtype back = (pc_dtype)99;
        RC_EQ(pc_dtype_parse(dt[i].name, &back), 0);
        cr_assert_eq(back, dt[i].d, "parse(name(%s)) round trip", dt[i].name);
        for (size_t s = 0; s < NELEM(shapes); s++) {
            const uint32_t *x = shapes[s];
            pc_pool_layout l = layout(x[0], x[1], x[2], x[3], dt[i].d);
            uint64_t want = UINT64_C(2) * x[0] * x[1] * x[2] * x[3] * dt[i].bytes;
            cr_assert_eq(l.block_bytes, want, "%s %ux%ux%ux%u: %" PRIu64,
                         dt[i].name, x[0], x[1], x[2], x[3], l.block_bytes);
            cr_assert_eq(l.dtype_bytes, dt[i].bytes);
            cr_assert_eq(l.kv_bytes, (uint64_t)x[1] * x[2] * x[3] * dt[i].bytes);
            cr_assert_eq(l.token_bytes,
                         UINT64_C(2) * x[0] * x[1] * x[2] * dt[i].bytes);
        }
    }
    /* MQA, bf16: 2 x 40 x 1 x 128 x 16 x 2 = 320 KiB */
    cr_assert_eq(layout(40, 1, 128, 16, PC_DTYPE_BF16).block_bytes, 327680);
}

Test(blockpool, dtype_names)
{
    pc_dtype d = PC_DTYPE_BF16;
    RC_EQ(pc_dtype_parse("fp64", &d), PC_E_INVAL);
    RC_EQ(pc_dtype_parse("", &d), PC_E_INVAL);
    RC_EQ(pc_dtype_parse("fp16x", &d), PC_E_INVAL);
    RC_EQ(pc_dtype_parse("fp", &d), PC_E_INVAL);
    RC_EQ(pc_dtype_parse(NULL, &d), PC_E_INVAL);
    RC_EQ(pc_dtype_parse("fp16", NULL), PC_E_INVAL);
    cr_assert_eq(d, PC_DTYPE_BF16, "a failed parse wrote *out");
    cr_assert_null(pc_dtype_name(PC_DTYPE_COUNT));
    cr_assert_null(pc_dtype_name((pc_dtype)-1));
    cr_assert_eq(pc_dtype_bytes(PC_DTYPE_COUNT), 0);
    cr_assert_eq(pc_dtype_bytes((pc_dtype)-1), 0);
}

Test(blockpool, layout_offsets_tile_the_block)
{
    static const uint32_t shapes[][4] = {
        {32, 8, 128, 16}, {40, 1, 128, 16}, {1, 1, 1, 1}, {3, 5, 7, 3}};
    for (size_t s = 0; s < NELEM(shapes); s++) {
        const uint32_t *x = shapes[s];
        pc_pool_layout l = layout(x[0], x[1], x[2], x[3], PC_DTYPE_FP8);
        uint64_t expect = 0; /* where the next region must start */
        for (uint32_t layer = 0; layer < l.layers; layer++)
            for (int kv = 0; kv < 2; kv++) {
                uint64_t off = pc_pool_layout_offset(&l, layer, kv);
                cr_assert_eq(off, expect,
                             "shape %zu layer %u kv %d: offset %" PRIu64
                             ", want %" PRIu64,
                             s, layer, kv, off, expect);
                expect = off + l.kv_bytes;
            }
        cr_assert_eq(expect, l.block_bytes, "regions do not cover the block");
        cr_assert_eq(pc_pool_layout_offset(&l, l.layers, 0), UINT64_MAX);
        cr_assert_eq(pc_pool_layout_offset(&l, l.layers, 1), UINT64_MAX);
        cr_assert_eq(pc_pool_layout_offset(&l, UINT32_MAX, 0), UINT64_MAX);
        cr_assert_eq(pc_pool_layout_offset(&l, 0, 2), UINT64_MAX);
        cr_assert_eq(pc_pool_layout_offset(&l, 0, -1), UINT64_MAX);
    }
    cr_assert_eq(pc_pool_layout_offset(NULL, 0, 0), UINT64_MAX);
}

Test(blockpool, layout_refused)
{
    pc_pool_layout l;
    RC_EQ(pc_pool_layout_init(NULL, 1, 1, 1, 1, PC_DTYPE_FP16), PC_E_INVAL);
    RC_EQ(pc_pool_layout_init(&l, 0, 8, 128, 16, PC_DTYPE_FP16), PC_E_INVAL);
    RC_EQ(pc_pool_layout_init(&l, 32, 0, 128, 16, PC_DTYPE_FP16), PC_E_INVAL);
    RC_EQ(pc_pool_layout_init(&l, 32, 8, 0, 16, PC_DTYPE_FP16), PC_E_INVAL);
    RC_EQ(pc_pool_layout_init(&l, 32, 8, 128, 0, PC_DTYPE_FP16), PC_E_INVAL);
    RC_EQ(pc_pool_layout_init(&l, 32, 8, 128, 16, PC_DTYPE_COUNT), PC_E_INVAL);
    RC_EQ(pc_pool_layout_init(&l, 32, 8, 128, 16, (pc_dtype)-1), PC_E_INVAL);
    /* page_tokens: the tree's limit */
    RC_EQ(pc_pool_layout_init(&l, 1, 1, 1, 1024, PC_DTYPE_FP16), 0);
    RC_EQ(pc_pool_layout_init(&l, 1, 1, 1, 1025, PC_DTYPE_FP16), PC_E_RANGE);
    RC_EQ(pc_pool_layout_init(&l, 1, 1, 1, UINT32_MAX, PC_DTYPE_FP16),
          PC_E_RANGE);
    /* 64-bit overflow: everything huge */
    RC_EQ(pc_pool_layout_init(&l, UINT32_MAX, UINT32_MAX, UINT32_MAX, 1024,
                              PC_DTYPE_FP32),
          PC_E_RANGE);
    /* kv_bytes fits (2^44), token_bytes does not (2^35 x (2^32-1)) */
    RC_EQ(pc_pool_layout_init(&l, UINT32_MAX, 65536, 65536, 1024,
                              PC_DTYPE_FP32),
          PC_E_RANGE);
    /* token_bytes fits (2^60), block_bytes does not (x 1024 = 2^70) */
    RC_EQ(pc_pool_layout_init(&l, 1u << 25, 65536, 65536, 1024, PC_DTYPE_FP32),
          PC_E_RANGE);
    /* and just below: 2^60 x 8 = 2^63 fits */
    RC_EQ(pc_pool_layout_init(&l, 1u << 25, 65536, 65536, 8, PC_DTYPE_FP32), 0);
    cr_assert_eq(l.block_bytes, UINT64_C(1) << 63);
}

/* ---- refused pools ------------------------------------------------------- */

Test(blockpool, create_refuses_bad_arguments)
{
    pc_pool_config cfg = config(PC_POOL_NONE, 4);
    pc_pool *p = (pc_pool *)0x1;
    RC_EQ(pc_pool_create(NULL, &p), PC_E_INVAL);
    RC_EQ(pc_pool_create(&cfg, NULL), PC_E_INVAL);

    /* a layout that was never initialised */
    pc_pool_config z = cfg;
    memset(&z.layout, 0, sizeof(z.layout));
    refused(&z, PC_E_INVAL);

    /* block_bytes that disagrees with the fields */
    pc_pool_config b = cfg;
    b.layout.block_bytes += 1;
    refused(&b, PC_E_INVAL);
    b = cfg;
    b.layout.layers *= 2; /* fields changed, block_bytes stale */
    refused(&b, PC_E_INVAL);
    b = cfg;
    b.layout.dtype = PC_DTYPE_FP32; /* fp16 -> fp32: twice the bytes */
    refused(&b, PC_E_INVAL);

    /* bad dtype / zero dimension in a hand-filled layout */
    b = cfg;
    b.layout.dtype = PC_DTYPE_COUNT;
    refused(&b, PC_E_INVAL);
    b = cfg;
    b.layout.head_dim = 0;
    refused(&b, PC_E_INVAL);

    /* a hand-filled layout beyond the page limit: refused (the header says
     * INVAL for a bad layout; RANGE is what layout_init says for it) */
    b = cfg;
    b.layout.page_tokens = 2048;
    b.layout.block_bytes = b.layout.token_bytes * 2048;
    int rc = pc_pool_create(&b, &p);
    if (rc == 0)
        track(p);
    cr_assert(rc == PC_E_INVAL || rc == PC_E_RANGE,
              "page_tokens 2048 accepted: %s", pc_errname(rc));

    /* backends: CUDA is not built here; a stranger value */
    b = cfg;
    b.backend = PC_POOL_CUDA;
    refused(&b, PC_E_INVAL);
    b.backend = (pc_pool_backend)42;
    refused(&b, PC_E_INVAL);
}

Test(blockpool, create_capacity_limits)
{
    pc_pool_config cfg = config(PC_POOL_NONE, 0);
    uint64_t bb = cfg.layout.block_bytes;

    /* fewer than 2 blocks */
    cfg.capacity_blocks = 0;
    cfg.capacity_bytes = 0;
    refused(&cfg, PC_E_RANGE);
    cfg.capacity_blocks = 1;
    refused(&cfg, PC_E_RANGE);
    cfg.capacity_blocks = 2;
    pc_pool *p = mk(&cfg);
    cr_assert_eq(pc_pool_capacity(p), 2);
    pool_del(p);

    /* more than 2^32-1 blocks */
    cfg.capacity_blocks = PC_POOL_MAX_BLOCKS + 1;
    refused(&cfg, PC_E_RANGE);
    cfg.capacity_blocks = UINT64_MAX;
    refused(&cfg, PC_E_RANGE);

    /* bytes, rounded down to whole blocks */
    cfg.capacity_blocks = 0;
    cfg.capacity_bytes = 10 * bb + bb - 1;
    p = mk(&cfg);
    cr_assert_eq(pc_pool_capacity(p), 10);
    cr_assert_eq(pstats(p).capacity, 10);
    pool_del(p);
    cfg.capacity_bytes = 2 * bb;
    p = mk(&cfg);
    cr_assert_eq(pc_pool_capacity(p), 2);
    pool_del(p);
    cfg.capacity_bytes = 2 * bb - 1; /* rounds down to 1 block */
    refused(&cfg, PC_E_RANGE);
    cfg.capacity_bytes = bb - 1; /* 0 blocks */
    refused(&cfg, PC_E_RANGE);
    /* bytes for more than 2^32-1 blocks */
    cfg.capacity_bytes = (PC_POOL_MAX_BLOCKS + 1) * bb;
    refused(&cfg, PC_E_RANGE);

    /* both given: blocks wins */
    cfg.capacity_blocks = 3;
    cfg.capacity_bytes = 100 * bb;
    p = mk(&cfg);
    cr_assert_eq(pc_pool_capacity(p), 3);
    pool_del(p);

    /* capacity x block_bytes overflows 64 bits: block 2^45, 2^20 blocks */
    pc_pool_config big = cfg;
    big.layout = layout(1, 65536, 65536, 1024, PC_DTYPE_FP32);
    cr_assert_eq(big.layout.block_bytes, UINT64_C(1) << 45);
    big.capacity_bytes = 0;
    big.capacity_blocks = UINT64_C(1) << 20;
    refused(&big, PC_E_RANGE);
    big.backend = PC_POOL_HOST;
    big.shm_name = shm_name();
    refused(&big, PC_E_RANGE);
}

Test(blockpool, create_refuses_bad_shm_names)
{
    pc_pool_config cfg = config(PC_POOL_HOST, 4);
    char longname[PC_POOL_SHM_NAME_MAX + 2];

    cfg.shm_name = "pctest-no-slash";
    refused(&cfg, PC_E_INVAL);
    cfg.shm_name = "/pctest/inner";
    refused(&cfg, PC_E_INVAL);
    cfg.shm_name = "/";
    refused(&cfg, PC_E_INVAL);
    /* 201 characters */
    memset(longname, 'x', sizeof(longname));
    longname[0] = '/';
    longname[PC_POOL_SHM_NAME_MAX + 1] = '\0';
    cr_assert_eq(strlen(longname), PC_POOL_SHM_NAME_MAX + 1);
    cfg.shm_name = longname;
    refused(&cfg, PC_E_INVAL);

    /* exactly PC_POOL_SHM_NAME_MAX characters is fine; make it unique */
    int n = snprintf(longname, sizeof(longname), "%s-", shm_name());
    memset(longname + n, 'y', PC_POOL_SHM_NAME_MAX - (size_t)n);
    longname[PC_POOL_SHM_NAME_MAX] = '\0';
    cr_assert_eq(strlen(longname), PC_POOL_SHM_NAME_MAX);
    cfg.shm_name = longname;
    pc_pool *p = mk(&cfg);
    const char *name = NULL;
    RC_EQ(pc_pool_shm_info(p, &name, NULL), 0);
    cr_assert_str_eq(name, longname);
    pool_del(p);
}

Test(blockpool, create_refuses_existing_name)
{
    pc_pool_config cfg = config(PC_POOL_HOST, 4);
    pc_pool *p = mk(&cfg);
    uint64_t bytes = 0;
    RC_EQ(pc_pool_shm_info(p, NULL, &bytes), 0);
    memset(pc_pool_block_ptr(p, 2), 0x5a, 16);

    refused(&cfg, PC_E_BUSY);
    /* the refused create must not have unlinked or resized the first */
    CHECK(p);
    void *m = NULL;
    RC_EQ(pc_pool_map(cfg.shm_name, bytes, &m), 0);
    map_track(m, bytes);
    cr_assert_eq(((uint8_t *)m)[2 * cfg.layout.block_bytes + 15], 0x5a);
    map_del(m);
    pool_del(p);
}

/* ---- who owns a name -------------------------------------------------------- */

/* The mode bits and group of a name's object (it must exist). */
static struct stat shm_stat(const char *name)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    cr_assert_eq(lstat(path, &st), 0, "%s: %s", path, strerror(errno));
    return st;
}

/* Every byte of the pool is zero. */
static void all_zero(const pc_pool *p)
{
    const uint8_t *b = pc_pool_base(p);
    uint64_t bytes = 0;
    RC_EQ(pc_pool_shm_info(p, NULL, &bytes), 0);
    for (uint64_t i = 0; i < bytes; i++)
        cr_assert_eq(b[i], 0, "byte %" PRIu64 " of a fresh pool is %u", i, b[i]);
}

Test(blockpool, reclaims_an_object_nobody_locks)
{
    /* What a daemon killed with -9 leaves: an object of our name, filled,
     * and no lock (it died with the process). */
    pc_pool_config cfg = config(PC_POOL_HOST, 4);
    raw_track(cfg.shm_name);
    int fd = shm_open(cfg.shm_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    cr_assert(fd >= 0, "shm_open: %s", strerror(errno));
    cr_assert_eq(ftruncate(fd, 64 * 1024), 0);
    cr_assert_eq(pwrite(fd, "old", 3, 100), 3);
    close(fd);

    pc_pool *p = mk(&cfg);
    cr_assert(pc_pool_shm_reclaimed(p), "the dead object was not reported");
    all_zero(p); /* a fresh object, not the old bytes */
    uint64_t bytes = 0;
    RC_EQ(pc_pool_shm_info(p, NULL, &bytes), 0);
    cr_assert_eq((uint64_t)shm_stat(cfg.shm_name).st_size, bytes);
    /* an ordinary create reports nothing */
    pc_pool_config other = config(PC_POOL_HOST, 4);
    pc_pool *q = mk(&other);
    cr_assert(!pc_pool_shm_reclaimed(q));
    pool_del(q);
    pool_del(p);
}

Test(blockpool, busy_while_its_creator_lives_reclaimed_once_it_dies)
{
    pc_pool_config cfg = config(PC_POOL_HOST, 4);
    raw_track(cfg.shm_name); /* the child's pool, should the test fail */
    const uint64_t bb = cfg.layout.block_bytes;
    int up[2], down[2];
    cr_assert_eq(pipe(up), 0);
    cr_assert_eq(pipe(down), 0);
    fflush(NULL);
    g_child = fork();
    cr_assert(g_child >= 0);
    if (g_child == 0) { /* a creator that dies without pc_pool_destroy */
        pc_pool *c = NULL;
        int rc = pc_pool_create(&cfg, &c);
        if (rc == 0)
            memset(pc_pool_block_ptr(c, 1), 0x5a, bb);
        char ch;
        if (write(up[1], &rc, sizeof(rc)) != sizeof(rc) || read(down[0], &ch, 1) < 0)
            _exit(2);
        _exit(0);
    }
    int rc = -99;
    cr_assert_eq(read(up[0], &rc, sizeof(rc)), (ssize_t)sizeof(rc));
    cr_assert_eq(rc, 0, "the child's create: %s", pc_errname(rc));

    refused(&cfg, PC_E_BUSY); /* its creator holds the lock */
    uint32_t owner = 0;
    RC_EQ(pc_pool_shm_owner(cfg.shm_name, &owner), 0);
    cr_assert_eq(owner, (uint32_t)geteuid());
    uint64_t bytes = 4 * bb;
    void *m = NULL;
    RC_EQ(pc_pool_map(cfg.shm_name, bytes, &m), 0); /* an engine's mapping */
    map_track(m, bytes);
    cr_assert_eq(((uint8_t *)m)[bb], 0x5a, "refused, but not harmed");

    cr_assert_eq(write(down[1], "x", 1), 1);
    int st;
    cr_assert_eq(waitpid(g_child, &st, 0), g_child);
    g_child = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
    close(up[0]), close(up[1]), close(down[0]), close(down[1]);

    pc_pool *p = mk(&cfg); /* its creator is gone: reclaimed */
    cr_assert(pc_pool_shm_reclaimed(p));
    all_zero(p);
    /* the old mapping keeps the old object's bytes: engines remap on hello */
    cr_assert_eq(((uint8_t *)m)[bb], 0x5a);
    map_del(m);
    pool_del(p);
    RC_EQ(pc_pool_shm_owner(cfg.shm_name, &owner), PC_E_NOENT);
}

Test(blockpool, another_users_object_is_never_touched)
{
    if (geteuid() != 0)
        cr_skip_test("needs root, to give an object to another uid");
    pc_pool_config cfg = config(PC_POOL_HOST, 4);
    raw_track(cfg.shm_name);
    int fd = shm_open(cfg.shm_name, O_CREAT | O_EXCL | O_RDWR, 0666);
    cr_assert(fd >= 0, "shm_open: %s", strerror(errno));
    cr_assert_eq(fchown(fd, 65534, 65534), 0, "fchown: %s", strerror(errno));
    close(fd); /* nobody locks it: it would look dead, were it ours */
    refused(&cfg, PC_E_PERM);
    uint32_t owner = 0;
    RC_EQ(pc_pool_shm_owner(cfg.shm_name, &owner), 0);
    cr_assert_eq(owner, 65534, "the object was replaced");
    RC_EQ(pc_pool_shm_owner("no-slash", &owner), PC_E_INVAL);
}

Test(blockpool, mode_and_group_are_explicit)
{
    mode_t old = umask(0); /* the umask must not widen (or decide) anything */
    pc_pool_config cfg = config(PC_POOL_HOST, 2);
    pc_pool *p = mk(&cfg);
    cr_assert_eq(shm_stat(cfg.shm_name).st_mode & 07777, 0600);
    pool_del(p);

    /* root may give it to any group; anyone to their own */
    uint32_t gid = geteuid() == 0 ? 4242 : (uint32_t)getegid();
    cfg = config(PC_POOL_HOST, 2);
    cfg.shm_mode = 0660;
    cfg.shm_chgrp = true;
    cfg.shm_gid = gid;
    p = mk(&cfg);
    struct stat st = shm_stat(cfg.shm_name);
    cr_assert_eq(st.st_mode & 07777, 0660);
    cr_assert_eq(st.st_gid, gid);
    pool_del(p);
    umask(077);
    cfg = config(PC_POOL_HOST, 2);
    cfg.shm_mode = 0644; /* wider than the umask: still what was asked */
    p = mk(&cfg);
    cr_assert_eq(shm_stat(cfg.shm_name).st_mode & 07777, 0644);
    pool_del(p);
    umask(old);
    cfg.shm_mode = 01000;
    refused(&cfg, PC_E_RANGE);
}

/* ---- the state machine --------------------------------------------------- */

Test(blockpool, state_transitions_and_counts)
{
    pc_pool_config cfg = config(PC_POOL_NONE, 8);
    pc_pool *p = mk(&cfg);
    uint32_t ids[8];
    cr_assert_eq(pc_pool_capacity(p), 8);
    COUNTS(p, 8, 0, 0);
    for (uint32_t i = 0; i < 8; i++)
        cr_assert_eq(state_of(p, i), PC_BLOCK_FREE);

    /* a fresh pool hands out 0, 1, 2, ... */
    RC_EQ(pc_pool_alloc(p, 3, ids), 0);
    CHECK(p);
    cr_assert(ids[0] == 0 && ids[1] == 1 && ids[2] == 2, "got %u %u %u",
              ids[0], ids[1], ids[2]);
    COUNTS(p, 5, 3, 0);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(state_of(p, i), PC_BLOCK_LEASED);
    cr_assert_eq(state_of(p, 3), PC_BLOCK_FREE);

    /* LEASED -> CACHED */
    RC_EQ(pc_pool_cache(p, 1), 0);
    CHECK(p);
    cr_assert_eq(state_of(p, 1), PC_BLOCK_CACHED);
    COUNTS(p, 5, 2, 1);
    RC_EQ(pc_pool_cache(p, 2), 0);
    CHECK(p);
    COUNTS(p, 5, 1, 2);

    /* CACHED -> FREE */
    RC_EQ(pc_pool_free(p, 1), 0);
    CHECK(p);
    cr_assert_eq(state_of(p, 1), PC_BLOCK_FREE);
    COUNTS(p, 6, 1, 1);

    /* LEASED -> FREE */
    RC_EQ(pc_pool_free(p, 0), 0);
    CHECK(p);
    cr_assert_eq(state_of(p, 0), PC_BLOCK_FREE);
    COUNTS(p, 7, 0, 1);

    pc_pool_stats s = pstats(p);
    cr_assert_eq(s.allocs, 3);
    cr_assert_eq(s.frees, 2);

    /* LIFO: 0 was freed last, then 1, then the untouched 3, 4, ... */
    uint32_t one;
    RC_EQ(pc_pool_alloc(p, 1, &one), 0);
    CHECK(p);
    cr_assert_eq(one, 0);
    RC_EQ(pc_pool_alloc(p, 1, &one), 0);
    CHECK(p);
    cr_assert_eq(one, 1);
    RC_EQ(pc_pool_alloc(p, 2, ids), 0);
    CHECK(p);
    cr_assert(ids[0] == 3 && ids[1] == 4, "got %u %u", ids[0], ids[1]);
    COUNTS(p, 3, 4, 1);

    /* free 4, 3, 2 (CACHED): handed out again as 2, 3, 4 */
    RC_EQ(pc_pool_free(p, 4), 0);
    CHECK(p);
    RC_EQ(pc_pool_free(p, 3), 0);
    CHECK(p);
    RC_EQ(pc_pool_free(p, 2), 0);
    CHECK(p);
    COUNTS(p, 6, 2, 0);
    RC_EQ(pc_pool_alloc(p, 3, ids), 0);
    CHECK(p);
    cr_assert(ids[0] == 2 && ids[1] == 3 && ids[2] == 4, "got %u %u %u",
              ids[0], ids[1], ids[2]);
    COUNTS(p, 3, 5, 0);

    /* alloc(0) is a no-op */
    s = pstats(p);
    RC_EQ(pc_pool_alloc(p, 0, ids), 0);
    CHECK(p);
    pc_pool_stats s2 = pstats(p);
    cr_assert(stats_equal(&s, &s2));
    pool_del(p);
}

Test(blockpool, alloc_is_all_or_nothing)
{
    pc_pool_config cfg = config(PC_POOL_NONE, 6);
    pc_pool *p = mk(&cfg);
    uint32_t ids[8];
    RC_EQ(pc_pool_alloc(p, 4, ids), 0);
    CHECK(p);
    RC_EQ(pc_pool_free(p, 1), 0); /* free list now: 5 4 1 (top) */
    CHECK(p);
    COUNTS(p, 3, 3, 0);

    pc_pool_stats before = pstats(p);
    for (uint32_t i = 0; i < NELEM(ids); i++)
        ids[i] = 0xdead;
    RC_EQ(pc_pool_alloc(p, 4, ids), PC_E_NOSPACE);
    CHECK(p);
    RC_EQ(pc_pool_alloc(p, UINT32_MAX, ids), PC_E_NOSPACE);
    CHECK(p);
    pc_pool_stats after = pstats(p);
    cr_assert(stats_equal(&before, &after), "a refused alloc changed stats");
    for (uint32_t i = 0; i < 6; i++)
        cr_assert_eq(state_of(p, i), i == 1 || i >= 4 ? PC_BLOCK_FREE
                                                      : PC_BLOCK_LEASED,
                     "block %u", i);
    /* the free list is unchanged: exactly 3 left, in LIFO order */
    RC_EQ(pc_pool_alloc(p, 3, ids), 0);
    CHECK(p);
    cr_assert(ids[0] == 1 && ids[1] == 4 && ids[2] == 5, "got %u %u %u",
              ids[0], ids[1], ids[2]);
    COUNTS(p, 0, 6, 0);
    RC_EQ(pc_pool_alloc(p, 1, ids), PC_E_NOSPACE);
    CHECK(p);
    RC_EQ(pc_pool_alloc(p, 0, ids), 0);
    CHECK(p);
    RC_EQ(pc_pool_alloc(p, 1, NULL), PC_E_INVAL);
    CHECK(p);
    COUNTS(p, 0, 6, 0);
    pool_del(p);
}

Test(blockpool, wrong_state_and_unknown_ids)
{
    pc_pool_config cfg = config(PC_POOL_NONE, 4);
    pc_pool *p = mk(&cfg);
    uint32_t ids[2];
    RC_EQ(pc_pool_alloc(p, 2, ids), 0); /* 0, 1 LEASED */
    CHECK(p);
    RC_EQ(pc_pool_cache(p, 1), 0); /* 1 CACHED */
    CHECK(p);
    RC_EQ(pc_pool_free(p, 0), 0); /* 0 FREE, top of the free list */
    CHECK(p);
    pc_pool_stats before = pstats(p);

    /* double free */
    RC_EQ(pc_pool_free(p, 0), PC_E_STATE);
    CHECK(p);
    RC_EQ(pc_pool_free(p, 3), PC_E_STATE); /* never allocated */
    CHECK(p);
    /* cache of a FREE or a CACHED block */
    RC_EQ(pc_pool_cache(p, 0), PC_E_STATE);
    CHECK(p);
    RC_EQ(pc_pool_cache(p, 2), PC_E_STATE);
    CHECK(p);
    RC_EQ(pc_pool_cache(p, 1), PC_E_STATE);
    CHECK(p);
    /* unknown ids */
    pc_block_state st = PC_BLOCK_LEASED;
    static const uint32_t bad[] = {4, 5, 1000, UINT32_MAX};
    for (size_t i = 0; i < NELEM(bad); i++) {
        RC_EQ(pc_pool_free(p, bad[i]), PC_E_RANGE);
        CHECK(p);
        RC_EQ(pc_pool_cache(p, bad[i]), PC_E_RANGE);
        CHECK(p);
        RC_EQ(pc_pool_state(p, bad[i], &st), PC_E_RANGE);
        cr_assert_null(pc_pool_block_ptr(p, bad[i]));
    }
    cr_assert_eq(st, PC_BLOCK_LEASED, "a refused pc_pool_state wrote *out");
    RC_EQ(pc_pool_state(p, 0, NULL), PC_E_INVAL);

    pc_pool_stats after = pstats(p);
    cr_assert(stats_equal(&before, &after), "a refused call changed stats");
    cr_assert_eq(state_of(p, 0), PC_BLOCK_FREE);
    cr_assert_eq(state_of(p, 1), PC_BLOCK_CACHED);
    /* the free list was not corrupted: 0 (freed last), then 2, 3, once each */
    uint32_t all[3];
    RC_EQ(pc_pool_alloc(p, 3, all), 0);
    CHECK(p);
    cr_assert(all[0] == 0 && all[1] == 2 && all[2] == 3, "got %u %u %u",
              all[0], all[1], all[2]);
    RC_EQ(pc_pool_alloc(p, 1, all), PC_E_NOSPACE);
    COUNTS(p, 0, 3, 1);
    pool_del(p);
}

/* Random transitions against a model (states + LIFO stack). */
Test(blockpool, random_transitions_match_model)
{
    enum { CAP = 37, OPS = 20000 };
    pc_pool_config cfg = config(PC_POOL_NONE, CAP);
    pc_pool *p = mk(&cfg);
    pc_block_state model[CAP];
    uint32_t stack[CAP], top = CAP;
    for (uint32_t i = 0; i < CAP; i++) {
        model[i] = PC_BLOCK_FREE;
        stack[i] = CAP - 1 - i;
    }
    uint64_t x = 0x1234567;
    uint64_t allocs = 0, frees = 0;
    for (int op = 0; op < OPS; op++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t id = (uint32_t)(x >> 8) % (CAP + 2); /* some out of range */
        switch ((x >> 40) % 4) {
        case 0: { /* alloc n */
            uint32_t n = (uint32_t)(x >> 20) % 5, ids[4];
            int want = n > top ? PC_E_NOSPACE : 0;
            int rc = pc_pool_alloc(p, n, ids);
            cr_assert_eq(rc, want, "op %d alloc %u: %s", op, n, pc_errname(rc));
            for (uint32_t i = 0; !rc && i < n; i++) {
                uint32_t m = stack[--top];
                cr_assert_eq(ids[i], m, "op %d: LIFO order", op);
                model[m] = PC_BLOCK_LEASED;
                allocs++;
            }
            break;
        }
        case 1: { /* cache */
            int want = id >= CAP                         ? PC_E_RANGE
                       : model[id] != PC_BLOCK_LEASED ? PC_E_STATE
                                                         : 0;
            int rc = pc_pool_cache(p, id);
            cr_assert_eq(rc, want, "op %d cache %u: %s", op, id, pc_errname(rc));
            if (!rc)
                model[id] = PC_BLOCK_CACHED;
            break;
        }
        default: { /* free */
            int want = id >= CAP                       ? PC_E_RANGE
                       : model[id] == PC_BLOCK_FREE ? PC_E_STATE
                                                       : 0;
            int rc = pc_pool_free(p, id);
            cr_assert_eq(rc, want, "op %d free %u: %s", op, id, pc_errname(rc));
            if (!rc) {
                model[id] = PC_BLOCK_FREE;
                stack[top++] = id;
                frees++;
            }
            break;
        }
        }
        CHECK(p);
        uint64_t n[3] = {0};
        for (uint32_t i = 0; i < CAP; i++) {
            cr_assert_eq(state_of(p, i), model[i], "op %d block %u", op, i);
            n[model[i]]++;
        }
        pc_pool_stats s = pstats(p);
        cr_assert(s.free == n[0] && s.leased == n[1] && s.cached == n[2] &&
                      s.free + s.leased + s.cached == CAP,
                  "op %d: counts", op);
        cr_assert(s.allocs == allocs && s.frees == frees, "op %d: counters", op);
    }
    pool_del(p);
}

/* ---- backends ------------------------------------------------------------ */

Test(blockpool, none_backend_has_no_memory)
{
    pc_pool_config cfg = config(PC_POOL_NONE, 4);
    pc_pool *p = mk(&cfg);
    cr_assert_eq(pc_pool_backend_get(p), PC_POOL_NONE);
    cr_assert_null(pc_pool_base(p));
    const char *name = "untouched";
    uint64_t bytes = 77;
    RC_EQ(pc_pool_shm_info(p, &name, &bytes), PC_E_INVAL);
    cr_assert_str_eq(name, "untouched");
    cr_assert_eq(bytes, 77);
    uint32_t ids[4];
    RC_EQ(pc_pool_alloc(p, 4, ids), 0);
    CHECK(p);
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert_eq(ids[i], i);
        cr_assert_null(pc_pool_block_ptr(p, i));
    }
    RC_EQ(pc_pool_cache(p, 2), 0);
    CHECK(p);
    COUNTS(p, 0, 3, 1);
    const pc_pool_layout *l = pc_pool_layout_get(p);
    cr_assert_not_null(l);
    cr_assert_eq(l->block_bytes, cfg.layout.block_bytes);
    pool_del(p);
}

Test(blockpool, host_backend_blocks_are_memory)
{
    pc_pool_config cfg = config(PC_POOL_HOST, 6);
    pc_pool *p = mk(&cfg);
    const uint64_t bb = cfg.layout.block_bytes;
    cr_assert_eq(pc_pool_backend_get(p), PC_POOL_HOST);
    uint8_t *base = pc_pool_base(p);
    cr_assert_not_null(base);
    for (uint32_t i = 0; i < 6; i++)
        cr_assert_eq((uint8_t *)pc_pool_block_ptr(p, i), base + i * bb,
                     "block %u", i);
    cr_assert_null(pc_pool_block_ptr(p, 6));

    const char *name = NULL;
    uint64_t bytes = 0;
    RC_EQ(pc_pool_shm_info(p, &name, &bytes), 0);
    cr_assert_str_eq(name, cfg.shm_name);
    cr_assert_eq(bytes, 6 * bb);
    cr_assert_eq(pstats(p).bytes, 6 * bb);
    RC_EQ(pc_pool_shm_info(p, NULL, NULL), 0);

    /* the whole region is zero at first, and writes persist through state
     * changes (the pool never touches the bytes) */
    for (uint64_t i = 0; i < 6 * bb; i++)
        cr_assert_eq(base[i], 0, "byte %" PRIu64 " not zero", i);
    uint32_t ids[6];
    RC_EQ(pc_pool_alloc(p, 6, ids), 0);
    CHECK(p);
    for (uint32_t i = 0; i < 6; i++)
        memset(pc_pool_block_ptr(p, ids[i]), 0x10 + (int)i, bb);
    RC_EQ(pc_pool_cache(p, ids[0]), 0);
    CHECK(p);
    RC_EQ(pc_pool_free(p, ids[1]), 0);
    CHECK(p);
    RC_EQ(pc_pool_alloc(p, 1, ids + 1), 0);
    CHECK(p);
    for (uint32_t i = 0; i < 6; i++) {
        const uint8_t *b = pc_pool_block_ptr(p, i);
        for (uint64_t j = 0; j < bb; j++)
            cr_assert_eq(b[j], 0x10 + i, "block %u byte %" PRIu64, i, j);
    }
    pool_del(p);
}

Test(blockpool, host_auto_name)
{
    pc_pool_config cfg = config(PC_POOL_HOST, 2);
    const char *names[2] = {NULL, ""};
    pc_pool *p[2];
    char got[2][PC_POOL_SHM_NAME_MAX + 1];
    uint64_t bytes = 0;
    for (int i = 0; i < 2; i++) {
        cfg.shm_name = names[i];
        p[i] = mk(&cfg);
        const char *n = NULL;
        RC_EQ(pc_pool_shm_info(p[i], &n, &bytes), 0);
        cr_assert_not_null(n);
        cr_assert_eq(n[0], '/', "auto name \"%s\"", n);
        cr_assert_null(strchr(n + 1, '/'), "auto name \"%s\"", n);
        cr_assert_leq(strlen(n), PC_POOL_SHM_NAME_MAX);
        snprintf(got[i], sizeof(got[i]), "%s", n);
    }
    cr_assert_str_neq(got[0], got[1], "two pools got the same auto name");
    /* mappable by that name, and gone after destroy */
    void *m = NULL;
    RC_EQ(pc_pool_map(got[0], bytes, &m), 0);
    map_track(m, bytes);
    memset(pc_pool_block_ptr(p[0], 1), 0x77, 8);
    cr_assert_eq(((uint8_t *)m)[cfg.layout.block_bytes + 7], 0x77);
    map_del(m);
    for (int i = 0; i < 2; i++) {
        pool_del(p[i]);
        RC_EQ(pc_pool_map(got[i], bytes, &m), PC_E_NOENT);
    }
}

Test(blockpool, host_64gib_pool_is_lazy)
{
    pc_pool_config cfg = config(PC_POOL_HOST, 0);
    cfg.layout = layout(32, 8, 128, 16, PC_DTYPE_FP16); /* 2 MiB blocks */
    cfg.capacity_bytes = 64 * GiB;
    char name[64];
    snprintf(name, sizeof(name), "%s", cfg.shm_name);

    uint64_t rss0 = rss_bytes();
    double t0 = now_s();
    pc_pool *p = mk(&cfg);
    double dt = now_s() - t0;
    uint64_t rss1 = rss_bytes();
    cr_assert_lt(dt, 0.5, "creating a 64 GiB pool took %.3f s", dt);
    cr_assert_lt(rss1 - (rss1 > rss0 ? rss0 : rss1), 64 * MiB,
                 "RSS grew by %" PRIu64 " MiB at create", (rss1 - rss0) / MiB);

    cr_assert_eq(pc_pool_capacity(p), 32768);
    uint64_t bytes = 0;
    RC_EQ(pc_pool_shm_info(p, NULL, &bytes), 0);
    cr_assert_eq(bytes, 64 * GiB);
    cr_assert_eq(pstats(p).bytes, 64 * GiB);

    /* the first and the last block are usable memory */
    uint8_t *first = pc_pool_block_ptr(p, 0);
    uint8_t *last = pc_pool_block_ptr(p, 32767);
    cr_assert_not_null(first);
    cr_assert_eq(last, (uint8_t *)pc_pool_base(p) + 64 * GiB - 2 * MiB);
    first[0] = 0xa1;
    first[2 * MiB - 1] = 0xa2;
    last[0] = 0xb1;
    last[2 * MiB - 1] = 0xb2;
    cr_assert(first[0] == 0xa1 && first[2 * MiB - 1] == 0xa2);
    cr_assert(last[0] == 0xb1 && last[2 * MiB - 1] == 0xb2);
    uint32_t ids[3];
    RC_EQ(pc_pool_alloc(p, 3, ids), 0);
    CHECK(p);
    uint64_t rss2 = rss_bytes();
    cr_assert_lt(rss2 - (rss2 > rss0 ? rss0 : rss2), 64 * MiB,
                 "RSS grew by %" PRIu64 " MiB after touching 2 blocks",
                 (rss2 - rss0) / MiB);

    /* another mapping sees the last block */
    void *m = NULL;
    RC_EQ(pc_pool_map(name, bytes, &m), 0);
    map_track(m, bytes);
    cr_assert_eq(((uint8_t *)m)[64 * GiB - 1], 0xb2);
    map_del(m);

    pool_del(p);
    RC_EQ(pc_pool_map(name, bytes, &m), PC_E_NOENT);
    RC_EQ(pc_pool_map(name, 4096, &m), PC_E_NOENT);
}

/* ---- pc_pool_map --------------------------------------------------------- */

Test(blockpool, map_shares_the_bytes)
{
    pc_pool_config cfg = config(PC_POOL_HOST, 4);
    pc_pool *p = mk(&cfg);
    const uint64_t bb = cfg.layout.block_bytes;
    const char *name = NULL;
    uint64_t bytes = 0;
    RC_EQ(pc_pool_shm_info(p, &name, &bytes), 0);

    void *m = NULL;
    RC_EQ(pc_pool_map(name, bytes, &m), 0);
    cr_assert_not_null(m);
    map_track(m, bytes);
    cr_assert_neq(m, pc_pool_base(p), "a second mapping, not the same one");

    /* pool -> mapping */
    uint8_t *blk = pc_pool_block_ptr(p, 3);
    for (uint64_t i = 0; i < bb; i++)
        blk[i] = (uint8_t)(i * 7 + 3);
    const uint8_t *mb = (const uint8_t *)m + 3 * bb;
    for (uint64_t i = 0; i < bb; i++)
        cr_assert_eq(mb[i], (uint8_t)(i * 7 + 3), "byte %" PRIu64, i);
    /* mapping -> pool */
    memset((uint8_t *)m + 1 * bb, 0xc3, bb);
    blk = pc_pool_block_ptr(p, 1);
    for (uint64_t i = 0; i < bb; i++)
        cr_assert_eq(blk[i], 0xc3);

    /* a prefix of the object is fine; more than it has is not */
    void *m2 = NULL;
    RC_EQ(pc_pool_map(name, bb, &m2), 0);
    map_track(m2, bb);
    memset(pc_pool_block_ptr(p, 0), 0x42, 16);
    cr_assert_eq(((uint8_t *)m2)[15], 0x42);
    map_del(m2);
    m2 = (void *)0x1;
    RC_EQ(pc_pool_map(name, bytes + 1, &m2), PC_E_RANGE);
    RC_EQ(pc_pool_map(name, bytes + 4096, &m2), PC_E_RANGE);

    /* bad names */
    RC_EQ(pc_pool_map("no-slash", bytes, &m2), PC_E_INVAL);
    RC_EQ(pc_pool_map("/a/b", bytes, &m2), PC_E_INVAL);
    RC_EQ(pc_pool_map("/", bytes, &m2), PC_E_INVAL);
    RC_EQ(pc_pool_map(NULL, bytes, &m2), PC_E_INVAL);
    RC_EQ(pc_pool_map(name, bytes, NULL), PC_E_INVAL);
    char longname[PC_POOL_SHM_NAME_MAX + 2];
    memset(longname, 'z', sizeof(longname));
    longname[0] = '/';
    longname[PC_POOL_SHM_NAME_MAX + 1] = '\0';
    RC_EQ(pc_pool_map(longname, bytes, &m2), PC_E_INVAL);
    /* a valid name that does not exist */
    char gone[64];
    snprintf(gone, sizeof(gone), "%s", shm_name());
    RC_EQ(pc_pool_map(gone, bytes, &m2), PC_E_NOENT);

    /* destroy unlinks the name; a mapping that is held stays valid */
    char keep[PC_POOL_SHM_NAME_MAX + 1];
    snprintf(keep, sizeof(keep), "%s", name);
    pool_del(p);
    RC_EQ(pc_pool_map(keep, bytes, &m2), PC_E_NOENT);
    cr_assert_eq(((uint8_t *)m)[bb], 0xc3);
    cr_assert_eq(((uint8_t *)m)[3 * bb + 1], (uint8_t)(1 * 7 + 3));
    map_del(m);
}

Test(blockpool, destroy_null_is_noop)
{
    pc_pool_destroy(NULL);
}

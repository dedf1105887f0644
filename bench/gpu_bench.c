/*
 * bench/gpu_bench.c - bandwidth of gpu/'s KV copies and of tier promotion,
 * each against a plain copy of the same bytes measured in the same run
 * (issue 13).
 *
 * Device: --device cuda (the CUDA runtime and gpu/kernels.cu's launchers) or
 * --device fake (gpu/fake.c: "device" memory is host shared memory, launches
 * run the CPU loops of gpu/kernels_cpu.c).  Default: cuda when this build has
 * CUDA and a device is visible, else fake.  On the fake device every figure
 * is a CPU-loop-versus-memcpy comparison, not a GPU number.
 *
 * Setup: one pool allocation of `blocks` blocks in the pool layout
 * (gpu/kernels.h: block id at id x block_bytes, [layer][K|V][token][head]
 * [dim] inside), filled with seeded random bytes whose host image is kept.
 * A list of `ids` distinct random block ids (device memory, one list for
 * every call) and a second one for promotion.  Default shape: Llama-3-8B's
 * layer (8 KV heads x 128 dims, fp16, 16-token pages: 32 KiB per K or V
 * region) with fewer layers and blocks on the fake device, so that it fits.
 *
 * The cases (GB_CASES below; each a row of the report):
 *   gather        one launch: blocks ids[] of one layer -> contiguous K, V
 *                 (the layer advances call by call);   base: D2D copy of
 *                 the same 2 x ids x kv_bytes
 *   scatter       the reverse into layer 0, whose bytes x->buf holds (the
 *                 pool keeps its bytes);               base: the same D2D
 *   pool_to_paged one launch: ids[] -> vLLM paged NHD caches, all layers;
 *                 base: D2D copy of ids x block_bytes
 *   paged_to_pool the reverse;                         base: the same D2D
 *   promote_h2d   what tier promotion does: one copy_async per block from
 *                 pinned host memory into its pool block, on a stream, then
 *                 an event recorded and waited for;   base: ONE H2D copy of
 *                 the same total bytes from the same pinned memory
 * Every copy goes through the ops table (copy_async: cudaMemcpyAsync on the
 * bench's stream + a stream sync, i.e. what cudaMemcpy does, or memmove on
 * the fake), so both sides of a ratio pay the same per-sample wait.
 *
 * Timing: a sample issues `iters` calls (enough to move --sample-bytes)
 * then waits; GB/s = bytes written / wall time (CLOCK_MONOTONIC), 1 GB =
 * 1e9 bytes.  Warm-up samples first, then --reps samples of each side,
 * alternating which side goes first; the value is the median.
 *
 * Validation (every run, after the timing): the pool is read back and must
 * equal its image (every timed call writes back the bytes that were there:
 * a wrong offset anywhere changes it); then each layer is gathered and
 * compared with pc_gpu_gather_cpu on the image, and scattered back; pool ->
 * paged is compared with pc_gpu_pool_to_paged_cpu, then copied back; one
 * promotion; and the pool is checked against the image once more.
 *
 * Output: the table, then JSON (stdout; --json PATH as well).  Exit status:
 * 0, or non-zero for a setup or validation failure; never for a missed
 * target (targets are reported, not asserted).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "bench/common/rng.h"
#include "gpu/dev.h"
#include "gpu/kernels.h"

#ifdef PC_HAVE_CUDA
#include <cuda_runtime_api.h> /* pinned host memory only */
#endif

#define MAX_REPS 101
#define GB 1e9

/* ---- configuration --------------------------------------------------------- */

typedef struct gb_config {
    const char *device;  /* "cuda" | "fake" */
    int gpu;             /* device index */
    const char *preset;  /* "default" | "quick" */
    pc_gpu_geom g;       /* shape; g.capacity = pool blocks */
    uint32_t ids;        /* blocks per call */
    unsigned reps, warmup;
    unsigned iters;      /* 0: from sample_bytes */
    uint64_t sample_bytes;
    uint64_t seed;
    const char *json_path;
} gb_config;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gpu_bench [--device fake|cuda] [--gpu N] [--quick] [--seed N]\n"
            "                 [--json PATH] [--reps N] [--warmup N] [--iters N]\n"
            "                 [--sample-bytes N] [--blocks N] [--ids N] [--layers N]\n"
            "                 [--kv-heads N] [--head-dim N] [--page-tokens N]\n"
            "                 [--elem-bytes 1|2|4]\n"
            "  --device D        cuda (default when built with CUDA and a GPU is\n"
            "                    visible) or fake (host shared memory, CPU loops)\n"
            "  --gpu N           device index (default 0)\n"
            "  --quick           tiny shape, 1 repetition (the ctest smoke run)\n"
            "  --seed N          pool bytes and id lists (default 1)\n"
            "  --json PATH       also write the JSON report to PATH\n"
            "  --reps N          timed samples per side (1..%d; default 7 cuda,\n"
            "                    5 fake)\n"
            "  --warmup N        untimed samples per side first (default 2 cuda,\n"
            "                    1 fake)\n"
            "  --iters N         calls per sample (default: enough to move\n"
            "                    --sample-bytes)\n"
            "  --sample-bytes N  bytes per sample (default 4 GB cuda, 64 MB fake)\n"
            "  --blocks N        pool blocks (default 2048 cuda, 512 fake)\n"
            "  --ids N           blocks per call (default 1024 cuda, 256 fake)\n"
            "  --layers N        (default 32 cuda, 4 fake)\n"
            "  --kv-heads N      (default 8)    --head-dim N     (default 128)\n"
            "  --page-tokens N   (default 16)   --elem-bytes N   (default 2)\n",
            MAX_REPS);
}

/* CUDA when this build has it and a device answers; the fake otherwise. */
static const char *default_device(void)
{
#ifdef PC_HAVE_CUDA
    const pc_gpu_ops *o = pc_gpu_ops_get("cuda");
    int n = 0;
    if (o && o->device_count(&n) == 0 && n > 0)
        return "cuda";
#endif
    return "fake";
}

static void parse_args(int argc, char **argv, gb_config *c)
{
    /* 0 = not given: the device's default applies */
    uint64_t blocks = 0, ids = 0, layers = 0, heads = 0, dim = 0, page = 0, elem = 0;
    uint64_t reps = 0, warmup = UINT64_MAX, sample = 0;
    bool quick = false;
    memset(c, 0, sizeof *c);
    c->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            bench_help();
        if (!strcmp(a, "--quick")) {
            quick = true;
            continue;
        }
        if (!v) /* every other option takes a value */
            bench_usage_die("unknown or incomplete argument '%s'", a);
        i++;
        if (!strcmp(a, "--device")) {
            if (strcmp(v, "fake") && strcmp(v, "cuda"))
                bench_usage_die("--device: fake or cuda, not '%s'", v);
            c->device = v;
        } else if (!strcmp(a, "--gpu"))
            c->gpu = (int)bench_arg_u64(v, a, 0, 1023);
        else if (!strcmp(a, "--seed"))
            c->seed = bench_arg_u64(v, a, 0, UINT64_MAX);
        else if (!strcmp(a, "--json"))
            c->json_path = v;
        else if (!strcmp(a, "--reps"))
            reps = bench_arg_u64(v, a, 1, MAX_REPS);
        else if (!strcmp(a, "--warmup"))
            warmup = bench_arg_u64(v, a, 0, 100);
        else if (!strcmp(a, "--iters"))
            c->iters = (unsigned)bench_arg_u64(v, a, 1, 1000000);
        else if (!strcmp(a, "--sample-bytes"))
            sample = bench_arg_u64(v, a, 1, UINT64_MAX / 2);
        else if (!strcmp(a, "--blocks"))
            blocks = bench_arg_u64(v, a, 1, UINT32_MAX);
        else if (!strcmp(a, "--ids"))
            ids = bench_arg_u64(v, a, 1, UINT32_MAX);
        else if (!strcmp(a, "--layers"))
            layers = bench_arg_u64(v, a, 1, 1024);
        else if (!strcmp(a, "--kv-heads"))
            heads = bench_arg_u64(v, a, 1, 1024);
        else if (!strcmp(a, "--head-dim"))
            dim = bench_arg_u64(v, a, 1, 4096);
        else if (!strcmp(a, "--page-tokens"))
            page = bench_arg_u64(v, a, 1, 4096);
        else if (!strcmp(a, "--elem-bytes")) {
            elem = bench_arg_u64(v, a, 1, 4);
            if (elem == 3)
                bench_usage_die("--elem-bytes: 1, 2 or 4");
        } else
            bench_usage_die("unknown argument '%s'", a);
    }
    if (!c->device)
        c->device = default_device();
    bool cuda = !strcmp(c->device, "cuda");
    c->preset = quick ? "quick" : "default";
    /* Llama-3-8B's layer: 8 KV heads x 128 dims, fp16, 16-token pages.  The
     * fake device keeps the layer and drops layers and blocks, so that a
     * 2-CPU machine runs it in seconds and /dev/shm holds it. */
    pc_gpu_geom d = {.layers = cuda ? 32 : 4, .kv_heads = 8, .head_dim = 128,
                     .page_tokens = 16, .elem_bytes = 2, .capacity = cuda ? 2048 : 512};
    uint32_t d_ids = cuda ? 1024 : 256;
    uint64_t d_reps = cuda ? 7 : 5, d_warm = cuda ? 2 : 1;
    uint64_t d_sample = cuda ? 4000000000ull : 64000000ull;
    if (quick) { /* a few ms: 1 KiB blocks, a 4 KiB gather */
        d = (pc_gpu_geom){.layers = 2, .kv_heads = 2, .head_dim = 16, .page_tokens = 4,
                          .elem_bytes = 2, .capacity = 64};
        d_ids = 16, d_reps = 1, d_warm = 1, d_sample = 1;
    }
    c->g.layers = layers ? (uint32_t)layers : d.layers;
    c->g.kv_heads = heads ? (uint32_t)heads : d.kv_heads;
    c->g.head_dim = dim ? (uint32_t)dim : d.head_dim;
    c->g.page_tokens = page ? (uint32_t)page : d.page_tokens;
    c->g.elem_bytes = elem ? (uint32_t)elem : d.elem_bytes;
    c->g.capacity = blocks ? blocks : d.capacity;
    c->ids = ids ? (uint32_t)ids : d_ids;
    c->reps = (unsigned)(reps ? reps : d_reps);
    c->warmup = (unsigned)(warmup != UINT64_MAX ? warmup : d_warm);
    c->sample_bytes = sample ? sample : d_sample;
    if (c->ids > c->g.capacity)
        bench_usage_die("--ids %u: more than the pool's %llu blocks", c->ids,
                        (unsigned long long)c->g.capacity);
    if (pc_gpu_geom_check(&c->g))
        bench_usage_die("the shape overflows");
}

/* ---- the run's state ------------------------------------------------------- */

/* Everything one run allocates; the fields a case reads are set up once by
 * setup() so that the cases themselves only issue work. */
typedef struct gb_ctx {
    const gb_config *c;
    const pc_gpu_ops *ops;
    int dev;
    char dev_name[PC_GPU_NAME_MAX];
    pc_gpu_stream *st;
    pc_gpu_event *ev;
    pc_gpu_geom g;
    uint32_t n;                  /* blocks per call */
    uint64_t kv_bytes, block_bytes, pool_bytes;
    uint8_t *pool;               /* device: the pool allocation */
    uint8_t *image;              /* host: the bytes the pool must hold */
    uint64_t image_sum;
    uint32_t *ids_h, *ids_d;     /* gather / paged list, host and device */
    uint32_t *paged_ids_h, *paged_ids_d; /* a permutation of 0..n-1 */
    uint32_t *prom_ids;          /* promotion list (host: offsets are host math) */
    uint8_t *buf;                /* device: gather's K then V, 2 x n x kv_bytes */
    uint8_t *paged;              /* device: 2 x layers caches of n paged blocks */
    uint64_t paged_stride;       /* bytes between two caches (256-aligned) */
    void **kc_h, **vc_h;         /* cache pointers, host array */
    void **kvc_d;                /* device array: layers K pointers, then V */
    uint8_t *scratch;            /* device: the baselines' other side */
    uint64_t scratch_bytes;
    uint8_t *pinned;             /* host, pinned on cuda: promotion source */
    uint64_t pinned_bytes;
    bool pinned_cuda;
} gb_ctx;

static gb_ctx *g_live; /* for bench_die's cleanup */

static _Noreturn void die_rc(const char *what, int rc)
{
    bench_die("%s failed: %s (%d)", what, pc_strerror(rc), rc);
}

#define CHECK(what, call)                                                      \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_)                                                               \
            die_rc(what, rc_);                                                 \
    } while (0)

static void *dev_alloc(gb_ctx *x, uint64_t bytes, const char *what)
{
    void *p = NULL;
    int rc = x->ops->alloc(x->dev, bytes, &p);
    if (rc)
        bench_die("device alloc of %llu bytes (%s) failed: %s",
                  (unsigned long long)bytes, what, pc_strerror(rc));
    return p;
}

static void dev_free(gb_ctx *x, void *p)
{
    if (p)
        (void)x->ops->free(p);
}

static void *host_pinned(gb_ctx *x, uint64_t bytes)
{
    void *p = NULL;
#ifdef PC_HAVE_CUDA
    if (!strcmp(x->ops->name, "cuda")) {
        /* portable: pinned for every device's context, whatever --gpu is */
        if (cudaHostAlloc(&p, (size_t)bytes, cudaHostAllocPortable) != cudaSuccess)
            bench_die("cudaHostAlloc of %llu bytes failed", (unsigned long long)bytes);
        x->pinned_cuda = true;
        return p;
    }
#endif
    (void)x;
    if (posix_memalign(&p, 4096, (size_t)bytes))
        bench_die("posix_memalign of %llu bytes failed", (unsigned long long)bytes);
    return p;
}

static void host_pinned_free(gb_ctx *x, void *p)
{
    if (!p)
        return;
#ifdef PC_HAVE_CUDA
    if (x->pinned_cuda) {
        (void)cudaFreeHost(p);
        return;
    }
#endif
    (void)x;
    free(p);
}

/* Frees everything (also from bench_die: the fake device's shm objects
 * must not outlive the run). */
static void teardown(gb_ctx *x)
{
    if (!x || !x->ops)
        return;
    if (x->st)
        (void)x->ops->stream_sync(x->st);
    dev_free(x, x->pool);
    dev_free(x, x->ids_d);
    dev_free(x, x->paged_ids_d);
    dev_free(x, x->buf);
    dev_free(x, x->paged);
    dev_free(x, x->kvc_d);
    dev_free(x, x->scratch);
    host_pinned_free(x, x->pinned);
    if (x->ev)
        (void)x->ops->event_destroy(x->ev);
    if (x->st)
        (void)x->ops->stream_destroy(x->st);
    free(x->image);
    free(x->ids_h);
    free(x->paged_ids_h);
    free(x->prom_ids);
    free(x->kc_h);
    free(x->vc_h);
    memset(x, 0, sizeof *x);
}

static void on_die(void)
{
    teardown(g_live);
}

/* Order-dependent 64-bit checksum of p[0..n), which sits at offset `at` of
 * the whole: whole words, then the tail bytes.  Chunks whose lengths are
 * multiples of 8 give the same result as one call over everything. */
static uint64_t checksum(const uint8_t *p, uint64_t n, uint64_t at, uint64_t h)
{
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = bench_mix64(h ^ w) + at + i;
    }
    for (; i < n; i++)
        h = bench_mix64(h ^ p[i]) + at + i;
    return h;
}

/* k distinct ids below cap, in random order (a partial Fisher-Yates). */
static uint32_t *random_ids(uint64_t cap, uint32_t k, uint64_t *rng)
{
    uint32_t *all = bench_xmalloc((size_t)cap * sizeof *all);
    for (uint64_t i = 0; i < cap; i++)
        all[i] = (uint32_t)i;
    for (uint32_t i = 0; i < k; i++) {
        uint64_t j = i + bench_rng_next(rng) % (cap - i);
        uint32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    uint32_t *out = bench_xmalloc((size_t)k * sizeof *out);
    memcpy(out, all, (size_t)k * sizeof *out);
    free(all);
    return out;
}

static void h2d_sync(gb_ctx *x, void *dst, const void *src, uint64_t bytes, const char *what)
{
    CHECK(what, x->ops->copy_async(dst, src, bytes, PC_GPU_H2D, x->st));
    CHECK(what, x->ops->stream_sync(x->st));
}

static void d2h_sync(gb_ctx *x, void *dst, const void *src, uint64_t bytes, const char *what)
{
    CHECK(what, x->ops->copy_async(dst, src, bytes, PC_GPU_D2H, x->st));
    CHECK(what, x->ops->stream_sync(x->st));
}

static void setup(gb_ctx *x, const gb_config *c)
{
    memset(x, 0, sizeof *x);
    x->c = c;
    x->ops = pc_gpu_ops_get(c->device);
    if (!x->ops)
        bench_die("--device %s: not in this build (configured without CUDA)", c->device);
#ifndef PC_HAVE_CUDA
    if (!strcmp(c->device, "cuda"))
        bench_die("--device cuda: the kernels were built without CUDA");
#endif
    g_live = x;
    bench_cli.on_die = on_die;
    int ndev = 0, rc = x->ops->device_count(&ndev);
    if (rc)
        bench_die("--device %s: no usable device (device_count: %s)", c->device,
                  pc_strerror(rc));
    if (c->gpu >= ndev)
        bench_die("--device %s: no device %d (%d visible)", c->device, c->gpu, ndev);
    x->dev = c->gpu;
    if (x->ops->device_name(x->dev, x->dev_name, sizeof x->dev_name))
        snprintf(x->dev_name, sizeof x->dev_name, "unknown");
    CHECK("stream_create", x->ops->stream_create(x->dev, &x->st));
    CHECK("event_create", x->ops->event_create(x->dev, &x->ev));

    x->g = c->g;
    x->n = c->ids;
    x->kv_bytes = pc_gpu_kv_bytes(&x->g);
    x->block_bytes = pc_gpu_block_bytes(&x->g);
    x->pool_bytes = x->g.capacity * x->block_bytes;
    uint64_t n = x->n;

    /* The pool and its image: seeded random bytes, kept on the host. */
    uint64_t rng = bench_mix64(c->seed ^ 0x706f6f6cULL);
    x->image = bench_xmalloc((size_t)x->pool_bytes);
    for (uint64_t i = 0; i < x->pool_bytes; i += 8) {
        uint64_t w = bench_rng_next(&rng);
        memcpy(x->image + i, &w, x->pool_bytes - i < 8 ? x->pool_bytes - i : 8);
    }
    x->image_sum = checksum(x->image, x->pool_bytes, 0, 0);
    x->pool = dev_alloc(x, x->pool_bytes, "pool");
    h2d_sync(x, x->pool, x->image, x->pool_bytes, "pool upload");

    /* The id lists: gather/paged, the paged slots, promotion. */
    x->ids_h = random_ids(x->g.capacity, x->n, &rng);
    x->paged_ids_h = random_ids(n, x->n, &rng);
    x->prom_ids = random_ids(x->g.capacity, x->n, &rng);
    x->ids_d = dev_alloc(x, n * sizeof(uint32_t), "ids");
    x->paged_ids_d = dev_alloc(x, n * sizeof(uint32_t), "paged ids");
    h2d_sync(x, x->ids_d, x->ids_h, n * sizeof(uint32_t), "ids upload");
    h2d_sync(x, x->paged_ids_d, x->paged_ids_h, n * sizeof(uint32_t), "paged ids upload");

    /* gather's contiguous K and V, back to back: one D2D baseline covers both */
    x->buf = dev_alloc(x, 2 * n * x->kv_bytes, "gather buffer");

    /* vLLM's per-layer K and V caches of n paged blocks, 256-byte aligned
     * (the CUDA launcher needs 16, as cudaMalloc'd tensors are). */
    x->paged_stride = (n * x->kv_bytes + 255) / 256 * 256;
    uint64_t ncache = 2ull * x->g.layers;
    x->paged = dev_alloc(x, ncache * x->paged_stride, "paged caches");
    x->kc_h = bench_xcalloc(x->g.layers, sizeof(void *));
    x->vc_h = bench_xcalloc(x->g.layers, sizeof(void *));
    void **all = bench_xcalloc((size_t)ncache, sizeof(void *));
    for (uint32_t l = 0; l < x->g.layers; l++) {
        all[l] = x->kc_h[l] = x->paged + (2ull * l) * x->paged_stride;
        all[x->g.layers + l] = x->vc_h[l] = x->paged + (2ull * l + 1) * x->paged_stride;
    }
    x->kvc_d = dev_alloc(x, ncache * sizeof(void *), "cache pointers");
    h2d_sync(x, x->kvc_d, all, ncache * sizeof(void *), "cache pointers upload");
    free(all);

    /* The baselines' far side: as large as the largest case's bytes. */
    x->scratch_bytes = n * x->block_bytes;
    x->scratch = dev_alloc(x, x->scratch_bytes, "scratch");
    h2d_sync(x, x->scratch, x->image, x->scratch_bytes, "scratch fill");

    /* Promotion's source: the pool's own bytes of prom_ids[i] at i, so that
     * a promotion leaves the pool as it was (the final checksum checks it). */
    x->pinned_bytes = n * x->block_bytes;
    x->pinned = host_pinned(x, x->pinned_bytes);
    for (uint64_t i = 0; i < n; i++)
        memcpy(x->pinned + i * x->block_bytes,
               x->image + (uint64_t)x->prom_ids[i] * x->block_bytes, (size_t)x->block_bytes);
}

/* ---- launches ----------------------------------------------------------------- */

/* Arguments of one kernel call; the launch hook gets the host side (the
 * fake device runs the CPU loop) or the device side (a CUDA launcher on
 * the native stream).  Consumed at launch: a stack copy is enough. */
typedef struct gb_kargs {
    const gb_ctx *x;
    uint32_t layer;
    int to_pool;
} gb_kargs;

static int copy_host(void *a)
{
    const gb_kargs *k = a;
    const gb_ctx *x = k->x;
    uint8_t *bk = x->buf, *bv = x->buf + (uint64_t)x->n * x->kv_bytes;
    return k->to_pool ? pc_gpu_scatter_cpu(&x->g, x->pool, x->ids_d, x->n, k->layer, bk, bv)
                      : pc_gpu_gather_cpu(&x->g, x->pool, x->ids_d, x->n, k->layer, bk, bv);
}

static int paged_host(void *a)
{
    const gb_kargs *k = a;
    const gb_ctx *x = k->x;
    if (k->to_pool)
        return pc_gpu_paged_to_pool_cpu(&x->g, x->pool, x->ids_d, x->paged_ids_d, x->n, x->n,
                                        (const void *const *)x->kc_h,
                                        (const void *const *)x->vc_h);
    return pc_gpu_pool_to_paged_cpu(&x->g, x->pool, x->ids_d, x->paged_ids_d, x->n, x->n,
                                    x->kc_h, x->vc_h);
}

#ifdef PC_HAVE_CUDA
static int copy_device(void *stream, void *a)
{
    const gb_kargs *k = a;
    const gb_ctx *x = k->x;
    uint8_t *bk = x->buf, *bv = x->buf + (uint64_t)x->n * x->kv_bytes;
    return k->to_pool
               ? pc_gpu_scatter_launch(&x->g, x->pool, x->ids_d, x->n, k->layer, bk, bv, stream)
               : pc_gpu_gather_launch(&x->g, x->pool, x->ids_d, x->n, k->layer, bk, bv, stream);
}

static int paged_device(void *stream, void *a)
{
    const gb_kargs *k = a;
    const gb_ctx *x = k->x;
    void **kc = x->kvc_d, **vc = x->kvc_d + x->g.layers;
    if (k->to_pool)
        return pc_gpu_paged_to_pool_launch(&x->g, x->pool, x->ids_d, x->paged_ids_d, x->n, x->n,
                                           (const void *const *)kc, (const void *const *)vc,
                                           stream);
    return pc_gpu_pool_to_paged_launch(&x->g, x->pool, x->ids_d, x->paged_ids_d, x->n, x->n,
                                       kc, vc, stream);
}
#define GB_DEVICE(f) f
#else
#define GB_DEVICE(f) NULL
#endif

static int launch_copy(gb_ctx *x, uint32_t layer, int to_pool)
{
    gb_kargs k = {x, layer, to_pool};
    pc_gpu_launch l = {to_pool ? "scatter" : "gather", copy_host, GB_DEVICE(copy_device), &k};
    return x->ops->launch(x->st, &l);
}

static int launch_paged(gb_ctx *x, int to_pool)
{
    gb_kargs k = {x, 0, to_pool};
    pc_gpu_launch l = {to_pool ? "paged_to_pool" : "pool_to_paged", paged_host,
                       GB_DEVICE(paged_device), &k};
    return x->ops->launch(x->st, &l);
}

/* ---- the cases ------------------------------------------------------------------ */

/* One sample of either side: issue `iters` calls, wait for them.  0 or
 * PC_E_*. */
typedef int (*gb_run_fn)(gb_ctx *x, unsigned iters);

static int run_gather(gb_ctx *x, unsigned iters)
{
    for (unsigned i = 0; i < iters; i++) {
        int rc = launch_copy(x, i % x->g.layers, 0);
        if (rc)
            return rc;
    }
    return x->ops->stream_sync(x->st);
}

/* Scatter writes layer 0 every call: x->buf holds layer 0's bytes
 * (scatter_setup), so the pool keeps its bytes. */
static int run_scatter(gb_ctx *x, unsigned iters)
{
    for (unsigned i = 0; i < iters; i++) {
        int rc = launch_copy(x, 0, 1);
        if (rc)
            return rc;
    }
    return x->ops->stream_sync(x->st);
}

static int run_to_paged(gb_ctx *x, unsigned iters)
{
    for (unsigned i = 0; i < iters; i++) {
        int rc = launch_paged(x, 0);
        if (rc)
            return rc;
    }
    return x->ops->stream_sync(x->st);
}

static int run_to_pool(gb_ctx *x, unsigned iters)
{
    for (unsigned i = 0; i < iters; i++) {
        int rc = launch_paged(x, 1);
        if (rc)
            return rc;
    }
    return x->ops->stream_sync(x->st);
}

/* The reverse copies must write back what is there (the pool is checked
 * at the end), and the forward cases' baselines overwrite x->buf and the
 * paged caches: fill them again, untimed, before the reverse case runs. */
static int scatter_setup(gb_ctx *x)
{
    int rc = launch_copy(x, 0, 0);
    return rc ? rc : x->ops->stream_sync(x->st);
}

static int to_pool_setup(gb_ctx *x)
{
    int rc = launch_paged(x, 0);
    return rc ? rc : x->ops->stream_sync(x->st);
}

/* What the daemon's tier promotion does: one async copy per block (blocks
 * are scattered in the pool), then an event the promoter polls or waits
 * on. */
static int run_promote(gb_ctx *x, unsigned iters)
{
    for (unsigned it = 0; it < iters; it++)
        for (uint32_t i = 0; i < x->n; i++) {
            int rc = x->ops->copy_async(x->pool + (uint64_t)x->prom_ids[i] * x->block_bytes,
                                        x->pinned + (uint64_t)i * x->block_bytes,
                                        x->block_bytes, PC_GPU_H2D, x->st);
            if (rc)
                return rc;
        }
    int rc = x->ops->event_record(x->ev, x->st);
    return rc ? rc : x->ops->event_sync(x->ev);
}

/* A plain copy of `bytes`, iters times, on the same stream. */
static int plain_copy(gb_ctx *x, unsigned iters, void *dst, const void *src, uint64_t bytes,
                      pc_gpu_copy_kind kind)
{
    for (unsigned i = 0; i < iters; i++) {
        int rc = x->ops->copy_async(dst, src, bytes, kind, x->st);
        if (rc)
            return rc;
    }
    return x->ops->stream_sync(x->st);
}

static uint64_t bytes_layer(const gb_ctx *x) { return 2ull * x->n * x->kv_bytes; }
static uint64_t bytes_blocks(const gb_ctx *x) { return (uint64_t)x->n * x->block_bytes; }

static int base_d2d_into_buf(gb_ctx *x, unsigned iters)
{
    return plain_copy(x, iters, x->buf, x->scratch, bytes_layer(x), PC_GPU_D2D);
}

static int base_d2d_from_buf(gb_ctx *x, unsigned iters)
{
    return plain_copy(x, iters, x->scratch, x->buf, bytes_layer(x), PC_GPU_D2D);
}

static int base_d2d_into_paged(gb_ctx *x, unsigned iters)
{
    return plain_copy(x, iters, x->paged, x->scratch, bytes_blocks(x), PC_GPU_D2D);
}

static int base_d2d_from_paged(gb_ctx *x, unsigned iters)
{
    return plain_copy(x, iters, x->scratch, x->paged, bytes_blocks(x), PC_GPU_D2D);
}

static int base_h2d(gb_ctx *x, unsigned iters)
{
    return plain_copy(x, iters, x->scratch, x->pinned, bytes_blocks(x), PC_GPU_H2D);
}

/*
 * One row of the report: an operation and its baseline, both moving
 * bytes(x) per call, run in table order.  Rows share the state setup()
 * built; a row's own `setup` runs (untimed) just before its samples and its
 * `teardown` just after.  Whatever a row does, the pool must hold its
 * original bytes afterwards: the final checksum covers every row.
 *
 * The host pool's file tier ("promotion vs pread of the same bytes") is
 * bench/tier_bench.c: it needs a cache (pool, tree, tier), not a device.
 */
typedef struct gb_case {
    const char *key;        /* JSON name; "<key>_gbps" in repetitions */
    const char *label;      /* table label */
    const char *base_name;  /* what the baseline is */
    const char *ratio_def;
    uint64_t (*bytes)(const gb_ctx *x); /* bytes one call writes */
    gb_run_fn op, base;
    int (*setup)(gb_ctx *x);     /* optional, untimed, before the samples */
    void (*teardown)(gb_ctx *x); /* optional, after them */
} gb_case;

static const gb_case GB_CASES[] = {
    {"gather", "gather 1 layer, ids -> contiguous K,V", "D2D copy, same bytes",
     "gather / copy", bytes_layer, run_gather, base_d2d_into_buf, NULL, NULL},
    {"scatter", "scatter contiguous K,V -> ids, layer 0", "D2D copy, same bytes",
     "scatter / copy", bytes_layer, run_scatter, base_d2d_from_buf, scatter_setup, NULL},
    {"pool_to_paged", "pool -> paged NHD, ids, all layers", "D2D copy, same bytes",
     "pool_to_paged / copy", bytes_blocks, run_to_paged, base_d2d_into_paged, NULL, NULL},
    {"paged_to_pool", "paged NHD -> pool, ids, all layers", "D2D copy, same bytes",
     "paged_to_pool / copy", bytes_blocks, run_to_pool, base_d2d_from_paged, to_pool_setup,
     NULL},
    {"promote_h2d", "promote: per-block H2D + event", "one H2D copy, pinned",
     "promote / copy", bytes_blocks, run_promote, base_h2d, NULL, NULL},
};
#define NCASES (sizeof GB_CASES / sizeof GB_CASES[0])

/* The target, on a GPU: a copy kernel or a promotion within 0.8x of a
 * plain copy of the same bytes.  The fake device compares CPU loops with
 * memcpy: reported, no target. */
#define GB_TARGET 0.8

typedef struct gb_result {
    unsigned iters;
    double op[MAX_REPS], base[MAX_REPS]; /* GB/s per sample */
    double op_med, base_med;
} gb_result;

static double timed(gb_ctx *x, gb_run_fn f, unsigned iters, const char *what)
{
    uint64_t t0 = bench_now_ns();
    int rc = f(x, iters);
    uint64_t t1 = bench_now_ns();
    if (rc)
        die_rc(what, rc);
    return (double)(t1 - t0);
}

static double median_of(const double *v, unsigned n)
{
    double s[MAX_REPS];
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, bench_cmp_double);
    return bench_median_sorted(s, n);
}

static void run_case(gb_ctx *x, const gb_case *k, gb_result *r)
{
    const gb_config *c = x->c;
    uint64_t b = k->bytes(x);
    uint64_t want = (c->sample_bytes + b - 1) / b; /* >= 1 */
    r->iters = c->iters ? c->iters : want > 1000000 ? 1000000 : (unsigned)want;
    double bytes = (double)b * r->iters;
    for (unsigned s = 0; s < c->warmup + c->reps; s++) {
        double t_op, t_base;
        if (s % 2) { /* alternate which side runs first */
            t_base = timed(x, k->base, r->iters, k->base_name);
            t_op = timed(x, k->op, r->iters, k->key);
        } else {
            t_op = timed(x, k->op, r->iters, k->key);
            t_base = timed(x, k->base, r->iters, k->base_name);
        }
        if (s >= c->warmup) {
            r->op[s - c->warmup] = bytes / t_op;  /* bytes per ns = GB/s */
            r->base[s - c->warmup] = bytes / t_base;
        }
    }
    r->op_med = median_of(r->op, c->reps);
    r->base_med = median_of(r->base, c->reps);
    bench_say("%-14s %8.2f GB/s vs %8.2f GB/s (%.2fx), %u calls of %llu bytes per sample",
              k->key, r->op_med, r->base_med, r->op_med / r->base_med, r->iters,
              (unsigned long long)b);
}

/* ---- validation ----------------------------------------------------------------- */

typedef struct gb_check {
    bool timed_ok;            /* the pool held its bytes after the timed runs */
    bool gather_ok, paged_ok; /* device output = the CPU loops on the image */
    bool pool_ok;             /* ... and after the validation's calls */
    uint64_t pool_sum;
    uint32_t layers_checked;
} gb_check;

/* Reads the whole pool back in chunks (buf: chunk bytes, a multiple of 8)
 * and compares it with the image: true when equal; *sum gets its
 * checksum.  Says where it first differs otherwise. */
static bool pool_intact(gb_ctx *x, uint8_t *buf, uint64_t chunk, const char *when,
                        uint64_t *sum)
{
    uint64_t h = 0, bad = UINT64_MAX;
    for (uint64_t off = 0; off < x->pool_bytes; off += chunk) {
        uint64_t len = x->pool_bytes - off < chunk ? x->pool_bytes - off : chunk;
        d2h_sync(x, buf, x->pool + off, len, "pool read-back");
        h = checksum(buf, len, off, h);
        if (bad == UINT64_MAX && memcmp(buf, x->image + off, (size_t)len))
            for (uint64_t i = 0; i < len; i++)
                if (buf[i] != x->image[off + i]) {
                    bad = off + i;
                    break;
                }
    }
    *sum = h;
    bool ok = h == x->image_sum && bad == UINT64_MAX;
    if (!ok)
        fprintf(stderr, "gpu_bench: the pool changed %s (checksum %016llx, was %016llx; "
                "first difference in block %llu)\n", when, (unsigned long long)h,
                (unsigned long long)x->image_sum,
                bad == UINT64_MAX ? 0ull : (unsigned long long)(bad / x->block_bytes));
    return ok;
}

static void validate(gb_ctx *x, gb_check *v)
{
    uint64_t half = (uint64_t)x->n * x->kv_bytes;
    uint64_t nb = bytes_blocks(x);
    uint64_t chunk = (nb + 7) / 8 * 8; /* the pool read-back's step: whole words */
    uint8_t *got = bench_xmalloc((size_t)chunk), *ref = bench_xmalloc((size_t)nb);
    memset(v, 0, sizeof *v);

    /* First what the timed calls left: the comparisons below are against
     * the image, so they only say something about the kernels when the
     * pool still holds it. */
    v->timed_ok = pool_intact(x, got, chunk, "during the timed runs", &v->pool_sum);

    /* Every layer: the device's gather equals the CPU loop on the image. */
    v->gather_ok = true;
    for (uint32_t l = 0; l < x->g.layers; l++) {
        CHECK("gather", launch_copy(x, l, 0));
        d2h_sync(x, got, x->buf, 2 * half, "gather read-back");
        CHECK("pc_gpu_gather_cpu",
              pc_gpu_gather_cpu(&x->g, x->image, x->ids_h, x->n, l, ref, ref + half));
        if (memcmp(got, ref, (size_t)(2 * half))) {
            fprintf(stderr, "gpu_bench: gather of layer %u differs from pc_gpu_gather_cpu\n", l);
            v->gather_ok = false;
        }
        CHECK("scatter", launch_copy(x, l, 1));
        v->layers_checked++;
    }

    /* pool -> paged equals the CPU loop, cache by cache; then back. */
    void **rk = bench_xcalloc(x->g.layers, sizeof(void *));
    void **rv = bench_xcalloc(x->g.layers, sizeof(void *));
    for (uint32_t l = 0; l < x->g.layers; l++) {
        rk[l] = ref + (2ull * l) * half;
        rv[l] = ref + (2ull * l + 1) * half;
    }
    CHECK("pool_to_paged", launch_paged(x, 0));
    CHECK("pc_gpu_pool_to_paged_cpu",
          pc_gpu_pool_to_paged_cpu(&x->g, x->image, x->ids_h, x->paged_ids_h, x->n, x->n, rk, rv));
    v->paged_ok = true;
    for (uint32_t l = 0; l < x->g.layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            d2h_sync(x, got, kv ? x->vc_h[l] : x->kc_h[l], half, "paged read-back");
            if (memcmp(got, kv ? rv[l] : rk[l], (size_t)half)) {
                fprintf(stderr, "gpu_bench: paged %s cache of layer %u differs from "
                        "pc_gpu_pool_to_paged_cpu\n", kv ? "V" : "K", l);
                v->paged_ok = false;
            }
        }
    CHECK("paged_to_pool", launch_paged(x, 1));
    CHECK("promotion", run_promote(x, 1));
    free(rk);
    free(rv);

    v->pool_ok = pool_intact(x, got, chunk, "after the validation's own calls", &v->pool_sum);
    free(got);
    free(ref);
}
/* ---- report ------------------------------------------------------------------- */

static const rpt_style STYLE = {
    .label_w = 48, .ratio_w = 7, .target_w = 10, .small_digits = 2,
    .label_cap = 64, .note_cap = 64, .note_head = "baseline / ratio",
    .nan_ratio_info = true,
};

static void json_arr(FILE *f, const double *v, unsigned n)
{
    fputc('[', f);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        rpt_json_num(f, v[i]);
    }
    fputc(']', f);
}

static void print_json(FILE *f, const gb_ctx *x, const gb_result *res, const rpt_row *rows,
                       const gb_check *v, double seconds)
{
    const gb_config *c = x->c;
    bool fake = !strcmp(x->ops->name, "fake");
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    fprintf(f, "{\n  \"bench\": \"gpu_bench\",\n  \"schema\": 1,\n");
    fprintf(f, "  \"preset\": \"%s\",\n  \"seed\": %llu,\n", c->preset,
            (unsigned long long)c->seed);
    fprintf(f, "  \"device\": {\"ops\": \"%s\", \"index\": %d, \"name\": ", x->ops->name, x->dev);
    rpt_json_str(f, x->dev_name);
    fprintf(f, ", \"note\": ");
    rpt_json_str(f, fake ? "fake device: CPU loops against memcpy, not GPU figures"
                         : "CUDA: kernels and cudaMemcpyAsync on one stream");
    fprintf(f, "},\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", sysconf(_SC_NPROCESSORS_ONLN));
    rpt_json_str(f, cpu);
    fprintf(f, "},\n");
    fprintf(f,
            "  \"config\": {\"layers\": %u, \"kv_heads\": %u, \"head_dim\": %u, "
            "\"page_tokens\": %u, \"elem_bytes\": %u, \"kv_bytes\": %llu, "
            "\"block_bytes\": %llu, \"pool_blocks\": %llu, \"pool_bytes\": %llu, "
            "\"ids_per_call\": %u, \"reps\": %u, \"warmup\": %u, \"sample_bytes\": %llu},\n",
            x->g.layers, x->g.kv_heads, x->g.head_dim, x->g.page_tokens, x->g.elem_bytes,
            (unsigned long long)x->kv_bytes, (unsigned long long)x->block_bytes,
            (unsigned long long)x->g.capacity, (unsigned long long)x->pool_bytes, x->n,
            c->reps, c->warmup, (unsigned long long)c->sample_bytes);
    fprintf(f, "  \"seconds\": ");
    rpt_json_num(f, seconds);
    fprintf(f, ",\n  \"metrics\": [\n");
    rpt_json_metrics(f, &STYLE, rows, NCASES);
    fprintf(f, "  ],\n  \"repetitions\": {\n");
    for (size_t i = 0; i < NCASES; i++) {
        fprintf(f, "    \"%s_calls_per_sample\": %u,\n", GB_CASES[i].key, res[i].iters);
        fprintf(f, "    \"%s_gbps\": ", GB_CASES[i].key);
        json_arr(f, res[i].op, c->reps);
        fprintf(f, ",\n    \"%s_baseline_gbps\": ", GB_CASES[i].key);
        json_arr(f, res[i].base, c->reps);
        fprintf(f, "%s\n", i + 1 < NCASES ? "," : "");
    }
    fprintf(f, "  },\n");
    fprintf(f,
            "  \"validation\": {\"pool_unchanged_by_timed_runs\": %s, "
            "\"gather_equals_cpu\": %s, \"layers_checked\": %u, "
            "\"pool_to_paged_equals_cpu\": %s, \"pool_unchanged\": %s, "
            "\"pool_checksum_before\": \"%016llx\", \"pool_checksum_after\": \"%016llx\"}\n",
            v->timed_ok ? "true" : "false", v->gather_ok ? "true" : "false", v->layers_checked,
            v->paged_ok ? "true" : "false", v->pool_ok ? "true" : "false",
            (unsigned long long)x->image_sum,
            (unsigned long long)v->pool_sum);
    fprintf(f, "}\n");
}

int main(int argc, char **argv)
{
    bench_cli_init("gpu_bench");
    bench_cli.usage = usage;
    gb_config c;
    parse_args(argc, argv, &c);
    uint64_t t_start = bench_now_ns();

    gb_ctx x;
    setup(&x, &c);
    bool fake = !strcmp(x.ops->name, "fake");
    bench_say("device %s %d (%s); pool %llu blocks of %llu bytes (%u layers, kv %llu bytes); "
              "%u ids per call; %u warm-up + %u samples",
              x.ops->name, x.dev, x.dev_name, (unsigned long long)x.g.capacity,
              (unsigned long long)x.block_bytes, x.g.layers, (unsigned long long)x.kv_bytes,
              x.n, c.warmup, c.reps);

    gb_result *res = bench_xcalloc(NCASES, sizeof *res);
    for (size_t i = 0; i < NCASES; i++) {
        const gb_case *k = &GB_CASES[i];
        if (k->setup)
            CHECK(k->key, k->setup(&x));
        run_case(&x, k, &res[i]);
        if (k->teardown)
            k->teardown(&x);
    }
    gb_check v;
    validate(&x, &v);

    rpt_row rows[NCASES];
    for (size_t i = 0; i < NCASES; i++) {
        const gb_case *k = &GB_CASES[i];
        rows[i] = (rpt_row){
            .key = k->key, .label = k->label, .unit = "GB/s", .value = res[i].op_med,
            .baseline_name = k->base_name, .baseline = res[i].base_med,
            .ratio_def = k->ratio_def, .ratio = res[i].op_med / res[i].base_med,
            .target_kind = fake ? RPT_NONE : RPT_RATIO_GE, .target = GB_TARGET,
        };
    }
    double seconds = (double)(bench_now_ns() - t_start) / 1e9;
    printf("gpu_bench: device %s %d (%s)%s\n", x.ops->name, x.dev, x.dev_name,
           fake ? " -- CPU loops against memcpy, not GPU figures; targets apply on a GPU" : "");
    rpt_print_table(stdout, &STYLE, rows, NCASES);
    printf("validation: pool %s by the timed runs, gather %s (%u layers), "
           "pool->paged %s, pool %s at the end\n",
           v.timed_ok ? "unchanged" : "CHANGED", v.gather_ok ? "= CPU reference" : "DIFFERS",
           v.layers_checked, v.paged_ok ? "= CPU reference" : "DIFFERS",
           v.pool_ok ? "unchanged" : "CHANGED");
    print_json(stdout, &x, res, rows, &v, seconds);
    if (c.json_path) {
        FILE *f = fopen(c.json_path, "w");
        if (!f)
            bench_die("%s: %s", c.json_path, strerror(errno));
        print_json(f, &x, res, rows, &v, seconds);
        if (fclose(f))
            bench_die("%s: %s", c.json_path, strerror(errno));
    }
    bool ok = v.timed_ok && v.gather_ok && v.paged_ok && v.pool_ok;
    free(res);
    g_live = NULL;
    teardown(&x);
    return ok ? 0 : 1;
}

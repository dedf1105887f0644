/*
 * bench/radix_bench.c - performance of the radix tree (radix/radix.h) against
 * a hash-chain index (bench/hashchain.c) and a memcmp floor, in one run.
 *
 * Workload W1 (default preset): page_tokens P = 16; G = 100 shared prefixes of
 * 2,048 tokens, each followed by S = 1,000 distinct 256-token suffixes, i.e.
 * 100,000 cached sequences of 2,304 tokens (1,612,800 unique pages).  Token ids
 * are splitmix64 outputs reduced to [0, 128000), from --seed.  Block ids are
 * unique per page: page i of group g's prefix is g*128 + i, page j of sequence
 * s's suffix is G*128 + s*16 + j.  Sequence s belongs to group s / S.
 *
 * Per repetition (3 by default; the reported value is the median over them):
 *   1. build: insert all sequences in a random order into a fresh tree and a
 *      fresh hash-chain table (interleaved per sequence, each call timed on its
 *      own; the tokens are copied into a buffer outside the timing).  A second,
 *      identical table is filled untimed for the prefetching variant.
 *   2. lookups: NQ queries, sequence ids uniform over all sequences (one list,
 *      fixed by the seed, used by every contender and repetition), in batches
 *      of 32.  For each batch the 32 prompts are materialised outside the
 *      timing (regenerated from the seed, so the stored copies stay as cold as
 *      the tree), then the four contenders run the same 32 prompts, each timed
 *      as one batch with clock_gettime(CLOCK_MONOTONIC); sample = batch / 32.
 *      Contenders: radix (pc_radix_match, no flags, blocks out), hashchain
 *      (the plain hash-probe walk: the baseline), hashchain_pf (hash ahead +
 *      prefetch, on its own table), memcmp (the floor).  The contender order
 *      rotates from batch to batch.  Every result is checked (match length
 *      and every block id) outside the timing.
 *      Two query kinds: "full" (a cached 2,304-token prompt) and "diverge"
 *      (same sequence, tokens from 2048+128+5 on replaced: 136 pages match).
 *   3. eviction: trees of ~100k and ~1M pages (2,048-token prefixes with 617
 *      suffixes of 256 tokens each: 10 and 100 prefixes), inserted in random
 *      order; evict 10% of the pages in pc_radix_evict calls of 1,024 pages,
 *      timing only the evict calls.
 *   4. cycle: the cache layer (cache/cache.h) as an engine drives it.  A
 *      pc_cache over a "none" pool (index only) holding 50% of W1's unique
 *      pages, so that eviction runs constantly.  One cycle = one W1 prompt
 *      (uniform over all sequences): lookup(pin=1) -> m pages, alloc(np - m)
 *      under the lease, insert(prompt, cached ids + new ids), release.  After
 *      a warm-up (cycles until 2x the capacity in pages has been inserted),
 *      batches of 32 cycles and batches of 32 bare lookups (pin=0) alternate,
 *      each batch timed as a whole; the two use different prompts from the
 *      same distribution, so neither warms the other's prompt-specific data,
 *      and the batch order alternates.  Then an un-batched diagnostic pass
 *      times each of the four calls on its own.  Checked outside the timing:
 *      every insert's result and canonical ids, a peek of one prompt per batch
 *      (fully cached with the ids the cycle gave it), pc_cache_check() after
 *      the warm-up and at the end.
 * Before each timed build and each timed eviction, jemalloc's dirty pages are
 * purged (arena.<all>.purge) so that the purging caused by freeing an earlier
 * phase's 100+ MB does not land inside a later timed region (it did: it made
 * eviction of the 100k-page tree read 100-500 ns/page instead of ~12).
 * The tree is verified with pc_radix_check() after the first build (and after
 * the first evictions); the bench aborts if that fails.
 *
 * Output: a table (stdout), then JSON (stdout, and --json PATH).  Progress goes
 * to stderr.  The exit status does not depend on PASS/FAIL (timings are never
 * asserted); it is non-zero only when something is wrong (a bad match, a
 * failed check, an allocation failure).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "bench/common/rng.h"
#include "bench/hashchain.h"
#include "cache/cache.h"
#include "cache/inspect.h"
#include "radix/radix.h"

/* jemalloc's mallctl, when jemalloc is linked (release builds): used only to
 * cross-check the tree's own metadata_bytes accounting. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
                   size_t newlen) __attribute__((weak));

#define VOCAB 128000u
#define GAMMA 0x9e3779b97f4a7c15ULL
#define BATCH 32
#define EVICT_CHUNK 1024
#define MAX_REPS 15

static const char NS[] = "llama-3.1-8b-instruct|lora:none|tenant:bench";
#define NS_LEN (sizeof NS - 1)

/* ---- small utilities ------------------------------------------------------ */

/* A sorted copy of v[0..n) (free it). */
static double *sorted_copy(const double *v, size_t n)
{
    double *c = bench_xmalloc(n * sizeof *c);
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, bench_cmp_double);
    return c;
}

/* q-quantile (0..1) of v[0..n) by the nearest-rank method; sorts a copy. */
static double quantile(const double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    double *c = sorted_copy(v, n);
    double r = bench_quantile_sorted(c, n, q);
    free(c);
    return r;
}

static double median(const double *v, size_t n)
{
    if (n == 0)
        return NAN;
    double *c = sorted_copy(v, n);
    double r = bench_median_sorted(c, n);
    free(c);
    return r;
}

/* Net bytes this thread holds from jemalloc; -1 without jemalloc. */
static int64_t jemalloc_net_bytes(void)
{
    if (mallctl == NULL)
        return -1;
    uint64_t a = 0, d = 0;
    size_t sz = sizeof a;
    if (mallctl("thread.allocated", &a, &sz, NULL, 0) != 0)
        return -1;
    sz = sizeof d;
    if (mallctl("thread.deallocated", &d, &sz, NULL, 0) != 0)
        return -1;
    return (int64_t)(a - d);
}

/* Return the allocator's dirty pages to the kernel now (jemalloc only), so
 * that the purging caused by earlier phases (freeing a 100+ MB tree) does not
 * land inside a later timed region. */
static void allocator_quiesce(void)
{
    if (mallctl == NULL)
        return;
    /* MALLCTL_ARENAS_ALL = 4096 */
    (void)mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
}

/* ---- workload shape and token generation ---------------------------------- */

typedef struct shape {
    uint32_t world;       /* separates the token streams of different trees */
    size_t groups;        /* shared prefixes                                */
    size_t suffixes;      /* suffixes per prefix                            */
    size_t prefix_tokens; /* 2048                                           */
    size_t suffix_tokens; /* 256                                            */
    uint32_t P;           /* page tokens                                    */
} shape;

static size_t sh_seqs(const shape *w) { return w->groups * w->suffixes; }
static size_t sh_tokens(const shape *w)
{
    return w->prefix_tokens + w->suffix_tokens;
}
static size_t sh_prefix_pages(const shape *w)
{
    return w->prefix_tokens / w->P;
}
static size_t sh_suffix_pages(const shape *w)
{
    return w->suffix_tokens / w->P;
}
static size_t sh_pages(const shape *w) /* unique pages of the whole set */
{
    return w->groups * sh_prefix_pages(w) + sh_seqs(w) * sh_suffix_pages(w);
}

enum { STREAM_PREFIX = 1, STREAM_SUFFIX = 2, STREAM_DIVERGE = 3 };

static uint64_t stream_base(uint64_t seed, uint32_t world, uint32_t kind,
                            uint64_t id)
{
    return bench_mix64(seed ^ bench_mix64(((uint64_t)world << 56) ^
                                          ((uint64_t)kind << 48) ^ id ^ GAMMA));
}

static void gen_tokens(uint64_t base, uint32_t *out, size_t n)
{
    uint64_t st = base;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)(bench_rng_next(&st) % VOCAB);
}

/* Block id of page p of sequence s (the same for the tree and the table). */
static inline uint32_t expected_block(const shape *w, size_t s, size_t p)
{
    size_t pp = sh_prefix_pages(w);
    if (p < pp)
        return (uint32_t)((s / w->suffixes) * pp + p);
    return (uint32_t)(w->groups * pp + s * sh_suffix_pages(w) + (p - pp));
}

static void fill_blocks(const shape *w, size_t s, uint32_t *blocks)
{
    size_t np = sh_prefix_pages(w) + sh_suffix_pages(w);
    for (size_t p = 0; p < np; p++)
        blocks[p] = expected_block(w, s, p);
}

/* A random permutation of 0..n-1. */
static size_t *shuffled(size_t n, uint64_t seed)
{
    size_t *v = bench_xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = i;
    uint64_t st = seed;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(bench_rng_next(&st) % i);
        size_t tmp = v[i - 1];
        v[i - 1] = v[j];
        v[j] = tmp;
    }
    return v;
}

/* ---- configuration -------------------------------------------------------- */

typedef struct config {
    const char *preset;
    uint64_t seed;
    const char *json_path;
    size_t reps;
    size_t queries;
    size_t diverge_at; /* first token that differs in a "diverge" query */
    shape w1;
    shape ev_small, ev_large;
    double evict_fraction;
    size_t cycles;         /* measured cycles (and bare lookups) per rep */
    int run_w1, run_evict, run_cycle; /* --phases */
    unsigned radix_flags;  /* --peek: PC_RADIX_MATCH_PEEK (diagnostic) */
} config;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: radix_bench [--quick] [--seed N] [--json PATH] [--reps N]\n"
            "                   [--queries N] [--cycles N] "
            "[--phases w1,evict,cycle]\n"
            "  (default)    full W1: 100 prefixes x 1000 suffixes, 100000 "
            "queries,\n"
            "               eviction trees of 100k and 1M pages, 100000 cache "
            "cycles,\n"
            "               3 repetitions\n"
            "  --quick      10 prefixes x 100 suffixes, 4096 queries, eviction\n"
            "               trees of 10k and 100k pages, 4096 cycles (smoke "
            "test, < 5 s)\n"
            "  --seed N     token/query seed (default 1)\n"
            "  --json PATH  also write the JSON report to PATH\n"
            "  --reps N     repetitions (1..%d, default 3)\n"
            "  --queries N  lookups per query kind and repetition (multiple of "
            "%d)\n"
            "  --cycles N   cache cycles (and as many bare lookups) per "
            "repetition\n"
            "               (multiple of %d)\n"
            "  --phases L   run only these phases (comma-separated: w1 = "
            "insert,\n"
            "               memory and lookups; evict = eviction; cycle = "
            "cache\n"
            "               lookup+alloc+insert+release cycles); for "
            "profiling\n"
            "  --peek       diagnostic: radix lookups with "
            "PC_RADIX_MATCH_PEEK\n"
            "               (no recency update), to measure what the LRU "
            "update costs\n",
            MAX_REPS, BATCH, BATCH);
}

static void parse_args(int argc, char **argv, config *c)
{
    int quick = 0;
    long long reps = -1, queries = -1, cycles = -1;
    c->seed = 1;
    c->json_path = NULL;
    c->run_w1 = c->run_evict = c->run_cycle = 1;
    c->radix_flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            c->seed = bench_arg_u64(argv[++i], "--seed", 0, UINT64_MAX);
        } else if (!strcmp(a, "--json") && i + 1 < argc) {
            c->json_path = argv[++i];
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            reps = (long long)bench_arg_u64(argv[++i], "--reps", 1, MAX_REPS);
        } else if (!strcmp(a, "--queries") && i + 1 < argc) {
            queries = (long long)bench_arg_u64(argv[++i], "--queries", 0,
                                                 UINT64_MAX);
        } else if (!strcmp(a, "--cycles") && i + 1 < argc) {
            cycles = (long long)bench_arg_u64(argv[++i], "--cycles", 0,
                                                UINT64_MAX);
        } else if (!strcmp(a, "--peek")) {
            c->radix_flags = PC_RADIX_MATCH_PEEK;
        } else if (!strcmp(a, "--phases") && i + 1 < argc) {
            const char *l = argv[++i];
            c->run_w1 = strstr(l, "w1") != NULL;
            c->run_evict = strstr(l, "evict") != NULL;
            c->run_cycle = strstr(l, "cycle") != NULL;
            if (!c->run_w1 && !c->run_evict && !c->run_cycle)
                bench_die("--phases: expected some of w1, evict, cycle; got '%s'",
                          l);
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_help();
        } else {
            bench_usage_die("unknown or incomplete argument '%s'", a);
        }
    }
    shape base = {.world = 1, .prefix_tokens = 2048, .suffix_tokens = 256,
                  .P = 16};
    c->w1 = base;
    c->ev_small = base;
    c->ev_large = base;
    c->ev_small.world = 2;
    c->ev_large.world = 3;
    /* 617 suffixes: one group = 128 + 617*16 = 10,000 pages exactly. */
    c->ev_small.suffixes = c->ev_large.suffixes = 617;
    if (quick) {
        c->preset = "quick";
        c->w1.groups = 10;
        c->w1.suffixes = 100;
        c->queries = 4096;
        c->cycles = 4096;
        c->ev_small.groups = 1;  /* 10,000 pages  */
        c->ev_large.groups = 10; /* 100,000 pages */
    } else {
        c->preset = "full";
        c->w1.groups = 100;
        c->w1.suffixes = 1000;
        c->queries = 100000;
        c->cycles = 100000;
        c->ev_small.groups = 10;  /* 100,000 pages   */
        c->ev_large.groups = 100; /* 1,000,000 pages */
    }
    c->reps = 3;
    if (reps >= 0)
        c->reps = (size_t)reps;
    if (queries >= 0)
        c->queries = (size_t)queries;
    c->queries -= c->queries % BATCH;
    if (c->queries == 0)
        bench_die("--queries must be at least %d", BATCH);
    if (cycles >= 0)
        c->cycles = (size_t)cycles;
    c->cycles -= c->cycles % BATCH;
    if (c->cycles == 0)
        bench_die("--cycles must be at least %d", BATCH);
    c->diverge_at = 2048 + 128 + 5;
    c->evict_fraction = 0.10;
}

/* ---- results --------------------------------------------------------------- */

/* hashchain = the plain walk (hash page i, probe, next page): the baseline
 * as specified; hashchain_pf = hash ahead + prefetch (a stronger variant). */
enum { C_RADIX, C_HC, C_HCPF, C_MEMCMP, NCONT };
static const char *const cont_name[NCONT] = {"radix", "hashchain",
                                             "hashchain_pf", "memcmp"};
enum { Q_FULL, Q_DIVERGE, NKIND };
static const char *const kind_name[NKIND] = {"full", "diverge"};
/* The four calls of a cache cycle (the diagnostic breakdown). */
enum { PART_LOOKUP, PART_ALLOC, PART_INSERT, PART_RELEASE, NPART };
static const char *const part_name[NPART] = {"lookup", "alloc", "insert",
                                             "release"};

typedef struct results {
    size_t reps;
    /* per repetition */
    double lk_median[NKIND][NCONT][MAX_REPS];
    double lk_p99[NKIND][NCONT][MAX_REPS];
    double ins_mean[2][MAX_REPS]; /* radix, hashchain */
    double ins_median[2][MAX_REPS];
    double ins_p99[2][MAX_REPS];
    double ev_small[MAX_REPS], ev_large[MAX_REPS]; /* ns per evicted page */
    size_t ev_small_pages, ev_large_pages;         /* tree sizes          */
    size_t ev_small_evicted, ev_large_evicted;
    double ev_small_bytes_per_token, ev_large_bytes_per_token;
    /* memory of the W1 tree (first repetition) */
    pc_radix_stats w1;
    size_t hc_bytes, hc_entries, hc_capacity;
    int64_t jemalloc_tree_bytes; /* -1 when unknown */
    /* cycle phase, per repetition: batched cycles and bare lookups (ns per
     * op, over batch means), hit rates (cached / requested pages), pages
     * evicted per cycle, and the un-batched breakdown (clock cost
     * subtracted) */
    double cy_median[MAX_REPS], cy_p99[MAX_REPS], cy_mean[MAX_REPS];
    double cl_median[MAX_REPS], cl_p99[MAX_REPS], cl_mean[MAX_REPS];
    double cy_hit[MAX_REPS], cl_hit[MAX_REPS];
    double cy_evicted[MAX_REPS];
    double cy_part_mean[NPART][MAX_REPS], cy_part_median[NPART][MAX_REPS];
    double cy_bare_mean[MAX_REPS], cy_bare_median[MAX_REPS];
    double cy_diag_hit[MAX_REPS];
    size_t cy_capacity, cy_warmup_cycles, cy_diag_cycles;
    pc_cache_stats cy_stats; /* the cache at the end of the first rep */
    double clock_ns;             /* cost of one clock_gettime */
    double seconds;
} results;

static volatile uint64_t g_sink;

/* ---- phase: build W1 ------------------------------------------------------- */

typedef struct w1_data {
    const shape *w;
    uint32_t *prefix_store; /* groups x prefix_tokens: the memcmp floor's copy */
    uint32_t *suffix_store; /* seqs x suffix_tokens                           */
    uint32_t *qprefix;      /* a second copy of the prefixes, for queries      */
} w1_data;

static void w1_init(w1_data *d, const shape *w, uint64_t seed)
{
    d->w = w;
    size_t G = w->groups, N = sh_seqs(w);
    d->prefix_store = bench_xmalloc(G * w->prefix_tokens * sizeof(uint32_t));
    d->qprefix = bench_xmalloc(G * w->prefix_tokens * sizeof(uint32_t));
    d->suffix_store = bench_xmalloc(N * w->suffix_tokens * sizeof(uint32_t));
    for (size_t g = 0; g < G; g++) {
        gen_tokens(stream_base(seed, w->world, STREAM_PREFIX, g),
                   d->prefix_store + g * w->prefix_tokens, w->prefix_tokens);
        memcpy(d->qprefix + g * w->prefix_tokens,
               d->prefix_store + g * w->prefix_tokens,
               w->prefix_tokens * sizeof(uint32_t));
    }
    for (size_t s = 0; s < N; s++)
        gen_tokens(stream_base(seed, w->world, STREAM_SUFFIX, s),
                   d->suffix_store + s * w->suffix_tokens, w->suffix_tokens);
}

static void w1_free(w1_data *d)
{
    free(d->prefix_store);
    free(d->suffix_store);
    free(d->qprefix);
}

/* Build a tree (and optionally the hash-chain table) from shape w, inserting
 * the sequences in the order `order`.  Sequence tokens come from `d` when
 * given (W1), else they are generated.  ins_ns[i] receives the time of the
 * i-th insert into the tree, hc_ns[i] the table's. */
static void build(const shape *w, uint64_t seed, const w1_data *d,
                  const size_t *order, pc_radix *t, hc_table *hc,
                  hc_table *hc2,
                  double *ins_ns, double *hc_ns, const char *label)
{
    size_t N = sh_seqs(w), T = sh_tokens(w);
    size_t np = T / w->P;
    size_t pp = sh_prefix_pages(w);
    uint32_t *buf = bench_xmalloc(T * sizeof *buf);
    uint32_t *blocks = bench_xmalloc(np * sizeof *blocks);
    uint32_t *prefixes = NULL;
    unsigned char *seen = calloc(w->groups, 1);
    if (!seen)
        bench_die("out of memory");
    if (!d) {
        prefixes = bench_xmalloc(w->groups * w->prefix_tokens * sizeof(uint32_t));
        for (size_t g = 0; g < w->groups; g++)
            gen_tokens(stream_base(seed, w->world, STREAM_PREFIX, g),
                       prefixes + g * w->prefix_tokens, w->prefix_tokens);
    }
    uint64_t nsh = hc_ns_hash(NS, NS_LEN);
    size_t step = N / 10 ? N / 10 : 1;
    for (size_t i = 0; i < N; i++) {
        size_t s = order[i], g = s / w->suffixes;
        if (d) {
            memcpy(buf, d->prefix_store + g * w->prefix_tokens,
                   w->prefix_tokens * sizeof *buf);
            memcpy(buf + w->prefix_tokens,
                   d->suffix_store + s * w->suffix_tokens,
                   w->suffix_tokens * sizeof *buf);
        } else {
            memcpy(buf, prefixes + g * w->prefix_tokens,
                   w->prefix_tokens * sizeof *buf);
            gen_tokens(stream_base(seed, w->world, STREAM_SUFFIX, s),
                       buf + w->prefix_tokens, w->suffix_tokens);
        }
        fill_blocks(w, s, blocks);

        pc_radix_insert_result ir;
        uint64_t t0 = bench_now_ns();
        int rc = pc_radix_insert(t, NS, NS_LEN, buf, T, blocks, NULL, &ir);
        uint64_t t1 = bench_now_ns();
        if (ins_ns)
            ins_ns[i] = (double)(t1 - t0);
        if (rc != 0)
            bench_die("pc_radix_insert failed: %s (sequence %zu)", pc_errname(rc), s);
        size_t want_new = seen[g] ? np - pp : np;
        size_t want_cached = seen[g] ? w->prefix_tokens : 0;
        if (ir.inserted_pages != want_new || ir.cached_tokens != want_cached)
            bench_die("pc_radix_insert of sequence %zu: inserted %zu pages, cached "
                      "%zu tokens; expected %zu and %zu",
                      s, ir.inserted_pages, ir.cached_tokens, want_new, want_cached);
        if (hc) {
            t0 = bench_now_ns();
            size_t added = hc_insert(hc, nsh, buf, T, blocks);
            t1 = bench_now_ns();
            if (hc_ns)
                hc_ns[i] = (double)(t1 - t0);
            if (added != want_new)
                bench_die("hc_insert of sequence %zu added %zu pages, expected %zu",
                          s, added, want_new);
        }
        if (hc2 && hc_insert(hc2, nsh, buf, T, blocks) != want_new)
            bench_die("hc_insert (second table) of sequence %zu failed", s);
        seen[g] = 1;
        if (label && N >= 20000 && (i + 1) % step == 0)
            bench_say("  %s: %zu/%zu inserts", label, i + 1, N);
    }
    free(buf);
    free(blocks);
    free(prefixes);
    free(seen);
}

/* ---- phase: lookups -------------------------------------------------------- */

/* Prompt of query kind k for sequence s into q[0..T): the tokens of the
 * cached sequence, regenerated from the seed (the prefix from the query-side
 * copy) so that the contenders' stored data is not warmed up. */
static void make_query(const config *c, const w1_data *d, int k, size_t s,
                       uint32_t *q)
{
    const shape *w = d->w;
    size_t g = s / w->suffixes;
    memcpy(q, d->qprefix + g * w->prefix_tokens,
           w->prefix_tokens * sizeof *q);
    gen_tokens(stream_base(c->seed, w->world, STREAM_SUFFIX, s),
               q + w->prefix_tokens, w->suffix_tokens);
    if (k == Q_DIVERGE) {
        size_t T = sh_tokens(w), at = c->diverge_at;
        uint32_t orig = q[at];
        gen_tokens(stream_base(c->seed, w->world, STREAM_DIVERGE, s), q + at,
                   T - at);
        if (q[at] == orig)
            q[at] = (q[at] + 1) % VOCAB;
    }
}

typedef struct lookup_ctx {
    const config *c;
    const w1_data *d;
    pc_radix *t;
    const hc_table *hc;  /* for hashchain (the walk)                     */
    const hc_table *hc2; /* an identical table for hashchain_pf, so that
                            neither variant warms the other's slots      */
    const size_t *queries;
    uint32_t *qbuf;       /* BATCH x T tokens                               */
    uint32_t *out[NCONT]; /* BATCH x np blocks per contender (not memcmp)   */
    double *samples[NCONT];
} lookup_ctx;

/* One contender runs the BATCH prompts of qbuf; returns elapsed ns.
 * pages[j] receives the matched pages (memcmp: 0 = equal, else 1). */
static uint64_t run_batch(lookup_ctx *x, int ct, const size_t *qs,
                          size_t *pages)
{
    const shape *w = x->d->w;
    size_t T = sh_tokens(w), np = T / w->P;
    size_t pt = w->prefix_tokens, st = w->suffix_tokens;
    const uint32_t *qb = x->qbuf;
    uint32_t *out = x->out[ct];
    uint64_t t0 = 0, t1 = 0;
    switch (ct) {
    case C_RADIX: {
        pc_radix_match_result mr[BATCH];
        int rc = 0;
        t0 = bench_now_ns();
        for (size_t j = 0; j < BATCH; j++)
            rc |= pc_radix_match(x->t, NS, NS_LEN, qb + j * T, T,
                                 out + j * np, np, x->c->radix_flags, &mr[j]);
        t1 = bench_now_ns();
        if (rc)
            bench_die("pc_radix_match failed: %s", pc_errname(rc));
        for (size_t j = 0; j < BATCH; j++) {
            if (mr[j].tokens != mr[j].pages * w->P ||
                (mr[j].pages != 0) != (mr[j].node != NULL))
                bench_die("pc_radix_match: inconsistent result");
            pages[j] = mr[j].pages;
        }
        break;
    }
    /* Both hash-chain variants hash the namespace per request, as the tree
     * looks its namespace up per request. */
    case C_HC:
        t0 = bench_now_ns();
        for (size_t j = 0; j < BATCH; j++)
            pages[j] = hc_match_walk(x->hc, hc_ns_hash(NS, NS_LEN),
                                     qb + j * T, T, out + j * np, np);
        t1 = bench_now_ns();
        break;
    case C_HCPF:
        t0 = bench_now_ns();
        for (size_t j = 0; j < BATCH; j++)
            pages[j] = hc_match(x->hc2, hc_ns_hash(NS, NS_LEN), qb + j * T,
                                T, out + j * np, np);
        t1 = bench_now_ns();
        break;
    case C_MEMCMP:
        t0 = bench_now_ns();
        for (size_t j = 0; j < BATCH; j++) {
            size_t s = qs[j], g = s / w->suffixes;
            const uint32_t *q = qb + j * T;
            int m = memcmp(q, x->d->prefix_store + g * pt, pt * sizeof *q);
            if (m == 0)
                m = memcmp(q + pt, x->d->suffix_store + s * st,
                           st * sizeof *q);
            pages[j] = m != 0;
        }
        t1 = bench_now_ns();
        break;
    }
    return t1 - t0;
}

static void lookup_phase(lookup_ctx *x, int k, results *r, size_t rep)
{
    const config *c = x->c;
    const shape *w = x->d->w;
    size_t T = sh_tokens(w), np = T / w->P;
    size_t nb = c->queries / BATCH;
    size_t want_pages = k == Q_FULL ? np : c->diverge_at / w->P;
    size_t pages[NCONT][BATCH];

    for (size_t b = 0; b < nb; b++) {
        const size_t *qs = x->queries + b * BATCH;
        for (size_t j = 0; j < BATCH; j++)
            make_query(c, x->d, k, qs[j], x->qbuf + j * T);
        /* rotate the order so that no contender always runs first */
        for (int o = 0; o < NCONT; o++) {
            int ct = (int)((b + (size_t)o) % NCONT);
            uint64_t ns = run_batch(x, ct, qs, pages[ct]);
            x->samples[ct][b] = (double)ns / BATCH;
        }
        /* verify every result, outside the timing */
        for (size_t j = 0; j < BATCH; j++) {
            size_t s = qs[j];
            for (int ct = 0; ct < NCONT; ct++) {
                if (ct == C_MEMCMP) {
                    if (pages[ct][j] != (k == Q_FULL ? 0u : 1u))
                        bench_die("memcmp floor: unexpected result for sequence "
                                  "%zu", s);
                    continue;
                }
                if (pages[ct][j] != want_pages)
                    bench_die("%s: %s lookup of sequence %zu matched %zu pages, "
                              "expected %zu",
                              cont_name[ct], kind_name[k], s, pages[ct][j],
                              want_pages);
                const uint32_t *o = x->out[ct] + j * np;
                for (size_t p = 0; p < want_pages; p++)
                    if (o[p] != expected_block(w, s, p))
                        bench_die("%s: %s lookup of sequence %zu: page %zu has "
                                  "block %u, expected %u",
                                  cont_name[ct], kind_name[k], s, p, o[p],
                                  expected_block(w, s, p));
            }
        }
    }
    for (int ct = 0; ct < NCONT; ct++) {
        r->lk_median[k][ct][rep] = median(x->samples[ct], nb);
        r->lk_p99[k][ct][rep] = quantile(x->samples[ct], nb, 0.99);
    }
}

/* ---- phase: eviction ------------------------------------------------------- */

typedef struct evict_ctx {
    uint64_t sum;
    uint64_t n;
} evict_ctx;

static void on_evict(void *ctx, uint32_t block)
{
    evict_ctx *e = ctx;
    e->sum += block;
    e->n++;
}

/* Build the tree of shape w, evict fraction of its pages; ns per page. */
static double evict_run(const config *c, const shape *w, size_t rep,
                        size_t *pages_out, size_t *evicted_out,
                        double *bytes_per_token, const char *label)
{
    pc_radix *t;
    int rc = pc_radix_create(w->P, &t);
    if (rc)
        bench_die("pc_radix_create: %s", pc_errname(rc));
    size_t *order =
        shuffled(sh_seqs(w), c->seed ^ bench_mix64(0xe51c7 + w->world));
    bench_say("rep %zu: building %s eviction tree (%zu pages, %zu inserts)",
              rep + 1, label, sh_pages(w), sh_seqs(w));
    build(w, c->seed, NULL, order, t, NULL, NULL, NULL, NULL, label);
    free(order);

    pc_radix_stats st;
    pc_radix_stats_get(t, &st);
    if (st.pages != sh_pages(w))
        bench_die("%s tree holds %llu pages, expected %zu", label,
                  (unsigned long long)st.pages, sh_pages(w));
    *pages_out = (size_t)st.pages;
    *bytes_per_token = (double)st.metadata_bytes / (double)st.tokens;

    size_t target = (size_t)((double)st.pages * c->evict_fraction);
    allocator_quiesce();
    evict_ctx e = {0, 0};
    size_t done = 0;
    uint64_t total = 0;
    bench_say("rep %zu: evicting %zu of %llu pages (%s tree)", rep + 1, target,
              (unsigned long long)st.pages, label);
    while (done < target) {
        size_t want = target - done < EVICT_CHUNK ? target - done : EVICT_CHUNK;
        uint64_t t0 = bench_now_ns();
        size_t got = pc_radix_evict(t, want, on_evict, &e);
        uint64_t t1 = bench_now_ns();
        total += t1 - t0;
        if (got == 0)
            bench_die("pc_radix_evict freed nothing with %zu pages to go", target - done);
        done += got;
    }
    if (e.n != done)
        bench_die("eviction callback saw %llu blocks, evict returned %zu",
                  (unsigned long long)e.n, done);
    g_sink += e.sum;
    pc_radix_stats_get(t, &st);
    if (st.pages != sh_pages(w) - done)
        bench_die("after evicting %zu pages the %s tree holds %llu pages, expected "
                  "%zu",
                  done, label, (unsigned long long)st.pages, sh_pages(w) - done);
    if (rep == 0 && pc_radix_check(t) != 0)
        bench_die("pc_radix_check failed after eviction (%s tree)", label);
    pc_radix_destroy(t);
    *evicted_out = done;
    return (double)total / (double)done;
}

/* ---- phase: cache cycles --------------------------------------------------- */

/* The cache's injected clock: a counter (milliseconds that never expire a
 * lease, since the TTL is huge). */
static uint64_t fake_clock(void *ctx)
{
    return ++*(uint64_t *)ctx;
}

typedef struct cycle_ctx {
    const config *c;
    const w1_data *d;
    pc_cache *cache;
    size_t T, np;
    uint64_t tick;
    uint32_t *qc, *ql;  /* BATCH x T: cycle prompts, bare-lookup prompts  */
    uint32_t *blk;      /* BATCH x np: the ids handed to insert           */
    uint32_t *canon;    /* BATCH x np: insert's canonical ids             */
    uint32_t *lout;     /* BATCH x np: bare lookups' ids                  */
    uint32_t *tmp;      /* np: the peek's ids                             */
    double *sc, *sl;    /* per-batch samples: cycles, bare lookups        */
    double *part[NPART + 1]; /* diagnostic pass: the four calls, bare lookup */
} cycle_ctx;

typedef struct cycle_out {
    size_t m; /* pages the pinning lookup found cached */
    pc_insert_result ir;
} cycle_out;

/* One engine-like cycle on prompt q.  blk receives the lookup's m cached ids
 * followed by the np - m freshly allocated ones, which is exactly what the
 * insert is given; canon receives the insert's canonical ids.  Aborts on any
 * error (the branches are never taken, so they cost nothing measurable). */
static inline void cycle_once(cycle_ctx *y, const uint32_t *q, uint32_t *blk,
                              uint32_t *canon, cycle_out *o)
{
    pc_lookup_result lr;
    int rc = pc_cache_lookup(y->cache, NS, NS_LEN, q, y->T, 1, 0, blk, &lr);
    if (rc)
        bench_die("pc_cache_lookup (pin): %s", pc_errname(rc));
    uint64_t lease = lr.lease;
    rc = pc_cache_alloc(y->cache, (uint32_t)(y->np - lr.pages), &lease,
                        blk + lr.pages);
    if (rc)
        bench_die("pc_cache_alloc(%zu): %s", y->np - lr.pages, pc_errname(rc));
    rc = pc_cache_insert(y->cache, NS, NS_LEN, q, y->T, blk, lease, canon,
                         &o->ir);
    if (rc)
        bench_die("pc_cache_insert: %s", pc_errname(rc));
    rc = pc_cache_release(y->cache, lease);
    if (rc)
        bench_die("pc_cache_release: %s", pc_errname(rc));
    o->m = lr.pages;
}

/* The same cycle with a clock read between the calls (diagnostic pass):
 * ts[0..NPART] are the boundaries. */
static void cycle_timed(cycle_ctx *y, const uint32_t *q, uint32_t *blk,
                        uint32_t *canon, cycle_out *o, uint64_t *ts)
{
    pc_lookup_result lr;
    ts[0] = bench_now_ns();
    int rc = pc_cache_lookup(y->cache, NS, NS_LEN, q, y->T, 1, 0, blk, &lr);
    ts[1] = bench_now_ns();
    if (rc)
        bench_die("pc_cache_lookup (pin): %s", pc_errname(rc));
    uint64_t lease = lr.lease;
    rc = pc_cache_alloc(y->cache, (uint32_t)(y->np - lr.pages), &lease,
                        blk + lr.pages);
    ts[2] = bench_now_ns();
    if (rc)
        bench_die("pc_cache_alloc(%zu): %s", y->np - lr.pages, pc_errname(rc));
    rc = pc_cache_insert(y->cache, NS, NS_LEN, q, y->T, blk, lease, canon,
                         &o->ir);
    ts[3] = bench_now_ns();
    if (rc)
        bench_die("pc_cache_insert: %s", pc_errname(rc));
    rc = pc_cache_release(y->cache, lease);
    ts[4] = bench_now_ns();
    if (rc)
        bench_die("pc_cache_release: %s", pc_errname(rc));
    o->m = lr.pages;
}

/* Outside the timing: the insert saw exactly what the lookup saw (nothing
 * runs between them), adopted every new block and returned as canonical ids
 * the lookup's ids for the cached part and the allocated ids for the rest. */
static void cycle_verify(const cycle_ctx *y, const uint32_t *blk,
                         const uint32_t *canon, const cycle_out *o)
{
    size_t np = y->np, P = y->d->w->P;
    if (o->m > np || o->ir.cached_tokens != o->m * P ||
        o->ir.inserted_pages != np - o->m || o->ir.freed_blocks != 0)
        bench_die("cycle: lookup found %zu pages, then insert reported %zu cached "
                  "tokens, %zu inserted pages, %zu freed blocks",
                  o->m, o->ir.cached_tokens, o->ir.inserted_pages,
                  o->ir.freed_blocks);
    for (size_t p = 0; p < np; p++)
        if (canon[p] != blk[p])
            bench_die("cycle: page %zu (of %zu cached): insert's canonical id %u, "
                      "%s gave %u",
                      p, o->m, canon[p], p < o->m ? "lookup" : "alloc", blk[p]);
}

/* Outside the timing: prompt q is now fully cached under the ids canon.  A
 * PEEK match of the tree, so that the check changes neither the LRU order
 * nor the statistics. */
static void cycle_peek(cycle_ctx *y, const uint32_t *q, const uint32_t *canon)
{
    pc_radix_match_result mr;
    int rc = pc_radix_match(pc_cache_tree(y->cache), NS, NS_LEN, q, y->T,
                            y->tmp, y->np, PC_RADIX_MATCH_PEEK, &mr);
    if (rc)
        bench_die("pc_radix_match (peek): %s", pc_errname(rc));
    if (mr.pages != y->np)
        bench_die("cycle: the prompt just inserted matches %zu of %zu pages",
                  mr.pages, y->np);
    if (memcmp(y->tmp, canon, y->np * sizeof *canon) != 0)
        bench_die("cycle: the prompt just inserted has other ids than insert gave");
}

/* A W1 prompt, drawn uniformly over all sequences by the stream st. */
static void cycle_prompt(cycle_ctx *y, uint64_t *st, uint32_t *q)
{
    size_t s = (size_t)(bench_rng_next(st) % sh_seqs(y->d->w));
    make_query(y->c, y->d, Q_FULL, s, q);
}

static void cycle_phase(cycle_ctx *y, results *r, size_t rep)
{
    const config *c = y->c;
    const shape *w = y->d->w;
    size_t T = y->T, np = y->np;
    size_t cap = sh_pages(w) / 2;
    if (cap < 4 * np)
        bench_die("cycle: a pool of %zu blocks is too small", cap);

    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    int rc = pc_pool_layout_init(&cfg.pool.layout, 1, 1, 1, w->P,
                                 PC_DTYPE_FP16);
    if (rc)
        bench_die("pc_pool_layout_init: %s", pc_errname(rc));
    cfg.pool.backend = PC_POOL_NONE;
    cfg.pool.capacity_blocks = cap;
    cfg.lease_ttl_ms = UINT64_C(1) << 60; /* never expires */
    if (cfg.max_blocks_per_lease < np)
        cfg.max_blocks_per_lease = (uint32_t)np;
    y->tick = 0;
    cfg.clock = fake_clock;
    cfg.clock_ctx = &y->tick;
    allocator_quiesce();
    rc = pc_cache_create(&cfg, &y->cache);
    if (rc)
        bench_die("pc_cache_create: %s", pc_errname(rc));
    r->cy_capacity = cap;

    /* Prompt streams, the same in every repetition. */
    uint64_t st_warm = c->seed ^ 0x3c6ef372fe94f82bULL;
    uint64_t st_cyc = c->seed ^ 0xa54ff53a5f1d36f1ULL;
    uint64_t st_look = c->seed ^ 0x510e527fade682d1ULL;
    uint64_t st_diag = c->seed ^ 0x9b05688c2b3e6c1fULL;
    cycle_out co[BATCH];

    /* -- warm-up: until 2x the capacity has been inserted (the pool filled
     * after about 1x, and the LRU order has turned over since) -- */
    bench_say("rep %zu/%zu: cycle: warming up a cache of %zu blocks (50%% of "
              "%zu pages)",
              rep + 1, c->reps, cap, sh_pages(w));
    size_t inserted = 0, warm = 0;
    while (inserted < 2 * cap) {
        cycle_prompt(y, &st_warm, y->qc);
        cycle_once(y, y->qc, y->blk, y->canon, &co[0]);
        cycle_verify(y, y->blk, y->canon, &co[0]);
        inserted += co[0].ir.inserted_pages;
        if (++warm > 100 * cap)
            bench_die("cycle: the warm-up inserts nothing");
    }
    r->cy_warmup_cycles = warm;
    pc_cache_stats s0, s1;
    pc_cache_stats_get(y->cache, &s0);
    if (s0.evictions_alloc == 0 || s0.pool.free >= np || s0.leases != 0 ||
        s0.pool.leased != 0)
        bench_die("cycle: after warm-up: %llu evictions, %llu free, %llu leases, "
                  "%llu leased blocks",
                  (unsigned long long)s0.evictions_alloc,
                  (unsigned long long)s0.pool.free, (unsigned long long)s0.leases,
                  (unsigned long long)s0.pool.leased);
    if (pc_cache_check(y->cache) != 0)
        bench_die("pc_cache_check failed after the warm-up; aborting");

    /* -- measured: batches of cycles and of bare lookups alternate -- */
    size_t nb = c->cycles / BATCH;
    bench_say("rep %zu/%zu: cycle: %zu cycles + %zu bare lookups (after %zu "
              "warm-up cycles)",
              rep + 1, c->reps, nb * BATCH, nb * BATCH, warm);
    uint64_t hit_c = 0, hit_l = 0;
    pc_lookup_result lr[BATCH];
    for (size_t b = 0; b < nb; b++) {
        for (int o = 0; o < 2; o++) {
            if ((o == 0) == (b % 2 == 0)) { /* cycles: first in even batches */
                for (size_t j = 0; j < BATCH; j++)
                    cycle_prompt(y, &st_cyc, y->qc + j * T);
                uint64_t t0 = bench_now_ns();
                for (size_t j = 0; j < BATCH; j++)
                    cycle_once(y, y->qc + j * T, y->blk + j * np,
                               y->canon + j * np, &co[j]);
                uint64_t t1 = bench_now_ns();
                y->sc[b] = (double)(t1 - t0) / BATCH;
            } else {
                for (size_t j = 0; j < BATCH; j++)
                    cycle_prompt(y, &st_look, y->ql + j * T);
                int e = 0;
                uint64_t t0 = bench_now_ns();
                for (size_t j = 0; j < BATCH; j++)
                    e |= pc_cache_lookup(y->cache, NS, NS_LEN, y->ql + j * T,
                                         T, 0, 0, y->lout + j * np, &lr[j]);
                uint64_t t1 = bench_now_ns();
                if (e)
                    bench_die("pc_cache_lookup (bare): %s", pc_errname(e));
                y->sl[b] = (double)(t1 - t0) / BATCH;
            }
        }
        /* verify, outside the timing */
        for (size_t j = 0; j < BATCH; j++) {
            cycle_verify(y, y->blk + j * np, y->canon + j * np, &co[j]);
            hit_c += co[j].m;
            if (lr[j].pages > np || lr[j].tokens != lr[j].pages * w->P ||
                lr[j].lease != 0)
                bench_die("bare lookup: %zu pages, %zu tokens, lease %llu",
                          lr[j].pages, lr[j].tokens,
                          (unsigned long long)lr[j].lease);
            hit_l += lr[j].pages;
        }
        /* the batch's last prompt: nothing evicted it since its cycle */
        cycle_peek(y, y->qc + (BATCH - 1) * T, y->canon + (BATCH - 1) * np);
    }
    pc_cache_stats_get(y->cache, &s1);
    size_t ncy = nb * BATCH;
    r->cy_median[rep] = median(y->sc, nb);
    r->cy_p99[rep] = quantile(y->sc, nb, 0.99);
    r->cy_mean[rep] = bench_mean(y->sc, nb);
    r->cl_median[rep] = median(y->sl, nb);
    r->cl_p99[rep] = quantile(y->sl, nb, 0.99);
    r->cl_mean[rep] = bench_mean(y->sl, nb);
    r->cy_hit[rep] = (double)hit_c / (double)(ncy * np);
    r->cl_hit[rep] = (double)hit_l / (double)(ncy * np);
    r->cy_evicted[rep] =
        (double)(s1.evictions_alloc - s0.evictions_alloc) / (double)ncy;
    if (s1.evictions_alloc == s0.evictions_alloc)
        bench_die("cycle: no eviction during the measured cycles");

    /* -- diagnostic: each call timed on its own, one cycle at a time, and a
     * bare lookup (another prompt) per cycle; the order alternates -- */
    size_t nd = ncy / 4 > BATCH ? ncy / 4 : BATCH;
    r->cy_diag_cycles = nd;
    bench_say("rep %zu/%zu: cycle: %zu un-batched cycles (breakdown)", rep + 1,
              c->reps, nd);
    uint64_t hit_d = 0;
    for (size_t i = 0; i < nd; i++) {
        cycle_prompt(y, &st_diag, y->qc);
        cycle_prompt(y, &st_diag, y->ql);
        for (int o = 0; o < 2; o++) {
            if ((o == 0) == (i % 2 == 0)) {
                uint64_t ts[NPART + 1];
                cycle_timed(y, y->qc, y->blk, y->canon, &co[0], ts);
                for (int k = 0; k < NPART; k++)
                    y->part[k][i] = (double)(ts[k + 1] - ts[k]) - r->clock_ns;
            } else {
                uint64_t t0 = bench_now_ns();
                rc = pc_cache_lookup(y->cache, NS, NS_LEN, y->ql, T, 0, 0,
                                     y->lout, &lr[0]);
                uint64_t t1 = bench_now_ns();
                if (rc)
                    bench_die("pc_cache_lookup (bare): %s", pc_errname(rc));
                y->part[NPART][i] = (double)(t1 - t0) - r->clock_ns;
            }
        }
        cycle_verify(y, y->blk, y->canon, &co[0]);
        hit_d += co[0].m;
    }
    for (int k = 0; k < NPART; k++) {
        r->cy_part_mean[k][rep] = bench_mean(y->part[k], nd);
        r->cy_part_median[k][rep] = median(y->part[k], nd);
    }
    r->cy_bare_mean[rep] = bench_mean(y->part[NPART], nd);
    r->cy_bare_median[rep] = median(y->part[NPART], nd);
    r->cy_diag_hit[rep] = (double)hit_d / (double)(nd * np);

    if (pc_cache_check(y->cache) != 0)
        bench_die("pc_cache_check failed after the cycles; aborting");
    if (rep == 0)
        pc_cache_stats_get(y->cache, &r->cy_stats);
    pc_cache_destroy(y->cache);
    y->cache = NULL;
}

/* ---- report ---------------------------------------------------------------- */

/* The report's layout (bench/common/report.h). */
static const rpt_style STYLE = {
    .label_w = 52, .ratio_w = 9, .target_w = 12, .small_digits = 3,
    .label_cap = 64, .note_cap = 96, .note_head = "baseline / ratio",
    .nan_ratio_info = false,
};

static void json_arr(FILE *f, const double *v, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        rpt_json_num(f, v[i]);
    }
    fputc(']', f);
}

static void print_json(FILE *f, const config *c, const results *r,
                       const rpt_row *rows, size_t nrows)
{
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    size_t R = r->reps;
    fprintf(f, "{\n  \"bench\": \"radix_bench\",\n  \"schema\": 1,\n");
    fprintf(f, "  \"preset\": \"%s\",\n  \"seed\": %llu,\n", c->preset,
            (unsigned long long)c->seed);
    fprintf(f, "  \"radix_match_flags\": \"%s\",\n",
            c->radix_flags ? "PEEK (diagnostic run)" : "none");
    fprintf(f, "  \"machine\": {\"nproc\": %ld, \"cpu\": ",
            sysconf(_SC_NPROCESSORS_ONLN));
    rpt_json_str(f, cpu);
    fprintf(f, ", \"jemalloc\": %s},\n", mallctl ? "true" : "false");
    fprintf(f,
            "  \"config\": {\"page_tokens\": %u, \"prefixes\": %zu, "
            "\"suffixes_per_prefix\": %zu, \"prefix_tokens\": %zu, "
            "\"suffix_tokens\": %zu, \"sequences\": %zu, \"unique_pages\": %zu, "
            "\"queries\": %zu, \"batch\": %d, \"diverge_at\": %zu, "
            "\"reps\": %zu, \"evict_fraction\": %g, \"evict_chunk\": %d, "
            "\"evict_small_pages\": %zu, \"evict_large_pages\": %zu, "
            "\"cycles\": %zu, \"cycle_pool_blocks\": %zu, "
            "\"cycle_warmup_cycles\": %zu, \"cycle_diag_cycles\": %zu},\n",
            c->w1.P, c->w1.groups, c->w1.suffixes, c->w1.prefix_tokens,
            c->w1.suffix_tokens, sh_seqs(&c->w1), sh_pages(&c->w1), c->queries,
            BATCH, c->diverge_at, c->reps, c->evict_fraction, EVICT_CHUNK,
            r->ev_small_pages, r->ev_large_pages,
            c->run_cycle ? c->cycles : 0, r->cy_capacity, r->cy_warmup_cycles,
            r->cy_diag_cycles);
    fprintf(f, "  \"clock_gettime_ns\": ");
    rpt_json_num(f, r->clock_ns);
    fprintf(f, ",\n  \"seconds\": ");
    rpt_json_num(f, r->seconds);
    fprintf(f, ",\n  \"metrics\": [\n");
    rpt_json_metrics(f, &STYLE, rows, nrows);
    fprintf(f, "  ],\n  \"repetitions\": {\n");
    for (int k = 0; k < NKIND; k++)
        for (int ct = 0; ct < NCONT; ct++) {
            fprintf(f, "    \"lookup_%s_%s_median_ns\": ", kind_name[k],
                    cont_name[ct]);
            json_arr(f, r->lk_median[k][ct], R);
            fprintf(f, ",\n    \"lookup_%s_%s_p99_ns\": ", kind_name[k],
                    cont_name[ct]);
            json_arr(f, r->lk_p99[k][ct], R);
            fprintf(f, ",\n");
        }
    for (int i = 0; i < 2; i++) {
        const char *nm = i ? "hashchain" : "radix";
        fprintf(f, "    \"insert_%s_mean_ns\": ", nm);
        json_arr(f, r->ins_mean[i], R);
        fprintf(f, ",\n    \"insert_%s_median_ns\": ", nm);
        json_arr(f, r->ins_median[i], R);
        fprintf(f, ",\n    \"insert_%s_p99_ns\": ", nm);
        json_arr(f, r->ins_p99[i], R);
        fprintf(f, ",\n");
    }
    fprintf(f, "    \"evict_small_ns_per_page\": ");
    json_arr(f, r->ev_small, R);
    fprintf(f, ",\n    \"evict_large_ns_per_page\": ");
    json_arr(f, r->ev_large, R);
    const struct {
        const char *name;
        const double *v;
    } cy[] = {
        {"cycle_median_ns", r->cy_median},
        {"cycle_p99_ns", r->cy_p99},
        {"cycle_mean_ns", r->cy_mean},
        {"cycle_bare_lookup_median_ns", r->cl_median},
        {"cycle_bare_lookup_p99_ns", r->cl_p99},
        {"cycle_bare_lookup_mean_ns", r->cl_mean},
        {"cycle_hit_rate", r->cy_hit},
        {"cycle_bare_lookup_hit_rate", r->cl_hit},
        {"cycle_evicted_pages_per_cycle", r->cy_evicted},
        {"cycle_diag_hit_rate", r->cy_diag_hit},
        {"cycle_diag_bare_lookup_mean_ns", r->cy_bare_mean},
        {"cycle_diag_bare_lookup_median_ns", r->cy_bare_median},
    };
    for (size_t i = 0; i < sizeof cy / sizeof cy[0]; i++) {
        fprintf(f, ",\n    \"%s\": ", cy[i].name);
        json_arr(f, cy[i].v, R);
    }
    for (int k = 0; k < NPART; k++) {
        fprintf(f, ",\n    \"cycle_diag_%s_mean_ns\": ", part_name[k]);
        json_arr(f, r->cy_part_mean[k], R);
        fprintf(f, ",\n    \"cycle_diag_%s_median_ns\": ", part_name[k]);
        json_arr(f, r->cy_part_median[k], R);
    }
    fprintf(f, "\n  },\n");
    const pc_radix_stats *s = &r->w1;
    fprintf(f,
            "  \"w1_tree\": {\"namespaces\": %llu, \"nodes\": %llu, "
            "\"pages\": %llu, \"tokens\": %llu, \"metadata_bytes\": %llu, "
            "\"splits\": %llu, \"jemalloc_net_bytes\": %lld},\n",
            (unsigned long long)s->namespaces, (unsigned long long)s->nodes,
            (unsigned long long)s->pages, (unsigned long long)s->tokens,
            (unsigned long long)s->metadata_bytes,
            (unsigned long long)s->splits, (long long)r->jemalloc_tree_bytes);
    fprintf(f,
            "  \"w1_hashchain\": {\"entries\": %zu, \"capacity\": %zu, "
            "\"bytes\": %zu},\n",
            r->hc_entries, r->hc_capacity, r->hc_bytes);
    fprintf(f, "  \"evict_trees\": {\"small_bytes_per_token\": ");
    rpt_json_num(f, r->ev_small_bytes_per_token);
    fprintf(f, ", \"large_bytes_per_token\": ");
    rpt_json_num(f, r->ev_large_bytes_per_token);
    fprintf(f, ", \"small_evicted_pages\": %zu, \"large_evicted_pages\": %zu},\n",
            r->ev_small_evicted, r->ev_large_evicted);
    const pc_cache_stats *cs = &r->cy_stats;
    fprintf(f,
            "  \"cycle_cache\": {\"capacity\": %llu, \"free\": %llu, "
            "\"cached\": %llu, \"tree_nodes\": %llu, \"tree_pages\": %llu, "
            "\"tree_metadata_bytes\": %llu, \"leases_created\": %llu, "
            "\"evictions_alloc\": %llu, \"inserted_pages\": %llu, "
            "\"duplicate_pages\": %llu, \"splits\": %llu}\n",
            (unsigned long long)cs->pool.capacity,
            (unsigned long long)cs->pool.free,
            (unsigned long long)cs->pool.cached,
            (unsigned long long)cs->tree.nodes,
            (unsigned long long)cs->tree.pages,
            (unsigned long long)cs->tree.metadata_bytes,
            (unsigned long long)cs->leases_created,
            (unsigned long long)cs->evictions_alloc,
            (unsigned long long)cs->tree.inserted_pages,
            (unsigned long long)cs->tree.duplicate_pages,
            (unsigned long long)cs->tree.splits);
    fprintf(f, "}\n");
}

static double clock_cost(void)
{
    enum { N = 100000 };
    uint64_t t0 = bench_now_ns(), x = 0;
    for (int i = 0; i < N; i++)
        x += bench_now_ns();
    uint64_t t1 = bench_now_ns();
    g_sink += x;
    return (double)(t1 - t0) / N;
}

static size_t fill_rows(const config *c, const results *r, rpt_row *rows)
{
    size_t R = r->reps, n = 0;
    double lm[NKIND][NCONT], lp[NKIND][NCONT];
    for (int k = 0; k < NKIND; k++)
        for (int ct = 0; ct < NCONT; ct++) {
            lm[k][ct] = median(r->lk_median[k][ct], R);
            lp[k][ct] = median(r->lk_p99[k][ct], R);
        }
    static char lbl_small[64], lbl_large[64];
    snprintf(lbl_small, sizeof lbl_small, "evict 10%% of %zuk-page tree",
             r->ev_small_pages / 1000);
    snprintf(lbl_large, sizeof lbl_large, "evict 10%% of %zuk-page tree",
             r->ev_large_pages / 1000);
    static char base_small[64];
    snprintf(base_small, sizeof base_small, "%zuk-page tree",
             r->ev_small_pages / 1000);

    if (!c->run_w1)
        goto evict_rows;
    for (int k = 0; k < NKIND; k++) {
        static char keys[NKIND][4][48], lbls[NKIND][4][48];
        const char *kn = kind_name[k];
        const char *kl = k == Q_FULL ? "full" : "diverging";
        snprintf(keys[k][0], 48, "lookup_%s_median_ns", kn);
        snprintf(lbls[k][0], 48, "lookup %s, median", kl);
        snprintf(keys[k][1], 48, "lookup_%s_p99_ns", kn);
        snprintf(lbls[k][1], 48, "lookup %s, p99", kl);
        snprintf(keys[k][2], 48, "lookup_%s_median_vs_hc_pf", kn);
        snprintf(lbls[k][2], 48, "lookup %s, median vs hash+prefetch", kl);
        snprintf(keys[k][3], 48, "lookup_%s_vs_memcmp", kn);
        snprintf(lbls[k][3], 48, "lookup %s, median vs memcmp floor", kl);
        double rad = lm[k][C_RADIX];
        /* The lookup targets (bench/README.md "The lookup targets"): an
         * exact index must read the stored tokens, so it is held to the
         * memcmp floor (<= 2x) and to >= 3x the plain hash chain. */
        rows[n++] = (rpt_row){keys[k][0], lbls[k][0], "ns/op", rad, "hashchain",
                              lm[k][C_HC], "hashchain/radix", lm[k][C_HC] / rad,
                              RPT_RATIO_GE, 3.0};
        rows[n++] = (rpt_row){keys[k][1], lbls[k][1], "ns/op", lp[k][C_RADIX],
                              "hashchain", lp[k][C_HC], "hashchain/radix",
                              lp[k][C_HC] / lp[k][C_RADIX], RPT_NONE, 0};
        rows[n++] = (rpt_row){keys[k][2], lbls[k][2], "ns/op", rad,
                              "hashchain_pf", lm[k][C_HCPF],
                              "hashchain_pf/radix", lm[k][C_HCPF] / rad,
                              RPT_NONE, 0};
        rows[n++] = (rpt_row){keys[k][3], lbls[k][3], "ns/op", rad,
                              "memcmp floor", lm[k][C_MEMCMP], "radix/memcmp",
                              rad / lm[k][C_MEMCMP], RPT_RATIO_LE, 2.0};
    }
    double im = median(r->ins_mean[0], R), ih = median(r->ins_mean[1], R);
    rows[n++] = (rpt_row){"insert_mean_ns", "insert (W1 build), mean", "ns/op",
                          im, "hashchain", ih, "hashchain/radix", ih / im,
                          RPT_NONE, 0};
    double imd = median(r->ins_median[0], R), ihd = median(r->ins_median[1], R);
    rows[n++] = (rpt_row){"insert_median_ns", "insert (W1 build), median",
                          "ns/op", imd, "hashchain", ihd, "hashchain/radix",
                          ihd / imd, RPT_NONE, 0};
    const pc_radix_stats *s = &r->w1;
    double raw = 4.0 * (double)s->tokens + 4.0 * (double)s->pages;
    rows[n++] = (rpt_row){"memory_bytes_per_token",
                          "tree memory per cached token", "B/token",
                          (double)s->metadata_bytes / (double)s->tokens,
                          "hashchain (no tokens)",
                          (double)r->hc_bytes / (double)s->tokens, NULL, NAN,
                          RPT_NONE, 0};
    rows[n++] = (rpt_row){"memory_vs_raw", "tree metadata_bytes / raw", "x",
                          (double)s->metadata_bytes / raw, NULL, NAN, NULL, NAN,
                          RPT_VALUE_LE, 1.3};
    if (r->jemalloc_tree_bytes >= 0)
        rows[n++] = (rpt_row){"memory_jemalloc_vs_stats",
                              "jemalloc net bytes / metadata_bytes", "x",
                              (double)r->jemalloc_tree_bytes /
                                  (double)s->metadata_bytes,
                              NULL, NAN, NULL, NAN, RPT_NONE, 0};
evict_rows:
    if (c->run_evict) {
        double es = median(r->ev_small, R), el = median(r->ev_large, R);
        rows[n++] = (rpt_row){"evict_small_ns_per_page", lbl_small, "ns/page",
                              es, NULL, NAN, NULL, NAN, RPT_NONE, 0};
        rows[n++] = (rpt_row){"evict_large_ns_per_page", lbl_large, "ns/page",
                              el, base_small, es, "large/small", el / es,
                              RPT_RATIO_LE, 1.5};
    }
    if (!c->run_cycle)
        return n;
    double cm = median(r->cy_median, R), lm1 = median(r->cl_median, R);
    double cp = median(r->cy_p99, R), lp1 = median(r->cl_p99, R);
    rows[n++] = (rpt_row){"cycle_median_ns", "cycle vs bare lookup, median",
                          "ns/op", cm, "bare lookup", lm1, "cycle/lookup",
                          cm / lm1, RPT_RATIO_LE, 3.0};
    rows[n++] = (rpt_row){"cycle_p99_ns", "cycle vs bare lookup, p99", "ns/op",
                          cp, "bare lookup", lp1, "cycle/lookup", cp / lp1,
                          RPT_NONE, 0};
    double cps[MAX_REPS];
    for (size_t i = 0; i < R; i++)
        cps[i] = 1e9 / r->cy_mean[i];
    rows[n++] = (rpt_row){"cycles_per_second", "cycles per second (1e9 / mean)",
                          "1/s", median(cps, R), NULL, NAN, NULL, NAN, RPT_NONE,
                          0};
    rows[n++] = (rpt_row){"cycle_hit_rate", "cycle hit rate", "cached/asked",
                          median(r->cy_hit, R), "bare lookups",
                          median(r->cl_hit, R), NULL, NAN, RPT_NONE, 0};
    rows[n++] = (rpt_row){"cycle_evicted_pages", "pages evicted per cycle",
                          "pages", median(r->cy_evicted, R), NULL, NAN, NULL,
                          NAN, RPT_NONE, 0};
    static char pkeys[NPART][40], plbls[NPART][48];
    double bare = median(r->cy_bare_mean, R), sum = 0;
    for (int k = 0; k < NPART; k++) {
        double v = median(r->cy_part_mean[k], R);
        sum += v;
        snprintf(pkeys[k], sizeof pkeys[k], "cycle_part_%s_mean_ns",
                 part_name[k]);
        snprintf(plbls[k], sizeof plbls[k], "cycle part: %s%s, mean",
                 part_name[k], k == PART_LOOKUP ? " (pin)" : "");
        rows[n++] = (rpt_row){pkeys[k], plbls[k], "ns/op", v,
                              "bare lookup, unbatched", bare, "part/lookup",
                              v / bare, RPT_NONE, 0};
    }
    double cmean = median(r->cy_mean, R);
    rows[n++] = (rpt_row){"cycle_parts_sum_ns", "cycle parts summed, mean",
                          "ns/op", sum, "batched cycle, mean", cmean,
                          "sum/batched", sum / cmean, RPT_NONE, 0};
    return n;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    bench_cli_init("radix_bench");
    bench_cli.usage = usage;
    config c;
    parse_args(argc, argv, &c);
    results *r = calloc(1, sizeof *r);
    if (!r)
        bench_die("out of memory");
    r->reps = c.reps;
    r->jemalloc_tree_bytes = -1;
    for (size_t i = 0; i < MAX_REPS; i++) { /* null in the JSON if not run */
        for (int k = 0; k < NKIND; k++)
            for (int ct = 0; ct < NCONT; ct++)
                r->lk_median[k][ct][i] = r->lk_p99[k][ct][i] = NAN;
        for (int j = 0; j < 2; j++)
            r->ins_mean[j][i] = r->ins_median[j][i] = r->ins_p99[j][i] = NAN;
        r->ev_small[i] = r->ev_large[i] = NAN;
        r->cy_median[i] = r->cy_p99[i] = r->cy_mean[i] = NAN;
        r->cl_median[i] = r->cl_p99[i] = r->cl_mean[i] = NAN;
        r->cy_hit[i] = r->cl_hit[i] = r->cy_evicted[i] = NAN;
        r->cy_bare_mean[i] = r->cy_bare_median[i] = r->cy_diag_hit[i] = NAN;
        for (int k = 0; k < NPART; k++)
            r->cy_part_mean[k][i] = r->cy_part_median[k][i] = NAN;
    }
    uint64_t start = bench_now_ns();
    r->clock_ns = clock_cost();

    const shape *w = &c.w1;
    size_t N = sh_seqs(w), T = sh_tokens(w), np = T / w->P;
    if (c.diverge_at >= T || c.diverge_at < w->prefix_tokens)
        bench_die("bad diverge point");

    bench_say("preset %s, seed %llu: W1 = %zu prefixes x %zu suffixes (%zu "
              "sequences, %zu unique pages), %zu queries x 2 kinds, %zu cache "
              "cycles, %zu reps",
              c.preset, (unsigned long long)c.seed, w->groups, w->suffixes, N,
              sh_pages(w), c.queries, c.cycles, c.reps);
    w1_data d;
    w1_init(&d, w, c.seed);

    /* One query list for every contender and repetition. */
    size_t *queries = bench_xmalloc(c.queries * sizeof *queries);
    {
        uint64_t st = c.seed ^ 0x9ae16a3b2f90404fULL;
        for (size_t i = 0; i < c.queries; i++)
            queries[i] = (size_t)(bench_rng_next(&st) % N);
    }
    double *ins[2] = {bench_xmalloc(N * sizeof(double)),
                      bench_xmalloc(N * sizeof(double))};
    lookup_ctx x = {.c = &c, .d = &d, .queries = queries};
    x.qbuf = bench_xmalloc((size_t)BATCH * T * sizeof(uint32_t));
    for (int ct = 0; ct < NCONT; ct++) {
        x.out[ct] = bench_xmalloc((size_t)BATCH * np * sizeof(uint32_t));
        x.samples[ct] = bench_xmalloc(c.queries / BATCH * sizeof(double));
    }
    cycle_ctx y = {.c = &c, .d = &d, .T = T, .np = np};
    if (c.run_cycle) {
        size_t nb = c.cycles / BATCH, nd = c.cycles / 4 + BATCH;
        y.qc = bench_xmalloc((size_t)BATCH * T * sizeof(uint32_t));
        y.ql = bench_xmalloc((size_t)BATCH * T * sizeof(uint32_t));
        y.blk = bench_xmalloc((size_t)BATCH * np * sizeof(uint32_t));
        y.canon = bench_xmalloc((size_t)BATCH * np * sizeof(uint32_t));
        y.lout = bench_xmalloc((size_t)BATCH * np * sizeof(uint32_t));
        y.tmp = bench_xmalloc(np * sizeof(uint32_t));
        y.sc = bench_xmalloc(nb * sizeof(double));
        y.sl = bench_xmalloc(nb * sizeof(double));
        for (int k = 0; k <= NPART; k++)
            y.part[k] = bench_xmalloc(nd * sizeof(double));
    }

    for (size_t rep = 0; rep < c.reps; rep++) {
        if (c.run_w1) { /* -- build W1, memory, lookups -- */
            size_t *order = shuffled(N, c.seed ^ bench_mix64(0xb111d + rep));
            pc_radix *t;
            int rc = pc_radix_create(w->P, &t);
            if (rc)
                bench_die("pc_radix_create: %s", pc_errname(rc));
            hc_table *hc = hc_create(w->P, sh_pages(w));
            hc_table *hc2 = hc_create(w->P, sh_pages(w));
            if (!hc || !hc2)
                bench_die("hc_create: out of memory");
            bench_say("rep %zu/%zu: building W1 (%zu inserts into the tree and the "
                      "hash-chain table)",
                      rep + 1, c.reps, N);
            allocator_quiesce();
            int64_t j0 = jemalloc_net_bytes();
            /* the table is allocated at its final size up front, so the net
             * bytes measured around build() minus its size are the tree's */
            build(w, c.seed, &d, order, t, hc, hc2, ins[0], ins[1], "W1");
            int64_t j1 = jemalloc_net_bytes();
            free(order);
            for (int i = 0; i < 2; i++) {
                r->ins_mean[i][rep] = bench_mean(ins[i], N);
                r->ins_median[i][rep] = median(ins[i], N);
                r->ins_p99[i][rep] = quantile(ins[i], N, 0.99);
            }
            if (rep == 0) {
                bench_say("rep 1: pc_radix_check on the W1 tree");
                if (pc_radix_check(t) != 0)
                    bench_die("pc_radix_check failed on the W1 tree; aborting");
                pc_radix_stats_get(t, &r->w1);
                if (r->w1.pages != sh_pages(w) ||
                    r->w1.tokens != sh_pages(w) * w->P)
                    bench_die("W1 tree holds %llu pages, expected %zu",
                              (unsigned long long)r->w1.pages, sh_pages(w));
                r->hc_bytes = hc_bytes(hc);
                r->hc_entries = hc_entries(hc);
                r->hc_capacity = hc_capacity(hc);
                if (r->hc_entries != sh_pages(w))
                    bench_die("hash-chain table holds %zu pages, expected %zu",
                              r->hc_entries, sh_pages(w));
                if (j0 >= 0 && j1 >= 0)
                    r->jemalloc_tree_bytes = j1 - j0; /* hc table predates j0 */
            }

            /* -- lookups -- */
            x.t = t;
            x.hc = hc;
            x.hc2 = hc2;
            for (int k = 0; k < NKIND; k++) {
                bench_say("rep %zu/%zu: %zu %s lookups x 4 contenders", rep + 1,
                          c.reps, c.queries, kind_name[k]);
                lookup_phase(&x, k, r, rep);
            }
            pc_radix_destroy(t);
            hc_destroy(hc);
            hc_destroy(hc2);
        }
        if (c.run_evict) { /* -- eviction -- */
            r->ev_small[rep] =
                evict_run(&c, &c.ev_small, rep, &r->ev_small_pages,
                          &r->ev_small_evicted, &r->ev_small_bytes_per_token,
                          "small");
            r->ev_large[rep] =
                evict_run(&c, &c.ev_large, rep, &r->ev_large_pages,
                          &r->ev_large_evicted, &r->ev_large_bytes_per_token,
                          "large");
        }
        if (c.run_cycle) /* -- cache cycles -- */
            cycle_phase(&y, r, rep);
    }
    r->seconds = (double)(bench_now_ns() - start) / 1e9;

    rpt_row rows[48];
    size_t nrows = fill_rows(&c, r, rows);
    printf("radix_bench: preset %s, seed %llu, %zu repetitions (median of "
           "per-repetition values); lookups and cache cycles timed in batches "
           "of %d (p99 is over batch means)%s\n\n",
           c.preset, (unsigned long long)c.seed, c.reps, BATCH,
           c.radix_flags ? "; DIAGNOSTIC: radix lookups use PEEK" : "");
    rpt_print_table(stdout, &STYLE, rows, nrows);
    printf("\n");
    print_json(stdout, &c, r, rows, nrows);
    fflush(stdout);
    if (c.json_path) {
        FILE *f = fopen(c.json_path, "w");
        if (!f)
            bench_die("cannot write %s: %s", c.json_path, strerror(errno));
        print_json(f, &c, r, rows, nrows);
        if (fclose(f) != 0)
            bench_die("cannot write %s: %s", c.json_path, strerror(errno));
    }

    w1_free(&d);
    free(queries);
    free(ins[0]);
    free(ins[1]);
    free(x.qbuf);
    for (int ct = 0; ct < NCONT; ct++) {
        free(x.out[ct]);
        free(x.samples[ct]);
    }
    free(y.qc);
    free(y.ql);
    free(y.blk);
    free(y.canon);
    free(y.lout);
    free(y.tmp);
    free(y.sc);
    free(y.sl);
    for (int k = 0; k <= NPART; k++)
        free(y.part[k]);
    free(r);
    return 0;
}

/*
 * bench/events_bench.c - what KV events cost the daemon's own threads, in
 * one process (issue 14):
 *
 *   events_bench [--inserts N] [--rounds R] [--quick] [--json PATH]
 *
 *   a cache (the `none` pool: no KV bytes) ──insert──► hook ─► rpc/events.c
 *      ▲ this thread = the daemon's request loop        events thread ─► PUB
 *                                                       (ipc, no subscriber)
 *
 *   for round in 1..R:                   (the order alternates per round)
 *     off     N inserts of a 256-page prompt whose last 128 pages are new
 *             (lookup+alloc, insert, release), no hook
 *     events  the same with the publisher attached (interval 10 ms, the
 *             default), then a flush: every event packed and handed to PUB
 *   then: CPU per insert of this thread (CLOCK_THREAD_CPUTIME_ID: the loop's
 *   share) and of the whole process (+ the events thread and libzmq's),
 *   medians, as ratios to off.
 *
 * Without a subscriber libzmq drops each batch at once: this is the work of
 * hashing, queueing and packing, not of moving the bytes (rpc_bench
 * --observers events measures that, and its floor).  Every insert's event
 * must have been published (checked), and the cache's check must pass.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "bench/common/rng.h"
#include "cache/cache.h"
#include "rpc/events.h"

#define P 16u        /* page_tokens                         */
#define PAGES 256u   /* a prompt                            */
#define NEW 128u     /* of which new on every insert        */
#define VOCAB 128000u
#define MAX_ROUNDS 15

static double cpu_s(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct one {
    double loop_us, proc_us;
} one;

/* One run of n inserts; with events, the publisher on ep. */
static one run(size_t n, bool events, const char *ep, uint64_t seed)
{
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    if (pc_pool_layout_init(&cfg.pool.layout, 1, 1, 8, P, PC_DTYPE_FP16))
        bench_die("layout");
    cfg.pool.backend = PC_POOL_NONE;
    cfg.pool.capacity_blocks = (uint64_t)(n + 1) * NEW + PAGES + 64; /* no eviction */
    pc_cache *c = NULL;
    if (pc_cache_create(&cfg, &c))
        bench_die("pc_cache_create: %s", pc_cache_create_why());
    pc_rpc_events *e = NULL;
    if (events) {
        char err[256] = "";
        pc_rpc_events_config ec = {.endpoint = ep, .topic = "kv@bench@prefixcache",
                                   .replay_endpoint = "", .buffer = 1,
                                   .interval_ms = 10, .format = PC_KV_EVENTS_MAP,
                                   .dp_rank = -1, .err = err, .errlen = sizeof(err)};
        if (pc_rpc_events_create(&ec, &e))
            bench_die("events on %s: %s", ep, err);
        pc_rpc_events_attach(e, c);
    }
    uint32_t *tok = bench_xmalloc(PAGES * P * sizeof(*tok));
    uint32_t blocks[PAGES], fresh[PAGES];
    uint64_t s = seed;
    for (size_t i = 0; i < PAGES * P; i++)
        tok[i] = (uint32_t)(bench_rng_next(&s) % VOCAB);
    double t0 = 0, p0 = 0;
    for (size_t it = 0; it <= n; it++) { /* 0: the shared head goes in */
        if (it == 1) {
            t0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
            p0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
        }
        for (size_t i = (PAGES - NEW) * P; i < PAGES * P; i++) /* a new tail */
            tok[i] = (uint32_t)(bench_rng_next(&s) % VOCAB);
        pc_lookup_result r;
        pc_insert_result ir;
        if (pc_cache_lookup_alloc(c, "x", 1, tok, PAGES * P, 0, 0, blocks, fresh, &r) ||
            r.alloc_status || r.pages != (it ? PAGES - NEW : 0))
            bench_die("lookup+alloc of insert %zu", it);
        memcpy(blocks + r.pages, fresh, (PAGES - r.pages) * sizeof(*fresh));
        if (pc_cache_insert(c, "x", 1, tok, PAGES * P, blocks, r.lease, NULL, &ir) ||
            pc_cache_release(c, r.lease))
            bench_die("insert %zu", it);
        if (e)
            pc_rpc_events_tick(e);
    }
    double t1 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    if (e && pc_rpc_events_flush(e))
        bench_die("events flush");
    double p1 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    if (e) {
        pc_rpc_events_stats st;
        pc_rpc_events_stats_get(e, &st);
        if (st.events != n + 1 || st.lost_pages)
            bench_die("%llu events published for %zu inserts (%llu pages lost)",
                      (unsigned long long)st.events, n + 1,
                      (unsigned long long)st.lost_pages);
        pc_rpc_events_attach(e, NULL);
        pc_rpc_events_destroy(e);
    }
    if (pc_cache_check(c))
        bench_die("pc_cache_check failed");
    pc_cache_destroy(c);
    free(tok);
    return (one){(t1 - t0) / (double)n * 1e6, (p1 - p0) / (double)n * 1e6};
}

static void usage(FILE *f)
{
    fprintf(f, "usage: events_bench [--inserts N] [--rounds R] [--quick] [--json PATH]\n"
               "  --inserts N  per run (default 10000)\n"
               "  --rounds R   off/events pairs, alternating (default 7; medians)\n"
               "  --quick      500 inserts, 1 round (a smoke run)\n"
               "  --json PATH  also write the figures as JSON\n");
}

static double med(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return bench_median_sorted(v, n);
}

int main(int argc, char **argv)
{
    bench_cli_init("events_bench");
    bench_cli.usage = usage;
    size_t n = 10000, rounds = 7;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--inserts") && i + 1 < argc)
            n = (size_t)bench_arg_u64(argv[++i], "--inserts", 1, 1000000);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (size_t)bench_arg_u64(argv[++i], "--rounds", 1, MAX_ROUNDS);
        else if (!strcmp(argv[i], "--quick"))
            n = 500, rounds = 1;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--help"))
            bench_help();
        else
            bench_usage_die("unknown argument '%s'", argv[i]);
    }
    char dir[] = "/tmp/events_bench_XXXXXX", ep[PATH_MAX];
    if (!mkdtemp(dir))
        bench_die("mkdtemp");
    snprintf(ep, sizeof(ep), "ipc://%s/ev.sock", dir);
    double lp[2][MAX_ROUNDS], pp[2][MAX_ROUNDS];
    for (size_t r = 0; r < rounds; r++)
        for (int j = 0; j < 2; j++) {
            int on = r % 2 ? 1 - j : j; /* off first, then events first */
            one o = run(n, on, ep, 1 + r);
            lp[on][r] = o.loop_us;
            pp[on][r] = o.proc_us;
            bench_say("round %zu/%zu %-6s loop %.2f us/insert, process %.2f",
                      r + 1, rounds, on ? "events" : "off", o.loop_us, o.proc_us);
        }
    char sock[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/ev.sock", dir);
    unlink(sock);
    rmdir(dir);
    double l0 = med(lp[0], rounds), l1 = med(lp[1], rounds);
    double p0 = med(pp[0], rounds), p1 = med(pp[1], rounds);
    printf("%zu inserts of %u pages (%u new) per run, medians of %zu runs each\n", n,
           PAGES, NEW, rounds);
    printf("setting   loop (us/insert)   x off   process (us/insert)   x off\n");
    printf("off       %16.2f           %19.2f\n", l0, p0);
    printf("events    %16.2f   %5.2f   %19.2f   %5.2f\n", l1, l1 / l0, p1, p1 / p0);
    printf("(the loop: this thread; the process: + the events thread and libzmq's; "
           "no subscriber, so no bytes move)\n");
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f)
            bench_die("%s: cannot write", json);
        fprintf(f, "{\"bench\": \"events_bench\", \"inserts\": %zu, \"rounds\": %zu, "
                   "\"off\": {\"loop_us\": %.3f, \"process_us\": %.3f}, "
                   "\"events\": {\"loop_us\": %.3f, \"process_us\": %.3f}, "
                   "\"loop_ratio\": %.4f, \"process_ratio\": %.4f}\n",
                n, rounds, l0, p0, l1, p1, l1 / l0, p1 / p0);
        fclose(f);
    }
    return 0;
}

/*
 * bench/engine/gsp.c - the shared-system-prompt workload: E reference engine
 * processes (engine.c) against one prefixcached, with and without the
 * cache, in one run.
 *
 *   gsp_bench ──spawns──► prefixcached --endpoint=ipc://DIR/d.sock
 *       │                  --pool_backend=host, the model's block layout
 *       ├─fork─► engine 0 ─┐  each: its own eng_engine (+ pc_client in
 *       ├─fork─► engine 1 ─┤  mode "on"); takes the next request from a
 *       └─ ...             ┘  shared counter, writes its record to shared
 *                             memory
 *
 * Workload: G groups x R prompts.  Group g's system prompt is S tokens (its
 * own splitmix64 stream), each prompt adds a unique Q-token question and
 * decodes O tokens greedily.  Requests are interleaved across groups
 * (request i = prompt i / G of group i % G), handed out in that order to
 * whichever engine is free (closed loop: TTFT holds no queueing).
 *
 * Modes, each with the same requests: "off" (engines without a cache: they
 * compute every prompt) and "on" (lookup+pin+alloc, compute the uncached
 * suffix, insert+release; the cache starts empty).  They alternate chunk by
 * chunk (--chunk requests, default G: off, on, on, off, off, on, ...), so
 * that both see the same background load of a shared machine; "on" keeps
 * its cache across chunks, so each request finds what a run of that mode
 * alone would have left it.  Wall times add up per mode.  Checked:
 * every request's greedy tokens are the same in both modes and its last
 * logits agree to 1e-4 relative; in "on", no lease is left at the end and
 * the daemon exits 0 on SIGTERM.  Exit status: 0 when all that holds, 1
 * otherwise; the targets (PASS/FAIL) do not change it.
 *
 * Reported: token hit rate vs the ideal (an infinite cache: every prompt
 * but the first of its group reuses the system prompt's full pages), TTFT
 * p50/p90/p99 of both modes, prefill tokens computed, throughput, the time
 * in prefixcache calls as a share of TTFT, evictions; the ideal TTFT
 * speedup from the prefill work an infinite cache skips, two ways (model
 * FLOPs; and a time model a*n + b*n(n+1)/2 fitted to this engine's own
 * no-cache prefills of n and n/2 tokens, measured before the modes run).
 * Output: a table, JSON (stdout and --json), a PNG of the TTFT CDFs
 * (gnuplot; skipped with a warning when gnuplot is absent).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "bench/common/rng.h"
#include "bench/engine/engine.h"
#include "rpc/client.h"

#ifndef PC_DAEMON_PATH
#define PC_DAEMON_PATH "prefixcached"
#endif

#define GSP_MAX_ENGINES 16
enum { GSP_OFF = 0, GSP_ON = 1 };
static const char *const gsp_mode_name[2] = {"off", "on"};

/* ---- configuration ---------------------------------------------------------- */

typedef struct gsp_config {
    const char *preset;
    size_t G, R, S, Q, O, E;
    size_t chunk;         /* requests per chunk; the modes alternate     */
    uint64_t seed;
    uint64_t pool_blocks; /* 0: the working set + headroom                */
    double pool_frac;     /* > 0: this fraction of the working set        */
    const char *json_path, *plot_path, *daemon_path;
    bool plot;
    int timeout_ms;
    eng_shape shape;
} gsp_config;

static gsp_config C;

typedef struct gsp_preset {
    const char *name;
    size_t G, R, S, Q, O;
    bool tiny_model;
} gsp_preset;

static const gsp_preset gsp_presets[] = {
    {"tiny", 2, 3, 64, 16, 4, true},   /* ctest smoke: seconds under ASan */
    {"quick", 4, 4, 512, 64, 16, false},
    {"medium", 16, 16, 2048, 128, 64, false},
    {"full", 64, 16, 2048, 128, 256, false}, /* the issue's defaults */
};

/* ---- shared state ------------------------------------------------------------- */

typedef struct gsp_rec {
    eng_stats st;
    int rc;
    int engine;
    uint64_t start_ns, end_ns; /* CLOCK_MONOTONIC, shared by all processes */
} gsp_rec;

typedef struct gsp_shared {
    atomic_size_t next; /* the next request to take                     */
    size_t end;         /* the current chunk ends here (set before 'g') */
} gsp_shared;

static gsp_shared *g_sh;
static gsp_rec *g_rec[2];      /* [mode][request]              */
static uint32_t *g_out[2];     /* [mode][request][O]           */
static float *g_logits[2];     /* [mode][request][vocab]: last */
static size_t g_nreq, g_n;     /* requests, tokens per prompt  */

static pid_t g_main_pid, g_daemon = -1;
static pid_t g_worker[GSP_MAX_ENGINES];
static int g_cmd[GSP_MAX_ENGINES], g_res[GSP_MAX_ENGINES];
static char g_dir[64], g_endpoint[128], g_shm[64], g_log[128];
static int g_daemon_status = -1;

/* Stop the workers and the daemon, remove the run's files.  Idempotent. */
static void cleanup(void)
{
    if (getpid() != g_main_pid)
        return;
    for (size_t i = 0; i < GSP_MAX_ENGINES; i++) {
        if (g_cmd[i] > 0) {
            close(g_cmd[i]); /* EOF: the worker exits */
            g_cmd[i] = -1;
        }
        if (g_worker[i] > 0) {
            rpt_reap(g_worker[i], 5000);
            g_worker[i] = 0;
        }
    }
    if (g_daemon > 0) {
        kill(g_daemon, SIGTERM);
        g_daemon_status = rpt_reap(g_daemon, 10000);
        g_daemon = -1;
    }
    if (g_dir[0]) {
        char p[160];
        snprintf(p, sizeof p, "%s/d.sock", g_dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/d.sock.lock", g_dir);
        unlink(p);
        if (g_daemon_status == 0)
            unlink(g_log);
        else
            fprintf(stderr, "gsp: the daemon's log stays in %s\n", g_log);
        rmdir(g_dir);
        g_dir[0] = '\0';
    }
    if (g_shm[0]) {
        shm_unlink(g_shm); /* normally the daemon's job */
        g_shm[0] = '\0';
    }
}

static void on_signal(int sig)
{
    (void)sig;
    /* the workers die with us (PR_SET_PDEATHSIG); the daemon is stopped
     * properly so that it removes its socket and pool */
    if (getpid() == g_main_pid && g_daemon > 0) {
        kill(g_daemon, SIGTERM);
        waitpid(g_daemon, NULL, 0);
    }
    _exit(130);
}

/* ---- workload ------------------------------------------------------------------- */

/* The tokens of request i: group i % G's system prompt, then its question. */
static void gsp_prompt(size_t i, uint32_t *t)
{
    size_t g = i % C.G, r = i / C.G;
    uint64_t s = bench_mix64(C.seed * 0x9e37u + g * 2 + 1);
    for (size_t k = 0; k < C.S; k++)
        t[k] = (uint32_t)(1 + bench_rng_next(&s) % (C.shape.vocab - 1));
    s = bench_mix64(C.seed * 0x85ebu + (g * C.R + r) * 2 + 2) ^ 0x5bd1e995u;
    for (size_t k = 0; k < C.Q; k++)
        t[C.S + k] = (uint32_t)(1 + bench_rng_next(&s) % (C.shape.vocab - 1));
}

/* Tokens an infinite cache serves request i (an engine always computes the
 * prompt's last token). */
static size_t gsp_ideal_cached(size_t i)
{
    if (i < C.G) /* the first prompt of its group */
        return 0;
    size_t P = C.shape.page_tokens, sys = C.S / P * P, cap = (g_n - 1) / P * P;
    return sys < cap ? sys : cap;
}

/* Full pages the run can insert (each group's system pages once, every
 * prompt's other full pages): the working set. */
static uint64_t gsp_working_set(void)
{
    size_t P = C.shape.page_tokens;
    return (uint64_t)C.G * (C.S / P) + (uint64_t)g_nreq * (g_n / P - C.S / P);
}

/* ---- engine workers -------------------------------------------------------------- */

static void wr(int fd, char c)
{
    while (write(fd, &c, 1) != 1)
        if (errno != EINTR)
            _exit(3);
}

static int rd(int fd, char *c)
{
    for (;;) {
        ssize_t n = read(fd, c, 1);
        if (n == 1)
            return 0;
        if (n == 0 || errno != EINTR)
            return -1;
    }
}

static void worker_main(int id, int cmd, int res)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != g_main_pid)
        _exit(1);
    eng_model *m;
    if (eng_model_create(&C.shape, &m))
        _exit(2);
    uint32_t *prompt = malloc(g_n * sizeof(uint32_t));
    if (!prompt)
        _exit(2);
    eng_engine *eng[2] = {NULL, NULL}; /* [mode], made on first use */
    char c;
    while (rd(cmd, &c) == 0 && c != 'q') {
        int mode = c == '1' ? GSP_ON : GSP_OFF;
        if (!eng[mode]) {
            int rc = eng_engine_create(m, mode == GSP_ON ? g_endpoint : NULL,
                                       C.timeout_ms, &eng[mode]);
            if (rc) {
                fprintf(stderr, "gsp: engine %d: %s\n", id, pc_strerror(rc));
                wr(res, 'e');
                continue;
            }
        }
        eng_engine *e = eng[mode];
        wr(res, 'r');
        if (rd(cmd, &c))
            break;
        size_t end = g_sh->end;
        for (;;) {
            size_t i = atomic_fetch_add(&g_sh->next, 1);
            if (i >= end)
                break;
            gsp_prompt(i, prompt);
            gsp_rec *rec = &g_rec[mode][i];
            rec->engine = id;
            rec->start_ns = bench_now_ns();
            rec->rc = eng_generate(e, prompt, g_n, C.O, g_out[mode] + i * C.O,
                                   NULL, g_logits[mode] + i * C.shape.vocab,
                                   &rec->st);
            rec->end_ns = bench_now_ns();
        }
        /* the chunk's last insert is done before the chunk counts as done */
        if (eng_engine_settle(e) || eng_engine_insert_errors(e))
            fprintf(stderr, "gsp: engine %d: %zu inserts refused\n", id,
                    eng_engine_insert_errors(e));
        wr(res, 'd');
    }
    eng_engine_destroy(eng[0]);
    eng_engine_destroy(eng[1]);
    free(prompt);
    eng_model_destroy(m);
    _exit(0);
}

static void start_workers(void)
{
    for (size_t i = 0; i < C.E; i++) {
        int a[2], b[2];
        if (pipe(a) || pipe(b))
            bench_die("pipe: %s", strerror(errno));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            bench_die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(a[1]);
            close(b[0]);
            worker_main((int)i, a[0], b[1]);
        }
        close(a[0]);
        close(b[1]);
        g_worker[i] = pid;
        g_cmd[i] = a[1];
        g_res[i] = b[0];
    }
}

static void expect_all(char want)
{
    for (size_t i = 0; i < C.E; i++) {
        char c;
        if (rd(g_res[i], &c) || c != want)
            bench_die("engine %zu: %s", i,
                      c == 'e' ? "could not start (see above)" : "died");
    }
}

/* Run requests [begin, end) in one mode with every engine; the wall time
 * in seconds. */
static double run_chunk(int mode, size_t begin, size_t end)
{
    atomic_store(&g_sh->next, begin);
    g_sh->end = end; /* the workers read it after 'g' (a pipe: ordered) */
    for (size_t i = 0; i < C.E; i++)
        wr(g_cmd[i], mode == GSP_ON ? '1' : '0');
    expect_all('r');
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < C.E; i++)
        wr(g_cmd[i], 'g');
    expect_all('d');
    return (bench_now_ns() - t0) / 1e9;
}

/* ---- the daemon ------------------------------------------------------------------ */

/* --daemon-arg: more knobs for the daemon, e.g. --eviction_policy=auto */
#define MAX_DARGS 8
static const char *g_dargs[MAX_DARGS];
static int g_ndargs;

static void start_daemon(uint64_t pool_blocks)
{
    char tmpl[] = "/tmp/gsp-XXXXXX";
    if (!mkdtemp(tmpl))
        bench_die("mkdtemp: %s", strerror(errno));
    snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    snprintf(g_endpoint, sizeof g_endpoint, "ipc://%s/d.sock", g_dir);
    snprintf(g_shm, sizeof g_shm, "/gsp-%ld", (long)getpid());
    snprintf(g_log, sizeof g_log, "%s/daemon.log", g_dir);
    static char a[16][200];
    static char sh[ENG_DAEMON_NARGS][48];
    eng_daemon_args(&C.shape, sh);
    int n = 0;
    snprintf(a[n++], 200, "--endpoint=%s", g_endpoint);
    snprintf(a[n++], 200, "--shm_name=%s", g_shm);
    snprintf(a[n++], 200, "--pool_backend=host");
    snprintf(a[n++], 200, "--pool_blocks=%llu", (unsigned long long)pool_blocks);
    snprintf(a[n++], 200, "--log_level=warn");
    char *argv[20 + MAX_DARGS];
    argv[0] = (char *)C.daemon_path;
    for (int i = 0; i < n; i++)
        argv[i + 1] = a[i];
    for (int i = 0; i < ENG_DAEMON_NARGS; i++)
        argv[++n] = sh[i];
    for (int i = 0; i < g_ndargs; i++)
        argv[++n] = (char *)g_dargs[i];
    argv[n + 1] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int in = open("/dev/null", O_RDONLY);
        int out = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        execv(C.daemon_path, argv);
        fprintf(stderr, "exec %s: %s\n", C.daemon_path, strerror(errno));
        _exit(127);
    }
    g_daemon = pid;
}

static pc_client *g_client; /* the parent's: readiness, stats */

static void wait_daemon(void)
{
    int rc = pc_client_connect(g_endpoint, 200, &g_client);
    if (rc)
        bench_die("pc_client_connect: %s", pc_strerror(rc));
    for (int tries = 0;; tries++) {
        int st;
        if (waitpid(g_daemon, &st, WNOHANG) == g_daemon) {
            g_daemon = -1;
            g_daemon_status = st;
            bench_die("prefixcached exited at start (status 0x%x); log: %s", st, g_log);
        }
        if (pc_client_ping(g_client) == 0)
            break;
        if (tries > 100)
            bench_die("prefixcached does not answer on %s", g_endpoint);
    }
    pc_client_set_timeout(g_client, C.timeout_ms);
}

typedef struct gsp_statq {
    const char *name;
    uint64_t v;
    bool found;
} gsp_statq;

static void stat_cb(void *ctx, const char *name, uint64_t v)
{
    for (gsp_statq *q = ctx; q->name; q++)
        if (!strcmp(q->name, name))
            q->v = v, q->found = true;
}

static uint64_t daemon_stat(const char *name)
{
    gsp_statq q[2] = {{name, 0, false}, {NULL, 0, false}};
    int rc = pc_client_stats(g_client, stat_cb, q);
    if (rc)
        bench_die("stats: %s", pc_strerror(rc));
    if (!q[0].found)
        bench_die("stats: no %s", name);
    return q[0].v;
}

/* ---- statistics ------------------------------------------------------------------- */

typedef struct gsp_mode_stats {
    double wall_s;
    double ttft_p50, ttft_p90, ttft_p99, ttft_mean; /* ms */
    double *ttft_sorted;                            /* ms */
    size_t prompt_tokens, cached_tokens, computed_tokens, gen_tokens;
    double overhead_p50, overhead_in_ttft_p50, overhead_total; /* shares */
    double lookup_p50_ms, insert_p50_ms;
    size_t cache_errors, inserted_pages;
} gsp_mode_stats;

static void mode_stats(int mode, double wall, gsp_mode_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->wall_s = wall;
    double *t = malloc(g_nreq * sizeof(double));
    double *ov = malloc(g_nreq * sizeof(double));
    double *ovt = malloc(g_nreq * sizeof(double));
    double *lk = malloc(g_nreq * sizeof(double));
    double *in = malloc(g_nreq * sizeof(double));
    if (!t || !ov || !ovt || !lk || !in)
        bench_die("out of memory");
    double calls = 0, ttft = 0;
    for (size_t i = 0; i < g_nreq; i++) {
        const gsp_rec *r = &g_rec[mode][i];
        if (r->rc)
            bench_die("mode %s, request %zu: eng_generate: %s", gsp_mode_name[mode],
                      i, pc_strerror(r->rc));
        t[i] = r->st.ttft_ns / 1e6;
        double c = (double)r->st.lookup_ns + (double)r->st.insert_ns;
        ov[i] = c / r->st.ttft_ns;
        ovt[i] = (double)r->st.lookup_ns / r->st.ttft_ns;
        lk[i] = r->st.lookup_ns / 1e6;
        in[i] = r->st.insert_ns / 1e6;
        calls += c;
        ttft += r->st.ttft_ns;
        s->prompt_tokens += r->st.prompt_tokens;
        s->cached_tokens += r->st.cached_tokens;
        s->computed_tokens += r->st.computed_tokens;
        s->gen_tokens += r->st.gen_tokens;
        s->inserted_pages += r->st.inserted_pages;
        s->cache_errors += r->st.cache_status != 0;
    }
    s->ttft_mean = bench_mean(t, g_nreq);
    qsort(t, g_nreq, sizeof(double), bench_cmp_double);
    qsort(ov, g_nreq, sizeof(double), bench_cmp_double);
    qsort(ovt, g_nreq, sizeof(double), bench_cmp_double);
    qsort(lk, g_nreq, sizeof(double), bench_cmp_double);
    qsort(in, g_nreq, sizeof(double), bench_cmp_double);
    s->ttft_p50 = bench_quantile_sorted(t, g_nreq, 0.50);
    s->ttft_p90 = bench_quantile_sorted(t, g_nreq, 0.90);
    s->ttft_p99 = bench_quantile_sorted(t, g_nreq, 0.99);
    s->overhead_p50 = bench_quantile_sorted(ov, g_nreq, 0.50);
    s->overhead_in_ttft_p50 = bench_quantile_sorted(ovt, g_nreq, 0.50);
    s->overhead_total = ttft > 0 ? calls / ttft : NAN;
    s->lookup_p50_ms = bench_quantile_sorted(lk, g_nreq, 0.50);
    s->insert_p50_ms = bench_quantile_sorted(in, g_nreq, 0.50);
    s->ttft_sorted = t;
    free(ov);
    free(ovt);
    free(lk);
    free(in);
}

/* The ideal p50 speedup: p50 of each request's prefill cost without a
 * cache over the p50 with an infinite cache, by cost(cached, n). */
static double ideal_speedup(double (*cost)(size_t c, size_t n))
{
    double *a = malloc(g_nreq * sizeof(double)), *b = malloc(g_nreq * sizeof(double));
    if (!a || !b)
        bench_die("out of memory");
    for (size_t i = 0; i < g_nreq; i++) {
        a[i] = cost(0, g_n);
        b[i] = cost(gsp_ideal_cached(i), g_n);
    }
    qsort(a, g_nreq, sizeof(double), bench_cmp_double);
    qsort(b, g_nreq, sizeof(double), bench_cmp_double);
    double r = bench_quantile_sorted(a, g_nreq, 0.5) / bench_quantile_sorted(b, g_nreq, 0.5);
    free(a);
    free(b);
    return r;
}

static double cost_flops(size_t c, size_t n) { return eng_prefill_flops(&C.shape, c, n); }

/* Time model of a prefill: a per computed token, b per (query, key) pair. */
static double g_ta, g_tb;
static double cost_time(size_t c, size_t n)
{
    double pairs = (double)n * (n + 1) / 2 - (double)c * (c + 1) / 2;
    return g_ta * (double)(n - c) + g_tb * pairs;
}

/* Fit g_ta, g_tb to this engine's no-cache prefill times of n and n/2
 * tokens (best of 3 each, one process, before the modes run). */
static void calibrate(void)
{
    eng_model *m;
    eng_engine *e;
    if (eng_model_create(&C.shape, &m) || eng_engine_create(m, NULL, 0, &e))
        bench_die("calibration: cannot create an engine");
    uint32_t *p = malloc(g_n * sizeof(uint32_t)), out[1];
    if (!p)
        bench_die("out of memory");
    gsp_prompt(0, p);
    size_t len[2] = {g_n, g_n / 2};
    double t[2];
    for (int k = 0; k < 2; k++) {
        t[k] = INFINITY;
        for (int rep = 0; rep < 3; rep++) {
            eng_stats st;
            if (eng_generate(e, p, len[k], 1, out, NULL, NULL, &st))
                bench_die("calibration: eng_generate failed");
            t[k] = fmin(t[k], st.prefill_ns / 1e9);
        }
    }
    /* t = a n + b n(n+1)/2 at two lengths */
    double n1 = len[0], n2 = len[1];
    double p1 = n1 * (n1 + 1) / 2, p2 = n2 * (n2 + 1) / 2;
    double det = n1 * p2 - n2 * p1;
    g_ta = (t[0] * p2 - t[1] * p1) / det;
    g_tb = (n1 * t[1] - n2 * t[0]) / det;
    bench_say("calibration: no-cache prefill %.1f ms (%zu tokens), %.1f ms "
              "(%zu): %.2f us/token + %.3f ns/(query,key) pair", t[0] * 1e3,
              len[0], t[1] * 1e3, len[1], g_ta * 1e6, g_tb * 1e9);
    free(p);
    eng_engine_destroy(e);
    eng_model_destroy(m);
}

/* ---- output ------------------------------------------------------------------------ */

static const rpt_style STYLE = {
    .label_w = 50, .ratio_w = 9, .target_w = 12, .small_digits = 3,
    .label_cap = 96, .note_cap = 96, .note_head = "baseline / ratio",
    .nan_ratio_info = false,
};

static bool have_gnuplot(void)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *dup = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(dup, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char f[512];
        snprintf(f, sizeof f, "%s/gnuplot", *d ? d : ".");
        found = access(f, X_OK) == 0;
    }
    free(dup);
    return found;
}

static void write_plot(const gsp_mode_stats *ms, double ideal)
{
    if (!have_gnuplot()) {
        fprintf(stderr, "gsp: warning: gnuplot not found: no plot\n");
        return;
    }
    char dat[160], gp[160];
    snprintf(dat, sizeof dat, "%s/ttft.dat", g_dir);
    snprintf(gp, sizeof gp, "%s/ttft.gp", g_dir);
    FILE *f = fopen(dat, "w");
    if (!f)
        bench_die("%s: %s", dat, strerror(errno));
    for (int mode = 0; mode < 2; mode++) {
        fprintf(f, "# cache %s: ttft_ms fraction\n", gsp_mode_name[mode]);
        for (size_t i = 0; i < g_nreq; i++)
            fprintf(f, "%.4f %.6f\n", ms[mode].ttft_sorted[i],
                    (double)(i + 1) / g_nreq);
        fprintf(f, "\n\n");
    }
    fclose(f);
    f = fopen(gp, "w");
    if (!f)
        bench_die("%s: %s", gp, strerror(errno));
    fprintf(f,
            "set terminal pngcairo size 960,600 font ',11'\n"
            "set output '%s'\n"
            "set title 'gsp: TTFT, %zu requests (G=%zu R=%zu S=%zu Q=%zu O=%zu, "
            "%zu engines); p50 speedup %.1fx (ideal %.1fx)'\n"
            "set logscale x\nset grid\nset key right bottom\n"
            "set xlabel 'time to first token (ms, log scale)'\n"
            "set ylabel 'fraction of requests'\nset yrange [0:1.02]\n"
            "plot '%s' index 0 using 1:2 with steps lw 2 title 'cache off', \\\n"
            "     '%s' index 1 using 1:2 with steps lw 2 title 'cache on'\n",
            C.plot_path, g_nreq, C.G, C.R, C.S, C.Q, C.O, C.E,
            ms[0].ttft_p50 / ms[1].ttft_p50, ideal, dat, dat);
    fclose(f);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", gp, (char *)NULL);
        _exit(127);
    }
    int st = pid > 0 ? rpt_reap(pid, 30000) : -1;
    if (st != 0)
        fprintf(stderr, "gsp: warning: gnuplot failed (status 0x%x): no plot\n", st);
    else
        bench_say("plot: %s", C.plot_path);
    unlink(dat);
    unlink(gp);
}

static void json_mode(FILE *f, const char *name, const gsp_mode_stats *s)
{
    fprintf(f, "    \"%s\": {\"wall_s\": ", name);
    rpt_json_num(f, s->wall_s);
    fputs(", \"ttft_ms\": {\"p50\": ", f);
    rpt_json_num(f, s->ttft_p50);
    fputs(", \"p90\": ", f);
    rpt_json_num(f, s->ttft_p90);
    fputs(", \"p99\": ", f);
    rpt_json_num(f, s->ttft_p99);
    fputs(", \"mean\": ", f);
    rpt_json_num(f, s->ttft_mean);
    fprintf(f, "}, \"prompt_tokens\": %zu, \"cached_tokens\": %zu, "
               "\"computed_tokens\": %zu, \"generated_tokens\": %zu, "
               "\"inserted_pages\": %zu, \"cache_errors\": %zu, "
               "\"calls_share_of_ttft_p50\": ",
            s->prompt_tokens, s->cached_tokens, s->computed_tokens,
            s->gen_tokens, s->inserted_pages, s->cache_errors);
    rpt_json_num(f, s->overhead_p50);
    fputs(", \"lookup_ms_p50\": ", f);
    rpt_json_num(f, s->lookup_p50_ms);
    fputs(", \"insert_ms_p50\": ", f);
    rpt_json_num(f, s->insert_p50_ms);
    fputs("}", f);
}

static void print_json(FILE *f, const rpt_row *rows, size_t nrows,
                       const gsp_mode_stats *ms, uint64_t pool, uint64_t ws,
                       uint64_t evicted, double max_rel)
{
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    fprintf(f, "{\n  \"bench\": \"gsp\",\n  \"schema\": 1,\n  \"preset\": ");
    rpt_json_str(f, C.preset);
    fprintf(f, ",\n  \"machine\": {\"nproc\": %ld, \"cpu\": ",
            sysconf(_SC_NPROCESSORS_ONLN));
    rpt_json_str(f, cpu);
    fprintf(f, "},\n  \"config\": {\"G\": %zu, \"R\": %zu, \"S\": %zu, "
               "\"Q\": %zu, \"O\": %zu, \"engines\": %zu, \"seed\": %llu, "
               "\"pool_blocks\": %llu, \"working_set_pages\": %llu, "
               "\"evicted_pages\": %llu, \"model\": {\"layers\": %u, "
               "\"dim\": %u, \"heads\": %u, \"kv_heads\": %u, \"ffn\": %u, "
               "\"vocab\": %u, \"page_tokens\": %u, \"seed\": %llu}},\n",
            C.G, C.R, C.S, C.Q, C.O, C.E, (unsigned long long)C.seed,
            (unsigned long long)pool, (unsigned long long)ws,
            (unsigned long long)evicted, C.shape.layers, C.shape.dim,
            C.shape.n_heads, C.shape.kv_heads, C.shape.ffn, C.shape.vocab,
            C.shape.page_tokens, (unsigned long long)C.shape.seed);
    fputs("  \"max_rel_logit_diff\": ", f);
    rpt_json_num(f, max_rel);
    fputs(",\n  \"modes\": {\n", f);
    json_mode(f, "off", &ms[0]);
    fputs(",\n", f);
    json_mode(f, "on", &ms[1]);
    fputs("\n  },\n  \"metrics\": [\n", f);
    rpt_json_metrics(f, &STYLE, rows, nrows);
    fputs("  ]\n}\n", f);
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: gsp_bench [--preset tiny|quick|medium|full] [-G N] [-R N] [-S N]\n"
        "                 [-Q N] [-O N] [--engines N] [--chunk N]\n"
        "                 [--pool-blocks N]\n"
        "                 [--pool-frac F] [--seed N] [--json PATH] [--plot PATH]\n"
        "                 [--no-plot] [--daemon PATH] [--daemon-arg ARG]...\n"
        "                 [--timeout-ms N]\n"
        "                 [shape options]\n"
        "  --preset P        tiny (ctest: a tiny model, 6 prompts), quick (16\n"
        "                    prompts of 576 tokens), medium (G=16 R=16 S=2048\n"
        "                    Q=128 O=64), full (the defaults: G=64 R=16 S=2048\n"
        "                    Q=128 O=256); default medium; -G.. override it\n"
        "  --engines N       engine processes (default 2)\n"
        "  --chunk N         the modes alternate every N requests (default G)\n"
        "  --pool-blocks N   the daemon's pool (default: the working set, every\n"
        "                    full page the run inserts, + headroom)\n"
        "  --pool-frac F     the pool as a fraction of the working set (< 1:\n"
        "                    eviction at work)\n"
        "  --plot PATH       the TTFT plot (default gsp_ttft.png)\n"
        "  --daemon-arg ARG  one more option for the daemon, e.g.\n"
        "                    --eviction_policy=auto (repeatable)\n"
        ENG_SHAPE_USAGE);
}

static size_t parse_size(const char *opt, const char *v)
{
    return (size_t)bench_arg_u64(v, opt, 0, SIZE_MAX);
}

int main(int argc, char **argv)
{
    g_main_pid = getpid();
    bench_cli_init("gsp");
    snprintf(bench_cli.die_prefix, sizeof bench_cli.die_prefix, "gsp: error: ");
    snprintf(bench_cli.say_prefix, sizeof bench_cli.say_prefix, "gsp: ");
    bench_cli.die_status = 1;
    bench_cli.main_pid = g_main_pid; /* a worker's bench_die: _exit(1) */
    bench_cli.on_die = cleanup;
    bench_cli.usage = usage;
    C.preset = "medium";
    C.E = 2;
    C.seed = 1;
    C.json_path = NULL;
    C.plot_path = "gsp_ttft.png";
    C.plot = true;
    C.daemon_path = PC_DAEMON_PATH;
    C.timeout_ms = 10000;
    /* the preset first: the other options override it */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--preset"))
            C.preset = argv[i + 1];
    const gsp_preset *pr = NULL;
    for (size_t k = 0; k < sizeof gsp_presets / sizeof gsp_presets[0]; k++)
        if (!strcmp(gsp_presets[k].name, C.preset))
            pr = &gsp_presets[k];
    if (!pr)
        bench_usage_die("unknown preset %s", C.preset);
    C.G = pr->G, C.R = pr->R, C.S = pr->S, C.Q = pr->Q, C.O = pr->O;
    C.shape = ENG_SHAPE_DEFAULT;
    if (pr->tiny_model) {
        C.shape.dim = 64, C.shape.ffn = 96, C.shape.vocab = 512;
        C.shape.max_ctx = 256;
    }
    bool shape_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_help();
        } else if (!strcmp(a, "--no-plot")) {
            C.plot = false;
            continue;
        }
        if (!v)
            bench_usage_die("%s: missing value", a);
        i++;
        if (!strcmp(a, "--preset"))
            ;
        else if (!strcmp(a, "-G"))
            C.G = parse_size(a, v);
        else if (!strcmp(a, "-R"))
            C.R = parse_size(a, v);
        else if (!strcmp(a, "-S"))
            C.S = parse_size(a, v);
        else if (!strcmp(a, "-Q"))
            C.Q = parse_size(a, v);
        else if (!strcmp(a, "-O"))
            C.O = parse_size(a, v);
        else if (!strcmp(a, "--chunk"))
            C.chunk = parse_size(a, v);
        else if (!strcmp(a, "--engines"))
            C.E = parse_size(a, v);
        else if (!strcmp(a, "--pool-blocks"))
            C.pool_blocks = parse_size(a, v);
        else if (!strcmp(a, "--pool-frac")) {
            C.pool_frac = strtod(v, NULL);
            if (!(C.pool_frac > 0))
                bench_die("--pool-frac: a positive number");
        } else if (!strcmp(a, "--seed"))
            C.seed = parse_size(a, v);
        else if (!strcmp(a, "--json"))
            C.json_path = v;
        else if (!strcmp(a, "--plot"))
            C.plot_path = v;
        else if (!strcmp(a, "--daemon"))
            C.daemon_path = v;
        else if (!strcmp(a, "--daemon-arg")) {
            if (!v || g_ndargs == MAX_DARGS)
                bench_die("--daemon-arg needs a value (at most %d)", MAX_DARGS);
            g_dargs[g_ndargs++] = v;
        }
        else if (!strcmp(a, "--timeout-ms"))
            C.timeout_ms = (int)parse_size(a, v);
        else if (!strncmp(a, "--", 2)) {
            int rc = eng_shape_set(&C.shape, a + 2, v);
            if (rc)
                bench_usage_die("%s %s: %s", a, v,
                                rc == PC_E_NOENT ? "unknown option" : "bad value");
            shape_set = true;
        } else {
            bench_usage_die("bad argument %s", a);
        }
    }
    (void)shape_set;
    g_n = C.S + C.Q;
    g_nreq = C.G * C.R;
    if (!C.chunk)
        C.chunk = C.G; /* one round over the groups */
    if (!C.G || !C.R || !g_n || !C.O || !C.E || C.E > GSP_MAX_ENGINES)
        bench_die("need G, R, S + Q, O >= 1 and 1 <= engines <= %d", GSP_MAX_ENGINES);
    if (g_n + C.O > C.shape.max_ctx)
        C.shape.max_ctx = (uint32_t)(g_n + C.O);
    int rc = eng_shape_check(&C.shape);
    if (rc)
        bench_die("bad model shape: %s", pc_strerror(rc));

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    /* shared memory for the records, outputs and logits of both modes */
    size_t V = C.shape.vocab;
    size_t bytes = sizeof(gsp_shared) + 2 * g_nreq * (sizeof(gsp_rec) +
                   C.O * sizeof(uint32_t) + V * sizeof(float));
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        bench_die("mmap %zu bytes: %s", bytes, strerror(errno));
    g_sh = mem;
    atomic_init(&g_sh->next, 0);
    uint8_t *p = (uint8_t *)mem + sizeof(gsp_shared);
    for (int mode = 0; mode < 2; mode++) {
        g_rec[mode] = (gsp_rec *)p, p += g_nreq * sizeof(gsp_rec);
        g_logits[mode] = (float *)p, p += g_nreq * V * sizeof(float);
        g_out[mode] = (uint32_t *)p, p += g_nreq * C.O * sizeof(uint32_t);
    }

    uint64_t ws = gsp_working_set();
    uint64_t headroom = (uint64_t)C.E * (g_n / C.shape.page_tokens + 1) + 8;
    uint64_t pool = C.pool_blocks ? C.pool_blocks
                    : C.pool_frac > 0 ? (uint64_t)(C.pool_frac * (double)ws) + headroom
                                      : ws + headroom;
    double ideal_hit = 0;
    for (size_t i = 0; i < g_nreq; i++)
        ideal_hit += (double)gsp_ideal_cached(i);
    ideal_hit /= (double)g_nreq * (double)g_n;
    bench_say("preset %s: G=%zu R=%zu S=%zu Q=%zu O=%zu, %zu engines; %zu "
              "requests of %zu tokens; ideal hit rate %.4f", C.preset, C.G, C.R,
              C.S, C.Q, C.O, C.E, g_nreq, g_n, ideal_hit);
    bench_say("model: %u layers, dim %u, %u heads on %u KV heads, ffn %u, vocab "
              "%u, %u-token pages; pool %llu blocks (working set %llu pages)",
              C.shape.layers, C.shape.dim, C.shape.n_heads, C.shape.kv_heads,
              C.shape.ffn, C.shape.vocab, C.shape.page_tokens,
              (unsigned long long)pool, (unsigned long long)ws);

    /* order: the daemon (fork+exec), the workers (fork, before any ZeroMQ
     * context exists here), then this process's client */
    start_daemon(pool);
    start_workers();
    wait_daemon();
    calibrate();

    /* the modes alternate chunk by chunk (off, on, then on, off, ...) so
     * that both see the same background load on a shared machine; the cache
     * state of "on" carries over from chunk to chunk, so each request sees
     * exactly what a sequential run would show it */
    double wall[2] = {0, 0};
    size_t nchunks = (g_nreq + C.chunk - 1) / C.chunk;
    for (size_t k = 0; k < nchunks; k++) {
        size_t b = k * C.chunk, e = b + C.chunk < g_nreq ? b + C.chunk : g_nreq;
        for (int h = 0; h < 2; h++) {
            int mode = (int)(k % 2) ^ h;
            wall[mode] += run_chunk(mode, b, e);
        }
        if (k % 4 == 3 || k + 1 == nchunks)
            bench_say("%zu/%zu requests; %.1f s off, %.1f s on", e, g_nreq,
                      wall[0], wall[1]);
    }
    uint64_t evicted = daemon_stat("tree.evicted_pages");
    uint64_t leases = daemon_stat("leases.live");
    uint64_t leased = daemon_stat("pool.blocks.leased");
    for (size_t i = 0; i < C.E; i++)
        wr(g_cmd[i], 'q');
    pc_client_close(g_client);
    g_client = NULL;
    cleanup();

    /* verification */
    bool ok = true;
    size_t bad_tokens = 0;
    double max_rel = 0;
    for (size_t i = 0; i < g_nreq; i++) {
        if (memcmp(g_out[0] + i * C.O, g_out[1] + i * C.O, C.O * sizeof(uint32_t)))
            bad_tokens++;
        const float *a = g_logits[1] + i * V, *b = g_logits[0] + i * V;
        double num = 0, den = 0;
        for (size_t k = 0; k < V; k++) {
            num = fmax(num, fabs((double)a[k] - b[k]));
            den = fmax(den, fabs((double)b[k]));
        }
        max_rel = fmax(max_rel, den > 0 ? num / den : num);
    }
    if (bad_tokens) {
        fprintf(stderr, "gsp: FAILED: %zu requests generated other tokens with "
                "the cache\n", bad_tokens);
        ok = false;
    }
    if (!(max_rel <= 1e-4)) {
        fprintf(stderr, "gsp: FAILED: logits differ by %g (relative)\n", max_rel);
        ok = false;
    }
    if (leases || leased) {
        fprintf(stderr, "gsp: FAILED: %llu leases, %llu leased blocks left\n",
                (unsigned long long)leases, (unsigned long long)leased);
        ok = false;
    }
    if (g_daemon_status != 0) {
        fprintf(stderr, "gsp: FAILED: the daemon exited with status 0x%x\n",
                g_daemon_status);
        ok = false;
    }

    gsp_mode_stats ms[2];
    mode_stats(GSP_OFF, wall[0], &ms[0]);
    mode_stats(GSP_ON, wall[1], &ms[1]);
    double hit = (double)ms[1].cached_tokens / (double)ms[1].prompt_tokens;
    if (!(hit > 0) && pool >= ws && g_nreq > C.G) {
        fprintf(stderr, "gsp: FAILED: nothing was reused\n");
        ok = false;
    }
    if (ms[1].cache_errors)
        bench_say("%zu requests met a cache error (ran without it)",
                  ms[1].cache_errors);
    double id_flops = ideal_speedup(cost_flops);
    double id_time = ideal_speedup(cost_time);
    double ideal = fmax(id_flops, id_time); /* the stricter target */
    double speedup = ms[0].ttft_p50 / ms[1].ttft_p50;
    double tput[2], gtput[2];
    for (int k = 0; k < 2; k++) {
        tput[k] = g_nreq / ms[k].wall_s;
        gtput[k] = (double)(ms[k].prompt_tokens + ms[k].gen_tokens) / ms[k].wall_s;
    }

    rpt_row rows[] = {
        {"hit_rate", "token hit rate (cache on)", "fraction", hit, "ideal", ideal_hit,
         "hit/ideal", hit / ideal_hit, RPT_RATIO_GE, 0.98},
        {"ttft_p50", "TTFT p50, cache on", "ms", ms[1].ttft_p50, "off",
         ms[0].ttft_p50, "speedup off/on", speedup, RPT_RATIO_GE, 0.8 * ideal},
        {"ttft_p90", "TTFT p90, cache on", "ms", ms[1].ttft_p90, "off",
         ms[0].ttft_p90, "speedup off/on", ms[0].ttft_p90 / ms[1].ttft_p90,
         RPT_NONE, 0},
        {"ttft_p99", "TTFT p99, cache on", "ms", ms[1].ttft_p99, "off",
         ms[0].ttft_p99, "speedup off/on", ms[0].ttft_p99 / ms[1].ttft_p99,
         RPT_NONE, 0},
        {"ideal_speedup_flops", "ideal p50 speedup, model FLOPs", "x", id_flops,
         NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"ideal_speedup_time", "ideal p50 speedup, fitted time model", "x",
         id_time, NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"speedup_vs_ideal", "TTFT p50 speedup / ideal (the larger)", "fraction",
         speedup / ideal, NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"overhead_p50", "prefixcache calls / TTFT, p50 (cache on)", "%",
         100 * ms[1].overhead_p50, NULL, NAN, NULL, NAN, RPT_VALUE_LE, 2.0},
        {"overhead_lookup_p50", "lookup / TTFT, p50 (cache on)", "%",
         100 * ms[1].overhead_in_ttft_p50, NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"overhead_total", "all prefixcache calls / all TTFT (cache on)", "%",
         100 * ms[1].overhead_total, NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"lookup_p50", "lookup(pin+alloc) round trip, p50", "ms",
         ms[1].lookup_p50_ms, NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"insert_p50", "insert(release) round trip, p50", "ms",
         ms[1].insert_p50_ms, NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"prefill_tokens", "prefill tokens computed, cache on", "tokens",
         (double)ms[1].computed_tokens, "off", (double)ms[0].computed_tokens,
         "on/off", (double)ms[1].computed_tokens / ms[0].computed_tokens,
         RPT_NONE, 0},
        {"throughput", "throughput, cache on", "req/s", tput[1], "off", tput[0],
         "on/off", tput[1] / tput[0], RPT_NONE, 0},
        {"token_throughput", "throughput (prompt + generated), cache on",
         "tok/s", gtput[1], "off", gtput[0], "on/off", gtput[1] / gtput[0],
         RPT_NONE, 0},
        {"evicted_pages", "pages evicted by the daemon", "pages",
         (double)evicted, NULL, NAN, NULL, NAN, RPT_NONE, 0},
        {"max_rel_logit_diff", "last logits, max |on - off| / max |off|",
         "relative", max_rel, NULL, NAN, NULL, NAN, RPT_VALUE_LE, 1e-4},
    };
    size_t nrows = sizeof rows / sizeof rows[0];
    printf("\ngsp: preset %s, %zu requests (G=%zu R=%zu S=%zu Q=%zu O=%zu), %zu "
           "engines, pool %llu blocks (working set %llu pages)\n", C.preset,
           g_nreq, C.G, C.R, C.S, C.Q, C.O, C.E, (unsigned long long)pool,
           (unsigned long long)ws);
    rpt_print_table(stdout, &STYLE, rows, nrows);
    printf("\n");
    print_json(stdout, rows, nrows, ms, pool, ws, evicted, max_rel);
    if (C.json_path) {
        FILE *f = fopen(C.json_path, "w");
        if (!f)
            bench_die("%s: %s", C.json_path, strerror(errno));
        print_json(f, rows, nrows, ms, pool, ws, evicted, max_rel);
        fclose(f);
    }
    if (C.plot) {
        /* a private directory again for the plot's data and script */
        char tmpl[] = "/tmp/gsp-XXXXXX";
        if (mkdtemp(tmpl)) {
            snprintf(g_dir, sizeof g_dir, "%s", tmpl);
            write_plot(ms, ideal);
            rmdir(g_dir);
        }
        g_dir[0] = '\0';
    }
    free(ms[0].ttft_sorted);
    free(ms[1].ttft_sorted);
    munmap(mem, bytes);
    if (!ok)
        fprintf(stderr, "gsp: verification FAILED\n");
    return ok ? 0 : 1;
}

/*
 * bench/trace_replay/trace_replay.c - request traces through the real tree and
 * pool, every eviction policy against Belady's offline optimum and the ideal
 * (infinite) cache, over a sweep of capacities.  See RESULTS.md.
 *
 *   trace_replay [options] TRACE...          the sweep (in-process)
 *   trace_replay --endpoint EP [--policy P] TRACE
 *   trace_replay --spawn-daemon [--policy P] [--capacity N] TRACE
 *                                            the same replay through a daemon,
 *                                            checked against the in-process one
 *   trace_replay --tier2-x LIST | --tier2-pages LIST [options] TRACE...
 *                                            two tiers: pool C plus tier 2 T,
 *                                            hits per tier, next to one-tier
 *                                            pools of C and of C + T
 *
 * Formats and the replay's rules: trace.h.  Capacities are in pages (one page
 * = one trace block of page_tokens = 512 tokens), by default 1, 2, 5, 10, 20,
 * 50 and 100% of the trace's working set (its distinct full pages; at least
 * 2 pages, the pool's minimum).  Hit rate = matched full pages / full pages.
 *
 * Output: a table per trace and the targets' verdicts (stdout), --json PATH,
 * --md PATH (the tables in Markdown), --plot-dir DIR (DIR/<trace>.png, with
 * gnuplot; skipped with a warning without it).  Progress on stderr.  The
 * (trace, capacity, policy) runs are spread over --jobs forked workers.
 *
 * Exit status: 0, or 1 when something failed (a replay error, a failed
 * self-check, a daemon-mode mismatch), 2 for a usage or load error, 3 when
 * daemon mode asks for a policy the cache refuses (not implemented yet).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "bench/trace_replay/trace.h"
#include "cache/cache.h"
#include "rpc/client.h"

#ifndef PC_DAEMON_PATH
#define PC_DAEMON_PATH "prefixcached"
#endif

#define MAX_TRACES 16
#define MAX_CAPS 32
#define MAX_PRIO 64
#define MAX_T2 16
#define N_POL PC_POLICY_COUNT
#define A_BELADY N_POL /* algorithm index: the policies, then Belady */
#define N_ALG (N_POL + 1)

/* ---- options ---------------------------------------------------------------- */

static struct {
    tr_load_opts load;
    double fractions[MAX_CAPS];
    size_t n_fractions;
    uint64_t capacities[MAX_CAPS];
    size_t n_capacities;
    bool want[N_POL];
    bool belady;
    int jobs;
    bool check;
    const char *json_path, *md_path, *plot_dir;
    tr_priority prio[MAX_PRIO];
    size_t n_prio;
    /* daemon mode */
    const char *endpoint;
    bool spawn;
    const char *daemon_path;
    pc_radix_policy policy;
    bool flush;
    int timeout_ms;
    bool caps_given; /* --fractions or --capacity on the command line */
    /* two tiers: each size in pages, or a multiple of the capacity */
    struct {
        bool mult;
        double v;
    } t2[MAX_T2];
    size_t n_t2;
    const char *t2_path;
} O;

static void usage(FILE *f)
{
    fputs(
        "usage: trace_replay [options] TRACE...\n"
        "  Replays request traces (Mooncake JSON lines or the simple TAB format,\n"
        "  see bench/trace_replay/RESULTS.md) through the real cache for each\n"
        "  eviction policy and a sweep of capacities, with Belady's optimum and\n"
        "  the infinite cache as bounds.\n"
        "options:\n"
        "  --format auto|mooncake|simple   input format (default auto)\n"
        "  --page-tokens N       tokens per page = per trace block (default 512)\n"
        "  --fractions LIST      capacities in %% of the working set\n"
        "                        (default 1,2,5,10,20,50,100)\n"
        "  --capacity LIST       capacities in pages (instead of --fractions)\n"
        "  --policies LIST       policies to run (default: all the cache has)\n"
        "  --no-belady           skip Belady\n"
        "  --priority NS=P       namespace priority for the priority policy (repeat)\n"
        "  --jobs N              worker processes (default: online CPUs)\n"
        "  --check               pc_cache_check / Belady self-check after every\n"
        "                        request (slow; the end is always checked)\n"
        "  --limit N             only the first N requests of each trace\n"
        "  --skip-bad            warn about malformed lines and skip them\n"
        "  --json PATH           results as JSON\n"
        "  --md PATH             the tables in Markdown\n"
        "  --plot-dir DIR        DIR/<trace>.png: hit rate vs capacity (gnuplot)\n"
        "  --quiet               no progress on stderr\n"
        "two tiers (in-process; a host pool of C pages plus T pages of tier 2 in\n"
        "a file; default policy lru; the table and --json/--md change):\n"
        "  --tier2-x LIST        T as multiples of each capacity (e.g. 0,1,4)\n"
        "  --tier2-pages LIST    T in pages (both lists may be given)\n"
        "  --tier2-path DIR      where the tier-2 files go (default /var/tmp)\n"
        "daemon mode (one trace, one policy, one capacity):\n"
        "  --endpoint EP         replay through a running prefixcached started with\n"
        "                        --pool_backend=none --page_tokens=512\n"
        "                        --pool_blocks=N --eviction_policy=P\n"
        "  --spawn-daemon        start a private prefixcached for the run\n"
        "  --daemon PATH         the daemon binary (default: this build's)\n"
        "  --policy P            the policy (default lru)\n"
        "  --flush               flush a non-empty daemon first (all namespaces)\n"
        "  --timeout-ms N        per call (default 10000)\n"
        "policies:",
        f);
    for (int p = 0; p < N_POL; p++)
        fprintf(f, " %s", pc_radix_policy_name((pc_radix_policy)p));
    fputc('\n', f);
}

/* Comma-separated list: each element to fn. */
static void parse_list(const char *s, const char *what,
                       void (*fn)(const char *elem, const char *what))
{
    char *dup = strdup(s);
    if (!dup)
        bench_die("out of memory");
    char *save = NULL;
    for (char *e = strtok_r(dup, ",", &save); e; e = strtok_r(NULL, ",", &save))
        fn(e, what);
    free(dup);
}

static void add_fraction(const char *e, const char *what)
{
    char *end;
    double v = strtod(e, &end);
    if (*end || !(v > 0) || v > 100)
        bench_die("%s: '%s' must be a number in (0, 100]", what, e);
    if (O.n_fractions == MAX_CAPS)
        bench_die("%s: more than %d values", what, MAX_CAPS);
    O.fractions[O.n_fractions++] = v;
}

static void add_capacity(const char *e, const char *what)
{
    uint64_t v = bench_arg_u64(e, what, 0, UINT64_MAX);
    if (v < 2)
        bench_die("%s: %s pages: the pool needs at least 2", what, e);
    if (O.n_capacities == MAX_CAPS)
        bench_die("%s: more than %d values", what, MAX_CAPS);
    O.capacities[O.n_capacities++] = v;
}

static void add_t2(const char *e, const char *what, bool mult)
{
    if (O.n_t2 == MAX_T2)
        bench_die("%s: more than %d tier-2 sizes in all", what, MAX_T2);
    double v;
    if (mult) {
        char *end;
        v = strtod(e, &end);
        if (*end || !(v >= 0) || v > 1e6)
            bench_die("%s: '%s' must be a number in [0, 1e6]", what, e);
    } else {
        v = (double)bench_arg_u64(e, what, 0, (uint64_t)1 << 40);
    }
    O.t2[O.n_t2].mult = mult;
    O.t2[O.n_t2++].v = v;
}

static void add_t2_mult(const char *e, const char *what) { add_t2(e, what, true); }
static void add_t2_pages(const char *e, const char *what) { add_t2(e, what, false); }

static void add_policy(const char *e, const char *what)
{
    pc_radix_policy p;
    if (pc_radix_policy_parse(e, &p))
        bench_die("%s: unknown policy '%s'", what, e);
    O.want[p] = true;
}

static void parse_args(int argc, char **argv)
{
    enum {
        OPT_FORMAT = 256, OPT_PT, OPT_FRAC, OPT_CAP, OPT_POL, OPT_NOBEL,
        OPT_PRIO, OPT_JOBS, OPT_CHECK, OPT_LIMIT, OPT_SKIP, OPT_JSON, OPT_MD,
        OPT_PLOT, OPT_QUIET, OPT_EP, OPT_SPAWN, OPT_DAEMON, OPT_POLICY,
        OPT_FLUSH, OPT_TIMEOUT, OPT_T2X, OPT_T2P, OPT_T2PATH, OPT_HELP
    };
    static const struct option lo[] = {
        {"format", 1, 0, OPT_FORMAT},     {"page-tokens", 1, 0, OPT_PT},
        {"fractions", 1, 0, OPT_FRAC},    {"capacity", 1, 0, OPT_CAP},
        {"policies", 1, 0, OPT_POL},      {"no-belady", 0, 0, OPT_NOBEL},
        {"priority", 1, 0, OPT_PRIO},     {"jobs", 1, 0, OPT_JOBS},
        {"check", 0, 0, OPT_CHECK},       {"limit", 1, 0, OPT_LIMIT},
        {"skip-bad", 0, 0, OPT_SKIP},     {"json", 1, 0, OPT_JSON},
        {"md", 1, 0, OPT_MD},             {"plot-dir", 1, 0, OPT_PLOT},
        {"quiet", 0, 0, OPT_QUIET},       {"endpoint", 1, 0, OPT_EP},
        {"spawn-daemon", 0, 0, OPT_SPAWN}, {"daemon", 1, 0, OPT_DAEMON},
        {"policy", 1, 0, OPT_POLICY},     {"flush", 0, 0, OPT_FLUSH},
        {"timeout-ms", 1, 0, OPT_TIMEOUT}, {"help", 0, 0, OPT_HELP},
        {"tier2-x", 1, 0, OPT_T2X},       {"tier2-pages", 1, 0, OPT_T2P},
        {"tier2-path", 1, 0, OPT_T2PATH},
        {0, 0, 0, 0}};
    O.belady = true;
    O.load.page_tokens = 512;
    O.daemon_path = PC_DAEMON_PATH;
    O.timeout_ms = 10000;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    O.jobs = ncpu > 0 ? (int)(ncpu > 64 ? 64 : ncpu) : 1;
    bool any_pol = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case OPT_FORMAT:
            if (!strcmp(optarg, "auto"))
                O.load.format = TR_FMT_AUTO;
            else if (!strcmp(optarg, "mooncake"))
                O.load.format = TR_FMT_MOONCAKE;
            else if (!strcmp(optarg, "simple"))
                O.load.format = TR_FMT_SIMPLE;
            else
                bench_die("--format: auto, mooncake or simple");
            break;
        case OPT_PT:
            O.load.page_tokens = (uint32_t)bench_arg_u64(
                optarg, "--page-tokens", PC_RADIX_PAGE_TOKENS_MIN,
                PC_RADIX_PAGE_TOKENS_MAX);
            break;
        case OPT_FRAC: parse_list(optarg, "--fractions", add_fraction); break;
        case OPT_CAP: parse_list(optarg, "--capacity", add_capacity); break;
        case OPT_POL:
            any_pol = true;
            parse_list(optarg, "--policies", add_policy);
            break;
        case OPT_NOBEL: O.belady = false; break;
        case OPT_PRIO: {
            const char *eq = strrchr(optarg, '=');
            if (!eq || eq == optarg || O.n_prio == MAX_PRIO)
                bench_die("--priority NS=P");
            char *end;
            errno = 0;
            long v = strtol(eq + 1, &end, 10);
            if (errno || *end || !eq[1] || v < INT32_MIN || v > INT32_MAX)
                bench_die("--priority %s: P must be a 32-bit integer", optarg);
            char *ns = strndup(optarg, (size_t)(eq - optarg));
            if (!ns)
                bench_die("out of memory");
            O.prio[O.n_prio].ns = ns;
            O.prio[O.n_prio++].priority = (int32_t)v;
            break;
        }
        case OPT_JOBS:
            O.jobs = (int)bench_arg_u64(optarg, "--jobs", 1, 64);
            break;
        case OPT_CHECK: O.check = true; break;
        case OPT_LIMIT:
            O.load.limit = bench_arg_u64(optarg, "--limit", 0, UINT64_MAX);
            break;
        case OPT_SKIP: O.load.skip_bad = true; break;
        case OPT_JSON: O.json_path = optarg; break;
        case OPT_MD: O.md_path = optarg; break;
        case OPT_PLOT: O.plot_dir = optarg; break;
        case OPT_QUIET: bench_cli.quiet = true; break;
        case OPT_EP: O.endpoint = optarg; break;
        case OPT_SPAWN: O.spawn = true; break;
        case OPT_DAEMON: O.daemon_path = optarg; break;
        case OPT_POLICY:
            if (pc_radix_policy_parse(optarg, &O.policy))
                bench_die("--policy: unknown policy '%s'", optarg);
            break;
        case OPT_FLUSH: O.flush = true; break;
        case OPT_TIMEOUT:
            O.timeout_ms =
                (int)bench_arg_u64(optarg, "--timeout-ms", 1, 3600000);
            break;
        case OPT_T2X: parse_list(optarg, "--tier2-x", add_t2_mult); break;
        case OPT_T2P: parse_list(optarg, "--tier2-pages", add_t2_pages); break;
        case OPT_T2PATH: O.t2_path = optarg; break;
        case 'h':
        case OPT_HELP: bench_help();
        default: bench_die("bad option");
        }
    }
    if (!any_pol && O.n_t2)
        O.want[PC_POLICY_LRU] = true; /* two tiers: one policy unless asked */
    else if (!any_pol)
        for (int p = 0; p < N_POL; p++)
            O.want[p] = true;
    if (O.n_t2 && (O.endpoint || O.spawn))
        bench_die("two tiers (--tier2-*) run in-process only");
    if (O.n_fractions && O.n_capacities)
        bench_die("--fractions and --capacity exclude each other");
    O.caps_given = O.n_fractions || O.n_capacities;
    if (!O.n_fractions && !O.n_capacities) {
        static const double def[] = {1, 2, 5, 10, 20, 50, 100};
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++)
            O.fractions[O.n_fractions++] = def[i];
    }
    if (O.endpoint && O.spawn)
        bench_die("--endpoint and --spawn-daemon exclude each other");
    if (optind >= argc)
        bench_die("no trace given");
    if (argc - optind > MAX_TRACES)
        bench_die("at most %d traces", MAX_TRACES);
}

/* ---- the sweep ---------------------------------------------------------------- */

/* What a job runs: the sweep's one-tier replay (or Belady), a two-tier
 * replay with t2 pages of tier 2, or a one-tier replay of cap + t2 pages
 * (the two-tier table's references). */
enum { M_SWEEP = 0, M_TWO_TIER, M_FLAT };

typedef struct job {
    size_t trace, cap; /* indices */
    int alg;           /* a pc_radix_policy, or A_BELADY */
    int mode;          /* M_* */
    uint64_t t2;       /* pages */
} job;

typedef struct job_out {
    atomic_int state; /* 0 pending, 1 running, 2 done */
    int rc;
    tr_result r;
} job_out;

typedef struct shared {
    atomic_size_t next;
    job_out out[];
} shared;

typedef struct trace_run {
    const char *path;
    tr_trace *t;
    uint64_t caps[MAX_CAPS];
    double pct[MAX_CAPS];
    size_t n_caps;
    tr_result ideal;
} trace_run;

static trace_run T[MAX_TRACES];
static size_t n_traces;
static int pol_rc[N_POL]; /* what pc_cache_create said for each policy */

static const char *alg_name(int a)
{
    return a == A_BELADY ? "belady" : pc_radix_policy_name((pc_radix_policy)a);
}

static int run_job(const job *j, tr_result *r)
{
    const tr_trace *t = T[j->trace].t;
    uint64_t cap = T[j->trace].caps[j->cap];
    if (j->alg == A_BELADY)
        return tr_replay_belady(t, cap, O.check, NULL, r);
    tr_replay_opts ro = {.policy = (pc_radix_policy)j->alg, .capacity = cap,
                         .check_every = O.check, .prio = O.prio,
                         .n_prio = O.n_prio};
    if (j->mode == M_TWO_TIER) {
        ro.two_tier = true;
        ro.tier2_pages = j->t2;
        ro.tier2_path = O.t2_path;
    } else if (j->mode == M_FLAT) {
        ro.capacity = cap + j->t2;
    }
    return tr_replay_cache(t, &ro, r);
}

static void worker(const job *jobs, size_t n_jobs, shared *sh)
{
    for (;;) {
        size_t i = atomic_fetch_add(&sh->next, 1);
        if (i >= n_jobs)
            return;
        atomic_store(&sh->out[i].state, 1);
        sh->out[i].rc = run_job(&jobs[i], &sh->out[i].r);
        atomic_store(&sh->out[i].state, 2);
    }
}

static void report_job(const job *j, const job_out *o, size_t done, size_t n)
{
    trace_run *tr = &T[j->trace];
    char what[64] = "";
    if (j->mode == M_TWO_TIER)
        snprintf(what, sizeof what, " + %" PRIu64 " pages of tier 2", j->t2);
    else if (j->mode == M_FLAT)
        snprintf(what, sizeof what, " + %" PRIu64 " pages (one tier)", j->t2);
    if (o->rc)
        fprintf(stderr, "trace_replay: %s, %s, %" PRIu64 " pages%s: %s\n",
                tr->t->name, alg_name(j->alg), tr->caps[j->cap], what,
                pc_strerror(o->rc));
    else if (j->mode == M_TWO_TIER)
        bench_say("%zu/%zu  %-20s %-8s C %" PRIu64 " + T %" PRIu64 " pages: tier 1 "
                  "%6.2f%%, tier 2 %6.2f%%, both %6.2f%%  (%.2f s)",
                  done, n, tr->t->name, alg_name(j->alg), tr->caps[j->cap], j->t2,
                  100.0 * (double)o->r.tier1_hit_pages / (double)(o->r.total_pages ? o->r.total_pages : 1),
                  100.0 * (double)o->r.tier2_hit_pages / (double)(o->r.total_pages ? o->r.total_pages : 1),
                  100 * tr_hit_rate(&o->r), o->r.seconds);
    else if (j->mode == M_FLAT)
        bench_say("%zu/%zu  %-20s %-8s one tier of %" PRIu64 " pages: hit rate "
                  "%6.2f%%  (%.2f s)", done, n, tr->t->name, alg_name(j->alg),
                  tr->caps[j->cap] + j->t2, 100 * tr_hit_rate(&o->r), o->r.seconds);
    else
        bench_say("%zu/%zu  %-20s %-8s %5.3g%% (%" PRIu64 " pages): hit rate "
                  "%6.2f%%  (%.2f s)%s",
                  done, n, tr->t->name, alg_name(j->alg), tr->pct[j->cap],
                  tr->caps[j->cap], 100 * tr_hit_rate(&o->r), o->r.seconds,
                  o->r.truncated ? "  [requests larger than the pool: prefix inserted]"
                                 : "");
}

/* Runs every job; returns the shared results (never unmapped: exit frees). */
static shared *run_jobs(const job *jobs, size_t n_jobs)
{
    size_t sz = sizeof(shared) + n_jobs * sizeof(job_out);
    shared *sh = mmap(NULL, sz, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("trace_replay: mmap");
        exit(1);
    }
    memset(sh, 0, sz);
    atomic_init(&sh->next, 0);
    int W = O.jobs < (int)n_jobs ? O.jobs : (int)n_jobs;
    if (W <= 1) {
        for (size_t i = 0; i < n_jobs; i++) {
            sh->out[i].rc = run_job(&jobs[i], &sh->out[i].r);
            atomic_store(&sh->out[i].state, 2);
            report_job(&jobs[i], &sh->out[i], i + 1, n_jobs);
        }
        return sh;
    }
    pid_t pids[64];
    fflush(NULL);
    pid_t parent = getpid();
    for (int w = 0; w < W; w++) {
        pid_t p = fork();
        if (p < 0) {
            perror("trace_replay: fork");
            exit(1);
        }
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
            worker(jobs, n_jobs, sh);
            _exit(0);
        }
        pids[w] = p;
    }
    /* Supervise: report each job as it finishes, reap the workers. */
    bool *reported = calloc(n_jobs, sizeof(*reported));
    size_t done = 0;
    int alive = W;
    bool failed = false;
    while (alive > 0 || done < n_jobs) {
        for (size_t i = 0; i < n_jobs && reported; i++)
            if (!reported[i] && atomic_load(&sh->out[i].state) == 2) {
                reported[i] = true;
                report_job(&jobs[i], &sh->out[i], ++done, n_jobs);
            }
        for (int w = 0; w < W; w++) {
            int st;
            if (pids[w] > 0 && waitpid(pids[w], &st, WNOHANG) == pids[w]) {
                pids[w] = 0;
                alive--;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    fprintf(stderr, "trace_replay: worker %d died (status %d)\n",
                            w, st);
                    failed = true;
                }
            }
        }
        if (alive == 0) {
            /* whatever a dead worker left running never finishes */
            for (size_t i = 0; i < n_jobs; i++)
                if (atomic_load(&sh->out[i].state) != 2) {
                    sh->out[i].rc = PC_E_CORRUPT;
                    atomic_store(&sh->out[i].state, 2);
                }
            if (done == n_jobs || !reported)
                break;
            continue;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    free(reported);
    if (failed)
        fprintf(stderr, "trace_replay: a worker failed; its runs count as errors\n");
    return sh;
}

/* ---- results -------------------------------------------------------------------- */

/* Hit rate of trace ti, capacity ci, algorithm a (NAN when not run/failed). */
static double HR(const shared *sh, const job *jobs, size_t n_jobs, size_t ti,
                 size_t ci, int a)
{
    for (size_t i = 0; i < n_jobs; i++)
        if (jobs[i].trace == ti && jobs[i].cap == ci && jobs[i].alg == a)
            return sh->out[i].rc ? NAN : tr_hit_rate(&sh->out[i].r);
    return NAN;
}

static bool pol_shown(int p) { return O.want[p]; }

static void fmt_pct(double v, char *b, size_t n)
{
    if (isnan(v))
        snprintf(b, n, "-");
    else
        snprintf(b, n, "%.2f", 100 * v);
}

static void fmt_ratio(double v, char *b, size_t n)
{
    if (isnan(v) || isinf(v))
        snprintf(b, n, "-");
    else
        snprintf(b, n, "%.3f", v);
}

static const char *pol_status(int p)
{
    return pol_rc[p] == 0 ? "ok" : pol_rc[p] == PC_E_INVAL ? "unavailable" : "error";
}

/* The verdicts of one trace, as lines (also kept for JSON). */
/* A report file (--json, --md) opened for writing; NULL (said) on failure. */
static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "trace_replay: %s: %s\n", path, strerror(errno));
    return f;
}

/* The Markdown heading of one trace's table. */
static void md_trace_heading(FILE *f, const trace_run *tr, const char *rates)
{
    const tr_trace *t = tr->t;
    fprintf(f, "### %s\n\n%zu requests, %" PRIu64 " full pages of %u "
               "tokens, working set %u pages, ideal hit rate %.2f%%. "
               "%s (%%):\n\n",
            t->name, t->n_req, tr_total_pages(t), t->page_tokens,
            t->n_distinct, 100 * tr_hit_rate(&tr->ideal), rates);
}

typedef struct verdict {
    char text[640];
    int pass; /* 1, 0, -1 (info) */
} verdict;

typedef struct trace_verdicts {
    verdict v[N_POL + 5];
    size_t n;
    /* per policy: max gain at <= 10%, worst loss anywhere (NAN: none) */
    double gain[N_POL], gain_pct[N_POL], loss[N_POL], loss_pct[N_POL];
} trace_verdicts;

static trace_verdicts V[MAX_TRACES];

static void compute_verdicts(const shared *sh, const job *jobs, size_t n_jobs,
                             size_t ti)
{
    trace_run *tr = &T[ti];
    trace_verdicts *tv = &V[ti];
    memset(tv, 0, sizeof(*tv));
    /* 1. LRU vs Belady at 1-3% of the working set */
    double worst_ratio = NAN, at = NAN;
    char list[400] = "";
    size_t ll = 0;
    for (size_t c = 0; c < tr->n_caps; c++) {
        if (tr->pct[c] < 1 - 1e-9 || tr->pct[c] > 3 + 1e-9)
            continue;
        double l = HR(sh, jobs, n_jobs, ti, c, PC_POLICY_LRU);
        double b = HR(sh, jobs, n_jobs, ti, c, A_BELADY);
        if (isnan(l) || isnan(b) || b <= 0)
            continue;
        double r = l / b;
        ll += (size_t)snprintf(list + ll, ll < sizeof list ? sizeof list - ll : 0,
                               "%s%.3g%%: LRU %.2f%% vs Belady %.2f%% (x%.2f)",
                               ll ? "; " : "", tr->pct[c], 100 * l, 100 * b, r);
        if (isnan(worst_ratio) || r > worst_ratio) {
            worst_ratio = r;
            at = tr->pct[c];
        }
    }
    verdict *v = &tv->v[tv->n++];
    if (isnan(worst_ratio)) {
        snprintf(v->text, sizeof v->text,
                 "LRU vs Belady at 1-3%%: no such capacity with both results");
        v->pass = -1;
    } else {
        v->pass = worst_ratio < 0.5;
        snprintf(v->text, sizeof v->text,
                 "LRU vs Belady at 1-3%%: %s; LRU hits at most x%.2f of Belady "
                 "(at %.3g%%); target < x0.5: %s",
                 list, worst_ratio, at, v->pass ? "PASS" : "FAIL");
    }
    /* 2. per policy: gain at <= 10%, worst loss anywhere */
    int best = -1;
    for (int p = 0; p < N_POL; p++) {
        tv->gain[p] = tv->loss[p] = tv->gain_pct[p] = tv->loss_pct[p] = NAN;
        if (p == PC_POLICY_LRU || !pol_shown(p) || pol_rc[p])
            continue;
        for (size_t c = 0; c < tr->n_caps; c++) {
            double l = HR(sh, jobs, n_jobs, ti, c, PC_POLICY_LRU);
            double h = HR(sh, jobs, n_jobs, ti, c, p);
            if (isnan(l) || isnan(h) || l <= 0)
                continue;
            double rel = h / l - 1;
            if (tr->pct[c] <= 10 + 1e-9 && (isnan(tv->gain[p]) || rel > tv->gain[p])) {
                tv->gain[p] = rel;
                tv->gain_pct[p] = tr->pct[c];
            }
            if (isnan(tv->loss[p]) || rel < tv->loss[p]) {
                tv->loss[p] = rel;
                tv->loss_pct[p] = tr->pct[c];
            }
        }
        if (isnan(tv->gain[p]))
            continue;
        v = &tv->v[tv->n++];
        v->pass = tv->gain[p] >= 0.10 && tv->loss[p] >= -0.02;
        snprintf(v->text, sizeof v->text,
                 "%s vs LRU: best gain %+.1f%% at %.3g%% (<= 10%%: target >= "
                 "+10%%), worst %+.1f%% at %.3g%% (anywhere: target >= -2%%): %s",
                 pc_radix_policy_name((pc_radix_policy)p), 100 * tv->gain[p],
                 tv->gain_pct[p], 100 * tv->loss[p], tv->loss_pct[p],
                 v->pass ? "PASS" : "FAIL");
        if (best < 0 || tv->gain[p] > tv->gain[best])
            best = p;
    }
    /* 3. how much cache: the smallest capacity of the sweep at which each
     * algorithm reaches 90% of the ideal's hits */
    {
        char buf[400];
        size_t bl = 0;
        for (int i = 0; i < N_ALG; i++) {
            int a = i == 0 ? A_BELADY : i - 1; /* Belady first */
            if (a == A_BELADY ? !O.belady : (!pol_shown(a) || pol_rc[a]))
                continue;
            size_t at_c = SIZE_MAX;
            for (size_t c = 0; c < tr->n_caps && at_c == SIZE_MAX; c++)
                if (HR(sh, jobs, n_jobs, ti, c, a) >= 0.9 * tr_hit_rate(&tr->ideal))
                    at_c = c;
            if (at_c == SIZE_MAX)
                bl += (size_t)snprintf(buf + bl, bl < sizeof buf ? sizeof buf - bl : 0,
                                       "%s%s never", bl ? ", " : "", alg_name(a));
            else
                bl += (size_t)snprintf(buf + bl, bl < sizeof buf ? sizeof buf - bl : 0,
                                       "%s%s %.3g%%", bl ? ", " : "", alg_name(a),
                                       tr->pct[at_c]);
        }
        v = &tv->v[tv->n++];
        v->pass = -1;
        snprintf(v->text, sizeof v->text,
                 "smallest capacity of the sweep reaching 90%% of the ideal hit "
                 "rate: %s", buf);
    }
    v = &tv->v[tv->n++];
    if (best < 0) {
        snprintf(v->text, sizeof v->text,
                 "best policy vs LRU at <= 10%%: no other policy ran");
        v->pass = -1;
    } else {
        v->pass = tv->gain[best] >= 0.10;
        snprintf(v->text, sizeof v->text,
                 "best policy's max gain over LRU at <= 10%%: %s %+.1f%% at "
                 "%.3g%%; target >= +10%%: %s",
                 pc_radix_policy_name((pc_radix_policy)best), 100 * tv->gain[best],
                 tv->gain_pct[best], v->pass ? "PASS" : "FAIL");
    }
}

static void print_table(FILE *f, const shared *sh, const job *jobs,
                        size_t n_jobs, size_t ti, bool md)
{
    trace_run *tr = &T[ti];
    const tr_trace *t = tr->t;
    char b[32];
    if (md) {
        fprintf(f, "| cap %% | pages | Mtokens | ideal | belady");
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p))
                fprintf(f, " | %s", pc_radix_policy_name((pc_radix_policy)p));
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p) && p != PC_POLICY_LRU)
                fprintf(f, " | %s/lru", pc_radix_policy_name((pc_radix_policy)p));
        fprintf(f, " |\n|---:|---:|---:|---:|---:");
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p))
                fprintf(f, "|---:");
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p) && p != PC_POLICY_LRU)
                fprintf(f, "|---:");
        fprintf(f, "|\n");
    } else {
        fprintf(f, "\n%s: %zu requests, %" PRIu64 " full pages of %u tokens, "
                   "working set %u pages; ideal (infinite cache) hit rate "
                   "%.2f%%\n",
                t->name, t->n_req, tr_total_pages(t), t->page_tokens,
                t->n_distinct, 100 * tr_hit_rate(&tr->ideal));
        fprintf(f, "page hit rate (%%) by capacity (%% of the working set, pages):\n");
        fprintf(f, "%7s %9s %8s %7s %7s", "cap%", "pages", "Mtokens", "ideal",
                "belady");
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p))
                fprintf(f, " %8s", pc_radix_policy_name((pc_radix_policy)p));
        fprintf(f, "  |");
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p) && p != PC_POLICY_LRU) {
                char h[24];
                snprintf(h, sizeof h, "%.4s/lru", pc_radix_policy_name((pc_radix_policy)p));
                fprintf(f, " %9s", h);
            }
        fputc('\n', f);
    }
    for (size_t c = 0; c < tr->n_caps; c++) {
        double lru = HR(sh, jobs, n_jobs, ti, c, PC_POLICY_LRU);
        char cap[24], ideal[16], bel[16];
        snprintf(cap, sizeof cap, "%.3g", tr->pct[c]);
        fmt_pct(tr_hit_rate(&tr->ideal), ideal, sizeof ideal);
        fmt_pct(O.belady ? HR(sh, jobs, n_jobs, ti, c, A_BELADY) : NAN, bel, sizeof bel);
        double mtok = (double)tr->caps[c] * t->page_tokens / 1e6;
        if (md)
            fprintf(f, "| %s | %" PRIu64 " | %.3g | %s | %s", cap, tr->caps[c], mtok,
                    ideal, bel);
        else
            fprintf(f, "%7s %9" PRIu64 " %8.3g %7s %7s", cap, tr->caps[c], mtok,
                    ideal, bel);
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p)) {
                fmt_pct(HR(sh, jobs, n_jobs, ti, c, p), b, sizeof b);
                fprintf(f, md ? " | %s" : " %8s", b);
            }
        if (!md)
            fprintf(f, "  |");
        for (int p = 0; p < N_POL; p++)
            if (pol_shown(p) && p != PC_POLICY_LRU) {
                fmt_ratio(HR(sh, jobs, n_jobs, ti, c, p) / lru, b, sizeof b);
                fprintf(f, md ? " | %s" : " %9s", b);
            }
        fprintf(f, md ? " |\n" : "\n");
    }
    for (int p = 0; p < N_POL; p++)
        if (pol_shown(p) && pol_rc[p])
            fprintf(f, "%s%s: %s (%s)\n", md ? "\n" : "",
                    pc_radix_policy_name((pc_radix_policy)p),
                    pol_rc[p] == PC_E_INVAL ? "policy unavailable (the cache refuses it)"
                                            : "error creating the cache",
                    pc_strerror(pol_rc[p]));
}

static void write_json(FILE *f, const shared *sh, const job *jobs, size_t n_jobs,
                       const char *overall, int overall_pass)
{
    fprintf(f, "{\n  \"bench\": \"trace_replay\",\n  \"page_tokens\": %u,\n",
            O.load.page_tokens);
    fprintf(f, "  \"policies\": {");
    bool first = true;
    for (int p = 0; p < N_POL; p++)
        if (pol_shown(p)) {
            fprintf(f, "%s\"%s\": \"%s\"", first ? "" : ", ",
                    pc_radix_policy_name((pc_radix_policy)p), pol_status(p));
            first = false;
        }
    fprintf(f, "},\n  \"traces\": [\n");
    for (size_t ti = 0; ti < n_traces; ti++) {
        trace_run *tr = &T[ti];
        const tr_trace *t = tr->t;
        fprintf(f, "    {\"name\": ");
        rpt_json_str(f, t->name);
        fprintf(f, ", \"path\": ");
        rpt_json_str(f, tr->path);
        fprintf(f, ", \"requests\": %zu, \"full_pages\": %" PRIu64
                   ", \"working_set\": %u, \"max_request_pages\": %u"
                   ", \"skipped_lines\": %zu, \"ideal\": ",
                t->n_req, tr_total_pages(t), t->n_distinct, t->max_req_pages,
                t->skipped);
        rpt_json_num(f, tr_hit_rate(&tr->ideal));
        fprintf(f, ",\n     \"rows\": [\n");
        for (size_t c = 0; c < tr->n_caps; c++) {
            fprintf(f, "       {\"capacity_pct\": ");
            rpt_json_num(f, tr->pct[c]);
            fprintf(f, ", \"capacity_pages\": %" PRIu64, tr->caps[c]);
            for (int a = 0; a < N_ALG; a++) {
                if (a == A_BELADY ? !O.belady : !pol_shown(a))
                    continue;
                fprintf(f, ", \"%s\": ", alg_name(a));
                rpt_json_num(f, HR(sh, jobs, n_jobs, ti, c, a));
            }
            fprintf(f, ", \"seconds\": {");
            first = true;
            for (size_t i = 0; i < n_jobs; i++)
                if (jobs[i].trace == ti && jobs[i].cap == c) {
                    fprintf(f, "%s\"%s\": ", first ? "" : ", ", alg_name(jobs[i].alg));
                    rpt_json_num(f, sh->out[i].r.seconds);
                    first = false;
                }
            fprintf(f, "}, \"truncated_requests\": {");
            first = true;
            for (size_t i = 0; i < n_jobs; i++)
                if (jobs[i].trace == ti && jobs[i].cap == c) {
                    fprintf(f, "%s\"%s\": %" PRIu64, first ? "" : ", ",
                            alg_name(jobs[i].alg), sh->out[i].r.truncated);
                    first = false;
                }
            fprintf(f, "}}%s\n", c + 1 < tr->n_caps ? "," : "");
        }
        fprintf(f, "     ],\n     \"verdicts\": [\n");
        for (size_t k = 0; k < V[ti].n; k++) {
            fprintf(f, "       {\"text\": ");
            rpt_json_str(f, V[ti].v[k].text);
            fprintf(f, ", \"pass\": %s}%s\n",
                    V[ti].v[k].pass < 0 ? "null" : V[ti].v[k].pass ? "true" : "false",
                    k + 1 < V[ti].n ? "," : "");
        }
        fprintf(f, "     ]}%s\n", ti + 1 < n_traces ? "," : "");
    }
    fprintf(f, "  ],\n  \"overall\": {\"text\": ");
    rpt_json_str(f, overall);
    fprintf(f, ", \"pass\": %s}\n}\n",
            overall_pass < 0 ? "null" : overall_pass ? "true" : "false");
}

static bool have_gnuplot(void)
{
    return system("gnuplot --version >/dev/null 2>&1") == 0;
}

/* 0, or 1 when gnuplot ran and failed. */
static int plot(const shared *sh, const job *jobs, size_t n_jobs, size_t ti)
{
    trace_run *tr = &T[ti];
    const tr_trace *t = tr->t;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.png", O.plot_dir, t->name);
    if (strchr(path, '\'') || strchr(path, '\n')) {
        fprintf(stderr, "trace_replay: no plot for a path with a quote\n");
        return 1;
    }
    FILE *g = popen("gnuplot", "w");
    if (!g) {
        fprintf(stderr, "trace_replay: cannot run gnuplot: %s\n", strerror(errno));
        return 1;
    }
    char title[256];
    snprintf(title, sizeof title, "%s", t->name);
    for (char *s = title; *s; s++)
        if (*s == '\'' || (unsigned char)*s < 0x20)
            *s = ' ';
    fprintf(g, "set terminal pngcairo size 1000,640 font 'sans,11'\n"
               "set output '%s'\n"
               "set title '%s: page hit rate vs cache capacity (%zu requests, "
               "working set %u pages of %u tokens)' noenhanced\n"
               "set xlabel 'capacity (%% of the working set, log scale)'\n"
               "set ylabel 'page hit rate (%%)'\n"
               "set logscale x\nset grid\nset key right bottom box opaque\n"
               "set yrange [0:*]\n",
            path, title, t->n_req, t->n_distinct, t->page_tokens);
    fprintf(g, "$d << EOD\n");
    for (size_t c = 0; c < tr->n_caps; c++) {
        fprintf(g, "%.6g %.6g %.6g", tr->pct[c], 100 * tr_hit_rate(&tr->ideal),
                O.belady ? 100 * HR(sh, jobs, n_jobs, ti, c, A_BELADY) : NAN);
        for (int p = 0; p < N_POL; p++)
            fprintf(g, " %.6g", 100 * HR(sh, jobs, n_jobs, ti, c, p));
        fputc('\n', g);
    }
    fprintf(g, "EOD\nplot $d using 1:2 with lines dt 2 lw 2 lc rgb 'black' "
               "title 'ideal (infinite cache)'");
    if (O.belady)
        fprintf(g, ", $d using 1:3 with linespoints dt 3 lw 2 pt 6 lc rgb "
                   "'gray30' title 'Belady (offline optimum)'");
    static const char *const colors[] = {"#d62728", "#1f77b4", "#2ca02c",
                                         "#9467bd", "#ff7f0e", "#17becf",
                                         "#8c564b", "#e377c2"};
    const size_t nc = sizeof colors / sizeof colors[0];
    for (int p = 0; p < N_POL; p++)
        if (pol_shown(p) && !pol_rc[p])
            fprintf(g, ", $d using 1:%d with linespoints lw 2 pt %d lc rgb '%s' "
                       "title '%s'",
                    4 + p, 4 + p % 10, colors[(size_t)p % nc],
                    pc_radix_policy_name((pc_radix_policy)p));
    fprintf(g, "\n");
    int st = pclose(g);
    struct stat sb;
    if (st != 0 || stat(path, &sb) || sb.st_size == 0) {
        fprintf(stderr, "trace_replay: gnuplot failed (status %d) for %s\n", st,
                path);
        return 1;
    }
    bench_say("plot: %s", path);
    return 0;
}

static void load_traces(int argc, char **argv)
{
    for (int i = optind; i < argc; i++) {
        trace_run *tr = &T[n_traces];
        tr->path = argv[i];
        uint64_t t0 = bench_now_ns();
        int rc = tr_trace_load(argv[i], &O.load, &tr->t);
        if (rc) {
            fprintf(stderr, "trace_replay: cannot load %s: %s\n", argv[i],
                    pc_strerror(rc));
            exit(2);
        }
        const tr_trace *t = tr->t;
        if (t->skipped)
            fprintf(stderr, "trace_replay: %s: %zu malformed lines skipped\n",
                    argv[i], t->skipped);
        tr_ideal(t, &tr->ideal);
        bench_say("%s: %zu requests, %" PRIu64 " full pages, working set %u pages, "
                  "largest request %u pages, ideal %.2f%% (loaded in %.2f s)",
                  t->name, t->n_req, tr_total_pages(t), t->n_distinct, t->max_req_pages,
                  100 * tr_hit_rate(&tr->ideal), (double)(bench_now_ns() - t0) / 1e9);
        if (O.n_capacities) {
            for (size_t c = 0; c < O.n_capacities; c++) {
                tr->caps[c] = O.capacities[c];
                tr->pct[c] = t->n_distinct ? 100.0 * (double)O.capacities[c] / t->n_distinct
                                           : 100.0;
            }
            tr->n_caps = O.n_capacities;
        } else {
            for (size_t c = 0; c < O.n_fractions; c++) {
                double v = O.fractions[c] * t->n_distinct / 100.0;
                uint64_t cap = (uint64_t)llround(v);
                tr->caps[c] = cap < 2 ? 2 : cap;
                tr->pct[c] = O.fractions[c];
            }
            tr->n_caps = O.n_fractions;
        }
        n_traces++;
    }
}

static void probe_policies(void)
{
    for (int p = 0; p < N_POL; p++) {
        pc_cache_config cfg;
        pc_cache_config_defaults(&cfg);
        pc_pool_layout_init(&cfg.pool.layout, 1, 1, 1, O.load.page_tokens,
                            PC_DTYPE_FP16);
        cfg.pool.backend = PC_POOL_NONE;
        cfg.pool.capacity_blocks = 16;
        cfg.eviction_policy = (pc_radix_policy)p;
        pc_cache *c = NULL;
        pol_rc[p] = pc_cache_create(&cfg, &c);
        pc_cache_destroy(c);
        if (pol_rc[p] && O.want[p])
            fprintf(stderr, "trace_replay: policy %s unavailable: the cache says "
                            "%s (not implemented yet?); its column stays empty\n",
                    pc_radix_policy_name((pc_radix_policy)p), pc_strerror(pol_rc[p]));
    }
}

static int sweep(void)
{
    probe_policies();
    size_t cap_jobs = 0;
    for (size_t ti = 0; ti < n_traces; ti++)
        cap_jobs += T[ti].n_caps * N_ALG;
    job *jobs = calloc(cap_jobs + 1, sizeof(*jobs));
    if (!jobs)
        return 1;
    size_t n_jobs = 0;
    /* Largest capacities and Belady first: the slow ones start early. */
    for (size_t ti = 0; ti < n_traces; ti++)
        for (size_t c = 0; c < T[ti].n_caps; c++)
            for (int a = N_ALG - 1; a >= 0; a--) {
                if (a == A_BELADY ? !O.belady : (!pol_shown(a) || pol_rc[a]))
                    continue;
                jobs[n_jobs++] = (job){.trace = ti, .cap = c, .alg = a};
            }
    bench_say("%zu runs on %d worker%s", n_jobs, O.jobs, O.jobs == 1 ? "" : "s");
    uint64_t t0 = bench_now_ns();
    shared *sh = run_jobs(jobs, n_jobs);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    int status = 0;
    for (size_t i = 0; i < n_jobs; i++)
        if (sh->out[i].rc)
            status = 1;
    /* Self-checks that need no reference: at a capacity holding the working
     * set nobody evicts, so everyone equals the ideal; Belady is the bound. */
    for (size_t i = 0; i < n_jobs; i++) {
        const job *j = &jobs[i];
        trace_run *tr = &T[j->trace];
        if (sh->out[i].rc)
            continue;
        double h = tr_hit_rate(&sh->out[i].r);
        if (tr->caps[j->cap] >= tr->t->n_distinct &&
            sh->out[i].r.hit_pages != tr->ideal.hit_pages) {
            fprintf(stderr, "trace_replay: CHECK FAILED: %s %s at %" PRIu64
                            " pages (>= working set) hits %" PRIu64 " pages, the "
                            "ideal %" PRIu64 "\n",
                    tr->t->name, alg_name(j->alg), tr->caps[j->cap],
                    sh->out[i].r.hit_pages, tr->ideal.hit_pages);
            status = 1;
        }
        double bel = O.belady ? HR(sh, jobs, n_jobs, j->trace, j->cap, A_BELADY) : NAN;
        if (j->alg != A_BELADY && !isnan(bel) && h > bel + 1e-12)
            fprintf(stderr, "trace_replay: note: %s %s at %" PRIu64 " pages beats "
                            "Belady (%.4f%% > %.4f%%): Belady is a heuristic bound "
                            "here, not a proven optimum\n",
                    tr->t->name, alg_name(j->alg), tr->caps[j->cap], 100 * h,
                    100 * bel);
    }
    for (size_t ti = 0; ti < n_traces; ti++) {
        compute_verdicts(sh, jobs, n_jobs, ti);
        print_table(stdout, sh, jobs, n_jobs, ti, false);
        printf("verdicts:\n");
        for (size_t k = 0; k < V[ti].n; k++)
            printf("  %s\n", V[ti].v[k].text);
    }
    /* The combined target: one policy meeting gain and loss on every trace. */
    char overall[256] = "";
    int overall_pass = -1;
    size_t ol = 0;
    for (int p = 0; p < N_POL; p++) {
        if (p == PC_POLICY_LRU || !pol_shown(p) || pol_rc[p])
            continue;
        bool ok = true;
        for (size_t ti = 0; ti < n_traces; ti++)
            ok = ok && V[ti].gain[p] >= 0.10 && V[ti].loss[p] >= -0.02;
        overall_pass = overall_pass == 1 ? 1 : ok;
        if (ok)
            ol += (size_t)snprintf(overall + ol, ol < sizeof overall ? sizeof overall - ol : 0,
                                   "%s%s", ol ? ", " : "",
                                   pc_radix_policy_name((pc_radix_policy)p));
    }
    char line[512];
    if (overall_pass < 0)
        snprintf(line, sizeof line, "overall: no policy other than LRU ran");
    else if (overall_pass)
        snprintf(line, sizeof line,
                 "overall (>= +10%% over LRU at some capacity <= 10%% and never "
                 "below -2%%, on all %zu traces): met by %s: PASS",
                 n_traces, overall);
    else
        snprintf(line, sizeof line,
                 "overall (>= +10%% over LRU at some capacity <= 10%% and never "
                 "below -2%%, on all %zu traces): no policy meets it: FAIL",
                 n_traces);
    printf("\n%s\nsweep: %zu runs in %.1f s wall on %d worker%s\n", line, n_jobs,
           secs, O.jobs, O.jobs == 1 ? "" : "s");
    if (O.json_path) {
        FILE *f = open_out(O.json_path);
        if (!f) {
            status = 1;
        } else {
            write_json(f, sh, jobs, n_jobs, line, overall_pass);
            if (fclose(f))
                status = 1;
        }
    }
    if (O.md_path) {
        FILE *f = open_out(O.md_path);
        if (!f) {
            status = 1;
        } else {
            for (size_t ti = 0; ti < n_traces; ti++) {
                md_trace_heading(f, &T[ti], "Page hit rate");
                print_table(f, sh, jobs, n_jobs, ti, true);
                fprintf(f, "\nVerdicts:\n\n");
                for (size_t k = 0; k < V[ti].n; k++)
                    fprintf(f, "- %s\n", V[ti].v[k].text);
                fprintf(f, "\n");
            }
            fprintf(f, "%s\n", line);
            if (fclose(f))
                status = 1;
        }
    }
    if (O.plot_dir) {
        if (!have_gnuplot()) {
            fprintf(stderr, "trace_replay: warning: gnuplot not found, no plots\n");
        } else if (mkdir(O.plot_dir, 0777) && errno != EEXIST) {
            fprintf(stderr, "trace_replay: %s: %s\n", O.plot_dir, strerror(errno));
            status = 1;
        } else {
            for (size_t ti = 0; ti < n_traces; ti++)
                if (plot(sh, jobs, n_jobs, ti))
                    status = 1;
        }
    }
    free(jobs);
    return status;
}

/* ---- two tiers -------------------------------------------------------------------- */

static bool find_job(const job *jobs, size_t n_jobs, size_t ti, size_t ci, int alg,
                     int mode, uint64_t t2)
{
    for (size_t i = 0; i < n_jobs; i++)
        if (jobs[i].trace == ti && jobs[i].cap == ci && jobs[i].alg == alg &&
            jobs[i].mode == mode && jobs[i].t2 == t2)
            return true;
    return false;
}

static double rate(uint64_t n, uint64_t d) { return d ? (double)n / (double)d : NAN; }

/* The result of a job, NULL when there is none or it failed. */
static const tr_result *find(const shared *sh, const job *jobs, size_t n_jobs,
                             size_t ti, size_t ci, int alg, int mode, uint64_t t2)
{
    for (size_t i = 0; i < n_jobs; i++)
        if (jobs[i].trace == ti && jobs[i].cap == ci && jobs[i].alg == alg &&
            jobs[i].mode == mode && jobs[i].t2 == t2)
            return sh->out[i].rc ? NULL : &sh->out[i].r;
    return NULL;
}

/* One row of the two-tier table: a two-tier job and its references. */
static void tier_row(FILE *f, const shared *sh, const job *jobs, size_t n_jobs,
                     size_t i, bool md)
{
    const job *j = &jobs[i];
    const trace_run *tr = &T[j->trace];
    uint64_t C = tr->caps[j->cap];
    const tr_result *r = sh->out[i].rc ? NULL : &sh->out[i].r;
    const tr_result *f1 = find(sh, jobs, n_jobs, j->trace, j->cap, j->alg, M_FLAT, 0);
    const tr_result *f2 = find(sh, jobs, n_jobs, j->trace, j->cap, j->alg, M_FLAT, j->t2);
    char t1[16], t2[16], both[16], miss[16], one[16], onect[16], x[16];
    fmt_pct(r ? rate(r->tier1_hit_pages, r->total_pages) : NAN, t1, sizeof t1);
    fmt_pct(r ? rate(r->tier2_hit_pages, r->total_pages) : NAN, t2, sizeof t2);
    fmt_pct(r ? tr_hit_rate(r) : NAN, both, sizeof both);
    fmt_pct(r ? rate(r->total_pages - r->hit_pages, r->total_pages) : NAN, miss,
            sizeof miss);
    fmt_pct(f1 ? tr_hit_rate(f1) : NAN, one, sizeof one);
    fmt_pct(f2 ? tr_hit_rate(f2) : NAN, onect, sizeof onect);
    snprintf(x, sizeof x, "%.3g", (double)j->t2 / (double)C);
    uint64_t z = 0;
    const uint64_t *dem = r ? &r->tier2_demoted_pages : &z,
                   *pro = r ? &r->tier2_promoted_pages : &z,
                   *jobsn = r ? &r->promote_jobs : &z,
                   *ev = r ? &r->tier2_evicted_pages : &z,
                   *unp = r ? &r->tier2_unpromoted : &z;
    if (md)
        fprintf(f, "| %s | %.3g | %" PRIu64 " | %" PRIu64 " | %s | %s | %s | %s | %s"
                   " | %s | %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
                   " | %" PRIu64 " |\n",
                alg_name(j->alg), tr->pct[j->cap], C, j->t2, x, t1, t2, both, miss,
                one, onect, *dem, *pro, *jobsn, *ev, *unp);
    else
        fprintf(f, "%-8s %6.3g %8" PRIu64 " %8" PRIu64 " %5s %7s %7s %7s %7s %7s %7s"
                   " %9" PRIu64 " %9" PRIu64 " %7" PRIu64 " %9" PRIu64 " %6" PRIu64 "\n",
                alg_name(j->alg), tr->pct[j->cap], C, j->t2, x, t1, t2, both, miss,
                one, onect, *dem, *pro, *jobsn, *ev, *unp);
}

static void tier_table(FILE *f, const shared *sh, const job *jobs, size_t n_jobs,
                       size_t ti, bool md)
{
    const tr_trace *t = T[ti].t;
    if (md) {
        fprintf(f, "| policy | C %% | C pages | T pages | T/C | tier 1 | tier 2 | "
                   "both | miss | one tier C | one tier C+T | demoted | promoted | "
                   "promotions | t2 evicted | not promoted |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
                   "|---:|---:|---:|\n");
    } else {
        fprintf(f, "\n%s: %zu requests, %" PRIu64 " full pages of %u tokens, "
                   "working set %u pages; ideal (infinite cache) hit rate %.2f%%\n"
                   "page hit rates (%%): pool of C pages + tier 2 of T pages; "
                   "one-tier pools of C and of C+T for reference\n",
                t->name, t->n_req, tr_total_pages(t), t->page_tokens, t->n_distinct,
                100 * tr_hit_rate(&T[ti].ideal));
        fprintf(f, "%-8s %6s %8s %8s %5s %7s %7s %7s %7s %7s %7s %9s %9s %7s %9s %6s\n",
                "policy", "C%", "C", "T", "T/C", "tier1", "tier2", "both", "miss",
                "1t:C", "1t:C+T", "demoted", "promoted", "promos", "t2evict",
                "unprom");
    }
    for (size_t i = 0; i < n_jobs; i++)
        if (jobs[i].mode == M_TWO_TIER && jobs[i].trace == ti)
            tier_row(f, sh, jobs, n_jobs, i, md);
}

static void tier_json(FILE *f, const shared *sh, const job *jobs, size_t n_jobs)
{
    fprintf(f, "{\n  \"bench\": \"trace_replay\",\n  \"mode\": \"two_tier\",\n"
               "  \"page_tokens\": %u,\n  \"traces\": [\n", O.load.page_tokens);
    for (size_t ti = 0; ti < n_traces; ti++) {
        const trace_run *tr = &T[ti];
        const tr_trace *t = tr->t;
        fprintf(f, "    {\"name\": ");
        rpt_json_str(f, t->name);
        fprintf(f, ", \"path\": ");
        rpt_json_str(f, tr->path);
        fprintf(f, ", \"requests\": %zu, \"full_pages\": %" PRIu64
                   ", \"working_set\": %u, \"ideal\": ",
                t->n_req, tr_total_pages(t), t->n_distinct);
        rpt_json_num(f, tr_hit_rate(&tr->ideal));
        fprintf(f, ",\n     \"rows\": [");
        bool first = true;
        for (size_t i = 0; i < n_jobs; i++) {
            const job *j = &jobs[i];
            if (j->mode != M_TWO_TIER || j->trace != ti)
                continue;
            const tr_result *r = sh->out[i].rc ? NULL : &sh->out[i].r;
            const tr_result *f1 = find(sh, jobs, n_jobs, ti, j->cap, j->alg, M_FLAT, 0);
            const tr_result *f2 = find(sh, jobs, n_jobs, ti, j->cap, j->alg, M_FLAT, j->t2);
            fprintf(f, "%s\n       {\"policy\": \"%s\", \"capacity_pct\": ",
                    first ? "" : ",", alg_name(j->alg));
            first = false;
            rpt_json_num(f, tr->pct[j->cap]);
            fprintf(f, ", \"capacity_pages\": %" PRIu64 ", \"tier2_pages\": %" PRIu64
                       ", \"ok\": %s", tr->caps[j->cap], j->t2, r ? "true" : "false");
            fprintf(f, ", \"tier1_hit_rate\": ");
            rpt_json_num(f, r ? rate(r->tier1_hit_pages, r->total_pages) : NAN);
            fprintf(f, ", \"tier2_hit_rate\": ");
            rpt_json_num(f, r ? rate(r->tier2_hit_pages, r->total_pages) : NAN);
            fprintf(f, ", \"hit_rate\": ");
            rpt_json_num(f, r ? tr_hit_rate(r) : NAN);
            fprintf(f, ", \"one_tier_c_hit_rate\": ");
            rpt_json_num(f, f1 ? tr_hit_rate(f1) : NAN);
            fprintf(f, ", \"one_tier_c_plus_t_hit_rate\": ");
            rpt_json_num(f, f2 ? tr_hit_rate(f2) : NAN);
            if (r) {
                fprintf(f, ",\n        \"total_pages\": %" PRIu64
                           ", \"tier1_hit_pages\": %" PRIu64
                           ", \"tier2_hit_pages\": %" PRIu64
                           ", \"miss_pages\": %" PRIu64
                           ", \"tier2_not_promoted_pages\": %" PRIu64
                           ", \"promote_jobs\": %" PRIu64
                           ", \"truncated_requests\": %" PRIu64
                           ", \"evicted_pages\": %" PRIu64
                           ",\n        \"tier2\": {\"capacity_pages\": %" PRIu64
                           ", \"demoted_pages\": %" PRIu64
                           ", \"promoted_pages\": %" PRIu64
                           ", \"promotions\": %" PRIu64
                           ", \"evicted_pages\": %" PRIu64 "}, \"seconds\": ",
                        r->total_pages, r->tier1_hit_pages, r->tier2_hit_pages,
                        r->total_pages - r->hit_pages, r->tier2_unpromoted,
                        r->promote_jobs, r->truncated, r->evicted_pages,
                        r->tier2_capacity_pages, r->tier2_demoted_pages,
                        r->tier2_promoted_pages, r->tier2_promotions,
                        r->tier2_evicted_pages);
                rpt_json_num(f, r->seconds);
            }
            fprintf(f, "}");
        }
        fprintf(f, "\n     ]}%s\n", ti + 1 < n_traces ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
}

static int tiers(void)
{
    probe_policies();
    size_t max_jobs = 0;
    for (size_t ti = 0; ti < n_traces; ti++)
        max_jobs += T[ti].n_caps * N_POL * (2 * O.n_t2 + 1);
    job *jobs = calloc(max_jobs + 1, sizeof(*jobs));
    if (!jobs)
        return 1;
    size_t n_jobs = 0;
    for (size_t ti = 0; ti < n_traces; ti++)
        for (size_t c = 0; c < T[ti].n_caps; c++)
            for (int a = 0; a < N_POL; a++) {
                if (!pol_shown(a) || pol_rc[a])
                    continue;
                uint64_t C = T[ti].caps[c];
                jobs[n_jobs++] = (job){ti, c, a, M_FLAT, 0};
                for (size_t k = 0; k < O.n_t2; k++) {
                    uint64_t t2 = O.t2[k].mult ? (uint64_t)llround(O.t2[k].v * (double)C)
                                               : (uint64_t)O.t2[k].v;
                    jobs[n_jobs++] = (job){ti, c, a, M_TWO_TIER, t2};
                    if (t2 && !find_job(jobs, n_jobs, ti, c, a, M_FLAT, t2))
                        jobs[n_jobs++] = (job){ti, c, a, M_FLAT, t2};
                }
            }
    bench_say("%zu runs on %d worker%s", n_jobs, O.jobs, O.jobs == 1 ? "" : "s");
    uint64_t t0 = bench_now_ns();
    shared *sh = run_jobs(jobs, n_jobs);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    int status = 0;
    for (size_t i = 0; i < n_jobs; i++) {
        const job *j = &jobs[i];
        const tr_result *r = &sh->out[i].r;
        if (sh->out[i].rc) {
            status = 1;
            continue;
        }
        if (j->mode != M_TWO_TIER)
            continue;
        /* Self-checks: the tiers add up; no tier 2, no change; never above
         * an infinite cache; with one client every promoted page is hit. */
        const trace_run *tr = &T[j->trace];
        const tr_result *f1 = find(sh, jobs, n_jobs, j->trace, j->cap, j->alg, M_FLAT, 0);
        const char *bad = NULL;
        if (r->tier1_hit_pages + r->tier2_hit_pages != r->hit_pages ||
            r->total_pages != tr_total_pages(tr->t))
            bad = "tier 1 + tier 2 + misses != the pages asked for";
        else if (r->hit_pages > tr->ideal.hit_pages)
            bad = "more hits than the infinite cache";
        else if (j->t2 == 0 && (r->tier2_hit_pages || r->promote_jobs ||
                                (f1 && f1->hit_pages != r->hit_pages)))
            bad = "with no tier 2, not the one-tier result";
        else if (j->t2 && r->tier2_capacity_pages != j->t2)
            bad = "tier 2 is not the size asked for";
        else if (r->tier2_promoted_pages != r->tier2_hit_pages)
            bad = "a promoted page was not found by the lookup after it";
        if (bad) {
            fprintf(stderr, "trace_replay: CHECK FAILED: %s %s at %" PRIu64
                            " + %" PRIu64 " pages: %s\n",
                    tr->t->name, alg_name(j->alg), tr->caps[j->cap], j->t2, bad);
            status = 1;
        }
    }
    for (size_t ti = 0; ti < n_traces; ti++)
        tier_table(stdout, sh, jobs, n_jobs, ti, false);
    printf("\ntwo tiers: %zu runs in %.1f s wall on %d worker%s\n", n_jobs, secs,
           O.jobs, O.jobs == 1 ? "" : "s");
    if (O.json_path) {
        FILE *f = open_out(O.json_path);
        if (!f) {
            status = 1;
        } else {
            tier_json(f, sh, jobs, n_jobs);
            if (fclose(f))
                status = 1;
        }
    }
    if (O.md_path) {
        FILE *f = open_out(O.md_path);
        if (!f) {
            status = 1;
        } else {
            for (size_t ti = 0; ti < n_traces; ti++) {
                md_trace_heading(f, &T[ti], "Page hit rates");
                tier_table(f, sh, jobs, n_jobs, ti, true);
                fprintf(f, "\n");
            }
            if (fclose(f))
                status = 1;
        }
    }
    if (O.plot_dir)
        fprintf(stderr, "trace_replay: note: no plots in two-tier mode\n");
    free(jobs);
    return status;
}

/* ---- daemon mode ------------------------------------------------------------------ */

static pid_t g_daemon = -1;
static char g_dir[64];
static char g_ep[128];

static void cleanup_daemon(void)
{
    if (g_daemon > 0) {
        kill(g_daemon, SIGTERM);
        int st;
        for (int i = 0; i < 2000; i++) {
            if (waitpid(g_daemon, &st, WNOHANG) == g_daemon) {
                g_daemon = -1;
                break;
            }
            struct timespec ts = {0, 5000000L};
            nanosleep(&ts, NULL);
        }
        if (g_daemon > 0) {
            kill(g_daemon, SIGKILL);
            waitpid(g_daemon, &st, 0);
            g_daemon = -1;
        }
    }
    if (g_dir[0]) {
        char p[128];
        static const char *const files[] = {"d.sock", "d.sock.lock"};
        for (size_t i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "%s/%s", g_dir, files[i]);
            unlink(p);
        }
        rmdir(g_dir);
        g_dir[0] = 0;
    }
}

static void on_signal(int sig)
{
    cleanup_daemon();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Start a private daemon on a private ipc endpoint (g_ep); 0 or 1. */
static int spawn_daemon(uint64_t capacity, uint32_t max_tokens)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/trace_replay.XXXXXX");
    if (!mkdtemp(g_dir)) {
        g_dir[0] = 0;
        fprintf(stderr, "trace_replay: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(g_ep, sizeof g_ep, "ipc://%s/d.sock", g_dir);
    char a_ep[160], a_pt[48], a_cap[48], a_pol[64], a_tok[48], a_mb[48];
    static char a_prio[8192];
    snprintf(a_ep, sizeof a_ep, "--endpoint=%s", g_ep);
    snprintf(a_pt, sizeof a_pt, "--page_tokens=%u", O.load.page_tokens);
    snprintf(a_cap, sizeof a_cap, "--pool_blocks=%" PRIu64, capacity);
    snprintf(a_pol, sizeof a_pol, "--eviction_policy=%s", pc_radix_policy_name(O.policy));
    snprintf(a_tok, sizeof a_tok, "--max_tokens=%u", max_tokens);
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)O.daemon_path;
    argv[n++] = a_ep;
    argv[n++] = "--pool_backend=none";
    argv[n++] = a_pt;
    argv[n++] = a_cap;
    argv[n++] = "--layers=1";
    argv[n++] = "--kv_heads=1";
    argv[n++] = "--head_dim=1";
    argv[n++] = "--dtype=fp16";
    argv[n++] = a_tok;
    /* one request's allocation must fit a lease (default 65536 blocks) */
    snprintf(a_mb, sizeof a_mb, "--max_blocks_per_lease=%u",
             max_tokens / O.load.page_tokens > 65536 ? max_tokens / O.load.page_tokens
                                                     : 65536);
    argv[n++] = a_mb;
    argv[n++] = "--log_level=warn";
    /* lru is the default: asking for it explicitly would only make a daemon
     * without the eviction_policy knob refuse to start */
    if (O.policy != PC_POLICY_LRU)
        argv[n++] = a_pol;
    if (O.n_prio) { /* the same namespace priorities as the in-process run */
        size_t l = (size_t)snprintf(a_prio, sizeof a_prio, "--namespace_priorities=");
        for (size_t i = 0; i < O.n_prio && l < sizeof a_prio; i++)
            l += (size_t)snprintf(a_prio + l, sizeof a_prio - l, "%s%s=%d",
                                  i ? "," : "", O.prio[i].ns, (int)O.prio[i].priority);
        if (l >= sizeof a_prio) {
            fprintf(stderr, "trace_replay: --priority list too long\n");
            return 1;
        }
        argv[n++] = a_prio;
    }
    argv[n] = NULL;
    bench_say("spawning %s %s %s %s %s ...", argv[0], a_ep, a_pt, a_cap,
              O.policy != PC_POLICY_LRU ? a_pol : "");
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "trace_replay: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        dup2(2, 1); /* our stdout carries the results only */
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        execv(argv[0], argv);
        fprintf(stderr, "trace_replay: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    g_daemon = pid;
    return 0;
}

typedef struct stat_ctx {
    uint64_t pages, leases;
} stat_ctx;

static void on_stat(void *ctx, const char *name, uint64_t v)
{
    stat_ctx *s = ctx;
    if (!strcmp(name, "tree.pages"))
        s->pages = v;
    else if (!strcmp(name, "leases.live"))
        s->leases = v;
}

typedef struct cfg_ctx {
    char value[64];
    bool seen;
    char low_wm[32];
} cfg_ctx;

static void on_cfg(void *ctx, const char *name, const char *value)
{
    cfg_ctx *c = ctx;
    if (!strcmp(name, "eviction_policy")) {
        snprintf(c->value, sizeof c->value, "%s", value);
        c->seen = true;
    } else if (!strcmp(name, "low_watermark")) {
        snprintf(c->low_wm, sizeof c->low_wm, "%s", value);
    }
}

static void progress_cb(void *ctx, size_t done, size_t total)
{
    bench_say("%s: %zu/%zu requests", (const char *)ctx, done, total);
}

static int daemon_mode(void)
{
    if (n_traces != 1) {
        fprintf(stderr, "trace_replay: daemon mode takes exactly one trace\n");
        return 2;
    }
    trace_run *tr = &T[0];
    const tr_trace *t = tr->t;
    if ((O.caps_given && tr->n_caps != 1) || (O.spawn && !O.caps_given)) {
        fprintf(stderr, "trace_replay: daemon mode takes one capacity "
                        "(--capacity N or --fractions F; with --endpoint the "
                        "daemon's pool by default)\n");
        return 2;
    }
    probe_policies();
    if (pol_rc[O.policy]) {
        printf("daemon mode: policy %s unavailable: the cache refuses it (%s)\n",
               pc_radix_policy_name(O.policy), pc_strerror(pol_rc[O.policy]));
        return 3;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    atexit(cleanup_daemon);
    uint64_t want_cap = tr->caps[0];
    bool cap_given = O.caps_given;
    const char *ep = O.endpoint;
    if (O.spawn) {
        uint64_t mt = (uint64_t)t->max_req_pages * t->page_tokens;
        if (mt < 1048576)
            mt = 1048576;
        if (spawn_daemon(want_cap, (uint32_t)mt))
            return 1;
        ep = g_ep;
    }
    pc_client *c = NULL;
    int rc = pc_client_connect(ep, 200, &c);
    if (rc) {
        fprintf(stderr, "trace_replay: connect %s: %s\n", ep, pc_strerror(rc));
        return 1;
    }
    uint64_t deadline = bench_now_ns() + 15ull * 1000000000ull;
    for (;;) {
        if (g_daemon > 0) {
            int st;
            if (waitpid(g_daemon, &st, WNOHANG) == g_daemon) {
                g_daemon = -1;
                fprintf(stderr, "trace_replay: the daemon exited (status %d) "
                                "before answering%s\n", st,
                        O.policy != PC_POLICY_LRU
                            ? " (does it have the eviction_policy knob yet?)" : "");
                pc_client_close(c);
                return O.policy != PC_POLICY_LRU ? 3 : 1;
            }
        }
        if ((rc = pc_client_ping(c)) == 0)
            break;
        if (rc != PC_E_TIMEOUT || bench_now_ns() > deadline) {
            fprintf(stderr, "trace_replay: ping %s: %s\n", ep, pc_strerror(rc));
            pc_client_close(c);
            return 1;
        }
    }
    pc_client_set_timeout(c, O.timeout_ms);
    pc_hello h;
    if ((rc = pc_client_hello(c, &h))) {
        fprintf(stderr, "trace_replay: hello: %s (%s)\n", pc_strerror(rc),
                pc_client_last_error(c));
        goto fail;
    }
    if (h.page_tokens != t->page_tokens) {
        fprintf(stderr, "trace_replay: the daemon has %u-token pages, the replay "
                        "%u: start it with --page_tokens=%u\n",
                h.page_tokens, t->page_tokens, t->page_tokens);
        goto fail;
    }
    if (cap_given && h.capacity != want_cap) {
        fprintf(stderr, "trace_replay: the daemon's pool has %" PRIu64 " blocks, "
                        "asked for %" PRIu64 " (start it with --pool_blocks=%" PRIu64
                        ")\n", h.capacity, want_cap, want_cap);
        goto fail;
    }
    uint64_t cap = h.capacity;
    cfg_ctx cc = {0};
    rc = pc_client_config_get(c, NULL, on_cfg, &cc); /* every knob */
    if (rc == 0 && cc.low_wm[0] && strcmp(cc.low_wm, "0")) {
        /* the daemon would evict between requests: not what the replay does */
        fprintf(stderr, "trace_replay: the daemon runs low_watermark=%s: start it "
                        "with watermarks off (0)\n", cc.low_wm);
        goto fail;
    }
    if (rc == 0 && cc.seen && strcmp(cc.value, pc_radix_policy_name(O.policy))) {
        fprintf(stderr, "trace_replay: the daemon runs eviction_policy=%s, the "
                        "replay asks for %s (--policy)\n",
                cc.value, pc_radix_policy_name(O.policy));
        goto fail;
    }
    if (O.n_prio && O.endpoint)
        bench_say("note: --priority applies in-process only; the daemon must have been "
                  "started with the same --namespace_priorities");
    if (rc || !cc.seen) {
        if (O.policy != PC_POLICY_LRU) {
            fprintf(stderr, "trace_replay: the daemon has no eviction_policy knob "
                            "(%s): only lru can be compared\n", pc_strerror(rc));
            goto fail;
        }
        bench_say("the daemon has no eviction_policy knob yet: assuming lru");
    }
    stat_ctx sc = {0};
    if ((rc = pc_client_stats(c, on_stat, &sc)))
        goto fail_rc;
    if ((sc.pages || sc.leases) && O.flush) {
        uint64_t ev;
        if ((rc = pc_client_flush(c, NULL, 0, &ev)))
            goto fail_rc;
        sc = (stat_ctx){0};
        if ((rc = pc_client_stats(c, on_stat, &sc)))
            goto fail_rc;
    }
    if (sc.pages || sc.leases) {
        fprintf(stderr, "trace_replay: the daemon holds %" PRIu64 " pages and %"
                        PRIu64 " leases: the replay needs an empty one (--flush "
                        "empties it, pinned pages excepted)\n", sc.pages, sc.leases);
        goto fail;
    }
    bench_say("%s: replaying %zu requests through %s (policy %s, %" PRIu64 " pages)",
              t->name, t->n_req, ep, pc_radix_policy_name(O.policy), cap);
    uint32_t *hd = calloc(t->n_req + 1, sizeof(*hd));
    uint32_t *hi = calloc(t->n_req + 1, sizeof(*hi));
    if (!hd || !hi) {
        free(hd);
        free(hi);
        goto fail;
    }
    tr_result rd, ri;
    rc = tr_replay_daemon(t, c, cap, hd, progress_cb, (void *)"daemon", 2000, &rd);
    if (rc) {
        fprintf(stderr, "trace_replay: daemon replay: %s (%s)\n", pc_strerror(rc),
                pc_client_last_error(c));
        free(hd);
        free(hi);
        goto fail;
    }
    tr_replay_opts ro = {.policy = O.policy, .capacity = cap, .check_every = O.check,
                         .prio = O.prio, .n_prio = O.n_prio, .per_req_hits = hi};
    rc = tr_replay_cache(t, &ro, &ri);
    if (rc) {
        fprintf(stderr, "trace_replay: in-process replay: %s\n", pc_strerror(rc));
        free(hd);
        free(hi);
        goto fail;
    }
    size_t first_diff = SIZE_MAX;
    for (size_t i = 0; i < t->n_req && first_diff == SIZE_MAX; i++)
        if (hd[i] != hi[i])
            first_diff = i;
    bool pass = first_diff == SIZE_MAX && rd.hit_pages == ri.hit_pages;
    printf("%s, policy %s, capacity %" PRIu64 " pages (%.3g%% of the working set "
           "%u):\n",
           t->name, pc_radix_policy_name(O.policy), cap,
           t->n_distinct ? 100.0 * (double)cap / t->n_distinct : 100.0, t->n_distinct);
    printf("  daemon     hit rate %7.3f%%  (%" PRIu64 "/%" PRIu64 " pages, %.2f s)\n",
           100 * tr_hit_rate(&rd), rd.hit_pages, rd.total_pages, rd.seconds);
    printf("  in-process hit rate %7.3f%%  (%" PRIu64 "/%" PRIu64 " pages, %.2f s)\n",
           100 * tr_hit_rate(&ri), ri.hit_pages, ri.total_pages, ri.seconds);
    if (pass)
        printf("daemon == in-process, request by request: PASS\n");
    else
        printf("daemon != in-process (first difference at request %zu: %u vs %u "
               "pages): FAIL\n", first_diff, first_diff < t->n_req ? hd[first_diff] : 0,
               first_diff < t->n_req ? hi[first_diff] : 0);
    free(hd);
    free(hi);
    /* The daemon's own books: every lease released, nothing refused. */
    sc = (stat_ctx){0};
    if ((rc = pc_client_stats(c, on_stat, &sc)) == 0 && sc.leases) {
        printf("daemon still holds %" PRIu64 " leases: FAIL\n", sc.leases);
        pass = false;
    }
    pc_client_close(c);
    if (g_daemon > 0) {
        kill(g_daemon, SIGTERM);
        int st = 0;
        waitpid(g_daemon, &st, 0);
        g_daemon = -1;
        if (!WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "trace_replay: the daemon exited with status %d\n", st);
            pass = false;
        }
    }
    return pass ? 0 : 1;
fail_rc:
    fprintf(stderr, "trace_replay: %s (%s)\n", pc_strerror(rc), pc_client_last_error(c));
fail:
    pc_client_close(c);
    return 1;
}

int main(int argc, char **argv)
{
    bench_cli_init("trace_replay");
    bench_cli.die_hint = "(--help for usage)";
    bench_cli.usage = usage;
    parse_args(argc, argv);
    load_traces(argc, argv);
    int st = (O.endpoint || O.spawn) ? daemon_mode() : O.n_t2 ? tiers() : sweep();
    for (size_t i = 0; i < n_traces; i++)
        tr_trace_free(T[i].t);
    for (size_t i = 0; i < O.n_prio; i++)
        free((char *)O.prio[i].ns);
    return st;
}

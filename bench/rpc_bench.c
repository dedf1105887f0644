/*
 * bench/rpc_bench.c - prefixcached over ZeroMQ (ipc) against a raw ZeroMQ
 * echo server that returns same-sized replies, in one run.
 *
 *   rpc_bench spawns            rpc_bench (1 client)       8 worker processes
 *   ──────────────              ────────────────────       ──────────────────
 *   prefixcached ◄── pc_client (rpc/client.h) ──────────── pc_client x 8
 *     --endpoint=ipc://DIR/daemon.sock                     (16 pipelined each)
 *     --pool_backend=none ...
 *   echo_server  ◄── raw DEALER, the same frames ────────── raw DEALER x 8
 *     ipc://DIR/echo.sock
 *
 * DIR is a private mkdtemp() directory, removed at the end (and on failure).
 *
 * The echo server (bench/echo_server.c) is the baseline: single-threaded like
 * the daemon, one ROUTER, the envelope echoed, and a reply payload of exactly
 * the size the daemon's reply to the same request has.  Each echo request is
 * [u32 reply_len][u32 tag] + the msgpack request the daemon would receive
 * (the same bytes that libprefixcache encodes), so both servers receive the
 * same payload (+ 8 bytes) and send the same number of bytes back.  The
 * reply sizes are measured first, with raw requests to the daemon (a lookup
 * of a cached prompt; a lookup(pin+alloc) and an insert(release) of a fresh
 * prompt).  The echo clients use the same DEALER options and the same call
 * sequence as libprefixcache (zmq_poll POLLOUT, delimiter + payload sent
 * DONTWAIT, zmq_poll POLLIN, frames received DONTWAIT), so the ratio is the
 * cost of everything that is not ZeroMQ: encoding and decoding msgpack on
 * both sides, the daemon's request handling and the cache itself.
 *
 * Workload: page_tokens 16; prompts of 4,096 tokens (256 pages) = a shared
 * 2,048-token system prompt + a 2,048-token tail.  Tokens are splitmix64
 * values reduced to [0, 128000) from --seed.  Warm-up inserts 1,000 distinct
 * prompts (lookup pin+alloc, insert release), then checks that each one is
 * fully cached under the canonical ids its insert returned.
 *
 * Phases (daemon and echo interleaved in blocks of 500, the order alternating
 * from block to block; throughput rounds alternate the order too):
 *   1. lookup latency, 1 client: N lookups (pin=false) of warm prompts chosen
 *      uniformly by the seed, pc_client_lookup, each timed on its own; every
 *      result is checked (256 pages, the canonical ids).  Echo: the same
 *      prompts' request bytes, one round trip each.
 *   2. lookup throughput: 8 forked client processes, each with 16 requests
 *      in flight (pc_client_send_lookup / pc_client_recv), a fixed count per
 *      process; requests/s = all replies / (last end - first start), the
 *      processes being released together from a barrier.
 *   3. cycle latency, 1 client: a fresh prompt (the system prompt + a new
 *      tail: 128 pages hit, 128 miss), lookup(pin+alloc) then insert(release)
 *      of the cached ids + the allocated ids; checked: 128 pages hit, 128
 *      allocated, the insert adopts 128 pages and returns the ids it was
 *      given.  Echo: two round trips with the same sizes.
 *   4. cycle throughput: 8 processes, each keeping 16 independent prompts in
 *      flight (a prompt's insert is sent when its lookup's reply arrives).
 *
 * The 8 worker processes are forked at start, before any ZeroMQ context
 * exists, and take commands over pipes.  The pool (backend "none" by default:
 * an index only, the daemon never touches KV bytes on these paths) holds
 * every page the run inserts, so nothing is evicted (checked in the stats).
 *
 * Output: a table, then JSON (stdout, and --json PATH).  Progress on stderr.
 * The exit status does not depend on PASS/FAIL; it is non-zero when something
 * is wrong (a wrong reply, a failed call, a process that died, the daemon
 * exiting non-zero after SIGTERM).  The daemon and the echo server get
 * SIGTERM at the end (SIGKILL after 10 s), and die with this process
 * (PR_SET_PDEATHSIG) if it is killed.
 */
#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
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

#include <msgpack.h>
#include <zmq.h>

#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "bench/common/rng.h"
#include "proto/proto.h"
#include "rpc/client.h"

#ifndef PC_DAEMON_PATH
#define PC_DAEMON_PATH "prefixcached"
#endif
#ifndef PC_ECHO_PATH
#define PC_ECHO_PATH "echo_server"
#endif

#define VOCAB 128000u
#define GAMMA 0x9e3779b97f4a7c15ULL
#define PT 16u                /* page_tokens                               */
#define LAT_BLOCK 500         /* latency samples per side before switching */
#define MAX_CLIENTS 64
#define MAX_DEPTH 256
#define MAX_REPS 15
#define MAX_DARGS 16
#define RING 128              /* prepared requests per worker (lookups)   */
#define HDR 8                 /* echo header: reply_len, tag               */
#define N_PROBE 16            /* raw probes of each reply size             */
#define MAX_STATS 512
#define MAX_PINS 3            /* latency placements per run                */

static const char NS[] = "llama-3.1-8b-instruct|lora:none|tenant:rpc-bench";
#define NS_LEN (sizeof NS - 1)

/* ---- configuration ---------------------------------------------------------- */

typedef struct config {
    const char *preset;
    uint64_t seed;
    const char *json_path, *daemon_path, *echo_path, *backend;
    size_t prompts;      /* warm prompts                                  */
    size_t prompt_tokens, system_tokens;
    size_t lookups;      /* latency: lookups per side                     */
    size_t cycles;       /* latency: cycles per side                      */
    size_t clients, depth;
    size_t tput_lookups; /* per process and round                         */
    size_t tput_cycles;  /* per process and round                         */
    size_t reps;         /* throughput rounds per side                    */
    int timeout_ms;
    const char *pins[MAX_PINS]; /* latency placements: same, split, none   */
    size_t n_pins;
    bool ph_lookup, ph_lookup_tput, ph_cycle, ph_cycle_tput; /* --phases */
    bool side[2]; /* --side: run the daemon [0] and/or the echo [1] half   */
    const char *dargs[MAX_DARGS];
    size_t n_dargs;
    bool events; /* --events: KV events on, one subscriber draining them */
    unsigned tcp_port;     /* --tcp: the daemon on tcp://127.0.0.1:PORT     */
    const char *curve_dir; /* --curve-dir: server.key, client.key, allow   */
    /* derived */
    size_t pages, sys_pages, tail_pages, tail_tokens;
    uint64_t pool_blocks;
    bool pool_fits; /* the pool holds every page the run inserts */
} config;

static config C;

/* --curve-dir: the keys every client of the daemon connects with. */
static pc_client_curve g_curve;
static bool g_use_curve;

static int bench_connect(const char *ep, int timeout_ms, pc_client **out)
{
    return pc_client_connect_curve(ep, timeout_ms, g_use_curve ? &g_curve : NULL,
                                   out);
}

/* ---- process bookkeeping and cleanup ---------------------------------------- */

static pid_t g_main_pid;
static pid_t g_daemon = -1, g_echo = -1;
static pid_t g_worker[MAX_CLIENTS];
static int g_cmd_fd[MAX_CLIENTS], g_res_fd[MAX_CLIENTS]; /* -1: closed */
static size_t g_nworkers;
static char g_dir[64];       /* the private socket directory */
static char g_daemon_ep[128], g_echo_ep[128], g_shm_name[64];
static int g_daemon_status = -1, g_echo_status = -1; /* after reaping */

static const char *const g_dir_files[] = {"daemon.sock", "daemon.sock.lock",
                                          "echo.sock", "events.sock"};


/* Stop everything this run started and remove its files.  Idempotent; only
 * the main process does anything; async-signal-safe (used by the handler). */
static void cleanup(void)
{
    if (getpid() != g_main_pid)
        return;
    for (size_t i = 0; i < g_nworkers; i++)
        if (g_cmd_fd[i] >= 0) {
            close(g_cmd_fd[i]); /* EOF: the worker exits */
            g_cmd_fd[i] = -1;
        }
    if (g_echo > 0)
        kill(g_echo, SIGTERM);
    if (g_daemon > 0)
        kill(g_daemon, SIGTERM);
    if (g_echo > 0) {
        g_echo_status = rpt_reap(g_echo, 10000);
        g_echo = -1;
    }
    if (g_daemon > 0) {
        g_daemon_status = rpt_reap(g_daemon, 10000);
        g_daemon = -1;
    }
    for (size_t i = 0; i < g_nworkers; i++)
        if (g_worker[i] > 0) {
            kill(g_worker[i], SIGTERM);
            rpt_reap(g_worker[i], 2000);
            g_worker[i] = 0;
        }
    for (size_t i = 0; i < g_nworkers; i++)
        if (g_res_fd[i] >= 0) {
            close(g_res_fd[i]);
            g_res_fd[i] = -1;
        }
    if (g_dir[0]) {
        char p[128];
        for (size_t i = 0; i < sizeof g_dir_files / sizeof g_dir_files[0];
             i++) {
            /* snprintf is not on the async-signal-safe list: build by hand */
            size_t a = strlen(g_dir), b = strlen(g_dir_files[i]);
            if (a + 1 + b + 1 > sizeof p)
                continue;
            memcpy(p, g_dir, a);
            p[a] = '/';
            memcpy(p + a + 1, g_dir_files[i], b + 1);
            unlink(p);
        }
        rmdir(g_dir);
        g_dir[0] = 0;
    }
    if (g_shm_name[0]) {
        shm_unlink(g_shm_name); /* host backend: gone already unless killed */
        g_shm_name[0] = 0;
    }
}

static void on_signal(int sig)
{
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* The sanitizers' runtime, when linked: a report ends the process without
 * atexit handlers, and it owns SIGSEGV & co. */
extern void __sanitizer_set_death_callback(void (*callback)(void))
    __attribute__((weak));

static void install_cleanup(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (__sanitizer_set_death_callback) {
        __sanitizer_set_death_callback(cleanup);
    } else {
        /* a crash or a failed assert still stops the servers and removes
         * the socket directory */
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
        sigaction(SIGFPE, &sa, NULL);
        sigaction(SIGABRT, &sa, NULL);
    }
    atexit(cleanup);
}

/* memcpy of n block ids; the client hands NULL for an empty list */
static inline void copy_ids(uint32_t *dst, const uint32_t *src, size_t n)
{
    if (n)
        memcpy(dst, src, n * sizeof *dst);
}


/* fork + exec argv[0]; stdin from /dev/null, stdout and stderr inherited. */
static pid_t spawn(char *const argv[])
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0) {
            dup2(in, 0);
            close(in);
        }
        dup2(2, 1); /* our stdout carries the table and the JSON only */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        execv(argv[0], argv);
        fprintf(stderr, "rpc_bench: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static void check_alive(pid_t pid, const char *what)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
        if (pid == g_daemon)
            g_daemon = -1;
        if (pid == g_echo)
            g_echo = -1;
        if (WIFEXITED(st))
            bench_die("%s exited with status %d", what, WEXITSTATUS(st));
        bench_die("%s died of signal %d", what, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    }
}

/* The CPUs this process may use (its affinity at start), and the first two
 * of them: the placements' "CPU 0" and "CPU 1". */
static cpu_set_t g_allowed;
static int g_cpu[2] = {-1, -1};

static int allowed_cpus(void)
{
    if (sched_getaffinity(0, sizeof g_allowed, &g_allowed))
        bench_die("sched_getaffinity: %s", strerror(errno));
    int n = 0;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &g_allowed)) {
            if (n < 2)
                g_cpu[n] = i;
            n++;
        }
    return n;
}

/* Set the CPU affinity of every thread of process pid (0: this one), the
 * ZeroMQ I/O threads included.  cpu < 0: every allowed CPU. */
static void pin_process(pid_t pid, int cpu)
{
    cpu_set_t set = g_allowed;
    if (cpu >= 0) {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
    }
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%ld/task", (long)(pid ? pid : getpid()));
    DIR *d = opendir(dir);
    if (!d)
        bench_die("%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' &&
            sched_setaffinity((pid_t)atol(e->d_name), sizeof set, &set) &&
            errno != ESRCH)
            bench_die("sched_setaffinity(%s): %s", e->d_name, strerror(errno));
    closedir(d);
}

/* A placement for the 1-client latency phases (--pin).  same: this
 * process, the daemon and the echo server (all their threads) on the first
 * allowed CPU; split: this process there, the servers on the second; none:
 * the scheduler decides.  NULL: back to every allowed CPU (the throughput
 * phases run unpinned). */
static void pin_latency(const char *pin)
{
    if (pin && !strcmp(pin, "none"))
        return;
    int split = pin && !strcmp(pin, "split");
    pin_process(0, pin ? g_cpu[0] : -1);
    pin_process(g_daemon, pin ? g_cpu[split] : -1);
    pin_process(g_echo, pin ? g_cpu[split] : -1);
}

static const char *pin_desc(const char *pin)
{
    return !strcmp(pin, "same") ? "1 CPU" : !strcmp(pin, "split") ? "2 CPUs"
                                                                  : "unpinned";
}

/* ---- numbers ----------------------------------------------------------------- */

/* Median of v[0..n), n <= 2 * MAX_REPS; sorts a copy. */
static double median_of(const double *v, size_t n)
{
    if (n == 0)
        return NAN;
    double c[MAX_REPS * 2];
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, bench_cmp_double);
    return bench_median_sorted(c, n);
}

/* ---- workload ------------------------------------------------------------------ */

enum { S_SYSTEM = 1, S_TAIL, S_QUERY, S_WORKER_QUERY, S_TEMPLATE };

static uint64_t stream(uint32_t kind, uint64_t idx)
{
    return bench_mix64(C.seed * GAMMA ^
                       bench_mix64(((uint64_t)kind << 48) ^ idx));
}

static void gen_tokens(uint64_t base, uint32_t *out, size_t n)
{
    uint64_t s = base;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)(bench_rng_next(&s) % VOCAB);
}

/* Warm prompt i into out[0..prompt_tokens). */
static void warm_prompt(size_t i, uint32_t *out)
{
    gen_tokens(stream(S_SYSTEM, 0), out, C.system_tokens);
    gen_tokens(stream(S_TAIL, i), out + C.system_tokens, C.tail_tokens);
}

/*
 * Fresh prompts for cycles: the system prompt + a template tail whose first
 * three tokens encode a unique id, so that its first page (and so the whole
 * tail) is new to the tree.  uid: (stream << 32) | k, stream 0 = the size
 * probes, 1 + p = the 1-client latency phase in placement p, 1 + MAX_PINS +
 * (round * clients + worker) = the throughput workers.
 */
static void fresh_prompt_init(uint32_t *out)
{
    gen_tokens(stream(S_SYSTEM, 0), out, C.system_tokens);
    gen_tokens(stream(S_TEMPLATE, 0), out + C.system_tokens, C.tail_tokens);
}

static inline void fresh_prompt_set(uint32_t *out, uint64_t uid)
{
    uint32_t *t = out + C.system_tokens;
    t[0] = (uint32_t)(uid % VOCAB);
    t[1] = (uint32_t)(uid / VOCAB % VOCAB);
    t[2] = (uint32_t)(uid / VOCAB / VOCAB % VOCAB);
}

static inline uint64_t uid_of(uint64_t strm, uint64_t k)
{
    return strm << 32 | k;
}

/* ---- requests as libprefixcache encodes them -------------------------------------- */

typedef struct buf {
    unsigned char *p;
    size_t len;
} buf;

/* The messages libprefixcache sends, from the same wire table. */
static void pack_lookup(msgpack_packer *pk, uint64_t id, const uint32_t *tok,
                        size_t n, bool pin, bool alloc, uint64_t lease)
{
    pc_lookup_req q = {.ns = {NS, NS_LEN}, .tokens = {tok, n}};
    if (pin)
        PC_SET(&q, lookup_req, pin, true);
    if (alloc)
        PC_SET(&q, lookup_req, alloc, true);
    if (lease)
        PC_SET(&q, lookup_req, lease, lease);
    pc_wire_encode_request(pk, PC_OP_LOOKUP, id, &q);
}

static void pack_insert(msgpack_packer *pk, uint64_t id, const uint32_t *tok,
                        size_t n, const uint32_t *blocks, uint64_t lease,
                        bool release)
{
    pc_insert_req q = {.ns = {NS, NS_LEN}, .tokens = {tok, n},
                       .blocks = {blocks, n / PT}};
    if (lease)
        PC_SET(&q, insert_req, lease, lease);
    if (release)
        PC_SET(&q, insert_req, release, true);
    pc_wire_encode_request(pk, PC_OP_INSERT, id, &q);
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* An echo request: header + the msgpack bytes in sb. */
static buf echo_req(const msgpack_sbuffer *sb, uint32_t reply_len,
                    uint32_t tag)
{
    buf b = {bench_xmalloc(HDR + sb->size), HDR + sb->size};
    put_le32(b.p, reply_len);
    put_le32(b.p + 4, tag);
    memcpy(b.p + HDR, sb->data, sb->size);
    return b;
}

static buf echo_lookup(uint64_t id, const uint32_t *tok, bool pin_alloc,
                       uint32_t reply_len, uint32_t tag)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_lookup(&pk, id, tok, C.prompt_tokens, pin_alloc, pin_alloc, 0);
    buf b = echo_req(&sb, reply_len, tag);
    msgpack_sbuffer_destroy(&sb);
    return b;
}

static buf echo_insert(uint64_t id, const uint32_t *tok, uint64_t lease,
                       uint32_t reply_len, uint32_t tag)
{
    uint32_t *blocks = bench_xmalloc(C.pages * sizeof *blocks);
    for (size_t i = 0; i < C.pages; i++)
        blocks[i] = (uint32_t)(C.pool_blocks - 1 - i); /* full-width ids */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_insert(&pk, id, tok, C.prompt_tokens, blocks, lease, true);
    buf b = echo_req(&sb, reply_len, tag);
    msgpack_sbuffer_destroy(&sb);
    free(blocks);
    return b;
}

/* ---- raw ZeroMQ, with libprefixcache's options and call sequence -------------------- */

static void *raw_open(void *ctx, const char *ep)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, one = 1;
    bool curve = g_use_curve && !strcmp(ep, g_daemon_ep);
    if (s && curve &&
        (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, g_curve.server_public, 40) ||
         zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, g_curve.public_key, 40) ||
         zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, g_curve.secret_key, 40)))
        bench_die("raw DEALER to %s: CURVE: %s", ep, zmq_strerror(zmq_errno()));
    if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one) ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero) ||
        zmq_connect(s, ep))
        bench_die("raw DEALER to %s: %s", ep, zmq_strerror(zmq_errno()));
    return s;
}

/* zmq_poll for events until deadline (ns); 0 ready, -1 timeout. */
static int raw_wait(void *s, short events, uint64_t deadline)
{
    zmq_pollitem_t it = {s, 0, events, 0};
    for (;;) {
        uint64_t t = bench_now_ns();
        long left = t >= deadline ? 0 : (long)((deadline - t) / 1000000 + 1);
        int n = zmq_poll(&it, 1, left);
        if (n > 0)
            return 0;
        if (n < 0 && zmq_errno() != EINTR)
            bench_die("zmq_poll: %s", zmq_strerror(zmq_errno()));
        if (n == 0 && bench_now_ns() >= deadline)
            return -1;
    }
}

static int raw_send(void *s, const void *p, size_t len, int timeout_ms)
{
    if (raw_wait(s, ZMQ_POLLOUT,
                 bench_now_ns() + (uint64_t)timeout_ms * 1000000))
        return -1;
    if (zmq_send(s, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(s, p, len, ZMQ_DONTWAIT) < 0)
        bench_die("zmq_send: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* One reply's last frame into *m (initialised here); -1 on timeout. */
static int raw_recv(void *s, zmq_msg_t *m, int timeout_ms)
{
    if (raw_wait(s, ZMQ_POLLIN,
                 bench_now_ns() + (uint64_t)timeout_ms * 1000000))
        return -1;
    zmq_msg_init(m);
    for (;;) {
        if (zmq_msg_recv(m, s, ZMQ_DONTWAIT) < 0)
            bench_die("zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
        if (!zmq_msg_more(m))
            return 0;
    }
}

/* ---- workers ----------------------------------------------------------------------- */

enum { W_LOOKUP_DAEMON, W_LOOKUP_ECHO, W_CYCLE_DAEMON, W_CYCLE_ECHO, W_NKIND };
static const char *const wkind_name[W_NKIND] = {"lookup/daemon", "lookup/echo",
                                                "cycle/daemon", "cycle/echo"};

typedef struct wcmd {
    int kind;
    uint32_t round;
    uint32_t count; /* lookups or cycles */
    uint32_t reply_lookup, reply_cyc_lookup, reply_cyc_insert;
} wcmd;

typedef struct wres {
    int status;   /* 0 ok; otherwise err says what */
    uint64_t t0, t1, done;
    char err[200];
} wres;

static void xwrite(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            bench_die("pipe write: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* 0 on success, -1 on EOF before n bytes. */
static int xread(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            bench_die("pipe read: %s", strerror(errno));
        if (r == 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

typedef struct wctx {
    int id, cmd_fd, res_fd;
    wres res;
} wctx;

static void wfail(wctx *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    w->res.status = -1;
    vsnprintf(w->res.err, sizeof w->res.err, fmt, ap);
    va_end(ap);
}

/* Ready (or failed) -> wait for go -> t0.  Returns 0 to run. */
static int wbarrier(wctx *w)
{
    wres ready = w->res;
    xwrite(w->res_fd, &ready, sizeof ready);
    if (w->res.status)
        return -1;
    char go;
    if (xread(w->cmd_fd, &go, 1))
        _exit(0);
    w->res.t0 = bench_now_ns();
    return 0;
}

static pc_client *wconnect(wctx *w)
{
    pc_client *c = NULL;
    pc_hello h;
    int rc = bench_connect(g_daemon_ep, C.timeout_ms, &c);
    if (rc) {
        wfail(w, "connect: %s", pc_strerror(rc));
        return NULL;
    }
    if ((rc = pc_client_hello(c, &h))) {
        wfail(w, "hello: %s (%s)", pc_strerror(rc), pc_client_last_error(c));
        pc_client_close(c);
        return NULL;
    }
    return c;
}

static void w_lookup_daemon(wctx *w, const wcmd *cmd)
{
    uint32_t *tok = bench_xmalloc(RING * C.prompt_tokens * sizeof *tok);
    uint64_t s = stream(S_WORKER_QUERY, (uint64_t)cmd->round << 16 | (uint64_t)w->id);
    for (size_t i = 0; i < RING; i++)
        warm_prompt(bench_rng_next(&s) % C.prompts, tok + i * C.prompt_tokens);
    pc_client *c = wconnect(w);
    if (wbarrier(w) == 0) {
        size_t sent = 0, depth = C.depth < cmd->count ? C.depth : cmd->count;
        for (; sent < depth; sent++) {
            int64_t id = pc_client_send_lookup(c, NS, NS_LEN,
                                               tok + sent % RING * C.prompt_tokens,
                                               C.prompt_tokens, 0, 0);
            if (id < 0) {
                wfail(w, "send_lookup: %s", pc_strerror((int)id));
                goto out;
            }
        }
        while (w->res.done < cmd->count) {
            pc_client_reply r;
            int rc = pc_client_recv(c, &r);
            if (rc || r.status) {
                wfail(w, "recv: %s / %s (%s)", pc_strerror(rc),
                      pc_strerror(r.status), pc_client_last_error(c));
                goto out;
            }
            if (r.lookup.tokens != C.prompt_tokens || r.lookup.pages != C.pages) {
                wfail(w, "lookup matched %zu tokens, %zu pages (expected %zu)",
                      r.lookup.tokens, r.lookup.pages, C.prompt_tokens);
                goto out;
            }
            w->res.done++;
            if (sent < cmd->count) {
                int64_t id = pc_client_send_lookup(
                    c, NS, NS_LEN, tok + sent % RING * C.prompt_tokens,
                    C.prompt_tokens, 0, 0);
                if (id < 0) {
                    wfail(w, "send_lookup: %s", pc_strerror((int)id));
                    goto out;
                }
                sent++;
            }
        }
        w->res.t1 = bench_now_ns();
    }
out:
    pc_client_close(c);
    free(tok);
}

static void w_lookup_echo(wctx *w, const wcmd *cmd)
{
    buf *req = bench_xmalloc(RING * sizeof *req);
    uint32_t *tok = bench_xmalloc(C.prompt_tokens * sizeof *tok);
    uint64_t s = stream(S_WORKER_QUERY, (uint64_t)cmd->round << 16 | (uint64_t)w->id);
    for (size_t i = 0; i < RING; i++) {
        warm_prompt(bench_rng_next(&s) % C.prompts, tok);
        req[i] = echo_lookup(i + 1, tok, false, cmd->reply_lookup, (uint32_t)i);
    }
    void *ctx = zmq_ctx_new();
    void *sk = raw_open(ctx, g_echo_ep);
    /* one round trip first, as the daemon's workers do hello */
    zmq_msg_t m;
    if (raw_send(sk, req[0].p, req[0].len, C.timeout_ms) ||
        raw_recv(sk, &m, C.timeout_ms))
        wfail(w, "echo server does not answer");
    else
        zmq_msg_close(&m);
    if (wbarrier(w) == 0) {
        size_t sent = 0, depth = C.depth < cmd->count ? C.depth : cmd->count;
        for (; sent < depth; sent++)
            if (raw_send(sk, req[sent % RING].p, req[sent % RING].len,
                         C.timeout_ms)) {
                wfail(w, "echo send timed out");
                goto out;
            }
        while (w->res.done < cmd->count) {
            if (raw_recv(sk, &m, C.timeout_ms)) {
                wfail(w, "echo recv timed out");
                goto out;
            }
            size_t len = zmq_msg_size(&m);
            zmq_msg_close(&m);
            if (len != cmd->reply_lookup) {
                wfail(w, "echo reply of %zu bytes, expected %u", len,
                      cmd->reply_lookup);
                goto out;
            }
            w->res.done++;
            if (sent < cmd->count) {
                if (raw_send(sk, req[sent % RING].p, req[sent % RING].len,
                             C.timeout_ms)) {
                    wfail(w, "echo send timed out");
                    goto out;
                }
                sent++;
            }
        }
        w->res.t1 = bench_now_ns();
    }
out:
    zmq_close(sk);
    zmq_ctx_term(ctx);
    for (size_t i = 0; i < RING; i++)
        free(req[i].p);
    free(req);
    free(tok);
}

typedef struct slot {
    uint32_t *tok;
    int64_t id;   /* the request in flight                */
    int phase;    /* 0: lookup in flight, 1: insert       */
} slot;

static void w_cycle_daemon(wctx *w, const wcmd *cmd)
{
    size_t depth = C.depth < cmd->count ? C.depth : cmd->count;
    slot *sl = bench_xcalloc(depth, sizeof *sl);
    uint32_t *ids = bench_xmalloc(C.pages * sizeof *ids);
    uint64_t strm = 1 + MAX_PINS + (uint64_t)cmd->round * C.clients +
                    (uint64_t)w->id;
    uint64_t next_uid = 0;
    for (size_t i = 0; i < depth; i++) {
        sl[i].tok = bench_xmalloc(C.prompt_tokens * sizeof(uint32_t));
        fresh_prompt_init(sl[i].tok);
    }
    pc_client *c = wconnect(w);
    if (wbarrier(w) == 0) {
        size_t started = 0;
        for (; started < depth; started++) {
            fresh_prompt_set(sl[started].tok, uid_of(strm, next_uid++));
            sl[started].phase = 0;
            sl[started].id = pc_client_send_lookup(
                c, NS, NS_LEN, sl[started].tok, C.prompt_tokens,
                PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0);
            if (sl[started].id < 0) {
                wfail(w, "send_lookup: %s", pc_strerror((int)sl[started].id));
                goto out;
            }
        }
        while (w->res.done < cmd->count) {
            pc_client_reply r;
            int rc = pc_client_recv(c, &r);
            if (rc || r.status) {
                wfail(w, "recv: %s / %s (%s)", pc_strerror(rc),
                      pc_strerror(r.status), pc_client_last_error(c));
                goto out;
            }
            size_t k = 0;
            while (k < depth && sl[k].id != (int64_t)r.id)
                k++;
            if (k == depth) {
                wfail(w, "reply to unknown request %llu",
                      (unsigned long long)r.id);
                goto out;
            }
            slot *q = &sl[k];
            if (q->phase == 0) {
                const pc_client_lookup_result *l = &r.lookup;
                if (l->pages != C.sys_pages || l->alloc_status ||
                    l->n_alloc != C.tail_pages || !l->lease) {
                    wfail(w, "cycle lookup: %zu pages hit, %zu allocated "
                          "(status %d), lease %llu; expected %zu + %zu",
                          l->pages, l->n_alloc, l->alloc_status,
                          (unsigned long long)l->lease, C.sys_pages,
                          C.tail_pages);
                    goto out;
                }
                copy_ids(ids, l->blocks, l->pages);
                copy_ids(ids + l->pages, l->alloc_blocks, l->n_alloc);
                q->phase = 1;
                q->id = pc_client_send_insert(c, NS, NS_LEN, q->tok,
                                              C.prompt_tokens, ids, l->lease,
                                              PC_CLIENT_RELEASE);
                if (q->id < 0) {
                    wfail(w, "send_insert: %s", pc_strerror((int)q->id));
                    goto out;
                }
                continue;
            }
            if (r.insert.inserted_pages != C.tail_pages ||
                r.insert.cached_tokens != C.system_tokens) {
                wfail(w, "cycle insert: %zu cached tokens, %zu pages "
                      "inserted; expected %zu, %zu",
                      r.insert.cached_tokens, r.insert.inserted_pages,
                      C.system_tokens, C.tail_pages);
                goto out;
            }
            w->res.done++;
            q->id = 0;
            if (started < cmd->count) {
                fresh_prompt_set(q->tok, uid_of(strm, next_uid++));
                q->phase = 0;
                q->id = pc_client_send_lookup(c, NS, NS_LEN, q->tok,
                                              C.prompt_tokens,
                                              PC_CLIENT_PIN | PC_CLIENT_ALLOC,
                                              0);
                if (q->id < 0) {
                    wfail(w, "send_lookup: %s", pc_strerror((int)q->id));
                    goto out;
                }
                started++;
            }
        }
        w->res.t1 = bench_now_ns();
    }
out:
    pc_client_close(c);
    for (size_t i = 0; i < depth; i++)
        free(sl[i].tok);
    free(sl);
    free(ids);
}

static void w_cycle_echo(wctx *w, const wcmd *cmd)
{
    size_t depth = C.depth < cmd->count ? C.depth : cmd->count;
    buf *lk = bench_xmalloc(depth * sizeof *lk), *in = bench_xmalloc(depth * sizeof *in);
    uint32_t *tok = bench_xmalloc(C.prompt_tokens * sizeof *tok);
    uint64_t strm = 1 + MAX_PINS + (uint64_t)cmd->round * C.clients +
                    (uint64_t)w->id;
    fresh_prompt_init(tok);
    for (size_t i = 0; i < depth; i++) {
        fresh_prompt_set(tok, uid_of(strm, i));
        lk[i] = echo_lookup(2 * i + 1, tok, true, cmd->reply_cyc_lookup,
                            (uint32_t)(2 * i));
        in[i] = echo_insert(2 * i + 2, tok, 1000 + i, cmd->reply_cyc_insert,
                            (uint32_t)(2 * i + 1));
    }
    void *ctx = zmq_ctx_new();
    void *sk = raw_open(ctx, g_echo_ep);
    zmq_msg_t m;
    if (raw_send(sk, lk[0].p, lk[0].len, C.timeout_ms) ||
        raw_recv(sk, &m, C.timeout_ms))
        wfail(w, "echo server does not answer");
    else
        zmq_msg_close(&m);
    if (wbarrier(w) == 0) {
        size_t started = 0;
        for (; started < depth; started++)
            if (raw_send(sk, lk[started].p, lk[started].len, C.timeout_ms)) {
                wfail(w, "echo send timed out");
                goto out;
            }
        while (w->res.done < cmd->count) {
            if (raw_recv(sk, &m, C.timeout_ms)) {
                wfail(w, "echo recv timed out");
                goto out;
            }
            size_t len = zmq_msg_size(&m);
            uint32_t tag =
                len >= HDR ? get_le32((unsigned char *)zmq_msg_data(&m) + 4) : ~0u;
            zmq_msg_close(&m);
            size_t k = tag / 2;
            int phase = (int)(tag & 1);
            if (k >= depth ||
                len != (phase ? cmd->reply_cyc_insert : cmd->reply_cyc_lookup)) {
                wfail(w, "echo reply of %zu bytes with tag %u", len, tag);
                goto out;
            }
            if (phase == 0) {
                if (raw_send(sk, in[k].p, in[k].len, C.timeout_ms)) {
                    wfail(w, "echo send timed out");
                    goto out;
                }
                continue;
            }
            w->res.done++;
            if (started < cmd->count) {
                if (raw_send(sk, lk[k].p, lk[k].len, C.timeout_ms)) {
                    wfail(w, "echo send timed out");
                    goto out;
                }
                started++;
            }
        }
        w->res.t1 = bench_now_ns();
    }
out:
    zmq_close(sk);
    zmq_ctx_term(ctx);
    for (size_t i = 0; i < depth; i++) {
        free(lk[i].p);
        free(in[i].p);
    }
    free(lk);
    free(in);
    free(tok);
}

static void worker_main(int id, int cmd_fd, int res_fd)
{
    snprintf(bench_cli.die_prefix, sizeof bench_cli.die_prefix,
             "rpc_bench[worker %d]: ", id);
    wctx w = {.id = id, .cmd_fd = cmd_fd, .res_fd = res_fd};
    for (;;) {
        wcmd cmd;
        if (xread(cmd_fd, &cmd, sizeof cmd))
            _exit(0); /* the main process closed the pipe */
        memset(&w.res, 0, sizeof w.res);
        switch (cmd.kind) {
        case W_LOOKUP_DAEMON: w_lookup_daemon(&w, &cmd); break;
        case W_LOOKUP_ECHO: w_lookup_echo(&w, &cmd); break;
        case W_CYCLE_DAEMON: w_cycle_daemon(&w, &cmd); break;
        case W_CYCLE_ECHO: w_cycle_echo(&w, &cmd); break;
        default: wfail(&w, "unknown command %d", cmd.kind); break;
        }
        xwrite(res_fd, &w.res, sizeof w.res);
    }
}

/* Fork the workers now, before any ZeroMQ context exists in this process. */
static void start_workers(void)
{
    for (size_t i = 0; i < C.clients; i++) {
        int cp[2], rp[2];
        if (pipe2(cp, O_CLOEXEC) || pipe2(rp, O_CLOEXEC))
            bench_die("pipe: %s", strerror(errno));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            bench_die("fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != g_main_pid)
                _exit(1);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            signal(SIGHUP, SIG_DFL);
            if (!__sanitizer_set_death_callback) {
                signal(SIGSEGV, SIG_DFL);
                signal(SIGBUS, SIG_DFL);
                signal(SIGFPE, SIG_DFL);
                signal(SIGABRT, SIG_DFL);
            }
            for (size_t j = 0; j < i; j++) {
                close(g_cmd_fd[j]);
                close(g_res_fd[j]);
            }
            close(cp[1]);
            close(rp[0]);
            worker_main((int)i, cp[0], rp[1]);
            _exit(0);
        }
        close(cp[0]);
        close(rp[1]);
        g_worker[i] = pid;
        g_cmd_fd[i] = cp[1];
        g_res_fd[i] = rp[0];
        g_nworkers = i + 1;
    }
}

typedef struct tput {
    double rate;      /* completed operations per second, all processes  */
    double seconds;   /* last end - first start                           */
    double spread;    /* slowest process's time / fastest's               */
} tput;

static tput run_workers(const wcmd *cmd)
{
    wres r[MAX_CLIENTS];
    for (size_t i = 0; i < C.clients; i++)
        xwrite(g_cmd_fd[i], cmd, sizeof *cmd);
    int bad = -1;
    for (size_t i = 0; i < C.clients; i++) {
        if (xread(g_res_fd[i], &r[i], sizeof r[i]))
            bench_die("worker %zu died while preparing %s", i, wkind_name[cmd->kind]);
        if (r[i].status && bad < 0)
            bad = (int)i;
    }
    if (bad >= 0)
        bench_die("worker %d: %s: %s", bad, wkind_name[cmd->kind], r[bad].err);
    for (size_t i = 0; i < C.clients; i++)
        xwrite(g_cmd_fd[i], "g", 1);
    for (size_t i = 0; i < C.clients; i++) {
        if (xread(g_res_fd[i], &r[i], sizeof r[i]))
            bench_die("worker %zu died during %s", i, wkind_name[cmd->kind]);
        if (r[i].status)
            bench_die("worker %zu: %s: %s", i, wkind_name[cmd->kind], r[i].err);
        if (r[i].done != cmd->count)
            bench_die("worker %zu: %s: %llu of %u done", i, wkind_name[cmd->kind],
                      (unsigned long long)r[i].done, cmd->count);
    }
    uint64_t t0 = UINT64_MAX, t1 = 0, done = 0;
    double fast = INFINITY, slow = 0;
    for (size_t i = 0; i < C.clients; i++) {
        t0 = r[i].t0 < t0 ? r[i].t0 : t0;
        t1 = r[i].t1 > t1 ? r[i].t1 : t1;
        done += r[i].done;
        double d = (double)(r[i].t1 - r[i].t0);
        fast = d < fast ? d : fast;
        slow = d > slow ? d : slow;
    }
    tput t;
    t.seconds = (double)(t1 - t0) / 1e9;
    t.rate = (double)done / t.seconds;
    t.spread = slow / fast;
    return t;
}

/* ---- the main process's phases ------------------------------------------------------- */

typedef struct sizes {
    /* request payload bytes (msgpack) and the daemon's reply bytes */
    size_t lookup_req, lookup_rep_min, lookup_rep_max;
    size_t cl_req, cl_rep_min, cl_rep_max; /* cycle lookup (pin+alloc) */
    size_t ci_req, ci_rep_min, ci_rep_max; /* cycle insert (release)   */
    uint32_t lookup_rep, cl_rep, ci_rep;   /* what the echo returns     */
} sizes;

typedef struct lat {
    double p10, p25, p50, p75, p90, p99, mean, max; /* microseconds */
} lat;

typedef struct results {
    sizes sz;
    /* per placement: [daemon, echo] */
    lat lk[MAX_PINS][2], cy[MAX_PINS][2];
    tput lk_tput[2][MAX_REPS], cy_tput[2][MAX_REPS]; /* [daemon, echo] */
    double lk_rate[2], cy_rate[2]; /* medians over the rounds */
    pc_hello hello;
    size_t n_stats;
    char stat_name[MAX_STATS][64];
    uint64_t stat_val[MAX_STATS];
    double seconds, warm_seconds;
    double daemon_cpu_s; /* user + system, from /proc, just before SIGTERM */
} results;

static results R;

static lat summarize(double *v, size_t n)
{
    lat l;
    qsort(v, n, sizeof *v, bench_cmp_double);
    l.p10 = bench_quantile_sorted(v, n, 0.10) / 1e3;
    l.p25 = bench_quantile_sorted(v, n, 0.25) / 1e3;
    l.p50 = bench_quantile_sorted(v, n, 0.50) / 1e3;
    l.p75 = bench_quantile_sorted(v, n, 0.75) / 1e3;
    l.p90 = bench_quantile_sorted(v, n, 0.90) / 1e3;
    l.p99 = bench_quantile_sorted(v, n, 0.99) / 1e3;
    l.max = n ? v[n - 1] / 1e3 : NAN;
    l.mean = bench_mean(v, n) / 1e3;
    return l;
}

static pc_client *g_client; /* the main process's client */
static void *g_zctx, *g_dsock, *g_esock; /* raw: daemon (probes), echo */
static uint32_t *g_prompts; /* warm prompts, prompts x prompt_tokens */
static uint32_t *g_canon;   /* their canonical ids, prompts x pages  */

/* The private directory of the sockets, and the endpoints' names (before
 * the workers are forked: they inherit them). */
static void make_dir(void)
{
    char tmpl[] = "/tmp/rpc_bench.XXXXXX";
    if (!mkdtemp(tmpl))
        bench_die("mkdtemp: %s", strerror(errno));
    snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    if (C.tcp_port)
        snprintf(g_daemon_ep, sizeof g_daemon_ep, "tcp://127.0.0.1:%u", C.tcp_port);
    else
        snprintf(g_daemon_ep, sizeof g_daemon_ep, "ipc://%s/daemon.sock", g_dir);
    snprintf(g_echo_ep, sizeof g_echo_ep, "ipc://%s/echo.sock", g_dir);
    if (!strcmp(C.backend, "host"))
        snprintf(g_shm_name, sizeof g_shm_name, "/rpc_bench-%ld",
                 (long)getpid());
}

static void start_servers(void)
{

    char *eargv[] = {(char *)C.echo_path, g_echo_ep, NULL};
    g_echo = spawn(eargv);

    static char a[16][200];
    char *dargv[16 + MAX_DARGS + 2];
    int n = 0, k = 0;
    dargv[n++] = (char *)C.daemon_path;
    bool host = !strcmp(C.backend, "host");
    snprintf(a[k++], 200, "--endpoint=%s", g_daemon_ep);
    snprintf(a[k++], 200, "--pool_backend=%s", C.backend);
    snprintf(a[k++], 200, "--pool_blocks=%llu", (unsigned long long)C.pool_blocks);
    snprintf(a[k++], 200, "--page_tokens=%u", PT);
    /* none: a real model's shape (Llama-3-8B: 32 x 8 x 128, fp16: 2 MiB a
     * block); host: a toy shape (64 B a block) so that the shm stays small */
    snprintf(a[k++], 200, "--layers=%u", host ? 1 : 32);
    snprintf(a[k++], 200, "--kv_heads=%u", host ? 1 : 8);
    snprintf(a[k++], 200, "--head_dim=%u", host ? 1 : 128);
    snprintf(a[k++], 200, "--dtype=fp16");
    snprintf(a[k++], 200, "--log_level=warn");
    if (host)
        snprintf(a[k++], 200, "--shm_name=%s", g_shm_name);
    if (C.events)
        snprintf(a[k++], 200, "--kv_events_endpoint=ipc://%s/events.sock", g_dir);
    if (C.curve_dir) {
        snprintf(a[k++], 200, "--curve_key_file=%s/server.key", C.curve_dir);
        snprintf(a[k++], 200, "--allow_list_file=%s/allow", C.curve_dir);
    }
    for (int i = 0; i < k; i++)
        dargv[n++] = a[i];
    for (size_t i = 0; i < C.n_dargs; i++)
        dargv[n++] = (char *)C.dargs[i];
    dargv[n] = NULL;
    g_daemon = spawn(dargv);
}

/* --events: one subscriber in a thread of this process, so that the
 * daemon's PUB really sends (with none it drops at once); it counts what
 * it gets.  Its own context: the bench's sockets stay single-threaded. */
static struct {
    pthread_t thr;
    atomic_bool stop;
    uint64_t batches, bytes;
    bool up;
} g_ev;

static void *events_main(void *arg)
{
    (void)arg;
    void *ctx = zmq_ctx_new(), *sub = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    char ep[200];
    snprintf(ep, sizeof ep, "ipc://%s/events.sock", g_dir);
    if (!sub || zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0) || zmq_connect(sub, ep))
        bench_die("events subscriber: %s", zmq_strerror(zmq_errno()));
    while (!atomic_load(&g_ev.stop)) {
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        zmq_msg_t m;
        int more = 1;
        while (more) {
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sub, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            g_ev.bytes += zmq_msg_size(&m);
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        g_ev.batches++;
    }
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return NULL;
}

/* Wait until both servers answer. */
static void wait_servers(void)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)C.timeout_ms * 3 * 1000000;
    /* echo: one message, queued until the connection is up */
    g_zctx = zmq_ctx_new();
    if (!g_zctx)
        bench_die("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    g_esock = raw_open(g_zctx, g_echo_ep);
    g_dsock = raw_open(g_zctx, g_daemon_ep);
    unsigned char hello[HDR];
    put_le32(hello, HDR);
    put_le32(hello + 4, 0xfeedu);
    bool sent = false;
    for (;;) {
        check_alive(g_echo, "echo_server");
        if (!sent)
            sent = raw_send(g_esock, hello, HDR, 50) == 0;
        zmq_msg_t m;
        if (sent && raw_recv(g_esock, &m, 50) == 0) {
            bool ok = zmq_msg_size(&m) == HDR &&
                      get_le32((unsigned char *)zmq_msg_data(&m) + 4) == 0xfeedu;
            zmq_msg_close(&m);
            if (!ok)
                bench_die("echo_server: unexpected reply");
            break;
        }
        if (bench_now_ns() > deadline)
            bench_die("echo_server did not answer within %d ms", C.timeout_ms * 3);
    }
    int rc = bench_connect(g_daemon_ep, 100, &g_client);
    if (rc)
        bench_die("pc_client_connect(%s): %s", g_daemon_ep, pc_strerror(rc));
    for (;;) {
        check_alive(g_daemon, "prefixcached");
        if ((rc = pc_client_ping(g_client)) == 0)
            break;
        if (rc != PC_E_TIMEOUT)
            bench_die("ping: %s (%s)", pc_strerror(rc), pc_client_last_error(g_client));
        if (bench_now_ns() > deadline)
            bench_die("prefixcached did not answer within %d ms", C.timeout_ms * 3);
    }
    pc_client_set_timeout(g_client, C.timeout_ms);
    if ((rc = pc_client_hello(g_client, &R.hello)))
        bench_die("hello: %s (%s)", pc_strerror(rc), pc_client_last_error(g_client));
    if (R.hello.page_tokens != PT || R.hello.capacity < C.pool_blocks ||
        strcmp(R.hello.backend, C.backend))
        bench_die("hello: page_tokens %u, capacity %llu, backend %s; asked for %u, "
                  "%llu, %s", R.hello.page_tokens,
                  (unsigned long long)R.hello.capacity, R.hello.backend, PT,
                  (unsigned long long)C.pool_blocks, C.backend);
}

/* Insert the warm prompts through the client (lookup pin+alloc, insert
 * release), record their canonical ids, then check every one is cached. */
static void warm_up(void)
{
    uint64_t t0 = bench_now_ns();
    g_prompts = bench_xmalloc(C.prompts * C.prompt_tokens * sizeof *g_prompts);
    g_canon = bench_xmalloc(C.prompts * C.pages * sizeof *g_canon);
    uint32_t *ids = bench_xmalloc(C.pages * sizeof *ids);
    for (size_t i = 0; i < C.prompts; i++) {
        uint32_t *p = g_prompts + i * C.prompt_tokens;
        warm_prompt(i, p);
        pc_client_lookup_result l;
        int rc = pc_client_lookup(g_client, NS, NS_LEN, p, C.prompt_tokens,
                                  PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &l);
        if (rc || l.alloc_status)
            bench_die("warm-up lookup %zu: %s / alloc %s (%s)", i, pc_strerror(rc),
                      pc_strerror(l.alloc_status), pc_client_last_error(g_client));
        size_t want = i ? C.sys_pages : 0;
        if (l.pages != want || l.n_alloc != C.pages - want)
            bench_die("warm-up lookup %zu: %zu pages hit, %zu allocated; expected "
                      "%zu + %zu", i, l.pages, l.n_alloc, want, C.pages - want);
        copy_ids(ids, l.blocks, l.pages);
        copy_ids(ids + l.pages, l.alloc_blocks, l.n_alloc);
        pc_client_insert_result ir;
        uint32_t *canon = g_canon + i * C.pages;
        rc = pc_client_insert(g_client, NS, NS_LEN, p, C.prompt_tokens, ids,
                              l.lease, PC_CLIENT_RELEASE, canon, &ir);
        if (rc)
            bench_die("warm-up insert %zu: %s (%s)", i, pc_strerror(rc),
                      pc_client_last_error(g_client));
        if (ir.cached_tokens != want * PT || ir.inserted_pages != C.pages - want ||
            ir.freed_blocks || memcmp(canon, ids, C.pages * sizeof *ids))
            bench_die("warm-up insert %zu: %zu cached tokens, %zu inserted, %zu "
                      "freed, or canonical ids that differ from the ones given",
                      i, ir.cached_tokens, ir.inserted_pages, ir.freed_blocks);
    }
    for (size_t i = 0; i < C.prompts; i++) {
        pc_client_lookup_result l;
        int rc = pc_client_lookup(g_client, NS, NS_LEN,
                                  g_prompts + i * C.prompt_tokens,
                                  C.prompt_tokens, 0, 0, &l);
        if (rc || l.tokens != C.prompt_tokens || l.pages != C.pages ||
            l.lease || memcmp(l.blocks, g_canon + i * C.pages, C.pages * 4))
            bench_die("warm prompt %zu is not cached as inserted (%s: %zu tokens)",
                      i, pc_strerror(rc), l.tokens);
    }
    free(ids);
    R.warm_seconds = (double)(bench_now_ns() - t0) / 1e9;
}

/* A raw request (op) to the daemon: its reply's size; the reply's rows
 * decoded into rep (they borrow from m and dec). */
static size_t raw_daemon(const msgpack_sbuffer *sb, pc_decoder *dec,
                         zmq_msg_t *m, int op, void *rep, int timeout_ms)
{
    if (raw_send(g_dsock, sb->data, sb->size, timeout_ms) ||
        raw_recv(g_dsock, m, timeout_ms))
        bench_die("raw request to the daemon timed out");
    size_t len = zmq_msg_size(m);
    pc_reply_head h;
    int rc = pc_wire_decode_reply(dec, zmq_msg_data(m), len, op, &h, rep);
    if (rc || h.status != 0)
        bench_die("raw request: bad reply (decode %d: %s, status %lld)", rc,
                  dec->err, (long long)h.status);
    return len;
}

static void minmax(size_t v, size_t *lo, size_t *hi)
{
    *lo = *lo && *lo < v ? *lo : v;
    *hi = *hi > v ? *hi : v;
}

/* Measure the daemon's reply sizes with raw requests (ids in the range the
 * timed phases use, so the varints have the same width). */
static void probe_sizes(void)
{
    sizes *z = &R.sz;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pc_decoder dec;
    pc_decoder_init(&dec);
    zmq_msg_t m;
    pc_lookup_rep lr;
    pc_insert_rep ir;
    size_t np = C.prompts < N_PROBE ? C.prompts : N_PROBE;
    for (size_t i = 0; i < np; i++) {
        msgpack_sbuffer_clear(&sb);
        pack_lookup(&pk, 1000 + i, g_prompts + i * C.prompt_tokens,
                    C.prompt_tokens, false, false, 0);
        z->lookup_req = sb.size;
        minmax(raw_daemon(&sb, &dec, &m, PC_OP_LOOKUP, &lr, C.timeout_ms),
               &z->lookup_rep_min, &z->lookup_rep_max);
        zmq_msg_close(&m);
    }
    uint32_t *tok = bench_xmalloc(C.prompt_tokens * sizeof *tok);
    fresh_prompt_init(tok);
    for (size_t i = 0; i < N_PROBE; i++) {
        fresh_prompt_set(tok, uid_of(0, i));
        msgpack_sbuffer_clear(&sb);
        pack_lookup(&pk, 1000 + 2 * i, tok, C.prompt_tokens, true, true, 0);
        z->cl_req = sb.size;
        minmax(raw_daemon(&sb, &dec, &m, PC_OP_LOOKUP, &lr, C.timeout_ms),
               &z->cl_rep_min, &z->cl_rep_max);
        uint64_t lease = lr.lease;
        size_t n_blk = lr.blocks.n, n_alloc = lr.alloc_blocks.n;
        if (n_blk != C.sys_pages || n_alloc != C.tail_pages)
            bench_die("probe: lookup(pin+alloc) gave %zu + %zu pages", n_blk, n_alloc);
        uint32_t *all = bench_xmalloc(C.pages * sizeof *all);
        copy_ids(all, lr.blocks.p, n_blk);
        copy_ids(all + n_blk, lr.alloc_blocks.p, n_alloc);
        zmq_msg_close(&m);
        msgpack_sbuffer_clear(&sb);
        pack_insert(&pk, 1001 + 2 * i, tok, C.prompt_tokens, all, lease, true);
        z->ci_req = sb.size;
        minmax(raw_daemon(&sb, &dec, &m, PC_OP_INSERT, &ir, C.timeout_ms),
               &z->ci_rep_min, &z->ci_rep_max);
        if (ir.inserted_pages != C.tail_pages)
            bench_die("probe: insert adopted %llu pages",
                      (unsigned long long)ir.inserted_pages);
        zmq_msg_close(&m);
        free(all);
    }
    /* The echo returns the largest size seen (a few bytes at most apart:
     * varint widths of the id and the lease). */
    z->lookup_rep = (uint32_t)z->lookup_rep_max;
    z->cl_rep = (uint32_t)z->cl_rep_max;
    z->ci_rep = (uint32_t)z->ci_rep_max;
    free(tok);
    pc_decoder_free(&dec);
    msgpack_sbuffer_destroy(&sb);
}

/* One echo round trip on the main process's socket: 0 or die. */
static inline void echo_rt(const buf *b, uint32_t want)
{
    zmq_msg_t m;
    if (raw_send(g_esock, b->p, b->len, C.timeout_ms) ||
        raw_recv(g_esock, &m, C.timeout_ms))
        bench_die("echo round trip timed out");
    size_t len = zmq_msg_size(&m);
    zmq_msg_close(&m);
    if (len != want)
        bench_die("echo reply of %zu bytes, expected %u", len, want);
}

static void lookup_latency(size_t pl)
{
    size_t N = C.lookups;
    size_t *q = bench_xmalloc(N * sizeof *q);
    uint64_t s = stream(S_QUERY, 0);
    for (size_t i = 0; i < N; i++)
        q[i] = bench_rng_next(&s) % C.prompts;
    buf *req = bench_xmalloc(C.prompts * sizeof *req);
    for (size_t i = 0; i < C.prompts; i++)
        req[i] = echo_lookup(1000 + i, g_prompts + i * C.prompt_tokens, false,
                             R.sz.lookup_rep, (uint32_t)i);
    double *dl = bench_xmalloc(N * sizeof *dl), *el = bench_xmalloc(N * sizeof *el);
    for (size_t b = 0; b * LAT_BLOCK < N; b++) {
        size_t lo = b * LAT_BLOCK, hi = lo + LAT_BLOCK < N ? lo + LAT_BLOCK : N;
        for (int side = 0; side < 2; side++) {
            bool daemon = (side == 0) == (b % 2 == 0);
            if (!C.side[daemon ? 0 : 1])
                continue;
            for (size_t i = lo; i < hi; i++) {
                const uint32_t *p = g_prompts + q[i] * C.prompt_tokens;
                if (daemon) {
                    pc_client_lookup_result l;
                    uint64_t t0 = bench_now_ns();
                    int rc = pc_client_lookup(g_client, NS, NS_LEN, p,
                                              C.prompt_tokens, 0, 0, &l);
                    uint64_t t1 = bench_now_ns();
                    if (rc || l.pages != C.pages || l.lease ||
                        memcmp(l.blocks, g_canon + q[i] * C.pages, C.pages * 4))
                        bench_die("lookup %zu (prompt %zu): %s, %zu pages, or wrong "
                                  "ids", i, q[i], pc_strerror(rc), l.pages);
                    dl[i] = (double)(t1 - t0);
                } else {
                    uint64_t t0 = bench_now_ns();
                    echo_rt(&req[q[i]], R.sz.lookup_rep);
                    el[i] = (double)(bench_now_ns() - t0);
                }
            }
        }
    }
    R.lk[pl][0] = summarize(dl, C.side[0] ? N : 0);
    R.lk[pl][1] = summarize(el, C.side[1] ? N : 0);
    for (size_t i = 0; i < C.prompts; i++)
        free(req[i].p);
    free(req);
    free(q);
    free(dl);
    free(el);
}

static void cycle_latency(size_t pl)
{
    size_t N = C.cycles;
    uint32_t *tok = bench_xmalloc(C.prompt_tokens * sizeof *tok);
    uint32_t *ids = bench_xmalloc(C.pages * sizeof *ids);
    uint32_t *canon = bench_xmalloc(C.pages * sizeof *canon);
    fresh_prompt_init(tok);
    fresh_prompt_set(tok, uid_of(0, UINT32_MAX)); /* used by no cycle */
    buf lk = echo_lookup(1000, tok, true, R.sz.cl_rep, 0);
    buf in = echo_insert(1001, tok, 1000, R.sz.ci_rep, 1);
    double *dl = bench_xmalloc(N * sizeof *dl), *el = bench_xmalloc(N * sizeof *el);
    for (size_t b = 0; b * LAT_BLOCK < N; b++) {
        size_t lo = b * LAT_BLOCK, hi = lo + LAT_BLOCK < N ? lo + LAT_BLOCK : N;
        for (int side = 0; side < 2; side++) {
            bool daemon = (side == 0) == (b % 2 == 0);
            if (!C.side[daemon ? 0 : 1])
                continue;
            for (size_t i = lo; i < hi; i++) {
                if (!daemon) {
                    uint64_t t0 = bench_now_ns();
                    echo_rt(&lk, R.sz.cl_rep);
                    echo_rt(&in, R.sz.ci_rep);
                    el[i] = (double)(bench_now_ns() - t0);
                    continue;
                }
                fresh_prompt_set(tok, uid_of(1 + pl, i));
                pc_client_lookup_result l;
                pc_client_insert_result ir;
                uint64_t t0 = bench_now_ns();
                int rc = pc_client_lookup(g_client, NS, NS_LEN, tok,
                                          C.prompt_tokens,
                                          PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &l);
                if (rc || l.alloc_status || l.pages != C.sys_pages ||
                    l.n_alloc != C.tail_pages)
                    bench_die("cycle %zu lookup: %s, alloc %s, %zu + %zu pages", i,
                              pc_strerror(rc), pc_strerror(l.alloc_status), l.pages,
                              l.n_alloc);
                copy_ids(ids, l.blocks, l.pages);
                copy_ids(ids + l.pages, l.alloc_blocks, l.n_alloc);
                rc = pc_client_insert(g_client, NS, NS_LEN, tok,
                                      C.prompt_tokens, ids, l.lease,
                                      PC_CLIENT_RELEASE, canon, &ir);
                uint64_t t1 = bench_now_ns();
                if (rc || ir.cached_tokens != C.system_tokens ||
                    ir.inserted_pages != C.tail_pages || ir.freed_blocks ||
                    memcmp(canon, ids, C.pages * sizeof *ids))
                    bench_die("cycle %zu insert: %s (%s), %zu cached tokens, %zu "
                              "inserted, %zu freed, or other canonical ids", i,
                              pc_strerror(rc), pc_client_last_error(g_client),
                              ir.cached_tokens, ir.inserted_pages, ir.freed_blocks);
                if (memcmp(ids, g_canon, C.sys_pages * sizeof *ids))
                    bench_die("cycle %zu: the system prompt's ids changed", i);
                dl[i] = (double)(t1 - t0);
            }
        }
    }
    R.cy[pl][0] = summarize(dl, C.side[0] ? N : 0);
    R.cy[pl][1] = summarize(el, C.side[1] ? N : 0);
    free(lk.p);
    free(in.p);
    free(tok);
    free(ids);
    free(canon);
    free(dl);
    free(el);
}

static void throughput(bool cycles)
{
    tput(*out)[MAX_REPS] = cycles ? R.cy_tput : R.lk_tput;
    for (size_t r = 0; r < C.reps; r++)
        for (int side = 0; side < 2; side++) {
            bool daemon = (side == 0) == (r % 2 == 0);
            if (!C.side[daemon ? 0 : 1]) {
                out[daemon ? 0 : 1][r] = (tput){NAN, NAN, NAN};
                continue;
            }
            wcmd cmd = {
                .kind = cycles ? (daemon ? W_CYCLE_DAEMON : W_CYCLE_ECHO)
                               : (daemon ? W_LOOKUP_DAEMON : W_LOOKUP_ECHO),
                .round = (uint32_t)r,
                .count = (uint32_t)(cycles ? C.tput_cycles : C.tput_lookups),
                .reply_lookup = R.sz.lookup_rep,
                .reply_cyc_lookup = R.sz.cl_rep,
                .reply_cyc_insert = R.sz.ci_rep,
            };
            tput t = run_workers(&cmd);
            out[daemon ? 0 : 1][r] = t;
            bench_say("  round %zu %s: %.0f/s (%.2f s, slowest/fastest process "
                      "%.2f)", r, wkind_name[cmd.kind], t.rate, t.seconds,
                      t.spread);
            check_alive(g_daemon, "prefixcached");
            check_alive(g_echo, "echo_server");
        }
    for (int k = 0; k < 2; k++) {
        double v[MAX_REPS];
        for (size_t r = 0; r < C.reps; r++)
            v[r] = out[k][r].rate;
        (cycles ? R.cy_rate : R.lk_rate)[k] = median_of(v, C.reps);
    }
}

/* A process's user + system CPU seconds (/proc/PID/stat, clock ticks):
 * what the daemon spent, which a loaded machine inflates far less than
 * wall-clock figures.  NAN when unreadable.  (rpc_bench_observers.c uses
 * it for its consumers.) */
double proc_cpu_s(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    const char *p = strrchr(line, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &st) != 2)
        return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void stat_keep(void *ctx, const char *name, uint64_t v)
{
    (void)ctx;
    if (R.n_stats < MAX_STATS) {
        snprintf(R.stat_name[R.n_stats], sizeof R.stat_name[0], "%s", name);
        R.stat_val[R.n_stats++] = v;
    }
}

/* The daemon's counters, and its consistency check (stats check: true),
 * which must pass. */
static void final_stats(void)
{
    pc_client *c;
    int64_t check = INT64_MIN;
    int rc = bench_connect(g_daemon_ep, C.timeout_ms * 6, &c);
    if (rc == 0) {
        rc = pc_client_stats_check(c, stat_keep, NULL, &check);
        pc_client_close(c);
    }
    if (rc)
        bench_die("stats check: %s", pc_strerror(rc));
    if (check != 0)
        bench_die("the daemon's consistency check (stats check: true) says %lld",
                  (long long)check);
}

static uint64_t stat_of(const char *name)
{
    for (size_t i = 0; i < R.n_stats; i++)
        if (!strcmp(R.stat_name[i], name))
            return R.stat_val[i];
    return UINT64_MAX;
}

/* ---- report ---------------------------------------------------------------------------- */

/* The report's layout (bench/common/report.h). */
static const rpt_style STYLE = {
    .label_w = 56, .ratio_w = 8, .target_w = 10, .small_digits = 2,
    .label_cap = 96, .note_cap = 128, .note_head = "baseline; ratio",
    .nan_ratio_info = true, /* a side was left out (--side) */
};

static void json_lat(FILE *f, const char *name, const lat *l)
{
    fprintf(f, "    \"%s\": {\"p10\": ", name);
    rpt_json_num(f, l->p10);
    fputs(", \"p25\": ", f);
    rpt_json_num(f, l->p25);
    fputs(", \"p50\": ", f);
    rpt_json_num(f, l->p50);
    fputs(", \"p75\": ", f);
    rpt_json_num(f, l->p75);
    fputs(", \"p90\": ", f);
    rpt_json_num(f, l->p90);
    fputs(", \"p99\": ", f);
    rpt_json_num(f, l->p99);
    fputs(", \"mean\": ", f);
    rpt_json_num(f, l->mean);
    fputs(", \"max\": ", f);
    rpt_json_num(f, l->max);
    fputc('}', f);
}

static void json_tput(FILE *f, const char *name, const tput *t)
{
    fprintf(f, "    \"%s\": [", name);
    for (size_t r = 0; r < C.reps; r++) {
        fprintf(f, "%s{\"rate\": ", r ? ", " : "");
        rpt_json_num(f, t[r].rate);
        fputs(", \"seconds\": ", f);
        rpt_json_num(f, t[r].seconds);
        fputs(", \"slowest_over_fastest\": ", f);
        rpt_json_num(f, t[r].spread);
        fputc('}', f);
    }
    fputc(']', f);
}

static void print_json(FILE *f, const rpt_row *rows, size_t nrows)
{
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    const sizes *z = &R.sz;
    fprintf(f, "{\n  \"bench\": \"rpc_bench\",\n  \"schema\": 1,\n");
    fprintf(f, "  \"preset\": \"%s\",\n  \"seed\": %llu,\n", C.preset,
            (unsigned long long)C.seed);
    fprintf(f, "  \"machine\": {\"nproc\": %ld, \"allowed_cpus\": %d, "
               "\"cpu\": ", sysconf(_SC_NPROCESSORS_ONLN), CPU_COUNT(&g_allowed));
    rpt_json_str(f, cpu);
    fprintf(f, ", \"note\": \"the %zu client processes, the server (daemon "
               "or echo) and each one's ZeroMQ I/O thread share these cores\"},\n",
            C.clients);
    fprintf(f,
            "  \"config\": {\"transport\": \"%s\", \"page_tokens\": %u, "
            "\"prompt_tokens\": %zu, \"system_tokens\": %zu, \"prompts\": %zu, "
            "\"lookups\": %zu, \"cycles\": %zu, \"clients\": %zu, "
            "\"depth\": %zu, \"tput_lookups_per_client\": %zu, "
            "\"tput_cycles_per_client\": %zu, \"reps\": %zu, "
            "\"latency_block\": %d, \"backend\": ",
            g_use_curve ? "tcp+curve" : C.tcp_port ? "tcp" : "ipc", PT, C.prompt_tokens, C.system_tokens, C.prompts, C.lookups,
            C.cycles, C.clients, C.depth, C.tput_lookups, C.tput_cycles,
            C.reps, LAT_BLOCK);
    rpt_json_str(f, C.backend);
    fputs(", \"latency_placements\": [", f);
    for (size_t p = 0; p < C.n_pins; p++) {
        fputs(p ? ", " : "", f);
        rpt_json_str(f, C.pins[p]);
    }
    fprintf(f, "], \"pool_blocks\": %llu, \"pool_holds_the_run\": %s, "
               "\"daemon\": ", (unsigned long long)C.pool_blocks,
            C.pool_fits ? "true" : "false");
    rpt_json_str(f, C.daemon_path);
    fprintf(f, ", \"layers\": %u, \"kv_heads\": %u, \"head_dim\": %u, "
               "\"dtype\": ", R.hello.layers, R.hello.kv_heads,
            R.hello.head_dim);
    rpt_json_str(f, R.hello.dtype);
    fprintf(f, ", \"block_bytes\": %llu},\n",
            (unsigned long long)R.hello.block_bytes);
    fprintf(f,
            "  \"bytes\": {\"lookup_request\": %zu, \"lookup_reply\": [%zu, %zu], "
            "\"cycle_lookup_request\": %zu, \"cycle_lookup_reply\": [%zu, %zu], "
            "\"cycle_insert_request\": %zu, \"cycle_insert_reply\": [%zu, %zu], "
            "\"echo_header\": %d},\n",
            z->lookup_req, z->lookup_rep_min, z->lookup_rep_max, z->cl_req,
            z->cl_rep_min, z->cl_rep_max, z->ci_req, z->ci_rep_min,
            z->ci_rep_max, HDR);
    fprintf(f, "  \"seconds\": ");
    rpt_json_num(f, R.seconds);
    fprintf(f, ",\n  \"warmup_seconds\": ");
    rpt_json_num(f, R.warm_seconds);
    fprintf(f, ",\n  \"daemon_cpu_seconds\": ");
    rpt_json_num(f, R.daemon_cpu_s);
    fprintf(f, ",\n  \"metrics\": [\n");
    rpt_json_metrics(f, &STYLE, rows, nrows);
    fprintf(f, "  ],\n  \"latency_us\": {");
    bool first = true;
    for (size_t p = 0; p < C.n_pins; p++)
        for (int k = 0; k < 4; k++) {
            bool cy = k >= 2;
            if (!(cy ? C.ph_cycle : C.ph_lookup))
                continue;
            char nm[64];
            snprintf(nm, sizeof nm, "%s_%s_%s", cy ? "cycle" : "lookup",
                     k % 2 ? "echo" : "daemon", C.pins[p]);
            fputs(first ? "\n" : ",\n", f);
            first = false;
            json_lat(f, nm, cy ? &R.cy[p][k % 2] : &R.lk[p][k % 2]);
        }
    fprintf(f, "\n  },\n  \"throughput_rounds\": {");
    first = true;
    for (int k = 0; k < 4; k++) {
        bool cy = k >= 2;
        if (!(cy ? C.ph_cycle_tput : C.ph_lookup_tput))
            continue;
        char nm[64];
        snprintf(nm, sizeof nm, "%s_%s", cy ? "cycle" : "lookup",
                 k % 2 ? "echo" : "daemon");
        fputs(first ? "\n" : ",\n", f);
        first = false;
        json_tput(f, nm, cy ? R.cy_tput[k % 2] : R.lk_tput[k % 2]);
    }
    fprintf(f, "\n");
    fprintf(f, "  },\n  \"daemon_stats\": {");
    for (size_t i = 0; i < R.n_stats; i++) {
        fprintf(f, "%s\n    ", i ? "," : "");
        rpt_json_str(f, R.stat_name[i]);
        fprintf(f, ": %llu", (unsigned long long)R.stat_val[i]);
    }
    fprintf(f, "\n  }\n}\n");
}

/* Strings for the rows' keys and labels (they must outlive fill_rows). */
static char g_txt[64][80];
static size_t g_ntxt;

static const char *txt(const char *fmt, ...)
{
    if (g_ntxt == sizeof g_txt / sizeof g_txt[0])
        bench_die("too many rows");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_txt[g_ntxt], sizeof g_txt[0], fmt, ap);
    va_end(ap);
    return g_txt[g_ntxt++];
}

/* p50 (target on the first placement), p99, and the added microseconds. */
static size_t lat_rows(rpt_row *rows, size_t n, const char *what,
                       const char *key, lat (*l)[2], const char *base)
{
    for (size_t p = 0; p < C.n_pins; p++) {
        const char *pn = C.pins[p], *pd = pin_desc(pn);
        const lat *d = &l[p][0], *e = &l[p][1];
        rows[n++] = (rpt_row){txt("%s_p50_us_%s", key, pn),
                              txt("%s, 1 client, %s, p50", what, pd), "us",
                              d->p50, base, e->p50, "daemon/echo",
                              d->p50 / e->p50, p == 0 ? RPT_RATIO_LE : RPT_NONE,
                              1.3};
        rows[n++] = (rpt_row){txt("%s_p99_us_%s", key, pn),
                              txt("%s, 1 client, %s, p99", what, pd), "us",
                              d->p99, base, e->p99, "daemon/echo",
                              d->p99 / e->p99, RPT_NONE, 0};
        rows[n++] = (rpt_row){txt("%s_added_us_%s", key, pn),
                              txt("%s, 1 client, %s, p50 - echo p50", what, pd),
                              "us", d->p50 - e->p50, NULL, NAN, NULL, NAN,
                              RPT_NONE, 0};
    }
    return n;
}

static size_t fill_rows(rpt_row *rows)
{
    size_t n = 0;
    if (C.ph_lookup)
        n = lat_rows(rows, n, "lookup 4096 tok", "lookup", R.lk, "echo");
    if (C.ph_lookup_tput)
        rows[n++] = (rpt_row){"lookup_tput",
                              txt("lookup, %zu procs x %zu pipelined",
                                  C.clients, C.depth),
                              "req/s", R.lk_rate[0], "echo", R.lk_rate[1],
                              "daemon/echo", R.lk_rate[0] / R.lk_rate[1],
                              RPT_RATIO_GE, 0.7};
    if (C.ph_cycle)
        n = lat_rows(rows, n, "cycle (2 RTs)", "cycle", R.cy, "2 echo RTs");
    if (C.ph_cycle_tput)
        rows[n++] = (rpt_row){"cycle_tput",
                              txt("cycle, %zu procs x %zu pipelined",
                                  C.clients, C.depth),
                              "cycles/s", R.cy_rate[0], "2 echo RTs",
                              R.cy_rate[1], "daemon/echo",
                              R.cy_rate[0] / R.cy_rate[1], RPT_RATIO_GE, 0.7};
    return n;
}

/* ---- options ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: rpc_bench [--quick] [--seed N] [--json PATH] [--daemon PATH]\n"
        "                 [--echo PATH] [--backend none|host] [--reps N]\n"
        "                 [--lookups N] [--cycles N] [--clients N] [--depth N]\n"
        "                 [--tput-lookups N] [--tput-cycles N] [--prompts N]\n"
        "                 [--daemon-arg ARG]... [--observers LIST [--rounds N]]\n"
        "  (default)         1000 warm prompts, 20000 lookups and 5000 cycles\n"
        "                    (1 client, per side and placement), 8 clients x 16\n"
        "                    in flight, 4000 lookups and 800 cycles per client\n"
        "                    and round, 5 rounds per side\n"
        "  --quick           64 prompts, 2000 lookups, 500 cycles, 400 lookups\n"
        "                    and 64 cycles per client, 1 round (< 5 s)\n"
        "  --seed N          token and query seed (default 1)\n"
        "  --json PATH       also write the JSON report to PATH\n"
        "  --reps N          throughput rounds per side, 1..15\n"
        "  --lookups N, --cycles N          1-client latency samples per side\n"
        "  --clients N, --depth N           throughput processes, requests in\n"
        "                                   flight per process (default 8, 16)\n"
        "  --tput-lookups N, --tput-cycles N  per process and round\n"
        "  --prompts N       warm prompts (default 1000)\n"
        "  --daemon PATH     prefixcached to run (default: the build tree's)\n"
        "  --echo PATH       echo_server to run (default: the build tree's)\n"
        "  --backend B       the daemon's pool backend: none (default) or host\n"
        "  --pool-blocks N   pool size (default: every page the run inserts,\n"
        "                    so nothing is evicted); smaller: the cycles run\n"
        "                    under eviction, as in a full cache\n"
        "  --daemon-arg ARG  one more argument for the daemon (repeatable)\n"
        "  --events          KV events on (kv_events_endpoint in the private\n"
        "                    directory) with one subscriber draining them\n"
        "  --pin LIST        placements of the 1-client latency phases, run in\n"
        "                    turn (the first carries the targets): same = the\n"
        "                    client and both servers on CPU 0, split = client on\n"
        "                    CPU 0 and servers on CPU 1, none = unpinned\n"
        "                    (default: same,split)\n"
        "  --phases LIST     run only these (for profiling): lookup, lookup-tput,\n"
        "                    cycle, cycle-tput (default: all four)\n"
        "  --side S          daemon, echo or both (default): for profiling one\n"
        "                    server; the ratios need both\n"
        "  --timeout-ms N    per call, and x3 for start-up (default 10000)\n"
        "  --observers LIST  the cost of observability instead: cycle p50 and\n"
        "                    8-client cycle throughput with each observer on\n"
        "                    (metrics: --metrics-listen and a scraper reading\n"
        "                    /metrics every second) against off, each a whole\n"
        "                    run of its own (rpc_bench_observers.c)\n"
        "  --rounds N        with --observers or --curve-cost: runs per\n"
        "                    setting, alternating (default 3; medians)\n"
        "  --tcp PORT        the daemon on tcp://127.0.0.1:PORT instead of ipc\n"
        "  --curve-dir DIR   with --tcp: CURVE, keys from DIR (server.key,\n"
        "                    client.key, allow: what --curve-cost writes)\n"
        "  --curve-cost      the cost of CURVE instead: lookup p50 and 8-client\n"
        "                    lookup throughput on tcp to 127.0.0.1, CURVE on\n"
        "                    against off, whole runs of their own, alternating\n"
        "                    (rpc_bench_observers.c)\n");
}

static void parse_args(int argc, char **argv)
{
    int quick = 0;
    long long v[8];
    enum { O_LOOKUPS, O_CYCLES, O_CLIENTS, O_DEPTH, O_TL, O_TC, O_REPS, O_PROMPTS };
    static const char *const oname[8] = {"--lookups", "--cycles", "--clients",
                                         "--depth", "--tput-lookups",
                                         "--tput-cycles", "--reps", "--prompts"};
    for (int k = 0; k < 8; k++)
        v[k] = -1;
    C.seed = 1;
    C.daemon_path = PC_DAEMON_PATH;
    C.echo_path = PC_ECHO_PATH;
    C.backend = "none";
    C.timeout_ms = 10000;
    const char *pins = NULL, *phases = "lookup,lookup-tput,cycle,cycle-tput";
    uint64_t pool_opt = 0;
    C.side[0] = C.side[1] = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hit = 0;
        for (int k = 0; k < 8 && !hit; k++)
            if (!strcmp(a, oname[k]) && i + 1 < argc) {
                v[k] = (long long)bench_arg_u64(argv[++i], oname[k], 0,
                                                INT64_MAX);
                hit = 1;
            }
        if (hit)
            continue;
        if (!strcmp(a, "--quick"))
            quick = 1;
        else if (!strcmp(a, "--events"))
            C.events = true;
        else if (!strcmp(a, "--seed") && i + 1 < argc)
            C.seed = bench_arg_u64(argv[++i], "--seed", 0, UINT64_MAX);
        else if (!strcmp(a, "--json") && i + 1 < argc)
            C.json_path = argv[++i];
        else if (!strcmp(a, "--daemon") && i + 1 < argc)
            C.daemon_path = argv[++i];
        else if (!strcmp(a, "--echo") && i + 1 < argc)
            C.echo_path = argv[++i];
        else if (!strcmp(a, "--pin") && i + 1 < argc)
            pins = argv[++i];
        else if (!strcmp(a, "--phases") && i + 1 < argc)
            phases = argv[++i];
        else if (!strcmp(a, "--pool-blocks") && i + 1 < argc)
            pool_opt = bench_arg_u64(argv[++i], "--pool-blocks", 0, UINT64_MAX);
        else if (!strcmp(a, "--side") && i + 1 < argc) {
            const char *v = argv[++i];
            C.side[0] = !strcmp(v, "daemon") || !strcmp(v, "both");
            C.side[1] = !strcmp(v, "echo") || !strcmp(v, "both");
            if (!C.side[0] && !C.side[1])
                bench_die("--side: daemon, echo or both");
        }
        else if (!strcmp(a, "--backend") && i + 1 < argc)
            C.backend = argv[++i];
        else if (!strcmp(a, "--timeout-ms") && i + 1 < argc)
            C.timeout_ms = (int)bench_arg_u64(argv[++i], "--timeout-ms", 0,
                                                INT_MAX);
        else if (!strcmp(a, "--tcp") && i + 1 < argc)
            C.tcp_port = (unsigned)bench_arg_u64(argv[++i], "--tcp", 1, 65535);
        else if (!strcmp(a, "--curve-dir") && i + 1 < argc)
            C.curve_dir = argv[++i];
        else if (!strcmp(a, "--daemon-arg") && i + 1 < argc) {
            if (C.n_dargs == MAX_DARGS)
                bench_die("at most %d --daemon-arg", MAX_DARGS);
            C.dargs[C.n_dargs++] = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_help();
        } else {
            bench_usage_die("unknown or incomplete argument '%s'", a);
        }
    }
    if (strcmp(C.backend, "none") && strcmp(C.backend, "host"))
        bench_die("--backend: none or host");
    if (C.curve_dir) { /* read here: the workers, forked later, inherit it */
        char path[512], err[512];
        if (!C.tcp_port)
            bench_die("--curve-dir needs --tcp (CURVE is for tcp endpoints)");
        snprintf(path, sizeof path, "%s/server.key", C.curve_dir);
        int rc = pc_rpc_keyfile_read(path, g_curve.server_public, NULL, err,
                                     sizeof err);
        snprintf(path, sizeof path, "%s/client.key", C.curve_dir);
        if (rc || (rc = pc_rpc_keyfile_read(path, g_curve.public_key,
                                            g_curve.secret_key, err, sizeof err)))
            bench_die("--curve-dir: %s", err);
        g_use_curve = true;
    }
    /* Latency placements: the first one carries the targets. */
    static char pinbuf[64];
    int ncpu = allowed_cpus();
    snprintf(pinbuf, sizeof pinbuf, "%s",
             pins ? pins : ncpu >= 2 ? "same,split" : "same");
    for (char *save = NULL, *t = strtok_r(pinbuf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "same") && strcmp(t, "split") && strcmp(t, "none"))
            bench_die("--pin: a list of same, split, none; got '%s'", t);
        if (!strcmp(t, "split") && ncpu < 2)
            bench_die("--pin split needs 2 CPUs");
        if (C.n_pins == MAX_PINS)
            bench_die("--pin: at most %d placements", MAX_PINS);
        C.pins[C.n_pins++] = t;
    }
    if (!C.n_pins)
        bench_die("--pin: empty list");
    static char phbuf[128];
    snprintf(phbuf, sizeof phbuf, "%s", phases);
    for (char *save = NULL, *t = strtok_r(phbuf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "lookup"))
            C.ph_lookup = true;
        else if (!strcmp(t, "lookup-tput"))
            C.ph_lookup_tput = true;
        else if (!strcmp(t, "cycle"))
            C.ph_cycle = true;
        else if (!strcmp(t, "cycle-tput"))
            C.ph_cycle_tput = true;
        else
            bench_die("--phases: a list of lookup, lookup-tput, cycle, cycle-tput; "
                      "got '%s'", t);
    }
    C.prompt_tokens = 4096;
    C.system_tokens = 2048;
    C.clients = 8;
    C.depth = 16;
    if (quick) {
        C.preset = "quick";
        C.prompts = 64;
        C.lookups = 2000;
        C.cycles = 500;
        C.tput_lookups = 400;
        C.tput_cycles = 64;
        C.reps = 1;
    } else {
        C.preset = "default";
        C.prompts = 1000;
        C.lookups = 20000;
        C.cycles = 5000;
        C.tput_lookups = 4000;
        C.tput_cycles = 800;
        C.reps = 5;
    }
    size_t *dst[8] = {&C.lookups, &C.cycles, &C.clients, &C.depth,
                      &C.tput_lookups, &C.tput_cycles, &C.reps, &C.prompts};
    for (int k = 0; k < 8; k++)
        if (v[k] >= 0)
            *dst[k] = (size_t)v[k];
    if (C.reps < 1 || C.reps > MAX_REPS)
        bench_die("--reps must be 1..%d", MAX_REPS);
    if (C.clients < 1 || C.clients > MAX_CLIENTS)
        bench_die("--clients must be 1..%d", MAX_CLIENTS);
    if (C.depth < 1 || C.depth > MAX_DEPTH)
        bench_die("--depth must be 1..%d", MAX_DEPTH);
    if (C.prompts < 1 || C.lookups < 1 || C.cycles < 1 || C.tput_lookups < 1 ||
        C.tput_cycles < 1)
        bench_die("counts must be at least 1");
    if (C.tput_lookups > UINT32_MAX || C.tput_cycles > UINT32_MAX ||
        C.cycles > UINT32_MAX - 1)
        bench_die("counts too large");
    C.pages = C.prompt_tokens / PT;
    C.sys_pages = C.system_tokens / PT;
    C.tail_tokens = C.prompt_tokens - C.system_tokens;
    C.tail_pages = C.tail_tokens / PT;
    /* Every page the run inserts, so that nothing is evicted: the warm
     * prompts, the probes' and every cycle's tail; + 1/16 and 4096 spare. */
    uint64_t cycles = C.cycles * C.n_pins + N_PROBE +
                      (uint64_t)C.reps * C.clients * C.tput_cycles;
    uint64_t pages = C.sys_pages + (C.prompts + cycles) * C.tail_pages;
    C.pool_blocks = pages + pages / 16 + 4096;
    C.pool_fits = true;
    if (pool_opt && pool_opt < C.pool_blocks) {
        /* Under eviction: the warm prompts and every in-flight cycle must
         * still fit, with room to spare for the LRU to work. */
        uint64_t floor_ = 2 * (C.sys_pages + C.prompts * C.tail_pages +
                               (uint64_t)C.clients * C.depth * C.pages);
        if (pool_opt < floor_)
            bench_die("--pool-blocks %llu: at least %llu (twice the warm prompts "
                      "and the cycles in flight)", (unsigned long long)pool_opt,
                      (unsigned long long)floor_);
        C.pool_blocks = pool_opt;
        C.pool_fits = false;
    } else if (pool_opt) {
        C.pool_blocks = pool_opt;
    }
}

/* rpc_bench_observers.c: --observers runs this program again per setting. */
int rpc_bench_observers_main(int argc, char **argv);
int rpc_bench_curve_main(int argc, char **argv);

int main(int argc, char **argv)
{
    g_main_pid = getpid();
    bench_cli_init("rpc_bench");
    bench_cli.usage = usage;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--observers"))
            return rpc_bench_observers_main(argc, argv);
        if (!strcmp(argv[i], "--curve-cost"))
            return rpc_bench_curve_main(argc, argv);
    }
    /* bench_die in a worker: _exit; here: exit, and atexit runs cleanup() */
    bench_cli.main_pid = g_main_pid;
    parse_args(argc, argv);
    uint64_t t_start = bench_now_ns();
    install_cleanup();

    bench_say("preset %s: %zu warm prompts of %zu tokens (%zu shared), pool of "
              "%llu blocks (%s backend), %zu clients x %zu in flight",
              C.preset, C.prompts, C.prompt_tokens, C.system_tokens,
              (unsigned long long)C.pool_blocks, C.backend, C.clients, C.depth);
    for (size_t i = 0; i < MAX_CLIENTS; i++)
        g_cmd_fd[i] = g_res_fd[i] = -1;
    make_dir();
    start_workers();
    start_servers();
    wait_servers();
    if (C.events) {
        if (pthread_create(&g_ev.thr, NULL, events_main, NULL))
            bench_die("events subscriber: pthread_create");
        g_ev.up = true;
    }
    bench_say("daemon %s (pid %ld) and echo_server (pid %ld) up in %s; "
              "this process is pid %ld", C.daemon_path, (long)g_daemon,
              (long)g_echo, g_dir, (long)getpid());

    warm_up();
    bench_say("warm-up: %zu prompts inserted and checked in %.2f s", C.prompts,
              R.warm_seconds);
    probe_sizes();
    bench_say("bytes: lookup %zu -> %zu..%zu, cycle lookup %zu -> %zu..%zu, "
              "cycle insert %zu -> %zu..%zu", R.sz.lookup_req,
              R.sz.lookup_rep_min, R.sz.lookup_rep_max, R.sz.cl_req,
              R.sz.cl_rep_min, R.sz.cl_rep_max, R.sz.ci_req, R.sz.ci_rep_min,
              R.sz.ci_rep_max);

    for (size_t p = 0; C.ph_lookup && p < C.n_pins; p++) {
        bench_say("lookup latency, %s: %zu lookups per side",
                  pin_desc(C.pins[p]), C.lookups);
        pin_latency(C.pins[p]);
        lookup_latency(p);
        pin_latency(NULL);
        bench_say("  p50 %.1f us (echo %.1f), p99 %.1f us (echo %.1f)",
                  R.lk[p][0].p50, R.lk[p][1].p50, R.lk[p][0].p99,
                  R.lk[p][1].p99);
    }
    if (C.ph_lookup_tput) {
        bench_say("lookup throughput: %zu rounds per side", C.reps);
        throughput(false);
    }
    for (size_t p = 0; C.ph_cycle && p < C.n_pins; p++) {
        bench_say("cycle latency, %s: %zu cycles per side", pin_desc(C.pins[p]),
                  C.cycles);
        pin_latency(C.pins[p]);
        cycle_latency(p);
        pin_latency(NULL);
        bench_say("  p50 %.1f us (echo %.1f), p99 %.1f us (echo %.1f)",
                  R.cy[p][0].p50, R.cy[p][1].p50, R.cy[p][0].p99,
                  R.cy[p][1].p99);
    }
    if (C.ph_cycle_tput) {
        bench_say("cycle throughput: %zu rounds per side", C.reps);
        throughput(true);
    }

    final_stats();
    R.daemon_cpu_s = proc_cpu_s(g_daemon);
    if (stat_of("events.batches") != UINT64_MAX)
        bench_say("kv events: the daemon published %llu batches of %llu events; "
                  "its loop waited %llu times for the events thread",
                  (unsigned long long)stat_of("events.batches"),
                  (unsigned long long)stat_of("events.events"),
                  (unsigned long long)stat_of("events.queue_waits"));
    if (g_ev.up) {
        atomic_store(&g_ev.stop, true);
        pthread_join(g_ev.thr, NULL);
        bench_say("kv events: one subscriber got %llu batches, %llu bytes "
                  "(the last round's may still have been in flight)",
                  (unsigned long long)g_ev.batches,
                  (unsigned long long)g_ev.bytes);
    }
    uint64_t ev = stat_of("tree.evicted_pages");
    if (ev == UINT64_MAX)
        bench_die("stats: no tree.evicted_pages");
    if (ev && C.pool_fits)
        bench_die("the daemon evicted %llu pages: the pool should hold the run",
                  (unsigned long long)ev);
    if (!C.pool_fits)
        bench_say("pool smaller than the run: %llu pages evicted",
                  (unsigned long long)ev);

    pc_client_close(g_client);
    g_client = NULL;
    zmq_close(g_dsock);
    zmq_close(g_esock);
    zmq_ctx_term(g_zctx);
    free(g_prompts);
    free(g_canon);
    cleanup();
    if (g_daemon_status != 0)
        bench_die("prefixcached exited with wait status 0x%x after SIGTERM",
                  g_daemon_status);
    if (g_echo_status != 0)
        bench_die("echo_server exited with wait status 0x%x after SIGTERM",
                  g_echo_status);
    R.seconds = (double)(bench_now_ns() - t_start) / 1e9;

    rpt_row rows[64];
    size_t n = fill_rows(rows);
    rpt_print_table(stdout, &STYLE, rows, n);
    printf("\n(%d CPUs: the %zu client processes and the server share them",
           CPU_COUNT(&g_allowed), C.clients);
    for (size_t p = 0; p < C.n_pins; p++) {
        if (!strcmp(C.pins[p], "same"))
            printf("; 1 CPU = everything on CPU %d", g_cpu[0]);
        else if (!strcmp(C.pins[p], "split"))
            printf("; 2 CPUs = the client on CPU %d, the servers on CPU %d",
                   g_cpu[0], g_cpu[1]);
    }
    printf(")\n\n");
    print_json(stdout, rows, n);
    if (C.json_path) {
        FILE *f = fopen(C.json_path, "w");
        if (!f)
            bench_die("%s: %s", C.json_path, strerror(errno));
        print_json(f, rows, n);
        if (fclose(f))
            bench_die("%s: %s", C.json_path, strerror(errno));
    }
    return 0;
}

/*
 * tests/daemon_harness.h - a real prefixcached process for end-to-end tests.
 *
 * Header-only (static functions), included by test_rpc_e2e.c,
 * test_rpc_badinput.c and test_daemon_start.c, which link libprefixcache
 * (+ libzmq) and pc_proto.
 *
 *   hd_start(&d, "--lease_ttl_ms=300", NULL)
 *       fork + exec $PREFIXCACHED on a private endpoint
 *       ipc:///tmp/pc-test-<pid>-<n>.sock with a private shm name and a small
 *       pool (64 blocks of 2 layers x 2 kv heads x 16 dim x 4 tokens, fp16:
 *       1024 bytes a block); stdout+stderr go to /tmp/pc-test-<pid>-<n>.log;
 *       returns once a raw `ping` is answered (bounded)
 *   hd_stop(&d)
 *       SIGTERM, waitpid (bounded), asserts exit status 0, that the socket
 *       file, its ".lock" and the /dev/shm object are gone, and that the log
 *       holds no sanitizer report
 *   hd_cleanup()      (the suites' .fini, and atexit)
 *       SIGKILLs whatever a failed test left running, dumps its log to stderr,
 *       removes its files
 *
 * A daemon also dies with the test worker that started it (PR_SET_PDEATHSIG),
 * so a crashed test leaves no process behind.
 *
 *   hd_wait_child(pid, ms, &st)  bounded waitpid of any child (SIGKILLs a
 *       hung one)
 *   hd_child_setup (a hook, NULL by default) runs in the daemon's process
 *       just before exec, after its stdio is set up: to start it under
 *       another uid or environment (it must re-arm PR_SET_PDEATHSIG after a
 *       uid change, which clears it); nonzero makes the child exit 126
 *
 * Raw messaging (libzmq + msgpack, no client library) so that tests can talk
 * to the daemon without trusting the code under test: hd_conn_* (a DEALER or
 * REQ socket), hd_call_buf (one request, one decoded reply), hd_stats_get (the stats
 * map with `check: true`).
 *
 * Every helper that can fail asserts with Criterion, so it must run in the
 * test worker, never in a forked child (children use pc_client and _exit).
 */
#ifndef PC_TESTS_DAEMON_HARNESS_H
#define PC_TESTS_DAEMON_HARNESS_H

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "proto/proto.h"

#define HD_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The shape every harness daemon gets unless a test overrides it. */
#define HD_LAYERS 2u
#define HD_KV_HEADS 2u
#define HD_HEAD_DIM 16u
#define HD_PAGE_TOKENS 4u
#define HD_POOL_BLOCKS 64u
#define HD_DTYPE "fp16"
#define HD_DTYPE_BYTES 2u
#define HD_BLOCK_BYTES                                                         \
    (2u * HD_LAYERS * HD_KV_HEADS * HD_HEAD_DIM * HD_PAGE_TOKENS *             \
     HD_DTYPE_BYTES)

/* Bounds (ms): generous enough for an ASan daemon on a loaded 2-core box. */
#define HD_START_MS 10000
#define HD_STOP_MS 10000
#define HD_CALL_MS 3000

/* Stats names (daemon/rpc stats map, dotted like jemalloc's mallctl). */
#define HD_ST_TREE_PAGES "tree.pages"
#define HD_ST_TREE_NODES "tree.nodes"
#define HD_ST_TREE_NS "tree.namespaces"
#define HD_ST_TREE_PROT "tree.protected_pages"
#define HD_ST_TREE_EVICTABLE "tree.evictable_pages"
#define HD_ST_POOL_CAP "pool.blocks.capacity"
#define HD_ST_POOL_FREE "pool.blocks.free"
#define HD_ST_POOL_LEASED "pool.blocks.leased"
#define HD_ST_POOL_CACHED "pool.blocks.cached"
#define HD_ST_LEASES "leases.live"
#define HD_ST_PINS "leases.pins"
#define HD_ST_LEASES_EXPIRED "leases.expired"
#define HD_ST_RPC_ERRORS "rpc.errors"
#define HD_ST_RPC_DROPPED "rpc.dropped"

/* The gauges that describe the cache state ("nothing changed" compares
 * these; the rpc.* and lookup counters move with every request). */
static const char *const hd_gauges[] = {
    HD_ST_TREE_PAGES, HD_ST_TREE_NODES,  HD_ST_TREE_NS,
    HD_ST_TREE_PROT,  HD_ST_POOL_FREE,   HD_ST_POOL_LEASED,
    HD_ST_POOL_CACHED, HD_ST_LEASES,     HD_ST_PINS,
};

/* ---- time ------------------------------------------------------------------ */

static inline int64_t hd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void hd_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Wait up to timeout_ms for child pid; true with *status once it exited,
 * false after SIGKILLing and reaping one that did not (a hung child). */
static inline bool hd_wait_child(pid_t pid, int timeout_ms, int *status)
{
    int64_t end = hd_now_ms() + timeout_ms;
    pid_t r;
    while ((r = waitpid(pid, status, WNOHANG)) == 0 && hd_now_ms() < end)
        hd_sleep_ms(5);
    if (r != 0)
        return true;
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return false;
}

/* ---- files ----------------------------------------------------------------- */

/* Whole file as a NUL-terminated malloc'd string ("" when absent). */
static inline char *hd_read_file(const char *path, size_t *len_out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n;
        while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (cap - len - 1 == 0) {
                cap *= 2;
                buf = realloc(buf, cap);
                cr_assert(buf);
            }
        }
        fclose(f);
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static inline void hd_write_file(const char *path, const char *text)
{
    /* write a sibling then rename: a reader never sees half a file */
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "fopen(%s): %s", tmp, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0, "rename %s: %s", path, strerror(errno));
}

static inline bool hd_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- the daemon process ------------------------------------------------------ */

typedef struct hd_daemon {
    pid_t pid;          /* 0: not running (never started or reaped) */
    int status;         /* waitpid status once reaped               */
    char endpoint[160]; /* ipc:///tmp/pc-test-<pid>-<n>.sock         */
    char sock_path[128];
    char lock_path[140];
    char shm_name[64];  /* /pc-test-<pid>-<n>                        */
    char shm_path[80];  /* /dev/shm/pc-test-<pid>-<n>                */
    char log_path[128];
    char conf_path[128];
} hd_daemon;

/* What hd_cleanup must kill and remove: COPIES of the tests' hd_daemon
 * (a test's own is on its stack, which is gone by the time .fini runs after
 * a failed assertion), keyed by log_path; hd_track refreshes a copy. */
static hd_daemon hd_live[8];
static pid_t hd_owner; /* the process that started them */
static int hd_seq;
static int (*hd_child_setup)(void *ctx);
static void *hd_child_ctx;

static inline const char *hd_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set (ctest sets it; run the test through "
                       "ctest or export it)", name);
    return v;
}

/* Print the last `max` bytes of the daemon's log (for failures). */
static inline void hd_dump_log(const hd_daemon *d, size_t max)
{
    /* no Criterion assertion here: hd_cleanup may run from a death callback */
    fprintf(stderr, "---- %s (pid %ld) log %s ----\n", d->endpoint, (long)d->pid,
            d->log_path);
    FILE *f = fopen(d->log_path, "rb");
    if (f) {
        if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)max)
            fseek(f, -(long)max, SEEK_END);
        else
            fseek(f, 0, SEEK_SET);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, stderr);
        fclose(f);
    }
    fprintf(stderr, "---- end of log ----\n");
}

static inline hd_daemon *hd_slot(const hd_daemon *d)
{
    for (size_t i = 0; i < HD_NELEM(hd_live); i++)
        if (hd_live[i].log_path[0] && strcmp(hd_live[i].log_path, d->log_path) == 0)
            return &hd_live[i];
    return NULL;
}

/* Nothing more to clean for d (stopped and checked by the test). */
static inline void hd_forget(const hd_daemon *d)
{
    hd_daemon *slot = hd_slot(d);
    if (slot)
        memset(slot, 0, sizeof(*slot));
}

/* Remove d's files (socket, lock, log, config, shm) and stop tracking it. */
static inline void hd_unlink_files(const hd_daemon *d)
{
    if (d->sock_path[0])
        unlink(d->sock_path);
    if (d->lock_path[0])
        unlink(d->lock_path);
    unlink(d->log_path);
    if (d->conf_path[0]) {
        unlink(d->conf_path);
        char tmp[300];
        snprintf(tmp, sizeof(tmp), "%s.tmp", d->conf_path);
        unlink(tmp);
    }
    if (d->shm_name[0])
        shm_unlink(d->shm_name);
    hd_forget(d);
}

/* Register d (or refresh its copy after the test changed a path or it was
 * reaped). */
static inline void hd_track(const hd_daemon *d)
{
    hd_daemon *slot = hd_slot(d);
    for (size_t i = 0; !slot && i < HD_NELEM(hd_live); i++)
        if (!hd_live[i].log_path[0])
            slot = &hd_live[i];
    cr_assert(slot, "too many daemons in one test");
    *slot = *d;
}

/* Kill what a failed test left running (its log goes to stderr, so a
 * sanitizer report in it still fails the ctest run), remove its files. */
static inline void hd_cleanup(void)
{
    if (hd_owner != getpid())
        return; /* a forked child: not ours to clean */
    for (size_t i = 0; i < HD_NELEM(hd_live); i++) {
        hd_daemon *d = &hd_live[i];
        if (!d->log_path[0])
            continue;
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            hd_dump_log(d, 8192);
        }
        hd_unlink_files(d);
        memset(d, 0, sizeof(*d));
    }
}

/* The same from a fatal signal in the test worker (a crash in the client
 * library, an assert): only async-signal-safe calls, then the signal goes
 * on to whoever handled it before. */
static const int hd_fatal[5] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
static struct sigaction hd_fatal_old[5];

static inline void hd_on_fatal(int sig)
{
    if (hd_owner == getpid())
        for (size_t i = 0; i < HD_NELEM(hd_live); i++) {
            const hd_daemon *d = &hd_live[i];
            if (!d->log_path[0])
                continue;
            if (d->pid > 0)
                kill(d->pid, SIGKILL);
            if (d->sock_path[0])
                unlink(d->sock_path);
            if (d->lock_path[0])
                unlink(d->lock_path);
            if (d->shm_path[0])
                unlink(d->shm_path); /* shm_unlink, signal-safely */
        }
    for (size_t i = 0; i < HD_NELEM(hd_fatal); i++)
        if (hd_fatal[i] == sig)
            sigaction(sig, &hd_fatal_old[i], NULL);
    /* returning re-executes a faulting instruction under the old handler;
     * abort() raises SIGABRT again by itself */
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define HD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define HD_SANITIZED 1
#endif
#endif
#ifdef HD_SANITIZED
/* A sanitizer report in the test worker ends it without atexit or .fini:
 * still kill its daemons and remove their files (their logs go to stderr). */
#include <sanitizer/common_interface_defs.h>
#endif

/* Names for a fresh daemon: unique per test worker and per start.  What a
 * dead earlier run with the same pid may have left under these names (they
 * are the harness's own) is removed first. */
static inline void hd_init(hd_daemon *d)
{
    memset(d, 0, sizeof(*d));
    long pid = (long)getpid();
    int n = hd_seq++;
    snprintf(d->sock_path, sizeof(d->sock_path), "/tmp/pc-test-%ld-%d.sock", pid, n);
    snprintf(d->endpoint, sizeof(d->endpoint), "ipc://%s", d->sock_path);
    snprintf(d->lock_path, sizeof(d->lock_path), "%s.lock", d->sock_path);
    snprintf(d->shm_name, sizeof(d->shm_name), "/pc-test-%ld-%d", pid, n);
    snprintf(d->shm_path, sizeof(d->shm_path), "/dev/shm%s", d->shm_name);
    snprintf(d->log_path, sizeof(d->log_path), "/tmp/pc-test-%ld-%d.log", pid, n);
    snprintf(d->conf_path, sizeof(d->conf_path), "/tmp/pc-test-%ld-%d.conf", pid, n);
    hd_unlink_files(d);
}

/* The default knobs; a test's own "--name=value" replaces the default. */
static inline void hd_default_args(const hd_daemon *d, char out[][200], int *n)
{
    int k = 0;
    snprintf(out[k++], 200, "--endpoint=%s", d->endpoint);
    snprintf(out[k++], 200, "--shm_name=%s", d->shm_name);
    snprintf(out[k++], 200, "--pool_backend=host");
    snprintf(out[k++], 200, "--pool_blocks=%u", HD_POOL_BLOCKS);
    snprintf(out[k++], 200, "--layers=%u", HD_LAYERS);
    snprintf(out[k++], 200, "--kv_heads=%u", HD_KV_HEADS);
    snprintf(out[k++], 200, "--head_dim=%u", HD_HEAD_DIM);
    snprintf(out[k++], 200, "--dtype=%s", HD_DTYPE);
    snprintf(out[k++], 200, "--page_tokens=%u", HD_PAGE_TOKENS);
    snprintf(out[k++], 200, "--log_level=info");
    *n = k;
}

static inline bool hd_arg_overrides(const char *deflt, const char *const *extra)
{
    size_t klen = strcspn(deflt, "=") + 1; /* "--name=" */
    for (int i = 0; extra && extra[i]; i++)
        if (strncmp(extra[i], deflt, klen) == 0)
            return true;
    return false;
}

/*
 * fork + exec the daemon.  with_defaults: the harness's knobs (minus those
 * that `extra` names) come first, then `extra` (NULL-terminated).  stdout and
 * stderr go to d->log_path (appended), stdin is /dev/null.
 */
static inline void hd_spawn(hd_daemon *d, bool with_defaults,
                            const char *const *extra)
{
    const char *bin = hd_env("PREFIXCACHED");
    static char defs[16][200];
    int ndef = 0;
    if (with_defaults)
        hd_default_args(d, defs, &ndef);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    for (int i = 0; i < ndef; i++)
        if (!hd_arg_overrides(defs[i], extra))
            argv[argc++] = defs[i];
    for (int i = 0; extra && extra[i]; i++) {
        cr_assert(argc < 62);
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;

    if (hd_owner != getpid()) {
        hd_owner = getpid();
        memset(hd_live, 0, sizeof(hd_live));
        atexit(hd_cleanup);
#ifdef HD_SANITIZED
        __sanitizer_set_death_callback(hd_cleanup);
#endif
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = hd_on_fatal;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < HD_NELEM(hd_fatal); i++)
            sigaction(hd_fatal[i], &sa, &hd_fatal_old[i]);
    }

    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* die with the test worker, whatever happens to it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int in = open("/dev/null", O_RDONLY);
        int out = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        /* nothing of the test runner's (its pipes, its sockets) leaks in */
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
        signal(SIGPIPE, SIG_DFL);
        if (hd_child_setup && hd_child_setup(hd_child_ctx) != 0)
            _exit(126);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    d->status = 0;
    hd_track(d);
}

/* Reap the daemon if it has exited (true), waiting up to timeout_ms. */
static inline bool hd_reap(hd_daemon *d, int timeout_ms)
{
    int64_t end = hd_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) {
            d->status = st;
            d->pid = 0;
            hd_daemon *slot = hd_slot(d);
            if (slot)
                slot->pid = 0; /* reaped: never kill that pid again */
            return true;
        }
        cr_assert(r == 0, "waitpid: %s", strerror(errno));
        if (hd_now_ms() >= end)
            return false;
        hd_sleep_ms(5);
    }
}

static inline bool hd_alive(hd_daemon *d)
{
    return d->pid > 0 && !hd_reap(d, 0);
}

/* ---- raw ZeroMQ ---------------------------------------------------------------- */

static void *hd_zctx_;
static pid_t hd_zctx_pid_;

/* The process's context (a forked child gets a fresh one; the parent's is
 * not touched from the child). */
static inline void *hd_zctx(void)
{
    if (!hd_zctx_ || hd_zctx_pid_ != getpid()) {
        hd_zctx_ = zmq_ctx_new();
        hd_zctx_pid_ = getpid();
        cr_assert(hd_zctx_, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    }
    return hd_zctx_;
}

/*
 * Call before fork() when the child will use ZeroMQ (a pc_client): ends the
 * harness's context, joining its I/O and reaper threads.  A thread that is
 * busy at the moment of fork (the reaper freeing a just-closed socket) may
 * hold an allocator lock that the child inherits locked; under ASan (clang
 * 14, whose allocator has no fork handlers) the child's new ZeroMQ I/O
 * thread then blocks on its first allocation and never connects: the child
 * times out.  Close the test's own pc_clients before fork for the same
 * reason.  (glibc malloc and jemalloc lock around fork: release builds are
 * not affected.)
 */
static inline void hd_quiesce(void)
{
    if (hd_zctx_ && hd_zctx_pid_ == getpid())
        zmq_ctx_term(hd_zctx_);
    hd_zctx_ = NULL;
}

typedef struct hd_conn {
    void *sock;
} hd_conn;

static inline void hd_conn_open(hd_conn *c, const char *endpoint, int type)
{
    c->sock = zmq_socket(hd_zctx(), type);
    cr_assert(c->sock, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero));
    cr_assert_eq(zmq_connect(c->sock, endpoint), 0, "zmq_connect(%s): %s",
                 endpoint, zmq_strerror(zmq_errno()));
}

static inline void hd_conn_close(hd_conn *c)
{
    if (c->sock)
        zmq_close(c->sock);
    c->sock = NULL;
}

/* Send frames[0..n) as one multipart message. */
static inline void hd_send(hd_conn *c, const void *const *frames,
                           const size_t *lens, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = zmq_send(c->sock, lens[i] ? frames[i] : "", lens[i],
                          i + 1 < n ? ZMQ_SNDMORE : 0);
        cr_assert(rc >= 0, "zmq_send: %s", zmq_strerror(zmq_errno()));
    }
}

/* A received multipart message. */
typedef struct hd_msg {
    int n;                /* frames; 0 = nothing arrived in time */
    zmq_msg_t frames[8];  /* the first 7 frames and the last one */
    int total;
} hd_msg;

static inline void hd_msg_free(hd_msg *m)
{
    for (int i = 0; i < m->n; i++)
        zmq_msg_close(&m->frames[i]);
    m->n = m->total = 0;
}

/* Wait up to timeout_ms for one whole message; m->n = 0 on timeout. */
static inline void hd_recv(hd_conn *c, int timeout_ms, hd_msg *m)
{
    memset(m, 0, sizeof(*m));
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    int rc;
    do
        rc = zmq_poll(&it, 1, timeout_ms);
    while (rc < 0 && zmq_errno() == EINTR);
    cr_assert(rc >= 0, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    if (rc == 0)
        return;
    int more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        int r = zmq_msg_recv(&f, c->sock, 0);
        cr_assert(r >= 0, "zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
        more = zmq_msg_more(&f);
        if (m->n < (int)HD_NELEM(m->frames)) {
            m->frames[m->n++] = f;
        } else { /* keep the last frame (the payload) in the last slot */
            zmq_msg_close(&m->frames[m->n - 1]);
            m->frames[m->n - 1] = f;
        }
        m->total++;
    }
}

static inline const void *hd_frame(hd_msg *m, int i, size_t *len)
{
    *len = zmq_msg_size(&m->frames[i]);
    return zmq_msg_data(&m->frames[i]);
}

/* ---- msgpack helpers ------------------------------------------------------------ */

/* A packer over a growing buffer. */
typedef struct hd_buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} hd_buf;

static inline void hd_buf_init(hd_buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static inline void hd_buf_free(hd_buf *b) { msgpack_sbuffer_destroy(&b->sb); }

static inline void hd_buf_raw(hd_buf *b, const void *p, size_t n)
{
    msgpack_sbuffer_write(&b->sb, p, n);
}

/* A decoded reply: the map, and the decoder that owns it. */
typedef struct hd_reply {
    bool arrived;
    int rc;       /* pc_payload_decode */
    int64_t status;
    uint64_t id;
    char error[256];
    pc_decoder dec;
    const msgpack_object *map;
    void *payload; /* a copy of the last frame */
    size_t payload_len;
    int frames;    /* frames received */
} hd_reply;

static inline void hd_reply_free(hd_reply *r)
{
    if (r->arrived)
        pc_decoder_free(&r->dec);
    free(r->payload);
    memset(r, 0, sizeof(*r));
}

/* Decode the last frame of m into r (asserting it is a well-formed reply:
 * a map with uint id, int status, and error text when status < 0). */
static inline void hd_reply_decode(hd_msg *m, hd_reply *r)
{
    memset(r, 0, sizeof(*r));
    r->frames = m->n;
    if (m->n == 0)
        return;
    r->arrived = true;
    size_t len;
    const void *p = hd_frame(m, m->n - 1, &len);
    r->payload = malloc(len ? len : 1);
    cr_assert(r->payload);
    memcpy(r->payload, p, len);
    r->payload_len = len;
    pc_decoder_init(&r->dec);
    r->rc = pc_payload_decode(&r->dec, r->payload, len, NULL, &r->map);
    cr_assert_eq(r->rc, 0, "reply does not decode: %d (%s)", r->rc, r->dec.err);
    cr_assert_eq(pc_mp_get_u64(r->map, "id", &r->id), 0, "reply without uint id");
    cr_assert_eq(pc_mp_get_i64(r->map, "status", &r->status), 0,
                 "reply without int status");
    const msgpack_object *e = pc_mp_get(r->map, "error");
    if (r->status != 0) {
        cr_assert(e && e->type == MSGPACK_OBJECT_STR && e->via.str.size > 0,
                  "error reply (status %" PRId64 ") without error text", r->status);
    }
    if (e && e->type == MSGPACK_OBJECT_STR) {
        size_t n = e->via.str.size < sizeof(r->error) - 1 ? e->via.str.size
                                                           : sizeof(r->error) - 1;
        memcpy(r->error, e->via.str.ptr, n);
        r->error[n] = '\0';
    }
}

/* Send one payload on a DEALER and decode the reply (asserting it came). */
static inline void hd_call_on(hd_conn *c, const void *payload, size_t len,
                              hd_reply *r)
{
    const void *f[1] = {payload};
    size_t l[1] = {len};
    hd_send(c, f, l, 1);
    hd_msg m;
    hd_recv(c, HD_CALL_MS, &m);
    cr_assert(m.n > 0, "no reply within %d ms", HD_CALL_MS);
    hd_reply_decode(&m, r);
    hd_msg_free(&m);
}

static inline void hd_call_buf(hd_conn *c, hd_buf *b, hd_reply *r)
{
    hd_call_on(c, b->sb.data, b->sb.size, r);
}

/* {op: <op>, id: <id>} */
static inline void hd_pack_op(hd_buf *b, const char *op, uint64_t id,
                              size_t more_fields)
{
    msgpack_pack_map(&b->pk, 2 + more_fields);
    pc_pack_kv_str(&b->pk, "op", op);
    pc_pack_kv_u64(&b->pk, "id", id);
}

/* Ping on a fresh DEALER: true when answered with status 0 in timeout_ms. */
static inline bool hd_ping(const char *endpoint, int timeout_ms)
{
    hd_conn c;
    hd_conn_open(&c, endpoint, ZMQ_DEALER);
    hd_buf b;
    hd_buf_init(&b);
    hd_pack_op(&b, "ping", 1, 0);
    const void *f[1] = {b.sb.data};
    size_t l[1] = {b.sb.size};
    hd_send(&c, f, l, 1);
    hd_msg m;
    hd_recv(&c, timeout_ms, &m);
    bool ok = false;
    if (m.n > 0) {
        hd_reply r;
        hd_reply_decode(&m, &r);
        ok = r.status == 0 && r.id == 1;
        hd_reply_free(&r);
    }
    hd_msg_free(&m);
    hd_buf_free(&b);
    hd_conn_close(&c);
    return ok;
}

/* ---- stats ----------------------------------------------------------------------- */

typedef struct hd_statmap {
    int n;
    char name[256][64];
    uint64_t value[256];
    bool has_check;
    int64_t check; /* the `check` field of the reply (0 = consistent) */
} hd_statmap;

/* UINT64_MAX when absent. */
static inline uint64_t hd_stat(const hd_statmap *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return s->value[i];
    return UINT64_MAX;
}

static inline uint64_t hd_stat_req(const hd_statmap *s, const char *name)
{
    uint64_t v = hd_stat(s, name);
    cr_assert(v != UINT64_MAX, "stats has no '%s'", name);
    return v;
}

/* {op: "stats", check: true} on c; asserts status 0 and check == 0. */
static inline void hd_stats_on(hd_conn *c, hd_statmap *s)
{
    hd_buf b;
    hd_buf_init(&b);
    hd_pack_op(&b, "stats", 424242, 1);
    pc_pack_kv_bool(&b.pk, "check", true);
    hd_reply r;
    hd_call_buf(c, &b, &r);
    hd_buf_free(&b);
    cr_assert_eq(r.status, 0, "stats: %" PRId64 " %s", r.status, r.error);
    cr_assert_eq(r.id, 424242);
    memset(s, 0, sizeof(*s));
    const msgpack_object *m = pc_mp_get(r.map, "stats");
    cr_assert(m && m->type == MSGPACK_OBJECT_MAP, "stats reply without a map");
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;
        cr_assert(k->type == MSGPACK_OBJECT_STR, "stats key not a string");
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || s->n >= 256)
            continue;
        size_t kl = k->via.str.size < 63 ? k->via.str.size : 63;
        memcpy(s->name[s->n], k->via.str.ptr, kl);
        s->name[s->n][kl] = '\0';
        s->value[s->n++] = v->via.u64;
    }
    const msgpack_object *ck = pc_mp_get(r.map, "check");
    if (ck && (ck->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
               ck->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)) {
        s->has_check = true;
        s->check = ck->via.i64;
    }
    hd_reply_free(&r);
    cr_assert(s->has_check, "stats reply without 'check' (asked check: true)");
    cr_assert_eq(s->check, 0, "the daemon's consistency check failed: %" PRId64
                 " (%s)", s->check, pc_errname((int)s->check));
}

static inline void hd_stats_get(const hd_daemon *d, hd_statmap *s)
{
    hd_conn c;
    hd_conn_open(&c, d->endpoint, ZMQ_DEALER);
    hd_stats_on(&c, s);
    hd_conn_close(&c);
}

/* Assert that the state gauges of a and b agree. */
static inline void hd_gauges_eq(const hd_statmap *a, const hd_statmap *b,
                                const char *what)
{
    for (size_t i = 0; i < HD_NELEM(hd_gauges); i++) {
        uint64_t va = hd_stat_req(a, hd_gauges[i]);
        uint64_t vb = hd_stat_req(b, hd_gauges[i]);
        cr_assert_eq(va, vb, "%s: %s changed from %" PRIu64 " to %" PRIu64,
                     what, hd_gauges[i], va, vb);
    }
}

/* ---- start / stop ------------------------------------------------------------------ */

/* Wait (bounded) until the daemon answers ping; fail with its log if it
 * exits or never answers. */
static inline void hd_wait_ready(hd_daemon *d)
{
    hd_track(d); /* the test may have changed its endpoint since the spawn */
    int64_t end = hd_now_ms() + HD_START_MS;
    for (;;) {
        /* sock_path "" : an endpoint without a file (tcp://, ipc://@name) */
        if ((!d->sock_path[0] || hd_exists(d->sock_path)) &&
            hd_ping(d->endpoint, 200))
            return;
        if (!hd_alive(d)) {
            hd_dump_log(d, 8192);
            cr_assert_fail("prefixcached exited at start (status 0x%x)", d->status);
        }
        if (hd_now_ms() > end) {
            hd_dump_log(d, 8192);
            cr_assert_fail("prefixcached did not answer ping within %d ms",
                           HD_START_MS);
        }
        hd_sleep_ms(20);
    }
}

/* Start with the defaults plus the extra "--name=value" args (NULL-ended). */
static inline void hd_startv(hd_daemon *d, const char *const *extra)
{
    hd_init(d);
    hd_spawn(d, true, extra);
    hd_wait_ready(d);
}

/* hd_start(&d, NULL) or hd_start(&d, "--lease_ttl_ms=300", NULL) */
#define hd_start(d, ...)                                                       \
    do {                                                                       \
        const char *const hd_extra_[] = {__VA_ARGS__};                         \
        hd_startv((d), hd_extra_);                                             \
    } while (0)

/* The log holds no sanitizer report. */
static inline void hd_assert_clean_log(const hd_daemon *d)
{
    char *log = hd_read_file(d->log_path, NULL);
    static const char *const bad[] = {"ERROR: AddressSanitizer",
                                      "ERROR: LeakSanitizer", "runtime error:"};
    for (size_t i = 0; i < HD_NELEM(bad); i++)
        if (strstr(log, bad[i])) {
            fprintf(stderr, "%s\n", log);
            free(log);
            cr_assert_fail("the daemon's log has a sanitizer report (%s)", bad[i]);
        }
    free(log);
}

/* SIGTERM; exit status 0; socket, lock and shm gone; clean log. */
static inline void hd_stop(hd_daemon *d)
{
    cr_assert(d->pid > 0, "hd_stop: not running");
    cr_assert_eq(kill(d->pid, SIGTERM), 0);
    if (!hd_reap(d, HD_STOP_MS)) {
        hd_dump_log(d, 8192);
        cr_assert_fail("prefixcached did not exit within %d ms of SIGTERM",
                       HD_STOP_MS);
    }
    bool ok = WIFEXITED(d->status) && WEXITSTATUS(d->status) == 0;
    if (!ok)
        hd_dump_log(d, 16384);
    hd_assert_clean_log(d);
    cr_assert(ok, "prefixcached: exit status 0x%x (exited %d, code %d, signal %d)",
              d->status, WIFEXITED(d->status), WEXITSTATUS(d->status),
              WIFSIGNALED(d->status) ? WTERMSIG(d->status) : 0);
    cr_assert(!d->sock_path[0] || !hd_exists(d->sock_path),
              "socket file %s left behind", d->sock_path);
    cr_assert(!d->lock_path[0] || !hd_exists(d->lock_path),
              "lock file %s left behind", d->lock_path);
    cr_assert(!hd_exists(d->shm_path), "shm object %s left behind", d->shm_path);
    hd_unlink_files(d);
}

/* ---- the log ------------------------------------------------------------------------ */

static inline size_t hd_log_size(const hd_daemon *d)
{
    struct stat st;
    return stat(d->log_path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Case-insensitive strstr. */
static inline const char *hd_stristr(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}

/* A line of the log at or after byte `from` that contains every one of the
 * NULL-terminated needles (case-insensitive); waits up to timeout_ms.  The
 * line is copied to `line` (when not NULL). */
static inline bool hd_log_wait_line(const hd_daemon *d, size_t from,
                                    int timeout_ms, char *line, size_t linelen,
                                    const char *const *needles)
{
    int64_t end = hd_now_ms() + timeout_ms;
    for (;;) {
        size_t len;
        char *log = hd_read_file(d->log_path, &len);
        const char *p = from < len ? log + from : log + len;
        while (*p) {
            const char *eol = strchr(p, '\n');
            size_t ll = eol ? (size_t)(eol - p) : strlen(p);
            char buf[1024];
            size_t cl = ll < sizeof(buf) - 1 ? ll : sizeof(buf) - 1;
            memcpy(buf, p, cl);
            buf[cl] = '\0';
            bool all = true;
            for (int i = 0; needles[i] && all; i++)
                all = hd_stristr(buf, needles[i]) != NULL;
            if (all) {
                if (line)
                    snprintf(line, linelen, "%s", buf);
                free(log);
                return true;
            }
            p += ll + (eol ? 1 : 0);
        }
        free(log);
        if (hd_now_ms() >= end)
            return false;
        hd_sleep_ms(10);
    }
}

/* hd_log_wait_line with the needles as NULL-terminated varargs. */
static inline bool hd_log_has(const hd_daemon *d, size_t from, int timeout_ms,
                              ...)
{
    const char *needles[9];
    int n = 0;
    va_list ap;
    va_start(ap, timeout_ms);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL && n < 8)
        needles[n++] = s;
    va_end(ap);
    needles[n] = NULL;
    return hd_log_wait_line(d, from, timeout_ms, NULL, 0, needles);
}

#endif /* PC_TESTS_DAEMON_HARNESS_H */

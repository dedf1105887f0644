/*
 * tests/harness/harness.h - a real prefixcached process for end-to-end tests.
 *
 * The library pc_test_harness (tests/harness/: daemon.c, the process and its
 * files; wire.c, raw messages and stats), linked by test_rpc_e2e,
 * test_rpc_badinput and test_engine.
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
 * Raw messaging (libzmq + msgpack, no client library) so that tests can talk
 * to the daemon without trusting the code under test: hd_conn_* (a DEALER or
 * REQ socket), hd_call_buf (one request, one decoded reply), hd_stats_get (the stats
 * map with `check: true`).
 *
 * Every helper that can fail asserts with Criterion, so it must run in the
 * test worker, never in a forked child (children use pc_client and _exit).
 *
 * The includes below are more than the declarations need: Criterion and the
 * POSIX calls an end-to-end test makes (fork, waitpid, kill, files) came
 * with the header-only harness, and the tests rely on them.
 */
#ifndef PC_TESTS_HARNESS_H
#define PC_TESTS_HARNESS_H

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

/* ---- time and files (daemon.c) --------------------------------------------- */

int64_t hd_now_ms(void); /* CLOCK_MONOTONIC */
void hd_sleep_ms(int ms);

/* Wait up to timeout_ms for child pid; true with *status once it exited,
 * false after SIGKILLing and reaping one that did not (a hung child). */
bool hd_wait_child(pid_t pid, int timeout_ms, int *status);

/* A hook (NULL by default) run in the daemon's process just before exec,
 * after its stdio is set up: to start it under another uid or environment
 * (it must re-arm PR_SET_PDEATHSIG after a uid change, which clears it);
 * nonzero makes the child exit 126. */
extern int (*hd_child_setup)(void *ctx);
extern void *hd_child_ctx;
/* Whole file as a NUL-terminated malloc'd string ("" when absent). */
char *hd_read_file(const char *path, size_t *len_out);
/* Replace path's content atomically (a sibling, then rename). */
void hd_write_file(const char *path, const char *text);
bool hd_exists(const char *path); /* lstat: a dangling link exists */
/* getenv, asserting it is set and not empty. */
const char *hd_env(const char *name);

/* ---- the daemon process (daemon.c) ------------------------------------------ */

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

/* Names for a fresh daemon: unique per test worker and per start; what a
 * dead earlier run left under them is removed first. */
void hd_init(hd_daemon *d);
/* fork + exec $PREFIXCACHED.  with_defaults: the harness's knobs (minus
 * those that `extra` names) come first, then `extra` (NULL-terminated).
 * stdout and stderr go to d->log_path (appended), stdin is /dev/null. */
void hd_spawn(hd_daemon *d, bool with_defaults, const char *const *extra);
/* Wait (bounded) until the daemon answers ping; fail with its log if it
 * exits or never answers. */
void hd_wait_ready(hd_daemon *d);
/* hd_init + hd_spawn with the defaults + hd_wait_ready. */
void hd_startv(hd_daemon *d, const char *const *extra);

/* hd_start(&d, NULL) or hd_start(&d, "--lease_ttl_ms=300", NULL) */
#define hd_start(d, ...)                                                       \
    do {                                                                       \
        const char *const hd_extra_[] = {__VA_ARGS__};                         \
        hd_startv((d), hd_extra_);                                             \
    } while (0)

/* Reap the daemon if it has exited (true), waiting up to timeout_ms. */
bool hd_reap(hd_daemon *d, int timeout_ms);
bool hd_alive(hd_daemon *d);
/* SIGTERM; exit status 0; socket, lock and shm gone; clean log. */
void hd_stop(hd_daemon *d);

/* Kill what a failed test left running (its log goes to stderr, so a
 * sanitizer report in it still fails the ctest run), remove its files. */
void hd_cleanup(void);
/* Nothing more to clean for d (stopped and checked by the test). */
void hd_forget(const hd_daemon *d);
/* Register d for hd_cleanup (or refresh its copy after a test changed a
 * path of it, e.g. a daemon on a default endpoint). */
void hd_track(const hd_daemon *d);
/* Remove d's files (socket, lock, log, config, shm) and stop tracking it. */
void hd_unlink_files(const hd_daemon *d);

/* ---- the log (daemon.c) ------------------------------------------------------ */

/* Print the last `max` bytes of the daemon's log (for failures). */
void hd_dump_log(const hd_daemon *d, size_t max);
/* The log holds no sanitizer report. */
void hd_assert_clean_log(const hd_daemon *d);
size_t hd_log_size(const hd_daemon *d);
/* Case-insensitive strstr. */
const char *hd_stristr(const char *hay, const char *needle);
/* A line of the log at or after byte `from` that contains every one of the
 * NULL-terminated needles (case-insensitive); waits up to timeout_ms.  The
 * line is copied to `line` (when not NULL). */
bool hd_log_wait_line(const hd_daemon *d, size_t from, int timeout_ms,
                      char *line, size_t linelen, const char *const *needles);
/* hd_log_wait_line with the needles as NULL-terminated varargs. */
bool hd_log_has(const hd_daemon *d, size_t from, int timeout_ms, ...);

/* ---- raw ZeroMQ (wire.c) ---------------------------------------------------- */

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
void hd_quiesce(void);

typedef struct hd_conn {
    void *sock;
} hd_conn;

/* type: ZMQ_DEALER or ZMQ_REQ; linger 0. */
void hd_conn_open(hd_conn *c, const char *endpoint, int type);
void hd_conn_close(hd_conn *c);
/* Send frames[0..n) as one multipart message. */
void hd_send(hd_conn *c, const void *const *frames, const size_t *lens, int n);

/* A received multipart message. */
typedef struct hd_msg {
    int n;                /* frames; 0 = nothing arrived in time */
    zmq_msg_t frames[8];  /* the first 7 frames and the last one */
    int total;
} hd_msg;

void hd_msg_free(hd_msg *m);
/* Wait up to timeout_ms for one whole message; m->n = 0 on timeout. */
void hd_recv(hd_conn *c, int timeout_ms, hd_msg *m);
const void *hd_frame(hd_msg *m, int i, size_t *len);

/* ---- msgpack (wire.c) -------------------------------------------------------- */

/* A packer over a growing buffer. */
typedef struct hd_buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} hd_buf;

void hd_buf_init(hd_buf *b);
void hd_buf_free(hd_buf *b);
void hd_buf_raw(hd_buf *b, const void *p, size_t n);
/* {op: <op>, id: <id>} and room for more_fields more pairs. */
void hd_pack_op(hd_buf *b, const char *op, uint64_t id, size_t more_fields);

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

void hd_reply_free(hd_reply *r);
/* Strict UTF-8 (RFC 3629), written independently of the codec under test;
 * and: every str anywhere in o (keys included) is strict UTF-8, else the
 * first offender goes, as hex, into bad. */
bool hd_utf8_strict(const uint8_t *s, size_t n);
bool hd_strs_utf8(const msgpack_object *o, char *bad, size_t cap);

/* Decode the last frame of m into r (asserting it is a well-formed reply:
 * a map with uint id, int status, and error text when status < 0, whose
 * every str is strict UTF-8: else a strict client could not read it). */
void hd_reply_decode(hd_msg *m, hd_reply *r);
/* Send one payload on a DEALER and decode the reply (asserting it came). */
void hd_call_on(hd_conn *c, const void *payload, size_t len, hd_reply *r);
void hd_call_buf(hd_conn *c, hd_buf *b, hd_reply *r);
/* Ping on a fresh DEALER: true when answered with status 0 in timeout_ms. */
bool hd_ping(const char *endpoint, int timeout_ms);

/* ---- stats (wire.c) ------------------------------------------------------------ */

typedef struct hd_statmap {
    int n;
    char name[512][64]; /* names beyond 63 bytes are cut (ns.* may be) */
    uint64_t value[512];
    bool has_check;
    int64_t check; /* the `check` field of the reply (0 = consistent) */
} hd_statmap;

/* UINT64_MAX when absent. */
uint64_t hd_stat(const hd_statmap *s, const char *name);
/* Asserting it is there. */
uint64_t hd_stat_req(const hd_statmap *s, const char *name);
/* {op: "stats", check: true} on c; asserts status 0 and check == 0. */
void hd_stats_on(hd_conn *c, hd_statmap *s);
/* The same on a fresh DEALER to d. */
void hd_stats_get(const hd_daemon *d, hd_statmap *s);
/* Assert that the state gauges (tree, pool, leases; not the counters that
 * move with every request) of a and b agree. */
void hd_gauges_eq(const hd_statmap *a, const hd_statmap *b, const char *what);

#endif /* PC_TESTS_HARNESS_H */

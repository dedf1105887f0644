/*
 * bench/soak/soak.c - hostile lives against one prefixcached: clients killed
 * mid-lease, leases abandoned, the daemon itself killed and restarted; every
 * cached page a client reads is checked byte for byte (issue 15).
 *
 *   soak (supervisor, one thread)
 *    │  mkdtemp /tmp/pc-soak.XXXXXX: prefixcache.sock, daemon.log
 *    ├──► prefixcached --endpoint=ipc://DIR/prefixcache.sock (default pool
 *    │       name, so that a restart finds the dead daemon's pool and
 *    │       reclaims it), small host pool, short lease_ttl_ms
 *    ├──► client 0 .. N-1 (fork) ── lifecycles ──► slot[i] in a MAP_SHARED
 *    │       ▲                                     page: counters the
 *    │       │ SIGKILL one every ~kill-every-ms    supervisor sums (they
 *    │       │ (preferably one inside a lease),    survive the kill)
 *    │       │ a fresh one in its slot
 *    │    phase "restart" only: SIGKILL the daemon every ~restart-every-ms,
 *    │       start it again at once on the same endpoint
 *    └──► end of a phase: stop flag, clients exit, wait for the TTL, then
 *         STATS (check: true): no lease, no pin, nothing leased,
 *         free + cached = capacity, check 0, no corrupt read
 *
 * A client's lifecycle (one prompt: a system prompt shared by many, then a
 * tail that is sometimes shared and sometimes fresh):
 *
 *   lookup(pin, alloc) ─► verify every hit page ─► write every new page
 *     ─► abandon (10%) | insert(release) | insert(pin) and hold, renewing
 *        and re-verifying, then release or abandon
 *   (20% of lifecycles are pure readers: lookup(pin), verify, release)
 *
 * A page's bytes are a pure function of its whole token prefix (a hash
 * chain over the tokens up to and including the page, expanded with
 * splitmix64), so any reader can check any hit without knowing who wrote it.
 * A mismatch counts as a corrupt read only when it is certain: the lease
 * still renews afterwards (so the pin held throughout the read) and the
 * client's mapping is still the live pool.  Otherwise it is "unverifiable"
 * (the lease expired while a loaded machine descheduled us, or the daemon
 * restarted under us).
 *
 * Restarts: the daemon refuses a client's lookup and insert with PC_E_STALE
 * once it is not the one the client said hello to (protocol 1.3); soak
 * also checks independently, which is how it found the hazard before 1.3:
 * a new daemon unlinks the dead one's pool object and creates a
 * new one under the same name before it answers anything.  A client holds
 * an fd of the object it mapped (opened before and after hello, same inode:
 * the library mapped that very object); st_nlink 0 on it means "a new
 * daemon answers now, my block ids and my mapping are stale": it drops its
 * client, connects again and says hello (PROTOCOL.md 2.5).  It checks after
 * every lookup, and after writing and before inserting, so that a write
 * through a stale mapping is never inserted into the new daemon.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
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
#include "proto/wire.h"
#include "rpc/client.h"

#ifndef PC_DAEMON_PATH
#define PC_DAEMON_PATH "prefixcached"
#endif

/* The daemon's shape: tiny blocks (2 x 2 layers x 2 heads x 16 dims x 4
 * tokens x fp16 = 1 KiB), so that a small pool is cheap and checks fast. */
#define PAGE_TOKENS 4u
#define MAX_CLIENTS 64
#define N_SYS 4          /* system prompts                               */
#define N_TAILS 48       /* shared tails (the rest are fresh)            */
#define MAX_TAIL_PAGES 6
#define MAX_PAGES (2 + 2 * (N_SYS - 1) + MAX_TAIL_PAGES) /* 14           */
#define MAX_TOKENS (MAX_PAGES * PAGE_TOKENS + PAGE_TOKENS - 1)
#define N_ERR 32         /* errors by -code                              */
#define NS "soak"

/* ---- configuration ---------------------------------------------------------- */

static struct {
    unsigned clients;
    double seconds;
    unsigned kill_every_ms, restart_every_ms, ttl_ms, pool_blocks;
    unsigned rpc_timeout_ms;
    uint64_t seed;
    const char *json, *daemon;
    bool keep; /* keep the run directory */
    unsigned inject; /* 1 in N new pages written wrong (the detector's test) */
    bool events;     /* KV events on, with a subscriber (--events) */
} C = {4, 10, 300, 0, 500, 160, 5000, 1, NULL, PC_DAEMON_PATH, false, 0, false};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: soak [--clients N] [--seconds S] [--kill-every-ms MS]\n"
            "            [--restart-every-ms MS] [--ttl-ms MS] [--pool-blocks N]\n"
            "            [--rpc-timeout-ms MS] [--seed N] [--json PATH]\n"
            "            [--daemon PATH] [--keep] [--inject-corruption N] [--events]\n"
            "Phase \"kill\" (always): N clients for S seconds, one SIGKILLed every\n"
            "~kill-every-ms (0: never).  Phase \"restart\" (restart-every-ms > 0):\n"
            "the same for another S seconds, the daemon SIGKILLed and restarted\n"
            "every ~restart-every-ms.  Exit 0 when every criterion holds, 1 if not,\n"
            "2 on a usage error.  --keep keeps the run directory (daemon log).\n"
            "--inject-corruption N: 1 in N new pages is written with wrong bytes\n"
            "(a test of the checker: the run must then fail).\n"
            "--events: KV events on (a PUB and a replay socket in the run\n"
            "directory) and a subscriber reading them throughout; each phase\n"
            "then also wants batches published and none of its pages unnamed.\n"
            "SOAK_DEBUG=1 in the environment: a line per client connect, hello,\n"
            "error and daemon restart, with times.\n");
}

/* ---- what clients and the supervisor share ---------------------------------------- */

typedef struct slot {
    uint64_t requests, lifecycles, lookups, hit_pages, verified, corrupt,
        unverifiable, inserts, inserted_pages, released, abandoned, held,
        renewed, lease_lost, reconnects, stale, hellos;
    uint64_t errors[N_ERR]; /* by -code                                   */
    uint64_t in_lease;      /* 1 while holding a lease (kill preference)  */
} slot;

typedef struct shared {
    uint64_t stop;
    uint64_t ev_batches; /* KV-event batches the subscriber got (--events) */
    slot s[MAX_CLIENTS];
} shared;

static shared *g_sh;
#define ADD(sl, f, n) __atomic_fetch_add(&(sl)->f, (uint64_t)(n), __ATOMIC_RELAXED)
#define GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* ---- the run: files and the daemon -------------------------------------------------- */

static char g_dir[64], g_endpoint[160], g_log[128], g_pool[256], g_shm_path[300];
static pid_t g_daemon_pid;
static pid_t g_client_pid[MAX_CLIENTS];
static pid_t g_sub_pid; /* the KV-events subscriber (--events) */
static uint64_t g_block_bytes, g_capacity;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static double now_s(void) { return (double)bench_now_ns() / 1e9; }

/* Whatever a dying supervisor leaves: its children die with it
 * (PR_SET_PDEATHSIG); the daemon's files are removed here. */
static void on_die(void)
{
    if (g_daemon_pid > 0) {
        kill(g_daemon_pid, SIGKILL);
        waitpid(g_daemon_pid, NULL, 0);
        g_daemon_pid = 0;
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (g_client_pid[i] > 0)
            kill(g_client_pid[i], SIGKILL), waitpid(g_client_pid[i], NULL, 0);
    if (g_sub_pid > 0)
        kill(g_sub_pid, SIGKILL), waitpid(g_sub_pid, NULL, 0);
    if (g_pool[0])
        shm_unlink(g_pool);
    fprintf(stderr, "soak: run directory kept: %s\n", g_dir);
}

/* --events: a SUB on the daemon's events socket, counting batches (three
 * frames each) in the shared page, across restarts (libzmq reconnects to
 * the new daemon's socket), until killed. */
static pid_t spawn_subscriber(void)
{
    pid_t parent = getpid(), pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    char ep[300];
    snprintf(ep, sizeof ep, "ipc://%s/events.sock", g_dir);
    void *ctx = zmq_ctx_new(), *sub = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sub || zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0) || zmq_connect(sub, ep))
        _exit(1);
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sub, 0) >= 0 && !zmq_msg_more(&m))
            ADD(g_sh, ev_batches, 1);
        zmq_msg_close(&m);
    }
}

static pid_t spawn_daemon(void)
{
    char a[14][200];
    int k = 0;
    snprintf(a[k++], sizeof a[0], "--endpoint=%s", g_endpoint);
    snprintf(a[k++], sizeof a[0], "--pool_backend=host");
    snprintf(a[k++], sizeof a[0], "--pool_blocks=%u", C.pool_blocks);
    snprintf(a[k++], sizeof a[0], "--layers=2");
    snprintf(a[k++], sizeof a[0], "--kv_heads=2");
    snprintf(a[k++], sizeof a[0], "--head_dim=16");
    snprintf(a[k++], sizeof a[0], "--dtype=fp16");
    snprintf(a[k++], sizeof a[0], "--page_tokens=%u", PAGE_TOKENS);
    snprintf(a[k++], sizeof a[0], "--lease_ttl_ms=%u", C.ttl_ms);
    snprintf(a[k++], sizeof a[0], "--log_level=info");
    if (C.events) {
        snprintf(a[k++], sizeof a[0], "--kv_events_endpoint=ipc://%s/events.sock", g_dir);
        snprintf(a[k++], sizeof a[0], "--kv_events_replay_endpoint=ipc://%s/replay.sock",
                 g_dir);
    }
    char *argv[16];
    argv[0] = (char *)C.daemon;
    for (int i = 0; i < k; i++)
        argv[i + 1] = a[i];
    argv[k + 1] = NULL;
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int in = open("/dev/null", O_RDONLY);
        int out = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (in < 0 || out < 0)
            _exit(127);
        dup2(in, 0), dup2(out, 1), dup2(out, 2);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Until the daemon answers ping (bounded: an ASan or valgrind daemon on a
 * loaded machine takes seconds).  false if it died or never answered. */
static bool wait_ready(pid_t pid, int timeout_ms)
{
    uint64_t end = bench_now_ns() + (uint64_t)timeout_ms * 1000000;
    while (bench_now_ns() < end) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        pc_client *c;
        if (pc_client_connect(g_endpoint, 250, &c) == 0) {
            int rc = pc_client_ping(c);
            pc_client_close(c);
            if (rc == 0)
                return true;
        }
        sleep_ms(20);
    }
    return false;
}

/* ---- prompts and the expected bytes ------------------------------------------------- */

typedef struct prompt {
    uint32_t tok[MAX_TOKENS];
    size_t n, pages;
    uint64_t seed[MAX_PAGES]; /* per full page: hash of the prefix up to it */
    int sys, tail;            /* tail: -1 fresh                          */
} prompt;

static uint32_t token_of(uint64_t stream, uint64_t i)
{
    return (uint32_t)(bench_mix64(stream * 0x9e3779b97f4a7c15ULL + i) % 32000u);
}

/* A system prompt (2..8 pages), then a tail of 1..6 pages and a partial
 * page (0..3 tokens), which the cache ignores; half of the tails come from
 * a shared set, so that whole prompts hit too. */
static void make_prompt(prompt *p, uint64_t *rng)
{
    uint64_t r = bench_rng_next(rng);
    p->sys = (int)(r % N_SYS);
    size_t sys_tok = (2 + 2 * (size_t)p->sys) * PAGE_TOKENS;
    p->tail = (r >> 8) & 1 ? (int)((r >> 16) % N_TAILS) : -1;
    uint64_t tail_stream = p->tail >= 0 ? 1000 + (uint64_t)p->tail
                                        : (bench_rng_next(rng) | 1ull << 63);
    uint64_t tr = bench_mix64(tail_stream);
    size_t tail_tok = (1 + tr % MAX_TAIL_PAGES) * PAGE_TOKENS + (tr >> 8) % PAGE_TOKENS;
    p->n = sys_tok + tail_tok;
    for (size_t i = 0; i < sys_tok; i++)
        p->tok[i] = token_of(1 + (uint64_t)p->sys, i);
    for (size_t i = 0; i < tail_tok; i++)
        p->tok[sys_tok + i] = token_of(tail_stream, i);
    p->pages = p->n / PAGE_TOKENS;
    /* the chain: every token of the prefix feeds the page's seed */
    uint64_t h = bench_mix64(C.seed ^ 0x736f616b); /* the namespace "soak" */
    for (size_t pg = 0; pg < p->pages; pg++) {
        for (size_t i = pg * PAGE_TOKENS; i < (pg + 1) * PAGE_TOKENS; i++)
            h = bench_mix64(h + p->tok[i] + 0x9e3779b97f4a7c15ULL);
        p->seed[pg] = h;
    }
}

static void fill_block(uint64_t *w, size_t nw, uint64_t seed)
{
    for (size_t i = 0; i < nw; i++)
        w[i] = bench_mix64(seed ^ (i * 0x9e3779b97f4a7c15ULL));
}

/* ---- a client --------------------------------------------------------------------- */

typedef struct client {
    pc_client *c;
    int pool_fd; /* the object the library mapped: st_nlink 0 = stale */
    size_t nw;   /* 64-bit words in a block */
    slot *sl;
    uint64_t rng;
    uint64_t *expect;
} client;

static bool stopping(void) { return GET(g_sh->stop) != 0; }

static void count_err(client *k, int rc)
{
    int i = -rc;
    if (getenv("SOAK_DEBUG"))
        fprintf(stderr, "[soak %.3f] client %ld: %s (%s)\n", now_s(), (long)getpid(),
                pc_errname(rc), k->c ? pc_client_last_error(k->c) : "");
    ADD(k->sl, errors[i > 0 && i < N_ERR ? i : 0], 1);
}

static void drop(client *k)
{
    if (k->c)
        pc_client_close(k->c), k->c = NULL;
    if (k->pool_fd >= 0)
        close(k->pool_fd), k->pool_fd = -1;
}

static bool stale(const client *k)
{
    struct stat st;
    return k->pool_fd < 0 || fstat(k->pool_fd, &st) != 0 || st.st_nlink == 0;
}

static ino_t ino_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* A new pc_client, hello, and proof that the library mapped the object we
 * hold: the pool name led to the same inode before and after the hello. */
static void connect_client(client *k, bool again)
{
    drop(k);
    if (again)
        ADD(k->sl, reconnects, 1);
    if (getenv("SOAK_DEBUG"))
        fprintf(stderr, "[soak %.3f] client %ld: %s\n", now_s(), (long)getpid(),
                again ? "reconnect" : "connect");
    for (unsigned backoff = 10; !stopping(); backoff = backoff < 200 ? backoff * 2 : 200) {
        int fd1 = shm_open(g_pool, O_RDONLY | O_CLOEXEC, 0);
        if (fd1 < 0) { /* no daemon right now */
            sleep_ms(backoff);
            continue;
        }
        pc_hello h;
        int rc = pc_client_connect(g_endpoint, (int)C.rpc_timeout_ms, &k->c);
        if (rc == 0) {
            ADD(k->sl, requests, 1);
            ADD(k->sl, hellos, 1);
            rc = pc_client_hello(k->c, &h);
        }
        if (rc == 0) {
            int fd2 = shm_open(g_pool, O_RDONLY | O_CLOEXEC, 0);
            bool same = fd2 >= 0 && ino_of(fd1) == ino_of(fd2) && ino_of(fd1) != 0;
            if (fd2 >= 0)
                close(fd2);
            if (same && h.block_bytes == g_block_bytes && strcmp(h.shm_name, g_pool) == 0) {
                k->pool_fd = fd1;
                if (getenv("SOAK_DEBUG"))
                    fprintf(stderr, "[soak %.3f] client %ld: hello, pool inode %lu\n",
                            now_s(), (long)getpid(), (unsigned long)ino_of(fd1));
                return;
            }
        } else {
            count_err(k, rc);
        }
        close(fd1);
        if (k->c)
            pc_client_close(k->c), k->c = NULL;
        sleep_ms(backoff);
    }
}

/* Renew the lease (a lookup naming it, without pin or alloc). */
static int renew(client *k, const prompt *p, uint64_t lease)
{
    pc_client_lookup_result r;
    ADD(k->sl, requests, 1);
    int rc = pc_client_lookup(k->c, NS, strlen(NS), p->tok, PAGE_TOKENS, 0, lease, &r);
    if (rc)
        count_err(k, rc);
    return rc;
}

/* Check pages [from, from + n) of p, held pinned under lease in ids[]. */
static void verify(client *k, const prompt *p, const uint32_t *ids, size_t from,
                   size_t n, uint64_t lease)
{
    for (size_t i = 0; i < n; i++) {
        size_t pg = from + i;
        const uint64_t *b = pc_client_block(k->c, ids[i]);
        fill_block(k->expect, k->nw, p->seed[pg]);
        if (b && memcmp(b, k->expect, k->nw * 8) == 0) {
            ADD(k->sl, verified, 1);
            continue;
        }
        size_t w = 0;
        while (b && w < k->nw && b[w] == k->expect[w])
            w++;
        uint64_t got = b && w < k->nw ? b[w] : 0;
        /* certain only if the pin held throughout and the mapping is live */
        if (renew(k, p, lease) == 0 && !stale(k)) {
            ADD(k->sl, corrupt, 1);
            fprintf(stderr,
                    "soak: CORRUPT READ pid %ld: block %u, page %zu of a %zu-token "
                    "prompt (system %d, tail %d), prefix hash %016" PRIx64
                    ": word %zu is %016" PRIx64 ", expected %016" PRIx64 "\n",
                    (long)getpid(), ids[i], pg, p->n, p->sys, p->tail, p->seed[pg],
                    w, got, k->expect[w < k->nw ? w : 0]);
        } else {
            ADD(k->sl, unverifiable, 1);
        }
        return; /* the rest is as uncertain (or already damning) */
    }
}

static unsigned rnd(client *k, unsigned n)
{
    return (unsigned)(bench_rng_next(&k->rng) % n);
}

/* Hold the pinned prompt for a while, renewing and re-verifying: a pinned
 * page must keep its bytes however long it is held. */
static bool hold(client *k, const prompt *p, const uint32_t *ids, uint64_t lease)
{
    ADD(k->sl, held, 1);
    /* mostly short; one in four past the TTL, living on renewals alone */
    unsigned total = rnd(k, 4) ? rnd(k, C.ttl_ms / 2 + 1) : C.ttl_ms + rnd(k, C.ttl_ms / 2 + 1);
    unsigned step = C.ttl_ms / 4 ? C.ttl_ms / 4 : 1;
    for (unsigned t = 0; t < total && !stopping(); t += step) {
        sleep_ms(total - t < step ? total - t : step);
        if (renew(k, p, lease) != 0) {
            ADD(k->sl, lease_lost, 1);
            return false;
        }
        ADD(k->sl, renewed, 1);
        verify(k, p, ids, 0, p->pages, lease);
    }
    return true;
}

static void finish(client *k, uint64_t lease)
{
    if (!lease)
        return;
    if (rnd(k, 10) < 6) {
        ADD(k->sl, requests, 1);
        int rc = pc_client_release(k->c, lease);
        if (rc)
            count_err(k, rc);
        else
            ADD(k->sl, released, 1);
    } else {
        ADD(k->sl, abandoned, 1);
    }
}

static void lifecycle(client *k)
{
    prompt p;
    uint32_t ids[MAX_PAGES], canon[MAX_PAGES];
    make_prompt(&p, &k->rng);
    ADD(k->sl, lifecycles, 1);
    if (stale(k)) { /* a new daemon since our hello */
        ADD(k->sl, stale, 1);
        connect_client(k, true);
        return;
    }
    bool reader = rnd(k, 10) < 2;
    pc_client_lookup_result r;
    ADD(k->sl, requests, 1);
    ADD(k->sl, lookups, 1);
    int rc = pc_client_lookup(k->c, NS, strlen(NS), p.tok, p.n,
                              PC_CLIENT_PIN | (reader ? 0 : PC_CLIENT_ALLOC), 0, &r);
    if (rc == PC_E_STALE) { /* the protocol's own word for a restart (1.3) */
        count_err(k, rc);
        connect_client(k, true);
        return;
    }
    if (rc) {
        count_err(k, rc);
        return;
    }
    uint64_t lease = r.lease;
    __atomic_store_n(&k->sl->in_lease, lease != 0, __ATOMIC_RELAXED);
    size_t np = r.pages, na = reader ? 0 : r.n_alloc;
    int ast = reader ? 0 : r.alloc_status;
    memcpy(ids, r.blocks, np * sizeof ids[0]);
    if (na)
        memcpy(ids + np, r.alloc_blocks, na * sizeof ids[0]);
    ADD(k->sl, hit_pages, np);
    if (stale(k)) { /* the ids may be a new daemon's: not in our mapping */
        ADD(k->sl, stale, 1);
        connect_client(k, true);
        return;
    }
    verify(k, &p, ids, 0, np, lease);
    if (ast < 0 || reader || np + na != p.pages) {
        if (ast < 0)
            count_err(k, ast);
        finish(k, lease);
        goto out;
    }
    for (size_t i = 0; i < na; i++) { /* a kill may land half-way: never inserted */
        uint64_t *b = pc_client_block(k->c, ids[np + i]);
        if (b)
            fill_block(b, k->nw, p.seed[np + i]);
        if (b && C.inject && rnd(k, C.inject) == 0)
            b[rnd(k, (unsigned)k->nw)] ^= 1; /* one bit: the checker must see it */
    }
    if (rnd(k, 10) == 0) { /* the engine walks away: the TTL ends the lease */
        ADD(k->sl, abandoned, 1);
        goto out;
    }
    if (stale(k)) { /* we wrote through a dead pool: insert nothing */
        ADD(k->sl, stale, 1);
        connect_client(k, true);
        return;
    }
    bool pin = rnd(k, 10) == 0 && lease;
    pc_client_insert_result ir;
    ADD(k->sl, requests, 1);
    ADD(k->sl, inserts, 1);
    rc = pc_client_insert(k->c, NS, strlen(NS), p.tok, p.n, ids, lease,
                          pin ? PC_CLIENT_PIN : PC_CLIENT_RELEASE, canon, &ir);
    if (rc == PC_E_STALE) {
        count_err(k, rc);
        connect_client(k, true);
        return;
    }
    if (rc) {
        count_err(k, rc);
        if (rc != PC_E_LEASE) /* a lease that is gone needs no end */
            finish(k, lease);
        goto out;
    }
    ADD(k->sl, inserted_pages, ir.inserted_pages);
    if (!pin) {
        ADD(k->sl, released, 1);
        goto out;
    }
    /* canon: the ids the tree keeps (a duplicate's, when another client
     * inserted the page first), all pinned under our lease now */
    verify(k, &p, canon, 0, p.pages, lease);
    if (hold(k, &p, canon, lease))
        finish(k, lease);
out:
    __atomic_store_n(&k->sl->in_lease, 0, __ATOMIC_RELAXED);
}

static _Noreturn void client_main(int idx, uint64_t seed)
{
    client k = {.pool_fd = -1, .sl = &g_sh->s[idx], .rng = seed};
    k.nw = g_block_bytes / 8;
    k.expect = bench_xmalloc(g_block_bytes);
    connect_client(&k, false);
    while (!stopping())
        lifecycle(&k);
    drop(&k);
    free(k.expect);
    _exit(0);
}

/* ---- the supervisor ---------------------------------------------------------------- */

static uint64_t g_spawned;

static pid_t spawn_client(int idx)
{
    /* no ZeroMQ context is alive here: the child starts its own cleanly */
    fflush(NULL);
    uint64_t seed = bench_mix64(C.seed * 1000003 + ++g_spawned);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        client_main(idx, seed);
    }
    return pid;
}

/* Stats into a small table (pc_client_stats). */
#define MAX_STATS 512
typedef struct stats {
    int n;
    char name[MAX_STATS][64];
    uint64_t v[MAX_STATS];
    int64_t check; /* INT64_MIN: none */
} stats;

static void stat_add(void *ctx, const char *name, uint64_t v)
{
    stats *s = ctx;
    if (s->n < MAX_STATS) {
        snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
        s->v[s->n++] = v;
    }
}

static uint64_t stat_of(const stats *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name))
            return s->v[i];
    return UINT64_MAX;
}

static int get_stats(stats *s)
{
    pc_client *c;
    s->n = 0;
    int rc = pc_client_connect(g_endpoint, (int)C.rpc_timeout_ms, &c);
    if (rc)
        return rc;
    rc = pc_client_stats(c, stat_add, s);
    pc_client_close(c);
    return rc;
}

/* STATS with check: true (pc_cache_check): the check's verdict, or
 * INT64_MIN when the daemon could not be asked. */
static int64_t daemon_check(void)
{
    pc_client *c;
    int64_t verdict = INT64_MIN;
    if (pc_client_connect(g_endpoint, (int)C.rpc_timeout_ms * 4, &c) == 0) {
        if (pc_client_stats_check(c, NULL, NULL, &verdict) != 0)
            verdict = INT64_MIN;
        pc_client_close(c);
    }
    return verdict;
}

/* The log's occurrences of needle. */
static unsigned log_count(const char *needle)
{
    FILE *f = fopen(g_log, "r");
    unsigned n = 0;
    char line[4096];
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* The daemon log's last max bytes to stderr. */
static void dump_log_tail(long max)
{
    FILE *f = fopen(g_log, "r");
    if (!f)
        return;
    fprintf(stderr, "---- the daemon's log (%s), last %ld bytes ----\n", g_log, max);
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > max)
        fseek(f, -max, SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fclose(f);
    fprintf(stderr, "---- end of the daemon's log ----\n");
}

/* /dev/shm objects named like our pool (the name, or with a suffix). */
static unsigned shm_entries(void)
{
    DIR *d = opendir("/dev/shm");
    unsigned n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, g_pool + 1, strlen(g_pool + 1)) == 0;
    if (d)
        closedir(d);
    return n;
}

/* The /dev/shm object under our pool's name is the one the live daemon
 * holds open (an object left by a dead daemon would be no fd of it). */
static bool shm_is_daemons(void)
{
    struct stat want, st;
    if (stat(g_shm_path, &want) != 0)
        return false;
    char dir[64], path[340];
    snprintf(dir, sizeof dir, "/proc/%ld/fd", (long)g_daemon_pid);
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *e;
    while (d && !found && (e = readdir(d))) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        found = stat(path, &st) == 0 && st.st_dev == want.st_dev &&
                st.st_ino == want.st_ino;
    }
    if (d)
        closedir(d);
    return found;
}

/* ---- a phase ---------------------------------------------------------------------- */

enum { CRIT_MAX = 24 };

typedef struct phase {
    const char *name;
    bool restarts;
    double seconds;
    slot sum;
    uint64_t kills, kills_in_lease, restarts_done, client_failures, stuck,
        daemon_deaths, reclaim_logged;
    stats st;
    int64_t check;
    int ncrit;
    const char *crit[CRIT_MAX];
    bool crit_ok[CRIT_MAX];
    char crit_txt[CRIT_MAX][160];
    bool pass;
} phase;

static void crit(phase *ph, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void crit(phase *ph, bool ok, const char *fmt, ...)
{
    if (ph->ncrit >= CRIT_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ph->crit_txt[ph->ncrit], sizeof ph->crit_txt[0], fmt, ap);
    va_end(ap);
    ph->crit_ok[ph->ncrit++] = ok;
    ph->pass &= ok;
}

static unsigned jitter(uint64_t *rng, unsigned ms)
{
    /* uniform in [ms / 2, 3 ms / 2] */
    return ms / 2 + (unsigned)(bench_rng_next(rng) % (ms + 1));
}

/* During a phase a client ends only by our SIGKILL: anything else (an
 * exit, a crash) is a failure. */
static void reap_client(phase *ph, int i, int status, bool killed_by_us)
{
    if (!(killed_by_us && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
        ph->client_failures++;
        fprintf(stderr, "soak: client %d (pid %ld) ended by itself: status 0x%x\n", i,
                (long)g_client_pid[i], status);
    }
    g_client_pid[i] = 0;
}

static bool restart_daemon(phase *ph)
{
    kill(g_daemon_pid, SIGKILL);
    waitpid(g_daemon_pid, NULL, 0);
    g_daemon_pid = spawn_daemon();
    ph->restarts_done++;
    if (getenv("SOAK_DEBUG"))
        fprintf(stderr, "[soak %.3f] daemon restarted: pid %ld\n", now_s(), (long)g_daemon_pid);
    if (!wait_ready(g_daemon_pid, 60000)) {
        fprintf(stderr, "soak: the restarted daemon did not come up (log %s)\n", g_log);
        return false;
    }
    return true;
}

static void run_phase(phase *ph, uint64_t *rng)
{
    memset(g_sh, 0, sizeof *g_sh);
    ph->pass = true;
    unsigned reclaim0 = log_count("was left by a prefixcached that is gone");
    bench_say("phase %s: %u clients, %.0f s, kill every ~%u ms, restart every ~%u ms",
              ph->name, C.clients, ph->seconds, C.kill_every_ms,
              ph->restarts ? C.restart_every_ms : 0);
    for (unsigned i = 0; i < C.clients; i++)
        g_client_pid[i] = spawn_client((int)i);
    double t0 = now_s(), end = t0 + ph->seconds;
    double next_kill = C.kill_every_ms ? t0 + jitter(rng, C.kill_every_ms) / 1e3 : INFINITY;
    /* The last restart leaves a client time to notice: a request the
     * killed daemon had taken is never answered, so its caller waits out
     * its timeout first.  One restart at least, whatever the numbers. */
    double latest = end - (C.rpc_timeout_ms + 1000) / 1e3;
    double next_restart = INFINITY;
    if (ph->restarts) {
        next_restart = t0 + jitter(rng, C.restart_every_ms) / 1e3;
        if (next_restart > latest)
            next_restart = fmax(latest, t0 + fmin(1.0, ph->seconds / 2));
    }
    bool daemon_ok = true;
    while (now_s() < end && daemon_ok) {
        sleep_ms(5);
        for (unsigned i = 0; i < C.clients; i++) { /* a client that died by itself */
            int st;
            if (g_client_pid[i] > 0 && waitpid(g_client_pid[i], &st, WNOHANG) == g_client_pid[i]) {
                reap_client(ph, (int)i, st, false);
                g_client_pid[i] = spawn_client((int)i);
            }
        }
        if (waitpid(g_daemon_pid, NULL, WNOHANG) == g_daemon_pid) {
            fprintf(stderr, "soak: the daemon died by itself (log %s)\n", g_log);
            ph->daemon_deaths++;
            g_daemon_pid = 0;
            daemon_ok = false;
            break;
        }
        if (now_s() >= next_kill) {
            /* prefer a client inside a lease: that is the case to test */
            unsigned cand[MAX_CLIENTS], nc = 0;
            for (unsigned i = 0; i < C.clients; i++)
                if (GET(g_sh->s[i].in_lease))
                    cand[nc++] = i;
            unsigned v = nc ? cand[bench_rng_next(rng) % nc]
                            : (unsigned)(bench_rng_next(rng) % C.clients);
            bool in_lease = GET(g_sh->s[v].in_lease) != 0;
            kill(g_client_pid[v], SIGKILL);
            int st;
            waitpid(g_client_pid[v], &st, 0);
            reap_client(ph, (int)v, st, true);
            ph->kills++;
            ph->kills_in_lease += in_lease;
            __atomic_store_n(&g_sh->s[v].in_lease, 0, __ATOMIC_RELAXED);
            g_client_pid[v] = spawn_client((int)v);
            next_kill = now_s() + jitter(rng, C.kill_every_ms) / 1e3;
        }
        if (now_s() >= next_restart) {
            daemon_ok = restart_daemon(ph);
            next_restart = now_s() + jitter(rng, C.restart_every_ms) / 1e3;
            if (next_restart > latest)
                next_restart = INFINITY;
        }
    }
    double t1 = now_s();
    /* the clients end their lifecycle (a hold: at most ~2 TTLs, a call:
     * at most its timeout, a reconnect: at once once stop is seen) */
    __atomic_store_n(&g_sh->stop, 1, __ATOMIC_RELAXED);
    int wait_ms = (int)(4 * C.ttl_ms + 4 * C.rpc_timeout_ms + 10000);
    for (unsigned i = 0; i < C.clients; i++) {
        if (!g_client_pid[i])
            continue;
        int st = rpt_reap(g_client_pid[i], wait_ms); /* SIGKILL after */
        if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            ph->stuck++;
            fprintf(stderr, "soak: client %u (pid %ld) did not stop cleanly: status 0x%x\n",
                    i, (long)g_client_pid[i], st);
        }
        g_client_pid[i] = 0;
    }
    ph->seconds = t1 - t0;
    for (unsigned i = 0; i < C.clients; i++) {
        slot *s = &g_sh->s[i];
#define SUM(f) ph->sum.f += s->f
        SUM(requests), SUM(lifecycles), SUM(lookups), SUM(hit_pages), SUM(verified);
        SUM(corrupt), SUM(unverifiable), SUM(inserts), SUM(inserted_pages);
        SUM(released), SUM(abandoned), SUM(held), SUM(renewed), SUM(lease_lost);
        SUM(reconnects), SUM(stale), SUM(hellos);
        for (int e = 0; e < N_ERR; e++)
            SUM(errors[e]);
#undef SUM
    }

    crit(ph, daemon_ok, "the daemon stayed up (restarted only by us)");
    if (!daemon_ok)
        return;
    /* the leases of killed and abandoning clients end by their TTL; expiry
     * runs between requests, so polling the stats drives it */
    sleep_ms(C.ttl_ms + 100);
    uint64_t live = UINT64_MAX, leased = UINT64_MAX;
    uint64_t until = bench_now_ns() + (uint64_t)(3 * C.ttl_ms + 20000) * 1000000;
    while (bench_now_ns() < until) {
        if (get_stats(&ph->st) == 0) {
            live = stat_of(&ph->st, "leases.live");
            leased = stat_of(&ph->st, "pool.blocks.leased");
            if (live == 0 && leased == 0)
                break;
        }
        sleep_ms(100);
    }
    ph->check = daemon_check();
    uint64_t cap = stat_of(&ph->st, "pool.blocks.capacity"),
             fr = stat_of(&ph->st, "pool.blocks.free"),
             ca = stat_of(&ph->st, "pool.blocks.cached"),
             pins = stat_of(&ph->st, "leases.pins");
    crit(ph, ph->sum.corrupt == 0, "corrupt reads: %" PRIu64 " (want 0)", ph->sum.corrupt);
    crit(ph, ph->client_failures == 0, "clients that died by themselves: %" PRIu64,
         ph->client_failures);
    crit(ph, ph->stuck == 0, "clients that did not stop when told (within %d ms): %" PRIu64,
         wait_ms, ph->stuck);
    crit(ph, live == 0, "leases.live after the TTL: %" PRIu64 " (want 0)", live);
    crit(ph, pins == 0, "leases.pins after the TTL: %" PRIu64 " (want 0)", pins);
    crit(ph, leased == 0, "pool.blocks.leased after the TTL: %" PRIu64 " (want 0)", leased);
    crit(ph, cap == g_capacity && fr != UINT64_MAX && ca != UINT64_MAX && fr + ca == cap,
         "free %" PRIu64 " + cached %" PRIu64 " = capacity %" PRIu64, fr, ca, cap);
    crit(ph, ph->check == 0, "the daemon's check (stats check: true): %" PRId64,
         ph->check == INT64_MIN ? (int64_t)-999 : ph->check);
    crit(ph, ph->sum.verified > 0 && ph->sum.hit_pages > 0,
         "pages verified: %" PRIu64 " (want > 0)", ph->sum.verified);
    if (C.events) { /* every page named; a subscriber that keeps up */
        uint64_t evb = stat_of(&ph->st, "events.batches"),
                 lost = stat_of(&ph->st, "events.lost_pages");
        crit(ph, evb != UINT64_MAX && evb > 0 && lost == 0,
             "kv events: %" PRIu64 " batches, %" PRIu64 " pages unnamed (want > 0, 0)",
             evb, lost);
        crit(ph, GET(g_sh->ev_batches) > 0, "batches the subscriber got: %" PRIu64
             " (want > 0)", GET(g_sh->ev_batches));
    }
    if (!ph->restarts) {
        uint64_t ev = stat_of(&ph->st, "tree.evicted_pages");
        crit(ph, ev != UINT64_MAX && ev > 0, "pages evicted: %" PRIu64 " (want > 0: the pool "
             "is small enough)", ev);
    } else {
        ph->reclaim_logged = log_count("was left by a prefixcached that is gone") - reclaim0;
        crit(ph, ph->restarts_done > 0, "daemon restarts: %" PRIu64 " (want > 0)",
             ph->restarts_done);
        crit(ph, ph->reclaim_logged == ph->restarts_done,
             "restarts %" PRIu64 ", stale pools reclaimed (daemon log) %" PRIu64,
             ph->restarts_done, ph->reclaim_logged);
        crit(ph, shm_entries() == 1 && shm_is_daemons(),
             "/dev/shm holds only the live daemon's pool (%u object%s named %s)",
             shm_entries(), shm_entries() == 1 ? "" : "s", g_pool);
    }
}

/* ---- the report ------------------------------------------------------------------- */

static const rpt_style g_style = {.label_w = 40, .ratio_w = 7, .target_w = 10,
                                  .small_digits = 2, .label_cap = 64, .note_cap = 64,
                                  .note_head = "note"};

static size_t phase_rows(const phase *ph, rpt_row *r, char keys[][64])
{
    size_t n = 0;
#define ROW(k, l, u, v, tk)                                                        \
    do {                                                                           \
        snprintf(keys[n], 64, "%s.%s", ph->name, k);                               \
        r[n] = (rpt_row){.key = keys[n], .label = l, .unit = u, .value = (double)(v), \
                         .target_kind = tk, .target = 0};                          \
        n++;                                                                       \
    } while (0)
    ROW("duration", "duration", "s", ph->seconds, RPT_NONE);
    ROW("requests", "requests (every call)", "count", ph->sum.requests, RPT_NONE);
    ROW("lifecycles", "prompt lifecycles", "count", ph->sum.lifecycles, RPT_NONE);
    ROW("hit_pages", "pages hit (pinned)", "count", ph->sum.hit_pages, RPT_NONE);
    ROW("verified_pages", "pages verified", "count", ph->sum.verified, RPT_NONE);
    ROW("corrupt_reads", "corrupt reads", "count", ph->sum.corrupt, RPT_VALUE_LE);
    ROW("unverifiable", "mismatches not provable", "count", ph->sum.unverifiable, RPT_NONE);
    ROW("inserted_pages", "pages inserted", "count", ph->sum.inserted_pages, RPT_NONE);
    ROW("held", "leases held (renewed)", "count", ph->sum.held, RPT_NONE);
    ROW("renewals", "renewals", "count", ph->sum.renewed, RPT_NONE);
    ROW("leases_lost", "renewals refused (lease gone)", "count", ph->sum.lease_lost,
        RPT_NONE);
    ROW("abandoned", "leases abandoned", "count", ph->sum.abandoned, RPT_NONE);
    ROW("kills", "clients SIGKILLed", "count", ph->kills, RPT_NONE);
    ROW("kills_in_lease", "... of them inside a lease", "count", ph->kills_in_lease, RPT_NONE);
    ROW("leases_expired", "leases expired (daemon)", "count",
        stat_of(&ph->st, "leases.expired"), RPT_NONE);
    ROW("evicted_pages", "pages evicted (daemon)", "count",
        stat_of(&ph->st, "tree.evicted_pages"), RPT_NONE);
    ROW("restarts", "daemon restarts", "count", ph->restarts_done, RPT_NONE);
    ROW("stale", "stale mappings seen", "count", ph->sum.stale, RPT_NONE);
    ROW("reconnects", "client reconnects", "count", ph->sum.reconnects, RPT_NONE);
    ROW("client_failures", "clients dead by themselves", "count", ph->client_failures,
        RPT_VALUE_LE);
    uint64_t errs = 0;
    for (int e = 0; e < N_ERR; e++)
        errs += ph->sum.errors[e];
    ROW("errors", "errors (all codes)", "count", errs, RPT_NONE);
#undef ROW
    return n;
}

/* The table: one column per phase; counts print as integers (report.h's
 * number format is made for rates). */
static void print_table(FILE *f, const phase *ph, int nph)
{
    rpt_row rows[2][32];
    char keys[2][32][64];
    size_t n = 0;
    for (int i = 0; i < nph; i++)
        n = phase_rows(&ph[i], rows[i], keys[i]);
    fprintf(f, "\n%-36s", "metric");
    for (int i = 0; i < nph; i++)
        fprintf(f, " %12s", ph[i].name);
    fprintf(f, "\n");
    for (size_t r = 0; r < n; r++) {
        char lbl[80];
        bool count = strcmp(rows[0][r].unit, "count") == 0;
        snprintf(lbl, sizeof lbl, "%s%s%s%s", rows[0][r].label, count ? "" : " (",
                 count ? "" : rows[0][r].unit, count ? "" : ")");
        fprintf(f, "%-36s", lbl);
        for (int i = 0; i < nph; i++) {
            double v = rows[i][r].value;
            if (v == (double)UINT64_MAX)
                fprintf(f, " %12s", "-");
            else if (!count)
                fprintf(f, " %12.1f", v);
            else
                fprintf(f, " %12.0f", v);
        }
        fprintf(f, "\n");
    }
    for (int i = 0; i < nph; i++) {
        fprintf(f, "errors by code (%s):", ph[i].name);
        bool any = false;
        for (int e = 0; e < N_ERR; e++)
            if (ph[i].sum.errors[e]) {
                fprintf(f, " %s %" PRIu64, e ? pc_errname(-e) : "other", ph[i].sum.errors[e]);
                any = true;
            }
        fprintf(f, "%s\n", any ? "" : " none");
    }
    for (int i = 0; i < nph; i++) {
        fprintf(f, "criteria (%s): %s\n", ph[i].name, ph[i].pass ? "PASS" : "FAIL");
        for (int c = 0; c < ph[i].ncrit; c++)
            fprintf(f, "  [%s] %s\n", ph[i].crit_ok[c] ? " ok " : "FAIL", ph[i].crit_txt[c]);
    }
}

static void json_phase(FILE *f, const phase *ph, bool last)
{
    rpt_row rows[32];
    char keys[32][64];
    size_t n = phase_rows(ph, rows, keys);
    fprintf(f, "    {\"name\": ");
    rpt_json_str(f, ph->name);
    fprintf(f, ", \"pass\": %s,\n     \"errors\": {", ph->pass ? "true" : "false");
    bool first = true;
    for (int e = 0; e < N_ERR; e++)
        if (ph->sum.errors[e]) {
            fprintf(f, "%s", first ? "" : ", ");
            rpt_json_str(f, e ? pc_errname(-e) : "other");
            fprintf(f, ": %" PRIu64, ph->sum.errors[e]);
            first = false;
        }
    fprintf(f, "},\n     \"criteria\": [");
    for (int i = 0; i < ph->ncrit; i++) {
        fprintf(f, "%s{\"ok\": %s, \"what\": ", i ? ", " : "",
                ph->crit_ok[i] ? "true" : "false");
        rpt_json_str(f, ph->crit_txt[i]);
        fprintf(f, "}");
    }
    fprintf(f, "],\n     \"metrics\": [\n");
    rpt_json_metrics(f, &g_style, rows, n);
    fprintf(f, "     ]}%s\n", last ? "" : ",");
}

/* ---- main ------------------------------------------------------------------------- */

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && (v || (bench_usage_die("%s needs a value", a), 0)) && ++i)
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            bench_help();
        else if (!strcmp(a, "--keep"))
            C.keep = true;
        else if (OPT("--clients"))
            C.clients = (unsigned)bench_arg_u64(v, a, 1, MAX_CLIENTS);
        else if (OPT("--seconds"))
            C.seconds = (double)bench_arg_u64(v, a, 1, 86400);
        else if (OPT("--kill-every-ms"))
            C.kill_every_ms = (unsigned)bench_arg_u64(v, a, 0, 3600000);
        else if (OPT("--restart-every-ms"))
            C.restart_every_ms = (unsigned)bench_arg_u64(v, a, 0, 3600000);
        else if (OPT("--ttl-ms"))
            C.ttl_ms = (unsigned)bench_arg_u64(v, a, 20, 600000);
        else if (OPT("--pool-blocks"))
            C.pool_blocks = (unsigned)bench_arg_u64(v, a, MAX_PAGES + 2, 1u << 24);
        else if (OPT("--rpc-timeout-ms"))
            C.rpc_timeout_ms = (unsigned)bench_arg_u64(v, a, 100, 600000);
        else if (OPT("--seed"))
            C.seed = bench_arg_u64(v, a, 0, UINT64_MAX);
        else if (OPT("--inject-corruption"))
            C.inject = (unsigned)bench_arg_u64(v, a, 1, UINT32_MAX);
        else if (OPT("--json"))
            C.json = v;
        else if (OPT("--daemon"))
            C.daemon = v;
        else if (!strcmp(a, "--events"))
            C.events = true;
        else
            bench_usage_die("unknown argument %s", a);
#undef OPT
    }
}

int main(int argc, char **argv)
{
    bench_cli_init("soak");
    bench_cli.usage = usage;
    bench_cli.main_pid = getpid();
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);

    snprintf(g_dir, sizeof g_dir, "/tmp/pc-soak.XXXXXX");
    if (!mkdtemp(g_dir))
        bench_die("mkdtemp: %s", strerror(errno));
    bench_cli.on_die = on_die;
    snprintf(g_endpoint, sizeof g_endpoint, "ipc://%s/prefixcache.sock", g_dir);
    snprintf(g_log, sizeof g_log, "%s/daemon.log", g_dir);
    g_sh = mmap(NULL, sizeof *g_sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_sh == MAP_FAILED)
        bench_die("mmap: %s", strerror(errno));

    double t_start = now_s();
    g_daemon_pid = spawn_daemon();
    if (!wait_ready(g_daemon_pid, 60000))
        bench_die("%s did not start (log %s)", C.daemon, g_log);
    { /* the pool's name and layout, as every client will see them */
        pc_client *c;
        pc_hello h;
        if (pc_client_connect(g_endpoint, (int)C.rpc_timeout_ms, &c) ||
            pc_client_hello(c, &h))
            bench_die("hello: %s", "no answer");
        snprintf(g_pool, sizeof g_pool, "%s", h.shm_name);
        g_block_bytes = h.block_bytes;
        g_capacity = h.capacity;
        pc_client_close(c);
        if (strcmp(h.backend, "host") || g_pool[0] != '/' || g_block_bytes % 8)
            bench_die("unexpected pool: backend %s, name %s", h.backend, g_pool);
        snprintf(g_shm_path, sizeof g_shm_path, "/dev/shm%s", g_pool);
    }
    bench_say("daemon %s on %s, pool %s: %" PRIu64 " blocks of %" PRIu64 " bytes, TTL %u ms",
              C.daemon, g_endpoint, g_pool, g_capacity, g_block_bytes, C.ttl_ms);

    if (C.events)
        g_sub_pid = spawn_subscriber();
    uint64_t rng = bench_mix64(C.seed ^ 0x5eed);
    phase ph[2] = {{.name = "kill", .restarts = false, .seconds = C.seconds},
                   {.name = "restart", .restarts = true, .seconds = C.seconds}};
    int nph = C.restart_every_ms ? 2 : 1;
    for (int i = 0; i < nph; i++) {
        run_phase(&ph[i], &rng);
        if (!g_daemon_pid)
            break;
    }

    if (g_sub_pid > 0) {
        kill(g_sub_pid, SIGKILL);
        waitpid(g_sub_pid, NULL, 0);
        g_sub_pid = 0;
    }
    /* the end: SIGTERM, exit 0, the pool and the socket removed */
    bool clean = false;
    unsigned san = 0;
    if (g_daemon_pid > 0) {
        kill(g_daemon_pid, SIGTERM);
        int st = rpt_reap(g_daemon_pid, 60000);
        g_daemon_pid = 0;
        char sock[200];
        snprintf(sock, sizeof sock, "%s/prefixcache.sock", g_dir);
        clean = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && shm_entries() == 0 &&
                access(sock, F_OK) != 0;
        if (!clean)
            fprintf(stderr, "soak: the daemon's SIGTERM exit: status 0x%x, %u pool object%s "
                    "left, socket %s\n", st, shm_entries(), shm_entries() == 1 ? "" : "s",
                    access(sock, F_OK) == 0 ? "left" : "gone");
    }
    san = log_count("ERROR: AddressSanitizer") + log_count("ERROR: LeakSanitizer") +
          log_count("runtime error:");
    bool pass = clean && san == 0;
    for (int i = 0; i < nph; i++)
        pass &= ph[i].pass;

    printf("soak: seed %" PRIu64 ", %u clients, TTL %u ms, pool %u blocks, %.1f s in all\n",
           C.seed, C.clients, C.ttl_ms, C.pool_blocks, now_s() - t_start);
    print_table(stdout, ph, nph);
    printf("\nend: SIGTERM exit clean (status 0, pool and socket removed): %s; sanitizer "
           "reports in the daemon's log: %u\nsoak: %s\n", clean ? "yes" : "NO", san,
           pass ? "PASS" : "FAIL");
    if (C.json) {
        FILE *f = fopen(C.json, "w");
        if (!f)
            bench_die("%s: %s", C.json, strerror(errno));
        fprintf(f, "{\n  \"bench\": \"soak\",\n  \"seed\": %" PRIu64 ",\n  \"clients\": %u,\n"
                   "  \"ttl_ms\": %u,\n  \"pool_blocks\": %u,\n  \"kill_every_ms\": %u,\n"
                   "  \"restart_every_ms\": %u,\n  \"clean_exit\": %s,\n  \"pass\": %s,\n"
                   "  \"phases\": [\n",
                C.seed, C.clients, C.ttl_ms, C.pool_blocks, C.kill_every_ms,
                C.restart_every_ms, clean ? "true" : "false", pass ? "true" : "false");
        for (int i = 0; i < nph; i++)
            json_phase(f, &ph[i], i == nph - 1);
        fprintf(f, "  ]\n}\n");
        if (fclose(f))
            bench_die("%s: %s", C.json, strerror(errno));
    }
    /* an injected run fails on purpose: nothing to keep */
    if ((pass || C.inject) && !C.keep) {
        unlink(g_log);
        char sock[200];
        snprintf(sock, sizeof sock, "%s/prefixcache.sock.lock", g_dir);
        unlink(sock);
        rmdir(g_dir);
    } else {
        dump_log_tail(8192); /* what CI shows of a failure */
        fprintf(stderr, "soak: run directory kept: %s\n", g_dir);
    }
    munmap(g_sh, sizeof *g_sh);
    return pass ? 0 : 1;
}

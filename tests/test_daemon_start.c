/*
 * tests/test_daemon_start.c - prefixcached's start-up against crashes and
 * against other local users (issue 11: a crash leaves a pool, a socket and
 * a lock behind; a shared /tmp endpoint can be squatted; modes followed the
 * umask).
 *
 *   default_endpoint_rules        pc_rpc_endpoint_from over private test
 *                                 directories: a valid XDG dir; missing,
 *                                 symlinked, group/other-writable, a file,
 *                                 relative, too long: skipped; a missing
 *                                 candidate is created 0700 (even under
 *                                 umask 0); none usable; buf too small;
 *                                 pc_rpc_default_endpoint takes $XDG first
 *   default_endpoint_skips_other_users_dirs   (root) a dir of another uid,
 *                                 as XDG or squatted in advance: skipped
 *   restart_after_kill9           `prefixcached` with no argument at all,
 *                                 kill -9, the same again: it starts,
 *                                 reclaims the pool (same name, zero bytes)
 *                                 and the socket; the connected pc_client
 *                                 reconnects, its old lease is PC_E_LEASE,
 *                                 it says hello, maps the new pool, and
 *                                 lookup/alloc/insert/release work
 *   squatter_can_neither_block_nor_impersonate   (root) uid B owns
 *                                 /tmp/prefixcache-<A>, binds a fake daemon
 *                                 there and holds its lock; then B owns the
 *                                 default pool name: A's daemon starts both
 *                                 times, A's engine finds the real daemon,
 *                                 the fake sees no request
 *   squatted_lock_file_is_refused  (root) an explicit endpoint in /tmp whose
 *                                 lock file another uid made: a clear error
 *   modes_ignore_the_umask        under umask 000 the socket, its lock and
 *                                 the pool are 0600
 *   group_engines_connect_and_map  (root) socket_mode/pool_mode 0660 with
 *                                 socket_group/pool_group G: an engine under
 *                                 another uid in G connects, maps and works;
 *                                 one outside G can do neither
 *   bad_group_is_a_start_error    an unknown group name: exit 1, named
 *
 * Tests that need root (to act as other uids, via fork + setuid) skip
 * cleanly otherwise.  Children report through their exit status (and a
 * pipe); Criterion assertions run in the test worker only.  Nothing here
 * uses machine-wide paths (/run/prefixcache): the default endpoint is
 * steered with XDG_RUNTIME_DIR and HOME into directories the test owns.
 */
#include "tests/harness/harness.h"
#include "tests/harness/client_check.h"

#include "blockpool/blockpool.h"
#include "rpc/client.h"

#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/file.h>

#define NOBODY 65534u
#define CHILD_MS 20000

/* ---- cleanup: directories, children and shm objects a test made --------- */

#define NAME_MAX_ (PC_POOL_SHM_NAME_MAX + 1)
static char g_dirs[6][NAME_MAX_];
static pid_t g_kids[4];
static char g_shm[4][NAME_MAX_];

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    for (size_t i = 0; i < HD_NELEM(g_kids); i++)
        if (g_kids[i] > 0) {
            kill(g_kids[i], SIGKILL);
            waitpid(g_kids[i], NULL, 0);
            g_kids[i] = 0;
        }
    hd_cleanup();
    for (size_t i = 0; i < HD_NELEM(g_shm); i++)
        if (g_shm[i][0]) {
            shm_unlink(g_shm[i]);
            g_shm[i][0] = 0;
        }
    for (size_t i = 0; i < HD_NELEM(g_dirs); i++)
        if (g_dirs[i][0]) {
            rm_tree(g_dirs[i]);
            g_dirs[i][0] = 0;
        }
}

TestSuite(start, .fini = cleanup, .timeout = 90);

/* Keep name in the first free slot of tab (n slots) for cleanup. */
static void remember(char (*tab)[NAME_MAX_], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!tab[i][0]) {
            snprintf(tab[i], NAME_MAX_, "%s", name);
            return;
        }
    cr_assert_fail("too many names to clean up");
}
#define track_dir(p) remember(g_dirs, HD_NELEM(g_dirs), (p))
#define track_shm(p) remember(g_shm, HD_NELEM(g_shm), (p))

/* A fresh private directory /tmp/pc-start-<pid>-XXXXXX (removed by fini). */
static void tmp_dir(char *out, size_t len)
{
    snprintf(out, len, "/tmp/pc-start-%ld-XXXXXX", (long)getpid());
    cr_assert(mkdtemp(out), "mkdtemp: %s", strerror(errno));
    track_dir(out);
}

static void need_root(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root: acts as other uids through fork + setuid");
}

/* A uid with no account and no /tmp/prefixcache-<uid>: nobody else's. */
static uid_t free_uid(uid_t from)
{
    char p[64];
    for (uid_t u = from;; u++) {
        snprintf(p, sizeof(p), "/tmp/prefixcache-%lu", (unsigned long)u);
        if (!getpwuid(u) && !hd_exists(p))
            return u;
    }
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "lstat %s: %s", path, strerror(errno));
    return st.st_mode & 07777;
}

/* ---- other uids ------------------------------------------------------------ */

typedef struct who {
    uid_t uid;
    gid_t gid;
    gid_t groups[2];
    int ngroups;
    const char *home; /* NULL: unchanged                          */
    const char *xdg;  /* NULL: XDG_RUNTIME_DIR unset              */
} who;

/* In a child: become w (for hd_child_setup too). */
static int become(void *ctx)
{
    const who *w = ctx;
    if (setgroups((size_t)w->ngroups, w->groups) != 0 || setgid(w->gid) != 0 ||
        setuid(w->uid) != 0)
        return -1;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a uid change cleared it */
    if (w->home)
        setenv("HOME", w->home, 1);
    if (w->xdg)
        setenv("XDG_RUNTIME_DIR", w->xdg, 1);
    else
        unsetenv("XDG_RUNTIME_DIR");
    return 0;
}

typedef int (*child_fn)(void *ctx, int out_fd);

/* fork; the child becomes w (NULL: stays), runs fn and exits with its
 * result.  Returns the child's pid; *out_fd (when not NULL) reads what it
 * wrote. */
static pid_t spawn_child(const who *w, child_fn fn, void *ctx, int *out_fd)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    hd_quiesce(); /* the child uses ZeroMQ: see tests/harness/harness.h */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (w && become((void *)w) != 0) {
            fprintf(stderr, "child: cannot become uid %lu: %s\n",
                    (unsigned long)w->uid, strerror(errno));
            _exit(120);
        }
        _exit(fn(ctx, fds[1]));
    }
    close(fds[1]);
    if (out_fd)
        *out_fd = fds[0];
    else
        close(fds[0]);
    for (size_t i = 0; i < HD_NELEM(g_kids); i++)
        if (!g_kids[i]) {
            g_kids[i] = pid;
            break;
        }
    return pid;
}

/* Wait (bounded) for a child; its exit code, or 1000 + signal. */
static int reap_child(pid_t pid, int timeout_ms)
{
    int st = 0;
    hd_wait_child(pid, timeout_ms, &st); /* a hung one: 1000 + SIGKILL */
    for (size_t i = 0; i < HD_NELEM(g_kids); i++)
        if (g_kids[i] == pid)
            g_kids[i] = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

/* Run fn as w, wait for it; out (may be NULL) gets what it wrote. */
static int run_as(const who *w, child_fn fn, void *ctx, char *out, size_t len)
{
    int fd;
    pid_t pid = spawn_child(w, fn, ctx, &fd);
    size_t got = 0;
    ssize_t n;
    while (out && got + 1 < len && (n = read(fd, out + got, len - 1 - got)) > 0)
        got += (size_t)n;
    if (out)
        out[got] = 0;
    close(fd);
    return reap_child(pid, CHILD_MS);
}

/* ---- an engine in a child (pc_client only, no Criterion) ------------------- */

typedef struct engine {
    const char *endpoint;      /* NULL: pc_rpc_default_endpoint()     */
    const char *want_endpoint; /* with NULL endpoint: what it must be  */
    uint32_t seed;
} engine;

#define ENGINE_FAIL(code, ...)                                                 \
    do {                                                                       \
        fprintf(stderr, "engine (uid %lu): ", (unsigned long)geteuid());       \
        fprintf(stderr, __VA_ARGS__);                                          \
        fprintf(stderr, "\n");                                                 \
        if (c)                                                                 \
            pc_client_close(c);                                                \
        return (code);                                                         \
    } while (0)

/* hello (mapping the pool), one prompt's life, a check that the bytes are
 * in the pool; writes the pool's name to out_fd.  0, or a code per step. */
static int engine_child(void *ctx, int out_fd)
{
    const engine *e = ctx;
    pc_client *c = NULL;
    char ep[128];
    if (e->endpoint) {
        snprintf(ep, sizeof(ep), "%s", e->endpoint);
    } else {
        int rc = pc_rpc_default_endpoint(ep, sizeof(ep));
        if (rc || strcmp(ep, e->want_endpoint) != 0)
            ENGINE_FAIL(10, "default endpoint '%s' (%s), want '%s'", ep,
                        pc_errname(rc), e->want_endpoint);
    }
    if (pc_client_connect(ep, HD_CALL_MS, &c))
        ENGINE_FAIL(11, "connect %s", ep);
    pc_hello h;
    int rc = pc_client_hello(c, &h);
    if (rc)
        ENGINE_FAIL(12, "hello: %s: %s", pc_errname(rc), pc_client_last_error(c));
    uint32_t t[64];
    size_t n = 2 * h.page_tokens;
    if (n > 64)
        ENGINE_FAIL(13, "page_tokens %u", h.page_tokens);
    for (size_t i = 0; i < n; i++)
        t[i] = e->seed * 1000u + (uint32_t)i + 1;
    pc_client_lookup_result r;
    rc = pc_client_lookup(c, "ns", 2, t, n, PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &r);
    if (rc || r.alloc_status || r.n_alloc != 2)
        ENGINE_FAIL(14, "lookup: %s %s (alloc %d, %zu blocks)", pc_errname(rc),
                    pc_client_last_error(c), r.alloc_status, r.n_alloc);
    uint32_t ids[2] = {r.alloc_blocks[0], r.alloc_blocks[1]};
    for (int i = 0; i < 2; i++) {
        uint8_t *b = pc_client_block(c, ids[i]);
        if (!b)
            ENGINE_FAIL(15, "block %u not mapped", ids[i]);
        memset(b, (int)(e->seed + (uint32_t)i), h.block_bytes);
    }
    rc = pc_client_insert(c, "ns", 2, t, n, ids, r.lease, PC_CLIENT_RELEASE, NULL,
                          NULL);
    if (rc)
        ENGINE_FAIL(16, "insert: %s %s", pc_errname(rc), pc_client_last_error(c));
    rc = pc_client_lookup(c, "ns", 2, t, n, 0, 0, &r);
    if (rc || r.tokens != n)
        ENGINE_FAIL(17, "lookup again: %s, %zu tokens", pc_errname(rc), r.tokens);
    const uint8_t *b = pc_client_block(c, r.blocks[1]);
    if (!b || b[h.block_bytes - 1] != (uint8_t)(e->seed + 1))
        ENGINE_FAIL(18, "the cached block does not hold what was written");
    size_t len = strlen(h.shm_name);
    if (write(out_fd, h.shm_name, len) != (ssize_t)len)
        ENGINE_FAIL(19, "write");
    pc_client_close(c);
    return 0;
}

/* ---- the default endpoint's rules ---------------------------------------------- */

#define RESOLVE(want_rc, ...)                                                  \
    do {                                                                       \
        const pc_rpc_rundir d_[] = {__VA_ARGS__};                              \
        int rc_ = pc_rpc_endpoint_from(d_, HD_NELEM(d_), ep, sizeof(ep));      \
        cr_assert_eq(rc_, (want_rc), "line %d: %s", __LINE__, pc_errname(rc_)); \
    } while (0)

static void sock_in(char *out, size_t len, const char *dir)
{
    snprintf(out, len, "ipc://%s/prefixcache.sock", dir);
}

Test(start, default_endpoint_rules)
{
    char t[64], xdg[96], fb[96], link[96], wide[96], file[96], want[160];
    char ep[160];
    tmp_dir(t, sizeof(t));
    snprintf(xdg, sizeof(xdg), "%s/xdg", t);
    snprintf(fb, sizeof(fb), "%s/fallback", t);
    snprintf(link, sizeof(link), "%s/link", t);
    snprintf(wide, sizeof(wide), "%s/wide", t);
    snprintf(file, sizeof(file), "%s/file", t);

    /* a missing candidate that may not be created: skipped; the next one
     * is created 0700, even under umask 0 */
    mode_t old = umask(0);
    RESOLVE(0, {xdg, false}, {fb, true});
    umask(old);
    sock_in(want, sizeof(want), fb);
    cr_assert_str_eq(ep, want);
    cr_assert_eq(mode_of(fb), 0700);
    cr_assert(!hd_exists(xdg), "a session directory was created");

    /* a private directory of ours: taken */
    cr_assert_eq(mkdir(xdg, 0700), 0);
    RESOLVE(0, {xdg, false}, {fb, true});
    sock_in(want, sizeof(want), xdg);
    cr_assert_str_eq(ep, want);
    /* group/others may search it (0710, 0755): still private */
    cr_assert_eq(chmod(xdg, 0755), 0);
    RESOLVE(0, {xdg, false}, {fb, true});
    cr_assert_str_eq(ep, want);

    /* skipped: writable by group or others, a symlink to a good one, a
     * file, a relative path, NULL, a path too long for a socket */
    cr_assert_eq(mkdir(wide, 0700), 0);
    cr_assert_eq(chmod(wide, 0770), 0);
    cr_assert_eq(symlink(xdg, link), 0);
    hd_write_file(file, "x");
    char longdir[200]; /* with "/prefixcache.sock", beyond 107 bytes */
    size_t tl = strlen(t);
    memcpy(longdir, t, tl);
    longdir[tl] = '/';
    memset(longdir + tl + 1, 'd', 100);
    longdir[tl + 101] = 0;
    sock_in(want, sizeof(want), fb);
    RESOLVE(0, {wide, false}, {link, false}, {file, true}, {"rel/dir", true},
            {NULL, true}, {longdir, true}, {fb, true});
    cr_assert_str_eq(ep, want);
    cr_assert(!hd_exists(longdir), "a directory too long to use was created");
    cr_assert_eq(chmod(wide, 0702), 0); /* other-writable */
    RESOLVE(0, {wide, false}, {fb, true});
    cr_assert_str_eq(ep, want);

    /* none usable; a buffer too small */
    RESOLVE(PC_E_PERM, {wide, false}, {link, true});
    cr_assert_str_eq(ep, "");
    char tiny[16];
    const pc_rpc_rundir d[] = {{xdg, false}};
    cr_assert_eq(pc_rpc_endpoint_from(d, 1, tiny, sizeof(tiny)), PC_E_RANGE);

    /* the public rule takes a valid $XDG_RUNTIME_DIR first */
    setenv("XDG_RUNTIME_DIR", xdg, 1);
    cr_assert_eq(pc_rpc_default_endpoint(ep, sizeof(ep)), 0);
    sock_in(want, sizeof(want), xdg);
    cr_assert_str_eq(ep, want);
    unsetenv("XDG_RUNTIME_DIR");
}

Test(start, default_endpoint_skips_other_users_dirs)
{
    need_root();
    char t[64], xdg[96], sq[96], fb[96], want[160], ep[160];
    tmp_dir(t, sizeof(t));
    snprintf(xdg, sizeof(xdg), "%s/xdg", t);
    snprintf(sq, sizeof(sq), "%s/squatted", t);
    snprintf(fb, sizeof(fb), "%s/fallback", t);
    /* another uid's session directory, private as it should be: not ours */
    cr_assert_eq(mkdir(xdg, 0700), 0);
    cr_assert_eq(chown(xdg, NOBODY, NOBODY), 0);
    /* a directory another uid made before us where we would create ours
     * (the /tmp/prefixcache-<uid> squat), whatever its mode */
    cr_assert_eq(mkdir(sq, 0700), 0);
    cr_assert_eq(chown(sq, NOBODY, NOBODY), 0);
    RESOLVE(0, {xdg, false}, {sq, true}, {fb, true});
    sock_in(want, sizeof(want), fb);
    cr_assert_str_eq(ep, want);
    cr_assert_eq(chmod(sq, 0777), 0);
    RESOLVE(0, {sq, true}, {fb, true});
    cr_assert_str_eq(ep, want);
}

/* ---- kill -9, then the same command again ------------------------------------- */

/* d's paths for a daemon on the default endpoint of runtime directory dir. */
static void default_paths(hd_daemon *d, const char *dir)
{
    snprintf(d->sock_path, sizeof(d->sock_path), "%s/prefixcache.sock", dir);
    snprintf(d->endpoint, sizeof(d->endpoint), "ipc://%s", d->sock_path);
    snprintf(d->lock_path, sizeof(d->lock_path), "%s.lock", d->sock_path);
    d->shm_name[0] = d->shm_path[0] = 0; /* known after hello */
    hd_track(d);
}

static void set_shm(hd_daemon *d, const char *name)
{
    size_t n = strlen(name);
    cr_assert(n < sizeof(d->shm_name) && n + 8 < sizeof(d->shm_path), "%s", name);
    memcpy(d->shm_name, name, n + 1);
    memcpy(d->shm_path, "/dev/shm", 8);
    memcpy(d->shm_path + 8, name, n + 1);
    hd_track(d);
}

Test(start, restart_after_kill9)
{
    char t[64];
    tmp_dir(t, sizeof(t));
    cr_assert_eq(chmod(t, 0700), 0);
    setenv("XDG_RUNTIME_DIR", t, 1); /* the daemon and the client see it */
    char ep[128];
    cr_assert_eq(pc_rpc_default_endpoint(ep, sizeof(ep)), 0);

    /* `prefixcached`, no argument at all: the embedded default */
    hd_daemon k, n;
    hd_init(&k);
    hd_spawn(&k, false, (const char *const[]){NULL});
    default_paths(&k, t);
    cr_assert_str_eq(k.endpoint, ep);
    hd_wait_ready(&k);

    pc_client *c;
    pc_hello h;
    cr_assert_eq(pc_client_connect(ep, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_hello(c, &h), 0);
    set_shm(&k, h.shm_name);
    char want[64];
    snprintf(want, sizeof(want), "/prefixcache-%lu-", (unsigned long)geteuid());
    cr_assert(strncmp(h.shm_name, want, strlen(want)) == 0, "pool name %s",
              h.shm_name);
    uint32_t P = h.page_tokens, tok[64];
    cr_assert(2 * P <= 64);
    for (uint32_t i = 0; i < 2 * P; i++)
        tok[i] = 7000 + i;
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, "ns", 2, tok, 2 * P,
                              PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &r), 0);
    uint32_t ids[2] = {r.alloc_blocks[0], r.alloc_blocks[1]};
    memset(pc_client_block(c, ids[0]), 0x5a, h.block_bytes);
    memset(pc_client_block(c, ids[1]), 0x5b, h.block_bytes);
    RC_EQ(c, pc_client_insert(c, "ns", 2, tok, 2 * P, ids, r.lease, 0, NULL,
                              NULL), 0);
    uint64_t lease = r.lease; /* not released: the daemon dies holding it */

    /* kill -9: everything stays behind */
    cr_assert_eq(kill(k.pid, SIGKILL), 0);
    cr_assert(hd_reap(&k, HD_STOP_MS));
    cr_assert(hd_exists(k.sock_path) && hd_exists(k.lock_path) &&
                  hd_exists(k.shm_path),
              "kill -9 should leave the socket, lock and pool behind");

    /* the same command again */
    hd_init(&n);
    hd_spawn(&n, false, (const char *const[]){NULL});
    default_paths(&n, t);
    set_shm(&n, h.shm_name);
    hd_wait_ready(&n);
    cr_assert(hd_log_has(&n, 0, 0, "WARN", h.shm_name, "gone", NULL),
              "no line saying the dead daemon's pool was reclaimed");
    cr_assert(hd_log_has(&n, 0, 0, "stale socket", NULL), "no stale socket line");
    unlink(k.log_path);
    hd_forget(&k); /* its files are n's now */

    /* the connected client carries on against the new daemon */
    RC_EQ(c, pc_client_ping(c), 0);
    RC_EQ(c, pc_client_release(c, lease), PC_E_LEASE);
    pc_hello h2;
    RC_EQ(c, pc_client_hello(c, &h2), 0); /* maps the new pool */
    cr_assert_str_eq(h2.shm_name, h.shm_name, "a restart keeps the pool's name");
    const uint8_t *b = pc_client_block(c, ids[1]);
    for (uint64_t i = 0; i < h2.block_bytes; i += 4096)
        cr_assert_eq(b[i], 0, "the new pool holds old bytes at %" PRIu64, i);
    RC_EQ(c, pc_client_lookup(c, "ns", 2, tok, 2 * P, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 0, "a restart keeps no tree");
    RC_EQ(c, pc_client_lookup(c, "ns", 2, tok, 2 * P, PC_CLIENT_PIN, 0, &r), 0);
    cr_assert_eq(r.lease, 0);
    uint64_t l2 = 0;
    RC_EQ(c, pc_client_alloc(c, 2, &l2, ids), 0);
    memset(pc_client_block(c, ids[0]), 0x6a, h2.block_bytes);
    memset(pc_client_block(c, ids[1]), 0x6b, h2.block_bytes);
    RC_EQ(c, pc_client_insert(c, "ns", 2, tok, 2 * P, ids, l2, 0, NULL, NULL), 0);
    RC_EQ(c, pc_client_release(c, l2), 0);
    pc_client_close(c);

    /* a fresh client (as a new engine would) reads those bytes */
    cr_assert_eq(pc_client_connect(ep, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_hello(c, &h2), 0);
    RC_EQ(c, pc_client_lookup(c, "ns", 2, tok, 2 * P, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 2 * P);
    b = pc_client_block(c, r.blocks[1]);
    cr_assert(b && b[0] == 0x6b && b[h2.block_bytes - 1] == 0x6b);
    pc_client_close(c);
    hd_stop(&n); /* socket, lock and pool gone */
    unsetenv("XDG_RUNTIME_DIR");
}

/* ---- another local user -------------------------------------------------------- */

/* The squatter: owns /tmp/prefixcache-<victim> (0755), holds the lock file
 * there and answers every request on the socket path with an error that
 * names it.  Exits on SIGTERM with the number of requests it saw (at most 100). */
static volatile sig_atomic_t g_quit;
static void on_term(int sig) { (void)sig, g_quit = 1; }

typedef struct squat {
    char dir[64];
} squat;

static int squatter_child(void *ctx, int out_fd)
{
    const squat *q = ctx;
    char sock[128], lock[140], ep[140];
    snprintf(sock, sizeof(sock), "%s/prefixcache.sock", q->dir);
    snprintf(lock, sizeof(lock), "%s.lock", sock);
    snprintf(ep, sizeof(ep), "ipc://%s", sock);
    signal(SIGTERM, on_term);
    umask(0);
    /* 0755: it looks private; only its owner tells it is not the victim's */
    if (mkdir(q->dir, 0755) != 0)
        return 20;
    int lfd = open(lock, O_RDWR | O_CREAT, 0666);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0)
        return 21;
    void *zc = zmq_ctx_new(), *s = zmq_socket(zc, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_bind(s, ep) != 0)
        return 22;
    /* {id: 0, status: PC_E_CORRUPT, error: "squatter"}: a client that
     * reaches us attributes it to its request and fails */
    static const char fake[] = "\x83\xa2id\x00\xa6status\xfb\xa5"
                               "error\xa8squatter";
    if (write(out_fd, "ready", 5) != 5)
        return 23;
    int seen = 0;
    while (!g_quit) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        zmq_msg_t f[8];
        int nf = 0, more = 1;
        while (more && nf < 8) {
            zmq_msg_init(&f[nf]);
            if (zmq_msg_recv(&f[nf], s, 0) < 0)
                break;
            more = zmq_msg_more(&f[nf++]);
        }
        seen++;
        for (int i = 0; i + 1 < nf; i++)
            zmq_msg_send(&f[i], s, ZMQ_SNDMORE);
        zmq_send(s, fake, sizeof(fake) - 1, 0);
        zmq_msg_close(&f[nf - 1]);
    }
    zmq_close(s);
    zmq_ctx_term(zc);
    close(lfd);
    return seen > 100 ? 100 : seen;
}

/* A daemon started as w, with no argument, on w's default endpoint
 * ipc://<home>/.prefixcache/prefixcache.sock. */
static void start_as(hd_daemon *d, who *w, const char *rundir)
{
    hd_init(d);
    hd_child_setup = become;
    hd_child_ctx = w;
    hd_spawn(d, false, (const char *const[]){NULL});
    hd_child_setup = NULL;
    default_paths(d, rundir);
    hd_wait_ready(d);
}

Test(start, squatter_can_neither_block_nor_impersonate)
{
    need_root();
    uid_t A = free_uid(42000 + (uid_t)(getpid() % 1000));
    char t[64], home[96], rundir[128], want[160], name[PC_POOL_SHM_NAME_MAX + 1];
    tmp_dir(t, sizeof(t));
    cr_assert_eq(chmod(t, 0711), 0);
    snprintf(home, sizeof(home), "%s/home", t);
    cr_assert_eq(mkdir(home, 0700), 0);
    cr_assert_eq(chown(home, A, A), 0);
    snprintf(rundir, sizeof(rundir), "%s/.prefixcache", home);
    sock_in(want, sizeof(want), rundir);

    /* B (nobody) squats A's /tmp candidate: directory, lock, fake daemon */
    squat q;
    snprintf(q.dir, sizeof(q.dir), "/tmp/prefixcache-%lu", (unsigned long)A);
    track_dir(q.dir);
    who B = {NOBODY, NOBODY, {0}, 0, NULL, NULL};
    int sq_fd;
    pid_t sq = spawn_child(&B, squatter_child, &q, &sq_fd);
    char ready[8] = "";
    cr_assert_eq(read(sq_fd, ready, 5), 5, "the squatter did not get ready");
    cr_assert(hd_exists(q.dir) && mode_of(q.dir) == 0755);

    /* A's daemon, as the README runs it: it starts, elsewhere */
    who wa = {A, A, {0}, 0, home, NULL};
    hd_daemon d;
    start_as(&d, &wa, rundir);
    cr_assert(hd_log_has(&d, 0, 0, "listening on", rundir, NULL),
              "the daemon does not listen in %s", rundir);
    cr_assert_eq(mode_of(rundir), 0700);

    /* A's engine finds the same endpoint and the real daemon */
    engine e = {NULL, want, 3};
    int rc = run_as(&wa, engine_child, &e, name, sizeof(name));
    cr_assert_eq(rc, 0, "A's engine failed (%d): see stderr", rc);
    snprintf(want, sizeof(want), "/prefixcache-%lu-", (unsigned long)A);
    cr_assert(strncmp(name, want, strlen(want)) == 0, "pool %s", name);
    set_shm(&d, name);
    hd_stop(&d);

    /* now B also holds the default pool name: A's daemon still starts,
     * under an unpredictable name, and says so */
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    cr_assert(fd >= 0, "shm_open %s: %s", name, strerror(errno));
    track_shm(name);
    cr_assert_eq(fchown(fd, NOBODY, NOBODY), 0);
    close(fd);
    hd_daemon d2;
    start_as(&d2, &wa, rundir);
    char uidtxt[16];
    snprintf(uidtxt, sizeof(uidtxt), "uid %u", NOBODY);
    cr_assert(hd_log_has(&d2, 0, 0, "WARN", name, uidtxt, "unpredictable", NULL),
              "no warning about the squatted pool name");
    sock_in(want, sizeof(want), rundir);
    e.seed = 4;
    char name2[PC_POOL_SHM_NAME_MAX + 1];
    rc = run_as(&wa, engine_child, &e, name2, sizeof(name2));
    cr_assert_eq(rc, 0, "A's engine failed (%d) with the pool name squatted", rc);
    cr_assert_str_neq(name2, name);
    set_shm(&d2, name2);
    hd_stop(&d2);
    uint32_t owner = 0;
    cr_assert_eq(pc_pool_shm_owner(name, &owner), 0, "B's object was removed");
    cr_assert_eq(owner, NOBODY);

    /* the fake daemon saw nothing */
    kill(sq, SIGTERM);
    close(sq_fd);
    cr_assert_eq(reap_child(sq, CHILD_MS), 0, "the squatter was contacted");
}

Test(start, squatted_lock_file_is_refused)
{
    need_root();
    /* an explicit endpoint in a directory everyone can write: the lock
     * file is another user's; we say so instead of serving beside it */
    hd_daemon d;
    hd_init(&d);
    int fd = open(d.lock_path, O_RDWR | O_CREAT | O_EXCL, 0666);
    cr_assert(fd >= 0);
    cr_assert_eq(fchown(fd, NOBODY, NOBODY), 0);
    close(fd);
    hd_spawn(&d, true, (const char *const[]){NULL});
    cr_assert(hd_reap(&d, HD_START_MS), "the daemon started beside a squatter");
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1, "0x%x", d.status);
    char uidtxt[16];
    snprintf(uidtxt, sizeof(uidtxt), "uid %u", NOBODY);
    cr_assert(hd_log_has(&d, 0, 0, d.lock_path, uidtxt, NULL), "no clear message");
    struct stat st;
    cr_assert_eq(lstat(d.lock_path, &st), 0, "the squatter's file was removed");
    cr_assert_eq(st.st_uid, NOBODY);
    cr_assert(!hd_exists(d.sock_path) && !hd_exists(d.shm_path));
    hd_unlink_files(&d);
}

/* ---- modes ---------------------------------------------------------------------- */

Test(start, modes_ignore_the_umask)
{
    mode_t old = umask(0); /* the daemon inherits it */
    hd_daemon d;
    hd_start(&d, NULL);
    umask(old);
    cr_assert_eq(mode_of(d.sock_path), 0600);
    cr_assert_eq(mode_of(d.lock_path), 0600);
    cr_assert_eq(mode_of(d.shm_path), 0600);
    hd_stop(&d);
}

/* Outside the group: cannot connect (ZeroMQ keeps retrying: the call times
 * out) and cannot map the pool. */
typedef struct outsider {
    const char *endpoint, *shm;
    uint64_t bytes;
} outsider;

static int outsider_child(void *ctx, int out_fd)
{
    (void)out_fd;
    const outsider *o = ctx;
    pc_client *c;
    if (pc_client_connect(o->endpoint, 500, &c))
        return 30;
    int rc = pc_client_ping(c);
    pc_client_close(c);
    if (rc != PC_E_TIMEOUT) {
        fprintf(stderr, "outsider: ping %s\n", pc_errname(rc));
        return 31;
    }
    void *m = NULL;
    rc = pc_pool_map(o->shm, o->bytes, &m);
    if (rc != PC_E_PERM) {
        fprintf(stderr, "outsider: map %s\n", pc_errname(rc));
        return 32;
    }
    return 0;
}

Test(start, group_engines_connect_and_map)
{
    need_root();
    gid_t G = 42424;
    char grp[32];
    snprintf(grp, sizeof(grp), "%u", (unsigned)G);
    char a1[64], a2[64], a3[64], a4[64];
    snprintf(a1, sizeof(a1), "--socket_group=%s", grp);
    snprintf(a2, sizeof(a2), "--pool_group=%s", grp);
    snprintf(a3, sizeof(a3), "--socket_mode=0660");
    snprintf(a4, sizeof(a4), "--pool_mode=660");
    mode_t old = umask(0);
    hd_daemon d;
    hd_start(&d, a1, a2, a3, a4, NULL);
    umask(old);
    struct stat st;
    cr_assert_eq(lstat(d.sock_path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0660);
    cr_assert_eq(st.st_gid, G);
    cr_assert_eq(lstat(d.shm_path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0660);
    cr_assert_eq(st.st_gid, G);

    uid_t C = free_uid(43000 + (uid_t)(getpid() % 1000));
    who member = {C, C, {G}, 1, "/nonexistent", NULL};
    engine e = {d.endpoint, NULL, 5};
    char name[PC_POOL_SHM_NAME_MAX + 1];
    int rc = run_as(&member, engine_child, &e, name, sizeof(name));
    cr_assert_eq(rc, 0, "the engine in group %u failed (%d): see stderr",
                 (unsigned)G, rc);
    cr_assert_str_eq(name, d.shm_name);

    who stranger = {C + 1, C + 1, {0}, 0, "/nonexistent", NULL};
    outsider o = {d.endpoint, d.shm_name, (uint64_t)HD_POOL_BLOCKS * HD_BLOCK_BYTES};
    rc = run_as(&stranger, outsider_child, &o, NULL, 0);
    cr_assert_eq(rc, 0, "a process outside the group got in (%d)", rc);
    hd_stop(&d);
}

Test(start, bad_group_is_a_start_error)
{
    static const char *const knobs[] = {"socket_group", "pool_group"};
    for (size_t i = 0; i < HD_NELEM(knobs); i++) {
        hd_daemon d;
        hd_init(&d);
        char arg[64], msg[64];
        snprintf(arg, sizeof(arg), "--%s=pc-no-such-group", knobs[i]);
        snprintf(msg, sizeof(msg), "%s: there is no group", knobs[i]);
        hd_spawn(&d, true, (const char *const[]){arg, NULL});
        cr_assert(hd_reap(&d, HD_START_MS), "started with %s", arg);
        cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1, "0x%x",
                  d.status);
        cr_assert(hd_log_has(&d, 0, 0, msg, "pc-no-such-group", NULL),
                  "no clear message for %s", arg);
        cr_assert(!hd_exists(d.sock_path) && !hd_exists(d.shm_path));
        hd_unlink_files(&d);
    }
}

/*
 * tests/harness/daemon.c - the harness's prefixcached processes: names,
 * fork + exec, readiness, SIGTERM and the checks after it, the clean-up of
 * what a failed test left behind, and the daemon's log (see harness.h).
 *
 * One copy of the bookkeeping per test process: a Criterion worker runs one
 * test at a time, so the daemons it tracks are that test's.
 */
#include "tests/harness/harness.h"

/* ---- time ------------------------------------------------------------------ */

int64_t hd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool hd_wait_child(pid_t pid, int timeout_ms, int *status)
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

void hd_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* ---- files ----------------------------------------------------------------- */

char *hd_read_file(const char *path, size_t *len_out)
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

void hd_write_file(const char *path, const char *text)
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

bool hd_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- the daemon process ------------------------------------------------------ */

/* What hd_cleanup must kill and remove: COPIES of the tests' hd_daemon
 * (a test's own is on its stack, which is gone by the time .fini runs after
 * a failed assertion), keyed by log_path; hd_track refreshes a copy. */
static hd_daemon hd_live[8];
static pid_t hd_owner; /* the process that started them */
static int hd_seq;
int (*hd_child_setup)(void *ctx);
void *hd_child_ctx;

const char *hd_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set (ctest sets it; run the test through "
                       "ctest or export it)", name);
    return v;
}

void hd_dump_log(const hd_daemon *d, size_t max)
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

static hd_daemon *hd_slot(const hd_daemon *d)
{
    for (size_t i = 0; i < HD_NELEM(hd_live); i++)
        if (hd_live[i].log_path[0] && strcmp(hd_live[i].log_path, d->log_path) == 0)
            return &hd_live[i];
    return NULL;
}

void hd_forget(const hd_daemon *d)
{
    hd_daemon *slot = hd_slot(d);
    if (slot)
        memset(slot, 0, sizeof(*slot));
}

void hd_unlink_files(const hd_daemon *d)
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
void hd_track(const hd_daemon *d)
{
    hd_daemon *slot = hd_slot(d);
    for (size_t i = 0; !slot && i < HD_NELEM(hd_live); i++)
        if (!hd_live[i].log_path[0])
            slot = &hd_live[i];
    cr_assert(slot, "too many daemons in one test");
    *slot = *d;
}

void hd_cleanup(void)
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

static void hd_on_fatal(int sig)
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

void hd_init(hd_daemon *d)
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
static void hd_default_args(const hd_daemon *d, char out[][200], int *n)
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

static bool hd_arg_overrides(const char *deflt, const char *const *extra)
{
    size_t klen = strcspn(deflt, "=") + 1; /* "--name=" */
    for (int i = 0; extra && extra[i]; i++)
        if (strncmp(extra[i], deflt, klen) == 0)
            return true;
    return false;
}

void hd_spawn(hd_daemon *d, bool with_defaults, const char *const *extra)
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

bool hd_reap(hd_daemon *d, int timeout_ms)
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

bool hd_alive(hd_daemon *d)
{
    return d->pid > 0 && !hd_reap(d, 0);
}
/* ---- start / stop ------------------------------------------------------------------ */

void hd_wait_ready(hd_daemon *d)
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

void hd_startv(hd_daemon *d, const char *const *extra)
{
    hd_init(d);
    hd_spawn(d, true, extra);
    hd_wait_ready(d);
}

void hd_assert_clean_log(const hd_daemon *d)
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

void hd_stop(hd_daemon *d)
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

size_t hd_log_size(const hd_daemon *d)
{
    struct stat st;
    return stat(d->log_path, &st) == 0 ? (size_t)st.st_size : 0;
}

const char *hd_stristr(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}

bool hd_log_wait_line(const hd_daemon *d, size_t from,
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

bool hd_log_has(const hd_daemon *d, size_t from, int timeout_ms,
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

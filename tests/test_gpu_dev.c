/*
 * tests/test_gpu_dev.c - the device operations table (gpu/dev.h) on the
 * fake device, and the CUDA runtime where a GPU is present.
 *
 * Fake device, every CI:
 *   - alloc/free: the object appears 0600 in /dev/shm and goes on free;
 *   - copies, launches, streams and events, in order; copies past an
 *     allocation refused;
 *   - refcounted import: one mapping per process, gone on the last close;
 *   - three processes: the "daemon" allocates and exports, a second
 *     process imports and writes, a third imports and reads the bytes;
 *   - a handle of another device (index or seed) refused with PC_E_PERM;
 *   - a killed importer leaks nothing; a killed owner's object is refused
 *     (PC_E_NOENT) and swept;
 *   - bad inputs: NULL, zero size, forged bytes, a freed allocation's
 *     handle, a bad device, each with its PC_E_* and no crash;
 *   - the PC_POOL_CUDA pool backend (gpu/pool.h) on the fake device: one
 *     allocation carved into blocks, a block written through the pool is
 *     read by another process at handle + id x block_bytes, destroy frees.
 * CUDA: skips unless built with CUDA and a device is visible; there, the
 * same basics and an import in a second process.
 *
 * Children are forked before the allocation they import, so what they see
 * really crosses a process boundary (a child forked after would inherit
 * the mapping).  The suite's .fini frees what a failed test left; a crash
 * guard unlinks the objects on a fatal signal.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu/dev.h"
#include "gpu/dev_int.h" /* to forge handles with a valid check */
#include "gpu/pool.h"

#define RC_EQ(expr, want)                                                      \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        cr_assert_eq(rc_, (want), "%s = %s, want %s", #expr, pc_errname(rc_),  \
                     pc_errname(want));                                        \
    } while (0)

static const pc_gpu_ops *F;

/* Allocations a test holds; the suite's fini frees them. */
#define HELD 16
static void *g_held[HELD];
static char g_names[HELD][PC_GPU_PAYLOAD];
static pid_t g_owner;

static void *falloc(int dev, uint64_t bytes)
{
    void *p = NULL;
    RC_EQ(F->alloc(dev, bytes, &p), 0);
    cr_assert(p);
    for (int i = 0; i < HELD; i++)
        if (!g_held[i]) {
            g_held[i] = p;
            RC_EQ(pc_gpu_fake_shm_name(p, g_names[i], sizeof(g_names[i])), 0);
            break;
        }
    return p;
}

static void ffree(void *p)
{
    for (int i = 0; i < HELD; i++)
        if (g_held[i] == p) {
            g_held[i] = NULL;
            g_names[i][0] = '\0';
        }
    RC_EQ(F->free(p), 0);
}

static void on_fatal(int sig)
{
    if (getpid() == g_owner)
        for (int i = 0; i < HELD; i++)
            if (g_names[i][0])
                shm_unlink(g_names[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void setup(void)
{
    F = pc_gpu_ops_get("fake");
    g_owner = getpid();
    int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], on_fatal);
}

static void cleanup(void)
{
    for (int i = 0; i < HELD; i++)
        if (g_held[i] && getpid() == g_owner) {
            F->free(g_held[i]);
            g_held[i] = NULL;
        }
}

TestSuite(gpu_dev, .init = setup, .fini = cleanup);

static bool shm_exists(const char *name)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    return stat(path, &st) == 0;
}

/* Is an object of that name mapped in this process? */
static bool mapped_here(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    bool found = false;
    cr_assert(f);
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

static bool check(const uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seed + i * 7))
            return false;
    return true;
}

/* Child exit status, the child having been waited for. */
static int wait_child(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(gpu_dev, registry)
{
    cr_assert(F);
    cr_assert_str_eq(F->name, "fake");
    cr_assert_null(pc_gpu_ops_get("nope"));
    cr_assert_null(pc_gpu_ops_get(NULL));
    const pc_gpu_ops *c = pc_gpu_ops_get("cuda");
    cr_assert(!c || strcmp(c->name, "cuda") == 0);
}

Test(gpu_dev, alloc_free)
{
    int n = 0;
    char name[PC_GPU_NAME_MAX];
    pc_gpu_uuid u0, u1;
    RC_EQ(F->device_count(&n), 0);
    cr_assert_eq(n, 1);
    RC_EQ(F->device_name(0, name, sizeof(name)), 0);
    cr_assert(strstr(name, "fake"));
    RC_EQ(F->device_uuid(0, &u0), 0);
    RC_EQ(F->device_uuid(0, &u1), 0);
    cr_assert_eq(memcmp(&u0, &u1, sizeof(u0)), 0, "UUIDs are stable");

    uint8_t *p = falloc(0, 1 << 20);
    char shm[PC_GPU_PAYLOAD];
    RC_EQ(pc_gpu_fake_shm_name(p, shm, sizeof(shm)), 0);
    struct stat st;
    char path[128];
    snprintf(path, sizeof(path), "/dev/shm%s", shm);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq((uint64_t)st.st_size, 1 << 20);
    memset(p, 0xab, 1 << 20); /* a device pointer is a real address */
    ffree(p);
    cr_assert(!shm_exists(shm), "free unlinks the object");
    cr_assert(!mapped_here(shm));
    RC_EQ(F->free(p), PC_E_INVAL); /* twice */
}

static int add_one(void *args)
{
    uint8_t *p = args;
    for (int i = 0; i < 64; i++)
        p[i]++;
    return 0;
}

static int refuse(void *args)
{
    (void)args;
    return PC_E_STATE;
}

Test(gpu_dev, copies_streams_events)
{
    enum { N = 8192 };
    uint8_t *d = falloc(0, 2 * N);
    static uint8_t h[N], back[N];
    pc_gpu_stream *s;
    pc_gpu_event *e;
    fill(h, N, 3);
    RC_EQ(F->stream_create(0, &s), 0);
    RC_EQ(F->event_create(0, &e), 0);
    RC_EQ(F->copy_async(d, h, N, PC_GPU_H2D, s), 0);
    RC_EQ(F->copy_async(d + N, d, N, PC_GPU_D2D, s), 0);
    pc_gpu_launch l = {"add_one", add_one, NULL, d + N};
    RC_EQ(F->launch(s, &l), 0);
    RC_EQ(F->copy_async(back, d + N, N, PC_GPU_D2H, s), 0);
    RC_EQ(F->event_record(e, s), 0);
    RC_EQ(F->event_query(e), 0);
    RC_EQ(F->event_sync(e), 0);
    /* in order: H2D, D2D, the launch, then D2H saw all of it */
    for (int i = 0; i < N; i++)
        cr_assert_eq(back[i], (uint8_t)(h[i] + (i < 64)), "byte %d", i);
    RC_EQ(F->stream_sync(s), 0);
    RC_EQ(F->copy_async(d, h, 0, PC_GPU_H2D, NULL), 0); /* default stream */
    RC_EQ(F->stream_sync(NULL), 0);

    /* the fake checks what CUDA cannot */
    RC_EQ(F->copy_async(d + N + 1, h, N, PC_GPU_H2D, s), PC_E_RANGE);
    RC_EQ(F->copy_async(back, d + 2 * N - 1, 2, PC_GPU_D2H, s), PC_E_RANGE);
    RC_EQ(F->copy_async(h, back, 16, PC_GPU_D2D, s), PC_E_INVAL);
    RC_EQ(F->copy_async(d, h, 16, (pc_gpu_copy_kind)7, s), PC_E_INVAL);
    RC_EQ(F->copy_async(NULL, h, 16, PC_GPU_H2D, s), PC_E_INVAL);
    RC_EQ(F->copy_async(d, NULL, 16, PC_GPU_H2D, s), PC_E_INVAL);
    pc_gpu_launch bad = {"refuse", refuse, NULL, NULL};
    RC_EQ(F->launch(s, &bad), PC_E_STATE); /* the kernel's own code */
    pc_gpu_launch nohost = {"device only", NULL, NULL, NULL};
    RC_EQ(F->launch(s, &nohost), PC_E_INVAL);
    RC_EQ(F->launch(s, NULL), PC_E_INVAL);

    RC_EQ(F->event_destroy(e), 0);
    RC_EQ(F->stream_destroy(s), 0);
    ffree(d);
}

Test(gpu_dev, import_refcounted)
{
    int to_child[2];
    cr_assert_eq(pipe(to_child), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) { /* no allocation of ours: a real import */
        pc_gpu_handle h;
        void *a = NULL, *b = NULL;
        uint64_t n = 0;
        char name[PC_GPU_PAYLOAD];
        if (read(to_child[0], &h, sizeof(h)) != sizeof(h) ||
            read(to_child[0], name, sizeof(name)) != sizeof(name))
            _exit(10);
        if (F->import_handle(0, &h, &a, &n) || n != 4096 || !check(a, 4096, 9))
            _exit(11);
        if (F->import_handle(0, &h, &b, NULL) || a != b)
            _exit(12); /* one mapping per process */
        if (F->close_handle(a) || !mapped_here(name) || !check(b, 4096, 9))
            _exit(13); /* the first close leaves it for the other user */
        if (F->close_handle(b) || mapped_here(name))
            _exit(14); /* the last one unmaps */
        if (F->close_handle(b) != PC_E_INVAL)
            _exit(15); /* closing once too often is refused */
        _exit(0);
    }
    uint8_t *d = falloc(0, 4096);
    fill(d, 4096, 9);
    pc_gpu_handle h;
    char name[PC_GPU_PAYLOAD];
    RC_EQ(F->export_handle(d, &h), 0);
    RC_EQ(pc_gpu_fake_shm_name(d, name, sizeof(name)), 0);
    cr_assert_eq(write(to_child[1], &h, sizeof(h)), (ssize_t)sizeof(h));
    cr_assert_eq(write(to_child[1], name, sizeof(name)), (ssize_t)sizeof(name));
    cr_assert_eq(wait_child(pid), 0);

    /* the exporter's own import is the allocation, counted the same way */
    void *a, *b;
    uint64_t n;
    RC_EQ(F->import_handle(0, &h, &a, &n), 0);
    RC_EQ(F->import_handle(0, &h, &b, NULL), 0);
    cr_assert_eq(a, (void *)d);
    cr_assert_eq(b, (void *)d);
    cr_assert_eq(n, 4096);
    RC_EQ(F->close_handle(a), 0);
    RC_EQ(F->close_handle(b), 0);
    RC_EQ(F->close_handle(b), PC_E_INVAL);
    cr_assert(check(d, 4096, 9), "closing an own import keeps the memory");
    ffree(d);
    close(to_child[0]), close(to_child[1]);
}

/* The child of a three-process test: waits for a handle, imports it, checks
 * `want` (if set), writes `put` (if set) through an H2D copy, closes. */
static int role(int fd, int want, int put)
{
    pc_gpu_handle h;
    void *d = NULL;
    uint64_t n = 0;
    static uint8_t buf[65536];
    if (read(fd, &h, sizeof(h)) != sizeof(h))
        return 20;
    if (F->import_handle(0, &h, &d, &n) || n != sizeof(buf))
        return 21;
    if (want >= 0 && !check(d, n, (uint8_t)want))
        return 22;
    if (put >= 0) {
        fill(buf, sizeof(buf), (uint8_t)put);
        pc_gpu_stream *s;
        pc_gpu_event *e;
        if (F->stream_create(0, &s) || F->event_create(0, &e) ||
            F->copy_async(d, buf, n, PC_GPU_H2D, s) || F->event_record(e, s) ||
            F->event_sync(e) || F->event_destroy(e) || F->stream_destroy(s))
            return 23;
    }
    return F->close_handle(d) ? 24 : 0;
}

Test(gpu_dev, three_processes)
{
    int pb[2], pc[2];
    cr_assert_eq(pipe(pb), 0);
    cr_assert_eq(pipe(pc), 0);
    pid_t b = fork();
    cr_assert_neq(b, -1);
    if (b == 0)
        _exit(role(pb[0], 1, 2)); /* imports, sees the daemon's, writes */
    pid_t c = fork();
    cr_assert_neq(c, -1);
    if (c == 0)
        _exit(role(pc[0], 2, -1)); /* imports, reads what B wrote */

    /* the daemon: allocates, fills, exports */
    uint8_t *d = falloc(0, 65536);
    static uint8_t h[65536];
    fill(h, sizeof(h), 1);
    RC_EQ(F->copy_async(d, h, sizeof(h), PC_GPU_H2D, NULL), 0);
    pc_gpu_handle hd;
    RC_EQ(F->export_handle(d, &hd), 0);
    uint64_t n;
    pc_gpu_uuid hu, mine;
    RC_EQ(pc_gpu_handle_info(&hd, &n, &hu), 0);
    RC_EQ(F->device_uuid(0, &mine), 0);
    cr_assert_eq(n, sizeof(h));
    cr_assert_eq(memcmp(&hu, &mine, sizeof(hu)), 0);

    cr_assert_eq(write(pb[1], &hd, sizeof(hd)), (ssize_t)sizeof(hd));
    cr_assert_eq(wait_child(b), 0, "B imports and writes");
    cr_assert_eq(write(pc[1], &hd, sizeof(hd)), (ssize_t)sizeof(hd));
    cr_assert_eq(wait_child(c), 0, "C imports and reads B's bytes");
    cr_assert(check(d, sizeof(h), 2), "the daemon sees B's bytes too");
    char name[PC_GPU_PAYLOAD];
    RC_EQ(pc_gpu_fake_shm_name(d, name, sizeof(name)), 0);
    ffree(d);
    cr_assert(!shm_exists(name));
    close(pb[0]), close(pb[1]), close(pc[0]), close(pc[1]);
}

Test(gpu_dev, other_device_refused)
{
    RC_EQ(pc_gpu_fake_configure(77, 2), 0);
    pc_gpu_uuid u0, u1;
    RC_EQ(F->device_uuid(0, &u0), 0);
    RC_EQ(F->device_uuid(1, &u1), 0);
    cr_assert_neq(memcmp(&u0, &u1, sizeof(u0)), 0);

    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        pc_gpu_handle h;
        void *d = NULL;
        if (read(p[0], &h, sizeof(h)) != sizeof(h))
            _exit(30);
        if (F->import_handle(0, &h, &d, NULL) != PC_E_PERM || d)
            _exit(31); /* same group, device 0: another GPU */
        if (pc_gpu_fake_configure(78, 2) != 0)
            _exit(32);
        if (F->import_handle(1, &h, &d, NULL) != PC_E_PERM)
            _exit(33); /* another seed: another machine's device 1 */
        if (pc_gpu_fake_configure(77, 2) != 0 ||
            F->import_handle(1, &h, &d, NULL) != 0 || F->close_handle(d))
            _exit(34); /* the right one works */
        _exit(0);
    }
    void *d = falloc(1, 4096);
    pc_gpu_handle h;
    RC_EQ(F->export_handle(d, &h), 0);
    RC_EQ(pc_gpu_fake_configure(1, 1), PC_E_BUSY); /* live handles */
    cr_assert_eq(write(p[1], &h, sizeof(h)), (ssize_t)sizeof(h));
    cr_assert_eq(wait_child(pid), 0);
    void *x = NULL;
    RC_EQ(F->import_handle(0, &h, &x, NULL), PC_E_PERM);
    RC_EQ(F->import_handle(2, &h, &x, NULL), PC_E_NOENT); /* no device 2 */
    ffree(d);
    close(p[0]), close(p[1]);
}

Test(gpu_dev, killed_importer_leaks_nothing)
{
    int p[2], ready[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        pc_gpu_handle h;
        void *d;
        if (read(p[0], &h, sizeof(h)) != sizeof(h) ||
            F->import_handle(0, &h, &d, NULL))
            _exit(40);
        memset(d, 0x5a, 4096);
        if (write(ready[1], "k", 1) != 1)
            _exit(41);
        pause(); /* killed here, mapping open */
        _exit(42);
    }
    uint8_t *d = falloc(0, 4096);
    char name[PC_GPU_PAYLOAD];
    RC_EQ(pc_gpu_fake_shm_name(d, name, sizeof(name)), 0);
    pc_gpu_handle h;
    RC_EQ(F->export_handle(d, &h), 0);
    cr_assert_eq(write(p[1], &h, sizeof(h)), (ssize_t)sizeof(h));
    char k;
    cr_assert_eq(read(ready[0], &k, 1), 1);
    kill(pid, SIGKILL);
    cr_assert_eq(wait_child(pid), 128 + SIGKILL);
    cr_assert_eq(d[4095], 0x5a, "its writes landed");
    ffree(d);
    cr_assert(!shm_exists(name), "nothing in /dev/shm once the owner frees");
    void *x = NULL;
    RC_EQ(F->import_handle(0, &h, &x, NULL), PC_E_NOENT); /* freed */
    cr_assert_null(x);
    close(p[0]), close(p[1]), close(ready[0]), close(ready[1]);
}

Test(gpu_dev, killed_owner_refused_and_swept)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) { /* an owner that dies without freeing */
        void *d;
        pc_gpu_handle h;
        char name[PC_GPU_PAYLOAD];
        if (F->alloc(0, 4096, &d) || F->export_handle(d, &h) ||
            pc_gpu_fake_shm_name(d, name, sizeof(name)))
            _exit(50);
        if (write(p[1], &h, sizeof(h)) != sizeof(h) ||
            write(p[1], name, sizeof(name)) != sizeof(name))
            _exit(51);
        pause();
        _exit(52);
    }
    pc_gpu_handle h;
    char name[PC_GPU_PAYLOAD];
    cr_assert_eq(read(p[0], &h, sizeof(h)), (ssize_t)sizeof(h));
    cr_assert_eq(read(p[0], name, sizeof(name)), (ssize_t)sizeof(name));
    void *x = NULL;
    RC_EQ(F->import_handle(0, &h, &x, NULL), 0); /* alive: fine */
    RC_EQ(F->close_handle(x), 0);
    kill(pid, SIGKILL);
    cr_assert_eq(wait_child(pid), 128 + SIGKILL);
    cr_assert(shm_exists(name));
    RC_EQ(F->import_handle(0, &h, &x, NULL), PC_E_NOENT); /* owner gone */
    unsigned removed = 0;
    RC_EQ(pc_gpu_fake_sweep(&removed), 0);
    cr_assert_geq(removed, 1);
    cr_assert(!shm_exists(name), "the sweep unlinks a dead owner's object");
    close(p[0]), close(p[1]);
}

Test(gpu_dev, bad_inputs)
{
    void *d = (void *)1;
    pc_gpu_handle h;
    uint64_t n;
    char buf[8];
    RC_EQ(F->device_count(NULL), PC_E_INVAL);
    RC_EQ(F->device_uuid(0, NULL), PC_E_INVAL);
    RC_EQ(F->device_uuid(-1, &(pc_gpu_uuid){{0}}), PC_E_NOENT);
    RC_EQ(F->device_uuid(8, &(pc_gpu_uuid){{0}}), PC_E_NOENT);
    RC_EQ(F->device_name(0, NULL, 8), PC_E_INVAL);
    RC_EQ(F->device_name(0, buf, 0), PC_E_INVAL);
    RC_EQ(F->device_name(0, buf, sizeof(buf)), 0); /* truncated, terminated */
    cr_assert_eq(strlen(buf), sizeof(buf) - 1);
    RC_EQ(F->alloc(0, 4096, NULL), PC_E_INVAL);
    RC_EQ(F->alloc(0, 0, &d), PC_E_INVAL);
    cr_assert_null(d);
    RC_EQ(F->alloc(1, 4096, &d), PC_E_NOENT);
    RC_EQ(F->alloc(0, UINT64_MAX, &d), PC_E_RANGE);
    RC_EQ(F->free(NULL), PC_E_INVAL);
    RC_EQ(F->free(buf), PC_E_INVAL);
    RC_EQ(F->export_handle(NULL, &h), PC_E_INVAL);
    RC_EQ(F->export_handle(buf, &h), PC_E_INVAL);
    RC_EQ(F->import_handle(0, NULL, &d, NULL), PC_E_INVAL);
    RC_EQ(F->close_handle(NULL), PC_E_INVAL);
    RC_EQ(F->close_handle(buf), PC_E_INVAL);
    RC_EQ(F->stream_create(0, NULL), PC_E_INVAL);
    RC_EQ(F->stream_create(3, &(pc_gpu_stream *){NULL}), PC_E_NOENT);
    RC_EQ(F->stream_destroy(NULL), PC_E_INVAL);
    RC_EQ(F->event_create(0, NULL), PC_E_INVAL);
    RC_EQ(F->event_record(NULL, NULL), PC_E_INVAL);
    RC_EQ(F->event_query(NULL), PC_E_INVAL);
    RC_EQ(F->event_sync(NULL), PC_E_INVAL);
    RC_EQ(F->event_destroy(NULL), PC_E_INVAL);
    RC_EQ(pc_gpu_fake_configure(0, 0), PC_E_RANGE);
    RC_EQ(pc_gpu_fake_configure(0, 9), PC_E_RANGE);
    RC_EQ(pc_gpu_handle_info(NULL, &n, NULL), PC_E_INVAL);
    RC_EQ(pc_gpu_fake_shm_name(buf, buf, sizeof(buf)), PC_E_INVAL);

    uint8_t *a = falloc(0, 4096);
    RC_EQ(F->free(a + 1), PC_E_INVAL);        /* not a base */
    RC_EQ(F->export_handle(a + 64, &h), PC_E_INVAL);
    RC_EQ(F->export_handle(a, &h), 0);
    RC_EQ(F->export_handle(a, NULL), PC_E_INVAL);
    RC_EQ(F->import_handle(0, &h, NULL, NULL), PC_E_INVAL);

    /* forged bytes: zeros, noise, one flipped byte anywhere */
    pc_gpu_handle f;
    memset(&f, 0, sizeof(f));
    RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_BADMSG);
    for (size_t i = 0; i < sizeof(f.b); i++)
        f.b[i] = (uint8_t)(i * 131 + 17);
    RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_BADMSG);
    RC_EQ(pc_gpu_handle_info(&f, &n, NULL), PC_E_BADMSG);
    for (size_t i = 0; i < sizeof(h.b); i += 5) {
        f = h;
        f.b[i] ^= 0x40;
        RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_BADMSG);
    }
    /* well-formed handles with bad contents: a path, a name not ours, a
     * size the object does not have, a CUDA kind */
    pc_gpu_uuid u;
    RC_EQ(F->device_uuid(0, &u), 0);
    uint8_t pay[PC_GPU_PAYLOAD] = "/pcgpu-/../../etc/passwd";
    pc_gpu__handle_pack(&f, PC_GPU_KIND_FAKE, &u, 4096, pay);
    RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_BADMSG);
    memset(pay, 0, sizeof(pay));
    memcpy(pay, "/prefixcache-x", 14);
    pc_gpu__handle_pack(&f, PC_GPU_KIND_FAKE, &u, 4096, pay);
    RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_BADMSG);
    memset(pay, 0, sizeof(pay));
    RC_EQ(pc_gpu_fake_shm_name(a, (char *)pay, sizeof(pay)), 0);
    pc_gpu__handle_pack(&f, PC_GPU_KIND_FAKE, &u, 8192, pay);
    RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_BADMSG);
    pc_gpu__handle_pack(&f, PC_GPU_KIND_CUDA, &u, 4096, pay);
    RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_BADMSG);
    memset(pay, 0, sizeof(pay));
    memcpy(pay, "/pcgpu-0-nosuchobject", 22);
    pc_gpu__handle_pack(&f, PC_GPU_KIND_FAKE, &u, 4096, pay);
    RC_EQ(F->import_handle(0, &f, &d, NULL), PC_E_NOENT);

    /* a freed allocation's handle */
    ffree(a);
    RC_EQ(F->import_handle(0, &h, &d, NULL), PC_E_NOENT);
    cr_assert_null(d);
    RC_EQ(pc_gpu_handle_info(&h, &n, NULL), 0); /* still readable bytes */
    cr_assert_eq(n, 4096);
}

Test(gpu_dev, pool_backend)
{
    pc_pool_config cfg = {0};
    pc_pool *p = NULL;
    RC_EQ(pc_pool_layout_init(&cfg.layout, 2, 2, 8, 4, PC_DTYPE_FP16), 0);
    cfg.backend = PC_POOL_CUDA;
    cfg.capacity_blocks = 16;
    RC_EQ(pc_pool_create(&cfg, &p), PC_E_INVAL); /* nothing registered */
    RC_EQ(pc_gpu_pool_register(F, 1), PC_E_NOENT); /* no device 1 */
    RC_EQ(pc_pool_register_backend(PC_POOL_HOST, NULL), PC_E_INVAL);

    int pp[2];
    cr_assert_eq(pipe(pp), 0);
    uint64_t bb = cfg.layout.block_bytes;
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) { /* an engine: imports the pool, reads block 3 */
        pc_gpu_handle h;
        void *base;
        uint64_t n;
        if (read(pp[0], &h, sizeof(h)) != sizeof(h) ||
            F->import_handle(0, &h, &base, &n) || n != 16 * bb)
            _exit(60);
        if (!check((uint8_t *)base + 3 * bb, (size_t)bb, 33))
            _exit(61);
        _exit(F->close_handle(base) ? 62 : 0);
    }
    RC_EQ(pc_gpu_pool_register(F, 0), 0);
    RC_EQ(pc_pool_create(&cfg, &p), 0);
    cr_assert_str_eq(pc_pool_backend_name(PC_POOL_CUDA), "cuda");
    char name[PC_GPU_PAYLOAD];
    RC_EQ(pc_gpu_fake_shm_name(pc_pool_base(p), name, sizeof(name)), 0);
    uint32_t ids[4];
    RC_EQ(pc_pool_alloc(p, 4, ids), 0);
    cr_assert_eq(ids[3], 3);
    static uint8_t src[4096];
    cr_assert_leq(bb, sizeof(src));
    fill(src, (size_t)bb, 33);
    RC_EQ(F->copy_async(pc_pool_block_ptr(p, 3), src, bb, PC_GPU_H2D, NULL), 0);
    RC_EQ(F->copy_async(pc_pool_block_ptr(p, 15), src, bb + 1, PC_GPU_H2D,
                        NULL), PC_E_RANGE); /* the last block ends the pool */
    pc_gpu_handle h;
    pc_gpu_uuid u, mine;
    const pc_gpu_ops *o = NULL;
    RC_EQ(pc_gpu_pool_handle(p, &h, &u, &o), 0);
    RC_EQ(F->device_uuid(0, &mine), 0);
    cr_assert_eq(memcmp(&u, &mine, sizeof(u)), 0);
    cr_assert_eq(o, F);
    cr_assert_eq(write(pp[1], &h, sizeof(h)), (ssize_t)sizeof(h));
    cr_assert_eq(wait_child(pid), 0);
    RC_EQ(pc_pool_check(p), 0);
    pc_pool_destroy(p);
    cr_assert(!shm_exists(name), "destroy frees the allocation");
    RC_EQ(F->import_handle(0, &h, &(void *){NULL}, NULL), PC_E_NOENT);

    pc_pool_config host = cfg;
    host.backend = PC_POOL_NONE;
    RC_EQ(pc_pool_create(&host, &p), 0);
    RC_EQ(pc_gpu_pool_handle(p, &h, NULL, NULL), PC_E_INVAL);
    pc_pool_destroy(p);
    RC_EQ(pc_gpu_pool_register(NULL, 0), 0);
    RC_EQ(pc_pool_create(&cfg, &p), PC_E_INVAL); /* unregistered again */
    close(pp[0]), close(pp[1]);
}

/* ---- the CUDA runtime: only where there is one ---------------------------- */

Test(gpu_dev, cuda_runtime)
{
    const pc_gpu_ops *C = pc_gpu_ops_get("cuda");
    if (!C)
        cr_skip("built without CUDA");
    /* The importer is forked before this process touches CUDA (a child
     * must not use a runtime its parent initialized); it reads the handle,
     * or EOF when there is no device. */
    int pp[2];
    cr_assert_eq(pipe(pp), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        pc_gpu_handle h;
        void *d = NULL, *d2 = NULL;
        uint8_t *back = malloc(4096);
        close(pp[1]);
        ssize_t r = read(pp[0], &h, sizeof(h));
        if (r == 0)
            _exit(0); /* skipped */
        if (r != sizeof(h) || !back || C->import_handle(0, &h, &d, NULL) ||
            C->import_handle(0, &h, &d2, NULL) || d != d2)
            _exit(70);
        if (C->copy_async(back, d, 4096, PC_GPU_D2H, NULL) ||
            C->stream_sync(NULL) || !check(back, 4096, 5))
            _exit(71); /* the exporter's bytes, across processes */
        fill(back, 4096, 6);
        if (C->copy_async(d, back, 4096, PC_GPU_H2D, NULL) ||
            C->stream_sync(NULL) || C->close_handle(d) || C->close_handle(d2))
            _exit(72);
        _exit(0);
    }
    close(pp[0]);
    int n = 0;
    if (C->device_count(&n) != 0 || n == 0) {
        close(pp[1]);
        wait_child(pid);
        cr_skip("no CUDA device visible");
    }
    pc_gpu_uuid u;
    char name[PC_GPU_NAME_MAX];
    RC_EQ(C->device_uuid(0, &u), 0);
    RC_EQ(C->device_name(0, name, sizeof(name)), 0);
    RC_EQ(C->alloc(0, 0, &(void *){NULL}), PC_E_INVAL);
    RC_EQ(C->alloc(n, 4096, &(void *){NULL}), PC_E_NOENT);

    enum { N = 1 << 20 };
    uint8_t *h = malloc(N), *back = malloc(N);
    cr_assert(h && back);
    fill(h, N, 5);
    uint8_t *d;
    pc_gpu_stream *s;
    pc_gpu_event *e;
    RC_EQ(C->alloc(0, 2 * N, (void **)&d), 0);
    RC_EQ(C->stream_create(0, &s), 0);
    RC_EQ(C->event_create(0, &e), 0);
    RC_EQ(C->copy_async(d, h, N, PC_GPU_H2D, s), 0);
    RC_EQ(C->copy_async(d + N, d, N, PC_GPU_D2D, s), 0);
    RC_EQ(C->copy_async(back, d + N, N, PC_GPU_D2H, s), 0);
    RC_EQ(C->event_record(e, s), 0);
    RC_EQ(C->event_sync(e), 0);
    RC_EQ(C->event_query(e), 0);
    cr_assert(check(back, N, 5));

    pc_gpu_handle hd;
    RC_EQ(C->export_handle(d, &hd), 0);
    pc_gpu_uuid hu;
    uint64_t bytes;
    RC_EQ(pc_gpu_handle_info(&hd, &bytes, &hu), 0);
    cr_assert_eq(bytes, 2 * N);
    cr_assert_eq(memcmp(&hu, &u, sizeof(u)), 0);
    void *a, *b;
    RC_EQ(C->import_handle(0, &hd, &a, NULL), 0); /* own: the allocation */
    RC_EQ(C->import_handle(0, &hd, &b, NULL), 0);
    cr_assert_eq(a, (void *)d);
    cr_assert_eq(a, b);
    RC_EQ(C->close_handle(a), 0);
    RC_EQ(C->close_handle(b), 0);
    RC_EQ(C->close_handle(b), PC_E_INVAL);
    pc_gpu_handle f = hd;
    f.b[50] ^= 1;
    RC_EQ(C->import_handle(0, &f, &a, NULL), PC_E_BADMSG);

    /* another process imports twice (one mapping), reads, writes */
    cr_assert_eq(write(pp[1], &hd, sizeof(hd)), (ssize_t)sizeof(hd));
    close(pp[1]);
    cr_assert_eq(wait_child(pid), 0, "the importer process");
    RC_EQ(C->copy_async(back, d, 4096, PC_GPU_D2H, NULL), 0);
    RC_EQ(C->stream_sync(NULL), 0);
    cr_assert(check(back, 4096, 6), "the importer's bytes");

    RC_EQ(C->event_destroy(e), 0);
    RC_EQ(C->stream_destroy(s), 0);
    RC_EQ(C->free(d), 0);
    free(h);
    free(back);
}

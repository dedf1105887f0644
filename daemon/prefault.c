/*
 * daemon/prefault.c - pre-fault the memory jemalloc takes from the kernel,
 * in idle time.
 *
 * Why: a growing tree writes every new node into memory the process has
 * never touched, and each first touch of a 4 KiB page is a page fault.  In
 * a VM a fault costs microseconds (exit, zeroing, memcg charge): profiled
 * on rpc_bench's cycle (a 128-page node per prompt), faults were a third of
 * the daemon's own CPU time.
 *
 *   jemalloc grows arena 0 ──► populate_alloc (extent hook)
 *                                 │ default alloc, returns at once
 *                                 ▼
 *                           ring of regions ──► "prefault" thread, SCHED_IDLE
 *                                                 madvise(MADV_POPULATE_WRITE)
 *                                                 256 KiB at a time
 *
 * jemalloc maps ahead of its needs (its mappings grow by about a quarter of
 * what it holds), so most of a new region is touched by the tree only
 * later; a thread that runs only when the CPU would idle populates it
 * first, with one call per chunk instead of a fault per page.  Pages the
 * daemon reaches first simply fault as before (populating a present page is
 * a no-op), so nothing depends on the thread keeping up.
 *
 * Best effort: without jemalloc (sanitizer builds), on a kernel without
 * MADV_POPULATE_WRITE (< 5.14), or on any error, nothing changes.  The
 * price: memory jemalloc has mapped but not handed out yet is resident.
 */
#include "daemon/daemon.h"

#ifdef PCD_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <errno.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define RING 64                 /* regions waiting; more are not prefaulted */
#define CHUNK ((size_t)256 << 10)

static extent_hooks_t *g_default;
static extent_hooks_t g_hooks;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static struct {
    char *p;
    size_t size;
} g_ring[RING];
static unsigned g_head, g_tail; /* g_tail - g_head regions waiting */
static _Atomic int g_supported = 1;

static void *prefault_main(void *arg)
{
    (void)arg;
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    for (;;) {
        pthread_mutex_lock(&g_mu);
        while (g_head == g_tail)
            pthread_cond_wait(&g_cv, &g_mu);
        char *p = g_ring[g_head % RING].p;
        size_t size = g_ring[g_head % RING].size;
        g_head++;
        pthread_mutex_unlock(&g_mu);
        for (size_t off = 0; off < size && g_supported; off += CHUNK) {
            size_t n = size - off < CHUNK ? size - off : CHUNK;
            if (madvise(p + off, n, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
                g_supported = 0; /* an old kernel: stop trying */
        }
    }
    return NULL;
}

static void *populate_alloc(extent_hooks_t *h, void *addr, size_t size,
                            size_t align, bool *zero, bool *commit,
                            unsigned arena)
{
    (void)h;
    void *p = g_default->alloc(g_default, addr, size, align, zero, commit, arena);
    /* trylock: jemalloc holds its own locks here, and the idle thread,
     * preempted while it holds g_mu, must never make an allocation wait;
     * a region skipped is only faulted the ordinary way. */
    if (p && g_supported && pthread_mutex_trylock(&g_mu) == 0) {
        if (g_tail - g_head < RING) {
            g_ring[g_tail % RING].p = p;
            g_ring[g_tail % RING].size = size;
            g_tail++;
            pthread_cond_signal(&g_cv);
        }
        pthread_mutex_unlock(&g_mu);
    }
    return p;
}

int pcd_prefault_install(void)
{
    extent_hooks_t *old = NULL, *mine = &g_hooks;
    size_t sz = sizeof(old);
    if (mallctl("arena.0.extent_hooks", &old, &sz, NULL, 0) || !old)
        return PC_E_IO;
    /* The thread takes no signals: the daemon's loop must get them. */
    sigset_t all, prev;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &prev);
    pthread_t th;
    int rc = pthread_create(&th, NULL, prefault_main, NULL);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    if (rc)
        return PC_E_IO;
    pthread_detach(th);
    g_default = old;
    g_hooks = *old;
    g_hooks.alloc = populate_alloc;
    if (mallctl("arena.0.extent_hooks", NULL, NULL, &mine, sizeof(mine)))
        return PC_E_IO;
    return 0;
}
#else
int pcd_prefault_install(void) { return PC_E_IO; }
#endif

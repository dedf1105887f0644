/*
 * daemon/prefault.c - pre-fault the memory jemalloc takes from the kernel.
 *
 * Why: a growing tree writes every new node into memory the process has
 * never touched, and each first touch of a 4 KiB page is a page fault.  In
 * a VM a fault costs microseconds (exit, zeroing, memcg charge): profiled
 * on rpc_bench's cycle (a 128-page node per prompt), faults were a third of
 * the daemon's own CPU time.  Asking the kernel to populate a whole extent
 * when jemalloc maps it (MADV_POPULATE_WRITE, Linux 5.14+) does the same
 * zeroing in one call, without a fault per page.
 *
 * How: arena 0 (the daemon's thread: the tree, the leases) gets extent
 * hooks that call jemalloc's default allocation hook and then madvise the
 * new extent.  Best effort: without jemalloc (sanitizer builds), with an
 * older kernel, or on any error, nothing changes.  The price: memory that
 * jemalloc has mapped but not handed out yet is resident (jemalloc grows
 * its mappings in steps of about a quarter of what it holds).
 */
#include "daemon/daemon.h"

#ifdef PCD_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static extent_hooks_t *g_default;
static extent_hooks_t g_hooks;
static int g_populate = 1;

static void *populate_alloc(extent_hooks_t *h, void *addr, size_t size,
                            size_t align, bool *zero, bool *commit,
                            unsigned arena)
{
    (void)h;
    void *p = g_default->alloc(g_default, addr, size, align, zero, commit, arena);
    if (p && g_populate && madvise(p, size, MADV_POPULATE_WRITE) != 0)
        g_populate = 0; /* not supported here: stop trying */
    return p;
}

int pcd_prefault_install(void)
{
    extent_hooks_t *old = NULL, *mine = &g_hooks;
    size_t sz = sizeof(old);
    if (mallctl("arena.0.extent_hooks", &old, &sz, NULL, 0) || !old)
        return PC_E_IO;
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

/*
 * tests/shm_guard.h - shm-name tracking and a crash guard for the tests that
 * create host pools (test_blockpool.c, test_cache.c).  Header-only: every
 * function and variable is static, so each test program gets its own copy.
 *
 * Crash guard: the shm names of the host pools alive in this test.  An
 * assertion failure goes through the suite's .fini; a fatal signal (an
 * assert() in the implementation, a fault) unlinks them here first, then
 * hands the signal back to whoever handled it before (ASan reports faults).
 *
 * Use:
 *   name_add(pool)   when a pool is created (a pool without shm: ignored);
 *   name_del(pool)   before it is destroyed;
 *   name_clear()     in the suite's .fini, after destroying what was left;
 *   crash_guard()    once, from the suite's .init (it records the owning
 *                    pid: a forked child that crashes unlinks nothing).
 * At most SHM_GUARD_NAMES names are tracked at once; more are not guarded.
 */
#ifndef TESTS_SHM_GUARD_H
#define TESTS_SHM_GUARD_H

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "blockpool/blockpool.h"

#define SHM_GUARD_NAMES 16

static char g_names[SHM_GUARD_NAMES][PC_POOL_SHM_NAME_MAX + 1];
static pid_t g_owner;
static const int g_fatal[5] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
static struct sigaction g_old[sizeof(g_fatal) / sizeof(g_fatal[0])];

#define SHM_GUARD_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Tracks p's shm name (if it has one) in the first free slot. */
static void name_add(const pc_pool *p)
{
    const char *n = NULL;
    if (pc_pool_shm_info(p, &n, NULL) != 0)
        return;
    for (size_t i = 0; i < SHM_GUARD_NELEM(g_names); i++)
        if (!g_names[i][0]) {
            snprintf(g_names[i], sizeof(g_names[i]), "%s", n);
            return;
        }
}

/* Stops tracking p's shm name. */
static void name_del(const pc_pool *p)
{
    const char *n = NULL;
    if (pc_pool_shm_info(p, &n, NULL) != 0)
        return;
    for (size_t i = 0; i < SHM_GUARD_NELEM(g_names); i++)
        if (strcmp(g_names[i], n) == 0)
            g_names[i][0] = '\0';
}

/* Forgets every tracked name (unlinks nothing). */
static void name_clear(void)
{
    memset(g_names, 0, sizeof(g_names));
}

static void on_fatal(int sig)
{
    if (getpid() == g_owner) /* not in a forked child */
        for (size_t i = 0; i < SHM_GUARD_NELEM(g_names); i++)
            if (g_names[i][0])
                shm_unlink(g_names[i]);
    for (size_t i = 0; i < SHM_GUARD_NELEM(g_fatal); i++)
        if (g_fatal[i] == sig)
            sigaction(sig, &g_old[i], NULL);
    /* returning re-executes a faulting instruction (now under the old
     * handler); abort() raises again by itself */
}

/* Installs on_fatal for SIGABRT, SIGSEGV, SIGBUS, SIGFPE and SIGILL,
 * remembering the previous handlers; the calling process owns the names. */
static void crash_guard(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal;
    sigemptyset(&sa.sa_mask);
    g_owner = getpid();
    for (size_t i = 0; i < SHM_GUARD_NELEM(g_fatal); i++)
        sigaction(g_fatal[i], &sa, &g_old[i]);
}

#endif

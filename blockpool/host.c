/*
 * blockpool/host.c - the host backend: POSIX shared memory.
 *
 * The daemon creates "/name" in /dev/shm, sizes it with ftruncate (sparse:
 * nothing is allocated) and maps it MAP_SHARED | MAP_NORESERVE without
 * touching it, so a 64 GiB pool starts in microseconds on a small machine and
 * pages appear as engines first write them.  Engines map the same object by
 * name (pc_pool_map) and read/write blocks in place.  The daemon unlinks the
 * name when the pool is destroyed; mappings that engines hold stay valid
 * until they unmap.
 *
 * Who owns a name: the creator holds flock(LOCK_EX) on the object's fd for
 * the pool's lifetime (tmpfs supports flock; engines that map the pool never
 * take it).  The kernel drops the lock however the process ends, so an
 * object found under our name on create tells whose it is:
 *
 *   shm_open(O_CREAT | O_EXCL) ── ok ─────────────────────► flock: ours
 *        │ EEXIST
 *        ▼
 *   another uid owns it, or not a file ──► PC_E_PERM  (never touched)
 *   flock(LOCK_EX | LOCK_NB) ── EWOULDBLOCK ──► PC_E_BUSY (a live creator)
 *        │ ok: its creator is gone (kill -9, a crash)
 *        ▼
 *   shm_unlink it, create afresh (pc_pool_shm_reclaimed() says so)
 *
 * Why flock and not a pid file: a pid can be reused and a file can outlive
 * its writer; the lock cannot.  Same-uid objects nobody locks count as dead
 * pools: a shm_name must be a name only prefixcache uses.
 *
 * Races: two creators on one name, or one reclaiming the object the other
 * just created before it locked it.  Every round therefore ends by checking
 * that the name still leads to the inode we locked, and starts over if not,
 * at most CLAIM_TRIES times (as take_lock in rpc/server.c does).
 *
 * Modes: the object is created 0600 and then given to cfg->shm_gid (fchown)
 * and cfg->shm_mode (fchmod) through the fd: the umask never decides who may
 * map the pool, no path is followed, and the object is never wider than
 * asked, not even for a moment.
 */
#include "blockpool/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLAIM_TRIES 8
/* Where glibc's (and musl's) shm_open keeps its objects: only used to stat a
 * name without the read permission that opening it would need. */
#define SHM_DIR "/dev/shm"

static int valid_name(const char *n)
{
    size_t len = strlen(n);
    return n[0] == '/' && len > 1 && len <= PC_POOL_SHM_NAME_MAX &&
           strchr(n + 1, '/') == NULL;
}

static int name_stat(const char *name, struct stat *st)
{
    char path[sizeof(SHM_DIR) + PC_POOL_SHM_NAME_MAX];
    snprintf(path, sizeof(path), SHM_DIR "%s", name);
    return lstat(path, st);
}

/* True when name still leads to fd's object. */
static int name_is(const char *name, int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && name_stat(name, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* "/prefixcache-<euid>-<64 random bits>": nobody can guess it ahead of us. */
static void auto_name(char *buf, size_t len)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec ts; /* no entropy yet (early boot): still unique */
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_sec << 20 ^
            (uint64_t)ts.tv_nsec;
    }
    snprintf(buf, len, "/prefixcache-%lu-%016" PRIx64, (unsigned long)geteuid(), r);
}

/* An object already has our name.  0 once a dead creator's object is
 * unlinked (p->reclaimed) or when it vanished meanwhile: try again. */
static int reclaim(pc_pool *p)
{
    int fd = shm_open(p->shm_name, O_RDONLY, 0); /* + O_NOFOLLOW, O_CLOEXEC */
    if (fd < 0) {
        struct stat st;
        if (errno == ENOENT)
            return 0;
        if (errno == EACCES && name_stat(p->shm_name, &st) == 0 &&
            st.st_uid != geteuid())
            return PC_E_PERM;
        return errno == EACCES || errno == ELOOP ? PC_E_PERM : PC_E_IO;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = PC_E_IO;
    else if (st.st_uid != geteuid() || !S_ISREG(st.st_mode))
        rc = PC_E_PERM; /* someone else's: not ours to judge */
    else if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        rc = errno == EWOULDBLOCK ? PC_E_BUSY : PC_E_IO;
    else if (name_is(p->shm_name, fd) && shm_unlink(p->shm_name) == 0)
        p->reclaimed = true; /* unlinked while we hold its lock */
    close(fd);
    return rc;
}

/* Create p->shm_name afresh and lock it; *out gets the fd (O_RDWR). */
static int claim(pc_pool *p, int *out)
{
    for (int i = 0; i < CLAIM_TRIES; i++) {
        int fd = shm_open(p->shm_name, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd < 0) {
            if (errno != EEXIST)
                return errno == EACCES ? PC_E_PERM : PC_E_IO;
            int rc = reclaim(p);
            if (rc)
                return rc;
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            if (name_is(p->shm_name, fd)) {
                *out = fd;
                return 0;
            }
        } else if (errno != EWOULDBLOCK) {
            if (name_is(p->shm_name, fd)) /* no lock, no pool: leave nothing */
                shm_unlink(p->shm_name);
            close(fd);
            return PC_E_IO;
        }
        /* Locked or replaced by a creator that took ours for a dead pool
         * (it unlinks it, or already has): start over. */
        close(fd);
    }
    return PC_E_BUSY;
}

static int host_open(pc_pool *p, const pc_pool_config *cfg, uint64_t bytes)
{
    if (cfg->shm_name && cfg->shm_name[0]) {
        if (!valid_name(cfg->shm_name))
            return PC_E_INVAL;
        snprintf(p->shm_name, sizeof(p->shm_name), "%s", cfg->shm_name);
    } else {
        auto_name(p->shm_name, sizeof(p->shm_name));
    }
    if ((uint64_t)(off_t)bytes != bytes || bytes > SIZE_MAX ||
        cfg->shm_mode > 0777)
        return PC_E_RANGE;
    int fd, rc = claim(p, &fd);
    if (rc)
        return rc;
    rc = PC_E_IO;
    if (ftruncate(fd, (off_t)bytes) != 0 ||
        (cfg->shm_chgrp && fchown(fd, (uid_t)-1, (gid_t)cfg->shm_gid) != 0) ||
        fchmod(fd, cfg->shm_mode ? (mode_t)cfg->shm_mode : 0600) != 0)
        goto fail;
    void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
        rc = errno == ENOMEM ? PC_E_NOMEM : PC_E_IO;
        goto fail;
    }
    p->fd = fd;
    p->base = base;
    p->bytes = bytes;
    return 0;
fail:;
    int e = errno; /* the cause, for the caller's message (blockpool.h) */
    shm_unlink(p->shm_name); /* ours: we still hold its lock */
    close(fd);
    errno = e;
    return rc;
}

static void host_close(pc_pool *p)
{
    if (p->base)
        munmap(p->base, p->bytes);
    if (p->fd >= 0) {
        shm_unlink(p->shm_name); /* before the lock goes with the fd */
        close(p->fd);
    }
    p->base = NULL;
    p->fd = -1;
}

const pc_pool_ops pc_pool_host_ops = {"host", host_open, host_close};

int pc_pool_shm_info(const pc_pool *p, const char **name, uint64_t *bytes)
{
    if (!p || p->backend != PC_POOL_HOST)
        return PC_E_INVAL;
    if (name)
        *name = p->shm_name;
    if (bytes)
        *bytes = p->bytes;
    return 0;
}

bool pc_pool_shm_reclaimed(const pc_pool *p)
{
    return p && p->backend == PC_POOL_HOST && p->reclaimed;
}

int pc_pool_shm_owner(const char *shm_name, uint32_t *uid)
{
    struct stat st;
    if (!shm_name || !uid || !valid_name(shm_name))
        return PC_E_INVAL;
    if (name_stat(shm_name, &st) != 0)
        return errno == ENOENT ? PC_E_NOENT : PC_E_IO;
    *uid = (uint32_t)st.st_uid;
    return 0;
}

int pc_pool_map(const char *shm_name, uint64_t bytes, void **base)
{
    if (!shm_name || !base || !bytes || !valid_name(shm_name) ||
        bytes > SIZE_MAX)
        return PC_E_INVAL;
    *base = NULL;
    int fd = shm_open(shm_name, O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? PC_E_NOENT : errno == EACCES ? PC_E_PERM : PC_E_IO;
    struct stat st;
    int rc = PC_E_IO;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < bytes)
        rc = PC_E_RANGE; /* the pool is smaller than the caller believes */
    else if (fstat(fd, &st) == 0) {
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (m != MAP_FAILED) {
            *base = m;
            rc = 0;
        }
    }
    close(fd);
    return rc;
}

void pc_pool_unmap(void *base, uint64_t bytes)
{
    if (base)
        munmap(base, bytes);
}

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
 */
#include "blockpool/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int valid_name(const char *n)
{
    size_t len = strlen(n);
    return n[0] == '/' && len > 1 && len <= PC_POOL_SHM_NAME_MAX &&
           strchr(n + 1, '/') == NULL;
}

static int host_open(pc_pool *p, const pc_pool_config *cfg, uint64_t bytes)
{
    if (cfg->shm_name && cfg->shm_name[0]) {
        if (!valid_name(cfg->shm_name))
            return PC_E_INVAL;
        snprintf(p->shm_name, sizeof(p->shm_name), "%s", cfg->shm_name);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(p->shm_name, sizeof(p->shm_name), "/prefixcache-%ld-%lx",
                 (long)getpid(), (unsigned long)(ts.tv_nsec ^ ts.tv_sec));
    }
    if ((uint64_t)(off_t)bytes != bytes || bytes > SIZE_MAX)
        return PC_E_RANGE;
    int fd = shm_open(p->shm_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
        return errno == EEXIST ? PC_E_BUSY : PC_E_IO;
    int rc = PC_E_IO;
    if (ftruncate(fd, (off_t)bytes) != 0)
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
fail:
    close(fd);
    shm_unlink(p->shm_name);
    return rc;
}

static void host_close(pc_pool *p)
{
    if (p->base)
        munmap(p->base, p->bytes);
    if (p->fd >= 0) {
        close(p->fd);
        shm_unlink(p->shm_name);
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

int pc_pool_map(const char *shm_name, uint64_t bytes, void **base)
{
    if (!shm_name || !base || !bytes || !valid_name(shm_name) ||
        bytes > SIZE_MAX)
        return PC_E_INVAL;
    *base = NULL;
    int fd = shm_open(shm_name, O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? PC_E_NOENT : PC_E_IO;
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

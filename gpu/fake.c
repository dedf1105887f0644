/*
 * gpu/fake.c - the fake device: "device memory" in POSIX shared memory, so
 * that the whole GPU path (allocate, export, import in another process,
 * copy, wait) runs on any CPU and its handles really cross processes.
 *
 *   owner process                          /dev/shm                importer
 *   alloc ── shm_open(O_EXCL, 0600) ──► pcgpu-<euid>-<64 random bits>
 *         ── flock(LOCK_EX), kept ──┘      ▲        ▲
 *         ── mmap: dptr                    │        └── import: shm_open,
 *   export ── [UUID|size|name] ────────────┼──────────► owner alive? mmap
 *   free  ── shm_unlink, munmap, close ────┘            close: munmap on the
 *                                                       last reference
 *
 * What it guarantees (and tests rely on):
 *   - a device pointer is the mapped address: tests read bytes directly;
 *   - every copy, launch and event completes at once, in call order, on the
 *     calling thread: streams are trivially in order and results are
 *     deterministic; event_query is never PC_E_BUSY;
 *   - copies are checked: a device side that is no allocation or import of
 *     this process is PC_E_INVAL, one that runs past its end PC_E_RANGE
 *     (the CUDA runtime would corrupt memory or fault instead);
 *   - devices have UUIDs derived from the boot id, a seed and the index, so
 *     a process with another seed is another machine's GPU: PC_E_PERM;
 *   - a freed allocation's handle is PC_E_NOENT: the name is gone, or the
 *     object is there but nobody holds its creator's lock (the creator was
 *     killed before freeing) - the lock tells, as in blockpool/host.c;
 *   - nothing stays in /dev/shm: free unlinks at once, an importer's mapping
 *     dies with it, and a killed owner's objects are unlinked by the next
 *     process's first alloc (pc_gpu_fake_sweep).
 * A forked child shares its parent's open objects and so their locks: an
 * owner counts as alive while any process it forked lives.
 */
#include "gpu/dev_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"
#define PREFIX "/pcgpu-"
#define MAX_DEVICES 8
#define CLAIM_TRIES 8
#define STREAM_MAGIC 0x5354524du
#define EVENT_MAGIC 0x4556454eu

typedef struct fake_alloc {
    char name[PC_GPU_PAYLOAD];
    int fd;          /* holds LOCK_EX while the allocation lives */
    int dev;
    void *base;
    uint64_t bytes;
    struct fake_alloc *next;
} fake_alloc;

struct pc_gpu_stream {
    uint32_t magic;
    int dev;
    uint64_t issued; /* work done so far: everything is done at once */
};

struct pc_gpu_event {
    uint32_t magic;
    int dev;
    uint64_t recorded;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_configured, g_swept;
static uint64_t g_seed;
static int g_devices = 1;
static fake_alloc *g_allocs;
static const pc_gpu__mapper g_mapper;
static pc_gpu__imports g_imp = {PTHREAD_MUTEX_INITIALIZER, NULL, &g_mapper};

/* host_alloc's mappings and their lengths (munmap needs the length). */
typedef struct host_map {
    void *p;
    size_t len;
    struct host_map *next;
} host_map;
static host_map *g_hosts;

static int host_track(void *p, size_t len)
{
    host_map *h = malloc(sizeof(*h));
    if (!h)
        return PC_E_NOMEM;
    *h = (host_map){p, len, g_hosts};
    g_hosts = h;
    return 0;
}

/* The length of p's mapping (0: not one of ours), forgotten. */
static size_t host_untrack(void *p)
{
    for (host_map **pp = &g_hosts; *pp; pp = &(*pp)->next) {
        if ((*pp)->p != p)
            continue;
        host_map *h = *pp;
        size_t len = h->len;
        *pp = h->next;
        free(h);
        return len;
    }
    return 0;
}

/* ---- identity -------------------------------------------------------------- */

static void configure_default(void)
{
    if (g_configured)
        return;
    const char *s = getenv("PREFIXCACHE_FAKE_GPU_SEED");
    g_seed = s ? strtoull(s, NULL, 10) : 0;
    g_configured = true;
}

int pc_gpu_fake_configure(uint64_t seed, int devices)
{
    if (devices < 1 || devices > MAX_DEVICES)
        return PC_E_RANGE;
    int rc = 0;
    /* lock order: the import table's, then g_lock (an import looks up our
     * own allocations with its table locked) */
    pthread_mutex_lock(&g_imp.lock);
    pthread_mutex_lock(&g_lock);
    if (g_allocs || g_imp.head) {
        rc = PC_E_BUSY; /* live handles carry the old UUIDs */
    } else {
        g_seed = seed;
        g_devices = devices;
        g_configured = true;
    }
    pthread_mutex_unlock(&g_lock);
    pthread_mutex_unlock(&g_imp.lock);
    return rc;
}

/* The boot id names this machine (and boot: shm does not outlive it). */
static void machine_id(char buf[64])
{
    memset(buf, 0, 64);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(buf, 64, f))
            buf[0] = '\0';
        fclose(f);
    }
    if (!buf[0])
        gethostname(buf, 63);
}

static int dev_ok(int dev)
{
    configure_default();
    return dev >= 0 && dev < g_devices;
}

/* With g_lock held. */
static void uuid_of(int dev, pc_gpu_uuid *u)
{
    char id[64];
    machine_id(id);
    uint64_t h[2];
    for (int i = 0; i < 2; i++) {
        uint64_t x = pc_gpu__fnv(0xcbf29ce484222325ull ^ (uint64_t)i,
                                 "prefixcache-fake-gpu", 20);
        x = pc_gpu__fnv(x, id, strlen(id));
        x = pc_gpu__fnv(x, &g_seed, sizeof(g_seed));
        x = pc_gpu__fnv(x, &dev, sizeof(dev));
        h[i] = x;
    }
    memcpy(u->b, h, sizeof(h));
}

static int fake_device_count(int *n)
{
    if (!n)
        return PC_E_INVAL;
    pthread_mutex_lock(&g_lock);
    configure_default();
    *n = g_devices;
    pthread_mutex_unlock(&g_lock);
    return 0;
}

static int fake_device_uuid(int dev, pc_gpu_uuid *out)
{
    if (!out)
        return PC_E_INVAL;
    int rc = 0;
    pthread_mutex_lock(&g_lock);
    if (dev_ok(dev))
        uuid_of(dev, out);
    else
        rc = PC_E_NOENT;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_device_name(int dev, char *buf, size_t len)
{
    if (!buf || !len)
        return PC_E_INVAL;
    pthread_mutex_lock(&g_lock);
    int ok = dev_ok(dev);
    pthread_mutex_unlock(&g_lock);
    if (!ok)
        return PC_E_NOENT;
    snprintf(buf, len, "prefixcache fake device %d", dev);
    return 0;
}

/* ---- names and owners ---------------------------------------------------- */

static int name_stat(const char *name, struct stat *st)
{
    char path[sizeof(SHM_DIR) + PC_GPU_PAYLOAD];
    snprintf(path, sizeof(path), SHM_DIR "%s", name);
    return lstat(path, st);
}

/* True when name still leads to fd's object. */
static bool name_is(const char *name, int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && name_stat(name, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* A name only we use, that nobody can guess ahead of us. */
static void new_name(char buf[PC_GPU_PAYLOAD])
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec ts; /* no entropy yet: unique is enough */
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_sec << 20 ^
            (uint64_t)ts.tv_nsec;
    }
    memset(buf, 0, PC_GPU_PAYLOAD);
    snprintf(buf, PC_GPU_PAYLOAD, PREFIX "%lu-%016" PRIx64,
             (unsigned long)geteuid(), r);
}

/* A payload that can be a name of ours: NUL-terminated, our prefix, no
 * other slash.  Anything else never reaches shm_open. */
static bool valid_name(const uint8_t p[PC_GPU_PAYLOAD])
{
    const char *n = (const char *)p;
    size_t len = strnlen(n, PC_GPU_PAYLOAD);
    if (len == PC_GPU_PAYLOAD || len <= strlen(PREFIX) ||
        strncmp(n, PREFIX, strlen(PREFIX)) != 0 || strchr(n + 1, '/'))
        return false;
    for (size_t i = len; i < PC_GPU_PAYLOAD; i++)
        if (p[i])
            return false;
    return true;
}

int pc_gpu_fake_sweep(unsigned *removed)
{
    char mine[32];
    unsigned n = 0;
    snprintf(mine, sizeof(mine), "pcgpu-%lu-", (unsigned long)geteuid());
    DIR *d = opendir(SHM_DIR);
    if (!d)
        return PC_E_IO;
    struct dirent *de;
    while ((de = readdir(d))) {
        char name[PC_GPU_PAYLOAD];
        if (strncmp(de->d_name, mine, strlen(mine)) != 0 ||
            strlen(de->d_name) + 2 > sizeof(name))
            continue;
        snprintf(name, sizeof(name), "/%s", de->d_name);
        int fd = shm_open(name, O_RDONLY, 0);
        if (fd < 0)
            continue;
        struct stat st;
        /* Unlocked = its creator is gone (the kernel dropped the lock).
         * A creator between shm_open and flock loses its object here and
         * notices by name_is: it starts over with a new name. */
        if (fstat(fd, &st) == 0 && st.st_uid == geteuid() &&
            S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            name_is(name, fd) && shm_unlink(name) == 0)
            n++;
        close(fd);
    }
    closedir(d);
    if (removed)
        *removed = n;
    return 0;
}

/* ---- memory ---------------------------------------------------------------- */

static int claim(fake_alloc *a)
{
    for (int i = 0; i < CLAIM_TRIES; i++) {
        new_name(a->name);
        int fd = shm_open(a->name, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            return errno == EACCES ? PC_E_PERM : errno == EMFILE ||
                   errno == ENFILE ? PC_E_LIMIT : PC_E_IO;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && name_is(a->name, fd)) {
            a->fd = fd;
            return 0;
        }
        close(fd); /* swept before we locked it: another name */
    }
    return PC_E_BUSY;
}

static int fake_alloc_fn(int dev, uint64_t bytes, void **dptr)
{
    if (!dptr)
        return PC_E_INVAL;
    *dptr = NULL;
    if (!bytes)
        return PC_E_INVAL;
    if (bytes > SIZE_MAX || (uint64_t)(off_t)bytes != bytes)
        return PC_E_RANGE;
    pthread_mutex_lock(&g_lock);
    int rc = dev_ok(dev) ? 0 : PC_E_NOENT;
    if (!rc && !g_swept) {
        g_swept = true;
        pc_gpu_fake_sweep(NULL); /* best effort: a leak is not our error */
    }
    pthread_mutex_unlock(&g_lock);
    if (rc)
        return rc;
    fake_alloc *a = calloc(1, sizeof(*a));
    if (!a)
        return PC_E_NOMEM;
    if ((rc = claim(a))) {
        free(a);
        return rc;
    }
    rc = PC_E_IO;
    if (ftruncate(a->fd, (off_t)bytes) != 0) {
        rc = errno == EFBIG || errno == EINVAL ? PC_E_RANGE : PC_E_IO;
        goto fail;
    }
    a->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE, a->fd, 0);
    if (a->base == MAP_FAILED) {
        rc = errno == ENOMEM ? PC_E_NOMEM : PC_E_IO;
        goto fail;
    }
    a->bytes = bytes;
    a->dev = dev;
    pthread_mutex_lock(&g_lock);
    a->next = g_allocs;
    g_allocs = a;
    pthread_mutex_unlock(&g_lock);
    *dptr = a->base;
    return 0;
fail:
    shm_unlink(a->name); /* ours: we hold its lock */
    close(a->fd);
    free(a);
    return rc;
}

static int fake_free(void *dptr)
{
    if (!dptr)
        return PC_E_INVAL;
    fake_alloc *a = NULL;
    pthread_mutex_lock(&g_lock);
    for (fake_alloc **pp = &g_allocs; *pp; pp = &(*pp)->next)
        if ((*pp)->base == dptr) {
            a = *pp;
            *pp = a->next;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    if (!a)
        return PC_E_INVAL;
    /* Our own imports of it die with it (CUDA: freeing memory also ends
     * what this process opened of it). */
    pc_gpu__import_forget(&g_imp, a->base);
    shm_unlink(a->name); /* before the lock goes with the fd */
    munmap(a->base, a->bytes);
    close(a->fd);
    free(a);
    return 0;
}

static int fake_export(const void *dptr, pc_gpu_handle *out)
{
    if (!dptr || !out)
        return PC_E_INVAL;
    int rc = PC_E_INVAL; /* not an allocation's base */
    pthread_mutex_lock(&g_lock);
    for (fake_alloc *a = g_allocs; a; a = a->next)
        if (a->base == dptr) {
            pc_gpu_uuid u;
            uuid_of(a->dev, &u);
            pc_gpu__handle_pack(out, PC_GPU_KIND_FAKE, &u, a->bytes,
                                (const uint8_t *)a->name);
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* The mapper (gpu/dev_int.h).  map: opens and maps the object named by
 * key, checking its size and that its creator still holds it. */
static int map_object(int dev, const uint8_t *key, uint64_t bytes, void **out)
{
    (void)dev; /* the UUID was checked: every fake device maps alike */
    int fd = shm_open((const char *)key, O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? PC_E_NOENT : errno == EACCES ? PC_E_PERM
                                                              : PC_E_IO;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = PC_E_IO;
    else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != bytes)
        rc = PC_E_BADMSG; /* the handle and the object disagree */
    else if (flock(fd, LOCK_SH | LOCK_NB) == 0)
        rc = PC_E_NOENT;  /* nobody holds it: a killed owner's leftover */
    else if (errno != EWOULDBLOCK)
        rc = PC_E_IO;
    if (!rc) {
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (m == MAP_FAILED)
            rc = errno == ENOMEM ? PC_E_NOMEM : PC_E_IO;
        else
            *out = m;
    }
    close(fd); /* the mapping keeps the object; the lock was never ours */
    return rc;
}

static void *own_alloc(const uint8_t *key, uint64_t *bytes)
{
    void *base = NULL;
    pthread_mutex_lock(&g_lock);
    for (fake_alloc *a = g_allocs; a && !base; a = a->next)
        if (memcmp(a->name, key, PC_GPU_PAYLOAD) == 0) {
            base = a->base;
            *bytes = a->bytes;
        }
    pthread_mutex_unlock(&g_lock);
    return base;
}

static int unmap_object(void *base, uint64_t bytes)
{
    return munmap(base, bytes) == 0 ? 0 : PC_E_IO;
}

static const pc_gpu__mapper g_mapper = {own_alloc, map_object, unmap_object};

static int fake_import(int dev, const pc_gpu_handle *h, void **dptr,
                       uint64_t *bytes)
{
    if (!h || !dptr)
        return PC_E_INVAL;
    *dptr = NULL;
    pc_gpu_uuid hu, mine;
    uint64_t n;
    uint8_t name[PC_GPU_PAYLOAD];
    int rc = pc_gpu__handle_unpack(h, PC_GPU_KIND_FAKE, &hu, &n, name);
    if (rc)
        return rc;
    if (!valid_name(name) || n > SIZE_MAX)
        return PC_E_BADMSG;
    if ((rc = fake_device_uuid(dev, &mine)))
        return rc;
    if (memcmp(hu.b, mine.b, sizeof(mine.b)) != 0)
        return PC_E_PERM; /* another device, machine or seed */

    return pc_gpu__import_open(&g_imp, dev, name, n, dptr, bytes);
}

static int fake_close(void *dptr)
{
    return pc_gpu__import_close(&g_imp, dptr);
}

/* ---- copies, launches, streams, events ------------------------------------ */

/* 0 when [p, p+n) lies in one allocation or import of this process. */
static int device_range(const void *p, uint64_t n)
{
    uintptr_t s = (uintptr_t)p;
    int rc = PC_E_INVAL;
    pthread_mutex_lock(&g_lock);
    for (fake_alloc *a = g_allocs; a && rc; a = a->next) {
        uintptr_t b = (uintptr_t)a->base;
        if (s >= b && s - b < a->bytes)
            rc = n <= a->bytes - (s - b) ? 0 : PC_E_RANGE;
    }
    pthread_mutex_unlock(&g_lock);
    return rc != PC_E_INVAL ? rc : pc_gpu__import_range(&g_imp, p, n);
}

static int stream_ok(pc_gpu_stream *s)
{
    return !s || s->magic == STREAM_MAGIC;
}

static int fake_copy(void *dst, const void *src, uint64_t bytes,
                     pc_gpu_copy_kind kind, pc_gpu_stream *s)
{
    if (!dst || !src || !stream_ok(s) ||
        (kind != PC_GPU_H2D && kind != PC_GPU_D2H && kind != PC_GPU_D2D))
        return PC_E_INVAL;
    if (bytes > SIZE_MAX)
        return PC_E_RANGE;
    int rc = 0;
    if (kind != PC_GPU_D2H && (rc = device_range(dst, bytes)))
        return rc;
    if (kind != PC_GPU_H2D && (rc = device_range(src, bytes)))
        return rc;
    if (bytes)
        memmove(dst, src, (size_t)bytes);
    if (s)
        s->issued++;
    return 0;
}

static int fake_launch(pc_gpu_stream *s, const pc_gpu_launch *l)
{
    if (!l || !l->host || !stream_ok(s))
        return PC_E_INVAL;
    int rc = l->host(l->args);
    if (s)
        s->issued++;
    return rc;
}

/* Page-locked memory has no meaning without a device: plain anonymous
 * memory, so that a tier over the fake device moves real bytes. */
static int fake_host_alloc(uint64_t bytes, void **p)
{
    if (!p || !bytes)
        return PC_E_INVAL;
    if (bytes > SIZE_MAX)
        return PC_E_RANGE;
    void *m = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return PC_E_NOMEM;
    pthread_mutex_lock(&g_lock);
    int rc = host_track(m, (size_t)bytes);
    pthread_mutex_unlock(&g_lock);
    if (rc) {
        munmap(m, (size_t)bytes);
        return rc;
    }
    *p = m;
    return 0;
}

static int fake_host_free(void *p)
{
    if (!p)
        return PC_E_INVAL;
    pthread_mutex_lock(&g_lock);
    size_t len = host_untrack(p);
    pthread_mutex_unlock(&g_lock);
    if (!len)
        return PC_E_INVAL;
    munmap(p, len);
    return 0;
}

static int fake_stream_create(int dev, pc_gpu_stream **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    pthread_mutex_lock(&g_lock);
    int ok = dev_ok(dev);
    pthread_mutex_unlock(&g_lock);
    if (!ok)
        return PC_E_NOENT;
    pc_gpu_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return PC_E_NOMEM;
    s->magic = STREAM_MAGIC;
    s->dev = dev;
    *out = s;
    return 0;
}

static int fake_stream_destroy(pc_gpu_stream *s)
{
    if (!s || s->magic != STREAM_MAGIC)
        return PC_E_INVAL;
    s->magic = 0;
    free(s);
    return 0;
}

static int fake_stream_sync(pc_gpu_stream *s)
{
    return stream_ok(s) ? 0 : PC_E_INVAL; /* all done already */
}

static int fake_event_create(int dev, pc_gpu_event **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    pthread_mutex_lock(&g_lock);
    int ok = dev_ok(dev);
    pthread_mutex_unlock(&g_lock);
    if (!ok)
        return PC_E_NOENT;
    pc_gpu_event *e = calloc(1, sizeof(*e));
    if (!e)
        return PC_E_NOMEM;
    e->magic = EVENT_MAGIC;
    e->dev = dev;
    *out = e;
    return 0;
}

static int fake_event_record(pc_gpu_event *e, pc_gpu_stream *s)
{
    if (!e || e->magic != EVENT_MAGIC || !stream_ok(s))
        return PC_E_INVAL;
    e->recorded = s ? s->issued : 0; /* everything before it is done */
    return 0;
}

static int fake_event_query(pc_gpu_event *e)
{
    return e && e->magic == EVENT_MAGIC ? 0 : PC_E_INVAL;
}

static int fake_event_sync(pc_gpu_event *e)
{
    return fake_event_query(e);
}

static int fake_event_destroy(pc_gpu_event *e)
{
    if (!e || e->magic != EVENT_MAGIC)
        return PC_E_INVAL;
    e->magic = 0;
    free(e);
    return 0;
}

int pc_gpu_fake_shm_name(const void *dptr, char *buf, size_t len)
{
    if (!dptr || !buf || !len)
        return PC_E_INVAL;
    int rc = PC_E_INVAL;
    pthread_mutex_lock(&g_lock);
    for (fake_alloc *a = g_allocs; a; a = a->next)
        if (a->base == dptr) {
            rc = (size_t)snprintf(buf, len, "%s", a->name) < len ? 0 : PC_E_RANGE;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

const pc_gpu_ops pc_gpu_fake_ops = {
    .name = "fake",
    .device_count = fake_device_count,
    .device_uuid = fake_device_uuid,
    .device_name = fake_device_name,
    .alloc = fake_alloc_fn,
    .free = fake_free,
    .export_handle = fake_export,
    .import_handle = fake_import,
    .close_handle = fake_close,
    .copy_async = fake_copy,
    .launch = fake_launch,
    .host_alloc = fake_host_alloc,
    .host_free = fake_host_free,
    .stream_create = fake_stream_create,
    .stream_destroy = fake_stream_destroy,
    .stream_sync = fake_stream_sync,
    .event_create = fake_event_create,
    .event_record = fake_event_record,
    .event_query = fake_event_query,
    .event_sync = fake_event_sync,
    .event_destroy = fake_event_destroy,
};

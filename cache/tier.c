/*
 * cache/tier.c - the second tier (tier.h): slots of one block each, an
 * index by page identity, an LRU, and the copies in and out.
 *
 *           pc_tier
 *   tab[] ──(key.lo)──► slot+1        open addressing, backward-shift delete
 *                        │
 *   per slot:  key (128-bit chain hash)   nsid   tokens[P]   busy
 *              prev/next ─► LRU list (sentinel = nslots; head = oldest)
 *                           or the free list (next only) when not live
 *   storage:   slot i = bytes [i x block_bytes, (i+1) x block_bytes) of
 *              ├─ a MAP_SHARED file mapping (host pool): demote = memcpy;
 *              │  promote = pread by the worker thread ─► eventfd
 *              └─ host_alloc'd memory (cuda pool): demote = D2H copy on
 *                 `dstream`; promote = H2D copies on `pstream` + event
 *
 * Why the file is both mapped and read: demotion happens inside an
 * allocation (an engine waits), so it must not block on the disk; stores
 * into the page cache do not, and the kernel writes them back when it
 * likes.  Promotion wants the bytes now: pread on a worker reads straight
 * into the pool block without faulting the mapping in page by page, and
 * the same page cache serves both, so they always agree.  The file is
 * fallocate'd up front: a store into a hole of a full disk would SIGBUS.
 */

#include "cache/tier.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpu/dev.h"
#include "gpu/pool.h"
#include "proto/hashtab.h"

struct pc_tier_job {
    uint32_t n;
    uint32_t *slots;
    void **dst;            /* pool block addresses                        */
    int status;            /* set by the worker before done              */
    atomic_int done;
    pc_gpu_event *ev;      /* device tier                                 */
    struct pc_tier_job *qnext;  /* the worker's queue                     */
    struct pc_tier_job *lnext, *lprev; /* live jobs (device tier polling) */
};

struct pc_tier {
    pc_pool *pool;
    uint32_t P;
    uint64_t bb; /* block bytes */
    uint32_t nslots, used, free_head; /* free list through next[]        */
    pc_page_hash *key;
    uint64_t *nsid;
    uint32_t *tokens;
    uint32_t *prev, *next; /* index nslots: the LRU sentinel             */
    uint16_t *busy;
    uint8_t *live;
    uint32_t *tab, tab_cap; /* slot + 1; 0 empty                          */
    pc_tier_stats st;
    pc_tier_drop_fn drop_fn; /* KV events: told of every page forgotten */
    void *drop_ctx;
    uint32_t read_delay_us;
    /* file tier */
    int fd, efd;
    uint8_t *map;
    char *path; /* a named file we created: removed at the end           */
    pthread_t worker;
    bool worker_up, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pc_tier_job *qhead, *qtail;
    /* device tier */
    const pc_gpu_ops *ops;
    int dev;
    uint8_t *host;
    pc_gpu_stream *dstream, *pstream;
    bool demote_pending;
    uint32_t ndev_jobs;
};

/* ---- index ------------------------------------------------------------------ */

static bool tab_empty(const void *s) { return *(const uint32_t *)s == 0; }

static uint32_t tab_hash(const void *ctx, const void *s)
{
    const pc_tier *t = ctx;
    return (uint32_t)t->key[*(const uint32_t *)s - 1].lo;
}

static const pc_hashtab_ops tier_tab = {sizeof(uint32_t), tab_empty, tab_hash};

/* The table slot that holds `key`, or the empty one where it would go. */
static uint32_t *tab_slot(const pc_tier *t, pc_page_hash key)
{
    uint32_t mask = t->tab_cap - 1;
    for (uint32_t i = (uint32_t)key.lo & mask;; i = (i + 1) & mask) {
        uint32_t v = t->tab[i];
        if (!v || pc_page_hash_eq(t->key[v - 1], key))
            return &t->tab[i];
    }
}

static void lru_unlink(pc_tier *t, uint32_t s)
{
    t->next[t->prev[s]] = t->next[s];
    t->prev[t->next[s]] = t->prev[s];
}

static void lru_append(pc_tier *t, uint32_t s) /* most recently used */
{
    uint32_t S = t->nslots;
    t->prev[s] = t->prev[S];
    t->next[s] = S;
    t->next[t->prev[S]] = s;
    t->prev[S] = s;
}

int64_t pc_tier_find(const pc_tier *t, pc_page_hash key, const uint32_t *page)
{
    uint32_t v = *tab_slot(t, key);
    if (!v || memcmp(t->tokens + (size_t)(v - 1) * t->P, page,
                     (size_t)t->P * sizeof(*page)) != 0)
        return -1;
    return (int64_t)(v - 1);
}

void pc_tier_touch(pc_tier *t, uint32_t slot)
{
    lru_unlink(t, slot);
    lru_append(t, slot);
}

bool pc_tier_busy(const pc_tier *t, uint32_t slot) { return t->busy[slot] > 0; }

uint32_t pc_tier_pages(const pc_tier *t) { return t->used; }

/* Forget a live, idle slot: off the index and the LRU, onto the free list. */
static void drop(pc_tier *t, uint32_t s)
{
    if (t->drop_fn)
        t->drop_fn(t->drop_ctx, t->key[s]);
    uint32_t mask = t->tab_cap - 1;
    uint32_t i = (uint32_t)(tab_slot(t, t->key[s]) - t->tab);
    pc_hashtab_delete(t->tab, mask, i, &tier_tab, t);
    lru_unlink(t, s);
    t->live[s] = 0;
    t->next[s] = t->free_head;
    t->free_head = s;
    t->used--;
}

/* A slot for a new page: a free one, else the least recently used idle
 * one; UINT32_MAX when every slot is busy. */
static uint32_t take_slot(pc_tier *t)
{
    uint32_t S = t->nslots, s = t->free_head;
    if (s != S) {
        t->free_head = t->next[s];
        return s;
    }
    for (s = t->next[S]; s != S && t->busy[s]; s = t->next[s]) {
    }
    if (s == S)
        return UINT32_MAX;
    drop(t, s);
    t->st.evicted_pages++;
    t->free_head = t->next[s];
    return s;
}

/* ---- the worker (file tier) -------------------------------------------------- */

static int read_slot(pc_tier *t, uint32_t slot, void *dst)
{
    uint8_t *p = dst;
    uint64_t off = (uint64_t)slot * t->bb, left = t->bb;
    while (left) {
        ssize_t k = pread(t->fd, p, left, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return PC_E_IO;
        p += k;
        off += (uint64_t)k;
        left -= (uint64_t)k;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    pc_tier *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->qhead && !t->stop)
            pthread_cond_wait(&t->cv, &t->mu);
        pc_tier_job *j = t->qhead;
        if (!j)
            break; /* stop, and nothing left to read */
        t->qhead = j->qnext;
        if (!t->qhead)
            t->qtail = NULL;
        pthread_mutex_unlock(&t->mu);
        int rc = 0;
        for (uint32_t i = 0; i < j->n && !rc; i++) {
            if (t->read_delay_us) {
                struct timespec ts = {t->read_delay_us / 1000000,
                                      (long)(t->read_delay_us % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
            rc = read_slot(t, j->slots[i], j->dst[i]);
        }
        j->status = rc;
        atomic_store_explicit(&j->done, 1, memory_order_release);
        uint64_t one = 1;
        ssize_t w = write(t->efd, &one, sizeof(one)); /* wake the loop */
        (void)w;
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- create / destroy ---------------------------------------------------------- */

static int say(char *why, size_t len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int say(char *why, size_t len, int rc, const char *fmt, ...)
{
    if (why && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int open_file(pc_tier *t, const char *path, char *why, size_t wl)
{
    uint64_t bytes = (uint64_t)t->nslots * t->bb;
    struct stat st;
    const char *dir = !path || !*path ? "/var/tmp" : path;
    bool is_dir = !path || !*path || (stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    if (is_dir) {
        t->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    } else {
        t->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (t->fd >= 0 && !(t->path = strdup(path))) {
            unlink(path);
            return PC_E_NOMEM;
        }
    }
    if (t->fd < 0)
        return say(why, wl, PC_E_IO, "tier2_path %s: cannot create %s: %s",
                   dir, is_dir ? "a file in it" : "it", strerror(errno));
    int e = posix_fallocate(t->fd, 0, (off_t)bytes);
    if (e)
        return say(why, wl, PC_E_IO, "tier2_path %s: cannot reserve %llu "
                   "bytes: %s", dir, (unsigned long long)bytes, strerror(e));
    t->map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd, 0);
    if (t->map == MAP_FAILED) {
        t->map = NULL;
        return say(why, wl, PC_E_IO, "tier2_path %s: mmap: %s", dir,
                   strerror(errno));
    }
    t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->efd < 0)
        return say(why, wl, PC_E_IO, "tier2: eventfd: %s", strerror(errno));
    if (pthread_create(&t->worker, NULL, worker_main, t))
        return say(why, wl, PC_E_NOMEM, "tier2: cannot start its reader thread");
    t->worker_up = true;
    return 0;
}

static int open_host(pc_tier *t, char *why, size_t wl)
{
    if (pc_gpu_pool_device(t->pool, &t->ops, &t->dev) || !t->ops->host_alloc)
        return say(why, wl, PC_E_INVAL, "tier2: the pool's device has no "
                   "page-locked host memory");
    int rc = t->ops->host_alloc((uint64_t)t->nslots * t->bb, (void **)&t->host);
    if (rc)
        return say(why, wl, rc, "tier2: cannot allocate %llu bytes of "
                   "page-locked host memory: %s",
                   (unsigned long long)t->nslots * t->bb, pc_strerror(rc));
    if ((rc = t->ops->stream_create(t->dev, &t->dstream)) ||
        (rc = t->ops->stream_create(t->dev, &t->pstream)))
        return say(why, wl, rc, "tier2: cannot create streams: %s",
                   pc_strerror(rc));
    return 0;
}

int pc_tier_create(const pc_tier_config *cfg, pc_pool *pool, pc_tier **out,
                   char *why, size_t wl)
{
    *out = NULL;
    const pc_pool_layout *l = pc_pool_layout_get(pool);
    pc_pool_backend be = pc_pool_backend_get(pool);
    if (be != PC_POOL_HOST && be != PC_POOL_CUDA)
        return say(why, wl, PC_E_INVAL, "tier2_bytes needs a pool with memory "
                   "(host or cuda), not '%s'", pc_pool_backend_name(be));
    uint64_t n = cfg->bytes / l->block_bytes;
    if (n == 0 || n >= UINT32_MAX / 2)
        return say(why, wl, PC_E_INVAL, "tier2_bytes %llu: room for %llu "
                   "blocks of %llu bytes (1 .. 2^31 needed)",
                   (unsigned long long)cfg->bytes, (unsigned long long)n,
                   (unsigned long long)l->block_bytes);
    pc_tier *t = calloc(1, sizeof(*t));
    if (!t)
        return PC_E_NOMEM;
    t->pool = pool;
    t->P = l->page_tokens;
    t->bb = l->block_bytes;
    t->nslots = (uint32_t)n;
    t->fd = t->efd = -1;
    t->read_delay_us = cfg->read_delay_us;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->tab_cap = 16;
    while (t->tab_cap < 2 * n)
        t->tab_cap *= 2;
    t->key = calloc(n, sizeof(*t->key));
    t->nsid = calloc(n, sizeof(*t->nsid));
    t->tokens = calloc(n * t->P, sizeof(*t->tokens));
    t->prev = calloc(n + 1, sizeof(*t->prev));
    t->next = calloc(n + 1, sizeof(*t->next));
    t->busy = calloc(n, sizeof(*t->busy));
    t->live = calloc(n, 1);
    t->tab = calloc(t->tab_cap, sizeof(*t->tab));
    int rc = PC_E_NOMEM;
    if (!t->key || !t->nsid || !t->tokens || !t->prev || !t->next ||
        !t->busy || !t->live || !t->tab) {
        say(why, wl, rc, "tier2: no memory for the index of %llu pages",
            (unsigned long long)n);
        goto fail;
    }
    t->prev[n] = t->next[n] = (uint32_t)n; /* empty LRU */
    for (uint32_t i = 0; i < n; i++)       /* free list: 0, 1, ... */
        t->next[i] = i + 1;
    t->free_head = 0;
    t->st.capacity_pages = n;
    rc = be == PC_POOL_HOST ? open_file(t, cfg->path, why, wl)
                            : open_host(t, why, wl);
    if (rc)
        goto fail;
    *out = t;
    return 0;
fail:;
    int e = errno;
    pc_tier_destroy(t);
    errno = e;
    return rc;
}

void pc_tier_destroy(pc_tier *t)
{
    if (!t)
        return;
    pc_tier_quiesce(t);
    if (t->map)
        munmap(t->map, (size_t)t->nslots * t->bb);
    if (t->fd >= 0)
        close(t->fd);
    if (t->efd >= 0)
        close(t->efd);
    if (t->path) {
        unlink(t->path);
        free(t->path);
    }
    if (t->ops) {
        if (t->dstream)
            t->ops->stream_sync(t->dstream), t->ops->stream_destroy(t->dstream);
        if (t->pstream)
            t->ops->stream_sync(t->pstream), t->ops->stream_destroy(t->pstream);
        if (t->host)
            t->ops->host_free(t->host);
    }
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->key);
    free(t->nsid);
    free(t->tokens);
    free(t->prev);
    free(t->next);
    free(t->busy);
    free(t->live);
    free(t->tab);
    free(t);
}

/* ---- demotion --------------------------------------------------------------------- */

int pc_tier_demote(pc_tier *t, pc_page_hash key, uint64_t nsid,
                   const uint32_t *page, uint32_t block)
{
    int64_t have = pc_tier_find(t, key, page);
    if (have >= 0) { /* KV pages never change: the copy there is good */
        pc_tier_touch(t, (uint32_t)have);
        t->st.demote_dedup_pages++;
        return 0;
    }
    uint32_t *ts = tab_slot(t, key);
    if (*ts) { /* same identity, other tokens: 2^-128; keep the old one */
        t->st.demote_dropped_pages++;
        return PC_E_NOSPACE;
    }
    uint32_t s = take_slot(t);
    if (s == UINT32_MAX) {
        t->st.demote_dropped_pages++;
        return PC_E_NOSPACE;
    }
    const void *src = pc_pool_block_ptr(t->pool, block);
    if (t->map) {
        memcpy(t->map + (size_t)s * t->bb, src, t->bb);
    } else {
        int rc = t->ops->copy_async(t->host + (size_t)s * t->bb, src, t->bb,
                                    PC_GPU_D2H, t->dstream);
        if (rc) {
            t->next[s] = t->free_head;
            t->free_head = s;
            t->st.demote_dropped_pages++;
            return rc;
        }
        t->demote_pending = true;
    }
    t->key[s] = key;
    t->nsid[s] = nsid;
    memcpy(t->tokens + (size_t)s * t->P, page, (size_t)t->P * sizeof(*page));
    t->live[s] = 1;
    t->used++;
    *tab_slot(t, key) = s + 1; /* take_slot may have shifted the table */
    lru_append(t, s);
    t->st.demoted_pages++;
    t->st.bytes_demoted += t->bb;
    return 0;
}

void pc_tier_demote_flush(pc_tier *t)
{
    if (t->demote_pending) {
        t->ops->stream_sync(t->dstream);
        t->demote_pending = false;
    }
}

/* ---- promotion -------------------------------------------------------------------- */

int pc_tier_promote(pc_tier *t, const uint32_t *slots, const uint32_t *blocks,
                    uint32_t n, pc_tier_job **out)
{
    pc_tier_job *j = calloc(1, sizeof(*j));
    if (!j)
        return PC_E_NOMEM;
    j->n = n;
    j->slots = malloc(n * sizeof(*j->slots));
    j->dst = malloc(n * sizeof(*j->dst));
    if (!j->slots || !j->dst) {
        free(j->slots);
        free(j->dst);
        free(j);
        return PC_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        j->slots[i] = slots[i];
        j->dst[i] = pc_pool_block_ptr(t->pool, blocks[i]);
    }
    int rc = 0;
    if (t->map) {
        pthread_mutex_lock(&t->mu);
        if (t->qtail)
            t->qtail->qnext = j;
        else
            t->qhead = j;
        t->qtail = j;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
    } else {
        /* One copy per block: blocks are MBs, each copy runs at bus speed
         * (what bench/gpu_bench measures against one big copy). */
        for (uint32_t i = 0; i < n && !rc; i++)
            rc = t->ops->copy_async(j->dst[i], t->host + (size_t)slots[i] * t->bb,
                                    t->bb, PC_GPU_H2D, t->pstream);
        if (!rc && !(rc = t->ops->event_create(t->dev, &j->ev)))
            rc = t->ops->event_record(j->ev, t->pstream);
        if (rc) {
            /* what was queued must finish before the blocks go back */
            t->ops->stream_sync(t->pstream);
            if (j->ev)
                t->ops->event_destroy(j->ev);
            free(j->slots);
            free(j->dst);
            free(j);
            return rc;
        }
        t->ndev_jobs++;
    }
    t->st.promotions++;
    t->st.jobs_inflight++;
    *out = j;
    return 0;
}

int pc_tier_job_status(pc_tier *t, pc_tier_job *j)
{
    if (t->map)
        return atomic_load_explicit(&j->done, memory_order_acquire) ? j->status
                                                                     : PC_E_BUSY;
    if (atomic_load_explicit(&j->done, memory_order_relaxed))
        return j->status;
    int rc = t->ops->event_query(j->ev);
    if (rc == PC_E_BUSY)
        return rc;
    j->status = rc;
    atomic_store_explicit(&j->done, 1, memory_order_relaxed);
    t->ndev_jobs--;
    return rc;
}

void pc_tier_hold(pc_tier *t, const uint32_t *slots, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!t->busy[slots[i]]++)
            t->st.busy_pages++;
}

void pc_tier_unhold(pc_tier *t, const uint32_t *slots, uint32_t n, bool drop_them)
{
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = slots[i];
        if (--t->busy[s] == 0) {
            t->st.busy_pages--;
            if (drop_them)
                drop(t, s);
        }
    }
}

void pc_tier_quiesce(pc_tier *t)
{
    if (t->worker_up) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->worker, NULL); /* it empties its queue first */
        t->worker_up = false;
    }
    if (t->ops && t->pstream)
        t->ops->stream_sync(t->pstream);
}

void pc_tier_job_free(pc_tier *t, pc_tier_job *j)
{
    pc_tier_unhold(t, j->slots, j->n, j->status != 0);
    if (j->status)
        t->st.promote_failed_pages += j->n;
    else {
        t->st.promoted_pages += j->n;
        t->st.bytes_promoted += (uint64_t)j->n * t->bb;
    }
    t->st.jobs_inflight--;
    if (j->ev)
        t->ops->event_destroy(j->ev);
    free(j->slots);
    free(j->dst);
    free(j);
}

int pc_tier_wait_fd(const pc_tier *t) { return t->efd; }

void pc_tier_drain_fd(pc_tier *t)
{
    uint64_t v;
    if (t->efd >= 0) {
        ssize_t r = read(t->efd, &v, sizeof(v));
        (void)r;
    }
}

void pc_tier_kick(pc_tier *t)
{
    uint64_t one = 1;
    if (t->efd >= 0) {
        ssize_t w = write(t->efd, &one, sizeof(one));
        (void)w;
    }
}

bool pc_tier_polls(const pc_tier *t) { return t->ndev_jobs > 0; }

/* ---- flush, stats, check ------------------------------------------------------------ */

size_t pc_tier_flush(pc_tier *t, bool all, uint64_t nsid)
{
    size_t n = 0;
    for (uint32_t s = 0; s < t->nslots; s++)
        if (t->live[s] && !t->busy[s] && (all || t->nsid[s] == nsid)) {
            drop(t, s);
            n++;
        }
    t->st.flushed_pages += n;
    return n;
}

void pc_tier_set_drop_fn(pc_tier *t, pc_tier_drop_fn fn, void *ctx)
{
    t->drop_fn = fn;
    t->drop_ctx = ctx;
}

size_t pc_tier_list(const pc_tier *t, pc_page_hash *out, size_t cap)
{
    size_t n = 0;
    for (uint32_t s = 0; s < t->nslots; s++)
        if (t->live[s]) {
            if (n < cap)
                out[n] = t->key[s];
            n++;
        }
    return n;
}

void pc_tier_stats_get(const pc_tier *t, pc_tier_stats *out)
{
    *out = t->st;
    out->pages = t->used;
}

pc_tier_stats *pc_tier_counters(pc_tier *t) { return &t->st; }

void pc_tier_stats_visit(const pc_tier *t, pc_stat_fn fn, void *ctx)
{
    pc_tier_stats s = {0};
    if (t)
        pc_tier_stats_get(t, &s);
    fn(ctx, "tier2.capacity_pages", s.capacity_pages);
    fn(ctx, "tier2.pages", s.pages);
    fn(ctx, "tier2.busy_pages", s.busy_pages);
    fn(ctx, "tier2.promotions_inflight", s.jobs_inflight);
    fn(ctx, "tier2.hit_pages", s.hit_pages);
    fn(ctx, "tier2.miss_pages", s.miss_pages);
    fn(ctx, "tier2.demoted_pages", s.demoted_pages);
    fn(ctx, "tier2.demote_dedup_pages", s.demote_dedup_pages);
    fn(ctx, "tier2.demote_dropped_pages", s.demote_dropped_pages);
    fn(ctx, "tier2.evicted_pages", s.evicted_pages);
    fn(ctx, "tier2.flushed_pages", s.flushed_pages);
    fn(ctx, "tier2.promotions", s.promotions);
    fn(ctx, "tier2.promoted_pages", s.promoted_pages);
    fn(ctx, "tier2.promote_failed_pages", s.promote_failed_pages);
    fn(ctx, "tier2.bytes_demoted", s.bytes_demoted);
    fn(ctx, "tier2.bytes_promoted", s.bytes_promoted);
}

const char *pc_tier_kind(const pc_tier *t) { return t->map ? "file" : "host"; }

#define CHECK(cond, ...) PC_CHECK_OR_OUT("pc_tier_check", cond, __VA_ARGS__)

int pc_tier_check(const pc_tier *t)
{
    int rc = 0;
    uint32_t S = t->nslots, n = 0, busy = 0, nfree = 0, in_tab = 0;
    uint8_t *seen = calloc(S ? S : 1, 1);
    CHECK(seen, "check out of memory");
    for (uint32_t s = t->next[S]; s != S; s = t->next[s]) {
        CHECK(s < S && t->live[s] && !seen[s], "LRU list: slot %u", s);
        CHECK(t->prev[t->next[s]] == s, "LRU links at slot %u", s);
        seen[s] = 1;
        n++;
        CHECK(pc_tier_find(t, t->key[s], t->tokens + (size_t)s * t->P) == s,
              "slot %u not found by its key", s);
    }
    CHECK(n == t->used, "LRU holds %u pages, used %u", n, t->used);
    for (uint32_t s = t->free_head; s != S; s = t->next[s]) {
        CHECK(s < S && !t->live[s] && !seen[s], "free list: slot %u", s);
        seen[s] = 1;
        nfree++;
    }
    CHECK(n + nfree == S, "%u live + %u free != %u slots", n, nfree, S);
    for (uint32_t s = 0; s < S; s++) {
        CHECK(!t->busy[s] || t->live[s], "busy slot %u is not live", s);
        busy += t->busy[s] > 0;
    }
    CHECK(busy == t->st.busy_pages, "%u busy slots, counted %llu", busy,
          (unsigned long long)t->st.busy_pages);
    rc = pc_hashtab_check(t->tab, t->tab_cap, &tier_tab, t, &in_tab,
                          "pc_tier_check");
    if (rc)
        goto out;
    CHECK(in_tab == t->used, "index holds %u pages, used %u", in_tab, t->used);
out:
    free(seen);
    return rc;
}

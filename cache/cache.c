/*
 * cache/cache.c - tree + pool + leases.
 *
 *                      ┌──────────── pc_cache ─────────────┐
 *   lease table ──────►│ id → lease (open addressing)      │
 *   (random 64-bit ids)│ expiry heap: leases by deadline   │
 *                      │                                   │
 *   lease L ───────────┼─ pins[]   ─► radix nodes (locked)│
 *                      ├─ blocks[] ─► pool ids (LEASED)    │
 *                      │     ▲                             │
 *   owner[id], pos[id] ┼─────┘  block → its lease and slot │  O(1) adopt/free
 *                      │                                   │
 *   radix tree ────────┼─ pages ─► pool ids (CACHED)       │
 *                      └───────────────────────────────────┘
 *
 * Every block is in exactly one place: the pool's free list (FREE), one
 * lease's blocks[] (LEASED; a promotion's lease counts) or one tree page
 * (CACHED).  Eviction hands the tree's freed ids back to the pool, after
 * copying their pages to tier 2 when there is one (tier.c).  Each operation checks
 * everything that can fail (lease, limits, ownership, space) and allocates
 * what it needs before it changes anything, so a rejected request leaves the
 * cache as it was.
 */
#include "cache/cache.h"
#include "cache/inspect.h"
#include "cache/metrics.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cache/quota.h"
#include "cache/tier.h"
#include "gpu/dev.h"
#include "gpu/pool.h"
#include "proto/hashtab.h"
#include "proto/heap.h"
#include "proto/pagehash.h"

typedef struct lease {
    uint64_t id;
    uint64_t owner;    /* who made it (pc_cache_set_owner); 0: anyone */
    uint64_t deadline; /* ms; expired when deadline <= now          */
    uint32_t heap_pos; /* 1-based (proto/heap.h) */
    uint32_t npins, pins_cap;
    uint32_t nblocks, blocks_cap;
    pc_radix_node **pins;
    uint32_t *blocks;
    struct lease *next_spare;
} lease;

/* A promotion (pc_cache_promote): pages [first, first + n) of a prefix on
 * their way back from tier 2.  Its lease is never in the table or the
 * heap: no client can name, renew or release it, and it cannot expire
 * while the copy writes into its blocks. */
struct opin;
static void opins_free(pc_cache *c, struct opin *v, size_t n, bool unlock);
static void opins_after_insert(pc_cache *c, const void *ns, size_t ns_len);

typedef struct promo {
    uint64_t id;
    lease *l;          /* pins pages [0, first); holds the fresh blocks  */
    pc_tier_job *io;
    uint32_t first, n;
    uint32_t *tokens;  /* the prefix through page first + n - 1         */
    uint32_t *blocks;  /* the fresh blocks, in page order               */
    uint32_t *slots;   /* their tier-2 slots                            */
    uint8_t ns[PC_NS_MAX];
    uint32_t ns_len;
    struct promo *next;
} promo;

struct pc_cache {
    pc_cache_config cfg;
    pc_pool *pool;
    pc_radix *tree;
    uint32_t P, capacity;
    /* leases */
    lease **tab; /* open addressing on id, NULL = empty */
    uint32_t tab_cap, nleases;
    pc_heap heap; /* min-heap on deadline; room: tab_cap */
    lease **owner;      /* per block: the lease holding it LEASED */
    uint32_t *pos;      /* per block: index in owner->blocks[]    */
    uint32_t *mark;     /* per block: insert's "used once" epochs */
    uint32_t epoch;
    uint32_t *scratch;  /* insert's canonical ids                 */
    size_t scratch_cap;
    uint64_t ids[64];   /* random lease ids, drawn in batches     */
    unsigned nids;
    struct lease *spare; /* ended leases kept for reuse              */
    uint64_t caller;     /* the owner the calls act for (set_owner) */
    char why[200];       /* the last refusal's reason (pc_cache_why) */
    uint32_t nspare;
    uint64_t npins;
    pc_cache_stats st;
    /* the second tier (NULL: none) and the promotions under way */
    pc_tier *tier;
    promo *promos;
    uint64_t next_promo;   /* ids: 1, 2, ...                            */
    uint64_t *slot_promo;  /* per tier-2 slot: the promotion reading it */
    pc_page_hash *hbuf;    /* chain hashes of one prefix                */
    size_t hbuf_cap;
    uint32_t *sbuf;        /* tier-2 slots of one run                   */
    size_t sbuf_cap;
    /* operator-pinned prefixes (pc_cache_set_operator_pins) */
    struct opin *opins;
    size_t nopins;
    uint64_t opin_pages_wanted;
    pc_cache_metrics *metrics; /* per namespace, refusals (metrics.c) */
    pc_quota *quota; /* namespace quotas and reserves (NULL: none) */
    /* KV events (cache.h): the hook, its block hashes, the tier-2 run a
     * demotion is storing (emitted before any drop, to keep the order) */
    pc_cache_event_fn ev_fn;
    void *ev_ctx;
    bool ev_by_block;    /* pc_cache_set_event_fn_by_block's hook */
    uint64_t *ebuf;
    size_t ebuf_cap;
    uint64_t ev_lost;
    pc_page_hash *bhash; /* per pool block: its cached page's chain hash,
                          * {0,0} unknown: an insert chains on from its
                          * cached prefix's last page; evictions and quota
                          * evictions name pages without rehashing */
    uint64_t *seen;      /* by-block hook: per pool block, a bit set while
                          * the hook has its page's STORED (and so its
                          * hash) and not yet its REMOVED; bhash unused */
    struct {
        const pc_radix_evicted *e;
        size_t first, n;
    } run;
};

static void evicted_to_pool(void *ctx, uint32_t block);
static void evicted_quota(void *ctx, uint32_t block);

/* ---- clock and ids -------------------------------------------------------- */

/* The coarse clock: read from memory, no TSC read (a lease op reads the
 * clock two or three times).  It lags by at most a scheduler tick (1-4 ms),
 * nothing next to a TTL of seconds. */
static uint64_t mono_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ms(const pc_cache *c)
{
    return c->cfg.clock(c->cfg.clock_ctx);
}

/* An unguessable id from the kernel's CSPRNG, 64 per syscall; 0 is never
 * an id and collisions with live leases are skipped. */
static int new_lease_id(pc_cache *c, uint64_t *out);

/* ---- lease table ---------------------------------------------------------- */

static uint32_t id_hash(uint64_t id) { return (uint32_t)(id ^ (id >> 32)); }

static bool tab_empty(const void *s) { return *(lease *const *)s == NULL; }

static uint32_t tab_hash(const void *ctx, const void *s)
{
    (void)ctx;
    return id_hash((*(lease *const *)s)->id);
}

static const pc_hashtab_ops lease_tab = {sizeof(lease *), tab_empty, tab_hash};

static lease **tab_slot(const pc_cache *c, uint64_t id)
{
    uint32_t mask = c->tab_cap - 1;
    for (uint32_t i = id_hash(id) & mask;; i = (i + 1) & mask)
        if (!c->tab[i] || c->tab[i]->id == id)
            return &c->tab[i];
}

static lease *lease_find(const pc_cache *c, uint64_t id)
{
    return id && c->tab_cap ? *tab_slot(c, id) : NULL;
}

/* A live lease by id, or NULL when unknown or past its deadline (expired
 * leases are reaped by pc_cache_expire, never by the request that names
 * them, so a rejected request changes nothing). */
static lease *lease_live(const pc_cache *c, uint64_t id)
{
    lease *l = lease_find(c, id);
    /* Another owner's lease is not there for this caller: the very
     * refusal an unknown id gets, so that ids cannot be probed. */
    return l && l->deadline > now_ms(c) && l->owner == c->caller ? l : NULL;
}

/* Grow the table (load <= 1/2) so that one more lease fits. */
static int tab_reserve(pc_cache *c)
{
    if ((uint64_t)(c->nleases + 1) * 2 <= c->tab_cap)
        return 0;
    uint32_t cap = c->tab_cap ? c->tab_cap * 2 : 64;
    lease **old = c->tab, **nt = calloc(cap, sizeof(*nt));
    void **nh = realloc(c->heap.v, (size_t)cap * sizeof(*nh));
    if (!nt || !nh) {
        free(nt);
        if (nh)
            c->heap.v = nh; /* a bigger heap array is harmless */
        return PC_E_NOMEM;
    }
    c->heap.v = nh;
    uint32_t ocap = c->tab_cap;
    c->tab = nt;
    c->tab_cap = cap;
    for (uint32_t i = 0; i < ocap; i++)
        if (old[i])
            *tab_slot(c, old[i]->id) = old[i];
    free(old);
    return 0;
}

static void tab_remove(pc_cache *c, const lease *l)
{
    uint32_t i = (uint32_t)(tab_slot(c, l->id) - c->tab);
    pc_hashtab_delete(c->tab, c->tab_cap - 1, i, &lease_tab, NULL);
}

static int new_lease_id(pc_cache *c, uint64_t *out)
{
    for (int tries = 0; tries < 1000; tries++) {
        if (c->nids == 0) {
            ssize_t got = getrandom(c->ids, sizeof(c->ids), 0);
            if (got != (ssize_t)sizeof(c->ids))
                return PC_E_IO;
            c->nids = 64;
        }
        uint64_t id = c->ids[--c->nids];
        if (id && !lease_find(c, id)) {
            *out = id;
            return 0;
        }
    }
    return PC_E_IO;
}

/* ---- expiry heap ---------------------------------------------------------- */

static bool deadline_before(const void *a, const void *b)
{
    return ((const lease *)a)->deadline < ((const lease *)b)->deadline;
}

static const pc_heap_ops expiry = {deadline_before, offsetof(lease, heap_pos)};

/* Renew: the deadline usually moves later (down the heap), but earlier
 * when the TTL was lowered at run time (up the heap). */
static void lease_renew(pc_cache *c, lease *l)
{
    l->deadline = now_ms(c) + c->cfg.lease_ttl_ms;
    pc_heap_fix(&c->heap, &expiry, l);
}

/* ---- lease life cycle ----------------------------------------------------- */

/* Room for `more` pins / blocks on an existing lease (growth only). */
static int lease_reserve(lease *l, uint32_t more_pins, uint32_t more_blocks)
{
    if (l->npins + more_pins > l->pins_cap) {
        uint32_t cap = l->pins_cap ? l->pins_cap * 2 : 4;
        while (cap < l->npins + more_pins)
            cap *= 2;
        void *p = realloc(l->pins, cap * sizeof(*l->pins));
        if (!p)
            return PC_E_NOMEM;
        l->pins = p;
        l->pins_cap = cap;
    }
    if ((uint64_t)l->nblocks + more_blocks > l->blocks_cap) {
        uint64_t cap = l->blocks_cap ? l->blocks_cap * 2ull : 16;
        while (cap < (uint64_t)l->nblocks + more_blocks)
            cap *= 2;
        void *p = realloc(l->blocks, cap * sizeof(*l->blocks));
        if (!p)
            return PC_E_NOMEM;
        l->blocks = p;
        l->blocks_cap = (uint32_t)(cap > UINT32_MAX ? UINT32_MAX : cap);
    }
    return 0;
}

/* A fresh detached lease with room for `pins` pins and `blocks` blocks.
 * Ended leases are kept (up to SPARE_MAX) with their arrays, so that the
 * usual lookup -> alloc -> insert -> release cycle allocates nothing. */
#define SPARE_MAX 64

static void lease_discard(pc_cache *c, lease *l)
{
    if (!l)
        return;
    if (c && c->nspare < SPARE_MAX) {
        l->next_spare = c->spare;
        c->spare = l;
        c->nspare++;
        return;
    }
    free(l->pins);
    free(l->blocks);
    free(l);
}

static lease *lease_new(pc_cache *c, uint32_t pins, uint32_t blocks)
{
    lease *l = c->spare;
    if (l) {
        c->spare = l->next_spare;
        c->nspare--;
    } else if (!(l = calloc(1, sizeof(*l)))) {
        return NULL;
    }
    l->npins = l->nblocks = 0;
    l->heap_pos = 0; /* 0 until registered: a promotion's never is */
    l->owner = c->caller;
    l->next_spare = NULL;
    if (lease_reserve(l, pins, blocks) || new_lease_id(c, &l->id)) {
        lease_discard(c, l);
        return NULL;
    }
    return l;
}


/* Make a detached lease live (the table has room: tab_reserve). */
static void lease_register(pc_cache *c, lease *l)
{
    *tab_slot(c, l->id) = l;
    l->deadline = now_ms(c) + c->cfg.lease_ttl_ms;
    pc_heap_push(&c->heap, &expiry, l);
    c->nleases++;
    c->st.leases_created++;
}

static void lease_add_block(pc_cache *c, lease *l, uint32_t id)
{
    c->owner[id] = l;
    c->pos[id] = l->nblocks;
    l->blocks[l->nblocks++] = id;
}

/* The block leaves its lease (adopted by the tree or freed): O(1). */
static void lease_drop_block(pc_cache *c, uint32_t id)
{
    lease *l = c->owner[id];
    uint32_t i = c->pos[id], last = l->blocks[--l->nblocks];
    l->blocks[i] = last;
    c->pos[last] = i;
    c->owner[id] = NULL;
}

/* Unpin and free a lease's un-inserted blocks (it holds nothing after). */
static void lease_unwind(pc_cache *c, lease *l)
{
    for (uint32_t i = 0; i < l->npins; i++) {
        int rc = pc_radix_unlock(c->tree, l->pins[i]);
        assert(rc == 0);
        (void)rc;
    }
    c->npins -= l->npins;
    for (uint32_t i = 0; i < l->nblocks; i++) {
        int rc = pc_pool_free(c->pool, l->blocks[i]);
        assert(rc == 0);
        (void)rc;
        c->owner[l->blocks[i]] = NULL;
    }
    l->npins = l->nblocks = 0;
}

/* End a lease: unpin, free un-inserted blocks, forget it. */
static void lease_end(pc_cache *c, lease *l)
{
    lease_unwind(c, l);
    tab_remove(c, l);
    pc_heap_remove(&c->heap, &expiry, l);
    c->nleases--;
    lease_discard(c, l);
}

/* ---- create / destroy ----------------------------------------------------- */

void pc_cache_config_defaults(pc_cache_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->lease_ttl_ms = PC_CACHE_LEASE_TTL_MS_DEFAULT;
    cfg->max_leases = PC_CACHE_MAX_LEASES_DEFAULT;
    cfg->max_pins_per_lease = PC_CACHE_MAX_PINS_PER_LEASE_DEFAULT;
    cfg->max_blocks_per_lease = PC_CACHE_MAX_BLOCKS_PER_LEASE_DEFAULT;
}

static int limits_ok(const pc_cache_config *cfg, uint64_t capacity)
{
    return cfg->lease_ttl_ms > 0 && cfg->max_leases > 0 &&
           cfg->max_leases <= (1u << 30) && cfg->max_pins_per_lease > 0 &&
           cfg->max_blocks_per_lease > 0 &&
           cfg->low_watermark <= cfg->high_watermark &&
           cfg->high_watermark <= capacity &&
           pc_radix_policy_name(cfg->eviction_policy) != NULL;
}

/* memset to 0 through a volatile pointer: a plain malloc + memset(0) is
 * turned into calloc by the compiler, whose fresh pages are only mapped,
 * not touched. */
static void zero_touched(void *p, size_t n)
{
    volatile unsigned char *b = p;
    for (size_t i = 0; i < n; i += 4096)
        b[i] = 0;
    memset(p, 0, n);
}

_Static_assert(sizeof(((pc_cache_desc *)0)->device_uuid) == PC_GPU_UUID_BYTES &&
               sizeof(((pc_cache_desc *)0)->ipc_handle) == PC_GPU_HANDLE_BYTES,
               "pc_cache_desc's device fields are gpu/'s sizes");

/* Per thread, since a failed create leaves no cache to hold the reason. */
static _Thread_local char g_create_why[200];

const char *pc_cache_create_why(void) { return g_create_why; }

/* A cuda pool allocates through whatever gpu/ has registered: register the
 * ops the config names first (blockpool/ cannot know gpu/, so the cache,
 * which knows both, connects them).  The registration is per process and
 * stays: a later pool of another config registers its own. */
static int register_gpu(const pc_cache_config *cfg)
{
    const char *name = cfg->gpu_ops ? cfg->gpu_ops : "cuda";
    const pc_gpu_ops *ops = pc_gpu_ops_get(name);
    if (!ops) {
        snprintf(g_create_why, sizeof(g_create_why), strcmp(name, "cuda") == 0
                 ? "gpu_ops 'cuda': this build has no CUDA runtime (use "
                   "'fake' for the CPU stand-in)"
                 : "gpu_ops '%s': unknown (cuda or fake)", name);
        return PC_E_INVAL;
    }
    int rc = pc_gpu_pool_register(ops, cfg->gpu_device);
    if (rc)
        snprintf(g_create_why, sizeof(g_create_why),
                 "gpu_ops '%s': device %d: %s", name, cfg->gpu_device,
                 rc == PC_E_NOENT ? "no such device" : pc_strerror(rc));
    return rc;
}

int pc_cache_create(const pc_cache_config *cfg, pc_cache **out)
{
    g_create_why[0] = 0;
    if (!out || !cfg)
        return PC_E_INVAL;
    *out = NULL;
    if (cfg->pool.backend == PC_POOL_CUDA) {
        int rc = register_gpu(cfg);
        if (rc)
            return rc;
    }
    pc_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return PC_E_NOMEM;
    c->cfg = *cfg;
    c->cfg.gpu_ops = NULL; /* the caller's string; the pool keeps its ops */
    if (!c->cfg.clock)
        c->cfg.clock = mono_ms;
    int rc = pc_pool_create(&cfg->pool, &c->pool);
    if (rc)
        goto fail;
    rc = PC_E_INVAL;
    c->capacity = pc_pool_capacity(c->pool);
    c->P = pc_pool_layout_get(c->pool)->page_tokens;
    if (!limits_ok(cfg, c->capacity))
        goto fail;
    if ((rc = pc_cache_metrics_create(&c->metrics)) ||
        (rc = pc_radix_create(c->P, &c->tree)) ||
        (rc = pc_radix_set_capacity(c->tree, c->capacity)) ||
        (rc = pc_radix_set_policy(c->tree, cfg->eviction_policy)))
        goto fail;
    /* quota evictions (namespace_quotas) free their blocks like any other */
    pc_radix_set_evict_hook(c->tree, evicted_quota, c);
    rc = PC_E_NOMEM;
    /* Per-block bookkeeping, 16 bytes a block, written now rather than on
     * first use: calloc's lazily mapped zero pages would otherwise fault
     * one by one while engines allocate, a page every 256 blocks, inside
     * request latency (microseconds each in a VM). */
    c->owner = malloc(c->capacity * sizeof(*c->owner));
    c->pos = malloc(c->capacity * sizeof(*c->pos));
    c->mark = malloc(c->capacity * sizeof(*c->mark));
    if (!c->owner || !c->pos || !c->mark)
        goto fail;
    zero_touched(c->owner, c->capacity * sizeof(*c->owner));
    zero_touched(c->pos, c->capacity * sizeof(*c->pos));
    zero_touched(c->mark, c->capacity * sizeof(*c->mark));
    if (cfg->tier2_bytes) {
        pc_tier_config tc = {cfg->tier2_bytes, cfg->tier2_path,
                             cfg->tier2_read_delay_us};
        if ((rc = pc_tier_create(&tc, c->pool, &c->tier, g_create_why,
                                 sizeof(g_create_why))))
            goto fail;
        pc_tier_stats ts;
        pc_tier_stats_get(c->tier, &ts);
        rc = PC_E_NOMEM;
        if (!(c->slot_promo = calloc(ts.capacity_pages, sizeof(*c->slot_promo))))
            goto fail;
    }
    c->cfg.tier2_path = NULL; /* the caller's string */
    *out = c;
    return 0;
fail:;
    int e = errno; /* the pool's OS cause, kept for the caller (PC_E_IO) */
    pc_cache_destroy(c);
    errno = e;
    return rc;
}

void pc_cache_destroy(pc_cache *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->tab_cap; i++)
        lease_discard(NULL, c->tab[i]);
    while (c->spare) {
        lease *l = c->spare;
        c->spare = l->next_spare;
        lease_discard(NULL, l);
    }
    free(c->tab);
    free(c->heap.v);
    free(c->owner);
    free(c->pos);
    free(c->mark);
    free(c->scratch);
    if (c->tier) { /* copies still running write into the pool: wait */
        pc_tier_quiesce(c->tier);
        while (c->promos) {
            promo *p = c->promos;
            c->promos = p->next;
            pc_tier_job_free(c->tier, p->io);
            lease_discard(NULL, p->l);
            free(p->tokens);
            free(p->blocks);
            free(p->slots);
            free(p);
        }
        pc_tier_destroy(c->tier);
    }
    opins_free(c, c->opins, c->nopins, false);
    pc_quota_free(c->quota);
    free(c->slot_promo);
    free(c->hbuf);
    free(c->sbuf);
    free(c->ebuf);
    free(c->bhash);
    free(c->seen);
    pc_radix_destroy(c->tree);
    pc_pool_destroy(c->pool);
    pc_cache_metrics_destroy(c->metrics);
    free(c);
}

pc_pool *pc_cache_pool(const pc_cache *c) { return c ? c->pool : NULL; }
uint64_t pc_cache_lease_ttl_ms(const pc_cache *c)
{
    return c ? c->cfg.lease_ttl_ms : 0;
}
pc_radix *pc_cache_tree(const pc_cache *c) { return c ? c->tree : NULL; }

int pc_cache_set_limits(pc_cache *c, const pc_cache_config *cfg)
{
    if (!c || !cfg || !limits_ok(cfg, c->capacity))
        return PC_E_INVAL;
    int rc = pc_radix_set_policy(c->tree, cfg->eviction_policy);
    if (rc)
        return rc;
    c->cfg.eviction_policy = cfg->eviction_policy;
    c->cfg.lease_ttl_ms = cfg->lease_ttl_ms;
    c->cfg.max_leases = cfg->max_leases;
    c->cfg.max_pins_per_lease = cfg->max_pins_per_lease;
    c->cfg.max_blocks_per_lease = cfg->max_blocks_per_lease;
    c->cfg.max_tree_nodes = cfg->max_tree_nodes;
    c->cfg.low_watermark = cfg->low_watermark;
    c->cfg.high_watermark = cfg->high_watermark;
    return 0;
}

/* ---- events (cache.h) ------------------------------------------------------ */

/* A scratch array p of *cap elements of size sz, with room for n: p
 * itself, or grown to exactly n (never shrunk); NULL without memory, p
 * then being left as it was. */
static void *scratch(void *p, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return p;
    void *g = realloc(p, n * sz);
    if (g)
        *cap = n;
    return g;
}

/* Room for the chain hashes of n pages. */
static int hbuf_reserve(pc_cache *c, size_t n)
{
    pc_page_hash *h = scratch(c->hbuf, &c->hbuf_cap, n, sizeof(*h));
    return h ? (c->hbuf = h, 0) : PC_E_NOMEM;
}

static int ebuf_reserve(pc_cache *c, size_t n)
{
    uint64_t *h = scratch(c->ebuf, &c->ebuf_cap, n, sizeof(*h));
    return h ? (c->ebuf = h, 0) : PC_E_NOMEM;
}

const char *pc_cache_medium(const pc_cache *c, int tier)
{
    if (!c)
        return NULL;
    if (tier == 1) /* vLLM's names: "GPU" for device KV, "CPU" offloaded */
        return pc_pool_backend_get(c->pool) == PC_POOL_CUDA ? "GPU" : "CPU";
    if (tier == 2 && c->tier)
        return c->tier && strcmp(pc_tier_kind(c->tier), "file") == 0 ? "DISK"
                                                                      : "CPU";
    return NULL;
}

uint64_t pc_cache_events_lost(const pc_cache *c) { return c ? c->ev_lost : 0; }

/* STORED for pages [first, first + n) of a prefix whose chain hashes
 * hbuf[0 .. first + n) holds. */
static void emit_stored(pc_cache *c, int tier, const void *ns, size_t ns_len,
                        const uint32_t *tokens, size_t first, size_t n)
{
    if (ebuf_reserve(c, n)) {
        c->ev_lost += n;
        return;
    }
    for (size_t i = 0; i < n; i++)
        c->ebuf[i] = c->hbuf[first + i].lo;
    pc_cache_event ev = {
        .type = PC_CACHE_EV_STORED, .tier = tier,
        .medium = pc_cache_medium(c, tier), .ns = ns, .ns_len = ns_len,
        .tokens = tokens, .page_tokens = c->P, .first_page = first,
        .n_pages = n, .hashes = c->ebuf, .has_parent = first > 0,
        .parent = first ? c->hbuf[first - 1].lo : 0,
    };
    c->ev_fn(c->ev_ctx, &ev);
}

static void emit_removed(pc_cache *c, int tier, const void *ns, size_t ns_len,
                         const uint64_t *hashes, size_t n)
{
    pc_cache_event ev = {
        .type = PC_CACHE_EV_REMOVED, .tier = tier,
        .medium = pc_cache_medium(c, tier), .ns = ns, .ns_len = ns_len,
        .page_tokens = c->P, .n_pages = n, .hashes = hashes,
    };
    c->ev_fn(c->ev_ctx, &ev);
}

/* The run of pages a demotion stored into tier 2 so far, as one event. */
static void run_flush(pc_cache *c)
{
    if (!c->run.n)
        return;
    const pc_radix_evicted *e = c->run.e;
    emit_stored(c, 2, e->ns, e->ns_len, e->tokens, c->run.first, c->run.n);
    c->run.n = 0;
}

/* Tier 2 forgets a page: what it stored before goes out first. */
static void tier_dropped(void *ctx, pc_page_hash key)
{
    pc_cache *c = ctx;
    if (!c->ev_fn)
        return; /* pc_cache_flush_all says CLEARED instead */
    run_flush(c);
    emit_removed(c, 2, NULL, 0, &key.lo, 1);
}

static void set_event_fn(pc_cache *c, pc_cache_event_fn fn, void *ctx,
                         bool by_block)
{
    if (!c)
        return;
    size_t words = c->capacity / 64 + 1;
    if (fn && by_block && !c->seen) /* without it, the cache names pages */
        by_block = (c->seen = calloc(words, sizeof(*c->seen))) != NULL;
    if (fn && by_block) { /* the hook keeps the hashes: a bit a block here */
        free(c->bhash);
        c->bhash = NULL;
        /* A bit says "this hook has the block's value": a new hook (or the
         * same one with a new context) has none of them. */
        if (fn != c->ev_fn || ctx != c->ev_ctx || !c->ev_by_block)
            memset(c->seen, 0, words * sizeof(*c->seen));
    } else if (fn) {
        free(c->seen);
        c->seen = NULL;
        if (!c->bhash) /* NULL: quota evictions go unnamed (ev_lost) */
            c->bhash = calloc(c->capacity, sizeof(*c->bhash));
        else if (!c->ev_fn) /* pages cached meanwhile: unknown */
            memset(c->bhash, 0, c->capacity * sizeof(*c->bhash));
    }
    c->ev_fn = fn;
    c->ev_ctx = ctx;
    c->ev_by_block = fn && by_block;
    if (c->tier)
        pc_tier_set_drop_fn(c->tier, fn ? tier_dropped : NULL, c);
}

void pc_cache_set_event_fn(pc_cache *c, pc_cache_event_fn fn, void *ctx)
{
    set_event_fn(c, fn, ctx, false);
}

void pc_cache_set_event_fn_by_block(pc_cache *c, pc_cache_event_fn fn,
                                    void *ctx)
{
    set_event_fn(c, fn, ctx, true);
}

/* By-block mode: has the hook block's STORED (and no REMOVED since)? */
static bool seen_get(const pc_cache *c, uint32_t b)
{
    return c->seen && (c->seen[b / 64] >> (b % 64) & 1);
}

static void seen_set(pc_cache *c, uint32_t b, bool on)
{
    if (!c->seen)
        return;
    if (on)
        c->seen[b / 64] |= (uint64_t)1 << (b % 64);
    else
        c->seen[b / 64] &= ~((uint64_t)1 << (b % 64));
}

/* REMOVED of tier-1 pages named by their blocks (by-block mode). */
static void emit_removed_blocks(pc_cache *c, const void *ns, size_t ns_len,
                                const uint32_t *blocks, size_t n)
{
    pc_cache_event ev = {
        .type = PC_CACHE_EV_REMOVED, .tier = 1,
        .medium = pc_cache_medium(c, 1), .ns = ns, .ns_len = ns_len,
        .page_tokens = c->P, .n_pages = n, .blocks = blocks,
    };
    c->ev_fn(c->ev_ctx, &ev);
}

static bool bhash_known(const pc_cache *c, uint32_t block)
{
    return c->bhash[block].lo | c->bhash[block].hi;
}

/* Chain hashes of an evicted run's prefix into hbuf; false (and counted as
 * lost when the hook wants them) when there is no memory. */
static bool hash_evicted(pc_cache *c, const pc_radix_evicted *e)
{
    size_t end = e->first_page + e->n_pages;
    if (e->tokens && hbuf_reserve(c, end) == 0) {
        pc_page_hash_chain(e->ns, e->ns_len, e->tokens, end, c->P, c->hbuf);
        return true;
    }
    if (c->ev_fn)
        c->ev_lost += e->n_pages;
    return false;
}

/* REMOVED from the pool for an evicted run hashed into hbuf. */
static void emit_evicted(pc_cache *c, const pc_radix_evicted *e)
{
    if (ebuf_reserve(c, e->n_pages)) {
        c->ev_lost += e->n_pages;
        return;
    }
    for (size_t i = 0; i < e->n_pages; i++)
        c->ebuf[i] = c->hbuf[e->first_page + i].lo;
    emit_removed(c, 1, e->ns, e->ns_len, c->ebuf, e->n_pages);
}

/* ---- eviction ------------------------------------------------------------- */

static void evicted_to_pool(void *ctx, uint32_t block)
{
    seen_set(ctx, block, false); /* REMOVED named it, or it goes unnamed */
    int rc = pc_pool_free(((pc_cache *)ctx)->pool, block);
    assert(rc == 0); /* a tree page's block is CACHED */
    (void)rc;
}

/* Eviction with a hook: name the pages, then free their blocks. */
static void evicted_named(void *ctx, const pc_radix_evicted *e)
{
    pc_cache *c = ctx;
    /* Pages the hook already knows are named without rehashing the whole
     * prefix (REMOVED carries no parent): a by-block hook's by their
     * blocks, another's by the hashes kept when they were stored. */
    size_t known = 0;
    if (c->ev_by_block)
        while (known < e->n_pages && seen_get(c, e->blocks[known]))
            known++;
    else if (c->bhash && ebuf_reserve(c, e->n_pages) == 0)
        while (known < e->n_pages && bhash_known(c, e->blocks[known])) {
            c->ebuf[known] = c->bhash[e->blocks[known]].lo;
            known++;
        }
    if (known == e->n_pages && known && c->ev_by_block)
        emit_removed_blocks(c, e->ns, e->ns_len, e->blocks, e->n_pages);
    else if (known == e->n_pages && known)
        emit_removed(c, 1, e->ns, e->ns_len, c->ebuf, e->n_pages);
    else if (hash_evicted(c, e))
        emit_evicted(c, e);
    for (size_t i = 0; i < e->n_pages; i++)
        evicted_to_pool(c, e->blocks[i]);
}

/* A quota eviction (radix's hook) reports block ids only: with a hook, the
 * block names the page (by-block), or its hash was kept when the page was
 * stored (bhash). */
static void evicted_quota(void *ctx, uint32_t block)
{
    pc_cache *c = ctx;
    if (c->ev_fn && c->ev_by_block && seen_get(c, block))
        emit_removed_blocks(c, NULL, 0, &block, 1);
    else if (c->ev_fn && !c->ev_by_block && c->bhash && bhash_known(c, block))
        emit_removed(c, 1, NULL, 0, &c->bhash[block].lo, 1);
    else if (c->ev_fn)
        c->ev_lost++;
    evicted_to_pool(c, block);
}

static size_t evict(pc_cache *c, size_t n)
{
    if (!c)
        return 0;
    if (c->ev_fn)
        return pc_radix_evict_paths(c->tree, n, evicted_named, c);
    return pc_radix_evict(c->tree, n, evicted_to_pool, c);
}

size_t pc_cache_evict(pc_cache *c, size_t n)
{
    size_t k = evict(c, n);
    if (c)
        pc_cache_metrics_flushed(c->metrics, k);
    return k;
}

static int sbuf_reserve(pc_cache *c, size_t n)
{
    uint32_t *b = scratch(c->sbuf, &c->sbuf_cap, n, sizeof(*b));
    return b ? (c->sbuf = b, 0) : PC_E_NOMEM;
}

/* Evicted pages go to tier 2 (when there is room for their identity),
 * then their blocks back to the pool.  With a hook: STORED (tier 2) for
 * each run of pages tier 2 did not hold yet, then REMOVED (pool). */
static void evicted_to_tier(void *ctx, const pc_radix_evicted *e)
{
    pc_cache *c = ctx;
    if (hash_evicted(c, e)) {
        uint64_t nsid = pc_page_hash_ns(e->ns, e->ns_len).lo;
        pc_tier_stats *ts = pc_tier_counters(c->tier);
        c->run.e = e;
        c->run.n = 0;
        for (size_t i = 0; i < e->n_pages; i++) {
            size_t pg = e->first_page + i;
            uint64_t before = ts->demoted_pages;
            (void)pc_tier_demote(c->tier, c->hbuf[pg], nsid,
                                 e->tokens + pg * c->P, e->blocks[i]);
            if (!c->ev_fn)
                continue;
            if (ts->demoted_pages != before) { /* new in tier 2 */
                if (!c->run.n)
                    c->run.first = pg;
                c->run.n++;
            } else { /* already there, or no room: the run breaks */
                run_flush(c);
            }
        }
        if (c->ev_fn) {
            run_flush(c);
            emit_evicted(c, e);
        }
    } else {
        pc_tier_counters(c->tier)->demote_dropped_pages += e->n_pages;
    }
    for (size_t i = 0; i < e->n_pages; i++)
        evicted_to_pool(c, e->blocks[i]);
}

/* Eviction to make room (allocations, watermarks): through tier 2 when
 * there is one.  A device tier's copies finish before the blocks are
 * handed out again. */
static size_t evict_for_room(pc_cache *c, size_t n)
{
    if (!c->tier)
        return evict(c, n);
    size_t got = pc_radix_evict_paths(c->tree, n, evicted_to_tier, c);
    pc_tier_demote_flush(c->tier);
    return got;
}

int pc_cache_flush_ns(pc_cache *c, const void *ns, size_t ns_len,
                      size_t *evicted)
{
    if (!c)
        return PC_E_INVAL;
    int rc = c->ev_fn ? pc_radix_evict_ns_paths(c->tree, ns, ns_len,
                                                 evicted_named, c, evicted)
                      : pc_radix_evict_ns(c->tree, ns, ns_len, evicted_to_pool,
                                          c, evicted);
    if (rc == 0 && evicted)
        pc_cache_metrics_flushed(c->metrics, *evicted);
    return rc;
}

void pc_cache_flush_all(pc_cache *c, size_t *evicted, size_t *tier2)
{
    size_t ev = 0, t2 = 0;
    if (c) {
        pc_cache_event_fn fn = c->ev_fn;
        bool clear = false;
        if (fn) { /* will nothing be left?  Pinned pages and busy slots stay */
            pc_radix_stats rs;
            pc_radix_stats_get(c->tree, &rs);
            /* pages a namespace's reserve holds back stay too */
            clear = rs.protected_pages == 0 && rs.reserved_pages == 0;
            if (c->tier) {
                pc_tier_stats ts;
                pc_tier_stats_get(c->tier, &ts);
                clear = clear && ts.busy_pages == 0;
            }
        }
        if (clear)
            c->ev_fn = NULL; /* one CLEARED says it all */
        ev = pc_cache_evict(c, SIZE_MAX);
        t2 = pc_cache_flush_tier2(c, NULL, 0, true);
        if (clear) {
            c->ev_fn = fn;
            pc_cache_event e = {.type = PC_CACHE_EV_CLEARED,
                                .page_tokens = c->P};
            fn(c->ev_ctx, &e);
        }
    }
    if (evicted)
        *evicted = ev;
    if (tier2)
        *tier2 = t2;
}

size_t pc_cache_maintain(pc_cache *c)
{
    pc_pool_stats ps;
    if (!c)
        return 0;
    pc_pool_stats_get(c->pool, &ps);
    if (ps.free >= c->cfg.low_watermark)
        return 0;
    size_t n = evict_for_room(c, c->cfg.high_watermark - ps.free);
    c->st.evictions_watermark += n;
    return n;
}

/* ---- lease-acquiring helper ----------------------------------------------- */

/* The lease an operation works under: the named live one, or (id 0) a
 * prepared new one that the caller registers on success or discards. */
typedef struct lease_ref {
    lease *l;
    int fresh;
} lease_ref;

/* Refuse with code and say why (pc_cache_why): which limit, which value. */
static int refuse(pc_cache *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(pc_cache *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    pc_cache_metrics_refused(c->metrics, code);
    return code;
}

static int no_lease(pc_cache *c, uint64_t id)
{
    return refuse(c, PC_E_LEASE, "lease 0x%" PRIx64 " unknown or expired", id);
}

const char *pc_cache_why(const pc_cache *c)
{
    return c ? c->why : "";
}

/* The lease limits a pin or an allocation must stay within. */
static int over_limits(pc_cache *c, const lease *l, uint32_t pins,
                       uint32_t blocks)
{
    uint64_t np = (l ? l->npins : 0) + (uint64_t)pins;
    uint64_t nb = (l ? l->nblocks : 0) + (uint64_t)blocks;
    if (!l && c->nleases >= c->cfg.max_leases)
        return refuse(c, PC_E_LIMIT, "max_leases (%u) reached: %u leases are "
                      "live", c->cfg.max_leases, c->nleases);
    if (np > c->cfg.max_pins_per_lease)
        return refuse(c, PC_E_LIMIT, "max_pins_per_lease (%u) reached: the "
                      "lease would hold %" PRIu64 " pins", c->cfg.max_pins_per_lease,
                      np);
    if (nb > c->cfg.max_blocks_per_lease)
        return refuse(c, PC_E_LIMIT, "max_blocks_per_lease (%u) reached: the "
                      "lease would hold %" PRIu64 " blocks",
                      c->cfg.max_blocks_per_lease, nb);
    return 0;
}

static int lease_acquire(pc_cache *c, uint64_t id, uint32_t pins,
                         uint32_t blocks, lease_ref *r)
{
    int rc;
    r->l = NULL;
    r->fresh = 0;
    if (id) {
        if (!(r->l = lease_live(c, id)))
            return no_lease(c, id);
        if ((rc = over_limits(c, r->l, pins, blocks)))
            return rc;
        return lease_reserve(r->l, pins, blocks);
    }
    if ((rc = over_limits(c, NULL, pins, blocks)))
        return rc;
    if (tab_reserve(c) || !(r->l = lease_new(c, pins, blocks)))
        return PC_E_NOMEM;
    r->fresh = 1;
    return 0;
}

/* Success: a fresh lease goes live; a named one is renewed. */
static void lease_commit(pc_cache *c, lease_ref *r)
{
    if (r->fresh)
        lease_register(c, r->l);
    else
        lease_renew(c, r->l);
}

static void lease_abort(pc_cache *c, lease_ref *r)
{
    if (r->fresh)
        lease_discard(c, r->l);
}

/* ---- operations ----------------------------------------------------------- */

/*
 * The run of tier-2 pages after the m matched pages of tokens (np full
 * pages): pages m, m+1, ... while tier 2 holds them.  For a lookup (slots
 * NULL) every page of the run counts, busy or not, and they become tier
 * 2's most recently used.  For a promotion the run stops at the first page
 * a promotion is reading; its slots go to slots[] and, when that is the
 * very first page, *busy gets the promotion's id.
 */
static size_t tier2_run(pc_cache *c, const void *ns, size_t ns_len,
                        const uint32_t *tokens, size_t m, size_t np,
                        uint32_t *slots, uint64_t *busy, unsigned flags)
{
    size_t k = 0;
    /* An empty tier holds no run: skip hashing the whole prefix (every
     * partial lookup would pay it, and tier 2 starts empty). */
    size_t end = pc_tier_pages(c->tier) ? np : m;
    pc_page_hash h = pc_page_hash_ns(ns, ns_len);
    for (size_t i = 0; i < m && end > m; i++)
        h = pc_page_hash_next(h, tokens + i * c->P, c->P);
    for (size_t i = m; i < end; i++, k++) {
        const uint32_t *page = tokens + i * c->P;
        h = pc_page_hash_next(h, page, c->P);
        int64_t s = pc_tier_find(c->tier, h, page);
        if (s < 0)
            break;
        if (!slots) {
            if (!(flags & PC_CACHE_NO_CACHE))
                pc_tier_touch(c->tier, (uint32_t)s);
            continue;
        }
        if (pc_tier_busy(c->tier, (uint32_t)s)) {
            if (k == 0)
                *busy = c->slot_promo[s];
            break;
        }
        slots[k] = (uint32_t)s;
    }
    if (!slots && !(flags & PC_CACHE_NO_COUNT)) {
        pc_tier_stats *st = pc_tier_counters(c->tier);
        st->hit_pages += k;
        st->miss_pages += np - m - k;
    }
    return k;
}

/* pc_cache_lookup, and *node = the deepest matched node (NULL: none). */
static int lookup(pc_cache *c, const void *ns, size_t ns_len,
                  const uint32_t *tokens, size_t n_tokens, unsigned flags,
                  uint64_t lease_id, uint32_t *blocks, pc_lookup_result *out,
                  pc_radix_node **node)
{
    if (!c || !out || (n_tokens >= c->P && !blocks) ||
        (flags & ~(unsigned)(PC_CACHE_PIN | PC_CACHE_NO_CACHE | PC_CACHE_NO_COUNT)))
        return PC_E_INVAL;
    bool pin = flags & PC_CACHE_PIN;
    memset(out, 0, sizeof(*out));
    *node = NULL;
    c->why[0] = 0;
    lease_ref r = {0};
    int rc;
    if (pin && (rc = lease_acquire(c, lease_id, 1, 0, &r)))
        return rc;
    if (!pin && lease_id && !(r.l = lease_live(c, lease_id)))
        return no_lease(c, lease_id);
    pc_radix_match_result m;
    unsigned mf = (pin ? PC_RADIX_MATCH_SPLIT : 0) |
                  (flags & PC_CACHE_NO_CACHE ? PC_RADIX_MATCH_NORECENCY : 0) |
                  (flags & PC_CACHE_NO_COUNT ? PC_RADIX_MATCH_NOSTATS : 0);
    rc = pc_radix_match(c->tree, ns, ns_len, tokens, n_tokens, blocks,
                        n_tokens / c->P, mf, &m);
    if (rc) {
        lease_abort(c, &r);
        return rc;
    }
    out->tokens = m.tokens;
    out->pages = m.pages;
    *node = m.node;
    if (c->tier && m.pages < n_tokens / c->P)
        out->tier2_pages = tier2_run(c, ns, ns_len, tokens, m.pages,
                                     n_tokens / c->P, NULL, NULL, flags);
    if (!pin) { /* a named lease is renewed, as by every op naming it */
        if (r.l)
            lease_renew(c, r.l);
        return 0;
    }
    if (m.node) {
        if ((rc = pc_radix_lock(c->tree, m.node))) { /* 2^32 locks: RANGE */
            lease_abort(c, &r);
            return rc;
        }
        r.l->pins[r.l->npins++] = m.node;
        c->npins++;
    } else if (r.fresh) {
        lease_abort(c, &r); /* nothing to pin: no lease to hold */
        return 0;
    }
    lease_commit(c, &r);
    out->lease = r.l->id;
    return 0;
}

int pc_cache_lookup(pc_cache *c, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens, unsigned flags,
                    uint64_t lease_id, uint32_t *blocks, pc_lookup_result *out)
{
    pc_radix_node *node;
    int rc = lookup(c, ns, ns_len, tokens, n_tokens, flags, lease_id, blocks,
                    out, &node);
    if (rc == 0 && !(flags & PC_CACHE_NO_COUNT))
        pc_cache_metrics_lookup(c->metrics, ns, ns_len, n_tokens, out->tokens,
                                out->pages, out->tier2_pages, c->P);
    return rc;
}

int pc_cache_lookup_alloc(pc_cache *c, const void *ns, size_t ns_len,
                          const uint32_t *tokens, size_t n_tokens,
                          unsigned flags, uint64_t lease_id, uint32_t *blocks,
                          uint32_t *fresh, pc_lookup_result *out)
{
    if (!c || (n_tokens >= c->P && !fresh))
        return PC_E_INVAL;
    pc_radix_node *node;
    bool pin = flags & PC_CACHE_PIN;
    int rc = lookup(c, ns, ns_len, tokens, n_tokens, flags, lease_id, blocks,
                    out, &node);
    if (rc == 0 && !(flags & PC_CACHE_NO_COUNT))
        pc_cache_metrics_lookup(c->metrics, ns, ns_len, n_tokens, out->tokens,
                                out->pages, out->tier2_pages, c->P);
    size_t want = rc ? 0 : n_tokens / c->P - out->pages;
    if (!want)
        return rc;
    /* Without a pin the matched pages are as evictable as any other, and an
     * allocation that evicted them would hand out, as fresh, the very blocks
     * this reply names as the cached prefix: hold the path for the length of
     * the call.  (With a pin the lease holds it already.) */
    int held = !pin && node;
    if (held && (rc = pc_radix_lock(c->tree, node))) {
        out->alloc_status = rc; /* 2^32 locks on one path: no allocation */
        return 0;
    }
    uint64_t al = out->lease ? out->lease : lease_id;
    rc = want > UINT32_MAX ? PC_E_TOOBIG
                           : pc_cache_alloc(c, (uint32_t)want, &al, fresh);
    if (held)
        pc_radix_unlock(c->tree, node);
    if (rc) {
        if (rc == PC_E_NOSPACE && held) {
            size_t k = strlen(c->why);
            snprintf(c->why + k, sizeof(c->why) - k, "; the %zu matched page%s "
                     "of this lookup may not be evicted for it", out->pages,
                     out->pages == 1 ? "" : "s");
        }
        out->alloc_status = rc;
        return 0;
    }
    out->lease = al;
    out->alloc_n = want;
    return 0;
}

int pc_cache_alloc(pc_cache *c, uint32_t n, uint64_t *lease_id, uint32_t *ids)
{
    if (!c || !lease_id || (n && !ids))
        return PC_E_INVAL;
    c->why[0] = 0;
    pc_pool_stats ps;
    pc_radix_stats ts;
    pc_pool_stats_get(c->pool, &ps);
    pc_radix_stats_get(c->tree, &ts);
    lease_ref r;
    int rc = lease_acquire(c, *lease_id, 0, n, &r);
    if (rc)
        return rc;
    if (n > ps.free + ts.evictable_pages) {
        lease_abort(c, &r);
        c->st.nospace++;
        return refuse(c, PC_E_NOSPACE, "no space for %u blocks: %" PRIu64
                      " free, %" PRIu64 " evictable, %" PRIu64 " pinned, %"
                      PRIu64 " leased", n, ps.free, ts.evictable_pages,
                      ts.protected_pages, ps.leased);
    }
    if (n > ps.free) {
        size_t need = n - ps.free, got = evict_for_room(c, need);
        assert(got == need);
        c->st.evictions_alloc += got;
    }
    rc = pc_pool_alloc(c->pool, n, ids);
    assert(rc == 0);
    for (uint32_t i = 0; i < n; i++)
        lease_add_block(c, r.l, ids[i]);
    lease_commit(c, &r);
    *lease_id = r.l->id;
    return 0;
}

/* What pc_cache_insert vets once the tree has said which pages are cached. */
typedef struct insert_vet_ctx {
    pc_cache *c;
    const lease *l;
    const uint32_t *blocks;
    size_t pages;
} insert_vet_ctx;

/* Every block must be its page's canonical id (nothing to check: the common
 * case, the ids lookup returned) or one of this lease's own, each once. */
static int insert_vet(void *ctx, const uint32_t *canon, size_t cached)
{
    insert_vet_ctx *x = ctx;
    pc_cache *c = x->c;
    if (++c->epoch == 0) {
        memset(c->mark, 0, c->capacity * sizeof(*c->mark));
        c->epoch = 1;
    }
    for (size_t i = 0; i < x->pages; i++) {
        uint32_t b = x->blocks[i];
        if (i < cached && b == canon[i])
            continue;
        if (b >= c->capacity)
            return PC_E_RANGE;
        if (!x->l || c->owner[b] != x->l)
            return PC_E_PERM;
        if (c->mark[b] == c->epoch)
            return PC_E_INVAL; /* the same block for two pages */
        c->mark[b] = c->epoch;
    }
    return 0;
}

static int insert_l(pc_cache *c, lease *l, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens,
                    const uint32_t *blocks, int pin, uint32_t *canon,
                    pc_insert_result *out);

/* An insert with NO_CACHE: what is cached already is reported (and its
 * canonical ids), nothing changes but the lease's deadline; the lease
 * keeps its blocks (they are freed on release). */
static int insert_nothing(pc_cache *c, lease *l, const void *ns, size_t ns_len,
                          const uint32_t *tokens, size_t n_tokens,
                          const uint32_t *blocks, uint32_t *canon,
                          pc_insert_result *out)
{
    size_t np = n_tokens / c->P;
    pc_radix_match_result m;
    int rc = pc_radix_match(c->tree, ns, ns_len, tokens, n_tokens, canon,
                            canon ? np : 0, PC_RADIX_MATCH_PEEK, &m);
    if (rc)
        return rc;
    for (size_t i = m.pages; canon && i < np; i++)
        canon[i] = blocks[i];
    out->cached_tokens = m.tokens;
    if (l)
        lease_renew(c, l);
    return 0;
}

int pc_cache_insert(pc_cache *c, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens,
                    const uint32_t *blocks, uint64_t lease_id, uint32_t *canon,
                    pc_insert_result *out)
{
    return pc_cache_insert_pin(c, ns, ns_len, tokens, n_tokens, blocks,
                               lease_id, 0, canon, out);
}

int pc_cache_insert_pin(pc_cache *c, const void *ns, size_t ns_len,
                        const uint32_t *tokens, size_t n_tokens,
                        const uint32_t *blocks, uint64_t lease_id,
                        unsigned flags, uint32_t *canon, pc_insert_result *out)
{
    if (!c || !out)
        return PC_E_INVAL;
    memset(out, 0, sizeof(*out));
    c->why[0] = 0;
    size_t np = n_tokens / c->P;
    bool pin = flags & PC_CACHE_PIN;
    if ((np && (!blocks || !tokens)) || (pin && !lease_id) ||
        (flags & ~(unsigned)(PC_CACHE_PIN | PC_CACHE_NO_CACHE)) ||
        (pin && (flags & PC_CACHE_NO_CACHE)))
        return PC_E_INVAL;
    lease *l = NULL;
    if (lease_id && !(l = lease_live(c, lease_id)))
        return no_lease(c, lease_id);
    if (flags & PC_CACHE_NO_CACHE)
        return insert_nothing(c, l, ns, ns_len, tokens, n_tokens, blocks,
                              canon, out);
    return insert_l(c, l, ns, ns_len, tokens, n_tokens, blocks, pin, canon,
                    out);
}

/* pc_cache_insert_pin once the lease (NULL: none; maybe a promotion's) is
 * known. */
static int insert_l(pc_cache *c, lease *l, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens,
                    const uint32_t *blocks, int pin, uint32_t *canon,
                    pc_insert_result *out)
{
    size_t np = n_tokens / c->P;
    int rc;
    /* Room for the pin first: once the tree has changed, nothing may fail
     * for want of it. */
    if (pin && np) {
        if ((rc = over_limits(c, l, 1, 0)))
            return rc;
        if (lease_reserve(l, 1, 0))
            return PC_E_NOMEM;
    }
    if (!canon) {
        if (np > c->scratch_cap) {
            uint32_t *s = realloc(c->scratch, np * sizeof(*s));
            if (!s)
                return PC_E_NOMEM;
            c->scratch = s;
            c->scratch_cap = np;
        }
        canon = c->scratch;
    }

    /* An insert adds at most 3 nodes (a namespace root, a split, a leaf):
     * near the bound, one that would add a page is refused before anything
     * changes (one that only finds its pages cached adds nothing). */
    if (c->cfg.max_tree_nodes && np) {
        pc_radix_stats ts;
        pc_radix_match_result m;
        pc_radix_stats_get(c->tree, &ts);
        uint64_t nodes = ts.nodes + ts.namespaces;
        if (nodes + 3 > c->cfg.max_tree_nodes &&
            (pc_radix_match(c->tree, ns, ns_len, tokens, n_tokens, NULL, 0,
                            PC_RADIX_MATCH_PEEK, &m) || m.pages < np))
            return refuse(c, PC_E_LIMIT, "max_tree_nodes (%" PRIu64 ") reached: "
                          "the tree has %" PRIu64 " nodes (evict or flush, or "
                          "raise the bound)", c->cfg.max_tree_nodes, nodes);
    }
    pc_quota_before_insert(c->quota, c->tree, ns, ns_len);
    insert_vet_ctx vet = {c, l, blocks, np};
    pc_radix_insert_result ir;
    rc = pc_radix_insert_checked(c->tree, ns, ns_len, tokens, n_tokens,
                                     blocks, canon, insert_vet, &vet, &ir);
    if (rc)
        return rc;
    size_t cached = ir.cached_tokens / c->P;
    for (size_t i = 0; i < np; i++) {
        uint32_t b = blocks[i];
        if (i >= cached) { /* adopted by the tree */
            lease_drop_block(c, b);
            rc = pc_pool_cache(c->pool, b);
        } else if (b != canon[i]) { /* the lease's duplicate */
            lease_drop_block(c, b);
            rc = pc_pool_free(c->pool, b);
            out->freed_blocks++;
        }
        assert(rc == 0);
    }
    out->cached_tokens = ir.cached_tokens;
    out->inserted_pages = ir.inserted_pages;
    if (c->ev_fn && c->ev_by_block && np > cached) {
        /* The hook hashes the new pages itself, chaining on from the
         * parent page's block when it saw that stored; else from the
         * chain's value there (the namespace's start for a new prefix). */
        pc_cache_event ev = {
            .type = PC_CACHE_EV_STORED, .tier = 1,
            .medium = pc_cache_medium(c, 1), .ns = ns, .ns_len = ns_len,
            .tokens = tokens, .page_tokens = c->P, .first_page = cached,
            .n_pages = np - cached, .blocks = blocks + cached,
            .has_parent = cached > 0, .parent_block = PC_CACHE_EV_NO_BLOCK,
        };
        bool ok = true;
        if (cached && seen_get(c, canon[cached - 1]))
            ev.parent_block = canon[cached - 1];
        else if (!cached)
            ev.start = pc_page_hash_ns(ns, ns_len);
        else if ((ok = hbuf_reserve(c, cached) == 0)) { /* rare: set late */
            pc_page_hash_chain(ns, ns_len, tokens, cached, c->P, c->hbuf);
            ev.start = c->hbuf[cached - 1];
        }
        if (ok) {
            c->ev_fn(c->ev_ctx, &ev);
            for (size_t i = cached; i < np; i++)
                seen_set(c, blocks[i], true);
        } else {
            c->ev_lost += np - cached;
        }
    } else if (c->ev_fn && np > cached) { /* the new pages, named by their chain */
        if (hbuf_reserve(c, np) == 0) {
            /* Chain on from the cached prefix's last page when its hash is
             * known: an insert costs its new pages, not its whole prompt
             * (a multi-turn chat adds a few pages to a long prefix). */
            if (cached && c->bhash && bhash_known(c, canon[cached - 1])) {
                pc_page_hash h = c->hbuf[cached - 1] = c->bhash[canon[cached - 1]];
                pc_page_hash_chain_from(h, tokens + cached * c->P, np - cached,
                                        c->P, c->hbuf + cached);
            } else {
                pc_page_hash_chain(ns, ns_len, tokens, np, c->P, c->hbuf);
            }
            if (c->bhash) /* what evictions will need to name them */
                for (size_t i = cached; i < np; i++)
                    c->bhash[blocks[i]] = c->hbuf[i];
            emit_stored(c, 1, ns, ns_len, tokens, cached, np - cached);
        } else {
            c->ev_lost += np - cached;
        }
    }
    if (l && l->heap_pos)
        lease_renew(c, l);
    if (c->nopins && ir.inserted_pages)
        opins_after_insert(c, ns, ns_len);
    /* ir.node covers exactly the full pages inserted (or found cached).
     * Locking fails only past 2^32 locks on one path: the insert stands. */
    if (pin && ir.node) {
        if ((rc = pc_radix_lock(c->tree, ir.node)))
            return rc;
        l->pins[l->npins++] = ir.node;
        c->npins++;
    }
    return 0;
}

/* ---- operator pins ----------------------------------------------------------- */

/* One operator-pinned prefix: how far it is cached (and locked) now. */
typedef struct opin {
    uint8_t ns[PC_NS_MAX];
    uint32_t ns_len;
    uint32_t *tokens;
    size_t n_tokens;     /* whole pages only                          */
    pc_radix_node *node; /* locked: its deepest cached page; NULL none */
    size_t pages;
} opin;

/* Lock as much of op as is cached now, if more than before (never less:
 * what is locked cannot be evicted). */
static void opin_refresh(pc_cache *c, opin *op)
{
    if (op->pages * c->P == op->n_tokens)
        return;
    pc_radix_match_result m;
    if (pc_radix_match(c->tree, op->ns, op->ns_len, op->tokens, op->n_tokens,
                       NULL, 0, PC_RADIX_MATCH_SPLIT | PC_RADIX_MATCH_PEEK, &m) ||
        m.pages <= op->pages || pc_radix_lock(c->tree, m.node))
        return; /* NOMEM (a split) or 2^32 locks: the next insert retries */
    if (op->node)
        pc_radix_unlock(c->tree, op->node);
    op->node = m.node;
    op->pages = m.pages;
}

/* After an insert into ns: the operator pins of ns may have grown. */
static void opins_after_insert(pc_cache *c, const void *ns, size_t ns_len)
{
    for (size_t i = 0; i < c->nopins; i++) {
        opin *op = &c->opins[i];
        if (op->ns_len == ns_len && memcmp(op->ns, ns, ns_len) == 0)
            opin_refresh(c, op);
    }
}

static void opins_free(pc_cache *c, opin *v, size_t n, bool unlock)
{
    for (size_t i = 0; i < n; i++) {
        if (unlock && v[i].node)
            pc_radix_unlock(c->tree, v[i].node);
        free(v[i].tokens);
    }
    free(v);
}

/* Distinct full pages over the specs (shared prefixes counted once), by
 * their chain identities in a small open-addressing set. */
static int opins_pages(pc_cache *c, const pc_cache_pin_spec *v, size_t n,
                       uint64_t *pages)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].n_tokens / c->P;
    size_t cap = 16;
    while (cap < 2 * total)
        cap *= 2;
    pc_page_hash *set = calloc(cap, sizeof(*set));
    if (!set || hbuf_reserve(c, total ? total : 1)) {
        free(set);
        return PC_E_NOMEM;
    }
    *pages = 0;
    for (size_t i = 0; i < n; i++) {
        size_t np = v[i].n_tokens / c->P;
        pc_page_hash_chain(v[i].ns, v[i].ns_len, v[i].tokens, np, c->P, c->hbuf);
        for (size_t k = 0; k < np; k++) {
            pc_page_hash h = c->hbuf[k];
            h.hi |= 1; /* never the empty slot */
            size_t j = h.lo & (cap - 1);
            while ((set[j].hi || set[j].lo) && !pc_page_hash_eq(set[j], h))
                j = (j + 1) & (cap - 1);
            if (!set[j].hi) {
                set[j] = h;
                ++*pages;
            }
        }
    }
    free(set);
    return 0;
}

int pc_cache_set_ns_quotas(pc_cache *c, const pc_cache_quota *v, size_t n)
{
    if (!c || (n && !v))
        return PC_E_INVAL;
    c->why[0] = 0;
    return pc_quota_set(&c->quota, c->tree, c->capacity, v, n, c->why,
                        sizeof(c->why));
}

int pc_cache_set_operator_pins(pc_cache *c, const pc_cache_pin_spec *v,
                               size_t n)
{
    if (!c || (n && !v))
        return PC_E_INVAL;
    c->why[0] = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].ns_len > PC_NS_MAX || (v[i].ns_len && !v[i].ns) ||
            v[i].n_tokens < c->P || !v[i].tokens)
            return refuse(c, PC_E_INVAL, "operator pin %zu: %s", i,
                          v[i].ns_len > PC_NS_MAX ? "namespace over 256 bytes"
                                                  : "no full page of tokens");
    uint64_t pages;
    int rc = opins_pages(c, v, n, &pages);
    if (rc)
        return rc;
    if (pages > c->capacity)
        return refuse(c, PC_E_NOSPACE, "operator pins: %" PRIu64 " distinct "
                      "pages, the pool holds %u", pages, c->capacity);
    opin *nv = n ? calloc(n, sizeof(*nv)) : NULL;
    if (n && !nv)
        return PC_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t nt = v[i].n_tokens / c->P * c->P;
        if (!(nv[i].tokens = malloc(nt * sizeof(uint32_t)))) {
            opins_free(c, nv, n, false);
            return PC_E_NOMEM;
        }
        memcpy(nv[i].tokens, v[i].tokens, nt * sizeof(uint32_t));
        memcpy(nv[i].ns, v[i].ns_len ? v[i].ns : "", v[i].ns_len);
        nv[i].ns_len = (uint32_t)v[i].ns_len;
        nv[i].n_tokens = nt;
    }
    /* the new ones lock first, so that what both sets pin never becomes
     * evictable in between */
    for (size_t i = 0; i < n; i++)
        opin_refresh(c, &nv[i]);
    opins_free(c, c->opins, c->nopins, true);
    c->opins = nv;
    c->nopins = n;
    c->opin_pages_wanted = 0;
    for (size_t i = 0; i < n; i++)
        c->opin_pages_wanted += nv[i].n_tokens / c->P;
    return 0;
}

/* ---- promotion from tier 2 ------------------------------------------------- */

static void promo_free(promo *p)
{
    free(p->tokens);
    free(p->blocks);
    free(p->slots);
    free(p);
}

int pc_cache_promote(pc_cache *c, const void *ns, size_t ns_len,
                     const uint32_t *tokens, size_t n_tokens, uint64_t *job,
                     size_t *matched_pages)
{
    size_t dummy;
    if (!matched_pages)
        matched_pages = &dummy;
    *matched_pages = 0;
    if (!c || !job || (n_tokens && !tokens) || ns_len > PC_NS_MAX ||
        (ns_len && !ns))
        return PC_E_INVAL;
    *job = 0;
    c->why[0] = 0;
    size_t np = n_tokens / c->P;
    if (!c->tier || np == 0)
        return 0;
    if (np > UINT32_MAX)
        return PC_E_RANGE;
    /* A peek: the lookup that answers the client counts the hit. */
    pc_radix_match_result m;
    int rc = pc_radix_match(c->tree, ns, ns_len, tokens, n_tokens, NULL, 0,
                            PC_RADIX_MATCH_SPLIT | PC_RADIX_MATCH_PEEK, &m);
    if (rc)
        return rc;
    *matched_pages = m.pages;
    if (m.pages == np)
        return 0;
    if ((rc = sbuf_reserve(c, np - m.pages)))
        return rc;
    uint64_t busy = 0;
    size_t k = tier2_run(c, ns, ns_len, tokens, m.pages, np, c->sbuf, &busy, 0);
    if (busy) {
        *job = busy;
        return 0;
    }
    if (k == 0)
        return 0;
    promo *p = calloc(1, sizeof(*p));
    lease *l = lease_new(c, 1, (uint32_t)k);
    if (l)
        l->owner = 0; /* no client's: nobody can name it anyway */
    if (p) {
        p->tokens = malloc((m.pages + k) * c->P * sizeof(*p->tokens));
        p->blocks = malloc(k * sizeof(*p->blocks));
        p->slots = malloc(k * sizeof(*p->slots));
    }
    if (!p || !l || !p->tokens || !p->blocks || !p->slots) {
        if (p)
            promo_free(p);
        lease_discard(c, l);
        return PC_E_NOMEM;
    }
    /* Pin the prefix first so that making room cannot evict it, then hold
     * the slots so that the demotions making room cannot take them. */
    if (m.node) {
        if ((rc = pc_radix_lock(c->tree, m.node))) {
            promo_free(p);
            lease_discard(c, l);
            return rc;
        }
        l->pins[l->npins++] = m.node;
        c->npins++;
    }
    pc_pool_stats ps;
    pc_radix_stats ts;
    pc_pool_stats_get(c->pool, &ps);
    pc_radix_stats_get(c->tree, &ts);
    uint64_t room = ps.free + ts.evictable_pages;
    if (room == 0) {
        lease_unwind(c, l);
        lease_discard(c, l);
        promo_free(p);
        return refuse(c, PC_E_NOSPACE, "no room to promote: %" PRIu64
                      " pinned, %" PRIu64 " leased", ts.protected_pages,
                      ps.leased);
    }
    if (k > room)
        k = (size_t)room; /* what fits now; the rest on a later call */
    memcpy(p->slots, c->sbuf, k * sizeof(*p->slots));
    pc_tier_hold(c->tier, p->slots, (uint32_t)k);
    if (k > ps.free) {
        size_t need = k - ps.free, got = evict_for_room(c, need);
        assert(got == need);
        (void)got;
        c->st.evictions_alloc += need;
    }
    rc = pc_pool_alloc(c->pool, (uint32_t)k, p->blocks);
    assert(rc == 0);
    for (size_t i = 0; i < k; i++)
        lease_add_block(c, l, p->blocks[i]);
    if ((rc = pc_tier_promote(c->tier, p->slots, p->blocks, (uint32_t)k,
                              &p->io))) {
        pc_tier_unhold(c->tier, p->slots, (uint32_t)k, false);
        lease_unwind(c, l);
        lease_discard(c, l);
        promo_free(p);
        return rc;
    }
    p->id = ++c->next_promo;
    p->l = l;
    p->first = (uint32_t)m.pages;
    p->n = (uint32_t)k;
    memcpy(p->tokens, tokens, (m.pages + k) * c->P * sizeof(*tokens));
    memcpy(p->ns, ns_len ? ns : "", ns_len);
    p->ns_len = (uint32_t)ns_len;
    for (size_t i = 0; i < k; i++)
        c->slot_promo[p->slots[i]] = p->id;
    p->next = c->promos;
    c->promos = p;
    *job = p->id;
    return 0;
}

/* The copy is over: on success the pages join the tree (pages someone
 * inserted meanwhile keep theirs: insert frees ours as duplicates); on
 * failure the blocks go back.  The promotion's lease ends either way. */
static void promo_finish(pc_cache *c, promo *p, int status)
{
    size_t pages = (size_t)p->first + p->n;
    if (status == 0 && (status = sbuf_reserve(c, pages)) == 0) {
        pc_radix_match_result m;
        /* pages [0, first) are pinned by p->l: all there */
        int rc = pc_radix_match(c->tree, p->ns, p->ns_len, p->tokens,
                                (size_t)p->first * c->P, c->sbuf, p->first,
                                PC_RADIX_MATCH_PEEK, &m);
        assert(rc == 0 && m.pages == p->first);
        (void)rc;
        memcpy(c->sbuf + p->first, p->blocks, p->n * sizeof(*p->blocks));
        pc_insert_result ir;
        status = insert_l(c, p->l, p->ns, p->ns_len, p->tokens,
                          pages * c->P, c->sbuf, 0, NULL, &ir);
    }
    lease_unwind(c, p->l);
    lease_discard(c, p->l);
    for (uint32_t i = 0; i < p->n; i++)
        c->slot_promo[p->slots[i]] = 0;
}

size_t pc_cache_poll(pc_cache *c, uint64_t *done, size_t cap)
{
    if (!c || !c->promos)
        return 0;
    size_t n = 0;
    promo **pp = &c->promos;
    while (*pp && n < cap) {
        promo *p = *pp;
        int st = pc_tier_job_status(c->tier, p->io);
        if (st == PC_E_BUSY) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        promo_finish(c, p, st);
        pc_tier_job_free(c->tier, p->io);
        done[n++] = p->id;
        promo_free(p);
    }
    /* Stopped at cap: the caller drained the fd before calling, so a
     * finished promotion left behind has no wake-up of its own, and a loop
     * that polls when the fd is readable would never come back for it.
     * Give the wake-up back. */
    for (promo *p = *pp; p; p = p->next)
        if (pc_tier_job_status(c->tier, p->io) != PC_E_BUSY) {
            pc_tier_kick(c->tier);
            break;
        }
    return n;
}

int pc_cache_wait_fd(const pc_cache *c)
{
    return c && c->tier ? pc_tier_wait_fd(c->tier) : -1;
}

void pc_cache_wait_fd_drain(pc_cache *c)
{
    if (c && c->tier)
        pc_tier_drain_fd(c->tier);
}

size_t pc_cache_flush_tier2(pc_cache *c, const void *ns, size_t ns_len,
                            bool all)
{
    if (!c || !c->tier || (!all && (ns_len > PC_NS_MAX || (ns_len && !ns))))
        return 0;
    return pc_tier_flush(c->tier, all, all ? 0 : pc_page_hash_ns(ns, ns_len).lo);
}

int pc_cache_release(pc_cache *c, uint64_t lease_id)
{
    if (!c)
        return PC_E_INVAL;
    c->why[0] = 0;
    lease *l = lease_live(c, lease_id);
    if (!l)
        return no_lease(c, lease_id);
    lease_end(c, l);
    c->st.leases_released++;
    return 0;
}

void pc_cache_set_owner(pc_cache *c, uint64_t owner)
{
    if (c)
        c->caller = owner;
}

uint64_t pc_cache_lease_owner(const pc_cache *c, uint64_t lease_id)
{
    const lease *l = c ? lease_find(c, lease_id) : NULL;
    return l ? l->owner : 0;
}

int pc_cache_touch(pc_cache *c, uint64_t lease_id)
{
    if (!c)
        return PC_E_INVAL;
    c->why[0] = 0;
    lease *l = lease_live(c, lease_id);
    if (!l)
        return no_lease(c, lease_id);
    lease_renew(c, l);
    return 0;
}

size_t pc_cache_expire(pc_cache *c)
{
    size_t n = 0;
    if (!c)
        return 0;
    uint64_t now = now_ms(c);
    lease *l;
    while ((l = pc_heap_top(&c->heap)) && l->deadline <= now) {
        lease_end(c, l);
        n++;
    }
    c->st.leases_expired += n;
    return n;
}

uint64_t pc_cache_next_deadline_ms(pc_cache *c)
{
    if (!c)
        return UINT64_MAX;
    /* a device tier's copies end on an event nobody can poll(2) */
    uint64_t cap = c->tier && pc_tier_polls(c->tier) ? 1 : UINT64_MAX;
    if (!c->nleases)
        return cap;
    uint64_t now = now_ms(c), d = ((lease *)pc_heap_top(&c->heap))->deadline;
    d = d > now ? d - now : 0;
    return d < cap ? d : cap;
}

void pc_cache_stats_get(const pc_cache *c, pc_cache_stats *out)
{
    if (!out)
        return;
    if (!c) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = c->st;
    pc_radix_stats_get(c->tree, &out->tree);
    pc_pool_stats_get(c->pool, &out->pool);
    out->leases = c->nleases;
    out->pins = c->npins;
}

void pc_cache_stats_visit(const pc_cache *c, pc_stat_fn fn, void *ctx)
{
    pc_radix_stats_visit(c->tree, fn, ctx);
    pc_pool_stats_visit(c->pool, fn, ctx);
    fn(ctx, "leases.live", c->nleases);
    fn(ctx, "leases.created", c->st.leases_created);
    fn(ctx, "leases.released", c->st.leases_released);
    fn(ctx, "leases.expired", c->st.leases_expired);
    fn(ctx, "leases.pins", c->npins);
    fn(ctx, "cache.evictions_alloc", c->st.evictions_alloc);
    fn(ctx, "cache.evictions_watermark", c->st.evictions_watermark);
    fn(ctx, "cache.nospace", c->st.nospace);
    uint64_t opages = 0;
    for (size_t i = 0; i < c->nopins; i++)
        opages += c->opins[i].pages;
    fn(ctx, "pins.operator_prefixes", c->nopins);
    fn(ctx, "pins.operator_pages", opages);
    fn(ctx, "pins.operator_pages_wanted", c->opin_pages_wanted);
    pc_quota_stats_visit(c->quota, fn, ctx);
    pc_tier_stats_visit(c->tier, fn, ctx);
    pc_cache_metrics_visit(c->metrics, fn, ctx); /* last: ns.* is long */
}

void pc_cache_describe(const pc_cache *c, pc_cache_desc *out)
{
    memset(out, 0, sizeof(*out));
    out->layout = *pc_pool_layout_get(c->pool);
    out->capacity = c->capacity;
    out->backend = pc_pool_backend_name(pc_pool_backend_get(c->pool));
    if (pc_pool_shm_info(c->pool, &out->shm_name, &out->shm_bytes) != 0) {
        out->shm_name = NULL;
        out->shm_bytes = 0;
    }
    out->shm_reclaimed = out->shm_name && pc_pool_shm_reclaimed(c->pool);
    pc_gpu_handle h;
    pc_gpu_uuid u;
    const pc_gpu_ops *ops;
    if (pc_pool_backend_get(c->pool) == PC_POOL_CUDA &&
        pc_gpu_pool_handle(c->pool, &h, &u, &ops) == 0) {
        out->device_ops = ops->name;
        memcpy(out->device_uuid, u.b, sizeof(out->device_uuid));
        memcpy(out->ipc_handle, h.b, sizeof(out->ipc_handle));
    }
    if (c->tier) {
        pc_tier_stats ts;
        pc_tier_stats_get(c->tier, &ts);
        out->tier2 = pc_tier_kind(c->tier);
        out->tier2_pages = ts.capacity_pages;
    }
    out->lease_ttl_ms = c->cfg.lease_ttl_ms;
    out->policy = pc_radix_get_policy(c->tree);
}

const char *pc_cache_policy_name(int policy)
{
    return policy >= 0 && policy < PC_POLICY_COUNT
               ? pc_radix_policy_name((pc_radix_policy)policy)
               : NULL;
}

int pc_cache_reserve_ns_priorities(pc_cache *c, uint32_t n)
{
    return pc_radix_reserve_ns_priorities(c->tree, n);
}

void pc_cache_clear_ns_priorities(pc_cache *c)
{
    pc_radix_clear_ns_priorities(c->tree);
}

int pc_cache_set_ns_priority(pc_cache *c, const void *ns, size_t ns_len,
                             int32_t prio)
{
    return pc_radix_set_ns_priority(c->tree, ns, ns_len, prio);
}

/* ---- pc_cache_list_hashes (inspect.h) -------------------------------------- */

/* A pre-order walk keeps the chain hash at the end of each node on the
 * path to the current one: a node's parent is the deepest entry whose
 * depth is where the node's edge starts. */
typedef struct list_walk {
    const pc_cache *c;
    const void *ns;
    size_t ns_len;
    size_t *depth;       /* per path entry: pages through its end */
    pc_page_hash *h;     /* per path entry: the chain there       */
    size_t n, cap;
    uint64_t *out;
    size_t out_cap, count;
    int nomem;
} list_walk;

static int list_node(void *ctx, const void *ns, size_t ns_len,
                     const pc_radix_node *x, const uint32_t *blocks,
                     uint32_t npages)
{
    list_walk *w = ctx;
    (void)blocks;
    size_t end = pc_radix_node_depth_pages(x), start = end - npages;
    if (ns != w->ns || ns_len != w->ns_len) { /* a new namespace */
        w->ns = ns;
        w->ns_len = ns_len;
        w->n = 0;
    }
    while (w->n && w->depth[w->n - 1] > start)
        w->n--;
    if (npages == 0)
        return 0; /* the namespace's root */
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        size_t *d = realloc(w->depth, cap * sizeof(*d));
        if (d)
            w->depth = d;
        pc_page_hash *h = realloc(w->h, cap * sizeof(*h));
        if (h)
            w->h = h;
        if (!d || !h)
            return w->nomem = PC_E_NOMEM;
        w->cap = cap;
    }
    pc_page_hash h = w->n ? w->h[w->n - 1] : pc_page_hash_ns(ns, ns_len);
    const uint32_t *tok = pc_radix_node_tokens(w->c->tree, x);
    for (uint32_t i = 0; i < npages; i++) {
        h = pc_page_hash_next(h, tok + (size_t)i * w->c->P, w->c->P);
        if (w->count < w->out_cap)
            w->out[w->count] = h.lo;
        w->count++;
    }
    w->depth[w->n] = end;
    w->h[w->n++] = h;
    return 0;
}

size_t pc_cache_list_hashes(const pc_cache *c, int tier, uint64_t *out,
                            size_t cap)
{
    if (!c)
        return 0;
    if (tier == 2) {
        if (!c->tier)
            return 0;
        pc_page_hash *k = cap ? malloc(cap * sizeof(*k)) : NULL;
        if (cap && !k)
            return 0;
        size_t n = pc_tier_list(c->tier, k, cap);
        for (size_t i = 0; i < n && i < cap; i++)
            out[i] = k[i].lo;
        free(k);
        return n;
    }
    list_walk w = {.c = c, .out = out, .out_cap = cap};
    pc_radix_foreach(c->tree, list_node, &w);
    free(w.depth);
    free(w.h);
    return w.nomem ? 0 : w.count;
}

/* ---- pc_cache_check ------------------------------------------------------- */

#define CHECK(cond, ...) PC_CHECK_OR_OUT("pc_cache_check", cond, __VA_ARGS__)

/* Pins expected per node: a small open-addressing map built from leases. */
typedef struct pinmap {
    const pc_radix_node **key;
    uint32_t *count;
    size_t cap;
} pinmap;

static size_t pinmap_slot(const pinmap *m, const pc_radix_node *n)
{
    size_t i = ((uintptr_t)n >> 4) * 0x9E3779B97F4A7C15ull % m->cap;
    while (m->key[i] && m->key[i] != n)
        i = (i + 1) % m->cap;
    return i;
}

typedef struct tree_walk {
    const pc_cache *c;
    uint8_t *seen; /* per block */
    pinmap pins;
    uint64_t pages, pinned_nodes;
    int bad;
} tree_walk;

static int check_node(void *ctx, const void *ns, size_t ns_len,
                      const pc_radix_node *n, const uint32_t *blocks,
                      uint32_t npages)
{
    tree_walk *w = ctx;
    (void)ns, (void)ns_len;
    for (uint32_t i = 0; i < npages; i++) {
        pc_block_state s;
        if (pc_pool_state(w->c->pool, blocks[i], &s) || s != PC_BLOCK_CACHED ||
            w->seen[blocks[i]]) {
            fprintf(stderr, "pc_cache_check: tree block %u not CACHED or on "
                            "two pages\n", blocks[i]);
            return w->bad = PC_E_CORRUPT;
        }
        w->seen[blocks[i]] = 1;
    }
    w->pages += npages;
    size_t k = pinmap_slot(&w->pins, n);
    uint32_t want = w->pins.key[k] ? w->pins.count[k] : 0;
    if (pc_radix_node_pins(n) != want) {
        fprintf(stderr, "pc_cache_check: node %p has %u pins, leases hold %u\n",
                (const void *)n, pc_radix_node_pins(n), want);
        return w->bad = PC_E_CORRUPT;
    }
    w->pinned_nodes += want > 0;
    return 0;
}

int pc_cache_check(const pc_cache *c)
{
    int rc;
    if (!c)
        return PC_E_INVAL;
    if ((rc = pc_radix_check(c->tree)) || (rc = pc_pool_check(c->pool)))
        return rc;
    tree_walk w = {c, calloc(c->capacity, 1), {0}, 0, 0, 0};
    uint64_t blocks = 0, pins = 0, distinct = 0;
    w.pins.cap = 2 * (c->npins + c->nopins) + 16;
    w.pins.key = calloc(w.pins.cap, sizeof(*w.pins.key));
    w.pins.count = calloc(w.pins.cap, sizeof(*w.pins.count));
    CHECK(w.seen && w.pins.key && w.pins.count, "check out of memory");
    pc_pool_stats ps;
    pc_pool_stats_get(c->pool, &ps);

    CHECK(c->nleases <= c->tab_cap, "lease count %u", c->nleases);
    CHECK(c->heap.n == c->nleases, "heap holds %u leases, table %u", c->heap.n,
          c->nleases);
    if ((rc = pc_heap_check(&c->heap, &expiry, "pc_cache_check")) ||
        (rc = pc_hashtab_check(c->tab, c->tab_cap, &lease_tab, NULL, NULL,
                               "pc_cache_check")))
        goto out;
    /* the live leases (heap order), then the promotions' */
    const promo *pr = c->promos;
    for (uint32_t i = 1; i <= c->heap.n || pr; i++) {
        const lease *l;
        if (i <= c->heap.n) {
            l = c->heap.v[i];
            CHECK(lease_find(c, l->id) == l, "lease %llx not in the table",
                  (unsigned long long)l->id);
        } else {
            l = pr->l;
            CHECK(l->heap_pos == 0 && lease_find(c, l->id) != l,
                  "promotion %llu's lease is in the table",
                  (unsigned long long)pr->id);
            CHECK(l->owner == 0, "promotion %llu's lease has owner %llx",
                  (unsigned long long)pr->id, (unsigned long long)l->owner);
            CHECK(l->nblocks == pr->n && l->npins == (pr->first > 0),
                  "promotion %llu holds %u blocks and %u pins",
                  (unsigned long long)pr->id, l->nblocks, l->npins);
            for (uint32_t j = 0; j < pr->n; j++) {
                CHECK(c->owner[pr->blocks[j]] == l, "promotion %llu's block "
                      "%u", (unsigned long long)pr->id, pr->blocks[j]);
                CHECK(pc_tier_busy(c->tier, pr->slots[j]) &&
                      c->slot_promo[pr->slots[j]] == pr->id,
                      "promotion %llu's slot %u", (unsigned long long)pr->id,
                      pr->slots[j]);
            }
            pr = pr->next;
        }
        CHECK(l->npins <= l->pins_cap && l->nblocks <= l->blocks_cap,
              "lease arrays overrun");
        for (uint32_t j = 0; j < l->nblocks; j++) {
            uint32_t b = l->blocks[j];
            pc_block_state s;
            CHECK(pc_pool_state(c->pool, b, &s) == 0 && s == PC_BLOCK_LEASED,
                  "lease block %u not LEASED", b);
            CHECK(c->owner[b] == l && c->pos[b] == j,
                  "block %u owner/pos mismatch", b);
        }
        blocks += l->nblocks;
        for (uint32_t j = 0; j < l->npins; j++) {
            size_t k = pinmap_slot(&w.pins, l->pins[j]);
            distinct += !w.pins.key[k];
            w.pins.key[k] = l->pins[j];
            w.pins.count[k]++;
        }
        pins += l->npins;
    }
    /* the operator pins' locks, like a lease's pins */
    for (size_t i = 0; i < c->nopins; i++) {
        const opin *op = &c->opins[i];
        CHECK(!op->node == !op->pages && op->pages * c->P <= op->n_tokens,
              "operator pin %zu: %zu pages locked", i, op->pages);
        if (!op->node)
            continue;
        size_t k = pinmap_slot(&w.pins, op->node);
        distinct += !w.pins.key[k];
        w.pins.key[k] = op->node;
        w.pins.count[k]++;
    }
    uint32_t in_tab = 0;
    for (uint32_t i = 0; i < c->tab_cap; i++)
        in_tab += c->tab[i] != NULL;
    CHECK(in_tab == c->nleases, "table holds %u leases, heap %u", in_tab,
          c->nleases);
    CHECK(blocks == ps.leased, "leases hold %llu blocks, pool has %llu LEASED",
          (unsigned long long)blocks, (unsigned long long)ps.leased);
    for (uint32_t b = 0; b < c->capacity; b++)
        CHECK(!c->owner[b] || c->owner[b]->blocks[c->pos[b]] == b,
              "stale owner of block %u", b);
    CHECK(pins == c->npins, "pin count %llu, leases hold %llu",
          (unsigned long long)c->npins, (unsigned long long)pins);

    if (c->tier && (rc = pc_tier_check(c->tier)))
        goto out;
    rc = pc_radix_foreach(c->tree, check_node, &w);
    if (rc)
        goto out;
    CHECK(w.pages == ps.cached, "tree has %llu pages, pool %llu CACHED",
          (unsigned long long)w.pages, (unsigned long long)ps.cached);
    CHECK(w.pinned_nodes == distinct, "leases pin %llu nodes, tree has %llu",
          (unsigned long long)distinct, (unsigned long long)w.pinned_nodes);
    /* a by-block hook holds a hash only for what the tree holds */
    for (size_t k = 0; c->seen && k <= c->capacity / 64; k++)
        for (uint64_t m = c->seen[k]; m; m &= m - 1) {
            uint32_t b = (uint32_t)(k * 64 + (size_t)__builtin_ctzll(m));
            pc_block_state s;
            CHECK(b < c->capacity && pc_pool_state(c->pool, b, &s) == 0 &&
                      s == PC_BLOCK_CACHED,
                  "block %u is marked as named to the event hook but not "
                  "cached", b);
        }
out:
    free(w.seen);
    free(w.pins.key);
    free(w.pins.count);
    return rc;
}

/*
 * cache/cache.h - the cache semantics: a radix tree whose pages own blocks of
 * a pool, and the leases through which engines pin and allocate them.
 *
 * Why a room of its own: it needs both the tree (radix/) and the pool
 * (blockpool/), which must not know each other, and it must stay free of any
 * transport so that tests, benchmarks and the RPC server (rpc/) drive exactly
 * the same code.  Dependencies: proto <- radix, blockpool <- cache <- rpc,
 * and blockpool <- gpu <- cache (a cuda pool's device operations).
 *
 * One prompt's life (what the RPC layer exposes one to one):
 *
 *   lookup(ns, prompt, pin) ─► matched m pages, their block ids, lease L
 *   alloc(k, L)             ─► k LEASED blocks owned by L (evicts unpinned pages
 *                              first when the pool is short)
 *   ... engine reads the m cached blocks, computes and writes the k new ...
 *   insert(ns, prompt, ids, L) ─► new pages adopt L's blocks (CACHED);
 *                              duplicates go back to the pool; the reply has
 *                              the canonical id of every page
 *   release(L)              ─► unpin, free L's blocks never inserted
 *
 * A lease that is not named for `lease_ttl_ms` expires: exactly a release.
 *
 * Threading: none; the daemon's event loop owns a cache.  Every function
 * returns 0 or a negative PC_E_* code, and a rejected call changes nothing.
 */
#ifndef PC_CACHE_H
#define PC_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockpool/blockpool.h"
#include "proto/errors.h"
#include "proto/pagehash.h"
#include "proto/stats.h"
#include "radix/radix.h"

typedef struct pc_cache pc_cache;

/* Milliseconds on a monotonic clock; injectable so tests need no sleeps. */
typedef uint64_t (*pc_clock_fn)(void *ctx);

/* The defaults (plain integers: the daemon's knob table prints them). */
#define PC_CACHE_LEASE_TTL_MS_DEFAULT 30000
#define PC_CACHE_MAX_LEASES_DEFAULT 65536
#define PC_CACHE_MAX_PINS_PER_LEASE_DEFAULT 256
#define PC_CACHE_MAX_BLOCKS_PER_LEASE_DEFAULT 65536

typedef struct pc_cache_config {
    pc_pool_config pool;           /* the pool the cache creates and owns    */
    uint64_t lease_ttl_ms;         /* the defaults: PC_CACHE_*_DEFAULT       */
    uint32_t max_leases;
    uint32_t max_pins_per_lease;
    uint32_t max_blocks_per_lease;
    /* Tree nodes (namespace roots included) at most (0: no bound beyond
     * the pool's, about 2 per block): an insert that adds pages and could
     * pass it is refused with PC_E_LIMIT, so that the tree's own memory has
     * a ceiling an operator chose.  Reloadable. */
    uint64_t max_tree_nodes;
    /* Watermarks in free blocks, for pc_cache_maintain(): when free < low,
     * evict until free >= high.  0/0 disables; default 0/0. */
    uint64_t low_watermark, high_watermark;
    /* Which unpinned pages go first when space is needed (radix.h); default
     * PC_POLICY_LRU.  Reloadable (pc_cache_set_limits). */
    pc_radix_policy eviction_policy;
    pc_clock_fn clock;             /* NULL: CLOCK_MONOTONIC_COARSE           */
    void *clock_ctx;
    /* A PC_POOL_CUDA pool's device operations, "cuda" (the runtime) or
     * "fake" (host shared memory standing in for a GPU: tests, CPUs), and
     * the device index; NULL means "cuda".  Ignored for other backends.
     * pc_cache_create registers them with gpu/ before creating the pool. */
    const char *gpu_ops;
    int gpu_device;
    /* The second tier (0: none): pages the pool evicts are copied there
     * first, up to this many bytes (whole blocks); a memory-mapped file
     * under a host pool (tier2_path: a file or a directory; NULL or "":
     * an unnamed file in /var/tmp), page-locked host memory under a cuda
     * pool.  tier2_read_delay_us: a test and demo aid that slows every
     * page a promotion reads (a slow disk).  Not reloadable. */
    uint64_t tier2_bytes;
    const char *tier2_path;
    uint32_t tier2_read_delay_us;
} pc_cache_config;

/* Fill *cfg with the defaults above (the pool part is left zeroed). */
void pc_cache_config_defaults(pc_cache_config *cfg);

/* Create the cache, its pool and its tree (page_tokens from the layout).
 * PC_E_INVAL for bad limits or watermarks (low > high, high > capacity),
 * plus whatever pc_pool_create returns (errno then still holds the OS's
 * cause of a failed system call).  A PC_POOL_CUDA pool also: PC_E_INVAL
 * for an unknown gpu_ops name or "cuda" in a build without CUDA,
 * PC_E_NOENT for no such device; pc_cache_create_why() says which. */
int pc_cache_create(const pc_cache_config *cfg, pc_cache **out);
void pc_cache_destroy(pc_cache *c);

/* Why the last pc_cache_create of this thread failed, in words ("" when it
 * did not say): there is no cache yet to hold a reason. */
const char *pc_cache_create_why(void);

uint64_t pc_cache_lease_ttl_ms(const pc_cache *c); /* the TTL in force */

/* Change the reloadable knobs (TTL, limits, watermarks, eviction policy).  Limits apply to
 * new requests; existing leases keep what they hold. */
int pc_cache_set_limits(pc_cache *c, const pc_cache_config *cfg);

/* Why the last lookup, alloc, insert, release or touch on c was refused,
 * naming the limit and its value or the lease ("max_pins_per_lease (256)
 * reached: ..."): for error replies and logs.  Each of those calls clears
 * it on entry, so after a success it is "" (and INVAL/NOMEM say nothing). */
const char *pc_cache_why(const pc_cache *c);

/* ---- operations ----------------------------------------------------------- */

/* Lookup and insert flags.  PIN: 1, what the int `pin` argument these
 * calls had used to be, so 0/1 callers keep working.  NO_CACHE: a private
 * or one-off prompt: a lookup still returns what is cached but refreshes
 * nothing (recency, frequency, tier 2's LRU), so it keeps no page alive;
 * an insert caches nothing (the lease keeps its blocks until release).
 * NO_COUNT (lookup): warm-up traffic, left out of every hit/miss counter. */
enum { PC_CACHE_PIN = 1, PC_CACHE_NO_CACHE = 2, PC_CACHE_NO_COUNT = 4 };

typedef struct pc_lookup_result {
    size_t tokens;   /* matched tokens (multiple of page_tokens)            */
    size_t pages;    /* = block ids written to blocks[]                     */
    uint64_t lease;  /* the lease holding the pin and/or the allocation     */
    /* With a second tier: pages after the matched ones that tier 2 holds
     * (what pc_cache_promote would bring back), some perhaps on their
     * way already. */
    size_t tier2_pages;
    /* pc_cache_lookup_alloc only: */
    int alloc_status; /* 0, or why the allocation failed                    */
    size_t alloc_n;   /* fresh block ids written (0 when it failed)         */
} pc_lookup_result;

/*
 * Longest cached prefix; block ids go to blocks[0..pages) (room for
 * n_tokens / page_tokens ids).  flags: PC_CACHE_PIN | NO_CACHE | NO_COUNT
 * (above).  With PIN, and at least one page matched, the
 * matched path is locked under `lease` (0 = create a new lease); the pin
 * lasts until release or expiry.  A pin with nothing matched creates no
 * lease unless one was named (then it is only renewed).  A lease named
 * without pin must be live and is renewed.  Limits are checked before the
 * match, so a pin at max_leases fails with PC_E_LIMIT even if nothing would
 * have matched.
 * Errors: PC_E_INVAL, PC_E_LEASE (unknown or expired lease), PC_E_LIMIT (too
 * many leases, or pins on this lease), PC_E_NOMEM.
 */
int pc_cache_lookup(pc_cache *c, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens, unsigned flags,
                    uint64_t lease, uint32_t *blocks, pc_lookup_result *out);

/*
 * pc_cache_lookup, then fresh LEASED blocks for the remaining full pages
 * (n_tokens / page_tokens - pages of them) into fresh[], under the lease
 * that holds the pin (else the named lease, else a new one; out->lease).
 * The matched pages are protected for the length of the call even without
 * pin: the allocation never evicts them, so no id appears both in blocks[]
 * and in fresh[] (when only they could have made room, the allocation
 * fails with PC_E_NOSPACE).  A failed allocation never undoes the lookup
 * or its pin: the call returns 0 with out->alloc_status < 0 (NOSPACE,
 * LIMIT, LEASE, NOMEM) and nothing allocated.  Errors: those of
 * pc_cache_lookup.
 */
int pc_cache_lookup_alloc(pc_cache *c, const void *ns, size_t ns_len,
                          const uint32_t *tokens, size_t n_tokens,
                          unsigned flags, uint64_t lease, uint32_t *blocks,
                          uint32_t *fresh, pc_lookup_result *out);

/*
 * n blocks in state LEASED, owned by *lease (0 on entry = create a lease; its
 * id is written back).  When the free list is short, least-recently-used
 * unpinned pages are evicted first; when even that cannot make room,
 * PC_E_NOSPACE and nothing is evicted or allocated.
 * Errors: PC_E_INVAL, PC_E_LEASE, PC_E_LIMIT (blocks per lease / leases),
 * PC_E_NOSPACE.
 */
int pc_cache_alloc(pc_cache *c, uint32_t n, uint64_t *lease, uint32_t *ids);

typedef struct pc_insert_result {
    size_t cached_tokens;  /* tokens that were already cached               */
    size_t inserted_pages; /* pages that adopted the lease's blocks         */
    size_t freed_blocks;   /* the lease's duplicate blocks returned to pool */
} pc_insert_result;

/*
 * Insert the full pages of tokens with blocks[0..n_tokens/P).  Each block
 * must be LEASED by `lease`, or, for a page that is already cached, the
 * canonical id of that page (what lookup returned); no block twice.  New
 * pages adopt their blocks (LEASED -> CACHED, no longer the lease's).  For
 * cached pages the lease's own blocks are duplicates: they go back to the
 * pool.  canon[0..pages) (when not NULL) receives the canonical id of every
 * page.  Renews the lease.
 * Errors: PC_E_INVAL, PC_E_LEASE, PC_E_PERM (a block the lease does not
 * own), PC_E_RANGE (a block id beyond the pool), PC_E_NOMEM.
 */
int pc_cache_insert(pc_cache *c, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens,
                    const uint32_t *blocks, uint64_t lease, uint32_t *canon,
                    pc_insert_result *out);

/*
 * pc_cache_insert with flags.  PC_CACHE_PIN: the inserted prefix (all its
 * full pages) stays pinned under `lease` (required) until release or
 * expiry, so an
 * engine can insert right after its prefill, let others reuse the pages at
 * once, and still read them safely while it decodes.  The pin is checked
 * against max_pins_per_lease before anything changes (PC_E_LIMIT).
 * PC_E_INVAL for pin without a lease, or with NO_CACHE (which caches
 * nothing: see the flags).  PC_E_RANGE only past 2^32 locks on
 * one path: then the insert is done but not pinned.
 */
int pc_cache_insert_pin(pc_cache *c, const void *ns, size_t ns_len,
                        const uint32_t *tokens, size_t n_tokens,
                        const uint32_t *blocks, uint64_t lease, unsigned flags,
                        uint32_t *canon, pc_insert_result *out);

/*
 * Promotion: bring the tier-2 pages that follow the cached prefix of
 * tokens back into the pool.  Starts one promotion for the longest run of
 * them that no promotion is reading yet and that the pool can make room
 * for (evicting, and so demoting, unpinned pages), under a lease of its
 * own that pins the matched prefix and holds the fresh blocks while they
 * are copied; when the copy is done (pc_cache_poll) the pages are inserted
 * like any others.  Until then no lookup returns them, and a client that
 * goes away changes nothing: the promotion finishes on its own.
 * *job: the promotion to wait for (started now, or one already bringing
 * back the first page), then call again, for the pages after it; 0 when
 * there is nothing (more) to promote: look up now.  *matched_pages (may
 * be NULL): the pages cached in the pool right now.  PC_E_NOSPACE (why
 * says so) when the pool cannot hold even one page; PC_E_INVAL, NOMEM,
 * IO.  Without a second tier: 0, *job = 0.
 */
int pc_cache_promote(pc_cache *c, const void *ns, size_t ns_len,
                     const uint32_t *tokens, size_t n_tokens, uint64_t *job,
                     size_t *matched_pages);

/* Finish every promotion whose copy is done (insert its pages, or drop
 * them if the copy failed) and write their ids to done[0..cap); returns
 * how many (more stay for the next call). */
size_t pc_cache_poll(pc_cache *c, uint64_t *done, size_t cap);

/* A descriptor that becomes readable when a promotion may have finished
 * (-1: none; device tiers are polled: pc_cache_next_deadline_ms says 1 ms
 * while one runs).  Once poll(2) says it is readable, empty it with
 * pc_cache_wait_fd_drain, then call pc_cache_poll (in that order: a
 * promotion that ends in between makes it readable again). */
int pc_cache_wait_fd(const pc_cache *c);
void pc_cache_wait_fd_drain(pc_cache *c);

/* Drop tier 2's pages (all, or those of one namespace) that no promotion
 * is reading; returns how many (0 without a second tier). */
size_t pc_cache_flush_tier2(pc_cache *c, const void *ns, size_t ns_len,
                            bool all);

/* Unpin everything the lease pinned and free its blocks that were never
 * inserted; the lease ends.  PC_E_LEASE if unknown or already ended. */
int pc_cache_release(pc_cache *c, uint64_t lease);

/*
 * Leases belong to whoever made them.  The server says, before each call,
 * for which client identity the calls act (an opaque nonzero tag: a CURVE
 * key, a uid, a connection; 0, the default, is "the host itself", which
 * embedders and tests that never call this keep).  A lease created from
 * then on carries the tag; a lease of another tag is, to every call that
 * names it (lookup, alloc, insert, release, touch), exactly an unknown
 * lease: PC_E_LEASE with the same text, nothing renewed or counted apart,
 * so lease ids cannot be probed across identities.
 */
void pc_cache_set_owner(pc_cache *c, uint64_t owner);
/* The tag a live or expired lease carries; 0 when there is no such lease
 * (for tests and logs: the calls above do the checking). */
uint64_t pc_cache_lease_owner(const pc_cache *c, uint64_t lease);

/* Renew a lease without doing anything else (a heartbeat). */
int pc_cache_touch(pc_cache *c, uint64_t lease);

/* Release every lease whose TTL ran out; returns how many.  Cost: O(log n)
 * per expired lease (a min-heap on the deadline), nothing for live ones. */
size_t pc_cache_expire(pc_cache *c);

/* Milliseconds until the next lease deadline (UINT64_MAX: no lease), so an
 * event loop knows how long it may block; at most 1 while a promotion
 * that must be polled is copying. */
uint64_t pc_cache_next_deadline_ms(pc_cache *c);

/* Watermarks: if free blocks < low, evict unpinned pages (by the eviction policy) until free >= high (or
 * nothing is evictable).  Returns blocks evicted. */
size_t pc_cache_maintain(pc_cache *c);

/* Evict up to n unpinned pages now (admin flush of everything: SIZE_MAX). */
size_t pc_cache_evict(pc_cache *c, size_t n);

/* Admin flush of one namespace: every unpinned page of it goes back to the
 * pool; pinned pages stay.  *evicted gets the count.  PC_E_INVAL/NOMEM. */
int pc_cache_flush_ns(pc_cache *c, const void *ns, size_t ns_len,
                      size_t *evicted);

/* ---- events: what the cache holds, as it changes (KV events) ------------ */

/*
 * A hook told of every change to the set of pages the pool and tier 2
 * hold, so that a publisher (rpc/events.c) can let cluster routers mirror
 * it.  A page is named by its block hash: the low 64 bits of its chained
 * identity (proto/pagehash.h), which covers the namespace and the whole
 * prefix through the page.
 *
 *   STORED   pages [first_page, first_page + n_pages) of a prefix are newly
 *            held by `medium`: inserted (duplicates are not), brought back
 *            by a promotion (pool), or demoted into tier 2
 *   REMOVED  the pages with hashes[0..n_pages) are no longer held by
 *            `medium`: evicted (allocation, watermark, flush, a namespace
 *            quota: those are named from a per-block copy of the chain
 *            value kept while a hook is set, 16 bytes a block; a by-block
 *            hook keeps it itself, below), or dropped
 *            by tier 2 (its LRU, a flush, a failed promotion)
 *   CLEARED  nothing is held anywhere any more (a flush of everything that
 *            left nothing pinned or busy)
 *
 * Every STORED page is later REMOVED or CLEARED, or is still held; a page
 * is never STORED twice in one medium without a REMOVED in between.  A
 * page may be held by both media at once (a promotion copies, tier 2
 * keeps its copy).  Events come in the order of the changes, from inside
 * the call that makes them; the pointers are valid only during the call
 * and fn must not call back into the cache.  Without a hook (the default)
 * nothing is hashed: the cache costs what it did before.
 */
typedef enum pc_cache_event_type {
    PC_CACHE_EV_STORED = 1,
    PC_CACHE_EV_REMOVED = 2,
    PC_CACHE_EV_CLEARED = 3,
} pc_cache_event_type;

typedef struct pc_cache_event {
    pc_cache_event_type type;
    int tier;                /* 1: the pool; 2: the second tier          */
    const char *medium;      /* pc_cache_medium(c, tier)                 */
    const void *ns;          /* STORED: the namespace; REMOVED: it, or   */
    size_t ns_len;           /*   NULL when unknown (a tier-2 drop)      */
    /* STORED: the prefix through the last stored page,
     * (first_page + n_pages) x page_tokens tokens. */
    const uint32_t *tokens;
    uint32_t page_tokens;
    size_t first_page;       /* STORED: page index of the first one      */
    size_t n_pages;          /* STORED, REMOVED                          */
    const uint64_t *hashes;  /* STORED, REMOVED: n_pages block hashes;
                                NULL where blocks names them instead      */
    bool has_parent;         /* STORED: first_page > 0                   */
    uint64_t parent;         /*   the block hash of page first_page - 1  */
    /* By-block hooks only (pc_cache_set_event_fn_by_block), tier 1: */
    const uint32_t *blocks;  /* STORED, REMOVED: the pages' pool blocks  */
    uint32_t parent_block;   /* STORED: page first_page - 1's block, whose
                                STORED the hook had; PC_CACHE_EV_NO_BLOCK:
                                chain on from start                     */
    pc_page_hash start;      /*   h[first_page - 1] (the namespace's h[-1]
                                when first_page is 0)                   */
} pc_cache_event;

#define PC_CACHE_EV_NO_BLOCK UINT32_MAX

typedef void (*pc_cache_event_fn)(void *ctx, const pc_cache_event *ev);

/* Set (or with NULL remove) the hook.  Set it on an empty cache, or the
 * consumer will not know what was held before (it is not replayed). */
void pc_cache_set_event_fn(pc_cache *c, pc_cache_event_fn fn, void *ctx);

/*
 * The same, for a hook that hashes pool pages itself, on a thread of its
 * own (rpc/events.c): the caller's thread then pays neither the chain
 * hash of an insert's new pages nor a 16-byte copy of it per block.  A
 * tier-1 STORED comes with hashes NULL and blocks[] (the new pages' pool
 * blocks) instead, and parent_block (the block of the page before, whose
 * STORED the hook had: the chain's value there is the one it kept) or,
 * when that is PC_CACHE_EV_NO_BLOCK, start (the chain's value there; the
 * namespace's h[-1] for a prefix's first page); the hook keeps each
 * block's 128-bit chain value until the block's REMOVED.  A tier-1
 * REMOVED of an eviction comes with blocks[] when the hook had every one
 * of its pages stored; else, and for pages demoted into tier 2, with
 * hashes computed here (the cache then rehashes the prefix on the
 * caller's thread, as it does for a prefix cached before the hook was
 * set).  Tier-2 events are as above.  The cache keeps one bit a block;
 * setting a different hook (or context) forgets them all.  Without memory
 * for the bits the hook is set as by pc_cache_set_event_fn.
 */
void pc_cache_set_event_fn_by_block(pc_cache *c, pc_cache_event_fn fn,
                                    void *ctx);

/* The medium names of events: tier 1 (the pool) "GPU" for a cuda pool,
 * "CPU" for a host pool; tier 2 "CPU" (page-locked host memory under a
 * cuda pool) or "DISK" (the file tier under a host pool).  NULL for a tier
 * that does not exist. */
const char *pc_cache_medium(const pc_cache *c, int tier);

/* Pages the hook could not name (no memory to assemble their prefix or
 * hash it): a consumer may then hold stale pages.  0 in practice. */
uint64_t pc_cache_events_lost(const pc_cache *c);

/* Flush everything: evict every unpinned page of the pool (not into tier
 * 2) that no namespace reserve holds back, and drop every idle page of
 * tier 2.  With a hook: one CLEARED when nothing is left in either, else
 * REMOVED for what went.  *evicted and
 * *tier2 (may be NULL) get the counts. */
void pc_cache_flush_all(pc_cache *c, size_t *evicted, size_t *tier2);

/* (Tests: pc_cache_list_hashes in cache/inspect.h.) */

typedef struct pc_cache_stats {
    pc_radix_stats tree;
    pc_pool_stats pool;
    uint64_t leases;           /* live                                     */
    uint64_t leases_created, leases_released, leases_expired;
    uint64_t pins;             /* live pins over all leases                */
    uint64_t evictions_alloc;  /* pages evicted to satisfy alloc           */
    uint64_t evictions_watermark;
    uint64_t nospace;          /* allocs refused for lack of space         */
} pc_cache_stats;

void pc_cache_stats_get(const pc_cache *c, pc_cache_stats *out);

/* Every counter of the tree, the pool and the cache, by dotted name, each
 * named once by the layer that owns it (proto/stats.h). */
void pc_cache_stats_visit(const pc_cache *c, pc_stat_fn fn, void *ctx);

/* What an engine must know to use the pool (the hello reply). */
typedef struct pc_cache_desc {
    pc_pool_layout layout;
    uint32_t capacity;     /* blocks                                     */
    const char *backend;   /* "host", "none", ...                        */
    const char *shm_name;  /* host backend: the object to map; else NULL */
    uint64_t shm_bytes;
    bool shm_reclaimed;    /* a dead daemon's pool of that name was replaced */
    /* cuda backend only (else device_ops NULL): what an engine imports. */
    const char *device_ops;                /* "cuda" or "fake"           */
    const char *tier2;     /* "file", "host" (page-locked) or NULL: none  */
    uint64_t tier2_pages;  /* its capacity                                */
    uint8_t device_uuid[16];               /* PC_GPU_UUID_BYTES           */
    uint8_t ipc_handle[128];               /* PC_GPU_HANDLE_BYTES         */
    uint64_t lease_ttl_ms; /* in force now                               */
    pc_radix_policy policy;
} pc_cache_desc;

void pc_cache_describe(const pc_cache *c, pc_cache_desc *out);

/* An eviction policy's name ("lru", "auto", ...); NULL past the last, so
 * that a config parser can list them. */
const char *pc_cache_policy_name(int policy);

/*
 * Operator-pinned prefixes (a system prompt that must never be evicted):
 * each prefix is pinned as far as it is cached, and further as engines
 * insert more of it (the daemon cannot compute KV: an engine's first
 * request caches it), until release by the next call.  Replaces the
 * previous set, all or nothing.  PC_E_NOSPACE (pc_cache_why says how many
 * pages against the capacity) when their distinct full pages would not
 * fit in the pool; PC_E_INVAL (a namespace over 256 bytes, no full page),
 * PC_E_NOMEM.  n = 0 unpins them all.
 */
typedef struct pc_cache_pin_spec {
    const void *ns;
    size_t ns_len;
    const uint32_t *tokens;
    size_t n_tokens;
} pc_cache_pin_spec;

int pc_cache_set_operator_pins(pc_cache *c, const pc_cache_pin_spec *v,
                               size_t n);

/*
 * Namespace quotas and reserved minimums, by pattern (cache/quota.c has
 * the picture).  Each rule: an fnmatch(3) glob over the namespace as text,
 * a quota (max_pages; 0: none: an insert past it evicts the namespace's
 * own least recently used unpinned pages) and a reserve (min_pages;
 * eviction for room never takes the namespace below it).  A namespace
 * takes the first rule it matches, when first inserted into (or now, if
 * cached).  Replaces the rules, all or nothing: PC_E_INVAL (a bad rule,
 * a reserve above its quota), PC_E_RANGE, PC_E_NOSPACE when the reserves
 * of the namespaces cached now (and one per rule no namespace matches
 * yet) exceed the pool; pc_cache_why says which.  A namespace that comes
 * later gets what is left of its reserve (stats quota.reserve_trimmed).
 * Quota evictions are not demoted to tier 2.  n = 0 removes every limit.
 */
typedef struct pc_cache_quota {
    const char *pattern;
    uint64_t max_pages, min_pages;
} pc_cache_quota;

int pc_cache_set_ns_quotas(pc_cache *c, const pc_cache_quota *v, size_t n);

/* Namespace priorities for the priority eviction policy (radix.h): reserve
 * room for n first (the one step that can fail), then clear and set, which
 * cannot fail once reserved. */
int pc_cache_reserve_ns_priorities(pc_cache *c, uint32_t n);
void pc_cache_clear_ns_priorities(pc_cache *c);
int pc_cache_set_ns_priority(pc_cache *c, const void *ns, size_t ns_len,
                             int32_t prio);

/*
 * pc_radix_check + pc_pool_check + the cross-checks: every CACHED block is
 * the block of exactly one tree page and every tree page's block is CACHED;
 * every LEASED block belongs to exactly one lease and every lease block is
 * LEASED; every pin of a lease is a locked node, and each node's own lock
 * count equals the pins that leases hold on it; the expiry heap is a heap
 * over exactly the live leases; promotions' leases (owner 0) count like leases, and
 * hold exactly their blocks and tier-2 slots; tier 2's index, LRU and
 * free list agree.  0 or PC_E_CORRUPT (reason on stderr).
 */
int pc_cache_check(const pc_cache *c);

#endif /* PC_CACHE_H */

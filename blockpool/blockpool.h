/*
 * blockpool/blockpool.h - the pool of fixed-size KV blocks that engines share.
 *
 * The pool decides nothing about prefixes: it owns block ids 0..capacity-1,
 * tracks each block's state and, through a backend, the memory behind them.
 *
 *   FREE ──alloc──► LEASED ──cache──► CACHED
 *    ▲                │                  │
 *    └─────free───────┴──────free────────┘
 *
 * Block layout (every engine must address a block the same way):
 *
 *   block = [layer 0: K | V][layer 1: K | V] ... [layer L-1: K | V]
 *   K or V of one layer = [token 0 .. page_tokens-1][kv_head][head_dim] dtype
 *
 *   block_bytes = 2 x layers x kv_heads x head_dim x page_tokens x dtype_bytes
 *
 * Threading: none; one thread owns a pool.  Errors: 0 or negative PC_E_*.
 */
#ifndef PC_BLOCKPOOL_H
#define PC_BLOCKPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/errors.h"
#include "proto/limits.h"
#include "proto/stats.h"

/* ---- layout --------------------------------------------------------------- */

typedef enum pc_dtype {
    PC_DTYPE_FP32 = 0,
    PC_DTYPE_FP16,
    PC_DTYPE_BF16,
    PC_DTYPE_FP8,
    PC_DTYPE_INT8,
    PC_DTYPE_COUNT
} pc_dtype;

/* "fp16" -> PC_DTYPE_FP16; PC_E_INVAL for an unknown name. */
int pc_dtype_parse(const char *name, pc_dtype *out);
const char *pc_dtype_name(pc_dtype d);   /* NULL for an invalid value */
uint32_t pc_dtype_bytes(pc_dtype d);     /* 0 for an invalid value    */

typedef struct pc_pool_layout {
    uint32_t layers, kv_heads, head_dim, page_tokens;
    pc_dtype dtype;
    /* derived by pc_pool_layout_init */
    uint64_t dtype_bytes;
    uint64_t kv_bytes;    /* one layer's K (or V) for a whole page         */
    uint64_t token_bytes; /* 2 x layers x kv_heads x head_dim x dtype_bytes */
    uint64_t block_bytes; /* token_bytes x page_tokens                      */
} pc_pool_layout;

/* Fill *l from the model shape.  PC_E_INVAL for a zero dimension or an
 * invalid dtype, PC_E_RANGE when a size overflows 64 bits or page_tokens is
 * beyond PC_PAGE_TOKENS_MAX (proto/limits.h). */
int pc_pool_layout_init(pc_pool_layout *l, uint32_t layers, uint32_t kv_heads,
                        uint32_t head_dim, uint32_t page_tokens, pc_dtype dtype);

/* Byte offset of layer `layer`'s K (kv = 0) or V (kv = 1) inside a block;
 * UINT64_MAX when out of range. */
uint64_t pc_pool_layout_offset(const pc_pool_layout *l, uint32_t layer, int kv);

/* ---- pool ----------------------------------------------------------------- */

typedef enum pc_block_state {
    PC_BLOCK_FREE = 0,
    PC_BLOCK_LEASED,
    PC_BLOCK_CACHED,
} pc_block_state;

typedef enum pc_pool_backend {
    PC_POOL_HOST = 0, /* POSIX shared memory that other processes map      */
    PC_POOL_NONE,     /* index only: ids are the engine's own handles       */
    PC_POOL_CUDA,     /* one device allocation over CUDA IPC: registered by
                         gpu/ (pc_pool_register_backend), else refused     */
} pc_pool_backend;

#define PC_POOL_MAX_BLOCKS ((uint64_t)UINT32_MAX) /* ids are uint32_t   */
#define PC_POOL_SHM_NAME_MAX 200

typedef struct pc_pool_config {
    pc_pool_layout layout;     /* from pc_pool_layout_init                 */
    pc_pool_backend backend;
    uint64_t capacity_blocks;  /* one of these two; blocks wins if both    */
    uint64_t capacity_bytes;   /* rounded down to whole blocks             */
    /* host: the POSIX shm name ("/name"); NULL or "" picks an unpredictable
     * one, "/prefixcache-<euid>-<16 random hex digits>".                  */
    const char *shm_name;
    /* host: the object's permission bits, set with fchmod whatever the
     * umask (0: 0600; at most 0777); with shm_chgrp, its group becomes
     * shm_gid first (fchown), so that engines under another uid in that
     * group can map the pool.                                             */
    uint32_t shm_mode;
    bool shm_chgrp;
    uint32_t shm_gid;
} pc_pool_config;

typedef struct pc_pool pc_pool;

typedef struct pc_pool_stats {
    uint64_t capacity; /* blocks                                           */
    uint64_t free, leased, cached;
    uint64_t allocs, frees; /* successful block transitions                */
    uint64_t bytes;    /* capacity x block_bytes mapped (not resident); 0
                          for the "none" backend, which holds no memory   */
} pc_pool_stats;

/*
 * Create a pool.  The host backend creates the shm object, sizes it and maps
 * it without touching a page (a 64 GiB pool starts instantly on a small
 * machine; pages are faulted in as engines write them), and holds an
 * flock on it until pc_pool_destroy: the lock says the pool is alive.
 * An object of the same name that belongs to our euid and that nobody
 * locks is a dead creator's (kill -9, a crash): it is unlinked and the pool
 * created afresh, all zero (pc_pool_shm_reclaimed() then says true).
 * Errors: PC_E_INVAL (bad layout/backend, name too long or not starting with
 * '/'), PC_E_RANGE (fewer than 2 blocks, more than 2^32-1, size overflow,
 * shm_mode beyond 0777), PC_E_BUSY (a live pool of that name: its lock is
 * held), PC_E_PERM (an object of that name belongs to another user, or is
 * not a plain shm object: never touched; pc_pool_shm_owner() tells whose),
 * PC_E_IO, PC_E_NOMEM.  After a system call failed, errno still holds its
 * cause when this returns (for the caller's message).
 */
int pc_pool_create(const pc_pool_config *cfg, pc_pool **out);

/* Unmap and unlink (host), free everything.  NULL is a no-op. */
void pc_pool_destroy(pc_pool *p);

const pc_pool_layout *pc_pool_layout_get(const pc_pool *p);
pc_pool_backend pc_pool_backend_get(const pc_pool *p);
/* "host", "none", "cuda"; NULL for an invalid value. */
const char *pc_pool_backend_name(pc_pool_backend b);
uint32_t pc_pool_capacity(const pc_pool *p);

/* Allocate n blocks (FREE -> LEASED), all or nothing: PC_E_NOSPACE and no
 * change when fewer than n are free.  LIFO: the most recently freed block is
 * handed out first (its pages are warm). */
int pc_pool_alloc(pc_pool *p, uint32_t n, uint32_t *ids);

/* LEASED -> CACHED (a tree page now owns it).  PC_E_RANGE for an unknown id,
 * PC_E_STATE when it is not LEASED. */
int pc_pool_cache(pc_pool *p, uint32_t id);

/* LEASED or CACHED -> FREE.  PC_E_RANGE for an unknown id, PC_E_STATE for a
 * block that is already FREE (double free).  Never corrupts the free list. */
int pc_pool_free(pc_pool *p, uint32_t id);

/* State of a block; PC_E_RANGE for an unknown id. */
int pc_pool_state(const pc_pool *p, uint32_t id, pc_block_state *out);

void pc_pool_stats_get(const pc_pool *p, pc_pool_stats *out);
/* The same, and the block size, by name (pool.*). */
void pc_pool_stats_visit(const pc_pool *p, pc_stat_fn fn, void *ctx);

/* Verify counts (free + leased + cached = capacity), the free list (every
 * entry FREE, no duplicates, exactly the FREE blocks) and the backend.
 * 0, or PC_E_CORRUPT after printing the first violation to stderr. */
int pc_pool_check(const pc_pool *p);

/* ---- memory --------------------------------------------------------------- */

/* Base of the pool: the mapped address (host), the device pointer (cuda),
 * NULL for "none". */
void *pc_pool_base(const pc_pool *p);

/* Address of block id (host; a device pointer for cuda); NULL for "none"
 * or an unknown id. */
void *pc_pool_block_ptr(const pc_pool *p, uint32_t id);

/* Host backend: the shm name and size other processes map; PC_E_INVAL for
 * other backends. */
int pc_pool_shm_info(const pc_pool *p, const char **name, uint64_t *bytes);

/* Host backend: true when create replaced a dead creator's object. */
bool pc_pool_shm_reclaimed(const pc_pool *p);

/* The uid owning the shm object shm_name (for messages): 0, PC_E_NOENT,
 * PC_E_INVAL (a bad name), PC_E_IO. */
int pc_pool_shm_owner(const char *shm_name, uint32_t *uid);

/* ---- backends from other rooms ------------------------------------------ */

/* A backend whose memory lives in a room above blockpool/ (gpu/ for
 * PC_POOL_CUDA): blockpool/ includes nothing of it, the room registers its
 * functions at start-up instead.  open reserves `bytes` for the pool and
 * gives the base address that blocks are carved from (block id at
 * base + id x block_bytes, the same layout as host) and a state of its
 * own; close releases both.  The pool keeps the state for the backend
 * (pc_pool_backend_state), e.g. to export a handle for the allocation. */
typedef struct pc_pool_extern_ops {
    const char *name;
    int (*open)(const pc_pool_config *cfg, uint64_t bytes, void **base,
                void **state);
    void (*close)(void *state, void *base, uint64_t bytes);
} pc_pool_extern_ops;

/* Registers ops for backend b (only PC_POOL_CUDA can be registered; NULL
 * unregisters).  Call before creating pools of b, from one thread; pools
 * already created keep the ops they were created with.  PC_E_INVAL for
 * another backend or ops without open/close. */
int pc_pool_register_backend(pc_pool_backend b, const pc_pool_extern_ops *ops);

/* The state a registered backend's open returned; NULL for other pools. */
void *pc_pool_backend_state(const pc_pool *p);

/* Map an existing host pool read-write from another process (engines, the
 * client library, tests).  *base must later go to pc_pool_unmap().
 * PC_E_NOENT (no such pool), PC_E_PERM (its mode or group does not let this
 * user map it), PC_E_RANGE (smaller than bytes), PC_E_INVAL, PC_E_IO. */
int pc_pool_map(const char *shm_name, uint64_t bytes, void **base);
void pc_pool_unmap(void *base, uint64_t bytes);

#endif /* PC_BLOCKPOOL_H */

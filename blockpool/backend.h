/* blockpool/backend.h - private: the small interface behind the pool's memory. */
#ifndef PC_BLOCKPOOL_BACKEND_H
#define PC_BLOCKPOOL_BACKEND_H

#include "blockpool/blockpool.h"

/* One backend = where the bytes of the blocks live.  The pool's bookkeeping
 * (states, free list) is the same for all of them. */
typedef struct pc_pool_ops {
    const char *name;
    /* Reserve `bytes` for the pool; fills p->base / backend fields. */
    int (*open)(pc_pool *p, const pc_pool_config *cfg, uint64_t bytes);
    void (*close)(pc_pool *p);
} pc_pool_ops;

struct pc_pool {
    pc_pool_layout layout;
    const pc_pool_ops *ops;
    pc_pool_backend backend;
    uint32_t capacity;
    uint8_t *state;      /* pc_block_state per block                   */
    uint32_t *stack;     /* free list: LIFO stack of ids               */
    uint32_t top;        /* entries on the stack = free blocks         */
    uint64_t n_leased, n_cached, allocs, frees;
    /* memory */
    void *base;
    uint64_t bytes;
    int fd;              /* host: the object, flock'ed while we live   */
    bool reclaimed;      /* host: a dead creator's object was replaced */
    char shm_name[PC_POOL_SHM_NAME_MAX + 1];
    /* a registered backend (pc_pool_register_backend) */
    const pc_pool_extern_ops *ext;
    void *ext_state;
};

extern const pc_pool_ops pc_pool_host_ops;

#endif

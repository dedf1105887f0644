/*
 * gpu/pool.h - the PC_POOL_CUDA backend of blockpool/, on any device
 * operations (the CUDA runtime, or the fake device on a CPU).
 *
 *   cache/ or the daemon, at start-up:
 *       pc_gpu_pool_register(pc_gpu_ops_get("cuda" | "fake"), dev)
 *         └─► pc_pool_register_backend(PC_POOL_CUDA, ...)   (blockpool/)
 *   pc_pool_create(backend = PC_POOL_CUDA)
 *         └─► ops->alloc(dev, capacity x block_bytes): ONE allocation
 *
 *   one device allocation, carved like the host pool:
 *   ┌─────────┬─────────┬─────────┬─────┬──────────────┐
 *   │ block 0 │ block 1 │ block 2 │ ... │ block cap-1  │   block id at
 *   └─────────┴─────────┴─────────┴─────┴──────────────┘   id x block_bytes
 *   ▲ base: pc_pool_base(); pc_gpu_pool_handle() exports it
 *
 * An engine imports the one handle (once per process) and adds block
 * offsets: legacy CUDA IPC maps whole allocations, so a handle per block
 * would cost an open per block and could not be carved.  Why blockpool/
 * does not include this: dependencies point one way (blockpool <- gpu <-
 * cache), so gpu/ registers itself instead.
 */
#ifndef PC_GPU_POOL_H
#define PC_GPU_POOL_H

#include "blockpool/blockpool.h"
#include "gpu/dev.h"

/* Pools created with PC_POOL_CUDA from now on allocate through ops on
 * device dev; ops NULL unregisters.  PC_E_NOENT for a device ops does not
 * have; PC_E_INVAL for ops missing what a pool needs. */
int pc_gpu_pool_register(const pc_gpu_ops *ops, int dev);

/* The handle of p's allocation (for hello), its device's UUID (may be
 * NULL) and the device operations it lives on (may be NULL).  PC_E_INVAL
 * for a pool of another backend. */
int pc_gpu_pool_handle(const pc_pool *p, pc_gpu_handle *h, pc_gpu_uuid *uuid,
                       const pc_gpu_ops **ops);

/* The device operations and device index p's allocation lives on (what a
 * tier under the pool copies with).  PC_E_INVAL for another backend. */
int pc_gpu_pool_device(const pc_pool *p, const pc_gpu_ops **ops, int *dev);

#endif

/*
 * gpu/pool.c - blockpool's PC_POOL_CUDA backend over pc_gpu_ops (the
 * picture is in gpu/pool.h).  Each pool keeps the ops and device it was
 * created with, so registering other ops later does not strand a pool's
 * free.
 */
#include "gpu/pool.h"

#include <stdlib.h>

typedef struct gpu_pool {
    const pc_gpu_ops *ops;
    int dev;
} gpu_pool;

static const pc_gpu_ops *g_ops;
static int g_dev;

static int gpu_open(const pc_pool_config *cfg, uint64_t bytes, void **base,
                    void **state)
{
    (void)cfg; /* the layout is the pool's; nothing device-specific yet */
    if (!g_ops)
        return PC_E_INVAL;
    gpu_pool *g = malloc(sizeof(*g));
    if (!g)
        return PC_E_NOMEM;
    g->ops = g_ops;
    g->dev = g_dev;
    int rc = g->ops->alloc(g->dev, bytes, base);
    if (rc) {
        free(g);
        return rc;
    }
    *state = g;
    return 0;
}

static void gpu_close(void *state, void *base, uint64_t bytes)
{
    (void)bytes;
    gpu_pool *g = state;
    if (g)
        (void)g->ops->free(base); /* nothing a destroy could do with a code */
    free(g);
}

static const pc_pool_extern_ops gpu_pool_ops = {"cuda", gpu_open, gpu_close};

int pc_gpu_pool_register(const pc_gpu_ops *ops, int dev)
{
    if (!ops) {
        g_ops = NULL;
        return pc_pool_register_backend(PC_POOL_CUDA, NULL);
    }
    if (!ops->alloc || !ops->free || !ops->export_handle || !ops->device_uuid)
        return PC_E_INVAL;
    pc_gpu_uuid u;
    int rc = ops->device_uuid(dev, &u); /* refuse a device it does not have */
    if (rc)
        return rc;
    g_ops = ops;
    g_dev = dev;
    return pc_pool_register_backend(PC_POOL_CUDA, &gpu_pool_ops);
}

int pc_gpu_pool_handle(const pc_pool *p, pc_gpu_handle *h, pc_gpu_uuid *uuid,
                       const pc_gpu_ops **ops)
{
    if (!p || !h || pc_pool_backend_get(p) != PC_POOL_CUDA)
        return PC_E_INVAL;
    gpu_pool *g = pc_pool_backend_state(p);
    if (!g)
        return PC_E_INVAL;
    int rc = g->ops->export_handle(pc_pool_base(p), h);
    if (!rc && uuid)
        rc = g->ops->device_uuid(g->dev, uuid);
    if (!rc && ops)
        *ops = g->ops;
    return rc;
}

int pc_gpu_pool_device(const pc_pool *p, const pc_gpu_ops **ops, int *dev)
{
    if (!p || pc_pool_backend_get(p) != PC_POOL_CUDA)
        return PC_E_INVAL;
    const gpu_pool *g = pc_pool_backend_state(p);
    if (!g)
        return PC_E_INVAL;
    *ops = g->ops;
    *dev = g->dev;
    return 0;
}

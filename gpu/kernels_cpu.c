/*
 * gpu/kernels_cpu.c - every kernel of gpu/kernels.h as the sequential loop
 * its GPU grid runs, for the tests and for anything without a GPU.
 *
 *   GPU (kernels.cu)                      CPU (here)
 *   thread u of the grid-stride loop  ->  for (u = 0; u < units; u++)
 *   CUDA block per quantization group ->  for (grp = 0; grp < groups; grp++)
 *     threads reduce amax                    for j: amax = pc_gpu_amax_step
 *     thread 0: scale                        scale = pc_gpu_scale
 *     threads quantize                       for j: pc_gpu_quantize
 *
 * Each unit or element goes through the same PC_HD functions in the same
 * order as on the GPU (the amax is a max, exact in any order), so the bytes
 * written are the same on both; only the copy width differs (the GPU moves
 * w bytes with one vector access, this moves them with memcpy), which
 * cannot change a byte.
 *
 * Unlike the GPU, the CPU can read the ids before writing anything, so an
 * id out of range refuses the whole call (PC_E_RANGE) instead of skipping
 * a unit.
 */
#include <stdint.h>
#include <string.h>

#include "blockpool/blockpool.h"
#include "gpu/kernels.h"
#include "gpu/kernels_int.h"

int pc_gpu_geom_check(const pc_gpu_geom *g)
{
    if (!g || !g->layers || !g->kv_heads || !g->head_dim || !g->page_tokens)
        return PC_E_INVAL;
    if (g->elem_bytes != 1 && g->elem_bytes != 2 && g->elem_bytes != 4)
        return PC_E_INVAL;
    /* Every product below stays within 64 bits once block x capacity does:
     * each factor is at most 2^32, so check step by step. */
    uint64_t x = (uint64_t)g->page_tokens * g->kv_heads; /* < 2^64 */
    if (x > UINT64_MAX / g->head_dim)
        return PC_E_RANGE;
    x *= g->head_dim;
    if (x > UINT64_MAX / (8u * g->elem_bytes)) /* x 2 x elem_bytes, with slack */
        return PC_E_RANGE;
    x *= 2u * (uint64_t)g->elem_bytes;
    if (x > UINT64_MAX / g->layers)
        return PC_E_RANGE;
    x *= g->layers; /* block_bytes */
    if (g->capacity && x > UINT64_MAX / g->capacity)
        return PC_E_RANGE;
    return 0;
}

int pc_gpu_geom_from_layout(const struct pc_pool_layout *l, uint64_t capacity,
                            pc_gpu_geom *out)
{
    if (!l || !out || l->dtype_bytes == 0 || l->dtype_bytes > 4)
        return PC_E_INVAL;
    pc_gpu_geom g = {
        .layers = l->layers, .kv_heads = l->kv_heads, .head_dim = l->head_dim,
        .page_tokens = l->page_tokens, .elem_bytes = (uint32_t)l->dtype_bytes,
        .capacity = capacity,
    };
    int rc = pc_gpu_geom_check(&g);
    if (rc)
        return rc;
    *out = g;
    return 0;
}

int pc_gpu_check_call(const pc_gpu_geom *g, int kind, uint32_t n, uint32_t layer, int q,
                      int t, const void *const *ptrs, int nptrs)
{
    int rc = pc_gpu_geom_check(g);
    if (rc)
        return rc;
    if (kind != PC_GPU_CALL_PAGED && layer >= g->layers)
        return PC_E_INVAL;
    if (kind == PC_GPU_CALL_QUANT &&
        (g->elem_bytes != 1 || (q != PC_GPU_Q_FP8 && q != PC_GPU_Q_INT8) ||
         (t != PC_GPU_F32 && t != PC_GPU_F16 && t != PC_GPU_BF16)))
        return PC_E_INVAL;
    /* The unit counts of the loops: n x 2 x kv_bytes (x layers).  Contiguous
     * buffers of a quantized call hold up to 4-byte elements: x 4. */
    uint64_t per = 2u * pc_gpu_kv_bytes(g) * (kind == PC_GPU_CALL_QUANT ? 4u : 1u);
    if (kind == PC_GPU_CALL_PAGED)
        per *= g->layers; /* block_bytes: checked by pc_gpu_geom_check */
    if (n && per > UINT64_MAX / n)
        return PC_E_RANGE;
    if (n)
        for (int k = 0; k < nptrs; k++)
            if (!ptrs[k])
                return PC_E_INVAL;
    return 0;
}

static int ids_below(const uint32_t *ids, uint32_t n, uint64_t limit)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] >= limit)
            return PC_E_RANGE;
    return 0;
}

/* gather (to_pool 0) and scatter (to_pool 1): one loop, one map. */
static int copy_cpu(const pc_gpu_geom *g, uint8_t *pool, const uint32_t *ids, uint32_t n,
                    uint32_t layer, uint8_t *buf_k, uint8_t *buf_v, int to_pool)
{
    const void *ptrs[] = {pool, ids, buf_k, buf_v};
    int rc = pc_gpu_check_call(g, PC_GPU_CALL_COPY, n, layer, 0, 0, ptrs, 4);
    if (rc || n == 0)
        return rc;
    if ((rc = ids_below(ids, n, g->capacity)))
        return rc;
    uint64_t kvb = pc_gpu_kv_bytes(g);
    uint32_t w = pc_gpu_unit_bytes(kvb, (uintptr_t)pool | (uintptr_t)buf_k | (uintptr_t)buf_v);
    uint64_t units = 2u * (uint64_t)n * (kvb / w);
    for (uint64_t u = 0; u < units; u++) {
        uint64_t po, bo;
        uint8_t *b = pc_gpu_gather_map(g, ids, n, layer, w, u, &po, &bo) ? buf_v : buf_k;
        if (to_pool)
            memcpy(pool + po, b + bo, w);
        else
            memcpy(b + bo, pool + po, w);
    }
    return 0;
}

int pc_gpu_gather_cpu(const pc_gpu_geom *g, const void *pool, const uint32_t *ids,
                      uint32_t n, uint32_t layer, void *dst_k, void *dst_v)
{
    /* The cast drops const only for the shared loop, which reads the pool
     * when to_pool is 0. */
    return copy_cpu(g, (uint8_t *)(uintptr_t)pool, ids, n, layer, dst_k, dst_v, 0);
}

int pc_gpu_scatter_cpu(const pc_gpu_geom *g, void *pool, const uint32_t *ids, uint32_t n,
                       uint32_t layer, const void *src_k, const void *src_v)
{
    return copy_cpu(g, pool, ids, n, layer, (uint8_t *)(uintptr_t)src_k,
                    (uint8_t *)(uintptr_t)src_v, 1);
}

static int paged_cpu(const pc_gpu_geom *g, uint8_t *pool, const uint32_t *pool_ids,
                     const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                     uint8_t *const *kc, uint8_t *const *vc, int to_pool)
{
    const void *ptrs[] = {pool, pool_ids, paged_ids, kc, vc};
    int rc = pc_gpu_check_call(g, PC_GPU_CALL_PAGED, n, 0, 0, 0, ptrs, 5);
    if (rc || n == 0)
        return rc;
    if ((rc = ids_below(pool_ids, n, g->capacity)) || (rc = ids_below(paged_ids, n, paged_blocks)))
        return rc;
    uint64_t kvb = pc_gpu_kv_bytes(g);
    if (paged_blocks > UINT64_MAX / kvb)
        return PC_E_RANGE;
    uint64_t addrs = (uintptr_t)pool;
    for (uint32_t l = 0; l < g->layers; l++) {
        if (!kc[l] || !vc[l])
            return PC_E_INVAL;
        addrs |= (uintptr_t)kc[l] | (uintptr_t)vc[l];
    }
    uint32_t w = pc_gpu_unit_bytes(kvb, addrs);
    uint64_t units = (uint64_t)n * g->layers * 2u * (kvb / w);
    for (uint64_t u = 0; u < units; u++) {
        uint64_t po, qo;
        uint32_t l, kv;
        pc_gpu_paged_map(g, pool_ids, paged_ids, w, u, &po, &l, &kv, &qo);
        uint8_t *c = kv ? vc[l] : kc[l];
        if (to_pool)
            memcpy(pool + po, c + qo, w);
        else
            memcpy(c + qo, pool + po, w);
    }
    return 0;
}

int pc_gpu_pool_to_paged_cpu(const pc_gpu_geom *g, const void *pool, const uint32_t *pool_ids,
                             const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                             void *const *k_caches, void *const *v_caches)
{
    return paged_cpu(g, (uint8_t *)(uintptr_t)pool, pool_ids, paged_ids, n, paged_blocks,
                     (uint8_t *const *)k_caches, (uint8_t *const *)v_caches, 0);
}

int pc_gpu_paged_to_pool_cpu(const pc_gpu_geom *g, void *pool, const uint32_t *pool_ids,
                             const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                             const void *const *k_caches, const void *const *v_caches)
{
    /* Only read through here (to_pool 1); the cast shares the loop. */
    return paged_cpu(g, pool, pool_ids, paged_ids, n, paged_blocks,
                     (uint8_t *const *)(uintptr_t)k_caches,
                     (uint8_t *const *)(uintptr_t)v_caches, 1);
}

/* The quantized calls' checks, ids included: 0 to go on, 1 when n is 0
 * (nothing to do), or PC_E_*. */
static int quant_args(const pc_gpu_geom *g, pc_gpu_qfmt q, pc_gpu_elem t, const uint32_t *ids,
                      uint32_t n, uint32_t layer, const void *pool, const void *scales,
                      const void *buf_k, const void *buf_v)
{
    const void *ptrs[] = {pool, scales, ids, buf_k, buf_v};
    int rc = pc_gpu_check_call(g, PC_GPU_CALL_QUANT, n, layer, (int)q, (int)t, ptrs, 5);
    if (rc)
        return rc;
    return n == 0 ? 1 : ids_below(ids, n, g->capacity);
}

int pc_gpu_store_quant_cpu(const pc_gpu_geom *g, pc_gpu_qfmt q, void *pool, float *scales,
                           const uint32_t *ids, uint32_t n, uint32_t layer, pc_gpu_elem t,
                           const void *src_k, const void *src_v)
{
    int rc = quant_args(g, q, t, ids, n, layer, pool, scales, src_k, src_v);
    if (rc)
        return rc < 0 ? rc : 0;
    uint64_t kve = pc_gpu_kv_elems(g), m = (uint64_t)g->page_tokens * g->head_dim;
    uint64_t groups = (uint64_t)n * 2u * g->kv_heads;
    for (uint64_t grp = 0; grp < groups; grp++) {
        uint64_t i;
        uint32_t kv, h;
        pc_gpu_group_of(g, grp, &i, &kv, &h);
        const void *src = kv ? src_v : src_k;
        uint64_t base = i * kve;
        float amax = 0.0f;
        for (uint64_t j = 0; j < m; j++)
            amax = pc_gpu_amax_step(amax, pc_gpu_load(src, t, base + pc_gpu_group_elem(g, h, j)));
        float s = pc_gpu_scale(amax, q);
        scales[pc_gpu_scale_idx(g, ids[i], layer, kv, h)] = s;
        uint8_t *dst = (uint8_t *)pool + pc_gpu_pool_off(g, ids[i], layer, kv);
        for (uint64_t j = 0; j < m; j++) {
            uint64_t e = pc_gpu_group_elem(g, h, j);
            dst[e] = pc_gpu_quantize(pc_gpu_load(src, t, base + e), s, q);
        }
    }
    return 0;
}

int pc_gpu_gather_dequant_cpu(const pc_gpu_geom *g, pc_gpu_qfmt q, const void *pool,
                              const float *scales, const uint32_t *ids, uint32_t n,
                              uint32_t layer, pc_gpu_elem t, void *dst_k, void *dst_v)
{
    int rc = quant_args(g, q, t, ids, n, layer, pool, scales, dst_k, dst_v);
    if (rc)
        return rc < 0 ? rc : 0;
    uint64_t kve = pc_gpu_kv_elems(g), m = (uint64_t)g->page_tokens * g->head_dim;
    uint64_t groups = (uint64_t)n * 2u * g->kv_heads;
    for (uint64_t grp = 0; grp < groups; grp++) {
        uint64_t i;
        uint32_t kv, h;
        pc_gpu_group_of(g, grp, &i, &kv, &h);
        void *dst = kv ? dst_v : dst_k;
        uint64_t base = i * kve;
        float s = scales[pc_gpu_scale_idx(g, ids[i], layer, kv, h)];
        const uint8_t *src = (const uint8_t *)pool + pc_gpu_pool_off(g, ids[i], layer, kv);
        for (uint64_t j = 0; j < m; j++) {
            uint64_t e = pc_gpu_group_elem(g, h, j);
            pc_gpu_store(dst, t, base + e, pc_gpu_dequantize(src[e], s, q));
        }
    }
    return 0;
}

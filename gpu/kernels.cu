/*
 * gpu/kernels.cu - the kernels of gpu/kernels.h on a CUDA stream.
 *
 * One launch per call, whatever the number of blocks: per-block
 * cudaMemcpyAsync calls cost ~2 us each and cap far below bandwidth.
 *
 *   copies (gather, scatter, pool <-> paged):
 *     grid-stride loop over units of w bytes (w = 16 when kv_bytes and all
 *     base addresses allow it: one uint4 load + store per thread per unit);
 *     unit u -> (pool offset, buffer offset) by pc_gpu_gather_map /
 *     pc_gpu_paged_map, the functions the CPU loops call.
 *
 *   quantize on store:  one CUDA block per (block, K|V, kv_head) group
 *     ┌ threads: amax over the group's page_tokens x head_dim elements
 *     ├ shared-memory max reduction (a max is exact in any order)
 *     ├ thread 0: pc_gpu_scale, written to scales[]
 *     └ threads: pc_gpu_quantize each element
 *   dequantize on gather: the same groups, pc_gpu_dequantize per element.
 *
 * Bit-exactness with the CPU loops rests on: the shared PC_HD functions;
 * IEEE division and multiplication (nvcc's defaults -prec-div=true and
 * -ftz=false; -fmad=false on this file so that no a*b+c is contracted);
 * integer-only encoders.  These kernels were compiled for sm_80 and sm_90
 * but never run: no GPU was available (docs/gpu.md).
 *
 * The host cannot check device-resident ids without a copy and a wait, so
 * a unit whose pool (or paged) offset falls outside the allocation is
 * skipped: bad ids cannot write out of bounds, but nothing reports them.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "gpu/kernels.h"
#include "gpu/kernels_int.h"

namespace {

constexpr unsigned kThreads = 256;     /* per CUDA block; a power of two */
constexpr uint64_t kMaxGrid = 65535;   /* grid-stride loops cover the rest */

unsigned grid_for(uint64_t work, uint64_t per_block)
{
    uint64_t b = (work + per_block - 1) / per_block;
    return (unsigned)(b < 1 ? 1 : b > kMaxGrid ? kMaxGrid : b);
}

/* The launch's own error, or a sticky one from before: both mean CUDA
 * could not run the kernel. */
int launched(void)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        return 0;
    return e == cudaErrorInvalidValue ? PC_E_INVAL : PC_E_IO;
}

/* Call f with a value of the unit type for w bytes (16: one uint4 per
 * thread), so that each launcher names its kernel once. */
template <typename F>
void by_width(uint32_t w, F &&f)
{
    switch (w) {
    case 16: f(uint4{}); break;
    case 8:  f(uint2{}); break;
    case 4:  f(uint32_t{}); break;
    case 2:  f(uint16_t{}); break;
    default: f(uint8_t{}); break;
    }
}

template <typename V>
__global__ void copy_kernel(pc_gpu_geom g, uint8_t *pool, const uint32_t *ids, uint32_t n,
                            uint32_t layer, uint8_t *buf_k, uint8_t *buf_v, uint64_t units,
                            int to_pool)
{
    const uint64_t pool_bytes = g.capacity * pc_gpu_block_bytes(&g);
    for (uint64_t u = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; u < units;
         u += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t po, bo;
        uint8_t *b = pc_gpu_gather_map(&g, ids, n, layer, sizeof(V), u, &po, &bo) ? buf_v : buf_k;
        if (po >= pool_bytes)
            continue;
        if (to_pool)
            *(V *)(pool + po) = *(const V *)(b + bo);
        else
            *(V *)(b + bo) = *(const V *)(pool + po);
    }
}

template <typename V>
__global__ void paged_kernel(pc_gpu_geom g, uint8_t *pool, const uint32_t *pool_ids,
                             const uint32_t *paged_ids, uint64_t paged_bytes,
                             uint8_t *const *kc, uint8_t *const *vc, uint64_t units,
                             int to_pool)
{
    const uint64_t pool_bytes = g.capacity * pc_gpu_block_bytes(&g);
    for (uint64_t u = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; u < units;
         u += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t po, qo;
        uint32_t l, kv;
        pc_gpu_paged_map(&g, pool_ids, paged_ids, sizeof(V), u, &po, &l, &kv, &qo);
        if (po >= pool_bytes || qo >= paged_bytes)
            continue;
        uint8_t *c = kv ? vc[l] : kc[l];
        if (to_pool)
            *(V *)(pool + po) = *(const V *)(c + qo);
        else
            *(V *)(c + qo) = *(const V *)(pool + po);
    }
}

__global__ void store_quant_kernel(pc_gpu_geom g, pc_gpu_qfmt q, uint8_t *pool, float *scales,
                                   const uint32_t *ids, uint32_t layer, pc_gpu_elem t,
                                   const void *src_k, const void *src_v, uint64_t groups)
{
    __shared__ float red[kThreads];
    __shared__ float scale;
    const uint64_t kve = pc_gpu_kv_elems(&g), m = (uint64_t)g.page_tokens * g.head_dim;
    for (uint64_t grp = blockIdx.x; grp < groups; grp += gridDim.x) {
        uint64_t i;
        uint32_t kv, h;
        pc_gpu_group_of(&g, grp, &i, &kv, &h);
        uint32_t id = ids[i];
        if (id >= g.capacity) /* the same for the whole CUDA block */
            continue;
        const void *src = kv ? src_v : src_k;
        uint64_t base = i * kve;
        float amax = 0.0f;
        for (uint64_t j = threadIdx.x; j < m; j += blockDim.x)
            amax = pc_gpu_amax_step(amax, pc_gpu_load(src, t, base + pc_gpu_group_elem(&g, h, j)));
        red[threadIdx.x] = amax;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s && red[threadIdx.x + s] > red[threadIdx.x])
                red[threadIdx.x] = red[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            scale = pc_gpu_scale(red[0], q);
            scales[pc_gpu_scale_idx(&g, id, layer, kv, h)] = scale;
        }
        __syncthreads();
        const float s = scale;
        uint8_t *dst = pool + pc_gpu_pool_off(&g, id, layer, kv);
        for (uint64_t j = threadIdx.x; j < m; j += blockDim.x) {
            uint64_t e = pc_gpu_group_elem(&g, h, j);
            dst[e] = pc_gpu_quantize(pc_gpu_load(src, t, base + e), s, q);
        }
        __syncthreads(); /* red and scale are reused by the next group */
    }
}

__global__ void gather_dequant_kernel(pc_gpu_geom g, pc_gpu_qfmt q, const uint8_t *pool,
                                      const float *scales, const uint32_t *ids, uint32_t layer,
                                      pc_gpu_elem t, void *dst_k, void *dst_v, uint64_t groups)
{
    const uint64_t kve = pc_gpu_kv_elems(&g), m = (uint64_t)g.page_tokens * g.head_dim;
    for (uint64_t grp = blockIdx.x; grp < groups; grp += gridDim.x) {
        uint64_t i;
        uint32_t kv, h;
        pc_gpu_group_of(&g, grp, &i, &kv, &h);
        uint32_t id = ids[i];
        if (id >= g.capacity)
            continue;
        void *dst = kv ? dst_v : dst_k;
        uint64_t base = i * kve;
        float s = scales[pc_gpu_scale_idx(&g, id, layer, kv, h)];
        const uint8_t *src = pool + pc_gpu_pool_off(&g, id, layer, kv);
        for (uint64_t j = threadIdx.x; j < m; j += blockDim.x) {
            uint64_t e = pc_gpu_group_elem(&g, h, j);
            pc_gpu_store(dst, t, base + e, pc_gpu_dequantize(src[e], s, q));
        }
    }
}

int copy_launch(const pc_gpu_geom *g, uint8_t *pool, const uint32_t *ids, uint32_t n,
                uint32_t layer, uint8_t *bk, uint8_t *bv, int to_pool, void *stream)
{
    const void *ptrs[] = {pool, ids, bk, bv};
    int rc = pc_gpu_check_call(g, PC_GPU_CALL_COPY, n, layer, 0, 0, ptrs, 4);
    if (rc || n == 0)
        return rc;
    uint64_t kvb = pc_gpu_kv_bytes(g);
    uint32_t w = pc_gpu_unit_bytes(kvb, (uintptr_t)pool | (uintptr_t)bk | (uintptr_t)bv);
    uint64_t units = 2u * (uint64_t)n * (kvb / w);
    unsigned grid = grid_for(units, kThreads);
    cudaStream_t st = (cudaStream_t)stream;
    by_width(w, [&](auto unit) {
        copy_kernel<decltype(unit)><<<grid, kThreads, 0, st>>>(*g, pool, ids, n, layer, bk, bv,
                                                              units, to_pool);
    });
    return launched();
}

/* The per-layer cache pointers live in device memory, so their alignment
 * cannot be read here: the unit is the widest that kv_bytes and the pool
 * allow, and every cache base must be 16-byte aligned (kernels.h; cudaMalloc
 * and PyTorch's caching allocator give at least 256). */
int paged_launch(const pc_gpu_geom *g, uint8_t *pool, const uint32_t *pool_ids,
                 const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                 uint8_t *const *kc, uint8_t *const *vc, int to_pool, void *stream)
{
    const void *ptrs[] = {pool, pool_ids, paged_ids, kc, vc};
    int rc = pc_gpu_check_call(g, PC_GPU_CALL_PAGED, n, 0, 0, 0, ptrs, 5);
    if (rc || n == 0)
        return rc;
    uint64_t kvb = pc_gpu_kv_bytes(g);
    if (paged_blocks > UINT64_MAX / kvb)
        return PC_E_RANGE;
    uint32_t w = pc_gpu_unit_bytes(kvb, (uintptr_t)pool);
    uint64_t units = (uint64_t)n * g->layers * 2u * (kvb / w);
    uint64_t pb = paged_blocks * kvb;
    unsigned grid = grid_for(units, kThreads);
    cudaStream_t st = (cudaStream_t)stream;
    by_width(w, [&](auto unit) {
        paged_kernel<decltype(unit)><<<grid, kThreads, 0, st>>>(*g, pool, pool_ids, paged_ids, pb,
                                                               kc, vc, units, to_pool);
    });
    return launched();
}

} // namespace

extern "C" {

int pc_gpu_gather_launch(const pc_gpu_geom *g, const void *pool, const uint32_t *ids,
                         uint32_t n, uint32_t layer, void *dst_k, void *dst_v, void *stream)
{
    return copy_launch(g, (uint8_t *)(uintptr_t)pool, ids, n, layer, (uint8_t *)dst_k,
                       (uint8_t *)dst_v, 0, stream);
}

int pc_gpu_scatter_launch(const pc_gpu_geom *g, void *pool, const uint32_t *ids, uint32_t n,
                          uint32_t layer, const void *src_k, const void *src_v, void *stream)
{
    return copy_launch(g, (uint8_t *)pool, ids, n, layer, (uint8_t *)(uintptr_t)src_k,
                       (uint8_t *)(uintptr_t)src_v, 1, stream);
}

int pc_gpu_pool_to_paged_launch(const pc_gpu_geom *g, const void *pool,
                                const uint32_t *pool_ids, const uint32_t *paged_ids,
                                uint32_t n, uint64_t paged_blocks, void *const *k_caches,
                                void *const *v_caches, void *stream)
{
    return paged_launch(g, (uint8_t *)(uintptr_t)pool, pool_ids, paged_ids, n, paged_blocks,
                        (uint8_t *const *)k_caches, (uint8_t *const *)v_caches, 0, stream);
}

int pc_gpu_paged_to_pool_launch(const pc_gpu_geom *g, void *pool, const uint32_t *pool_ids,
                                const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                                const void *const *k_caches, const void *const *v_caches,
                                void *stream)
{
    return paged_launch(g, (uint8_t *)pool, pool_ids, paged_ids, n, paged_blocks,
                        (uint8_t *const *)(uintptr_t)k_caches,
                        (uint8_t *const *)(uintptr_t)v_caches, 1, stream);
}

int pc_gpu_store_quant_launch(const pc_gpu_geom *g, pc_gpu_qfmt q, void *pool, float *scales,
                              const uint32_t *ids, uint32_t n, uint32_t layer, pc_gpu_elem t,
                              const void *src_k, const void *src_v, void *stream)
{
    const void *ptrs[] = {pool, scales, ids, src_k, src_v};
    int rc = pc_gpu_check_call(g, PC_GPU_CALL_QUANT, n, layer, (int)q, (int)t, ptrs, 5);
    if (rc || n == 0)
        return rc;
    uint64_t groups = (uint64_t)n * 2u * g->kv_heads;
    store_quant_kernel<<<grid_for(groups, 1), kThreads, 0, (cudaStream_t)stream>>>(
        *g, q, (uint8_t *)pool, scales, ids, layer, t, src_k, src_v, groups);
    return launched();
}

int pc_gpu_gather_dequant_launch(const pc_gpu_geom *g, pc_gpu_qfmt q, const void *pool,
                                 const float *scales, const uint32_t *ids, uint32_t n,
                                 uint32_t layer, pc_gpu_elem t, void *dst_k, void *dst_v,
                                 void *stream)
{
    const void *ptrs[] = {pool, scales, ids, dst_k, dst_v};
    int rc = pc_gpu_check_call(g, PC_GPU_CALL_QUANT, n, layer, (int)q, (int)t, ptrs, 5);
    if (rc || n == 0)
        return rc;
    uint64_t groups = (uint64_t)n * 2u * g->kv_heads;
    gather_dequant_kernel<<<grid_for(groups, 1), kThreads, 0, (cudaStream_t)stream>>>(
        *g, q, (const uint8_t *)pool, scales, ids, layer, t, dst_k, dst_v, groups);
    return launched();
}

} // extern "C"

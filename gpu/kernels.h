/*
 * gpu/kernels.h - the KV copy and quantization kernels: their per-element
 * work, a CPU implementation of each whole kernel, and the CUDA launchers.
 *
 * Why this shape: GPUs are rarely lent to this project, so a kernel that
 * only runs on a GPU is a kernel nobody tests.  Every kernel is therefore
 * split in two:
 *
 *   per-element work  ── PC_HD static inline functions below (this header):
 *                        index arithmetic, fp16/bf16/e4m3/int8 conversions,
 *                        scale, quantize, dequantize.  Compiled as plain C
 *                        for the CPU and as __host__ __device__ by nvcc.
 *   the loops         ── pc_gpu_*_cpu (kernels_cpu.c): the GPU grid's loops
 *                        run one unit after another, calling the very same
 *                        functions in the same order per element;
 *                        pc_gpu_*_launch (kernels.cu): one CUDA launch for a
 *                        whole list of blocks.
 *
 * The CPU tests (tests/test_gpu_kernels.c) check the CPU loops bit-exactly
 * against an independent plain-C reference, so the GPU kernels' correctness
 * rests on the shared functions; the grids themselves were compiled by nvcc
 * (sm_80, sm_90) but never run here (docs/gpu.md).
 *
 * The pool layout (blockpool/blockpool.h), with kv = page_tokens x kv_heads
 * x head_dim elements:
 *
 *   block b (at b x block_bytes):
 *   ┌──────────┬──────────┬──────────┬──────────┬─────┬────────────┐
 *   │ layer0 K │ layer0 V │ layer1 K │ layer1 V │ ... │ layerL-1 V │
 *   └──────────┴──────────┴──────────┴──────────┴─────┴────────────┘
 *   each K or V: [token 0..page_tokens-1][kv_head][head_dim]  (kv_bytes)
 *
 *   contiguous per-layer buffer (gather's output, scatter's input), one for
 *   K and one for V:   [i = 0..n-1][token][kv_head][head_dim]
 *   vLLM paged NHD, one K and one V cache per layer:
 *                      [paged block][block_size = page_tokens][kv_head][head_dim]
 *   scales (quantized pools), floats: [pool block][layer][K=0|V=1][kv_head]
 *
 * Errors: 0 or negative PC_E_* (proto/errors.h); nothing aborts on bad
 * input.  Threading: the functions touch only what they are given.
 */
#ifndef PC_GPU_KERNELS_H
#define PC_GPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/errors.h"

#ifdef __CUDACC__
#define PC_HD __host__ __device__
#else
#define PC_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- shapes ----------------------------------------------------------------- */

/* The pool's geometry as the kernels see it (pc_gpu_geom_from_layout fills
 * it from a pc_pool_layout).  elem_bytes is the pool's element size: 4
 * (fp32), 2 (fp16, bf16) or 1 (fp8, int8). */
typedef struct pc_gpu_geom {
    uint32_t layers, kv_heads, head_dim, page_tokens;
    uint32_t elem_bytes;
    uint64_t capacity;  /* blocks in the pool: ids at or above are refused */
} pc_gpu_geom;

/* The element types the contiguous buffers may hold around a quantized
 * pool (the pool's own element is a pc_gpu_qfmt). */
typedef enum pc_gpu_elem {
    PC_GPU_F32 = 0,
    PC_GPU_F16,
    PC_GPU_BF16,
} pc_gpu_elem;

typedef enum pc_gpu_qfmt {
    PC_GPU_Q_FP8 = 0, /* OCP e4m3fn: bias 7, max 448, no inf, NaN S.1111.111 */
    PC_GPU_Q_INT8,    /* symmetric -127..127, round half away from zero      */
} pc_gpu_qfmt;

#define PC_GPU_FP8_MAX 448.0f
#define PC_GPU_INT8_MAX 127.0f

/* ---- bit casts ---------------------------------------------------------------- */

PC_HD static inline uint32_t pc_gpu_f2u(float f)
{
#ifdef __CUDA_ARCH__
    return (uint32_t)__float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

PC_HD static inline float pc_gpu_u2f(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

/* Round-to-nearest-even of mant >> shift (1 <= shift <= 31): the remainder
 * decides, a tie goes to the even quotient.  Integer-only, so that no
 * flush-to-zero or rounding mode of either processor can change it. */
PC_HD static inline uint32_t pc_gpu_rne_shift(uint32_t mant, uint32_t shift)
{
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return q;
}

/* ---- fp16 and bf16 -------------------------------------------------------------- */

/* fp16 -> fp32, exact for all 65,536 patterns (NaN payloads kept). */
PC_HD static inline float pc_gpu_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f)
        return pc_gpu_u2f(s | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0)
            return pc_gpu_u2f(s);
        /* Subnormal m x 2^-24: shift the leading one up to the implicit
         * bit; each shift halves the exponent. */
        e = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        return pc_gpu_u2f(s | (e << 23) | ((m & 0x3ffu) << 13));
    }
    return pc_gpu_u2f(s | ((e + 112u) << 23) | (m << 13));
}

/* fp32 -> fp16, round to nearest even; overflow gives +-inf (IEEE), NaN
 * stays NaN with its payload's top bits (a quiet bit when those are 0). */
PC_HD static inline uint16_t pc_gpu_f32_to_f16(float f)
{
    uint32_t x = pc_gpu_f2u(f);
    uint32_t s = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        uint32_t m = (a >> 13) & 0x3ffu;
        if (a == 0x7f800000u)
            return (uint16_t)(s | 0x7c00u);
        return (uint16_t)(s | 0x7c00u | (m ? m : 0x200u));
    }
    if (a >= 0x477ff000u) /* >= 65520, the tie above 65504 (odd): inf */
        return (uint16_t)(s | 0x7c00u);
    if (a >= 0x38800000u) { /* >= 2^-14: normal; the carry may bump e */
        uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
        return (uint16_t)(s | ((r >> 13) - (112u << 10)));
    }
    if (a <= 0x33000000u) /* <= 2^-25: the tie with 0 goes to 0 (even) */
        return (uint16_t)s;
    /* Subnormal result: m = RNE(value x 2^24) = mant >> (126 - e). */
    uint32_t e = a >> 23;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    return (uint16_t)(s | pc_gpu_rne_shift(mant, 126u - e));
}

PC_HD static inline float pc_gpu_bf16_to_f32(uint16_t h)
{
    return pc_gpu_u2f((uint32_t)h << 16);
}

/* fp32 -> bf16, round to nearest even; NaN stays NaN (quiet bit set, since
 * truncating the payload could leave an infinity). */
PC_HD static inline uint16_t pc_gpu_f32_to_bf16(float f)
{
    uint32_t x = pc_gpu_f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- fp8 e4m3 and int8 ------------------------------------------------------------ */

/* e4m3fn -> fp32, exact: S.EEEE.MMM, bias 7; E = 0 is subnormal (M x 2^-9);
 * S.1111.111 is NaN (returned as a quiet fp32 NaN with the sign); there is
 * no infinity, so S.1111.110 = +-448 is the largest value. */
PC_HD static inline float pc_gpu_e4m3_to_f32(uint8_t c)
{
    uint32_t s = (uint32_t)(c & 0x80u) << 24;
    uint32_t e = (c >> 3) & 0xfu, m = c & 7u;
    if (e == 15 && m == 7)
        return pc_gpu_u2f(s | 0x7fc00000u);
    if (e == 0) {
        if (m == 0)
            return pc_gpu_u2f(s);
        uint32_t k = m >= 4 ? 2u : m >= 2 ? 1u : 0u; /* leading one of m */
        return pc_gpu_u2f(s | ((118u + k) << 23) | ((m << (23u - k)) & 0x7fffffu));
    }
    return pc_gpu_u2f(s | ((e + 120u) << 23) | (m << 20));
}

/* fp32 -> e4m3fn: round to nearest even, saturating: anything at or above
 * 448 in magnitude (infinities included) becomes +-448; NaN becomes NaN
 * (S.1111.111, sign kept).  Integer-only (see pc_gpu_rne_shift). */
PC_HD static inline uint8_t pc_gpu_f32_to_e4m3(float y)
{
    uint32_t x = pc_gpu_f2u(y);
    uint8_t s = (uint8_t)((x >> 24) & 0x80u);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint8_t)(s | 0x7fu);
    if (a >= 0x43e00000u) /* >= 448 */
        return (uint8_t)(s | 0x7eu);
    if (a >= 0x3c800000u) { /* >= 2^-6: normal, 3 mantissa bits kept */
        uint32_t r = a + 0x7ffffu + ((a >> 20) & 1u);
        return (uint8_t)(s | ((r >> 20) - (120u << 3)));
    }
    if (a <= 0x3a800000u) /* <= 2^-10, half the least subnormal: 0 */
        return s;
    /* Subnormal: M = RNE(value x 2^9) = mant >> (141 - e), e in 117..120
     * (M = 8 is the least normal, whose code is 0x08 as well). */
    uint32_t e = a >> 23;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    return (uint8_t)(s | pc_gpu_rne_shift(mant, 141u - e));
}

/* fp32 -> int8, symmetric: clamp to +-127 (so -128 never appears), round
 * half away from zero; NaN becomes 0.  (int)y truncates toward zero and
 * y - i is exact (Sterbenz: i and y share a sign and |y| < 2|i| when
 * i != 0), so the tie test is exact too. */
PC_HD static inline int8_t pc_gpu_f32_to_i8(float y)
{
    if (y != y)
        return 0;
    if (y >= PC_GPU_INT8_MAX)
        return 127;
    if (y <= -PC_GPU_INT8_MAX)
        return -127;
    int i = (int)y;
    float r = y - (float)i;
    if (r >= 0.5f)
        i++;
    else if (r <= -0.5f)
        i--;
    return (int8_t)i;
}

/* ---- scale, quantize, dequantize ----------------------------------------------------- */

/*
 * The error bound (docs/gpu.md; tests/test_gpu_kernels.c checks it per
 * element).  For finite x, scale s, u = 2^-24: y = fl(x/s) = (x/s)(1+d1),
 * c = encode(y), deq = fl(decode(c) s) = decode(c) s (1+d2), |di| <= u.
 *   FP8: in the binade [2^e, 2^(e+1)), e >= -6, the step is 2^(e-3), so
 *   rounding moves y by at most 2^(e-4) <= 2^-4 |y|; below 2^-6 (step
 *   2^-9) by at most 2^-10; saturation only trims |y| <= 448 (1+u)^2.
 *   So |decode(c) - y| <= 2^-4 |y| + 2^-10, and
 *     |x - deq| <= s |x/s - y| + s |y - decode(c)| + |decode(c)| s u
 *               <= 2^-4 |x| + 2^-10 s + 2^-22 (|x| + s).
 *   INT8: |c - y| <= 1/2 and |c| <= 127, so
 *     |x - deq| <= s (2^-1 + 2^-16) + 2^-22 |x|.
 * A subnormal deq errs by at most 2^-150 <= 2^-22 s (s >= FLT_MIN).
 * Dequantizing into fp16/bf16 adds half an ulp of that type.
 */

/* amax over one (block, layer, K|V, kv_head) group, one element at a time:
 * NaN and +-inf are skipped (they cannot give a usable scale), so the
 * result is the largest finite |x|, 0 when there is none.  A max is exact
 * and order-free, so a parallel reduction gives the same bits. */
PC_HD static inline float pc_gpu_amax_step(float acc, float x)
{
    uint32_t a = pc_gpu_f2u(x) & 0x7fffffffu;
    if (a < 0x7f800000u) {
        float ax = pc_gpu_u2f(a);
        if (ax > acc)
            acc = ax;
    }
    return acc;
}

/* scale = amax / QMAX (448 fp8, 127 int8), correctly rounded; at least
 * FLT_MIN, so that x / scale stays within QMAX and dequantizing stays in
 * the normal range even for fp32 denormal blocks; 1 when amax is 0 (all
 * zeros, or nothing finite: every element then encodes exactly, or as NaN
 * or a saturated value). */
PC_HD static inline float pc_gpu_scale(float amax, pc_gpu_qfmt q)
{
    if (!(amax > 0.0f))
        return 1.0f;
    float s = amax / (q == PC_GPU_Q_FP8 ? PC_GPU_FP8_MAX : PC_GPU_INT8_MAX);
    float min_normal = pc_gpu_u2f(0x00800000u);
    return s < min_normal ? min_normal : s;
}

/* q(x) = encode(x / scale): one IEEE division (nvcc's default -prec-div),
 * then the integer-only encoders above.  A NaN x is caught before the
 * division: a GPU's arithmetic returns one canonical NaN (sign lost),
 * x86's keeps the input's, and the fp8 code keeps the sign. */
PC_HD static inline uint8_t pc_gpu_quantize(float x, float scale, pc_gpu_qfmt q)
{
    uint32_t xb = pc_gpu_f2u(x);
    if ((xb & 0x7fffffffu) > 0x7f800000u)
        return q == PC_GPU_Q_FP8 ? (uint8_t)(((xb >> 24) & 0x80u) | 0x7fu) : 0;
    float y = x / scale;
    return q == PC_GPU_Q_FP8 ? pc_gpu_f32_to_e4m3(y) : (uint8_t)pc_gpu_f32_to_i8(y);
}

/* deq(c) = decode(c) x scale: one IEEE multiplication.  The NaN code
 * skips it, for the same reason as above: the NaN's bits (0x7fc00000 with
 * the code's sign) must not depend on the processor. */
PC_HD static inline float pc_gpu_dequantize(uint8_t c, float scale, pc_gpu_qfmt q)
{
    if (q == PC_GPU_Q_FP8 && (c & 0x7fu) == 0x7fu)
        return pc_gpu_e4m3_to_f32(c);
    float v = q == PC_GPU_Q_FP8 ? pc_gpu_e4m3_to_f32(c) : (float)(int8_t)c;
    return v * scale;
}

/* Element idx of a contiguous buffer of type t, as fp32 (exactly). */
PC_HD static inline float pc_gpu_load(const void *base, pc_gpu_elem t, uint64_t idx)
{
    if (t == PC_GPU_F32)
        return ((const float *)base)[idx];
    uint16_t h = ((const uint16_t *)base)[idx];
    return t == PC_GPU_F16 ? pc_gpu_f16_to_f32(h) : pc_gpu_bf16_to_f32(h);
}

/* Store v into element idx, rounding to nearest even for fp16/bf16. */
PC_HD static inline void pc_gpu_store(void *base, pc_gpu_elem t, uint64_t idx, float v)
{
    if (t == PC_GPU_F32)
        ((float *)base)[idx] = v;
    else
        ((uint16_t *)base)[idx] = t == PC_GPU_F16 ? pc_gpu_f32_to_f16(v) : pc_gpu_f32_to_bf16(v);
}

PC_HD static inline uint32_t pc_gpu_elem_bytes(pc_gpu_elem t)
{
    return t == PC_GPU_F32 ? 4u : 2u;
}

/* ---- index arithmetic ------------------------------------------------------------- */

PC_HD static inline uint64_t pc_gpu_kv_elems(const pc_gpu_geom *g)
{
    return (uint64_t)g->page_tokens * g->kv_heads * g->head_dim;
}

PC_HD static inline uint64_t pc_gpu_kv_bytes(const pc_gpu_geom *g)
{
    return pc_gpu_kv_elems(g) * g->elem_bytes;
}

PC_HD static inline uint64_t pc_gpu_block_bytes(const pc_gpu_geom *g)
{
    return 2u * (uint64_t)g->layers * pc_gpu_kv_bytes(g);
}

/* Byte offset of block id's layer K (kv = 0) or V (kv = 1) in the pool. */
PC_HD static inline uint64_t pc_gpu_pool_off(const pc_gpu_geom *g, uint32_t id,
                                             uint32_t layer, uint32_t kv)
{
    return (uint64_t)id * pc_gpu_block_bytes(g) +
           (2u * (uint64_t)layer + kv) * pc_gpu_kv_bytes(g);
}

/* The copy unit: w bytes (16, 8, 4, 2 or 1), the widest that divides
 * kv_bytes and every base address (OR-ed into `addrs`), so that a GPU
 * thread moves it with one aligned vector load and store. */
PC_HD static inline uint32_t pc_gpu_unit_bytes(uint64_t kv_bytes, uint64_t addrs)
{
    uint32_t w = 16;
    while (w > 1 && ((kv_bytes | addrs) & (w - 1u)))
        w >>= 1;
    return w;
}

/* Gather/scatter unit u of 2 x n x kv_bytes / w, ordered (K|V, i, chunk)
 * so that neighbouring threads touch neighbouring bytes.  Gives K or V
 * (the return value), the pool byte offset and the buffer byte offset;
 * ids[i] must be below the capacity (the callers check). */
PC_HD static inline uint32_t pc_gpu_gather_map(const pc_gpu_geom *g, const uint32_t *ids,
                                               uint32_t n, uint32_t layer, uint32_t w,
                                               uint64_t u, uint64_t *pool_off,
                                               uint64_t *buf_off)
{
    uint64_t per = pc_gpu_kv_bytes(g) / w;  /* units per block */
    uint64_t half = per * n;
    uint32_t kv = u >= half ? 1u : 0u;
    uint64_t r = u - kv * half;
    uint64_t i = r / per, c = r % per;
    *pool_off = pc_gpu_pool_off(g, ids[i], layer, kv) + c * w;
    *buf_off = r * w;
    return kv;
}

/* Pool <-> paged unit u of n x layers x 2 x kv_bytes / w, ordered
 * (i, layer, K|V, chunk).  The paged cache of that layer and K|V holds
 * paged block paged_ids[i] at paged_ids[i] x kv_bytes (block_size equals
 * page_tokens, so one paged block is one pool K or V region byte for
 * byte).  Gives the pool offset, the layer, K|V and the paged offset. */
PC_HD static inline void pc_gpu_paged_map(const pc_gpu_geom *g, const uint32_t *pool_ids,
                                          const uint32_t *paged_ids, uint32_t w, uint64_t u,
                                          uint64_t *pool_off, uint32_t *layer, uint32_t *kv,
                                          uint64_t *paged_off)
{
    uint64_t per = pc_gpu_kv_bytes(g) / w;
    uint64_t c = u % per, r = u / per;
    *kv = (uint32_t)(r % 2u);
    r /= 2u;
    *layer = (uint32_t)(r % g->layers);
    uint64_t i = r / g->layers;
    *pool_off = pc_gpu_pool_off(g, pool_ids[i], *layer, *kv) + c * w;
    *paged_off = (uint64_t)paged_ids[i] * pc_gpu_kv_bytes(g) + c * w;
}

/* Quantization group grp of n x 2 x kv_heads, ordered (i, K|V, kv_head):
 * one scale each. */
PC_HD static inline void pc_gpu_group_of(const pc_gpu_geom *g, uint64_t grp, uint64_t *i,
                                         uint32_t *kv, uint32_t *head)
{
    *head = (uint32_t)(grp % g->kv_heads);
    *kv = (uint32_t)((grp / g->kv_heads) % 2u);
    *i = grp / (2u * (uint64_t)g->kv_heads);
}

/* Element j (0 .. page_tokens x head_dim - 1, token-major) of a group, as
 * an element index inside one K or V region: [token][kv_head][head_dim]. */
PC_HD static inline uint64_t pc_gpu_group_elem(const pc_gpu_geom *g, uint32_t head, uint64_t j)
{
    uint64_t t = j / g->head_dim, d = j % g->head_dim;
    return (t * g->kv_heads + head) * g->head_dim + d;
}

/* Index of a scale: [pool block][layer][K|V][kv_head]. */
PC_HD static inline uint64_t pc_gpu_scale_idx(const pc_gpu_geom *g, uint32_t id,
                                              uint32_t layer, uint32_t kv, uint32_t head)
{
    return (((uint64_t)id * g->layers + layer) * 2u + kv) * g->kv_heads + head;
}

/* ---- whole kernels on the CPU (kernels_cpu.c) ----------------------------------- */

/* PC_E_INVAL for a zero dimension or an element size not 1, 2 or 4,
 * PC_E_RANGE when capacity x block_bytes overflows 64 bits. */
int pc_gpu_geom_check(const pc_gpu_geom *g);

/* The geometry of a pool layout (blockpool/blockpool.h) of `capacity`
 * blocks; PC_E_INVAL for a NULL or uninitialised layout. */
struct pc_pool_layout;
int pc_gpu_geom_from_layout(const struct pc_pool_layout *l, uint64_t capacity,
                            pc_gpu_geom *out);

/* For every checked call below: PC_E_INVAL for NULL pointers (unless n is
 * 0), a bad geometry or layer; PC_E_RANGE for an id at or above the
 * capacity (or paged_blocks), before anything is written. */

/* Blocks ids[0..n) of layer `layer` -> dst_k, dst_v ([i][token][head][dim]). */
int pc_gpu_gather_cpu(const pc_gpu_geom *g, const void *pool, const uint32_t *ids,
                      uint32_t n, uint32_t layer, void *dst_k, void *dst_v);
/* The reverse: src_k, src_v -> blocks ids[0..n) of layer `layer`. */
int pc_gpu_scatter_cpu(const pc_gpu_geom *g, void *pool, const uint32_t *ids, uint32_t n,
                       uint32_t layer, const void *src_k, const void *src_v);

/* Pool blocks pool_ids[i] -> vLLM paged blocks paged_ids[i], all layers;
 * k_caches[l], v_caches[l] are layer l's caches of paged_blocks blocks each. */
int pc_gpu_pool_to_paged_cpu(const pc_gpu_geom *g, const void *pool, const uint32_t *pool_ids,
                             const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                             void *const *k_caches, void *const *v_caches);
int pc_gpu_paged_to_pool_cpu(const pc_gpu_geom *g, void *pool, const uint32_t *pool_ids,
                             const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                             const void *const *k_caches, const void *const *v_caches);

/* Quantize on store: src_k, src_v ([i][token][head][dim] of type t) ->
 * blocks ids[i] of layer `layer` in a pool of 1-byte elements, writing one
 * scale per (block, K|V, kv_head) at scales[pc_gpu_scale_idx(...)]. */
int pc_gpu_store_quant_cpu(const pc_gpu_geom *g, pc_gpu_qfmt q, void *pool, float *scales,
                           const uint32_t *ids, uint32_t n, uint32_t layer, pc_gpu_elem t,
                           const void *src_k, const void *src_v);
/* Dequantize on gather: the reverse, into buffers of type t. */
int pc_gpu_gather_dequant_cpu(const pc_gpu_geom *g, pc_gpu_qfmt q, const void *pool,
                              const float *scales, const uint32_t *ids, uint32_t n,
                              uint32_t layer, pc_gpu_elem t, void *dst_k, void *dst_v);

/* ---- the same kernels on a CUDA stream (kernels.cu; only with PC_HAVE_CUDA) ---- */

/* Same arguments as the CPU versions, all pointers (ids and the k_caches /
 * v_caches pointer arrays included) in device memory; stream is a
 * cudaStream_t (NULL: the default stream).  One launch per call, queued,
 * not waited for.  The paged caches' base addresses (k_caches[l],
 * v_caches[l]) must be 16-byte aligned: they are in device memory, so the
 * launcher cannot look.  The host cannot read device ids, so the kernels skip a
 * unit whose id is out of range instead of refusing the call.  Errors:
 * PC_E_INVAL for bad arguments (checked on the host), PC_E_IO when CUDA
 * refuses the launch (no device, bad stream: cudaGetLastError). */
int pc_gpu_gather_launch(const pc_gpu_geom *g, const void *pool, const uint32_t *ids,
                         uint32_t n, uint32_t layer, void *dst_k, void *dst_v, void *stream);
int pc_gpu_scatter_launch(const pc_gpu_geom *g, void *pool, const uint32_t *ids, uint32_t n,
                          uint32_t layer, const void *src_k, const void *src_v, void *stream);
int pc_gpu_pool_to_paged_launch(const pc_gpu_geom *g, const void *pool,
                                const uint32_t *pool_ids, const uint32_t *paged_ids,
                                uint32_t n, uint64_t paged_blocks, void *const *k_caches,
                                void *const *v_caches, void *stream);
int pc_gpu_paged_to_pool_launch(const pc_gpu_geom *g, void *pool, const uint32_t *pool_ids,
                                const uint32_t *paged_ids, uint32_t n, uint64_t paged_blocks,
                                const void *const *k_caches, const void *const *v_caches,
                                void *stream);
int pc_gpu_store_quant_launch(const pc_gpu_geom *g, pc_gpu_qfmt q, void *pool, float *scales,
                              const uint32_t *ids, uint32_t n, uint32_t layer, pc_gpu_elem t,
                              const void *src_k, const void *src_v, void *stream);
int pc_gpu_gather_dequant_launch(const pc_gpu_geom *g, pc_gpu_qfmt q, const void *pool,
                                 const float *scales, const uint32_t *ids, uint32_t n,
                                 uint32_t layer, pc_gpu_elem t, void *dst_k, void *dst_v,
                                 void *stream);

#ifdef __cplusplus
}
#endif

#endif /* PC_GPU_KERNELS_H */

/*
 * tests/test_gpu_kernels.c - gpu/kernels.h on the CPU.
 *
 * The GPU kernels (gpu/kernels.cu) cannot run here; they call the same
 * per-element functions as the CPU loops, so these tests pin both down:
 *
 *   conversions   fp16 -> fp32 exhaustive (65,536) against a double-based
 *                 reference; fp32 -> fp16 round trip exhaustive, every tie
 *                 and its neighbours, random floats against the reference;
 *                 bf16 likewise; e4m3 decode exhaustive (256), encode on
 *                 every code, every tie, saturation, NaN, monotonicity and
 *                 random floats against a nearest-value search; int8 ties.
 *   kernels       gather, scatter, pool <-> paged NHD, quantize on store,
 *                 dequantize on gather: bit-exact against naive loops
 *                 written here with the index arithmetic spelled out, on
 *                 several shapes (page_tokens 1, odd sizes), element sizes
 *                 and misaligned buffers (every copy width).
 *   bounds        quantize -> dequantize within the documented bound
 *                 (docs/gpu.md) on random and adversarial blocks.
 *
 * The references use double arithmetic and table searches, never the
 * functions under test.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blockpool/blockpool.h"
#include "gpu/kernels.h"
#include "tests/harness/prng.h"

#ifdef PC_HAVE_CUDA
#include <cuda_runtime.h>
#endif

/* ---- helpers and references ------------------------------------------------------------ */

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t rng_state = 0x5eed0013u;
static uint64_t rnd(void) { return test_rng_next(&rng_state); }

/* fp16 value by its definition. */
static double ref_f16_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* fp32 -> fp16 by definition: the nearest of the two fp16 neighbours, ties
 * to the even mantissa, beyond 65520 infinity. */
static uint16_t ref_f32_to_f16(float f)
{
    uint16_t s = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (isnan(f))
        return 0; /* not used for NaN */
    if (a >= 65520.0)
        return s | 0x7c00;
    /* Walk the ordered positive fp16 codes: lo has value <= a. */
    uint16_t lo = 0, hi = 0x7bff;
    while (lo < hi) { /* the largest code with value <= a */
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if (ref_f16_value(mid) <= a)
            lo = mid;
        else
            hi = (uint16_t)(mid - 1);
    }
    if (ref_f16_value(lo) == a)
        return s | lo;
    double dlo = a - ref_f16_value(lo), dhi = ref_f16_value((uint16_t)(lo + 1)) - a;
    uint16_t r = dlo < dhi ? lo : dhi < dlo ? (uint16_t)(lo + 1) : (lo & 1) ? (uint16_t)(lo + 1) : lo;
    return s | r;
}

/* e4m3fn value by its definition; NaN for S.1111.111. */
static double ref_e4m3_value(uint8_t c)
{
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7)
        return NAN;
    double v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return s ? -v : v;
}

/* fp32 -> e4m3 by search: the nearest of codes 0..0x7e (ordered by value),
 * ties to the even code, saturating. */
static uint8_t ref_f32_to_e4m3(float f)
{
    uint8_t s = signbit(f) ? 0x80 : 0;
    if (isnan(f))
        return s | 0x7f;
    double a = fabs((double)f);
    if (a >= 448.0)
        return s | 0x7e;
    int lo = 0, hi = 0x7e; /* the largest code with value <= a */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ref_e4m3_value((uint8_t)mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    int best = lo;
    if (lo < 0x7e) { /* the nearer neighbour, ties to the even code */
        double dlo = a - ref_e4m3_value((uint8_t)lo), dhi = ref_e4m3_value((uint8_t)(lo + 1)) - a;
        if (dhi < dlo || (dhi == dlo && (lo & 1)))
            best = lo + 1;
    }
    return s | (uint8_t)best;
}

static int8_t ref_f32_to_i8(float y)
{
    if (isnan(y))
        return 0;
    double r = copysign(floor(fabs((double)y) + 0.5), (double)y);
    return (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
}

/* ---- conversions ------------------------------------------------------------------------ */

Test(gpu_conv, f16_to_f32_exhaustive)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pc_gpu_f16_to_f32((uint16_t)h);
        double v = ref_f16_value((uint16_t)h);
        if (isnan(v)) {
            uint32_t want = ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13);
            cr_assert_eq(fbits(f), want, "h=%04x", h);
        } else {
            cr_assert_eq(fbits(f), fbits((float)v), "h=%04x", h);
            cr_assert_eq((double)f, v);
        }
    }
}

Test(gpu_conv, f32_to_f16_exhaustive_and_ties)
{
    for (uint32_t h = 0; h < 65536; h++) /* round trip, NaN payloads too */
        cr_assert_eq(pc_gpu_f32_to_f16(pc_gpu_f16_to_f32((uint16_t)h)), h, "h=%04x", h);
    for (uint32_t h = 0; h < 0x7c00; h++) { /* every tie between neighbours */
        for (int sg = 0; sg < 2; sg++) {
            double lo = ref_f16_value((uint16_t)h);
            double hi = h + 1 == 0x7c00 ? 65536.0 : ref_f16_value((uint16_t)(h + 1));
            float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits */
            cr_assert_eq((double)mid, (lo + hi) / 2);
            uint16_t s = sg ? 0x8000 : 0;
            if (sg)
                mid = -mid;
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            cr_assert_eq(pc_gpu_f32_to_f16(mid), s | even, "tie above %04x", h);
            float below = nextafterf(mid, 0.0f), above = nextafterf(mid, sg ? -INFINITY : INFINITY);
            cr_assert_eq(pc_gpu_f32_to_f16(below), s | h, "below tie %04x", h);
            cr_assert_eq(pc_gpu_f32_to_f16(above), s | (h + 1), "above tie %04x", h);
        }
    }
    cr_assert_eq(pc_gpu_f32_to_f16(INFINITY), 0x7c00);
    cr_assert_eq(pc_gpu_f32_to_f16(-FLT_MAX), 0xfc00);
    cr_assert_eq(pc_gpu_f32_to_f16(bitsf(0x7f800001u)) & 0x7c00, 0x7c00); /* NaN stays NaN */
    cr_assert_neq(pc_gpu_f32_to_f16(bitsf(0x7f800001u)) & 0x3ff, 0);
    for (int k = 0; k < 20000; k++) { /* random floats, any exponent near fp16's */
        uint32_t b = (uint32_t)rnd();
        b = (b & 0x807fffffu) | ((uint32_t)(96 + (b >> 23) % 48) << 23);
        float f = bitsf(b);
        cr_assert_eq(pc_gpu_f32_to_f16(f), ref_f32_to_f16(f), "f=%a", (double)f);
    }
}

Test(gpu_conv, bf16)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pc_gpu_bf16_to_f32((uint16_t)h);
        cr_assert_eq(fbits(f), h << 16);
        if ((h & 0x7fff) > 0x7f80)
            cr_assert(isnan(bitsf((uint32_t)pc_gpu_f32_to_bf16(f) << 16)));
        else
            cr_assert_eq(pc_gpu_f32_to_bf16(f), h);
    }
    for (int k = 0; k < 20000; k++) { /* nearest of the two neighbours */
        uint32_t b = (uint32_t)rnd();
        if ((b & 0x7f800000u) == 0x7f800000u)
            continue;
        uint32_t lo = b >> 16, hi = lo + 1;
        double dlo = fabs((double)bitsf(b) - bitsf(lo << 16));
        double dhi = (hi & 0x7fff) >= 0x7f80 ? INFINITY : fabs((double)bitsf(hi << 16) - bitsf(b));
        if ((hi & 0x7fff) == 0x7f80) /* rounding to inf: the tie is 2^128 - 2^119 */
            dhi = fabs(ldexp(1.0, 128) - fabs((double)bitsf(b)));
        uint32_t want = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1) ? hi : lo;
        cr_assert_eq(pc_gpu_f32_to_bf16(bitsf(b)), want, "b=%08x", b);
    }
}

Test(gpu_conv, e4m3_decode_exhaustive)
{
    int nans = 0;
    for (uint32_t c = 0; c < 256; c++) {
        float f = pc_gpu_e4m3_to_f32((uint8_t)c);
        double v = ref_e4m3_value((uint8_t)c);
        if (isnan(v)) {
            nans++;
            cr_assert(isnan(f));
            cr_assert_eq(fbits(f), ((c & 0x80u) << 24) | 0x7fc00000u);
        } else {
            cr_assert_eq((double)f, v, "c=%02x", c);
            cr_assert_eq(!!signbit(f), c >> 7);
        }
    }
    cr_assert_eq(nans, 2);
    cr_assert_eq(pc_gpu_e4m3_to_f32(0x7e), 448.0f);
    cr_assert_eq(pc_gpu_e4m3_to_f32(0x01), 0x1p-9f);
    cr_assert_eq(pc_gpu_e4m3_to_f32(0x08), 0x1p-6f);
    for (uint32_t c = 1; c <= 0x7e; c++) /* strictly increasing codes */
        cr_assert_gt(pc_gpu_e4m3_to_f32((uint8_t)c), pc_gpu_e4m3_to_f32((uint8_t)(c - 1)));
}

Test(gpu_conv, e4m3_encode)
{
    for (uint32_t c = 0; c < 256; c++) /* every code encodes to itself */
        cr_assert_eq(pc_gpu_f32_to_e4m3(pc_gpu_e4m3_to_f32((uint8_t)c)), c, "c=%02x", c);
    for (uint32_t c = 0; c < 0x7e; c++) { /* every tie: to the even code */
        for (int sg = 0; sg < 2; sg++) {
            double lo = ref_e4m3_value((uint8_t)c), hi = ref_e4m3_value((uint8_t)(c + 1));
            float mid = (float)((lo + hi) / 2);
            uint8_t s = sg ? 0x80 : 0;
            if (sg)
                mid = -mid;
            cr_assert_eq(pc_gpu_f32_to_e4m3(mid), s | ((c & 1) ? c + 1 : c), "tie %02x", c);
            cr_assert_eq(pc_gpu_f32_to_e4m3(nextafterf(mid, 0.0f)), s | c);
            cr_assert_eq(pc_gpu_f32_to_e4m3(nextafterf(mid, sg ? -INFINITY : INFINITY)), s | (c + 1));
        }
    }
    /* saturation, infinities, NaN */
    float sat[] = {448.0f, 448.5f, 463.99f, 464.0f, 480.0f, 1e30f, FLT_MAX, INFINITY};
    for (size_t k = 0; k < sizeof sat / sizeof *sat; k++) {
        cr_assert_eq(pc_gpu_f32_to_e4m3(sat[k]), 0x7e);
        cr_assert_eq(pc_gpu_f32_to_e4m3(-sat[k]), 0xfe);
    }
    cr_assert_eq(pc_gpu_f32_to_e4m3(NAN), 0x7f);
    cr_assert_eq(pc_gpu_f32_to_e4m3(-NAN), 0xff);
    cr_assert_eq(pc_gpu_f32_to_e4m3(0x1p-10f), 0x00); /* tie with 0: even */
    cr_assert_eq(pc_gpu_f32_to_e4m3(-0x1p-11f), 0x80);
    cr_assert_eq(pc_gpu_f32_to_e4m3(FLT_TRUE_MIN), 0x00);
    /* random floats against the search; monotone along a sorted sweep */
    for (int k = 0; k < 20000; k++) {
        uint32_t b = (uint32_t)rnd();
        b = (b & 0x807fffffu) | ((uint32_t)(112 + (b >> 23) % 28) << 23);
        float f = bitsf(b);
        cr_assert_eq(pc_gpu_f32_to_e4m3(f), ref_f32_to_e4m3(f), "f=%a", (double)f);
    }
    float prev = -INFINITY;
    for (float x = -500.0f; x <= 500.0f; x += 0.0371f) {
        float v = pc_gpu_e4m3_to_f32(pc_gpu_f32_to_e4m3(x));
        cr_assert_geq(v, prev);
        prev = v;
    }
}

Test(gpu_conv, int8)
{
    float cases[] = {0.0f, -0.0f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 0.49999997f, -0.49999997f,
                     126.5f, 127.0f, 127.49f, 128.0f, -128.0f, 1e30f, -INFINITY, INFINITY};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        cr_assert_eq(pc_gpu_f32_to_i8(cases[k]), ref_f32_to_i8(cases[k]), "%a", (double)cases[k]);
    cr_assert_eq(pc_gpu_f32_to_i8(2.5f), 3); /* half away from zero */
    cr_assert_eq(pc_gpu_f32_to_i8(-2.5f), -3);
    cr_assert_eq(pc_gpu_f32_to_i8(NAN), 0);
    cr_assert_eq(pc_gpu_f32_to_i8(-1000.0f), -127); /* symmetric: never -128 */
    for (int k = 0; k < 100000; k++) {
        float y = (float)((double)(rnd() >> 11) / 9007199254740992.0 * 300.0 - 150.0);
        if (k % 3 == 0)
            y = (float)((int)y) + 0.5f;
        cr_assert_eq(pc_gpu_f32_to_i8(y), ref_f32_to_i8(y), "%a", (double)y);
    }
}

/* ---- the kernels against naive loops ------------------------------------------------------ */

typedef struct shape {
    uint32_t L, H, D, P, E;
} shape;

static const shape shapes[] = {
    {1, 1, 1, 1, 1}, {2, 3, 5, 7, 2}, {3, 2, 8, 16, 4}, {2, 4, 64, 1, 2},
    {1, 8, 128, 16, 2}, {4, 1, 3, 3, 1}, {2, 2, 16, 5, 1}, {1, 3, 7, 2, 4},
};
#define NSHAPES (sizeof shapes / sizeof *shapes)
#define CAP 7

static pc_gpu_geom geom_of(shape s, uint32_t elem)
{
    pc_gpu_geom g = {.layers = s.L, .kv_heads = s.H, .head_dim = s.D, .page_tokens = s.P,
                     .elem_bytes = elem, .capacity = CAP};
    return g;
}

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* Naive byte offset in the pool: block, layer, K|V, token, head, dim. */
static size_t ref_pool_off(shape s, uint32_t E, uint32_t b, uint32_t l, uint32_t kv,
                           uint32_t t, uint32_t h, uint32_t d)
{
    size_t block = (size_t)2 * s.L * s.P * s.H * s.D * E;
    size_t region = (size_t)s.P * s.H * s.D * E;
    return b * block + (2 * l + kv) * region + (((size_t)t * s.H + h) * s.D + d) * E;
}

/* Naive offset in a contiguous buffer [i][token][head][dim] (or a paged
 * cache [paged block][token][head][dim]). */
static size_t ref_buf_off(shape s, uint32_t E, uint32_t i, uint32_t t, uint32_t h, uint32_t d)
{
    return ((((size_t)i * s.P + t) * s.H + h) * s.D + d) * E;
}

Test(gpu_kernels, gather_scatter_bitexact)
{
    for (size_t si = 0; si < NSHAPES; si++) {
        shape s = shapes[si];
        uint32_t E = s.E;
        pc_gpu_geom g = geom_of(s, E);
        size_t pool_bytes = CAP * pc_gpu_block_bytes(&g), kvb = pc_gpu_kv_bytes(&g);
        uint32_t ids[5] = {3, 0, 6, 3, 1}, sids[4] = {5, 2, 0, 4}; /* gather may repeat */
        for (size_t mis = 0; mis < 4; mis++) { /* misalign buffers: widths 16..1 */
            size_t off = (size_t[]){0, 1, 2, 8}[mis];
            uint8_t *pool = malloc(pool_bytes + 16), *pool2 = malloc(pool_bytes + 16);
            uint8_t *k = malloc(5 * kvb + 16), *v = malloc(5 * kvb + 16);
            uint8_t *rk = malloc(5 * kvb), *rv = malloc(5 * kvb);
            fill(pool + off, pool_bytes);
            for (uint32_t l = 0; l < s.L; l++) {
                cr_assert_eq(pc_gpu_gather_cpu(&g, pool + off, ids, 5, l, k + off, v + off), 0);
                for (uint32_t i = 0; i < 5; i++)
                    for (uint32_t t = 0; t < s.P; t++)
                        for (uint32_t h = 0; h < s.H; h++)
                            for (uint32_t d = 0; d < s.D; d++) {
                                size_t b = ref_buf_off(s, E, i, t, h, d);
                                memcpy(rk + b, pool + off + ref_pool_off(s, E, ids[i], l, 0, t, h, d), E);
                                memcpy(rv + b, pool + off + ref_pool_off(s, E, ids[i], l, 1, t, h, d), E);
                            }
                cr_assert(!memcmp(k + off, rk, 5 * kvb), "shape %zu layer %u", si, l);
                cr_assert(!memcmp(v + off, rv, 5 * kvb), "shape %zu layer %u", si, l);
                /* scatter fresh bytes into 4 distinct blocks */
                fill(k + off, 4 * kvb);
                fill(v + off, 4 * kvb);
                memcpy(pool2, pool + off, pool_bytes);
                cr_assert_eq(pc_gpu_scatter_cpu(&g, pool + off, sids, 4, l, k + off, v + off), 0);
                for (uint32_t i = 0; i < 4; i++)
                    for (uint32_t t = 0; t < s.P; t++)
                        for (uint32_t h = 0; h < s.H; h++)
                            for (uint32_t d = 0; d < s.D; d++) {
                                size_t b = ref_buf_off(s, E, i, t, h, d);
                                memcpy(pool2 + ref_pool_off(s, E, sids[i], l, 0, t, h, d), k + off + b, E);
                                memcpy(pool2 + ref_pool_off(s, E, sids[i], l, 1, t, h, d), v + off + b, E);
                            }
                cr_assert(!memcmp(pool + off, pool2, pool_bytes), "scatter shape %zu", si);
            }
            free(pool), free(pool2), free(k), free(v), free(rk), free(rv);
        }
    }
}

Test(gpu_kernels, paged_bitexact)
{
    enum { NB = 9 };
    for (size_t si = 0; si < NSHAPES; si++) {
        shape s = shapes[si];
        uint32_t E = s.E;
        pc_gpu_geom g = geom_of(s, E);
        size_t pool_bytes = CAP * pc_gpu_block_bytes(&g), kvb = pc_gpu_kv_bytes(&g);
        uint8_t *pool = malloc(pool_bytes), *pool2 = malloc(pool_bytes);
        void *kc[4], *vc[4];
        uint8_t *rk[4], *rv[4];
        for (uint32_t l = 0; l < s.L; l++) {
            kc[l] = malloc(NB * kvb), vc[l] = malloc(NB * kvb);
            rk[l] = malloc(NB * kvb), rv[l] = malloc(NB * kvb);
            fill(kc[l], NB * kvb), fill(vc[l], NB * kvb);
            memcpy(rk[l], kc[l], NB * kvb), memcpy(rv[l], vc[l], NB * kvb);
        }
        fill(pool, pool_bytes);
        uint32_t pids[3] = {6, 1, 2}, qids[3] = {8, 0, 4};
        cr_assert_eq(pc_gpu_pool_to_paged_cpu(&g, pool, pids, qids, 3, NB, kc, vc), 0);
        for (uint32_t i = 0; i < 3; i++)
            for (uint32_t l = 0; l < s.L; l++)
                for (uint32_t t = 0; t < s.P; t++)
                    for (uint32_t h = 0; h < s.H; h++)
                        for (uint32_t d = 0; d < s.D; d++) {
                            size_t q = ref_buf_off(s, E, qids[i], t, h, d);
                            memcpy(rk[l] + q, pool + ref_pool_off(s, E, pids[i], l, 0, t, h, d), E);
                            memcpy(rv[l] + q, pool + ref_pool_off(s, E, pids[i], l, 1, t, h, d), E);
                        }
        for (uint32_t l = 0; l < s.L; l++) {
            cr_assert(!memcmp(kc[l], rk[l], NB * kvb), "to paged, shape %zu", si);
            cr_assert(!memcmp(vc[l], rv[l], NB * kvb), "to paged, shape %zu", si);
            fill(kc[l], NB * kvb), fill(vc[l], NB * kvb);
        }
        memcpy(pool2, pool, pool_bytes);
        uint32_t qids2[3] = {7, 3, 5};
        cr_assert_eq(pc_gpu_paged_to_pool_cpu(&g, pool, pids, qids2, 3, NB,
                                              (const void *const *)kc, (const void *const *)vc), 0);
        for (uint32_t i = 0; i < 3; i++)
            for (uint32_t l = 0; l < s.L; l++)
                for (uint32_t t = 0; t < s.P; t++)
                    for (uint32_t h = 0; h < s.H; h++)
                        for (uint32_t d = 0; d < s.D; d++) {
                            size_t q = ref_buf_off(s, E, qids2[i], t, h, d);
                            memcpy(pool2 + ref_pool_off(s, E, pids[i], l, 0, t, h, d), (uint8_t *)kc[l] + q, E);
                            memcpy(pool2 + ref_pool_off(s, E, pids[i], l, 1, t, h, d), (uint8_t *)vc[l] + q, E);
                        }
        cr_assert(!memcmp(pool, pool2, pool_bytes), "from paged, shape %zu", si);
        for (uint32_t l = 0; l < s.L; l++)
            free(kc[l]), free(vc[l]), free(rk[l]), free(rv[l]);
        free(pool), free(pool2);
    }
}

/* Reference loads and stores of the contiguous buffers. */
static float ref_load(const void *p, pc_gpu_elem t, size_t i)
{
    if (t == PC_GPU_F32)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == PC_GPU_F16 ? (float)ref_f16_value(h) : bitsf((uint32_t)h << 16);
}

static void ref_store(void *p, pc_gpu_elem t, size_t i, float v)
{
    if (t == PC_GPU_F32) {
        ((float *)p)[i] = v;
        return;
    }
    uint16_t *o = (uint16_t *)p + i;
    uint16_t s = signbit(v) ? 0x8000 : 0;
    if (isnan(v))
        *o = t == PC_GPU_F16 ? (uint16_t)(s | 0x7e00) : (uint16_t)(s | 0x7fc0);
    else if (t == PC_GPU_F16)
        *o = ref_f32_to_f16(v);
    else /* bf16: nearest of the two truncation neighbours, ties to even */
    {
        uint32_t b = fbits(v), lo = b >> 16, hi = lo + 1;
        double dlo = fabs((double)v - bitsf(lo << 16));
        double dhi = (hi & 0x7fff) == 0x7f80 ? fabs(ldexp(1.0, 128) - fabs((double)v))
                                             : fabs((double)bitsf(hi << 16) - v);
        *o = (uint16_t)(dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1) ? hi : lo);
    }
}

/* A source value of one of several characters, per group. */
static float gen_value(int kind, int k)
{
    double u = (double)(rnd() >> 11) / 9007199254740992.0 * 2 - 1;
    switch (kind) {
    case 0: return (float)(u * 3);                         /* plain */
    case 1: return (float)ldexp(u, (int)(rnd() % 40) - 20); /* wide range */
    case 2: return 0.0f;                                    /* all zero */
    case 3: return 1.25f;                                   /* all equal */
    case 4: return bitsf((uint32_t)(rnd() & 0x807fffffu));  /* fp32 denormals */
    case 5: return (float)(u * 3e38);                       /* huge */
    default: /* some NaN and inf among plain values */
        return k % 7 == 0 ? NAN : k % 11 == 0 ? -INFINITY : k % 13 == 0 ? INFINITY : (float)(u * 5);
    }
}

static void gen_src(void *buf, pc_gpu_elem t, size_t n, int kind)
{
    for (size_t i = 0; i < n; i++) {
        float f = gen_value(kind, (int)i);
        if (t == PC_GPU_F32)
            ((float *)buf)[i] = f;
        else
            ((uint16_t *)buf)[i] = t == PC_GPU_F16 ? pc_gpu_f32_to_f16(f) : pc_gpu_f32_to_bf16(f);
    }
}

/* Naive quantize-on-store for one layer. */
static void ref_store_quant(shape s, pc_gpu_qfmt q, uint8_t *pool, float *scales,
                            const uint32_t *ids, uint32_t n, uint32_t l, pc_gpu_elem t,
                            const void *sk, const void *sv)
{
    float qmax = q == PC_GPU_Q_FP8 ? 448.0f : 127.0f;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t kv = 0; kv < 2; kv++)
            for (uint32_t h = 0; h < s.H; h++) {
                const void *src = kv ? sv : sk;
                float amax = 0;
                for (uint32_t tk = 0; tk < s.P; tk++)
                    for (uint32_t d = 0; d < s.D; d++) {
                        float x = ref_load(src, t, ref_buf_off(s, 1, i, tk, h, d));
                        if (isfinite(x) && fabsf(x) > amax)
                            amax = fabsf(x);
                    }
                float sc = amax == 0 ? 1.0f : amax / qmax;
                if (sc < FLT_MIN)
                    sc = FLT_MIN;
                scales[(((size_t)ids[i] * s.L + l) * 2 + kv) * s.H + h] = sc;
                for (uint32_t tk = 0; tk < s.P; tk++)
                    for (uint32_t d = 0; d < s.D; d++) {
                        float x = ref_load(src, t, ref_buf_off(s, 1, i, tk, h, d));
                        uint8_t c;
                        if (q == PC_GPU_Q_FP8)
                            c = isnan(x) ? (uint8_t)((signbit(x) ? 0x80 : 0) | 0x7f) : ref_f32_to_e4m3(x / sc);
                        else
                            c = (uint8_t)ref_f32_to_i8(isnan(x) ? NAN : x / sc);
                        pool[ref_pool_off(s, 1, ids[i], l, kv, tk, h, d)] = c;
                    }
            }
}

static void ref_gather_dequant(shape s, pc_gpu_qfmt q, const uint8_t *pool, const float *scales,
                               const uint32_t *ids, uint32_t n, uint32_t l, pc_gpu_elem t,
                               void *dk, void *dv)
{
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t kv = 0; kv < 2; kv++)
            for (uint32_t h = 0; h < s.H; h++) {
                float sc = scales[(((size_t)ids[i] * s.L + l) * 2 + kv) * s.H + h];
                for (uint32_t tk = 0; tk < s.P; tk++)
                    for (uint32_t d = 0; d < s.D; d++) {
                        uint8_t c = pool[ref_pool_off(s, 1, ids[i], l, kv, tk, h, d)];
                        float v;
                        if (q == PC_GPU_Q_FP8 && (c & 0x7f) == 0x7f)
                            v = bitsf(((uint32_t)(c & 0x80) << 24) | 0x7fc00000u);
                        else
                            v = (float)(q == PC_GPU_Q_FP8 ? ref_e4m3_value(c) : (int8_t)c) * sc;
                        ref_store(kv ? dv : dk, t, ref_buf_off(s, 1, i, tk, h, d), v);
                    }
            }
}

/* The documented bound (docs/gpu.md, gpu/kernels.h) for a finite x. */
static double bound(pc_gpu_qfmt q, double x, double sc)
{
    if (q == PC_GPU_Q_FP8)
        return ldexp(fabs(x), -4) + ldexp(sc, -10) + ldexp(fabs(x) + sc, -22);
    return sc * (0.5 + ldexp(1, -16)) + ldexp(fabs(x), -22);
}

Test(gpu_kernels, quant_bitexact_and_bound)
{
    uint32_t ids[3] = {4, 0, 6};
    for (size_t si = 0; si < NSHAPES; si++) {
        shape s = shapes[si];
        pc_gpu_geom g = geom_of(s, 1);
        size_t pool_bytes = CAP * pc_gpu_block_bytes(&g), kve = pc_gpu_kv_elems(&g);
        size_t nscales = (size_t)CAP * s.L * 2 * s.H;
        uint8_t *pool = calloc(1, pool_bytes), *rpool = calloc(1, pool_bytes);
        float *sc = calloc(nscales, 4), *rsc = calloc(nscales, 4);
        void *sk = malloc(3 * kve * 4), *sv = malloc(3 * kve * 4);
        void *dk = malloc(3 * kve * 4), *dv = malloc(3 * kve * 4);
        void *rk = malloc(3 * kve * 4), *rv = malloc(3 * kve * 4);
        void *fk = malloc(3 * kve * 4), *fv = malloc(3 * kve * 4);
        for (int qi = 0; qi < 2; qi++)
            for (int ti = 0; ti < 3; ti++)
                for (int kind = 0; kind < 7; kind++) {
                    pc_gpu_qfmt q = (pc_gpu_qfmt)qi;
                    pc_gpu_elem t = (pc_gpu_elem)ti;
                    uint32_t l = (uint32_t)(kind % s.L);
                    gen_src(sk, t, 3 * kve, kind);
                    gen_src(sv, t, 3 * kve, (kind + 1) % 7);
                    cr_assert_eq(pc_gpu_store_quant_cpu(&g, q, pool, sc, ids, 3, l, t, sk, sv), 0);
                    ref_store_quant(s, q, rpool, rsc, ids, 3, l, t, sk, sv);
                    cr_assert(!memcmp(pool, rpool, pool_bytes), "pool: shape %zu q %d t %d kind %d", si, qi, ti, kind);
                    cr_assert(!memcmp(sc, rsc, nscales * 4), "scales: shape %zu q %d t %d kind %d", si, qi, ti, kind);
                    cr_assert_eq(pc_gpu_gather_dequant_cpu(&g, q, pool, sc, ids, 3, l, t, dk, dv), 0);
                    ref_gather_dequant(s, q, rpool, rsc, ids, 3, l, t, rk, rv);
                    size_t eb = pc_gpu_elem_bytes(t);
                    cr_assert(!memcmp(dk, rk, 3 * kve * eb), "deq: shape %zu q %d t %d kind %d", si, qi, ti, kind);
                    cr_assert(!memcmp(dv, rv, 3 * kve * eb), "deq: shape %zu q %d t %d kind %d", si, qi, ti, kind);
                    /* the bound, on fp32 output (no second rounding) */
                    cr_assert_eq(pc_gpu_gather_dequant_cpu(&g, q, pool, sc, ids, 3, l, PC_GPU_F32, fk, fv), 0);
                    for (uint32_t i = 0; i < 3; i++)
                        for (uint32_t kv = 0; kv < 2; kv++)
                            for (uint32_t tk = 0; tk < s.P; tk++)
                                for (uint32_t h = 0; h < s.H; h++)
                                    for (uint32_t d = 0; d < s.D; d++) {
                                        size_t e = ref_buf_off(s, 1, i, tk, h, d);
                                        double x = ref_load(kv ? sv : sk, t, e);
                                        double y = ((float *)(kv ? fv : fk))[e];
                                        double scale = sc[(((size_t)ids[i] * s.L + l) * 2 + kv) * s.H + h];
                                        if (isnan(x)) {
                                            cr_assert(q == PC_GPU_Q_FP8 ? isnan(y) : y == 0);
                                        } else if (isinf(x)) { /* saturated: +-QMAX x scale */
                                            double qm = q == PC_GPU_Q_FP8 ? 448 : 127;
                                            cr_assert_eq(y, copysign((float)(qm * scale), x));
                                        } else {
                                            cr_assert_leq(fabs(x - y), bound(q, x, scale),
                                                          "x=%a y=%a s=%a q=%d", x, y, scale, qi);
                                        }
                                    }
                }
        free(pool), free(rpool), free(sc), free(rsc), free(sk), free(sv);
        free(dk), free(dv), free(rk), free(rv), free(fk), free(fv);
    }
}

Test(gpu_kernels, scales_of_special_blocks)
{
    cr_assert_eq(pc_gpu_scale(0.0f, PC_GPU_Q_FP8), 1.0f);     /* all zero (or nothing finite) */
    cr_assert_eq(pc_gpu_scale(448.0f, PC_GPU_Q_FP8), 1.0f);
    cr_assert_eq(pc_gpu_scale(127.0f, PC_GPU_Q_INT8), 1.0f);
    cr_assert_eq(pc_gpu_scale(FLT_TRUE_MIN, PC_GPU_Q_FP8), FLT_MIN); /* floored */
    float a = 0.0f;
    a = pc_gpu_amax_step(a, -3.0f);
    a = pc_gpu_amax_step(a, NAN);
    a = pc_gpu_amax_step(a, -INFINITY);
    a = pc_gpu_amax_step(a, 2.0f);
    cr_assert_eq(a, 3.0f);
    /* an all-equal block round-trips to itself within one scale rounding */
    float s = pc_gpu_scale(1.25f, PC_GPU_Q_FP8);
    cr_assert_eq(pc_gpu_quantize(1.25f, s, PC_GPU_Q_FP8), 0x7e);
    cr_assert_eq(pc_gpu_dequantize(0x7e, s, PC_GPU_Q_FP8), 448.0f * s);
    cr_assert_eq(pc_gpu_quantize(-NAN, s, PC_GPU_Q_FP8), 0xff);
    cr_assert_eq(pc_gpu_quantize(NAN, s, PC_GPU_Q_INT8), 0);
}

/* The kernels address blocks exactly as blockpool/ lays them out. */
Test(gpu_kernels, geometry_matches_the_pool_layout)
{
    pc_dtype dts[] = {PC_DTYPE_FP32, PC_DTYPE_FP16, PC_DTYPE_BF16, PC_DTYPE_FP8, PC_DTYPE_INT8};
    for (size_t si = 0; si < NSHAPES; si++)
        for (size_t di = 0; di < 5; di++) {
            shape s = shapes[si];
            pc_pool_layout l;
            pc_gpu_geom g;
            cr_assert_eq(pc_pool_layout_init(&l, s.L, s.H, s.D, s.P, dts[di]), 0);
            cr_assert_eq(pc_gpu_geom_from_layout(&l, CAP, &g), 0);
            cr_assert_eq(g.elem_bytes, pc_dtype_bytes(dts[di]));
            cr_assert_eq(pc_gpu_kv_bytes(&g), l.kv_bytes);
            cr_assert_eq(pc_gpu_block_bytes(&g), l.block_bytes);
            for (uint32_t layer = 0; layer < s.L; layer++)
                for (uint32_t kv = 0; kv < 2; kv++)
                    cr_assert_eq(pc_gpu_pool_off(&g, 5, layer, kv),
                                 5 * l.block_bytes + pc_pool_layout_offset(&l, layer, (int)kv));
        }
    pc_gpu_geom g;
    cr_assert_eq(pc_gpu_geom_from_layout(NULL, 1, &g), PC_E_INVAL);
}

/* ---- refusals ------------------------------------------------------------------------------ */

Test(gpu_kernels, bad_input)
{
    pc_gpu_geom g = geom_of(shapes[1], 2), bad = g;
    uint8_t pool[4096] = {0}, k[1024] = {0}, v[1024] = {0};
    float sc[256] = {0};
    uint32_t ids[2] = {0, CAP};
    cr_assert_eq(pc_gpu_gather_cpu(&g, pool, ids, 0, 0, NULL, NULL), 0); /* n = 0: nothing */
    cr_assert_eq(pc_gpu_gather_cpu(NULL, pool, ids, 1, 0, k, v), PC_E_INVAL);
    cr_assert_eq(pc_gpu_gather_cpu(&g, pool, ids, 1, 2, k, v), PC_E_INVAL); /* layer */
    cr_assert_eq(pc_gpu_gather_cpu(&g, pool, ids, 1, 0, NULL, v), PC_E_INVAL);
    cr_assert_eq(pc_gpu_gather_cpu(&g, pool, ids, 2, 0, k, v), PC_E_RANGE); /* id = capacity */
    bad.elem_bytes = 3;
    cr_assert_eq(pc_gpu_gather_cpu(&bad, pool, ids, 1, 0, k, v), PC_E_INVAL);
    bad = g, bad.head_dim = 0;
    cr_assert_eq(pc_gpu_geom_check(&bad), PC_E_INVAL);
    bad = g, bad.capacity = UINT64_MAX / 2;
    cr_assert_eq(pc_gpu_geom_check(&bad), PC_E_RANGE);
    /* quantized calls want a 1-byte pool and known formats */
    cr_assert_eq(pc_gpu_store_quant_cpu(&g, PC_GPU_Q_FP8, pool, sc, ids, 1, 0, PC_GPU_F32, k, v), PC_E_INVAL);
    pc_gpu_geom g1 = geom_of(shapes[1], 1);
    cr_assert_eq(pc_gpu_store_quant_cpu(&g1, (pc_gpu_qfmt)7, pool, sc, ids, 1, 0, PC_GPU_F32, k, v), PC_E_INVAL);
    cr_assert_eq(pc_gpu_gather_dequant_cpu(&g1, PC_GPU_Q_INT8, pool, sc, ids, 1, 0, (pc_gpu_elem)9, k, v), PC_E_INVAL);
    cr_assert_eq(pc_gpu_gather_dequant_cpu(&g1, PC_GPU_Q_INT8, pool, sc, ids, 2, 0, PC_GPU_F16, k, v), PC_E_RANGE);
    void *kc[2] = {k, NULL}, *vc[2] = {v, v};
    uint32_t q[1] = {0};
    cr_assert_eq(pc_gpu_pool_to_paged_cpu(&g, pool, ids, q, 1, 1, kc, vc), PC_E_INVAL);
    kc[1] = k;
    cr_assert_eq(pc_gpu_pool_to_paged_cpu(&g, pool, ids, q, 1, 0, kc, vc), PC_E_RANGE);
}

/* Compiled with nvcc: the launchers refuse bad arguments on the host, and
 * without a GPU a launch fails cleanly.  With a GPU this is not the place
 * to launch on host pointers: skip. */
Test(gpu_kernels, launch_without_gpu)
{
#ifdef PC_HAVE_CUDA
    pc_gpu_geom g = geom_of(shapes[1], 2);
    uint8_t pool[16] = {0}, k[16] = {0}, v[16] = {0};
    uint32_t ids[1] = {0};
    cr_assert_eq(pc_gpu_gather_launch(&g, pool, ids, 1, 9, k, v, NULL), PC_E_INVAL);
    cr_assert_eq(pc_gpu_gather_launch(&g, pool, ids, 0, 0, k, v, NULL), 0);
    cr_assert_eq(pc_gpu_store_quant_launch(&g, PC_GPU_Q_FP8, pool, NULL, ids, 1, 0, PC_GPU_F32, k, v, NULL),
                 PC_E_INVAL);
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0)
        cr_skip_test("a GPU is present: the device tests are elsewhere");
    cr_assert_eq(pc_gpu_gather_launch(&g, pool, ids, 1, 0, k, v, NULL), PC_E_IO);
#else
    cr_skip_test("built without CUDA");
#endif
}

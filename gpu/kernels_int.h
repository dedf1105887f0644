/*
 * gpu/kernels_int.h - what kernels_cpu.c and kernels.cu share and nobody
 * else needs: the host-side argument checks, so that the CPU loops and the
 * CUDA launchers refuse exactly the same calls.
 */
#ifndef PC_GPU_KERNELS_INT_H
#define PC_GPU_KERNELS_INT_H

#include "gpu/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Kinds of call, for the checks below. */
enum { PC_GPU_CALL_COPY = 0, PC_GPU_CALL_PAGED, PC_GPU_CALL_QUANT };

/*
 * The checks every call makes before touching memory: a valid geometry,
 * layer < layers (unused for PAGED), for QUANT a 1-byte pool and valid q
 * and t, n x 2 x kv_bytes (x layers for PAGED) within 64 bits (PC_E_RANGE),
 * and, when n > 0, no NULL among ptrs[0..nptrs).  0 or PC_E_*.
 */
int pc_gpu_check_call(const pc_gpu_geom *g, int kind, uint32_t n, uint32_t layer, int q,
                      int t, const void *const *ptrs, int nptrs);

#ifdef __cplusplus
}
#endif

#endif /* PC_GPU_KERNELS_INT_H */

/*
 * gpu/cuda_dev.c - the device operations on the CUDA runtime (built only
 * when CMake found the toolkit: PC_HAVE_CUDA).  Plain C against
 * cuda_runtime_api.h: nothing here needs nvcc; kernels come through the
 * launch hook, compiled elsewhere.
 *
 *   alloc   cudaMalloc on `dev` (one allocation per pool: legacy IPC covers
 *           cudaMalloc'd memory only, not VMM or cudaMallocAsync pools)
 *   export  cudaIpcGetMemHandle on the allocation's base; the 64 handle
 *           bytes travel as the payload of a pc_gpu_handle, next to the
 *           device's UUID and the allocation's size (gpu/dev_int.h)
 *   import  UUID of `dev` must equal the handle's (devices are matched by
 *           UUID: indices differ between processes with other
 *           CUDA_VISIBLE_DEVICES) -> cudaIpcOpenMemHandle once per process,
 *           reference-counted, since cudaIpcCloseMemHandle unmaps for every
 *           user in the process; our own handle returns the allocation
 *           (the runtime refuses to open a handle in its exporter)
 *   copies  cudaMemcpyAsync on the caller's stream (NULL: legacy default)
 *   events  cudaEventDisableTiming: they are for waiting, not timing
 *
 * The current device is per thread and callers have their own idea of it:
 * every call that must run on `dev` sets it and puts the caller's back.
 *
 * Errors: see map() below; a runtime error that is not sticky is cleared
 * (cudaGetLastError) so that it is not reported again by a later call.
 * None of this has run on a GPU yet (there was none): the test skips.
 */
#include "gpu/dev_int.h"

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct cuda_alloc {
    void *base;
    uint64_t bytes;
    int dev;
    bool exported;
    cudaIpcMemHandle_t ipc; /* valid once exported */
    struct cuda_alloc *next;
} cuda_alloc;

struct pc_gpu_stream {
    cudaStream_t s;
    int dev;
};

struct pc_gpu_event {
    cudaEvent_t e;
    int dev;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static cuda_alloc *g_allocs;
static const pc_gpu__mapper g_mapper;
static pc_gpu__imports g_imp = {PTHREAD_MUTEX_INITIALIZER, NULL, &g_mapper};

_Static_assert(sizeof(cudaIpcMemHandle_t) <= PC_GPU_PAYLOAD,
               "a CUDA IPC handle fits the payload");

/* The runtime's codes in ours.  Reviewed one by one against what each
 * call here can return (CUDA 13 runtime API reference). */
static int map(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return 0;
    case cudaErrorMemoryAllocation:      /* cudaMalloc, stream/event create */
        return PC_E_NOMEM;
    case cudaErrorInvalidValue:          /* a bad argument we did not catch  */
    case cudaErrorInvalidDevicePointer:  /* free/export of a non-base        */
    case cudaErrorInvalidMemcpyDirection:
    case cudaErrorInvalidResourceHandle: /* a destroyed stream or event      */
        return PC_E_INVAL;
    case cudaErrorNoDevice:              /* no GPU, or none visible          */
    case cudaErrorInvalidDevice:         /* an index past the count          */
    case cudaErrorInsufficientDriver:    /* no (or too old a) driver         */
    case cudaErrorDevicesUnavailable:    /* exclusive-process mode, taken    */
    case cudaErrorMapBufferObjectFailed: /* IPC open: exporter freed it      */
        return PC_E_NOENT;
    case cudaErrorPeerAccessUnsupported: /* IPC open across unpeered GPUs    */
        return PC_E_PERM;
    case cudaErrorTooManyPeers:
        return PC_E_LIMIT;
    case cudaErrorNotReady:              /* event/stream query: pending      */
        return PC_E_BUSY;
    default:                             /* launch failures, ECC, a sticky
                                            context error, IPC unsupported */
        return PC_E_IO;
    }
}

/* map() after a failed call, clearing the runtime's last error. */
static int fail(cudaError_t e)
{
    (void)cudaGetLastError();
    return map(e);
}

/* Runs on `dev` from here to leave_dev(). */
static int enter_dev(int dev, int *saved)
{
    cudaError_t e = cudaGetDevice(saved);
    if (e != cudaSuccess)
        return fail(e);
    if (*saved != dev && (e = cudaSetDevice(dev)) != cudaSuccess)
        return fail(e);
    return 0;
}

static void leave_dev(int dev, int saved)
{
    if (saved != dev)
        (void)cudaSetDevice(saved);
}

static int cuda_device_count(int *n)
{
    if (!n)
        return PC_E_INVAL;
    *n = 0;
    cudaError_t e = cudaGetDeviceCount(n);
    if (e != cudaSuccess) {
        *n = 0;
        return fail(e);
    }
    return 0;
}

static int cuda_props(int dev, struct cudaDeviceProp *p)
{
    if (dev < 0)
        return PC_E_NOENT;
    cudaError_t e = cudaGetDeviceProperties(p, dev);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_device_uuid(int dev, pc_gpu_uuid *out)
{
    if (!out)
        return PC_E_INVAL;
    struct cudaDeviceProp p;
    int rc = cuda_props(dev, &p);
    if (!rc)
        memcpy(out->b, p.uuid.bytes, PC_GPU_UUID_BYTES);
    return rc;
}

static int cuda_device_name(int dev, char *buf, size_t len)
{
    if (!buf || !len)
        return PC_E_INVAL;
    struct cudaDeviceProp p;
    int rc = cuda_props(dev, &p);
    if (!rc) {
        size_t n = strnlen(p.name, sizeof(p.name));
        n = n < len - 1 ? n : len - 1;
        memcpy(buf, p.name, n);
        buf[n] = '\0';
    }
    return rc;
}

static int cuda_alloc_fn(int dev, uint64_t bytes, void **dptr)
{
    if (!dptr)
        return PC_E_INVAL;
    *dptr = NULL;
    if (!bytes || dev < 0)
        return bytes ? PC_E_NOENT : PC_E_INVAL;
    if (bytes > SIZE_MAX)
        return PC_E_RANGE;
    cuda_alloc *a = calloc(1, sizeof(*a));
    if (!a)
        return PC_E_NOMEM;
    int saved, rc = enter_dev(dev, &saved);
    if (!rc) {
        cudaError_t e = cudaMalloc(&a->base, (size_t)bytes);
        rc = e == cudaSuccess ? 0 : fail(e);
        leave_dev(dev, saved);
    }
    if (rc) {
        free(a);
        return rc;
    }
    a->bytes = bytes;
    a->dev = dev;
    pthread_mutex_lock(&g_lock);
    a->next = g_allocs;
    g_allocs = a;
    pthread_mutex_unlock(&g_lock);
    *dptr = a->base;
    return 0;
}

static int cuda_free_fn(void *dptr)
{
    if (!dptr)
        return PC_E_INVAL;
    cuda_alloc *a = NULL;
    pthread_mutex_lock(&g_lock);
    for (cuda_alloc **pp = &g_allocs; *pp; pp = &(*pp)->next)
        if ((*pp)->base == dptr) {
            a = *pp;
            *pp = a->next;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    if (!a)
        return PC_E_INVAL;
    pc_gpu__import_forget(&g_imp, dptr);
    /* cudaFree synchronizes the device: no copy is still using it. */
    cudaError_t err = cudaFree(dptr);
    free(a);
    return err == cudaSuccess ? 0 : fail(err);
}

static int cuda_export(const void *dptr, pc_gpu_handle *out)
{
    if (!dptr || !out)
        return PC_E_INVAL;
    int rc = PC_E_INVAL; /* not one of our allocations' bases */
    pthread_mutex_lock(&g_lock);
    for (cuda_alloc *a = g_allocs; a; a = a->next) {
        if (a->base != dptr)
            continue;
        pc_gpu_uuid u;
        rc = cuda_device_uuid(a->dev, &u);
        if (!rc && !a->exported) {
            cudaError_t e = cudaIpcGetMemHandle(&a->ipc, a->base);
            rc = e == cudaSuccess ? 0 : fail(e);
            a->exported = rc == 0;
        }
        if (!rc) {
            uint8_t payload[PC_GPU_PAYLOAD] = {0};
            memcpy(payload, &a->ipc, sizeof(a->ipc));
            pc_gpu__handle_pack(out, PC_GPU_KIND_CUDA, &u, a->bytes, payload);
        }
        break;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* The mapper (gpu/dev_int.h): own allocations by their IPC handle,
 * cudaIpcOpenMemHandle on `dev`, cudaIpcCloseMemHandle. */
static void *own_alloc(const uint8_t *key, uint64_t *bytes)
{
    void *base = NULL;
    pthread_mutex_lock(&g_lock);
    for (cuda_alloc *a = g_allocs; a && !base; a = a->next)
        if (a->exported && memcmp(&a->ipc, key, sizeof(a->ipc)) == 0) {
            base = a->base;
            *bytes = a->bytes;
        }
    pthread_mutex_unlock(&g_lock);
    return base;
}

static int ipc_open(int dev, const uint8_t *key, uint64_t bytes, void **base)
{
    (void)bytes; /* the runtime maps the whole allocation */
    cudaIpcMemHandle_t ipc;
    memcpy(&ipc, key, sizeof(ipc));
    int saved, rc = enter_dev(dev, &saved);
    if (!rc) {
        cudaError_t e = cudaIpcOpenMemHandle(base, ipc,
                                             cudaIpcMemLazyEnablePeerAccess);
        rc = e == cudaSuccess ? 0 : fail(e);
        leave_dev(dev, saved);
    }
    return rc;
}

static int ipc_close(void *base, uint64_t bytes)
{
    (void)bytes;
    cudaError_t e = cudaIpcCloseMemHandle(base);
    return e == cudaSuccess ? 0 : fail(e);
}

static const pc_gpu__mapper g_mapper = {own_alloc, ipc_open, ipc_close};

static int cuda_import(int dev, const pc_gpu_handle *h, void **dptr,
                       uint64_t *bytes)
{
    if (!h || !dptr)
        return PC_E_INVAL;
    *dptr = NULL;
    pc_gpu_uuid hu, mine;
    uint64_t n;
    uint8_t payload[PC_GPU_PAYLOAD];
    int rc = pc_gpu__handle_unpack(h, PC_GPU_KIND_CUDA, &hu, &n, payload);
    if (rc)
        return rc;
    if ((rc = cuda_device_uuid(dev, &mine)))
        return rc;
    if (memcmp(hu.b, mine.b, sizeof(mine.b)) != 0)
        return PC_E_PERM; /* another GPU (or host): IPC cannot reach it */

    return pc_gpu__import_open(&g_imp, dev, payload, n, dptr, bytes);
}

static int cuda_close(void *dptr)
{
    return pc_gpu__import_close(&g_imp, dptr);
}

static int cuda_copy(void *dst, const void *src, uint64_t bytes,
                     pc_gpu_copy_kind kind, pc_gpu_stream *s)
{
    enum cudaMemcpyKind k;
    switch (kind) {
    case PC_GPU_H2D: k = cudaMemcpyHostToDevice; break;
    case PC_GPU_D2H: k = cudaMemcpyDeviceToHost; break;
    case PC_GPU_D2D: k = cudaMemcpyDeviceToDevice; break;
    default: return PC_E_INVAL;
    }
    if (!dst || !src)
        return PC_E_INVAL;
    if (bytes > SIZE_MAX)
        return PC_E_RANGE;
    cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)bytes, k,
                                    s ? s->s : (cudaStream_t)0);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_launch(pc_gpu_stream *s, const pc_gpu_launch *l)
{
    if (!l || !l->device)
        return PC_E_INVAL;
    int rc = l->device(s ? (void *)s->s : NULL, l->args);
    if (rc)
        return rc;
    cudaError_t e = cudaPeekAtLastError(); /* a bad launch configuration */
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_host_alloc(uint64_t bytes, void **p)
{
    if (!p || !bytes)
        return PC_E_INVAL;
    *p = NULL;
    cudaError_t e = cudaHostAlloc(p, (size_t)bytes, cudaHostAllocPortable);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_host_free(void *p)
{
    if (!p)
        return PC_E_INVAL;
    cudaError_t e = cudaFreeHost(p);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_stream_create(int dev, pc_gpu_stream **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    pc_gpu_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return PC_E_NOMEM;
    int saved, rc = dev < 0 ? PC_E_NOENT : enter_dev(dev, &saved);
    if (!rc) {
        /* non-blocking: no implicit sync with the legacy default stream */
        cudaError_t e = cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking);
        rc = e == cudaSuccess ? 0 : fail(e);
        leave_dev(dev, saved);
    }
    if (rc) {
        free(s);
        return rc;
    }
    s->dev = dev;
    *out = s;
    return 0;
}

static int cuda_stream_destroy(pc_gpu_stream *s)
{
    if (!s)
        return PC_E_INVAL;
    cudaError_t e = cudaStreamDestroy(s->s);
    free(s);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_stream_sync(pc_gpu_stream *s)
{
    cudaError_t e = cudaStreamSynchronize(s ? s->s : (cudaStream_t)0);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_event_create(int dev, pc_gpu_event **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    pc_gpu_event *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return PC_E_NOMEM;
    int saved, rc = dev < 0 ? PC_E_NOENT : enter_dev(dev, &saved);
    if (!rc) {
        cudaError_t e = cudaEventCreateWithFlags(&ev->e, cudaEventDisableTiming);
        rc = e == cudaSuccess ? 0 : fail(e);
        leave_dev(dev, saved);
    }
    if (rc) {
        free(ev);
        return rc;
    }
    ev->dev = dev;
    *out = ev;
    return 0;
}

static int cuda_event_record(pc_gpu_event *ev, pc_gpu_stream *s)
{
    if (!ev)
        return PC_E_INVAL;
    cudaError_t e = cudaEventRecord(ev->e, s ? s->s : (cudaStream_t)0);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_event_query(pc_gpu_event *ev)
{
    if (!ev)
        return PC_E_INVAL;
    cudaError_t e = cudaEventQuery(ev->e);
    if (e == cudaErrorNotReady) {
        (void)cudaGetLastError(); /* not an error: clear it */
        return PC_E_BUSY;
    }
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_event_sync(pc_gpu_event *ev)
{
    if (!ev)
        return PC_E_INVAL;
    cudaError_t e = cudaEventSynchronize(ev->e);
    return e == cudaSuccess ? 0 : fail(e);
}

static int cuda_event_destroy(pc_gpu_event *ev)
{
    if (!ev)
        return PC_E_INVAL;
    cudaError_t e = cudaEventDestroy(ev->e);
    free(ev);
    return e == cudaSuccess ? 0 : fail(e);
}

const pc_gpu_ops pc_gpu_cuda_ops = {
    .name = "cuda",
    .device_count = cuda_device_count,
    .device_uuid = cuda_device_uuid,
    .device_name = cuda_device_name,
    .alloc = cuda_alloc_fn,
    .free = cuda_free_fn,
    .export_handle = cuda_export,
    .import_handle = cuda_import,
    .close_handle = cuda_close,
    .copy_async = cuda_copy,
    .launch = cuda_launch,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .stream_create = cuda_stream_create,
    .stream_destroy = cuda_stream_destroy,
    .stream_sync = cuda_stream_sync,
    .event_create = cuda_event_create,
    .event_record = cuda_event_record,
    .event_query = cuda_event_query,
    .event_sync = cuda_event_sync,
    .event_destroy = cuda_event_destroy,
};

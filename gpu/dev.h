/*
 * gpu/dev.h - device operations: one small table, two implementations.
 *
 * Everything the pool and the kernels need from a GPU goes through
 * pc_gpu_ops, the way blockpool/ puts its memory behind pc_pool_ops.  The
 * registry hands out an implementation by name:
 *
 *   pc_gpu_ops_get("cuda") ──► the CUDA runtime (NULL when not built)
 *   pc_gpu_ops_get("fake") ──► host shared memory that behaves like a device
 *
 * Sharing memory between processes (the daemon allocates, engines import):
 *
 *   process A (owner)            pc_gpu_handle (128 bytes)      process B
 *   alloc(dev) ──► dptr ──export──► [magic|kind|device UUID|  ──import(dev)──► dptr'
 *                                   size|check|payload 64 B]        │
 *   free(dptr): gone for good                               close(dptr')
 *
 * A handle names a whole allocation: send block offsets next to it.  It
 * carries the exporting device's UUID, so an importer on another device (or
 * another machine, or another fake "seed") is refused with PC_E_PERM before
 * anything is mapped; devices are matched by UUID, never by index.  A
 * process maps a handle once: a second import returns the same pointer and
 * counts a reference; the mapping goes on the last close (CUDA unmaps an IPC
 * mapping for every user of a process on one cudaIpcCloseMemHandle, hence
 * the count).  Importing a handle in the process that exported it returns
 * the allocation itself, counted the same way (CUDA refuses to open its own
 * handles).
 *
 * Streams execute their copies and launches in the order issued; an event
 * recorded on a stream completes when everything issued before it has.
 * NULL is the device's default stream.
 *
 * Codes: PC_E_INVAL (NULL, zero size, a pointer that is not an allocation),
 * PC_E_BADMSG (handle bytes that are not a handle: wrong magic, version,
 * kind or check), PC_E_PERM (a handle of another device), PC_E_NOENT (the
 * allocation behind a handle is freed, or no such device), PC_E_RANGE (a
 * copy past the end of an allocation, where the implementation can tell),
 * PC_E_BUSY (event_query: not done yet), PC_E_NOMEM, PC_E_IO (anything the
 * runtime reports that fits nothing else).  Threading: every function may
 * be called from any thread.
 */
#ifndef PC_GPU_DEV_H
#define PC_GPU_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "proto/errors.h"

#define PC_GPU_UUID_BYTES 16
#define PC_GPU_HANDLE_BYTES 128
#define PC_GPU_NAME_MAX 64

typedef struct pc_gpu_uuid {
    uint8_t b[PC_GPU_UUID_BYTES];
} pc_gpu_uuid;

/* Opaque bytes: safe to copy, send and compare; never parse them outside
 * gpu/. */
typedef struct pc_gpu_handle {
    uint8_t b[PC_GPU_HANDLE_BYTES];
} pc_gpu_handle;

typedef struct pc_gpu_stream pc_gpu_stream;
typedef struct pc_gpu_event pc_gpu_event;

typedef enum pc_gpu_copy_kind {
    PC_GPU_H2D = 0, /* host memory -> device memory            */
    PC_GPU_D2H,     /* device memory -> host memory            */
    PC_GPU_D2D,     /* device memory -> device memory          */
} pc_gpu_copy_kind;

/* The "launch" hook a kernel library uses: one function for each side.
 * `host` runs the work on the CPU (the fake device calls it in stream
 * order); `device` is a wrapper compiled by nvcc that launches the kernel
 * on the native stream it is given (a cudaStream_t).  Either may be NULL
 * where that side is not provided; the implementation then refuses with
 * PC_E_INVAL. */
typedef struct pc_gpu_launch {
    const char *name;                           /* for errors and traces */
    int (*host)(void *args);                    /* 0 or PC_E_*           */
    int (*device)(void *native_stream, void *args);
    void *args;
} pc_gpu_launch;

typedef struct pc_gpu_ops {
    const char *name; /* "cuda", "fake" */
    /* devices */
    int (*device_count)(int *n);
    int (*device_uuid)(int dev, pc_gpu_uuid *out);
    int (*device_name)(int dev, char *buf, size_t len); /* NUL-terminated */
    /* memory: `bytes` > 0; *dptr is a device pointer */
    int (*alloc)(int dev, uint64_t bytes, void **dptr);
    int (*free)(void *dptr);                /* an alloc'd base only */
    int (*export_handle)(const void *dptr, pc_gpu_handle *out);
    /* Open a handle on device `dev` (whose UUID must match). */
    int (*import_handle)(int dev, const pc_gpu_handle *h, void **dptr,
                         uint64_t *bytes);
    int (*close_handle)(void *dptr);        /* one per import */
    /* page-locked host memory (a tier under a device pool: copies from
     * and to it run at full bus speed and asynchronously) */
    int (*host_alloc)(uint64_t bytes, void **p);
    int (*host_free)(void *p);
    /* async work */
    int (*copy_async)(void *dst, const void *src, uint64_t bytes,
                      pc_gpu_copy_kind kind, pc_gpu_stream *s);
    int (*launch)(pc_gpu_stream *s, const pc_gpu_launch *l);
    int (*stream_create)(int dev, pc_gpu_stream **out);
    int (*stream_destroy)(pc_gpu_stream *s);
    int (*stream_sync)(pc_gpu_stream *s);
    int (*event_create)(int dev, pc_gpu_event **out);
    int (*event_record)(pc_gpu_event *e, pc_gpu_stream *s);
    int (*event_query)(pc_gpu_event *e);    /* 0 done, PC_E_BUSY pending */
    int (*event_sync)(pc_gpu_event *e);
    int (*event_destroy)(pc_gpu_event *e);
} pc_gpu_ops;

/* "cuda" or "fake"; NULL for an unknown name or "cuda" when the project was
 * built without CUDA. */
const pc_gpu_ops *pc_gpu_ops_get(const char *name);

/* Reads a handle's header without opening it: size of the allocation and
 * the exporter's device UUID.  PC_E_BADMSG for bytes that are no handle. */
int pc_gpu_handle_info(const pc_gpu_handle *h, uint64_t *bytes,
                       pc_gpu_uuid *uuid);

/* ---- the fake device ---------------------------------------------------- */

/* Fake devices' identity: their UUIDs derive from this machine's boot id,
 * the seed and the device index, so every process of one group (same seed)
 * sees the same devices and a process with another seed is "another GPU".
 * The seed defaults to $PREFIXCACHE_FAKE_GPU_SEED (decimal) or 0; devices
 * (1..8) default to 1.  Call before any other fake operation, or between
 * uses when nothing is allocated or imported: PC_E_BUSY otherwise. */
int pc_gpu_fake_configure(uint64_t seed, int devices);

/* Unlinks this user's fake-device objects whose owners are gone (killed
 * without freeing); *removed gets their number (may be NULL).  Alloc does
 * this once per process by itself. */
int pc_gpu_fake_sweep(unsigned *removed);

/* The shm name behind a fake allocation (tests check /dev/shm with it). */
int pc_gpu_fake_shm_name(const void *dptr, char *buf, size_t len);

#endif

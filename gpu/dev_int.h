/*
 * gpu/dev_int.h - private to gpu/: the handle's bytes and the per-process
 * table of opened handles that both implementations share.
 *
 * A handle, byte by byte (host order: handles never leave the machine, a
 * device UUID says so):
 *
 *   0    4    6    7    8                24        32        40          104   128
 *   ┌────┬────┬────┬────┬─────────────────┬─────────┬─────────┬───────────┬─────┐
 *   │PCGH│ver │kind│ 0  │ device UUID (16)│ bytes   │ check   │ payload 64│  0  │
 *   └────┴────┴────┴────┴─────────────────┴─────────┴─────────┴───────────┴─────┘
 *
 * check = FNV-1a 64 of every other byte: a handle damaged on its way (or
 * made up) is refused as PC_E_BADMSG instead of being handed to shm_open or
 * cudaIpcOpenMemHandle.  It is not a secret: who may open the memory is
 * decided by the object's mode (fake) or the driver (CUDA).
 *
 * The import table: one entry per payload this process has opened, with its
 * mapping and a reference count, so that a second import returns the same
 * pointer and only the last close unmaps.  The table's lock is held
 * across lookup + open + insert: two threads importing one handle at once
 * must not open it twice.  Lock order: the table's lock, then an
 * implementation's own (the mapper's `own` takes it).
 */
#ifndef PC_GPU_DEV_INT_H
#define PC_GPU_DEV_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "gpu/dev.h"

#define PC_GPU_PAYLOAD 64

enum { PC_GPU_KIND_FAKE = 1, PC_GPU_KIND_CUDA = 2 };

void pc_gpu__handle_pack(pc_gpu_handle *h, int kind, const pc_gpu_uuid *uuid,
                         uint64_t bytes, const uint8_t payload[PC_GPU_PAYLOAD]);
/* PC_E_INVAL for NULL, PC_E_BADMSG for bytes that are no handle of `kind`. */
int pc_gpu__handle_unpack(const pc_gpu_handle *h, int kind, pc_gpu_uuid *uuid,
                          uint64_t *bytes, uint8_t payload[PC_GPU_PAYLOAD]);

uint64_t pc_gpu__fnv(uint64_t h, const void *p, size_t n);

typedef struct pc_gpu__import {
    uint8_t key[PC_GPU_PAYLOAD];
    void *dptr;
    uint64_t bytes;
    unsigned refs;
    bool own;        /* our own allocation: close only counts down */
    struct pc_gpu__import *next;
} pc_gpu__import;

/* What an implementation does with a payload; the table does the rest. */
typedef struct pc_gpu__mapper {
    /* This process's own allocation named by key, or NULL; *bytes gets its
     * size.  Called with the table's lock held. */
    void *(*own)(const uint8_t *key, uint64_t *bytes);
    /* Map what key names (bytes long) on device dev; 0 or PC_E_*. */
    int (*map)(int dev, const uint8_t *key, uint64_t bytes, void **base);
    int (*unmap)(void *base, uint64_t bytes);
} pc_gpu__mapper;

typedef struct pc_gpu__imports {
    pthread_mutex_t lock;
    pc_gpu__import *head;
    const pc_gpu__mapper *m;
} pc_gpu__imports;

/* import_handle after the handle's checks: the mapping of key (n bytes),
 * opened on the first import, counted on the others. */
int pc_gpu__import_open(pc_gpu__imports *t, int dev, const uint8_t *key,
                        uint64_t n, void **dptr, uint64_t *bytes);
/* close_handle: PC_E_INVAL when dptr is no import (or closed too often). */
int pc_gpu__import_close(pc_gpu__imports *t, void *dptr);
/* free(base): this process's own imports of it end with it. */
void pc_gpu__import_forget(pc_gpu__imports *t, const void *base);
/* 0 when [p, p+n) lies in one import; PC_E_RANGE when it starts in one and
 * runs past its end; PC_E_INVAL when it starts in none. */
int pc_gpu__import_range(pc_gpu__imports *t, const void *p, uint64_t n);

#ifdef PC_HAVE_CUDA_DEV
extern const pc_gpu_ops pc_gpu_cuda_ops;
#endif
extern const pc_gpu_ops pc_gpu_fake_ops;

#endif

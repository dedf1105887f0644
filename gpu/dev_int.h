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
 * pointer and only the last close unmaps.  Callers hold the table's lock
 * across lookup + open + insert: two threads importing one handle at once
 * must not open it twice.
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

typedef struct pc_gpu__imports {
    pthread_mutex_t lock;
    pc_gpu__import *head;
} pc_gpu__imports;

/* With t->lock held.  The entry for key, its refs not yet counted. */
pc_gpu__import *pc_gpu__imports_find(pc_gpu__imports *t, const uint8_t *key);
pc_gpu__import *pc_gpu__imports_by_ptr(pc_gpu__imports *t, const void *dptr);
/* A new entry with refs = 1; NULL when out of memory. */
pc_gpu__import *pc_gpu__imports_add(pc_gpu__imports *t, const uint8_t *key,
                                    void *dptr, uint64_t bytes, bool own);
void pc_gpu__imports_del(pc_gpu__imports *t, pc_gpu__import *e);

#ifdef PC_HAVE_CUDA_DEV
extern const pc_gpu_ops pc_gpu_cuda_ops;
#endif
extern const pc_gpu_ops pc_gpu_fake_ops;

#endif

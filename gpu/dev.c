/*
 * gpu/dev.c - the registry of device implementations and what they share:
 * the handle's bytes (gpu/dev_int.h has the picture) and the per-process
 * table of opened handles.
 *
 * Why the table lives here and not in each implementation: the rule it
 * keeps ("a process opens a handle once, the last close unmaps") is the
 * same for shared memory and for CUDA IPC, and a bug in it would be a use
 * after unmap in some other user of the same mapping; one copy is easier
 * to get right than two.
 */
#include "gpu/dev_int.h"

#include <stdlib.h>
#include <string.h>

#define MAGIC 0x48474350u /* "PCGH" */
#define VERSION 1
#define OFF_UUID 8
#define OFF_BYTES 24
#define OFF_CHECK 32
#define OFF_PAYLOAD 40

const pc_gpu_ops *pc_gpu_ops_get(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "fake") == 0)
        return &pc_gpu_fake_ops;
#ifdef PC_HAVE_CUDA_DEV
    if (strcmp(name, "cuda") == 0)
        return &pc_gpu_cuda_ops;
#endif
    return NULL;
}

uint64_t pc_gpu__fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Check over the handle with its check field taken as zero. */
static uint64_t check_of(const pc_gpu_handle *h)
{
    uint64_t c = pc_gpu__fnv(0xcbf29ce484222325ull, h->b, OFF_CHECK);
    static const uint8_t zero[8];
    c = pc_gpu__fnv(c, zero, sizeof(zero));
    return pc_gpu__fnv(c, h->b + OFF_PAYLOAD, sizeof(h->b) - OFF_PAYLOAD);
}

void pc_gpu__handle_pack(pc_gpu_handle *h, int kind, const pc_gpu_uuid *uuid,
                         uint64_t bytes, const uint8_t payload[PC_GPU_PAYLOAD])
{
    uint32_t magic = MAGIC;
    uint16_t ver = VERSION;
    memset(h, 0, sizeof(*h));
    memcpy(h->b, &magic, 4);
    memcpy(h->b + 4, &ver, 2);
    h->b[6] = (uint8_t)kind;
    memcpy(h->b + OFF_UUID, uuid->b, PC_GPU_UUID_BYTES);
    memcpy(h->b + OFF_BYTES, &bytes, 8);
    memcpy(h->b + OFF_PAYLOAD, payload, PC_GPU_PAYLOAD);
    uint64_t c = check_of(h);
    memcpy(h->b + OFF_CHECK, &c, 8);
}

int pc_gpu__handle_unpack(const pc_gpu_handle *h, int kind, pc_gpu_uuid *uuid,
                          uint64_t *bytes, uint8_t payload[PC_GPU_PAYLOAD])
{
    if (!h)
        return PC_E_INVAL;
    uint32_t magic;
    uint16_t ver;
    uint64_t c, n;
    memcpy(&magic, h->b, 4);
    memcpy(&ver, h->b + 4, 2);
    memcpy(&c, h->b + OFF_CHECK, 8);
    memcpy(&n, h->b + OFF_BYTES, 8);
    if (magic != MAGIC || ver != VERSION || c != check_of(h) || n == 0 ||
        (kind && h->b[6] != kind))
        return PC_E_BADMSG;
    if (uuid)
        memcpy(uuid->b, h->b + OFF_UUID, PC_GPU_UUID_BYTES);
    if (bytes)
        *bytes = n;
    if (payload)
        memcpy(payload, h->b + OFF_PAYLOAD, PC_GPU_PAYLOAD);
    return 0;
}

int pc_gpu_handle_info(const pc_gpu_handle *h, uint64_t *bytes, pc_gpu_uuid *uuid)
{
    return pc_gpu__handle_unpack(h, 0, uuid, bytes, NULL);
}

/* ---- the import table (callers of these statics hold t->lock) ---------- */

static pc_gpu__import *find_key(pc_gpu__imports *t, const uint8_t *key)
{
    for (pc_gpu__import *e = t->head; e; e = e->next)
        if (memcmp(e->key, key, PC_GPU_PAYLOAD) == 0)
            return e;
    return NULL;
}

static pc_gpu__import *find_ptr(pc_gpu__imports *t, const void *dptr)
{
    for (pc_gpu__import *e = t->head; e; e = e->next)
        if (e->dptr == dptr)
            return e;
    return NULL;
}

static void unlink_entry(pc_gpu__imports *t, pc_gpu__import *e)
{
    for (pc_gpu__import **pp = &t->head; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            free(e);
            return;
        }
}

int pc_gpu__import_open(pc_gpu__imports *t, int dev, const uint8_t *key,
                        uint64_t n, void **dptr, uint64_t *bytes)
{
    int rc = 0;
    /* held across lookup, map and insert: two threads importing one
     * handle must not map it twice */
    pthread_mutex_lock(&t->lock);
    pc_gpu__import *e = find_key(t, key);
    if (e) {
        e->refs++;
    } else if (!(e = calloc(1, sizeof(*e)))) {
        rc = PC_E_NOMEM;
    } else {
        uint64_t own_bytes = 0;
        void *base = t->m->own(key, &own_bytes);
        bool own = base != NULL;
        if (own) /* the exporter itself: the runtime would refuse */
            rc = own_bytes == n ? 0 : PC_E_BADMSG;
        else
            rc = t->m->map(dev, key, n, &base);
        if (rc) {
            free(e);
            e = NULL;
        } else {
            memcpy(e->key, key, PC_GPU_PAYLOAD);
            e->dptr = base;
            e->bytes = n;
            e->refs = 1;
            e->own = own;
            e->next = t->head;
            t->head = e;
        }
    }
    if (e) {
        *dptr = e->dptr;
        if (bytes)
            *bytes = e->bytes;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int pc_gpu__import_close(pc_gpu__imports *t, void *dptr)
{
    if (!dptr)
        return PC_E_INVAL;
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    pc_gpu__import *e = find_ptr(t, dptr);
    if (!e) {
        rc = PC_E_INVAL; /* not an import, or closed once too often */
    } else if (--e->refs == 0) {
        if (!e->own)
            rc = t->m->unmap(e->dptr, e->bytes);
        unlink_entry(t, e); /* gone either way: never unmapped twice */
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void pc_gpu__import_forget(pc_gpu__imports *t, const void *base)
{
    pthread_mutex_lock(&t->lock);
    pc_gpu__import *e = find_ptr(t, base);
    if (e && e->own)
        unlink_entry(t, e);
    pthread_mutex_unlock(&t->lock);
}

int pc_gpu__import_range(pc_gpu__imports *t, const void *p, uint64_t n)
{
    uintptr_t s = (uintptr_t)p;
    int rc = PC_E_INVAL;
    pthread_mutex_lock(&t->lock);
    for (pc_gpu__import *e = t->head; e && rc; e = e->next) {
        uintptr_t b = (uintptr_t)e->dptr;
        if (s >= b && s - b < e->bytes)
            rc = n <= e->bytes - (s - b) ? 0 : PC_E_RANGE;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

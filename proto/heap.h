/*
 * proto/heap.h - project-internal (not installed): the one binary min-heap,
 * for every room that needs one (radix/: the eviction policies' leaves;
 * cache/: leases by expiry).  It lives in proto/ because that is the lowest
 * room both depend on; it knows nothing of msgpack.
 *
 * A heap of element pointers, 1-based, each element keeping its own
 * position so that it can leave or move in O(log n) when its key changes:
 *
 *                 v[1]                the top: nothing goes before it
 *               /      \
 *           v[2]        v[3]          children of v[i]: v[2i], v[2i+1]
 *          /    \      /    \
 *       v[4]  v[5]  v[6]  v[7]        v[0] is unused
 *
 *   element ──► { ..., uint32_t pos (at ops->pos_off), ... }
 *               pos = its index i while in the heap, 0 when out
 *
 * The storage is the caller's: v must have room for n + 1 more pointers
 * before a push.  Each user sizes it with its own allocator and failure
 * rules (the tree reserves room before it creates a node), so a push never
 * fails.
 *
 * The order is ops->before(a, b), which must be strict.  Ties are broken
 * the same way every time (sift-up moves only on a strict "before", sift-
 * down takes the right child only when it strictly goes first), so the
 * same operations always give the same victims: trace_replay's results
 * depend on that.  The functions are static inline so that a caller with
 * a `static const` ops gets before() inlined, with no call through a
 * pointer on its hot paths.
 */
#ifndef PC_PROTO_HEAP_H
#define PC_PROTO_HEAP_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pc_heap_ops {
    bool (*before)(const void *a, const void *b); /* a leaves first */
    size_t pos_off; /* offsetof the element's uint32_t position */
} pc_heap_ops;

typedef struct pc_heap {
    void **v;   /* v[1..n]; room is the caller's business */
    uint32_t n; /* elements */
} pc_heap;

static inline uint32_t *pc_heap_pos(const pc_heap_ops *ops, const void *e)
{
    return (uint32_t *)((char *)(uintptr_t)e + ops->pos_off);
}

static inline void *pc_heap_top(const pc_heap *h)
{
    return h->n ? h->v[1] : NULL;
}

static inline void pc_heap_put_(pc_heap *h, const pc_heap_ops *ops, uint32_t i,
                                void *e)
{
    h->v[i] = e;
    *pc_heap_pos(ops, e) = i;
}

static inline void pc_heap_up_(pc_heap *h, const pc_heap_ops *ops, uint32_t i)
{
    void *e = h->v[i];
    while (i > 1 && ops->before(e, h->v[i / 2])) {
        pc_heap_put_(h, ops, i, h->v[i / 2]);
        i /= 2;
    }
    pc_heap_put_(h, ops, i, e);
}

static inline void pc_heap_down_(pc_heap *h, const pc_heap_ops *ops,
                                 uint32_t i)
{
    void *e = h->v[i];
    for (;;) {
        size_t c = 2 * (size_t)i;
        if (c > h->n)
            break;
        if (c < h->n && ops->before(h->v[c + 1], h->v[c]))
            c++;
        if (!ops->before(h->v[c], e))
            break;
        pc_heap_put_(h, ops, i, h->v[c]);
        i = (uint32_t)c;
    }
    pc_heap_put_(h, ops, i, e);
}

/* Add e (not in the heap); the caller guarantees room for v[n + 1]. */
static inline void pc_heap_push(pc_heap *h, const pc_heap_ops *ops, void *e)
{
    assert(*pc_heap_pos(ops, e) == 0);
    pc_heap_put_(h, ops, ++h->n, e);
    pc_heap_up_(h, ops, h->n);
}

/* Take e (in the heap) out; its position becomes 0. */
static inline void pc_heap_remove(pc_heap *h, const pc_heap_ops *ops, void *e)
{
    uint32_t i = *pc_heap_pos(ops, e), last = h->n--;
    assert(i && h->v[i] == e);
    *pc_heap_pos(ops, e) = 0;
    if (i == last)
        return;
    pc_heap_put_(h, ops, i, h->v[last]);
    pc_heap_up_(h, ops, i);
    pc_heap_down_(h, ops, i);
}

/* e's key changed (either way): restore the order around it. */
static inline void pc_heap_fix(pc_heap *h, const pc_heap_ops *ops, void *e)
{
    pc_heap_up_(h, ops, *pc_heap_pos(ops, e));
    pc_heap_down_(h, ops, *pc_heap_pos(ops, e));
}

/* Empty the heap: every element's position back to 0. */
static inline void pc_heap_clear(pc_heap *h, const pc_heap_ops *ops)
{
    for (uint32_t i = 1; i <= h->n; i++)
        *pc_heap_pos(ops, h->v[i]) = 0;
    h->n = 0;
}

/* Every element knows its position and none goes before its parent.
 * 0, or PC_E_CORRUPT after printing "<who>: ..." to stderr.  O(n). */
int pc_heap_check(const pc_heap *h, const pc_heap_ops *ops, const char *who);

#endif /* PC_PROTO_HEAP_H */

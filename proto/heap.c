/* proto/heap.c - the heap's checker (the heap itself is inline: heap.h). */
#include "proto/heap.h"

#include <stdio.h>

#include "proto/proto.h"

int pc_heap_check(const pc_heap *h, const pc_heap_ops *ops, const char *who)
{
    int rc = 0;
#define CHECK(cond, ...) PC_CHECK_OR_OUT(who, cond, __VA_ARGS__)
    CHECK(h->n == 0 || h->v, "heap of %u without storage", h->n);
    for (uint32_t i = 1; i <= h->n; i++) {
        CHECK(h->v[i] && *pc_heap_pos(ops, h->v[i]) == i,
              "heap element %u does not know its position", i);
        CHECK(i == 1 || !ops->before(h->v[i], h->v[i / 2]),
              "heap order broken at %u", i);
    }
#undef CHECK
out:
    return rc;
}

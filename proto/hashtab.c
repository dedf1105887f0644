/* proto/hashtab.c - the open-addressing tables' checker (hashtab.h). */
#include "proto/hashtab.h"

#include <stdio.h>

#include "proto/proto.h"

int pc_hashtab_check(const void *slots, uint32_t cap, const pc_hashtab_ops *ops,
                     const void *ctx, uint32_t *count, const char *who)
{
    int rc = 0;
    const unsigned char *s = slots;
    uint32_t n = 0, mask = cap - 1;
#define CHECK(cond, ...) PC_CHECK_OR_OUT(who, cond, __VA_ARGS__)
    CHECK(cap == 0 || (cap & mask) == 0, "table capacity %u not a power of two",
          cap);
    CHECK(cap == 0 || slots, "table of capacity %u without storage", cap);
    for (uint32_t j = 0; j < cap; j++) {
        const unsigned char *sj = s + (size_t)j * ops->slot_size;
        if (ops->empty(sj))
            continue;
        n++;
        for (uint32_t i = ops->hash(ctx, sj) & mask; i != j; i = (i + 1) & mask)
            CHECK(!ops->empty(s + (size_t)i * ops->slot_size),
                  "table entry in slot %u unreachable from its home: slot %u "
                  "is empty", j, i);
    }
#undef CHECK
    if (count)
        *count = n;
out:
    return rc;
}

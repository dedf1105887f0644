/*
 * proto/hashtab.h - project-internal (not installed): what every open-
 * addressing table of the project shares, written once: deletion and the
 * checker.  Users: radix/ (child and namespace tables, S3-FIFO's ghost, the
 * auto policy's simulations) and cache/ (leases by id).  In proto/ because
 * that is the lowest room both depend on; it knows nothing of msgpack.
 *
 * The tables: a power-of-two array of fixed-size slots, linear probing, no
 * tombstones.  Each user keeps its own slot layout, hash and lookup (those
 * are its hot paths); an empty slot is one whose bytes are all zero.
 *
 *   delete slot 2 of a table whose entries' homes are in brackets:
 *
 *     slot:  0    1    2    3    4    5    6    7
 *           [ ] [ A1] [X2] [B2] [C1] [D5] [ ] [ ]
 *                      ^hole
 *     B (home 2) moves into the hole, then C (home 1) into B's old slot;
 *     D (home 5) must stay, so the hole ends at 4:
 *           [ ] [ A1] [B2] [C1] [   ] [D5] [ ] [ ]
 *
 * Backward-shift deletion keeps every entry reachable from its home without
 * crossing an empty slot, so probes stay short however many deletions a
 * table has seen.  pc_hashtab_check() verifies exactly that.
 */
#ifndef PC_PROTO_HASHTAB_H
#define PC_PROTO_HASHTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct pc_hashtab_ops {
    size_t slot_size;
    bool (*empty)(const void *slot);
    /* The entry's hash; its home slot is hash & (cap - 1).  ctx: the
     * caller's, for entries that live elsewhere (an index into an array). */
    uint32_t (*hash)(const void *ctx, const void *slot);
} pc_hashtab_ops;

/* Empty slot i of slots[0..mask] and shift back what follows it so that
 * every entry stays reachable.  Inline: a caller with a `static const` ops
 * gets empty() and hash() inlined. */
static inline void pc_hashtab_delete(void *slots, uint32_t mask, uint32_t i,
                                     const pc_hashtab_ops *ops,
                                     const void *ctx)
{
    unsigned char *s = slots;
    size_t sz = ops->slot_size;
    for (uint32_t j = i;;) {
        j = (j + 1) & mask;
        unsigned char *sj = s + (size_t)j * sz;
        if (ops->empty(sj))
            break;
        uint32_t home = ops->hash(ctx, sj) & mask;
        /* Entry j may fill hole i unless its home lies cyclically in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            memcpy(s + (size_t)i * sz, sj, sz);
            i = j;
        }
    }
    memset(s + (size_t)i * sz, 0, sz);
}

/* cap is a power of two and every entry is reachable from its home without
 * crossing an empty slot; *count (when not NULL) gets the number of
 * entries.  0, or PC_E_CORRUPT after printing "<who>: ..." to stderr.
 * O(cap * probe length). */
int pc_hashtab_check(const void *slots, uint32_t cap, const pc_hashtab_ops *ops,
                     const void *ctx, uint32_t *count, const char *who);

#endif /* PC_PROTO_HASHTAB_H */

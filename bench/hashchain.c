/*
 * bench/hashchain.c - chained-hash page index (the baseline); see hashchain.h.
 */
#include "hashchain.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

typedef struct hc_slot {
    uint64_t key; /* chain hash, 0 = empty */
    uint32_t block;
    uint32_t pad_;
} hc_slot;

struct hc_table {
    hc_slot *slots;
    size_t mask; /* capacity - 1 */
    size_t n;
    uint32_t page_tokens;
};

#define HC_CHUNK 64 /* pages hashed ahead of the probes in hc_match */

static size_t hc__pow2_at_least(size_t x)
{
    size_t c = 16;
    while (c < x)
        c <<= 1;
    return c;
}

static inline uint64_t hc__key(uint64_t h) { return h ? h : 1; }

hc_table *hc_create(uint32_t page_tokens, size_t expected_pages)
{
    if (page_tokens == 0)
        return NULL;
    hc_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t cap = hc__pow2_at_least(expected_pages * 2);
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->mask = cap - 1;
    t->page_tokens = page_tokens;
    return t;
}

void hc_destroy(hc_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

uint64_t hc_ns_hash(const void *ns, size_t ns_len)
{
    return XXH3_64bits(ns, ns_len);
}

/* Put key (known absent) into slots[] of mask+1 entries. */
static void hc__place(hc_slot *slots, size_t mask, uint64_t key,
                      uint32_t block)
{
    size_t i = (size_t)key & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i].key = key;
    slots[i].block = block;
}

static int hc__grow(hc_table *t)
{
    size_t cap = (t->mask + 1) * 2;
    hc_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slots[i].key)
            hc__place(s, cap - 1, t->slots[i].key, t->slots[i].block);
    free(t->slots);
    t->slots = s;
    t->mask = cap - 1;
    return 0;
}

size_t hc_insert(hc_table *t, uint64_t ns_hash, const uint32_t *tokens,
                 size_t n_tokens, const uint32_t *blocks)
{
    size_t pages = n_tokens / t->page_tokens;
    size_t page_bytes = (size_t)t->page_tokens * sizeof(uint32_t);
    uint64_t h = ns_hash;
    size_t added = 0;
    for (size_t p = 0; p < pages; p++) {
        h = XXH3_64bits_withSeed(tokens + p * t->page_tokens, page_bytes, h);
        uint64_t key = hc__key(h);
        size_t i = (size_t)key & t->mask;
        for (;;) {
            if (t->slots[i].key == key)
                break; /* cached: the table keeps its id */
            if (t->slots[i].key == 0) {
                if ((t->n + 1) * 2 > t->mask + 1) {
                    if (hc__grow(t))
                        return (size_t)-1;
                    hc__place(t->slots, t->mask, key, blocks[p]);
                } else {
                    t->slots[i].key = key;
                    t->slots[i].block = blocks[p];
                }
                t->n++;
                added++;
                break;
            }
            i = (i + 1) & t->mask;
        }
    }
    return added;
}

size_t hc_match(const hc_table *t, uint64_t ns_hash, const uint32_t *tokens,
                size_t n_tokens, uint32_t *blocks, size_t blocks_cap)
{
    size_t pages = n_tokens / t->page_tokens;
    if (blocks && pages > blocks_cap)
        pages = blocks_cap;
    size_t page_bytes = (size_t)t->page_tokens * sizeof(uint32_t);
    const hc_slot *slots = t->slots;
    const size_t mask = t->mask;
    uint64_t keys[HC_CHUNK];
    uint64_t h = ns_hash;
    size_t done = 0;

    while (done < pages) {
        size_t k = pages - done < HC_CHUNK ? pages - done : HC_CHUNK;
        /* Hash ahead, prefetching each page's home slot. */
        for (size_t j = 0; j < k; j++) {
            h = XXH3_64bits_withSeed(tokens + (done + j) * t->page_tokens,
                                     page_bytes, h);
            keys[j] = hc__key(h);
            __builtin_prefetch(&slots[(size_t)keys[j] & mask]);
        }
        /* Probe in order until the first miss. */
        for (size_t j = 0; j < k; j++) {
            uint64_t key = keys[j];
            size_t i = (size_t)key & mask;
            for (;;) {
                uint64_t s = slots[i].key;
                if (s == key)
                    break;
                if (s == 0)
                    return done + j;
                i = (i + 1) & mask;
            }
            if (blocks)
                blocks[done + j] = slots[i].block;
        }
        done += k;
    }
    return done;
}

size_t hc_match_walk(const hc_table *t, uint64_t ns_hash,
                     const uint32_t *tokens, size_t n_tokens, uint32_t *blocks,
                     size_t blocks_cap)
{
    size_t pages = n_tokens / t->page_tokens;
    if (blocks && pages > blocks_cap)
        pages = blocks_cap;
    size_t page_bytes = (size_t)t->page_tokens * sizeof(uint32_t);
    const hc_slot *slots = t->slots;
    const size_t mask = t->mask;
    uint64_t h = ns_hash;
    for (size_t p = 0; p < pages; p++) {
        h = XXH3_64bits_withSeed(tokens + p * t->page_tokens, page_bytes, h);
        uint64_t key = hc__key(h);
        size_t i = (size_t)key & mask;
        for (;;) {
            uint64_t s = slots[i].key;
            if (s == key)
                break;
            if (s == 0)
                return p;
            i = (i + 1) & mask;
        }
        if (blocks)
            blocks[p] = slots[i].block;
    }
    return pages;
}

size_t hc_entries(const hc_table *t) { return t->n; }
size_t hc_capacity(const hc_table *t) { return t->mask + 1; }
size_t hc_bytes(const hc_table *t)
{
    return sizeof *t + (t->mask + 1) * sizeof(hc_slot);
}

/* proto/pagehash.c - the chained page identity (pagehash.h). */
#include "proto/pagehash.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "proto/limits.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the chain hashes tokens and seeds as little-endian bytes");

static pc_page_hash from_xxh(XXH128_hash_t h)
{
    return (pc_page_hash){h.low64, h.high64};
}

pc_page_hash pc_page_hash_ns(const void *ns, size_t ns_len)
{
    return from_xxh(XXH3_128bits_withSeed(ns_len ? ns : "", ns_len,
                                          PC_PAGE_HASH_SEED));
}

pc_page_hash pc_page_hash_next(pc_page_hash prev, const uint32_t *page,
                               uint32_t page_tokens)
{
    /* One contiguous buffer: one-shot XXH3 is faster than its streaming
     * form for inputs this small. */
    uint8_t buf[16 + 4 * PC_PAGE_TOKENS_MAX];
    size_t n = (size_t)page_tokens * 4;
    memcpy(buf, &prev.lo, 8);
    memcpy(buf + 8, &prev.hi, 8);
    memcpy(buf + 16, page, n);
    return from_xxh(XXH3_128bits(buf, 16 + n));
}

void pc_page_hash_chain(const void *ns, size_t ns_len, const uint32_t *tokens,
                        size_t n_pages, uint32_t page_tokens,
                        pc_page_hash *out)
{
    pc_page_hash h = pc_page_hash_ns(ns, ns_len);
    for (size_t i = 0; i < n_pages; i++)
        out[i] = h = pc_page_hash_next(h, tokens + i * page_tokens, page_tokens);
}

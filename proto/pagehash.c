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

/* The generic step: h[i-1] || the page, hashed as one buffer (one-shot
 * XXH3 is faster than its streaming form for inputs this small). */
static pc_page_hash next_any(pc_page_hash prev, const uint32_t *page,
                             uint32_t page_tokens)
{
    uint8_t buf[16 + 4 * PC_PAGE_TOKENS_MAX];
    size_t n = (size_t)page_tokens * 4;
    memcpy(buf, &prev.lo, 8);
    memcpy(buf + 8, &prev.hi, 8);
    memcpy(buf + 16, page, n);
    return from_xxh(XXH3_128bits(buf, 16 + n));
}

/*
 * The same step for 16-token pages (the usual size), unrolled: XXH3_128 of
 * an 80-byte input is three 32-byte mixes (xxhash.h, XXH3_len_17to128_128b)
 * and only the last one reads h[i-1] (bytes 0..15), so the page's other
 * mixes do not wait for the previous page and the chain's latency is one
 * multiply and the final avalanche instead of a whole hash.  Bit for bit
 * next_any's result (tests/test_cache_events.c checks both against XXH3).
 *
 *   in = h.lo h.hi | t[0..16) | t[16..32) | t[32..48) | t[48..64)
 *   mix32B(in+32, in+32, s+64); mix32B(in+16, in+48, s+32); mix32B(in, in+64, s)
 */
static inline pc_page_hash next_p16(pc_page_hash prev, const uint8_t *t)
{
    const uint8_t *s = XXH3_kSecret;
    uint64_t lo = 80 * XXH_PRIME64_1, hi = 0;
    uint64_t t16 = XXH_readLE64(t + 16) + XXH_readLE64(t + 24);
    lo += XXH3_mix16B(t + 16, s + 64, 0);
    lo ^= t16;
    hi += XXH3_mix16B(t + 16, s + 80, 0);
    hi ^= t16;
    lo += XXH3_mix16B(t, s + 32, 0);
    lo ^= XXH_readLE64(t + 32) + XXH_readLE64(t + 40);
    hi += XXH3_mix16B(t + 32, s + 48, 0);
    hi ^= XXH_readLE64(t) + XXH_readLE64(t + 8);
    hi += XXH3_mix16B(t + 48, s + 16, 0);
    uint64_t t48 = XXH_readLE64(t + 48) + XXH_readLE64(t + 56);
    /* from here on, h[i-1] */
    lo += XXH3_mul128_fold64(prev.lo ^ XXH_readLE64(s),
                             prev.hi ^ XXH_readLE64(s + 8));
    lo ^= t48;
    hi ^= prev.lo + prev.hi;
    uint64_t l = lo + hi;
    uint64_t h = lo * XXH_PRIME64_1 + hi * XXH_PRIME64_4 + 80 * XXH_PRIME64_2;
    return (pc_page_hash){XXH3_avalanche(l), (uint64_t)0 - XXH3_avalanche(h)};
}

pc_page_hash pc_page_hash_next(pc_page_hash prev, const uint32_t *page,
                               uint32_t page_tokens)
{
    if (page_tokens == 16)
        return next_p16(prev, (const uint8_t *)page);
    return next_any(prev, page, page_tokens);
}

void pc_page_hash_chain_from(pc_page_hash prev, const uint32_t *tokens,
                             size_t n_pages, uint32_t page_tokens,
                             pc_page_hash *out)
{
    pc_page_hash h = prev;
    if (page_tokens == 16) {
        const uint8_t *t = (const uint8_t *)tokens;
        for (size_t i = 0; i < n_pages; i++)
            out[i] = h = next_p16(h, t + i * 64);
        return;
    }
    for (size_t i = 0; i < n_pages; i++)
        out[i] = h = next_any(h, tokens + i * page_tokens, page_tokens);
}

void pc_page_hash_chain(const void *ns, size_t ns_len, const uint32_t *tokens,
                        size_t n_pages, uint32_t page_tokens,
                        pc_page_hash *out)
{
    pc_page_hash_chain_from(pc_page_hash_ns(ns, ns_len), tokens, n_pages,
                            page_tokens, out);
}

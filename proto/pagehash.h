/*
 * proto/pagehash.h - the identity of a cached page outside the tree: a
 * 128-bit hash chained over the namespace and every page of the prefix.
 *
 *   h[-1] = XXH3_128(ns bytes, seed PC_PAGE_HASH_SEED)
 *   h[i]  = XXH3_128(h[i-1] as 16 bytes (low 64 bits, then high 64 bits,
 *                    each little-endian) || page i's tokens (uint32 LE))
 *
 * h[i] names the whole prefix through page i, so two prefixes that differ
 * anywhere (namespace included) get different identities with 128-bit
 * certainty; the second tier keys its pages by it (and checks the page's
 * own tokens too), and the low 64 bits are the block hash KV events carry.
 * Stable across versions: changing it is a protocol change (PROTOCOL.md).
 */
#ifndef PC_PAGEHASH_H
#define PC_PAGEHASH_H

#include <stddef.h>
#include <stdint.h>

#define PC_PAGE_HASH_SEED 0x7072656669786361ull /* "prefixca" */

typedef struct pc_page_hash {
    uint64_t lo, hi;
} pc_page_hash;

/* h[-1]: the chain's start for a namespace. */
pc_page_hash pc_page_hash_ns(const void *ns, size_t ns_len);

/* h[i] from h[i-1] and page i's page_tokens tokens (at most
 * PC_PAGE_TOKENS_MAX). */
pc_page_hash pc_page_hash_next(pc_page_hash prev, const uint32_t *page,
                               uint32_t page_tokens);

/* The chain on from prev = h[k-1]: h[k .. k + n_pages) of the pages at
 * tokens into out[] (an insert hashes only the pages it adds). */
void pc_page_hash_chain_from(pc_page_hash prev, const uint32_t *tokens,
                             size_t n_pages, uint32_t page_tokens,
                             pc_page_hash *out);

/* h[0 .. n_pages) of a prefix into out[]: one pass over the tokens. */
void pc_page_hash_chain(const void *ns, size_t ns_len, const uint32_t *tokens,
                        size_t n_pages, uint32_t page_tokens,
                        pc_page_hash *out);

static inline int pc_page_hash_eq(pc_page_hash a, pc_page_hash b)
{
    return a.lo == b.lo && a.hi == b.hi;
}

#endif /* PC_PAGEHASH_H */

/*
 * bench/hashchain.h - the baseline prefix index for radix_bench.
 *
 * This is the index that vLLM-style engines use instead of a tree: every full
 * page of a prompt is named by a chained hash
 *
 *     h_0 = XXH3_64bits_withSeed(page_0 tokens, seed = ns_hash)
 *     h_i = XXH3_64bits_withSeed(page_i tokens, seed = h_{i-1})
 *
 * so that h_i names the whole prefix up to and including page i, and the
 * pages live in one flat hash table (h_i -> block id).  A lookup hashes the
 * prompt's pages and probes the table page by page until the first miss.
 *
 * The implementation is meant to be an honest, reasonably efficient C
 * baseline, not a straw man:
 *   - open addressing with linear probing, power-of-two capacity, load <= 0.5
 *     (the table doubles before it would exceed it);
 *   - 16-byte slots {uint64_t hash; uint32_t block} so a probe touches one
 *     cache line and chases no pointer;
 *   - lookup computes the chain hashes in chunks of 64 pages and issues a
 *     prefetch for each page's home slot as soon as its hash is known, so the
 *     table misses overlap with the hashing of the following pages.
 * Like the engines it imitates, it trusts 64-bit hashes (no token
 * verification), and it stores no tokens: its memory is not comparable with
 * the tree's, which keeps every token so that matches are exact.
 *
 * Hash value 0 marks an empty slot; a chain hash equal to 0 is stored as 1.
 * Single-threaded, like the tree.
 */
#ifndef PC_BENCH_HASHCHAIN_H
#define PC_BENCH_HASHCHAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct hc_table hc_table;

/* Create a table for pages of page_tokens tokens, sized for expected_pages
 * entries at load <= 0.5.  Returns NULL on allocation failure. */
hc_table *hc_create(uint32_t page_tokens, size_t expected_pages);
void hc_destroy(hc_table *t);

/* The chain seed of a namespace (so that namespaces never share pages). */
uint64_t hc_ns_hash(const void *ns, size_t ns_len);

/* Insert the full pages of tokens[0..n_tokens) with block ids blocks[].
 * Pages already present keep their ids.  Returns the number of pages newly
 * added, or (size_t)-1 on allocation failure (while growing). */
size_t hc_insert(hc_table *t, uint64_t ns_hash, const uint32_t *tokens,
                 size_t n_tokens, const uint32_t *blocks);

/* Longest cached page prefix: writes the block ids of the matched pages to
 * blocks[0..ret) (at most blocks_cap) and returns the number of pages. */
size_t hc_match(const hc_table *t, uint64_t ns_hash, const uint32_t *tokens,
                size_t n_tokens, uint32_t *blocks, size_t blocks_cap);

/* The same result by the plain walk: hash page i, probe it, then page i+1
 * (no hashing ahead, no prefetch). */
size_t hc_match_walk(const hc_table *t, uint64_t ns_hash,
                     const uint32_t *tokens, size_t n_tokens, uint32_t *blocks,
                     size_t blocks_cap);

size_t hc_entries(const hc_table *t);  /* pages stored                   */
size_t hc_capacity(const hc_table *t); /* slots                          */
size_t hc_bytes(const hc_table *t);    /* bytes of the slot array + head */

#endif /* PC_BENCH_HASHCHAIN_H */

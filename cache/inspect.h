/*
 * cache/inspect.h - white-box access to a cache's tree and pool, for tests
 * and benchmarks only.
 *
 * cache/ is the only door to the tree and the pool: the server and the
 * daemon use cache.h alone (pc_cache_describe, pc_cache_stats_visit, the
 * namespace priorities), and tests/layering.sh fails the build's tests if
 * rpc/ or daemon/ include this header or a radix/ one.  Tests need more:
 * to dump the tree, read block states, or walk nodes while they check the
 * cache against a model.
 */
#ifndef PC_CACHE_INSPECT_H
#define PC_CACHE_INSPECT_H

#include "cache/cache.h"

pc_pool *pc_cache_pool(const pc_cache *c);
pc_radix *pc_cache_tree(const pc_cache *c);

/* The block hash (cache.h, events) of every page the medium (tier 1: the
 * pool, 2: the second tier) holds, into out[0..cap) in no order; returns
 * how many there are (more than cap: call again with room), 0 on NOMEM.
 * O(pages x depth): tests check event streams against it. */
size_t pc_cache_list_hashes(const pc_cache *c, int tier, uint64_t *out,
                            size_t cap);

#endif /* PC_CACHE_INSPECT_H */

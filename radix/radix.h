/*
 * radix/radix.h - page-granular radix tree of token-id prefixes.
 *
 * The index at the heart of prefixcache: for a namespace (model + LoRA +
 * tenant salt, opaque bytes) and a prompt of uint32_t token ids, which
 * page-aligned prefix is cached, and in which KV blocks?  One block id per
 * full page of P = page_tokens tokens.  The tree stores no KV bytes.
 *
 * Threading: none.  One thread owns a tree (the daemon's event loop).
 *
 * Handles: match() and insert() return a `pc_radix_node *` for the deepest
 * node they reached.  A handle stays valid while it is locked (nodes never
 * move, and a split keeps the locked node as the deeper half, so a lock keeps
 * covering exactly what it covered).  An unlocked handle is valid only until
 * the next call that can free nodes: pc_radix_evict() and pc_radix_destroy().
 * Lock it at once if you need it longer.
 *
 * Errors: every int-returning function returns 0 or a negative PC_E_* code
 * (proto/errors.h).  A failed call leaves the tree exactly as it was.
 */
#ifndef PC_RADIX_H
#define PC_RADIX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/errors.h"
#include "proto/limits.h"
#include "proto/stats.h"

#define PC_RADIX_PAGE_TOKENS_MIN 1u
#define PC_RADIX_PAGE_TOKENS_MAX PC_PAGE_TOKENS_MAX
#define PC_RADIX_PAGE_TOKENS_DEFAULT PC_PAGE_TOKENS_DEFAULT
#define PC_RADIX_NS_MAX PC_NS_MAX /* bytes in a namespace */

typedef struct pc_radix pc_radix;
typedef struct pc_radix_node pc_radix_node;

/* Create an empty tree with `page_tokens` tokens per page (1..1024). */
int pc_radix_create(uint32_t page_tokens, pc_radix **out);

/* Free the tree and all its nodes (locked or not). NULL is a no-op. */
void pc_radix_destroy(pc_radix *t);

uint32_t pc_radix_page_tokens(const pc_radix *t);

/* ---- match ---------------------------------------------------------------- */

/* Flags for pc_radix_match(). */
enum {
    /* If the match ends inside a node's edge, split that node at the page
     * boundary so that the returned handle covers exactly the matched pages
     * (what a caller that pins wants).  Without it the tree's shape never
     * changes and the handle may cover more pages than were matched. */
    PC_RADIX_MATCH_SPLIT = 1u << 0,
    /* Do not update recency or hit/miss statistics (a peek). */
    PC_RADIX_MATCH_PEEK = 1u << 1,
    /* Each half of a peek: no statistics (warm-up traffic a dashboard must
     * not see); no recency, frequency or policy observation (a one-off
     * prompt that must not keep pages alive). */
    PC_RADIX_MATCH_NOSTATS = 1u << 2,
    PC_RADIX_MATCH_NORECENCY = 1u << 3,
};

typedef struct pc_radix_match_result {
    size_t tokens;       /* matched tokens, always a multiple of page_tokens */
    size_t pages;        /* matched pages = tokens / page_tokens             */
    pc_radix_node *node; /* deepest node holding a matched page; NULL if 0   */
} pc_radix_match_result;

/*
 * Longest cached page-aligned prefix of tokens[0..n_tokens) in namespace ns.
 * Writes the block id of each matched page to blocks[0..pages) when blocks is
 * not NULL; at most blocks_cap pages are matched then.  A trailing partial page
 * never matches.  Updates recency (unless PEEK): the matched path becomes the
 * most recently used.  An unknown namespace simply matches nothing.
 * Errors: PC_E_INVAL (NULL t/out, ns_len > 256, NULL tokens with n > 0, bad
 * flags), PC_E_RANGE (more than UINT32_MAX pages), PC_E_NOMEM (only with
 * SPLIT).  Statistics: every full page of the input that is not matched
 * counts as a miss, also those beyond blocks_cap.
 */
int pc_radix_match(pc_radix *t, const void *ns, size_t ns_len,
                   const uint32_t *tokens, size_t n_tokens, uint32_t *blocks,
                   size_t blocks_cap, unsigned flags, pc_radix_match_result *out);

/* ---- insert --------------------------------------------------------------- */

typedef struct pc_radix_insert_result {
    size_t cached_tokens;  /* tokens that were already cached before the call:
                              the caller's blocks[0 .. cached_tokens/P) are
                              duplicates (the tree kept its own ids)          */
    size_t inserted_pages; /* pages newly added with the caller's block ids   */
    pc_radix_node *node;   /* deepest node of the inserted prefix (covers
                              exactly the full pages of the input); NULL when
                              the input has no full page                      */
} pc_radix_insert_result;

/*
 * Insert the full pages of tokens[0..n_tokens) (a trailing partial page is
 * ignored) with block ids blocks[0 .. n_tokens/P).  Pages already cached keep
 * their canonical ids; when canon is not NULL it receives the canonical id of
 * every page (the tree's for the duplicates, the caller's for the new ones),
 * so that canon[i] != blocks[i] exactly for the duplicates.  The namespace is
 * created on first insert.  Splits only at page boundaries.  The inserted path
 * becomes the most recently used.
 * Errors: PC_E_INVAL (as for match, NULL blocks with a full page), PC_E_RANGE
 * (more than UINT32_MAX pages), PC_E_NOMEM (tree unchanged).
 */
int pc_radix_insert(pc_radix *t, const void *ns, size_t ns_len,
                    const uint32_t *tokens, size_t n_tokens,
                    const uint32_t *blocks, uint32_t *canon,
                    pc_radix_insert_result *out);

/*
 * pc_radix_insert with a veto: after the walk and before anything changes,
 * check(ctx, canon, cached_pages) sees the canonical ids of the pages that
 * are already cached (canon is required); a non-zero return aborts the
 * insert with that code and the tree unchanged (recency and statistics
 * included).  Lets a caller validate a request against the tree's content
 * without a second walk.
 */
typedef int (*pc_radix_precheck_fn)(void *ctx, const uint32_t *canon,
                                    size_t cached_pages);
int pc_radix_insert_checked(pc_radix *t, const void *ns, size_t ns_len,
                            const uint32_t *tokens, size_t n_tokens,
                            const uint32_t *blocks, uint32_t *canon,
                            pc_radix_precheck_fn check, void *ctx,
                            pc_radix_insert_result *out);

/* ---- locks ---------------------------------------------------------------- */

/*
 * lock: lock_ref++ on node and every ancestor.  A node with lock_ref > 0 is
 * protected: never evicted.  unlock: the reverse; PC_E_NOTLOCKED (and nothing
 * changes) when the node holds no lock of its own, i.e. more unlocks than
 * locks on this node.  PC_E_INVAL for NULL.
 */
int pc_radix_lock(pc_radix *t, pc_radix_node *node);
int pc_radix_unlock(pc_radix *t, pc_radix_node *node);

/* ---- eviction ------------------------------------------------------------- */

/* Receives each evicted block id; the block is no longer referenced.  A NULL
 * callback is allowed (the ids are then simply dropped). */
typedef void (*pc_radix_evict_fn)(void *ctx, uint32_t block);

/*
 * Evict unlocked pages in the order of the eviction policy (default LRU,
 * see below) until n_blocks are freed or nothing is evictable; returns the
 * number freed, always min(n_blocks, stats.evictable_pages).  Only leaves
 * lose pages, deepest page first, so a cached prefix never has a hole.
 * O(1) per page (LRU), O(log n) (the others), plus O(depth) per victim leaf
 * (its namespace's counts).  Never takes a namespace below its reserve
 * (pc_radix_set_ns_limits): the victims of such a namespace are set aside
 * and the policy's next one taken, then put back where they were when the
 * call returns; each set-aside leaf costs O(1) (lru, and auto while it
 * follows LRU) or O(log n) (the heap policies) once per call.
 */
size_t pc_radix_evict(pc_radix *t, size_t n_blocks, pc_radix_evict_fn fn,
                      void *ctx);

/* What pc_radix_evict_paths reports for each run of pages it takes from one
 * leaf: the whole prefix they end, so that a caller can keep them elsewhere
 * (a second tier keyed by the prefix) before their blocks are reused. */
typedef struct pc_radix_evicted {
    const void *ns;
    size_t ns_len;
    /* The path from the namespace root through the last evicted page:
     * (first_page + n_pages) x page_tokens tokens; NULL when there was no
     * memory to assemble it (the pages are evicted all the same). */
    const uint32_t *tokens;
    size_t first_page;      /* page index, from the root, of the first one */
    size_t n_pages;
    const uint32_t *blocks; /* their block ids, in page order             */
} pc_radix_evicted;

typedef void (*pc_radix_evict_path_fn)(void *ctx, const pc_radix_evicted *e);

/*
 * pc_radix_evict, reporting each victim's pages with their prefix (one
 * call per run of pages of one leaf, before the pages go).  Costs O(depth)
 * per victim leaf on top of pc_radix_evict: for callers that need the
 * prefix (demotion to a second tier), not for plain eviction.
 */
size_t pc_radix_evict_paths(pc_radix *t, size_t n_blocks,
                            pc_radix_evict_path_fn fn, void *ctx);

/* Evict every unlocked page of one namespace (an admin flush), whatever its
 * recency and whatever its reserve (an operator asked for it); *evicted
 * (when not NULL) gets the count.  An unknown namespace evicts nothing.
 * O(nodes of the namespace).  PC_E_INVAL, PC_E_NOMEM. */
int pc_radix_evict_ns(pc_radix *t, const void *ns, size_t ns_len,
                      pc_radix_evict_fn fn, void *ctx, size_t *evicted);

/* pc_radix_evict_ns, reporting each evicted node's pages with their prefix
 * (one call per node, before its pages go), as pc_radix_evict_paths does:
 * for callers that must name what went (KV events).  O(depth) more per
 * evicted node. */
int pc_radix_evict_ns_paths(pc_radix *t, const void *ns, size_t ns_len,
                            pc_radix_evict_path_fn fn, void *ctx,
                            size_t *evicted);

/* ---- eviction policy ------------------------------------------------------ */

/*
 * Which unlocked leaf pc_radix_evict() takes first.  Every policy evicts
 * only unlocked leaves, deepest page first, and costs O(1) (lru) or
 * O(log n) (the others: a heap over the evictable leaves) per page.
 *   lru       least recently used (the default)
 *   lfu       least frequently used with dynamic ageing (LFU-DA): a node's
 *             key is L + hits, where L rises to the key of each victim, so
 *             entries hot long ago do not stay forever
 *   fifo      oldest inserted first, hits ignored
 *   s3fifo    S3-FIFO (Yang et al., SOSP'23) on pages: new pages enter a
 *             small FIFO (10% of the cached pages); pages hit there move to
 *             the main FIFO, the others are evicted and remembered in a ghost
 *             FIFO so that a page that comes back goes straight to main; main
 *             gives a hit page another round (2-bit counter) before eviction
 *   priority  per-namespace priority (pc_radix_set_ns_priority; default 0):
 *             lower priorities are evicted first, LRU among equals
 *   auto      s3fifo's bookkeeping, but each victim comes from LRU or from
 *             S3-FIFO, whichever two miniature simulations (LRU and S3-FIFO
 *             on a hash-sampled subset of the pages that lookups ask for,
 *             scaled to pc_radix_set_capacity) say hits more lately: S3-FIFO
 *             wins big on small caches, LRU where the reuse distance fits
 *             the cache.  Costs a hash per sampled page of each lookup.
 *             Without a capacity it stays LRU.
 */
typedef enum pc_radix_policy {
    PC_POLICY_LRU = 0,
    PC_POLICY_LFU,
    PC_POLICY_FIFO,
    PC_POLICY_S3FIFO,
    PC_POLICY_PRIORITY,
    PC_POLICY_AUTO,
    PC_POLICY_COUNT
} pc_radix_policy;

/* "lru", "lfu", "fifo", "s3fifo", "priority", "auto"; NULL for an invalid
 * value. */
const char *pc_radix_policy_name(pc_radix_policy p);
/* The reverse (exact, lower case); PC_E_INVAL for an unknown name. */
int pc_radix_policy_parse(const char *name, pc_radix_policy *out);

/* Switch policy at run time: O(nodes) to rebuild the order (an admin
 * operation); what is cached stays cached.  PC_E_INVAL, PC_E_NOMEM (the old
 * policy stays). */
int pc_radix_set_policy(pc_radix *t, pc_radix_policy p);
pc_radix_policy pc_radix_get_policy(const pc_radix *t);

/* The cache's capacity in pages (the pool's blocks), which the auto
 * policy's simulations are scaled to; 0 = unknown (auto then acts as LRU).
 * PC_E_INVAL for NULL, PC_E_RANGE above UINT32_MAX, PC_E_NOMEM. */
int pc_radix_set_capacity(pc_radix *t, uint64_t pages);

/* What the auto policy does now and has done (all 0 under the others). */
typedef struct pc_radix_auto_stats {
    int using_s3fifo;       /* victims come from S3-FIFO (else LRU)          */
    uint64_t switches;      /* times it changed its mind                    */
    uint64_t sampled;       /* page accesses fed to the simulations         */
    uint64_t lru_hits, s3fifo_hits; /* their hits (sampled pages)           */
} pc_radix_auto_stats;
void pc_radix_auto_stats_get(const pc_radix *t, pc_radix_auto_stats *out);

/* Eviction priority of a namespace, for the priority policy (kept for
 * namespaces not cached yet; higher = evicted later; default 0).  O(nodes of
 * the namespace) when it is cached.  PC_E_INVAL, PC_E_NOMEM. */
int pc_radix_set_ns_priority(pc_radix *t, const void *ns, size_t ns_len,
                             int32_t priority);
/* Forget every namespace priority (all back to 0); keeps the room. */
void pc_radix_clear_ns_priorities(pc_radix *t);
/* Room for n namespace priorities, so that setting that many afterwards
 * (after a clear) cannot fail: lets a caller replace the whole set all or
 * nothing.  PC_E_INVAL, PC_E_NOMEM. */
int pc_radix_reserve_ns_priorities(pc_radix *t, uint32_t n);

/* ---- per-namespace limits: quota and reserve ------------------------------ */

/*
 * Pages cached in one namespace (locked or not); 0 for an unknown one.
 * O(1) after the namespace lookup.  PC_E_INVAL for NULL t/pages, a bad ns.
 */
int pc_radix_ns_pages(const pc_radix *t, const void *ns, size_t ns_len,
                      uint64_t *pages);

/*
 * A namespace's limits, kept like its priority for namespaces not cached
 * yet or that come and go (0/0 = none, the default, needs no entry):
 *
 *   max_pages (quota; 0: none): an insert that takes the namespace above
 *     it evicts the namespace's own unlocked pages, least recently used
 *     leaf first (deepest page first), until it is back at max_pages or
 *     nothing more there is evictable.  The node the insert returns (which
 *     holds every page that call added) is never taken, so the handle stays
 *     valid and the caller's blocks stay cached: the namespace may stay
 *     above its quota while its pages are locked or just inserted, until a
 *     later insert there.  Lowering the quota below what is cached evicts
 *     at once, the same way.  The evicted ids go to the evict hook
 *     (pc_radix_set_evict_hook) and count in stats.evicted_quota_pages (and
 *     evicted_pages).  Costs O(nodes of the namespace) per victim leaf (a
 *     walk for its least recently used leaf; at most max_pages nodes), only
 *     when the namespace is over its quota; an insert without one pays a
 *     branch.
 *   min_pages (reserve; 0: none): pc_radix_evict and pc_radix_evict_paths
 *     never take the namespace below min_pages, under every policy.  The
 *     unlocked pages the reserve holds back are not in stats.evictable_pages
 *     but in stats.reserved_pages, so that evictable_pages stays exactly
 *     what eviction for space can free now (a caller's "free +
 *     evictable_pages" room check stays true):
 *       evictable_pages + reserved_pages + protected_pages == pages.
 *     Quota eviction and the admin flush (pc_radix_evict_ns) ignore it.
 *
 * PC_E_INVAL (NULL t, bad ns, max_pages != 0 and min_pages > max_pages),
 * PC_E_RANGE (a limit above UINT32_MAX), PC_E_NOMEM (a new entry and no
 * room: see reserve; nothing changed).  Clearing both (0, 0) never fails
 * for valid arguments.
 */
int pc_radix_set_ns_limits(pc_radix *t, const void *ns, size_t ns_len,
                           uint64_t min_pages, uint64_t max_pages);
/* The limits in force for ns (0/0 when none).  PC_E_INVAL. */
int pc_radix_get_ns_limits(const pc_radix *t, const void *ns, size_t ns_len,
                           uint64_t *min_pages, uint64_t *max_pages);
/* Forget every namespace's limits (all back to none); keeps the room.  The
 * reserves that go may make pages evictable; nothing is evicted. */
void pc_radix_clear_ns_limits(pc_radix *t);
/* Room for n namespaces' limits, so that setting that many afterwards
 * (after a clear) cannot fail: reserve, then clear, then set, and a whole
 * new set of limits applies all or nothing.  PC_E_INVAL, PC_E_NOMEM
 * (nothing changed). */
int pc_radix_reserve_ns_limits(pc_radix *t, uint32_t n);

/* Where quota evictions send the block ids they free (as pc_radix_evict's
 * fn; NULL: dropped).  Set it before any quota. */
void pc_radix_set_evict_hook(pc_radix *t, pc_radix_evict_fn fn, void *ctx);

/* ---- stats, checks, debugging --------------------------------------------- */

typedef struct pc_radix_stats {
    uint64_t namespaces;
    uint64_t nodes;           /* excluding namespace roots                    */
    uint64_t pages;           /* cached pages = cached blocks                 */
    uint64_t tokens;          /* pages * page_tokens                          */
    uint64_t evictable_pages; /* pages in unlocked nodes that eviction for
                                 space may take: not those a namespace's
                                 reserve holds back (reserved_pages)          */
    uint64_t protected_pages; /* pages in locked nodes                        */
    uint64_t metadata_bytes;  /* every byte the tree holds from malloc, as the
                                 allocator sized it (malloc_usable_size)      */
    uint64_t lookups;         /* match calls (not PEEK)                       */
    uint64_t hit_pages;       /* pages matched by lookups                     */
    uint64_t miss_pages;      /* full pages asked for but not matched         */
    uint64_t inserts;         /* insert calls that succeeded                  */
    uint64_t inserted_pages;  /* pages added by inserts                       */
    uint64_t duplicate_pages; /* pages offered to insert that were cached     */
    uint64_t splits;          /* node splits                                  */
    uint64_t evicted_pages;
    uint64_t evicted_nodes;
    uint64_t reserved_pages;      /* unlocked pages held back by reserves */
    uint64_t evicted_quota_pages; /* of evicted_pages, by quotas          */
} pc_radix_stats;

void pc_radix_stats_get(const pc_radix *t, pc_radix_stats *out);

/* The counters above and the eviction policy's (evict.*), by name. */
void pc_radix_stats_visit(const pc_radix *t, pc_stat_fn fn, void *ctx);

/*
 * Verify every invariant: structure (parent/child links, child keys, page
 * alignment, no two children with the same first page), lock counts, the LRU
 * list that every policy keeps (exactly the unlocked non-root nodes, every
 * node before its parent, the head an evictable leaf), every counter,
 * recomputed from scratch (the per-namespace page counts, and the evictable
 * / reserved / protected pages from them and the limits in force, which
 * must match the limits table), and the eviction policy's own state (heaps,
 * ghost, simulations).  Returns 0, or PC_E_CORRUPT after printing the first
 * violation to stderr.  O(size).
 */
int pc_radix_check(const pc_radix *t);

/* Visit every node of every namespace in pre-order (parents before their
 * children) with its live block ids.  A non-zero return from fn stops the
 * walk and is returned.  The tree must not change during the walk. */
typedef int (*pc_radix_visit_fn)(void *ctx, const void *ns, size_t ns_len,
                                 const pc_radix_node *node,
                                 const uint32_t *blocks, uint32_t npages);
int pc_radix_foreach(const pc_radix *t, pc_radix_visit_fn fn, void *ctx);

/* Print the whole tree readably (namespaces, edges, blocks, locks). */
void pc_radix_dump(const pc_radix *t, FILE *f);

/* ---- node accessors (for callers holding a handle) ------------------------ */

uint32_t pc_radix_node_lock_ref(const pc_radix_node *n); /* incl. descendants */
uint32_t pc_radix_node_pins(const pc_radix_node *n);     /* its own locks     */
uint32_t pc_radix_node_pages(const pc_radix_node *n);    /* pages on its edge */
/* Pages from the namespace root to the end of this node's edge. */
size_t pc_radix_node_depth_pages(const pc_radix_node *n);
uint64_t pc_radix_node_hits(const pc_radix_node *n);
/* The tokens on its edge (pages x page_tokens), valid like the handle. */
const uint32_t *pc_radix_node_tokens(const pc_radix *t,
                                     const pc_radix_node *n);

/* ---- testing ------------------------------------------------------------- */

/* Make the nth allocation from now fail (1 = the next one); 0 disables.
 * Lets tests prove that a failed operation leaves the tree unchanged. */
void pc_radix_debug_fail_alloc(pc_radix *t, unsigned nth);

#endif /* PC_RADIX_H */

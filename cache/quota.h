/*
 * cache/quota.h - private to cache/: namespace quotas and reserves by
 * pattern (pc_cache_set_ns_quotas), applied through radix/'s exact
 * per-namespace limits (pc_radix_set_ns_limits).
 */
#ifndef PC_CACHE_QUOTA_H
#define PC_CACHE_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

typedef struct pc_quota pc_quota;

/* Replace *q by the rules v[0..n) (n = 0: none), all or nothing, applying
 * them to the namespaces cached now.  why gets the refusal. */
int pc_quota_set(pc_quota **q, pc_radix *t, uint32_t capacity,
                 const pc_cache_quota *v, size_t n, char *why, size_t whylen);
/* Before an insert into ns: a namespace seen for the first time gets the
 * limits of the first rule it matches. */
void pc_quota_before_insert(pc_quota *q, pc_radix *t, const void *ns,
                            size_t ns_len);
void pc_quota_free(pc_quota *q);
void pc_quota_stats_visit(const pc_quota *q, pc_stat_fn fn, void *ctx);

#endif /* PC_CACHE_QUOTA_H */

/*
 * tests/test_operator_e2e.c - operator controls through a real daemon
 * (issue 14): pinned_prefixes (a prefix kept whatever the pressure,
 * changed live, a bad file refused whole) and the per-request no_cache /
 * no_count.
 */
#include "tests/harness/harness.h"
#include "tests/harness/client_check.h"

#include "rpc/client.h"

#define NS "model-op"
#define NSL (sizeof(NS) - 1)
#define P HD_PAGE_TOKENS

TestSuite(operator_e2e, .fini = hd_cleanup, .timeout = 60);

/* alloc + insert + release of prompt seed (pages pages) in namespace ns */
static void engine_put_ns(pc_client *c, const char *ns, uint32_t seed,
                          size_t pages, unsigned iflags);

static void engine_put(pc_client *c, uint32_t seed, size_t pages, unsigned iflags)
{
    engine_put_ns(c, NS, seed, pages, iflags);
}

static void engine_put_ns(pc_client *c, const char *ns, uint32_t seed,
                          size_t pages, unsigned iflags)
{
    uint32_t t[32], ids[8];
    hd_prompt(t, pages * P, seed);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, ns, strlen(ns), t, pages * P,
                              PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &r), 0);
    cr_assert_eq(r.alloc_status, 0, "%s", pc_client_last_error(c));
    memcpy(ids, r.blocks, r.pages * sizeof(*ids));
    memcpy(ids + r.pages, r.alloc_blocks, r.n_alloc * sizeof(*ids));
    pc_client_insert_result ir;
    RC_EQ(c, pc_client_insert(c, ns, strlen(ns), t, pages * P, ids, r.lease,
                              PC_CLIENT_RELEASE | iflags, NULL, &ir), 0);
}

static size_t cached_tokens(pc_client *c, uint32_t seed, size_t pages)
{
    uint32_t t[32];
    hd_prompt(t, pages * P, seed);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, pages * P, PC_CLIENT_NO_COUNT, 0,
                              &r), 0);
    return r.tokens;
}

static uint64_t stat_of(const hd_daemon *d, const char *name)
{
    hd_statmap s;
    hd_stats_get(d, &s); /* asserts check == 0 */
    return hd_stat_req(&s, name);
}

typedef struct cfg_seen {
    char value[256];
} cfg_seen;

static void cfg_cb(void *ctx, const char *name, const char *value)
{
    (void)name;
    snprintf(((cfg_seen *)ctx)->value, sizeof(((cfg_seen *)ctx)->value), "%s",
             value);
}

Test(operator_e2e, pinned_prefixes_survive_pressure_and_change_live)
{
    char path[64], knob[160];
    snprintf(path, sizeof(path), "/tmp/pc-op-%d.tok", (int)getpid());
    uint32_t t[8];
    hd_prompt(t, 8, 9);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "# the system prompt, one id a line\n");
    for (int i = 0; i < 8; i++)
        fprintf(f, "%u\n", t[i]);
    fclose(f);
    snprintf(knob, sizeof(knob), "--pinned_prefixes=%s=%s", NS, path);
    hd_daemon d;
    hd_start(&d, "--pool_blocks=8", knob, NULL);
    unlink(path); /* read at start; nothing reads it again (no failure leaves it) */
    cr_assert_eq(stat_of(&d, "pins.operator_prefixes"), 1);
    cr_assert_eq(stat_of(&d, "pins.operator_pages"), 0);
    pc_client *c;
    cr_assert_eq(pc_client_connect(d.endpoint, HD_CALL_MS, &c), 0);
    engine_put(c, 9, 2, 0); /* an engine caches the system prompt */
    cr_assert_eq(stat_of(&d, "pins.operator_pages"), 2);
    for (uint32_t s = 1; s <= 6; s++) /* 12 pages of pressure on 6 blocks */
        engine_put(c, s, 2, 0);
    cr_assert_eq(cached_tokens(c, 9, 2), 8, "the pinned prefix was evicted");

    /* a file that cannot be read: refused whole, the running set stays */
    cfg_seen seen = {{0}};
    char bad[160];
    snprintf(bad, sizeof(bad), "%s=/nonexistent/pc-op.tok", NS);
    RC_EQ(c, pc_client_config_set(c, "pinned_prefixes", bad, cfg_cb, &seen),
          PC_E_IO);
    cr_assert(strstr(pc_client_last_error(c), "/nonexistent/pc-op.tok"),
              "the refusal names the file: %s", pc_client_last_error(c));
    cr_assert_eq(stat_of(&d, "pins.operator_prefixes"), 1);

    /* unpinned live: the pressure takes it */
    RC_EQ(c, pc_client_config_set(c, "pinned_prefixes", "", cfg_cb, &seen), 0);
    cr_assert_eq(stat_of(&d, "pins.operator_prefixes"), 0);
    for (uint32_t s = 11; s <= 14; s++)
        engine_put(c, s, 2, 0);
    cr_assert_eq(cached_tokens(c, 9, 2), 0);
    pc_client_close(c);
    hd_stop(&d);
}

Test(operator_e2e, no_cache_and_no_count)
{
    hd_daemon d;
    hd_start(&d, NULL);
    pc_client *c;
    cr_assert_eq(pc_client_connect(d.endpoint, HD_CALL_MS, &c), 0);
    engine_put(c, 1, 2, PC_CLIENT_NO_CACHE); /* a private prompt */
    cr_assert_eq(cached_tokens(c, 1, 2), 0, "no_cache cached");
    cr_assert_eq(stat_of(&d, HD_ST_POOL_LEASED), 0, "its blocks were not freed");
    engine_put(c, 2, 2, 0);
    uint64_t lookups = stat_of(&d, "tree.lookups");
    uint64_t hits = stat_of(&d, "tree.hit_pages");
    cr_assert_eq(cached_tokens(c, 2, 2), 8); /* a no_count lookup */
    cr_assert_eq(stat_of(&d, "tree.lookups"), lookups);
    cr_assert_eq(stat_of(&d, "tree.hit_pages"), hits);
    /* pin + no_cache on insert: refused with a reason */
    uint32_t t[8], ids[2];
    hd_prompt(t, 8, 3);
    uint64_t lease = 0;
    RC_EQ(c, pc_client_alloc(c, 2, &lease, ids), 0);
    pc_client_insert_result ir;
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, 8, ids, lease,
                              PC_CLIENT_PIN | PC_CLIENT_NO_CACHE, NULL, &ir),
          PC_E_INVAL);
    cr_assert(strstr(pc_client_last_error(c), "no_cache"), "%s",
              pc_client_last_error(c));
    RC_EQ(c, pc_client_release(c, lease), 0);
    pc_client_close(c);
    hd_stop(&d);
}

Test(operator_e2e, namespace_quotas_changed_live)
{
    hd_daemon d;
    hd_start(&d, "--pool_blocks=8", "--namespace_quotas=tenant-a/*=4", NULL);
    pc_client *c;
    cr_assert_eq(pc_client_connect(d.endpoint, HD_CALL_MS, &c), 0);
    for (uint32_t s = 1; s <= 4; s++)
        engine_put_ns(c, "tenant-a/chat", s, 2, 0);
    cr_assert_eq(stat_of(&d, "tree.evicted_quota_pages"), 4);
    cr_assert_eq(stat_of(&d, "quota.namespaces"), 1);
    /* a reserve set live: "keep" survives "other"'s pressure */
    cfg_seen seen = {{0}};
    RC_EQ(c, pc_client_config_set(c, "namespace_quotas",
                                  "tenant-a/*=4,keep=0:4", cfg_cb, &seen), 0);
    engine_put_ns(c, "keep", 50, 2, 0);
    engine_put_ns(c, "keep", 51, 2, 0);
    for (uint32_t s = 60; s < 66; s++)
        engine_put_ns(c, "other", s, 2, 0);
    cr_assert_eq(stat_of(&d, "quota.reserved_pages"), 4);
    uint32_t t[8];
    hd_prompt(t, 8, 50);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, "keep", 4, t, 8, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 8, "the reserve was evicted");
    /* refused whole: reserves above the pool; the rules in force stay */
    RC_EQ(c, pc_client_config_set(c, "namespace_quotas", "keep=0:6,other=0:6",
                                  cfg_cb, &seen), PC_E_NOSPACE);
    cr_assert(strstr(pc_client_last_error(c), "reserves"), "%s",
              pc_client_last_error(c));
    cr_assert_eq(stat_of(&d, "quota.rules"), 2);
    RC_EQ(c, pc_client_config_set(c, "namespace_quotas", "x=1:2", cfg_cb, &seen),
          PC_E_INVAL);
    pc_client_close(c);
    hd_stop(&d);
}

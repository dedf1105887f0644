/*
 * tests/test_metrics.c - the /metrics exposition (daemon/metrics.c) and the
 * counters behind it (cache/metrics.c, rpc/server.c's latency):
 *   - formatting: label escaping, histogram buckets as seconds and +Inf,
 *     exact fixed-point values, HELP/TYPE once per family;
 *   - the mapping: every stat a live server's visitor emits is exported or
 *     listed as not exported (nothing dropped silently), and rendering
 *     them gives each series once;
 *   - namespaces: at most PC_CACHE_NS_SERIES_MAX series, the rest in
 *     "(other)", sums equal to the total, display text never ambiguous;
 *   - metrics_listen parsing.
 * The real tools (promtool, a Prometheus server) run in
 * tests/metrics/metrics_e2e.py.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/metrics.h"
#include "daemon/daemon.h"

static char *render(const pcd_stat *st, size_t n)
{
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(pcd_metrics_render(st, n, &out, &len), 0);
    cr_assert_eq(strlen(out), len);
    return out;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

Test(metrics_format, label_values_are_escaped)
{
    pcd_stat st[] = {{"ns.lookups.a\"b\\c\nd", 3}};
    char *t = render(st, 1);
    cr_assert(strstr(t, "prefixcache_lookups_total{namespace=\"a\\\"b\\\\c\\nd\"} 3\n"),
              "%s", t);
    free(t);
}

Test(metrics_format, fixed_labels_and_captures_together)
{
    pcd_stat st[] = {{"ns.hit_tokens.tier1.x", 7}, {"ns_other.hit_tokens.tier1", 9},
                     {"ns.hit_tokens.tier2.a.tier1.b", 5}};
    char *t = render(st, 3);
    cr_assert(strstr(t, "prefixcache_hit_tokens_total{tier=\"1\",namespace=\"x\"} 7\n"), "%s", t);
    cr_assert(strstr(t, "prefixcache_hit_tokens_total{namespace=\"(other)\",tier=\"1\"} 9\n"), "%s", t);
    /* the counter comes first: a namespace with dots cannot pass for another */
    cr_assert(strstr(t, "prefixcache_hit_tokens_total{tier=\"2\",namespace=\"a.tier1.b\"} 5\n"), "%s", t);
    cr_assert_eq(count(t, "# TYPE prefixcache_hit_tokens_total counter\n"), 1);
    cr_assert_eq(count(t, "# HELP prefixcache_hit_tokens_total "), 1);
    free(t);
}

Test(metrics_format, histogram_buckets_in_seconds_with_inf)
{
    pcd_stat st[] = {
        {"rpc.latency.ping.bucket_us.5", 1},
        {"rpc.latency.ping.bucket_us.250", 2},
        {"rpc.latency.ping.bucket_us.1000000", 3},
        {"rpc.latency.ping.bucket_us.inf", 4},
        {"rpc.latency.ping.sum_ns", 1500000001},
        {"rpc.latency.ping.count", 4},
    };
    char *t = render(st, 6);
    const char *want =
        "# TYPE prefixcache_request_duration_seconds histogram\n"
        "prefixcache_request_duration_seconds_bucket{op=\"ping\",le=\"0.000005\"} 1\n"
        "prefixcache_request_duration_seconds_bucket{op=\"ping\",le=\"0.00025\"} 2\n"
        "prefixcache_request_duration_seconds_bucket{op=\"ping\",le=\"1\"} 3\n"
        "prefixcache_request_duration_seconds_bucket{op=\"ping\",le=\"+Inf\"} 4\n"
        "prefixcache_request_duration_seconds_sum{op=\"ping\"} 1.500000001\n"
        "prefixcache_request_duration_seconds_count{op=\"ping\"} 4\n";
    cr_assert(strstr(t, want), "%s", t);
    free(t);
}

Test(metrics_format, gauges_and_scaled_values)
{
    pcd_stat st[] = {{"uptime_ms", 12000}, {"pool.blocks.free", 5},
                     {"tree.lookups", 99}, {"no.such.stat", 1}};
    char *t = render(st, 4);
    cr_assert(strstr(t, "# TYPE prefixcache_uptime_seconds gauge\n"
                        "prefixcache_uptime_seconds 12\n"), "%s", t);
    cr_assert(strstr(t, "prefixcache_pool_blocks{state=\"free\"} 5\n"), "%s", t);
    cr_assert_null(strstr(t, "99"), "a not-exported stat was rendered: %s", t);
    cr_assert_null(strstr(t, "no_such"), "%s", t);
    free(t);
}

Test(metrics_format, empty)
{
    char *t = render(NULL, 0);
    cr_assert_str_eq(t, "");
    free(t);
}

/* ---- a live server's visitor ------------------------------------------------- */

typedef struct coll {
    pcd_stat st[1024];
    size_t n;
} coll;

static void add(void *ctx, const char *name, uint64_t v)
{
    coll *c = ctx;
    cr_assert_lt(c->n, 1024);
    c->st[c->n++] = (pcd_stat){name, v};
}

static pc_cache *mk_cache(void)
{
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    cr_assert_eq(pc_pool_layout_init(&cfg.pool.layout, 1, 1, 8, 4, PC_DTYPE_FP16), 0);
    cfg.pool.backend = PC_POOL_NONE;
    cfg.pool.capacity_blocks = 64;
    pc_cache *c;
    cr_assert_eq(pc_cache_create(&cfg, &c), 0);
    return c;
}

static void lookups(pc_cache *c, const char *ns, size_t len, int n)
{
    uint32_t tok[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, blocks[2];
    pc_lookup_result r;
    for (int i = 0; i < n; i++)
        cr_assert_eq(pc_cache_lookup(c, ns, len, tok, 10, 0, 0, blocks, &r), 0);
}

Test(metrics_map, every_stat_is_exported_or_listed)
{
    char dir[] = "/tmp/pc-test-metrics-XXXXXX", ep[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ep, sizeof(ep), "ipc://%s/s", dir);
    pc_cache *c = mk_cache();
    lookups(c, "hot", 3, 40);               /* promoted: ns.hot.* */
    lookups(c, "\x01\x02", 2, 40);          /* promoted, shown as hex */
    lookups(c, "cold", 4, 1);               /* stays in (other) */
    uint64_t lease = 0x42;
    cr_assert_eq(pc_cache_release(c, lease), PC_E_LEASE); /* a refusal */
    pc_rpc_config rc = {.endpoint = ep, .cache = c};
    pc_rpc_server *s;
    cr_assert_eq(pc_rpc_server_create(&rc, &s), 0);
    coll *col = calloc(1, sizeof(*col));
    pc_rpc_server_stats_visit(s, add, col);
    bool saw_ns = false, saw_hex = false, saw_lat = false;
    for (size_t i = 0; i < col->n; i++) {
        const char *nm = col->st[i].name;
        cr_assert_neq(pcd_metrics_classify(nm), -1,
                      "stat '%s' is neither mapped in daemon/metrics.c's ROWS "
                      "nor in its NOT_EXPORTED list", nm);
        saw_ns |= strcmp(nm, "ns.lookups.hot") == 0;
        saw_hex |= strcmp(nm, "ns.lookups.0x0102") == 0;
        saw_lat |= strcmp(nm, "rpc.latency.lookup.bucket_us.inf") == 0;
        if (strcmp(nm, "cache.refused.lease") == 0)
            cr_assert_eq(col->st[i].value, 1);
        if (strcmp(nm, "ns.lookups.hot") == 0) /* the first 32 went to other */
            cr_assert_eq(col->st[i].value, 40 - PC_CACHE_NS_PROMOTE_LOOKUPS);
    }
    cr_assert(saw_ns && saw_hex && saw_lat);
    /* Rendered: every sample line once. */
    char *t = render(col->st, col->n);
    for (char *l = t; *l;) {
        char *e = strchr(l, '\n');
        cr_assert_not_null(e);
        if (*l != '#') {
            char *sp = strrchr(l, ' ');
            *sp = 0;
            char *again = strstr(e + 1, l);
            while (again && again[strlen(l)] != ' ')
                again = strstr(again + 1, l);
            cr_assert_null(again, "series '%s' twice", l);
            *sp = ' ';
        }
        l = e + 1;
    }
    free(t);
    free(col);
    pc_rpc_server_destroy(s);
    pc_cache_destroy(c);
    rmdir(dir);
}

/* ---- namespaces ------------------------------------------------------------------ */

typedef struct nsum {
    uint64_t series, other, lookups_series;
} nsum;

static void ns_add(void *ctx, const char *name, uint64_t v)
{
    nsum *s = ctx;
    if (strncmp(name, "ns.lookups.", 11) == 0) {
        s->series++;
        s->lookups_series += v;
    } else if (strcmp(name, "ns_other.lookups") == 0) {
        s->other += v;
    }
}

Test(metrics_ns, bounded_and_summing_to_the_total)
{
    pc_cache *c = mk_cache();
    char ns[16];
    int total = 0;
    for (int k = 0; k < 5000; k++) { /* one-off namespaces: never promoted */
        int len = snprintf(ns, sizeof(ns), "first%d", k);
        lookups(c, ns, (size_t)len, 1);
        total++;
    }
    nsum s0 = {0};
    pc_cache_stats_visit(c, ns_add, &s0);
    cr_assert_eq(s0.series, 0, "a one-off namespace got a series");
    for (int k = 0; k < 40; k++) { /* 40 namespaces, 50 lookups each */
        int len = snprintf(ns, sizeof(ns), "ns%d", k);
        lookups(c, ns, (size_t)len, 50);
        total += 50;
    }
    for (int k = 0; k < 1000; k++) { /* one-off namespaces: never promoted */
        int len = snprintf(ns, sizeof(ns), "once%d", k);
        lookups(c, ns, (size_t)len, 1);
        total++;
    }
    nsum s = {0};
    pc_cache_stats_visit(c, ns_add, &s);
    cr_assert_eq(s.series, PC_CACHE_NS_SERIES_MAX);
    cr_assert_eq(s.lookups_series + s.other, (uint64_t)total);
    /* Monotonic: more traffic only adds. */
    nsum s2 = {0};
    lookups(c, "ns0", 3, 5);
    pc_cache_stats_visit(c, ns_add, &s2);
    cr_assert_eq(s2.series, s.series);
    cr_assert_eq(s2.lookups_series, s.lookups_series + 5);
    cr_assert_eq(s2.other, s.other);
    pc_cache_destroy(c);
}

Test(metrics_ns, display_is_unambiguous)
{
    char b[64];
    cr_assert_str_eq(pc_cache_ns_display("demo", 4, b), "demo");
    cr_assert_str_eq(pc_cache_ns_display("a.b c", 5, b), "a.b c");
    cr_assert_str_eq(pc_cache_ns_display("\x01\xff", 2, b), "0x01ff");
    cr_assert_str_eq(pc_cache_ns_display("0x01ff", 6, b), "0x307830316666");
    cr_assert_str_eq(pc_cache_ns_display("(other)", 7, b), "0x286f7468657229");
    cr_assert_str_eq(pc_cache_ns_display("", 0, b), "0x");
}

/* ---- metrics_listen ---------------------------------------------------------------- */

Test(metrics_listen, parse)
{
    uint32_t a;
    uint16_t p;
    char err[256];
    cr_assert_eq(pcd_metrics_listen_parse("9090", &a, &p, err, sizeof(err)), 0);
    cr_assert_eq(a, 0x7f000001);
    cr_assert_eq(p, 9090);
    cr_assert_eq(pcd_metrics_listen_parse("10.1.2.3:0", &a, &p, err, sizeof(err)), 0);
    cr_assert_eq(a, 0x0a010203);
    cr_assert_eq(p, 0);
    cr_assert_eq(pcd_metrics_listen_parse("*:80", &a, &p, err, sizeof(err)), 0);
    cr_assert_eq(a, 0);
    cr_assert_eq(pcd_metrics_listen_parse("localhost:1", &a, &p, err, sizeof(err)), 0);
    cr_assert_eq(a, 0x7f000001);
    const char *bad[] = {"", "x:1", "70000", "1.2.3.4:", ":", "12a", "1.2.3.4:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(pcd_metrics_listen_parse(bad[i], &a, &p, err, sizeof(err)),
                     PC_E_INVAL, "'%s' accepted", bad[i]);
    pcd_config c;
    pcd_config_defaults(&c);
    cr_assert_str_eq(c.metrics_listen, "");
    cr_assert_eq(pcd_config_set(&c, "metrics_listen", "127.0.0.1:9464", err,
                                sizeof(err)), 0);
}

Test(metrics_listen, serves_only_through_the_loop)
{
    pcd_metrics *m;
    char err[256];
    cr_assert_eq(pcd_metrics_create("127.0.0.1:0", &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_gt(pcd_metrics_port(m), 0);
    pc_rpc_watch w = pcd_metrics_watch(m);
    cr_assert_gt(w.fd, 0);
    cr_assert_not_null(w.ready);
    pcd_metrics_destroy(m);
    cr_assert_eq(pcd_metrics_create("nonsense", &m, err, sizeof(err)), PC_E_INVAL);
}

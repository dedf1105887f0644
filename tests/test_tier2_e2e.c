/*
 * tests/test_tier2_e2e.c - the second tier through a real daemon (issue 13):
 * pages the pool evicts go to tier 2, a lookup reports them, a lookup with
 * promote brings them back before it answers, with their bytes.
 *
 *   bytes_survive_the_round_trip   host pool + file tier: written, evicted
 *                                  (demoted), promoted: the same bytes
 *   fake_device_pinned_tier        cuda pool on the fake device + page-locked
 *                                  host tier: the same, through the import
 *   never_returned_while_copying   a slow reader (tier2_read_delay_us): other
 *                                  clients are answered meanwhile and never
 *                                  see the pages; a second promote joins
 *   client_killed_mid_promotion    the promoting engine is SIGKILLed: the
 *                                  promotion finishes, its lease expires,
 *                                  nothing is leaked, the pages are cached
 *   flush_drops_tier2              flush reports tier2_evicted
 *
 * Children use only pc_client and report through their exit status.
 */
#include "tests/harness/harness.h"
#include "tests/harness/client_check.h"

#include "rpc/client.h"

#define NS "model-t2"
#define NSL (sizeof(NS) - 1)
#define P HD_PAGE_TOKENS
#define BB HD_BLOCK_BYTES

TestSuite(tier2_e2e, .fini = hd_cleanup, .timeout = 90);

static uint8_t kv_byte(uint32_t seed, size_t page, size_t i)
{
    return (uint8_t)(seed * 131u + page * 37u + i * 7u + 3u);
}

static void client_open(const hd_daemon *d, int timeout_ms, pc_client **c,
                        pc_hello *h)
{
    cr_assert_eq(pc_client_connect(d->endpoint, timeout_ms, c), 0);
    RC_EQ(*c, pc_client_hello(*c, h), 0);
}

/* An engine's prefill of prompt `seed` (pages pages): allocate, write each
 * page's bytes, insert, release. */
static void engine_write(pc_client *c, uint32_t seed, size_t pages)
{
    uint32_t t[64], ids[16];
    cr_assert(pages * P <= HD_NELEM(t));
    hd_prompt(t, pages * P, seed);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, pages * P,
                              PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &r), 0);
    cr_assert_eq(r.alloc_status, 0, "%s", pc_client_last_error(c));
    memcpy(ids, r.blocks, r.pages * sizeof(*ids));
    memcpy(ids + r.pages, r.alloc_blocks, r.n_alloc * sizeof(*ids));
    for (size_t p = r.pages; p < pages; p++) {
        uint8_t *b = pc_client_block(c, ids[p]);
        cr_assert(b);
        for (size_t i = 0; i < BB; i++)
            b[i] = kv_byte(seed, p, i);
    }
    pc_client_insert_result ir;
    RC_EQ(c, pc_client_insert(c, NS, NSL, t, pages * P, ids, r.lease,
                              PC_CLIENT_RELEASE, NULL, &ir), 0);
}

/* Every page of blocks[0..pages) holds seed's bytes. */
static void assert_bytes(pc_client *c, uint32_t seed, const uint32_t *blocks,
                         size_t pages)
{
    for (size_t p = 0; p < pages; p++) {
        const uint8_t *b = pc_client_block(c, blocks[p]);
        cr_assert(b);
        for (size_t i = 0; i < BB; i++)
            cr_assert_eq(b[i], kv_byte(seed, p, i),
                         "seed %u page %zu byte %zu: %u, want %u", seed, p, i,
                         b[i], kv_byte(seed, p, i));
    }
}

static uint64_t stat_of(const hd_daemon *d, const char *name)
{
    hd_statmap s;
    hd_stats_get(d, &s); /* asserts check == 0 */
    return hd_stat_req(&s, name);
}

/* Six two-page prompts into an eight-block pool: the first two prompts
 * (LRU) are evicted, so demoted. */
static void fill_and_evict(pc_client *c)
{
    for (uint32_t s = 1; s <= 6; s++)
        engine_write(c, s, 2);
}

static void round_trip(hd_daemon *d, const char *tier_kind)
{
    pc_client *c;
    pc_hello h;
    client_open(d, HD_CALL_MS, &c, &h);
    cr_assert_str_eq(h.tier2, tier_kind);
    cr_assert_eq(h.tier2_pages, 32);
    fill_and_evict(c);
    cr_assert_eq(stat_of(d, "tier2.demoted_pages"), 4);

    uint32_t t[8];
    hd_prompt(t, 8, 1);
    pc_client_lookup_result r;
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 8, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 0);
    cr_assert_eq(r.tier2_tokens, 8, "tier2_tokens %zu", r.tier2_tokens);

    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 8, PC_CLIENT_PROMOTE, 0, &r), 0);
    cr_assert_eq(r.tokens, 8, "promoted lookup matched %zu", r.tokens);
    cr_assert_eq(r.promoted_tokens, 8);
    cr_assert_eq(r.tier2_tokens, 0);
    cr_assert_neq(r.lease, 0, "promote pins");
    uint32_t ids[2];
    memcpy(ids, r.blocks, sizeof(ids));
    assert_bytes(c, 1, ids, 2);
    RC_EQ(c, pc_client_release(c, r.lease), 0);
    cr_assert_eq(stat_of(d, "tier2.promoted_pages"), 2);
    cr_assert_eq(stat_of(d, "tier2.busy_pages"), 0);
    /* the promotion evicted two more pages (prompt 3): into tier 2 too */
    cr_assert_eq(stat_of(d, "tier2.demoted_pages"), 6);
    hd_prompt(t, 8, 3);
    RC_EQ(c, pc_client_lookup(c, NS, NSL, t, 8, PC_CLIENT_PROMOTE, 0, &r), 0);
    cr_assert_eq(r.tokens, 8);
    memcpy(ids, r.blocks, sizeof(ids));
    assert_bytes(c, 3, ids, 2);
    RC_EQ(c, pc_client_release(c, r.lease), 0);
    pc_client_close(c);
}

Test(tier2_e2e, bytes_survive_the_round_trip)
{
    hd_daemon d;
    char bytes[32];
    snprintf(bytes, sizeof(bytes), "--tier2_bytes=%u", 32 * BB);
    hd_start(&d, "--pool_blocks=8", bytes, "--tier2_path=/tmp", NULL);
    round_trip(&d, "file");
    hd_stop(&d);
}

Test(tier2_e2e, fake_device_pinned_tier)
{
    hd_daemon d;
    char bytes[32];
    snprintf(bytes, sizeof(bytes), "--tier2_bytes=%u", 32 * BB);
    hd_start(&d, "--pool_blocks=8", "--pool_backend=cuda", "--gpu_ops=fake",
             bytes, NULL);
    round_trip(&d, "host");
    hd_stop(&d);
}

/* 4-page prompt 9 written and evicted by four other prompts. */
static void prompt9_in_tier2(pc_client *c)
{
    engine_write(c, 9, 4);
    for (uint32_t s = 1; s <= 4; s++)
        engine_write(c, s, 2);
}

Test(tier2_e2e, never_returned_while_copying)
{
    hd_daemon d;
    char bytes[32];
    snprintf(bytes, sizeof(bytes), "--tier2_bytes=%u", 32 * BB);
    /* 150 ms a page: a 4-page promotion takes 0.6 s */
    hd_start(&d, "--pool_blocks=8", bytes, "--tier2_path=/tmp",
             "--tier2_read_delay_us=150000", NULL);
    pc_client *a, *b;
    pc_hello h;
    client_open(&d, 10000, &a, &h);
    client_open(&d, 10000, &b, &h);
    prompt9_in_tier2(a);
    uint32_t t[16];
    hd_prompt(t, 16, 9);

    int64_t t0 = hd_now_ms();
    int64_t ida = pc_client_send_lookup(a, NS, NSL, t, 16, PC_CLIENT_PROMOTE, 0);
    cr_assert_gt(ida, 0);
    /* B meanwhile: answered at once, the pages not matched, still tier 2 */
    pc_client_lookup_result r;
    RC_EQ(b, pc_client_lookup(b, NS, NSL, t, 16, 0, 0, &r), 0);
    int64_t t_plain = hd_now_ms() - t0;
    cr_assert_eq(r.tokens, 0, "a page being promoted was returned");
    cr_assert_eq(r.tier2_tokens, 16);
    cr_assert_lt(t_plain, 450, "a plain lookup waited %lld ms for the copy",
                 (long long)t_plain);
    /* and a ping too: the loop is not blocked on the disk */
    RC_EQ(b, pc_client_ping(b), 0);
    cr_assert_eq(stat_of(&d, "tier2.promotions_inflight"), 1);
    /* B's promote joins A's promotion */
    RC_EQ(b, pc_client_lookup(b, NS, NSL, t, 16, PC_CLIENT_PROMOTE, 0, &r), 0);
    int64_t t_b = hd_now_ms() - t0;
    cr_assert_eq(r.tokens, 16);
    cr_assert_geq(t_b, 4 * 150 - 50, "joined after %lld ms", (long long)t_b);
    uint32_t idsb[4];
    memcpy(idsb, r.blocks, sizeof(idsb));
    uint64_t lb = r.lease;
    pc_client_reply rep;
    RC_EQ(a, pc_client_recv(a, &rep), 0);
    cr_assert_eq(rep.id, (uint64_t)ida);
    cr_assert_eq(rep.status, 0);
    cr_assert_eq(rep.lookup.tokens, 16);
    cr_assert_eq(rep.lookup.promoted_tokens, 16);
    cr_assert_arr_eq(rep.lookup.blocks, idsb, sizeof(idsb), "same blocks");
    assert_bytes(a, 9, rep.lookup.blocks, 4);
    RC_EQ(a, pc_client_release(a, rep.lookup.lease), 0);
    RC_EQ(b, pc_client_release(b, lb), 0);
    cr_assert_eq(stat_of(&d, "tier2.promotions"), 1, "one copy for both");
    pc_client_close(a);
    pc_client_close(b);
    hd_stop(&d);
}

/* The engine that promotes and dies: sends, then waits to be killed. */
static int promoter_child(const char *endpoint, int wfd)
{
    pc_client *c;
    if (pc_client_connect(endpoint, 10000, &c))
        return 10;
    uint32_t t[16];
    hd_prompt(t, 16, 9);
    if (pc_client_send_lookup(c, NS, NSL, t, 16, PC_CLIENT_PROMOTE, 0) <= 0)
        return 11;
    ssize_t w = write(wfd, "x", 1);
    (void)w;
    for (;;)
        pause();
}

Test(tier2_e2e, client_killed_mid_promotion)
{
    hd_daemon d;
    char bytes[32];
    snprintf(bytes, sizeof(bytes), "--tier2_bytes=%u", 32 * BB);
    hd_start(&d, "--pool_blocks=8", bytes, "--tier2_path=/tmp",
             "--tier2_read_delay_us=150000", "--lease_ttl_ms=300", NULL);
    pc_client *a;
    pc_hello h;
    client_open(&d, 10000, &a, &h);
    prompt9_in_tier2(a);
    pc_client_close(a);

    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    hd_quiesce();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        _exit(promoter_child(d.endpoint, pfd[1]));
    }
    close(pfd[1]);
    char x;
    cr_assert_eq(read(pfd[0], &x, 1), 1, "the promoter never sent");
    close(pfd[0]);
    /* the promotion is under way when the engine dies */
    int64_t until = hd_now_ms() + 5000;
    while (stat_of(&d, "tier2.promotions_inflight") == 0 && hd_now_ms() < until)
        hd_sleep_ms(5);
    cr_assert_eq(stat_of(&d, "tier2.promotions_inflight"), 1);
    kill(pid, SIGKILL);
    int st;
    cr_assert(hd_wait_child(pid, 5000, &st));
    cr_assert(WIFSIGNALED(st));

    /* it finishes on its own; its pin under a lease nobody renews expires */
    until = hd_now_ms() + 10000;
    hd_statmap s;
    for (;;) {
        hd_stats_get(&d, &s);
        if ((hd_stat_req(&s, "tier2.promotions_inflight") == 0 &&
             hd_stat_req(&s, HD_ST_LEASES) == 0) || hd_now_ms() > until)
            break;
        hd_sleep_ms(20);
    }
    cr_assert_eq(hd_stat_req(&s, "tier2.promotions_inflight"), 0);
    cr_assert_eq(hd_stat_req(&s, HD_ST_LEASES), 0);
    cr_assert_eq(hd_stat_req(&s, HD_ST_POOL_LEASED), 0);
    cr_assert_eq(hd_stat_req(&s, HD_ST_PINS), 0);
    cr_assert_eq(hd_stat_req(&s, "tier2.busy_pages"), 0);
    cr_assert_eq(hd_stat_req(&s, HD_ST_POOL_FREE) +
                     hd_stat_req(&s, HD_ST_POOL_CACHED),
                 hd_stat_req(&s, HD_ST_POOL_CAP));
    cr_assert_eq(hd_stat_req(&s, "tier2.promoted_pages"), 4);
    /* and the pages it brought back are cached, with their bytes */
    client_open(&d, HD_CALL_MS, &a, &h);
    uint32_t t[16];
    hd_prompt(t, 16, 9);
    pc_client_lookup_result r;
    RC_EQ(a, pc_client_lookup(a, NS, NSL, t, 16, PC_CLIENT_PIN, 0, &r), 0);
    cr_assert_eq(r.tokens, 16);
    uint32_t ids[4];
    memcpy(ids, r.blocks, sizeof(ids));
    assert_bytes(a, 9, ids, 4);
    RC_EQ(a, pc_client_release(a, r.lease), 0);
    pc_client_close(a);
    hd_stop(&d);
}

Test(tier2_e2e, flush_drops_tier2)
{
    hd_daemon d;
    char bytes[32];
    snprintf(bytes, sizeof(bytes), "--tier2_bytes=%u", 32 * BB);
    hd_start(&d, "--pool_blocks=8", bytes, "--tier2_path=/tmp", NULL);
    pc_client *c;
    pc_hello h;
    client_open(&d, HD_CALL_MS, &c, &h);
    fill_and_evict(c);
    cr_assert_eq(stat_of(&d, "tier2.pages"), 4);
    uint64_t ev = 0;
    RC_EQ(c, pc_client_flush(c, NULL, 0, &ev), 0);
    cr_assert_eq(ev, 8);
    cr_assert_eq(stat_of(&d, "tier2.pages"), 0);
    cr_assert_eq(stat_of(&d, "tier2.flushed_pages"), 4);
    pc_client_close(c);
    hd_stop(&d);
}

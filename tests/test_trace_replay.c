/*
 * tests/test_trace_replay.c - bench/trace_replay's core (trace_replay_core):
 * the two parsers (strict, with the line of every malformed input), the page
 * model (interning, next use, the ideal), Belady against a naive Belady and
 * an exhaustive search of every eviction choice on tiny traces, and the real
 * cache's replay against a naive LRU and FIFO model, against Belady (never
 * beaten) and against the ideal (reached when the pool holds the working
 * set); the two-tier replay (tier 2 behind a small pool) against its own
 * invariants and the one-tier replay.  Random traces come from a small conversation-like generator (page
 * tokens 4 keeps them small); PC_TR_SEED=<n> changes its seed.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/trace_replay/trace.h"
#include "cache/cache.h"
#include "tests/harness/prng.h"

#ifndef TR_DATA_DIR
#define TR_DATA_DIR "tests/data/traces"
#endif

static FILE *devnull(void)
{
    static FILE *f;
    if (!f)
        f = fopen("/dev/null", "w");
    return f;
}

static tr_trace *load(const char *text, uint32_t P, bool quiet)
{
    tr_load_opts o = {.page_tokens = P, .err = quiet ? devnull() : NULL};
    tr_trace *t = NULL;
    int rc = tr_trace_load_mem(text, strlen(text), "t", &o, &t);
    cr_assert_eq(rc, 0, "load: %s\n%s", pc_strerror(rc), text);
    return t;
}

static int load_rc(const char *text, uint32_t P)
{
    tr_load_opts o = {.page_tokens = P, .err = devnull()};
    tr_trace *t = NULL;
    int rc = tr_trace_load_mem(text, strlen(text), "t", &o, &t);
    tr_trace_free(t);
    return rc;
}

/* ---- parsers ---------------------------------------------------------------- */

Test(parse, mooncake_lines)
{
    /* key order, whitespace, unknown keys, CRLF, comments and blank lines */
    const char *s =
        "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 5, "
        "\"hash_ids\": [7, 8, 9]}\n"
        "\n"
        "  {\"hash_ids\":[7,8,10,11],\"input_length\":16,\"extra\":{\"a\":[1,"
        "\"x\\\"y\",null,true]},\"timestamp\":1.5e3}\r\n"
        "{ \"input_length\" : 3 , \"hash_ids\" : [ 7 ] }\n"
        "{\"input_length\": 0, \"hash_ids\": []}";
    tr_trace *t = load(s, 4, false);
    cr_assert_eq(t->n_req, 4);
    cr_assert_eq(t->n_ns, 1);
    cr_assert_str_eq(t->ns[0], "t");
    /* full pages: 10/4 = 2, 16/4 = 4, 3/4 = 0, 0 */
    cr_assert_eq(t->req[0].n_pages, 2);
    cr_assert_eq(t->req[1].n_pages, 4);
    cr_assert_eq(t->req[2].n_pages, 0);
    cr_assert_eq(t->req[3].n_pages, 0);
    cr_assert_eq(t->n_occ, 6);
    /* pages: 7, 7/8 shared; then 7/8/10, 7/8/10/11 new; 9 never full */
    cr_assert_eq(t->n_distinct, 4);
    cr_assert_eq(t->pid[0], 0);
    cr_assert_eq(t->pid[1], 1);
    cr_assert_eq(t->pid[2], 0);
    cr_assert_eq(t->pid[3], 1);
    cr_assert_eq(t->pid[4], 2);
    cr_assert_eq(t->pid[5], 3);
    cr_assert_eq(t->parent[0], TR_NO_PAGE);
    cr_assert_eq(t->parent[3], 2);
    cr_assert_eq(t->depth[3], 4);
    cr_assert_eq(t->next[0], 1);
    cr_assert_eq(t->next[1], 1);
    cr_assert_eq(t->next[2], TR_NEVER);
    cr_assert_eq(t->ideal_hits, 2);
    cr_assert_eq(t->max_req_pages, 4);
    tr_trace_free(t);
}

Test(parse, mooncake_malformed)
{
    static const char *const bad[] = {
        "{\"input_length\": 4}",                             /* no hash_ids */
        "{\"hash_ids\": [1]}",                               /* no input_length */
        "{\"input_length\": -4, \"hash_ids\": [1]}",
        "{\"input_length\": 4.0, \"hash_ids\": [1]}",
        "{\"input_length\": \"4\", \"hash_ids\": [1]}",
        "{\"input_length\": 04, \"hash_ids\": [1]}",
        "{\"input_length\": 4, \"hash_ids\": [1]} x",
        "{\"input_length\": 4, \"hash_ids\": [1,]}",
        "{\"input_length\": 4, \"hash_ids\": [1 2]}",
        "{\"input_length\": 4, \"hash_ids\": [1]",
        "{\"input_length\": 4, \"hash_ids\": [1], }",
        "{\"input_length\": 4, \"hash_ids\": [1, 2]}",       /* 2 ids, 1 block */
        "{\"input_length\": 5, \"hash_ids\": [1]}",          /* 1 id, 2 blocks */
        "{\"input_length\": 4, \"input_length\": 4, \"hash_ids\": [1]}",
        "{\"input_length\": 4, \"hash_ids\": [-1]}",
        "{\"input_length\": 4, \"hash_ids\": [18446744073709551616]}",
        "{\"input_length\": 4, \"hash_ids\": 1}",
        "{\"input_length\": 4, \"hash_ids\": [1], \"timestamp\": -1}",
        "{\"input_length\": 4, \"hash_ids\": [1], \"output_length\": 1e3}",
        "{\"input_length\": 4 \"hash_ids\": [1]}",
        "{input_length: 4, \"hash_ids\": [1]}",
        "{\"input_length\": 4, \"hash_ids\": [1], \"x\": tru}",
        "{\"input_length\": 4, \"hash_ids\": [1], \"x\": \"\\q\"}",
        "{\"input_length\": 4, \"hash_ids\": [1], \"x\": \"abc}",
        ("{\"input_length\": 4, \"hash_ids\": [1], \"x\": "
         "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"),
        "[1, 2]",
        "{",
        "{\"input_length\": 4, \"hash_ids\": [1]}{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[512];
        /* a good line first: the bad one is line 2 */
        snprintf(buf, sizeof buf, "{\"input_length\": 4, \"hash_ids\": [9]}\n%s\n",
                 bad[i]);
        cr_expect_eq(load_rc(buf, 4), PC_E_INVAL, "accepted: %s", bad[i]);
    }
    /* a NUL byte inside a line */
    const char nul[] = "{\"input_length\": 4, \"hash_ids\": [1]}\n{\"input_le\0ngth\": 4}\n";
    tr_load_opts o = {.page_tokens = 4, .err = devnull()};
    tr_trace *t = NULL;
    cr_expect_eq(tr_trace_load_mem(nul, sizeof nul - 1, "t", &o, &t), PC_E_INVAL);
    /* skip_bad: the bad lines are counted, the good ones kept */
    o.skip_bad = true;
    const char *mixed = "{\"input_length\": 8, \"hash_ids\": [1, 2]}\n"
                        "{\"input_length\": 8, \"hash_ids\": [1]}\n"
                        "garbage\n"
                        "{\"input_length\": 8, \"hash_ids\": [1, 3]}\n";
    cr_assert_eq(tr_trace_load_mem(mixed, strlen(mixed), "t", &o, &t), 0);
    cr_assert_eq(t->n_req, 2);
    cr_assert_eq(t->skipped, 2);
    cr_assert_eq(t->ideal_hits, 1);
    tr_trace_free(t);
}

Test(parse, simple_lines)
{
    const char *s = "# comment\n"
                    "a\t9\ttokens\t1,2,3,4,5,6,7,8,9\n"
                    "b\t9\ttokens\t1,2,3,4,5,6,7,8,9\n"   /* another namespace */
                    "a\t8\ttokens\t1,2,3,4,9,9,9,9\n"
                    "a\t5\tblocks\t77,78\n"
                    "a\t0\tblocks\t\n";
    tr_trace *t = load(s, 4, false);
    cr_assert_eq(t->n_req, 5);
    cr_assert_eq(t->n_ns, 2);
    cr_assert_eq(t->n_occ, 2 + 2 + 2 + 1);
    /* a:[1234][5678]  b:[1234][5678]  a:[1234][9999]  a:[blk77] */
    cr_assert_eq(t->n_distinct, 6);
    cr_assert_eq(t->ideal_hits, 1);
    cr_assert_eq(t->req[1].ns, 1);
    cr_assert_eq(t->req[3].kind, TR_KIND_BLOCKS);
    uint32_t buf[16];
    const uint32_t *tok = tr_request_tokens(t, 2, buf);
    cr_assert_eq(tok[4], 9);
    tok = tr_request_tokens(t, 3, buf);
    uint32_t exp[4];
    tr_expand_block(77, 4, exp);
    cr_assert_arr_eq(tok, exp, sizeof exp);
    tr_trace_free(t);

    static const char *const bad[] = {
        "a\t4\ttokens",                     /* 3 fields */
        "a\t4\ttokens\t1,2,3,4\tx",         /* 5 fields */
        "\t4\ttokens\t1,2,3,4",             /* empty namespace */
        "a\t4\tbytes\t1,2,3,4",
        "a\tfour\ttokens\t1,2,3,4",
        "a\t4\ttokens\t1,2,3",              /* count */
        "a\t4\ttokens\t1,2,3,4,",
        "a\t4\ttokens\t1,2,,4",
        "a\t4\ttokens\t1,2,3,4294967296",   /* beyond 32 bits */
        "a\t4\ttokens\t1, 2,3,4",
        "a\t5\tblocks\t1",                  /* 2 blocks needed */
        "a\t-4\tblocks\t1",
        "a\t4\tblocks\t18446744073709551616",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf2[512];
        snprintf(buf2, sizeof buf2, "a\t4\tblocks\t5\n%s\n", bad[i]);
        cr_expect_eq(load_rc(buf2, 4), PC_E_INVAL, "accepted: %s", bad[i]);
    }
    char longns[400];
    memset(longns, 'n', 257);
    snprintf(longns + 257, sizeof longns - 257, "\t4\tblocks\t1\n");
    cr_expect_eq(load_rc(longns, 4), PC_E_INVAL);
}

Test(parse, files)
{
    tr_load_opts o = {.err = devnull()};
    tr_trace *t = NULL;
    cr_assert_eq(tr_trace_load("/nonexistent/trace.jsonl", &o, &t), PC_E_IO);
    cr_assert_eq(tr_trace_load(TR_DATA_DIR "/tiny_mooncake.jsonl", &o, &t), 0);
    cr_assert_str_eq(t->name, "tiny_mooncake");
    cr_assert_gt(t->n_req, 100);
    cr_assert_gt(t->ideal_hits, 0);
    tr_trace_free(t);
    cr_assert_eq(tr_trace_load(TR_DATA_DIR "/tiny_simple.txt", &o, &t), 0);
    cr_assert_gt(t->n_ns, 1);
    tr_trace_free(t);
    /* --limit */
    o.limit = 7;
    cr_assert_eq(tr_trace_load(TR_DATA_DIR "/tiny_mooncake.jsonl", &o, &t), 0);
    cr_assert_eq(t->n_req, 7);
    tr_trace_free(t);
}

Test(expand, distinct_and_deterministic)
{
    uint32_t a[512], b[512];
    static const uint64_t h[] = {0, 1, 2, 1ull << 32, (1ull << 32) | 1,
                                 UINT64_MAX, 0x9e3779b97f4a7c15ull};
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
        for (size_t j = 0; j < sizeof h / sizeof h[0]; j++) {
            tr_expand_block(h[i], 512, a);
            tr_expand_block(h[j], 512, b);
            cr_assert_eq(memcmp(a, b, sizeof a) == 0, i == j);
        }
    /* tokens beyond the hash itself look random, not constant */
    tr_expand_block(5, 512, a);
    int same = 0;
    for (int i = 3; i < 512; i++)
        same += a[i] == a[i - 1];
    cr_assert_lt(same, 3);
}

/* ---- random traces ------------------------------------------------------------ */

static uint64_t base_seed(void)
{
    const char *e = getenv("PC_TR_SEED");
    return e ? strtoull(e, NULL, 0) : 0x7eace2026ull;
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    if (!b->s) {
        b->cap = 4096;
        b->s = malloc(b->cap);
        cr_assert_not_null(b->s);
    }
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        cr_assert_geq(n, 0);
        if ((size_t)n < b->cap - b->n) {
            b->n += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n + 64;
        b->s = realloc(b->s, b->cap);
        cr_assert_not_null(b->s);
    }
}

/*
 * Conversation-like traffic in the simple format (blocks), page tokens P:
 * each request continues an earlier conversation (its whole prompt, maybe a
 * prefix of it, plus a few new blocks) or starts a new one after one of a
 * few shared system prompts.  With tokens_kind, every request is written as
 * its expanded tokens instead.
 */
#define GEN_MAXB 12
static char *gen_trace(uint64_t seed, size_t n_req, uint32_t P, int n_ns,
                       bool tokens_kind)
{
    uint64_t s = seed;
    uint64_t conv[64][GEN_MAXB];
    int conv_len[64], conv_ns[64], n_conv = 0;
    uint64_t fresh = 1000;
    sbuf b = {0};
    sb_printf(&b, "# generated\n");
    for (size_t r = 0; r < n_req; r++) {
        uint64_t blocks[GEN_MAXB];
        int nb = 0, ns;
        if (n_conv > 0 && test_rng_next(&s) % 100 < 65) {
            int c = (int)(test_rng_next(&s) % (uint64_t)n_conv);
            ns = conv_ns[c];
            nb = conv_len[c];
            if (test_rng_next(&s) % 4 == 0 && nb > 0)
                nb = (int)(test_rng_next(&s) % (uint64_t)nb);
            memcpy(blocks, conv[c], (size_t)nb * sizeof(uint64_t));
        } else {
            ns = (int)(test_rng_next(&s) % (uint64_t)n_ns);
            int sys = (int)(test_rng_next(&s) % 3);
            for (int i = 0; i <= sys; i++)
                blocks[nb++] = 100 + (uint64_t)sys * 10 + (uint64_t)i;
        }
        int add = 1 + (int)(test_rng_next(&s) % 3);
        while (add-- > 0 && nb < GEN_MAXB)
            blocks[nb++] = fresh++;
        int slot = n_conv < 64 ? n_conv++ : (int)(test_rng_next(&s) % 64);
        memcpy(conv[slot], blocks, (size_t)nb * sizeof(uint64_t));
        conv_len[slot] = nb;
        conv_ns[slot] = ns;
        /* the last block partly full most of the time */
        uint64_t n_tokens = (uint64_t)nb * P -
                            (test_rng_next(&s) % 3 ? test_rng_next(&s) % P : 0);
        if (nb == 0)
            n_tokens = 0;
        if (!tokens_kind) {
            sb_printf(&b, "ns%d\t%" PRIu64 "\tblocks\t", ns, n_tokens);
            for (int i = 0; i < nb; i++)
                sb_printf(&b, "%s%" PRIu64, i ? "," : "", blocks[i]);
        } else {
            sb_printf(&b, "ns%d\t%" PRIu64 "\ttokens\t", ns, n_tokens);
            uint32_t tok[1024];
            cr_assert_leq(P, 1024);
            for (uint64_t i = 0; i < n_tokens; i++) {
                if (i % P == 0)
                    tr_expand_block(blocks[i / P], P, tok);
                sb_printf(&b, "%s%" PRIu32, i ? "," : "", tok[i % P]);
            }
        }
        sb_printf(&b, "\n");
    }
    return b.s;
}

Test(model, blocks_and_tokens_kinds_agree)
{
    for (uint64_t k = 0; k < 5; k++) {
        char *a = gen_trace(base_seed() + k, 150, 4, 2, false);
        char *b = gen_trace(base_seed() + k, 150, 4, 2, true);
        tr_trace *ta = load(a, 4, false), *tb = load(b, 4, false);
        cr_assert_eq(ta->n_occ, tb->n_occ);
        cr_assert_eq(ta->n_distinct, tb->n_distinct);
        cr_assert_eq(ta->ideal_hits, tb->ideal_hits);
        cr_assert_arr_eq(ta->pid, tb->pid, ta->n_occ * sizeof(uint32_t));
        cr_assert_arr_eq(ta->next, tb->next, ta->n_occ * sizeof(uint32_t));
        tr_replay_opts o = {.policy = PC_POLICY_LRU, .capacity = 9};
        tr_result ra, rb;
        cr_assert_eq(tr_replay_cache(ta, &o, &ra), 0);
        cr_assert_eq(tr_replay_cache(tb, &o, &rb), 0);
        cr_assert_eq(ra.hit_pages, rb.hit_pages);
        tr_trace_free(ta);
        tr_trace_free(tb);
        free(a);
        free(b);
    }
}

/* Next use and the ideal, recomputed naively. */
Test(model, next_use_and_ideal)
{
    char *s = gen_trace(base_seed(), 300, 4, 2, false);
    tr_trace *t = load(s, 4, false);
    uint64_t ideal = 0;
    for (size_t r = 0; r < t->n_req; r++) {
        const tr_request *q = &t->req[r];
        for (uint32_t j = 0; j < q->n_pages; j++) {
            uint32_t id = t->pid[q->occ + j];
            uint32_t nx = TR_NEVER;
            for (size_t r2 = r + 1; r2 < t->n_req && nx == TR_NEVER; r2++)
                for (uint32_t j2 = 0; j2 < t->req[r2].n_pages; j2++)
                    if (t->pid[t->req[r2].occ + j2] == id)
                        nx = (uint32_t)r2;
            cr_assert_eq(t->next[q->occ + j], nx);
            bool seen = false;
            for (size_t o = 0; o < q->occ && !seen; o++)
                seen = t->pid[o] == id;
            ideal += seen;
            /* a page's parent is the page before it in the request */
            cr_assert_eq(t->parent[id], j ? t->pid[q->occ + j - 1] : TR_NO_PAGE);
            cr_assert_eq(t->depth[id], j + 1);
        }
    }
    cr_assert_eq(t->ideal_hits, ideal);
    tr_trace_free(t);
    free(s);
}

/* ---- naive models ---------------------------------------------------------------- */

enum { NV_BELADY, NV_LRU, NV_FIFO };

/*
 * The replay's rules with a naive O(pages) victim search: only unpinned
 * leaves; Belady: furthest next use, deeper on ties; LRU: least recently
 * used (lookup and insert both touch the request's cached path), deeper on
 * ties; FIFO: oldest insertion, deeper on ties.
 */
static uint64_t naive(const tr_trace *t, uint64_t cap, int kind, uint32_t *per_req)
{
    uint32_t nd = t->n_distinct;
    uint8_t *cached = calloc(nd + 1, 1), *pinned = calloc(nd + 1, 1);
    uint64_t *stamp = calloc(nd + 1, sizeof(uint64_t));
    uint32_t *nextu = calloc(nd + 1, sizeof(uint32_t));
    uint64_t used = 0, hits = 0;
    for (size_t r = 0; r < t->n_req; r++) {
        const tr_request *q = &t->req[r];
        const uint32_t *pid = t->pid + q->occ;
        uint32_t n = q->n_pages, m = 0;
        while (m < n && cached[pid[m]])
            m++;
        for (uint32_t j = 0; j < m; j++)
            pinned[pid[j]] = 1;
        uint64_t k = n - m < cap - m ? n - m : cap - m;
        while (used + k > cap) {
            uint32_t best = TR_NO_PAGE;
            for (uint32_t v = 0; v < nd; v++) {
                if (!cached[v] || pinned[v])
                    continue;
                bool leaf = true;
                for (uint32_t c = 0; c < nd && leaf; c++)
                    if (cached[c] && t->parent[c] == v)
                        leaf = false;
                if (!leaf)
                    continue;
                if (best == TR_NO_PAGE) {
                    best = v;
                    continue;
                }
                bool better;
                if (kind == NV_BELADY)
                    better = nextu[v] > nextu[best] ||
                             (nextu[v] == nextu[best] && t->depth[v] > t->depth[best]);
                else
                    better = stamp[v] < stamp[best] ||
                             (stamp[v] == stamp[best] && t->depth[v] > t->depth[best]);
                if (better)
                    best = v;
            }
            cr_assert_neq(best, TR_NO_PAGE);
            cached[best] = 0;
            used--;
        }
        for (uint32_t j = 0; j < m + k; j++) {
            uint32_t v = pid[j];
            if (j >= m) {
                cached[v] = 1;
                used++;
                if (kind == NV_FIFO)
                    stamp[v] = r;
            }
            if (kind == NV_LRU)
                stamp[v] = r;
            nextu[v] = t->next[q->occ + j];
            pinned[v] = 0;
        }
        hits += m;
        if (per_req)
            per_req[r] = m;
    }
    free(cached);
    free(pinned);
    free(stamp);
    free(nextu);
    return hits;
}

/* Memo of opt_rec: (request, cached set) -> best hits from there on. */
#define MEMO_SIZE (1u << 16)
static uint64_t memo_key[MEMO_SIZE], memo_val[MEMO_SIZE];

/* The best any eviction choice can do (tiny traces only): every set of
 * unpinned pages of the needed size whose removal leaves no hole. */
static uint64_t opt_rec(const tr_trace *t, uint64_t cap, size_t r, uint64_t set)
{
    if (r == t->n_req)
        return 0;
    uint64_t key = (set << 8 | r) + 1; /* 0: an empty slot */
    size_t slot = (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 48) & (MEMO_SIZE - 1);
    while (memo_key[slot] && memo_key[slot] != key)
        slot = (slot + 1) & (MEMO_SIZE - 1);
    if (memo_key[slot] == key)
        return memo_val[slot];
    const tr_request *q = &t->req[r];
    const uint32_t *pid = t->pid + q->occ;
    uint32_t n = q->n_pages, m = 0;
    while (m < n && (set >> pid[m] & 1))
        m++;
    uint64_t pinned = 0;
    for (uint32_t j = 0; j < m; j++)
        pinned |= 1ull << pid[j];
    uint64_t k = n - m < cap - m ? n - m : cap - m;
    uint64_t used = (uint64_t)__builtin_popcountll(set);
    uint64_t need = used + k > cap ? used + k - cap : 0;
    uint64_t cand = set & ~pinned, best = 0;
    /* every subset of the candidates with `need` pages */
    for (uint64_t x = cand;; x = (x - 1) & cand) {
        if ((uint64_t)__builtin_popcountll(x) == need) {
            uint64_t left = set & ~x;
            bool ok = true;
            for (uint32_t v = 0; v < t->n_distinct && ok; v++)
                if ((left >> v & 1) && t->parent[v] != TR_NO_PAGE &&
                    !(left >> t->parent[v] & 1))
                    ok = false;
            if (ok) {
                for (uint32_t j = m; j < m + k; j++)
                    left |= 1ull << pid[j];
                uint64_t h = opt_rec(t, cap, r + 1, left);
                if (h > best)
                    best = h;
            }
        }
        if (x == 0)
            break;
    }
    while (memo_key[slot] && memo_key[slot] != key) /* the recursion filled some */
        slot = (slot + 1) & (MEMO_SIZE - 1);
    memo_key[slot] = key;
    memo_val[slot] = best + m;
    return best + m;
}

static uint64_t opt(const tr_trace *t, uint64_t cap)
{
    cr_assert_leq(t->n_distinct, 48);
    cr_assert_lt(t->n_req, 256);
    memset(memo_key, 0, sizeof memo_key);
    return opt_rec(t, cap, 0, 0);
}

Test(belady, equals_naive_belady)
{
    for (uint64_t k = 0; k < 40; k++) {
        uint64_t s = base_seed() * 31 + k;
        char *text = gen_trace(s, 60 + k * 5, 4, 1 + (int)(k % 3), false);
        tr_trace *t = load(text, 4, false);
        uint64_t caps[] = {1, 2, 3, 5, 8, 13, 30, t->n_distinct};
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            uint32_t *a = calloc(t->n_req + 1, sizeof(uint32_t));
            uint32_t *b = calloc(t->n_req + 1, sizeof(uint32_t));
            tr_result r;
            cr_assert_eq(tr_replay_belady(t, caps[c], true, a, &r), 0);
            uint64_t h = naive(t, caps[c], NV_BELADY, b);
            cr_assert_eq(r.hit_pages, h, "seed %" PRIu64 " cap %" PRIu64, s, caps[c]);
            cr_assert_arr_eq(a, b, t->n_req * sizeof(uint32_t));
            if (caps[c] >= t->n_distinct)
                cr_assert_eq(r.hit_pages, t->ideal_hits);
            free(a);
            free(b);
        }
        tr_trace_free(t);
        free(text);
    }
}

Test(belady, is_optimal_on_tiny_traces)
{
    size_t tried = 0;
    for (uint64_t k = 0; tried < 150 && k < 2000; k++) {
        uint64_t s = base_seed() * 7 + k;
        char *text = gen_trace(s, 4 + k % 6, 2, 1 + (int)(k % 2), false);
        tr_trace *t = load(text, 2, false);
        free(text);
        if (t->n_distinct > 14) {
            tr_trace_free(t);
            continue;
        }
        tried++;
        for (uint64_t cap = 1; cap <= 6; cap++) {
            tr_result r;
            cr_assert_eq(tr_replay_belady(t, cap, true, NULL, &r), 0);
            uint64_t best = opt(t, cap);
            cr_assert_eq(r.hit_pages, best,
                         "seed %" PRIu64 " cap %" PRIu64 ": belady %" PRIu64
                         ", best possible %" PRIu64, s, cap, r.hit_pages, best);
        }
        tr_trace_free(t);
    }
    cr_assert_geq(tried, 100);
}

/* ---- the real cache ----------------------------------------------------------------- */

static bool available(pc_radix_policy p)
{
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    pc_pool_layout_init(&cfg.pool.layout, 1, 1, 1, 4, PC_DTYPE_FP16);
    cfg.pool.backend = PC_POOL_NONE;
    cfg.pool.capacity_blocks = 4;
    cfg.eviction_policy = p;
    pc_cache *c = NULL;
    int rc = pc_cache_create(&cfg, &c);
    pc_cache_destroy(c);
    return rc == 0;
}

Test(replay, lru_and_fifo_equal_naive_models)
{
    static const struct { pc_radix_policy p; int kind; } pols[] = {
        {PC_POLICY_LRU, NV_LRU}, {PC_POLICY_FIFO, NV_FIFO}};
    for (size_t pi = 0; pi < 2; pi++) {
        if (!available(pols[pi].p)) {
            cr_log_warn("policy %s unavailable: not compared",
                        pc_radix_policy_name(pols[pi].p));
            continue;
        }
        for (uint64_t k = 0; k < 25; k++) {
            uint64_t s = base_seed() * 13 + k;
            char *text = gen_trace(s, 120, 4, 1 + (int)(k % 3), false);
            tr_trace *t = load(text, 4, false);
            uint64_t caps[] = {2, 3, 5, 8, 13, 30};
            for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
                uint32_t *a = calloc(t->n_req + 1, sizeof(uint32_t));
                uint32_t *b = calloc(t->n_req + 1, sizeof(uint32_t));
                tr_replay_opts o = {.policy = pols[pi].p, .capacity = caps[c],
                                    .check_every = true, .per_req_hits = a};
                tr_result r;
                cr_assert_eq(tr_replay_cache(t, &o, &r), 0);
                uint64_t h = naive(t, caps[c], pols[pi].kind, b);
                size_t d = 0;
                while (d < t->n_req && a[d] == b[d])
                    d++;
                cr_assert_eq(d, t->n_req,
                             "%s seed %" PRIu64 " cap %" PRIu64 ": request %zu hits "
                             "%u pages, the naive model %u (total %" PRIu64 " vs %"
                             PRIu64 ")", pc_radix_policy_name(pols[pi].p), s,
                             caps[c], d, a[d], b[d], r.hit_pages, h);
                free(a);
                free(b);
            }
            tr_trace_free(t);
            free(text);
        }
    }
}

Test(replay, belady_bounds_every_policy_and_ideal_at_full_size)
{
    for (uint64_t k = 0; k < 20; k++) {
        uint64_t s = base_seed() * 17 + k;
        char *text = gen_trace(s, 200, 4, 1 + (int)(k % 3), false);
        tr_trace *t = load(text, 4, false);
        uint64_t caps[] = {2, 4, 7, 12, 25, 50, t->n_distinct, t->n_distinct + 9};
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            tr_result b;
            cr_assert_eq(tr_replay_belady(t, caps[c], false, NULL, &b), 0);
            cr_assert_leq(b.hit_pages, t->ideal_hits);
            for (int p = 0; p < PC_POLICY_COUNT; p++) {
                if (!available((pc_radix_policy)p))
                    continue;
                tr_replay_opts o = {.policy = (pc_radix_policy)p,
                                    .capacity = caps[c], .check_every = k < 3};
                tr_result r;
                int rc = tr_replay_cache(t, &o, &r);
                cr_assert_eq(rc, 0, "%s: %s", pc_radix_policy_name((pc_radix_policy)p),
                             pc_strerror(rc));
                cr_assert_eq(r.total_pages, t->n_occ);
                cr_assert_leq(r.hit_pages, b.hit_pages,
                              "%s beats Belady: seed %" PRIu64 " cap %" PRIu64
                              ": %" PRIu64 " > %" PRIu64,
                              pc_radix_policy_name((pc_radix_policy)p), s, caps[c],
                              r.hit_pages, b.hit_pages);
                if (caps[c] >= t->n_distinct) {
                    cr_assert_eq(r.hit_pages, t->ideal_hits);
                    cr_assert_eq(r.evicted_pages, 0);
                }
                cr_assert_eq(r.truncated, b.truncated);
            }
        }
        tr_trace_free(t);
        free(text);
    }
}

/* A request longer than the pool: the prefix that fits is inserted. */
Test(replay, request_larger_than_the_pool)
{
    const char *s = "n\t40\tblocks\t1,2,3,4,5,6,7,8,9,10\n"
                    "n\t40\tblocks\t1,2,3,4,5,6,7,8,9,10\n"
                    "n\t12\tblocks\t1,2,3\n";
    tr_trace *t = load(s, 4, false);
    uint32_t h[3];
    tr_replay_opts o = {.policy = PC_POLICY_LRU, .capacity = 4,
                        .check_every = true, .per_req_hits = h};
    tr_result r;
    cr_assert_eq(tr_replay_cache(t, &o, &r), 0);
    cr_assert_eq(h[0], 0);
    cr_assert_eq(h[1], 4); /* pages 1-4 stayed: 4 pinned, nothing else fits */
    cr_assert_eq(h[2], 3);
    cr_assert_eq(r.truncated, 2);
    cr_assert_eq(r.inserted_pages, 4);
    uint32_t hb[3];
    tr_result b;
    cr_assert_eq(tr_replay_belady(t, 4, true, hb, &b), 0);
    cr_assert_arr_eq(h, hb, sizeof h);
    /* the pool's minimum */
    o.capacity = 1;
    cr_assert_eq(tr_replay_cache(t, &o, &r), PC_E_RANGE);
    tr_trace_free(t);
}

/* The priority policy keeps the high-priority namespace. */
Test(replay, priority_namespaces)
{
    if (!available(PC_POLICY_PRIORITY)) {
        cr_log_warn("priority unavailable");
        return;
    }
    /* hot: 2 pages reused after a stream of cold pages */
    sbuf b = {0};
    sb_printf(&b, "hot\t8\tblocks\t1,2\n");
    for (int i = 0; i < 20; i++)
        sb_printf(&b, "cold\t8\tblocks\t%d,%d\n", 100 + 2 * i, 101 + 2 * i);
    sb_printf(&b, "hot\t8\tblocks\t1,2\n");
    tr_trace *t = load(b.s, 4, false);
    tr_priority pr[] = {{"hot", 10}};
    tr_replay_opts o = {.policy = PC_POLICY_PRIORITY, .capacity = 4,
                        .check_every = true, .prio = pr, .n_prio = 1};
    tr_result r;
    cr_assert_eq(tr_replay_cache(t, &o, &r), 0);
    cr_assert_eq(r.hit_pages, 2);
    o.policy = PC_POLICY_LRU;
    cr_assert_eq(tr_replay_cache(t, &o, &r), 0);
    cr_assert_eq(r.hit_pages, 0);
    tr_trace_free(t);
    free(b.s);
}

/* ---- two tiers (a host pool plus a tier-2 file) ----------------------------------- */

/* Without tier 2 the two-tier steps (host pool, fp8 blocks, the promotion
 * branch never taken) give the one-tier replay's hits, request by request,
 * for every policy. */
Test(tiers, no_tier2_equals_one_tier)
{
    for (uint64_t k = 0; k < 6; k++) {
        uint64_t s = base_seed() * 19 + k;
        char *text = gen_trace(s, 150, 4, 1 + (int)(k % 3), false);
        tr_trace *t = load(text, 4, false);
        uint64_t caps[] = {2, 5, 11, 40};
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++)
            for (int p = 0; p < PC_POLICY_COUNT; p++) {
                if (!available((pc_radix_policy)p))
                    continue;
                uint32_t *a = calloc(t->n_req + 1, sizeof(uint32_t));
                uint32_t *b = calloc(t->n_req + 1, sizeof(uint32_t));
                tr_replay_opts o = {.policy = (pc_radix_policy)p, .capacity = caps[c],
                                    .per_req_hits = a};
                tr_result r1, r2;
                cr_assert_eq(tr_replay_cache(t, &o, &r1), 0);
                o.per_req_hits = b;
                o.two_tier = true;
                o.check_every = k == 0;
                int rc = tr_replay_cache(t, &o, &r2);
                cr_assert_eq(rc, 0, "%s", pc_strerror(rc));
                cr_assert_arr_eq(a, b, t->n_req * sizeof(uint32_t),
                                 "%s seed %" PRIu64 " cap %" PRIu64,
                                 pc_radix_policy_name((pc_radix_policy)p), s, caps[c]);
                cr_assert_eq(r2.hit_pages, r1.hit_pages);
                cr_assert_eq(r2.tier1_hit_pages, r1.hit_pages);
                cr_assert_eq(r2.tier2_hit_pages, 0);
                cr_assert_eq(r2.promote_jobs + r2.tier2_demoted_pages +
                             r2.tier2_capacity_pages, 0);
                cr_assert_eq(r2.evicted_pages, r1.evicted_pages);
                cr_assert_eq(r2.inserted_pages, r1.inserted_pages);
                cr_assert_eq(r2.truncated, r1.truncated);
                free(a);
                free(b);
            }
        tr_trace_free(t);
        free(text);
    }
}

/* A pool far smaller than the working set, with tier 2 behind it: the
 * tiers add up, pc_cache_check holds after every request, tier 2 serves
 * hits, and once tier 2 holds the whole working set (and the pool every
 * request) nothing seen before is ever missed: the ideal exactly.  A
 * smaller tier 2 still never loses tier-1 hits under LRU: promotion puts
 * back exactly what the one-tier pool would have re-inserted. */
Test(tiers, hits_per_tier)
{
    for (uint64_t k = 0; k < 8; k++) {
        uint64_t s = base_seed() * 23 + k;
        char *text = gen_trace(s, 200, 4, 1 + (int)(k % 3), false);
        tr_trace *t = load(text, 4, false);
        uint64_t C = t->max_req_pages + 1; /* every request fits */
        cr_assert_lt(4 * C, t->n_distinct, "the pool must be small: %" PRIu64
                     " of %u", C, t->n_distinct);
        uint64_t Ts[] = {t->n_distinct, C, 1};
        tr_replay_opts o = {.policy = PC_POLICY_LRU, .capacity = C};
        tr_result one;
        cr_assert_eq(tr_replay_cache(t, &o, &one), 0);
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
            o.two_tier = true;
            o.tier2_pages = Ts[i];
            o.check_every = true;
            tr_result r;
            int rc = tr_replay_cache(t, &o, &r);
            cr_assert_eq(rc, 0, "seed %" PRIu64 " T %" PRIu64 ": %s", s, Ts[i],
                         pc_strerror(rc));
            cr_assert_eq(r.total_pages, t->n_occ);
            cr_assert_eq(r.tier1_hit_pages + r.tier2_hit_pages, r.hit_pages);
            cr_assert_leq(r.hit_pages, t->ideal_hits);
            cr_assert_eq(r.tier2_capacity_pages, Ts[i]);
            cr_assert_eq(r.tier1_hit_pages, one.hit_pages,
                         "seed %" PRIu64 " T %" PRIu64 ": tier 1 %" PRIu64
                         " vs one tier %" PRIu64, s, Ts[i], r.tier1_hit_pages,
                         one.hit_pages);
            cr_assert_eq(r.truncated, 0);
            /* one client: whatever is promoted is the next lookup's */
            cr_assert_eq(r.tier2_promoted_pages, r.tier2_hit_pages);
            cr_assert_leq(r.tier2_demoted_pages, r.evicted_pages);
            if (Ts[i] >= t->n_distinct) {
                cr_assert_gt(r.tier2_hit_pages, 0);
                cr_assert_eq(r.hit_pages, t->ideal_hits,
                             "seed %" PRIu64 ": %" PRIu64 " hits, ideal %" PRIu64,
                             s, r.hit_pages, t->ideal_hits);
                cr_assert_eq(r.tier2_evicted_pages, 0);
                cr_assert_eq(r.tier2_unpromoted, 0);
            }
        }
        tr_trace_free(t);
        free(text);
    }
}

/* Random damage to valid lines of both formats: a clean error or a clean
 * load, never a crash (the sanitizer build watches the bytes). */
Test(parse, mutated_input_never_crashes)
{
    static const char *const good[] = {
        "{\"timestamp\": 12, \"input_length\": 1100, \"output_length\": 7, "
        "\"hash_ids\": [0, 1, 2]}\n"
        "{\"input_length\": 600, \"hash_ids\": [0, 5], \"x\": {\"y\": [1, \"z\"]}}\n",
        "a\t1100\tblocks\t0,1,2\nb\t9\ttokens\t1,2,3,4,5,6,7,8,9\n",
    };
    uint64_t s = base_seed();
    static const char alphabet[] = "{}[]\",:0123456789-+.eE \t\r\nabc\\u\x01\x7f";
    for (int k = 0; k < 4000; k++) {
        const char *g = good[k % 2];
        size_t n = strlen(g);
        char buf[512];
        cr_assert_lt(n + 8, sizeof buf);
        memcpy(buf, g, n + 1);
        int edits = 1 + (int)(test_rng_next(&s) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(test_rng_next(&s) % n);
            char c = alphabet[test_rng_next(&s) % (sizeof alphabet - 1)];
            switch (test_rng_next(&s) % 3) {
            case 0: buf[at] = c; break;                              /* replace */
            case 1: memmove(buf + at, buf + at + 1, n - at); n--; break; /* delete */
            default:                                                 /* insert */
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = c;
                n++;
            }
            if (n < 2)
                break;
        }
        tr_load_opts o = {.page_tokens = 4, .err = devnull(), .skip_bad = k % 3 == 0,
                          .format = k % 2 ? TR_FMT_SIMPLE : TR_FMT_AUTO};
        tr_trace *t = NULL;
        int rc = tr_trace_load_mem(buf, n, "m", &o, &t);
        cr_assert(rc == 0 || rc == PC_E_INVAL || rc == PC_E_RANGE, "%d", rc);
        if (rc == 0) {
            tr_result r;
            cr_assert_eq(tr_replay_belady(t, 3, true, NULL, &r), 0);
            tr_replay_opts ro = {.policy = PC_POLICY_LRU, .capacity = 3,
                                 .check_every = true};
            cr_assert_eq(tr_replay_cache(t, &ro, &r), 0);
        }
        tr_trace_free(t);
    }
}

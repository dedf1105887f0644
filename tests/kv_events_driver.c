/*
 * tests/kv_events_driver.c - the workload of test_kv_events (kv_events_e2e.py):
 * a client of a real prefixcached that runs random requests over prompts
 * sharing prefixes (a pool small enough to evict, promotions from the
 * second tier), flushes of one namespace and of everything, and a pinned
 * lease kept across operations now and then; then reports what the daemon
 * holds, computed from the daemon's own answers, not from any event:
 *
 *   pool           the block hash of every page the pool holds: the union,
 *                  over every prompt ever inserted, of the pages a lookup
 *                  matches (a cached page is a prefix page of an inserted
 *                  prompt, and a cached prefix has no holes: exact)
 *   tier2_visible  pages a lookup says tier 2 holds (after the match)
 *   tree_pages, tier2_pages   the daemon's counters
 *
 * Usage: kv_events_driver ENDPOINT OPS SEED OUT.  Prints "MID" after a quarter
 * of the operations and "MID2" after three quarters, each time waiting for
 * a line on stdin (a subscriber joins late; one stops reading for a while),
 * then writes one JSON object to the file OUT (not to stdout: the test
 * reads stdout only for the cues, and a big object would fill the pipe).  Exit 0, or 1 with the reason on stderr.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/pagehash.h"
#include "rpc/client.h"
#include "tests/harness/prng.h"

#define MAXP 8       /* pages per prompt */
#define MAXT (MAXP * 64)

typedef struct prompt {
    char ns[2];
    size_t n; /* tokens */
    uint32_t tok[MAXT];
} prompt;

static pc_client *g_c;
static uint32_t P;

static void die(const char *what, int rc)
{
    fprintf(stderr, "kv_events_driver: %s: %s (%s)\n", what, pc_strerror(rc),
            pc_client_last_error(g_c));
    exit(1);
}

static void gen(uint64_t *rng, prompt *p)
{
    p->ns[0] = test_rng_next(rng) % 3 ? 'a' : 'b';
    p->ns[1] = 0;
    size_t pages = 1 + test_rng_next(rng) % MAXP;
    uint32_t fam = (uint32_t)(test_rng_next(rng) % 5);
    size_t shared = test_rng_next(rng) % (pages + 1);
    p->n = pages * P;
    for (size_t i = 0; i < p->n; i++)
        p->tok[i] = i < shared * P ? fam * 100000 + (uint32_t)i
                                   : (uint32_t)(test_rng_next(rng) % 4);
}

static void stat_fn(void *ctx, const char *name, uint64_t v)
{
    uint64_t *o = ctx;
    if (strcmp(name, "tree.pages") == 0)
        o[0] = v;
    else if (strcmp(name, "tier2.pages") == 0)
        o[1] = v;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: kv_events_driver ENDPOINT OPS SEED OUT\n");
        return 2;
    }
    int ops = atoi(argv[2]);
    uint64_t rng = strtoull(argv[3], NULL, 0);
    int rc;
    if ((rc = pc_client_connect(argv[1], 10000, &g_c)))
        die("connect", rc);
    pc_hello h;
    if ((rc = pc_client_hello(g_c, &h)))
        die("hello", rc);
    P = h.page_tokens;
    if (P * MAXP > MAXT)
        die("page_tokens too large for the driver", PC_E_INVAL);
    prompt *seen = calloc((size_t)ops, sizeof(*seen));
    size_t nseen = 0;
    uint64_t held = 0;
    for (int op = 0; op < ops; op++) {
        if (op == ops / 4 || op == 3 * ops / 4) { /* the test's cues */
            printf(op == ops / 4 ? "MID\n" : "MID2\n");
            fflush(stdout);
            char line[16];
            if (!fgets(line, sizeof(line), stdin))
                die("stdin", PC_E_IO);
        }
        uint64_t r = test_rng_next(&rng) % 100;
        if (op >= ops - ops / 20)
            r %= 84; /* the end: requests only, so that both tiers hold some */
        if (r < 84) {
            prompt *p = &seen[nseen];
            gen(&rng, p);
            unsigned fl = PC_CLIENT_PIN | PC_CLIENT_ALLOC;
            if (r < 25)
                fl |= PC_CLIENT_PROMOTE;
            pc_client_lookup_result lr;
            if ((rc = pc_client_lookup(g_c, p->ns, 1, p->tok, p->n, fl, 0, &lr)))
                die("lookup", rc);
            uint64_t lease = lr.lease;
            if (lr.alloc_status == 0) {
                uint32_t blocks[MAXP];
                memcpy(blocks, lr.blocks, lr.pages * sizeof(*blocks));
                memcpy(blocks + lr.pages, lr.alloc_blocks,
                       lr.n_alloc * sizeof(*blocks));
                bool keep = !held && r % 9 == 0 && lease;
                pc_client_insert_result ir;
                if ((rc = pc_client_insert(g_c, p->ns, 1, p->tok, p->n, blocks,
                                           lease, keep ? PC_CLIENT_PIN : 0,
                                           NULL, &ir)))
                    die("insert", rc);
                nseen++;
                if (keep) {
                    held = lease;
                    lease = 0;
                }
            }
            if (lease && (rc = pc_client_release(g_c, lease)))
                die("release", rc);
        } else if (r < 91) {
            uint64_t ev;
            if ((rc = pc_client_flush(g_c, test_rng_next(&rng) % 2 ? "a" : "b",
                                      1, &ev)))
                die("flush ns", rc);
        } else if (r < 95) {
            uint64_t ev;
            if ((rc = pc_client_flush(g_c, NULL, 0, &ev)))
                die("flush all", rc);
        } else if (held) {
            if ((rc = pc_client_release(g_c, held)))
                die("release held", rc);
            held = 0;
        }
    }
    if (held && (rc = pc_client_release(g_c, held)))
        die("release held", rc);
    /* What the daemon holds, from its answers. */
    FILE *out = fopen(argv[4], "w");
    if (!out)
        die(argv[4], PC_E_IO);
    fprintf(out, "{\"pool\": [");
    int first = 1;
    uint64_t *vis = malloc(nseen * MAXP * sizeof(*vis));
    size_t nvis = 0;
    for (size_t i = 0; i < nseen; i++) {
        prompt *p = &seen[i];
        pc_client_lookup_result lr;
        if ((rc = pc_client_lookup(g_c, p->ns, 1, p->tok, p->n, 0, 0, &lr)))
            die("final lookup", rc);
        size_t t2 = lr.tier2_tokens / P, np = p->n / P;
        pc_page_hash ch[MAXP];
        pc_page_hash_chain(p->ns, 1, p->tok, np, P, ch);
        for (size_t k = 0; k < lr.pages; k++) {
            fprintf(out, "%s%" PRIu64, first ? "" : ", ", ch[k].lo);
            first = 0;
        }
        for (size_t k = lr.pages; k < lr.pages + t2 && k < np; k++)
            vis[nvis++] = ch[k].lo;
    }
    fprintf(out, "], \"tier2_visible\": [");
    for (size_t i = 0; i < nvis; i++)
        fprintf(out, "%s%" PRIu64, i ? ", " : "", vis[i]);
    uint64_t cnt[2] = {0, 0};
    if ((rc = pc_client_stats(g_c, stat_fn, cnt)))
        die("stats", rc);
    fprintf(out, "], \"tree_pages\": %" PRIu64 ", \"tier2_pages\": %" PRIu64
           ", \"page_tokens\": %u, \"prompts\": %zu}\n", cnt[0], cnt[1], P,
           nseen);
    if (fclose(out) != 0)
        die(argv[4], PC_E_IO);
    free(vis);
    free(seen);
    pc_client_close(g_c);
    return 0;
}

/*
 * tests/metrics/traffic.c - a little known traffic for the /metrics tests:
 *
 *   metrics_traffic ENDPOINT ROUNDS
 *
 * Each round, in namespace "demo": lookup+alloc of 64 tokens (a miss the
 * first time), insert with release, lookup again (a hit); then two lookups
 * in a namespace with a quote and a backslash in its name (label
 * escaping), and a release of an unknown lease (a refusal); from round 4
 * on, a lookup of round r-4's prompt, which a pool of 16 blocks has
 * evicted by then (to tier 2, when the daemon has one: a tier-2 hit).  Prints
 * nothing; exits 0, or 1 with the failing step on stderr.
 */
#include <stdio.h>
#include <stdlib.h>

#include "rpc/client.h"

static int die(const char *what, int rc)
{
    fprintf(stderr, "metrics_traffic: %s: %s\n", what, pc_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: metrics_traffic ENDPOINT ROUNDS\n");
        return 2;
    }
    int rounds = atoi(argv[2]);
    pc_client *c;
    int rc = pc_client_connect(argv[1], 5000, &c);
    if (rc)
        return die("connect", rc);
    pc_hello h;
    if ((rc = pc_client_hello(c, &h)))
        return die("hello", rc);
    uint32_t tok[64];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 64; i++)
            tok[i] = (uint32_t)(r * 1000 + i);
        pc_client_lookup_result lr;
        if ((rc = pc_client_lookup(c, "demo", 4, tok, 64, PC_CLIENT_ALLOC, 0, &lr)))
            return die("lookup+alloc", rc);
        if (lr.alloc_status == 0 && lr.n_alloc) {
            uint32_t blocks[64];
            for (size_t i = 0; i < lr.pages; i++)
                blocks[i] = lr.blocks[i];
            for (size_t i = 0; i < lr.n_alloc; i++)
                blocks[lr.pages + i] = lr.alloc_blocks[i];
            pc_client_insert_result ir;
            if ((rc = pc_client_insert(c, "demo", 4, tok, 64, blocks,
                                       lr.lease, PC_CLIENT_RELEASE, NULL, &ir)))
                return die("insert", rc);
        }
        if ((rc = pc_client_lookup(c, "demo", 4, tok, 64, 0, 0, &lr)))
            return die("lookup", rc);
        if (r >= 4) {
            uint32_t old[64];
            for (int i = 0; i < 64; i++)
                old[i] = (uint32_t)((r - 4) * 1000 + i);
            if ((rc = pc_client_lookup(c, "demo", 4, old, 64, 0, 0, &lr)))
                return die("lookup of an evicted prompt", rc);
        }
        for (int k = 0; k < 2; k++) /* 2 a round: a series of its own */
            if ((rc = pc_client_lookup(c, "q\"b\\s", 5, tok, 64, 0, 0, &lr)))
                return die("lookup (odd namespace)", rc);
        if (pc_client_release(c, 0x1234567) != PC_E_LEASE)
            return die("release of an unknown lease", PC_E_INVAL);
    }
    pc_client_close(c);
    return 0;
}

/*
 * bench/lookup_rt.c - the C client's side of bench/py_bench.py: lookup round
 * trips through libprefixcache against a daemon someone else started (the
 * same one the Python client measures against, in the same run).
 *
 *   lookup_rt ENDPOINT NS PROMPTS INDICES
 *     PROMPTS   binary: uint32 n_prompts, uint32 n_tokens, then the prompts'
 *               tokens (uint32, little-endian), n_prompts x n_tokens
 *     INDICES   binary: uint32 count, then count prompt indices (uint32)
 *   For each index, one lookup (no pin) of that prompt, timed; every reply
 *   must match the whole prompt.  Prints {"p50_us": .., "p99_us": .., "n": ..}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "rpc/client.h"

static uint32_t *slurp(const char *path, size_t *n_words)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        bench_die("%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (len < 8 || len % 4)
        bench_die("%s: %ld bytes: not a list of uint32", path, len);
    uint32_t *w = bench_xmalloc((size_t)len);
    if (fread(w, 1, (size_t)len, f) != (size_t)len)
        bench_die("%s: short read", path);
    fclose(f);
    *n_words = (size_t)len / 4;
    return w;
}

int main(int argc, char **argv)
{
    bench_cli_init("lookup_rt");
    if (argc != 5) {
        fprintf(stderr, "usage: lookup_rt ENDPOINT NS PROMPTS INDICES\n");
        return 2;
    }
    size_t np, ni;
    uint32_t *pr = slurp(argv[3], &np), *ix = slurp(argv[4], &ni);
    uint32_t nprompts = pr[0], ntok = pr[1], count = ix[0];
    if (np != 2 + (size_t)nprompts * ntok || ni != 1 + (size_t)count || !count)
        bench_die("malformed prompt or index file");
    pc_client *c;
    int rc = pc_client_connect(argv[1], 10000, &c);
    if (rc)
        bench_die("connect %s: %s", argv[1], pc_strerror(rc));
    const char *ns = argv[2];
    double *lat = bench_xmalloc(count * sizeof(double));
    for (uint32_t k = 0; k < count + 200; k++) {
        uint32_t i = ix[1 + (k < 200 ? k % count : k - 200)];
        if (i >= nprompts)
            bench_die("index %u beyond %u prompts", i, nprompts);
        pc_client_lookup_result r;
        uint64_t t0 = bench_now_ns();
        rc = pc_client_lookup(c, ns, strlen(ns), pr + 2 + (size_t)i * ntok, ntok, 0,
                              0, &r);
        uint64_t dt = bench_now_ns() - t0;
        if (rc || r.tokens != ntok) /* the prompts are warm, whole pages */
            bench_die("lookup %u: %s, %zu of %u tokens", k, pc_strerror(rc),
                      r.tokens, ntok);
        if (k >= 200) /* the first 200 warm the code paths and the socket */
            lat[k - 200] = (double)dt / 1000.0;
    }
    qsort(lat, count, sizeof(double), bench_cmp_double);
    printf("{\"p50_us\": %.3f, \"p99_us\": %.3f, \"n\": %u}\n",
           bench_quantile_sorted(lat, count, 0.5), bench_quantile_sorted(lat, count, 0.99),
           count);
    pc_client_close(c);
    free(lat), free(pr), free(ix);
    return 0;
}

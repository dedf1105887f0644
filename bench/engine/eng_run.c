/*
 * bench/engine/eng_run.c - the reference engine as a program: generate from
 * one prompt, against a running prefixcached or alone.
 *
 *   prefixcached $(eng_run --daemon-args) --shm_name=/x --endpoint=ipc:///tmp/x.sock &
 *   eng_run --endpoint ipc:///tmp/x.sock --len 2048 --gen 16 --repeat 2
 *   eng_run --no-cache --len 2048 --gen 16
 *
 * The prompt is --tokens a,b,c or generated: --prefix-len K tokens from
 * --prefix-seed followed by --len - K tokens from --seed (so that two runs
 * with the same prefix seed share a cached prefix).  It prints the generated
 * tokens and, per run, what was cached and where the time went.  With
 * --endpoint and no daemon answering, it says so and runs without the cache.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/common/cli.h"
#include "bench/engine/engine.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: eng_run [--endpoint EP | --no-cache] [--len N] [--gen N]\n"
        "               [--seed N] [--prefix-len K] [--prefix-seed N]\n"
        "               [--tokens a,b,...] [--repeat N] [--timeout-ms N]\n"
        "               [shape options] | --daemon-args [shape options]\n"
        "  --endpoint EP     prefixcached's endpoint (its pool must have this\n"
        "                    model's block layout: see --daemon-args)\n"
        "  --no-cache        compute everything here (the default without\n"
        "                    --endpoint)\n"
        "  --len N           prompt tokens (default 2048)\n"
        "  --gen N           tokens to generate (default 16)\n"
        "  --repeat N        run the prompt N times (default 1)\n"
        "  --daemon-args     print the daemon knobs for this shape and exit\n"
        ENG_SHAPE_USAGE);
}

int main(int argc, char **argv)
{
    eng_shape shape = ENG_SHAPE_DEFAULT;
    const char *endpoint = NULL, *tokens = NULL;
    uint64_t len = 2048, gen = 16, seed = 1, plen = 0, pseed = 7, repeat = 1,
             timeout = 5000;
    bool daemon_args = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t *num = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-cache")) {
            endpoint = NULL;
            continue;
        } else if (!strcmp(a, "--daemon-args")) {
            daemon_args = true;
            continue;
        } else if (!strcmp(a, "--endpoint") && v) {
            endpoint = v;
        } else if (!strcmp(a, "--tokens") && v) {
            tokens = v;
        } else if (!strcmp(a, "--len")) {
            num = &len;
        } else if (!strcmp(a, "--gen")) {
            num = &gen;
        } else if (!strcmp(a, "--seed")) {
            num = &seed;
        } else if (!strcmp(a, "--prefix-len")) {
            num = &plen;
        } else if (!strcmp(a, "--prefix-seed")) {
            num = &pseed;
        } else if (!strcmp(a, "--repeat")) {
            num = &repeat;
        } else if (!strcmp(a, "--timeout-ms")) {
            num = &timeout;
        } else if (!strncmp(a, "--", 2) && v) {
            int rc = eng_shape_set(&shape, a + 2, v);
            if (rc) {
                fprintf(stderr, "eng_run: %s %s: %s\n", a, v,
                        rc == PC_E_NOENT ? "unknown option" : "bad value");
                usage(stderr);
                return 2;
            }
        } else {
            fprintf(stderr, "eng_run: bad argument %s\n", a);
            usage(stderr);
            return 2;
        }
        if (num && (!v || !bench_parse_u64(v, num))) {
            fprintf(stderr, "eng_run: %s needs a number\n", a);
            return 2;
        }
        i++;
    }
    int rc = eng_shape_check(&shape);
    if (rc) {
        fprintf(stderr, "eng_run: bad model shape: %s\n", pc_strerror(rc));
        return 2;
    }
    if (daemon_args) {
        char args[ENG_DAEMON_NARGS][48];
        eng_daemon_args(&shape, args);
        for (int i = 0; i < ENG_DAEMON_NARGS; i++)
            printf("%s%s", i ? " " : "", args[i]);
        printf("\n");
        return 0;
    }

    /* the prompt */
    size_t n = 0;
    uint32_t *prompt = NULL;
    if (tokens) {
        size_t cap = strlen(tokens) / 2 + 2;
        prompt = malloc(cap * sizeof(uint32_t));
        for (const char *p = tokens; prompt && *p && n < cap;) {
            char *end;
            unsigned long long t = strtoull(p, &end, 10);
            if (end == p || t >= shape.vocab) {
                fprintf(stderr, "eng_run: bad token near \"%s\" (vocab %u)\n",
                        p, shape.vocab);
                return 2;
            }
            prompt[n++] = (uint32_t)t;
            p = *end == ',' ? end + 1 : end;
        }
    } else {
        if (plen > len || len == 0) {
            fprintf(stderr, "eng_run: need 0 <= --prefix-len <= --len, --len > 0\n");
            return 2;
        }
        n = len;
        prompt = malloc(n * sizeof(uint32_t));
        uint64_t s1 = pseed * 1000003 + 11, s2 = seed * 1000003 + 17;
        for (size_t i = 0; prompt && i < n; i++) {
            prompt[i] = eng_prompt_token(i < plen ? &s1 : &s2, shape.vocab);
        }
    }
    if (!prompt || n == 0 || gen == 0 || n + gen > shape.max_ctx) {
        fprintf(stderr, "eng_run: need 1 <= tokens, --gen >= 1, tokens + gen "
                "<= max-ctx (%u)\n", shape.max_ctx);
        return 2;
    }

    eng_model *m;
    if ((rc = eng_model_create(&shape, &m))) {
        fprintf(stderr, "eng_run: model: %s\n", pc_strerror(rc));
        return 1;
    }
    eng_engine *e;
    rc = eng_engine_create(m, endpoint, (int)timeout, &e);
    if (rc && endpoint) {
        fprintf(stderr, "eng_run: no cache at %s (%s): computing everything\n",
                endpoint, pc_strerror(rc));
        rc = eng_engine_create(m, NULL, 0, &e);
    }
    if (rc) {
        fprintf(stderr, "eng_run: engine: %s\n", pc_strerror(rc));
        eng_model_destroy(m);
        return 1;
    }
    uint32_t *out = malloc(gen * sizeof(uint32_t));
    for (unsigned long long r = 0; out && r < repeat; r++) {
        eng_stats st;
        rc = eng_generate(e, prompt, n, gen, out, NULL, NULL, &st);
        if (rc) {
            fprintf(stderr, "eng_run: generate: %s\n", pc_strerror(rc));
            break;
        }
        printf("run %llu: prompt %zu tokens, cached %zu (matched %zu), "
               "computed %zu, inserted %zu pages%s%s\n", r + 1,
               st.prompt_tokens, st.cached_tokens, st.matched_tokens,
               st.computed_tokens, st.inserted_pages,
               st.cache_status ? ", cache error: " : "",
               st.cache_status ? pc_errname(st.cache_status) : "");
        printf("  ttft %.3f ms (lookup %.3f, prefill %.3f), decode %.3f ms "
               "(%zu tokens), insert+release %.3f ms\n  tokens:",
               st.ttft_ns / 1e6, st.lookup_ns / 1e6, st.prefill_ns / 1e6,
               st.decode_ns / 1e6, st.gen_tokens, st.insert_ns / 1e6);
        for (size_t i = 0; i < gen; i++)
            printf(" %u", out[i]);
        printf("\n");
    }
    free(out);
    free(prompt);
    eng_engine_destroy(e);
    eng_model_destroy(m);
    return rc ? 1 : 0;
}

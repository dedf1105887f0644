/*
 * tests/test_engine.c - the reference engine (bench/engine/) reuses cached
 * prefills without changing its outputs.
 *
 * Every test starts its own prefixcached (tests/harness/harness.h) with the
 * block layout of a tiny model (fp32, 2 layers), and compares generations
 * through the daemon with those of an engine without cache: the greedy
 * tokens must be identical and the logits (after the prompt and at the last
 * step) agree to 1e-4 relative (max |a - b| / max |b|).
 *
 *   reuse            cold run, warm run (all but the last token cached), a
 *                    page-aligned prompt (its last page recomputed), a
 *                    prompt sharing only a prefix; no lease left behind
 *   cross_process    a forked engine process writes a prompt's KV; this
 *                    process reuses it for the same prompt and for another
 *                    one with the same prefix
 *   generic_shape    page_tokens 3 and head_dim 8: the attention's generic
 *                    (not specialised) path
 *   no_space         a pool too small for the prompt: alloc fails, the
 *                    engine computes without caching, same outputs
 *   bad_input        shapes, tokens, lengths; a daemon with another layout;
 *                    no daemon at all
 */
#include "tests/harness/harness.h"

#include <math.h>

#include "bench/engine/engine.h"
#include "rpc/client.h"

TestSuite(engine, .fini = hd_cleanup, .timeout = 120);

#define GEN 6

static eng_shape tiny_shape(void)
{
    eng_shape s = {.layers = 2, .dim = 128, .n_heads = 8, .kv_heads = 2,
                   .ffn = 96, .vocab = 256, .page_tokens = 4, .max_ctx = 128,
                   .seed = 3};
    return s;
}

/* A daemon with the shape's block layout and pool_blocks blocks. */
static void start_for(hd_daemon *d, const eng_shape *s, unsigned pool_blocks)
{
    static char a[ENG_DAEMON_NARGS + 1][48];
    eng_daemon_args(s, a);
    snprintf(a[ENG_DAEMON_NARGS], 48, "--pool_blocks=%u", pool_blocks);
    const char *extra[] = {a[0], a[1], a[2], a[3], a[4], a[5], NULL};
    hd_startv(d, extra);
}

static void make_prompt(uint32_t *t, size_t n, uint32_t seed, uint32_t vocab)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        t[i] = eng_prompt_token(&s, vocab);
}

typedef struct gen_out {
    uint32_t tok[GEN];
    float first[1024], last[1024];
    eng_stats st;
} gen_out;

static void gen(eng_engine *e, const uint32_t *p, size_t n, gen_out *o)
{
    int rc = eng_generate(e, p, n, GEN, o->tok, o->first, o->last, &o->st);
    cr_assert_eq(rc, 0, "eng_generate: %s", pc_errname(rc));
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

static void same_output(const gen_out *a, const gen_out *ref, uint32_t vocab,
                        const char *what)
{
    for (size_t i = 0; i < GEN; i++)
        cr_assert_eq(a->tok[i], ref->tok[i], "%s: token %zu: %u != %u", what,
                     i, a->tok[i], ref->tok[i]);
    double f = rel_diff(a->first, ref->first, vocab);
    double l = rel_diff(a->last, ref->last, vocab);
    cr_assert(f <= 1e-4 && l <= 1e-4, "%s: logits differ: %g (first), %g "
              "(last)", what, f, l);
}

static void no_leases_left(const hd_daemon *d)
{
    hd_statmap s;
    hd_stats_get(d, &s); /* with check: true */
    cr_assert_eq(hd_stat_req(&s, HD_ST_LEASES), 0);
    cr_assert_eq(hd_stat_req(&s, HD_ST_POOL_LEASED), 0);
}

/* The end of a test: the engine's last insert answered without error, no
 * lease or leased block left in the daemon, everything freed. */
static void finish(hd_daemon *d, eng_engine *e, eng_engine *ref, eng_model *m)
{
    cr_assert_eq(eng_engine_settle(e), 0, "the last insert's reply");
    cr_assert_eq(eng_engine_insert_errors(e), 0);
    no_leases_left(d);
    eng_engine_destroy(e);
    eng_engine_destroy(ref);
    eng_model_destroy(m);
    hd_stop(d);
}

Test(engine, reuse)
{
    eng_shape s = tiny_shape();
    hd_daemon d;
    start_for(&d, &s, 256);
    eng_model *m;
    cr_assert_eq(eng_model_create(&s, &m), 0);
    eng_engine *ref, *e;
    cr_assert_eq(eng_engine_create(m, NULL, 0, &ref), 0);
    cr_assert_eq(eng_engine_create(m, d.endpoint, HD_CALL_MS, &e), 0);

    static gen_out r, o;
    uint32_t a[40], b[40];
    make_prompt(a, 37, 11, s.vocab);

    gen(ref, a, 37, &r);
    cr_assert_eq(r.st.cached_tokens, 0);
    cr_assert_eq(r.st.computed_tokens, 37);

    gen(e, a, 37, &o); /* cold: computes all, inserts 9 pages */
    same_output(&o, &r, s.vocab, "cold");
    cr_assert_eq(o.st.cache_status, 0);
    cr_assert_eq(o.st.cached_tokens, 0);
    cr_assert_eq(o.st.inserted_pages, 9);

    gen(e, a, 37, &o); /* warm: 36 tokens from the pool, 1 computed */
    same_output(&o, &r, s.vocab, "warm");
    cr_assert_eq(o.st.matched_tokens, 36);
    cr_assert_eq(o.st.cached_tokens, 36);
    cr_assert_eq(o.st.computed_tokens, 1);
    cr_assert_eq(o.st.inserted_pages, 0);

    /* page-aligned: 40 tokens all cached after the first run, but the last
     * token's logits are needed, so its page is recomputed privately */
    make_prompt(b, 40, 12, s.vocab);
    gen(ref, b, 40, &r);
    gen(e, b, 40, &o);
    same_output(&o, &r, s.vocab, "aligned, cold");
    cr_assert_eq(o.st.inserted_pages, 10);
    gen(e, b, 40, &o);
    same_output(&o, &r, s.vocab, "aligned, warm");
    cr_assert_eq(o.st.matched_tokens, 40);
    cr_assert_eq(o.st.cached_tokens, 36);
    cr_assert_eq(o.st.computed_tokens, 4);
    cr_assert_eq(o.st.cache_status, 0);

    /* a's first 22 tokens, then others: 5 pages (20 tokens) reused */
    memcpy(b, a, 22 * sizeof(uint32_t));
    make_prompt(b + 22, 11, 13, s.vocab);
    gen(ref, b, 33, &r);
    gen(e, b, 33, &o);
    same_output(&o, &r, s.vocab, "shared prefix");
    cr_assert_eq(o.st.cached_tokens, 20);
    cr_assert_eq(o.st.computed_tokens, 13);
    cr_assert_eq(o.st.inserted_pages, 3);

    finish(&d, e, ref, m);
}

/* A forked engine process: runs p[0..n) through the daemon; exit 0 when it
 * inserted its pages without a cache error. */
static int engine_child(const char *endpoint, const uint32_t *p, size_t n)
{
    eng_shape s = tiny_shape();
    eng_model *m;
    eng_engine *e;
    if (eng_model_create(&s, &m) || eng_engine_create(m, endpoint, 3000, &e))
        return 10;
    uint32_t out[GEN];
    eng_stats st;
    int rc = eng_generate(e, p, n, GEN, out, NULL, NULL, &st);
    int settled = eng_engine_settle(e); /* the insert is done before exit */
    int code = rc ? 11 : st.cache_status ? 12 : st.inserted_pages != n / 4 ? 13
             : settled ? 14 : 0;
    if (code)
        fprintf(stderr, "engine child: rc %d, cache_status %d, inserted %zu, "
                "insert reply %d\n", rc, st.cache_status, st.inserted_pages,
                settled);
    eng_engine_destroy(e);
    eng_model_destroy(m);
    return code;
}

Test(engine, cross_process)
{
    eng_shape s = tiny_shape();
    hd_daemon d;
    start_for(&d, &s, 256);
    uint32_t a[50], b[50];
    make_prompt(a, 50, 21, s.vocab);

    hd_quiesce(); /* no busy ZeroMQ thread of ours at fork */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        _exit(engine_child(d.endpoint, a, 50));
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);

    eng_model *m;
    cr_assert_eq(eng_model_create(&s, &m), 0);
    eng_engine *ref, *e;
    cr_assert_eq(eng_engine_create(m, NULL, 0, &ref), 0);
    cr_assert_eq(eng_engine_create(m, d.endpoint, HD_CALL_MS, &e), 0);
    static gen_out r, o;

    /* another prompt on the child's first 30 tokens: 7 of its pages */
    memcpy(b, a, 30 * sizeof(uint32_t));
    make_prompt(b + 30, 15, 22, s.vocab);
    gen(ref, b, 45, &r);
    gen(e, b, 45, &o);
    same_output(&o, &r, s.vocab, "prefix from another process");
    cr_assert_eq(o.st.cache_status, 0);
    cr_assert_eq(o.st.cached_tokens, 28);
    cr_assert_eq(o.st.computed_tokens, 17);

    /* the child's own prompt: 48 of 50 tokens from its blocks */
    gen(ref, a, 50, &r);
    gen(e, a, 50, &o);
    same_output(&o, &r, s.vocab, "prompt of another process");
    cr_assert_eq(o.st.cached_tokens, 48);
    cr_assert_eq(o.st.computed_tokens, 2);

    finish(&d, e, ref, m);
}

Test(engine, generic_shape)
{
    eng_shape s = {.layers = 3, .dim = 64, .n_heads = 8, .kv_heads = 2,
                   .ffn = 80, .vocab = 300, .page_tokens = 3, .max_ctx = 64,
                   .seed = 9};
    hd_daemon d;
    start_for(&d, &s, 128);
    eng_model *m;
    cr_assert_eq(eng_model_create(&s, &m), 0);
    eng_engine *ref, *e;
    cr_assert_eq(eng_engine_create(m, NULL, 0, &ref), 0);
    cr_assert_eq(eng_engine_create(m, d.endpoint, HD_CALL_MS, &e), 0);
    static gen_out r, o;
    uint32_t a[40];
    make_prompt(a, 40, 31, s.vocab);
    gen(ref, a, 40, &r);
    for (int i = 0; i < 2; i++) {
        gen(e, a, 40, &o);
        same_output(&o, &r, s.vocab, i ? "warm" : "cold");
        cr_assert_eq(o.st.cached_tokens, i ? 39u : 0u);
    }
    finish(&d, e, ref, m);
}

Test(engine, no_space)
{
    eng_shape s = tiny_shape();
    hd_daemon d;
    start_for(&d, &s, 4); /* 4 blocks: a 37-token prompt needs 9 */
    eng_model *m;
    cr_assert_eq(eng_model_create(&s, &m), 0);
    eng_engine *ref, *e;
    cr_assert_eq(eng_engine_create(m, NULL, 0, &ref), 0);
    cr_assert_eq(eng_engine_create(m, d.endpoint, HD_CALL_MS, &e), 0);
    static gen_out r, o;
    uint32_t a[37];
    make_prompt(a, 37, 41, s.vocab);
    gen(ref, a, 37, &r);
    gen(e, a, 37, &o);
    same_output(&o, &r, s.vocab, "no space");
    cr_assert_eq(o.st.cache_status, PC_E_NOSPACE);
    cr_assert_eq(o.st.inserted_pages, 0);
    /* a prompt that fits still gets cached */
    gen(ref, a, 13, &r);
    gen(e, a, 13, &o);
    same_output(&o, &r, s.vocab, "fits");
    cr_assert_eq(o.st.cache_status, 0);
    cr_assert_eq(o.st.inserted_pages, 3);
    finish(&d, e, ref, m);
}

Test(engine, bad_input)
{
    eng_shape s = tiny_shape(), b;
    cr_assert_eq(eng_shape_check(&s), 0);
    b = s, b.dim = 100; /* not a multiple of n_heads */
    cr_assert_eq(eng_shape_check(&b), PC_E_INVAL);
    b = s, b.kv_heads = 3;
    cr_assert_eq(eng_shape_check(&b), PC_E_INVAL);
    b = s, b.layers = 0;
    cr_assert_eq(eng_shape_check(&b), PC_E_INVAL);
    b = s, b.page_tokens = 2000;
    cr_assert_eq(eng_shape_check(&b), PC_E_RANGE);
    eng_model *m = NULL;
    cr_assert_eq(eng_model_create(&b, &m), PC_E_RANGE);
    cr_assert_null(m);
    cr_assert_eq(eng_shape_set(&b, "layers", "4"), 0);
    cr_assert_eq(b.layers, 4);
    cr_assert_eq(eng_shape_set(&b, "layers", "x"), PC_E_INVAL);
    cr_assert_eq(eng_shape_set(&b, "nope", "1"), PC_E_NOENT);

    cr_assert_eq(eng_model_create(&s, &m), 0);
    eng_engine *e;
    cr_assert_eq(eng_engine_create(m, NULL, 0, &e), 0);
    uint32_t p[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[GEN];
    eng_stats st;
    cr_assert_eq(eng_generate(e, p, 0, GEN, out, NULL, NULL, &st), PC_E_INVAL);
    cr_assert_eq(eng_generate(e, p, 8, 0, out, NULL, NULL, &st), PC_E_INVAL);
    cr_assert_eq(eng_generate(e, p, 8, s.max_ctx, out, NULL, NULL, &st),
                 PC_E_RANGE);
    p[3] = s.vocab;
    cr_assert_eq(eng_generate(e, p, 8, GEN, out, NULL, NULL, &st), PC_E_INVAL);
    eng_engine_destroy(e);

    /* no daemon: a timeout, not a hang or a crash */
    char ep[128];
    snprintf(ep, sizeof(ep), "ipc:///tmp/pc-test-%ld-nodaemon.sock",
             (long)getpid());
    e = NULL;
    int rc = eng_engine_create(m, ep, 200, &e);
    cr_assert_eq(rc, PC_E_TIMEOUT, "%s", pc_errname(rc));
    cr_assert_null(e);

    /* a daemon whose blocks are another model's (the harness's fp16) */
    hd_daemon d;
    hd_start(&d, NULL);
    cr_assert_eq(eng_engine_create(m, d.endpoint, HD_CALL_MS, &e), PC_E_INVAL);
    eng_model_destroy(m);
    hd_stop(&d);
}

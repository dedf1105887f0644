/*
 * bench/engine/engine.h - a small llama-style decoder-only transformer (fp32,
 * CPU, one thread) whose KV cache lives in prefixcached's shared pool.
 *
 * Bench-private (the reference engine of bench/engine/, its test and the gsp
 * benchmark), not part of the project's API.  See engine.c for the KV layout
 * and the request flow.  Every function returns 0 or a negative PC_E_*.
 */
#ifndef BENCH_ENGINE_H
#define BENCH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

/* The model's shape.  head_dim = dim / n_heads (a multiple of 4);
 * n_heads a multiple of kv_heads (grouped-query attention). */
typedef struct eng_shape {
    uint32_t layers, dim, n_heads, kv_heads, ffn, vocab;
    uint32_t page_tokens; /* the daemon's page (= block) size in tokens    */
    uint32_t max_ctx;     /* prompt + generated tokens at most             */
    uint64_t seed;        /* the weights are generated from it             */
} eng_shape;

/* The bench default: a 2,048-token prefill takes ~210 ms on one
 * core of a small Xeon (see RESULTS.md).  8 query heads share 2 KV heads. */
#define ENG_SHAPE_DEFAULT                                                      \
    ((eng_shape){.layers = 2, .dim = 128, .n_heads = 8, .kv_heads = 2,         \
                 .ffn = 384, .vocab = 4096, .page_tokens = 16,                 \
                 .max_ctx = 4096, .seed = 42})

/* PC_E_INVAL for an inconsistent shape, PC_E_RANGE for one too large. */
int eng_shape_check(const eng_shape *s);
uint32_t eng_head_dim(const eng_shape *s);

/* Set one shape field from a command-line option name without its dashes
 * ("layers", "dim", "heads", "kv-heads", "ffn", "vocab", "page-tokens",
 * "max-ctx", "model-seed").  PC_E_NOENT for another name, PC_E_INVAL for a
 * value that is not a number. */
int eng_shape_set(eng_shape *s, const char *name, const char *value);
#define ENG_SHAPE_USAGE                                                        \
    "  --layers N --dim N --heads N --kv-heads N --ffn N --vocab N\n"          \
    "  --page-tokens N --max-ctx N --model-seed N\n"                           \
    "                    the model's shape (default: 2 layers, dim 128, 8\n"   \
    "                    heads on 2 KV heads, ffn 384, vocab 4096, 16-token\n" \
    "                    pages, 4096 positions, seed 42)\n"

/* The daemon knobs that describe this shape's KV blocks ("--layers=2", ...,
 * "--dtype=fp32"): ENG_DAEMON_NARGS strings of at most 48 bytes. */
#define ENG_DAEMON_NARGS 5
void eng_daemon_args(const eng_shape *s, char out[ENG_DAEMON_NARGS][48]);

/* The namespace engines of this model share (the shape and the seed). */
void eng_namespace(const eng_shape *s, char *buf, size_t n);

/* The next token of a test prompt (eng_run's, tests/test_engine.c's) from
 * the generator state *s: a pseudo-random token in [1, vocab), vocab >= 2. */
uint32_t eng_prompt_token(uint64_t *s, uint32_t vocab);

/* Model FLOPs (2 per multiply-add; norms, RoPE and softmax left out) of a
 * prefill that computes positions [cached, n) of an n-token prompt, the LM
 * head once.  The "ideal speedup" of the gsp bench is a ratio of these. */
double eng_prefill_flops(const eng_shape *s, size_t cached, size_t n);

typedef struct eng_model eng_model;

int eng_model_create(const eng_shape *s, eng_model **out);
void eng_model_destroy(eng_model *m);
const eng_shape *eng_model_shape(const eng_model *m);

typedef struct eng_engine eng_engine;

/* An engine on model m (m must outlive it).  endpoint NULL: no cache, the
 * engine computes every prompt itself.  Otherwise it connects, says hello,
 * maps the pool and checks that the daemon's block layout is this model's
 * (PC_E_INVAL when not; the daemon's errors as they come, e.g. PC_E_TIMEOUT
 * when no daemon answers). */
int eng_engine_create(const eng_model *m, const char *endpoint, int timeout_ms,
                      eng_engine **out);
void eng_engine_destroy(eng_engine *e);

/* An engine sends each request's insert(release) without waiting and takes
 * the reply after its next lookup.  settle: wait for a reply still due now
 * (0, or that insert's error); destroy settles too.  insert_errors: how
 * many such inserts the daemon refused (their leases were released). */
int eng_engine_settle(eng_engine *e);
size_t eng_engine_insert_errors(const eng_engine *e);

/* What one request did, and where its time went. */
typedef struct eng_stats {
    size_t prompt_tokens;
    size_t matched_tokens;  /* the daemon's longest cached prefix           */
    size_t cached_tokens;   /* of those, used (at most the last full page
                               before the prompt's last token)             */
    size_t computed_tokens; /* prompt tokens whose K/V were computed here   */
    size_t inserted_pages;  /* new pages sent with the insert               */
    size_t gen_tokens;
    uint64_t ttft_ns;       /* request start to the first token            */
    uint64_t lookup_ns;     /* the lookup(pin+alloc) round trip            */
    uint64_t insert_ns;     /* sending the insert(release), or a release's
                               round trip when there was nothing to insert */
    uint64_t prefill_ns, decode_ns, total_ns;
    int cache_status;       /* 0, or the error after which this request ran
                               (partly) without the cache                  */
} eng_stats;

/*
 * Greedy generation: prompt[0..n) (token ids < vocab), n_gen >= 1 tokens
 * into out[0..n_gen).  first_logits (vocab floats, may be NULL): the logits
 * after the prompt; last_logits (may be NULL): those that chose out[n_gen-1].
 * A failing cache call never fails the request: it runs without the cache
 * (st->cache_status says why).  Errors: PC_E_INVAL, PC_E_RANGE (n + n_gen >
 * max_ctx).
 */
int eng_generate(eng_engine *e, const uint32_t *prompt, size_t n, size_t n_gen,
                 uint32_t *out, float *first_logits, float *last_logits,
                 eng_stats *st);

#endif /* BENCH_ENGINE_H */

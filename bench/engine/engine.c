/*
 * bench/engine/engine.c - a llama-style decoder-only transformer whose KV
 * cache lives in prefixcached's pool.
 *
 * Model (fp32, weights from a seed):
 *
 *   tokens -> embed -> N x [ RMSNorm -> attention (GQA, RoPE) -> + residual
 *                           RMSNorm -> SwiGLU MLP           -> + residual ]
 *          -> RMSNorm -> LM head -> logits (last position only)
 *
 * KV cache: a sequence is a list of pages of page_tokens tokens; every page
 * is one block laid out exactly as the daemon's pool lays blocks out
 * (blockpool/blockpool.h), wherever the block lives:
 *
 *   block = [L0: K | V][L1: K | V] ... ; K or V = [token][kv_head][head_dim]
 *
 *   page:    0        1        2        3        4        5 (partial)
 *          +--------+--------+--------+--------+--------+----+
 *   where: | pool   | pool   | pool   | pool   | pool   |priv|  + decode
 *          | cached | cached | cached | alloc  | alloc  |    |    pages:
 *          | (pin)  | (pin)  | (pin)  | (new)  | (new)  |    |    private
 *          +--------+--------+--------+--------+--------+----+
 *           read in place, never     written here,      never
 *           written                  inserted           inserted
 *
 *   (without a cache, or when a call fails, every page is private; when a
 *   whole page-aligned prompt is cached, its last page is recomputed
 *   privately, since the last token's logits are needed)
 *
 * Request flow (eng_generate):
 *
 *   lookup(tokens, PIN|ALLOC) ------> cached pages (pinned under a lease)
 *                                     + fresh blocks for the other full pages
 *   prefill positions [cached, n): K/V written straight into their pages;
 *     attention reads every page in place (pool or private)
 *   first token (TTFT) -> greedy decode, new K/V in private pages
 *   insert(full pages, cached + new ids, RELEASE) ---> pages cached, lease ends
 *
 * The insert comes after decoding because the lease is what keeps the
 * prompt's pages from being evicted while decode still reads them (an
 * inserted page is no longer the lease's); the release drops the pins.
 *
 * Determinism: the K/V and the output of position t depend on tokens[0..t]
 * only, and every number is computed by the same operations in the same
 * order whatever the batch it is computed in (a prefill of all n positions,
 * of a suffix, or one decode step): matmul rows are independent, each sum
 * runs in a fixed order, softmax sums in 8 lanes by absolute key index, and
 * -ffp-contract=off.  So K/V that another engine process wrote equal those
 * this one would compute, bit for bit, and the logits with and without the
 * cache are identical.
 */
#include "bench/engine/engine.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/common/rng.h"
#include "blockpool/blockpool.h"
#include "rpc/client.h"

#define ENG_QB 8      /* query positions per attention block              */
#define ENG_MM_NB 64  /* output columns per matmul block                   */
#define ENG_MAX_DIM 65536u
#define ENG_KW 16       /* keys per score accumulator block (4 x eng_v4)     */
#define ENG_HDMAX 512   /* head_dim at most                                  */

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t eng_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* exp(x), ~2 ulp, elementwise and branch-free so that loops over it
 * vectorise (libm's expf would be most of the attention's time).  The same
 * code runs in every engine, so its rounding is part of the model. */
static inline float eng_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f;
    float fi = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - fi * 0.693145751953125f;
    r = r - fi * 1.428606765330187e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { uint32_t u; float f; } sc;
    sc.u = (uint32_t)((int32_t)fi + 127) << 23;
    return p * sc.f;
}

/* ---- shape ------------------------------------------------------------------- */

uint32_t eng_head_dim(const eng_shape *s)
{
    return s && s->n_heads ? s->dim / s->n_heads : 0;
}

int eng_shape_check(const eng_shape *s)
{
    if (!s || !s->layers || !s->dim || !s->n_heads || !s->kv_heads || !s->ffn ||
        !s->vocab || !s->page_tokens || !s->max_ctx)
        return PC_E_INVAL;
    if (s->dim % s->n_heads || s->n_heads % s->kv_heads ||
        eng_head_dim(s) % 4 || s->n_heads / s->kv_heads > 64 ||
        eng_head_dim(s) > ENG_HDMAX)
        return PC_E_INVAL;
    if (s->layers > 1024 || s->dim > ENG_MAX_DIM || s->ffn > ENG_MAX_DIM ||
        s->vocab > (1u << 24) || s->page_tokens > 1024 ||
        s->max_ctx > (1u << 20))
        return PC_E_RANGE;
    return 0;
}

int eng_shape_set(eng_shape *s, const char *name, const char *value)
{
    static const char *const names[] = {"layers", "dim", "heads", "kv-heads",
                                         "ffn", "vocab", "page-tokens",
                                         "max-ctx", "model-seed"};
    size_t k = 0;
    while (k < sizeof(names) / sizeof(names[0]) && strcmp(names[k], name))
        k++;
    if (k == sizeof(names) / sizeof(names[0]))
        return PC_E_NOENT;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value ? value : "", &end, 10);
    if (!value || !*value || *end || errno || value[0] == '-' ||
        (k < 8 && v > UINT32_MAX))
        return PC_E_INVAL;
    uint32_t *f[] = {&s->layers, &s->dim, &s->n_heads, &s->kv_heads,
                     &s->ffn, &s->vocab, &s->page_tokens, &s->max_ctx};
    if (k < 8)
        *f[k] = (uint32_t)v;
    else
        s->seed = v;
    return 0;
}

void eng_daemon_args(const eng_shape *s, char out[ENG_DAEMON_NARGS][48])
{
    snprintf(out[0], 48, "--layers=%u", s->layers);
    snprintf(out[1], 48, "--kv_heads=%u", s->kv_heads);
    snprintf(out[2], 48, "--head_dim=%u", eng_head_dim(s));
    snprintf(out[3], 48, "--page_tokens=%u", s->page_tokens);
    snprintf(out[4], 48, "--dtype=fp32");
}

void eng_namespace(const eng_shape *s, char *buf, size_t n)
{
    snprintf(buf, n, "eng-llama|L%u|d%u|h%u/%u|f%u|v%u|seed%llu", s->layers,
             s->dim, s->n_heads, s->kv_heads, s->ffn, s->vocab,
             (unsigned long long)s->seed);
}

uint32_t eng_prompt_token(uint64_t *s, uint32_t vocab)
{
    /* Knuth's MMIX LCG, its high bits.  Not splitmix64: eng_run's prompt
     * for a given --seed stays what it was. */
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(1 + (*s >> 33) % (vocab - 1));
}

double eng_prefill_flops(const eng_shape *s, size_t cached, size_t n)
{
    double hd = eng_head_dim(s), d = s->dim;
    double lin = 2.0 * d * (s->n_heads * hd + 2.0 * s->kv_heads * hd) /* qkv */
                 + 2.0 * s->n_heads * hd * d                         /* o   */
                 + 2.0 * d * 2.0 * s->ffn + 2.0 * s->ffn * d;        /* mlp */
    double f = 0;
    for (size_t t = cached; t < n; t++) /* QK and PV over t + 1 keys */
        f += s->layers * (lin + 4.0 * s->n_heads * hd * (double)(t + 1));
    return f + 2.0 * d * s->vocab;
}

/* ---- model ------------------------------------------------------------------- */

typedef struct eng_layer {
    float *attn_norm; /* [dim]                                            */
    float *wqkv;      /* [dim][qd + 2 kvd]: Q | K | V columns              */
    float *wo;        /* [qd][dim]                                         */
    float *ffn_norm;  /* [dim]                                            */
    float *w13;       /* [dim][2 ffn]: gate | up                           */
    float *w2;        /* [ffn][dim]                                        */
} eng_layer;

struct eng_model {
    eng_shape s;
    uint32_t hd, qd, kvd; /* head_dim, n_heads x hd, kv_heads x hd */
    float *embed;         /* [vocab][dim]                          */
    eng_layer *layer;
    float *final_norm;    /* [dim]                                 */
    float *lm_head;       /* [dim][vocab]                          */
    float *rope;          /* [max_ctx][hd/2][cos, sin]             */
    float *mem;
};

const eng_shape *eng_model_shape(const eng_model *m) { return &m->s; }

static void eng_fill(float *w, size_t n, float scale, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++) /* uniform in [-scale, scale) */
        w[i] = scale * ((float)(bench_rng_next(rng) >> 40) * (2.0f / 16777216.0f) -
                        1.0f);
}

int eng_model_create(const eng_shape *s, eng_model **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    int rc = eng_shape_check(s);
    if (rc)
        return rc;
    eng_model *m = calloc(1, sizeof(*m));
    if (!m)
        return PC_E_NOMEM;
    m->s = *s;
    m->hd = eng_head_dim(s);
    m->qd = s->n_heads * m->hd;
    m->kvd = s->kv_heads * m->hd;
    size_t d = s->dim, per_layer = 2 * d + d * (m->qd + 2 * (size_t)m->kvd) +
                                   (size_t)m->qd * d + d * 2 * s->ffn +
                                   (size_t)s->ffn * d;
    size_t total = (size_t)s->vocab * d * 2 + d + per_layer * s->layers +
                   (size_t)s->max_ctx * m->hd;
    m->mem = malloc(total * sizeof(float));
    m->layer = calloc(s->layers, sizeof(eng_layer));
    if (!m->mem || !m->layer) {
        eng_model_destroy(m);
        return PC_E_NOMEM;
    }
    uint64_t rng = s->seed * 0x2545f4914f6cdd1dULL + 1;
    float *p = m->mem;
    m->embed = p, p += (size_t)s->vocab * d;
    eng_fill(m->embed, (size_t)s->vocab * d, 1.0f, &rng);
    float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)s->ffn);
    for (uint32_t l = 0; l < s->layers; l++) {
        eng_layer *L = &m->layer[l];
        L->attn_norm = p, p += d;
        L->wqkv = p, p += d * (m->qd + 2 * (size_t)m->kvd);
        L->wo = p, p += (size_t)m->qd * d;
        L->ffn_norm = p, p += d;
        L->w13 = p, p += d * 2 * s->ffn;
        L->w2 = p, p += (size_t)s->ffn * d;
        for (size_t i = 0; i < d; i++)
            L->attn_norm[i] = L->ffn_norm[i] = 1.0f;
        eng_fill(L->wqkv, d * (m->qd + 2 * (size_t)m->kvd), sd, &rng);
        eng_fill(L->wo, (size_t)m->qd * d, 1.0f / sqrtf((float)m->qd), &rng);
        eng_fill(L->w13, d * 2 * s->ffn, sd, &rng);
        eng_fill(L->w2, (size_t)s->ffn * d, sf, &rng);
    }
    m->final_norm = p, p += d;
    for (size_t i = 0; i < d; i++)
        m->final_norm[i] = 1.0f;
    m->lm_head = p, p += d * s->vocab;
    eng_fill(m->lm_head, d * s->vocab, sd, &rng);
    m->rope = p;
    for (size_t t = 0; t < s->max_ctx; t++)
        for (size_t i = 0; i < m->hd / 2; i++) {
            double a = (double)t * pow(10000.0, -2.0 * (double)i / m->hd);
            m->rope[(t * (m->hd / 2) + i) * 2] = (float)cos(a);
            m->rope[(t * (m->hd / 2) + i) * 2 + 1] = (float)sin(a);
        }
    *out = m;
    return 0;
}

void eng_model_destroy(eng_model *m)
{
    if (!m)
        return;
    free(m->mem);
    free(m->layer);
    free(m);
}

/* ---- kernels ----------------------------------------------------------------- */

/* Y[m][n] = X[m][k] . W[k][n].  Y[i][j] = sum over kk = 0, 1, ... of
 * X[i][kk] * W[kk][j], in that order, whichever path computes row i: rows
 * are independent, so a prefill of a suffix gives the same bits as a full
 * one.  The inner loops run over contiguous W and accumulator columns. */
static void eng_matmul(float *restrict Y, const float *restrict X,
                       const float *restrict W, size_t m, size_t k, size_t n)
{
    float acc[4][ENG_MM_NB];
    for (size_t j0 = 0; j0 < n; j0 += ENG_MM_NB) {
        size_t nb = n - j0 < ENG_MM_NB ? n - j0 : ENG_MM_NB;
        size_t i = 0;
        for (; i + 4 <= m; i += 4) {
            const float *x0 = X + i * k, *x1 = x0 + k, *x2 = x1 + k, *x3 = x2 + k;
            memset(acc, 0, sizeof(acc));
            for (size_t kk = 0; kk < k; kk++) {
                const float *w = W + kk * n + j0;
                float a0 = x0[kk], a1 = x1[kk], a2 = x2[kk], a3 = x3[kk];
                for (size_t j = 0; j < nb; j++) {
                    float wj = w[j];
                    acc[0][j] += a0 * wj;
                    acc[1][j] += a1 * wj;
                    acc[2][j] += a2 * wj;
                    acc[3][j] += a3 * wj;
                }
            }
            for (size_t r = 0; r < 4; r++)
                memcpy(Y + (i + r) * n + j0, acc[r], nb * sizeof(float));
        }
        for (; i < m; i++) {
            const float *x0 = X + i * k;
            memset(acc[0], 0, sizeof(acc[0]));
            for (size_t kk = 0; kk < k; kk++) {
                const float *w = W + kk * n + j0;
                float a0 = x0[kk];
                for (size_t j = 0; j < nb; j++)
                    acc[0][j] += a0 * w[j];
            }
            memcpy(Y + i * n + j0, acc[0], nb * sizeof(float));
        }
    }
}

static void eng_rmsnorm(float *restrict y, const float *restrict x,
                        const float *restrict w, size_t m, size_t d)
{
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * d;
        float ss = 0;
        for (size_t j = 0; j < d; j++)
            ss += xi[j] * xi[j];
        float inv = 1.0f / sqrtf(ss / (float)d + 1e-5f);
        for (size_t j = 0; j < d; j++)
            y[i * d + j] = xi[j] * inv * w[j];
    }
}

/* Rotate pairs (2i, 2i+1) of each of `heads` heads of one row by the angles
 * of absolute position pos. */
static void eng_rope(float *v, size_t heads, size_t hd, const float *cs)
{
    for (size_t h = 0; h < heads; h++)
        for (size_t i = 0; i < hd / 2; i++) {
            float a = v[h * hd + 2 * i], b = v[h * hd + 2 * i + 1];
            float c = cs[2 * i], s = cs[2 * i + 1];
            v[h * hd + 2 * i] = a * c - b * s;
            v[h * hd + 2 * i + 1] = a * s + b * c;
        }
}

/* ---- engine ------------------------------------------------------------------ */

struct eng_engine {
    const eng_model *m;
    pc_client *c; /* NULL: no cache */
    char ns[128];
    size_t ns_len;
    pc_pool_layout lay;
    uint64_t *koff, *voff; /* [layers]: byte offsets in a block (floats: /4) */
    size_t max_pages;
    uint8_t *priv;         /* max_pages private blocks                       */
    uint8_t **page;        /* [max_pages]: this request's page table          */
    uint32_t *ids;         /* [max_pages]: cached + allocated ids             */
    uint32_t *alloc_ids;   /* [max_pages]                                     */
    /* scratch, sized for max_ctx rows */
    float *x, *xn, *qkv, *att, *tmp, *h13, *scores, *kt, *rmax, *logits;
    size_t scores_cap;     /* floats per score row                            */
    /* The last request's insert(release), sent without waiting: its reply
     * is taken after the next lookup (it arrives first, so no wait), or by
     * eng_engine_settle. */
    bool pending;
    uint64_t pend_lease;
    size_t insert_errors;
    int first_insert_error;
};

int eng_engine_settle(eng_engine *e)
{
    if (!e || !e->pending)
        return 0;
    pc_client_reply r;
    int rc = pc_client_recv(e->c, &r);
    e->pending = false;
    if (rc == 0 && r.status)
        rc = r.status;
    if (rc) {
        e->insert_errors++;
        if (!e->first_insert_error)
            e->first_insert_error = rc;
        if (rc != PC_E_TIMEOUT) /* a refused insert keeps its lease */
            pc_client_release(e->c, e->pend_lease);
    }
    return rc;
}

size_t eng_engine_insert_errors(const eng_engine *e)
{
    return e ? e->insert_errors : 0;
}

void eng_engine_destroy(eng_engine *e)
{
    if (!e)
        return;
    eng_engine_settle(e); /* a request still queued would die with the socket */
    if (e->c)
        pc_client_close(e->c);
    free(e->koff);
    free(e->voff);
    free(e->priv);
    free(e->page);
    free(e->ids);
    free(e->alloc_ids);
    free(e->x);
    free(e->xn);
    free(e->qkv);
    free(e->att);
    free(e->tmp);
    free(e->h13);
    free(e->scores);
    free(e->kt);
    free(e->rmax);
    free(e->logits);
    free(e);
}

int eng_engine_create(const eng_model *m, const char *endpoint, int timeout_ms,
                      eng_engine **out)
{
    if (!m || !out)
        return PC_E_INVAL;
    *out = NULL;
    const eng_shape *s = &m->s;
    eng_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return PC_E_NOMEM;
    e->m = m;
    int rc = pc_pool_layout_init(&e->lay, s->layers, s->kv_heads, m->hd,
                                 s->page_tokens, PC_DTYPE_FP32);
    if (rc) {
        eng_engine_destroy(e);
        return rc;
    }
    size_t P = s->page_tokens, ctx = s->max_ctx, d = s->dim;
    e->max_pages = (ctx + P - 1) / P;
    size_t rows = ENG_QB * (s->n_heads / s->kv_heads);
    e->scores_cap = e->max_pages * P;
    e->koff = calloc(s->layers, sizeof(uint64_t));
    e->voff = calloc(s->layers, sizeof(uint64_t));
    e->priv = malloc(e->max_pages * e->lay.block_bytes);
    e->page = calloc(e->max_pages, sizeof(uint8_t *));
    e->ids = calloc(e->max_pages, sizeof(uint32_t));
    e->alloc_ids = calloc(e->max_pages, sizeof(uint32_t));
    e->x = malloc(ctx * d * sizeof(float));
    e->xn = malloc(ctx * d * sizeof(float));
    e->qkv = malloc(ctx * (m->qd + 2 * (size_t)m->kvd) * sizeof(float));
    e->att = malloc(ctx * m->qd * sizeof(float));
    e->tmp = malloc(ctx * d * sizeof(float));
    e->h13 = malloc(ctx * 2 * (size_t)s->ffn * sizeof(float));
    e->scores = malloc(rows * e->scores_cap * sizeof(float));
    e->kt = malloc((size_t)m->hd * ((P + ENG_KW - 1) / ENG_KW * ENG_KW) *
                   sizeof(float));
    e->rmax = malloc(rows * P * sizeof(float));
    e->logits = malloc((size_t)s->vocab * sizeof(float));
    if (!e->koff || !e->voff || !e->priv || !e->page || !e->ids ||
        !e->alloc_ids || !e->x || !e->xn || !e->qkv || !e->att || !e->tmp ||
        !e->h13 || !e->scores || !e->kt || !e->rmax || !e->logits) {
        eng_engine_destroy(e);
        return PC_E_NOMEM;
    }
    for (uint32_t l = 0; l < s->layers; l++) {
        e->koff[l] = pc_pool_layout_offset(&e->lay, l, 0);
        e->voff[l] = pc_pool_layout_offset(&e->lay, l, 1);
    }
    eng_namespace(s, e->ns, sizeof(e->ns));
    e->ns_len = strlen(e->ns);
    if (endpoint) {
        pc_hello h;
        rc = pc_client_connect(endpoint, timeout_ms, &e->c);
        if (rc == 0)
            rc = pc_client_hello(e->c, &h);
        if (rc == 0 &&
            (h.layers != s->layers || h.kv_heads != s->kv_heads ||
             h.head_dim != m->hd || h.page_tokens != s->page_tokens ||
             strcmp(h.dtype, "fp32") != 0 ||
             h.block_bytes != e->lay.block_bytes ||
             strcmp(h.backend, "host") != 0)) {
            fprintf(stderr, "engine: the daemon's blocks (%u layers, %u kv "
                    "heads, head_dim %u, %u tokens, %s, backend %s) are not "
                    "this model's\n", h.layers, h.kv_heads, h.head_dim,
                    h.page_tokens, h.dtype, h.backend);
            rc = PC_E_INVAL;
        }
        if (rc) {
            eng_engine_destroy(e);
            return rc;
        }
    }
    *out = e;
    return 0;
}

static inline float *eng_kpage(const eng_engine *e, size_t page, uint32_t l)
{
    return (float *)(e->page[page] + e->koff[l]);
}

static inline float *eng_vpage(const eng_engine *e, size_t page, uint32_t l)
{
    return (float *)(e->page[page] + e->voff[l]);
}

/*
 * Attention of one block: query positions p0 + b0 .. p0 + b0 + nb - 1 (their
 * Q rows in e->qkv, RoPE applied) x the query heads sharing KV head g, over
 * keys 0..t of each, read in place from the pages; output into e->att.
 * Each key page is transposed once per block so that a row's scores for a
 * page are one contiguous vector loop.  Inlined with constant P and hd for
 * the common shapes (the accumulators then live in registers).
 */
#define ENG_AI static inline __attribute__((always_inline))

/* 4 floats (GCC/Clang vector extension: plain SSE2 on x86-64, no -march).
 * The scores' accumulators, written as vectors because the vectoriser
 * otherwise reshuffles that loop badly; lane j still sums over d in order. */
typedef float eng_v4 __attribute__((vector_size(16)));

ENG_AI void eng_attn_block(eng_engine *e, uint32_t l, size_t g, size_t p0,
                           size_t b0, size_t nb, const size_t P,
                           const size_t hd)
{
    const eng_model *M = e->m;
    const size_t kvh = M->s.kv_heads, hpg = M->s.n_heads / kvh;
    const size_t qkvw = M->qd + 2 * (size_t)M->kvd;
    const size_t tstride = kvh * hd; /* floats between tokens of a page */
    const float scale = 1.0f / sqrtf((float)hd);
    float *restrict kt = e->kt;
    float *restrict rmax = e->rmax; /* per row: P lanes of running max */
    const size_t tmax = p0 + b0 + nb - 1, npages = tmax / P + 1;
    const size_t KP = (P + ENG_KW - 1) / ENG_KW * ENG_KW; /* kt row stride */
    for (size_t r = 0; r < nb * hpg * P; r++)
        rmax[r] = -INFINITY;
    /* scores */
    for (size_t pg = 0; pg < npages; pg++) {
        const float *kp = eng_kpage(e, pg, l) + g * hd;
        size_t ntok = pg == npages - 1 ? tmax % P + 1 : P;
        for (size_t d = 0; d < hd; d++)
            for (size_t j = 0; j < KP; j++)
                kt[d * KP + j] = j < ntok ? kp[j * tstride + d] : 0.0f;
        for (size_t qi = 0; qi < nb; qi++) {
            size_t t = p0 + b0 + qi;
            if (pg * P > t)
                continue;
            size_t lim = t - pg * P + 1; /* valid keys of this page */
            for (size_t h = 0; h < hpg; h++) {
                const float *restrict q =
                    e->qkv + (b0 + qi) * qkvw + (g * hpg + h) * hd;
                float *restrict srow =
                    e->scores + (qi * hpg + h) * e->scores_cap + pg * P;
                float *restrict mrow = rmax + (qi * hpg + h) * P;
                /* 16 keys at a time, a fixed width, so that the
                 * accumulators stay in registers (kt is zero-padded) */
                for (size_t j0 = 0; j0 < P; j0 += ENG_KW) {
                    eng_v4 a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
                    for (size_t d = 0; d < hd; d++) {
                        eng_v4 qv = {q[d], q[d], q[d], q[d]}, k0, k1, k2, k3;
                        const float *kr = kt + d * KP + j0;
                        memcpy(&k0, kr, sizeof(k0));
                        memcpy(&k1, kr + 4, sizeof(k1));
                        memcpy(&k2, kr + 8, sizeof(k2));
                        memcpy(&k3, kr + 12, sizeof(k3));
                        a0 += qv * k0;
                        a1 += qv * k1;
                        a2 += qv * k2;
                        a3 += qv * k3;
                    }
                    float acc[ENG_KW];
                    memcpy(acc, &a0, sizeof(a0));
                    memcpy(acc + 4, &a1, sizeof(a1));
                    memcpy(acc + 8, &a2, sizeof(a2));
                    memcpy(acc + 12, &a3, sizeof(a3));
                    size_t jn = P - j0 < ENG_KW ? P - j0 : ENG_KW;
                    for (size_t j = 0; j < jn; j++) {
                        float sv = acc[j] * scale;
                        srow[j0 + j] = sv;
                        float mv = j0 + j < lim ? sv : -INFINITY;
                        mrow[j0 + j] = mv > mrow[j0 + j] ? mv : mrow[j0 + j];
                    }
                }
            }
        }
    }
    /* softmax and the weighted sum of V, per row */
    for (size_t qi = 0; qi < nb; qi++) {
        size_t nk = p0 + b0 + qi + 1;
        for (size_t h = 0; h < hpg; h++) {
            float *restrict srow = e->scores + (qi * hpg + h) * e->scores_cap;
            const float *mrow = rmax + (qi * hpg + h) * P;
            float mx = mrow[0]; /* a max is exact: lanes in any order */
            for (size_t j = 1; j < P; j++)
                mx = mrow[j] > mx ? mrow[j] : mx;
            for (size_t j = 0; j < nk; j++)
                srow[j] = eng_expf(srow[j] - mx);
            /* 8 lanes by key index: a fixed order for every batch */
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            size_t j = 0;
            for (; j + 8 <= nk; j += 8)
                for (size_t k = 0; k < 8; k++)
                    lane[k] += srow[j + k];
            for (size_t k = 0; j < nk; j++, k++)
                lane[k] += srow[j];
            float sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                        ((lane[4] + lane[5]) + (lane[6] + lane[7]));
            float inv = 1.0f / sum;
            float o[ENG_HDMAX];
            for (size_t dd = 0; dd < hd; dd++)
                o[dd] = 0.0f;
            for (size_t pg = 0; pg * P < nk; pg++) {
                const float *restrict vp = eng_vpage(e, pg, l) + g * hd;
                const float *restrict prow = srow + pg * P;
                size_t ntok = nk - pg * P < P ? nk - pg * P : P;
                for (size_t jj = 0; jj < ntok; jj++) {
                    float pj = prow[jj];
                    const float *restrict vr = vp + jj * tstride;
                    for (size_t dd = 0; dd < hd; dd++)
                        o[dd] += pj * vr[dd];
                }
            }
            float *restrict out = e->att + (b0 + qi) * M->qd + (g * hpg + h) * hd;
            for (size_t dd = 0; dd < hd; dd++)
                out[dd] = o[dd] * inv;
        }
    }
}

static void eng_attn_any(eng_engine *e, uint32_t l, size_t g, size_t p0,
                         size_t b0, size_t nb, size_t P, size_t hd)
{
    eng_attn_block(e, l, g, p0, b0, nb, P, hd);
}

/* Attention of positions [p0, p0 + m) for layer l. */
static void eng_attention(eng_engine *e, uint32_t l, size_t p0, size_t m)
{
    const size_t P = e->m->s.page_tokens, hd = e->m->hd;
    for (size_t g = 0; g < e->m->s.kv_heads; g++)
        for (size_t b0 = 0; b0 < m; b0 += ENG_QB) {
            size_t nb = m - b0 < ENG_QB ? m - b0 : ENG_QB;
            if (P == 16 && hd == 16)
                eng_attn_block(e, l, g, p0, b0, nb, 16, 16);
            else if (P == 16 && hd == 32)
                eng_attn_block(e, l, g, p0, b0, nb, 16, 32);
            else if (P == 4 && hd == 16)
                eng_attn_block(e, l, g, p0, b0, nb, 4, 16);
            else
                eng_attn_any(e, l, g, p0, b0, nb, P, hd);
        }
}

/*
 * Run positions [p0, p0 + m) of tokens (tok[i] is position p0 + i) through
 * the model: their K/V go into their pages, and the logits of the last one
 * into e->logits.  Pages 0 .. (p0 + m - 1) / P must be mapped.
 */
static void eng_forward(eng_engine *e, const uint32_t *tok, size_t p0, size_t m)
{
    const eng_model *M = e->m;
    const eng_shape *s = &M->s;
    const size_t d = s->dim, P = s->page_tokens, hd = M->hd;
    const size_t qkvw = M->qd + 2 * (size_t)M->kvd, ff = s->ffn;
    for (size_t i = 0; i < m; i++)
        memcpy(e->x + i * d, M->embed + (size_t)tok[i] * d, d * sizeof(float));
    for (uint32_t l = 0; l < s->layers; l++) {
        const eng_layer *L = &M->layer[l];
        eng_rmsnorm(e->xn, e->x, L->attn_norm, m, d);
        eng_matmul(e->qkv, e->xn, L->wqkv, m, d, qkvw);
        for (size_t i = 0; i < m; i++) {
            size_t t = p0 + i;
            float *row = e->qkv + i * qkvw;
            const float *cs = M->rope + t * (hd / 2) * 2;
            eng_rope(row, s->n_heads, hd, cs);
            eng_rope(row + M->qd, s->kv_heads, hd, cs);
            /* K and V of position t into slot t % P of page t / P */
            size_t slot = (t % P) * M->kvd;
            memcpy(eng_kpage(e, t / P, l) + slot, row + M->qd,
                   M->kvd * sizeof(float));
            memcpy(eng_vpage(e, t / P, l) + slot, row + M->qd + M->kvd,
                   M->kvd * sizeof(float));
        }
        eng_attention(e, l, p0, m);
        eng_matmul(e->tmp, e->att, L->wo, m, M->qd, d);
        for (size_t i = 0; i < m * d; i++)
            e->x[i] += e->tmp[i];
        eng_rmsnorm(e->xn, e->x, L->ffn_norm, m, d);
        eng_matmul(e->h13, e->xn, L->w13, m, d, 2 * ff);
        for (size_t i = 0; i < m; i++) {
            float *g = e->h13 + i * 2 * ff, *u = g + ff;
            for (size_t j = 0; j < ff; j++) /* SwiGLU: silu(gate) * up */
                g[j] = g[j] / (1.0f + eng_expf(-g[j])) * u[j];
        }
        /* w2 reads the gates, rows 2 ff apart: compact them first */
        for (size_t i = 1; i < m; i++)
            memmove(e->h13 + i * ff, e->h13 + i * 2 * ff, ff * sizeof(float));
        eng_matmul(e->tmp, e->h13, L->w2, m, ff, d);
        for (size_t i = 0; i < m * d; i++)
            e->x[i] += e->tmp[i];
    }
    eng_rmsnorm(e->xn, e->x + (m - 1) * d, M->final_norm, 1, d);
    eng_matmul(e->logits, e->xn, M->lm_head, 1, d, s->vocab);
}

static uint32_t eng_argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return (uint32_t)best;
}

int eng_generate(eng_engine *e, const uint32_t *prompt, size_t n, size_t n_gen,
                 uint32_t *out, float *first_logits, float *last_logits,
                 eng_stats *st)
{
    if (!e || !prompt || !out || !st || n == 0 || n_gen == 0)
        return PC_E_INVAL;
    const eng_shape *s = &e->m->s;
    if (n + n_gen > s->max_ctx)
        return PC_E_RANGE;
    for (size_t i = 0; i < n; i++)
        if (prompt[i] >= s->vocab)
            return PC_E_INVAL;
    memset(st, 0, sizeof(*st));
    st->prompt_tokens = n;
    const size_t P = s->page_tokens, full = n / P;
    uint64_t t0 = eng_now_ns();

    /* 1. lookup + pin + alloc */
    uint64_t lease = 0;
    size_t mp = 0, n_alloc = 0; /* matched pages, allocated blocks */
    bool have_alloc = false;
    if (e->c) {
        pc_client_lookup_result r;
        int rc = pc_client_lookup(e->c, e->ns, e->ns_len, prompt, n,
                                  PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &r);
        if (rc == 0) {
            lease = r.lease;
            mp = r.pages <= full ? r.pages : full;
            memcpy(e->ids, r.blocks, mp * sizeof(uint32_t));
            st->matched_tokens = mp * P;
            /* alloc covers exactly the full pages after the match */
            if (r.alloc_status == 0 && r.n_alloc == full - mp) {
                n_alloc = r.n_alloc;
                memcpy(e->alloc_ids, r.alloc_blocks, n_alloc * sizeof(uint32_t));
                have_alloc = true;
            } else {
                st->cache_status = r.alloc_status ? r.alloc_status : PC_E_CORRUPT;
            }
            for (size_t i = 0; i < mp && rc == 0; i++)
                if (!pc_client_block(e->c, e->ids[i]))
                    rc = PC_E_RANGE;
            for (size_t i = 0; i < n_alloc && rc == 0; i++)
                if (!pc_client_block(e->c, e->alloc_ids[i]))
                    rc = PC_E_RANGE;
            if (rc) { /* ids beyond the mapped pool: no cache this time */
                st->cache_status = rc;
                mp = n_alloc = 0;
                have_alloc = false;
            }
        } else {
            st->cache_status = rc;
        }
    }
    eng_engine_settle(e); /* the previous insert's reply: already here */
    uint64_t t1 = eng_now_ns();
    st->lookup_ns = t1 - t0;

    /* 2. page table: the prompt's last token is always computed (its
     * logits are needed), so at most the full pages before it are used */
    size_t use_pages = mp < (n - 1) / P ? mp : (n - 1) / P;
    size_t total_pages = (n + n_gen - 1 + P - 1) / P;
    for (size_t i = 0; i < total_pages; i++) {
        if (i < use_pages)
            e->page[i] = pc_client_block(e->c, e->ids[i]);
        else if (i >= mp && i < full && have_alloc)
            e->page[i] = pc_client_block(e->c, e->alloc_ids[i - mp]);
        else
            e->page[i] = e->priv + i * e->lay.block_bytes;
    }
    size_t c = use_pages * P;
    st->cached_tokens = c;
    st->computed_tokens = n - c;

    /* 3. prefill of the suffix, first token */
    eng_forward(e, prompt + c, c, n - c);
    out[0] = eng_argmax(e->logits, s->vocab);
    if (first_logits)
        memcpy(first_logits, e->logits, s->vocab * sizeof(float));
    uint64_t t2 = eng_now_ns();
    st->ttft_ns = t2 - t0;
    st->prefill_ns = t2 - t1;

    /* 4. greedy decode; the new K/V stay in private pages */
    for (size_t i = 1; i < n_gen; i++) {
        eng_forward(e, &out[i - 1], n + i - 1, 1);
        out[i] = eng_argmax(e->logits, s->vocab);
    }
    if (last_logits)
        memcpy(last_logits, e->logits, s->vocab * sizeof(float));
    st->gen_tokens = n_gen;
    uint64_t t3 = eng_now_ns();
    st->decode_ns = t3 - t2;

    /* 5. insert the prompt's new full pages and end the lease.  Sent
     * without waiting for the reply (taken after the next request's lookup):
     * the decode is over, nothing here reads the blocks any more, and an
     * engine has no reason to sit through a round trip it does not need. */
    if (lease) {
        int rc = 0;
        if (have_alloc && n_alloc > 0) {
            memcpy(e->ids + mp, e->alloc_ids, n_alloc * sizeof(uint32_t));
            int64_t id = pc_client_send_insert(e->c, e->ns, e->ns_len, prompt,
                                               n, e->ids, lease, PC_CLIENT_RELEASE);
            if (id > 0) {
                e->pending = true;
                e->pend_lease = lease;
                st->inserted_pages = n_alloc; /* sent; a refusal is counted
                                                 by eng_engine_insert_errors */
            } else { /* not sent: the lease is still ours to end */
                rc = (int)id;
                pc_client_release(e->c, lease);
            }
        } else {
            rc = pc_client_release(e->c, lease);
        }
        if (rc && !st->cache_status)
            st->cache_status = rc;
    }
    uint64_t t4 = eng_now_ns();
    st->insert_ns = t4 - t3;
    st->total_ns = t4 - t0;
    return 0;
}

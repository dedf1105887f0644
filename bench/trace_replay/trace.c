/*
 * bench/trace_replay/trace.c - loading a trace: the two parsers, the page
 * interning, next-use and the ideal (see trace.h for the formats).
 */
#include "bench/trace_replay/trace.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "bench/common/rng.h"

#define DEFAULT_PAGE_TOKENS 512u
#define JSON_MAX_DEPTH 32
#define TAG_BLOCK 0x426c6f636b486173ull /* content key tag of a "blocks" page */
#define ROOT_FLAG (1ull << 32)          /* parent key of a namespace root    */

void tr_expand_block(uint64_t h, uint32_t page_tokens, uint32_t *out)
{
    /* The hash itself first: distinct hashes can never give equal pages. */
    uint32_t i = 0;
    if (page_tokens >= 2) {
        out[0] = (uint32_t)h;
        out[1] = (uint32_t)(h >> 32);
        i = 2;
    }
    uint64_t base = bench_mix64(h + 0x9e3779b97f4a7c15ULL);
    for (; i < page_tokens; i++)
        out[i] = (uint32_t)bench_mix64(base +
                                       (uint64_t)i * 0x9e3779b97f4a7c15ULL);
}

const uint32_t *tr_request_tokens(const tr_trace *t, size_t i, uint32_t *buf)
{
    const tr_request *r = &t->req[i];
    uint32_t P = t->page_tokens;
    if (r->kind == TR_KIND_TOKENS)
        return t->tokens + r->src;
    for (uint32_t j = 0; j < r->n_pages; j++)
        tr_expand_block(t->hashes[r->src + j], P, buf + (size_t)j * P);
    return buf;
}

/* ---- growable arrays ------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return PC_E_NOMEM;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q)
        return PC_E_NOMEM;
    *p = q;
    *cap = c;
    return 0;
}
#define GROW(arr, cap, need) grow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* ---- page interning: (parent, content) -> dense page id -------------------- */

typedef struct ikey {
    uint64_t parent; /* page id, or ROOT_FLAG | namespace */
    uint64_t a, b;   /* content */
} ikey;

typedef struct interner {
    ikey *keys;
    uint32_t *vals; /* TR_NO_PAGE: empty slot */
    size_t cap, n;
} interner;

static uint64_t ikey_hash(const ikey *k)
{
    return bench_mix64(k->parent * 0x9e3779b97f4a7c15ULL ^
                       bench_mix64(k->a ^ bench_mix64(k->b)));
}

static int interner_grow(interner *in)
{
    size_t nc = in->cap ? in->cap * 2 : 1024;
    ikey *nk = malloc(nc * sizeof(*nk));
    uint32_t *nv = malloc(nc * sizeof(*nv));
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return PC_E_NOMEM;
    }
    memset(nv, 0xff, nc * sizeof(*nv));
    for (size_t i = 0; i < in->cap; i++) {
        if (in->vals[i] == TR_NO_PAGE)
            continue;
        size_t s = ikey_hash(&in->keys[i]) & (nc - 1);
        while (nv[s] != TR_NO_PAGE)
            s = (s + 1) & (nc - 1);
        nk[s] = in->keys[i];
        nv[s] = in->vals[i];
    }
    free(in->keys);
    free(in->vals);
    in->keys = nk;
    in->vals = nv;
    in->cap = nc;
    return 0;
}

/* The id of k, or next_id (then *fresh = true) when k is new. */
static int interner_get(interner *in, const ikey *k, uint32_t next_id,
                        uint32_t *id, bool *fresh)
{
    if ((in->n + 1) * 2 > in->cap) {
        int rc = interner_grow(in);
        if (rc)
            return rc;
    }
    size_t s = ikey_hash(k) & (in->cap - 1);
    while (in->vals[s] != TR_NO_PAGE) {
        const ikey *o = &in->keys[s];
        if (o->parent == k->parent && o->a == k->a && o->b == k->b) {
            *id = in->vals[s];
            *fresh = false;
            return 0;
        }
        s = (s + 1) & (in->cap - 1);
    }
    in->keys[s] = *k;
    in->vals[s] = next_id;
    in->n++;
    *id = next_id;
    *fresh = true;
    return 0;
}

static void interner_free(interner *in)
{
    free(in->keys);
    free(in->vals);
}

/* ---- the loader's state ---------------------------------------------------- */

typedef struct loader {
    tr_trace *t;
    FILE *err;
    size_t line;
    char msg[160];
    /* capacities of the trace's arrays */
    size_t req_cap, hash_cap, tok_cap, occ_cap, pg_cap, ns_cap;
    /* scratch: one line's ids */
    uint64_t *ids;
    size_t ids_n, ids_cap;
    interner in;
} loader;

static int bad(loader *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->msg, sizeof L->msg, fmt, ap);
    va_end(ap);
    return PC_E_INVAL;
}

static int push_id(loader *L, uint64_t v)
{
    if (GROW(L->ids, L->ids_cap, L->ids_n + 1))
        return PC_E_NOMEM;
    L->ids[L->ids_n++] = v;
    return 0;
}

static int ns_index(loader *L, const char *ns, size_t len, uint32_t *out)
{
    tr_trace *t = L->t;
    for (size_t i = 0; i < t->n_ns; i++)
        if (t->ns_len[i] == len && memcmp(t->ns[i], ns, len) == 0) {
            *out = (uint32_t)i;
            return 0;
        }
    size_t cap = L->ns_cap;
    if (GROW(t->ns, L->ns_cap, t->n_ns + 1))
        return PC_E_NOMEM;
    if (GROW(t->ns_len, cap, t->n_ns + 1))
        return PC_E_NOMEM;
    char *s = malloc(len + 1);
    if (!s)
        return PC_E_NOMEM;
    memcpy(s, ns, len);
    s[len] = 0;
    t->ns[t->n_ns] = s;
    t->ns_len[t->n_ns] = len;
    *out = (uint32_t)t->n_ns++;
    return 0;
}

/*
 * Add one parsed request: L->ids holds its ids (block hashes for blocks,
 * token ids for tokens).  Interns its full pages, counts the ideal's hits.
 */
static int add_request(loader *L, uint32_t ns, uint32_t kind, uint64_t n_tokens)
{
    tr_trace *t = L->t;
    uint32_t P = t->page_tokens;
    uint64_t np64 = n_tokens / P;
    if (kind == TR_KIND_BLOCKS) {
        uint64_t want = n_tokens / P + (n_tokens % P != 0);
        if (L->ids_n != want)
            return bad(L, "%zu block ids for %" PRIu64 " tokens (want %" PRIu64
                          " = ceil(tokens / %u))",
                       L->ids_n, n_tokens, want, P);
    } else if (L->ids_n != n_tokens) {
        return bad(L, "%zu token ids, the line says %" PRIu64, L->ids_n, n_tokens);
    }
    if (np64 > UINT32_MAX || t->n_occ + np64 >= UINT32_MAX)
        return PC_E_RANGE;
    uint32_t np = (uint32_t)np64;
    if (GROW(t->req, L->req_cap, t->n_req + 1) ||
        GROW(t->pid, L->occ_cap, t->n_occ + np))
        return PC_E_NOMEM;
    tr_request *r = &t->req[t->n_req];
    r->ns = ns;
    r->kind = kind;
    r->n_tokens = n_tokens;
    r->n_pages = np;
    r->occ = t->n_occ;
    if (kind == TR_KIND_BLOCKS) {
        if (GROW(t->hashes, L->hash_cap, t->n_hashes + np))
            return PC_E_NOMEM;
        r->src = t->n_hashes;
        if (np)
            memcpy(t->hashes + t->n_hashes, L->ids, np * sizeof(uint64_t));
        t->n_hashes += np;
    } else {
        size_t nt = (size_t)np * P;
        if (GROW(t->tokens, L->tok_cap, t->n_tokens + nt))
            return PC_E_NOMEM;
        r->src = t->n_tokens;
        for (size_t i = 0; i < nt; i++)
            t->tokens[t->n_tokens + i] = (uint32_t)L->ids[i];
        t->n_tokens += nt;
    }
    /* Intern the pages; the ideal hits every page interned before. */
    uint32_t first_new = t->n_distinct;
    uint64_t parent = ROOT_FLAG | ns;
    for (uint32_t j = 0; j < np; j++) {
        ikey k = {.parent = parent};
        if (kind == TR_KIND_BLOCKS) {
            k.a = t->hashes[r->src + j];
            k.b = TAG_BLOCK;
        } else {
            XXH128_hash_t h = XXH3_128bits(t->tokens + r->src + (size_t)j * P,
                                           (size_t)P * sizeof(uint32_t));
            k.a = h.low64;
            k.b = h.high64;
        }
        uint32_t id;
        bool fresh;
        if (t->n_distinct == TR_NO_PAGE)
            return PC_E_RANGE;
        int rc = interner_get(&L->in, &k, t->n_distinct, &id, &fresh);
        if (rc)
            return rc;
        if (fresh) {
            if (GROW(t->parent, L->pg_cap, (size_t)t->n_distinct + 1))
                return PC_E_NOMEM;
            t->parent[t->n_distinct] = (parent & ROOT_FLAG) ? TR_NO_PAGE : (uint32_t)parent;
            t->n_distinct++;
        } else if (id < first_new) {
            t->ideal_hits++;
        }
        t->pid[t->n_occ + j] = id;
        parent = id;
    }
    t->n_occ += np;
    t->n_req++;
    if (np > t->max_req_pages)
        t->max_req_pages = np;
    return 0;
}

/* ---- Mooncake JSON lines -------------------------------------------------- */

static const char *ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* A JSON string at p; its bytes (escapes decoded, \u as '?') go to buf. */
static const char *json_string(loader *L, const char *p, const char *e,
                               char *buf, size_t cap, size_t *len, int *rc)
{
    size_t n = 0;
    if (p >= e || *p != '"') {
        *rc = bad(L, "expected a string");
        return NULL;
    }
    for (p++; p < e && *p != '"'; p++) {
        char c = *p;
        if ((unsigned char)c < 0x20) {
            *rc = bad(L, "control character in a string");
            return NULL;
        }
        if (c == '\\') {
            if (++p >= e)
                break;
            switch (*p) {
            case '"': case '\\': case '/': c = *p; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u':
                for (int i = 1; i <= 4; i++)
                    if (p + i >= e || !isxdigit((unsigned char)p[i])) {
                        *rc = bad(L, "bad \\u escape");
                        return NULL;
                    }
                p += 4;
                c = '?';
                break;
            default:
                *rc = bad(L, "bad escape \\%c", *p);
                return NULL;
            }
        }
        if (n + 1 < cap)
            buf[n] = c;
        n++;
    }
    if (p >= e) {
        *rc = bad(L, "unterminated string");
        return NULL;
    }
    if (cap)
        buf[n < cap ? n : cap - 1] = 0;
    *len = n;
    return p + 1;
}

/* A JSON number; *is_int when it has no fraction or exponent (and then *u
 * is its value; *neg when it has a minus sign). */
static const char *json_number(loader *L, const char *p, const char *e,
                               uint64_t *u, bool *is_int, bool *neg, int *rc)
{
    const char *s = p;
    *neg = false;
    *is_int = true;
    *u = 0;
    bool ovf = false;
    if (p < e && *p == '-') {
        *neg = true;
        p++;
    }
    if (p >= e || *p < '0' || *p > '9') {
        *rc = bad(L, "expected a number");
        return NULL;
    }
    if (*p == '0' && p + 1 < e && p[1] >= '0' && p[1] <= '9') {
        *rc = bad(L, "number with a leading zero");
        return NULL;
    }
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (*u > (UINT64_MAX - d) / 10)
            ovf = true;
        *u = *u * 10 + d;
    }
    if (p < e && *p == '.') {
        *is_int = false;
        p++;
        if (p >= e || *p < '0' || *p > '9') {
            *rc = bad(L, "bad number");
            return NULL;
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *is_int = false;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9') {
            *rc = bad(L, "bad number");
            return NULL;
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (*is_int && ovf) {
        *rc = bad(L, "integer %.*s out of range", (int)(p - s > 30 ? 30 : p - s), s);
        return NULL;
    }
    return p;
}

static const char *json_uint(loader *L, const char *p, const char *e,
                             const char *what, uint64_t *v, int *rc)
{
    bool is_int, neg;
    const char *q = json_number(L, p, e, v, &is_int, &neg, rc);
    if (!q)
        return NULL;
    if (!is_int || neg) {
        *rc = bad(L, "%s: not a non-negative integer", what);
        return NULL;
    }
    return q;
}

/* Skip any JSON value (an unknown key's). */
static const char *json_skip(loader *L, const char *p, const char *e, int depth,
                             int *rc)
{
    if (depth > JSON_MAX_DEPTH) {
        *rc = bad(L, "nested too deep");
        return NULL;
    }
    p = ws(p, e);
    if (p >= e) {
        *rc = bad(L, "expected a value");
        return NULL;
    }
    size_t len;
    if (*p == '"')
        return json_string(L, p, e, NULL, 0, &len, rc);
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
        uint64_t u;
        bool a, b;
        return json_number(L, p, e, &u, &a, &b, rc);
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(e - p) >= n && memcmp(p, lits[i], n) == 0)
            return p + n;
    }
    if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        bool obj = *p == '{';
        p = ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                p = json_string(L, ws(p, e), e, NULL, 0, &len, rc);
                if (!p)
                    return NULL;
                p = ws(p, e);
                if (p >= e || *p != ':') {
                    *rc = bad(L, "expected ':'");
                    return NULL;
                }
                p++;
            }
            p = json_skip(L, p, e, depth + 1, rc);
            if (!p)
                return NULL;
            p = ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            if (p < e && *p == close)
                return p + 1;
            *rc = bad(L, "expected ',' or '%c'", close);
            return NULL;
        }
    }
    *rc = bad(L, "unexpected character '%c'", *p);
    return NULL;
}

static int parse_mooncake(loader *L, const char *p, const char *e, uint32_t ns)
{
    int rc = 0;
    enum { K_TS, K_IN, K_OUT, K_IDS, K_N };
    static const char *const names[K_N] = {"timestamp", "input_length",
                                           "output_length", "hash_ids"};
    bool seen[K_N] = {0};
    uint64_t input_length = 0;
    L->ids_n = 0;
    p = ws(p, e);
    if (p >= e || *p != '{')
        return bad(L, "expected '{'");
    p = ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
    } else {
        for (;;) {
            char key[32];
            size_t klen;
            p = json_string(L, ws(p, e), e, key, sizeof key, &klen, &rc);
            if (!p)
                return rc;
            p = ws(p, e);
            if (p >= e || *p != ':')
                return bad(L, "expected ':' after \"%s\"", key);
            p = ws(p + 1, e);
            int k = K_N;
            for (int i = 0; i < K_N; i++)
                if (klen == strlen(names[i]) && strcmp(key, names[i]) == 0)
                    k = i;
            if (k < K_N && seen[k])
                return bad(L, "duplicate key \"%s\"", key);
            if (k < K_N)
                seen[k] = true;
            uint64_t v;
            bool is_int, neg;
            switch (k) {
            case K_TS: /* ignored, but it must be a number >= 0 */
                p = json_number(L, p, e, &v, &is_int, &neg, &rc);
                if (p && neg)
                    return bad(L, "timestamp: negative");
                break;
            case K_IN:
                p = json_uint(L, p, e, "input_length", &input_length, &rc);
                break;
            case K_OUT:
                p = json_uint(L, p, e, "output_length", &v, &rc);
                break;
            case K_IDS:
                if (p >= e || *p != '[')
                    return bad(L, "hash_ids: expected an array");
                p = ws(p + 1, e);
                if (p < e && *p == ']') {
                    p++;
                    break;
                }
                for (;;) {
                    p = json_uint(L, ws(p, e), e, "hash_ids element", &v, &rc);
                    if (!p)
                        return rc;
                    if ((rc = push_id(L, v)))
                        return rc;
                    p = ws(p, e);
                    if (p < e && *p == ',') {
                        p++;
                        continue;
                    }
                    if (p < e && *p == ']') {
                        p++;
                        break;
                    }
                    return bad(L, "hash_ids: expected ',' or ']'");
                }
                break;
            default:
                p = json_skip(L, p, e, 1, &rc);
            }
            if (!p)
                return rc;
            p = ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            if (p < e && *p == '}') {
                p++;
                break;
            }
            return bad(L, "expected ',' or '}'");
        }
    }
    if (ws(p, e) != e)
        return bad(L, "trailing characters after the object");
    if (!seen[K_IN])
        return bad(L, "missing \"input_length\"");
    if (!seen[K_IDS])
        return bad(L, "missing \"hash_ids\"");
    return add_request(L, ns, TR_KIND_BLOCKS, input_length);
}

/* ---- the simple format ---------------------------------------------------- */

static int dec_u64(const char *p, const char *e, uint64_t *v)
{
    if (p >= e)
        return -1;
    uint64_t x = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

static int parse_simple(loader *L, const char *p, const char *e)
{
    const char *f[4];
    const char *fe[4];
    int n = 0;
    f[0] = p;
    for (const char *q = p; q <= e; q++) {
        if (q == e || *q == '\t') {
            if (n >= 4)
                return bad(L, "more than 4 TAB-separated fields");
            fe[n++] = q;
            if (q < e && n < 4)
                f[n] = q + 1;
            else if (q < e)
                return bad(L, "more than 4 TAB-separated fields");
        }
    }
    if (n != 4)
        return bad(L, "expected 4 TAB-separated fields (namespace, tokens, "
                      "kind, ids), got %d", n);
    size_t nslen = (size_t)(fe[0] - f[0]);
    if (nslen == 0 || nslen > PC_RADIX_NS_MAX)
        return bad(L, "namespace must have 1..%u bytes", PC_RADIX_NS_MAX);
    uint64_t n_tokens;
    if (dec_u64(f[1], fe[1], &n_tokens))
        return bad(L, "token count: not a decimal integer");
    uint32_t kind;
    size_t klen = (size_t)(fe[2] - f[2]);
    if (klen == 6 && memcmp(f[2], "tokens", 6) == 0)
        kind = TR_KIND_TOKENS;
    else if (klen == 6 && memcmp(f[2], "blocks", 6) == 0)
        kind = TR_KIND_BLOCKS;
    else
        return bad(L, "kind must be \"tokens\" or \"blocks\"");
    L->ids_n = 0;
    const char *q = f[3];
    if (q < fe[3]) {
        for (;;) {
            const char *c = memchr(q, ',', (size_t)(fe[3] - q));
            const char *end = c ? c : fe[3];
            uint64_t v;
            if (dec_u64(q, end, &v))
                return bad(L, "id %zu: not a decimal integer", L->ids_n + 1);
            if (kind == TR_KIND_TOKENS && v > UINT32_MAX)
                return bad(L, "token id %" PRIu64 " beyond 32 bits", v);
            int rc = push_id(L, v);
            if (rc)
                return rc;
            if (!c)
                break;
            q = c + 1;
        }
    }
    uint32_t ns;
    int rc = ns_index(L, f[0], nslen, &ns);
    if (rc)
        return rc;
    return add_request(L, ns, kind, n_tokens);
}

/* ---- load ------------------------------------------------------------------ */

static char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    const char *dot = strrchr(b, '.');
    if (dot && dot != b)
        n = (size_t)(dot - b);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, b, n);
        s[n] = 0;
    }
    return s;
}

/* name: the trace's name; diag: what diagnostics call the input. */
static int load_mem(const char *buf, size_t len, const char *name,
                    const char *diag, const tr_load_opts *o, tr_trace **out)
{
    tr_load_opts d = {0};
    if (!o)
        o = &d;
    if (!buf || !name || !out)
        return PC_E_INVAL;
    uint32_t P = o->page_tokens ? o->page_tokens : DEFAULT_PAGE_TOKENS;
    if (P < PC_RADIX_PAGE_TOKENS_MIN || P > PC_RADIX_PAGE_TOKENS_MAX)
        return PC_E_INVAL;
    tr_trace *t = calloc(1, sizeof(*t));
    if (!t)
        return PC_E_NOMEM;
    t->page_tokens = P;
    loader L = {.t = t, .err = o->err ? o->err : stderr};
    int rc = 0;
    tr_format fmt = o->format;
    uint32_t ns0 = 0;
    if (!(t->name = strdup(name))) {
        rc = PC_E_NOMEM;
        goto out;
    }
    const char *p = buf, *e = buf + len;
    while (p < e && (!o->limit || t->n_req < o->limit)) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl : e;
        L.line++;
        const char *s = p;
        p = nl ? nl + 1 : e;
        if (le > s && le[-1] == '\r')
            le--;
        size_t ll = le > s ? (size_t)(le - s) : 0;
        if (ll && memchr(s, 0, ll)) {
            rc = bad(&L, "NUL byte in the line");
        } else {
            const char *b = ws(s, le);
            if (b == le || *b == '#')
                continue;
            if (fmt == TR_FMT_AUTO)
                fmt = *b == '{' ? TR_FMT_MOONCAKE : TR_FMT_SIMPLE;
            if (fmt == TR_FMT_MOONCAKE && t->n_ns == 0 &&
                (rc = ns_index(&L, name, strlen(name) > PC_RADIX_NS_MAX
                                             ? PC_RADIX_NS_MAX : strlen(name), &ns0)))
                goto out;
            rc = fmt == TR_FMT_MOONCAKE ? parse_mooncake(&L, s, le, ns0)
                                        : parse_simple(&L, s, le);
        }
        if (rc == PC_E_INVAL) {
            fprintf(L.err, "%s:%zu: %s\n", diag, L.line, L.msg);
            if (!o->skip_bad)
                goto out;
            t->skipped++;
            rc = 0;
        } else if (rc) {
            fprintf(L.err, "%s:%zu: %s\n", diag, L.line, pc_strerror(rc));
            goto out;
        }
    }
    /* Never NULL, even for an empty trace: callers add offsets to them. */
    if (GROW(t->req, L.req_cap, 1) || GROW(t->pid, L.occ_cap, 1) ||
        GROW(t->hashes, L.hash_cap, 1) || GROW(t->tokens, L.tok_cap, 1) ||
        GROW(t->parent, L.pg_cap, 1)) {
        rc = PC_E_NOMEM;
        goto out;
    }
    /* per-page and per-occurrence arrays */
    t->depth = malloc(((size_t)t->n_distinct + 1) * sizeof(*t->depth));
    t->next = malloc((t->n_occ + 1) * sizeof(*t->next));
    uint32_t *last = malloc(((size_t)t->n_distinct + 1) * sizeof(*last));
    if (!t->depth || !t->next || !last) {
        free(last);
        rc = PC_E_NOMEM;
        goto out;
    }
    /* depth from parent (a parent is always interned before its children) */
    for (uint32_t i = 0; i < t->n_distinct; i++)
        t->depth[i] = t->parent[i] == TR_NO_PAGE ? 1 : t->depth[t->parent[i]] + 1;
    /* next use: scan backwards, remembering each page's last request */
    for (uint32_t i = 0; i < t->n_distinct; i++)
        last[i] = TR_NEVER;
    for (size_t r = t->n_req; r-- > 0;) {
        const tr_request *q = &t->req[r];
        for (uint32_t j = 0; j < q->n_pages; j++) {
            uint32_t id = t->pid[q->occ + j];
            t->next[q->occ + j] = last[id];
        }
        for (uint32_t j = 0; j < q->n_pages; j++)
            last[t->pid[q->occ + j]] = (uint32_t)r;
    }
    free(last);
out:
    free(L.ids);
    interner_free(&L.in);
    if (rc) {
        tr_trace_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tr_trace_load_mem(const char *buf, size_t len, const char *name,
                      const tr_load_opts *o, tr_trace **out)
{
    return load_mem(buf, len, name, name, o, out);
}

int tr_trace_load(const char *path, const tr_load_opts *o, tr_trace **out)
{
    if (!path || !out)
        return PC_E_INVAL;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    FILE *err = o && o->err ? o->err : stderr;
    if (!f) {
        fprintf(err, "%s: %s\n", path, strerror(errno));
        return PC_E_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (GROW(buf, cap, len + 65536)) {
            rc = PC_E_NOMEM;
            break;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                fprintf(err, "%s: read error\n", path);
                rc = PC_E_IO;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!rc) {
        char *name = strcmp(path, "-") == 0 ? strdup("stdin") : base_name(path);
        if (!name)
            rc = PC_E_NOMEM;
        else
            rc = load_mem(buf ? buf : "", len, name, path, o, out);
        free(name);
    }
    free(buf);
    return rc;
}

void tr_trace_free(tr_trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_ns; i++)
        free(t->ns[i]);
    free(t->ns);
    free(t->ns_len);
    free(t->name);
    free(t->req);
    free(t->hashes);
    free(t->tokens);
    free(t->pid);
    free(t->next);
    free(t->parent);
    free(t->depth);
    free(t);
}

void tr_ideal(const tr_trace *t, tr_result *out)
{
    memset(out, 0, sizeof(*out));
    out->hit_pages = t->ideal_hits;
    out->total_pages = t->n_occ;
    out->inserted_pages = t->n_distinct;
}

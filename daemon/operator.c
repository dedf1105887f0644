/*
 * daemon/pins.c - the pinned_prefixes knob: "NS=FILE[,NS=FILE]..." where
 * each FILE holds a prompt's token ids (decimal, separated by white space
 * or commas; '#' starts a comment to the end of the line), read and handed
 * to pc_cache_set_operator_pins on start and on every reload.
 *
 * Why files and not tokens inline: a system prompt is thousands of tokens,
 * produced by the engine's tokenizer (e.g. `tokenizer.encode(text)` written
 * out one id per line), and the operator keeps it next to the model.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIN_TOKENS_MAX (1u << 22) /* 4 Mi tokens a file: a bound, not a goal */

typedef struct pin_item {
    char ns[PC_NS_MAX + 1];
    char path[PCD_PINNED_PREFIXES_MAX + 1];
} pin_item;

/* The next comma-separated item at *cur (blanks around it trimmed; *len
 * its length); *cur moves past it and its comma. */
static const char *next_item(const char **cur, size_t *len)
{
    const char *p = *cur, *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    *cur = end ? end + 1 : p + n;
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    *len = n;
    return p;
}

/* Split text into items (NS=PATH); fn(ctx, item) for each.  Checks the
 * whole text before calling fn on any (fn NULL: a syntax check). */
static int each_item(const char *text, int (*fn)(void *, const pin_item *),
                     void *ctx, char *err, size_t errlen)
{
    for (int pass = fn ? 0 : 1; pass < 2; pass++) {
        for (const char *cur = text; *cur;) {
            size_t len;
            const char *p = next_item(&cur, &len);
            const char *eq = memchr(p, '=', len);
            if (!eq || eq == p || eq == p + len - 1) {
                snprintf(err, errlen, "pinned_prefixes: '%.*s' is not NS=FILE",
                         (int)len, p);
                return PC_E_INVAL;
            }
            pin_item it;
            size_t nl = (size_t)(eq - p), pl = len - nl - 1;
            if (nl > PC_NS_MAX) {
                snprintf(err, errlen, "pinned_prefixes: namespace '%.*s...' is "
                         "longer than %d bytes", 16, p, PC_NS_MAX);
                return PC_E_RANGE;
            }
            memcpy(it.ns, p, nl);
            it.ns[nl] = 0;
            memcpy(it.path, eq + 1, pl);
            it.path[pl] = 0;
            if (pass == 1 && fn) {
                int rc = fn(ctx, &it);
                if (rc)
                    return rc;
            }
        }
    }
    return 0;
}

int pcd_pinned_prefixes_check(const char *text, char *err, size_t errlen)
{
    return each_item(text, NULL, NULL, err, errlen);
}

/* The token ids of a file. */
static int read_tokens(const char *path, uint32_t **out, size_t *n, char *err,
                       size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "pinned_prefixes: %s: %s", path, strerror(errno));
        return PC_E_IO;
    }
    size_t cap = 1024, k = 0, line = 1;
    uint32_t *v = malloc(cap * sizeof(*v));
    int rc = v ? 0 : PC_E_NOMEM, ch;
    char num[16];
    size_t nd = 0;
    while (!rc && (ch = fgetc(f)) != EOF) {
        if (ch == '#') {
            while ((ch = fgetc(f)) != EOF && ch != '\n') {
            }
            if (ch == EOF)
                ch = '\n';
        }
        if (ch >= '0' && ch <= '9') {
            if (nd < sizeof(num) - 1)
                num[nd++] = (char)ch;
            else
                rc = PC_E_RANGE;
            continue;
        }
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r' && ch != ',') {
            snprintf(err, errlen, "pinned_prefixes: %s line %zu: '%c' is not "
                     "part of a token id", path, line, ch);
            rc = PC_E_INVAL;
            break;
        }
        if (nd) {
            num[nd] = 0;
            unsigned long long t = strtoull(num, NULL, 10);
            if (t > UINT32_MAX || nd > 10)
                rc = PC_E_RANGE;
            else if (k == PIN_TOKENS_MAX)
                rc = PC_E_TOOBIG;
            else if (k == cap) {
                uint32_t *g = realloc(v, 2 * cap * sizeof(*v));
                if (!g)
                    rc = PC_E_NOMEM;
                else
                    v = g, cap *= 2;
            }
            if (!rc)
                v[k++] = (uint32_t)t;
            nd = 0;
        }
        line += ch == '\n';
    }
    if (!rc && nd) { /* the last id, at the end of the file */
        num[nd] = 0;
        unsigned long long t = strtoull(num, NULL, 10);
        if (t > UINT32_MAX || nd > 10)
            rc = PC_E_RANGE;
        else if (k == cap && !(v = realloc(v, (cap + 1) * sizeof(*v))))
            rc = PC_E_NOMEM;
        else
            v[k++] = (uint32_t)t;
    }
    fclose(f);
    if (rc == PC_E_RANGE)
        snprintf(err, errlen, "pinned_prefixes: %s line %zu: a token id beyond "
                 "2^32-1", path, line);
    else if (rc == PC_E_TOOBIG)
        snprintf(err, errlen, "pinned_prefixes: %s: more than %u tokens", path,
                 PIN_TOKENS_MAX);
    else if (rc == PC_E_NOMEM)
        snprintf(err, errlen, "pinned_prefixes: %s: out of memory", path);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

typedef struct pin_load {
    pc_cache_pin_spec *v;
    char (*ns)[PC_NS_MAX + 1];
    size_t n, cap;
    char *err;
    size_t errlen;
} pin_load;

static int load_one(void *ctx, const pin_item *it)
{
    pin_load *L = ctx;
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 4;
        pc_cache_pin_spec *v = realloc(L->v, cap * sizeof(*v));
        if (v)
            L->v = v;
        char (*ns)[PC_NS_MAX + 1] = v ? realloc(L->ns, cap * sizeof(*ns)) : NULL;
        if (!v || !ns) {
            snprintf(L->err, L->errlen, "pinned_prefixes: out of memory");
            return PC_E_NOMEM;
        }
        L->ns = ns;
        L->cap = cap;
    }
    uint32_t *tok;
    size_t nt;
    int rc = read_tokens(it->path, &tok, &nt, L->err, L->errlen);
    if (rc)
        return rc;
    memcpy(L->ns[L->n], it->ns, sizeof(it->ns));
    L->v[L->n] = (pc_cache_pin_spec){NULL, strlen(it->ns), tok, nt};
    L->n++;
    return 0;
}

int pcd_pinned_prefixes_apply(pc_cache *cache, const char *text, char *err,
                              size_t errlen)
{
    pin_load L = {NULL, NULL, 0, 0, err, errlen};
    int rc = each_item(text, load_one, &L, err, errlen);
    for (size_t i = 0; i < L.n; i++)
        L.v[i].ns = L.ns[i]; /* the array may have moved while loading */
    if (!rc && (rc = pc_cache_set_operator_pins(cache, L.v, L.n)))
        snprintf(err, errlen, "pinned_prefixes: %s", pc_cache_why(cache)[0]
                 ? pc_cache_why(cache) : pc_strerror(rc));
    for (size_t i = 0; i < L.n; i++)
        free((void *)L.v[i].tokens);
    free(L.v);
    free(L.ns);
    return rc;
}

/* ---- namespace_quotas: "PATTERN=MAX[:MIN],..." ------------------------------ */

typedef struct quota_list {
    pc_cache_quota *v;
    char (*pat)[PC_NS_MAX + 1];
    size_t n;
} quota_list;

/* Parse text; with L, fill it (malloc'd; the caller frees). */
static int quotas_parse(const char *text, quota_list *L, char *err, size_t errlen)
{
    size_t cap = 0;
    for (const char *cur = text; *cur;) {
        size_t len;
        const char *p = next_item(&cur, &len);
        const char *eq = memchr(p, '=', len);
        if (!eq || eq == p) {
            snprintf(err, errlen, "namespace_quotas: '%.*s' is not "
                     "PATTERN=MAX[:MIN]", (int)len, p);
            return PC_E_INVAL;
        }
        size_t pl = (size_t)(eq - p);
        if (pl > PC_NS_MAX) {
            snprintf(err, errlen, "namespace_quotas: a pattern is longer than "
                     "%d bytes", PC_NS_MAX);
            return PC_E_RANGE;
        }
        char nums[64];
        size_t nl = len - pl - 1;
        if (nl == 0 || nl >= sizeof(nums)) {
            snprintf(err, errlen, "namespace_quotas: '%.*s': MAX[:MIN] expected",
                     (int)len, p);
            return PC_E_INVAL;
        }
        memcpy(nums, eq + 1, nl);
        nums[nl] = 0;
        char *e1, *e2 = NULL;
        errno = 0;
        unsigned long long mx = strtoull(nums, &e1, 10), mn = 0;
        if (*e1 == ':')
            mn = strtoull(e1 + 1, &e2, 10);
        if (errno || e1 == nums || (*e1 && *e1 != ':') ||
            (*e1 == ':' && (e2 == e1 + 1 || *e2)) || nums[0] == '-' ||
            (*e1 == ':' && e1[1] == '-')) {
            snprintf(err, errlen, "namespace_quotas: '%.*s': MAX[:MIN] must be "
                     "page counts", (int)len, p);
            return PC_E_INVAL;
        }
        if (mx && mn > mx) {
            snprintf(err, errlen, "namespace_quotas: '%.*s': the reserve is above "
                     "the maximum", (int)len, p);
            return PC_E_INVAL;
        }
        if (L) {
            if (L->n == cap) {
                cap = cap ? 2 * cap : 4;
                void *a = realloc(L->v, cap * sizeof(*L->v));
                if (a)
                    L->v = a;
                void *b = a ? realloc(L->pat, cap * sizeof(*L->pat)) : NULL;
                if (!a || !b) {
                    snprintf(err, errlen, "namespace_quotas: out of memory");
                    return PC_E_NOMEM;
                }
                L->pat = b;
            }
            memcpy(L->pat[L->n], p, pl);
            L->pat[L->n][pl] = 0;
            L->v[L->n] = (pc_cache_quota){NULL, mx, mn};
            L->n++;
        }
    }
    return 0;
}

int pcd_ns_quotas_check(const char *text, char *err, size_t errlen)
{
    return quotas_parse(text, NULL, err, errlen);
}

int pcd_ns_quotas_apply(pc_cache *cache, const char *text, char *err,
                        size_t errlen)
{
    quota_list L = {NULL, NULL, 0};
    int rc = quotas_parse(text, &L, err, errlen);
    for (size_t i = 0; i < L.n; i++)
        L.v[i].pattern = L.pat[i];
    if (!rc && (rc = pc_cache_set_ns_quotas(cache, L.v, L.n)))
        snprintf(err, errlen, "namespace_quotas: %s", pc_cache_why(cache)[0]
                 ? pc_cache_why(cache) : pc_strerror(rc));
    free(L.v);
    free(L.pat);
    return rc;
}

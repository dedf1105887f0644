/*
 * rpc/auth.c - who a request comes from, and what it may do
 * (docs/SECURITY.md is the operator's side of this file).
 *
 *   allow_list_file                        one line per client:
 *     # comment                            KEY|uid:N  ROLE  [PATTERN ...]
 *     Ab3...(40 Z85)   admin
 *     Xy9...(40 Z85)   user   tenant-a.*  shared-*
 *     uid:1001         user   tenant-b.*
 *
 *   parsed whole into a pc_rpc_allow: keys sorted (bsearch per request),
 *   uids sorted; anything wrong refuses the whole file, so a reload that
 *   fails keeps the list in force (the server swaps only a parsed one).
 *
 * Bounds: at most PC_RPC_ALLOW_MAX entries and PC_RPC_PATTERNS_MAX
 * patterns of at most PC_NS_MAX bytes each, so the list is at most a few
 * MiB however the file is written; nothing here grows per connection or
 * per request.
 */
#include "rpc/rpc.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "rpc/client.h" /* pc_rpc_key_valid, PC_CURVE_KEY_LEN */

struct pc_rpc_allow {
    pc_rpc_allow_entry *keys, *uids; /* sorted by key text, by uid */
    size_t nkeys, nuids;
};

static void entry_free(pc_rpc_allow_entry *e)
{
    for (uint32_t i = 0; i < e->npat; i++)
        free(e->pat[i]);
    free(e->pat);
}

void pc_rpc_allow_free(pc_rpc_allow *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nkeys; i++)
        entry_free(&a->keys[i]);
    for (size_t i = 0; i < a->nuids; i++)
        entry_free(&a->uids[i]);
    free(a->keys);
    free(a->uids);
    free(a);
}

size_t pc_rpc_allow_count(const pc_rpc_allow *a)
{
    return a ? a->nkeys + a->nuids : 0;
}

static int by_key(const void *x, const void *y)
{
    return memcmp(((const pc_rpc_allow_entry *)x)->key,
                  ((const pc_rpc_allow_entry *)y)->key, PC_CURVE_KEY_LEN);
}

static int by_uid(const void *x, const void *y)
{
    uint32_t a = ((const pc_rpc_allow_entry *)x)->uid,
             b = ((const pc_rpc_allow_entry *)y)->uid;
    return a < b ? -1 : a > b;
}

/* The lease owner tag of a key: its first 62 bits (keys are random), kind 2. */
static uint64_t key_tag(const char *z85)
{
    uint8_t raw[32];
    uint64_t v = 0;
    if (zmq_z85_decode(raw, z85))
        memcpy(&v, raw, sizeof(v));
    return PC_RPC_OWNER_KEY | (v & PC_RPC_OWNER_MASK);
}

uint64_t pc_rpc_owner_of_key(const char *z85)
{
    return key_tag(z85);
}

/* Parse one non-empty line into e (its patterns are e's). */
static int parse_line(char *t, pc_rpc_allow_entry *e, const char *path,
                      unsigned lineno, char *err, size_t errlen)
{
    char *save = NULL, *id = strtok_r(t, " \t", &save);
    char *role = strtok_r(NULL, " \t", &save);
    memset(e, 0, sizeof(*e));
    if (!role) {
        snprintf(err, errlen, "%s:%u: expected 'KEY|uid:N ROLE [PATTERN...]'",
                 path, lineno);
        return PC_E_INVAL;
    }
    if (strncmp(id, "uid:", 4) == 0) {
        char *end;
        errno = 0;
        unsigned long u = strtoul(id + 4, &end, 10);
        if (!isdigit((unsigned char)id[4]) || *end || errno || u >= UINT32_MAX) {
            snprintf(err, errlen, "%s:%u: '%s' is not uid:NUMBER", path, lineno,
                     id);
            return PC_E_INVAL;
        }
        e->is_uid = true;
        e->uid = (uint32_t)u;
        e->owner = PC_RPC_OWNER_UID | e->uid;
    } else if (pc_rpc_key_valid(id)) {
        memcpy(e->key, id, PC_CURVE_KEY_LEN + 1);
        e->owner = key_tag(id);
    } else {
        snprintf(err, errlen, "%s:%u: '%.48s' is neither a public key (40 Z85 "
                 "characters) nor uid:NUMBER", path, lineno, id);
        return PC_E_INVAL;
    }
    if (strcmp(role, "admin") == 0) {
        e->admin = true;
    } else if (strcmp(role, "user") != 0) {
        snprintf(err, errlen, "%s:%u: role '%.32s' is neither admin nor user",
                 path, lineno, role);
        return PC_E_INVAL;
    }
    for (char *p; (p = strtok_r(NULL, " \t", &save));) {
        if (e->admin) {
            snprintf(err, errlen, "%s:%u: an admin takes no namespace patterns "
                     "(it may flush every namespace anyway)", path, lineno);
            return PC_E_INVAL;
        }
        if (e->npat >= PC_RPC_PATTERNS_MAX || strlen(p) > PC_NS_MAX) {
            snprintf(err, errlen, "%s:%u: at most %d patterns of at most %d "
                     "bytes", path, lineno, PC_RPC_PATTERNS_MAX, PC_NS_MAX);
            return PC_E_RANGE;
        }
        if (!e->pat && !(e->pat = calloc(PC_RPC_PATTERNS_MAX, sizeof(*e->pat))))
            return PC_E_NOMEM;
        if (!(e->pat[e->npat] = strdup(p)))
            return PC_E_NOMEM;
        e->npat++;
    }
    return 0;
}

int pc_rpc_allow_load(const char *path, pc_rpc_allow **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "cannot read allow_list_file %s: %s", path,
                 strerror(errno));
        return errno == ENOENT ? PC_E_NOENT : PC_E_IO;
    }
    pc_rpc_allow *a = calloc(1, sizeof(*a));
    pc_rpc_allow_entry *v = calloc(PC_RPC_ALLOW_MAX, sizeof(*v));
    size_t n = 0;
    unsigned lineno = 0;
    int rc = a && v ? 0 : PC_E_NOMEM;
    char line[PC_RPC_PATTERNS_MAX * (PC_NS_MAX + 1) + 128];
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            rc = PC_E_RANGE;
            break;
        }
        line[strcspn(line, "\r\n")] = 0;
        char *t = line + strspn(line, " \t");
        if (!*t || *t == '#') /* whole lines only: '#' is a Z85 digit */
            continue;
        if (n >= PC_RPC_ALLOW_MAX) {
            snprintf(err, errlen, "%s: more than %d entries", path,
                     PC_RPC_ALLOW_MAX);
            rc = PC_E_RANGE;
            break;
        }
        rc = parse_line(t, &v[n], path, lineno, err, errlen);
        n++; /* its patterns are freed with the rest on failure */
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
        rc = PC_E_IO;
    }
    fclose(f);
    if (rc == 0) {
        size_t nk = 0, nu = 0;
        for (size_t i = 0; i < n; i++)
            v[i].is_uid ? nu++ : nk++;
        a->keys = calloc(nk ? nk : 1, sizeof(*a->keys));
        a->uids = calloc(nu ? nu : 1, sizeof(*a->uids));
        if (!a->keys || !a->uids)
            rc = PC_E_NOMEM;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (v[i].is_uid)
                a->uids[a->nuids++] = v[i];
            else
                a->keys[a->nkeys++] = v[i];
        }
        if (rc == 0)
            n = 0; /* moved */
    }
    if (rc == 0) {
        qsort(a->keys, a->nkeys, sizeof(*a->keys), by_key);
        qsort(a->uids, a->nuids, sizeof(*a->uids), by_uid);
        /* Twice the same key or uid: which line wins would be a guess.
         * Two keys with one owner tag (62 bits of random keys): never by
         * chance, so refuse rather than merge two clients' leases. */
        for (size_t i = 1; rc == 0 && i < a->nkeys; i++)
            if (a->keys[i].owner == a->keys[i - 1].owner) {
                snprintf(err, errlen, "%s: key %s is listed twice (or shares "
                         "its first 62 bits with another)", path,
                         a->keys[i].key);
                rc = PC_E_INVAL;
            }
        for (size_t i = 1; rc == 0 && i < a->nuids; i++)
            if (a->uids[i].uid == a->uids[i - 1].uid) {
                snprintf(err, errlen, "%s: uid:%u is listed twice", path,
                         a->uids[i].uid);
                rc = PC_E_INVAL;
            }
    }
    for (size_t i = 0; i < n; i++)
        entry_free(&v[i]);
    free(v);
    if (rc) {
        pc_rpc_allow_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

const pc_rpc_allow_entry *pc_rpc_allow_key(const pc_rpc_allow *a,
                                           const char *z85)
{
    if (!a || !z85 || strlen(z85) != PC_CURVE_KEY_LEN)
        return NULL;
    pc_rpc_allow_entry k;
    memcpy(k.key, z85, PC_CURVE_KEY_LEN + 1);
    return bsearch(&k, a->keys, a->nkeys, sizeof(k), by_key);
}

const pc_rpc_allow_entry *pc_rpc_allow_uid(const pc_rpc_allow *a, uint32_t uid)
{
    if (!a)
        return NULL;
    pc_rpc_allow_entry k = {.uid = uid};
    return bsearch(&k, a->uids, a->nuids, sizeof(k), by_uid);
}

bool pc_rpc_allow_ns(const pc_rpc_allow_entry *e, const void *ns, size_t len)
{
    if (!e || e->admin || e->npat == 0)
        return true;
    char buf[PC_NS_MAX + 1];
    /* A namespace with a NUL byte cannot be a C string: never a tenant's. */
    if (len > PC_NS_MAX || memchr(ns, 0, len))
        return false;
    memcpy(buf, ns, len);
    buf[len] = 0;
    for (uint32_t i = 0; i < e->npat; i++)
        if (fnmatch(e->pat[i], buf, 0) == 0)
            return true;
    return false;
}

int pc_rpc_tcp_loopback(const char *ep)
{
    if (strncmp(ep, "tcp://", 6) != 0)
        return 0;
    const char *h = ep + 6, *colon = strrchr(h, ':');
    size_t n = colon ? (size_t)(colon - h) : strlen(h);
    char host[128];
    if (n >= sizeof(host))
        return 0;
    memcpy(host, h, n);
    host[n] = 0;
    /* A source address ("tcp://src;dst") is for connect, not bind. */
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
        strcmp(host, "::1") == 0 || strcmp(host, "lo") == 0)
        return 1;
    unsigned a, b, c, d;
    char extra;
    return sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) == 4 &&
           a == 127 && b < 256 && c < 256 && d < 256;
}

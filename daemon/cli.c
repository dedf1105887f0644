/*
 * daemon/cli.c - prefixcache-cli, the operators' tool: one request to a
 * running prefixcached per invocation, through libprefixcache (rpc/client.h),
 * so that it exercises exactly what engines use.
 *
 *   prefixcache-cli [--endpoint E] [--timeout MS]
 *                   [--server-key FILE --client-key FILE] <command> [args]
 *
 * Exit status: 0 success; 1 the daemon or the transport failed (a line on
 * stderr with the code name and the daemon's text); 2 a usage error (usage
 * on stderr).  Output goes to stdout; nothing but errors to stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "rpc/client.h"

#define PROG "prefixcache-cli"
#define LOOKUP_SHOW_BLOCKS 16

static void usage(FILE *f)
{
    /* The rule, not its result: resolving it may create a directory, which
     * printing help should not do (`ping` shows the endpoint it used). */
    fprintf(f,
        "usage: " PROG " [--endpoint E] [--timeout MS]\n"
        "       [--server-key FILE --client-key FILE] <command> [args]\n"
        "\n"
        "commands:\n"
        "  ping [-c N]             round-trip time to the daemon (N pings)\n"
        "  hello                   the pool layout and limits the daemon announces\n"
        "  stats [--json]          every counter, grouped by prefix, or as JSON\n"
        "  stats --watch [SECONDS] [--count N]\n"
        "                          a live view every SECONDS (default 1): hit\n"
        "                          rate, pool fullness, evictions/s, requests/s\n"
        "                          over the last interval; Ctrl-C (or N views)\n"
        "                          ends it\n"
        "  lookup [--ns NS] FILE   longest cached prefix of the token ids in FILE\n"
        "                          (whitespace-separated decimals; '-': stdin);\n"
        "                          pins nothing\n"
        "  flush [--ns NS]         evict every unpinned page (of one namespace)\n"
        "  config get [NAME]       every knob, or one\n"
        "  config set NAME VALUE   change a reloadable knob (VALUE as text)\n"
        "  keygen FILE             a new CURVE key pair: FILE (mode 0600, the\n"
        "                          secret) and FILE.pub (the public key, for the\n"
        "                          daemon's allow_list_file or clients'\n"
        "                          --server-key); talks to no daemon\n"
        "\n"
        "options:\n"
        "  --endpoint E   the daemon's endpoint (default: the daemon's own,\n"
        "                 ipc://DIR/prefixcache.sock in the first directory of\n"
        "                 ours that others cannot write among $XDG_RUNTIME_DIR,\n"
        "                 /run/prefixcache (root), /tmp/prefixcache-<uid>,\n"
        "                 $HOME/.prefixcache)\n"
        "  --timeout MS   how long one request may take (default 5000)\n"
        "  --server-key FILE  connect with CURVE: the daemon's public key\n"
        "                 (its key file or the .pub keygen wrote)\n"
        "  --client-key FILE  our CURVE key pair (keygen's FILE; its public\n"
        "                 key must be on the daemon's allow-list). A daemon\n"
        "                 that does not know the key never answers: timeout\n"
        "  --help         this text\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    usage(stderr);
    return 2;
}

static int fail(pc_client *c, const char *cmd, int rc)
{
    const char *msg = c ? pc_client_last_error(c) : "";
    if (!msg || !*msg)
        msg = pc_strerror(rc);
    /* the daemon's texts often start with the op already ("config set: ") */
    size_t n = strlen(cmd);
    if (strncmp(msg, cmd, n) == 0 && msg[n] == ':')
        fprintf(stderr, PROG ": %s: %s\n", pc_errname(rc), msg);
    else
        fprintf(stderr, PROG ": %s: %s: %s\n", cmd, pc_errname(rc), msg);
    return 1;
}

/* 2147483648 -> "2 GiB", 33554432 -> "32 MiB", 1536 -> "1.5 KiB" */
static const char *human(uint64_t v, char *buf, size_t len)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 5)
        d /= 1024, u++;
    snprintf(buf, len, d == (double)(uint64_t)d ? "%.0f %s" : "%.2f %s", d,
             unit[u]);
    return buf;
}

/* "--name=value" or "--name value"; *i advances past what was used.
 * NULL when argv[*i] is not this option; *missing when its value is. */
static const char *opt_value(int argc, char **argv, int *i, const char *name,
                             bool *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    *missing = false;
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- ping ------------------------------------------------------------------- */

static int cmd_ping(pc_client *c, const char *ep, int argc, char **argv)
{
    uint64_t count = 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            if (!parse_u64(argv[++i], 1000000, &count) || count == 0)
                return usage_error("ping: bad count '%s'", argv[i]);
        } else {
            return usage_error("ping: unexpected argument '%s'", argv[i]);
        }
    }
    double min = 0, max = 0, sum = 0;
    for (uint64_t k = 0; k < count; k++) {
        double t0 = now_ms();
        int rc = pc_client_ping(c);
        double dt = now_ms() - t0;
        if (rc)
            return fail(c, "ping", rc);
        printf("pong from %s: %.3f ms\n", ep, dt);
        min = k == 0 || dt < min ? dt : min;
        max = dt > max ? dt : max;
        sum += dt;
    }
    if (count > 1)
        printf("%" PRIu64 " pings: min %.3f ms, avg %.3f ms, max %.3f ms\n",
               count, min, sum / (double)count, max);
    return 0;
}

/* ---- hello ------------------------------------------------------------------ */

static int cmd_hello(pc_client *c, int argc, char **argv)
{
    pc_hello h;
    if (argc)
        return usage_error("hello: unexpected argument '%s'", argv[0]);
    int rc = pc_client_hello(c, &h);
    /* pc_client_hello fills the layout before it maps a host pool: when only
     * the mapping failed (another machine, another user), the layout is
     * still worth printing. */
    bool layout = h.version == PC_PROTO_MAJOR && h.page_tokens != 0;
    if (rc && (rc == PC_E_VERSION || !layout))
        return fail(c, "hello", rc);
    printf("protocol       %u.%u (this client %u.%u)\n", h.version,
           h.version_minor, PC_PROTO_MAJOR, PC_PROTO_MINOR);
    printf("page_tokens    %u\n", h.page_tokens);
    printf("model          %u layers x %u kv_heads x %u head_dim, %s\n",
           h.layers, h.kv_heads, h.head_dim, h.dtype[0] ? h.dtype : "?");
    char b1[32];
    printf("block_bytes    %" PRIu64 " (%s)\n", h.block_bytes,
           human(h.block_bytes, b1, sizeof(b1)));
    printf("token_bytes    %" PRIu64 "\n", h.token_bytes);
    printf("kv_bytes       %" PRIu64 "\n", h.kv_bytes);
    printf("capacity       %" PRIu64 " blocks (%s)\n", h.capacity,
           human(h.capacity * h.block_bytes, b1, sizeof(b1)));
    printf("backend        %s\n", h.backend);
    if (strcmp(h.backend, "host") == 0)
        printf("shm            %s (%" PRIu64 " bytes)%s\n", h.shm_name,
               h.shm_bytes, rc ? "" : ", mapped");
    if (strcmp(h.backend, "cuda") == 0) {
        char uuid[2 * sizeof(h.device_uuid) + 1];
        for (size_t i = 0; i < sizeof(h.device_uuid); i++)
            snprintf(uuid + 2 * i, 3, "%02x", h.device_uuid[i]);
        printf("device         %s %s%s\n", h.device_ops, uuid,
               rc ? "" : ", imported");
    }
    printf("lease_ttl_ms   %" PRIu64 "\n", h.lease_ttl_ms);
    printf("max_tokens     %" PRIu64 "\n", h.max_tokens);
    printf("max_msg        %" PRIu64 " (%s)\n", h.max_msg,
           human(h.max_msg, b1, sizeof(b1)));
    if (rc)
        fprintf(stderr, PROG ": hello: warning: %s: %s\n", pc_errname(rc),
                pc_client_last_error(c));
    return 0;
}

/* ---- stats ------------------------------------------------------------------ */

typedef struct stat_row {
    char *name;
    uint64_t v;
} stat_row;

typedef struct stat_set {
    stat_row *rows;
    size_t n, cap;
    bool oom;
} stat_set;

static void stat_add(void *ctx, const char *name, uint64_t v)
{
    stat_set *s = ctx;
    if (s->oom)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        stat_row *r = realloc(s->rows, cap * sizeof(*r));
        if (!r) {
            s->oom = true;
            return;
        }
        s->rows = r;
        s->cap = cap;
    }
    if (!(s->rows[s->n].name = strdup(name))) {
        s->oom = true;
        return;
    }
    s->rows[s->n++].v = v;
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const stat_row *)a)->name, ((const stat_row *)b)->name);
}

static size_t prefix_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* ---- stats --watch ------------------------------------------------------------ */

/* What the live view needs from one STATS snapshot. */
typedef struct watch_snap {
    double t_ms;
    uint64_t hit_tokens, miss_tokens, evicted, requests;
    uint64_t capacity, free_blocks, cached, leased;
} watch_snap;

static void watch_add(void *ctx, const char *name, uint64_t v)
{
    watch_snap *w = ctx;
    /* cache/metrics.c: ns.<counter>.<namespace>, ns_other.<counter>; hits
     * of every tier */
    if (!strncmp(name, "ns.hit_tokens.", 14) || !strncmp(name, "ns_other.hit_tokens.", 20))
        w->hit_tokens += v;
    else if (!strncmp(name, "ns.miss_tokens.", 15) || !strcmp(name, "ns_other.miss_tokens"))
        w->miss_tokens += v;
    else if (strcmp(name, "tree.evicted_pages") == 0)
        w->evicted = v;
    else if (strcmp(name, "rpc.requests") == 0)
        w->requests = v;
    else if (strcmp(name, "pool.blocks.capacity") == 0)
        w->capacity = v;
    else if (strcmp(name, "pool.blocks.free") == 0)
        w->free_blocks = v;
    else if (strcmp(name, "pool.blocks.cached") == 0)
        w->cached = v;
    else if (strcmp(name, "pool.blocks.leased") == 0)
        w->leased = v;
}

static volatile sig_atomic_t g_watch_stop;

static void on_watch_signal(int sig)
{
    (void)sig;
    g_watch_stop = 1;
}

static int watch_snapshot(pc_client *c, watch_snap *w)
{
    memset(w, 0, sizeof(*w));
    int rc = pc_client_stats(c, watch_add, w);
    w->t_ms = now_ms();
    return rc;
}

/* Rates over the interval between a and b; fullness as of b. */
static void watch_print(const watch_snap *a, const watch_snap *b, bool tty)
{
    double dt = (b->t_ms - a->t_ms) / 1e3;
    uint64_t hit = b->hit_tokens - a->hit_tokens;
    uint64_t looked = hit + (b->miss_tokens - a->miss_tokens);
    double used = b->capacity ? 100.0 * (double)(b->capacity - b->free_blocks) /
                                    (double)b->capacity
                              : 0;
    char hr[32] = "-";
    if (looked)
        snprintf(hr, sizeof(hr), "%.1f%%", 100.0 * (double)hit / (double)looked);
    double ev = dt > 0 ? (double)(b->evicted - a->evicted) / dt : 0;
    double rq = dt > 0 ? (double)(b->requests - a->requests) / dt : 0;
    time_t now = time(NULL);
    struct tm tm;
    char ts[32];
    strftime(ts, sizeof(ts), "%H:%M:%S", localtime_r(&now, &tm));
    if (tty) { /* a screen that redraws in place */
        printf("\033[H\033[2J" PROG " stats --watch (every %.3gs; Ctrl-C ends)   %s\n\n"
               "  hit rate      %8s   (%" PRIu64 " of %" PRIu64 " looked-up tokens)\n"
               "  pool used     %7.1f%%   (%" PRIu64 " cached + %" PRIu64
               " leased of %" PRIu64 " blocks)\n"
               "  evictions/s   %8.1f\n"
               "  requests/s    %8.1f\n",
               dt, ts, hr, hit, looked, used, b->cached, b->leased, b->capacity,
               ev, rq);
    } else { /* one line per interval: greppable, testable */
        printf("%s hit_rate=%s hit_tokens=%" PRIu64 " lookup_tokens=%" PRIu64
               " pool_used=%.1f%% evictions_per_s=%.1f requests_per_s=%.1f\n",
               ts, hr, hit, looked, used, ev, rq);
    }
    fflush(stdout);
}

/* Sleep ms, or less when a signal ends the watch. */
static void watch_sleep(double ms)
{
    struct timespec ts = {(time_t)(ms / 1e3),
                          (long)((ms - (double)(time_t)(ms / 1e3) * 1e3) * 1e6)};
    while (!g_watch_stop && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cmd_stats_watch(pc_client *c, double secs, uint64_t count)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_watch_signal; /* no SA_RESTART: the sleep ends */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool tty = isatty(STDOUT_FILENO);
    watch_snap prev, cur;
    int rc = watch_snapshot(c, &prev);
    if (rc)
        return fail(c, "stats", rc);
    for (uint64_t n = 0; !g_watch_stop && (!count || n < count); n++) {
        watch_sleep(secs * 1e3);
        if (g_watch_stop)
            break;
        if ((rc = watch_snapshot(c, &cur)))
            return fail(c, "stats", rc);
        watch_print(&prev, &cur, tty);
        prev = cur;
    }
    return 0; /* Ctrl-C is how a watch is meant to end */
}

static int cmd_stats(pc_client *c, int argc, char **argv)
{
    bool json = false, watch = false;
    double secs = 1;
    uint64_t count = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--watch") == 0) {
            watch = true;
            if (i + 1 < argc && argv[i + 1][0] != '-') {
                char *end;
                errno = 0;
                secs = strtod(argv[++i], &end);
                if (errno || *end || !(secs >= 0.1 && secs <= 3600))
                    return usage_error("stats: bad --watch interval '%s' "
                                       "(seconds, 0.1..3600)", argv[i]);
            }
        } else if (strcmp(argv[i], "--count") == 0) {
            if (i + 1 >= argc || !parse_u64(argv[i + 1], UINT32_MAX, &count) ||
                !count)
                return usage_error("stats: --count needs a number of views "
                                   "(1 or more)%s", "");
            i++;
        } else {
            return usage_error("stats: unexpected argument '%s'", argv[i]);
        }
    }
    if (watch && json)
        return usage_error("stats: %s", "--watch and --json do not go together");
    if (count && !watch)
        return usage_error("stats: %s", "--count goes with --watch");
    if (watch)
        return cmd_stats_watch(c, secs, count);
    stat_set s = {0};
    int rc = pc_client_stats(c, stat_add, &s), ret = 0;
    if (rc) {
        ret = fail(c, "stats", rc);
        goto out;
    }
    if (s.oom) {
        fprintf(stderr, PROG ": stats: out of memory\n");
        ret = 1;
        goto out;
    }
    if (s.n)
        qsort(s.rows, s.n, sizeof(*s.rows), row_cmp);
    if (json) {
        printf("{");
        for (size_t i = 0; i < s.n; i++) {
            printf("%s\n  ", i ? "," : "");
            json_str(s.rows[i].name);
            printf(": %" PRIu64, s.rows[i].v);
        }
        printf("%s}\n", s.n ? "\n" : "");
        goto out;
    }
    /* One column width for the whole table, so groups line up too. */
    size_t w = 0, vw = 1;
    for (size_t i = 0; i < s.n; i++) {
        char b[32];
        size_t l = strlen(s.rows[i].name);
        w = l > w ? l : w;
        l = (size_t)snprintf(b, sizeof(b), "%" PRIu64, s.rows[i].v);
        vw = l > vw ? l : vw;
    }
    for (size_t i = 0; i < s.n; i++) {
        const char *nm = s.rows[i].name;
        size_t pl = prefix_len(nm);
        if (i == 0 || pl != prefix_len(s.rows[i - 1].name) ||
            strncmp(nm, s.rows[i - 1].name, pl) != 0)
            printf("%s%.*s\n", i ? "\n" : "", (int)pl, nm);
        printf("  %-*s  %*" PRIu64 "\n", (int)w, nm, (int)vw, s.rows[i].v);
    }
out:
    for (size_t i = 0; i < s.n; i++)
        free(s.rows[i].name);
    free(s.rows);
    return ret;
}

/* ---- lookup ----------------------------------------------------------------- */

/* Read whitespace-separated decimal token ids from path ('-': stdin). */
static int read_tokens(const char *path, uint32_t **out, size_t *n)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, PROG ": lookup: %s: %s\n", path, strerror(errno));
        return 1;
    }
    uint32_t *t = NULL;
    size_t cap = 0, len = 0;
    char word[32];
    int ret = 0, ch;
    *out = NULL;
    *n = 0;
    for (;;) {
        size_t wl = 0;
        while ((ch = getc(f)) != EOF && (ch == ' ' || ch == '\t' ||
                                         ch == '\n' || ch == '\r' ||
                                         ch == '\v' || ch == '\f'))
            ;
        if (ch == EOF)
            break;
        do {
            if (wl < sizeof(word) - 1)
                word[wl] = (char)ch;
            wl++;
        } while ((ch = getc(f)) != EOF && !(ch == ' ' || ch == '\t' ||
                                            ch == '\n' || ch == '\r' ||
                                            ch == '\v' || ch == '\f'));
        word[wl < sizeof(word) ? wl : sizeof(word) - 1] = 0;
        uint64_t v;
        if (wl >= sizeof(word) || !parse_u64(word, UINT32_MAX, &v)) {
            fprintf(stderr,
                    PROG ": lookup: %s: token %zu ('%s%s') is not a uint32 "
                    "decimal\n", path, len + 1, word,
                    wl >= sizeof(word) ? "..." : "");
            ret = 1;
            break;
        }
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            uint32_t *nt = realloc(t, nc * sizeof(*nt));
            if (!nt) {
                fprintf(stderr, PROG ": lookup: out of memory\n");
                ret = 1;
                break;
            }
            t = nt;
            cap = nc;
        }
        t[len++] = (uint32_t)v;
    }
    if (!ret && ferror(f)) {
        fprintf(stderr, PROG ": lookup: %s: read error\n", path);
        ret = 1;
    }
    if (f != stdin)
        fclose(f);
    if (ret) {
        free(t);
        return ret;
    }
    *out = t;
    *n = len;
    return 0;
}

static int cmd_lookup(pc_client *c, int argc, char **argv)
{
    const char *ns = "", *path = NULL;
    for (int i = 0; i < argc; i++) {
        bool missing;
        const char *v = opt_value(argc, argv, &i, "--ns", &missing);
        if (missing)
            return usage_error("lookup: %s needs a value", "--ns");
        if (v)
            ns = v;
        else if (argv[i][0] == '-' && argv[i][1] != 0)
            return usage_error("lookup: unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return usage_error("lookup: unexpected argument '%s'", argv[i]);
    }
    if (!path)
        return usage_error("lookup: %s", "which FILE? ('-' for stdin)");
    uint32_t *tok;
    size_t n;
    int ret = read_tokens(path, &tok, &n);
    if (ret)
        return ret;
    pc_client_lookup_result r;
    int rc = pc_client_lookup(c, ns, strlen(ns), tok, n, 0, 0, &r);
    free(tok);
    if (rc)
        return fail(c, "lookup", rc);
    printf("namespace  ");
    json_str(ns);
    printf("\nmatched    %zu of %zu tokens, %zu pages", r.tokens, n, r.pages);
    if (r.pages)
        printf(" of %zu tokens", r.tokens / r.pages);
    printf("\nblocks    ");
    for (size_t i = 0; i < r.pages && i < LOOKUP_SHOW_BLOCKS; i++)
        printf(" %" PRIu32, r.blocks[i]);
    if (r.pages > LOOKUP_SHOW_BLOCKS)
        printf(" ... (first %d of %zu)", LOOKUP_SHOW_BLOCKS, r.pages);
    else if (!r.pages)
        printf(" (none)");
    printf("\n");
    return 0;
}

/* ---- flush ------------------------------------------------------------------ */

static int cmd_flush(pc_client *c, int argc, char **argv)
{
    const char *ns = NULL;
    for (int i = 0; i < argc; i++) {
        bool missing;
        const char *v = opt_value(argc, argv, &i, "--ns", &missing);
        if (missing)
            return usage_error("flush: %s needs a value", "--ns");
        if (!v)
            return usage_error("flush: unexpected argument '%s'", argv[i]);
        ns = v;
    }
    uint64_t ev = 0;
    int rc = pc_client_flush(c, ns, ns ? strlen(ns) : 0, &ev);
    if (rc)
        return fail(c, "flush", rc);
    printf("evicted %" PRIu64 " pages (", ev);
    if (ns) {
        printf("namespace ");
        json_str(ns);
    } else {
        printf("all namespaces");
    }
    printf("; pinned pages stay)\n");
    return 0;
}

/* ---- config ----------------------------------------------------------------- */

typedef struct knob {
    char *name, *value;
} knob;

typedef struct knob_set {
    knob *k;
    size_t n, cap;
    bool oom;
} knob_set;

static void knob_add(void *ctx, const char *name, const char *value)
{
    knob_set *s = ctx;
    if (s->oom)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        knob *k = realloc(s->k, cap * sizeof(*k));
        if (!k) {
            s->oom = true;
            return;
        }
        s->k = k;
        s->cap = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        s->oom = true;
        return;
    }
    s->k[s->n++] = (knob){n, v};
}

static int knob_cmp(const void *a, const void *b)
{
    return strcmp(((const knob *)a)->name, ((const knob *)b)->name);
}

static int cmd_config(pc_client *c, int argc, char **argv)
{
    knob_set s = {0};
    int rc;
    const char *what;
    if (argc >= 1 && strcmp(argv[0], "get") == 0 && argc <= 2) {
        what = "config get";
        rc = pc_client_config_get(c, argc == 2 ? argv[1] : NULL, knob_add, &s);
    } else if (argc == 3 && strcmp(argv[0], "set") == 0) {
        what = "config set";
        rc = pc_client_config_set(c, argv[1], argv[2], knob_add, &s);
    } else {
        return usage_error("config: %s",
                           "expected 'get [NAME]' or 'set NAME VALUE'");
    }
    int ret = 0;
    if (rc) {
        ret = fail(c, what, rc);
    } else if (s.oom) {
        fprintf(stderr, PROG ": %s: out of memory\n", what);
        ret = 1;
    } else {
        size_t w = 0;
        if (s.n)
            qsort(s.k, s.n, sizeof(*s.k), knob_cmp);
        for (size_t i = 0; i < s.n; i++)
            w = strlen(s.k[i].name) > w ? strlen(s.k[i].name) : w;
        for (size_t i = 0; i < s.n; i++)
            printf("%-*s  %s\n", (int)w, s.k[i].name, s.k[i].value);
    }
    for (size_t i = 0; i < s.n; i++) {
        free(s.k[i].name);
        free(s.k[i].value);
    }
    free(s.k);
    return ret;
}

/* keygen FILE: FILE (key pair, 0600) and FILE.pub (public key only). */
static int cmd_keygen(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("keygen: %s", "which FILE?");
    char pub[PC_CURVE_KEY_LEN + 1], sec[PC_CURVE_KEY_LEN + 1];
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, PROG ": keygen: this libzmq has no CURVE\n");
        return 1;
    }
    char pubpath[4096];
    if (snprintf(pubpath, sizeof(pubpath), "%s.pub", argv[0]) >=
        (int)sizeof(pubpath))
        return usage_error("keygen: %s", "FILE is too long");
    int rc = pc_rpc_keyfile_write(argv[0], pub, sec);
    if (rc == 0 && (rc = pc_rpc_keyfile_write(pubpath, pub, NULL)) != 0)
        unlink(argv[0]);
    explicit_bzero(sec, sizeof(sec));
    if (rc) {
        fprintf(stderr, PROG ": keygen: cannot write %s or %s: %s\n", argv[0],
                pubpath, rc == PC_E_BUSY ? "it exists (never overwritten)"
                                         : pc_strerror(rc));
        return 1;
    }
    printf("%s\n", pub);
    return 0;
}

/* ---- main ------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *ep = NULL, *server_key = NULL, *client_key = NULL;
    uint64_t timeout = 5000;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        bool missing;
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--endpoint", &missing))) {
            ep = v;
        } else if (missing) {
            return usage_error("%s needs a value", argv[i]);
        } else if ((v = opt_value(argc, argv, &i, "--server-key", &missing))) {
            server_key = v;
        } else if (missing) {
            return usage_error("%s needs a value", argv[i]);
        } else if ((v = opt_value(argc, argv, &i, "--client-key", &missing))) {
            client_key = v;
        } else if (missing) {
            return usage_error("%s needs a value", argv[i]);
        } else if ((v = opt_value(argc, argv, &i, "--timeout", &missing))) {
            if (!parse_u64(v, 3600000, &timeout) || timeout == 0)
                return usage_error("bad --timeout '%s' (milliseconds, 1..3600000)",
                                   v);
        } else if (missing) {
            return usage_error("%s needs a value", argv[i]);
        } else {
            return usage_error("unknown option '%s'", argv[i]);
        }
    }
    if (i >= argc)
        return usage_error("%s", "which command?");
    const char *cmd = argv[i++];
    int cargc = argc - i;
    char **cargv = argv + i;
    static const char *const cmds[] = {"ping", "hello", "stats", "lookup",
                                       "flush", "config", "keygen"};
    bool known = false;
    for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
        known |= strcmp(cmd, cmds[k]) == 0;
    if (!known)
        return usage_error("unknown command '%s'", cmd);
    for (int k = 0; k < cargc; k++)
        if (strcmp(cargv[k], "--help") == 0) {
            usage(stdout);
            return 0;
        }
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(cargc, cargv);
    if (!server_key != !client_key)
        return usage_error("%s", "--server-key and --client-key go together");
    pc_client_curve curve;
    if (server_key) {
        char err[512], sec[PC_CURVE_KEY_LEN + 1];
        int krc = pc_rpc_keyfile_read(server_key, curve.server_public, NULL,
                                      err, sizeof(err));
        if (krc == 0)
            krc = pc_rpc_keyfile_read(client_key, curve.public_key, sec, err,
                                      sizeof(err));
        if (krc) {
            fprintf(stderr, PROG ": %s\n", err);
            return 1;
        }
        memcpy(curve.secret_key, sec, sizeof(sec));
        explicit_bzero(sec, sizeof(sec));
    }
    char def_ep[PC_RPC_ENDPOINT_MAX];
    if (!ep) {
        /* the daemon's own rule, so both pick the same private directory */
        if (pc_rpc_default_endpoint(def_ep, sizeof(def_ep))) {
            fprintf(stderr, PROG ": no default endpoint: none of "
                    "$XDG_RUNTIME_DIR, /run/prefixcache (root), "
                    "/tmp/prefixcache-<uid>, $HOME/.prefixcache is a private "
                    "directory of ours; give --endpoint\n");
            return 1;
        }
        ep = def_ep;
    }

    pc_client *c;
    int rc = pc_client_connect_curve(ep, (int)timeout,
                                     server_key ? &curve : NULL, &c);
    explicit_bzero(&curve, sizeof(curve));
    if (rc) {
        fprintf(stderr, PROG ": cannot connect to '%s': %s: %s\n", ep,
                pc_errname(rc),
                rc == PC_E_INVAL ? "not a valid ZeroMQ endpoint "
                                   "(ipc:///path or tcp://host:port)"
                                 : pc_strerror(rc));
        return 1;
    }
    int ret;
    if (strcmp(cmd, "ping") == 0)
        ret = cmd_ping(c, ep, cargc, cargv);
    else if (strcmp(cmd, "hello") == 0)
        ret = cmd_hello(c, cargc, cargv);
    else if (strcmp(cmd, "stats") == 0)
        ret = cmd_stats(c, cargc, cargv);
    else if (strcmp(cmd, "lookup") == 0)
        ret = cmd_lookup(c, cargc, cargv);
    else if (strcmp(cmd, "flush") == 0)
        ret = cmd_flush(c, cargc, cargv);
    else
        ret = cmd_config(c, cargc, cargv);
    pc_client_close(c);
    return ret;
}

/*
 * tests/test_security_e2e.c - trust across hosts and tenants (issue 15,
 * docs/SECURITY.md), on real prefixcached processes:
 *
 *   allow_list_parse            the file format: good lines, and every bad
 *                               one refused whole, with file:line
 *   key_files                   keygen's files: round trip, a secret key
 *                               readable by others refused, '#' in keys
 *   curve_no_wrong_right_key    tcp on 0.0.0.0 with CURVE, reached on
 *                               127.0.0.1: no key and an unlisted key get
 *                               no service (timeout; the refusal is logged
 *                               with the key); the listed key works
 *   open_tcp_needs_keys_or_knob not loopback, no keys: no start, a clear
 *                               message; insecure_tcp: starts, WARN, works,
 *                               admin ops refused
 *   roles                       flush, config get/set and stats check: a
 *                               user key refused (PC_E_PERM), admin works;
 *                               a user's stats carry no ns.* rows
 *   tenant_refusals             lookup / insert / lookup+alloc in another
 *                               tenant's namespace: PC_E_PERM; its own: ok
 *   tenant_refusal_reveals_nothing  the refusal is byte-identical whether
 *                               the other tenant's pages are cached or not,
 *                               and that tenant's counters and the tree do
 *                               not move
 *   foreign_lease_is_unknown    another key's lease: release, renew (alloc),
 *                               pin under it, insert with it: PC_E_LEASE,
 *                               the very text an unknown lease gets; the
 *                               owner still releases it
 *   allow_list_reload           config set allow_list_file, then SIGHUP
 *                               (no --config): a bad file is refused and
 *                               the list stays; a new list revokes a key
 *                               at once (open connections too) and admits
 *                               a new one
 *   ipc_uids                    (root) another uid on ipc: admin ops
 *                               refused, its tenant patterns enforced; root
 *                               and the daemon's uid are admins
 *   cli_keygen_and_curve_flags  prefixcache-cli keygen's files and modes,
 *                               never overwriting; --server-key and
 *                               --client-key against a CURVE daemon
 */
#include "tests/harness/harness.h"
#include "tests/harness/client_check.h"

#include "rpc/client.h"
#include "rpc/rpc.h"

#include <ctype.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NOBODY 65534u
#define NO_SERVICE_MS 700 /* how long a refused client waits for nothing */

TestSuite(sec, .fini = hd_cleanup, .timeout = 90);

/* ---- keys and files ---------------------------------------------------------- */

typedef struct keypair {
    char pub[41], sec[41];
} keypair;

static void mkkey(keypair *k)
{
    cr_assert_eq(zmq_curve_keypair(k->pub, k->sec), 0);
}

static void tmp_path(char *out, size_t len, const char *what)
{
    static int n;
    snprintf(out, len, "/tmp/pc-sec-%ld-%d-%s", (long)getpid(), n++, what);
    unlink(out);
}

/* A key pair file (0600) for k. */
static void key_file(char *path, size_t len, const keypair *k)
{
    tmp_path(path, len, "key");
    cr_assert_eq(pc_rpc_keyfile_write(path, k->pub, k->sec), 0);
}

static void write_text(char *path, size_t len, const char *what, const char *text)
{
    tmp_path(path, len, what);
    hd_write_file(path, text);
}

static pc_client_curve curve_of(const keypair *srv, const keypair *me)
{
    pc_client_curve c;
    memcpy(c.server_public, srv->pub, 41);
    memcpy(c.public_key, me->pub, 41);
    memcpy(c.secret_key, me->sec, 41);
    return c;
}

/* ---- a daemon on tcp ------------------------------------------------------------ */

/* Start d on tcp://HOST:* with extra knobs; *ep gets tcp://127.0.0.1:PORT.
 * No ping (a CURVE daemon answers no plain client): the log line says it
 * listens. */
static void start_tcp(hd_daemon *d, const char *host, const char *const *extra,
                      char *ep, size_t eplen)
{
    const char *argv[16];
    char epa[64];
    snprintf(epa, sizeof(epa), "--endpoint=tcp://%s:*", host);
    int n = 0;
    argv[n++] = epa;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    hd_init(d);
    hd_spawn(d, true, argv);
    char line[1024];
    const char *const needle[] = {"listening on tcp://", NULL};
    bool up = hd_log_wait_line(d, 0, HD_START_MS, line, sizeof(line), needle);
    if (!up)
        hd_dump_log(d, 4096);
    cr_assert(up, "no 'listening on tcp://' line");
    const char *p = strrchr(strstr(line, "tcp://"), ':');
    snprintf(ep, eplen, "tcp://127.0.0.1:%.*s", (int)strcspn(p + 1, " \n"), p + 1);
}

/* A CURVE daemon: server key pair srv, allow-list text. */
static void start_curve(hd_daemon *d, const keypair *srv, const char *allow,
                        char *allow_path, size_t aplen, char *ep, size_t eplen)
{
    static char kf[128], a1[200], a2[200];
    key_file(kf, sizeof(kf), srv);
    write_text(allow_path, aplen, "allow", allow);
    snprintf(a1, sizeof(a1), "--curve_key_file=%s", kf);
    snprintf(a2, sizeof(a2), "--allow_list_file=%s", allow_path);
    start_tcp(d, "0.0.0.0", (const char *const[]){a1, a2, NULL}, ep, eplen);
}

static pc_client *connect_key(const char *ep, const keypair *srv,
                              const keypair *me, int timeout_ms)
{
    pc_client *c = NULL;
    pc_client_curve cv = curve_of(srv, me);
    cr_assert_eq(pc_client_connect_curve(ep, timeout_ms, &cv, &c), 0);
    return c;
}

/* Cache a prompt of n tokens in ns under c (lookup+pin+alloc, insert with
 * release). */
static void put(pc_client *c, const char *ns, const uint32_t *t, size_t n)
{
    pc_client_lookup_result r;
    uint32_t ids[64], canon[64];
    RC_EQ(c, pc_client_lookup(c, ns, strlen(ns), t, n, PC_CLIENT_ALLOC, 0, &r),
          0);
    memcpy(ids, r.alloc_blocks, r.n_alloc * sizeof(*ids));
    RC_EQ(c, r.alloc_status, 0);
    pc_client_insert_result ir;
    RC_EQ(c, pc_client_insert(c, ns, strlen(ns), t, n, ids, r.lease,
                              PC_CLIENT_RELEASE, canon, &ir), 0);
}

/* ---- the formats --------------------------------------------------------------- */

Test(sec, allow_list_parse)
{
    keypair a, b;
    mkkey(&a);
    mkkey(&b);
    char path[128], text[1024], err[512];
    pc_rpc_allow *al = NULL;
    snprintf(text, sizeof(text), "# clients\n\n  %s admin\n%s user ten-a* shared-?\n"
             "uid:1001 user ten-b/*\nuid:0 admin\n", a.pub, b.pub);
    write_text(path, sizeof(path), "allow", text);
    cr_assert_eq(pc_rpc_allow_load(path, &al, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(pc_rpc_allow_count(al), 4);
    const pc_rpc_allow_entry *e = pc_rpc_allow_key(al, a.pub);
    cr_assert(e && e->admin && e->npat == 0);
    e = pc_rpc_allow_key(al, b.pub);
    cr_assert(e && !e->admin && e->npat == 2);
    cr_assert(pc_rpc_allow_ns(e, "ten-a", 5) && pc_rpc_allow_ns(e, "ten-a/x", 7));
    cr_assert(pc_rpc_allow_ns(e, "shared-1", 8) && !pc_rpc_allow_ns(e, "ten-b", 5));
    cr_assert(!pc_rpc_allow_ns(e, "ten-a\0x", 7), "a NUL byte matches nothing");
    e = pc_rpc_allow_uid(al, 1001);
    cr_assert(e && e->npat == 1 && pc_rpc_allow_ns(e, "ten-b/q", 7));
    cr_assert_null(pc_rpc_allow_uid(al, 1002));
    cr_assert_null(pc_rpc_allow_key(al, "0000000000000000000000000000000000000000"));
    cr_assert_neq(pc_rpc_allow_key(al, a.pub)->owner, pc_rpc_allow_key(al, b.pub)->owner);
    pc_rpc_allow_free(al);
    unlink(path);

    const char *bad[][2] = {
        {"%s\n", "expected"},                       /* no role          */
        {"%s root\n", "neither admin nor user"},
        {"%s admin ten-a*\n", "admin takes no"},
        {"%s user\n%s admin\n", "listed twice"},
        {"uid:x user\n", "uid:NUMBER"},
        {"notakey user\n", "neither a public key"},
        {"uid:7 user\nuid:7 user\n", "listed twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), bad[i][0], a.pub, a.pub);
        write_text(path, sizeof(path), "allow", text);
        al = NULL;
        int rc = pc_rpc_allow_load(path, &al, err, sizeof(err));
        cr_assert(rc < 0 && !al, "case %zu accepted", i);
        cr_assert(strstr(err, bad[i][1]), "case %zu: %s", i, err);
        cr_assert(strstr(err, path), "case %zu names no file: %s", i, err);
        unlink(path);
    }
    cr_assert_eq(pc_rpc_allow_load("/nonexistent/allow", &al, err, sizeof(err)),
                 PC_E_NOENT);
}

Test(sec, key_files)
{
    keypair k;
    char path[128], pub[41], sec[41], err[256];
    /* a '#' inside a key is a Z85 digit, not a comment */
    for (int tries = 0; tries < 1000; tries++) {
        mkkey(&k);
        if (strchr(k.pub, '#') || strchr(k.sec, '#'))
            break;
    }
    key_file(path, sizeof(path), &k);
    cr_assert_eq(pc_rpc_keyfile_write(path, k.pub, k.sec), PC_E_BUSY,
                 "never overwrites");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(pc_rpc_keyfile_read(path, pub, sec, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(pub, k.pub);
    cr_assert_str_eq(sec, k.sec);
    chmod(path, 0640);
    cr_assert_eq(pc_rpc_keyfile_read(path, pub, sec, err, sizeof(err)), PC_E_PERM);
    cr_assert(strstr(err, "chmod 600"), "%s", err);
    /* the public key alone may be read from anything */
    cr_assert_eq(pc_rpc_keyfile_read(path, pub, NULL, err, sizeof(err)), 0);
    unlink(path);
    /* a public key file is no key pair */
    tmp_path(path, sizeof(path), "pub");
    cr_assert_eq(pc_rpc_keyfile_write(path, k.pub, NULL), 0);
    cr_assert_eq(pc_rpc_keyfile_read(path, pub, sec, err, sizeof(err)), PC_E_INVAL);
    cr_assert(strstr(err, "no secret-key"), "%s", err);
    unlink(path);
    /* a mismatched pair */
    keypair o;
    mkkey(&o);
    char text[256];
    snprintf(text, sizeof(text), "public-key = %s\nsecret-key = %s\n", k.pub, o.sec);
    write_text(path, sizeof(path), "mix", text);
    chmod(path, 0600);
    cr_assert_eq(pc_rpc_keyfile_read(path, pub, sec, err, sizeof(err)), PC_E_INVAL);
    cr_assert(strstr(err, "not the secret-key's"), "%s", err);
    unlink(path);
}

/* ---- CURVE ------------------------------------------------------------------------ */

Test(sec, curve_no_wrong_right_key)
{
    keypair srv, good, bad;
    mkkey(&srv);
    mkkey(&good);
    mkkey(&bad);
    char allow[512], ap[128], ep[128];
    snprintf(allow, sizeof(allow), "%s user\n", good.pub);
    hd_daemon d;
    start_curve(&d, &srv, allow, ap, sizeof(ap), ep, sizeof(ep));
    cr_assert(hd_log_has(&d, 0, 0, "CURVE on tcp://0.0.0.0", NULL));

    /* no key: the handshake never completes, no reply */
    pc_client *c;
    cr_assert_eq(pc_client_connect(ep, NO_SERVICE_MS, &c), 0);
    RC_EQ(c, pc_client_ping(c), PC_E_TIMEOUT);
    pc_client_close(c);
    /* a key not on the list: refused by ZAP, logged with the key */
    c = connect_key(ep, &srv, &bad, NO_SERVICE_MS);
    RC_EQ(c, pc_client_ping(c), PC_E_TIMEOUT);
    pc_client_close(c);
    cr_assert(hd_log_has(&d, 0, 2000, "refused a client", bad.pub, NULL),
              "no ZAP refusal line with the key");
    /* a listed key against the wrong server key: no service either */
    keypair other;
    mkkey(&other);
    c = connect_key(ep, &other, &good, NO_SERVICE_MS);
    RC_EQ(c, pc_client_ping(c), PC_E_TIMEOUT);
    pc_client_close(c);
    /* the right key */
    c = connect_key(ep, &srv, &good, HD_CALL_MS);
    RC_EQ(c, pc_client_ping(c), 0);
    pc_hello h;
    RC_EQ(c, pc_client_hello(c, &h), 0);
    uint32_t t[8];
    hd_prompt(t, 8, 3);
    put(c, "any", t, 8);
    pc_client_close(c);
    hd_stop(&d);
    unlink(ap);
}

Test(sec, open_tcp_needs_keys_or_knob)
{
    hd_daemon d;
    hd_init(&d);
    hd_spawn(&d, true, (const char *const[]){"--endpoint=tcp://0.0.0.0:*", NULL});
    cr_assert(hd_reap(&d, HD_START_MS), "started on 0.0.0.0 without CURVE");
    cr_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1);
    cr_assert(hd_log_has(&d, 0, 0, "not a loopback address", "insecure_tcp", NULL));
    cr_assert(!hd_exists(d.shm_path), "the pool was made before the refusal");
    hd_unlink_files(&d);

    /* loopback without keys: as before, admin ops allowed */
    char ep[128];
    start_tcp(&d, "127.0.0.1", NULL, ep, sizeof(ep));
    cr_assert(!hd_log_has(&d, 0, 0, "insecure_tcp", NULL));
    pc_client *c;
    uint64_t ev;
    cr_assert_eq(pc_client_connect(ep, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_flush(c, NULL, 0, &ev), 0);
    pc_client_close(c);
    hd_stop(&d);

    start_tcp(&d, "0.0.0.0", (const char *const[]){"--insecure_tcp=true", NULL},
              ep, sizeof(ep));
    cr_assert(hd_log_has(&d, 0, 0, "WARN", "insecure_tcp", "open to the network",
                         NULL));
    cr_assert_eq(pc_client_connect(ep, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_ping(c), 0);
    uint32_t t[8];
    hd_prompt(t, 8, 4);
    put(c, "x", t, 8);
    RC_EQ(c, pc_client_flush(c, NULL, 0, &ev), PC_E_PERM);
    cr_assert(strstr(pc_client_last_error(c), "admin op"), "%s",
              pc_client_last_error(c));
    pc_client_close(c);
    hd_stop(&d);
}

/* ---- roles -------------------------------------------------------------------------- */

static void count_ns(void *ctx, const char *name, uint64_t v)
{
    (void)v;
    if (strncmp(name, "ns.", 3) == 0)
        ++*(int *)ctx;
}

static void ignore_kv(void *ctx, const char *name, const char *value)
{
    (void)ctx;
    (void)name;
    (void)value;
}

Test(sec, roles)
{
    keypair srv, adm, usr;
    mkkey(&srv);
    mkkey(&adm);
    mkkey(&usr);
    char allow[512], ap[128], ep[128];
    snprintf(allow, sizeof(allow), "%s admin\n%s user\n", adm.pub, usr.pub);
    hd_daemon d;
    start_curve(&d, &srv, allow, ap, sizeof(ap), ep, sizeof(ep));
    pc_client *a = connect_key(ep, &srv, &adm, HD_CALL_MS);
    pc_client *u = connect_key(ep, &srv, &usr, HD_CALL_MS);
    uint32_t t[8];
    hd_prompt(t, 8, 5);
    put(u, "ns-u", t, 8); /* a user may cache */
    for (int i = 0; i < 100; i++) { /* enough for an ns.* series of its own */
        pc_client_lookup_result r;
        RC_EQ(u, pc_client_lookup(u, "ns-u", 4, t, 8, 0, 0, &r), 0);
    }
    uint64_t ev;
    RC_EQ(u, pc_client_flush(u, NULL, 0, &ev), PC_E_PERM);
    RC_EQ(u, pc_client_flush(u, "ns-u", 4, &ev), PC_E_PERM);
    RC_EQ(u, pc_client_config_set(u, "lease_ttl_ms", "1000", ignore_kv, NULL),
          PC_E_PERM);
    cr_assert(strstr(pc_client_last_error(u), "admin op"), "%s",
              pc_client_last_error(u));
    RC_EQ(u, pc_client_config_get(u, "lease_ttl_ms", ignore_kv, NULL), PC_E_PERM);
    int64_t check = 1;
    RC_EQ(u, pc_client_stats_check(u, NULL, NULL, &check), PC_E_PERM);
    cr_assert_eq(check, 1, "a refused check wrote a verdict");
    RC_EQ(a, pc_client_stats_check(a, NULL, NULL, &check), 0);
    cr_assert_eq(check, 0, "the admin's check: %lld", (long long)check);
    cr_assert(hd_log_has(&d, 0, 2000, "refused flush from key", usr.pub, NULL));
    int nu = 0, na = 0;
    RC_EQ(u, pc_client_stats(u, count_ns, &nu), 0);
    RC_EQ(a, pc_client_stats(a, count_ns, &na), 0);
    cr_assert_eq(nu, 0, "a user sees %d ns.* rows", nu);
    cr_assert_gt(na, 0, "the admin sees no ns.* rows");

    RC_EQ(a, pc_client_config_set(a, "lease_ttl_ms", "1000", ignore_kv, NULL), 0);
    RC_EQ(a, pc_client_config_get(a, "lease_ttl_ms", ignore_kv, NULL), 0);
    RC_EQ(a, pc_client_flush(a, NULL, 0, &ev), 0);
    cr_assert_eq(ev, 2, "the user's 2 pages");
    pc_client_close(a);
    pc_client_close(u);
    hd_stop(&d);
    unlink(ap);
}

/* ---- tenants ------------------------------------------------------------------------- */

typedef struct tenants {
    hd_daemon d;
    keypair srv, adm, ta, tb;
    char ap[128], ep[128];
} tenants;

static void start_tenants(tenants *x)
{
    mkkey(&x->srv);
    mkkey(&x->adm);
    mkkey(&x->ta);
    mkkey(&x->tb);
    char allow[512];
    snprintf(allow, sizeof(allow), "%s admin\n%s user ten-a*\n%s user ten-b*\n",
             x->adm.pub, x->ta.pub, x->tb.pub);
    start_curve(&x->d, &x->srv, allow, x->ap, sizeof(x->ap), x->ep, sizeof(x->ep));
}

static void stop_tenants(tenants *x)
{
    hd_stop(&x->d);
    unlink(x->ap);
}

Test(sec, tenant_refusals)
{
    tenants x;
    start_tenants(&x);
    pc_client *a = connect_key(x.ep, &x.srv, &x.ta, HD_CALL_MS);
    pc_client *b = connect_key(x.ep, &x.srv, &x.tb, HD_CALL_MS);
    uint32_t t[8], ids[8], canon[8];
    hd_prompt(t, 8, 6);
    put(b, "ten-b", t, 8);
    put(a, "ten-a", t, 8);
    pc_client_lookup_result r;
    /* a in b's namespace: lookup, lookup+pin, lookup+alloc, insert */
    RC_EQ(a, pc_client_lookup(a, "ten-b", 5, t, 8, 0, 0, &r), PC_E_PERM);
    cr_assert(strstr(pc_client_last_error(a), "may not use that namespace"), "%s",
              pc_client_last_error(a));
    RC_EQ(a, pc_client_lookup(a, "ten-b", 5, t, 8, PC_CLIENT_PIN, 0, &r),
          PC_E_PERM);
    RC_EQ(a, pc_client_lookup(a, "ten-b", 5, t, 8, PC_CLIENT_ALLOC, 0, &r),
          PC_E_PERM);
    uint64_t lease = 0;
    RC_EQ(a, pc_client_alloc(a, 2, &lease, ids), 0); /* alloc names no namespace */
    pc_client_insert_result ir;
    RC_EQ(a, pc_client_insert(a, "ten-b", 5, t, 8, ids, lease, 0, canon, &ir),
          PC_E_PERM);
    RC_EQ(a, pc_client_insert(a, "ten-bx", 6, t, 8, ids, lease, 0, canon, &ir),
          PC_E_PERM);
    /* its own namespaces: fine */
    RC_EQ(a, pc_client_lookup(a, "ten-a", 5, t, 8, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 8);
    RC_EQ(a, pc_client_insert(a, "ten-a2", 6, t, 8, ids, lease, PC_CLIENT_RELEASE,
                              canon, &ir), 0);
    /* b still sees its pages whole */
    RC_EQ(b, pc_client_lookup(b, "ten-b", 5, t, 8, 0, 0, &r), 0);
    cr_assert_eq(r.tokens, 8);
    pc_client_close(a);
    pc_client_close(b);
    stop_tenants(&x);
}

/* A raw CURVE DEALER, for byte-level replies. */
static void raw_curve(void **ctx, hd_conn *c, const char *ep, const keypair *srv,
                      const keypair *me)
{
    *ctx = zmq_ctx_new();
    c->sock = zmq_socket(*ctx, ZMQ_DEALER);
    int zero = 0;
    cr_assert_eq(zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero)), 0);
    cr_assert_eq(zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, srv->pub, 40), 0);
    cr_assert_eq(zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, me->pub, 40), 0);
    cr_assert_eq(zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, me->sec, 40), 0);
    cr_assert_eq(zmq_connect(c->sock, ep), 0);
}

static void raw_lookup(hd_conn *c, const char *ns, const uint32_t *t, size_t n,
                       bool pin, hd_reply *r)
{
    hd_buf b;
    hd_buf_init(&b);
    hd_pack_op(&b, "lookup", 77, pin ? 3 : 2);
    pc_pack_kv_str(&b.pk, "ns", ns);
    pc_pack_kv_u32s(&b.pk, "tokens", t, n);
    if (pin)
        pc_pack_kv_bool(&b.pk, "pin", true);
    hd_call_buf(c, &b, r);
    hd_buf_free(&b);
}

/* The state of tenant b that a's probes must not move: its ns.* rows, the
 * tree, pool, leases and cache counters (not rpc.*, which count a's
 * requests, nor uptime and latency). */
static void state_of(pc_client *adm, hd_statmap *s);

static void stat_into(void *ctx, const char *name, uint64_t v)
{
    hd_statmap *s = ctx;
    if (strncmp(name, "rpc.", 4) == 0 || strcmp(name, "uptime_ms") == 0)
        return;
    if (s->n < 512) {
        snprintf(s->name[s->n], sizeof(s->name[0]), "%s", name);
        s->value[s->n++] = v;
    }
}

static void state_of(pc_client *adm, hd_statmap *s)
{
    memset(s, 0, sizeof(*s));
    RC_EQ(adm, pc_client_stats(adm, stat_into, s), 0);
}

static void same_state(const hd_statmap *a, const hd_statmap *b)
{
    cr_assert_eq(a->n, b->n, "%d stats before, %d after", a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        cr_assert_str_eq(a->name[i], b->name[i]);
        cr_assert_eq(a->value[i], b->value[i], "%s moved: %" PRIu64 " -> %" PRIu64,
                     a->name[i], a->value[i], b->value[i]);
    }
}

Test(sec, tenant_refusal_reveals_nothing)
{
    tenants x;
    start_tenants(&x);
    pc_client *adm = connect_key(x.ep, &x.srv, &x.adm, HD_CALL_MS);
    pc_client *b = connect_key(x.ep, &x.srv, &x.tb, HD_CALL_MS);
    uint32_t cached[8], absent[8];
    hd_prompt(cached, 8, 7);
    hd_prompt(absent, 8, 8);
    put(b, "ten-b", cached, 8);
    void *zctx;
    hd_conn a;
    raw_curve(&zctx, &a, x.ep, &x.srv, &x.ta);

    hd_statmap before, after;
    state_of(adm, &before);
    hd_reply r1, r2, r3, r4;
    raw_lookup(&a, "ten-b", cached, 8, false, &r1);
    raw_lookup(&a, "ten-b", absent, 8, false, &r2);
    raw_lookup(&a, "ten-b", cached, 8, true, &r3);
    raw_lookup(&a, "ten-nobody", cached, 8, true, &r4);
    state_of(adm, &after);
    same_state(&before, &after);

    cr_assert_eq(r1.status, PC_E_PERM, "%s", r1.error);
    cr_assert_eq(r1.payload_len, r2.payload_len);
    cr_assert(memcmp(r1.payload, r2.payload, r1.payload_len) == 0,
              "cached and uncached pages give different refusals");
    cr_assert_eq(r3.payload_len, r4.payload_len);
    cr_assert(memcmp(r3.payload, r4.payload, r3.payload_len) == 0,
              "an existing and a never-used namespace give different refusals");
    cr_assert(memcmp(r1.payload, r3.payload, r1.payload_len) == 0);
    hd_reply_free(&r1);
    hd_reply_free(&r2);
    hd_reply_free(&r3);
    hd_reply_free(&r4);
    zmq_close(a.sock);
    zmq_ctx_term(zctx);
    pc_client_close(adm);
    pc_client_close(b);
    stop_tenants(&x);
}

/* "lease 0x1234 unknown..." with the id cut out: the shape of the text. */
static void shape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < len; p++) {
        if (p[0] == '0' && p[1] == 'x') {
            p += 2;
            while (isxdigit((unsigned char)p[0]))
                p++;
            p--;
            out[o++] = '#';
            continue;
        }
        out[o++] = *p;
    }
    out[o] = 0;
}

Test(sec, foreign_lease_is_unknown)
{
    tenants x;
    start_tenants(&x);
    /* two keys that share a namespace pattern would not matter: leases go
     * by identity, not by namespace (a and b here) */
    pc_client *a = connect_key(x.ep, &x.srv, &x.ta, HD_CALL_MS);
    pc_client *b = connect_key(x.ep, &x.srv, &x.tb, HD_CALL_MS);
    uint32_t t[8], ids[8], canon[8];
    hd_prompt(t, 8, 9);
    uint64_t la = 0;
    RC_EQ(a, pc_client_alloc(a, 2, &la, ids), 0);
    uint64_t unknown = la ^ 0x5a5a5a5a5a5a5a5aull;
    char want[256], got[256];

    RC_EQ(b, pc_client_release(b, unknown), PC_E_LEASE);
    shape(pc_client_last_error(b), want, sizeof(want));
    RC_EQ(b, pc_client_release(b, la), PC_E_LEASE);
    shape(pc_client_last_error(b), got, sizeof(got));
    cr_assert_str_eq(got, want);
    uint64_t l2 = la;
    uint32_t more[1];
    RC_EQ(b, pc_client_alloc(b, 1, &l2, more), PC_E_LEASE); /* renew/extend */
    shape(pc_client_last_error(b), got, sizeof(got));
    uint64_t u2 = unknown;
    RC_EQ(b, pc_client_alloc(b, 1, &u2, more), PC_E_LEASE);
    shape(pc_client_last_error(b), want, sizeof(want));
    cr_assert_str_eq(got, want);
    pc_client_lookup_result r;
    RC_EQ(b, pc_client_lookup(b, "ten-b", 5, t, 8, PC_CLIENT_PIN, la, &r),
          PC_E_LEASE);
    pc_client_insert_result ir;
    RC_EQ(b, pc_client_insert(b, "ten-b", 5, t, 8, ids, la, 0, canon, &ir),
          PC_E_LEASE);
    /* the owner: its lease is whole and its own */
    RC_EQ(a, pc_client_insert(a, "ten-a", 5, t, 8, ids, la, PC_CLIENT_RELEASE,
                              canon, &ir), 0);
    cr_assert_eq(ir.inserted_pages, 2);
    pc_client *adm = connect_key(x.ep, &x.srv, &x.adm, HD_CALL_MS);
    hd_statmap s;
    state_of(adm, &s);
    cr_assert_eq(hd_stat_req(&s, "leases.live"), 0);
    pc_client_close(adm);
    pc_client_close(a);
    pc_client_close(b);
    stop_tenants(&x);
}

Test(sec, allow_list_reload)
{
    keypair srv, adm, usr, newk;
    mkkey(&srv);
    mkkey(&adm);
    mkkey(&usr);
    mkkey(&newk);
    char allow[512], ap[128], ep[128], bad[128], next[128];
    snprintf(allow, sizeof(allow), "%s admin\n%s user\n", adm.pub, usr.pub);
    hd_daemon d;
    start_curve(&d, &srv, allow, ap, sizeof(ap), ep, sizeof(ep));
    pc_client *a = connect_key(ep, &srv, &adm, HD_CALL_MS);
    pc_client *u = connect_key(ep, &srv, &usr, HD_CALL_MS);
    RC_EQ(u, pc_client_ping(u), 0);
    RC_EQ(u, pc_client_stats(u, count_ns, &(int){0}), 0);

    /* a file that does not parse: refused whole, the list stays */
    write_text(bad, sizeof(bad), "bad", "this is not a key\n");
    RC_EQ(a, pc_client_config_set(a, "allow_list_file", bad, ignore_kv, NULL),
          PC_E_INVAL);
    cr_assert(strstr(pc_client_last_error(a), "neither a public key"), "%s",
              pc_client_last_error(a));
    RC_EQ(u, pc_client_stats(u, count_ns, &(int){0}), 0);

    /* the user out, a new key in */
    char text[512];
    snprintf(text, sizeof(text), "%s admin\n%s user\n", adm.pub, newk.pub);
    write_text(next, sizeof(next), "next", text);
    RC_EQ(a, pc_client_config_set(a, "allow_list_file", next, ignore_kv, NULL), 0);
    RC_EQ(u, pc_client_stats(u, count_ns, &(int){0}), PC_E_PERM);
    cr_assert(strstr(pc_client_last_error(u), "no longer on"), "%s",
              pc_client_last_error(u));
    pc_client_close(u);
    u = connect_key(ep, &srv, &usr, NO_SERVICE_MS);
    RC_EQ(u, pc_client_ping(u), PC_E_TIMEOUT);
    pc_client_close(u);
    pc_client *n = connect_key(ep, &srv, &newk, HD_CALL_MS);
    RC_EQ(n, pc_client_ping(n), 0);
    RC_EQ(n, pc_client_stats(n, count_ns, &(int){0}), 0);

    /* SIGHUP, no --config file: the file in force is read again; garbage
     * is refused (the list stays), a new text applies */
    hd_write_file(next, "garbage\n");
    size_t from = hd_log_size(&d);
    cr_assert_eq(kill(d.pid, SIGHUP), 0);
    cr_assert(hd_log_has(&d, from, 3000, "SIGHUP reload refused", next, NULL));
    RC_EQ(n, pc_client_stats(n, count_ns, &(int){0}), 0);
    snprintf(text, sizeof(text), "%s admin\n", adm.pub);
    hd_write_file(next, text);
    from = hd_log_size(&d);
    cr_assert_eq(kill(d.pid, SIGHUP), 0);
    cr_assert(hd_log_has(&d, from, 3000, "1 entry in force", NULL));
    RC_EQ(n, pc_client_stats(n, count_ns, &(int){0}), PC_E_PERM);
    pc_client_close(n);
    pc_client_close(a);
    hd_stop(&d);
    unlink(ap);
    unlink(bad);
    unlink(next);
}

/* ---- ipc uids (root) ------------------------------------------------------------------ */

typedef struct child_args {
    const char *ep;
} child_args;

/* As nobody: ping works; flush, config set, another namespace refused;
 * the own namespace works.  Exit 0 on all as expected, else the step. */
static int as_nobody(const child_args *ca)
{
    if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
        return 100;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pc_client *c;
    if (pc_client_connect(ca->ep, HD_CALL_MS, &c))
        return 101;
    uint64_t ev;
    uint32_t t[8];
    hd_prompt(t, 8, 10);
    pc_client_lookup_result r;
    int step = pc_client_ping(c) != 0                                     ? 1
               : pc_client_flush(c, NULL, 0, &ev) != PC_E_PERM            ? 2
               : pc_client_config_set(c, "lease_ttl_ms", "1000", ignore_kv,
                                      NULL) != PC_E_PERM                  ? 3
               : pc_client_lookup(c, "other", 5, t, 8, 0, 0, &r) !=
                         PC_E_PERM                                        ? 4
               : pc_client_lookup(c, "mine/1", 6, t, 8, 0, 0, &r) != 0 ? 5
                                                                          : 0;
    pc_client_close(c);
    return step;
}

Test(sec, ipc_uids)
{
    if (geteuid() != 0)
        cr_skip_test("needs root: acts as another uid through fork + setuid");
    char ap[128], conf[200];
    write_text(ap, sizeof(ap), "allow", "uid:65534 user mine/*\n");
    snprintf(conf, sizeof(conf), "--allow_list_file=%s", ap);
    hd_daemon d;
    hd_start(&d, "--socket_mode=0666", conf, NULL);
    child_args ca = {d.endpoint};
    hd_quiesce();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        _exit(as_nobody(&ca));
    int st;
    cr_assert(hd_wait_child(pid, 20000, &st), "the child hangs");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "as uid nobody: step %d went otherwise", WEXITSTATUS(st));
    cr_assert(hd_log_has(&d, 0, 2000, "refused flush from uid 65534", NULL));
    /* root: admin */
    pc_client *c;
    uint64_t ev;
    cr_assert_eq(pc_client_connect(d.endpoint, HD_CALL_MS, &c), 0);
    RC_EQ(c, pc_client_flush(c, NULL, 0, &ev), 0);
    RC_EQ(c, pc_client_config_set(c, "lease_ttl_ms", "1000", ignore_kv, NULL), 0);
    pc_client_close(c);
    hd_stop(&d);
    unlink(ap);
}

/* ---- prefixcache-cli: keygen and the CURVE flags ---------------------------------- */

/* Run the CLI with args (NULL-ended); its exit status, stdout into out. */
static int cli(char *out, size_t outlen, const char *const *args)
{
    const char *bin = hd_env("PREFIXCACHE_CLI");
    char outp[128];
    snprintf(outp, sizeof(outp), "/tmp/pc-sec-%ld-cli.out", (long)getpid());
    const char *argv[24];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDWR);
        if (o < 0 || null < 0)
            _exit(126);
        dup2(null, 0), dup2(o, 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st;
    cr_assert(hd_wait_child(pid, 20000, &st), "the CLI hung");
    char *text = hd_read_file(outp, NULL);
    snprintf(out, outlen, "%s", text);
    free(text);
    unlink(outp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define CLI(out, ...) cli((out), sizeof(out), (const char *const[]){__VA_ARGS__, NULL})

Test(sec, cli_keygen_and_curve_flags)
{
    char srv[128], usr[128], srvpub[160], usrpub[160], out[4096];
    tmp_path(srv, sizeof(srv), "srv");
    tmp_path(usr, sizeof(usr), "usr");
    snprintf(srvpub, sizeof(srvpub), "%s.pub", srv);
    snprintf(usrpub, sizeof(usrpub), "%s.pub", usr);
    unlink(srvpub);
    unlink(usrpub);
    cr_assert_eq(CLI(out, "keygen", srv), 0);
    cr_assert_eq(CLI(out, "keygen", usr), 0);
    cr_assert_eq(strlen(out), 41, "keygen prints the public key: '%s'", out);
    cr_assert_neq(CLI(out, "keygen", usr), 0, "keygen overwrote a key");
    struct stat st;
    cr_assert_eq(stat(srv, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(stat(srvpub, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
    char upub[41], spub[41], err[256];
    cr_assert_eq(pc_rpc_keyfile_read(usrpub, upub, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(pc_rpc_keyfile_read(srvpub, spub, NULL, err, sizeof(err)), 0, "%s", err);

    char allow[128], text[256], a1[200], a2[200], ep[128];
    snprintf(text, sizeof(text), "%s user\n", upub);
    write_text(allow, sizeof(allow), "allow", text);
    snprintf(a1, sizeof(a1), "--curve_key_file=%s", srv);
    snprintf(a2, sizeof(a2), "--allow_list_file=%s", allow);
    hd_daemon d;
    start_tcp(&d, "0.0.0.0", (const char *const[]){a1, a2, NULL}, ep, sizeof(ep));
    cr_assert(hd_log_has(&d, 0, 0, spub, NULL), "the log names no server key");
    cr_assert_eq(CLI(out, "--endpoint", ep, "--server-key", srvpub, "--client-key",
                     usr, "ping"), 0);
    cr_assert_eq(CLI(out, "--endpoint", ep, "--server-key", srvpub, "--client-key",
                     usr, "flush"), 1, "a user flushed");
    cr_assert_eq(CLI(out, "--endpoint", ep, "--timeout", "500", "ping"), 1);
    cr_assert_eq(CLI(out, "--endpoint", ep, "--server-key", srvpub, "ping"), 2,
                 "one key flag alone is a usage error");
    /* a key pair file others may read is refused before connecting */
    chmod(usr, 0644);
    cr_assert_eq(CLI(out, "--endpoint", ep, "--server-key", srvpub, "--client-key",
                     usr, "ping"), 1);
    hd_stop(&d);
    unlink(srv);
    unlink(usr);
    unlink(srvpub);
    unlink(usrpub);
    unlink(allow);
}

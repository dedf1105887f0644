/*
 * daemon/daemon.c - prefixcached's life: create the cache and the server
 * from a pcd_config, serve, reload on SIGHUP, stop on SIGTERM/SIGINT.
 *
 *   main ─► pcd_config_load ─► pcd_daemon_create ─► pcd_daemon_run ─► destroy
 *                                 │ cache + pool          │
 *                                 │ server (bind, lock)   │ loop:
 *                                 ▼                       │  flags? (signals)
 *                              INFO: where, what layout   │  pc_rpc_server_poll(no timeout)
 *                                                         ▼
 *                 SIGHUP flag ─► pcd_daemon_reload: re-read file + options,
 *                                apply reloadable knobs, log each change
 *                 SIGTERM flag ─► leave the loop; destroy removes the socket,
 *                                 its lock file and the shm object
 *
 * With metrics_listen, a libmicrohttpd listener (metrics.c) is created
 * before the server and handed to it as its watch fd: scrapes are served
 * by pc_rpc_server_poll on this same thread, between requests.
 *
 * Signal handlers only set sig_atomic_t flags: everything else (logging,
 * re-reading files, touching the cache) happens in the loop, on the one
 * thread that owns all state.  A handler also writes a byte to a pipe that
 * the server polls, so the loop wakes at once wherever the signal landed,
 * and poll needs no timeout (100 ms only if the pipe could not be made).
 *
 * Start-up after a crash: a daemon killed with -9 leaves its pool object,
 * its socket file and its lock file behind.  The next start on the same
 * endpoint finds all three under the same names (the default pool name is
 * derived from the endpoint) and, since the dead daemon's locks died with
 * it, replaces them (blockpool/host.c, rpc/server.c): nothing is kept.
 */
#include "daemon/daemon.h"
#include "rpc/client.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct pcd_daemon {
    pcd_config cfg;
    const pcd_cmdline *cl;
    pc_cache *cache;
    pc_rpc_server *srv;
    pcd_metrics *metrics; /* NULL: metrics_listen off */
    pc_rpc_events *ev;           /* KV events; NULL: off                 */
    volatile sig_atomic_t stop;
};

static volatile sig_atomic_t g_stop_sig, g_hup;
/* The self-pipe: the handler sets its flag, then writes a byte, so that a
 * signal landing just before the loop goes to sleep still wakes it (the
 * loop sleeps without a timeout). */
static int g_wake[2] = {-1, -1};

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        g_hup = 1;
    else
        g_stop_sig = sig;
    int saved = errno;
    if (g_wake[1] >= 0 && write(g_wake[1], "", 1) < 0) {
        /* full pipe: a wakeup is pending anyway */
    }
    errno = saved;
}

/* Both ends at fds >= 3, so that 0 (a closed stdin reused) never stands
 * for "no wakeup fd" by mistake. */
static int wake_pipe(void)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (fds[i] < 3) {
            int hi = fcntl(fds[i], F_DUPFD_CLOEXEC, 3); /* O_NONBLOCK is shared */
            close(fds[i]);
            fds[i] = hi;
        }
    if (fds[0] < 0 || fds[1] < 0) {
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        return -1;
    }
    g_wake[0] = fds[0];
    g_wake[1] = fds[1];
    return 0;
}

int pcd_signals_install(void)
{
    if (g_wake[0] < 0 && wake_pipe() != 0)
        return PC_E_IO;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: zmq_poll returns EINTR and the loop sees the flag now. */
    if (sigaction(SIGHUP, &sa, NULL) || sigaction(SIGTERM, &sa, NULL) ||
        sigaction(SIGINT, &sa, NULL))
        return PC_E_IO;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ---- config <-> cache ------------------------------------------------------ */

static void cache_limits(const pcd_config *c, pc_cache_config *cc)
{
    cc->lease_ttl_ms = c->lease_ttl_ms;
    cc->max_leases = (uint32_t)c->max_leases;
    cc->max_pins_per_lease = (uint32_t)c->max_pins_per_lease;
    cc->max_blocks_per_lease = (uint32_t)c->max_blocks_per_lease;
    cc->max_tree_nodes = c->max_tree_nodes;
    cc->low_watermark = c->low_watermark;
    cc->high_watermark = c->high_watermark;
    cc->eviction_policy = (pc_radix_policy)c->eviction_policy;
}

static int prio_set(void *ctx, const char *ns, size_t len, int32_t prio)
{
    return pc_cache_set_ns_priority(ctx, ns, len, prio);
}

static int prio_count(void *ctx, const char *ns, size_t len, int32_t prio)
{
    (void)ns, (void)len, (void)prio;
    ++*(uint32_t *)ctx;
    return 0;
}

/* Room for c's namespace priorities (the one step that can fail: run it
 * before changing anything). */
static int reserve_priorities(pcd_daemon *d, const pcd_config *c, char *err,
                              size_t errlen)
{
    uint32_t n = 0;
    int rc = pcd_ns_priorities_parse(c->namespace_priorities, prio_count, &n,
                                     err, errlen);
    if (rc == 0 && (rc = pc_cache_reserve_ns_priorities(d->cache, n)))
        snprintf(err, errlen, "namespace_priorities: %s", pc_strerror(rc));
    return rc;
}

/* The tree's namespace priorities become exactly the config's; cannot
 * fail after reserve_priorities. */
static void apply_priorities(pcd_daemon *d, const pcd_config *c)
{
    char err[256];
    pc_cache_clear_ns_priorities(d->cache);
    int rc = pcd_ns_priorities_parse(c->namespace_priorities, prio_set, d->cache,
                                     err, sizeof(err));
    assert(rc == 0); /* checked by pcd_config_check, room reserved */
    (void)rc;
}

/*
 * Apply next's reloadable knobs (the others must equal the running ones,
 * or are ignored with a warning).  All or nothing: the merged config is
 * checked and handed to the cache before anything is committed or logged.
 */
static int apply_rest(pcd_daemon *d, const pcd_config *next, const char *why,
                      char *err, size_t errlen);

/* The allow-list is re-read on every reload (like the pins' files), parsed
 * whole before anything else changes, and swapped in only when the rest of
 * the reload succeeds: a file that does not parse keeps the list in force. */
static int apply(pcd_daemon *d, const pcd_config *next, const char *why,
                 char *err, size_t errlen)
{
    pc_rpc_allow *allow = NULL;
    int rc;
    if (next->allow_list_file[0] &&
        (rc = pc_rpc_allow_load(next->allow_list_file, &allow, err, errlen)))
        return rc;
    if ((rc = apply_rest(d, next, why, err, errlen)) < 0) {
        pc_rpc_allow_free(allow);
        return rc;
    }
    if (allow || d->cfg.allow_list_file[0] || next->allow_list_file[0]) {
        if (!allow)
            pcd_log(PC_LOG_WARN, "%s: no allow_list_file: no CURVE client is "
                    "let in, no uid has a role or namespaces", why);
        else
            pcd_log(PC_LOG_INFO, "%s: allow_list_file %s: %zu entr%s in force",
                    why, next->allow_list_file, pc_rpc_allow_count(allow),
                    pc_rpc_allow_count(allow) == 1 ? "y" : "ies");
        pc_rpc_server_set_allow(d->srv, allow);
    }
    return rc;
}

static int apply_rest(pcd_daemon *d, const pcd_config *next, const char *why,
                      char *err, size_t errlen)
{
    pcd_config m = d->cfg;
    pcd_reload r;
    int rc = pcd_config_reload(&m, next, false, &r, err, errlen);
    if (rc < 0)
        return rc;
    /* First (it can fail on a file): the pins' files are read again on
     * every reload, changed or not; nothing else has changed yet. */
    if ((m.pinned_prefixes[0] || d->cfg.pinned_prefixes[0]) &&
        (rc = pcd_pinned_prefixes_apply(d->cache, m.pinned_prefixes, err,
                                        errlen)))
        return rc;
    /* The quotas next (refused whole: a reserve too big for the pool);
     * a refusal here leaves the pins just applied: the same files. */
    if (strcmp(m.namespace_quotas, d->cfg.namespace_quotas) != 0 &&
        (rc = pcd_ns_quotas_apply(d->cache, m.namespace_quotas, err, errlen)))
        return rc;
    if (r.n_applied == 0 && r.n_ignored == 0) {
        pcd_log(PC_LOG_INFO, "%s: configuration unchanged", why);
        return 0;
    }
    pc_cache_config cc;
    pc_cache_config_defaults(&cc);
    cache_limits(&m, &cc);
    if ((rc = reserve_priorities(d, &m, err, errlen)))
        return rc;
    if ((rc = pc_cache_set_limits(d->cache, &cc))) {
        snprintf(err, errlen, "the cache refused the new limits: %s",
                 pc_strerror(rc));
        return rc;
    }
    apply_priorities(d, &m);
    /* Log under the more verbose of the old and new levels, so that a
     * change of log_level itself is seen. */
    int lvl = d->cfg.log_level > m.log_level ? d->cfg.log_level : m.log_level;
    pcd_log_set_level(lvl);
    pcd_log(PC_LOG_INFO, "%s: %u knob%s applied, %u ignored (not reloadable)",
            why, r.n_applied, r.n_applied == 1 ? "" : "s", r.n_ignored);
    rc = pcd_config_reload(&d->cfg, next, true, NULL, err, errlen);
    assert(rc >= 0); /* the very check that passed above */
    pcd_log_set_level(d->cfg.log_level);
    pc_rpc_server_set_log_level(d->srv, d->cfg.log_level);
    pcd_log_set_utc(d->cfg.log_utc);
    pc_rpc_events_set_interval(d->ev, (uint32_t)d->cfg.kv_events_interval_ms);
    return 0;
}

int pcd_daemon_reload(pcd_daemon *d)
{
    char err[512];
    if (!d)
        return PC_E_INVAL;
    pcd_config next = d->cfg;
    int rc = 0;
    if (!d->cl || !d->cl->config_path) /* the files it names, all the same */
        pcd_log(PC_LOG_INFO, "SIGHUP: no --config file to re-read; re-reading "
                "the files the configuration names (allow_list_file, "
                "pinned_prefixes)");
    else
        rc = pcd_config_load(&next, d->cl, err, sizeof(err));
    if (rc == 0)
        rc = apply(d, &next, "SIGHUP reload", err, sizeof(err));
    if (rc < 0)
        pcd_log(PC_LOG_ERROR, "SIGHUP reload refused, the running "
                "configuration stays: %s", err);
    return rc < 0 ? rc : 0;
}

int pcd_daemon_config_set(pcd_daemon *d, const msgpack_object *set, char *err,
                          size_t errlen)
{
    if (!d || !set || set->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "config set: expected a map of name to value");
        return PC_E_BADMSG;
    }
    pcd_config next = d->cfg;
    char msg[256];
    for (uint32_t i = 0; i < set->via.map.size; i++) {
        const msgpack_object *key = &set->via.map.ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR) {
            snprintf(err, errlen, "config set: a knob name is not a string");
            return PC_E_BADMSG;
        }
        const char *name = key->via.str.ptr;
        uint32_t len = key->via.str.size;
        const pcd_knob *k = pcd_knob_find(name, len);
        int rc;
        if (!k) {
            rc = pcd_config_set_object(&next, name, len, &set->via.map.ptr[i].val,
                                       msg, sizeof(msg)); /* says "unknown" */
            snprintf(err, errlen, "config set: %s", msg);
            return rc;
        }
        /* A knob set twice is refused, not resolved by order.  The keys
         * before this one are distinct known knobs, so this stays short. */
        for (uint32_t j = 0; j < i; j++)
            if (pcd_knob_find(set->via.map.ptr[j].key.via.str.ptr,
                              set->via.map.ptr[j].key.via.str.size) == k) {
                snprintf(err, errlen, "config set: %s is given twice", k->name);
                return PC_E_INVAL;
            }
        if (!k->reloadable) {
            snprintf(err, errlen, "config set: %s is not reloadable (change it "
                     "in the config file or on the command line and restart "
                     "prefixcached)", k->name);
            return PC_E_PERM;
        }
        if ((rc = pcd_config_set_object(&next, name, len,
                                        &set->via.map.ptr[i].val, msg,
                                        sizeof(msg)))) {
            snprintf(err, errlen, "config set: %s", msg);
            return rc;
        }
    }
    int rc = apply(d, &next, "config set (rpc)", msg, sizeof(msg));
    if (rc < 0) {
        snprintf(err, errlen, "config set: %s", msg);
        return rc;
    }
    return 0;
}

static int hook_get(void *ctx, const msgpack_object *names, msgpack_packer *pk,
                    char *err, size_t errlen)
{
    return pcd_config_pack(&((pcd_daemon *)ctx)->cfg, names, pk, err, errlen);
}

static int hook_set(void *ctx, const msgpack_object *set, char *err, size_t errlen)
{
    return pcd_daemon_config_set(ctx, set, err, errlen);
}

/* ---- start-up: names and owners --------------------------------------------- */

/* A group knob ("" = leave the group alone) as a gid the daemon may give
 * files to: it must exist (or be a number) and be ours, unless we are root. */
static int resolve_group(const char *knob, const char *name, bool *set,
                         uint32_t *gid, char *err, size_t errlen)
{
    *set = false;
    if (!name[0])
        return 0;
    char *buf = NULL, *end;
    struct group gr, *res = NULL;
    int e = ERANGE;
    for (size_t cap = 4096; e == ERANGE && cap <= (1u << 24); cap *= 4) {
        char *b = realloc(buf, cap); /* big groups need more than 4 KiB */
        if (!b)
            break;
        buf = b;
        e = getgrnam_r(name, &gr, buf, cap, &res);
    }
    bool found = e == 0 && res;
    if (found)
        *gid = (uint32_t)res->gr_gid;
    free(buf);
    if (!found) {
        errno = 0;
        unsigned long v = strtoul(name, &end, 10);
        if (name[0] < '0' || name[0] > '9' || *end || errno || v >= UINT32_MAX) {
            snprintf(err, errlen, "%s: there is no group '%s'", knob, name);
            return PC_E_INVAL;
        }
        *gid = (uint32_t)v;
    }
    *set = true;
    if (geteuid() == 0 || *gid == (uint32_t)getegid())
        return 0;
    int n = getgroups(0, NULL);
    gid_t *mine = n > 0 ? calloc((size_t)n, sizeof(*mine)) : NULL;
    n = mine ? getgroups(n, mine) : 0;
    bool member = false;
    for (int i = 0; i < n; i++)
        member |= (uint32_t)mine[i] == *gid;
    free(mine);
    if (member)
        return 0;
    snprintf(err, errlen, "%s: prefixcached runs as uid %lu, which is not in "
             "group '%s' (gid %lu), so it cannot give files to it", knob,
             (unsigned long)geteuid(), name, (unsigned long)*gid);
    return PC_E_PERM;
}

/* The default pool name: the same on every start on one endpoint (so a
 * restart finds a crashed predecessor's pool), per user (two users' daemons
 * never meet).  FNV-1a: any stable hash does; this one needs no library. */
static void default_pool_name(const char *endpoint, char *buf, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)endpoint; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(buf, len, "/prefixcache-%lu-%016" PRIx64, (unsigned long)geteuid(), h);
}

static void pool_error(int rc, int os_errno, const char *name,
                       const char *endpoint, char *err, size_t errlen)
{
    uint32_t uid = 0;
    if (rc == PC_E_BUSY)
        snprintf(err, errlen, "cannot create the pool: shared memory %s is in "
                 "use by a live prefixcached (it holds the pool's lock; the "
                 "one on %s? stop it first, or pick another shm_name)", name,
                 endpoint);
    else if (rc == PC_E_PERM && pc_pool_shm_owner(name, &uid) == 0 &&
             uid != (uint32_t)geteuid())
        snprintf(err, errlen, "cannot create the pool: shared memory %s "
                 "belongs to uid %lu, not to us (uid %lu); not touching it "
                 "(remove it as its owner, or pick another shm_name)", name,
                 (unsigned long)uid, (unsigned long)geteuid());
    else if (rc == PC_E_PERM)
        snprintf(err, errlen, "cannot create the pool: %s exists and is not "
                 "a shared-memory object of ours; not touching it", name);
    else if (rc == PC_E_IO || rc == PC_E_NOMEM || rc == PC_E_PERM)
        snprintf(err, errlen, "cannot create the pool %s: %s (%s)", name,
                 pc_strerror(rc), strerror(os_errno)); /* the OS's cause */
    else
        snprintf(err, errlen, "cannot create the pool %s: %s", name,
                 pc_strerror(rc));
}

/* Create the cache and its pool; a default pool name squatted by another
 * user gives way to an unpredictable one (a squatter must not stop us). */
static int create_cache(pcd_daemon *d, pc_cache_config *cc, char *err,
                        size_t errlen)
{
    const pcd_config *cfg = &d->cfg;
    char name[PC_POOL_SHM_NAME_MAX + 1];
    bool host = cfg->pool_backend == PC_POOL_HOST, dflt = !cfg->shm_name[0];
    if (dflt)
        default_pool_name(cfg->endpoint, name, sizeof(name));
    else
        snprintf(name, sizeof(name), "%s", cfg->shm_name);
    cc->pool.shm_name = name;
    int rc = pc_cache_create(cc, &d->cache), os_errno = errno;
    uint32_t uid;
    if (rc == PC_E_PERM && host && dflt && pc_pool_shm_owner(name, &uid) == 0 &&
        uid != (uint32_t)geteuid()) {
        pcd_log(PC_LOG_WARN, "the default pool name %s belongs to uid %lu, not "
                "to us: someone squats it; using an unpredictable name instead "
                "(a restart will not find this pool to reclaim it after a "
                "crash)", name, (unsigned long)uid);
        cc->pool.shm_name = NULL; /* the pool draws a random one */
        rc = pc_cache_create(cc, &d->cache);
        os_errno = errno;
    }
    if (rc && pc_cache_create_why()[0]) { /* the device, not the shm */
        snprintf(err, errlen, "cannot create the pool: %s",
                 pc_cache_create_why());
        return rc;
    }
    if (rc) {
        pool_error(rc, os_errno, cc->pool.shm_name ? name : "(a random name)",
                   cfg->endpoint, err, errlen);
        return rc;
    }
    pc_cache_desc desc;
    pc_cache_describe(d->cache, &desc);
    if (desc.shm_reclaimed)
        pcd_log(PC_LOG_WARN, "pool %s was left by a prefixcached that is gone "
                "(killed or crashed: nobody held its lock): replaced by a fresh, "
                "empty pool; engines must say hello again", desc.shm_name);
    return 0;
}

/* ---- life cycle ------------------------------------------------------------ */

static void log_startup(const pcd_daemon *d)
{
    const pcd_config *c = &d->cfg;
    pc_cache_desc desc;
    pc_cache_describe(d->cache, &desc);
    const pc_pool_layout *l = &desc.layout;
    char total[32], block[32], tok[32], msg[32];
    uint32_t cap = desc.capacity;
    pcd_format_size((uint64_t)cap * l->block_bytes, total, sizeof(total));
    pcd_format_size(l->block_bytes, block, sizeof(block));
    pcd_format_size(l->token_bytes, tok, sizeof(tok));
    pcd_format_size(c->max_msg_bytes, msg, sizeof(msg));

    pcd_log(PC_LOG_INFO, "prefixcached %s (protocol %d.%d) pid %ld listening on %s",
            PCD_VERSION, PC_PROTO_MAJOR, PC_PROTO_MINOR, (long)getpid(),
            pc_rpc_server_endpoint(d->srv));
    if (desc.shm_name)
        pcd_log(PC_LOG_INFO, "pool: host shared memory %s, %u blocks x %s = %s "
                "(mapped, resident only as engines write)", desc.shm_name, cap,
                block, total);
    else if (desc.device_ops)
        pcd_log(PC_LOG_INFO, "pool: device memory (cuda backend on %s device "
                "%d), %u blocks x %s = %s, exported to engines by IPC handle",
                desc.device_ops, (int)c->gpu_device, cap, block, total);
    else
        pcd_log(PC_LOG_INFO, "pool: index only (backend none), %u block ids "
                "for blocks of %s", cap, block);
    if (desc.tier2) {
        char t2[32];
        pcd_format_size(desc.tier2_pages * l->block_bytes, t2, sizeof(t2));
        pcd_log(PC_LOG_INFO, "tier 2: %s, %" PRIu64 " pages = %s%s%s (evicted "
                "pages go there; lookup with promote brings them back)",
                strcmp(desc.tier2, "file") == 0 ? "memory-mapped file"
                                                 : "page-locked host memory",
                desc.tier2_pages, t2,
                strcmp(desc.tier2, "file") == 0 ? " in " : "",
                strcmp(desc.tier2, "file") == 0
                    ? (c->tier2_path[0] ? c->tier2_path : "/var/tmp") : "");
    }
    pcd_log(PC_LOG_INFO, "layout: %u layers x %u kv_heads x %u head_dim, %s, "
            "%u tokens/page: %s per token, block = [layer][K|V][token][kv_head]"
            "[head_dim]", l->layers, l->kv_heads, l->head_dim,
            pc_dtype_name(l->dtype), l->page_tokens, tok);
    char wm[96] = "off";
    if (c->low_watermark || c->high_watermark)
        snprintf(wm, sizeof(wm), "evict below %" PRIu64 " free blocks up to %" PRIu64,
                 c->low_watermark, c->high_watermark);
    pcd_log(PC_LOG_INFO, "leases: ttl %" PRIu64 " ms, at most %" PRIu64
            " (%" PRIu64 " pins, %" PRIu64 " blocks each); watermarks %s; "
            "requests up to %s, %" PRIu64 " tokens",
            c->lease_ttl_ms, c->max_leases, c->max_pins_per_lease,
            c->max_blocks_per_lease, wm, msg, c->max_tokens);
    pcd_log(PC_LOG_INFO, "eviction: %s%s%s",
            pc_cache_policy_name((pc_radix_policy)c->eviction_policy),
            c->namespace_priorities[0] ? ", namespace priorities " : "",
            c->namespace_priorities);
    if (d->cl && (d->cl->config_path || d->cl->n_over))
        pcd_log(PC_LOG_INFO, "configuration: %s%s%zu command-line option%s",
                d->cl->config_path ? d->cl->config_path : "built-in defaults",
                " + ", d->cl->n_over, d->cl->n_over == 1 ? "" : "s");
    else
        pcd_log(PC_LOG_INFO, "configuration: built-in defaults");
    if (d->metrics) {
        const char *a = pcd_metrics_addr(d->metrics);
        pcd_log(strncmp(a, "127.", 4) == 0 ? PC_LOG_INFO : PC_LOG_WARN,
                "metrics: http://%s:%u/metrics%s", a,
                (unsigned)pcd_metrics_port(d->metrics),
                strncmp(a, "127.", 4) == 0 ? "" : " is reachable beyond this "
                "machine (not loopback): it names namespaces and load; "
                "firewall it or use 127.0.0.1");
    }
}

/* KV events (kv_events_*): the publisher, fed by the cache's hook.  Its
 * events thread starts with our signals blocked, like libzmq's. */
static int start_events(pcd_daemon *d, char *err, size_t errlen)
{
    const pcd_config *c = &d->cfg;
    if (!c->kv_events_endpoint[0])
        return 0;
    char host[256] = "localhost", topic[PCD_ENDPOINT_MAX * 2];
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "localhost");
    const char *t = c->kv_events_topic, *h = strstr(t, "<hostname>");
    if (h)
        snprintf(topic, sizeof(topic), "%.*s%s%s", (int)(h - t), t, host,
                 h + strlen("<hostname>"));
    else
        snprintf(topic, sizeof(topic), "%s", t);
    char why[512] = "";
    pc_rpc_events_config ec = {
        .endpoint = c->kv_events_endpoint, .topic = topic,
        .replay_endpoint = c->kv_events_replay_endpoint,
        .buffer = (uint32_t)c->kv_events_buffer,
        .buffer_bytes = c->kv_events_buffer_bytes,
        .interval_ms = (uint32_t)c->kv_events_interval_ms,
        .format = c->kv_events_format, .dp_rank = -1,
        .err = why, .errlen = sizeof(why),
    };
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pc_rpc_events_create(&ec, &d->ev);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        snprintf(err, errlen, "kv_events: %s", why[0] ? why : pc_strerror(rc));
        return rc;
    }
    pc_rpc_events_attach(d->ev, d->cache);
    pc_rpc_server_set_events(d->srv, d->ev);
    pcd_log(PC_LOG_INFO, "kv events: publishing on %s (topic %s, %s format), "
            "replay %s", pc_rpc_events_endpoint(d->ev), topic,
            pc_rpc_events_format_name(c->kv_events_format),
            c->kv_events_replay_endpoint[0]
                ? pc_rpc_events_replay_endpoint(d->ev) : "off");
    return 0;
}

int pcd_daemon_create(const pcd_config *cfg, const pcd_cmdline *cl,
                      pcd_daemon **out, char *err, size_t errlen)
{
    if (!out || !cfg) {
        snprintf(err, errlen, "invalid argument");
        return PC_E_INVAL;
    }
    *out = NULL;
    char msg[256];
    int rc = pcd_config_check(cfg, NULL, msg, sizeof(msg));
    if (rc) {
        snprintf(err, errlen, "configuration: %s", msg);
        return rc;
    }
    pcd_daemon *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return PC_E_NOMEM;
    }
    d->cfg = *cfg;
    d->cl = cl;
    pcd_log_set_level(cfg->log_level);
    pcd_log_set_utc(cfg->log_utc);

    pc_cache_config cc;
    pc_cache_config_defaults(&cc);
    cache_limits(cfg, &cc);
    rc = pc_pool_layout_init(&cc.pool.layout, (uint32_t)cfg->layers,
                             (uint32_t)cfg->kv_heads, (uint32_t)cfg->head_dim,
                             (uint32_t)cfg->page_tokens, (pc_dtype)cfg->dtype);
    assert(rc == 0); /* pcd_config_check did the same */
    cc.pool.backend = (pc_pool_backend)cfg->pool_backend;
    cc.gpu_ops = pcd_gpu_ops_name(cfg->gpu_ops);
    cc.gpu_device = (int)cfg->gpu_device;
    cc.tier2_bytes = cfg->tier2_bytes;
    cc.tier2_path = cfg->tier2_path;
    cc.tier2_read_delay_us = (uint32_t)cfg->tier2_read_delay_us;
    cc.pool.capacity_blocks = cfg->pool_blocks;
    cc.pool.capacity_bytes = cfg->pool_bytes;
    cc.pool.shm_mode = (uint32_t)cfg->pool_mode;
    pc_rpc_config rc_cfg = {
        .endpoint = cfg->endpoint,
        .limits = {.max_msg = cfg->max_msg_bytes, .max_tokens = cfg->max_tokens},
        .hooks = {.ctx = d, .log = pcd_log_hook, .config_get = hook_get,
                  .config_set = hook_set},
        .wakeup_fd = g_wake[0] >= 3 ? g_wake[0] : 0,
        .ipc_mode = (uint32_t)cfg->socket_mode,
        .insecure_tcp = cfg->insecure_tcp,
    };
    if ((rc = resolve_group("pool_group", cfg->pool_group, &cc.pool.shm_chgrp,
                            &cc.pool.shm_gid, err, errlen)) ||
        (rc = resolve_group("socket_group", cfg->socket_group,
                            &rc_cfg.ipc_chgrp, &rc_cfg.ipc_gid, err, errlen)))
        goto fail;

    /* The metrics listener before the server, whose loop polls its fd
     * (pc_rpc_config.watch); it serves nothing until attached below. */
    if (cfg->metrics_listen[0]) {
        if ((rc = pcd_metrics_create(cfg->metrics_listen, &d->metrics, err,
                                     errlen)))
            goto fail;
        rc_cfg.watch = pcd_metrics_watch(d->metrics);
    }

    /* The endpoint first, then the pool: a daemon that loses the race for
     * the endpoint must not have touched (reclaimed, replaced) the pool of
     * the one that won it.  libzmq starts its I/O thread here; with our
     * signals blocked while it does, that thread inherits the mask and
     * signals land on this one, interrupting zmq_poll at once. */
    char cpub[PC_CURVE_KEY_LEN + 1], csec[PC_CURVE_KEY_LEN + 1];
    if (cfg->curve_key_file[0]) {
        if ((rc = pc_rpc_keyfile_read(cfg->curve_key_file, cpub, csec, err,
                                      errlen)))
            goto fail;
        rc_cfg.curve_secret_key = csec;
        rc_cfg.curve_public_key = cpub;
    }
    /* Last before create, which owns it from then on, failure included. */
    if (cfg->allow_list_file[0] &&
        (rc = pc_rpc_allow_load(cfg->allow_list_file, &rc_cfg.allow, err,
                                errlen)))
        goto fail;
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    char why[512];
    rc_cfg.err = why;
    rc_cfg.errlen = sizeof(why);
    rc = pc_rpc_server_create(&rc_cfg, &d->srv); /* the cache comes below */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    explicit_bzero(csec, sizeof(csec)); /* libzmq keeps its own copy */
    if (rc) {
        if (rc == PC_E_BUSY)
            snprintf(err, errlen, "endpoint %s is in use by another "
                     "prefixcached (stop it first, or pick another --endpoint)",
                     cfg->endpoint);
        else if (rc == PC_E_PERM)
            snprintf(err, errlen, "endpoint %s: its socket or lock file "
                     "belongs to another user (see above); pick an endpoint in "
                     "a directory only we can write", cfg->endpoint);
        else
            snprintf(err, errlen, "cannot listen on %s: %s", cfg->endpoint,
                     why[0] ? why : pc_strerror(rc));
        goto fail;
    }
    if ((rc = create_cache(d, &cc, err, errlen)) ||
        (rc = reserve_priorities(d, cfg, err, errlen)) ||
        (cfg->pinned_prefixes[0] &&
         (rc = pcd_pinned_prefixes_apply(d->cache, cfg->pinned_prefixes, err,
                                         errlen))) ||
        (cfg->namespace_quotas[0] &&
         (rc = pcd_ns_quotas_apply(d->cache, cfg->namespace_quotas, err,
                                   errlen))))
        goto fail;
    apply_priorities(d, cfg);
    rc = pc_rpc_server_attach(d->srv, d->cache);
    assert(rc == 0); /* created without a cache just above */
    pc_rpc_server_set_log_level(d->srv, cfg->log_level);
    pcd_metrics_attach(d->metrics, d->srv);
    log_startup(d);
    if ((rc = start_events(d, err, errlen)))
        goto fail;
    *out = d;
    return 0;
fail:
    pcd_daemon_destroy(d);
    return rc;
}

int pcd_daemon_run(pcd_daemon *d)
{
    if (!d)
        return PC_E_INVAL;
    while (!d->stop && !g_stop_sig) {
        if (g_hup) { /* the server drained the pipe byte that woke us */
            g_hup = 0;
            pcd_log(PC_LOG_INFO, "SIGHUP: re-reading the configuration");
            pcd_daemon_reload(d);
        }
        /* Sleeps until a request, a lease deadline, a signal or
         * pcd_daemon_stop (both write the self-pipe). */
        int rc = pc_rpc_server_poll(d->srv, g_wake[0] >= 3 ? -1 : 100);
        if (rc < 0) {
            pcd_log(PC_LOG_ERROR, "serving failed: %s; shutting down",
                    pc_strerror(rc));
            return rc;
        }
        if (d->ev) /* the round's end (with interval 0, its batch goes out) */
            pc_rpc_events_tick(d->ev);
    }
    if (g_stop_sig)
        pcd_log(PC_LOG_INFO, "%s: shutting down", g_stop_sig == SIGINT ? "SIGINT"
                                                                       : "SIGTERM");
    return 0;
}

void pcd_daemon_stop(pcd_daemon *d)
{
    if (d) {
        d->stop = 1;
        if (g_wake[1] >= 0 && write(g_wake[1], "", 1) < 0) {
            /* full pipe: a wakeup is pending anyway */
        }
    }
}

void pcd_daemon_destroy(pcd_daemon *d)
{
    if (!d)
        return;
    bool served = d->srv != NULL;
    if (d->srv) {
        pc_rpc_stats st;
        pc_rpc_server_stats(d->srv, &st);
        char ep[PCD_ENDPOINT_MAX];
        snprintf(ep, sizeof(ep), "%s", pc_rpc_server_endpoint(d->srv));
        pc_rpc_server_destroy(d->srv);
        pcd_log(PC_LOG_INFO, "closed %s after %" PRIu64 " requests (%" PRIu64
                " errors, %" PRIu64 " dropped)", ep, st.requests, st.errors,
                st.dropped);
    }
    pcd_metrics_destroy(d->metrics); /* before the server it reads */
    if (d->ev) {
        pc_rpc_events_stats es;
        pc_rpc_events_flush(d->ev); /* what the last round left */
        pc_rpc_events_stats_get(d->ev, &es);
        pcd_log(PC_LOG_INFO, "kv events: %" PRIu64 " batches, %" PRIu64
                " events, %" PRIu64 " sends failed, %" PRIu64 " replays, %"
                PRIu64 " pages that could not be named", es.batches,
                es.events, es.send_failed, es.replays, es.lost_pages);
        pc_rpc_events_attach(d->ev, NULL);
        pc_rpc_events_destroy(d->ev);
    }
    if (d->cache) {
        pc_cache_destroy(d->cache); /* unlinks the host pool's shm */
        if (served)
            pcd_log(PC_LOG_INFO, "pool released; bye");
    }
    free(d);
}

const pcd_config *pcd_daemon_config(const pcd_daemon *d) { return d ? &d->cfg : NULL; }
pc_cache *pcd_daemon_cache(const pcd_daemon *d) { return d ? d->cache : NULL; }
pc_rpc_server *pcd_daemon_server(const pcd_daemon *d) { return d ? d->srv : NULL; }

/*
 * daemon/daemon.h - prefixcached: its configuration, its log and its life.
 *
 * The configuration is ONE table of knobs (config.c).  Everything that
 * knows about knobs is generated from it, so nothing can drift:
 *
 *                    ┌── config file  "key = value" lines  (pcd_config_load_file)
 *                    ├── command line --name=value, --name value
 *   pcd_knobs[] ─────┼── --help, --help-markdown (= docs/config.md)
 *   name, type,      ├── CONFIG rpc: get / set of reloadable knobs
 *   default, bounds, └── SIGHUP reload: what changed, what needs a restart
 *   reloadable, help
 *
 * Precedence: built-in defaults < the --config file < command-line options.
 *
 * Every function returns 0 or a negative PC_E_* code and, where it takes
 * err/errlen, writes a readable reason there (for a file: "FILE:LINE: ...").
 * Nothing here calls exit() or abort() on bad input.
 */
#ifndef PCD_DAEMON_H
#define PCD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cache/cache.h"
#include "proto/proto.h"
#include "rpc/client.h"
#include "rpc/events.h"
#include "rpc/rpc.h"

#define PCD_VERSION "0.1.0" /* keep in step with project() in CMakeLists.txt */

/* ---- configuration (config.c) --------------------------------------------- */

#define PCD_ENDPOINT_MAX PC_RPC_ENDPOINT_MAX

/* The daemon's whole configuration, as values (strings are copied in). */
#define PCD_NS_PRIORITIES_MAX 1023
#define PCD_GROUP_MAX 64
#define PCD_METRICS_LISTEN_MAX 63
#define PCD_TIER2_PATH_MAX 1023
#define PCD_PINNED_PREFIXES_MAX 2047

typedef struct pcd_config {
    char endpoint[PCD_ENDPOINT_MAX];
    int pool_backend;            /* pc_pool_backend                      */
    int gpu_ops;                 /* pcd_gpu_ops_name's index             */
    uint64_t gpu_device;
    uint64_t pool_bytes, pool_blocks;
    char shm_name[PC_POOL_SHM_NAME_MAX + 1]; /* "" = per endpoint      */
    uint64_t socket_mode, pool_mode;  /* permission bits, 0..0777        */
    char socket_group[PCD_GROUP_MAX + 1], pool_group[PCD_GROUP_MAX + 1];
    uint64_t layers, kv_heads, head_dim;
    int dtype;                   /* pc_dtype                             */
    uint64_t page_tokens;
    uint64_t low_watermark, high_watermark;
    uint64_t lease_ttl_ms;
    uint64_t max_leases, max_pins_per_lease, max_blocks_per_lease;
    uint64_t max_tree_nodes;
    uint64_t max_msg_bytes, max_tokens;
    int log_level;               /* PC_LOG_*                             */
    bool log_utc;
    int eviction_policy;         /* pc_radix_policy                      */
    char namespace_priorities[PCD_NS_PRIORITIES_MAX + 1];
    char metrics_listen[PCD_METRICS_LISTEN_MAX + 1]; /* "": no /metrics */
    uint64_t tier2_bytes;        /* 0: no second tier                    */
    char tier2_path[PCD_TIER2_PATH_MAX + 1]; /* "": /var/tmp            */
    uint64_t tier2_read_delay_us;
    char pinned_prefixes[PCD_PINNED_PREFIXES_MAX + 1]; /* NS=FILE,...  */
    char namespace_quotas[PCD_PINNED_PREFIXES_MAX + 1]; /* PAT=MAX[:MIN] */
    /* KV events (rpc/events.h): "" = off */
    char kv_events_endpoint[PCD_ENDPOINT_MAX];
    char kv_events_topic[PCD_ENDPOINT_MAX];
    char kv_events_replay_endpoint[PCD_ENDPOINT_MAX];
    uint64_t kv_events_buffer, kv_events_buffer_bytes;
    uint64_t kv_events_interval_ms;
    int kv_events_format;        /* PC_KV_EVENTS_*                       */
    /* Authentication (docs/SECURITY.md): "" = none */
    char curve_key_file[PCD_TIER2_PATH_MAX + 1];
    char allow_list_file[PCD_TIER2_PATH_MAX + 1];
    bool insecure_tcp;
} pcd_config;

/* namespace_quotas (daemon/operator.c): "PATTERN=MAX[:MIN],...", fnmatch
 * globs over namespaces, the first that matches wins.  check: syntax;
 * apply: pc_cache_set_ns_quotas, all or nothing. */
int pcd_ns_quotas_check(const char *text, char *err, size_t errlen);
int pcd_ns_quotas_apply(pc_cache *cache, const char *text, char *err,
                        size_t errlen);

/* pinned_prefixes (daemon/operator.c): "NS=FILE[,NS=FILE]...", each FILE a
 * prompt's token ids in decimal.  check: the syntax only; apply: read the
 * files and make them the cache's operator pins (all or nothing). */
int pcd_pinned_prefixes_check(const char *text, char *err, size_t errlen);
int pcd_pinned_prefixes_apply(pc_cache *cache, const char *text, char *err,
                              size_t errlen);

/*
 * namespace_priorities: "NS=PRIO[,NS=PRIO]..." (NS: 1..256 bytes of text
 * without ',' or '='; PRIO: an integer in [-1000000, 1000000]; spaces around
 * the items are ignored).  Calls fn (when not NULL) for each item; checks
 * the whole text first, so fn sees nothing from a bad one.  0, or the
 * PC_E_* of the first problem with a readable message in err.
 */
typedef int (*pcd_prio_fn)(void *ctx, const char *ns, size_t len, int32_t prio);
int pcd_ns_priorities_parse(const char *text, pcd_prio_fn fn, void *ctx,
                            char *err, size_t errlen);

/* gpu_ops' value i as gpu/ names device operations ("cuda", "fake"); NULL
 * past the last. */
const char *pcd_gpu_ops_name(int i);

typedef enum pcd_type {
    PCD_INT,  /* decimal integer within [min, max]                       */
    PCD_SIZE, /* bytes: integer with an optional K/M/G/T or KiB/MiB/GiB/TiB
                 suffix (all powers of 1024), within [min, max]         */
    PCD_STR,  /* text of at most max bytes (min: at least min bytes)     */
    PCD_ENUM, /* one of choice(i); stored as its index i                 */
    PCD_BOOL, /* true/false, yes/no, on/off, 1/0                         */
    PCD_MODE, /* permission bits in octal ("0660"), within [min, max]    */
} pcd_type;

typedef struct pcd_knob {
    const char *name;
    pcd_type type;
    size_t off;                 /* of the field in pcd_config           */
    const char *def;            /* default, as text; NULL: def_fn's     */
    /* Computes the default text: 0, or a PC_E_* code (the field is then
     * left empty, and pcd_config_check says why).  pcd_config_load calls
     * it only when neither the file nor the command line set the knob. */
    int (*def_fn)(char *buf, size_t len);
    const char *def_doc;        /* what the docs show for a NULL def    */
    uint64_t min, max;
    const char *(*choice)(int i); /* PCD_ENUM: the name of value i, NULL
                                     past the last (the owning library's)  */
    bool reloadable;            /* SIGHUP and CONFIG set may change it  */
    const char *help;
} pcd_knob;

/* The table, in documentation order; *n gets its length. */
const pcd_knob *pcd_knobs(size_t *n);
/* By name (len bytes, not necessarily NUL-terminated); NULL if unknown. */
const pcd_knob *pcd_knob_find(const char *name, size_t len);

/* Every knob at its default. */
void pcd_config_defaults(pcd_config *c);

/* Set one knob from text (file, command line, CONFIG set).
 * PC_E_NOENT unknown knob, PC_E_INVAL unparsable / bad choice, PC_E_RANGE
 * out of bounds.  c is unchanged on failure. */
int pcd_config_set(pcd_config *c, const char *name, const char *value,
                   char *err, size_t errlen);

/* The same from a msgpack value: str (parsed as text), uint (int, size),
 * bool (bool). */
int pcd_config_set_object(pcd_config *c, const char *name, size_t name_len,
                          const msgpack_object *v, char *err, size_t errlen);

/* Read a "key = value" file over *c.  Blank lines and '#' comments are
 * skipped; a value may be wrapped in double quotes; a knob set twice is an
 * error.  All or nothing: c is unchanged on failure.  Errors name the file
 * and the line: "/etc/prefixcache.conf:7: layers: 0 is below the minimum 1". */
int pcd_config_load_file(pcd_config *c, const char *path, char *err,
                         size_t errlen);

/* Rules that span knobs (watermarks, pool capacity, endpoint scheme, shm
 * name form, modes).  *capacity (may be NULL) gets the pool's blocks. */
int pcd_config_check(const pcd_config *c, uint64_t *capacity, char *err,
                     size_t errlen);

/* The value of a knob as text (what --name= would take back). */
void pcd_config_format(const pcd_config *c, const pcd_knob *k, char *buf,
                       size_t len);

/* Bytes in the largest binary unit that divides them ("16MiB", "1000"):
 * what it prints parses back to the same size. */
void pcd_format_size(uint64_t v, char *buf, size_t len);

/* True when two configs agree on knob k. */
bool pcd_config_equal(const pcd_config *a, const pcd_config *b,
                      const pcd_knob *k);

/* Pack a map of name -> value (uint, str or bool) for the names in `names`
 * (an array of str) or every knob (NULL).  PC_E_NOENT for an unknown name,
 * PC_E_BADMSG for a name that is not a str; nothing packed on failure. */
int pcd_config_pack(const pcd_config *c, const msgpack_object *names,
                    msgpack_packer *pk, char *err, size_t errlen);

/* What a reload did, one bit per knob (index in pcd_knobs()). */
typedef struct pcd_reload {
    uint64_t applied;  /* changed and reloadable: now in *cur            */
    uint64_t ignored;  /* changed but needs a restart: left as it was    */
    unsigned n_applied, n_ignored;
} pcd_reload;

/*
 * Apply the reloadable knobs of `next` that differ onto *cur; report (and
 * refuse) changes to the others.  With log, each change is logged at INFO
 * ("lease_ttl_ms: 30000 -> 5000") and each refused one at WARN.  *cur stays
 * consistent: if the merged config breaks a cross-knob rule it is left
 * unchanged and PC_E_RANGE/PC_E_INVAL is returned.  Returns n_applied.
 */
int pcd_config_reload(pcd_config *cur, const pcd_config *next, bool log,
                      pcd_reload *out, char *err, size_t errlen);

/* ---- command line (config.c) ------------------------------------------------ */

typedef struct pcd_override {
    const pcd_knob *knob;
    const char *value; /* points into argv */
} pcd_override;

typedef struct pcd_cmdline {
    const char *config_path; /* --config FILE, or NULL                     */
    bool help, help_markdown, version;
    pcd_override *over;      /* --name=value / --name value, in order     */
    size_t n_over;
} pcd_cmdline;

/* Parse argv (argv[0] is skipped).  Knob options may use '-' for '_'
 * (--lease-ttl-ms).  Values are checked later, by pcd_config_load.  The
 * argv strings must outlive cl.  pcd_cmdline_free in every case. */
int pcd_cmdline_parse(int argc, char **argv, pcd_cmdline *cl, char *err,
                      size_t errlen);
void pcd_cmdline_free(pcd_cmdline *cl);

/* Defaults, then the --config file, then the overrides, then the checks. */
int pcd_config_load(pcd_config *c, const pcd_cmdline *cl, char *err,
                    size_t errlen);

/* --help (from the table) and --help-markdown (docs/config.md, verbatim). */
void pcd_config_write_help(FILE *f, const char *argv0);
void pcd_config_write_markdown(FILE *f);

/* ---- log (log.c) ------------------------------------------------------------ */

/* One line per event on stderr (or the stream set):
 *   2024-05-01T12:34:56.789+02:00 INFO  listening on ipc:///run/... */
void pcd_log_set_level(int level); /* PC_LOG_*; default INFO */
int pcd_log_get_level(void);
void pcd_log_set_utc(bool utc);    /* timestamps in UTC ("Z") */
void pcd_log_set_stream(FILE *f);  /* NULL: stderr */
void pcd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* pc_rpc_hooks.log */
void pcd_log_hook(void *ctx, int level, const char *msg);
/* ISO 8601 local time (or UTC) with milliseconds and the offset. */
void pcd_log_timestamp(char *buf, size_t len, bool utc);
const char *pcd_log_level_name(int level);

/* ---- /metrics (metrics.c, docs/metrics.md) ------------------------------------ */

/* One stat as the visitor gave it. */
typedef struct pcd_stat {
    const char *name;
    uint64_t value;
} pcd_stat;

/* The Prometheus text exposition (format 0.0.4) of stats, through the one
 * mapping table: *out is malloc'd (the caller frees it), NUL-terminated,
 * *len bytes.  Stats that map to nothing are left out (test_metrics makes
 * sure there are none but the listed ones).  PC_E_NOMEM. */
int pcd_metrics_render(const pcd_stat *st, size_t n, char **out, size_t *len);

/* 1: the stat is exported; 0: it is on the not-exported list; -1: unknown
 * to both (a new stat nobody mapped). */
int pcd_metrics_classify(const char *stat);

/* metrics_listen's text: "PORT" (127.0.0.1), "HOST:PORT" with an IPv4
 * address, "localhost" or "*" (all addresses).  *addr in host order.
 * PC_E_INVAL with a reason. */
int pcd_metrics_listen_parse(const char *text, uint32_t *addr, uint16_t *port,
                             char *err, size_t errlen);

/* The HTTP listener (libmicrohttpd, polled by the server's loop). */
typedef struct pcd_metrics pcd_metrics;
int pcd_metrics_create(const char *listen, pcd_metrics **out, char *err,
                       size_t errlen);
/* The server whose stats it serves; nothing is served before. */
void pcd_metrics_attach(pcd_metrics *m, pc_rpc_server *srv);
/* The fd and callbacks for pc_rpc_config.watch. */
pc_rpc_watch pcd_metrics_watch(pcd_metrics *m);
uint16_t pcd_metrics_port(const pcd_metrics *m); /* the bound port */
const char *pcd_metrics_addr(const pcd_metrics *m);
void pcd_metrics_destroy(pcd_metrics *m);

/* ---- the daemon (daemon.c) -------------------------------------------------- */

typedef struct pcd_daemon pcd_daemon;

/*
 * Create the cache (and its pool), bind the server, log where it listens
 * and the pool layout.  cl (may be NULL) is kept for SIGHUP, which re-reads
 * the same file with the same overrides; it must outlive the daemon.
 * The host pool's name, when shm_name is empty, is
 * "/prefixcache-<euid>-<16 hex digits of a hash of the endpoint>": a
 * restart on the same endpoint finds a crashed predecessor's pool and
 * reclaims it; when another user holds that name, an unpredictable one is
 * used instead (logged at WARN).  socket_group and pool_group must name a
 * group the daemon may give files to.
 * PC_E_BUSY when another daemon owns the endpoint or the pool; PC_E_PERM
 * when another user owns them; err says what failed.
 */
int pcd_daemon_create(const pcd_config *cfg, const pcd_cmdline *cl,
                      pcd_daemon **out, char *err, size_t errlen);
void pcd_daemon_destroy(pcd_daemon *d);

/* Serve until pcd_daemon_stop or SIGTERM/SIGINT (after pcd_signals_install);
 * SIGHUP reloads.  0 on a clean stop, negative on a fatal socket error. */
int pcd_daemon_run(pcd_daemon *d);
void pcd_daemon_stop(pcd_daemon *d);

/* SIGHUP's work: re-read the configuration and apply the reloadable knobs;
 * a bad file is logged and changes nothing. */
int pcd_daemon_reload(pcd_daemon *d);

/* CONFIG set's work: all or nothing, only reloadable knobs (PC_E_PERM). */
int pcd_daemon_config_set(pcd_daemon *d, const msgpack_object *set, char *err,
                          size_t errlen);

const pcd_config *pcd_daemon_config(const pcd_daemon *d);
pc_cache *pcd_daemon_cache(const pcd_daemon *d);
pc_rpc_server *pcd_daemon_server(const pcd_daemon *d);

/* SIGTERM, SIGINT: stop; SIGHUP: reload (handlers only set flags);
 * SIGPIPE ignored. */
int pcd_signals_install(void);

/* Pre-fault the memory jemalloc maps for the daemon's thread (prefault.c,
 * prefixcached only): 0, or PC_E_IO where that is not available. */
int pcd_prefault_install(void);

#endif /* PCD_DAEMON_H */

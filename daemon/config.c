/*
 * daemon/config.c - the one table of knobs, and everything generated from it.
 *
 *   KNOBS[] ──► pcd_config_defaults   (each default is TEXT, parsed by the
 *          │                           same code as a file value, so the
 *          │                           docs show exactly what is applied;
 *          │                           a computed one, the endpoint, is
 *          │                           only computed when nothing set it)
 *          ├──► pcd_config_load_file  "key = value" lines
 *          ├──► pcd_cmdline_parse     --name=value, --name value
 *          ├──► pcd_config_pack / pcd_config_set_object   (CONFIG rpc)
 *          ├──► pcd_config_reload     (SIGHUP: reloadable knobs only)
 *          └──► --help, --help-markdown (= docs/config.md, checked by a test)
 *
 * Adding a knob = one field in pcd_config + one line in KNOBS[]; then
 * regenerate docs/config.md (the test says so if you forget).
 *
 * Why table-driven (Redis's config.c does the same): a hand-written parser,
 * help text and doc page drift apart within a month; a table cannot.
 */
#include "daemon/daemon.h"
#include "rpc/client.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define TiB (1024ull * GiB)

/* ---- the table ------------------------------------------------------------ */

/* Enum knobs take their names from the libraries that own the values (an
 * index is the library's own value; NULL ends the list). */
static const char *backend_name(int i)
{
    /* host, none and cuda (gpu_ops says on what: a build without CUDA
     * still runs cuda pools on the fake device) */
    return pc_pool_backend_name((pc_pool_backend)i);
}

/* gpu_ops: the device operations' names in gpu/ (cache/ hands the name on);
 * index 0, cuda, is the default. */
static const char *const GPU_OPS[] = {"cuda", "fake"};

const char *pcd_gpu_ops_name(int i)
{
    return i >= 0 && (size_t)i < NELEM(GPU_OPS) ? GPU_OPS[i] : NULL;
}

static const char *dtype_name(int i)
{
    return pc_dtype_name((pc_dtype)i);
}

/* Defaults and bounds from the libraries' constants, printed as text. */
#define PCD_STR_(x) #x
#define PCD_STR(x) PCD_STR_(x)
/* A string knob's max is its field's size - 1. */
_Static_assert(PCD_ENDPOINT_MAX == 256, "endpoint max below");
_Static_assert(PC_POOL_SHM_NAME_MAX == 200, "shm_name max below");
_Static_assert(PCD_GROUP_MAX == 64, "socket_group, pool_group max below");
_Static_assert(PCD_METRICS_LISTEN_MAX < 64, "metrics_listen: pcd_metrics_listen_parse's host");
_Static_assert(PCD_TIER2_PATH_MAX == 1023, "tier2_path max below");
_Static_assert(PCD_PINNED_PREFIXES_MAX == 2047, "pinned_prefixes max below");

#define F(field) offsetof(pcd_config, field)

static const pcd_knob KNOBS[] = {
    {"endpoint", PCD_STR, F(endpoint), NULL, pc_rpc_default_endpoint, "auto", 1,
     255, NULL, false,
     "Where the daemon listens: `ipc://PATH` (a Unix socket; a `PATH.lock` file "
     "keeps a second daemon off it) or `tcp://HOST:PORT`. auto: "
     "`ipc://DIR/prefixcache.sock` in the first of `$XDG_RUNTIME_DIR`, "
     "`/run/prefixcache` (root only), `/tmp/prefixcache-<uid>`, "
     "`$HOME/.prefixcache` that is a directory of ours which group and others "
     "cannot write (the last three are created 0700 when missing, by the "
     "daemon and by clients alike), so that no other local user can squat the "
     "path or impersonate the daemon; prefixcache-cli and libprefixcache's "
     "pc_rpc_default_endpoint() find the same one."},
    {"socket_mode", PCD_MODE, F(socket_mode), "0600", NULL, NULL, 0, 0777, NULL,
     false,
     "Permission bits of the ipc socket file, set explicitly whatever the "
     "umask (whoever may connect may use every namespace unless "
     "allow_list_file binds its uid; only the daemon's uid, root and admin "
     "uids may flush and change the config). Must include 0600. 0660 with socket_group lets engines under other uids in "
     "that group connect; the socket's directory must let them search it "
     "(the daemon warns when it does not)."},
    {"socket_group", PCD_STR, F(socket_group), "", NULL, NULL, 0, 64, NULL, false,
     "Group (a name or a number) the ipc socket file is given to; empty: the "
     "daemon's own group. The daemon must be root or a member of it."},
    {"pool_backend", PCD_ENUM, F(pool_backend), "host", NULL, NULL, 0, 0,
     backend_name, false,
     "Where KV blocks live. host: a POSIX shared-memory pool that engines map "
     "(HELLO tells them its name and size); none: an index only, the block ids "
     "are handles into the engines' own memory; cuda: one device allocation "
     "on gpu_device through gpu_ops, which engines on that GPU import (HELLO "
     "gives the device UUID and the IPC handle)."},
    {"gpu_ops", PCD_ENUM, F(gpu_ops), "cuda", NULL, NULL, 0, 0,
     pcd_gpu_ops_name, false,
     "Device operations of a cuda pool (ignored for the others). cuda: the "
     "CUDA runtime (a daemon built without CUDA refuses to start with it); "
     "fake: host shared memory that stands in for a GPU, with handles that "
     "cross processes, for tests and machines without one."},
    {"gpu_device", PCD_INT, F(gpu_device), "0", NULL, NULL, 0, 63, NULL, false,
     "Device index of a cuda pool, as gpu_ops counts devices (engines match "
     "the device by UUID, not by this index)."},
    {"pool_bytes", PCD_SIZE, F(pool_bytes), "1GiB", NULL, NULL, 1, 256 * TiB,
     NULL, false,
     "Pool size in bytes, rounded down to whole blocks (ignored when "
     "pool_blocks is set). The host pool is mapped without touching a page: "
     "memory is used as engines write blocks."},
    {"pool_blocks", PCD_INT, F(pool_blocks), "0", NULL, NULL, 0, UINT32_MAX,
     NULL, false, "Pool size in blocks; 0: pool_bytes / block size."},
    {"shm_name", PCD_STR, F(shm_name), "", NULL, NULL, 0, 200, NULL, false,
     "POSIX shared-memory name of the host pool (`/name`); empty: "
     "`/prefixcache-<uid>-<16 hex digits of a hash of the endpoint>`, the same "
     "on every start on one endpoint (if another user holds that name, an "
     "unpredictable one, with a warning). The daemon holds a lock on the pool "
     "while it runs and unlinks it on exit; on start, an object of that name "
     "that is ours and that nobody locks was left by a daemon that died (kill "
     "-9, a crash): it is replaced. One held by a live daemon, or another "
     "user's, is refused. Use a name nothing but prefixcached uses."},
    {"pool_mode", PCD_MODE, F(pool_mode), "0600", NULL, NULL, 0, 0777, NULL,
     false,
     "Permission bits of the host pool's shared-memory object, set explicitly "
     "whatever the umask. Must include 0600. 0660 with pool_group lets engines "
     "under other uids in that group map the pool."},
    {"pool_group", PCD_STR, F(pool_group), "", NULL, NULL, 0, 64, NULL, false,
     "Group (a name or a number) the host pool is given to; empty: the "
     "daemon's own group. The daemon must be root or a member of it."},
    {"tier2_bytes", PCD_SIZE, F(tier2_bytes), "0", NULL, NULL, 0, 256 * TiB,
     NULL, false,
     "A second tier of this many bytes (whole blocks; 0: none). Pages the "
     "pool evicts are copied there first (it keeps its own LRU) and a lookup "
     "reports the tokens it holds (tier2_tokens); a lookup with promote "
     "copies them back into the pool before it answers: a copy instead of a "
     "prefill. Under a host pool: a memory-mapped file (tier2_path; put it on "
     "a fast disk); under a cuda pool: page-locked host memory."},
    {"tier2_path", PCD_STR, F(tier2_path), "", NULL, NULL, 0, PCD_TIER2_PATH_MAX,
     NULL, false,
     "The host pool's second tier: a directory (an unnamed file is created in "
     "it and vanishes with the daemon) or a file to create (it must not "
     "exist; removed on exit). Empty: /var/tmp. The space is reserved at "
     "start (fallocate)."},
    {"tier2_read_delay_us", PCD_INT, F(tier2_read_delay_us), "0", NULL, NULL, 0,
     10000000, NULL, false,
     "Test and demo aid: the tier-2 reader sleeps this long before each page "
     "it promotes (a slow disk). Leave 0."},
    {"layers", PCD_INT, F(layers), "32", NULL, NULL, 1, 4096, NULL, false,
     "Model shape: transformer layers (one K and one V per layer in a block)."},
    {"kv_heads", PCD_INT, F(kv_heads), "8", NULL, NULL, 1, 4096, NULL, false,
     "Model shape: key/value heads per layer (after GQA)."},
    {"head_dim", PCD_INT, F(head_dim), "128", NULL, NULL, 1, 65536, NULL, false,
     "Model shape: dimension of one head."},
    {"dtype", PCD_ENUM, F(dtype), "fp16", NULL, NULL, 0, 0, dtype_name, false,
     "Model shape: element type of the KV cache."},
    {"page_tokens", PCD_INT, F(page_tokens), PCD_STR(PC_PAGE_TOKENS_DEFAULT),
     NULL, NULL, 1, PC_PAGE_TOKENS_MAX, NULL,
     false,
     "Tokens per page = per block. Only whole pages are cached and matched. "
     "Block size = 2 x layers x kv_heads x head_dim x page_tokens x dtype size."},
    {"lease_ttl_ms", PCD_INT, F(lease_ttl_ms),
     PCD_STR(PC_CACHE_LEASE_TTL_MS_DEFAULT), NULL, NULL, 1, 86400000,
     NULL, true,
     "A lease that no request names for this long expires (its engine is "
     "presumed dead): its pins drop and its un-inserted blocks are freed."},
    {"max_leases", PCD_INT, F(max_leases), PCD_STR(PC_CACHE_MAX_LEASES_DEFAULT),
     NULL, NULL, 1, 1u << 30,
     NULL, true, "Live leases at most; beyond, pin and alloc fail with PC_E_LIMIT."},
    {"max_pins_per_lease", PCD_INT, F(max_pins_per_lease),
     PCD_STR(PC_CACHE_MAX_PINS_PER_LEASE_DEFAULT), NULL, NULL, 1,
     UINT32_MAX, NULL, true, "Pinned prefixes one lease may hold."},
    {"max_blocks_per_lease", PCD_INT, F(max_blocks_per_lease),
     PCD_STR(PC_CACHE_MAX_BLOCKS_PER_LEASE_DEFAULT), NULL,
     NULL, 1, UINT32_MAX, NULL, true,
     "Allocated, not yet inserted blocks one lease may hold."},
    {"max_tree_nodes", PCD_INT, F(max_tree_nodes), "0", NULL, NULL, 0,
     UINT32_MAX, NULL, true,
     "Tree nodes at most (0: bounded only by the pool, about 2 per block). "
     "An insert that could pass it is refused with PC_E_LIMIT and a message "
     "naming this knob; nothing else changes. Bounds the tree's own memory "
     "(tree.metadata_bytes) when many short diverging prompts fragment it."},
    {"low_watermark", PCD_INT, F(low_watermark), "0", NULL, NULL, 0, UINT32_MAX,
     NULL, true,
     "Free blocks: when fewer are free, the daemon evicts unpinned pages (by "
     "eviction_policy) until "
     "high_watermark blocks are free (between requests). 0 and 0: off (alloc "
     "still evicts what it needs)."},
    {"high_watermark", PCD_INT, F(high_watermark), "0", NULL, NULL, 0,
     UINT32_MAX, NULL, true,
     "Free blocks to reach when low_watermark is crossed; at least "
     "low_watermark, at most the pool's capacity."},
    {"eviction_policy", PCD_ENUM, F(eviction_policy), "lru", NULL, NULL, 0, 0,
     pc_cache_policy_name, true,
     "Which unpinned pages go first when blocks are needed (only unpinned "
     "leaves, deepest page first, under every policy). lru: least recently "
     "used. lfu: least frequently used, with ageing. fifo: oldest inserted. "
     "s3fifo: S3-FIFO, new pages in a small probation queue, pages that are "
     "hit there (or come back soon after eviction) in the main queue. "
     "priority: by namespace_priorities, lowest first, LRU among equals. "
     "auto: S3-FIFO or LRU, whichever small sampled simulations of the "
     "recent lookups say hits more. "
     "Switching rebuilds the order (O(cached nodes)); nothing is evicted. "
     "Which to pick: docs/eviction.md."},
    {"namespace_priorities", PCD_STR, F(namespace_priorities), "", NULL, NULL,
     0, PCD_NS_PRIORITIES_MAX, NULL, true,
     "For eviction_policy = priority: `NS=PRIO,NS=PRIO,...` (PRIO an integer "
     "in [-1000000, 1000000]; higher is evicted later; namespaces not listed "
     "have 0). Namespaces are matched as text bytes."},
    {"pinned_prefixes", PCD_STR, F(pinned_prefixes), "", NULL, NULL, 0,
     PCD_PINNED_PREFIXES_MAX, NULL, true,
     "Operator-pinned prefixes, never evicted: `NS=FILE,NS=FILE,...`, each "
     "FILE a prompt's token ids in decimal (white space or commas between "
     "them, `#` comments), e.g. a system prompt as the engine's tokenizer "
     "encodes it. The daemon cannot compute KV: a prefix is pinned as far as "
     "engines have cached it, and further as they cache more. Re-read on "
     "every reload; refused whole (the running set stays) when a file cannot "
     "be read or their distinct pages exceed the pool. STATS: "
     "pins.operator_*."},
    {"namespace_quotas", PCD_STR, F(namespace_quotas), "", NULL, NULL, 0,
     PCD_PINNED_PREFIXES_MAX, NULL, true,
     "Per-namespace quota and reserved minimum, in pages: "
     "`PATTERN=MAX[:MIN],...`, PATTERN an fnmatch(3) glob over the namespace "
     "as text (`tenant-a/*`, `*`), the first that matches wins. MAX (0: none): "
     "an insert past it evicts the namespace's own least recently used "
     "unpinned pages. MIN: eviction for room never takes the namespace below "
     "it. Applied to cached namespaces at once and to new ones when first "
     "inserted into; changed live; refused whole when a reserve is above its "
     "maximum or the reserves of the namespaces cached now exceed the pool. "
     "STATS: quota.*, tree.reserved_pages, tree.evicted_quota_pages."},
    {"max_msg_bytes", PCD_SIZE, F(max_msg_bytes), PCD_STR(PC_PROTO_MAX_MSG_DEFAULT),
     NULL, NULL, 4 * KiB,
     1 * GiB, NULL, false,
     "Largest request payload. Up to 64 KiB more still gets a PC_E_TOOBIG "
     "reply; anything larger makes ZeroMQ drop the sender's connection "
     "(ZMQ_MAXMSGSIZE)."},
    {"max_tokens", PCD_INT, F(max_tokens), PCD_STR(PC_PROTO_MAX_TOKENS_DEFAULT),
     NULL, NULL, 1, 1u << 28,
     NULL, false, "Most tokens (and block ids) in one request."},
    {"log_level", PCD_ENUM, F(log_level), "info", NULL, NULL, 0, 0, pc_rpc_log_level_name,
     true, "Log verbosity (stderr). debug adds one line per request."},
    {"log_utc", PCD_BOOL, F(log_utc), "false", NULL, NULL, 0, 0, NULL, true,
     "Log timestamps in UTC (`Z`) instead of local time with its offset."},
    {"metrics_listen", PCD_STR, F(metrics_listen), "", NULL, NULL, 0,
     PCD_METRICS_LISTEN_MAX, NULL, false,
     "Serve Prometheus metrics over HTTP at `/metrics` (docs/metrics.md): "
     "`PORT` (on 127.0.0.1), or `HOST:PORT` with an IPv4 address, `localhost` "
     "or `*` (every address; logged at WARN, as is any address that is not "
     "loopback: the metrics name namespaces). Port 0: any free port (logged). "
     "Empty: off. Scrapes are served by the daemon's own loop, between "
     "requests."},
    {"kv_events_endpoint", PCD_STR, F(kv_events_endpoint), "", NULL, NULL, 0,
     PCD_ENDPOINT_MAX - 1, NULL, false,
     "KV events for cluster routers (docs/cluster.md): a ZeroMQ PUB socket "
     "bound here (`tcp://*:5557`, `ipc://PATH`) publishes, the way vLLM "
     "does, every page the pool or the second tier stores or drops "
     "(BlockStored, BlockRemoved, AllBlocksCleared; block hash = the low 64 "
     "bits of the page's chain hash). Empty: off (nothing is hashed)."},
    {"kv_events_topic", PCD_STR, F(kv_events_topic), "kv@<hostname>@prefixcache",
     NULL, NULL, 0, PCD_ENDPOINT_MAX - 1, NULL, false,
     "First frame of every KV-event batch; `<hostname>` is replaced by the "
     "host's name. llm-d's indexer reads `kv@<pod>@<model>`: set it so."},
    {"kv_events_replay_endpoint", PCD_STR, F(kv_events_replay_endpoint), "",
     NULL, NULL, 0, PCD_ENDPOINT_MAX - 1, NULL, false,
     "A ROUTER socket bound here answers `[id, \"\", start_seq]` (8 bytes, "
     "big-endian) with every kept batch from start_seq on, then seq -1: a "
     "subscriber that joins late or missed batches catches up. Empty: off."},
    {"kv_events_buffer", PCD_INT, F(kv_events_buffer), "10000", NULL, NULL, 1,
     10000000, NULL, false,
     "KV-event batches kept for replay (the newest; see "
     "kv_events_interval_ms)."},
    {"kv_events_buffer_bytes", PCD_SIZE, F(kv_events_buffer_bytes), "256MiB",
     NULL, NULL, 1, 64 * GiB, NULL, false,
     "At most this many bytes of KV-event batches kept for replay: the "
     "oldest go first when a new batch would pass it (counted in "
     "events.replay_dropped_batches). With a replay endpoint the daemon "
     "maps this + 8 MiB at start and touches the first GiB of it."},
    {"kv_events_interval_ms", PCD_INT, F(kv_events_interval_ms), "10", NULL,
     NULL, 0, 10000, NULL, true,
     "A KV-event batch gathers events for this long after its first one "
     "before it is published (sooner at 1 MiB). Each message costs a wakeup "
     "of the publisher, libzmq and every subscriber; vLLM publishes once "
     "per engine step. 0: one batch per round of requests (freshest, "
     "costliest: a wakeup per round; bench/README.md, \"The cost of KV "
     "events\")."},
    {"kv_events_format", PCD_ENUM, F(kv_events_format), "map", NULL, NULL, 0,
     0, pc_rpc_events_format_name, false,
     "How each KV event is encoded. map: a msgpack map with \"type\" (current "
     "vLLM); array: positional, the type first (older vLLM)."},
    {"curve_key_file", PCD_STR, F(curve_key_file), "", NULL, NULL, 0,
     PCD_TIER2_PATH_MAX, NULL, false,
     "The daemon's CURVE key pair (`prefixcache-cli keygen`: `public-key = "
     "Z85` and `secret-key = Z85` lines; mode 0600). Set: a tcp endpoint "
     "requires CURVE, and only clients whose public keys allow_list_file "
     "lists get through the handshake (loopback included). Unused on ipc, "
     "where uids identify clients. docs/SECURITY.md."},
    {"allow_list_file", PCD_STR, F(allow_list_file), "", NULL, NULL, 0,
     PCD_TIER2_PATH_MAX, NULL, true,
     "Who may do what: one line per client, `KEY ROLE [PATTERN...]` or "
     "`uid:N ROLE [PATTERN...]`, KEY a CURVE public key (40 Z85 characters), "
     "ROLE `admin` (flush, config) or `user`, each PATTERN an fnmatch(3) glob "
     "over the namespaces a user may look up, insert into and allocate for "
     "(none: every namespace). uid lines apply to ipc peers; the daemon's own "
     "uid and root are always admins. Re-read on every reload; a file that "
     "does not parse is refused whole and the list in force stays. "
     "docs/SECURITY.md."},
    {"insecure_tcp", PCD_BOOL, F(insecure_tcp), "false", NULL, NULL, 0, 0,
     NULL, false,
     "Let a tcp endpoint on an address that is not loopback (`0.0.0.0`, `*`, "
     "an interface) run without CURVE, logged at WARN at every start: anyone "
     "who reaches it may use every namespace, and admin ops are refused over "
     "it. Without it (and without curve_key_file) such an endpoint refuses "
     "to start."},
};
#undef F

_Static_assert(NELEM(KNOBS) <= 64, "pcd_reload's masks hold 64 knobs");

const pcd_knob *pcd_knobs(size_t *n)
{
    if (n)
        *n = NELEM(KNOBS);
    return KNOBS;
}

const pcd_knob *pcd_knob_find(const char *name, size_t len)
{
    for (size_t i = 0; name && i < NELEM(KNOBS); i++)
        if (strlen(KNOBS[i].name) == len && memcmp(KNOBS[i].name, name, len) == 0)
            return &KNOBS[i];
    return NULL;
}

static size_t knob_index(const pcd_knob *k) { return (size_t)(k - KNOBS); }

/* ---- field access --------------------------------------------------------- */

static uint64_t *u64_of(pcd_config *c, const pcd_knob *k)
{
    return (uint64_t *)((char *)c + k->off);
}
static int *int_of(pcd_config *c, const pcd_knob *k)
{
    return (int *)((char *)c + k->off);
}
static bool *bool_of(pcd_config *c, const pcd_knob *k)
{
    return (bool *)((char *)c + k->off);
}
static char *str_of(pcd_config *c, const pcd_knob *k)
{
    return (char *)c + k->off; /* capacity k->max + 1 */
}
#define CONST_OF(fn, type)                                                     \
    static const type *c##fn(const pcd_config *c, const pcd_knob *k)           \
    {                                                                          \
        return fn((pcd_config *)c, k);                                         \
    }
CONST_OF(u64_of, uint64_t)
CONST_OF(int_of, int)
CONST_OF(bool_of, bool)
CONST_OF(str_of, char)

static const char *type_name(pcd_type t)
{
    switch (t) {
    case PCD_INT: return "int";
    case PCD_SIZE: return "size";
    case PCD_STR: return "string";
    case PCD_ENUM: return "enum";
    case PCD_BOOL: return "bool";
    case PCD_MODE: return "mode";
    }
    return "?";
}

static int errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- values as text ------------------------------------------------------- */

/* Sizes print in the largest unit that divides them exactly ("16MiB"), so
 * what is printed parses back to the same value. */
void pcd_format_size(uint64_t v, char *buf, size_t len)
{
    static const struct { uint64_t unit; const char *sfx; } u[] = {
        {TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}};
    for (size_t i = 0; v && i < NELEM(u); i++)
        if (v % u[i].unit == 0) {
            snprintf(buf, len, "%" PRIu64 "%s", v / u[i].unit, u[i].sfx);
            return;
        }
    snprintf(buf, len, "%" PRIu64, v);
}

void pcd_config_format(const pcd_config *c, const pcd_knob *k, char *buf,
                       size_t len)
{
    switch (k->type) {
    case PCD_INT: snprintf(buf, len, "%" PRIu64, *cu64_of(c, k)); break;
    case PCD_SIZE: pcd_format_size(*cu64_of(c, k), buf, len); break;
    case PCD_STR: snprintf(buf, len, "%s", cstr_of(c, k)); break;
    case PCD_ENUM: snprintf(buf, len, "%s", k->choice(*cint_of(c, k))); break;
    case PCD_BOOL: snprintf(buf, len, "%s", *cbool_of(c, k) ? "true" : "false"); break;
    case PCD_MODE: snprintf(buf, len, "%04" PRIo64, *cu64_of(c, k)); break;
    }
}

bool pcd_config_equal(const pcd_config *a, const pcd_config *b, const pcd_knob *k)
{
    switch (k->type) {
    case PCD_INT:
    case PCD_SIZE:
    case PCD_MODE: return *cu64_of(a, k) == *cu64_of(b, k);
    case PCD_STR: return strcmp(cstr_of(a, k), cstr_of(b, k)) == 0;
    case PCD_ENUM: return *cint_of(a, k) == *cint_of(b, k);
    case PCD_BOOL: return *cbool_of(a, k) == *cbool_of(b, k);
    }
    return false;
}

static int parse_u64(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return PC_E_INVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return PC_E_RANGE;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

/* Octal digits only ("0660", "660"): a mode is never decimal. */
static int parse_mode(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return PC_E_INVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '7')
            return PC_E_INVAL;
        if (v > 07777)
            return PC_E_RANGE;
        v = v * 8 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
    static const struct { const char *sfx; uint64_t mul; } u[] = {
        {"", 1},      {"K", KiB},   {"KiB", KiB}, {"M", MiB}, {"MiB", MiB},
        {"G", GiB},   {"GiB", GiB}, {"T", TiB},   {"TiB", TiB}};
    const char *p;
    uint64_t v;
    int rc = parse_u64(s, &v, &p);
    if (rc)
        return rc;
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < NELEM(u); i++)
        if (strcasecmp(p, u[i].sfx) == 0) {
            if (v > UINT64_MAX / u[i].mul)
                return PC_E_RANGE;
            *out = v * u[i].mul;
            return 0;
        }
    return PC_E_INVAL;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < NELEM(t); i++) {
        if (strcasecmp(s, t[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(s, f[i]) == 0)
            return *out = false, 0;
    }
    return PC_E_INVAL;
}

static void choices_text(const pcd_knob *k, const char *sep, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; k->choice(i) && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? sep : "", k->choice(i));
}

static void bound_text(const pcd_knob *k, uint64_t v, char *buf, size_t len)
{
    if (k->type == PCD_SIZE)
        pcd_format_size(v, buf, len);
    else if (k->type == PCD_MODE)
        snprintf(buf, len, "%04" PRIo64, v);
    else
        snprintf(buf, len, "%" PRIu64, v);
}

static int set_u64(pcd_config *c, const pcd_knob *k, uint64_t v, char *err,
                   size_t errlen)
{
    char a[32], b[32];
    if (v < k->min) {
        bound_text(k, v, a, sizeof(a));
        bound_text(k, k->min, b, sizeof(b));
        return errf(err, errlen, PC_E_RANGE, "%s: %s is below the minimum %s",
                    k->name, a, b);
    }
    if (v > k->max) {
        bound_text(k, v, a, sizeof(a));
        bound_text(k, k->max, b, sizeof(b));
        return errf(err, errlen, PC_E_RANGE, "%s: %s is above the maximum %s",
                    k->name, a, b);
    }
    *u64_of(c, k) = v;
    return 0;
}

static int set_text(pcd_config *c, const pcd_knob *k, const char *value,
                    char *err, size_t errlen)
{
    uint64_t v;
    const char *end;
    int rc;
    char list[128];
    switch (k->type) {
    case PCD_INT:
        rc = parse_u64(value, &v, &end);
        if (rc == 0 && *end)
            rc = PC_E_INVAL;
        if (rc == PC_E_RANGE)
            return errf(err, errlen, rc, "%s: '%.40s' is too large", k->name, value);
        if (rc)
            return errf(err, errlen, rc, "%s: '%.40s' is not a non-negative "
                        "integer", k->name, value);
        return set_u64(c, k, v, err, errlen);
    case PCD_SIZE:
        rc = parse_size(value, &v);
        if (rc == PC_E_RANGE)
            return errf(err, errlen, rc, "%s: '%.40s' is too large", k->name, value);
        if (rc)
            return errf(err, errlen, rc, "%s: '%.40s' is not a size (a number "
                        "with an optional K, M, G, T, KiB, MiB, GiB or TiB "
                        "suffix)", k->name, value);
        return set_u64(c, k, v, err, errlen);
    case PCD_STR: {
        size_t n = strlen(value);
        if (n > k->max)
            return errf(err, errlen, PC_E_RANGE, "%s: %zu bytes, longer than "
                        "the maximum %" PRIu64, k->name, n, k->max);
        if (n < k->min)
            return errf(err, errlen, PC_E_RANGE, "%s: must not be empty", k->name);
        memcpy(str_of(c, k), value, n + 1);
        return 0;
    }
    case PCD_ENUM:
        for (int i = 0; k->choice(i); i++)
            if (strcmp(value, k->choice(i)) == 0) {
                *int_of(c, k) = i;
                return 0;
            }
        choices_text(k, ", ", list, sizeof(list));
        return errf(err, errlen, PC_E_INVAL, "%s: '%.40s' is not one of %s",
                    k->name, value, list);
    case PCD_MODE:
        rc = parse_mode(value, &v);
        if (rc)
            return errf(err, errlen, rc, "%s: '%.40s' is not a mode (octal "
                        "permission bits such as 0600 or 0660)", k->name, value);
        return set_u64(c, k, v, err, errlen);
    case PCD_BOOL: {
        bool b;
        if (parse_bool(value, &b))
            return errf(err, errlen, PC_E_INVAL, "%s: '%.40s' is not a bool "
                        "(true/false, yes/no, on/off, 1/0)", k->name, value);
        *bool_of(c, k) = b;
        return 0;
    }
    }
    return PC_E_INVAL;
}

static int unknown(char *err, size_t errlen, const char *name, size_t len)
{
    return errf(err, errlen, PC_E_NOENT, "unknown knob '%.*s' (prefixcached "
                "--help lists them)", (int)(len > 64 ? 64 : len), name);
}

int pcd_config_set(pcd_config *c, const char *name, const char *value,
                   char *err, size_t errlen)
{
    if (!c || !name || !value)
        return errf(err, errlen, PC_E_INVAL, "invalid argument");
    const pcd_knob *k = pcd_knob_find(name, strlen(name));
    if (!k)
        return unknown(err, errlen, name, strlen(name));
    return set_text(c, k, value, err, errlen);
}

int pcd_config_set_object(pcd_config *c, const char *name, size_t name_len,
                          const msgpack_object *v, char *err, size_t errlen)
{
    const pcd_knob *k = c && v ? pcd_knob_find(name, name_len) : NULL;
    if (!k)
        return c && v ? unknown(err, errlen, name, name_len)
                      : errf(err, errlen, PC_E_INVAL, "invalid argument");
    switch (v->type) {
    case MSGPACK_OBJECT_STR: {
        char buf[1024];
        if (v->via.str.size >= sizeof(buf) ||
            memchr(v->via.str.ptr, 0, v->via.str.size))
            return errf(err, errlen, PC_E_RANGE, "%s: value too long or "
                        "holding a NUL byte", k->name);
        memcpy(buf, v->via.str.ptr, v->via.str.size);
        buf[v->via.str.size] = 0;
        return set_text(c, k, buf, err, errlen);
    }
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (k->type == PCD_INT || k->type == PCD_SIZE || k->type == PCD_MODE)
            return set_u64(c, k, v->via.u64, err, errlen);
        if (k->type == PCD_BOOL && v->via.u64 <= 1) {
            *bool_of(c, k) = v->via.u64 == 1;
            return 0;
        }
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if (k->type == PCD_INT || k->type == PCD_SIZE || k->type == PCD_MODE)
            return errf(err, errlen, PC_E_RANGE, "%s: %" PRId64 " is below the "
                        "minimum %" PRIu64, k->name, v->via.i64, k->min);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        if (k->type == PCD_BOOL) {
            *bool_of(c, k) = v->via.boolean;
            return 0;
        }
        break;
    default:
        break;
    }
    return errf(err, errlen, PC_E_INVAL, "%s: wrong value type for a %s knob "
                "(send a string%s)", k->name, type_name(k->type),
                k->type == PCD_INT || k->type == PCD_SIZE || k->type == PCD_MODE
                    ? " or a uint"
                : k->type == PCD_BOOL ? " or a bool" : "");
}

/* ---- defaults ---------------------------------------------------------------- */

/* A computed default (the endpoint: it may create a directory) for knob k
 * of c; the field stays empty when there is none (pcd_config_check says). */
static void computed_default(pcd_config *c, const pcd_knob *k)
{
    char buf[PCD_ENDPOINT_MAX];
    if (k->def_fn(buf, sizeof(buf)) == 0) {
        int rc = set_text(c, k, buf, NULL, 0);
        assert(rc == 0);
        (void)rc;
    }
}

/* The table's defaults; with computed, also the def_fn ones. */
static void table_defaults(pcd_config *c, bool computed)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NELEM(KNOBS); i++) {
        const pcd_knob *k = &KNOBS[i];
        if (!k->def) {
            if (computed)
                computed_default(c, k);
            continue;
        }
        int rc = set_text(c, k, k->def, NULL, 0);
        assert(rc == 0); /* the table's defaults parse: a test checks it */
        (void)rc;
    }
}

void pcd_config_defaults(pcd_config *c)
{
    table_defaults(c, true);
}

/* ---- cross-knob rules ----------------------------------------------------- */

int pcd_config_check(const pcd_config *c, uint64_t *capacity, char *err,
                     size_t errlen)
{
    const char *ep = c->endpoint;
    if (!ep[0])
        return errf(err, errlen, PC_E_PERM, "endpoint: no default: none of "
                    "$XDG_RUNTIME_DIR, /run/prefixcache (root), "
                    "/tmp/prefixcache-%lu, $HOME/.prefixcache is a directory of "
                    "ours that group and others cannot write (or can be made "
                    "one); set endpoint", (unsigned long)geteuid());
    if (!((strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "tcp://", 6) == 0) && ep[6]))
        return errf(err, errlen, PC_E_INVAL, "endpoint: '%s' is neither "
                    "ipc://PATH nor tcp://HOST:PORT", ep);
    if (strncmp(ep, "ipc://", 6) == 0 && strlen(ep + 6) > 107)
        return errf(err, errlen, PC_E_RANGE, "endpoint: the socket path is "
                    "longer than the 107 bytes a Unix socket allows");
    if (c->metrics_listen[0]) {
        int mrc = pcd_metrics_listen_parse(c->metrics_listen, NULL, NULL, err,
                                           errlen);
        if (mrc)
            return mrc;
    }
    const char *sn = c->shm_name;
    if (sn[0] && (sn[0] != '/' || !sn[1] || strchr(sn + 1, '/')))
        return errf(err, errlen, PC_E_INVAL, "shm_name: '%s' must be '/' "
                    "followed by a name without '/' (or empty for the default)", sn);
    /* The owner's rw: the daemon's own user connects (prefixcache-cli), and
     * a restart must open a dead predecessor's pool to test its lock. */
    if ((c->socket_mode & 0600) != 0600 || (c->pool_mode & 0600) != 0600)
        return errf(err, errlen, PC_E_RANGE, "%s: %04" PRIo64 " must include "
                    "0600 (the owner's read and write)",
                    (c->socket_mode & 0600) != 0600 ? "socket_mode" : "pool_mode",
                    (c->socket_mode & 0600) != 0600 ? c->socket_mode : c->pool_mode);
    pc_pool_layout l;
    int rc = pc_pool_layout_init(&l, (uint32_t)c->layers, (uint32_t)c->kv_heads,
                                 (uint32_t)c->head_dim, (uint32_t)c->page_tokens,
                                 (pc_dtype)c->dtype);
    if (rc)
        return errf(err, errlen, rc, "model shape: %" PRIu64 " layers x %" PRIu64
                    " kv_heads x %" PRIu64 " head_dim x %" PRIu64 " page_tokens: "
                    "%s", c->layers, c->kv_heads, c->head_dim, c->page_tokens,
                    pc_strerror(rc));
    uint64_t cap = c->pool_blocks ? c->pool_blocks : c->pool_bytes / l.block_bytes;
    char a[32], b[32];
    if (cap < 2 && c->pool_blocks)
        return errf(err, errlen, PC_E_RANGE, "pool_blocks: %" PRIu64 " block; "
                    "the pool needs at least 2", cap);
    if (cap < 2) {
        pcd_format_size(c->pool_bytes, a, sizeof(a));
        pcd_format_size(l.block_bytes, b, sizeof(b));
        return errf(err, errlen, PC_E_RANGE, "pool_bytes: %s holds %" PRIu64
                    " block%s of %s; the pool needs at least 2 (raise pool_bytes "
                    "or set pool_blocks)", a, cap, cap == 1 ? "" : "s", b);
    }
    if (cap > PC_POOL_MAX_BLOCKS)
        return errf(err, errlen, PC_E_RANGE, "pool: %" PRIu64 " blocks, more "
                    "than the %" PRIu64 " block ids can name", cap,
                    (uint64_t)PC_POOL_MAX_BLOCKS);
    if (c->low_watermark > c->high_watermark)
        return errf(err, errlen, PC_E_RANGE, "low_watermark %" PRIu64 " is above "
                    "high_watermark %" PRIu64, c->low_watermark, c->high_watermark);
    if (c->high_watermark > cap)
        return errf(err, errlen, PC_E_RANGE, "high_watermark %" PRIu64 " is above "
                    "the pool's capacity of %" PRIu64 " blocks", c->high_watermark,
                    cap);
    if ((rc = pcd_ns_priorities_parse(c->namespace_priorities, NULL, NULL, err,
                                      errlen)) ||
        (rc = pcd_pinned_prefixes_check(c->pinned_prefixes, err, errlen)) ||
        (rc = pcd_ns_quotas_check(c->namespace_quotas, err, errlen)))
        return rc;
    if (capacity)
        *capacity = cap;
    return 0;
}

static int prio_items(const char *text, pcd_prio_fn fn, void *ctx, char *err,
                      size_t errlen)
{
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *ns = p, *eq = NULL;
        while (*p && *p != ',') {
            if (*p == '=' && !eq)
                eq = p;
            p++;
        }
        const char *end = p;
        if (*p == ',')
            p++;
        while (end > ns && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == ns && !*p)
            break; /* trailing comma or spaces */
        if (!eq)
            return errf(err, errlen, PC_E_INVAL, "namespace_priorities: '%.*s' "
                        "is not NS=PRIO", (int)(end - ns), ns);
        const char *ne = eq;
        while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t'))
            ne--;
        size_t len = (size_t)(ne - ns);
        if (len == 0 || len > PC_NS_MAX)
            return errf(err, errlen, PC_E_RANGE, "namespace_priorities: a "
                        "namespace has 1..%d bytes, '%.*s' has %zu", PC_NS_MAX,
                        (int)(len > 40 ? 40 : len), ns, len);
        char num[32];
        const char *v = eq + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = (size_t)(end - v);
        char *stop;
        if (vl == 0 || vl >= sizeof(num))
            return errf(err, errlen, PC_E_INVAL, "namespace_priorities: '%.*s' "
                        "has no priority", (int)len, ns);
        memcpy(num, v, vl);
        num[vl] = 0;
        errno = 0;
        long long x = strtoll(num, &stop, 10);
        if (*stop || errno || x < -1000000 || x > 1000000)
            return errf(err, errlen, PC_E_RANGE, "namespace_priorities: '%s' "
                        "(for '%.*s') is not an integer in [-1000000, 1000000]",
                        num, (int)len, ns);
        int rc = fn ? fn(ctx, ns, len, (int32_t)x) : 0;
        if (rc)
            return errf(err, errlen, rc, "namespace_priorities: '%.*s': %s",
                        (int)len, ns, pc_strerror(rc));
    }
    return 0;
}

int pcd_ns_priorities_parse(const char *text, pcd_prio_fn fn, void *ctx,
                            char *err, size_t errlen)
{
    if (!text)
        return errf(err, errlen, PC_E_INVAL, "invalid argument");
    int rc = prio_items(text, NULL, NULL, err, errlen);
    return rc || !fn ? rc : prio_items(text, fn, ctx, err, errlen);
}

/* ---- the file ------------------------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                 s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

int pcd_config_load_file(pcd_config *c, const char *path, char *err,
                         size_t errlen)
{
    if (!c || !path)
        return errf(err, errlen, PC_E_INVAL, "invalid argument");
    FILE *f = fopen(path, "r");
    if (!f)
        return errf(err, errlen, PC_E_IO, "cannot read %s: %s", path, strerror(errno));
    pcd_config tmp = *c; /* all or nothing */
    unsigned seen[NELEM(KNOBS)] = {0};
    char *line = NULL, msg[200];
    size_t cap = 0;
    unsigned lineno = 0;
    int rc = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (memchr(line, 0, (size_t)got)) {
            rc = errf(err, errlen, PC_E_INVAL, "%s:%u: a NUL byte (is this a "
                      "text file?)", path, lineno);
            break;
        }
        /* '#' at the start or after blank space starts a comment, so that a
         * value may still hold a '#' ("/pool#2") */
        for (char *h = line; (h = strchr(h, '#')); h++)
            if (h == line || h[-1] == ' ' || h[-1] == '\t') {
                *h = 0;
                break;
            }
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = errf(err, errlen, PC_E_INVAL, "%s:%u: expected 'key = value', "
                      "got '%.60s'", path, lineno, s);
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        size_t vn = strlen(val);
        if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"') {
            val[vn - 1] = 0;
            val++;
        }
        const pcd_knob *k = pcd_knob_find(key, strlen(key));
        if (!*key) {
            rc = errf(err, errlen, PC_E_INVAL, "%s:%u: a value without a key",
                      path, lineno);
            break;
        }
        if (!k) {
            unknown(msg, sizeof(msg), key, strlen(key));
            rc = errf(err, errlen, PC_E_NOENT, "%s:%u: %s", path, lineno, msg);
            break;
        }
        size_t i = knob_index(k);
        if (seen[i]) {
            rc = errf(err, errlen, PC_E_INVAL, "%s:%u: %s is already set on "
                      "line %u", path, lineno, k->name, seen[i]);
            break;
        }
        seen[i] = lineno;
        if ((rc = set_text(&tmp, k, val, msg, sizeof(msg)))) {
            errf(err, errlen, rc, "%s:%u: %s", path, lineno, msg);
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = errf(err, errlen, PC_E_IO, "%s: read error", path);
    free(line);
    fclose(f);
    if (rc == 0)
        *c = tmp;
    return rc;
}

/* ---- command line ----------------------------------------------------------- */

void pcd_cmdline_free(pcd_cmdline *cl)
{
    if (!cl)
        return;
    free(cl->over);
    memset(cl, 0, sizeof(*cl));
}

/* "--lease-ttl-ms" names lease_ttl_ms. */
static const pcd_knob *option_knob(const char *name, size_t len)
{
    char buf[64];
    if (len >= sizeof(buf))
        return NULL;
    for (size_t i = 0; i < len; i++)
        buf[i] = name[i] == '-' ? '_' : name[i];
    return pcd_knob_find(buf, len);
}

int pcd_cmdline_parse(int argc, char **argv, pcd_cmdline *cl, char *err,
                      size_t errlen)
{
    memset(cl, 0, sizeof(*cl));
    if (argc > 1 && !(cl->over = calloc((size_t)argc, sizeof(*cl->over))))
        return errf(err, errlen, PC_E_NOMEM, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cl->help = true;
            continue;
        }
        if (strcmp(a, "--help-markdown") == 0) {
            cl->help_markdown = true;
            continue;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            cl->version = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2])
            return errf(err, errlen, PC_E_INVAL, "unexpected argument '%.60s' "
                        "(options are --name=value; see --help)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *value = eq ? eq + 1 : NULL;
        const pcd_knob *k = NULL;
        bool is_config = nlen == 6 && memcmp(name, "config", 6) == 0;
        if (!is_config && !(k = option_knob(name, nlen)))
            return errf(err, errlen, PC_E_NOENT, "unknown option '--%.*s' (see "
                        "--help)", (int)(nlen > 60 ? 60 : nlen), name);
        if (!value) {
            /* a bare bool option means true */
            if (k && k->type == PCD_BOOL &&
                (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
                value = "true";
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return errf(err, errlen, PC_E_INVAL, "option '--%.*s' needs a "
                            "value", (int)(nlen > 60 ? 60 : nlen), name);
        }
        if (is_config)
            cl->config_path = value;
        else
            cl->over[cl->n_over++] = (pcd_override){k, value};
    }
    return 0;
}

int pcd_config_load(pcd_config *c, const pcd_cmdline *cl, char *err,
                    size_t errlen)
{
    pcd_config tmp;
    char msg[256];
    int rc;
    table_defaults(&tmp, false);
    if (cl && cl->config_path &&
        (rc = pcd_config_load_file(&tmp, cl->config_path, err, errlen)))
        return rc;
    for (size_t i = 0; cl && i < cl->n_over; i++)
        if ((rc = set_text(&tmp, cl->over[i].knob, cl->over[i].value, msg,
                           sizeof(msg))))
            return errf(err, errlen, rc, "command line: %s", msg);
    /* Only now, and only for what is still unset: an explicit --endpoint
     * never creates a runtime directory.  (Computed knobs are strings
     * with a minimum length of 1, so empty means unset.) */
    for (size_t i = 0; i < NELEM(KNOBS); i++)
        if (!KNOBS[i].def && !cstr_of(&tmp, &KNOBS[i])[0])
            computed_default(&tmp, &KNOBS[i]);
    if ((rc = pcd_config_check(&tmp, NULL, msg, sizeof(msg))))
        return errf(err, errlen, rc, "configuration: %s", msg);
    *c = tmp;
    return 0;
}

/* ---- CONFIG rpc ------------------------------------------------------------- */

static void pack_value(const pcd_config *c, const pcd_knob *k, msgpack_packer *pk)
{
    pc_pack_cstr(pk, k->name);
    switch (k->type) {
    case PCD_INT:
    case PCD_SIZE: msgpack_pack_uint64(pk, *cu64_of(c, k)); break;
    case PCD_STR: pc_pack_cstr(pk, cstr_of(c, k)); break;
    case PCD_ENUM: pc_pack_cstr(pk, k->choice(*cint_of(c, k))); break;
    case PCD_BOOL:
        if (*cbool_of(c, k))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case PCD_MODE: { /* as text: "0660" reads as a mode, 432 does not */
        char buf[16];
        pcd_config_format(c, k, buf, sizeof(buf));
        pc_pack_cstr(pk, buf);
        break;
    }
    }
}

int pcd_config_pack(const pcd_config *c, const msgpack_object *names,
                    msgpack_packer *pk, char *err, size_t errlen)
{
    if (!names) {
        msgpack_pack_map(pk, NELEM(KNOBS));
        for (size_t i = 0; i < NELEM(KNOBS); i++)
            pack_value(c, &KNOBS[i], pk);
        return 0;
    }
    if (names->type != MSGPACK_OBJECT_ARRAY)
        return errf(err, errlen, PC_E_BADMSG, "config get: names must be an array");
    /* Every name first: an error packs nothing. */
    uint64_t want = 0;
    for (uint32_t i = 0; i < names->via.array.size; i++) {
        const msgpack_object *o = &names->via.array.ptr[i];
        if (o->type != MSGPACK_OBJECT_STR)
            return errf(err, errlen, PC_E_BADMSG, "config get: a name is not a string");
        const pcd_knob *k = pcd_knob_find(o->via.str.ptr, o->via.str.size);
        if (!k)
            return unknown(err, errlen, o->via.str.ptr, o->via.str.size);
        want |= 1ull << knob_index(k);
    }
    /* A name asked twice is packed once: a map has unique keys. */
    msgpack_pack_map(pk, (size_t)__builtin_popcountll(want));
    for (size_t i = 0; i < NELEM(KNOBS); i++)
        if (want >> i & 1)
            pack_value(c, &KNOBS[i], pk);
    return 0;
}

/* ---- reload ----------------------------------------------------------------- */

static void copy_value(pcd_config *dst, const pcd_config *src, const pcd_knob *k)
{
    switch (k->type) {
    case PCD_INT:
    case PCD_SIZE:
    case PCD_MODE: *u64_of(dst, k) = *cu64_of(src, k); break;
    case PCD_STR: memcpy(str_of(dst, k), cstr_of(src, k), k->max + 1); break;
    case PCD_ENUM: *int_of(dst, k) = *cint_of(src, k); break;
    case PCD_BOOL: *bool_of(dst, k) = *cbool_of(src, k); break;
    }
}

int pcd_config_reload(pcd_config *cur, const pcd_config *next, bool log,
                      pcd_reload *out, char *err, size_t errlen)
{
    pcd_reload r = {0, 0, 0, 0};
    pcd_config m = *cur;
    for (size_t i = 0; i < NELEM(KNOBS); i++) {
        const pcd_knob *k = &KNOBS[i];
        if (pcd_config_equal(cur, next, k))
            continue;
        if (k->reloadable) {
            copy_value(&m, next, k);
            r.applied |= 1ull << i;
            r.n_applied++;
        } else {
            r.ignored |= 1ull << i;
            r.n_ignored++;
        }
    }
    if (out)
        *out = r;
    int rc = pcd_config_check(&m, NULL, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; log && i < NELEM(KNOBS); i++) {
        const pcd_knob *k = &KNOBS[i];
        char a[PCD_ENDPOINT_MAX], b[PCD_ENDPOINT_MAX];
        if (!((r.applied | r.ignored) >> i & 1))
            continue;
        pcd_config_format(cur, k, a, sizeof(a));
        pcd_config_format(next, k, b, sizeof(b));
        if (r.applied >> i & 1)
            pcd_log(PC_LOG_INFO, "%s: %s -> %s", k->name, a, b);
        else
            pcd_log(PC_LOG_WARN, "%s: %s -> %s ignored: not reloadable (restart "
                    "prefixcached to apply it)", k->name, a, b);
    }
    *cur = m;
    return (int)r.n_applied;
}

/* ---- --help and docs/config.md ------------------------------------------------ */

/* Print text wrapped at width, each line indented. */
static void wrap(FILE *f, const char *text, int indent, int width)
{
    const char *p = text;
    while (*p) {
        int col = indent;
        fprintf(f, "%*s", indent, "");
        int first = 1;
        while (*p) {
            size_t w = strcspn(p, " ");
            if (!first && col + 1 + (int)w > width)
                break;
            fprintf(f, "%s%.*s", first ? "" : " ", (int)w, p);
            col += (first ? 0 : 1) + (int)w;
            first = 0;
            p += w;
            while (*p == ' ')
                p++;
        }
        fputc('\n', f);
    }
}

/* Backticks are markdown; the terminal gets the text without them. */
static void strip_ticks(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in && o + 1 < len; in++)
        if (*in != '`')
            out[o++] = *in;
    out[o] = 0;
}

static void default_text(const pcd_knob *k, char *buf, size_t len)
{
    uint64_t v;
    if (!k->def)
        snprintf(buf, len, "%s", k->def_doc);
    else if (k->type == PCD_STR && !k->def[0])
        snprintf(buf, len, "\"\"");
    else if (k->type == PCD_SIZE && parse_size(k->def, &v) == 0)
        pcd_format_size(v, buf, len); /* as the bounds are shown: 16MiB */
    else
        snprintf(buf, len, "%s", k->def);
}

static void range_text(const pcd_knob *k, char *buf, size_t len)
{
    char a[32], b[32];
    switch (k->type) {
    case PCD_INT:
    case PCD_SIZE:
    case PCD_MODE:
        bound_text(k, k->min, a, sizeof(a));
        bound_text(k, k->max, b, sizeof(b));
        snprintf(buf, len, "%s..%s", a, b);
        break;
    case PCD_STR: snprintf(buf, len, "%" PRIu64 "..%" PRIu64 " bytes", k->min, k->max); break;
    case PCD_ENUM: choices_text(k, ", ", buf, len); break;
    case PCD_BOOL: snprintf(buf, len, "true, false"); break;
    }
}

void pcd_config_write_help(FILE *f, const char *argv0)
{
    const char *me = argv0 && *argv0 ? argv0 : "prefixcached";
    fprintf(f,
            "Usage: %s [--config FILE] [--NAME=VALUE | --NAME VALUE]...\n"
            "       %s --help | --help-markdown | --version\n"
            "\n"
            "prefixcached " PCD_VERSION ": the shared KV prefix cache daemon.  With no\n"
            "options it serves a Llama-3-8B-shaped cache from a 1 GiB host\n"
            "shared-memory pool on the default endpoint.  Values come from the\n"
            "defaults, then the --config file, then the options (later wins).\n"
            "SIGHUP re-reads the file and applies the [reloadable] knobs;\n"
            "SIGTERM or SIGINT stops cleanly.\n"
            "\n"
            "Options:\n"
            "  --config FILE    knobs as \"key = value\" lines (docs/config.md)\n"
            "  --help           this text\n"
            "  --help-markdown  the knob reference as markdown (docs/config.md)\n"
            "  --version        the daemon and protocol versions\n"
            "\n"
            "Knobs (--name=value or --name value; '-' may replace '_'):\n",
            me, me);
    for (size_t i = 0; i < NELEM(KNOBS); i++) {
        const pcd_knob *k = &KNOBS[i];
        char def[64], range[96], help[1024];
        default_text(k, def, sizeof(def));
        range_text(k, range, sizeof(range));
        strip_ticks(k->help, help, sizeof(help));
        fprintf(f, "  --%s=%s  (default %s; %s)%s\n", k->name,
                k->type == PCD_STR ? "STRING" : k->type == PCD_SIZE ? "SIZE"
                : k->type == PCD_INT ? "INT" : k->type == PCD_BOOL ? "BOOL"
                : k->type == PCD_MODE ? "MODE" : "NAME",
                def, range, k->reloadable ? " [reloadable]" : "");
        wrap(f, help, 6, 78);
    }
    fprintf(f, "\nSizes take K, M, G, T or KiB, MiB, GiB, TiB (all powers of "
               "1024).\n");
}

void pcd_config_write_markdown(FILE *f)
{
    fputs(
        "# prefixcached configuration\n"
        "\n"
        "<!-- Generated by `prefixcached --help-markdown` from the knob table in\n"
        "daemon/config.c; tests/test_daemon_config.c fails when this file and the\n"
        "table disagree.  Regenerate with:\n"
        "    build/release/daemon/prefixcached --help-markdown > docs/config.md -->\n"
        "\n"
        "Every knob has a built-in default: `prefixcached` with no configuration\n"
        "at all serves a Llama-3-8B-shaped cache (32 layers, 8 KV heads, head_dim\n"
        "128, fp16, 16-token pages: 2 MiB blocks) from a 1 GiB host shared-memory\n"
        "pool, and logs where it listens and the pool layout.\n"
        "\n"
        "Who may connect and what each client may do (`socket_mode`,\n"
        "`curve_key_file`, `allow_list_file`, `insecure_tcp`): see\n"
        "[SECURITY.md](SECURITY.md).\n"
        "\n"
        "Values come from three places; a later one wins:\n"
        "\n"
        "1. the defaults in the table below;\n"
        "2. the file named by `--config FILE`;\n"
        "3. command-line options, `--name=value` or `--name value` (`-` may\n"
        "   replace `_`: `--lease-ttl-ms 5000`; a bool alone means true).\n"
        "\n"
        "Other options: `--help` (generated from the same table), `--help-markdown`\n"
        "(this page), `--version`.\n"
        "\n"
        "## The file\n"
        "\n"
        "One `key = value` per line.  Blank lines are skipped; `#` at the start of\n"
        "a line or after a blank starts a comment.  A value may be wrapped in\n"
        "double quotes (`shm_name = \"\"`).  An unknown key, a knob set twice, a\n"
        "value that does not parse or is out of range: the whole file is refused\n"
        "with the file, the line and the reason, e.g.\n"
        "\n"
        "    prefixcached: /etc/prefixcache.conf:7: layers: 0 is below the minimum 1\n"
        "\n"
        "An example:\n"
        "\n"
        "```\n"
        "# /etc/prefixcache.conf: a Llama-3-70B-shaped cache on 64 GiB\n"
        "endpoint     = tcp://127.0.0.1:5555\n"
        "pool_bytes   = 64GiB    # rounded down to whole blocks\n"
        "layers       = 80\n"
        "kv_heads     = 8\n"
        "head_dim     = 128\n"
        "dtype        = bf16\n"
        "lease_ttl_ms = 10000\n"
        "log_level    = debug\n"
        "```\n"
        "\n"
        "Types:\n"
        "\n"
        "| type | what it takes |\n"
        "|---|---|\n"
        "| int | a decimal integer |\n"
        "| size | bytes: an integer with an optional suffix K, M, G, T or KiB, MiB, GiB, TiB (case does not matter; all are powers of 1024) |\n"
        "| string | text, possibly empty where the range allows 0 bytes |\n"
        "| enum | one of the listed names |\n"
        "| bool | true/false, yes/no, on/off, 1/0 |\n"
        "| mode | permission bits in octal: `0600`, `0660` (a leading 0 is optional; never decimal) |\n"
        "\n"
        "## Changing knobs while the daemon runs\n"
        "\n"
        "Knobs with *yes* under \"reload\" change without a restart:\n"
        "\n"
        "- `kill -HUP <pid>` re-reads the `--config` file (with the same\n"
        "  command-line options on top) and applies the reloadable knobs that\n"
        "  changed, logging each one (`lease_ttl_ms: 30000 -> 5000`).  A changed\n"
        "  knob that is not reloadable is logged and ignored until a restart; a\n"
        "  file with an error is refused as a whole and the running values stay.\n"
        "- `prefixcache-cli config set NAME VALUE` (the CONFIG request) sets\n"
        "  reloadable knobs, all or nothing: a knob that is not reloadable is\n"
        "  refused with PC_E_PERM, an unknown one with PC_E_NOENT, a value out of\n"
        "  range with PC_E_RANGE.  `prefixcache-cli config get [NAME]` shows the\n"
        "  running values.\n"
        "\n"
        "The file and the command line stay the source of truth: a value set with\n"
        "`config set` lasts until the next SIGHUP or restart.  New limits apply to\n"
        "new requests; leases keep what they already hold.\n"
        "\n"
        "## Knobs\n"
        "\n"
        "| knob | type | default | range | reload | what |\n"
        "|---|---|---|---|---|---|\n",
        f);
    for (size_t i = 0; i < NELEM(KNOBS); i++) {
        const pcd_knob *k = &KNOBS[i];
        char def[64], range[96];
        default_text(k, def, sizeof(def));
        range_text(k, range, sizeof(range));
        fprintf(f, "| `%s` | %s | %s | %s | %s | %s |\n", k->name,
                type_name(k->type), def, range, k->reloadable ? "yes" : "no",
                k->help);
    }
}

/*
 * tests/test_daemon_config.c - the daemon's knob table and what is generated
 * from it (daemon/daemon.h, daemon/config.c).
 *
 * Parsing: defaults, the file (comments, quotes, every error with its
 * file:line), command-line overrides and their precedence, size suffixes,
 * bounds, enums, bools.  Output: --help names every knob; docs/config.md is
 * byte for byte what `prefixcached --help-markdown` prints (so the docs
 * cannot drift from the table).  Reload: what changes, what is refused, all
 * or nothing; the same through a live pcd_daemon (CONFIG set and SIGHUP's
 * re-read), on the index-only pool and a private ipc endpoint.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "rpc/client.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char g_err[512];

/* pcd_config_defaults computes the default endpoint, which may create a
 * runtime directory: XDG_RUNTIME_DIR points at a private one for the whole
 * program (each process that runs this makes its own), so that no test
 * here touches /run/prefixcache or /tmp/prefixcache-<uid>. */
static char g_xdg[64];
static pid_t g_xdg_owner;

__attribute__((constructor)) static void private_runtime_dir(void)
{
    snprintf(g_xdg, sizeof(g_xdg), "/tmp/pcd-xdg-%ld", (long)getpid());
    if (mkdir(g_xdg, 0700) == 0 || errno == EEXIST) {
        setenv("XDG_RUNTIME_DIR", g_xdg, 1);
        g_xdg_owner = getpid();
    }
}

__attribute__((destructor)) static void private_runtime_dir_gone(void)
{
    if (g_xdg_owner == getpid())
        rmdir(g_xdg);
}

/* ---- helpers --------------------------------------------------------------- */

/* A temporary file holding text; the name goes to path (>= 64 bytes). */
static void write_tmp(char *path, const char *text)
{
    snprintf(path, 64, "/tmp/pcd-test-%ld-XXXXXX", (long)getpid());
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* Load text as a config file over the defaults: the return code, g_err. */
static int load_text(pcd_config *c, const char *text, char *path)
{
    pcd_config_defaults(c);
    write_tmp(path, text);
    g_err[0] = 0;
    int rc = pcd_config_load_file(c, path, g_err, sizeof(g_err));
    unlink(path);
    return rc;
}

/* Parse argv (NULL-terminated, argv[0] included) and load. */
static int load_args(pcd_config *c, const char *const *argv, pcd_cmdline *cl)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    g_err[0] = 0;
    int rc = pcd_cmdline_parse(argc, (char **)argv, cl, g_err, sizeof(g_err));
    if (rc == 0)
        rc = pcd_config_load(c, cl, g_err, sizeof(g_err));
    return rc;
}

static char *capture(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    fn(f);
    fclose(f);
    return buf;
}

static void help_default(FILE *f) { pcd_config_write_help(f, "prefixcached"); }

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0, n;
    do {
        if (len + 4096 + 1 > cap) {
            cap = (len + 4096 + 1) * 2;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
        n = fread(buf + len, 1, 4096, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = 0;
    return buf;
}

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* ---- defaults ---------------------------------------------------------------- */

Test(config, defaults_are_the_embedded_llama3_8b_shape)
{
    pcd_config c;
    pcd_config_defaults(&c);
    cr_expect_eq(c.pool_backend, PC_POOL_HOST);
    cr_expect_eq(c.pool_bytes, 1ull << 30);
    cr_expect_eq(c.pool_blocks, 0);
    cr_expect_str_eq(c.shm_name, "");
    cr_expect_eq(c.layers, 32);
    cr_expect_eq(c.kv_heads, 8);
    cr_expect_eq(c.head_dim, 128);
    cr_expect_eq(c.dtype, PC_DTYPE_FP16);
    cr_expect_eq(c.page_tokens, 16);
    cr_expect_eq(c.low_watermark, 0);
    cr_expect_eq(c.high_watermark, 0);
    cr_expect_eq(c.lease_ttl_ms, 30000);
    cr_expect_eq(c.max_msg_bytes, 16u << 20);
    cr_expect_eq(c.max_tokens, 1048576);
    cr_expect_eq(c.log_level, PC_LOG_INFO);
    cr_expect_eq(c.log_utc, false);
    char ep[PCD_ENDPOINT_MAX];
    cr_assert_eq(pc_rpc_default_endpoint(ep, sizeof(ep)), 0);
    cr_expect_str_eq(c.endpoint, ep);
    cr_expect_str_eq(c.socket_group, "");
    cr_expect_eq(c.socket_mode, 0600);
    cr_expect_eq(c.pool_mode, 0600);
    uint64_t cap = 0;
    cr_assert_eq(pcd_config_check(&c, &cap, g_err, sizeof(g_err)), 0, "%s", g_err);
    cr_expect_eq(cap, 512, "1 GiB of 2 MiB blocks"); /* 2x32x8x128x16x2 bytes */
}

Test(config, every_default_formats_and_parses_back)
{
    size_t n;
    const pcd_knob *k = pcd_knobs(&n);
    pcd_config a, b;
    pcd_config_defaults(&a);
    for (size_t i = 0; i < n; i++) {
        char txt[PCD_ENDPOINT_MAX];
        pcd_config_format(&a, &k[i], txt, sizeof(txt));
        pcd_config_defaults(&b);
        memset((char *)&b + k[i].off, 0x5a, 1); /* spoil the field */
        cr_assert_eq(pcd_config_set(&b, k[i].name, txt, g_err, sizeof(g_err)), 0,
                     "%s = '%s': %s", k[i].name, txt, g_err);
        cr_expect(pcd_config_equal(&a, &b, &k[i]), "%s round trip", k[i].name);
        cr_expect(k[i].help && *k[i].help, "%s has help", k[i].name);
        cr_expect(k[i].def || (k[i].def_fn && k[i].def_doc), "%s default", k[i].name);
    }
}

/* The rules themselves: tests/test_daemon_start.c.  Here: the knob's
 * default is pc_rpc_default_endpoint(), computed only when nothing set the
 * endpoint, and a missing default is a clear error. */
Test(config, default_endpoint_is_the_clients_and_computed_last)
{
    char want[128];
    snprintf(want, sizeof(want), "ipc://%s/prefixcache.sock", g_xdg);
    pcd_config c;
    pcd_cmdline cl;
    const char *const none[] = {"prefixcached", NULL};
    cr_assert_eq(load_args(&c, none, &cl), 0, "%s", g_err);
    cr_expect_str_eq(c.endpoint, want);
    pcd_cmdline_free(&cl);

    /* an explicit endpoint wins, and is taken as given (no default is
     * resolved, no directory created) */
    setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
    setenv("HOME", "relative/home", 1);
    const char *const ep[] = {"prefixcached", "--endpoint=tcp://127.0.0.1:1", NULL};
    cr_assert_eq(load_args(&c, ep, &cl), 0, "%s", g_err);
    cr_expect_str_eq(c.endpoint, "tcp://127.0.0.1:1");
    pcd_cmdline_free(&cl);
    setenv("XDG_RUNTIME_DIR", g_xdg, 1);

    c.endpoint[0] = 0; /* what a failed default leaves */
    cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), PC_E_PERM);
    cr_expect(contains(g_err, "endpoint: no default"), "%s", g_err);
}

Test(config, modes_are_octal_and_keep_the_owner)
{
    pcd_config c;
    pcd_config_defaults(&c);
    cr_expect_eq(pcd_config_set(&c, "socket_mode", "0660", g_err, sizeof(g_err)), 0);
    cr_expect_eq(c.socket_mode, 0660);
    cr_expect_eq(pcd_config_set(&c, "pool_mode", "640", g_err, sizeof(g_err)), 0);
    cr_expect_eq(c.pool_mode, 0640);
    char txt[16];
    pcd_config_format(&c, pcd_knob_find("pool_mode", 9), txt, sizeof(txt));
    cr_expect_str_eq(txt, "0640");
    cr_expect_eq(pcd_config_set(&c, "socket_mode", "0680", g_err, sizeof(g_err)),
                 PC_E_INVAL);
    cr_expect(contains(g_err, "not a mode"), "%s", g_err);
    cr_expect_eq(pcd_config_set(&c, "socket_mode", "", g_err, sizeof(g_err)),
                 PC_E_INVAL);
    cr_expect_eq(pcd_config_set(&c, "socket_mode", "01000", g_err, sizeof(g_err)),
                 PC_E_RANGE);
    cr_expect_str_eq(g_err, "socket_mode: 1000 is above the maximum 0777");
    cr_expect_eq(c.socket_mode, 0660, "failures change nothing");
    cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), 0, "%s", g_err);
    c.socket_mode = 0060;
    cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect_str_eq(g_err, "socket_mode: 0060 must include 0600 (the owner's "
                     "read and write)");
    c.socket_mode = 0600;
    c.pool_mode = 0400;
    cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect(contains(g_err, "pool_mode: 0400"), "%s", g_err);

    /* CONFIG: a uint sets the bits, a reply shows them as text */
    msgpack_object val = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    val.via.u64 = 0664;
    cr_expect_eq(pcd_config_set_object(&c, "pool_mode", 9, &val, g_err,
                                       sizeof(g_err)), 0, "%s", g_err);
    cr_expect_eq(c.pool_mode, 0664);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_object name = {.type = MSGPACK_OBJECT_STR};
    name.via.str.ptr = "pool_mode";
    name.via.str.size = 9;
    msgpack_object arr = {.type = MSGPACK_OBJECT_ARRAY};
    arr.via.array.ptr = &name;
    arr.via.array.size = 1;
    cr_assert_eq(pcd_config_pack(&c, &arr, &pk, g_err, sizeof(g_err)), 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off),
                 MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *o = pc_mp_get(&up.data, "pool_mode");
    cr_expect(o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == 4 &&
              memcmp(o->via.str.ptr, "0664", 4) == 0);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- values ---------------------------------------------------------------------- */

Test(config, size_suffixes)
{
    static const struct { const char *in; uint64_t want; } ok[] = {
        {"4096", 4096},          {"1K", 1024},
        {"1KiB", 1024},          {"8k", 8192},
        {"2M", 2u << 20},        {"3MiB", 3u << 20},
        {"16 MiB", 16u << 20},   {"1G", 1ull << 30},
        {"1GiB", 1ull << 30},    {"64gib", 64ull << 30},
        {"1T", 1ull << 40},      {"2TiB", 2ull << 40},
    };
    for (size_t i = 0; i < NELEM(ok); i++) {
        pcd_config c;
        pcd_config_defaults(&c);
        cr_expect_eq(pcd_config_set(&c, "pool_bytes", ok[i].in, g_err, sizeof(g_err)),
                     0, "'%s': %s", ok[i].in, g_err);
        cr_expect_eq(c.pool_bytes, ok[i].want, "'%s'", ok[i].in);
    }
    static const struct { const char *in; int rc; } bad[] = {
        {"", PC_E_INVAL},     {"K", PC_E_INVAL},    {"1X", PC_E_INVAL},
        {"-1", PC_E_INVAL},   {"1.5G", PC_E_INVAL}, {"1 G B", PC_E_INVAL},
        {"0x10", PC_E_INVAL}, {"1KB", PC_E_INVAL},
        {"99999999999999999999", PC_E_RANGE}, /* > 2^64 */
        {"20000000T", PC_E_RANGE},            /* overflows when scaled */
        {"300TiB", PC_E_RANGE},               /* above the knob's max  */
        {"0", PC_E_RANGE},                    /* below the knob's min  */
    };
    for (size_t i = 0; i < NELEM(bad); i++) {
        pcd_config c;
        pcd_config_defaults(&c);
        g_err[0] = 0;
        cr_expect_eq(pcd_config_set(&c, "pool_bytes", bad[i].in, g_err, sizeof(g_err)),
                     bad[i].rc, "'%s'", bad[i].in);
        cr_expect(contains(g_err, "pool_bytes"), "'%s': '%s'", bad[i].in, g_err);
        cr_expect_eq(c.pool_bytes, 1ull << 30, "unchanged after '%s'", bad[i].in);
    }
    pcd_config c;
    pcd_config_defaults(&c);
    cr_expect_eq(pcd_config_set(&c, "max_msg_bytes", "1K", g_err, sizeof(g_err)),
                 PC_E_RANGE);
    cr_expect_str_eq(g_err, "max_msg_bytes: 1KiB is below the minimum 4KiB");
}

Test(config, ints_enums_bools_strings)
{
    pcd_config c;
    pcd_config_defaults(&c);
    cr_expect_eq(pcd_config_set(&c, "layers", "80", g_err, sizeof(g_err)), 0);
    cr_expect_eq(c.layers, 80);
    cr_expect_eq(pcd_config_set(&c, "layers", "0", g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect_str_eq(g_err, "layers: 0 is below the minimum 1");
    cr_expect_eq(pcd_config_set(&c, "page_tokens", "2048", g_err, sizeof(g_err)),
                 PC_E_RANGE);
    cr_expect_str_eq(g_err, "page_tokens: 2048 is above the maximum 1024");
    cr_expect_eq(pcd_config_set(&c, "layers", "8x", g_err, sizeof(g_err)), PC_E_INVAL);
    cr_expect_eq(pcd_config_set(&c, "layers", "+8", g_err, sizeof(g_err)), PC_E_INVAL);
    cr_expect_eq(pcd_config_set(&c, "layers", "1M", g_err, sizeof(g_err)), PC_E_INVAL,
                 "an int knob takes no suffix");
    cr_expect_eq(c.layers, 80, "failures change nothing");

    cr_expect_eq(pcd_config_set(&c, "dtype", "bf16", g_err, sizeof(g_err)), 0);
    cr_expect_eq(c.dtype, PC_DTYPE_BF16);
    cr_expect_eq(pcd_config_set(&c, "dtype", "fp99", g_err, sizeof(g_err)), PC_E_INVAL);
    cr_expect_str_eq(g_err, "dtype: 'fp99' is not one of fp32, fp16, bf16, fp8, int8");
    cr_expect_eq(pcd_config_set(&c, "pool_backend", "cuda", g_err, sizeof(g_err)), 0,
                 "cuda is a backend (gpu_ops says on what: fake on a CPU)");
    cr_expect_eq(c.pool_backend, PC_POOL_CUDA);
    cr_expect_eq(pcd_config_set(&c, "pool_backend", "gpu", g_err, sizeof(g_err)),
                 PC_E_INVAL);
    cr_expect_eq(pcd_config_set(&c, "gpu_ops", "fake", g_err, sizeof(g_err)), 0);
    cr_expect_str_eq(pcd_gpu_ops_name(c.gpu_ops), "fake");
    cr_expect_eq(pcd_config_set(&c, "gpu_ops", "rocm", g_err, sizeof(g_err)), PC_E_INVAL);
    cr_expect_str_eq(g_err, "gpu_ops: 'rocm' is not one of cuda, fake");
    cr_expect_eq(pcd_config_set(&c, "gpu_device", "64", g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect_eq(pcd_config_set(&c, "pool_backend", "none", g_err, sizeof(g_err)), 0);
    cr_expect_eq(c.pool_backend, PC_POOL_NONE);
    cr_expect_eq(pcd_config_set(&c, "log_level", "debug", g_err, sizeof(g_err)), 0);
    cr_expect_eq(c.log_level, PC_LOG_DEBUG);

    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE"};
    static const char *const no[] = {"false", "no", "off", "0", "Off"};
    for (size_t i = 0; i < NELEM(yes); i++) {
        cr_expect_eq(pcd_config_set(&c, "log_utc", yes[i], g_err, sizeof(g_err)), 0);
        cr_expect(c.log_utc, "%s", yes[i]);
        cr_expect_eq(pcd_config_set(&c, "log_utc", no[i], g_err, sizeof(g_err)), 0);
        cr_expect(!c.log_utc, "%s", no[i]);
    }
    cr_expect_eq(pcd_config_set(&c, "log_utc", "maybe", g_err, sizeof(g_err)),
                 PC_E_INVAL);

    char longs[300];
    memset(longs, 'a', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = 0;
    cr_expect_eq(pcd_config_set(&c, "endpoint", longs, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect_eq(pcd_config_set(&c, "endpoint", "", g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect_eq(pcd_config_set(&c, "shm_name", "", g_err, sizeof(g_err)), 0,
                 "empty shm_name = pick one");
    cr_expect_eq(pcd_config_set(&c, "nope", "1", g_err, sizeof(g_err)), PC_E_NOENT);
    cr_expect(contains(g_err, "unknown knob 'nope'"), "%s", g_err);
}

Test(config, cross_knob_checks)
{
    pcd_config c;
    uint64_t cap;
    pcd_config_defaults(&c);
    c.low_watermark = 10;
    c.high_watermark = 5;
    cr_expect_eq(pcd_config_check(&c, &cap, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect_str_eq(g_err, "low_watermark 10 is above high_watermark 5");
    c.high_watermark = 513;
    cr_expect_eq(pcd_config_check(&c, &cap, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect(contains(g_err, "capacity of 512 blocks"), "%s", g_err);
    c.high_watermark = 512;
    cr_expect_eq(pcd_config_check(&c, &cap, g_err, sizeof(g_err)), 0, "%s", g_err);

    pcd_config_defaults(&c);
    c.pool_bytes = 3ull << 20; /* one 2 MiB block */
    cr_expect_eq(pcd_config_check(&c, &cap, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect(contains(g_err, "holds 1 block of 2MiB"), "%s", g_err);
    c.pool_blocks = 2; /* wins over pool_bytes */
    cr_expect_eq(pcd_config_check(&c, &cap, g_err, sizeof(g_err)), 0, "%s", g_err);
    cr_expect_eq(cap, 2);

    pcd_config_defaults(&c);
    snprintf(c.shm_name, sizeof(c.shm_name), "no-slash");
    cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), PC_E_INVAL);
    snprintf(c.shm_name, sizeof(c.shm_name), "/a/b");
    cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), PC_E_INVAL);
    snprintf(c.shm_name, sizeof(c.shm_name), "/ok");
    cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), 0);

    static const char *const eps[] = {"foo://x", "ipc://", "tcp://", "/tmp/x.sock"};
    for (size_t i = 0; i < NELEM(eps); i++) {
        pcd_config_defaults(&c);
        snprintf(c.endpoint, sizeof(c.endpoint), "%s", eps[i]);
        cr_expect_eq(pcd_config_check(&c, NULL, g_err, sizeof(g_err)), PC_E_INVAL,
                     "%s", eps[i]);
    }
}

/* ---- the file ------------------------------------------------------------------- */

Test(config, file_with_comments_quotes_and_sizes)
{
    pcd_config c;
    char path[64];
    int rc = load_text(&c,
                       "# a comment line\n"
                       "\n"
                       "   # an indented comment\n"
                       "endpoint = tcp://127.0.0.1:5555   # trailing comment\n"
                       "pool_bytes=64GiB\n"
                       "\tlayers\t=\t80\r\n"
                       "shm_name = \"/pool#2\"\n"
                       "dtype = bf16\n"
                       "log_utc = yes\n"
                       "lease_ttl_ms = 10000", /* no final newline */
                       path);
    cr_assert_eq(rc, 0, "%s", g_err);
    cr_expect_str_eq(c.endpoint, "tcp://127.0.0.1:5555");
    cr_expect_eq(c.pool_bytes, 64ull << 30);
    cr_expect_eq(c.layers, 80);
    cr_expect_str_eq(c.shm_name, "/pool#2", "# inside a value is kept");
    cr_expect_eq(c.dtype, PC_DTYPE_BF16);
    cr_expect(c.log_utc);
    cr_expect_eq(c.lease_ttl_ms, 10000);
    cr_expect_eq(c.kv_heads, 8, "untouched knobs keep their defaults");
}

Test(config, file_errors_name_the_file_and_line)
{
    static const struct { const char *text; int rc; const char *msg; } cases[] = {
        {"layers = 4\nbogus = 1\n", PC_E_NOENT, ":2: unknown knob 'bogus'"},
        {"# c\n\nlayers = 0\n", PC_E_RANGE, ":3: layers: 0 is below the minimum 1"},
        {"dtype = fp99\n", PC_E_INVAL, ":1: dtype: 'fp99' is not one of"},
        {"pool_bytes = 12X\n", PC_E_INVAL, ":1: pool_bytes: '12X' is not a size"},
        {"layers 4\n", PC_E_INVAL, ":1: expected 'key = value'"},
        {"= 4\n", PC_E_INVAL, ":1: a value without a key"},
        {"layers = 4\nkv_heads = 2\nlayers = 5\n", PC_E_INVAL,
         ":3: layers is already set on line 1"},
        {"max_tokens = 999999999999\n", PC_E_RANGE, ":1: max_tokens: 999999999999 "
         "is above the maximum 268435456"},
        {"log_utc = maybe\n", PC_E_INVAL, ":1: log_utc: 'maybe' is not a bool"},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        pcd_config c, before;
        char path[64];
        int rc = load_text(&c, cases[i].text, path);
        pcd_config_defaults(&before);
        cr_expect_eq(rc, cases[i].rc, "case %zu: %s", i, g_err);
        cr_expect(contains(g_err, path), "case %zu names the file: %s", i, g_err);
        cr_expect(contains(g_err, cases[i].msg), "case %zu: '%s' lacks '%s'", i,
                  g_err, cases[i].msg);
        cr_expect_eq(memcmp(&c, &before, sizeof(c)), 0,
                     "case %zu: a refused file changes nothing", i);
    }
    pcd_config c;
    pcd_config_defaults(&c);
    cr_expect_eq(pcd_config_load_file(&c, "/nonexistent/pc.conf", g_err,
                                      sizeof(g_err)), PC_E_IO);
    cr_expect(contains(g_err, "/nonexistent/pc.conf"), "%s", g_err);
}

/* ---- the command line ----------------------------------------------------------- */

Test(config, command_line_overrides_win_over_the_file)
{
    char path[64];
    write_tmp(path, "layers = 80\nkv_heads = 4\nlease_ttl_ms = 10000\n");
    const char *argv[] = {"prefixcached", "--layers=40", "--config", path,
                          "--lease-ttl-ms", "5000", "--log_utc",
                          "--dtype", "fp8", "--max-msg-bytes=1MiB", NULL};
    pcd_config c;
    pcd_cmdline cl;
    int rc = load_args(&c, argv, &cl);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", g_err);
    cr_expect_str_eq(cl.config_path, path);
    cr_expect_eq(cl.n_over, 5);
    cr_expect_eq(c.layers, 40, "the option wins, wherever it stands");
    cr_expect_eq(c.kv_heads, 4, "from the file");
    cr_expect_eq(c.lease_ttl_ms, 5000, "'-' for '_', value as next argument");
    cr_expect(c.log_utc, "a bare bool means true");
    cr_expect_eq(c.dtype, PC_DTYPE_FP8);
    cr_expect_eq(c.max_msg_bytes, 1u << 20);
    cr_expect_eq(c.head_dim, 128, "default");
    pcd_cmdline_free(&cl);
}

Test(config, command_line_errors)
{
    static const struct { const char *const argv[4]; int rc; const char *msg; } cases[] = {
        {{"p", "--nope=1", NULL}, PC_E_NOENT, "unknown option '--nope'"},
        {{"p", "stray", NULL}, PC_E_INVAL, "unexpected argument 'stray'"},
        {{"p", "--layers", NULL}, PC_E_INVAL, "'--layers' needs a value"},
        {{"p", "--config", NULL}, PC_E_INVAL, "'--config' needs a value"},
        {{"p", "--layers=0", NULL}, PC_E_RANGE, "command line: layers: 0 is below"},
        {{"p", "--low_watermark=9", NULL}, PC_E_RANGE,
         "configuration: low_watermark 9 is above high_watermark 0"},
        {{"p", "--config=/nonexistent/x.conf", NULL}, PC_E_IO, "/nonexistent/x.conf"},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        pcd_config c;
        pcd_cmdline cl;
        int rc = load_args(&c, cases[i].argv, &cl);
        cr_expect_eq(rc, cases[i].rc, "case %zu: %s", i, g_err);
        cr_expect(contains(g_err, cases[i].msg), "case %zu: '%s' lacks '%s'", i,
                  g_err, cases[i].msg);
        pcd_cmdline_free(&cl);
    }
    const char *argv[] = {"p", "--help", "--version", "--help-markdown", NULL};
    pcd_cmdline cl;
    cr_expect_eq(pcd_cmdline_parse(4, (char **)argv, &cl, g_err, sizeof(g_err)), 0);
    cr_expect(cl.help && cl.version && cl.help_markdown);
    pcd_cmdline_free(&cl);
}

/* ---- generated text -------------------------------------------------------------- */

Test(config, help_names_every_knob)
{
    char *help = capture(help_default);
    size_t n;
    const pcd_knob *k = pcd_knobs(&n);
    for (size_t i = 0; i < n; i++) {
        char opt[80];
        snprintf(opt, sizeof(opt), "--%s=", k[i].name);
        cr_expect(contains(help, opt), "--help lacks %s", opt);
    }
    cr_expect(contains(help, "--config FILE"));
    cr_expect(contains(help, "--help-markdown"));
    cr_expect(contains(help, "--version"));
    cr_expect(contains(help, "[reloadable]"));
    free(help);
}

Test(config, markdown_has_a_row_per_knob)
{
    char *md = capture(pcd_config_write_markdown);
    size_t n;
    const pcd_knob *k = pcd_knobs(&n);
    for (size_t i = 0; i < n; i++) {
        char row[80];
        snprintf(row, sizeof(row), "| `%s` | ", k[i].name);
        cr_expect(contains(md, row), "markdown lacks a row for %s", k[i].name);
    }
    free(md);
}

Test(config, docs_config_md_is_generated_from_the_table)
{
    /* The repository root relative to this source file. */
    char path[4096];
    const char *me = __FILE__;
    const char *slash = strrchr(me, '/');
    snprintf(path, sizeof(path), "%.*s../docs/config.md",
             slash ? (int)(slash - me + 1) : 0, me);
    char *have = read_all(path);
    cr_assert(have, "cannot read %s", path);
    char *want = capture(pcd_config_write_markdown);
    if (strcmp(have, want) != 0) {
        size_t i = 0;
        while (have[i] && have[i] == want[i])
            i++;
        cr_assert_fail("%s differs from `prefixcached --help-markdown` at byte %zu; "
                "regenerate it: build/release/daemon/prefixcached "
                "--help-markdown > docs/config.md", path, i);
    }
    free(have);
    free(want);
}

/* The example in docs/config.md is a valid file. */
Test(config, the_documented_example_loads)
{
    char *md = capture(pcd_config_write_markdown);
    const char *start = strstr(md, "```\n# /etc/prefixcache.conf");
    cr_assert(start, "no example in the markdown");
    start += 4;
    const char *end = strstr(start, "```");
    cr_assert(end);
    char text[2048];
    snprintf(text, sizeof(text), "%.*s", (int)(end - start), start);
    pcd_config c;
    char path[64];
    cr_expect_eq(load_text(&c, text, path), 0, "%s", g_err);
    cr_expect_eq(c.layers, 80);
    cr_expect_eq(c.pool_bytes, 64ull << 30);
    free(md);
}

/* ---- CONFIG rpc helpers -------------------------------------------------------------- */

Test(config, pack_and_set_object)
{
    pcd_config c;
    pcd_config_defaults(&c);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* every knob */
    cr_assert_eq(pcd_config_pack(&c, NULL, &pk, g_err, sizeof(g_err)), 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0, n;
    pcd_knobs(&n);
    cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    cr_expect_eq(up.data.via.map.size, n);
    uint64_t v = 0;
    cr_expect_eq(pc_mp_get_u64(&up.data, "pool_bytes", &v), 0);
    cr_expect_eq(v, 1ull << 30);
    const msgpack_object *o = pc_mp_get(&up.data, "dtype");
    cr_expect(o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == 4);
    o = pc_mp_get(&up.data, "log_utc");
    cr_expect(o && o->type == MSGPACK_OBJECT_BOOLEAN);

    /* names: one unknown -> nothing packed */
    msgpack_object names[2] = {{.type = MSGPACK_OBJECT_STR}, {.type = MSGPACK_OBJECT_STR}};
    names[0].via.str.ptr = "layers";
    names[0].via.str.size = 6;
    names[1].via.str.ptr = "nope";
    names[1].via.str.size = 4;
    msgpack_object arr = {.type = MSGPACK_OBJECT_ARRAY};
    arr.via.array.ptr = names;
    arr.via.array.size = 2;
    msgpack_sbuffer_clear(&sb);
    cr_expect_eq(pcd_config_pack(&c, &arr, &pk, g_err, sizeof(g_err)), PC_E_NOENT);
    cr_expect_eq(sb.size, 0, "nothing packed on failure");
    arr.via.array.size = 1;
    cr_expect_eq(pcd_config_pack(&c, &arr, &pk, g_err, sizeof(g_err)), 0);
    off = 0;
    cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    cr_expect_eq(up.data.via.map.size, 1);
    cr_expect_eq(pc_mp_get_u64(&up.data, "layers", &v), 0);
    cr_expect_eq(v, 32);

    /* set from msgpack values */
    msgpack_object val = {.type = MSGPACK_OBJECT_STR};
    val.via.str.ptr = "2MiB";
    val.via.str.size = 4;
    cr_expect_eq(pcd_config_set_object(&c, "max_msg_bytes", 13, &val, g_err,
                                       sizeof(g_err)), 0, "%s", g_err);
    cr_expect_eq(c.max_msg_bytes, 2u << 20);
    val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    val.via.u64 = 7000;
    cr_expect_eq(pcd_config_set_object(&c, "lease_ttl_ms", 12, &val, g_err,
                                       sizeof(g_err)), 0);
    cr_expect_eq(c.lease_ttl_ms, 7000);
    val.via.u64 = 0;
    cr_expect_eq(pcd_config_set_object(&c, "lease_ttl_ms", 12, &val, g_err,
                                       sizeof(g_err)), PC_E_RANGE);
    val.type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
    val.via.i64 = -5;
    cr_expect_eq(pcd_config_set_object(&c, "lease_ttl_ms", 12, &val, g_err,
                                       sizeof(g_err)), PC_E_RANGE);
    val.type = MSGPACK_OBJECT_BOOLEAN;
    val.via.boolean = true;
    cr_expect_eq(pcd_config_set_object(&c, "log_utc", 7, &val, g_err, sizeof(g_err)), 0);
    cr_expect(c.log_utc);
    cr_expect_eq(pcd_config_set_object(&c, "layers", 6, &val, g_err, sizeof(g_err)),
                 PC_E_INVAL, "a bool for an int knob");
    val.type = MSGPACK_OBJECT_FLOAT64;
    cr_expect_eq(pcd_config_set_object(&c, "layers", 6, &val, g_err, sizeof(g_err)),
                 PC_E_INVAL);
    cr_expect_eq(pcd_config_set_object(&c, "layersX", 7, &val, g_err, sizeof(g_err)),
                 PC_E_NOENT);
    cr_expect_eq(c.lease_ttl_ms, 7000, "failures change nothing");
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- reload ------------------------------------------------------------------------- */

Test(config, reload_applies_reloadable_knobs_and_refuses_the_others)
{
    size_t n;
    const pcd_knob *k = pcd_knobs(&n);
    pcd_config cur, next;
    pcd_config_defaults(&cur);
    next = cur;
    next.lease_ttl_ms = 5000;
    next.log_level = PC_LOG_DEBUG;
    next.layers = 40;
    snprintf(next.endpoint, sizeof(next.endpoint), "tcp://127.0.0.1:1");
    pcd_reload r;
    int rc = pcd_config_reload(&cur, &next, false, &r, g_err, sizeof(g_err));
    cr_assert_eq(rc, 2, "%d: %s", rc, g_err);
    cr_expect_eq(r.n_applied, 2);
    cr_expect_eq(r.n_ignored, 2);
    cr_expect_eq(cur.lease_ttl_ms, 5000);
    cr_expect_eq(cur.log_level, PC_LOG_DEBUG);
    cr_expect_eq(cur.layers, 32, "not reloadable: left as it was");
    cr_expect_str_neq(cur.endpoint, "tcp://127.0.0.1:1");
    for (size_t i = 0; i < n; i++) {
        bool applied = r.applied >> i & 1, ignored = r.ignored >> i & 1;
        bool ttl = !strcmp(k[i].name, "lease_ttl_ms"), lvl = !strcmp(k[i].name, "log_level");
        bool lay = !strcmp(k[i].name, "layers"), ep = !strcmp(k[i].name, "endpoint");
        cr_expect_eq(applied, ttl || lvl, "%s applied", k[i].name);
        cr_expect_eq(ignored, lay || ep, "%s ignored", k[i].name);
        if (applied)
            cr_expect(k[i].reloadable);
    }

    /* the same again: nothing left to apply */
    rc = pcd_config_reload(&cur, &next, false, &r, g_err, sizeof(g_err));
    cr_expect_eq(rc, 0);
    cr_expect_eq(r.n_applied, 0);

    /* a merged config that breaks a rule: refused, nothing changes */
    pcd_config before = cur;
    next = cur;
    next.low_watermark = 100;
    next.high_watermark = 50;
    next.lease_ttl_ms = 1;
    rc = pcd_config_reload(&cur, &next, false, &r, g_err, sizeof(g_err));
    cr_expect_eq(rc, PC_E_RANGE);
    cr_expect(contains(g_err, "low_watermark 100 is above high_watermark 50"), "%s", g_err);
    cr_expect_eq(memcmp(&cur, &before, sizeof(cur)), 0);
}

Test(config, reload_logs_each_change)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pcd_log_set_stream(f);
    pcd_log_set_level(PC_LOG_INFO);
    pcd_config cur, next;
    pcd_config_defaults(&cur);
    next = cur;
    next.lease_ttl_ms = 5000;
    next.head_dim = 64;
    cr_expect_eq(pcd_config_reload(&cur, &next, true, NULL, g_err, sizeof(g_err)), 1);
    pcd_log_set_stream(NULL);
    fclose(f);
    cr_expect(contains(buf, "INFO  lease_ttl_ms: 30000 -> 5000\n"), "%s", buf);
    cr_expect(contains(buf, "WARN  head_dim: 128 -> 64 ignored: not reloadable"), "%s", buf);
    /* ISO 8601 with milliseconds and an offset, then the level */
    regex_t re;
    cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                              "\\.[0-9]{3}(Z|[+-][0-9]{2}:[0-9]{2}) (INFO |WARN ) ",
                         REG_EXTENDED | REG_NOSUB), 0);
    cr_expect_eq(regexec(&re, buf, 0, NULL, 0), 0, "'%s'", buf);
    regfree(&re);
    free(buf);
}

Test(config, log_levels_filter)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pcd_log_set_stream(f);
    pcd_log_set_level(PC_LOG_WARN);
    pcd_log(PC_LOG_INFO, "hidden %d", 1);
    pcd_log(PC_LOG_DEBUG, "hidden %d", 2);
    pcd_log(PC_LOG_WARN, "shown %d", 3);
    pcd_log_hook(NULL, PC_LOG_ERROR, "two\nlines");
    pcd_log_set_utc(true);
    pcd_log(PC_LOG_ERROR, "utc");
    pcd_log_set_utc(false);
    pcd_log_set_level(PC_LOG_INFO);
    pcd_log_set_stream(NULL);
    fclose(f);
    cr_expect(!contains(buf, "hidden"), "%s", buf);
    cr_expect(contains(buf, "WARN  shown 3\n"), "%s", buf);
    cr_expect(contains(buf, "ERROR two lines\n"), "one line per event: %s", buf);
    cr_expect(contains(buf, "Z ERROR utc\n"), "%s", buf);
    free(buf);
}

/* ---- a live daemon (index-only pool, private ipc endpoint) ---------------------------- */

typedef struct live {
    pcd_daemon *d;
    pcd_cmdline cl;
    char conf[64], sock[96], arg_ep[128], arg_conf[96];
} live;

static void live_start(live *L, const char *conf_text)
{
    memset(L, 0, sizeof(*L));
    write_tmp(L->conf, conf_text);
    snprintf(L->sock, sizeof(L->sock), "/tmp/pcd-test-%ld.sock", (long)getpid());
    snprintf(L->arg_ep, sizeof(L->arg_ep), "--endpoint=ipc://%s", L->sock);
    snprintf(L->arg_conf, sizeof(L->arg_conf), "--config=%s", L->conf);
    static const char *argv[8];
    argv[0] = "prefixcached";
    argv[1] = L->arg_conf;
    argv[2] = L->arg_ep;
    argv[3] = "--pool_backend=none";
    argv[4] = "--log_level=warn";
    argv[5] = NULL;
    pcd_config c;
    cr_assert_eq(load_args(&c, argv, &L->cl), 0, "%s", g_err);
    cr_assert_eq(pcd_daemon_create(&c, &L->cl, &L->d, g_err, sizeof(g_err)), 0,
                 "%s", g_err);
}

static void live_stop(live *L)
{
    pcd_daemon_destroy(L->d);
    pcd_cmdline_free(&L->cl);
    unlink(L->conf);
    struct stat st;
    cr_expect_neq(stat(L->sock, &st), 0, "socket file removed");
    char lock[128];
    snprintf(lock, sizeof(lock), "%s.lock", L->sock);
    cr_expect_neq(stat(lock, &st), 0, "lock file removed");
}

static const char SMALL[] = "pool_blocks = 16\nlayers = 1\nkv_heads = 1\n"
                            "head_dim = 8\npage_tokens = 4\n";

Test(daemon, second_daemon_on_the_endpoint_is_busy)
{
    live a;
    live_start(&a, SMALL);
    pcd_config c = *pcd_daemon_config(a.d);
    pcd_daemon *b = NULL;
    pcd_log_set_level(PC_LOG_ERROR);
    cr_expect_eq(pcd_daemon_create(&c, NULL, &b, g_err, sizeof(g_err)), PC_E_BUSY);
    cr_expect(contains(g_err, "in use by another prefixcached"), "%s", g_err);
    cr_expect_null(b);
    live_stop(&a);
}

Test(daemon, config_set_is_all_or_nothing_over_reloadable_knobs)
{
    live L;
    live_start(&L, SMALL);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
#define SET(...)                                                               \
    do {                                                                       \
        msgpack_sbuffer_clear(&sb);                                            \
        __VA_ARGS__;                                                           \
        size_t off_ = 0;                                                       \
        cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off_),        \
                     MSGPACK_UNPACK_SUCCESS);                                  \
    } while (0)

    /* a reloadable knob with a non-reloadable one: PERM, nothing applied */
    SET(msgpack_pack_map(&pk, 2); pc_pack_kv_u64(&pk, "lease_ttl_ms", 1234);
        pc_pack_kv_u64(&pk, "layers", 2));
    cr_expect_eq(pcd_daemon_config_set(L.d, &up.data, g_err, sizeof(g_err)), PC_E_PERM);
    cr_expect(contains(g_err, "layers is not reloadable"), "%s", g_err);
    cr_expect_eq(pcd_daemon_config(L.d)->lease_ttl_ms, 30000);

    SET(msgpack_pack_map(&pk, 2); pc_pack_kv_u64(&pk, "lease_ttl_ms", 1234);
        pc_pack_kv_u64(&pk, "nope", 2));
    cr_expect_eq(pcd_daemon_config_set(L.d, &up.data, g_err, sizeof(g_err)), PC_E_NOENT);
    SET(msgpack_pack_map(&pk, 2); pc_pack_kv_u64(&pk, "lease_ttl_ms", 1234);
        pc_pack_kv_u64(&pk, "high_watermark", 17)); /* capacity is 16 */
    cr_expect_eq(pcd_daemon_config_set(L.d, &up.data, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect(contains(g_err, "capacity of 16 blocks"), "%s", g_err);
    cr_expect_eq(pcd_daemon_config(L.d)->lease_ttl_ms, 30000);

    SET(msgpack_pack_map(&pk, 3); pc_pack_kv_u64(&pk, "lease_ttl_ms", 1234);
        pc_pack_kv_str(&pk, "high_watermark", "8"); pc_pack_kv_u64(&pk, "low_watermark", 4));
    cr_expect_eq(pcd_daemon_config_set(L.d, &up.data, g_err, sizeof(g_err)), 0, "%s", g_err);
    cr_expect_eq(pcd_daemon_config(L.d)->lease_ttl_ms, 1234);
    cr_expect_eq(pcd_daemon_config(L.d)->high_watermark, 8);
    cr_expect_eq(pc_cache_check(pcd_daemon_cache(L.d)), 0);
#undef SET
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    live_stop(&L);
}

Test(daemon, sighup_reload_rereads_the_file)
{
    live L;
    live_start(&L, SMALL);
    pcd_log_set_level(PC_LOG_ERROR);
    /* a changed reloadable knob and a changed fixed one */
    char text[512];
    snprintf(text, sizeof(text), "%slease_ttl_ms = 700\ndtype = fp32\n", SMALL);
    FILE *f = fopen(L.conf, "w");
    fputs(text, f);
    fclose(f);
    cr_expect_eq(pcd_daemon_reload(L.d), 0);
    cr_expect_eq(pcd_daemon_config(L.d)->lease_ttl_ms, 700);
    cr_expect_eq(pcd_daemon_config(L.d)->dtype, PC_DTYPE_FP16, "needs a restart");
    cr_expect_eq(pcd_daemon_config(L.d)->log_level, PC_LOG_WARN,
                 "the command line still wins over the file");

    /* a bad file: refused, the running configuration stays */
    f = fopen(L.conf, "w");
    fputs("lease_ttl_ms = 900\nlayers = zero\n", f);
    fclose(f);
    cr_expect_lt(pcd_daemon_reload(L.d), 0);
    cr_expect_eq(pcd_daemon_config(L.d)->lease_ttl_ms, 700);
    live_stop(&L);
}

/* ---- eviction policy and namespace priorities ------------------------------ */

typedef struct prio_seen {
    char ns[8][64];
    int32_t prio[8];
    int n;
} prio_seen;

static int collect_prio(void *ctx, const char *ns, size_t len, int32_t prio)
{
    prio_seen *s = ctx;
    cr_assert_lt(s->n, 8);
    cr_assert_lt(len, 64);
    memcpy(s->ns[s->n], ns, len);
    s->ns[s->n][len] = 0;
    s->prio[s->n++] = prio;
    return 0;
}

Test(config, eviction_policy_and_namespace_priorities)
{
    pcd_config c;
    pcd_config_defaults(&c);
    cr_expect_eq(c.eviction_policy, PC_POLICY_LRU, "LRU stays the default");
    const char *names[] = {"lru", "lfu", "fifo", "s3fifo", "priority", "auto"};
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(pcd_config_set(&c, "eviction_policy", names[i], g_err,
                                    sizeof(g_err)), 0, "%s", g_err);
        cr_expect_eq(c.eviction_policy, i);
    }
    cr_expect_eq(pcd_config_set(&c, "eviction_policy", "arc", g_err, sizeof(g_err)),
                 PC_E_INVAL);
    const pcd_knob *k = pcd_knob_find("eviction_policy", 15);
    cr_assert_not_null(k);
    cr_expect(k->reloadable);

    prio_seen s = {0};
    cr_expect_eq(pcd_ns_priorities_parse(" gold = 10, bronze=-5 ,a b=0,", collect_prio,
                                         &s, g_err, sizeof(g_err)), 0, "%s", g_err);
    cr_assert_eq(s.n, 3);
    cr_expect_str_eq(s.ns[0], "gold");
    cr_expect_eq(s.prio[0], 10);
    cr_expect_str_eq(s.ns[1], "bronze");
    cr_expect_eq(s.prio[1], -5);
    cr_expect_str_eq(s.ns[2], "a b");
    cr_expect_eq(pcd_ns_priorities_parse("", collect_prio, &s, g_err, sizeof(g_err)), 0);
    static const struct {
        const char *text;
        int rc;
    } bad[] = {
        {"gold", PC_E_INVAL},        {"gold=", PC_E_INVAL},
        {"=3", PC_E_RANGE},          {"gold=x", PC_E_RANGE},
        {"gold=1000001", PC_E_RANGE}, {"a=1,b", PC_E_INVAL},
        {"gold=1.5", PC_E_RANGE},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s.n = 0;
        cr_expect_eq(pcd_ns_priorities_parse(bad[i].text, collect_prio, &s, g_err,
                                             sizeof(g_err)), bad[i].rc, "'%s'",
                     bad[i].text);
        cr_expect_eq(s.n, 0, "'%s': nothing applied from a bad text", bad[i].text);
        cr_expect_neq(g_err[0], 0, "a message for '%s'", bad[i].text);
    }
    /* the check refuses a bad value the setter let through (any text fits) */
    cr_expect_eq(pcd_config_set(&c, "namespace_priorities", "gold=high", g_err,
                                sizeof(g_err)), 0);
    uint64_t cap;
    cr_expect_eq(pcd_config_check(&c, &cap, g_err, sizeof(g_err)), PC_E_RANGE);
    cr_expect(strstr(g_err, "namespace_priorities") != NULL, "%s", g_err);
}

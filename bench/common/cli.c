/*
 * bench/common/cli.c - the benchmarks' command-line helpers (see cli.h).
 */
#include "bench/common/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bench_cli_conf bench_cli;

void bench_cli_init(const char *name)
{
    memset(&bench_cli, 0, sizeof bench_cli);
    snprintf(bench_cli.die_prefix, sizeof bench_cli.die_prefix, "%s: ", name);
    snprintf(bench_cli.say_prefix, sizeof bench_cli.say_prefix, "[%s] ", name);
    bench_cli.die_status = 2;
}

static void line(const char *prefix, const char *fmt, va_list ap)
{
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* After the message line: the hint, then out of this process. */
static _Noreturn void die_end(void)
{
    if (bench_cli.die_hint) {
        fputs(bench_cli.die_hint, stderr);
        fputc('\n', stderr);
    }
    if (bench_cli.main_pid && getpid() != bench_cli.main_pid)
        _exit(bench_cli.die_status);
    if (bench_cli.on_die)
        bench_cli.on_die();
    exit(bench_cli.die_status);
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    line(bench_cli.die_prefix, fmt, ap);
    va_end(ap);
    die_end();
}

void bench_usage_die(const char *fmt, ...)
{
    if (bench_cli.usage)
        bench_cli.usage(stderr);
    va_list ap;
    va_start(ap, fmt);
    line(bench_cli.die_prefix, fmt, ap);
    va_end(ap);
    die_end();
}

void bench_help(void)
{
    if (bench_cli.usage)
        bench_cli.usage(stdout);
    exit(0);
}

void bench_say(const char *fmt, ...)
{
    if (bench_cli.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    line(bench_cli.say_prefix, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

void *bench_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_die("out of memory (%zu bytes)", n);
    return p;
}

void *bench_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        bench_die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

bool bench_parse_u64(const char *s, uint64_t *out)
{
    /* strtoull alone would take "-1" (as 2^64 - 1), " 1" and, with base 0,
     * "010" as octal 8 */
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!(*s >= '0' && *s <= '9') &&
        !(base == 16 && ((*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F'))))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end)
        return false;
    *out = (uint64_t)v;
    return true;
}

uint64_t bench_arg_u64(const char *s, const char *what, uint64_t lo,
                       uint64_t hi)
{
    uint64_t v;
    if (!s || !bench_parse_u64(s, &v))
        bench_die("%s: '%s' is not a non-negative integer", what, s ? s : "");
    if (v < lo || v > hi) {
        if (hi == UINT64_MAX)
            bench_die("%s: at least %llu", what, (unsigned long long)lo);
        bench_die("%s: %llu..%llu", what, (unsigned long long)lo,
                  (unsigned long long)hi);
    }
    return v;
}

/*
 * bench/common/cli.h - the benchmarks' command-line helpers: one way to die
 * with a message, one progress line, one number parser.
 *
 * Each program names itself once at the top of main and adjusts what
 * differs (gsp_bench's "gsp: error: " and exit status 1, trace_replay's
 * usage hint and --quiet, rpc_bench's workers); everything after that reads
 * bench_cli:
 *
 *   bench_cli_init("radix_bench");
 *   bench_cli.usage = usage;
 *   bench_die("bad --reps: %s", s);   stderr "radix_bench: bad --reps: ...",
 *                                     exit(2)
 *   bench_usage_die("bad arg %s", a); the usage to stderr, then the same
 *   bench_say("phase %d", k);         stderr "[radix_bench] phase 1"
 *   n = bench_arg_u64(s, "--jobs", 1, 64);
 *
 * In a forked worker (getpid() != main_pid) bench_die calls _exit: a worker
 * must not run the main process's atexit handlers (they stop the servers and
 * remove the run's files).
 */
#ifndef BENCH_COMMON_CLI_H
#define BENCH_COMMON_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct bench_cli_conf {
    char die_prefix[64]; /* before a bench_die message: "NAME: "          */
    char say_prefix[64]; /* before a progress line: "[NAME] "             */
    const char *die_hint; /* a line after a bench_die message, or NULL    */
    int die_status;      /* bench_die's exit status: 2                    */
    pid_t main_pid;      /* 0: bench_die always exits; else _exit elsewhere */
    void (*on_die)(void); /* the main process's last words, or NULL        */
    bool quiet;          /* bench_say prints nothing                      */
    void (*usage)(FILE *f); /* the program's usage text, or NULL          */
} bench_cli_conf;

extern bench_cli_conf bench_cli;

/* The defaults for a program called name (the fields above, main_pid 0). */
void bench_cli_init(const char *name);

/* The message to stderr (prefix, text, newline, hint), then exit. */
_Noreturn void bench_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* --help: the usage to stdout, exit(0). */
_Noreturn void bench_help(void);

/* A command line that makes no sense: the usage to stderr, then bench_die. */
_Noreturn void bench_usage_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* One progress line to stderr, flushed; nothing when quiet. */
void bench_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* malloc / calloc that die on failure (0 bytes: 1). */
void *bench_xmalloc(size_t n);
void *bench_xcalloc(size_t n, size_t size);

/* s as a whole number: decimal, or hexadecimal after "0x"; no sign, no
 * blanks, no trailing text, no overflow.  false otherwise. */
bool bench_parse_u64(const char *s, uint64_t *out);

/* bench_parse_u64 of an option's value that dies unless it is a number in
 * [lo, hi] (what: the option, for the message). */
uint64_t bench_arg_u64(const char *s, const char *what, uint64_t lo,
                       uint64_t hi);

#endif

/*
 * bench/common/report.h - the benchmarks' result table and its JSON form, a
 * few statistics, a clock and the reaping of child processes.
 *
 * Part of bench_common, the benchmarks' own library (bench/common/: this,
 * cli.h and rng.h), not part of the project's API.
 *
 * A report is an array of rpt_row, one per metric: a value, optionally a
 * baseline and a ratio, and optionally a target on the ratio or the value.
 * Each program (radix_bench, rpc_bench, gsp_bench) prints it in a slightly
 * different layout; its rpt_style says which (the fields below).
 */
#ifndef BENCH_COMMON_REPORT_H
#define BENCH_COMMON_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* ---- small utilities ------------------------------------------------------ */

#include <sys/types.h>

/* Reap pid within timeout_ms (SIGKILL after); returns the wait status, or
 * -1 if it could not be reaped.  Async-signal-safe (cleanup handlers). */
int rpt_reap(pid_t pid, int timeout_ms);

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* qsort comparator for doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/* q-quantile (0..1) of the SORTED v[0..n) by the nearest-rank method; NAN if
 * n == 0. */
double bench_quantile_sorted(const double *v, size_t n, double q);

/* Median of the SORTED v[0..n) (mean of the middle two if n is even); NAN if
 * n == 0. */
double bench_median_sorted(const double *v, size_t n);

/* Arithmetic mean of v[0..n); NAN if n == 0. */
double bench_mean(const double *v, size_t n);

/* The "model name" line of /proc/cpuinfo into buf, "unknown" without one. */
void bench_cpu_model(char *buf, size_t n);

/* ---- the report --------------------------------------------------------------- */

/* A row's target: none (an "info" row), ratio >= target, ratio <= target,
 * value <= target. */
enum { RPT_NONE, RPT_RATIO_GE, RPT_RATIO_LE, RPT_VALUE_LE };

typedef struct rpt_row {
    const char *key;   /* the JSON "name" */
    const char *label; /* the table's metric, printed as "label (unit)" */
    const char *unit;
    double value;
    const char *baseline_name; /* NULL: no baseline */
    double baseline;
    const char *ratio_def; /* NULL: no ratio */
    double ratio;
    int target_kind; /* RPT_* */
    double target;
} rpt_row;

/* How one program lays its report out. */
typedef struct rpt_style {
    int label_w;         /* width of the metric column                    */
    int ratio_w;         /* width of the ratio column                     */
    int target_w;        /* width of the target column                    */
    int small_digits;    /* decimals of a number below 10                 */
    size_t label_cap;    /* "label (unit)" is cut to label_cap - 1 chars  */
    size_t note_cap;     /* the note column is cut to note_cap - 1 chars  */
    const char *note_head; /* the note column's heading                   */
    bool nan_ratio_info; /* a NaN ratio makes a row with a target "info"  */
} rpt_style;

/* 1 pass, 0 fail, -1 no verdict (no target, or see nan_ratio_info). */
int rpt_row_pass(const rpt_style *st, const rpt_row *r);

/* The target as text ("ratio>=5", "value<=1.3", "-" for none). */
void rpt_target_str(const rpt_row *r, char *buf, size_t n);

/* A number for the table: "-" for NaN, 0, 1 or small_digits decimals. */
void rpt_fmt_num(const rpt_style *st, double v, char *buf, size_t n);

/* The table: a heading and one line per row. */
void rpt_print_table(FILE *f, const rpt_style *st, const rpt_row *rows,
                     size_t n);

/* JSON scalars: a number with %.6g (null for NaN and infinities), a string
 * with '"', '\\' and control characters escaped. */
void rpt_json_num(FILE *f, double v);
void rpt_json_str(FILE *f, const char *s);

/* The elements of the "metrics" array, one object a line, each indented by
 * four spaces; the caller writes the brackets around them. */
void rpt_json_metrics(FILE *f, const rpt_style *st, const rpt_row *rows,
                      size_t nrows);

#endif

/*
 * bench/common/report.c - the benchmarks' shared report and statistics (see
 * report.h).
 */
#include "bench/common/report.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_quantile_sorted(const double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    size_t k = (size_t)ceil(q * (double)n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

double bench_median_sorted(const double *v, size_t n)
{
    if (n == 0)
        return NAN;
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bench_mean(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : NAN;
}

void bench_cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, n, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

int rpt_row_pass(const rpt_style *st, const rpt_row *r)
{
    if (st->nan_ratio_info && isnan(r->ratio) && r->target_kind != RPT_NONE)
        return -1;
    switch (r->target_kind) {
    case RPT_RATIO_GE:
        return r->ratio >= r->target;
    case RPT_RATIO_LE:
        return r->ratio <= r->target;
    case RPT_VALUE_LE:
        return r->value <= r->target;
    }
    return -1;
}

void rpt_target_str(const rpt_row *r, char *buf, size_t n)
{
    switch (r->target_kind) {
    case RPT_RATIO_GE:
        snprintf(buf, n, "ratio>=%g", r->target);
        break;
    case RPT_RATIO_LE:
        snprintf(buf, n, "ratio<=%g", r->target);
        break;
    case RPT_VALUE_LE:
        snprintf(buf, n, "value<=%g", r->target);
        break;
    default:
        snprintf(buf, n, "-");
    }
}

void rpt_fmt_num(const rpt_style *st, double v, char *buf, size_t n)
{
    if (isnan(v))
        snprintf(buf, n, "-");
    else if (fabs(v) >= 100)
        snprintf(buf, n, "%.0f", v);
    else if (fabs(v) >= 10)
        snprintf(buf, n, "%.1f", v);
    else
        snprintf(buf, n, "%.*f", st->small_digits, v);
}

void rpt_print_table(FILE *f, const rpt_style *st, const rpt_row *rows,
                     size_t n)
{
    char lbl[256], note[256];
    size_t lcap = st->label_cap < sizeof lbl ? st->label_cap : sizeof lbl;
    size_t ncap = st->note_cap < sizeof note ? st->note_cap : sizeof note;
    fprintf(f, "%-*s %10s %10s %*s %-*s %-6s  %s\n", st->label_w, "metric",
            "value", "baseline", st->ratio_w, "ratio", st->target_w, "target",
            "result", st->note_head);
    for (size_t i = 0; i < n; i++) {
        const rpt_row *r = &rows[i];
        char v[32], b[32], ra[32], tg[32];
        rpt_fmt_num(st, r->value, v, sizeof v);
        rpt_fmt_num(st, r->baseline_name ? r->baseline : NAN, b, sizeof b);
        if (r->ratio_def && !isnan(r->ratio))
            snprintf(ra, sizeof ra, "%.2fx", r->ratio);
        else
            snprintf(ra, sizeof ra, "-");
        rpt_target_str(r, tg, sizeof tg);
        snprintf(lbl, lcap, "%s (%s)", r->label, r->unit);
        snprintf(note, ncap, "%s%s%s",
                 r->baseline_name ? r->baseline_name : "",
                 r->ratio_def ? "; " : "", r->ratio_def ? r->ratio_def : "");
        int p = rpt_row_pass(st, r);
        fprintf(f, "%-*s %10s %10s %*s %-*s %-6s  %s\n", st->label_w, lbl, v,
                b, st->ratio_w, ra, st->target_w, tg,
                p < 0 ? "info" : p ? "PASS" : "FAIL", note);
    }
}

void rpt_json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

void rpt_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* a string, or null for NULL */
static void json_str_or_null(FILE *f, const char *s)
{
    if (s)
        rpt_json_str(f, s);
    else
        fputs("null", f);
}

void rpt_json_metrics(FILE *f, const rpt_style *st, const rpt_row *rows,
                      size_t nrows)
{
    for (size_t i = 0; i < nrows; i++) {
        const rpt_row *w = &rows[i];
        char tg[32];
        rpt_target_str(w, tg, sizeof tg);
        int p = rpt_row_pass(st, w);
        fprintf(f, "    {\"name\": ");
        rpt_json_str(f, w->key);
        fprintf(f, ", \"label\": ");
        rpt_json_str(f, w->label);
        fprintf(f, ", \"unit\": ");
        rpt_json_str(f, w->unit);
        fprintf(f, ", \"value\": ");
        rpt_json_num(f, w->value);
        fprintf(f, ", \"baseline_name\": ");
        json_str_or_null(f, w->baseline_name);
        fprintf(f, ", \"baseline\": ");
        rpt_json_num(f, w->baseline_name ? w->baseline : NAN);
        fprintf(f, ", \"ratio_def\": ");
        json_str_or_null(f, w->ratio_def);
        fprintf(f, ", \"ratio\": ");
        rpt_json_num(f, w->ratio_def ? w->ratio : NAN);
        fprintf(f, ", \"target\": ");
        json_str_or_null(f, w->target_kind == RPT_NONE ? NULL : tg);
        fprintf(f, ", \"pass\": %s}%s\n",
                p < 0 ? "null" : p ? "true" : "false",
                i + 1 < nrows ? "," : "");
    }
}

int rpt_reap(pid_t pid, int timeout_ms)
{
    int st;
    for (int waited = 0;; waited += 5) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -1;
        if (waited >= timeout_ms)
            break;
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

/*
 * daemon/log.c - one line per event on stderr:
 *
 *   2024-05-01T12:34:56.789+02:00 INFO  listening on ipc:///run/user/0/prefixcache.sock
 *
 * ISO 8601 with milliseconds and the UTC offset, so that lines from several
 * daemons and engines sort and correlate; the level in a fixed-width column
 * so that `grep -v DEBUG` and eyes both work.  Each line goes out in one
 * fputs on an unbuffered stream: lines never interleave mid-way.
 *
 * The daemon has one thread; the level is a plain global.
 */
#include "daemon/daemon.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static int g_level = PC_LOG_INFO;
static bool g_utc;
static FILE *g_stream;

static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void pcd_log_set_level(int level)
{
    if (level >= PC_LOG_ERROR && level <= PC_LOG_DEBUG)
        g_level = level;
}

int pcd_log_get_level(void) { return g_level; }
void pcd_log_set_utc(bool utc) { g_utc = utc; }
void pcd_log_set_stream(FILE *f) { g_stream = f; }

const char *pcd_log_level_name(int level)
{
    return level >= PC_LOG_ERROR && level <= PC_LOG_DEBUG ? names[level] : "?";
}

void pcd_log_timestamp(char *buf, size_t len, bool utc)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (utc)
        gmtime_r(&ts.tv_sec, &tm);
    else
        localtime_r(&ts.tv_sec, &tm);
    char date[32], zone[8] = "Z";
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    if (!utc) {
        /* strftime's %z gives +0200; ISO 8601 extended wants +02:00 */
        char z[8];
        if (strftime(z, sizeof(z), "%z", &tm) == 5)
            snprintf(zone, sizeof(zone), "%.3s:%.2s", z, z + 3);
    }
    snprintf(buf, len, "%s.%03ld%s", date, ts.tv_nsec / 1000000L, zone);
}

static void emit(int level, const char *msg)
{
    char ts[48], line[1200];
    pcd_log_timestamp(ts, sizeof(ts), g_utc);
    /* One line per event: a message never spans lines. */
    int n = snprintf(line, sizeof(line), "%s %-5s ", ts, names[level]);
    size_t o = n > 0 && (size_t)n < sizeof(line) ? (size_t)n : 0;
    for (const char *p = msg; *p && o + 2 < sizeof(line); p++)
        line[o++] = *p == '\n' || *p == '\r' ? ' ' : *p;
    line[o++] = '\n';
    line[o] = 0;
    FILE *f = g_stream ? g_stream : stderr;
    fputs(line, f);
    fflush(f);
}

void pcd_log(int level, const char *fmt, ...)
{
    if (level > g_level || level < PC_LOG_ERROR)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, msg);
}

void pcd_log_hook(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level > g_level || level < PC_LOG_ERROR || !msg)
        return;
    emit(level, msg);
}

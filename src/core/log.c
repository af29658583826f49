/* Logging (core, the ground floor): one line per message on stderr,
 * "time level module: text", whole even when threads log at once. */
#include "wharf/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static _Atomic int log_level = WH_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void wh_log_set_level(enum wh_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum wh_log_level wh_log_get_level(void)
{
    return (enum wh_log_level)atomic_load(&log_level);
}

void wh_log(enum wh_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)tv.tv_usec / 1000, level_names[level], module);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line keeps lines from different threads whole. */
    size_t len = strnlen(line, sizeof(line) - 2);
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, stderr);
}

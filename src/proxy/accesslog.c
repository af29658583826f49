/* The access log. JSON lines through cJSON (no hand-written JSON). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>

#include "wharf/accesslog.h"

struct wh_access_log {
    int fd;
    char *path;
};

static int open_path(const char *path, char *err, size_t errlen)
{
    if (strcmp(path, "-") == 0)
        return fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        snprintf(err, errlen, "access log %s: %s", path, strerror(errno));
    return fd;
}

struct wh_access_log *wh_access_log_open(const char *path, char *err, size_t errlen)
{
    struct wh_access_log *l = calloc(1, sizeof(*l));
    if (!l || !(l->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(l);
        return NULL;
    }
    l->fd = open_path(path, err, errlen);
    if (l->fd < 0) {
        wh_access_log_free(l);
        return NULL;
    }
    return l;
}

int wh_access_log_reopen(struct wh_access_log *l, char *err, size_t errlen)
{
    if (strcmp(l->path, "-") == 0)
        return 0;
    int fd = open_path(l->path, err, errlen);
    if (fd < 0)
        return -1;
    /* dup2 swaps the file behind l->fd atomically for every writer. */
    int rc = dup3(fd, l->fd, O_CLOEXEC);
    close(fd);
    if (rc < 0)
        snprintf(err, errlen, "access log %s: %s", l->path, strerror(errno));
    return rc < 0 ? -1 : 0;
}

void wh_access_log_free(struct wh_access_log *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l);
}

void wh_access_log_flush(struct wh_access_log *l, struct evbuffer *buf)
{
    while (evbuffer_get_length(buf) > 0) {
        if (evbuffer_write(buf, l->fd) < 0 && errno != EINTR) {
            evbuffer_drain(buf, evbuffer_get_length(buf)); /* disk trouble: drop, keep serving */
            return;
        }
    }
}

static void add_span(cJSON *o, const char *key, const char *s, size_t len)
{
    if (!s) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char stack[512];
    char *copy = len < sizeof(stack) ? stack : malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, s, len);
    copy[len] = '\0';
    cJSON_AddStringToObject(o, key, copy);
    if (copy != stack)
        free(copy);
}

static void add_str(cJSON *o, const char *key, const char *s)
{
    if (s)
        cJSON_AddStringToObject(o, key, s);
    else
        cJSON_AddNullToObject(o, key);
}

static void add_seconds(cJSON *o, const char *key, double v)
{
    if (v < 0)
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, (double)(long long)(v * 1e6) / 1e6);
}

void wh_access_format(struct evbuffer *buf, const struct wh_access_entry *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    char when[64];
    time_t sec = (time_t)e->time;
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)((e->time - (double)sec) * 1000));
    cJSON_AddStringToObject(o, "time", when);
    add_str(o, "client_address", e->client_ip);
    cJSON_AddNumberToObject(o, "client_port", e->client_port);
    add_str(o, "listener", e->listener);
    add_span(o, "method", e->method, e->method_len);
    add_span(o, "path", e->path, e->path_len);
    add_str(o, "protocol", e->protocol);
    cJSON_AddNumberToObject(o, "status", e->status);
    cJSON_AddNumberToObject(o, "bytes_in", (double)e->bytes_in);
    cJSON_AddNumberToObject(o, "bytes_out", (double)e->bytes_out);
    add_str(o, "target_group", e->target_group);
    add_str(o, "target", e->target);
    add_seconds(o, "upstream_connect_time", e->connect_time);
    add_seconds(o, "upstream_response_time", e->response_time);
    add_seconds(o, "total_time", e->total_time);
    add_str(o, "request_id", e->request_id);
    add_str(o, "error", e->error);
    if (e->matched_rule_priority >= 0)
        cJSON_AddNumberToObject(o, "matched_rule_priority", e->matched_rule_priority);
    else
        cJSON_AddNullToObject(o, "matched_rule_priority");
    add_str(o, "actions_executed", e->actions_executed);
    add_str(o, "ssl_protocol", e->ssl_protocol);
    add_str(o, "ssl_cipher", e->ssl_cipher);
    char *line = cJSON_PrintUnformatted(o);
    if (line) {
        evbuffer_add(buf, line, strlen(line));
        evbuffer_add(buf, "\n", 1);
        cJSON_free(line);
    }
    cJSON_Delete(o);
}

/* wharf access log: one JSON line per request, written by every proxy
 * worker to one file. Workers buffer lines and flush them in batches; the
 * control thread reopens the file (SIGUSR1) by dup2() onto the same
 * descriptor, so workers never see a closed one. */
#ifndef WHARF_ACCESSLOG_H
#define WHARF_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

struct wh_access_log;
struct evbuffer;

/* path "-" is stderr. Returns NULL with err set. Free with wh_access_log_free. */
struct wh_access_log *wh_access_log_open(const char *path, char *err, size_t errlen);
/* Reopen the file at the same path (log rotation). 0 or -1 with err set. */
int wh_access_log_reopen(struct wh_access_log *l, char *err, size_t errlen);
void wh_access_log_free(struct wh_access_log *l);
/* Write buf's whole content to the log and empty buf. */
void wh_access_log_flush(struct wh_access_log *l, struct evbuffer *buf);

/* What one request did, as logged. Strings are borrowed for the call. */
struct wh_access_entry {
    double time; /* start, seconds since the epoch */
    const char *client_ip;
    int client_port;
    const char *listener;
    const char *method; /* NULL when the head was not parsed */
    size_t method_len;
    const char *path;
    size_t path_len;
    const char *protocol; /* "HTTP/1.1" */
    int status;
    uint64_t bytes_in, bytes_out;
    const char *target_group; /* NULL when none */
    const char *target;
    double connect_time;  /* seconds, -1 when no connection was made */
    double response_time; /* request sent until response head, -1 when none */
    double total_time;
    const char *request_id;
    const char *error; /* NULL, or why wharfd answered itself */
    /* ALB's fields: the rule that decided (-1: none, the request was
     * refused before routing; 0: the default action) and what it did
     * ("forward", "redirect", "fixed-response"; NULL: none); the TLS
     * version and cipher (NULL on http listeners). */
    int matched_rule_priority;
    const char *actions_executed;
    const char *ssl_protocol;
    const char *ssl_cipher;
};

/* Append one JSON line for e to buf. */
void wh_access_format(struct evbuffer *buf, const struct wh_access_entry *e);

#endif

/* The access-log record of a request: what it did (method, path, status,
 * bytes, rule, target, timings, TLS version), noted as the exchange goes
 * and formatted as one line (accesslog.c) when the request ends, and the
 * response counters /metrics reads. Nothing is noted while the access log
 * is off, but for the byte counts. */
#include <string.h>
#include <time.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "session.h"

static double record_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void wh_access_record_stamp(const struct wh_session *s, double *when)
{
    if (wh_access_record_on(s))
        *when = record_now();
}

const char *wh_access_record_error(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 408:
        return "client_header_timeout";
    case 413:
        return "body_too_large";
    case 431:
        return "header_too_large";
    case 501:
        return "unsupported_transfer_coding";
    case 502:
        return "bad_gateway";
    case 503:
        return "no_targets";
    case 504:
        return "upstream_timeout";
    case 505:
        return "version_not_supported";
    default:
        return "error";
    }
}

static const char *record_action_name(enum wh_action_type t)
{
    return t == WH_ACTION_FORWARD    ? "forward"
           : t == WH_ACTION_REDIRECT ? "redirect"
                                     : "fixed-response";
}

static double record_since(double t0, double t1)
{
    return t0 > 0 && t1 >= t0 ? t1 - t0 : -1;
}

void wh_access_record_abort(struct wh_session *s, const char *error)
{
    if (s->rec.method[0] && !s->rec.ended)
        wh_access_record_end(s, s->resp_started ? s->resp.status : 0, error);
}

void wh_access_record_end(struct wh_session *s, int status, const char *error)
{
    s->rec.ended = 1;
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    wh_count_one(&s->proxy->responses[cls]);
    /* The group's counters are shared by the workers: a real add. Every
     * snapshot of a group points at the same counters. */
    if (s->group && s->group->snap)
        atomic_fetch_add_explicit(&s->group->snap->counters->responses[cls], 1,
                                  memory_order_relaxed);
    if (!wh_access_record_on(s))
        return;
    double end = record_now();
    struct wh_access_entry e = {
        .time = s->rec.t_start > 0 ? s->rec.t_start : end,
        .client_ip = s->client_ip,
        .client_port = s->client_port,
        .listener = s->listener->cfg->name,
        .method = s->rec.method[0] ? s->rec.method : NULL,
        .method_len = strlen(s->rec.method),
        .path = s->rec.method[0] ? s->rec.path : NULL,
        .path_len = s->rec.path_len,
        .protocol = s->req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
        .status = status,
        .bytes_in = s->rec.bytes_in + s->req_body_sent,
        .bytes_out = s->rec.bytes_out,
        .target_group = s->group ? s->group->name : NULL,
        .target = s->target ? s->target->addr.text : NULL,
        .connect_time = record_since(s->rec.t_connect, s->rec.t_sent),
        .response_time = record_since(s->rec.t_sent, s->rec.t_resp),
        .total_time = record_since(s->rec.t_start, end),
        .request_id = s->request_id[0] ? s->request_id : NULL,
        .error = error,
        .matched_rule_priority = s->action ? s->action->priority : -1,
        .actions_executed = s->action ? record_action_name(s->action->type) : NULL,
    };
    SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
    if (ssl) {
        e.ssl_protocol = SSL_get_version(ssl);
        e.ssl_cipher = SSL_get_cipher_name(ssl);
    }
    wh_access_format(s->proxy->alog_buf, &e);
    if (evbuffer_get_length(s->proxy->alog_buf) >= WH_ACCESS_LOG_FLUSH)
        wh_access_log_flush(s->proxy->alog, s->proxy->alog_buf);
}

void wh_access_record_request(struct wh_session *s, const char *buf)
{
    if (!wh_access_record_on(s))
        return;
    size_t n = s->req.method_span.len < sizeof(s->rec.method) - 1 ? s->req.method_span.len
                                                                  : sizeof(s->rec.method) - 1;
    memcpy(s->rec.method, buf + s->req.method_span.off, n);
    s->rec.method[n] = '\0';
    s->rec.path_len =
        s->req.target.len < sizeof(s->rec.path) ? s->req.target.len : sizeof(s->rec.path);
    memcpy(s->rec.path, buf + s->req.target.off, s->rec.path_len);
    s->rec.bytes_in = s->req.head_len;
}

void wh_access_record_rejected(struct wh_session *s, const char *buf, size_t n)
{
    if (!wh_access_record_on(s))
        return;
    if (s->req.method_span.len > 0 && s->req.target.len > 0)
        wh_access_record_request(s, buf);
    s->rec.bytes_in = n;
}

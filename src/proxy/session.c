/* A client connection and the exchange of each of its requests with an
 * upstream: parse the head strictly, route, forward head and body, relay the
 * response, then keep the connection for the next request or close it.
 *
 * Functions that may free the session return -1 ("session gone"); their
 * callers must return at once. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "wharf/accesslog.h"

#include "wharf/log.h"
#include "proxy-int.h"

enum sess_state {
    SS_HEAD,    /* waiting for or reading a request head */
    SS_FORWARD, /* routed: exchange with an upstream in progress */
    SS_TUNNEL,  /* after 101 Switching Protocols: bytes both ways */
    SS_DISCARD, /* answered here: reading and dropping the request body */
    SS_CLOSING, /* flushing what we wrote, then closing */
};

enum resp_state { RS_NONE, RS_BODY };

struct wh_session {
    uint32_t magic;
    struct wh_proxy *proxy;
    struct wh_listener *listener;
    struct bufferevent *bev;
    TAILQ_ENTRY(wh_session) link;
    char client_ip[INET6_ADDRSTRLEN];
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer; /* for source_ip conditions */
    enum sess_state state;
    struct event *timer; /* tls_handshake, client_header, then upstream_response deadline */
    int tls;             /* an https listener's connection */
    int handshaking;     /* TLS handshake not finished yet */

    struct wh_http_parser req_parser;
    struct wh_http_msg req;
    struct wh_http_body req_body;
    int req_keepalive;
    int req_body_done;
    uint64_t req_body_sent;
    struct evbuffer *req_head; /* rewritten head, kept for a retry */
    char request_id[129];
    struct wh_gen *gen;                       /* held from a request's head to its end */
    const struct wh_action *action;           /* the matched rule's, in gen */
    const struct wh_cfg_target_group *tg_cfg; /* the forward group's, in gen */
    struct wh_group *group;
    struct wh_target *target;
    struct wh_upconn *up;
    int retried;
    int upgrade;          /* the request asks for a protocol switch */
    double tunnel_active; /* last time a byte crossed the tunnel */

    struct wh_http_parser resp_parser;
    struct wh_http_msg resp;
    struct wh_http_body resp_body;
    enum resp_state resp_state;
    int resp_started; /* a byte of the response reached the client buffer */
    int dechunk;
    int close_after;
    int lingering;

    /* for the access log (filled only when it is on) */
    int client_port;
    double t_start, t_connect, t_sent, t_resp;
    uint64_t bytes_in, bytes_out;
    char method[16];
    char path[256];
    size_t path_len;
};

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static int parse_request_head(struct wh_session *s);
static int start_upstream(struct wh_session *s, const struct wh_target *exclude,
                          struct wh_target *pinned);
static int next_request(struct wh_session *s);
static int start_tunnel(struct wh_session *s, const char *buf);
static int tunnel_recently_active(struct wh_session *s);
static int read_timeout_forgiven(struct wh_session *s, struct bufferevent *bev, short what);
static void handshake_done(struct wh_session *s);

static const struct wh_config *cfg_of(struct wh_session *s)
{
    return s->gen ? s->gen->cfg : s->proxy->gen->cfg;
}

static const char *scheme_of(const struct wh_session *s)
{
    return s->tls ? "https" : "http";
}

/* ---- writing: straight to the socket when nothing is queued ----
 *
 * A bufferevent arms its write event for every byte added to its output and
 * disarms it once drained: two epoll_ctl calls and one more loop turn per
 * write. Writing first, and queueing only what the socket did not take,
 * keeps the common case to one send() (one SSL_write over TLS). */

/* Largest write tried at once over TLS: SSL_write sends one record per call
 * (partial writes on), and the bytes are made contiguous first. */
#define WH_TLS_DIRECT_MAX (16 * 1024)

static int nothing_queued(struct bufferevent *bev)
{
    return evbuffer_get_length(bufferevent_get_output(bev)) == 0;
}

/* Bytes the TLS session took now. When it took none and asks to be
 * retried, OpenSSL holds the start of data in its record buffer: the caller
 * queues all of data, so libevent's next SSL_write starts with the same
 * bytes (moving write buffers are allowed, see tls_bufferevent). */
static size_t tls_write_now(SSL *ssl, const void *data, size_t len)
{
    int w = SSL_write(ssl, data, (int)len);
    if (w > 0)
        return (size_t)w;
    int e = SSL_get_error(ssl, w);
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
        ERR_clear_error(); /* libevent meets the error again and reports it */
    return 0;
}

/* Bytes of data the peer took at once; 0 when something is queued already
 * (order) or the socket is full. */
static size_t write_now(struct bufferevent *bev, const void *data, size_t len)
{
    if (!nothing_queued(bev))
        return 0;
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl)
        return len <= WH_TLS_DIRECT_MAX ? tls_write_now(ssl, data, len) : 0;
    ssize_t w = send(bufferevent_getfd(bev), data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w > 0 ? (size_t)w : 0;
}

static void send_bytes(struct bufferevent *bev, const void *data, size_t len)
{
    size_t done = write_now(bev, data, len);
    if (done < len)
        evbuffer_add(bufferevent_get_output(bev), (const char *)data + done, len - done);
}

/* Move n bytes from the front of src to bev's peer. Over TLS the bytes are
 * made contiguous first, so a small response leaves as one record. */
static void send_from(struct bufferevent *bev, struct evbuffer *src, size_t n)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (n > 0 && nothing_queued(bev)) {
        if (!ssl) {
            int w = evbuffer_write_atmost(src, bufferevent_getfd(bev), (ev_ssize_t)n);
            if (w > 0)
                n -= (size_t)w;
        } else if (n <= WH_TLS_DIRECT_MAX) {
            size_t done = tls_write_now(ssl, evbuffer_pullup(src, (ev_ssize_t)n), n);
            evbuffer_drain(src, done);
            n -= done;
        }
    }
    if (n > 0)
        evbuffer_remove_buffer(src, bufferevent_get_output(bev), n);
}

static void set_client_timeouts(struct wh_session *s)
{
    struct timeval idle = wh_tv(s->listener->cfg->idle_timeout);
    bufferevent_set_timeouts(s->bev, &idle, &idle);
}

/* A server-side TLS connection on fd; NULL when it cannot be made (the
 * caller closes fd). */
static struct bufferevent *tls_bufferevent(struct wh_session *s, evutil_socket_t fd)
{
    SSL *ssl = SSL_new(wh_tls_server_ctx(s->listener->prep->tls));
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        s->proxy->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Our own SSL_write calls (write_now) may leave a record for libevent
     * to finish from a queued copy of the same bytes. */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    /* Clients often close without close_notify; that is an end, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    s->tls = 1;
    s->handshaking = 1;
    return bev;
}

void wh_session_accept(struct wh_listener *l, evutil_socket_t fd, struct sockaddr *sa, int salen)
{
    struct wh_proxy *p = l->proxy;
    struct wh_session *s = calloc(1, sizeof(*s));
    if (!s) {
        evutil_closesocket(fd);
        return;
    }
    s->magic = WH_SESSION_MAGIC;
    s->proxy = p;
    s->listener = l;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->client_port = ntohs(((struct sockaddr_in *)sa)->sin_port); /* same offset in v6 */
    memcpy(&s->peer, sa, (size_t)salen < sizeof(s->peer) ? (size_t)salen : sizeof(s->peer));
    if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, s->client_ip,
                  sizeof(s->client_ip));
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, s->client_ip,
                  sizeof(s->client_ip));
    s->bev = l->prep->tls ? tls_bufferevent(s, fd)
                          : bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    s->timer = evtimer_new(p->base, timer_cb, s);
    s->req_head = evbuffer_new();
    if (!s->bev || !s->timer || !s->req_head) {
        if (!s->bev)
            evutil_closesocket(fd);
        wh_session_free(s);
        return;
    }
    wh_http_parser_init(&s->req_parser, WH_HTTP_REQUEST, cfg_of(s)->limits.max_header_bytes);
    wh_http_msg_init(&s->req, WH_HTTP_REQUEST);
    wh_http_parser_init(&s->resp_parser, WH_HTTP_RESPONSE, cfg_of(s)->limits.max_header_bytes);
    wh_http_msg_init(&s->resp, WH_HTTP_RESPONSE);
    TAILQ_INSERT_TAIL(&p->sessions, s, link);
    p->n_sessions++;
    atomic_store_explicit(&p->open_sessions, p->n_sessions, memory_order_relaxed);
    bufferevent_setcb(s->bev, client_read_cb, client_write_cb, client_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_WRITE, WH_HIGH_WATER / 2, 0);
    bufferevent_setwatermark(s->bev, EV_READ, 0, WH_HIGH_WATER);
    set_client_timeouts(s);
    if (s->tls) {
        struct timeval tv = wh_tv(cfg_of(s)->timeouts.tls_handshake);
        evtimer_add(s->timer, &tv);
    }
    bufferevent_enable(s->bev, EV_READ);
}

/* The target this request is on: referenced, and counted in flight (a
 * tunnel too), until the request ends or moves to another target. */
static void set_target(struct wh_session *s, struct wh_target *t)
{
    if (s->target) {
        wh_target_end(s->target);
        wh_target_unref(s->target);
    }
    s->target = t;
    if (t) {
        wh_target_ref(t);
        wh_target_begin(t);
    }
}

static void release_upstream(struct wh_session *s, int reusable)
{
    struct wh_upconn *u = s->up;
    if (!u)
        return;
    s->up = NULL;
    if (reusable) {
        wh_pool_put(s->proxy, u);
    } else {
        wh_upconn_free(u);
    }
}

void wh_sessions_free_all(struct wh_proxy *p)
{
    struct wh_session *s;
    while ((s = TAILQ_FIRST(&p->sessions)) != NULL)
        wh_session_free(s);
}

void wh_session_free(struct wh_session *s)
{
    struct wh_proxy *p = s->proxy;
    release_upstream(s, 0);
    set_target(s, NULL);
    wh_gen_release(s->gen);
    if (s->bev)
        bufferevent_free(s->bev);
    if (s->timer)
        event_free(s->timer);
    if (s->req_head)
        evbuffer_free(s->req_head);
    wh_http_msg_free(&s->req);
    wh_http_msg_free(&s->resp);
    if (s->link.tqe_prev) {
        TAILQ_REMOVE(&p->sessions, s, link);
        p->n_sessions--;
        atomic_store_explicit(&p->open_sessions, p->n_sessions, memory_order_relaxed);
    }
    s->magic = 0;
    free(s);
    if (p->shutting_down && p->n_sessions == 0 && p->drain_done)
        p->drain_done(p->drain_arg);
}

/* Close once what was written has left: half-close, then read and drop
 * what the client still sends for a moment, so a pending request of its
 * does not turn our answer into a reset. */
static int enter_closing(struct wh_session *s)
{
    release_upstream(s, 0);
    evtimer_del(s->timer);
    s->state = SS_CLOSING;
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    bufferevent_enable(s->bev, EV_READ); /* queued output arms the write event itself */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
        client_write_cb(s->bev, s); /* nothing left to send: linger now */
    return -1;
}

/* Lingering is bounded in total, so a client that keeps dripping bytes
 * cannot hold the connection open. */
#define WH_LINGER_SECONDS 1.0

static void start_lingering(struct wh_session *s)
{
    struct timeval tv = wh_tv(WH_LINGER_SECONDS);
    s->lingering = 1;
    SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
    if (ssl && !s->handshaking)
        SSL_shutdown(ssl); /* close_notify, best effort: the socket is non-blocking */
    shutdown(bufferevent_getfd(s->bev), SHUT_WR);
    bufferevent_set_timeouts(s->bev, NULL, NULL);
    evtimer_add(s->timer, &tv);
    bufferevent_disable(s->bev, EV_WRITE);
    bufferevent_enable(s->bev, EV_READ);
}

static double now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int access_log_on(const struct wh_session *s)
{
    return s->proxy->alog != NULL;
}

static const char *error_code(int status)
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

static const char *action_name(enum wh_action_type t)
{
    return t == WH_ACTION_FORWARD    ? "forward"
           : t == WH_ACTION_REDIRECT ? "redirect"
                                     : "fixed-response";
}

static double since(double t0, double t1)
{
    return t0 > 0 && t1 >= t0 ? t1 - t0 : -1;
}

/* Bump a counter only this worker writes: a plain load and store, no
 * locked add; the control thread reads it for /metrics. */
static void count_one(atomic_uint_fast64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* One access-log line for the request that ends now. */
static void log_request(struct wh_session *s, int status, const char *error)
{
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    count_one(&s->proxy->responses[cls]);
    /* The group's counters are shared by the workers: a real add. Every
     * snapshot of a group points at the same counters. */
    if (s->group && s->group->snap)
        atomic_fetch_add_explicit(&s->group->snap->counters->responses[cls], 1,
                                  memory_order_relaxed);
    if (!access_log_on(s))
        return;
    double end = now_real();
    struct wh_access_entry e = {
        .time = s->t_start > 0 ? s->t_start : end,
        .client_ip = s->client_ip,
        .client_port = s->client_port,
        .listener = s->listener->cfg->name,
        .method = s->method[0] ? s->method : NULL,
        .method_len = strlen(s->method),
        .path = s->method[0] ? s->path : NULL,
        .path_len = s->path_len,
        .protocol = s->req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
        .status = status,
        .bytes_in = s->bytes_in + s->req_body_sent,
        .bytes_out = s->bytes_out,
        .target_group = s->group ? s->group->name : NULL,
        .target = s->target ? s->target->addr.text : NULL,
        .connect_time = since(s->t_connect, s->t_sent),
        .response_time = since(s->t_sent, s->t_resp),
        .total_time = since(s->t_start, end),
        .request_id = s->request_id[0] ? s->request_id : NULL,
        .error = error,
        .matched_rule_priority = s->action ? s->action->priority : -1,
        .actions_executed = s->action ? action_name(s->action->type) : NULL,
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

/* Remember what the log needs of the head before the head's bytes go. */
static void note_request(struct wh_session *s, const char *buf)
{
    if (!access_log_on(s))
        return;
    size_t n = s->req.method_span.len < sizeof(s->method) - 1 ? s->req.method_span.len
                                                              : sizeof(s->method) - 1;
    memcpy(s->method, buf + s->req.method_span.off, n);
    s->method[n] = '\0';
    s->path_len = s->req.target.len < sizeof(s->path) ? s->req.target.len : sizeof(s->path);
    memcpy(s->path, buf + s->req.target.off, s->path_len);
    s->bytes_in = s->req.head_len;
}

/* What the log can say of a head the parser refused: the bytes read, and
 * the method and path when the request line itself was sound. */
static void note_rejected(struct wh_session *s, const char *buf, size_t n)
{
    if (!access_log_on(s))
        return;
    if (s->req.method_span.len > 0 && s->req.target.len > 0)
        note_request(s, buf);
    s->bytes_in = n;
}

/* Send the response made here that waits in the worker's scratch buffer,
 * and log the request. */
static void send_made_here(struct wh_session *s, int status, const char *error)
{
    struct evbuffer *out = s->proxy->scratch;
    s->bytes_out += evbuffer_get_length(out);
    send_from(s->bev, out, evbuffer_get_length(out));
    log_request(s, status, error);
}

/* Answer with an error made here. Closes when asked, when the request body
 * was not consumed, or when the client wants it; else ready for the next
 * request. */
static int reply_error(struct wh_session *s, int status, int force_close)
{
    if (s->resp_started)
        return enter_closing(s); /* a response is half sent: only a close can tell */
    release_upstream(s, 0);
    evtimer_del(s->timer);
    int close = force_close || !s->req_keepalive || !s->req_body_done || s->proxy->shutting_down;
    wh_error_response(s->proxy->scratch, status, close, s->request_id);
    send_made_here(s, status, error_code(status));
    wh_log_debug("proxy", "%s: %d %s", s->client_ip, status, wh_http_reason(status));
    if (close)
        return enter_closing(s);
    return next_request(s);
}

/* Ready the session for the next request on the same connection. */
static int next_request(struct wh_session *s)
{
    if (s->listener->removed)
        return enter_closing(s);
    wh_gen_release(s->gen);
    s->gen = NULL;
    s->state = SS_HEAD;
    s->req_parser.max_head_bytes = cfg_of(s)->limits.max_header_bytes;
    wh_http_parser_reset(&s->req_parser);
    wh_http_msg_reset(&s->req);
    wh_http_parser_reset(&s->resp_parser);
    wh_http_msg_reset(&s->resp);
    evbuffer_drain(s->req_head, evbuffer_get_length(s->req_head));
    s->req_body_done = 0;
    s->req_body_sent = 0;
    s->resp_state = RS_NONE;
    s->resp_started = 0;
    s->retried = 0;
    s->dechunk = 0;
    s->close_after = 0;
    s->upgrade = 0;
    set_target(s, NULL);
    s->group = NULL;
    s->action = NULL;
    s->tg_cfg = NULL;
    s->request_id[0] = '\0';
    s->method[0] = '\0';
    s->t_start = s->t_connect = s->t_sent = s->t_resp = 0;
    s->bytes_in = s->bytes_out = 0;
    set_client_timeouts(s);
    bufferevent_enable(s->bev, EV_READ);
    return parse_request_head(s);
}

/* ---- request side ---- */

static int body_empty(const struct wh_http_body *b)
{
    return b->mode == WH_BODY_NONE || (b->mode == WH_BODY_LENGTH && b->remaining == 0);
}

static void stop_reading_if_full(struct bufferevent *from, struct bufferevent *to)
{
    if (evbuffer_get_length(bufferevent_get_output(to)) >= WH_HIGH_WATER)
        bufferevent_disable(from, EV_READ);
}

static int request_body_error(struct wh_session *s, int status)
{
    /* The upstream must see an incomplete message and a closed connection. */
    release_upstream(s, 0);
    return reply_error(s, status, 1);
}

/* Frame the request body arriving from the client and move it to `to`
 * (NULL: drop it). Returns WH_HTTP_DONE once the body ended (req_body_done
 * set), WH_HTTP_AGAIN for more, or a negative status. Bytes after the body
 * (a pipelined request) stay in the input. */
static int move_request_body(struct wh_session *s, struct bufferevent *to)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t consumed = 0, poff, plen;
        int rc = wh_http_body_next(&s->req_body, v.iov_base, v.iov_len, &consumed, &poff, &plen);
        if (rc < 0)
            return rc;
        if (to)
            send_from(to, in, consumed);
        else
            evbuffer_drain(in, consumed);
        s->req_body_sent += consumed;
        if (rc == WH_HTTP_DONE) {
            s->req_body_done = 1;
            return rc;
        }
        if (consumed == 0)
            break;
    }
    return WH_HTTP_AGAIN;
}

static int pump_request_body(struct wh_session *s)
{
    if (s->req_body_done || !s->up || !s->up->connected)
        return 0;
    int rc = move_request_body(s, s->up->bev);
    if (rc < 0)
        return request_body_error(s, -rc);
    /* Pipelined requests stay in the input until this exchange is over (the
     * read watermark bounds them); only a slow upstream stops reading. */
    if (!s->req_body_done &&
        evbuffer_get_length(bufferevent_get_output(s->up->bev)) >= WH_HIGH_WATER)
        bufferevent_disable(s->bev, EV_READ);
    return 0;
}

static void start_response_timer(struct wh_session *s)
{
    struct timeval tv = wh_tv(cfg_of(s)->timeouts.upstream_response);
    evtimer_add(s->timer, &tv);
}

/* The upstream connection is up: send the head, then what body we have. */
void wh_session_upstream_connected(struct wh_session *s)
{
    struct wh_upconn *u = s->up;
    struct timeval idle = wh_tv(s->listener->cfg->idle_timeout);
    bufferevent_set_timeouts(u->bev, NULL, &idle);
    bufferevent_setwatermark(u->bev, EV_WRITE, WH_HIGH_WATER / 2, 0);
    size_t n = evbuffer_get_length(s->req_head);
    send_bytes(u->bev, evbuffer_pullup(s->req_head, -1), n);
    if (access_log_on(s))
        s->t_sent = now_real();
    bufferevent_enable(u->bev, EV_READ);
    start_response_timer(s);
    if (body_empty(&s->req_body)) {
        s->req_body_done = 1;
        return;
    }
    pump_request_body(s);
}

static int is_idempotent(enum wh_http_method m)
{
    return m == WH_METHOD_GET || m == WH_METHOD_HEAD || m == WH_METHOD_OPTIONS ||
           m == WH_METHOD_TRACE || m == WH_METHOD_PUT || m == WH_METHOD_DELETE;
}

static int can_retry(struct wh_session *s)
{
    return !s->retried && is_idempotent(s->req.method) && s->req_body_sent == 0 &&
           s->resp_state == RS_NONE;
}

static size_t group_size(const struct wh_group *g)
{
    return g && g->snap ? g->snap->n : 0;
}

static int start_upstream(struct wh_session *s, const struct wh_target *exclude,
                          struct wh_target *pinned)
{
    struct wh_target *t = pinned ? pinned : wh_balancer_pick(s->group, exclude);
    struct wh_pool *pool = t ? wh_pool_get(s->proxy, t) : NULL;
    if (!pool)
        return reply_error(s, t ? 500 : 502, 0);
    set_target(s, t);
    s->up = exclude ? NULL : wh_pool_take(pool, s);
    if (s->up) {
        wh_session_upstream_connected(s);
        return 0;
    }
    if (access_log_on(s))
        s->t_connect = now_real();
    s->up = wh_upconn_connect(s->proxy, pool, s);
    if (!s->up) {
        wh_target_note_connect(t, 0);
        if (can_retry(s) && group_size(s->group) > 1) {
            s->retried = 1;
            return start_upstream(s, t, NULL);
        }
        return reply_error(s, 502, 0);
    }
    return 0;
}

/* Retry on a fresh connection to the same target (a pooled one died). */
static int retry_fresh(struct wh_session *s)
{
    s->retried = 1;
    release_upstream(s, 0);
    evtimer_del(s->timer);
    struct wh_pool *pool = wh_pool_get(s->proxy, s->target);
    s->up = pool ? wh_upconn_connect(s->proxy, pool, s) : NULL;
    if (!s->up)
        return reply_error(s, 502, 0);
    return 0;
}

/* ---- routing: the listener's rules, then route.c's stickiness ---- */

/* The request is answered here: its head leaves the input (the body, if
 * any, follows it there). */
static void drop_head(struct wh_session *s)
{
    evbuffer_drain(bufferevent_get_input(s->bev), s->req.head_len);
    s->req_body_done = body_empty(&s->req_body);
}

/* A request body wharfd answered without forwarding is read and dropped so
 * the connection can serve the next request, up to this much; a longer one
 * (or one that waits for 100-continue) closes the connection instead. */
#define WH_DISCARD_MAX (1024 * 1024)

static int discard_body(struct wh_session *s)
{
    int rc = move_request_body(s, NULL);
    if (rc < 0 || s->req_body_sent > WH_DISCARD_MAX)
        return enter_closing(s);
    return rc == WH_HTTP_DONE ? next_request(s) : 0;
}

static int body_discardable(const struct wh_session *s)
{
    if (s->req.flags & WH_HTTP_F_EXPECT_CONTINUE)
        return 0; /* the client may never send it */
    return !(s->req.flags & WH_HTTP_F_CONTENT_LENGTH) || s->req.content_length <= WH_DISCARD_MAX;
}

/* Answer a redirect or fixed-response action; a small request body is then
 * read and dropped, so the connection stays open. */
static int reply_action(struct wh_session *s, const struct wh_action *a, const char *buf)
{
    char location[8192];
    struct wh_local_resp r = {.request_id = s->request_id,
                              .head_only = s->req.method == WH_METHOD_HEAD};
    if (a->type == WH_ACTION_REDIRECT) {
        if (wh_redirect_location(a, buf, &s->req, scheme_of(s), s->listener->port_text, location,
                                 sizeof(location)) < 0)
            return reply_error(s, 500, 0);
        r.status = a->redirect_status;
        r.location = location;
    } else {
        r.status = a->fixed_status;
        r.content_type = a->content_type;
        r.body = a->body;
        r.body_len = a->body_len;
    }
    drop_head(s); /* buf points into it: done with it only now */
    evtimer_del(s->timer);
    int close =
        !s->req_keepalive || s->proxy->shutting_down || (!s->req_body_done && !body_discardable(s));
    r.flags = close ? WH_RESP_CLOSE : s->req.version_minor == 0 ? WH_RESP_KEEPALIVE : 0;
    wh_local_response(s->proxy->scratch, &r);
    send_made_here(s, r.status, NULL);
    if (close)
        return enter_closing(s);
    if (s->req_body_done)
        return next_request(s);
    s->state = SS_DISCARD;
    return discard_body(s);
}

/* Match the rules and act: 0 with the upstream head written and *pinned
 * set to a sticky target (or NULL), or -1 when answered here. */
static int route_request(struct wh_session *s, const char *buf, struct wh_target **pinned)
{
    const struct wh_action *a = wh_rules_match(s->listener->prep->rules, buf, &s->req, &s->peer.sa);
    s->action = a;
    if (a->type != WH_ACTION_FORWARD) {
        reply_action(s, a, buf);
        return -1;
    }
    const struct wh_listener_prep *lp = s->listener->prep;
    int gi = a->groups[wh_route_forward_index(lp, a, buf, &s->req, &s->proxy->rng)].group_index;
    s->group = s->gen->groups[gi];
    s->tg_cfg = &s->gen->cfg->target_groups[gi];
    if (group_size(s->group) == 0) {
        drop_head(s);
        reply_error(s, 503, 0);
        return -1;
    }
    *pinned = s->tg_cfg->stickiness_enabled
                  ? wh_route_pinned_target(lp, s->tg_cfg, s->group, buf, &s->req)
                  : NULL;
    struct wh_fwd_info fwd = {
        .client_ip = s->client_ip,
        .proto = scheme_of(s),
        .port = s->listener->port_text,
        .request_id = s->request_id,
        .host_default = s->group->snap->members[0].target->addr.text,
        .upgrade = s->upgrade,
    };
    wh_rewrite_request(s->req_head, buf, &s->req, &fwd);
    return 0;
}

static void start_header_timer(struct wh_session *s)
{
    if (evtimer_pending(s->timer, NULL))
        return;
    struct timeval tv = wh_tv(cfg_of(s)->timeouts.client_header);
    evtimer_add(s->timer, &tv);
}

static int parse_request_head(struct wh_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || s->state != SS_HEAD)
        return 0;
    start_header_timer(s);
    if (access_log_on(s) && s->t_start == 0)
        s->t_start = now_real();
    size_t max = cfg_of(s)->limits.max_header_bytes + 1;
    size_t n = len < max ? len : max;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    int rc = wh_http_parse_head(&s->req_parser, buf, n, &s->req);
    if (rc == WH_HTTP_AGAIN)
        return 0;
    evtimer_del(s->timer);
    if (rc < 0) {
        note_rejected(s, buf, n);
        return reply_error(s, -rc, 1);
    }
    s->gen = wh_gen_acquire(s->proxy);
    s->req_keepalive = wh_http_keep_alive(&s->req);
    s->upgrade = (s->req.flags & WH_HTTP_F_UPGRADE) && (s->req.flags & WH_HTTP_F_CONN_UPGRADE) &&
                 s->req.version_minor == 1;
    wh_request_id_pick(buf, &s->req, &s->proxy->rng, s->request_id);
    note_request(s, buf);
    uint64_t max_body = cfg_of(s)->limits.max_body_bytes;
    if (max_body && (s->req.flags & WH_HTTP_F_CONTENT_LENGTH) && s->req.content_length > max_body)
        return reply_error(s, 413, 1);
    wh_http_body_init(&s->req_body, s->req.body_mode, s->req.content_length, max_body);
    struct wh_target *pinned = NULL;
    if (route_request(s, buf, &pinned) < 0)
        return -1;
    evbuffer_drain(in, s->req.head_len);
    s->req_body_done = 0;
    s->state = SS_FORWARD;
    if ((s->req.flags & WH_HTTP_F_EXPECT_CONTINUE) && s->req.version_minor == 1 &&
        s->req.body_mode != WH_BODY_NONE)
        send_bytes(s->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return start_upstream(s, NULL, pinned);
}

/* ---- response side ---- */

static int finish_response(struct wh_session *s)
{
    log_request(s, s->resp.status, NULL);
    int upstream_reusable = s->req_body_done && s->resp_body.mode != WH_BODY_UNTIL_CLOSE &&
                            wh_http_keep_alive(&s->resp);
    release_upstream(s, upstream_reusable);
    if (s->close_after || s->proxy->shutting_down)
        return enter_closing(s);
    return next_request(s);
}

static int pump_response_body(struct wh_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->up->bev);
    struct evbuffer *out = s->proxy->scratch; /* may hold the head already */
    int rc = body_empty(&s->resp_body) ? WH_HTTP_DONE : WH_HTTP_AGAIN;
    while (rc == WH_HTTP_AGAIN && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t consumed = 0, poff = 0, plen = 0;
        rc = wh_http_body_next(&s->resp_body, v.iov_base, v.iov_len, &consumed, &poff, &plen);
        if (rc < 0)
            break;
        if (s->dechunk) {
            evbuffer_add(out, (const char *)v.iov_base + poff, plen);
            evbuffer_drain(in, consumed);
            s->bytes_out += plen;
        } else {
            evbuffer_remove_buffer(in, out, consumed);
            s->bytes_out += consumed;
        }
        if (consumed == 0)
            break;
    }
    send_from(s->bev, out, evbuffer_get_length(out));
    if (rc < 0)
        return enter_closing(s); /* the response is half sent: close */
    if (rc == WH_HTTP_DONE)
        return finish_response(s);
    stop_reading_if_full(s->up->bev, s->bev);
    return 0;
}

static unsigned response_flags(struct wh_session *s)
{
    enum wh_http_body_mode mode = s->resp_body.mode;
    s->dechunk = mode == WH_BODY_CHUNKED && s->req.version_minor == 0;
    if (!s->req_keepalive || !s->req_body_done || mode == WH_BODY_UNTIL_CLOSE || s->dechunk ||
        s->proxy->shutting_down)
        s->close_after = 1;
    unsigned flags = s->dechunk ? WH_RESP_DECHUNK : 0;
    if (s->close_after)
        flags |= WH_RESP_CLOSE;
    else if (s->req.version_minor == 0)
        flags |= WH_RESP_KEEPALIVE;
    return flags;
}

/* ---- tunnels (WebSocket and other upgrades) ---- */

/* Move what one side sent to the other, stopping reads while the other side
 * is behind. */
static double loop_now(struct wh_session *s)
{
    struct timeval tv;
    event_base_gettimeofday_cached(s->proxy->base, &tv);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int tunnel_recently_active(struct wh_session *s)
{
    return loop_now(s) - s->tunnel_active < s->listener->cfg->idle_timeout;
}

static void tunnel_pump(struct wh_session *s, struct bufferevent *from, struct bufferevent *to)
{
    struct evbuffer *in = bufferevent_get_input(from);
    if (evbuffer_get_length(in) > 0)
        s->tunnel_active = loop_now(s);
    send_from(to, in, evbuffer_get_length(in));
    if (evbuffer_get_length(bufferevent_get_output(to)) >= WH_HIGH_WATER)
        bufferevent_disable(from, EV_READ);
}

static int start_tunnel(struct wh_session *s, const char *buf)
{
    evtimer_del(s->timer);
    struct evbuffer *out = s->proxy->scratch;
    wh_rewrite_response(out, buf, &s->resp, WH_RESP_UPGRADE, NULL);
    send_from(s->bev, out, evbuffer_get_length(out));
    evbuffer_drain(bufferevent_get_input(s->up->bev), s->resp.head_len);
    evbuffer_drain(s->req_head, evbuffer_get_length(s->req_head));
    s->resp_started = 1;
    s->state = SS_TUNNEL;
    if (access_log_on(s))
        s->t_resp = now_real();
    log_request(s, 101, NULL);
    struct timeval idle = wh_tv(s->listener->cfg->idle_timeout);
    bufferevent_set_timeouts(s->up->bev, &idle, &idle);
    tunnel_pump(s, s->up->bev, s->bev);
    tunnel_pump(s, s->bev, s->up->bev);
    bufferevent_enable(s->bev, EV_READ);
    return 0;
}

/* Parse the response head; 1xx interim responses are dropped (we answered
 * 100-continue ourselves). Returns 1 when the head is done. */
static int parse_response_head(struct wh_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->up->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        size_t max = cfg_of(s)->limits.max_header_bytes + 1;
        size_t n = len < max ? len : max;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        int rc = wh_http_parse_head(&s->resp_parser, buf, n, &s->resp);
        if (rc == WH_HTTP_AGAIN)
            return 0;
        if (rc < 0 || (s->resp.status == 101 && !s->upgrade))
            return reply_error(s, 502, 0);
        if (s->resp.status == 101)
            return start_tunnel(s, buf);
        if (s->resp.status >= 200)
            break;
        evbuffer_drain(in, s->resp.head_len);
        wh_http_parser_reset(&s->resp_parser);
        wh_http_msg_reset(&s->resp);
    }
    const char *buf = (const char *)evbuffer_pullup(in, s->resp.head_len);
    evtimer_del(s->timer);
    wh_target_note_status(s->target, s->resp.status);
    wh_http_body_init(&s->resp_body, wh_http_response_body_mode(&s->resp, s->req.method),
                      s->resp.content_length, 0);
    /* The head waits in the worker's scratch buffer for the first body
     * bytes, so a small response leaves in one send(); pump_response_body
     * always flushes it. */
    struct evbuffer *out = s->proxy->scratch;
    char cookies[2 * WH_STICKY_VALUE_MAX + 2 * WH_NAME_MAX + 160];
    /* a forwarded request: its action forwards, its group is known */
    const char *extra = wh_route_set_cookies(s->listener->prep, s->tg_cfg,
                                             s->tg_cfg->stickiness_enabled ? s->target : NULL,
                                             s->action->stickiness, cookies, sizeof(cookies));
    wh_rewrite_response(out, buf, &s->resp, response_flags(s), extra);
    s->bytes_out += evbuffer_get_length(out);
    if (access_log_on(s))
        s->t_resp = now_real();
    evbuffer_drain(in, s->resp.head_len);
    evbuffer_drain(s->req_head, evbuffer_get_length(s->req_head));
    s->resp_started = 1;
    s->resp_state = RS_BODY;
    struct timeval idle = wh_tv(s->listener->cfg->idle_timeout);
    bufferevent_set_timeouts(s->up->bev, &idle, &idle);
    return 1;
}

void wh_session_upstream_read(struct wh_session *s)
{
    if (s->state == SS_TUNNEL) {
        tunnel_pump(s, s->up->bev, s->bev);
        return;
    }
    if (s->resp_state == RS_NONE) {
        int rc = parse_response_head(s);
        if (rc <= 0)
            return;
    }
    pump_response_body(s);
}

/* The upstream went away or timed out. */
void wh_session_upstream_event(struct wh_session *s, short what)
{
    struct wh_upconn *u = s->up;
    if (s->state == SS_TUNNEL) {
        if (read_timeout_forgiven(s, u->bev, what))
            return;
        tunnel_pump(s, u->bev, s->bev);
        enter_closing(s); /* deliver what the upstream said last, then close */
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (!u->connected)
            reply_error(s, 504, 0);
        else
            reply_error(s, 504, 1); /* idle mid-exchange */
        return;
    }
    if (s->resp_state == RS_BODY) {
        if (pump_response_body(s) < 0)
            return;
        if (s->resp_body.mode == WH_BODY_UNTIL_CLOSE) {
            s->close_after = 1;
            finish_response(s);
        } else {
            enter_closing(s); /* truncated response: only a close can tell */
        }
        return;
    }
    if (!u->connected) { /* refused or unreachable */
        wh_target_note_connect(s->target, 0);
        if (can_retry(s) && group_size(s->group) > 1) {
            s->retried = 1;
            struct wh_target *failed = s->target;
            release_upstream(s, 0);
            start_upstream(s, failed, NULL);
            return;
        }
        reply_error(s, 502, 0);
        return;
    }
    /* Closed before a complete response head. A reused connection that
     * closed before any byte raced with the upstream's idle close. */
    int no_byte = evbuffer_get_length(bufferevent_get_input(u->bev)) == 0;
    if (u->requests > 0 && no_byte && can_retry(s)) {
        retry_fresh(s);
        return;
    }
    reply_error(s, 502, 0);
}

void wh_session_upstream_drained(struct wh_session *s)
{
    if (s->state == SS_TUNNEL) {
        bufferevent_enable(s->bev, EV_READ);
        return;
    }
    if (s->state == SS_FORWARD && !s->req_body_done) {
        bufferevent_enable(s->bev, EV_READ);
        pump_request_body(s);
    }
}

/* ---- client events ---- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct wh_session *s = arg;
    if (s->handshaking)
        handshake_done(s);
    switch (s->state) {
    case SS_HEAD:
        parse_request_head(s);
        break;
    case SS_FORWARD:
        pump_request_body(s);
        break;
    case SS_TUNNEL:
        tunnel_pump(s, s->bev, s->up->bev);
        break;
    case SS_DISCARD:
        discard_body(s);
        break;
    case SS_CLOSING: {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        break;
    }
    }
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct wh_session *s = arg;
    if (s->state == SS_CLOSING) {
        if (!s->lingering && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            start_lingering(s);
        return;
    }
    if (s->state == SS_TUNNEL) {
        bufferevent_enable(s->up->bev, EV_READ);
        return;
    }
    if (s->up && s->resp_state == RS_BODY) {
        bufferevent_enable(s->up->bev, EV_READ);
        wh_session_upstream_read(s);
    }
}

/* A read timeout is not always the end: a client waiting for a slow
 * response is not idle, nor is a tunnel that moves bytes the other way. */
static int read_timeout_forgiven(struct wh_session *s, struct bufferevent *bev, short what)
{
    if (!(what & BEV_EVENT_TIMEOUT) || !(what & BEV_EVENT_READING))
        return 0;
    int waiting = s->state == SS_FORWARD && s->req_body_done && bev == s->bev;
    if (!waiting && !(s->state == SS_TUNNEL && tunnel_recently_active(s)))
        return 0;
    bufferevent_enable(bev, EV_READ);
    return 1;
}

static void handshake_done(struct wh_session *s)
{
    s->handshaking = 0;
    evtimer_del(s->timer);
    count_one(&s->proxy->tls_handshakes[WH_TLS_HANDSHAKE_OK]);
}

/* A connection that ends before its handshake did: garbage, plain HTTP, a
 * protocol or certificate the client refused, or a client that left. */
static void handshake_failed(struct wh_session *s)
{
    count_one(&s->proxy->tls_handshakes[WH_TLS_HANDSHAKE_FAILED]);
    unsigned long e = bufferevent_get_openssl_error(s->bev);
    if (e) {
        char text[160];
        ERR_error_string_n(e, text, sizeof(text));
        wh_log_debug("proxy", "%s: TLS handshake failed: %s", s->client_ip, text);
    }
    while (bufferevent_get_openssl_error(s->bev))
        ; /* the rest of this connection's errors */
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wh_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) { /* TLS handshake finished */
        handshake_done(s);
        return;
    }
    if (s->handshaking)
        handshake_failed(s);
    if (read_timeout_forgiven(s, bev, what))
        return;
    if ((what & BEV_EVENT_EOF) && s->state == SS_FORWARD && s->req_body_done) {
        s->close_after = 1; /* half-closed after a whole request: still answer */
        bufferevent_disable(bev, EV_READ);
        return;
    }
    wh_session_free(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_session *s = arg;
    if (s->state == SS_CLOSING || s->handshaking) {
        if (s->handshaking) {
            count_one(&s->proxy->tls_handshakes[WH_TLS_HANDSHAKE_TIMEOUT]);
            wh_log_debug("proxy", "%s: TLS handshake timed out", s->client_ip);
        }
        wh_session_free(s); /* lingering is over, or the handshake took too long */
        return;
    }
    if (s->state == SS_HEAD) {
        reply_error(s, 408, 1);
        return;
    }
    if (s->state == SS_FORWARD && s->resp_state == RS_NONE)
        reply_error(s, 504, 0);
}

void wh_proxy_close_tunnels(struct wh_proxy *p, struct wh_target *t)
{
    struct wh_session *s, *next;
    for (s = TAILQ_FIRST(&p->sessions); s; s = next) {
        next = TAILQ_NEXT(s, link);
        if (s->state == SS_TUNNEL && s->target == t)
            wh_session_free(s);
    }
    wh_target_unref(t);
}

void wh_sessions_close_idle(struct wh_proxy *p)
{
    struct wh_session *s, *next;
    for (s = TAILQ_FIRST(&p->sessions); s; s = next) {
        next = TAILQ_NEXT(s, link);
        wh_session_close_if_idle(s);
    }
}

void wh_session_close_if_idle(struct wh_session *s)
{
    if (s->state == SS_HEAD && evbuffer_get_length(bufferevent_get_input(s->bev)) == 0)
        wh_session_free(s);
}

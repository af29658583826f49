/* A client connection and the HTTP exchange of each of its requests with
 * an upstream: parse the head strictly, route, forward head and body, relay
 * the response, then keep the connection for the next request or close it.
 * The upstream connection is the pool's; it reports to the session through
 * session_upstream_ops. After a 101 the bytes go through tunnel.c; what
 * each request did is noted by access_record.c; writes go through send.c.
 * None of those frees a session: only this file does.
 *
 * Functions that may free the session return -1 ("session gone"); their
 * callers must return at once. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "wharf/log.h"
#include "wharf/obj.h"
#include "session.h"

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static int parse_request_head(struct wh_session *s);
static int start_upstream(struct wh_session *s, const struct wh_target *exclude,
                          struct wh_target *pinned);
static int next_request(struct wh_session *s);
static int read_timeout_forgiven(struct wh_session *s, struct bufferevent *bev, short what);
static void handshake_done(struct wh_session *s);
static void session_close_if_idle(struct wh_session *s);

static void upstream_connected_cb(void *owner);
static void upstream_readable_cb(void *owner);
static void upstream_drained_cb(void *owner);
static void upstream_event_cb(void *owner, short what);

/* How the pool reports on the upstream connection a session holds. */
static const struct wh_upconn_ops session_upstream_ops = {
    .connected = upstream_connected_cb,
    .readable = upstream_readable_cb,
    .drained = upstream_drained_cb,
    .event = upstream_event_cb,
};

static const struct wh_config *cfg_of(struct wh_session *s)
{
    return s->gen ? s->gen->cfg : s->proxy->gen->cfg;
}

static const char *scheme_of(const struct wh_session *s)
{
    return s->tls ? "https" : "http";
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
    /* Our own SSL_write calls (send.c) may leave a record for libevent
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
    WH_INIT_OBJ(s, WH_SESSION_MAGIC);
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
    wh_access_record_abort(s, "connection_closed"); /* shutdown drain, limits */
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
    WH_FREE_OBJ(s);
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

/* Send the response made here that waits in the worker's scratch buffer,
 * and log the request. */
static void send_made_here(struct wh_session *s, int status, const char *error)
{
    struct evbuffer *out = s->proxy->scratch;
    s->rec.bytes_out += evbuffer_get_length(out);
    wh_send_from(s->bev, out, evbuffer_get_length(out));
    wh_access_record_end(s, status, error);
}

/* Answer with an error made here. Closes when asked, when the request body
 * was not consumed, or when the client wants it; else ready for the next
 * request. */
static int reply_error(struct wh_session *s, int status, int force_close)
{
    if (s->resp_started) { /* a response is half sent: only a close can tell */
        wh_access_record_abort(s, wh_access_record_error(status));
        return enter_closing(s);
    }
    release_upstream(s, 0);
    evtimer_del(s->timer);
    int close = force_close || !s->req_keepalive || !s->req_body_done || s->proxy->shutting_down;
    wh_error_response(s->proxy->scratch, status, close, s->request_id);
    send_made_here(s, status, wh_access_record_error(status));
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
    s->rec = (struct wh_access_record){0};
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
            wh_send_from(to, in, consumed);
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
static void upstream_connected(struct wh_session *s)
{
    struct wh_upconn *u = s->up;
    struct timeval idle = wh_tv(s->listener->cfg->idle_timeout);
    bufferevent_set_timeouts(u->bev, NULL, &idle);
    bufferevent_setwatermark(u->bev, EV_WRITE, WH_HIGH_WATER / 2, 0);
    size_t n = evbuffer_get_length(s->req_head);
    wh_send_bytes(u->bev, evbuffer_pullup(s->req_head, -1), n);
    wh_access_record_stamp(s, &s->rec.t_sent);
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
    struct wh_target *t = pinned ? pinned : wh_balance_group_pick(s->group, exclude);
    struct wh_pool *pool = t ? wh_pool_get(s->proxy, t) : NULL;
    if (!pool)
        return reply_error(s, t ? 500 : 502, 0);
    set_target(s, t);
    s->up = exclude ? NULL : wh_pool_take(pool, &session_upstream_ops, s);
    if (s->up) {
        upstream_connected(s);
        return 0;
    }
    wh_access_record_stamp(s, &s->rec.t_connect);
    s->up = wh_upconn_connect(s->proxy, pool, &session_upstream_ops, s);
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
    s->up = pool ? wh_upconn_connect(s->proxy, pool, &session_upstream_ops, s) : NULL;
    if (!s->up)
        return reply_error(s, 502, 0);
    return 0;
}

/* ---- routing: the listener's rules, then sticky.c's stickiness ---- */

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
    int gi = a->groups[wh_sticky_forward_index(lp, a, buf, &s->req, &s->proxy->rng)].group_index;
    s->group = s->gen->groups[gi];
    s->tg_cfg = &s->gen->cfg->target_groups[gi];
    if (group_size(s->group) == 0) {
        drop_head(s);
        reply_error(s, 503, 0);
        return -1;
    }
    *pinned = s->tg_cfg->stickiness_enabled
                  ? wh_sticky_pinned_target(lp, s->tg_cfg, s->group, buf, &s->req)
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
    if (s->rec.t_start == 0)
        wh_access_record_stamp(s, &s->rec.t_start);
    size_t max = cfg_of(s)->limits.max_header_bytes + 1;
    size_t n = len < max ? len : max;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    int rc = wh_http_parse_head(&s->req_parser, buf, n, &s->req);
    if (rc == WH_HTTP_AGAIN)
        return 0;
    evtimer_del(s->timer);
    if (rc < 0) {
        wh_access_record_rejected(s, buf, n);
        return reply_error(s, -rc, 1);
    }
    s->gen = wh_gen_hold(s->proxy->gen);
    s->req_keepalive = wh_http_keep_alive(&s->req);
    s->upgrade = (s->req.flags & WH_HTTP_F_UPGRADE) && (s->req.flags & WH_HTTP_F_CONN_UPGRADE) &&
                 s->req.version_minor == 1;
    wh_request_id_pick(buf, &s->req, &s->proxy->rng, s->request_id);
    wh_access_record_request(s, buf);
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
        wh_send_bytes(s->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return start_upstream(s, NULL, pinned);
}

/* ---- response side ---- */

static int finish_response(struct wh_session *s)
{
    wh_access_record_end(s, s->resp.status, NULL);
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
            s->rec.bytes_out += plen;
        } else {
            evbuffer_remove_buffer(in, out, consumed);
            s->rec.bytes_out += consumed;
        }
        if (consumed == 0)
            break;
    }
    wh_send_from(s->bev, out, evbuffer_get_length(out));
    if (rc < 0) { /* the response is half sent: close */
        wh_access_record_abort(s, "upstream_bad_framing");
        return enter_closing(s);
    }
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
            return wh_tunnel_start(s, buf);
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
    const char *extra = wh_sticky_set_cookies(s->listener->prep, s->tg_cfg,
                                              s->tg_cfg->stickiness_enabled ? s->target : NULL,
                                              s->action->stickiness, cookies, sizeof(cookies));
    wh_rewrite_response(out, buf, &s->resp, response_flags(s), extra);
    s->rec.bytes_out += evbuffer_get_length(out);
    wh_access_record_stamp(s, &s->rec.t_resp);
    evbuffer_drain(in, s->resp.head_len);
    evbuffer_drain(s->req_head, evbuffer_get_length(s->req_head));
    s->resp_started = 1;
    s->resp_state = RS_BODY;
    struct timeval idle = wh_tv(s->listener->cfg->idle_timeout);
    bufferevent_set_timeouts(s->up->bev, &idle, &idle);
    return 1;
}

static void upstream_read(struct wh_session *s)
{
    if (s->state == SS_TUNNEL) {
        wh_tunnel_pump(s, s->up->bev, s->bev);
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
static void upstream_event(struct wh_session *s, short what)
{
    struct wh_upconn *u = s->up;
    if (s->state == SS_TUNNEL) {
        if (read_timeout_forgiven(s, u->bev, what))
            return;
        wh_tunnel_pump(s, u->bev, s->bev);
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
            wh_access_record_abort(s, "upstream_reset");
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

static void upstream_drained(struct wh_session *s)
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

/* ---- the pool's callbacks: the upstream connection this session holds ---- */

static void upstream_connected_cb(void *owner)
{
    struct wh_session *s;
    WH_CAST_OBJ(s, owner, WH_SESSION_MAGIC);
    upstream_connected(s);
}

static void upstream_readable_cb(void *owner)
{
    struct wh_session *s;
    WH_CAST_OBJ(s, owner, WH_SESSION_MAGIC);
    upstream_read(s);
}

static void upstream_drained_cb(void *owner)
{
    struct wh_session *s;
    WH_CAST_OBJ(s, owner, WH_SESSION_MAGIC);
    upstream_drained(s);
}

static void upstream_event_cb(void *owner, short what)
{
    struct wh_session *s;
    WH_CAST_OBJ(s, owner, WH_SESSION_MAGIC);
    upstream_event(s, what);
}

/* ---- client events ---- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct wh_session *s;
    WH_CAST_OBJ(s, arg, WH_SESSION_MAGIC);
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
        wh_tunnel_pump(s, s->bev, s->up->bev);
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
    struct wh_session *s;
    WH_CAST_OBJ(s, arg, WH_SESSION_MAGIC);
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
        upstream_read(s);
    }
}

/* A read timeout is not always the end: a client waiting for a slow
 * response is not idle, nor is a tunnel that moves bytes the other way. */
static int read_timeout_forgiven(struct wh_session *s, struct bufferevent *bev, short what)
{
    if (!(what & BEV_EVENT_TIMEOUT) || !(what & BEV_EVENT_READING))
        return 0;
    int waiting = s->state == SS_FORWARD && s->req_body_done && bev == s->bev;
    if (!waiting && !(s->state == SS_TUNNEL && wh_tunnel_recently_active(s)))
        return 0;
    bufferevent_enable(bev, EV_READ);
    return 1;
}

static void handshake_done(struct wh_session *s)
{
    s->handshaking = 0;
    evtimer_del(s->timer);
    wh_count_one(&s->proxy->tls_handshakes[WH_TLS_HANDSHAKE_OK]);
}

/* A connection that ends before its handshake did: garbage, plain HTTP, a
 * protocol or certificate the client refused, or a client that left. */
static void handshake_failed(struct wh_session *s)
{
    wh_count_one(&s->proxy->tls_handshakes[WH_TLS_HANDSHAKE_FAILED]);
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
    struct wh_session *s;
    WH_CAST_OBJ(s, arg, WH_SESSION_MAGIC);
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
    wh_access_record_abort(s, what & BEV_EVENT_TIMEOUT ? "client_idle_timeout" : "client_closed");
    wh_session_free(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_session *s;
    WH_CAST_OBJ(s, arg, WH_SESSION_MAGIC);
    if (s->state == SS_CLOSING || s->handshaking) {
        if (s->handshaking) {
            wh_count_one(&s->proxy->tls_handshakes[WH_TLS_HANDSHAKE_TIMEOUT]);
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
        session_close_if_idle(s);
    }
}

static void session_close_if_idle(struct wh_session *s)
{
    if (s->state == SS_HEAD && evbuffer_get_length(bufferevent_get_input(s->bev)) == 0)
        wh_session_free(s);
}

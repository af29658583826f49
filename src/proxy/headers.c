/* Head rewriting between client and upstream: what crosses a hop and what
 * wharfd adds. Pure functions over a parsed head, so the unit tests can
 * check every rule without sockets. */
#include <string.h>
#include <strings.h>

#include "proxy-int.h"

#define MAX_CONN_TOKENS 16

/* Header names that never cross a hop (RFC 9110 §7.6.1), plus the ones
 * wharfd sets itself; lengths computed at compile time (request path). */
struct hdr_name {
    const char *name;
    size_t len;
};
#define HDR(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
static const struct hdr_name request_drop[] = {
    HDR("connection"),   HDR("keep-alive"),        HDR("te"),
    HDR("trailer"),      HDR("upgrade"),           HDR("proxy-connection"),
    HDR("expect"),       HDR("x-forwarded-proto"), HDR("x-forwarded-port"),
    HDR("x-request-id"), HDR("x-forwarded-for"),
};
static const struct hdr_name response_drop[] = {
    HDR("connection"), HDR("keep-alive"), HDR("te"),
    HDR("trailer"),    HDR("upgrade"),    HDR("proxy-connection"),
};
#undef HDR

struct conn_tokens {
    struct wh_http_span tok[MAX_CONN_TOKENS];
    size_t n;
};

static int is_tchar_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* Collect the tokens listed by every Connection header. */
static void collect_connection_tokens(const char *buf, const struct wh_http_msg *m,
                                      struct conn_tokens *ct)
{
    ct->n = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct wh_http_header *h = &m->headers[i];
        if (!wh_http_span_eq(buf, h->name, "connection", 10))
            continue;
        uint32_t p = h->value.off, end = h->value.off + h->value.len;
        while (p < end && ct->n < MAX_CONN_TOKENS) {
            while (p < end && (buf[p] == ',' || is_tchar_ws(buf[p])))
                p++;
            uint32_t start = p;
            while (p < end && buf[p] != ',' && !is_tchar_ws(buf[p]))
                p++;
            if (p > start)
                ct->tok[ct->n++] = (struct wh_http_span){start, p - start};
        }
    }
}

/* An Upgrade request keeps Upgrade when tunnelling; everything else that
 * Connection names still goes. */
static int keep_for_upgrade(const char *buf, struct wh_http_span name, int upgrade)
{
    return upgrade && wh_http_span_eq(buf, name, "upgrade", 7);
}

static int name_in_list(const char *buf, struct wh_http_span name, const struct hdr_name *list,
                        size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (name.len == list[i].len && wh_http_span_eq(buf, name, list[i].name, list[i].len))
            return 1;
    return 0;
}

static int named_by_connection(const char *buf, struct wh_http_span name,
                               const struct conn_tokens *ct)
{
    for (size_t i = 0; i < ct->n; i++) {
        struct wh_http_span t = ct->tok[i];
        if (t.len == name.len && strncasecmp(buf + t.off, buf + name.off, t.len) == 0)
            return 1;
    }
    return 0;
}

static int is_proxy_header(const char *buf, struct wh_http_span name)
{
    return name.len >= 6 && strncasecmp(buf + name.off, "proxy-", 6) == 0;
}

static void add_header_line(struct evbuffer *out, const char *buf, const struct wh_http_header *h)
{
    evbuffer_add(out, buf + h->name.off, h->name.len);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, buf + h->value.off, h->value.len);
    evbuffer_add(out, "\r\n", 2);
}

int wh_request_id_valid(const char *s, size_t len)
{
    if (len < 1 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

void wh_request_id_pick(const char *buf, const struct wh_http_msg *req, uint64_t *rng, char *id_out)
{
    int i = wh_http_find_header(req, buf, "x-request-id", 12);
    if (i >= 0) {
        struct wh_http_span v = req->headers[i].value;
        if (wh_request_id_valid(buf + v.off, v.len)) {
            memcpy(id_out, buf + v.off, v.len);
            id_out[v.len] = '\0';
            return;
        }
    }
    static const char hex[] = "0123456789abcdef";
    /* the balancer's xorshift64*: request ids need uniqueness, not secrecy */
    uint64_t a = wh_balance_rand(rng), b = wh_balance_rand(rng);
    for (int k = 0; k < 16; k++) {
        id_out[k] = hex[(a >> (k * 4)) & 15];
        id_out[16 + k] = hex[(b >> (k * 4)) & 15];
    }
    id_out[32] = '\0';
}

/* X-Forwarded-For: every value the client sent, in order, then the peer. */
static void add_forwarded_for(struct evbuffer *out, const char *buf, const struct wh_http_msg *req,
                              const char *client_ip)
{
    evbuffer_add(out, "X-Forwarded-For: ", 17);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct wh_http_header *h = &req->headers[i];
        if (!wh_http_span_eq(buf, h->name, "x-forwarded-for", 15) || h->value.len == 0)
            continue;
        evbuffer_add(out, buf + h->value.off, h->value.len);
        evbuffer_add(out, ", ", 2);
    }
    evbuffer_add_printf(out, "%s\r\n", client_ip);
}

int wh_rewrite_request(struct evbuffer *out, const char *buf, const struct wh_http_msg *req,
                       const struct wh_fwd_info *fwd)
{
    struct conn_tokens ct;
    collect_connection_tokens(buf, req, &ct);
    evbuffer_add(out, buf + req->method_span.off, req->method_span.len);
    evbuffer_add(out, " ", 1);
    evbuffer_add(out, buf + req->target.off, req->target.len);
    evbuffer_add(out, " HTTP/1.1\r\n", 11);
    if (req->host_index < 0 && fwd->host_default)
        evbuffer_add_printf(out, "Host: %s\r\n", fwd->host_default);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct wh_http_header *h = &req->headers[i];
        if (keep_for_upgrade(buf, h->name, fwd->upgrade)) {
            add_header_line(out, buf, h);
            continue;
        }
        if (name_in_list(buf, h->name, request_drop,
                         sizeof(request_drop) / sizeof(request_drop[0])) ||
            is_proxy_header(buf, h->name) || named_by_connection(buf, h->name, &ct))
            continue;
        add_header_line(out, buf, h);
    }
    if (fwd->upgrade)
        evbuffer_add(out, "Connection: upgrade\r\n", 21);
    add_forwarded_for(out, buf, req, fwd->client_ip);
    evbuffer_add_printf(out,
                        "X-Forwarded-Proto: %s\r\nX-Forwarded-Port: %s\r\nX-Request-Id: %s\r\n\r\n",
                        fwd->proto, fwd->port, fwd->request_id);
    return 0;
}

int wh_rewrite_response(struct evbuffer *out, const char *buf, const struct wh_http_msg *resp,
                        unsigned flags, const char *extra)
{
    struct conn_tokens ct;
    collect_connection_tokens(buf, resp, &ct);
    evbuffer_add_printf(out, "HTTP/1.1 %d ", resp->status);
    evbuffer_add(out, buf + resp->reason.off, resp->reason.len);
    evbuffer_add(out, "\r\n", 2);
    int upgrade = (flags & WH_RESP_UPGRADE) != 0;
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct wh_http_header *h = &resp->headers[i];
        if (keep_for_upgrade(buf, h->name, upgrade)) {
            add_header_line(out, buf, h);
            continue;
        }
        if (name_in_list(buf, h->name, response_drop,
                         sizeof(response_drop) / sizeof(response_drop[0])) ||
            named_by_connection(buf, h->name, &ct))
            continue;
        if ((flags & WH_RESP_DECHUNK) && wh_http_span_eq(buf, h->name, "transfer-encoding", 17))
            continue;
        add_header_line(out, buf, h);
    }
    if (upgrade)
        evbuffer_add(out, "Connection: upgrade\r\n", 21);
    else if (flags & WH_RESP_CLOSE)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (flags & WH_RESP_KEEPALIVE)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
    evbuffer_add(out, "\r\n", 2);
    return 0;
}

void wh_local_response(struct evbuffer *out, const struct wh_local_resp *r)
{
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", r->status, wh_http_reason(r->status));
    if (r->location)
        evbuffer_add_printf(out, "Location: %s\r\n", r->location);
    if (r->body_len > 0 || r->content_type)
        evbuffer_add_printf(out, "Content-Type: %s\r\n",
                            r->content_type ? r->content_type : "text/plain");
    evbuffer_add_printf(out, "Content-Length: %zu\r\nServer: wharf\r\n", r->body_len);
    if (r->request_id && r->request_id[0])
        evbuffer_add_printf(out, "X-Request-Id: %s\r\n", r->request_id);
    if (r->flags & WH_RESP_CLOSE)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (r->flags & WH_RESP_KEEPALIVE)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    if (r->extra)
        evbuffer_add(out, r->extra, strlen(r->extra));
    evbuffer_add(out, "\r\n", 2);
    if (r->body_len > 0 && !r->head_only)
        evbuffer_add(out, r->body, r->body_len);
}

void wh_error_response(struct evbuffer *out, int status, int close, const char *request_id)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, wh_http_reason(status));
    struct wh_local_resp r = {
        .status = status,
        .content_type = "text/plain",
        .body = body,
        .body_len = n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0,
        .flags = close ? WH_RESP_CLOSE : WH_RESP_KEEPALIVE,
        .request_id = request_id,
    };
    wh_local_response(out, &r);
}

/* Unit tests for the HTTP/1.1 parser (src/http/http.c).
 *
 * Every message goes through parse_checked()/body_checked(), which parse it
 * in one piece, split in two at every byte boundary, and byte by byte, each
 * time from a fresh exact-size copy (so ASan sees any read past len), and
 * fail unless all ways give the same result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wharf/http.h"

#define S(lit) lit, sizeof(lit) - 1

/* Inputs longer than this are split at sampled points only. */
#define SPLIT_ALL_MAX 2048

/* ---- helpers ---- */

static char *copy(const char *s, size_t n)
{
    char *c = malloc(n ? n : 1);
    assert_non_null(c);
    memcpy(c, s, n);
    return c;
}

static void span_equal(struct wh_http_span a, struct wh_http_span b)
{
    assert_int_equal(a.off, b.off);
    assert_int_equal(a.len, b.len);
}

static void msg_equal(const struct wh_http_msg *a, const struct wh_http_msg *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->version_minor, b->version_minor);
    assert_int_equal(a->method, b->method);
    span_equal(a->method_span, b->method_span);
    span_equal(a->target, b->target);
    assert_int_equal(a->host_index, b->host_index);
    assert_int_equal(a->status, b->status);
    span_equal(a->reason, b->reason);
    assert_int_equal(a->n_headers, b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        span_equal(a->headers[i].name, b->headers[i].name);
        span_equal(a->headers[i].value, b->headers[i].value);
    }
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->body_mode, b->body_mode);
    assert_int_equal(a->content_length, b->content_length);
    assert_int_equal(a->head_len, b->head_len);
}

static int parse_once(enum wh_http_kind kind, const char *s, size_t len, size_t max,
                      struct wh_http_msg *m)
{
    struct wh_http_parser p;
    char *c = copy(s, len);

    wh_http_parser_init(&p, kind, max);
    int rc = wh_http_parse_head(&p, c, len, m);
    /* Asking again changes nothing. */
    assert_int_equal(wh_http_parse_head(&p, c, len, m), rc);
    free(c);
    return rc;
}

/* Parse s[0..k) then s[0..len): must end as the one-shot parse did. */
static void parse_split(enum wh_http_kind kind, const char *s, size_t len, size_t k, size_t max,
                        int want, const struct wh_http_msg *ref)
{
    struct wh_http_parser p;
    struct wh_http_msg m;
    char *a = copy(s, k);
    char *b = copy(s, len);

    wh_http_parser_init(&p, kind, max);
    wh_http_msg_init(&m, kind);
    int rc = wh_http_parse_head(&p, a, k, &m);
    if (rc == WH_HTTP_AGAIN)
        rc = wh_http_parse_head(&p, b, len, &m);
    assert_int_equal(rc, want);
    if (rc == WH_HTTP_DONE)
        msg_equal(&m, ref);
    wh_http_msg_free(&m);
    free(a);
    free(b);
}

static void parse_bytewise(enum wh_http_kind kind, const char *s, size_t len, size_t max, int want,
                           const struct wh_http_msg *ref)
{
    struct wh_http_parser p;
    struct wh_http_msg m;
    int rc = WH_HTTP_AGAIN;

    wh_http_parser_init(&p, kind, max);
    wh_http_msg_init(&m, kind);
    for (size_t i = 0; i <= len && rc == WH_HTTP_AGAIN; i++) {
        char *c = copy(s, i);
        rc = wh_http_parse_head(&p, c, i, &m);
        free(c);
    }
    assert_int_equal(rc, want);
    if (rc == WH_HTTP_DONE)
        msg_equal(&m, ref);
    wh_http_msg_free(&m);
}

/* Returns the one-shot result; *m holds it (free with wh_http_msg_free). */
static int parse_checked(enum wh_http_kind kind, const char *s, size_t len, size_t max,
                         struct wh_http_msg *m)
{
    wh_http_msg_init(m, kind);
    int rc = parse_once(kind, s, len, max, m);
    size_t step = len <= SPLIT_ALL_MAX ? 1 : len / 97 + 1;

    for (size_t k = 0; k <= len; k += step)
        parse_split(kind, s, len, k, max, rc, m);
    if (len <= SPLIT_ALL_MAX)
        parse_bytewise(kind, s, len, max, rc, m);
    return rc;
}

static int head_rc(enum wh_http_kind kind, const char *s, size_t len)
{
    struct wh_http_msg m;
    int rc = parse_checked(kind, s, len, 0, &m);
    wh_http_msg_free(&m);
    return rc;
}

#define REQ_RC(lit) head_rc(WH_HTTP_REQUEST, S(lit))
#define RESP_RC(lit) head_rc(WH_HTTP_RESPONSE, S(lit))

static void assert_span(const char *buf, struct wh_http_span s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(buf + s.off, want, s.len);
}

static void assert_header(const char *buf, const struct wh_http_msg *m, size_t i, const char *name,
                          const char *value)
{
    assert_true(i < m->n_headers);
    assert_span(buf, m->headers[i].name, name);
    assert_span(buf, m->headers[i].value, value);
}

/* ---- body helpers ---- */

struct body_out {
    int rc;
    size_t consumed; /* total over all calls, including up to an error */
    char payload[1 << 17];
    size_t payload_len;
};

/* Feeds d[0..len) to b, calling again while bytes remain and AGAIN. */
static int body_feed(struct wh_http_body *b, const char *d, size_t len, struct body_out *o)
{
    size_t off = 0;

    for (;;) {
        size_t c = 12345, po = 12345, pl = 12345;
        int rc = wh_http_body_next(b, d + off, len - off, &c, &po, &pl);
        assert_true(c <= len - off);
        assert_true(pl == 0 || po + pl <= c);
        if (pl) {
            assert_true(o->payload_len + pl <= sizeof(o->payload));
            memcpy(o->payload + o->payload_len, d + off + po, pl);
            o->payload_len += pl;
        }
        off += c;
        o->consumed += c;
        if (rc != WH_HTTP_AGAIN || off == len)
            return rc;
        assert_true(c > 0); /* AGAIN with bytes left must make progress */
    }
}

static void body_run(enum wh_http_body_mode mode, uint64_t cl, uint64_t max, const char *s,
                     size_t len, const size_t *cuts, size_t n_cuts, struct body_out *o)
{
    struct wh_http_body b;
    size_t from = 0;

    memset(o, 0, offsetof(struct body_out, payload));
    o->payload_len = 0;
    wh_http_body_init(&b, mode, cl, max);
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        char *c = copy(s + from, to - from);
        o->rc = body_feed(&b, c, to - from, o);
        free(c);
        if (o->rc != WH_HTTP_AGAIN)
            break;
        from = to;
    }
}

static void body_out_equal(const struct body_out *a, const struct body_out *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->consumed, b->consumed);
    assert_int_equal(a->payload_len, b->payload_len);
    assert_memory_equal(a->payload, b->payload, a->payload_len);
}

/* Frames s in one piece, in two at every boundary, and byte by byte. */
static struct body_out *body_checked(enum wh_http_body_mode mode, uint64_t cl, uint64_t max,
                                     const char *s, size_t len)
{
    static struct body_out ref, tmp;
    size_t step = len <= SPLIT_ALL_MAX ? 1 : len / 97 + 1;

    body_run(mode, cl, max, s, len, NULL, 0, &ref);
    for (size_t k = 0; k <= len; k += step) {
        body_run(mode, cl, max, s, len, &k, 1, &tmp);
        body_out_equal(&ref, &tmp);
    }
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    body_run(mode, cl, max, s, len, cuts, len ? len - 1 : 0, &tmp);
    body_out_equal(&ref, &tmp);
    free(cuts);
    return &ref;
}

static int chunked_rc(const char *s, size_t len)
{
    return body_checked(WH_BODY_CHUNKED, 0, 0, s, len)->rc;
}

#define CHUNKED_RC(lit) chunked_rc(S(lit))

/* ---- valid requests ---- */

static void test_req_simple_get(void **state)
{
    static const char r[] = "GET /index.html?q=1 HTTP/1.1\r\n"
                            "Host: example.com\r\n"
                            "User-Agent: t/1.0\r\n"
                            "\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.kind, WH_HTTP_REQUEST);
    assert_int_equal(m.method, WH_METHOD_GET);
    assert_span(r, m.method_span, "GET");
    assert_span(r, m.target, "/index.html?q=1");
    assert_int_equal(m.version_minor, 1);
    assert_int_equal(m.n_headers, 2);
    assert_header(r, &m, 0, "Host", "example.com");
    assert_header(r, &m, 1, "User-Agent", "t/1.0");
    assert_int_equal(m.host_index, 0);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.body_mode, WH_BODY_NONE);
    assert_int_equal(m.head_len, sizeof(r) - 1);
    assert_true(wh_http_keep_alive(&m));
    wh_http_msg_free(&m);
}

static void test_req_head_len_excludes_body(void **state)
{
    static const char r[] = "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.head_len, strstr(r, "hello") - r);
    assert_int_equal(m.method, WH_METHOD_POST);
    assert_int_equal(m.body_mode, WH_BODY_LENGTH);
    assert_int_equal(m.content_length, 5);
    assert_int_equal(m.flags, WH_HTTP_F_CONTENT_LENGTH);
    wh_http_msg_free(&m);
}

static void test_req_methods(void **state)
{
    static const struct {
        const char *name;
        enum wh_http_method m;
    } t[] = {
        {"GET", WH_METHOD_GET},        {"HEAD", WH_METHOD_HEAD},
        {"POST", WH_METHOD_POST},      {"PUT", WH_METHOD_PUT},
        {"DELETE", WH_METHOD_DELETE},  {"OPTIONS", WH_METHOD_OPTIONS},
        {"TRACE", WH_METHOD_TRACE},    {"CONNECT", WH_METHOD_CONNECT},
        {"PATCH", WH_METHOD_PATCH},    {"PROPFIND", WH_METHOD_OTHER},
        {"get", WH_METHOD_OTHER},      {"GETS", WH_METHOD_OTHER},
        {"M-SEARCH", WH_METHOD_OTHER}, {"X", WH_METHOD_OTHER},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char r[128];
        struct wh_http_msg m;
        int n = snprintf(r, sizeof(r), "%s / HTTP/1.1\r\nHost: h\r\n\r\n", t[i].name);
        assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, (size_t)n, 0, &m), WH_HTTP_DONE);
        assert_int_equal(m.method, t[i].m);
        assert_span(r, m.method_span, t[i].name);
        wh_http_msg_free(&m);
    }
}

static void test_req_http10_without_host(void **state)
{
    static const char r[] = "GET / HTTP/1.0\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.version_minor, 0);
    assert_int_equal(m.host_index, -1);
    assert_int_equal(m.n_headers, 0);
    assert_false(wh_http_keep_alive(&m));
    wh_http_msg_free(&m);
}

static void test_req_http10_keep_alive(void **state)
{
    static const char r[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_CONN_KEEPALIVE);
    assert_int_equal(m.host_index, 1);
    assert_true(wh_http_keep_alive(&m));
    wh_http_msg_free(&m);
}

static void test_req_connection_close(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_CONN_CLOSE);
    assert_false(wh_http_keep_alive(&m));
    wh_http_msg_free(&m);
}

static void test_req_connection_lists(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n"
                            "Connection: foo , Upgrade,,\r\n"
                            "connection:\tkeep-alive\t\r\n"
                            "Connection: closed, xclose, keep-alivex\r\n"
                            "\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_CONN_UPGRADE | WH_HTTP_F_CONN_KEEPALIVE);
    assert_header(r, &m, 1, "Connection", "foo , Upgrade,,");
    assert_header(r, &m, 2, "connection", "keep-alive");
    wh_http_msg_free(&m);
}

static void test_req_websocket_upgrade(void **state)
{
    static const char r[] = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_UPGRADE | WH_HTTP_F_CONN_UPGRADE);
    wh_http_msg_free(&m);
}

static void test_req_expect_continue(void **state)
{
    static const char r[] = "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
                            "Content-Length: 3\r\n\r\n";
    static const char other[] = "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_EXPECT_CONTINUE | WH_HTTP_F_CONTENT_LENGTH);
    wh_http_msg_free(&m);
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(other), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, 0);
    wh_http_msg_free(&m);
}

static void test_req_chunked(void **state)
{
    static const char r[] = "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nHost: a\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_CHUNKED);
    assert_int_equal(m.body_mode, WH_BODY_CHUNKED);
    wh_http_msg_free(&m);
}

static void test_req_chunked_ows(void **state)
{
    static const char r[] =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \t chunked \t\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.body_mode, WH_BODY_CHUNKED);
    wh_http_msg_free(&m);
}

static void test_req_content_length_zero(void **state)
{
    static const char r[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_CONTENT_LENGTH);
    assert_int_equal(m.content_length, 0);
    assert_int_equal(m.body_mode, WH_BODY_NONE);
    wh_http_msg_free(&m);
}

static void test_req_content_length_identical_list(void **state)
{
    static const char r[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5,5\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.content_length, 5);
    assert_int_equal(m.body_mode, WH_BODY_LENGTH);
    wh_http_msg_free(&m);
}

static void test_req_content_length_identical_headers(void **state)
{
    static const char r[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                            "content-length: 005\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.content_length, 5);
    wh_http_msg_free(&m);
}

static void test_req_content_length_19_digits(void **state)
{
    static const char r[] =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.content_length, 9999999999999999999ULL);
    wh_http_msg_free(&m);
}

static void test_req_value_ows_trimmed(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost:a\r\nX-A:  \t in  side \t \r\nX-B:\r\n"
                            "X-C:   \r\nX-D: \x80\xff obs\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_header(r, &m, 0, "Host", "a");
    assert_header(r, &m, 1, "X-A", "in  side");
    assert_header(r, &m, 2, "X-B", "");
    assert_header(r, &m, 3, "X-C", "");
    assert_header(r, &m, 4, "X-D", "\x80\xff obs");
    wh_http_msg_free(&m);
}

static void test_req_token_names(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_header(r, &m, 1, "!#$%&'*+-.^_`|~09azAZ", "v");
    wh_http_msg_free(&m);
}

static void test_req_target_forms(void **state)
{
    static const char *targets[] = {
        "*",
        "http://example.com:8080/a?b",
        "example.com:443",
        "/a%20b?c=<>&d=\"{}|\\^`",
        "/~!$&'()*+,;=:@[]",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char r[256];
        struct wh_http_msg m;
        int n = snprintf(r, sizeof(r), "OPTIONS %s HTTP/1.1\r\nHost: a\r\n\r\n", targets[i]);
        assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, (size_t)n, 0, &m), WH_HTTP_DONE);
        assert_span(r, m.target, targets[i]);
        wh_http_msg_free(&m);
    }
}

static void test_req_leading_crlf_skipped(void **state)
{
    static const char r[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.method_span.off, 4);
    assert_span(r, m.target, "/");
    assert_int_equal(m.head_len, sizeof(r) - 1);
    wh_http_msg_free(&m);
}

static void test_req_leading_crlf_counts_toward_max(void **state)
{
    static const char r[] = "\r\n\r\n\r\n\r\nGET / HTTP/1.0\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), sizeof(r) - 1, &m), WH_HTTP_DONE);
    wh_http_msg_free(&m);
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), sizeof(r) - 2, &m), -431);
    wh_http_msg_free(&m);
}

static void test_req_host_forms(void **state)
{
    static const char *hosts[] = {"", "example.com", "a:8080", "[::1]:80", "xn--d-fka.de", "a_b~c"};
    (void)state;

    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char r[256];
        struct wh_http_msg m;
        int n = snprintf(r, sizeof(r), "GET / HTTP/1.1\r\nX: y\r\nHost: %s\r\n\r\n", hosts[i]);
        assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, (size_t)n, 0, &m), WH_HTTP_DONE);
        assert_int_equal(m.host_index, 1);
        assert_span(r, m.headers[1].value, hosts[i]);
        wh_http_msg_free(&m);
    }
}

static void test_req_find_header(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n"
                            "x-forwarded-for: 5.6.7.8\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(wh_http_find_header(&m, r, S("X-FORWARDED-FOR")), 1);
    assert_int_equal(wh_http_find_header(&m, r, S("host")), 0);
    assert_int_equal(wh_http_find_header(&m, r, S("X-Forwarded")), -1);
    assert_int_equal(wh_http_find_header(&m, r, S("Via")), -1);
    assert_true(wh_http_span_eq(r, m.headers[1].value, S("1.2.3.4")));
    assert_false(wh_http_span_eq(r, m.headers[1].value, S("1.2.3.5")));
    assert_true(wh_http_span_eq(r, m.method_span, S("get")));
    wh_http_msg_free(&m);
}

/* The header array grows past its first allocation; 1000 lines are fine. */
static void test_req_many_headers(void **state)
{
    size_t cap = 1100 * 16 + 64, n = 0;
    char *r = malloc(cap);
    struct wh_http_msg m;
    (void)state;

    n += (size_t)sprintf(r + n, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < WH_HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(r + n, "X-%d: %d\r\n", i, i);
    n += (size_t)sprintf(r + n, "\r\n");
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, n, 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.n_headers, WH_HTTP_MAX_HEADERS);
    assert_header(r, &m, 999, "X-999", "999");
    wh_http_msg_free(&m);
    free(r);
}

static void test_req_too_many_headers(void **state)
{
    size_t cap = 1100 * 16 + 64, n = 0;
    char *r = malloc(cap);
    struct wh_http_msg m;
    (void)state;

    n += (size_t)sprintf(r + n, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i <= WH_HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(r + n, "X-%d: %d\r\n", i, i);
    n += (size_t)sprintf(r + n, "\r\n");
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, n, 0, &m), -431);
    wh_http_msg_free(&m);
    free(r);
}

static void test_req_head_exactly_max(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), sizeof(r) - 1, &m), WH_HTTP_DONE);
    wh_http_msg_free(&m);
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), sizeof(r) - 2, &m), -431);
    wh_http_msg_free(&m);
}

/* Exactly max_head_bytes without the end of the head: -431 at once. */
static void test_req_431_at_exactly_max(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n\r";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), sizeof(r) - 1, &m), -431);
    wh_http_msg_free(&m);
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), sizeof(r), &m), WH_HTTP_AGAIN);
    wh_http_msg_free(&m);
}

static void test_req_431_long_line(void **state)
{
    char r[600];
    struct wh_http_msg m;
    (void)state;

    memset(r, 'a', sizeof(r));
    memcpy(r, "GET /", 5);
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, sizeof(r), 256, &m), -431);
    wh_http_msg_free(&m);
    /* Fewer bytes than the limit: still waiting. */
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, 255, 256, &m), WH_HTTP_AGAIN);
    wh_http_msg_free(&m);
}

/* An error in the first max_head_bytes wins over -431. */
static void test_req_error_before_431(void **state)
{
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX\x01: 1\r\n";
    char r[600];
    struct wh_http_msg m;
    (void)state;

    memset(r, 'a', sizeof(r));
    memcpy(r, head, sizeof(head) - 1);
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, sizeof(r), 256, &m), -400);
    wh_http_msg_free(&m);
}

static void test_req_default_max(void **state)
{
    size_t n = WH_HTTP_MAX_HEAD_DEFAULT + 10;
    char *r = malloc(n);
    struct wh_http_msg m;
    (void)state;

    memset(r, 'a', n);
    memcpy(r, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(parse_checked(WH_HTTP_REQUEST, r, n, 0, &m), -431);
    wh_http_msg_free(&m);
    free(r);
}

static void test_req_partial_again(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n\r";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_REQUEST, S(r), 0, &m), WH_HTTP_AGAIN);
    wh_http_msg_free(&m);
    assert_int_equal(REQ_RC(""), WH_HTTP_AGAIN);
    assert_int_equal(REQ_RC("\r\n"), WH_HTTP_AGAIN);
}

/* Junk on a plain port is refused before any LF arrives. */
static void test_req_tls_handshake_early(void **state)
{
    (void)state;
    assert_int_equal(REQ_RC("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), -400);
    assert_int_equal(REQ_RC("GET\t/"), -400);
    assert_int_equal(REQ_RC(" GET"), -400);
    assert_int_equal(REQ_RC("\r\r"), -400);
    assert_int_equal(REQ_RC("\r\nPO(ST"), -400);
    assert_int_equal(REQ_RC("\r"), WH_HTTP_AGAIN);
    assert_int_equal(REQ_RC("GET"), WH_HTTP_AGAIN);
    assert_int_equal(REQ_RC("GET /\x01"), WH_HTTP_AGAIN); /* judged at the LF */
    assert_int_equal(REQ_RC("ABCDEFGHIJKLMNOPQRSTUVWXYZ\x01"), WH_HTTP_AGAIN);
}

static void test_resp_junk_early(void **state)
{
    (void)state;
    assert_int_equal(RESP_RC("<html>"), -400);
    assert_int_equal(RESP_RC("HTTP "), -400);
    assert_int_equal(RESP_RC("\r\n"), -400);
    assert_int_equal(RESP_RC("HTT"), WH_HTTP_AGAIN);
    assert_int_equal(RESP_RC("HTTP/9.9 "), WH_HTTP_AGAIN);
}

/* Parser and message reuse for a second message on the connection. */
static void test_req_reuse(void **state)
{
    static const char a[] = "GET /a HTTP/1.1\r\nHost: a\r\nX-1: 1\r\nX-2: 2\r\n\r\n";
    static const char b[] = "HEAD /b HTTP/1.1\r\nHost: b\r\n\r\n";
    struct wh_http_parser p;
    struct wh_http_msg m;
    (void)state;

    wh_http_parser_init(&p, WH_HTTP_REQUEST, 1024);
    wh_http_msg_init(&m, WH_HTTP_REQUEST);
    assert_int_equal(wh_http_parse_head(&p, S(a), &m), WH_HTTP_DONE);
    assert_int_equal(wh_http_parse_head(&p, S(a), &m), WH_HTTP_DONE);
    struct wh_http_header *arr = m.headers;
    wh_http_parser_reset(&p);
    assert_int_equal(p.max_head_bytes, 1024);
    assert_int_equal(wh_http_parse_head(&p, S(b), &m), WH_HTTP_DONE);
    assert_ptr_equal(m.headers, arr);
    assert_int_equal(m.n_headers, 1);
    assert_int_equal(m.method, WH_METHOD_HEAD);
    assert_span(b, m.target, "/b");
    wh_http_msg_reset(&m);
    assert_int_equal(m.n_headers, 0);
    assert_ptr_equal(m.headers, arr);
    wh_http_msg_free(&m);
    assert_null(m.headers);
    wh_http_msg_free(&m); /* twice is fine */
}

static void test_req_error_sticks(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n";
    struct wh_http_parser p;
    struct wh_http_msg m;
    (void)state;

    wh_http_parser_init(&p, WH_HTTP_REQUEST, 0);
    wh_http_msg_init(&m, WH_HTTP_REQUEST);
    assert_int_equal(wh_http_parse_head(&p, S(r), &m), -400);
    assert_int_equal(wh_http_parse_head(&p, S(r), &m), -400);
    assert_int_equal(wh_http_parse_head(&p, "GET / HTTP/1.0\r\n\r\n", 18, &m), -400);
    wh_http_parser_reset(&p);
    assert_int_equal(wh_http_parse_head(&p, "GET / HTTP/1.0\r\n\r\n", 18, &m), WH_HTTP_DONE);
    wh_http_msg_free(&m);
}

/* ---- invalid requests: one test per form, each with its exact code ---- */

#define REQ_ERR(name, code, lit)                                                                   \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        assert_int_equal(REQ_RC(lit), code);                                                       \
    }

#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
#define P11 "POST / HTTP/1.1\r\nHost: a\r\n"

/* framing */
REQ_ERR(test_req_cl_and_te, -400, P11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
REQ_ERR(test_req_te_and_cl, -400, P11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")
REQ_ERR(test_req_cl_and_unknown_te, -400,
        P11 "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n")
REQ_ERR(test_req_cl_differing_headers, -400, P11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n")
REQ_ERR(test_req_cl_differing_list, -400, P11 "Content-Length: 5, 6\r\n\r\n")
REQ_ERR(test_req_cl_plus, -400, P11 "Content-Length: +5\r\n\r\n")
REQ_ERR(test_req_cl_minus, -400, P11 "Content-Length: -5\r\n\r\n")
REQ_ERR(test_req_cl_empty, -400, P11 "Content-Length: \r\n\r\n")
REQ_ERR(test_req_cl_letters, -400, P11 "Content-Length: 5a\r\n\r\n")
REQ_ERR(test_req_cl_hex, -400, P11 "Content-Length: 0x5\r\n\r\n")
REQ_ERR(test_req_cl_space_inside, -400, P11 "Content-Length: 5 5\r\n\r\n")
REQ_ERR(test_req_cl_decimal, -400, P11 "Content-Length: 5.0\r\n\r\n")
REQ_ERR(test_req_cl_20_digits, -400, P11 "Content-Length: 10000000000000000000\r\n\r\n")
REQ_ERR(test_req_cl_overflow, -400, P11 "Content-Length: 18446744073709551616\r\n\r\n")
REQ_ERR(test_req_cl_leading_zeros_20, -400, P11 "Content-Length: 00000000000000000005\r\n\r\n")
REQ_ERR(test_req_cl_trailing_comma, -400, P11 "Content-Length: 5,\r\n\r\n")
REQ_ERR(test_req_cl_leading_comma, -400, P11 "Content-Length: ,5\r\n\r\n")
REQ_ERR(test_req_te_gzip, -501, P11 "Transfer-Encoding: gzip\r\n\r\n")
REQ_ERR(test_req_te_gzip_chunked, -501, P11 "Transfer-Encoding: gzip, chunked\r\n\r\n")
REQ_ERR(test_req_te_gzip_then_chunked_lines, -501,
        P11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
REQ_ERR(test_req_te_identity, -501, P11 "Transfer-Encoding: identity\r\n\r\n")
REQ_ERR(test_req_te_chunked_param, -501, P11 "Transfer-Encoding: chunked;q=\"1\"\r\n\r\n")
REQ_ERR(test_req_te_chunked_gzip, -400, P11 "Transfer-Encoding: chunked, gzip\r\n\r\n")
REQ_ERR(test_req_te_chunked_twice, -400, P11 "Transfer-Encoding: chunked, chunked\r\n\r\n")
REQ_ERR(test_req_te_chunked_two_lines, -400,
        P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")
REQ_ERR(test_req_te_empty, -400, P11 "Transfer-Encoding: \r\n\r\n")
REQ_ERR(test_req_te_garbage, -400, P11 "Transfer-Encoding: \"chunked\"\r\n\r\n")
REQ_ERR(test_req_te_bad_param, -400, P11 "Transfer-Encoding: chunked;\r\n\r\n")
REQ_ERR(test_req_te_trailing_comma, -400, P11 "Transfer-Encoding: chunked,\r\n\r\n")
REQ_ERR(test_req_te_space_inside, -400, P11 "Transfer-Encoding: chun ked\r\n\r\n")
REQ_ERR(test_req_te_http10, -400, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")

/* line structure and characters */
REQ_ERR(test_req_obs_fold_sp, -400, H11 "X-A: 1\r\n  folded\r\n\r\n")
REQ_ERR(test_req_obs_fold_tab, -400, H11 "X-A: 1\r\n\tfolded\r\n\r\n")
REQ_ERR(test_req_obs_fold_first_line, -400, "GET / HTTP/1.1\r\n Host: a\r\n\r\n")
REQ_ERR(test_req_bare_cr_value, -400, H11 "X-A: a\rb\r\n\r\n")
REQ_ERR(test_req_bare_cr_line_end, -400, H11 "X-A: a\r\r\n\r\n")
REQ_ERR(test_req_bare_cr_request_line, -400, "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_bare_cr_final, -400, H11 "\r\r\n")
REQ_ERR(test_req_bare_lf_request_line, -400, "GET / HTTP/1.1\nHost: a\r\n\r\n")
REQ_ERR(test_req_bare_lf_header, -400, H11 "X-A: a\n\r\n")
REQ_ERR(test_req_bare_lf_final, -400, H11 "\n")
REQ_ERR(test_req_bare_lf_leading, -400, "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_bare_lf_inside_value, -400, H11 "X-A: a\nb\r\n\r\n")
REQ_ERR(test_req_nul_value, -400, H11 "X-A: a\0b\r\n\r\n")
REQ_ERR(test_req_nul_name, -400, H11 "X\0A: a\r\n\r\n")
REQ_ERR(test_req_del_value, -400, H11 "X-A: a\x7f\r\n\r\n")
REQ_ERR(test_req_ctl_value, -400, H11 "X-A: \x01\r\n\r\n")
REQ_ERR(test_req_esc_value, -400, H11 "X-A: \x1b[0m\r\n\r\n")
REQ_ERR(test_req_obs_text_name, -400, H11 "X-\xc3\xa9: a\r\n\r\n")
REQ_ERR(test_req_space_before_colon, -400, H11 "X-A : a\r\n\r\n")
REQ_ERR(test_req_tab_before_colon, -400, H11 "X-A\t: a\r\n\r\n")
REQ_ERR(test_req_space_before_colon_host, -400, "GET / HTTP/1.1\r\nHost : a\r\n\r\n")
REQ_ERR(test_req_empty_name, -400, H11 ": a\r\n\r\n")
REQ_ERR(test_req_no_colon, -400, H11 "X-A a\r\n\r\n")
REQ_ERR(test_req_separator_in_name, -400, H11 "X(A): a\r\n\r\n")

/* Host */
REQ_ERR(test_req_11_no_host, -400, "GET / HTTP/1.1\r\nX: y\r\n\r\n")
REQ_ERR(test_req_11_two_hosts, -400, H11 "host: a\r\n\r\n")
REQ_ERR(test_req_10_two_hosts, -400, "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_host_space, -400, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
REQ_ERR(test_req_host_slash, -400, "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")
REQ_ERR(test_req_host_userinfo, -400, "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n")

/* request line */
REQ_ERR(test_req_version_20, -505, "GET / HTTP/2.0\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_12, -505, "GET / HTTP/1.2\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_09, -505, "GET / HTTP/0.9\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_30, -505, "GET / HTTP/3.0\r\n\r\n")
REQ_ERR(test_req_version_suffix, -400, "GET / HTTP/1.1x\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_lower, -400, "GET / http/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_no_minor, -400, "GET / HTTP/1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_two_digits, -400, "GET / HTTP/1.10\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_2, -400, "GET / HTTP/2\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_version_trailing_space, -400, "GET / HTTP/1.1 \r\nHost: a\r\n\r\n")
REQ_ERR(test_req_http09, -400, "GET /\r\n\r\n")
REQ_ERR(test_req_method_only, -400, "GET\r\n\r\n")
REQ_ERR(test_req_two_spaces_after_method, -400, "GET  / HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_two_spaces_before_version, -400, "GET /  HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_leading_space, -400, " GET / HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_tab_separator, -400, "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_space_in_target, -400, "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_obs_text_target, -400, "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_ctl_target, -400, "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_nul_target, -400, "GET /a\0 HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_del_target, -400, "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_bad_method_char, -400, "G(T / HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_empty_method, -400, " / HTTP/1.1\r\nHost: a\r\n\r\n")
REQ_ERR(test_req_status_line_as_request, -400, "HTTP/1.1 200 OK\r\n\r\n")
REQ_ERR(test_req_only_garbage_line, -400, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n")

/* ---- responses ---- */

static void test_resp_simple(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.kind, WH_HTTP_RESPONSE);
    assert_int_equal(m.version_minor, 1);
    assert_int_equal(m.status, 200);
    assert_span(r, m.reason, "OK");
    assert_int_equal(m.n_headers, 2);
    assert_header(r, &m, 0, "Content-Length", "12");
    assert_header(r, &m, 1, "Server", "x");
    assert_int_equal(m.flags, WH_HTTP_F_CONTENT_LENGTH);
    assert_int_equal(m.content_length, 12);
    assert_int_equal(m.body_mode, WH_BODY_LENGTH);
    assert_int_equal(m.host_index, -1);
    assert_int_equal(m.head_len, sizeof(r) - 1);
    assert_true(wh_http_keep_alive(&m));
    wh_http_msg_free(&m);
}

static void test_resp_until_close(void **state)
{
    static const char r[] = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.version_minor, 0);
    assert_int_equal(m.status, 404);
    assert_span(r, m.reason, "Not Found");
    assert_int_equal(m.body_mode, WH_BODY_UNTIL_CLOSE);
    assert_false(wh_http_keep_alive(&m));
    wh_http_msg_free(&m);
}

static void test_resp_chunked(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_CHUNKED);
    assert_int_equal(m.body_mode, WH_BODY_CHUNKED);
    wh_http_msg_free(&m);
}

static void test_resp_cl_zero(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.body_mode, WH_BODY_NONE);
    wh_http_msg_free(&m);
}

static void test_resp_empty_reason(void **state)
{
    static const char a[] = "HTTP/1.1 204 \r\n\r\n";
    static const char b[] = "HTTP/1.1 204\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(a), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.status, 204);
    assert_int_equal(m.reason.len, 0);
    assert_int_equal(m.reason.off, 13);
    wh_http_msg_free(&m);
    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(b), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.status, 204);
    assert_int_equal(m.reason.len, 0);
    wh_http_msg_free(&m);
}

static void test_resp_reason_chars(void **state)
{
    static const char r[] = "HTTP/1.1 599 Weird \t reason \xe2\x9c\x93 (ok)\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.status, 599);
    assert_span(r, m.reason, "Weird \t reason \xe2\x9c\x93 (ok)");
    wh_http_msg_free(&m);
}

static void test_resp_connection_close(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_false(wh_http_keep_alive(&m));
    wh_http_msg_free(&m);
}

static void test_resp_switching_protocols(void **state)
{
    static const char r[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: upgrade\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.flags, WH_HTTP_F_UPGRADE | WH_HTTP_F_CONN_UPGRADE);
    assert_int_equal(m.body_mode, WH_BODY_UNTIL_CLOSE);
    assert_int_equal(wh_http_response_body_mode(&m, WH_METHOD_GET), WH_BODY_NONE);
    wh_http_msg_free(&m);
}

/* Host is a request field: a response may repeat it. */
static void test_resp_host_ignored(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.host_index, -1);
    wh_http_msg_free(&m);
}

static void test_resp_body_modes(void **state)
{
    static const struct {
        int status;
        enum wh_http_method method;
        enum wh_http_body_mode parsed, want;
    } t[] = {
        {200, WH_METHOD_GET, WH_BODY_LENGTH, WH_BODY_LENGTH},
        {200, WH_METHOD_HEAD, WH_BODY_LENGTH, WH_BODY_NONE},
        {200, WH_METHOD_HEAD, WH_BODY_CHUNKED, WH_BODY_NONE},
        {404, WH_METHOD_HEAD, WH_BODY_UNTIL_CLOSE, WH_BODY_NONE},
        {100, WH_METHOD_POST, WH_BODY_UNTIL_CLOSE, WH_BODY_NONE},
        {103, WH_METHOD_GET, WH_BODY_UNTIL_CLOSE, WH_BODY_NONE},
        {199, WH_METHOD_GET, WH_BODY_LENGTH, WH_BODY_NONE},
        {204, WH_METHOD_GET, WH_BODY_UNTIL_CLOSE, WH_BODY_NONE},
        {204, WH_METHOD_DELETE, WH_BODY_LENGTH, WH_BODY_NONE},
        {304, WH_METHOD_GET, WH_BODY_LENGTH, WH_BODY_NONE},
        {304, WH_METHOD_GET, WH_BODY_CHUNKED, WH_BODY_NONE},
        {200, WH_METHOD_CONNECT, WH_BODY_UNTIL_CLOSE, WH_BODY_NONE},
        {299, WH_METHOD_CONNECT, WH_BODY_LENGTH, WH_BODY_NONE},
        {407, WH_METHOD_CONNECT, WH_BODY_LENGTH, WH_BODY_LENGTH},
        {500, WH_METHOD_POST, WH_BODY_CHUNKED, WH_BODY_CHUNKED},
        {205, WH_METHOD_GET, WH_BODY_UNTIL_CLOSE, WH_BODY_UNTIL_CLOSE},
        {200, WH_METHOD_OTHER, WH_BODY_NONE, WH_BODY_NONE},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct wh_http_msg m;
        wh_http_msg_init(&m, WH_HTTP_RESPONSE);
        m.status = t[i].status;
        m.body_mode = t[i].parsed;
        assert_int_equal(wh_http_response_body_mode(&m, t[i].method), t[i].want);
    }
}

/* The same through the parser: a 304 with Content-Length has no body. */
static void test_resp_304_with_length(void **state)
{
    static const char r[] = "HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n";
    struct wh_http_msg m;
    (void)state;

    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, S(r), 0, &m), WH_HTTP_DONE);
    assert_int_equal(m.body_mode, WH_BODY_LENGTH);
    assert_int_equal(wh_http_response_body_mode(&m, WH_METHOD_GET), WH_BODY_NONE);
    assert_int_equal(wh_http_response_body_mode(&m, WH_METHOD_HEAD), WH_BODY_NONE);
    wh_http_msg_free(&m);
}

static void test_resp_431(void **state)
{
    char r[300];
    struct wh_http_msg m;
    (void)state;

    memset(r, 'x', sizeof(r));
    memcpy(r, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(parse_checked(WH_HTTP_RESPONSE, r, sizeof(r), 128, &m), -431);
    wh_http_msg_free(&m);
}

#define RESP_ERR(name, code, lit)                                                                  \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        assert_int_equal(RESP_RC(lit), code);                                                      \
    }

RESP_ERR(test_resp_two_digit_status, -400, "HTTP/1.1 20 OK\r\n\r\n")
RESP_ERR(test_resp_four_digit_status, -400, "HTTP/1.1 2000 OK\r\n\r\n")
RESP_ERR(test_resp_alpha_status, -400, "HTTP/1.1 2x0 OK\r\n\r\n")
RESP_ERR(test_resp_status_below_100, -400, "HTTP/1.1 099 Odd\r\n\r\n")
RESP_ERR(test_resp_no_status, -400, "HTTP/1.1\r\n\r\n")
RESP_ERR(test_resp_double_space, -400, "HTTP/1.1  200 OK\r\n\r\n")
RESP_ERR(test_resp_tab_separator, -400, "HTTP/1.1\t200 OK\r\n\r\n")
RESP_ERR(test_resp_version_20, -505, "HTTP/2.0 200 OK\r\n\r\n")
RESP_ERR(test_resp_version_12, -505, "HTTP/1.2 200 OK\r\n\r\n")
RESP_ERR(test_resp_version_lower, -400, "http/1.1 200 OK\r\n\r\n")
RESP_ERR(test_resp_version_suffix, -400, "HTTP/1.1x 200 OK\r\n\r\n")
RESP_ERR(test_resp_leading_crlf, -400, "\r\nHTTP/1.1 200 OK\r\n\r\n")
RESP_ERR(test_resp_ctl_reason, -400, "HTTP/1.1 200 O\x01K\r\n\r\n")
RESP_ERR(test_resp_bare_cr_reason, -400, "HTTP/1.1 200 O\rK\r\n\r\n")
RESP_ERR(test_resp_bare_lf, -400, "HTTP/1.1 200 OK\n\r\n")
RESP_ERR(test_resp_cl_and_te, -400,
         "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
RESP_ERR(test_resp_cl_differ, -400,
         "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
RESP_ERR(test_resp_te_gzip, -501, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
RESP_ERR(test_resp_obs_fold, -400, "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n")
RESP_ERR(test_resp_request_line, -400, "GET / HTTP/1.1\r\n\r\n")

/* ---- body framing ---- */

static void test_body_none(void **state)
{
    struct body_out *o = body_checked(WH_BODY_NONE, 0, 0, S("GET / HTTP/1.1\r\n"));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->consumed, 0);
    assert_int_equal(o->payload_len, 0);
}

static void test_body_length(void **state)
{
    struct body_out *o = body_checked(WH_BODY_LENGTH, 11, 0, S("hello worldGET / HTTP/1.1"));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->consumed, 11);
    assert_int_equal(o->payload_len, 11);
    assert_memory_equal(o->payload, "hello world", 11);
}

static void test_body_length_partial(void **state)
{
    struct body_out *o = body_checked(WH_BODY_LENGTH, 100, 0, S("only this"));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_AGAIN);
    assert_int_equal(o->consumed, 9);
    assert_int_equal(o->payload_len, 9);
}

static void test_body_length_piece_api(void **state)
{
    struct wh_http_body b;
    size_t c, po, pl;
    (void)state;

    wh_http_body_init(&b, WH_BODY_LENGTH, 5, 0);
    assert_int_equal(wh_http_body_next(&b, "", 0, &c, &po, &pl), WH_HTTP_AGAIN);
    assert_int_equal(c, 0);
    assert_int_equal(wh_http_body_next(&b, "abc", 3, &c, &po, &pl), WH_HTTP_AGAIN);
    assert_int_equal(c, 3);
    assert_int_equal(po, 0);
    assert_int_equal(pl, 3);
    assert_int_equal(b.remaining, 2);
    assert_int_equal(wh_http_body_next(&b, "defg", 4, &c, &po, &pl), WH_HTTP_DONE);
    assert_int_equal(c, 2);
    assert_int_equal(pl, 2);
    assert_int_equal(b.payload_seen, 5);
    /* Finished: nothing more belongs to it. */
    assert_int_equal(wh_http_body_next(&b, "g", 1, &c, &po, &pl), WH_HTTP_DONE);
    assert_int_equal(c, 0);
    assert_int_equal(pl, 0);
}

static void test_body_length_zero(void **state)
{
    struct body_out *o = body_checked(WH_BODY_LENGTH, 0, 0, S("x"));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->consumed, 0);
}

static void test_body_length_over_max(void **state)
{
    struct body_out *o = body_checked(WH_BODY_LENGTH, 11, 10, S("hello world"));
    (void)state;

    assert_int_equal(o->rc, -413);
    assert_int_equal(o->payload_len, 0);
    o = body_checked(WH_BODY_LENGTH, 10, 10, S("helloworld"));
    assert_int_equal(o->rc, WH_HTTP_DONE);
}

static void test_body_until_close(void **state)
{
    struct body_out *o = body_checked(WH_BODY_UNTIL_CLOSE, 0, 0, S("all of\r\n0\r\n\r\nthis"));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_AGAIN);
    assert_int_equal(o->consumed, 17);
    assert_int_equal(o->payload_len, 17);
}

static void test_body_until_close_max(void **state)
{
    struct body_out *o = body_checked(WH_BODY_UNTIL_CLOSE, 0, 5, S("12345"));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_AGAIN);
    assert_int_equal(o->payload_len, 5);
    o = body_checked(WH_BODY_UNTIL_CLOSE, 0, 5, S("123456"));
    assert_int_equal(o->rc, -413);
    assert_int_equal(o->payload_len, 5);
    assert_memory_equal(o->payload, "12345", 5);
}

static void test_chunked_simple(void **state)
{
    static const char s[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
    struct body_out *o = body_checked(WH_BODY_CHUNKED, 0, 0, S(s));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->consumed, sizeof(s) - 1 - 4);
    assert_int_equal(o->payload_len, 11);
    assert_memory_equal(o->payload, "hello world", 11);
}

/* Pieces are payload or framing, never both. */
static void test_chunked_piece_api(void **state)
{
    static const char s[] = "3\r\nabc\r\n0\r\n\r\n";
    struct wh_http_body b;
    size_t c, po, pl;
    (void)state;

    wh_http_body_init(&b, WH_BODY_CHUNKED, 0, 0);
    assert_int_equal(wh_http_body_next(&b, S(s), &c, &po, &pl), WH_HTTP_AGAIN);
    assert_int_equal(c, 3);
    assert_int_equal(pl, 0);
    assert_int_equal(b.remaining, 3);
    assert_int_equal(wh_http_body_next(&b, s + 3, sizeof(s) - 4, &c, &po, &pl), WH_HTTP_AGAIN);
    assert_int_equal(c, 3);
    assert_int_equal(po, 0);
    assert_int_equal(pl, 3);
    assert_int_equal(wh_http_body_next(&b, s + 6, sizeof(s) - 7, &c, &po, &pl), WH_HTTP_DONE);
    assert_int_equal(c, 7);
    assert_int_equal(pl, 0);
    assert_int_equal(b.payload_seen, 3);
}

static void test_chunked_hex_sizes(void **state)
{
    char s[64 + 300];
    char want[300];
    (void)state;

    memset(want, 'z', sizeof(want));
    int n = sprintf(s, "1A\r\n");
    memset(s + n, 'z', 26);
    n += 26;
    n += sprintf(s + n, "\r\n0000000000000fF\r\n");
    memset(s + n, 'z', 255);
    n += 255;
    n += sprintf(s + n, "\r\n000\r\n\r\n");
    struct body_out *o = body_checked(WH_BODY_CHUNKED, 0, 0, s, (size_t)n);
    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->consumed, n);
    assert_int_equal(o->payload_len, 26 + 255);
    assert_memory_equal(o->payload, want, o->payload_len);
}

static void test_chunked_16_digits(void **state)
{
    struct body_out *o =
        body_checked(WH_BODY_CHUNKED, 0, 0, S("0000000000000001\r\nx\r\n0\r\n\r\n"));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->payload_len, 1);
    o = body_checked(WH_BODY_CHUNKED, 0, 0, S("ffffffffffffffff\r\nabc"));
    assert_int_equal(o->rc, WH_HTTP_AGAIN);
    assert_int_equal(o->payload_len, 3);
}

static void test_chunked_extensions(void **state)
{
    static const char s[] = "5;a=b\r\nhello\r\n"
                            "1 ; name ; x = \"q \\\" ; \\\\ s\" ;y=z\t\r\n!\r\n"
                            "2;e\r\n!!\r\n"
                            "1;q=\"\"\r\n?\r\n"
                            "0;last=1\r\n\r\n";
    struct body_out *o = body_checked(WH_BODY_CHUNKED, 0, 0, S(s));
    (void)state;

    assert_int_equal(o->rc, -400); /* "y=z\t\r\n": BWS is only allowed before ';' */
    static const char ok[] = "5;a=b\r\nhello\r\n"
                             "1 ; name ; x = \"q \\\" ; \\\\ s\" ;y=z\r\n!\r\n"
                             "2;e\r\n!!\r\n"
                             "1;q=\"\"\r\n?\r\n"
                             "0;last=1\r\n\r\n";
    o = body_checked(WH_BODY_CHUNKED, 0, 0, S(ok));
    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->consumed, sizeof(ok) - 1);
    assert_int_equal(o->payload_len, 9);
    assert_memory_equal(o->payload, "hello!!!?", 9);
}

static void test_chunked_trailers(void **state)
{
    static const char s[] = "4\r\nwiki\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
                            "X-Checksum:\tabc \r\nX-Empty:\r\n\r\nGET";
    struct body_out *o = body_checked(WH_BODY_CHUNKED, 0, 0, S(s));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_DONE);
    assert_int_equal(o->consumed, sizeof(s) - 1 - 3);
    assert_int_equal(o->payload_len, 4);
}

static void test_chunked_max_payload(void **state)
{
    static const char s[] = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    struct body_out *o = body_checked(WH_BODY_CHUNKED, 0, 10, S(s));
    (void)state;

    assert_int_equal(o->rc, WH_HTTP_DONE);
    o = body_checked(WH_BODY_CHUNKED, 0, 9, S(s));
    assert_int_equal(o->rc, -413);
    assert_int_equal(o->payload_len, 5); /* the first chunk fit */
    assert_int_equal(o->consumed, 12);   /* stopped at the second size line's LF */
    o = body_checked(WH_BODY_CHUNKED, 0, 100, S("ffffffffffffffff\r\n"));
    assert_int_equal(o->rc, -413);
}

static void test_chunked_error_position(void **state)
{
    struct body_out *o = body_checked(WH_BODY_CHUNKED, 0, 0, S("2\r\nab\r\n0x5\r\n"));
    (void)state;

    assert_int_equal(o->rc, -400);
    assert_int_equal(o->consumed, 8); /* everything before the 'x' */
    assert_int_equal(o->payload_len, 2);
}

static void test_chunked_error_sticks(void **state)
{
    struct wh_http_body b;
    size_t c, po, pl;
    (void)state;

    wh_http_body_init(&b, WH_BODY_CHUNKED, 0, 0);
    assert_int_equal(wh_http_body_next(&b, S("-5\r\n"), &c, &po, &pl), -400);
    assert_int_equal(wh_http_body_next(&b, S("5\r\n"), &c, &po, &pl), -400);
    assert_int_equal(c, 0);
}

static void test_chunked_line_cap(void **state)
{
    size_t n = WH_HTTP_MAX_CHUNK_LINE + 16;
    char *s = malloc(n);
    (void)state;

    memset(s, 'a', n);
    memcpy(s, "1;", 2);
    assert_int_equal(chunked_rc(s, n), -400);
    /* An extension that just fits. */
    memcpy(s + WH_HTTP_MAX_CHUNK_LINE - 2, "\r\nx\r\n0\r\n\r\n", 11);
    assert_int_equal(chunked_rc(s, WH_HTTP_MAX_CHUNK_LINE + 9), WH_HTTP_DONE);
    free(s);
}

static void test_chunked_trailer_cap(void **state)
{
    size_t n = WH_HTTP_MAX_TRAILER_BYTES + 64;
    char *s = malloc(n);
    (void)state;

    memset(s, 'v', n);
    memcpy(s, "0\r\nX: ", 6);
    assert_int_equal(chunked_rc(s, n), -400);
    /* A section of exactly the cap is accepted. */
    size_t end = 3 + WH_HTTP_MAX_TRAILER_BYTES;
    memcpy(s + end - 4, "\r\n\r\n", 4);
    assert_int_equal(chunked_rc(s, end), WH_HTTP_DONE);
    free(s);
}

#define CHUNK_ERR(name, code, lit)                                                                 \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        assert_int_equal(CHUNKED_RC(lit), code);                                                   \
    }

CHUNK_ERR(test_chunked_0x_prefix, -400, "0x5\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_negative, -400, "-5\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_plus, -400, "+5\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_empty_size, -400, "\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_whitespace_size, -400, " \r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_leading_space, -400, " 5\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_trailing_space, -400, "5 \r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_17_digits, -400, "00000000000000005\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_not_hex, -400, "g\r\n")
CHUNK_ERR(test_chunked_bare_lf_size, -400, "5\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_bare_cr_size, -400, "5\rhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_data_too_long, -400, "5\r\nhelloX\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_data_bare_lf, -400, "5\r\nhello\n0\r\n\r\n")
CHUNK_ERR(test_chunked_data_no_crlf, -400, "5\r\nhello0\r\n\r\n")
CHUNK_ERR(test_chunked_data_cr_cr, -400, "5\r\nhello\r\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_empty, -400, "5;\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_no_name, -400, "5;=v\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_empty_value, -400, "5;a=\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_ctl, -400, "5;a=\x01\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_nul, -400, "5;a\0\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_quoted_ctl, -400, "5;a=\"x\x7fy\"\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_quoted_crlf, -400, "5;a=\"x\r\n\"\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_after_quote, -400, "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_name_ws_crlf, -400, "5;a \r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_ext_two_values, -400, "5;a=b c\r\nhello\r\n0\r\n\r\n")
CHUNK_ERR(test_chunked_trailer_obs_fold, -400, "0\r\nX: a\r\n b\r\n\r\n")
CHUNK_ERR(test_chunked_trailer_space_colon, -400, "0\r\nX : a\r\n\r\n")
CHUNK_ERR(test_chunked_trailer_empty_name, -400, "0\r\n: a\r\n\r\n")
CHUNK_ERR(test_chunked_trailer_no_colon, -400, "0\r\nXa\r\n\r\n")
CHUNK_ERR(test_chunked_trailer_nul, -400, "0\r\nX: a\0\r\n\r\n")
CHUNK_ERR(test_chunked_trailer_bare_lf, -400, "0\r\nX: a\n\r\n")
CHUNK_ERR(test_chunked_trailer_bare_cr, -400, "0\r\nX: a\rb\r\n\r\n")
CHUNK_ERR(test_chunked_final_bare_lf, -400, "0\r\n\n")
CHUNK_ERR(test_chunked_final_cr_junk, -400, "0\r\n\rx")

/* ---- whole messages ---- */

/* Parses one message (head then body) at buf[off..len); returns the offset
 * after it. */
static size_t message_at(enum wh_http_kind kind, const char *buf, size_t len, size_t off,
                         enum wh_http_method req_method, struct wh_http_msg *m,
                         struct body_out **body)
{
    assert_int_equal(parse_checked(kind, buf + off, len - off, 0, m), WH_HTTP_DONE);
    enum wh_http_body_mode mode =
        kind == WH_HTTP_REQUEST ? m->body_mode : wh_http_response_body_mode(m, req_method);
    size_t body_off = off + m->head_len;
    *body = body_checked(mode, m->content_length, 0, buf + body_off, len - body_off);
    assert_int_equal((*body)->rc, WH_HTTP_DONE);
    return body_off + (*body)->consumed;
}

static void test_pipelined_requests(void **state)
{
    static const char buf[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                              "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
                              "GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
                              "\r\nGET /d HTTP/1.0\r\n\r\n";
    size_t len = sizeof(buf) - 1, off = 0;
    struct wh_http_msg m;
    struct body_out *b;
    (void)state;

    off = message_at(WH_HTTP_REQUEST, buf, len, off, 0, &m, &b);
    assert_span(buf, m.target, "/a");
    assert_int_equal(b->payload_len, 3);
    assert_memory_equal(b->payload, "abc", 3);
    wh_http_msg_free(&m);

    size_t second = off;
    off = message_at(WH_HTTP_REQUEST, buf, len, off, 0, &m, &b);
    assert_span(buf + second, m.target, "/b");
    assert_int_equal(m.body_mode, WH_BODY_CHUNKED);
    assert_int_equal(b->payload_len, 2);
    assert_memory_equal(b->payload, "de", 2);
    wh_http_msg_free(&m);

    size_t third = off;
    off = message_at(WH_HTTP_REQUEST, buf, len, off, 0, &m, &b);
    assert_span(buf + third, m.target, "/c");
    assert_int_equal(b->consumed, 0);
    wh_http_msg_free(&m);

    size_t fourth = off;
    off = message_at(WH_HTTP_REQUEST, buf, len, off, 0, &m, &b);
    assert_span(buf + fourth, m.target, "/d"); /* after a skipped CRLF */
    assert_int_equal(m.version_minor, 0);
    assert_int_equal(off, len);
    wh_http_msg_free(&m);
}

static void test_pipelined_responses(void **state)
{
    static const char buf[] = "HTTP/1.1 100 Continue\r\n\r\n"
                              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                              "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                              "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "1\r\n!\r\n0\r\n\r\n";
    size_t len = sizeof(buf) - 1, off = 0;
    struct wh_http_msg m;
    struct body_out *b;
    (void)state;

    off = message_at(WH_HTTP_RESPONSE, buf, len, off, WH_METHOD_POST, &m, &b);
    assert_int_equal(m.status, 100);
    assert_int_equal(b->consumed, 0);
    wh_http_msg_free(&m);
    off = message_at(WH_HTTP_RESPONSE, buf, len, off, WH_METHOD_POST, &m, &b);
    assert_int_equal(b->payload_len, 2);
    wh_http_msg_free(&m);
    off = message_at(WH_HTTP_RESPONSE, buf, len, off, WH_METHOD_HEAD, &m, &b);
    assert_int_equal(m.content_length, 5);
    assert_int_equal(b->consumed, 0);
    wh_http_msg_free(&m);
    off = message_at(WH_HTTP_RESPONSE, buf, len, off, WH_METHOD_GET, &m, &b);
    assert_int_equal(m.status, 304);
    assert_int_equal(b->consumed, 0);
    wh_http_msg_free(&m);
    off = message_at(WH_HTTP_RESPONSE, buf, len, off, WH_METHOD_GET, &m, &b);
    assert_int_equal(b->payload_len, 1);
    assert_int_equal(off, len);
    wh_http_msg_free(&m);
}

/* The smuggling shapes of the DESIGN: none of them yields a request. */
static void test_smuggling_shapes(void **state)
{
    (void)state;
    assert_int_equal(REQ_RC(P11 "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"), -400);
    assert_int_equal(REQ_RC(P11 "Transfer-Encoding: xchunked\r\n\r\n"), -501);
    assert_int_equal(REQ_RC(P11 "Transfer-Encoding : chunked\r\n\r\n"), -400);
    assert_int_equal(REQ_RC(P11 "Transfer-Encoding:\x0b"
                                "chunked\r\n\r\n"),
                     -400);
    assert_int_equal(REQ_RC(P11 "Transfer-Encoding: chunked\r\n Content-Length: 3\r\n\r\n"), -400);
    assert_int_equal(REQ_RC(P11 "Content-Length: 3\r\nContent-Length: 3 \r\n\r\n"), WH_HTTP_DONE);
    assert_int_equal(REQ_RC(P11 "Content-Length: 3\r\nContent-Length: 30\r\n\r\n"), -400);
    assert_int_equal(REQ_RC(P11 "Content-Length:\r\n 3\r\n\r\n"), -400);
    assert_int_equal(REQ_RC(P11 "X: a\r\n\r\n\r\n"), WH_HTTP_DONE); /* CRLF after: not ours */
}

/* ---- misc ---- */

static void test_reason_phrases(void **state)
{
    (void)state;
    assert_string_equal(wh_http_reason(200), "OK");
    assert_string_equal(wh_http_reason(400), "Bad Request");
    assert_string_equal(wh_http_reason(404), "Not Found");
    assert_string_equal(wh_http_reason(413), "Content Too Large");
    assert_string_equal(wh_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(wh_http_reason(502), "Bad Gateway");
    assert_string_equal(wh_http_reason(503), "Service Unavailable");
    assert_string_equal(wh_http_reason(504), "Gateway Timeout");
    assert_string_equal(wh_http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(wh_http_reason(299), "Unknown");
    assert_string_equal(wh_http_reason(-1), "Unknown");
}

static void test_keep_alive_matrix(void **state)
{
    static const struct {
        int minor;
        unsigned flags;
        int want;
    } t[] = {
        {1, 0, 1},
        {1, WH_HTTP_F_CONN_KEEPALIVE, 1},
        {1, WH_HTTP_F_CONN_CLOSE, 0},
        {1, WH_HTTP_F_CONN_CLOSE | WH_HTTP_F_CONN_KEEPALIVE, 0},
        {0, 0, 0},
        {0, WH_HTTP_F_CONN_KEEPALIVE, 1},
        {0, WH_HTTP_F_CONN_CLOSE | WH_HTTP_F_CONN_KEEPALIVE, 0},
        {0, WH_HTTP_F_CONN_UPGRADE, 0},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct wh_http_msg m;
        wh_http_msg_init(&m, WH_HTTP_REQUEST);
        m.version_minor = t[i].minor;
        m.flags = t[i].flags;
        assert_int_equal(wh_http_keep_alive(&m), t[i].want);
    }
}

/* A message whose bytes were moved between calls (as when a buffer is
 * reallocated) parses the same: spans are offsets. Covered by the helpers;
 * here the same parser sees three different copies. */
static void test_buffer_moves(void **state)
{
    static const char r[] = "GET /moved HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\n\r\n";
    struct wh_http_parser p;
    struct wh_http_msg m;
    (void)state;

    wh_http_parser_init(&p, WH_HTTP_REQUEST, 0);
    wh_http_msg_init(&m, WH_HTTP_REQUEST);
    char *a = copy(r, 10), *b = copy(r, 35), *c = copy(r, sizeof(r) - 1);
    assert_int_equal(wh_http_parse_head(&p, a, 10, &m), WH_HTTP_AGAIN);
    assert_int_equal(wh_http_parse_head(&p, b, 35, &m), WH_HTTP_AGAIN);
    assert_int_equal(wh_http_parse_head(&p, c, sizeof(r) - 1, &m), WH_HTTP_DONE);
    assert_span(c, m.target, "/moved");
    assert_header(c, &m, 1, "X-Long", "0123456789");
    free(a);
    free(b);
    free(c);
    wh_http_msg_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_req_simple_get),
        cmocka_unit_test(test_req_head_len_excludes_body),
        cmocka_unit_test(test_req_methods),
        cmocka_unit_test(test_req_http10_without_host),
        cmocka_unit_test(test_req_http10_keep_alive),
        cmocka_unit_test(test_req_connection_close),
        cmocka_unit_test(test_req_connection_lists),
        cmocka_unit_test(test_req_websocket_upgrade),
        cmocka_unit_test(test_req_expect_continue),
        cmocka_unit_test(test_req_chunked),
        cmocka_unit_test(test_req_chunked_ows),
        cmocka_unit_test(test_req_content_length_zero),
        cmocka_unit_test(test_req_content_length_identical_list),
        cmocka_unit_test(test_req_content_length_identical_headers),
        cmocka_unit_test(test_req_content_length_19_digits),
        cmocka_unit_test(test_req_value_ows_trimmed),
        cmocka_unit_test(test_req_token_names),
        cmocka_unit_test(test_req_target_forms),
        cmocka_unit_test(test_req_leading_crlf_skipped),
        cmocka_unit_test(test_req_leading_crlf_counts_toward_max),
        cmocka_unit_test(test_req_host_forms),
        cmocka_unit_test(test_req_find_header),
        cmocka_unit_test(test_req_many_headers),
        cmocka_unit_test(test_req_too_many_headers),
        cmocka_unit_test(test_req_head_exactly_max),
        cmocka_unit_test(test_req_431_at_exactly_max),
        cmocka_unit_test(test_req_431_long_line),
        cmocka_unit_test(test_req_error_before_431),
        cmocka_unit_test(test_req_default_max),
        cmocka_unit_test(test_req_partial_again),
        cmocka_unit_test(test_req_tls_handshake_early),
        cmocka_unit_test(test_resp_junk_early),
        cmocka_unit_test(test_req_reuse),
        cmocka_unit_test(test_req_error_sticks),
        cmocka_unit_test(test_req_cl_and_te),
        cmocka_unit_test(test_req_te_and_cl),
        cmocka_unit_test(test_req_cl_and_unknown_te),
        cmocka_unit_test(test_req_cl_differing_headers),
        cmocka_unit_test(test_req_cl_differing_list),
        cmocka_unit_test(test_req_cl_plus),
        cmocka_unit_test(test_req_cl_minus),
        cmocka_unit_test(test_req_cl_empty),
        cmocka_unit_test(test_req_cl_letters),
        cmocka_unit_test(test_req_cl_hex),
        cmocka_unit_test(test_req_cl_space_inside),
        cmocka_unit_test(test_req_cl_decimal),
        cmocka_unit_test(test_req_cl_20_digits),
        cmocka_unit_test(test_req_cl_overflow),
        cmocka_unit_test(test_req_cl_leading_zeros_20),
        cmocka_unit_test(test_req_cl_trailing_comma),
        cmocka_unit_test(test_req_cl_leading_comma),
        cmocka_unit_test(test_req_te_gzip),
        cmocka_unit_test(test_req_te_gzip_chunked),
        cmocka_unit_test(test_req_te_gzip_then_chunked_lines),
        cmocka_unit_test(test_req_te_identity),
        cmocka_unit_test(test_req_te_chunked_param),
        cmocka_unit_test(test_req_te_chunked_gzip),
        cmocka_unit_test(test_req_te_chunked_twice),
        cmocka_unit_test(test_req_te_chunked_two_lines),
        cmocka_unit_test(test_req_te_empty),
        cmocka_unit_test(test_req_te_garbage),
        cmocka_unit_test(test_req_te_bad_param),
        cmocka_unit_test(test_req_te_trailing_comma),
        cmocka_unit_test(test_req_te_space_inside),
        cmocka_unit_test(test_req_te_http10),
        cmocka_unit_test(test_req_obs_fold_sp),
        cmocka_unit_test(test_req_obs_fold_tab),
        cmocka_unit_test(test_req_obs_fold_first_line),
        cmocka_unit_test(test_req_bare_cr_value),
        cmocka_unit_test(test_req_bare_cr_line_end),
        cmocka_unit_test(test_req_bare_cr_request_line),
        cmocka_unit_test(test_req_bare_cr_final),
        cmocka_unit_test(test_req_bare_lf_request_line),
        cmocka_unit_test(test_req_bare_lf_header),
        cmocka_unit_test(test_req_bare_lf_final),
        cmocka_unit_test(test_req_bare_lf_leading),
        cmocka_unit_test(test_req_bare_lf_inside_value),
        cmocka_unit_test(test_req_nul_value),
        cmocka_unit_test(test_req_nul_name),
        cmocka_unit_test(test_req_del_value),
        cmocka_unit_test(test_req_ctl_value),
        cmocka_unit_test(test_req_esc_value),
        cmocka_unit_test(test_req_obs_text_name),
        cmocka_unit_test(test_req_space_before_colon),
        cmocka_unit_test(test_req_tab_before_colon),
        cmocka_unit_test(test_req_space_before_colon_host),
        cmocka_unit_test(test_req_empty_name),
        cmocka_unit_test(test_req_no_colon),
        cmocka_unit_test(test_req_separator_in_name),
        cmocka_unit_test(test_req_11_no_host),
        cmocka_unit_test(test_req_11_two_hosts),
        cmocka_unit_test(test_req_10_two_hosts),
        cmocka_unit_test(test_req_host_space),
        cmocka_unit_test(test_req_host_slash),
        cmocka_unit_test(test_req_host_userinfo),
        cmocka_unit_test(test_req_version_20),
        cmocka_unit_test(test_req_version_12),
        cmocka_unit_test(test_req_version_09),
        cmocka_unit_test(test_req_version_30),
        cmocka_unit_test(test_req_version_suffix),
        cmocka_unit_test(test_req_version_lower),
        cmocka_unit_test(test_req_version_no_minor),
        cmocka_unit_test(test_req_version_two_digits),
        cmocka_unit_test(test_req_version_2),
        cmocka_unit_test(test_req_version_trailing_space),
        cmocka_unit_test(test_req_http09),
        cmocka_unit_test(test_req_method_only),
        cmocka_unit_test(test_req_two_spaces_after_method),
        cmocka_unit_test(test_req_two_spaces_before_version),
        cmocka_unit_test(test_req_leading_space),
        cmocka_unit_test(test_req_tab_separator),
        cmocka_unit_test(test_req_space_in_target),
        cmocka_unit_test(test_req_obs_text_target),
        cmocka_unit_test(test_req_ctl_target),
        cmocka_unit_test(test_req_nul_target),
        cmocka_unit_test(test_req_del_target),
        cmocka_unit_test(test_req_bad_method_char),
        cmocka_unit_test(test_req_empty_method),
        cmocka_unit_test(test_req_status_line_as_request),
        cmocka_unit_test(test_req_only_garbage_line),
        cmocka_unit_test(test_resp_simple),
        cmocka_unit_test(test_resp_until_close),
        cmocka_unit_test(test_resp_chunked),
        cmocka_unit_test(test_resp_cl_zero),
        cmocka_unit_test(test_resp_empty_reason),
        cmocka_unit_test(test_resp_reason_chars),
        cmocka_unit_test(test_resp_connection_close),
        cmocka_unit_test(test_resp_switching_protocols),
        cmocka_unit_test(test_resp_host_ignored),
        cmocka_unit_test(test_resp_body_modes),
        cmocka_unit_test(test_resp_304_with_length),
        cmocka_unit_test(test_resp_431),
        cmocka_unit_test(test_resp_two_digit_status),
        cmocka_unit_test(test_resp_four_digit_status),
        cmocka_unit_test(test_resp_alpha_status),
        cmocka_unit_test(test_resp_status_below_100),
        cmocka_unit_test(test_resp_no_status),
        cmocka_unit_test(test_resp_double_space),
        cmocka_unit_test(test_resp_tab_separator),
        cmocka_unit_test(test_resp_version_20),
        cmocka_unit_test(test_resp_version_12),
        cmocka_unit_test(test_resp_version_lower),
        cmocka_unit_test(test_resp_version_suffix),
        cmocka_unit_test(test_resp_leading_crlf),
        cmocka_unit_test(test_resp_ctl_reason),
        cmocka_unit_test(test_resp_bare_cr_reason),
        cmocka_unit_test(test_resp_bare_lf),
        cmocka_unit_test(test_resp_cl_and_te),
        cmocka_unit_test(test_resp_cl_differ),
        cmocka_unit_test(test_resp_te_gzip),
        cmocka_unit_test(test_resp_obs_fold),
        cmocka_unit_test(test_resp_request_line),
        cmocka_unit_test(test_body_none),
        cmocka_unit_test(test_body_length),
        cmocka_unit_test(test_body_length_partial),
        cmocka_unit_test(test_body_length_piece_api),
        cmocka_unit_test(test_body_length_zero),
        cmocka_unit_test(test_body_length_over_max),
        cmocka_unit_test(test_body_until_close),
        cmocka_unit_test(test_body_until_close_max),
        cmocka_unit_test(test_chunked_simple),
        cmocka_unit_test(test_chunked_piece_api),
        cmocka_unit_test(test_chunked_hex_sizes),
        cmocka_unit_test(test_chunked_16_digits),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_max_payload),
        cmocka_unit_test(test_chunked_error_position),
        cmocka_unit_test(test_chunked_error_sticks),
        cmocka_unit_test(test_chunked_line_cap),
        cmocka_unit_test(test_chunked_trailer_cap),
        cmocka_unit_test(test_chunked_0x_prefix),
        cmocka_unit_test(test_chunked_negative),
        cmocka_unit_test(test_chunked_plus),
        cmocka_unit_test(test_chunked_empty_size),
        cmocka_unit_test(test_chunked_whitespace_size),
        cmocka_unit_test(test_chunked_leading_space),
        cmocka_unit_test(test_chunked_trailing_space),
        cmocka_unit_test(test_chunked_17_digits),
        cmocka_unit_test(test_chunked_not_hex),
        cmocka_unit_test(test_chunked_bare_lf_size),
        cmocka_unit_test(test_chunked_bare_cr_size),
        cmocka_unit_test(test_chunked_data_too_long),
        cmocka_unit_test(test_chunked_data_bare_lf),
        cmocka_unit_test(test_chunked_data_no_crlf),
        cmocka_unit_test(test_chunked_data_cr_cr),
        cmocka_unit_test(test_chunked_ext_empty),
        cmocka_unit_test(test_chunked_ext_no_name),
        cmocka_unit_test(test_chunked_ext_empty_value),
        cmocka_unit_test(test_chunked_ext_ctl),
        cmocka_unit_test(test_chunked_ext_nul),
        cmocka_unit_test(test_chunked_ext_quoted_ctl),
        cmocka_unit_test(test_chunked_ext_quoted_crlf),
        cmocka_unit_test(test_chunked_ext_after_quote),
        cmocka_unit_test(test_chunked_ext_name_ws_crlf),
        cmocka_unit_test(test_chunked_ext_two_values),
        cmocka_unit_test(test_chunked_trailer_obs_fold),
        cmocka_unit_test(test_chunked_trailer_space_colon),
        cmocka_unit_test(test_chunked_trailer_empty_name),
        cmocka_unit_test(test_chunked_trailer_no_colon),
        cmocka_unit_test(test_chunked_trailer_nul),
        cmocka_unit_test(test_chunked_trailer_bare_lf),
        cmocka_unit_test(test_chunked_trailer_bare_cr),
        cmocka_unit_test(test_chunked_final_bare_lf),
        cmocka_unit_test(test_chunked_final_cr_junk),
        cmocka_unit_test(test_pipelined_requests),
        cmocka_unit_test(test_pipelined_responses),
        cmocka_unit_test(test_smuggling_shapes),
        cmocka_unit_test(test_reason_phrases),
        cmocka_unit_test(test_keep_alive_matrix),
        cmocka_unit_test(test_buffer_moves),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the proxy's head rewriting (src/proxy/headers.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/proxy/proxy-int.h"

struct rewritten {
    char text[4096];
};

static void parse(const char *raw, enum wh_http_kind kind, struct wh_http_msg *m)
{
    struct wh_http_parser p;
    wh_http_parser_init(&p, kind, 65536);
    wh_http_msg_init(m, kind);
    assert_int_equal(wh_http_parse_head(&p, raw, strlen(raw), m), WH_HTTP_DONE);
}

static void rewrite_request(const char *raw, struct rewritten *out, const char *client_ip)
{
    struct wh_http_msg m;
    parse(raw, WH_HTTP_REQUEST, &m);
    struct evbuffer *b = evbuffer_new();
    struct wh_fwd_info fwd = {.client_ip = client_ip,
                              .proto = "http",
                              .port = "8080",
                              .request_id = "rid-1",
                              .host_default = "10.0.0.1:80"};
    assert_int_equal(wh_rewrite_request(b, raw, &m, &fwd), 0);
    size_t n = evbuffer_get_length(b);
    assert_true(n < sizeof(out->text));
    evbuffer_remove(b, out->text, n);
    out->text[n] = '\0';
    evbuffer_free(b);
    wh_http_msg_free(&m);
}

static void rewrite_response(const char *raw, unsigned flags, struct rewritten *out)
{
    struct wh_http_msg m;
    parse(raw, WH_HTTP_RESPONSE, &m);
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(wh_rewrite_response(b, raw, &m, flags, NULL), 0);
    size_t n = evbuffer_get_length(b);
    evbuffer_remove(b, out->text, n);
    out->text[n] = '\0';
    evbuffer_free(b);
    wh_http_msg_free(&m);
}

static void test_request_line_and_forwarded_headers(void **state)
{
    struct rewritten r;
    rewrite_request("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n", &r,
                    "192.0.2.7");
    assert_string_equal(r.text, "GET /a?b=1 HTTP/1.1\r\n"
                                "Host: example.com\r\n"
                                "Accept: */*\r\n"
                                "X-Forwarded-For: 192.0.2.7\r\n"
                                "X-Forwarded-Proto: http\r\n"
                                "X-Forwarded-Port: 8080\r\n"
                                "X-Request-Id: rid-1\r\n\r\n");
}

static void test_forwarded_for_appends_every_value(void **state)
{
    struct rewritten r;
    rewrite_request("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n"
                    "X-Forwarded-For: 5.6.7.8, 9.9.9.9\r\n\r\n",
                    &r, "127.0.0.1");
    assert_non_null(strstr(r.text, "X-Forwarded-For: 1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1\r\n"));
    assert_null(strstr(strstr(r.text, "X-Forwarded-For") + 1, "X-Forwarded-For"));
}

static void test_client_forwarded_proto_and_port_replaced(void **state)
{
    struct rewritten r;
    rewrite_request("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n"
                    "X-Forwarded-Port: 443\r\n\r\n",
                    &r, "127.0.0.1");
    assert_null(strstr(r.text, "https"));
    assert_null(strstr(r.text, "443"));
    assert_non_null(strstr(r.text, "X-Forwarded-Proto: http\r\n"));
}

static void test_hop_by_hop_removed(void **state)
{
    struct rewritten r;
    rewrite_request(
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\n"
        "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\n"
        "Proxy-Authorization: Basic x\r\nProxy-Connection: close\r\nX-Secret: 1\r\n"
        "Expect: 100-continue\r\nX-Kept: yes\r\n\r\n",
        &r, "127.0.0.1");
    const char *gone[] = {"Connection:", "Keep-Alive", "TE:",      "Trailer",
                          "Upgrade",     "Proxy-",     "X-Secret", "Expect"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        if (strstr(r.text, gone[i]))
            fail_msg("%s was forwarded:\n%s", gone[i], r.text);
    }
    assert_non_null(strstr(r.text, "X-Kept: yes\r\n"));
}

static void test_http10_without_host_gets_one(void **state)
{
    struct rewritten r;
    rewrite_request("GET / HTTP/1.0\r\n\r\n", &r, "127.0.0.1");
    assert_true(strncmp(r.text, "GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n", 35) == 0);
}

static void test_request_id_valid_forms(void **state)
{
    assert_true(wh_request_id_valid("abc-DEF_1.2", 11));
    assert_false(wh_request_id_valid("", 0));
    assert_false(wh_request_id_valid("a b", 3));
    assert_false(wh_request_id_valid("a/b", 3));
    char long_id[130];
    memset(long_id, 'a', sizeof(long_id));
    assert_true(wh_request_id_valid(long_id, 128));
    assert_false(wh_request_id_valid(long_id, 129));
}

static void test_request_id_kept_or_generated(void **state)
{
    uint64_t rng = 42;
    char id[129];
    struct wh_http_msg m;
    const char *good = "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: trace.123\r\n\r\n";
    parse(good, WH_HTTP_REQUEST, &m);
    wh_request_id_pick(good, &m, &rng, id);
    assert_string_equal(id, "trace.123");
    wh_http_msg_free(&m);

    const char *bad = "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: no spaces!\r\n\r\n";
    parse(bad, WH_HTTP_REQUEST, &m);
    wh_request_id_pick(bad, &m, &rng, id);
    assert_int_equal(strlen(id), 32);
    assert_true(wh_request_id_valid(id, 32));
    char again[129];
    wh_request_id_pick(bad, &m, &rng, again);
    assert_string_not_equal(id, again);
    wh_http_msg_free(&m);
}

static void test_response_hop_by_hop_removed_and_close(void **state)
{
    struct rewritten r;
    rewrite_response("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\n"
                     "X-Hop: 1\r\nContent-Length: 2\r\n\r\n",
                     WH_RESP_CLOSE, &r);
    assert_string_equal(r.text,
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
}

static void test_response_dechunk_drops_transfer_encoding(void **state)
{
    struct rewritten r;
    rewrite_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n",
                     WH_RESP_DECHUNK | WH_RESP_CLOSE, &r);
    assert_null(strstr(r.text, "Transfer-Encoding"));
    assert_non_null(strstr(r.text, "X-A: b\r\n"));
}

static void test_response_http10_keepalive_said(void **state)
{
    struct rewritten r;
    rewrite_response("HTTP/1.0 204 No Content\r\n\r\n", WH_RESP_KEEPALIVE, &r);
    assert_string_equal(r.text, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
}

static void test_error_response_framing(void **state)
{
    struct evbuffer *b = evbuffer_new();
    wh_error_response(b, 503, 1, "abc");
    size_t n = evbuffer_get_length(b);
    char text[512];
    evbuffer_remove(b, text, n);
    text[n] = '\0';
    assert_true(strncmp(text, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    assert_non_null(strstr(text, "Connection: close\r\n"));
    assert_non_null(strstr(text, "X-Request-Id: abc\r\n"));
    const char *body = strstr(text, "\r\n\r\n") + 4;
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
    assert_non_null(strstr(text, cl));
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_line_and_forwarded_headers),
        cmocka_unit_test(test_forwarded_for_appends_every_value),
        cmocka_unit_test(test_client_forwarded_proto_and_port_replaced),
        cmocka_unit_test(test_hop_by_hop_removed),
        cmocka_unit_test(test_http10_without_host_gets_one),
        cmocka_unit_test(test_request_id_valid_forms),
        cmocka_unit_test(test_request_id_kept_or_generated),
        cmocka_unit_test(test_response_hop_by_hop_removed_and_close),
        cmocka_unit_test(test_response_dechunk_drops_transfer_encoding),
        cmocka_unit_test(test_response_http10_keepalive_said),
        cmocka_unit_test(test_error_response_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

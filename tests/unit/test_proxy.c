/* Unit tests of a worker's proxy (src/proxy/proxy.c): real wh_proxy
 * objects on one event_base, serving a configuration whose listener
 * answers every request itself (fixed_response), on an ephemeral port, to
 * clients on loopback sockets. What they prove: the daemon's proxy metrics
 * (wh_proxy_write_metrics) in the Prometheus text /metrics serves, summed
 * over the workers, and what traffic does to them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "../../src/proxy/proxy-int.h"

/* The metrics text for n workers and these sums, as main.c served it
 * before the proxy wrote it (byte for byte). */
static void expected_metrics(char *out, size_t outlen, int n, unsigned long long conns,
                             const unsigned long long resp[6], const unsigned long long tls[3])
{
    snprintf(out, outlen,
             "# HELP wharf_workers Proxy worker threads.\n"
             "# TYPE wharf_workers gauge\n"
             "wharf_workers %d\n"
             "# HELP wharf_client_connections Open client connections.\n"
             "# TYPE wharf_client_connections gauge\n"
             "wharf_client_connections %llu\n"
             "# HELP wharf_http_responses_total Responses sent to clients by status class.\n"
             "# TYPE wharf_http_responses_total counter\n"
             "wharf_http_responses_total{code_class=\"other\"} %llu\n"
             "wharf_http_responses_total{code_class=\"1xx\"} %llu\n"
             "wharf_http_responses_total{code_class=\"2xx\"} %llu\n"
             "wharf_http_responses_total{code_class=\"3xx\"} %llu\n"
             "wharf_http_responses_total{code_class=\"4xx\"} %llu\n"
             "wharf_http_responses_total{code_class=\"5xx\"} %llu\n"
             "# HELP wharf_tls_handshakes_total TLS handshakes on https listeners by result.\n"
             "# TYPE wharf_tls_handshakes_total counter\n"
             "wharf_tls_handshakes_total{result=\"ok\"} %llu\n"
             "wharf_tls_handshakes_total{result=\"failed\"} %llu\n"
             "wharf_tls_handshakes_total{result=\"timeout\"} %llu\n",
             n, conns, resp[0], resp[1], resp[2], resp[3], resp[4], resp[5], tls[0], tls[1],
             tls[2]);
}

/* What wh_proxy_write_metrics wrote for these proxies. */
static char *metrics_of(struct wh_proxy *const *proxies, int n)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    wh_proxy_write_metrics(b, proxies, n);
    size_t len = evbuffer_get_length(b);
    char *text = malloc(len + 1);
    assert_non_null(text);
    evbuffer_remove(b, text, len);
    text[len] = '\0';
    evbuffer_free(b);
    return text;
}

static void assert_metrics(struct wh_proxy *const *proxies, int n, unsigned long long conns,
                           const unsigned long long resp[6])
{
    static const unsigned long long no_tls[3] = {0, 0, 0};
    char want[4096];
    expected_metrics(want, sizeof(want), n, conns, resp, no_tls);
    char *got = metrics_of(proxies, n);
    assert_string_equal(got, want);
    free(got);
}

static void test_metrics_of_no_worker(void **state)
{
    (void)state;
    static const unsigned long long none[6] = {0};
    assert_metrics(NULL, 0, 0, none);
}

/* ---- a worker that answers itself ---- */

#define CONF                                                                                       \
    "target_groups = ( { name = \"web\"; targets = ( \"127.0.0.1:9\" ); } );\n"                    \
    "listeners = ( { name = \"l\"; bind = \"127.0.0.1:8080\";\n"                                   \
    "  default_action = { fixed_response = { status = 200; body = \"ok\"; }; }; } );\n"

struct fx {
    struct event_base *base;
    struct wh_config *cfg;
    struct wh_proxy_prep *prep;
    struct wh_proxy *proxies[2];
    int ports[2];
};

static void report(void *arg, int is_error, const char *line)
{
    (void)arg;
    print_message("%s %s\n", is_error ? "error:" : "warning:", line);
}

static int listener_port(const struct wh_proxy *p)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    evutil_socket_t fd = evconnlistener_get_fd(p->listeners[0]->evl);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->cfg = wh_config_load_string_ex(CONF, "test.conf", WH_FEATURES_ALL, report, NULL);
    assert_non_null(f->cfg);
    /* Port 0 (the kernel picks one) is no valid configuration; the parsed
     * struct is ours to point there. Each worker binds its own port. */
    ((struct sockaddr_in *)&f->cfg->listeners[0].bind.ss)->sin_port = 0;
    char err[256] = "";
    f->prep = wh_proxy_prepare(f->cfg, err, sizeof(err));
    if (!f->prep)
        fail_msg("wh_proxy_prepare: %s", err);
    for (int i = 0; i < 2; i++) {
        f->proxies[i] = wh_proxy_new(f->base, f->cfg, f->prep, i, NULL, NULL, err, sizeof(err));
        if (!f->proxies[i])
            fail_msg("wh_proxy_new: %s", err);
        f->ports[i] = listener_port(f->proxies[i]);
    }
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 2; i++)
        wh_proxy_free(f->proxies[i]);
    wh_proxy_prep_free(f->prep);
    wh_config_free(f->cfg);
    event_base_free(f->base);
    free(f);
    return 0;
}

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until fd has received a text containing `want` (into buf). */
static void await_reply(struct fx *f, int fd, const char *want, char *buf, size_t buflen)
{
    size_t used = 0;
    buf[0] = '\0';
    double deadline = now_mono() + 10;
    while (!strstr(buf, want)) {
        assert_true(now_mono() < deadline);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, buf + used, buflen - 1 - used, MSG_DONTWAIT);
        if (n > 0) {
            used += (size_t)n;
            buf[used] = '\0';
        } else if (n == 0) {
            fail_msg("connection closed before \"%s\" in \"%s\"", want, buf);
        } else {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            usleep(1000);
        }
    }
}

/* Run the loop until proxy p has no session left. */
static void await_no_session(struct fx *f, const struct wh_proxy *p)
{
    double deadline = now_mono() + 10;
    while (wh_proxy_sessions(p) > 0) {
        assert_true(now_mono() < deadline);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static void send_text(int fd, const char *text)
{
    assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

static void test_metrics_before_any_traffic(void **state)
{
    struct fx *f = *state;
    static const unsigned long long none[6] = {0};
    assert_metrics(f->proxies, 2, 0, none);
    assert_metrics(f->proxies, 1, 0, none);
}

static void test_metrics_sum_the_workers_responses_and_connections(void **state)
{
    struct fx *f = *state;
    char buf[4096];
    int a = client_connect(f->ports[0]);
    int b = client_connect(f->ports[1]);

    send_text(a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await_reply(f, a, "\r\n\r\nok", buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 200 "));
    send_text(a, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    await_reply(f, a, "\r\n\r\nok", buf, sizeof(buf));
    /* both Content-Length and Transfer-Encoding: refused */
    send_text(b, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
    await_reply(f, b, "\r\n\r\n", buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 400 "));

    /* a's connection is kept alive, b's is closing: both still open */
    assert_int_equal(wh_proxy_sessions(f->proxies[0]), 1);
    unsigned long long resp[6] = {0, 0, 2, 0, 1, 0};
    assert_metrics(f->proxies, 2, 2, resp);
    unsigned long long first[6] = {0, 0, 2, 0, 0, 0};
    assert_metrics(f->proxies, 1, 1, first);

    close(b);
    await_no_session(f, f->proxies[1]);
    assert_metrics(f->proxies, 2, 1, resp);
    close(a);
    await_no_session(f, f->proxies[0]);
    assert_metrics(f->proxies, 2, 0, resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_of_no_worker),
        cmocka_unit_test_setup_teardown(test_metrics_before_any_traffic, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_metrics_sum_the_workers_responses_and_connections,
                                        fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

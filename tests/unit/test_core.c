/* Unit tests of core's log, lag meter and addresses (src/core/). The curl
 * glue has its own program (test_curl_event.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "wharf/addr.h"
#include "wharf/lag.h"
#include "wharf/log.h"

/* ---- log ---- */

/* Runs fn with stderr sent to a temporary file; returns what was written
 * (malloc'ed). */
static char *capture_stderr(void (*fn)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fileno(tmp), 0, SEEK_END);
    assert_true(n >= 0);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fileno(tmp), out, (size_t)n, 0), n);
    fclose(tmp);
    return out;
}

static void log_each_level(void)
{
    wh_log_error("mod", "e %d", 1);
    wh_log_warn("mod", "w %s", "two");
    wh_log_info("mod", "i");
    wh_log_debug("mod", "d");
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_log_levels_and_format(void **state)
{
    enum wh_log_level was = wh_log_get_level();
    wh_log_set_level(WH_LOG_WARN);
    char *out = capture_stderr(log_each_level);
    assert_int_equal(count_lines(out), 2);
    /* "2026-12-03T13:07:04.123Z error mod: e 1" */
    int y, mo, d, h, mi, s, ms, n = 0;
    assert_int_equal(sscanf(out, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ error mod: e 1\n%n", &y, &mo, &d, &h,
                            &mi, &s, &ms, &n),
                     7);
    assert_true(n > 0 && y >= 2024 && mo >= 1 && mo <= 12 && ms >= 0 && ms <= 999);
    assert_non_null(strstr(out + n, " warn mod: w two\n"));
    free(out);

    wh_log_set_level(WH_LOG_DEBUG);
    assert_int_equal(wh_log_get_level(), WH_LOG_DEBUG);
    out = capture_stderr(log_each_level);
    assert_int_equal(count_lines(out), 4);
    assert_non_null(strstr(out, " info mod: i\n"));
    assert_non_null(strstr(out, " debug mod: d\n"));
    free(out);

    wh_log_set_level(WH_LOG_ERROR);
    out = capture_stderr(log_each_level);
    assert_int_equal(count_lines(out), 1);
    free(out);
    wh_log_set_level(was);
}

static void log_too_long(void)
{
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    wh_log_error("mod", "%s", big);
    wh_log_error("mod", "after");
}

/* A message longer than the line buffer is cut, still ends its line, and
 * the next line starts clean. */
static void test_log_long_line_is_cut_whole(void **state)
{
    char *out = capture_stderr(log_too_long);
    assert_int_equal(count_lines(out), 2);
    char *nl = strchr(out, '\n');
    assert_true(nl - out < 2048);
    assert_non_null(strstr(nl + 1, " error mod: after\n"));
    free(out);
}

/* ---- lag meter ---- */

struct block {
    struct event_base *base;
    double ms;
    int ticks;
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void block_cb(evutil_socket_t fd, short what, void *arg)
{
    struct block *b = arg;
    double until = mono() + b->ms / 1000;
    while (mono() < until)
        ; /* the loop is busy: the meter's tick comes late */
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void run_for(struct event_base *base, int ms)
{
    struct event *stop = evtimer_new(base, stop_cb, base);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(stop, &tv);
    event_base_dispatch(base);
    event_free(stop);
}

static void test_lag_measures_a_blocked_loop(void **state)
{
    struct event_base *base = event_base_new();
    struct wh_lag *lag = wh_lag_new(base);
    assert_non_null(lag);
    run_for(base, 200);
    double idle = wh_lag_max(lag);
    assert_true(idle >= 0 && idle < 0.1);

    struct block b = {base, 300, 0};
    struct event *blk = evtimer_new(base, block_cb, &b);
    struct timeval soon = {0, 10000};
    evtimer_add(blk, &soon);
    run_for(base, 500);
    double lagged = wh_lag_max(lag);
    /* Blocked 300 ms: the tick due in that time is at least ~250 ms late. */
    assert_true(lagged > 0.2 && lagged < 2.0);

    struct evbuffer *out = evbuffer_new();
    wh_lag_write_metrics(lag, out);
    size_t n = evbuffer_get_length(out);
    char *text = calloc(1, n + 1);
    evbuffer_remove(out, text, n);
    assert_non_null(strstr(text, "# TYPE wharf_event_loop_lag_seconds gauge\n"));
    double v = -1;
    const char *line = strstr(text, "\nwharf_event_loop_lag_seconds ");
    assert_non_null(line);
    assert_int_equal(sscanf(line, "\nwharf_event_loop_lag_seconds %lf", &v), 1);
    assert_true(v >= lagged - 1e-6 && v < 2.0);
    free(text);
    evbuffer_free(out);
    event_free(blk);
    wh_lag_free(lag);
    wh_lag_free(NULL);
    event_base_free(base);
}

/* ---- addresses ---- */

static int port_of(const struct wh_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static void test_addr_parse(void **state)
{
    struct wh_addr a, b;
    char err[WH_ERR_LEN];
    assert_int_equal(wh_addr_parse("127.0.0.1:9001", &a, err, sizeof(err)), 0);
    assert_string_equal(a.text, "127.0.0.1:9001");
    assert_int_equal(port_of(&a), 9001);
    assert_true(wh_addr_is_loopback(&a));
    assert_int_equal(wh_addr_parse("[::1]:80", &b, err, sizeof(err)), 0);
    assert_string_equal(b.text, "[::1]:80");
    assert_int_equal(b.ss.ss_family, AF_INET6);
    assert_true(wh_addr_is_loopback(&b));
    assert_false(wh_addr_equal(&a, &b));
    assert_int_equal(wh_addr_parse("[0:0::1]:80", &a, err, sizeof(err)), 0);
    assert_true(wh_addr_equal(&a, &b)); /* the numeric forms compare */
    assert_int_equal(wh_addr_parse("0.0.0.0:8080", &a, err, sizeof(err)), 0);
    assert_false(wh_addr_is_loopback(&a));

    static const struct {
        const char *text, *says;
    } bad[] = {
        {"127.0.0.1", "has no port"},
        {"::1:80", "in brackets"},
        {"[::1]80", "[ADDRESS]:PORT"},
        {":80", "missing host"},
        {"127.0.0.1:0", "1 to 65535"},
        {"127.0.0.1:65536", "1 to 65535"},
        {"127.0.0.1:8o", "1 to 65535"},
        {"[nope]:80", "not an IPv6 address"},
        {"no-such-host.invalid:80", "cannot resolve"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(wh_addr_parse(bad[i].text, &a, err, sizeof(err)), -1);
        if (!strstr(err, bad[i].says))
            fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].text, err, bad[i].says);
    }
}

static void test_cidr_parse(void **state)
{
    struct wh_cidr c;
    assert_int_equal(wh_cidr_parse("192.0.2.0/24", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.bits, 24);
    assert_int_equal(c.addr[0], 192);
    assert_int_equal(c.addr[2], 2);
    assert_int_equal(wh_cidr_parse("2001:db8::/32", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.bits, 32);
    assert_int_equal(wh_cidr_parse("10.0.0.1/32", &c), 0);
    assert_int_equal(wh_cidr_parse("0.0.0.0/0", &c), 0);
    assert_int_equal(c.bits, 0);
    const char *bad[] = {"192.0.2.0",     "192.0.2.0/",  "192.0.2.0/33", "2001:db8::/129",
                         "192.0.2.0/024", "192.0.2/24",  "nope/8",       "192.0.2.0/2a",
                         "/24",           "192.0.2.0/-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (wh_cidr_parse(bad[i], &c) != -1)
            fail_msg("\"%s\" was taken as a CIDR block", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_levels_and_format),
        cmocka_unit_test(test_log_long_line_is_cut_whole),
        cmocka_unit_test(test_lag_measures_a_blocked_loop),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_cidr_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Active health checks: one small non-blocking HTTP/1.1 client per check,
 * on a bufferevent on the control loop, parsed with our strict parser. A
 * check connects, sends GET path with Connection: close, reads the response
 * head, compares the status with the matcher and closes. Each target's
 * checks are due at a fixed phase of the interval (wh_hc_phase), so a
 * thousand targets spread evenly instead of firing together. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "targets/targets-int.h"
#include "wharf/http.h"
#include "wharf/obj.h"

const double wh_hc_duration_bounds[WH_HC_DURATION_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

static const char *const result_names[WH_HC_N_RESULTS] = {
    "success",         "timeout",          "connection_refused",
    "status_mismatch", "connection_reset", "malformed_response",
    "connection_error"};

const char *wh_hc_result_name(enum wh_hc_result r)
{
    return (unsigned)r < WH_HC_N_RESULTS ? result_names[r] : "?";
}

/* ---- matcher ---- */

static int matcher_code(const char **p, int *code)
{
    int v = 0, digits = 0;
    for (; isdigit((unsigned char)**p) && digits < 4; (*p)++, digits++)
        v = v * 10 + (**p - '0');
    *code = v;
    return digits == 3 && v >= 100 && v <= 599 ? 0 : -1;
}

int wh_tg_matcher_parse(const char *text, struct wh_tg_matcher *m, char *err, size_t errlen)
{
    const char *p = text;
    memset(m, 0, sizeof(*m));
    for (;;) {
        int lo, hi;
        if (matcher_code(&p, &lo) < 0)
            break;
        hi = lo;
        if (*p == '-' && (p++, matcher_code(&p, &hi) < 0 || hi < lo))
            break;
        for (int c = lo; c <= hi; c++)
            m->bits[(c - 100) / 8] |= (uint8_t)(1u << ((c - 100) % 8));
        if (*p == '\0')
            return 0;
        if (*p++ != ',')
            break;
    }
    memset(m, 0, sizeof(*m));
    snprintf(err, errlen,
             "\"%s\" is not a status matcher: codes 100-599 such as \"200\", \"200,302\" or "
             "\"200-399\"",
             text);
    return -1;
}

int wh_tg_matcher_match(const struct wh_tg_matcher *m, int status)
{
    if (status < 100 || status > 599)
        return 0;
    return (m->bits[(status - 100) / 8] >> ((status - 100) % 8)) & 1;
}

/* ---- scheduling ---- */

double wh_hc_phase(uint64_t id, double interval)
{
    double x = (double)id * 0.6180339887498949; /* golden ratio: evenly spread */
    return interval * (x - floor(x));
}

#define WH_HC_CHECK_MAGIC 0x48434b31u /* "HCK1" */

struct wh_hc_check {
    unsigned magic;
    struct wh_tg_target *t;
    struct bufferevent *bev;
    struct wh_http_parser parser;
    struct wh_http_msg msg;
    double started;
    int connected;
};

#define WH_HC_TOLERANCE 1e-3 /* seconds: "after a due time" means this much after */

static void arm(struct wh_tg_target *t, double delay)
{
    if (delay < 0)
        delay = 0;
    double us = ceil(delay * 1e6); /* never before the due time */
    struct timeval tv = {(time_t)(us / 1e6), (suseconds_t)fmod(us, 1e6)};
    evtimer_add(t->hc_timer, &tv);
}

/* The first due time of t's phase after `after`. Checks are due on a grid
 * (phase + k * interval), so once on it a target is checked exactly every
 * interval; its first check (at once) is off the grid, and the next one is
 * the first grid point after it. */
static double next_due(const struct wh_tg_target *t, double after)
{
    double interval = t->group->hc.interval;
    double phase = wh_hc_phase(t->pub.id, interval);
    double next = phase + (floor((after - phase) / interval) + 1) * interval;
    return next > after ? next : next + interval;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

void wh_hc_start(struct wh_tg_target *t)
{
    if (!t->hc_timer && !(t->hc_timer = evtimer_new(t->reg->base, timer_cb, t)))
        return;
    if (t->check)
        return;
    /* "At once", spread over a few percent of the interval so a burst of
     * registrations (a start with a thousand static targets) does not
     * connect everywhere in the same millisecond. */
    const struct wh_tg_hc *hc = &t->group->hc;
    double spread = fmin(hc->interval * 0.05, 0.2);
    double x = (double)t->pub.id * 0.6180339887498949;
    double delay = spread * (x - floor(x));
    t->next_check = wh_tg_now(t->reg) + delay;
    arm(t, delay);
}

void wh_hc_reschedule(struct wh_tg_target *t)
{
    if (t->check || !t->hc_timer || t->draining)
        return;
    double now = wh_tg_now(t->reg);
    t->next_check = next_due(t, now);
    arm(t, t->next_check - now);
}

static void check_free(struct wh_hc_check *c)
{
    if (c->bev)
        bufferevent_free(c->bev); /* closes the socket */
    wh_http_msg_free(&c->msg);
    WH_FREE_OBJ(c);
}

void wh_hc_stop(struct wh_tg_target *t)
{
    if (t->check) {
        check_free(t->check);
        t->check = NULL;
    }
    if (t->hc_timer)
        evtimer_del(t->hc_timer);
}

/* ---- one check ---- */

static void record(struct wh_targets *reg, struct wh_tg_group *g, enum wh_hc_result r,
                   double seconds)
{
    size_t b = 0;
    while (b < WH_HC_DURATION_BUCKETS && seconds > wh_hc_duration_bounds[b])
        b++;
    reg->hc_buckets[b]++;
    reg->hc_sum += seconds;
    reg->hc_count++;
    g->checks[r]++;
}

static void finish(struct wh_hc_check *c, enum wh_hc_result r, const char *desc)
{
    struct wh_tg_target *t = c->t;
    double now = wh_tg_now(t->reg);
    record(t->reg, t->group, r, now - c->started);
    /* From the time the check was due, not the time its timer fired: a
     * timer may fire a little early by our clock, and the same due time
     * must not come round twice. A loop that fell behind skips ahead. */
    t->next_check = next_due(t, t->next_check + WH_HC_TOLERANCE);
    if (t->next_check <= now)
        t->next_check = next_due(t, now);
    arm(t, t->next_check - now);
    t->check = NULL;
    check_free(c);
    wh_tg_check_result(t, r == WH_HC_SUCCESS, r == WH_HC_SUCCESS ? "" : wh_hc_result_name(r), desc);
}

static void finish_errno(struct wh_hc_check *c, int e, const char *when)
{
    char desc[WH_TARGET_DESC_MAX];
    enum wh_hc_result r = WH_HC_CONNECT_ERROR;
    if (e == ECONNREFUSED)
        r = WH_HC_REFUSED;
    else if (e == ECONNRESET || e == EPIPE || (c->connected && e != ETIMEDOUT))
        r = WH_HC_RESET;
    else if (e == ETIMEDOUT)
        r = WH_HC_TIMEOUT;
    snprintf(desc, sizeof(desc), "%s: %s", when, e ? strerror(e) : "error");
    finish(c, r, desc);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct wh_hc_check *c;
    WH_CAST_OBJ(c, arg, WH_HC_CHECK_MAGIC);
    struct evbuffer *in = bufferevent_get_input(bev);
    char desc[WH_TARGET_DESC_MAX];
    for (;;) {
        size_t len = evbuffer_get_length(in);
        const char *buf = (const char *)evbuffer_pullup(in, -1);
        int rc = wh_http_parse_head(&c->parser, buf, len, &c->msg);
        if (rc == WH_HTTP_AGAIN)
            return;
        if (rc < 0) {
            snprintf(desc, sizeof(desc), "not a valid HTTP/1.1 response head (%d)", -rc);
            finish(c, WH_HC_MALFORMED, desc);
            return;
        }
        int status = c->msg.status;
        if (status >= 100 && status < 200 && status != 101) { /* interim: skip it */
            evbuffer_drain(in, c->msg.head_len);
            wh_http_parser_reset(&c->parser);
            continue;
        }
        if (wh_tg_matcher_match(&c->t->group->hc.matcher, status)) {
            finish(c, WH_HC_SUCCESS, "");
        } else {
            snprintf(desc, sizeof(desc), "health checks failed with status %d", status);
            finish(c, WH_HC_STATUS_MISMATCH, desc);
        }
        return;
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wh_hc_check *c;
    WH_CAST_OBJ(c, arg, WH_HC_CHECK_MAGIC);
    if (what & BEV_EVENT_CONNECTED) {
        c->connected = 1;
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        finish_errno(c, EVUTIL_SOCKET_ERROR(), c->connected ? "reading" : "connecting");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
            finish(c, WH_HC_MALFORMED, "connection closed in the middle of the response head");
        else
            finish(c, WH_HC_RESET, "connection closed without a response");
    }
}

/* The Host header: the configured one, or the address checked. */
static void host_header(const struct wh_tg_target *t, char *out, size_t size)
{
    const struct wh_tg_hc *hc = &t->group->hc;
    if (hc->host[0]) {
        snprintf(out, size, "%s", hc->host);
        return;
    }
    const char *text = t->pub.addr.text;
    const char *colon = strrchr(text, ':');
    if (!hc->port || !colon)
        snprintf(out, size, "%s", text);
    else
        snprintf(out, size, "%.*s:%d", (int)(colon - text), text, hc->port);
}

static int send_request(struct wh_hc_check *c)
{
    const struct wh_tg_target *t = c->t;
    char host[300];
    host_header(t, host, sizeof(host));
    return evbuffer_add_printf(bufferevent_get_output(c->bev),
                               "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wharf-health-check\r\n"
                               "Accept: */*\r\nConnection: close\r\n\r\n",
                               t->group->hc.path, host) < 0
               ? -1
               : 0;
}

static void begin(struct wh_tg_target *t)
{
    const struct wh_tg_hc *hc = &t->group->hc;
    struct wh_hc_check *c = calloc(1, sizeof(*c));
    if (!c) {
        double now = wh_tg_now(t->reg);
        t->next_check = next_due(t, now);
        arm(t, t->next_check - now);
        return;
    }
    WH_INIT_OBJ(c, WH_HC_CHECK_MAGIC);
    c->t = t;
    c->started = wh_tg_now(t->reg);
    wh_http_parser_init(&c->parser, WH_HTTP_RESPONSE, WH_HC_MAX_HEAD);
    wh_http_msg_init(&c->msg, WH_HTTP_RESPONSE);
    t->check = c;
    t->reg->hc_started++;
    arm(t, hc->timeout); /* the timer now stands for the timeout */

    struct sockaddr_storage ss = t->pub.addr.ss;
    if (hc->port && ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)hc->port);
    else if (hc->port && ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)hc->port);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        finish_errno(c, errno, "socket");
        return;
    }
    c->bev = bufferevent_socket_new(t->reg->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        finish_errno(c, ENOMEM, "bufferevent");
        return;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    /* Refused connections are reported through event_cb, deferred. */
    if (send_request(c) < 0 || bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0 ||
        bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)t->pub.addr.len) < 0)
        finish_errno(c, errno, "connecting");
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_tg_target *t = arg;
    WH_CHECK_OBJ(&t->pub, WH_TARGET_MAGIC);
    if (t->check) {
        char desc[WH_TARGET_DESC_MAX];
        snprintf(desc, sizeof(desc), "no response within %g s", t->group->hc.timeout);
        finish(t->check, WH_HC_TIMEOUT, desc);
        return;
    }
    if (!t->draining && t->group->hc.enabled)
        begin(t);
}

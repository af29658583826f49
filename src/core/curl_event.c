/* libcurl multi ↔ libevent glue (see include/wharf/curl_event.h).
 *
 * The pattern is libcurl's "multi_socket" API: curl tells us which sockets to
 * watch (sock_cb) and when to call it back (timer_cb); libevent tells curl
 * when a socket is ready (event_cb) or the timer fired (timeout_cb); after
 * each curl_multi_socket_action we collect finished transfers.
 *
 * Handles can't be added or removed from within curl's own callbacks (the
 * write callback of a stream is one, and it may call user code that submits
 * or cancels), so a cancel only marks the call, a submission from inside
 * curl_multi_socket_action is only queued, and the kick event does the rest
 * from the loop.
 */
#include "wharf/curl_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "wharf/log.h"
#include "wharf/obj.h"

#ifndef CURL_WRITEFUNC_ERROR
#define CURL_WRITEFUNC_ERROR 0xFFFFFFFF
#endif

struct sock_ctx {
    unsigned magic;
#define SOCK_MAGIC 0x63736f6bu /* "csok" */
    struct event *ev;
    curl_socket_t fd;
    struct wh_curl_loop *loop;
    LIST_ENTRY(sock_ctx) link;
};

struct wh_curl_call {
    unsigned magic;
#define CALL_MAGIC 0x6363616cu /* "ccal" */
    struct wh_curl_loop *loop;
    CURL *easy;
    struct curl_slist *headers;
    wh_curl_done_fn done;
    wh_curl_chunk_fn chunk; /* NULL: buffered mode */
    void *arg;
    char *body;
    size_t len, cap;
    int cancelled, finishing;
    int added; /* in the multi (submissions from curl callbacks wait for the kick) */
    int status_known, error_status; /* streaming: status >= 400 → buffer instead */
    struct timespec start;
    char errbuf[CURL_ERROR_SIZE];
    TAILQ_ENTRY(wh_curl_call) link;
};

TAILQ_HEAD(call_list, wh_curl_call);

struct wh_curl_loop {
    unsigned magic;
#define LOOP_MAGIC 0x6375726cu /* "curl" */
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct event *kick; /* reaps cancelled calls, adds deferred ones */
    struct call_list calls;
    int in_action; /* inside curl_multi_socket_action: curl's callbacks may run */
    LIST_HEAD(, sock_ctx) socks;
    size_t active;
};

int wh_curl_global_init(void)
{
    static int done;
    if (done)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    done = 1;
    return 0;
}

static double since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void call_free(struct wh_curl_call *c)
{
    curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->body);
    WH_FREE_OBJ(c);
}

/* Detach from the multi and the list, report (unless cancelled), free. */
static void call_finish(struct wh_curl_call *c, CURLcode code)
{
    struct wh_curl_loop *loop = c->loop;
    if (c->added)
        curl_multi_remove_handle(loop->multi, c->easy);
    TAILQ_REMOVE(&loop->calls, c, link);
    if (!c->cancelled) {
        loop->active--;
        c->finishing = 1;
        struct wh_curl_result res = {.code = code,
                                     .body = c->body ? c->body : "",
                                     .body_len = c->len,
                                     .elapsed = since(&c->start)};
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &res.http_status);
        curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &res.new_connections);
        curl_easy_getinfo(c->easy, CURLINFO_APPCONNECT_TIME, &res.tls_handshake);
        res.error = code == CURLE_OK ? "" : c->errbuf[0] ? c->errbuf : curl_easy_strerror(code);
        if (c->done)
            c->done(c->arg, &res);
    }
    call_free(c);
}

static void check_multi_info(struct wh_curl_loop *loop)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(loop->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct wh_curl_call *c = NULL;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        WH_CHECK_OBJ_ORNULL(c, CALL_MAGIC);
        if (c)
            call_finish(c, code);
    }
}

static void event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_curl_loop *loop;
    WH_CAST_OBJ(loop, arg, LOOP_MAGIC);
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    loop->in_action = 1;
    curl_multi_socket_action(loop->multi, fd, action, &running);
    loop->in_action = 0;
    check_multi_info(loop);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_curl_loop *loop;
    WH_CAST_OBJ(loop, arg, LOOP_MAGIC);
    int running;
    loop->in_action = 1;
    curl_multi_socket_action(loop->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    loop->in_action = 0;
    check_multi_info(loop);
}

static int call_add(struct wh_curl_call *c)
{
    CURLMcode mc = curl_multi_add_handle(c->loop->multi, c->easy);
    if (mc != CURLM_OK) {
        snprintf(c->errbuf, sizeof(c->errbuf), "cannot start a transfer: %s",
                 curl_multi_strerror(mc));
        return -1;
    }
    c->added = 1;
    return 0;
}

/* Remove the cancelled calls, add the deferred ones. A deferred call that
 * can't be added completes at once with CURLE_FAILED_INIT. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_curl_loop *loop;
    WH_CAST_OBJ(loop, arg, LOOP_MAGIC);
    struct wh_curl_call *c, *next;
    for (c = TAILQ_FIRST(&loop->calls); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->cancelled) {
            if (c->added)
                curl_multi_remove_handle(loop->multi, c->easy);
            TAILQ_REMOVE(&loop->calls, c, link);
            call_free(c);
        } else if (!c->added && call_add(c) != 0) {
            call_finish(c, CURLE_FAILED_INIT);
        }
    }
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct wh_curl_loop *loop;
    WH_CAST_OBJ(loop, userp, LOOP_MAGIC);
    struct sock_ctx *s = socketp;
    WH_CHECK_OBJ_ORNULL(s, SOCK_MAGIC);
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(loop->multi, fd, NULL);
            LIST_REMOVE(s, link);
            event_free(s->ev);
            WH_FREE_OBJ(s);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        WH_INIT_OBJ(s, SOCK_MAGIC);
        s->ev = event_new(loop->base, fd, kind, event_cb, loop);
        if (!s->ev) {
            WH_FREE_OBJ(s);
            return -1;
        }
        s->fd = fd;
        s->loop = loop;
        LIST_INSERT_HEAD(&loop->socks, s, link);
        curl_multi_assign(loop->multi, fd, s);
    } else {
        event_del(s->ev);
        event_assign(s->ev, loop->base, fd, kind, event_cb, loop);
    }
    return event_add(s->ev, NULL) == 0 ? 0 : -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct wh_curl_loop *loop;
    WH_CAST_OBJ(loop, userp, LOOP_MAGIC);
    if (timeout_ms < 0)
        return evtimer_del(loop->timer) == 0 ? 0 : -1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(loop->timer, &tv) == 0 ? 0 : -1;
}

struct wh_curl_loop *wh_curl_loop_new(struct event_base *base)
{
    struct wh_curl_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    WH_INIT_OBJ(loop, LOOP_MAGIC);
    loop->base = base;
    TAILQ_INIT(&loop->calls);
    LIST_INIT(&loop->socks);
    loop->multi = curl_multi_init();
    loop->timer = evtimer_new(base, timeout_cb, loop);
    loop->kick = event_new(base, -1, 0, kick_cb, loop);
    if (!loop->multi || !loop->timer || !loop->kick)
        goto err;
    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
    return loop;
err:
    wh_curl_loop_free(loop);
    return NULL;
}

void wh_curl_loop_free(struct wh_curl_loop *loop)
{
    if (!loop)
        return;
    struct wh_curl_call *c;
    while ((c = TAILQ_FIRST(&loop->calls))) {
        if (c->added)
            curl_multi_remove_handle(loop->multi, c->easy);
        TAILQ_REMOVE(&loop->calls, c, link);
        call_free(c);
    }
    if (loop->multi)
        curl_multi_cleanup(loop->multi);
    struct sock_ctx *s;
    while ((s = LIST_FIRST(&loop->socks))) {
        LIST_REMOVE(s, link);
        event_free(s->ev);
        WH_FREE_OBJ(s);
    }
    if (loop->timer)
        event_free(loop->timer);
    if (loop->kick)
        event_free(loop->kick);
    WH_FREE_OBJ(loop);
}

static int body_append(struct wh_curl_call *c, const char *data, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n + 1)
            cap *= 2;
        if (cap > WH_CURL_MAX_BODY + 1)
            return -1;
        char *p = realloc(c->body, cap);
        if (!p)
            return -1;
        c->body = p;
        c->cap = cap;
    }
    memcpy(c->body + c->len, data, n);
    c->len += n;
    c->body[c->len] = '\0';
    return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct wh_curl_call *c;
    WH_CAST_OBJ(c, userp, CALL_MAGIC);
    size_t n = size * nmemb;
    if (c->cancelled)
        return CURL_WRITEFUNC_ERROR;
    if (c->chunk && !c->status_known) {
        long status = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        c->error_status = status >= 400;
        c->status_known = 1;
    }
    int rc = (c->chunk && !c->error_status) ? c->chunk(c->arg, data, n) : body_append(c, data, n);
    if (rc != 0 || c->cancelled)
        return CURL_WRITEFUNC_ERROR;
    return n;
}

static struct wh_curl_call *submit(struct wh_curl_loop *loop, CURL *easy,
                                   struct curl_slist *headers, wh_curl_chunk_fn chunk,
                                   wh_curl_done_fn done, void *arg)
{
    struct wh_curl_call *c = calloc(1, sizeof(*c));
    if (!c) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        return NULL;
    }
    *c = (struct wh_curl_call){
        .loop = loop, .easy = easy, .headers = headers, .done = done, .chunk = chunk, .arg = arg};
    WH_INIT_OBJ(c, CALL_MAGIC);
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, c);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (headers)
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    if (loop->in_action) {
        event_active(loop->kick, EV_TIMEOUT, 1);
    } else if (call_add(c) != 0) {
        wh_log_error("curl", "%s", c->errbuf);
        call_free(c);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&loop->calls, c, link);
    loop->active++;
    return c;
}

struct wh_curl_call *wh_curl_submit(struct wh_curl_loop *loop, CURL *easy,
                                    struct curl_slist *headers, wh_curl_done_fn done, void *arg)
{
    return submit(loop, easy, headers, NULL, done, arg);
}

struct wh_curl_call *wh_curl_submit_stream(struct wh_curl_loop *loop, CURL *easy,
                                           struct curl_slist *headers, wh_curl_chunk_fn chunk,
                                           wh_curl_done_fn done, void *arg)
{
    return submit(loop, easy, headers, chunk, done, arg);
}

void wh_curl_cancel(struct wh_curl_call *call)
{
    WH_CHECK_OBJ_ORNULL(call, CALL_MAGIC);
    if (!call || call->cancelled || call->finishing)
        return;
    call->cancelled = 1;
    call->loop->active--;
    event_active(call->loop->kick, EV_TIMEOUT, 1);
}

size_t wh_curl_loop_active(const struct wh_curl_loop *loop)
{
    return loop->active;
}

struct event_base *wh_curl_loop_base(const struct wh_curl_loop *loop)
{
    return loop->base;
}

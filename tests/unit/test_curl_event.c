/* Unit tests of core's libcurl-multi ↔ libevent glue (src/core/curl_event.c)
 * on a real event_base, against a small HTTP/1.1 server served on the same
 * loop (an evconnlistener on 127.0.0.1, one bufferevent per connection).
 * Nothing below the module's interface is mocked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "wharf/curl_event.h"

/* ---- the server ----
 *
 * GET /hello   200 "hello"
 * GET /big     200, BIG_LEN bytes written in BIG_PIECES pieces, 1 ms apart
 * GET /error   404 {"message":"no such thing"}
 * GET /trickle 200 announcing BIG_LEN bytes, then one piece and nothing more
 * GET /hang    never answers
 * Connections are kept alive. */

#define BIG_LEN (256 * 1024)
#define BIG_PIECES 8

struct server {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    int accepted, requests, open;
    struct conn *conns;
};

struct conn {
    struct server *srv;
    struct bufferevent *bev;
    struct event *piece_ev;
    int pieces_left;
    struct conn *next;
};

static void conn_close(struct conn *c)
{
    struct conn **p = &c->srv->conns;
    while (*p != c)
        p = &(*p)->next;
    *p = c->next;
    c->srv->open--;
    if (c->piece_ev)
        event_free(c->piece_ev);
    bufferevent_free(c->bev);
    free(c);
}

static void send_head(struct conn *c, int status, const char *reason, size_t len)
{
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nContent-Type: text/plain\r\n\r\n",
                        status, reason, len);
}

/* One piece of /big, then the next one a millisecond later. */
static void piece_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    static char piece[BIG_LEN / BIG_PIECES];
    memset(piece, 'x', sizeof(piece));
    bufferevent_write(c->bev, piece, sizeof(piece));
    if (--c->pieces_left > 0) {
        struct timeval tv = {0, 1000};
        evtimer_add(c->piece_ev, &tv);
    }
}

static void answer(struct conn *c, const char *path)
{
    c->srv->requests++;
    if (strcmp(path, "/hello") == 0) {
        send_head(c, 200, "OK", 5);
        bufferevent_write(c->bev, "hello", 5);
    } else if (strcmp(path, "/big") == 0) {
        send_head(c, 200, "OK", BIG_LEN);
        c->pieces_left = BIG_PIECES;
        if (!c->piece_ev)
            c->piece_ev = evtimer_new(c->srv->base, piece_cb, c);
        piece_cb(-1, 0, c);
    } else if (strcmp(path, "/trickle") == 0) {
        send_head(c, 200, "OK", BIG_LEN);
        bufferevent_write(c->bev, "some", 4);
    } else if (strcmp(path, "/error") == 0) {
        const char *body = "{\"message\":\"no such thing\"}";
        send_head(c, 404, "Not Found", strlen(body));
        bufferevent_write(c->bev, body, strlen(body));
    } else if (strcmp(path, "/hang") != 0) {
        send_head(c, 400, "Bad Request", 0);
    }
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end;
    /* GETs only: a request ends with its blank line. */
    while ((end = evbuffer_search(in, "\r\n\r\n", 4, NULL)).pos >= 0) {
        char line[256] = "", path[200] = "";
        size_t n = (size_t)end.pos + 4;
        char *head = malloc(n + 1);
        assert_non_null(head);
        evbuffer_remove(in, head, n);
        head[n] = '\0';
        snprintf(line, sizeof(line), "%.*s", (int)strcspn(head, "\r"), head);
        free(head);
        assert_int_equal(sscanf(line, "GET %199s HTTP/1.1", path), 1);
        answer(c, path);
    }
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_close(arg);
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *srv = arg;
    struct conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = srv;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(c->bev);
    c->next = srv->conns;
    srv->conns = c;
    srv->accepted++;
    srv->open++;
    bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void server_start(struct server *srv, struct event_base *base)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    memset(srv, 0, sizeof(*srv));
    srv->base = base;
    srv->lis =
        evconnlistener_new_bind(base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
                                (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(srv->lis);
    assert_int_equal(getsockname(evconnlistener_get_fd(srv->lis), (struct sockaddr *)&sin, &len),
                     0);
    srv->port = ntohs(sin.sin_port);
}

static void server_stop(struct server *srv)
{
    while (srv->conns)
        conn_close(srv->conns);
    evconnlistener_free(srv->lis);
}

/* ---- the client side ---- */

struct fixture {
    struct event_base *base;
    struct wh_curl_loop *loop;
    struct server srv;
};

struct req {
    struct fixture *f;
    int done; /* times done was called */
    CURLcode code;
    long status;
    char *body; /* copy of the buffered body */
    size_t body_len;
    size_t streamed; /* bytes handed to the chunk callback */
    int chunks;
    double elapsed;
    long new_connections;
    /* what a callback does besides recording */
    int cancel_in_chunk; /* cancel its own call from the first chunk */
    struct wh_curl_call *call;
    struct req *then; /* submitted from the first chunk, or from done */
    const char *then_path;
    int *left; /* counts down; the loop stops at 0 */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->loop = wh_curl_loop_new(f->base);
    assert_non_null(f->loop);
    server_start(&f->srv, f->base);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    wh_curl_loop_free(f->loop);
    server_stop(&f->srv);
    event_base_free(f->base);
    free(f);
    return 0;
}

static CURL *easy_for(const struct fixture *f, const char *path)
{
    char url[128];
    CURL *easy = curl_easy_init();
    assert_non_null(easy);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->srv.port, path);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_PROXY, ""); /* whatever the environment says */
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    return easy;
}

static void count_down(struct req *r)
{
    if (r->left && --*r->left == 0)
        event_base_loopbreak(r->f->base);
}

static void on_done(void *arg, const struct wh_curl_result *res)
{
    struct req *r = arg;
    r->done++;
    r->code = res->code;
    r->status = res->http_status;
    r->elapsed = res->elapsed;
    r->new_connections = res->new_connections;
    r->body_len = res->body_len;
    r->body = malloc(res->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, res->body, res->body_len + 1);
    assert_int_equal(strlen(res->error) == 0, res->code == CURLE_OK);
    if (r->then && !r->then->call) {
        r->then->call =
            wh_curl_submit(r->f->loop, easy_for(r->f, r->then_path), NULL, on_done, r->then);
        assert_non_null(r->then->call);
    }
    count_down(r);
}

static int on_chunk(void *arg, const char *data, size_t len)
{
    struct req *r = arg;
    r->chunks++;
    r->streamed += len;
    if (r->then && !r->then->call) {
        /* inside curl_multi_socket_action: the glue defers it to its kick */
        r->then->call =
            wh_curl_submit(r->f->loop, easy_for(r->f, r->then_path), NULL, on_done, r->then);
        assert_non_null(r->then->call);
    }
    if (r->cancel_in_chunk) {
        wh_curl_cancel(r->call);
        count_down(r);
    }
    return 0;
}

static struct wh_curl_call *get(struct fixture *f, struct req *r, const char *path)
{
    r->f = f;
    r->call = wh_curl_submit(f->loop, easy_for(f, path), NULL, on_done, r);
    assert_non_null(r->call);
    return r->call;
}

/* Run the loop until every request counted down, or fail after limit s. */
static void run(struct fixture *f, double limit)
{
    struct timeval tv = {(time_t)limit, (suseconds_t)((limit - (double)(time_t)limit) * 1e6)};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

static void req_clear(struct req *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---- tests ---- */

#define N_CONCURRENT 24

static void test_concurrent_requests_complete(void **state)
{
    struct fixture *f = *state;
    struct req reqs[N_CONCURRENT] = {{0}};
    int left = N_CONCURRENT;
    for (int i = 0; i < N_CONCURRENT; i++) {
        reqs[i].left = &left;
        get(f, &reqs[i], i % 3 == 2 ? "/big" : "/hello");
    }
    assert_int_equal(wh_curl_loop_active(f->loop), N_CONCURRENT);
    for (int i = 0; i < N_CONCURRENT; i++)
        assert_int_equal(reqs[i].done, 0); /* never from within the submission */
    run(f, 10);
    assert_int_equal(left, 0);
    assert_int_equal(wh_curl_loop_active(f->loop), 0);
    assert_int_equal(f->srv.requests, N_CONCURRENT);
    for (int i = 0; i < N_CONCURRENT; i++) {
        struct req *r = &reqs[i];
        assert_int_equal(r->done, 1);
        assert_int_equal(r->code, CURLE_OK);
        assert_int_equal(r->status, 200);
        if (i % 3 == 2) {
            assert_int_equal(r->body_len, BIG_LEN);
            assert_int_equal(r->body[BIG_LEN - 1], 'x');
        } else {
            assert_string_equal(r->body, "hello");
        }
        req_clear(r);
    }
}

static void test_keepalive_reuses_the_connection(void **state)
{
    struct fixture *f = *state;
    struct req first = {0}, second = {0};
    int left = 2;
    first.left = second.left = &left;
    first.then = &second;
    first.then_path = "/hello";
    second.f = f;
    second.left = &left;
    get(f, &first, "/hello");
    run(f, 5);
    assert_int_equal(left, 0);
    assert_int_equal(first.done, 1);
    assert_int_equal(second.done, 1);
    assert_int_equal(first.new_connections, 1);
    assert_int_equal(second.new_connections, 0);
    assert_string_equal(second.body, "hello");
    assert_int_equal(f->srv.accepted, 1);
    req_clear(&first);
    req_clear(&second);
}

static void test_timeout_fires(void **state)
{
    struct fixture *f = *state;
    struct req r = {0}, ok = {0};
    int left = 2;
    r.left = ok.left = &left;
    r.f = f;
    CURL *easy = easy_for(f, "/hang");
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 300L);
    r.call = wh_curl_submit(f->loop, easy, NULL, on_done, &r);
    assert_non_null(r.call);
    get(f, &ok, "/hello"); /* a hanging transfer holds up nobody */
    run(f, 5);
    assert_int_equal(left, 0);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.code, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(r.status, 0);
    assert_true(r.elapsed >= 0.29);
    assert_true(r.elapsed < 3);
    assert_int_equal(ok.code, CURLE_OK);
    assert_true(ok.elapsed < r.elapsed);
    req_clear(&r);
    req_clear(&ok);
}

static void test_connection_refused(void **state)
{
    struct fixture *f = *state;
    struct req r = {0};
    int left = 1;
    r.left = &left;
    r.f = f;
    /* A port nobody listens on: bind one, note it, close it. */
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    evutil_closesocket(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    CURL *easy = easy_for(f, "/");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    assert_non_null(wh_curl_submit(f->loop, easy, NULL, on_done, &r));
    run(f, 5);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.code, CURLE_COULDNT_CONNECT);
    assert_int_equal(r.status, 0);
    req_clear(&r);
}

static void test_stream_chunks_and_error_bodies(void **state)
{
    struct fixture *f = *state;
    struct req big = {0}, err = {0}, from_chunk = {0};
    int left = 3;
    big.left = err.left = from_chunk.left = &left;
    big.f = err.f = from_chunk.f = f;
    big.then = &from_chunk;
    big.then_path = "/hello";
    big.call = wh_curl_submit_stream(f->loop, easy_for(f, "/big"), NULL, on_chunk, on_done, &big);
    err.call = wh_curl_submit_stream(f->loop, easy_for(f, "/error"), NULL, on_chunk, on_done, &err);
    assert_non_null(big.call);
    assert_non_null(err.call);
    run(f, 5);
    assert_int_equal(left, 0);
    /* the body went to the chunk callback, not to the buffer */
    assert_int_equal(big.code, CURLE_OK);
    assert_int_equal(big.streamed, BIG_LEN);
    assert_true(big.chunks >= 2);
    assert_int_equal(big.body_len, 0);
    /* >= 400: buffered for done, the chunk callback never sees it */
    assert_int_equal(err.status, 404);
    assert_int_equal(err.chunks, 0);
    assert_string_equal(err.body, "{\"message\":\"no such thing\"}");
    /* submitted from a chunk callback: it ran all the same */
    assert_int_equal(from_chunk.done, 1);
    assert_string_equal(from_chunk.body, "hello");
    req_clear(&big);
    req_clear(&err);
    req_clear(&from_chunk);
}

static void test_cancel_from_chunk_callback(void **state)
{
    struct fixture *f = *state;
    struct req r = {0}, after = {0};
    int left = 1;
    r.left = &left;
    r.f = f;
    r.cancel_in_chunk = 1;
    r.call = wh_curl_submit_stream(f->loop, easy_for(f, "/big"), NULL, on_chunk, on_done, &r);
    assert_non_null(r.call);
    run(f, 5);
    assert_int_equal(left, 0);
    assert_int_equal(r.chunks, 1); /* no callback after the cancel */
    assert_int_equal(wh_curl_loop_active(f->loop), 0);
    /* the loop goes on serving */
    left = 1;
    after.left = &left;
    get(f, &after, "/hello");
    run(f, 5);
    assert_int_equal(r.done, 0);
    assert_int_equal(after.done, 1);
    assert_string_equal(after.body, "hello");
    req_clear(&after);
}

static void test_cancel_before_it_runs(void **state)
{
    struct fixture *f = *state;
    struct req r = {0}, ok = {0};
    int left = 1;
    ok.left = &left;
    get(f, &r, "/hello");
    get(f, &ok, "/hello");
    wh_curl_cancel(r.call);
    wh_curl_cancel(NULL);
    assert_int_equal(wh_curl_loop_active(f->loop), 1);
    run(f, 5);
    assert_int_equal(r.done, 0);
    assert_int_equal(ok.done, 1);
    req_clear(&ok);
}

static void never_done(void *arg, const struct wh_curl_result *res)
{
    fail_msg("a transfer completed after its loop was freed");
}

/* Transfers connected and waiting, one cancelled and not yet reaped, one
 * just submitted: freeing the loop drops them all, calls nobody, leaks
 * nothing (ASan), and leaves the event_base usable. */
static void test_free_with_requests_in_flight(void **state)
{
    struct fixture *f = *state;
    enum { N = 6 };
    for (int i = 0; i < N; i++)
        assert_non_null(wh_curl_submit(f->loop, easy_for(f, "/hang"), NULL, never_done, NULL));
    struct req streaming = {.f = f};
    assert_non_null(wh_curl_submit_stream(f->loop, easy_for(f, "/trickle"), NULL, on_chunk,
                                          never_done, &streaming));
    /* until the server has every connection and a request on each */
    for (int spins = 0; spins < 500 && f->srv.requests < N + 1; spins++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(f->srv.requests, N + 1);
    for (int spins = 0; spins < 500 && !streaming.chunks; spins++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(streaming.streamed, 4); /* mid-body */
    struct wh_curl_call *c = wh_curl_submit(f->loop, easy_for(f, "/hello"), NULL, never_done, NULL);
    wh_curl_cancel(c);
    assert_non_null(wh_curl_submit(f->loop, easy_for(f, "/hello"), NULL, never_done, NULL));
    wh_curl_loop_free(f->loop);
    f->loop = NULL;
    /* the base runs on without the loop's events */
    struct timeval tv = {0, 50000};
    event_base_loopexit(f->base, &tv);
    assert_int_equal(event_base_dispatch(f->base), 0);
    /* and a new loop on it works */
    f->loop = wh_curl_loop_new(f->base);
    struct req r = {0};
    int left = 1;
    r.left = &left;
    get(f, &r, "/hello");
    run(f, 5);
    assert_int_equal(r.done, 1);
    assert_string_equal(r.body, "hello");
    req_clear(&r);
}

static void test_free_null_and_global_init(void **state)
{
    wh_curl_loop_free(NULL);
    assert_int_equal(wh_curl_global_init(), 0); /* once per process; again is fine */
    struct fixture *f = *state;
    assert_ptr_equal(wh_curl_loop_base(f->loop), f->base);
    assert_int_equal(wh_curl_loop_active(f->loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrent_requests_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_reuses_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_chunks_and_error_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_chunk_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_before_it_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_requests_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_null_and_global_init, setup, teardown),
    };
    if (wh_curl_global_init() != 0)
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}

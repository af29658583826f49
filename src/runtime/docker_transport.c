/* Docker driver: the transport of one host — its call queue
 * (max_concurrent_calls, FIFO) over libcurl, call timeouts, API version
 * negotiation and error classification. docker_ops.c and docker_events.c
 * build on it; it calls neither (nor docker.c, which owns the host object).
 *
 * Every request goes through the kick event before it runs: an operation
 * never completes from within itself, and a request submitted from a curl
 * callback (an event handler calling inspect) is safe.
 */
#include "runtime/runtime-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "wharf/log.h"
#include "wharf/obj.h"

enum req_where { REQ_WAITING, REQ_RUNNING };

struct wh_dk_req {
    unsigned magic;
#define REQ_MAGIC 0x64726571u /* "dreq" */
    struct wh_dk *dk;
    TAILQ_ENTRY(wh_dk_req) link;
    enum req_where where;
    char *method, *path, *body, *auth;
    int unversioned, negotiation;
    enum wh_dk_call_class cls;
    double extra_timeout, stall_timeout;
    wh_curl_chunk_fn chunk;
    void *chunk_arg;
    void (*on_headers)(void *ctx, long status);
    wh_dk_done_fn fn;
    void *ctx;
    struct wh_curl_call *call;
    CURL *easy; /* owned by the curl loop while call runs */
    struct timespec queued_at;
    int failed; /* preset error: completes without a transfer */
    struct wh_rt_error err;
};

static double now_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double ts_secs(const struct timespec *t)
{
    return (double)t->tv_sec + (double)t->tv_nsec / 1e9;
}

/* ---- errors ---- */

/* "POST /containers/3f2a9b1c0d4e/start": the path without its query, long
 * segments (ids) cut to 12 characters. */
static void describe(const struct wh_dk_req *r, char *out, size_t len)
{
    size_t o = (size_t)snprintf(out, len, "%s ", r->method);
    const char *p = r->path;
    while (*p && *p != '?' && o + 1 < len) {
        size_t seg = strcspn(p + 1, "/?") + 1;
        size_t keep = seg > 13 ? 13 : seg;
        o += (size_t)snprintf(out + o, len - o, "%.*s", (int)keep, p);
        p += seg;
    }
}

void wh_dk_error(const struct wh_dk *dk, struct wh_rt_error *err, enum wh_rt_errkind kind,
                 const char *what, const char *fmt, ...)
{
    char text[WH_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    err->kind = kind;
    /* Cut each part so that the engine's message keeps some room. */
    int n = snprintf(err->message, sizeof(err->message), "host %.40s (%.60s): %.60s: %s", dk->id,
                     dk->url, what, text);
    if (n >= (int)sizeof(err->message))
        memcpy(err->message + sizeof(err->message) - 4, "...", 4);
}

static enum wh_rt_errkind curl_kind(CURLcode code, const char *text)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return WH_RT_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return WH_RT_ERR_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return WH_RT_ERR_TLS;
    case CURLE_WRITE_ERROR:
        return WH_RT_ERR_PROTOCOL;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
        return WH_RT_ERR_INTERNAL;
    default:
        /* With TLS 1.3 the engine refuses a client certificate after the
         * handshake: curl then sees an alert on its first read. */
        if (strstr(text, "SSL") || strstr(text, "alert"))
            return WH_RT_ERR_TLS;
        return WH_RT_ERR_TRANSPORT;
    }
}

static const char *tls_hint(const char *text)
{
    if (strstr(text, "unknown ca") || strstr(text, "bad certificate") ||
        strstr(text, "certificate required") || strstr(text, "certificate unknown"))
        return "the engine refused our client certificate (not signed by its CA?)";
    if (strstr(text, "verify failed") || strstr(text, "does not match") ||
        strstr(text, "certificate problem") || strstr(text, "SSL: no alternative"))
        return "the engine's certificate is not trusted or does not name this address";
    if (strstr(text, "could not load") || strstr(text, "unable to set") ||
        strstr(text, "problem with the local"))
        return "our CA, certificate or key could not be used";
    return "TLS failed";
}

/* With TLS 1.3 the server checks our certificate after the client considers
 * the handshake done, and a refusal shows up as a send or receive error on
 * the fresh connection before any response. */
static int refused_after_handshake(const struct wh_dk *dk, const struct wh_curl_result *res)
{
    if (!dk->tls_ca || res->http_status || !res->new_connections || res->tls_handshake <= 0)
        return 0;
    return res->code == CURLE_SEND_ERROR || res->code == CURLE_RECV_ERROR ||
           res->code == CURLE_GOT_NOTHING;
}

static void http_message(const struct wh_curl_result *res, char *out, size_t len)
{
    cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "message");
    if (cJSON_IsString(msg))
        snprintf(out, len, "%s", msg->valuestring);
    else
        snprintf(out, len, "%.*s", (int)strcspn(res->body, "\r\n"), res->body);
    cJSON_Delete(doc);
}

static void classify(const struct wh_dk_req *r, const struct wh_curl_result *res,
                     struct wh_rt_error *err)
{
    char what[96], msg[WH_ERR_LEN];
    memset(err, 0, sizeof(*err));
    describe(r, what, sizeof(what));
    if (res->code == CURLE_OK && res->http_status < 400)
        return;
    if (res->code == CURLE_OK) {
        http_message(res, msg, sizeof(msg));
        wh_dk_error(r->dk, err, WH_RT_ERR_HTTP, what, "HTTP %ld: %s", res->http_status, msg);
        err->http_status = res->http_status;
        return;
    }
    enum wh_rt_errkind kind = curl_kind(res->code, res->error);
    const char *label = kind == WH_RT_ERR_CONNECT   ? "cannot connect"
                        : kind == WH_RT_ERR_TIMEOUT ? "timed out"
                        : kind == WH_RT_ERR_TLS     ? tls_hint(res->error)
                                                    : "connection failed";
    if (kind == WH_RT_ERR_CONNECT && r->dk->ep.is_unix) {
        /* curl's text names "localhost port 80": say what was tried instead */
        wh_dk_error(r->dk, err, kind, what, "cannot connect to %s (is dockerd running?)",
                    r->dk->ep.socket_path);
        return;
    }
    if (kind == WH_RT_ERR_TRANSPORT && refused_after_handshake(r->dk, res)) {
        kind = WH_RT_ERR_TLS;
        label = "the engine closed the connection right after the TLS handshake: it refused "
                "our client certificate (not signed by its CA?)";
    }
    wh_dk_error(r->dk, err, kind, what, "%s (%s)", label, res->error);
}

cJSON *wh_dk_parse_body(const struct wh_dk *dk, const struct wh_curl_result *res, const char *what,
                        struct wh_rt_error *err)
{
    cJSON *doc = res ? cJSON_ParseWithLength(res->body, res->body_len) : NULL;
    if (!doc)
        wh_dk_error(dk, err, WH_RT_ERR_PROTOCOL, what, "the engine's answer is not JSON");
    return doc;
}

int wh_dk_list_answer(const struct wh_dk *dk, const struct wh_rt_error *err,
                      const struct wh_curl_result *res, struct wh_rt_error *e, struct wh_dk_ctr **v,
                      size_t *n)
{
    *e = *err;
    *v = NULL;
    *n = 0;
    if (err->kind != WH_RT_OK)
        return -1;
    cJSON *doc = wh_dk_parse_body(dk, res, "list", e);
    if (doc && wh_dk_list_parse(doc, v, n) != 0)
        wh_dk_error(dk, e, WH_RT_ERR_PROTOCOL, "list", "unexpected answer");
    cJSON_Delete(doc);
    return e->kind == WH_RT_OK ? 0 : -1;
}

/* ---- requests ---- */

static void req_free(struct wh_dk_req *r)
{
    free(r->method);
    free(r->path);
    free(r->body);
    free(r->auth);
    WH_FREE_OBJ(r);
}

static void req_detach(struct wh_dk_req *r)
{
    struct wh_dk *dk = r->dk;
    if (r->where == REQ_WAITING) {
        TAILQ_REMOVE(&dk->waiting, r, link);
    } else {
        TAILQ_REMOVE(&dk->running, r, link);
        if (r->cls == WH_DK_CALL && !r->negotiation)
            dk->inflight--;
    }
    if (r == dk->negotiation)
        dk->negotiation = NULL;
}

static void kick_soon(struct wh_dk *dk)
{
    event_active(dk->kick, EV_TIMEOUT, 1);
}

void wh_dk_enter(struct wh_dk *dk)
{
    dk->busy++;
}

/* The host was freed from inside a callback (docker.c's free only marked
 * it dying): free it now, through the interface, as its owner asked. */
int wh_dk_leave(struct wh_dk *dk)
{
    if (--dk->busy == 0 && dk->dying) {
        wh_runtime_free(&dk->base);
        return -1;
    }
    return 0;
}

static const struct wh_rt_error dropped = {.kind = WH_DK_DROPPED, .message = "dropped"};

/* Detach, report, free. -1 when the callback freed the host. */
static int req_complete(struct wh_dk_req *r, const struct wh_rt_error *err,
                        const struct wh_curl_result *res)
{
    struct wh_dk *dk = r->dk;
    req_detach(r);
    wh_dk_enter(dk);
    r->fn(r->ctx, dk->dying ? &dropped : err, dk->dying ? NULL : res);
    req_free(r);
    if (wh_dk_leave(dk) != 0)
        return -1;
    kick_soon(dk);
    return 0;
}

static struct wh_dk_req *req_new(struct wh_dk *dk, wh_dk_done_fn fn, void *ctx)
{
    struct wh_dk_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    WH_INIT_OBJ(r, REQ_MAGIC);
    r->dk = dk;
    r->fn = fn;
    r->ctx = ctx;
    r->where = REQ_WAITING;
    clock_gettime(CLOCK_MONOTONIC, &r->queued_at);
    return r;
}

static int dup_or_null(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -1 : 0;
}

struct wh_dk_req *wh_dk_call(struct wh_dk *dk, const struct wh_dk_call_opts *o, wh_dk_done_fn fn,
                             void *ctx)
{
    struct wh_dk_req *r = req_new(dk, fn, ctx);
    if (!r)
        return NULL;
    if (dup_or_null(&r->method, o->method) || dup_or_null(&r->path, o->path) ||
        dup_or_null(&r->body, o->body) || dup_or_null(&r->auth, o->auth)) {
        req_free(r);
        return NULL;
    }
    r->unversioned = o->unversioned;
    r->cls = o->cls;
    r->extra_timeout = o->extra_timeout;
    r->stall_timeout = o->stall_timeout;
    r->chunk = o->chunk;
    r->chunk_arg = o->chunk_arg;
    r->on_headers = o->on_headers;
    TAILQ_INSERT_TAIL(&dk->waiting, r, link);
    kick_soon(dk);
    return r;
}

struct wh_dk_req *wh_dk_fail(struct wh_dk *dk, const struct wh_rt_error *err, wh_dk_done_fn fn,
                             void *ctx)
{
    struct wh_dk_req *r = req_new(dk, fn, ctx);
    if (!r)
        return NULL;
    r->failed = 1;
    r->err = *err;
    TAILQ_INSERT_TAIL(&dk->waiting, r, link);
    kick_soon(dk);
    return r;
}

void wh_dk_req_cancel(struct wh_dk_req *r)
{
    WH_CHECK_OBJ_ORNULL(r, REQ_MAGIC);
    if (!r)
        return;
    struct wh_dk *dk = r->dk;
    if (r->call)
        wh_curl_cancel(r->call);
    req_detach(r);
    req_free(r);
    kick_soon(dk);
}

/* ---- transfers ---- */

static void on_curl_done(void *arg, const struct wh_curl_result *res)
{
    struct wh_dk_req *r;
    WH_CAST_OBJ(r, arg, REQ_MAGIC);
    struct wh_rt_error err;
    r->call = NULL;
    classify(r, res, &err);
    req_complete(r, &err, res);
}

static int chunk_cb(void *arg, const char *data, size_t len)
{
    struct wh_dk_req *r;
    WH_CAST_OBJ(r, arg, REQ_MAGIC);
    return r->chunk(r->chunk_arg, data, len);
}

/* The blank line that ends the response headers: tell the stream's owner. */
static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
    struct wh_dk_req *r;
    WH_CAST_OBJ(r, arg, REQ_MAGIC);
    size_t len = size * n;
    if ((len == 2 && data[0] == '\r') || (len == 1 && data[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200)
            r->on_headers(r->ctx, status);
    }
    return len;
}

static int set_timeouts(struct wh_dk_req *r, CURL *easy, struct wh_rt_error *err)
{
    struct wh_dk *dk = r->dk;
    double connect = dk->connect_timeout;
    if (r->cls == WH_DK_CALL) {
        double budget = dk->call_timeout + r->extra_timeout;
        double left = budget - (now_mono() - ts_secs(&r->queued_at));
        if (left < 0.05) {
            char what[96];
            describe(r, what, sizeof(what));
            wh_dk_error(dk, err, WH_RT_ERR_TIMEOUT, what,
                        "timed out (%.1f s) waiting in the queue behind slower calls", budget);
            return -1;
        }
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(left * 1000));
        if (connect > left)
            connect = left;
    } else if (r->stall_timeout > 0) {
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (long)(r->stall_timeout + 0.999));
    }
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect * 1000));
    return 0;
}

static void set_endpoint(const struct wh_dk *dk, CURL *easy)
{
    if (dk->ep.is_unix)
        curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH, dk->ep.socket_path);
    if (dk->tls_ca) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, dk->tls_ca);
        curl_easy_setopt(easy, CURLOPT_SSLCERT, dk->tls_cert);
        curl_easy_setopt(easy, CURLOPT_SSLKEY, dk->tls_key);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
}

/* Append a header line; on failure the list is kept (freed by the caller). */
static int add_header(struct curl_slist **headers, const char *line)
{
    struct curl_slist *h = curl_slist_append(*headers, line);
    if (!h)
        return -1;
    *headers = h;
    return 0;
}

static int set_request(struct wh_dk_req *r, CURL *easy, struct curl_slist **headers)
{
    struct wh_dk *dk = r->dk;
    size_t len = strlen(dk->ep.base_url) + strlen(r->path) + 24;
    char *url = malloc(len), *auth = NULL;
    if (!url)
        return -1;
    if (r->unversioned)
        snprintf(url, len, "%s%s", dk->ep.base_url, r->path);
    else
        snprintf(url, len, "%s/v%s%s", dk->ep.base_url, dk->api, r->path);
    CURLcode rc = curl_easy_setopt(easy, CURLOPT_URL, url);
    free(url);
    if (rc != CURLE_OK)
        return -1;
    if (add_header(headers, "Expect:") != 0)
        return -1;
    if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)(r->body ? strlen(r->body) : 0));
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, r->body ? r->body : "");
        if (r->body && add_header(headers, "Content-Type: application/json") != 0)
            return -1;
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, r->method);
    }
    if (!r->auth)
        return 0;
    if (asprintf(&auth, "X-Registry-Auth: %s", r->auth) < 0)
        return -1;
    int rc2 = add_header(headers, auth);
    free(auth);
    return rc2;
}

/* Start r's transfer: 0; or complete it with the failure (we're on the kick
 * event) and return -1: then anything may have changed. */
static int req_start(struct wh_dk_req *r)
{
    struct wh_dk *dk = r->dk;
    struct wh_rt_error err = {0};
    struct curl_slist *headers = NULL;
    CURL *easy = curl_easy_init();
    char what[96];
    describe(r, what, sizeof(what));
    wh_dk_error(dk, &err, WH_RT_ERR_INTERNAL, what, "cannot set up the transfer");
    if (!easy || set_request(r, easy, &headers) != 0)
        goto fail;
    if (set_timeouts(r, easy, &err) != 0)
        goto fail;
    set_endpoint(dk, easy);
    if (r->on_headers) {
        curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
    }
    TAILQ_REMOVE(&dk->waiting, r, link);
    TAILQ_INSERT_TAIL(&dk->running, r, link);
    r->where = REQ_RUNNING;
    if (r->cls == WH_DK_CALL && !r->negotiation)
        dk->inflight++;
    r->easy = easy;
    r->call = r->chunk ? wh_curl_submit_stream(dk->loop, easy, headers, chunk_cb, on_curl_done, r)
                       : wh_curl_submit(dk->loop, easy, headers, on_curl_done, r);
    if (!r->call) {
        wh_dk_error(dk, &err, WH_RT_ERR_INTERNAL, what, "cannot start the transfer");
        req_complete(r, &err, NULL);
        return -1;
    }
    return 0;
fail:
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    req_complete(r, &err, NULL);
    return -1;
}

/* ---- version negotiation ---- */

/* Fail every waiting versioned request with err. -1 when a callback freed
 * the host. */
static int fail_versioned(struct wh_dk *dk, const struct wh_rt_error *err)
{
    TAILQ_HEAD(, wh_dk_req) failed = TAILQ_HEAD_INITIALIZER(failed);
    struct wh_dk_req *r, *next;
    for (r = TAILQ_FIRST(&dk->waiting); r; r = next) {
        next = TAILQ_NEXT(r, link);
        if (r->unversioned || r->failed)
            continue;
        TAILQ_REMOVE(&dk->waiting, r, link);
        TAILQ_INSERT_TAIL(&failed, r, link);
    }
    wh_dk_enter(dk);
    while ((r = TAILQ_FIRST(&failed))) {
        TAILQ_REMOVE(&failed, r, link);
        r->fn(r->ctx, dk->dying ? &dropped : err, NULL);
        req_free(r);
    }
    return wh_dk_leave(dk);
}

static void on_version(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct wh_dk *dk;
    WH_CAST_OBJ(dk, ctx, WH_DK_MAGIC);
    struct wh_rt_error perr = *err;
    if (wh_dk_dropped(err))
        return;
    cJSON *doc = err->kind == WH_RT_OK ? wh_dk_parse_body(dk, res, "GET /version", &perr) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "ApiVersion");
    const cJSON *min = cJSON_GetObjectItemCaseSensitive(doc, "MinAPIVersion");
    if (doc && cJSON_IsString(v)) {
        wh_dk_pick_version(v->valuestring, cJSON_IsString(min) ? min->valuestring : NULL, dk->api,
                           sizeof(dk->api));
        wh_log_debug("runtime", "host %s: engine API %s, speaking %s", dk->id, v->valuestring,
                     dk->api);
    } else {
        if (doc)
            wh_dk_error(dk, &perr, WH_RT_ERR_PROTOCOL, "GET /version", "no ApiVersion");
        (void)fail_versioned(dk, &perr);
    }
    cJSON_Delete(doc);
}

/* Start GET /version. -1 when it failed at once (anything may have
 * changed, the host may be gone). */
static int negotiate(struct wh_dk *dk)
{
    struct wh_dk_call_opts o = {.method = "GET", .path = "/version", .unversioned = 1};
    struct wh_dk_req *r = req_new(dk, on_version, dk);
    if (!r || dup_or_null(&r->method, o.method) || dup_or_null(&r->path, o.path)) {
        if (r)
            req_free(r);
        return 0;
    }
    r->unversioned = 1;
    r->negotiation = 1;
    r->cls = WH_DK_CALL;
    TAILQ_INSERT_HEAD(&dk->waiting, r, link);
    dk->negotiation = r;
    return req_start(r);
}

/* ---- dispatch ---- */

static void dk_pump(struct wh_dk *dk)
{
    struct wh_dk_req *r, *next;
    /* Whenever a callback ran, anything may have changed (even the host
     * freed): stop; the completion kicked us again. */
    for (r = TAILQ_FIRST(&dk->waiting); r; r = next) {
        next = TAILQ_NEXT(r, link);
        if (r->failed) {
            req_complete(r, &r->err, NULL);
            return;
        }
        if (!r->unversioned && !dk->api[0]) {
            if (!dk->negotiation && negotiate(dk) != 0)
                return;
            continue;
        }
        if (r->cls == WH_DK_CALL && dk->inflight >= dk->max_calls)
            continue;
        if (req_start(r) != 0)
            return;
    }
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_dk *dk;
    WH_CAST_OBJ(dk, arg, WH_DK_MAGIC);
    dk_pump(dk);
}

/* ---- the host's side ---- */

int wh_dk_transport_init(struct wh_dk *dk)
{
    dk->kick = event_new(dk->evb, -1, 0, kick_cb, dk);
    return dk->kick ? 0 : -1;
}

void wh_dk_transport_fini(struct wh_dk *dk)
{
    struct wh_dk_req *r;
    /* Each request's owner frees its context; nobody is called back. */
    while ((r = TAILQ_FIRST(&dk->running))) {
        wh_curl_cancel(r->call);
        TAILQ_REMOVE(&dk->running, r, link);
        r->fn(r->ctx, &dropped, NULL);
        req_free(r);
    }
    while ((r = TAILQ_FIRST(&dk->waiting))) {
        TAILQ_REMOVE(&dk->waiting, r, link);
        r->fn(r->ctx, &dropped, NULL);
        req_free(r);
    }
    if (dk->kick)
        event_free(dk->kick);
    dk->kick = NULL;
}

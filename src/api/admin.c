/* The admin API's listener (the top floor, DESIGN.md): evhttp on the admin
 * address, the bearer token, routing by longest path prefix, /healthz, and
 * /metrics assembled from the metrics writers the modules below registered.
 * Each module's endpoints are in api_<module>.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "api/api-int.h"
#include "wharf/api.h"
#include "wharf/config.h"
#include "wharf/log.h"
#include "wharf/obj.h"

#define WH_API_MAX_ROUTES 32
#define WH_API_MAX_METRICS 16
#define WH_TOKEN_MAX 512

struct api_route {
    char prefix[64];
    wh_api_handler_fn fn;
    void *arg;
};

struct api_metrics {
    wh_api_metrics_fn fn;
    void *arg;
};

#define WH_API_MAGIC 0x41504931u /* "API1" */

struct wh_api {
    unsigned magic;
    struct evhttp *http;
    char token[WH_TOKEN_MAX];
    int metrics_public;
    struct api_route routes[WH_API_MAX_ROUTES];
    size_t n_routes;
    struct api_metrics metrics[WH_API_MAX_METRICS];
    size_t n_metrics;
};

static int read_token(const char *path, char *token, char *err, size_t errlen)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        snprintf(err, errlen, "admin.token_file %s: %s", path ? path : "(unset)",
                 path ? strerror(errno) : "a token file is required");
        return -1;
    }
    char line[WH_TOKEN_MAX];
    int ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    size_t b = 0, e = ok ? strlen(line) : 0;
    while (b < e && (line[b] == ' ' || line[b] == '\t'))
        b++;
    while (e > b && strchr(" \t\r\n", line[e - 1]))
        e--;
    if (e == b) {
        snprintf(err, errlen, "admin.token_file %s: the first line holds no token", path);
        return -1;
    }
    memcpy(token, line + b, e - b);
    token[e - b] = '\0';
    return 0;
}

/* Constant time, so the comparison does not leak how much of a guess matched. */
static int token_ok(const struct wh_api *api, const char *header)
{
    if (!header || strncmp(header, "Bearer ", 7) != 0)
        return 0;
    const char *given = header + 7;
    size_t n = strlen(api->token), m = strlen(given);
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(api->token[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

void wh_api_reply_json(struct evhttp_request *req, int status, char *json)
{
    struct evbuffer *out = evbuffer_new();
    if (json)
        evbuffer_add(out, json, strlen(json));
    evbuffer_add(out, "\n", 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
    cJSON_free(json);
}

void wh_api_reply_error(struct evhttp_request *req, int status, const char *code,
                        const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    wh_api_reply_json(req, status, cJSON_PrintUnformatted(root));
    cJSON_Delete(root);
}

static void reply_text(struct evhttp_request *req, const char *type, struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, 200, "OK", body);
}

static void serve_metrics(struct wh_api *api, struct evhttp_request *req)
{
    struct evbuffer *out = evbuffer_new();
    for (size_t i = 0; i < api->n_metrics; i++)
        api->metrics[i].fn(api->metrics[i].arg, out);
    reply_text(req, "text/plain; version=0.0.4", out);
    evbuffer_free(out);
}

static const struct api_route *find_route(const struct wh_api *api, const char *path)
{
    const struct api_route *best = NULL;
    for (size_t i = 0; i < api->n_routes; i++) {
        size_t n = strlen(api->routes[i].prefix);
        if (strncmp(path, api->routes[i].prefix, n) == 0 && (!best || n > strlen(best->prefix)))
            best = &api->routes[i];
    }
    return best;
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    struct wh_api *api;
    WH_CAST_OBJ(api, arg, WH_API_MAGIC);
    const char *uri = evhttp_request_get_uri(req);
    char path[1024];
    size_t n = strcspn(uri, "?");
    if (n >= sizeof(path)) {
        wh_api_reply_error(req, 414, "UriTooLong", "the request URI is too long");
        return;
    }
    memcpy(path, uri, n);
    path[n] = '\0';
    int get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
    if (get && strcmp(path, "/healthz") == 0) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, "ok\n", 3);
        reply_text(req, "text/plain", b);
        evbuffer_free(b);
        return;
    }
    int is_metrics = get && strcmp(path, "/metrics") == 0;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!(is_metrics && api->metrics_public) && !token_ok(api, auth)) {
        wh_api_reply_error(req, 401, "Unauthorized",
                           "send Authorization: Bearer <the admin token file's first line>");
        return;
    }
    if (is_metrics) {
        serve_metrics(api, req);
        return;
    }
    const struct api_route *r = find_route(api, path);
    if (!r) {
        wh_api_reply_error(req, 404, "NotFound", "no such endpoint");
        return;
    }
    r->fn(r->arg, req, path);
}

struct wh_api *wh_api_new(struct event_base *base, const struct wh_cfg_admin *cfg, char *err,
                          size_t errlen)
{
    struct wh_api *api = calloc(1, sizeof(*api));
    if (!api) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    WH_INIT_OBJ(api, WH_API_MAGIC);
    api->metrics_public = cfg->metrics_public;
    if (read_token(cfg->token_file, api->token, err, errlen) < 0)
        goto fail;
    api->http = evhttp_new(base);
    if (!api->http)
        goto fail;
    struct evconnlistener *l = evconnlistener_new_bind(
        base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
        (const struct sockaddr *)&cfg->bind.ss, (int)cfg->bind.len);
    if (!l || !evhttp_bind_listener(api->http, l)) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", cfg->bind.text, strerror(errno));
        if (l)
            evconnlistener_free(l);
        goto fail;
    }
    evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
                                              EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(api->http, 1 << 20);
    evhttp_set_gencb(api->http, dispatch, api);
    wh_log_info("api", "admin listener on %s", cfg->bind.text);
    return api;
fail:
    wh_api_free(api);
    return NULL;
}

void wh_api_free(struct wh_api *api)
{
    if (!api)
        return;
    if (api->http)
        evhttp_free(api->http);
    WH_FREE_OBJ(api);
}

int wh_api_add_metrics(struct wh_api *api, wh_api_metrics_fn fn, void *arg)
{
    if (api->n_metrics >= WH_API_MAX_METRICS)
        return -1;
    api->metrics[api->n_metrics++] = (struct api_metrics){fn, arg};
    return 0;
}

int wh_api_route(struct wh_api *api, const char *prefix, wh_api_handler_fn fn, void *arg)
{
    if (api->n_routes >= WH_API_MAX_ROUTES || strlen(prefix) >= sizeof(api->routes[0].prefix))
        return -1;
    struct api_route *r = &api->routes[api->n_routes++];
    snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
    r->fn = fn;
    r->arg = arg;
    return 0;
}

int wh_api_split_path(const char *rest, char **seg, int max)
{
    int n = 0;
    if (rest[0] && rest[0] != '/')
        return -1;
    while (*rest) {
        if (*rest != '/' || n == max)
            return -1;
        rest++;
        size_t len = strcspn(rest, "/");
        if (len == 0)
            return rest[0] == '\0' && n == 0 ? 0 : -1; /* a trailing slash on the collection */
        char raw[512];
        if (len >= sizeof(raw))
            return -1;
        memcpy(raw, rest, len);
        raw[len] = '\0';
        if (!(seg[n] = evhttp_uridecode(raw, 0, NULL)))
            return -1;
        n++;
        rest += len;
    }
    return n;
}

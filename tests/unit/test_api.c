/* Unit tests of the admin API (src/api/): the listener's token check,
 * /healthz and /metrics, prefix routing, and the target groups' endpoints
 * with each registry error mapped to its HTTP status and code. A real
 * listener on loopback and libevent's HTTP client on the same loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "wharf/api.h"
#include "wharf/config.h"
#include "wharf/targets.h"

#define TOKEN "unit-admin-token"

struct fx {
    struct event_base *base;
    struct wh_api *api;
    struct wh_targets *reg;
    struct wh_config *cfg;
    struct evhttp_connection *conn;
    char token_path[64];
    int port;
    int metrics_calls;
    int route_calls;
    char route_path[128];
};

/* The reply of one request. */
struct reply {
    int status;
    char body[8192];
    char content_type[64];
    struct event_base *base;
};

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static void test_metrics(void *arg, struct evbuffer *out)
{
    struct fx *f = arg;
    f->metrics_calls++;
    evbuffer_add_printf(out, "wharf_unit_gauge 7\n");
}

static void test_route(void *arg, struct evhttp_request *req, const char *path)
{
    struct fx *f = arg;
    f->route_calls++;
    snprintf(f->route_path, sizeof(f->route_path), "%s", path);
    wh_api_reply_json(req, 200, strdup("{\"route\":\"unit\"}"));
}

static struct fx *fx_new(int metrics_public)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    snprintf(f->token_path, sizeof(f->token_path), "/tmp/wh-test-api-%d.token", (int)getpid());
    FILE *t = fopen(f->token_path, "w");
    assert_non_null(t);
    fprintf(t, "  %s \n", TOKEN);
    fclose(t);
    f->port = free_port();
    char text[1024];
    snprintf(text, sizeof(text),
             "admin = { bind = \"127.0.0.1:%d\"; token_file = \"%s\"; metrics_public = %s; };\n"
             "target_groups = ( { name = \"web\"; }, { name = \"api\"; slow_start = 30; } );\n",
             f->port, f->token_path, metrics_public ? "true" : "false");
    f->cfg = wh_config_load_string_ex(text, "api.conf", WH_FEATURES_ALL, NULL, NULL);
    assert_non_null(f->cfg);
    char err[WH_ERR_LEN];
    f->reg = wh_targets_new(f->base, NULL, NULL, NULL);
    assert_int_equal(wh_targets_set_groups(f->reg, f->cfg, err, sizeof(err)), 0);
    f->api = wh_api_new(f->base, &f->cfg->admin, err, sizeof(err));
    assert_non_null(f->api);
    assert_int_equal(wh_api_targets_register(f->api, f->reg), 0);
    assert_int_equal(wh_api_add_metrics(f->api, test_metrics, f), 0);
    assert_int_equal(wh_api_route(f->api, "/v1/unit", test_route, f), 0);
    f->conn = evhttp_connection_base_new(f->base, NULL, "127.0.0.1", (unsigned short)f->port);
    assert_non_null(f->conn);
    return f;
}

static void fx_free(struct fx *f)
{
    evhttp_connection_free(f->conn);
    wh_api_free(f->api);
    wh_targets_free(f->reg);
    wh_config_free(f->cfg);
    event_base_free(f->base);
    unlink(f->token_path);
    free(f);
}

static void reply_cb(struct evhttp_request *req, void *arg)
{
    struct reply *r = arg;
    event_base_loopbreak(r->base);
    if (!req)
        return;
    r->status = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    n = n < sizeof(r->body) - 1 ? n : sizeof(r->body) - 1;
    evbuffer_remove(in, r->body, n);
    r->body[n] = '\0';
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    snprintf(r->content_type, sizeof(r->content_type), "%s", ct ? ct : "");
}

/* method on uri with the token (or without when token is NULL); body may be
 * NULL. Runs the loop until the reply arrives. */
static struct reply call(struct fx *f, enum evhttp_cmd_type method, const char *uri,
                         const char *token, const char *body)
{
    struct reply r = {.status = -1, .base = f->base};
    struct evhttp_request *req = evhttp_request_new(reply_cb, &r);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", "127.0.0.1");
    char auth[128];
    if (token) {
        snprintf(auth, sizeof(auth), "Bearer %s", token);
        evhttp_add_header(h, "Authorization", auth);
    }
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    assert_int_equal(evhttp_make_request(f->conn, req, method, uri), 0);
    event_base_dispatch(f->base);
    assert_int_not_equal(r.status, -1);
    return r;
}

/* The error code of an API error body ({"error": {"code": ...}}). */
static void assert_error(const struct reply *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    cJSON *root = cJSON_Parse(r->body);
    assert_non_null(root);
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "error"), "code");
    assert_true(cJSON_IsString(c));
    assert_string_equal(c->valuestring, code);
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "error"), "message");
    assert_true(cJSON_IsString(m) && m->valuestring[0]);
    cJSON_Delete(root);
}

static void test_token_healthz_and_metrics(void **state)
{
    struct fx *f = fx_new(0);
    struct reply r = call(f, EVHTTP_REQ_GET, "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    r = call(f, EVHTTP_REQ_GET, "/metrics", NULL, NULL);
    assert_error(&r, 401, "Unauthorized");
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups", "wrong-token", NULL);
    assert_error(&r, 401, "Unauthorized");
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups", TOKEN "x", NULL);
    assert_error(&r, 401, "Unauthorized");
    assert_int_equal(f->metrics_calls, 0);
    r = call(f, EVHTTP_REQ_GET, "/metrics", TOKEN, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4");
    assert_int_equal(f->metrics_calls, 1);
    assert_non_null(strstr(r.body, "wharf_unit_gauge 7\n"));
    assert_non_null(strstr(r.body, "wharf_targets{group=\"web\",state=\"healthy\"} 0\n"));
    assert_non_null(strstr(r.body, "wharf_health_check_duration_seconds_count 0\n"));
    fx_free(f);
}

static void test_metrics_public(void **state)
{
    struct fx *f = fx_new(1);
    struct reply r = call(f, EVHTTP_REQ_GET, "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(f->metrics_calls, 1);
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups", NULL, NULL); /* only metrics are public */
    assert_error(&r, 401, "Unauthorized");
    fx_free(f);
}

static void test_routing(void **state)
{
    struct fx *f = fx_new(0);
    struct reply r = call(f, EVHTTP_REQ_GET, "/v1/unit/thing?x=1", TOKEN, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_string_equal(f->route_path, "/v1/unit/thing"); /* the query is not part of the path */
    r = call(f, EVHTTP_REQ_GET, "/v1/nothing", TOKEN, NULL);
    assert_error(&r, 404, "NotFound");
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups/web/other", TOKEN, NULL);
    assert_error(&r, 404, "NotFound");
    r = call(f, EVHTTP_REQ_PATCH, "/v1/target-groups/web", TOKEN, "{}");
    assert_error(&r, 405, "MethodNotAllowed");
    assert_int_equal(f->route_calls, 1);
    fx_free(f);
}

static void test_target_group_listing(void **state)
{
    struct fx *f = fx_new(0);
    struct reply r = call(f, EVHTTP_REQ_POST, "/v1/target-groups/api/targets", TOKEN,
                          "{\"address\": \"127.0.0.1:9001\", \"weight\": 3}");
    assert_int_equal(r.status, 201);
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups", TOKEN, NULL);
    assert_int_equal(r.status, 200);
    cJSON *groups = cJSON_Parse(r.body);
    assert_int_equal(cJSON_GetArraySize(groups), 2);
    const cJSON *api = cJSON_GetArrayItem(groups, 1);
    assert_string_equal(cJSON_GetObjectItem(api, "name")->valuestring, "api");
    assert_string_equal(cJSON_GetObjectItem(api, "algorithm")->valuestring, "round_robin");
    assert_true(cJSON_GetObjectItem(api, "slow_start")->valuedouble == 30);
    const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(api, "targets"), 0);
    assert_string_equal(cJSON_GetObjectItem(t, "address")->valuestring, "127.0.0.1:9001");
    assert_string_equal(cJSON_GetObjectItem(t, "state")->valuestring, "healthy");
    assert_string_equal(cJSON_GetObjectItem(t, "source")->valuestring, "api");
    assert_int_equal(cJSON_GetObjectItem(t, "weight")->valueint, 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(t, "reason")));
    cJSON_Delete(groups);
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups/api/targets", TOKEN, NULL);
    assert_int_equal(r.status, 200);
    cJSON *targets = cJSON_Parse(r.body);
    assert_true(cJSON_IsArray(targets) && cJSON_GetArraySize(targets) == 1);
    cJSON_Delete(targets);
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups/web", TOKEN, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"name\":\"web\""));
    r = call(f, EVHTTP_REQ_GET, "/v1/target-groups/nope", TOKEN, NULL);
    assert_error(&r, 404, "TargetGroupNotFound");
    fx_free(f);
}

/* Each registry error has its own status and code. */
static void test_target_errors(void **state)
{
    struct fx *f = fx_new(0);
    const char *uri = "/v1/target-groups/web/targets";
    struct reply r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": \"127.0.0.1:9001\"}");
    assert_int_equal(r.status, 201);
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": \"127.0.0.1:9001\"}");
    assert_error(&r, 409, "TargetAlreadyRegistered");
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": \"127.0.0.1:9002\", \"weight\": 0}");
    assert_error(&r, 400, "InvalidWeight");
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": \"127.0.0.1:9002\", \"weight\": 1.5}");
    assert_error(&r, 400, "InvalidWeight");
    /* An address error whose message names a weight-like word stays an address error. */
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": \"weight:80\"}");
    assert_error(&r, 400, "InvalidAddress");
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": \"0.0.0.0:80\"}");
    assert_error(&r, 400, "InvalidAddress");
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": 5}");
    assert_error(&r, 400, "InvalidRequest");
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "not json");
    assert_error(&r, 400, "InvalidRequest");
    r = call(f, EVHTTP_REQ_POST, "/v1/target-groups/nope/targets", TOKEN,
             "{\"address\": \"127.0.0.1:9001\"}");
    assert_error(&r, 404, "TargetGroupNotFound");
    r = call(f, EVHTTP_REQ_DELETE, "/v1/target-groups/nope/targets/127.0.0.1%3A9001", TOKEN, NULL);
    assert_error(&r, 404, "TargetGroupNotFound");
    r = call(f, EVHTTP_REQ_DELETE, "/v1/target-groups/web/targets/127.0.0.1%3A9009", TOKEN, NULL);
    assert_error(&r, 404, "TargetNotFound");
    r = call(f, EVHTTP_REQ_DELETE, "/v1/target-groups/web/targets/bad", TOKEN, NULL);
    assert_error(&r, 400, "InvalidAddress");
    /* A service's task is the controller's to deregister: 409, and nothing drains. */
    char err[WH_ERR_LEN];
    assert_int_equal(
        wh_targets_register(f->reg, "web", "127.0.0.1:9005", 1, "service:shop", err, sizeof(err)),
        0);
    r = call(f, EVHTTP_REQ_DELETE, "/v1/target-groups/web/targets/127.0.0.1%3A9005", TOKEN, NULL);
    assert_error(&r, 409, "Conflict");
    assert_non_null(strstr(r.body, "service:shop"));
    assert_int_equal(wh_targets_find(f->reg, "web", "127.0.0.1:9005")->state, WH_TARGET_HEALTHY);
    r = call(f, EVHTTP_REQ_POST, uri, TOKEN, "{\"address\": \"127.0.0.1:9005\"}");
    assert_error(&r, 409, "TargetAlreadyRegistered");
    r = call(f, EVHTTP_REQ_DELETE, "/v1/target-groups/web/targets/127.0.0.1%3A9001", TOKEN, NULL);
    assert_int_equal(r.status, 202);
    cJSON *t = cJSON_Parse(r.body);
    assert_string_equal(cJSON_GetObjectItem(t, "state")->valuestring, "draining");
    cJSON_Delete(t);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_healthz_and_metrics),
        cmocka_unit_test(test_metrics_public),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_target_group_listing),
        cmocka_unit_test(test_target_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

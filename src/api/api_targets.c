/* The target groups' admin endpoints (../shared/API.md), built on the
 * registry's read-only queries and writers (include/wharf/targets.h).
 *   GET    /v1/target-groups                     every group with its targets
 *   GET    /v1/target-groups/{name}              one group
 *   GET    /v1/target-groups/{name}/targets      its targets
 *   POST   /v1/target-groups/{name}/targets      {"address": "IP:port", "weight": 1} -> 201
 *   DELETE /v1/target-groups/{name}/targets/{addr}                         -> 202 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include "api/api-int.h"
#include "wharf/api.h"
#include "wharf/log.h"
#include "wharf/targets.h"

#define TG_PREFIX "/v1/target-groups"

static const char *const algorithm_names[] = {"round_robin", "least_outstanding_requests",
                                              "weighted_random"};

static void add_str_or_null(cJSON *o, const char *key, const char *v)
{
    if (v && v[0])
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *target_json(struct wh_targets *reg, const struct wh_target *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "address", t->addr.text);
    cJSON_AddStringToObject(o, "state", wh_target_state_name(t->state));
    add_str_or_null(o, "reason", t->reason);
    add_str_or_null(o, "description", t->description);
    cJSON_AddStringToObject(o, "source", t->source);
    cJSON_AddNumberToObject(o, "in_flight", atomic_load(&t->in_flight));
    cJSON_AddNumberToObject(o, "weight", t->weight);
    cJSON_AddNumberToObject(o, "slow_start_remaining", wh_targets_slow_start_remaining(reg, t));
    return o;
}

/* wh_targets_foreach visitors building [{"name", "algorithm", "targets"}]. */
struct listing {
    struct wh_targets *reg;
    cJSON *groups;
    cJSON *targets; /* of the group being visited */
};

static void list_group(void *arg, const struct wh_targets_group_info *group)
{
    struct listing *l = arg;
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "name", group->name);
    cJSON_AddStringToObject(g, "algorithm", algorithm_names[group->algorithm]);
    cJSON_AddNumberToObject(g, "slow_start", group->slow_start);
    l->targets = cJSON_AddArrayToObject(g, "targets");
    cJSON_AddItemToArray(l->groups, g);
}

static void list_target(void *arg, const struct wh_target *t)
{
    struct listing *l = arg;
    cJSON_AddItemToArray(l->targets, target_json(l->reg, t));
}

static void reply_groups(struct wh_targets *reg, struct evhttp_request *req, const char *group,
                         int targets_only)
{
    struct listing l = {.reg = reg, .groups = cJSON_CreateArray()};
    wh_targets_foreach(reg, group, list_group, list_target, &l);
    cJSON *g = group ? cJSON_DetachItemFromArray(l.groups, 0) : NULL;
    if (group && !g) {
        wh_api_reply_error(req, 404, "TargetGroupNotFound", "no target group with this name");
    } else if (targets_only) {
        wh_api_reply_json(req, 200, cJSON_PrintUnformatted(cJSON_GetObjectItem(g, "targets")));
    } else {
        wh_api_reply_json(req, 200, cJSON_PrintUnformatted(g ? g : l.groups));
    }
    cJSON_Delete(g);
    cJSON_Delete(l.groups);
}

static void reply_target(struct wh_targets *reg, struct evhttp_request *req, int status,
                         const char *group, const char *addr)
{
    struct wh_target *t = wh_targets_find(reg, group, addr);
    cJSON *o = t ? target_json(reg, t) : cJSON_CreateObject();
    wh_api_reply_json(req, status, cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
}

/* The HTTP answer to a registry error (API.md's codes). */
static void reply_targets_error(struct evhttp_request *req, int rc, const char *message)
{
    switch (rc) {
    case WH_TARGETS_NO_GROUP:
        wh_api_reply_error(req, 404, "TargetGroupNotFound", message);
        break;
    case WH_TARGETS_NO_TARGET:
        wh_api_reply_error(req, 404, "TargetNotFound", message);
        break;
    case WH_TARGETS_EXISTS:
        wh_api_reply_error(req, 409, "TargetAlreadyRegistered", message);
        break;
    case WH_TARGETS_BAD_ADDRESS:
        wh_api_reply_error(req, 400, "InvalidAddress", message);
        break;
    case WH_TARGETS_BAD_WEIGHT:
        wh_api_reply_error(req, 400, "InvalidWeight", message);
        break;
    default:
        wh_api_reply_error(req, 500, "InternalError", message);
    }
}

static void post_target(struct wh_targets *reg, struct evhttp_request *req, const char *group)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    cJSON *body = cJSON_ParseWithLength((const char *)evbuffer_pullup(in, -1), len);
    const cJSON *addr = cJSON_GetObjectItemCaseSensitive(body, "address");
    const cJSON *weight = cJSON_GetObjectItemCaseSensitive(body, "weight");
    char err[WH_ERR_LEN];
    if (!cJSON_IsObject(body) || !cJSON_IsString(addr) || (weight && !cJSON_IsNumber(weight))) {
        wh_api_reply_error(req, 400, "InvalidRequest",
                           "send {\"address\": \"IP:port\", \"weight\": 1} (weight optional)");
        goto out;
    }
    int w = 1; /* 0 = out of range or not an integer: refused by the registry */
    if (weight) {
        double v = weight->valuedouble;
        w = v >= 1 && v <= 999 && (int)v == v ? (int)v : 0;
    }
    int rc = wh_targets_register(reg, group, addr->valuestring, w, "api", err, sizeof(err));
    if (rc == WH_TARGETS_OK)
        reply_target(reg, req, 201, group, addr->valuestring);
    else
        reply_targets_error(req, rc, err);
out:
    cJSON_Delete(body);
}

static void delete_target(struct wh_targets *reg, struct evhttp_request *req, const char *group,
                          const char *addr)
{
    static const char *const messages[] = {
        [-WH_TARGETS_NO_GROUP] = "no target group with this name",
        [-WH_TARGETS_NO_TARGET] = "no such target in this group",
        [-WH_TARGETS_BAD_ADDRESS] = "write the target as IP:port or [IPv6]:port (percent-encoded)",
    };
    const struct wh_target *t = wh_targets_find(reg, group, addr);
    if (t && t->state != WH_TARGET_DRAINING && strncmp(t->source, "service:", 8) == 0) {
        char msg[WH_TARGET_SOURCE_MAX + 96];
        snprintf(msg, sizeof(msg), "this target is a task of %s: scale or stop the service instead",
                 t->source);
        wh_api_reply_error(req, 409, "Conflict", msg);
        return;
    }
    int rc = wh_targets_deregister(reg, group, addr);
    if (rc == WH_TARGETS_OK)
        reply_target(reg, req, 202, group, addr);
    else
        reply_targets_error(req, rc, -rc < 4 ? messages[-rc] : "internal error");
}

static void handle(void *arg, struct evhttp_request *req, const char *path)
{
    struct wh_targets *reg = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char *seg[3] = {NULL, NULL, NULL};
    const char *rest = path + strlen(TG_PREFIX);
    int n = wh_api_split_path(rest, seg, 3);
    int targets = n >= 2 && strcmp(seg[1], "targets") == 0;
    if (n < 0 || (n >= 2 && !targets)) {
        wh_api_reply_error(req, 404, "NotFound", "no such endpoint");
    } else if (cmd == EVHTTP_REQ_GET && n <= 2) {
        reply_groups(reg, req, n ? seg[0] : NULL, n == 2);
    } else if (cmd == EVHTTP_REQ_POST && n == 2) {
        post_target(reg, req, seg[0]);
    } else if (cmd == EVHTTP_REQ_DELETE && n == 3) {
        delete_target(reg, req, seg[0], seg[2]);
    } else {
        wh_api_reply_error(req, 405, "MethodNotAllowed", "this method does not apply here");
    }
    for (int i = 0; i < 3; i++)
        free(seg[i]);
}

static void targets_metrics(void *arg, struct evbuffer *out)
{
    wh_targets_write_metrics(arg, out);
}

int wh_api_targets_register(struct wh_api *api, struct wh_targets *reg)
{
    if (wh_api_route(api, TG_PREFIX, handle, reg) < 0 ||
        wh_api_add_metrics(api, targets_metrics, reg) < 0)
        return -1;
    return 0;
}

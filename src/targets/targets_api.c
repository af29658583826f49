/* The targets' admin endpoints (../shared/API.md) and their metrics.
 *   GET    /v1/target-groups                     every group with its targets
 *   GET    /v1/target-groups/{name}              one group
 *   GET    /v1/target-groups/{name}/targets      its targets
 *   POST   /v1/target-groups/{name}/targets      {"address": "IP:port", "weight": 1} -> 201
 *   DELETE /v1/target-groups/{name}/targets/{addr}                         -> 202 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include "targets/targets-int.h"
#include "wharf/api.h"
#include "wharf/log.h"

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

/* Seconds left of t's slow start; 0 at full share. */
static double slow_start_remaining(const struct wh_target *t)
{
    const struct wh_tg_target *tt = wh_tg_of((struct wh_target *)t);
    if (tt->slow_start_begin <= 0 || tt->pub.state != WH_TARGET_HEALTHY)
        return 0;
    double left = tt->slow_start_begin + tt->group->slow_start - wh_tg_now(tt->reg);
    return left > 0 ? left : 0;
}

static cJSON *target_json(const struct wh_target *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "address", t->addr.text);
    cJSON_AddStringToObject(o, "state", wh_target_state_name(t->state));
    add_str_or_null(o, "reason", t->reason);
    add_str_or_null(o, "description", t->description);
    cJSON_AddStringToObject(o, "source", t->source);
    cJSON_AddNumberToObject(o, "in_flight", atomic_load(&t->in_flight));
    cJSON_AddNumberToObject(o, "weight", t->weight);
    cJSON_AddNumberToObject(o, "slow_start_remaining", slow_start_remaining(t));
    return o;
}

/* wh_targets_foreach visitors building [{"name", "algorithm", "targets"}]. */
struct listing {
    struct wh_targets *reg;
    cJSON *groups;
    cJSON *targets; /* of the group being visited */
};

static void list_group(void *arg, const char *group, enum wh_algorithm algo)
{
    struct listing *l = arg;
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "name", group);
    cJSON_AddStringToObject(g, "algorithm", algorithm_names[algo]);
    const struct wh_tg_group *tg = wh_tg_group_find(l->reg, group);
    cJSON_AddNumberToObject(g, "slow_start", tg ? tg->slow_start : 0);
    l->targets = cJSON_AddArrayToObject(g, "targets");
    cJSON_AddItemToArray(l->groups, g);
}

static void list_target(void *arg, const struct wh_target *t)
{
    struct listing *l = arg;
    cJSON_AddItemToArray(l->targets, target_json(t));
}

static void reply_groups(struct wh_targets *reg, struct evhttp_request *req, const char *group,
                         int targets_only)
{
    struct listing l = {.reg = reg, .groups = cJSON_CreateArray()};
    wh_targets_foreach(reg, group, list_group, list_target, &l);
    cJSON *g = group ? cJSON_DetachItemFromArray(l.groups, 0) : NULL;
    if (group && !g) {
        wh_api_reply_error(req, 404, "GroupNotFound", "no target group with this name");
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
    cJSON *o = t ? target_json(t) : cJSON_CreateObject();
    wh_api_reply_json(req, status, cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
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
    if (rc == 0)
        reply_target(reg, req, 201, group, addr->valuestring);
    else if (rc == -ENOENT)
        wh_api_reply_error(req, 404, "GroupNotFound", err);
    else if (rc == -EEXIST)
        wh_api_reply_error(req, 409, "TargetAlreadyRegistered", err);
    else if (rc == -EINVAL)
        wh_api_reply_error(req, 400, strstr(err, "weight") ? "InvalidWeight" : "InvalidAddress",
                           err);
    else
        wh_api_reply_error(req, 500, "InternalError", err);
out:
    cJSON_Delete(body);
}

static void delete_target(struct wh_targets *reg, struct evhttp_request *req, const char *group,
                          const char *addr)
{
    if (!wh_tg_group_find(reg, group)) {
        wh_api_reply_error(req, 404, "GroupNotFound", "no target group with this name");
        return;
    }
    int rc = wh_targets_deregister(reg, group, addr);
    if (rc == 0)
        reply_target(reg, req, 202, group, addr);
    else if (rc == -EINVAL)
        wh_api_reply_error(req, 400, "InvalidAddress",
                           "write the target as IP:port or [IPv6]:port (percent-encoded)");
    else
        wh_api_reply_error(req, 404, "TargetNotFound", "no such target in this group");
}

/* Split "/name[/targets[/addr]]" into decoded segments; returns how many
 * (0..3), or -1 when malformed. The segments are malloc'ed. */
static int split(const char *rest, char *seg[3])
{
    int n = 0;
    while (*rest) {
        if (*rest != '/' || n == 3)
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

static void handle(void *arg, struct evhttp_request *req, const char *path)
{
    struct wh_targets *reg = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char *seg[3] = {NULL, NULL, NULL};
    const char *rest = path + strlen(TG_PREFIX);
    int n = rest[0] && rest[0] != '/' ? -1 : split(rest, seg);
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

/* ---- metrics ---- */

static void group_metrics(struct evbuffer *out, const struct wh_tg_group *g)
{
    size_t by_state[5] = {0};
    const struct wh_tg_target *t;
    TAILQ_FOREACH(t, &g->targets, link)
    by_state[t->pub.state]++;
    for (int s = 0; s < 5; s++)
        evbuffer_add_printf(out, "wharf_targets{group=\"%s\",state=\"%s\"} %zu\n", g->name,
                            wh_target_state_name((enum wh_target_state)s), by_state[s]);
    evbuffer_add_printf(out, "wharf_target_state_changes_total{group=\"%s\"} %llu\n", g->name,
                        (unsigned long long)g->state_changes);
    evbuffer_add_printf(out, "wharf_target_fail_open_total{group=\"%s\"} %llu\n", g->name,
                        (unsigned long long)g->fail_open_total);
    evbuffer_add_printf(out, "wharf_target_fail_open_requests_total{group=\"%s\"} %llu\n", g->name,
                        atomic_load(&g->counters.fail_open_requests));
    static const char *const classes[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int c = 0; c < 6; c++)
        evbuffer_add_printf(out,
                            "wharf_target_group_responses_total{group=\"%s\",class=\"%s\"} "
                            "%llu\n",
                            g->name, classes[c], atomic_load(&g->counters.responses[c]));
    for (int r = 0; r < WH_HC_N_RESULTS; r++)
        evbuffer_add_printf(out, "wharf_health_checks_total{group=\"%s\",result=\"%s\"} %llu\n",
                            g->name, wh_hc_result_name((enum wh_hc_result)r),
                            (unsigned long long)g->checks[r]);
}

static void metrics(void *arg, struct evbuffer *out)
{
    struct wh_targets *reg = arg;
    const struct wh_tg_group *g;
    evbuffer_add_printf(out, "# TYPE wharf_targets gauge\n"
                             "# TYPE wharf_target_state_changes_total counter\n"
                             "# TYPE wharf_target_fail_open_total counter\n"
                             "# TYPE wharf_target_fail_open_requests_total counter\n"
                             "# TYPE wharf_target_group_responses_total counter\n"
                             "# TYPE wharf_health_checks_total counter\n");
    TAILQ_FOREACH(g, &reg->groups, link)
    if (g->in_config || g->n_targets)
        group_metrics(out, g);
    evbuffer_add_printf(out, "# TYPE wharf_health_check_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < WH_HC_DURATION_BUCKETS; b++) {
        cum += reg->hc_buckets[b];
        evbuffer_add_printf(out, "wharf_health_check_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            wh_hc_duration_bounds[b], (unsigned long long)cum);
    }
    evbuffer_add_printf(out,
                        "wharf_health_check_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "wharf_health_check_duration_seconds_sum %.6f\n"
                        "wharf_health_check_duration_seconds_count %llu\n",
                        (unsigned long long)reg->hc_count, reg->hc_sum,
                        (unsigned long long)reg->hc_count);
}

int wh_targets_api_register(struct wh_targets *reg, struct wh_api *api)
{
    if (wh_api_route(api, TG_PREFIX, handle, reg) < 0 || wh_api_add_metrics(api, metrics, reg) < 0)
        return -1;
    return 0;
}

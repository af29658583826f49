/* The controller's read-only admin endpoints (../shared/API.md), built on
 * its views (include/wharf/controller.h) and the host inventory's queries
 * (include/wharf/hosts.h):
 *   GET /v1/services                   every service, without its events
 *   GET /v1/services/{name}            one service with its last 100 events
 *   GET /v1/services/{name}/tasks      its tasks
 *   GET /v1/services/{name}/events     its events, newest first (no ?follow yet: 400)
 *   GET /v1/hosts[/{id}]               the hosts (one host)
 * and on /metrics wharf_hosts{state} and wharf_service_tasks{service,state}.
 * The writes API.md lists on these paths are not built yet: 405.
 *
 * Until a deployment exists as its own object (rolling deployments), a
 * service has one PRIMARY deployment made of its revision and counts:
 * COMPLETED when the service is steady, else IN_PROGRESS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api/api-int.h"
#include "wharf/api.h"
#include "wharf/controller.h"
#include "wharf/hosts.h"
#include "wharf/runtime.h"

#define SVC_PREFIX "/v1/services"
#define HOSTS_PREFIX "/v1/hosts"
#define SEG_MAX 4

/* ---- JSON pieces ---- */

static void add_str_or_null(cJSON *o, const char *key, const char *v)
{
    if (v && v[0])
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

/* RFC 3339 in UTC with milliseconds; null when t is 0 (unknown). */
static void add_time(cJSON *o, const char *key, double t)
{
    if (t <= 0) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    time_t secs = (time_t)t;
    int ms = (int)((t - (double)secs) * 1000);
    struct tm tm;
    char text[40];
    gmtime_r(&secs, &tm);
    size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + n, sizeof(text) - n, ".%03dZ", ms > 999 ? 999 : ms);
    cJSON_AddStringToObject(o, key, text);
}

static cJSON *kv_object(const struct wh_rt_kv *kv, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++)
        cJSON_AddStringToObject(o, kv[i].key, kv[i].value);
    return o;
}

/* ---- services ---- */

/* The task definition and the placement as the configuration writes them. */
static cJSON *task_def_json(const struct wh_ctl_service_info *s)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "image", s->image);
    cJSON_AddNumberToObject(t, "container_port", s->container_port);
    cJSON *cmd = cJSON_AddArrayToObject(t, "command");
    for (size_t i = 0; i < s->n_command; i++)
        cJSON_AddItemToArray(cmd, cJSON_CreateString(s->command[i]));
    cJSON_AddItemToObject(t, "env", kv_object(s->env, s->n_env));
    cJSON_AddNumberToObject(t, "cpu", s->cpu);
    cJSON_AddNumberToObject(t, "memory", s->memory);
    cJSON_AddStringToObject(t, "pull_policy", s->pull_policy);
    if (s->log_driver) {
        cJSON *log = cJSON_AddObjectToObject(t, "log");
        cJSON_AddStringToObject(log, "driver", s->log_driver);
        cJSON_AddItemToObject(log, "options", kv_object(s->log_options, s->n_log_options));
    } else {
        cJSON_AddNullToObject(t, "log");
    }
    cJSON_AddNumberToObject(t, "stop_timeout", s->stop_timeout);
    return t;
}

static cJSON *placement_json(const struct wh_ctl_service_info *s)
{
    cJSON *p = cJSON_CreateObject();
    cJSON *st = cJSON_AddArrayToObject(p, "strategy");
    for (size_t i = 0; i < s->n_strategies; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", s->strategies[i].type);
        if (s->strategies[i].field)
            cJSON_AddStringToObject(o, "field", s->strategies[i].field);
        cJSON_AddItemToArray(st, o);
    }
    cJSON *cs = cJSON_AddArrayToObject(p, "constraints");
    for (size_t i = 0; i < s->n_constraints; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", s->constraints[i].type);
        if (s->constraints[i].field)
            cJSON_AddStringToObject(o, "expression", s->constraints[i].field);
        cJSON_AddItemToArray(cs, o);
    }
    return p;
}

/* wh_controller_foreach_event visitor: the events array (may be NULL) and
 * the newest event's time. */
struct event_list {
    cJSON *events;
    double newest;
};

static void list_event(void *arg, unsigned long id, double time, const char *message)
{
    struct event_list *l = arg;
    if (time > l->newest)
        l->newest = time;
    if (!l->events)
        return;
    cJSON *e = cJSON_CreateObject();
    char text[24];
    snprintf(text, sizeof(text), "%lu", id);
    cJSON_AddStringToObject(e, "id", text);
    add_time(e, "created_at", time);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddItemToArray(l->events, e);
}

/* The one PRIMARY deployment; it was last updated by the newest event. */
static cJSON *deployment_json(const struct wh_ctl_service_info *s, double updated_at)
{
    cJSON *d = cJSON_CreateObject();
    char id[64], reason[128];
    snprintf(id, sizeof(id), "d-%s-%d", s->taskdef, s->revision);
    snprintf(reason, sizeof(reason), "deployment %s %s.", id,
             s->steady ? "completed" : "in progress");
    cJSON_AddStringToObject(d, "id", id);
    cJSON_AddStringToObject(d, "status", "PRIMARY");
    cJSON_AddStringToObject(d, "rollout_state", s->steady ? "COMPLETED" : "IN_PROGRESS");
    cJSON_AddStringToObject(d, "rollout_state_reason", reason);
    cJSON_AddNumberToObject(d, "revision", s->revision);
    cJSON_AddNumberToObject(d, "desired_count", s->desired_count);
    cJSON_AddNumberToObject(d, "pending_count", s->pending_count);
    cJSON_AddNumberToObject(d, "running_count", s->running_count);
    cJSON_AddNumberToObject(d, "healthy_count", s->healthy_count);
    cJSON_AddNumberToObject(d, "failed_tasks", s->failed_tasks);
    add_time(d, "created_at", s->revision_at);
    add_time(d, "updated_at", updated_at > s->revision_at ? updated_at : s->revision_at);
    return d;
}

/* wh_controller_foreach_service visitor building service objects. */
struct service_list {
    struct wh_controller *ctl;
    cJSON *services;
    int with_events;
};

static void list_service(void *arg, const struct wh_ctl_service_info *s)
{
    struct service_list *l = arg;
    struct event_list ev = {.events = l->with_events ? cJSON_CreateArray() : NULL};
    wh_controller_foreach_event(l->ctl, s->name, list_event, &ev);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    add_str_or_null(o, "target_group", s->target_group);
    cJSON_AddNumberToObject(o, "revision", s->revision);
    cJSON_AddItemToObject(o, "task", task_def_json(s));
    cJSON_AddNumberToObject(o, "desired_count", s->desired_count);
    cJSON_AddNumberToObject(o, "running_count", s->running_count);
    cJSON_AddNumberToObject(o, "pending_count", s->pending_count);
    cJSON_AddNumberToObject(o, "healthy_count", s->healthy_count);
    cJSON *dep = cJSON_AddObjectToObject(o, "deployment");
    cJSON_AddNumberToObject(dep, "minimum_healthy_percent", s->minimum_healthy_percent);
    cJSON_AddNumberToObject(dep, "maximum_percent", s->maximum_percent);
    cJSON_AddItemToObject(o, "placement", placement_json(s));
    cJSON_AddNumberToObject(o, "health_check_grace_period", s->health_check_grace_period);
    cJSON *deps = cJSON_AddArrayToObject(o, "deployments");
    cJSON_AddItemToArray(deps, deployment_json(s, ev.newest));
    if (ev.events)
        cJSON_AddItemToObject(o, "events", ev.events);
    cJSON_AddItemToArray(l->services, o);
}

static void task_to_array(void *arg, const struct wh_ctl_task_info *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "service", t->service);
    cJSON_AddStringToObject(o, "host", t->host);
    cJSON_AddNumberToObject(o, "revision", t->revision);
    cJSON_AddStringToObject(o, "state", t->state);
    if (t->host_port > 0)
        cJSON_AddNumberToObject(o, "host_port", t->host_port);
    else
        cJSON_AddNullToObject(o, "host_port");
    add_str_or_null(o, "target", t->target);
    cJSON_AddStringToObject(o, "health", t->health);
    add_time(o, "started_at", t->started_at);
    add_str_or_null(o, "stopped_reason", t->stopped_reason);
    cJSON_AddItemToArray(arg, o);
}

static void reply_services(struct wh_controller *ctl, struct evhttp_request *req, const char *name)
{
    struct service_list l = {.ctl = ctl, .services = cJSON_CreateArray(), .with_events = !!name};
    if (ctl)
        wh_controller_foreach_service(ctl, name, list_service, &l);
    cJSON *one = name ? cJSON_DetachItemFromArray(l.services, 0) : NULL;
    if (name && !one)
        wh_api_reply_error(req, 404, "ServiceNotFound", "no service with this name");
    else
        wh_api_reply_json(req, 200, cJSON_PrintUnformatted(one ? one : l.services));
    cJSON_Delete(one);
    cJSON_Delete(l.services);
}

static int service_exists(struct wh_controller *ctl, const char *name)
{
    return ctl && wh_controller_foreach_event(ctl, name, list_event,
                                              &(struct event_list){.events = NULL}) == 0;
}

static void reply_tasks(struct wh_controller *ctl, struct evhttp_request *req, const char *name)
{
    if (!service_exists(ctl, name)) {
        wh_api_reply_error(req, 404, "ServiceNotFound", "no service with this name");
        return;
    }
    cJSON *tasks = cJSON_CreateArray();
    wh_controller_foreach_task(ctl, name, task_to_array, tasks);
    wh_api_reply_json(req, 200, cJSON_PrintUnformatted(tasks));
    cJSON_Delete(tasks);
}

/* ?follow=1 asks for a stream (SSE), which is not built yet: refused, so a
 * client waiting for one is told rather than handed a list. */
static int wants_follow(struct evhttp_request *req)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (!query || evhttp_parse_query_str(query, &q) < 0)
        return 0;
    const char *v = evhttp_find_header(&q, "follow");
    int follow = v && strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
    evhttp_clear_headers(&q);
    return follow;
}

static void reply_events(struct wh_controller *ctl, struct evhttp_request *req, const char *name)
{
    if (wants_follow(req)) {
        wh_api_reply_error(req, 400, "InvalidParameter",
                           "follow: streaming events is not built yet; leave follow out to get "
                           "the list");
        return;
    }
    struct event_list l = {.events = cJSON_CreateArray()};
    if (!ctl || wh_controller_foreach_event(ctl, name, list_event, &l) < 0)
        wh_api_reply_error(req, 404, "ServiceNotFound", "no service with this name");
    else
        wh_api_reply_json(req, 200, cJSON_PrintUnformatted(l.events));
    cJSON_Delete(l.events);
}

static int seg_is(char *const seg[SEG_MAX], int i, const char *word)
{
    return seg[i] && strcmp(seg[i], word) == 0;
}

static void reply_not_built(struct evhttp_request *req)
{
    wh_api_reply_error(req, 405, "MethodNotAllowed",
                       "this method does not apply here (only the GET views are built so far)");
}

static void handle_services(void *arg, struct evhttp_request *req, const char *path)
{
    struct wh_controller *ctl = arg;
    int get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
    char *seg[SEG_MAX] = {NULL};
    int n = wh_api_split_path(path + strlen(SVC_PREFIX), seg, SEG_MAX);
    /* what API.md documents on this path, and whether GET is one of it */
    int known = n == 0 || n == 1 ||
                (n == 2 && (seg_is(seg, 1, "tasks") || seg_is(seg, 1, "events") ||
                            seg_is(seg, 1, "rollback"))) ||
                (n == 4 && seg_is(seg, 1, "tasks") && seg_is(seg, 3, "stop"));
    int readable = n == 0 || n == 1 || (n == 2 && !seg_is(seg, 1, "rollback"));
    if (!known)
        wh_api_reply_error(req, 404, "NotFound", "no such endpoint");
    else if (!get || !readable)
        reply_not_built(req);
    else if (n <= 1)
        reply_services(ctl, req, n ? seg[0] : NULL);
    else if (seg_is(seg, 1, "tasks"))
        reply_tasks(ctl, req, seg[0]);
    else
        reply_events(ctl, req, seg[0]);
    for (int i = 0; i < SEG_MAX; i++)
        free(seg[i]);
}

/* ---- hosts ---- */

/* REGISTERING (no answer yet since the host was added) is shown as it is:
 * ECS's word for a container instance not yet in service. */
static cJSON *host_json(const struct wh_host *h)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", wh_host_id(h));
    cJSON_AddStringToObject(o, "state", wh_host_state_name(wh_host_state(h)));
    cJSON_AddStringToObject(o, "source", wh_host_source_name(wh_host_source(h)));
    add_str_or_null(o, "address", wh_host_address(h));
    cJSON_AddStringToObject(o, "docker", wh_host_docker(h));
    size_t n_attrs = 0;
    const struct wh_host_attr *attrs = wh_host_attributes(h, &n_attrs);
    cJSON *a = cJSON_AddObjectToObject(o, "attributes");
    for (size_t i = 0; i < n_attrs; i++)
        cJSON_AddStringToObject(a, attrs[i].key, attrs[i].value);
    cJSON *cpu = cJSON_AddObjectToObject(o, "cpu");
    cJSON_AddNumberToObject(cpu, "total", (double)wh_host_cpu_total(h));
    cJSON_AddNumberToObject(cpu, "reserved", (double)wh_host_cpu_reserved(h));
    cJSON *mem = cJSON_AddObjectToObject(o, "memory"); /* MiB */
    cJSON_AddNumberToObject(mem, "total", (double)wh_host_mem_total(h));
    cJSON_AddNumberToObject(mem, "reserved", (double)wh_host_mem_reserved(h));
    cJSON_AddNumberToObject(o, "running_tasks", wh_host_running_tasks(h));
    add_str_or_null(o, "last_error", wh_host_last_error(h));
    return o;
}

static void host_to_array(void *arg, struct wh_host *h)
{
    cJSON_AddItemToArray(arg, host_json(h));
}

static void handle_hosts(void *arg, struct evhttp_request *req, const char *path)
{
    struct wh_hosts *hosts = arg;
    int get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
    char *seg[SEG_MAX] = {NULL};
    int n = wh_api_split_path(path + strlen(HOSTS_PREFIX), seg, SEG_MAX);
    int writes = n == 2 && (seg_is(seg, 1, "drain") || seg_is(seg, 1, "activate"));
    if (n < 0 || n > 2 || (n == 2 && !writes)) {
        wh_api_reply_error(req, 404, "NotFound", "no such endpoint");
    } else if (!get || writes) {
        reply_not_built(req);
    } else if (n == 0) {
        cJSON *list = cJSON_CreateArray();
        if (hosts)
            wh_hosts_foreach(hosts, host_to_array, list);
        wh_api_reply_json(req, 200, cJSON_PrintUnformatted(list));
        cJSON_Delete(list);
    } else {
        const struct wh_host *h = hosts ? wh_hosts_find(hosts, seg[0]) : NULL;
        cJSON *o = h ? host_json(h) : NULL;
        if (o)
            wh_api_reply_json(req, 200, cJSON_PrintUnformatted(o));
        else
            wh_api_reply_error(req, 404, "HostNotFound", "no host with this id");
        cJSON_Delete(o);
    }
    for (int i = 0; i < SEG_MAX; i++)
        free(seg[i]);
}

/* ---- metrics ---- */

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label_escape(const char *v, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *v && o + 3 < outlen; v++) {
        if (*v == '\\' || *v == '"' || *v == '\n') {
            out[o++] = '\\';
            out[o++] = *v == '\n' ? 'n' : *v;
        } else {
            out[o++] = *v;
        }
    }
    out[o] = '\0';
}

static void count_host(void *arg, struct wh_host *h)
{
    size_t *by_state = arg;
    by_state[wh_host_state(h)]++;
}

static void hosts_metrics(void *arg, struct evbuffer *out)
{
    struct wh_hosts *hosts = arg;
    size_t by_state[WH_HOST_UNREACHABLE + 1] = {0};
    if (hosts)
        wh_hosts_foreach(hosts, count_host, by_state);
    evbuffer_add_printf(out, "# HELP wharf_hosts Hosts of the inventory by state.\n"
                             "# TYPE wharf_hosts gauge\n");
    for (int s = WH_HOST_REGISTERING; s <= WH_HOST_UNREACHABLE; s++)
        evbuffer_add_printf(out, "wharf_hosts{state=\"%s\"} %zu\n",
                            wh_host_state_name((enum wh_host_state)s), by_state[s]);
}

static void service_metrics(void *arg, const struct wh_ctl_service_info *s)
{
    struct evbuffer *out = arg;
    char name[256];
    label_escape(s->name, name, sizeof(name));
    const struct {
        const char *state;
        int n;
    } counts[] = {{"desired", s->desired_count},
                  {"running", s->running_count},
                  {"pending", s->pending_count},
                  {"healthy", s->healthy_count}};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        evbuffer_add_printf(out, "wharf_service_tasks{service=\"%s\",state=\"%s\"} %d\n", name,
                            counts[i].state, counts[i].n);
}

static void services_metrics(void *arg, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP wharf_service_tasks Tasks of each service: desired, and "
                             "running, pending and healthy as the last reconcile counted them.\n"
                             "# TYPE wharf_service_tasks gauge\n");
    if (arg)
        wh_controller_foreach_service(arg, NULL, service_metrics, out);
}

int wh_api_controller_register(struct wh_api *api, struct wh_controller *ctl,
                               struct wh_hosts *hosts)
{
    if (wh_api_route(api, SVC_PREFIX, handle_services, ctl) < 0 ||
        wh_api_route(api, HOSTS_PREFIX, handle_hosts, hosts) < 0 ||
        wh_api_add_metrics(api, hosts_metrics, hosts) < 0 ||
        wh_api_add_metrics(api, services_metrics, ctl) < 0)
        return -1;
    return 0;
}

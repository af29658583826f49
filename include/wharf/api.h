/* wharf admin API: JSON over HTTP on the admin listener (libevent's evhttp,
 * loopback only), on the control thread. The top floor beside main.c: it
 * calls the read and write functions of the modules below it (targets/,
 * proxy/, and the controller and store to come); none of them includes this
 * header or evhttp. admin.c is the listener (token, routing, metrics
 * registry); api_<module>.c holds each module's endpoints. */
#ifndef WHARF_API_H
#define WHARF_API_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct evhttp_request;
struct wh_cfg_admin;
struct wh_api;
struct wh_targets;
struct wh_controller;
struct wh_hosts;

/* New admin listener per cfg (borrowed for the call). Reads the token file.
 * Returns NULL with err set. */
struct wh_api *wh_api_new(struct event_base *base, const struct wh_cfg_admin *cfg, char *err,
                          size_t errlen);
void wh_api_free(struct wh_api *api);

/* Append Prometheus text lines (every name prefixed wharf_) to out. */
typedef void (*wh_api_metrics_fn)(void *arg, struct evbuffer *out);
int wh_api_add_metrics(struct wh_api *api, wh_api_metrics_fn fn, void *arg);

/* A handler for requests whose path starts with prefix (longest prefix
 * wins); the token has been checked. It must answer req (wh_api_reply_*). */
typedef void (*wh_api_handler_fn)(void *arg, struct evhttp_request *req, const char *path);
int wh_api_route(struct wh_api *api, const char *prefix, wh_api_handler_fn fn, void *arg);

/* Answer with a JSON body (takes ownership of json, a cJSON-printed string). */
void wh_api_reply_json(struct evhttp_request *req, int status, char *json);
/* Answer {"error": {"code": code, "message": message}}. */
void wh_api_reply_error(struct evhttp_request *req, int status, const char *code,
                        const char *message);

/* The target groups' endpoints and metrics (api_targets.c):
 *   GET    /v1/target-groups[/{name}[/targets]]
 *   POST   /v1/target-groups/{name}/targets         {"address", "weight"}
 *   DELETE /v1/target-groups/{name}/targets/{addr}
 * and wh_targets_write_metrics on /metrics. reg is borrowed and must
 * outlive api (free api first). Returns 0 or -1. */
int wh_api_targets_register(struct wh_api *api, struct wh_targets *reg);

/* The controller's read-only views and the fleet's metrics (api_controller.c):
 *   GET /v1/services[/{name}[/tasks|/events]]   404 ServiceNotFound
 *   GET /v1/hosts[/{id}]                        404 HostNotFound
 * (the writes API.md lists on these paths answer 405 until they are built;
 * ?follow=1 on events answers 400) and on /metrics wharf_hosts{state} and
 * wharf_service_tasks{service,state}. ctl and hosts are borrowed and must
 * outlive api (free api first); either may be NULL: its lists are empty.
 * Returns 0 or -1. */
int wh_api_controller_register(struct wh_api *api, struct wh_controller *ctl,
                               struct wh_hosts *hosts);

#endif

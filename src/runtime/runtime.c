/* The runtime interface: dispatch through the ops table, plus the helpers
 * every implementation and caller shares (error kinds, pull policies). It
 * knows no implementation (docker.c fills the table) and no configuration:
 * callers build struct wh_rt_host_params themselves. */
#include "wharf/runtime.h"

#include <string.h>

const char *wh_rt_errkind_name(enum wh_rt_errkind kind)
{
    static const char *const names[] = {
        [WH_RT_OK] = "ok",
        [WH_RT_ERR_CONNECT] = "connect",
        [WH_RT_ERR_TLS] = "tls",
        [WH_RT_ERR_TIMEOUT] = "timeout",
        [WH_RT_ERR_TRANSPORT] = "transport",
        [WH_RT_ERR_HTTP] = "http",
        [WH_RT_ERR_PROTOCOL] = "protocol",
        [WH_RT_ERR_PULL] = "pull",
        [WH_RT_ERR_IMAGE_MISSING] = "image_missing",
        [WH_RT_ERR_INVALID] = "invalid",
        [WH_RT_ERR_INTERNAL] = "internal",
    };
    if ((unsigned)kind >= sizeof(names) / sizeof(names[0]) || !names[kind])
        return "unknown";
    return names[kind];
}

int wh_rt_error_unreachable(const struct wh_rt_error *err)
{
    switch (err->kind) {
    case WH_RT_ERR_CONNECT:
    case WH_RT_ERR_TLS:
    case WH_RT_ERR_TIMEOUT:
    case WH_RT_ERR_TRANSPORT:
        return 1;
    default:
        return 0;
    }
}

int wh_rt_error_not_found(const struct wh_rt_error *err)
{
    return err->kind == WH_RT_ERR_HTTP && err->http_status == 404;
}

int wh_rt_pull_policy_parse(const char *text, enum wh_rt_pull_policy *out)
{
    if (!text)
        return -1;
    if (strcmp(text, "if-not-present") == 0)
        *out = WH_RT_PULL_IF_NOT_PRESENT;
    else if (strcmp(text, "always") == 0)
        *out = WH_RT_PULL_ALWAYS;
    else if (strcmp(text, "never") == 0)
        *out = WH_RT_PULL_NEVER;
    else
        return -1;
    return 0;
}

void wh_runtime_free(struct wh_runtime *rt)
{
    if (rt)
        rt->ops->free(rt);
}

int wh_rt_ping(struct wh_runtime *rt, wh_rt_done_fn cb, void *arg)
{
    return rt->ops->ping(rt, cb, arg);
}

int wh_rt_info(struct wh_runtime *rt, wh_rt_info_fn cb, void *arg)
{
    return rt->ops->info(rt, cb, arg);
}

int wh_rt_image_inspect(struct wh_runtime *rt, const char *image, wh_rt_image_fn cb, void *arg)
{
    return rt->ops->image_inspect(rt, image, cb, arg);
}

int wh_rt_image_pull(struct wh_runtime *rt, const char *image, const struct wh_rt_auth *auth,
                     enum wh_rt_pull_policy policy, wh_rt_done_fn cb, void *arg)
{
    return rt->ops->image_pull(rt, image, auth, policy, cb, arg);
}

int wh_rt_create(struct wh_runtime *rt, const struct wh_rt_create_spec *spec, wh_rt_create_fn cb,
                 void *arg)
{
    return rt->ops->create(rt, spec, cb, arg);
}

int wh_rt_start(struct wh_runtime *rt, const char *id, wh_rt_done_fn cb, void *arg)
{
    return rt->ops->start(rt, id, cb, arg);
}

int wh_rt_stop(struct wh_runtime *rt, const char *id, int timeout, wh_rt_done_fn cb, void *arg)
{
    return rt->ops->stop(rt, id, timeout, cb, arg);
}

int wh_rt_kill(struct wh_runtime *rt, const char *id, const char *signal, wh_rt_done_fn cb,
               void *arg)
{
    return rt->ops->kill(rt, id, signal, cb, arg);
}

int wh_rt_remove(struct wh_runtime *rt, const char *id, int force, wh_rt_done_fn cb, void *arg)
{
    return rt->ops->remove(rt, id, force, cb, arg);
}

int wh_rt_inspect(struct wh_runtime *rt, const char *id, wh_rt_inspect_fn cb, void *arg)
{
    return rt->ops->inspect(rt, id, cb, arg);
}

int wh_rt_list(struct wh_runtime *rt, const char *const *labels, size_t n_labels, wh_rt_list_fn cb,
               void *arg)
{
    return rt->ops->list(rt, labels, n_labels, cb, arg);
}

struct wh_rt_watch *wh_rt_events_start(struct wh_runtime *rt,
                                       const struct wh_rt_events_params *params, wh_rt_event_fn cb,
                                       void *arg)
{
    return rt->ops->events_start(rt, params, cb, arg);
}

void wh_rt_events_stop(struct wh_runtime *rt, struct wh_rt_watch *watch)
{
    if (watch)
        rt->ops->events_stop(watch);
}

/* hosts: the set and its host objects — add, remove, forget, queries,
 * setters, and state changes told to the subscriber. The ping rounds that
 * drive reachability live in hosts_probe.c.
 *
 * A forgotten host is unlinked at once but freed by the reaper event: it
 * may be forgotten from its own subscriber callback, which runs inside a
 * probe callback of its runtime, and neither may go from under them. */
#include "hosts/hosts-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "wharf/obj.h"
#include "wharf/runtime.h"

#define HOSTS_MOD "hosts"

/* ---- names ---- */

const char *wh_host_state_name(enum wh_host_state state)
{
    switch (state) {
    case WH_HOST_REGISTERING:
        return "REGISTERING";
    case WH_HOST_ACTIVE:
        return "ACTIVE";
    case WH_HOST_DRAINING:
        return "DRAINING";
    case WH_HOST_UNREACHABLE:
        return "UNREACHABLE";
    }
    return "?";
}

const char *wh_host_source_name(enum wh_host_source source)
{
    return source == WH_HOST_SOURCE_EC2 ? "ec2" : "config";
}

/* ---- state changes ---- */

enum wh_host_state wh_hosts_up_state(const struct wh_host *h)
{
    return h->draining ? WH_HOST_DRAINING : WH_HOST_ACTIVE;
}

static void hosts_tell(struct wh_host *h, enum wh_host_state old, const char *reason)
{
    struct wh_hosts *hs = h->set;
    if (hs->notify)
        hs->notify(hs->notify_arg, h, old, h->state, reason);
}

void wh_hosts_change_state(struct wh_host *h, enum wh_host_state new_state, const char *reason)
{
    enum wh_host_state old = h->state;
    if (old == new_state || h->dead)
        return;
    h->state = new_state;
    wh_log(new_state == WH_HOST_UNREACHABLE ? WH_LOG_WARN : WH_LOG_INFO, HOSTS_MOD,
           "host %s: %s -> %s: %s", h->id, wh_host_state_name(old), wh_host_state_name(new_state),
           reason);
    hosts_tell(h, old, reason);
}

/* ---- the runtimes ---- */

static struct wh_runtime *hosts_docker_runtime(void *arg, const struct wh_rt_host_params *p,
                                               int probe, char *err, size_t errlen)
{
    struct wh_hosts *hs;
    WH_CAST_OBJ(hs, arg, WH_HOSTS_MAGIC);
    return wh_docker_runtime_new(hs->loop, p, err, errlen);
}

/* The executor's runtime takes the host's limits. The probe's calls time
 * out with the ping interval: a call our timer has counted as missed then
 * holds no connection for call_timeout, and its few slots let a round's
 * ping start beside the previous round's stuck one. */
static int hosts_make_runtimes(struct wh_host *h, const struct wh_host_params *p, char *err,
                               size_t errlen)
{
    struct wh_hosts *hs = h->set;
    struct wh_rt_host_params rp = {
        .id = h->id,
        .endpoint = h->docker,
        .tls_ca = p->tls_ca,
        .tls_cert = p->tls_cert,
        .tls_key = p->tls_key,
        .max_concurrent_calls = p->max_concurrent_calls,
        .call_timeout = p->call_timeout,
    };
    h->rt = hs->factory(hs->factory_arg, &rp, 0, err, errlen);
    if (!h->rt)
        return -1;
    rp.max_concurrent_calls = 4;
    rp.call_timeout = h->ping_interval;
    rp.connect_timeout = h->ping_interval;
    h->probe = hs->factory(hs->factory_arg, &rp, 1, err, errlen);
    return h->probe ? 0 : -1;
}

/* ---- making and freeing hosts ---- */

/* The address part of "tcp://addr:port" or "tcp://[v6]:port", or NULL. */
static char *hosts_tcp_address(const char *url)
{
    if (strncmp(url, "tcp://", 6) != 0)
        return NULL;
    const char *a = url + 6, *end;
    if (*a == '[') {
        end = strchr(++a, ']');
    } else {
        end = strchr(a, ':');
        if (!end)
            end = a + strcspn(a, "/");
    }
    if (!end || end == a)
        return NULL;
    return strndup(a, (size_t)(end - a));
}

static int hosts_copy_attrs(struct wh_host *h, const struct wh_host_params *p)
{
    if (!p->n_attributes)
        return 0;
    h->attrs = calloc(p->n_attributes, sizeof(*h->attrs));
    if (!h->attrs)
        return -1;
    for (size_t i = 0; i < p->n_attributes; i++, h->n_attrs++) {
        char *k = strdup(p->attributes[i].key), *v = strdup(p->attributes[i].value);
        if (!k || !v) {
            free(k);
            free(v);
            return -1;
        }
        h->attrs[i] = (struct wh_host_attr){k, v};
    }
    return 0;
}

static void host_destroy(struct wh_host *h)
{
    /* Runtimes first: their pending calls are dropped without callbacks,
     * then the records of those calls can go. */
    wh_runtime_free(h->probe);
    wh_runtime_free(h->rt);
    wh_hosts_probe_fini(h);
    for (size_t i = 0; i < h->n_attrs; i++) {
        free((char *)h->attrs[i].key);
        free((char *)h->attrs[i].value);
    }
    free(h->attrs);
    free(h->id);
    free(h->docker);
    free(h->address);
    WH_FREE_OBJ(h);
}

static int hosts_check_params(const struct wh_hosts *hs, const struct wh_host_params *p, char *err,
                              size_t errlen)
{
    const char *id = p->id && p->id[0] ? p->id : NULL;
    struct wh_host *other = id ? wh_hosts_find(hs, id) : NULL;
    if (!id)
        snprintf(err, errlen, "host without an id: give every host a unique id");
    else if (other)
        snprintf(err, errlen, "host %s: already in the inventory%s", id,
                 other->removing ? " (being removed: add it again once it is gone)" : "");
    else if (!p->docker)
        snprintf(err, errlen, "host %s: no docker endpoint", id);
    else if (!p->address && strncmp(p->docker, "tcp://", 6) != 0)
        snprintf(err, errlen, "host %s: an address is needed for %s (where its ports are reached)",
                 id, p->docker);
    else if (p->ping_interval < 0 || p->unreachable_after < 0)
        snprintf(err, errlen, "host %s: negative ping_interval or unreachable_after", id);
    else
        return 0;
    return -1;
}

static struct wh_host *host_new(struct wh_hosts *hs, const struct wh_host_params *p)
{
    struct wh_host *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    WH_INIT_OBJ(h, WH_HOST_MAGIC);
    h->set = hs;
    TAILQ_INIT(&h->calls);
    h->source = p->source;
    h->draining = !!p->draining;
    h->ping_interval = p->ping_interval > 0 ? p->ping_interval : 2;
    h->unreachable_after = p->unreachable_after > 0 ? p->unreachable_after : 3;
    h->id = strdup(p->id);
    h->docker = strdup(p->docker);
    h->address = p->address ? strdup(p->address) : hosts_tcp_address(p->docker);
    if (!h->id || !h->docker || !h->address || hosts_copy_attrs(h, p) != 0) {
        host_destroy(h);
        return NULL;
    }
    return h;
}

struct wh_host *wh_hosts_add(struct wh_hosts *hs, const struct wh_host_params *p, char *err,
                             size_t errlen)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    if (hosts_check_params(hs, p, err, errlen) != 0)
        return NULL;
    struct wh_host *h = host_new(hs, p);
    if (!h) {
        snprintf(err, errlen, "host %s: out of memory (or a bad address in %s)", p->id, p->docker);
        return NULL;
    }
    if (hosts_make_runtimes(h, p, err, errlen) != 0)
        goto fail;
    if (wh_hosts_probe_start(h) != 0) {
        snprintf(err, errlen, "host %s: out of memory", h->id);
        goto fail;
    }
    TAILQ_INSERT_TAIL(&hs->hosts, h, link);
    hs->n_hosts++;
    wh_log_info(HOSTS_MOD, "host %s: added (%s, address %s, ping every %g s)%s", h->id, h->docker,
                h->address, h->ping_interval, h->draining ? ", draining" : "");
    return h;
fail:
    host_destroy(h);
    return NULL;
}

int wh_hosts_remove(struct wh_hosts *hs, const char *id)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    struct wh_host *h = wh_hosts_find(hs, id);
    if (!h)
        return -1;
    if (h->removing)
        return 0;
    h->removing = 1;
    h->draining = 1;
    wh_log_info(HOSTS_MOD, "host %s: removal started: draining it", h->id);
    enum wh_host_state old = h->state;
    if (old == WH_HOST_ACTIVE)
        wh_hosts_change_state(h, WH_HOST_DRAINING, "removed from the inventory");
    else
        hosts_tell(h, old, "removed from the inventory");
    return 0;
}

static void hosts_reap(evutil_socket_t fd, short what, void *arg)
{
    struct wh_hosts *hs;
    WH_CAST_OBJ(hs, arg, WH_HOSTS_MAGIC);
    struct wh_host *h;
    while ((h = TAILQ_FIRST(&hs->dead))) {
        TAILQ_REMOVE(&hs->dead, h, link);
        host_destroy(h);
    }
}

void wh_hosts_forget(struct wh_hosts *hs, struct wh_host *h)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    if (h->dead)
        return;
    h->dead = 1;
    if (h->tick)
        event_del(h->tick);
    TAILQ_REMOVE(&hs->hosts, h, link);
    hs->n_hosts--;
    TAILQ_INSERT_TAIL(&hs->dead, h, link);
    event_active(hs->reaper, EV_TIMEOUT, 1);
    wh_log_info(HOSTS_MOD, "host %s: forgotten", h->id);
}

/* ---- the set ---- */

struct wh_hosts *wh_hosts_new(struct event_base *base, struct wh_curl_loop *loop)
{
    struct wh_hosts *hs = calloc(1, sizeof(*hs));
    if (!hs)
        return NULL;
    WH_INIT_OBJ(hs, WH_HOSTS_MAGIC);
    hs->base = base;
    hs->loop = loop;
    TAILQ_INIT(&hs->hosts);
    TAILQ_INIT(&hs->dead);
    hs->factory = hosts_docker_runtime;
    hs->factory_arg = hs;
    hs->reaper = event_new(base, -1, 0, hosts_reap, hs);
    if (!hs->reaper) {
        WH_FREE_OBJ(hs);
        return NULL;
    }
    return hs;
}

void wh_hosts_free(struct wh_hosts *hs)
{
    if (!hs)
        return;
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    struct wh_host *h;
    while ((h = TAILQ_FIRST(&hs->hosts))) {
        TAILQ_REMOVE(&hs->hosts, h, link);
        host_destroy(h);
    }
    hosts_reap(-1, 0, hs);
    event_free(hs->reaper);
    WH_FREE_OBJ(hs);
}

void wh_hosts_subscribe(struct wh_hosts *hs, wh_hosts_state_fn fn, void *arg)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    hs->notify = fn;
    hs->notify_arg = arg;
}

void wh_hosts_set_runtime_factory(struct wh_hosts *hs, wh_hosts_runtime_fn fn, void *arg)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    hs->factory = fn ? fn : hosts_docker_runtime;
    hs->factory_arg = fn ? arg : hs;
}

struct wh_host *wh_hosts_find(const struct wh_hosts *hs, const char *id)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    struct wh_host *h;
    TAILQ_FOREACH(h, &hs->hosts, link)
    {
        if (strcmp(h->id, id) == 0)
            return h;
    }
    return NULL;
}

size_t wh_hosts_count(const struct wh_hosts *hs)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    return hs->n_hosts;
}

void wh_hosts_foreach(const struct wh_hosts *hs, void (*fn)(void *arg, struct wh_host *host),
                      void *arg)
{
    WH_CHECK_OBJ(hs, WH_HOSTS_MAGIC);
    struct wh_host *h, *next;
    /* next is read first: fn forgetting the host it is given is harmless */
    for (h = TAILQ_FIRST(&hs->hosts); h; h = next) {
        next = TAILQ_NEXT(h, link);
        fn(arg, h);
    }
}

/* ---- one host: queries ---- */

#define HOST_GET(type, name, expr)                                                                 \
    type wh_host_##name(const struct wh_host *h)                                                   \
    {                                                                                              \
        WH_CHECK_OBJ(h, WH_HOST_MAGIC);                                                            \
        return (expr);                                                                             \
    }

HOST_GET(const char *, id, h->id)
HOST_GET(enum wh_host_state, state, h->state)
HOST_GET(enum wh_host_source, source, h->source)
HOST_GET(const char *, docker, h->docker)
HOST_GET(const char *, address, h->address)
HOST_GET(int, draining, h->draining)
HOST_GET(int, removing, h->removing)
HOST_GET(int, missed, h->missed)
HOST_GET(const char *, last_error, h->last_error)
HOST_GET(int64_t, cpu_total, h->cpu_total)
HOST_GET(int64_t, mem_total, h->mem_total)
HOST_GET(int64_t, cpu_reserved, h->cpu_reserved)
HOST_GET(int64_t, mem_reserved, h->mem_reserved)
HOST_GET(int64_t, cpu_free, h->cpu_total > h->cpu_reserved ? h->cpu_total - h->cpu_reserved : 0)
HOST_GET(int64_t, mem_free, h->mem_total > h->mem_reserved ? h->mem_total - h->mem_reserved : 0)
HOST_GET(int, running_tasks, h->running_tasks)
HOST_GET(struct wh_runtime *, runtime, h->rt)

const struct wh_host_attr *wh_host_attributes(const struct wh_host *h, size_t *n)
{
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    *n = h->n_attrs;
    return h->attrs;
}

const char *wh_host_attribute(const struct wh_host *h, const char *key)
{
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    for (size_t i = 0; i < h->n_attrs; i++)
        if (strcmp(h->attrs[i].key, key) == 0)
            return h->attrs[i].value;
    return NULL;
}

/* ---- one host: setters ---- */

int wh_host_set_draining(struct wh_host *h, int draining)
{
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    draining = !!draining;
    if (h->removing && !draining)
        return -1;
    if (h->draining == draining)
        return 0;
    h->draining = draining;
    if (h->state == WH_HOST_ACTIVE || h->state == WH_HOST_DRAINING)
        wh_hosts_change_state(h, wh_hosts_up_state(h),
                              draining ? "draining requested" : "activated");
    else
        wh_log_info(HOSTS_MOD, "host %s: draining %s; applies when it answers", h->id,
                    draining ? "set" : "cleared");
    return 0;
}

void wh_host_reserve(struct wh_host *h, int64_t cpu, int64_t mem)
{
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    h->cpu_reserved += cpu;
    h->mem_reserved += mem;
}

static int64_t hosts_take(const struct wh_host *h, const char *what, int64_t have, int64_t take)
{
    if (take <= have)
        return have - take;
    wh_log_warn(HOSTS_MOD, "host %s: %lld %s released but only %lld reserved: kept at 0", h->id,
                (long long)take, what, (long long)have);
    return 0;
}

void wh_host_release(struct wh_host *h, int64_t cpu, int64_t mem)
{
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    h->cpu_reserved = hosts_take(h, "cpu units", h->cpu_reserved, cpu);
    h->mem_reserved = hosts_take(h, "MiB", h->mem_reserved, mem);
}

void wh_host_set_running_tasks(struct wh_host *h, int n)
{
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    h->running_tasks = n < 0 ? 0 : n;
}

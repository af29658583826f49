/* wh-docker-driver: drive the runtime module against real engines.
 *
 *   wh-docker-driver [--host URL [--id NAME] [--tls CA CERT KEY]]... [--call-timeout S]
 *                    [--max-calls N] COMMAND [ARGS]
 *
 * Commands (the first host unless said otherwise):
 *   ping | info                        every host
 *   run IMAGE [opts] [-- CMD...]       (pull by policy), create, start, inspect
 *   start|stop|kill|rm|inspect ID      stop: --timeout S; kill: --signal SIG
 *   list [--label L]...
 *   pull IMAGE [--policy P] [--user U --password P]
 *   events SECONDS [--label L]... [--sync-initial]   one JSON line per event
 *   lifecycle IMAGE [opts]             create, start, inspect, stop, remove with timings
 *   concurrent N IMAGE [opts] [--rm]   N create+start spread over every host
 *   probe SECONDS [--interval S]       info on every host every interval
 * run/lifecycle/concurrent opts: --name N --port P --label k=v --env k=v --memory MiB
 *   --cpu SHARES --stop-timeout S --stop-signal SIG --pull POLICY
 *
 * The result is one JSON object on the last line of stdout, with "max_lag":
 * the largest delay of a 10 ms periodic timer, i.e. how long the loop was
 * ever blocked.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "wharf/curl_event.h"
#include "wharf/runtime.h"

#define MAX_HOSTS 16
#define MAX_ITEMS 64
#define LAG_INTERVAL 0.010

struct opts {
    const char *name, *stop_signal, *pull, *user, *password, *signal;
    int port, memory, cpu, stop_timeout, timeout, rm, sync_initial;
    struct wh_rt_kv labels[MAX_ITEMS], env[MAX_ITEMS];
    size_t n_labels, n_env;
    const char *label_filters[MAX_ITEMS];
    size_t n_filters;
    const char *cmd[MAX_ITEMS];
    size_t n_cmd;
    double interval;
};

struct app {
    struct event_base *base;
    struct wh_curl_loop *loop;
    struct wh_runtime *rt[MAX_HOSTS];
    char ids[MAX_HOSTS][64];
    int n_hosts;
    struct event *lag_ev, *end_ev, *sig_ev;
    double lag_last, max_lag, t0;
    double cpu_last, max_lag_cpu; /* CPU time this process used in the worst interval */
    int pending;
    int failed;
    cJSON *out;
    struct opts o;
};

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_time(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A lag with little CPU used meant the machine did not run us (load), not
 * that the loop was busy. */
static void lag_cb(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    double now = mono(), cpu = cpu_time(), lag = now - a->lag_last - LAG_INTERVAL;
    if (lag > a->max_lag) {
        a->max_lag = lag;
        a->max_lag_cpu = cpu - a->cpu_last;
    }
    a->lag_last = now;
    a->cpu_last = cpu;
}

static void finish(struct app *a)
{
    event_base_loopbreak(a->base);
}

static void op_done(struct app *a)
{
    if (--a->pending == 0)
        finish(a);
}

static cJSON *err_json(const struct wh_rt_error *err)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "kind", wh_rt_errkind_name(err->kind));
    cJSON_AddNumberToObject(e, "http_status", (double)err->http_status);
    cJSON_AddStringToObject(e, "message", err->message);
    cJSON_AddBoolToObject(e, "unreachable", wh_rt_error_unreachable(err));
    return e;
}

static void put_result(cJSON *obj, const struct wh_rt_error *err)
{
    cJSON_AddBoolToObject(obj, "ok", err->kind == WH_RT_OK);
    if (err->kind != WH_RT_OK)
        cJSON_AddItemToObject(obj, "error", err_json(err));
}

static cJSON *kv_json(const struct wh_rt_kv *kv, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++)
        cJSON_AddStringToObject(o, kv[i].key, kv[i].value);
    return o;
}

static cJSON *ctr_json(const struct wh_rt_container *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddStringToObject(o, "image", c->image);
    cJSON_AddStringToObject(o, "state", c->state);
    cJSON_AddStringToObject(o, "status", c->status);
    cJSON_AddBoolToObject(o, "running", c->running);
    cJSON_AddNumberToObject(o, "exit_code", c->exit_code);
    cJSON_AddNumberToObject(o, "pid", c->pid);
    cJSON_AddStringToObject(o, "started_at", c->started_at);
    cJSON_AddStringToObject(o, "finished_at", c->finished_at);
    cJSON_AddNumberToObject(o, "container_port", c->container_port);
    cJSON_AddNumberToObject(o, "host_port", c->host_port);
    cJSON_AddStringToObject(o, "health", c->health);
    cJSON_AddItemToObject(o, "labels", kv_json(c->labels, c->n_labels));
    return o;
}

/* ---- ping, info, probe ---- */

struct host_op {
    struct app *a;
    int host;
    double t0;
    cJSON *slot;
};

static struct host_op *host_op(struct app *a, int host, cJSON *slot)
{
    struct host_op *h = calloc(1, sizeof(*h));
    *h = (struct host_op){a, host, mono(), slot};
    a->pending++;
    return h;
}

static void ping_cb(void *arg, const struct wh_rt_error *err)
{
    struct host_op *h = arg;
    cJSON_AddNumberToObject(h->slot, "elapsed", mono() - h->t0);
    put_result(h->slot, err);
    h->a->failed |= err->kind != WH_RT_OK;
    op_done(h->a);
    free(h);
}

static void info_cb(void *arg, const struct wh_rt_error *err, const struct wh_rt_info *info)
{
    struct host_op *h = arg;
    cJSON_AddNumberToObject(h->slot, "elapsed", mono() - h->t0);
    put_result(h->slot, err);
    if (info) {
        cJSON_AddNumberToObject(h->slot, "ncpu", info->ncpu);
        cJSON_AddNumberToObject(h->slot, "mem_total", (double)info->mem_total);
        cJSON_AddStringToObject(h->slot, "server_version", info->server_version);
        cJSON_AddStringToObject(h->slot, "api_version", info->api_version);
        cJSON_AddStringToObject(h->slot, "name", info->name);
        cJSON_AddItemToObject(h->slot, "labels", kv_json(info->labels, info->n_labels));
    }
    h->a->failed |= err->kind != WH_RT_OK;
    op_done(h->a);
    free(h);
}

static int cmd_each_host(struct app *a, int info)
{
    cJSON *hosts = cJSON_AddArrayToObject(a->out, "hosts");
    for (int i = 0; i < a->n_hosts; i++) {
        cJSON *slot = cJSON_CreateObject();
        cJSON_AddStringToObject(slot, "id", a->ids[i]);
        cJSON_AddItemToArray(hosts, slot);
        struct host_op *h = host_op(a, i, slot);
        if (info)
            wh_rt_info(a->rt[i], info_cb, h);
        else
            wh_rt_ping(a->rt[i], ping_cb, h);
    }
    return 0;
}

/* probe: info on every host every interval; per host the results. */
struct probe {
    struct app *a;
    struct event *tick;
    double end;
};

static void probe_result(void *arg, const struct wh_rt_error *err, const struct wh_rt_info *info)
{
    struct host_op *h = arg;
    struct app *a = h->a;
    double elapsed = mono() - h->t0;
    cJSON *slot = h->slot;
    const char *key = err->kind == WH_RT_OK ? "ok" : "errors";
    if (err->kind == WH_RT_OK) {
        cJSON *max = cJSON_GetObjectItem(slot, "max_ok_latency");
        if (elapsed > max->valuedouble)
            cJSON_SetNumberValue(max, elapsed);
        cJSON_SetNumberValue(cJSON_GetObjectItem(slot, key),
                             cJSON_GetObjectItem(slot, key)->valuedouble + 1);
    } else {
        cJSON *e = err_json(err);
        cJSON_AddNumberToObject(e, "elapsed", elapsed);
        cJSON_AddNumberToObject(e, "at", h->t0 - a->t0);
        cJSON_AddItemToArray(cJSON_GetObjectItem(slot, key), e);
    }
    op_done(a);
    free(h);
}

static void probe_tick(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;
    struct app *a = p->a;
    if (mono() >= p->end) {
        event_del(p->tick);
        op_done(a); /* the probe's own hold */
        return;
    }
    cJSON *hosts = cJSON_GetObjectItem(a->out, "hosts");
    for (int i = 0; i < a->n_hosts; i++)
        wh_rt_info(a->rt[i], probe_result, host_op(a, i, cJSON_GetArrayItem(hosts, i)));
}

static int cmd_probe(struct app *a, double seconds)
{
    static struct probe p;
    cJSON *hosts = cJSON_AddArrayToObject(a->out, "hosts");
    for (int i = 0; i < a->n_hosts; i++) {
        cJSON *slot = cJSON_CreateObject();
        cJSON_AddStringToObject(slot, "id", a->ids[i]);
        cJSON_AddNumberToObject(slot, "ok", 0);
        cJSON_AddNumberToObject(slot, "max_ok_latency", 0);
        cJSON_AddArrayToObject(slot, "errors");
        cJSON_AddItemToArray(hosts, slot);
    }
    double iv = a->o.interval > 0 ? a->o.interval : 0.5;
    struct timeval tv = {(time_t)iv, (suseconds_t)((iv - (double)(time_t)iv) * 1e6)};
    p = (struct probe){.a = a, .end = mono() + seconds};
    p.tick = event_new(a->base, -1, EV_PERSIST, probe_tick, &p);
    event_add(p.tick, &tv);
    a->pending++;
    probe_tick(-1, 0, &p);
    return 0;
}

/* ---- container chains: run, lifecycle, concurrent ---- */

struct task {
    struct app *a;
    int host, lifecycle, index;
    char name[96], id[72];
    double t0, t_create, t_start, t_inspect, t_stop, t_remove;
    cJSON *slot;
};

static void task_fail(struct task *t, const char *step, const struct wh_rt_error *err)
{
    cJSON_AddStringToObject(t->slot, "failed_step", step);
    put_result(t->slot, err);
    t->a->failed = 1;
    op_done(t->a);
    free(t);
}

static void task_end(struct task *t)
{
    cJSON_AddBoolToObject(t->slot, "ok", 1);
    op_done(t->a);
    free(t);
}

static void removed_cb(void *arg, const struct wh_rt_error *err)
{
    struct task *t = arg;
    if (err->kind != WH_RT_OK)
        return task_fail(t, "remove", err);
    t->t_remove = mono();
    cJSON_AddNumberToObject(t->slot, "remove_s", t->t_remove - t->t_stop);
    task_end(t);
}

static void stopped_cb(void *arg, const struct wh_rt_error *err)
{
    struct task *t = arg;
    if (err->kind != WH_RT_OK)
        return task_fail(t, "stop", err);
    t->t_stop = mono();
    cJSON_AddNumberToObject(t->slot, "stop_s", t->t_stop - t->t_inspect);
    wh_rt_remove(t->a->rt[t->host], t->id, 1, removed_cb, t);
}

static void inspected_cb(void *arg, const struct wh_rt_error *err, const struct wh_rt_container *c)
{
    struct task *t = arg;
    if (err->kind != WH_RT_OK)
        return task_fail(t, "inspect", err);
    t->t_inspect = mono();
    cJSON_AddNumberToObject(t->slot, "inspect_s", t->t_inspect - t->t_start);
    cJSON_AddItemToObject(t->slot, "container", ctr_json(c));
    if (t->lifecycle)
        wh_rt_stop(t->a->rt[t->host], t->id, t->a->o.timeout, stopped_cb, t);
    else
        task_end(t);
}

static void started_cb(void *arg, const struct wh_rt_error *err)
{
    struct task *t = arg;
    if (err->kind != WH_RT_OK)
        return task_fail(t, "start", err);
    t->t_start = mono();
    cJSON_AddNumberToObject(t->slot, "start_s", t->t_start - t->t_create);
    cJSON_AddNumberToObject(t->slot, "create_start_s", t->t_start - t->t0);
    wh_rt_inspect(t->a->rt[t->host], t->id, inspected_cb, t);
}

static void created_cb(void *arg, const struct wh_rt_error *err, const char *id)
{
    struct task *t = arg;
    if (err->kind != WH_RT_OK)
        return task_fail(t, "create", err);
    t->t_create = mono();
    snprintf(t->id, sizeof(t->id), "%s", id);
    cJSON_AddStringToObject(t->slot, "id", id);
    cJSON_AddNumberToObject(t->slot, "create_s", t->t_create - t->t0);
    wh_rt_start(t->a->rt[t->host], t->id, started_cb, t);
}

static void task_create(struct task *t, const char *image)
{
    struct opts *o = &t->a->o;
    struct wh_rt_create_spec spec = {.name = t->name[0] ? t->name : NULL,
                                     .image = image,
                                     .cmd = o->cmd,
                                     .n_cmd = o->n_cmd,
                                     .env = o->env,
                                     .n_env = o->n_env,
                                     .labels = o->labels,
                                     .n_labels = o->n_labels,
                                     .container_port = o->port,
                                     .memory_mib = o->memory,
                                     .cpu_shares = o->cpu,
                                     .stop_signal = o->stop_signal,
                                     .stop_timeout = o->stop_timeout};
    t->t0 = mono();
    wh_rt_create(t->a->rt[t->host], &spec, created_cb, t);
}

struct pull_then {
    struct task *t;
    const char *image;
};

static void pulled_cb(void *arg, const struct wh_rt_error *err)
{
    struct pull_then *p = arg;
    struct task *t = p->t;
    const char *image = p->image;
    free(p);
    if (err->kind != WH_RT_OK)
        return task_fail(t, "pull", err);
    task_create(t, image);
}

static struct task *task_new(struct app *a, int host, cJSON *slot)
{
    struct task *t = calloc(1, sizeof(*t));
    t->a = a;
    t->host = host;
    t->slot = slot;
    cJSON_AddStringToObject(slot, "host", a->ids[host]);
    a->pending++;
    return t;
}

static int cmd_run(struct app *a, const char *image, int lifecycle)
{
    struct task *t = task_new(a, 0, a->out);
    enum wh_rt_pull_policy policy;
    t->lifecycle = lifecycle;
    snprintf(t->name, sizeof(t->name), "%s", a->o.name ? a->o.name : "");
    if (!a->o.pull) {
        task_create(t, image);
        return 0;
    }
    if (wh_rt_pull_policy_parse(a->o.pull, &policy) != 0)
        return -1;
    struct pull_then *p = calloc(1, sizeof(*p));
    *p = (struct pull_then){t, image};
    return wh_rt_image_pull(a->rt[0], image, NULL, policy, pulled_cb, p);
}

static int cmd_concurrent(struct app *a, int n, const char *image)
{
    cJSON *list = cJSON_AddArrayToObject(a->out, "containers");
    for (int i = 0; i < n; i++) {
        cJSON *slot = cJSON_CreateObject();
        cJSON_AddItemToArray(list, slot);
        struct task *t = task_new(a, i % a->n_hosts, slot);
        t->index = i;
        if (a->o.name)
            snprintf(t->name, sizeof(t->name), "%s-%d", a->o.name, i);
        task_create(t, image);
    }
    return 0;
}

/* After concurrent --rm: remove what was made, quietly. */
static void cleanup_cb(void *arg, const struct wh_rt_error *err)
{
    op_done(arg);
}

static void concurrent_cleanup(struct app *a)
{
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(a->out, "containers"))
    {
        cJSON *id = cJSON_GetObjectItem(c, "id"), *host = cJSON_GetObjectItem(c, "host");
        for (int h = 0; id && host && h < a->n_hosts; h++) {
            if (strcmp(a->ids[h], host->valuestring) != 0)
                continue;
            a->pending++;
            wh_rt_remove(a->rt[h], id->valuestring, 1, cleanup_cb, a);
        }
    }
}

static void summarize_concurrent(struct app *a)
{
    double v[4096], sum = 0;
    int n = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(a->out, "containers"))
    {
        cJSON *t = cJSON_GetObjectItem(c, "create_start_s");
        if (t && n < 4096)
            sum += v[n++] = t->valuedouble;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double x = v[j];
            v[j] = v[j - 1];
            v[j - 1] = x;
        }
    cJSON *s = cJSON_AddObjectToObject(a->out, "create_start");
    cJSON_AddNumberToObject(s, "count", n);
    cJSON_AddNumberToObject(s, "min", n ? v[0] : 0);
    cJSON_AddNumberToObject(s, "median", n ? v[n / 2] : 0);
    cJSON_AddNumberToObject(s, "p90", n ? v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1] : 0);
    cJSON_AddNumberToObject(s, "max", n ? v[n - 1] : 0);
    cJSON_AddNumberToObject(s, "mean", n ? sum / n : 0);
}

/* ---- single-container calls ---- */

static void single_done(void *arg, const struct wh_rt_error *err)
{
    struct app *a = arg;
    put_result(a->out, err);
    a->failed |= err->kind != WH_RT_OK;
    op_done(a);
}

static void single_inspect(void *arg, const struct wh_rt_error *err,
                           const struct wh_rt_container *c)
{
    struct app *a = arg;
    if (c)
        cJSON_AddItemToObject(a->out, "container", ctr_json(c));
    single_done(a, err);
}

static void single_list(void *arg, const struct wh_rt_error *err,
                        const struct wh_rt_container *list, size_t n)
{
    struct app *a = arg;
    cJSON *arr = cJSON_AddArrayToObject(a->out, "containers");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, ctr_json(&list[i]));
    single_done(a, err);
}

static int cmd_single(struct app *a, const char *cmd, const char *arg)
{
    struct wh_runtime *rt = a->rt[0];
    a->pending++;
    if (strcmp(cmd, "start") == 0)
        return wh_rt_start(rt, arg, single_done, a);
    if (strcmp(cmd, "stop") == 0)
        return wh_rt_stop(rt, arg, a->o.timeout, single_done, a);
    if (strcmp(cmd, "kill") == 0)
        return wh_rt_kill(rt, arg, a->o.signal, single_done, a);
    if (strcmp(cmd, "rm") == 0)
        return wh_rt_remove(rt, arg, 1, single_done, a);
    if (strcmp(cmd, "inspect") == 0)
        return wh_rt_inspect(rt, arg, single_inspect, a);
    if (strcmp(cmd, "list") == 0)
        return wh_rt_list(rt, a->o.label_filters, a->o.n_filters, single_list, a);
    if (strcmp(cmd, "pull") == 0) {
        enum wh_rt_pull_policy policy = WH_RT_PULL_ALWAYS;
        if (a->o.pull && wh_rt_pull_policy_parse(a->o.pull, &policy) != 0)
            return -1;
        struct wh_rt_auth auth = {a->o.user, a->o.password, NULL};
        return wh_rt_image_pull(rt, arg, a->o.user ? &auth : NULL, policy, single_done, a);
    }
    return -1;
}

/* ---- events ---- */

static void event_cb(void *arg, const struct wh_rt_event *ev)
{
    struct app *a = arg;
    static const char *const kinds[] = {"container", "connected", "disconnected"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", kinds[ev->kind]);
    cJSON_AddNumberToObject(o, "t", mono() - a->t0);
    if (ev->kind == WH_RT_EV_CONTAINER) {
        cJSON_AddStringToObject(o, "action", ev->action);
        cJSON_AddStringToObject(o, "id", ev->id);
        cJSON_AddStringToObject(o, "name", ev->name);
        cJSON_AddBoolToObject(o, "synthetic", ev->synthetic);
        cJSON_AddNumberToObject(o, "exit_code", ev->exit_code);
        cJSON_AddNumberToObject(o, "time", ev->time);
        cJSON_AddItemToObject(o, "labels", kv_json(ev->labels, ev->n_labels));
    } else if (ev->error) {
        cJSON_AddItemToObject(o, "error", err_json(ev->error));
    }
    char *text = cJSON_PrintUnformatted(o);
    printf("%s\n", text);
    fflush(stdout);
    cJSON_free(text);
    cJSON_Delete(o);
    cJSON *count = cJSON_GetObjectItem(a->out, "events");
    cJSON_SetNumberValue(count, count->valuedouble + 1);
}

static void end_cb(evutil_socket_t fd, short what, void *arg)
{
    finish(arg);
}

static int cmd_events(struct app *a, double seconds, struct wh_rt_watch **watch)
{
    struct wh_rt_events_params p = {.labels = a->o.label_filters,
                                    .n_labels = a->o.n_filters,
                                    .backoff_max = 2,
                                    .sync_initial = a->o.sync_initial};
    cJSON_AddNumberToObject(a->out, "events", 0);
    *watch = wh_rt_events_start(a->rt[0], &p, event_cb, a);
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    a->end_ev = evtimer_new(a->base, end_cb, a);
    evtimer_add(a->end_ev, &tv);
    return *watch ? 0 : -1;
}

/* ---- arguments ---- */

static int parse_kv(const char *text, struct wh_rt_kv *kv, size_t *n)
{
    char *copy = strdup(text), *eq = strchr(copy, '=');
    if (*n >= MAX_ITEMS)
        return -1;
    if (eq)
        *eq = '\0';
    kv[*n] = (struct wh_rt_kv){copy, eq ? eq + 1 : ""};
    (*n)++;
    return 0;
}

/* Options after the command; returns the index of the first positional
 * argument left, -1 on a bad option. */
static int parse_opts(struct opts *o, int argc, char **argv, int i, const char **pos, int *npos)
{
    for (; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(s, "--") == 0) {
            for (i++; i < argc && o->n_cmd < MAX_ITEMS; i++)
                o->cmd[o->n_cmd++] = argv[i];
            break;
        }
        if (strcmp(s, "--rm") == 0 || strcmp(s, "--sync-initial") == 0) {
            o->rm |= s[2] == 'r';
            o->sync_initial |= s[2] == 's';
            continue;
        }
        if (s[0] != '-' || s[1] != '-') {
            if (*npos < 4)
                pos[(*npos)++] = s;
            continue;
        }
        if (!v)
            return -1;
        if (strcmp(s, "--name") == 0)
            o->name = v;
        else if (strcmp(s, "--port") == 0)
            o->port = atoi(v);
        else if (strcmp(s, "--label") == 0)
            takes = parse_kv(v, o->labels, &o->n_labels) == 0 && o->n_filters < MAX_ITEMS
                        ? (o->label_filters[o->n_filters++] = v, 1)
                        : -1;
        else if (strcmp(s, "--env") == 0)
            takes = parse_kv(v, o->env, &o->n_env) == 0 ? 1 : -1;
        else if (strcmp(s, "--memory") == 0)
            o->memory = atoi(v);
        else if (strcmp(s, "--cpu") == 0)
            o->cpu = atoi(v);
        else if (strcmp(s, "--stop-timeout") == 0)
            o->stop_timeout = atoi(v);
        else if (strcmp(s, "--stop-signal") == 0)
            o->stop_signal = v;
        else if (strcmp(s, "--timeout") == 0)
            o->timeout = atoi(v);
        else if (strcmp(s, "--signal") == 0)
            o->signal = v;
        else if (strcmp(s, "--pull") == 0 || strcmp(s, "--policy") == 0)
            o->pull = v;
        else if (strcmp(s, "--user") == 0)
            o->user = v;
        else if (strcmp(s, "--password") == 0)
            o->password = v;
        else if (strcmp(s, "--interval") == 0)
            o->interval = atof(v);
        else
            return -1;
        if (takes < 0)
            return -1;
        i++;
    }
    return 0;
}

struct host_arg {
    const char *url, *id, *ca, *cert, *key;
};

/* Global options before the command; returns the command's index. */
static int parse_globals(int argc, char **argv, struct host_arg *h, int *nh,
                         struct wh_rt_host_params *common)
{
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--host") == 0 && i + 1 < argc && *nh < MAX_HOSTS) {
            h[(*nh)++] = (struct host_arg){.url = argv[++i]};
        } else if (strcmp(s, "--id") == 0 && i + 1 < argc && *nh) {
            h[*nh - 1].id = argv[++i];
        } else if (strcmp(s, "--tls") == 0 && i + 3 < argc && *nh) {
            h[*nh - 1].ca = argv[++i];
            h[*nh - 1].cert = argv[++i];
            h[*nh - 1].key = argv[++i];
        } else if (strcmp(s, "--call-timeout") == 0 && i + 1 < argc) {
            common->call_timeout = atof(argv[++i]);
        } else if (strcmp(s, "--max-calls") == 0 && i + 1 < argc) {
            common->max_concurrent_calls = atoi(argv[++i]);
        } else {
            return -1;
        }
    }
    return *nh && i < argc ? i : -1;
}

static int setup(struct app *a, struct host_arg *h, int nh, struct wh_rt_host_params *common)
{
    char err[WH_ERR_LEN];
    a->base = event_base_new();
    a->loop = a->base ? wh_curl_loop_new(a->base) : NULL;
    if (!a->loop)
        return -1;
    for (int i = 0; i < nh; i++) {
        struct wh_rt_host_params p = *common;
        snprintf(a->ids[i], sizeof(a->ids[i]), "%s", h[i].id ? h[i].id : h[i].url);
        p.id = a->ids[i];
        p.endpoint = h[i].url;
        p.tls_ca = h[i].ca;
        p.tls_cert = h[i].cert;
        p.tls_key = h[i].key;
        a->rt[i] = wh_docker_runtime_new(a->loop, &p, err, sizeof(err));
        if (!a->rt[i]) {
            fprintf(stderr, "wh-docker-driver: %s\n", err);
            return -1;
        }
        a->n_hosts++;
    }
    struct timeval tv = {0, (suseconds_t)(LAG_INTERVAL * 1e6)};
    a->lag_ev = event_new(a->base, -1, EV_PERSIST, lag_cb, a);
    event_add(a->lag_ev, &tv);
    a->lag_last = a->t0 = mono();
    a->cpu_last = cpu_time();
    return 0;
}

static int dispatch(struct app *a, const char *cmd, const char **pos, int npos,
                    struct wh_rt_watch **watch)
{
    if (strcmp(cmd, "ping") == 0 || strcmp(cmd, "info") == 0)
        return cmd_each_host(a, cmd[0] == 'i');
    if (strcmp(cmd, "probe") == 0 && npos >= 1)
        return cmd_probe(a, atof(pos[0]));
    if ((strcmp(cmd, "run") == 0 || strcmp(cmd, "lifecycle") == 0) && npos >= 1)
        return cmd_run(a, pos[0], cmd[0] == 'l');
    if (strcmp(cmd, "concurrent") == 0 && npos >= 2)
        return cmd_concurrent(a, atoi(pos[0]), pos[1]);
    if (strcmp(cmd, "events") == 0 && npos >= 1)
        return cmd_events(a, atof(pos[0]), watch);
    if (strcmp(cmd, "list") == 0 || npos >= 1)
        return cmd_single(a, cmd, npos ? pos[0] : NULL);
    return -1;
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    finish(arg);
}

int main(int argc, char **argv)
{
    static struct app app;
    struct app *a = &app;
    struct host_arg hosts[MAX_HOSTS];
    struct wh_rt_host_params common = {0};
    struct wh_rt_watch *watch = NULL;
    const char *pos[4] = {0};
    int nh = 0, npos = 0, rc = 2;
    int ci = parse_globals(argc, argv, hosts, &nh, &common);
    a->o.stop_timeout = -1;
    a->o.timeout = 10;
    if (ci < 0 || parse_opts(&a->o, argc, argv, ci + 1, pos, &npos) != 0) {
        fprintf(stderr, "usage: see the comment at the top of tests/drivers/docker_driver.c\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (wh_curl_global_init() != 0 || setup(a, hosts, nh, &common) != 0)
        return 2;
    a->out = cJSON_CreateObject();
    cJSON_AddStringToObject(a->out, "command", argv[ci]);
    a->sig_ev = evsignal_new(a->base, SIGTERM, on_signal, a);
    event_add(a->sig_ev, NULL);
    if (dispatch(a, argv[ci], pos, npos, &watch) != 0) {
        fprintf(stderr, "wh-docker-driver: bad command or arguments\n");
        return 2;
    }
    double t_start = mono();
    if (a->pending || watch)
        event_base_dispatch(a->base);
    cJSON_AddNumberToObject(a->out, "wall_s", mono() - t_start);
    if (strcmp(argv[ci], "concurrent") == 0) {
        summarize_concurrent(a);
        if (a->o.rm) {
            concurrent_cleanup(a);
            if (a->pending)
                event_base_dispatch(a->base);
        }
    }
    cJSON_AddNumberToObject(a->out, "max_lag", a->max_lag);
    cJSON_AddNumberToObject(a->out, "max_lag_cpu", a->max_lag_cpu);
    if (a->n_hosts)
        cJSON_AddStringToObject(a->out, "api_version", wh_docker_api_version(a->rt[0]));
    char *text = cJSON_PrintUnformatted(a->out);
    printf("%s\n", text);
    cJSON_free(text);
    rc = a->failed ? 1 : 0;
    wh_rt_events_stop(a->rt[0], watch);
    for (int i = 0; i < a->n_hosts; i++)
        wh_runtime_free(a->rt[i]);
    wh_curl_loop_free(a->loop);
    event_free(a->lag_ev);
    event_free(a->sig_ev);
    if (a->end_ev)
        event_free(a->end_ev);
    event_base_free(a->base);
    cJSON_Delete(a->out);
    curl_global_cleanup();
    return rc;
}

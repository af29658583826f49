/* The controller (include/wharf/controller.h): its state, the triggers that
 * coalesce into one reconcile per loop turn, and the plan's inputs built
 * from that state, the host inventory and the target registry. The pure
 * planner (plan.h: placement.c, reconcile.c) decides; executor.c acts.
 *
 * Observed state is never stored: at start, and whenever a host answers
 * again, its containers of this cluster are listed (labels say service,
 * revision and task), so a restarted wharfd adopts what runs. The events
 * stream of each host keeps the table current between listings. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "controller/controller-int.h"
#include "wharf/hosts.h"
#include "wharf/log.h"
#include "wharf/obj.h"
#include "wharf/query.h"
#include "wharf/targets.h"

double wh_ctl_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- services ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void service_clear(struct ctl_service *s)
{
    free(s->target_group);
    free(s->image);
    for (size_t i = 0; i < s->n_command; i++)
        free(s->command[i]);
    free(s->command);
    for (size_t i = 0; i < s->n_env; i++) {
        free((char *)s->env[i].key);
        free((char *)s->env[i].value);
    }
    free(s->env);
    free(s->log_driver);
    for (size_t i = 0; i < s->n_log_opts; i++) {
        free((char *)s->log_opts[i].key);
        free((char *)s->log_opts[i].value);
    }
    free(s->log_opts);
    for (size_t i = 0; i < s->n_strategies; i++)
        free((char *)s->strategies[i].attribute);
    free(s->strategies);
    for (size_t i = 0; i < s->n_constraints; i++)
        wh_query_free((struct wh_query *)s->constraints[i].query);
    free(s->constraints);
    for (size_t i = 0; i < s->n_events; i++)
        free(s->events[i].message);
}

static void hash_str(EVP_MD_CTX *md, const char *x)
{
    x = x ? x : "";
    EVP_DigestUpdate(md, x, strlen(x) + 1); /* the NUL separates fields */
}

/* The wharf.taskdef label: 12 hex digits of the SHA-256 of the canonical
 * task definition, so a restart recognises a revision without a store. */
static void taskdef_hash(struct ctl_service *s)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    char num[64];
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    hash_str(md, s->image);
    for (size_t i = 0; i < s->n_command; i++)
        hash_str(md, s->command[i]);
    hash_str(md, "--env");
    for (size_t i = 0; i < s->n_env; i++) {
        hash_str(md, s->env[i].key);
        hash_str(md, s->env[i].value);
    }
    snprintf(num, sizeof(num), "%d/%d/%d/%d", s->container_port, s->cpu, s->memory,
             s->stop_timeout);
    hash_str(md, num);
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    for (int i = 0; i < (CTL_TASKDEF_LEN - 1) / 2; i++)
        snprintf(s->taskdef + 2 * i, 3, "%02x", digest[i]);
}

static int copy_placement(struct ctl_service *s, const struct wh_cfg_service *c, char *err,
                          size_t errlen)
{
    s->strategies = calloc(c->n_strategies + 1, sizeof(*s->strategies));
    s->constraints = calloc(c->n_constraints + 1, sizeof(*s->constraints));
    if (!s->strategies || !s->constraints)
        return -1;
    for (size_t i = 0; i < c->n_strategies; i++, s->n_strategies++) {
        const struct wh_cfg_placement_strategy *st = &c->strategies[i];
        if (wh_place_strategy_parse(st->type, st->field, &s->strategies[i], err, errlen) < 0)
            return -1;
        /* attribute points into the config's string: keep our own copy */
        if (s->strategies[i].attribute)
            s->strategies[i].attribute = strdup(s->strategies[i].attribute);
    }
    for (size_t i = 0; i < c->n_constraints; i++, s->n_constraints++) {
        const struct wh_cfg_placement_constraint *pc = &c->constraints[i];
        int member_of = strcmp(pc->type, "memberOf") == 0;
        s->constraints[i].type = member_of ? WH_PLACE_MEMBER_OF : WH_PLACE_DISTINCT_INSTANCE;
        if (member_of && !(s->constraints[i].query = wh_query_parse(pc->expression, err, errlen)))
            return -1;
    }
    return 0;
}

static int service_copy(struct ctl_service *s, const struct wh_cfg_service *c, char *err,
                        size_t errlen)
{
    snprintf(s->name, sizeof(s->name), "%s", c->name);
    s->target_group = dup_or_null(c->target_group);
    s->image = dup_or_null(c->image);
    s->command = calloc(c->n_command + 1, sizeof(char *));
    s->env = calloc(c->n_env + 1, sizeof(*s->env));
    if (!s->image || !s->command || !s->env)
        return -1;
    for (size_t i = 0; i < c->n_command; i++, s->n_command++)
        s->command[i] = strdup(c->command[i]);
    for (size_t i = 0; i < c->n_env; i++, s->n_env++) {
        s->env[i].key = strdup(c->env[i].key);
        s->env[i].value = strdup(c->env[i].value);
    }
    s->log_driver = dup_or_null(c->log_driver);
    s->log_opts = calloc(c->n_log_options + 1, sizeof(*s->log_opts));
    if (!s->log_opts)
        return -1;
    for (size_t i = 0; i < c->n_log_options; i++, s->n_log_opts++) {
        s->log_opts[i].key = strdup(c->log_options[i].key);
        s->log_opts[i].value = strdup(c->log_options[i].value);
    }
    s->pull = c->pull_policy == WH_PULL_ALWAYS  ? WH_RT_PULL_ALWAYS
              : c->pull_policy == WH_PULL_NEVER ? WH_RT_PULL_NEVER
                                                : WH_RT_PULL_IF_NOT_PRESENT;
    s->container_port = c->container_port;
    s->cpu = c->cpu;
    s->memory = c->memory;
    s->stop_timeout = (int)c->stop_timeout;
    s->min_percent = c->minimum_healthy_percent;
    s->max_percent = c->maximum_percent;
    s->grace = c->health_check_grace_period;
    s->desired = c->desired_count;
    s->in_file = 1;
    s->revision = 1;
    if (copy_placement(s, c, err, errlen) < 0)
        return -1;
    taskdef_hash(s);
    return 0;
}

struct ctl_service *wh_ctl_service(struct wh_controller *ctl, const char *name)
{
    for (size_t i = 0; i < ctl->n_services; i++)
        if (strcmp(ctl->services[i].name, name) == 0)
            return &ctl->services[i];
    return NULL;
}

/* Carry what the planner and the API keep across a reload from old to s. */
static void service_carry(struct ctl_service *s, struct ctl_service *old)
{
    s->start_failures = old->start_failures;
    s->last_start_failure = old->last_start_failure;
    s->steady = old->steady;
    s->status = old->status;
    memcpy(s->events, old->events, sizeof(s->events));
    s->n_events = old->n_events;
    s->head = old->head;
    old->n_events = 0; /* the messages moved */
    if (strcmp(s->taskdef, old->taskdef) == 0)
        s->revision = old->revision;
    else
        s->revision = old->revision + 1;
}

/* Services of the file, then those that left it and still have tasks. */
static int services_build(struct wh_controller *ctl, const struct wh_config *cfg,
                          struct ctl_service **out, size_t *n_out, char *err, size_t errlen)
{
    size_t cap = cfg->n_services + ctl->n_services;
    struct ctl_service *v = calloc(cap + 1, sizeof(*v));
    size_t n = 0;
    if (!v)
        return -1;
    for (size_t i = 0; i < cfg->n_services; i++, n++) {
        if (service_copy(&v[i], &cfg->services[i], err, errlen) < 0) {
            for (size_t k = 0; k <= i; k++)
                service_clear(&v[k]);
            free(v);
            return -1;
        }
        struct ctl_service *old = wh_ctl_service(ctl, v[i].name);
        if (old)
            service_carry(&v[i], old);
    }
    for (size_t i = 0; i < ctl->n_services; i++) {
        struct ctl_service *old = &ctl->services[i];
        if (cfg->n_services && wh_config_service(cfg, old->name))
            continue;
        v[n] = *old; /* leaves the file: scaled to 0, forgotten when empty */
        memset(old, 0, sizeof(*old));
        v[n].desired = 0;
        v[n].in_file = 0;
        n++;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* The file's `draining` of each host it names, so that a SIGHUP applies it
 * (a start gives it to wh_hosts_add; hosts that join or leave are main.c's).
 * When the API can drain a host too, only a change of the file's value may
 * apply here, as for services. */
static void hosts_apply_draining(struct wh_controller *ctl, const struct wh_config *cfg)
{
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        struct wh_host *h = wh_ctl_host(ctl, cfg->hosts[i].id);
        if (h && wh_host_draining(h) != !!cfg->hosts[i].draining &&
            wh_host_set_draining(h, cfg->hosts[i].draining) < 0)
            wh_log_warn("controller", "host %s: being removed: it stays draining",
                        cfg->hosts[i].id);
    }
}

int wh_controller_apply(struct wh_controller *ctl, const struct wh_config *cfg, char *err,
                        size_t errlen)
{
    struct ctl_service *v;
    size_t n;
    if (services_build(ctl, cfg, &v, &n, err, errlen) < 0) {
        if (!err[0])
            snprintf(err, errlen, "controller: out of memory");
        return -1;
    }
    for (size_t i = 0; i < ctl->n_services; i++)
        service_clear(&ctl->services[i]);
    free(ctl->services);
    ctl->services = v;
    ctl->n_services = n;
    snprintf(ctl->cluster, sizeof(ctl->cluster), "%s", cfg->cluster ? cfg->cluster : "default");
    ctl->reconcile_interval = cfg->controller.reconcile_interval;
    ctl->lost_task_grace = cfg->controller.lost_task_grace;
    ctl->start_backoff_max = cfg->controller.start_backoff_max;
    hosts_apply_draining(ctl, cfg);
    struct timeval tv = {(time_t)ctl->reconcile_interval, 0};
    event_add(ctl->interval, &tv);
    wh_ctl_kick(ctl);
    return 0;
}

/* ---- events ---- */

void wh_ctl_event(struct wh_controller *ctl, struct ctl_service *s, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    wh_log_info("controller", "%s", text);
    if (!s)
        return;
    struct ctl_event *e = &s->events[s->head];
    if (s->n_events == CTL_EVENTS_MAX)
        free(e->message);
    else
        s->n_events++;
    e->id = ++ctl->next_event_id;
    e->time = wh_ctl_now();
    e->message = strdup(text);
    s->head = (s->head + 1) % CTL_EVENTS_MAX;
}

/* ---- tasks and ops ---- */

struct ctl_task *wh_ctl_task(struct wh_controller *ctl, const char *id)
{
    struct ctl_task *t;
    TAILQ_FOREACH(t, &ctl->tasks, link)
    if (strcmp(t->id, id) == 0)
        return t;
    return NULL;
}

struct ctl_task *wh_ctl_task_new(struct wh_controller *ctl, const char *id, const char *service,
                                 const char *host)
{
    struct ctl_task *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    WH_INIT_OBJ(t, CTL_TASK_MAGIC);
    snprintf(t->id, sizeof(t->id), "%s", id);
    snprintf(t->service, sizeof(t->service), "%s", service);
    snprintf(t->host, sizeof(t->host), "%s", host);
    snprintf(t->cluster, sizeof(t->cluster), "%s", ctl->cluster);
    TAILQ_INSERT_TAIL(&ctl->tasks, t, link);
    return t;
}

void wh_ctl_task_free(struct wh_controller *ctl, struct ctl_task *t)
{
    struct ctl_op *op;
    TAILQ_FOREACH(op, &ctl->ops, link)
    if (op->task == t)
        op->task = NULL;
    struct wh_host *h = wh_ctl_host(ctl, t->host);
    if (h && t->reserved)
        wh_host_release(h, t->cpu, t->memory);
    TAILQ_REMOVE(&ctl->tasks, t, link);
    WH_FREE_OBJ(t);
}

struct ctl_op *wh_ctl_op_new(struct wh_controller *ctl, struct ctl_task *t)
{
    struct ctl_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    WH_INIT_OBJ(op, CTL_OP_MAGIC);
    op->ctl = ctl;
    op->task = t;
    if (t)
        snprintf(op->host, sizeof(op->host), "%s", t->host);
    TAILQ_INSERT_TAIL(&ctl->ops, op, link);
    return op;
}

void wh_ctl_op_free(struct ctl_op *op)
{
    TAILQ_REMOVE(&op->ctl->ops, op, link);
    WH_FREE_OBJ(op);
}

struct ctl_task *wh_ctl_op_task(struct ctl_op *op)
{
    WH_CHECK_OBJ(op, CTL_OP_MAGIC);
    WH_CHECK_OBJ_ORNULL(op->task, CTL_TASK_MAGIC);
    return op->task;
}

/* ---- hosts ---- */

struct wh_host *wh_ctl_host(struct wh_controller *ctl, const char *id)
{
    return wh_hosts_find(ctl->hosts, id);
}

static struct ctl_host *known_host(struct wh_controller *ctl, const char *id)
{
    for (size_t i = 0; i < ctl->n_known_hosts; i++)
        if (strcmp(ctl->known_hosts[i]->id, id) == 0)
            return ctl->known_hosts[i];
    struct ctl_host **v = realloc(ctl->known_hosts, (ctl->n_known_hosts + 1) * sizeof(*v));
    struct ctl_host *k = v ? calloc(1, sizeof(*k)) : NULL;
    if (v)
        ctl->known_hosts = v;
    if (!k)
        return NULL;
    WH_INIT_OBJ(k, CTL_HOST_MAGIC);
    k->ctl = ctl;
    snprintf(k->id, sizeof(k->id), "%s", id);
    v[ctl->n_known_hosts++] = k;
    return k;
}

static void list_done(void *arg, const struct wh_rt_error *err, const struct wh_rt_container *list,
                      size_t n)
{
    struct ctl_op *op = arg;
    WH_CHECK_OBJ(op, CTL_OP_MAGIC);
    struct wh_controller *ctl = op->ctl;
    struct ctl_host *k = known_host(ctl, op->host);
    if (err->kind != WH_RT_OK) {
        wh_log_warn("controller", "host %s: listing its containers failed: %s", op->host,
                    err->message);
    } else {
        wh_ctl_adopt_list(ctl, op->host, list, n);
        if (k)
            k->listed = 1;
    }
    wh_ctl_op_free(op);
    wh_ctl_kick(ctl);
}

static void watch_event(void *arg, const struct wh_rt_event *ev);

/* List host's containers of this cluster, and watch its events. */
static void host_list(struct wh_controller *ctl, struct wh_host *h, struct ctl_host *k)
{
    struct wh_runtime *rt = wh_host_runtime(h);
    char label[CTL_CLUSTER_MAX + 16];
    snprintf(label, sizeof(label), "wharf.cluster=%s", ctl->cluster);
    const char *labels[] = {label};
    struct ctl_op *op = wh_ctl_op_new(ctl, NULL);
    if (!op)
        return;
    snprintf(op->host, sizeof(op->host), "%s", k->id);
    if (wh_rt_list(rt, labels, 1, list_done, op) < 0)
        wh_ctl_op_free(op);
    if (!k->watch) {
        struct wh_rt_events_params p = {.labels = labels, .n_labels = 1};
        k->watch = wh_rt_events_start(rt, &p, watch_event, k);
        k->watch_rt = rt;
    }
}

static void host_changed(void *arg, struct wh_host *h, enum wh_host_state old,
                         enum wh_host_state state, const char *reason)
{
    struct wh_controller *ctl;
    WH_CAST_OBJ(ctl, arg, CTL_MAGIC);
    struct ctl_host *k = known_host(ctl, wh_host_id(h));
    if (!k)
        return;
    if (state == WH_HOST_UNREACHABLE) {
        k->unreachable_since = wh_ctl_now();
        k->listed = 0;
    } else if (state == WH_HOST_ACTIVE || state == WH_HOST_DRAINING) {
        k->unreachable_since = 0;
        struct ctl_task *t;
        TAILQ_FOREACH(t, &ctl->tasks, link)
        if (strcmp(t->host, k->id) == 0)
            t->lost = 0; /* a later loss is reported again */
        if (!k->listed)
            host_list(ctl, h, k);
    }
    wh_ctl_kick(ctl);
}

static void watch_event(void *arg, const struct wh_rt_event *ev)
{
    struct ctl_host *k;
    WH_CAST_OBJ(k, arg, CTL_HOST_MAGIC);
    if (ev->kind == WH_RT_EV_CONTAINER)
        wh_ctl_container_event(k->ctl, k->id, ev);
    wh_ctl_kick(k->ctl);
}

/* ---- the plan's inputs ---- */

struct inputs {
    struct wh_plan_host *hosts;
    struct wh_plan_attr *attrs;
    size_t n_hosts;
    struct wh_plan_service *services;
    struct wh_plan_task *tasks;
    struct ctl_task **task_of; /* per plan task */
    size_t n_tasks;
};

static void inputs_free(struct inputs *in)
{
    free(in->hosts);
    free(in->attrs);
    free(in->services);
    free(in->tasks);
    free(in->task_of);
}

struct host_fill {
    struct wh_controller *ctl;
    struct inputs *in;
    size_t n_attrs;
    int registering; /* a host has not answered yet: adoption waits */
};

static void count_host_attrs(void *arg, struct wh_host *h)
{
    struct host_fill *f = arg;
    size_t n = 0;
    wh_host_attributes(h, &n);
    f->n_attrs += n;
}

static void fill_host(void *arg, struct wh_host *h)
{
    struct host_fill *f = arg;
    struct inputs *in = f->in;
    struct wh_plan_host *ph = &in->hosts[in->n_hosts++];
    struct ctl_host *k = known_host(f->ctl, wh_host_id(h));
    size_t n = 0;
    const struct wh_host_attr *a = wh_host_attributes(h, &n);
    ph->id = wh_host_id(h);
    ph->attributes = in->attrs + f->n_attrs;
    for (size_t i = 0; i < n; i++)
        in->attrs[f->n_attrs++] = (struct wh_plan_attr){a[i].key, a[i].value};
    ph->n_attributes = n;
    ph->cpu_total = (long)wh_host_cpu_total(h);
    ph->memory_total = (long)wh_host_mem_total(h);
    switch (wh_host_state(h)) {
    case WH_HOST_ACTIVE:
        ph->state = WH_PLAN_HOST_ACTIVE;
        break;
    case WH_HOST_DRAINING:
        ph->state = WH_PLAN_HOST_DRAINING;
        break;
    default:
        ph->state = WH_PLAN_HOST_UNREACHABLE;
        ph->unreachable_since = k && k->unreachable_since ? k->unreachable_since : wh_ctl_now();
    }
    if (wh_host_state(h) == WH_HOST_REGISTERING || (k && !k->listed && !k->unreachable_since))
        f->registering = 1;
}

static void fill_service(struct wh_plan_service *p, const struct ctl_service *s)
{
    p->name = s->name;
    p->revision = s->revision;
    p->taskdef = s->taskdef;
    p->desired_count = s->desired;
    p->cpu = s->cpu;
    p->memory = s->memory;
    p->minimum_healthy_percent = s->min_percent;
    p->maximum_percent = s->max_percent;
    p->strategies = s->strategies;
    p->n_strategies = s->n_strategies;
    p->constraints = s->constraints;
    p->n_constraints = s->n_constraints;
    p->health_check_grace_period = s->grace;
    p->target_group = s->target_group;
    p->start_failures = s->start_failures;
    p->last_start_failure = s->last_start_failure;
    p->steady = s->steady;
}

static enum wh_task_health task_health(struct wh_controller *ctl, const struct ctl_task *t)
{
    const struct ctl_service *s = wh_ctl_service(ctl, t->service);
    if (s && !s->target_group)
        return t->state == WH_TASK_RUNNING ? WH_HEALTH_HEALTHY : WH_HEALTH_NONE;
    if (!t->registered_in[0])
        return WH_HEALTH_NONE;
    const struct wh_target *tg = wh_targets_find(ctl->targets, t->registered_in, t->target);
    if (!tg)
        return WH_HEALTH_NONE;
    switch (tg->state) {
    case WH_TARGET_INITIAL:
        return WH_HEALTH_INITIAL;
    case WH_TARGET_HEALTHY:
        return WH_HEALTH_HEALTHY;
    case WH_TARGET_UNHEALTHY:
        return WH_HEALTH_UNHEALTHY;
    default:
        return WH_HEALTH_DRAINING;
    }
}

static void fill_task(struct wh_controller *ctl, struct wh_plan_task *p, struct ctl_task *t)
{
    p->id = t->id;
    p->cluster = t->cluster;
    p->service = t->service;
    p->host = t->host;
    p->revision = t->revision;
    p->taskdef = t->taskdef;
    /* An operation in flight holds the task where it is: the plan sees it
     * on its way (pending or exiting), never as something to act on. */
    p->state =
        t->busy && t->state == WH_TASK_RUNNING && t->stop_pending ? WH_TASK_STOPPING : t->state;
    p->health = task_health(ctl, t);
    p->started_at = t->started_at;
    p->cpu = t->cpu;
    p->memory = t->memory;
    p->host_port = t->host_port;
    p->registered_in = t->registered_in[0] ? t->registered_in : NULL;
    p->tracked = t->tracked;
    p->lost = t->lost;
}

static int inputs_build(struct wh_controller *ctl, struct inputs *in, int *registering)
{
    struct host_fill f = {ctl, in, 0, 0};
    size_t n_hosts = wh_hosts_count(ctl->hosts), n_tasks = 0;
    struct ctl_task *t;
    TAILQ_FOREACH(t, &ctl->tasks, link)
    n_tasks++;
    wh_hosts_foreach(ctl->hosts, count_host_attrs, &f);
    in->hosts = calloc(n_hosts + 1, sizeof(*in->hosts));
    in->attrs = calloc(f.n_attrs + 1, sizeof(*in->attrs));
    in->services = calloc(ctl->n_services + 1, sizeof(*in->services));
    in->tasks = calloc(n_tasks + 1, sizeof(*in->tasks));
    in->task_of = calloc(n_tasks + 1, sizeof(*in->task_of));
    if (!in->hosts || !in->attrs || !in->services || !in->tasks || !in->task_of)
        return -1;
    f.n_attrs = 0;
    wh_hosts_foreach(ctl->hosts, fill_host, &f);
    *registering = f.registering;
    for (size_t i = 0; i < ctl->n_services; i++)
        fill_service(&in->services[i], &ctl->services[i]);
    TAILQ_FOREACH(t, &ctl->tasks, link)
    {
        in->task_of[in->n_tasks] = t;
        fill_task(ctl, &in->tasks[in->n_tasks++], t);
    }
    return 0;
}

/* ---- the reconcile ---- */

static void new_task_id(void *arg, char *out, size_t outlen)
{
    unsigned char b[6];
    if (RAND_bytes(b, sizeof(b)) != 1)
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)rand();
    snprintf(out, outlen, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

/* Keep what the planner keeps between plans, then forget services that
 * left the file and have no task left. */
static void after_plan(struct wh_controller *ctl, const struct wh_plan *plan)
{
    for (size_t i = 0; i < plan->n_status && i < ctl->n_services; i++) {
        ctl->services[i].status = plan->status[i];
        ctl->services[i].steady = plan->status[i].steady;
    }
    for (size_t i = 0; i < ctl->n_services;) {
        struct ctl_service *s = &ctl->services[i];
        struct ctl_task *t;
        int has = 0;
        TAILQ_FOREACH(t, &ctl->tasks, link)
        has |= strcmp(t->service, s->name) == 0;
        if (s->in_file || has) {
            i++;
            continue;
        }
        wh_log_info("controller", "service %s: left the configuration and has no task left",
                    s->name);
        service_clear(s);
        memmove(s, s + 1, (ctl->n_services - i - 1) * sizeof(*s));
        ctl->n_services--;
    }
}

static void arm_wake(struct wh_controller *ctl, double wake_at)
{
    if (wake_at <= 0)
        return;
    double d = wake_at - wh_ctl_now();
    d = d < 0.01 ? 0.01 : d;
    struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(time_t)d) * 1e6)};
    event_add(ctl->wake, &tv);
}

static void reconcile(struct wh_controller *ctl)
{
    struct inputs in = {0};
    int registering = 0;
    wh_ctl_progress(ctl);
    if (inputs_build(ctl, &in, &registering) < 0 || registering) {
        inputs_free(&in); /* adoption waits until every host was heard and listed */
        return;
    }
    struct wh_plan_desired d = {ctl->cluster, in.services, ctl->n_services, ctl->lost_task_grace,
                                ctl->start_backoff_max};
    struct wh_plan_observed o = {wh_ctl_now(), in.tasks, in.n_tasks};
    struct wh_plan_hosts hs = {in.hosts, in.n_hosts};
    struct wh_plan_ids ids = {++ctl->seed, new_task_id, NULL};
    struct wh_plan *plan = wh_plan_reconcile(&d, &o, &hs, &ids);
    if (!plan) {
        wh_log_error("controller", "out of memory while planning");
        inputs_free(&in);
        return;
    }
    wh_ctl_execute(ctl, plan);
    after_plan(ctl, plan);
    arm_wake(ctl, plan->wake_at);
    wh_plan_free(plan);
    inputs_free(&in);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_controller *ctl;
    WH_CAST_OBJ(ctl, arg, CTL_MAGIC);
    ctl->kicked = 0;
    reconcile(ctl);
}

void wh_ctl_kick(struct wh_controller *ctl)
{
    if (ctl->kicked)
        return;
    ctl->kicked = 1;
    event_active(ctl->kick, EV_TIMEOUT, 0);
}

static void interval_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_controller *ctl;
    WH_CAST_OBJ(ctl, arg, CTL_MAGIC);
    wh_ctl_kick(ctl);
}

/* A target changed: health counts and drains finish there. Registry
 * callbacks may not call the registry: the reconcile runs later. */
static void target_event(void *arg, const struct wh_target_event *ev)
{
    struct wh_controller *ctl;
    WH_CAST_OBJ(ctl, arg, CTL_MAGIC);
    if (strncmp(ev->source, "service:", 8) == 0)
        wh_ctl_kick(ctl);
}

struct wh_controller *wh_controller_new(struct event_base *base, struct wh_hosts *hosts,
                                        struct wh_targets *targets)
{
    struct wh_controller *ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        return NULL;
    WH_INIT_OBJ(ctl, CTL_MAGIC);
    ctl->base = base;
    ctl->hosts = hosts;
    ctl->targets = targets;
    snprintf(ctl->cluster, sizeof(ctl->cluster), "default");
    TAILQ_INIT(&ctl->tasks);
    TAILQ_INIT(&ctl->ops);
    ctl->kick = event_new(base, -1, 0, kick_cb, ctl);
    ctl->interval = event_new(base, -1, EV_PERSIST, interval_cb, ctl);
    ctl->wake = evtimer_new(base, interval_cb, ctl);
    if (!ctl->kick || !ctl->interval || !ctl->wake ||
        wh_targets_subscribe(targets, target_event, ctl) < 0) {
        wh_controller_free(ctl);
        return NULL;
    }
    wh_hosts_subscribe(hosts, host_changed, ctl);
    return ctl;
}

void wh_controller_free(struct wh_controller *ctl)
{
    if (!ctl)
        return;
    WH_CHECK_OBJ(ctl, CTL_MAGIC);
    wh_hosts_subscribe(ctl->hosts, NULL, NULL);
    for (size_t i = 0; i < ctl->n_known_hosts; i++) {
        struct ctl_host *k = ctl->known_hosts[i];
        if (k->watch)
            wh_rt_events_stop(k->watch_rt, k->watch);
        WH_FREE_OBJ(k);
    }
    free(ctl->known_hosts);
    struct ctl_op *op;
    while ((op = TAILQ_FIRST(&ctl->ops)))
        wh_ctl_op_free(op);
    struct ctl_task *t;
    while ((t = TAILQ_FIRST(&ctl->tasks))) {
        t->reserved = 0; /* the hosts go with the daemon; nothing to give back */
        wh_ctl_task_free(ctl, t);
    }
    for (size_t i = 0; i < ctl->n_services; i++)
        service_clear(&ctl->services[i]);
    free(ctl->services);
    if (ctl->kick)
        event_free(ctl->kick);
    if (ctl->interval)
        event_free(ctl->interval);
    if (ctl->wake)
        event_free(ctl->wake);
    WH_FREE_OBJ(ctl);
}

/* ---- read-only views ---- */

static const char *const task_state_names[] = {"PROVISIONING", "PENDING",  "RUNNING",
                                               "DEACTIVATING", "STOPPING", "STOPPED"};

int wh_controller_foreach_service(struct wh_controller *ctl, const char *name,
                                  void (*fn)(void *arg, const struct wh_ctl_service_info *s),
                                  void *arg)
{
    int n = 0;
    for (size_t i = 0; i < ctl->n_services; i++) {
        const struct ctl_service *s = &ctl->services[i];
        if (name && strcmp(name, s->name) != 0)
            continue;
        struct wh_ctl_service_info info = {
            .name = s->name,
            .target_group = s->target_group,
            .revision = s->revision,
            .taskdef = s->taskdef,
            .image = s->image,
            .container_port = s->container_port,
            .cpu = s->cpu,
            .memory = s->memory,
            .desired_count = s->desired,
            .running_count = s->status.running,
            .pending_count = s->status.pending,
            .healthy_count = s->status.healthy,
            .minimum_healthy_percent = s->min_percent,
            .maximum_percent = s->max_percent,
            .health_check_grace_period = s->grace,
            .steady = s->steady,
        };
        fn(arg, &info);
        n++;
    }
    return n;
}

static const char *health_name(struct wh_controller *ctl, const struct ctl_task *t)
{
    static const char *const names[] = {"none", "initial", "healthy", "unhealthy", "draining"};
    return names[task_health(ctl, t)];
}

void wh_controller_foreach_task(struct wh_controller *ctl, const char *service,
                                void (*fn)(void *arg, const struct wh_ctl_task_info *t), void *arg)
{
    const struct ctl_task *t;
    TAILQ_FOREACH(t, &ctl->tasks, link)
    {
        if ((service && strcmp(service, t->service) != 0) || strcmp(t->cluster, ctl->cluster))
            continue;
        struct wh_ctl_task_info info = {
            .id = t->id,
            .service = t->service,
            .host = t->host,
            .revision = t->revision,
            .state = task_state_names[t->state],
            .host_port = t->host_port,
            .target = t->registered_in[0] ? t->target : NULL,
            .health = health_name(ctl, t),
            .started_at = t->started_at,
            .stopped_reason = t->stopped_reason,
        };
        fn(arg, &info);
    }
}

int wh_controller_foreach_event(struct wh_controller *ctl, const char *service,
                                void (*fn)(void *arg, unsigned long id, double time,
                                           const char *message),
                                void *arg)
{
    const struct ctl_service *s = wh_ctl_service(ctl, service);
    if (!s)
        return -1;
    for (size_t i = 0; i < s->n_events; i++) {
        const struct ctl_event *e = &s->events[(s->head + CTL_EVENTS_MAX - 1 - i) % CTL_EVENTS_MAX];
        fn(arg, e->id, e->time, e->message);
    }
    return 0;
}

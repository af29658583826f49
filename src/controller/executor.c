/* The executor: runs a plan's actions through the runtime and the target
 * registry, and turns what comes back (answers, container events, listed
 * containers) into the task table the next plan reads.
 *
 * A task's life: START makes it PROVISIONING (image per pull policy,
 * create, start, inspect for the published port), then RUNNING; REGISTER
 * adds host-address:port to its target group; STOP deregisters it (the
 * group drains it: DEACTIVATING), stops the container once the target is
 * gone (STOPPING, SIGTERM then SIGKILL after stop_timeout), then removes
 * it. A container that dies on its own is STOPPED: its target leaves at
 * once (nothing to drain), and the plan removes and replaces it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/controller-int.h"
#include "wharf/hosts.h"
#include "wharf/log.h"
#include "wharf/obj.h"
#include "wharf/targets.h"

/* ---- labels ---- */

static const char *label_of(const struct wh_rt_kv *labels, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(labels[i].key, key) == 0)
            return labels[i].value;
    return NULL;
}

static double rfc3339_secs(const char *text)
{
    struct tm tm = {0};
    if (!text || !text[0] || !strptime(text, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    return (double)timegm(&tm);
}

/* ---- adoption: listed containers into the table ---- */

static void adopt_one(struct wh_controller *ctl, const char *host, const struct wh_rt_container *c)
{
    const char *id = label_of(c->labels, c->n_labels, "wharf.task");
    const char *svc = label_of(c->labels, c->n_labels, "wharf.service");
    const char *cluster = label_of(c->labels, c->n_labels, "wharf.cluster");
    if (!id || !svc || !cluster || strcmp(cluster, ctl->cluster) != 0)
        return; /* not ours: never touched */
    struct ctl_task *t = wh_ctl_task(ctl, id);
    if (!t && !(t = wh_ctl_task_new(ctl, id, svc, host)))
        return;
    if (t->busy)
        return; /* our own operation says more than the listing */
    snprintf(t->container, sizeof(t->container), "%s", c->id);
    const char *rev = label_of(c->labels, c->n_labels, "wharf.revision");
    const char *def = label_of(c->labels, c->n_labels, "wharf.taskdef");
    t->revision = rev ? atoi(rev) : 0;
    snprintf(t->taskdef, sizeof(t->taskdef), "%s", def ? def : "");
    if (c->host_port)
        t->host_port = c->host_port;
    if (c->running) {
        t->state = t->state == WH_TASK_DEACTIVATING ? t->state : WH_TASK_RUNNING;
        if (!t->started_at)
            t->started_at = rfc3339_secs(c->started_at);
    } else if (t->state != WH_TASK_STOPPING) {
        t->state = strcmp(c->state, "created") == 0 ? WH_TASK_PENDING : WH_TASK_STOPPED;
    }
    struct ctl_service *s = wh_ctl_service(ctl, svc);
    if (s && !t->reserved) {
        struct wh_host *h = wh_ctl_host(ctl, host);
        t->cpu = s->cpu;
        t->memory = s->memory;
        if (h) {
            wh_host_reserve(h, t->cpu, t->memory);
            t->reserved = 1;
        }
    }
}

void wh_ctl_adopt_list(struct wh_controller *ctl, const char *host,
                       const struct wh_rt_container *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        adopt_one(ctl, host, &list[i]);
    /* Tasks of this host that the engine no longer has are gone. */
    struct ctl_task *t, *next;
    for (t = TAILQ_FIRST(&ctl->tasks); t; t = next) {
        next = TAILQ_NEXT(t, link);
        if (strcmp(t->host, host) != 0 || t->busy || !t->container[0])
            continue;
        int found = 0;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(list[i].id, t->container) == 0;
        if (!found) {
            if (t->registered_in[0])
                wh_targets_deregister(ctl->targets, t->registered_in, t->target);
            wh_ctl_task_free(ctl, t);
        }
    }
}

/* ---- container events ---- */

static struct ctl_task *task_of_container(struct wh_controller *ctl, const char *container)
{
    struct ctl_task *t;
    TAILQ_FOREACH(t, &ctl->tasks, link)
    if (t->container[0] && strcmp(t->container, container) == 0)
        return t;
    return NULL;
}

/* The task's container exited on its own: its target leaves at once. */
static void task_died(struct wh_controller *ctl, struct ctl_task *t, int exit_code)
{
    t->state = WH_TASK_STOPPED;
    snprintf(t->stopped_reason, sizeof(t->stopped_reason),
             "Essential container in task exited "
             "(exit code %d)",
             exit_code);
    if (t->registered_in[0]) {
        wh_targets_set_health(ctl->targets, t->registered_in, t->target, 0, "task_stopped");
        wh_targets_deregister(ctl->targets, t->registered_in, t->target);
        t->registered_in[0] = '\0';
    }
    struct ctl_service *s = wh_ctl_service(ctl, t->service);
    wh_ctl_event(ctl, s, "(service %s) task %s on host %s stopped: %s.", t->service, t->id, t->host,
                 t->stopped_reason);
}

void wh_ctl_container_event(struct wh_controller *ctl, const char *host,
                            const struct wh_rt_event *ev)
{
    struct ctl_task *t = task_of_container(ctl, ev->id);
    if (!t) {
        const char *id = label_of(ev->labels, ev->n_labels, "wharf.task");
        t = id ? wh_ctl_task(ctl, id) : NULL; /* created by us, id not known yet */
    }
    if (!t) {
        /* A container of this cluster we do not know (made elsewhere, or
         * while we were away): the next listing of its host adopts it. */
        if (strcmp(ev->action, "start") == 0) {
            struct wh_host *h = wh_ctl_host(ctl, host);
            struct wh_rt_container c = {0};
            snprintf(c.id, sizeof(c.id), "%s", ev->id);
            snprintf(c.state, sizeof(c.state), "running");
            c.running = 1;
            c.labels = ev->labels;
            c.n_labels = ev->n_labels;
            if (h)
                adopt_one(ctl, host, &c); /* port unknown: the plan waits for an inspect */
        }
        return;
    }
    if (strcmp(ev->action, "die") == 0 || strcmp(ev->action, "oom") == 0) {
        if (t->state == WH_TASK_RUNNING && !t->busy)
            task_died(ctl, t, ev->exit_code);
    } else if (strncmp(ev->action, "health_status: ", 15) == 0) {
        snprintf(t->docker_health, sizeof(t->docker_health), "%s", ev->action + 15);
    } else if (strcmp(ev->action, "destroy") == 0 && !t->busy) {
        wh_ctl_task_free(ctl, t);
    }
}

/* ---- operations ---- */

/* An operation's answer arrived: the op goes, its task (NULL when the task
 * went meanwhile) and controller come back. */
static struct ctl_task *op_done(void *arg, struct wh_controller **ctl)
{
    struct ctl_op *op = arg;
    struct ctl_task *t = wh_ctl_op_task(op);
    *ctl = op->ctl;
    wh_ctl_op_free(op);
    return t;
}

/* ---- starting a task ---- */

static void start_failed(struct wh_controller *ctl, struct ctl_task *t, const char *why)
{
    struct ctl_service *s = wh_ctl_service(ctl, t->service);
    if (s) {
        s->start_failures++;
        s->last_start_failure = wh_ctl_now();
    }
    wh_ctl_event(ctl, s, "(service %s) failed to launch a task on host %s: %s", t->service, t->host,
                 why);
    t->busy = 0;
    if (t->container[0]) { /* created: remove what is left of it */
        struct wh_host *h = wh_ctl_host(ctl, t->host);
        t->state = WH_TASK_STOPPED;
        if (h)
            wh_ctl_stop_container(ctl, t);
        return;
    }
    wh_ctl_task_free(ctl, t);
}

static void inspect_done(void *arg, const struct wh_rt_error *err, const struct wh_rt_container *c)
{
    struct wh_controller *ctl;
    struct ctl_task *t = op_done(arg, &ctl);
    if (!t)
        return;
    if (err->kind != WH_RT_OK || !c->running || !c->host_port) {
        start_failed(ctl, t,
                     err->kind != WH_RT_OK ? err->message
                     : !c->running         ? "the container exited at once"
                                           : "the container port is not published");
        wh_ctl_kick(ctl);
        return;
    }
    t->busy = 0;
    snprintf(t->docker_health, sizeof(t->docker_health), "%s", c->health);
    t->host_port = c->host_port;
    t->state = WH_TASK_RUNNING;
    t->started_at = wh_ctl_now();
    struct ctl_service *s = wh_ctl_service(ctl, t->service);
    if (s)
        s->start_failures = 0;
    if (t->stop_pending) {
        t->stop_pending = 0;
        wh_ctl_stop_container(ctl, t);
    }
    wh_ctl_kick(ctl);
}

static int step(struct wh_controller *ctl, struct ctl_task *t, struct ctl_op **op)
{
    *op = wh_ctl_op_new(ctl, t);
    return *op ? 0 : -1;
}

static void started(void *arg, const struct wh_rt_error *err)
{
    struct wh_controller *ctl;
    struct ctl_task *t = op_done(arg, &ctl);
    if (!t)
        return;
    struct wh_host *h = wh_ctl_host(ctl, t->host);
    if (err->kind != WH_RT_OK || !h) {
        start_failed(ctl, t, h ? err->message : "host removed");
        wh_ctl_kick(ctl);
        return;
    }
    struct ctl_op *next;
    if (step(ctl, t, &next) < 0 ||
        wh_rt_inspect(wh_host_runtime(h), t->container, inspect_done, next) < 0) {
        if (next)
            wh_ctl_op_free(next);
        start_failed(ctl, t, "out of memory");
    }
}

static void created(void *arg, const struct wh_rt_error *err, const char *id)
{
    struct wh_controller *ctl;
    struct ctl_task *t = op_done(arg, &ctl);
    if (!t)
        return;
    struct wh_host *h = wh_ctl_host(ctl, t->host);
    if (err->kind != WH_RT_OK || !h) {
        start_failed(ctl, t, h ? err->message : "host removed");
        wh_ctl_kick(ctl);
        return;
    }
    snprintf(t->container, sizeof(t->container), "%s", id);
    t->state = WH_TASK_PENDING;
    struct ctl_op *next;
    if (step(ctl, t, &next) < 0 || wh_rt_start(wh_host_runtime(h), id, started, next) < 0) {
        if (next)
            wh_ctl_op_free(next);
        start_failed(ctl, t, "out of memory");
    }
}

/* The container of t, as ECS makes a task: labels, env with WHARF_TASK_ID,
 * the container port published on a dynamic host port, the reservations. */
static int create_container(struct wh_controller *ctl, struct ctl_task *t,
                            const struct ctl_service *s, struct wh_host *h)
{
    char rev[16], name[256];
    snprintf(rev, sizeof(rev), "%d", s->revision);
    snprintf(name, sizeof(name), "wharf-%s-%s-%s", ctl->cluster, s->name, t->id);
    struct wh_rt_kv labels[] = {{"wharf.cluster", ctl->cluster},
                                {"wharf.service", (char *)s->name},
                                {"wharf.revision", rev},
                                {"wharf.taskdef", (char *)s->taskdef},
                                {"wharf.task", t->id}};
    struct wh_rt_kv *env = calloc(s->n_env + 1, sizeof(*env));
    if (!env)
        return -1;
    memcpy(env, s->env, s->n_env * sizeof(*env));
    env[s->n_env] = (struct wh_rt_kv){"WHARF_TASK_ID", t->id};
    struct wh_rt_create_spec spec = {
        .name = name,
        .image = s->image,
        .cmd = (const char *const *)s->command,
        .n_cmd = s->n_command,
        .env = env,
        .n_env = s->n_env + 1,
        .labels = labels,
        .n_labels = sizeof(labels) / sizeof(labels[0]),
        .container_port = s->container_port,
        .memory_mib = s->memory,
        .cpu_shares = s->cpu,
        .stop_timeout = s->stop_timeout,
        .log_driver = s->log_driver,
        .log_opts = s->log_opts,
        .n_log_opts = s->n_log_opts,
    };
    struct ctl_op *op;
    int rc = step(ctl, t, &op);
    if (rc == 0 && (rc = wh_rt_create(wh_host_runtime(h), &spec, created, op)) < 0)
        wh_ctl_op_free(op);
    free(env);
    return rc;
}

static void image_ready(void *arg, const struct wh_rt_error *err)
{
    struct wh_controller *ctl;
    struct ctl_task *t = op_done(arg, &ctl);
    if (!t)
        return;
    struct ctl_service *s = wh_ctl_service(ctl, t->service);
    struct wh_host *h = wh_ctl_host(ctl, t->host);
    if (err->kind != WH_RT_OK || !s || !h) {
        start_failed(ctl, t, err->kind != WH_RT_OK ? err->message : "service or host removed");
        wh_ctl_kick(ctl);
        return;
    }
    if (create_container(ctl, t, s, h) < 0) {
        start_failed(ctl, t, "out of memory");
        wh_ctl_kick(ctl);
    }
}

static void act_start(struct wh_controller *ctl, const struct wh_plan_action *a)
{
    struct ctl_service *s = wh_ctl_service(ctl, a->service->name);
    struct wh_host *h = wh_ctl_host(ctl, a->host->id);
    if (!s || !h)
        return;
    struct ctl_task *t = wh_ctl_task_new(ctl, a->task_id, s->name, a->host->id);
    if (!t)
        return;
    t->state = WH_TASK_PROVISIONING;
    t->busy = 1;
    t->tracked = 1;
    t->revision = s->revision;
    snprintf(t->taskdef, sizeof(t->taskdef), "%s", s->taskdef);
    t->cpu = s->cpu;
    t->memory = s->memory;
    wh_host_reserve(h, t->cpu, t->memory);
    t->reserved = 1;
    const struct ctl_registry *r = wh_ctl_registry_for(ctl, s->image);
    struct wh_rt_auth auth = {r ? r->username : NULL, r ? r->password : NULL, r ? r->server : NULL};
    struct ctl_op *op;
    if (step(ctl, t, &op) < 0 || wh_rt_image_pull(wh_host_runtime(h), s->image, r ? &auth : NULL,
                                                  s->pull, image_ready, op) < 0) {
        if (op)
            wh_ctl_op_free(op);
        start_failed(ctl, t, "out of memory");
    }
}

/* ---- stopping a task ---- */

static void removed(void *arg, const struct wh_rt_error *err)
{
    struct wh_controller *ctl;
    struct ctl_task *t = op_done(arg, &ctl);
    if (!t)
        return;
    if (err->kind != WH_RT_OK && !wh_rt_error_not_found(err)) {
        wh_log_warn("controller", "task %s: removing container %.12s on %s: %s", t->id,
                    t->container, t->host, err->message);
        t->busy = 0; /* the next listing or plan tries again */
        t->state = WH_TASK_STOPPED;
        return;
    }
    wh_ctl_task_free(ctl, t);
    wh_ctl_kick(ctl);
}

static void remove_container(struct wh_controller *ctl, struct ctl_task *t)
{
    struct wh_host *h = wh_ctl_host(ctl, t->host);
    struct ctl_op *op;
    t->busy = 1;
    if (!h || step(ctl, t, &op) < 0 ||
        wh_rt_remove(wh_host_runtime(h), t->container, 1, removed, op) < 0) {
        t->busy = 0;
        if (h && op)
            wh_ctl_op_free(op);
    }
}

static void stopped(void *arg, const struct wh_rt_error *err)
{
    struct wh_controller *ctl;
    struct ctl_task *t = op_done(arg, &ctl);
    if (!t)
        return;
    if (err->kind != WH_RT_OK && !wh_rt_error_not_found(err))
        wh_log_warn("controller", "task %s: stopping container %.12s on %s: %s", t->id,
                    t->container, t->host, err->message);
    t->state = WH_TASK_STOPPED;
    remove_container(ctl, t);
}

void wh_ctl_stop_container(struct wh_controller *ctl, struct ctl_task *t)
{
    struct wh_host *h = wh_ctl_host(ctl, t->host);
    struct ctl_service *s = wh_ctl_service(ctl, t->service);
    if (!t->container[0]) {
        wh_ctl_task_free(ctl, t);
        return;
    }
    if (t->state == WH_TASK_STOPPED) {
        remove_container(ctl, t);
        return;
    }
    struct ctl_op *op;
    t->state = WH_TASK_STOPPING;
    t->busy = 1;
    if (!h || step(ctl, t, &op) < 0 ||
        wh_rt_stop(wh_host_runtime(h), t->container, s ? s->stop_timeout : 30, stopped, op) < 0) {
        t->busy = 0;
        if (h && op)
            wh_ctl_op_free(op);
    }
}

static void act_stop(struct wh_controller *ctl, struct ctl_task *t, const struct wh_plan_action *a)
{
    if (a->message)
        snprintf(t->stopped_reason, sizeof(t->stopped_reason), "%s", a->message);
    if (t->busy) {
        t->stop_pending = 1; /* after the start in flight */
        return;
    }
    if (t->registered_in[0] && a->drain) {
        wh_targets_deregister(ctl->targets, t->registered_in, t->target);
        t->state = WH_TASK_DEACTIVATING; /* wh_ctl_progress stops it once drained */
        return;
    }
    if (t->registered_in[0]) {
        wh_targets_deregister(ctl->targets, t->registered_in, t->target);
        t->registered_in[0] = '\0';
    }
    wh_ctl_stop_container(ctl, t);
}

void wh_ctl_progress(struct wh_controller *ctl)
{
    struct ctl_task *t, *next;
    for (t = TAILQ_FIRST(&ctl->tasks); t; t = next) {
        next = TAILQ_NEXT(t, link);
        if (t->state != WH_TASK_DEACTIVATING || t->busy)
            continue;
        const struct wh_target *tg =
            t->registered_in[0] ? wh_targets_find(ctl->targets, t->registered_in, t->target) : NULL;
        if (tg && tg->state != WH_TARGET_UNUSED)
            continue; /* still draining */
        t->registered_in[0] = '\0';
        wh_ctl_stop_container(ctl, t);
    }
}

/* ---- registration ---- */

static void act_register(struct wh_controller *ctl, struct ctl_task *t, const char *group)
{
    struct wh_host *h = wh_ctl_host(ctl, t->host);
    char err[WH_ERR_LEN], source[WH_NAME_MAX + 16];
    if (!h || !t->host_port || t->registered_in[0])
        return;
    const char *addr = wh_host_address(h);
    if (strchr(addr, ':'))
        snprintf(t->target, sizeof(t->target), "[%s]:%d", addr, t->host_port);
    else
        snprintf(t->target, sizeof(t->target), "%s:%d", addr, t->host_port);
    snprintf(source, sizeof(source), "service:%s", t->service);
    int rc = wh_targets_register(ctl->targets, group, t->target, 1, source, err, sizeof(err));
    if (rc != WH_TARGETS_OK && rc != WH_TARGETS_EXISTS) {
        wh_log_warn("controller", "task %s: registering %s in %s: %s", t->id, t->target, group,
                    err);
        return;
    }
    snprintf(t->registered_in, sizeof(t->registered_in), "%s", group);
}

/* ---- the plan ---- */

static struct ctl_task *task_of_action(struct wh_controller *ctl, const struct wh_plan_action *a)
{
    return a->task ? wh_ctl_task(ctl, a->task->id) : NULL;
}

static void act(struct wh_controller *ctl, const struct wh_plan_action *a)
{
    struct ctl_task *t = task_of_action(ctl, a);
    struct ctl_service *s = a->service ? wh_ctl_service(ctl, a->service->name) : NULL;
    switch (a->type) {
    case WH_ACT_REPORT:
        if (t)
            t->tracked = 1;
        wh_ctl_event(ctl, s, "%s", a->message ? a->message : "unknown task");
        break;
    case WH_ACT_ADOPT:
        if (t)
            t->tracked = 1;
        break;
    case WH_ACT_LOST:
        if (t)
            t->lost = 1;
        break;
    case WH_ACT_DEREGISTER:
        if (t && t->registered_in[0]) {
            wh_targets_deregister(ctl->targets, t->registered_in, t->target);
            t->registered_in[0] = '\0';
        }
        break;
    case WH_ACT_REMOVE:
        if (t && !t->busy)
            remove_container(ctl, t);
        break;
    case WH_ACT_REGISTER:
        if (t && !t->busy && a->target_group)
            act_register(ctl, t, a->target_group);
        break;
    case WH_ACT_START:
        act_start(ctl, a);
        break;
    case WH_ACT_STOP:
        if (t && t->state != WH_TASK_STOPPING && t->state != WH_TASK_DEACTIVATING)
            act_stop(ctl, t, a);
        break;
    case WH_ACT_EVENT:
        wh_ctl_event(ctl, s, "%s", a->message ? a->message : "");
        break;
    }
}

void wh_ctl_execute(struct wh_controller *ctl, const struct wh_plan *plan)
{
    for (size_t i = 0; i < plan->n_actions; i++)
        act(ctl, &plan->actions[i]);
}

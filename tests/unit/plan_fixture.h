/* A small world for the planner's tests (test_placement.c,
 * test_reconcile.c): hosts, services and tasks made in a line each, a plan
 * made from them, and the plan written out one action per line so that a
 * test compares the whole plan with what it expects. */
#ifndef WHARF_TESTS_PLAN_FIXTURE_H
#define WHARF_TESTS_PLAN_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/plan.h"
#include "wharf/query.h"

#define FX_MAX 256

struct fx {
    struct wh_plan_host hosts[FX_MAX];
    struct wh_plan_attr attrs[FX_MAX][4];
    size_t n_hosts;
    struct wh_plan_service services[8];
    struct wh_place_strategy strategies[8][4];
    struct wh_place_constraint constraints[8][4];
    size_t n_services;
    struct wh_query *queries[16];
    size_t n_queries;
    struct wh_plan_task tasks[FX_MAX];
    size_t n_tasks;
    double now;
    unsigned long seq;
    uint64_t seed;
    double lost_task_grace, start_backoff_max;
    struct wh_plan *plan;
    char text[16384];
};

static inline struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->now = 1000;
    f->lost_task_grace = 30;
    f->start_backoff_max = 900;
    f->seed = 42;
    return f;
}

static inline void fx_free(struct fx *f)
{
    for (size_t i = 0; i < f->n_queries; i++)
        wh_query_free(f->queries[i]);
    wh_plan_free(f->plan);
    free(f);
}

/* An ACTIVE host with 4 cores, 8 GiB and attribute az (NULL = none). */
static inline struct wh_plan_host *fx_host(struct fx *f, const char *id, const char *az)
{
    size_t i = f->n_hosts++;
    struct wh_plan_host *h = &f->hosts[i];
    *h = (struct wh_plan_host){.id = id, .cpu_total = 4096, .memory_total = 8192};
    h->attributes = f->attrs[i];
    if (az)
        f->attrs[i][h->n_attributes++] = (struct wh_plan_attr){"az", az};
    return h;
}

static inline void fx_attr(struct fx *f, struct wh_plan_host *h, const char *name,
                           const char *value)
{
    f->attrs[h - f->hosts][h->n_attributes++] = (struct wh_plan_attr){name, value};
}

/* desired tasks of 256 CPU units and 128 MiB, min 100 % / max 200 %, in
 * target group `group` (NULL = none). */
static inline struct wh_plan_service *fx_service(struct fx *f, const char *name, int desired,
                                                 const char *group)
{
    size_t i = f->n_services++;
    struct wh_plan_service *s = &f->services[i];
    *s = (struct wh_plan_service){.name = name,
                                  .revision = 1,
                                  .taskdef = "abc123",
                                  .desired_count = desired,
                                  .cpu = 256,
                                  .memory = 128,
                                  .minimum_healthy_percent = 100,
                                  .maximum_percent = 200,
                                  .target_group = group};
    s->strategies = f->strategies[i];
    s->constraints = f->constraints[i];
    return s;
}

static inline void fx_strategy(struct fx *f, struct wh_plan_service *s, const char *type,
                               const char *field)
{
    char err[256];
    struct wh_place_strategy *st = &f->strategies[s - f->services][s->n_strategies++];
    if (wh_place_strategy_parse(type, field, st, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
}

static inline void fx_distinct(struct fx *f, struct wh_plan_service *s)
{
    f->constraints[s - f->services][s->n_constraints++] =
        (struct wh_place_constraint){.type = WH_PLACE_DISTINCT_INSTANCE};
}

static inline void fx_member_of(struct fx *f, struct wh_plan_service *s, const char *expr)
{
    char err[256];
    struct wh_query *q = wh_query_parse(expr, err, sizeof(err));
    if (!q) {
        fprintf(stderr, "%s: %s\n", expr, err);
        abort();
    }
    f->queries[f->n_queries++] = q;
    f->constraints[s - f->services][s->n_constraints++] =
        (struct wh_place_constraint){.type = WH_PLACE_MEMBER_OF, .query = q};
}

static inline struct wh_plan_service *fx_find_service(struct fx *f, const char *name)
{
    for (size_t i = 0; i < f->n_services; i++)
        if (strcmp(f->services[i].name, name) == 0)
            return &f->services[i];
    return NULL;
}

/* A tracked RUNNING task, healthy and registered in its service's group,
 * started `age` seconds ago. */
static inline struct wh_plan_task *fx_task(struct fx *f, const char *id, const char *service,
                                           const char *host, double age)
{
    struct wh_plan_task *t = &f->tasks[f->n_tasks++];
    const struct wh_plan_service *s = fx_find_service(f, service);
    *t = (struct wh_plan_task){.id = id,
                               .cluster = "default",
                               .service = service,
                               .host = host,
                               .revision = 1,
                               .taskdef = "abc123",
                               .state = WH_TASK_RUNNING,
                               .health = s && s->target_group ? WH_HEALTH_HEALTHY : WH_HEALTH_NONE,
                               .started_at = f->now - age,
                               .cpu = s ? s->cpu : 0,
                               .memory = s ? s->memory : 0,
                               .host_port = 32768 + (int)f->n_tasks,
                               .registered_in = s ? s->target_group : NULL,
                               .tracked = 1};
    return t;
}

/* The plan, written one action per line:
 *   START service new-id host | STOP id drain|now: reason | REGISTER id group
 *   DEREGISTER id group drain|now | REMOVE id | ADOPT id | LOST id
 *   REPORT id: message | EVENT service: message */
static inline const char *fx_render(struct fx *f)
{
    size_t n = 0, cap = sizeof(f->text);
    f->text[0] = '\0';
    for (size_t i = 0; i < f->plan->n_actions && n < cap; i++) {
        const struct wh_plan_action *a = &f->plan->actions[i];
        const char *id = a->task ? a->task->id : "";
        switch (a->type) {
        case WH_ACT_START:
            n += (size_t)snprintf(f->text + n, cap - n, "START %s %s %s\n", a->service->name,
                                  a->task_id, a->host->id);
            break;
        case WH_ACT_STOP:
            n += (size_t)snprintf(f->text + n, cap - n, "STOP %s %s: %s\n", id,
                                  a->drain ? "drain" : "now", a->message);
            break;
        case WH_ACT_REGISTER:
            n += (size_t)snprintf(f->text + n, cap - n, "REGISTER %s %s\n", id, a->target_group);
            break;
        case WH_ACT_DEREGISTER:
            n += (size_t)snprintf(f->text + n, cap - n, "DEREGISTER %s %s %s\n", id,
                                  a->target_group, a->drain ? "drain" : "now");
            break;
        case WH_ACT_REMOVE:
            n += (size_t)snprintf(f->text + n, cap - n, "REMOVE %s\n", id);
            break;
        case WH_ACT_ADOPT:
            n += (size_t)snprintf(f->text + n, cap - n, "ADOPT %s\n", id);
            break;
        case WH_ACT_LOST:
            n += (size_t)snprintf(f->text + n, cap - n, "LOST %s\n", id);
            break;
        case WH_ACT_REPORT:
            n += (size_t)snprintf(f->text + n, cap - n, "REPORT %s: %s\n", id, a->message);
            break;
        case WH_ACT_EVENT:
            n += (size_t)snprintf(f->text + n, cap - n, "EVENT %s: %s\n", a->service->name,
                                  a->message);
            break;
        }
    }
    return f->text;
}

/* Plans the world as it is and returns the plan's text. */
static inline const char *fx_plan(struct fx *f)
{
    wh_plan_free(f->plan);
    struct wh_plan_desired d = {.cluster = "default",
                                .services = f->services,
                                .n_services = f->n_services,
                                .lost_task_grace = f->lost_task_grace,
                                .start_backoff_max = f->start_backoff_max};
    struct wh_plan_observed o = {.now = f->now, .tasks = f->tasks, .n_tasks = f->n_tasks};
    struct wh_plan_hosts h = {.hosts = f->hosts, .n_hosts = f->n_hosts};
    struct wh_plan_ids ids = {.seed = f->seed, .new_id = wh_plan_seq_id, .arg = &f->seq};
    f->plan = wh_plan_reconcile(&d, &o, &h, &ids);
    if (!f->plan)
        abort();
    return fx_render(f);
}

/* The hosts of the plan's STARTs, in order, separated by spaces. */
static inline const char *fx_start_hosts(struct fx *f)
{
    size_t n = 0, cap = sizeof(f->text);
    f->text[0] = '\0';
    for (size_t i = 0; i < f->plan->n_actions && n < cap; i++)
        if (f->plan->actions[i].type == WH_ACT_START)
            n += (size_t)snprintf(f->text + n, cap - n, "%s%s", n ? " " : "",
                                  f->plan->actions[i].host->id);
    return f->text;
}

#endif

/* The reconcile (ECS's service scheduler as a pure function): for every
 * service, compare its tasks with its desired count and settings and say
 * what to do. Each service is planned in four steps:
 *
 *   classify  every task of the service: exited, lost, stopping, kept, on a
 *             draining host, or failed (unhealthy past its grace period);
 *   decide    which to stop: surplus (scale-in), draining-host tasks within
 *             minimum_healthy_percent, failed ones once replaced (or first,
 *             when maximum_percent leaves no room to start);
 *   act       adopt, mark lost, deregister, remove, register, start
 *             (placement), stop, in that order;
 *   tell      ECS's events for what was done, and the steady state.
 *
 * Time only enters through observed->now, and randomness through ids. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/plan.h"

#define RECONCILE_SPREAD_KEYS 4 /* spread strategies that order scale-in victims */
#define RECONCILE_LIST_TASKS 20 /* tasks named in one event, then "and N more" */

enum reconcile_class {
    RECONCILE_GONE,    /* exited: remove */
    RECONCILE_LOST,    /* on a host unreachable past lost_task_grace (or unknown) */
    RECONCILE_EXITING, /* DEACTIVATING or STOPPING: on its way out */
    RECONCILE_KEPT,    /* counts toward the desired count */
    RECONCILE_DRAIN,   /* on a draining host: to replace, then stop */
    RECONCILE_FAILED,  /* unhealthy past the grace period: to replace, then stop */
};

struct reconcile_task {
    const struct wh_plan_task *t;
    long host; /* fleet index, -1 = unknown host */
    enum reconcile_class cls;
    unsigned char reachable;
    unsigned char healthy; /* passes its health checks now */
    unsigned char stop;    /* this plan stops it */
    enum wh_stop_reason reason;
    int spread_key[RECONCILE_SPREAD_KEYS];
};

struct reconcile {
    const struct wh_plan_desired *d;
    const struct wh_plan_observed *o;
    const struct wh_plan_hosts *hs;
    const struct wh_plan_ids *ids;
    struct wh_plan *plan;
    struct wh_place_fleet *fleet;
    uint64_t rng;
    unsigned long seq; /* ids when the caller gives no generator */
    long *task_host;   /* per input task: fleet index or -1 */
    long *task_svc;    /* per input task: service index, -1 unknown, -2 other cluster */
    size_t *order;     /* task indices grouped by service */
    size_t *first;     /* per service: its first position in order; n_services + 1 */
    struct reconcile_task *rt;
    int *vcount; /* scratch: tasks per spread value */
    int failed;  /* out of memory */
};

/* One service's plan in the making. */
struct reconcile_svc {
    const struct wh_plan_service *svc;
    struct wh_plan_status *st;
    struct reconcile_task *rt;
    size_t n;
    int desired, max_total, min_healthy;
    int kept, drain, failed, exist;
    int healthy; /* among kept and draining tasks not stopped by this plan */
    int need, room;
    size_t first_action;
};

/* ---- the plan's actions ---- */

static void reconcile_wake(struct reconcile *r, double at)
{
    if (at > r->o->now && (r->plan->wake_at == 0 || at < r->plan->wake_at))
        r->plan->wake_at = at;
}

static struct wh_plan_action *reconcile_act(struct reconcile *r, enum wh_plan_action_type type,
                                            const struct wh_plan_service *svc,
                                            const struct reconcile_task *rt)
{
    struct wh_plan *p = r->plan;
    if (r->failed)
        return NULL;
    if (p->n_actions == p->cap_actions) {
        size_t cap = p->cap_actions ? p->cap_actions * 2 : 64;
        struct wh_plan_action *a = realloc(p->actions, cap * sizeof(*a));
        if (!a) {
            r->failed = 1;
            return NULL;
        }
        p->actions = a;
        p->cap_actions = cap;
    }
    struct wh_plan_action *a = &p->actions[p->n_actions++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    a->service = svc;
    if (rt) {
        a->task = rt->t;
        a->host = rt->host >= 0 ? &r->hs->hosts[rt->host] : NULL;
    }
    return a;
}

__attribute__((format(printf, 2, 3))) static char *reconcile_format(struct reconcile *r,
                                                                    const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) {
        s = NULL;
        r->failed = 1;
    }
    va_end(ap);
    return s;
}

static void reconcile_event(struct reconcile *r, const struct wh_plan_service *svc, char *message)
{
    struct wh_plan_action *a = message ? reconcile_act(r, WH_ACT_EVENT, svc, NULL) : NULL;
    if (a)
        a->message = message;
    else
        free(message);
}

/* ---- inputs: hosts, services and tasks indexed ---- */

struct reconcile_name {
    const char *name;
    long index;
};

static int reconcile_name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct reconcile_name *)a)->name,
                  ((const struct reconcile_name *)b)->name);
}

static int reconcile_same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Each task's host and service, resources reserved, tasks grouped by
 * service (a counting sort: the services keep the input's order). */
static int reconcile_index(struct reconcile *r)
{
    size_t n = r->o->n_tasks, ns = r->d->n_services;
    struct reconcile_name *names = calloc(ns + 1, sizeof(*names));
    r->task_host = calloc(n + 1, sizeof(*r->task_host));
    r->task_svc = calloc(n + 1, sizeof(*r->task_svc));
    r->order = calloc(n + 1, sizeof(*r->order));
    r->first = calloc(ns + 2, sizeof(*r->first));
    r->rt = calloc(n + 1, sizeof(*r->rt));
    r->vcount = calloc(r->hs->n_hosts + 2, sizeof(*r->vcount));
    if (!names || !r->task_host || !r->task_svc || !r->order || !r->first || !r->rt || !r->vcount) {
        free(names);
        return -1;
    }
    for (size_t s = 0; s < ns; s++)
        names[s] = (struct reconcile_name){.name = r->d->services[s].name, .index = (long)s};
    qsort(names, ns, sizeof(*names), reconcile_name_cmp);
    for (size_t i = 0; i < n; i++) {
        const struct wh_plan_task *t = &r->o->tasks[i];
        long h = wh_place_fleet_find(r->fleet, t->host);
        r->task_host[i] = h;
        if (h >= 0 && t->state != WH_TASK_STOPPED)
            wh_place_fleet_reserve(r->fleet, h, t->cpu, t->memory);
        struct reconcile_name key = {.name = t->service ? t->service : ""};
        const struct reconcile_name *found =
            bsearch(&key, names, ns, sizeof(*names), reconcile_name_cmp);
        r->task_svc[i] = !reconcile_same(t->cluster, r->d->cluster) ? -2
                         : found                                    ? found->index
                                                                    : -1;
        if (r->task_svc[i] >= 0)
            r->first[r->task_svc[i] + 1]++;
    }
    free(names);
    for (size_t s = 0; s < ns; s++)
        r->first[s + 1] += r->first[s];
    size_t *fill = calloc(ns + 1, sizeof(*fill));
    if (!fill)
        return -1;
    for (size_t i = 0; i < n; i++) {
        long s = r->task_svc[i];
        if (s >= 0)
            r->order[r->first[s] + fill[s]++] = i;
    }
    free(fill);
    return 0;
}

/* Containers of this cluster whose service is unknown: said once, never
 * touched (an operator's container or a service another wharfd runs). */
static void reconcile_report_unknown(struct reconcile *r)
{
    for (size_t i = 0; i < r->o->n_tasks; i++) {
        const struct wh_plan_task *t = &r->o->tasks[i];
        if (r->task_svc[i] != -1 || t->tracked)
            continue;
        struct reconcile_task rt = {.t = t, .host = r->task_host[i]};
        struct wh_plan_action *a = reconcile_act(r, WH_ACT_REPORT, NULL, &rt);
        if (a)
            a->message =
                reconcile_format(r,
                                 "(task %s) on (host %s) is labelled for (service %s), which "
                                 "is not a known service: it is left running.",
                                 t->id, t->host ? t->host : "?", t->service ? t->service : "");
    }
}

/* ---- classify ---- */

static int reconcile_in_group(const struct wh_plan_task *t, const char *group)
{
    return reconcile_same(t->registered_in, group);
}

/* A target being deregistered: no other target action until it is gone. */
static int reconcile_target_busy(const struct wh_plan_task *t)
{
    return t->registered_in && t->health == WH_HEALTH_DRAINING;
}

static int reconcile_healthy(const struct wh_plan_service *svc, const struct wh_plan_task *t)
{
    if (t->state != WH_TASK_RUNNING)
        return 0;
    if (svc->target_group)
        return reconcile_in_group(t, svc->target_group) && t->health == WH_HEALTH_HEALTHY;
    return t->health == WH_HEALTH_NONE || t->health == WH_HEALTH_HEALTHY;
}

static int reconcile_unhealthy(const struct wh_plan_service *svc, const struct wh_plan_task *t)
{
    if (t->state != WH_TASK_RUNNING || t->health != WH_HEALTH_UNHEALTHY)
        return 0;
    return !svc->target_group || reconcile_in_group(t, svc->target_group);
}

static enum reconcile_class reconcile_class_of(struct reconcile *r,
                                               const struct wh_plan_service *svc,
                                               struct reconcile_task *rt)
{
    const struct wh_plan_task *t = rt->t;
    const struct wh_plan_host *h = rt->host >= 0 ? &r->hs->hosts[rt->host] : NULL;
    double now = r->o->now;
    if (t->state == WH_TASK_STOPPED)
        return RECONCILE_GONE;
    if (!rt->reachable) {
        if (!h || now - h->unreachable_since >= r->d->lost_task_grace)
            return RECONCILE_LOST;
        reconcile_wake(r, h->unreachable_since + r->d->lost_task_grace);
    }
    if (t->state == WH_TASK_DEACTIVATING || t->state == WH_TASK_STOPPING)
        return RECONCILE_EXITING;
    if (!rt->reachable)
        return RECONCILE_KEPT; /* its engine may still answer: nothing is decided about it yet */
    if (h->state == WH_PLAN_HOST_DRAINING)
        return RECONCILE_DRAIN;
    if (reconcile_unhealthy(svc, t)) {
        double until = t->started_at + svc->health_check_grace_period;
        if (now >= until)
            return RECONCILE_FAILED;
        reconcile_wake(r, until);
    }
    return RECONCILE_KEPT;
}

static void reconcile_classify(struct reconcile *r, struct reconcile_svc *sv, size_t s)
{
    sv->rt = r->rt;
    sv->n = 0;
    for (size_t k = r->first[s]; k < r->first[s + 1]; k++) {
        size_t i = r->order[k];
        struct reconcile_task *rt = &sv->rt[sv->n++];
        memset(rt, 0, sizeof(*rt));
        rt->t = &r->o->tasks[i];
        rt->host = r->task_host[i];
        rt->reachable = rt->host >= 0 && r->hs->hosts[rt->host].state != WH_PLAN_HOST_UNREACHABLE;
        rt->cls = reconcile_class_of(r, sv->svc, rt);
        rt->healthy = reconcile_healthy(sv->svc, rt->t);
        if (rt->cls == RECONCILE_KEPT)
            wh_place_service_count(r->fleet, rt->host, 1);
        sv->kept += rt->cls == RECONCILE_KEPT;
        sv->drain += rt->cls == RECONCILE_DRAIN;
        sv->failed += rt->cls == RECONCILE_FAILED;
        sv->exist += rt->cls == RECONCILE_KEPT || rt->cls == RECONCILE_DRAIN ||
                     rt->cls == RECONCILE_FAILED || rt->cls == RECONCILE_EXITING;
        if (rt->cls == RECONCILE_KEPT || rt->cls == RECONCILE_DRAIN)
            sv->healthy += rt->healthy;
    }
}

/* ---- decide: scale-in ---- */

static void reconcile_stop(struct reconcile *r, struct reconcile_svc *sv, struct reconcile_task *rt,
                           enum wh_stop_reason reason)
{
    rt->stop = 1;
    rt->reason = reason;
    if (rt->cls == RECONCILE_KEPT) {
        sv->kept--;
        wh_place_service_count(r->fleet, rt->host, -1);
    }
    sv->drain -= rt->cls == RECONCILE_DRAIN;
    if (rt->cls == RECONCILE_KEPT || rt->cls == RECONCILE_DRAIN)
        sv->healthy -= rt->healthy;
}

static int reconcile_victim_eligible(const struct reconcile_svc *sv,
                                     const struct reconcile_task *rt)
{
    if (rt->stop || !rt->reachable || rt->cls != RECONCILE_KEPT)
        return 0;
    return !rt->healthy || sv->healthy - 1 >= sv->min_healthy;
}

/* Each candidate's count of kept tasks sharing its value of every spread
 * field: the most crowded value gives up a task first. */
static void reconcile_spread_keys(struct reconcile *r, struct reconcile_svc *sv)
{
    size_t n_keys = 0;
    for (size_t s = 0; s < sv->svc->n_strategies && n_keys < RECONCILE_SPREAD_KEYS; s++) {
        const struct wh_place_strategy *ps = &sv->svc->strategies[s];
        if (ps->type != WH_PLACE_SPREAD)
            continue;
        int nv;
        for (size_t i = 0; i < sv->n; i++)
            if (sv->rt[i].cls == RECONCILE_KEPT && !sv->rt[i].stop)
                r->vcount[wh_place_spread_value(r->fleet, ps->attribute, sv->rt[i].host, &nv)]++;
        for (size_t i = 0; i < sv->n; i++)
            if (sv->rt[i].host >= 0)
                sv->rt[i].spread_key[n_keys] =
                    r->vcount[wh_place_spread_value(r->fleet, ps->attribute, sv->rt[i].host, &nv)];
        for (size_t i = 0; i < sv->n; i++)
            if (sv->rt[i].cls == RECONCILE_KEPT && !sv->rt[i].stop)
                r->vcount[wh_place_spread_value(r->fleet, ps->attribute, sv->rt[i].host, &nv)]--;
        n_keys++;
    }
}

static double reconcile_newness(const struct wh_plan_task *t)
{
    return t->started_at > 0 ? t->started_at : 1e300; /* not started yet: the newest */
}

/* > 0 when a should be stopped before b. */
static int reconcile_victim_cmp(const struct reconcile *r, const struct reconcile_task *a,
                                const struct reconcile_task *b)
{
    for (size_t k = 0; k < RECONCILE_SPREAD_KEYS; k++)
        if (a->spread_key[k] != b->spread_key[k])
            return a->spread_key[k] > b->spread_key[k] ? 1 : -1;
    if (a->healthy != b->healthy)
        return a->healthy ? -1 : 1;
    int la = wh_place_service_tasks(r->fleet, a->host),
        lb = wh_place_service_tasks(r->fleet, b->host);
    if (la != lb)
        return la > lb ? 1 : -1;
    double na = reconcile_newness(a->t), nb = reconcile_newness(b->t);
    if (na != nb)
        return na > nb ? 1 : -1;
    return strcmp(a->t->id, b->t->id);
}

/* Kept tasks beyond the desired count stop: so that the spread stays
 * balanced (ECS), then not-yet-healthy ones, then those of the busiest
 * host, then the newest. (Draining hosts' tasks are never kept: they stop
 * by reconcile_stop_draining.) */
static void reconcile_scale_in(struct reconcile *r, struct reconcile_svc *sv)
{
    int surplus = sv->kept - sv->desired;
    while (surplus > 0) {
        if (sv->desired > 0)
            reconcile_spread_keys(r, sv);
        struct reconcile_task *best = NULL;
        for (size_t i = 0; i < sv->n; i++) {
            struct reconcile_task *rt = &sv->rt[i];
            if (reconcile_victim_eligible(sv, rt) &&
                (!best || sv->desired == 0 || reconcile_victim_cmp(r, rt, best) > 0))
                best = rt;
            if (best && sv->desired == 0)
                break; /* all go: the order does not matter */
        }
        if (!best)
            return;
        reconcile_stop(r, sv, best, WH_STOP_SCALE_IN);
        surplus--;
    }
}

/* ---- decide: replacements ---- */

/* Draining hosts' tasks stop while the healthy count stays at the
 * minimum, those whose health is not known yet only once it is; their
 * replacements were counted as needed already. */
static void reconcile_stop_draining(struct reconcile *r, struct reconcile_svc *sv)
{
    for (int pass = 0; pass < 2; pass++) /* not-healthy ones first */
        for (size_t i = 0; i < sv->n; i++) {
            struct reconcile_task *rt = &sv->rt[i];
            if (rt->cls != RECONCILE_DRAIN || rt->stop || rt->healthy != pass)
                continue;
            /* Not judged yet (a target just registered, as after a restart
             * adopted it): it may well be serving, so it waits for its first
             * verdict rather than leave as if it were failing. */
            if (rt->t->health == WH_HEALTH_INITIAL)
                continue;
            if (!rt->healthy || sv->healthy - 1 >= sv->min_healthy)
                reconcile_stop(r, sv, rt, WH_STOP_HOST_DRAINING);
        }
}

/* Failed tasks stop once enough kept tasks are healthy without them, or at
 * once when maximum_percent leaves no room to start their replacements
 * (stopping them lowers no healthy count: they are unhealthy). */
static void reconcile_stop_failed(struct reconcile *r, struct reconcile_svc *sv)
{
    int healthy_kept = 0;
    for (size_t i = 0; i < sv->n; i++)
        healthy_kept += sv->rt[i].cls == RECONCILE_KEPT && !sv->rt[i].stop && sv->rt[i].healthy;
    int n = healthy_kept >= sv->desired ? sv->failed : sv->need - sv->room;
    for (size_t i = 0; i < sv->n && n > 0; i++)
        if (sv->rt[i].cls == RECONCILE_FAILED) {
            reconcile_stop(r, sv, &sv->rt[i], WH_STOP_UNHEALTHY);
            n--;
        }
}

/* ---- act ---- */

static void reconcile_adopt(struct reconcile *r, struct reconcile_svc *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        if (!sv->rt[i].t->tracked && sv->rt[i].cls != RECONCILE_GONE)
            reconcile_act(r, WH_ACT_ADOPT, sv->svc, &sv->rt[i]);
}

static void reconcile_deregister(struct reconcile *r, struct reconcile_svc *sv,
                                 struct reconcile_task *rt, int drain)
{
    struct wh_plan_action *a = reconcile_act(r, WH_ACT_DEREGISTER, sv->svc, rt);
    if (a) {
        a->target_group = rt->t->registered_in;
        a->drain = drain;
    }
}

/* Exited containers: their target leaves at once (nothing to drain). */
static void reconcile_remove_gone(struct reconcile *r, struct reconcile_svc *sv)
{
    for (size_t i = 0; i < sv->n; i++) {
        struct reconcile_task *rt = &sv->rt[i];
        if (rt->cls != RECONCILE_GONE)
            continue;
        if (rt->t->registered_in && !reconcile_target_busy(rt->t))
            reconcile_deregister(r, sv, rt, 0);
        struct wh_plan_action *a =
            rt->reachable ? reconcile_act(r, WH_ACT_REMOVE, sv->svc, rt) : NULL;
        if (a)
            a->message = reconcile_format(r, "Essential container in task exited");
    }
}

/* Lost tasks are marked once; their targets stay while they pass health
 * checks and the other tasks are not yet healthy enough to carry the
 * desired count, and are deregistered (drained) as replacements become
 * healthy, failing ones first. */
static void reconcile_lost(struct reconcile *r, struct reconcile_svc *sv)
{
    int keep = sv->desired - sv->healthy;
    for (size_t i = 0; i < sv->n; i++)
        if (sv->rt[i].cls == RECONCILE_LOST && !sv->rt[i].t->lost)
            reconcile_act(r, WH_ACT_LOST, sv->svc, &sv->rt[i]);
    for (int pass = 1; pass >= 0; pass--) /* healthy ones are kept first */
        for (size_t i = 0; i < sv->n; i++) {
            struct reconcile_task *rt = &sv->rt[i];
            if (rt->cls != RECONCILE_LOST || rt->healthy != pass || !rt->t->registered_in ||
                reconcile_target_busy(rt->t))
                continue;
            if (keep > 0 && reconcile_in_group(rt->t, sv->svc->target_group))
                keep--;
            else
                reconcile_deregister(r, sv, rt, 1);
        }
}

/* Running tasks that stay get their target in the service's group (and
 * out of a group it no longer uses). */
static void reconcile_register(struct reconcile *r, struct reconcile_svc *sv)
{
    const char *group = sv->svc->target_group;
    for (size_t i = 0; i < sv->n; i++) {
        struct reconcile_task *rt = &sv->rt[i];
        const struct wh_plan_task *t = rt->t;
        if (rt->stop || !rt->reachable || t->state != WH_TASK_RUNNING || t->host_port <= 0 ||
            reconcile_target_busy(t) ||
            (rt->cls != RECONCILE_KEPT && rt->cls != RECONCILE_DRAIN &&
             rt->cls != RECONCILE_FAILED))
            continue;
        if (t->registered_in && !reconcile_in_group(t, group))
            reconcile_deregister(r, sv, rt, 1);
        if (!group || reconcile_in_group(t, group))
            continue;
        struct wh_plan_action *a = reconcile_act(r, WH_ACT_REGISTER, sv->svc, rt);
        if (a)
            a->target_group = group;
    }
}

static void reconcile_new_id(struct reconcile *r, char *out, size_t outlen)
{
    if (r->ids && r->ids->new_id)
        r->ids->new_id(r->ids->arg, out, outlen);
    else
        wh_plan_seq_id(&r->seq, out, outlen);
}

/* New tasks up to the desired count, within maximum_percent and the start
 * backoff, each placed with the ones before it counted. */
static void reconcile_start(struct reconcile *r, struct reconcile_svc *sv)
{
    const struct wh_plan_service *svc = sv->svc;
    int n = sv->need < sv->room ? sv->need : sv->room;
    if (n > 0 && svc->start_failures > 0) {
        double at = svc->last_start_failure +
                    wh_plan_backoff_delay(svc->start_failures, r->d->start_backoff_max);
        if (r->o->now < at) {
            reconcile_wake(r, at);
            n = 0;
        }
    }
    for (int i = 0; i < n; i++) {
        long host = wh_place_pick(r->fleet, svc, &r->rng);
        if (host < 0) {
            sv->st->unplaced = n - i;
            return;
        }
        struct wh_plan_action *a = reconcile_act(r, WH_ACT_START, svc, NULL);
        if (!a)
            return;
        a->host = &r->hs->hosts[host];
        reconcile_new_id(r, a->task_id, sizeof(a->task_id));
        wh_place_commit(r->fleet, svc, host);
        sv->st->pending++;
    }
}

static char *reconcile_stop_reason(struct reconcile *r, const struct reconcile_svc *sv,
                                   const struct reconcile_task *rt)
{
    switch (rt->reason) {
    case WH_STOP_SCALE_IN:
        return reconcile_format(r, "Scaling activity initiated by (service %s)", sv->svc->name);
    case WH_STOP_UNHEALTHY:
        if (sv->svc->target_group)
            return reconcile_format(r, "Task failed ELB health checks in (target-group %s)",
                                    sv->svc->target_group);
        return reconcile_format(r, "Task failed container health checks");
    case WH_STOP_HOST_DRAINING:
        return reconcile_format(r, "(host %s) is draining", rt->t->host);
    }
    return NULL;
}

static void reconcile_stops(struct reconcile *r, struct reconcile_svc *sv)
{
    for (size_t i = 0; i < sv->n; i++) {
        struct reconcile_task *rt = &sv->rt[i];
        struct wh_plan_action *a = rt->stop ? reconcile_act(r, WH_ACT_STOP, sv->svc, rt) : NULL;
        if (!a)
            continue;
        a->reason = rt->reason;
        a->drain = rt->t->registered_in != NULL;
        a->target_group = rt->t->registered_in;
        a->message = reconcile_stop_reason(r, sv, rt);
    }
}

/* ---- tell ---- */

static const char *reconcile_action_task_id(const struct wh_plan_action *a)
{
    return a->type == WH_ACT_START ? a->task_id : a->task->id;
}

/* Actions of this service, from its first one up to end, of this type and,
 * when key is set, whose key (group or host) equals key. */
static int reconcile_matches(const struct wh_plan_action *a, enum wh_plan_action_type type,
                             const char *key)
{
    if (a->type != type)
        return 0;
    if (!key)
        return 1;
    if (type == WH_ACT_LOST)
        return reconcile_same(a->task->host, key);
    return reconcile_same(a->target_group, key);
}

/* "(service S) <what> N <noun>[ in (target-group G)][: (task a) (task b)...]." */
static void reconcile_tell(struct reconcile *r, struct reconcile_svc *sv, size_t end,
                           enum wh_plan_action_type type, const char *key, const char *what,
                           const char *suffix, int list)
{
    struct wh_plan_action *acts = r->plan->actions;
    int count = 0;
    for (size_t i = sv->first_action; i < end; i++)
        count += reconcile_matches(&acts[i], type, key);
    if (count == 0)
        return;
    char *msg = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&msg, &len);
    if (!m) {
        r->failed = 1;
        return;
    }
    fprintf(m, "(service %s) %s %d %s", sv->svc->name, what, count, suffix);
    int named = 0;
    for (size_t i = sv->first_action; list && i < end && named < RECONCILE_LIST_TASKS; i++)
        if (reconcile_matches(&acts[i], type, key))
            fprintf(m, "%s(task %s)", named++ ? " " : ": ", reconcile_action_task_id(&acts[i]));
    if (list && count > named)
        fprintf(m, " and %d more", count - named);
    fputs(list ? "." : "", m);
    if (fclose(m) != 0) {
        free(msg);
        msg = NULL;
        r->failed = 1;
    }
    reconcile_event(r, sv->svc, msg);
}

/* One event per distinct key (target group or host) among the actions. */
static void reconcile_tell_each(struct reconcile *r, struct reconcile_svc *sv, size_t end,
                                enum wh_plan_action_type type, const char *what)
{
    for (size_t i = sv->first_action; i < end; i++) {
        const struct wh_plan_action *a = &r->plan->actions[i];
        if (a->type != type)
            continue;
        const char *key = type == WH_ACT_LOST ? a->task->host : a->target_group;
        if (!key)
            continue;
        size_t j = sv->first_action;
        while (j < i && !reconcile_matches(&r->plan->actions[j], type, key))
            j++;
        if (j < i)
            continue; /* told with its first */
        char *suffix = reconcile_format(r,
                                        type == WH_ACT_LOST ? "tasks on unreachable (host %s)"
                                                            : "targets in (target-group %s)",
                                        key);
        if (suffix)
            reconcile_tell(r, sv, end, type, key, what, suffix, type == WH_ACT_LOST);
        free(suffix);
    }
}

static void reconcile_steady(struct reconcile *r, struct reconcile_svc *sv)
{
    struct wh_plan_status *st = sv->st;
    int settled = r->plan->n_actions == sv->first_action && st->running == sv->desired &&
                  st->healthy == sv->desired && (size_t)sv->desired == sv->n;
    for (size_t i = 0; settled && i < sv->n; i++)
        settled = sv->rt[i].cls == RECONCILE_KEPT && sv->rt[i].reachable && sv->rt[i].healthy;
    st->steady = settled;
    if (settled && !sv->svc->steady)
        reconcile_event(
            r, sv->svc,
            reconcile_format(r, "(service %s) has reached a steady state.", sv->svc->name));
}

static void reconcile_tell_all(struct reconcile *r, struct reconcile_svc *sv)
{
    size_t end = r->plan->n_actions;
    reconcile_tell(r, sv, end, WH_ACT_START, NULL, "has started", "tasks", 1);
    reconcile_tell(r, sv, end, WH_ACT_STOP, NULL, "has stopped", "running tasks", 1);
    reconcile_tell_each(r, sv, end, WH_ACT_LOST, "lost");
    reconcile_tell_each(r, sv, end, WH_ACT_REGISTER, "registered");
    reconcile_tell_each(r, sv, end, WH_ACT_DEREGISTER, "deregistered");
    if (sv->st->unplaced)
        reconcile_event(
            r, sv->svc,
            reconcile_format(r,
                             "(service %s) was unable to place a task because no host met all "
                             "of its requirements.",
                             sv->svc->name));
    reconcile_steady(r, sv);
}

static void reconcile_status(struct reconcile_svc *sv)
{
    for (size_t i = 0; i < sv->n; i++) {
        const struct reconcile_task *rt = &sv->rt[i];
        int live =
            rt->cls == RECONCILE_KEPT || rt->cls == RECONCILE_DRAIN || rt->cls == RECONCILE_FAILED;
        sv->st->lost += rt->cls == RECONCILE_LOST;
        sv->st->running += live && rt->t->state == WH_TASK_RUNNING;
        sv->st->pending += live && rt->t->state != WH_TASK_RUNNING;
        sv->st->healthy += live && rt->healthy;
    }
}

static void reconcile_service(struct reconcile *r, size_t s)
{
    const struct wh_plan_service *svc = &r->d->services[s];
    struct reconcile_svc sv = {.svc = svc, .st = &r->plan->status[s]};
    sv.st->service = svc;
    sv.first_action = r->plan->n_actions;
    sv.desired = svc->desired_count > 0 ? svc->desired_count : 0;
    sv.max_total = sv.desired * svc->maximum_percent / 100;
    sv.min_healthy = (sv.desired * svc->minimum_healthy_percent + 99) / 100;
    if (wh_place_service_begin(r->fleet, svc) < 0) {
        r->failed = 1;
        return;
    }
    reconcile_classify(r, &sv, s);
    reconcile_status(&sv);
    reconcile_scale_in(r, &sv);
    sv.need = sv.desired - sv.kept;
    sv.room = sv.max_total - sv.exist;
    if (sv.room < 0)
        sv.room = 0;
    reconcile_stop_draining(r, &sv);
    reconcile_stop_failed(r, &sv);
    reconcile_adopt(r, &sv);
    reconcile_lost(r, &sv);
    reconcile_remove_gone(r, &sv);
    reconcile_register(r, &sv);
    reconcile_start(r, &sv);
    reconcile_stops(r, &sv);
    reconcile_tell_all(r, &sv);
}

struct wh_plan *wh_plan_reconcile(const struct wh_plan_desired *desired,
                                  const struct wh_plan_observed *observed,
                                  const struct wh_plan_hosts *hosts, const struct wh_plan_ids *ids)
{
    struct reconcile r = {.d = desired, .o = observed, .hs = hosts, .ids = ids};
    r.rng = ids ? ids->seed : 0;
    r.plan = calloc(1, sizeof(*r.plan));
    if (r.plan)
        r.plan->status = calloc(desired->n_services + 1, sizeof(*r.plan->status));
    r.fleet = wh_place_fleet_new(hosts->hosts, hosts->n_hosts);
    if (!r.plan || !r.plan->status || !r.fleet || reconcile_index(&r) < 0)
        r.failed = 1;
    if (!r.failed) {
        r.plan->n_status = desired->n_services;
        reconcile_report_unknown(&r);
        for (size_t s = 0; s < desired->n_services && !r.failed; s++)
            reconcile_service(&r, s);
    }
    wh_place_fleet_free(r.fleet);
    free(r.task_host);
    free(r.task_svc);
    free(r.order);
    free(r.first);
    free(r.rt);
    free(r.vcount);
    if (r.failed) {
        wh_plan_free(r.plan);
        return NULL;
    }
    return r.plan;
}

void wh_plan_free(struct wh_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n_actions; i++)
        free(plan->actions[i].message);
    free(plan->actions);
    free(plan->status);
    free(plan);
}

void wh_plan_seq_id(void *counter, char *out, size_t outlen)
{
    unsigned long *n = counter;
    snprintf(out, outlen, "t%lu", ++*n);
}

double wh_plan_backoff_delay(int failures, double max)
{
    if (failures <= 0)
        return 0;
    double delay = 1;
    for (int i = 1; i < failures && delay < max; i++)
        delay *= 2;
    return delay < max ? delay : max;
}

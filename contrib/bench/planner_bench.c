/* planner-bench: the reconcile's time for 1,000 services x 10 tasks over
 * 200 hosts (issue 11's goal: under 50 ms). Not a test: it prints figures.
 *
 *   cold    nothing runs yet: 10,000 tasks placed (spread by az, then by
 *           instance; a tenth of the services with distinctInstance, a
 *           tenth with a memberOf expression)
 *   steady  all 10,000 run healthy: the plan is the periodic one
 *   churn   steady, but 5 % of the tasks exited, one host unreachable past
 *           the grace and one draining
 *
 * Usage: planner-bench [ROUNDS]  (default 5; prints the best and the median)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/plan.h"
#include "wharf/query.h"

#define N_SERVICES 1000
#define N_PER 10
#define N_HOSTS 200
#define N_TASKS (N_SERVICES * N_PER)

struct world {
    struct wh_plan_host hosts[N_HOSTS];
    struct wh_plan_attr attrs[N_HOSTS][2];
    char host_ids[N_HOSTS][16];
    struct wh_plan_service services[N_SERVICES];
    char names[N_SERVICES][16];
    struct wh_place_strategy strategies[2];
    struct wh_place_constraint distinct, member;
    struct wh_plan_task tasks[N_TASKS];
    char task_ids[N_TASKS][WH_PLAN_ID_MAX];
    size_t n_tasks;
    unsigned long seq;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *const azs[] = {"us-east-1a", "us-east-1b", "us-east-1c"};

static int world_init(struct world *w)
{
    char err[256];
    for (int i = 0; i < N_HOSTS; i++) {
        snprintf(w->host_ids[i], sizeof(w->host_ids[i]), "i-%04d", i);
        w->attrs[i][0] = (struct wh_plan_attr){"az", azs[i % 3]};
        w->attrs[i][1] = (struct wh_plan_attr){"instance_type", i % 4 ? "m5.xlarge" : "c5.large"};
        w->hosts[i] = (struct wh_plan_host){.id = w->host_ids[i],
                                            .attributes = w->attrs[i],
                                            .n_attributes = 2,
                                            .cpu_total = 16384,
                                            .memory_total = 65536};
    }
    if (wh_place_strategy_parse("spread", "attribute:az", &w->strategies[0], err, sizeof(err)) <
            0 ||
        wh_place_strategy_parse("spread", "instanceId", &w->strategies[1], err, sizeof(err)) < 0)
        return -1;
    w->distinct.type = WH_PLACE_DISTINCT_INSTANCE;
    w->member.type = WH_PLACE_MEMBER_OF;
    w->member.query = wh_query_parse("attribute:instance_type =~ m5.* and attribute:az != "
                                     "us-east-1c",
                                     err, sizeof(err));
    if (!w->member.query)
        return -1;
    for (int s = 0; s < N_SERVICES; s++) {
        snprintf(w->names[s], sizeof(w->names[s]), "svc-%04d", s);
        w->services[s] = (struct wh_plan_service){.name = w->names[s],
                                                  .revision = 1,
                                                  .taskdef = "abc123",
                                                  .desired_count = N_PER,
                                                  .cpu = 256,
                                                  .memory = 256,
                                                  .minimum_healthy_percent = 100,
                                                  .maximum_percent = 200,
                                                  .strategies = w->strategies,
                                                  .n_strategies = 2,
                                                  .health_check_grace_period = 10,
                                                  .target_group = w->names[s],
                                                  .steady = 1};
        if (s % 10 == 1) {
            w->services[s].constraints = &w->distinct;
            w->services[s].n_constraints = 1;
        } else if (s % 10 == 2) {
            w->services[s].constraints = &w->member;
            w->services[s].n_constraints = 1;
        }
    }
    return 0;
}

static struct wh_plan *plan(struct world *w, double *ms)
{
    struct wh_plan_desired d = {.cluster = "default",
                                .services = w->services,
                                .n_services = N_SERVICES,
                                .lost_task_grace = 30,
                                .start_backoff_max = 900};
    struct wh_plan_observed o = {.now = 10000, .tasks = w->tasks, .n_tasks = w->n_tasks};
    struct wh_plan_hosts h = {.hosts = w->hosts, .n_hosts = N_HOSTS};
    struct wh_plan_ids ids = {.seed = 1, .new_id = wh_plan_seq_id, .arg = &w->seq};
    double t0 = now_ms();
    struct wh_plan *p = wh_plan_reconcile(&d, &o, &h, &ids);
    *ms = now_ms() - t0;
    return p;
}

/* The cold plan's starts become running, healthy, registered tasks. */
static void world_run(struct world *w, const struct wh_plan *p)
{
    w->n_tasks = 0;
    for (size_t i = 0; i < p->n_actions && w->n_tasks < N_TASKS; i++) {
        const struct wh_plan_action *a = &p->actions[i];
        if (a->type != WH_ACT_START)
            continue;
        size_t k = w->n_tasks++;
        memcpy(w->task_ids[k], a->task_id, WH_PLAN_ID_MAX);
        w->tasks[k] = (struct wh_plan_task){.id = w->task_ids[k],
                                            .cluster = "default",
                                            .service = a->service->name,
                                            .host = a->host->id,
                                            .revision = 1,
                                            .taskdef = "abc123",
                                            .state = WH_TASK_RUNNING,
                                            .health = WH_HEALTH_HEALTHY,
                                            .started_at = 5000 + (double)k,
                                            .cpu = a->service->cpu,
                                            .memory = a->service->memory,
                                            .host_port = 32768 + (int)(k % 30000),
                                            .registered_in = a->service->target_group,
                                            .tracked = 1};
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static size_t count(const struct wh_plan *p, enum wh_plan_action_type type)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_actions; i++)
        n += p->actions[i].type == type;
    return n;
}

/* Runs one scenario `rounds` times; prints best and median. */
static int measure(struct world *w, const char *name, int rounds, int keep_cold)
{
    double ms[64];
    struct wh_plan *last = NULL;
    unsigned long seq0 = w->seq;
    for (int r = 0; r < rounds; r++) {
        w->seq = seq0;
        wh_plan_free(last);
        last = plan(w, &ms[r]);
        if (!last)
            return -1;
    }
    qsort(ms, (size_t)rounds, sizeof(ms[0]), cmp_double);
    printf("planner-bench: %-6s %8.2f ms best, %8.2f ms median (%zu actions: %zu starts, %zu "
           "stops, %zu removes, %zu lost)\n",
           name, ms[0], ms[rounds / 2], last->n_actions, count(last, WH_ACT_START),
           count(last, WH_ACT_STOP), count(last, WH_ACT_REMOVE), count(last, WH_ACT_LOST));
    if (keep_cold)
        world_run(w, last);
    wh_plan_free(last);
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1 || rounds > 64)
        rounds = 5;
    struct world *w = calloc(1, sizeof(*w));
    if (!w || world_init(w) < 0) {
        fprintf(stderr, "planner-bench: setup failed\n");
        return 1;
    }
    printf("planner-bench: %d services x %d tasks over %d hosts (goal: under 50 ms)\n", N_SERVICES,
           N_PER, N_HOSTS);
    int rc = measure(w, "cold", rounds, 1);
    if (rc == 0)
        rc = measure(w, "steady", rounds, 0);
    if (rc == 0) {
        for (size_t i = 0; i < w->n_tasks; i += 20)
            w->tasks[i].state = WH_TASK_STOPPED;
        w->hosts[7].state = WH_PLAN_HOST_UNREACHABLE;
        w->hosts[7].unreachable_since = 0;
        w->hosts[8].state = WH_PLAN_HOST_DRAINING;
        rc = measure(w, "churn", rounds, 0);
    }
    wh_query_free((struct wh_query *)w->member.query);
    free(w);
    if (rc < 0)
        fprintf(stderr, "planner-bench: out of memory\n");
    return rc < 0;
}

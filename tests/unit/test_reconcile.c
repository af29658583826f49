/* Unit tests of the reconcile (src/controller/reconcile.c): whole plans for
 * scale up and down, replacement, adoption, unknown and foreign tasks, lost
 * and returning hosts, draining hosts, backoff and the steady state. Each
 * test compares the plan's every action with what it expects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plan_fixture.h"

static int setup(void **state)
{
    *state = fx_new();
    return 0;
}

static int teardown(void **state)
{
    fx_free(*state);
    return 0;
}

/* h1 (az a), h2 (b), h3 (a) and a service web of `desired` tasks in target
 * group web, spread by az. */
static struct wh_plan_service *world(struct fx *f, int desired)
{
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "b");
    fx_host(f, "h3", "a");
    struct wh_plan_service *s = fx_service(f, "web", desired, "web");
    fx_strategy(f, s, "spread", "attribute:az");
    return s;
}

/* One task per host, healthy, a1 the oldest. */
static void three_tasks(struct fx *f)
{
    fx_task(f, "a1", "web", "h1", 300);
    fx_task(f, "a2", "web", "h2", 200);
    fx_task(f, "a3", "web", "h3", 100);
}

/* ---- scale ---- */

static void test_scale_up_from_zero(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    assert_string_equal(
        fx_plan(f),
        "START web t1 h1\n"
        "START web t2 h2\n"
        "START web t3 h3\n"
        "EVENT web: (service web) has started 3 tasks: (task t1) (task t2) (task t3).\n");
    const struct wh_plan_status *st = &f->plan->status[0];
    assert_ptr_equal(st->service, &f->services[0]);
    assert_int_equal(st->pending, 3);
    assert_int_equal(st->running, 0);
    assert_int_equal(st->steady, 0);
    assert_true(f->plan->wake_at == 0);
}

static void test_steady_state_said_once(void **state)
{
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 3);
    three_tasks(f);
    assert_string_equal(fx_plan(f), "EVENT web: (service web) has reached a steady state.\n");
    const struct wh_plan_status *st = &f->plan->status[0];
    assert_int_equal(st->steady, 1);
    assert_int_equal(st->running, 3);
    assert_int_equal(st->healthy, 3);
    assert_int_equal(st->pending, 0);
    s->steady = 1; /* the executor keeps the last status */
    assert_string_equal(fx_plan(f), "");
    assert_int_equal(f->plan->status[0].steady, 1);
}

static void test_not_steady_while_in_progress(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    three_tasks(f);
    f->tasks[1].health = WH_HEALTH_INITIAL; /* still being checked */
    assert_string_equal(fx_plan(f), "");
    assert_int_equal(f->plan->status[0].steady, 0);
    assert_int_equal(f->plan->status[0].healthy, 2);
    f->tasks[1].health = WH_HEALTH_HEALTHY;
    fx_task(f, "x", "web", "h1", 10)->state = WH_TASK_STOPPING;
    fx_plan(f);
    assert_int_equal(f->plan->status[0].steady, 0);
}

static void test_scale_up(void **state)
{
    struct fx *f = *state;
    world(f, 5);
    three_tasks(f);
    /* b has 1 task, a 2: b first, then the tie goes to the emptier host. */
    assert_string_equal(fx_plan(f),
                        "START web t1 h2\n"
                        "START web t2 h1\n"
                        "EVENT web: (service web) has started 2 tasks: (task t1) (task t2).\n");
}

static void test_scale_down_keeps_spread(void **state)
{
    struct fx *f = *state;
    world(f, 2);
    three_tasks(f);
    fx_task(f, "a4", "web", "h1", 50);
    /* AZ a has 3 of 4: it gives up two, the busiest host's newest first. */
    assert_string_equal(
        fx_plan(f), "STOP a3 drain: Scaling activity initiated by (service web)\n"
                    "STOP a4 drain: Scaling activity initiated by (service web)\n"
                    "EVENT web: (service web) has stopped 2 running tasks: (task a3) (task a4).\n");
}

static void test_scale_down_not_healthy_first(void **state)
{
    struct fx *f = *state;
    world(f, 2);
    three_tasks(f);
    f->tasks[0].health = WH_HEALTH_INITIAL;
    /* AZ a has a1 (initial) and a3: a1 goes, though a3 is newer. */
    assert_string_equal(fx_plan(f),
                        "STOP a1 drain: Scaling activity initiated by (service web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a1).\n");
}

static void test_scale_down_cancels_pending(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    three_tasks(f);
    struct wh_plan_task *p = fx_task(f, "p1", "web", "h2", 0);
    p->state = WH_TASK_PENDING;
    p->started_at = 0;
    p->health = WH_HEALTH_NONE;
    p->registered_in = NULL;
    p->host_port = 0;
    assert_string_equal(fx_plan(f),
                        "STOP p1 now: Scaling activity initiated by (service web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task p1).\n");
    assert_int_equal(f->plan->status[0].pending, 1);
}

static void test_scale_to_zero(void **state)
{
    struct fx *f = *state;
    world(f, 0);
    three_tasks(f);
    assert_string_equal(
        fx_plan(f),
        "STOP a1 drain: Scaling activity initiated by (service web)\n"
        "STOP a2 drain: Scaling activity initiated by (service web)\n"
        "STOP a3 drain: Scaling activity initiated by (service web)\n"
        "EVENT web: (service web) has stopped 3 running tasks: (task a1) (task a2) (task a3).\n");
    /* Once they are gone, zero tasks is a steady state too. */
    f->n_tasks = 0;
    assert_string_equal(fx_plan(f), "EVENT web: (service web) has reached a steady state.\n");
}

static void test_scale_down_never_below_minimum_healthy(void **state)
{
    /* 2 of 4 healthy, desired 3 (minimum 3): only a not-healthy one may go,
     * and the one unhealthy within its grace period does. */
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 3);
    s->health_check_grace_period = 60;
    three_tasks(f);
    fx_task(f, "a4", "web", "h2", 10)->health = WH_HEALTH_UNHEALTHY;
    f->tasks[0].health = WH_HEALTH_INITIAL;
    assert_string_equal(fx_plan(f),
                        "STOP a4 drain: Scaling activity initiated by (service web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a4).\n");
}

/* ---- replacement ---- */

static void test_replace_exited(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    three_tasks(f);
    f->tasks[1].state = WH_TASK_STOPPED;
    /* Its target goes at once (nothing to drain), its container is
     * removed, and a new task starts in its AZ. */
    assert_string_equal(fx_plan(f), "DEREGISTER a2 web now\n"
                                    "REMOVE a2\n"
                                    "START web t1 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n"
                                    "EVENT web: (service web) deregistered 1 "
                                    "targets in (target-group "
                                    "web)\n");
    assert_int_equal(f->plan->status[0].running, 2);
    assert_int_equal(f->plan->status[0].pending, 1);
    /* The registry let the target go: only the container is left. */
    f->tasks[1].registered_in = NULL;
    f->tasks[1].health = WH_HEALTH_NONE;
    assert_string_equal(fx_plan(f), "REMOVE a2\n"
                                    "START web t2 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t2).\n");
    assert_string_equal(f->plan->actions[0].message, "Essential container in task exited");
}

static void test_replace_unhealthy_after_grace(void **state)
{
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 3);
    s->health_check_grace_period = 30;
    three_tasks(f);
    f->tasks[1].health = WH_HEALTH_UNHEALTHY;
    f->tasks[1].started_at = f->now - 10;
    /* Within its grace period: nothing yet, but come back when it ends. */
    assert_string_equal(fx_plan(f), "");
    assert_true(f->plan->wake_at == f->now + 20);

    /* Past it: the replacement starts first (maximum 200 % allows). */
    f->now += 20;
    assert_string_equal(fx_plan(f), "START web t1 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n");
    assert_int_equal(f->plan->status[0].healthy, 2);

    /* The replacement runs, its target still initial: the old one stays. */
    struct wh_plan_task *t1 = fx_task(f, "t1", "web", "h2", 5);
    t1->health = WH_HEALTH_INITIAL;
    assert_string_equal(fx_plan(f), "");

    /* Healthy: now the old one drains and stops. */
    t1->health = WH_HEALTH_HEALTHY;
    assert_string_equal(fx_plan(f),
                        "STOP a2 drain: Task failed ELB health checks in (target-group web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a2).\n");
    assert_int_equal(f->plan->actions[0].reason, WH_STOP_UNHEALTHY);
    assert_string_equal(f->plan->actions[0].target_group, "web");
}

static void test_replace_unhealthy_max_100_stops_first(void **state)
{
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 3);
    s->maximum_percent = 100;
    s->minimum_healthy_percent = 50;
    three_tasks(f);
    f->tasks[1].health = WH_HEALTH_UNHEALTHY;
    /* No room for a fourth task: the unhealthy one stops first. */
    assert_string_equal(fx_plan(f),
                        "STOP a2 drain: Task failed ELB health checks in (target-group web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a2).\n");
    /* While it stops it still counts against maximum_percent. */
    f->tasks[1].state = WH_TASK_DEACTIVATING;
    f->tasks[1].health = WH_HEALTH_DRAINING;
    assert_string_equal(fx_plan(f), "");
    f->tasks[1].state = WH_TASK_STOPPING;
    f->tasks[1].registered_in = NULL;
    f->tasks[1].health = WH_HEALTH_NONE;
    assert_string_equal(fx_plan(f), "");
    /* Exited: removed, and the replacement starts. */
    f->tasks[1].state = WH_TASK_STOPPED;
    assert_string_equal(fx_plan(f), "REMOVE a2\n"
                                    "START web t1 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n");
}

static void test_replace_unhealthy_without_target_group(void **state)
{
    /* Docker's health check stands in for the target's. */
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "b");
    struct wh_plan_service *s = fx_service(f, "worker", 2, NULL);
    s->maximum_percent = 100;
    s->minimum_healthy_percent = 0;
    fx_task(f, "w1", "worker", "h1", 100);
    fx_task(f, "w2", "worker", "h2", 100)->health = WH_HEALTH_UNHEALTHY;
    assert_string_equal(fx_plan(f), "STOP w2 now: Task failed container health checks\n"
                                    "EVENT worker: (service worker) has stopped 1 running tasks: "
                                    "(task w2).\n");
}

static void test_replacement_within_maximum_percent(void **state)
{
    /* Desired 4, maximum 150 % = 6 containers, filled by 3 kept, 1 stopping
     * and 2 failed: no start fits, so failed tasks stop first, as many as
     * the starts they hold up (one). */
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 4);
    s->maximum_percent = 150;
    s->minimum_healthy_percent = 50;
    three_tasks(f);
    fx_task(f, "x1", "web", "h1", 100)->state = WH_TASK_STOPPING;
    fx_task(f, "u1", "web", "h2", 100)->health = WH_HEALTH_UNHEALTHY;
    fx_task(f, "u2", "web", "h3", 100)->health = WH_HEALTH_UNHEALTHY;
    assert_string_equal(fx_plan(f),
                        "STOP u1 drain: Task failed ELB health checks in (target-group web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task u1).\n");
}

static void test_minimum_healthy_rounding(void **state)
{
    /* Desired 3: minimum 50 % is 2 (rounded up), maximum 150 % is 4
     * (rounded down). All three on a draining host: one may stop now, one
     * replacement may start. */
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 3);
    s->minimum_healthy_percent = 50;
    s->maximum_percent = 150;
    f->hosts[0].state = WH_PLAN_HOST_DRAINING;
    fx_task(f, "a1", "web", "h1", 300);
    fx_task(f, "a2", "web", "h1", 200);
    fx_task(f, "a3", "web", "h1", 100);
    assert_string_equal(fx_plan(f),
                        "START web t1 h2\n"
                        "STOP a1 drain: (host h1) is draining\n"
                        "EVENT web: (service web) has started 1 tasks: (task t1).\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a1).\n");
    assert_int_equal(f->plan->actions[1].reason, WH_STOP_HOST_DRAINING);
}

/* ---- draining hosts ---- */

static void test_draining_host_replaced_then_stopped(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    three_tasks(f);
    f->hosts[0].state = WH_PLAN_HOST_DRAINING;
    /* Minimum 100 %: the replacement starts elsewhere, a1 keeps serving. */
    assert_string_equal(fx_plan(f), "START web t1 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n");
    struct wh_plan_task *t1 = fx_task(f, "t1", "web", "h2", 5);
    t1->health = WH_HEALTH_INITIAL;
    assert_string_equal(fx_plan(f), "");
    t1->health = WH_HEALTH_HEALTHY;
    assert_string_equal(fx_plan(f),
                        "STOP a1 drain: (host h1) is draining\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a1).\n");
}

/* After a restart the adopted targets are registered anew: a draining
 * host's task whose health is not known yet is not stopped as if it had
 * failed; it waits for its first verdict, then follows the minimum. */
static void test_draining_host_task_not_judged_yet_waits(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    three_tasks(f);
    f->hosts[0].state = WH_PLAN_HOST_DRAINING;
    for (size_t i = 0; i < f->n_tasks; i++)
        f->tasks[i].health = WH_HEALTH_INITIAL;
    assert_string_equal(fx_plan(f), "START web t1 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n");
    fx_task(f, "t1", "web", "h2", 5)->health = WH_HEALTH_INITIAL;
    assert_string_equal(fx_plan(f), ""); /* nothing judged: nothing stops */
    for (size_t i = 0; i < f->n_tasks; i++)
        f->tasks[i].health = WH_HEALTH_HEALTHY;
    assert_string_equal(fx_plan(f),
                        "STOP a1 drain: (host h1) is draining\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a1).\n");
}

static void test_draining_host_minimum_zero(void **state)
{
    /* Minimum 0 %, maximum 100 %: a draining host's tasks all stop at
     * once; their replacements wait for room. */
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 2);
    s->minimum_healthy_percent = 0;
    s->maximum_percent = 100;
    f->hosts[0].state = WH_PLAN_HOST_DRAINING;
    fx_task(f, "a1", "web", "h1", 300);
    fx_task(f, "a2", "web", "h1", 200);
    assert_string_equal(
        fx_plan(f), "STOP a1 drain: (host h1) is draining\n"
                    "STOP a2 drain: (host h1) is draining\n"
                    "EVENT web: (service web) has stopped 2 running tasks: (task a1) (task a2).\n");
    f->tasks[0].state = WH_TASK_STOPPED;
    f->tasks[0].registered_in = NULL;
    f->tasks[1].state = WH_TASK_STOPPED;
    f->tasks[1].registered_in = NULL;
    assert_string_equal(fx_plan(f),
                        "REMOVE a1\n"
                        "REMOVE a2\n"
                        "START web t1 h2\n"
                        "START web t2 h3\n"
                        "EVENT web: (service web) has started 2 tasks: (task t1) (task t2).\n");
}

static void test_draining_host_surplus(void **state)
{
    /* Scaled in while a host drains: the draining host's task is the one
     * that goes (the kept ones are exactly the desired count). */
    struct fx *f = *state;
    world(f, 2);
    three_tasks(f);
    f->hosts[1].state = WH_PLAN_HOST_DRAINING;
    assert_string_equal(fx_plan(f),
                        "STOP a2 drain: (host h2) is draining\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a2).\n");
}

/* ---- adoption, unknown and foreign tasks ---- */

static struct wh_plan_task *found(struct fx *f, const char *id, const char *host, double age)
{
    struct wh_plan_task *t = fx_task(f, id, "web", host, age);
    t->tracked = 0;
    t->registered_in = NULL;
    t->health = WH_HEALTH_NONE;
    return t;
}

static void test_adoption_with_surplus(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    found(f, "u1", "h1", 400);
    found(f, "u2", "h2", 300);
    found(f, "u3", "h3", 200);
    found(f, "u4", "h1", 100);
    found(f, "x1", "h2", 500)->state = WH_TASK_STOPPED;
    /* All adopted; AZ a has 3 of 4, h1 2 of them: its newest goes (no
     * target to drain); the others are registered; the exited one removed. */
    assert_string_equal(fx_plan(f),
                        "ADOPT u1\n"
                        "ADOPT u2\n"
                        "ADOPT u3\n"
                        "ADOPT u4\n"
                        "REMOVE x1\n"
                        "REGISTER u1 web\n"
                        "REGISTER u2 web\n"
                        "REGISTER u3 web\n"
                        "STOP u4 now: Scaling activity initiated by (service web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task u4).\n"
                        "EVENT web: (service web) registered 3 "
                        "targets in (target-group "
                        "web)\n");
}

static void test_adoption_starts_only_missing(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    found(f, "u1", "h2", 100);
    assert_string_equal(fx_plan(f),
                        "ADOPT u1\n"
                        "REGISTER u1 web\n"
                        "START web t1 h1\n"
                        "START web t2 h3\n"
                        "EVENT web: (service web) has started 2 tasks: (task t1) (task t2).\n"
                        "EVENT web: (service web) registered 1 targets in "
                        "(target-group web)\n");
    /* Registered, then healthy: steady, right after start-up. */
    f->n_tasks = 0;
    three_tasks(f);
    assert_string_equal(fx_plan(f), "EVENT web: (service web) has reached a steady state.\n");
}

static void test_register_waits_for_port(void **state)
{
    struct fx *f = *state;
    world(f, 1);
    struct wh_plan_task *t = found(f, "u1", "h1", 1);
    t->tracked = 1;
    t->host_port = 0; /* not inspected yet */
    assert_string_equal(fx_plan(f), "");
    t->host_port = 49153;
    assert_string_equal(fx_plan(f), "REGISTER u1 web\n"
                                    "EVENT web: (service web) registered 1 targets in "
                                    "(target-group web)\n");
}

static void test_target_group_changed(void **state)
{
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 1);
    fx_task(f, "a1", "web", "h1", 100)->registered_in = "old";
    assert_string_equal(fx_plan(f),
                        "DEREGISTER a1 old drain\n"
                        "REGISTER a1 web\n"
                        "EVENT web: (service web) registered 1 targets in (target-group web)\n"
                        "EVENT web: (service web) deregistered 1 targets in (target-group old)\n");
    /* No group any more: the target leaves, the task stays. */
    s->target_group = NULL;
    f->tasks[0].registered_in = "web";
    assert_string_equal(fx_plan(f), "DEREGISTER a1 web drain\n"
                                    "EVENT web: (service web) deregistered 1 targets in "
                                    "(target-group web)\n");
}

static void test_unknown_service_reported_once(void **state)
{
    struct fx *f = *state;
    world(f, 1);
    fx_task(f, "a1", "web", "h1", 100);
    struct wh_plan_task *t = fx_task(f, "z1", "gone", "h2", 100);
    t->tracked = 0;
    struct wh_plan_task *e = fx_task(f, "z2", "gone", "h3", 100);
    e->tracked = 0;
    e->state = WH_TASK_STOPPED;
    assert_string_equal(fx_plan(f), "REPORT z1: (task z1) on (host h2) is labelled for (service "
                                    "gone), which is not a known service: it is left running.\n"
                                    "REPORT z2: (task z2) on (host h3) is labelled for (service "
                                    "gone), which is not a known service: it is left running.\n"
                                    "EVENT web: (service web) has reached a steady state.\n");
    assert_null(f->plan->actions[0].service);
    /* The executor tracks it after the report: never a word again. */
    t->tracked = 1;
    e->tracked = 1;
    f->services[0].steady = 1;
    assert_string_equal(fx_plan(f), "");
}

static void test_foreign_cluster_never_touched(void **state)
{
    struct fx *f = *state;
    world(f, 1);
    fx_host(f, "h4", "b")->cpu_total = 1024;
    f->services[0].cpu = 1024;
    struct wh_plan_task *o = fx_task(f, "o1", "web", "h4", 100);
    o->cluster = "prod";
    o->tracked = 0;
    o->cpu = 1024;
    struct wh_plan_task *x = fx_task(f, "o2", "web", "h1", 100);
    x->cluster = "prod";
    x->state = WH_TASK_STOPPED;
    /* Neither adopted, stopped, removed nor counted; but o1 holds h4's CPU,
     * so the new task goes to AZ a although b has none. */
    assert_string_equal(fx_plan(f), "START web t1 h1\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n");
}

/* ---- lost and returning hosts ---- */

static void test_lost_host(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    three_tasks(f);
    f->hosts[1].state = WH_PLAN_HOST_UNREACHABLE;
    f->hosts[1].unreachable_since = f->now - 10;
    /* Within lost_task_grace its task still counts and keeps its target. */
    assert_string_equal(fx_plan(f), "");
    assert_true(f->plan->wake_at == f->now + 20);
    assert_int_equal(f->plan->status[0].steady, 0);

    /* Past it: lost, replaced elsewhere; its target stays while it passes
     * health checks and the others are short. */
    f->now += 20;
    assert_string_equal(fx_plan(f), "LOST a2\n"
                                    "START web t1 h1\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n"
                                    "EVENT web: (service web) lost 1 tasks on unreachable "
                                    "(host h2): (task a2).\n");
    assert_int_equal(f->plan->status[0].lost, 1);
    f->tasks[1].lost = 1;

    /* The replacement is healthy: the lost target drains. */
    fx_task(f, "t1", "web", "h1", 5);
    assert_string_equal(fx_plan(f), "DEREGISTER a2 web drain\n"
                                    "EVENT web: (service web) deregistered 1 targets in "
                                    "(target-group web)\n");
    /* Drained and gone from the group: nothing more to do while it is away. */
    f->tasks[1].registered_in = NULL;
    f->tasks[1].health = WH_HEALTH_NONE;
    assert_string_equal(fx_plan(f), "");
}

static void test_lost_unhealthy_targets_go_first(void **state)
{
    struct fx *f = *state;
    world(f, 2);
    f->hosts[1].state = WH_PLAN_HOST_UNREACHABLE;
    fx_task(f, "a1", "web", "h1", 300);
    struct wh_plan_task *l1 = fx_task(f, "l1", "web", "h2", 300);
    struct wh_plan_task *l2 = fx_task(f, "l2", "web", "h2", 300);
    l1->health = WH_HEALTH_UNHEALTHY;
    l1->lost = l2->lost = 1;
    f->lost_task_grace = 0;
    /* 1 healthy of 2 desired: one lost target stays, the healthy one. */
    assert_string_equal(fx_plan(f), "DEREGISTER l1 web drain\n"
                                    "START web t1 h3\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n"
                                    "EVENT web: (service web) deregistered 1 targets in "
                                    "(target-group web)\n");
}

static void test_unknown_host_is_lost(void **state)
{
    struct fx *f = *state;
    world(f, 1);
    fx_task(f, "a1", "web", "h9", 100);
    assert_string_equal(fx_plan(f), "LOST a1\n"
                                    "START web t1 h1\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n"
                                    "EVENT web: (service web) lost 1 tasks on unreachable "
                                    "(host h9): (task a1).\n");
}

static void test_returning_host_surplus(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    fx_task(f, "a1", "web", "h1", 300);
    fx_task(f, "a3", "web", "h3", 300);
    fx_task(f, "t1", "web", "h1", 50);
    /* h2 answers again; its task, deregistered while lost, is listed. */
    found(f, "a2", "h2", 400);
    /* Stopping a healthy task would go below the minimum: the returning one
     * is the surplus. */
    assert_string_equal(fx_plan(f),
                        "ADOPT a2\n"
                        "STOP a2 now: Scaling activity initiated by (service web)\n"
                        "EVENT web: (service web) has stopped 1 running tasks: (task a2).\n");
}

static void test_returning_host_short(void **state)
{
    struct fx *f = *state;
    world(f, 3);
    fx_task(f, "a1", "web", "h1", 300);
    fx_task(f, "a3", "web", "h3", 300);
    found(f, "a2", "h2", 400);
    assert_string_equal(fx_plan(f), "ADOPT a2\n"
                                    "REGISTER a2 web\n"
                                    "EVENT web: (service web) registered 1 targets in "
                                    "(target-group web)\n");
}

/* ---- backoff ---- */

static void test_backoff_delay(void **state)
{
    assert_true(wh_plan_backoff_delay(0, 900) == 0);
    assert_true(wh_plan_backoff_delay(1, 900) == 1);
    assert_true(wh_plan_backoff_delay(2, 900) == 2);
    assert_true(wh_plan_backoff_delay(5, 900) == 16);
    assert_true(wh_plan_backoff_delay(10, 900) == 512);
    assert_true(wh_plan_backoff_delay(11, 900) == 900);
    assert_true(wh_plan_backoff_delay(1000000, 900) == 900);
    assert_true(wh_plan_backoff_delay(3, 3) == 3);
}

static void test_start_backoff(void **state)
{
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 2);
    fx_task(f, "a1", "web", "h1", 300);
    s->start_failures = 3; /* 4 s after the last failure */
    s->last_start_failure = f->now - 1;
    assert_string_equal(fx_plan(f), "");
    assert_true(f->plan->wake_at == f->now + 3);
    f->now += 3;
    assert_string_equal(fx_plan(f), "START web t1 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n");
    /* Capped by start_backoff_max. */
    s->start_failures = 30;
    s->last_start_failure = f->now;
    f->start_backoff_max = 60;
    fx_plan(f);
    assert_true(f->plan->wake_at == f->now + 60);
}

/* ---- counting ---- */

static void test_pending_counts_toward_desired(void **state)
{
    struct fx *f = *state;
    world(f, 2);
    fx_task(f, "a1", "web", "h1", 300);
    struct wh_plan_task *p = fx_task(f, "p1", "web", "h2", 0);
    p->state = WH_TASK_PROVISIONING;
    p->started_at = 0;
    p->registered_in = NULL;
    p->health = WH_HEALTH_NONE;
    assert_string_equal(fx_plan(f), "");
    assert_int_equal(f->plan->status[0].pending, 1);
    assert_int_equal(f->plan->status[0].running, 1);
}

static void test_stopping_tasks_count_against_maximum(void **state)
{
    struct fx *f = *state;
    struct wh_plan_service *s = world(f, 2);
    s->maximum_percent = 100;
    s->minimum_healthy_percent = 0;
    fx_task(f, "a1", "web", "h1", 300);
    fx_task(f, "x1", "web", "h2", 300)->state = WH_TASK_STOPPING;
    assert_string_equal(fx_plan(f), "");
    s->maximum_percent = 150; /* 3 containers */
    assert_string_equal(fx_plan(f), "START web t1 h2\n"
                                    "EVENT web: (service web) has started 1 tasks: (task t1).\n");
}

static void test_services_share_resources(void **state)
{
    /* Two services on one host of 4 cores: the first takes its share,
     * the second gets what is left. */
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_service(f, "web", 3, NULL)->cpu = 1024;
    fx_service(f, "api", 3, NULL)->cpu = 1024;
    assert_string_equal(
        fx_plan(f), "START web t1 h1\n"
                    "START web t2 h1\n"
                    "START web t3 h1\n"
                    "EVENT web: (service web) has started 3 tasks: (task t1) (task t2) (task t3).\n"
                    "START api t4 h1\n"
                    "EVENT api: (service api) has started 1 "
                    "tasks: (task t4).\n"
                    "EVENT api: (service api) was unable to "
                    "place a task because no "
                    "host met all of its requirements.\n");
    assert_int_equal(f->plan->status[1].unplaced, 2);
}

static void test_long_event_lists(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_service(f, "web", 25, NULL)->cpu = 0;
    fx_plan(f);
    const struct wh_plan_action *last = &f->plan->actions[f->plan->n_actions - 1];
    assert_int_equal(last->type, WH_ACT_EVENT);
    assert_string_equal(last->message,
                        "(service web) has started 25 tasks: (task t1) (task t2) (task t3) (task "
                        "t4) (task t5) (task t6) (task t7) (task t8) (task t9) (task t10) (task "
                        "t11) (task t12) (task t13) (task t14) (task t15) (task t16) (task t17) "
                        "(task t18) (task t19) (task t20) and 5 more.");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_scale_up_from_zero),
        T(test_steady_state_said_once),
        T(test_not_steady_while_in_progress),
        T(test_scale_up),
        T(test_scale_down_keeps_spread),
        T(test_scale_down_not_healthy_first),
        T(test_scale_down_cancels_pending),
        T(test_scale_to_zero),
        T(test_scale_down_never_below_minimum_healthy),
        T(test_replace_exited),
        T(test_replace_unhealthy_after_grace),
        T(test_replace_unhealthy_max_100_stops_first),
        T(test_replace_unhealthy_without_target_group),
        T(test_replacement_within_maximum_percent),
        T(test_minimum_healthy_rounding),
        T(test_draining_host_replaced_then_stopped),
        T(test_draining_host_task_not_judged_yet_waits),
        T(test_draining_host_minimum_zero),
        T(test_draining_host_surplus),
        T(test_adoption_with_surplus),
        T(test_adoption_starts_only_missing),
        T(test_register_waits_for_port),
        T(test_target_group_changed),
        T(test_unknown_service_reported_once),
        T(test_foreign_cluster_never_touched),
        T(test_lost_host),
        T(test_lost_unhealthy_targets_go_first),
        T(test_unknown_host_is_lost),
        T(test_returning_host_surplus),
        T(test_returning_host_short),
        T(test_backoff_delay),
        T(test_start_backoff),
        T(test_pending_counts_toward_desired),
        T(test_stopping_tasks_count_against_maximum),
        T(test_services_share_resources),
        T(test_long_event_lists),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

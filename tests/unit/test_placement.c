/* Unit tests of placement (src/controller/placement.c): spread evenness
 * across AZs and instances, binpack's fill order, each constraint, free
 * resources, random with a seed, and no fit. Most go through a plan of new
 * tasks, so they also prove that k tasks placed at once see each other. */
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

/* Two AZs of two hosts each. */
static void two_azs(struct fx *f)
{
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "b");
    fx_host(f, "h3", "a");
    fx_host(f, "h4", "b");
}

static void test_spread_azs_evenly(void **state)
{
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 6, NULL);
    fx_strategy(f, s, "spread", "attribute:az");
    fx_plan(f);
    /* 3/3 across the AZs; inside each, the tie goes to the emptier host. */
    assert_string_equal(fx_start_hosts(f), "h1 h2 h3 h4 h1 h2");
}

static void test_spread_counts_existing_tasks(void **state)
{
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 4, NULL);
    fx_strategy(f, s, "spread", "attribute:az");
    fx_task(f, "a1", "web", "h1", 100);
    fx_task(f, "a2", "web", "h3", 100);
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h2 h4");
}

static void test_spread_az_then_instance(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "a");
    fx_host(f, "h3", "a");
    fx_host(f, "h4", "b");
    struct wh_plan_service *s = fx_service(f, "web", 8, NULL);
    fx_strategy(f, s, "spread", "attribute:az");
    fx_strategy(f, s, "spread", "instanceId");
    fx_plan(f);
    /* AZ b has one host: it takes half the tasks. */
    assert_string_equal(fx_start_hosts(f), "h1 h4 h2 h4 h3 h4 h1 h4");
}

static void test_spread_instances(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "a");
    fx_host(f, "h3", "b");
    struct wh_plan_service *s = fx_service(f, "web", 7, NULL);
    fx_strategy(f, s, "spread", "instanceId");
    fx_task(f, "a1", "web", "h2", 100);
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h1 h3 h1 h2 h3 h1");
}

static void test_spread_missing_attribute(void **state)
{
    /* Hosts without the attribute form one value of their own. */
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_host(f, "h2", NULL);
    fx_host(f, "h3", NULL);
    struct wh_plan_service *s = fx_service(f, "web", 4, NULL);
    fx_strategy(f, s, "spread", "attribute:az");
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h1 h2 h3 h1");
}

static void test_binpack_memory_fill_order(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a")->memory_total = 8192;
    fx_host(f, "h2", "a")->memory_total = 4096;
    fx_host(f, "h3", "a")->memory_total = 2048;
    struct wh_plan_service *s = fx_service(f, "web", 7, NULL);
    s->memory = 1024;
    fx_strategy(f, s, "binpack", "memory");
    fx_plan(f);
    /* The fullest host that still fits, until it is full. */
    assert_string_equal(fx_start_hosts(f), "h3 h3 h2 h2 h2 h2 h1");
}

static void test_binpack_cpu_with_reservations(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "a")->cpu_reserved = 2048; /* containers we do not list */
    fx_host(f, "h3", "a");
    struct wh_plan_service *s = fx_service(f, "web", 5, NULL);
    s->cpu = 1024;
    fx_strategy(f, s, "binpack", "cpu");
    /* Another service's task on h3 reserves its share too. */
    struct wh_plan_service *o = fx_service(f, "other", 1, NULL);
    o->cpu = 3072;
    fx_task(f, "o1", "other", "h3", 100);
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h3 h2 h2 h1 h1");
}

static void test_binpack_then_spread_ties(void **state)
{
    /* Binpack on equal hosts fills the first; a spread before it decides
     * between AZs first. */
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 4, NULL);
    fx_strategy(f, s, "spread", "attribute:az");
    fx_strategy(f, s, "binpack", "memory");
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h1 h2 h1 h2");
}

static void test_distinct_instance(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "a");
    fx_host(f, "h3", "a");
    struct wh_plan_service *s = fx_service(f, "web", 4, NULL);
    fx_strategy(f, s, "binpack", "memory"); /* would stack them all on h1 */
    fx_distinct(f, s);
    fx_task(f, "a1", "web", "h2", 100);
    assert_string_equal(fx_plan(f),
                        "START web t1 h1\n"
                        "START web t2 h3\n"
                        "EVENT web: (service web) has started 2 tasks: (task t1) (task t2).\n"
                        "EVENT web: (service web) was unable to place a task because no host "
                        "met all of its requirements.\n");
    assert_int_equal(f->plan->status[0].unplaced, 1);
    assert_int_equal(f->plan->status[0].pending, 2);
}

static void test_distinct_instance_other_services_allowed(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    struct wh_plan_service *s = fx_service(f, "web", 1, NULL);
    fx_distinct(f, s);
    fx_service(f, "api", 1, NULL);
    fx_task(f, "p1", "api", "h1", 100);
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h1");
}

static void test_member_of(void **state)
{
    struct fx *f = *state;
    struct wh_plan_host *h1 = fx_host(f, "h1", "a");
    struct wh_plan_host *h2 = fx_host(f, "h2", "b");
    struct wh_plan_host *h3 = fx_host(f, "h3", "b");
    fx_attr(f, h1, "instance_type", "m5.large");
    fx_attr(f, h2, "instance_type", "t3.micro");
    fx_attr(f, h3, "instance_type", "m5.xlarge");
    struct wh_plan_service *s = fx_service(f, "web", 3, NULL);
    fx_member_of(f, s, "attribute:instance_type =~ m5.*");
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h1 h3 h1");

    /* Several memberOf constraints must all hold; ECS's built-in names and
     * ec2InstanceId work on our hosts. */
    fx_member_of(f, s, "attribute:ecs.availability-zone == b and ec2InstanceId != h2");
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h3 h3 h3");
}

static void test_member_of_nothing(void **state)
{
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 2, NULL);
    fx_member_of(f, s, "attribute:az == c");
    assert_string_equal(fx_plan(f),
                        "EVENT web: (service web) was unable to place a task because no host "
                        "met all of its requirements.\n");
    assert_int_equal(f->plan->status[0].unplaced, 2);
}

static void test_resources_limit(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a");
    fx_host(f, "h2", "b")->memory_total = 1000;
    struct wh_plan_service *s = fx_service(f, "web", 6, NULL);
    s->cpu = 1024;
    s->memory = 512;
    fx_strategy(f, s, "spread", "attribute:az");
    fx_plan(f);
    /* h2 fits one task by memory, h1 four by CPU: 5 of 6 placed. */
    assert_string_equal(fx_start_hosts(f), "h1 h2 h1 h1 h1");
    assert_int_equal(f->plan->status[0].unplaced, 1);
}

static void test_only_active_hosts(void **state)
{
    struct fx *f = *state;
    fx_host(f, "h1", "a")->state = WH_PLAN_HOST_DRAINING;
    fx_host(f, "h2", "a")->state = WH_PLAN_HOST_UNREACHABLE;
    fx_host(f, "h3", "b");
    struct wh_plan_service *s = fx_service(f, "web", 2, NULL);
    fx_strategy(f, s, "spread", "attribute:az");
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), "h3 h3");
}

static void test_no_fit(void **state)
{
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 3, NULL);
    s->memory = 8193;
    assert_string_equal(fx_plan(f),
                        "EVENT web: (service web) was unable to place a task because no host "
                        "met all of its requirements.\n");
    /* No host at all. */
    f->n_hosts = 0;
    s->memory = 1;
    assert_string_equal(fx_plan(f),
                        "EVENT web: (service web) was unable to place a task because no host "
                        "met all of its requirements.\n");
}

static void test_random_repeatable(void **state)
{
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 12, NULL);
    fx_strategy(f, s, "random", NULL);
    fx_plan(f);
    char *first = strdup(fx_start_hosts(f));
    f->seq = 0;
    fx_plan(f);
    assert_string_equal(fx_start_hosts(f), first);
    /* Every host gets some, and another seed gives another order. */
    for (const char *h = "1234"; *h; h++) {
        char name[3] = {'h', *h, '\0'};
        assert_non_null(strstr(first, name));
    }
    f->seed = 7;
    fx_plan(f);
    assert_string_not_equal(fx_start_hosts(f), first);
    free(first);
}

static void test_random_within_constraints(void **state)
{
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 8, NULL);
    fx_member_of(f, s, "attribute:az == b");
    fx_strategy(f, s, "random", NULL);
    fx_plan(f);
    const char *hosts = fx_start_hosts(f);
    assert_null(strstr(hosts, "h1"));
    assert_null(strstr(hosts, "h3"));
    assert_int_equal(strlen(hosts), 8 * 3 - 1);
}

static void test_direct_api(void **state)
{
    struct fx *f = *state;
    two_azs(f);
    struct wh_plan_service *s = fx_service(f, "web", 1, NULL);
    fx_strategy(f, s, "spread", "attribute:az");
    struct wh_place_fleet *fleet = wh_place_fleet_new(f->hosts, f->n_hosts);
    assert_int_equal(wh_place_fleet_find(fleet, "h3"), 2);
    assert_int_equal(wh_place_fleet_find(fleet, "h9"), -1);
    assert_int_equal(wh_place_service_begin(fleet, s), 0);
    uint64_t rng = 1;
    wh_place_service_count(fleet, 0, 1);
    assert_int_equal(wh_place_pick(fleet, s, &rng), 1);
    wh_place_commit(fleet, s, 1);
    assert_int_equal(wh_place_service_tasks(fleet, 1), 1);
    assert_int_equal(wh_place_pick(fleet, s, &rng), 2);
    int nv = 0;
    assert_int_equal(wh_place_spread_value(fleet, "az", 3, &nv), 1);
    assert_int_equal(nv, 2);
    assert_int_equal(wh_place_spread_value(fleet, NULL, 3, &nv), 3);
    assert_int_equal(nv, 4);
    /* Everything reserved: no fit. */
    for (long h = 0; h < 4; h++)
        wh_place_fleet_reserve(fleet, h, 4096, 0);
    assert_int_equal(wh_place_pick(fleet, s, &rng), -1);
    wh_place_fleet_free(fleet);
    wh_place_fleet_free(NULL);
}

static void test_host_attributes(void **state)
{
    struct fx *f = *state;
    struct wh_plan_host *h = fx_host(f, "i-0abc", "us-east-1a");
    fx_attr(f, h, "instance_type", "m5.large");
    assert_string_equal(wh_plan_host_attr(h, "instanceId"), "i-0abc");
    assert_string_equal(wh_plan_host_attr(h, "az"), "us-east-1a");
    assert_string_equal(wh_plan_host_attr(h, "ecs.availability-zone"), "us-east-1a");
    assert_string_equal(wh_plan_host_attr(h, "ecs.instance-type"), "m5.large");
    assert_null(wh_plan_host_attr(h, "gpu"));
}

static void test_strategy_parse(void **state)
{
    struct wh_place_strategy s;
    char err[256];
    assert_int_equal(wh_place_strategy_parse("spread", "attribute:az", &s, err, sizeof(err)), 0);
    assert_int_equal(s.type, WH_PLACE_SPREAD);
    assert_string_equal(s.attribute, "az");
    assert_int_equal(wh_place_strategy_parse("spread", "instanceId", &s, err, sizeof(err)), 0);
    assert_null(s.attribute);
    assert_int_equal(wh_place_strategy_parse("spread", "host", &s, err, sizeof(err)), 0);
    assert_null(s.attribute);
    assert_int_equal(wh_place_strategy_parse("binpack", "cpu", &s, err, sizeof(err)), 0);
    assert_int_equal(s.resource, WH_PLACE_CPU);
    assert_int_equal(wh_place_strategy_parse("binpack", "memory", &s, err, sizeof(err)), 0);
    assert_int_equal(s.resource, WH_PLACE_MEMORY);
    assert_int_equal(wh_place_strategy_parse("random", "", &s, err, sizeof(err)), 0);
    assert_int_equal(s.type, WH_PLACE_RANDOM);

    assert_int_equal(wh_place_strategy_parse("spread", "az", &s, err, sizeof(err)), -1);
    assert_string_equal(err, "a spread field is instanceId or attribute:NAME, not 'az'");
    assert_int_equal(wh_place_strategy_parse("spread", "attribute:", &s, err, sizeof(err)), -1);
    assert_int_equal(wh_place_strategy_parse("binpack", "disk", &s, err, sizeof(err)), -1);
    assert_string_equal(err, "a binpack field is cpu or memory, not 'disk'");
    assert_int_equal(wh_place_strategy_parse("random", "cpu", &s, err, sizeof(err)), -1);
    assert_string_equal(err, "random takes no field, not 'cpu'");
    assert_int_equal(wh_place_strategy_parse("pack", NULL, &s, err, sizeof(err)), -1);
    assert_string_equal(err, "a placement strategy is spread, binpack or random, not 'pack'");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_spread_azs_evenly),
        T(test_spread_counts_existing_tasks),
        T(test_spread_az_then_instance),
        T(test_spread_instances),
        T(test_spread_missing_attribute),
        T(test_binpack_memory_fill_order),
        T(test_binpack_cpu_with_reservations),
        T(test_binpack_then_spread_ties),
        T(test_distinct_instance),
        T(test_distinct_instance_other_services_allowed),
        T(test_member_of),
        T(test_member_of_nothing),
        T(test_resources_limit),
        T(test_only_active_hosts),
        T(test_no_fit),
        T(test_random_repeatable),
        T(test_random_within_constraints),
        T(test_direct_api),
        T(test_host_attributes),
        T(test_strategy_parse),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

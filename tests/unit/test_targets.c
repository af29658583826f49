/* Unit tests of the targets module (src/targets/): the threshold machine,
 * the matcher, snapshot contents, draining, reloads of static targets,
 * passive ejection, real health checks against in-process servers, and a
 * snapshot swap stress test with reader threads (run under ASan in the
 * suite; under TSan by hand).
 *
 * Most tests drive the registry with a fake monotonic clock and call the
 * sweep and the check results directly; the event loop is not run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "../../src/targets/targets-int.h"
#include "wharf/log.h"

#define FEATURES WH_FEATURES_ALL
#define MAX_EVENTS 512

struct rec_event {
    char addr[64];
    enum wh_target_state old_state, new_state;
    char reason[32];
};

/* One registry on an event base, with a fake clock and recorded output. */
struct fx {
    struct event_base *base;
    struct wh_targets *reg;
    double now;
    struct rec_event ev[MAX_EVENTS];
    size_t n_ev;
    size_t publishes;
    struct wh_target *hard[16];
    size_t n_hard;
    int stop_on_event; /* break the loop on the next event (real checks) */
};

static double fake_clock(void *arg)
{
    return ((struct fx *)arg)->now;
}

static void rec_publish(void *arg, struct wh_tg_snapshot *s)
{
    struct fx *f = arg;
    assert_int_equal(s->magic, WH_SNAPSHOT_MAGIC);
    f->publishes++;
}

static void rec_event(void *arg, const struct wh_target_event *e)
{
    struct fx *f = arg;
    if (f->n_ev < MAX_EVENTS) {
        struct rec_event *r = &f->ev[f->n_ev++];
        snprintf(r->addr, sizeof(r->addr), "%s", e->address);
        r->old_state = e->old_state;
        r->new_state = e->new_state;
        snprintf(r->reason, sizeof(r->reason), "%s", e->reason);
    }
    if (f->stop_on_event)
        event_base_loopbreak(f->base);
}

static void rec_hard(void *arg, struct wh_target *t)
{
    struct fx *f = arg;
    wh_target_ref(t);
    f->hard[f->n_hard++] = t;
}

static struct wh_config *load(const char *text)
{
    struct wh_config *cfg = wh_config_load_string_ex(text, "t.conf", FEATURES, NULL, NULL);
    assert_non_null(cfg);
    return cfg;
}

static void apply(struct fx *f, const char *text)
{
    char err[WH_ERR_LEN];
    struct wh_config *cfg = load(text);
    assert_int_equal(wh_targets_set_groups(f->reg, cfg, err, sizeof(err)), 0);
    wh_config_free(cfg);
}

static struct fx *fx_new(const char *config, int fake)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->now = 1000;
    f->reg = wh_targets_new(f->base, rec_publish, rec_event, f);
    assert_non_null(f->reg);
    if (fake) {
        f->reg->clock = fake_clock;
        f->reg->clock_arg = f;
    }
    wh_targets_on_drained_hard(f->reg, rec_hard, f);
    if (config)
        apply(f, config);
    return f;
}

static void fx_free(struct fx *f)
{
    for (size_t i = 0; i < f->n_hard; i++)
        wh_target_unref(f->hard[i]);
    wh_targets_free(f->reg);
    event_base_free(f->base);
    free(f);
}

static struct wh_tg_target *T(struct fx *f, const char *group, const char *addr)
{
    struct wh_target *t = wh_targets_find(f->reg, group, addr);
    assert_non_null(t);
    return wh_tg_of(t);
}

static enum wh_target_state state_of(struct fx *f, const char *addr)
{
    return T(f, "web", addr)->pub.state;
}

static const struct rec_event *last_event(struct fx *f)
{
    assert_true(f->n_ev > 0);
    return &f->ev[f->n_ev - 1];
}

static void reg(struct fx *f, const char *addr)
{
    char err[WH_ERR_LEN];
    assert_int_equal(wh_targets_register(f->reg, "web", addr, 1, "api", err, sizeof(err)), 0);
}

/* A group "web" with checks: healthy/unhealthy thresholds 3/2. */
#define HC_GROUP(targets)                                                                          \
    "target_groups = ( { name = \"web\"; deregistration_delay = 30;\n"                             \
    "  health_check = { interval = 1; timeout = 0.5; healthy_threshold = 3;\n"                     \
    "                   unhealthy_threshold = 2; matcher = \"200,302\"; };\n"                      \
    "  passive = { consecutive_connect_failures = 3; consecutive_5xx = 2; eject = 10; };\n"        \
    "  targets = ( " targets " ); } );\n"
#define PLAIN_GROUP(targets)                                                                       \
    "target_groups = ( { name = \"web\"; deregistration_delay = 5;\n"                              \
    "  targets = ( " targets " ); } );\n"

/* ---- read-only queries ---- */

struct visit {
    char groups[4][WH_NAME_MAX];
    enum wh_algorithm algo[4];
    double slow_start[4];
    int n_groups, n_targets;
};

static void visit_group(void *arg, const struct wh_targets_group_info *g)
{
    struct visit *v = arg;
    assert_true(v->n_groups < 4);
    snprintf(v->groups[v->n_groups], WH_NAME_MAX, "%s", g->name);
    v->algo[v->n_groups] = g->algorithm;
    v->slow_start[v->n_groups++] = g->slow_start;
}

static void visit_target(void *arg, const struct wh_target *t)
{
    ((struct visit *)arg)->n_targets++;
}

static void test_queries(void **state)
{
    struct fx *f = fx_new("target_groups = ( { name = \"web\"; slow_start = 30;\n"
                          "  algorithm = \"least_outstanding_requests\";\n"
                          "  targets = ( \"10.0.0.1:80\", \"10.0.0.2:80\" ); },\n"
                          "  { name = \"api\"; } );\n",
                          1);
    struct visit v = {0};
    assert_int_equal(wh_targets_foreach(f->reg, NULL, visit_group, visit_target, &v), 2);
    assert_int_equal(v.n_groups, 2);
    assert_string_equal(v.groups[0], "web");
    assert_string_equal(v.groups[1], "api");
    assert_int_equal(v.algo[0], WH_ALGO_LEAST_OUTSTANDING);
    assert_true(v.slow_start[0] == 30 && v.slow_start[1] == 0);
    assert_int_equal(v.n_targets, 2);
    memset(&v, 0, sizeof(v));
    assert_int_equal(wh_targets_foreach(f->reg, "api", visit_group, visit_target, &v), 1);
    assert_int_equal(v.n_targets, 0);
    assert_int_equal(wh_targets_foreach(f->reg, "nope", visit_group, visit_target, &v), 0);
    assert_true(wh_targets_has_group(f->reg, "web") && wh_targets_has_group(f->reg, "api"));
    assert_false(wh_targets_has_group(f->reg, "nope"));
    /* Targets of the file start at full share: nothing left to ramp. */
    assert_true(wh_targets_slow_start_remaining(f->reg, &T(f, "web", "10.0.0.1:80")->pub) == 0);
    f->now += 1; /* a newcomer to a group already serving ramps */
    reg(f, "10.0.0.3:80");
    f->now += 10;
    double left = wh_targets_slow_start_remaining(f->reg, &T(f, "web", "10.0.0.3:80")->pub);
    assert_true(left > 19.9 && left < 20.1);
    assert_string_equal(wh_targets_error_name(WH_TARGETS_OK), "ok");
    assert_string_equal(wh_targets_error_name(WH_TARGETS_BAD_WEIGHT), "bad_weight");
    assert_string_equal(wh_targets_error_name(WH_TARGETS_NO_MEMORY), "no_memory");
    assert_string_equal(wh_targets_error_name(-42), "?");
    fx_free(f);
}

/* ---- matcher and phase ---- */

static void test_matcher(void **state)
{
    struct wh_tg_matcher m;
    char err[WH_ERR_LEN];
    assert_int_equal(wh_tg_matcher_parse("200", &m, err, sizeof(err)), 0);
    assert_true(wh_tg_matcher_match(&m, 200));
    assert_false(wh_tg_matcher_match(&m, 201));
    assert_int_equal(wh_tg_matcher_parse("200,302", &m, err, sizeof(err)), 0);
    assert_true(wh_tg_matcher_match(&m, 302));
    assert_false(wh_tg_matcher_match(&m, 301));
    assert_int_equal(wh_tg_matcher_parse("200-399", &m, err, sizeof(err)), 0);
    for (int c = 100; c <= 599; c++)
        assert_int_equal(wh_tg_matcher_match(&m, c), c >= 200 && c <= 399);
    assert_false(wh_tg_matcher_match(&m, 0));
    assert_false(wh_tg_matcher_match(&m, 600));
    assert_int_equal(wh_tg_matcher_parse("100-101,599", &m, err, sizeof(err)), 0);
    assert_true(wh_tg_matcher_match(&m, 101) && wh_tg_matcher_match(&m, 599));
    assert_false(wh_tg_matcher_match(&m, 102));
    const char *bad[] = {"",     "20",       "2000", "600",  "099",     "399-200",  "200,",
                         ",200", "200 ,302", "abc",  "200-", "200-600", "200--300", "2oo"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(wh_tg_matcher_parse(bad[i], &m, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "is not a status matcher"));
        assert_false(wh_tg_matcher_match(&m, 200));
    }
}

static void test_phase_spreads_checks(void **state)
{
    int bucket[10] = {0};
    for (uint64_t id = 1; id <= 1000; id++) {
        double p = wh_hc_phase(id, 5.0);
        assert_true(p >= 0 && p < 5.0);
        bucket[(int)(p / 0.5)]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(bucket[i] >= 90 && bucket[i] <= 110);
}

/* ---- the threshold machine ---- */

static void test_new_target_healthy_after_one_pass(void **state)
{
    struct fx *f = fx_new(HC_GROUP("\"10.0.0.1:80\""), 1);
    struct wh_tg_target *t = T(f, "web", "10.0.0.1:80");
    assert_int_equal(t->pub.state, WH_TARGET_INITIAL);
    assert_string_equal(last_event(f)->reason, "registered");
    assert_int_equal(last_event(f)->old_state, WH_TARGET_UNUSED);
    assert_non_null(t->hc_timer); /* checked at once */
    wh_tg_check_result(t, 1, NULL, NULL);
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY); /* one pass, not three */
    assert_int_equal(last_event(f)->old_state, WH_TARGET_INITIAL);
    /* From now on the thresholds apply: 2 failures to go unhealthy... */
    wh_tg_check_result(t, 0, "timeout", "no response");
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    assert_string_equal(t->pub.reason, "");
    wh_tg_check_result(t, 1, NULL, NULL); /* a pass breaks the streak */
    wh_tg_check_result(t, 0, "timeout", "no response");
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    wh_tg_check_result(t, 0, "connection_refused", "refused");
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    assert_string_equal(t->pub.reason, "connection_refused");
    assert_string_equal(last_event(f)->reason, "connection_refused");
    /* ...and 3 passes to come back. */
    size_t n = f->n_ev;
    wh_tg_check_result(t, 1, NULL, NULL);
    wh_tg_check_result(t, 1, NULL, NULL);
    wh_tg_check_result(t, 0, "status_mismatch", "status 500");
    assert_string_equal(t->pub.reason, "status_mismatch");
    assert_int_equal(f->n_ev, n); /* a new reason alone is no event */
    wh_tg_check_result(t, 1, NULL, NULL);
    wh_tg_check_result(t, 1, NULL, NULL);
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    wh_tg_check_result(t, 1, NULL, NULL);
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    assert_string_equal(t->pub.reason, "");
    assert_int_equal(f->reg->groups.tqh_first->state_changes, 4);
    fx_free(f);
}

static void test_failing_new_target_needs_thresholds(void **state)
{
    struct fx *f = fx_new(HC_GROUP("\"10.0.0.1:80\""), 1);
    struct wh_tg_target *t = T(f, "web", "10.0.0.1:80");
    wh_tg_check_result(t, 0, "timeout", "no response");
    assert_int_equal(t->pub.state, WH_TARGET_INITIAL);
    assert_string_equal(t->pub.reason, "timeout"); /* an initial target shows why */
    wh_tg_check_result(t, 0, "timeout", "no response");
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    /* It is no longer new: one pass is not enough. */
    wh_tg_check_result(t, 1, NULL, NULL);
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    wh_tg_check_result(t, 1, NULL, NULL);
    wh_tg_check_result(t, 1, NULL, NULL);
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    fx_free(f);
}

static void test_group_without_checks_is_healthy(void **state)
{
    struct fx *f = fx_new(PLAIN_GROUP("\"10.0.0.1:80\""), 1);
    struct wh_tg_target *t = T(f, "web", "10.0.0.1:80");
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    assert_null(t->hc_timer);
    assert_int_equal(f->n_ev, 1);
    assert_string_equal(f->ev[0].reason, "registered");
    assert_string_equal(t->pub.reason, "");
    assert_int_equal(wh_targets_set_health(f->reg, "web", "10.0.0.1:80", 0, "task_stopped"), 0);
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    assert_string_equal(t->pub.reason, "task_stopped");
    assert_int_equal(wh_targets_set_health(f->reg, "web", "10.0.0.1:80", 1, NULL), 0);
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    assert_int_equal(wh_targets_set_health(f->reg, "web", "10.0.0.9:80", 1, NULL),
                     WH_TARGETS_NO_TARGET);
    fx_free(f);
}

static void test_register_errors(void **state)
{
    struct fx *f = fx_new(PLAIN_GROUP("\"10.0.0.1:80\""), 1);
    char err[WH_ERR_LEN];
    struct wh_targets *r = f->reg;
    assert_int_equal(wh_targets_register(r, "nope", "10.0.0.2:80", 1, "api", err, 256),
                     WH_TARGETS_NO_GROUP);
    const char *bad[] = {"localhost:80", "10.0.0.2",  "10.0.0.2:0", "10.0.0.2:70000", "::1:80",
                         "[::1]",        "[nope]:80", "0.0.0.0:80", "[::]:80",        ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(wh_targets_register(r, "web", bad[i], 1, "api", err, 256),
                         WH_TARGETS_BAD_ADDRESS);
    assert_int_equal(wh_targets_register(r, "web", "10.0.0.2:80", 0, "api", err, 256),
                     WH_TARGETS_BAD_WEIGHT);
    assert_int_equal(wh_targets_register(r, "web", "10.0.0.2:80", 1000, "api", err, 256),
                     WH_TARGETS_BAD_WEIGHT);
    assert_int_equal(wh_targets_register(r, "web", "10.0.0.1:80", 1, "api", err, 256),
                     WH_TARGETS_EXISTS);
    assert_int_equal(wh_targets_register(r, "web", "[::1]:8080", 2, "api", err, 256), 0);
    assert_int_equal(wh_targets_register(r, "web", "[0:0::1]:8080", 2, "api", err, 256),
                     WH_TARGETS_EXISTS);
    assert_non_null(wh_targets_find(r, "web", "[::1]:8080"));
    assert_int_equal(wh_targets_deregister(r, "web", "10.0.0.7:80"), WH_TARGETS_NO_TARGET);
    assert_int_equal(wh_targets_deregister(r, "nope", "10.0.0.1:80"), WH_TARGETS_NO_GROUP);
    assert_int_equal(wh_targets_deregister(r, "web", "bad"), WH_TARGETS_BAD_ADDRESS);
    /* Re-registering a draining address makes a second target beside it. */
    char longsrc[WH_TARGET_SOURCE_MAX + 1];
    memset(longsrc, 's', sizeof(longsrc) - 1);
    longsrc[sizeof(longsrc) - 1] = '\0';
    assert_int_equal(wh_targets_register(r, "web", "10.0.0.3:80", 1, longsrc, err, 256),
                     WH_TARGETS_BAD_SOURCE);
    assert_int_equal(wh_targets_register(r, "web", "10.0.0.3:80", 1, NULL, err, 256),
                     WH_TARGETS_BAD_SOURCE);
    assert_int_equal(wh_targets_set_health(r, "nope", "10.0.0.1:80", 1, NULL), WH_TARGETS_NO_GROUP);
    assert_int_equal(wh_targets_set_health(r, "web", "bad", 1, NULL), WH_TARGETS_BAD_ADDRESS);
    uint64_t id = T(f, "web", "10.0.0.1:80")->pub.id;
    assert_int_equal(wh_targets_deregister(r, "web", "10.0.0.1:80"), 0);
    assert_int_equal(wh_targets_set_health(r, "web", "10.0.0.1:80", 1, NULL), WH_TARGETS_DRAINING);
    assert_int_equal(wh_targets_deregister(r, "web", "10.0.0.1:80"), 0); /* already draining */
    assert_int_equal(wh_targets_register(r, "web", "10.0.0.1:80", 1, "api", err, 256), 0);
    assert_true(T(f, "web", "10.0.0.1:80")->pub.id != id);
    assert_int_equal(T(f, "web", "10.0.0.1:80")->pub.state, WH_TARGET_HEALTHY);
    fx_free(f);
}

/* ---- snapshots ---- */

static struct wh_tg_snapshot *snap(struct fx *f)
{
    struct wh_tg_snapshot *s = wh_targets_snapshot(f->reg, "web");
    assert_non_null(s);
    return s;
}

static int lists(const struct wh_tg_snapshot *s, const char *addr)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->members[i].target->addr.text, addr) == 0)
            return 1;
    return 0;
}

static void test_snapshot_contents(void **state)
{
    struct fx *f = fx_new(HC_GROUP("\"10.0.0.1:80\", \"10.0.0.2:80\", "
                                   "{ address = \"10.0.0.3:80\"; weight = 7; }"),
                          1);
    assert_null(wh_targets_snapshot(f->reg, "nope"));
    struct wh_tg_snapshot *s = snap(f);
    assert_int_equal(s->n, 3); /* all initial: fail-open */
    assert_true(s->fail_open);
    assert_int_equal(f->reg->groups.tqh_first->fail_open_total, 1);
    uint64_t v = s->version;
    wh_tg_snapshot_unref(s);

    wh_tg_check_result(T(f, "web", "10.0.0.1:80"), 1, NULL, NULL);
    wh_tg_check_result(T(f, "web", "10.0.0.3:80"), 1, NULL, NULL);
    s = snap(f);
    assert_false(s->fail_open);
    assert_int_equal(s->n, 2);
    assert_true(lists(s, "10.0.0.1:80") && lists(s, "10.0.0.3:80"));
    assert_int_equal(s->members[1].weight, 7);
    assert_true(s->members[0].healthy_since > 0);
    assert_int_equal(s->n_registered, 3);
    assert_true(s->version > v);
    assert_int_equal(atomic_load(&s->refs), 2); /* the registry's and ours */
    assert_int_equal(atomic_load(&s->members[0].target->snapshots), 1);
    assert_int_equal(atomic_load(&s->members[0].target->refs), 2);
    v = s->version;
    wh_tg_snapshot_unref(s);

    /* A change that does not change routing publishes nothing. */
    size_t pubs = f->publishes;
    wh_tg_check_result(T(f, "web", "10.0.0.2:80"), 0, "timeout", "x");
    s = snap(f);
    assert_int_equal(s->version, v);
    assert_int_equal(f->publishes, pubs);
    wh_tg_snapshot_unref(s);

    /* None healthy: fail-open over initial and unhealthy ones, never draining ones. */
    struct wh_tg_target *t1 = T(f, "web", "10.0.0.1:80");
    wh_tg_check_result(t1, 0, "timeout", "x");
    wh_tg_check_result(t1, 0, "timeout", "x");
    assert_int_equal(wh_targets_deregister(f->reg, "web", "10.0.0.3:80"), 0);
    s = snap(f);
    assert_true(s->fail_open);
    assert_int_equal(s->n, 2);
    assert_false(lists(s, "10.0.0.3:80"));
    assert_int_equal(s->n_registered, 2);
    assert_int_equal(f->reg->groups.tqh_first->fail_open_total, 2);
    wh_tg_snapshot_unref(s);

    /* Only draining targets: nothing to route to (503). */
    wh_targets_deregister(f->reg, "web", "10.0.0.1:80");
    wh_targets_deregister(f->reg, "web", "10.0.0.2:80");
    s = snap(f);
    assert_int_equal(s->n, 0);
    assert_false(s->fail_open);
    assert_int_equal(s->n_registered, 0);
    wh_tg_snapshot_unref(s);
    fx_free(f);
}

static void test_publish_is_coalesced(void **state)
{
    struct fx *f = fx_new(PLAIN_GROUP(""), 1);
    wh_tg_flush(f->reg);
    size_t pubs = f->publishes;
    char addr[32];
    for (int i = 1; i <= 50; i++) {
        snprintf(addr, sizeof(addr), "10.0.1.%d:80", i);
        reg(f, addr);
    }
    assert_int_equal(f->publishes, pubs); /* pending, one timer away */
    assert_true(f->reg->flush_pending);
    event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(f->publishes, pubs + 1);
    struct wh_tg_snapshot *s = snap(f);
    assert_int_equal(s->n, 50);
    wh_tg_snapshot_unref(s);
    /* Deregistration publishes before it returns. */
    wh_targets_deregister(f->reg, "web", "10.0.1.7:80");
    assert_int_equal(f->publishes, pubs + 2);
    fx_free(f);
}

/* ---- draining ---- */

static void test_drain_ends_with_last_request_and_snapshot(void **state)
{
    struct fx *f = fx_new(PLAIN_GROUP("\"10.0.0.1:80\", \"10.0.0.2:80\""), 1);
    struct wh_tg_snapshot *s = snap(f); /* a worker's */
    struct wh_target *t = s->members[0].target;
    wh_target_ref(t);
    wh_target_begin(t); /* a request in flight */
    assert_int_equal(wh_targets_deregister(f->reg, "web", "10.0.0.1:80"), 0);
    assert_int_equal(t->state, WH_TARGET_DRAINING);
    assert_string_equal(t->reason, "deregistered");
    struct wh_tg_snapshot *now = snap(f);
    assert_false(lists(now, "10.0.0.1:80")); /* out of rotation at once */
    wh_tg_snapshot_unref(now);

    f->now += 1;
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->state, WH_TARGET_DRAINING); /* listed and busy */
    wh_tg_snapshot_unref(s);                        /* the worker moves on; the request goes on */
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->state, WH_TARGET_DRAINING);
    wh_target_end(t);
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->state, WH_TARGET_UNUSED);
    assert_string_equal(last_event(f)->reason, "drained");
    assert_int_equal(f->n_hard, 0);
    assert_null(wh_targets_find(f->reg, "web", "10.0.0.1:80")); /* removed */
    assert_int_equal(atomic_load(&t->refs), 1);                 /* ours only */
    wh_target_unref(t);
    fx_free(f);
}

static void test_drain_ends_at_delay_with_tunnels(void **state)
{
    struct fx *f = fx_new(PLAIN_GROUP("\"10.0.0.1:80\""), 1);
    struct wh_tg_snapshot *s = snap(f);
    struct wh_target *t = s->members[0].target;
    wh_target_begin(t); /* a WebSocket tunnel */
    wh_tg_snapshot_unref(s);
    wh_targets_deregister(f->reg, "web", "10.0.0.1:80");
    f->now += 4.9;
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(f->n_hard, 0);
    assert_non_null(wh_targets_find(f->reg, "web", "10.0.0.1:80"));
    f->now += 0.2; /* deregistration_delay = 5 */
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(f->n_hard, 1);
    assert_ptr_equal(f->hard[0], t);
    assert_int_equal(last_event(f)->new_state, WH_TARGET_UNUSED);
    assert_string_equal(last_event(f)->reason, "deregistration_delay");
    assert_null(wh_targets_find(f->reg, "web", "10.0.0.1:80"));
    wh_target_end(t); /* the tunnel closes later; f->hard keeps t alive */
    fx_free(f);
}

static void test_drain_delay_zero_and_stale_snapshot(void **state)
{
    struct fx *f = fx_new("target_groups = ( { name = \"web\"; deregistration_delay = 0;\n"
                          "  targets = ( \"10.0.0.1:80\" ); } );\n",
                          1);
    struct wh_tg_snapshot *s = snap(f); /* held, no request in flight */
    wh_targets_deregister(f->reg, "web", "10.0.0.1:80");
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(f->n_hard, 0); /* nothing in flight: no tunnels to close */
    assert_string_equal(last_event(f)->reason, "deregistration_delay");
    assert_int_equal(s->members[0].target->magic, WH_TARGET_MAGIC); /* still ours */
    wh_tg_snapshot_unref(s);
    fx_free(f);
}

/* ---- reloads ---- */

static size_t count_events(struct fx *f, size_t from, const char *addr, enum wh_target_state st)
{
    size_t n = 0;
    for (size_t i = from; i < f->n_ev; i++)
        n += strcmp(f->ev[i].addr, addr) == 0 && f->ev[i].new_state == st;
    return n;
}

static void test_reload_applies_static_diff(void **state)
{
    const char *a = PLAIN_GROUP("\"10.0.0.1:80\", \"10.0.0.2:80\"");
    const char *b = PLAIN_GROUP("{ address = \"10.0.0.1:80\"; weight = 5; }, \"10.0.0.4:80\"");
    struct fx *f = fx_new(a, 1);
    reg(f, "10.0.0.3:80");                                                    /* through the API */
    assert_int_equal(wh_targets_deregister(f->reg, "web", "10.0.0.2:80"), 0); /* API too */
    size_t mark = f->n_ev;
    apply(f, a); /* same file: nothing undone, nothing repeated */
    assert_int_equal(f->n_ev, mark);
    assert_int_equal(state_of(f, "10.0.0.2:80"), WH_TARGET_DRAINING);

    apply(f, b);
    assert_int_equal(T(f, "web", "10.0.0.1:80")->pub.weight, 5);
    assert_int_equal(count_events(f, mark, "10.0.0.4:80", WH_TARGET_HEALTHY), 1);
    assert_string_equal(T(f, "web", "10.0.0.4:80")->pub.source, "static");
    assert_int_equal(state_of(f, "10.0.0.3:80"), WH_TARGET_HEALTHY); /* untouched */
    assert_int_equal(f->n_ev, mark + 1);
    struct wh_tg_snapshot *s = snap(f);
    assert_int_equal(s->members[0].weight, 5);
    wh_tg_snapshot_unref(s);

    /* 10.0.0.4 removed from the file drains; a static address the API owns stays. */
    mark = f->n_ev;
    apply(f, PLAIN_GROUP("{ address = \"10.0.0.1:80\"; weight = 5; }, \"10.0.0.3:80\""));
    assert_int_equal(state_of(f, "10.0.0.4:80"), WH_TARGET_DRAINING);
    assert_string_equal(T(f, "web", "10.0.0.3:80")->pub.source, "api");
    apply(f, PLAIN_GROUP("{ address = \"10.0.0.1:80\"; weight = 5; }"));
    assert_int_equal(state_of(f, "10.0.0.3:80"), WH_TARGET_HEALTHY); /* not static: kept */

    /* A group that leaves the file drains entirely and then disappears. */
    apply(f, "target_groups = ( { name = \"api\"; } );\n");
    assert_int_equal(state_of(f, "10.0.0.1:80"), WH_TARGET_DRAINING);
    assert_int_equal(state_of(f, "10.0.0.3:80"), WH_TARGET_DRAINING);
    char err[WH_ERR_LEN];
    assert_int_equal(wh_targets_register(f->reg, "web", "10.0.0.9:80", 1, "api", err, 256),
                     WH_TARGETS_NO_GROUP);
    f->now += 1;
    wh_tg_sweep(f->reg, f->now);
    assert_null(wh_targets_find(f->reg, "web", "10.0.0.1:80"));
    struct wh_tg_group *g = wh_tg_group_find(f->reg, "web");
    assert_int_equal(g->n_targets, 0);
    assert_string_equal(f->reg->groups.tqh_first->name, "api"); /* configuration order */
    fx_free(f);
}

static void test_reload_toggles_health_checks(void **state)
{
    struct fx *f = fx_new(PLAIN_GROUP("\"10.0.0.1:80\""), 1);
    apply(f, HC_GROUP("\"10.0.0.1:80\""));
    struct wh_tg_target *t = T(f, "web", "10.0.0.1:80");
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY); /* keeps its state, now checked */
    assert_non_null(t->hc_timer);
    wh_tg_check_result(t, 0, "timeout", "x");
    wh_tg_check_result(t, 0, "timeout", "x");
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    apply(f, PLAIN_GROUP("\"10.0.0.1:80\""));
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY); /* no checks: healthy */
    assert_null(t->check);
    fx_free(f);
}

/* ---- passive ---- */

static void test_passive_ejection(void **state)
{
    struct fx *f = fx_new(HC_GROUP("\"10.0.0.1:80\", \"10.0.0.2:80\""), 1);
    struct wh_tg_target *t = T(f, "web", "10.0.0.1:80");
    wh_tg_check_result(t, 1, NULL, NULL);
    wh_tg_check_result(T(f, "web", "10.0.0.2:80"), 1, NULL, NULL);
    wh_target_note_connect(&t->pub, 0);
    wh_target_note_connect(&t->pub, 0);
    wh_target_note_connect(&t->pub, 1); /* a success resets the streak */
    wh_target_note_connect(&t->pub, 0);
    wh_target_note_connect(&t->pub, 0);
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    wh_target_note_connect(&t->pub, 0);
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    assert_string_equal(t->pub.reason, "passive");
    assert_string_equal(t->pub.description, "3 consecutive connect failures");
    assert_int_equal(atomic_load(&t->pub.passive_connect_failures), 0);
    struct wh_tg_snapshot *s = snap(f);
    assert_false(lists(s, "10.0.0.1:80"));
    wh_tg_snapshot_unref(s);
    /* Back after `eject` seconds... */
    f->now += 9.9;
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    f->now += 0.2;
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    assert_string_equal(t->pub.reason, "");
    /* ...or once active checks pass (healthy_threshold = 3), whichever first. */
    wh_target_note_status(&t->pub, 502);
    wh_target_note_status(&t->pub, 503);
    wh_tg_sweep(f->reg, f->now);
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    assert_string_equal(t->pub.description, "2 consecutive 5xx responses");
    wh_tg_check_result(t, 1, NULL, NULL);
    wh_tg_check_result(t, 1, NULL, NULL);
    assert_int_equal(t->pub.state, WH_TARGET_UNHEALTHY);
    wh_tg_check_result(t, 1, NULL, NULL);
    assert_int_equal(t->pub.state, WH_TARGET_HEALTHY);
    fx_free(f);
}

/* ---- real checks against in-process servers ---- */

struct srv {
    struct evconnlistener *l;
    const char *mode;
    int port;
    char request[1024];
    struct bufferevent *conns[16];
    size_t n_conns;
};

static void srv_read(struct bufferevent *bev, void *arg)
{
    struct srv *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos < 0)
        return;
    size_t n = evbuffer_get_length(in);
    n = n < sizeof(s->request) - 1 ? n : sizeof(s->request) - 1;
    evbuffer_remove(in, s->request, n);
    s->request[n] = '\0';
    const char *reply = NULL;
    if (strcmp(s->mode, "ok") == 0)
        reply = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    else if (strcmp(s->mode, "500") == 0)
        reply = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    else if (strcmp(s->mode, "garbage") == 0)
        reply = "HELLO THERE\r\n\r\n";
    else if (strcmp(s->mode, "interim") == 0)
        reply = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    if (reply) {
        bufferevent_write(bev, reply, strlen(reply));
        return;
    }
    if (strcmp(s->mode, "reset") == 0) {
        struct linger lg = {1, 0};
        setsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    if (strcmp(s->mode, "hang") != 0) { /* close / reset */
        for (size_t i = 0; i < s->n_conns; i++)
            if (s->conns[i] == bev)
                s->conns[i] = NULL;
        bufferevent_free(bev);
    }
}

static void srv_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                       void *arg)
{
    struct srv *s = arg;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    assert_true(s->n_conns < 16);
    s->conns[s->n_conns++] = bev;
    bufferevent_setcb(bev, srv_read, NULL, NULL, s);
    bufferevent_enable(bev, EV_READ);
}

static void srv_start(struct srv *s, struct event_base *base, const char *mode)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->l = evconnlistener_new_bind(base, srv_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                   16, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(s->l);
    socklen_t len = sizeof(sin);
    getsockname(evconnlistener_get_fd(s->l), (struct sockaddr *)&sin, &len);
    s->port = ntohs(sin.sin_port);
}

static void srv_stop(struct srv *s)
{
    for (size_t i = 0; i < s->n_conns; i++)
        if (s->conns[i])
            bufferevent_free(s->conns[i]);
    evconnlistener_free(s->l);
}

static int refused_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    close(fd);
    return ntohs(sin.sin_port);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Register 127.0.0.1:port (a server in `mode`, or a refused port when mode
 * is NULL) in a group checked every 0.4 s with thresholds of 1, run the loop
 * until its first verdict, and return its state; reason and the request the
 * server saw are copied out. */
static enum wh_target_state check_once(const char *mode, const char *host, char *reason,
                                       char *request)
{
    char conf[512], addr[32], err[WH_ERR_LEN];
    snprintf(conf, sizeof(conf),
             "target_groups = ( { name = \"web\";\n"
             "  health_check = { path = \"/hc?x=1\"; interval = 0.4; timeout = 0.2;\n"
             "    healthy_threshold = 1; unhealthy_threshold = 1; host = \"%s\"; }; } );\n",
             host);
    struct fx *f = fx_new(conf, 0);
    struct srv s;
    int port = refused_port();
    if (mode) {
        srv_start(&s, f->base, mode);
        port = s.port;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(wh_targets_register(f->reg, "web", addr, 1, "api", err, sizeof(err)), 0);
    f->stop_on_event = 1;
    struct event *dl = evtimer_new(f->base, deadline_cb, f->base);
    struct timeval tv = {3, 0};
    evtimer_add(dl, &tv);
    event_base_dispatch(f->base);
    event_free(dl);
    f->stop_on_event = 0;
    struct wh_tg_target *t = T(f, "web", addr);
    enum wh_target_state st = t->pub.state;
    strcpy(reason, t->pub.reason);
    struct wh_tg_group *g = wh_tg_group_find(f->reg, "web");
    uint64_t checks = 0;
    for (int r = 0; r < WH_HC_N_RESULTS; r++)
        checks += g->checks[r];
    assert_int_equal(checks, 1);
    assert_int_equal(f->reg->hc_count, 1);
    if (mode) {
        strcpy(request, s.request);
        srv_stop(&s);
    }
    fx_free(f);
    return st;
}

static void test_real_checks(void **state)
{
    static const struct {
        const char *mode, *reason;
    } cases[] = {{"ok", ""},
                 {"interim", ""},
                 {"500", "status_mismatch"},
                 {"garbage", "malformed_response"},
                 {"close", "connection_reset"},
                 {"reset", "connection_reset"},
                 {"hang", "timeout"},
                 {NULL, "connection_refused"}};
    char reason[64], request[1024], want[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        request[0] = '\0';
        enum wh_target_state st = check_once(cases[i].mode, "", reason, request);
        assert_string_equal(reason, cases[i].reason);
        assert_int_equal(st, cases[i].reason[0] ? WH_TARGET_UNHEALTHY : WH_TARGET_HEALTHY);
        if (cases[i].mode) {
            assert_memory_equal(request, "GET /hc?x=1 HTTP/1.1\r\nHost: 127.0.0.1:", 38);
            assert_non_null(strstr(request, "\r\nConnection: close\r\n"));
        }
    }
    check_once("ok", "status.example", reason, request);
    snprintf(want, sizeof(want), "GET /hc?x=1 HTTP/1.1\r\nHost: status.example\r\n");
    assert_memory_equal(request, want, strlen(want));
}

/* ---- snapshot swap stress: readers on threads, the control thread publishing ---- */

#define READERS 4
#define ROUNDS 20000
#define POOL 48
#define RING 8

struct reader {
    pthread_t th;
    _Atomic(struct wh_tg_snapshot *) mailbox; /* the "pipe" from the control thread */
    atomic_int *stop;
    uint64_t requests;
};

struct stress {
    struct reader r[READERS];
    atomic_int stop;
    size_t published;
};

static void stress_publish(void *arg, struct wh_tg_snapshot *s)
{
    struct stress *st = arg;
    st->published++;
    for (int i = 0; i < READERS; i++) {
        wh_tg_snapshot_ref(s); /* one reference per worker, taken before handing over */
        wh_tg_snapshot_unref(atomic_exchange(&st->r[i].mailbox, s));
    }
}

struct request {
    struct wh_tg_snapshot *s;
    struct wh_target *t;
};

static void request_end(struct request *q)
{
    wh_target_end(q->t);
    wh_tg_snapshot_unref(q->s);
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct wh_tg_snapshot *cur = NULL;
    struct request ring[RING];
    size_t head = 0, count = 0;
    while (!atomic_load(r->stop)) {
        struct wh_tg_snapshot *s = atomic_exchange(&r->mailbox, NULL);
        if (s) {
            wh_tg_snapshot_unref(cur);
            cur = s;
        }
        if (!cur || cur->n == 0)
            continue;
        if (cur->magic != WH_SNAPSHOT_MAGIC)
            abort();
        if (count == RING) { /* the oldest request ends */
            request_end(&ring[head]);
            head = (head + 1) % RING;
            count--;
        }
        struct request *q = &ring[(head + count++) % RING];
        wh_tg_snapshot_ref(cur);
        q->s = cur;
        q->t = cur->members[r->requests++ % cur->n].target;
        if (q->t->magic != WH_TARGET_MAGIC || strncmp(q->t->addr.text, "10.9.", 5) != 0)
            abort();
        wh_target_begin(q->t);
        wh_target_note_status(q->t, 200);
        atomic_fetch_add(&cur->counters->responses[2], 1);
    }
    while (count--) {
        request_end(&ring[head]);
        head = (head + 1) % RING;
    }
    wh_tg_snapshot_unref(cur);
    return NULL;
}

static unsigned lcg(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

static void stress_round(struct fx *f, unsigned *seed, int round)
{
    char addr[32], err[WH_ERR_LEN];
    snprintf(addr, sizeof(addr), "10.9.0.%u:80", 1 + lcg(seed) % POOL);
    switch (round % 4) {
    case 0:
    case 1:
        wh_targets_register(f->reg, "web", addr, 1 + (int)(lcg(seed) % 3), "api", err, sizeof(err));
        break;
    case 2:
        wh_targets_deregister(f->reg, "web", addr);
        break;
    default:
        wh_targets_set_health(f->reg, "web", addr, (int)(lcg(seed) % 2), "stress");
        break;
    }
    wh_tg_flush(f->reg);
    f->now += 0.01;
    if (round % 8 == 0)
        wh_tg_sweep(f->reg, f->now);
}

static void test_snapshot_swap_stress(void **state)
{
    struct stress st = {0};
    struct fx *f = fx_new(NULL, 1);
    f->reg->publish = stress_publish;
    f->reg->publish_arg = &st;
    f->reg->n_subs = 0; /* no event recording */
    wh_targets_on_drained_hard(f->reg, NULL, NULL);
    apply(f, "target_groups = ( { name = \"web\"; deregistration_delay = 0.3;\n"
             "  passive = { consecutive_connect_failures = 0; };\n"
             "  targets = ( \"10.9.0.1:80\", \"10.9.0.2:80\" ); } );\n");
    for (int i = 0; i < READERS; i++) {
        st.r[i].stop = &st.stop;
        assert_int_equal(pthread_create(&st.r[i].th, NULL, reader_main, &st.r[i]), 0);
    }
    unsigned seed = 42;
    for (int round = 0; round < ROUNDS; round++)
        stress_round(f, &seed, round);
    atomic_store(&st.stop, 1);
    uint64_t requests = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(st.r[i].th, NULL);
        wh_tg_snapshot_unref(atomic_exchange(&st.r[i].mailbox, NULL));
        requests += st.r[i].requests;
    }
    assert_true(st.published >= ROUNDS / 4);
    assert_true(requests > 0);
    print_message("stress: %zu snapshots published, %llu requests by %d readers\n", st.published,
                  (unsigned long long)requests, READERS);
    /* Every request has ended: nothing in flight, and every drain completes. */
    struct wh_tg_group *g = wh_tg_group_find(f->reg, "web");
    struct wh_tg_target *t;
    TAILQ_FOREACH(t, &g->targets, link)
    assert_int_equal(atomic_load(&t->pub.in_flight), 0);
    f->now += 1;
    wh_tg_sweep(f->reg, f->now);
    TAILQ_FOREACH(t, &g->targets, link)
    {
        assert_false(t->draining);
        /* the registry's reference, and the current snapshot's if it lists it */
        assert_true(atomic_load(&t->pub.snapshots) <= 1);
        assert_int_equal(atomic_load(&t->pub.refs), 1 + atomic_load(&t->pub.snapshots));
    }
    fx_free(f); /* ASan: no leak, no use after free */
}

/* ---- slow start entry (targets.c: slow_start_begin) ---- */

/* HC_GROUP with slow_start = 30. */
#define SLOW_GROUP(targets)                                                                        \
    "target_groups = ( { name = \"web\"; deregistration_delay = 30; slow_start = 30;\n"            \
    "  health_check = { interval = 1; timeout = 0.5; healthy_threshold = 3;\n"                     \
    "                   unhealthy_threshold = 2; matcher = \"200\"; };\n"                          \
    "  targets = ( " targets " ); } );\n"

/* The member of a fresh snapshot of "web" for addr (must be listed). */
static struct wh_tg_member member_of(struct fx *f, const char *addr)
{
    struct wh_tg_snapshot *s = snap(f);
    struct wh_tg_member m = {0};
    int found = 0;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->members[i].target->addr.text, addr) == 0) {
            m = s->members[i];
            found = 1;
        }
    assert_false(s->fail_open);
    wh_tg_snapshot_unref(s);
    assert_true(found);
    return m;
}

static void pass_checks(struct fx *f, const char *addr, int n)
{
    for (int i = 0; i < n; i++)
        wh_tg_check_result(T(f, "web", addr), 1, NULL, NULL);
}

static void fail_checks(struct fx *f, const char *addr, int n)
{
    for (int i = 0; i < n; i++)
        wh_tg_check_result(T(f, "web", addr), 0, "timeout", "x");
}

/* Targets that come up together serve at full share at once: every static
 * target of the file, whatever order their first checks pass in (a group
 * that starts from nothing). */
static void test_slow_start_targets_coming_up_together_get_full_share(void **state)
{
    struct fx *f = fx_new(SLOW_GROUP("\"10.0.0.1:80\", \"10.0.0.2:80\", \"10.0.0.3:80\""), 1);
    pass_checks(f, "10.0.0.1:80", 1);
    f->now = 1005;
    pass_checks(f, "10.0.0.2:80", 1);
    f->now = 1010;
    pass_checks(f, "10.0.0.3:80", 1);
    assert_true(member_of(f, "10.0.0.1:80").healthy_since == 1000);
    assert_true(member_of(f, "10.0.0.2:80").healthy_since == 1005);
    for (int i = 1; i <= 3; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.0.%d:80", i);
        assert_true(member_of(f, addr).slow_start_begin == 0);
    }
    struct wh_tg_snapshot *s = snap(f);
    assert_true(s->slow_start == 30);
    assert_int_equal(s->n, 3);
    wh_tg_snapshot_unref(s);
    fx_free(f);
}

/* A target added to a serving group ramps from when it became healthy; so
 * does one back from unhealthy. Only a peer at full share that was healthy
 * before the newcomer's spell began counts; ramping peers do not. Slow
 * start off (a reload) means full share. */
static void test_slow_start_newcomers_and_returning_targets_ramp(void **state)
{
    struct fx *f = fx_new(SLOW_GROUP("\"10.0.0.1:80\", \"10.0.0.2:80\""), 1);
    pass_checks(f, "10.0.0.1:80", 1);
    pass_checks(f, "10.0.0.2:80", 1);

    f->now = 1020;
    reg(f, "10.0.0.3:80"); /* scale out */
    f->now = 1021;
    pass_checks(f, "10.0.0.3:80", 1);
    assert_true(member_of(f, "10.0.0.3:80").slow_start_begin == 1021);
    assert_true(member_of(f, "10.0.0.1:80").slow_start_begin == 0); /* untouched */

    f->now = 1030;
    fail_checks(f, "10.0.0.1:80", 2);
    assert_int_equal(state_of(f, "10.0.0.1:80"), WH_TARGET_UNHEALTHY);
    f->now = 1040;
    pass_checks(f, "10.0.0.1:80", 3); /* back while 10.0.0.2 serves at full share */
    assert_true(member_of(f, "10.0.0.1:80").slow_start_begin == 1040);

    /* Only ramping peers healthy (10.0.0.1 until 1070): a newcomer serves at
     * full share, as in a group that starts from nothing. 10.0.0.3's ramp
     * (1021..1051) is over by 1055, so it counts as full share again after. */
    f->now = 1045;
    fail_checks(f, "10.0.0.2:80", 2);
    fail_checks(f, "10.0.0.3:80", 2);
    f->now = 1046;
    reg(f, "10.0.0.4:80");
    pass_checks(f, "10.0.0.4:80", 1);
    assert_true(member_of(f, "10.0.0.4:80").slow_start_begin == 0);

    /* With slow start off (a reload), nothing ramps from then on. */
    apply(f, HC_GROUP("\"10.0.0.1:80\", \"10.0.0.2:80\""));
    f->now = 1050;
    pass_checks(f, "10.0.0.2:80", 3);
    assert_true(member_of(f, "10.0.0.2:80").slow_start_begin == 0);
    struct wh_tg_snapshot *s = snap(f);
    assert_true(s->slow_start == 0);
    wh_tg_snapshot_unref(s);
    fx_free(f);
}

/* A group without checks: every static target of the file is healthy at
 * once and serves at full share (they come up together). */
static void test_slow_start_static_targets_without_checks_start_at_full_share(void **state)
{
    struct fx *f = fx_new("target_groups = ( { name = \"web\"; slow_start = 30;\n"
                          "  targets = ( \"10.0.0.1:80\", \"10.0.0.2:80\" ); } );\n",
                          1);
    assert_true(member_of(f, "10.0.0.1:80").slow_start_begin == 0);
    assert_true(member_of(f, "10.0.0.2:80").slow_start_begin == 0);
    f->now = 1010;
    reg(f, "10.0.0.3:80"); /* added later: healthy at once, ramps */
    assert_true(member_of(f, "10.0.0.3:80").slow_start_begin == 1010);
    fx_free(f);
}

int main(void)
{
    wh_log_set_level(WH_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matcher),
        cmocka_unit_test(test_phase_spreads_checks),
        cmocka_unit_test(test_new_target_healthy_after_one_pass),
        cmocka_unit_test(test_failing_new_target_needs_thresholds),
        cmocka_unit_test(test_group_without_checks_is_healthy),
        cmocka_unit_test(test_register_errors),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_snapshot_contents),
        cmocka_unit_test(test_publish_is_coalesced),
        cmocka_unit_test(test_drain_ends_with_last_request_and_snapshot),
        cmocka_unit_test(test_drain_ends_at_delay_with_tunnels),
        cmocka_unit_test(test_drain_delay_zero_and_stale_snapshot),
        cmocka_unit_test(test_reload_applies_static_diff),
        cmocka_unit_test(test_reload_toggles_health_checks),
        cmocka_unit_test(test_passive_ejection),
        cmocka_unit_test(test_real_checks),
        cmocka_unit_test(test_snapshot_swap_stress),
        cmocka_unit_test(test_slow_start_targets_coming_up_together_get_full_share),
        cmocka_unit_test(test_slow_start_newcomers_and_returning_targets_ramp),
        cmocka_unit_test(test_slow_start_static_targets_without_checks_start_at_full_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

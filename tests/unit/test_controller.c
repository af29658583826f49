/* Unit tests of the controller's executor (src/controller/) over a fake
 * Docker engine below the runtime interface: what it creates (labels, env,
 * port), registration of running tasks in the target group, replacement of
 * a task whose container dies, adoption at start (no duplicate), a foreign
 * cluster's containers left alone, and scale-in by a reload.
 * The real engines are the end-to-end tests' (test_services.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "wharf/config.h"
#include "wharf/controller.h"
#include "wharf/hosts.h"
#include "wharf/runtime.h"
#include "wharf/targets.h"

#define MAX_CONTAINERS 32
#define MAX_LABELS 8

/* ---- the fake engine: one per host, shared by its two runtimes ---- */

struct fake_container {
    char id[72];
    char keys[MAX_LABELS][32], values[MAX_LABELS][64];
    struct wh_rt_kv labels[MAX_LABELS];
    size_t n_labels;
    char env_task[64]; /* WHARF_TASK_ID */
    int running, host_port, exists;
};

struct engine {
    struct fake_container c[MAX_CONTAINERS];
    int n, creates, stops, removes, next_port;
    wh_rt_event_fn watch_fn;
    void *watch_arg;
};

struct fake_call;

struct fake_rt {
    struct wh_runtime rt; /* first */
    struct engine *engine;
    struct event_base *base;
    struct fake_call *calls; /* pending */
};

/* A call answered from the loop, as the real runtime answers. */
struct fake_call {
    struct fake_call *next;
    struct fake_rt *rt;
    struct event *ev;
    void (*answer)(struct fake_call *c);
    void *cb, *arg;
    char id[72];
};

static struct fake_call *call_new(struct fake_rt *rt, void (*answer)(struct fake_call *), void *cb,
                                  void *arg, const char *id);

static void call_unlink(struct fake_call *c)
{
    struct fake_call **p = &c->rt->calls;
    while (*p != c)
        p = &(*p)->next;
    *p = c->next;
    event_free(c->ev);
    free(c);
}

static void call_fire(evutil_socket_t fd, short what, void *arg)
{
    struct fake_call *c = arg;
    c->answer(c);
    call_unlink(c);
}

static struct fake_call *call_new(struct fake_rt *rt, void (*answer)(struct fake_call *), void *cb,
                                  void *arg, const char *id)
{
    struct fake_call *c = calloc(1, sizeof(*c));
    c->rt = rt;
    c->answer = answer;
    c->cb = cb;
    c->arg = arg;
    snprintf(c->id, sizeof(c->id), "%s", id ? id : "");
    c->ev = evtimer_new(rt->base, call_fire, c);
    struct timeval zero = {0, 0};
    evtimer_add(c->ev, &zero);
    c->next = rt->calls;
    rt->calls = c;
    return c;
}

static const struct wh_rt_error ok_err = {WH_RT_OK, 0, ""};

static struct fake_container *find(struct engine *e, const char *id)
{
    for (int i = 0; i < e->n; i++)
        if (e->c[i].exists && strcmp(e->c[i].id, id) == 0)
            return &e->c[i];
    return NULL;
}

static void answer_done(struct fake_call *c)
{
    ((wh_rt_done_fn)c->cb)(c->arg, &ok_err);
}

static void answer_info(struct fake_call *c)
{
    struct wh_rt_info info = {.ncpu = 2, .mem_total = 4096LL << 20};
    ((wh_rt_info_fn)c->cb)(c->arg, &ok_err, &info);
}

static void fill_view(const struct fake_container *fc, struct wh_rt_container *v)
{
    memset(v, 0, sizeof(*v));
    snprintf(v->id, sizeof(v->id), "%s", fc->id);
    snprintf(v->state, sizeof(v->state), "%s", fc->running ? "running" : "exited");
    v->running = fc->running;
    v->host_port = fc->host_port;
    v->container_port = 8080;
    v->labels = fc->labels;
    v->n_labels = fc->n_labels;
}

static void answer_inspect(struct fake_call *c)
{
    struct fake_container *fc = find(c->rt->engine, c->id);
    struct wh_rt_container v;
    struct wh_rt_error nf = {WH_RT_ERR_HTTP, 404, "no such container"};
    if (!fc) {
        ((wh_rt_inspect_fn)c->cb)(c->arg, &nf, NULL);
        return;
    }
    fill_view(fc, &v);
    ((wh_rt_inspect_fn)c->cb)(c->arg, &ok_err, &v);
}

static void answer_list(struct fake_call *c)
{
    struct engine *e = c->rt->engine;
    struct wh_rt_container v[MAX_CONTAINERS];
    size_t n = 0;
    for (int i = 0; i < e->n; i++)
        if (e->c[i].exists)
            fill_view(&e->c[i], &v[n++]);
    ((wh_rt_list_fn)c->cb)(c->arg, &ok_err, v, n);
}

static void answer_create(struct fake_call *c)
{
    ((wh_rt_create_fn)c->cb)(c->arg, &ok_err, c->id);
}

static void fake_free(struct wh_runtime *rt)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    while (f->calls)
        call_unlink(f->calls); /* dropped: no callbacks */
    free(f);
}

static int fake_ping(struct wh_runtime *rt, wh_rt_done_fn cb, void *arg)
{
    call_new((struct fake_rt *)rt, answer_done, (void *)cb, arg, NULL);
    return 0;
}

static int fake_info(struct wh_runtime *rt, wh_rt_info_fn cb, void *arg)
{
    call_new((struct fake_rt *)rt, answer_info, (void *)cb, arg, NULL);
    return 0;
}

static int fake_pull(struct wh_runtime *rt, const char *image, const struct wh_rt_auth *auth,
                     enum wh_rt_pull_policy policy, wh_rt_done_fn cb, void *arg)
{
    call_new((struct fake_rt *)rt, answer_done, (void *)cb, arg, NULL);
    return 0;
}

static void add_label(struct fake_container *fc, const char *k, const char *v)
{
    size_t i = fc->n_labels++;
    snprintf(fc->keys[i], sizeof(fc->keys[i]), "%s", k);
    snprintf(fc->values[i], sizeof(fc->values[i]), "%s", v);
    fc->labels[i] = (struct wh_rt_kv){fc->keys[i], fc->values[i]};
}

static int fake_create(struct wh_runtime *rt, const struct wh_rt_create_spec *spec,
                       wh_rt_create_fn cb, void *arg)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    struct engine *e = f->engine;
    assert_true(e->n < MAX_CONTAINERS);
    struct fake_container *fc = &e->c[e->n++];
    memset(fc, 0, sizeof(*fc));
    snprintf(fc->id, sizeof(fc->id), "c%p-%d", (void *)e, e->n);
    for (size_t i = 0; i < spec->n_labels; i++)
        add_label(fc, spec->labels[i].key, spec->labels[i].value);
    for (size_t i = 0; i < spec->n_env; i++)
        if (strcmp(spec->env[i].key, "WHARF_TASK_ID") == 0)
            snprintf(fc->env_task, sizeof(fc->env_task), "%s", spec->env[i].value);
    assert_int_equal(spec->container_port, 8080);
    fc->exists = 1;
    e->creates++;
    call_new(f, answer_create, (void *)cb, arg, fc->id);
    return 0;
}

static int fake_start(struct wh_runtime *rt, const char *id, wh_rt_done_fn cb, void *arg)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    struct fake_container *fc = find(f->engine, id);
    assert_non_null(fc);
    fc->running = 1;
    fc->host_port = f->engine->next_port++;
    call_new(f, answer_done, (void *)cb, arg, NULL);
    return 0;
}

static int fake_stop(struct wh_runtime *rt, const char *id, int timeout, wh_rt_done_fn cb,
                     void *arg)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    struct fake_container *fc = find(f->engine, id);
    if (fc)
        fc->running = 0;
    f->engine->stops++;
    call_new(f, answer_done, (void *)cb, arg, NULL);
    return 0;
}

static int fake_remove(struct wh_runtime *rt, const char *id, int force, wh_rt_done_fn cb,
                       void *arg)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    struct fake_container *fc = find(f->engine, id);
    if (fc)
        fc->exists = 0;
    f->engine->removes++;
    call_new(f, answer_done, (void *)cb, arg, NULL);
    return 0;
}

static int fake_inspect(struct wh_runtime *rt, const char *id, wh_rt_inspect_fn cb, void *arg)
{
    call_new((struct fake_rt *)rt, answer_inspect, (void *)cb, arg, id);
    return 0;
}

static int fake_list(struct wh_runtime *rt, const char *const *labels, size_t n, wh_rt_list_fn cb,
                     void *arg)
{
    call_new((struct fake_rt *)rt, answer_list, (void *)cb, arg, NULL);
    return 0;
}

static struct wh_rt_watch *fake_events_start(struct wh_runtime *rt,
                                             const struct wh_rt_events_params *p, wh_rt_event_fn cb,
                                             void *arg)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    f->engine->watch_fn = cb;
    f->engine->watch_arg = arg;
    return (struct wh_rt_watch *)f->engine;
}

static void fake_events_stop(struct wh_rt_watch *w)
{
    ((struct engine *)w)->watch_fn = NULL;
}

static const struct wh_runtime_ops fake_ops = {
    .free = fake_free,
    .ping = fake_ping,
    .info = fake_info,
    .image_pull = fake_pull,
    .create = fake_create,
    .start = fake_start,
    .stop = fake_stop,
    .remove = fake_remove,
    .inspect = fake_inspect,
    .list = fake_list,
    .events_start = fake_events_start,
    .events_stop = fake_events_stop,
};

/* ---- fixture: registry, inventory of one host, controller ---- */

struct fx {
    struct event_base *base;
    struct wh_targets *reg;
    struct wh_hosts *hosts;
    struct wh_controller *ctl;
    struct wh_config *cfg;
    struct engine engine;
};

static struct wh_runtime *factory(void *arg, const struct wh_rt_host_params *p, int probe,
                                  char *err, size_t errlen)
{
    struct fx *f = arg;
    struct fake_rt *rt = calloc(1, sizeof(*rt));
    rt->rt.ops = &fake_ops;
    rt->engine = &f->engine;
    rt->base = f->base;
    return &rt->rt;
}

#define CONFIG(count)                                                                              \
    "cluster = \"unit\";\n"                                                                        \
    "target_groups = ( { name = \"web\"; deregistration_delay = 0; } );\n"                         \
    "hosts = ( { id = \"h1\"; docker = \"tcp://127.0.0.1:2376\"; address = \"127.0.0.1\"; } );\n"  \
    "services = ( { name = \"web\"; target_group = \"web\"; desired_count = " #count ";\n"         \
    "  task = { image = \"wharf-demo:v1\"; container_port = 8080; memory = 64; }; } );\n"

static void fx_start(struct fx *f, const char *config)
{
    char err[WH_ERR_LEN] = "";
    f->cfg = wh_config_load_string_ex(config, "unit.conf", WH_FEATURES_ALL, NULL, NULL);
    assert_non_null(f->cfg);
    f->reg = wh_targets_new(f->base, NULL, NULL, NULL);
    assert_int_equal(wh_targets_set_groups(f->reg, f->cfg, err, sizeof(err)), 0);
    f->hosts = wh_hosts_new(f->base, NULL);
    wh_hosts_set_runtime_factory(f->hosts, factory, f);
    f->ctl = wh_controller_new(f->base, f->hosts, f->reg);
    assert_non_null(f->ctl);
    struct wh_host_params p = {
        .id = "h1", .docker = "tcp://127.0.0.1:2376", .address = "127.0.0.1", .ping_interval = 0.2};
    assert_non_null(wh_hosts_add(f->hosts, &p, err, sizeof(err)));
    assert_int_equal(wh_controller_apply(f->ctl, f->cfg, err, sizeof(err)), 0);
}

static void fx_stop(struct fx *f)
{
    wh_controller_free(f->ctl);
    wh_hosts_free(f->hosts);
    wh_targets_free(f->reg);
    wh_config_free(f->cfg);
    f->ctl = NULL;
    f->hosts = NULL;
    f->reg = NULL;
    f->cfg = NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->engine.next_port = 32768;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_stop(f);
    event_base_free(f->base);
    free(f);
    return 0;
}

struct count {
    int targets, healthy, draining;
};

static void count_target(void *arg, const struct wh_target *t)
{
    struct count *c = arg;
    if (t->state == WH_TARGET_DRAINING || t->state == WH_TARGET_UNUSED) {
        c->draining++;
        return;
    }
    c->targets++;
    c->healthy += t->state == WH_TARGET_HEALTHY;
    assert_string_equal(t->source, "service:web");
}

static struct count targets_of(struct fx *f)
{
    struct count c = {0};
    wh_targets_foreach(f->reg, "web", NULL, count_target, &c);
    return c;
}

static int running(struct fx *f)
{
    int n = 0;
    for (int i = 0; i < f->engine.n; i++)
        n += f->engine.c[i].exists && f->engine.c[i].running;
    return n;
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Run the loop until cond holds, at most 5 s (simulated engines answer at
 * once; the reconcile runs on the loop). */
static void run_until(struct fx *f, int (*cond)(struct fx *f, int want), int want)
{
    for (int i = 0; i < 500 && !cond(f, want); i++) {
        struct event *t = evtimer_new(f->base, stop_loop, f->base);
        struct timeval tv = {0, 10000};
        evtimer_add(t, &tv);
        event_base_dispatch(f->base);
        event_free(t);
    }
    if (!cond(f, want))
        fail_msg("condition not met: %d containers running, %d targets", running(f),
                 targets_of(f).targets);
}

static int targets_healthy(struct fx *f, int want)
{
    struct count c = targets_of(f);
    return c.targets == want && c.healthy == want && running(f) == want;
}

static const char *label(const struct fake_container *fc, const char *key)
{
    for (size_t i = 0; i < fc->n_labels; i++)
        if (strcmp(fc->keys[i], key) == 0)
            return fc->values[i];
    return NULL;
}

static void test_starts_labels_and_registers(void **state)
{
    struct fx *f = *state;
    fx_start(f, CONFIG(3));
    run_until(f, targets_healthy, 3);
    assert_int_equal(f->engine.creates, 3);
    for (int i = 0; i < f->engine.n; i++) {
        const struct fake_container *fc = &f->engine.c[i];
        assert_string_equal(label(fc, "wharf.cluster"), "unit");
        assert_string_equal(label(fc, "wharf.service"), "web");
        assert_string_equal(label(fc, "wharf.revision"), "1");
        assert_int_equal(strlen(label(fc, "wharf.taskdef")), 12);
        assert_string_equal(label(fc, "wharf.task"), fc->env_task); /* WHARF_TASK_ID */
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", fc->host_port);
        assert_non_null(wh_targets_find(f->reg, "web", addr));
    }
}

static void test_dead_task_is_replaced_and_removed(void **state)
{
    struct fx *f = *state;
    fx_start(f, CONFIG(2));
    run_until(f, targets_healthy, 2);
    struct fake_container *dead = &f->engine.c[0];
    dead->running = 0;
    struct wh_rt_event ev = {.kind = WH_RT_EV_CONTAINER, .action = "die", .exit_code = 137};
    snprintf(ev.id, sizeof(ev.id), "%s", dead->id);
    ev.labels = dead->labels;
    ev.n_labels = dead->n_labels;
    f->engine.watch_fn(f->engine.watch_arg, &ev);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", dead->host_port);
    /* Its target left the routable set at once. */
    const struct wh_target *t = wh_targets_find(f->reg, "web", addr);
    assert_true(!t || t->state == WH_TARGET_DRAINING || t->state == WH_TARGET_UNUSED);
    run_until(f, targets_healthy, 2);
    assert_int_equal(f->engine.creates, 3);
    assert_false(dead->exists); /* the exited container was removed */
}

static void test_restart_adopts_without_duplicates(void **state)
{
    struct fx *f = *state;
    fx_start(f, CONFIG(3));
    run_until(f, targets_healthy, 3);
    fx_stop(f); /* wharfd goes away: containers stay */
    assert_int_equal(running(f), 3);
    fx_start(f, CONFIG(3));
    run_until(f, targets_healthy, 3);
    assert_int_equal(f->engine.creates, 3);
    assert_int_equal(f->engine.stops, 0);
}

/* want tasks registered and healthy, and the foreign container running too. */
static int tasks_beside_foreign(struct fx *f, int want)
{
    struct count c = targets_of(f);
    return c.targets == want && c.healthy == want && running(f) == want + 1;
}

static void test_other_cluster_untouched_and_scale_in(void **state)
{
    struct fx *f = *state;
    /* A container of another cluster on the same engine. */
    struct fake_container *foreign = &f->engine.c[f->engine.n++];
    snprintf(foreign->id, sizeof(foreign->id), "foreign");
    add_label(foreign, "wharf.cluster", "other");
    add_label(foreign, "wharf.service", "web");
    add_label(foreign, "wharf.task", "f1");
    foreign->exists = foreign->running = 1;
    fx_start(f, CONFIG(3));
    run_until(f, tasks_beside_foreign, 3);
    struct wh_config *two =
        wh_config_load_string_ex(CONFIG(1), "unit.conf", WH_FEATURES_ALL, NULL, NULL);
    char err[WH_ERR_LEN];
    assert_int_equal(wh_controller_apply(f->ctl, two, err, sizeof(err)), 0);
    run_until(f, tasks_beside_foreign, 1);
    assert_int_equal(f->engine.stops, 2);
    assert_true(foreign->exists && foreign->running);
    assert_int_equal(targets_of(f).targets, 1);
    wh_config_free(f->cfg);
    f->cfg = two;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_starts_labels_and_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_task_is_replaced_and_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_adopts_without_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_cluster_untouched_and_scale_in, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the host inventory (src/hosts/) over a fake runtime: its
 * pings and infos answer, fail, answer late or never, on the test's
 * event_base timers; the tests run the loop until what they wait for
 * happens (bounded) and check the state machine, resources, reservations,
 * removal and freeing with calls in flight. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <cmocka.h>
#include <event2/event.h>

#include "hosts/hosts-int.h"
#include "wharf/obj.h"
#include "wharf/runtime.h"

#define INTERVAL 0.05
#define MAX_RTS 32
#define MAX_CHANGES 64
#define FAKE_MAGIC 0x66616b65u
#define FCALL_MAGIC 0x6663616cu

/* ---- the fake runtime ---- */

enum fake_mode {
    FAKE_ANSWER, /* answers after delay (0: on the next loop turn) */
    FAKE_FAIL,   /* fails with a connect error after delay */
    FAKE_HANG,   /* never answers (until the runtime is freed) */
};

struct world;

struct fake_rt {
    struct wh_runtime base; /* first */
    unsigned magic;
    struct world *w;
    int slot, probe;
    char id[64];
    double call_timeout;
    int max_calls;
    enum fake_mode ping_mode, info_mode;
    double delay;
    int ncpu;
    int64_t mem;
    int pings, infos;
    TAILQ_HEAD(, fake_call) calls;
};

struct fake_call {
    unsigned magic;
    struct fake_rt *rt;
    struct event *ev;
    int info, fail;
    wh_rt_done_fn done;
    wh_rt_info_fn info_cb;
    void *arg;
    TAILQ_ENTRY(fake_call) link;
};

struct change {
    char host[32];
    enum wh_host_state old, new_state;
    int missed, removing;
    char reason[WH_ERR_LEN + 64];
};

struct world {
    struct event_base *base;
    struct wh_hosts *hs;
    struct fake_rt *rts[MAX_RTS]; /* NULL once freed */
    int n_rts;
    int fail_factory;
    /* defaults of the next fakes */
    enum fake_mode ping_mode, info_mode;
    double delay;
    int ncpu;
    int64_t mem;
    struct change changes[MAX_CHANGES];
    int n_changes;
    int forget_on_change; /* the subscriber forgets the host it is told about */
    int want_changes;
    struct fake_rt *watch; /* wait_pings */
    int want_pings;
    int (*until)(struct world *w);
    struct event *poll;
};

static void fake_call_free(struct fake_call *c)
{
    TAILQ_REMOVE(&c->rt->calls, c, link);
    if (c->ev)
        event_free(c->ev);
    WH_FREE_OBJ(c);
}

static void fake_fire(evutil_socket_t fd, short what, void *arg)
{
    struct fake_call *c;
    WH_CAST_OBJ(c, arg, FCALL_MAGIC);
    struct fake_rt *rt = c->rt;
    struct wh_rt_error err = {.kind = WH_RT_OK};
    struct wh_rt_info info = {.ncpu = rt->ncpu, .mem_total = rt->mem};
    snprintf(info.server_version, sizeof(info.server_version), "20.10-fake");
    if (c->fail) {
        err.kind = WH_RT_ERR_CONNECT;
        snprintf(err.message, sizeof(err.message), "host %s: %s: cannot connect (fake)", rt->id,
                 c->info ? "GET /info" : "GET /_ping");
    }
    wh_rt_done_fn done = c->done;
    wh_rt_info_fn info_cb = c->info_cb;
    void *cb_arg = c->arg;
    int is_info = c->info;
    fake_call_free(c);
    if (is_info)
        info_cb(cb_arg, &err, err.kind == WH_RT_OK ? &info : NULL);
    else
        done(cb_arg, &err);
}

static int fake_submit(struct fake_rt *rt, enum fake_mode mode, struct fake_call *c)
{
    WH_INIT_OBJ(c, FCALL_MAGIC);
    c->rt = rt;
    c->fail = mode == FAKE_FAIL;
    TAILQ_INSERT_TAIL(&rt->calls, c, link);
    if (mode == FAKE_HANG)
        return 0;
    struct timeval tv = {(time_t)rt->delay,
                         (suseconds_t)((rt->delay - (double)(time_t)rt->delay) * 1e6)};
    c->ev = evtimer_new(rt->w->base, fake_fire, c);
    assert_non_null(c->ev);
    assert_int_equal(evtimer_add(c->ev, &tv), 0);
    return 0;
}

static int fake_ping(struct wh_runtime *base, wh_rt_done_fn cb, void *arg)
{
    struct fake_rt *rt;
    WH_CAST_OBJ(rt, (struct fake_rt *)base, FAKE_MAGIC);
    struct fake_call *c = calloc(1, sizeof(*c));
    c->done = cb;
    c->arg = arg;
    rt->pings++;
    return fake_submit(rt, rt->ping_mode, c);
}

static int fake_info(struct wh_runtime *base, wh_rt_info_fn cb, void *arg)
{
    struct fake_rt *rt;
    WH_CAST_OBJ(rt, (struct fake_rt *)base, FAKE_MAGIC);
    struct fake_call *c = calloc(1, sizeof(*c));
    c->info = 1;
    c->info_cb = cb;
    c->arg = arg;
    rt->infos++;
    return fake_submit(rt, rt->info_mode, c);
}

/* Drops every pending call without a callback, as the contract says. */
static void fake_free(struct wh_runtime *base)
{
    struct fake_rt *rt;
    WH_CAST_OBJ(rt, (struct fake_rt *)base, FAKE_MAGIC);
    struct fake_call *c;
    while ((c = TAILQ_FIRST(&rt->calls)))
        fake_call_free(c);
    rt->w->rts[rt->slot] = NULL;
    WH_FREE_OBJ(rt);
}

static const struct wh_runtime_ops fake_ops = {
    .free = fake_free,
    .ping = fake_ping,
    .info = fake_info,
};

static struct wh_runtime *fake_factory(void *arg, const struct wh_rt_host_params *p, int probe,
                                       char *err, size_t errlen)
{
    struct world *w = arg;
    if (w->fail_factory) {
        snprintf(err, errlen, "host %s: fake factory refused", p->id);
        return NULL;
    }
    assert_true(w->n_rts < MAX_RTS);
    struct fake_rt *rt = calloc(1, sizeof(*rt));
    WH_INIT_OBJ(rt, FAKE_MAGIC);
    rt->base.ops = &fake_ops;
    rt->w = w;
    rt->slot = w->n_rts;
    rt->probe = probe;
    snprintf(rt->id, sizeof(rt->id), "%s", p->id);
    rt->call_timeout = p->call_timeout;
    rt->max_calls = p->max_concurrent_calls;
    rt->ping_mode = w->ping_mode;
    rt->info_mode = w->info_mode;
    rt->delay = w->delay;
    rt->ncpu = w->ncpu;
    rt->mem = w->mem;
    TAILQ_INIT(&rt->calls);
    w->rts[w->n_rts++] = rt;
    return &rt->base;
}

/* The live fake of host id (probe or executor's), or NULL. */
static struct fake_rt *fake_of(struct world *w, const char *id, int probe)
{
    for (int i = 0; i < w->n_rts; i++)
        if (w->rts[i] && w->rts[i]->probe == probe && strcmp(w->rts[i]->id, id) == 0)
            return w->rts[i];
    return NULL;
}

/* ---- the world: loop, subscriber, helpers ---- */

static void on_change(void *arg, struct wh_host *h, enum wh_host_state old,
                      enum wh_host_state new_state, const char *reason)
{
    struct world *w = arg;
    assert_true(w->n_changes < MAX_CHANGES);
    struct change *c = &w->changes[w->n_changes++];
    snprintf(c->host, sizeof(c->host), "%s", wh_host_id(h));
    c->old = old;
    c->new_state = new_state;
    c->missed = wh_host_missed(h);
    c->removing = wh_host_removing(h);
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    assert_int_equal(wh_host_state(h), new_state);
    if (w->forget_on_change)
        wh_hosts_forget(w->hs, h);
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    w->base = event_base_new();
    w->hs = wh_hosts_new(w->base, NULL);
    assert_non_null(w->hs);
    wh_hosts_set_runtime_factory(w->hs, fake_factory, w);
    wh_hosts_subscribe(w->hs, on_change, w);
    w->ncpu = 4;
    w->mem = 8LL << 30;
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    wh_hosts_free(w->hs);
    for (int i = 0; i < w->n_rts; i++)
        assert_null(w->rts[i]); /* every runtime freed */
    if (w->poll)
        event_free(w->poll);
    event_base_free(w->base);
    free(w);
    return 0;
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct world *w = arg;
    if (w->until && w->until(w))
        event_base_loopbreak(w->base);
}

/* Run the loop until until(w) holds (checked every millisecond) or
 * seconds pass; returns whether it held. */
static int run_until(struct world *w, int (*until)(struct world *w), double seconds)
{
    struct timeval tick = {0, 1000};
    struct timeval limit = {(time_t)seconds, (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    if (!w->poll)
        w->poll = event_new(w->base, -1, EV_PERSIST, poll_cb, w);
    w->until = until;
    event_add(w->poll, &tick);
    event_base_loopexit(w->base, &limit);
    event_base_dispatch(w->base);
    event_del(w->poll);
    int held = until ? until(w) : 0;
    w->until = NULL;
    return held;
}

static void run_for(struct world *w, double seconds)
{
    run_until(w, NULL, seconds);
}

static struct wh_host *add_host(struct world *w, const char *id, int draining)
{
    char err[WH_ERR_LEN];
    struct wh_host_attr attrs[] = {{"az", "az-1"}, {"instance_type", "m5.large"}};
    struct wh_host_params p = {
        .id = id,
        .docker = "tcp://10.1.0.2:2376",
        .call_timeout = 600, /* far beyond the interval: never what decides */
        .ping_interval = INTERVAL,
        .unreachable_after = 3,
        .draining = draining,
        .attributes = attrs,
        .n_attributes = 2,
    };
    struct wh_host *h = wh_hosts_add(w->hs, &p, err, sizeof(err));
    assert_non_null(h);
    return h;
}

static struct change *last_change(struct world *w)
{
    return w->n_changes ? &w->changes[w->n_changes - 1] : NULL;
}

static int enough_changes(struct world *w)
{
    return w->n_changes >= w->want_changes;
}

/* Run until the subscriber was called n times in all (at most 2 s). */
static int wait_changes(struct world *w, int n)
{
    w->want_changes = n;
    return run_until(w, enough_changes, 2);
}

static int enough_pings(struct world *w)
{
    return w->watch->pings >= w->want_pings;
}

/* Run until rt was pinged n times in all (at most 2 s). */
static int wait_pings(struct world *w, struct fake_rt *rt, int n)
{
    w->watch = rt;
    w->want_pings = n;
    return run_until(w, enough_pings, 2);
}

static void assert_change(const struct change *c, const char *host, enum wh_host_state old,
                          enum wh_host_state new_state)
{
    assert_non_null(c);
    assert_string_equal(c->host, host);
    assert_int_equal(c->old, old);
    assert_int_equal(c->new_state, new_state);
}

/* ---- the state machine ---- */

static void test_active_at_first_answer(void **state)
{
    struct world *w = *state;
    struct wh_host *h = add_host(w, "h1", 0);
    assert_int_equal(wh_host_state(h), WH_HOST_REGISTERING);
    assert_int_equal(wh_host_cpu_total(h), 0);
    assert_true(wait_changes(w, 1));
    assert_change(&w->changes[0], "h1", WH_HOST_REGISTERING, WH_HOST_ACTIVE);
    assert_non_null(strstr(w->changes[0].reason, "4 CPUs"));
    /* one ping and one info, before the first round ended */
    struct fake_rt *probe = fake_of(w, "h1", 1);
    assert_int_equal(probe->pings, 1);
    assert_int_equal(probe->infos, 1);
    assert_int_equal(wh_host_cpu_total(h), 4096);
    assert_int_equal(wh_host_mem_total(h), 8192);
    assert_string_equal(wh_host_last_error(h), "");
    /* later rounds ping only; nothing changes */
    assert_true(wait_pings(w, probe, 4));
    assert_int_equal(w->n_changes, 1);
    assert_int_equal(probe->infos, 1);
    assert_int_equal(fake_of(w, "h1", 0)->pings, 0); /* the executor's runtime is left alone */
}

static void test_runtimes_params(void **state)
{
    struct world *w = *state;
    add_host(w, "h1", 0);
    struct fake_rt *exec = fake_of(w, "h1", 0), *probe = fake_of(w, "h1", 1);
    assert_non_null(exec);
    assert_non_null(probe);
    assert_true(exec->call_timeout == 600);
    assert_int_equal(exec->max_calls, 0); /* the runtime's default */
    /* the probe's calls end with the interval, whatever call_timeout is */
    assert_true(probe->call_timeout == INTERVAL);
}

static void test_unreachable_after_missed_rounds(void **state)
{
    struct world *w = *state;
    struct wh_host *h = add_host(w, "h1", 0);
    assert_true(wait_changes(w, 1));
    struct fake_rt *probe = fake_of(w, "h1", 1);
    probe->ping_mode = FAKE_HANG; /* accepts, never answers; call_timeout is 600 s */
    assert_true(wait_changes(w, 2));
    assert_change(&w->changes[1], "h1", WH_HOST_ACTIVE, WH_HOST_UNREACHABLE);
    assert_int_equal(w->changes[1].missed, 3); /* exactly unreachable_after */
    assert_non_null(strstr(w->changes[1].reason, "3 rounds missed"));
    assert_non_null(strstr(wh_host_last_error(h), "no answer to GET /_ping within 0.05 s"));
    /* a ping per round, even with the earlier ones still hanging */
    assert_true(wait_pings(w, probe, probe->pings + 2));
    assert_int_equal(w->n_changes, 2); /* told once */
    assert_true(wh_host_missed(h) >= 5);
}

static void test_back_to_active_rereads_info(void **state)
{
    struct world *w = *state;
    struct wh_host *h = add_host(w, "h1", 0);
    assert_true(wait_changes(w, 1));
    struct fake_rt *probe = fake_of(w, "h1", 1);
    probe->ping_mode = FAKE_HANG;
    assert_true(wait_changes(w, 2));
    probe->ping_mode = FAKE_ANSWER;
    probe->ncpu = 8; /* the instance was resized */
    probe->mem = 16LL << 30;
    assert_true(wait_changes(w, 3));
    assert_change(&w->changes[2], "h1", WH_HOST_UNREACHABLE, WH_HOST_ACTIVE);
    assert_non_null(strstr(w->changes[2].reason, "missed round"));
    assert_int_equal(probe->infos, 2);
    assert_int_equal(wh_host_cpu_total(h), 8192);
    assert_int_equal(wh_host_mem_total(h), 16384);
    assert_int_equal(wh_host_missed(h), 0);
    assert_string_equal(wh_host_last_error(h), "");
}

static void test_failing_pings(void **state)
{
    struct world *w = *state;
    w->ping_mode = FAKE_FAIL;
    struct wh_host *h = add_host(w, "h1", 0);
    assert_true(wait_changes(w, 1));
    /* never answered: REGISTERING straight to UNREACHABLE */
    assert_change(&w->changes[0], "h1", WH_HOST_REGISTERING, WH_HOST_UNREACHABLE);
    assert_int_equal(w->changes[0].missed, 3);
    assert_non_null(strstr(w->changes[0].reason, "cannot connect (fake)"));
    assert_non_null(strstr(wh_host_last_error(h), "cannot connect (fake)"));
    assert_int_equal(wh_host_cpu_total(h), 0);
}

static void test_late_answers_are_missed(void **state)
{
    struct world *w = *state;
    w->delay = INTERVAL * 1.5; /* every answer comes in the next round */
    struct wh_host *h = add_host(w, "h1", 0);
    assert_true(wait_changes(w, 1));
    assert_change(&w->changes[0], "h1", WH_HOST_REGISTERING, WH_HOST_UNREACHABLE);
    assert_int_equal(fake_of(w, "h1", 1)->infos, 0); /* late pings were dropped */
    assert_int_equal(wh_host_cpu_total(h), 0);
}

static void test_info_failure_keeps_it_out(void **state)
{
    struct world *w = *state;
    w->info_mode = FAKE_FAIL;
    struct wh_host *h = add_host(w, "h1", 0);
    assert_true(wait_changes(w, 1));
    /* pings answer, info does not: the host can't be used */
    assert_change(&w->changes[0], "h1", WH_HOST_REGISTERING, WH_HOST_UNREACHABLE);
    assert_non_null(strstr(wh_host_last_error(h), "GET /info"));
    fake_of(w, "h1", 1)->info_mode = FAKE_ANSWER;
    assert_true(wait_changes(w, 2));
    assert_change(&w->changes[1], "h1", WH_HOST_UNREACHABLE, WH_HOST_ACTIVE);
    assert_int_equal(wh_host_cpu_total(h), 4096);
}

static void test_one_frozen_other_active(void **state)
{
    struct world *w = *state;
    struct wh_host *h1 = add_host(w, "h1", 0), *h2 = add_host(w, "h2", 0);
    assert_true(wait_changes(w, 2));
    fake_of(w, "h2", 1)->ping_mode = FAKE_HANG;
    assert_true(wait_changes(w, 3));
    assert_change(&w->changes[2], "h2", WH_HOST_ACTIVE, WH_HOST_UNREACHABLE);
    run_for(w, INTERVAL * 2);
    assert_int_equal(wh_host_state(h1), WH_HOST_ACTIVE);
    assert_int_equal(wh_host_missed(h1), 0);
    assert_int_equal(wh_host_state(h2), WH_HOST_UNREACHABLE);
}

/* ---- draining ---- */

static void test_draining_flag(void **state)
{
    struct world *w = *state;
    struct wh_host *h = add_host(w, "h1", 1);
    assert_true(wait_changes(w, 1));
    assert_change(&w->changes[0], "h1", WH_HOST_REGISTERING, WH_HOST_DRAINING);
    assert_int_equal(wh_host_cpu_total(h), 4096); /* resources are read all the same */
    assert_int_equal(wh_host_set_draining(h, 0), 0);
    assert_change(last_change(w), "h1", WH_HOST_DRAINING, WH_HOST_ACTIVE); /* at once */
    assert_int_equal(wh_host_set_draining(h, 0), 0);
    assert_int_equal(w->n_changes, 2); /* no change, no call */
    assert_int_equal(wh_host_set_draining(h, 1), 0);
    assert_change(last_change(w), "h1", WH_HOST_ACTIVE, WH_HOST_DRAINING);
    /* an unreachable host keeps the flag for when it answers */
    fake_of(w, "h1", 1)->ping_mode = FAKE_HANG;
    assert_true(wait_changes(w, 4));
    assert_change(last_change(w), "h1", WH_HOST_DRAINING, WH_HOST_UNREACHABLE);
    assert_int_equal(wh_host_set_draining(h, 0), 0);
    assert_int_equal(wh_host_state(h), WH_HOST_UNREACHABLE);
    assert_int_equal(wh_host_set_draining(h, 1), 0);
    int n = w->n_changes;
    fake_of(w, "h1", 1)->ping_mode = FAKE_ANSWER;
    assert_true(wait_changes(w, n + 1));
    assert_change(last_change(w), "h1", WH_HOST_UNREACHABLE, WH_HOST_DRAINING);
}

/* ---- resources and reservations ---- */

static void test_reservations(void **state)
{
    struct world *w = *state;
    w->ncpu = 2;
    w->mem = 1LL << 30;
    struct wh_host *h = add_host(w, "h1", 0);
    assert_true(wait_changes(w, 1));
    assert_int_equal(wh_host_cpu_total(h), 2048);
    assert_int_equal(wh_host_mem_total(h), 1024);
    wh_host_reserve(h, 512, 256);
    wh_host_reserve(h, 512, 256);
    assert_int_equal(wh_host_cpu_reserved(h), 1024);
    assert_int_equal(wh_host_mem_reserved(h), 512);
    assert_int_equal(wh_host_cpu_free(h), 1024);
    assert_int_equal(wh_host_mem_free(h), 512);
    /* over-commit (adopted tasks) is counted, free never goes below 0 */
    wh_host_reserve(h, 2048, 1024);
    assert_int_equal(wh_host_cpu_reserved(h), 3072);
    assert_int_equal(wh_host_cpu_free(h), 0);
    assert_int_equal(wh_host_mem_free(h), 0);
    wh_host_release(h, 2048, 1024);
    wh_host_release(h, 512, 256);
    assert_int_equal(wh_host_cpu_reserved(h), 512);
    assert_int_equal(wh_host_mem_free(h), 768);
    /* a release without its reserve is clamped */
    wh_host_release(h, 4096, 4096);
    assert_int_equal(wh_host_cpu_reserved(h), 0);
    assert_int_equal(wh_host_mem_reserved(h), 0);
    wh_host_set_running_tasks(h, 3);
    assert_int_equal(wh_host_running_tasks(h), 3);
    /* reservations survive an UNREACHABLE spell and a re-read info */
    wh_host_reserve(h, 100, 10);
    fake_of(w, "h1", 1)->ping_mode = FAKE_HANG;
    assert_true(wait_changes(w, 2));
    fake_of(w, "h1", 1)->ping_mode = FAKE_ANSWER;
    assert_true(wait_changes(w, 3));
    assert_int_equal(wh_host_cpu_reserved(h), 100);
    assert_int_equal(wh_host_cpu_free(h), 1948);
}

/* ---- the set: add, queries, remove, forget, free ---- */

static void count_cb(void *arg, struct wh_host *h)
{
    char *seen = arg;
    strcat(seen, wh_host_id(h));
    strcat(seen, ",");
}

static void test_add_and_queries(void **state)
{
    struct world *w = *state;
    char err[WH_ERR_LEN];
    struct wh_host_attr attrs[] = {{"az", "us-east-1a"}, {"instance_id", "i-0abc"}};
    char id[] = "i-0abc";
    struct wh_host_params p = {
        .id = id,
        .docker = "tcp://[fd00::5]:2376",
        .attributes = attrs,
        .n_attributes = 2,
        .source = WH_HOST_SOURCE_EC2,
    };
    struct wh_host *h = wh_hosts_add(w->hs, &p, err, sizeof(err));
    assert_non_null(h);
    id[0] = 'X'; /* copied */
    assert_string_equal(wh_host_id(h), "i-0abc");
    assert_string_equal(wh_host_address(h), "fd00::5");
    assert_string_equal(wh_host_docker(h), "tcp://[fd00::5]:2376");
    assert_string_equal(wh_host_source_name(wh_host_source(h)), "ec2");
    assert_string_equal(wh_host_attribute(h, "az"), "us-east-1a");
    assert_null(wh_host_attribute(h, "nope"));
    size_t n;
    const struct wh_host_attr *a = wh_host_attributes(h, &n);
    assert_int_equal(n, 2);
    assert_string_equal(a[1].value, "i-0abc");
    assert_true(fake_of(w, "i-0abc", 1)->call_timeout == 2); /* defaults: 2 s rounds */
    assert_int_equal(h->unreachable_after, 3);

    struct wh_host_params q = {.id = "local", .docker = "unix:///var/run/docker.sock"};
    assert_null(wh_hosts_add(w->hs, &q, err, sizeof(err)));
    assert_non_null(strstr(err, "an address is needed"));
    q.address = "127.0.0.1";
    assert_non_null(wh_hosts_add(w->hs, &q, err, sizeof(err)));
    assert_null(wh_hosts_add(w->hs, &q, err, sizeof(err)));
    assert_non_null(strstr(err, "already in the inventory"));
    q.id = "";
    assert_null(wh_hosts_add(w->hs, &q, err, sizeof(err)));
    w->fail_factory = 1;
    q.id = "other";
    assert_null(wh_hosts_add(w->hs, &q, err, sizeof(err)));
    assert_non_null(strstr(err, "fake factory refused"));
    w->fail_factory = 0;

    assert_int_equal(wh_hosts_count(w->hs), 2);
    assert_ptr_equal(wh_hosts_find(w->hs, "i-0abc"), h);
    assert_null(wh_hosts_find(w->hs, "other"));
    char seen[64] = "";
    wh_hosts_foreach(w->hs, count_cb, seen);
    assert_string_equal(seen, "i-0abc,local,");
    assert_string_equal(wh_host_state_name(WH_HOST_UNREACHABLE), "UNREACHABLE");
    assert_string_equal(wh_host_source_name(WH_HOST_SOURCE_CONFIG), "config");
}

static void test_remove_active_host(void **state)
{
    struct world *w = *state;
    char err[WH_ERR_LEN];
    struct wh_host *h = add_host(w, "h1", 0);
    assert_true(wait_changes(w, 1));
    assert_int_equal(wh_hosts_remove(w->hs, "nope"), -1);
    assert_int_equal(wh_hosts_remove(w->hs, "h1"), 0);
    assert_change(last_change(w), "h1", WH_HOST_ACTIVE, WH_HOST_DRAINING);
    assert_true(last_change(w)->removing);
    assert_int_equal(wh_hosts_remove(w->hs, "h1"), 0); /* no second call */
    assert_int_equal(w->n_changes, 2);
    assert_int_equal(wh_host_set_draining(h, 0), -1);
    assert_int_equal(wh_host_state(h), WH_HOST_DRAINING);
    struct wh_host_params p = {.id = "h1", .docker = "tcp://10.1.0.2:2376"};
    assert_null(wh_hosts_add(w->hs, &p, err, sizeof(err)));
    assert_non_null(strstr(err, "being removed"));
    /* it keeps probing until its owner is done with it */
    struct fake_rt *probe = fake_of(w, "h1", 1);
    assert_true(wait_pings(w, probe, probe->pings + 2));
    wh_hosts_forget(w->hs, h);
    assert_null(wh_hosts_find(w->hs, "h1"));
    assert_int_equal(wh_hosts_count(w->hs), 0);
    run_for(w, INTERVAL);
    assert_null(fake_of(w, "h1", 1)); /* freed by the loop */
    assert_non_null(wh_hosts_add(w->hs, &p, err, sizeof(err)));
}

static void test_remove_while_ping_in_flight(void **state)
{
    struct world *w = *state;
    w->ping_mode = FAKE_HANG;
    struct wh_host *h = add_host(w, "h1", 0);
    run_for(w, INTERVAL / 2);
    assert_true(fake_of(w, "h1", 1)->pings >= 1);
    assert_int_equal(TAILQ_EMPTY(&h->calls), 0);
    assert_int_equal(wh_hosts_remove(w->hs, "h1"), 0);
    /* not reachable yet: told of the removal, the state stays */
    assert_change(last_change(w), "h1", WH_HOST_REGISTERING, WH_HOST_REGISTERING);
    assert_true(last_change(w)->removing);
    assert_true(wh_host_draining(h));
    wh_hosts_forget(w->hs, h);
    wh_hosts_forget(w->hs, h); /* twice: no-op */
    run_for(w, INTERVAL * 2);
    assert_null(fake_of(w, "h1", 1));
    assert_int_equal(w->n_changes, 1);
}

static void test_forget_with_answer_due(void **state)
{
    struct world *w = *state;
    w->delay = INTERVAL / 2;
    struct wh_host *h = add_host(w, "h1", 0);
    /* forget with the ping's answer due on the loop; the reaper runs first */
    wh_hosts_forget(w->hs, h);
    run_for(w, INTERVAL);
    assert_int_equal(w->n_changes, 0);
    assert_null(fake_of(w, "h1", 1));
}

static void test_forget_from_subscriber(void **state)
{
    struct world *w = *state;
    w->forget_on_change = 1;
    add_host(w, "h1", 0);
    add_host(w, "h2", 0);
    assert_true(wait_changes(w, 2));
    assert_int_equal(wh_hosts_count(w->hs), 0);
    run_for(w, INTERVAL * 3);
    assert_int_equal(w->n_changes, 2);
    assert_null(fake_of(w, "h1", 1));
    assert_null(fake_of(w, "h2", 0));
}

static void test_free_with_calls_in_flight(void **state)
{
    struct world *w = *state;
    w->ping_mode = FAKE_HANG;
    add_host(w, "h1", 0);
    w->ping_mode = FAKE_ANSWER;
    w->delay = 10; /* timers armed in the fake */
    add_host(w, "h2", 0);
    w->delay = 0;
    w->info_mode = FAKE_HANG;
    add_host(w, "h3", 0);
    run_for(w, INTERVAL * 2.5);
    wh_hosts_forget(w->hs, wh_hosts_find(w->hs, "h3")); /* one still to reap */
    /* teardown frees the set: every fake must be freed, no callback runs */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_active_at_first_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtimes_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_after_missed_rounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_back_to_active_rereads_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_pings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_answers_are_missed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_failure_keeps_it_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_frozen_other_active, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reservations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_and_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_active_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_while_ping_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_with_answer_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_from_subscriber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_calls_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The target registry (DESIGN.md's seam: the controller and the admin API
 * write, the proxy reads snapshots): groups, targets, their states and
 * events, draining, passive outlier detection, and the read-only queries
 * the admin API is built on. Snapshots are built in snapshot.c, health
 * checks run in health.c, configuration reloads are applied in reload.c,
 * the Prometheus text is written in metrics.c. Nothing here knows HTTP
 * servers: the endpoints live in src/api/api_targets.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "targets/targets-int.h"
#include "wharf/log.h"
#include "wharf/obj.h"

static const char *const state_names[] = {"initial", "healthy", "unhealthy", "draining", "unused"};

const char *wh_target_state_name(enum wh_target_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

void wh_target_ref(struct wh_target *t)
{
    WH_CHECK_OBJ(t, WH_TARGET_MAGIC);
    atomic_fetch_add(&t->refs, 1);
}

void wh_target_unref(struct wh_target *t)
{
    if (!t)
        return;
    WH_CHECK_OBJ(t, WH_TARGET_MAGIC);
    if (atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    t->magic = 0;
    free(wh_tg_of(t)); /* pub is the first member */
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double wh_tg_now(const struct wh_targets *reg)
{
    if (reg->clock)
        return reg->clock(reg->clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* ---- events and visible state ---- */

static void emit(struct wh_tg_target *t, enum wh_target_state old, const char *reason)
{
    struct wh_targets *reg = t->reg;
    struct wh_target_event ev = {
        .time = t->pub.state_since,
        .group = t->pub.group,
        .address = t->pub.addr.text,
        .source = t->pub.source,
        .target_id = t->pub.id,
        .old_state = old,
        .new_state = t->pub.state,
        .reason = reason,
        .description = t->pub.description,
    };
    if (reason[0])
        wh_log_info("targets", "%s %s: %s -> %s (%s%s%s)", t->pub.group, t->pub.addr.text,
                    wh_target_state_name(old), wh_target_state_name(t->pub.state), reason,
                    t->pub.description[0] ? ": " : "", t->pub.description);
    else
        wh_log_info("targets", "%s %s: %s -> %s", t->pub.group, t->pub.addr.text,
                    wh_target_state_name(old), wh_target_state_name(t->pub.state));
    for (size_t i = 0; i < reg->n_subs; i++)
        reg->subs[i].fn(reg->subs[i].arg, &ev);
}

/* As ALB: a target that becomes healthy ramps up only while its group has
 * a healthy target at full share. That peer must have been healthy since
 * before this target's unhealthy (or initial) spell began: targets that
 * come up together (a group starting from nothing, every static target at
 * start) all serve at full share at once, while one added to or returning
 * to a serving group ramps. */
static double slow_start_begin(const struct wh_tg_target *t, double now, double spell_began)
{
    const struct wh_tg_group *g = t->group;
    if (g->slow_start <= 0)
        return 0;
    const struct wh_tg_target *o;
    TAILQ_FOREACH(o, &g->targets, link)
    {
        if (o == t || o->draining || o->pub.state != WH_TARGET_HEALTHY ||
            o->healthy_since >= spell_began)
            continue;
        if (o->slow_start_begin == 0 || now - o->slow_start_begin >= g->slow_start)
            return now;
    }
    return 0;
}

/* Show state s with reason and desc; event_reason ("" = reason) names the
 * cause in the event only. */
static void set_visible(struct wh_tg_target *t, enum wh_target_state s, const char *reason,
                        const char *desc, const char *event_reason)
{
    copy_str(t->pub.reason, sizeof(t->pub.reason), reason);
    copy_str(t->pub.description, sizeof(t->pub.description), desc);
    if (s == t->pub.state)
        return;
    enum wh_target_state old = t->pub.state;
    t->pub.state = s;
    t->pub.state_since = wall_now();
    double now = wh_tg_now(t->reg), spell_began = t->state_since_mono;
    t->state_since_mono = now;
    t->healthy_since = s == WH_TARGET_HEALTHY ? now : 0;
    t->slow_start_begin = s == WH_TARGET_HEALTHY ? slow_start_begin(t, now, spell_began) : 0;
    t->group->state_changes++;
    wh_tg_mark_dirty(t->group);
    emit(t, old, event_reason && event_reason[0] ? event_reason : t->pub.reason);
}

void wh_tg_update_state(struct wh_tg_target *t)
{
    if (t->draining)
        set_visible(t, WH_TARGET_DRAINING, "deregistered", "", NULL);
    else if (t->eject_until > 0)
        set_visible(t, WH_TARGET_UNHEALTHY, "passive", t->edesc, NULL);
    else
        set_visible(t, t->verdict, t->vreason, t->vdesc, NULL);
}

/* ---- the threshold machine ---- */

static void end_ejection(struct wh_tg_target *t)
{
    t->eject_until = 0;
    t->eject_passes = 0;
    atomic_store(&t->pub.passive_connect_failures, 0);
    atomic_store(&t->pub.passive_5xx, 0);
    t->edesc[0] = '\0';
}

void wh_tg_check_result(struct wh_tg_target *t, int pass, const char *reason, const char *desc)
{
    const struct wh_tg_hc *hc = &t->group->hc;
    if (t->draining)
        return;
    if (pass) {
        t->fails = 0;
        t->passes++;
        if (t->eject_until > 0 && ++t->eject_passes >= hc->healthy_threshold)
            end_ejection(t);
        /* A new target needs one pass (ALB); after that the threshold applies. */
        if (t->verdict == WH_TARGET_INITIAL ||
            (t->verdict == WH_TARGET_UNHEALTHY && t->passes >= hc->healthy_threshold)) {
            t->verdict = WH_TARGET_HEALTHY;
            t->vreason[0] = t->vdesc[0] = '\0';
        }
    } else {
        t->passes = 0;
        t->eject_passes = 0;
        t->fails++;
        if (t->verdict != WH_TARGET_UNHEALTHY && t->fails >= hc->unhealthy_threshold)
            t->verdict = WH_TARGET_UNHEALTHY;
        /* A healthy target below the threshold keeps showing no reason. */
        if (t->verdict != WH_TARGET_HEALTHY) {
            copy_str(t->vreason, sizeof(t->vreason), reason);
            copy_str(t->vdesc, sizeof(t->vdesc), desc);
        }
    }
    wh_tg_update_state(t);
}

/* ---- passive detection and draining (the sweep) ---- */

static void passive_check(struct wh_tg_target *t, double now)
{
    const struct wh_cfg_passive *pv = &t->group->passive;
    int cf = atomic_load(&t->pub.passive_connect_failures);
    int x5 = atomic_load(&t->pub.passive_5xx);
    char desc[WH_TARGET_DESC_MAX];
    if (pv->consecutive_connect_failures > 0 && cf >= pv->consecutive_connect_failures)
        snprintf(desc, sizeof(desc), "%d consecutive connect failures", cf);
    else if (pv->consecutive_5xx > 0 && x5 >= pv->consecutive_5xx)
        snprintf(desc, sizeof(desc), "%d consecutive 5xx responses", x5);
    else
        return;
    t->eject_until = now + pv->eject;
    t->eject_passes = 0;
    atomic_store(&t->pub.passive_connect_failures, 0);
    atomic_store(&t->pub.passive_5xx, 0);
    copy_str(t->edesc, sizeof(t->edesc), desc);
    wh_tg_update_state(t);
}

/* Let go of everything but the memory (which the last reference frees). */
static void remove_target(struct wh_tg_target *t)
{
    struct wh_tg_group *g = t->group;
    wh_hc_stop(t);
    if (t->hc_timer)
        event_free(t->hc_timer);
    t->hc_timer = NULL;
    TAILQ_REMOVE(&g->targets, t, link);
    g->n_targets--;
    wh_tg_mark_dirty(g);
    wh_target_unref(&t->pub);
}

static void drain_check(struct wh_tg_target *t, double now)
{
    struct wh_targets *reg = t->reg;
    /* Read the snapshot count first: a request counts itself in in_flight
     * before it lets go of the snapshot it picked the target from. */
    int listed = atomic_load(&t->pub.snapshots);
    int busy = atomic_load(&t->pub.in_flight);
    const char *why;
    if (listed == 0 && busy == 0) {
        why = "drained";
    } else if (now >= t->drain_deadline) {
        if (busy > 0 && reg->drained_hard)
            reg->drained_hard(reg->drained_arg, &t->pub);
        why = "deregistration_delay";
    } else {
        return;
    }
    set_visible(t, WH_TARGET_UNUSED, why, "", NULL);
    remove_target(t);
}

void wh_tg_sweep(struct wh_targets *reg, double now)
{
    struct wh_tg_group *g;
    TAILQ_FOREACH(g, &reg->groups, link)
    {
        struct wh_tg_target *t, *next;
        for (t = TAILQ_FIRST(&g->targets); t; t = next) {
            next = TAILQ_NEXT(t, link);
            if (t->draining) {
                drain_check(t, now);
            } else if (t->eject_until > 0) {
                if (now >= t->eject_until) {
                    end_ejection(t);
                    wh_tg_update_state(t);
                }
            } else {
                passive_check(t, now);
            }
        }
    }
    wh_tg_flush(reg);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_targets *reg;
    WH_CAST_OBJ(reg, arg, WH_TARGETS_MAGIC);
    wh_tg_sweep(reg, wh_tg_now(reg));
}

/* ---- registry and groups ---- */

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_targets *reg;
    WH_CAST_OBJ(reg, arg, WH_TARGETS_MAGIC);
    reg->flush_pending = 0;
    wh_tg_flush(reg);
}

struct wh_targets *wh_targets_new(struct event_base *base, wh_targets_publish_fn publish,
                                  wh_targets_event_fn event, void *arg)
{
    struct wh_targets *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return NULL;
    WH_INIT_OBJ(reg, WH_TARGETS_MAGIC);
    reg->base = base;
    reg->publish = publish;
    reg->publish_arg = arg;
    TAILQ_INIT(&reg->groups);
    if (event)
        wh_targets_subscribe(reg, event, arg);
    reg->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, reg);
    reg->flush = evtimer_new(base, flush_cb, reg);
    struct timeval tv = {0, (int)(WH_TG_SWEEP_INTERVAL * 1e6)};
    if (!reg->sweep || !reg->flush || event_add(reg->sweep, &tv) < 0) {
        wh_targets_free(reg);
        return NULL;
    }
    return reg;
}

static void group_free(struct wh_tg_group *g)
{
    struct wh_tg_target *t;
    while ((t = TAILQ_FIRST(&g->targets)))
        remove_target(t);
    wh_tg_snapshot_unref(g->current);
    free(g->statics);
    free(g);
}

void wh_targets_free(struct wh_targets *reg)
{
    if (!reg)
        return;
    WH_CHECK_OBJ(reg, WH_TARGETS_MAGIC);
    struct wh_tg_group *g;
    while ((g = TAILQ_FIRST(&reg->groups))) {
        TAILQ_REMOVE(&reg->groups, g, link);
        group_free(g);
    }
    if (reg->sweep)
        event_free(reg->sweep);
    if (reg->flush)
        event_free(reg->flush);
    WH_FREE_OBJ(reg);
}

int wh_targets_subscribe(struct wh_targets *reg, wh_targets_event_fn fn, void *arg)
{
    if (reg->n_subs >= WH_TG_MAX_SUBSCRIBERS)
        return -1;
    reg->subs[reg->n_subs++] = (struct wh_tg_subscriber){fn, arg};
    return 0;
}

void wh_targets_on_drained_hard(struct wh_targets *reg, wh_targets_drained_fn fn, void *arg)
{
    reg->drained_hard = fn;
    reg->drained_arg = arg;
}

struct wh_tg_group *wh_tg_group_find(struct wh_targets *reg, const char *name)
{
    struct wh_tg_group *g;
    TAILQ_FOREACH(g, &reg->groups, link)
    if (strcmp(g->name, name) == 0)
        return g;
    return NULL;
}

struct wh_tg_target *wh_tg_find_live(struct wh_tg_group *g, const char *text)
{
    struct wh_tg_target *t;
    TAILQ_FOREACH(t, &g->targets, link)
    if (!t->draining && strcmp(t->pub.addr.text, text) == 0)
        return t;
    return NULL;
}

/* ---- registration ---- */

static int is_unspecified(const struct wh_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return 1;
}

static struct wh_tg_target *target_new(struct wh_targets *reg, struct wh_tg_group *g,
                                       const struct wh_addr *addr, int weight, const char *source)
{
    struct wh_tg_target *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    WH_INIT_OBJ(&t->pub, WH_TARGET_MAGIC);
    t->pub.id = ++reg->next_id;
    t->pub.addr = *addr;
    copy_str(t->pub.group, sizeof(t->pub.group), g->name);
    copy_str(t->pub.source, sizeof(t->pub.source), source);
    atomic_init(&t->pub.refs, 1);
    atomic_init(&t->pub.snapshots, 0);
    atomic_init(&t->pub.in_flight, 0);
    atomic_init(&t->pub.passive_connect_failures, 0);
    atomic_init(&t->pub.passive_5xx, 0);
    t->pub.weight = weight;
    t->pub.state = WH_TARGET_UNUSED;
    t->state_since_mono = reg->batch_began > 0 ? reg->batch_began : wh_tg_now(reg);
    t->reg = reg;
    t->group = g;
    t->verdict = g->hc.enabled ? WH_TARGET_INITIAL : WH_TARGET_HEALTHY;
    return t;
}

int wh_targets_register_addr(struct wh_targets *reg, const char *group, const struct wh_addr *addr,
                             int weight, const char *source, char *err, size_t errlen)
{
    struct wh_tg_group *g = wh_tg_group_find(reg, group);
    if (!g || !g->in_config) {
        snprintf(err, errlen, "no target group named \"%s\"", group);
        return WH_TARGETS_NO_GROUP;
    }
    if (weight < 1 || weight > 999) {
        snprintf(err, errlen, "weight %d is out of range: use 1 to 999", weight);
        return WH_TARGETS_BAD_WEIGHT;
    }
    if (is_unspecified(addr)) {
        snprintf(err, errlen, "%s is not a target address: name one host", addr->text);
        return WH_TARGETS_BAD_ADDRESS;
    }
    if (!source || strlen(source) >= WH_TARGET_SOURCE_MAX) {
        snprintf(err, errlen, "the source must be a name under %d bytes", WH_TARGET_SOURCE_MAX);
        return WH_TARGETS_BAD_SOURCE;
    }
    if (wh_tg_find_live(g, addr->text)) {
        snprintf(err, errlen, "%s is already registered in target group \"%s\"", addr->text, group);
        return WH_TARGETS_EXISTS;
    }
    struct wh_tg_target *t = target_new(reg, g, addr, weight, source);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return WH_TARGETS_NO_MEMORY;
    }
    TAILQ_INSERT_TAIL(&g->targets, t, link);
    g->n_targets++;
    set_visible(t, t->verdict, "", "", "registered");
    if (g->hc.enabled)
        wh_hc_start(t);
    return 0;
}

/* A numeric "IP:port" or "[v6]:port": names are refused, so nothing blocks. */
static int parse_numeric(const char *text, struct wh_addr *a, char *err, size_t errlen)
{
    char host[64];
    const char *colon = text[0] == '[' ? strchr(text, ']') : strrchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : 0;
    unsigned char buf[16];
    int ok;
    if (text[0] == '[') {
        ok = n > 1 && n - 1 < sizeof(host);
        if (ok) {
            memcpy(host, text + 1, n - 1);
            host[n - 1] = '\0';
            ok = inet_pton(AF_INET6, host, buf) == 1;
        }
    } else {
        ok = n > 0 && n < sizeof(host);
        if (ok) {
            memcpy(host, text, n);
            host[n] = '\0';
            ok = inet_pton(AF_INET, host, buf) == 1;
        }
    }
    if (!ok) {
        snprintf(err, errlen, "\"%s\" is not an address: write IP:PORT or [IPv6]:PORT", text);
        return -1;
    }
    return wh_addr_parse(text, a, err, errlen);
}

int wh_targets_register(struct wh_targets *reg, const char *group, const char *addr_text,
                        int weight, const char *source, char *err, size_t errlen)
{
    struct wh_addr a;
    if (!wh_tg_group_find(reg, group)) {
        snprintf(err, errlen, "no target group named \"%s\"", group);
        return WH_TARGETS_NO_GROUP;
    }
    if (parse_numeric(addr_text, &a, err, errlen) < 0)
        return WH_TARGETS_BAD_ADDRESS;
    return wh_targets_register_addr(reg, group, &a, weight, source, err, errlen);
}

/* ---- deregistration and health overrides ---- */

void wh_tg_drain(struct wh_tg_target *t)
{
    if (t->draining)
        return;
    wh_hc_stop(t);
    t->draining = 1;
    t->drain_deadline = wh_tg_now(t->reg) + t->group->deregistration_delay;
    wh_tg_update_state(t);
}

static struct wh_tg_target *lookup(struct wh_targets *reg, const char *group, const char *addr_text,
                                   int *rc)
{
    struct wh_tg_group *g = wh_tg_group_find(reg, group);
    struct wh_addr a;
    char err[WH_ERR_LEN];
    *rc = WH_TARGETS_NO_GROUP;
    if (!g)
        return NULL;
    if (parse_numeric(addr_text, &a, err, sizeof(err)) < 0) {
        *rc = WH_TARGETS_BAD_ADDRESS;
        return NULL;
    }
    *rc = WH_TARGETS_NO_TARGET;
    struct wh_tg_target *t = wh_tg_find_live(g, a.text);
    if (!t)
        TAILQ_FOREACH(t, &g->targets, link)
    if (strcmp(t->pub.addr.text, a.text) == 0)
        break;
    if (t)
        *rc = 0;
    return t;
}

struct wh_target *wh_targets_find(struct wh_targets *reg, const char *group, const char *addr_text)
{
    int rc;
    struct wh_tg_target *t = lookup(reg, group, addr_text, &rc);
    return t ? &t->pub : NULL;
}

int wh_targets_deregister(struct wh_targets *reg, const char *group, const char *addr_text)
{
    int rc;
    struct wh_tg_target *t = lookup(reg, group, addr_text, &rc);
    if (!t)
        return rc;
    wh_tg_drain(t);
    /* Out of the routable set before we return. */
    wh_tg_flush(reg);
    return 0;
}

int wh_targets_set_health(struct wh_targets *reg, const char *group, const char *addr_text,
                          int healthy, const char *reason)
{
    int rc;
    struct wh_tg_target *t = lookup(reg, group, addr_text, &rc);
    if (!t)
        return rc;
    if (t->draining)
        return WH_TARGETS_DRAINING;
    t->passes = t->fails = 0;
    t->verdict = healthy ? WH_TARGET_HEALTHY : WH_TARGET_UNHEALTHY;
    copy_str(t->vreason, sizeof(t->vreason), healthy ? "" : reason);
    t->vdesc[0] = '\0';
    wh_tg_update_state(t);
    return 0;
}

int wh_targets_foreach(struct wh_targets *reg, const char *group, wh_targets_group_fn gfn,
                       wh_targets_target_fn tfn, void *arg)
{
    struct wh_tg_group *g;
    int n = 0;
    TAILQ_FOREACH(g, &reg->groups, link)
    {
        if ((group && strcmp(group, g->name) != 0) || (!g->in_config && g->n_targets == 0))
            continue;
        n++;
        struct wh_targets_group_info info = {g->name, g->algorithm, g->slow_start};
        if (gfn)
            gfn(arg, &info);
        struct wh_tg_target *t;
        if (tfn)
            TAILQ_FOREACH(t, &g->targets, link)
        tfn(arg, &t->pub);
    }
    return n;
}

int wh_targets_has_group(struct wh_targets *reg, const char *group)
{
    return wh_tg_group_find(reg, group) != NULL;
}

double wh_targets_slow_start_remaining(struct wh_targets *reg, const struct wh_target *t)
{
    const struct wh_tg_target *tt = wh_tg_of((struct wh_target *)t);
    if (tt->slow_start_begin <= 0 || tt->pub.state != WH_TARGET_HEALTHY)
        return 0;
    double left = tt->slow_start_begin + tt->group->slow_start - wh_tg_now(reg);
    return left > 0 ? left : 0;
}

const char *wh_targets_error_name(int rc)
{
    static const char *const names[] = {"ok",          "no_group",   "no_target",
                                        "bad_address", "bad_weight", "bad_source",
                                        "exists",      "draining",   "no_memory"};
    return rc <= 0 && -rc < (int)(sizeof(names) / sizeof(names[0])) ? names[-rc] : "?";
}

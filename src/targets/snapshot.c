/* Snapshots: each group's routable targets, immutable and reference
 * counted, rebuilt and published (coalesced, at most one per
 * WH_TG_PUBLISH_GAP) when a group changes. */
#include <stdlib.h>
#include <string.h>

#include "targets/targets-int.h"
#include "wharf/log.h"
#include "wharf/obj.h"

void wh_tg_snapshot_ref(struct wh_tg_snapshot *s)
{
    WH_CHECK_OBJ(s, WH_SNAPSHOT_MAGIC);
    atomic_fetch_add(&s->refs, 1);
}

void wh_tg_snapshot_unref(struct wh_tg_snapshot *s)
{
    if (!s)
        return;
    WH_CHECK_OBJ(s, WH_SNAPSHOT_MAGIC);
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct wh_target *t = s->members[i].target;
        atomic_fetch_sub(&t->snapshots, 1);
        wh_target_unref(t);
    }
    WH_FREE_OBJ(s);
}

static int routable(const struct wh_tg_target *t, int fail_open)
{
    if (t->draining)
        return 0;
    if (!fail_open)
        return t->pub.state == WH_TARGET_HEALTHY;
    return t->pub.state == WH_TARGET_INITIAL || t->pub.state == WH_TARGET_UNHEALTHY;
}

/* The group's routable set now, with one reference for the caller. */
static struct wh_tg_snapshot *build(struct wh_tg_group *g)
{
    size_t healthy = 0, others = 0, live = 0;
    struct wh_tg_target *t;
    TAILQ_FOREACH(t, &g->targets, link)
    {
        live += !t->draining;
        healthy += routable(t, 0);
        others += routable(t, 1);
    }
    int fail_open = healthy == 0 && others > 0;
    size_t n = fail_open ? others : healthy;
    struct wh_tg_snapshot *s = calloc(1, sizeof(*s) + n * sizeof(s->members[0]));
    if (!s)
        return NULL;
    WH_INIT_OBJ(s, WH_SNAPSHOT_MAGIC);
    atomic_init(&s->refs, 1);
    memcpy(s->group, g->name, sizeof(s->group));
    s->algorithm = g->algorithm;
    s->slow_start = g->slow_start;
    s->fail_open = fail_open;
    s->members = (struct wh_tg_member *)(s + 1);
    s->n_registered = live;
    s->counters = &g->counters;
    TAILQ_FOREACH(t, &g->targets, link)
    {
        if (!routable(t, fail_open))
            continue;
        struct wh_tg_member *m = &s->members[s->n++];
        m->target = &t->pub;
        m->weight = t->pub.weight;
        m->healthy_since = t->healthy_since;
        m->slow_start_begin = t->slow_start_begin;
        wh_target_ref(&t->pub);
        atomic_fetch_add(&t->pub.snapshots, 1);
    }
    return s;
}

static int same_routing(const struct wh_tg_snapshot *a, const struct wh_tg_snapshot *b)
{
    if (a->n != b->n || a->fail_open != b->fail_open || a->algorithm != b->algorithm ||
        a->n_registered != b->n_registered || a->slow_start != b->slow_start)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->members[i].target != b->members[i].target ||
            a->members[i].weight != b->members[i].weight ||
            a->members[i].healthy_since != b->members[i].healthy_since ||
            a->members[i].slow_start_begin != b->members[i].slow_start_begin)
            return 0;
    return 1;
}

static void publish_group(struct wh_targets *reg, struct wh_tg_group *g)
{
    struct wh_tg_snapshot *s = build(g);
    if (!s) {
        wh_log_error("targets", "%s: out of memory building a snapshot; retrying", g->name);
        return; /* stays dirty: the next flush tries again */
    }
    g->dirty = 0;
    if (g->current && same_routing(g->current, s)) {
        wh_tg_snapshot_unref(s);
        return;
    }
    s->version = ++g->version;
    if (s->fail_open && !(g->current && g->current->fail_open)) {
        g->fail_open_total++;
        wh_log_warn("targets", "%s: no healthy target; routing to all %zu (fail-open)", g->name,
                    s->n);
    }
    struct wh_tg_snapshot *old = g->current;
    g->current = s;
    if (reg->publish)
        reg->publish(reg->publish_arg, s);
    wh_tg_snapshot_unref(old);
}

void wh_tg_flush(struct wh_targets *reg)
{
    struct wh_tg_group *g;
    int again = 0;
    if (reg->flush_pending) {
        event_del(reg->flush);
        reg->flush_pending = 0;
    }
    TAILQ_FOREACH(g, &reg->groups, link)
    {
        if (g->dirty)
            publish_group(reg, g);
        again |= g->dirty;
    }
    reg->last_flush = wh_tg_now(reg);
    if (again) { /* out of memory: try again shortly */
        struct timeval tv = {0, (int)(WH_TG_PUBLISH_GAP * 1e6)};
        reg->flush_pending = event_add(reg->flush, &tv) == 0;
    }
}

void wh_tg_mark_dirty(struct wh_tg_group *g)
{
    struct wh_targets *reg = g->reg;
    g->dirty = 1;
    if (reg->flush_pending)
        return;
    double wait = reg->last_flush + WH_TG_PUBLISH_GAP - wh_tg_now(reg);
    if (wait < 0)
        wait = 0;
    struct timeval tv = {0, (int)(wait * 1e6)};
    reg->flush_pending = event_add(reg->flush, &tv) == 0;
}

struct wh_tg_snapshot *wh_targets_snapshot(struct wh_targets *reg, const char *group)
{
    struct wh_tg_group *g = wh_tg_group_find(reg, group);
    if (!g)
        return NULL;
    if (g->dirty || !g->current)
        publish_group(reg, g);
    if (!g->current)
        return NULL;
    wh_tg_snapshot_ref(g->current);
    return g->current;
}

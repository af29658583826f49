/* Target selection from a worker's view of a group: the algorithms of
 * balance.c over the group's current snapshot, plus the lookup stickiness
 * needs. */
#include <string.h>
#include <time.h>

#include "proxy-int.h"

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct wh_target *wh_balancer_pick(struct wh_group *g, const struct wh_target *exclude)
{
    const struct wh_tg_snapshot *snap = g->snap;
    if (!snap || snap->n == 0)
        return NULL;
    double now = snap->slow_start > 0 ? monotonic_now() : 0;
    int i = wh_balance_pick(snap, &g->bal, exclude, now);
    if (i < 0)
        return NULL;
    if (snap->fail_open)
        atomic_fetch_add_explicit(&snap->counters->fail_open_requests, 1, memory_order_relaxed);
    return snap->members[i].target;
}

struct wh_target *wh_balancer_find(struct wh_group *g, const char *addr, size_t len)
{
    const struct wh_tg_snapshot *snap = g->snap;
    if (!snap || snap->fail_open || len == 0)
        return NULL;
    for (size_t i = 0; i < snap->n; i++) {
        struct wh_target *t = snap->members[i].target;
        if (strlen(t->addr.text) == len && memcmp(t->addr.text, addr, len) == 0)
            return t;
    }
    return NULL;
}

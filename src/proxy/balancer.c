/* Target selection from a group's current snapshot. Round robin for now;
 * the seam where the other algorithms and stickiness plug in. */
#include "proxy-int.h"

struct wh_target *wh_balancer_pick(struct wh_group *g, const struct wh_target *exclude)
{
    const struct wh_tg_snapshot *snap = g->snap;
    if (!snap || snap->n == 0)
        return NULL;
    for (size_t tries = 0; tries < snap->n; tries++) {
        struct wh_target *t = snap->members[g->rr_next++ % snap->n].target;
        if (t == exclude)
            continue;
        if (snap->fail_open)
            atomic_fetch_add_explicit(&snap->counters->fail_open_requests, 1,
                                      memory_order_relaxed);
        return t;
    }
    return NULL;
}

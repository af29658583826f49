/* Target selection. Round robin for now; the seam where algorithms, target
 * health and stickiness plug in. */
#include "proxy-int.h"

struct wh_target *wh_balancer_pick(struct wh_group *g, const struct wh_target *exclude)
{
    if (g->n_targets == 0)
        return NULL;
    for (size_t tries = 0; tries < g->n_targets; tries++) {
        struct wh_target *t = &g->targets[g->rr_next++ % g->n_targets];
        if (t != exclude)
            return t;
    }
    return NULL;
}

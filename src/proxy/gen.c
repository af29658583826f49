/* Generations: one configuration (and its prep) as a worker serves it, kept
 * alive by a count of what still uses it: the worker while it is current,
 * each request from its head to its end, a removed listener. The last
 * release hands the configuration back to its owner (release(arg)), so a
 * reload never frees what a request in flight reads. Worker's thread only:
 * the count is a plain integer. */
#include <stdlib.h>

#include "proxy-int.h"

struct wh_gen *wh_gen_new(struct wh_proxy *p, const struct wh_config *cfg,
                          const struct wh_proxy_prep *prep, void (*release)(void *),
                          void *release_arg)
{
    struct wh_gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->proxy = p;
    g->cfg = cfg;
    g->prep = prep;
    g->release = release;
    g->release_arg = release_arg;
    g->refs = 1;
    g->groups = calloc(cfg->n_target_groups ? cfg->n_target_groups : 1, sizeof(*g->groups));
    for (size_t i = 0; g->groups && i < cfg->n_target_groups; i++) {
        g->groups[i] = wh_proxy_group(p, cfg->target_groups[i].name);
        if (!g->groups[i]) {
            free(g->groups);
            g->groups = NULL;
        }
    }
    if (!g->groups) {
        free(g);
        return NULL;
    }
    return g;
}

struct wh_gen *wh_gen_hold(struct wh_gen *g)
{
    g->refs++;
    return g;
}

void wh_gen_release(struct wh_gen *g)
{
    if (!g || --g->refs > 0)
        return;
    if (g->release)
        g->release(g->release_arg);
    free(g->groups);
    free(g);
}

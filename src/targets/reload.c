/* Applying a loaded configuration to the registry: group settings, and the
 * static targets that changed in the file since the last load. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "targets/targets-int.h"
#include "wharf/log.h"

/* The settings of one configured group, checked before anything changes. */
struct staged {
    const struct wh_cfg_target_group *cfg;
    struct wh_tg_hc hc;
    struct wh_tg_static *statics;
};

static int stage_hc(const struct wh_cfg_target_group *cg, struct wh_tg_hc *hc, char *err,
                    size_t errlen)
{
    const struct wh_cfg_health_check *c = &cg->health_check;
    memset(hc, 0, sizeof(*hc));
    hc->enabled = c->enabled;
    if (!c->enabled)
        return 0;
    const char *path = c->path ? c->path : "/health";
    const char *host = c->host ? c->host : "";
    if (strlen(path) >= sizeof(hc->path) || strlen(host) >= sizeof(hc->host)) {
        snprintf(err, errlen, "target_groups[%s].health_check: path or host too long", cg->name);
        return -1;
    }
    strcpy(hc->path, path);
    strcpy(hc->host, host);
    hc->port = c->port;
    hc->interval = c->interval;
    hc->timeout = c->timeout < c->interval ? c->timeout : c->interval;
    hc->healthy_threshold = c->healthy_threshold > 0 ? c->healthy_threshold : 1;
    hc->unhealthy_threshold = c->unhealthy_threshold > 0 ? c->unhealthy_threshold : 1;
    char merr[WH_ERR_LEN];
    if (wh_tg_matcher_parse(c->matcher ? c->matcher : "200-399", &hc->matcher, merr, sizeof(merr)) <
        0) {
        snprintf(err, errlen, "target_groups[%s].health_check.matcher: %s", cg->name, merr);
        return -1;
    }
    return 0;
}

static int stage(const struct wh_config *cfg, struct staged *st, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct wh_cfg_target_group *cg = &cfg->target_groups[i];
        st[i].cfg = cg;
        if (stage_hc(cg, &st[i].hc, err, errlen) < 0)
            return -1;
        st[i].statics = calloc(cg->n_targets + 1, sizeof(*st[i].statics));
        if (!st[i].statics) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t k = 0; k < cg->n_targets; k++) {
            snprintf(st[i].statics[k].addr, sizeof(st[i].statics[k].addr), "%s",
                     cg->targets[k].addr.text);
            st[i].statics[k].weight = cg->targets[k].weight;
        }
    }
    return 0;
}

static struct wh_tg_group *group_new(struct wh_targets *reg, const char *name)
{
    struct wh_tg_group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->reg = reg;
    snprintf(g->name, sizeof(g->name), "%s", name);
    TAILQ_INIT(&g->targets);
    atomic_init(&g->counters.fail_open_requests, 0);
    for (int i = 0; i < 6; i++)
        atomic_init(&g->counters.responses[i], 0);
    TAILQ_INSERT_TAIL(&reg->groups, g, link);
    return g;
}

static void apply_hc(struct wh_tg_group *g, const struct wh_tg_hc *hc)
{
    int was = g->hc.enabled;
    int resched = was && hc->enabled && hc->interval != g->hc.interval;
    g->hc = *hc;
    struct wh_tg_target *t;
    TAILQ_FOREACH(t, &g->targets, link)
    {
        if (t->draining)
            continue;
        if (was && !hc->enabled) { /* no checks: healthy */
            wh_hc_stop(t);
            t->verdict = WH_TARGET_HEALTHY;
            t->passes = t->fails = 0;
            t->vreason[0] = t->vdesc[0] = '\0';
            wh_tg_update_state(t);
        } else if (!was && hc->enabled) {
            wh_hc_start(t); /* keeps its verdict; thresholds apply */
        } else if (resched) {
            wh_hc_reschedule(t);
        }
    }
}

static const struct wh_tg_static *find_static(const struct wh_tg_static *v, size_t n,
                                              const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].addr, addr) == 0)
            return &v[i];
    return NULL;
}

static int is_static(const struct wh_tg_target *t)
{
    return t && strcmp(t->pub.source, "static") == 0;
}

/* Apply the difference between the group's last static list and cg's. */
static void sync_statics(struct wh_targets *reg, struct wh_tg_group *g,
                         const struct wh_cfg_target_group *cg, struct wh_tg_static *statics)
{
    for (size_t i = 0; i < g->n_statics; i++) {
        if (find_static(statics, cg->n_targets, g->statics[i].addr))
            continue;
        struct wh_tg_target *t = wh_tg_find_live(g, g->statics[i].addr);
        if (is_static(t))
            wh_tg_drain(t);
    }
    for (size_t k = 0; k < cg->n_targets; k++) {
        const struct wh_cfg_target *ct = &cg->targets[k];
        const struct wh_tg_static *prev = find_static(g->statics, g->n_statics, ct->addr.text);
        struct wh_tg_target *t = wh_tg_find_live(g, ct->addr.text);
        char err[WH_ERR_LEN];
        if (!prev) {
            if (t)
                wh_log_warn("targets",
                            "%s: static target %s is already registered by %s; left "
                            "as it is",
                            g->name, ct->addr.text, t->pub.source);
            else if (wh_targets_register_addr(reg, g->name, &ct->addr, ct->weight, "static", err,
                                              sizeof(err)) < 0)
                wh_log_error("targets", "%s: static target %s: %s", g->name, ct->addr.text, err);
        } else if (prev->weight != ct->weight && is_static(t)) {
            t->pub.weight = ct->weight;
            wh_tg_mark_dirty(g);
        }
    }
    free(g->statics);
    g->statics = statics;
    g->n_statics = cg->n_targets;
}

/* A group that left the file: everything drains, the group goes once empty. */
static void retire(struct wh_tg_group *g)
{
    struct wh_tg_target *t;
    g->in_config = 0;
    TAILQ_FOREACH(t, &g->targets, link)
    wh_tg_drain(t);
    free(g->statics);
    g->statics = NULL;
    g->n_statics = 0;
    wh_tg_mark_dirty(g);
    wh_log_info("targets", "%s: target group removed from the configuration; draining", g->name);
}

static void apply(struct wh_targets *reg, const struct wh_config *cfg, struct staged *st)
{
    struct wh_tg_group_list order = TAILQ_HEAD_INITIALIZER(order);
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct wh_cfg_target_group *cg = st[i].cfg;
        struct wh_tg_group *g = wh_tg_group_find(reg, cg->name);
        if (!g && !(g = group_new(reg, cg->name))) {
            wh_log_error("targets", "%s: out of memory", cg->name);
            free(st[i].statics);
            continue;
        }
        if (!g->in_config || g->algorithm != cg->algorithm || g->slow_start != cg->slow_start)
            wh_tg_mark_dirty(g);
        g->in_config = 1;
        g->algorithm = cg->algorithm;
        g->slow_start = cg->slow_start;
        g->deregistration_delay = cg->deregistration_delay;
        g->passive = cg->passive;
        apply_hc(g, &st[i].hc);
        sync_statics(reg, g, cg, st[i].statics);
        /* Keep the configuration's order for listings. */
        TAILQ_REMOVE(&reg->groups, g, link);
        TAILQ_INSERT_TAIL(&order, g, link);
    }
    struct wh_tg_group *g;
    while ((g = TAILQ_FIRST(&reg->groups))) {
        TAILQ_REMOVE(&reg->groups, g, link);
        if (g->in_config)
            retire(g);
        TAILQ_INSERT_TAIL(&order, g, link);
    }
    TAILQ_CONCAT(&reg->groups, &order, link);
}

int wh_targets_set_groups(struct wh_targets *reg, const struct wh_config *cfg, char *err,
                          size_t errlen)
{
    int rc = -1;
    struct staged *st = calloc(cfg->n_target_groups + 1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (stage(cfg, st, err, errlen) < 0) {
        for (size_t i = 0; i < cfg->n_target_groups; i++)
            free(st[i].statics);
        goto out;
    }
    reg->batch_began = wh_tg_now(reg);
    apply(reg, cfg, st);
    reg->batch_began = 0;
    wh_tg_flush(reg);
    rc = 0;
out:
    free(st);
    return rc;
}

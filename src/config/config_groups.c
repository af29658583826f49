/* target_groups: algorithm, draining, slow start, stickiness, active and
 * passive health checks, static targets. */
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

#define TG(f) offsetof(struct wh_cfg_target_group, f)
#define HC(f) offsetof(struct wh_cfg_health_check, f)
#define PV(f) offsetof(struct wh_cfg_passive, f)

static const char *const algorithm_names[] = {"round_robin", "least_outstanding_requests",
                                              "weighted_random", NULL};

static const struct cfg_param group_params[] = {
    {"name", CFG_NAME, TG(name), .flags = CFG_REQUIRED},
    {"algorithm", CFG_ENUM, TG(algorithm), .sdef = "round_robin", .choices = algorithm_names},
    CFG_NUM("deregistration_delay", CFG_DURATION, TG(deregistration_delay), 0, 3600, 300),
    CFG_NUM("slow_start", CFG_DURATION, TG(slow_start), 30, 900, 0, .flags = CFG_ZERO_OFF),
};
static const char *const group_others[] = {"stickiness", "health_check", "passive", "targets",
                                           NULL};
static const struct cfg_block group_block = CFG_BLOCK(group_params, group_others);

/* The stickiness block fills fields of the group itself. */
static const struct cfg_param stickiness_params[] = {
    CFG_NUM("enabled", CFG_BOOL, TG(stickiness_enabled), 0, 1, 0),
    CFG_NUM("duration", CFG_DURATION, TG(stickiness_duration), 1, 604800, 86400),
};
static const struct cfg_block stickiness_block = CFG_BLOCK(stickiness_params, NULL);

static const struct cfg_param health_params[] = {
    {"path", CFG_STRING, HC(path), .sdef = "/health", .check = wh_cfg_check_url_path},
    CFG_NUM("interval", CFG_DURATION, HC(interval), 0.1, 300, 5),
    CFG_NUM("timeout", CFG_DURATION, HC(timeout), 0.1, 120, 2),
    CFG_NUM("healthy_threshold", CFG_INT, HC(healthy_threshold), 1, 10, 2),
    CFG_NUM("unhealthy_threshold", CFG_INT, HC(unhealthy_threshold), 1, 10, 2),
    {"matcher", CFG_STRING, HC(matcher), .sdef = "200-399", .check = wh_cfg_check_matcher},
    {"host", CFG_STRING, HC(host), .sdef = "", .flags = CFG_EMPTY_OK,
     .check = wh_cfg_check_hostname},
};
static const char *const health_others[] = {"port", NULL};
static const struct cfg_block health_block = CFG_BLOCK(health_params, health_others);

static const struct cfg_param passive_params[] = {
    CFG_NUM("consecutive_connect_failures", CFG_INT, PV(consecutive_connect_failures), 0, 100, 3),
    CFG_NUM("consecutive_5xx", CFG_INT, PV(consecutive_5xx), 0, 100, 0),
    CFG_NUM("eject", CFG_DURATION, PV(eject), 1, 3600, 30),
};
static const struct cfg_block passive_block = CFG_BLOCK(passive_params, NULL);

static const struct cfg_param target_params[] = {
    {"address", CFG_ADDR, offsetof(struct wh_cfg_target, addr), .flags = CFG_REQUIRED},
    CFG_NUM("weight", CFG_INT, offsetof(struct wh_cfg_target, weight), 1, 999, 1),
};
static const struct cfg_block target_block = CFG_BLOCK(target_params, NULL);

/* port: "traffic-port" (0) or 1..65535. */
static void parse_health_port(struct cfg_ctx *c, const config_setting_t *s,
                              struct wh_cfg_health_check *hc)
{
    if (config_setting_type(s) == CONFIG_TYPE_STRING &&
        strcmp(config_setting_get_string(s), "traffic-port") == 0) {
        hc->port = 0;
        return;
    }
    if (config_setting_type(s) == CONFIG_TYPE_INT) {
        int v = config_setting_get_int(s);
        if (v >= 1 && v <= 65535) {
            hc->port = v;
            return;
        }
    }
    wh_cfg_error(c, s, NULL, "must be \"traffic-port\" or a port number from 1 to 65535");
}

static void parse_health(struct cfg_ctx *c, const config_setting_t *s,
                         struct wh_cfg_health_check *hc)
{
    int rc = wh_cfg_block_parse(c, s, &health_block, hc);
    hc->port = 0;
    if (!s || !config_setting_is_group(s))
        return;
    hc->enabled = 1;
    const config_setting_t *port = config_setting_get_member(s, "port");
    if (port)
        parse_health_port(c, port, hc);
    const config_setting_t *timeout = config_setting_get_member(s, "timeout");
    if (rc == 0 && hc->timeout >= hc->interval)
        wh_cfg_error(c, timeout ? timeout : s, timeout ? NULL : "timeout",
                     "must be below interval (%g s is not below %g s)", hc->timeout, hc->interval);
}

static int parse_target(struct cfg_ctx *c, const config_setting_t *e, struct wh_cfg_target *t)
{
    t->line = (int)config_setting_source_line(e);
    t->weight = 1;
    if (config_setting_type(e) == CONFIG_TYPE_STRING) {
        char err[256];
        if (wh_addr_parse(config_setting_get_string(e), &t->addr, err, sizeof(err)) == 0)
            return 0;
        wh_cfg_error(c, e, NULL, "%s", err);
        return -1;
    }
    if (!config_setting_is_group(e)) {
        wh_cfg_error(c, e, NULL, "expected \"ADDRESS:PORT\" or { address = ...; weight = ...; }");
        return -1;
    }
    return wh_cfg_block_parse(c, e, &target_block, t);
}

static void parse_targets(struct cfg_ctx *c, const config_setting_t *s,
                          struct wh_cfg_target_group *g)
{
    if (wh_cfg_expect_list(c, s) < 0)
        return;
    size_t n = (size_t)config_setting_length(s);
    g->targets = wh_cfg_calloc(c, n, sizeof(*g->targets));
    if (!g->targets)
        return;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct wh_cfg_target *t = &g->targets[g->n_targets];
        if (parse_target(c, e, t) < 0)
            continue;
        const struct wh_cfg_target *dup = NULL;
        for (size_t k = 0; k < g->n_targets && !dup; k++)
            if (wh_addr_equal(&g->targets[k].addr, &t->addr))
                dup = &g->targets[k];
        if (dup)
            wh_cfg_error(c, e, NULL, "duplicate target %s (also at line %d)", t->addr.text,
                         dup->line);
        else
            g->n_targets++;
    }
}

static void parse_group(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_target_group *g)
{
    g->line = (int)config_setting_source_line(s);
    wh_cfg_block_parse(c, s, &group_block, g);
    wh_cfg_block_parse(c, wh_cfg_member(s, "stickiness"), &stickiness_block, g);
    parse_health(c, wh_cfg_member(s, "health_check"), &g->health_check);
    wh_cfg_block_parse(c, wh_cfg_member(s, "passive"), &passive_block, &g->passive);
    const config_setting_t *targets = wh_cfg_member(s, "targets");
    if (targets)
        parse_targets(c, targets, g);
}

void wh_cfg_groups_parse(struct cfg_ctx *c, const config_setting_t *list)
{
    struct wh_config *cfg = c->cfg;
    if (!list || wh_cfg_expect_list(c, list) < 0)
        return;
    size_t n = (size_t)config_setting_length(list);
    cfg->target_groups = wh_cfg_calloc(c, n, sizeof(*cfg->target_groups));
    if (!cfg->target_groups)
        return;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
        struct wh_cfg_target_group *g = &cfg->target_groups[cfg->n_target_groups++];
        parse_group(c, s, g);
        if (!g->name[0])
            continue;
        const struct wh_cfg_target_group *first = wh_config_group(cfg, g->name);
        if (first != g)
            wh_cfg_error(c, s, "name", "duplicate target group name \"%s\" (first at line %d)",
                         g->name, first->line);
    }
}

void wh_cfg_group_free(struct wh_cfg_target_group *g)
{
    free(g->health_check.path);
    free(g->health_check.matcher);
    free(g->health_check.host);
    free(g->targets);
}

/* ---- lookup ---- */

const struct wh_cfg_target_group *wh_config_group(const struct wh_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_target_groups; i++)
        if (strcmp(cfg->target_groups[i].name, name) == 0)
            return &cfg->target_groups[i];
    return NULL;
}

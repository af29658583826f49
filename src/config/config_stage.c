/* Staging: one file serves every stage of the project (CONFIG.md). A
 * documented top-level block whose feature is not built is validated, then
 * accepted with one warning and dropped from the result; a documented key
 * inside a built block whose feature is not built is an error, but for a
 * few that are accepted and kept with one warning. Building a
 * feature means adding its bit to WH_FEATURES_BUILT (wharf/config.h); this
 * table stays as it is. The names of the feature bits (wh_feature_name)
 * live here too. */
#include <string.h>

#include "config/config-int.h"

enum cfg_stage_mode {
    STAGE_DROP,  /* a whole block: one warning, then dropped from the result */
    STAGE_ERROR, /* a key inside a built block: an error wherever it is set */
    STAGE_NOTE,  /* a key accepted and kept: one warning, at the first place it is set */
};

struct cfg_stage {
    const char *path; /* member names joined by '.'; "*" = each element of a list */
    unsigned feature;
    enum cfg_stage_mode mode;
    int (*applies)(const config_setting_t *s); /* NULL = whenever present */
    const char *message;
    void (*drop)(struct cfg_ctx *c); /* STAGE_DROP: reset the block */
};

static int is_https(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_STRING &&
           strcmp(config_setting_get_string(s), "https") == 0;
}

static int not_round_robin(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_STRING &&
           strcmp(config_setting_get_string(s), "round_robin") != 0;
}

static int nonzero(const config_setting_t *s)
{
    if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
        return config_setting_get_float(s) != 0;
    return config_setting_is_number(s) && config_setting_get_int64(s) != 0;
}

static int not_one(const config_setting_t *s)
{
    return config_setting_is_number(s) && config_setting_get_int64(s) != 1;
}

static int several(const config_setting_t *s)
{
    return config_setting_is_list(s) && config_setting_length(s) > 1;
}

static int is_true(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_BOOL && config_setting_get_bool(s);
}

static int enabled(const config_setting_t *s)
{
    const config_setting_t *e =
        config_setting_is_group(s) ? config_setting_get_member(s, "enable") : NULL;
    return e && is_true(e);
}

static void drop_cluster(struct cfg_ctx *c)
{
    wh_cfg_cluster_reset(c, c->cfg);
}

static void drop_controller(struct cfg_ctx *c)
{
    wh_cfg_controller_reset(c, c->cfg);
}

static void drop_hosts(struct cfg_ctx *c)
{
    wh_cfg_hosts_free(c->cfg);
}

static void drop_registries(struct cfg_ctx *c)
{
    wh_cfg_registries_free(c->cfg);
}

static void drop_services(struct cfg_ctx *c)
{
    wh_cfg_services_free(c->cfg);
}

static void drop_discovery(struct cfg_ctx *c)
{
    wh_cfg_discovery_reset(c, c->cfg);
}

static void drop_admin(struct cfg_ctx *c)
{
    wh_cfg_admin_reset(c->cfg);
}

static void drop_state(struct cfg_ctx *c)
{
    wh_cfg_state_reset(c, c->cfg);
}

#define NOT_BUILT "not built yet in this version; block ignored"
#define NOT_YET(what) what " not supported yet in this version"
#define UNTIL(issue) "not built yet (" issue " issue); accepted, no effect yet"

#define BLOCK(path, feature, drop, message)                                                        \
    {                                                                                              \
        path, feature, STAGE_DROP, NULL, message, drop                                             \
    }
#define KEY(path, feature, applies, message)                                                       \
    {                                                                                              \
        path, feature, STAGE_ERROR, applies, message, NULL                                         \
    }
#define NOTE(path, feature, applies, message)                                                      \
    {                                                                                              \
        path, feature, STAGE_NOTE, applies, message, NULL                                          \
    }

static const struct cfg_stage stages[] = {
    BLOCK("cluster", WH_FEATURE_SERVICES, drop_cluster, "not built yet in this version; ignored"),
    BLOCK("controller", WH_FEATURE_SERVICES, drop_controller, NOT_BUILT),
    BLOCK("hosts", WH_FEATURE_FLEET, drop_hosts, NOT_BUILT),
    BLOCK("registries", WH_FEATURE_FLEET, drop_registries, NOT_BUILT),
    BLOCK("services", WH_FEATURE_SERVICES, drop_services, NOT_BUILT),
    BLOCK("discovery", WH_FEATURE_EC2, drop_discovery, NOT_BUILT),
    BLOCK("admin", WH_FEATURE_ADMIN, drop_admin, NOT_BUILT),
    BLOCK("state", WH_FEATURE_STORE, drop_state, NOT_BUILT),
    KEY("log.access_log", WH_FEATURE_ACCESS_LOG, NULL, NOT_YET("access logs are")),
    KEY("timeouts.tls_handshake", WH_FEATURE_TLS, NULL, NOT_YET("TLS is")),
    KEY("listeners.*.protocol", WH_FEATURE_TLS, is_https, NOT_YET("https listeners are")),
    KEY("listeners.*.certificates", WH_FEATURE_TLS, NULL, NOT_YET("TLS is")),
    KEY("listeners.*.tls_policy", WH_FEATURE_TLS, NULL, NOT_YET("TLS is")),
    KEY("listeners.*.stickiness_secret", WH_FEATURE_STICKINESS, NULL, NOT_YET("stickiness is")),
    KEY("listeners.*.rules", WH_FEATURE_RULES, NULL,
        NOT_YET("rules are") "; route with default_action"),
    KEY("listeners.*.rules.*.stickiness", WH_FEATURE_STICKINESS, NULL, NOT_YET("stickiness is")),
    KEY("listeners.*.default_action.forward", WH_FEATURE_RULES, several,
        NOT_YET("forwarding to several weighted target groups is")),
    KEY("listeners.*.default_action.redirect", WH_FEATURE_RULES, NULL,
        NOT_YET("redirect actions are")),
    KEY("listeners.*.default_action.fixed_response", WH_FEATURE_RULES, NULL,
        NOT_YET("fixed_response actions are")),
    KEY("listeners.*.default_action.stickiness", WH_FEATURE_STICKINESS, NULL,
        NOT_YET("stickiness is")),
    KEY("target_groups.*.algorithm", WH_FEATURE_ALGORITHMS, not_round_robin,
        NOT_YET("algorithms other than round_robin are")),
    KEY("target_groups.*.targets.*.weight", WH_FEATURE_ALGORITHMS, not_one,
        NOT_YET("target weights are")),
    KEY("target_groups.*.slow_start", WH_FEATURE_SLOW_START, nonzero, NOT_YET("slow start is")),
    KEY("target_groups.*.stickiness", WH_FEATURE_STICKINESS, NULL, NOT_YET("stickiness is")),
    KEY("target_groups.*.health_check", WH_FEATURE_HEALTH, NULL,
        NOT_YET("health checks are") " (without the block, targets count as healthy)"),
    KEY("target_groups.*.passive", WH_FEATURE_PASSIVE, NULL, NOT_YET("passive health checks are")),
    NOTE("services.*.deployment.progress_timeout", WH_FEATURE_DEPLOYMENTS, NULL,
         UNTIL("Rolling deployments")),
    NOTE("services.*.deployment.circuit_breaker", WH_FEATURE_DEPLOYMENTS, enabled,
         UNTIL("Rolling deployments")),
    NOTE("registries.*.ecr", WH_FEATURE_EC2, is_true, UNTIL("EC2")),
};

#define N_STAGES (sizeof(stages) / sizeof(stages[0]))

/* The settings one entry names: how many, and the first. */
struct stage_hits {
    const config_setting_t *first;
    int n;
};

/* Visits each setting under s that path names and st applies to; errors
 * are reported as they are found, the rest counted in h. */
static void walk(struct cfg_ctx *c, const config_setting_t *s, const char *path,
                 const struct cfg_stage *st, struct stage_hits *h)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    if (len == 1 && path[0] == '*') {
        if (!dot || (!config_setting_is_list(s) && !config_setting_is_array(s)))
            return;
        for (int i = 0; i < config_setting_length(s); i++)
            walk(c, config_setting_get_elem(s, (unsigned)i), dot + 1, st, h);
        return;
    }
    char name[64];
    if (len >= sizeof(name) || !config_setting_is_group(s))
        return;
    memcpy(name, path, len);
    name[len] = '\0';
    const config_setting_t *m = config_setting_get_member(s, name);
    if (!m)
        return;
    if (dot) {
        walk(c, m, dot + 1, st, h);
        return;
    }
    if (st->applies && !st->applies(m))
        return;
    if (st->mode == STAGE_ERROR)
        wh_cfg_error(c, m, NULL, "%s", st->message);
    if (!h->n++)
        h->first = m;
}

/* 1 when the top-level block path lies in is dropped (its feature is off):
 * what is inside was not kept and is not reported again. */
static int in_dropped_block(const struct cfg_ctx *c, const char *path)
{
    size_t len = strcspn(path, ".");
    for (size_t i = 0; i < N_STAGES; i++)
        if (stages[i].mode == STAGE_DROP && !(c->features & stages[i].feature) &&
            strlen(stages[i].path) == len && strncmp(stages[i].path, path, len) == 0)
            return 1;
    return 0;
}

void wh_cfg_stage_check(struct cfg_ctx *c, const config_setting_t *root)
{
    for (size_t i = 0; i < N_STAGES; i++) {
        const struct cfg_stage *st = &stages[i];
        if ((c->features & st->feature) ||
            (st->mode != STAGE_DROP && in_dropped_block(c, st->path)))
            continue;
        struct stage_hits h = {NULL, 0};
        walk(c, root, st->path, st, &h);
        if (!h.n || st->mode == STAGE_ERROR)
            continue;
        if (h.n > 1)
            wh_cfg_warn(c, h.first, NULL, "%s (and %d more like it)", st->message, h.n - 1);
        else
            wh_cfg_warn(c, h.first, NULL, "%s", st->message);
        if (st->drop)
            st->drop(c);
    }
}

/* ---- names ---- */

static const char *const feature_names[] = {
    "tls",        "rules",      "health_check", "admin",      "hosts",   "services",    "state",
    "access_log", "algorithms", "stickiness",   "slow_start", "passive", "deployments", "ec2",
};

const char *wh_feature_name(unsigned feature)
{
    for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
        if (feature == 1u << i)
            return feature_names[i];
    return NULL;
}

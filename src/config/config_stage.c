/* Staging: one file serves every stage of the project (CONFIG.md). A
 * documented top-level block whose feature is not built is validated, then
 * accepted with one warning and dropped from the result; a documented key
 * inside a built block whose feature is not built is an error. Building a
 * feature means adding its bit to WH_FEATURES_BUILT (wharf/config.h); this
 * table stays as it is. The names of the feature bits (wh_feature_name)
 * live here too. */
#include <string.h>

#include "config/config-int.h"

struct cfg_stage {
    const char *path; /* member names joined by '.'; "*" = each element of a list */
    unsigned feature;
    int (*applies)(const config_setting_t *s); /* NULL = whenever present */
    const char *message;
    void (*drop)(struct cfg_ctx *c); /* a whole block: warn and drop, no error */
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

static void drop_hosts(struct cfg_ctx *c)
{
    wh_cfg_hosts_free(c->cfg);
}

static void drop_services(struct cfg_ctx *c)
{
    wh_cfg_services_free(c->cfg);
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

#define BLOCK(path, feature, drop)                                                                 \
    {                                                                                              \
        path, feature, NULL, NOT_BUILT, drop                                                       \
    }
#define KEY(path, feature, applies, message)                                                       \
    {                                                                                              \
        path, feature, applies, message, NULL                                                      \
    }

static const struct cfg_stage stages[] = {
    BLOCK("hosts", WH_FEATURE_FLEET, drop_hosts),
    BLOCK("services", WH_FEATURE_SERVICES, drop_services),
    BLOCK("admin", WH_FEATURE_ADMIN, drop_admin),
    BLOCK("state", WH_FEATURE_STORE, drop_state),
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
};

/* Calls hit for each setting under s that path names; returns how many. */
static int walk(struct cfg_ctx *c, const config_setting_t *s, const char *path,
                const struct cfg_stage *st)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    int hits = 0;
    if (len == 1 && path[0] == '*') {
        if (!config_setting_is_list(s) && !config_setting_is_array(s))
            return 0;
        for (int i = 0; i < config_setting_length(s); i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            hits += dot ? walk(c, e, dot + 1, st) : 0;
        }
        return hits;
    }
    char name[64];
    if (len >= sizeof(name) || !config_setting_is_group(s))
        return 0;
    memcpy(name, path, len);
    name[len] = '\0';
    const config_setting_t *m = config_setting_get_member(s, name);
    if (!m)
        return 0;
    if (dot)
        return walk(c, m, dot + 1, st);
    if (st->applies && !st->applies(m))
        return 0;
    if (st->drop)
        wh_cfg_warn(c, m, NULL, "%s", st->message);
    else
        wh_cfg_error(c, m, NULL, "%s", st->message);
    return 1;
}

void wh_cfg_stage_check(struct cfg_ctx *c, const config_setting_t *root)
{
    for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++) {
        const struct cfg_stage *st = &stages[i];
        if (c->features & st->feature)
            continue;
        if (walk(c, root, st->path, st) && st->drop)
            st->drop(c);
    }
}

/* ---- names ---- */

static const char *const feature_names[] = {
    "tls",   "rules",      "health_check", "admin",      "hosts",      "services",
    "state", "access_log", "algorithms",   "stickiness", "slow_start", "passive",
};

const char *wh_feature_name(unsigned feature)
{
    for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
        if (feature == 1u << i)
            return feature_names[i];
    return NULL;
}

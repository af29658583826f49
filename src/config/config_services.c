/* services: the file's services (name, target group, desired count), each
 * with its task (what Docker runs), deployment bounds and placement. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"
#include "wharf/query.h"

#define SV(f) offsetof(struct wh_cfg_service, f)
#define PS(f) offsetof(struct wh_cfg_placement_strategy, f)
#define PC(f) offsetof(struct wh_cfg_placement_constraint, f)

static int check_image(const char *v, char *err, size_t errlen);
static int check_log_driver(const char *v, char *err, size_t errlen);

/* ---- tables ---- */

static const struct cfg_param service_params[] = {
    {"name", CFG_NAME, SV(name), .flags = CFG_REQUIRED},
    {"target_group", CFG_STRING, SV(target_group), .check = wh_cfg_check_no_ctl},
    CFG_NUM("desired_count", CFG_INT, SV(desired_count), 0, 1000, 1),
    CFG_NUM("health_check_grace_period", CFG_DURATION, SV(health_check_grace_period), 0, 86400, 0),
};
static const char *const service_others[] = {"task", "deployment", "placement", NULL};
static const struct cfg_block service_block = CFG_BLOCK(service_params, service_others);

/* In the order of enum wh_pull_policy. */
static const char *const pull_policy_names[] = {"missing", "always", "never", NULL};

static const struct cfg_param task_params[] = {
    {"image", CFG_STRING, SV(image), .flags = CFG_REQUIRED, .check = check_image},
    CFG_NUM("container_port", CFG_INT, SV(container_port), 1, 65535, 0),
    CFG_NUM("cpu", CFG_INT, SV(cpu), 0, 262144, 0),
    CFG_NUM("memory", CFG_INT, SV(memory), 0, 1048576, 0),
    CFG_NUM("stop_timeout", CFG_DURATION, SV(stop_timeout), 0, 3600, 30),
    {"pull_policy", CFG_ENUM, SV(pull_policy), .sdef = "missing", .choices = pull_policy_names},
};
static const char *const task_others[] = {"command", "env", "log", NULL};
static const struct cfg_block task_block = CFG_BLOCK(task_params, task_others);

static const struct cfg_param log_params[] = {
    {"driver", CFG_STRING, SV(log_driver), .flags = CFG_REQUIRED, .check = check_log_driver},
};
static const char *const log_others[] = {"options", NULL};
static const struct cfg_block log_block = CFG_BLOCK(log_params, log_others);

static const struct cfg_param deployment_params[] = {
    CFG_NUM("minimum_healthy_percent", CFG_INT, SV(minimum_healthy_percent), 0, 100, 100),
    CFG_NUM("maximum_percent", CFG_INT, SV(maximum_percent), 100, 200, 200),
    CFG_NUM("progress_timeout", CFG_DURATION, SV(progress_timeout), 30, 86400, 600),
};
static const char *const deployment_others[] = {"circuit_breaker", NULL};
static const struct cfg_block deployment_block = CFG_BLOCK(deployment_params, deployment_others);

static const struct cfg_param breaker_params[] = {
    CFG_NUM("enable", CFG_BOOL, SV(circuit_breaker_enable), 0, 1, 0),
    CFG_NUM("rollback", CFG_BOOL, SV(circuit_breaker_rollback), 0, 1, 0),
};
static const struct cfg_block breaker_block = CFG_BLOCK(breaker_params, NULL);

static const char *const placement_keys[] = {"strategy", "constraints", NULL};
static const struct cfg_block placement_block = {NULL, 0, placement_keys};

static const char *const strategy_types[] = {"spread", "binpack", "random", NULL};
static const struct cfg_param strategy_params[] = {
    {"type", CFG_STRING, PS(type), .flags = CFG_REQUIRED, .choices = strategy_types},
    {"field", CFG_STRING, PS(field), .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block strategy_block = CFG_BLOCK(strategy_params, NULL);

static const char *const constraint_types[] = {"distinctInstance", "memberOf", NULL};
static const struct cfg_param constraint_params[] = {
    {"type", CFG_STRING, PC(type), .flags = CFG_REQUIRED, .choices = constraint_types},
    {"expression", CFG_STRING, PC(expression), .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block constraint_block = CFG_BLOCK(constraint_params, NULL);

/* ---- validators ---- */

static int check_image(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            if (wh_cfg_check_no_ctl(v, err, errlen) == 0)
                snprintf(err, errlen, "\"%s\" is not an image reference (no spaces)", v);
            return -1;
        }
    }
    return 0;
}

/* Docker's driver names: "json-file", "local", "awslogs", or a plugin
 * ("grafana/loki-docker-driver:latest"). */
static int check_log_driver(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("._-/:", *p)) {
            if (wh_cfg_check_no_ctl(v, err, errlen) == 0)
                snprintf(err, errlen,
                         "\"%s\" is not a log driver name (such as \"json-file\" or \"local\")", v);
            return -1;
        }
    }
    return 0;
}

/* ---- services ---- */

static void check_strategy(struct cfg_ctx *c, const config_setting_t *e,
                           const struct wh_cfg_placement_strategy *st)
{
    const char *f = st->field;
    if (!st->type)
        return;
    if (strcmp(st->type, "random") == 0) {
        if (f)
            wh_cfg_error(c, e, "field", "a random strategy takes no field");
    } else if (strcmp(st->type, "binpack") == 0) {
        if (!f || (strcmp(f, "cpu") != 0 && strcmp(f, "memory") != 0))
            wh_cfg_error(c, e, "field", "binpack needs field \"cpu\" or \"memory\"");
    } else if (!f ||
               (strcmp(f, "instanceId") != 0 && (strncmp(f, "attribute:", 10) != 0 || !f[10]))) {
        wh_cfg_error(c, e, "field", "spread needs field \"instanceId\" or \"attribute:NAME\"");
    }
}

static void parse_strategies(struct cfg_ctx *c, const config_setting_t *s,
                             struct wh_cfg_service *sv)
{
    if (wh_cfg_expect_list(c, s) < 0)
        return;
    size_t n = (size_t)config_setting_length(s);
    if (n > CFG_MAX_STRATEGIES) {
        wh_cfg_error(c, s, NULL, "has %zu strategies; at most %d are allowed", n,
                     CFG_MAX_STRATEGIES);
        return;
    }
    sv->strategies = wh_cfg_calloc(c, n, sizeof(*sv->strategies));
    for (size_t i = 0; sv->strategies && i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct wh_cfg_placement_strategy *st = &sv->strategies[sv->n_strategies++];
        if (wh_cfg_block_parse(c, e, &strategy_block, st) == 0)
            check_strategy(c, e, st);
    }
}

/* A memberOf expression in ECS's cluster query language, checked at load
 * so `wharfd -t` names the file, the line and the column. */
static void check_query(struct cfg_ctx *c, const config_setting_t *e, const char *text)
{
    char err[WH_ERR_LEN];
    struct wh_query *q = wh_query_parse(text, err, sizeof(err));
    if (!q)
        wh_cfg_error(c, e, "expression", "\"%s\": %s", text, err);
    wh_query_free(q);
}

static void parse_constraints(struct cfg_ctx *c, const config_setting_t *s,
                              struct wh_cfg_service *sv)
{
    if (wh_cfg_expect_list(c, s) < 0)
        return;
    size_t n = (size_t)config_setting_length(s);
    if (n > CFG_MAX_CONSTRAINTS) {
        wh_cfg_error(c, s, NULL, "has %zu constraints; at most %d are allowed", n,
                     CFG_MAX_CONSTRAINTS);
        return;
    }
    sv->constraints = wh_cfg_calloc(c, n, sizeof(*sv->constraints));
    for (size_t i = 0; sv->constraints && i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct wh_cfg_placement_constraint *ct = &sv->constraints[sv->n_constraints++];
        if (wh_cfg_block_parse(c, e, &constraint_block, ct) < 0 || !ct->type)
            continue;
        int member_of = strcmp(ct->type, "memberOf") == 0;
        if (member_of && !ct->expression)
            wh_cfg_error(c, e, "expression", "memberOf needs an expression");
        else if (!member_of && ct->expression)
            wh_cfg_error(c, e, "expression", "only memberOf takes an expression");
        else if (member_of)
            check_query(c, e, ct->expression);
    }
}

static void parse_task_log(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_service *sv)
{
    if (wh_cfg_block_parse(c, s, &log_block, sv) < 0 && !config_setting_is_group(s))
        return;
    const config_setting_t *m = wh_cfg_member(s, "options");
    if (m)
        wh_cfg_kv_group(c, m, &sv->log_options, &sv->n_log_options);
}

static void parse_task(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_service *sv)
{
    const config_setting_t *task = wh_cfg_member(s, "task");
    if (!task && config_setting_is_group(s))
        wh_cfg_error(c, s, "task", "required key is missing");
    wh_cfg_block_parse(c, task, &task_block, sv);
    if (!task || !config_setting_is_group(task))
        return;
    const config_setting_t *m;
    if ((m = wh_cfg_member(task, "command")))
        wh_cfg_string_list(c, m, 0, NULL, &sv->command, &sv->n_command);
    if ((m = wh_cfg_member(task, "env")))
        wh_cfg_kv_group(c, m, &sv->env, &sv->n_env);
    if ((m = wh_cfg_member(task, "log")))
        parse_task_log(c, m, sv);
    if (sv->target_group && !wh_cfg_member(task, "container_port"))
        wh_cfg_error(c, task, "container_port", "required when the service has a target_group");
}

/* maximum_percent above minimum_healthy_percent unless that is 0: with
 * both at 100 a task can neither be started before nor stopped before its
 * replacement. (The ranges leave no other case.) */
static void parse_deployment(struct cfg_ctx *c, const config_setting_t *s,
                             struct wh_cfg_service *sv)
{
    const config_setting_t *d = wh_cfg_member(s, "deployment");
    int rc = wh_cfg_block_parse(c, d, &deployment_block, sv);
    wh_cfg_block_parse(c, wh_cfg_member(d, "circuit_breaker"), &breaker_block, sv);
    const config_setting_t *max = wh_cfg_member(d, "maximum_percent");
    if (rc == 0 && max && sv->minimum_healthy_percent > 0 &&
        sv->maximum_percent <= sv->minimum_healthy_percent)
        wh_cfg_error(c, max, NULL,
                     "must be above minimum_healthy_percent (%d) unless that is 0, or no task "
                     "can be replaced",
                     sv->minimum_healthy_percent);
}

static void parse_placement(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_service *sv)
{
    const config_setting_t *p = wh_cfg_member(s, "placement");
    wh_cfg_block_parse(c, p, &placement_block, NULL);
    if (!p || !config_setting_is_group(p))
        return;
    const config_setting_t *m;
    if ((m = wh_cfg_member(p, "strategy")))
        parse_strategies(c, m, sv);
    if ((m = wh_cfg_member(p, "constraints")))
        parse_constraints(c, m, sv);
}

static void parse_service(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_service *sv)
{
    sv->line = (int)config_setting_source_line(s);
    if (wh_cfg_block_parse(c, s, &service_block, sv) < 0 && !config_setting_is_group(s))
        return;
    parse_task(c, s, sv);
    parse_deployment(c, s, sv);
    parse_placement(c, s, sv);
    if (sv->target_group && !wh_config_group(c->cfg, sv->target_group))
        wh_cfg_error(c, s, "target_group", "no target group is named \"%s\"", sv->target_group);
    for (const struct wh_cfg_service *o = c->cfg->services; sv->name[0] && o < sv; o++)
        if (strcmp(o->name, sv->name) == 0)
            wh_cfg_error(c, s, "name", "duplicate service name \"%s\" (first at line %d)", sv->name,
                         o->line);
}

void wh_cfg_services_parse(struct cfg_ctx *c, const config_setting_t *list)
{
    struct wh_config *cfg = c->cfg;
    if (!list || wh_cfg_expect_list(c, list) < 0)
        return;
    cfg->has_services = 1;
    size_t n = (size_t)config_setting_length(list);
    cfg->services = wh_cfg_calloc(c, n, sizeof(*cfg->services));
    if (!cfg->services)
        return;
    for (size_t i = 0; i < n; i++)
        parse_service(c, config_setting_get_elem(list, (unsigned)i),
                      &cfg->services[cfg->n_services++]);
}

void wh_cfg_services_free(struct wh_config *cfg)
{
    for (size_t i = 0; i < cfg->n_services; i++) {
        struct wh_cfg_service *sv = &cfg->services[i];
        free(sv->target_group);
        free(sv->image);
        free(sv->log_driver);
        wh_cfg_free_kv(sv->log_options, sv->n_log_options);
        wh_cfg_free_strv(sv->command, sv->n_command);
        wh_cfg_free_kv(sv->env, sv->n_env);
        for (size_t k = 0; k < sv->n_strategies; k++) {
            free(sv->strategies[k].type);
            free(sv->strategies[k].field);
        }
        free(sv->strategies);
        for (size_t k = 0; k < sv->n_constraints; k++) {
            free(sv->constraints[k].type);
            free(sv->constraints[k].expression);
        }
        free(sv->constraints);
    }
    free(cfg->services);
    cfg->services = NULL;
    cfg->n_services = 0;
    cfg->has_services = 0;
}

const struct wh_cfg_service *wh_config_service(const struct wh_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_services; i++)
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

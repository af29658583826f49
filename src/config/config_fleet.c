/* The control plane's blocks: hosts (the fleet of Docker engines),
 * services (seeds for the store), admin (the admin listener) and state
 * (where desired state is kept). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

#define HS(f) offsetof(struct wh_cfg_host, f)
#define SV(f) offsetof(struct wh_cfg_service, f)
#define PS(f) offsetof(struct wh_cfg_placement_strategy, f)
#define PC(f) offsetof(struct wh_cfg_placement_constraint, f)

#define STATE_DIR_DEFAULT "/var/lib/wharf"
#define STATE_PREFIX_DEFAULT "/wharf/"

static int check_docker_url(const char *v, char *err, size_t errlen);
static int check_host_address(const char *v, char *err, size_t errlen);
static int check_image(const char *v, char *err, size_t errlen);
static int check_etcd_url(const char *v, char *err, size_t errlen);
static int check_prefix(const char *v, char *err, size_t errlen);

/* ---- tables ---- */

static const struct cfg_param host_params[] = {
    {"id", CFG_NAME, HS(id), .flags = CFG_REQUIRED},
    {"docker", CFG_STRING, HS(docker), .flags = CFG_REQUIRED, .check = check_docker_url},
    {"address", CFG_STRING, HS(address), .check = check_host_address},
    CFG_NUM("max_concurrent_calls", CFG_INT, HS(max_concurrent_calls), 1, 64, 8),
    CFG_NUM("call_timeout", CFG_DURATION, HS(call_timeout), 1, 600, 30),
};
static const char *const host_others[] = {"tls", "attributes", NULL};
static const struct cfg_block host_block = CFG_BLOCK(host_params, host_others);

static const struct cfg_param host_tls_params[] = {
    {"ca", CFG_STRING, HS(tls_ca), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
    {"cert", CFG_STRING, HS(tls_cert), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
    {"key", CFG_STRING, HS(tls_key), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block host_tls_block = CFG_BLOCK(host_tls_params, NULL);

static const struct cfg_param service_params[] = {
    {"name", CFG_NAME, SV(name), .flags = CFG_REQUIRED},
    {"target_group", CFG_STRING, SV(target_group), .check = wh_cfg_check_no_ctl},
    CFG_NUM("desired_count", CFG_INT, SV(desired_count), 0, 1000, 1),
    CFG_NUM("health_check_grace_period", CFG_DURATION, SV(health_check_grace_period), 0, 86400, 0),
};
static const char *const service_others[] = {"task", "deployment", "placement", NULL};
static const struct cfg_block service_block = CFG_BLOCK(service_params, service_others);

static const struct cfg_param task_params[] = {
    {"image", CFG_STRING, SV(image), .flags = CFG_REQUIRED, .check = check_image},
    CFG_NUM("container_port", CFG_INT, SV(container_port), 1, 65535, 0),
    CFG_NUM("cpu", CFG_INT, SV(cpu), 0, 262144, 0),
    CFG_NUM("memory", CFG_INT, SV(memory), 0, 1048576, 0),
    CFG_NUM("stop_timeout", CFG_DURATION, SV(stop_timeout), 0, 3600, 30),
};
static const char *const task_others[] = {"command", "env", NULL};
static const struct cfg_block task_block = CFG_BLOCK(task_params, task_others);

static const struct cfg_param deployment_params[] = {
    CFG_NUM("minimum_healthy_percent", CFG_INT, SV(minimum_healthy_percent), 0, 100, 100),
    CFG_NUM("maximum_percent", CFG_INT, SV(maximum_percent), 100, 200, 200),
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

#define AD(f) offsetof(struct wh_cfg_admin, f)

static const struct cfg_param admin_params[] = {
    {"bind", CFG_ADDR, AD(bind), .flags = CFG_REQUIRED},
    {"token_file", CFG_STRING, AD(token_file), .check = wh_cfg_check_no_ctl},
    CFG_NUM("metrics_public", CFG_BOOL, AD(metrics_public), 0, 1, 0),
};
static const struct cfg_block admin_block = CFG_BLOCK(admin_params, NULL);

#define ST(f) offsetof(struct wh_cfg_state, f)

static const struct cfg_param state_params[] = {
    {"dir", CFG_STRING, ST(dir), .check = wh_cfg_check_abs_path},
    {"prefix", CFG_STRING, ST(prefix), .sdef = STATE_PREFIX_DEFAULT, .check = check_prefix},
};
static const char *const state_others[] = {"etcd", NULL};
static const struct cfg_block state_block = CFG_BLOCK(state_params, state_others);

/* ---- validators ---- */

static int check_docker_url(const char *v, char *err, size_t errlen)
{
    if (strncmp(v, "unix://", 7) == 0 && v[7] == '/' && wh_cfg_check_no_ctl(v, err, errlen) == 0)
        return 0;
    if (strncmp(v, "tcp://", 6) == 0) {
        const char *colon = strrchr(v + 6, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (colon && colon > v + 6 && end && end != colon + 1 && *end == '\0' && port >= 1 &&
            port <= 65535)
            return 0;
    }
    snprintf(err, errlen, "\"%s\" is not a Docker endpoint: unix:///PATH or tcp://HOST:PORT", v);
    return -1;
}

static int check_host_address(const char *v, char *err, size_t errlen)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1)
        return 0;
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.') {
            snprintf(err, errlen, "\"%s\" is not an IP address or host name (no port here)", v);
            return -1;
        }
    }
    return 0;
}

static int check_image(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "\"%s\" is not an image reference (no spaces)", v);
            return -1;
        }
    }
    return 0;
}

static int check_etcd_url(const char *v, char *err, size_t errlen)
{
    if ((strncmp(v, "http://", 7) == 0 && v[7]) || (strncmp(v, "https://", 8) == 0 && v[8]))
        return check_image(v, err, errlen) == 0 ? 0 : -1;
    snprintf(err, errlen, "\"%s\" is not an etcd endpoint: http://HOST:PORT or https://...", v);
    return -1;
}

static int check_prefix(const char *v, char *err, size_t errlen)
{
    if (v[0] == '/')
        return wh_cfg_check_no_ctl(v, err, errlen);
    snprintf(err, errlen, "\"%s\" must start with /", v);
    return -1;
}

/* ---- hosts ---- */

static void parse_host(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_host *h)
{
    h->line = (int)config_setting_source_line(s);
    if (wh_cfg_block_parse(c, s, &host_block, h) < 0 && !config_setting_is_group(s))
        return;
    const config_setting_t *tls = wh_cfg_member(s, "tls");
    if (tls) {
        wh_cfg_block_parse(c, tls, &host_tls_block, h);
        if (h->docker && strncmp(h->docker, "tcp://", 6) != 0)
            wh_cfg_error(c, tls, NULL, "only for tcp:// Docker endpoints");
    }
    const config_setting_t *attrs = wh_cfg_member(s, "attributes");
    if (attrs)
        wh_cfg_kv_group(c, attrs, &h->attributes, &h->n_attributes);
    for (const struct wh_cfg_host *o = c->cfg->hosts; h->id[0] && o < h; o++)
        if (strcmp(o->id, h->id) == 0)
            wh_cfg_error(c, s, "id", "duplicate host id \"%s\" (first at line %d)", h->id, o->line);
}

void wh_cfg_hosts_parse(struct cfg_ctx *c, const config_setting_t *list)
{
    struct wh_config *cfg = c->cfg;
    if (!list || wh_cfg_expect_list(c, list) < 0)
        return;
    cfg->has_hosts = 1;
    size_t n = (size_t)config_setting_length(list);
    cfg->hosts = wh_cfg_calloc(c, n, sizeof(*cfg->hosts));
    if (!cfg->hosts)
        return;
    for (size_t i = 0; i < n; i++)
        parse_host(c, config_setting_get_elem(list, (unsigned)i), &cfg->hosts[cfg->n_hosts++]);
}

void wh_cfg_hosts_free(struct wh_config *cfg)
{
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        struct wh_cfg_host *h = &cfg->hosts[i];
        free(h->docker);
        free(h->address);
        free(h->tls_ca);
        free(h->tls_cert);
        free(h->tls_key);
        wh_cfg_free_kv(h->attributes, h->n_attributes);
    }
    free(cfg->hosts);
    cfg->hosts = NULL;
    cfg->n_hosts = 0;
    cfg->has_hosts = 0;
}

const struct wh_cfg_host *wh_config_host(const struct wh_config *cfg, const char *id)
{
    for (size_t i = 0; cfg && id && i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].id, id) == 0)
            return &cfg->hosts[i];
    return NULL;
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
    }
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
    if (sv->target_group && !wh_cfg_member(task, "container_port"))
        wh_cfg_error(c, task, "container_port", "required when the service has a target_group");
}

static void parse_deployment(struct cfg_ctx *c, const config_setting_t *s,
                             struct wh_cfg_service *sv)
{
    const config_setting_t *d = wh_cfg_member(s, "deployment");
    int rc = wh_cfg_block_parse(c, d, &deployment_block, sv);
    wh_cfg_block_parse(c, wh_cfg_member(d, "circuit_breaker"), &breaker_block, sv);
    if (rc == 0 && d && sv->minimum_healthy_percent == 100 && sv->maximum_percent == 100)
        wh_cfg_error(c, d, NULL,
                     "minimum_healthy_percent 100 with maximum_percent 100 leaves no "
                     "room to replace a task");
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

/* ---- admin ---- */

void wh_cfg_admin_parse(struct cfg_ctx *c, const config_setting_t *s)
{
    struct wh_cfg_admin *a = &c->cfg->admin;
    if (!s)
        return;
    c->cfg->has_admin = 1;
    if (wh_cfg_block_parse(c, s, &admin_block, a) < 0 && !config_setting_is_group(s))
        return;
    a->enabled = 1;
    if (!a->bind.len)
        return;
    if (!wh_addr_is_loopback(&a->bind))
        wh_cfg_error(c, s, "bind",
                     "%s: the admin listener must bind a loopback address "
                     "(127.0.0.1 or [::1]) until admin TLS exists",
                     a->bind.text);
    for (size_t i = 0; i < c->cfg->n_listeners; i++)
        if (wh_addr_equal(&c->cfg->listeners[i].bind, &a->bind))
            wh_cfg_error(c, s, "bind", "%s is already bound by listener \"%s\" (line %d)",
                         a->bind.text, c->cfg->listeners[i].name, c->cfg->listeners[i].line);
}

void wh_cfg_admin_reset(struct wh_config *cfg)
{
    free(cfg->admin.token_file);
    memset(&cfg->admin, 0, sizeof(cfg->admin));
    cfg->has_admin = 0;
}

/* ---- state ---- */

static void state_defaults(struct cfg_ctx *c, struct wh_cfg_state *st)
{
    if (!st->dir && !st->n_etcd)
        st->dir = wh_cfg_strdup(c, STATE_DIR_DEFAULT);
    if (!st->prefix)
        st->prefix = wh_cfg_strdup(c, STATE_PREFIX_DEFAULT);
}

void wh_cfg_state_parse(struct cfg_ctx *c, const config_setting_t *s)
{
    struct wh_cfg_state *st = &c->cfg->state;
    c->cfg->has_state = s != NULL;
    wh_cfg_block_parse(c, s, &state_block, st);
    if (s && config_setting_is_group(s)) {
        const config_setting_t *etcd = wh_cfg_member(s, "etcd");
        if (etcd &&
            wh_cfg_string_list(c, etcd, CFG_MAX_ETCD, check_etcd_url, &st->etcd, &st->n_etcd) ==
                0 &&
            st->n_etcd == 0)
            wh_cfg_error(c, etcd, NULL, "needs at least one endpoint");
        if (etcd && wh_cfg_member(s, "dir"))
            wh_cfg_error(c, s, "dir", "choose one store: dir (embedded) or etcd, not both");
        if (!etcd && wh_cfg_member(s, "prefix"))
            wh_cfg_error(c, s, "prefix", "only for the etcd store");
    }
    state_defaults(c, st);
}

void wh_cfg_state_reset(struct cfg_ctx *c, struct wh_config *cfg)
{
    struct wh_cfg_state *st = &cfg->state;
    free(st->dir);
    free(st->prefix);
    wh_cfg_free_strv(st->etcd, st->n_etcd);
    memset(st, 0, sizeof(*st));
    cfg->has_state = 0;
    if (c)
        state_defaults(c, st);
}

/* listeners: bind, protocol and TLS settings, rules (conditions and one
 * action each) and the default action. Target groups are parsed first, so
 * forward actions are checked against them here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

#define LS(f) offsetof(struct wh_cfg_listener, f)
#define ACT(f) offsetof(struct wh_cfg_action, f)

static const char *const protocol_names[] = {"http", "https", NULL};
static const char *const tls_policies[] = {"tls13-12", "tls13", NULL};

static const struct cfg_param listener_params[] = {
    {"name", CFG_NAME, LS(name), .flags = CFG_REQUIRED},
    {"bind", CFG_ADDR, LS(bind), .flags = CFG_REQUIRED},
    {"protocol", CFG_ENUM, LS(protocol), .sdef = "http", .choices = protocol_names},
    {"tls_policy", CFG_STRING, LS(tls_policy), .sdef = "tls13-12", .choices = tls_policies},
    CFG_NUM("idle_timeout", CFG_DURATION, LS(idle_timeout), 1, 4000, 60),
    {"stickiness_secret", CFG_STRING, LS(stickiness_secret), 16, 0, .check = wh_cfg_check_no_ctl},
};
static const char *const listener_others[] = {"certificates", "rules", "default_action", NULL};
static const struct cfg_block listener_block = CFG_BLOCK(listener_params, listener_others);

static const struct cfg_param cert_params[] = {
    {"cert", CFG_STRING, offsetof(struct wh_cfg_certificate, cert), .flags = CFG_REQUIRED,
     .check = wh_cfg_check_no_ctl},
    {"key", CFG_STRING, offsetof(struct wh_cfg_certificate, key), .flags = CFG_REQUIRED,
     .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block cert_block = CFG_BLOCK(cert_params, NULL);

static const struct cfg_param rule_params[] = {
    CFG_NUM("priority", CFG_INT, offsetof(struct wh_cfg_rule, priority), 1, 50000, 0,
            .flags = CFG_REQUIRED),
};
static const char *const rule_others[] = {"conditions",     "forward",    "redirect",
                                          "fixed_response", "stickiness", NULL};
static const struct cfg_block rule_block = CFG_BLOCK(rule_params, rule_others);

static const struct cfg_block default_action_block = {NULL, 0, rule_others + 1};

/* Group-level stickiness sits next to forward, in the rule. */
static const struct cfg_param action_params[] = {
    CFG_NUM("stickiness", CFG_DURATION, ACT(stickiness), 1, 604800, 0, .flags = CFG_ZERO_OFF),
};

static const struct cfg_param forward_params[] = {
    {"target_group", CFG_STRING, offsetof(struct wh_cfg_weighted_group, target_group),
     .flags = CFG_REQUIRED},
    CFG_NUM("weight", CFG_INT, offsetof(struct wh_cfg_weighted_group, weight), 0, 999, 1),
};
static const struct cfg_block forward_block = CFG_BLOCK(forward_params, NULL);

static int check_location(const char *v, char *err, size_t errlen);

static const struct cfg_param redirect_params[] = {
    CFG_NUM("status", CFG_INT, ACT(redirect_status), 301, 302, 0, .flags = CFG_REQUIRED,
            .range_text = "301 or 302"),
    {"location", CFG_STRING, ACT(location), .flags = CFG_REQUIRED, .check = check_location},
};
static const struct cfg_block redirect_block = CFG_BLOCK(redirect_params, NULL);

static const struct cfg_param fixed_params[] = {
    CFG_NUM("status", CFG_INT, ACT(fixed_status), 200, 599, 0, .flags = CFG_REQUIRED),
    {"content_type", CFG_STRING, ACT(content_type), .sdef = "text/plain",
     .check = wh_cfg_check_no_ctl},
    {"body", CFG_STRING, ACT(body), .sdef = "", .flags = CFG_EMPTY_OK},
};
static const struct cfg_block fixed_block = CFG_BLOCK(fixed_params, NULL);

static const char *const condition_keys[] = {"host",  "path",      "method", "header",
                                             "query", "source_ip", NULL};
static const struct cfg_block conditions_block = {NULL, 0, condition_keys};

static const struct cfg_param header_params[] = {
    {"name", CFG_STRING, offsetof(struct wh_cfg_header_cond, name), .flags = CFG_REQUIRED,
     .check = wh_cfg_check_token},
};
static const char *const values_key[] = {"values", NULL};
static const struct cfg_block header_block = CFG_BLOCK(header_params, values_key);

static const struct cfg_param query_params[] = {
    {"key", CFG_STRING, offsetof(struct wh_cfg_query_cond, key), .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block query_block = CFG_BLOCK(query_params, values_key);

/* ---- validators ---- */

/* A redirect location may use ALB's placeholders and nothing else. */
static int check_location(const char *v, char *err, size_t errlen)
{
    static const char *const names[] = {"protocol", "host", "port", "path", "query", NULL};
    if (wh_cfg_check_no_ctl(v, err, errlen) < 0)
        return -1;
    for (const char *p = strstr(v, "#{"); p; p = strstr(p + 2, "#{")) {
        const char *end = strchr(p, '}');
        size_t len = end ? (size_t)(end - p - 2) : 0;
        int known = 0;
        for (int i = 0; end && names[i]; i++)
            known |= strlen(names[i]) == len && strncmp(p + 2, names[i], len) == 0;
        if (!known) {
            snprintf(err, errlen,
                     "unknown placeholder at \"%.20s\": use #{protocol}, #{host}, "
                     "#{port}, #{path} or #{query}",
                     p);
            return -1;
        }
    }
    return 0;
}

/* A path ("/v1/" followed by a wildcard), or a pattern that starts with a wildcard. */
static int check_path_pattern(const char *v, char *err, size_t errlen)
{
    if (v[0] != '*')
        return wh_cfg_check_url_path(v, err, errlen);
    char path[256];
    snprintf(path, sizeof(path), "/%s", v);
    if (wh_cfg_check_url_path(path, err, errlen) == 0)
        return 0;
    snprintf(err, errlen, "\"%s\": a path may not hold spaces or control characters", v);
    return -1;
}

/* ---- conditions ---- */

static void parse_values(struct cfg_ctx *c, const config_setting_t *g, char ***values, size_t *n)
{
    const config_setting_t *s = wh_cfg_member(g, "values");
    if (!s) {
        wh_cfg_error(c, g, "values", "required key is missing");
        return;
    }
    wh_cfg_string_list(c, s, CFG_MAX_CONDITION_VALUES, wh_cfg_check_no_ctl, values, n);
}

static void parse_header_cond(struct cfg_ctx *c, const config_setting_t *s,
                              struct wh_cfg_conditions *cond)
{
    cond->header = wh_cfg_calloc(c, 1, sizeof(*cond->header));
    if (!cond->header)
        return;
    if (wh_cfg_block_parse(c, s, &header_block, cond->header) < 0 && !config_setting_is_group(s))
        return;
    parse_values(c, s, &cond->header->values, &cond->header->n_values);
}

static void parse_query_cond(struct cfg_ctx *c, const config_setting_t *s,
                             struct wh_cfg_conditions *cond)
{
    cond->query = wh_cfg_calloc(c, 1, sizeof(*cond->query));
    if (!cond->query)
        return;
    if (wh_cfg_block_parse(c, s, &query_block, cond->query) < 0 && !config_setting_is_group(s))
        return;
    parse_values(c, s, &cond->query->values, &cond->query->n_values);
}

static void parse_list_cond(struct cfg_ctx *c, const config_setting_t *g, const char *key,
                            cfg_check_fn check, char ***out, size_t *n)
{
    const config_setting_t *s = wh_cfg_member(g, key);
    if (s)
        wh_cfg_string_list(c, s, CFG_MAX_CONDITION_VALUES, check, out, n);
}

static void parse_conditions(struct cfg_ctx *c, const config_setting_t *rule,
                             struct wh_cfg_conditions *cond)
{
    const config_setting_t *s = wh_cfg_member(rule, "conditions");
    if (!s) {
        wh_cfg_error(c, rule, "conditions",
                     "required key is missing (a rule without conditions "
                     "belongs in default_action)");
        return;
    }
    if (wh_cfg_block_parse(c, s, &conditions_block, NULL) < 0 && !config_setting_is_group(s))
        return;
    if (config_setting_length(s) == 0)
        wh_cfg_error(c, s, NULL,
                     "needs at least one condition: host, path, method, header, "
                     "query or source_ip");
    parse_list_cond(c, s, "host", wh_cfg_check_hostname, &cond->host, &cond->n_host);
    parse_list_cond(c, s, "path", check_path_pattern, &cond->path, &cond->n_path);
    parse_list_cond(c, s, "method", wh_cfg_check_token, &cond->method, &cond->n_method);
    parse_list_cond(c, s, "source_ip", wh_cfg_check_cidr, &cond->source_ip, &cond->n_source_ip);
    if (wh_cfg_member(s, "header"))
        parse_header_cond(c, wh_cfg_member(s, "header"), cond);
    if (wh_cfg_member(s, "query"))
        parse_query_cond(c, wh_cfg_member(s, "query"), cond);
}

/* ---- actions ---- */

static int parse_forward_entry(struct cfg_ctx *c, const config_setting_t *e,
                               struct wh_cfg_action *act)
{
    struct wh_cfg_weighted_group *w = &act->forward[act->n_forward++];
    int rc = wh_cfg_block_parse(c, e, &forward_block, w);
    if (!w->target_group)
        return -1;
    if (!wh_config_group(c->cfg, w->target_group)) {
        wh_cfg_error(c, e, "target_group", "no target group is named \"%s\"", w->target_group);
        return -1;
    }
    for (size_t k = 0; k + 1 < act->n_forward; k++) {
        const char *other = act->forward[k].target_group;
        if (other && strcmp(other, w->target_group) == 0) {
            wh_cfg_error(c, e, "target_group", "\"%s\" is listed twice in this forward",
                         w->target_group);
            return -1;
        }
    }
    return rc;
}

/* forward = ( { target_group = "a"; weight = 90; }, ... ), or one group. */
static void parse_forward(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_action *act)
{
    int single = config_setting_is_group(s);
    if (!single && wh_cfg_expect_list(c, s) < 0)
        return;
    size_t n = single ? 1 : (size_t)config_setting_length(s);
    if (n == 0 || n > CFG_MAX_FORWARD_GROUPS) {
        wh_cfg_error(c, s, NULL, "needs 1 to %d target groups, has %zu", CFG_MAX_FORWARD_GROUPS, n);
        return;
    }
    act->forward = wh_cfg_calloc(c, n, sizeof(*act->forward));
    if (!act->forward)
        return;
    int ok = 1, total = 0;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = single ? s : config_setting_get_elem(s, (unsigned)i);
        if (parse_forward_entry(c, e, act) < 0)
            ok = 0;
    }
    for (size_t i = 0; i < act->n_forward; i++)
        total += act->forward[i].weight;
    if (ok && total == 0)
        wh_cfg_error(c, s, NULL, "the weights add up to 0: no request could be forwarded");
}

static void parse_one_action(struct cfg_ctx *c, const config_setting_t *s,
                             struct wh_cfg_action *act)
{
    act->line = (int)config_setting_source_line(s);
    if (act->type == WH_ACTION_FORWARD)
        parse_forward(c, s, act);
    else if (act->type == WH_ACTION_REDIRECT)
        wh_cfg_block_parse(c, s, &redirect_block, act);
    else
        wh_cfg_block_parse(c, s, &fixed_block, act);
}

/* The action keys of g (a rule or default_action): exactly one of
 * forward, redirect, fixed_response, plus stickiness with forward. */
static void parse_action(struct cfg_ctx *c, const config_setting_t *g, struct wh_cfg_action *act)
{
    static const char *const keys[] = {"forward", "redirect", "fixed_response"};
    static const enum wh_action_type types[] = {WH_ACTION_FORWARD, WH_ACTION_REDIRECT,
                                                WH_ACTION_FIXED};
    const config_setting_t *found = NULL;
    act->line = (int)config_setting_source_line(g);
    for (int i = 0; i < 3; i++) {
        const config_setting_t *m = wh_cfg_member(g, keys[i]);
        if (m && found) {
            wh_cfg_error(c, m, NULL, "one action only: this also has %s",
                         config_setting_name(found));
        } else if (m) {
            found = m;
            act->type = types[i];
        }
    }
    wh_cfg_params_parse(c, g, action_params, 1, act);
    const config_setting_t *sticky = wh_cfg_member(g, "stickiness");
    if (sticky && found && act->type != WH_ACTION_FORWARD)
        wh_cfg_error(c, sticky, NULL, "applies only to a forward action");
    if (found)
        parse_one_action(c, found, act);
    else if (config_setting_is_group(g))
        wh_cfg_error(c, g, NULL, "needs an action: forward, redirect or fixed_response");
}

/* ---- rules ---- */

static int rule_cmp(const void *pa, const void *pb)
{
    const struct wh_cfg_rule *a = pa, *b = pb;
    return (a->priority > b->priority) - (a->priority < b->priority);
}

static void parse_rule(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_listener *l)
{
    struct wh_cfg_rule *r = &l->rules[l->n_rules++];
    r->line = (int)config_setting_source_line(s);
    if (wh_cfg_block_parse(c, s, &rule_block, r) < 0 && !config_setting_is_group(s))
        return;
    parse_conditions(c, s, &r->conditions);
    parse_action(c, s, &r->action);
    for (size_t k = 0; r->priority && k + 1 < l->n_rules; k++) {
        if (l->rules[k].priority == r->priority) {
            wh_cfg_error(c, s, "priority",
                         "duplicate priority %d in this listener (also at line %d)", r->priority,
                         l->rules[k].line);
            break;
        }
    }
}

static void parse_rules(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_listener *l)
{
    if (wh_cfg_expect_list(c, s) < 0)
        return;
    size_t n = (size_t)config_setting_length(s);
    l->rules = wh_cfg_calloc(c, n, sizeof(*l->rules));
    if (!l->rules)
        return;
    for (size_t i = 0; i < n; i++)
        parse_rule(c, config_setting_get_elem(s, (unsigned)i), l);
    qsort(l->rules, l->n_rules, sizeof(*l->rules), rule_cmp);
}

/* ---- listeners ---- */

static void parse_certificates(struct cfg_ctx *c, const config_setting_t *s,
                               struct wh_cfg_listener *l)
{
    if (wh_cfg_expect_list(c, s) < 0)
        return;
    size_t n = (size_t)config_setting_length(s);
    l->certificates = wh_cfg_calloc(c, n, sizeof(*l->certificates));
    if (!l->certificates)
        return;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct wh_cfg_certificate *cert = &l->certificates[l->n_certificates++];
        cert->line = (int)config_setting_source_line(e);
        wh_cfg_block_parse(c, e, &cert_block, cert);
    }
}

/* certificates and tls_policy belong to https; https needs a certificate. */
static void check_tls(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_listener *l)
{
    const config_setting_t *certs = wh_cfg_member(s, "certificates");
    const config_setting_t *policy = wh_cfg_member(s, "tls_policy");
    if (l->protocol == WH_PROTO_HTTPS) {
        if (!certs)
            wh_cfg_error(c, s, "certificates", "an https listener needs at least one certificate");
        else if (config_setting_length(certs) == 0)
            wh_cfg_error(c, certs, NULL, "an https listener needs at least one certificate");
        return;
    }
    if (certs)
        wh_cfg_error(c, certs, NULL, "only for https listeners (this one is http)");
    if (policy)
        wh_cfg_error(c, policy, NULL, "only for https listeners (this one is http)");
}

static void check_unique(struct cfg_ctx *c, const config_setting_t *s,
                         const struct wh_cfg_listener *l)
{
    const struct wh_config *cfg = c->cfg;
    for (const struct wh_cfg_listener *o = cfg->listeners; o < l; o++) {
        if (l->name[0] && strcmp(o->name, l->name) == 0)
            wh_cfg_error(c, s, "name", "duplicate listener name \"%s\" (first at line %d)", l->name,
                         o->line);
        if (l->bind.len && wh_addr_equal(&o->bind, &l->bind))
            wh_cfg_error(c, s, "bind", "%s is already bound by listener \"%s\" (line %d)",
                         l->bind.text, o->name, o->line);
    }
}

static void parse_listener(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_listener *l)
{
    l->line = (int)config_setting_source_line(s);
    if (wh_cfg_block_parse(c, s, &listener_block, l) < 0 && !config_setting_is_group(s))
        return;
    const config_setting_t *m;
    if ((m = wh_cfg_member(s, "certificates")))
        parse_certificates(c, m, l);
    check_tls(c, s, l);
    if ((m = wh_cfg_member(s, "rules")))
        parse_rules(c, m, l);
    m = wh_cfg_member(s, "default_action");
    if (!m)
        wh_cfg_error(c, s, "default_action", "required key is missing");
    else if (wh_cfg_block_parse(c, m, &default_action_block, NULL) == 0 ||
             config_setting_is_group(m))
        parse_action(c, m, &l->default_action);
    check_unique(c, s, l);
}

void wh_cfg_listeners_parse(struct cfg_ctx *c, const config_setting_t *list)
{
    struct wh_config *cfg = c->cfg;
    if (!list || wh_cfg_expect_list(c, list) < 0)
        return;
    size_t n = (size_t)config_setting_length(list);
    cfg->listeners = wh_cfg_calloc(c, n, sizeof(*cfg->listeners));
    if (!cfg->listeners)
        return;
    for (size_t i = 0; i < n; i++)
        parse_listener(c, config_setting_get_elem(list, (unsigned)i),
                       &cfg->listeners[cfg->n_listeners++]);
}

/* ---- lookup ---- */

const struct wh_cfg_listener *wh_config_listener(const struct wh_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_listeners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0)
            return &cfg->listeners[i];
    return NULL;
}

/* ---- free ---- */

static void conditions_free(struct wh_cfg_conditions *cond)
{
    wh_cfg_free_strv(cond->host, cond->n_host);
    wh_cfg_free_strv(cond->path, cond->n_path);
    wh_cfg_free_strv(cond->method, cond->n_method);
    wh_cfg_free_strv(cond->source_ip, cond->n_source_ip);
    if (cond->header) {
        free(cond->header->name);
        wh_cfg_free_strv(cond->header->values, cond->header->n_values);
        free(cond->header);
    }
    if (cond->query) {
        free(cond->query->key);
        wh_cfg_free_strv(cond->query->values, cond->query->n_values);
        free(cond->query);
    }
}

static void action_free(struct wh_cfg_action *act)
{
    for (size_t i = 0; i < act->n_forward; i++)
        free(act->forward[i].target_group);
    free(act->forward);
    free(act->location);
    free(act->content_type);
    free(act->body);
}

void wh_cfg_listener_free(struct wh_cfg_listener *l)
{
    for (size_t i = 0; i < l->n_certificates; i++) {
        free(l->certificates[i].cert);
        free(l->certificates[i].key);
    }
    free(l->certificates);
    free(l->tls_policy);
    free(l->stickiness_secret);
    for (size_t i = 0; i < l->n_rules; i++) {
        conditions_free(&l->rules[i].conditions);
        action_free(&l->rules[i].action);
    }
    free(l->rules);
    action_free(&l->default_action);
}

/* Unit tests for the configuration module (src/config/); the fleet and the
 * services have theirs in test_config_fleet.c, and both share the helpers
 * of test_config.h.
 *
 * Configs are loaded from strings named "t.conf", so every message can be
 * asserted with its exact "t.conf:LINE: KEY: " prefix. Most tests load with
 * WH_FEATURES_ALL to exercise the whole parser; the staging tests load with
 * the built set and single flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "wharf/config.h"

#include "test_config.h"

/* ---- the examples ---- */

static void check_full_listeners(const struct wh_config *cfg)
{
    assert_int_equal(cfg->n_listeners, 2);
    const struct wh_cfg_listener *l = wh_config_listener(cfg, "http");
    assert_ptr_equal(l, &cfg->listeners[0]);
    assert_string_equal(l->bind.text, "0.0.0.0:8080");
    assert_int_equal(l->bind.ss.ss_family, AF_INET);
    assert_int_equal(port_of(&l->bind), 8080);
    assert_int_equal(l->protocol, WH_PROTO_HTTP);
    assert_string_equal(l->tls_policy, "tls13-12");
    assert_true(l->idle_timeout == 60);
    assert_null(l->stickiness_secret);
    assert_int_equal(l->n_certificates, 0);
    assert_int_equal(l->n_rules, 3);

    const struct wh_cfg_rule *r = &l->rules[0];
    assert_int_equal(r->priority, 10);
    assert_int_equal(r->conditions.n_host, 2);
    assert_string_equal(r->conditions.host[0], "api.example.com");
    assert_string_equal(r->conditions.host[1], "*.api.example.com");
    assert_int_equal(r->conditions.n_path, 1);
    assert_string_equal(r->conditions.path[0], "/v1/*");
    assert_int_equal(r->conditions.n_method, 2);
    assert_string_equal(r->conditions.method[1], "POST");
    assert_non_null(r->conditions.header);
    assert_string_equal(r->conditions.header->name, "X-Canary");
    assert_int_equal(r->conditions.header->n_values, 1);
    assert_string_equal(r->conditions.header->values[0], "yes");
    assert_non_null(r->conditions.query);
    assert_string_equal(r->conditions.query->key, "beta");
    assert_string_equal(r->conditions.query->values[0], "1");
    assert_int_equal(r->conditions.n_source_ip, 2);
    assert_string_equal(r->conditions.source_ip[1], "2001:db8::/32");
    assert_int_equal(r->action.type, WH_ACTION_FORWARD);
    assert_int_equal(r->action.n_forward, 2);
    assert_string_equal(r->action.forward[0].target_group, "api");
    assert_int_equal(r->action.forward[0].weight, 90);
    assert_string_equal(r->action.forward[1].target_group, "api-canary");
    assert_int_equal(r->action.forward[1].weight, 10);
    assert_true(r->action.stickiness == 3600);

    r = &l->rules[1];
    assert_int_equal(r->priority, 20);
    assert_int_equal(r->action.type, WH_ACTION_REDIRECT);
    assert_int_equal(r->action.redirect_status, 301);
    assert_string_equal(r->action.location, "https://#{host}/new/#{path}?#{query}");
    assert_null(r->conditions.header);

    r = &l->rules[2];
    assert_int_equal(r->priority, 30);
    assert_int_equal(r->action.type, WH_ACTION_FIXED);
    assert_int_equal(r->action.fixed_status, 503);
    assert_string_equal(r->action.content_type, "text/plain");
    assert_string_equal(r->action.body, "back soon\n");

    assert_int_equal(l->default_action.type, WH_ACTION_FORWARD);
    assert_int_equal(l->default_action.n_forward, 1);
    assert_string_equal(l->default_action.forward[0].target_group, "web");
    assert_int_equal(l->default_action.forward[0].weight, 1);
    assert_true(l->default_action.stickiness == 0);

    l = &cfg->listeners[1];
    assert_string_equal(l->name, "https");
    assert_string_equal(l->bind.text, "[::]:8443");
    assert_int_equal(l->bind.ss.ss_family, AF_INET6);
    assert_int_equal(l->protocol, WH_PROTO_HTTPS);
    assert_int_equal(l->n_certificates, 2);
    assert_string_equal(l->certificates[0].cert, "/etc/wharf/a.pem");
    assert_string_equal(l->certificates[1].key, "/etc/wharf/b.key");
    assert_string_equal(l->tls_policy, "tls13");
    assert_true(l->idle_timeout == 120);
    assert_string_equal(l->stickiness_secret, "change-me-to-a-long-random-string");
    assert_int_equal(l->n_rules, 0);
}

static void check_full_groups(const struct wh_config *cfg)
{
    assert_int_equal(cfg->n_target_groups, 3);
    const struct wh_cfg_target_group *g = wh_config_group(cfg, "web");
    assert_ptr_equal(g, &cfg->target_groups[0]);
    assert_int_equal(g->algorithm, WH_ALGO_ROUND_ROBIN);
    assert_true(g->deregistration_delay == 300);
    assert_true(g->slow_start == 0);
    assert_int_equal(g->stickiness_enabled, 0);
    assert_true(g->stickiness_duration == 86400);
    assert_int_equal(g->health_check.enabled, 1);
    assert_string_equal(g->health_check.path, "/health");
    assert_int_equal(g->health_check.port, 0);
    assert_true(g->health_check.interval == 5);
    assert_true(g->health_check.timeout == 2);
    assert_int_equal(g->health_check.healthy_threshold, 2);
    assert_int_equal(g->health_check.unhealthy_threshold, 2);
    assert_string_equal(g->health_check.matcher, "200-399");
    assert_string_equal(g->health_check.host, "");
    assert_int_equal(g->passive.consecutive_connect_failures, 3);
    assert_int_equal(g->passive.consecutive_5xx, 0);
    assert_true(g->passive.eject == 30);
    assert_int_equal(g->n_targets, 2);
    assert_string_equal(g->targets[0].addr.text, "127.0.0.1:9001");
    assert_int_equal(g->targets[0].weight, 1);
    assert_string_equal(g->targets[1].addr.text, "127.0.0.1:9002");
    assert_int_equal(g->targets[1].weight, 2);
    assert_int_equal(g->targets[1].line, g->targets[0].line + 1);

    g = wh_config_group(cfg, "api");
    assert_non_null(g);
    assert_int_equal(g->algorithm, WH_ALGO_LEAST_OUTSTANDING);
    assert_true(g->deregistration_delay == 30);
    assert_true(g->slow_start == 60);
    assert_int_equal(g->health_check.port, 8081);
    assert_true(g->health_check.interval == 10);
    assert_true(g->health_check.timeout == 3);
    assert_string_equal(g->health_check.matcher, "200,204");
    assert_string_equal(g->health_check.host, "api.example.com");
    assert_string_equal(g->health_check.path, "/v1/health");
    assert_int_equal(g->n_targets, 2);
    assert_string_equal(g->targets[0].addr.text, "[::1]:9101");
    /* localhost: whichever address the resolver gives first. */
    assert_true(strcmp(g->targets[1].addr.text, "127.0.0.1:9102") == 0 ||
                strcmp(g->targets[1].addr.text, "[::1]:9102") == 0);

    g = wh_config_group(cfg, "api-canary");
    assert_non_null(g);
    assert_int_equal(g->algorithm, WH_ALGO_WEIGHTED_RANDOM);
    assert_int_equal(g->stickiness_enabled, 1);
    assert_true(g->stickiness_duration == 3600);
    assert_int_equal(g->health_check.enabled, 0);
    assert_int_equal(g->passive.consecutive_connect_failures, 0);
    assert_int_equal(g->passive.consecutive_5xx, 5);
    assert_true(g->passive.eject == 60);
    assert_int_equal(g->n_targets, 0);
}

static void check_full_fleet(const struct wh_config *cfg)
{
    assert_string_equal(cfg->cluster, "prod-1");
    assert_true(cfg->controller.reconcile_interval == 10);
    assert_true(cfg->controller.lost_task_grace == 30);
    assert_true(cfg->controller.start_backoff_max == 900);
    assert_int_equal(cfg->n_hosts, 2);
    const struct wh_cfg_host *h = wh_config_host(cfg, "local");
    assert_ptr_equal(h, &cfg->hosts[0]);
    assert_string_equal(h->docker, "unix:///var/run/docker.sock");
    assert_string_equal(h->address, "127.0.0.1");
    assert_string_equal(h->address_ip, "127.0.0.1");
    assert_int_equal(h->max_concurrent_calls, 8);
    assert_true(h->call_timeout == 30);
    assert_true(h->ping_interval == 2);
    assert_int_equal(h->unreachable_after, 3);
    assert_int_equal(h->draining, 0);
    assert_null(h->tls_ca);
    assert_int_equal(h->n_attributes, 1);
    assert_string_equal(h->attributes[0].key, "az");
    assert_string_equal(h->attributes[0].value, "local-a");
    h = wh_config_host(cfg, "i-0abc");
    assert_non_null(h);
    assert_string_equal(h->docker, "tcp://10.0.1.5:2376");
    assert_null(h->address);
    assert_string_equal(h->address_ip, "10.0.1.5");
    assert_true(h->ping_interval == 0.5);
    assert_int_equal(h->unreachable_after, 10);
    assert_int_equal(h->draining, 1);
    assert_string_equal(h->tls_ca, "/etc/wharf/ca.pem");
    assert_string_equal(h->tls_cert, "/etc/wharf/client.pem");
    assert_string_equal(h->tls_key, "/etc/wharf/client.key");
    assert_int_equal(h->n_attributes, 2);
    assert_string_equal(h->attributes[1].key, "instance_type");
    assert_string_equal(h->attributes[1].value, "m5.large");

    assert_int_equal(cfg->n_registries, 1);
    assert_string_equal(cfg->registries[0].server, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    assert_int_equal(cfg->registries[0].ecr, 1);
    assert_null(cfg->registries[0].username);
    assert_null(cfg->registries[0].password);
}

static void check_full_services(const struct wh_config *cfg)
{
    assert_int_equal(cfg->n_services, 2);
    const struct wh_cfg_service *s = wh_config_service(cfg, "web");
    assert_non_null(s);
    assert_string_equal(s->target_group, "web");
    assert_int_equal(s->desired_count, 3);
    assert_string_equal(s->image, "wharf-demo:v1");
    assert_int_equal(s->container_port, 8080);
    assert_int_equal(s->n_command, 0);
    assert_int_equal(s->n_env, 1);
    assert_string_equal(s->env[0].key, "GREETING");
    assert_string_equal(s->env[0].value, "hello");
    assert_int_equal(s->cpu, 256);
    assert_int_equal(s->memory, 128);
    assert_true(s->stop_timeout == 30);
    assert_int_equal(s->pull_policy, WH_PULL_ALWAYS);
    assert_string_equal(s->log_driver, "json-file");
    assert_int_equal(s->n_log_options, 2);
    assert_string_equal(s->log_options[0].key, "max-size");
    assert_string_equal(s->log_options[0].value, "10m");
    assert_string_equal(s->log_options[1].key, "max-file");
    assert_string_equal(s->log_options[1].value, "3");
    assert_int_equal(s->minimum_healthy_percent, 100);
    assert_int_equal(s->maximum_percent, 200);
    assert_true(s->progress_timeout == 900);
    assert_int_equal(s->circuit_breaker_enable, 1);
    assert_int_equal(s->circuit_breaker_rollback, 1);
    assert_int_equal(s->n_strategies, 2);
    assert_string_equal(s->strategies[0].type, "spread");
    assert_string_equal(s->strategies[0].field, "attribute:az");
    assert_string_equal(s->strategies[1].type, "binpack");
    assert_string_equal(s->strategies[1].field, "memory");
    assert_int_equal(s->n_constraints, 1);
    assert_string_equal(s->constraints[0].type, "distinctInstance");
    assert_null(s->constraints[0].expression);
    assert_true(s->health_check_grace_period == 10);

    s = wh_config_service(cfg, "worker");
    assert_ptr_equal(s, &cfg->services[1]);
    assert_null(s->target_group);
    assert_int_equal(s->container_port, 0);
    assert_int_equal(s->n_command, 3);
    assert_int_equal(s->pull_policy, WH_PULL_MISSING);
    assert_null(s->log_driver);
    assert_int_equal(s->minimum_healthy_percent, 0);
    assert_int_equal(s->maximum_percent, 100);
    assert_true(s->progress_timeout == 600);
    assert_null(s->strategies[0].field);
    assert_string_equal(s->constraints[0].type, "memberOf");
    assert_string_equal(s->constraints[0].expression, "attribute:az in [us-east-1a, local-a]");
}

static void check_full_discovery(const struct wh_config *cfg)
{
    const struct wh_cfg_discovery *d = &cfg->discovery;
    assert_int_equal(d->enabled, 1);
    assert_string_equal(d->region, "us-east-1");
    assert_int_equal(d->n_filters, 2);
    assert_string_equal(d->filters[0].name, "tag:wharf-cluster");
    assert_int_equal(d->filters[0].n_values, 1);
    assert_string_equal(d->filters[0].values[0], "prod");
    assert_int_equal(d->filters[1].n_values, 2);
    assert_string_equal(d->filters[1].values[1], "pending");
    assert_true(d->interval == 30);
    assert_int_equal(d->docker_port, 2376);
    assert_int_equal(d->address, WH_EC2_PUBLIC_IP);
    assert_string_equal(d->tls_key, "/etc/wharf/client.key");
    assert_string_equal(d->endpoint, "https://ec2.us-east-1.amazonaws.com");
}

static void check_full_control(const struct wh_config *cfg)
{
    assert_int_equal(cfg->admin.enabled, 1);
    assert_string_equal(cfg->admin.bind.text, "127.0.0.1:9901");
    assert_string_equal(cfg->admin.token_file, "/etc/wharf/admin.token");
    assert_int_equal(cfg->admin.metrics_public, 1);
    assert_string_equal(cfg->state.dir, "/var/lib/wharf");
    assert_null(cfg->state.etcd);
    assert_true(cfg->has_hosts && cfg->has_services && cfg->has_admin && cfg->has_state);
    assert_true(cfg->has_cluster && cfg->has_controller && cfg->has_registries &&
                cfg->has_discovery);
}

static void test_full_example_parses_with_every_feature(void **state)
{
    struct msgs m = {0};
    struct wh_config *cfg =
        wh_config_load_ex(WH_TOP_SRCDIR "/conf/wharfd-full.conf", ALL, collect, &m);
    if (!cfg || m.n) {
        msgs_print(&m);
        fail_msg("wharfd-full.conf did not load");
    }
    assert_string_equal(cfg->path, WH_TOP_SRCDIR "/conf/wharfd-full.conf");
    assert_int_equal(cfg->features, ALL);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->log.level, WH_LOG_INFO);
    assert_string_equal(cfg->log.access_log, "/var/log/wharf/access.log");
    assert_int_equal(cfg->limits.max_header_bytes, 65536);
    assert_int_equal(cfg->limits.max_body_bytes, 10 * 1024 * 1024);
    assert_true(cfg->timeouts.client_header == 10);
    assert_true(cfg->timeouts.upstream_connect == 5);
    assert_true(cfg->timeouts.upstream_response == 60);
    assert_true(cfg->timeouts.tls_handshake == 10);
    assert_true(cfg->timeouts.shutdown_drain == 30);
    check_full_listeners(cfg);
    check_full_groups(cfg);
    check_full_fleet(cfg);
    check_full_services(cfg);
    check_full_discovery(cfg);
    check_full_control(cfg);
    wh_config_free(cfg);
}

static void test_full_example_staged_with_built_features(void **state)
{
    struct msgs m = {0};
    char *text = read_file(WH_TOP_SRCDIR "/conf/wharfd-full.conf");
    struct wh_config *cfg = load(text, STAGED, &m);
    assert_null(cfg);
    assert_int_equal(count(&m, 0), 8);
    assert_true(find(&m, 0, "t.conf:82: cluster: not built yet in this version; ignored") >= 0);
    assert_true(find(&m, 0,
                     "t.conf:83: controller: not built yet in this version; block "
                     "ignored") >= 0);
    assert_true(find(&m, 0, "t.conf:85: hosts: not built yet in this version; block ignored") >= 0);
    assert_true(find(&m, 0, "t.conf:97: registries: not built yet") >= 0);
    assert_true(find(&m, 0, "t.conf:103: services: not built yet") >= 0);
    assert_true(find(&m, 0, "t.conf:130: discovery: not built yet") >= 0);
    assert_true(find(&m, 0, "t.conf:138: admin: not built yet") >= 0);
    assert_true(find(&m, 0, "t.conf:140: state: not built yet") >= 0);
    /* access logs are built: the key is accepted */
    assert_true(find(&m, 1, "t.conf:10:") < 0);
    assert_true(find(&m, 1, "t.conf:20: listeners[http].rules: rules are not supported yet") >= 0);
    assert_true(find(&m, 1,
                     "t.conf:42: listeners[https].protocol: https listeners are not "
                     "supported yet") >= 0);
    assert_true(find(&m, 1, "t.conf:59: target_groups[web].health_check: health checks") >= 0);
    assert_true(find(&m, 1, "t.conf:67: target_groups[api].algorithm: ") >= 0);
    assert_true(find(&m, 1, "t.conf:69: target_groups[api].slow_start: ") >= 0);
    /* sorted by line */
    for (size_t i = 1; i < m.n; i++)
        assert_true(atoi(strchr(m.line[i - 1], ':') + 1) <= atoi(strchr(m.line[i], ':') + 1));
    msgs_free(&m);
    free(text);
}

/* The line of path's text that starts with prefix (1-based), 0 if none. */
static int line_of(const char *path, const char *prefix)
{
    char *text = read_file(path);
    int line = 1, found = 0;
    for (const char *p = text; *p && !found; line++) {
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            found = line;
        p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p);
    }
    free(text);
    return found;
}

#define EXAMPLE WH_TOP_SRCDIR "/conf/wharfd.conf"

static void check_example_fleet(const struct wh_config *cfg)
{
    assert_string_equal(cfg->cluster, "default");
    assert_true(cfg->controller.reconcile_interval == 10);
    assert_int_equal(cfg->n_hosts, 2);
    assert_string_equal(cfg->hosts[0].address_ip, "127.0.0.1");
    assert_true(cfg->hosts[0].ping_interval == 2);
    assert_string_equal(cfg->hosts[1].address_ip, "10.0.1.5");
    assert_int_equal(cfg->has_registries, 1);
    assert_int_equal(cfg->n_registries, 0);
    assert_int_equal(cfg->n_services, 1);
    const struct wh_cfg_service *s = &cfg->services[0];
    assert_string_equal(s->target_group, "web");
    assert_int_equal(s->pull_policy, WH_PULL_MISSING);
    assert_string_equal(s->log_driver, "json-file");
    assert_string_equal(s->log_options[0].key, "max-size");
    assert_true(s->progress_timeout == 600);
    assert_int_equal(s->circuit_breaker_enable, 1);
    assert_int_equal(cfg->discovery.enabled, 1);
    assert_string_equal(cfg->discovery.region, "us-east-1");
    assert_int_equal(cfg->admin.enabled, 1);
}

/* conf/wharfd.conf is CONFIG.md's example: it loads whole with every feature. */
static void test_example_loads_with_every_feature(void **state)
{
    struct msgs m = {0};
    struct wh_config *cfg = wh_config_load_ex(EXAMPLE, ALL, collect, &m);
    if (!cfg || m.n) {
        msgs_print(&m);
        fail_msg("wharfd.conf did not load cleanly");
    }
    assert_int_equal(cfg->n_listeners, 1);
    assert_int_equal(cfg->listeners[0].n_rules, 3);
    assert_string_equal(cfg->listeners[0].bind.text, "0.0.0.0:8080");
    const struct wh_cfg_target_group *g =
        wh_config_group(cfg, cfg->listeners[0].default_action.forward[0].target_group);
    assert_non_null(g);
    assert_string_equal(g->name, "web");
    assert_int_equal(g->n_targets, 2);
    assert_int_equal(port_of(&g->targets[1].addr), 9002);
    assert_non_null(wh_config_group(cfg, "api"));
    assert_non_null(wh_config_group(cfg, "api-canary"));
    check_example_fleet(cfg);
    wh_config_free(cfg);
}

/* What conf/wharfd.conf sets that a feature stages: where (the start of its
 * line), the key, the feature, the warning. */
struct example_stage {
    const char *line_start;
    const char *key;
    unsigned feature;
    unsigned inside; /* the feature of the block it is in (0: top level) */
    const char *message;
};

#define EX_BLOCK "not built yet in this version; block ignored"
#define EX_DEPLOY "not built yet (Rolling deployments issue); accepted, no effect yet"

static const struct example_stage example_stages[] = {
    {"cluster = ", "cluster", WH_FEATURE_SERVICES, 0, "not built yet in this version; ignored"},
    {"controller = ", "controller", WH_FEATURE_SERVICES, 0, EX_BLOCK},
    {"hosts = ", "hosts", WH_FEATURE_FLEET, 0, EX_BLOCK},
    {"registries = ", "registries", WH_FEATURE_FLEET, 0, EX_BLOCK},
    {"services = ", "services", WH_FEATURE_SERVICES, 0, EX_BLOCK},
    {"    deployment = ", "services[web].deployment.progress_timeout", WH_FEATURE_DEPLOYMENTS,
     WH_FEATURE_SERVICES, EX_DEPLOY},
    {"                   circuit_breaker = ", "services[web].deployment.circuit_breaker",
     WH_FEATURE_DEPLOYMENTS, WH_FEATURE_SERVICES, EX_DEPLOY},
    {"discovery = ", "discovery", WH_FEATURE_EC2, 0, EX_BLOCK},
    {"admin = ", "admin", WH_FEATURE_ADMIN, 0, EX_BLOCK},
    {"state = ", "state", WH_FEATURE_STORE, 0, EX_BLOCK},
};

/* With what this version builds: one warning for each staged feature the
 * example sets (the blocks not built yet, at their line), nothing else. */
static void test_example_loads_with_built_features(void **state)
{
    struct msgs m = {0};
    struct wh_config *cfg = wh_config_load(EXAMPLE, collect, &m);
    if (!cfg || count(&m, 1)) {
        msgs_print(&m);
        fail_msg("wharfd.conf: expected only staged-feature warnings");
    }
    assert_int_equal(cfg->features, BUILT);
    size_t n = 0;
    for (size_t i = 0; i < sizeof(example_stages) / sizeof(example_stages[0]); i++) {
        const struct example_stage *e = &example_stages[i];
        if ((BUILT & e->feature) || (e->inside && !(BUILT & e->inside)))
            continue;
        char want[512];
        snprintf(want, sizeof(want), "%s:%d: %s: %s", EXAMPLE, line_of(EXAMPLE, e->line_start),
                 e->key, e->message);
        if (n >= m.n || strcmp(m.line[n], want) != 0) {
            msgs_print(&m);
            fail_msg("expected: %s", want);
        }
        n++;
    }
    assert_int_equal(m.n, n);
    assert_true(n > 0);
    assert_int_equal(cfg->listeners[0].n_rules, 3);
    assert_int_equal(cfg->has_hosts, !!(BUILT & WH_FEATURE_FLEET));
    assert_int_equal(cfg->has_services, !!(BUILT & WH_FEATURE_SERVICES));
    assert_int_equal(cfg->admin.enabled, !!(BUILT & WH_FEATURE_ADMIN));
    msgs_free(&m);
    wh_config_free(cfg);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(MIN, ALL, &m);
    assert_int_equal(m.n, 0);
    assert_string_equal(cfg->path, "t.conf");
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->log.level, WH_LOG_INFO);
    assert_null(cfg->log.access_log);
    assert_int_equal(cfg->limits.max_header_bytes, 64 * 1024);
    assert_int_equal(cfg->limits.max_body_bytes, 0);
    assert_true(cfg->timeouts.client_header == 10);
    assert_true(cfg->timeouts.upstream_connect == 5);
    assert_true(cfg->timeouts.upstream_response == 60);
    assert_true(cfg->timeouts.tls_handshake == 10);
    assert_true(cfg->timeouts.shutdown_drain == 30);

    const struct wh_cfg_listener *l = &cfg->listeners[0];
    assert_int_equal(l->line, 2);
    assert_int_equal(l->protocol, WH_PROTO_HTTP);
    assert_string_equal(l->tls_policy, "tls13-12");
    assert_true(l->idle_timeout == 60);
    assert_null(l->stickiness_secret);
    assert_int_equal(l->n_rules, 0);
    assert_null(l->rules);

    const struct wh_cfg_target_group *g = &cfg->target_groups[0];
    assert_int_equal(g->line, 1);
    assert_int_equal(g->algorithm, WH_ALGO_ROUND_ROBIN);
    assert_true(g->deregistration_delay == 300);
    assert_true(g->slow_start == 0);
    assert_int_equal(g->stickiness_enabled, 0);
    assert_true(g->stickiness_duration == 86400);
    assert_int_equal(g->health_check.enabled, 0);
    assert_string_equal(g->health_check.path, "/health");
    assert_true(g->health_check.interval == 5);
    assert_true(g->health_check.timeout == 2);
    assert_int_equal(g->health_check.healthy_threshold, 2);
    assert_int_equal(g->health_check.unhealthy_threshold, 2);
    assert_string_equal(g->health_check.matcher, "200-399");
    assert_string_equal(g->health_check.host, "");
    assert_int_equal(g->passive.consecutive_connect_failures, 3);
    assert_int_equal(g->passive.consecutive_5xx, 0);
    assert_true(g->passive.eject == 30);
    assert_int_equal(g->targets[0].weight, 1);
    assert_int_equal(g->targets[0].line, 1);

    assert_int_equal(cfg->n_hosts + cfg->n_services + cfg->n_registries, 0);
    assert_string_equal(cfg->cluster, "default");
    assert_true(cfg->controller.reconcile_interval == 10);
    assert_true(cfg->controller.lost_task_grace == 30);
    assert_true(cfg->controller.start_backoff_max == 900);
    assert_int_equal(cfg->discovery.enabled, 0);
    assert_true(cfg->discovery.interval == 30);
    assert_int_equal(cfg->discovery.docker_port, 2376);
    assert_int_equal(cfg->discovery.address, WH_EC2_PRIVATE_IP);
    assert_int_equal(cfg->admin.enabled, 0);
    assert_string_equal(cfg->state.dir, "/var/lib/wharf");
    assert_false(cfg->has_hosts || cfg->has_services || cfg->has_admin || cfg->has_state);
    assert_false(cfg->has_cluster || cfg->has_controller || cfg->has_registries ||
                 cfg->has_discovery);
    wh_config_free(cfg);
}

static void test_empty_file_is_valid(void **state)
{
    expect_ok("", BUILT);
    expect_ok("# nothing\n", ALL);
}

static void test_empty_health_check_block_enables_checks_with_defaults(void **state)
{
    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f("target_groups = ( { name = \"web\"; health_check = { }; } );\n", ALL, &m);
    const struct wh_cfg_health_check *hc = &cfg->target_groups[0].health_check;
    assert_int_equal(hc->enabled, 1);
    assert_string_equal(hc->path, "/health");
    assert_int_equal(hc->port, 0);
    assert_string_equal(hc->matcher, "200-399");
    wh_config_free(cfg);
}

/* ---- sizes and durations ---- */

static uint64_t body_limit(const char *value)
{
    char text[256];
    snprintf(text, sizeof(text), "limits = { max_body_bytes = %s; };\n", value);
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(text, ALL, &m);
    uint64_t v = cfg->limits.max_body_bytes;
    wh_config_free(cfg);
    return v;
}

static void test_size_values(void **state)
{
    assert_int_equal(body_limit("0"), 0);
    assert_int_equal(body_limit("1"), 1);
    assert_int_equal(body_limit("12345"), 12345);
    assert_int_equal(body_limit("\"12345\""), 12345);
    assert_int_equal(body_limit("\"64k\""), 65536);
    assert_int_equal(body_limit("\"64K\""), 65536);
    assert_int_equal(body_limit("\"10m\""), 10485760);
    assert_int_equal(body_limit("\"1g\""), 1073741824);
    assert_int_equal(body_limit("\"16g\""), 17179869184ull);
    assert_int_equal(body_limit("3000000000L"), 3000000000ull);
}

static void test_size_errors(void **state)
{
    const char *bad[] = {"\"64x\"",         "\"k\"",   "\"\"",     "\"-1\"",
                         "\"1kb\"",         "\" 1k\"", "\"1.5k\"", "\"99999999999999999999\"",
                         "\"99999999999g\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "limits = { max_body_bytes = %s; };\n", bad[i]);
        expect_error(text, "t.conf:1: limits.max_body_bytes: \"");
    }
    expect_error("limits = { max_body_bytes = 1.5; };",
                 "t.conf:1: limits.max_body_bytes: expected a size");
    expect_error("limits = { max_body_bytes = -1; };",
                 "t.conf:1: limits.max_body_bytes: must not be negative");
    /* libconfig 1.5 reads this as a negative 32-bit value: say how to write it. */
    expect_error("limits = { max_body_bytes = 3000000000; };",
                 "t.conf:1: limits.max_body_bytes: must not be negative (for values above");
}

static void test_size_ranges(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f("limits = { max_header_bytes = \"1k\"; };", ALL, &m);
    assert_int_equal(cfg->limits.max_header_bytes, 1024);
    wh_config_free(cfg);
    cfg = expect_ok_f("limits = { max_header_bytes = \"1m\"; };", ALL, &m);
    assert_int_equal(cfg->limits.max_header_bytes, 1048576);
    wh_config_free(cfg);
    expect_error("limits = { max_header_bytes = 1023; };",
                 "t.conf:1: limits.max_header_bytes: must be between 1k and 1m");
    expect_error("limits = {\n max_header_bytes = \"2m\"; };",
                 "t.conf:2: limits.max_header_bytes: must be between 1k and 1m");
}

static void test_duration_values(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f("timeouts = { client_header = 0.5; upstream_connect = 3;\n"
                                        "  upstream_response = 3600; shutdown_drain = 0; };\n",
                                        ALL, &m);
    assert_true(cfg->timeouts.client_header == 0.5);
    assert_true(cfg->timeouts.upstream_connect == 3);
    assert_true(cfg->timeouts.upstream_response == 3600);
    assert_true(cfg->timeouts.shutdown_drain == 0);
    wh_config_free(cfg);
    cfg = expect_ok_f("timeouts = { client_header = 0.1; };", ALL, &m);
    assert_true(cfg->timeouts.client_header == 0.1);
    wh_config_free(cfg);
}

static void test_duration_errors(void **state)
{
    expect_error("timeouts = { client_header = \"10s\"; };",
                 "t.conf:1: timeouts.client_header: expected a duration in seconds");
    expect_error("timeouts = { client_header = true; };",
                 "t.conf:1: timeouts.client_header: expected a duration in seconds");
    expect_error("timeouts = { client_header = 0.05; };",
                 "t.conf:1: timeouts.client_header: must be between 0.1 and 3600");
    expect_error("timeouts = { upstream_connect = 0; };",
                 "t.conf:1: timeouts.upstream_connect: must be between 0.1 and 3600");
    expect_error("timeouts = { shutdown_drain = 3600.5; };",
                 "t.conf:1: timeouts.shutdown_drain: must be between 0 and 3600");
    expect_error("timeouts = { tls_handshake = -1; };",
                 "t.conf:1: timeouts.tls_handshake: must be between 0.1 and 3600");
}

/* ---- unknown keys and types ---- */

static void test_unknown_keys_at_every_level(void **state)
{
    expect_error("wrokers = 2;", "t.conf:1: wrokers: unknown key (did you mean workers?)");
    expect_error("log = { level = \"info\"; colour = true; };",
                 "t.conf:1: log.colour: unknown key");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  idle_timeot = 5;\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:3: listeners[http].idle_timeot: unknown key (did you mean idle_timeout?)");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  default_action = { forward = ( { target_group = \"web\";\n"
                        "    wieght = 2; } ); }; } );\n",
                 "t.conf:4: listeners[http].default_action.forward[0].wieght: unknown key");
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  health_check = { path = \"/\"; intervall = 5; }; } );\n",
                 "t.conf:2: target_groups[web].health_check.intervall: unknown key");
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  targets = ( { address = \"127.0.0.1:1\"; port = 2; } ); } );\n",
                 "t.conf:2: target_groups[web].targets[0].port: unknown key");
    expect_error("services = ( { name = \"s\"; task = { image = \"i\";\n"
                 "  deployment = 1; }; } );\n",
                 "t.conf:2: services[s].task.deployment: unknown key");
    expect_error("state = { dir = \"/x\"; etcd_prefix = \"/x/\"; };",
                 "t.conf:1: state.etcd_prefix: unknown key");
}

static void test_unknown_key_in_conditions(void **state)
{
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  rules = ( { priority = 1;\n"
                        "    conditions = { path = \"/a\"; cookie = \"x\"; };\n"
                        "    forward = ( { target_group = \"web\"; } ); } );\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:4: listeners[http].rules[0].conditions.cookie: unknown key");
}

static void test_wrong_types(void **state)
{
    expect_error("workers = \"4\";", "t.conf:1: workers: expected an integer, got a string");
    expect_error("workers = 2.5;", "t.conf:1: workers: expected an integer, got a float");
    expect_error("log = \"info\";", "t.conf:1: log: expected a group { ... }, got a string");
    expect_error("log = { level = 3; };", "t.conf:1: log.level: expected a string");
    expect_error("listeners = { name = \"x\"; };",
                 "t.conf:1: listeners: expected a list ( ... ), got a group");
    expect_error("target_groups = ( { name = \"web\"; targets = 5; } );",
                 "t.conf:1: target_groups[web].targets: expected a list ( ... ), got an integer");
    expect_error("target_groups = ( { name = \"web\"; targets = ( 5 ); } );",
                 "t.conf:1: target_groups[web].targets[0]: expected \"ADDRESS:PORT\"");
    expect_error("target_groups = ( \"web\" );",
                 "t.conf:1: target_groups[0]: expected a group { ... }, got a string");
    expect_error("target_groups = ( { name = \"web\"; stickiness = { enabled = 1; }; } );",
                 "t.conf:1: target_groups[web].stickiness.enabled: expected true or false");
    expect_error("admin = { bind = \"127.0.0.1:9901\"; metrics_public = \"yes\"; };",
                 "t.conf:1: admin.metrics_public: expected true or false");
}

static void test_choices(void **state)
{
    expect_error("log = { level = \"verbose\"; };",
                 "t.conf:1: log.level: \"verbose\" is not one of \"error\", \"warn\", \"info\", "
                 "\"debug\"");
    expect_error("target_groups = ( { name = \"web\"; algorithm = \"random\"; } );",
                 "t.conf:1: target_groups[web].algorithm: \"random\" is not one of");
    struct msgs m;
    struct wh_config *cfg = expect_ok_f("log = { level = \"debug\"; };", ALL, &m);
    assert_int_equal(cfg->log.level, WH_LOG_DEBUG);
    wh_config_free(cfg);
    cfg = expect_ok_f("log = { level = \"error\"; access_log = \"-\"; };", ALL, &m);
    assert_int_equal(cfg->log.level, WH_LOG_ERROR);
    assert_string_equal(cfg->log.access_log, "-");
    wh_config_free(cfg);
}

static void test_empty_strings_rejected(void **state)
{
    expect_error("log = { access_log = \"\"; };", "t.conf:1: log.access_log: must not be empty");
    expect_error("target_groups = ( { name = \"\"; } );",
                 "t.conf:1: target_groups[0].name: must not be empty");
}

/* ---- ranges ---- */

static void test_out_of_range(void **state)
{
    expect_error("workers = 257;", "t.conf:1: workers: must be between 0 and 256");
    expect_error("workers = -1;", "t.conf:1: workers: must be between 0 and 256");
    expect_ok("workers = 256;", ALL);
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  idle_timeout = 0.5;\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:3: listeners[http].idle_timeout: must be between 1 and 4000");
    expect_error("target_groups = ( { name = \"web\"; deregistration_delay = 3601; } );",
                 "t.conf:1: target_groups[web].deregistration_delay: must be between 0 and 3600");
    expect_error("target_groups = ( { name = \"web\"; stickiness = { duration = 0; }; } );",
                 "t.conf:1: target_groups[web].stickiness.duration: must be between 1 and 604800");
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  health_check = { healthy_threshold = 11; }; } );",
                 "t.conf:2: target_groups[web].health_check.healthy_threshold: must be between 1 "
                 "and 10");
    expect_error("target_groups = ( { name = \"web\"; health_check = { interval = 301; }; } );",
                 "t.conf:1: target_groups[web].health_check.interval: must be between 0.1 and 300");
    expect_error("target_groups = ( { name = \"web\"; passive = { eject = 0; }; } );",
                 "t.conf:1: target_groups[web].passive.eject: must be between 1 and 3600");
    expect_error("target_groups = ( { name = \"web\"; passive = { consecutive_5xx = 101; }; } );",
                 "t.conf:1: target_groups[web].passive.consecutive_5xx: must be between 0 and 100");
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  targets = ( { address = \"127.0.0.1:1\"; weight = 1000; } ); } );",
                 "t.conf:2: target_groups[web].targets[0].weight: must be between 1 and 999");
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  targets = ( { address = \"127.0.0.1:1\"; weight = 0; } ); } );",
                 "t.conf:2: target_groups[web].targets[0].weight: must be between 1 and 999");
    expect_error("hosts = ( { id = \"h\"; docker = \"unix:///d\"; address = \"127.0.0.1\"; "
                 "max_concurrent_calls = 65; } );",
                 "t.conf:1: hosts[h].max_concurrent_calls: must be between 1 and 64");
    expect_error("hosts = ( { id = \"h\"; docker = \"unix:///d\"; address = \"127.0.0.1\"; "
                 "call_timeout = 601; } );",
                 "t.conf:1: hosts[h].call_timeout: must be between 1 and 600");
}

static void test_slow_start_zero_or_range(void **state)
{
    expect_ok("target_groups = ( { name = \"web\"; slow_start = 0; } );", ALL);
    expect_ok("target_groups = ( { name = \"web\"; slow_start = 30; } );", ALL);
    expect_ok("target_groups = ( { name = \"web\"; slow_start = 900; } );", ALL);
    expect_error("target_groups = ( { name = \"web\"; slow_start = 10; } );",
                 "t.conf:1: target_groups[web].slow_start: must be 0 (off) or between 30 and 900");
    expect_error("target_groups = ( { name = \"web\"; slow_start = 901; } );",
                 "t.conf:1: target_groups[web].slow_start: must be 0 (off) or between 30 and 900");
}

/* ---- addresses ---- */

static void test_addr_parse(void **state)
{
    struct wh_addr a;
    char err[256];
    assert_int_equal(wh_addr_parse("1.2.3.4:80", &a, err, sizeof(err)), 0);
    assert_string_equal(a.text, "1.2.3.4:80");
    assert_int_equal(a.ss.ss_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(port_of(&a), 80);
    assert_int_equal(wh_addr_parse("[::1]:8080", &a, err, sizeof(err)), 0);
    assert_string_equal(a.text, "[::1]:8080");
    assert_int_equal(a.ss.ss_family, AF_INET6);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_int_equal(wh_addr_parse("0.0.0.0:8080", &a, err, sizeof(err)), 0);
    assert_string_equal(a.text, "0.0.0.0:8080");
    assert_int_equal(wh_addr_parse("[::]:8080", &a, err, sizeof(err)), 0);
    assert_string_equal(a.text, "[::]:8080");
    assert_int_equal(wh_addr_parse("localhost:65535", &a, err, sizeof(err)), 0);
    assert_int_equal(port_of(&a), 65535);
    assert_int_equal(wh_addr_parse("127.0.0.1:1", &a, err, sizeof(err)), 0);
}

static void test_addr_parse_errors(void **state)
{
    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"127.0.0.1", "has no port"},
        {"127.0.0.1:", "the port must be a number from 1 to 65535"},
        {"127.0.0.1:0", "the port must be a number from 1 to 65535"},
        {"127.0.0.1:65536", "the port must be a number from 1 to 65535"},
        {"127.0.0.1:80x", "the port must be a number from 1 to 65535"},
        {"127.0.0.1:-1", "the port must be a number from 1 to 65535"},
        {":80", "missing host"},
        {"::1:80", "write an IPv6 address in brackets"},
        {"[::1]80", "write an IPv6 address as [ADDRESS]:PORT"},
        {"[::1", "write an IPv6 address as [ADDRESS]:PORT"},
        {"[1.2.3.4]:80", "not an IPv6 address"},
        {"[nothing]:80", "not an IPv6 address"},
        {"nonexistent.invalid:80", "cannot resolve \"nonexistent.invalid\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wh_addr a;
        char err[256] = "";
        assert_int_equal(wh_addr_parse(bad[i].in, &a, err, sizeof(err)), -1);
        if (!strstr(err, bad[i].msg))
            fail_msg("%s: got \"%s\", expected \"%s\"", bad[i].in, err, bad[i].msg);
    }
}

static void test_bad_addresses_in_config(void **state)
{
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  targets = ( \"127.0.0.1:9001\",\n"
                 "              \"nonexistent.invalid:80\" ); } );\n",
                 "t.conf:3: target_groups[web].targets[1]: \"nonexistent.invalid:80\": cannot "
                 "resolve");
    expect_error("target_groups = ( { name = \"web\"; targets = ( \"127.0.0.1\" ); } );",
                 "t.conf:1: target_groups[web].targets[0]: \"127.0.0.1\" has no port");
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  targets = ( { address = \"127.0.0.1:0\"; } ); } );",
                 "t.conf:2: target_groups[web].targets[0].address: \"127.0.0.1:0\": the port");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"8080\";\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:2: listeners[http].bind: \"8080\" has no port");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = 8080;\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:2: listeners[http].bind: expected a string, got an integer");
}

static void test_bind_any_address(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        TG_WEB "listeners = (\n"
               "  { name = \"a\"; bind = \"0.0.0.0:8080\";\n"
               "    default_action = { forward = ( { target_group = \"web\"; } ); }; },\n"
               "  { name = \"b\"; bind = \"[::]:8080\";\n"
               "    default_action = { forward = ( { target_group = \"web\"; } ); }; }\n"
               ");\n",
        BUILT, &m);
    assert_string_equal(cfg->listeners[0].bind.text, "0.0.0.0:8080");
    assert_string_equal(cfg->listeners[1].bind.text, "[::]:8080");
    assert_int_equal(cfg->listeners[1].line, 5);
    wh_config_free(cfg);
}

/* ---- duplicates ---- */

static void test_duplicate_listener_names_and_binds(void **state)
{
    expect_errors(TG_WEB "listeners = (\n"
                         "  { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                         "    default_action = { forward = ( { target_group = \"web\"; } ); }; },\n"
                         "  { name = \"http\"; bind = \"127.0.0.1:8081\";\n"
                         "    default_action = { forward = ( { target_group = \"web\"; } ); }; },\n"
                         "  { name = \"other\"; bind = \"127.0.0.1:8080\";\n"
                         "    default_action = { forward = ( { target_group = \"web\"; } ); }; }\n"
                         ");\n",
                  ALL,
                  "t.conf:5: listeners[http].name: duplicate listener name \"http\" (first at "
                  "line 3)",
                  "t.conf:7: listeners[other].bind: 127.0.0.1:8080 is already bound by listener "
                  "\"http\" (line 3)");
}

static void test_duplicate_group_names(void **state)
{
    expect_error("target_groups = (\n"
                 "  { name = \"web\"; },\n"
                 "  { name = \"api\"; },\n"
                 "  { name = \"web\"; }\n"
                 ");\n",
                 "t.conf:4: target_groups[web].name: duplicate target group name \"web\" (first "
                 "at line 2)");
}

static void test_duplicate_targets(void **state)
{
    expect_error("target_groups = ( { name = \"web\"; targets = (\n"
                 "  \"127.0.0.1:9001\",\n"
                 "  { address = \"127.0.0.1:9001\"; weight = 2; } ); } );\n",
                 "t.conf:3: target_groups[web].targets[1]: duplicate target 127.0.0.1:9001 (also "
                 "at line 2)");
}

static void test_duplicate_host_ids_and_service_names(void **state)
{
    expect_errors("hosts = (\n"
                  "  { id = \"h\"; docker = \"unix:///a\"; address = \"127.0.0.1\"; },\n"
                  "  { id = \"h\"; docker = \"unix:///b\"; address = \"127.0.0.1\"; } );\n"
                  "services = (\n"
                  "  { name = \"s\"; task = { image = \"i\"; }; },\n"
                  "  { name = \"s\"; task = { image = \"i\"; }; } );\n",
                  ALL, "t.conf:3: hosts[h].id: duplicate host id \"h\" (first at line 2)",
                  "t.conf:6: services[s].name: duplicate service name \"s\" (first at line 5)");
}

static void test_duplicate_rule_priorities(void **state)
{
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  rules = (\n"
                        "    { priority = 5; conditions = { path = \"/a\"; };\n"
                        "      forward = ( { target_group = \"web\"; } ); },\n"
                        "    { priority = 5; conditions = { path = \"/b\"; };\n"
                        "      forward = ( { target_group = \"web\"; } ); } );\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:6: listeners[http].rules[1].priority: duplicate priority 5 in this "
                 "listener (also at line 4)");
}

static void test_same_priority_in_two_listeners_is_fine(void **state)
{
    expect_ok(TG_WEB "listeners = (\n"
                     "  { name = \"a\"; bind = \"127.0.0.1:8080\";\n"
                     "    rules = ( { priority = 1; conditions = { path = \"/\"; };\n"
                     "                fixed_response = { status = 200; }; } );\n"
                     "    default_action = { forward = ( { target_group = \"web\"; } ); }; },\n"
                     "  { name = \"b\"; bind = \"127.0.0.1:8081\";\n"
                     "    rules = ( { priority = 1; conditions = { path = \"/\"; };\n"
                     "                fixed_response = { status = 200; }; } );\n"
                     "    default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
              ALL);
}

/* ---- references ---- */

static void test_dangling_forward(void **state)
{
    expect_error(TG_WEB
                 "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                 "  default_action = { forward = ( { target_group = \"nope\"; } ); }; } );\n",
                 "t.conf:3: listeners[http].default_action.forward[0].target_group: no target "
                 "group is named \"nope\"");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  rules = ( { priority = 1; conditions = { path = \"/\"; };\n"
                        "    forward = ( { target_group = \"web\"; weight = 1; },\n"
                        "                { target_group = \"api\"; weight = 1; } ); } );\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:5: listeners[http].rules[0].forward[1].target_group: no target group is "
                 "named \"api\"");
}

static void test_groups_may_follow_listeners_in_the_file(void **state)
{
    expect_ok(LS_HTTP TG_WEB, BUILT);
}

static void test_dangling_service_target_group(void **state)
{
    expect_error(TG_WEB "services = ( { name = \"s\"; target_group = \"api\";\n"
                        "  task = { image = \"i\"; container_port = 80; }; } );\n",
                 "t.conf:2: services[s].target_group: no target group is named \"api\"");
}

/* ---- required keys ---- */

static void test_missing_required_keys(void **state)
{
    expect_errors(TG_WEB "listeners = (\n"
                         "  { bind = \"127.0.0.1:8080\";\n"
                         "    default_action = { forward = ( { target_group = \"web\"; } ); }; },\n"
                         "  { name = \"b\";\n"
                         "    default_action = { forward = ( { target_group = \"web\"; } ); }; },\n"
                         "  { name = \"c\"; bind = \"127.0.0.1:8082\"; }\n"
                         ");\n",
                  ALL, "t.conf:3: listeners[0].name: required key is missing",
                  "t.conf:5: listeners[b].bind: required key is missing",
                  "t.conf:7: listeners[c].default_action: required key is missing");
    expect_error("target_groups = ( { targets = ( ); } );",
                 "t.conf:1: target_groups[0].name: required key is missing");
    expect_error("hosts = ( { id = \"h\"; } );",
                 "t.conf:1: hosts[h].docker: required key is missing");
    expect_error("services = ( { name = \"s\"; } );",
                 "t.conf:1: services[s].task: required key is missing");
    expect_error("admin = { token_file = \"/t\"; };",
                 "t.conf:1: admin.bind: required key is missing");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  default_action = { forward = ( { weight = 1; } ); }; } );\n",
                 "t.conf:3: listeners[http].default_action.forward[0].target_group: required key "
                 "is missing");
}

static void test_action_required_and_unique(void **state)
{
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  default_action = { }; } );\n",
                 "t.conf:3: listeners[http].default_action: needs an action: forward, redirect or "
                 "fixed_response");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } );\n"
                        "    fixed_response = { status = 404; }; }; } );\n",
                 "t.conf:4: listeners[http].default_action.fixed_response: one action only: this "
                 "also has forward");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  default_action = { fixed_response = { status = 404; };\n"
                        "    stickiness = 60; }; } );\n",
                 "t.conf:4: listeners[http].default_action.stickiness: applies only to a forward "
                 "action");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                        "  default_action = { priority = 1;\n"
                        "    forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:3: listeners[http].default_action.priority: unknown key");
}

/* ---- health checks ---- */

static void test_health_check_timeout_below_interval(void **state)
{
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  health_check = { interval = 5; timeout = 5; }; } );\n",
                 "t.conf:2: target_groups[web].health_check.timeout: must be below interval");
    expect_error("target_groups = ( { name = \"web\";\n"
                 "  health_check = { interval = 1; }; } );\n",
                 "t.conf:2: target_groups[web].health_check.timeout: must be below interval (2 s "
                 "is not below 1 s)");
    expect_ok("target_groups = ( { name = \"web\"; health_check = { interval = 1; timeout = 0.5; "
              "}; } );",
              ALL);
}

static void test_health_check_port(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        "target_groups = ( { name = \"web\"; health_check = { port = 8081; }; } );", ALL, &m);
    assert_int_equal(cfg->target_groups[0].health_check.port, 8081);
    wh_config_free(cfg);
    expect_error("target_groups = ( { name = \"web\"; health_check = { port = \"8081\"; }; } );",
                 "t.conf:1: target_groups[web].health_check.port: must be \"traffic-port\" or a "
                 "port number");
    expect_error("target_groups = ( { name = \"web\"; health_check = { port = 0; }; } );",
                 "t.conf:1: target_groups[web].health_check.port: must be \"traffic-port\"");
    expect_error("target_groups = ( { name = \"web\"; health_check = { path = \"health\"; }; } );",
                 "t.conf:1: target_groups[web].health_check.path: \"health\" must start with /");
}

static void test_matcher_syntax(void **state)
{
    const char *good[] = {"200", "200,302", "200-399", "200,300-399,404", "100-599", "599"};
    const char *bad[] = {"99",   "600",  "200-", "-200",     "abc",         "399-200",
                         "2000", "200,", ",200", "200 ,302", "200-300-400", "20"};
    char text[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text),
                 "target_groups = ( { name = \"web\"; health_check = { matcher = \"%s\"; }; } );",
                 good[i]);
        struct msgs m;
        struct wh_config *cfg = expect_ok_f(text, ALL, &m);
        assert_string_equal(cfg->target_groups[0].health_check.matcher, good[i]);
        wh_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 "target_groups = ( { name = \"web\"; health_check = { matcher = \"%s\"; }; } );",
                 bad[i]);
        expect_error(text, "t.conf:1: target_groups[web].health_check.matcher: \"");
    }
}

/* ---- rules and actions ---- */

#define RULE_LISTENER(rules)                                                                       \
    "target_groups = ( { name = \"web\"; }, { name = \"api\"; } );\n"                              \
    "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"                                \
    "  rules = (\n" rules "  );\n"                                                                 \
    "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n"

static void test_rules_sorted_by_priority(void **state)
{
    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f(RULE_LISTENER("    { priority = 30; conditions = { path = \"/c\"; };\n"
                                  "      fixed_response = { status = 200; }; },\n"
                                  "    { priority = 1; conditions = { path = \"/a\"; };\n"
                                  "      forward = { target_group = \"api\"; }; },\n"
                                  "    { priority = 20; conditions = { host = \"b.example\"; };\n"
                                  "      redirect = { status = 302; location = \"/x\"; }; }\n"),
                    ALL, &m);
    const struct wh_cfg_listener *l = &cfg->listeners[0];
    assert_int_equal(l->n_rules, 3);
    assert_int_equal(l->rules[0].priority, 1);
    assert_int_equal(l->rules[0].line, 6);
    assert_int_equal(l->rules[0].action.n_forward, 1); /* a lone group counts as a list */
    assert_string_equal(l->rules[0].action.forward[0].target_group, "api");
    assert_int_equal(l->rules[1].priority, 20);
    assert_int_equal(l->rules[1].action.type, WH_ACTION_REDIRECT);
    assert_int_equal(l->rules[1].action.redirect_status, 302);
    assert_string_equal(l->rules[1].conditions.host[0], "b.example");
    assert_int_equal(l->rules[2].priority, 30);
    assert_int_equal(l->rules[2].action.type, WH_ACTION_FIXED);
    assert_string_equal(l->rules[2].action.content_type, "text/plain");
    assert_string_equal(l->rules[2].action.body, "");
    wh_config_free(cfg);
}

static void test_rule_priority_range(void **state)
{
    expect_error(RULE_LISTENER("    { priority = 0; conditions = { path = \"/\"; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:4: listeners[http].rules[0].priority: must be between 1 and 50000");
    expect_error(RULE_LISTENER("    { conditions = { path = \"/\"; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:4: listeners[http].rules[0].priority: required key is missing");
}

static void test_redirect_and_fixed_status(void **state)
{
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      redirect = { status = 303; location = \"/x\"; }; }\n"),
                 "t.conf:5: listeners[http].rules[0].redirect.status: must be 301 or 302");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      redirect = { status = 301; }; }\n"),
                 "t.conf:5: listeners[http].rules[0].redirect.location: required key is missing");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      redirect = { status = 301; location = \"#{uri}\"; }; }\n"),
                 "t.conf:5: listeners[http].rules[0].redirect.location: unknown placeholder");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      fixed_response = { status = 600; }; }\n"),
                 "t.conf:5: listeners[http].rules[0].fixed_response.status: must be between 200 "
                 "and 599");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      fixed_response = { status = 199; }; }\n"),
                 "t.conf:5: listeners[http].rules[0].fixed_response.status: must be between 200 "
                 "and 599");
    expect_ok(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                            "      fixed_response = { status = 599; body = \"x\"; }; }\n"),
              ALL);
}

static void test_forward_weights(void **state)
{
    expect_error(
        RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                      "      forward = ( { target_group = \"web\"; weight = 1000; } ); }\n"),
        "t.conf:5: listeners[http].rules[0].forward[0].weight: must be between 0 and 999");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      forward = ( { target_group = \"web\"; weight = 0; },\n"
                               "                  { target_group = \"api\"; weight = 0; } ); }\n"),
                 "t.conf:5: listeners[http].rules[0].forward: the weights add up to 0");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      forward = ( { target_group = \"web\"; },\n"
                               "                  { target_group = \"web\"; } ); }\n"),
                 "t.conf:6: listeners[http].rules[0].forward[1].target_group: \"web\" is listed "
                 "twice");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                               "      forward = ( ); }\n"),
                 "t.conf:5: listeners[http].rules[0].forward: needs 1 to 5 target groups, has 0");
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                      "      forward = ( { target_group = \"web\"; weight = 0; },\n"
                      "                  { target_group = \"api\"; weight = 999; } ); }\n"),
        ALL, &m);
    assert_int_equal(cfg->listeners[0].rules[0].action.forward[0].weight, 0);
    assert_int_equal(cfg->listeners[0].rules[0].action.forward[1].weight, 999);
    assert_int_equal(cfg->listeners[0].rules[0].action.line, 5);
    wh_config_free(cfg);
}

static void test_forward_entry_without_group_then_another(void **state)
{
    expect_errors(RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                                "      forward = ( { weight = 1; }, \"api\",\n"
                                "                  { target_group = \"web\"; } ); }\n"),
                  ALL, "t.conf:5: listeners[http].rules[0].forward[0].target_group: required",
                  "t.conf:5: listeners[http].rules[0].forward[1]: expected a group");
}

static void test_forward_at_most_five_groups(void **state)
{
    expect_error("target_groups = ( { name = \"a\"; }, { name = \"b\"; }, { name = \"c\"; },\n"
                 "  { name = \"d\"; }, { name = \"e\"; }, { name = \"f\"; } );\n"
                 "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                 "  default_action = { forward = ( { target_group = \"a\"; }, { target_group = "
                 "\"b\"; },\n"
                 "    { target_group = \"c\"; }, { target_group = \"d\"; }, { target_group = "
                 "\"e\"; },\n"
                 "    { target_group = \"f\"; } ); }; } );\n",
                 "t.conf:4: listeners[http].default_action.forward: needs 1 to 5 target groups, "
                 "has 6");
}

static void test_condition_values(void **state)
{
    expect_error(RULE_LISTENER("    { priority = 1;\n"
                               "      conditions = { path = [ \"/1\", \"/2\", \"/3\", \"/4\", "
                               "\"/5\", \"/6\" ]; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:5: listeners[http].rules[0].conditions.path: has 6 values; at most 5");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:4: listeners[http].rules[0].conditions: needs at least one condition");
    expect_error(RULE_LISTENER("    { priority = 1;\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:4: listeners[http].rules[0].conditions: required key is missing");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { path = [ \"v1\" ]; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:4: listeners[http].rules[0].conditions.path[0]: \"v1\" must start with /");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { method = [ \"GET POST\" ]; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:4: listeners[http].rules[0].conditions.method[0]: \"GET POST\" is not an "
                 "HTTP token");
    expect_error(RULE_LISTENER("    { priority = 1; conditions = { host = [ 5 ]; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:4: listeners[http].rules[0].conditions.host[0]: expected a string");
    expect_error(RULE_LISTENER("    { priority = 1;\n"
                               "      conditions = { header = { name = \"X-A\"; }; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 "t.conf:5: listeners[http].rules[0].conditions.header.values: required key is "
                 "missing");
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        RULE_LISTENER(
            "    { priority = 1;\n"
            "      conditions = { path = \"*.png\"; query = { values = [ \"a\", \"b\" ]; };\n"
            "        host = [ \"a.example\", \"b.example\", \"*.c\", \"d?\", \"e\" ]; };\n"
            "      fixed_response = { status = 200; }; }\n"),
        ALL, &m);
    const struct wh_cfg_conditions *c = &cfg->listeners[0].rules[0].conditions;
    assert_int_equal(c->n_path, 1);
    assert_string_equal(c->path[0], "*.png");
    assert_non_null(c->query);
    assert_null(c->query->key);
    assert_int_equal(c->query->n_values, 2);
    assert_int_equal(c->n_host, 5);
    wh_config_free(cfg);
}

static void test_source_ip_cidrs(void **state)
{
    const char *good[] = {"192.0.2.0/24",  "10.0.0.0/8", "0.0.0.0/0", "192.0.2.7/32",
                          "2001:db8::/32", "::1/128",    "::/0"};
    const char *bad[] = {"192.0.2.0",      "192.0.2.0/33", "192.0.2.0/",   "x/24",
                         "2001:db8::/129", "192.0.2/24",   "192.0.2.0/2a", "192.0.2.0/024"};
    char text[512];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text),
                 RULE_LISTENER("    { priority = 1; conditions = { source_ip = [ \"%s\" ]; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 good[i]);
        expect_ok(text, ALL);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 RULE_LISTENER("    { priority = 1; conditions = { source_ip = [ \"%s\" ]; };\n"
                               "      fixed_response = { status = 200; }; }\n"),
                 bad[i]);
        expect_error(text, "t.conf:4: listeners[http].rules[0].conditions.source_ip[0]: \"");
    }
}

/* ---- listeners and TLS ---- */

static void test_https_needs_certificates(void **state)
{
    expect_error(TG_WEB "listeners = ( { name = \"s\"; bind = \"127.0.0.1:8443\"; protocol = "
                        "\"https\";\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:2: listeners[s].certificates: an https listener needs at least one "
                 "certificate");
    expect_error(TG_WEB "listeners = ( { name = \"p\"; bind = \"127.0.0.1:8080\";\n"
                        "  certificates = ( { cert = \"/a.pem\"; key = \"/a.key\"; } );\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:3: listeners[p].certificates: only for https listeners");
    expect_error(TG_WEB "listeners = ( { name = \"s\"; bind = \"127.0.0.1:8443\"; protocol = "
                        "\"https\";\n"
                        "  certificates = ( { cert = \"/a.pem\"; } );\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:3: listeners[s].certificates[0].key: required key is missing");
    expect_error(TG_WEB "listeners = ( { name = \"s\"; bind = \"127.0.0.1:8443\"; protocol = "
                        "\"https\";\n"
                        "  certificates = ( { cert = \"/a.pem\"; key = \"/a.key\"; } );\n"
                        "  tls_policy = \"tls12\";\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:4: listeners[s].tls_policy: \"tls12\" is not one of \"tls13-12\", "
                 "\"tls13\"");
    expect_error(TG_WEB "listeners = ( { name = \"s\"; bind = \"127.0.0.1:8080\";\n"
                        "  stickiness_secret = \"short\";\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
                 "t.conf:3: listeners[s].stickiness_secret: must be at least 16 characters long");
}

static void test_names(void **state)
{
    expect_error("target_groups = ( { name = \"my web\"; } );",
                 "t.conf:1: target_groups[my web].name: \"my web\": a name may hold only letters");
    expect_error("target_groups = ( { name = "
                 "\"a123456789012345678901234567890123456789012345678901234567890123\"; } );",
                 "t.conf:1: target_groups[a1234567890");
    expect_ok("target_groups = ( { name = "
              "\"a12345678901234567890123456789012345678901234567890123456789012\"; } );",
              ALL);
    expect_ok("target_groups = ( { name = \"Web_1.v-2\"; } );", ALL);
}

/* ---- admin, state ---- */

static void test_admin_validation(void **state)
{
    expect_error("admin = { bind = \"0.0.0.0:9901\"; };",
                 "t.conf:1: admin.bind: 0.0.0.0:9901: the admin listener must bind a loopback");
    expect_error(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:9901\";\n"
                        "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n"
                        "admin = { bind = \"127.0.0.1:9901\"; };\n",
                 "t.conf:4: admin.bind: 127.0.0.1:9901 is already bound by listener \"http\"");
    struct msgs m;
    struct wh_config *cfg = expect_ok_f("admin = { bind = \"[::1]:9901\"; };", ALL, &m);
    assert_int_equal(cfg->admin.enabled, 1);
    assert_null(cfg->admin.token_file);
    assert_int_equal(cfg->admin.metrics_public, 0);
    wh_config_free(cfg);
}

static void test_state_validation(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        "state = { etcd = [ \"http://127.0.0.1:2379\", \"https://e2:2379\" ]; prefix = \"/w/\"; "
        "};",
        ALL, &m);
    assert_null(cfg->state.dir);
    assert_int_equal(cfg->state.n_etcd, 2);
    assert_string_equal(cfg->state.etcd[1], "https://e2:2379");
    assert_string_equal(cfg->state.prefix, "/w/");
    wh_config_free(cfg);
    expect_error("state = { dir = \"/a\"; etcd = [ \"http://e:2379\" ]; };",
                 "t.conf:1: state.dir: choose one store");
    expect_error("state = { dir = \"relative\"; };",
                 "t.conf:1: state.dir: \"relative\" is not an absolute path");
    expect_error("state = { prefix = \"/w/\"; };",
                 "t.conf:1: state.prefix: only for the etcd store");
    expect_error("state = { etcd = [ \"e:2379\" ]; };",
                 "t.conf:1: state.etcd[0]: \"e:2379\" is not an etcd endpoint");
    expect_error("state = { etcd = [ ]; };", "t.conf:1: state.etcd: needs at least one endpoint");
}

/* ---- many errors at once ---- */

static void test_all_errors_reported_in_line_order(void **state)
{
    struct msgs m;
    const char *text = "workers = 1000;\n"                                           /* 1 */
                       "log = { level = \"loud\"; };\n"                              /* 2 */
                       "limits = { max_header_bytes = \"1x\"; };\n"                  /* 3 */
                       "target_groups = ( { name = \"web\";\n"                       /* 4 */
                       "  targets = ( \"127.0.0.1\" );\n"                            /* 5 */
                       "  health_check = { matcher = \"700\"; }; } );\n"             /* 6 */
                       "listeners = ( { name = \"http\"; bind = \"127.0.0.1:80\";\n" /* 7 */
                       "  default_action = { forward = ( { target_group = \"x\"; } ); };\n"
                       "  bogus = 1; } );\n"; /* 9 */
    assert_null(load(text, ALL, &m));
    const char *want[] = {
        "t.conf:1: workers: ",
        "t.conf:2: log.level: ",
        "t.conf:3: limits.max_header_bytes: ",
        "t.conf:5: target_groups[web].targets[0]: ",
        "t.conf:6: target_groups[web].health_check.matcher: ",
        "t.conf:8: listeners[http].default_action.forward[0].target_group: ",
        "t.conf:9: listeners[http].bogus: unknown key",
    };
    if (m.n != sizeof(want) / sizeof(want[0]))
        msgs_print(&m);
    assert_int_equal(m.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < m.n; i++) {
        assert_int_equal(m.is_error[i], 1);
        if (strncmp(m.line[i], want[i], strlen(want[i])) != 0)
            fail_msg("message %zu: \"%s\", expected \"%s...\"", i, m.line[i], want[i]);
    }
    msgs_free(&m);
}

static void test_syntax_error(void **state)
{
    struct msgs m;
    assert_null(load("workers = 1;\nlog = { level = ; };\n", ALL, &m));
    assert_int_equal(m.n, 1);
    assert_int_equal(m.is_error[0], 1);
    assert_true(strncmp(m.line[0], "t.conf:2: syntax error: ", 24) == 0);
    msgs_free(&m);
    assert_null(load("a = 1;\na = 2;\n", ALL, &m));
    assert_string_equal(m.line[0], "t.conf:2: syntax error: duplicate setting name");
    msgs_free(&m);
}

static void test_missing_file(void **state)
{
    struct msgs m = {0};
    assert_null(wh_config_load("/nonexistent/wharfd.conf", collect, &m));
    assert_int_equal(m.n, 1);
    assert_string_equal(m.line[0], "/nonexistent/wharfd.conf: cannot open: No such file or "
                                   "directory");
    msgs_free(&m);
    assert_null(wh_config_load("/nonexistent/wharfd.conf", NULL, NULL));
}

/* path gets text (a test's own file). */
static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_include_relative_to_file(void **state)
{
    char dir[] = "/tmp/wharf-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char main_path[128], inc_path[128];
    snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
    snprintf(inc_path, sizeof(inc_path), "%s/groups.conf", dir);
    write_text(inc_path, "target_groups = ( { name = \"web\";\n  slow_start = 5; } );\n");
    write_text(main_path, "workers = 2;\n@include \"groups.conf\"\n");
    struct msgs m = {0};
    assert_null(wh_config_load_ex(main_path, ALL, collect, &m));
    assert_int_equal(m.n, 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:2: target_groups[web].slow_start: must be 0 (off)", inc_path);
    if (strncmp(m.line[0], want, strlen(want)) != 0)
        fail_msg("got \"%s\"", m.line[0]);
    msgs_free(&m);

    write_text(inc_path, "# groups\nlog = { level = ; };\n");
    assert_null(wh_config_load_ex(main_path, ALL, collect, &m));
    assert_int_equal(m.n, 1);
    snprintf(want, sizeof(want), "%s:2: syntax error: ", inc_path);
    if (strncmp(m.line[0], want, strlen(want)) != 0)
        fail_msg("got \"%s\"", m.line[0]);
    msgs_free(&m);
    unlink(inc_path);
    unlink(main_path);
    rmdir(dir);
}

/* An absolute @include path names the file itself (libconfig 1.5 would
 * put the main file's directory in front of it), in use and in messages. */
static void test_include_absolute_path(void **state)
{
    char dir[] = "/tmp/wharf-test-config-XXXXXX", other[] = "/tmp/wharf-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_non_null(mkdtemp(other));
    char main_path[128], inc_path[128], text[256];
    snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
    snprintf(inc_path, sizeof(inc_path), "%s/groups.conf", other);
    write_text(inc_path, "target_groups = ( { name = \"web\";\n  slow_start = 5; } );\n");
    snprintf(text, sizeof(text), "workers = 2;\n  @include \"%s\"\n", inc_path);
    write_text(main_path, text);
    struct msgs m = {0};
    assert_null(wh_config_load_ex(main_path, ALL, collect, &m));
    assert_int_equal(m.n, 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:2: target_groups[web].slow_start: must be 0 (off)", inc_path);
    if (strncmp(m.line[0], want, strlen(want)) != 0)
        fail_msg("got \"%s\"", m.line[0]);
    msgs_free(&m);
    write_text(inc_path, "target_groups = ( { name = \"web\"; } );\n");
    struct wh_config *cfg = wh_config_load_ex(main_path, ALL, collect, &m);
    assert_non_null(cfg);
    assert_int_equal(cfg->n_target_groups, 1);
    assert_int_equal(cfg->workers, 2);
    wh_config_free(cfg);
    msgs_free(&m);
    unlink(inc_path);
    unlink(main_path);
    rmdir(dir);
    rmdir(other);
}

/* The parse context's order: the main file's messages first, then each
 * included file's, by line; messages on one line in the order found. */
static void test_messages_main_file_first_then_by_line(void **state)
{
    char dir[] = "/tmp/wharf-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char main_path[128], inc_path[128];
    snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
    snprintf(inc_path, sizeof(inc_path), "%s/groups.conf", dir);
    FILE *f = fopen(inc_path, "w");
    assert_non_null(f);
    fputs("target_groups = ( { name = \"web\";\n  slow_start = 5; } );\n", f);
    fclose(f);
    f = fopen(main_path, "w");
    assert_non_null(f);
    fputs("@include \"groups.conf\"\nworkers = 999;\nlisteners = ( { } );\n", f);
    fclose(f);
    struct msgs m = {0};
    assert_null(wh_config_load_ex(main_path, ALL, collect, &m));
    char want[5][256];
    snprintf(want[0], sizeof(want[0]), "%s:2: workers: must be between 0 and 256", main_path);
    snprintf(want[1], sizeof(want[1]), "%s:3: listeners[0].name: required key is missing",
             main_path);
    snprintf(want[2], sizeof(want[2]), "%s:3: listeners[0].bind: required key is missing",
             main_path);
    snprintf(want[3], sizeof(want[3]), "%s:3: listeners[0].default_action: required key is missing",
             main_path);
    snprintf(want[4], sizeof(want[4]), "%s:2: target_groups[web].slow_start: must be 0 (off)",
             inc_path);
    if (m.n != 5)
        msgs_print(&m);
    assert_int_equal(m.n, 5);
    for (size_t i = 0; i < 5; i++)
        if (strncmp(m.line[i], want[i], strlen(want[i])) != 0)
            fail_msg("message %zu: \"%s\", expected \"%s...\"", i, m.line[i], want[i]);
    msgs_free(&m);
    unlink(inc_path);
    unlink(main_path);
    rmdir(dir);
}

/* ---- staging ---- */

static void test_staging_unbuilt_block_warns_and_is_dropped(void **state)
{
    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f(MIN "services = ( { name = \"s\"; target_group = \"web\";\n"
                        "  task = { image = \"i\"; container_port = 80; }; } );\n"
                        "admin = { bind = \"127.0.0.1:9901\"; };\n",
                    STAGED, &m);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.is_error[0], 0);
    assert_string_equal(m.line[0], "t.conf:4: services: not built yet in this version; block "
                                   "ignored");
    assert_string_equal(m.line[1], "t.conf:6: admin: not built yet in this version; block "
                                   "ignored");
    assert_int_equal(cfg->has_services, 0);
    assert_int_equal(cfg->n_services, 0);
    assert_null(cfg->services);
    assert_int_equal(cfg->has_admin, 0);
    assert_int_equal(cfg->admin.enabled, 0);
    msgs_free(&m);
    wh_config_free(cfg);

    cfg = expect_ok_f(
        MIN "hosts = ( { id = \"h\"; docker = \"unix:///d\"; address = \"127.0.0.1\"; } );\n"
            "state = { etcd = [ \"http://e:2379\" ]; };\n",
        ALL & ~(WH_FEATURE_FLEET | WH_FEATURE_STORE), &m);
    assert_int_equal(count(&m, 0), 2);
    assert_int_equal(cfg->has_hosts + cfg->has_state, 0);
    assert_null(cfg->hosts);
    assert_null(cfg->state.etcd);
    assert_string_equal(cfg->state.dir, "/var/lib/wharf");
    msgs_free(&m);
    wh_config_free(cfg);
}

static void test_staging_unbuilt_block_is_still_validated(void **state)
{
    struct msgs m;
    assert_null(load(MIN "services = ( { name = \"s\"; target_group = \"nope\";\n"
                         "  task = { image = \"i\"; container_port = 80; }; } );\n",
                     ALL & ~WH_FEATURE_SERVICES, &m));
    assert_int_equal(m.n, 2);
    assert_true(find(&m, 0, "t.conf:4: services: not built yet") >= 0);
    assert_true(find(&m, 1, "t.conf:4: services[s].target_group: no target group is named") >= 0);
    msgs_free(&m);
}

static void test_staging_each_flag(void **state)
{
    static const struct {
        unsigned feature;
        const char *text, *error;
    } cases[] = {
        {WH_FEATURE_ACCESS_LOG, MIN "log = { access_log = \"-\"; };\n",
         "t.conf:4: log.access_log: access logs are not supported yet in this version"},
        {WH_FEATURE_TLS, MIN "timeouts = { tls_handshake = 5; };\n",
         "t.conf:4: timeouts.tls_handshake: TLS is not supported yet"},
        {WH_FEATURE_RULES,
         RULE_LISTENER("    { priority = 1; conditions = { path = \"/\"; };\n"
                       "      forward = ( { target_group = \"api\"; } ); }\n"),
         "t.conf:3: listeners[http].rules: rules are not supported yet"},
        {WH_FEATURE_RULES,
         "target_groups = ( { name = \"web\"; }, { name = \"api\"; } );\n"
         "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
         "  default_action = { forward = ( { target_group = \"web\"; weight = 1; },\n"
         "    { target_group = \"api\"; weight = 1; } ); }; } );\n",
         "t.conf:3: listeners[http].default_action.forward: forwarding to several weighted "
         "target groups is not supported yet"},
        {WH_FEATURE_RULES,
         TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                "  default_action = { fixed_response = { status = 404; }; }; } );\n",
         "t.conf:3: listeners[http].default_action.fixed_response: fixed_response actions are "
         "not supported yet"},
        {WH_FEATURE_RULES,
         TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                "  default_action = { redirect = { status = 301; location = \"/\"; }; }; } );\n",
         "t.conf:3: listeners[http].default_action.redirect: redirect actions are not supported"},
        {WH_FEATURE_HEALTH, "target_groups = ( { name = \"web\"; health_check = { }; } );\n",
         "t.conf:1: target_groups[web].health_check: health checks are not supported yet"},
        {WH_FEATURE_PASSIVE, "target_groups = ( { name = \"web\"; passive = { }; } );\n",
         "t.conf:1: target_groups[web].passive: passive health checks are not supported yet"},
        {WH_FEATURE_SLOW_START, "target_groups = ( { name = \"web\"; slow_start = 30; } );\n",
         "t.conf:1: target_groups[web].slow_start: slow start is not supported yet"},
        {WH_FEATURE_ALGORITHMS,
         "target_groups = ( { name = \"web\"; algorithm = \"weighted_random\"; } );\n",
         "t.conf:1: target_groups[web].algorithm: algorithms other than round_robin are not"},
        {WH_FEATURE_ALGORITHMS,
         "target_groups = ( { name = \"web\";\n"
         "  targets = ( { address = \"127.0.0.1:1\"; weight = 3; } ); } );\n",
         "t.conf:2: target_groups[web].targets[0].weight: target weights are not supported yet"},
        {WH_FEATURE_STICKINESS,
         "target_groups = ( { name = \"web\"; stickiness = { enabled = true; }; } );\n",
         "t.conf:1: target_groups[web].stickiness: stickiness is not supported yet"},
        {WH_FEATURE_STICKINESS,
         TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"
                "  stickiness_secret = \"0123456789abcdef\";\n"
                "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
         "t.conf:3: listeners[http].stickiness_secret: stickiness is not supported yet"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct msgs m;
        /* Off: that one error. */
        struct wh_config *cfg = load(cases[i].text, ALL & ~cases[i].feature, &m);
        if (cfg || count(&m, 1) != 1 || find(&m, 1, cases[i].error) < 0) {
            msgs_print(&m);
            fail_msg("case %zu (%s) off", i, wh_feature_name(cases[i].feature));
        }
        msgs_free(&m);
        /* On: loads. */
        cfg = load(cases[i].text, cases[i].feature, &m);
        if (!cfg || m.n) {
            msgs_print(&m);
            fail_msg("case %zu (%s) on", i, wh_feature_name(cases[i].feature));
        }
        msgs_free(&m);
        wh_config_free(cfg);
    }
}

static void test_staging_https_listener(void **state)
{
    const char *text =
        TG_WEB "listeners = ( { name = \"s\"; bind = \"127.0.0.1:8443\"; protocol = \"https\";\n"
               "  certificates = ( { cert = \"/a\"; key = \"/b\"; } ); tls_policy = \"tls13\";\n"
               "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n";
    expect_errors(text, ALL & ~WH_FEATURE_TLS,
                  "t.conf:2: listeners[s].protocol: https listeners are not supported yet in this "
                  "version",
                  "t.conf:3: listeners[s].certificates: TLS is not supported yet",
                  "t.conf:3: listeners[s].tls_policy: TLS is not supported yet");
    expect_ok(text, WH_FEATURE_TLS);
}

static void test_staging_defaults_are_accepted(void **state)
{
    /* A key set to its default or "off" value is not an unbuilt feature. */
    expect_ok(TG_WEB "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\"; "
                     "protocol = \"http\";\n"
                     "  default_action = { forward = ( { target_group = \"web\"; weight = 5; } "
                     "); }; } );\n",
              BUILT);
    expect_ok("target_groups = ( { name = \"web\"; algorithm = \"round_robin\"; slow_start = 0;\n"
              "  targets = ( { address = \"127.0.0.1:1\"; weight = 1; } ); } );\n",
              BUILT);
}

static void test_staging_errors_and_parse_errors_together(void **state)
{
    struct msgs m;
    assert_null(load("target_groups = ( { name = \"web\";\n"
                     "  health_check = { matcher = \"999\"; }; } );\n",
                     STAGED, &m));
    assert_int_equal(m.n, 2);
    assert_true(find(&m, 1, "t.conf:2: target_groups[web].health_check: health checks") >= 0);
    assert_true(find(&m, 1, "t.conf:2: target_groups[web].health_check.matcher: \"999\"") >= 0);
    msgs_free(&m);
}

static void test_feature_names(void **state)
{
    assert_string_equal(wh_feature_name(WH_FEATURE_TLS), "tls");
    assert_string_equal(wh_feature_name(WH_FEATURE_SERVICES), "services");
    assert_string_equal(wh_feature_name(WH_FEATURE_PASSIVE), "passive");
    assert_string_equal(wh_feature_name(WH_FEATURE_DEPLOYMENTS), "deployments");
    assert_string_equal(wh_feature_name(WH_FEATURE_EC2), "ec2");
    assert_null(wh_feature_name(0));
    assert_null(wh_feature_name(WH_FEATURE_TLS | WH_FEATURE_RULES));
    assert_null(wh_feature_name(1u << 31));
    for (unsigned bit = 1; bit & WH_FEATURES_ALL; bit <<= 1)
        assert_non_null(wh_feature_name(bit));
    assert_int_equal(WH_FEATURES_BUILT & ~WH_FEATURES_ALL, 0);
}

/* ---- robustness ---- */

/* Loads text with both feature sets: a NULL result must come with at least
 * one error, a config with none. */
static void load_consistent(const char *text)
{
    static const unsigned sets[] = {ALL, BUILT};
    for (size_t i = 0; i < 2; i++) {
        struct msgs m;
        struct wh_config *cfg = load(text, sets[i], &m);
        if (cfg ? count(&m, 1) != 0 : count(&m, 1) == 0) {
            msgs_print(&m);
            fail_msg("inconsistent result for:\n%s", text);
        }
        msgs_free(&m);
        wh_config_free(cfg);
    }
}

/* Every string and number of the full example replaced, one at a time, by
 * a value of every other type: no crash, no leak, and errors when it fails. */
static void test_every_value_replaced_by_every_type(void **state)
{
    static const char *const values[] = {
        "7",    "-1",  "0",   "2.5", "\"x\"",        "\"\"",
        "true", "{ }", "( )", "[ ]", "( 1, \"a\" )", "{ name = 1; }"};
    char *text = read_file(WH_TOP_SRCDIR "/conf/wharfd-full.conf");
    size_t len = strlen(text), loads = 0;
    char *buf = malloc(len + 64);
    assert_non_null(buf);
    for (size_t at = 0; at < len; at++) {
        size_t end = at;
        if (text[at] == '#') { /* skip comments */
            while (at < len && text[at] != '\n')
                at++;
            continue;
        }
        if (text[at] == '"') {
            end = at + 1;
            while (end < len && text[end] != '"')
                end++;
            end++;
        } else if (text[at] >= '0' && text[at] <= '9' && (at == 0 || text[at - 1] == ' ')) {
            while (end < len && ((text[end] >= '0' && text[end] <= '9') || text[end] == '.'))
                end++;
        } else {
            continue;
        }
        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
            snprintf(buf, len + 64, "%.*s%s%s", (int)at, text, values[v], text + end);
            load_consistent(buf);
            loads++;
        }
        at = end - 1;
    }
    assert_true(loads > 1000);
    free(buf);
    free(text);
}

static void test_every_line_deleted(void **state)
{
    char *text = read_file(WH_TOP_SRCDIR "/conf/wharfd-full.conf");
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    for (size_t at = 0; at < len;) {
        const char *nl = strchr(text + at, '\n');
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        snprintf(buf, len + 1, "%.*s%s", (int)at, text, text + end);
        load_consistent(buf);
        at = end;
    }
    free(buf);
    free(text);
}

/* ---- lookups, free ---- */

static void test_lookups(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(MIN, BUILT, &m);
    assert_ptr_equal(wh_config_group(cfg, "web"), &cfg->target_groups[0]);
    assert_null(wh_config_group(cfg, "nope"));
    assert_null(wh_config_group(cfg, NULL));
    assert_null(wh_config_group(NULL, "web"));
    assert_ptr_equal(wh_config_listener(cfg, "http"), &cfg->listeners[0]);
    assert_null(wh_config_listener(cfg, "web"));
    assert_null(wh_config_host(cfg, "h"));
    assert_null(wh_config_service(cfg, "s"));
    wh_config_free(cfg);
    wh_config_free(NULL);
}

static void test_null_report_is_allowed(void **state)
{
    assert_null(wh_config_load_string("workers = -1;", "t.conf", NULL, NULL));
    struct wh_config *cfg = wh_config_load_string(MIN, "t.conf", NULL, NULL);
    assert_non_null(cfg);
    wh_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_example_parses_with_every_feature),
        cmocka_unit_test(test_full_example_staged_with_built_features),
        cmocka_unit_test(test_example_loads_with_every_feature),
        cmocka_unit_test(test_example_loads_with_built_features),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_file_is_valid),
        cmocka_unit_test(test_empty_health_check_block_enables_checks_with_defaults),
        cmocka_unit_test(test_size_values),
        cmocka_unit_test(test_size_errors),
        cmocka_unit_test(test_size_ranges),
        cmocka_unit_test(test_duration_values),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_unknown_keys_at_every_level),
        cmocka_unit_test(test_unknown_key_in_conditions),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_empty_strings_rejected),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_slow_start_zero_or_range),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_addr_parse_errors),
        cmocka_unit_test(test_bad_addresses_in_config),
        cmocka_unit_test(test_bind_any_address),
        cmocka_unit_test(test_duplicate_listener_names_and_binds),
        cmocka_unit_test(test_duplicate_group_names),
        cmocka_unit_test(test_duplicate_targets),
        cmocka_unit_test(test_duplicate_host_ids_and_service_names),
        cmocka_unit_test(test_duplicate_rule_priorities),
        cmocka_unit_test(test_same_priority_in_two_listeners_is_fine),
        cmocka_unit_test(test_dangling_forward),
        cmocka_unit_test(test_groups_may_follow_listeners_in_the_file),
        cmocka_unit_test(test_dangling_service_target_group),
        cmocka_unit_test(test_missing_required_keys),
        cmocka_unit_test(test_action_required_and_unique),
        cmocka_unit_test(test_health_check_timeout_below_interval),
        cmocka_unit_test(test_health_check_port),
        cmocka_unit_test(test_matcher_syntax),
        cmocka_unit_test(test_rules_sorted_by_priority),
        cmocka_unit_test(test_rule_priority_range),
        cmocka_unit_test(test_redirect_and_fixed_status),
        cmocka_unit_test(test_forward_weights),
        cmocka_unit_test(test_forward_entry_without_group_then_another),
        cmocka_unit_test(test_forward_at_most_five_groups),
        cmocka_unit_test(test_condition_values),
        cmocka_unit_test(test_source_ip_cidrs),
        cmocka_unit_test(test_https_needs_certificates),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_admin_validation),
        cmocka_unit_test(test_state_validation),
        cmocka_unit_test(test_all_errors_reported_in_line_order),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_include_relative_to_file),
        cmocka_unit_test(test_include_absolute_path),
        cmocka_unit_test(test_messages_main_file_first_then_by_line),
        cmocka_unit_test(test_staging_unbuilt_block_warns_and_is_dropped),
        cmocka_unit_test(test_staging_unbuilt_block_is_still_validated),
        cmocka_unit_test(test_staging_each_flag),
        cmocka_unit_test(test_staging_https_listener),
        cmocka_unit_test(test_staging_defaults_are_accepted),
        cmocka_unit_test(test_staging_errors_and_parse_errors_together),
        cmocka_unit_test(test_feature_names),
        cmocka_unit_test(test_every_value_replaced_by_every_type),
        cmocka_unit_test(test_every_line_deleted),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_null_report_is_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

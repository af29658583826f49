/* wharf configuration: the file (libconfig syntax, ../shared/CONFIG.md)
 * turned into validated, immutable plain structs.
 *
 * libconfig appears only in src/config/. A loaded wh_config is never
 * modified; a reload builds a new one. Every error is reported as
 * `file:line: key: message`, where key names list elements by their name
 * or id ("listeners[http].idle_timeout") or else by index
 * ("target_groups[web].targets[1]").
 *
 * Ownership: every pointer inside a struct wh_config (strings, arrays, the
 * header/query conditions) is owned by it and freed by wh_config_free.
 */
#ifndef WHARF_CONFIG_H
#define WHARF_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wharf/addr.h"
#include "wharf/log.h"

#define WH_NAME_MAX 64

struct wh_cfg_log {
    enum wh_log_level level;
    char *access_log; /* NULL = off, "-" = stderr, else a path */
};

struct wh_cfg_limits {
    size_t max_header_bytes; /* 1k..1m, default 64k */
    uint64_t max_body_bytes; /* 0 = unlimited */
};

struct wh_cfg_timeouts { /* seconds */
    double client_header;
    double upstream_connect;
    double upstream_response;
    double tls_handshake;
    double shutdown_drain;
};

/* ---- listeners ---- */

enum wh_listener_protocol { WH_PROTO_HTTP, WH_PROTO_HTTPS };

struct wh_cfg_certificate {
    char *cert; /* path */
    char *key;  /* path */
    int line;
};

struct wh_cfg_weighted_group {
    char *target_group; /* name; validated to exist */
    int weight;         /* 0..999, default 1 */
};

struct wh_cfg_header_cond {
    char *name;
    char **values;
    size_t n_values;
};

struct wh_cfg_query_cond {
    char *key; /* may be NULL: match any key */
    char **values;
    size_t n_values;
};

struct wh_cfg_conditions {
    char **host;
    size_t n_host;
    char **path;
    size_t n_path;
    char **method;
    size_t n_method;
    struct wh_cfg_header_cond *header; /* NULL = none */
    struct wh_cfg_query_cond *query;   /* NULL = none */
    char **source_ip;                  /* CIDR strings, validated */
    size_t n_source_ip;
};

enum wh_action_type { WH_ACTION_FORWARD, WH_ACTION_REDIRECT, WH_ACTION_FIXED };

struct wh_cfg_action {
    enum wh_action_type type;
    /* forward */
    struct wh_cfg_weighted_group *forward;
    size_t n_forward;
    double stickiness; /* group-level stickiness duration; 0 = off */
    /* redirect */
    int redirect_status; /* 301 or 302 */
    char *location;
    /* fixed_response */
    int fixed_status;
    char *content_type;
    char *body;
    int line;
};

struct wh_cfg_rule {
    int priority;
    struct wh_cfg_conditions conditions;
    struct wh_cfg_action action;
    int line;
};

struct wh_cfg_listener {
    char name[WH_NAME_MAX];
    struct wh_addr bind;
    enum wh_listener_protocol protocol;
    struct wh_cfg_certificate *certificates;
    size_t n_certificates;
    char *tls_policy; /* "tls13-12" (default) or "tls13" */
    double idle_timeout;
    char *stickiness_secret;   /* NULL = random at start */
    struct wh_cfg_rule *rules; /* sorted by priority, lowest first */
    size_t n_rules;
    struct wh_cfg_action default_action;
    int line;
};

/* ---- target groups ---- */

enum wh_algorithm { WH_ALGO_ROUND_ROBIN, WH_ALGO_LEAST_OUTSTANDING, WH_ALGO_WEIGHTED_RANDOM };

struct wh_cfg_health_check {
    int enabled; /* 0 when the block is absent: no checks, targets healthy */
    char *path;  /* default "/health" */
    int port;    /* 0 = traffic-port */
    double interval;
    double timeout;
    int healthy_threshold;
    int unhealthy_threshold;
    char *matcher; /* "200-399", validated */
    char *host;    /* "" = the target address */
};

struct wh_cfg_passive {
    int consecutive_connect_failures; /* 0 = off */
    int consecutive_5xx;              /* 0 = off */
    double eject;
};

struct wh_cfg_target {
    struct wh_addr addr;
    int weight; /* 1..999 */
    int line;
};

struct wh_cfg_target_group {
    char name[WH_NAME_MAX];
    enum wh_algorithm algorithm;
    double deregistration_delay;
    double slow_start;
    int stickiness_enabled;
    double stickiness_duration;
    struct wh_cfg_health_check health_check;
    struct wh_cfg_passive passive;
    struct wh_cfg_target *targets;
    size_t n_targets;
    int line;
};

/* ---- fleet, services, admin, state (the control plane's blocks) ---- */

struct wh_cfg_kv {
    char *key;
    char *value;
};

struct wh_cfg_host {
    char id[WH_NAME_MAX];
    char *docker;     /* unix:///path or tcp://host:port */
    char *address;    /* where published ports are reached, as written; NULL = absent
                       * (required for unix:// hosts) */
    char *address_ip; /* the numeric form ("10.0.1.5", "fd00::1") of address, or when it
                       * is absent of the tcp:// URL's host; names resolved at load */
    int max_concurrent_calls;
    double call_timeout;
    double ping_interval;              /* 0.5..60, default 2 */
    int unreachable_after;             /* consecutive missed pings, 1..20, default 3 */
    int draining;                      /* no new tasks; running ones move elsewhere */
    char *tls_ca, *tls_cert, *tls_key; /* NULL unless a tls block */
    struct wh_cfg_kv *attributes;
    size_t n_attributes;
    int line;
};

/* Credentials for image pulls, matched by the image's registry. Either
 * username and password (from password_file) or ecr. */
struct wh_cfg_registry {
    char *server;        /* "registry.example.com:5000": HOST or HOST:PORT as images name it */
    char *username;      /* NULL with ecr */
    char *password_file; /* as written; NULL with ecr */
    char *password;      /* its first line, trimmed, read at load; a secret: never in a
                          * message; wiped by wh_config_free */
    int ecr;             /* 1: a token from ECR (the EC2 issue) */
    int line;
};

struct wh_cfg_placement_strategy {
    char *type;  /* spread, binpack, random */
    char *field; /* attribute:az, memory, cpu, instanceId */
};

struct wh_cfg_placement_constraint {
    char *type;       /* distinctInstance, memberOf */
    char *expression; /* memberOf only */
};

enum wh_pull_policy { WH_PULL_MISSING, WH_PULL_ALWAYS, WH_PULL_NEVER };

struct wh_cfg_service {
    char name[WH_NAME_MAX];
    char *target_group; /* NULL = none; else names a group of the file */
    int desired_count;
    /* task */
    char *image;
    int container_port; /* 1..65535; 0 = none (required with a target_group) */
    char **command;
    size_t n_command;
    struct wh_cfg_kv *env;
    size_t n_env;
    int cpu;
    int memory;
    enum wh_pull_policy pull_policy; /* default WH_PULL_MISSING */
    char *log_driver;                /* task.log.driver; NULL = the engine's default */
    struct wh_cfg_kv *log_options;   /* task.log.options, passed to Docker as written */
    size_t n_log_options;
    double stop_timeout;
    /* deployment */
    int minimum_healthy_percent;
    int maximum_percent;
    double progress_timeout; /* 30..86400, default 600 */
    int circuit_breaker_enable;
    int circuit_breaker_rollback;
    /* placement */
    struct wh_cfg_placement_strategy *strategies;
    size_t n_strategies;
    struct wh_cfg_placement_constraint *constraints;
    size_t n_constraints;
    double health_check_grace_period;
    int line;
};

/* The reconcile loop's timing (seconds). */
struct wh_cfg_controller {
    double reconcile_interval; /* 1..600, default 10 */
    double lost_task_grace;    /* 0..3600, default 30 */
    double start_backoff_max;  /* 1..3600, default 900 */
};

/* discovery.ec2: hosts found by tags, added to `hosts`. */
struct wh_cfg_ec2_filter {
    char *name; /* "tag:wharf-cluster", "instance-state-name", ... */
    char **values;
    size_t n_values;
};

enum wh_ec2_address { WH_EC2_PRIVATE_IP, WH_EC2_PUBLIC_IP };

struct wh_cfg_discovery {
    int enabled;  /* 0 when there is no discovery.ec2 block */
    char *region; /* required: "us-east-1" */
    struct wh_cfg_ec2_filter *filters;
    size_t n_filters;
    double interval;                   /* 5..3600, default 30 */
    int docker_port;                   /* 1..65535, default 2376 */
    enum wh_ec2_address address;       /* default private_ip */
    char *tls_ca, *tls_cert, *tls_key; /* NULL unless a tls block */
    char *endpoint;                    /* NULL = the region's; http:// or https:// */
};

struct wh_cfg_admin {
    int enabled; /* 0 when the block is absent */
    struct wh_addr bind;
    char *token_file;
    int metrics_public;
};

struct wh_cfg_state {
    char *dir;   /* default /var/lib/wharf */
    char **etcd; /* endpoints, NULL = embedded store */
    size_t n_etcd;
    char *prefix;
};

struct wh_config {
    char *path;
    unsigned features; /* the WH_FEATURE_* set it was loaded with */
    int workers;       /* 0 = one per CPU (resolved by the caller) */
    struct wh_cfg_log log;
    struct wh_cfg_limits limits;
    struct wh_cfg_timeouts timeouts;
    struct wh_cfg_listener *listeners;
    size_t n_listeners;
    struct wh_cfg_target_group *target_groups;
    size_t n_target_groups;
    char *cluster; /* label wharf.cluster, default "default": 1..64 of [A-Za-z0-9._-] */
    struct wh_cfg_controller controller;
    struct wh_cfg_host *hosts;
    size_t n_hosts;
    struct wh_cfg_registry *registries;
    size_t n_registries;
    struct wh_cfg_service *services;
    size_t n_services;
    struct wh_cfg_discovery discovery;
    struct wh_cfg_admin admin;
    struct wh_cfg_state state;
    /* blocks present */
    int has_hosts, has_services, has_admin, has_state;
    int has_cluster, has_controller, has_registries, has_discovery;
};

/* ---- staging: which features this build implements ----
 *
 * A documented top-level block whose feature is off (cluster, controller,
 * hosts, registries, services, discovery, admin, state) is still validated,
 * then reported with one warning and left out of the result (has_* = 0,
 * defaults). A documented key inside a built block whose feature is off is
 * an error, except a scalar set to its default or "off" value (protocol =
 * "http", algorithm = "round_robin", slow_start = 0, weight = 1, one
 * forward group). A few keys are accepted and kept with one warning instead
 * (the first place they are set, counting the others): a deployment's
 * progress_timeout and circuit_breaker (enable = true), a registry's
 * ecr = true. A key inside a dropped block is not reported again. The list
 * lives in one table in src/config/config_stage.c; building a feature means
 * adding its flag to WH_FEATURES_BUILT. */
#define WH_FEATURE_TLS (1u << 0)          /* https: certificates, tls_policy, tls_handshake */
#define WH_FEATURE_RULES (1u << 1)        /* rules; redirect, fixed_response, weighted forward */
#define WH_FEATURE_HEALTH (1u << 2)       /* target_groups.health_check */
#define WH_FEATURE_ADMIN (1u << 3)        /* admin block */
#define WH_FEATURE_FLEET (1u << 4)        /* hosts and registries blocks */
#define WH_FEATURE_SERVICES (1u << 5)     /* services, cluster and controller blocks */
#define WH_FEATURE_STORE (1u << 6)        /* state block */
#define WH_FEATURE_ACCESS_LOG (1u << 7)   /* log.access_log */
#define WH_FEATURE_ALGORITHMS (1u << 8)   /* least_outstanding_requests, weighted_random, weights */
#define WH_FEATURE_STICKINESS (1u << 9)   /* stickiness blocks and keys, stickiness_secret */
#define WH_FEATURE_SLOW_START (1u << 10)  /* slow_start > 0 */
#define WH_FEATURE_PASSIVE (1u << 11)     /* target_groups.passive */
#define WH_FEATURE_DEPLOYMENTS (1u << 12) /* deployment.progress_timeout, circuit_breaker */
#define WH_FEATURE_EC2 (1u << 13)         /* discovery block, registries' ecr */
#define WH_FEATURES_ALL ((1u << 14) - 1)

/* What wh_config_load accepts: the proxy and its ALB features (listeners
 * with rules and TLS, target groups with health checks, algorithms,
 * stickiness and slow start), the access log and the admin API; not the
 * fleet, the services, deployments, EC2 nor the store. */
#define WH_FEATURES_BUILT                                                                          \
    (WH_FEATURE_ACCESS_LOG | WH_FEATURE_ADMIN | WH_FEATURE_HEALTH | WH_FEATURE_PASSIVE |           \
     WH_FEATURE_TLS | WH_FEATURE_RULES | WH_FEATURE_ALGORITHMS | WH_FEATURE_STICKINESS |           \
     WH_FEATURE_SLOW_START | WH_FEATURE_FLEET | WH_FEATURE_SERVICES)

/* "tls", "rules", ... for one WH_FEATURE_* bit; NULL for anything else. */
const char *wh_feature_name(unsigned feature);

/* Receives each error or warning as one line ("file:line: key: message",
 * no newline). */
typedef void (*wh_config_report_fn)(void *arg, int is_error, const char *line);

/* Load and validate path. Returns a new config (free with wh_config_free),
 * or NULL after reporting every error found through report. Warnings (a
 * documented block whose feature is not built yet) go through report too.
 * Messages come sorted by line. report may be NULL. Same as
 * wh_config_load_ex(path, WH_FEATURES_BUILT, report, arg). */
struct wh_config *wh_config_load(const char *path, wh_config_report_fn report, void *arg);

/* Same, from a string (tests); name is used in messages as the file name. */
struct wh_config *wh_config_load_string(const char *text, const char *name,
                                        wh_config_report_fn report, void *arg);

/* The same two with the set of built features (WH_FEATURE_* bits) given by
 * the caller; tests pass WH_FEATURES_ALL to exercise the whole parser. */
struct wh_config *wh_config_load_ex(const char *path, unsigned features, wh_config_report_fn report,
                                    void *arg);
struct wh_config *wh_config_load_string_ex(const char *text, const char *name, unsigned features,
                                           wh_config_report_fn report, void *arg);

void wh_config_free(struct wh_config *cfg);

/* Lookup helpers; NULL when absent. Borrowed from cfg. */
const struct wh_cfg_target_group *wh_config_group(const struct wh_config *cfg, const char *name);
const struct wh_cfg_listener *wh_config_listener(const struct wh_config *cfg, const char *name);
const struct wh_cfg_host *wh_config_host(const struct wh_config *cfg, const char *id);
const struct wh_cfg_service *wh_config_service(const struct wh_config *cfg, const char *name);

#endif

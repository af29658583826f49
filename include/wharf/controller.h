/* wharf controller: the ECS service scheduler on the user's hosts. It keeps
 * each service of the configuration at its desired count on the hosts of
 * the inventory (include/wharf/hosts.h), places new tasks, registers every
 * running task's published port as a target of the service's target group
 * (include/wharf/targets.h), drains a target before its task stops,
 * replaces tasks that exit or fail their health checks, and adopts what
 * runs at start so a restarted wharfd starts no duplicates.
 *
 * Decisions come from the pure planner (src/controller/plan.h); this
 * module's executor runs them through the runtime (include/wharf/runtime.h)
 * and feeds the results back into the next plan. Reconciles are coalesced:
 * any number of triggers within one loop turn give one plan. Control
 * thread only; nothing here blocks the loop.
 */
#ifndef WHARF_CONTROLLER_H
#define WHARF_CONTROLLER_H

#include <stddef.h>

struct event_base;
struct wh_config;
struct wh_hosts;
struct wh_host;
struct wh_targets;
struct wh_controller;
struct wh_rt_kv;

/* New controller on base over hosts and targets (borrowed: both must
 * outlive it; free the controller first). It is the inventory's subscriber
 * and one of the registry's. Services
 * come with wh_controller_apply. NULL when out of memory. */
struct wh_controller *wh_controller_new(struct event_base *base, struct wh_hosts *hosts,
                                        struct wh_targets *targets);
/* Stops watching and planning; running containers are left as they are
 * (a restart adopts them). NULL is fine. */
void wh_controller_free(struct wh_controller *ctl);

/* Take the cluster, the controller settings and the services of cfg
 * (copied: cfg is borrowed for the call). A service that left the file is
 * scaled to 0, then forgotten. Returns 0, or -1 with err set. */
int wh_controller_apply(struct wh_controller *ctl, const struct wh_config *cfg, char *err,
                        size_t errlen);

/* ---- read-only views (the admin API) ---- */

/* A placement strategy or constraint in the configuration's words. */
struct wh_ctl_placement {
    const char *type;  /* spread, binpack, random; distinctInstance, memberOf */
    const char *field; /* a strategy's field, a memberOf expression; NULL = none */
};

struct wh_ctl_service_info {
    const char *name;
    const char *target_group; /* NULL = none */
    int revision;
    const char *taskdef; /* the wharf.taskdef hash */
    const char *image;
    int container_port, cpu, memory;
    int desired_count, running_count, pending_count, healthy_count;
    int minimum_healthy_percent, maximum_percent;
    double health_check_grace_period;
    int steady;
    /* the rest of the task definition, as the configuration writes it */
    const char *const *command;
    size_t n_command;
    const struct wh_rt_kv *env;
    size_t n_env;
    const char *pull_policy; /* missing, always, never */
    const char *log_driver;  /* NULL = the engine's default */
    const struct wh_rt_kv *log_options;
    size_t n_log_options;
    int stop_timeout;
    const struct wh_ctl_placement *strategies; /* in order */
    size_t n_strategies;
    const struct wh_ctl_placement *constraints;
    size_t n_constraints;
    int in_file;        /* 0: it left the file and is scaled to 0 */
    double revision_at; /* when this revision was first applied (seconds since the epoch) */
    int failed_tasks;   /* launches failed in a row, reset when one runs (ECS's failedTasks) */
};

struct wh_ctl_task_info {
    const char *id;
    const char *service;
    const char *host;
    int revision;
    const char *state;          /* PROVISIONING|PENDING|RUNNING|DEACTIVATING|STOPPING|STOPPED */
    int host_port;              /* 0 = not known */
    const char *target;         /* "ADDR:PORT", NULL = not registered */
    const char *health;         /* the target's state, or "none" */
    double started_at;          /* seconds since the epoch; 0 = not started */
    const char *stopped_reason; /* "" = none */
};

/* Visit services in configuration order; name NULL = all. Returns how many
 * were visited. Pointers are borrowed for the call. */
int wh_controller_foreach_service(struct wh_controller *ctl, const char *name,
                                  void (*fn)(void *arg, const struct wh_ctl_service_info *s),
                                  void *arg);
/* Visit the tasks of service (NULL = every service). */
void wh_controller_foreach_task(struct wh_controller *ctl, const char *service,
                                void (*fn)(void *arg, const struct wh_ctl_task_info *t), void *arg);
/* Visit service's events, newest first (at most 100 kept): id, time
 * (seconds since the epoch), message. Returns -1 for an unknown service. */
int wh_controller_foreach_event(struct wh_controller *ctl, const char *service,
                                void (*fn)(void *arg, unsigned long id, double time,
                                           const char *message),
                                void *arg);

#endif

/* The controller's pure planner (DESIGN.md, "controller/ decides with pure
 * functions"): plan = wh_plan_reconcile(desired, observed, hosts, ids), and
 * the placement it uses for every new task. Plain structs in, a list of
 * actions out: no clock (time comes in as `now`), no I/O, no globals. The
 * executor fills the inputs from the runtime's container lists, the target
 * registry's states and the configuration, runs the actions and feeds the
 * results back through the next plan's inputs.
 *
 * Every pointer in an input is borrowed for the call; actions point back
 * into the inputs (so the inputs must outlive the plan) and own only their
 * own message text.
 */
#ifndef WHARF_CONTROLLER_PLAN_H
#define WHARF_CONTROLLER_PLAN_H

#include <stddef.h>
#include <stdint.h>

struct wh_query;

#define WH_PLAN_ID_MAX 64 /* task ids, with their NUL */

/* ---- hosts ---- */

enum wh_plan_host_state {
    WH_PLAN_HOST_ACTIVE,      /* takes new tasks */
    WH_PLAN_HOST_DRAINING,    /* no new tasks; its tasks are replaced elsewhere, then stopped */
    WH_PLAN_HOST_UNREACHABLE, /* missed its pings: nothing is asked of it */
};

struct wh_plan_attr {
    const char *name;
    const char *value;
};

struct wh_plan_host {
    const char *id; /* unique; also the attribute instanceId */
    enum wh_plan_host_state state;
    double unreachable_since; /* UNREACHABLE: since when (seconds, the clock of `now`) */
    const struct wh_plan_attr *attributes;
    size_t n_attributes;
    long cpu_total;    /* CPU units (NCPU x 1024) */
    long memory_total; /* MiB */
    /* Reserved by containers that are not in the observed task list (0 when
     * every container of the host is listed); the planner adds the
     * reservations of the listed tasks itself. */
    long cpu_reserved, memory_reserved;
};

/* The value of attribute `name` of h, or NULL. "instanceId" is the host id,
 * and ECS's built-in names are aliases of ours: "ecs.availability-zone" is
 * "az", "ecs.instance-type" is "instance_type". */
const char *wh_plan_host_attr(const struct wh_plan_host *h, const char *name);

/* ---- placement settings of a service ---- */

enum wh_place_strategy_type { WH_PLACE_SPREAD, WH_PLACE_BINPACK, WH_PLACE_RANDOM };
enum wh_place_resource { WH_PLACE_CPU, WH_PLACE_MEMORY };

struct wh_place_strategy {
    enum wh_place_strategy_type type;
    const char *attribute;           /* SPREAD: a host attribute; NULL = instanceId */
    enum wh_place_resource resource; /* BINPACK */
};

enum wh_place_constraint_type { WH_PLACE_DISTINCT_INSTANCE, WH_PLACE_MEMBER_OF };

struct wh_place_constraint {
    enum wh_place_constraint_type type;
    const struct wh_query *query; /* MEMBER_OF */
};

/* From the configuration's words: type "spread" with field "instanceId" or
 * "attribute:NAME" (out->attribute then points into field), "binpack" with
 * "cpu" or "memory", "random" with no field. Returns 0, or -1 with a
 * message in err. */
int wh_place_strategy_parse(const char *type, const char *field, struct wh_place_strategy *out,
                            char *err, size_t errlen);

/* ---- desired state ---- */

struct wh_plan_service {
    const char *name;
    int revision;        /* for START */
    const char *taskdef; /* the wharf.taskdef label, for START */
    int desired_count;
    int cpu;    /* reservation of each task, CPU units */
    int memory; /* MiB */
    int minimum_healthy_percent;
    int maximum_percent;
    const struct wh_place_strategy *strategies; /* in order */
    size_t n_strategies;
    const struct wh_place_constraint *constraints;
    size_t n_constraints;
    double health_check_grace_period;
    const char *target_group; /* NULL = none: healthy by Docker's health check or by running */
    /* Launch failures in a row (reset by the executor when a started task
     * runs) and the time of the last one: the next start waits 1 s, doubling
     * per failure, up to start_backoff_max. */
    int start_failures;
    double last_start_failure;
    int steady; /* the previous plan's status.steady (so the event is said once) */
};

struct wh_plan_desired {
    const char *cluster; /* tasks of another cluster are never acted on */
    const struct wh_plan_service *services;
    size_t n_services;
    double lost_task_grace;   /* controller.lost_task_grace */
    double start_backoff_max; /* controller.start_backoff_max */
};

/* ---- observed state ---- */

enum wh_task_state {
    WH_TASK_PROVISIONING, /* being created (image pull, create) */
    WH_TASK_PENDING,      /* created, not running yet */
    WH_TASK_RUNNING,
    WH_TASK_DEACTIVATING, /* stop decided: its target drains */
    WH_TASK_STOPPING,     /* the container has been told to stop */
    WH_TASK_STOPPED,      /* the container exited and still exists */
};

/* The task's target as the registry has it (or Docker's health check for a
 * service without a target group: NONE there means no health check). */
enum wh_task_health {
    WH_HEALTH_NONE, /* no target */
    WH_HEALTH_INITIAL,
    WH_HEALTH_HEALTHY,
    WH_HEALTH_UNHEALTHY,
    WH_HEALTH_DRAINING, /* deregistration under way */
};

struct wh_plan_task {
    const char *id;      /* wharf.task */
    const char *cluster; /* wharf.cluster */
    const char *service; /* wharf.service */
    const char *host;    /* the host id it runs on */
    int revision;        /* wharf.revision */
    const char *taskdef; /* wharf.taskdef */
    enum wh_task_state state;
    enum wh_task_health health;
    double started_at;         /* when it started running; 0 = not yet */
    int cpu, memory;           /* its reservations (from the container) */
    int host_port;             /* published port, 0 = not known yet (no inspect) */
    const char *registered_in; /* target group holding its target, NULL = none */
    int tracked;               /* the controller already knows it (else ADOPT or REPORT) */
    int lost;                  /* LOST was already acted on */
};

struct wh_plan_observed {
    double now;
    const struct wh_plan_task *tasks;
    size_t n_tasks;
};

struct wh_plan_hosts {
    const struct wh_plan_host *hosts;
    size_t n_hosts;
};

/* Where new task ids and random placement come from, so plans repeat. */
struct wh_plan_ids {
    uint64_t seed; /* the `random` strategy's generator */
    void (*new_id)(void *arg, char *out, size_t outlen);
    void *arg;
};

/* A new_id giving t1, t2, ... from the unsigned long arg points to. */
void wh_plan_seq_id(void *counter, char *out, size_t outlen);

/* ---- the plan ---- */

enum wh_plan_action_type {
    WH_ACT_REPORT,     /* task of an unknown service: log message once, track it, never touch it */
    WH_ACT_ADOPT,      /* task of a known service found running: track it */
    WH_ACT_LOST,       /* task on a host unreachable past lost_task_grace: replaced elsewhere */
    WH_ACT_DEREGISTER, /* remove task's target from target_group (drain first if drain) */
    WH_ACT_REMOVE,     /* remove task's exited container */
    WH_ACT_REGISTER,   /* add task's target (host address:host_port) to target_group */
    WH_ACT_START,      /* create and start task_id of service on host */
    WH_ACT_STOP,       /* deregister and drain if drain, then stop task; message = reason */
    WH_ACT_EVENT,      /* the service's event log gets message (ECS's words) */
};

enum wh_stop_reason { WH_STOP_SCALE_IN, WH_STOP_UNHEALTHY, WH_STOP_HOST_DRAINING };

struct wh_plan_action {
    enum wh_plan_action_type type;
    const struct wh_plan_service *service; /* NULL for REPORT */
    const struct wh_plan_task *task;       /* all but START and EVENT */
    const struct wh_plan_host *host;       /* START: where; else the task's host or NULL */
    char task_id[WH_PLAN_ID_MAX];          /* START: the new task's id */
    const char *target_group;              /* REGISTER: into; DEREGISTER: from */
    enum wh_stop_reason reason;            /* STOP */
    int drain;                             /* STOP, DEREGISTER */
    char *message;                         /* EVENT, REPORT, STOP (stopped reason); owned */
};

/* One per service, in the input's order: the counts of API.md. */
struct wh_plan_status {
    const struct wh_plan_service *service;
    int running;  /* RUNNING, not lost */
    int pending;  /* PROVISIONING or PENDING, with this plan's starts */
    int healthy;  /* healthy in the target group (or by Docker / running) */
    int lost;     /* on an unreachable host past the grace */
    int unplaced; /* starts wanted that no host could take */
    int steady;   /* running = healthy = desired and nothing in progress */
};

struct wh_plan {
    struct wh_plan_action *actions;
    size_t n_actions, cap_actions;
    struct wh_plan_status *status;
    size_t n_status;
    /* The earliest time a plan would change without any event (a grace
     * period or a backoff ending): reconcile again then. 0 = no such time. */
    double wake_at;
};

/* Returns a new plan (free with wh_plan_free), or NULL when out of memory. */
struct wh_plan *wh_plan_reconcile(const struct wh_plan_desired *desired,
                                  const struct wh_plan_observed *observed,
                                  const struct wh_plan_hosts *hosts, const struct wh_plan_ids *ids);

void wh_plan_free(struct wh_plan *plan);

/* The wait before the next start after `failures` failed launches in a row:
 * 0, then 1 s doubling up to max. */
double wh_plan_backoff_delay(int failures, double max);

/* ---- placement (used by the reconcile; exposed for its tests) ----
 *
 * A fleet is the planner's working view of the hosts for one plan: free
 * resources and, for the service being placed, its tasks per host. */
struct wh_place_fleet;

/* New fleet over hosts (borrowed); NULL when out of memory. */
struct wh_place_fleet *wh_place_fleet_new(const struct wh_plan_host *hosts, size_t n_hosts);
void wh_place_fleet_free(struct wh_place_fleet *fleet);

/* The index of host id, or -1. */
long wh_place_fleet_find(const struct wh_place_fleet *fleet, const char *id);

/* An existing container on host reserves cpu and memory. */
void wh_place_fleet_reserve(struct wh_place_fleet *fleet, long host, long cpu, long memory);

/* Starts placing for svc: no tasks counted yet, constraints evaluated per
 * host. Returns 0, or -1 when out of memory. */
int wh_place_service_begin(struct wh_place_fleet *fleet, const struct wh_plan_service *svc);

/* Counts (+1) or uncounts (-1) a task of the current service on host, for
 * distinctInstance and spread. */
void wh_place_service_count(struct wh_place_fleet *fleet, long host, int delta);

/* The tasks of the current service counted on host. */
int wh_place_service_tasks(const struct wh_place_fleet *fleet, long host);

/* For one new task of the current service: the host index, or -1 when no
 * host meets every requirement. rng is the random strategy's state. */
long wh_place_pick(struct wh_place_fleet *fleet, const struct wh_plan_service *svc, uint64_t *rng);

/* Records a new task of the current service on host (reserves, counts). */
void wh_place_commit(struct wh_place_fleet *fleet, const struct wh_plan_service *svc, long host);

/* The id of host's value of spread field `attribute` (NULL = instanceId),
 * 0 .. n-1 over the fleet, hosts without the attribute sharing one. Sets
 * *n_values. -1 when out of memory. */
int wh_place_spread_value(struct wh_place_fleet *fleet, const char *attribute, long host,
                          int *n_values);

#endif

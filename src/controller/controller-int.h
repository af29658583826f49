/* The controller's private state: services as the executor keeps them,
 * tasks as observed (container labels, the runtime's answers and events)
 * and the operations in flight. controller.c owns the state and builds
 * each plan's inputs; executor.c runs the plan's actions. */
#ifndef WHARF_CONTROLLER_INT_H
#define WHARF_CONTROLLER_INT_H

#include <stdint.h>
#include <sys/queue.h>

#include "controller/plan.h"
#include "wharf/config.h"
#include "wharf/controller.h"
#include "wharf/runtime.h"

#define CTL_MAGIC 0x43544c31u      /* "CTL1" */
#define CTL_TASK_MAGIC 0x5441534bu /* "TASK" */
#define CTL_OP_MAGIC 0x43544f50u   /* "CTOP" */
#define CTL_HOST_MAGIC 0x43544c48u /* "CTLH" */
#define CTL_EVENTS_MAX 100
#define CTL_TASKDEF_LEN 13 /* 12 hex digits of the task definition's SHA-256 */
#define CTL_CLUSTER_MAX 65

struct ctl_event {
    unsigned long id;
    double time;
    char *message;
};

/* One service as the executor runs it: a copy of its definition (the
 * configuration that gave it may go at a reload) and its planner state. */
struct ctl_service {
    char name[WH_NAME_MAX];
    char *target_group; /* NULL = none */
    char *image;
    char **command;
    size_t n_command;
    struct wh_rt_kv *env; /* the file's env; WHARF_TASK_ID is added per task */
    size_t n_env;
    int container_port, cpu, memory, stop_timeout;
    enum wh_rt_pull_policy pull;
    char *log_driver; /* NULL = the engine's default */
    struct wh_rt_kv *log_opts;
    size_t n_log_opts;
    int min_percent, max_percent;
    double grace;
    struct wh_place_strategy *strategies;
    size_t n_strategies;
    struct wh_place_constraint *constraints;
    size_t n_constraints;
    char taskdef[CTL_TASKDEF_LEN];
    int revision;
    double revision_at; /* wall clock of the first apply of this revision, for the API */
    int desired;
    int in_file; /* 0: left the file, scaled to 0, forgotten once empty */
    /* planner state kept between plans */
    int start_failures;
    double last_start_failure;
    int steady;
    struct wh_plan_status status;            /* the last plan's counts (service pointer unused) */
    struct ctl_event events[CTL_EVENTS_MAX]; /* a ring, newest at (head - 1) */
    size_t n_events, head;
};

struct ctl_task {
    unsigned magic;
    TAILQ_ENTRY(ctl_task) link;
    char id[WH_PLAN_ID_MAX];
    char cluster[CTL_CLUSTER_MAX];
    char service[WH_NAME_MAX];
    char host[WH_NAME_MAX];
    char container[72]; /* "" until created */
    int revision;
    char taskdef[CTL_TASKDEF_LEN];
    enum wh_task_state state;
    double started_at; /* wall clock; 0 = not started */
    int cpu, memory;   /* reserved on its host while it exists */
    int reserved;      /* the reservation was made on the host */
    int host_port;
    char registered_in[WH_NAME_MAX]; /* "" = not registered */
    char target[96];                 /* "ADDR:PORT" while registered */
    int tracked;                     /* adopted, reported or started by us */
    int lost;
    int busy;               /* an operation of ours is in flight on it */
    int stop_pending;       /* STOP decided while busy: run it when the operation ends */
    char docker_health[16]; /* Docker's HEALTHCHECK: starting, healthy, unhealthy; "" = none */
    char stopped_reason[128];
};
TAILQ_HEAD(ctl_tasks, ctl_task);

/* An operation in flight: what a runtime callback comes back to. The task
 * may go first (task NULL then); the controller frees every op it still
 * has when it is freed (the runtimes drop their callbacks with it). */
struct ctl_op {
    unsigned magic;
    TAILQ_ENTRY(ctl_op) link;
    struct wh_controller *ctl;
    struct ctl_task *task;
    char host[WH_NAME_MAX];
};
TAILQ_HEAD(ctl_ops, ctl_op);

/* What the controller remembers of a host beyond the inventory. */
struct ctl_host {
    unsigned magic;
    struct wh_controller *ctl;
    char id[WH_NAME_MAX];
    int listed;               /* its containers were listed since it last answered */
    double unreachable_since; /* the controller's clock; 0 = reachable */
    struct wh_rt_watch *watch;
    struct wh_runtime *watch_rt; /* the runtime the watch runs on */
};

/* Credentials for pulls from one registry (the file's registries). */
struct ctl_registry {
    char *server, *username, *password;
};

struct wh_controller {
    unsigned magic;
    struct ctl_registry *registries;
    size_t n_registries;
    struct event_base *base;
    struct wh_hosts *hosts;
    struct wh_targets *targets;
    char cluster[CTL_CLUSTER_MAX];
    double reconcile_interval, lost_task_grace, start_backoff_max;
    struct ctl_service *services;
    size_t n_services;
    struct ctl_host **known_hosts; /* each its own allocation: watches point at it */
    size_t n_known_hosts;
    struct ctl_tasks tasks;
    struct ctl_ops ops;
    struct event *kick;     /* a reconcile at the end of this loop turn */
    struct event *interval; /* reconcile_interval */
    struct event *wake;     /* the plan's wake_at */
    int kicked;
    unsigned long next_event_id;
    uint64_t seed;
};

/* ---- controller.c ---- */
double wh_ctl_now(void);
void wh_ctl_kick(struct wh_controller *ctl);
struct ctl_service *wh_ctl_service(struct wh_controller *ctl, const char *name);
struct ctl_task *wh_ctl_task(struct wh_controller *ctl, const char *id);
struct ctl_task *wh_ctl_task_new(struct wh_controller *ctl, const char *id, const char *service,
                                 const char *host);
/* Unlink and free t (its ops forget it); releases its reservation. */
void wh_ctl_task_free(struct wh_controller *ctl, struct ctl_task *t);
void wh_ctl_event(struct wh_controller *ctl, struct ctl_service *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct wh_host *wh_ctl_host(struct wh_controller *ctl, const char *id);
struct ctl_op *wh_ctl_op_new(struct wh_controller *ctl, struct ctl_task *t);
void wh_ctl_op_free(struct ctl_op *op);
/* The op of a runtime callback (checked); NULL when its task went. */
struct ctl_task *wh_ctl_op_task(struct ctl_op *op);

/* The credentials for image's registry (HOST[:PORT] before its first '/',
 * when that part names a host), or NULL: anonymous. */
const struct ctl_registry *wh_ctl_registry_for(const struct wh_controller *ctl, const char *image);

/* ---- executor.c ---- */
/* Run one plan's actions (plan's inputs point into ctl's state). */
void wh_ctl_execute(struct wh_controller *ctl, const struct wh_plan *plan);
/* Move tasks along what needs no plan: a drained target's task stops. */
void wh_ctl_progress(struct wh_controller *ctl);
/* A container event of host (ours: the cluster label was filtered). */
void wh_ctl_container_event(struct wh_controller *ctl, const char *host,
                            const struct wh_rt_event *ev);
/* Upsert host's listed containers into the task table. */
void wh_ctl_adopt_list(struct wh_controller *ctl, const char *host,
                       const struct wh_rt_container *list, size_t n);
/* Stop t now (deregistered already, or never registered). */
void wh_ctl_stop_container(struct wh_controller *ctl, struct ctl_task *t);

#endif

/* Private declarations of the targets module: the registry's own view of
 * groups and targets, the health checker and the matcher. Control thread
 * only, except where said. */
#ifndef WHARF_TARGETS_INT_H
#define WHARF_TARGETS_INT_H

#include <sys/queue.h>

#include <event2/event.h>

#include "wharf/targets.h"

#define WH_TARGETS_MAGIC 0x52454753u /* "REGS" */
#define WH_TG_SWEEP_INTERVAL 0.1     /* passive counters, ejections, drains */
#define WH_TG_PUBLISH_GAP 0.01       /* at most one coalesced publish per 10 ms */
#define WH_TG_MAX_SUBSCRIBERS 8
#define WH_HC_MAX_HEAD                                                                             \
    (16 * 1024) /* a health-check response head larger than this is malformed                      \
                 */
#define WH_HC_DURATION_BUCKETS 12

/* Status codes 100..599 a health check accepts. */
struct wh_tg_matcher {
    uint8_t bits[(600 - 100 + 7) / 8];
};

/* Parse "200", "200,302", "200-399" (codes 100..599, no spaces). Returns 0,
 * or -1 with err set. */
int wh_tg_matcher_parse(const char *text, struct wh_tg_matcher *m, char *err, size_t errlen);
int wh_tg_matcher_match(const struct wh_tg_matcher *m, int status);

/* A group's health-check settings, copied from the configuration. */
struct wh_tg_hc {
    int enabled;
    char path[1024];
    char host[256]; /* "" = the target's address */
    int port;       /* 0 = traffic port */
    double interval, timeout;
    int healthy_threshold, unhealthy_threshold;
    struct wh_tg_matcher matcher;
};

/* Health-check results, the label of wharf_health_checks_total. */
enum wh_hc_result {
    WH_HC_SUCCESS,
    WH_HC_TIMEOUT,
    WH_HC_REFUSED,
    WH_HC_STATUS_MISMATCH,
    WH_HC_RESET,
    WH_HC_MALFORMED,
    WH_HC_CONNECT_ERROR,
    WH_HC_N_RESULTS,
};
const char *wh_hc_result_name(enum wh_hc_result r);

struct wh_hc_check; /* one check in progress (health.c) */
struct wh_tg_group;

/* The registry's view of a target. pub comes first, so the last
 * wh_target_unref frees the whole thing with free(pub). Everything below
 * pub is released when the registry lets go of the target. */
struct wh_tg_target {
    struct wh_target pub;
    struct wh_targets *reg;
    struct wh_tg_group *group;
    TAILQ_ENTRY(wh_tg_target) link;

    /* active checks: the verdict of the threshold machine */
    enum wh_target_state verdict; /* INITIAL, HEALTHY or UNHEALTHY */
    int passes, fails;            /* consecutive results since the verdict last changed */
    char vreason[WH_TARGET_REASON_MAX];
    char vdesc[WH_TARGET_DESC_MAX];
    struct event *hc_timer; /* next check, or the timeout of the one in progress */
    struct wh_hc_check *check;
    double next_check; /* monotonic: when the next check (or the one running) is due */

    /* passive ejection */
    double eject_until; /* monotonic; 0 = not ejected */
    int eject_passes;   /* passing checks since the ejection */
    char edesc[WH_TARGET_DESC_MAX];

    double healthy_since;    /* monotonic; 0 = not healthy */
    double slow_start_begin; /* monotonic; 0 = full share (see wh_tg_member) */
    double state_since_mono; /* monotonic: when the visible state last changed (or registration) */
    double drain_deadline;
    int draining;
};
TAILQ_HEAD(wh_tg_target_list, wh_tg_target);

struct wh_tg_static {
    char addr[64];
    int weight;
};

struct wh_tg_group {
    struct wh_targets *reg;
    char name[WH_NAME_MAX];
    enum wh_algorithm algorithm;
    double slow_start; /* seconds; 0 = off */
    double deregistration_delay;
    struct wh_tg_hc hc;
    struct wh_cfg_passive passive;
    int in_config; /* 0: left the file; drains and disappears from listings once empty */
    struct wh_tg_target_list targets;
    size_t n_targets;

    struct wh_tg_static *statics; /* the static targets of the last loaded file */
    size_t n_statics;

    struct wh_tg_snapshot *current; /* the registry's reference */
    uint64_t version;
    int dirty;

    /* metrics */
    struct wh_tg_counters counters;
    uint64_t state_changes;
    uint64_t fail_open_total;
    uint64_t checks[WH_HC_N_RESULTS];
    TAILQ_ENTRY(wh_tg_group) link;
};
TAILQ_HEAD(wh_tg_group_list, wh_tg_group);

struct wh_tg_subscriber {
    wh_targets_event_fn fn;
    void *arg;
};

struct wh_targets {
    uint32_t magic;
    struct event_base *base;
    wh_targets_publish_fn publish;
    void *publish_arg;
    struct wh_tg_subscriber subs[WH_TG_MAX_SUBSCRIBERS];
    size_t n_subs;
    wh_targets_drained_fn drained_hard;
    void *drained_arg;

    struct wh_tg_group_list groups; /* never freed before the registry: counters */
    uint64_t next_id;
    /* Monotonic start of the file being applied (0 outside): the targets
     * it registers come up together, so none of them slow-starts behind
     * another (see slow_start_begin). */
    double batch_began;
    struct event *sweep;
    struct event *flush;
    int flush_pending;
    double last_flush;

    /* a fake monotonic clock for tests; NULL = CLOCK_MONOTONIC */
    double (*clock)(void *arg);
    void *clock_arg;

    /* health-check latency histogram (seconds) */
    uint64_t hc_buckets[WH_HC_DURATION_BUCKETS + 1];
    double hc_sum;
    uint64_t hc_count;
    uint64_t hc_started;
};

extern const double wh_hc_duration_bounds[WH_HC_DURATION_BUCKETS];

/* ---- targets.c ---- */
double wh_tg_now(const struct wh_targets *reg); /* monotonic seconds */
struct wh_tg_group *wh_tg_group_find(struct wh_targets *reg, const char *name);
/* Recompute the target's visible state from its verdict, ejection and
 * draining; emits the event and marks the group dirty when it changed. */
void wh_tg_update_state(struct wh_tg_target *t);
void wh_tg_mark_dirty(struct wh_tg_group *g);
/* Publish every dirty group now. */
void wh_tg_flush(struct wh_targets *reg);
/* One pass of the periodic sweep at monotonic time now: passive counters,
 * ejections that end, drains that complete (tests call it directly). */
void wh_tg_sweep(struct wh_targets *reg, double now);
/* Feed one active-check result into the threshold machine. reason and desc
 * may be NULL for a pass. */
void wh_tg_check_result(struct wh_tg_target *t, int pass, const char *reason, const char *desc);
/* The target of g with this address text that is not draining, or NULL. */
struct wh_tg_target *wh_tg_find_live(struct wh_tg_group *g, const char *text);
/* Start draining t (no-op when it already drains). */
void wh_tg_drain(struct wh_tg_target *t);

/* ---- health.c ---- */
/* Start checking t (a new target: first check at once, almost). */
void wh_hc_start(struct wh_tg_target *t);
/* Stop checking t: cancel the check in progress and the timer. */
void wh_hc_stop(struct wh_tg_target *t);
/* The group's check settings changed: move t's next check onto the new
 * schedule (unless one is in progress). */
void wh_hc_reschedule(struct wh_tg_target *t);
/* Seconds into the interval at which t's checks are due (spreads them). */
double wh_hc_phase(uint64_t id, double interval);

static inline struct wh_tg_target *wh_tg_of(struct wh_target *t)
{
    return (struct wh_tg_target *)t;
}

#endif

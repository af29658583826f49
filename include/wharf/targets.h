/* wharf targets: the registry of target groups and their targets, active
 * health checks and passive outlier detection (ALB's target lifecycle).
 * This is the seam of DESIGN.md between the controller and the proxy.
 *
 * Threads
 * -------
 * The registry (struct wh_targets) lives on the control thread: every
 * wh_targets_* function must be called there, and every callback it makes
 * runs there. Proxy workers never call the registry. They read immutable
 * snapshots (struct wh_tg_snapshot) that the control thread hands them, and
 * they touch only the atomic fields of a struct wh_target (in_flight, the
 * passive counters) and the atomic counters a snapshot points to. The
 * functions marked "any thread" below are the only ones a worker may call.
 *
 * Lifetimes
 * ---------
 * A target is reference counted (refs): the registry holds one while the
 * target is registered, each live snapshot listing it holds one, and a
 * worker takes its own (wh_target_ref) for anything that must outlive the
 * snapshot it found the target in (an idle pooled connection, a tunnel).
 * The last wh_target_unref frees it, on whatever thread that happens; by
 * then the registry has already let go of everything else the target had.
 *
 * A snapshot is reference counted the same way. The registry keeps one on
 * each group's current snapshot; publish_cb hands a borrowed snapshot to the
 * caller, who takes one reference per holder (per worker) before returning.
 * A worker keeps its current snapshot until the next one arrives, and a
 * request that picked a target from a snapshot keeps a reference on that
 * snapshot (or on the target) until it ends.
 *
 * Draining
 * --------
 * wh_targets_deregister moves a target to `draining`: it leaves the routable
 * set at once (a new snapshot is published before the call returns). It
 * becomes `unused` and is removed when deregistration_delay has passed, or
 * earlier as soon as no live snapshot lists it (the `snapshots` count) and no
 * request is in flight on it (in_flight), whichever comes first. At the end
 * of the delay, drained_hard_cb tells the owner of long-lived connections
 * (WebSocket tunnels) to close the ones still open to it. Workers therefore
 * must: count every request and tunnel in in_flight (wh_target_begin/end),
 * and drop an old snapshot as soon as no request uses it.
 */
#ifndef WHARF_TARGETS_H
#define WHARF_TARGETS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "wharf/config.h"

struct event_base;
struct wh_targets;

enum wh_target_state {
    WH_TARGET_INITIAL,   /* registered, no check passed yet */
    WH_TARGET_HEALTHY,   /* routable */
    WH_TARGET_UNHEALTHY, /* failed checks, or ejected by passive detection */
    WH_TARGET_DRAINING,  /* deregistered: no new requests, in-flight ones finish */
    WH_TARGET_UNUSED,    /* drained; removed right after its event */
};

/* "initial", "healthy", "unhealthy", "draining", "unused". */
const char *wh_target_state_name(enum wh_target_state s);

#define WH_TARGET_MAGIC 0x54524754u   /* "TRGT" */
#define WH_SNAPSHOT_MAGIC 0x534e4150u /* "SNAP" */
#define WH_TARGET_SOURCE_MAX 80
#define WH_TARGET_REASON_MAX 32
#define WH_TARGET_DESC_MAX 128

struct wh_target {
    uint32_t magic;
    /* Immutable from registration on: any thread may read these. */
    uint64_t id;         /* unique in the registry, never reused */
    struct wh_addr addr; /* the traffic address; text "IP:port" / "[v6]:port" */
    char group[WH_NAME_MAX];
    char source[WH_TARGET_SOURCE_MAX]; /* "static", "service:NAME", "api" */

    /* Atomics: any thread. */
    atomic_int refs;                     /* memory lifetime, see the top of this file */
    atomic_int snapshots;                /* live snapshots listing this target (drain completion) */
    atomic_int in_flight;                /* requests and tunnels in flight: wh_target_begin/end */
    atomic_int passive_connect_failures; /* consecutive; wh_target_note_connect */
    atomic_int passive_5xx;              /* consecutive; wh_target_note_status */

    /* Control thread only (workers read weights from their snapshot). */
    int weight; /* 1..999 */
    enum wh_target_state state;
    char reason[WH_TARGET_REASON_MAX];    /* "" = none; "timeout", "passive", ... */
    char description[WH_TARGET_DESC_MAX]; /* "" = none; detail for people */
    double state_since;                   /* wall clock, seconds since the epoch */
};

/* ---- any thread ---- */

void wh_target_ref(struct wh_target *t);
/* Drops a reference; frees the target with the last one. NULL is fine. */
void wh_target_unref(struct wh_target *t);

/* A request (or tunnel) starts / ends on t. */
static inline void wh_target_begin(struct wh_target *t)
{
    atomic_fetch_add(&t->in_flight, 1);
}
static inline void wh_target_end(struct wh_target *t)
{
    atomic_fetch_sub(&t->in_flight, 1);
}

/* Passive outlier detection input: a connect attempt to t failed (refused,
 * reset before connected, timed out) or succeeded. A success resets the
 * consecutive count. */
static inline void wh_target_note_connect(struct wh_target *t, int ok)
{
    if (ok) {
        if (atomic_load_explicit(&t->passive_connect_failures, memory_order_relaxed))
            atomic_store(&t->passive_connect_failures, 0);
    } else {
        atomic_fetch_add(&t->passive_connect_failures, 1);
    }
}
/* A response with this status came from t (5xx counts, anything else resets). */
static inline void wh_target_note_status(struct wh_target *t, int status)
{
    if (status >= 500 && status <= 599)
        atomic_fetch_add(&t->passive_5xx, 1);
    else if (atomic_load_explicit(&t->passive_5xx, memory_order_relaxed))
        atomic_store(&t->passive_5xx, 0);
}

/* Per-group counters that workers bump and /metrics reports. Owned by the
 * registry and valid until wh_targets_free (free the registry only after the
 * workers have stopped). */
struct wh_tg_counters {
    atomic_ullong fail_open_requests; /* requests routed while the snapshot was fail-open */
    atomic_ullong responses[6];       /* by status class: [1] 1xx .. [5] 5xx, [0] no response */
};

struct wh_tg_member {
    struct wh_target *target; /* referenced by the snapshot */
    int weight;               /* 1..999, as registered */
    double healthy_since;     /* monotonic seconds it became healthy; 0 = not healthy */
    /* Monotonic seconds its slow start began; 0 = serves at full share. A
     * target enters slow start when it becomes healthy while its group has
     * slow_start on and at least one healthy target not in slow start (as
     * ALB: a group that starts from nothing serves at full share). */
    double slow_start_begin;
};

/* One group's routable targets at one moment. Immutable once published:
 * any thread may read every field. */
struct wh_tg_snapshot {
    uint32_t magic;
    atomic_int refs;
    char group[WH_NAME_MAX];
    uint64_t version;            /* grows by one per published snapshot of the group */
    enum wh_algorithm algorithm; /* the group's setting when this was built */
    double slow_start;           /* the group's slow_start, seconds; 0 = off */
    /* Routable: the healthy targets; when none is healthy but some are
     * initial or unhealthy, all of those (fail_open = 1, never draining
     * ones); n = 0 when the group has nothing to offer (answer 503). */
    int fail_open;
    size_t n;
    struct wh_tg_member *members;    /* n entries, registration order */
    size_t n_registered;             /* targets not draining (n = 0 with this > 0 cannot happen) */
    struct wh_tg_counters *counters; /* the group's, see above */
};

void wh_tg_snapshot_ref(struct wh_tg_snapshot *s);
/* Drops a reference; the last one releases the snapshot's targets and frees
 * it. Touches atomics only, so any thread may do it. NULL is fine. */
void wh_tg_snapshot_unref(struct wh_tg_snapshot *s);

/* ---- control thread ---- */

/* A state change, delivered synchronously. Every pointer is borrowed for the
 * duration of the call. */
struct wh_target_event {
    double time; /* wall clock, seconds since the epoch */
    const char *group;
    const char *address;
    const char *source;
    uint64_t target_id;
    enum wh_target_state old_state; /* a registration reports old_state = unused */
    enum wh_target_state new_state;
    const char *reason;      /* "" = none: "registered", "timeout", "passive", ... */
    const char *description; /* "" = none */
};

/* Callbacks. They run in the middle of a registry operation: they must
 * not call wh_targets_* functions (defer such work with an event), while
 * wh_target_ref and wh_tg_snapshot_ref are fine.
 *  publish: a group's routable set, weights or fail-open status changed.
 *           snap is borrowed: take a reference per holder before returning.
 *           Changes are coalesced (at most one publish per 10 ms, from a
 *           timer on base); a deregistration publishes before it returns.
 *  event:   a target changed state.
 *  drained_hard: a draining target reached the end of its
 *           deregistration_delay with requests or tunnels still in flight;
 *           close its long-lived connections now. t is borrowed for the
 *           call (wh_target_ref it to keep it). */
typedef void (*wh_targets_publish_fn)(void *arg, struct wh_tg_snapshot *snap);
typedef void (*wh_targets_event_fn)(void *arg, const struct wh_target_event *ev);
typedef void (*wh_targets_drained_fn)(void *arg, struct wh_target *t);

/* New empty registry on base (the control thread's). publish and event may
 * be NULL. Returns NULL when out of memory. Free with wh_targets_free, after
 * the workers have stopped: snapshots they still hold point at the groups'
 * counters. Snapshots still referenced elsewhere stay valid to unref. */
struct wh_targets *wh_targets_new(struct event_base *base, wh_targets_publish_fn publish,
                                  wh_targets_event_fn event, void *arg);
void wh_targets_free(struct wh_targets *reg);

/* More event subscribers (the controller). Up to 8. Returns 0 or -1. */
int wh_targets_subscribe(struct wh_targets *reg, wh_targets_event_fn fn, void *arg);
void wh_targets_on_drained_hard(struct wh_targets *reg, wh_targets_drained_fn fn, void *arg);

/* Apply a loaded configuration (borrowed for the call; nothing of it is
 * kept). Creates or updates groups and their algorithm, health check,
 * passive and deregistration settings. Static targets: on the first call all
 * are registered with source "static"; on later calls (reloads) only the
 * difference with the previous call's file applies: a target removed from
 * the file is deregistered (drains) if it is still the static one, an added
 * one is registered, a changed weight is applied. API and service targets
 * are untouched, except in a group that left the file: every target of
 * such a group drains and the group disappears once empty. Publishes what
 * changed. Returns 0, or -1 with err set and nothing changed. */
int wh_targets_set_groups(struct wh_targets *reg, const struct wh_config *cfg, char *err,
                          size_t errlen);

/* What the registry's writers return: 0, or one of these (negative), each
 * with a message in err where the function takes one. */
enum wh_targets_error {
    WH_TARGETS_OK = 0,
    WH_TARGETS_NO_GROUP = -1,    /* no such target group */
    WH_TARGETS_NO_TARGET = -2,   /* no such target in the group */
    WH_TARGETS_BAD_ADDRESS = -3, /* not a numeric IP:port / [IPv6]:port, or unspecified */
    WH_TARGETS_BAD_WEIGHT = -4,  /* not 1..999 */
    WH_TARGETS_BAD_SOURCE = -5,  /* missing, or WH_TARGET_SOURCE_MAX bytes or more */
    WH_TARGETS_EXISTS = -6,      /* registered and not draining */
    WH_TARGETS_DRAINING = -7,    /* the target is draining */
    WH_TARGETS_NO_MEMORY = -8,
};

/* "no_group", "no_target", "bad_address", ... ("ok" for 0). */
const char *wh_targets_error_name(int rc);

/* Register addr_text ("IP:port" or "[v6]:port", numeric only: nothing
 * blocks) in group with weight 1..999. source is copied. A target starts
 * `initial` and is checked at once (healthy after one pass), or starts
 * `healthy` in a group without health checks. Returns 0, or with err set:
 * NO_GROUP, BAD_ADDRESS, BAD_WEIGHT, BAD_SOURCE, EXISTS (a target with this
 * address is registered and not draining), NO_MEMORY. A draining target with
 * the same address keeps draining beside the new one. */
int wh_targets_register(struct wh_targets *reg, const char *group, const char *addr_text,
                        int weight, const char *source, char *err, size_t errlen);
/* The same with an address already resolved (static targets, tasks). */
int wh_targets_register_addr(struct wh_targets *reg, const char *group, const struct wh_addr *addr,
                             int weight, const char *source, char *err, size_t errlen);

/* Deregister (drain) the target with this address. Returns 0 (also when it
 * was draining already), NO_GROUP, NO_TARGET or BAD_ADDRESS. */
int wh_targets_deregister(struct wh_targets *reg, const char *group, const char *addr_text);

/* Set a target's health from outside the checks (the controller: a task that
 * exited is unhealthy at once). healthy = 0 with reason (copied, "" = none)
 * makes it unhealthy; 1 makes it healthy. Active checks, if any, go on from
 * there with their thresholds. Returns 0, NO_GROUP, NO_TARGET, BAD_ADDRESS or
 * DRAINING. */
int wh_targets_set_health(struct wh_targets *reg, const char *group, const char *addr_text,
                          int healthy, const char *reason);

/* The registered (or draining) target with this numeric address in group,
 * the non-draining one first; NULL if none. Borrowed: valid until control
 * returns to the loop. */
struct wh_target *wh_targets_find(struct wh_targets *reg, const char *group, const char *addr_text);

/* The group's current snapshot (publishing pending changes first), with a
 * reference for the caller; NULL for an unknown group. */
struct wh_tg_snapshot *wh_targets_snapshot(struct wh_targets *reg, const char *group);

/* ---- read-only queries (control thread) ---- */

/* What a visitor sees of a group. Borrowed for the call. */
struct wh_targets_group_info {
    const char *name;
    enum wh_algorithm algorithm;
    double slow_start; /* seconds; 0 = off */
};

/* Visit groups (in configuration order) and their targets (registration
 * order, draining ones included); group NULL = every group. Pointers are
 * borrowed for the call. Returns how many groups were visited. */
typedef void (*wh_targets_group_fn)(void *arg, const struct wh_targets_group_info *group);
typedef void (*wh_targets_target_fn)(void *arg, const struct wh_target *t);
int wh_targets_foreach(struct wh_targets *reg, const char *group, wh_targets_group_fn gfn,
                       wh_targets_target_fn tfn, void *arg);

/* Is there a target group of this name (in the file, or leaving it with
 * targets still draining)? */
int wh_targets_has_group(struct wh_targets *reg, const char *group);

/* Seconds left of t's slow start; 0 at full share (or t not healthy). */
double wh_targets_slow_start_remaining(struct wh_targets *reg, const struct wh_target *t);

struct evbuffer;
/* Append the registry's Prometheus text (every name prefixed wharf_):
 * wharf_targets, wharf_target_state_changes_total, wharf_target_fail_open_total,
 * wharf_target_fail_open_requests_total, wharf_target_group_responses_total,
 * wharf_health_checks_total and wharf_health_check_duration_seconds. */
void wh_targets_write_metrics(struct wh_targets *reg, struct evbuffer *out);

#endif

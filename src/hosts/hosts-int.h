/* hosts/ private declarations:
 *
 * hosts.c        the set and the host objects: add, remove, forget, the
 *                queries and setters, state changes and their subscriber
 * hosts_probe.c  the ping rounds of one host (its timer and calls) and what
 *                their answers and misses do to its state
 */
#ifndef WHARF_HOSTS_INT_H
#define WHARF_HOSTS_INT_H

#include <stdint.h>
#include <sys/queue.h>

#include "wharf/hosts.h"
#include "wharf/log.h"

#define WH_HOSTS_MAGIC 0x686f7374u /* "host" (the set) */
#define WH_HOST_MAGIC 0x68737431u  /* "hst1" (one host) */
#define WH_HOSTS_CALL_MAGIC 0x68636c6cu

/* One probe call in flight: which host and round it belongs to. Owned by
 * the host (its list), freed when the call answers or the host goes. */
struct wh_hosts_call {
    unsigned magic;
    struct wh_host *host;
    unsigned round;
    TAILQ_ENTRY(wh_hosts_call) link;
};

struct wh_host {
    unsigned magic;
    struct wh_hosts *set;
    TAILQ_ENTRY(wh_host) link; /* in set->hosts, then set->dead */
    char *id, *docker, *address;
    struct wh_host_attr *attrs; /* keys and values owned */
    size_t n_attrs;
    enum wh_host_source source;
    struct wh_runtime *rt;    /* the executor's */
    struct wh_runtime *probe; /* pings and info only */

    /* the probe (hosts_probe.c) */
    double ping_interval;
    int unreachable_after;
    struct event *tick;
    TAILQ_HEAD(, wh_hosts_call) calls;
    unsigned round;          /* the current round's number */
    int round_ok;            /* the current round was answered */
    int round_failed;        /* the current round got an error (in last_error) */
    const char *waiting_for; /* the call the current round waits for */
    int missed;              /* consecutive missed rounds */
    char last_error[WH_ERR_LEN];

    enum wh_host_state state;
    int draining, removing, dead;
    int64_t cpu_total, mem_total, cpu_reserved, mem_reserved;
    int running_tasks;
};

struct wh_hosts {
    unsigned magic;
    struct event_base *base;
    struct wh_curl_loop *loop;
    TAILQ_HEAD(, wh_host) hosts;
    TAILQ_HEAD(, wh_host) dead; /* forgotten, freed by the reaper */
    size_t n_hosts;
    struct event *reaper;
    wh_hosts_state_fn notify;
    void *notify_arg;
    wh_hosts_runtime_fn factory;
    void *factory_arg;
};

/* Move h to new_state (nothing when it is there already): one log line,
 * then the subscriber. */
void wh_hosts_change_state(struct wh_host *h, enum wh_host_state new_state, const char *reason);

/* The state of a host that answers: DRAINING when flagged, else ACTIVE. */
enum wh_host_state wh_hosts_up_state(const struct wh_host *h);

/* Arm h's timer and send its first round. 0, or -1 (out of memory). */
int wh_hosts_probe_start(struct wh_host *h);
/* Stop the timer and free the call records. The runtimes must be freed
 * first (their pending calls dropped without callbacks). */
void wh_hosts_probe_fini(struct wh_host *h);

#endif

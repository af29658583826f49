/* wharf hosts: the inventory of Docker hosts and their reachability.
 *
 * A wh_hosts is the set of hosts the controller may place tasks on. Each
 * host has two runtimes made from its parameters: the executor's
 * (wh_host_runtime: the host's max_concurrent_calls and call_timeout) and a
 * private probe runtime for pings and info, so that a queue of slow calls
 * (stops, creates) never delays a ping into a false UNREACHABLE.
 *
 * The probe runs in rounds, one every ping_interval: a round sends
 * GET /_ping, plus GET /info when the host is not reachable yet (at start
 * and after UNREACHABLE: the engine may have changed). A round is missed
 * when its answers are not all in, successful, before the next round
 * starts, whatever call_timeout is: a frozen engine accepts the connection
 * and never answers. An answer that comes after its round is ignored.
 *
 *   REGISTERING --answered--> ACTIVE, or DRAINING when the draining flag is set
 *   any state   --unreachable_after consecutive missed rounds--> UNREACHABLE
 *   UNREACHABLE --answered (info re-read)--> ACTIVE or DRAINING
 *   ACTIVE <--wh_host_set_draining--> DRAINING
 *
 * REGISTERING (ECS's word for an instance not yet in service) lasts until
 * the first answer: a controller adopting tasks at start can wait until no
 * host is REGISTERING, so that it does not start duplicates of tasks that
 * run on a host it has not heard from yet.
 *
 * Removal: wh_hosts_remove sets the host draining for good and tells the
 * subscriber; its owner moves the tasks away (or gives up on an
 * UNREACHABLE host) and then calls wh_hosts_forget.
 *
 * Resources: cpu_total = NCPU x 1024 units and mem_total = MemTotal in MiB,
 * both from the last info (0 until the first one). Reservations are the
 * caller's bookkeeping (wh_host_reserve / wh_host_release for each task
 * placed or gone); the inventory only keeps the sums.
 *
 * Everything here runs on the thread of the set's event_base and never
 * blocks it. Pointers returned by queries are borrowed from the host and
 * valid until it is forgotten or the set freed.
 */
#ifndef WHARF_HOSTS_H
#define WHARF_HOSTS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct wh_curl_loop;
struct wh_runtime;
struct wh_rt_host_params;
struct wh_hosts;
struct wh_host;

enum wh_host_state {
    WH_HOST_REGISTERING = 0, /* added, no answer yet */
    WH_HOST_ACTIVE,
    WH_HOST_DRAINING,    /* no new tasks; running ones move elsewhere */
    WH_HOST_UNREACHABLE, /* unreachable_after rounds missed */
};

enum wh_host_source { WH_HOST_SOURCE_CONFIG = 0, WH_HOST_SOURCE_EC2 };

struct wh_host_attr {
    const char *key;
    const char *value;
};

/* One host as its caller describes it (the configuration, EC2 discovery):
 * every pointer is borrowed for the call to wh_hosts_add only. */
struct wh_host_params {
    const char *id;                          /* required, unique in the set */
    const char *docker;                      /* "unix:///path" or "tcp://addr:port" */
    const char *address;                     /* where published ports are reached; NULL: the
                                                address of a tcp:// endpoint (required for unix) */
    const char *tls_ca, *tls_cert, *tls_key; /* PEM paths, all or none */
    int max_concurrent_calls;                /* 0: 8 */
    double call_timeout;                     /* seconds; 0: 30 */
    double ping_interval;                    /* seconds; 0: 2 (any > 0 works here) */
    int unreachable_after;                   /* rounds; 0: 3 */
    int draining;                            /* start with the draining flag */
    const struct wh_host_attr *attributes;   /* az, instance_id, instance_type, tags */
    size_t n_attributes;
    enum wh_host_source source;
};

/* A state change of host (borrowed until return) from old to new, with a
 * one-line reason. Also called once when a removal starts: then old may
 * equal new and wh_host_removing(host) is true. It may call any function
 * here except wh_hosts_free. */
typedef void (*wh_hosts_state_fn)(void *arg, struct wh_host *host, enum wh_host_state old,
                                  enum wh_host_state new_state, const char *reason);

/* How a host's runtimes are made: probe is 0 for the executor's runtime,
 * 1 for the probe's. NULL with a message in err. The default is
 * wh_docker_runtime_new on the set's curl loop; tests put a fake here. */
typedef struct wh_runtime *(*wh_hosts_runtime_fn)(void *arg, const struct wh_rt_host_params *p,
                                                  int probe, char *err, size_t errlen);

/* ---- the set ---- */

/* New empty set on base; loop (for the default runtimes; may be NULL with
 * another factory) is borrowed: both must outlive the set. NULL on out of
 * memory. Free with wh_hosts_free. */
struct wh_hosts *wh_hosts_new(struct event_base *base, struct wh_curl_loop *loop);

/* Free every host and its runtimes, dropping calls in flight (no callback
 * runs: the owner must have none pending on the executor's runtimes). NULL
 * is a no-op. */
void wh_hosts_free(struct wh_hosts *hs);

/* The one subscriber of state changes (fn NULL: none). */
void wh_hosts_subscribe(struct wh_hosts *hs, wh_hosts_state_fn fn, void *arg);

/* Replace how runtimes are made, for the hosts added afterwards. */
void wh_hosts_set_runtime_factory(struct wh_hosts *hs, wh_hosts_runtime_fn fn, void *arg);

/* Add a host in REGISTERING and send its first ping at once. Returns the
 * host (owned by the set), or NULL with a message in err: duplicate id
 * (also while a host of that id is being removed), no docker endpoint, no
 * address for a unix endpoint, a runtime that could not be made. */
struct wh_host *wh_hosts_add(struct wh_hosts *hs, const struct wh_host_params *p, char *err,
                             size_t errlen);

/* Start removing host id: the draining flag is set for good (the state
 * becomes DRAINING unless REGISTERING or UNREACHABLE) and the subscriber is
 * told. The host keeps probing until wh_hosts_forget. 0, or -1 when id is
 * unknown. Removing twice is a no-op. */
int wh_hosts_remove(struct wh_hosts *hs, const char *id);

/* Take host out of the set now (find and foreach no longer see it) and
 * free it soon, from the loop, with its runtimes: the owner must have no
 * call pending on wh_host_runtime(host), and must not use host afterwards.
 * Safe from the subscriber. */
void wh_hosts_forget(struct wh_hosts *hs, struct wh_host *host);

/* The host of that id, or NULL. */
struct wh_host *wh_hosts_find(const struct wh_hosts *hs, const char *id);

size_t wh_hosts_count(const struct wh_hosts *hs);

/* fn for each host, in the order they were added. fn may change hosts
 * (reserve, draining, remove) and forget the host it is given, but must
 * not add hosts nor forget others. */
void wh_hosts_foreach(const struct wh_hosts *hs, void (*fn)(void *arg, struct wh_host *host),
                      void *arg);

/* ---- one host: queries ---- */

const char *wh_host_id(const struct wh_host *h);
enum wh_host_state wh_host_state(const struct wh_host *h);
/* "REGISTERING", "ACTIVE", "DRAINING", "UNREACHABLE" */
const char *wh_host_state_name(enum wh_host_state state);
enum wh_host_source wh_host_source(const struct wh_host *h);
/* "config", "ec2" */
const char *wh_host_source_name(enum wh_host_source source);
const char *wh_host_docker(const struct wh_host *h);
const char *wh_host_address(const struct wh_host *h);
/* The attributes (copied from the params); *n their number. */
const struct wh_host_attr *wh_host_attributes(const struct wh_host *h, size_t *n);
/* The value of attribute key, or NULL. */
const char *wh_host_attribute(const struct wh_host *h, const char *key);

/* The draining flag (set by the params, wh_host_set_draining or a removal),
 * which an UNREACHABLE host keeps for when it answers again. */
int wh_host_draining(const struct wh_host *h);
int wh_host_removing(const struct wh_host *h);
/* Consecutive missed rounds (0 after an answered one). */
int wh_host_missed(const struct wh_host *h);
/* Why the last round failed, or "" when the last round was answered. */
const char *wh_host_last_error(const struct wh_host *h);

/* CPU units (NCPU x 1024) and memory (MiB) from the last info: 0 before. */
int64_t wh_host_cpu_total(const struct wh_host *h);
int64_t wh_host_mem_total(const struct wh_host *h);
int64_t wh_host_cpu_reserved(const struct wh_host *h);
int64_t wh_host_mem_reserved(const struct wh_host *h);
/* total - reserved, 0 when reservations exceed the total. */
int64_t wh_host_cpu_free(const struct wh_host *h);
int64_t wh_host_mem_free(const struct wh_host *h);
int wh_host_running_tasks(const struct wh_host *h);

/* The executor's runtime (owned by the host; freed with it). */
struct wh_runtime *wh_host_runtime(const struct wh_host *h);

/* ---- one host: what its owner sets ---- */

/* The draining flag: the state follows at once when ACTIVE or DRAINING
 * (the subscriber is called from here), else at the next answer. -1 when
 * clearing it on a host being removed (nothing changes), else 0. */
int wh_host_set_draining(struct wh_host *h, int draining);

/* Add a task's reservation (cpu units, memory MiB) to the host's sums.
 * Never refused: placement checks the fit first, and adopted tasks count
 * even on a host that is over-committed. */
void wh_host_reserve(struct wh_host *h, int64_t cpu, int64_t mem);
/* Take a reservation back (clamped at 0, with a warning: a release without
 * its reserve is a bug of the caller). */
void wh_host_release(struct wh_host *h, int64_t cpu, int64_t mem);
/* The number of tasks the controller counts on the host, for the API. */
void wh_host_set_running_tasks(struct wh_host *h, int n);

#endif

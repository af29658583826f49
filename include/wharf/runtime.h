/* wharf runtime: what the controller asks of one host's container engine.
 *
 * A wh_runtime is one host (one engine endpoint). Its operations are a table
 * of function pointers, so the controller can be tested against a mock; the
 * real implementation speaks the Docker Engine API (wh_docker_runtime_new).
 *
 * Contract of every operation:
 * - it is called on the thread that runs the runtime's event_base;
 * - it returns 0 and later calls its callback exactly once, from the loop,
 *   never from within the operation itself; or it returns -1 (out of
 *   memory only) and never calls the callback;
 * - the callback gets a wh_rt_error whose kind is WH_RT_OK on success; every
 *   pointer handed to a callback is borrowed until the callback returns;
 * - freeing the runtime drops every pending operation without a callback.
 * Arguments (strings, specs) are copied: they may be freed on return.
 */
#ifndef WHARF_RUNTIME_H
#define WHARF_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "wharf/log.h"

struct wh_runtime;
struct wh_rt_watch;
struct wh_curl_loop;

/* ---- errors ---- */

enum wh_rt_errkind {
    WH_RT_OK = 0,
    WH_RT_ERR_CONNECT,       /* connection refused, no route, name not resolved */
    WH_RT_ERR_TLS,           /* handshake failed, certificate refused or not trusted */
    WH_RT_ERR_TIMEOUT,       /* connect timeout or call_timeout */
    WH_RT_ERR_TRANSPORT,     /* connection lost mid-call, empty reply */
    WH_RT_ERR_HTTP,          /* the engine answered an error status; see message */
    WH_RT_ERR_PROTOCOL,      /* the answer could not be understood */
    WH_RT_ERR_PULL,          /* the pull's progress stream reported an error */
    WH_RT_ERR_IMAGE_MISSING, /* pull policy "never" and the image is absent */
    WH_RT_ERR_INVALID,       /* bad argument */
    WH_RT_ERR_INTERNAL,      /* out of memory, libcurl setup */
};

struct wh_rt_error {
    enum wh_rt_errkind kind;
    long http_status; /* WH_RT_ERR_HTTP: the status; else 0 */
    /* One line: host, call, what failed, the engine's own message when it
     * gave one. E.g. "host h1 (tcp://10.1.0.2:2376): POST /containers/create:
     * HTTP 404: No such image: nope:latest". */
    char message[WH_ERR_LEN];
};

/* Static name of a kind ("ok", "connect", "tls", "timeout", ...). */
const char *wh_rt_errkind_name(enum wh_rt_errkind kind);

/* True when the failure says the host can't be talked to (connect, TLS,
 * timeout, transport): the caller marks the host UNREACHABLE. */
int wh_rt_error_unreachable(const struct wh_rt_error *err);

/* True for HTTP 404 (no such container or image). */
int wh_rt_error_not_found(const struct wh_rt_error *err);

/* ---- results ---- */

struct wh_rt_kv {
    const char *key;
    const char *value;
};

struct wh_rt_info {
    int ncpu;
    int64_t mem_total; /* bytes */
    char server_version[64];
    char api_version[16];          /* the version this runtime speaks to the engine */
    char name[128];                /* the engine's host name */
    const struct wh_rt_kv *labels; /* engine labels "k=v" split; n_labels entries */
    size_t n_labels;
};

struct wh_rt_image {
    char id[80]; /* "sha256:..." */
    int64_t size;
};

struct wh_rt_container {
    char id[72];
    char name[128]; /* without Docker's leading '/' */
    char image[256];
    char state[16];       /* created, running, paused, restarting, removing, exited, dead */
    char status[64];      /* list only: Docker's text ("Up 3 seconds") */
    int running;          /* running or paused */
    int exit_code;        /* -1 when unknown */
    int pid;              /* inspect only; 0 when not running */
    char started_at[40];  /* RFC 3339 from the engine; "" when never started */
    char finished_at[40]; /* inspect only */
    int container_port;   /* the published container port (tcp); 0 = none */
    int host_port;        /* its IPv4 host port; 0 = none */
    char health[16];      /* inspect only: starting, healthy, unhealthy; "" = no check */
    const struct wh_rt_kv *labels;
    size_t n_labels;
};

enum wh_rt_event_kind {
    WH_RT_EV_CONTAINER,    /* a container event, from the stream or synthetic */
    WH_RT_EV_CONNECTED,    /* stream (re)connected and the re-list delivered */
    WH_RT_EV_DISCONNECTED, /* stream lost or refused; reconnect is scheduled */
};

struct wh_rt_event {
    enum wh_rt_event_kind kind;
    /* WH_RT_EV_CONTAINER: */
    int synthetic;   /* 1 when derived from a re-list after a reconnect */
    char action[64]; /* create, start, die, stop, kill, destroy, oom,
                        "health_status: healthy", ... as the engine says */
    char id[72];
    char name[128];
    int exit_code; /* die: the exit code, -1 when unknown; else -1 */
    double time;   /* seconds since the epoch (synthetic: when detected) */
    /* stream events: Actor.Attributes (the labels plus image, name,
     * exitCode, signal); synthetic: the container's labels */
    const struct wh_rt_kv *labels;
    size_t n_labels;
    /* WH_RT_EV_DISCONNECTED: why */
    const struct wh_rt_error *error;
};

/* ---- requests ---- */

enum wh_rt_pull_policy { WH_RT_PULL_IF_NOT_PRESENT = 0, WH_RT_PULL_ALWAYS, WH_RT_PULL_NEVER };

/* "if-not-present", "always", "never" → 0, else -1. */
int wh_rt_pull_policy_parse(const char *text, enum wh_rt_pull_policy *out);

struct wh_rt_auth {
    const char *username;
    const char *password;
    const char *server_address; /* NULL: the registry of the image reference */
};

struct wh_rt_create_spec {
    const char *name;       /* NULL: the engine picks one */
    const char *image;      /* required, "repo:tag" */
    const char *const *cmd; /* n_cmd 0: the image's CMD */
    size_t n_cmd;
    const struct wh_rt_kv *env;
    size_t n_env;
    const struct wh_rt_kv *labels;
    size_t n_labels;
    int container_port;      /* tcp port published on a dynamic IPv4 host port; 0 = none */
    int memory_mib;          /* hard limit (Memory); 0 = none */
    int cpu_shares;          /* CpuShares; 0 = default */
    const char *stop_signal; /* NULL: the image's */
    int stop_timeout;        /* seconds; < 0: the engine's default */
    const char *log_driver;  /* NULL: the engine's default */
    const struct wh_rt_kv *log_opts;
    size_t n_log_opts;
};

struct wh_rt_events_params {
    const char *const *labels; /* label filters ("wharf.service", "k=v"); none: all */
    size_t n_labels;
    double backoff_initial; /* first reconnect delay; 0: 0.25 s */
    double backoff_max;     /* 0: 30 s */
    int sync_initial;       /* 1: the first list is delivered as synthetic events too */
};

/* ---- callbacks ---- */

typedef void (*wh_rt_done_fn)(void *arg, const struct wh_rt_error *err);
typedef void (*wh_rt_info_fn)(void *arg, const struct wh_rt_error *err,
                              const struct wh_rt_info *info);
typedef void (*wh_rt_image_fn)(void *arg, const struct wh_rt_error *err,
                               const struct wh_rt_image *image);
typedef void (*wh_rt_create_fn)(void *arg, const struct wh_rt_error *err, const char *id);
typedef void (*wh_rt_inspect_fn)(void *arg, const struct wh_rt_error *err,
                                 const struct wh_rt_container *c);
typedef void (*wh_rt_list_fn)(void *arg, const struct wh_rt_error *err,
                              const struct wh_rt_container *list, size_t n);
/* Called for each event until wh_rt_events_stop (which may be called from
 * here). */
typedef void (*wh_rt_event_fn)(void *arg, const struct wh_rt_event *ev);

/* ---- the interface ---- */

struct wh_runtime_ops {
    void (*free)(struct wh_runtime *rt);
    int (*ping)(struct wh_runtime *rt, wh_rt_done_fn cb, void *arg);
    int (*info)(struct wh_runtime *rt, wh_rt_info_fn cb, void *arg);
    int (*image_inspect)(struct wh_runtime *rt, const char *image, wh_rt_image_fn cb, void *arg);
    int (*image_pull)(struct wh_runtime *rt, const char *image, const struct wh_rt_auth *auth,
                      enum wh_rt_pull_policy policy, wh_rt_done_fn cb, void *arg);
    int (*create)(struct wh_runtime *rt, const struct wh_rt_create_spec *spec, wh_rt_create_fn cb,
                  void *arg);
    int (*start)(struct wh_runtime *rt, const char *id, wh_rt_done_fn cb, void *arg);
    int (*stop)(struct wh_runtime *rt, const char *id, int timeout, wh_rt_done_fn cb, void *arg);
    int (*kill)(struct wh_runtime *rt, const char *id, const char *signal, wh_rt_done_fn cb,
                void *arg);
    int (*remove)(struct wh_runtime *rt, const char *id, int force, wh_rt_done_fn cb, void *arg);
    int (*inspect)(struct wh_runtime *rt, const char *id, wh_rt_inspect_fn cb, void *arg);
    int (*list)(struct wh_runtime *rt, const char *const *labels, size_t n_labels, wh_rt_list_fn cb,
                void *arg);
    struct wh_rt_watch *(*events_start)(struct wh_runtime *rt,
                                        const struct wh_rt_events_params *params, wh_rt_event_fn cb,
                                        void *arg);
    void (*events_stop)(struct wh_rt_watch *watch);
};

/* Implementations put this first in their own struct. */
struct wh_runtime {
    const struct wh_runtime_ops *ops;
};

/* Free rt and drop its pending operations and watches (no callbacks).
 * NULL is a no-op. */
void wh_runtime_free(struct wh_runtime *rt);

/* Probe: GET /_ping. */
int wh_rt_ping(struct wh_runtime *rt, wh_rt_done_fn cb, void *arg);
/* Resources and identity: GET /info. */
int wh_rt_info(struct wh_runtime *rt, wh_rt_info_fn cb, void *arg);
/* Not found → WH_RT_ERR_HTTP with status 404. */
int wh_rt_image_inspect(struct wh_runtime *rt, const char *image, wh_rt_image_fn cb, void *arg);
/* Make image present under policy; auth (NULL: anonymous) is copied. Not
 * bound by call_timeout nor max_concurrent_calls; fails when the engine
 * sends no progress for call_timeout. */
int wh_rt_image_pull(struct wh_runtime *rt, const char *image, const struct wh_rt_auth *auth,
                     enum wh_rt_pull_policy policy, wh_rt_done_fn cb, void *arg);
int wh_rt_create(struct wh_runtime *rt, const struct wh_rt_create_spec *spec, wh_rt_create_fn cb,
                 void *arg);
/* Already running counts as success. */
int wh_rt_start(struct wh_runtime *rt, const char *id, wh_rt_done_fn cb, void *arg);
/* SIGTERM (or the stop signal), then SIGKILL after timeout seconds; the
 * call's own timeout is call_timeout + timeout. Already stopped: success. */
int wh_rt_stop(struct wh_runtime *rt, const char *id, int timeout, wh_rt_done_fn cb, void *arg);
/* signal NULL: SIGKILL. */
int wh_rt_kill(struct wh_runtime *rt, const char *id, const char *signal, wh_rt_done_fn cb,
               void *arg);
/* force: kill first if running. Volumes created for it go too. */
int wh_rt_remove(struct wh_runtime *rt, const char *id, int force, wh_rt_done_fn cb, void *arg);
int wh_rt_inspect(struct wh_runtime *rt, const char *id, wh_rt_inspect_fn cb, void *arg);
/* All containers (running or not) carrying every label filter given. */
int wh_rt_list(struct wh_runtime *rt, const char *const *labels, size_t n_labels, wh_rt_list_fn cb,
               void *arg);
/* Watch container events: a long-lived stream, reconnected with exponential
 * backoff; after each connect the containers are listed again and the
 * differences with the last known set are delivered as synthetic events
 * (running → exited or gone: die; not running → running: start; gone:
 * destroy; new: create/start/die as its state says), then CONNECTED.
 * Returns a watch (stop with wh_rt_events_stop) or NULL (out of memory). */
struct wh_rt_watch *wh_rt_events_start(struct wh_runtime *rt,
                                       const struct wh_rt_events_params *params, wh_rt_event_fn cb,
                                       void *arg);
/* Stop and free a watch of rt; no callback afterwards. NULL is a no-op. */
void wh_rt_events_stop(struct wh_runtime *rt, struct wh_rt_watch *watch);

/* ---- the Docker Engine API implementation ---- */

/* One engine, as the caller describes it (from its configuration, its
 * command line...): plain values, every pointer borrowed for the call to
 * wh_docker_runtime_new only (the runtime copies what it keeps). */
struct wh_rt_host_params {
    const char *id;       /* for messages; NULL: the endpoint */
    const char *endpoint; /* "unix:///path" or "tcp://addr:port" */
    /* Mutual TLS for tcp (all three or none; none means plain HTTP): PEM
     * file paths, checked readable when the runtime is made. */
    const char *tls_ca, *tls_cert, *tls_key;
    int max_concurrent_calls; /* 0: 8; the rest wait FIFO */
    double call_timeout;      /* seconds; 0: 30 */
    double connect_timeout;   /* seconds; 0: min(call_timeout, 10) */
};

/* A runtime for one Docker engine. loop is borrowed and must outlive it.
 * NULL with a message in err (bad endpoint, unreadable TLS files, memory). */
struct wh_runtime *wh_docker_runtime_new(struct wh_curl_loop *loop,
                                         const struct wh_rt_host_params *p, char *err,
                                         size_t errlen);

/* The API version negotiated with the engine ("" before the first call). */
const char *wh_docker_api_version(const struct wh_runtime *rt);

#endif

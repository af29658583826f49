/* runtime/ private declarations: the Docker driver's pieces, from the top
 * down (each file calls only those below it):
 *
 * docker.c           the host object: the ops table, new and free
 * docker_ops.c       the operations of the wh_runtime interface
 * docker_events.c    the /events watch
 * docker_transport.c the host's call queue over libcurl, version
 *                    negotiation, error classification
 * docker_json.c      pure helpers (no I/O): endpoint URLs, the line splitter,
 *                    JSON ↔ structs, the re-list diff; unit-tested directly
 */
#ifndef WHARF_RUNTIME_INT_H
#define WHARF_RUNTIME_INT_H

#include <stddef.h>
#include <sys/queue.h>

#include <cjson/cJSON.h>

#include "wharf/curl_event.h"
#include "wharf/obj.h"
#include "wharf/runtime.h"

#define WH_DK_API_VERSION "1.41"
#define WH_DK_MAGIC 0x646f636bu /* "dock" */

/* ---- pure helpers (docker_json.c) ---- */

struct wh_dk_endpoint {
    int is_unix;
    char socket_path[108]; /* unix only */
    char base_url[160];    /* "http://localhost" for unix; "https://addr:port" for tcp */
};

/* Parse "unix:///path" or "tcp://host:port" ("tcp://[v6]:port"; port
 * defaults to 2376 with TLS, 2375 without). 0, or -1 with err. */
int wh_dk_endpoint_parse(const char *url, int tls, struct wh_dk_endpoint *out, char *err,
                         size_t errlen);

/* Percent-encode s (RFC 3986 unreserved kept). New string, free(); NULL on
 * out of memory. */
char *wh_dk_urlencode(const char *s);

/* filters={"label":[...]} (plus "type":["container"] when events) as a
 * query value, url-encoded. New string, free(); "" when there is no filter. */
char *wh_dk_filters_query(const char *const *labels, size_t n, int events);

/* Splits a byte stream into lines, whatever the chunk boundaries. */
struct wh_dk_lines {
    char *buf;
    size_t len, cap;
    size_t max; /* longest line accepted; 0: 1 MiB */
};

/* Called per complete line (no "\n", no trailing "\r", never empty; line
 * is writable and NUL-terminated, borrowed for the call). Return 0 to go
 * on, -1 to stop. */
typedef int (*wh_dk_line_fn)(void *arg, char *line, size_t len);

/* Feed data; calls fn per completed line. -1 when fn stopped or a line
 * exceeds max (then the splitter is reset). */
int wh_dk_lines_feed(struct wh_dk_lines *ls, const char *data, size_t n, wh_dk_line_fn fn,
                     void *arg);
void wh_dk_lines_reset(struct wh_dk_lines *ls);
void wh_dk_lines_free(struct wh_dk_lines *ls);

/* A container as the driver keeps it: public view plus owned storage. */
struct wh_dk_ctr {
    struct wh_rt_container c; /* c.labels points into kv */
    struct wh_rt_kv *kv;      /* owned; strings point into labels */
    cJSON *labels;            /* owned object of strings, never NULL once filled */
};

/* Fill from one element of GET /containers/json. 0 or -1. */
int wh_dk_ctr_from_list(const cJSON *item, struct wh_dk_ctr *out);
/* Fill from GET /containers/{id}/json. 0 or -1. */
int wh_dk_ctr_from_inspect(const cJSON *doc, struct wh_dk_ctr *out);
/* Fill from fields (labels: object of strings or NULL, duplicated). */
int wh_dk_ctr_set(struct wh_dk_ctr *out, const char *id, const char *name, int running,
                  int exit_code, const cJSON *labels);
int wh_dk_ctr_copy(struct wh_dk_ctr *dst, const struct wh_dk_ctr *src);
void wh_dk_ctr_clear(struct wh_dk_ctr *ctr);
/* Sort by id (for wh_dk_diff and lookups). */
void wh_dk_ctr_sort(struct wh_dk_ctr *v, size_t n);
/* Index of id in a sorted array, or -1. */
long wh_dk_ctr_find(const struct wh_dk_ctr *v, size_t n, const char *id);

/* A GET /containers/json answer as a new array (free with wh_dk_list_free).
 * 0 or -1. */
int wh_dk_list_parse(const cJSON *doc, struct wh_dk_ctr **out, size_t *n);
void wh_dk_list_free(struct wh_dk_ctr *v, size_t n);
/* GET /containers/json path for these label filters (all=1). New string. */
char *wh_dk_list_path(const char *const *labels, size_t n_labels);

/* Build a kv array over the string members of obj (borrowed strings).
 * *out NULL when there are none. 0 or -1. */
int wh_dk_kv_from_object(const cJSON *obj, struct wh_rt_kv **out, size_t *n);

/* The IPv4 binding in NetworkSettings.Ports: {"8080/tcp": [{"HostIp":
 * "0.0.0.0", "HostPort": "49153"}, ...]}. Prefers want_port when non-zero.
 * 0 and the ports, or -1 when there is none. */
int wh_dk_ports_ipv4(const cJSON *ports, int want_port, int *container_port, int *host_port);

/* The exit code in a list Status ("Exited (137) 3 seconds ago"), or -1. */
int wh_dk_status_exit_code(const char *status);

/* Body of POST /containers/create. New string, free(); NULL with err. */
char *wh_dk_create_body(const struct wh_rt_create_spec *spec, char *err, size_t errlen);

/* Split an image reference into fromImage and tag ("latest" by default;
 * "" with a digest reference). 0, or -1 when it does not fit. */
int wh_dk_image_ref_split(const char *ref, char *repo, size_t repolen, char *tag, size_t taglen);

/* X-Registry-Auth value: base64url of {"username","password","serveraddress"}.
 * New string, free(); NULL on out of memory. */
char *wh_dk_registry_auth(const struct wh_rt_auth *auth);

/* The chosen API version: min(server, ours), at least server_min. */
void wh_dk_pick_version(const char *server, const char *server_min, char *out, size_t outlen);

/* What the re-list diff found: action ("start", "die", "create", "destroy")
 * for container c, with exit_code for die (-1 unknown). */
typedef void (*wh_dk_diff_fn)(void *arg, const char *action, const struct wh_dk_ctr *c,
                              int exit_code);

/* Compare the last known set with a fresh list (both sorted by id) and
 * report each difference, in id order, as the event that explains it. */
void wh_dk_diff(const struct wh_dk_ctr *old, size_t n_old, const struct wh_dk_ctr *cur,
                size_t n_cur, wh_dk_diff_fn fn, void *arg);

/* Parse one /events line into ev (labels into *kv, which the caller frees,
 * borrowed from doc). 0, or -1 when it isn't a container event. */
int wh_dk_event_parse(const cJSON *doc, struct wh_rt_event *ev, struct wh_rt_kv **kv);

/* ---- the host and its calls (docker_transport.c) ---- */

struct wh_dk_req;

/* How a call completes: err->kind is WH_RT_OK when the transfer worked and
 * the status is < 400; res is NULL when it never ran (negotiation failed).
 * Both borrowed for the call. When the host is freed with the request still
 * pending, fn runs once with an error for which wh_dk_dropped() is true: it
 * must then release its context and call nobody. */
typedef void (*wh_dk_done_fn)(void *ctx, const struct wh_rt_error *err,
                              const struct wh_curl_result *res);

enum wh_dk_call_class {
    WH_DK_CALL,   /* counted in max_concurrent_calls, bound by call_timeout */
    WH_DK_STREAM, /* events, pulls: neither (a pull has a no-progress limit) */
};

struct wh_dk_call_opts {
    const char *method; /* GET, POST, DELETE */
    const char *path;   /* "/containers/json?all=1" (the /vX.Y prefix is added) */
    int unversioned;    /* 1: no /vX.Y prefix (/_ping, /version) */
    const char *body;   /* JSON, copied; NULL: none */
    const char *auth;   /* X-Registry-Auth, copied; NULL: none */
    enum wh_dk_call_class cls;
    double extra_timeout;   /* added to call_timeout (stop) */
    double stall_timeout;   /* WH_DK_STREAM: fail after this long without data; 0: never */
    wh_curl_chunk_fn chunk; /* streaming body; NULL: buffered */
    void *chunk_arg;
    /* Called once the response headers are in (status given), from a curl
     * callback: it may submit, but must not cancel or free; may be NULL. */
    void (*on_headers)(void *ctx, long status);
};

/* The host: made and freed by docker.c, its queue run by the transport. */
struct wh_dk {
    struct wh_runtime base; /* first */
    unsigned magic;
    struct wh_curl_loop *loop;
    struct event_base *evb;
    char *id, *url;
    struct wh_dk_endpoint ep;
    char *tls_ca, *tls_cert, *tls_key;
    int max_calls;
    double call_timeout, connect_timeout;
    char api[16]; /* negotiated version, "" until known */
    struct wh_dk_req *negotiation;
    int inflight; /* WH_DK_CALL requests running */
    TAILQ_HEAD(, wh_dk_req) waiting;
    TAILQ_HEAD(, wh_dk_req) running;
    LIST_HEAD(, wh_rt_watch) watches;
    struct event *kick; /* deferred completions and dispatch */
    int busy;           /* depth of our callbacks running */
    int dying;          /* freed from a callback: destroy when busy drops to 0 */
};

/* Bracket every call of user code: a runtime freed from its callback is
 * destroyed by wh_dk_leave, which then returns -1 (touch nothing of it). */
void wh_dk_enter(struct wh_dk *dk);
int wh_dk_leave(struct wh_dk *dk);

#define WH_DK_DROPPED ((enum wh_rt_errkind) - 1)

static inline int wh_dk_dropped(const struct wh_rt_error *err)
{
    return err->kind == WH_DK_DROPPED;
}

/* Queue a call; fn(ctx, ...) runs exactly once, from the loop, unless the
 * request is cancelled or the host freed. Returns the request (valid until
 * fn runs) or NULL on out of memory (fn not called). */
struct wh_dk_req *wh_dk_call(struct wh_dk *dk, const struct wh_dk_call_opts *o, wh_dk_done_fn fn,
                             void *ctx);

/* Drop a request: fn is never called. Safe from fn of other requests and
 * from chunk callbacks. */
void wh_dk_req_cancel(struct wh_dk_req *req);

/* Fill err for a call that failed before or outside a transfer. */
void wh_dk_error(const struct wh_dk *dk, struct wh_rt_error *err, enum wh_rt_errkind kind,
                 const char *what, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The JSON of a buffered successful answer, or NULL with err set
 * (WH_RT_ERR_PROTOCOL). Free with cJSON_Delete. */
cJSON *wh_dk_parse_body(const struct wh_dk *dk, const struct wh_curl_result *res, const char *what,
                        struct wh_rt_error *err);

/* A request that runs no transfer: fn(ctx, err, NULL) from the loop, later
 * (operations that fail before any call). NULL on out of memory. */
struct wh_dk_req *wh_dk_fail(struct wh_dk *dk, const struct wh_rt_error *err, wh_dk_done_fn fn,
                             void *ctx);

static inline struct wh_dk *wh_dk_from_rt(struct wh_runtime *rt)
{
    struct wh_dk *dk;
    WH_CAST_OBJ(dk, (struct wh_dk *)rt, WH_DK_MAGIC);
    return dk;
}

/* Parse a list answer (err is the call's) into *v (free with
 * wh_dk_list_free); 0, or -1 with *e set. */
int wh_dk_list_answer(const struct wh_dk *dk, const struct wh_rt_error *err,
                      const struct wh_curl_result *res, struct wh_rt_error *e, struct wh_dk_ctr **v,
                      size_t *n);

/* The transport's own resources of a host whose fields docker.c set: 0 or
 * -1 (out of memory). fini drops every request (their owners free their
 * contexts, nobody is called back); safe after a failed or no init. */
int wh_dk_transport_init(struct wh_dk *dk);
void wh_dk_transport_fini(struct wh_dk *dk);

/* ---- operations (docker_ops.c) and the watch (docker_events.c) ---- */

int wh_dk_op_ping(struct wh_runtime *rt, wh_rt_done_fn cb, void *arg);
int wh_dk_op_info(struct wh_runtime *rt, wh_rt_info_fn cb, void *arg);
int wh_dk_op_image_inspect(struct wh_runtime *rt, const char *image, wh_rt_image_fn cb, void *arg);
int wh_dk_op_image_pull(struct wh_runtime *rt, const char *image, const struct wh_rt_auth *auth,
                        enum wh_rt_pull_policy policy, wh_rt_done_fn cb, void *arg);
int wh_dk_op_create(struct wh_runtime *rt, const struct wh_rt_create_spec *spec, wh_rt_create_fn cb,
                    void *arg);
int wh_dk_op_start(struct wh_runtime *rt, const char *id, wh_rt_done_fn cb, void *arg);
int wh_dk_op_stop(struct wh_runtime *rt, const char *id, int timeout, wh_rt_done_fn cb, void *arg);
int wh_dk_op_kill(struct wh_runtime *rt, const char *id, const char *signal, wh_rt_done_fn cb,
                  void *arg);
int wh_dk_op_remove(struct wh_runtime *rt, const char *id, int force, wh_rt_done_fn cb, void *arg);
int wh_dk_op_inspect(struct wh_runtime *rt, const char *id, wh_rt_inspect_fn cb, void *arg);
int wh_dk_op_list(struct wh_runtime *rt, const char *const *labels, size_t n_labels,
                  wh_rt_list_fn cb, void *arg);
struct wh_rt_watch *wh_dk_events_start(struct wh_runtime *rt,
                                       const struct wh_rt_events_params *params, wh_rt_event_fn cb,
                                       void *arg);
void wh_dk_events_stop(struct wh_rt_watch *watch);
/* Called by the host's free: stop every watch without callbacks. */
void wh_dk_watches_free(struct wh_dk *dk);

#endif

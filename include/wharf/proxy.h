/* wharf proxy: the data path. One wh_proxy per worker thread, each on its
 * own event_base with its own SO_REUSEPORT listening sockets, sessions and
 * upstream connection pool. A worker reads the configuration it was given
 * (immutable) and never calls into the controller.
 */
#ifndef WHARF_PROXY_H
#define WHARF_PROXY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct wh_config;
struct wh_proxy;
struct wh_proxy_prep;

/* What serving cfg needs beyond its structs: each listener's compiled
 * rules, its TLS contexts (certificates and keys read from disk now) and
 * its stickiness key. Built on the control thread for each loaded
 * configuration, before any worker sees it; immutable afterwards and shared
 * by every worker. cfg is borrowed and must outlive the result. Returns
 * NULL with err set ("FILE:LINE: key: message" for a bad certificate). */
struct wh_proxy_prep *wh_proxy_prepare(const struct wh_config *cfg, char *err, size_t errlen);
void wh_proxy_prep_free(struct wh_proxy_prep *prep);

/* New worker proxy on base, serving cfg with prep (made from cfg by
 * wh_proxy_prepare; both borrowed until release(arg) is called, once no
 * request uses them any more; release may be NULL). Opens every listener
 * with SO_REUSEPORT. Returns NULL with err set. */
struct wh_proxy *wh_proxy_new(struct event_base *base, const struct wh_config *cfg,
                              const struct wh_proxy_prep *prep, int worker_id,
                              void (*release)(void *arg), void *release_arg, char *err,
                              size_t errlen);

/* Serve cfg and its prep from now on (call on the worker's thread).
 * Requests under way finish with the configuration they started with;
 * release(arg) is called once cfg is no longer used. Listeners are matched
 * by name: added ones open, removed ones close, a changed bind is logged as
 * needing a restart. */
int wh_proxy_reload(struct wh_proxy *p, const struct wh_config *cfg,
                    const struct wh_proxy_prep *prep, void (*release)(void *arg),
                    void *release_arg);

/* Stop accepting, close idle client connections and let in-flight requests
 * finish; calls done(arg) on the proxy's loop once no session is left or
 * after timeouts.shutdown_drain, whichever comes first. */
void wh_proxy_shutdown(struct wh_proxy *p, void (*done)(void *arg), void *arg);

void wh_proxy_free(struct wh_proxy *p);

struct wh_tg_snapshot;
struct wh_target;

/* Route the snapshot's group from now on (takes ownership of one reference).
 * Call on the worker's thread, or before it runs. */
void wh_proxy_set_snapshot(struct wh_proxy *p, struct wh_tg_snapshot *snap);

/* Close the tunnels open to t (its deregistration delay is over). Takes
 * ownership of one reference on t. Worker's thread. */
void wh_proxy_close_tunnels(struct wh_proxy *p, struct wh_target *t);

struct wh_access_log;
/* Log every request to alog (borrowed; NULL = off). Call before the worker
 * runs. Lines are flushed every 200 ms or 32 KiB. */
int wh_proxy_set_access_log(struct wh_proxy *p, struct wh_access_log *alog);

/* Number of open client sessions (worker thread only). */
size_t wh_proxy_sessions(const struct wh_proxy *p);

/* Counters any thread may read while the worker runs. */
struct wh_proxy_stats {
    uint64_t open_connections;
    uint64_t responses[6];      /* by status class: [1] 1xx .. [5] 5xx, [0] other */
    uint64_t tls_handshakes[3]; /* WH_TLS_HANDSHAKE_OK, _FAILED, _TIMEOUT */
};
enum { WH_TLS_HANDSHAKE_OK, WH_TLS_HANDSHAKE_FAILED, WH_TLS_HANDSHAKE_TIMEOUT };
void wh_proxy_stats(const struct wh_proxy *p, struct wh_proxy_stats *out);

struct evbuffer;
/* Append to out, in the Prometheus text format, the daemon's proxy metrics
 * summed over the n worker proxies (borrowed; any thread, while they run):
 * wharf_workers (n), wharf_client_connections,
 * wharf_http_responses_total{code_class} and
 * wharf_tls_handshakes_total{result}, each with its HELP and TYPE lines. */
void wh_proxy_write_metrics(struct evbuffer *out, struct wh_proxy *const *proxies, int n);

#endif

/* Private declarations of the proxy module: the worker's objects (proxy,
 * listeners, groups, generations, pools and upstream connections) and the
 * functions its files share. The session's own are in session.h. */
#ifndef WHARF_PROXY_INT_H
#define WHARF_PROXY_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "wharf/accesslog.h"
#include "wharf/config.h"
#include "wharf/http.h"
#include "wharf/proxy.h"
#include "wharf/targets.h"

#include "balance.h"
#include "rules.h"
#include "sticky.h"
#include "tls.h"

#define WH_PROXY_MAGIC 0x50525859u    /* "PRXY" */
#define WH_UPCONN_MAGIC 0x55504331u   /* "UPC1" */
#define WH_LISTENER_MAGIC 0x4c53544eu /* "LSTN" */

/* Bytes buffered toward a slow peer before we stop reading the other side. */
#define WH_HIGH_WATER (256 * 1024)
#define WH_ACCESS_LOG_FLUSH (32 * 1024) /* buffered access-log bytes that force a write */
#define WH_POOL_IDLE_MAX 64             /* idle upstream connections kept per target */
#define WH_POOL_IDLE_TIMEOUT 60.        /* seconds an idle upstream connection is kept */

struct wh_session;
struct wh_pool;

/* How an upstream connection reports to the owner it is out with (a
 * session). Each is called on the worker's loop with the owner given to
 * wh_pool_take or wh_upconn_connect; the owner may release the connection
 * (wh_pool_put, wh_upconn_free) from any of them. */
struct wh_upconn_ops {
    void (*connected)(void *owner);         /* a new connection is up */
    void (*readable)(void *owner);          /* bytes arrived */
    void (*drained)(void *owner);           /* the output fell to its low watermark */
    void (*event)(void *owner, short what); /* error, EOF or timeout (BEV_EVENT_*) */
};

/* One upstream connection: connecting, out with an owner, or idle in its
 * target's pool. */
struct wh_upconn {
    uint32_t magic;
    struct bufferevent *bev;
    struct wh_pool *pool;            /* the target's pool in this worker */
    const struct wh_upconn_ops *ops; /* the owner's; NULL while idle */
    void *owner;                     /* borrowed; NULL while idle in the pool */
    int connected;
    unsigned requests; /* requests served on it: >0 means it is a reused one */
    TAILQ_ENTRY(wh_upconn) pool_link;
};
TAILQ_HEAD(wh_upconn_list, wh_upconn);

/* A worker's connections to one target (registry object, referenced while
 * the pool lives). The pool goes once no current snapshot of the worker
 * lists its target and no connection of it is out with an owner. */
struct wh_pool {
    struct wh_proxy *proxy;
    struct wh_target *target;
    struct wh_upconn_list idle;
    size_t n_idle;
    size_t busy;
    int listed;
    struct wh_pool *next; /* hash chain */
};
#define WH_POOL_BUCKETS 1024

/* A worker's view of one target group: the snapshot it routes from now
 * (one reference held), swapped when the control thread sends a new one. */
struct wh_group {
    char name[WH_NAME_MAX];
    struct wh_tg_snapshot *snap; /* NULL until the first arrives */
    struct wh_balance_state bal;
};

/* What serving one listener needs beyond its configuration, built on the
 * control thread and then read by every worker. */
struct wh_listener_prep {
    const struct wh_cfg_listener *cfg;
    struct wh_rule_set *rules;        /* owned */
    struct wh_tls_server *tls;        /* owned; NULL for http */
    struct wh_sticky_key key;         /* signs stickiness cookies */
    char tg_cookie[WH_NAME_MAX + 16]; /* group stickiness cookie name */
};

struct wh_proxy_prep {
    const struct wh_config *cfg;
    struct wh_listener_prep *listeners; /* cfg->n_listeners, in the same order */
    size_t n_listeners;
};

/* One configuration as a worker serves it. A request holds a reference to
 * the generation it started in; the old one is released, and its
 * configuration with it, when its last request ends. */
struct wh_gen {
    struct wh_proxy *proxy;
    const struct wh_config *cfg;
    const struct wh_proxy_prep *prep;
    struct wh_group **groups;   /* this worker's group of each cfg->target_groups[i] */
    void (*release)(void *arg); /* called once the generation dies */
    void *release_arg;
    unsigned refs;
};

struct wh_listener {
    uint32_t magic;
    struct wh_proxy *proxy;
    const struct wh_cfg_listener *cfg;   /* in the current generation's config */
    const struct wh_listener_prep *prep; /* the same generation's */
    struct evconnlistener *evl;
    struct wh_gen *pinned; /* a removed listener keeps its config alive */
    int removed;
    char port_text[8];
};

TAILQ_HEAD(wh_session_list, wh_session);

struct wh_proxy {
    uint32_t magic;
    struct event_base *base;
    struct wh_gen *gen; /* current generation */
    int worker_id;
    struct wh_listener **listeners; /* never moved: sessions point at them */
    size_t n_listeners;
    struct wh_group **groups; /* never moved: listeners point at them */
    size_t n_groups;
    struct wh_pool *pools[WH_POOL_BUCKETS];
    struct wh_session_list sessions;
    size_t n_sessions;
    /* read by the control thread for metrics: relaxed atomics, one writer */
    atomic_size_t open_sessions;
    atomic_uint_fast64_t responses[6];      /* by status class: 1xx..5xx, [0] other */
    atomic_uint_fast64_t tls_handshakes[3]; /* WH_TLS_HANDSHAKE_* */
    uint64_t rng;
    struct evbuffer *scratch;   /* heads on their way out; always empty between events */
    struct wh_access_log *alog; /* borrowed from the daemon; NULL = off */
    struct evbuffer *alog_buf;  /* this worker's lines not yet written */
    struct event *alog_timer;
    int shutting_down;
    struct event *drain_timer;
    void (*drain_done)(void *);
    void *drain_arg;
};

/* ---- proxy.c ---- */

/* The worker's group of that name, made (empty) when new; NULL on ENOMEM. */
struct wh_group *wh_proxy_group(struct wh_proxy *p, const char *name);

/* ---- gen.c: the configuration a request started with stays alive ---- */

/* A generation serving cfg with prep on p, holding one reference (the
 * worker's); release(arg) runs when the last one goes. NULL on ENOMEM. */
struct wh_gen *wh_gen_new(struct wh_proxy *p, const struct wh_config *cfg,
                          const struct wh_proxy_prep *prep, void (*release)(void *),
                          void *release_arg);
/* One more reference on g; returns g. */
struct wh_gen *wh_gen_hold(struct wh_gen *g);
/* Drop one reference (NULL is fine). */
void wh_gen_release(struct wh_gen *g);

/* ---- balance.c: the seam target selection goes through ---- */

/* Pick a target of g's snapshot other than `exclude` (may be NULL); NULL
 * when the group has no target to offer. The target is borrowed from the
 * snapshot: reference it before the snapshot can change. */
struct wh_target *wh_balance_group_pick(struct wh_group *g, const struct wh_target *exclude);
/* The member of g's snapshot whose address is addr, when it may take
 * requests on stickiness (healthy: the snapshot is not fail-open). */
struct wh_target *wh_balance_group_find(struct wh_group *g, const char *addr, size_t len);

/* ---- sticky.c: stickiness cookies on top of the rules and the group pick ---- */

/* Index in a->groups of the group a forward action sends the request (head
 * req in buf) to: the one the client's group cookie names while it still
 * has weight (a->stickiness > 0), else a weighted draw. */
int wh_sticky_forward_index(const struct wh_listener_prep *lp, const struct wh_action *a,
                            const char *buf, const struct wh_http_msg *req, uint64_t *rng);
/* The target the client's wharf-lb cookie for tg pins, while it is healthy
 * in g's snapshot; NULL otherwise (pick one and name it in a new cookie).
 * Borrowed from the snapshot. */
struct wh_target *wh_sticky_pinned_target(const struct wh_listener_prep *lp,
                                          const struct wh_cfg_target_group *tg, struct wh_group *g,
                                          const char *buf, const struct wh_http_msg *req);
/* Set-Cookie lines (CRLF each) naming target t of tg (NULL: none) and, with
 * group_stickiness > 0 seconds, the group; written to out. Returns out, or
 * NULL when there is nothing to set (or it does not fit). */
const char *wh_sticky_set_cookies(const struct wh_listener_prep *lp,
                                  const struct wh_cfg_target_group *tg, const struct wh_target *t,
                                  double group_stickiness, char *out, size_t outlen);

/* ---- pool.c ---- */

/* This worker's pool for t, made when new (referencing t); NULL on ENOMEM. */
struct wh_pool *wh_pool_get(struct wh_proxy *p, struct wh_target *t);
/* An idle pooled connection, now out with owner (reporting through ops,
 * both borrowed until the connection is put back or freed), or NULL. */
struct wh_upconn *wh_pool_take(struct wh_pool *pool, const struct wh_upconn_ops *ops, void *owner);
/* Start a new connection to the pool's target, out with owner as above;
 * ops->connected reports it up. NULL on immediate failure. */
struct wh_upconn *wh_upconn_connect(struct wh_proxy *p, struct wh_pool *pool,
                                    const struct wh_upconn_ops *ops, void *owner);
/* Return a connection whose last exchange was complete and well framed. */
void wh_pool_put(struct wh_proxy *p, struct wh_upconn *u);
/* Close and free (never reused). NULL is fine. */
void wh_upconn_free(struct wh_upconn *u);
/* After a snapshot change: close idle connections to targets no current
 * snapshot lists, and drop pools nothing uses. */
void wh_pools_sweep(struct wh_proxy *p);
void wh_pools_free(struct wh_proxy *p);

/* ---- headers.c: head rewriting (pure, unit tested) ---- */

struct wh_fwd_info {
    const char *client_ip;    /* text of the TCP peer address */
    const char *proto;        /* "http" or "https" */
    const char *port;         /* listener port as text */
    const char *request_id;   /* 1..128 of [A-Za-z0-9._-] */
    const char *host_default; /* Host to add when the client sent none (HTTP/1.0) */
    int upgrade;              /* forward Upgrade and ask for a tunnel */
};

/* True when s is a request id we keep: 1-128 of [A-Za-z0-9._-]. */
int wh_request_id_valid(const char *s, size_t len);

/* Write the upstream request head for req (parsed from buf) to out:
 * HTTP/1.1 request line, end-to-end headers, X-Forwarded-*, X-Request-Id.
 * Drops hop-by-hop headers, those named by Connection, Expect. */
int wh_rewrite_request(struct evbuffer *out, const char *buf, const struct wh_http_msg *req,
                       const struct wh_fwd_info *fwd);

/* Which X-Request-Id to use: the client's when valid (copied to id_out),
 * else a new one made from rng. id_out has room for 129 bytes. */
void wh_request_id_pick(const char *buf, const struct wh_http_msg *req, uint64_t *rng,
                        char *id_out);

#define WH_RESP_CLOSE 0x1     /* tell the client the connection closes */
#define WH_RESP_KEEPALIVE 0x2 /* HTTP/1.0 client kept alive: say so */
#define WH_RESP_DECHUNK 0x4   /* body is de-chunked: drop Transfer-Encoding */
#define WH_RESP_UPGRADE 0x8   /* 101 Switching Protocols: keep Upgrade */

/* Write the client response head for resp (parsed from buf) to out; extra
 * (NULL = none) holds more header lines, each ending in CRLF. */
int wh_rewrite_response(struct evbuffer *out, const char *buf, const struct wh_http_msg *resp,
                        unsigned flags, const char *extra);

/* A response wharfd makes from a listener action (redirect, fixed
 * response). */
struct wh_local_resp {
    int status;
    const char *location;     /* NULL = no Location */
    const char *content_type; /* NULL = text/plain when there is a body */
    const char *body;
    size_t body_len;
    unsigned flags; /* WH_RESP_CLOSE or WH_RESP_KEEPALIVE */
    int head_only;  /* HEAD request: Content-Length but no body */
    const char *request_id;
    const char *extra; /* more header lines (CRLF each) or NULL */
};
void wh_local_response(struct evbuffer *out, const struct wh_local_resp *r);

/* A complete error response made by wharfd itself. */
void wh_error_response(struct evbuffer *out, int status, int close, const char *request_id);

/* ---- session.c ---- */

/* A client connected to l: a new session takes fd (closed on failure). */
void wh_session_accept(struct wh_listener *l, evutil_socket_t fd, struct sockaddr *sa, int salen);
void wh_session_free(struct wh_session *s);
/* Close the sessions idle between requests (shutdown). */
void wh_sessions_close_idle(struct wh_proxy *p);
void wh_sessions_free_all(struct wh_proxy *p);

static inline struct timeval wh_tv(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

/* Bump a counter only this worker writes: a plain load and store, no
 * locked add; the control thread reads it for /metrics. */
static inline void wh_count_one(atomic_uint_fast64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

#endif

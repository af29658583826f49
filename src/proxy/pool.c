/* Upstream connections and the per-target pool of idle keep-alive ones.
 * A connection returns to the pool only after a complete, well-framed
 * exchange; an idle one that the upstream closes or that stays idle too
 * long is freed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "wharf/log.h"
#include "proxy-int.h"

static void upconn_read_cb(struct bufferevent *bev, void *arg);
static void upconn_write_cb(struct bufferevent *bev, void *arg);
static void upconn_event_cb(struct bufferevent *bev, short what, void *arg);

void wh_upconn_free(struct wh_upconn *u)
{
    if (!u)
        return;
    if (u->session == NULL && u->target && u->pool_link.tqe_prev) {
        TAILQ_REMOVE(&u->target->idle, u, pool_link);
        u->target->n_idle--;
    }
    if (u->bev)
        bufferevent_free(u->bev);
    u->magic = 0;
    free(u);
}

struct wh_upconn *wh_upconn_connect(struct wh_proxy *p, struct wh_target *t, struct wh_session *s)
{
    struct wh_upconn *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->magic = WH_UPCONN_MAGIC;
    u->target = t;
    u->session = s;
    u->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!u->bev)
        goto err;
    bufferevent_setcb(u->bev, upconn_read_cb, upconn_write_cb, upconn_event_cb, u);
    struct timeval tv = wh_tv(p->gen->cfg->timeouts.upstream_connect);
    bufferevent_set_timeouts(u->bev, NULL, &tv);
    if (bufferevent_socket_connect(u->bev, (struct sockaddr *)&t->cfg->addr.ss,
                                   (int)t->cfg->addr.len) < 0)
        goto err;
    evutil_socket_t fd = bufferevent_getfd(u->bev);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return u;
err:
    wh_upconn_free(u);
    return NULL;
}

struct wh_upconn *wh_pool_take(struct wh_target *t, struct wh_session *s)
{
    struct wh_upconn *u = TAILQ_FIRST(&t->idle);
    if (!u)
        return NULL;
    TAILQ_REMOVE(&t->idle, u, pool_link);
    u->pool_link.tqe_prev = NULL;
    t->n_idle--;
    u->session = s;
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    return u;
}

void wh_pool_put(struct wh_proxy *p, struct wh_upconn *u)
{
    struct wh_target *t = u->target;
    u->session = NULL;
    u->requests++;
    if (t->n_idle >= WH_POOL_IDLE_MAX || p->shutting_down ||
        evbuffer_get_length(bufferevent_get_input(u->bev)) > 0) {
        /* Bytes after a complete response mean the upstream misframed. */
        u->pool_link.tqe_prev = NULL;
        wh_upconn_free(u);
        return;
    }
    TAILQ_INSERT_HEAD(&t->idle, u, pool_link);
    t->n_idle++;
    struct timeval tv = wh_tv(WH_POOL_IDLE_TIMEOUT);
    bufferevent_set_timeouts(u->bev, &tv, NULL);
    bufferevent_enable(u->bev, EV_READ);
}

void wh_pool_clear(struct wh_target *t)
{
    struct wh_upconn *u;
    while ((u = TAILQ_FIRST(&t->idle)) != NULL)
        wh_upconn_free(u);
}

static void upconn_read_cb(struct bufferevent *bev, void *arg)
{
    struct wh_upconn *u = arg;
    if (u->session) {
        wh_session_upstream_read(u->session);
        return;
    }
    /* An idle connection must stay silent: anything it sends is garbage. */
    wh_upconn_free(u);
}

static void upconn_write_cb(struct bufferevent *bev, void *arg)
{
    struct wh_upconn *u = arg;
    if (u->session)
        wh_session_upstream_drained(u->session);
}

static void upconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wh_upconn *u = arg;
    if (!u->session) {
        wh_upconn_free(u); /* idle: closed by the upstream or timed out */
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        u->connected = 1;
        bufferevent_set_timeouts(u->bev, NULL, NULL);
        wh_session_upstream_connected(u->session);
        return;
    }
    wh_session_upstream_event(u->session, what);
}

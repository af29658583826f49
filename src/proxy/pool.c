/* Upstream connections and each worker's pools of idle keep-alive ones, one
 * pool per target. A connection returns to its pool only after a complete,
 * well-framed exchange; an idle one that the upstream closes or that stays
 * idle too long is freed. While a connection is out, its events go to its
 * owner through the wh_upconn_ops it was given: the pool knows nothing of
 * sessions. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/log.h"
#include "wharf/obj.h"
#include "proxy-int.h"

static void upconn_read_cb(struct bufferevent *bev, void *arg);
static void upconn_write_cb(struct bufferevent *bev, void *arg);
static void upconn_event_cb(struct bufferevent *bev, short what, void *arg);

static size_t bucket_of(const struct wh_target *t)
{
    return (size_t)(t->id % WH_POOL_BUCKETS);
}

static struct wh_pool *pool_find(struct wh_proxy *p, const struct wh_target *t)
{
    for (struct wh_pool *pool = p->pools[bucket_of(t)]; pool; pool = pool->next)
        if (pool->target == t)
            return pool;
    return NULL;
}

struct wh_pool *wh_pool_get(struct wh_proxy *p, struct wh_target *t)
{
    struct wh_pool *pool = pool_find(p, t);
    if (pool)
        return pool;
    struct wh_pool **head = &p->pools[bucket_of(t)];
    pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->proxy = p;
    pool->target = t;
    pool->listed = 1; /* it came from a current snapshot */
    wh_target_ref(t);
    TAILQ_INIT(&pool->idle);
    pool->next = *head;
    *head = pool;
    return pool;
}

static void pool_free_if_unused(struct wh_pool *pool)
{
    if (pool->listed || pool->busy > 0 || pool->n_idle > 0)
        return;
    struct wh_pool **pp = &pool->proxy->pools[bucket_of(pool->target)];
    while (*pp != pool)
        pp = &(*pp)->next;
    *pp = pool->next;
    wh_target_unref(pool->target);
    free(pool);
}

void wh_upconn_free(struct wh_upconn *u)
{
    if (!u)
        return;
    struct wh_pool *pool = u->pool;
    if (u->owner == NULL && u->pool_link.tqe_prev) {
        TAILQ_REMOVE(&pool->idle, u, pool_link);
        pool->n_idle--;
    } else if (u->owner) {
        pool->busy--;
    }
    if (u->bev)
        bufferevent_free(u->bev);
    WH_FREE_OBJ(u);
    pool_free_if_unused(pool);
}

struct wh_upconn *wh_upconn_connect(struct wh_proxy *p, struct wh_pool *pool,
                                    const struct wh_upconn_ops *ops, void *owner)
{
    struct wh_upconn *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    WH_INIT_OBJ(u, WH_UPCONN_MAGIC);
    u->pool = pool;
    u->ops = ops;
    u->owner = owner;
    pool->busy++;
    u->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!u->bev)
        goto err;
    bufferevent_setcb(u->bev, upconn_read_cb, upconn_write_cb, upconn_event_cb, u);
    struct timeval tv = wh_tv(p->gen->cfg->timeouts.upstream_connect);
    bufferevent_set_timeouts(u->bev, NULL, &tv);
    const struct wh_addr *a = &pool->target->addr;
    if (bufferevent_socket_connect(u->bev, (struct sockaddr *)&a->ss, (int)a->len) < 0)
        goto err;
    int one = 1;
    setsockopt(bufferevent_getfd(u->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return u;
err:
    wh_upconn_free(u);
    return NULL;
}

struct wh_upconn *wh_pool_take(struct wh_pool *pool, const struct wh_upconn_ops *ops, void *owner)
{
    struct wh_upconn *u = TAILQ_FIRST(&pool->idle);
    if (!u)
        return NULL;
    TAILQ_REMOVE(&pool->idle, u, pool_link);
    u->pool_link.tqe_prev = NULL;
    pool->n_idle--;
    pool->busy++;
    u->ops = ops;
    u->owner = owner;
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    return u;
}

void wh_pool_put(struct wh_proxy *p, struct wh_upconn *u)
{
    struct wh_pool *pool = u->pool;
    int keep = pool->listed && pool->n_idle < WH_POOL_IDLE_MAX && !p->shutting_down &&
               /* bytes after a complete response mean the upstream misframed */
               evbuffer_get_length(bufferevent_get_input(u->bev)) == 0;
    if (!keep) {
        wh_upconn_free(u);
        return;
    }
    u->ops = NULL;
    u->owner = NULL;
    pool->busy--;
    u->requests++;
    TAILQ_INSERT_HEAD(&pool->idle, u, pool_link);
    pool->n_idle++;
    struct timeval tv = wh_tv(WH_POOL_IDLE_TIMEOUT);
    bufferevent_set_timeouts(u->bev, &tv, NULL);
}

/* Free a pool's idle connections; the last one frees the pool itself when
 * nothing else holds it, so the pool is not touched after the loop. */
static void pool_close_idle(struct wh_pool *pool)
{
    size_t n = pool->n_idle;
    if (n == 0) {
        pool_free_if_unused(pool);
        return;
    }
    while (n-- > 0)
        wh_upconn_free(TAILQ_FIRST(&pool->idle));
}

/* Runs on the worker for every published snapshot: linear in pools plus
 * members (a hash lookup per member), not their product. */
void wh_pools_sweep(struct wh_proxy *p)
{
    for (size_t b = 0; b < WH_POOL_BUCKETS; b++)
        for (struct wh_pool *pool = p->pools[b]; pool; pool = pool->next)
            pool->listed = 0;
    for (size_t g = 0; g < p->n_groups; g++) {
        const struct wh_tg_snapshot *snap = p->groups[g]->snap;
        for (size_t i = 0; snap && i < snap->n; i++) {
            struct wh_pool *pool = pool_find(p, snap->members[i].target);
            if (pool)
                pool->listed = 1;
        }
    }
    for (size_t b = 0; b < WH_POOL_BUCKETS; b++) {
        struct wh_pool *pool = p->pools[b], *next;
        for (; pool; pool = next) {
            next = pool->next;
            if (!pool->listed)
                pool_close_idle(pool);
        }
    }
}

void wh_pools_free(struct wh_proxy *p)
{
    for (size_t b = 0; b < WH_POOL_BUCKETS; b++) {
        struct wh_pool *pool;
        while ((pool = p->pools[b]) != NULL) {
            pool->listed = 0;
            pool->busy = 0; /* the sessions are gone by now */
            pool_close_idle(pool);
        }
    }
}

static void upconn_read_cb(struct bufferevent *bev, void *arg)
{
    struct wh_upconn *u;
    WH_CAST_OBJ(u, arg, WH_UPCONN_MAGIC);
    if (u->owner) {
        u->ops->readable(u->owner);
        return;
    }
    /* An idle connection must stay silent: anything it sends is garbage. */
    wh_upconn_free(u);
}

static void upconn_write_cb(struct bufferevent *bev, void *arg)
{
    struct wh_upconn *u;
    WH_CAST_OBJ(u, arg, WH_UPCONN_MAGIC);
    if (u->owner)
        u->ops->drained(u->owner);
}

static void upconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wh_upconn *u;
    WH_CAST_OBJ(u, arg, WH_UPCONN_MAGIC);
    if (!u->owner) {
        wh_upconn_free(u); /* idle: closed by the upstream or timed out */
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        u->connected = 1;
        wh_target_note_connect(u->pool->target, 1);
        bufferevent_set_timeouts(u->bev, NULL, NULL);
        u->ops->connected(u->owner);
        return;
    }
    u->ops->event(u->owner, what);
}

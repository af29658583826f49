/* A worker's proxy: its listening sockets, its generations of target groups
 * (one per configuration it has served) and its sessions. Everything here
 * runs on the worker's own thread; a reload arrives as a message the worker
 * applies between events, so the request path takes no lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "wharf/log.h"
#include "proxy-int.h"

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct wh_listener *l = arg;
    wh_session_accept(l, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
    struct wh_listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and the like: say so and keep serving the connections we have. */
    wh_log_error("proxy", "listener %s: accept: %s", l->cfg->name,
                 evutil_socket_error_to_string(err));
}

/* ---- generations ---- */

static void free_groups(struct wh_group *groups, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < groups[i].n_targets; k++)
            wh_pool_clear(&groups[i].targets[k]);
        free(groups[i].targets);
    }
    free(groups);
}

static struct wh_gen *gen_new(struct wh_proxy *p, const struct wh_config *cfg,
                              void (*release)(void *), void *release_arg)
{
    struct wh_gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->proxy = p;
    g->cfg = cfg;
    g->release = release;
    g->release_arg = release_arg;
    g->refs = 1;
    g->n_groups = cfg->n_target_groups;
    g->groups = calloc(g->n_groups ? g->n_groups : 1, sizeof(*g->groups));
    if (!g->groups)
        goto fail;
    for (size_t i = 0; i < g->n_groups; i++) {
        struct wh_group *grp = &g->groups[i];
        grp->cfg = &cfg->target_groups[i];
        grp->n_targets = grp->cfg->n_targets;
        grp->targets = calloc(grp->n_targets ? grp->n_targets : 1, sizeof(*grp->targets));
        if (!grp->targets)
            goto fail;
        for (size_t k = 0; k < grp->n_targets; k++) {
            grp->targets[k].cfg = &grp->cfg->targets[k];
            TAILQ_INIT(&grp->targets[k].idle);
        }
        /* Workers start at different offsets so they do not move in step. */
        grp->rr_next = (unsigned)p->worker_id;
    }
    return g;
fail:
    free_groups(g->groups, g->n_groups);
    free(g);
    return NULL;
}

struct wh_gen *wh_gen_acquire(struct wh_proxy *p)
{
    p->gen->refs++;
    return p->gen;
}

void wh_gen_release(struct wh_gen *g)
{
    if (!g || --g->refs > 0)
        return;
    free_groups(g->groups, g->n_groups);
    if (g->release)
        g->release(g->release_arg);
    free(g);
}

struct wh_group *wh_gen_default_group(struct wh_gen *g, const struct wh_listener *l)
{
    const struct wh_cfg_action *act = &l->cfg->default_action;
    if (act->type != WH_ACTION_FORWARD || act->n_forward == 0)
        return NULL;
    const char *name = act->forward[0].target_group;
    for (size_t i = 0; i < g->n_groups; i++)
        if (strcmp(g->groups[i].cfg->name, name) == 0)
            return &g->groups[i];
    return NULL;
}

/* Idle upstream connections to an address that stays are kept across a
 * reload: move them from the old generation's targets to the new ones. */
static void carry_pools(struct wh_gen *from, struct wh_gen *to)
{
    for (size_t i = 0; i < to->n_groups; i++) {
        for (size_t k = 0; k < to->groups[i].n_targets; k++) {
            struct wh_target *nt = &to->groups[i].targets[k];
            for (size_t j = 0; j < from->n_groups; j++) {
                for (size_t m = 0; m < from->groups[j].n_targets; m++) {
                    struct wh_target *ot = &from->groups[j].targets[m];
                    if (strcmp(ot->cfg->addr.text, nt->cfg->addr.text) != 0)
                        continue;
                    struct wh_upconn *u;
                    while ((u = TAILQ_FIRST(&ot->idle)) != NULL) {
                        TAILQ_REMOVE(&ot->idle, u, pool_link);
                        ot->n_idle--;
                        u->target = nt;
                        TAILQ_INSERT_TAIL(&nt->idle, u, pool_link);
                        nt->n_idle++;
                    }
                }
            }
        }
    }
}

/* ---- listeners ---- */

static int port_of(const struct wh_addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

static struct wh_listener *open_listener(struct wh_proxy *p, const struct wh_cfg_listener *cfg,
                                         char *err, size_t errlen)
{
    struct wh_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->proxy = p;
    l->cfg = cfg;
    snprintf(l->port_text, sizeof(l->port_text), "%d", port_of(&cfg->bind));
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
                     LEV_OPT_REUSEABLE_PORT;
    l->evl = evconnlistener_new_bind(p->base, accept_cb, l, flags, 1024,
                                     (const struct sockaddr *)&cfg->bind.ss, (int)cfg->bind.len);
    if (!l->evl) {
        snprintf(err, errlen, "listener %s: cannot listen on %s: %s", cfg->name, cfg->bind.text,
                 strerror(errno));
        free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->evl, accept_error_cb);
    return l;
}

static void close_listeners(struct wh_proxy *p)
{
    for (size_t i = 0; i < p->n_listeners; i++) {
        if (p->listeners[i]->evl)
            evconnlistener_free(p->listeners[i]->evl);
        p->listeners[i]->evl = NULL;
    }
}

static int add_listener(struct wh_proxy *p, struct wh_listener *l)
{
    struct wh_listener **grown = realloc(p->listeners, (p->n_listeners + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    p->listeners = grown;
    p->listeners[p->n_listeners++] = l;
    return 0;
}

static struct wh_listener *find_listener(struct wh_proxy *p, const char *name)
{
    for (size_t i = 0; i < p->n_listeners; i++)
        if (!p->listeners[i]->removed && strcmp(p->listeners[i]->cfg->name, name) == 0)
            return p->listeners[i];
    return NULL;
}

struct wh_proxy *wh_proxy_new(struct event_base *base, const struct wh_config *cfg, int worker_id,
                              void (*release)(void *), void *release_arg, char *err,
                              size_t errlen)
{
    struct wh_proxy *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->magic = WH_PROXY_MAGIC;
    p->base = base;
    p->worker_id = worker_id;
    TAILQ_INIT(&p->sessions);
    if (getrandom(&p->rng, sizeof(p->rng), 0) != sizeof(p->rng) || p->rng == 0)
        p->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)p;
    p->gen = gen_new(p, cfg, release, release_arg);
    p->scratch = evbuffer_new();
    if (!p->gen || !p->scratch) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct wh_listener *l = open_listener(p, &cfg->listeners[i], err, errlen);
        if (!l || add_listener(p, l) < 0)
            goto fail;
    }
    return p;
fail:
    wh_proxy_free(p);
    return NULL;
}

/* Point kept listeners at the new configuration, open added ones, close
 * removed ones. A changed bind keeps the old socket until a restart. */
static void reload_listeners(struct wh_proxy *p, struct wh_gen *old, const struct wh_config *cfg)
{
    for (size_t i = 0; i < p->n_listeners; i++) {
        struct wh_listener *l = p->listeners[i];
        int kept = 0;
        for (size_t k = 0; k < cfg->n_listeners && !kept; k++)
            kept = !l->removed && strcmp(cfg->listeners[k].name, l->cfg->name) == 0;
        if (kept || l->removed)
            continue;
        l->removed = 1;
        l->pinned = old;
        old->refs++;
        if (l->evl)
            evconnlistener_free(l->evl);
        l->evl = NULL;
        if (p->worker_id == 0)
            wh_log_info("proxy", "listener %s removed", l->cfg->name);
    }
    for (size_t k = 0; k < cfg->n_listeners; k++) {
        const struct wh_cfg_listener *lc = &cfg->listeners[k];
        struct wh_listener *l = find_listener(p, lc->name);
        if (l) {
            if (p->worker_id == 0 && strcmp(l->cfg->bind.text, lc->bind.text) != 0)
                wh_log_warn("proxy", "listener %s: bind %s -> %s needs a restart; still on %s",
                            lc->name, l->cfg->bind.text, lc->bind.text, l->cfg->bind.text);
            l->cfg = lc;
            continue;
        }
        char err[WH_ERR_LEN];
        l = open_listener(p, lc, err, sizeof(err));
        if (!l || add_listener(p, l) < 0) {
            wh_log_error("proxy", "reload: %s", l ? "out of memory" : err);
            continue;
        }
        if (p->worker_id == 0)
            wh_log_info("proxy", "listener %s added on %s", lc->name, lc->bind.text);
    }
}

int wh_proxy_reload(struct wh_proxy *p, const struct wh_config *cfg, void (*release)(void *),
                    void *release_arg)
{
    struct wh_gen *g = gen_new(p, cfg, release, release_arg);
    if (!g) {
        wh_log_error("proxy", "worker %d: reload: out of memory; keeping the old configuration",
                     p->worker_id);
        if (release)
            release(release_arg);
        return -1;
    }
    struct wh_gen *old = p->gen;
    carry_pools(old, g);
    reload_listeners(p, old, cfg);
    p->gen = g;
    wh_gen_release(old);
    return 0;
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_proxy *p = arg;
    wh_log_warn("proxy", "worker %d: %zu connections still open after the drain timeout",
                p->worker_id, p->n_sessions);
    if (p->drain_done)
        p->drain_done(p->drain_arg);
}

void wh_proxy_shutdown(struct wh_proxy *p, void (*done)(void *arg), void *arg)
{
    p->shutting_down = 1;
    p->drain_done = done;
    p->drain_arg = arg;
    close_listeners(p);
    wh_sessions_close_idle(p);
    if (p->n_sessions == 0) {
        done(arg);
        return;
    }
    struct timeval tv = wh_tv(p->gen->cfg->timeouts.shutdown_drain);
    p->drain_timer = evtimer_new(p->base, drain_timeout_cb, p);
    evtimer_add(p->drain_timer, &tv);
}

static void alog_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_proxy *p = arg;
    if (evbuffer_get_length(p->alog_buf) > 0)
        wh_access_log_flush(p->alog, p->alog_buf);
}

int wh_proxy_set_access_log(struct wh_proxy *p, struct wh_access_log *alog)
{
    p->alog = alog;
    if (!alog)
        return 0;
    p->alog_buf = evbuffer_new();
    p->alog_timer = event_new(p->base, -1, EV_PERSIST, alog_flush_cb, p);
    if (!p->alog_buf || !p->alog_timer)
        return -1;
    struct timeval tv = {0, 200000};
    return event_add(p->alog_timer, &tv);
}

size_t wh_proxy_sessions(const struct wh_proxy *p)
{
    return p->n_sessions;
}

void wh_proxy_stats(const struct wh_proxy *p, struct wh_proxy_stats *out)
{
    out->open_connections = atomic_load_explicit(&p->open_sessions, memory_order_relaxed);
    for (int i = 0; i < 6; i++)
        out->responses[i] = atomic_load_explicit(&p->responses[i], memory_order_relaxed);
}

void wh_proxy_free(struct wh_proxy *p)
{
    if (!p)
        return;
    p->drain_done = NULL;
    wh_sessions_free_all(p);
    close_listeners(p);
    for (size_t i = 0; i < p->n_listeners; i++) {
        wh_gen_release(p->listeners[i]->pinned);
        free(p->listeners[i]);
    }
    free(p->listeners);
    wh_gen_release(p->gen);
    if (p->scratch)
        evbuffer_free(p->scratch);
    if (p->drain_timer)
        event_free(p->drain_timer);
    if (p->alog_timer)
        event_free(p->alog_timer);
    if (p->alog_buf) {
        wh_access_log_flush(p->alog, p->alog_buf);
        evbuffer_free(p->alog_buf);
    }
    p->magic = 0;
    free(p);
}

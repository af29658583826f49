/* The proxy module's front: a configuration made ready to serve (its prep,
 * built on the control thread), and a worker's proxy: its listening
 * sockets, its view of the target groups, its generations (gen.c: one per
 * configuration it still serves) and its sessions (session.c), and the
 * counters the control thread reads for /metrics. Everything on a worker
 * runs on its own thread; a reload arrives as a message the worker applies
 * between events, so the request path takes no lock.
 *
 * The module's other files: session.c (the HTTP exchange of a client
 * connection), tunnel.c, access_record.c, send.c (for the session),
 * pool.c (upstream connections), balance.c and sticky.c (target choice),
 * rules.c, headers.c, tls.c, accesslog.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "wharf/log.h"
#include "wharf/obj.h"
#include "proxy-int.h"

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct wh_listener *l;
    WH_CAST_OBJ(l, arg, WH_LISTENER_MAGIC);
    wh_session_accept(l, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
    struct wh_listener *l;
    WH_CAST_OBJ(l, arg, WH_LISTENER_MAGIC);
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and the like: say so and keep serving the connections we have. */
    wh_log_error("proxy", "listener %s: accept: %s", l->cfg->name,
                 evutil_socket_error_to_string(err));
}

/* ---- prepared configurations (control thread) ----
 *
 * Built once per loaded configuration (rules compiled, certificates read),
 * so a bad certificate fails the load or the reload before any worker sees
 * it. */

static int prepare_listener(const struct wh_config *cfg, const struct wh_cfg_listener *lc,
                            struct wh_listener_prep *lp, char *err, size_t errlen)
{
    lp->cfg = lc;
    lp->rules = wh_rules_compile(cfg, lc, err, errlen);
    if (!lp->rules)
        return -1;
    if (lc->protocol == WH_PROTO_HTTPS) {
        lp->tls = wh_tls_server_new(cfg, lc, err, errlen);
        if (!lp->tls)
            return -1;
    }
    wh_sticky_key_init(&lp->key, lc->stickiness_secret);
    snprintf(lp->tg_cookie, sizeof(lp->tg_cookie), "wharf-tg-%s", lc->name);
    return 0;
}

struct wh_proxy_prep *wh_proxy_prepare(const struct wh_config *cfg, char *err, size_t errlen)
{
    struct wh_proxy_prep *prep = calloc(1, sizeof(*prep));
    if (!prep)
        goto oom;
    prep->cfg = cfg;
    prep->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*prep->listeners));
    if (!prep->listeners)
        goto oom;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        prep->n_listeners++;
        if (prepare_listener(cfg, &cfg->listeners[i], &prep->listeners[i], err, errlen) < 0)
            goto fail;
    }
    return prep;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    wh_proxy_prep_free(prep);
    return NULL;
}

void wh_proxy_prep_free(struct wh_proxy_prep *prep)
{
    if (!prep)
        return;
    for (size_t i = 0; i < prep->n_listeners; i++) {
        wh_rules_free(prep->listeners[i].rules);
        wh_tls_server_free(prep->listeners[i].tls);
    }
    free(prep->listeners);
    free(prep);
}

/* ---- groups: the snapshots this worker routes from ---- */

struct wh_group *wh_proxy_group(struct wh_proxy *p, const char *name)
{
    for (size_t i = 0; i < p->n_groups; i++)
        if (strcmp(p->groups[i]->name, name) == 0)
            return p->groups[i];
    struct wh_group *g = calloc(1, sizeof(*g));
    struct wh_group **grown = g ? realloc(p->groups, (p->n_groups + 1) * sizeof(*grown)) : NULL;
    if (!grown) {
        free(g);
        return NULL;
    }
    snprintf(g->name, sizeof(g->name), "%s", name);
    /* Workers start at different offsets so they do not move in step. */
    g->bal.rr_next = (unsigned)p->worker_id;
    g->bal.rng = wh_balance_rand(&p->rng) | 1;
    p->groups = grown;
    p->groups[p->n_groups++] = g;
    return g;
}

void wh_proxy_set_snapshot(struct wh_proxy *p, struct wh_tg_snapshot *snap)
{
    struct wh_group *g = wh_proxy_group(p, snap->group);
    if (!g) {
        wh_tg_snapshot_unref(snap);
        return;
    }
    struct wh_tg_snapshot *old = g->snap;
    g->snap = snap;
    /* Requests hold their target, not the snapshot: the old one can go now,
     * which is what lets a draining target finish early. */
    wh_tg_snapshot_unref(old);
    wh_pools_sweep(p);
}

static const struct wh_listener_prep *listener_prep(const struct wh_gen *g,
                                                    const struct wh_cfg_listener *lc)
{
    return &g->prep->listeners[lc - g->cfg->listeners];
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
    WH_INIT_OBJ(l, WH_LISTENER_MAGIC);
    l->proxy = p;
    l->cfg = cfg;
    l->prep = listener_prep(p->gen, cfg);
    snprintf(l->port_text, sizeof(l->port_text), "%d", port_of(&cfg->bind));
    unsigned flags =
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT;
    l->evl = evconnlistener_new_bind(p->base, accept_cb, l, flags, 1024,
                                     (const struct sockaddr *)&cfg->bind.ss, (int)cfg->bind.len);
    if (!l->evl) {
        snprintf(err, errlen, "listener %s: cannot listen on %s: %s", cfg->name, cfg->bind.text,
                 strerror(errno));
        WH_FREE_OBJ(l);
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

struct wh_proxy *wh_proxy_new(struct event_base *base, const struct wh_config *cfg,
                              const struct wh_proxy_prep *prep, int worker_id,
                              void (*release)(void *), void *release_arg, char *err, size_t errlen)
{
    struct wh_proxy *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    WH_INIT_OBJ(p, WH_PROXY_MAGIC);
    p->base = base;
    p->worker_id = worker_id;
    TAILQ_INIT(&p->sessions);
    if (getrandom(&p->rng, sizeof(p->rng), 0) != sizeof(p->rng) || p->rng == 0)
        p->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)p;
    p->gen = wh_gen_new(p, cfg, prep, release, release_arg);
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
static void reload_listeners(struct wh_proxy *p, struct wh_gen *old, struct wh_gen *g)
{
    const struct wh_config *cfg = g->cfg;
    for (size_t i = 0; i < p->n_listeners; i++) {
        struct wh_listener *l = p->listeners[i];
        int kept = 0;
        for (size_t k = 0; k < cfg->n_listeners && !kept; k++)
            kept = !l->removed && strcmp(cfg->listeners[k].name, l->cfg->name) == 0;
        if (kept || l->removed)
            continue;
        l->removed = 1;
        l->pinned = wh_gen_hold(old);
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
            l->prep = listener_prep(g, lc);
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

int wh_proxy_reload(struct wh_proxy *p, const struct wh_config *cfg,
                    const struct wh_proxy_prep *prep, void (*release)(void *), void *release_arg)
{
    struct wh_gen *g = wh_gen_new(p, cfg, prep, release, release_arg);
    if (!g) {
        wh_log_error("proxy", "worker %d: reload: out of memory; keeping the old configuration",
                     p->worker_id);
        if (release)
            release(release_arg);
        return -1;
    }
    struct wh_gen *old = p->gen;
    p->gen = g; /* listeners opened now take their prep from it */
    reload_listeners(p, old, g);
    wh_gen_release(old);
    return 0;
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_proxy *p;
    WH_CAST_OBJ(p, arg, WH_PROXY_MAGIC);
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
    struct wh_proxy *p;
    WH_CAST_OBJ(p, arg, WH_PROXY_MAGIC);
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
    WH_CHECK_OBJ(p, WH_PROXY_MAGIC);
    out->open_connections = atomic_load_explicit(&p->open_sessions, memory_order_relaxed);
    for (int i = 0; i < 6; i++)
        out->responses[i] = atomic_load_explicit(&p->responses[i], memory_order_relaxed);
    for (int i = 0; i < 3; i++)
        out->tls_handshakes[i] = atomic_load_explicit(&p->tls_handshakes[i], memory_order_relaxed);
}

void wh_proxy_write_metrics(struct evbuffer *out, struct wh_proxy *const *proxies, int n)
{
    struct wh_proxy_stats sum = {0};
    for (int i = 0; i < n; i++) {
        struct wh_proxy_stats st;
        wh_proxy_stats(proxies[i], &st);
        sum.open_connections += st.open_connections;
        for (int k = 0; k < 6; k++)
            sum.responses[k] += st.responses[k];
        for (int k = 0; k < 3; k++)
            sum.tls_handshakes[k] += st.tls_handshakes[k];
    }
    evbuffer_add_printf(out,
                        "# HELP wharf_workers Proxy worker threads.\n# TYPE wharf_workers gauge\n"
                        "wharf_workers %d\n"
                        "# HELP wharf_client_connections Open client connections.\n"
                        "# TYPE wharf_client_connections gauge\nwharf_client_connections %llu\n"
                        "# HELP wharf_http_responses_total Responses sent to clients by status "
                        "class.\n# TYPE wharf_http_responses_total counter\n",
                        n, (unsigned long long)sum.open_connections);
    static const char *const cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int k = 0; k < 6; k++)
        evbuffer_add_printf(out, "wharf_http_responses_total{code_class=\"%s\"} %llu\n", cls[k],
                            (unsigned long long)sum.responses[k]);
    evbuffer_add_printf(out, "# HELP wharf_tls_handshakes_total TLS handshakes on https "
                             "listeners by result.\n# TYPE wharf_tls_handshakes_total counter\n");
    static const char *const result[3] = {"ok", "failed", "timeout"};
    for (int k = 0; k < 3; k++)
        evbuffer_add_printf(out, "wharf_tls_handshakes_total{result=\"%s\"} %llu\n", result[k],
                            (unsigned long long)sum.tls_handshakes[k]);
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
        WH_FREE_OBJ(p->listeners[i]);
    }
    free(p->listeners);
    wh_gen_release(p->gen);
    wh_pools_free(p);
    for (size_t i = 0; i < p->n_groups; i++) {
        wh_tg_snapshot_unref(p->groups[i]->snap);
        free(p->groups[i]);
    }
    free(p->groups);
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
    WH_FREE_OBJ(p);
}

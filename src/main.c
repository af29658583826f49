/* wharfd: wires the modules together, owns signals and threads.
 *
 * The main thread is the control thread: signals, the configuration and its
 * reloads, the target registry with its health checks, the libcurl glue with
 * the host inventory and the controller that keeps the services on it, and
 * the admin API (which registers each module's endpoints and metrics). Each proxy worker
 * runs its own event_base in its own thread; the control thread talks to a
 * worker only through the worker's notification pipe. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "wharf/accesslog.h"
#include "wharf/api.h"
#include "wharf/lag.h"
#include "wharf/config.h"
#include "wharf/controller.h"
#include "wharf/curl_event.h"
#include "wharf/hosts.h"
#include "wharf/log.h"
#include "wharf/obj.h"
#include "wharf/proxy.h"
#include "wharf/targets.h"

#define WH_MAX_WORKERS 256

/* A loaded configuration shared by the control thread and every worker;
 * freed when the last of them lets go. */
#define WH_HOLDER_MAGIC 0x484f4c44u /* "HOLD" */
#define WH_WORKER_MAGIC 0x574f524bu /* "WORK" */
#define WH_DAEMON_MAGIC 0x44414d4eu /* "DAMN" */

struct wh_cfg_holder {
    unsigned magic;
    struct wh_config *cfg;
    struct wh_proxy_prep *prep; /* rules compiled, certificates loaded */
    atomic_int refs;
};

/* What the control thread sends a worker through its pipe (one write, under
 * PIPE_BUF, so it arrives whole). */
struct wh_worker_msg {
    char cmd; /* 'T' drain and stop, 'R' reload, 'S' snapshot, 'D' close tunnels */
    struct wh_cfg_holder *holder; /* 'R' */
    struct wh_tg_snapshot *snap;  /* 'S': one reference for the worker */
    struct wh_target *target;     /* 'D': one reference for the worker */
};

struct wh_worker {
    unsigned magic;
    int id;
    pthread_t thread;
    struct event_base *base;
    struct wh_proxy *proxy;
    int notify_fd[2]; /* control thread writes a command byte */
    struct event *notify_ev;
};

struct wh_daemon {
    unsigned magic;
    const char *path;
    struct wh_config *cfg; /* current; owned by holder */
    struct wh_cfg_holder *holder;
    struct event_base *base;
    struct wh_worker *workers;
    int n_workers;
    struct wh_access_log *alog; /* NULL = off */
    struct wh_lag *lag;         /* the control loop's own lag */
    struct wh_api *api;         /* NULL without an admin block */
    struct wh_targets *targets; /* the target registry and health checks */
    struct wh_curl_loop *curl;  /* libcurl on the control loop (the runtimes' calls) */
    struct wh_hosts *hosts;     /* the fleet's Docker engines */
    struct wh_controller *ctl;  /* keeps the services on the fleet */
    struct event *sig_term, *sig_int, *sig_hup, *sig_usr1;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: wharfd -c FILE [-t]\n"
                 "  -c FILE  configuration file (libconfig syntax)\n"
                 "  -t       check the configuration, print the result and exit\n"
                 "  -h       this help\n");
}

static void report_config(void *arg, int is_error, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s%s\n", is_error ? "" : "warning: ", line);
}

/* Takes cfg: made ready to serve (rules, certificates) and held, or freed
 * after the error is logged. */
static struct wh_cfg_holder *holder_new(struct wh_config *cfg, int refs)
{
    char err[WH_ERR_LEN];
    struct wh_cfg_holder *h = calloc(1, sizeof(*h));
    struct wh_proxy_prep *prep = h ? wh_proxy_prepare(cfg, err, sizeof(err)) : NULL;
    if (!prep) {
        wh_log_error("main", "%s", h ? err : "out of memory");
        free(h);
        wh_config_free(cfg);
        return NULL;
    }
    WH_INIT_OBJ(h, WH_HOLDER_MAGIC);
    h->cfg = cfg;
    h->prep = prep;
    atomic_init(&h->refs, refs);
    return h;
}

static void holder_release(void *arg)
{
    struct wh_cfg_holder *h;
    WH_CAST_OBJ(h, arg, WH_HOLDER_MAGIC);
    if (atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    wh_proxy_prep_free(h->prep);
    wh_config_free(h->cfg);
    WH_FREE_OBJ(h);
}

static void worker_drained(void *arg)
{
    struct wh_worker *w;
    WH_CAST_OBJ(w, arg, WH_WORKER_MAGIC);
    event_base_loopexit(w->base, NULL);
}

static void worker_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_worker *w;
    WH_CAST_OBJ(w, arg, WH_WORKER_MAGIC);
    struct wh_worker_msg msg;
    while (read(fd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
        if (msg.cmd == 'T')
            wh_proxy_shutdown(w->proxy, worker_drained, w);
        else if (msg.cmd == 'R')
            wh_proxy_reload(w->proxy, msg.holder->cfg, msg.holder->prep, holder_release,
                            msg.holder);
        else if (msg.cmd == 'S')
            wh_proxy_set_snapshot(w->proxy, msg.snap);
        else if (msg.cmd == 'D')
            wh_proxy_close_tunnels(w->proxy, msg.target);
    }
}

static void *worker_main(void *arg)
{
    struct wh_worker *w;
    WH_CAST_OBJ(w, arg, WH_WORKER_MAGIC);
    event_base_dispatch(w->base);
    return NULL;
}

static int worker_init(struct wh_daemon *d, struct wh_worker *w, int id)
{
    char err[WH_ERR_LEN];
    WH_INIT_OBJ(w, WH_WORKER_MAGIC);
    w->id = id;
    w->base = event_base_new();
    if (!w->base || pipe2(w->notify_fd, O_NONBLOCK | O_CLOEXEC) < 0) {
        wh_log_error("main", "worker %d: cannot create its event loop", id);
        return -1;
    }
    w->notify_ev = event_new(w->base, w->notify_fd[0], EV_READ | EV_PERSIST, worker_notify_cb, w);
    event_add(w->notify_ev, NULL);
    w->proxy = wh_proxy_new(w->base, d->cfg, d->holder->prep, id, holder_release, d->holder, err,
                            sizeof(err));
    if (!w->proxy) {
        wh_log_error("main", "%s", err);
        return -1;
    }
    return wh_proxy_set_access_log(w->proxy, d->alog);
}

static void worker_free(struct wh_worker *w)
{
    wh_proxy_free(w->proxy);
    if (w->notify_ev)
        event_free(w->notify_ev);
    if (w->base)
        event_base_free(w->base);
    if (w->notify_fd[0] > 0) {
        close(w->notify_fd[0]);
        close(w->notify_fd[1]);
    }
}

static int send_worker(struct wh_worker *w, const struct wh_worker_msg *msg)
{
    if (w->notify_fd[1] > 0 && write(w->notify_fd[1], msg, sizeof(*msg)) == (ssize_t)sizeof(*msg))
        return 0;
    wh_log_error("main", "worker %d: notify: %s", w->id, strerror(errno));
    return -1;
}

static int notify_worker(struct wh_worker *w, char cmd, struct wh_cfg_holder *holder)
{
    struct wh_worker_msg msg = {.cmd = cmd, .holder = holder};
    return send_worker(w, &msg);
}

static void notify_workers(struct wh_daemon *d, char cmd)
{
    for (int i = 0; i < d->n_workers; i++)
        notify_worker(&d->workers[i], cmd, NULL);
}

/* Send msg to every worker, each with its own reference on the snapshot
 * or target it carries (dropped again when the pipe refuses it). */
static void send_each_worker(struct wh_daemon *d, const struct wh_worker_msg *msg)
{
    for (int i = 0; i < d->n_workers; i++) {
        if (msg->snap)
            wh_tg_snapshot_ref(msg->snap);
        if (msg->target)
            wh_target_ref(msg->target);
        if (send_worker(&d->workers[i], msg) == 0)
            continue;
        wh_tg_snapshot_unref(msg->snap);
        wh_target_unref(msg->target);
    }
}

/* The registry published a group's new routable set. */
static void publish_snapshot(void *arg, struct wh_tg_snapshot *snap)
{
    struct wh_daemon *d;
    WH_CAST_OBJ(d, arg, WH_DAEMON_MAGIC);
    struct wh_worker_msg msg = {.cmd = 'S', .snap = snap};
    send_each_worker(d, &msg);
}

/* A draining target's delay is over: its tunnels close. */
static void target_drained_hard(void *arg, struct wh_target *t)
{
    struct wh_daemon *d;
    WH_CAST_OBJ(d, arg, WH_DAEMON_MAGIC);
    struct wh_worker_msg msg = {.cmd = 'D', .target = t};
    send_each_worker(d, &msg);
}

/* Registry, static targets, and each worker's first snapshots (before the
 * workers run, so the first request already has targets). */
static int start_targets(struct wh_daemon *d)
{
    char err[WH_ERR_LEN];
    d->targets = wh_targets_new(d->base, publish_snapshot, NULL, d);
    if (!d->targets)
        return -1;
    wh_targets_on_drained_hard(d->targets, target_drained_hard, d);
    if (wh_targets_set_groups(d->targets, d->cfg, err, sizeof(err)) < 0) {
        wh_log_error("main", "%s", err);
        return -1;
    }
    for (size_t g = 0; g < d->cfg->n_target_groups; g++)
        for (int i = 0; i < d->n_workers; i++) {
            struct wh_tg_snapshot *snap =
                wh_targets_snapshot(d->targets, d->cfg->target_groups[g].name);
            if (snap)
                wh_proxy_set_snapshot(d->workers[i].proxy, snap);
        }
    return 0;
}

/* ---- the fleet: hosts of the file, and the controller's services ---- */

#define WH_MAX_HOST_ATTRS 64

static int add_host(struct wh_daemon *d, const struct wh_cfg_host *c)
{
    struct wh_host_attr attrs[WH_MAX_HOST_ATTRS];
    size_t n = c->n_attributes < WH_MAX_HOST_ATTRS ? c->n_attributes : WH_MAX_HOST_ATTRS;
    for (size_t i = 0; i < n; i++)
        attrs[i] = (struct wh_host_attr){c->attributes[i].key, c->attributes[i].value};
    struct wh_host_params p = {
        .id = c->id,
        .docker = c->docker,
        .address = c->address_ip ? c->address_ip : c->address,
        .tls_ca = c->tls_ca,
        .tls_cert = c->tls_cert,
        .tls_key = c->tls_key,
        .max_concurrent_calls = c->max_concurrent_calls,
        .call_timeout = c->call_timeout,
        .ping_interval = c->ping_interval,
        .unreachable_after = c->unreachable_after,
        .draining = c->draining,
        .attributes = attrs,
        .n_attributes = n,
        .source = WH_HOST_SOURCE_CONFIG,
    };
    char err[WH_ERR_LEN];
    if (wh_hosts_add(d->hosts, &p, err, sizeof(err)))
        return 0;
    wh_log_error("main", "host %s: %s", c->id, err);
    return -1;
}

static int start_fleet(struct wh_daemon *d)
{
    char err[WH_ERR_LEN] = "";
    if (wh_curl_global_init() < 0 || !(d->curl = wh_curl_loop_new(d->base)) ||
        !(d->hosts = wh_hosts_new(d->base, d->curl)) ||
        !(d->ctl = wh_controller_new(d->base, d->hosts, d->targets)))
        return -1;
    for (size_t i = 0; i < d->cfg->n_hosts; i++)
        if (add_host(d, &d->cfg->hosts[i]) < 0)
            return -1;
    if (wh_controller_apply(d->ctl, d->cfg, err, sizeof(err)) < 0) {
        wh_log_error("main", "%s", err);
        return -1;
    }
    return 0;
}

/* Hosts added to the file join; removed ones drain first; `draining`
 * changes apply. */
static void reload_fleet(struct wh_daemon *d, const struct wh_config *cfg)
{
    for (size_t i = 0; i < d->cfg->n_hosts; i++)
        if (!wh_config_host(cfg, d->cfg->hosts[i].id))
            wh_hosts_remove(d->hosts, d->cfg->hosts[i].id);
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        struct wh_host *h = wh_hosts_find(d->hosts, cfg->hosts[i].id);
        if (!h)
            add_host(d, &cfg->hosts[i]);
        else if (!wh_host_removing(h) && wh_host_draining(h) != cfg->hosts[i].draining)
            wh_host_set_draining(h, cfg->hosts[i].draining); /* the file's draining = true|false */
    }
    char err[WH_ERR_LEN] = "";
    if (wh_controller_apply(d->ctl, cfg, err, sizeof(err)) < 0)
        wh_log_error("main", "reload: services: %s", err);
}

static void report_reload_error(void *arg, int is_error, const char *line)
{
    if (is_error)
        wh_log_error("config", "%s", line);
    else
        wh_log_warn("config", "%s", line);
}

/* What a reload cannot change while running. */
static void warn_restart_needed(const struct wh_config *old, const struct wh_config *cfg)
{
    if (old->workers != cfg->workers)
        wh_log_warn("main", "reload: workers %d -> %d needs a restart", old->workers, cfg->workers);
    if ((old->log.access_log == NULL) != (cfg->log.access_log == NULL) ||
        (old->log.access_log && strcmp(old->log.access_log, cfg->log.access_log) != 0))
        wh_log_warn("main", "reload: a change of log.access_log needs a restart");
}

/* SIGHUP: load the file again; a bad file keeps the whole old configuration. */
static void daemon_reload(struct wh_daemon *d)
{
    wh_log_info("main", "SIGHUP: reloading %s", d->path);
    struct wh_config *cfg = wh_config_load(d->path, report_reload_error, NULL);
    if (!cfg) {
        wh_log_error("main", "reload failed: keeping the running configuration");
        return;
    }
    struct wh_cfg_holder *h = holder_new(cfg, d->n_workers + 1);
    if (!h) {
        wh_log_error("main", "reload failed: keeping the running configuration");
        return;
    }
    warn_restart_needed(d->cfg, cfg);
    wh_log_set_level(cfg->log.level);
    for (int i = 0; i < d->n_workers; i++)
        if (notify_worker(&d->workers[i], 'R', h) < 0)
            holder_release(h);
    char err[WH_ERR_LEN];
    if (wh_targets_set_groups(d->targets, cfg, err, sizeof(err)) < 0)
        wh_log_error("main", "reload: targets: %s", err);
    reload_fleet(d, cfg);
    holder_release(d->holder);
    d->holder = h;
    d->cfg = cfg;
    wh_log_info("main", "configuration reloaded");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct wh_daemon *d;
    WH_CAST_OBJ(d, arg, WH_DAEMON_MAGIC);
    if (sig == SIGUSR1) {
        char err[WH_ERR_LEN];
        if (d->alog && wh_access_log_reopen(d->alog, err, sizeof(err)) < 0)
            wh_log_error("main", "SIGUSR1: %s", err);
        else
            wh_log_info("main", "SIGUSR1: access log reopened");
        return;
    }
    if (sig == SIGHUP) {
        daemon_reload(d);
        return;
    }
    wh_log_info("main", "signal %d: draining and exiting", (int)sig);
    notify_workers(d, 'T');
    event_base_loopexit(d->base, NULL);
}

/* The proxy's metrics over every worker. */
static void proxy_metrics(void *arg, struct evbuffer *out)
{
    struct wh_daemon *d;
    WH_CAST_OBJ(d, arg, WH_DAEMON_MAGIC);
    struct wh_proxy *proxies[WH_MAX_WORKERS];
    for (int i = 0; i < d->n_workers; i++)
        proxies[i] = d->workers[i].proxy;
    wh_proxy_write_metrics(out, proxies, d->n_workers);
}

static int start_admin(struct wh_daemon *d)
{
    d->lag = wh_lag_new(d->base);
    if (!d->lag)
        return -1;
    if (!d->cfg->admin.enabled)
        return 0;
    char err[WH_ERR_LEN];
    d->api = wh_api_new(d->base, &d->cfg->admin, err, sizeof(err));
    if (!d->api) {
        wh_log_error("main", "%s", err);
        return -1;
    }
    if (wh_api_add_metrics(d->api, wh_lag_write_metrics, d->lag) < 0 ||
        wh_api_add_metrics(d->api, proxy_metrics, d) < 0 ||
        wh_api_controller_register(d->api, d->ctl, d->hosts) < 0)
        return -1;
    return wh_api_targets_register(d->api, d->targets);
}

static int resolve_workers(const struct wh_config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > WH_MAX_WORKERS ? WH_MAX_WORKERS : (int)n);
}

static int daemon_start(struct wh_daemon *d)
{
    d->n_workers = resolve_workers(d->cfg);
    d->holder = holder_new(d->cfg, d->n_workers + 1);
    if (!d->holder) {
        d->cfg = NULL; /* holder_new freed it */
        return -1;
    }
    d->workers = calloc((size_t)d->n_workers, sizeof(*d->workers));
    d->base = event_base_new();
    if (!d->workers || !d->base)
        return -1;
    if (d->cfg->log.access_log) {
        char err[WH_ERR_LEN];
        d->alog = wh_access_log_open(d->cfg->log.access_log, err, sizeof(err));
        if (!d->alog) {
            wh_log_error("main", "%s", err);
            return -1;
        }
    }
    for (int i = 0; i < d->n_workers; i++)
        if (worker_init(d, &d->workers[i], i) < 0)
            return -1;
    d->sig_term = evsignal_new(d->base, SIGTERM, signal_cb, d);
    d->sig_int = evsignal_new(d->base, SIGINT, signal_cb, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, signal_cb, d);
    d->sig_usr1 = evsignal_new(d->base, SIGUSR1, signal_cb, d);
    evsignal_add(d->sig_usr1, NULL);
    evsignal_add(d->sig_term, NULL);
    evsignal_add(d->sig_int, NULL);
    evsignal_add(d->sig_hup, NULL);
    if (start_targets(d) < 0 || start_fleet(d) < 0 || start_admin(d) < 0)
        return -1;
    for (int i = 0; i < d->n_workers; i++)
        if (pthread_create(&d->workers[i].thread, NULL, worker_main, &d->workers[i]) != 0)
            return -1;
    for (size_t i = 0; i < d->cfg->n_listeners; i++)
        wh_log_info("main", "listener %s on %s (%d workers)", d->cfg->listeners[i].name,
                    d->cfg->listeners[i].bind.text, d->n_workers);
    return 0;
}

static void daemon_stop(struct wh_daemon *d)
{
    for (int i = 0; i < d->n_workers; i++) {
        if (d->workers[i].thread)
            pthread_join(d->workers[i].thread, NULL);
        worker_free(&d->workers[i]);
    }
    free(d->workers);
    if (d->sig_term)
        event_free(d->sig_term);
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_hup)
        event_free(d->sig_hup);
    if (d->sig_usr1)
        event_free(d->sig_usr1);
    wh_access_log_free(d->alog);
    wh_api_free(d->api);
    wh_controller_free(d->ctl); /* before what it watches: the hosts and the registry */
    wh_hosts_free(d->hosts);
    wh_targets_free(d->targets);
    wh_curl_loop_free(d->curl);
    wh_lag_free(d->lag);
    if (d->holder)
        holder_release(d->holder);
    else
        wh_config_free(d->cfg);
    if (d->base)
        event_base_free(d->base);
}

/* -t: the file parsed; now read the certificates and compile the rules as a
 * start would. */
static int check_config(struct wh_config *cfg)
{
    char err[WH_ERR_LEN];
    struct wh_proxy_prep *prep = wh_proxy_prepare(cfg, err, sizeof(err));
    if (prep)
        printf("configuration ok\n");
    else
        fprintf(stderr, "%s\n", err);
    wh_proxy_prep_free(prep);
    wh_config_free(cfg);
    return prep ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int check_only = 0, opt;
    while ((opt = getopt(argc, argv, "c:th")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    struct wh_daemon d = {0};
    WH_INIT_OBJ(&d, WH_DAEMON_MAGIC);
    d.path = path;
    d.cfg = wh_config_load(path, report_config, NULL);
    if (!d.cfg)
        return 1;
    if (check_only)
        return check_config(d.cfg);
    wh_log_set_level(d.cfg->log.level);
    signal(SIGPIPE, SIG_IGN);
    int rc = 0;
    if (daemon_start(&d) < 0) {
        rc = 1;
        notify_workers(&d, 'T');
    } else {
        event_base_dispatch(d.base);
    }
    daemon_stop(&d);
    wh_log_info("main", "exited");
    return rc;
}

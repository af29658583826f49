/* wh-hosts-driver: the host inventory (src/hosts/) against real engines.
 *
 *   wh-hosts-driver [--ping-interval S] [--unreachable-after N] [--call-timeout S]
 *                   --host ID URL [--tls CA CERT KEY] [--address A] [--attr K=V]... [--draining]
 *                   [--host ...]...
 *
 * Prints one JSON object per line on stdout:
 *   {"type":"state","mono":S,"host":ID,"old":..,"new":..,"reason":..,"removing":B, + host}
 *   {"type":"status","mono":S,"max_lag":S,"hosts":[host...]}   every 0.5 s and on `status`
 *   {"type":"reply","cmd":C,"rc":RC}
 * where a host is {"id","state","source","address","attributes","missed","last_error",
 * "cpu":{"total","reserved"},"memory":{"total","reserved"},"running_tasks"} (API.md's
 * host object plus the probe's fields). "max_lag" is the largest delay of a 10 ms timer
 * since the start: how long the loop was ever blocked. "mono" is CLOCK_MONOTONIC.
 * Commands on stdin, one per line: drain ID | activate ID | remove ID | forget ID |
 * reserve ID CPU MEM | status | quit. EOF is quit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "wharf/curl_event.h"
#include "wharf/hosts.h"
#include "wharf/log.h"

#define MAX_HOSTS 16
#define MAX_ATTRS 8
#define LAG_INTERVAL 0.010

struct host_arg {
    struct wh_host_params p;
    struct wh_host_attr attrs[MAX_ATTRS];
};

struct app {
    struct event_base *base;
    struct wh_curl_loop *loop;
    struct wh_hosts *hs;
    struct event *lag_ev, *status_ev, *in_ev;
    struct evbuffer *in;
    double lag_last, max_lag;
};

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void emit(cJSON *o)
{
    char *text = cJSON_PrintUnformatted(o);
    printf("%s\n", text);
    fflush(stdout);
    cJSON_free(text);
    cJSON_Delete(o);
}

static cJSON *pair(int64_t total, int64_t reserved)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "total", (double)total);
    cJSON_AddNumberToObject(o, "reserved", (double)reserved);
    return o;
}

static void host_fields(cJSON *o, const struct wh_host *h)
{
    size_t n;
    const struct wh_host_attr *a = wh_host_attributes(h, &n);
    cJSON *attrs = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++)
        cJSON_AddStringToObject(attrs, a[i].key, a[i].value);
    cJSON_AddStringToObject(o, "id", wh_host_id(h));
    cJSON_AddStringToObject(o, "state", wh_host_state_name(wh_host_state(h)));
    cJSON_AddStringToObject(o, "source", wh_host_source_name(wh_host_source(h)));
    cJSON_AddStringToObject(o, "address", wh_host_address(h));
    cJSON_AddItemToObject(o, "attributes", attrs);
    cJSON_AddItemToObject(o, "cpu", pair(wh_host_cpu_total(h), wh_host_cpu_reserved(h)));
    cJSON_AddItemToObject(o, "memory", pair(wh_host_mem_total(h), wh_host_mem_reserved(h)));
    cJSON_AddNumberToObject(o, "running_tasks", wh_host_running_tasks(h));
    cJSON_AddNumberToObject(o, "missed", wh_host_missed(h));
    cJSON_AddStringToObject(o, "last_error", wh_host_last_error(h));
}

static void on_state(void *arg, struct wh_host *h, enum wh_host_state old,
                     enum wh_host_state new_state, const char *reason)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "state");
    cJSON_AddNumberToObject(o, "mono", mono());
    cJSON_AddStringToObject(o, "host", wh_host_id(h));
    cJSON_AddStringToObject(o, "old", wh_host_state_name(old));
    cJSON_AddStringToObject(o, "new", wh_host_state_name(new_state));
    cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddBoolToObject(o, "removing", wh_host_removing(h));
    host_fields(o, h);
    emit(o);
}

static void add_status(void *arg, struct wh_host *h)
{
    cJSON *o = cJSON_CreateObject();
    host_fields(o, h);
    cJSON_AddItemToArray(arg, o);
}

static void status(struct app *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "status");
    cJSON_AddNumberToObject(o, "mono", mono());
    cJSON_AddNumberToObject(o, "max_lag", a->max_lag);
    wh_hosts_foreach(a->hs, add_status, cJSON_AddArrayToObject(o, "hosts"));
    emit(o);
}

static void status_cb(evutil_socket_t fd, short what, void *arg)
{
    status(arg);
}

static void lag_cb(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    double now = mono(), lag = now - a->lag_last - LAG_INTERVAL;
    if (lag > a->max_lag)
        a->max_lag = lag;
    a->lag_last = now;
}

/* One command line: 0, or 1 for quit. */
static int run(struct app *a, const char *line)
{
    char cmd[16] = "", id[64] = "";
    long long cpu = 0, mem = 0;
    int rc = -1;
    if (sscanf(line, "%15s %63s %lld %lld", cmd, id, &cpu, &mem) < 1)
        return 0;
    if (strcmp(cmd, "quit") == 0)
        return 1;
    struct wh_host *h = id[0] ? wh_hosts_find(a->hs, id) : NULL;
    if (strcmp(cmd, "status") == 0) {
        status(a);
        rc = 0;
    } else if (h && (strcmp(cmd, "drain") == 0 || strcmp(cmd, "activate") == 0)) {
        rc = wh_host_set_draining(h, cmd[0] == 'd');
    } else if (h && strcmp(cmd, "remove") == 0) {
        rc = wh_hosts_remove(a->hs, id);
    } else if (h && strcmp(cmd, "forget") == 0) {
        wh_hosts_forget(a->hs, h);
        rc = 0;
    } else if (h && strcmp(cmd, "reserve") == 0) {
        wh_host_reserve(h, cpu, mem);
        rc = 0;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "reply");
    cJSON_AddStringToObject(o, "cmd", cmd);
    cJSON_AddNumberToObject(o, "rc", rc);
    emit(o);
    return 0;
}

static void stdin_cb(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    int got = evbuffer_read(a->in, fd, 4096);
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    char *line;
    size_t len;
    while ((line = evbuffer_readln(a->in, &len, EVBUFFER_EOL_LF))) {
        int quit = run(a, line);
        free(line);
        if (quit) {
            event_base_loopbreak(a->base);
            return;
        }
    }
    if (got <= 0)
        event_base_loopbreak(a->base);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Options of the --host just parsed, from argv[*i]; -1 on a bad one. */
static int parse_host_opt(struct host_arg *h, int argc, char **argv, int *i)
{
    const char *s = argv[*i];
    int left = argc - *i - 1;
    if (strcmp(s, "--tls") == 0 && left >= 3) {
        h->p.tls_ca = argv[++*i];
        h->p.tls_cert = argv[++*i];
        h->p.tls_key = argv[++*i];
    } else if (strcmp(s, "--address") == 0 && left >= 1) {
        h->p.address = argv[++*i];
    } else if (strcmp(s, "--attr") == 0 && left >= 1 && h->p.n_attributes < MAX_ATTRS) {
        char *kv = argv[++*i], *eq = strchr(kv, '=');
        if (!eq)
            return -1;
        *eq = '\0';
        h->attrs[h->p.n_attributes++] = (struct wh_host_attr){kv, eq + 1};
    } else if (strcmp(s, "--draining") == 0) {
        h->p.draining = 1;
    } else {
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct host_arg *hosts, int *nh)
{
    struct wh_host_params common = {0};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int left = argc - i - 1;
        if (strcmp(s, "--ping-interval") == 0 && left >= 1) {
            common.ping_interval = atof(argv[++i]);
        } else if (strcmp(s, "--unreachable-after") == 0 && left >= 1) {
            common.unreachable_after = atoi(argv[++i]);
        } else if (strcmp(s, "--call-timeout") == 0 && left >= 1) {
            common.call_timeout = atof(argv[++i]);
        } else if (strcmp(s, "--host") == 0 && left >= 2 && *nh < MAX_HOSTS) {
            struct host_arg *h = &hosts[(*nh)++];
            h->p.id = argv[++i];
            h->p.docker = argv[++i];
        } else if (*nh == 0 || parse_host_opt(&hosts[*nh - 1], argc, argv, &i) != 0) {
            return -1;
        }
    }
    for (int k = 0; k < *nh; k++) {
        hosts[k].p.ping_interval = common.ping_interval;
        hosts[k].p.unreachable_after = common.unreachable_after;
        hosts[k].p.call_timeout = common.call_timeout;
        hosts[k].p.attributes = hosts[k].attrs;
    }
    return *nh ? 0 : -1;
}

static int setup(struct app *a, struct host_arg *hosts, int nh)
{
    char err[WH_ERR_LEN];
    struct timeval lag_tv = {0, (suseconds_t)(LAG_INTERVAL * 1e6)}, status_tv = {0, 500000};
    a->base = event_base_new();
    a->loop = a->base ? wh_curl_loop_new(a->base) : NULL;
    a->hs = a->loop ? wh_hosts_new(a->base, a->loop) : NULL;
    a->in = evbuffer_new();
    if (!a->hs || !a->in)
        return -1;
    wh_hosts_subscribe(a->hs, on_state, a);
    for (int i = 0; i < nh; i++) {
        if (!wh_hosts_add(a->hs, &hosts[i].p, err, sizeof(err))) {
            fprintf(stderr, "wh-hosts-driver: %s\n", err);
            return -1;
        }
    }
    a->lag_ev = event_new(a->base, -1, EV_PERSIST, lag_cb, a);
    a->status_ev = event_new(a->base, -1, EV_PERSIST, status_cb, a);
    a->in_ev = event_new(a->base, 0, EV_READ | EV_PERSIST, stdin_cb, a);
    if (!a->lag_ev || !a->status_ev || !a->in_ev)
        return -1;
    event_add(a->lag_ev, &lag_tv);
    event_add(a->status_ev, &status_tv);
    event_add(a->in_ev, NULL);
    a->lag_last = mono();
    return 0;
}

int main(int argc, char **argv)
{
    static struct host_arg hosts[MAX_HOSTS];
    struct app a = {0};
    struct event *sig = NULL;
    int nh = 0, rc = 2;
    if (parse_args(argc, argv, hosts, &nh) != 0) {
        fprintf(stderr, "usage: see the comment at the top of tests/drivers/hosts_driver.c\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (wh_curl_global_init() != 0 || setup(&a, hosts, nh) != 0)
        goto out;
    sig = evsignal_new(a.base, SIGTERM, on_signal, a.base);
    event_add(sig, NULL);
    event_base_dispatch(a.base);
    status(&a);
    rc = 0;
out:
    wh_hosts_free(a.hs);
    wh_curl_loop_free(a.loop);
    if (sig)
        event_free(sig);
    if (a.lag_ev)
        event_free(a.lag_ev);
    if (a.status_ev)
        event_free(a.status_ev);
    if (a.in_ev)
        event_free(a.in_ev);
    if (a.in)
        evbuffer_free(a.in);
    if (a.base)
        event_base_free(a.base);
    curl_global_cleanup();
    return rc;
}

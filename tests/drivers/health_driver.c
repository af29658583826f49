/* wh-health-driver: the target registry and its health checks on a control
 * loop, for integration tests with real upstream servers.
 *
 *   wh-health-driver -c CONFIG
 *
 * Loads CONFIG (target groups with health_check and passive enabled, and an
 * optional admin block: then the admin listener serves the targets'
 * endpoints and metrics, plus wharf_event_loop_lag_seconds). Prints one JSON
 * object per line on stdout:
 *   {"type":"ready","admin":"127.0.0.1:PORT"|null}
 *   {"type":"event","mono":S,"time":S,"group":G,"address":A,"source":..,"old":..,"new":..,
 *    "reason":..,"description":..}
 *   {"type":"publish","mono":S,"group":G,"version":V,"fail_open":B,"n":N,"targets":[..]}
 *      (targets listed when N <= 64)
 *   {"type":"drained_hard","group":G,"address":A,"in_flight":N}
 *   {"type":"reply","cmd":C,"rc":RC,...}
 * and reads commands on stdin, one per line:
 *   register GROUP ADDR [WEIGHT] | deregister GROUP ADDR | health GROUP ADDR 0|1 [REASON]
 *   reload FILE | passive GROUP ADDR connect|5xx N | hold GROUP | release ID
 *   snapshot GROUP | stats | quit
 * `hold` plays a worker's request: it takes the group's snapshot and counts
 * one request in flight on each of its targets until `release`. `stats`
 * gives the loop lag (wh_lag_max), the CPU time used (getrusage) and the
 * checks run. EOF on stdin is `quit`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "targets/targets-int.h"
#include "wharf/api.h"
#include "wharf/config.h"
#include "wharf/lag.h"
#include "wharf/log.h"
#include "wharf/targets.h"

#define MAX_HOLDS 256
#define LIST_MAX 64

struct app {
    struct event_base *base;
    struct wh_targets *reg;
    struct wh_api *api;
    struct wh_lag *lag;
    struct event *in_ev;
    struct evbuffer *in;
    struct wh_tg_snapshot *holds[MAX_HOLDS];
    double t0;
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    cJSON_free(s);
    cJSON_Delete(o);
}

static cJSON *obj(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddNumberToObject(o, "mono", mono());
    return o;
}

static void on_publish(void *arg, struct wh_tg_snapshot *s)
{
    cJSON *o = obj("publish");
    cJSON_AddStringToObject(o, "group", s->group);
    cJSON_AddNumberToObject(o, "version", (double)s->version);
    cJSON_AddBoolToObject(o, "fail_open", s->fail_open);
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    cJSON_AddNumberToObject(o, "n_registered", (double)s->n_registered);
    if (s->n <= LIST_MAX) {
        cJSON *a = cJSON_AddArrayToObject(o, "targets");
        for (size_t i = 0; i < s->n; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(s->members[i].target->addr.text));
    }
    emit(o);
}

static void on_event(void *arg, const struct wh_target_event *ev)
{
    cJSON *o = obj("event");
    cJSON_AddNumberToObject(o, "time", ev->time);
    cJSON_AddStringToObject(o, "group", ev->group);
    cJSON_AddStringToObject(o, "address", ev->address);
    cJSON_AddStringToObject(o, "source", ev->source);
    cJSON_AddStringToObject(o, "old", wh_target_state_name(ev->old_state));
    cJSON_AddStringToObject(o, "new", wh_target_state_name(ev->new_state));
    cJSON_AddStringToObject(o, "reason", ev->reason);
    cJSON_AddStringToObject(o, "description", ev->description);
    emit(o);
}

static void on_drained_hard(void *arg, struct wh_target *t)
{
    cJSON *o = obj("drained_hard");
    cJSON_AddStringToObject(o, "group", t->group);
    cJSON_AddStringToObject(o, "address", t->addr.text);
    cJSON_AddNumberToObject(o, "in_flight", atomic_load(&t->in_flight));
    emit(o);
}

static void report(void *arg, int is_error, const char *line)
{
    fprintf(stderr, "%s\n", line);
}

static struct wh_config *load(const char *path)
{
    return wh_config_load_ex(path, WH_FEATURES_BUILT | WH_FEATURE_HEALTH | WH_FEATURE_PASSIVE,
                             report, NULL);
}

static int apply_config(struct app *a, const char *path, char *err, size_t errlen)
{
    struct wh_config *cfg = load(path);
    if (!cfg) {
        snprintf(err, errlen, "%s: invalid configuration", path);
        return -1;
    }
    int rc = wh_targets_set_groups(a->reg, cfg, err, errlen);
    wh_config_free(cfg);
    return rc;
}

/* ---- commands ---- */

static int cmd_hold(struct app *a, const char *group, cJSON *r)
{
    for (int i = 0; i < MAX_HOLDS; i++) {
        if (a->holds[i])
            continue;
        struct wh_tg_snapshot *s = wh_targets_snapshot(a->reg, group);
        if (!s)
            return -ENOENT;
        for (size_t k = 0; k < s->n; k++)
            wh_target_begin(s->members[k].target);
        a->holds[i] = s;
        cJSON_AddNumberToObject(r, "id", i);
        cJSON_AddNumberToObject(r, "n", (double)s->n);
        return 0;
    }
    return -ENOSPC;
}

static int cmd_release(struct app *a, int id)
{
    if (id < 0 || id >= MAX_HOLDS || !a->holds[id])
        return -ENOENT;
    struct wh_tg_snapshot *s = a->holds[id];
    for (size_t k = 0; k < s->n; k++)
        wh_target_end(s->members[k].target);
    wh_tg_snapshot_unref(s);
    a->holds[id] = NULL;
    return 0;
}

static int cmd_passive(struct app *a, const char *group, const char *addr, const char *kind, int n)
{
    struct wh_target *t = wh_targets_find(a->reg, group, addr);
    if (!t)
        return -ENOENT;
    for (int i = 0; i < n; i++) {
        if (strcmp(kind, "connect") == 0)
            wh_target_note_connect(t, 0);
        else
            wh_target_note_status(t, 503);
    }
    return 0;
}

static void cmd_stats(struct app *a, cJSON *r)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    cJSON_AddNumberToObject(r, "lag", wh_lag_max(a->lag));
    cJSON_AddNumberToObject(r, "user", (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6);
    cJSON_AddNumberToObject(r, "sys", (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    cJSON_AddNumberToObject(r, "uptime", mono() - a->t0);
    cJSON_AddNumberToObject(r, "checks", (double)a->reg->hc_count);
    cJSON_AddNumberToObject(r, "checks_started", (double)a->reg->hc_started);
}

static void cmd_snapshot(struct app *a, const char *group, cJSON *r)
{
    struct wh_tg_snapshot *s = wh_targets_snapshot(a->reg, group);
    if (!s) {
        cJSON_AddNumberToObject(r, "rc", -ENOENT);
        return;
    }
    cJSON_AddNumberToObject(r, "version", (double)s->version);
    cJSON_AddBoolToObject(r, "fail_open", s->fail_open);
    cJSON *arr = cJSON_AddArrayToObject(r, "targets");
    for (size_t i = 0; i < s->n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(s->members[i].target->addr.text));
    wh_tg_snapshot_unref(s);
}

/* Runs one command line; returns 1 for quit. */
static int run(struct app *a, char *line)
{
    char *w[6] = {0};
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(line, " \t\r", &save); tok && n < 6;
         tok = strtok_r(NULL, " \t\r", &save))
        w[n++] = tok;
    if (n == 0)
        return 0;
    if (strcmp(w[0], "quit") == 0)
        return 1;
    cJSON *r = obj("reply");
    cJSON_AddStringToObject(r, "cmd", w[0]);
    char err[WH_ERR_LEN] = "";
    int rc = -EINVAL;
    if (strcmp(w[0], "register") == 0 && n >= 3)
        rc = wh_targets_register(a->reg, w[1], w[2], n > 3 ? atoi(w[3]) : 1, "api", err,
                                 sizeof(err));
    else if (strcmp(w[0], "deregister") == 0 && n == 3)
        rc = wh_targets_deregister(a->reg, w[1], w[2]);
    else if (strcmp(w[0], "health") == 0 && n >= 4)
        rc = wh_targets_set_health(a->reg, w[1], w[2], atoi(w[3]), n > 4 ? w[4] : "manual");
    else if (strcmp(w[0], "reload") == 0 && n == 2)
        rc = apply_config(a, w[1], err, sizeof(err));
    else if (strcmp(w[0], "passive") == 0 && n == 5)
        rc = cmd_passive(a, w[1], w[2], w[3], atoi(w[4]));
    else if (strcmp(w[0], "hold") == 0 && n == 2)
        rc = cmd_hold(a, w[1], r);
    else if (strcmp(w[0], "release") == 0 && n == 2)
        rc = cmd_release(a, atoi(w[1]));
    else if (strcmp(w[0], "snapshot") == 0 && n == 2)
        cmd_snapshot(a, w[1], r), rc = 0;
    else if (strcmp(w[0], "stats") == 0)
        cmd_stats(a, r), rc = 0;
    if (!cJSON_GetObjectItem(r, "rc"))
        cJSON_AddNumberToObject(r, "rc", rc);
    if (err[0])
        cJSON_AddStringToObject(r, "error", err);
    emit(r);
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

static int setup(struct app *a, const char *path)
{
    char err[WH_ERR_LEN];
    struct wh_config *cfg = load(path);
    if (!cfg)
        return -1;
    wh_log_set_level(cfg->log.level);
    int rc = -1;
    a->reg = wh_targets_new(a->base, on_publish, on_event, a);
    a->lag = wh_lag_new(a->base);
    if (!a->reg || !a->lag)
        goto out;
    wh_targets_on_drained_hard(a->reg, on_drained_hard, a);
    if (cfg->has_admin) {
        if (!(a->api = wh_api_new(a->base, &cfg->admin, err, sizeof(err)))) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        wh_api_targets_register(a->api, a->reg);
        wh_api_add_metrics(a->api, wh_lag_write_metrics, a->lag);
    }
    if (wh_targets_set_groups(a->reg, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    cJSON *o = obj("ready");
    if (a->api)
        cJSON_AddStringToObject(o, "admin", cfg->admin.bind.text);
    else
        cJSON_AddNullToObject(o, "admin");
    emit(o);
    rc = 0;
out:
    wh_config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    struct app a = {0};
    int rc = 1;
    if (argc != 3 || strcmp(argv[1], "-c") != 0) {
        fprintf(stderr, "usage: wh-health-driver -c CONFIG (commands on stdin)\n");
        return 2;
    }
    a.t0 = mono();
    a.base = event_base_new();
    a.in = evbuffer_new();
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    if (!a.base || !a.in || setup(&a, argv[2]) < 0)
        goto out;
    a.in_ev = event_new(a.base, 0, EV_READ | EV_PERSIST, stdin_cb, &a);
    if (!a.in_ev || event_add(a.in_ev, NULL) < 0)
        goto out;
    event_base_dispatch(a.base);
    rc = 0;
out:
    for (int i = 0; i < MAX_HOLDS; i++)
        if (a.holds[i])
            cmd_release(&a, i);
    if (a.in_ev)
        event_free(a.in_ev);
    wh_api_free(a.api);
    wh_targets_free(a.reg);
    wh_lag_free(a.lag);
    if (a.in)
        evbuffer_free(a.in);
    if (a.base)
        event_base_free(a.base);
    return rc;
}

/* Docker driver: the /events watch.
 *
 * One long GET /events (type=container plus the label filters), split into
 * lines as chunks arrive. Once its headers are in, the containers are listed
 * again and compared with the last known set; the differences are delivered
 * as synthetic events, then CONNECTED, then the stream's own events, which
 * were held while the list ran (so a state seen in the list is never undone
 * by an older event: at worst an event repeats). When the stream ends or
 * fails: DISCONNECTED (once per outage) and a reconnect after a backoff that
 * doubles up to backoff_max and resets after a successful re-list.
 *
 * Lines are parsed inside curl's write callback but user code only runs from
 * the watch's own kick event, the list's completion or the stream's, so a
 * callback may call anything, including wh_rt_events_stop and
 * wh_runtime_free.
 *
 * The watch's calls go through docker_transport.c; the host (docker.c)
 * frees the watches left when it goes, with wh_dk_watches_free.
 */
#include "runtime/runtime-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "wharf/log.h"
#include "wharf/obj.h"

struct ev_item {
    cJSON *doc;
    STAILQ_ENTRY(ev_item) link;
};

struct wh_rt_watch {
    unsigned magic;
#define WATCH_MAGIC 0x64776174u /* "dwat" */
    struct wh_dk *dk;
    LIST_ENTRY(wh_rt_watch) link;
    wh_rt_event_fn cb;
    void *arg;
    char *events_path, *list_path;
    double backoff, backoff_initial, backoff_max;
    int sync_initial, have_baseline;
    int up;          /* last told: 1 CONNECTED, 0 DISCONNECTED, -1 nothing yet */
    int got_headers; /* the current stream answered 200: re-list */
    int listing;
    struct wh_dk_req *stream, *list;
    struct wh_dk_lines lines;
    STAILQ_HEAD(, ev_item) pending;
    struct wh_dk_ctr *known; /* sorted by id */
    size_t n_known, cap_known;
    struct event *retry, *kick;
    int busy, dead;
};

static void watch_connect(struct wh_rt_watch *w);

static double wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- the known set ---- */

static void known_clear(struct wh_rt_watch *w)
{
    wh_dk_list_free(w->known, w->n_known);
    w->known = NULL;
    w->n_known = w->cap_known = 0;
}

static struct wh_dk_ctr *known_insert(struct wh_rt_watch *w, const char *id)
{
    long at = wh_dk_ctr_find(w->known, w->n_known, id);
    if (at >= 0)
        return &w->known[at];
    if (w->n_known == w->cap_known) {
        size_t cap = w->cap_known ? w->cap_known * 2 : 16;
        struct wh_dk_ctr *v = realloc(w->known, cap * sizeof(*v));
        if (!v)
            return NULL;
        w->known = v;
        w->cap_known = cap;
    }
    size_t pos = 0;
    while (pos < w->n_known && strcmp(w->known[pos].c.id, id) < 0)
        pos++;
    memmove(&w->known[pos + 1], &w->known[pos], (w->n_known - pos) * sizeof(*w->known));
    memset(&w->known[pos], 0, sizeof(*w->known));
    w->n_known++;
    return &w->known[pos];
}

static void known_remove(struct wh_rt_watch *w, const char *id)
{
    long at = wh_dk_ctr_find(w->known, w->n_known, id);
    if (at < 0)
        return;
    wh_dk_ctr_clear(&w->known[at]);
    memmove(&w->known[at], &w->known[at + 1], (w->n_known - (size_t)at - 1) * sizeof(*w->known));
    w->n_known--;
}

/* The labels of an event: its attributes less Docker's own keys. */
static cJSON *event_labels(const cJSON *doc)
{
    const cJSON *actor = cJSON_GetObjectItemCaseSensitive(doc, "Actor");
    cJSON *labels = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(actor, "Attributes"), 1);
    static const char *const own[] = {"image", "name", "exitCode", "signal"};
    for (size_t i = 0; labels && i < sizeof(own) / sizeof(own[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(labels, own[i]);
    return labels;
}

/* Keep the known set in step with a stream event. */
static void known_apply(struct wh_rt_watch *w, const struct wh_rt_event *ev, const cJSON *doc)
{
    int start = strcmp(ev->action, "start") == 0, die = strcmp(ev->action, "die") == 0;
    int create = strcmp(ev->action, "create") == 0;
    if (strcmp(ev->action, "destroy") == 0) {
        known_remove(w, ev->id);
        return;
    }
    if (!start && !die && !create)
        return;
    long at = wh_dk_ctr_find(w->known, w->n_known, ev->id);
    struct wh_dk_ctr *c = at >= 0 ? &w->known[at] : known_insert(w, ev->id);
    if (!c)
        return;
    if (at < 0) {
        cJSON *labels = event_labels(doc);
        int rc = wh_dk_ctr_set(c, ev->id, ev->name, 0, -1, labels);
        cJSON_Delete(labels);
        if (rc != 0) {
            known_remove(w, ev->id);
            return;
        }
    }
    c->c.running = start;
    c->c.exit_code = die ? ev->exit_code : c->c.exit_code;
    snprintf(c->c.state, sizeof(c->c.state), "%s", start ? "running" : die ? "exited" : "created");
}

/* ---- delivering ---- */

static void watch_destroy(struct wh_rt_watch *w)
{
    struct ev_item *it;
    LIST_REMOVE(w, link);
    wh_dk_req_cancel(w->stream);
    wh_dk_req_cancel(w->list);
    while ((it = STAILQ_FIRST(&w->pending))) {
        STAILQ_REMOVE_HEAD(&w->pending, link);
        cJSON_Delete(it->doc);
        free(it);
    }
    known_clear(w);
    wh_dk_lines_free(&w->lines);
    if (w->retry)
        event_free(w->retry);
    if (w->kick)
        event_free(w->kick);
    free(w->events_path);
    free(w->list_path);
    WH_FREE_OBJ(w);
}

/* Call the user. -1 when the watch or its host is gone afterwards. */
static int emit(struct wh_rt_watch *w, const struct wh_rt_event *ev)
{
    struct wh_dk *dk = w->dk;
    int gone = 0;
    wh_dk_enter(dk);
    w->busy++;
    if (!w->dead && !dk->dying)
        w->cb(w->arg, ev);
    w->busy--;
    if (w->dead && !w->busy) {
        watch_destroy(w);
        gone = 1;
    }
    if (wh_dk_leave(dk) != 0)
        gone = 1;
    return gone ? -1 : 0;
}

static int emit_state(struct wh_rt_watch *w, int up, const struct wh_rt_error *err)
{
    if (w->up == up)
        return 0;
    w->up = up;
    struct wh_rt_event ev = {.kind = up ? WH_RT_EV_CONNECTED : WH_RT_EV_DISCONNECTED,
                             .exit_code = -1,
                             .time = wall_now(),
                             .error = err};
    if (!up)
        wh_log_warn("runtime", "%s", err->message);
    return emit(w, &ev);
}

/* Deliver the held stream events. -1 when the watch is gone. */
static int deliver_pending(struct wh_rt_watch *w)
{
    struct ev_item *it;
    while (!w->listing && (it = STAILQ_FIRST(&w->pending))) {
        STAILQ_REMOVE_HEAD(&w->pending, link);
        struct wh_rt_event ev;
        struct wh_rt_kv *kv = NULL;
        int rc = 0;
        if (wh_dk_event_parse(it->doc, &ev, &kv) == 0) {
            known_apply(w, &ev, it->doc);
            rc = emit(w, &ev);
        }
        free(kv);
        cJSON_Delete(it->doc);
        free(it);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- the re-list ---- */

struct diff_ctx {
    unsigned magic;
#define DIFF_MAGIC 0x64646966u /* "ddif" */
    struct wh_rt_watch *w;
    int gone;
};

static void on_diff(void *arg, const char *action, const struct wh_dk_ctr *c, int exit_code)
{
    struct diff_ctx *d;
    WH_CAST_OBJ(d, arg, DIFF_MAGIC);
    if (d->gone)
        return;
    struct wh_rt_event ev = {.kind = WH_RT_EV_CONTAINER,
                             .synthetic = 1,
                             .exit_code = exit_code,
                             .time = wall_now(),
                             .labels = c->c.labels,
                             .n_labels = c->c.n_labels};
    snprintf(ev.action, sizeof(ev.action), "%s", action);
    snprintf(ev.id, sizeof(ev.id), "%s", c->c.id);
    snprintf(ev.name, sizeof(ev.name), "%s", c->c.name);
    if (emit(d->w, &ev) != 0)
        d->gone = 1;
}

static void stream_failed(struct wh_rt_watch *w, const struct wh_rt_error *err);

static void on_list(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct wh_rt_watch *w;
    WH_CAST_OBJ(w, ctx, WATCH_MAGIC);
    struct wh_rt_error e;
    struct wh_dk_ctr *v;
    size_t n;
    w->list = NULL;
    w->listing = 0;
    if (wh_dk_dropped(err))
        return; /* the host is going: it frees the watch */
    if (wh_dk_list_answer(w->dk, err, res, &e, &v, &n) != 0) {
        stream_failed(w, &e);
        return;
    }
    wh_dk_ctr_sort(v, n);
    struct diff_ctx d = {.magic = DIFF_MAGIC, .w = w};
    struct wh_dk_ctr *old = w->known;
    size_t n_old = w->n_known;
    int report = w->have_baseline || w->sync_initial;
    w->known = v;
    w->n_known = w->cap_known = n;
    w->have_baseline = 1;
    w->backoff = w->backoff_initial;
    if (report)
        wh_dk_diff(old, n_old, v, n, on_diff, &d);
    wh_dk_list_free(old, n_old);
    if (d.gone || emit_state(w, 1, NULL) != 0)
        return;
    event_active(w->kick, EV_TIMEOUT, 1);
}

static void start_list(struct wh_rt_watch *w)
{
    struct wh_dk_call_opts o = {.method = "GET", .path = w->list_path};
    w->list = wh_dk_call(w->dk, &o, on_list, w);
    w->listing = w->list != NULL;
    if (!w->list) {
        struct wh_rt_error err = {0};
        wh_dk_error(w->dk, &err, WH_RT_ERR_INTERNAL, "events", "out of memory");
        stream_failed(w, &err);
    }
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_rt_watch *w;
    WH_CAST_OBJ(w, arg, WATCH_MAGIC);
    if (w->got_headers && w->stream && !w->listing) {
        w->got_headers = 0;
        start_list(w);
        return;
    }
    deliver_pending(w);
}

/* ---- the stream ---- */

static int on_line(void *arg, char *line, size_t len)
{
    struct wh_rt_watch *w;
    WH_CAST_OBJ(w, arg, WATCH_MAGIC);
    cJSON *doc = cJSON_ParseWithLength(line, len);
    struct ev_item *it = doc ? calloc(1, sizeof(*it)) : NULL;
    if (!it) {
        cJSON_Delete(doc);
        wh_log_warn("runtime", "host %s: unreadable event line dropped", w->dk->id);
        return 0;
    }
    it->doc = doc;
    STAILQ_INSERT_TAIL(&w->pending, it, link);
    return 0;
}

static int on_chunk(void *arg, const char *data, size_t len)
{
    struct wh_rt_watch *w;
    WH_CAST_OBJ(w, arg, WATCH_MAGIC);
    if (wh_dk_lines_feed(&w->lines, data, len, on_line, w) != 0)
        return -1;
    if (!STAILQ_EMPTY(&w->pending))
        event_active(w->kick, EV_TIMEOUT, 1);
    return 0;
}

static void on_headers(void *ctx, long status)
{
    struct wh_rt_watch *w;
    WH_CAST_OBJ(w, ctx, WATCH_MAGIC);
    if (status == 200) {
        w->got_headers = 1;
        event_active(w->kick, EV_TIMEOUT, 1);
    }
}

static void schedule_retry(struct wh_rt_watch *w)
{
    double d = w->backoff;
    struct timeval tv = {.tv_sec = (time_t)d,
                         .tv_usec = (suseconds_t)((d - (double)(time_t)d) * 1e6)};
    evtimer_add(w->retry, &tv);
    w->backoff = d * 2 > w->backoff_max ? w->backoff_max : d * 2;
}

static void stream_failed(struct wh_rt_watch *w, const struct wh_rt_error *err)
{
    wh_dk_req_cancel(w->stream);
    wh_dk_req_cancel(w->list);
    w->stream = w->list = NULL;
    w->listing = 0;
    w->got_headers = 0;
    wh_dk_lines_reset(&w->lines);
    schedule_retry(w);
    if (deliver_pending(w) != 0)
        return;
    emit_state(w, 0, err);
}

static void on_stream_done(void *ctx, const struct wh_rt_error *err,
                           const struct wh_curl_result *res)
{
    struct wh_rt_watch *w;
    WH_CAST_OBJ(w, ctx, WATCH_MAGIC);
    struct wh_rt_error e = *err;
    w->stream = NULL;
    if (wh_dk_dropped(err))
        return;
    if (e.kind == WH_RT_OK)
        wh_dk_error(w->dk, &e, WH_RT_ERR_TRANSPORT, "GET /events",
                    "the engine closed the event stream");
    stream_failed(w, &e);
}

static void watch_connect(struct wh_rt_watch *w)
{
    struct wh_dk_call_opts o = {.method = "GET",
                                .path = w->events_path,
                                .cls = WH_DK_STREAM,
                                .chunk = on_chunk,
                                .chunk_arg = w,
                                .on_headers = on_headers};
    wh_dk_lines_reset(&w->lines);
    w->got_headers = 0;
    w->stream = wh_dk_call(w->dk, &o, on_stream_done, w);
    if (!w->stream)
        schedule_retry(w);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_rt_watch *w;
    WH_CAST_OBJ(w, arg, WATCH_MAGIC);
    watch_connect(w);
}

/* ---- start and stop ---- */

static int watch_paths(struct wh_rt_watch *w, const struct wh_rt_events_params *p)
{
    const char *const *labels = p ? p->labels : NULL;
    size_t n = p ? p->n_labels : 0;
    char *filters = wh_dk_filters_query(labels, n, 1);
    if (!filters || asprintf(&w->events_path, "/events?filters=%s", filters) < 0)
        w->events_path = NULL;
    free(filters);
    w->list_path = wh_dk_list_path(labels, n);
    return w->events_path && w->list_path ? 0 : -1;
}

struct wh_rt_watch *wh_dk_events_start(struct wh_runtime *rt, const struct wh_rt_events_params *p,
                                       wh_rt_event_fn cb, void *arg)
{
    struct wh_dk *dk = wh_dk_from_rt(rt);
    struct wh_rt_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    WH_INIT_OBJ(w, WATCH_MAGIC);
    w->dk = dk;
    w->cb = cb;
    w->arg = arg;
    w->up = -1;
    w->backoff_initial = p && p->backoff_initial > 0 ? p->backoff_initial : 0.25;
    w->backoff_max = p && p->backoff_max > 0 ? p->backoff_max : 30;
    w->backoff = w->backoff_initial;
    w->sync_initial = p ? p->sync_initial : 0;
    STAILQ_INIT(&w->pending);
    LIST_INSERT_HEAD(&dk->watches, w, link);
    w->retry = evtimer_new(dk->evb, retry_cb, w);
    w->kick = event_new(dk->evb, -1, 0, kick_cb, w);
    if (!w->retry || !w->kick || watch_paths(w, p) != 0) {
        watch_destroy(w);
        return NULL;
    }
    watch_connect(w);
    return w;
}

void wh_dk_events_stop(struct wh_rt_watch *w)
{
    WH_CHECK_OBJ_ORNULL(w, WATCH_MAGIC);
    if (!w)
        return;
    if (w->busy) {
        /* From our own callback: emit() destroys it when the callback returns. */
        w->dead = 1;
        return;
    }
    watch_destroy(w);
}

void wh_dk_watches_free(struct wh_dk *dk)
{
    struct wh_rt_watch *w;
    while ((w = LIST_FIRST(&dk->watches)))
        watch_destroy(w);
}

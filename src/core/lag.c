/* The event-loop lag meter (include/wharf/lag.h): a 50 ms timer notes how
 * late it fires; the largest lateness per second is kept for 10 s. */
#include <stdlib.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "wharf/lag.h"
#include "wharf/obj.h"

#define LAG_TICK_US 50000
#define LAG_BUCKETS 10 /* one per second */

#define WH_LAG_MAGIC 0x4c414731u /* "LAG1" */

struct wh_lag {
    unsigned magic;
    struct event *tick;
    double expected;            /* monotonic time the next tick is due */
    double bucket[LAG_BUCKETS]; /* largest lag seen in each second */
    long bucket_sec[LAG_BUCKETS];
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void note(struct wh_lag *l, double now, double lag)
{
    long sec = (long)now;
    int i = (int)(sec % LAG_BUCKETS);
    if (l->bucket_sec[i] != sec) {
        l->bucket_sec[i] = sec;
        l->bucket[i] = 0;
    }
    if (lag > l->bucket[i])
        l->bucket[i] = lag;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wh_lag *l;
    WH_CAST_OBJ(l, arg, WH_LAG_MAGIC);
    double now = now_mono();
    double lag = now - l->expected;
    note(l, now, lag > 0 ? lag : 0);
    /* Re-armed by hand, so the next due time is exactly known. */
    struct timeval tv = {0, LAG_TICK_US};
    l->expected = now_mono() + LAG_TICK_US / 1e6;
    event_add(l->tick, &tv);
}

struct wh_lag *wh_lag_new(struct event_base *base)
{
    struct wh_lag *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    WH_INIT_OBJ(l, WH_LAG_MAGIC);
    l->tick = evtimer_new(base, tick_cb, l);
    struct timeval tv = {0, LAG_TICK_US};
    if (!l->tick || event_add(l->tick, &tv) < 0) {
        wh_lag_free(l);
        return NULL;
    }
    l->expected = now_mono() + LAG_TICK_US / 1e6;
    return l;
}

void wh_lag_free(struct wh_lag *l)
{
    if (!l)
        return;
    if (l->tick)
        event_free(l->tick);
    WH_FREE_OBJ(l);
}

double wh_lag_max(const struct wh_lag *l)
{
    long sec = (long)now_mono();
    double max = 0;
    for (int i = 0; i < LAG_BUCKETS; i++)
        if (sec - l->bucket_sec[i] < LAG_BUCKETS && l->bucket[i] > max)
            max = l->bucket[i];
    return max;
}

void wh_lag_write_metrics(void *lag, struct evbuffer *out)
{
    const struct wh_lag *l;
    WH_CAST_OBJ(l, lag, WH_LAG_MAGIC);
    evbuffer_add_printf(out,
                        "# HELP wharf_event_loop_lag_seconds Largest lag of the control event loop "
                        "over the last 10 s.\n# TYPE wharf_event_loop_lag_seconds gauge\n"
                        "wharf_event_loop_lag_seconds %.6f\n",
                        wh_lag_max(l));
}

/* Event-loop lag: a periodic timer notes how late it fires; the largest
 * lateness over the last 10 s is the metric wharf_event_loop_lag_seconds. */
#ifndef WHARF_LAG_H
#define WHARF_LAG_H

struct event_base;
struct wh_lag;

/* New meter ticking every 50 ms on base. Free with wh_lag_free. */
struct wh_lag *wh_lag_new(struct event_base *base);
void wh_lag_free(struct wh_lag *l);
/* Largest lag in seconds seen over the last 10 s (call on base's thread). */
double wh_lag_max(const struct wh_lag *l);

struct evbuffer;
/* Append wharf_event_loop_lag_seconds (HELP, TYPE and value) to out. The
 * signature fits the admin API's metrics callbacks: arg is the wh_lag. */
void wh_lag_write_metrics(void *lag, struct evbuffer *out);

#endif

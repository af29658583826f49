/* hosts: the probe of one host — a round every ping_interval (GET /_ping,
 * and GET /info while the host is not reachable yet), judged when the next
 * round starts: a round whose answers are not all in by then is missed,
 * and unreachable_after missed rounds in a row make the host UNREACHABLE.
 *
 * Our timer, not the call's timeout, decides: the runtime cannot cancel one
 * call, so each call carries its round number and an answer that comes
 * after its round is dropped. The probe runtime's own call timeout (the
 * ping interval) ends such calls soon after. */
#include "hosts/hosts-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "wharf/obj.h"
#include "wharf/runtime.h"

#define PROBE_MOD "hosts"

/* ---- call records ---- */

static struct wh_hosts_call *probe_call_new(struct wh_host *h, const char *what)
{
    struct wh_hosts_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    WH_INIT_OBJ(c, WH_HOSTS_CALL_MAGIC);
    c->host = h;
    c->round = h->round;
    TAILQ_INSERT_TAIL(&h->calls, c, link);
    h->waiting_for = what;
    return c;
}

static void probe_call_free(struct wh_hosts_call *c)
{
    TAILQ_REMOVE(&c->host->calls, c, link);
    WH_FREE_OBJ(c);
}

/* The host of an answered call when the answer still counts; NULL (late,
 * or the host forgotten) when it must be dropped. Frees the record. */
static struct wh_host *probe_answered(void *arg, const char *what)
{
    struct wh_hosts_call *c;
    WH_CAST_OBJ(c, arg, WH_HOSTS_CALL_MAGIC);
    struct wh_host *h = c->host;
    WH_CHECK_OBJ(h, WH_HOST_MAGIC);
    unsigned round = c->round;
    probe_call_free(c);
    if (h->dead)
        return NULL;
    if (round != h->round) {
        wh_log_debug(PROBE_MOD, "host %s: %s of round %u answered in round %u: ignored", h->id,
                     what, round, h->round);
        return NULL;
    }
    return h;
}

/* ---- outcomes of a round ---- */

static void probe_failed(struct wh_host *h, const char *message)
{
    h->round_failed = 1;
    snprintf(h->last_error, sizeof(h->last_error), "%s", message);
    wh_log_debug(PROBE_MOD, "host %s: round %u failed: %s", h->id, h->round, message);
}

static void probe_ok(struct wh_host *h, const char *reason)
{
    int missed = h->missed;
    h->round_ok = 1;
    h->missed = 0;
    h->last_error[0] = '\0';
    if (h->state == WH_HOST_ACTIVE || h->state == WH_HOST_DRAINING)
        return;
    char text[WH_ERR_LEN];
    if (missed)
        snprintf(text, sizeof(text), "%s, after %d missed round%s", reason, missed,
                 missed == 1 ? "" : "s");
    else
        snprintf(text, sizeof(text), "%s", reason);
    wh_hosts_change_state(h, wh_hosts_up_state(h), text);
}

/* The round ended without every answer: count it, maybe UNREACHABLE. */
static void probe_missed(struct wh_host *h)
{
    h->missed++;
    if (!h->round_failed)
        snprintf(h->last_error, sizeof(h->last_error), "host %s (%s): no answer to %s within %g s",
                 h->id, h->docker, h->waiting_for, h->ping_interval);
    wh_log_debug(PROBE_MOD, "host %s: round %u missed (%d of %d): %s", h->id, h->round, h->missed,
                 h->unreachable_after, h->last_error);
    if (h->missed < h->unreachable_after || h->state == WH_HOST_UNREACHABLE)
        return;
    char reason[WH_ERR_LEN + 64];
    snprintf(reason, sizeof(reason), "%d rounds missed in a row; last: %s", h->missed,
             h->last_error);
    wh_hosts_change_state(h, WH_HOST_UNREACHABLE, reason);
}

/* ---- the calls ---- */

static void probe_info_cb(void *arg, const struct wh_rt_error *err, const struct wh_rt_info *info)
{
    struct wh_host *h = probe_answered(arg, "GET /info");
    if (!h)
        return;
    if (err->kind != WH_RT_OK || !info) {
        probe_failed(h, err->message);
        return;
    }
    h->cpu_total = (int64_t)info->ncpu * 1024;
    h->mem_total = info->mem_total / (1024 * 1024);
    char reason[256];
    snprintf(reason, sizeof(reason), "answered: %d CPUs (%lld units), %lld MiB, engine %s",
             info->ncpu, (long long)h->cpu_total, (long long)h->mem_total, info->server_version);
    probe_ok(h, reason);
}

static void probe_send_info(struct wh_host *h)
{
    struct wh_hosts_call *c = probe_call_new(h, "GET /info");
    if (!c || wh_rt_info(h->probe, probe_info_cb, c) != 0) {
        if (c)
            probe_call_free(c);
        probe_failed(h, "cannot ask for the engine's info: out of memory");
    }
}

static void probe_ping_cb(void *arg, const struct wh_rt_error *err)
{
    struct wh_host *h = probe_answered(arg, "GET /_ping");
    if (!h)
        return;
    if (err->kind != WH_RT_OK)
        probe_failed(h, err->message);
    else if (h->state == WH_HOST_ACTIVE || h->state == WH_HOST_DRAINING)
        probe_ok(h, "answered");
    else
        probe_send_info(h); /* coming (back): read what the engine is now */
}

static void probe_round(struct wh_host *h)
{
    h->round++;
    h->round_ok = 0;
    h->round_failed = 0;
    struct wh_hosts_call *c = probe_call_new(h, "GET /_ping");
    if (!c || wh_rt_ping(h->probe, probe_ping_cb, c) != 0) {
        if (c)
            probe_call_free(c);
        probe_failed(h, "cannot send a ping: out of memory");
    }
}

static void probe_tick(evutil_socket_t fd, short what, void *arg)
{
    struct wh_host *h;
    WH_CAST_OBJ(h, arg, WH_HOST_MAGIC);
    if (!h->round_ok)
        probe_missed(h);
    if (!h->dead) /* the subscriber may have forgotten it */
        probe_round(h);
}

/* ---- the host's side ---- */

int wh_hosts_probe_start(struct wh_host *h)
{
    struct timeval tv;
    tv.tv_sec = (time_t)h->ping_interval;
    tv.tv_usec = (suseconds_t)((h->ping_interval - (double)tv.tv_sec) * 1e6);
    h->tick = event_new(h->set->base, -1, EV_PERSIST, probe_tick, h);
    if (!h->tick || event_add(h->tick, &tv) != 0)
        return -1;
    probe_round(h);
    return 0;
}

void wh_hosts_probe_fini(struct wh_host *h)
{
    struct wh_hosts_call *c;
    if (h->tick)
        event_free(h->tick);
    h->tick = NULL;
    while ((c = TAILQ_FIRST(&h->calls)))
        probe_call_free(c);
}

/* Tunnels: after 101 Switching Protocols (WebSocket and other upgrades) a
 * session moves bytes both ways between client and upstream until either
 * side closes, or both stay silent for the listener's idle_timeout. The
 * session's events dispatch here (session.c); closing is the session's. */
#include "session.h"

static double tunnel_loop_now(const struct wh_session *s)
{
    struct timeval tv;
    event_base_gettimeofday_cached(s->proxy->base, &tv);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int wh_tunnel_recently_active(const struct wh_session *s)
{
    return tunnel_loop_now(s) - s->tunnel_active < s->listener->cfg->idle_timeout;
}

void wh_tunnel_pump(struct wh_session *s, struct bufferevent *from, struct bufferevent *to)
{
    struct evbuffer *in = bufferevent_get_input(from);
    if (evbuffer_get_length(in) > 0)
        s->tunnel_active = tunnel_loop_now(s);
    wh_send_from(to, in, evbuffer_get_length(in));
    if (evbuffer_get_length(bufferevent_get_output(to)) >= WH_HIGH_WATER)
        bufferevent_disable(from, EV_READ);
}

int wh_tunnel_start(struct wh_session *s, const char *buf)
{
    evtimer_del(s->timer);
    struct evbuffer *out = s->proxy->scratch;
    wh_rewrite_response(out, buf, &s->resp, WH_RESP_UPGRADE, NULL);
    wh_send_from(s->bev, out, evbuffer_get_length(out));
    evbuffer_drain(bufferevent_get_input(s->up->bev), s->resp.head_len);
    evbuffer_drain(s->req_head, evbuffer_get_length(s->req_head));
    s->resp_started = 1;
    s->state = SS_TUNNEL;
    wh_access_record_stamp(s, &s->rec.t_resp);
    wh_access_record_end(s, 101, NULL);
    struct timeval idle = wh_tv(s->listener->cfg->idle_timeout);
    bufferevent_set_timeouts(s->up->bev, &idle, &idle);
    wh_tunnel_pump(s, s->up->bev, s->bev);
    wh_tunnel_pump(s, s->bev, s->up->bev);
    bufferevent_enable(s->bev, EV_READ);
    return 0;
}

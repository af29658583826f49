/* Stickiness on top of the rules and the balancer: which forward group and
 * which target a client's cookies pin, and the Set-Cookie lines that name
 * what a request got. The cookies themselves are sticky.c's.
 *
 *   wharf-lb-GROUP     "GROUP\nADDRESS": the target, while it is healthy
 *   wharf-tg-LISTENER  "GROUP": the forward group, while it has weight */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy-int.h"

static int64_t wall_seconds(void)
{
    return (int64_t)time(NULL);
}

/* The payload of a valid stickiness cookie `name`, or -1. */
static int sticky_cookie(const struct wh_listener_prep *lp, const char *buf,
                         const struct wh_http_msg *req, const char *name, char *out, size_t outlen)
{
    const char *v;
    size_t len;
    if (!wh_cookie_find(buf, req, name, strlen(name), &v, &len))
        return -1;
    return wh_sticky_decode(&lp->key, v, len, wall_seconds(), out, outlen);
}

static void target_cookie_name(const struct wh_cfg_target_group *tg, char *out, size_t outlen)
{
    snprintf(out, outlen, "wharf-lb-%s", tg->name);
}

int wh_route_forward_index(const struct wh_listener_prep *lp, const struct wh_action *a,
                           const char *buf, const struct wh_http_msg *req, uint64_t *rng)
{
    if (a->stickiness > 0) {
        char name[WH_STICKY_PAYLOAD_MAX + 1];
        int n = sticky_cookie(lp, buf, req, lp->tg_cookie, name, sizeof(name));
        for (size_t i = 0; n > 0 && i < a->n_groups; i++)
            if (a->groups[i].weight > 0 && strcmp(a->groups[i].name, name) == 0)
                return (int)i;
    }
    return a->n_groups == 1 ? 0 : wh_forward_pick(a, rng);
}

struct wh_target *wh_route_pinned_target(const struct wh_listener_prep *lp,
                                         const struct wh_cfg_target_group *tg, struct wh_group *g,
                                         const char *buf, const struct wh_http_msg *req)
{
    char name[WH_NAME_MAX + 16], payload[WH_STICKY_PAYLOAD_MAX + 1];
    target_cookie_name(tg, name, sizeof(name));
    int n = sticky_cookie(lp, buf, req, name, payload, sizeof(payload));
    size_t glen = strlen(tg->name);
    if (n <= (int)glen + 1 || memcmp(payload, tg->name, glen) != 0 || payload[glen] != '\n')
        return NULL; /* absent, forged, expired, or another group's */
    return wh_balancer_find(g, payload + glen + 1, (size_t)n - glen - 1);
}

/* Append one Set-Cookie line for payload to out at *used. */
static void add_set_cookie(const struct wh_listener_prep *lp, const char *name, const char *payload,
                           size_t len, int64_t max_age, char *out, size_t outlen, size_t *used)
{
    char value[WH_STICKY_VALUE_MAX];
    if (*used >= outlen || wh_sticky_encode(&lp->key, payload, len, wall_seconds() + max_age, value,
                                            sizeof(value)) <= 0)
        return;
    *used += (size_t)snprintf(out + *used, outlen - *used,
                              "Set-Cookie: %s=%s; Path=/; Max-Age=%lld; HttpOnly\r\n", name, value,
                              (long long)max_age);
}

const char *wh_route_set_cookies(const struct wh_listener_prep *lp,
                                 const struct wh_cfg_target_group *tg, const struct wh_target *t,
                                 double group_stickiness, char *out, size_t outlen)
{
    size_t used = 0;
    if (t) {
        char name[WH_NAME_MAX + 16], payload[WH_STICKY_PAYLOAD_MAX + 1];
        int n = snprintf(payload, sizeof(payload), "%s\n%s", tg->name, t->addr.text);
        target_cookie_name(tg, name, sizeof(name));
        if (n > 0 && (size_t)n < sizeof(payload))
            add_set_cookie(lp, name, payload, (size_t)n, (int64_t)tg->stickiness_duration, out,
                           outlen, &used);
    }
    if (group_stickiness > 0)
        add_set_cookie(lp, lp->tg_cookie, tg->name, strlen(tg->name), (int64_t)group_stickiness,
                       out, outlen, &used);
    return used > 0 && used < outlen ? out : NULL;
}

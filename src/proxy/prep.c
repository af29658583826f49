/* A configuration made ready to serve: what the workers need beyond the
 * config structs, built once on the control thread (rules compiled,
 * certificates read), so a bad certificate fails the load or the reload
 * before any worker sees it. */
#include <stdio.h>
#include <stdlib.h>

#include "proxy-int.h"

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

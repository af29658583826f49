/* The control plane's own blocks: admin (the admin listener) and state
 * (where desired state is kept). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

#define STATE_DIR_DEFAULT "/var/lib/wharf"
#define STATE_PREFIX_DEFAULT "/wharf/"

static int check_etcd_url(const char *v, char *err, size_t errlen);
static int check_prefix(const char *v, char *err, size_t errlen);

/* ---- tables ---- */

#define AD(f) offsetof(struct wh_cfg_admin, f)

static const struct cfg_param admin_params[] = {
    {"bind", CFG_ADDR, AD(bind), .flags = CFG_REQUIRED},
    {"token_file", CFG_STRING, AD(token_file), .check = wh_cfg_check_no_ctl},
    CFG_NUM("metrics_public", CFG_BOOL, AD(metrics_public), 0, 1, 0),
};
static const struct cfg_block admin_block = CFG_BLOCK(admin_params, NULL);

#define ST(f) offsetof(struct wh_cfg_state, f)

static const struct cfg_param state_params[] = {
    {"dir", CFG_STRING, ST(dir), .check = wh_cfg_check_abs_path},
    {"prefix", CFG_STRING, ST(prefix), .sdef = STATE_PREFIX_DEFAULT, .check = check_prefix},
};
static const char *const state_others[] = {"etcd", NULL};
static const struct cfg_block state_block = CFG_BLOCK(state_params, state_others);

/* ---- validators ---- */

static int check_etcd_url(const char *v, char *err, size_t errlen)
{
    if ((strncmp(v, "http://", 7) == 0 && v[7]) || (strncmp(v, "https://", 8) == 0 && v[8]))
        return wh_cfg_check_no_space(v, err, errlen);
    snprintf(err, errlen, "\"%s\" is not an etcd endpoint: http://HOST:PORT or https://...", v);
    return -1;
}

static int check_prefix(const char *v, char *err, size_t errlen)
{
    if (v[0] == '/')
        return wh_cfg_check_no_ctl(v, err, errlen);
    snprintf(err, errlen, "\"%s\" must start with /", v);
    return -1;
}

/* ---- admin ---- */

void wh_cfg_admin_parse(struct cfg_ctx *c, const config_setting_t *s)
{
    struct wh_cfg_admin *a = &c->cfg->admin;
    if (!s)
        return;
    c->cfg->has_admin = 1;
    if (wh_cfg_block_parse(c, s, &admin_block, a) < 0 && !config_setting_is_group(s))
        return;
    a->enabled = 1;
    if (!a->bind.len)
        return;
    if (!wh_addr_is_loopback(&a->bind))
        wh_cfg_error(c, s, "bind",
                     "%s: the admin listener must bind a loopback address "
                     "(127.0.0.1 or [::1]) until admin TLS exists",
                     a->bind.text);
    for (size_t i = 0; i < c->cfg->n_listeners; i++)
        if (wh_addr_equal(&c->cfg->listeners[i].bind, &a->bind))
            wh_cfg_error(c, s, "bind", "%s is already bound by listener \"%s\" (line %d)",
                         a->bind.text, c->cfg->listeners[i].name, c->cfg->listeners[i].line);
}

void wh_cfg_admin_reset(struct wh_config *cfg)
{
    free(cfg->admin.token_file);
    memset(&cfg->admin, 0, sizeof(cfg->admin));
    cfg->has_admin = 0;
}

/* ---- state ---- */

static void state_defaults(struct cfg_ctx *c, struct wh_cfg_state *st)
{
    if (!st->dir && !st->n_etcd)
        st->dir = wh_cfg_strdup(c, STATE_DIR_DEFAULT);
    if (!st->prefix)
        st->prefix = wh_cfg_strdup(c, STATE_PREFIX_DEFAULT);
}

void wh_cfg_state_parse(struct cfg_ctx *c, const config_setting_t *s)
{
    struct wh_cfg_state *st = &c->cfg->state;
    c->cfg->has_state = s != NULL;
    wh_cfg_block_parse(c, s, &state_block, st);
    if (s && config_setting_is_group(s)) {
        const config_setting_t *etcd = wh_cfg_member(s, "etcd");
        if (etcd &&
            wh_cfg_string_list(c, etcd, CFG_MAX_ETCD, check_etcd_url, &st->etcd, &st->n_etcd) ==
                0 &&
            st->n_etcd == 0)
            wh_cfg_error(c, etcd, NULL, "needs at least one endpoint");
        if (etcd && wh_cfg_member(s, "dir"))
            wh_cfg_error(c, s, "dir", "choose one store: dir (embedded) or etcd, not both");
        if (!etcd && wh_cfg_member(s, "prefix"))
            wh_cfg_error(c, s, "prefix", "only for the etcd store");
    }
    state_defaults(c, st);
}

void wh_cfg_state_reset(struct cfg_ctx *c, struct wh_config *cfg)
{
    struct wh_cfg_state *st = &cfg->state;
    free(st->dir);
    free(st->prefix);
    wh_cfg_free_strv(st->etcd, st->n_etcd);
    memset(st, 0, sizeof(*st));
    cfg->has_state = 0;
    if (c)
        state_defaults(c, st);
}

/* Configuration loading, the top level only: libconfig reads the file, the
 * top-level scalars (workers, log, limits, timeouts) are tables here, and
 * parse_root hands each block to its parser (config_groups.c,
 * config_listeners.c, config_fleet.c, config_services.c, config_admin.c),
 * then runs the staging check (config_stage.c). What they report is buffered in the parse context
 * (config_ctx.c) and handed to the caller's report function sorted by line;
 * the messages that come before any parsing (cannot open, syntax error) go
 * straight to it. */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

/* ---- messages the context does not buffer ---- */

static void report_plain(wh_config_report_fn report, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_plain(wh_config_report_fn report, void *arg, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (report)
        report(arg, 1, line);
}

/* ---- the top level ---- */

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

#define TOP(f) offsetof(struct wh_config, f)

static const struct cfg_param top_params[] = {
    CFG_NUM("workers", CFG_INT, TOP(workers), 0, 256, 0),
};
static const char *const top_others[] = {
    "log",   "limits",     "timeouts", "listeners", "target_groups", "cluster", "controller",
    "hosts", "registries", "services", "discovery", "admin",         "state",   NULL};
static const struct cfg_block top_block = CFG_BLOCK(top_params, top_others);

static const struct cfg_param log_params[] = {
    {"level", CFG_ENUM, offsetof(struct wh_cfg_log, level), .sdef = "info", .choices = level_names},
    {"access_log", CFG_STRING, offsetof(struct wh_cfg_log, access_log),
     .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block log_block = CFG_BLOCK(log_params, NULL);

#define LIM(f) offsetof(struct wh_cfg_limits, f)

static const struct cfg_param limits_params[] = {
    CFG_NUM("max_header_bytes", CFG_SIZE, LIM(max_header_bytes), 1024, 1048576, 65536),
    CFG_NUM("max_body_bytes", CFG_SIZE64, LIM(max_body_bytes), 0, 1.8e19, 0),
};
static const struct cfg_block limits_block = CFG_BLOCK(limits_params, NULL);

#define TMO(f) offsetof(struct wh_cfg_timeouts, f)

static const struct cfg_param timeouts_params[] = {
    CFG_NUM("client_header", CFG_DURATION, TMO(client_header), 0.1, 3600, 10),
    CFG_NUM("upstream_connect", CFG_DURATION, TMO(upstream_connect), 0.1, 3600, 5),
    CFG_NUM("upstream_response", CFG_DURATION, TMO(upstream_response), 0.1, 3600, 60),
    CFG_NUM("tls_handshake", CFG_DURATION, TMO(tls_handshake), 0.1, 3600, 10),
    CFG_NUM("shutdown_drain", CFG_DURATION, TMO(shutdown_drain), 0, 3600, 30),
};
static const struct cfg_block timeouts_block = CFG_BLOCK(timeouts_params, NULL);

static void parse_root(struct cfg_ctx *c, const config_setting_t *root)
{
    struct wh_config *cfg = c->cfg;
    wh_cfg_block_parse(c, root, &top_block, cfg);
    wh_cfg_block_parse(c, wh_cfg_member(root, "log"), &log_block, &cfg->log);
    wh_cfg_block_parse(c, wh_cfg_member(root, "limits"), &limits_block, &cfg->limits);
    wh_cfg_block_parse(c, wh_cfg_member(root, "timeouts"), &timeouts_block, &cfg->timeouts);
    /* Groups first: listeners and services refer to them by name. */
    wh_cfg_groups_parse(c, wh_cfg_member(root, "target_groups"));
    wh_cfg_listeners_parse(c, wh_cfg_member(root, "listeners"));
    wh_cfg_cluster_parse(c, root);
    wh_cfg_controller_parse(c, wh_cfg_member(root, "controller"));
    wh_cfg_hosts_parse(c, wh_cfg_member(root, "hosts"));
    wh_cfg_registries_parse(c, wh_cfg_member(root, "registries"));
    wh_cfg_services_parse(c, wh_cfg_member(root, "services"));
    wh_cfg_discovery_parse(c, wh_cfg_member(root, "discovery"));
    wh_cfg_admin_parse(c, wh_cfg_member(root, "admin"));
    wh_cfg_state_parse(c, wh_cfg_member(root, "state"));
    wh_cfg_stage_check(c, root);
}

/* ---- load ---- */

/* @include paths are relative to the main file's directory. */
static int read_text(struct cfg_ctx *c, config_t *lc, const char *text, const char *path)
{
    if (text)
        return config_read_string(lc, text);
    char *dir = strdup(path);
    if (!dir)
        return CONFIG_FALSE;
    config_set_include_dir(lc, dirname(dir));
    free(dir);
    c->include_dir = config_get_include_dir(lc);
    return config_read_file(lc, path);
}

static void report_syntax(struct cfg_ctx *c, config_t *lc, wh_config_report_fn report, void *arg)
{
    const char *file = config_error_file(lc) ? config_error_file(lc) : c->file;
    const char *dir, *sep;
    wh_cfg_include_dir(c, file, &dir, &sep);
    report_plain(report, arg, "%s%s%s:%d: syntax error: %s", dir, sep, file, config_error_line(lc),
                 config_error_text(lc) ? config_error_text(lc) : "?");
}

static struct wh_config *load(const char *text, const char *name, unsigned features,
                              wh_config_report_fn report, void *arg)
{
    struct cfg_ctx c = {.file = name, .features = features};
    struct wh_config *cfg = NULL;
    config_t lc;
    config_init(&lc);
    if (!read_text(&c, &lc, text, name)) {
        report_syntax(&c, &lc, report, arg);
        goto out;
    }
    cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->path = strdup(name))) {
        c.oom = 1;
        goto out;
    }
    cfg->features = features;
    c.cfg = cfg;
    parse_root(&c, config_root_setting(&lc));
out:
    wh_cfg_flush(&c, report, arg);
    if (c.oom)
        report_plain(report, arg, "%s: out of memory while loading", name);
    if (c.n_errors || c.oom) {
        wh_config_free(cfg);
        cfg = NULL;
    }
    config_destroy(&lc);
    return cfg;
}

struct wh_config *wh_config_load_ex(const char *path, unsigned features, wh_config_report_fn report,
                                    void *arg)
{
    /* libconfig says only "file I/O error"; say which. */
    FILE *f = fopen(path, "r");
    if (!f) {
        report_plain(report, arg, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    fclose(f);
    return load(NULL, path, features, report, arg);
}

struct wh_config *wh_config_load_string_ex(const char *text, const char *name, unsigned features,
                                           wh_config_report_fn report, void *arg)
{
    return load(text, name, features, report, arg);
}

struct wh_config *wh_config_load(const char *path, wh_config_report_fn report, void *arg)
{
    return wh_config_load_ex(path, WH_FEATURES_BUILT, report, arg);
}

struct wh_config *wh_config_load_string(const char *text, const char *name,
                                        wh_config_report_fn report, void *arg)
{
    return wh_config_load_string_ex(text, name, WH_FEATURES_BUILT, report, arg);
}

void wh_config_free(struct wh_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->log.access_log);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        wh_cfg_listener_free(&cfg->listeners[i]);
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->n_target_groups; i++)
        wh_cfg_group_free(&cfg->target_groups[i]);
    free(cfg->target_groups);
    free(cfg->cluster);
    wh_cfg_hosts_free(cfg);
    wh_cfg_registries_free(cfg);
    wh_cfg_services_free(cfg);
    wh_cfg_discovery_reset(NULL, cfg);
    wh_cfg_admin_reset(cfg);
    wh_cfg_state_reset(NULL, cfg);
    free(cfg);
}

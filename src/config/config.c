/* Configuration loading: libconfig reads the file, the block parsers fill
 * struct wh_config, and every message is buffered, sorted by line and
 * handed to the caller's report function. The top-level scalars (workers,
 * log, limits, timeouts) are tables here; the rest lives in config_*.c. */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

/* ---- messages ---- */

static int msg_push(struct cfg_ctx *c, struct cfg_msg *m)
{
    if (c->n_msgs == c->cap_msgs) {
        size_t cap = c->cap_msgs ? c->cap_msgs * 2 : 16;
        struct cfg_msg *v = realloc(c->msgs, cap * sizeof(*v));
        if (!v)
            return -1;
        c->msgs = v;
        c->cap_msgs = cap;
    }
    m->seq = (unsigned)c->n_msgs;
    c->msgs[c->n_msgs++] = *m;
    return 0;
}

static void add_message(struct cfg_ctx *c, int is_error, const char *file, int line,
                        const char *text)
{
    struct cfg_msg m = {.is_error = is_error, .line = line};
    if (is_error)
        c->n_errors++;
    m.other_file = strcmp(file, c->file) != 0;
    m.file = strdup(file);
    m.text = strdup(text);
    if (!m.file || !m.text || msg_push(c, &m) < 0) {
        free(m.file);
        free(m.text);
        c->oom = 1;
    }
}

static void key_append(const config_setting_t *s, char *buf, size_t len, size_t *pos)
{
    const config_setting_t *parent = config_setting_parent(s);
    if (!parent)
        return;
    key_append(parent, buf, len, pos);
    const char *label = NULL;
    char index[16];
    if (config_setting_is_list(parent) || config_setting_is_array(parent)) {
        const char *v;
        if (config_setting_is_group(s) &&
            (config_setting_lookup_string(s, "name", &v) ||
             config_setting_lookup_string(s, "id", &v)) &&
            *v)
            label = v;
        else
            snprintf(index, sizeof(index), "%d", config_setting_index(s));
        int n = snprintf(buf + *pos, len - *pos, "[%s]", label ? label : index);
        *pos += n > 0 ? (size_t)n : 0;
    } else {
        int n = snprintf(buf + *pos, len - *pos, "%s%s", *pos ? "." : "",
                         config_setting_name(s) ? config_setting_name(s) : "?");
        *pos += n > 0 ? (size_t)n : 0;
    }
    if (*pos >= len)
        *pos = len - 1;
}

void cfg_key(const config_setting_t *s, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = '\0';
    key_append(s, buf, len, &pos);
}

/* libconfig names an @include'd file as its directive wrote it, relative
 * to the main file's directory: messages add that directory. */
static void include_dir_of(const struct cfg_ctx *c, const char *file, const char **dir,
                           const char **sep)
{
    int relative = strcmp(file, c->file) != 0 && file[0] != '/' && c->include_dir;
    *dir = relative ? c->include_dir : "";
    *sep = relative ? "/" : "";
}

void cfg_report(struct cfg_ctx *c, int is_error, const config_setting_t *s, const char *child,
                const char *fmt, ...)
{
    char key[512], msg[1024], line[2048];
    cfg_key(s, key, sizeof(key));
    if (child) {
        size_t n = strlen(key);
        snprintf(key + n, sizeof(key) - n, "%s%s", n ? "." : "", child);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *file = config_setting_source_file(s) ? config_setting_source_file(s) : c->file;
    const char *dir, *sep;
    include_dir_of(c, file, &dir, &sep);
    int lineno = (int)config_setting_source_line(s);
    if (lineno < 1)
        lineno = 1; /* the root group: no line of its own */
    snprintf(line, sizeof(line), "%s%s%s:%d: %s: %s", dir, sep, file, lineno,
             key[0] ? key : "(top level)", msg);
    add_message(c, is_error, file, lineno, line);
}

static int msg_cmp(const void *pa, const void *pb)
{
    const struct cfg_msg *a = pa, *b = pb;
    if (a->other_file != b->other_file)
        return a->other_file - b->other_file;
    int r = strcmp(a->file, b->file);
    if (r)
        return r;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

static void flush_messages(struct cfg_ctx *c, wh_config_report_fn report, void *arg)
{
    if (c->n_msgs > 1)
        qsort(c->msgs, c->n_msgs, sizeof(*c->msgs), msg_cmp);
    for (size_t i = 0; i < c->n_msgs; i++) {
        if (report)
            report(arg, c->msgs[i].is_error, c->msgs[i].text);
        free(c->msgs[i].file);
        free(c->msgs[i].text);
    }
    free(c->msgs);
    c->msgs = NULL;
    c->n_msgs = c->cap_msgs = 0;
}

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

char *cfg_strdup(struct cfg_ctx *c, const char *s)
{
    char *d = strdup(s);
    if (!d)
        c->oom = 1;
    return d;
}

void *cfg_calloc(struct cfg_ctx *c, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        c->oom = 1;
    return p;
}

/* ---- the top level ---- */

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

#define TOP(f) offsetof(struct wh_config, f)

static const struct cfg_param top_params[] = {
    CFG_NUM("workers", CFG_INT, TOP(workers), 0, 256, 0),
};
static const char *const top_others[] = {"log",           "limits", "timeouts", "listeners",
                                         "target_groups", "hosts",  "services", "admin",
                                         "state",         NULL};
static const struct cfg_block top_block = CFG_BLOCK(top_params, top_others);

static const struct cfg_param log_params[] = {
    {"level", CFG_ENUM, offsetof(struct wh_cfg_log, level), .sdef = "info", .choices = level_names},
    {"access_log", CFG_STRING, offsetof(struct wh_cfg_log, access_log), .check = cfg_check_no_ctl},
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
    cfg_block_parse(c, root, &top_block, cfg);
    cfg_block_parse(c, cfg_member(root, "log"), &log_block, &cfg->log);
    cfg_block_parse(c, cfg_member(root, "limits"), &limits_block, &cfg->limits);
    cfg_block_parse(c, cfg_member(root, "timeouts"), &timeouts_block, &cfg->timeouts);
    /* Groups first: listeners and services refer to them by name. */
    cfg_groups_parse(c, cfg_member(root, "target_groups"));
    cfg_listeners_parse(c, cfg_member(root, "listeners"));
    cfg_hosts_parse(c, cfg_member(root, "hosts"));
    cfg_services_parse(c, cfg_member(root, "services"));
    cfg_admin_parse(c, cfg_member(root, "admin"));
    cfg_state_parse(c, cfg_member(root, "state"));
    cfg_stage_check(c, root);
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
    include_dir_of(c, file, &dir, &sep);
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
    flush_messages(&c, report, arg);
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
        cfg_listener_free(&cfg->listeners[i]);
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->n_target_groups; i++)
        cfg_group_free(&cfg->target_groups[i]);
    free(cfg->target_groups);
    cfg_hosts_free(cfg);
    cfg_services_free(cfg);
    cfg_admin_reset(cfg);
    cfg_state_reset(NULL, cfg);
    free(cfg);
}

/* ---- lookups ---- */

const struct wh_cfg_target_group *wh_config_group(const struct wh_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_target_groups; i++)
        if (strcmp(cfg->target_groups[i].name, name) == 0)
            return &cfg->target_groups[i];
    return NULL;
}

const struct wh_cfg_listener *wh_config_listener(const struct wh_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_listeners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0)
            return &cfg->listeners[i];
    return NULL;
}

const struct wh_cfg_host *wh_config_host(const struct wh_config *cfg, const char *id)
{
    for (size_t i = 0; cfg && id && i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].id, id) == 0)
            return &cfg->hosts[i];
    return NULL;
}

const struct wh_cfg_service *wh_config_service(const struct wh_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_services; i++)
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

static const char *const feature_names[] = {
    "tls",   "rules",      "health_check", "admin",      "hosts",      "services",
    "state", "access_log", "algorithms",   "stickiness", "slow_start", "passive",
};

const char *wh_feature_name(unsigned feature)
{
    for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
        if (feature == 1u << i)
            return feature_names[i];
    return NULL;
}

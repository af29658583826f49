/* Private to src/config/: the load context, the message buffer, the
 * table-driven parameter parser and the validators the block parsers share.
 * libconfig appears only in src/config/.
 *
 * The files, from the top down (each uses only those below it):
 * config.c            the load: libconfig, the top-level scalars, the order
 *                     of the blocks, wh_config_free
 * config_stage.c      features not built: warnings, errors, dropped blocks
 * config_listeners.c  listeners, rules, actions
 * config_services.c   services: task, deployment, placement
 * config_fleet.c      cluster, controller, hosts, registries, discovery
 * config_admin.c      admin, state
 * config_groups.c     target groups (listeners and services name them)
 * config_value.c      the parameter table, value types, validators
 * config_ctx.c        the parse context: messages, key names and lookup,
 *                     allocation
 */
#ifndef WHARF_CONFIG_INT_H
#define WHARF_CONFIG_INT_H

#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

#include "wharf/config.h"

#define CFG_MAX_CONDITION_VALUES 5
#define CFG_MAX_FORWARD_GROUPS 5
#define CFG_MAX_STRATEGIES 5
#define CFG_MAX_CONSTRAINTS 10
#define CFG_MAX_ETCD 16
#define CFG_MAX_EC2_FILTERS 50
#define CFG_MAX_EC2_FILTER_VALUES 200

/* ---- the parse context (config_ctx.c) ---- */

struct cfg_msg {
    int other_file; /* 0 for the main file, so its lines sort first */
    char *file;
    int line;
    unsigned seq;
    int is_error;
    char *text; /* "file:line: key: message" */
};

/* One load. Every error found is buffered in msgs; nothing stops at the
 * first one. */
struct cfg_ctx {
    const char *file;        /* the name messages use for the main file */
    const char *include_dir; /* of the main file: @include names are relative to it */
    unsigned features;
    struct wh_config *cfg; /* being filled */
    struct cfg_msg *msgs;
    size_t n_msgs, cap_msgs;
    int n_errors;
    int oom;
};

/* Report at s (its file and line) with the key of s, or of its member child
 * when child is not NULL (a missing key is reported at its group). */
void wh_cfg_report(struct cfg_ctx *c, int is_error, const config_setting_t *s, const char *child,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define wh_cfg_error(c, s, child, ...) wh_cfg_report(c, 1, s, child, __VA_ARGS__)
#define wh_cfg_warn(c, s, child, ...) wh_cfg_report(c, 0, s, child, __VA_ARGS__)

/* Hand every buffered message to report (NULL: drop them), sorted: the
 * main file first, then by file, line and order of report; empties the
 * buffer. */
void wh_cfg_flush(struct cfg_ctx *c, wh_config_report_fn report, void *arg);

/* libconfig names an @include'd file as its directive wrote it, relative
 * to the main file's directory: messages about file put *dir and *sep
 * ("" or "/") before it. */
void wh_cfg_include_dir(const struct cfg_ctx *c, const char *file, const char **dir,
                        const char **sep);

/* The member called name of group; NULL when there is none or group is
 * NULL or not a group. */
const config_setting_t *wh_cfg_member(const config_setting_t *group, const char *name);

/* strdup that records an allocation failure in c (reported once at the end). */
char *wh_cfg_strdup(struct cfg_ctx *c, const char *s);
void *wh_cfg_calloc(struct cfg_ctx *c, size_t n, size_t size);

/* ---- the parameter table (config_value.c) ---- */

enum cfg_kind {
    CFG_INT,      /* int; an integer */
    CFG_DURATION, /* double seconds; an integer or a float */
    CFG_SIZE,     /* size_t bytes; an integer or "64k", "10m", "1g" */
    CFG_SIZE64,   /* uint64_t bytes; same */
    CFG_BOOL,     /* int 0/1; true or false */
    CFG_STRING,   /* char *, new; NULL when absent without a default */
    CFG_ENUM,     /* int: the index of the string in choices */
    CFG_NAME,     /* char[WH_NAME_MAX]: [A-Za-z0-9._-], 1..63 characters */
    CFG_ADDR,     /* struct wh_addr: "IP:port", "[v6]:port", "name:port" */
};

#define CFG_REQUIRED 0x1u /* missing is an error */
#define CFG_ZERO_OFF 0x2u /* 0 (off) is accepted besides min..max */
#define CFG_EMPTY_OK 0x4u /* a string may be "" */

/* A string validator: 0 when fine, else -1 with the reason in err. */
typedef int (*cfg_check_fn)(const char *value, char *err, size_t errlen);

struct cfg_param {
    const char *name;
    enum cfg_kind kind;
    size_t off;      /* of the field in the struct the block fills */
    double min, max; /* numbers: range; sizes: bytes; strings: length (max 0 = any) */
    double def;
    const char *sdef;           /* CFG_STRING default (copied), CFG_ENUM default choice */
    const char *const *choices; /* CFG_STRING, CFG_ENUM: NULL-terminated */
    unsigned flags;             /* CFG_REQUIRED, CFG_ZERO_OFF, CFG_EMPTY_OK */
    const char *range_text;     /* "301 or 302": replaces the generic range message */
    cfg_check_fn check;         /* CFG_STRING extra validation */
};

/* A numeric param: name, kind, offset, range, default, then designated
 * extras (.flags = ..., .range_text = ...). */
#define CFG_NUM(n, k, o, lo, hi, d, ...)                                                           \
    {                                                                                              \
        .name = n, .kind = k, .off = o, .min = lo, .max = hi, .def = d, __VA_ARGS__                \
    }

/* The keys one group may hold: scalars in params, the rest (sub-blocks and
 * lists) parsed by hand and only named in others. */
struct cfg_block {
    const struct cfg_param *params;
    size_t n_params;
    const char *const *others; /* NULL-terminated, may be NULL */
};

#define CFG_BLOCK(params, others)                                                                  \
    {                                                                                              \
        params, sizeof(params) / sizeof(params[0]), others                                         \
    }

/* Fill base with every param's default, then, when group is not NULL,
 * report its unknown keys and parse each param present. A group of the
 * wrong type is reported and left at the defaults. Returns 0 or -1 (some
 * error reported). */
int wh_cfg_block_parse(struct cfg_ctx *c, const config_setting_t *group, const struct cfg_block *b,
                       void *base);

/* The same without the key check: defaults, then the params present in
 * group (when it is a group). For params sharing a group with others. */
int wh_cfg_params_parse(struct cfg_ctx *c, const config_setting_t *group,
                        const struct cfg_param *params, size_t n, void *base);

/* Type check: 0, or -1 after reporting "expected a list ( ... )" at s. */
int wh_cfg_expect_list(struct cfg_ctx *c, const config_setting_t *s); /* ( ) or [ ] */

/* A string, or a list/array of strings (a lone string counts as one),
 * at most max values (0 = any), each passing check when given. *out is
 * new (an array of new strings). Returns 0 or -1. */
int wh_cfg_string_list(struct cfg_ctx *c, const config_setting_t *s, size_t max, cfg_check_fn check,
                       char ***out, size_t *n);

/* A group of string values (attributes, env): new array of new pairs. */
int wh_cfg_kv_group(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_kv **out,
                    size_t *n);

/* Validators (cfg_check_fn). */
int wh_cfg_check_cidr(const char *v, char *err, size_t errlen);
int wh_cfg_check_matcher(const char *v, char *err, size_t errlen);
int wh_cfg_check_abs_path(const char *v, char *err, size_t errlen);
int wh_cfg_check_url_path(const char *v, char *err, size_t errlen);
int wh_cfg_check_no_ctl(const char *v, char *err, size_t errlen);
int wh_cfg_check_no_space(const char *v, char *err, size_t errlen); /* nor control chars */
int wh_cfg_check_hostname(const char *v, char *err, size_t errlen);
int wh_cfg_check_token(const char *v, char *err, size_t errlen);

void wh_cfg_free_strv(char **v, size_t n);
void wh_cfg_free_kv(struct wh_cfg_kv *kv, size_t n);

/* ---- blocks ---- */

/* target_groups (config_groups.c); runs before listeners and services so
 * that their references can be checked. */
void wh_cfg_groups_parse(struct cfg_ctx *c, const config_setting_t *list);
void wh_cfg_group_free(struct wh_cfg_target_group *g);

/* listeners (config_listeners.c). */
void wh_cfg_listeners_parse(struct cfg_ctx *c, const config_setting_t *list);
void wh_cfg_listener_free(struct wh_cfg_listener *l);

/* services (config_services.c); after target_groups. */
void wh_cfg_services_parse(struct cfg_ctx *c, const config_setting_t *list);
void wh_cfg_services_free(struct wh_config *cfg);

/* cluster, controller, hosts, registries, discovery (config_fleet.c). The
 * _reset functions free what the block holds and put back the defaults
 * (none when c is NULL: for wh_config_free). */
void wh_cfg_cluster_parse(struct cfg_ctx *c, const config_setting_t *root);
void wh_cfg_controller_parse(struct cfg_ctx *c, const config_setting_t *group);
void wh_cfg_hosts_parse(struct cfg_ctx *c, const config_setting_t *list);
void wh_cfg_registries_parse(struct cfg_ctx *c, const config_setting_t *list);
void wh_cfg_discovery_parse(struct cfg_ctx *c, const config_setting_t *group);
void wh_cfg_cluster_reset(struct cfg_ctx *c, struct wh_config *cfg);
void wh_cfg_controller_reset(struct cfg_ctx *c, struct wh_config *cfg);
void wh_cfg_hosts_free(struct wh_config *cfg);
void wh_cfg_registries_free(struct wh_config *cfg); /* wipes the passwords */
void wh_cfg_discovery_reset(struct cfg_ctx *c, struct wh_config *cfg);

/* admin, state (config_admin.c). */
void wh_cfg_admin_parse(struct cfg_ctx *c, const config_setting_t *group);
void wh_cfg_state_parse(struct cfg_ctx *c, const config_setting_t *group);
void wh_cfg_admin_reset(struct wh_config *cfg);
void wh_cfg_state_reset(struct cfg_ctx *c, struct wh_config *cfg); /* back to the defaults */

/* The staging table (config_stage.c): warnings for blocks whose feature is
 * off (they are dropped from c->cfg), errors for keys whose feature is off,
 * and one warning for each of the few keys accepted before their feature. */
void wh_cfg_stage_check(struct cfg_ctx *c, const config_setting_t *root);

#endif

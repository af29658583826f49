/* The table-driven parameter parser (struct cfg_param), value types
 * (durations, sizes, names, string lists) and the validators the block
 * parsers share. */
#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

#define FIELD(base, p, type) ((type *)((char *)(base) + (p)->off))

/* Parse "64k", "10m", "1g" (k = 1024) or plain digits. 0 or -1. */
static int cfg_parse_size(const char *text, uint64_t *out);
static void cfg_format_size(uint64_t v, char *buf, size_t len);

static const char *type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP:
        return "a group { }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array [ ]";
    case CONFIG_TYPE_LIST:
        return "a list ( )";
    default:
        return "nothing";
    }
}

/* 0, or -1 after reporting "expected a group { ... }" at s. */
static int cfg_expect_group(struct cfg_ctx *c, const config_setting_t *s)
{
    if (config_setting_is_group(s))
        return 0;
    wh_cfg_error(c, s, NULL, "expected a group { ... }, got %s", type_name(s));
    return -1;
}

int wh_cfg_expect_list(struct cfg_ctx *c, const config_setting_t *s)
{
    if (config_setting_is_list(s) || config_setting_is_array(s))
        return 0;
    wh_cfg_error(c, s, NULL, "expected a list ( ... ), got %s", type_name(s));
    return -1;
}

/* ---- unknown keys ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void consider(const char *key, const char *name, size_t *best, const char **nearest)
{
    size_t d = edit_distance(key, name);
    if (d < *best) {
        *best = d;
        *nearest = key;
    }
}

/* 1 when name is a key of b; else 0 with the closest key (if any is close)
 * in *nearest. */
static int block_knows(const struct cfg_block *b, const char *name, const char **nearest)
{
    size_t best = 3;
    for (size_t i = 0; i < b->n_params; i++) {
        if (strcmp(b->params[i].name, name) == 0)
            return 1;
        consider(b->params[i].name, name, &best, nearest);
    }
    for (const char *const *o = b->others; o && *o; o++) {
        if (strcmp(*o, name) == 0)
            return 1;
        consider(*o, name, &best, nearest);
    }
    return 0;
}

/* Report every member of group whose name is not in params or others. */
static int cfg_check_keys(struct cfg_ctx *c, const config_setting_t *group,
                          const struct cfg_block *b)
{
    int rc = 0;
    for (int i = 0; i < config_setting_length(group); i++) {
        const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
        const char *nearest = NULL;
        if (block_knows(b, config_setting_name(m), &nearest))
            continue;
        if (nearest)
            wh_cfg_error(c, m, NULL, "unknown key (did you mean %s?)", nearest);
        else
            wh_cfg_error(c, m, NULL, "unknown key");
        rc = -1;
    }
    return rc;
}

/* ---- one parameter ---- */

static void range_error(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p)
{
    if (p->range_text) {
        wh_cfg_error(c, s, NULL, "must be %s", p->range_text);
    } else if (p->kind == CFG_SIZE || p->kind == CFG_SIZE64) {
        char lo[32], hi[32];
        cfg_format_size((uint64_t)p->min, lo, sizeof(lo));
        cfg_format_size((uint64_t)p->max, hi, sizeof(hi));
        wh_cfg_error(c, s, NULL, "must be between %s and %s", lo, hi);
    } else if (p->flags & CFG_ZERO_OFF) {
        wh_cfg_error(c, s, NULL, "must be 0 (off) or between %g and %g", p->min, p->max);
    } else {
        wh_cfg_error(c, s, NULL, "must be between %g and %g", p->min, p->max);
    }
}

static int in_range(const struct cfg_param *p, double v)
{
    if ((p->flags & CFG_ZERO_OFF) && v == 0)
        return 1;
    return v >= p->min && v <= p->max;
}

static int is_integer(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static int parse_int(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                     void *base)
{
    if (!is_integer(s)) {
        wh_cfg_error(c, s, NULL, "expected an integer, got %s", type_name(s));
        return -1;
    }
    long long v = config_setting_get_int64(s);
    if (!in_range(p, (double)v)) {
        range_error(c, s, p);
        return -1;
    }
    *FIELD(base, p, int) = (int)v;
    return 0;
}

static int parse_duration(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                          void *base)
{
    double v;
    if (is_integer(s)) {
        v = (double)config_setting_get_int64(s);
    } else if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
        v = config_setting_get_float(s);
    } else {
        wh_cfg_error(c, s, NULL, "expected a duration in seconds (such as 5 or 0.5), got %s",
                     type_name(s));
        return -1;
    }
    if (!isfinite(v) || !in_range(p, v)) {
        range_error(c, s, p);
        return -1;
    }
    *FIELD(base, p, double) = v;
    return 0;
}

static int parse_size(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                      void *base)
{
    uint64_t v;
    if (is_integer(s)) {
        long long i = config_setting_get_int64(s);
        if (i < 0) {
            /* libconfig 1.5 wraps plain integers above 2^31-1 silently. */
            wh_cfg_error(c, s, NULL,
                         "must not be negative (for values above 2147483647 write a "
                         "string such as \"3g\", or an L suffix)");
            return -1;
        }
        v = (uint64_t)i;
    } else if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        if (cfg_parse_size(config_setting_get_string(s), &v) < 0) {
            wh_cfg_error(c, s, NULL,
                         "\"%s\" is not a size: write bytes, or a string such as "
                         "\"64k\", \"10m\" or \"1g\"",
                         config_setting_get_string(s));
            return -1;
        }
    } else {
        wh_cfg_error(c, s, NULL, "expected a size (bytes, or a string such as \"64k\"), got %s",
                     type_name(s));
        return -1;
    }
    if (!in_range(p, (double)v)) {
        range_error(c, s, p);
        return -1;
    }
    if (p->kind == CFG_SIZE)
        *FIELD(base, p, size_t) = (size_t)v;
    else
        *FIELD(base, p, uint64_t) = v;
    return 0;
}

static int parse_bool(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                      void *base)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        wh_cfg_error(c, s, NULL, "expected true or false, got %s", type_name(s));
        return -1;
    }
    *FIELD(base, p, int) = config_setting_get_bool(s) ? 1 : 0;
    return 0;
}

static int choice_index(const char *const *choices, const char *v)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], v) == 0)
            return i;
    return -1;
}

static void choices_error(struct cfg_ctx *c, const config_setting_t *s, const char *v,
                          const char *const *choices)
{
    char list[256] = "";
    size_t n = 0;
    for (int i = 0; choices[i] && n < sizeof(list); i++) {
        int w = snprintf(list + n, sizeof(list) - n, "%s\"%s\"", i ? ", " : "", choices[i]);
        n += w > 0 ? (size_t)w : 0;
    }
    wh_cfg_error(c, s, NULL, "\"%s\" is not one of %s", v, list);
}

static const char *get_string(struct cfg_ctx *c, const config_setting_t *s,
                              const struct cfg_param *p)
{
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        wh_cfg_error(c, s, NULL, "expected a string, got %s", type_name(s));
        return NULL;
    }
    const char *v = config_setting_get_string(s);
    size_t len = strlen(v);
    if (len == 0 && !(p->flags & CFG_EMPTY_OK)) {
        wh_cfg_error(c, s, NULL, "must not be empty");
        return NULL;
    }
    if ((p->min > 0 && (double)len < p->min) || (p->max > 0 && (double)len > p->max)) {
        if (p->max > 0)
            wh_cfg_error(c, s, NULL, "must be %g to %g characters long", p->min, p->max);
        else
            wh_cfg_error(c, s, NULL, "must be at least %g characters long", p->min);
        return NULL;
    }
    if (p->choices && choice_index(p->choices, v) < 0) {
        choices_error(c, s, v, p->choices);
        return NULL;
    }
    char err[256];
    if (p->check && p->check(v, err, sizeof(err)) < 0) {
        wh_cfg_error(c, s, NULL, "%s", err);
        return NULL;
    }
    return v;
}

static int parse_string(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                        void *base)
{
    const char *v = get_string(c, s, p);
    if (!v)
        return -1;
    char **field = FIELD(base, p, char *);
    free(*field);
    *field = wh_cfg_strdup(c, v);
    return 0;
}

static int parse_enum(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                      void *base)
{
    const char *v = get_string(c, s, p);
    if (!v)
        return -1;
    *FIELD(base, p, int) = choice_index(p->choices, v);
    return 0;
}

static int name_char(int ch)
{
    return isalnum(ch) || ch == '-' || ch == '_' || ch == '.';
}

static int parse_name(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                      void *base)
{
    const char *v = get_string(c, s, p);
    if (!v)
        return -1;
    size_t len = strlen(v);
    for (size_t i = 0; i < len; i++) {
        if (!name_char((unsigned char)v[i])) {
            wh_cfg_error(c, s, NULL, "\"%s\": a name may hold only letters, digits, '-', '_', '.'",
                         v);
            return -1;
        }
    }
    if (len >= WH_NAME_MAX) {
        wh_cfg_error(c, s, NULL, "is longer than %d characters", WH_NAME_MAX - 1);
        return -1;
    }
    memcpy(FIELD(base, p, char), v, len + 1);
    return 0;
}

static int parse_addr(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_param *p,
                      void *base)
{
    const char *v = get_string(c, s, p);
    if (!v)
        return -1;
    char err[256];
    if (wh_addr_parse(v, FIELD(base, p, struct wh_addr), err, sizeof(err)) < 0) {
        wh_cfg_error(c, s, NULL, "%s", err);
        return -1;
    }
    return 0;
}

static void set_default(struct cfg_ctx *c, const struct cfg_param *p, void *base)
{
    switch (p->kind) {
    case CFG_INT:
    case CFG_BOOL:
        *FIELD(base, p, int) = (int)p->def;
        break;
    case CFG_DURATION:
        *FIELD(base, p, double) = p->def;
        break;
    case CFG_SIZE:
        *FIELD(base, p, size_t) = (size_t)p->def;
        break;
    case CFG_SIZE64:
        *FIELD(base, p, uint64_t) = (uint64_t)p->def;
        break;
    case CFG_STRING:
        free(*FIELD(base, p, char *));
        *FIELD(base, p, char *) = p->sdef ? wh_cfg_strdup(c, p->sdef) : NULL;
        break;
    case CFG_ENUM:
        *FIELD(base, p, int) = p->sdef ? choice_index(p->choices, p->sdef) : 0;
        break;
    case CFG_NAME:
        FIELD(base, p, char)[0] = '\0';
        break;
    case CFG_ADDR:
        memset(FIELD(base, p, struct wh_addr), 0, sizeof(struct wh_addr));
        break;
    }
}

typedef int (*param_fn)(struct cfg_ctx *, const config_setting_t *, const struct cfg_param *,
                        void *);

static const param_fn param_parsers[] = {
    [CFG_INT] = parse_int,     [CFG_DURATION] = parse_duration, [CFG_SIZE] = parse_size,
    [CFG_SIZE64] = parse_size, [CFG_BOOL] = parse_bool,         [CFG_STRING] = parse_string,
    [CFG_ENUM] = parse_enum,   [CFG_NAME] = parse_name,         [CFG_ADDR] = parse_addr,
};

int wh_cfg_params_parse(struct cfg_ctx *c, const config_setting_t *group,
                        const struct cfg_param *params, size_t n, void *base)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        set_default(c, &params[i], base);
    if (!group || !config_setting_is_group(group))
        return 0;
    for (size_t i = 0; i < n; i++) {
        const struct cfg_param *p = &params[i];
        const config_setting_t *s = config_setting_get_member(group, p->name);
        if (!s) {
            if (p->flags & CFG_REQUIRED) {
                wh_cfg_error(c, group, p->name, "required key is missing");
                rc = -1;
            }
            continue;
        }
        if (param_parsers[p->kind](c, s, p, base) < 0)
            rc = -1;
    }
    return rc;
}

int wh_cfg_block_parse(struct cfg_ctx *c, const config_setting_t *group, const struct cfg_block *b,
                       void *base)
{
    int rc = wh_cfg_params_parse(c, group, b->params, b->n_params, base);
    if (!group)
        return rc;
    if (cfg_expect_group(c, group) < 0)
        return -1;
    return cfg_check_keys(c, group, b) < 0 ? -1 : rc;
}

/* ---- lists and maps of strings ---- */

void wh_cfg_free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void wh_cfg_free_kv(struct wh_cfg_kv *kv, size_t n)
{
    for (size_t i = 0; kv && i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

static int one_string(struct cfg_ctx *c, const config_setting_t *e, cfg_check_fn check)
{
    if (config_setting_type(e) != CONFIG_TYPE_STRING) {
        wh_cfg_error(c, e, NULL, "expected a string, got %s", type_name(e));
        return -1;
    }
    const char *v = config_setting_get_string(e);
    char err[256];
    if (!*v) {
        wh_cfg_error(c, e, NULL, "must not be empty");
        return -1;
    }
    if (check && check(v, err, sizeof(err)) < 0) {
        wh_cfg_error(c, e, NULL, "%s", err);
        return -1;
    }
    return 0;
}

int wh_cfg_string_list(struct cfg_ctx *c, const config_setting_t *s, size_t max, cfg_check_fn check,
                       char ***out, size_t *n)
{
    int lone = config_setting_type(s) == CONFIG_TYPE_STRING;
    if (!lone && !config_setting_is_list(s) && !config_setting_is_array(s)) {
        wh_cfg_error(c, s, NULL, "expected a string or a list of strings [ \"...\" ], got %s",
                     type_name(s));
        return -1;
    }
    size_t len = lone ? 1 : (size_t)config_setting_length(s);
    if (max && len > max) {
        wh_cfg_error(c, s, NULL, "has %zu values; at most %zu are allowed", len, max);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < len; i++)
        if (one_string(c, lone ? s : config_setting_get_elem(s, (unsigned)i), check) < 0)
            rc = -1;
    if (rc < 0)
        return -1;
    char **v = wh_cfg_calloc(c, len, sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = 0; i < len; i++)
        v[i] = wh_cfg_strdup(c, lone ? config_setting_get_string(s)
                                     : config_setting_get_string_elem(s, (int)i));
    *out = v;
    *n = len;
    return 0;
}

int wh_cfg_kv_group(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_kv **out, size_t *n)
{
    if (cfg_expect_group(c, s) < 0)
        return -1;
    size_t len = (size_t)config_setting_length(s);
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            wh_cfg_error(c, e, NULL, "expected a string (quote numbers: \"8080\"), got %s",
                         type_name(e));
            rc = -1;
        }
    }
    if (rc < 0)
        return -1;
    struct wh_cfg_kv *kv = wh_cfg_calloc(c, len, sizeof(*kv));
    if (!kv)
        return -1;
    for (size_t i = 0; i < len; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        kv[i].key = wh_cfg_strdup(c, config_setting_name(e));
        kv[i].value = wh_cfg_strdup(c, config_setting_get_string(e));
    }
    *out = kv;
    *n = len;
    return 0;
}

/* ---- sizes ---- */

static int cfg_parse_size(const char *text, uint64_t *out)
{
    const char *p = text;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return -1;
    }
    if (shift && p[1] != '\0')
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

static void cfg_format_size(uint64_t v, char *buf, size_t len)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        unsigned shift = (unsigned)(30 - 10 * i);
        if (v && v % (1ull << shift) == 0) {
            snprintf(buf, len, "%llu%c", (unsigned long long)(v >> shift), units[i]);
            return;
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* ---- validators ---- */

int wh_cfg_check_cidr(const char *v, char *err, size_t errlen)
{
    struct wh_cidr c;
    if (wh_cidr_parse(v, &c) == 0)
        return 0;
    snprintf(err, errlen,
             "\"%s\" is not a CIDR block such as \"192.0.2.0/24\" or \"2001:db8::/32\"", v);
    return -1;
}

static int matcher_code(const char **p, int *code)
{
    int v = 0, digits = 0;
    for (; isdigit((unsigned char)**p) && digits < 4; (*p)++, digits++)
        v = v * 10 + (**p - '0');
    *code = v;
    return digits == 3 && v >= 100 && v <= 599 ? 0 : -1;
}

int wh_cfg_check_matcher(const char *v, char *err, size_t errlen)
{
    const char *p = v;
    for (;;) {
        int lo, hi;
        if (matcher_code(&p, &lo) < 0)
            goto bad;
        hi = lo;
        if (*p == '-') {
            p++;
            if (matcher_code(&p, &hi) < 0 || hi < lo)
                goto bad;
        }
        if (*p == '\0')
            return 0;
        if (*p++ != ',')
            goto bad;
    }
bad:
    snprintf(err, errlen,
             "\"%s\" is not a status matcher: codes 100-599 such as \"200\", "
             "\"200,302\" or \"200-399\"",
             v);
    return -1;
}

int wh_cfg_check_abs_path(const char *v, char *err, size_t errlen)
{
    if (v[0] == '/' && wh_cfg_check_no_ctl(v, err, errlen) == 0)
        return 0;
    snprintf(err, errlen, "\"%s\" is not an absolute path", v);
    return -1;
}

int wh_cfg_check_url_path(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "\"%s\": a path may not hold spaces or control characters", v);
            return -1;
        }
    }
    if (v[0] == '/')
        return 0;
    snprintf(err, errlen, "\"%s\" must start with /", v);
    return -1;
}

int wh_cfg_check_no_ctl(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p < ' ' || *p == 0x7f) {
            snprintf(err, errlen, "must not hold control characters");
            return -1;
        }
    }
    return 0;
}

int wh_cfg_check_no_space(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "must not hold spaces or control characters");
            return -1;
        }
    }
    return 0;
}

/* Host names and host patterns: letters, digits, '-', '.', and the
 * wildcards '*' and '?' (rules' host condition). */
int wh_cfg_check_hostname(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("-.*?", *p)) {
            snprintf(err, errlen,
                     "\"%s\" is not a host name (letters, digits, '-', '.', and the "
                     "wildcards '*' and '?')",
                     v);
            return -1;
        }
    }
    return 0;
}

/* An HTTP token (RFC 9110): header names and methods. */
int wh_cfg_check_token(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p)) {
            snprintf(err, errlen, "\"%s\" is not an HTTP token", v);
            return -1;
        }
    }
    return 0;
}

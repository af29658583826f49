/* The parse context of one load (struct cfg_ctx): the messages it buffers
 * (each "file:line: key: message", handed over sorted by file and line), the
 * user's name of a setting, key lookup, and allocation that records a
 * failure instead of stopping. The block parsers and config.c both use it;
 * it uses nothing else of config/. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

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

/* The user's name for s: "listeners[http].rules[0].priority". List elements
 * are labelled by their name or id member when they have one, else by
 * index. */
static void cfg_key(const config_setting_t *s, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = '\0';
    key_append(s, buf, len, &pos);
}

void wh_cfg_file_name(const struct cfg_ctx *c, const char *file, char *out, size_t len)
{
    int relative = strcmp(file, c->file) != 0 && file[0] != '/' && c->include_dir;
    snprintf(out, len, "%s%s%s", relative ? c->include_dir : "", relative ? "/" : "", file);
    /* An absolute @include went through ../ (see config.c): name it plainly. */
    char *real = strcmp(file, c->file) != 0 && strstr(out, "../") ? realpath(out, NULL) : NULL;
    if (real)
        snprintf(out, len, "%s", real);
    free(real);
}

void wh_cfg_report(struct cfg_ctx *c, int is_error, const config_setting_t *s, const char *child,
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
    char name[512];
    wh_cfg_file_name(c, file, name, sizeof(name));
    int lineno = (int)config_setting_source_line(s);
    if (lineno < 1)
        lineno = 1; /* the root group: no line of its own */
    snprintf(line, sizeof(line), "%s:%d: %s: %s", name, lineno, key[0] ? key : "(top level)", msg);
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

void wh_cfg_flush(struct cfg_ctx *c, wh_config_report_fn report, void *arg)
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

char *wh_cfg_strdup(struct cfg_ctx *c, const char *s)
{
    char *d = strdup(s);
    if (!d)
        c->oom = 1;
    return d;
}

void *wh_cfg_calloc(struct cfg_ctx *c, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        c->oom = 1;
    return p;
}

const config_setting_t *wh_cfg_member(const config_setting_t *group, const char *name)
{
    if (!group || !config_setting_is_group(group))
        return NULL;
    return config_setting_get_member(group, name);
}

/* Helpers the configuration's unit tests share (test_config.c,
 * test_config_fleet.c): messages collected from a load, expectations on
 * them, and small configurations to build on. Configs are loaded from
 * strings named "t.conf", so every message can be asserted with its exact
 * "t.conf:LINE: KEY: " prefix. Include after <cmocka.h>. */
#ifndef WHARF_TEST_CONFIG_H
#define WHARF_TEST_CONFIG_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/config.h"

#ifndef WH_TOP_SRCDIR
#define WH_TOP_SRCDIR "."
#endif

#define ALL WH_FEATURES_ALL
#define BUILT WH_FEATURES_BUILT
/* A fixed early stage, so the staging tests do not change as features land. */
#define STAGED WH_FEATURE_ACCESS_LOG

/* Lines 1-3: one group "web", one listener "http" forwarding to it. */
#define TG_WEB "target_groups = ( { name = \"web\"; targets = ( \"127.0.0.1:9001\" ); } );\n"
#define LS_HTTP                                                                                    \
    "listeners = ( { name = \"http\"; bind = \"127.0.0.1:8080\";\n"                                \
    "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n"
#define MIN TG_WEB LS_HTTP

/* ---- helpers ---- */

#define MAX_MSGS 128

struct msgs {
    size_t n;
    char *line[MAX_MSGS];
    int is_error[MAX_MSGS];
};

static inline void collect(void *arg, int is_error, const char *line)
{
    struct msgs *m = arg;
    assert_non_null(line);
    assert_null(strchr(line, '\n'));
    if (m->n < MAX_MSGS) {
        m->line[m->n] = strdup(line);
        m->is_error[m->n++] = is_error;
    }
}

static inline void msgs_free(struct msgs *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->line[i]);
    m->n = 0;
}

static inline void msgs_print(const struct msgs *m)
{
    for (size_t i = 0; i < m->n; i++)
        print_message("  %s %s\n", m->is_error[i] ? "error:" : "warning:", m->line[i]);
}

static inline size_t count(const struct msgs *m, int is_error)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++)
        n += m->is_error[i] == is_error;
    return n;
}

static inline int find(const struct msgs *m, int is_error, const char *prefix)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->is_error[i] == is_error && strncmp(m->line[i], prefix, strlen(prefix)) == 0)
            return (int)i;
    return -1;
}

static inline struct wh_config *load(const char *text, unsigned features, struct msgs *m)
{
    m->n = 0;
    return wh_config_load_string_ex(text, "t.conf", features, collect, m);
}

/* Loads text, which must fail with one message starting with each of the
 * prefixes (NULL-terminated) and no other error. */
static inline void expect_errors_f(const char *text, unsigned features, const char *const *prefixes)
{
    struct msgs m;
    struct wh_config *cfg = load(text, features, &m);
    size_t n = 0;
    if (cfg) {
        msgs_print(&m);
        wh_config_free(cfg);
        fail_msg("loaded, expected an error:\n%s", text);
    }
    for (; prefixes[n]; n++) {
        if (find(&m, 1, prefixes[n]) < 0) {
            msgs_print(&m);
            fail_msg("no error starting with \"%s\"", prefixes[n]);
        }
    }
    if (count(&m, 1) != n) {
        msgs_print(&m);
        fail_msg("%zu errors, expected %zu", count(&m, 1), n);
    }
    msgs_free(&m);
}

#define expect_errors(text, features, ...)                                                         \
    expect_errors_f(text, features, (const char *const[]){__VA_ARGS__, NULL})
#define expect_error(text, prefix) expect_errors(text, ALL, prefix)

/* Loads text, which must succeed without errors; returns the config. */
static inline struct wh_config *expect_ok_f(const char *text, unsigned features, struct msgs *m)
{
    struct wh_config *cfg = load(text, features, m);
    if (!cfg || count(m, 1)) {
        msgs_print(m);
        fail_msg("did not load:\n%s", text);
    }
    return cfg;
}

static inline void expect_ok(const char *text, unsigned features)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(text, features, &m);
    if (m.n) {
        msgs_print(&m);
        fail_msg("unexpected messages");
    }
    wh_config_free(cfg);
}

static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

static inline int port_of(const struct wh_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

#endif

/* Unit tests for the configuration of the fleet and the services
 * (src/config/config_fleet.c, config_services.c, and their staging):
 * cluster, controller, hosts, registries, services, discovery. Every new
 * key's default, each range edge in and out, each message's file:line and
 * key, host names resolved at load, the registries' rules, and that no
 * password reaches a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "wharf/config.h"

#include "test_config.h"

#define TASK "task = { image = \"i\"; }; "

/* Every feature but the fleet, the services and EC2: their blocks are
 * "not built yet" whatever WH_FEATURES_BUILT becomes. */
#define NO_FLEET (ALL & ~(WH_FEATURE_FLEET | WH_FEATURE_SERVICES | WH_FEATURE_EC2))

/* A host line around extra keys (unix:// with an address, so that it loads). */
#define HOST(extra)                                                                                \
    "hosts = ( { id = \"h\"; docker = \"unix:///d\"; address = \"127.0.0.1\"; " extra " } );\n"
/* A service line around extra keys. */
#define SERVICE(extra) "services = ( { name = \"s\"; " extra " } );\n"

/* One text per row: NULL error = must load. */
struct edge {
    const char *text;
    const char *error;
};

static void check_edges(const struct edge *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].error)
            expect_error(e[i].text, e[i].error);
        else
            expect_ok(e[i].text, ALL);
    }
}

#define CHECK_EDGES(rows) check_edges(rows, sizeof(rows) / sizeof(rows[0]))

/* ---- defaults ---- */

static void test_host_and_service_defaults(void **state)
{
    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f(TG_WEB "hosts = ( { id = \"h1\"; docker = \"tcp://127.0.0.1:2375\"; } );\n"
                           "services = ( { name = \"s\"; task = { image = \"busybox\"; }; } );\n",
                    ALL, &m);
    const struct wh_cfg_host *h = &cfg->hosts[0];
    assert_int_equal(h->max_concurrent_calls, 8);
    assert_true(h->call_timeout == 30);
    assert_true(h->ping_interval == 2);
    assert_int_equal(h->unreachable_after, 3);
    assert_int_equal(h->draining, 0);
    assert_null(h->address);
    assert_string_equal(h->address_ip, "127.0.0.1"); /* the tcp:// URL's host */
    assert_int_equal(h->n_attributes, 0);
    const struct wh_cfg_service *s = &cfg->services[0];
    assert_null(s->target_group);
    assert_int_equal(s->desired_count, 1);
    assert_int_equal(s->container_port, 0);
    assert_int_equal(s->cpu, 0);
    assert_int_equal(s->memory, 0);
    assert_true(s->stop_timeout == 30);
    assert_int_equal(s->pull_policy, WH_PULL_MISSING);
    assert_null(s->log_driver);
    assert_null(s->log_options);
    assert_int_equal(s->n_log_options, 0);
    assert_int_equal(s->minimum_healthy_percent, 100);
    assert_int_equal(s->maximum_percent, 200);
    assert_true(s->progress_timeout == 600);
    assert_int_equal(s->circuit_breaker_enable, 0);
    assert_int_equal(s->circuit_breaker_rollback, 0);
    assert_int_equal(s->n_strategies + s->n_constraints, 0);
    assert_true(s->health_check_grace_period == 0);
    assert_string_equal(cfg->cluster, "default");
    assert_int_equal(cfg->n_registries, 0);
    wh_config_free(cfg);
}

/* ---- cluster ---- */

static void test_cluster(void **state)
{
    static const struct edge rows[] = {
        {"cluster = \"a\";", NULL},
        {"cluster = \"Prod_1.eu-west-1\";", NULL},
        {"cluster = \"a123456789012345678901234567890123456789012345678901234567890123\";", NULL},
        {"cluster = \"a1234567890123456789012345678901234567890123456789012345678901234\";",
         "t.conf:1: cluster: must be 1 to 64 characters long"},
        {"cluster = \"\";", "t.conf:1: cluster: must not be empty"},
        {"cluster = \"my cluster\";",
         "t.conf:1: cluster: a cluster name may hold only letters, digits, '-', '_', '.'"},
        {"cluster = \"a/b\";", "t.conf:1: cluster: a cluster name may hold only"},
        {"cluster = 5;", "t.conf:1: cluster: expected a string, got an integer"},
        {"\n\ncluster = \"x:y\";", "t.conf:3: cluster: a cluster name may hold only"},
    };
    CHECK_EDGES(rows);
    struct msgs m;
    struct wh_config *cfg = expect_ok_f("cluster = \"blue\";", ALL, &m);
    assert_string_equal(cfg->cluster, "blue");
    assert_int_equal(cfg->has_cluster, 1);
    wh_config_free(cfg);
}

/* ---- controller ---- */

static void test_controller(void **state)
{
#define CT(k, v) "controller = { " k " = " v "; };"
    static const struct edge rows[] = {
        {CT("reconcile_interval", "1"), NULL},
        {CT("reconcile_interval", "600"), NULL},
        {CT("reconcile_interval", "0.5"),
         "t.conf:1: controller.reconcile_interval: must be between 1 and 600"},
        {CT("reconcile_interval", "601"),
         "t.conf:1: controller.reconcile_interval: must be between 1 and 600"},
        {CT("lost_task_grace", "0"), NULL},
        {CT("lost_task_grace", "3600"), NULL},
        {CT("lost_task_grace", "-1"),
         "t.conf:1: controller.lost_task_grace: must be between 0 and 3600"},
        {CT("lost_task_grace", "3600.5"),
         "t.conf:1: controller.lost_task_grace: must be between 0 and 3600"},
        {CT("start_backoff_max", "1"), NULL},
        {CT("start_backoff_max", "3600"), NULL},
        {CT("start_backoff_max", "0"),
         "t.conf:1: controller.start_backoff_max: must be between 1 and 3600"},
        {CT("start_backoff_max", "3601"),
         "t.conf:1: controller.start_backoff_max: must be between 1 and 3600"},
        {CT("start_backoff_max", "\"9\""),
         "t.conf:1: controller.start_backoff_max: expected a duration in seconds"},
        {CT("reconcile_intervals", "5"),
         "t.conf:1: controller.reconcile_intervals: unknown key (did you mean "
         "reconcile_interval?)"},
        {"controller = 5;", "t.conf:1: controller: expected a group { ... }, got an integer"},
    };
#undef CT
    CHECK_EDGES(rows);
}

static void test_controller_values(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        "controller = { reconcile_interval = 2.5; lost_task_grace = 0; start_backoff_max = 60; };",
        ALL, &m);
    assert_true(cfg->controller.reconcile_interval == 2.5);
    assert_true(cfg->controller.lost_task_grace == 0);
    assert_true(cfg->controller.start_backoff_max == 60);
    assert_int_equal(cfg->has_controller, 1);
    wh_config_free(cfg);
    cfg = expect_ok_f("controller = { };", ALL, &m);
    assert_true(cfg->controller.reconcile_interval == 10);
    assert_true(cfg->controller.lost_task_grace == 30);
    assert_true(cfg->controller.start_backoff_max == 900);
    wh_config_free(cfg);
}

/* ---- hosts ---- */

static void test_hosts_validation(void **state)
{
    expect_error("hosts = ( { id = \"h\"; docker = \"http://x:2375\"; } );",
                 "t.conf:1: hosts[h].docker: \"http://x:2375\" is not a Docker endpoint");
    expect_error("hosts = ( { id = \"h\"; docker = \"tcp://x\"; } );",
                 "t.conf:1: hosts[h].docker: \"tcp://x\" is not a Docker endpoint");
    expect_error("hosts = ( { id = \"h\"; docker = \"unix://relative\"; } );",
                 "t.conf:1: hosts[h].docker: ");
    expect_error("hosts = ( { id = \"h\"; docker = \"unix:///d\"; address = \"127.0.0.1\";\n"
                 "  tls = { ca = \"/a\"; cert = \"/b\"; key = \"/c\"; }; } );",
                 "t.conf:2: hosts[h].tls: only for tcp:// Docker endpoints");
    expect_error("hosts = ( { id = \"h\"; docker = \"tcp://10.0.0.1:2376\";\n"
                 "  tls = { ca = \"/a\"; cert = \"/b\"; }; } );",
                 "t.conf:2: hosts[h].tls.key: required key is missing");
    expect_error("hosts = ( { id = \"h\"; docker = \"unix:///d\"; address = \"1.2.3.4:80\"; } );",
                 "t.conf:1: hosts[h].address: \"1.2.3.4:80\" is not an IP address or host name");
    expect_error(HOST("\n  attributes = { az = 1; };"),
                 "t.conf:2: hosts[h].attributes.az: expected a string");
    expect_ok("hosts = ( { id = \"h\"; docker = \"tcp://[fd00::1]:2376\"; address = \"fd00::1\"; "
              "} );",
              ALL);
}

static void test_host_docker_urls(void **state)
{
#define DK(url) "hosts = ( { id = \"h\"; docker = \"" url "\"; address = \"127.0.0.1\"; } );"
    static const struct edge rows[] = {
        {DK("unix:///var/run/docker.sock"), NULL},
        {DK("tcp://127.0.0.1:1"), NULL},
        {DK("tcp://127.0.0.1:65535"), NULL},
        {DK("tcp://[::1]:2376"), NULL},
        {DK("tcp://127.0.0.1:0"), "t.conf:1: hosts[h].docker: \"tcp://127.0.0.1:0\" is not a "
                                  "Docker endpoint: unix:///PATH or tcp://HOST:PORT"},
        {DK("tcp://127.0.0.1:65536"), "t.conf:1: hosts[h].docker: \"tcp://127.0.0.1:65536\""},
        {DK("tcp://:2375"), "t.conf:1: hosts[h].docker: \"tcp://:2375\" is not a Docker"},
        {DK("tcp://127.0.0.1:2375/v1.43"), "t.conf:1: hosts[h].docker: \"tcp://127.0.0.1"},
        {DK("unix://"), "t.conf:1: hosts[h].docker: \"unix://\" is not a Docker endpoint"},
        {DK("unix:///a b"), "t.conf:1: hosts[h].docker: \"unix:///a b\" is not a Docker"},
        {DK("ssh://h"), "t.conf:1: hosts[h].docker: \"ssh://h\" is not a Docker endpoint"},
    };
#undef DK
    CHECK_EDGES(rows);
}

static void test_host_new_keys(void **state)
{
    static const struct edge rows[] = {
        {HOST("ping_interval = 0.5;"), NULL},
        {HOST("ping_interval = 60;"), NULL},
        {HOST("ping_interval = 0.4;"), "t.conf:1: hosts[h].ping_interval: must be between 0.5 "
                                       "and 60"},
        {HOST("ping_interval = 61;"), "t.conf:1: hosts[h].ping_interval: must be between 0.5 "
                                      "and 60"},
        {HOST("unreachable_after = 1;"), NULL},
        {HOST("unreachable_after = 20;"), NULL},
        {HOST("unreachable_after = 0;"), "t.conf:1: hosts[h].unreachable_after: must be between "
                                         "1 and 20"},
        {HOST("unreachable_after = 21;"), "t.conf:1: hosts[h].unreachable_after: must be "
                                          "between 1 and 20"},
        {HOST("unreachable_after = 2.5;"), "t.conf:1: hosts[h].unreachable_after: expected an "
                                           "integer, got a float"},
        {HOST("draining = false;"), NULL},
        {HOST("draining = 1;"), "t.conf:1: hosts[h].draining: expected true or false"},
        {HOST("drainin = true;"),
         "t.conf:1: hosts[h].drainin: unknown key (did you mean draining?)"},
    };
    CHECK_EDGES(rows);
    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f(HOST("ping_interval = 0.5; unreachable_after = 20; draining = true;"), ALL, &m);
    assert_true(cfg->hosts[0].ping_interval == 0.5);
    assert_int_equal(cfg->hosts[0].unreachable_after, 20);
    assert_int_equal(cfg->hosts[0].draining, 1);
    wh_config_free(cfg);
}

static void test_host_address_required_for_unix(void **state)
{
    /* Reported at the host (the key that is missing has no line). */
    expect_error("hosts = (\n"
                 "  { id = \"h\";\n"
                 "    docker = \"unix:///var/run/docker.sock\"; } );\n",
                 "t.conf:2: hosts[h].address: required for a unix:// host: where its published "
                 "ports are reached (such as \"127.0.0.1\")");
    /* A bad docker URL is the one error. */
    expect_error("hosts = ( { id = \"h\"; docker = \"unix:/x\"; } );",
                 "t.conf:1: hosts[h].docker: \"unix:/x\" is not a Docker endpoint");
    /* A tcp:// host does without. */
    expect_ok("hosts = ( { id = \"h\"; docker = \"tcp://10.0.0.1:2376\"; } );", ALL);
}

static int is_localhost_ip(const char *ip)
{
    return ip && (strcmp(ip, "127.0.0.1") == 0 || strcmp(ip, "::1") == 0);
}

static void test_host_address_names_resolved(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        "hosts = ( { id = \"a\"; docker = \"unix:///d\"; address = \"localhost\"; },\n"
        "  { id = \"b\"; docker = \"tcp://localhost:2376\"; },\n"
        "  { id = \"c\"; docker = \"tcp://[::1]:2376\"; },\n"
        "  { id = \"d\"; docker = \"tcp://localhost:2376\"; address = \"10.1.2.3\"; },\n"
        "  { id = \"e\"; docker = \"unix:///d\"; address = \"fd00::1\"; } );\n",
        ALL, &m);
    assert_string_equal(cfg->hosts[0].address, "localhost"); /* as written */
    assert_true(is_localhost_ip(cfg->hosts[0].address_ip));
    assert_null(cfg->hosts[1].address);
    assert_true(is_localhost_ip(cfg->hosts[1].address_ip));
    assert_string_equal(cfg->hosts[2].address_ip, "::1");
    assert_string_equal(cfg->hosts[3].address_ip, "10.1.2.3");
    assert_string_equal(cfg->hosts[4].address_ip, "fd00::1");
    wh_config_free(cfg);

    expect_error("hosts = ( { id = \"h\"; docker = \"unix:///d\";\n"
                 "  address = \"nosuch.invalid\"; } );",
                 "t.conf:2: hosts[h].address: cannot resolve \"nosuch.invalid\": ");
    expect_error("hosts = ( { id = \"h\";\n"
                 "  docker = \"tcp://nosuch.invalid:2376\"; } );",
                 "t.conf:2: hosts[h].docker: cannot resolve \"nosuch.invalid\": ");
    /* An address given: the URL's host is the engine's business, not ours. */
    expect_ok("hosts = ( { id = \"h\"; docker = \"tcp://nosuch.invalid:2376\";\n"
              "  address = \"127.0.0.1\"; } );",
              ALL);
}

static void test_duplicate_host_ids_and_service_names(void **state)
{
    expect_errors("hosts = (\n"
                  "  { id = \"h\"; docker = \"unix:///a\"; address = \"127.0.0.1\"; },\n"
                  "  { id = \"h\"; docker = \"unix:///b\"; address = \"127.0.0.1\"; } );\n"
                  "services = (\n"
                  "  { name = \"s\"; task = { image = \"i\"; }; },\n"
                  "  { name = \"s\"; task = { image = \"i\"; }; } );\n",
                  ALL, "t.conf:3: hosts[h].id: duplicate host id \"h\" (first at line 2)",
                  "t.conf:6: services[s].name: duplicate service name \"s\" (first at line 5)");
}

/* ---- registries ---- */

struct tmpfile {
    char path[64];
};

static void tmp_write(struct tmpfile *t, const char *content)
{
    snprintf(t->path, sizeof(t->path), "/tmp/wh-test-config-XXXXXX");
    int fd = mkstemp(t->path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
}

#define SECRET "s3cret-Pa55"

/* Loads text and fails if any message holds the secret. */
static struct wh_config *load_no_secret(const char *text, unsigned features, struct msgs *m)
{
    struct wh_config *cfg = load(text, features, m);
    for (size_t i = 0; i < m->n; i++)
        if (strstr(m->line[i], SECRET) || strstr(m->line[i], "second-line"))
            fail_msg("a message holds the password: %s", m->line[i]);
    return cfg;
}

static void registry_text(char *buf, size_t len, const char *entries)
{
    snprintf(buf, len, "registries = (\n%s );\n", entries);
}

static void test_registry_password_file(void **state)
{
    struct tmpfile t;
    tmp_write(&t, " \t" SECRET " \r\nsecond-line\n");
    char entry[256], text[512];
    snprintf(entry, sizeof(entry),
             "  { server = \"registry.example.com:5000\"; username = \"ci\";\n"
             "    password_file = \"%s\"; }",
             t.path);
    registry_text(text, sizeof(text), entry);
    struct msgs m;
    struct wh_config *cfg = load_no_secret(text, ALL, &m);
    assert_non_null(cfg);
    assert_int_equal(m.n, 0);
    assert_int_equal(cfg->n_registries, 1);
    const struct wh_cfg_registry *r = &cfg->registries[0];
    assert_string_equal(r->server, "registry.example.com:5000");
    assert_string_equal(r->username, "ci");
    assert_string_equal(r->password_file, t.path);
    assert_string_equal(r->password, SECRET); /* first line, trimmed */
    assert_int_equal(r->ecr, 0);
    assert_int_equal(r->line, 2);
    wh_config_free(cfg);

    /* A file without a line end is one line. */
    unlink(t.path);
    tmp_write(&t, SECRET);
    snprintf(entry, sizeof(entry), "{ server = \"r\"; username = \"u\"; password_file = \"%s\"; }",
             t.path);
    registry_text(text, sizeof(text), entry);
    cfg = load_no_secret(text, ALL, &m);
    assert_non_null(cfg);
    assert_string_equal(cfg->registries[0].password, SECRET);
    wh_config_free(cfg);
    unlink(t.path);
}

static void test_registry_password_file_errors(void **state)
{
    struct tmpfile empty, blank;
    tmp_write(&empty, "");
    tmp_write(&blank, "  \r\n" SECRET "\n");
    char text[512], want[256];
    const char *paths[] = {"/nonexistent/registry.pass", empty.path, blank.path, "/tmp"};
    const char *reasons[] = {"cannot read /nonexistent/registry.pass: No such file or directory",
                             NULL, NULL, "cannot read /tmp: Is a directory"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof(text),
                 "registries = ( { server = \"r\"; username = \"u\";\n"
                 "  password_file = \"%s\"; } );\n",
                 paths[i]);
        if (reasons[i])
            snprintf(want, sizeof(want), "t.conf:2: registries[0].password_file: %s", reasons[i]);
        else
            snprintf(want, sizeof(want),
                     "t.conf:2: registries[0].password_file: %s: the first line holds no "
                     "password",
                     paths[i]);
        struct msgs m;
        assert_null(load_no_secret(text, ALL, &m));
        if (m.n != 1 || strcmp(m.line[0], want) != 0) {
            msgs_print(&m);
            fail_msg("expected: %s", want);
        }
        msgs_free(&m);
    }
    unlink(empty.path);
    unlink(blank.path);
}

static void test_registry_rules(void **state)
{
    static const struct edge rows[] = {
        {"registries = ( { server = \"123.dkr.ecr.us-east-1.amazonaws.com\"; ecr = true; } );",
         NULL},
        {"registries = ( );", NULL},
        {"registries = ( { ecr = true; } );",
         "t.conf:1: registries[0].server: required key is missing"},
        {"registries = ( { server = \"r\"; } );",
         "t.conf:1: registries[0]: needs username and password_file (or ecr = true)"},
        {"registries = ( { server = \"r\"; ecr = false; } );",
         "t.conf:1: registries[0]: needs username and password_file (or ecr = true)"},
        {"registries = ( { server = \"r\";\n  username = \"u\"; } );",
         "t.conf:1: registries[0].password_file: required with username"},
        {"registries = ( { server = \"r\";\n  password_file = \"/x\"; } );",
         "t.conf:1: registries[0].username: required with password_file"},
        {"registries = ( { server = \"r\"; ecr = true;\n  username = \"u\"; } );",
         "t.conf:1: registries[0].username: not with ecr = true: ECR gives the credentials"},
        {"registries = ( { server = \"https://r.example.com\"; ecr = true; } );",
         "t.conf:1: registries[0].server: \"https://r.example.com\" is not a registry server"},
        {"registries = ( { server = \"r/x\"; ecr = true; } );",
         "t.conf:1: registries[0].server: \"r/x\" is not a registry server"},
        {"registries = ( { server = \"\"; ecr = true; } );",
         "t.conf:1: registries[0].server: must not be empty"},
        {"registries = ( { server = \"r\"; ecr = \"yes\"; } );",
         "t.conf:1: registries[0].ecr: expected true or false"},
        {"registries = ( { server = \"r\"; ecr = true; token = \"x\"; } );",
         "t.conf:1: registries[0].token: unknown key"},
        {"registries = { server = \"r\"; };",
         "t.conf:1: registries: expected a list ( ... ), got a group"},
        {"registries = ( { server = \"r\"; ecr = true; },\n"
         "  { server = \"r\"; ecr = true; } );",
         "t.conf:2: registries[1].server: duplicate registry server \"r\" (first at line 1)"},
    };
    CHECK_EDGES(rows);
    expect_errors("registries = ( { server = \"r\"; ecr = true;\n"
                  "  username = \"u\"; password_file = \"/x\"; } );",
                  ALL, "t.conf:1: registries[0].username: not with ecr = true",
                  "t.conf:1: registries[0].password_file: not with ecr = true");
    struct msgs m;
    struct wh_config *cfg = expect_ok_f("registries = ( { server = \"[fd00::1]:5000\"; ecr = "
                                        "true; } );",
                                        ALL, &m);
    assert_int_equal(cfg->registries[0].ecr, 1);
    assert_null(cfg->registries[0].password);
    assert_null(cfg->registries[0].password_file);
    wh_config_free(cfg);
}

/* The password never shows, whatever else is wrong beside it, with every
 * feature set. */
static void test_registry_password_never_in_messages(void **state)
{
    struct tmpfile t;
    tmp_write(&t, SECRET "\nsecond-line\n");
    static const char *const around[] = {
        "{ server = \"r\"; username = \"u\"; password_file = \"%s\"; }",
        "{ server = \"r\"; username = \"u\"; password_file = \"%s\"; ecr = true; }",
        "{ server = \"r x\"; username = \"u\"; password_file = \"%s\"; paswd = 1; }",
        "{ server = \"r\"; username = 7; password_file = \"%s\"; },\n"
        "  { server = \"r\"; username = \"u\"; password_file = \"%s\"; }",
        "{ server = \"r\"; username = \"u\"; password_file = \"%s\"; ecr = true; }, 5",
    };
    static const unsigned sets[] = {ALL, BUILT, NO_FLEET, STAGED, ALL & ~WH_FEATURE_EC2};
    for (size_t i = 0; i < sizeof(around) / sizeof(around[0]); i++) {
        char entry[512], text[1024];
        snprintf(entry, sizeof(entry), around[i], t.path, t.path);
        snprintf(text, sizeof(text), "workers = 999;\n%s" HOST("") "registries = ( %s );\n",
                 "cluster = \"a b\";\n", entry);
        for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
            struct msgs m;
            struct wh_config *cfg = load_no_secret(text, sets[k], &m);
            assert_null(cfg);
            assert_true(m.n >= 2);
            msgs_free(&m);
        }
    }
    unlink(t.path);
}

static void test_registries_staged(void **state)
{
    const char *text = "registries = ( { server = \"a\"; ecr = true; },\n"
                       "  { server = \"b\"; ecr = true; },\n"
                       "  { server = \"c\"; ecr = false; username = \"u\"; password_file = "
                       "\"/nonexistent\"; } );\n";
    /* Validated even when the block is not built: the file must be readable. */
    struct msgs m;
    assert_null(load_no_secret(text, NO_FLEET, &m));
    assert_int_equal(count(&m, 1), 1);
    assert_true(find(&m, 1, "t.conf:3: registries[2].password_file: cannot read /nonexistent") >=
                0);
    assert_true(find(&m, 0, "t.conf:1: registries: not built yet in this version; block ignored") >=
                0);
    assert_int_equal(count(&m, 0), 1); /* nothing about ecr inside the dropped block */
    msgs_free(&m);

    /* ecr accepted with one warning for all, and kept. */
    text = "registries = ( { server = \"a\"; ecr = true; },\n"
           "  { server = \"b\"; ecr = true; } );\n";
    struct wh_config *cfg = expect_ok_f(text, ALL & ~WH_FEATURE_EC2, &m);
    assert_int_equal(m.n, 1);
    assert_int_equal(m.is_error[0], 0);
    assert_string_equal(m.line[0], "t.conf:1: registries[0].ecr: not built yet (EC2 issue); "
                                   "accepted, no effect yet (and 1 more like it)");
    assert_int_equal(cfg->n_registries, 2); /* kept */
    assert_int_equal(cfg->registries[1].ecr, 1);
    msgs_free(&m);
    wh_config_free(cfg);

    cfg =
        expect_ok_f("registries = ( { server = \"a\"; ecr = true; } );", ALL & ~WH_FEATURE_EC2, &m);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.line[0], "t.conf:1: registries[0].ecr: not built yet (EC2 issue); "
                                   "accepted, no effect yet");
    msgs_free(&m);
    wh_config_free(cfg);

    cfg = expect_ok_f(text, NO_FLEET, &m);
    assert_int_equal(m.n, 1);
    assert_int_equal(cfg->has_registries, 0);
    assert_null(cfg->registries);
    msgs_free(&m);
    wh_config_free(cfg);
}

/* ---- services ---- */

static void test_services_validation(void **state)
{
    expect_error(TG_WEB "services = ( { name = \"s\"; target_group = \"web\";\n"
                        "  task = { image = \"i\"; }; } );\n",
                 "t.conf:3: services[s].task.container_port: required when the service has a "
                 "target_group");
    expect_error(TG_WEB
                 "services = ( { name = \"s\";\n"
                 "  target_group = \"api\"; task = { image = \"i\"; container_port = 80; }; } "
                 ");\n",
                 "t.conf:2: services[s].target_group: no target group is named \"api\"");
    expect_error("services = ( { name = \"s\"; task = { image = \"i\";\n"
                 "  env = { PORT = 8080; }; }; } );\n",
                 "t.conf:2: services[s].task.env.PORT: expected a string (quote numbers");
    expect_error("services = ( { name = \"s\"; task = { image = \"i\"; };\n"
                 "  placement = { constraints = ( { type = \"memberOf\"; } ); }; } );\n",
                 "t.conf:2: services[s].placement.constraints[0].expression: memberOf needs an "
                 "expression");
    expect_error("services = ( { name = \"s\"; task = { image = \"i\"; };\n"
                 "  placement = { constraints = ( { type = \"distinctInstance\";\n"
                 "    expression = \"attribute:az == a\"; } ); }; } );\n",
                 "t.conf:2: services[s].placement.constraints[0].expression: only memberOf takes "
                 "an expression");
    expect_error("services = ( { name = \"s\"; task = { image = \"i\"; };\n"
                 "  placement = { constraints = ( { type = \"memberOf\";\n"
                 "    expression = \"attribute:az in [a, b\"; } ); }; } );\n",
                 "t.conf:2: services[s].placement.constraints[0].expression: \"attribute:az in [a, "
                 "b\": column ");
    expect_error("services = ( { name = \"s\"; task = { image = \"i\"; };\n"
                 "  placement = { constraints = ( { type = \"sameZone\"; } ); }; } );\n",
                 "t.conf:2: services[s].placement.constraints[0].type: \"sameZone\" is not one of "
                 "\"distinctInstance\", \"memberOf\"");
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        "services = ( { name = \"s\"; task = { image = \"i\"; command = [ \"/app\", \"-v\" ]; };\n"
        "  placement = { strategy = ( { type = \"random\"; } );\n"
        "    constraints = ( { type = \"memberOf\"; expression = \"attribute:az == a\"; } ); }; "
        "} );\n",
        ALL, &m);
    const struct wh_cfg_service *s = &cfg->services[0];
    assert_int_equal(s->n_command, 2);
    assert_string_equal(s->command[1], "-v");
    assert_null(s->strategies[0].field);
    assert_string_equal(s->constraints[0].expression, "attribute:az == a");
    wh_config_free(cfg);
}

static void test_container_port(void **state)
{
#define PORT(v)                                                                                    \
    TG_WEB "services = ( { name = \"s\"; target_group = \"web\";\n"                                \
           "  task = { image = \"i\"; container_port = " v "; }; } );\n"
    static const struct edge rows[] = {
        {PORT("1"), NULL},
        {PORT("65535"), NULL},
        {PORT("0"), "t.conf:3: services[s].task.container_port: must be between 1 and 65535"},
        {PORT("65536"), "t.conf:3: services[s].task.container_port: must be between 1 and 65535"},
        {PORT("\"80\""), "t.conf:3: services[s].task.container_port: expected an integer"},
    };
#undef PORT
    CHECK_EDGES(rows);
}

static void test_placement_strategies(void **state)
{
#define ST(s) SERVICE(TASK "\n  placement = { strategy = ( " s " ); };")
    static const struct edge rows[] = {
        {ST("{ type = \"spread\"; field = \"instanceId\"; }"), NULL},
        {ST("{ type = \"spread\"; field = \"attribute:az\"; }"), NULL},
        {ST("{ type = \"binpack\"; field = \"cpu\"; }"), NULL},
        {ST("{ type = \"binpack\"; field = \"memory\"; }"), NULL},
        {ST("{ type = \"random\"; }"), NULL},
        {ST("{ type = \"spread\"; }"), "t.conf:2: services[s].placement.strategy[0].field: spread "
                                       "needs field \"instanceId\" or \"attribute:NAME\""},
        {ST("{ type = \"spread\"; field = \"attribute:\"; }"),
         "t.conf:2: services[s].placement.strategy[0].field: spread needs field"},
        {ST("{ type = \"spread\"; field = \"az\"; }"),
         "t.conf:2: services[s].placement.strategy[0].field: spread needs field"},
        {ST("{ type = \"binpack\"; field = \"disk\"; }"),
         "t.conf:2: services[s].placement.strategy[0].field: binpack needs field \"cpu\" or "
         "\"memory\""},
        {ST("{ type = \"binpack\"; }"),
         "t.conf:2: services[s].placement.strategy[0].field: binpack needs field"},
        {ST("{ type = \"random\"; field = \"cpu\"; }"),
         "t.conf:2: services[s].placement.strategy[0].field: a random strategy takes no field"},
        {ST("{ type = \"pack\"; }"),
         "t.conf:2: services[s].placement.strategy[0].type: \"pack\" is not one of \"spread\", "
         "\"binpack\", \"random\""},
        {ST("{ field = \"cpu\"; }"),
         "t.conf:2: services[s].placement.strategy[0].type: required key is missing"},
        {ST("{ type = \"random\"; }, { type = \"random\"; }, { type = \"random\"; },\n"
            "  { type = \"random\"; }, { type = \"random\"; }, { type = \"random\"; }"),
         "t.conf:2: services[s].placement.strategy: has 6 strategies; at most 5 are allowed"},
    };
#undef ST
    CHECK_EDGES(rows);
}

static void test_pull_policy(void **state)
{
    static const char *const names[] = {"missing", "always", "never"};
    static const enum wh_pull_policy values[] = {WH_PULL_MISSING, WH_PULL_ALWAYS, WH_PULL_NEVER};
    for (size_t i = 0; i < 3; i++) {
        char text[256];
        snprintf(text, sizeof(text), SERVICE("task = { image = \"i\"; pull_policy = \"%s\"; };"),
                 names[i]);
        struct msgs m;
        struct wh_config *cfg = expect_ok_f(text, ALL, &m);
        assert_int_equal(cfg->services[0].pull_policy, values[i]);
        wh_config_free(cfg);
    }
    expect_error(SERVICE("task = { image = \"i\";\n  pull_policy = \"sometimes\"; };"),
                 "t.conf:2: services[s].task.pull_policy: \"sometimes\" is not one of "
                 "\"missing\", \"always\", \"never\"");
    expect_error(SERVICE("task = { image = \"i\"; pull_policy = true; };"),
                 "t.conf:1: services[s].task.pull_policy: expected a string, got a boolean");
}

static void test_task_log(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(
        SERVICE("task = { image = \"i\";\n"
                "  log = { driver = \"awslogs\"; options = { awslogs-group = \"/wharf\";\n"
                "    awslogs-region = \"us-east-1\"; }; }; };"),
        ALL, &m);
    const struct wh_cfg_service *s = &cfg->services[0];
    assert_string_equal(s->log_driver, "awslogs");
    assert_int_equal(s->n_log_options, 2);
    assert_string_equal(s->log_options[0].key, "awslogs-group");
    assert_string_equal(s->log_options[0].value, "/wharf");
    assert_string_equal(s->log_options[1].key, "awslogs-region");
    wh_config_free(cfg);
    cfg =
        expect_ok_f(SERVICE("task = { image = \"i\"; log = { driver = \"local\"; }; };"), ALL, &m);
    assert_string_equal(cfg->services[0].log_driver, "local");
    assert_int_equal(cfg->services[0].n_log_options, 0);
    wh_config_free(cfg);
    expect_ok(SERVICE("task = { image = \"i\";\n"
                      "  log = { driver = \"grafana/loki-docker-driver:latest\"; }; };"),
              ALL);

    static const struct edge rows[] = {
        {SERVICE("task = { image = \"i\";\n  log = { options = { max-size = \"10m\"; }; }; };"),
         "t.conf:2: services[s].task.log.driver: required key is missing"},
        {SERVICE("task = { image = \"i\";\n  log = { driver = \"json file\"; }; };"),
         "t.conf:2: services[s].task.log.driver: \"json file\" is not a log driver name"},
        {SERVICE("task = { image = \"i\"; log = { driver = \"local\";\n"
                 "  options = { max-file = 3; }; }; };"),
         "t.conf:2: services[s].task.log.options.max-file: expected a string (quote numbers"},
        {SERVICE("task = { image = \"i\"; log = { driver = \"local\";\n  option = { }; }; };"),
         "t.conf:2: services[s].task.log.option: unknown key (did you mean options?)"},
        {SERVICE("task = { image = \"i\"; log = \"json-file\"; };"),
         "t.conf:1: services[s].task.log: expected a group { ... }, got a string"},
        {SERVICE("task = { image = \"i\"; log = { driver = \"local\"; options = [ ]; }; };"),
         "t.conf:1: services[s].task.log.options: expected a group { ... }"},
    };
    CHECK_EDGES(rows);
}

static void test_deployment(void **state)
{
#define DP(d) SERVICE(TASK "\n  deployment = { " d " };")
    static const struct edge rows[] = {
        {DP("minimum_healthy_percent = 0;"), NULL},
        {DP("minimum_healthy_percent = 100;"), NULL},
        {DP("minimum_healthy_percent = -1;"),
         "t.conf:2: services[s].deployment.minimum_healthy_percent: must be between 0 and 100"},
        {DP("minimum_healthy_percent = 101;"),
         "t.conf:2: services[s].deployment.minimum_healthy_percent: must be between 0 and 100"},
        {DP("maximum_percent = 200;"), NULL},
        {DP("minimum_healthy_percent = 50; maximum_percent = 100;"), NULL},
        {DP("minimum_healthy_percent = 99; maximum_percent = 100;"), NULL},
        {DP("minimum_healthy_percent = 0; maximum_percent = 100;"), NULL},
        {DP("maximum_percent = 99;"),
         "t.conf:2: services[s].deployment.maximum_percent: must be between 100 and 200"},
        {DP("maximum_percent = 201;"),
         "t.conf:2: services[s].deployment.maximum_percent: must be between 100 and 200"},
        {DP("maximum_percent = 100;"),
         "t.conf:2: services[s].deployment.maximum_percent: must be above "
         "minimum_healthy_percent (100) unless that is 0, or no task can be replaced"},
        {DP("minimum_healthy_percent = 100;\n  maximum_percent = 100;"),
         "t.conf:3: services[s].deployment.maximum_percent: must be above"},
        {DP("progress_timeout = 30;"), NULL},
        {DP("progress_timeout = 86400;"), NULL},
        {DP("progress_timeout = 29.9;"),
         "t.conf:2: services[s].deployment.progress_timeout: must be between 30 and 86400"},
        {DP("progress_timeout = 86401;"),
         "t.conf:2: services[s].deployment.progress_timeout: must be between 30 and 86400"},
        {DP("circuit_breaker = { enable = true; rollback = false; };"), NULL},
        {DP("circuit_breaker = { enable = 1; };"),
         "t.conf:2: services[s].deployment.circuit_breaker.enable: expected true or false"},
        {DP("circuit_breaker = { rolback = true; };"),
         "t.conf:2: services[s].deployment.circuit_breaker.rolback: unknown key (did you mean "
         "rollback?)"},
        {DP("progress = 60;"), "t.conf:2: services[s].deployment.progress: unknown key"},
    };
#undef DP
    CHECK_EDGES(rows);
    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f(SERVICE(TASK "deployment = { minimum_healthy_percent = 0; maximum_percent = "
                                 "100; progress_timeout = 45.5;\n"
                                 "  circuit_breaker = { enable = true; rollback = true; }; };"),
                    ALL, &m);
    const struct wh_cfg_service *s = &cfg->services[0];
    assert_int_equal(s->minimum_healthy_percent, 0);
    assert_int_equal(s->maximum_percent, 100);
    assert_true(s->progress_timeout == 45.5);
    assert_int_equal(s->circuit_breaker_enable, 1);
    assert_int_equal(s->circuit_breaker_rollback, 1);
    wh_config_free(cfg);
}

/* progress_timeout and circuit_breaker: one warning each, kept. */
static void test_deployment_staged(void **state)
{
    const unsigned off = ALL & ~WH_FEATURE_DEPLOYMENTS;
    const char *text =
        "services = (\n"
        "  { name = \"a\"; " TASK "deployment = { progress_timeout = 60;\n"
        "      circuit_breaker = { enable = true; }; }; },\n"
        "  { name = \"b\"; " TASK "deployment = { progress_timeout = 90; }; },\n"
        "  { name = \"c\"; " TASK "deployment = { circuit_breaker = { enable = false; }; }; } );\n";
    struct msgs m;
    struct wh_config *cfg = expect_ok_f(text, off, &m);
    if (m.n != 2) {
        msgs_print(&m);
        fail_msg("expected two warnings");
    }
    assert_string_equal(m.line[0], "t.conf:2: services[a].deployment.progress_timeout: not built "
                                   "yet (Rolling deployments issue); accepted, no effect yet "
                                   "(and 1 more like it)");
    assert_string_equal(m.line[1], "t.conf:3: services[a].deployment.circuit_breaker: not built "
                                   "yet (Rolling deployments issue); accepted, no effect yet");
    assert_true(cfg->services[1].progress_timeout == 90);
    assert_int_equal(cfg->services[0].circuit_breaker_enable, 1);
    msgs_free(&m);
    wh_config_free(cfg);

    /* Built: nothing to say. */
    expect_ok(text, ALL);
    /* Services not built: only the block's warning, nothing from inside it. */
    cfg = expect_ok_f(text, NO_FLEET, &m);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.line[0], "t.conf:1: services: not built yet in this version; block "
                                   "ignored");
    msgs_free(&m);
    wh_config_free(cfg);
    /* The defaults of the block say nothing. */
    expect_ok(SERVICE(TASK "deployment = { minimum_healthy_percent = 50; };"), off);
}

/* ---- discovery ---- */

static void test_discovery(void **state)
{
#define EC2(k) "discovery = { ec2 = { region = \"us-east-1\"; " k " }; };"
    static const struct edge rows[] = {
        {"discovery = { };", NULL},
        {EC2(""), NULL},
        {EC2("interval = 5;"), NULL},
        {EC2("interval = 3600;"), NULL},
        {EC2("interval = 4;"), "t.conf:1: discovery.ec2.interval: must be between 5 and 3600"},
        {EC2("interval = 3601;"), "t.conf:1: discovery.ec2.interval: must be between 5 and 3600"},
        {EC2("docker_port = 0;"), "t.conf:1: discovery.ec2.docker_port: must be between 1 and "
                                  "65535"},
        {EC2("address = \"elastic_ip\";"), "t.conf:1: discovery.ec2.address: \"elastic_ip\" is "
                                           "not one of \"private_ip\", \"public_ip\""},
        {EC2("endpoint = \"http://127.0.0.1:4566\";"), NULL},
        {EC2("endpoint = \"ec2.amazonaws.com\";"),
         "t.conf:1: discovery.ec2.endpoint: \"ec2.amazonaws.com\" is not an endpoint URL"},
        {EC2("filters = ( { name = \"tag:a\"; } );"),
         "t.conf:1: discovery.ec2.filters[tag:a].values: required key is missing"},
        {EC2("filters = ( { name = \"tag:a\"; values = [ ]; } );"),
         "t.conf:1: discovery.ec2.filters[tag:a].values: needs at least one value"},
        {EC2("filters = ( { values = [ \"x\" ]; } );"),
         "t.conf:1: discovery.ec2.filters[0].name: required key is missing"},
        {EC2("filters = ( { name = \"tag:a\"; values = \"x\"; } );"), NULL},
        {EC2("tls = { ca = \"/a\"; cert = \"/b\"; };"),
         "t.conf:1: discovery.ec2.tls.key: required key is missing"},
        {EC2("regions = [ ];"), "t.conf:1: discovery.ec2.regions: unknown key"},
        {"discovery = { ec2 = { }; };", "t.conf:1: discovery.ec2.region: required key is missing"},
        {"discovery = { ec2 = { region = \"US East\"; }; };",
         "t.conf:1: discovery.ec2.region: \"US East\" is not an AWS region"},
        {"discovery = { gce = { }; };", "t.conf:1: discovery.gce: unknown key"},
    };
#undef EC2
    CHECK_EDGES(rows);

    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f("discovery = { ec2 = { region = \"eu-west-1\"; }; };\n", ALL, &m);
    const struct wh_cfg_discovery *d = &cfg->discovery;
    assert_int_equal(d->enabled, 1);
    assert_string_equal(d->region, "eu-west-1");
    assert_true(d->interval == 30);
    assert_int_equal(d->docker_port, 2376);
    assert_int_equal(d->address, WH_EC2_PRIVATE_IP);
    assert_int_equal(d->n_filters, 0);
    assert_null(d->tls_ca);
    assert_null(d->endpoint);
    wh_config_free(cfg);

    /* Not built: one warning, dropped back to the defaults. */
    cfg = expect_ok_f("discovery = { ec2 = { region = \"eu-west-1\"; interval = 60; }; };\n",
                      ALL & ~WH_FEATURE_EC2, &m);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.line[0], "t.conf:1: discovery: not built yet in this version; block "
                                   "ignored");
    assert_int_equal(cfg->discovery.enabled, 0);
    assert_int_equal(cfg->has_discovery, 0);
    assert_null(cfg->discovery.region);
    assert_true(cfg->discovery.interval == 30);
    msgs_free(&m);
    wh_config_free(cfg);
}

/* ---- staging of the new blocks ---- */

static void test_staging_cluster_and_controller(void **state)
{
    struct msgs m;
    struct wh_config *cfg = expect_ok_f("cluster = \"blue\";\n"
                                        "controller = { reconcile_interval = 1; };\n",
                                        NO_FLEET, &m);
    assert_int_equal(m.n, 2);
    assert_string_equal(m.line[0], "t.conf:1: cluster: not built yet in this version; ignored");
    assert_string_equal(m.line[1], "t.conf:2: controller: not built yet in this version; block "
                                   "ignored");
    assert_string_equal(cfg->cluster, "default");
    assert_true(cfg->controller.reconcile_interval == 10);
    assert_int_equal(cfg->has_cluster + cfg->has_controller, 0);
    msgs_free(&m);
    wh_config_free(cfg);
    /* Still validated. */
    assert_null(load("cluster = \"a b\";\n", NO_FLEET, &m));
    assert_int_equal(count(&m, 1), 1);
    msgs_free(&m);
    /* On with the services. */
    cfg = expect_ok_f("cluster = \"blue\";\ncontroller = { };\n", WH_FEATURE_SERVICES, &m);
    assert_int_equal(m.n, 0);
    assert_string_equal(cfg->cluster, "blue");
    wh_config_free(cfg);
}

static void test_staging_fleet_blocks(void **state)
{
    struct msgs m;
    struct wh_config *cfg =
        expect_ok_f(HOST("") "registries = ( { server = \"r\"; ecr = true; } );\n",
                    WH_FEATURE_FLEET | WH_FEATURE_EC2, &m);
    assert_int_equal(m.n, 0);
    assert_int_equal(cfg->n_hosts + cfg->n_registries, 2);
    wh_config_free(cfg);
    cfg = expect_ok_f(HOST("") "registries = ( { server = \"r\"; ecr = true; } );\n", NO_FLEET, &m);
    assert_int_equal(m.n, 2);
    assert_true(find(&m, 0, "t.conf:1: hosts: not built yet") >= 0);
    assert_true(find(&m, 0, "t.conf:2: registries: not built yet") >= 0);
    msgs_free(&m);
    wh_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_and_service_defaults),
        cmocka_unit_test(test_cluster),
        cmocka_unit_test(test_controller),
        cmocka_unit_test(test_controller_values),
        cmocka_unit_test(test_hosts_validation),
        cmocka_unit_test(test_host_docker_urls),
        cmocka_unit_test(test_host_new_keys),
        cmocka_unit_test(test_host_address_required_for_unix),
        cmocka_unit_test(test_host_address_names_resolved),
        cmocka_unit_test(test_duplicate_host_ids_and_service_names),
        cmocka_unit_test(test_registry_password_file),
        cmocka_unit_test(test_registry_password_file_errors),
        cmocka_unit_test(test_registry_rules),
        cmocka_unit_test(test_registry_password_never_in_messages),
        cmocka_unit_test(test_registries_staged),
        cmocka_unit_test(test_services_validation),
        cmocka_unit_test(test_container_port),
        cmocka_unit_test(test_placement_strategies),
        cmocka_unit_test(test_pull_policy),
        cmocka_unit_test(test_task_log),
        cmocka_unit_test(test_deployment),
        cmocka_unit_test(test_deployment_staged),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_staging_cluster_and_controller),
        cmocka_unit_test(test_staging_fleet_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the runtime module's pure parts (src/runtime/docker_json.c)
 * and of the interface's dispatch through a mock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "runtime/runtime-int.h"

/* ---- the line splitter ---- */

struct lines_seen {
    char lines[16][64];
    int n;
    int stop_after;
};

static int collect(void *arg, char *line, size_t len)
{
    struct lines_seen *s = arg;
    assert_int_equal(strlen(line), len);
    snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s", line);
    return s->stop_after && s->n >= s->stop_after ? -1 : 0;
}

static void test_lines_across_chunks(void **state)
{
    struct wh_dk_lines ls = {0};
    struct lines_seen s = {0};
    const char *chunks[] = {"{\"a\":", "1}\n{\"b\"", ":2}\r", "\n\n", "{\"c\":3}\n{\"d\""};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(wh_dk_lines_feed(&ls, chunks[i], strlen(chunks[i]), collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.lines[0], "{\"a\":1}");
    assert_string_equal(s.lines[1], "{\"b\":2}");
    assert_string_equal(s.lines[2], "{\"c\":3}");
    /* the tail waits for its newline */
    assert_int_equal(wh_dk_lines_feed(&ls, ":4}\n", 4, collect, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.lines[3], "{\"d\":4}");
    wh_dk_lines_free(&ls);
}

static void test_lines_byte_by_byte(void **state)
{
    struct wh_dk_lines ls = {0};
    struct lines_seen s = {0};
    const char *text = "one\ntwo\r\nthree\n";
    for (size_t i = 0; i < strlen(text); i++)
        assert_int_equal(wh_dk_lines_feed(&ls, text + i, 1, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.lines[2], "three");
    wh_dk_lines_free(&ls);
}

static void test_lines_limit_and_stop(void **state)
{
    struct wh_dk_lines ls = {.max = 8};
    struct lines_seen s = {0};
    assert_int_equal(wh_dk_lines_feed(&ls, "0123456789abcdef\n", 17, collect, &s), -1);
    assert_int_equal(s.n, 0);
    assert_int_equal(wh_dk_lines_feed(&ls, "short\n", 6, collect, &s), 0);
    assert_int_equal(s.n, 1);
    s.stop_after = 2;
    assert_int_equal(wh_dk_lines_feed(&ls, "a\nb\nc\n", 6, collect, &s), -1);
    assert_int_equal(s.n, 2);
    wh_dk_lines_free(&ls);
}

/* ---- the re-list diff ---- */

static void ctr(struct wh_dk_ctr *c, const char *id, const char *state, int exit_code)
{
    cJSON *labels = cJSON_Parse("{\"wharf.service\":\"web\"}");
    assert_int_equal(wh_dk_ctr_set(c, id, id, strcmp(state, "running") == 0, exit_code, labels), 0);
    snprintf(c->c.state, sizeof(c->c.state), "%s", state);
    cJSON_Delete(labels);
}

struct diff_seen {
    char text[16][128];
    int n;
};

static void on_diff(void *arg, const char *action, const struct wh_dk_ctr *c, int exit_code)
{
    struct diff_seen *d = arg;
    assert_int_equal(c->c.n_labels, 1);
    assert_string_equal(c->c.labels[0].key, "wharf.service");
    snprintf(d->text[d->n++], sizeof(d->text[0]), "%s %s %d", c->c.id, action, exit_code);
}

static void test_diff_synthetic_events(void **state)
{
    struct wh_dk_ctr old[4], cur[6];
    ctr(&old[0], "a", "running", -1);
    ctr(&old[1], "b", "running", -1);
    ctr(&old[2], "c", "exited", 0);
    ctr(&old[3], "d", "running", -1);
    ctr(&cur[0], "g", "exited", 1); /* unsorted on purpose */
    ctr(&cur[1], "a", "running", -1);
    ctr(&cur[2], "b", "exited", 137);
    ctr(&cur[3], "c", "running", -1);
    ctr(&cur[4], "e", "running", -1);
    ctr(&cur[5], "f", "created", -1);
    wh_dk_ctr_sort(cur, 6);
    assert_int_equal(wh_dk_ctr_find(cur, 6, "e"), 3);
    assert_int_equal(wh_dk_ctr_find(cur, 6, "z"), -1);
    struct diff_seen d = {0};
    wh_dk_diff(old, 4, cur, 6, on_diff, &d);
    const char *want[] = {"b die 137",  "c start -1",  "d die -1", "d destroy -1",
                          "e start -1", "f create -1", "g die 1"};
    assert_int_equal(d.n, 7);
    for (int i = 0; i < 7; i++)
        assert_string_equal(d.text[i], want[i]);
    /* nothing changed: nothing said */
    d.n = 0;
    wh_dk_diff(cur, 6, cur, 6, on_diff, &d);
    assert_int_equal(d.n, 0);
    for (int i = 0; i < 4; i++)
        wh_dk_ctr_clear(&old[i]);
    for (int i = 0; i < 6; i++)
        wh_dk_ctr_clear(&cur[i]);
}

/* ---- JSON answers ---- */

static const char *inspect_json =
    "{\"Id\":\"abc123\",\"Name\":\"/web-1\",\"State\":{\"Status\":\"running\",\"Running\":true,"
    "\"ExitCode\":0,\"Pid\":42,\"StartedAt\":\"2024-05-01T10:00:00.1Z\","
    "\"FinishedAt\":\"0001-01-01T00:00:00Z\",\"Health\":{\"Status\":\"healthy\"}},"
    "\"Config\":{\"Image\":\"wharf-demo:v1\",\"Labels\":{\"wharf.service\":\"web\","
    "\"wharf.task\":\"t1\"}},\"NetworkSettings\":{\"Ports\":{\"9090/udp\":[{\"HostIp\":"
    "\"0.0.0.0\",\"HostPort\":\"5000\"}],\"8080/tcp\":[{\"HostIp\":\"::\",\"HostPort\":"
    "\"49154\"},{\"HostIp\":\"0.0.0.0\",\"HostPort\":\"49153\"}]}}}";

static void test_inspect_parse(void **state)
{
    cJSON *doc = cJSON_Parse(inspect_json);
    struct wh_dk_ctr c;
    assert_int_equal(wh_dk_ctr_from_inspect(doc, &c), 0);
    assert_string_equal(c.c.id, "abc123");
    assert_string_equal(c.c.name, "web-1");
    assert_string_equal(c.c.image, "wharf-demo:v1");
    assert_true(c.c.running);
    assert_int_equal(c.c.pid, 42);
    assert_string_equal(c.c.started_at, "2024-05-01T10:00:00.1Z");
    assert_string_equal(c.c.finished_at, "");
    assert_string_equal(c.c.health, "healthy");
    assert_int_equal(c.c.container_port, 8080);
    assert_int_equal(c.c.host_port, 49153);
    assert_int_equal(c.c.n_labels, 2);
    struct wh_dk_ctr copy;
    assert_int_equal(wh_dk_ctr_copy(&copy, &c), 0);
    wh_dk_ctr_clear(&c);
    cJSON_Delete(doc);
    assert_string_equal(copy.c.labels[1].value, "t1");
    wh_dk_ctr_clear(&copy);
}

static void test_ports_ipv4(void **state)
{
    int cp = 0, hp = 0;
    cJSON *p = cJSON_Parse("{\"8080/tcp\":[{\"HostIp\":\"::\",\"HostPort\":\"1\"}],"
                           "\"81/tcp\":null,\"7000/tcp\":[{\"HostIp\":\"0.0.0.0\","
                           "\"HostPort\":\"7001\"}]}");
    assert_int_equal(wh_dk_ports_ipv4(p, 0, &cp, &hp), 0);
    assert_int_equal(cp, 7000);
    assert_int_equal(hp, 7001);
    assert_int_equal(wh_dk_ports_ipv4(p, 8080, &cp, &hp), -1);
    assert_int_equal(wh_dk_ports_ipv4(NULL, 0, &cp, &hp), -1);
    cJSON_Delete(p);
}

static void test_list_item_parse(void **state)
{
    cJSON *item = cJSON_Parse(
        "{\"Id\":\"ff\",\"Names\":[\"/t2\"],\"Image\":\"x:1\",\"State\":\"exited\","
        "\"Status\":\"Exited (137) 3 seconds ago\",\"Labels\":null,\"Ports\":[{\"IP\":\"::\","
        "\"PrivatePort\":8080,\"PublicPort\":2,\"Type\":\"tcp\"},{\"IP\":\"0.0.0.0\","
        "\"PrivatePort\":8080,\"PublicPort\":32768,\"Type\":\"tcp\"}]}");
    struct wh_dk_ctr c;
    assert_int_equal(wh_dk_ctr_from_list(item, &c), 0);
    assert_string_equal(c.c.name, "t2");
    assert_false(c.c.running);
    assert_int_equal(c.c.exit_code, 137);
    assert_int_equal(c.c.host_port, 32768);
    assert_int_equal(c.c.n_labels, 0);
    assert_int_equal(wh_dk_status_exit_code("Up 2 minutes"), -1);
    wh_dk_ctr_clear(&c);
    cJSON_Delete(item);
}

/* A whole /containers/json answer: every item or nothing. */
static void test_list_parse(void **state)
{
    struct wh_dk_ctr *v = (struct wh_dk_ctr *)1;
    size_t n = 99;
    cJSON *doc = cJSON_Parse("[{\"Id\":\"b2\",\"Names\":[\"/two\"],\"State\":\"running\","
                             "\"Labels\":{\"wharf.service\":\"web\"}},{\"Id\":\"a1\","
                             "\"State\":\"exited\",\"Status\":\"Exited (1) 1 second ago\"}]");
    assert_int_equal(wh_dk_list_parse(doc, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].c.name, "two");
    assert_true(v[0].c.running);
    assert_int_equal(v[0].c.n_labels, 1);
    assert_string_equal(v[1].c.id, "a1");
    assert_int_equal(v[1].c.exit_code, 1);
    wh_dk_ctr_sort(v, n);
    assert_int_equal(wh_dk_ctr_find(v, n, "a1"), 0);
    wh_dk_list_free(v, n);
    cJSON_Delete(doc);
    /* one bad item fails the list (and what was parsed is freed) */
    doc = cJSON_Parse("[{\"Id\":\"a1\",\"Labels\":{\"k\":\"v\"}},{\"Names\":[\"/no-id\"]}]");
    assert_int_equal(wh_dk_list_parse(doc, &v, &n), -1);
    assert_null(v);
    assert_int_equal(n, 0);
    cJSON_Delete(doc);
    doc = cJSON_Parse("[]");
    assert_int_equal(wh_dk_list_parse(doc, &v, &n), 0);
    assert_null(v);
    assert_int_equal(n, 0);
    cJSON_Delete(doc);
    doc = cJSON_Parse("{\"message\":\"not a list\"}");
    assert_int_equal(wh_dk_list_parse(doc, &v, &n), -1);
    cJSON_Delete(doc);
    wh_dk_list_free(NULL, 0);
}

static void test_event_parse(void **state)
{
    cJSON *doc = cJSON_Parse(
        "{\"status\":\"die\",\"id\":\"c1\",\"Type\":\"container\",\"Action\":\"die\","
        "\"Actor\":{\"ID\":\"c1\",\"Attributes\":{\"exitCode\":\"143\",\"name\":\"web-1\","
        "\"wharf.service\":\"web\"}},\"time\":1700000000,\"timeNano\":1700000000500000000}");
    struct wh_rt_event ev;
    struct wh_rt_kv *kv;
    assert_int_equal(wh_dk_event_parse(doc, &ev, &kv), 0);
    assert_string_equal(ev.action, "die");
    assert_string_equal(ev.id, "c1");
    assert_string_equal(ev.name, "web-1");
    assert_int_equal(ev.exit_code, 143);
    assert_true(ev.time > 1700000000.4 && ev.time < 1700000000.6);
    assert_int_equal(ev.n_labels, 3);
    free(kv);
    cJSON_Delete(doc);
    doc = cJSON_Parse("{\"Type\":\"network\",\"Action\":\"connect\",\"Actor\":{\"ID\":\"n\"}}");
    assert_int_equal(wh_dk_event_parse(doc, &ev, &kv), -1);
    cJSON_Delete(doc);
}

/* ---- requests ---- */

static void test_create_body(void **state)
{
    const char *cmd[] = {"/app", "-v"};
    struct wh_rt_kv env[] = {{"PORT", "8080"}, {"GREETING", "a=b"}};
    struct wh_rt_kv labels[] = {{"wharf.service", "web"}, {"wharf.task", "t7"}};
    struct wh_rt_kv logopts[] = {{"max-size", "10m"}};
    struct wh_rt_create_spec s = {.image = "wharf-demo:v1",
                                  .cmd = cmd,
                                  .n_cmd = 2,
                                  .env = env,
                                  .n_env = 2,
                                  .labels = labels,
                                  .n_labels = 2,
                                  .container_port = 8080,
                                  .memory_mib = 128,
                                  .cpu_shares = 256,
                                  .stop_signal = "SIGTERM",
                                  .stop_timeout = 30,
                                  .log_driver = "json-file",
                                  .log_opts = logopts,
                                  .n_log_opts = 1};
    char err[WH_ERR_LEN];
    char *text = wh_dk_create_body(&s, err, sizeof(err));
    assert_non_null(text);
    cJSON *b = cJSON_Parse(text);
    free(text);
    assert_string_equal(cJSON_GetObjectItem(b, "Image")->valuestring, "wharf-demo:v1");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "Cmd"), 1)->valuestring, "-v");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "Env"), 1)->valuestring,
                        "GREETING=a=b");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(b, "Labels"), "wharf.task")->valuestring, "t7");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "ExposedPorts"), "8080/tcp"));
    assert_string_equal(cJSON_GetObjectItem(b, "StopSignal")->valuestring, "SIGTERM");
    assert_int_equal(cJSON_GetObjectItem(b, "StopTimeout")->valueint, 30);
    cJSON *hc = cJSON_GetObjectItem(b, "HostConfig");
    cJSON *bind = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(hc, "PortBindings"), "8080/tcp"), 0);
    assert_string_equal(cJSON_GetObjectItem(bind, "HostIp")->valuestring, "0.0.0.0");
    assert_string_equal(cJSON_GetObjectItem(bind, "HostPort")->valuestring, "");
    assert_true(cJSON_GetObjectItem(hc, "Memory")->valuedouble == 134217728.0);
    assert_int_equal(cJSON_GetObjectItem(hc, "CpuShares")->valueint, 256);
    cJSON *lc = cJSON_GetObjectItem(hc, "LogConfig");
    assert_string_equal(cJSON_GetObjectItem(lc, "Type")->valuestring, "json-file");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(lc, "Config"), "max-size")->valuestring, "10m");
    cJSON_Delete(b);
}

static void test_create_body_minimal_and_bad(void **state)
{
    char err[WH_ERR_LEN];
    struct wh_rt_create_spec s = {.image = "x", .stop_timeout = -1};
    char *text = wh_dk_create_body(&s, err, sizeof(err));
    assert_non_null(text);
    cJSON *b = cJSON_Parse(text);
    free(text);
    assert_null(cJSON_GetObjectItem(b, "Cmd"));
    assert_null(cJSON_GetObjectItem(b, "StopTimeout"));
    assert_null(cJSON_GetObjectItem(b, "ExposedPorts"));
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "HostConfig"), "Memory"));
    cJSON_Delete(b);
    struct wh_rt_kv env[] = {{"BAD=KEY", "v"}};
    s.env = env;
    s.n_env = 1;
    assert_null(wh_dk_create_body(&s, err, sizeof(err)));
    assert_non_null(strstr(err, "BAD=KEY"));
    s = (struct wh_rt_create_spec){.image = ""};
    assert_null(wh_dk_create_body(&s, err, sizeof(err)));
}

static void test_endpoint_parse(void **state)
{
    struct wh_dk_endpoint ep;
    char err[WH_ERR_LEN];
    assert_int_equal(wh_dk_endpoint_parse("unix:///var/run/docker.sock", 0, &ep, err, 256), 0);
    assert_true(ep.is_unix);
    assert_string_equal(ep.socket_path, "/var/run/docker.sock");
    assert_string_equal(ep.base_url, "http://localhost");
    assert_int_equal(wh_dk_endpoint_parse("tcp://10.1.0.2:2376", 1, &ep, err, 256), 0);
    assert_false(ep.is_unix);
    assert_string_equal(ep.base_url, "https://10.1.0.2:2376");
    assert_int_equal(wh_dk_endpoint_parse("tcp://host.example", 1, &ep, err, 256), 0);
    assert_string_equal(ep.base_url, "https://host.example:2376");
    assert_int_equal(wh_dk_endpoint_parse("tcp://[fd00::2]:2400", 0, &ep, err, 256), 0);
    assert_string_equal(ep.base_url, "http://[fd00::2]:2400");
    const char *bad[] = {"unix://relative", "tcp://",     "tcp://h:0",
                         "tcp://h:99999",   "tcp://h:x",  "tcp://h/p:1",
                         "http://h:1",      "tcp://[::1", NULL};
    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        assert_int_equal(wh_dk_endpoint_parse(bad[i], 1, &ep, err, 256), -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(wh_dk_endpoint_parse(NULL, 1, &ep, err, 256), -1);
}

static void test_filters_query(void **state)
{
    const char *labels[] = {"wharf.service", "a=b c"};
    char *q = wh_dk_filters_query(labels, 2, 1);
    assert_string_equal(q, "%7B%22type%22%3A%5B%22container%22%5D%2C%22label%22%3A%5B%22wharf."
                           "service%22%2C%22a%3Db%20c%22%5D%7D");
    free(q);
    q = wh_dk_filters_query(NULL, 0, 0);
    assert_string_equal(q, "");
    free(q);
    q = wh_dk_list_path(labels, 1);
    assert_string_equal(q, "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22wharf.service"
                           "%22%5D%7D");
    free(q);
}

static void test_image_ref_split(void **state)
{
    char repo[128], tag[64];
    struct {
        const char *ref, *repo, *tag;
    } ok[] = {{"busybox", "busybox", "latest"},
              {"wharf-demo:v1", "wharf-demo", "v1"},
              {"10.213.0.1:5000/wharf-demo", "10.213.0.1:5000/wharf-demo", "latest"},
              {"10.213.0.1:5000/team/app:v2", "10.213.0.1:5000/team/app", "v2"},
              {"app@sha256:abcd", "app@sha256:abcd", ""}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(wh_dk_image_ref_split(ok[i].ref, repo, sizeof(repo), tag, sizeof(tag)), 0);
        assert_string_equal(repo, ok[i].repo);
        assert_string_equal(tag, ok[i].tag);
    }
    assert_int_equal(wh_dk_image_ref_split("app:", repo, sizeof(repo), tag, sizeof(tag)), -1);
    assert_int_equal(wh_dk_image_ref_split("", repo, sizeof(repo), tag, sizeof(tag)), -1);
}

static void test_registry_auth(void **state)
{
    struct wh_rt_auth auth = {"alice", "s3cr?t>>", "10.213.0.1:5000"};
    char *enc = wh_dk_registry_auth(&auth);
    assert_non_null(enc);
    assert_null(strchr(enc, '+'));
    assert_null(strchr(enc, '/'));
    for (char *p = enc; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    unsigned char dec[256] = {0};
    assert_true(EVP_DecodeBlock(dec, (unsigned char *)enc, (int)strlen(enc)) > 0);
    free(enc);
    cJSON *doc = cJSON_Parse((char *)dec);
    assert_string_equal(cJSON_GetObjectItem(doc, "username")->valuestring, "alice");
    assert_string_equal(cJSON_GetObjectItem(doc, "password")->valuestring, "s3cr?t>>");
    assert_string_equal(cJSON_GetObjectItem(doc, "serveraddress")->valuestring, "10.213.0.1:5000");
    cJSON_Delete(doc);
}

static void test_pick_version(void **state)
{
    char v[16];
    wh_dk_pick_version("1.43", "1.12", v, sizeof(v));
    assert_string_equal(v, "1.41");
    wh_dk_pick_version("1.41", "1.12", v, sizeof(v));
    assert_string_equal(v, "1.41");
    wh_dk_pick_version("1.40", "1.12", v, sizeof(v));
    assert_string_equal(v, "1.40");
    wh_dk_pick_version("1.50", "1.44", v, sizeof(v));
    assert_string_equal(v, "1.44");
    wh_dk_pick_version(NULL, NULL, v, sizeof(v));
    assert_string_equal(v, "1.41");
}

static void test_errors_and_policies(void **state)
{
    struct wh_rt_error e = {.kind = WH_RT_ERR_TIMEOUT};
    assert_true(wh_rt_error_unreachable(&e));
    e.kind = WH_RT_ERR_HTTP;
    e.http_status = 404;
    assert_false(wh_rt_error_unreachable(&e));
    assert_true(wh_rt_error_not_found(&e));
    assert_string_equal(wh_rt_errkind_name(WH_RT_ERR_TLS), "tls");
    assert_string_equal(wh_rt_errkind_name((enum wh_rt_errkind)99), "unknown");
    enum wh_rt_pull_policy p;
    assert_int_equal(wh_rt_pull_policy_parse("never", &p), 0);
    assert_int_equal(p, WH_RT_PULL_NEVER);
    assert_int_equal(wh_rt_pull_policy_parse("if-not-present", &p), 0);
    assert_int_equal(p, WH_RT_PULL_IF_NOT_PRESENT);
    assert_int_equal(wh_rt_pull_policy_parse("sometimes", &p), -1);
}

/* ---- the interface dispatches to whatever implements it ---- */

struct mock {
    struct wh_runtime base;
    char last[64];
};

static int mock_start(struct wh_runtime *rt, const char *id, wh_rt_done_fn cb, void *arg)
{
    snprintf(((struct mock *)rt)->last, 64, "start %s", id);
    return 0;
}

static int mock_stop(struct wh_runtime *rt, const char *id, int timeout, wh_rt_done_fn cb,
                     void *arg)
{
    snprintf(((struct mock *)rt)->last, 64, "stop %s %d", id, timeout);
    return 0;
}

static void mock_free(struct wh_runtime *rt)
{
    snprintf(((struct mock *)rt)->last, 64, "freed");
}

static void test_mock_dispatch(void **state)
{
    static const struct wh_runtime_ops ops = {
        .free = mock_free, .start = mock_start, .stop = mock_stop};
    struct mock m = {.base.ops = &ops};
    assert_int_equal(wh_rt_start(&m.base, "c1", NULL, NULL), 0);
    assert_string_equal(m.last, "start c1");
    assert_int_equal(wh_rt_stop(&m.base, "c2", 30, NULL, NULL), 0);
    assert_string_equal(m.last, "stop c2 30");
    wh_runtime_free(&m.base);
    assert_string_equal(m.last, "freed");
    wh_runtime_free(NULL);
}

/* ---- reentrancy on a real loop, against an engine that isn't there ---- */

struct reent {
    struct wh_runtime *rt;
    struct wh_rt_watch *watch;
    struct event_base *base;
    int pings, disconnects, late;
    struct wh_rt_error last;
};

static void late_cb(void *arg, const struct wh_rt_error *err)
{
    ((struct reent *)arg)->late++; /* never: the runtime was freed */
}

static void free_in_cb(void *arg, const struct wh_rt_error *err)
{
    struct reent *r = arg;
    r->pings++;
    r->last = *err;
    /* queue more, then free the runtime from inside its own callback */
    assert_int_equal(wh_rt_ping(r->rt, late_cb, r), 0);
    assert_int_equal(wh_rt_start(r->rt, "x", late_cb, r), 0);
    wh_runtime_free(r->rt);
    r->rt = NULL;
}

static void stop_in_cb(void *arg, const struct wh_rt_event *ev)
{
    struct reent *r = arg;
    assert_int_equal(ev->kind, WH_RT_EV_DISCONNECTED);
    assert_true(wh_rt_error_unreachable(ev->error));
    r->disconnects++;
    wh_rt_events_stop(r->rt, r->watch);
    r->watch = NULL;
    event_base_loopexit(r->base, NULL);
}

/* The watch's owner frees the whole runtime from the watch's callback: the
 * host goes (watch included) once the callback returns. */
static void free_rt_in_event_cb(void *arg, const struct wh_rt_event *ev)
{
    struct reent *r = arg;
    assert_int_equal(ev->kind, WH_RT_EV_DISCONNECTED);
    r->disconnects++;
    wh_runtime_free(r->rt);
    r->rt = NULL;
    r->watch = NULL;
    event_base_loopexit(r->base, NULL);
}

static struct wh_runtime *dead_runtime(struct wh_curl_loop *loop)
{
    char err[WH_ERR_LEN];
    struct wh_rt_host_params p = {
        .id = "dead", .endpoint = "unix:///nonexistent/wharf.sock", .call_timeout = 2};
    struct wh_runtime *rt = wh_docker_runtime_new(loop, &p, err, sizeof(err));
    assert_non_null(rt);
    return rt;
}

static void test_free_runtime_from_its_callback(void **state)
{
    struct reent r = {0};
    r.base = event_base_new();
    struct wh_curl_loop *loop = wh_curl_loop_new(r.base);
    r.rt = dead_runtime(loop);
    assert_int_equal(wh_rt_ping(r.rt, free_in_cb, &r), 0);
    assert_int_equal(r.pings, 0); /* never from within the call */
    struct timeval tv = {2, 0};
    event_base_loopexit(r.base, &tv);
    event_base_dispatch(r.base);
    assert_int_equal(r.pings, 1);
    assert_int_equal(r.late, 0);
    assert_int_equal(r.last.kind, WH_RT_ERR_CONNECT);
    assert_non_null(strstr(r.last.message, "host dead"));
    wh_curl_loop_free(loop);
    event_base_free(r.base);
}

static void test_stop_watch_from_its_callback(void **state)
{
    struct reent r = {0};
    r.base = event_base_new();
    struct wh_curl_loop *loop = wh_curl_loop_new(r.base);
    r.rt = dead_runtime(loop);
    struct wh_rt_events_params p = {.backoff_initial = 0.01};
    r.watch = wh_rt_events_start(r.rt, &p, stop_in_cb, &r);
    assert_non_null(r.watch);
    struct timeval tv = {3, 0};
    event_base_loopexit(r.base, &tv);
    event_base_dispatch(r.base);
    assert_int_equal(r.disconnects, 1);
    assert_null(r.watch);
    wh_runtime_free(r.rt);
    wh_curl_loop_free(loop);
    event_base_free(r.base);
}

static void test_free_runtime_from_watch_callback(void **state)
{
    struct reent r = {0};
    r.base = event_base_new();
    struct wh_curl_loop *loop = wh_curl_loop_new(r.base);
    r.rt = dead_runtime(loop);
    struct wh_rt_events_params p = {.backoff_initial = 0.01};
    r.watch = wh_rt_events_start(r.rt, &p, free_rt_in_event_cb, &r);
    assert_non_null(r.watch);
    assert_int_equal(wh_rt_ping(r.rt, late_cb, &r), 0);
    struct timeval tv = {3, 0};
    event_base_loopexit(r.base, &tv);
    event_base_dispatch(r.base);
    assert_int_equal(r.disconnects, 1);
    assert_null(r.rt);
    /* the ping failed before the watch's stream did, or was dropped */
    assert_true(r.late <= 1);
    assert_int_equal(wh_curl_loop_active(loop), 0);
    wh_curl_loop_free(loop);
    event_base_free(r.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_across_chunks),
        cmocka_unit_test(test_lines_byte_by_byte),
        cmocka_unit_test(test_lines_limit_and_stop),
        cmocka_unit_test(test_diff_synthetic_events),
        cmocka_unit_test(test_inspect_parse),
        cmocka_unit_test(test_ports_ipv4),
        cmocka_unit_test(test_list_item_parse),
        cmocka_unit_test(test_list_parse),
        cmocka_unit_test(test_event_parse),
        cmocka_unit_test(test_create_body),
        cmocka_unit_test(test_create_body_minimal_and_bad),
        cmocka_unit_test(test_endpoint_parse),
        cmocka_unit_test(test_filters_query),
        cmocka_unit_test(test_image_ref_split),
        cmocka_unit_test(test_registry_auth),
        cmocka_unit_test(test_pick_version),
        cmocka_unit_test(test_errors_and_policies),
        cmocka_unit_test(test_mock_dispatch),
        cmocka_unit_test(test_free_runtime_from_its_callback),
        cmocka_unit_test(test_stop_watch_from_its_callback),
        cmocka_unit_test(test_free_runtime_from_watch_callback),
    };
    wh_curl_global_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}

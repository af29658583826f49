/* Unit tests of the listener-rule matcher (src/proxy/rules.c).
 *
 * Rule sets come from real configuration text (wh_config_load_string_ex)
 * and requests from the real HTTP parser, so the tests also hold the
 * matcher to the shapes the config and the parser produce. A match is
 * reported as the priority of the winning rule (0: the default action).
 *
 * This binary is linked with -Wl,--wrap=malloc,calloc,realloc: every call
 * from the test and from libwharf.a goes through the counters below, which
 * is how test_match_and_redirect_never_allocate proves the hot path does
 * not allocate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "proxy/rules.h"

/* ---- allocation counting (the linker routes malloc & co. here) ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static unsigned long allocations; /* test-only counter, single-threaded */

void *__wrap_malloc(size_t size)
{
    allocations++;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    allocations++;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    allocations++;
    return __real_realloc(p, size);
}

/* ---- fixtures ---- */

/* Groups in this order, so their indexes are web 0, api 1, canary 2. */
#define GROUPS                                                                                     \
    "target_groups = ( { name = \"web\"; targets = ( \"127.0.0.1:9001\" ); },\n"                   \
    "  { name = \"api\"; targets = ( \"127.0.0.1:9002\" ); },\n"                                   \
    "  { name = \"canary\"; targets = ( \"127.0.0.1:9003\" ); } );\n"
#define DEF_404 "{ fixed_response = { status = 404; }; }"
/* A rule whose action does not matter to the test. */
#define RULE(prio, conds)                                                                          \
    "{ priority = " #prio "; conditions = { " conds " }; fixed_response = { status = 200; }; }"

struct fx {
    struct wh_config *cfg;
    const struct wh_cfg_listener *l;
    struct wh_rule_set *rs;
};

static void report(void *arg, int is_error, const char *line)
{
    (void)arg;
    print_message("%s %s\n", is_error ? "error:" : "warning:", line);
}

/* One listener "l" with the given rules (NULL: no rules key) and default
 * action, compiled. */
static void fx_load(struct fx *f, const char *rules, const char *def)
{
    size_t n = strlen(GROUPS) + (rules ? strlen(rules) : 0) + strlen(def) + 256;
    char *text = malloc(n);
    assert_non_null(text);
    snprintf(text, n,
             GROUPS "listeners = ( { name = \"l\"; bind = \"127.0.0.1:8080\";\n"
                    "%s%s%s"
                    "  default_action = %s; } );\n",
             rules ? "  rules = (\n" : "", rules ? rules : "", rules ? " );\n" : "", def);
    f->cfg = wh_config_load_string_ex(text, "test.conf", WH_FEATURES_ALL, report, NULL);
    free(text);
    assert_non_null(f->cfg);
    f->l = &f->cfg->listeners[0];
    char err[256] = "";
    f->rs = wh_rules_compile(f->cfg, f->l, err, sizeof(err));
    if (!f->rs)
        fail_msg("wh_rules_compile: %s", err);
}

static void fx_free(struct fx *f)
{
    wh_rules_free(f->rs);
    wh_config_free(f->cfg);
}

static void parse(struct wh_http_msg *m, const char *head)
{
    struct wh_http_parser p;
    wh_http_parser_init(&p, WH_HTTP_REQUEST, 0);
    wh_http_msg_init(m, WH_HTTP_REQUEST);
    assert_int_equal(wh_http_parse_head(&p, head, strlen(head), m), WH_HTTP_DONE);
}

/* The peer ip (v4 or v6 text) in ss; NULL ip gives a NULL peer. */
static const struct sockaddr *peer_of(struct sockaddr_storage *ss, const char *ip)
{
    memset(ss, 0, sizeof(*ss));
    if (!ip)
        return NULL;
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return (const struct sockaddr *)ss;
}

static int prio_of(const struct fx *f, const struct wh_action *a)
{
    assert_non_null(a);
    return a->id < f->l->n_rules ? f->l->rules[a->id].priority : 0;
}

/* The priority of the rule head matches from peer ip, 0 for the default. */
static int match_prio(const struct fx *f, const char *head, const char *ip)
{
    struct wh_http_msg m;
    struct sockaddr_storage ss;
    parse(&m, head);
    int prio = prio_of(f, wh_rules_match(f->rs, head, &m, peer_of(&ss, ip)));
    wh_http_msg_free(&m);
    return prio;
}

struct mcase {
    const char *head;
    const char *peer; /* NULL: no peer */
    int want;         /* priority of the winning rule, 0 = default */
};

static void run_cases(const char *rules, const struct mcase *c, size_t n)
{
    struct fx f;
    fx_load(&f, rules, DEF_404);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        int got = match_prio(&f, c[i].head, c[i].peer);
        if (got != c[i].want) {
            print_message("case %zu (peer %s): matched %d, want %d:\n%s", i,
                          c[i].peer ? c[i].peer : "NULL", got, c[i].want, c[i].head);
            bad = 1;
        }
    }
    fx_free(&f);
    assert_false(bad);
}

#define RUN(rules, cases) run_cases(rules, cases, sizeof(cases) / sizeof(cases[0]))

#define REQ(method, target, headers) method " " target " HTTP/1.1\r\n" headers "\r\n"
#define GET_H(target, host) REQ("GET", target, "Host: " host "\r\n")
#define GET(target) GET_H(target, "example.com")

/* ---- request extraction ---- */

static void host_of(const char *head, const char *want)
{
    struct wh_http_msg m;
    const char *h;
    size_t n;
    parse(&m, head);
    wh_request_host(head, &m, &h, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(h, want, n);
    wh_http_msg_free(&m);
}

static void test_request_host_strips_port_keeps_v6_brackets(void **state)
{
    (void)state;
    host_of(GET_H("/", "Example.COM:8080"), "Example.COM");
    host_of(GET_H("/", "example.com"), "example.com");
    host_of(GET_H("/", "[::1]:8080"), "[::1]");
    host_of(GET_H("/", "[2001:db8::1]"), "[2001:db8::1]");
    host_of("GET http://user:pw@h.example:81/p?q HTTP/1.0\r\n\r\n", "h.example");
    host_of("GET http://h.example HTTP/1.0\r\n\r\n", "h.example");
    host_of("GET /p HTTP/1.0\r\n\r\n", "");
    /* the Host header wins over the target's authority */
    host_of(REQ("GET", "http://other.example/p", "Host: h.example\r\n"), "h.example");
}

static void path_query_of(const char *head, const char *want_path, const char *want_query)
{
    struct wh_http_msg m;
    const char *p, *q;
    size_t pn, qn;
    parse(&m, head);
    wh_request_path_query(head, &m, &p, &pn, &q, &qn);
    assert_int_equal(pn, strlen(want_path));
    assert_memory_equal(p, want_path, pn);
    assert_int_equal(qn, strlen(want_query));
    assert_memory_equal(q, want_query, qn);
    wh_http_msg_free(&m);
}

static void test_request_path_query_forms(void **state)
{
    (void)state;
    path_query_of(GET("/a/b?x=1&y"), "/a/b", "x=1&y");
    path_query_of(GET("/a?b?c"), "/a", "b?c");
    path_query_of(GET("/a"), "/a", "");
    path_query_of(GET("/a?"), "/a", "");
    path_query_of(GET("/%2Fx"), "/%2Fx", "");
    path_query_of(GET("http://h:1/p?q"), "/p", "q");
    path_query_of(GET("https://h/"), "/", "");
    path_query_of(GET("http://h?x=1"), "/", "x=1");
    path_query_of(REQ("OPTIONS", "*", "Host: h\r\n"), "*", "");
}

/* ---- conditions ---- */

static void test_host_exact_case_port_wildcards(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {GET_H("/", "api.example.com"), NULL, 10},
        {GET_H("/", "API.Example.COM"), NULL, 10},      /* case-insensitive */
        {GET_H("/", "api.example.com:8080"), NULL, 10}, /* port ignored */
        {GET_H("/", "x.example.com"), NULL, 20},        /* "*.example.com" */
        {GET_H("/", "a.b.example.com"), NULL, 20},      /* '*' spans dots */
        {GET_H("/", "X.EXAMPLE.com:1"), NULL, 20},
        {GET_H("/", "example.com"), NULL, 0}, /* "*." needs the dot */
        {GET_H("/", "api.example.org"), NULL, 0},
        {GET_H("/", "web.test"), NULL, 30}, /* "w?b.test": one byte */
        {GET_H("/", "WAB.test"), NULL, 30},
        {GET_H("/", "wb.test"), NULL, 0},
        {GET_H("/", "weeb.test"), NULL, 0},
        {"GET / HTTP/1.0\r\n\r\n", NULL, 0}, /* no Host: no host condition matches */
        {"GET http://api.example.com:81/x HTTP/1.0\r\n\r\n", NULL, 10}, /* absolute-form */
    };
    static const char rules[] = RULE(10, "host = [ \"api.example.com\" ];") ", " //
        RULE(20, "host = [ \"*.example.com\" ];") ", "                           //
        RULE(30, "host = [ \"w?b.test\" ];");
    RUN(rules, cases);
}

static void test_host_star_needs_a_host(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {GET_H("/", "anything"), NULL, 10},
        {"GET / HTTP/1.0\r\n\r\n", NULL, 0},
        {GET_H("/", ""), NULL, 0},
    };
    RUN(RULE(10, "host = [ \"*\" ];"), cases);
}

static void test_path_exact_prefix_middle_case_query(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {GET("/exact"), NULL, 10},
        {GET("/exact?x=1"), NULL, 10}, /* the query is not part of the path */
        {GET("/exact/"), NULL, 0},
        {GET("/v1/"), NULL, 20}, /* '*' may be empty */
        {GET("/v1/users/7"), NULL, 20},
        {GET("/v1"), NULL, 0},
        {GET("/v2/x"), NULL, 0},
        {GET("/v2/x?u=/v1/"), NULL, 0},
        {GET("/a/b/c"), NULL, 30}, /* '*' in the middle */
        {GET("/a/x/y/c"), NULL, 30},
        {GET("/a//c"), NULL, 30},
        {GET("/a/c"), NULL, 0},
        {GET("/a/b/cd"), NULL, 0},
        {GET("/Case"), NULL, 40}, /* case-sensitive */
        {GET("/case"), NULL, 0},
        {GET("/CASE"), NULL, 0},
        {GET("/img/x.png"), NULL, 50}, /* leading '*' */
        {GET("/x.PNG"), NULL, 0},
        {GET("/f1"), NULL, 60}, /* '?' is one byte */
        {GET("/f"), NULL, 0},
        {GET("/f12"), NULL, 0},
        {GET("http://h.example/v1/x?y=1"), NULL, 20}, /* absolute-form: its path */
        {GET("http://h.example/exact"), NULL, 10},
    };
    static const char rules[] = RULE(10, "path = [ \"/exact\" ];") ", " //
        RULE(20, "path = [ \"/v1/*\" ];") ", "                          //
        RULE(30, "path = [ \"/a/*/c\" ];") ", "                         //
        RULE(40, "path = [ \"/Case\" ];") ", "                          //
        RULE(50, "path = [ \"*.png\" ];") ", "                          //
        RULE(60, "path = [ \"/f?\" ];");
    RUN(rules, cases);
}

static void test_method_exact_case_sensitive(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {REQ("GET", "/", "Host: h\r\n"), NULL, 10},  {REQ("HEAD", "/", "Host: h\r\n"), NULL, 10},
        {REQ("POST", "/", "Host: h\r\n"), NULL, 20}, {REQ("get", "/", "Host: h\r\n"), NULL, 0},
        {REQ("PUT", "/", "Host: h\r\n"), NULL, 0},   {REQ("GETX", "/", "Host: h\r\n"), NULL, 0},
    };
    static const char rules[] = RULE(10, "method = [ \"GET\", \"HEAD\" ];") ", " //
        RULE(20, "method = [ \"POST\" ];");
    RUN(rules, cases);
}

static void test_header_name_values_wildcards_repeated_lines(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {REQ("GET", "/", "Host: h\r\nX-Canary: yes\r\n"), NULL, 10},
        {REQ("GET", "/", "Host: h\r\nx-canary: yes\r\n"), NULL, 10}, /* name case-insensitive */
        {REQ("GET", "/", "Host: h\r\nX-CANARY: YES\r\n"), NULL, 10}, /* value too */
        {REQ("GET", "/", "Host: h\r\nX-Canary: on\r\n"), NULL, 10},  /* second value */
        {REQ("GET", "/", "Host: h\r\nX-Canary: no\r\n"), NULL, 0},
        {REQ("GET", "/", "Host: h\r\nX-Canary: no\r\nX-Canary: yes\r\n"), NULL, 10}, /* any line */
        {REQ("GET", "/", "Host: h\r\nX-Canary-2: yes\r\n"), NULL, 0},
        {REQ("GET", "/", "Host: h\r\n"), NULL, 0},
        {REQ("GET", "/", "Host: h\r\nUser-Agent: Mozilla/5.0 (iPhone; Mobile)\r\n"), NULL, 20},
        {REQ("GET", "/", "Host: h\r\nuser-agent: mobile\r\n"), NULL, 20}, /* '*' may be empty */
        {REQ("GET", "/", "Host: h\r\nUser-Agent: desktop\r\n"), NULL, 0},
    };
    static const char rules[] =
        RULE(10, "header = { name = \"X-Canary\"; values = [ \"yes\", \"on\" ]; };") ", " //
        RULE(20, "header = { name = \"user-agent\"; values = [ \"*Mobile*\" ]; };");
    RUN(rules, cases);
}

static void test_query_key_value_no_key_wildcard_pairs(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {GET("/?version=v1"), NULL, 10},
        {GET("/?version=V1"), NULL, 10}, /* values case-insensitive */
        {GET("/?a=1&version=v1&b=2"), NULL, 10},
        {GET("/?version=v2"), NULL, 0},
        {GET("/?xversion=v1"), NULL, 0},
        {GET("/?version=v1x"), NULL, 0},
        {GET("/?x=the-beta-one"), NULL, 20}, /* no key: any key, wildcard value */
        {GET("/?a=1&&b=BETA"), NULL, 20},
        {GET("/?debug"), NULL, 30}, /* a key without '=' has the empty value */
        {GET("/?debug="), NULL, 30},
        {GET("/?debug=1&version=v1"), NULL, 10}, /* lowest priority wins */
        {GET("/"), NULL, 0},
        {GET("/?"), NULL, 0}, /* empty query: no pairs */
        {GET("/?&&"), NULL, 0},
        {GET("/beta?x=1"), NULL, 0}, /* the path is not the query */
    };
    static const char rules[] =
        RULE(10, "query = { key = \"version\"; values = [ \"v1\" ]; };") ", " //
        RULE(20, "query = { values = [ \"*beta*\" ]; };") ", "                //
        RULE(30, "query = { key = \"debug\"; values = [ \"*\" ]; };");
    RUN(rules, cases);

    /* "*" without a key: any pair at all, but an empty pair is none */
    static const struct mcase any_pair[] = {
        {GET("/?x"), NULL, 10}, {GET("/?&x=1"), NULL, 10}, {GET("/?"), NULL, 0},
        {GET("/?&&"), NULL, 0}, {GET("/"), NULL, 0},
    };
    RUN(RULE(10, "query = { values = [ \"*\" ]; };"), any_pair);
}

static void test_source_ip_v4_v6_mapped_prefixes_null_peer(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {GET("/"), "192.0.2.55", 10},
        {GET("/"), "192.0.2.0", 10},
        {GET("/"), "192.0.3.1", 40},      /* only 0.0.0.0/0 */
        {GET("/"), "198.51.100.1", 15},   /* ".77/25": host bits ignored */
        {GET("/"), "198.51.100.200", 40}, /* outside the /25 */
        {GET("/"), "203.0.113.7", 30},    /* /32 */
        {GET("/"), "203.0.113.8", 40},
        {GET("/"), "2001:db8::1", 20},
        {GET("/"), "2001:db8:ffff::1", 20},
        {GET("/"), "2001:db9::1", 50},      /* only ::/0 */
        {GET("/"), "::ffff:192.0.2.9", 10}, /* v4-mapped peer, v4 CIDR */
        {GET("/"), "::ffff:203.0.113.7", 30},
        {GET("/"), "::ffff:10.0.0.1", 40},
        {GET("/"), NULL, 0}, /* no peer: source_ip never matches */
    };
    static const char rules[] = RULE(10, "source_ip = [ \"192.0.2.0/24\" ];") ", " //
        RULE(15, "source_ip = [ \"198.51.100.77/25\" ];") ", "                     //
        RULE(20, "source_ip = [ \"2001:db8::/32\" ];") ", "                        //
        RULE(30, "source_ip = [ \"203.0.113.7/32\" ];") ", "                       //
        RULE(40, "source_ip = [ \"0.0.0.0/0\" ];") ", "                            //
        RULE(50, "source_ip = [ \"::/0\" ];");
    RUN(rules, cases);
}

/* A request with these four parts; every one is a condition of rule 10. */
#define AND_REQ(method, target, host, x_off)                                                       \
    REQ(method, target, "Host: " host "\r\nX-Off: " x_off "\r\n")

static void test_conditions_and_values_or(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {AND_REQ("GET", "/x?beta=1", "a.test", "0"), "10.0.0.1", 10},
        {AND_REQ("GET", "/y?a&beta=2", "B.test:81", "2"), "10.0.255.1", 10}, /* other values */
        {AND_REQ("GET", "/z?beta=1", "a.test", "0"), "10.0.0.1", 0},         /* path fails */
        {AND_REQ("GET", "/x?beta=1", "c.test", "0"), "10.0.0.1", 0},         /* host fails */
        {AND_REQ("POST", "/x?beta=1", "a.test", "0"), "10.0.0.1", 0},        /* method fails */
        {AND_REQ("GET", "/x?beta=1", "a.test", "1"), "10.0.0.1", 0},         /* header fails */
        {REQ("GET", "/x?beta=1", "Host: a.test\r\n"), "10.0.0.1", 0},        /* header absent */
        {AND_REQ("GET", "/x?beta=0", "a.test", "0"), "10.0.0.1", 0},         /* query fails */
        {AND_REQ("GET", "/x", "a.test", "0"), "10.0.0.1", 0},                /* query absent */
        {AND_REQ("GET", "/x?beta=1", "a.test", "0"), "10.1.0.1", 0},         /* source_ip fails */
        {AND_REQ("GET", "/x?beta=1", "a.test", "0"), NULL, 0},               /* no peer */
    };
    static const char rules[] =
        RULE(10, "host = [ \"a.test\", \"b.test\" ];"
                 " path = [ \"/x\", \"/y\" ]; method = [ \"GET\" ];"
                 " source_ip = [ \"10.0.0.0/16\" ];"
                 " header = { name = \"X-Off\"; values = [ \"0\", \"2\" ]; };"
                 " query = { key = \"beta\"; values = [ \"1\", \"2\" ]; };");
    RUN(rules, cases);
}

/* A rule requires only the conditions it has. */
static void test_absent_conditions_do_not_constrain(void **state)
{
    (void)state;
    static const struct mcase cases[] = {
        {REQ("DELETE", "/anything?z", "Host: whatever\r\nX-Any: 1\r\n"), "2001:db8::9", 10},
        {"GET / HTTP/1.0\r\n\r\n", NULL, 10},
    };
    RUN(RULE(10, "path = [ \"*\" ];"), cases);
}

static void test_lowest_priority_wins_whatever_the_file_order(void **state)
{
    (void)state;
    struct fx f;
    fx_load(&f,
            RULE(30, "path = [ \"/*\" ];") ", " RULE(5, "path = [ \"/a*\" ];") ", " RULE(
                20, "path = [ \"/ab*\" ];"),
            DEF_404);
    assert_int_equal(wh_rules_count(f.rs), 3);
    assert_int_equal(match_prio(&f, GET("/abc"), NULL), 5);
    assert_int_equal(match_prio(&f, GET("/ab"), NULL), 5);
    assert_int_equal(match_prio(&f, GET("/b"), NULL), 30);
    /* ids are positions in priority order */
    struct wh_http_msg m;
    parse(&m, GET("/abc"));
    assert_int_equal(wh_rules_match(f.rs, GET("/abc"), &m, NULL)->id, 0);
    wh_http_msg_free(&m);
    parse(&m, GET("/b"));
    assert_int_equal(wh_rules_match(f.rs, GET("/b"), &m, NULL)->id, 2);
    wh_http_msg_free(&m);
    fx_free(&f);
}

static void test_default_action_when_nothing_matches(void **state)
{
    (void)state;
    struct fx f;
    struct wh_http_msg m;
    fx_load(&f, RULE(10, "path = [ \"/x\" ];"), DEF_404);
    parse(&m, GET("/y"));
    const struct wh_action *a = wh_rules_match(f.rs, GET("/y"), &m, NULL);
    assert_int_equal(a->id, 1); /* n_rules */
    assert_int_equal(a->type, WH_ACTION_FIXED);
    assert_int_equal(a->fixed_status, 404);
    wh_http_msg_free(&m);
    fx_free(&f);

    /* a listener without rules: always the default, id 0 */
    fx_load(&f, NULL, "{ forward = ( { target_group = \"canary\"; } ); }");
    assert_int_equal(wh_rules_count(f.rs), 0);
    parse(&m, GET("/y"));
    a = wh_rules_match(f.rs, GET("/y"), &m, NULL);
    assert_int_equal(a->id, 0);
    assert_int_equal(a->type, WH_ACTION_FORWARD);
    assert_int_equal(a->groups[0].group_index, 2);
    wh_http_msg_free(&m);
    fx_free(&f);
}

/* ---- actions ---- */

static const struct wh_action *action_for(const struct fx *f, const char *head)
{
    struct wh_http_msg m;
    parse(&m, head);
    const struct wh_action *a = wh_rules_match(f->rs, head, &m, NULL);
    wh_http_msg_free(&m);
    return a;
}

static void test_forward_group_indexes_weights_zero_kept(void **state)
{
    (void)state;
    struct fx f;
    fx_load(&f,
            "{ priority = 10; conditions = { path = [ \"/api/*\" ]; };\n"
            "  forward = ( { target_group = \"api\"; weight = 90; },\n"
            "              { target_group = \"canary\"; weight = 10; },\n"
            "              { target_group = \"web\"; weight = 0; } );\n"
            "  stickiness = 3600; }",
            "{ forward = ( { target_group = \"web\"; } ); }");
    const struct wh_action *a = action_for(&f, GET("/api/x"));
    assert_int_equal(a->type, WH_ACTION_FORWARD);
    assert_int_equal(a->id, 0);
    assert_int_equal(a->n_groups, 3);
    assert_string_equal(a->groups[0].name, "api");
    assert_int_equal(a->groups[0].group_index, 1);
    assert_int_equal(a->groups[0].weight, 90);
    assert_string_equal(a->groups[1].name, "canary");
    assert_int_equal(a->groups[1].group_index, 2);
    assert_int_equal(a->groups[1].weight, 10);
    assert_string_equal(a->groups[2].name, "web"); /* weight 0 is kept, never picked */
    assert_int_equal(a->groups[2].group_index, 0);
    assert_int_equal(a->groups[2].weight, 0);
    assert_int_equal(a->total_weight, 100);
    assert_true(a->stickiness == 3600.0);

    a = action_for(&f, GET("/"));
    assert_int_equal(a->id, 1);
    assert_int_equal(a->n_groups, 1);
    assert_int_equal(a->groups[0].group_index, 0);
    assert_int_equal(a->groups[0].weight, 1);
    assert_int_equal(a->total_weight, 1);
    assert_true(a->stickiness == 0.0);
    fx_free(&f);
}

static void test_fixed_response_fields(void **state)
{
    (void)state;
    struct fx f;
    fx_load(&f,
            "{ priority = 1; conditions = { path = [ \"/maintenance\" ]; };\n"
            "  fixed_response = { status = 503; content_type = \"text/html\";"
            " body = \"back soon\\n\"; }; }",
            DEF_404);
    const struct wh_action *a = action_for(&f, GET("/maintenance"));
    assert_int_equal(a->type, WH_ACTION_FIXED);
    assert_int_equal(a->fixed_status, 503);
    assert_string_equal(a->content_type, "text/html");
    assert_string_equal(a->body, "back soon\n");
    assert_int_equal(a->body_len, 10);
    a = action_for(&f, GET("/")); /* the defaults: text/plain, empty body */
    assert_int_equal(a->fixed_status, 404);
    assert_string_equal(a->content_type, "text/plain");
    assert_int_equal(a->body_len, 0);
    fx_free(&f);
}

/* ---- redirects ---- */

#define REDIRECTS                                                                                  \
    "{ priority = 10; conditions = { path = [ \"/old/*\" ]; };\n"                                  \
    "  redirect = { status = 301; location = \"https://#{host}/#{path}?#{query}\"; }; },\n"        \
    "{ priority = 20; conditions = { path = [ \"/p/*\" ]; };\n"                                    \
    "  redirect = { status = 302;"                                                                 \
    " location = \"#{protocol}://#{host}:#{port}/new/#{path}\"; }; },\n"                           \
    "{ priority = 30; conditions = { path = [ \"/r/*\" ]; };\n"                                    \
    "  redirect = { status = 301; location = \"/new/#{path}\"; }; },\n"                            \
    "{ priority = 40; conditions = { path = [ \"/q/*\" ]; };\n"                                    \
    "  redirect = { status = 302; location = \"/q?from=#{path}&#{query}\"; }; }"

/* Location for head through its matched rule, or NULL when it does not fit
 * in outlen. */
static const char *location(const struct fx *f, const char *head, char *out, size_t outlen)
{
    struct wh_http_msg m;
    parse(&m, head);
    const struct wh_action *a = wh_rules_match(f->rs, head, &m, NULL);
    assert_int_equal(a->type, WH_ACTION_REDIRECT);
    int n = wh_redirect_location(a, head, &m, "http", "8080", out, outlen);
    wh_http_msg_free(&m);
    if (n < 0)
        return NULL;
    assert_int_equal((size_t)n, strlen(out));
    return out;
}

static void test_redirect_host_path_query(void **state)
{
    (void)state;
    struct fx f;
    char out[256];
    fx_load(&f, REDIRECTS, DEF_404);
    struct wh_http_msg m;
    parse(&m, GET("/old/a"));
    assert_int_equal(wh_rules_match(f.rs, GET("/old/a"), &m, NULL)->redirect_status, 301);
    wh_http_msg_free(&m);
    /* #{host} without the port, lowercased; #{path} without its '/' */
    assert_string_equal(location(&f, GET_H("/old/a/b?x=1&y=2", "Example.COM:8080"), out, 256),
                        "https://example.com/old/a/b?x=1&y=2");
    assert_string_equal(location(&f, GET_H("/old/a/b", "example.com"), out, 256),
                        "https://example.com/old/a/b"); /* no query: no trailing '?' */
    assert_string_equal(location(&f, GET_H("/old/a/b?", "example.com"), out, 256),
                        "https://example.com/old/a/b");
    assert_string_equal(location(&f, GET_H("/old/%41", "[::1]:8080"), out, 256),
                        "https://[::1]/old/%41");
    assert_string_equal(location(&f, "GET http://h.example:81/old/x?k HTTP/1.0\r\n\r\n", out, 256),
                        "https://h.example/old/x?k");
    fx_free(&f);
}

static void test_redirect_protocol_port_and_relative(void **state)
{
    (void)state;
    struct fx f;
    char out[256];
    fx_load(&f, REDIRECTS, DEF_404);
    assert_string_equal(location(&f, GET_H("/p/x?z=1", "example.com"), out, 256),
                        "http://example.com:8080/new/p/x");
    assert_string_equal(location(&f, GET_H("/r/y?z", "example.com"), out, 256), "/new/r/y");
    /* a '?' not right before #{query} is the user's and stays */
    assert_string_equal(location(&f, GET_H("/q/1?a=b", "h"), out, 256), "/q?from=q/1&a=b");
    assert_string_equal(location(&f, GET_H("/q/1", "h"), out, 256), "/q?from=q/1&");
    fx_free(&f);
}

static void test_redirect_too_small_buffer_fails(void **state)
{
    (void)state;
    struct fx f;
    char out[64];
    const char *head = GET_H("/old/a?x=1", "example.com");
    const char *want = "https://example.com/old/a?x=1";
    fx_load(&f, REDIRECTS, DEF_404);
    assert_null(location(&f, head, out, strlen(want))); /* no room for the NUL */
    assert_string_equal(out, "");
    assert_null(location(&f, head, out, 10));
    assert_null(location(&f, head, out, 0));
    assert_string_equal(location(&f, head, out, strlen(want) + 1), want);

    /* and an action that is not a redirect has no location */
    struct wh_http_msg m;
    parse(&m, GET("/none"));
    const struct wh_action *a = wh_rules_match(f.rs, GET("/none"), &m, NULL);
    assert_int_equal(wh_redirect_location(a, GET("/none"), &m, "http", "80", out, 64), -1);
    wh_http_msg_free(&m);
    fx_free(&f);
}

/* ---- zero allocations and speed ---- */

struct text {
    char *s;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < t->cap - t->len);
    t->len += (size_t)n;
}

/* 100 rules, each with every condition type, actions forward / redirect /
 * fixed in turn. Rule i is matched by the request wide_request(i). */
static void wide_rules(struct text *t)
{
    for (int i = 0; i < 100; i++) {
        text_add(t,
                 "%s{ priority = %d; conditions = {"
                 " host = [ \"h%d.example.com\", \"*.h%d.test\" ];"
                 " path = [ \"/p%d/*\", \"/q%d?\" ]; method = [ \"GET\", \"POST\" ];"
                 " header = { name = \"X-Tenant\"; values = [ \"t%d\", \"t%d-*\" ]; };"
                 " query = { key = \"k\"; values = [ \"v%d*\" ]; };"
                 " source_ip = [ \"10.%d.0.0/16\", \"2001:db8:%d::/48\" ]; };\n",
                 i ? ", " : "", i + 1, i, i, i, i, i, i, i, i, i);
        if (i % 3 == 0)
            text_add(t, " forward = ( { target_group = \"api\"; weight = 3; },"
                        " { target_group = \"web\"; weight = 0; } ); }\n");
        else if (i % 3 == 1)
            text_add(t, " redirect = { status = 302;"
                        " location = \"https://#{host}:#{port}/r/#{path}?#{query}\"; }; }\n");
        else
            text_add(t, " fixed_response = { status = 418; body = \"x\"; }; }\n");
    }
}

struct wide_req {
    const char *head;
    const char *peer;
    unsigned want_id; /* 100 = the default */
};

static const struct wide_req wide_reqs[] = {
    {"GET /p0/x?k=v0 HTTP/1.1\r\nHost: h0.example.com\r\nX-Tenant: t0\r\n\r\n", "10.0.1.1", 0},
    {"POST /q49a?z&k=V49z HTTP/1.1\r\nHost: a.h49.test\r\nx-tenant: T49-blue\r\n"
     "Content-Length: 0\r\n\r\n",
     "::ffff:10.49.3.4", 49},
    {"GET /p99/deep/path?a=1&k=v99&b HTTP/1.1\r\nHost: H99.EXAMPLE.COM:8080\r\n"
     "X-Tenant: other\r\nX-Tenant: t99\r\n\r\n",
     "2001:db8:99::5", 99},
    {"GET /p99/deep/path?a=1&k=v99&b HTTP/1.1\r\nHost: H99.EXAMPLE.COM:8080\r\n"
     "X-Tenant: t99\r\n\r\n",
     NULL, 100},
    {"DELETE /p1/x?k=v1 HTTP/1.1\r\nHost: h1.example.com\r\nX-Tenant: t1\r\n\r\n", "10.1.0.1", 100},
};
#define N_WIDE (sizeof(wide_reqs) / sizeof(wide_reqs[0]))

static void test_match_and_redirect_never_allocate(void **state)
{
    (void)state;
    struct text t = {malloc(1 << 18), 0, 1 << 18};
    struct fx f;
    struct wh_http_msg m[N_WIDE];
    struct sockaddr_storage ss[N_WIDE];
    const struct sockaddr *peers[N_WIDE];
    char out[512];
    assert_non_null(t.s);
    wide_rules(&t);
    fx_load(&f, t.s, DEF_404);
    free(t.s);
    /* rules.c's own calls go through the counter too */
    unsigned long before = allocations;
    struct wh_rule_set *again = wh_rules_compile(f.cfg, f.l, out, sizeof(out));
    assert_non_null(again);
    assert_true(allocations > before);
    wh_rules_free(again);
    for (size_t i = 0; i < N_WIDE; i++) {
        parse(&m[i], wide_reqs[i].head);
        peers[i] = peer_of(&ss[i], wide_reqs[i].peer);
    }

    before = allocations;
    for (int round = 0; round < 1000; round++) {
        for (size_t i = 0; i < N_WIDE; i++) {
            const struct wh_action *a = wh_rules_match(f.rs, wide_reqs[i].head, &m[i], peers[i]);
            if (a->id != wide_reqs[i].want_id)
                fail_msg("request %zu: matched id %u, want %u", i, a->id, wide_reqs[i].want_id);
        }
    }
    if (allocations != before)
        fail_msg("wh_rules_match allocated %lu times", allocations - before);
    const struct wh_action *redirect = wh_rules_match(f.rs, wide_reqs[1].head, &m[1], peers[1]);
    for (int round = 0; round < 1000; round++)
        assert_int_not_equal(
            wh_redirect_location(redirect, wide_reqs[1].head, &m[1], "https", "443", out, 512), -1);
    if (allocations != before)
        fail_msg("wh_redirect_location allocated %lu times", allocations - before);
    assert_string_equal(out, "https://a.h49.test:443/r/q49a?z&k=V49z");

    /* the counter is live: an allocation here would have shown */
    void *volatile p = malloc(16);
    assert_int_equal(allocations, before + 1);
    free(p);
    for (size_t i = 0; i < N_WIDE; i++)
        wh_http_msg_free(&m[i]);
    fx_free(&f);
}

/* 100 rules with host, path and header conditions, as a listener in front
 * of many services might have. */
static void bench_rules(struct text *t)
{
    for (int i = 0; i < 100; i++) {
        const char *extra = "";
        char header[128];
        if (i % 2 == 1) { /* odd rules, so the last one has all three */
            snprintf(header, sizeof(header),
                     " header = { name = \"X-Tenant\"; values = [ \"tenant%d\", \"t%d-*\" ]; };", i,
                     i);
            extra = header;
        }
        text_add(t,
                 "%s{ priority = %d; conditions = { host = [ \"svc%d.example.com\", "
                 "\"*.svc%d.internal\" ]; path = [ \"/api%d/*\" ];%s };"
                 " fixed_response = { status = 200; }; }\n",
                 i ? ", " : "", i + 1, i, i, i, extra);
    }
}

static double bench_ns(const struct fx *f, const char *head, unsigned want_id, long n)
{
    struct wh_http_msg m;
    struct sockaddr_storage ss;
    const struct sockaddr *peer = peer_of(&ss, "192.0.2.10");
    struct timespec t0, t1;
    unsigned long sum = 0;
    parse(&m, head);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++)
        sum += wh_rules_match(f->rs, head, &m, peer)->id;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    wh_http_msg_free(&m);
    assert_int_equal(sum, (unsigned long)want_id * (unsigned long)n);
    return ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n;
}

static void test_benchmark_100_rules(void **state)
{
    (void)state;
    struct text t = {malloc(1 << 16), 0, 1 << 16};
    struct fx f;
    assert_non_null(t.s);
    bench_rules(&t);
    fx_load(&f, t.s, DEF_404);
    free(t.s);
#define BENCH_HEADERS                                                                              \
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n"                               \
    "Accept-Encoding: gzip, deflate, br\r\nCookie: session=abcdef0123456789\r\n"                   \
    "X-Request-Id: 6f1c2a\r\n"
    const char *last =
        "GET /api99/items/42?page=2 HTTP/1.1\r\nHost: svc99.example.com\r\n" BENCH_HEADERS
        "X-Tenant: tenant99\r\n\r\n";
    const char *none =
        "GET /api7/items/42?page=2 HTTP/1.1\r\nHost: svc99.example.com\r\n" BENCH_HEADERS
        "X-Tenant: tenant99\r\n\r\n";
    const long n = 200000;
    double ns_last = bench_ns(&f, last, 99, n);
    double ns_none = bench_ns(&f, none, 100, n);
    printf("rules: %.0f ns per match over 100 rules (the last rule matches)\n", ns_last);
    printf("rules: %.0f ns per match over 100 rules (none matches)\n", ns_none);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_host_strips_port_keeps_v6_brackets),
        cmocka_unit_test(test_request_path_query_forms),
        cmocka_unit_test(test_host_exact_case_port_wildcards),
        cmocka_unit_test(test_host_star_needs_a_host),
        cmocka_unit_test(test_path_exact_prefix_middle_case_query),
        cmocka_unit_test(test_method_exact_case_sensitive),
        cmocka_unit_test(test_header_name_values_wildcards_repeated_lines),
        cmocka_unit_test(test_query_key_value_no_key_wildcard_pairs),
        cmocka_unit_test(test_source_ip_v4_v6_mapped_prefixes_null_peer),
        cmocka_unit_test(test_conditions_and_values_or),
        cmocka_unit_test(test_absent_conditions_do_not_constrain),
        cmocka_unit_test(test_lowest_priority_wins_whatever_the_file_order),
        cmocka_unit_test(test_default_action_when_nothing_matches),
        cmocka_unit_test(test_forward_group_indexes_weights_zero_kept),
        cmocka_unit_test(test_fixed_response_fields),
        cmocka_unit_test(test_redirect_host_path_query),
        cmocka_unit_test(test_redirect_protocol_port_and_relative),
        cmocka_unit_test(test_redirect_too_small_buffer_fails),
        cmocka_unit_test(test_match_and_redirect_never_allocate),
        cmocka_unit_test(test_benchmark_100_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the cluster query language (src/core/query.c): every
 * operator, precedence, quoting, errors with their columns, and the limits
 * that keep hostile text harmless. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wharf/query.h"

/* A host: NULL-ended name, value pairs. */
static const char *host_a[] = {"az",         "us-east-1a", "instance_type", "m5.large",
                               "instanceId", "i-0abc",     "ecs.os-type",   "linux",
                               "empty",      "",           "quote",         "it's",
                               NULL};
static const char *host_b[] = {"az",     "us-east-1b", "instance_type", "t3.micro", "instanceId",
                               "i-0def", NULL};

static const char *lookup(void *arg, const char *name)
{
    const char **kv = arg;
    for (; kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

/* Parses text (which must parse) and matches it against host. */
static int match(const char *text, const char **host)
{
    char err[256];
    struct wh_query *q = wh_query_parse(text, err, sizeof(err));
    if (!q)
        fail_msg("'%s' did not parse: %s", text, err);
    int r = wh_query_match(q, lookup, (void *)host);
    assert_string_equal(wh_query_text(q), text);
    wh_query_free(q);
    return r;
}

/* Parses text, which must fail with exactly message. */
static void refused(const char *text, const char *message)
{
    char err[256];
    struct wh_query *q = wh_query_parse(text, err, sizeof(err));
    if (q) {
        wh_query_free(q);
        fail_msg("'%s' parsed", text);
    }
    assert_string_equal(err, message);
}

static void test_equality(void **state)
{
    assert_true(match("attribute:az == us-east-1a", host_a));
    assert_false(match("attribute:az == us-east-1a", host_b));
    assert_true(match("attribute:az equals us-east-1a", host_a));
    assert_true(match("attribute:az EQUALS us-east-1a", host_a));
    assert_true(match("attribute:az != us-east-1a", host_b));
    assert_true(match("attribute:az not_equals us-east-1a", host_b));
    assert_false(match("attribute:az != us-east-1a", host_a));
    assert_true(match("attribute:az==us-east-1a", host_a));    /* no spaces needed */
    assert_false(match("attribute:az == US-EAST-1A", host_a)); /* values are case-sensitive */
    /* A missing attribute equals nothing; its negation holds. */
    assert_false(match("attribute:gpu == yes", host_a));
    assert_true(match("attribute:gpu != yes", host_a));
}

static void test_lists(void **state)
{
    assert_true(match("attribute:az in [us-east-1a, us-east-1c]", host_a));
    assert_false(match("attribute:az in [us-east-1a, us-east-1c]", host_b));
    assert_true(match("attribute:az in [us-east-1b]", host_b));
    assert_true(match("attribute:az in['us-east-1b','x']", host_b));
    assert_true(match("attribute:az not_in [us-east-1a]", host_b));
    assert_true(match("attribute:az !in [us-east-1a]", host_b));
    assert_false(match("attribute:az not_in [us-east-1a]", host_a));
    assert_false(match("attribute:gpu in [yes, no]", host_a));
    assert_true(match("attribute:gpu not_in [yes, no]", host_a));
}

static void test_globs(void **state)
{
    assert_true(match("attribute:instance_type =~ m5.*", host_a));
    assert_false(match("attribute:instance_type =~ m5.*", host_b));
    assert_true(match("attribute:instance_type matches '*.micro'", host_b));
    assert_true(match("attribute:instance_type =~ ?3.micr?", host_b));
    assert_false(match("attribute:instance_type =~ ?3.micr", host_b)); /* the whole value */
    assert_true(match("attribute:instance_type =~ *", host_b));
    assert_true(match("attribute:instance_type =~ m*a*e", host_a));
    assert_true(match("attribute:instance_type =~ '**large'", host_a));
    assert_true(match("attribute:az !~ *-1a", host_b));
    assert_true(match("attribute:az not_matches *-1a", host_b));
    assert_false(match("attribute:az !~ *-1a", host_a));
    assert_false(match("attribute:gpu =~ *", host_a));
    assert_true(match("attribute:gpu !~ *", host_a));
    assert_true(match("attribute:empty =~ *", host_a));
    assert_false(match("attribute:empty =~ ?", host_a));
}

static void test_exists(void **state)
{
    assert_true(match("attribute:ecs.os-type exists", host_a));
    assert_false(match("attribute:ecs.os-type exists", host_b));
    assert_true(match("attribute:ecs.os-type !exists", host_b));
    assert_true(match("attribute:ecs.os-type not_exists", host_b));
    assert_false(match("attribute:ecs.os-type not_exists", host_a));
    assert_true(match("attribute:empty exists", host_a));
}

static void test_instance_id(void **state)
{
    assert_true(match("ec2InstanceId == i-0abc", host_a));
    assert_true(match("ec2InstanceId in [i-0abc, i-0def]", host_b));
    assert_true(match("attribute:instanceId == i-0def", host_b));
    assert_false(match("ec2InstanceId =~ 'i-0a*'", host_b));
}

static void test_quoting(void **state)
{
    assert_true(match("attribute:az == 'us-east-1a'", host_a));
    assert_true(match("attribute:empty == ''", host_a));
    assert_true(match("attribute:quote == 'it\\'s'", host_a));
    assert_true(match("attribute:az in ['a b', 'us-east-1a']", host_a));
    /* Delimiters lose their meaning inside quotes. */
    assert_false(match("attribute:az == 'us-east-1a or attribute:az exists'", host_b));
    assert_true(match("attribute:az != 'x) or (y'", host_a));
}

static void test_precedence(void **state)
{
    /* and binds tighter than or: true or (false and false). */
    assert_true(
        match("attribute:az == us-east-1a or attribute:az == x and attribute:az == y", host_a));
    /* (false or true) and false */
    assert_false(
        match("(attribute:az == x or attribute:az == us-east-1a) and attribute:az == y", host_a));
    assert_true(
        match("attribute:az == x || attribute:az == us-east-1a && attribute:az exists", host_a));
    /* (false and false) or true */
    assert_true(
        match("attribute:az == x and attribute:az == y or attribute:az == us-east-1a", host_a));
    /* not binds tightest: (not true) or true. */
    assert_true(match("not attribute:az exists or attribute:az == us-east-1a", host_a));
    assert_true(match("not (attribute:az == x or attribute:az == y)", host_a));
    assert_true(match("!(attribute:az == x) and !attribute:gpu exists", host_a));
    assert_true(match("NOT attribute:gpu exists AND attribute:az == us-east-1a", host_a));
    assert_true(match("((((attribute:az == us-east-1a))))", host_a));
    assert_true(match("attribute:a == 1 or attribute:b == 2 or attribute:c == 3 or "
                      "attribute:instance_type == t3.micro",
                      host_b));
    assert_false(match("attribute:az exists and attribute:instance_type exists and "
                       "attribute:ecs.os-type exists",
                       host_b));
}

static void test_errors(void **state)
{
    refused("", "column 1: empty expression");
    refused("   ", "column 1: empty expression");
    refused("az == x", "column 1: expected attribute:NAME, ec2InstanceId, not or '('");
    refused("attribute: == x", "column 11: an attribute name is 1 to 128 of A-Z a-z 0-9 . _ / -");
    refused("attribute:az", "column 13: expected an operator (==, !=, in, not_in, =~, !~, "
                            "exists, !exists) after the subject");
    refused("attribute:az = x", "column 14: expected an operator (==, !=, in, not_in, =~, !~, "
                                "exists, !exists) after the subject");
    refused("attribute:az inx [a]", "column 14: expected an operator (==, !=, in, not_in, =~, "
                                    "!~, exists, !exists) after the subject");
    refused("attribute:az ==", "column 16: expected a value");
    refused("attribute:az == 'abc", "column 17: unterminated quoted value (a ' is missing)");
    refused("attribute:az in a", "column 17: expected '[' to start the list of values");
    refused("attribute:az in [a b]", "column 20: expected ',' or ']' in the list of values");
    refused("attribute:az in [a,", "column 20: expected a value");
    refused("attribute:az in []", "column 18: expected a value");
    refused("attribute:az exists x", "column 21: expected and, or, or the end of the expression");
    refused("attribute:az == a b", "column 19: expected and, or, or the end of the expression");
    refused("attribute:az == a and", "column 22: expression ends too early");
    refused("attribute:az == a or or", "column 22: expected attribute:NAME, ec2InstanceId, not "
                                       "or '('");
    refused("(attribute:az == a", "column 19: expected ')' to close the '(' at column 1");
    refused("attribute:az == a)", "column 18: expected and, or, or the end of the expression");
    refused("x(attribute:az == a)", "column 1: expected attribute:NAME, ec2InstanceId, not or "
                                    "'('");
}

static void test_error_buffer(void **state)
{
    /* A short buffer is cut, not overrun; no buffer at all is fine. */
    char err[8];
    assert_null(wh_query_parse("bad", err, sizeof(err)));
    assert_string_equal(err, "column ");
    assert_null(wh_query_parse("bad", NULL, 0));
    wh_query_free(NULL);
}

static void test_depth_limit(void **state)
{
    char text[512];
    /* WH_QUERY_MAX_DEPTH parentheses parse; one more is refused. */
    for (int depth = WH_QUERY_MAX_DEPTH; depth <= WH_QUERY_MAX_DEPTH + 1; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++)
            text[n++] = '(';
        n += (size_t)sprintf(text + n, "attribute:az exists");
        for (int i = 0; i < depth; i++)
            text[n++] = ')';
        text[n] = '\0';
        char err[256];
        struct wh_query *q = wh_query_parse(text, err, sizeof(err));
        if (depth == WH_QUERY_MAX_DEPTH) {
            assert_non_null(q);
            assert_true(wh_query_match(q, lookup, (void *)host_a));
        } else {
            assert_null(q);
            assert_string_equal(err, "column 33: nested deeper than 32 parentheses or nots");
        }
        wh_query_free(q);
    }
    /* nots count as nesting too. */
    size_t n = 0;
    for (int i = 0; i <= WH_QUERY_MAX_DEPTH; i++)
        n += (size_t)sprintf(text + n, "not ");
    sprintf(text + n, "attribute:az exists");
    refused(text, "column 129: nested deeper than 32 parentheses or nots");
}

static void test_length_limit(void **state)
{
    /* A long flat chain is fine up to the limit: and/or chains don't nest. */
    size_t cap = WH_QUERY_MAX_LEN + 64;
    char *text = malloc(cap + 1);
    size_t n = (size_t)sprintf(text, "attribute:az == x");
    while (n + strlen(" or attribute:az == x") <= WH_QUERY_MAX_LEN)
        n += (size_t)sprintf(text + n, " or attribute:az == x");
    assert_false(match(text, host_a));
    n += (size_t)sprintf(text + n, " or attribute:az == us-east-1a");
    char err[256];
    assert_null(wh_query_parse(text, err, sizeof(err)));
    assert_string_equal(err, "column 2001: the expression is longer than 2000 characters");
    /* Deep-looking garbage stops at the first error, without recursion. */
    memset(text, '(', cap);
    text[cap] = '\0';
    assert_null(wh_query_parse(text, err, sizeof(err)));
    assert_string_equal(err, "column 2001: the expression is longer than 2000 characters");
    memset(text, '(', WH_QUERY_MAX_LEN);
    text[WH_QUERY_MAX_LEN] = '\0';
    assert_null(wh_query_parse(text, err, sizeof(err)));
    assert_string_equal(err, "column 33: nested deeper than 32 parentheses or nots");
    free(text);
}

static void test_glob_worst_case(void **state)
{
    /* Many stars against a long non-matching value end quickly. */
    static const char *host[] = {"v", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                 NULL};
    assert_false(match("attribute:v =~ '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b'", host));
    assert_true(match("attribute:v =~ '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*'", host));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equality),     cmocka_unit_test(test_lists),
        cmocka_unit_test(test_globs),        cmocka_unit_test(test_exists),
        cmocka_unit_test(test_instance_id),  cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_precedence),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_error_buffer), cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_length_limit), cmocka_unit_test(test_glob_worst_case),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

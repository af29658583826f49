/* The cluster query language of Amazon ECS, for `memberOf` placement
 * constraints (core: pure, no I/O, no allocation while matching).
 *
 *   attribute:az == us-east-1a
 *   attribute:ecs.instance-type =~ 'm5.*' and not (ec2InstanceId in [i-1, i-2])
 *
 * What is accepted (ECS's syntax, minus its numeric and date subjects):
 *   subject   attribute:NAME   NAME of [A-Za-z0-9._/-], looked up as NAME
 *             ec2InstanceId    looked up as WH_QUERY_INSTANCE_ID
 *   operator  == equals        != not_equals
 *             in [v, ...]      not_in !in [v, ...]
 *             =~ matches       !~ not_matches   (glob: * any run, ? one char,
 *                                                whole value, case-sensitive)
 *             exists           !exists not_exists  (take no value)
 *   values    bare (up to whitespace or one of , [ ] ( ) ' & |) or in single
 *             quotes, where \' and \\ stand for ' and \
 *   compound  and &&, or ||, not !, parentheses; not binds tightest, then
 *             and, then or. Words (operators, and/or/not) are case-insensitive.
 * A missing attribute is unequal to every value: == , in and =~ are false,
 * their negations true, exists false. Limits keep hostile text harmless:
 * WH_QUERY_MAX_LEN characters and WH_QUERY_MAX_DEPTH nested parentheses or
 * nots.
 */
#ifndef WHARF_QUERY_H
#define WHARF_QUERY_H

#include <stddef.h>

#define WH_QUERY_MAX_LEN 2000 /* ECS's limit on an expression */
#define WH_QUERY_MAX_DEPTH 32
#define WH_QUERY_INSTANCE_ID "instanceId" /* the name ec2InstanceId is looked up by */

struct wh_query;

/* Returns the value of attribute `name` for the object matched, or NULL
 * when it has none. The string is borrowed until the call returns. */
typedef const char *(*wh_query_lookup_fn)(void *arg, const char *name);

/* Parses text. Returns a new query (free with wh_query_free), or NULL with
 * "column N: what is wrong" in err (N counts bytes from 1), which callers
 * prefix with where the text came from. */
struct wh_query *wh_query_parse(const char *text, char *err, size_t errlen);

/* 1 when the object whose attributes lookup gives matches q, else 0. */
int wh_query_match(const struct wh_query *q, wh_query_lookup_fn lookup, void *arg);

/* The text q was parsed from (borrowed from q). */
const char *wh_query_text(const struct wh_query *q);

/* NULL is fine. */
void wh_query_free(struct wh_query *q);

#endif

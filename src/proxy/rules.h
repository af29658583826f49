/* Listener rules compiled for matching (ALB's listener rules).
 *
 * Pure: no sockets, no events, no threads. A rule set is compiled once per
 * loaded configuration on the control thread and then read concurrently by
 * every worker (it is immutable after wh_rules_compile returns).
 * wh_rules_match and wh_redirect_location never allocate: every pattern is
 * precompiled at load.
 *
 * Matching (as ALB):
 *  - Rules are tried by priority, lowest first; the first whose conditions
 *    all match wins, else the listener's default action.
 *  - A condition matches when any of its values does (up to 5 values).
 *  - host: the Host header (or the authority of an absolute-form target when
 *    there is no Host), port ignored, case-insensitive, wildcards * and ?.
 *  - path: the request target's path as sent (percent-encoding kept),
 *    without the query, case-sensitive, wildcards * and ?. An absolute-form
 *    target ("http://h/p?q") is matched on its path "/p".
 *  - method: exact, case-sensitive.
 *  - header: name case-insensitive; a value matches when any header line of
 *    that name matches one of the values (case-insensitive, wildcards).
 *  - query: key/value pairs of the query string (split on '&' then the
 *    first '='); a pair matches when its key equals the condition key (or the
 *    condition has no key) and its value matches one of the values
 *    (case-insensitive, wildcards). Compared as sent (no percent-decoding).
 *  - source_ip: the TCP peer address in one of the CIDRs (IPv4, IPv6; a
 *    v4-mapped IPv6 peer ::ffff:a.b.c.d matches IPv4 CIDRs).
 */
#ifndef WHARF_PROXY_RULES_H
#define WHARF_PROXY_RULES_H

#include <stddef.h>
#include <sys/socket.h>

#include "wharf/config.h"
#include "wharf/http.h"

#define WH_FORWARD_MAX 5

struct wh_forward_group {
    const char *name; /* borrowed from the configuration */
    int group_index;  /* index of the group in cfg->target_groups */
    int weight;       /* 0..999 */
};

struct wh_redirect_tpl; /* a location template split into literals and placeholders */

/* One action, compiled. Strings are borrowed from the configuration the
 * rule set was compiled from (it outlives the rule set). */
struct wh_action {
    enum wh_action_type type;
    unsigned id;  /* index of the rule in priority order; the default action is n_rules */
    int priority; /* the rule's priority; 0 for the default action (as ALB logs it) */
    /* forward */
    struct wh_forward_group groups[WH_FORWARD_MAX];
    size_t n_groups;
    int total_weight;  /* sum of the weights, > 0 */
    double stickiness; /* group-level stickiness duration, seconds; 0 = off */
    /* redirect */
    int redirect_status; /* 301 or 302 */
    const struct wh_redirect_tpl *location;
    /* fixed_response */
    int fixed_status;
    const char *content_type;
    const char *body;
    size_t body_len;
};

struct wh_rule_set;

/* Compile l's rules and default action; group names are resolved to their
 * index in cfg->target_groups. Returns NULL with err set (out of memory, or
 * a CIDR or group the configuration validation should have caught). */
struct wh_rule_set *wh_rules_compile(const struct wh_config *cfg, const struct wh_cfg_listener *l,
                                     char *err, size_t errlen);
void wh_rules_free(struct wh_rule_set *rs);

size_t wh_rules_count(const struct wh_rule_set *rs);

/* The action for a request whose head req was parsed from buf, received from
 * peer (NULL: source_ip conditions never match). Never NULL, never
 * allocates. */
const struct wh_action *wh_rules_match(const struct wh_rule_set *rs, const char *buf,
                                       const struct wh_http_msg *req, const struct sockaddr *peer);

/* The Location for a redirect action, ALB's way:
 *   #{protocol} "http" or "https" (the listener's), #{host} the request's
 *   host without port (lowercase as sent), #{port} the listener port,
 *   #{path} the request path without its leading '/', #{query} the query
 *   string without '?'. When #{query} is empty and the template has "?"
 *   right before it, that '?' is dropped too. A template that starts with
 *   '/' is a relative location and is sent as it comes out.
 * Writes a NUL-terminated string to out. Returns its length, or -1 when it
 * does not fit in outlen. Never allocates. */
int wh_redirect_location(const struct wh_action *a, const char *buf, const struct wh_http_msg *req,
                         const char *protocol, const char *port, char *out, size_t outlen);

/* The host of a request for matching: the Host header (or the authority of
 * an absolute-form target), without the port. Sets *host and *len (a span of
 * buf; len 0 when none). */
void wh_request_host(const char *buf, const struct wh_http_msg *req, const char **host,
                     size_t *len);
/* The path (from '/' to before '?') and the query (after '?', without it)
 * of the request target; absolute-form targets are reduced to their path. */
void wh_request_path_query(const char *buf, const struct wh_http_msg *req, const char **path,
                           size_t *path_len, const char **query, size_t *query_len);

#endif

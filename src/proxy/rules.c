/* Listener rules: compiled once per configuration, matched per request.
 *
 * Everything a match needs is built at compile time into one arena owned by
 * the rule set (patterns lowercased and split at '*', CIDRs parsed, redirect
 * templates split into parts), so wh_rules_match and wh_redirect_location
 * only read: they never allocate and never lock, and any number of workers
 * may use one rule set at once. */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

/* ---- compiled types ---- */

/* A run of pattern bytes between two '*': fixed length, '?' matches any one
 * byte. */
struct rules_seg {
    const char *p;
    size_t len;
};

/* A wildcard pattern "seg0*seg1*...*segN". Case-insensitive patterns are
 * stored lowercased, so a match lowercases only the subject, byte by byte,
 * without copying it.
 *
 * head/head_mask hold the literal bytes among the first 8 of seg0 (a '?'
 * and what lies past seg0 are masked out): one compare with the subject's
 * head word rejects most patterns before any byte loop runs. */
struct rules_pat {
    uint64_t head, head_mask;
    const struct rules_seg *segs;
    size_t n_segs;  /* 1 + the number of '*' */
    size_t min_len; /* the bytes the segments need: shorter subjects fail at once */
    int ci;
};

/* A string a pattern is matched against, with its first 8 bytes (zero
 * padded, lowercased for case-insensitive patterns) as one word, computed
 * once per request for the host and the path. */
struct rules_subj {
    const char *s;
    size_t len;
    uint64_t head;
};

struct rules_str {
    const char *s;
    size_t len;
};

struct rules_header {
    struct rules_str name; /* lowercased */
    const struct rules_pat *values;
    size_t n_values;
};

struct rules_query {
    struct rules_str key; /* lowercased, compared ignoring case as ALB does; s == NULL: any key */
    const struct rules_pat *values;
    size_t n_values;
};

/* Conditions absent from the rule have n == 0 (or a NULL pointer). */
struct rules_rule {
    const struct rules_pat *host, *path;
    size_t n_host, n_path;
    const struct rules_str *method;
    size_t n_method;
    const struct rules_header *header;
    const struct rules_query *query;
    const struct wh_cidr *cidr;
    size_t n_cidr;
};

enum rules_part_kind { PART_LITERAL, PART_PROTOCOL, PART_HOST, PART_PORT, PART_PATH, PART_QUERY };

struct rules_part {
    enum rules_part_kind kind;
    int question; /* PART_QUERY: the template had '?' before it, written only with a query */
    struct rules_str lit;
};

struct wh_redirect_tpl {
    const struct rules_part *parts;
    size_t n_parts;
};

/* Bump allocator: the rule set is freed as a whole, so its pieces need no
 * bookkeeping of their own. */
struct rules_chunk {
    struct rules_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

/* Conditions and actions are kept apart, so the loop over the rules reads
 * only the small condition structs. */
struct wh_rule_set {
    struct rules_rule *rules;  /* priority order */
    struct wh_action *actions; /* actions[i] is rules[i]'s */
    size_t n_rules;
    struct wh_action def;
    struct rules_chunk *chunks;
};

/* What a match reads from the request, extracted once per call. */
struct rules_req {
    const char *buf;
    const struct wh_http_msg *msg;
    struct rules_subj host, path;
    const char *query;
    size_t query_len;
    int has_v4, has_v6;
    uint8_t v4[4], v6[16];
};

/* ---- byte helpers ---- */

static inline unsigned char rules_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* s[0..n) against an already lowercased l[0..n), ignoring the case of s. */
static int rules_eq_lower(const char *s, const char *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rules_lower((unsigned char)s[i]) != (unsigned char)l[i])
            return 0;
    return 1;
}

/* ---- wildcard matching ---- */

/* A plain loop: segments are a few bytes, too short for memcmp's call to
 * pay off. */
static inline int rules_seg_eq(const struct rules_seg *g, const char *s, int ci)
{
    const unsigned char *p = (const unsigned char *)g->p, *u = (const unsigned char *)s;
    for (size_t i = 0; i < g->len; i++) {
        unsigned char c = ci ? rules_lower(u[i]) : u[i];
        if (p[i] != c && p[i] != '?')
            return 0;
    }
    return 1;
}

/* Leftmost place of g in [s, end), or NULL. Leftmost is always right for a
 * middle segment: it leaves the most room to the ones after it. */
static const char *rules_seg_find(const struct rules_seg *g, const char *s, const char *end, int ci)
{
    for (; (size_t)(end - s) >= g->len; s++)
        if (rules_seg_eq(g, s, ci))
            return s;
    return NULL;
}

/* Bytes b[0..8) as one word, in memory order, the same way for patterns
 * and subjects. */
static uint64_t rules_word(const unsigned char b[8])
{
    uint64_t w;
    memcpy(&w, b, sizeof(w));
    return w;
}

static struct rules_subj rules_subj(const char *s, size_t len, int ci)
{
    unsigned char b[8] = {0};
    for (size_t i = 0; i < len && i < 8; i++)
        b[i] = ci ? rules_lower((unsigned char)s[i]) : (unsigned char)s[i];
    return (struct rules_subj){s, len, rules_word(b)};
}

/* The first segment is anchored at the start, the last at the end, and the
 * middle ones are placed leftmost in between: no backtracking, at most
 * O(len * pattern) and usually a few byte compares. Kept out of line so the
 * loop over the rules, where nearly every pattern fails on its head word,
 * stays small. */
__attribute__((noinline)) static int rules_pat_match(const struct rules_pat *pt,
                                                     const struct rules_subj *x)
{
    const struct rules_seg *first = &pt->segs[0], *last = &pt->segs[pt->n_segs - 1];
    const char *s = x->s;
    size_t len = x->len;
    if (pt->n_segs == 1)
        return len == first->len && rules_seg_eq(first, s, pt->ci);
    if (len < pt->min_len || !rules_seg_eq(first, s, pt->ci) ||
        !rules_seg_eq(last, s + len - last->len, pt->ci))
        return 0;
    const char *p = s + first->len, *end = s + len - last->len;
    for (size_t i = 1; i + 1 < pt->n_segs; i++) {
        p = rules_seg_find(&pt->segs[i], p, end, pt->ci);
        if (!p)
            return 0;
        p += pt->segs[i].len;
    }
    return 1;
}

static inline int rules_pats_any(const struct rules_pat *pats, size_t n, const struct rules_subj *x)
{
    for (size_t i = 0; i < n; i++)
        if ((x->head & pats[i].head_mask) == pats[i].head && rules_pat_match(&pats[i], x))
            return 1;
    return 0;
}

/* ---- request extraction ---- */

static int rules_scheme_char(char c, int first)
{
    int alpha = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return alpha || (!first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
}

/* Length of "scheme://" at the start of t (RFC 3986 scheme), 0 when t is
 * not in absolute form (origin-form "/p", asterisk-form "*"). */
static size_t rules_scheme_len(const char *t, size_t n)
{
    size_t i = 0;
    while (i < n && rules_scheme_char(t[i], i == 0))
        i++;
    return i > 0 && n - i >= 3 && memcmp(t + i, "://", 3) == 0 ? i + 3 : 0;
}

/* End of the authority that starts at t[from]: the first '/' or '?'. */
static size_t rules_authority_end(const char *t, size_t n, size_t from)
{
    while (from < n && t[from] != '/' && t[from] != '?')
        from++;
    return from;
}

/* "[v6]:port" keeps "[v6]" (so a redirect's #{host} stays a valid URL
 * host); "name:port" keeps "name". */
static size_t rules_strip_port(const char *h, size_t n)
{
    if (n > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', n);
        return close ? (size_t)(close - h) + 1 : n;
    }
    const char *colon = memchr(h, ':', n);
    return colon ? (size_t)(colon - h) : n;
}

void wh_request_host(const char *buf, const struct wh_http_msg *req, const char **host, size_t *len)
{
    const char *h = buf;
    size_t n = 0;
    if (req->host_index >= 0) {
        struct wh_http_span v = req->headers[req->host_index].value;
        h = buf + v.off;
        n = v.len;
    } else {
        const char *t = buf + req->target.off;
        size_t tn = req->target.len, s = rules_scheme_len(t, tn);
        if (s > 0) {
            size_t e = rules_authority_end(t, tn, s);
            const char *at = NULL;
            for (size_t i = s; i < e; i++) /* userinfo@ is not part of the host */
                at = t[i] == '@' ? t + i : at;
            h = at ? at + 1 : t + s;
            n = (size_t)(t + e - h);
        }
    }
    *host = h;
    *len = rules_strip_port(h, n);
}

void wh_request_path_query(const char *buf, const struct wh_http_msg *req, const char **path,
                           size_t *path_len, const char **query, size_t *query_len)
{
    const char *t = buf + req->target.off;
    size_t n = req->target.len, s = rules_scheme_len(t, n);
    int absolute = s > 0;
    if (absolute) {
        size_t e = rules_authority_end(t, n, s);
        t += e;
        n -= e;
    }
    const char *q = memchr(t, '?', n);
    size_t plen = q ? (size_t)(q - t) : n;
    *path = t;
    *path_len = plen;
    if (absolute && plen == 0) { /* "http://h" and "http://h?q" ask for "/" */
        *path = "/";
        *path_len = 1;
    }
    *query = q ? q + 1 : t + n;
    *query_len = q ? n - plen - 1 : 0;
}

/* The peer as IPv4 and/or IPv6 bytes; a v4-mapped IPv6 peer is both. */
static void rules_req_peer(struct rules_req *r, const struct sockaddr *peer)
{
    r->has_v4 = r->has_v6 = 0;
    if (peer && peer->sa_family == AF_INET) {
        memcpy(r->v4, &((const struct sockaddr_in *)(const void *)peer)->sin_addr, 4);
        r->has_v4 = 1;
    } else if (peer && peer->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr;
        memcpy(r->v6, a, 16);
        r->has_v6 = 1;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(r->v4, r->v6 + 12, 4);
            r->has_v4 = 1;
        }
    }
}

static void rules_req_init(struct rules_req *r, const char *buf, const struct wh_http_msg *req,
                           const struct sockaddr *peer)
{
    const char *host, *path;
    size_t host_len, path_len;
    r->buf = buf;
    r->msg = req;
    wh_request_host(buf, req, &host, &host_len);
    wh_request_path_query(buf, req, &path, &path_len, &r->query, &r->query_len);
    r->host = rules_subj(host, host_len, 1);
    r->path = rules_subj(path, path_len, 0);
    rules_req_peer(r, peer);
}

/* ---- conditions ---- */

static int rules_method_match(const struct rules_rule *ru, const struct rules_req *r)
{
    const char *m = r->buf + r->msg->method_span.off;
    size_t len = r->msg->method_span.len;
    for (size_t i = 0; i < ru->n_method; i++)
        if (ru->method[i].len == len && memcmp(ru->method[i].s, m, len) == 0)
            return 1;
    return 0;
}

/* Any header line of that name, any value. */
static int rules_header_match(const struct rules_header *c, const struct rules_req *r)
{
    for (size_t i = 0; i < r->msg->n_headers; i++) {
        const struct wh_http_header *h = &r->msg->headers[i];
        if (h->name.len != c->name.len ||
            !rules_eq_lower(r->buf + h->name.off, c->name.s, c->name.len))
            continue;
        struct rules_subj v = rules_subj(r->buf + h->value.off, h->value.len, 1);
        if (rules_pats_any(c->values, c->n_values, &v))
            return 1;
    }
    return 0;
}

/* One "key=value" (or "key") pair of the query string. */
static int rules_pair_match(const struct rules_query *c, const char *p, size_t n)
{
    const char *eq = memchr(p, '=', n);
    size_t klen = eq ? (size_t)(eq - p) : n;
    if (c->key.s && (klen != c->key.len || !rules_eq_lower(p, c->key.s, klen)))
        return 0;
    const char *v = eq ? eq + 1 : p + n;
    struct rules_subj x = rules_subj(v, (size_t)(p + n - v), 1);
    return rules_pats_any(c->values, c->n_values, &x);
}

/* Pairs are split on '&'; empty ones ("a=1&&b=2", "?") are not pairs. */
static int rules_query_match(const struct rules_query *c, const struct rules_req *r)
{
    const char *p = r->query, *end = r->query + r->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if (pe > p && rules_pair_match(c, p, (size_t)(pe - p)))
            return 1;
        if (!amp)
            break;
        p = amp + 1;
    }
    return 0;
}

/* The first bits of a and net are equal. */
static int rules_prefix_eq(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, full) != 0)
        return 0;
    return rest == 0 || ((a[full] ^ net[full]) & (0xff00u >> rest) & 0xffu) == 0;
}

static int rules_cidr_match(const struct rules_rule *ru, const struct rules_req *r)
{
    for (size_t i = 0; i < ru->n_cidr; i++) {
        const struct wh_cidr *c = &ru->cidr[i];
        if (c->family == AF_INET ? r->has_v4 && rules_prefix_eq(r->v4, c->addr, c->bits)
                                 : r->has_v6 && rules_prefix_eq(r->v6, c->addr, c->bits))
            return 1;
    }
    return 0;
}

/* All present conditions, cheapest first. A host condition needs a host: a
 * request without one matches none, not even "*". */
static int rules_rule_match(const struct rules_rule *ru, const struct rules_req *r)
{
    if (ru->n_method && !rules_method_match(ru, r))
        return 0;
    if (ru->n_path && !rules_pats_any(ru->path, ru->n_path, &r->path))
        return 0;
    if (ru->n_host && (r->host.len == 0 || !rules_pats_any(ru->host, ru->n_host, &r->host)))
        return 0;
    if (ru->n_cidr && !rules_cidr_match(ru, r))
        return 0;
    if (ru->query && !rules_query_match(ru->query, r))
        return 0;
    return !ru->header || rules_header_match(ru->header, r);
}

const struct wh_action *wh_rules_match(const struct wh_rule_set *rs, const char *buf,
                                       const struct wh_http_msg *req, const struct sockaddr *peer)
{
    struct rules_req r;
    if (rs->n_rules == 0)
        return &rs->def;
    rules_req_init(&r, buf, req, peer);
    for (size_t i = 0; i < rs->n_rules; i++)
        if (rules_rule_match(&rs->rules[i], &r))
            return &rs->actions[i];
    return &rs->def;
}

size_t wh_rules_count(const struct wh_rule_set *rs)
{
    return rs ? rs->n_rules : 0;
}

/* ---- redirect ---- */

struct rules_out {
    char *p;
    size_t len, cap; /* cap excludes the NUL */
    int overflow;
};

static void rules_put(struct rules_out *o, const char *s, size_t n, int lower)
{
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        o->p[o->len + i] = lower ? (char)rules_lower((unsigned char)s[i]) : s[i];
    o->len += n;
}

static void rules_put_str(struct rules_out *o, const char *s)
{
    if (s)
        rules_put(o, s, strlen(s), 0);
}

int wh_redirect_location(const struct wh_action *a, const char *buf, const struct wh_http_msg *req,
                         const char *protocol, const char *port, char *out, size_t outlen)
{
    const char *host, *path, *query;
    size_t host_len, path_len, query_len;
    struct rules_out o = {out, 0, outlen ? outlen - 1 : 0, outlen == 0};
    if (a->type != WH_ACTION_REDIRECT || !a->location)
        return -1;
    wh_request_host(buf, req, &host, &host_len);
    wh_request_path_query(buf, req, &path, &path_len, &query, &query_len);
    size_t skip = path_len > 0 && path[0] == '/'; /* ALB: #{path} has no leading '/' */
    for (size_t i = 0; i < a->location->n_parts; i++) {
        const struct rules_part *pt = &a->location->parts[i];
        switch (pt->kind) {
        case PART_LITERAL:
            rules_put(&o, pt->lit.s, pt->lit.len, 0);
            break;
        case PART_PROTOCOL:
            rules_put_str(&o, protocol);
            break;
        case PART_HOST:
            rules_put(&o, host, host_len, 1);
            break;
        case PART_PORT:
            rules_put_str(&o, port);
            break;
        case PART_PATH:
            rules_put(&o, path + skip, path_len - skip, 0);
            break;
        case PART_QUERY:
            if (pt->question && query_len > 0)
                rules_put(&o, "?", 1, 0);
            rules_put(&o, query, query_len, 0);
            break;
        }
    }
    if (o.overflow || o.len > INT_MAX) {
        if (outlen)
            out[0] = '\0';
        return -1;
    }
    out[o.len] = '\0';
    return (int)o.len;
}

/* ---- compilation ---- */

struct rules_build {
    struct wh_rule_set *rs;
    const struct wh_config *cfg;
    const struct wh_cfg_listener *l;
    char *err;
    size_t errlen;
};

/* "listener NAME (line N): message" into the caller's err. */
__attribute__((format(printf, 3, 4))) static void rules_err(struct rules_build *b, int line,
                                                            const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (b->err && b->errlen)
        snprintf(b->err, b->errlen, "listener %s (line %d): %s", b->l->name, line, msg);
}

/* Zeroed memory from the rule set's arena; NULL (with err set) when out of
 * memory. */
static void *rules_alloc(struct rules_build *b, size_t size)
{
    struct rules_chunk *c = b->rs->chunks;
    size = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    if (!c || c->cap - c->used < size) {
        size_t cap = size > 4096 ? size : 4096;
        c = calloc(1, sizeof(*c) + cap);
        if (!c) {
            rules_err(b, b->l->line, "out of memory compiling the rules");
            return NULL;
        }
        c->cap = cap;
        c->next = b->rs->chunks;
        b->rs->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    return p;
}

/* A copy of s in the arena, lowercased when lower. */
static const char *rules_strdup(struct rules_build *b, const char *s, int lower)
{
    size_t n = strlen(s);
    char *d = rules_alloc(b, n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = lower ? (char)rules_lower((unsigned char)s[i]) : s[i];
    return d;
}

static void rules_pat_head(struct rules_pat *pt)
{
    unsigned char head[8] = {0}, mask[8] = {0};
    for (size_t i = 0; i < pt->segs[0].len && i < 8; i++) {
        if (pt->segs[0].p[i] != '?') {
            head[i] = (unsigned char)pt->segs[0].p[i];
            mask[i] = 0xff;
        }
    }
    pt->head = rules_word(head);
    pt->head_mask = rules_word(mask);
}

static int rules_pat_compile(struct rules_build *b, const char *src, int ci, struct rules_pat *pt)
{
    size_t n_segs = 1, len = strlen(src);
    for (const char *p = src; *p; p++)
        n_segs += *p == '*';
    const char *text = ci ? rules_strdup(b, src, 1) : src;
    struct rules_seg *segs = rules_alloc(b, n_segs * sizeof(*segs));
    if (!text || !segs)
        return -1;
    size_t k = 0;
    for (const char *p = text;; p++) {
        const char *star = strchr(p, '*');
        segs[k++] = (struct rules_seg){p, star ? (size_t)(star - p) : strlen(p)};
        if (!star)
            break;
        p = star;
    }
    *pt = (struct rules_pat){0, 0, segs, n_segs, len - (n_segs - 1), ci};
    rules_pat_head(pt);
    return 0;
}

static const struct rules_pat *rules_pats_compile(struct rules_build *b, char **src, size_t n,
                                                  int ci)
{
    struct rules_pat *pats = rules_alloc(b, (n ? n : 1) * sizeof(*pats));
    for (size_t i = 0; pats && i < n; i++)
        if (rules_pat_compile(b, src[i], ci, &pats[i]) < 0)
            return NULL;
    return pats;
}

static int rules_cidrs_compile(struct rules_build *b, const struct wh_cfg_rule *cr,
                               struct rules_rule *ru)
{
    struct wh_cidr *c = rules_alloc(b, (cr->conditions.n_source_ip + 1) * sizeof(*c));
    if (!c)
        return -1;
    for (size_t i = 0; i < cr->conditions.n_source_ip; i++) {
        if (wh_cidr_parse(cr->conditions.source_ip[i], &c[i]) < 0) {
            rules_err(b, cr->line, "source_ip \"%s\" is not a CIDR block",
                      cr->conditions.source_ip[i]);
            return -1;
        }
    }
    ru->cidr = c;
    ru->n_cidr = cr->conditions.n_source_ip;
    return 0;
}

static int rules_methods_compile(struct rules_build *b, const struct wh_cfg_conditions *cc,
                                 struct rules_rule *ru)
{
    struct rules_str *m = rules_alloc(b, (cc->n_method + 1) * sizeof(*m));
    if (!m)
        return -1;
    for (size_t i = 0; i < cc->n_method; i++)
        m[i] = (struct rules_str){cc->method[i], strlen(cc->method[i])};
    ru->method = m;
    ru->n_method = cc->n_method;
    return 0;
}

static int rules_header_compile(struct rules_build *b, const struct wh_cfg_header_cond *hc,
                                struct rules_rule *ru)
{
    struct rules_header *h = rules_alloc(b, sizeof(*h));
    if (!h || !(h->name.s = rules_strdup(b, hc->name, 1)) ||
        !(h->values = rules_pats_compile(b, hc->values, hc->n_values, 1)))
        return -1;
    h->name.len = strlen(hc->name);
    h->n_values = hc->n_values;
    ru->header = h;
    return 0;
}

static int rules_query_compile(struct rules_build *b, const struct wh_cfg_query_cond *qc,
                               struct rules_rule *ru)
{
    struct rules_query *q = rules_alloc(b, sizeof(*q));
    if (!q || (qc->key && !(q->key.s = rules_strdup(b, qc->key, 1))) ||
        !(q->values = rules_pats_compile(b, qc->values, qc->n_values, 1)))
        return -1;
    q->key.len = qc->key ? strlen(qc->key) : 0;
    q->n_values = qc->n_values;
    ru->query = q;
    return 0;
}

static int rules_conditions_compile(struct rules_build *b, const struct wh_cfg_rule *cr,
                                    struct rules_rule *ru)
{
    const struct wh_cfg_conditions *cc = &cr->conditions;
    ru->host = rules_pats_compile(b, cc->host, cc->n_host, 1);
    ru->path = rules_pats_compile(b, cc->path, cc->n_path, 0);
    if (!ru->host || !ru->path)
        return -1;
    ru->n_host = cc->n_host;
    ru->n_path = cc->n_path;
    if (rules_methods_compile(b, cc, ru) < 0 || rules_cidrs_compile(b, cr, ru) < 0)
        return -1;
    if (cc->header && rules_header_compile(b, cc->header, ru) < 0)
        return -1;
    return cc->query ? rules_query_compile(b, cc->query, ru) : 0;
}

static int rules_group_index(const struct wh_config *cfg, const char *name)
{
    const struct wh_cfg_target_group *g = wh_config_group(cfg, name);
    return g ? (int)(g - cfg->target_groups) : -1;
}

static int rules_forward_compile(struct rules_build *b, const struct wh_cfg_action *ca,
                                 struct wh_action *a)
{
    if (ca->n_forward == 0 || ca->n_forward > WH_FORWARD_MAX) {
        rules_err(b, ca->line, "a forward needs 1 to %d target groups", WH_FORWARD_MAX);
        return -1;
    }
    for (size_t i = 0; i < ca->n_forward; i++) {
        const struct wh_cfg_weighted_group *w = &ca->forward[i];
        int gi = rules_group_index(b->cfg, w->target_group);
        if (gi < 0) {
            rules_err(b, ca->line, "no target group is named \"%s\"", w->target_group);
            return -1;
        }
        a->groups[i] = (struct wh_forward_group){w->target_group, gi, w->weight};
        a->total_weight += w->weight;
    }
    a->n_groups = ca->n_forward;
    a->stickiness = ca->stickiness;
    if (a->total_weight <= 0) {
        rules_err(b, ca->line, "the forward weights add up to 0");
        return -1;
    }
    return 0;
}

static const struct {
    const char *text;
    size_t len;
    enum rules_part_kind kind;
} rules_placeholders[] = {
    {"#{protocol}", 11, PART_PROTOCOL}, {"#{host}", 7, PART_HOST},   {"#{port}", 7, PART_PORT},
    {"#{path}", 7, PART_PATH},          {"#{query}", 8, PART_QUERY},
};

/* The placeholder at p, or PART_LITERAL with *len = 0 when there is none. */
static enum rules_part_kind rules_placeholder(const char *p, size_t *len)
{
    *len = 0;
    for (size_t i = 0; i < sizeof(rules_placeholders) / sizeof(rules_placeholders[0]); i++) {
        if (strncmp(p, rules_placeholders[i].text, rules_placeholders[i].len) == 0) {
            *len = rules_placeholders[i].len;
            return rules_placeholders[i].kind;
        }
    }
    return PART_LITERAL;
}

/* Append the placeholder kind after the literal [lit, p). A '?' right
 * before #{query} moves into the query part, so it can be left out when
 * the query is empty. */
static void rules_tpl_push(struct rules_part *parts, size_t *n, const char *lit, const char *p,
                           enum rules_part_kind kind)
{
    size_t lit_len = (size_t)(p - lit);
    int question = kind == PART_QUERY && lit_len > 0 && p[-1] == '?';
    lit_len -= (size_t)question;
    if (lit_len > 0)
        parts[(*n)++] = (struct rules_part){PART_LITERAL, 0, {lit, lit_len}};
    if (kind != PART_LITERAL)
        parts[(*n)++] = (struct rules_part){kind, question, {NULL, 0}};
}

/* The template "https://#{host}/#{path}?#{query}" becomes literal "https://",
 * host, literal "/", path, query-with-'?'. Literals borrow the
 * configuration's string. */
static const struct wh_redirect_tpl *rules_tpl_compile(struct rules_build *b, const char *loc)
{
    size_t max = 1;
    for (const char *p = loc; (p = strstr(p, "#{")); p += 2)
        max += 2;
    struct wh_redirect_tpl *t = rules_alloc(b, sizeof(*t));
    struct rules_part *parts = rules_alloc(b, max * sizeof(*parts));
    if (!t || !parts)
        return NULL;
    const char *lit = loc, *p = loc;
    size_t n = 0, len;
    while (*p) {
        enum rules_part_kind kind = *p == '#' ? rules_placeholder(p, &len) : PART_LITERAL;
        if (kind == PART_LITERAL) {
            p++;
            continue;
        }
        rules_tpl_push(parts, &n, lit, p, kind);
        p += len;
        lit = p;
    }
    rules_tpl_push(parts, &n, lit, p, PART_LITERAL);
    t->parts = parts;
    t->n_parts = n;
    return t;
}

static int rules_action_compile(struct rules_build *b, const struct wh_cfg_action *ca, unsigned id,
                                struct wh_action *a)
{
    memset(a, 0, sizeof(*a));
    a->type = ca->type;
    a->id = id;
    switch (ca->type) {
    case WH_ACTION_FORWARD:
        return rules_forward_compile(b, ca, a);
    case WH_ACTION_REDIRECT:
        a->redirect_status = ca->redirect_status;
        a->location = rules_tpl_compile(b, ca->location ? ca->location : "");
        return a->location ? 0 : -1;
    case WH_ACTION_FIXED:
        a->fixed_status = ca->fixed_status;
        a->content_type = ca->content_type;
        a->body = ca->body ? ca->body : "";
        a->body_len = strlen(a->body);
        return 0;
    }
    rules_err(b, ca->line, "unknown action type %d", (int)ca->type);
    return -1;
}

struct wh_rule_set *wh_rules_compile(const struct wh_config *cfg, const struct wh_cfg_listener *l,
                                     char *err, size_t errlen)
{
    struct wh_rule_set *rs = calloc(1, sizeof(*rs));
    struct rules_build b = {rs, cfg, l, err, errlen};
    if (!rs) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory compiling the rules of listener %s", l->name);
        return NULL;
    }
    rs->rules = rules_alloc(&b, (l->n_rules + 1) * sizeof(*rs->rules));
    rs->actions = rules_alloc(&b, (l->n_rules + 1) * sizeof(*rs->actions));
    if (!rs->rules || !rs->actions)
        goto fail;
    for (size_t i = 0; i < l->n_rules; i++) {
        struct rules_rule *ru = &rs->rules[i];
        if (rules_conditions_compile(&b, &l->rules[i], ru) < 0 ||
            rules_action_compile(&b, &l->rules[i].action, (unsigned)i, &rs->actions[i]) < 0)
            goto fail;
        rs->actions[i].priority = l->rules[i].priority;
        rs->n_rules++;
    }
    if (rules_action_compile(&b, &l->default_action, (unsigned)l->n_rules, &rs->def) < 0)
        goto fail;
    return rs;
fail:
    wh_rules_free(rs);
    return NULL;
}

void wh_rules_free(struct wh_rule_set *rs)
{
    if (!rs)
        return;
    while (rs->chunks) {
        struct rules_chunk *next = rs->chunks->next;
        free(rs->chunks);
        rs->chunks = next;
    }
    free(rs);
}

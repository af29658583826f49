/* Strict, incremental HTTP/1.1 parser (RFC 9112, RFC 9110). See
 * include/wharf/http.h for the contract.
 *
 * The head is parsed a line at a time: memchr finds the next LF from where
 * the previous call stopped looking (p->scanned), and only then is the
 * completed line validated, with one table lookup per byte. A line is thus
 * validated exactly once, and the result depends only on the bytes, never
 * on how they were split across calls: every decision is taken on complete
 * lines, in order, and the -431 limit looks only at buf[0..max_head_bytes).
 *
 * The body framer is a byte-at-a-time state machine for chunked framing and
 * hands payload out in runs as large as the bytes at hand allow.
 *
 * Deliberate choices where the RFCs leave room:
 *  - Leading empty lines (CRLF) before a request line are skipped (RFC 9112
 *    §2.2 says a server SHOULD ignore at least one); they count toward
 *    max_head_bytes and head_len, and spans stay offsets into the buffer.
 *    Before a status line they are an error: upstreams have no excuse.
 *  - A status line without the SP before an empty reason ("HTTP/1.1 200")
 *    is accepted: common in the wild and it cannot affect framing.
 *  - Repeated Content-Length with identical values ("5, 5" or two headers
 *    of 5) is accepted as one value (RFC 9110 §8.6); anything else is -400.
 *  - Empty list elements in Content-Length and Transfer-Encoding are -400:
 *    these two fields decide framing, so no leniency.
 *  - Transfer-Encoding in an HTTP/1.0 message is -400 (RFC 9112 §6.1 says
 *    its framing is faulty).
 *  - The Host value must consist of URI host/port characters (RFC 9112
 *    §3.2: an invalid Host value is a 400); it may be empty.
 *  - Status codes 100-999 are accepted so odd upstream codes pass through.
 */
#include "wharf/http.h"

#include <stdlib.h>
#include <string.h>

/* ---- character classes ---- */

#define C_TCHAR 0x01 /* token character (RFC 9110 §5.6.2) */
#define C_VCHAR 0x02 /* visible ASCII 0x21-0x7E: request-target */
#define C_FIELD 0x04 /* field-value / reason-phrase: VCHAR, obs-text, SP, HTAB */
#define C_DIGIT 0x08
#define C_HEX 0x10
#define C_HOST 0x20   /* uri-host [":" port], IP literals included */
#define C_WS 0x40     /* SP, HTAB */
#define C_QDTEXT 0x80 /* quoted-string text (RFC 9110 §5.6.4) */

/* One row per 16 byte values, 0x00 first. Generated; control characters
 * (0x00-0x1F but HTAB, and 0x7F) belong to no class, so every scan that
 * stops at an unexpected class byte rejects NUL, CR, LF and friends. */
static const uint8_t cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xc4, 0xa7, 0x06, 0x87, 0xa7, 0xa7, 0xa7, 0xa7, 0xa6, 0xa6, 0xa7, 0xa7, 0xa6, 0xa7, 0xa7, 0x86,
    0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xa6, 0xa6, 0x86, 0xa6, 0x86, 0x86,
    0x86, 0xb7, 0xb7, 0xb7, 0xb7, 0xb7, 0xb7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7,
    0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa6, 0x06, 0xa6, 0x87, 0xa7,
    0x87, 0xb7, 0xb7, 0xb7, 0xb7, 0xb7, 0xb7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7,
    0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0xa7, 0x86, 0x87, 0x86, 0xa7, 0x00,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
    0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84, 0x84,
};

static inline int is_tchar(uint8_t c)
{
    return cls[c] & C_TCHAR;
}
static inline int is_ws(uint8_t c)
{
    return cls[c] & C_WS;
}

static inline uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c;
}

/* Case-insensitive match of n bytes against a lower-case literal. */
static int eq_ci(const uint8_t *s, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != (uint8_t)lit[i])
            return 0;
    return 1;
}

static uint32_t skip_ows(const uint8_t *b, uint32_t i, uint32_t e)
{
    while (i < e && is_ws(b[i]))
        i++;
    return i;
}

static uint32_t skip_token(const uint8_t *b, uint32_t i, uint32_t e)
{
    while (i < e && is_tchar(b[i]))
        i++;
    return i;
}

/* quoted-string starting at b[*i] == '"'; advances *i past the closing
 * quote. Returns 0, or -1 when malformed or unterminated. */
static int skip_quoted(const uint8_t *b, uint32_t *i, uint32_t e)
{
    uint32_t j = *i + 1;
    while (j < e) {
        uint8_t c = b[j];
        if (c == '"') {
            *i = j + 1;
            return 0;
        }
        if (c == '\\') {
            if (j + 1 == e || !(cls[b[j + 1]] & C_FIELD))
                return -1;
            j += 2;
            continue;
        }
        if (!(cls[c] & C_QDTEXT))
            return -1;
        j++;
    }
    return -1;
}

/* ---- messages ---- */

void wh_http_msg_init(struct wh_http_msg *m, enum wh_http_kind kind)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    m->host_index = -1;
}

void wh_http_msg_reset(struct wh_http_msg *m)
{
    struct wh_http_header *headers = m->headers;
    size_t cap = m->cap_headers;
    enum wh_http_kind kind = m->kind;

    wh_http_msg_init(m, kind);
    m->headers = headers;
    m->cap_headers = cap;
}

void wh_http_msg_free(struct wh_http_msg *m)
{
    free(m->headers);
    m->headers = NULL;
    m->n_headers = 0;
    m->cap_headers = 0;
}

int wh_http_span_eq(const char *buf, struct wh_http_span s, const char *lit, size_t lit_len)
{
    const uint8_t *p = (const uint8_t *)buf + s.off;

    if (s.len != lit_len)
        return 0;
    for (size_t i = 0; i < lit_len; i++)
        if (lower(p[i]) != lower((uint8_t)lit[i]))
            return 0;
    return 1;
}

int wh_http_find_header(const struct wh_http_msg *m, const char *buf, const char *name,
                        size_t name_len)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (wh_http_span_eq(buf, m->headers[i].name, name, name_len))
            return (int)i;
    return -1;
}

int wh_http_keep_alive(const struct wh_http_msg *m)
{
    if (m->flags & WH_HTTP_F_CONN_CLOSE)
        return 0;
    if (m->version_minor >= 1)
        return 1;
    return (m->flags & WH_HTTP_F_CONN_KEEPALIVE) != 0;
}

enum wh_http_body_mode wh_http_response_body_mode(const struct wh_http_msg *resp,
                                                  enum wh_http_method req_method)
{
    int st = resp->status;

    if (req_method == WH_METHOD_HEAD || (st >= 100 && st < 200) || st == 204 || st == 304)
        return WH_BODY_NONE;
    if (req_method == WH_METHOD_CONNECT && st >= 200 && st < 300)
        return WH_BODY_NONE;
    return resp->body_mode;
}

/* ---- head parser ---- */

enum { HS_START, HS_HEADERS, HS_DONE, HS_ERROR };

/* p->te bits: every coding named by Transfer-Encoding, across its lines. */
#define TE_SEEN 0x1
#define TE_CHUNKED 0x2 /* "chunked" seen: it must be the last coding */
#define TE_UNKNOWN 0x4 /* a coding other than a bare "chunked": -501 */

void wh_http_parser_init(struct wh_http_parser *p, enum wh_http_kind kind, size_t max_head_bytes)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->max_head_bytes = max_head_bytes;
    p->state = HS_START;
}

void wh_http_parser_reset(struct wh_http_parser *p)
{
    wh_http_parser_init(p, p->kind, p->max_head_bytes);
}

static int fail(struct wh_http_parser *p, int err)
{
    p->state = HS_ERROR;
    p->error = err;
    return err;
}

static enum wh_http_method method_lookup(const uint8_t *s, uint32_t n)
{
    /* Methods are case-sensitive (RFC 9110 §9.1). */
#define M(lit, val)                                                                                \
    if (n == sizeof(lit) - 1 && memcmp(s, lit, n) == 0)                                            \
        return val;
    switch (n) {
    case 3:
        M("GET", WH_METHOD_GET);
        M("PUT", WH_METHOD_PUT);
        break;
    case 4:
        M("HEAD", WH_METHOD_HEAD);
        M("POST", WH_METHOD_POST);
        break;
    case 5:
        M("TRACE", WH_METHOD_TRACE);
        M("PATCH", WH_METHOD_PATCH);
        break;
    case 6:
        M("DELETE", WH_METHOD_DELETE);
        break;
    case 7:
        M("OPTIONS", WH_METHOD_OPTIONS);
        M("CONNECT", WH_METHOD_CONNECT);
        break;
    }
#undef M
    return WH_METHOD_OTHER;
}

/* "HTTP/" DIGIT "." DIGIT in exactly n bytes. A well-formed version other
 * than 1.0 and 1.1 is -505; anything else (lowercase, extra bytes) -400. */
static int parse_version(const uint8_t *v, uint32_t n, int *minor)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !(cls[v[5]] & C_DIGIT) || v[6] != '.' ||
        !(cls[v[7]] & C_DIGIT))
        return -400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return -505;
    *minor = v[7] - '0';
    return 0;
}

/* method SP request-target SP HTTP-version, in b[s..e) (CRLF excluded).
 * A line without the second SP is HTTP/0.9, which we refuse. */
static int request_line(const uint8_t *b, uint32_t s, uint32_t e, struct wh_http_msg *m)
{
    uint32_t i = skip_token(b, s, e);

    if (i == s || i == e || b[i] != ' ')
        return -400;
    m->method_span = (struct wh_http_span){s, i - s};
    m->method = method_lookup(b + s, i - s);

    uint32_t t = ++i;
    while (i < e && (cls[b[i]] & C_VCHAR))
        i++;
    if (i == t || i == e || b[i] != ' ')
        return -400;
    m->target = (struct wh_http_span){t, i - t};
    i++;
    return parse_version(b + i, e - i, &m->version_minor);
}

/* HTTP-version SP 3DIGIT SP reason-phrase, in b[s..e). */
static int status_line(const uint8_t *b, uint32_t s, uint32_t e, struct wh_http_msg *m)
{
    if (e - s < 12 || b[s + 8] != ' ')
        return -400;
    int rc = parse_version(b + s, 8, &m->version_minor);
    if (rc < 0)
        return rc;

    const uint8_t *d = b + s + 9;
    if (!(cls[d[0]] & C_DIGIT) || !(cls[d[1]] & C_DIGIT) || !(cls[d[2]] & C_DIGIT))
        return -400;
    m->status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    if (m->status < 100)
        return -400;

    uint32_t i = s + 12;
    if (i == e) { /* "HTTP/1.1 200" with no SP: tolerated, see the top */
        m->reason = (struct wh_http_span){i, 0};
        return 0;
    }
    if (b[i] != ' ')
        return -400;
    i++;
    m->reason = (struct wh_http_span){i, e - i};
    while (i < e && (cls[b[i]] & C_FIELD))
        i++;
    return i == e ? 0 : -400;
}

/* Content-Length = 1*DIGIT, or a list of identical values. At most 19
 * digits, so the value always fits in uint64_t. */
static int content_length(const uint8_t *b, uint32_t i, uint32_t e, struct wh_http_msg *m)
{
    for (;;) {
        uint64_t v = 0;
        uint32_t d = i;
        while (i < e && (cls[b[i]] & C_DIGIT)) {
            if (i - d == 19)
                return -400;
            v = v * 10 + (uint64_t)(b[i] - '0');
            i++;
        }
        if (i == d)
            return -400;
        if ((m->flags & WH_HTTP_F_CONTENT_LENGTH) && v != m->content_length)
            return -400;
        m->flags |= WH_HTTP_F_CONTENT_LENGTH;
        m->content_length = v;
        i = skip_ows(b, i, e);
        if (i == e)
            return 0;
        if (b[i] != ',')
            return -400;
        i = skip_ows(b, i + 1, e);
    }
}

/* transfer-parameter = token BWS "=" BWS ( token / quoted-string ), after
 * the ';'. Returns the index after it, or 0 when malformed (0 can never be
 * a valid end: a header value never starts the buffer). */
static uint32_t te_param(const uint8_t *b, uint32_t i, uint32_t e)
{
    uint32_t t = i = skip_ows(b, i, e);
    i = skip_token(b, i, e);
    if (i == t)
        return 0;
    i = skip_ows(b, i, e);
    if (i == e || b[i] != '=')
        return 0;
    i = skip_ows(b, i + 1, e);
    if (i < e && b[i] == '"')
        return skip_quoted(b, &i, e) < 0 ? 0 : i;
    t = i;
    i = skip_token(b, i, e);
    return i == t ? 0 : i;
}

/* Transfer-Encoding = 1#transfer-coding. Only a final bare "chunked" is
 * supported; other codings are -501 (reported at the end of the head),
 * syntax errors and codings after chunked are -400 at once. */
static int transfer_encoding(struct wh_http_parser *p, const uint8_t *b, uint32_t i, uint32_t e)
{
    for (;;) {
        uint32_t t = i;
        i = skip_token(b, i, e);
        if (i == t)
            return -400; /* empty value, empty element, or not a token */
        int chunked = i - t == 7 && eq_ci(b + t, "chunked", 7);
        int params = 0;
        i = skip_ows(b, i, e);
        while (i < e && b[i] == ';') {
            i = te_param(b, i + 1, e);
            if (i == 0)
                return -400;
            i = skip_ows(b, i, e);
            params = 1;
        }
        if (p->te & TE_CHUNKED)
            return -400; /* chunked must be applied once, last */
        p->te |= TE_SEEN | (chunked && !params ? TE_CHUNKED : TE_UNKNOWN);
        if (i == e)
            return 0;
        if (b[i] != ',')
            return -400;
        i = skip_ows(b, i + 1, e);
    }
}

static void connection(const uint8_t *b, uint32_t i, uint32_t e, struct wh_http_msg *m)
{
    while (i < e) {
        uint32_t t = skip_ows(b, i, e);
        uint32_t u = t;
        while (u < e && b[u] != ',')
            u++;
        i = u + 1;
        while (u > t && is_ws(b[u - 1]))
            u--;
        if (u - t == 5 && eq_ci(b + t, "close", 5))
            m->flags |= WH_HTTP_F_CONN_CLOSE;
        else if (u - t == 10 && eq_ci(b + t, "keep-alive", 10))
            m->flags |= WH_HTTP_F_CONN_KEEPALIVE;
        else if (u - t == 7 && eq_ci(b + t, "upgrade", 7))
            m->flags |= WH_HTTP_F_CONN_UPGRADE;
    }
}

static int host(const uint8_t *b, uint32_t i, uint32_t e, struct wh_http_msg *m, size_t idx)
{
    if (m->host_index >= 0)
        return -400; /* more than one Host, whatever the version */
    while (i < e && (cls[b[i]] & C_HOST))
        i++;
    if (i != e)
        return -400;
    m->host_index = (int)idx;
    return 0;
}

/* The fields the parser itself interprets, found by length then name. */
static int header_semantics(struct wh_http_parser *p, const uint8_t *b, struct wh_http_msg *m,
                            size_t idx)
{
    const struct wh_http_header *h = &m->headers[idx];
    const uint8_t *n = b + h->name.off;
    uint32_t vs = h->value.off, ve = h->value.off + h->value.len;

    switch (h->name.len) {
    case 4:
        if (p->kind == WH_HTTP_REQUEST && eq_ci(n, "host", 4))
            return host(b, vs, ve, m, idx);
        break;
    case 6:
        if (eq_ci(n, "expect", 6) && ve - vs == 12 && eq_ci(b + vs, "100-continue", 12))
            m->flags |= WH_HTTP_F_EXPECT_CONTINUE;
        break;
    case 7:
        if (eq_ci(n, "upgrade", 7))
            m->flags |= WH_HTTP_F_UPGRADE;
        break;
    case 10:
        if (eq_ci(n, "connection", 10))
            connection(b, vs, ve, m);
        break;
    case 14:
        if (eq_ci(n, "content-length", 14))
            return content_length(b, vs, ve, m);
        break;
    case 17:
        if (eq_ci(n, "transfer-encoding", 17))
            return transfer_encoding(p, b, vs, ve);
        break;
    }
    return 0;
}

static int grow_headers(struct wh_http_msg *m)
{
    size_t cap = m->cap_headers ? m->cap_headers * 2 : 16;
    struct wh_http_header *h = realloc(m->headers, cap * sizeof(*h));

    if (!h)
        return -500;
    m->headers = h;
    m->cap_headers = cap;
    return 0;
}

/* field-name ":" OWS field-value OWS, in b[s..e). */
static int header_line(struct wh_http_parser *p, const uint8_t *b, uint32_t s, uint32_t e,
                       struct wh_http_msg *m)
{
    if (is_ws(b[s]))
        return -400; /* obsolete line folding */
    uint32_t i = skip_token(b, s, e);
    if (i == s || i == e || b[i] != ':')
        return -400; /* empty name, space before ':', bad character, no ':' */
    uint32_t nlen = i - s;

    uint32_t vs = i = skip_ows(b, i + 1, e);
    while (i < e && (cls[b[i]] & C_FIELD))
        i++;
    if (i != e)
        return -400; /* control character in the value */
    while (e > vs && is_ws(b[e - 1]))
        e--;

    if (m->n_headers == WH_HTTP_MAX_HEADERS)
        return -431;
    if (m->n_headers == m->cap_headers && grow_headers(m) < 0)
        return -500;
    struct wh_http_header *h = &m->headers[m->n_headers++];
    h->name = (struct wh_http_span){s, nlen};
    h->value = (struct wh_http_span){vs, e - vs};
    return header_semantics(p, b, m, m->n_headers - 1);
}

/* The blank line: checks that need the whole section, and the framing. */
static int head_end(struct wh_http_parser *p, struct wh_http_msg *m, uint32_t head_len)
{
    int req = p->kind == WH_HTTP_REQUEST;

    if (req && m->version_minor == 1 && m->host_index < 0)
        return -400;
    if (p->te) {
        if (m->flags & WH_HTTP_F_CONTENT_LENGTH)
            return -400; /* both framings: the smuggling classic */
        if (m->version_minor == 0)
            return -400;
        if (p->te & TE_UNKNOWN)
            return -501;
        m->flags |= WH_HTTP_F_CHUNKED;
        m->body_mode = WH_BODY_CHUNKED;
    } else if (m->flags & WH_HTTP_F_CONTENT_LENGTH) {
        m->body_mode = m->content_length ? WH_BODY_LENGTH : WH_BODY_NONE;
    } else {
        m->body_mode = req ? WH_BODY_NONE : WH_BODY_UNTIL_CLOSE;
    }
    m->head_len = head_len;
    return WH_HTTP_DONE;
}

/* One complete line: b[s..lf) where b[lf] is its LF. */
static int head_line(struct wh_http_parser *p, const uint8_t *b, uint32_t s, uint32_t lf,
                     struct wh_http_msg *m)
{
    if (lf == s || b[lf - 1] != '\r')
        return -400; /* bare LF */
    uint32_t e = lf - 1;

    if (p->state == HS_START) {
        if (e == s) /* an empty line before the start line */
            return p->kind == WH_HTTP_REQUEST ? WH_HTTP_AGAIN : -400;
        int rc = p->kind == WH_HTTP_REQUEST ? request_line(b, s, e, m) : status_line(b, s, e, m);
        if (rc < 0)
            return rc;
        p->state = HS_HEADERS;
        return WH_HTTP_AGAIN;
    }
    if (e == s)
        return head_end(p, m, lf + 1);
    return header_line(p, b, s, e, m);
}

/* A start line that cannot become valid however it goes on is refused
 * before its LF arrives, so a TLS handshake or binary junk sent to a plain
 * port gets its 400 at once rather than at max_head_bytes. Only its first
 * bytes are judged (a bounded rescan per call), and only with the -400 that
 * the complete line would get first, so splits cannot change the result. */
static int start_line_junk(const struct wh_http_parser *p, const uint8_t *b, size_t limit)
{
    size_t s = p->line_start, end = limit < s + 16 ? limit : s + 16;

    if (p->kind == WH_HTTP_RESPONSE) {
        for (size_t i = s; i < end && i < s + 5; i++)
            if (b[i] != (uint8_t) "HTTP/"[i - s])
                return 1;
        return 0;
    }
    if (s < end && b[s] == '\r') /* an empty line, or a bare CR */
        return end > s + 1;
    for (size_t i = s; i < end; i++)
        if (!is_tchar(b[i]))
            return b[i] != ' ' || i == s; /* the method ends at one SP */
    return 0;
}

int wh_http_parse_head(struct wh_http_parser *p, const char *buf, size_t len, struct wh_http_msg *m)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t max = p->max_head_bytes ? p->max_head_bytes : WH_HTTP_MAX_HEAD_DEFAULT;

    if (p->state == HS_DONE)
        return WH_HTTP_DONE;
    if (p->state == HS_ERROR)
        return p->error;
    if (p->state == HS_START && p->scanned == 0) {
        wh_http_msg_reset(m);
        m->kind = p->kind;
    }
    if (max > UINT32_MAX) /* spans are 32-bit offsets */
        max = UINT32_MAX;
    size_t limit = len < max ? len : max;

    while (p->scanned < limit) {
        const uint8_t *lf = memchr(b + p->scanned, '\n', limit - p->scanned);
        if (!lf) {
            p->scanned = limit;
            break;
        }
        uint32_t at = (uint32_t)(lf - b);
        int rc = head_line(p, b, p->line_start, at, m);
        p->line_start = at + 1;
        p->scanned = at + 1;
        if (rc < 0)
            return fail(p, rc);
        if (rc == WH_HTTP_DONE) {
            p->state = HS_DONE;
            return WH_HTTP_DONE;
        }
    }
    if (p->state == HS_START && start_line_junk(p, b, limit))
        return fail(p, -400);
    /* All of buf[0..max) is here and holds no complete head. */
    if (len >= max)
        return fail(p, -431);
    return WH_HTTP_AGAIN;
}

/* ---- body framing ---- */

/* Chunked framing states (RFC 9112 §7.1):
 *   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *   last-chunk = 1*"0" [ chunk-ext ] CRLF, then trailer-section CRLF */
enum {
    BS_SIZE0,       /* first hex digit of a chunk-size */
    BS_SIZE,        /* more hex digits, ';', BWS or CR */
    BS_BWS,         /* whitespace after the size: only ';' may follow */
    BS_EXT_NAME0,   /* after ';': BWS, then the first tchar of a name */
    BS_EXT_NAME,    /* in a name */
    BS_EXT_NAME_WS, /* BWS after a name: '=' or ';' */
    BS_EXT_VAL0,    /* after '=': BWS, then token or quoted-string */
    BS_EXT_TOKEN,   /* in a token value */
    BS_EXT_VAL_WS,  /* BWS after a value: only ';' may follow */
    BS_EXT_QUOTED,  /* in a quoted-string value */
    BS_EXT_QPAIR,   /* after a backslash in a quoted-string */
    BS_EXT_QCLOSE,  /* after the closing quote */
    BS_SIZE_LF,     /* the LF ending a chunk-size line */
    BS_DATA,        /* chunk-data: b->remaining bytes left */
    BS_DATA_CR,     /* CRLF after chunk-data */
    BS_DATA_LF,
    BS_TR_LINE,  /* start of a trailer line, or the final CRLF */
    BS_TR_NAME,  /* in a trailer field name */
    BS_TR_VALUE, /* in a trailer field value, up to CR */
    BS_TR_LF,    /* LF ending a trailer line */
    BS_END_LF,   /* LF of the final CRLF */
    BS_DONE,
    BS_ERROR,
};

void wh_http_body_init(struct wh_http_body *b, enum wh_http_body_mode mode, uint64_t content_length,
                       uint64_t max_payload)
{
    memset(b, 0, sizeof(*b));
    b->mode = mode;
    b->max_payload = max_payload;
    b->state = BS_SIZE0;
    if (mode == WH_BODY_LENGTH) {
        b->remaining = content_length;
        b->state = BS_DATA;
        if (max_payload && content_length > max_payload) {
            b->state = BS_ERROR;
            b->error = -413;
        }
    }
}

static inline int hexval(uint8_t c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The end of a chunk-size line: the chunk's data, or the trailer section. */
static int chunk_size_done(struct wh_http_body *b)
{
    if (b->remaining == 0)
        return BS_TR_LINE;
    if (b->max_payload && b->remaining > b->max_payload - b->payload_seen)
        return -413;
    return BS_DATA;
}

/* One byte of a chunk-size line; returns the next state or -400/-413. */
static inline int size_line_byte(struct wh_http_body *b, uint8_t c)
{
    unsigned k = cls[c];

    if (++b->line_bytes > WH_HTTP_MAX_CHUNK_LINE)
        return -400;
    switch (b->state) {
    case BS_SIZE0:
    case BS_SIZE:
        if (k & C_HEX) {
            if (++b->digits > 16)
                return -400;
            b->remaining = b->remaining << 4 | (uint64_t)hexval(c);
            return BS_SIZE;
        }
        if (b->state == BS_SIZE0)
            return -400; /* empty size, "-5", " 5" */
        if (c == '\r')
            return BS_SIZE_LF;
        return c == ';' ? BS_EXT_NAME0 : (k & C_WS) ? BS_BWS : -400;
    case BS_BWS:
        return c == ';' ? BS_EXT_NAME0 : (k & C_WS) ? BS_BWS : -400;
    case BS_EXT_NAME0:
        return (k & C_TCHAR) ? BS_EXT_NAME : (k & C_WS) ? BS_EXT_NAME0 : -400;
    case BS_EXT_NAME:
        if (k & C_TCHAR)
            return BS_EXT_NAME;
        if (c == '\r')
            return BS_SIZE_LF;
        /* fallthrough */
    case BS_EXT_NAME_WS:
        if (c == '=')
            return BS_EXT_VAL0;
        return c == ';' ? BS_EXT_NAME0 : (k & C_WS) ? BS_EXT_NAME_WS : -400;
    case BS_EXT_VAL0:
        if (c == '"')
            return BS_EXT_QUOTED;
        return (k & C_TCHAR) ? BS_EXT_TOKEN : (k & C_WS) ? BS_EXT_VAL0 : -400;
    case BS_EXT_TOKEN:
        if (k & C_TCHAR)
            return BS_EXT_TOKEN;
        /* fallthrough */
    case BS_EXT_QCLOSE:
        if (c == '\r')
            return BS_SIZE_LF;
        /* fallthrough */
    case BS_EXT_VAL_WS:
        return c == ';' ? BS_EXT_NAME0 : (k & C_WS) ? BS_EXT_VAL_WS : -400;
    case BS_EXT_QUOTED:
        if (c == '"')
            return BS_EXT_QCLOSE;
        return c == '\\' ? BS_EXT_QPAIR : (k & C_QDTEXT) ? BS_EXT_QUOTED : -400;
    case BS_EXT_QPAIR:
        return (k & C_FIELD) ? BS_EXT_QUOTED : -400;
    case BS_SIZE_LF:
        return c == '\n' ? chunk_size_done(b) : -400;
    }
    return -400;
}

/* One byte of the trailer section (field lines, then CRLF). */
static inline int trailer_byte(struct wh_http_body *b, uint8_t c)
{
    unsigned k = cls[c];

    if (++b->trailer_bytes > WH_HTTP_MAX_TRAILER_BYTES)
        return -400;
    switch (b->state) {
    case BS_TR_LINE:
        if (c == '\r')
            return BS_END_LF;
        return (k & C_TCHAR) ? BS_TR_NAME : -400; /* obs-fold, empty name, junk */
    case BS_TR_NAME:
        return (k & C_TCHAR) ? BS_TR_NAME : c == ':' ? BS_TR_VALUE : -400;
    case BS_TR_VALUE:
        return (k & C_FIELD) ? BS_TR_VALUE : c == '\r' ? BS_TR_LF : -400;
    case BS_TR_LF:
        return c == '\n' ? BS_TR_LINE : -400;
    case BS_END_LF:
        return c == '\n' ? BS_DONE : -400;
    }
    return -400;
}

static int body_fail(struct wh_http_body *b, int err)
{
    b->state = BS_ERROR;
    b->error = err;
    return err;
}

/* Framing bytes of a chunked body, up to the next chunk-data byte or the
 * end of the message. */
static int chunk_framing(struct wh_http_body *b, const uint8_t *d, size_t len, size_t *consumed)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = d[i];
        int st;

        if (b->state == BS_DATA_CR)
            st = c == '\r' ? BS_DATA_LF : -400;
        else if (b->state == BS_DATA_LF)
            st = c == '\n' ? BS_SIZE0 : -400;
        else if (b->state >= BS_TR_LINE)
            st = trailer_byte(b, c);
        else
            st = size_line_byte(b, c);
        if (st < 0) {
            *consumed = i;
            return body_fail(b, st);
        }
        i++;
        if (st == BS_SIZE0) {
            b->digits = 0;
            b->line_bytes = 0;
            b->remaining = 0;
        }
        b->state = st;
        if (st == BS_DATA)
            break;
        if (st == BS_DONE) {
            *consumed = i;
            return WH_HTTP_DONE;
        }
    }
    *consumed = i;
    return WH_HTTP_AGAIN;
}

/* Hands out up to n payload bytes from the start of data. */
static size_t payload(struct wh_http_body *b, size_t len, uint64_t n, size_t *consumed,
                      size_t *payload_len)
{
    size_t take = n < len ? (size_t)n : len;

    b->payload_seen += take;
    *consumed = take;
    *payload_len = take;
    return take;
}

int wh_http_body_next(struct wh_http_body *b, const char *data, size_t len, size_t *consumed,
                      size_t *payload_off, size_t *payload_len)
{
    *consumed = 0;
    *payload_off = 0;
    *payload_len = 0;
    if (b->state == BS_ERROR)
        return b->error;
    if (b->state == BS_DONE)
        return WH_HTTP_DONE;

    switch (b->mode) {
    case WH_BODY_NONE:
        b->state = BS_DONE;
        return WH_HTTP_DONE;
    case WH_BODY_LENGTH:
        b->remaining -= payload(b, len, b->remaining, consumed, payload_len);
        if (b->remaining == 0) {
            b->state = BS_DONE;
            return WH_HTTP_DONE;
        }
        return WH_HTTP_AGAIN;
    case WH_BODY_UNTIL_CLOSE:
        if (!b->max_payload)
            payload(b, len, len, consumed, payload_len);
        else if (len > 0 && b->payload_seen == b->max_payload)
            return body_fail(b, -413);
        else
            payload(b, len, b->max_payload - b->payload_seen, consumed, payload_len);
        return WH_HTTP_AGAIN;
    case WH_BODY_CHUNKED:
        break;
    }
    if (b->state != BS_DATA)
        return chunk_framing(b, (const uint8_t *)data, len, consumed);
    b->remaining -= payload(b, len, b->remaining, consumed, payload_len);
    if (b->remaining == 0)
        b->state = BS_DATA_CR;
    return WH_HTTP_AGAIN;
}

/* ---- reason phrases ---- */

static const struct {
    int status;
    const char *text;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *wh_http_reason(int status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return "Unknown";
}

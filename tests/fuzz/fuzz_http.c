/* libFuzzer target for the HTTP/1.1 parser (src/http/http.c).
 *
 * Input layout: byte 0 chooses the split points, byte 1 the options
 * (max_head_bytes, the request method a response answers, max_payload),
 * the rest is the message stream. The stream is parsed as requests and as
 * responses, message after message (pipelining), each head and body three
 * ways: in one piece, split in two, and byte by byte. Any difference
 * between the three, or a broken invariant, is abort(). The stream is also
 * run through the chunked framer directly, so chunk parsing is reached
 * without a valid head.
 *
 * Under ASan the bytes past the length given to the parser are poisoned,
 * so a read beyond it is reported even in the incremental runs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/http.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#endif
#endif
#ifndef POISON
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define MAX_MESSAGES 8

struct opts {
    uint8_t split;
    size_t max_head;
    enum wh_http_method req_method;
    uint64_t max_payload;
};

/* ---- heads ---- */

static void span_eq(struct wh_http_span a, struct wh_http_span b)
{
    CHECK(a.off == b.off && a.len == b.len);
}

static void msg_eq(const struct wh_http_msg *a, const struct wh_http_msg *b)
{
    CHECK(a->kind == b->kind && a->version_minor == b->version_minor);
    CHECK(a->method == b->method && a->host_index == b->host_index);
    span_eq(a->method_span, b->method_span);
    span_eq(a->target, b->target);
    CHECK(a->status == b->status);
    span_eq(a->reason, b->reason);
    CHECK(a->n_headers == b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        span_eq(a->headers[i].name, b->headers[i].name);
        span_eq(a->headers[i].value, b->headers[i].value);
    }
    CHECK(a->flags == b->flags && a->body_mode == b->body_mode);
    CHECK(a->content_length == b->content_length && a->head_len == b->head_len);
}

static void span_in(struct wh_http_span s, uint32_t end)
{
    CHECK(s.off <= end && s.len <= end - s.off);
}

/* What a completed head must satisfy whatever the input. */
static void head_invariants(const char *buf, size_t len, const struct wh_http_msg *m)
{
    uint32_t end = m->head_len;

    CHECK(end >= 4 && end <= len && buf[end - 1] == '\n' && buf[end - 2] == '\r');
    CHECK(m->version_minor == 0 || m->version_minor == 1);
    CHECK(m->n_headers <= WH_HTTP_MAX_HEADERS && m->n_headers <= m->cap_headers);
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct wh_http_header *h = &m->headers[i];
        span_in(h->name, end);
        span_in(h->value, end);
        CHECK(h->name.len > 0 && buf[h->name.off + h->name.len] == ':');
        int j = wh_http_find_header(m, buf, buf + h->name.off, h->name.len);
        CHECK(j >= 0 && (size_t)j <= i &&
              wh_http_span_eq(buf, m->headers[j].name, buf + h->name.off, h->name.len));
        for (uint32_t k = 0; k < h->value.len; k++) {
            unsigned char c = (unsigned char)buf[h->value.off + k];
            CHECK(c >= 0x20 || c == '\t');
            CHECK(c != 0x7f);
        }
    }
    CHECK(!((m->flags & WH_HTTP_F_CHUNKED) && (m->flags & WH_HTTP_F_CONTENT_LENGTH)));
    if (m->kind == WH_HTTP_REQUEST) {
        span_in(m->method_span, end);
        span_in(m->target, end);
        CHECK(m->method_span.len > 0 && m->target.len > 0);
        CHECK(m->host_index < (int)m->n_headers);
        CHECK(m->version_minor == 0 || m->host_index >= 0);
        CHECK(m->body_mode != WH_BODY_UNTIL_CLOSE);
    } else {
        CHECK(m->status >= 100 && m->status <= 999);
        span_in(m->reason, end);
        CHECK(m->host_index == -1);
    }
    int persist = !(m->flags & WH_HTTP_F_CONN_CLOSE) &&
                  (m->version_minor == 1 || (m->flags & WH_HTTP_F_CONN_KEEPALIVE));
    CHECK(wh_http_keep_alive(m) == persist);
    if (m->body_mode == WH_BODY_LENGTH)
        CHECK((m->flags & WH_HTTP_F_CONTENT_LENGTH) && m->content_length > 0);
    if (m->body_mode == WH_BODY_CHUNKED)
        CHECK(m->flags & WH_HTTP_F_CHUNKED);
}

static int parse_one_shot(enum wh_http_kind kind, const struct opts *o, const char *s, size_t n,
                          struct wh_http_msg *m)
{
    struct wh_http_parser p;

    wh_http_parser_init(&p, kind, o->max_head);
    int rc = wh_http_parse_head(&p, s, n, m);
    CHECK(wh_http_parse_head(&p, s, n, m) == rc);
    return rc;
}

/* Two calls: buf[0..k) from a buffer of exactly k bytes, then all of it. */
static int parse_split(enum wh_http_kind kind, const struct opts *o, const char *s, size_t n,
                       size_t k, struct wh_http_msg *m)
{
    struct wh_http_parser p;
    char *a = malloc(k ? k : 1);

    CHECK(a != NULL);
    memcpy(a, s, k);
    wh_http_parser_init(&p, kind, o->max_head);
    int rc = wh_http_parse_head(&p, a, k, m);
    free(a);
    if (rc == WH_HTTP_AGAIN)
        rc = wh_http_parse_head(&p, s, n, m);
    return rc;
}

/* One more byte per call, the rest of the buffer poisoned. */
static int parse_bytewise(enum wh_http_kind kind, const struct opts *o, const char *s, size_t n,
                          struct wh_http_msg *m)
{
    struct wh_http_parser p;
    char *c = malloc(n ? n : 1);
    int rc = WH_HTTP_AGAIN;

    CHECK(c != NULL);
    memcpy(c, s, n);
    POISON(c, n);
    wh_http_parser_init(&p, kind, o->max_head);
    for (size_t i = 0; i <= n && rc == WH_HTTP_AGAIN; i++) {
        if (i)
            UNPOISON(c + i - 1, 1);
        rc = wh_http_parse_head(&p, c, i, m);
    }
    UNPOISON(c, n);
    free(c);
    return rc;
}

/* ---- bodies ---- */

struct body_out {
    int rc;
    size_t consumed;
    size_t payload_len;
    uint64_t hash; /* FNV-1a of the payload, in order */
};

static void hash_bytes(uint64_t *h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
}

/* Feeds d[0..len) to b, calling again while bytes remain and AGAIN. */
static int body_feed(struct wh_http_body *b, const char *d, size_t len, struct body_out *out)
{
    size_t off = 0;

    for (;;) {
        size_t c = 7, po = 7, pl = 7;
        int rc = wh_http_body_next(b, d + off, len - off, &c, &po, &pl);
        CHECK(c <= len - off);
        CHECK(pl == 0 || po + pl <= c);
        CHECK(rc == WH_HTTP_AGAIN || rc == WH_HTTP_DONE || rc == -400 || rc == -413);
        hash_bytes(&out->hash, d + off + po, pl);
        out->payload_len += pl;
        off += c;
        out->consumed += c;
        if (rc != WH_HTTP_AGAIN || off == len)
            return rc;
        CHECK(c > 0);
    }
}

/* Frames s[0..n): in one piece when step is 0, else a first piece of
 * `first` bytes and then pieces of `step` bytes. */
static void body_run(enum wh_http_body_mode mode, uint64_t cl, const struct opts *o, const char *s,
                     size_t n, size_t step, size_t first, struct body_out *out)
{
    struct wh_http_body b;
    char *c = malloc(n ? n : 1);
    size_t from = 0;

    CHECK(c != NULL);
    memcpy(c, s, n);
    POISON(c, n);
    memset(out, 0, sizeof(*out));
    out->hash = 0xcbf29ce484222325ULL;
    wh_http_body_init(&b, mode, cl, o->max_payload);
    for (int piece = 0;; piece++) {
        size_t to = step ? (piece == 0 ? first : from + step) : n;
        if (to > n)
            to = n;
        UNPOISON(c + from, to - from);
        out->rc = body_feed(&b, c + from, to - from, out);
        if (out->rc != WH_HTTP_AGAIN || to == n)
            break;
        from = to;
    }
    UNPOISON(c, n);
    free(c);
    if (mode == WH_BODY_UNTIL_CLOSE)
        CHECK(out->rc != WH_HTTP_DONE);
    if (mode == WH_BODY_NONE)
        CHECK(out->rc == WH_HTTP_DONE && out->consumed == 0);
    if (o->max_payload)
        CHECK(out->payload_len <= o->max_payload);
}

static void body_eq(const struct body_out *a, const struct body_out *b)
{
    CHECK(a->rc == b->rc && a->consumed == b->consumed);
    CHECK(a->payload_len == b->payload_len && a->hash == b->hash);
}

/* Returns the framed result; all three ways must agree. */
static struct body_out body_check(enum wh_http_body_mode mode, uint64_t cl, const struct opts *o,
                                  const char *s, size_t n)
{
    struct body_out one, two, bytes;
    size_t k = n ? o->split % (n + 1) : 0;

    body_run(mode, cl, o, s, n, 0, 0, &one);
    body_run(mode, cl, o, s, n, n + 1, k, &two);
    body_run(mode, cl, o, s, n, 1, 1, &bytes);
    body_eq(&one, &two);
    body_eq(&one, &bytes);
    if (mode == WH_BODY_LENGTH && one.rc == WH_HTTP_DONE)
        CHECK(one.payload_len == cl && one.consumed == cl);
    return one;
}

/* ---- messages ---- */

/* Parses the head at s[0..n) three ways; on DONE frames its body. Returns
 * the bytes the whole message took, or 0 when the stream stops here. */
static size_t message(enum wh_http_kind kind, const struct opts *o, const char *s, size_t n,
                      struct wh_http_msg *m)
{
    struct wh_http_msg m2, m3;
    size_t k = o->split % (n + 1);

    wh_http_msg_init(&m2, kind);
    wh_http_msg_init(&m3, kind);
    int rc = parse_one_shot(kind, o, s, n, m);
    CHECK(parse_split(kind, o, s, n, k, &m2) == rc);
    CHECK(parse_bytewise(kind, o, s, n, &m3) == rc);
    CHECK(rc == WH_HTTP_AGAIN || rc == WH_HTTP_DONE || rc == -400 || rc == -431 || rc == -501 ||
          rc == -505);
    if (rc == WH_HTTP_DONE) {
        msg_eq(m, &m2);
        msg_eq(m, &m3);
        head_invariants(s, n, m);
    }
    wh_http_msg_free(&m2);
    wh_http_msg_free(&m3);
    if (rc != WH_HTTP_DONE)
        return 0;

    enum wh_http_body_mode mode =
        kind == WH_HTTP_REQUEST ? m->body_mode : wh_http_response_body_mode(m, o->req_method);
    struct body_out b = body_check(mode, m->content_length, o, s + m->head_len, n - m->head_len);
    if (b.rc != WH_HTTP_DONE)
        return 0;
    return m->head_len + b.consumed;
}

static void stream(enum wh_http_kind kind, const struct opts *o, const char *s, size_t n)
{
    struct wh_http_msg m;
    size_t off = 0;

    wh_http_msg_init(&m, kind);
    for (int i = 0; i < MAX_MESSAGES && off < n; i++) {
        size_t used = message(kind, o, s + off, n - off, &m);
        if (used == 0)
            break;
        off += used;
    }
    wh_http_msg_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t max_heads[4] = {0, 64, 300, 4096};
    static const uint64_t max_payloads[4] = {0, 1, 16, 1000};
    struct opts o;

    if (size < 2)
        return 0;
    o.split = data[0];
    o.max_head = max_heads[data[1] & 3];
    o.req_method = (enum wh_http_method)((data[1] >> 2) % (WH_METHOD_PATCH + 1));
    o.max_payload = max_payloads[data[1] >> 6];

    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    stream(WH_HTTP_REQUEST, &o, s, n);
    stream(WH_HTTP_RESPONSE, &o, s, n);
    body_check(WH_BODY_CHUNKED, 0, &o, s, n);
    return 0;
}

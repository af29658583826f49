/* wharf HTTP/1.1 message parser (RFC 9112): strict and incremental.
 *
 * Used by proxy/ for client requests and upstream responses and by
 * targets/ for health checks. It never allocates per message once a
 * message's header array has grown to fit, and it never touches sockets.
 *
 * Two stages:
 *  1. The head (start line + header section) is parsed from a contiguous
 *     buffer that holds everything received so far. Call
 *     wh_http_parse_head() again with the longer buffer after more bytes
 *     arrive; the parser remembers how far it has validated and does not
 *     rescan. Spans in the result are offsets into that buffer.
 *  2. The body is framed by wh_http_body_next(), fed any number of bytes at
 *     a time, which tells where the message ends and which bytes are payload
 *     (so a caller can pass chunked framing through or strip it).
 */
#ifndef WHARF_HTTP_H
#define WHARF_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* Return codes. Errors are negative HTTP status codes a proxy should answer
 * with: -400 malformed, -413 body too large, -431 header section too large,
 * -501 unknown transfer coding, -505 bad version, -500 out of memory (the
 * header array could not grow). For a response (upstream) any error means
 * 502 to the client. */
enum {
    WH_HTTP_AGAIN = 0, /* need more bytes */
    WH_HTTP_DONE = 1,  /* head complete / body complete */
};

/* Limits. A head with more header lines than WH_HTTP_MAX_HEADERS is -431;
 * max_head_bytes = 0 means WH_HTTP_MAX_HEAD_DEFAULT. In chunked bodies a
 * chunk-size line (with extensions) longer than WH_HTTP_MAX_CHUNK_LINE or a
 * trailer section longer than WH_HTTP_MAX_TRAILER_BYTES is -400. */
#define WH_HTTP_MAX_HEADERS 1000
#define WH_HTTP_MAX_HEAD_DEFAULT (64 * 1024)
#define WH_HTTP_MAX_CHUNK_LINE 4096
#define WH_HTTP_MAX_TRAILER_BYTES (64 * 1024)

enum wh_http_kind { WH_HTTP_REQUEST, WH_HTTP_RESPONSE };

enum wh_http_method {
    WH_METHOD_OTHER = 0,
    WH_METHOD_GET,
    WH_METHOD_HEAD,
    WH_METHOD_POST,
    WH_METHOD_PUT,
    WH_METHOD_DELETE,
    WH_METHOD_OPTIONS,
    WH_METHOD_TRACE,
    WH_METHOD_CONNECT,
    WH_METHOD_PATCH,
};

/* How the body after the head is delimited. */
enum wh_http_body_mode {
    WH_BODY_NONE,        /* no body: zero bytes follow */
    WH_BODY_LENGTH,      /* content_length bytes */
    WH_BODY_CHUNKED,     /* chunked coding with optional trailers */
    WH_BODY_UNTIL_CLOSE, /* response only: until the upstream closes */
};

struct wh_http_span {
    uint32_t off; /* offset into the buffer given to wh_http_parse_head */
    uint32_t len;
};

struct wh_http_header {
    struct wh_http_span name;  /* token, as sent (case preserved) */
    struct wh_http_span value; /* leading/trailing OWS stripped */
};

/* Flags derived from the header section. */
#define WH_HTTP_F_CONN_CLOSE 0x0001      /* Connection: close */
#define WH_HTTP_F_CONN_KEEPALIVE 0x0002  /* Connection: keep-alive */
#define WH_HTTP_F_CONN_UPGRADE 0x0004    /* Connection names upgrade */
#define WH_HTTP_F_UPGRADE 0x0008         /* an Upgrade header is present */
#define WH_HTTP_F_EXPECT_CONTINUE 0x0010 /* Expect: 100-continue */
#define WH_HTTP_F_CHUNKED 0x0020         /* Transfer-Encoding: chunked */
#define WH_HTTP_F_CONTENT_LENGTH 0x0040  /* a valid Content-Length was present */

/* One parsed head. Reusable: wh_http_msg_reset() keeps the header array. */
struct wh_http_msg {
    enum wh_http_kind kind;
    int version_minor; /* 0 or 1 (HTTP/1.0, HTTP/1.1) */

    /* requests */
    enum wh_http_method method;
    struct wh_http_span method_span;
    struct wh_http_span target; /* request-target as sent (path + query) */
    int host_index;             /* index in headers[] of Host, -1 if none */

    /* responses */
    int status;
    struct wh_http_span reason;

    struct wh_http_header *headers; /* owned: grown with realloc, freed by wh_http_msg_free */
    size_t n_headers;
    size_t cap_headers;

    unsigned flags;                   /* WH_HTTP_F_* */
    enum wh_http_body_mode body_mode; /* for responses: call wh_http_response_body_mode */
    uint64_t content_length;          /* when WH_HTTP_F_CONTENT_LENGTH */
    uint32_t head_len;                /* bytes of start line + headers + final CRLF */
};

struct wh_http_parser {
    enum wh_http_kind kind;
    size_t max_head_bytes; /* over this: -431 (requests) / error (responses) */
    /* private: resume state */
    size_t scanned; /* bytes of the buffer already validated */
    int state;
    uint32_t line_start;
    int error;   /* the error returned, repeated on later calls */
    unsigned te; /* Transfer-Encoding codings seen so far */
};

void wh_http_parser_init(struct wh_http_parser *p, enum wh_http_kind kind, size_t max_head_bytes);
/* Prepare for the next message on the same connection. */
void wh_http_parser_reset(struct wh_http_parser *p);

void wh_http_msg_init(struct wh_http_msg *m, enum wh_http_kind kind);
void wh_http_msg_reset(struct wh_http_msg *m);
void wh_http_msg_free(struct wh_http_msg *m); /* frees headers; m itself is the caller's */

/* Parse the head from buf[0..len) (all bytes received for this message so
 * far, starting at the message's first byte). Returns WH_HTTP_DONE with
 * m->head_len set, WH_HTTP_AGAIN, or a negative status (see above). On DONE
 * for a request, m->body_mode is final; -413 is not returned here (the
 * caller compares content_length with its limit). The result never depends
 * on how the bytes were split across calls; once DONE or an error has been
 * returned, later calls return it again until wh_http_parser_reset(). Empty
 * lines before a request line are skipped (they count in head_len and
 * max_head_bytes, and spans stay offsets into buf). m is reset on the first
 * call for each message (its header array is kept). */
int wh_http_parse_head(struct wh_http_parser *p, const char *buf, size_t len,
                       struct wh_http_msg *m);

/* A response's body mode depends on the request it answers: HEAD, 1xx, 204
 * and 304 have no body; 2xx to CONNECT has none. */
enum wh_http_body_mode wh_http_response_body_mode(const struct wh_http_msg *resp,
                                                  enum wh_http_method req_method);

/* Case-insensitive lookup of a header by name; returns its index or -1. */
int wh_http_find_header(const struct wh_http_msg *m, const char *buf, const char *name,
                        size_t name_len);

/* Case-insensitive comparison of a span with a literal. */
int wh_http_span_eq(const char *buf, struct wh_http_span s, const char *lit, size_t lit_len);

/* True when the message asks for the connection to persist after it. */
int wh_http_keep_alive(const struct wh_http_msg *m);

/* ---- body framing ---- */

struct wh_http_body {
    enum wh_http_body_mode mode;
    uint64_t remaining;   /* LENGTH: bytes left; CHUNKED: bytes left in the chunk */
    uint64_t max_payload; /* 0 = unlimited; over it: -413 */
    uint64_t payload_seen;
    /* private */
    int state;
    int digits;
    int error;              /* the error returned, repeated on later calls */
    uint32_t line_bytes;    /* bytes of the current chunk-size line */
    uint32_t trailer_bytes; /* bytes of the trailer section so far */
};

void wh_http_body_init(struct wh_http_body *b, enum wh_http_body_mode mode, uint64_t content_length,
                       uint64_t max_payload);

/* Consume the next piece of body from data[0..len). Sets *consumed to the
 * bytes that belong to this message (never more than len). A piece is either
 * payload (then *payload_off and *payload_len point at it within data) or
 * framing only (*payload_len = 0): chunk-size lines, CRLFs, trailers.
 * Returns WH_HTTP_DONE when the message ends at *consumed, WH_HTTP_AGAIN when
 * more bytes are needed (call again with the rest of data if *consumed <
 * len), or a negative error: -400 invalid chunked framing (e.g. `0x5`, `-5`,
 * more than 16 hex digits, a bad CRLF, a malformed trailer), -413 payload
 * over max_payload. UNTIL_CLOSE never returns DONE: the caller ends it at
 * EOF. NONE returns DONE at once with *consumed = 0. LENGTH returns DONE
 * with the last payload piece. The payload delivered and the result never
 * depend on how the bytes were split; after DONE or an error, later calls
 * return it again. -413 comes when the declared length (LENGTH, at once) or
 * a chunk-size (at its line's end) goes over max_payload; UNTIL_CLOSE hands
 * out max_payload bytes and then fails on the next byte. */
int wh_http_body_next(struct wh_http_body *b, const char *data, size_t len, size_t *consumed,
                      size_t *payload_off, size_t *payload_len);

/* Reason phrase for a status code ("Bad Request"), or "Unknown". */
const char *wh_http_reason(int status);

#endif

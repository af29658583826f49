/*
 * demo-app: a small static web server used as the workload of wharf's tests
 * and quickstart (a test fixture, not product code). libc only; one thread
 * per connection; HTTP/1.1 keep-alive.
 *
 *   GET  /              200 {"version":..,"hostname":..,"task":..}
 *   GET  /health        200, or 500 after POST /fail (or DEMO_FAIL_HEALTH=1)
 *   POST /fail          /health answers 500 from now on
 *   POST /recover       /health answers 200 again
 *   ANY  /slow?ms=N     waits N ms, then 200
 *   ANY  /echo          echoes the request body (Content-Length or chunked)
 *   GET  /ws            WebSocket echo (text/binary echoed, ping answered)
 *   GET  /sse?n=N&ms=M  N server-sent events "data: i", M ms apart (chunked)
 *   anything else       404
 *
 * Environment: PORT (8080), DEMO_VERSION (v1), WHARF_TASK_ID (task; default
 * the hostname), DEMO_FAIL_HEALTH=1, DEMO_EXIT_AFTER=N (exit after N seconds
 * with DEMO_EXIT_CODE, default 1), DEMO_START_DELAY=N (seconds before
 * listening), DEMO_ACCESS_LOG=1 (one line per request on stdout).
 *
 * SIGTERM/SIGINT: stop accepting, close idle keep-alive connections, finish
 * in-flight requests (open WebSockets get a 1001 close), exit 0.
 *
 * `demo-app -healthcheck` probes http://127.0.0.1:$PORT/health and exits 0
 * (healthy) or 1: usable as a Docker HEALTHCHECK command.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER (16 * 1024)
#define MAX_BODY (16 * 1024 * 1024)
#define IDLE_TIMEOUT_MS 60000
#define READ_TIMEOUT_MS 30000
#define TICK_MS 100

static const char *g_version = "v1";
static char g_hostname[256] = "unknown";
static const char *g_task = NULL;
static int g_access_log;
static atomic_int g_fail_health;
static atomic_int g_draining;
static atomic_int g_conns;

/* ---------------------------------------------------------------- utils */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logmsg(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "demo-app: %s\n", buf);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return (v && *v) ? atoi(v) : dflt;
}

/* Append s to dst as a JSON string literal (with quotes). */
static size_t json_str(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (n + 1 < cap)                                                                           \
            dst[n] = (c);                                                                          \
        n++;                                                                                       \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT(*p);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            for (char *e = esc; *e; e++)
                PUT(*e);
        } else {
            PUT(*p);
        }
    }
    PUT('"');
    if (cap)
        dst[n < cap ? n : cap - 1] = '\0';
#undef PUT
    return n;
}

/* ------------------------------------------------------- SHA-1, base64 */

typedef struct {
    uint32_t h[5];
    uint64_t len;
    unsigned char buf[64];
    size_t used;
} sha1_ctx;

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(sha1_ctx *c, const unsigned char *p)
{
    uint32_t w[80], a, b, d, e, f, k, t, cc;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
    for (int i = 0; i < 80; i++) {
        if (i < 20)
            f = (b & cc) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ cc ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & cc) | (b & d) | (cc & d), k = 0x8F1BBCDC;
        else
            f = b ^ cc ^ d, k = 0xCA62C1D6;
        t = rol(a, 5) + f + e + k + w[i];
        e = d, d = cc, cc = rol(b, 30), b = a, a = t;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e;
}

static void sha1_init(sha1_ctx *c)
{
    static const uint32_t iv[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    memcpy(c->h, iv, sizeof iv);
    c->len = 0;
    c->used = 0;
}

static void sha1_update(sha1_ctx *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    c->len += n;
    while (n) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, take);
        c->used += take, p += take, n -= take;
        if (c->used == 64) {
            sha1_block(c, c->buf);
            c->used = 0;
        }
    }
}

static void sha1_final(sha1_ctx *c, unsigned char out[20])
{
    uint64_t bits = c->len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    sha1_update(c, &pad, 1);
    while (c->used != 56)
        sha1_update(c, &zero, 1);
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(c, lenb, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)c->h[i];
    }
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ----------------------------------------------------------- connection */

typedef struct {
    int fd;
    char peer[64];
    char buf[MAX_HEADER + 1]; /* read buffer */
    size_t len;               /* bytes in buf */
} conn;

typedef struct {
    char method[16];
    char target[2048];
    char path[2048];
    const char *query; /* points into target, after '?', or "" */
    int minor;         /* HTTP/1.minor */
    int keep_alive;
    long long content_length; /* -1 when absent */
    int chunked;
    int upgrade_ws;
    int expect_continue;
    char ws_key[128];
    char content_type[128];
    char *body;
    size_t body_len;
} request;

enum { RD_OK = 0, RD_EOF = -1, RD_TIMEOUT = -2, RD_DRAIN = -3, RD_ERR = -4 };

/* Wait for input. idle: we are between requests and may give up on drain. */
static int wait_readable(conn *c, int timeout_ms, int idle)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (idle && atomic_load(&g_draining))
            return RD_DRAIN;
        long long left = deadline - now_ms();
        if (left <= 0)
            return RD_TIMEOUT;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int r = poll(&pfd, 1, left < TICK_MS ? (int)left : TICK_MS);
        if (r > 0)
            return RD_OK;
        if (r < 0 && errno != EINTR)
            return RD_ERR;
    }
}

/* Read more bytes into c->buf. */
static int fill(conn *c, int timeout_ms, int idle)
{
    if (c->len >= MAX_HEADER)
        return RD_ERR;
    int w = wait_readable(c, timeout_ms, idle);
    if (w != RD_OK)
        return w;
    ssize_t n;
    do
        n = recv(c->fd, c->buf + c->len, MAX_HEADER - c->len, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return RD_EOF;
    if (n < 0)
        return RD_ERR;
    c->len += (size_t)n;
    return RD_OK;
}

static void consume(conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Read exactly n bytes (from the buffer first, then the socket). */
static int read_exact(conn *c, void *dst, size_t n)
{
    unsigned char *d = dst;
    size_t take = c->len < n ? c->len : n;
    memcpy(d, c->buf, take);
    consume(c, take);
    d += take, n -= take;
    while (n) {
        int w = wait_readable(c, READ_TIMEOUT_MS, 0);
        if (w != RD_OK)
            return w;
        ssize_t r = recv(c->fd, d, n, 0);
        if (r == 0)
            return RD_EOF;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return RD_ERR;
        }
        d += r, n -= (size_t)r;
    }
    return RD_OK;
}

/* Read one CRLF-terminated line (without CRLF) into out. */
static int read_line(conn *c, char *out, size_t cap)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            size_t m = n && c->buf[n - 1] == '\r' ? n - 1 : n;
            if (m >= cap)
                return RD_ERR;
            memcpy(out, c->buf, m);
            out[m] = '\0';
            consume(c, n + 1);
            return RD_OK;
        }
        int r = fill(c, READ_TIMEOUT_MS, 0);
        if (r != RD_OK)
            return r;
    }
}

static int send_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w, n -= (size_t)w;
    }
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    default:
        return "Unknown";
    }
}

/* Send a complete response with a Content-Length body. */
static int respond(conn *c, const request *rq, int status, const char *ctype, const char *body,
                   size_t blen, int keep)
{
    char head[1024];
    int head_only = rq && strcmp(rq->method, "HEAD") == 0;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "X-Demo-Version: %s\r\n"
                     "X-Demo-Task: %s\r\n"
                     "%s"
                     "\r\n",
                     status, reason(status), ctype, blen, g_version, g_task,
                     !keep                  ? "Connection: close\r\n"
                     : rq && rq->minor == 0 ? "Connection: keep-alive\r\n"
                                            : "");
    if (send_all(c->fd, head, (size_t)n) < 0)
        return -1;
    if (!head_only && blen && send_all(c->fd, body, blen) < 0)
        return -1;
    return 0;
}

static int respond_json(conn *c, const request *rq, int status, const char *json, int keep)
{
    return respond(c, rq, status, "application/json", json, strlen(json), keep);
}

/* ------------------------------------------------------------- parsing */

static int token_in_list(const char *list, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, tok, tl) == 0)
            return 1;
    }
    return 0;
}

/* Parse request line and headers. Returns 0, or an HTTP status to send
 * (then close), or a negative RD_* code (close silently). */
static int read_head(conn *c, request *rq, int first)
{
    char *end;
    /* Wait for the end of the header block. */
    for (;;) {
        c->buf[c->len] = '\0';
        end = c->len ? strstr(c->buf, "\r\n\r\n") : NULL;
        if (end)
            break;
        if (c->len >= MAX_HEADER)
            return 431;
        /* Idle (no bytes of a new request yet) may be cut short by draining. */
        int idle = c->len == 0;
        int r = fill(c, idle ? (first ? READ_TIMEOUT_MS : IDLE_TIMEOUT_MS) : READ_TIMEOUT_MS, idle);
        if (r == RD_TIMEOUT && !idle)
            return 408;
        if (r != RD_OK)
            return r;
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    *end = '\0';

    char *line = c->buf, *save = NULL;
    char *reqline = strtok_r(line, "\r\n", &save);
    if (!reqline)
        return 400;
    char *sp1 = strchr(reqline, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2)
        return 400;
    *sp1 = '\0', *sp2 = '\0';
    if (strlen(reqline) >= sizeof rq->method || strlen(sp1 + 1) >= sizeof rq->target)
        return strlen(reqline) >= sizeof rq->method ? 501 : 431;
    strcpy(rq->method, reqline);
    strcpy(rq->target, sp1 + 1);
    if (strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || !sp2[8] || sp2[9])
        return 400;
    rq->minor = sp2[8] - '0';
    rq->keep_alive = rq->minor >= 1;
    rq->content_length = -1;

    strcpy(rq->path, rq->target);
    char *q = strchr(rq->path, '?');
    if (q) {
        *q = '\0';
        rq->query = strchr(rq->target, '?') + 1;
    } else {
        rq->query = "";
    }

    int upgrade = 0, conn_upgrade = 0;
    char *h;
    while ((h = strtok_r(NULL, "\r\n", &save))) {
        char *colon = strchr(h, ':');
        if (!colon)
            return 400;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            *--ve = '\0';
        if (!strcasecmp(h, "Content-Length")) {
            char *ep;
            long long cl = strtoll(v, &ep, 10);
            if (*v < '0' || *v > '9' || *ep || cl < 0)
                return 400;
            if (rq->content_length >= 0 && rq->content_length != cl)
                return 400;
            rq->content_length = cl;
        } else if (!strcasecmp(h, "Transfer-Encoding")) {
            if (!strcasecmp(v, "chunked"))
                rq->chunked = 1;
            else
                return 501;
        } else if (!strcasecmp(h, "Connection")) {
            if (token_in_list(v, "close"))
                rq->keep_alive = 0;
            if (token_in_list(v, "keep-alive"))
                rq->keep_alive = 1;
            if (token_in_list(v, "upgrade"))
                conn_upgrade = 1;
        } else if (!strcasecmp(h, "Upgrade")) {
            if (token_in_list(v, "websocket"))
                upgrade = 1;
        } else if (!strcasecmp(h, "Sec-WebSocket-Key")) {
            snprintf(rq->ws_key, sizeof rq->ws_key, "%s", v);
        } else if (!strcasecmp(h, "Expect")) {
            if (!strcasecmp(v, "100-continue"))
                rq->expect_continue = rq->minor >= 1;
            else
                return 417;
        } else if (!strcasecmp(h, "Content-Type")) {
            snprintf(rq->content_type, sizeof rq->content_type, "%s", v);
        }
    }
    if (rq->chunked && rq->content_length >= 0)
        return 400;
    rq->upgrade_ws = upgrade && conn_upgrade && rq->ws_key[0];
    consume(c, head_len);
    return 0;
}

/* Read the request body (Content-Length or chunked) into rq->body. */
static int read_body(conn *c, request *rq)
{
    if (rq->content_length > MAX_BODY)
        return 413;
    if (rq->expect_continue && (rq->content_length > 0 || rq->chunked) &&
        send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
        return RD_ERR;
    if (rq->content_length > 0) {
        rq->body = malloc((size_t)rq->content_length + 1);
        if (!rq->body)
            return 500;
        int r = read_exact(c, rq->body, (size_t)rq->content_length);
        if (r != RD_OK)
            return r;
        rq->body_len = (size_t)rq->content_length;
    } else if (rq->chunked) {
        size_t cap = 0;
        char line[256];
        for (;;) {
            int r = read_line(c, line, sizeof line);
            if (r != RD_OK)
                return r == RD_ERR ? 400 : r;
            char *ep;
            errno = 0;
            unsigned long long sz = strtoull(line, &ep, 16);
            if (ep == line || errno || (*ep && *ep != ';' && *ep != ' '))
                return 400;
            if (sz == 0)
                break;
            if (rq->body_len + sz > MAX_BODY)
                return 413;
            if (rq->body_len + sz + 1 > cap) {
                cap = (rq->body_len + sz + 1) * 2;
                char *nb = realloc(rq->body, cap);
                if (!nb)
                    return 500;
                rq->body = nb;
            }
            r = read_exact(c, rq->body + rq->body_len, (size_t)sz);
            if (r != RD_OK)
                return r;
            rq->body_len += sz;
            r = read_line(c, line, sizeof line);
            if (r != RD_OK || line[0])
                return r != RD_OK ? r : 400;
        }
        /* trailers, up to the empty line */
        for (;;) {
            int r = read_line(c, line, sizeof line);
            if (r != RD_OK)
                return r == RD_ERR ? 400 : r;
            if (!line[0])
                break;
        }
    }
    return 0;
}

static long query_long(const char *query, const char *name, long dflt)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (p && *p) {
        if (!strncmp(p, name, nl) && p[nl] == '=')
            return strtol(p + nl + 1, NULL, 10);
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return dflt;
}

/* ------------------------------------------------------------ handlers */

static int ws_send(int fd, int opcode, const void *data, size_t n, int fin)
{
    unsigned char h[10];
    size_t hl;
    h[0] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    if (n < 126) {
        h[1] = (unsigned char)n;
        hl = 2;
    } else if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    if (send_all(fd, h, hl) < 0)
        return -1;
    return n ? send_all(fd, data, n) : 0;
}

static void handle_ws(conn *c, request *rq)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[20];
    char accept[32], head[512];
    sha1_ctx s;
    sha1_init(&s);
    sha1_update(&s, rq->ws_key, strlen(rq->ws_key));
    sha1_update(&s, guid, sizeof guid - 1);
    sha1_final(&s, digest);
    base64(digest, 20, accept);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "X-Demo-Version: %s\r\n"
                     "X-Demo-Task: %s\r\n\r\n",
                     accept, g_version, g_task);
    if (send_all(c->fd, head, (size_t)n) < 0)
        return;
    for (;;) {
        unsigned char h[2], ext[8], mask[4];
        /* Between frames: wait, and say goodbye when draining. */
        while (c->len == 0) {
            int w = wait_readable(c, 24 * 3600 * 1000, 1);
            if (w == RD_DRAIN) {
                unsigned char code[2] = {0x03, 0xE9}; /* 1001 going away */
                ws_send(c->fd, 0x8, code, 2, 1);
                return;
            }
            if (w != RD_OK)
                return;
            if (fill(c, READ_TIMEOUT_MS, 0) != RD_OK)
                return;
        }
        if (read_exact(c, h, 2) != RD_OK)
            return;
        int fin = h[0] & 0x80, opcode = h[0] & 0x0f;
        uint64_t len = h[1] & 0x7f;
        if (!(h[1] & 0x80)) {                     /* clients must mask */
            unsigned char code[2] = {0x03, 0xEA}; /* 1002 */
            ws_send(c->fd, 0x8, code, 2, 1);
            return;
        }
        if (len == 126) {
            if (read_exact(c, ext, 2) != RD_OK)
                return;
            len = (uint64_t)ext[0] << 8 | ext[1];
        } else if (len == 127) {
            if (read_exact(c, ext, 8) != RD_OK)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | ext[i];
        }
        if (len > MAX_BODY) {
            unsigned char code[2] = {0x03, 0xF1}; /* 1009 too big */
            ws_send(c->fd, 0x8, code, 2, 1);
            return;
        }
        if (read_exact(c, mask, 4) != RD_OK)
            return;
        unsigned char *payload = malloc(len ? (size_t)len : 1);
        if (!payload)
            return;
        if (read_exact(c, payload, (size_t)len) != RD_OK) {
            free(payload);
            return;
        }
        for (uint64_t i = 0; i < len; i++)
            payload[i] ^= mask[i & 3];
        int rc = 0;
        switch (opcode) {
        case 0x0: /* continuation */
        case 0x1: /* text */
        case 0x2: /* binary */
            rc = ws_send(c->fd, opcode, payload, (size_t)len, fin);
            break;
        case 0x8: /* close: echo the status code, then close */
            ws_send(c->fd, 0x8, payload, len >= 2 ? 2 : 0, 1);
            free(payload);
            return;
        case 0x9: /* ping */
            rc = ws_send(c->fd, 0xA, payload, (size_t)len, 1);
            break;
        case 0xA: /* pong */
            break;
        default: {
            unsigned char code[2] = {0x03, 0xEA};
            ws_send(c->fd, 0x8, code, 2, 1);
            free(payload);
            return;
        }
        }
        free(payload);
        if (rc < 0)
            return;
    }
}

/* Returns keep-alive (1) or close (0). */
static int handle_sse(conn *c, request *rq)
{
    long n = query_long(rq->query, "n", 5);
    long ms = query_long(rq->query, "ms", 0);
    int chunked = rq->minor >= 1;
    int keep = chunked && rq->keep_alive && !atomic_load(&g_draining);
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\n"
                      "Content-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\n"
                      "X-Demo-Version: %s\r\n"
                      "X-Demo-Task: %s\r\n"
                      "%s%s\r\n",
                      g_version, g_task, chunked ? "Transfer-Encoding: chunked\r\n" : "",
                      keep ? "" : "Connection: close\r\n");
    if (send_all(c->fd, head, (size_t)hl) < 0)
        return 0;
    if (!strcmp(rq->method, "HEAD"))
        return keep;
    for (long i = 0; i < n; i++) {
        if (i && ms > 0)
            sleep_ms(ms);
        char ev[64], out[96];
        int el = snprintf(ev, sizeof ev, "data: %ld\n\n", i);
        int ol = chunked ? snprintf(out, sizeof out, "%x\r\n%s\r\n", el, ev)
                         : snprintf(out, sizeof out, "%s", ev);
        if (send_all(c->fd, out, (size_t)ol) < 0)
            return 0;
    }
    if (chunked && send_all(c->fd, "0\r\n\r\n", 5) < 0)
        return 0;
    return keep;
}

/* Handle one request; returns 1 to keep the connection open. */
static int handle(conn *c, request *rq)
{
    int keep = rq->keep_alive;
    int status = 200;
    char json[1024];

    if (!strcmp(rq->path, "/ws") && rq->upgrade_ws) {
        status = 101;
        handle_ws(c, rq);
        keep = 0;
        goto done;
    }
    if (!strcmp(rq->path, "/sse")) {
        keep = handle_sse(c, rq);
        goto done;
    }
    /* /slow sleeps first; decide about keep-alive after (drain may start). */
    if (!strcmp(rq->path, "/slow")) {
        long ms = query_long(rq->query, "ms", 1000);
        if (ms > 0)
            sleep_ms(ms);
        snprintf(json, sizeof json, "{\"slept_ms\": %ld, \"task\": ", ms);
        size_t l = strlen(json);
        json_str(json + l, sizeof json - l - 2, g_task);
        strcat(json, "}");
    }
    if (atomic_load(&g_draining))
        keep = 0;

    if (!strcmp(rq->path, "/slow")) {
        /* json already built */
    } else if (!strcmp(rq->path, "/")) {
        size_t l = 0;
        l += (size_t)snprintf(json + l, sizeof json - l, "{\"version\": ");
        l += json_str(json + l, sizeof json - l, g_version);
        l += (size_t)snprintf(json + l, sizeof json - l, ", \"hostname\": ");
        l += json_str(json + l, sizeof json - l, g_hostname);
        l += (size_t)snprintf(json + l, sizeof json - l, ", \"task\": ");
        l += json_str(json + l, sizeof json - l, g_task);
        snprintf(json + l, sizeof json - l, "}");
    } else if (!strcmp(rq->path, "/health")) {
        int bad = atomic_load(&g_fail_health);
        status = bad ? 500 : 200;
        snprintf(json, sizeof json, "{\"status\": \"%s\"}", bad ? "failing" : "ok");
    } else if (!strcmp(rq->path, "/fail") || !strcmp(rq->path, "/recover")) {
        if (strcmp(rq->method, "POST") != 0) {
            status = 405;
            snprintf(json, sizeof json, "{\"error\": \"use POST\"}");
        } else {
            int fail = !strcmp(rq->path, "/fail");
            atomic_store(&g_fail_health, fail);
            snprintf(json, sizeof json, "{\"health\": \"%s\"}", fail ? "failing" : "ok");
        }
    } else if (!strcmp(rq->path, "/echo")) {
        respond(c, rq, 200, rq->content_type[0] ? rq->content_type : "application/octet-stream",
                rq->body ? rq->body : "", rq->body_len, keep);
        goto done;
    } else {
        status = 404;
        snprintf(json, sizeof json, "{\"error\": \"not found\"}");
    }
    if (respond_json(c, rq, status, json, keep) < 0)
        keep = 0;
done:
    if (g_access_log)
        printf("%s %s %s %d\n", c->peer, rq->method, rq->target, status);
    return keep;
}

static void *conn_thread(void *arg)
{
    conn *c = arg;
    for (int first = 1;; first = 0) {
        request rq;
        memset(&rq, 0, sizeof rq);
        int r = read_head(c, &rq, first);
        if (r == 0)
            r = read_body(c, &rq);
        if (r > 0) { /* protocol error: answer and close */
            char json[64];
            snprintf(json, sizeof json, "{\"error\": \"%s\"}", reason(r));
            respond_json(c, NULL, r, json, 0);
        }
        if (r != 0) {
            free(rq.body);
            break;
        }
        int keep = handle(c, &rq);
        free(rq.body);
        if (!keep)
            break;
    }
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    free(c);
    atomic_fetch_sub(&g_conns, 1);
    return NULL;
}

/* ---------------------------------------------------------------- main */

static int listen_on(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        struct sockaddr_in6 a = {
            .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_ANY)};
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc < 0 || listen(fd, 1024) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int healthcheck(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        return 1;
    const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    char buf[64] = {0};
    if (send_all(fd, req, sizeof req - 1) < 0 || recv(fd, buf, sizeof buf - 1, 0) < 12)
        return 1;
    return strncmp(buf + 9, "200", 3) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    int port = env_int("PORT", 8080);
    if (argc > 1 && !strcmp(argv[1], "-healthcheck"))
        return healthcheck(port);

    setvbuf(stdout, NULL, _IOLBF, 0);
    gethostname(g_hostname, sizeof g_hostname - 1);
    const char *v = getenv("DEMO_VERSION");
    if (v && *v)
        g_version = v;
    g_task = getenv("WHARF_TASK_ID");
    if (!g_task || !*g_task)
        g_task = g_hostname;
    g_access_log = env_int("DEMO_ACCESS_LOG", 0);
    atomic_store(&g_fail_health, env_int("DEMO_FAIL_HEALTH", 0) != 0);
    int exit_after = env_int("DEMO_EXIT_AFTER", 0);
    int exit_code = env_int("DEMO_EXIT_CODE", 1);
    int start_delay = env_int("DEMO_START_DELAY", 0);

    /* Signals are taken synchronously through a signalfd; worker threads
     * inherit the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("signalfd");
        return 2;
    }
    long long t0 = now_ms();
    long long exit_at = exit_after > 0 ? t0 + exit_after * 1000LL : 0;

    if (start_delay > 0) {
        logmsg("%s: waiting %d s before listening", g_version, start_delay);
        long long until = t0 + start_delay * 1000LL;
        for (;;) {
            long long left = until - now_ms();
            if (exit_at && exit_at - now_ms() < left)
                left = exit_at - now_ms();
            if (left <= 0)
                break;
            struct pollfd p = {sfd, POLLIN, 0};
            if (poll(&p, 1, (int)left) > 0) {
                logmsg("signal during start delay: exiting");
                return 0;
            }
        }
        if (exit_at && now_ms() >= exit_at) {
            logmsg("DEMO_EXIT_AFTER=%d reached: exiting %d", exit_after, exit_code);
            return exit_code;
        }
    }

    int lfd[2], nl = 0;
    if ((lfd[nl] = listen_on(AF_INET, port)) >= 0)
        nl++;
    else {
        logmsg("cannot listen on 0.0.0.0:%d: %s", port, strerror(errno));
        return 2;
    }
    if ((lfd[nl] = listen_on(AF_INET6, port)) >= 0)
        nl++; /* best effort */
    logmsg("%s task %s listening on port %d%s", g_version, g_task, port,
           nl > 1 ? " (IPv4+IPv6)" : " (IPv4)");

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);

    int exiting_code = -1;
    for (;;) {
        struct pollfd pfd[3];
        pfd[0] = (struct pollfd){sfd, POLLIN, 0};
        for (int i = 0; i < nl; i++)
            pfd[1 + i] = (struct pollfd){lfd[i], POLLIN, 0};
        int timeout = -1;
        if (exit_at) {
            long long left = exit_at - now_ms();
            timeout = left < 0 ? 0 : (int)left;
        }
        int r = poll(pfd, (nfds_t)(1 + nl), timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (exit_at && now_ms() >= exit_at) {
            logmsg("DEMO_EXIT_AFTER=%d reached: exiting %d", exit_after, exit_code);
            exiting_code = exit_code;
            break;
        }
        if (r <= 0)
            continue;
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) > 0)
                logmsg("signal %u: draining", si.ssi_signo);
            break;
        }
        for (int i = 0; i < nl; i++) {
            if (!(pfd[1 + i].revents & POLLIN))
                continue;
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            int fd = accept4(lfd[i], (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            conn *c = calloc(1, sizeof *c);
            if (!c) {
                close(fd);
                continue;
            }
            c->fd = fd;
            if (ss.ss_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof c->peer);
            else
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer,
                          sizeof c->peer);
            atomic_fetch_add(&g_conns, 1);
            pthread_t th;
            if (pthread_create(&th, &attr, conn_thread, c) != 0) {
                atomic_fetch_sub(&g_conns, 1);
                close(fd);
                free(c);
            }
        }
    }
    if (exiting_code >= 0)
        return exiting_code;

    /* Drain: no more accepts; idle connections close themselves within a
     * tick; in-flight requests finish. A second signal exits at once. */
    for (int i = 0; i < nl; i++)
        close(lfd[i]);
    atomic_store(&g_draining, 1);
    for (;;) {
        int n = atomic_load(&g_conns);
        if (n == 0)
            break;
        struct pollfd p = {sfd, POLLIN, 0};
        if (poll(&p, 1, 50) > 0) {
            logmsg("second signal: exiting with %d connection(s) open", n);
            break;
        }
    }
    logmsg("drained: exiting");
    return 0;
}

/* A client session as the files of its exchange share it: session.c (the
 * HTTP exchange, and the owner of the session's life), tunnel.c (after an
 * upgrade), access_record.c (what the access log says of each request) and
 * send.c (writing to either peer). Private to the proxy module. */
#ifndef WHARF_PROXY_SESSION_H
#define WHARF_PROXY_SESSION_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy-int.h"

#define WH_SESSION_MAGIC 0x53455353u /* "SESS" */

enum sess_state {
    SS_HEAD,    /* waiting for or reading a request head */
    SS_FORWARD, /* routed: exchange with an upstream in progress */
    SS_TUNNEL,  /* after 101 Switching Protocols: bytes both ways */
    SS_DISCARD, /* answered here: reading and dropping the request body */
    SS_CLOSING, /* flushing what we wrote, then closing */
};

enum resp_state { RS_NONE, RS_BODY };

/* What the access log says of the request under way (access_record.c).
 * Times are CLOCK_REALTIME seconds, noted only while the log is on; the
 * byte counts always. Cleared for each request. */
struct wh_access_record {
    double t_start, t_connect, t_sent, t_resp;
    uint64_t bytes_in, bytes_out;
    char method[16]; /* "" until a head is noted */
    char path[256];
    size_t path_len;
    int ended; /* its line is written (or counted) */
};

struct wh_session {
    uint32_t magic;
    struct wh_proxy *proxy;
    struct wh_listener *listener;
    struct bufferevent *bev;
    TAILQ_ENTRY(wh_session) link;
    char client_ip[INET6_ADDRSTRLEN];
    int client_port;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer; /* for source_ip conditions */
    enum sess_state state;
    struct event *timer; /* tls_handshake, client_header, then upstream_response deadline */
    int tls;             /* an https listener's connection */
    int handshaking;     /* TLS handshake not finished yet */

    struct wh_http_parser req_parser;
    struct wh_http_msg req;
    struct wh_http_body req_body;
    int req_keepalive;
    int req_body_done;
    uint64_t req_body_sent;
    struct evbuffer *req_head; /* rewritten head, kept for a retry */
    char request_id[129];
    struct wh_gen *gen;                       /* held from a request's head to its end */
    const struct wh_action *action;           /* the matched rule's, in gen */
    const struct wh_cfg_target_group *tg_cfg; /* the forward group's, in gen */
    struct wh_group *group;
    struct wh_target *target;
    struct wh_upconn *up;
    int retried;
    int upgrade;          /* the request asks for a protocol switch */
    double tunnel_active; /* last time a byte crossed the tunnel */

    struct wh_http_parser resp_parser;
    struct wh_http_msg resp;
    struct wh_http_body resp_body;
    enum resp_state resp_state;
    int resp_started; /* a byte of the response reached the client buffer */
    int dechunk;
    int close_after;
    int lingering;

    struct wh_access_record rec;
};

/* ---- send.c ---- */

/* Write data to bev's peer: at once when nothing is queued, the rest (or
 * all of it) queued in bev's output. */
void wh_send_bytes(struct bufferevent *bev, const void *data, size_t len);
/* Move n bytes from the front of src to bev's peer, the same way. Over TLS
 * the bytes are made contiguous first, so a small response leaves as one
 * record. */
void wh_send_from(struct bufferevent *bev, struct evbuffer *src, size_t n);

/* ---- tunnel.c ---- */

/* The upstream answered 101 (head parsed from buf, in s->up's input):
 * relay the head, log the request and start moving bytes both ways. */
int wh_tunnel_start(struct wh_session *s, const char *buf);
/* Move what from's peer sent to to's, stopping reads from `from` while to's
 * output is over the high watermark. */
void wh_tunnel_pump(struct wh_session *s, struct bufferevent *from, struct bufferevent *to);
/* True while a byte crossed the tunnel within the listener's idle_timeout:
 * a read timeout on the silent side is then forgiven. */
int wh_tunnel_recently_active(const struct wh_session *s);

/* ---- access_record.c ---- */

static inline int wh_access_record_on(const struct wh_session *s)
{
    return s->proxy->alog != NULL;
}
/* *when = now, when the access log is on. */
void wh_access_record_stamp(const struct wh_session *s, double *when);
/* Note what the log needs of the request head in buf before its bytes go. */
void wh_access_record_request(struct wh_session *s, const char *buf);
/* Note a head the parser refused (n bytes read of buf): the bytes, and the
 * method and path when the request line itself was sound. */
void wh_access_record_rejected(struct wh_session *s, const char *buf, size_t n);
/* The request ends now with status: count the response (the worker's and
 * its group's counters) and, with the log on, append its line (error: why
 * wharfd answered itself, or NULL). */
void wh_access_record_end(struct wh_session *s, int status, const char *error);
/* The log's word for an error status wharfd answered with ("bad_gateway"). */
const char *wh_access_record_error(int status);
/* The request under way ends without a whole response (error says why:
 * "client_closed", "client_idle_timeout", "upstream_reset", ...): its line,
 * with the status sent so far (0 = none). Once per request; nothing when no
 * request is under way or its line is written. */
void wh_access_record_abort(struct wh_session *s, const char *error);

#endif

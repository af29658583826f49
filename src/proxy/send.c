/* Writing to a peer: straight to the socket when nothing is queued.
 *
 * A bufferevent arms its write event for every byte added to its output and
 * disarms it once drained: two epoll_ctl calls and one more loop turn per
 * write. Writing first, and queueing only what the socket did not take,
 * keeps the common case to one send() (one SSL_write over TLS). Used for
 * both sides of an exchange and of a tunnel (session.h). */
#include <sys/socket.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "session.h"

/* Largest write tried at once over TLS: SSL_write sends one record per call
 * (partial writes on), and the bytes are made contiguous first. */
#define WH_TLS_DIRECT_MAX (16 * 1024)

static int send_nothing_queued(struct bufferevent *bev)
{
    return evbuffer_get_length(bufferevent_get_output(bev)) == 0;
}

/* Bytes the TLS session took now. When it took none and asks to be
 * retried, OpenSSL holds the start of data in its record buffer: the caller
 * queues all of data, so libevent's next SSL_write starts with the same
 * bytes (moving write buffers are allowed, see session.c's tls_bufferevent). */
static size_t send_tls_now(SSL *ssl, const void *data, size_t len)
{
    int w = SSL_write(ssl, data, (int)len);
    if (w > 0)
        return (size_t)w;
    int e = SSL_get_error(ssl, w);
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
        ERR_clear_error(); /* libevent meets the error again and reports it */
    return 0;
}

/* Bytes of data the peer took at once; 0 when something is queued already
 * (order) or the socket is full. */
static size_t send_now(struct bufferevent *bev, const void *data, size_t len)
{
    if (!send_nothing_queued(bev))
        return 0;
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl)
        return len <= WH_TLS_DIRECT_MAX ? send_tls_now(ssl, data, len) : 0;
    ssize_t w = send(bufferevent_getfd(bev), data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w > 0 ? (size_t)w : 0;
}

void wh_send_bytes(struct bufferevent *bev, const void *data, size_t len)
{
    size_t done = send_now(bev, data, len);
    if (done < len)
        evbuffer_add(bufferevent_get_output(bev), (const char *)data + done, len - done);
}

void wh_send_from(struct bufferevent *bev, struct evbuffer *src, size_t n)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (n > 0 && send_nothing_queued(bev)) {
        if (!ssl) {
            int w = evbuffer_write_atmost(src, bufferevent_getfd(bev), (ev_ssize_t)n);
            if (w > 0)
                n -= (size_t)w;
        } else if (n <= WH_TLS_DIRECT_MAX) {
            size_t done = send_tls_now(ssl, evbuffer_pullup(src, (ev_ssize_t)n), n);
            evbuffer_drain(src, done);
            n -= done;
        }
    }
    if (n > 0)
        evbuffer_remove_buffer(src, bufferevent_get_output(bev), n);
}

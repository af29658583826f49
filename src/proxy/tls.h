/* TLS termination for https listeners: OpenSSL server contexts built from a
 * listener's configuration on the control thread, then shared read-only by
 * every worker (SSL_new from any thread).
 *
 * - One SSL_CTX per certificate/key pair; the first is the default. SNI
 *   picks the pair whose certificate names the server name in its
 *   subjectAltName DNS entries (exact, case-insensitive; or a "*.example.com"
 *   wildcard matching exactly one label), the default when none does or the
 *   client sends no SNI. The CN is used only when a certificate has no DNS
 *   SAN.
 * - tls_policy "tls13-12": TLS 1.2 minimum, 1.3 maximum; "tls13": 1.3 only.
 *   The minimum is set explicitly with SSL_CTX_set_min_proto_version (never
 *   left to the system's openssl.cnf). TLS 1.2 ciphers: ECDHE with AES-GCM
 *   or CHACHA20-POLY1305 only. Compression and renegotiation off.
 * - ALPN: offers "http/1.1" only (a client that offers only h2 gets no ALPN
 *   answer and speaks HTTP/1.1 or leaves).
 * - Session resumption: a server session cache and session tickets whose
 *   keys are made once per process, so resumption survives a reload.
 */
#ifndef WHARF_PROXY_TLS_H
#define WHARF_PROXY_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "wharf/config.h"

struct wh_tls_server;

/* Build the contexts of https listener l (cfg is its configuration, for the
 * file name in messages). Each error is "FILE:LINE: listeners[NAME].
 * certificates[I]: message" (the certificate entry's line): unreadable
 * file, not a PEM certificate, key that does not match, expired
 * certificates are accepted with no error. Returns NULL with err set. */
struct wh_tls_server *wh_tls_server_new(const struct wh_config *cfg,
                                        const struct wh_cfg_listener *l, char *err, size_t errlen);
/* Drops the owner's reference: the contexts live on while connections made
 * from them do (a reload frees the old server under live handshakes).
 * NULL is fine. */
void wh_tls_server_free(struct wh_tls_server *ts);

/* The default context, to SSL_new a server connection from (SNI then
 * switches it with SSL_set_SSL_CTX). Borrowed. */
SSL_CTX *wh_tls_server_ctx(const struct wh_tls_server *ts);

/* Which certificate (index in l->certificates) serves servername (NULL or
 * "" = no SNI): what the SNI callback does, for tests. */
int wh_tls_server_select(const struct wh_tls_server *ts, const char *servername);

#endif

/* Stickiness cookies (ALB's lb_cookie and group-level stickiness): signed,
 * expiring values that name a target or a target group. Pure apart from
 * OpenSSL's HMAC.
 *
 * Cookie value: base64url without padding of
 *   expires (8 bytes, big endian, seconds since the epoch) | payload |
 *   HMAC-SHA256(key, expires | payload) truncated to 16 bytes.
 * The payload is opaque here (the proxy uses "group\ntarget-address" for
 * target stickiness and "group" for group stickiness).
 *
 * sticky.c also reads and sets them on requests (wh_sticky_forward_index,
 * wh_sticky_pinned_target, wh_sticky_set_cookies), declared in proxy-int.h
 * with the listener's and the worker's types.
 */
#ifndef WHARF_PROXY_STICKY_H
#define WHARF_PROXY_STICKY_H

#include <stddef.h>
#include <stdint.h>

#include "wharf/http.h"

#define WH_STICKY_KEY_LEN 32
#define WH_STICKY_PAYLOAD_MAX 160
#define WH_STICKY_VALUE_MAX 256 /* room for any encoded value, NUL included */

struct wh_sticky_key {
    unsigned char bytes[WH_STICKY_KEY_LEN];
};

/* A key from a configured secret (SHA-256 of it), or, with secret NULL, the
 * process's random key (made once, the same for every caller). */
void wh_sticky_key_init(struct wh_sticky_key *k, const char *secret);

/* Encode payload (len <= WH_STICKY_PAYLOAD_MAX) with its expiry into out
 * (NUL-terminated). Returns the value's length, or -1. */
int wh_sticky_encode(const struct wh_sticky_key *k, const char *payload, size_t len,
                     int64_t expires, char *out, size_t outlen);

/* Check value's signature and expiry against now (seconds since the epoch)
 * and copy its payload to out (NUL-terminated). Returns the payload length,
 * or -1 when malformed, forged or expired. */
int wh_sticky_decode(const struct wh_sticky_key *k, const char *value, size_t len, int64_t now,
                     char *out, size_t outlen);

/* Find cookie `name` in the request's Cookie header lines (RFC 6265
 * "a=b; c=d", several lines allowed). Sets *value and *len to a span of buf and
 * returns 1, or returns 0 when absent. */
int wh_cookie_find(const char *buf, const struct wh_http_msg *req, const char *name,
                   size_t name_len, const char **value, size_t *len);

#endif

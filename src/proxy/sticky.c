/* Stickiness cookies: their format and checks (see sticky.h), and on top
 * of them what a request's cookies pin and what its response sets
 * (wh_sticky_forward_index, wh_sticky_pinned_target, wh_sticky_set_cookies:
 * proxy-int.h, they read a listener's prep and a worker's group):
 *
 *   wharf-lb-GROUP     "GROUP\nADDRESS": the target, while it is healthy
 *   wharf-tg-LISTENER  "GROUP": the forward group, while it has weight
 *
 * The decoder is strict so that one value has exactly one encoding: only
 * the base64url alphabet, no padding, no length that base64 cannot produce,
 * and zero unused bits in the last character. Otherwise flipping the low
 * bits of the last character would give a second valid cookie. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "proxy-int.h"
#include "sticky.h"
#include "wharf/log.h"

#define STICKY_EXPIRES_LEN 8
#define STICKY_MAC_LEN 16
#define STICKY_RAW_MAX (STICKY_EXPIRES_LEN + WH_STICKY_PAYLOAD_MAX + STICKY_MAC_LEN)
#define STICKY_B64_LEN(raw) (((raw)*4 + 2) / 3) /* unpadded base64 of raw bytes */

_Static_assert(STICKY_B64_LEN(STICKY_RAW_MAX) < WH_STICKY_VALUE_MAX,
               "WH_STICKY_VALUE_MAX must hold the longest value");

/* ---- keys ---- */

/* The process's random key: written once under pthread_once, then only read. */
static struct wh_sticky_key sticky_process_key;
static pthread_once_t sticky_process_once = PTHREAD_ONCE_INIT;

static void sticky_make_process_key(void)
{
    if (RAND_bytes(sticky_process_key.bytes, WH_STICKY_KEY_LEN) != 1) {
        /* A guessable key would let clients forge stickiness: refuse to run. */
        wh_log_error("sticky", "cannot draw a random cookie key from OpenSSL; set "
                               "stickiness_secret or fix the system's entropy source");
        abort();
    }
}

void wh_sticky_key_init(struct wh_sticky_key *k, const char *secret)
{
    if (!secret) {
        pthread_once(&sticky_process_once, sticky_make_process_key);
        *k = sticky_process_key;
        return;
    }
    unsigned int len = 0;
    if (EVP_Digest(secret, strlen(secret), k->bytes, &len, EVP_sha256(), NULL) != 1 ||
        len != WH_STICKY_KEY_LEN) {
        wh_log_error("sticky", "SHA-256 of the stickiness secret failed in OpenSSL");
        abort();
    }
}

/* HMAC-SHA256(key, data) truncated to STICKY_MAC_LEN. */
static int sticky_mac(const struct wh_sticky_key *k, const unsigned char *data, size_t len,
                      unsigned char mac[STICKY_MAC_LEN])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int full_len = 0;
    if (!HMAC(EVP_sha256(), k->bytes, WH_STICKY_KEY_LEN, data, len, full, &full_len) ||
        full_len < STICKY_MAC_LEN)
        return -1;
    memcpy(mac, full, STICKY_MAC_LEN);
    OPENSSL_cleanse(full, sizeof(full));
    return 0;
}

/* ---- base64url without padding ---- */

static const char sticky_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t sticky_b64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = sticky_b64[v >> 18 & 63];
        out[o++] = sticky_b64[v >> 12 & 63];
        out[o++] = sticky_b64[v >> 6 & 63];
        out[o++] = sticky_b64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = sticky_b64[v >> 18 & 63];
        out[o++] = sticky_b64[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = sticky_b64[v >> 18 & 63];
        out[o++] = sticky_b64[v >> 12 & 63];
        out[o++] = sticky_b64[v >> 6 & 63];
    }
    return o;
}

static int sticky_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decode in[0..len) into out (room for len * 3 / 4 bytes). Returns the byte
 * count, or -1 for anything that is not the canonical encoding of some
 * bytes. */
static int sticky_b64_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = sticky_b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) /* leftover bits must be zero */
        return -1;
    return (int)o;
}

/* ---- values ---- */

int wh_sticky_encode(const struct wh_sticky_key *k, const char *payload, size_t len,
                     int64_t expires, char *out, size_t outlen)
{
    unsigned char raw[STICKY_RAW_MAX];
    if (len > WH_STICKY_PAYLOAD_MAX || (len > 0 && !payload))
        return -1;
    size_t raw_len = STICKY_EXPIRES_LEN + len + STICKY_MAC_LEN;
    if (outlen < STICKY_B64_LEN(raw_len) + 1)
        return -1;
    uint64_t e = (uint64_t)expires;
    for (int i = 0; i < STICKY_EXPIRES_LEN; i++)
        raw[i] = (unsigned char)(e >> (56 - 8 * i));
    if (len > 0)
        memcpy(raw + STICKY_EXPIRES_LEN, payload, len);
    if (sticky_mac(k, raw, STICKY_EXPIRES_LEN + len, raw + STICKY_EXPIRES_LEN + len) < 0)
        return -1;
    size_t n = sticky_b64_encode(raw, raw_len, out);
    out[n] = '\0';
    return (int)n;
}

int wh_sticky_decode(const struct wh_sticky_key *k, const char *value, size_t len, int64_t now,
                     char *out, size_t outlen)
{
    unsigned char raw[STICKY_RAW_MAX + 2];
    unsigned char mac[STICKY_MAC_LEN];
    if (!value || len < STICKY_B64_LEN(STICKY_EXPIRES_LEN + STICKY_MAC_LEN) ||
        len > STICKY_B64_LEN(STICKY_RAW_MAX))
        return -1;
    int raw_len = sticky_b64_decode(value, len, raw);
    if (raw_len < STICKY_EXPIRES_LEN + STICKY_MAC_LEN)
        return -1;
    size_t signed_len = (size_t)raw_len - STICKY_MAC_LEN;
    if (sticky_mac(k, raw, signed_len, mac) < 0 ||
        CRYPTO_memcmp(mac, raw + signed_len, STICKY_MAC_LEN) != 0)
        return -1;
    uint64_t e = 0;
    for (int i = 0; i < STICKY_EXPIRES_LEN; i++)
        e = e << 8 | raw[i];
    if (now >= (int64_t)e)
        return -1;
    size_t plen = signed_len - STICKY_EXPIRES_LEN;
    if (plen + 1 > outlen)
        return -1;
    memcpy(out, raw + STICKY_EXPIRES_LEN, plen);
    out[plen] = '\0';
    return (int)plen;
}

/* ---- the Cookie header ---- */

static int sticky_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Look for name in one Cookie line "a=b; c=d". */
static int sticky_find_in_line(const char *p, size_t len, const char *name, size_t name_len,
                               const char **value, size_t *vlen)
{
    const char *end = p + len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pair_end = semi ? semi : end;
        while (p < pair_end && sticky_ows(*p))
            p++;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        if (eq) {
            const char *ne = eq;
            while (ne > p && sticky_ows(ne[-1]))
                ne--;
            if ((size_t)(ne - p) == name_len && memcmp(p, name, name_len) == 0) {
                const char *v = eq + 1, *ve = pair_end;
                while (v < ve && sticky_ows(*v))
                    v++;
                while (ve > v && sticky_ows(ve[-1]))
                    ve--;
                if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') { /* RFC 6265 quoted form */
                    v++;
                    ve--;
                }
                *value = v;
                *vlen = (size_t)(ve - v);
                return 1;
            }
        }
        p = semi ? semi + 1 : end;
    }
    return 0;
}

int wh_cookie_find(const char *buf, const struct wh_http_msg *req, const char *name,
                   size_t name_len, const char **value, size_t *len)
{
    if (name_len == 0)
        return 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct wh_http_header *h = &req->headers[i];
        if (!wh_http_span_eq(buf, h->name, "cookie", 6))
            continue;
        if (sticky_find_in_line(buf + h->value.off, h->value.len, name, name_len, value, len))
            return 1;
    }
    return 0;
}

/* ---- a request's cookies ---- */

static int64_t sticky_wall_seconds(void)
{
    return (int64_t)time(NULL);
}

/* The payload of a valid stickiness cookie `name`, or -1. */
static int sticky_cookie_payload(const struct wh_listener_prep *lp, const char *buf,
                                 const struct wh_http_msg *req, const char *name, char *out,
                                 size_t outlen)
{
    const char *v;
    size_t len;
    if (!wh_cookie_find(buf, req, name, strlen(name), &v, &len))
        return -1;
    return wh_sticky_decode(&lp->key, v, len, sticky_wall_seconds(), out, outlen);
}

static void sticky_target_cookie_name(const struct wh_cfg_target_group *tg, char *out,
                                      size_t outlen)
{
    snprintf(out, outlen, "wharf-lb-%s", tg->name);
}

int wh_sticky_forward_index(const struct wh_listener_prep *lp, const struct wh_action *a,
                            const char *buf, const struct wh_http_msg *req, uint64_t *rng)
{
    if (a->stickiness > 0) {
        char name[WH_STICKY_PAYLOAD_MAX + 1];
        int n = sticky_cookie_payload(lp, buf, req, lp->tg_cookie, name, sizeof(name));
        for (size_t i = 0; n > 0 && i < a->n_groups; i++)
            if (a->groups[i].weight > 0 && strcmp(a->groups[i].name, name) == 0)
                return (int)i;
    }
    return a->n_groups == 1 ? 0 : wh_forward_pick(a, rng);
}

struct wh_target *wh_sticky_pinned_target(const struct wh_listener_prep *lp,
                                          const struct wh_cfg_target_group *tg, struct wh_group *g,
                                          const char *buf, const struct wh_http_msg *req)
{
    char name[WH_NAME_MAX + 16], payload[WH_STICKY_PAYLOAD_MAX + 1];
    sticky_target_cookie_name(tg, name, sizeof(name));
    int n = sticky_cookie_payload(lp, buf, req, name, payload, sizeof(payload));
    size_t glen = strlen(tg->name);
    if (n <= (int)glen + 1 || memcmp(payload, tg->name, glen) != 0 || payload[glen] != '\n')
        return NULL; /* absent, forged, expired, or another group's */
    return wh_balance_group_find(g, payload + glen + 1, (size_t)n - glen - 1);
}

/* Append one Set-Cookie line for payload to out at *used. */
static void sticky_add_set_cookie(const struct wh_listener_prep *lp, const char *name,
                                  const char *payload, size_t len, int64_t max_age, char *out,
                                  size_t outlen, size_t *used)
{
    char value[WH_STICKY_VALUE_MAX];
    if (*used >= outlen || wh_sticky_encode(&lp->key, payload, len, sticky_wall_seconds() + max_age,
                                            value, sizeof(value)) <= 0)
        return;
    *used += (size_t)snprintf(out + *used, outlen - *used,
                              "Set-Cookie: %s=%s; Path=/; Max-Age=%lld; HttpOnly\r\n", name, value,
                              (long long)max_age);
}

const char *wh_sticky_set_cookies(const struct wh_listener_prep *lp,
                                  const struct wh_cfg_target_group *tg, const struct wh_target *t,
                                  double group_stickiness, char *out, size_t outlen)
{
    size_t used = 0;
    if (t) {
        char name[WH_NAME_MAX + 16], payload[WH_STICKY_PAYLOAD_MAX + 1];
        int n = snprintf(payload, sizeof(payload), "%s\n%s", tg->name, t->addr.text);
        sticky_target_cookie_name(tg, name, sizeof(name));
        if (n > 0 && (size_t)n < sizeof(payload))
            sticky_add_set_cookie(lp, name, payload, (size_t)n, (int64_t)tg->stickiness_duration,
                                  out, outlen, &used);
    }
    if (group_stickiness > 0)
        sticky_add_set_cookie(lp, lp->tg_cookie, tg->name, strlen(tg->name),
                              (int64_t)group_stickiness, out, outlen, &used);
    return used > 0 && used < outlen ? out : NULL;
}

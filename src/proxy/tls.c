/* TLS server contexts for https listeners (tls.h).
 *
 * Lifetime: the contexts and the SNI table are owned by the default context
 * (certs[0].ctx) through an ex_data slot whose free callback releases the
 * whole wh_tls_server. wh_tls_server_free only drops the owner's reference
 * to that context; every SSL made from it holds another (as its session
 * context, even after SNI switched it with SSL_set_SSL_CTX), so a reload may
 * free the old server while old connections are still in their handshake:
 * the servername callback never sees a freed table.
 *
 * Process-wide state (the one exception to "no mutable globals"): the
 * session ticket keys and the ex_data index, made once with pthread_once.
 * The keys must outlive any one wh_tls_server so that a context rebuilt on
 * reload still decrypts the tickets the previous one issued; they change
 * only when the process restarts.
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "wharf/obj.h"

#define WH_TLS_SERVER_MAGIC 0x544c5353u /* "TLSS" */

/* TLS 1.2 only (1.3 suites are set apart): forward secrecy and AEAD. */
#define TLS_CIPHERS_12                                                                             \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_CIPHERS_13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"

/* 16-byte key name, 32-byte HMAC key, 32-byte AES key. */
#define TLS_TICKET_KEYS_LEN 80

struct tls_cert {
    SSL_CTX *ctx; /* owned (certs[0].ctx: see the lifetime note above) */
    char **names; /* DNS SAN names lowercased, or the CN if none; owned */
    size_t n_names;
};

struct wh_tls_server {
    unsigned magic;
    struct tls_cert *certs; /* owned; certs[0] is the default */
    size_t n_certs;
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static unsigned char tls_ticket_keys[TLS_TICKET_KEYS_LEN];
static int tls_ticket_keys_ok;
static int tls_ex_index = -1;

static void tls_release(struct wh_tls_server *ts);

/* ex_data free callback of the default context: called once per SSL_CTX
 * freed (ptr NULL for all but the default ones of wharf servers). */
static void tls_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct wh_tls_server *ts = ptr;
    WH_CHECK_OBJ_ORNULL(ts, WH_TLS_SERVER_MAGIC);
    if (ts)
        tls_release(ts);
}

static void tls_init_once(void)
{
    tls_ticket_keys_ok = RAND_bytes(tls_ticket_keys, sizeof(tls_ticket_keys)) == 1;
    tls_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_ex_free);
    ERR_clear_error();
}

/* ---- errors ---- */

static void tls_vfail(char *err, size_t errlen, const struct wh_config *cfg,
                      const struct wh_cfg_listener *l, size_t i, const char *fmt, va_list ap)
{
    if (!err || errlen == 0)
        return;
    int n;
    if (i < l->n_certificates)
        n = snprintf(err, errlen, "%s:%d: listeners[%s].certificates[%zu]: ", cfg->path,
                     l->certificates[i].line, l->name, i);
    else
        n = snprintf(err, errlen, "%s:%d: listeners[%s]: ", cfg->path, l->line, l->name);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

/* Writes the message for certificate entry i (or for the listener when i is
 * out of range) and empties the OpenSSL error queue. */
static void tls_fail(char *err, size_t errlen, const struct wh_config *cfg,
                     const struct wh_cfg_listener *l, size_t i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tls_vfail(err, errlen, cfg, l, i, fmt, ap);
    va_end(ap);
    ERR_clear_error();
}

/* What the OpenSSL error queue said about a failed load; emptying it. */
struct tls_errs {
    int no_start_line; /* not PEM at all */
    int mismatch;      /* key and certificate differ */
    char reason[128];  /* the last error's reason */
};

static void tls_errs_take(struct tls_errs *e)
{
    unsigned long code, last = 0;
    memset(e, 0, sizeof(*e));
    while ((code = ERR_get_error()) != 0) {
        int lib = ERR_GET_LIB(code), reason = ERR_GET_REASON(code);
        if (lib == ERR_LIB_PEM && reason == PEM_R_NO_START_LINE)
            e->no_start_line = 1;
        if (lib == ERR_LIB_X509 &&
            (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH))
            e->mismatch = 1;
        last = code;
    }
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    snprintf(e->reason, sizeof(e->reason), "%s", r ? r : "unknown OpenSSL error");
}

/* 0 if path opens and reads (an empty file reads too); else -1 with errno. */
static int tls_readable(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    (void)fgetc(f);
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (bad) {
        errno = saved;
        return -1;
    }
    return 0;
}

/* ---- names ---- */

static void tls_names_free(struct tls_cert *c)
{
    for (size_t k = 0; k < c->n_names; k++)
        free(c->names[k]);
    free(c->names);
    c->names = NULL;
    c->n_names = 0;
}

/* Appends a lowercased copy of the len bytes at s (skipped when empty or
 * holding a NUL). Returns 0 or -1 on allocation failure. */
static int tls_names_add(struct tls_cert *c, const unsigned char *s, size_t len)
{
    if (len == 0 || memchr(s, '\0', len))
        return 0;
    char **names = realloc(c->names, (c->n_names + 1) * sizeof(*names));
    if (!names)
        return -1;
    c->names = names;
    char *name = malloc(len + 1);
    if (!name)
        return -1;
    for (size_t k = 0; k < len; k++)
        name[k] = (s[k] >= 'A' && s[k] <= 'Z') ? (char)(s[k] - 'A' + 'a') : (char)s[k];
    name[len] = '\0';
    c->names[c->n_names++] = name;
    return 0;
}

/* The DNS names of x's subjectAltName, or its last CN when it has none. */
static int tls_names_load(struct tls_cert *c, X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int k = 0; gens && k < sk_GENERAL_NAME_num(gens) && rc == 0; k++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
        if (g->type == GEN_DNS)
            rc = tls_names_add(c, ASN1_STRING_get0_data(g->d.dNSName),
                               (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(gens);
    if (rc != 0 || c->n_names > 0)
        return rc;

    const X509_NAME *subject = X509_get_subject_name(x);
    int pos = -1, last = -1;
    while ((pos = X509_NAME_get_index_by_NID(subject, NID_commonName, pos)) >= 0)
        last = pos;
    if (last < 0)
        return 0;
    unsigned char *utf8 = NULL;
    int len =
        ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, last)));
    if (len > 0)
        rc = tls_names_add(c, utf8, (size_t)len);
    OPENSSL_free(utf8);
    return rc;
}

/* name (lowercase) against servername (any case, len bytes, no trailing
 * dot): exact, or "*.rest" where servername is one non-empty label + ".rest". */
static int tls_name_matches(const char *name, const char *sn, size_t len, int wildcard)
{
    if (!wildcard)
        return strlen(name) == len && strncasecmp(name, sn, len) == 0;
    if (name[0] != '*' || name[1] != '.')
        return 0;
    const char *dot = memchr(sn, '.', len);
    if (!dot || dot == sn)
        return 0;
    size_t rest = len - (size_t)(dot + 1 - sn);
    return strlen(name + 2) == rest && rest > 0 && strncasecmp(name + 2, dot + 1, rest) == 0;
}

int wh_tls_server_select(const struct wh_tls_server *ts, const char *servername)
{
    WH_CHECK_OBJ_ORNULL(ts, WH_TLS_SERVER_MAGIC);
    if (!ts || !servername)
        return 0;
    size_t len = strlen(servername);
    if (len > 0 && servername[len - 1] == '.')
        len--;
    if (len == 0)
        return 0;
    /* Exact names first, over every certificate, so a certificate for
     * "x.example.com" wins over one for "*.example.com" listed before it. */
    for (int wildcard = 0; wildcard <= 1; wildcard++)
        for (size_t i = 0; i < ts->n_certs; i++)
            for (size_t k = 0; k < ts->certs[i].n_names; k++)
                if (tls_name_matches(ts->certs[i].names[k], servername, len, wildcard))
                    return (int)i;
    return 0;
}

/* ---- callbacks (registered on every context: after SSL_set_SSL_CTX
 * OpenSSL reads the ALPN callback from the new one) ---- */

static int tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct wh_tls_server *ts;
    WH_CAST_OBJ(ts, arg, WH_TLS_SERVER_MAGIC);
    int i = wh_tls_server_select(ts, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    SSL_CTX *want = ts->certs[i].ctx;
    if (SSL_get_SSL_CTX(ssl) != want && SSL_set_SSL_CTX(ssl, want) != want)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static int tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const char proto[] = "http/1.1";
    const size_t plen = sizeof(proto) - 1;
    for (unsigned int k = 0; k < inlen;) {
        unsigned int n = in[k];
        if (n == 0 || k + 1 + n > inlen)
            break;
        if (n == plen && memcmp(in + k + 1, proto, plen) == 0) {
            *out = in + k + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        k += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Encrypted keys are not supported: fail instead of prompting on a tty. */
static int tls_no_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return -1;
}

/* ---- contexts ---- */

/* Everything but the certificate: the same for every context of a server.
 * Explicit even where it repeats OpenSSL's default, so the system's
 * openssl.cnf (applied by SSL_CTX_new) cannot change a listener. */
static int tls_ctx_setup(SSL_CTX *ctx, struct wh_tls_server *ts, const struct wh_cfg_listener *l)
{
    int tls13_only = l->tls_policy && strcmp(l->tls_policy, "tls13") == 0;
    unsigned char sid[EVP_MAX_MD_SIZE];
    unsigned int sid_len = 0;

    if (!SSL_CTX_set_min_proto_version(ctx, tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) ||
        !SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERS_13) ||
        !SSL_CTX_set1_groups_list(ctx, TLS_GROUPS))
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET | SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_set_tlsext_ticket_keys(ctx, tls_ticket_keys, sizeof(tls_ticket_keys)) != 1)
        return -1;
    /* Sessions resume on the listener that made them only. */
    if (!EVP_Digest(l->name, strlen(l->name), sid, &sid_len, EVP_sha256(), NULL))
        return -1;
    if (sid_len > SSL_MAX_SID_CTX_LENGTH)
        sid_len = SSL_MAX_SID_CTX_LENGTH;
    if (!SSL_CTX_set_session_id_context(ctx, sid, sid_len))
        return -1;
    SSL_CTX_set_tlsext_servername_callback(ctx, tls_servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, ts);
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_password_cb);
    return 0;
}

/* Why key file i did not load, from its PEM blocks (OpenSSL 3's decoders
 * only say "unsupported" for a file with no key as for an encrypted one). */
static void tls_key_fail(char *err, size_t errlen, const struct wh_config *cfg,
                         const struct wh_cfg_listener *l, size_t i, const struct tls_errs *e)
{
    const char *path = l->certificates[i].key;
    BIO *b = BIO_new_file(path, "r");
    char *name = NULL, *header = NULL, first[64] = "";
    unsigned char *data = NULL;
    long len = 0;
    int has_key = 0, encrypted = 0;

    while (b && PEM_read_bio(b, &name, &header, &data, &len) == 1) {
        size_t n = strlen(name);
        if (!first[0])
            snprintf(first, sizeof(first), "%s", name);
        if (n >= 11 && strcmp(name + n - 11, "PRIVATE KEY") == 0) {
            has_key = 1;
            encrypted |=
                strcmp(name, "ENCRYPTED PRIVATE KEY") == 0 || strstr(header, "ENCRYPTED") != NULL;
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }
    BIO_free(b);
    if (encrypted)
        tls_fail(err, errlen, cfg, l, i, "key %s is encrypted: give an unencrypted key", path);
    else if (!first[0])
        tls_fail(err, errlen, cfg, l, i, "%s is not a PEM private key", path);
    else if (!has_key)
        tls_fail(err, errlen, cfg, l, i, "%s is not a PEM private key (it holds a %s)", path,
                 first);
    else
        tls_fail(err, errlen, cfg, l, i, "cannot load key %s: %s", path, e->reason);
}

/* Loads certificate entry i into c->ctx and its names into c. */
static int tls_ctx_load(struct tls_cert *c, const struct wh_config *cfg,
                        const struct wh_cfg_listener *l, size_t i, char *err, size_t errlen)
{
    const struct wh_cfg_certificate *ce = &l->certificates[i];
    struct tls_errs e;

    if (tls_readable(ce->cert) != 0) {
        tls_fail(err, errlen, cfg, l, i, "cannot read certificate %s: %s", ce->cert,
                 strerror(errno));
        return -1;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ctx, ce->cert) != 1) {
        tls_errs_take(&e);
        if (e.no_start_line)
            tls_fail(err, errlen, cfg, l, i, "%s is not a PEM certificate", ce->cert);
        else
            tls_fail(err, errlen, cfg, l, i, "cannot load certificate %s: %s", ce->cert, e.reason);
        return -1;
    }
    if (tls_readable(ce->key) != 0) {
        tls_fail(err, errlen, cfg, l, i, "cannot read key %s: %s", ce->key, strerror(errno));
        return -1;
    }
    /* OpenSSL compares the key with the certificate of its type already; a
     * key of another type passes here and fails SSL_CTX_check_private_key. */
    if (SSL_CTX_use_PrivateKey_file(c->ctx, ce->key, SSL_FILETYPE_PEM) != 1) {
        tls_errs_take(&e);
        if (e.mismatch)
            tls_fail(err, errlen, cfg, l, i, "key %s does not match certificate %s", ce->key,
                     ce->cert);
        else
            tls_key_fail(err, errlen, cfg, l, i, &e);
        return -1;
    }
    if (SSL_CTX_check_private_key(c->ctx) != 1) {
        tls_fail(err, errlen, cfg, l, i, "key %s does not match certificate %s", ce->key, ce->cert);
        return -1;
    }
    if (tls_names_load(c, SSL_CTX_get0_certificate(c->ctx)) != 0) {
        tls_fail(err, errlen, cfg, l, i, "out of memory");
        return -1;
    }
    return 0;
}

/* Frees the contexts but the default one and the tables: the default
 * context's ex_data free callback, or wh_tls_server_new failing before the
 * default context owns ts. */
static void tls_release(struct wh_tls_server *ts)
{
    for (size_t i = 0; i < ts->n_certs; i++) {
        if (i > 0)
            SSL_CTX_free(ts->certs[i].ctx);
        tls_names_free(&ts->certs[i]);
    }
    free(ts->certs);
    WH_FREE_OBJ(ts);
}

struct wh_tls_server *wh_tls_server_new(const struct wh_config *cfg,
                                        const struct wh_cfg_listener *l, char *err, size_t errlen)
{
    struct wh_tls_server *ts = NULL;
    SSL_CTX *def = NULL;

    if (err && errlen)
        err[0] = '\0';
    if (l->n_certificates == 0) {
        tls_fail(err, errlen, cfg, l, SIZE_MAX, "an https listener needs a certificate");
        return NULL;
    }
    pthread_once(&tls_once, tls_init_once);
    if (!tls_ticket_keys_ok || tls_ex_index < 0) {
        tls_fail(err, errlen, cfg, l, SIZE_MAX, "cannot initialise TLS session tickets");
        return NULL;
    }
    ts = calloc(1, sizeof(*ts));
    if (!ts || !(ts->certs = calloc(l->n_certificates, sizeof(*ts->certs)))) {
        tls_fail(err, errlen, cfg, l, SIZE_MAX, "out of memory");
        goto err;
    }
    WH_INIT_OBJ(ts, WH_TLS_SERVER_MAGIC);
    for (size_t i = 0; i < l->n_certificates; i++) {
        struct tls_cert *c = &ts->certs[i];
        c->ctx = SSL_CTX_new(TLS_server_method());
        if (i == 0)
            def = c->ctx;
        ts->n_certs = i + 1;
        if (!c->ctx || tls_ctx_setup(c->ctx, ts, l) != 0) {
            struct tls_errs e;
            tls_errs_take(&e);
            tls_fail(err, errlen, cfg, l, i, "cannot set up a TLS context: %s", e.reason);
            goto err;
        }
        if (tls_ctx_load(c, cfg, l, i, err, errlen) != 0)
            goto err;
    }
    /* From here the default context owns ts (see the lifetime note). */
    if (!SSL_CTX_set_ex_data(def, tls_ex_index, ts)) {
        tls_fail(err, errlen, cfg, l, SIZE_MAX, "out of memory");
        goto err;
    }
    return ts;
err:
    if (ts)
        tls_release(ts);
    SSL_CTX_free(def);
    return NULL;
}

void wh_tls_server_free(struct wh_tls_server *ts)
{
    WH_CHECK_OBJ_ORNULL(ts, WH_TLS_SERVER_MAGIC);
    if (!ts)
        return;
    SSL_CTX_free(ts->certs[0].ctx);
}

SSL_CTX *wh_tls_server_ctx(const struct wh_tls_server *ts)
{
    WH_CHECK_OBJ_ORNULL(ts, WH_TLS_SERVER_MAGIC);
    if (!ts)
        return NULL;
    return ts->certs[0].ctx;
}

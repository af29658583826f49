/* Unit tests for TLS server contexts (src/proxy/tls.c).
 *
 * Keys and certificates are made here with the OpenSSL API (EC P-256,
 * self-signed) in a mkdtemp directory removed at the end. Handshakes run in
 * memory: a client and a server SSL joined by a BIO pair, stepped in turn.
 *
 * main() points OPENSSL_CONF at a hostile openssl.cnf written in that
 * directory (TLS 1.3 minimum, no tickets, weak TLS 1.2 ciphers, no server
 * preference, compression allowed), before OpenSSL reads any configuration.
 * The tests then read back what wharf set, and prove it overrides a system
 * configuration instead of depending on /etc/ssl/openssl.cnf. The clients
 * made here set their own versions and ciphers for the same reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proxy/tls.h"
#include "wharf/config.h"

/* ---- fixture: a temp directory with keys and certificates ---- */

enum {
    CERT_A,     /* SAN a.example.com */
    CERT_B,     /* SAN *.b.example.com, b.example.com; CN cn-of-b.example.com */
    CERT_C,     /* no SAN, CN c.example.com */
    CERT_EXACT, /* SAN exact.b.example.com */
    CERT_OLD,   /* SAN old.example.com, expired */
    N_CERTS
};

static const struct {
    const char *file; /* DIR/file.pem, DIR/file.key */
    const char *cn;
    const char *san; /* NULL = no subjectAltName */
    int expired;
} cert_specs[N_CERTS] = {
    {"a", "a.example.com", "DNS:a.example.com", 0},
    {"b", "cn-of-b.example.com", "DNS:*.b.example.com,DNS:b.example.com", 0},
    {"c", "c.example.com", NULL, 0},
    {"exact", "exact.b.example.com", "DNS:exact.b.example.com", 0},
    {"old", "old.example.com", "DNS:old.example.com", 1},
};

static struct {
    char dir[64];
    char cnf[128];
    char garbage[128]; /* a file that is not PEM */
    char missing[128]; /* a path that does not exist */
    char enc_key[128]; /* the key of CERT_A, encrypted */
    char cert_path[N_CERTS][128];
    char key_path[N_CERTS][128];
    X509 *cert[N_CERTS];
} fx;

static const char hostile_cnf[] = "openssl_conf = wh_test\n"
                                  "[wh_test]\n"
                                  "ssl_conf = wh_ssl\n"
                                  "[wh_ssl]\n"
                                  "system_default = wh_sys\n"
                                  "[wh_sys]\n"
                                  "MinProtocol = TLSv1.3\n"
                                  "CipherString = AES128-SHA:ECDHE-ECDSA-AES128-SHA\n"
                                  "Options = -SessionTicket,-ServerPreference,Compression\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static X509 *make_cert(EVP_PKEY *key, int serial, const char *cn, const char *san, int expired)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    long day = 24 * 3600;
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), expired ? -30 * day : -day));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), expired ? -day : 30 * day));
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
        1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    if (san) {
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static int fixture_setup(void **state)
{
    (void)state;
    for (int i = 0; i < N_CERTS; i++) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        assert_non_null(key);
        fx.cert[i] =
            make_cert(key, i + 1, cert_specs[i].cn, cert_specs[i].san, cert_specs[i].expired);
        snprintf(fx.cert_path[i], sizeof(fx.cert_path[i]), "%s/%s.pem", fx.dir, cert_specs[i].file);
        snprintf(fx.key_path[i], sizeof(fx.key_path[i]), "%s/%s.key", fx.dir, cert_specs[i].file);
        FILE *f = fopen(fx.cert_path[i], "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_X509(f, fx.cert[i]), 1);
        assert_int_equal(fclose(f), 0);
        f = fopen(fx.key_path[i], "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
        assert_int_equal(fclose(f), 0);
        if (i == CERT_A) {
            snprintf(fx.enc_key, sizeof(fx.enc_key), "%s/enc.key", fx.dir);
            f = fopen(fx.enc_key, "w");
            assert_non_null(f);
            assert_int_equal(PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(),
                                                  (const unsigned char *)"secret", 6, NULL, NULL),
                             1);
            assert_int_equal(fclose(f), 0);
        }
        EVP_PKEY_free(key);
    }
    snprintf(fx.garbage, sizeof(fx.garbage), "%s/garbage.pem", fx.dir);
    write_file(fx.garbage, "this is not a certificate\n");
    snprintf(fx.missing, sizeof(fx.missing), "%s/missing.pem", fx.dir);
    return 0;
}

static int fixture_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_CERTS; i++) {
        X509_free(fx.cert[i]);
        fx.cert[i] = NULL;
    }
    return 0;
}

/* ---- a listener built by hand ---- */

#define MAX_LCERTS 6
#define FIRST_LINE 10 /* certificates[i] is on line FIRST_LINE + i */

struct tl {
    struct wh_config cfg;
    struct wh_cfg_listener l;
    struct wh_cfg_certificate certs[MAX_LCERTS];
    char path[16];
    char policy[16];
};

/* A listener NAME with policy and the certificates named by idx (CERT_*). */
static void tl_init(struct tl *t, const char *name, const char *policy, const int *idx, size_t n)
{
    assert_true(n <= MAX_LCERTS);
    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "test.conf");
    snprintf(t->policy, sizeof(t->policy), "%s", policy);
    snprintf(t->l.name, sizeof(t->l.name), "%s", name);
    t->cfg.path = t->path;
    t->cfg.listeners = &t->l;
    t->cfg.n_listeners = 1;
    t->l.protocol = WH_PROTO_HTTPS;
    t->l.tls_policy = t->policy;
    t->l.certificates = t->certs;
    t->l.n_certificates = n;
    t->l.line = 9;
    for (size_t i = 0; i < n; i++) {
        t->certs[i].cert = fx.cert_path[idx[i]];
        t->certs[i].key = fx.key_path[idx[i]];
        t->certs[i].line = FIRST_LINE + (int)i;
    }
}

static const int std_certs[] = {CERT_A, CERT_B, CERT_C, CERT_EXACT};
#define N_STD (sizeof(std_certs) / sizeof(std_certs[0]))

/* The four standard certificates on listener "web". */
static struct wh_tls_server *std_server(const char *policy)
{
    struct tl t;
    char err[256];
    tl_init(&t, "web", policy, std_certs, N_STD);
    struct wh_tls_server *ts = wh_tls_server_new(&t.cfg, &t.l, err, sizeof(err));
    if (!ts)
        print_error("wh_tls_server_new: %s\n", err);
    assert_non_null(ts);
    assert_int_equal(ERR_peek_error(), 0);
    return ts;
}

/* ---- in-memory handshakes ---- */

struct copts {
    const char *sni;
    int min, max;  /* 0 = TLS 1.2, TLS 1.3 */
    int seclevel0; /* to let an old protocol be offered at all */
    int no_ticket; /* resume by session id instead */
    const unsigned char *alpn;
    unsigned alpn_len;
    SSL_SESSION *session; /* to resume; borrowed */
};

struct tconn {
    SSL_CTX *cctx;
    SSL *c, *s;
    int client_reason, server_reason; /* OpenSSL reason of the side that failed */
};

static void tconn_close(struct tconn *t)
{
    if (t->c)
        SSL_shutdown(t->c); /* a session stays resumable only after a clean close */
    if (t->s)
        SSL_shutdown(t->s);
    SSL_free(t->c);
    SSL_free(t->s);
    SSL_CTX_free(t->cctx);
    ERR_clear_error();
    memset(t, 0, sizeof(*t));
}

/* Steps one side; 1 done, 0 wants more, -1 failed (reason saved). */
static int tconn_step(SSL *ssl, int *reason)
{
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    *reason = ERR_GET_REASON(ERR_peek_last_error());
    if (*reason == 0)
        *reason = -1;
    ERR_clear_error();
    return -1;
}

/* Makes a client and a server SSL (from sctx) joined by a BIO pair. */
static void tconn_new(struct tconn *t, SSL_CTX *sctx, const struct copts *o)
{
    memset(t, 0, sizeof(*t));
    t->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(t->cctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(t->cctx, o->min ? o->min : TLS1_2_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(t->cctx, o->max ? o->max : TLS1_3_VERSION), 1);
    assert_int_equal(
        SSL_CTX_set_cipher_list(t->cctx, o->seclevel0 ? "DEFAULT:@SECLEVEL=0" : "DEFAULT"), 1);
    if (o->no_ticket)
        SSL_CTX_set_options(t->cctx, SSL_OP_NO_TICKET);
    else
        SSL_CTX_clear_options(t->cctx, SSL_OP_NO_TICKET);

    t->c = SSL_new(t->cctx);
    t->s = SSL_new(sctx);
    assert_non_null(t->c);
    assert_non_null(t->s);
    BIO *bc, *bs;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(t->c, bc, bc);
    SSL_set_bio(t->s, bs, bs);
    SSL_set_connect_state(t->c);
    SSL_set_accept_state(t->s);
    if (o->sni)
        assert_int_equal(SSL_set_tlsext_host_name(t->c, o->sni), 1);
    if (o->alpn)
        assert_int_equal(SSL_set_alpn_protos(t->c, o->alpn, o->alpn_len), 0);
    if (o->session)
        assert_int_equal(SSL_set_session(t->c, o->session), 1);
}

/* Runs the handshake: 0 when both sides finish, -1 when either fails. */
static int tconn_handshake(struct tconn *t)
{
    int cdone = 0, sdone = 0;
    for (int round = 0; round < 50 && !(cdone && sdone); round++) {
        if (!cdone && (cdone = tconn_step(t->c, &t->client_reason)) < 0)
            return -1;
        if (!sdone && (sdone = tconn_step(t->s, &t->server_reason)) < 0)
            return -1;
    }
    assert_true(cdone && sdone);
    return 0;
}

static int tconn_open(struct tconn *t, SSL_CTX *sctx, const struct copts *o)
{
    tconn_new(t, sctx, o);
    return tconn_handshake(t);
}

/* Sends a byte server to client, so the client also reads the TLS 1.3
 * session tickets, and returns the client's session (free it). */
static SSL_SESSION *tconn_session(struct tconn *t)
{
    char c = 0;
    assert_int_equal(SSL_write(t->s, "x", 1), 1);
    assert_int_equal(SSL_read(t->c, &c, 1), 1);
    assert_int_equal(c, 'x');
    SSL_SESSION *sess = SSL_get1_session(t->c);
    assert_non_null(sess);
    assert_int_equal(SSL_SESSION_is_resumable(sess), 1);
    return sess;
}

/* The certificate the client received is fx.cert[which]. */
static void assert_peer_is(const struct tconn *t, int which)
{
    X509 *peer = SSL_get1_peer_certificate(t->c);
    assert_non_null(peer);
    assert_int_equal(X509_cmp(peer, fx.cert[which]), 0);
    X509_free(peer);
}

/* ---- the hostile system configuration is in force ---- */

static void test_hostile_system_config_is_in_force(void **state)
{
    (void)state;
    /* A plain context picks up the test's openssl.cnf: what follows proves
     * wharf overrides it. */
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
    uint64_t opts = SSL_CTX_get_options(ctx);
    assert_true(opts & SSL_OP_NO_TICKET);
    assert_false(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
    assert_false(opts & SSL_OP_NO_COMPRESSION);
    SSL_CTX_free(ctx);
}

/* ---- protocol versions, options, ciphers ---- */

static void test_policy_tls13_12_sets_min_tls12_max_tls13(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    SSL_CTX *ctx = wh_tls_server_ctx(ts);
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
    wh_tls_server_free(ts);
}

static void test_policy_tls13_sets_min_and_max_tls13(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13");
    SSL_CTX *ctx = wh_tls_server_ctx(ts);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
    wh_tls_server_free(ts);
}

/* Options, ciphers and callbacks of one context, whichever certificate. */
static void check_ctx_config(SSL_CTX *ctx)
{
    uint64_t opts = SSL_CTX_get_options(ctx);
    assert_true(opts & SSL_OP_NO_COMPRESSION);
    assert_true(opts & SSL_OP_NO_RENEGOTIATION);
    assert_true(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
    assert_false(opts & SSL_OP_NO_TICKET);
    assert_false(opts & SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
    assert_true(SSL_CTX_get_session_cache_mode(ctx) & SSL_SESS_CACHE_SERVER);

    STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(ctx);
    int n12 = 0;
    assert_non_null(ciphers);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(ciphers, i);
        int kx = SSL_CIPHER_get_kx_nid(c);
        assert_true(SSL_CIPHER_is_aead(c));
        int cipher = SSL_CIPHER_get_cipher_nid(c);
        assert_true(cipher == NID_aes_128_gcm || cipher == NID_aes_256_gcm ||
                    cipher == NID_chacha20_poly1305);
        if (kx == NID_kx_any)
            continue; /* a TLS 1.3 suite */
        assert_int_equal(kx, NID_kx_ecdhe);
        n12++;
    }
    assert_true(n12 >= 4); /* ECDSA: AES128-GCM, AES256-GCM, CHACHA20 (+ RSA ones) */
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
}

static void test_default_context_options_and_ecdhe_aead_ciphers(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    check_ctx_config(wh_tls_server_ctx(ts));
    wh_tls_server_free(ts);
}

static void test_sni_context_configured_like_default(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    struct tconn t;
    struct copts o = {.sni = "b.example.com"};
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    SSL_CTX *switched = SSL_get_SSL_CTX(t.s);
    assert_ptr_not_equal(switched, wh_tls_server_ctx(ts));
    check_ctx_config(switched);
    tconn_close(&t);
    wh_tls_server_free(ts);
}

/* ---- SNI selection ---- */

static void test_select_exact_name_case_insensitive(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    assert_int_equal(wh_tls_server_select(ts, "a.example.com"), 0);
    assert_int_equal(wh_tls_server_select(ts, "b.example.com"), 1);
    assert_int_equal(wh_tls_server_select(ts, "B.Example.COM"), 1);
    assert_int_equal(wh_tls_server_select(ts, "b.example.com."), 1);
    assert_int_equal(wh_tls_server_select(ts, "EXACT.b.example.com"), 3);
    wh_tls_server_free(ts);
}

static void test_select_wildcard_matches_exactly_one_label(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    assert_int_equal(wh_tls_server_select(ts, "x.b.example.com"), 1);
    assert_int_equal(wh_tls_server_select(ts, "X.B.EXAMPLE.com"), 1);
    assert_int_equal(wh_tls_server_select(ts, "y.x.b.example.com"), 0);
    assert_int_equal(wh_tls_server_select(ts, ".b.example.com"), 0);
    assert_int_equal(wh_tls_server_select(ts, "xb.example.com"), 0);
    /* "b.example.com" matches through its own SAN entry, not the wildcard */
    assert_int_equal(wh_tls_server_select(ts, "b.example.com"), 1);
    wh_tls_server_free(ts);
}

static void test_select_exact_name_beats_earlier_wildcard(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    /* certificate 1 (*.b.example.com) comes before certificate 3 */
    assert_int_equal(wh_tls_server_select(ts, "exact.b.example.com"), 3);
    wh_tls_server_free(ts);
}

static void test_select_unknown_or_no_name_gives_default(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    assert_int_equal(wh_tls_server_select(ts, "unknown.example.org"), 0);
    assert_int_equal(wh_tls_server_select(ts, "example.com"), 0);
    assert_int_equal(wh_tls_server_select(ts, NULL), 0);
    assert_int_equal(wh_tls_server_select(ts, ""), 0);
    assert_int_equal(wh_tls_server_select(ts, "."), 0);
    /* the CN of a certificate with DNS SANs is ignored */
    assert_int_equal(wh_tls_server_select(ts, "cn-of-b.example.com"), 0);
    wh_tls_server_free(ts);

    /* the default is the first certificate, whichever it is */
    const int order[] = {CERT_C, CERT_A};
    struct tl t;
    char err[256];
    tl_init(&t, "web", "tls13-12", order, 2);
    ts = wh_tls_server_new(&t.cfg, &t.l, err, sizeof(err));
    assert_non_null(ts);
    assert_int_equal(wh_tls_server_select(ts, "unknown.example.org"), 0);
    assert_int_equal(wh_tls_server_select(ts, "a.example.com"), 1);
    wh_tls_server_free(ts);
}

static void test_select_cn_when_no_san(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    assert_int_equal(wh_tls_server_select(ts, "c.example.com"), 2);
    assert_int_equal(wh_tls_server_select(ts, "C.EXAMPLE.COM"), 2);
    wh_tls_server_free(ts);
}

/* ---- handshakes ---- */

static void check_sni_handshake(struct wh_tls_server *ts, const char *sni, int which)
{
    struct tconn t;
    struct copts o = {.sni = sni};
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_peer_is(&t, which);
    tconn_close(&t);
}

static void test_handshake_sni_serves_matching_certificate(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    check_sni_handshake(ts, "a.example.com", CERT_A);
    check_sni_handshake(ts, "B.example.com", CERT_B);
    check_sni_handshake(ts, "x.b.example.com", CERT_B);
    check_sni_handshake(ts, "exact.b.example.com", CERT_EXACT);
    check_sni_handshake(ts, "c.example.com", CERT_C);
    check_sni_handshake(ts, "y.x.b.example.com", CERT_A);
    check_sni_handshake(ts, "unknown.example.org", CERT_A);
    check_sni_handshake(ts, NULL, CERT_A);
    wh_tls_server_free(ts);
}

static void test_handshake_tls12_client_gets_tls12(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    struct tconn t;
    struct copts o = {.sni = "b.example.com", .max = TLS1_2_VERSION};
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_int_equal(SSL_version(t.c), TLS1_2_VERSION);
    assert_int_equal(SSL_version(t.s), TLS1_2_VERSION);
    const SSL_CIPHER *c = SSL_get_current_cipher(t.s);
    assert_int_equal(SSL_CIPHER_get_kx_nid(c), NID_kx_ecdhe);
    assert_true(SSL_CIPHER_is_aead(c));
    assert_peer_is(&t, CERT_B);
    tconn_close(&t);
    wh_tls_server_free(ts);
}

static void test_handshake_default_is_tls13(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    struct tconn t;
    struct copts o = {.sni = "a.example.com"};
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_int_equal(SSL_version(t.c), TLS1_3_VERSION);
    assert_int_equal(SSL_version(t.s), TLS1_3_VERSION);
    tconn_close(&t);
    wh_tls_server_free(ts);

    ts = std_server("tls13");
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_int_equal(SSL_version(t.s), TLS1_3_VERSION);
    tconn_close(&t);
    wh_tls_server_free(ts);
}

static void test_tls12_client_rejected_by_tls13_policy(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13");
    struct tconn t;
    struct copts o = {.sni = "a.example.com", .max = TLS1_2_VERSION};
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), -1);
    /* the server refused the ClientHello (the client did send one) */
    assert_int_equal(t.server_reason, SSL_R_UNSUPPORTED_PROTOCOL);
    tconn_close(&t);
    wh_tls_server_free(ts);
}

static void test_tls11_client_rejected_by_tls13_12_policy(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    struct tconn t;
    /* OpenSSL 3 allows TLS 1.1 only at security level 0 */
    struct copts o = {
        .sni = "a.example.com", .min = TLS1_1_VERSION, .max = TLS1_1_VERSION, .seclevel0 = 1};
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), -1);
    assert_int_equal(t.client_reason, 0);
    assert_int_equal(t.server_reason, SSL_R_UNSUPPORTED_PROTOCOL);
    tconn_close(&t);
    wh_tls_server_free(ts);
}

static void test_alpn_h2_and_http11_gets_http11(void **state)
{
    (void)state;
    static const unsigned char offer[] = "\x02h2\x08http/1.1";
    struct wh_tls_server *ts = std_server("tls13-12");
    for (int max = TLS1_2_VERSION; max <= TLS1_3_VERSION; max++) {
        struct tconn t;
        struct copts o = {
            .sni = "x.b.example.com", .max = max, .alpn = offer, .alpn_len = sizeof(offer) - 1};
        assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
        const unsigned char *proto = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(t.c, &proto, &len);
        assert_int_equal(len, 8);
        assert_memory_equal(proto, "http/1.1", 8);
        tconn_close(&t);
    }
    wh_tls_server_free(ts);
}

static void test_alpn_h2_only_gets_no_alpn(void **state)
{
    (void)state;
    static const unsigned char offer[] = "\x02h2";
    struct wh_tls_server *ts = std_server("tls13-12");
    struct tconn t;
    struct copts o = {.alpn = offer, .alpn_len = sizeof(offer) - 1};
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    const unsigned char *proto = NULL;
    unsigned len = 1;
    SSL_get0_alpn_selected(t.c, &proto, &len);
    assert_int_equal(len, 0);
    tconn_close(&t);
    wh_tls_server_free(ts);
}

/* ---- session resumption ---- */

/* A full handshake with ts, then one resuming its session. */
static void check_resume(struct wh_tls_server *ts, const struct copts *base, int version)
{
    struct tconn t;
    struct copts o = *base;
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_int_equal(SSL_version(t.s), version);
    assert_int_equal(SSL_session_reused(t.s), 0);
    SSL_SESSION *sess = tconn_session(&t);
    tconn_close(&t);

    o.session = sess;
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_int_equal(SSL_session_reused(t.c), 1);
    assert_int_equal(SSL_session_reused(t.s), 1);
    assert_int_equal(SSL_version(t.s), version);
    tconn_close(&t);
    SSL_SESSION_free(sess);
}

/* A session from a server, resumed on a server rebuilt from the same
 * configuration after the first is freed (what a reload does). */
static void check_resume_after_rebuild(const struct copts *base, int version, int which)
{
    struct wh_tls_server *ts = std_server("tls13-12");
    struct tconn t;
    struct copts o = *base;
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_int_equal(SSL_version(t.s), version);
    SSL_SESSION *sess = tconn_session(&t);
    tconn_close(&t);
    wh_tls_server_free(ts);

    ts = std_server("tls13-12");
    o.session = sess;
    assert_int_equal(tconn_open(&t, wh_tls_server_ctx(ts), &o), 0);
    assert_int_equal(SSL_session_reused(t.c), 1);
    assert_int_equal(SSL_session_reused(t.s), 1);
    assert_peer_is(&t, which);
    tconn_close(&t);
    SSL_SESSION_free(sess);
    wh_tls_server_free(ts);
}

static void test_resume_tls13_ticket(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    struct copts o = {.sni = "a.example.com"};
    check_resume(ts, &o, TLS1_3_VERSION);
    wh_tls_server_free(ts);
}

static void test_resume_tls13_ticket_on_rebuilt_server(void **state)
{
    (void)state;
    struct copts o = {.sni = "a.example.com"};
    check_resume_after_rebuild(&o, TLS1_3_VERSION, CERT_A);
}

static void test_resume_tls12_ticket_on_rebuilt_server(void **state)
{
    (void)state;
    struct copts o = {.sni = "a.example.com", .max = TLS1_2_VERSION};
    check_resume_after_rebuild(&o, TLS1_2_VERSION, CERT_A);
}

static void test_resume_sni_certificate_on_rebuilt_server(void **state)
{
    (void)state;
    struct copts o13 = {.sni = "x.b.example.com"};
    check_resume_after_rebuild(&o13, TLS1_3_VERSION, CERT_B);
    struct copts o12 = {.sni = "x.b.example.com", .max = TLS1_2_VERSION};
    check_resume_after_rebuild(&o12, TLS1_2_VERSION, CERT_B);
}

static void test_resume_tls12_session_cache(void **state)
{
    (void)state;
    struct wh_tls_server *ts = std_server("tls13-12");
    struct copts o = {.sni = "a.example.com", .max = TLS1_2_VERSION, .no_ticket = 1};
    check_resume(ts, &o, TLS1_2_VERSION);
    wh_tls_server_free(ts);
}

static void test_no_resume_on_another_listener(void **state)
{
    (void)state;
    struct wh_tls_server *web = std_server("tls13-12");
    struct tl t;
    char err[256];
    tl_init(&t, "other", "tls13-12", std_certs, N_STD);
    struct wh_tls_server *other = wh_tls_server_new(&t.cfg, &t.l, err, sizeof(err));
    assert_non_null(other);

    for (int max = TLS1_2_VERSION; max <= TLS1_3_VERSION; max++) {
        struct tconn c;
        struct copts o = {.sni = "a.example.com", .max = max};
        assert_int_equal(tconn_open(&c, wh_tls_server_ctx(web), &o), 0);
        SSL_SESSION *sess = tconn_session(&c);
        tconn_close(&c);
        o.session = sess;
        assert_int_equal(tconn_open(&c, wh_tls_server_ctx(other), &o), 0);
        assert_int_equal(SSL_session_reused(c.s), 0); /* a full handshake */
        tconn_close(&c);
        SSL_SESSION_free(sess);
    }
    wh_tls_server_free(other);
    wh_tls_server_free(web);
}

/* ---- lifetime ---- */

static void test_connection_outlives_server_free(void **state)
{
    (void)state;
    /* A reload frees the old server while a connection made from it has not
     * sent its ClientHello yet: its SNI callback still works (ASan checks). */
    struct wh_tls_server *ts = std_server("tls13-12");
    struct tconn t;
    struct copts o = {.sni = "x.b.example.com"};
    tconn_new(&t, wh_tls_server_ctx(ts), &o);
    wh_tls_server_free(ts); /* now only the connection holds the contexts */
    assert_int_equal(tconn_handshake(&t), 0);
    assert_peer_is(&t, CERT_B);
    assert_int_equal(SSL_version(t.s), TLS1_3_VERSION);
    tconn_close(&t);
}

static void test_expired_certificate_accepted(void **state)
{
    (void)state;
    const int certs[] = {CERT_A, CERT_OLD};
    struct tl t;
    char err[256] = "";
    tl_init(&t, "web", "tls13-12", certs, 2);
    struct wh_tls_server *ts = wh_tls_server_new(&t.cfg, &t.l, err, sizeof(err));
    assert_non_null(ts);
    assert_string_equal(err, "");
    assert_int_equal(wh_tls_server_select(ts, "old.example.com"), 1);
    wh_tls_server_free(ts);
}

/* ---- errors ---- */

/* Builds listener "web" whose certificates[1] is (cert, key) after a good
 * one, and checks the error is exactly "test.conf:11: listeners[web].
 * certificates[1]: " + message. */
static void check_error(const char *cert, const char *key, const char *message)
{
    const int idx[] = {CERT_A, CERT_A};
    struct tl t;
    char err[1024], want[1024];
    tl_init(&t, "web", "tls13-12", idx, 2);
    t.certs[1].cert = (char *)cert;
    t.certs[1].key = (char *)key;
    memset(err, 0, sizeof(err));
    assert_null(wh_tls_server_new(&t.cfg, &t.l, err, sizeof(err)));
    snprintf(want, sizeof(want), "test.conf:%d: listeners[web].certificates[1]: %s", FIRST_LINE + 1,
             message);
    assert_string_equal(err, want);
    assert_int_equal(ERR_peek_error(), 0); /* the queue is left empty */

    /* the same entry first: index 0, its own line */
    t.certs[0] = t.certs[1];
    t.certs[0].line = 3;
    t.l.n_certificates = 1;
    assert_null(wh_tls_server_new(&t.cfg, &t.l, err, sizeof(err)));
    snprintf(want, sizeof(want), "test.conf:3: listeners[web].certificates[0]: %s", message);
    assert_string_equal(err, want);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_error_missing_certificate_file(void **state)
{
    (void)state;
    char msg[400];
    snprintf(msg, sizeof(msg), "cannot read certificate %s: No such file or directory", fx.missing);
    check_error(fx.missing, fx.key_path[CERT_A], msg);
}

static void test_error_missing_key_file(void **state)
{
    (void)state;
    char msg[400];
    snprintf(msg, sizeof(msg), "cannot read key %s: No such file or directory", fx.missing);
    check_error(fx.cert_path[CERT_A], fx.missing, msg);
}

static void test_error_directory_as_certificate(void **state)
{
    (void)state;
    char msg[400];
    snprintf(msg, sizeof(msg), "cannot read certificate %s: Is a directory", fx.dir);
    check_error(fx.dir, fx.key_path[CERT_A], msg);
}

static void test_error_key_does_not_match_certificate(void **state)
{
    (void)state;
    char msg[400];
    snprintf(msg, sizeof(msg), "key %s does not match certificate %s", fx.key_path[CERT_B],
             fx.cert_path[CERT_A]);
    check_error(fx.cert_path[CERT_A], fx.key_path[CERT_B], msg);
}

static void test_error_certificate_not_pem(void **state)
{
    (void)state;
    char msg[400];
    snprintf(msg, sizeof(msg), "%s is not a PEM certificate", fx.garbage);
    check_error(fx.garbage, fx.key_path[CERT_A], msg);
    /* a key where the certificate belongs is not a certificate either */
    snprintf(msg, sizeof(msg), "%s is not a PEM certificate", fx.key_path[CERT_A]);
    check_error(fx.key_path[CERT_A], fx.key_path[CERT_A], msg);
}

static void test_error_key_not_pem(void **state)
{
    (void)state;
    char msg[400];
    snprintf(msg, sizeof(msg), "%s is not a PEM private key", fx.garbage);
    check_error(fx.cert_path[CERT_A], fx.garbage, msg);
    snprintf(msg, sizeof(msg), "%s is not a PEM private key (it holds a CERTIFICATE)",
             fx.cert_path[CERT_A]);
    check_error(fx.cert_path[CERT_A], fx.cert_path[CERT_A], msg);
}

static void test_error_encrypted_key(void **state)
{
    (void)state;
    char msg[400];
    /* refused at once: no passphrase prompt on the terminal */
    snprintf(msg, sizeof(msg), "key %s is encrypted: give an unencrypted key", fx.enc_key);
    check_error(fx.cert_path[CERT_A], fx.enc_key, msg);
}

static void report_print(void *arg, int is_error, const char *line)
{
    (void)arg;
    print_message("  %s %s\n", is_error ? "error:" : "warning:", line);
}

static void test_error_line_from_loaded_config(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof(text),
             "target_groups = ( { name = \"web\"; targets = ( \"127.0.0.1:9001\" ); } );\n"
             "listeners = ( { name = \"s\"; bind = \"127.0.0.1:8443\"; protocol = \"https\";\n"
             "  certificates = ( { cert = \"%s\"; key = \"%s\"; },\n"
             "                   { cert = \"%s\"; key = \"%s\"; } );\n"
             "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
             fx.cert_path[CERT_A], fx.key_path[CERT_A], fx.missing, fx.key_path[CERT_A]);
    struct wh_config *cfg =
        wh_config_load_string_ex(text, "test.conf", WH_FEATURES_ALL, report_print, NULL);
    assert_non_null(cfg);
    const struct wh_cfg_listener *l = wh_config_listener(cfg, "s");
    assert_non_null(l);
    char err[1024], want[1024];
    assert_null(wh_tls_server_new(cfg, l, err, sizeof(err)));
    snprintf(want, sizeof(want),
             "test.conf:4: listeners[s].certificates[1]: cannot read certificate %s: No such "
             "file or directory",
             fx.missing);
    assert_string_equal(err, want);
    wh_config_free(cfg);

    /* and a good one loads, with the default policy */
    snprintf(text, sizeof(text),
             "target_groups = ( { name = \"web\"; targets = ( \"127.0.0.1:9001\" ); } );\n"
             "listeners = ( { name = \"s\"; bind = \"127.0.0.1:8443\"; protocol = \"https\";\n"
             "  certificates = ( { cert = \"%s\"; key = \"%s\"; } );\n"
             "  default_action = { forward = ( { target_group = \"web\"; } ); }; } );\n",
             fx.cert_path[CERT_B], fx.key_path[CERT_B]);
    cfg = wh_config_load_string_ex(text, "test.conf", WH_FEATURES_ALL, report_print, NULL);
    assert_non_null(cfg);
    struct wh_tls_server *ts = wh_tls_server_new(cfg, &cfg->listeners[0], err, sizeof(err));
    assert_non_null(ts);
    assert_int_equal(SSL_CTX_get_min_proto_version(wh_tls_server_ctx(ts)), TLS1_2_VERSION);
    assert_int_equal(wh_tls_server_select(ts, "q.b.example.com"), 0);
    wh_tls_server_free(ts);
    wh_config_free(cfg);
}

/* ---- main ---- */

static void remove_fixture_dir(void)
{
    for (int i = 0; i < N_CERTS; i++) {
        if (fx.cert_path[i][0])
            unlink(fx.cert_path[i]);
        if (fx.key_path[i][0])
            unlink(fx.key_path[i]);
    }
    if (fx.garbage[0])
        unlink(fx.garbage);
    if (fx.enc_key[0])
        unlink(fx.enc_key);
    unlink(fx.cnf);
    rmdir(fx.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_system_config_is_in_force),
        cmocka_unit_test(test_policy_tls13_12_sets_min_tls12_max_tls13),
        cmocka_unit_test(test_policy_tls13_sets_min_and_max_tls13),
        cmocka_unit_test(test_default_context_options_and_ecdhe_aead_ciphers),
        cmocka_unit_test(test_sni_context_configured_like_default),
        cmocka_unit_test(test_select_exact_name_case_insensitive),
        cmocka_unit_test(test_select_wildcard_matches_exactly_one_label),
        cmocka_unit_test(test_select_exact_name_beats_earlier_wildcard),
        cmocka_unit_test(test_select_unknown_or_no_name_gives_default),
        cmocka_unit_test(test_select_cn_when_no_san),
        cmocka_unit_test(test_handshake_sni_serves_matching_certificate),
        cmocka_unit_test(test_handshake_tls12_client_gets_tls12),
        cmocka_unit_test(test_handshake_default_is_tls13),
        cmocka_unit_test(test_tls12_client_rejected_by_tls13_policy),
        cmocka_unit_test(test_tls11_client_rejected_by_tls13_12_policy),
        cmocka_unit_test(test_alpn_h2_and_http11_gets_http11),
        cmocka_unit_test(test_alpn_h2_only_gets_no_alpn),
        cmocka_unit_test(test_resume_tls13_ticket),
        cmocka_unit_test(test_resume_tls13_ticket_on_rebuilt_server),
        cmocka_unit_test(test_resume_tls12_ticket_on_rebuilt_server),
        cmocka_unit_test(test_resume_sni_certificate_on_rebuilt_server),
        cmocka_unit_test(test_resume_tls12_session_cache),
        cmocka_unit_test(test_no_resume_on_another_listener),
        cmocka_unit_test(test_connection_outlives_server_free),
        cmocka_unit_test(test_expired_certificate_accepted),
        cmocka_unit_test(test_error_missing_certificate_file),
        cmocka_unit_test(test_error_missing_key_file),
        cmocka_unit_test(test_error_directory_as_certificate),
        cmocka_unit_test(test_error_key_does_not_match_certificate),
        cmocka_unit_test(test_error_certificate_not_pem),
        cmocka_unit_test(test_error_key_not_pem),
        cmocka_unit_test(test_error_encrypted_key),
        cmocka_unit_test(test_error_line_from_loaded_config),
    };

    /* Before any OpenSSL call, so the hostile configuration is the one read. */
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/wh-test-tls-XXXXXX");
    if (!mkdtemp(fx.dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(fx.cnf, sizeof(fx.cnf), "%s/openssl.cnf", fx.dir);
    FILE *f = fopen(fx.cnf, "w");
    if (!f || fputs(hostile_cnf, f) < 0 || fclose(f) != 0) {
        perror(fx.cnf);
        rmdir(fx.dir);
        return 1;
    }
    setenv("OPENSSL_CONF", fx.cnf, 1);

    int rc = cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
    remove_fixture_dir();
    return rc;
}

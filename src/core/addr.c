/* Socket addresses and IP ranges as users write them (include/wharf/addr.h):
 * "1.2.3.4:80", "[::1]:80", "name:80" (resolved once, at load, with
 * getaddrinfo) and "192.0.2.0/24". */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "wharf/addr.h"

/* Split text into host and port; brackets mark an IPv6 literal. */
static int split_host_port(const char *text, char *host, size_t hostlen, const char **port,
                           int *bracketed, char *err, size_t errlen)
{
    const char *colon;
    const char *h = text;
    size_t n;
    *bracketed = text[0] == '[';
    if (*bracketed) {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "\"%s\": write an IPv6 address as [ADDRESS]:PORT", text);
            return -1;
        }
        h = text + 1;
        n = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) {
            snprintf(err, errlen, "\"%s\" has no port: write HOST:PORT", text);
            return -1;
        }
        if (memchr(text, ':', (size_t)(colon - text))) {
            snprintf(err, errlen, "\"%s\": write an IPv6 address in brackets, as [::1]:80", text);
            return -1;
        }
        n = (size_t)(colon - text);
    }
    if (n == 0 || n >= hostlen) {
        snprintf(err, errlen, "\"%s\": %s", text,
                 n ? "host name too long" : "missing host (0.0.0.0:PORT means every address)");
        return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

static int check_port(const char *text, const char *port, char *err, size_t errlen)
{
    long v = 0;
    size_t i = 0;
    for (; port[i] && i < 6; i++) {
        if (!isdigit((unsigned char)port[i]))
            break;
        v = v * 10 + (port[i] - '0');
    }
    if (i == 0 || port[i] != '\0' || v < 1 || v > 65535) {
        snprintf(err, errlen, "\"%s\": the port must be a number from 1 to 65535", text);
        return -1;
    }
    return 0;
}

static void addr_text(struct wh_addr *out)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo((struct sockaddr *)&out->ss, out->len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out->text, sizeof(out->text), "?");
        return;
    }
    if (out->ss.ss_family == AF_INET6)
        snprintf(out->text, sizeof(out->text), "[%.54s]:%.5s", host, serv);
    else
        snprintf(out->text, sizeof(out->text), "%.56s:%.5s", host, serv);
}

int wh_addr_parse(const char *text, struct wh_addr *out, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    int bracketed;
    if (split_host_port(text, host, sizeof(host), &port, &bracketed, err, errlen) < 0 ||
        check_port(text, port, err, errlen) < 0)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
    if (bracketed)
        hints.ai_flags |= AI_NUMERICHOST;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "\"%s\": %s \"%s\": %s", text,
                 bracketed ? "not an IPv6 address" : "cannot resolve", host,
                 rc ? gai_strerror(rc) : "no address");
        if (res)
            freeaddrinfo(res);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    addr_text(out);
    return 0;
}

int wh_addr_equal(const struct wh_addr *a, const struct wh_addr *b)
{
    return a->len == b->len && a->len > 0 && strcmp(a->text, b->text) == 0;
}

int wh_addr_is_loopback(const struct wh_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return 0;
}

int wh_cidr_parse(const char *text, struct wh_cidr *out)
{
    char addr[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(text, '/');
    if (!slash || (size_t)(slash - text) >= sizeof(addr) || !slash[1])
        return -1;
    memcpy(addr, text, (size_t)(slash - text));
    addr[slash - text] = '\0';
    out->family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    unsigned max = out->family == AF_INET6 ? 128 : 32, bits = 0;
    if (inet_pton(out->family, addr, out->addr) != 1)
        return -1;
    for (const char *p = slash + 1; *p; p++)
        if (!isdigit((unsigned char)*p) || (bits = bits * 10 + (unsigned)(*p - '0')) > max)
            return -1;
    if (slash[1] == '0' && slash[2])
        return -1; /* "/024" */
    out->bits = bits;
    return 0;
}

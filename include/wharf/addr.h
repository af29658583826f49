/* Socket addresses and IP ranges as users write them (core: the ground
 * floor, used by config, proxy rules, targets and the runtime).
 *
 *   "1.2.3.4:80", "[::1]:80", "name:80"   wh_addr_parse
 *   "192.0.2.0/24", "2001:db8::/32"       wh_cidr_parse
 */
#ifndef WHARF_ADDR_H
#define WHARF_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* A resolved socket address plus its numeric text form ("127.0.0.1:9001",
 * "[::1]:8080"). */
struct wh_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
};

/* Parse "1.2.3.4:80", "[::1]:80" or "name:80" (resolved with getaddrinfo,
 * blocking; the first address the resolver gives wins). The port must be
 * 1-65535; "0.0.0.0:PORT" and "[::]:PORT" name every address. out->text is
 * the numeric form ("127.0.0.1:80", "[::1]:80"). Returns 0, or -1 with a
 * message in err. */
int wh_addr_parse(const char *text, struct wh_addr *out, char *err, size_t errlen);

/* Same resolved address (both parsed; compares the numeric forms). */
int wh_addr_equal(const struct wh_addr *a, const struct wh_addr *b);

/* 127.0.0.0/8 or ::1. */
int wh_addr_is_loopback(const struct wh_addr *a);

/* An IP range: "192.0.2.0/24" or "2001:db8::/32" (source_ip conditions). */
struct wh_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned bits;
    unsigned char addr[16]; /* only the first `bits` count; host bits are kept as written */
};

/* Parse text ("ADDR/BITS", BITS without leading zeros). Returns 0, or -1
 * when it is not a CIDR block. */
int wh_cidr_parse(const char *text, struct wh_cidr *out);

#endif

/* The fleet and what runs on it: the cluster name, the controller's timing,
 * hosts (the Docker engines), registries (credentials for image pulls) and
 * discovery (hosts found by EC2 tags). Host names in `address` (or in a
 * tcp:// URL without one) are resolved here, once, and password files are
 * read here: their content never reaches a message. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config-int.h"

#define TOP(f) offsetof(struct wh_config, f)
#define CT(f) offsetof(struct wh_cfg_controller, f)
#define HS(f) offsetof(struct wh_cfg_host, f)
#define RG(f) offsetof(struct wh_cfg_registry, f)
#define DS(f) offsetof(struct wh_cfg_discovery, f)
#define EF(f) offsetof(struct wh_cfg_ec2_filter, f)

#define CLUSTER_MAX 64
#define SECRET_MAX 65536

static int check_cluster(const char *v, char *err, size_t errlen);
static int check_docker_url(const char *v, char *err, size_t errlen);
static int check_host_address(const char *v, char *err, size_t errlen);
static int check_registry_server(const char *v, char *err, size_t errlen);
static int check_region(const char *v, char *err, size_t errlen);
static int check_endpoint(const char *v, char *err, size_t errlen);

/* ---- tables ---- */

static const struct cfg_param cluster_params[] = {
    {"cluster", CFG_STRING, TOP(cluster), .min = 1, .max = CLUSTER_MAX, .sdef = "default",
     .check = check_cluster},
};

static const struct cfg_param controller_params[] = {
    CFG_NUM("reconcile_interval", CFG_DURATION, CT(reconcile_interval), 1, 600, 10),
    CFG_NUM("lost_task_grace", CFG_DURATION, CT(lost_task_grace), 0, 3600, 30),
    CFG_NUM("start_backoff_max", CFG_DURATION, CT(start_backoff_max), 1, 3600, 900),
};
static const struct cfg_block controller_block = CFG_BLOCK(controller_params, NULL);

static const struct cfg_param host_params[] = {
    {"id", CFG_NAME, HS(id), .flags = CFG_REQUIRED},
    {"docker", CFG_STRING, HS(docker), .flags = CFG_REQUIRED, .check = check_docker_url},
    {"address", CFG_STRING, HS(address), .check = check_host_address},
    CFG_NUM("max_concurrent_calls", CFG_INT, HS(max_concurrent_calls), 1, 64, 8),
    CFG_NUM("call_timeout", CFG_DURATION, HS(call_timeout), 1, 600, 30),
    CFG_NUM("ping_interval", CFG_DURATION, HS(ping_interval), 0.5, 60, 2),
    CFG_NUM("unreachable_after", CFG_INT, HS(unreachable_after), 1, 20, 3),
    CFG_NUM("draining", CFG_BOOL, HS(draining), 0, 1, 0),
};
static const char *const host_others[] = {"tls", "attributes", NULL};
static const struct cfg_block host_block = CFG_BLOCK(host_params, host_others);

static const struct cfg_param host_tls_params[] = {
    {"ca", CFG_STRING, HS(tls_ca), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
    {"cert", CFG_STRING, HS(tls_cert), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
    {"key", CFG_STRING, HS(tls_key), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block host_tls_block = CFG_BLOCK(host_tls_params, NULL);

static const struct cfg_param registry_params[] = {
    {"server", CFG_STRING, RG(server), .flags = CFG_REQUIRED, .check = check_registry_server},
    {"username", CFG_STRING, RG(username), .check = wh_cfg_check_no_ctl},
    {"password_file", CFG_STRING, RG(password_file), .check = wh_cfg_check_no_ctl},
    CFG_NUM("ecr", CFG_BOOL, RG(ecr), 0, 1, 0),
};
static const struct cfg_block registry_block = CFG_BLOCK(registry_params, NULL);

static const char *const discovery_keys[] = {"ec2", NULL};
static const struct cfg_block discovery_block = {NULL, 0, discovery_keys};

static const char *const ec2_address_names[] = {"private_ip", "public_ip", NULL};
static const struct cfg_param ec2_params[] = {
    {"region", CFG_STRING, DS(region), .flags = CFG_REQUIRED, .check = check_region},
    CFG_NUM("interval", CFG_DURATION, DS(interval), 5, 3600, 30),
    CFG_NUM("docker_port", CFG_INT, DS(docker_port), 1, 65535, 2376),
    {"address", CFG_ENUM, DS(address), .sdef = "private_ip", .choices = ec2_address_names},
    {"endpoint", CFG_STRING, DS(endpoint), .check = check_endpoint},
};
static const char *const ec2_others[] = {"filters", "tls", NULL};
static const struct cfg_block ec2_block = CFG_BLOCK(ec2_params, ec2_others);

static const struct cfg_param ec2_tls_params[] = {
    {"ca", CFG_STRING, DS(tls_ca), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
    {"cert", CFG_STRING, DS(tls_cert), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
    {"key", CFG_STRING, DS(tls_key), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_ctl},
};
static const struct cfg_block ec2_tls_block = CFG_BLOCK(ec2_tls_params, NULL);

static const struct cfg_param filter_params[] = {
    {"name", CFG_STRING, EF(name), .flags = CFG_REQUIRED, .check = wh_cfg_check_no_space},
};
static const char *const filter_others[] = {"values", NULL};
static const struct cfg_block filter_block = CFG_BLOCK(filter_params, filter_others);

/* ---- validators ---- */

static int check_cluster(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) {
            snprintf(err, errlen, "a cluster name may hold only letters, digits, '-', '_', '.'");
            return -1;
        }
    }
    return 0;
}

static int check_docker_url(const char *v, char *err, size_t errlen)
{
    if (strncmp(v, "unix://", 7) == 0 && v[7] == '/' && wh_cfg_check_no_space(v, err, errlen) == 0)
        return 0;
    if (strncmp(v, "tcp://", 6) == 0 && wh_cfg_check_no_space(v, err, errlen) == 0) {
        const char *colon = strrchr(v + 6, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (colon && colon > v + 6 && end && end != colon + 1 && *end == '\0' && port >= 1 &&
            port <= 65535 && !strchr(v + 6, '/'))
            return 0;
    }
    if (wh_cfg_check_no_ctl(v, err, errlen) == 0)
        snprintf(err, errlen, "\"%s\" is not a Docker endpoint: unix:///PATH or tcp://HOST:PORT",
                 v);
    return -1;
}

static int check_host_address(const char *v, char *err, size_t errlen)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1)
        return 0;
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.') {
            if (wh_cfg_check_no_ctl(v, err, errlen) == 0)
                snprintf(err, errlen, "\"%s\" is not an IP address or host name (no port here)", v);
            return -1;
        }
    }
    return 0;
}

/* HOST or HOST:PORT, as the first part of an image reference names it. */
static int check_registry_server(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr(".-:[]", *p)) {
            if (wh_cfg_check_no_ctl(v, err, errlen) == 0)
                snprintf(err, errlen,
                         "\"%s\" is not a registry server: write HOST or HOST:PORT as image "
                         "names do (\"registry.example.com:5000\"), without a scheme or path",
                         v);
            return -1;
        }
    }
    return 0;
}

static int check_region(const char *v, char *err, size_t errlen)
{
    for (const char *p = v; *p; p++) {
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-') {
            if (wh_cfg_check_no_ctl(v, err, errlen) == 0)
                snprintf(err, errlen, "\"%s\" is not an AWS region (such as \"us-east-1\")", v);
            return -1;
        }
    }
    return 0;
}

static int check_endpoint(const char *v, char *err, size_t errlen)
{
    if (wh_cfg_check_no_space(v, err, errlen) < 0)
        return -1;
    if ((strncmp(v, "http://", 7) == 0 && v[7]) || (strncmp(v, "https://", 8) == 0 && v[8]))
        return 0;
    snprintf(err, errlen, "\"%s\" is not an endpoint URL: https://HOST[:PORT] or http://...", v);
    return -1;
}

/* ---- cluster, controller ---- */

void wh_cfg_cluster_parse(struct cfg_ctx *c, const config_setting_t *root)
{
    c->cfg->has_cluster = wh_cfg_member(root, "cluster") != NULL;
    wh_cfg_params_parse(c, root, cluster_params, 1, c->cfg);
}

void wh_cfg_cluster_reset(struct cfg_ctx *c, struct wh_config *cfg)
{
    wh_cfg_params_parse(c, NULL, cluster_params, 1, cfg);
    cfg->has_cluster = 0;
}

void wh_cfg_controller_parse(struct cfg_ctx *c, const config_setting_t *group)
{
    c->cfg->has_controller = group != NULL;
    wh_cfg_block_parse(c, group, &controller_block, &c->cfg->controller);
}

void wh_cfg_controller_reset(struct cfg_ctx *c, struct wh_config *cfg)
{
    wh_cfg_block_parse(c, NULL, &controller_block, &cfg->controller);
    cfg->has_controller = 0;
}

/* ---- hosts ---- */

/* The numeric form of host (a name or an IP) into out (new). The first
 * address the resolver gives wins, as for targets. 0, or -1 with the
 * reason in err. */
static int resolve_host(struct cfg_ctx *c, const char *host, char **out, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char text[NI_MAXHOST];
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc == 0 && res)
        rc =
            getnameinfo(res->ai_addr, res->ai_addrlen, text, sizeof(text), NULL, 0, NI_NUMERICHOST);
    else if (rc == 0)
        rc = EAI_NONAME;
    if (res)
        freeaddrinfo(res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
        return -1;
    }
    *out = wh_cfg_strdup(c, text);
    return 0;
}

/* The host of a valid "tcp://HOST:PORT" into buf, without IPv6 brackets. */
static void docker_url_host(const char *url, char *buf, size_t len)
{
    const char *h = url + 6, *colon = strrchr(h, ':');
    if (*h == '[' && colon > h && colon[-1] == ']') {
        h++;
        colon--;
    }
    snprintf(buf, len, "%.*s", (int)(colon - h), h);
}

/* address_ip: address resolved, else the tcp:// URL's host; a unix://
 * host needs an address. */
static void host_address(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_host *h)
{
    char err[512], host[256];
    if (h->address) {
        if (resolve_host(c, h->address, &h->address_ip, err, sizeof(err)) < 0)
            wh_cfg_error(c, wh_cfg_member(s, "address"), NULL, "%s", err);
    } else if (strncmp(h->docker, "unix://", 7) == 0) {
        wh_cfg_error(c, s, "address",
                     "required for a unix:// host: where its published ports are reached "
                     "(such as \"127.0.0.1\")");
    } else {
        docker_url_host(h->docker, host, sizeof(host));
        if (resolve_host(c, host, &h->address_ip, err, sizeof(err)) < 0)
            wh_cfg_error(c, wh_cfg_member(s, "docker"), NULL,
                         "%s (or set address to where its published ports are reached)", err);
    }
}

static void parse_host(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_host *h)
{
    h->line = (int)config_setting_source_line(s);
    int rc = wh_cfg_block_parse(c, s, &host_block, h);
    if (rc < 0 && !config_setting_is_group(s))
        return;
    const config_setting_t *tls = wh_cfg_member(s, "tls");
    if (tls) {
        wh_cfg_block_parse(c, tls, &host_tls_block, h);
        if (h->docker && strncmp(h->docker, "tcp://", 6) != 0)
            wh_cfg_error(c, tls, NULL, "only for tcp:// Docker endpoints");
    }
    const config_setting_t *attrs = wh_cfg_member(s, "attributes");
    if (attrs)
        wh_cfg_kv_group(c, attrs, &h->attributes, &h->n_attributes);
    int address_ok = !wh_cfg_member(s, "address") || h->address;
    if (h->docker && address_ok)
        host_address(c, s, h);
    for (const struct wh_cfg_host *o = c->cfg->hosts; h->id[0] && o < h; o++)
        if (strcmp(o->id, h->id) == 0)
            wh_cfg_error(c, s, "id", "duplicate host id \"%s\" (first at line %d)", h->id, o->line);
}

void wh_cfg_hosts_parse(struct cfg_ctx *c, const config_setting_t *list)
{
    struct wh_config *cfg = c->cfg;
    if (!list || wh_cfg_expect_list(c, list) < 0)
        return;
    cfg->has_hosts = 1;
    size_t n = (size_t)config_setting_length(list);
    cfg->hosts = wh_cfg_calloc(c, n, sizeof(*cfg->hosts));
    if (!cfg->hosts)
        return;
    for (size_t i = 0; i < n; i++)
        parse_host(c, config_setting_get_elem(list, (unsigned)i), &cfg->hosts[cfg->n_hosts++]);
}

void wh_cfg_hosts_free(struct wh_config *cfg)
{
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        struct wh_cfg_host *h = &cfg->hosts[i];
        free(h->docker);
        free(h->address);
        free(h->address_ip);
        free(h->tls_ca);
        free(h->tls_cert);
        free(h->tls_key);
        wh_cfg_free_kv(h->attributes, h->n_attributes);
    }
    free(cfg->hosts);
    cfg->hosts = NULL;
    cfg->n_hosts = 0;
    cfg->has_hosts = 0;
}

const struct wh_cfg_host *wh_config_host(const struct wh_config *cfg, const char *id)
{
    for (size_t i = 0; cfg && id && i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].id, id) == 0)
            return &cfg->hosts[i];
    return NULL;
}

/* ---- registries ---- */

/* The first line of path, without leading and trailing blanks and the line
 * end, into *out (new). 0, or -1 with the reason in err, which names the
 * file and never holds its content. */
static int read_secret(struct cfg_ctx *c, const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    errno = 0;
    ssize_t n = getline(&line, &cap, f);
    int read_errno = n < 0 && ferror(f) ? errno : 0;
    fclose(f);
    size_t b = 0, e = n > 0 ? (size_t)n : 0;
    while (b < e && (line[b] == ' ' || line[b] == '\t'))
        b++;
    while (e > b && strchr(" \t\r\n", line[e - 1]))
        e--;
    int rc = -1;
    if (read_errno)
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(read_errno));
    else if (e - b > SECRET_MAX)
        snprintf(err, errlen, "%s: the first line is longer than %d bytes", path, SECRET_MAX);
    else if (e == b)
        snprintf(err, errlen, "%s: the first line holds no password", path);
    else if ((*out = strndup(line + b, e - b)))
        rc = 0;
    else
        c->oom = 1;
    if (line)
        explicit_bzero(line, cap);
    free(line);
    return rc;
}

static void registry_credentials(struct cfg_ctx *c, const config_setting_t *s,
                                 struct wh_cfg_registry *r)
{
    const config_setting_t *ecr = wh_cfg_member(s, "ecr");
    const config_setting_t *file = wh_cfg_member(s, "password_file");
    int user = wh_cfg_member(s, "username") != NULL;
    char err[512];
    if (ecr && config_setting_type(ecr) != CONFIG_TYPE_BOOL)
        return; /* reported; which rules apply is unknown */
    if (r->ecr) {
        if (user)
            wh_cfg_error(c, s, "username", "not with ecr = true: ECR gives the credentials");
        if (file)
            wh_cfg_error(c, s, "password_file", "not with ecr = true: ECR gives the credentials");
    } else if (!user && !file) {
        wh_cfg_error(c, s, NULL, "needs username and password_file (or ecr = true)");
    } else if (!file) {
        wh_cfg_error(c, s, "password_file", "required with username");
    } else if (!user) {
        wh_cfg_error(c, s, "username", "required with password_file");
    } else if (r->password_file &&
               read_secret(c, r->password_file, &r->password, err, sizeof(err)) < 0) {
        wh_cfg_error(c, file, NULL, "%s", err);
    }
}

static void parse_registry(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_registry *r)
{
    r->line = (int)config_setting_source_line(s);
    if (wh_cfg_block_parse(c, s, &registry_block, r) < 0 && !config_setting_is_group(s))
        return;
    registry_credentials(c, s, r);
    for (const struct wh_cfg_registry *o = c->cfg->registries; r->server && o < r; o++)
        if (o->server && strcmp(o->server, r->server) == 0)
            wh_cfg_error(c, s, "server", "duplicate registry server \"%s\" (first at line %d)",
                         r->server, o->line);
}

void wh_cfg_registries_parse(struct cfg_ctx *c, const config_setting_t *list)
{
    struct wh_config *cfg = c->cfg;
    if (!list || wh_cfg_expect_list(c, list) < 0)
        return;
    cfg->has_registries = 1;
    size_t n = (size_t)config_setting_length(list);
    cfg->registries = wh_cfg_calloc(c, n, sizeof(*cfg->registries));
    if (!cfg->registries)
        return;
    for (size_t i = 0; i < n; i++)
        parse_registry(c, config_setting_get_elem(list, (unsigned)i),
                       &cfg->registries[cfg->n_registries++]);
}

void wh_cfg_registries_free(struct wh_config *cfg)
{
    for (size_t i = 0; i < cfg->n_registries; i++) {
        struct wh_cfg_registry *r = &cfg->registries[i];
        free(r->server);
        free(r->username);
        free(r->password_file);
        if (r->password)
            explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(cfg->registries);
    cfg->registries = NULL;
    cfg->n_registries = 0;
    cfg->has_registries = 0;
}

/* ---- discovery ---- */

static void parse_filters(struct cfg_ctx *c, const config_setting_t *s, struct wh_cfg_discovery *d)
{
    if (wh_cfg_expect_list(c, s) < 0)
        return;
    size_t n = (size_t)config_setting_length(s);
    if (n > CFG_MAX_EC2_FILTERS) {
        wh_cfg_error(c, s, NULL, "has %zu filters; at most %d are allowed", n, CFG_MAX_EC2_FILTERS);
        return;
    }
    d->filters = wh_cfg_calloc(c, n, sizeof(*d->filters));
    for (size_t i = 0; d->filters && i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct wh_cfg_ec2_filter *f = &d->filters[d->n_filters++];
        if (wh_cfg_block_parse(c, e, &filter_block, f) < 0 && !config_setting_is_group(e))
            continue;
        const config_setting_t *v = wh_cfg_member(e, "values");
        if (!v)
            wh_cfg_error(c, e, "values", "required key is missing");
        else if (wh_cfg_string_list(c, v, CFG_MAX_EC2_FILTER_VALUES, wh_cfg_check_no_ctl,
                                    &f->values, &f->n_values) == 0 &&
                 f->n_values == 0)
            wh_cfg_error(c, v, NULL, "needs at least one value");
    }
}

void wh_cfg_discovery_parse(struct cfg_ctx *c, const config_setting_t *group)
{
    struct wh_cfg_discovery *d = &c->cfg->discovery;
    c->cfg->has_discovery = group != NULL;
    wh_cfg_block_parse(c, group, &discovery_block, NULL);
    const config_setting_t *ec2 = wh_cfg_member(group, "ec2");
    wh_cfg_block_parse(c, ec2, &ec2_block, d);
    if (!ec2 || !config_setting_is_group(ec2))
        return;
    d->enabled = 1;
    const config_setting_t *m;
    if ((m = wh_cfg_member(ec2, "filters")))
        parse_filters(c, m, d);
    if ((m = wh_cfg_member(ec2, "tls")))
        wh_cfg_block_parse(c, m, &ec2_tls_block, d);
}

void wh_cfg_discovery_reset(struct cfg_ctx *c, struct wh_config *cfg)
{
    struct wh_cfg_discovery *d = &cfg->discovery;
    free(d->region);
    free(d->endpoint);
    free(d->tls_ca);
    free(d->tls_cert);
    free(d->tls_key);
    for (size_t i = 0; i < d->n_filters; i++) {
        free(d->filters[i].name);
        wh_cfg_free_strv(d->filters[i].values, d->filters[i].n_values);
    }
    free(d->filters);
    memset(d, 0, sizeof(*d));
    cfg->has_discovery = 0;
    if (c)
        wh_cfg_block_parse(c, NULL, &ec2_block, d);
}

/* Docker driver: the pure parts (no I/O, no loop) — endpoint URLs, query
 * strings, the line splitter, JSON to structs and back, the re-list diff.
 * Everything here is unit-tested in tests/unit/test_runtime.c. */
#include "runtime/runtime-int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define LINES_MAX_DEFAULT (1024 * 1024)

/* ---- endpoints and queries ---- */

static int parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

static int endpoint_tcp(const char *rest, int tls, struct wh_dk_endpoint *out, char *err,
                        size_t errlen)
{
    char host[100];
    int port = tls ? 2376 : 2375;
    const char *colon;
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        if (!close || (close[1] && close[1] != ':'))
            goto bad;
        colon = close[1] ? close + 1 : NULL;
        if ((size_t)(close - rest + 1) >= sizeof(host))
            goto bad;
        snprintf(host, sizeof(host), "%.*s", (int)(close - rest + 1), rest);
    } else {
        colon = strchr(rest, ':');
        size_t hl = colon ? (size_t)(colon - rest) : strlen(rest);
        if (hl >= sizeof(host) || memchr(rest, '/', hl))
            goto bad;
        snprintf(host, sizeof(host), "%.*s", (int)hl, rest);
    }
    if (!host[0] || (colon && parse_port(colon + 1, &port) != 0))
        goto bad;
    snprintf(out->base_url, sizeof(out->base_url), "%s://%s:%d", tls ? "https" : "http", host,
             port);
    return 0;
bad:
    snprintf(err, errlen, "bad docker endpoint \"tcp://%s\": expected tcp://ADDR:PORT", rest);
    return -1;
}

int wh_dk_endpoint_parse(const char *url, int tls, struct wh_dk_endpoint *out, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!url) {
        snprintf(err, errlen, "no docker endpoint");
        return -1;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        if (path[0] != '/' || strlen(path) >= sizeof(out->socket_path)) {
            snprintf(err, errlen,
                     "bad docker endpoint \"%s\": expected unix:///absolute/path "
                     "(shorter than %zu bytes)",
                     url, sizeof(out->socket_path));
            return -1;
        }
        out->is_unix = 1;
        snprintf(out->socket_path, sizeof(out->socket_path), "%s", path);
        snprintf(out->base_url, sizeof(out->base_url), "http://localhost");
        return 0;
    }
    if (strncmp(url, "tcp://", 6) == 0)
        return endpoint_tcp(url + 6, tls, out, err, errlen);
    snprintf(err, errlen, "bad docker endpoint \"%s\": expected unix:///path or tcp://ADDR:PORT",
             url);
    return -1;
}

char *wh_dk_urlencode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *p = out;
    if (!out)
        return NULL;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if (isalnum(*q) || *q == '-' || *q == '.' || *q == '_' || *q == '~') {
            *p++ = (char)*q;
        } else {
            *p++ = '%';
            *p++ = hex[*q >> 4];
            *p++ = hex[*q & 15];
        }
    }
    *p = '\0';
    return out;
}

char *wh_dk_filters_query(const char *const *labels, size_t n, int events)
{
    if (!n && !events)
        return strdup("");
    char *text = NULL, *out = NULL;
    cJSON *f = cJSON_CreateObject();
    if (!f)
        return NULL;
    if (events) {
        const char *type = "container";
        if (!cJSON_AddItemToObject(f, "type", cJSON_CreateStringArray(&type, 1)))
            goto done;
    }
    if (n && !cJSON_AddItemToObject(f, "label", cJSON_CreateStringArray(labels, (int)n)))
        goto done;
    text = cJSON_PrintUnformatted(f);
    if (text)
        out = wh_dk_urlencode(text);
done:
    cJSON_free(text);
    cJSON_Delete(f);
    return out;
}

/* ---- the line splitter ---- */

static int lines_emit(struct wh_dk_lines *ls, char *line, size_t len, wh_dk_line_fn fn, void *arg)
{
    if (len && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    return len ? fn(arg, line, len) : 0;
}

/* Emit the lines complete in buf, keep the tail. */
static int lines_drain(struct wh_dk_lines *ls, wh_dk_line_fn fn, void *arg)
{
    size_t start = 0;
    int rc = 0;
    for (char *nl; rc == 0 && (nl = memchr(ls->buf + start, '\n', ls->len - start));) {
        size_t end = (size_t)(nl - ls->buf);
        rc = lines_emit(ls, ls->buf + start, end - start, fn, arg);
        start = end + 1;
    }
    memmove(ls->buf, ls->buf + start, ls->len - start);
    ls->len -= start;
    return rc;
}

int wh_dk_lines_feed(struct wh_dk_lines *ls, const char *data, size_t n, wh_dk_line_fn fn,
                     void *arg)
{
    size_t max = ls->max ? ls->max : LINES_MAX_DEFAULT;
    while (n) {
        size_t room = ls->cap - ls->len;
        if (room <= 1) {
            size_t cap = ls->cap ? ls->cap * 2 : 4096;
            if (cap > max + 2)
                cap = max + 2;
            if (cap <= ls->cap)
                goto too_long;
            char *p = realloc(ls->buf, cap);
            if (!p)
                goto too_long;
            ls->buf = p;
            ls->cap = cap;
            continue;
        }
        size_t take = n < room - 1 ? n : room - 1;
        memcpy(ls->buf + ls->len, data, take);
        ls->len += take;
        data += take;
        n -= take;
        if (lines_drain(ls, fn, arg) != 0)
            return -1;
    }
    return 0;
too_long:
    wh_dk_lines_reset(ls);
    return -1;
}

void wh_dk_lines_reset(struct wh_dk_lines *ls)
{
    ls->len = 0;
}

void wh_dk_lines_free(struct wh_dk_lines *ls)
{
    free(ls->buf);
    ls->buf = NULL;
    ls->len = ls->cap = 0;
}

/* ---- containers ---- */

static void copy_str(char *dst, size_t len, const cJSON *item)
{
    const char *s = cJSON_IsString(item) ? item->valuestring : "";
    snprintf(dst, len, "%s", s);
}

static int json_int(const cJSON *item, int dflt)
{
    return cJSON_IsNumber(item) ? item->valueint : dflt;
}

int wh_dk_kv_from_object(const cJSON *obj, struct wh_rt_kv **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t count = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        if (cJSON_IsString(it))
            count++;
    }
    if (!count)
        return 0;
    struct wh_rt_kv *kv = calloc(count, sizeof(*kv));
    if (!kv)
        return -1;
    cJSON_ArrayForEach(it, obj)
    {
        if (cJSON_IsString(it))
            kv[(*n)++] = (struct wh_rt_kv){it->string, it->valuestring};
    }
    *out = kv;
    return 0;
}

static int ctr_labels(struct wh_dk_ctr *out, const cJSON *labels)
{
    out->labels = cJSON_IsObject(labels) ? cJSON_Duplicate(labels, 1) : cJSON_CreateObject();
    if (!out->labels || wh_dk_kv_from_object(out->labels, &out->kv, &out->c.n_labels) != 0)
        return -1;
    out->c.labels = out->kv;
    return 0;
}

int wh_dk_status_exit_code(const char *status)
{
    int code;
    if (status && sscanf(status, "Exited (%d)", &code) == 1)
        return code;
    return -1;
}

static int state_running(const char *state)
{
    return strcmp(state, "running") == 0 || strcmp(state, "paused") == 0;
}

static void list_port(const cJSON *ports, struct wh_rt_container *c)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, ports)
    {
        const cJSON *ip = cJSON_GetObjectItemCaseSensitive(p, "IP");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "Type");
        int pub = json_int(cJSON_GetObjectItemCaseSensitive(p, "PublicPort"), 0);
        if (!cJSON_IsString(ip) || strchr(ip->valuestring, ':') || !pub)
            continue;
        if (cJSON_IsString(type) && strcmp(type->valuestring, "tcp") != 0)
            continue;
        c->host_port = pub;
        c->container_port = json_int(cJSON_GetObjectItemCaseSensitive(p, "PrivatePort"), 0);
        return;
    }
}

int wh_dk_ctr_from_list(const cJSON *item, struct wh_dk_ctr *out)
{
    memset(out, 0, sizeof(*out));
    struct wh_rt_container *c = &out->c;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "Id");
    if (!cJSON_IsString(id))
        return -1;
    copy_str(c->id, sizeof(c->id), id);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(item, "Names");
    const cJSON *first = cJSON_GetArrayItem(names, 0);
    if (cJSON_IsString(first))
        snprintf(c->name, sizeof(c->name), "%s",
                 first->valuestring + (first->valuestring[0] == '/'));
    copy_str(c->image, sizeof(c->image), cJSON_GetObjectItemCaseSensitive(item, "Image"));
    copy_str(c->state, sizeof(c->state), cJSON_GetObjectItemCaseSensitive(item, "State"));
    copy_str(c->status, sizeof(c->status), cJSON_GetObjectItemCaseSensitive(item, "Status"));
    c->running = state_running(c->state);
    c->exit_code = wh_dk_status_exit_code(c->status);
    list_port(cJSON_GetObjectItemCaseSensitive(item, "Ports"), c);
    if (ctr_labels(out, cJSON_GetObjectItemCaseSensitive(item, "Labels")) != 0) {
        wh_dk_ctr_clear(out);
        return -1;
    }
    return 0;
}

int wh_dk_ports_ipv4(const cJSON *ports, int want_port, int *container_port, int *host_port)
{
    const cJSON *binding;
    cJSON_ArrayForEach(binding, ports)
    {
        int cport, proto_ok = 0;
        char proto[8] = "";
        if (!binding->string || sscanf(binding->string, "%d/%7s", &cport, proto) < 1)
            continue;
        proto_ok = !proto[0] || strcmp(proto, "tcp") == 0;
        if (!proto_ok || (want_port && cport != want_port))
            continue;
        const cJSON *b;
        cJSON_ArrayForEach(b, binding)
        {
            const cJSON *ip = cJSON_GetObjectItemCaseSensitive(b, "HostIp");
            const cJSON *port = cJSON_GetObjectItemCaseSensitive(b, "HostPort");
            if (!cJSON_IsString(ip) || strchr(ip->valuestring, ':') || !cJSON_IsString(port))
                continue;
            int hp = atoi(port->valuestring);
            if (hp <= 0 || hp > 65535)
                continue;
            *container_port = cport;
            *host_port = hp;
            return 0;
        }
    }
    return -1;
}

static void inspect_state(const cJSON *state, struct wh_rt_container *c)
{
    copy_str(c->state, sizeof(c->state), cJSON_GetObjectItemCaseSensitive(state, "Status"));
    c->running = state_running(c->state);
    c->exit_code = json_int(cJSON_GetObjectItemCaseSensitive(state, "ExitCode"), -1);
    c->pid = json_int(cJSON_GetObjectItemCaseSensitive(state, "Pid"), 0);
    copy_str(c->started_at, sizeof(c->started_at),
             cJSON_GetObjectItemCaseSensitive(state, "StartedAt"));
    copy_str(c->finished_at, sizeof(c->finished_at),
             cJSON_GetObjectItemCaseSensitive(state, "FinishedAt"));
    /* Docker's zero time means "never". */
    if (strncmp(c->started_at, "0001-", 5) == 0)
        c->started_at[0] = '\0';
    if (strncmp(c->finished_at, "0001-", 5) == 0)
        c->finished_at[0] = '\0';
    const cJSON *health = cJSON_GetObjectItemCaseSensitive(state, "Health");
    copy_str(c->health, sizeof(c->health), cJSON_GetObjectItemCaseSensitive(health, "Status"));
}

int wh_dk_ctr_from_inspect(const cJSON *doc, struct wh_dk_ctr *out)
{
    memset(out, 0, sizeof(*out));
    struct wh_rt_container *c = &out->c;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "Id");
    if (!cJSON_IsString(id))
        return -1;
    copy_str(c->id, sizeof(c->id), id);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "Name");
    if (cJSON_IsString(name))
        snprintf(c->name, sizeof(c->name), "%s", name->valuestring + (name->valuestring[0] == '/'));
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(doc, "Config");
    copy_str(c->image, sizeof(c->image), cJSON_GetObjectItemCaseSensitive(config, "Image"));
    inspect_state(cJSON_GetObjectItemCaseSensitive(doc, "State"), c);
    const cJSON *net = cJSON_GetObjectItemCaseSensitive(doc, "NetworkSettings");
    wh_dk_ports_ipv4(cJSON_GetObjectItemCaseSensitive(net, "Ports"), 0, &c->container_port,
                     &c->host_port);
    if (ctr_labels(out, cJSON_GetObjectItemCaseSensitive(config, "Labels")) != 0) {
        wh_dk_ctr_clear(out);
        return -1;
    }
    return 0;
}

int wh_dk_ctr_set(struct wh_dk_ctr *out, const char *id, const char *name, int running,
                  int exit_code, const cJSON *labels)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->c.id, sizeof(out->c.id), "%s", id);
    snprintf(out->c.name, sizeof(out->c.name), "%s", name ? name : "");
    snprintf(out->c.state, sizeof(out->c.state), "%s", running ? "running" : "exited");
    out->c.running = running;
    out->c.exit_code = exit_code;
    if (ctr_labels(out, labels) != 0) {
        wh_dk_ctr_clear(out);
        return -1;
    }
    return 0;
}

int wh_dk_ctr_copy(struct wh_dk_ctr *dst, const struct wh_dk_ctr *src)
{
    *dst = *src;
    dst->kv = NULL;
    dst->labels = NULL;
    dst->c.labels = NULL;
    dst->c.n_labels = 0;
    if (ctr_labels(dst, src->labels) != 0) {
        wh_dk_ctr_clear(dst);
        return -1;
    }
    return 0;
}

void wh_dk_ctr_clear(struct wh_dk_ctr *ctr)
{
    free(ctr->kv);
    cJSON_Delete(ctr->labels);
    memset(ctr, 0, sizeof(*ctr));
}

static int ctr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct wh_dk_ctr *)a)->c.id, ((const struct wh_dk_ctr *)b)->c.id);
}

void wh_dk_ctr_sort(struct wh_dk_ctr *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), ctr_cmp);
}

long wh_dk_ctr_find(const struct wh_dk_ctr *v, size_t n, const char *id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(v[mid].c.id, id);
        if (cmp == 0)
            return (long)mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- container lists ---- */

void wh_dk_list_free(struct wh_dk_ctr *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wh_dk_ctr_clear(&v[i]);
    free(v);
}

int wh_dk_list_parse(const cJSON *doc, struct wh_dk_ctr **out, size_t *n)
{
    size_t count = (size_t)cJSON_GetArraySize(doc);
    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(doc))
        return -1;
    if (!count)
        return 0;
    struct wh_dk_ctr *v = calloc(count, sizeof(*v));
    if (!v)
        return -1;
    const cJSON *item;
    cJSON_ArrayForEach(item, doc)
    {
        if (wh_dk_ctr_from_list(item, &v[*n]) != 0) {
            wh_dk_list_free(v, *n);
            *n = 0;
            return -1;
        }
        (*n)++;
    }
    *out = v;
    return 0;
}

char *wh_dk_list_path(const char *const *labels, size_t n_labels)
{
    char *filters = wh_dk_filters_query(labels, n_labels, 0), *path = NULL;
    if (filters &&
        asprintf(&path, "/containers/json?all=1%s%s", filters[0] ? "&filters=" : "", filters) < 0)
        path = NULL;
    free(filters);
    return path;
}

/* ---- the re-list diff ---- */

static void diff_new(const struct wh_dk_ctr *c, wh_dk_diff_fn fn, void *arg)
{
    if (c->c.running)
        fn(arg, "start", c, -1);
    else if (strcmp(c->c.state, "created") == 0)
        fn(arg, "create", c, -1);
    else
        fn(arg, "die", c, c->c.exit_code);
}

static void diff_gone(const struct wh_dk_ctr *c, wh_dk_diff_fn fn, void *arg)
{
    if (c->c.running)
        fn(arg, "die", c, -1);
    fn(arg, "destroy", c, -1);
}

void wh_dk_diff(const struct wh_dk_ctr *old, size_t n_old, const struct wh_dk_ctr *cur,
                size_t n_cur, wh_dk_diff_fn fn, void *arg)
{
    size_t i = 0, j = 0;
    while (i < n_old || j < n_cur) {
        int cmp = i == n_old ? 1 : j == n_cur ? -1 : strcmp(old[i].c.id, cur[j].c.id);
        if (cmp < 0) {
            diff_gone(&old[i++], fn, arg);
        } else if (cmp > 0) {
            diff_new(&cur[j++], fn, arg);
        } else {
            if (old[i].c.running && !cur[j].c.running)
                fn(arg, "die", &cur[j], cur[j].c.exit_code);
            else if (!old[i].c.running && cur[j].c.running)
                fn(arg, "start", &cur[j], -1);
            i++;
            j++;
        }
    }
}

/* ---- events ---- */

int wh_dk_event_parse(const cJSON *doc, struct wh_rt_event *ev, struct wh_rt_kv **kv)
{
    memset(ev, 0, sizeof(*ev));
    *kv = NULL;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "Type");
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(doc, "Action");
    const cJSON *actor = cJSON_GetObjectItemCaseSensitive(doc, "Actor");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(actor, "ID");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "container") != 0 ||
        !cJSON_IsString(action) || !cJSON_IsString(id))
        return -1;
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(actor, "Attributes");
    ev->kind = WH_RT_EV_CONTAINER;
    ev->exit_code = -1;
    copy_str(ev->action, sizeof(ev->action), action);
    copy_str(ev->id, sizeof(ev->id), id);
    copy_str(ev->name, sizeof(ev->name), cJSON_GetObjectItemCaseSensitive(attrs, "name"));
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(attrs, "exitCode");
    if (strcmp(ev->action, "die") == 0 && cJSON_IsString(code))
        ev->exit_code = atoi(code->valuestring);
    const cJSON *nano = cJSON_GetObjectItemCaseSensitive(doc, "timeNano");
    const cJSON *secs = cJSON_GetObjectItemCaseSensitive(doc, "time");
    ev->time = cJSON_IsNumber(nano)   ? nano->valuedouble / 1e9
               : cJSON_IsNumber(secs) ? secs->valuedouble
                                      : 0;
    if (wh_dk_kv_from_object(attrs, kv, &ev->n_labels) != 0)
        return -1;
    ev->labels = *kv;
    return 0;
}

/* ---- requests ---- */

static int add_kv_object(cJSON *parent, const char *name, const struct wh_rt_kv *kv, size_t n)
{
    cJSON *obj = cJSON_AddObjectToObject(parent, name);
    if (!obj)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!kv[i].key || !cJSON_AddStringToObject(obj, kv[i].key, kv[i].value ? kv[i].value : ""))
            return -1;
    return 0;
}

static int add_env(cJSON *body, const struct wh_rt_kv *env, size_t n, char *err, size_t errlen)
{
    cJSON *arr = cJSON_AddArrayToObject(body, "Env");
    if (!arr)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!env[i].key || !env[i].key[0] || strchr(env[i].key, '=')) {
            snprintf(err, errlen, "bad environment variable name \"%s\"",
                     env[i].key ? env[i].key : "");
            return -1;
        }
        const char *v = env[i].value ? env[i].value : "";
        size_t len = strlen(env[i].key) + strlen(v) + 2;
        char *s = malloc(len);
        if (!s)
            return -1;
        snprintf(s, len, "%s=%s", env[i].key, v);
        cJSON *item = cJSON_CreateString(s);
        free(s);
        if (!item || !cJSON_AddItemToArray(arr, item))
            return -1;
    }
    return 0;
}

static int add_port(cJSON *body, cJSON *hc, int port)
{
    char key[16];
    snprintf(key, sizeof(key), "%d/tcp", port);
    cJSON *exposed = cJSON_AddObjectToObject(body, "ExposedPorts");
    cJSON *bindings = cJSON_AddObjectToObject(hc, "PortBindings");
    if (!exposed || !bindings || !cJSON_AddObjectToObject(exposed, key))
        return -1;
    cJSON *list = cJSON_AddArrayToObject(bindings, key);
    cJSON *b = cJSON_CreateObject();
    if (!list || !b || !cJSON_AddItemToArray(list, b))
        return -1;
    if (!cJSON_AddStringToObject(b, "HostIp", "0.0.0.0") ||
        !cJSON_AddStringToObject(b, "HostPort", ""))
        return -1;
    return 0;
}

static int add_host_config(cJSON *body, const struct wh_rt_create_spec *s)
{
    cJSON *hc = cJSON_AddObjectToObject(body, "HostConfig");
    if (!hc)
        return -1;
    if (s->container_port && add_port(body, hc, s->container_port) != 0)
        return -1;
    if (s->memory_mib && !cJSON_AddNumberToObject(hc, "Memory", (double)s->memory_mib * 1048576.0))
        return -1;
    if (s->cpu_shares && !cJSON_AddNumberToObject(hc, "CpuShares", s->cpu_shares))
        return -1;
    if (s->log_driver || s->n_log_opts) {
        cJSON *lc = cJSON_AddObjectToObject(hc, "LogConfig");
        if (!lc || !cJSON_AddStringToObject(lc, "Type", s->log_driver ? s->log_driver : ""))
            return -1;
        if (add_kv_object(lc, "Config", s->log_opts, s->n_log_opts) != 0)
            return -1;
    }
    return 0;
}

static int create_check(const struct wh_rt_create_spec *s, char *err, size_t errlen)
{
    if (!s->image || !s->image[0])
        snprintf(err, errlen, "no image given");
    else if (s->container_port < 0 || s->container_port > 65535)
        snprintf(err, errlen, "container port %d out of range 0..65535", s->container_port);
    else if (s->memory_mib < 0 || s->cpu_shares < 0)
        snprintf(err, errlen, "negative memory or cpu reservation");
    else
        return 0;
    return -1;
}

char *wh_dk_create_body(const struct wh_rt_create_spec *s, char *err, size_t errlen)
{
    char *text = NULL;
    snprintf(err, errlen, "out of memory");
    if (create_check(s, err, errlen) != 0)
        return NULL;
    cJSON *body = cJSON_CreateObject();
    if (!body || !cJSON_AddStringToObject(body, "Image", s->image))
        goto done;
    if (s->n_cmd) {
        cJSON *cmd = cJSON_CreateStringArray((const char *const *)s->cmd, (int)s->n_cmd);
        if (!cmd || !cJSON_AddItemToObject(body, "Cmd", cmd))
            goto done;
    }
    if (add_env(body, s->env, s->n_env, err, errlen) != 0 ||
        add_kv_object(body, "Labels", s->labels, s->n_labels) != 0)
        goto done;
    if (s->stop_signal && !cJSON_AddStringToObject(body, "StopSignal", s->stop_signal))
        goto done;
    if (s->stop_timeout >= 0 && !cJSON_AddNumberToObject(body, "StopTimeout", s->stop_timeout))
        goto done;
    if (add_host_config(body, s) != 0)
        goto done;
    text = cJSON_PrintUnformatted(body);
done:
    cJSON_Delete(body);
    return text;
}

int wh_dk_image_ref_split(const char *ref, char *repo, size_t repolen, char *tag, size_t taglen)
{
    if (!ref || !ref[0])
        return -1;
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(slash ? slash : ref, ':');
    const char *at = strchr(ref, '@');
    size_t rl = at ? strlen(ref) : colon ? (size_t)(colon - ref) : strlen(ref);
    const char *t = at ? "" : colon ? colon + 1 : "latest";
    if (rl == 0 || rl >= repolen || strlen(t) >= taglen || (colon && !at && !*t))
        return -1;
    snprintf(repo, repolen, "%.*s", (int)rl, ref);
    snprintf(tag, taglen, "%s", t);
    return 0;
}

char *wh_dk_registry_auth(const struct wh_rt_auth *auth)
{
    char *json = NULL, *out = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "username", auth->username ? auth->username : "") ||
        !cJSON_AddStringToObject(o, "password", auth->password ? auth->password : ""))
        goto done;
    if (auth->server_address && !cJSON_AddStringToObject(o, "serveraddress", auth->server_address))
        goto done;
    json = cJSON_PrintUnformatted(o);
    if (!json)
        goto done;
    size_t n = strlen(json);
    out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        goto done;
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)json, (int)n);
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
done:
    cJSON_free(json);
    cJSON_Delete(o);
    return out;
}

static long version_num(const char *v)
{
    int major = 0, minor = 0;
    if (!v || sscanf(v, "%d.%d", &major, &minor) < 1)
        return -1;
    return major * 1000L + minor;
}

void wh_dk_pick_version(const char *server, const char *server_min, char *out, size_t outlen)
{
    long ours = version_num(WH_DK_API_VERSION), theirs = version_num(server);
    long min = version_num(server_min);
    const char *pick = WH_DK_API_VERSION;
    if (theirs > 0 && theirs < ours)
        pick = server;
    else if (min > ours)
        pick = server_min;
    snprintf(out, outlen, "%s", pick);
}

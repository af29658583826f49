/* Docker driver: the operations of the wh_runtime interface, each one or two
 * Engine API calls queued through docker_transport.c (which does queueing,
 * timeouts and errors). docker.c puts them in the ops table. */
#include "runtime/runtime-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/obj.h"

/* The context of an operation: the user's callback and what the answer
 * needs. One allocation per operation, freed when it completes. */
struct op {
    unsigned magic;
#define OP_MAGIC 0x646b6f70u /* "dkop" */
    struct wh_dk *dk;
    union {
        wh_rt_done_fn done;
        wh_rt_info_fn info;
        wh_rt_image_fn image;
        wh_rt_create_fn create;
        wh_rt_inspect_fn inspect;
        wh_rt_list_fn list;
    } cb;
    void *arg;
    /* pulls */
    char *image, *auth;
    enum wh_rt_pull_policy policy;
    struct wh_dk_lines lines;
    char pull_error[200];
};

static struct op *op_new(struct wh_runtime *rt, void *arg)
{
    struct op *op = calloc(1, sizeof(*op));
    if (op) {
        WH_INIT_OBJ(op, OP_MAGIC);
        op->dk = wh_dk_from_rt(rt);
        op->arg = arg;
    }
    return op;
}

static void op_free(struct op *op)
{
    free(op->image);
    free(op->auth);
    wh_dk_lines_free(&op->lines);
    WH_FREE_OBJ(op);
}

/* The op a call's answer belongs to (checked), or NULL when the call was
 * dropped (the runtime is going away): the op is freed, nobody is told. */
static struct op *op_answered(void *ctx, const struct wh_rt_error *err)
{
    struct op *op;
    WH_CAST_OBJ(op, ctx, OP_MAGIC);
    if (!wh_dk_dropped(err))
        return op;
    op_free(op);
    return NULL;
}

/* Queue one call for op; -1 (op freed) when out of memory. */
static int op_call(struct op *op, const struct wh_dk_call_opts *o, wh_dk_done_fn fn)
{
    if (wh_dk_call(op->dk, o, fn, op))
        return 0;
    op_free(op);
    return -1;
}

/* Fail op later with an argument error. */
static int op_fail(struct op *op, const char *what, const char *text, wh_dk_done_fn fn)
{
    struct wh_rt_error err = {0};
    wh_dk_error(op->dk, &err, WH_RT_ERR_INVALID, what, "%s", text);
    if (wh_dk_fail(op->dk, &err, fn, op))
        return 0;
    op_free(op);
    return -1;
}

/* "/containers/ID/action?query" with ID url-encoded. New string or NULL. */
static char *ctr_path(const char *id, const char *suffix)
{
    char *enc = wh_dk_urlencode(id ? id : ""), *path = NULL;
    if (enc && asprintf(&path, "/containers/%s%s", enc, suffix) < 0)
        path = NULL;
    free(enc);
    return path;
}

/* ---- simple calls: ping, start, stop, kill, remove ---- */

static void done_simple(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    op->cb.done(op->arg, err);
    op_free(op);
}

static int simple(struct wh_runtime *rt, const struct wh_dk_call_opts *o, wh_rt_done_fn cb,
                  void *arg)
{
    struct op *op = op_new(rt, arg);
    if (!op)
        return -1;
    op->cb.done = cb;
    return op_call(op, o, done_simple);
}

int wh_dk_op_ping(struct wh_runtime *rt, wh_rt_done_fn cb, void *arg)
{
    struct wh_dk_call_opts o = {.method = "GET", .path = "/_ping", .unversioned = 1};
    return simple(rt, &o, cb, arg);
}

static int ctr_simple(struct wh_runtime *rt, const char *method, const char *id, const char *suffix,
                      double extra, wh_rt_done_fn cb, void *arg)
{
    char *path = ctr_path(id, suffix);
    if (!path)
        return -1;
    struct wh_dk_call_opts o = {.method = method, .path = path, .extra_timeout = extra};
    int rc = simple(rt, &o, cb, arg);
    free(path);
    return rc;
}

int wh_dk_op_start(struct wh_runtime *rt, const char *id, wh_rt_done_fn cb, void *arg)
{
    return ctr_simple(rt, "POST", id, "/start", 0, cb, arg);
}

int wh_dk_op_stop(struct wh_runtime *rt, const char *id, int timeout, wh_rt_done_fn cb, void *arg)
{
    char suffix[32];
    if (timeout < 0)
        timeout = 10;
    snprintf(suffix, sizeof(suffix), "/stop?t=%d", timeout);
    return ctr_simple(rt, "POST", id, suffix, timeout, cb, arg);
}

int wh_dk_op_kill(struct wh_runtime *rt, const char *id, const char *signal, wh_rt_done_fn cb,
                  void *arg)
{
    char *sig = wh_dk_urlencode(signal ? signal : "SIGKILL"), *suffix = NULL;
    if (!sig || asprintf(&suffix, "/kill?signal=%s", sig) < 0) {
        free(sig);
        return -1;
    }
    int rc = ctr_simple(rt, "POST", id, suffix, 0, cb, arg);
    free(sig);
    free(suffix);
    return rc;
}

int wh_dk_op_remove(struct wh_runtime *rt, const char *id, int force, wh_rt_done_fn cb, void *arg)
{
    return ctr_simple(rt, "DELETE", id, force ? "?force=1&v=1" : "?v=1", 0, cb, arg);
}

/* ---- info ---- */

/* Engine labels come as ["k=v", ...]: split them in a copy. */
static int info_labels(const cJSON *labels, cJSON **store, struct wh_rt_kv **kv, size_t *n)
{
    const cJSON *it;
    *store = cJSON_CreateObject();
    if (!*store)
        return -1;
    cJSON_ArrayForEach(it, labels)
    {
        if (!cJSON_IsString(it))
            continue;
        char *k = strdup(it->valuestring), *eq = k ? strchr(k, '=') : NULL;
        if (k && eq)
            *eq = '\0';
        if (!k || !cJSON_AddStringToObject(*store, k, eq ? eq + 1 : "")) {
            free(k);
            return -1;
        }
        free(k);
    }
    return wh_dk_kv_from_object(*store, kv, n);
}

static void done_info(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    struct wh_rt_error e = *err;
    struct wh_rt_info info = {0};
    struct wh_rt_kv *kv = NULL;
    cJSON *store = NULL;
    cJSON *doc = err->kind == WH_RT_OK ? wh_dk_parse_body(op->dk, res, "GET /info", &e) : NULL;
    if (doc) {
        const cJSON *ncpu = cJSON_GetObjectItemCaseSensitive(doc, "NCPU");
        info.ncpu = cJSON_IsNumber(ncpu) ? ncpu->valueint : 0;
        const cJSON *mem = cJSON_GetObjectItemCaseSensitive(doc, "MemTotal");
        info.mem_total = cJSON_IsNumber(mem) ? (int64_t)mem->valuedouble : 0;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "ServerVersion");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "Name");
        snprintf(info.server_version, sizeof(info.server_version), "%s",
                 cJSON_IsString(v) ? v->valuestring : "");
        snprintf(info.name, sizeof(info.name), "%s", cJSON_IsString(name) ? name->valuestring : "");
        snprintf(info.api_version, sizeof(info.api_version), "%s", op->dk->api);
        if (info_labels(cJSON_GetObjectItemCaseSensitive(doc, "Labels"), &store, &kv,
                        &info.n_labels) != 0)
            wh_dk_error(op->dk, &e, WH_RT_ERR_INTERNAL, "GET /info", "out of memory");
        info.labels = kv;
    }
    op->cb.info(op->arg, &e, e.kind == WH_RT_OK ? &info : NULL);
    free(kv);
    cJSON_Delete(store);
    cJSON_Delete(doc);
    op_free(op);
}

int wh_dk_op_info(struct wh_runtime *rt, wh_rt_info_fn cb, void *arg)
{
    struct op *op = op_new(rt, arg);
    if (!op)
        return -1;
    op->cb.info = cb;
    struct wh_dk_call_opts o = {.method = "GET", .path = "/info"};
    return op_call(op, &o, done_info);
}

/* ---- images ---- */

static void done_image(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    struct wh_rt_error e = *err;
    struct wh_rt_image img = {0};
    cJSON *doc = err->kind == WH_RT_OK ? wh_dk_parse_body(op->dk, res, "image inspect", &e) : NULL;
    if (doc) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "Id");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(doc, "Size");
        snprintf(img.id, sizeof(img.id), "%s", cJSON_IsString(id) ? id->valuestring : "");
        img.size = cJSON_IsNumber(size) ? (int64_t)size->valuedouble : 0;
    }
    op->cb.image(op->arg, &e, e.kind == WH_RT_OK ? &img : NULL);
    cJSON_Delete(doc);
    op_free(op);
}

static int image_inspect_call(struct op *op, const char *image, wh_dk_done_fn fn)
{
    char *enc = wh_dk_urlencode(image ? image : ""), *path = NULL;
    if (!enc || asprintf(&path, "/images/%s/json", enc) < 0) {
        free(enc);
        op_free(op);
        return -1;
    }
    struct wh_dk_call_opts o = {.method = "GET", .path = path};
    int rc = op_call(op, &o, fn);
    free(enc);
    free(path);
    return rc;
}

int wh_dk_op_image_inspect(struct wh_runtime *rt, const char *image, wh_rt_image_fn cb, void *arg)
{
    struct op *op = op_new(rt, arg);
    if (!op)
        return -1;
    op->cb.image = cb;
    return image_inspect_call(op, image, done_image);
}

/* A progress line; the first one carrying "error" fails the pull. */
static int pull_line(void *arg, char *line, size_t len)
{
    struct op *op;
    WH_CAST_OBJ(op, arg, OP_MAGIC);
    cJSON *doc = cJSON_ParseWithLength(line, len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    if (!op->pull_error[0]) {
        if (cJSON_IsString(e))
            snprintf(op->pull_error, sizeof(op->pull_error), "%s", e->valuestring);
        else if (!doc)
            snprintf(op->pull_error, sizeof(op->pull_error), "unreadable progress line");
    }
    cJSON_Delete(doc);
    return 0;
}

static int pull_chunk(void *arg, const char *data, size_t len)
{
    struct op *op;
    WH_CAST_OBJ(op, arg, OP_MAGIC);
    if (wh_dk_lines_feed(&op->lines, data, len, pull_line, op) != 0 && !op->pull_error[0])
        snprintf(op->pull_error, sizeof(op->pull_error), "progress line too long");
    return 0;
}

static void done_pull(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    struct wh_rt_error e = *err;
    if (e.kind == WH_RT_OK && op->pull_error[0])
        wh_dk_error(op->dk, &e, WH_RT_ERR_PULL, "pull", "%s: %s", op->image, op->pull_error);
    op->cb.done(op->arg, &e);
    op_free(op);
}

/* Queue the pull itself. -1 on out of memory (op not freed). */
static int pull_start(struct op *op)
{
    char repo[256], tag[128];
    char *erepo = NULL, *etag = NULL, *path = NULL;
    int rc = -1;
    if (wh_dk_image_ref_split(op->image, repo, sizeof(repo), tag, sizeof(tag)) != 0) {
        struct wh_rt_error err = {0};
        wh_dk_error(op->dk, &err, WH_RT_ERR_INVALID, "pull", "bad image reference \"%s\"",
                    op->image);
        return wh_dk_fail(op->dk, &err, done_pull, op) ? 0 : -1;
    }
    erepo = wh_dk_urlencode(repo);
    etag = wh_dk_urlencode(tag);
    if (!erepo || !etag || asprintf(&path, "/images/create?fromImage=%s&tag=%s", erepo, etag) < 0) {
        path = NULL;
        goto done;
    }
    struct wh_dk_call_opts o = {.method = "POST",
                                .path = path,
                                .auth = op->auth,
                                .cls = WH_DK_STREAM,
                                .stall_timeout = op->dk->call_timeout,
                                .chunk = pull_chunk,
                                .chunk_arg = op};
    rc = wh_dk_call(op->dk, &o, done_pull, op) ? 0 : -1;
done:
    free(erepo);
    free(etag);
    free(path);
    return rc;
}

/* Inspect first (if-not-present, never): present → done; absent → pull or
 * fail. */
static void done_pull_inspect(void *ctx, const struct wh_rt_error *err,
                              const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    struct wh_rt_error e = *err;
    if (err->kind == WH_RT_OK || !wh_rt_error_not_found(err)) {
        op->cb.done(op->arg, &e);
        op_free(op);
        return;
    }
    if (op->policy == WH_RT_PULL_NEVER) {
        wh_dk_error(op->dk, &e, WH_RT_ERR_IMAGE_MISSING, "pull",
                    "%s is not on the host and the pull policy is \"never\"", op->image);
        e.http_status = 0;
        op->cb.done(op->arg, &e);
        op_free(op);
        return;
    }
    if (pull_start(op) != 0) {
        wh_dk_error(op->dk, &e, WH_RT_ERR_INTERNAL, "pull", "out of memory");
        op->cb.done(op->arg, &e);
        op_free(op);
    }
}

int wh_dk_op_image_pull(struct wh_runtime *rt, const char *image, const struct wh_rt_auth *auth,
                        enum wh_rt_pull_policy policy, wh_rt_done_fn cb, void *arg)
{
    struct op *op = op_new(rt, arg);
    if (!op)
        return -1;
    op->cb.done = cb;
    op->policy = policy;
    op->image = strdup(image ? image : "");
    if (auth)
        op->auth = wh_dk_registry_auth(auth);
    if (!op->image || (auth && !op->auth)) {
        op_free(op);
        return -1;
    }
    if (policy == WH_RT_PULL_ALWAYS) {
        if (pull_start(op) == 0)
            return 0;
        op_free(op);
        return -1;
    }
    return image_inspect_call(op, image, done_pull_inspect);
}

/* ---- containers ---- */

static void done_create(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    struct wh_rt_error e = *err;
    cJSON *doc = err->kind == WH_RT_OK ? wh_dk_parse_body(op->dk, res, "create", &e) : NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "Id");
    if (doc && !cJSON_IsString(id))
        wh_dk_error(op->dk, &e, WH_RT_ERR_PROTOCOL, "create", "no Id in the answer");
    op->cb.create(op->arg, &e, e.kind == WH_RT_OK ? id->valuestring : NULL);
    cJSON_Delete(doc);
    op_free(op);
}

static void done_create_fail(void *ctx, const struct wh_rt_error *err,
                             const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    op->cb.create(op->arg, err, NULL);
    op_free(op);
}

int wh_dk_op_create(struct wh_runtime *rt, const struct wh_rt_create_spec *spec, wh_rt_create_fn cb,
                    void *arg)
{
    char errbuf[WH_ERR_LEN], *path = NULL, *name = NULL;
    struct op *op = op_new(rt, arg);
    if (!op)
        return -1;
    op->cb.create = cb;
    char *body = wh_dk_create_body(spec, errbuf, sizeof(errbuf));
    if (!body)
        return op_fail(op, "create", errbuf, done_create_fail);
    int rc = -1;
    if (spec->name && (!(name = wh_dk_urlencode(spec->name)) ||
                       asprintf(&path, "/containers/create?name=%s", name) < 0)) {
        path = NULL;
        op_free(op);
        goto done;
    }
    struct wh_dk_call_opts o = {
        .method = "POST", .path = path ? path : "/containers/create", .body = body};
    rc = op_call(op, &o, done_create);
done:
    free(body);
    free(name);
    free(path);
    return rc;
}

static void done_inspect(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    struct wh_rt_error e = *err;
    struct wh_dk_ctr ctr = {0};
    cJSON *doc = err->kind == WH_RT_OK ? wh_dk_parse_body(op->dk, res, "inspect", &e) : NULL;
    if (doc && wh_dk_ctr_from_inspect(doc, &ctr) != 0)
        wh_dk_error(op->dk, &e, WH_RT_ERR_PROTOCOL, "inspect", "unexpected answer");
    op->cb.inspect(op->arg, &e, e.kind == WH_RT_OK ? &ctr.c : NULL);
    wh_dk_ctr_clear(&ctr);
    cJSON_Delete(doc);
    op_free(op);
}

int wh_dk_op_inspect(struct wh_runtime *rt, const char *id, wh_rt_inspect_fn cb, void *arg)
{
    char *path = ctr_path(id, "/json");
    struct op *op = path ? op_new(rt, arg) : NULL;
    if (!op) {
        free(path);
        return -1;
    }
    op->cb.inspect = cb;
    struct wh_dk_call_opts o = {.method = "GET", .path = path};
    int rc = op_call(op, &o, done_inspect);
    free(path);
    return rc;
}

static void done_list(void *ctx, const struct wh_rt_error *err, const struct wh_curl_result *res)
{
    struct op *op = op_answered(ctx, err);
    if (!op)
        return;
    struct wh_rt_error e;
    struct wh_dk_ctr *v = NULL;
    size_t n = 0;
    struct wh_rt_container *flat = NULL;
    if (wh_dk_list_answer(op->dk, err, res, &e, &v, &n) == 0 && n) {
        flat = calloc(n, sizeof(*flat));
        if (!flat)
            wh_dk_error(op->dk, &e, WH_RT_ERR_INTERNAL, "list", "out of memory");
        for (size_t i = 0; flat && i < n; i++)
            flat[i] = v[i].c;
    }
    op->cb.list(op->arg, &e, e.kind == WH_RT_OK ? flat : NULL, e.kind == WH_RT_OK ? n : 0);
    free(flat);
    wh_dk_list_free(v, n);
    op_free(op);
}

int wh_dk_op_list(struct wh_runtime *rt, const char *const *labels, size_t n_labels,
                  wh_rt_list_fn cb, void *arg)
{
    char *path = wh_dk_list_path(labels, n_labels);
    struct op *op = path ? op_new(rt, arg) : NULL;
    if (!op) {
        free(path);
        return -1;
    }
    op->cb.list = cb;
    struct wh_dk_call_opts o = {.method = "GET", .path = path};
    int rc = op_call(op, &o, done_list);
    free(path);
    return rc;
}

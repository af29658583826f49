/* Docker driver: the host object as a wh_runtime — the ops table, and
 * wh_docker_runtime_new / free. The pieces it puts together call nothing
 * here: docker_ops.c (the operations) and docker_events.c (the /events
 * watch) queue their calls through docker_transport.c (the call queue over
 * libcurl), which uses docker_json.c (pure helpers).
 *
 * A host freed from one of its own callbacks is only marked dying; the
 * transport calls wh_runtime_free again once the callback has returned.
 */
#include "runtime/runtime-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/obj.h"

static void host_destroy(struct wh_dk *dk)
{
    wh_dk_watches_free(dk);
    wh_dk_transport_fini(dk);
    free(dk->id);
    free(dk->url);
    free(dk->tls_ca);
    free(dk->tls_cert);
    free(dk->tls_key);
    WH_FREE_OBJ(dk);
}

static void host_free(struct wh_runtime *rt)
{
    struct wh_dk *dk = wh_dk_from_rt(rt);
    if (dk->busy) {
        /* Called from one of our callbacks: finish when it returns. */
        dk->dying = 1;
        return;
    }
    host_destroy(dk);
}

static const struct wh_runtime_ops docker_ops = {
    .free = host_free,
    .ping = wh_dk_op_ping,
    .info = wh_dk_op_info,
    .image_inspect = wh_dk_op_image_inspect,
    .image_pull = wh_dk_op_image_pull,
    .create = wh_dk_op_create,
    .start = wh_dk_op_start,
    .stop = wh_dk_op_stop,
    .kill = wh_dk_op_kill,
    .remove = wh_dk_op_remove,
    .inspect = wh_dk_op_inspect,
    .list = wh_dk_op_list,
    .events_start = wh_dk_events_start,
    .events_stop = wh_dk_events_stop,
};

static int check_tls(const struct wh_rt_host_params *p, char *err, size_t errlen)
{
    int n = !!p->tls_ca + !!p->tls_cert + !!p->tls_key;
    if (n != 0 && n != 3) {
        snprintf(err, errlen, "host %s: tls needs ca, cert and key together", p->id);
        return -1;
    }
    const char *files[] = {p->tls_ca, p->tls_cert, p->tls_key};
    for (int i = 0; n && i < 3; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f) {
            snprintf(err, errlen, "host %s: cannot read %s", p->id, files[i]);
            return -1;
        }
        fclose(f);
    }
    return 0;
}

/* Copy what the host keeps of p (p is borrowed) and start its transport. */
static int host_init(struct wh_dk *dk, const struct wh_rt_host_params *p)
{
    dk->id = strdup(p->id ? p->id : p->endpoint);
    dk->url = strdup(p->endpoint);
    if (!dk->id || !dk->url)
        return -1;
    if (p->tls_ca && (!(dk->tls_ca = strdup(p->tls_ca)) || !(dk->tls_cert = strdup(p->tls_cert)) ||
                      !(dk->tls_key = strdup(p->tls_key))))
        return -1;
    dk->max_calls = p->max_concurrent_calls > 0 ? p->max_concurrent_calls : 8;
    dk->call_timeout = p->call_timeout > 0 ? p->call_timeout : 30;
    dk->connect_timeout = p->connect_timeout > 0  ? p->connect_timeout
                          : dk->call_timeout < 10 ? dk->call_timeout
                                                  : 10;
    return wh_dk_transport_init(dk);
}

struct wh_runtime *wh_docker_runtime_new(struct wh_curl_loop *loop,
                                         const struct wh_rt_host_params *p, char *err,
                                         size_t errlen)
{
    struct wh_dk *dk = NULL;
    if (!p->endpoint) {
        snprintf(err, errlen, "host %s: no docker endpoint", p->id ? p->id : "?");
        return NULL;
    }
    if (check_tls(p, err, errlen) != 0)
        return NULL;
    dk = calloc(1, sizeof(*dk));
    if (!dk)
        goto oom;
    WH_INIT_OBJ(dk, WH_DK_MAGIC);
    dk->base.ops = &docker_ops;
    dk->loop = loop;
    dk->evb = wh_curl_loop_base(loop);
    TAILQ_INIT(&dk->waiting);
    TAILQ_INIT(&dk->running);
    LIST_INIT(&dk->watches);
    if (wh_dk_endpoint_parse(p->endpoint, p->tls_ca != NULL, &dk->ep, err, errlen) != 0)
        goto fail;
    if (host_init(dk, p) != 0)
        goto oom;
    return &dk->base;
oom:
    snprintf(err, errlen, "host %s: out of memory", p->id ? p->id : p->endpoint);
fail:
    if (dk)
        host_destroy(dk);
    return NULL;
}

const char *wh_docker_api_version(const struct wh_runtime *rt)
{
    const struct wh_dk *dk = (const struct wh_dk *)rt;
    WH_CHECK_OBJ(dk, WH_DK_MAGIC);
    return dk->api;
}

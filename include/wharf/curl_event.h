/* wharf curl_event: libcurl's multi interface driven by a libevent event_base.
 *
 * One wh_curl_loop owns one CURLM and runs every transfer submitted to it on
 * the loop's event_base: curl's socket callback becomes one persistent event
 * per socket, its timer callback one evtimer. Nothing here blocks: name
 * resolution, connects, TLS handshakes and transfers all progress from the
 * loop. The loop is single-threaded: every function below is called from the
 * thread that runs the event_base.
 *
 * A submitted transfer completes exactly once through its done callback,
 * unless it is cancelled first (then never) or the loop is freed first (then
 * never). Callbacks may submit and cancel other transfers; they must not free
 * the loop.
 */
#ifndef WHARF_CURL_EVENT_H
#define WHARF_CURL_EVENT_H

#include <stddef.h>

#include <curl/curl.h>

struct event_base;
struct wh_curl_loop;
struct wh_curl_call;

/* Upper bound of a buffered (non-streaming) response body; a larger body
 * fails the transfer with CURLE_WRITE_ERROR. */
#define WH_CURL_MAX_BODY (64u * 1024 * 1024)

/* What a finished transfer produced. Every pointer is borrowed until the
 * done callback returns. */
struct wh_curl_result {
    CURLcode code;    /* CURLE_OK when the HTTP exchange completed */
    long http_status; /* 0 when no response was received */
    const char *body; /* NUL-terminated buffered body ("" in streaming mode) */
    size_t body_len;
    const char *error;    /* curl's error text, "" when code is CURLE_OK */
    double elapsed;       /* seconds from submission to completion */
    long new_connections; /* connections this transfer opened (0: it reused one) */
    double tls_handshake; /* seconds until TLS was up; 0: no TLS handshake done */
};

/* Completion: called once per transfer that is neither cancelled nor still
 * running when the loop is freed. */
typedef void (*wh_curl_done_fn)(void *arg, const struct wh_curl_result *res);

/* Streaming: called for each piece of the response body as it arrives (data
 * borrowed for the call only). Return 0 to go on, -1 to abort the transfer
 * (it then completes with CURLE_WRITE_ERROR). */
typedef int (*wh_curl_chunk_fn)(void *arg, const char *data, size_t len);

/* New loop on base (borrowed: it must outlive the loop). NULL on failure.
 * curl_global_init must have run (wh_curl_global_init does it once). */
struct wh_curl_loop *wh_curl_loop_new(struct event_base *base);

/* Abort every transfer (no callbacks) and free the loop. NULL is a no-op. */
void wh_curl_loop_free(struct wh_curl_loop *loop);

/* curl_global_init(CURL_GLOBAL_DEFAULT) once per process; call before any
 * thread starts. Returns 0 or -1. */
int wh_curl_global_init(void);

/* Submit easy (takes ownership, together with headers, which may be NULL and
 * is set as CURLOPT_HTTPHEADER here). The loop sets CURLOPT_PRIVATE,
 * CURLOPT_WRITEFUNCTION/DATA, CURLOPT_ERRORBUFFER and CURLOPT_NOSIGNAL; the
 * caller sets everything else (URL, method, timeouts, TLS...). The response
 * body is buffered and handed to done. Returns a handle valid until done is
 * called or the call is cancelled; NULL on failure (easy and headers freed,
 * done not called). */
struct wh_curl_call *wh_curl_submit(struct wh_curl_loop *loop, CURL *easy,
                                    struct curl_slist *headers, wh_curl_done_fn done, void *arg);

/* Same, streaming: the body goes to chunk as it arrives and is not
 * buffered (unless the status is >= 400: then it is buffered for done, so
 * the error message of the peer can be read, and chunk is not called). */
struct wh_curl_call *wh_curl_submit_stream(struct wh_curl_loop *loop, CURL *easy,
                                           struct curl_slist *headers, wh_curl_chunk_fn chunk,
                                           wh_curl_done_fn done, void *arg);

/* Cancel a pending call: its callbacks are never called again and its
 * resources are released (soon, from the loop). Safe from any callback of
 * this loop, including the call's own chunk callback; not after done ran. */
void wh_curl_cancel(struct wh_curl_call *call);

/* The event_base the loop runs on (borrowed). */
struct event_base *wh_curl_loop_base(const struct wh_curl_loop *loop);

/* Number of transfers submitted and not yet completed or cancelled. */
size_t wh_curl_loop_active(const struct wh_curl_loop *loop);

#endif

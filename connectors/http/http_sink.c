/* http_sink: POSTs records in batches, as a JSON array, to a URL.
 *
 * Each element: {"topic":..,"partition":..,"offset":..,"timestamp":..,"key":..,"value":..}
 * (key and value as JSON strings, or null). A batch goes out when it is full and on every
 * flush, which the runtime calls before it commits the input offsets: a committed record has
 * been answered 2xx. 5xx answers, timeouts and refused connections are retried with backoff
 * for up to retry_timeout_ms; after that flush fails and the instance restarts from its last
 * commit (nothing lost). A 4xx answer to a batch is narrowed down by sending its records one by
 * one; a record refused alone is reported errant (dead-letter topic, or the stage stops, as
 * errors_tolerance says).
 *
 * Config (defaults): url (required), batch_size (500), timeout_ms (10000),
 * retry_timeout_ms (60000), content_type ("application/json"). */
#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/plugin.h"

typedef struct held { /* a record of the current batch, kept for errant reports */
    sl_plugin_record rec;
    char *topic;
    void *key, *value;
    size_t json_at, json_len; /* its element in the body */
} held;

typedef struct hsink {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    CURL *curl;
    struct curl_slist *headers;
    long batch_size, timeout_ms, retry_timeout_ms;
    held *recs;
    size_t n;
    char *json; /* the elements, comma-separated */
    size_t len, cap;
} hsink;

static int append(hsink *s, const char *p, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *nj = realloc(s->json, cap);
        if (nj == NULL)
            return SL_ENOMEM;
        s->json = nj;
        s->cap = cap;
    }
    memcpy(s->json + s->len, p, n);
    s->len += n;
    return SL_OK;
}

static int append_string(hsink *s, const void *p, size_t n) {
    if (p == NULL)
        return append(s, "null", 4);
    int rc = append(s, "\"", 1);
    const unsigned char *c = p;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char esc[8];
        if (c[i] == '"' || c[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c[i];
            rc = append(s, esc, 2);
        } else if (c[i] < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c[i]);
            rc = append(s, esc, 6);
        } else {
            rc = append(s, (const char *)&c[i], 1);
        }
    }
    return rc ? rc : append(s, "\"", 1);
}

static void *dup_mem(const void *p, size_t n) {
    if (p == NULL)
        return NULL;
    void *d = malloc(n ? n : 1);
    if (d)
        memcpy(d, p, n);
    return d;
}

static void drop_batch(hsink *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->recs[i].topic);
        free(s->recs[i].key);
        free(s->recs[i].value);
    }
    s->n = 0;
    s->len = 0;
}

/* One POST of body[0..len); the HTTP status, or 0 when there was no answer. */
static long post(hsink *s, const char *body, size_t len, char *why, size_t whylen) {
    curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE, (long)len);
    CURLcode rc = curl_easy_perform(s->curl);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(why, whylen, "%s", curl_easy_strerror(rc));
    if (status)
        snprintf(why, whylen, "HTTP %ld", status);
    return status;
}

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* POSTs "[" elements "]", retrying what is transient; the final status (0: gave up). */
static long post_retrying(hsink *s, const char *elements, size_t len, char *why,
                          size_t whylen) {
    char *body = malloc(len + 3);
    if (body == NULL)
        return 0;
    body[0] = '[';
    memcpy(body + 1, elements, len);
    body[len + 1] = ']';
    body[len + 2] = '\0';
    long waited = 0, backoff = 100, status;
    while ((status = post(s, body, len + 2, why, whylen)) == 0 || status >= 500) {
        if (waited >= s->retry_timeout_ms) {
            status = 0;
            break;
        }
        s->host->log(s->ctx, SL_PLUGIN_LOG_DEBUG, "POST failed (%s): retrying", why);
        nap(backoff);
        waited += backoff;
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    free(body);
    return status;
}

static int send_batch(hsink *s) {
    if (s->n == 0)
        return SL_OK;
    char why[256] = "";
    long status = post_retrying(s, s->json, s->len, why, sizeof(why));
    if (status >= 200 && status < 300) {
        drop_batch(s);
        return SL_OK;
    }
    if (status == 0) {
        s->host->set_error(s->ctx, why);
        return SL_EIO;
    }
    /* Refused: find which records, one by one. */
    for (size_t i = 0; i < s->n; i++) {
        held *h = &s->recs[i];
        status = post_retrying(s, s->json + h->json_at, h->json_len, why, sizeof(why));
        if (status == 0) {
            s->host->set_error(s->ctx, why);
            return SL_EIO;
        }
        if (status >= 300) {
            char reason[300];
            snprintf(reason, sizeof(reason), "the server refused the record: %s", why);
            int rc = s->host->report_errant(s->ctx, &h->rec, reason);
            if (rc)
                return rc;
        }
    }
    drop_batch(s);
    return SL_OK;
}

static int sink_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    const char *url = host->config(ctx, "url");
    if (url == NULL || *url == '\0') {
        host->set_error(ctx, "config 'url' is missing");
        return SL_EBADCONFIG;
    }
    if (host->struct_size < sizeof(sl_plugin_host)) {
        host->set_error(ctx, "this Sluice is too old for http_sink (no report_errant)");
        return SL_EUNSUPPORTED;
    }
    hsink *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SL_ENOMEM;
    s->host = host;
    s->ctx = ctx;
    const char *v;
    s->batch_size = (v = host->config(ctx, "batch_size")) ? atol(v) : 500;
    s->timeout_ms = (v = host->config(ctx, "timeout_ms")) ? atol(v) : 10000;
    s->retry_timeout_ms = (v = host->config(ctx, "retry_timeout_ms")) ? atol(v) : 60000;
    if (s->batch_size < 1)
        s->batch_size = 1;
    s->recs = calloc((size_t)s->batch_size, sizeof(*s->recs));
    char content[200];
    snprintf(content, sizeof(content), "Content-Type: %s",
             (v = host->config(ctx, "content_type")) ? v : "application/json");
    s->curl = curl_easy_init();
    s->headers = curl_slist_append(NULL, content);
    if (s->recs == NULL || s->curl == NULL || s->headers == NULL) {
        curl_slist_free_all(s->headers);
        if (s->curl)
            curl_easy_cleanup(s->curl);
        free(s->recs);
        free(s);
        return SL_ENOMEM;
    }
    curl_easy_setopt(s->curl, CURLOPT_URL, url);
    curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->curl, CURLOPT_USERAGENT, "sluice-http-sink/1.0");
    *state = s;
    return SL_OK;
}

static int sink_put(void *state, const sl_plugin_record *rec) {
    hsink *s = state;
    if (s->n == (size_t)s->batch_size) {
        int rc = send_batch(s);
        if (rc)
            return rc == SL_EIO ? SL_ERETRY : rc; /* this record is not taken yet */
    }
    held *h = &s->recs[s->n];
    memset(h, 0, sizeof(*h));
    h->topic = rec->topic ? strdup(rec->topic) : NULL;
    h->key = dup_mem(rec->key, rec->key_len);
    h->value = dup_mem(rec->value, rec->value_len);
    h->rec = (sl_plugin_record){h->topic, rec->partition, rec->offset, rec->timestamp, h->key,
                                rec->key_len, h->value, rec->value_len, NULL, 0};
    if (s->len && append(s, ",", 1) != SL_OK)
        return SL_ENOMEM;
    h->json_at = s->len;
    char head[160];
    int n = snprintf(head, sizeof(head), "{\"partition\":%d,\"offset\":%lld,\"timestamp\":%lld,"
                     "\"topic\":", rec->partition, (long long)rec->offset,
                     (long long)rec->timestamp);
    int rc = append(s, head, (size_t)n);
    if (rc == 0)
        rc = append_string(s, rec->topic, rec->topic ? strlen(rec->topic) : 0);
    if (rc == 0)
        rc = append(s, ",\"key\":", 7);
    if (rc == 0)
        rc = append_string(s, rec->key, rec->key_len);
    if (rc == 0)
        rc = append(s, ",\"value\":", 9);
    if (rc == 0)
        rc = append_string(s, rec->value, rec->value_len);
    if (rc == 0)
        rc = append(s, "}", 1);
    h->json_len = s->len - h->json_at;
    s->n++;
    return rc;
}

static int sink_flush(void *state) {
    return send_batch(state);
}

static void sink_close(void *state) {
    hsink *s = state;
    drop_batch(s);
    curl_slist_free_all(s->headers);
    curl_easy_cleanup(s->curl);
    free(s->recs);
    free(s->json);
    free(s);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SINK, .name = "http_sink", .version = "1.0.0",
                 .description = "POSTs records in JSON batches, retrying 5xx and timeouts",
                 .init = sink_init, .process = sink_put, .flush = sink_flush,
                 .close = sink_close)

/* stdin_source: one record per line of its process's standard input, for shell pipelines
 * (`generate | sluiced --pipeline p.lua`). Under sluiced that input is sluiced's own, read by
 * one instance only. A pipe cannot be rewound, so there is no position: lines read but not yet
 * acknowledged when the process dies are lost, as in any shell pipeline. At the end of the
 * input the source idles. Config: batch (lines per poll, default 1000). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/plugin.h"

#define BUF (1 << 20)

typedef struct in {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    long batch;
    int eof;
    char *buf;
    size_t len;
} in;

static int in_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    in *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->buf = malloc(BUF)) == NULL) {
        free(s);
        return SL_ENOMEM;
    }
    const char *b = host->config(ctx, "batch");
    s->host = host;
    s->ctx = ctx;
    s->batch = b && atol(b) > 0 ? atol(b) : 1000;
    int instances;
    s->eof = host->instance(ctx, &instances) > 0; /* one reader of one input */
    *state = s;
    return SL_OK;
}

static int in_poll(void *state, int timeout_ms) {
    in *s = state;
    struct pollfd p = {0, POLLIN, 0};
    if (s->eof || poll(&p, 1, timeout_ms) <= 0) {
        if (s->eof)
            poll(NULL, 0, timeout_ms);
        return SL_OK;
    }
    ssize_t got = read(0, s->buf + s->len, BUF - s->len);
    if (got < 0)
        return errno == EINTR || errno == EAGAIN ? SL_OK : SL_EIO;
    if (got == 0)
        s->eof = 1;
    s->len += (size_t)got;
    size_t start = 0;
    long n = 0;
    char *nl;
    while (n < s->batch && (nl = memchr(s->buf + start, '\n', s->len - start)) != NULL) {
        sl_plugin_record r = {.partition = -1, .value = s->buf + start,
                              .value_len = (size_t)(nl - (s->buf + start))};
        s->host->emit(s->ctx, &r);
        start = (size_t)(nl - s->buf) + 1;
        n++;
    }
    if ((s->eof || s->len == BUF) && start < s->len && n < s->batch) { /* the last piece */
        sl_plugin_record r = {.partition = -1, .value = s->buf + start,
                              .value_len = s->len - start};
        s->host->emit(s->ctx, &r);
        start = s->len;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
    return SL_OK;
}

static void in_close(void *state) {
    in *s = state;
    free(s->buf);
    free(s);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SOURCE, .name = "stdin_source", .version = "1.0.0",
                 .description = "one record per line of standard input",
                 .init = in_init, .poll = in_poll, .close = in_close)

/* wordcount_sink: a sink written out of tree. It counts the words of the values it receives
 * and, on each flush (before the host commits the offsets), appends the running totals to a
 * file: "<records> <words>" per line. Config: path (required). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice/plugin.h>

typedef struct counter {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    FILE *out;
    long long records, words;
} counter;

static int wc_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    const char *path = host->config(ctx, "path");
    if (path == NULL) {
        host->set_error(ctx, "config 'path' is missing");
        return SL_EBADCONFIG;
    }
    counter *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SL_ENOMEM;
    if ((c->out = fopen(path, "a")) == NULL) {
        host->set_error(ctx, "cannot open the output file");
        free(c);
        return SL_EIO;
    }
    c->host = host;
    c->ctx = ctx;
    *state = c;
    return SL_OK;
}

static int wc_put(void *state, const sl_plugin_record *rec) {
    counter *c = state;
    const unsigned char *v = rec->value;
    int in_word = 0;
    long long words = 0;
    for (size_t i = 0; i < rec->value_len; i++) {
        int letter = !isspace(v[i]);
        words += letter && !in_word;
        in_word = letter;
    }
    c->records++;
    c->words += words;
    c->host->metric_add(c->ctx, "words", words); /* in `sluice pipeline status --json` */
    return SL_OK;
}

static int wc_flush(void *state) {
    counter *c = state;
    fprintf(c->out, "%lld %lld\n", c->records, c->words);
    return fflush(c->out) == 0 ? SL_OK : SL_EIO;
}

static void wc_close(void *state) {
    counter *c = state;
    fclose(c->out);
    free(c);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SINK, .name = "wordcount_sink", .version = "0.1.0",
                 .description = "counts words, out of tree",
                 .init = wc_init, .process = wc_put, .flush = wc_flush, .close = wc_close)

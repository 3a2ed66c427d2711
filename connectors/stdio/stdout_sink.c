/* stdout_sink: writes each record to the standard output of its process, for shell pipelines
 * and for watching a topic: "key<TAB>value" lines, or the value alone with config
 * format = "value". Under sluiced that output is sluiced's own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/plugin.h"

static int out_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    const char *format = host->config(ctx, "format");
    static int value_only = 1, with_key = 0;
    *state = format && strcmp(format, "value") == 0 ? &value_only : &with_key;
    return SL_OK;
}

static int out_put(void *state, const sl_plugin_record *rec) {
    if (!*(int *)state) {
        if (rec->key)
            fwrite(rec->key, 1, rec->key_len, stdout);
        fputc('\t', stdout);
    }
    if (rec->value)
        fwrite(rec->value, 1, rec->value_len, stdout);
    return fputc('\n', stdout) == EOF ? SL_EIO : SL_OK;
}

static int out_flush(void *state) {
    (void)state;
    return fflush(stdout) == 0 ? SL_OK : SL_EIO;
}

static void out_close(void *state) {
    (void)state;
    fflush(stdout);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SINK, .name = "stdout_sink", .version = "1.0.0",
                 .description = "writes records to standard output", .init = out_init,
                 .process = out_put, .flush = out_flush, .close = out_close)

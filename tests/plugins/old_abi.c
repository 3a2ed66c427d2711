/* A plugin built against the first, shortest descriptor (no process_batch): the host must load
 * it without reading past its end. It prefixes values with "old:". */
#include <stdlib.h>
#include <string.h>

#include "sluice/plugin.h"

/* The descriptor as the first ABI revision laid it out. */
typedef struct v1_descriptor {
    uint32_t magic, abi_version, struct_size, kind;
    const char *name, *version, *description;
    int (*init)(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state);
    int (*process)(void *state, const sl_plugin_record *rec);
    int (*poll)(void *state, int timeout_ms);
    int (*flush)(void *state);
    void (*close)(void *state);
} v1_descriptor;

typedef struct old {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
} old;

static int old_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    old *o = malloc(sizeof(*o));
    if (o == NULL)
        return SL_ENOMEM;
    o->host = host;
    o->ctx = ctx;
    *state = o;
    return SL_OK;
}

static int old_process(void *state, const sl_plugin_record *rec) {
    old *o = state;
    char buf[256];
    size_t n = rec->value_len < 200 ? rec->value_len : 200;
    memcpy(buf, "old:", 4);
    memcpy(buf + 4, rec->value, n);
    sl_plugin_record out = {.partition = -1, .key = rec->key, .key_len = rec->key_len,
                            .value = buf, .value_len = n + 4};
    return o->host->emit(o->ctx, &out);
}

static void old_close(void *state) {
    free(state);
}

static const v1_descriptor descriptor = {SL_PLUGIN_MAGIC, 1, sizeof(v1_descriptor),
                                         SL_PLUGIN_PROCESSOR, "old_abi", "0.1", "ABI 1 layout",
                                         old_init, old_process, NULL, NULL, old_close};

SL_PLUGIN_EXPORT const void *sluice_plugin(void) {
    return &descriptor;
}

/* upper: the plugin ABI in one small processor. Upper-cases each record's value, tags it with
 * the header "processed-by", and rejects records with a null or empty value (they go to the
 * dead-letter topic with the reason). Config: "prefix" (optional) is put before every value. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/plugin.h"

typedef struct upper {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    const char *prefix; /* borrowed from the host for the instance's life */
    char *buf;          /* reused for every record: no allocation per record */
    size_t cap;
} upper;

static int upper_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    upper *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return SL_ENOMEM;
    u->host = host;
    u->ctx = ctx;
    u->prefix = host->config(ctx, "prefix");
    if (u->prefix == NULL)
        u->prefix = "";
    *state = u;
    return SL_OK;
}

static int upper_process(void *state, const sl_plugin_record *rec) {
    upper *u = state;
    if (rec->value == NULL || rec->value_len == 0) {
        u->host->set_error(u->ctx, "a record without a value has nothing to upper-case");
        return SL_EREJECT;
    }
    size_t plen = strlen(u->prefix), need = plen + rec->value_len;
    if (need > u->cap) {
        char *nb = realloc(u->buf, need);
        if (nb == NULL)
            return SL_ERETRY; /* transient: the host tries again after a backoff */
        u->buf = nb;
        u->cap = need;
    }
    memcpy(u->buf, u->prefix, plen);
    const unsigned char *in = rec->value;
    for (size_t i = 0; i < rec->value_len; i++)
        u->buf[plen + i] = (char)toupper(in[i]);

    sl_plugin_header tag = {"processed-by", "upper", 5};
    sl_plugin_record out = *rec; /* same key and timestamp */
    out.topic = NULL;            /* the stage's output topic */
    out.partition = -1;
    out.value = u->buf;
    out.value_len = need;
    out.headers = &tag;
    out.nheaders = 1;
    int rc = u->host->emit(u->ctx, &out); /* copies: buf is ours again at once */
    if (rc == SL_OK)
        u->host->metric_add(u->ctx, "upper_bytes", (int64_t)need);
    return rc;
}

static void upper_close(void *state) {
    upper *u = state;
    free(u->buf);
    free(u);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_PROCESSOR, .name = "upper", .version = "1.0.0",
                 .description = "upper-cases record values (the example processor)",
                 .init = upper_init, .process = upper_process, .close = upper_close)

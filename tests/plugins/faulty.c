/* A processor that misbehaves on request, for the isolation tests. Config "mode":
 *   "crash-init"   dies of SIGSEGV in init
 *   "fail-init"    init fails with a reason (missing setting)
 *   otherwise      passes values through, but dies of SIGSEGV on the value "boom", never
 *                  returns on "hang", asks for a retry on "busy" (then succeeds on the 3rd
 *                  call) and rejects "reject". */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/plugin.h"

typedef struct faulty {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    int busy_calls;
} faulty;

static int is(const sl_plugin_record *rec, const char *s) {
    return rec->value && rec->value_len == strlen(s) && memcmp(rec->value, s, rec->value_len) == 0;
}

static int faulty_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    const char *mode = host->config(ctx, "mode");
    if (mode && strcmp(mode, "crash-init") == 0)
        raise(SIGSEGV);
    if (mode && strcmp(mode, "fail-init") == 0) {
        host->set_error(ctx, "setting 'url' is missing");
        return SL_EBADCONFIG;
    }
    faulty *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return SL_ENOMEM;
    f->host = host;
    f->ctx = ctx;
    *state = f;
    return SL_OK;
}

static int faulty_process(void *state, const sl_plugin_record *rec) {
    faulty *f = state;
    if (is(rec, "boom"))
        raise(SIGSEGV);
    while (is(rec, "hang"))
        pause();
    if (is(rec, "busy") && ++f->busy_calls < 3)
        return SL_ERETRY;
    if (is(rec, "reject")) {
        f->host->set_error(f->ctx, "rejected on purpose");
        return SL_EREJECT;
    }
    sl_plugin_record out = *rec;
    out.topic = NULL;
    out.partition = -1;
    return f->host->emit(f->ctx, &out);
}

static void faulty_close(void *state) {
    free(state);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_PROCESSOR, .name = "faulty", .version = "0.1",
                 .init = faulty_init, .process = faulty_process, .close = faulty_close)

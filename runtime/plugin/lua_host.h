/* The Lua 5.4 host: one Lua state per processor instance, running a script that defines
 * process(record, ctx). Sandboxed by default, with an instruction budget per call and a memory
 * limit per state, so that a bad script ends as failed records, never as a stalled or crashed
 * node. */
#ifndef SL_PLUGIN_LUA_HOST_H
#define SL_PLUGIN_LUA_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/plugin.h"

#define SL_LUA_DEFAULT_INSTRUCTIONS 10000000LL /* per process() call */
#define SL_LUA_DEFAULT_MEMORY (64LL << 20)     /* bytes per state */
#define SL_LUA_MIN_MEMORY (1LL << 20)          /* less cannot hold the libraries */
#define SL_LUA_MAX_INSTRUCTIONS 1000000000000LL /* per call: hours of work */
#define SL_LUA_MAX_MEMORY (64LL << 30)
#define SL_LUA_BATCH_INSTRUCTIONS 2000000000LL  /* a batch call's cap: about two seconds */

typedef struct sl_lua_settings {
    const char *script_path;
    int64_t max_instructions; /* per call; 0: the default */
    int64_t max_memory;       /* bytes; 0: the default; at least SL_LUA_MIN_MEMORY */
    bool unsandboxed;         /* true: the full standard library (os, io, require) */
    /* The stage's config table, seen by the script as ctx.config. Borrowed for the call. */
    const char *const *config_keys;
    const char *const *config_values;
    size_t nconfig;
    /* Folders (colon-separated) where require(name) finds name.lua after the script's own
     * folder; NULL: only the script's folder. */
    const char *lib_dirs;
} sl_lua_settings;

/* A record of a batch the script sent to the dead-letter topic with ctx.dead_letter(i, why). */
typedef struct sl_lua_dead_letter {
    size_t index; /* 0-based, into the batch */
    char reason[512];
} sl_lua_dead_letter;

typedef struct sl_lua_proc sl_lua_proc;

/* Loads the script and runs its top level. ctx.emit, ctx.log, ctx.get/put and the rest call into
 * 'host' with 'ctx'. SL_EINVAL with the script's file, line and message in errbuf when it does
 * not load or defines neither process nor process_batch. */
int sl_lua_proc_new(const sl_lua_settings *s, const sl_plugin_host *host, sl_plugin_ctx *ctx,
                    sl_lua_proc **out, char *errbuf, size_t errlen);

/* Calls process(record, ctx). Records it emits (ctx.emit) or returns go to host->emit as they
 * come; the host keeps them back until the call has succeeded. On failure (a Lua error, the budget or the memory limit exceeded) returns SL_EINVAL
 * with the message in errbuf and the Lua traceback in tb; a script may also fail with
 * ctx.reject(reason) (SL_EREJECT) or ctx.retry(reason) (SL_ERETRY). */
int sl_lua_proc_process(sl_lua_proc *lp, const sl_plugin_record *rec, char *errbuf,
                        size_t errlen, char *tb, size_t tblen);

/* Whether the script defines process_batch(batch, ctx), which the host then prefers. */
bool sl_lua_proc_has_batch(const sl_lua_proc *lp);

/* Calls process_batch(batch, ctx) with the records as columns: batch.n, batch.key[i],
 * batch.value[i], batch.timestamp[i], batch.partition[i], batch.offset[i], batch.topic[i]. The
 * call may run the per-call budget once per record, up to SL_LUA_BATCH_INSTRUCTIONS (or the
 * per-call budget, if larger). On success '*dead' lists the records the script dead-lettered
 * (borrowed until the next call). A failure fails the whole batch, and so does hitting the
 * budget or the memory limit even if the script caught the error. */
int sl_lua_proc_process_batch(sl_lua_proc *lp, const sl_plugin_record *recs, size_t n,
                              const sl_lua_dead_letter **dead, size_t *ndead, char *errbuf,
                              size_t errlen, char *tb, size_t tblen);

/* restore(partition, entries, ctx) once a partition's state is restored ('entries': key and
 * value of each record), revoke(partition, ctx) when it is taken away, tick(now_ms, ctx) as the
 * wall clock passes. Each is optional in the script. */
int sl_lua_proc_restore(sl_lua_proc *lp, int32_t partition, const sl_plugin_record *entries,
                        size_t n, char *errbuf, size_t errlen);
int sl_lua_proc_revoke(sl_lua_proc *lp, int32_t partition, char *errbuf, size_t errlen);
int sl_lua_proc_tick(sl_lua_proc *lp, int64_t now_ms, char *errbuf, size_t errlen);

/* Calls the script's optional flush(ctx). */
int sl_lua_proc_flush(sl_lua_proc *lp, char *errbuf, size_t errlen);

/* Bytes the state holds now. */
int64_t sl_lua_proc_memory(const sl_lua_proc *lp);

void sl_lua_proc_free(sl_lua_proc *lp);

#endif

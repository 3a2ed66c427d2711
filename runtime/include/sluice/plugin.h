/* The Sluice plugin ABI: the only header a plugin includes.
 *
 * A plugin is a shared object exporting one function, SL_PLUGIN_ENTRY ("sluice_plugin"), that
 * returns a pointer to a const sl_plugin_descriptor. The descriptor starts with a magic word, the
 * ABI version and its own size, so that a plugin built against an older, shorter descriptor keeps
 * loading (the host reads only 'struct_size' bytes and treats the missing callbacks as absent)
 * and a foreign .so is refused with a message instead of having its callbacks called. (Loading
 * a .so runs its constructors and the entry function: the host does that only in the stage's
 * own process, never in the broker's.)
 *
 * The plugin links against nothing of Sluice's: everything it may ask of the host comes in the
 * sl_plugin_host function table handed to init.
 *
 * Kinds and the callbacks each uses:
 *   processor  init, process (or process_batch), flush, close
 *   sink       init, process (or process_batch) to put records, flush to make them durable, close
 *   source     init, poll, close
 *
 * Ownership: every record and string the host passes to a callback is borrowed for the duration
 * of the call. What a plugin keeps, it copies. emit() copies the record before it returns.
 *
 * Status: callbacks return SL_OK, SL_ERETRY (transient: the host calls again with the same record
 * after a backoff), SL_EREJECT (the record is bad: it goes to the dead-letter topic, with the
 * reason set through host->set_error) or any other negative SL_E* code (a processing failure:
 * the stage's retry policy applies, then the dead-letter topic). A record is never dropped
 * silently.
 *
 * Threads: the host calls one instance's callbacks from one thread, one call at a time. Distinct
 * instances of a plugin may run in distinct processes; keep no global mutable state. */
#ifndef SLUICE_PLUGIN_H
#define SLUICE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_PLUGIN_MAGIC 0x534c5047u /* "SLPG" */
#define SL_PLUGIN_ABI_VERSION 1u
#define SL_PLUGIN_ENTRY "sluice_plugin"

/* Declares the entry point: SL_PLUGIN_EXPORT const sl_plugin_descriptor *sluice_plugin(void). */
#define SL_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef enum sl_plugin_kind {
    SL_PLUGIN_PROCESSOR = 1,
    SL_PLUGIN_SOURCE = 2,
    SL_PLUGIN_SINK = 3,
} sl_plugin_kind;

typedef enum sl_plugin_log_level {
    SL_PLUGIN_LOG_DEBUG = 0,
    SL_PLUGIN_LOG_INFO = 1,
    SL_PLUGIN_LOG_WARN = 2,
    SL_PLUGIN_LOG_ERROR = 3,
} sl_plugin_log_level;

typedef struct sl_plugin_header {
    const char *key;   /* NUL-terminated */
    const void *value; /* NULL: a null value */
    size_t value_len;
} sl_plugin_header;

/* A record, read (passed to process) or to write (passed to emit). In emit, 'topic' NULL means
 * the stage's first output topic, 'partition' -1 lets the key choose, 'timestamp' 0 means now;
 * 'offset' is ignored. 'key' or 'value' NULL means null. */
typedef struct sl_plugin_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* ms since the epoch */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const sl_plugin_header *headers;
    size_t nheaders;
} sl_plugin_record;

/* The host's side of one plugin instance. Opaque. */
typedef struct sl_plugin_ctx sl_plugin_ctx;

/* What the host offers. 'struct_size' first: a newer host appends functions, and a plugin that
 * needs one checks struct_size before it calls it. */
typedef struct sl_plugin_host {
    uint32_t struct_size;
    uint32_t abi_version;
    /* Adds a record to the outputs of the current call; copies it. The host sends the outputs
     * once the callback has returned SL_OK (and drops them otherwise); a topic that does not
     * exist then makes the record a failed one. Fails only with SL_ENOMEM. */
    int (*emit)(sl_plugin_ctx *ctx, const sl_plugin_record *rec);
    /* A value from the stage's 'config' table, as a string, or NULL. Borrowed from the host for
     * the instance's life. */
    const char *(*config)(sl_plugin_ctx *ctx, const char *key);
    /* A line in the node's log, tagged with the pipeline, stage and instance. */
    void (*log)(sl_plugin_ctx *ctx, sl_plugin_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* The reason for the SL_EREJECT or failure about to be returned; becomes the record's
     * 'sluice.error' header in the retry or dead-letter topic. Copied. */
    void (*set_error)(sl_plugin_ctx *ctx, const char *reason);
    /* Adds 'delta' to a counter the stage's status shows under 'name'. */
    void (*metric_add)(sl_plugin_ctx *ctx, const char *name, int64_t delta);
    /* The key-value store of the current record's input partition (see state_get_partition).
     * get: SL_ENOENT when absent; the value is borrowed until the next call into the store.
     * put copies; a NULL value deletes. SL_EINVAL outside process. The puts of a call that
     * fails (any status but SL_OK) are taken back, as are those of each attempt retried. */
    int (*state_get)(sl_plugin_ctx *ctx, const void *key, size_t key_len, const void **value,
                     size_t *value_len);
    int (*state_put)(sl_plugin_ctx *ctx, const void *key, size_t key_len, const void *value,
                     size_t value_len);
    /* Asks the host to commit the input offsets of every record processed so far, once what was
     * emitted from them is acknowledged (sinks call it after a successful flush). */
    int (*commit)(sl_plugin_ctx *ctx);
    /* Index of this instance within its stage (0 .. instances-1), and the stage's instance
     * count: a source splits its work by them. */
    int (*instance)(sl_plugin_ctx *ctx, int *count);
    /* Sources: where the records emitted so far leave off, as text (a file's inode and byte
     * offset, a cursor), set in poll after emitting. The host stores it in __connect_offsets
     * once those records are acknowledged, never before. Copied. */
    int (*set_position)(sl_plugin_ctx *ctx, const char *position);
    /* Sources, in init: the last position stored, to resume from, or NULL on a first start.
     * Borrowed for the instance's life. */
    const char *(*get_position)(sl_plugin_ctx *ctx);
    /* Sinks that batch: a record received earlier (and answered SL_OK) turned out bad, say when
     * the target refused the batch holding it. It goes to the dead-letter topic with 'reason'
     * (errors_tolerance "all") or stops the stage ("none"). Call it before flush returns: the
     * commit that follows covers the record. The record is copied. */
    int (*report_errant)(sl_plugin_ctx *ctx, const sl_plugin_record *rec, const char *reason);
    /* state_get and state_put act on the state of the input partition whose record is being
     * processed: each input partition has its own store, kept in the stage's changelog topic
     * and restored with the input position committed with it, so state survives restarts and
     * moves with its partition. These two name the partition, for calls made outside process
     * (flush writing what a plugin buffered, say). */
    int (*state_get_partition)(sl_plugin_ctx *ctx, int32_t partition, const void *key,
                               size_t key_len, const void **value, size_t *value_len);
    int (*state_put_partition)(sl_plugin_ctx *ctx, int32_t partition, const void *key,
                               size_t key_len, const void *value, size_t value_len);
} sl_plugin_host;

typedef struct sl_plugin_descriptor {
    uint32_t magic;       /* SL_PLUGIN_MAGIC */
    uint32_t abi_version; /* SL_PLUGIN_ABI_VERSION the plugin was built against */
    uint32_t struct_size; /* sizeof(sl_plugin_descriptor) as the plugin was built */
    uint32_t kind;        /* sl_plugin_kind */
    const char *name;     /* how pipelines name it: [a-z0-9_-]+ */
    const char *version;  /* the plugin's own version, for `sluice plugin list` */
    const char *description;

    /* Makes an instance. '*state' is the plugin's, handed back to every other callback. Fail
     * with a negative code and host->set_error: the host logs it and retries later. */
    int (*init)(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state);
    /* One input record. */
    int (*process)(void *state, const sl_plugin_record *rec);
    /* Sources: emit what is available, waiting up to timeout_ms when nothing is. SL_OK also
     * when nothing was emitted. */
    int (*poll)(void *state, int timeout_ms);
    /* Makes everything processed so far durable (sinks) or emitted (processors that buffer).
     * The host calls it before it commits input offsets. */
    int (*flush)(void *state);
    /* Frees the instance. Called once, also after a failed flush. */
    void (*close)(void *state);

    /* ---- appended in later ABI revisions: check struct_size before use ---- */

    /* Several records at once (preferred to process when present). '*done' is how many were
     * handled before a status other than SL_OK; the host routes rec[*done] by that status and
     * calls again with the rest. */
    int (*process_batch)(void *state, const sl_plugin_record *recs, size_t n, size_t *done);
} sl_plugin_descriptor;

/* The size of the first, shortest descriptor the host still loads. */
#define SL_PLUGIN_DESCRIPTOR_MIN_SIZE offsetof(sl_plugin_descriptor, process_batch)

typedef const sl_plugin_descriptor *(*sl_plugin_entry_fn)(void);

/* Defines the descriptor and the entry point in one go, the first three fields filled in:
 *
 *   SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_PROCESSOR, .name = "upper", .version = "1.0.0",
 *                    .init = upper_init, .process = upper_process, .close = upper_close)
 */
#define SL_PLUGIN_DEFINE(...)                                                                      \
    static const sl_plugin_descriptor sl_plugin_descriptor_ = {                                   \
        .magic = SL_PLUGIN_MAGIC,                                                                  \
        .abi_version = SL_PLUGIN_ABI_VERSION,                                                      \
        .struct_size = sizeof(sl_plugin_descriptor),                                               \
        __VA_ARGS__};                                                                              \
    SL_PLUGIN_EXPORT const sl_plugin_descriptor *sluice_plugin(void) {                             \
        return &sl_plugin_descriptor_;                                                             \
    }

#ifdef __cplusplus
}
#endif
#endif

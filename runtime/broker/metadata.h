/* The metadata log: every change to topics and their configs is a record in the internal
 * partition '<data-dir>/__cluster_metadata-0', written durably before it takes effect, and
 * replayed in order at start. A single node applies its own log; the cluster will replicate the
 * same log through a Raft quorum.
 *
 * Each record is a one-record batch: key = topic name, value = msgpack map
 *   {"v": 1, "type": "create" | "delete" | "config" | "pids", "name": str,
 *    "partitions": int (create), "configs": {str: str} (create, config: the full overrides),
 *    "end": int (pids: producer ids below it have been handed out)} */
#ifndef SL_BROKER_METADATA_H
#define SL_BROKER_METADATA_H

#include <stdint.h>

#include "broker/topic_config.h"

#define SL_METADATA_TOPIC "__cluster_metadata"

enum sl_meta_type { SL_META_CREATE = 1, SL_META_DELETE, SL_META_CONFIG, SL_META_PIDS };

typedef struct sl_meta_record {
    enum sl_meta_type type;
    const char *name;
    int32_t partitions;
    const sl_topic_config *configs;
    int64_t pid_end;
} sl_meta_record;

typedef struct sl_metalog sl_metalog;

/* Called for each record in log order; a non-zero return stops the replay with that status. */
typedef int (*sl_meta_apply_fn)(void *ctx, const sl_meta_record *rec);

int sl_metalog_open(const char *data_dir, sl_metalog **out);
int sl_metalog_replay(sl_metalog *m, sl_meta_apply_fn apply, void *ctx);

/* Appends and fsyncs one record. */
int sl_metalog_append(sl_metalog *m, const sl_meta_record *rec);
void sl_metalog_close(sl_metalog *m);

#endif

/* Managing pipelines on a running broker, as a client: deploying puts the pipeline file's text
 * in the compacted topic __pipelines (key: its name), stopping puts a tombstone there, and the
 * broker's supervisor runs whatever that topic says. Instances report in __pipeline_status. */
#ifndef SL_PIPELINE_ADMIN_H
#define SL_PIPELINE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/pipeline.h"
#include "sluice/client.h"

/* Headers of a __pipelines record: the deployed file, the paused stages (",a,b,"), and a stage
 * to restart. A record carrying the restart header (even empty: pause and resume) changes only
 * what those say; any other record is a deploy and replaces every instance. */
#define SL_PIPELINE_FILE_HEADER "sluice.pipeline.file"
#define SL_PIPELINE_PAUSED_HEADER "sluice.paused"
#define SL_PIPELINE_RESTART_HEADER "sluice.restart"

typedef struct sl_pl_deployed {
    char *name;
    char *file;    /* the file it was deployed from */
    char *source;  /* its text */
    int64_t version; /* the record's offset in __pipelines */
    int64_t deployed_ms;
    char *paused;    /* ",stage,stage," */
} sl_pl_deployed;

/* Creates what 'p' needs (declared topics, retry and dead-letter topics) and publishes
 * 'source' as its new version. Refuses, changing nothing, a pipeline whose inputs or outputs
 * neither exist nor are declared. '*version' is the new version. */
int sl_pl_deploy(const char *broker, const sl_pipeline *p, const char *source, int64_t *version,
                 char *errbuf, size_t errlen);

/* The running pipelines, sorted by name. Free with sl_pl_deployed_free. */
int sl_pl_list(const char *broker, sl_pl_deployed **out, size_t *n, char *errbuf, size_t errlen);
void sl_pl_deployed_free(sl_pl_deployed *d, size_t n);

/* Pauses, resumes or restarts one stage of a running pipeline ('action' "pause", "resume" or
 * "restart"); its other stages go on untouched. A paused stage's instances commit and stop,
 * and stay stopped, redeploys included, until resumed. SL_ENOENT for an unknown pipeline or
 * stage. */
int sl_pl_control(const char *broker, const char *pipeline, const char *stage,
                  const char *action, char *errbuf, size_t errlen);

/* Stops pipeline 'name': SL_ENOENT when none runs by that name. */
int sl_pl_stop(const char *broker, const char *name, char *errbuf, size_t errlen);

/* The latest record per key of compacted 'topic' whose key starts with 'prefix', sorted by key;
 * tombstones are left out. keys[i] and values[i] are NUL-terminated; free both with
 * sl_topic_list_free. */
int sl_pl_read_latest(const char *broker, const char *topic, const char *prefix, char ***keys,
                      char ***values, size_t *n, char *errbuf, size_t errlen);

/* Sends the records of dead-letter topic 'dlq' that were not replayed yet back to their
 * sluice.original_topic (and partition), without the sluice.* routing headers; progress is
 * committed for the group "sluice.dlq-replay" once all are acknowledged. Records without an
 * original topic are counted in '*skipped' and left alone. */
int sl_pl_dlq_replay(const char *broker, const char *dlq, uint64_t *replayed, uint64_t *skipped,
                     char *errbuf, size_t errlen);

#endif

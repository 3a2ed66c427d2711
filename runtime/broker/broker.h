/* The broker's core operations, independent of any wire protocol: topic admin, produce, read,
 * list offsets, and the long-poll signal. The native and Kafka protocol handlers in net/ both
 * call these, so a record produced through one is read the same through the other.
 *
 * Thread-safety: every function may be called from any connection thread. */
#ifndef SL_BROKER_BROKER_H
#define SL_BROKER_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "broker/topic_config.h"
#include "log/partlog.h"

typedef struct sl_broker sl_broker;

typedef struct sl_broker_conf {
    const char *data_dir;
    int32_t node_id;
    int64_t retention_check_ms;  /* how often retention, flush.ms and segment.ms are checked */
    int64_t cleaner_interval_ms; /* how often compacted topics are looked at (Kafka's
                                  * log.cleaner.backoff.ms); <= 0: 15000 */
} sl_broker_conf;

/* Opens the data directory: checks or writes meta.properties, replays the metadata log, opens
 * (and recovers) every partition, starts the background maintenance thread. */
int sl_broker_open(const sl_broker_conf *conf, sl_broker **out);

/* Refuses new work and wakes every long-poll so connection threads can finish. */
void sl_broker_shutdown(sl_broker *b);

/* Flushes every partition to disk and frees the broker. Call after the servers stopped. */
void sl_broker_close(sl_broker *b);

int32_t sl_broker_node_id(const sl_broker *b);

/* ---- topics ---- */

int sl_broker_create_topic(sl_broker *b, const char *name, int32_t partitions,
                           const sl_config_kv *configs, size_t nconfigs, char *errbuf,
                           size_t errlen);
int sl_broker_delete_topic(sl_broker *b, const char *name, char *errbuf, size_t errlen);

/* Creates an internal topic ("__" name, refused to users) unless it exists; 'compacted' keeps
 * the latest record per key forever instead of deleting by age. */
int sl_broker_ensure_internal_topic(sl_broker *b, const char *name, int32_t partitions,
                                    bool compacted, char *errbuf, size_t errlen);
int sl_broker_alter_topic(sl_broker *b, const char *name, const sl_config_kv *configs,
                          size_t nconfigs, char *errbuf, size_t errlen);

typedef struct sl_partition_desc {
    int32_t partition;
    int32_t leader;
    int64_t start_offset;
    int64_t end_offset; /* high watermark */
    int64_t size_bytes;
} sl_partition_desc;

/* Owned by the caller: free with sl_topic_desc_free. 'configs' holds every effective value. */
typedef struct sl_topic_desc {
    char *name;
    int32_t npartitions;
    sl_partition_desc *partitions;
    sl_config_kv *configs;
    size_t nconfigs;
} sl_topic_desc;

int sl_broker_describe_topic(sl_broker *b, const char *name, sl_topic_desc *out);
void sl_topic_desc_free(sl_topic_desc *d);

/* Sorted names of user topics (internal ones, starting "__", are left out unless 'internal'). */
int sl_broker_list_topics(sl_broker *b, bool internal, char ***names, size_t *count);
void sl_broker_free_names(char **names, size_t count);

/* SL_ENOENT when the topic does not exist. */
int sl_broker_partition_count(sl_broker *b, const char *topic, int32_t *count);

/* A new producer id for an idempotent producer, with epoch 0. Ids are never reused: they are
 * handed out from blocks recorded in the metadata log. */
int sl_broker_init_producer_id(sl_broker *b, int64_t *producer_id, int16_t *epoch);

/* ---- data ---- */

/* Validates and appends the batches in 'data' (changed in place: offsets assigned), then moves
 * the high watermark. SL_ENOENT (unknown topic or partition), SL_ETOOLARGE, SL_ECORRUPT with a
 * sentence in errbuf. */
int sl_broker_produce(sl_broker *b, const char *topic, int32_t partition, uint8_t *data,
                      size_t len, sl_append_result *res, char *errbuf, size_t errlen);

/* Appends whole batches from 'offset' (see sl_partlog_read) to 'out'. */
int sl_broker_read(sl_broker *b, const char *topic, int32_t partition, int64_t offset,
                   size_t max_bytes, sl_buf *out, sl_read_result *res);

/* ---- transactions (the coordinator is group/txn.h; these are its hands on the logs) ---- */

/* sl_broker_read for a read_committed reader: up to the last stable offset, and into '*aborted'
 * (malloc'd, NULL when none) the aborted transactions from 'offset' to it, which the reader
 * skips. */
int sl_broker_read_committed(sl_broker *b, const char *topic, int32_t partition, int64_t offset,
                             size_t max_bytes, sl_buf *out, sl_read_result *res,
                             sl_txn_range **aborted, size_t *naborted);

/* Calls 'fn' for every committed record of a partition, from its log start to its last stable
 * offset, in order (markers and aborted transactions skipped): how the coordinators load their
 * internal topics at start. */
int sl_broker_replay(sl_broker *b, const char *topic, int32_t partition,
                     void (*fn)(void *arg, const sl_record_view *rv), void *arg);

/* Appends a transaction marker (SL_CONTROL_COMMIT or SL_CONTROL_ABORT) for 'pid' and moves the
 * high watermark past it. SL_ENOENT when the partition is gone. */
int sl_broker_write_marker(sl_broker *b, const char *topic, int32_t partition, int64_t pid,
                           int16_t epoch, int type);

/* Calls 'fn' for every transaction open in any partition (what a crash left undecided). */
int sl_broker_foreach_open_txn(sl_broker *b,
                               int (*fn)(void *arg, const char *topic, int32_t partition,
                                         const sl_txn_range *txn),
                               void *arg);

/* A transactional batch may be appended only for the producer's current epoch, and the
 * coordinator must learn which partitions its transaction touches: 'check' is asked before each
 * such append (0 to go on, SL_EFENCED or SL_EINVAL to refuse) and 'done' told after it, whatever
 * check answered, both from the producing thread; between the two the coordinator may hold its
 * lock, so no transaction ends half-way through an append. The broker calls check before it
 * takes any lock of its own, so the coordinator may call into the broker while holding its
 * lock. Set once, before serving. */
typedef struct sl_txn_hook {
    int (*check)(void *arg, const char *topic, int32_t partition, int64_t pid, int16_t epoch);
    void (*done)(void *arg);
    void *arg;
} sl_txn_hook;
void sl_broker_set_txn_hook(sl_broker *b, const sl_txn_hook *hook);

/* when: -1 the high watermark, -2 the log start, -3 the last stable offset, otherwise a
 * timestamp in ms. */
int sl_broker_list_offset(sl_broker *b, const char *topic, int32_t partition, int64_t when,
                          int64_t *offset);

/* The timestamp of the record at 'offset' (lag as time needs the age of the oldest record a
 * group has not consumed). SL_ERANGE if the offset is not in the log. */
int sl_broker_record_timestamp(sl_broker *b, const char *topic, int32_t partition, int64_t offset,
                               int64_t *timestamp);

/* Long-poll: a counter that moves on every append. A fetch that found too little takes the value
 * before reading and then waits until it moves, the monotonic deadline passes, or shutdown. */
uint64_t sl_broker_data_version(sl_broker *b);
void sl_broker_wait_for_data(sl_broker *b, uint64_t version, int64_t deadline_mono_ms);

/* ---- observability ---- */

enum sl_request_kind {
    SL_REQ_PRODUCE,
    SL_REQ_FETCH,
    SL_REQ_LIST_OFFSETS,
    SL_REQ_METADATA,
    SL_REQ_ADMIN,
    SL_REQ_GROUP,
    SL_REQ_KINDS
};

/* Counts one request of 'kind' that took 'ns' nanoseconds ('protocol' 0 native, 1 kafka). */
void sl_broker_observe(sl_broker *b, int protocol, enum sl_request_kind kind, int64_t ns);

/* Appends the Prometheus text exposition of every metric to 'out'. */
int sl_broker_metrics(sl_broker *b, sl_buf *out);

bool sl_broker_stopping(sl_broker *b);

#endif

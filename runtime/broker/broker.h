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

/* Longest topic name (Kafka's limit), so names fit file names with room for "-partition". */
#define SL_TOPIC_NAME_MAX 249

/* Where a partition's replicas live and who leads it (cluster/cluster.h keeps these in the
 * metadata log). A node outside a cluster leads every partition alone. */
#define SL_MAX_REPLICAS 8
typedef struct sl_partition_state {
    int32_t leader;  /* node id; -1: none right now */
    int32_t epoch;   /* leader epoch: moves with every change of leader */
    int32_t version; /* moves with every change of leader or ISR */
    int32_t nreplicas, nisr;
    int32_t replicas[SL_MAX_REPLICAS];
    int32_t isr[SL_MAX_REPLICAS]; /* the in-sync replicas, the leader among them */
} sl_partition_state;

typedef struct sl_broker_conf {
    const char *data_dir;
    int32_t node_id;
    int64_t retention_check_ms;  /* how often retention, flush.ms and segment.ms are checked */
    int64_t cleaner_interval_ms; /* how often compacted topics are looked at (Kafka's
                                  * log.cleaner.backoff.ms); <= 0: 15000 */
    /* A node of a cluster: user topics come from the metadata log (sl_broker_apply_*), and
     * partitions have leaders and followers. */
    bool clustered;
    int64_t replica_lag_max_ms; /* a follower this far behind leaves the ISR; <= 0: 10000 */
} sl_broker_conf;

/* Opens the data directory: checks or writes meta.properties, replays the metadata log, opens
 * (and recovers) every partition, starts the background maintenance thread. */
int sl_broker_open(const sl_broker_conf *conf, sl_broker **out);

/* Refuses new work and wakes every long-poll so connection threads can finish. */
void sl_broker_shutdown(sl_broker *b);

/* Flushes every partition to disk and frees the broker. Call after the servers stopped. */
void sl_broker_close(sl_broker *b);

int32_t sl_broker_node_id(const sl_broker *b);
bool sl_broker_clustered(const sl_broker *b);

/* ---- topics ---- */

/* 'replication' <= 0: the default (one replica outside a cluster, where more is refused). On a
 * node of a cluster, user topics are created, deleted and altered through the admin hook. */
int sl_broker_create_topic(sl_broker *b, const char *name, int32_t partitions,
                           int32_t replication, const sl_config_kv *configs, size_t nconfigs,
                           char *errbuf, size_t errlen);
int sl_broker_delete_topic(sl_broker *b, const char *name, char *errbuf, size_t errlen);

/* The committed offsets of consumer groups: a group's coordinator is the leader of its
 * partition, and in a cluster it moves with it. */
#define SL_OFFSETS_TOPIC "__consumer_offsets"
#define SL_OFFSETS_PARTITIONS 50 /* Kafka's offsets.topic.num.partitions */

/* Transactions' state: in a cluster, the one internal topic each node keeps for itself (its
 * transaction coordinator is the node's own). Every other topic is replicated. */
#define SL_TXN_STATE_TOPIC "__transaction_state"

/* The replication an internal topic asks the controller for: 3, or every voter of a smaller
 * quorum (Kafka's offsets.topic.replication.factor). Users cannot create "__" names. Not -1:
 * Kafka clients send that for "the default". */
#define SL_REPLICATION_INTERNAL INT32_MIN

/* Creates an internal topic ("__" name, refused to users) unless it exists; 'compacted' keeps
 * the latest record per key forever instead of deleting by age. In a cluster it is created
 * through the admin hook with SL_REPLICATION_INTERNAL (SL_ENOTLEADER while the node cannot
 * reach a controller yet: try again). */
int sl_broker_ensure_internal_topic(sl_broker *b, const char *name, int32_t partitions,
                                    bool compacted, char *errbuf, size_t errlen);
int sl_broker_alter_topic(sl_broker *b, const char *name, const sl_config_kv *configs,
                          size_t nconfigs, char *errbuf, size_t errlen);

typedef struct sl_partition_desc {
    int32_t partition;
    int32_t leader;
    sl_partition_state state; /* replicas and ISR */
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
 * handed out from blocks recorded in the node's metadata log, under the node id (bits 40 and
 * up) in a cluster, so that no two nodes hand out the same. */
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

/* ---- replication (a node of a cluster: cluster/ drives these) ---- */

/* Validates a topic's name, partition count and configs for creation, with a sentence. An
 * internal topic's name starts with "__"; a user's may not. */
int sl_broker_check_new_topic(const char *name, bool internal, int32_t partitions,
                              const sl_config_kv *configs,
                              size_t nconfigs, char *errbuf, size_t errlen);

/* The metadata log's topic changes, applied in log order on every node: a topic (unless it
 * exists) with the logs of the partitions whose replicas include this node, opened as they are
 * on disk unless a directory belongs to another incarnation 'id' of the name (its topic.id);
 * its deletion (of the directories it opened); its configs (the full overrides). */
int sl_broker_apply_topic(sl_broker *b, const char *name, uint64_t id, int32_t npartitions,
                          const sl_config_kv *configs, size_t nconfigs,
                          const sl_partition_state *states);
int sl_broker_apply_delete(sl_broker *b, const char *name);
int sl_broker_apply_config(sl_broker *b, const char *name, const sl_config_kv *configs,
                           size_t nconfigs);

/* A partition's new state from the metadata log: this node leads it, follows it, or neither.
 * A new leader knows none of its followers' positions yet; a partition that loses its leader
 * here wakes its acks=all waiters (they answer SL_ENOTLEADER). */
int sl_broker_apply_partition(sl_broker *b, const char *topic, int32_t partition,
                              const sl_partition_state *st);

int sl_broker_partition_state(sl_broker *b, const char *topic, int32_t partition,
                              sl_partition_state *out);

/* On a node of a cluster, user topic admin goes to the controller (through the metadata log):
 * these take the broker's admin calls. Set once, before serving. */
typedef struct sl_admin_hook {
    int (*create)(void *arg, const char *name, int32_t partitions, int32_t replication,
                  const sl_config_kv *configs, size_t nconfigs, char *errbuf, size_t errlen);
    int (*remove)(void *arg, const char *name, char *errbuf, size_t errlen);
    int (*alter)(void *arg, const char *name, const sl_config_kv *configs, size_t nconfigs,
                 char *errbuf, size_t errlen);
    void *arg;
} sl_admin_hook;
void sl_broker_set_admin_hook(sl_broker *b, const sl_admin_hook *hook);

/* The leader asks the controller to change a partition's ISR to 'proposed' (a follower caught
 * up, or fell behind for longer than replica_lag_max_ms). Called without broker locks held,
 * from a connection or the maintenance thread; it must not block (queue the request). Set once,
 * before serving. */
typedef struct sl_isr_hook {
    void (*propose)(void *arg, const char *topic, int32_t partition,
                    const sl_partition_state *proposed);
    void *arg;
} sl_isr_hook;
void sl_broker_set_isr_hook(sl_broker *b, const sl_isr_hook *hook);

/* The node had applied the metadata log as far as the controller at a heartbeat the controller
 * answered: it may lead its partitions until 'until_mono_ms', a time before the controller
 * could fence it. Without a lease it leads nothing (an old record may still name it leader of a
 * partition that has moved on: after a restart, or when it was cut off or frozen). */
void sl_broker_renew_lease(sl_broker *b, int64_t until_mono_ms);

/* acks=all, before the append: SL_ENOTENOUGHREPLICAS while the ISR is smaller than the topic's
 * min.insync.replicas, SL_ENOTLEADER when this node does not lead the partition. */
int sl_broker_check_insync(sl_broker *b, const char *topic, int32_t partition);

/* acks=all, after the append: waits until the high watermark passes 'offset' (every in-sync
 * replica has the record). SL_ETIMEDOUT at the monotonic deadline; SL_ENOTLEADER when this
 * node stops leading the partition meanwhile, or leads it at another epoch than
 * 'leader_epoch' (the append's: sl_append_result); SL_ENOTENOUGHREPLICAS when the ISR shrank
 * below min.insync.replicas before the record was in it (Kafka's NOT_ENOUGH_REPLICAS_AFTER_
 * APPEND: the producer retries, its idempotence dedups); SL_ESTOPPED. */
int sl_broker_wait_replicated(sl_broker *b, const char *topic, int32_t partition, int64_t offset,
                              int32_t leader_epoch, int64_t deadline_mono_ms);

/* The high watermark of this node's replica of the partition, leading or following (a
 * follower's trails the leader's by a fetch), as monitoring shows it: a group's lag is seen
 * from its coordinator, which may only follow the partition. SL_ENOENT without a replica. */
int sl_broker_replica_hw(sl_broker *b, const char *topic, int32_t partition, int64_t *hw);

/* Whether this node leads the partition now (SL_ENOTLEADER when not): its leader epoch and
 * offsets. A coordinator taking over a partition loads it once the high watermark reaches the
 * log end: a new leader's HW lags until its followers fetch again. */
int sl_broker_led_offsets(sl_broker *b, const char *topic, int32_t partition, int32_t *epoch,
                          sl_read_result *offsets);

/* The leader's side of a follower's fetch: 'replica' (a node id) at leader epoch 'epoch' asks
 * from 'offset', which is also its log end: the leader records it, moves the ISR and the high
 * watermark, and reads up to its own log end. A follower checking its log first sends the
 * last epoch it holds ('last_epoch' >= 0; -1 skips the check): when the leader's log does not
 * hold that epoch up to 'offset', nothing is read and *diverging_epoch / *diverging_end say
 * where the follower must cut (sl_partlog_epoch_end on the leader; the epoch may be -1), else
 * *diverging_end is -1. SL_ENOTLEADER (not the leader, or not yet at 'epoch'), SL_EFENCED (the follower's epoch
 * is old), SL_ERANGE. */
int sl_broker_replica_fetch(sl_broker *b, const char *topic, int32_t partition, int32_t replica,
                            int32_t epoch, int64_t offset, int32_t last_epoch, size_t max_bytes,
                            sl_buf *out, sl_read_result *res, int32_t *diverging_epoch,
                            int64_t *diverging_end);

/* A partition this node follows, as its fetcher needs it. */
typedef struct sl_followed {
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
    int32_t epoch;
    int64_t log_end;
    int32_t last_epoch; /* the newest leader epoch in the local log, or -1 when empty */
    bool checked;       /* the log was checked against this epoch's leader */
} sl_followed;

/* The partitions this node follows whose leader is 'leader', into a malloc'd array. */
int sl_broker_followed(sl_broker *b, int32_t leader, sl_followed **out, size_t *n);

/* The follower's hands, each refused (SL_EFENCED) unless the partition is still followed at
 * 'epoch': appends a leader's batches and takes its high watermark (never past the local log
 * end); cuts a divergent tail; marks the log checked against this epoch's leader. */
int sl_broker_replica_append(sl_broker *b, const char *topic, int32_t partition, int32_t epoch,
                             const uint8_t *data, size_t len, int64_t leader_hw);
int sl_broker_replica_truncate(sl_broker *b, const char *topic, int32_t partition, int32_t epoch,
                               int64_t offset);
int sl_broker_replica_checked(sl_broker *b, const char *topic, int32_t partition, int32_t epoch);
/* The leader's log starts past this replica's end: sl_partlog_reset to 'log_start'. */
int sl_broker_replica_reset(sl_broker *b, const char *topic, int32_t partition, int32_t epoch,
                            int64_t log_start);

/* sl_partlog_epoch_end on a hosted partition. */
int sl_broker_epoch_end(sl_broker *b, const char *topic, int32_t partition, int32_t epoch,
                        int32_t *found_epoch, int64_t *end_offset);

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

/* The same for a follower: a counter that moves when a log grows (or a partition's state
 * changes), not when a high watermark moves. */
uint64_t sl_broker_log_version(sl_broker *b);
void sl_broker_wait_for_log(sl_broker *b, uint64_t version, int64_t deadline_mono_ms);

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

/* Counts one request of 'kind' that took 'ns' nanoseconds ('protocol' 0 native over tcp://, 1
 * kafka, 2 native over ipc://: a pipeline instance talking to its own node). */
void sl_broker_observe(sl_broker *b, int protocol, enum sl_request_kind kind, int64_t ns);

/* Appends the Prometheus text exposition of every metric to 'out'. */
int sl_broker_metrics(sl_broker *b, sl_buf *out);

bool sl_broker_stopping(sl_broker *b);

#endif

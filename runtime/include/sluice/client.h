/* libsluice: the C client of a Sluice broker.
 *
 * Three handles, all opaque and thread-safe unless a function says otherwise:
 *   sl_client    admin operations (topics, offsets, metadata) over one connection;
 *   sl_producer  batches records per partition and sends them in the background;
 *   sl_consumer  fetches assigned partitions and hands records out one at a time.
 *
 * Configuration travels in an sl_conf of "key=value" strings (librdkafka style). A *_new
 * function that takes an sl_conf owns it on success and leaves it to the caller on failure.
 *
 * Every function returns 0 or a negative SL_E* status (sluice/err.h). Functions that take
 * 'errbuf' write a sentence naming the cause there on failure. */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_API __attribute__((visibility("default")))

/* The address a broker listens on unless told otherwise. */
#define SL_DEFAULT_BROKER "tcp://127.0.0.1:9400"

/* Special offsets for seeks and list-offsets. */
#define SL_OFFSET_END -1       /* the next offset to be written (the high watermark) */
#define SL_OFFSET_BEGINNING -2 /* the log start offset */

/* "Let the partitioner choose" / "all partitions". */
#define SL_PARTITION_ANY -1

/* ---- configuration ----------------------------------------------------------------------- */

typedef struct sl_conf sl_conf;

/* Keys (defaults):
 *   bootstrap.servers   broker URL, "tcp://host:port" or "ipc:///path" (SL_DEFAULT_BROKER)
 *   client.id           a name the broker logs ("sluice")
 *   request.timeout.ms  how long to wait for one answer (30000)
 *   acks                0, 1 or all (all)
 *   batch.size          bytes per partition batch before it is sent (131072)
 *   linger.ms           how long a batch waits to fill (5)
 *   fetch.max.wait.ms   long-poll wait when no data is there (500)
 *   fetch.min.bytes     bytes to gather before a fetch answers (1)
 *   fetch.max.bytes     bytes per fetch over all partitions (52428800)
 *   max.partition.fetch.bytes  bytes per partition per fetch (1048576)
 *   auto.offset.reset   where a consumer goes when its offset is gone: earliest|latest (latest)
 *   compression.type    none, gzip, snappy, lz4 or zstd (none)
 *   enable.idempotence  true: the broker writes each batch once, whatever the retries (true)
 *   delivery.timeout.ms how long a record may take, retries included, before it fails (120000)
 *   retry.backoff.ms / retry.backoff.max.ms  first and longest wait between retries (100/1000)
 *   buffer.memory       bytes of records the producer holds before send pushes back (33554432)
 *   max.block.ms        how long send waits for room; 0: fail at once with SL_EFULL (60000)
 *   group.id            the consumer group a subscribing consumer joins (none)
 *   session.timeout.ms  a member silent this long is removed from its group (10000)
 *   heartbeat.interval.ms  how often a member tells the coordinator it is alive (3000)
 *   max.poll.interval.ms   a member that does not poll this long leaves its group (300000)
 *   partition.assignment.strategy  range, roundrobin or cooperative-sticky (range)
 *   enable.auto.commit  commit positions in the background while polling (true)
 *   auto.commit.interval.ms  how often auto commit runs (5000)
 *   transactional.id    makes the producer transactional: see sl_producer_commit_transaction
 *                       (none)
 *   transaction.timeout.ms  an open transaction older than this is aborted by the broker (60000)
 *   isolation.level     read_uncommitted or read_committed: a read_committed consumer sees only
 *                       committed transactions' records, and nothing past an open one
 *                       (read_uncommitted)
 * Unknown keys and bad values are refused with a sentence in errbuf. */
SL_API sl_conf *sl_conf_new(void);
SL_API int sl_conf_set(sl_conf *conf, const char *key, const char *value, char *errbuf,
                       size_t errlen);
/* The value of 'key' (the default when unset), or NULL for an unknown key. Borrowed from conf. */
SL_API const char *sl_conf_get(const sl_conf *conf, const char *key);
SL_API void sl_conf_destroy(sl_conf *conf);

/* ---- records ----------------------------------------------------------------------------- */

/* A header: 'key' is a NUL-terminated string; 'value' NULL means a null value. */
typedef struct sl_header {
    const char *key;
    const void *value;
    size_t value_len;
} sl_header;

/* A record read by a consumer. Every pointer is borrowed from the consumer and valid until the
 * next sl_consumer_poll() or sl_consumer_destroy(). 'key' or 'value' NULL means null. */
typedef struct sl_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* ms since the epoch */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const sl_header *headers;
    size_t nheaders;
} sl_message;

/* ---- admin ------------------------------------------------------------------------------- */

typedef struct sl_client sl_client;

typedef struct sl_partition_info {
    int32_t partition;
    int32_t leader;       /* node id; -1: none right now */
    int64_t start_offset; /* log start offset (-1: no replica on the node asked) */
    int64_t end_offset;   /* high watermark: the next offset to be written */
    int64_t size_bytes;   /* bytes on disk */
    int32_t nreplicas;    /* the nodes holding a replica, the leader among them */
    int32_t replicas[8];
    int32_t nisr;         /* the in-sync replicas */
    int32_t isr[8];
} sl_partition_info;

typedef struct sl_config_entry {
    char *key;
    char *value;
} sl_config_entry;

/* Owned by the caller; free with sl_topic_info_free(). Configs are every effective config. */
typedef struct sl_topic_info {
    char *name;
    int32_t npartitions;
    sl_partition_info *partitions;
    size_t nconfigs;
    sl_config_entry *configs;
} sl_topic_info;

/* Connects to conf's bootstrap.servers. Takes conf on success. Fails with SL_ECONNREFUSED and
 * "cannot reach broker at URL" in errbuf when nothing answers. */
SL_API int sl_client_new(sl_conf *conf, sl_client **out, char *errbuf, size_t errlen);
SL_API void sl_client_destroy(sl_client *cl);

/* 'configs' are "key=value" strings; the broker refuses unknown keys and bad values, the whole
 * request then changes nothing. SL_EEXIST, SL_ENOENT, SL_EBADCONFIG, SL_EINVAL as apt. */
SL_API int sl_topic_create(sl_client *cl, const char *name, int32_t partitions,
                           const char *const *configs, size_t nconfigs, char *errbuf,
                           size_t errlen);
/* The same with 'replication' replicas of each partition on different brokers of a cluster (at
 * most as many as live brokers; <= 0: the cluster's default). */
SL_API int sl_topic_create_replicated(sl_client *cl, const char *name, int32_t partitions,
                                      int32_t replication, const char *const *configs,
                                      size_t nconfigs, char *errbuf, size_t errlen);
SL_API int sl_topic_alter(sl_client *cl, const char *name, const char *const *configs,
                          size_t nconfigs, char *errbuf, size_t errlen);
SL_API int sl_topic_delete(sl_client *cl, const char *name, char *errbuf, size_t errlen);

/* Names of all user topics, sorted. '*names' is a malloc'd array of malloc'd strings: free with
 * sl_topic_list_free(). */
SL_API int sl_topic_list(sl_client *cl, char ***names, size_t *count);
SL_API void sl_topic_list_free(char **names, size_t count);

SL_API int sl_topic_describe(sl_client *cl, const char *name, sl_topic_info **out, char *errbuf,
                             size_t errlen);
SL_API void sl_topic_info_free(sl_topic_info *info);

/* The offset for 'when': SL_OFFSET_BEGINNING, SL_OFFSET_END, or a timestamp in ms, for which
 * it is the first offset whose record timestamp is >= when (the end offset if none is). */
SL_API int sl_list_offset(sl_client *cl, const char *topic, int32_t partition, int64_t when,
                          int64_t *offset);

/* ---- producer ---------------------------------------------------------------------------- */

typedef struct sl_producer sl_producer;

/* What became of one record. Called on the producer's background thread, once per record, in
 * send order per partition; keep it short. 'topic' is borrowed for the call. */
typedef void (*sl_delivery_cb)(void *opaque, int status, const char *topic, int32_t partition,
                               int64_t offset);

typedef struct sl_produce_record {
    const char *topic;
    int32_t partition; /* SL_PARTITION_ANY: murmur2 of the key, or sticky when key is NULL */
    const void *key;   /* NULL: null key */
    size_t key_len;
    const void *value; /* NULL: null value (a tombstone) */
    size_t value_len;
    int64_t timestamp; /* ms since the epoch; 0: now */
    const sl_header *headers;
    size_t nheaders;
    sl_delivery_cb cb; /* may be NULL */
    void *opaque;
} sl_produce_record;

SL_API int sl_producer_new(sl_conf *conf, sl_producer **out, char *errbuf, size_t errlen);

/* Queues a record. Everything it points to is copied before it returns. Fails at once with
 * SL_ENOENT when the topic does not exist, SL_EINVAL for a partition out of range. */
SL_API int sl_producer_send(sl_producer *p, const sl_produce_record *rec);

/* Queues records as one batch, which the broker appends whole or not at all (Kafka's record
 * batch is the unit of its log): all must name the same topic and the same partition (not
 * SL_PARTITION_ANY), and have no headers. The batch may exceed batch.size; the topic's
 * max.message.bytes still bounds it. Copied before it returns. */
SL_API int sl_producer_send_batch(sl_producer *p, const sl_produce_record *recs, size_t n);

/* Sends what is queued and waits until every record sent so far has its delivery report.
 * SL_ETIMEDOUT if that takes longer than timeout_ms (-1: no limit). */
SL_API int sl_producer_flush(sl_producer *p, int timeout_ms);

/* Records whose delivery failed, since the producer was made. */
SL_API uint64_t sl_producer_failed_count(sl_producer *p);

/* Stops the producer. Records not yet delivered get a report with SL_ECLOSED: flush first. */
SL_API void sl_producer_destroy(sl_producer *p);

/* The partition Kafka's clients pick for 'key' among 'npartitions' (murmur2, positive). */
SL_API int32_t sl_partition_for_key(const void *key, size_t key_len, int32_t npartitions);

/* ---- consumer ---------------------------------------------------------------------------- */

typedef struct sl_consumer sl_consumer;

SL_API int sl_consumer_new(sl_conf *conf, sl_consumer **out, char *errbuf, size_t errlen);

/* Adds a partition (SL_PARTITION_ANY: every partition of the topic) starting at 'offset'
 * (an offset, SL_OFFSET_BEGINNING or SL_OFFSET_END). SL_ENOENT for an unknown topic. */
SL_API int sl_consumer_assign(sl_consumer *c, const char *topic, int32_t partition,
                              int64_t offset);

/* Moves an assigned partition (SL_PARTITION_ANY: all of the topic's) to 'offset', or to the
 * first record whose timestamp is >= 'timestamp_ms'. */
SL_API int sl_consumer_seek(sl_consumer *c, const char *topic, int32_t partition, int64_t offset);
SL_API int sl_consumer_seek_time(sl_consumer *c, const char *topic, int32_t partition,
                                 int64_t timestamp_ms);

/* The next record, waiting up to timeout_ms (-1: no limit). 0 and *msg set, or SL_ETIMEDOUT
 * when nothing arrived in time. *msg is valid until the next poll. */
SL_API int sl_consumer_poll(sl_consumer *c, int timeout_ms, const sl_message **msg);

/* The next offset poll will return for a partition: a real offset once the consumer has resolved
 * its start (SL_OFFSET_BEGINNING/END are resolved at assign and seek time). */
SL_API int sl_consumer_position(sl_consumer *c, const char *topic, int32_t partition,
                                int64_t *next_offset);

/* Number of partitions of 'topic' (asks the broker). */
SL_API int sl_consumer_partition_count(sl_consumer *c, const char *topic, int32_t *count);

/* ---- consumer groups ---- */

/* A partition, with an offset where one is meant (a commit, a position). */
typedef struct sl_topic_partition {
    const char *topic;
    int32_t partition;
    int64_t offset;
} sl_topic_partition;

typedef enum sl_rebalance_event {
    SL_PARTITIONS_ASSIGNED, /* now yours, starting from the group's committed offsets */
    SL_PARTITIONS_REVOKED,  /* about to go to another member: commit what you processed */
    SL_PARTITIONS_LOST      /* already gone (this member was expelled): do not commit */
} sl_rebalance_event;

/* Called from inside sl_consumer_poll (the application's thread). 'parts' is borrowed for the
 * call. A consumer with enable.auto.commit has committed revoked partitions before the call.
 * SL_PARTITIONS_ASSIGNED comes after every rebalance this member takes part in, with n = 0 when
 * nothing new is assigned (so a member learns it has joined). */
typedef void (*sl_rebalance_cb)(void *opaque, sl_rebalance_event event,
                                const sl_topic_partition *parts, size_t n);

/* Joins conf's group.id and consumes the partitions the group assigns to this member among
 * 'topics'. The group work (joining, rebalancing, committing) happens inside sl_consumer_poll.
 * SL_EINVAL without group.id or after sl_consumer_assign. 'cb' may be NULL. */
SL_API int sl_consumer_subscribe(sl_consumer *c, const char *const *topics, size_t ntopics,
                                 sl_rebalance_cb cb, void *opaque);

/* Commits the position of every assigned partition (the offset of the next record to read).
 * With 'async' it returns at once and failures are logged. */
SL_API int sl_consumer_commit(sl_consumer *c, int async);

/* Commits the given offsets (each the next offset to read). */
SL_API int sl_consumer_commit_offsets(sl_consumer *c, const sl_topic_partition *offsets, size_t n,
                                      int async);

/* The group's committed offset for a partition, or -1 when it has none. */
SL_API int sl_consumer_committed(sl_consumer *c, const char *topic, int32_t partition,
                                 int64_t *offset);

/* Stops and restarts fetching a partition without giving it up (back pressure). */
SL_API int sl_consumer_pause(sl_consumer *c, const char *topic, int32_t partition);
SL_API int sl_consumer_resume(sl_consumer *c, const char *topic, int32_t partition);

/* The partitions currently consumed, with positions. '*parts' is owned by the caller: free with
 * sl_topic_partitions_free. */
SL_API int sl_consumer_assignment(sl_consumer *c, sl_topic_partition **parts, size_t *n);
SL_API void sl_topic_partitions_free(sl_topic_partition *parts, size_t n);

/* Leaves the group cleanly: commits (with auto commit), reports the revocation, leaves, so the
 * other members take over at once instead of after session.timeout.ms. sl_consumer_destroy
 * does this too when it was not done. */
SL_API int sl_consumer_close(sl_consumer *c);

/* ---- group admin ---- */

typedef struct sl_group_member_info {
    char *member_id;
    char *client_id;
    char *host;
    sl_topic_partition *partitions; /* topics owned by the info; offsets unused (-1) */
    size_t npartitions;
} sl_group_member_info;

typedef struct sl_group_offset_info {
    char *topic;
    int32_t partition;
    int64_t committed;
    int64_t end_offset;
    int64_t lag;    /* records */
    int64_t lag_ms; /* age of the oldest record not consumed yet */
} sl_group_offset_info;

/* Owned by the caller: free with sl_group_info_free. */
typedef struct sl_group_info {
    char *group;
    char *state; /* Empty, PreparingRebalance, CompletingRebalance, Stable */
    char *protocol;
    int32_t generation;
    sl_group_member_info *members;
    size_t nmembers;
    sl_group_offset_info *offsets;
    size_t noffsets;
    int32_t coordinator; /* the node that coordinates it (in a cluster, the leader of its
                          * partition of __consumer_offsets) */
} sl_group_info;

/* Names of the groups (with members or committed offsets), sorted, with their states. Free both
 * arrays with sl_topic_list_free. */
SL_API int sl_group_list(sl_client *cl, char ***names, char ***states, size_t *count);

SL_API int sl_group_describe(sl_client *cl, const char *group, sl_group_info **out, char *errbuf,
                             size_t errlen);
SL_API void sl_group_info_free(sl_group_info *info);

/* ---- cluster ----------------------------------------------------------------------------- */

typedef struct sl_cluster_node {
    int32_t node_id;
    char *url; /* its native protocol address */
} sl_cluster_node;

/* Owned by the caller: free with sl_cluster_info_free. */
typedef struct sl_cluster_info {
    int32_t node_id;         /* of the broker that answered */
    int32_t controller;      /* the node leading the metadata quorum; 0: none known, or no
                              * quorum (a single node without --controllers) */
    size_t voters;           /* controllers in the quorum; 0 without one */
    sl_cluster_node *nodes;  /* registered brokers by id (a single node: itself) */
    size_t nnodes;
} sl_cluster_info;

/* The cluster as the connected broker knows it. */
SL_API int sl_cluster_describe(sl_client *cl, sl_cluster_info *out);
SL_API void sl_cluster_info_free(sl_cluster_info *info);

/* Asks the controller to place every partition again over the live brokers and move the
 * replicas that differ (sluice cluster rebalance); '*moving' gets how many partitions are
 * moving. Call again until it is 0 to wait for the end. */
SL_API int sl_cluster_rebalance_replicas(sl_client *cl, int32_t *moving, char *errbuf,
                                         size_t errlen);
SL_API int sl_group_delete(sl_client *cl, const char *group, char *errbuf, size_t errlen);

/* Sets a group's committed offsets as a tool does (group reset): refused with
 * SL_EGROUPNOTEMPTY while the group has members. */
SL_API int sl_group_set_offsets(sl_client *cl, const char *group,
                                const sl_topic_partition *offsets, size_t n, char *errbuf,
                                size_t errlen);

SL_API void sl_consumer_destroy(sl_consumer *c);

/* ---- transactions ------------------------------------------------------------------------ */

/* A producer with transactional.id writes in transactions: one begins with the first record
 * sent after the producer is made or the last transaction ended, and read_committed consumers
 * see all of it once it commits, none of it if it aborts. sl_producer_new fences any earlier
 * producer with the same transactional.id and aborts what it left open. A fenced producer's
 * sends and commits fail with SL_EFENCED: it must be destroyed.
 *
 * Adds a consumer group's offsets to the transaction, as the consumer's member in its current
 * generation: they take effect only if the transaction commits, and a member that lost its
 * partitions to a rebalance is refused (SL_EGENERATION, SL_EUNKNOWNMEMBER). */
SL_API int sl_producer_send_offsets_to_transaction(sl_producer *p, sl_consumer *c,
                                                   const sl_topic_partition *offsets, size_t n,
                                                   char *errbuf, size_t errlen);

/* Flushes, then commits the transaction: every record and offset of it becomes visible at once.
 * SL_EIO when a record of it failed (abort instead). */
SL_API int sl_producer_commit_transaction(sl_producer *p, int timeout_ms, char *errbuf,
                                          size_t errlen);

/* Waits for what is in flight, then aborts the transaction: none of it will ever be read by a
 * read_committed consumer. */
SL_API int sl_producer_abort_transaction(sl_producer *p, int timeout_ms, char *errbuf,
                                         size_t errlen);

/* ---- misc -------------------------------------------------------------------------------- */

/* "0.1.0" */
SL_API const char *sl_version(void);

#ifdef __cplusplus
}
#endif
#endif

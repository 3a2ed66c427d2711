/* The records of the cluster's metadata log, msgpack maps ("t" names the kind):
 *   {"t": "broker", "id": int, "url": str, "kafka": str (optional)}
 *   {"t": "topic", "name": str, "id": int (optional: this incarnation of the name), "configs":
 *    {str: str}, "replicas": [[node id...]...]}
 *        one list of replicas per partition; its first replica leads, at epoch 0, all in sync
 *   {"t": "delete", "name": str}
 *   {"t": "config", "name": str, "configs": {str: str}}   the full overrides
 *   {"t": "part", "name": str, "p": int, "leader": int, "epoch": int, "version": int,
 *    "isr": [node id...], "replicas": [node id...] (optional: a new replica set),
 *    "target": [node id...] (optional: where a move is taking the replicas; [] when done)}
 * Node ids are >= 1; a leader of -1 is none. A record of a kind this version does not know is
 * refused by the decoder and skipped by the reader, so newer kinds can be added. */
#ifndef SL_CLUSTER_RECORD_H
#define SL_CLUSTER_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "broker/broker.h"

typedef struct sl_cluster_member {
    int32_t id;
    char url[256];  /* the native listener */
    char kafka[128]; /* the Kafka listener, HOST:PORT; "" when it has none */
} sl_cluster_member;

enum sl_cluster_record_type {
    SL_CREC_BROKER = 1,
    SL_CREC_TOPIC,
    SL_CREC_DELETE,
    SL_CREC_CONFIG,
    SL_CREC_PARTITION,
};

typedef struct sl_cluster_record {
    enum sl_cluster_record_type type;
    sl_cluster_member member;        /* BROKER */
    char name[SL_TOPIC_NAME_MAX + 1]; /* TOPIC, DELETE, CONFIG, PARTITION */
    int32_t partition;               /* PARTITION */
    sl_partition_state state;        /* PARTITION (replicas only with has_replicas) */
    bool has_replicas, has_target;   /* PARTITION */
    int32_t target[SL_MAX_REPLICAS]; /* PARTITION, with has_target */
    int32_t ntarget;
    int32_t npartitions;             /* TOPIC */
    uint64_t topic_id;               /* TOPIC (0: none given) */
    sl_partition_state *parts;       /* TOPIC: malloc'd, one per partition */
    sl_config_kv *configs;           /* TOPIC, CONFIG: malloc'd */
    size_t nconfigs;
} sl_cluster_record;

/* Decodes one record of the log: 0 and the record (free it with sl_cluster_record_free),
 * SL_EINVAL for anything else (records this version does not know are skipped by the
 * caller), SL_ENOMEM. Exposed for the fuzzer. */
int sl_cluster_decode_record(const uint8_t *data, size_t len, sl_cluster_record *r);
void sl_cluster_record_free(sl_cluster_record *r);

/* Encodes 'r' into 'out' (appended). */
int sl_cluster_encode_record(const sl_cluster_record *r, sl_buf *out);

#endif

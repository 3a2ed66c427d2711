/* The Kafka wire protocol over the broker's core operations, so that Kafka clients (kcat,
 * librdkafka, confluent-kafka, kafkajs, the Java client) work unchanged. The versions served
 * are "profile M" of shared/KAFKA_PROTOCOL.md: the smallest set all those clients negotiate,
 * where only ApiVersions v3 is a flexible version. Record batches are the stored bytes: no
 * transcoding on produce or fetch.
 *
 * Each request is answered in order on its connection (the connection layer serves one frame at
 * a time), except Produce with acks=0, which gets no answer. A malformed request closes its
 * connection only. */
#ifndef SL_NET_KAFKA_H
#define SL_NET_KAFKA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "group/coordinator.h"
#include "group/txn.h"
#include "net/kafka_codec.h"
#include "cluster/cluster.h"
#include "net/server.h"

/* Kafka's error codes (the wire numbers). */
enum {
    KERR_UNKNOWN = -1,
    KERR_NONE = 0,
    KERR_OFFSET_OUT_OF_RANGE = 1,
    KERR_CORRUPT_MESSAGE = 2,
    KERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    KERR_LEADER_NOT_AVAILABLE = 5,
    KERR_NOT_LEADER = 6,
    KERR_REQUEST_TIMED_OUT = 7,
    KERR_NOT_ENOUGH_REPLICAS = 19,
    KERR_MESSAGE_TOO_LARGE = 10,
    KERR_OFFSET_METADATA_TOO_LARGE = 12,
    KERR_COORDINATOR_LOAD_IN_PROGRESS = 14,
    KERR_COORDINATOR_NOT_AVAILABLE = 15,
    KERR_NOT_COORDINATOR = 16,
    KERR_INVALID_TOPIC = 17,
    KERR_ILLEGAL_GENERATION = 22,
    KERR_INCONSISTENT_GROUP_PROTOCOL = 23,
    KERR_INVALID_GROUP_ID = 24,
    KERR_UNKNOWN_MEMBER_ID = 25,
    KERR_INVALID_SESSION_TIMEOUT = 26,
    KERR_REBALANCE_IN_PROGRESS = 27,
    KERR_UNSUPPORTED_VERSION = 35,
    KERR_TOPIC_ALREADY_EXISTS = 36,
    KERR_INVALID_PARTITIONS = 37,
    KERR_INVALID_REPLICATION_FACTOR = 38,
    KERR_INVALID_CONFIG = 40,
    KERR_INVALID_REQUEST = 42,
    KERR_OUT_OF_ORDER_SEQUENCE = 45,
    KERR_INVALID_PRODUCER_EPOCH = 47,
    KERR_UNKNOWN_PRODUCER_ID = 59,
    KERR_NON_EMPTY_GROUP = 68,
    KERR_GROUP_ID_NOT_FOUND = 69,
    KERR_INVALID_TXN_STATE = 48,
    KERR_INVALID_PRODUCER_ID_MAPPING = 49,
    KERR_INVALID_TRANSACTION_TIMEOUT = 50,
    KERR_UNSUPPORTED_COMPRESSION_TYPE = 76,
};

/* What the Kafka listener serves from, and how it describes itself in Metadata. */
typedef struct sl_kafka_ctx {
    sl_broker *broker;
    sl_coordinator *coord;
    int32_t node_id;
    char host[256]; /* the advertised host and port of the Kafka listener */
    int32_t port;
    bool auto_create_topics; /* auto.create.topics.enable */
    int32_t default_partitions; /* num.partitions for auto-created topics */
    int32_t max_fetch_wait_ms;  /* cap on a fetch's long-poll; 0: the default (30 s) */
    /* For the fuzzer: requests that would block on other group members or create topics on
     * disk are decoded in full and then answered COORDINATOR_NOT_AVAILABLE or as if
     * validate_only, so every decoder is reached at fuzzing speed. Never set in sluiced. */
    bool decode_only;
    sl_txn_coord *txn; /* transactions; NULL: transactional requests are refused */
    sl_cluster *cluster; /* a node of a cluster: Metadata names every broker; NULL: alone */
    /* Set while the listener is bound but 'host' and 'port' are not yet known (port 0 asks
     * for any): requests wait for the release that clears it. */
    atomic_bool address_pending;
} sl_kafka_ctx;

/* One request: header decoded; 'body' reads the request body. */
typedef struct sl_kafka_req {
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    char client_id[256];
    sl_kreader body;
    const char *peer;
} sl_kafka_req;

/* An API's handler: reads req->body (per req->api_version) and writes the response body (the
 * dispatcher writes the size and correlation id). Returns 0 to send the answer, 1 to send none
 * (Produce acks=0), or -1 for a malformed request (the connection is closed). */
typedef int (*sl_kafka_api_fn)(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);

/* An sl_frame_handler; 'ctx' is an sl_kafka_ctx. */
int sl_kafka_handle_frame(void *ctx, sl_conn *conn, uint8_t *frame, size_t len);

/* Serves one request frame (after its size) into 'out' (a whole response frame, size included,
 * or empty when no answer is due). 'peer' names the client in log lines. Returns 0, or -1 when
 * the connection should close. The frame is changed (produced batches get their offsets). */
int sl_kafka_process(sl_kafka_ctx *ctx, const char *peer, uint8_t *frame, size_t len,
                     sl_buf *out);

/* Kafka's error code for an SL_E* status. */
int16_t sl_kafka_error(int status);

/* Data (kafka_data.c) */
int sl_kafka_api_versions(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_metadata(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_produce(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_fetch(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_list_offsets(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_init_producer_id(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);

/* Transactions (kafka_txn.c) */
int sl_kafka_add_partitions_to_txn(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_add_offsets_to_txn(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_end_txn(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_txn_offset_commit(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);

/* Groups and offsets (kafka_group.c) */
int sl_kafka_find_coordinator(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_join_group(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_sync_group(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_heartbeat(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_leave_group(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_offset_commit(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_offset_fetch(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_list_groups(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_describe_groups(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);

/* Admin (kafka_admin.c) */
int sl_kafka_create_topics(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_delete_topics(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);
int sl_kafka_describe_configs(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w);

/* For handlers: creates 'topic' when it is missing and auto-creation is on. 0 when the topic
 * exists afterwards. */
int sl_kafka_ensure_topic(sl_kafka_ctx *ctx, const char *topic);

/* The Kafka listener a node of the cluster registered: SL_ENOENT when it has none. */
int sl_kafka_broker_address(sl_kafka_ctx *ctx, int32_t node, char *host, size_t len,
                            int32_t *port);

#endif

/* The Kafka listener's dispatcher: request header, version check, the API's handler, and the
 * response frame (size, correlation id, body). */
#include <stdio.h>
#include <time.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "net/kafka.h"
#include "sluice/err.h"

struct api_entry {
    int16_t key;
    int16_t min, max; /* profile M of shared/KAFKA_PROTOCOL.md */
    sl_kafka_api_fn fn;
    enum sl_request_kind kind;
    const char *name;
};

/* Never drop v0 of FindCoordinator or InitProducerId: librdkafka enables LZ4, group support
 * and idempotence only when an exact low version lies in the range. */
static const struct api_entry apis[] = {
    {0, 3, 7, sl_kafka_produce, SL_REQ_PRODUCE, "Produce"},
    {1, 4, 11, sl_kafka_fetch, SL_REQ_FETCH, "Fetch"},
    {2, 1, 2, sl_kafka_list_offsets, SL_REQ_LIST_OFFSETS, "ListOffsets"},
    {3, 0, 4, sl_kafka_metadata, SL_REQ_METADATA, "Metadata"},
    {8, 0, 2, sl_kafka_offset_commit, SL_REQ_GROUP, "OffsetCommit"},
    {9, 1, 1, sl_kafka_offset_fetch, SL_REQ_GROUP, "OffsetFetch"},
    {10, 0, 2, sl_kafka_find_coordinator, SL_REQ_GROUP, "FindCoordinator"},
    {11, 0, 2, sl_kafka_join_group, SL_REQ_GROUP, "JoinGroup"},
    {12, 0, 1, sl_kafka_heartbeat, SL_REQ_GROUP, "Heartbeat"},
    {13, 0, 1, sl_kafka_leave_group, SL_REQ_GROUP, "LeaveGroup"},
    {14, 0, 1, sl_kafka_sync_group, SL_REQ_GROUP, "SyncGroup"},
    {15, 0, 0, sl_kafka_describe_groups, SL_REQ_GROUP, "DescribeGroups"},
    {16, 0, 0, sl_kafka_list_groups, SL_REQ_GROUP, "ListGroups"},
    {18, 0, 3, sl_kafka_api_versions, SL_REQ_METADATA, "ApiVersions"},
    {19, 0, 3, sl_kafka_create_topics, SL_REQ_ADMIN, "CreateTopics"},
    {20, 0, 1, sl_kafka_delete_topics, SL_REQ_ADMIN, "DeleteTopics"},
    {22, 0, 1, sl_kafka_init_producer_id, SL_REQ_PRODUCE, "InitProducerId"},
    {24, 0, 1, sl_kafka_add_partitions_to_txn, SL_REQ_PRODUCE, "AddPartitionsToTxn"},
    {25, 0, 1, sl_kafka_add_offsets_to_txn, SL_REQ_PRODUCE, "AddOffsetsToTxn"},
    {26, 0, 1, sl_kafka_end_txn, SL_REQ_PRODUCE, "EndTxn"},
    {28, 0, 2, sl_kafka_txn_offset_commit, SL_REQ_GROUP, "TxnOffsetCommit"},
    {32, 0, 1, sl_kafka_describe_configs, SL_REQ_ADMIN, "DescribeConfigs"},
};
#define NAPIS (sizeof(apis) / sizeof(apis[0]))

static const struct api_entry *find_api(int16_t key) {
    for (size_t i = 0; i < NAPIS; i++)
        if (apis[i].key == key)
            return &apis[i];
    return NULL;
}

/* The ApiVersions answer lists the table above; kafka_data.c writes it from here. */
void sl_kafka_write_api_list(sl_kwriter *w, bool compact) {
    if (compact)
        sl_kw_uvarint(w, NAPIS + 1);
    else
        sl_kw_i32(w, (int32_t)NAPIS);
    for (size_t i = 0; i < NAPIS; i++) {
        sl_kw_i16(w, apis[i].key);
        sl_kw_i16(w, apis[i].min);
        sl_kw_i16(w, apis[i].max);
        if (compact)
            sl_kw_uvarint(w, 0); /* tagged fields */
    }
}

int16_t sl_kafka_error(int status) {
    switch (status) {
    case 0: return KERR_NONE;
    case SL_ERANGE: return KERR_OFFSET_OUT_OF_RANGE;
    case SL_ECORRUPT: return KERR_CORRUPT_MESSAGE;
    case SL_ENOENT: return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    case SL_ENOTLEADER: return KERR_NOT_LEADER;
    case SL_ETIMEDOUT: return KERR_REQUEST_TIMED_OUT;
    case SL_ETOOLARGE: return KERR_MESSAGE_TOO_LARGE;
    case SL_EOUTOFORDER: return KERR_OUT_OF_ORDER_SEQUENCE;
    case SL_EFENCED: return KERR_INVALID_PRODUCER_EPOCH;
    case SL_EUNKNOWNMEMBER: return KERR_UNKNOWN_MEMBER_ID;
    case SL_EGENERATION: return KERR_ILLEGAL_GENERATION;
    case SL_EREBALANCE: return KERR_REBALANCE_IN_PROGRESS;
    case SL_EGROUPPROTOCOL: return KERR_INCONSISTENT_GROUP_PROTOCOL;
    case SL_EGROUPNOTEMPTY: return KERR_NON_EMPTY_GROUP;
    case SL_EEXIST: return KERR_TOPIC_ALREADY_EXISTS;
    case SL_EBADCONFIG: return KERR_INVALID_CONFIG;
    case SL_EINVAL: return KERR_INVALID_REQUEST;
    case SL_EUNSUPPORTED: return KERR_UNSUPPORTED_COMPRESSION_TYPE;
    case SL_ESTOPPED: return KERR_NOT_COORDINATOR;
    case SL_ENOTENOUGHREPLICAS: return KERR_NOT_ENOUGH_REPLICAS;
    case SL_ENOTCOORD: return KERR_NOT_COORDINATOR;
    case SL_ECOORDLOADING: return KERR_COORDINATOR_LOAD_IN_PROGRESS;
    default: return KERR_UNKNOWN;
    }
}

int sl_kafka_ensure_topic(sl_kafka_ctx *ctx, const char *topic) {
    int32_t n;
    if (sl_broker_partition_count(ctx->broker, topic, &n) == 0)
        return 0;
    if (!ctx->auto_create_topics)
        return SL_ENOENT;
    char err[256] = "";
    int rc = sl_broker_create_topic(ctx->broker, topic, ctx->default_partitions, 0, NULL, 0, err,
                                    sizeof(err));
    if (rc == 0)
        sl_info("kafka", "created topic %s on first use (%d partitions)", topic,
                ctx->default_partitions);
    return rc == SL_EEXIST ? 0 : rc;
}

static void frame_size(sl_buf *out) {
    sl_be32_put(out->data, (uint32_t)(out->len - 4));
}

int sl_kafka_process(sl_kafka_ctx *ctx, const char *peer, uint8_t *frame, size_t len,
                     sl_buf *out) {
    int64_t start = sl_clock_mono_ns();
    sl_kafka_req req = {.body = {frame, frame + len, false}, .peer = peer};
    req.api_key = sl_kr_i16(&req.body);
    req.api_version = sl_kr_i16(&req.body);
    req.correlation_id = sl_kr_i32(&req.body);
    sl_kr_string(&req.body, req.client_id, sizeof(req.client_id), NULL);
    /* Only ApiVersions v3 (of what we serve) has a flexible request header: tagged fields. */
    if (req.api_key == 18 && req.api_version >= 3)
        sl_kr_tags(&req.body);
    if (req.body.error) {
        sl_warn("kafka", "client %s sent a malformed request header (%zu bytes); closing",
                req.peer, len);
        return -1;
    }
    sl_kwriter w = {out, false};
    out->len = 0;
    sl_kw_i32(&w, 0); /* size, patched by frame_size */
    sl_kw_i32(&w, req.correlation_id);
    const struct api_entry *api = find_api(req.api_key);
    if (api == NULL) {
        sl_warn("kafka", "client %s (%s) asked for unknown API %d; closing", req.peer,
                req.client_id, req.api_key);
        return -1;
    }
    if (req.api_version < api->min || req.api_version > api->max) {
        if (req.api_key != 18) {
            sl_warn("kafka", "client %s (%s) asked for %s v%d; this broker serves v%d-%d", req.peer,
                    req.client_id, api->name, req.api_version, api->min, api->max);
            return -1;
        }
        /* ApiVersions at a version we do not know: answer in v0 form with the error and our
         * list, so the client retries with one we do (KIP-511). */
        sl_kw_i16(&w, KERR_UNSUPPORTED_VERSION);
        sl_kafka_write_api_list(&w, false);
        if (w.oom)
            return -1;
        frame_size(out);
        return 0;
    }
    int rc = api->fn(ctx, &req, &w);
    sl_broker_observe(ctx->broker, 1, api->kind, sl_clock_mono_ns() - start);
    if (rc < 0) {
        sl_warn("kafka", "client %s (%s) sent a malformed %s v%d request; closing", req.peer,
                req.client_id, api->name, req.api_version);
        return -1;
    }
    if (rc == 1) {
        out->len = 0; /* no answer expected (acks=0) */
        return 0;
    }
    if (w.oom)
        return -1;
    frame_size(out);
    return 0;
}

int sl_kafka_handle_frame(void *arg, sl_conn *conn, uint8_t *frame, size_t len) {
    sl_kafka_ctx *ctx = arg;
    while (atomic_load_explicit(&ctx->address_pending, memory_order_acquire)) {
        struct timespec pause = {0, 1000000}; /* a moment after the bind, at start only */
        nanosleep(&pause, NULL);
    }
    sl_buf *out = sl_conn_buffer(conn);
    out->len = 0;
    if (sl_kafka_process(arg, sl_conn_peer(conn), frame, len, out) < 0)
        return -1;
    if (out->len == 0)
        return 0;
    nng_iov iov = {out->data, out->len};
    return sl_conn_writev(conn, &iov, 1) ? -1 : 0;
}

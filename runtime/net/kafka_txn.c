/* Kafka's transactional producer APIs, the non-flexible versions librdkafka uses when the
 * broker offers no more: AddPartitionsToTxn (24) v0-1, AddOffsetsToTxn (25) v0-1, EndTxn (26)
 * v0-1 and TxnOffsetCommit (28) v0-2; InitProducerId with a transactional id is in
 * kafka_data.c. They run on the broker's transaction coordinator (group/txn.h), which learns a
 * transaction's partitions from its produce requests anyway: AddPartitionsToTxn and
 * AddOffsetsToTxn only check the producer. */
#include <stdlib.h>
#include <string.h>

#include "net/kafka.h"
#include "sluice/err.h"

#define TXN_ID_BUF (SL_TXN_ID_MAX + 2) /* one more than allowed: too long is then visible */
#define GROUP_BUF 256
#define TOPIC_BUF 256

/* Kafka's code for what the coordinator answered a transactional request. */
static int16_t txn_error(int rc) {
    switch (rc) {
    case 0: return KERR_NONE;
    case SL_EFENCED: return KERR_INVALID_PRODUCER_EPOCH;
    case SL_EINVAL: return KERR_INVALID_PRODUCER_ID_MAPPING;
    case SL_EUNSUPPORTED: return KERR_INVALID_TXN_STATE;
    default: return sl_kafka_error(rc);
    }
}

/* The [transactional_id, producer_id, producer_epoch] that starts these requests. */
static void read_producer(sl_kreader *r, char *id, int64_t *pid, int16_t *epoch) {
    bool null = false;
    sl_kr_string(r, id, TXN_ID_BUF, &null);
    if (null)
        id[0] = '\0';
    *pid = sl_kr_i64(r);
    *epoch = sl_kr_i16(r);
}

static int check_producer(sl_kafka_ctx *ctx, const char *id, int64_t pid, int16_t epoch) {
    if (ctx->txn == NULL || ctx->decode_only)
        return SL_EUNSUPPORTED;
    return sl_txn_check_producer(ctx->txn, id, pid, epoch);
}

int sl_kafka_add_partitions_to_txn(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char id[TXN_ID_BUF];
    int64_t pid;
    int16_t epoch;
    read_producer(r, id, &pid, &epoch);
    int32_t nt = sl_kr_array(r, 2 + 4);
    if (r->error)
        return -1;
    int rc = check_producer(ctx, id, pid, epoch);
    sl_kw_i32(w, 0); /* throttle_time_ms */
    sl_kw_i32(w, nt < 0 ? 0 : nt);
    for (int32_t t = 0; t < nt; t++) {
        char topic[TOPIC_BUF];
        sl_kr_string(r, topic, sizeof(topic), NULL);
        int32_t np = sl_kr_array(r, 4);
        if (r->error)
            return -1;
        sl_kw_string(w, topic);
        sl_kw_i32(w, np < 0 ? 0 : np);
        int32_t count = 0;
        bool exists = sl_broker_partition_count(ctx->broker, topic, &count) == 0;
        for (int32_t p = 0; p < np; p++) {
            int32_t partition = sl_kr_i32(r);
            if (r->error)
                return -1;
            sl_kw_i32(w, partition);
            sl_kw_i16(w, rc ? txn_error(rc)
                         : exists && partition >= 0 && partition < count
                             ? KERR_NONE
                             : KERR_UNKNOWN_TOPIC_OR_PARTITION);
        }
    }
    return 0;
}

int sl_kafka_add_offsets_to_txn(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char id[TXN_ID_BUF], group[GROUP_BUF];
    int64_t pid;
    int16_t epoch;
    read_producer(r, id, &pid, &epoch);
    sl_kr_string(r, group, sizeof(group), NULL);
    if (r->error)
        return -1;
    int rc = check_producer(ctx, id, pid, epoch);
    sl_kw_i32(w, 0); /* throttle_time_ms */
    sl_kw_i16(w, txn_error(rc));
    return 0;
}

int sl_kafka_end_txn(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char id[TXN_ID_BUF];
    int64_t pid;
    int16_t epoch;
    read_producer(r, id, &pid, &epoch);
    bool commit = sl_kr_bool(r);
    if (r->error)
        return -1;
    int rc = ctx->txn && !ctx->decode_only ? sl_txn_end(ctx->txn, id, pid, epoch, commit)
                                           : SL_EUNSUPPORTED;
    sl_kw_i32(w, 0); /* throttle_time_ms */
    sl_kw_i16(w, txn_error(rc));
    return 0;
}

int sl_kafka_txn_offset_commit(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    int16_t v = req->api_version;
    char id[TXN_ID_BUF], group[GROUP_BUF];
    bool null = false;
    sl_kr_string(r, id, sizeof(id), &null);
    sl_kr_string(r, group, sizeof(group), NULL);
    int64_t pid = sl_kr_i64(r);
    int16_t epoch = sl_kr_i16(r);
    int32_t nt = sl_kr_array(r, 2 + 4);
    if (r->error || nt < 0)
        return -1;
    /* Decoded in full first: the coordinator takes them all at once. */
    typedef struct part {
        int32_t topic, partition;
        int64_t offset;
        char md[256];
    } part;
    char (*topics)[TOPIC_BUF] = calloc((size_t)nt + 1, sizeof(*topics));
    int32_t *counts = calloc((size_t)nt + 1, sizeof(*counts));
    part *parts = NULL;
    size_t nparts = 0, cap = 0;
    int bad = topics && counts ? 0 : -1;
    for (int32_t t = 0; bad == 0 && t < nt; t++) {
        sl_kr_string(r, topics[t], sizeof(topics[t]), NULL);
        int32_t np = sl_kr_array(r, 4 + 8 + 2);
        if (r->error || np < 0) {
            bad = -1;
            break;
        }
        counts[t] = np;
        for (int32_t p = 0; p < np && bad == 0; p++) {
            if (nparts == cap) {
                cap = cap ? cap * 2 : 16;
                part *np2 = realloc(parts, cap * sizeof(*np2));
                if (np2 == NULL) {
                    bad = -1;
                    break;
                }
                parts = np2;
            }
            part *x = &parts[nparts++];
            x->topic = t;
            x->partition = sl_kr_i32(r);
            x->offset = sl_kr_i64(r);
            if (v >= 2)
                sl_kr_i32(r); /* committed_leader_epoch */
            bool md_null = false;
            sl_kr_string(r, x->md, sizeof(x->md), &md_null);
            if (md_null)
                x->md[0] = '\0';
            if (r->error)
                bad = -1;
        }
    }
    int rc = 0;
    if (bad == 0) {
        sl_offset_commit *oc = calloc(nparts + 1, sizeof(*oc));
        if (oc == NULL) {
            rc = SL_ENOMEM;
        } else {
            for (size_t i = 0; i < nparts; i++)
                oc[i] = (sl_offset_commit){topics[parts[i].topic], parts[i].partition,
                                           parts[i].offset, parts[i].md};
            /* These versions carry no member or generation: the commit is not checked
             * against the group's membership (Kafka's rule before v3). */
            rc = ctx->txn && !ctx->decode_only
                     ? sl_txn_commit_offsets(ctx->txn, id, pid, epoch, group,
                                             SL_COORD_UNCHECKED, "", oc, nparts)
                     : SL_EUNSUPPORTED;
            free(oc);
        }
        sl_kw_i32(w, 0); /* throttle_time_ms */
        sl_kw_i32(w, nt);
        size_t k = 0;
        for (int32_t t = 0; t < nt; t++) {
            sl_kw_string(w, topics[t]);
            sl_kw_i32(w, counts[t]);
            for (int32_t p = 0; p < counts[t]; p++, k++) {
                sl_kw_i32(w, parts[k].partition);
                sl_kw_i16(w, txn_error(rc));
            }
        }
    }
    free(topics);
    free(counts);
    free(parts);
    return bad;
}

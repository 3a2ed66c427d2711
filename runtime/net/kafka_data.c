/* The data path of the Kafka protocol: ApiVersions, Metadata, Produce, Fetch, ListOffsets and
 * InitProducerId, over the same broker operations as the native protocol. Field layouts follow
 * the Kafka protocol by version; shared/KAFKA_PROTOCOL.md §1.6 lists what each version adds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "log/batch.h"
#include "log/compression.h"
#include "net/kafka.h"
#include "sluice/err.h"

#define TOPIC_MAX 250
#define MAX_FETCH_WAIT_MS 30000 /* a client cannot park a connection thread longer */
#define CLUSTER_ID "sluice-cluster"

void sl_kafka_write_api_list(sl_kwriter *w, bool compact);

/* ---- ApiVersions (18) v0-3 ---- */

int sl_kafka_api_versions(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    (void)ctx;
    if (req->api_version >= 3) {
        /* client_software_name and _version: read, not needed. */
        char scratch[256];
        sl_kr_compact_string(&req->body, scratch, sizeof(scratch));
        sl_kr_compact_string(&req->body, scratch, sizeof(scratch));
        sl_kr_tags(&req->body);
        sl_kw_i16(w, KERR_NONE);
        sl_kafka_write_api_list(w, true);
        sl_kw_i32(w, 0);    /* throttle_time_ms */
        sl_kw_uvarint(w, 0); /* tagged fields */
        return 0;
    }
    sl_kw_i16(w, KERR_NONE);
    sl_kafka_write_api_list(w, false);
    if (req->api_version >= 1)
        sl_kw_i32(w, 0);
    return 0;
}

/* ---- Metadata (3) v0-4 ---- */

static void write_topic_metadata(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w,
                                 const char *name, bool may_create) {
    int32_t n = 0;
    int rc = sl_broker_partition_count(ctx->broker, name, &n);
    if (rc == SL_ENOENT && may_create && sl_kafka_ensure_topic(ctx, name) == 0)
        rc = sl_broker_partition_count(ctx->broker, name, &n);
    sl_kw_i16(w, rc ? sl_kafka_error(rc) : KERR_NONE);
    sl_kw_string(w, name);
    if (req->api_version >= 1)
        sl_kw_bool(w, strncmp(name, "__", 2) == 0); /* is_internal */
    sl_kw_i32(w, rc ? 0 : n);
    for (int32_t p = 0; rc == 0 && p < n; p++) {
        sl_partition_state st = {.leader = ctx->node_id, .nreplicas = 1, .nisr = 1};
        st.replicas[0] = st.isr[0] = ctx->node_id;
        sl_broker_partition_state(ctx->broker, name, p, &st);
        sl_kw_i16(w, st.leader < 0 ? KERR_LEADER_NOT_AVAILABLE : KERR_NONE);
        sl_kw_i32(w, p);
        sl_kw_i32(w, st.leader);
        sl_kw_i32(w, st.nreplicas);
        for (int32_t k = 0; k < st.nreplicas; k++)
            sl_kw_i32(w, st.replicas[k]);
        sl_kw_i32(w, st.nisr);
        for (int32_t k = 0; k < st.nisr; k++)
            sl_kw_i32(w, st.isr[k]);
    }
}

/* The brokers a Kafka client may connect to: every node of the cluster with a Kafka listener,
 * or this one. */
static void write_brokers(sl_kafka_ctx *ctx, int16_t v, sl_kwriter *w) {
    sl_cluster_member *m = NULL;
    size_t n = 0, voters, listed = 0;
    int32_t leader;
    if (ctx->cluster && sl_cluster_members(ctx->cluster, &m, &n, &leader, &voters) != 0)
        n = 0;
    for (size_t i = 0; i < n; i++)
        listed += strrchr(m[i].kafka, ':') != NULL;
    if (listed == 0) {
        sl_kw_i32(w, 1);
        sl_kw_i32(w, ctx->node_id);
        sl_kw_string(w, ctx->host);
        sl_kw_i32(w, ctx->port);
        if (v >= 1)
            sl_kw_string(w, NULL); /* rack */
    } else {
        sl_kw_i32(w, (int32_t)listed);
        for (size_t i = 0; i < n; i++) {
            char *colon = strrchr(m[i].kafka, ':');
            if (colon == NULL)
                continue;
            *colon = '\0';
            sl_kw_i32(w, m[i].id);
            sl_kw_string(w, m[i].kafka);
            sl_kw_i32(w, atoi(colon + 1));
            if (v >= 1)
                sl_kw_string(w, NULL);
        }
    }
    free(m);
}

int sl_kafka_broker_address(sl_kafka_ctx *ctx, int32_t node, char *host, size_t len,
                            int32_t *port) {
    sl_cluster_member *m = NULL;
    size_t n = 0, voters;
    int32_t leader;
    if (ctx->cluster == NULL || sl_cluster_members(ctx->cluster, &m, &n, &leader, &voters) != 0)
        return SL_ENOENT;
    int rc = SL_ENOENT;
    for (size_t i = 0; i < n && rc; i++) {
        char *colon = strrchr(m[i].kafka, ':');
        if (m[i].id != node || colon == NULL)
            continue;
        snprintf(host, len, "%.*s", (int)(colon - m[i].kafka), m[i].kafka);
        *port = atoi(colon + 1);
        rc = 0;
    }
    free(m);
    return rc;
}

int sl_kafka_metadata(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    int16_t v = req->api_version;
    int32_t n = sl_kr_array(r, 2);
    char (*names)[TOPIC_MAX] = n > 0 ? calloc((size_t)n, sizeof(*names)) : NULL;
    if (n > 0 && names == NULL)
        return -1;
    for (int32_t i = 0; i < n; i++)
        sl_kr_string(r, names[i], TOPIC_MAX, NULL);
    bool allow_create = v >= 4 ? sl_kr_bool(r) : true;
    if (r->error) {
        free(names);
        return -1;
    }
    /* v0: an empty list means every topic; from v1 that is a null list. */
    bool all = n == -1 || (v == 0 && n == 0);
    if (v >= 3)
        sl_kw_i32(w, 0); /* throttle_time_ms */
    write_brokers(ctx, v, w);
    if (v >= 2)
        sl_kw_string(w, CLUSTER_ID);
    int32_t controller = ctx->cluster ? sl_cluster_controller(ctx->cluster) : ctx->node_id;
    if (v >= 1)
        sl_kw_i32(w, controller > 0 ? controller : -1); /* controller_id */
    if (all) {
        char **list;
        size_t count;
        if (sl_broker_list_topics(ctx->broker, false, &list, &count) != 0) {
            free(names);
            return -1;
        }
        sl_kw_i32(w, (int32_t)count);
        for (size_t i = 0; i < count; i++)
            write_topic_metadata(ctx, req, w, list[i], false);
        sl_broker_free_names(list, count);
    } else {
        sl_kw_i32(w, n);
        for (int32_t i = 0; i < n; i++)
            write_topic_metadata(ctx, req, w, names[i], allow_create);
    }
    free(names);
    return 0;
}

/* ---- Produce (0) v3-7 ---- */

/* zstd batches need Produce v7 (clients that send older versions cannot read them back). */
static bool codec_allowed(int16_t version, const uint8_t *data, size_t len) {
    for (size_t pos = 0; pos + SL_BATCH_HEADER_SIZE <= len;) {
        size_t total = sl_batch_total_size(data + pos, len - pos);
        if (total == 0)
            break;
        if (sl_batch_codec(data + pos) == SL_CODEC_ZSTD && version < 7)
            return false;
        pos += total;
    }
    return true;
}

/* One partition of a Produce request, between its append and its answer. */
typedef struct produced {
    int32_t partition;
    int rc;
    sl_append_result res;
} produced;

/* Appends one topic's partitions; with acks=all (-1) a partition with too few in-sync replicas
 * is refused before anything is written. */
static int produce_topic(sl_kafka_ctx *ctx, sl_kreader *r, int16_t v, int16_t acks,
                         const char *topic, produced *out, int32_t np) {
    bool exists = sl_kafka_ensure_topic(ctx, topic) == 0;
    for (int32_t p = 0; p < np; p++) {
        int32_t len;
        produced *o = &out[p];
        o->partition = sl_kr_i32(r);
        const uint8_t *records = sl_kr_bytes(r, &len);
        if (r->error)
            return -1;
        o->res = (sl_append_result){.base_offset = -1, .log_start_offset = -1, .append_time = -1};
        char err[256];
        if (!exists)
            o->rc = SL_ENOENT;
        else if (records == NULL || len <= 0)
            o->rc = SL_ECORRUPT;
        else if (!codec_allowed(v, records, (size_t)len))
            o->rc = SL_EUNSUPPORTED;
        else if (acks == -1 && (o->rc = sl_broker_check_insync(ctx->broker, topic,
                                                                o->partition)) != 0)
            ;
        else /* the batches are appended from the request frame, which is ours to change */
            o->rc = sl_broker_produce(ctx->broker, topic, o->partition, (uint8_t *)records,
                                      (size_t)len, &o->res, err, sizeof(err));
    }
    return 0;
}

int sl_kafka_produce(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    int16_t v = req->api_version;
    char txn[256];
    bool txn_null = true;
    sl_kr_string(r, txn, sizeof(txn), &txn_null);
    int16_t acks = sl_kr_i16(r);
    int32_t timeout_ms = sl_kr_i32(r); /* how long acks=all waits for the in-sync replicas */
    int32_t nt = sl_kr_array(r, 2 + 4);
    if (r->error)
        return -1;
    /* Every partition is appended first and answered after, so acks=all waits for all of them
     * at once. */
    char (*topics)[TOPIC_MAX] = calloc(nt > 0 ? (size_t)nt : 1, sizeof(*topics));
    produced **parts = calloc(nt > 0 ? (size_t)nt : 1, sizeof(*parts));
    int32_t *nparts = calloc(nt > 0 ? (size_t)nt : 1, sizeof(*nparts));
    int rc = topics && parts && nparts ? 0 : -1;
    for (int32_t t = 0; rc == 0 && t < nt; t++) {
        sl_kr_string(r, topics[t], sizeof(topics[t]), NULL);
        int32_t np = sl_kr_array(r, 4 + 4);
        if (r->error || (np > 0 && (parts[t] = calloc((size_t)np, sizeof(**parts))) == NULL)) {
            rc = -1;
            break;
        }
        nparts[t] = np < 0 ? 0 : np;
        rc = produce_topic(ctx, r, v, acks, topics[t], parts[t], nparts[t]);
    }
    int64_t deadline = sl_clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
    for (int32_t t = 0; rc == 0 && acks == -1 && t < nt; t++)
        for (int32_t p = 0; p < nparts[t]; p++)
            if (parts[t][p].rc == 0)
                parts[t][p].rc = sl_broker_wait_replicated(ctx->broker, topics[t],
                                                           parts[t][p].partition,
                                                           parts[t][p].res.last_offset,
                                                           parts[t][p].res.leader_epoch, deadline);
    if (rc == 0)
        sl_kw_i32(w, nt < 0 ? 0 : nt);
    for (int32_t t = 0; rc == 0 && t < nt; t++) {
        sl_kw_string(w, topics[t]);
        sl_kw_i32(w, nparts[t]);
        for (int32_t p = 0; p < nparts[t]; p++) {
            const produced *o = &parts[t][p];
            sl_kw_i32(w, o->partition);
            sl_kw_i16(w, sl_kafka_error(o->rc));
            sl_kw_i64(w, o->rc ? -1 : o->res.base_offset);
            sl_kw_i64(w, o->rc ? -1 : o->res.append_time); /* log_append_time_ms (v2+) */
            if (v >= 5)
                sl_kw_i64(w, o->rc ? -1 : o->res.log_start_offset);
        }
    }
    for (int32_t t = 0; parts && t < nt; t++)
        free(parts[t]);
    free(parts);
    free(nparts);
    free(topics);
    if (rc)
        return -1;
    sl_kw_i32(w, 0); /* throttle_time_ms, last in Produce answers */
    return acks == 0 ? 1 : 0;
}

/* ---- Fetch (1) v4-11 ---- */

typedef struct fetch_part {
    int32_t partition;
    int64_t offset;
    int32_t max_bytes;
} fetch_part;

typedef struct fetch_topic {
    char name[TOPIC_MAX];
    fetch_part *parts;
    int32_t nparts;
} fetch_topic;

typedef struct fetch_req {
    int32_t max_wait_ms, min_bytes, max_bytes;
    bool read_committed; /* isolation_level 1 */
    fetch_topic *topics;
    int32_t ntopics;
} fetch_req;

static void fetch_req_free(fetch_req *f) {
    for (int32_t i = 0; i < f->ntopics; i++)
        free(f->topics[i].parts);
    free(f->topics);
}

static int parse_fetch(sl_kafka_req *req, fetch_req *f) {
    sl_kreader *r = &req->body;
    int16_t v = req->api_version;
    memset(f, 0, sizeof(*f));
    sl_kr_i32(r); /* replica_id: -1 for consumers */
    f->max_wait_ms = sl_kr_i32(r);
    f->min_bytes = sl_kr_i32(r);
    f->max_bytes = sl_kr_i32(r);
    if (v >= 4)
        f->read_committed = sl_kr_i8(r) == 1;
    if (v >= 7) {
        sl_kr_i32(r); /* session_id: fetch sessions are not kept (0 answers "none") */
        sl_kr_i32(r); /* session_epoch */
    }
    int32_t nt = sl_kr_array(r, 2 + 4);
    if (r->error || nt < 0)
        return -1;
    if ((f->topics = calloc((size_t)nt + 1, sizeof(*f->topics))) == NULL)
        return -1;
    for (int32_t t = 0; t < nt && !r->error; t++) {
        fetch_topic *ft = &f->topics[t];
        f->ntopics = t + 1;
        sl_kr_string(r, ft->name, sizeof(ft->name), NULL);
        int32_t np = sl_kr_array(r, 4 + 8 + 4);
        if (r->error || np < 0 || (ft->parts = calloc((size_t)np + 1, sizeof(*ft->parts))) == NULL)
            return -1;
        ft->nparts = np;
        for (int32_t p = 0; p < np; p++) {
            ft->parts[p].partition = sl_kr_i32(r);
            if (v >= 9)
                sl_kr_i32(r); /* current_leader_epoch: -1 from clients, no check */
            ft->parts[p].offset = sl_kr_i64(r);
            if (v >= 5)
                sl_kr_i64(r); /* log_start_offset: followers only */
            ft->parts[p].max_bytes = sl_kr_i32(r);
        }
    }
    if (v >= 7) {
        int32_t forgotten = sl_kr_array(r, 2 + 4);
        for (int32_t i = 0; i < forgotten && !r->error; i++) {
            char name[TOPIC_MAX];
            sl_kr_string(r, name, sizeof(name), NULL);
            int32_t np = sl_kr_array(r, 4);
            for (int32_t p = 0; p < np && !r->error; p++)
                sl_kr_i32(r);
        }
    }
    if (v >= 11) {
        char rack[256];
        sl_kr_string(r, rack, sizeof(rack), NULL);
    }
    return r->error ? -1 : 0;
}

/* Writes one whole answer; returns the record bytes it carries. */
static size_t write_fetch(sl_kafka_ctx *ctx, int16_t v, const fetch_req *f, sl_kwriter *w) {
    size_t total = 0;
    sl_buf committed = SL_BUF_INIT; /* read_committed: the records, read before the aborted list */
    sl_kw_i32(w, 0); /* throttle_time_ms */
    if (v >= 7) {
        sl_kw_i16(w, KERR_NONE);
        sl_kw_i32(w, 0); /* session_id: none */
    }
    sl_kw_i32(w, f->ntopics);
    for (int32_t t = 0; t < f->ntopics; t++) {
        const fetch_topic *ft = &f->topics[t];
        sl_kw_string(w, ft->name);
        sl_kw_i32(w, ft->nparts);
        for (int32_t p = 0; p < ft->nparts; p++) {
            const fetch_part *fp = &ft->parts[p];
            sl_read_result res = {.high_watermark = -1, .log_start_offset = -1};
            size_t room = f->max_bytes > 0 && (size_t)f->max_bytes > total
                              ? (size_t)f->max_bytes - total
                              : 0;
            size_t want = fp->max_bytes > 0 && (size_t)fp->max_bytes < room
                              ? (size_t)fp->max_bytes
                              : room;
            /* A read_committed reader gets the aborted transactions among the records, which
             * come after them in the answer: those records are read first, aside. */
            sl_txn_range *aborted = NULL;
            size_t naborted = 0;
            int rc = 0;
            bool read = want > 0 || total == 0;
            committed.len = 0;
            if (read && f->read_committed)
                rc = sl_broker_read_committed(ctx->broker, ft->name, fp->partition, fp->offset,
                                              want, &committed, &res, &aborted, &naborted);
            /* Fixed fields first, then the record bytes read straight into the answer behind
             * a length patched afterwards; the error and offsets are patched in too. */
            sl_kw_i32(w, fp->partition);
            size_t err_at = w->b->len;
            sl_kw_i16(w, 0);
            size_t hw_at = w->b->len;
            sl_kw_i64(w, 0); /* high_watermark */
            sl_kw_i64(w, 0); /* last_stable_offset */
            size_t start_at = w->b->len;
            if (v >= 5)
                sl_kw_i64(w, 0); /* log_start_offset */
            sl_kw_i32(w, (int32_t)naborted);
            for (size_t k = 0; k < naborted; k++) {
                sl_kw_i64(w, aborted[k].producer_id);
                sl_kw_i64(w, aborted[k].first_offset);
            }
            free(aborted);
            if (v >= 11)
                sl_kw_i32(w, -1); /* preferred_read_replica: read from the leader */
            size_t len_at = sl_kw_reserve_i32(w);
            size_t before = w->b->len;
            if (rc == 0 && w->oom)
                rc = SL_ENOMEM;
            if (rc == 0 && read && f->read_committed)
                sl_kw_raw(w, committed.data, committed.len);
            else if (rc == 0 && read)
                rc = sl_broker_read(ctx->broker, ft->name, fp->partition, fp->offset, want, w->b,
                                    &res);
            else if (rc == 0 && (rc = sl_broker_list_offset(ctx->broker, ft->name,
                                                            fp->partition, -1,
                                                            &res.high_watermark)) == 0)
                rc = sl_broker_list_offset(ctx->broker, ft->name, fp->partition, -3,
                                           &res.last_stable_offset);
            size_t got = w->b->len - before;
            total += got;
            if (w->oom || w->b->len < before)
                continue;
            sl_be16_put(w->b->data + err_at, (uint16_t)sl_kafka_error(rc));
            sl_be64_put(w->b->data + hw_at, (uint64_t)res.high_watermark);
            sl_be64_put(w->b->data + hw_at + 8, (uint64_t)res.last_stable_offset);
            if (v >= 5)
                sl_be64_put(w->b->data + start_at, (uint64_t)res.log_start_offset);
            sl_kw_patch_i32(w, len_at, (int32_t)got);
        }
    }
    sl_buf_free(&committed);
    return total;
}

int sl_kafka_fetch(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    fetch_req f;
    if (parse_fetch(req, &f) != 0) {
        fetch_req_free(&f);
        return -1;
    }
    size_t header = w->b->len;
    int64_t cap = ctx->max_fetch_wait_ms > 0 ? ctx->max_fetch_wait_ms : MAX_FETCH_WAIT_MS;
    int64_t wait = f.max_wait_ms < cap ? f.max_wait_ms : cap;
    int64_t deadline = sl_clock_mono_ms() + (wait > 0 ? wait : 0);
    size_t min = f.min_bytes > 0 ? (size_t)f.min_bytes : 1;
    for (;;) {
        uint64_t version = sl_broker_data_version(ctx->broker);
        w->b->len = header;
        w->oom = false;
        size_t got = write_fetch(ctx, req->api_version, &f, w);
        if (got >= min || sl_clock_mono_ms() >= deadline || sl_broker_stopping(ctx->broker))
            break;
        sl_broker_wait_for_data(ctx->broker, version, deadline);
    }
    fetch_req_free(&f);
    return 0;
}

/* ---- ListOffsets (2) v1-2 ---- */

int sl_kafka_list_offsets(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    int16_t v = req->api_version;
    sl_kr_i32(r); /* replica_id */
    bool read_committed = v >= 2 && sl_kr_i8(r) == 1;
    int32_t nt = sl_kr_array(r, 2 + 4);
    if (r->error)
        return -1;
    if (v >= 2)
        sl_kw_i32(w, 0); /* throttle_time_ms */
    sl_kw_i32(w, nt < 0 ? 0 : nt);
    for (int32_t t = 0; t < nt; t++) {
        char topic[TOPIC_MAX];
        sl_kr_string(r, topic, sizeof(topic), NULL);
        int32_t np = sl_kr_array(r, 4 + 8);
        if (r->error)
            return -1;
        sl_kw_string(w, topic);
        sl_kw_i32(w, np < 0 ? 0 : np);
        for (int32_t p = 0; p < np; p++) {
            int32_t partition = sl_kr_i32(r);
            int64_t when = sl_kr_i64(r), offset = -1;
            if (r->error)
                return -1;
            /* -1 latest: the HW, or for read_committed the last stable offset; -2 earliest. */
            if (when == -1 && read_committed)
                when = -3;
            else if (when < -2)
                when = -4; /* not Kafka's: refused as such */
            int rc = sl_broker_list_offset(ctx->broker, topic, partition, when, &offset);
            sl_kw_i32(w, partition);
            sl_kw_i16(w, sl_kafka_error(rc));
            sl_kw_i64(w, -1); /* timestamp */
            sl_kw_i64(w, rc ? -1 : offset);
        }
    }
    return 0;
}

/* ---- InitProducerId (22) v0-1: idempotent, or transactional (group/txn.h) ---- */

int sl_kafka_init_producer_id(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char txn[256];
    bool txn_null = true;
    sl_kr_string(r, txn, sizeof(txn), &txn_null);
    int32_t timeout_ms = sl_kr_i32(r);
    if (r->error)
        return -1;
    int64_t pid = -1;
    int16_t epoch = -1;
    int rc;
    if (txn_null)
        rc = sl_broker_init_producer_id(ctx->broker, &pid, &epoch);
    else if (ctx->txn == NULL || ctx->decode_only)
        rc = SL_EUNSUPPORTED;
    else
        rc = sl_txn_init_producer(ctx->txn, txn, timeout_ms, &pid, &epoch);
    sl_kw_i32(w, 0); /* throttle_time_ms */
    sl_kw_i16(w, rc == SL_EUNSUPPORTED ? KERR_INVALID_REQUEST
                 : rc == SL_EINVAL && !txn_null ? KERR_INVALID_TRANSACTION_TIMEOUT
                                                : sl_kafka_error(rc));
    sl_kw_i64(w, pid);
    sl_kw_i16(w, epoch);
    return 0;
}

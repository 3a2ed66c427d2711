#include "net/native_handler.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "net/native.h"
#include "sluice/err.h"

/* Per-thread scratch buffer for responses: each connection has its own thread, and a response
 * buffer reused across requests means no allocation per request once warm. */
static _Thread_local sl_buf tls_resp;

/* Longest wait a fetch may ask for: a client cannot park a connection thread forever. */
#define MAX_FETCH_WAIT_MS 30000

static void begin(sl_buf *out, msgpack_packer *pk, uint32_t id) {
    out->len = 0;
    sl_buf_reserve(out, 8);
    out->len = 8;
    sl_be32_put(out->data + 4, id);
    sl_mp_packer_init(pk, out);
}

static int finish(sl_conn *conn, sl_buf *out) {
    if (out->len < 8)
        return SL_ENOMEM;
    sl_be32_put(out->data, (uint32_t)(out->len - 4));
    nng_iov iov = {out->data, out->len};
    return sl_conn_writev(conn, &iov, 1);
}

static int reply_status(sl_conn *conn, uint32_t id, int status, const char *msg) {
    sl_buf *out = &tls_resp;
    msgpack_packer pk;
    begin(out, &pk, id);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, status);
    sl_mp_pack_str(&pk, msg && msg[0] ? msg : NULL);
    return finish(conn, out);
}

static int handle_produce(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    sl_buf *out = &tls_resp;
    msgpack_packer pk;
    begin(out, &pk, req->id);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, req->ntopics);
    for (size_t i = 0; i < req->ntopics; i++) {
        sl_native_topic *t = &req->topics[i];
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, t->name);
        msgpack_pack_array(&pk, t->nparts);
        for (size_t j = 0; j < t->nparts; j++) {
            sl_native_part *p = &t->parts[j];
            sl_append_result res = {0};
            char err[256] = "";
            int rc = sl_broker_produce(b, t->name, p->partition, p->data, p->len, &res, err,
                                       sizeof(err));
            if (rc && rc != SL_ENOENT)
                sl_warn("broker", "produce to %s-%d from %s refused: %s", t->name, p->partition,
                        sl_conn_peer(conn), err[0] ? err : sl_strerror(rc));
            if (rc == 0 && res.duplicate)
                sl_debug("broker", "duplicate batch to %s-%d from %s answered with offset %lld",
                         t->name, p->partition, sl_conn_peer(conn), (long long)res.base_offset);
            msgpack_pack_array(&pk, 5);
            msgpack_pack_int32(&pk, p->partition);
            msgpack_pack_int(&pk, rc);
            msgpack_pack_int64(&pk, rc ? -1 : res.base_offset);
            msgpack_pack_int64(&pk, rc ? -1 : res.log_start_offset);
            sl_mp_pack_str(&pk, rc ? err : NULL);
        }
    }
    if (req->acks == 0)
        return 0; /* the client expects no answer */
    return finish(conn, out);
}

/* One pass over the requested partitions; returns the batch bytes gathered. */
static size_t fetch_pass(sl_broker *b, sl_native_req *req, sl_buf *out, uint32_t id) {
    msgpack_packer pk;
    size_t total = 0;
    begin(out, &pk, id);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, req->ntopics);
    for (size_t i = 0; i < req->ntopics; i++) {
        sl_native_topic *t = &req->topics[i];
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, t->name);
        msgpack_pack_array(&pk, t->nparts);
        for (size_t j = 0; j < t->nparts; j++) {
            sl_native_part *p = &t->parts[j];
            sl_read_result res = {0};
            /* Fields: partition, batches, status, high watermark, log start. The batches are
             * read straight into the response behind a bin header patched afterwards, which is
             * why they come before the status the read decides. */
            msgpack_pack_array(&pk, 5);
            msgpack_pack_int32(&pk, p->partition);
            size_t room = (size_t)req->max_bytes > total ? (size_t)req->max_bytes - total : 0;
            size_t want = (size_t)p->max_bytes < room ? (size_t)p->max_bytes : room;
            size_t bin_at = sl_mp_bin_begin(out);
            size_t before = out->len;
            int rc;
            if (want > 0 || total == 0)
                rc = sl_broker_read(b, t->name, p->partition, p->offset, want, out, &res);
            else
                rc = sl_broker_list_offset(b, t->name, p->partition, -1, &res.high_watermark);
            sl_mp_bin_end(out, bin_at);
            total += out->len - before;
            msgpack_pack_int(&pk, rc);
            msgpack_pack_int64(&pk, res.high_watermark);
            msgpack_pack_int64(&pk, res.log_start_offset);
        }
    }
    return total;
}

static int handle_fetch(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    sl_buf *out = &tls_resp;
    int64_t wait = req->max_wait_ms < MAX_FETCH_WAIT_MS ? req->max_wait_ms : MAX_FETCH_WAIT_MS;
    int64_t deadline = sl_clock_mono_ms() + wait;
    for (;;) {
        uint64_t version = sl_broker_data_version(b);
        size_t got = fetch_pass(b, req, out, req->id);
        if (got >= (size_t)(req->min_bytes > 0 ? req->min_bytes : 1) ||
            sl_clock_mono_ms() >= deadline || sl_broker_stopping(b))
            break;
        sl_broker_wait_for_data(b, version, deadline);
    }
    return finish(conn, out);
}

static int handle_list_offsets(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    sl_buf *out = &tls_resp;
    msgpack_packer pk;
    begin(out, &pk, req->id);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, req->ntopics);
    for (size_t i = 0; i < req->ntopics; i++) {
        sl_native_topic *t = &req->topics[i];
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, t->name);
        msgpack_pack_array(&pk, t->nparts);
        for (size_t j = 0; j < t->nparts; j++) {
            int64_t offset = -1;
            int rc = sl_broker_list_offset(b, t->name, t->parts[j].partition, t->parts[j].offset,
                                           &offset);
            msgpack_pack_array(&pk, 3);
            msgpack_pack_int32(&pk, t->parts[j].partition);
            msgpack_pack_int(&pk, rc);
            msgpack_pack_int64(&pk, offset);
        }
    }
    return finish(conn, out);
}

static void pack_topic_meta(sl_broker *b, msgpack_packer *pk, const char *name) {
    int32_t n = 0;
    int rc = sl_broker_partition_count(b, name, &n);
    msgpack_pack_array(pk, 3);
    sl_mp_pack_str(pk, name);
    msgpack_pack_int(pk, rc);
    msgpack_pack_array(pk, (size_t)n);
    for (int32_t i = 0; i < n; i++)
        msgpack_pack_int32(pk, sl_broker_node_id(b));
}

static int handle_metadata(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    sl_buf *out = &tls_resp;
    msgpack_packer pk;
    char **names = NULL;
    size_t count = 0;
    if (req->all_topics && sl_broker_list_topics(b, false, &names, &count))
        return reply_status(conn, req->id, SL_ENOMEM, NULL);
    begin(out, &pk, req->id);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_int32(&pk, sl_broker_node_id(b));
    if (req->all_topics) {
        msgpack_pack_array(&pk, count);
        for (size_t i = 0; i < count; i++)
            pack_topic_meta(b, &pk, names[i]);
        sl_broker_free_names(names, count);
    } else {
        msgpack_pack_array(&pk, req->ntopics);
        for (size_t i = 0; i < req->ntopics; i++)
            pack_topic_meta(b, &pk, req->topics[i].name);
    }
    return finish(conn, out);
}

static int handle_describe(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    sl_topic_desc d;
    int rc = sl_broker_describe_topic(b, req->name, &d);
    if (rc) {
        char msg[300];
        snprintf(msg, sizeof(msg), "topic \"%s\" does not exist", req->name);
        return reply_status(conn, req->id, rc, rc == SL_ENOENT ? msg : NULL);
    }
    sl_buf *out = &tls_resp;
    msgpack_packer pk;
    begin(out, &pk, req->id);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    sl_mp_pack_str(&pk, d.name);
    msgpack_pack_array(&pk, (size_t)d.npartitions);
    for (int32_t i = 0; i < d.npartitions; i++) {
        sl_partition_desc *p = &d.partitions[i];
        msgpack_pack_array(&pk, 5);
        msgpack_pack_int32(&pk, p->partition);
        msgpack_pack_int32(&pk, p->leader);
        msgpack_pack_int64(&pk, p->start_offset);
        msgpack_pack_int64(&pk, p->end_offset);
        msgpack_pack_int64(&pk, p->size_bytes);
    }
    msgpack_pack_map(&pk, d.nconfigs);
    for (size_t i = 0; i < d.nconfigs; i++) {
        sl_mp_pack_str(&pk, d.configs[i].key);
        sl_mp_pack_str(&pk, d.configs[i].value);
    }
    sl_topic_desc_free(&d);
    return finish(conn, out);
}

static int handle_list_topics(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    char **names;
    size_t count;
    if (sl_broker_list_topics(b, false, &names, &count))
        return reply_status(conn, req->id, SL_ENOMEM, NULL);
    sl_buf *out = &tls_resp;
    msgpack_packer pk;
    begin(out, &pk, req->id);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < count; i++)
        sl_mp_pack_str(&pk, names[i]);
    sl_broker_free_names(names, count);
    return finish(conn, out);
}

static int handle_init_producer_id(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    int64_t pid;
    int16_t epoch;
    int rc = sl_broker_init_producer_id(b, &pid, &epoch);
    if (rc)
        return reply_status(conn, req->id, rc, "cannot record producer ids in the metadata log");
    sl_buf *out = &tls_resp;
    msgpack_packer pk;
    begin(out, &pk, req->id);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_int64(&pk, pid);
    msgpack_pack_int16(&pk, epoch);
    return finish(conn, out);
}

static enum sl_request_kind kind_of(uint16_t api) {
    switch (api) {
    case SL_API_PRODUCE: return SL_REQ_PRODUCE;
    case SL_API_FETCH: return SL_REQ_FETCH;
    case SL_API_LIST_OFFSETS: return SL_REQ_LIST_OFFSETS;
    case SL_API_METADATA: return SL_REQ_METADATA;
    default: return SL_REQ_ADMIN;
    }
}

int sl_native_handle_frame(void *ctx, sl_conn *conn, uint8_t *frame, size_t len) {
    sl_broker *b = ctx;
    int64_t start = sl_clock_mono_ns();
    sl_native_req req;
    int rc = sl_native_decode_request(frame, len, &req);
    if (rc) {
        const char *why = rc == SL_EUNSUPPORTED ? "unknown request type" : "malformed request";
        sl_warn("net", "native client %s sent a %s (api %u, %zu bytes)", sl_conn_peer(conn), why,
                req.api, len);
        sl_native_req_free(&req);
        if (len < 6)
            return -1; /* not even an id to answer to */
        return reply_status(conn, sl_be32_get(frame), rc, why) ? -1 : 0;
    }
    char err[300] = "";
    sl_config_kv *kv = (sl_config_kv *)req.configs; /* same layout: two owned strings */
    switch (req.api) {
    case SL_API_PRODUCE: rc = handle_produce(b, conn, &req); break;
    case SL_API_FETCH: rc = handle_fetch(b, conn, &req); break;
    case SL_API_LIST_OFFSETS: rc = handle_list_offsets(b, conn, &req); break;
    case SL_API_METADATA: rc = handle_metadata(b, conn, &req); break;
    case SL_API_DESCRIBE_TOPIC: rc = handle_describe(b, conn, &req); break;
    case SL_API_LIST_TOPICS: rc = handle_list_topics(b, conn, &req); break;
    case SL_API_INIT_PRODUCER_ID: rc = handle_init_producer_id(b, conn, &req); break;
    case SL_API_CREATE_TOPIC:
        rc = sl_broker_create_topic(b, req.name, req.partitions, kv, req.nconfigs, err,
                                    sizeof(err));
        rc = reply_status(conn, req.id, rc, err);
        break;
    case SL_API_DELETE_TOPIC:
        rc = sl_broker_delete_topic(b, req.name, err, sizeof(err));
        rc = reply_status(conn, req.id, rc, err);
        break;
    case SL_API_ALTER_TOPIC:
        rc = sl_broker_alter_topic(b, req.name, kv, req.nconfigs, err, sizeof(err));
        rc = reply_status(conn, req.id, rc, err);
        break;
    }
    sl_broker_observe(b, 0, kind_of(req.api), sl_clock_mono_ns() - start);
    sl_native_req_free(&req);
    return rc ? -1 : 0;
}

#include "net/native_handler.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "net/native.h"
#include "sluice/err.h"

/* Longest wait a fetch may ask for: a client cannot park a connection thread forever. */
#define MAX_FETCH_WAIT_MS 30000

static void begin(sl_buf *out, msgpack_packer *pk, uint32_t id) {
    out->len = 0;
    sl_buf_reserve(out, 8);
    out->len = 8;
    sl_be32_put(out->data + 4, id);
    sl_mp_packer_init(pk, out);
}

/* Starts a successful answer: an array of 'nfields' whose first two are status 0 and no message. */
static void begin_ok(sl_buf *out, msgpack_packer *pk, uint32_t id, size_t nfields) {
    begin(out, pk, id);
    msgpack_pack_array(pk, nfields);
    msgpack_pack_int(pk, 0);
    msgpack_pack_nil(pk);
}

static int finish(sl_conn *conn, sl_buf *out) {
    if (out->len < 8)
        return SL_ENOMEM;
    sl_be32_put(out->data, (uint32_t)(out->len - 4));
    nng_iov iov = {out->data, out->len};
    return sl_conn_writev(conn, &iov, 1);
}

static int reply_status(sl_conn *conn, uint32_t id, int status, const char *msg) {
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin(out, &pk, id);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, status);
    sl_mp_pack_str(&pk, msg && msg[0] ? msg : NULL);
    return finish(conn, out);
}

/* What one partition of a produce request came to. */
typedef struct produced {
    int rc;
    sl_append_result res;
    char err[256];
} produced;

/* With acks=all (-1) a partition's answer waits until every in-sync replica has its records,
 * and a partition with too few in-sync replicas is refused before anything is written. */
static int handle_produce(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    size_t total = 0, k = 0;
    for (size_t i = 0; i < req->ntopics; i++)
        total += req->topics[i].nparts;
    produced *out_parts = calloc(total ? total : 1, sizeof(*out_parts));
    if (out_parts == NULL)
        return reply_status(conn, req->id, SL_ENOMEM, NULL);
    int64_t deadline = sl_clock_mono_ms() + (req->timeout_ms > 0 ? req->timeout_ms : 30000);
    for (size_t i = 0; i < req->ntopics; i++) {
        sl_native_topic *t = &req->topics[i];
        for (size_t j = 0; j < t->nparts; j++, k++) {
            sl_native_part *p = &t->parts[j];
            produced *r = &out_parts[k];
            r->rc = req->acks == -1 ? sl_broker_check_insync(b, t->name, p->partition) : 0;
            if (r->rc == 0)
                r->rc = sl_broker_produce(b, t->name, p->partition, p->data, p->len, &r->res,
                                          r->err, sizeof(r->err));
            if (r->rc && r->rc != SL_ENOENT && r->rc != SL_ENOTLEADER)
                sl_warn("broker", "produce to %s-%d from %s refused: %s", t->name, p->partition,
                        sl_conn_peer(conn), r->err[0] ? r->err : sl_strerror(r->rc));
            if (r->rc == 0 && r->res.duplicate)
                sl_debug("broker", "duplicate batch to %s-%d from %s answered with offset %lld",
                         t->name, p->partition, sl_conn_peer(conn),
                         (long long)r->res.base_offset);
        }
    }
    k = 0;
    for (size_t i = 0; req->acks == -1 && i < req->ntopics; i++)
        for (size_t j = 0; j < req->topics[i].nparts; j++, k++)
            if (out_parts[k].rc == 0)
                out_parts[k].rc = sl_broker_wait_replicated(b, req->topics[i].name,
                                                            req->topics[i].parts[j].partition,
                                                            out_parts[k].res.last_offset,
                                                            out_parts[k].res.leader_epoch,
                                                            deadline);
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 3);
    msgpack_pack_array(&pk, req->ntopics);
    k = 0;
    for (size_t i = 0; i < req->ntopics; i++) {
        sl_native_topic *t = &req->topics[i];
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, t->name);
        msgpack_pack_array(&pk, t->nparts);
        for (size_t j = 0; j < t->nparts; j++, k++) {
            produced *r = &out_parts[k];
            msgpack_pack_array(&pk, 5);
            msgpack_pack_int32(&pk, t->parts[j].partition);
            msgpack_pack_int(&pk, r->rc);
            msgpack_pack_int64(&pk, r->rc ? -1 : r->res.base_offset);
            msgpack_pack_int64(&pk, r->rc ? -1 : r->res.log_start_offset);
            sl_mp_pack_str(&pk, r->rc ? (r->err[0] ? r->err : sl_strerror(r->rc)) : NULL);
        }
    }
    free(out_parts);
    if (req->acks == 0)
        return 0; /* the client expects no answer */
    return finish(conn, out);
}

/* One pass over the requested partitions; returns the batch bytes gathered. */
static size_t fetch_pass(sl_broker *b, sl_native_req *req, sl_buf *out, uint32_t id) {
    msgpack_packer pk;
    size_t total = 0;
    begin_ok(out, &pk, id, 3);
    msgpack_pack_array(&pk, req->ntopics);
    for (size_t i = 0; i < req->ntopics; i++) {
        sl_native_topic *t = &req->topics[i];
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, t->name);
        msgpack_pack_array(&pk, t->nparts);
        for (size_t j = 0; j < t->nparts; j++) {
            sl_native_part *p = &t->parts[j];
            sl_read_result res = {0};
            sl_txn_range *aborted = NULL;
            size_t naborted = 0;
            /* Fields: partition, batches, status, high watermark, log start, last stable
             * offset, aborted transactions. The batches are read straight into the response
             * behind a bin header patched afterwards, which is why they come before the status
             * the read decides. */
            msgpack_pack_array(&pk, 7);
            msgpack_pack_int32(&pk, p->partition);
            size_t room = (size_t)req->max_bytes > total ? (size_t)req->max_bytes - total : 0;
            size_t want = (size_t)p->max_bytes < room ? (size_t)p->max_bytes : room;
            size_t bin_at = sl_mp_bin_begin(out);
            size_t before = out->len;
            int rc;
            if ((want > 0 || total == 0) && req->isolation == 1)
                rc = sl_broker_read_committed(b, t->name, p->partition, p->offset, want, out,
                                              &res, &aborted, &naborted);
            else if (want > 0 || total == 0)
                rc = sl_broker_read(b, t->name, p->partition, p->offset, want, out, &res);
            else if ((rc = sl_broker_list_offset(b, t->name, p->partition, -1,
                                                 &res.high_watermark)) == 0)
                rc = sl_broker_list_offset(b, t->name, p->partition, -3,
                                           &res.last_stable_offset);
            sl_mp_bin_end(out, bin_at);
            total += out->len - before;
            msgpack_pack_int(&pk, rc);
            msgpack_pack_int64(&pk, res.high_watermark);
            msgpack_pack_int64(&pk, res.log_start_offset);
            msgpack_pack_int64(&pk, res.last_stable_offset);
            msgpack_pack_array(&pk, naborted);
            for (size_t k = 0; k < naborted; k++) {
                msgpack_pack_array(&pk, 3);
                msgpack_pack_int64(&pk, aborted[k].producer_id);
                msgpack_pack_int64(&pk, aborted[k].first_offset);
                msgpack_pack_int64(&pk, aborted[k].last_offset);
            }
            free(aborted);
        }
    }
    return total;
}

static int handle_fetch(sl_broker *b, sl_conn *conn, sl_native_req *req) {
    sl_buf *out = sl_conn_buffer(conn);
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
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 3);
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
    for (int32_t i = 0; i < n; i++) {
        sl_partition_state st;
        msgpack_pack_int32(pk, sl_broker_partition_state(b, name, i, &st) == 0 ? st.leader : -1);
    }
}

/* The brokers of the cluster, for clients to reach each partition's leader; none outside one. */
static void pack_brokers(sl_native_ctx *ctx, msgpack_packer *pk) {
    sl_cluster_member *members = NULL;
    size_t n = 0, voters;
    int32_t leader;
    sl_cluster *cluster = atomic_load(&ctx->cluster_ready) ? ctx->cluster : NULL;
    if (cluster && sl_cluster_members(cluster, &members, &n, &leader, &voters) != 0)
        n = 0;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int32(pk, members[i].id);
        sl_mp_pack_str(pk, members[i].url);
    }
    free(members);
}

static int handle_metadata(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    sl_broker *b = ctx->broker;
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    char **names = NULL;
    size_t count = 0;
    if (req->all_topics && sl_broker_list_topics(b, false, &names, &count))
        return reply_status(conn, req->id, SL_ENOMEM, NULL);
    begin_ok(out, &pk, req->id, 5);
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
    pack_brokers(ctx, &pk);
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
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 5);
    sl_mp_pack_str(&pk, d.name);
    msgpack_pack_array(&pk, (size_t)d.npartitions);
    for (int32_t i = 0; i < d.npartitions; i++) {
        sl_partition_desc *p = &d.partitions[i];
        msgpack_pack_array(&pk, 7);
        msgpack_pack_int32(&pk, p->partition);
        msgpack_pack_int32(&pk, p->leader);
        msgpack_pack_int64(&pk, p->start_offset);
        msgpack_pack_int64(&pk, p->end_offset);
        msgpack_pack_int64(&pk, p->size_bytes);
        msgpack_pack_array(&pk, (size_t)p->state.nreplicas);
        for (int32_t k = 0; k < p->state.nreplicas; k++)
            msgpack_pack_int32(&pk, p->state.replicas[k]);
        msgpack_pack_array(&pk, (size_t)p->state.nisr);
        for (int32_t k = 0; k < p->state.nisr; k++)
            msgpack_pack_int32(&pk, p->state.isr[k]);
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
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 3);
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < count; i++)
        sl_mp_pack_str(&pk, names[i]);
    sl_broker_free_names(names, count);
    return finish(conn, out);
}

static int handle_init_producer_id(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    int64_t pid;
    int16_t epoch;
    char txn_id[SL_TXN_ID_MAX + 1];
    int64_t timeout = 60000;
    int rc;
    if (req->nbody > 0 && req->body[0].type != MSGPACK_OBJECT_NIL) {
        if (sl_mp_strcpy(&req->body[0], txn_id, sizeof(txn_id)) ||
            (req->nbody > 1 && sl_mp_int(&req->body[1], &timeout)))
            return reply_status(conn, req->id, SL_EPROTO, "malformed InitProducerId request");
        rc = ctx->txn ? sl_txn_init_producer(ctx->txn, txn_id, (int32_t)(timeout > INT32_MAX
                                                                          ? INT32_MAX
                                                                          : timeout < 0 ? 0
                                                                                        : timeout),
                                             &pid, &epoch)
                      : SL_EUNSUPPORTED;
        if (rc) {
            char msg[400];
            snprintf(msg, sizeof(msg), "cannot start transactional producer \"%s\": %s%s", txn_id,
                     sl_strerror(rc),
                     rc == SL_EINVAL ? " (the id must be 1-255 bytes and transaction.timeout.ms "
                                       "at most 900000)"
                                     : "");
            return reply_status(conn, req->id, rc, msg);
        }
    } else if ((rc = sl_broker_init_producer_id(ctx->broker, &pid, &epoch)) != 0) {
        return reply_status(conn, req->id, rc, "cannot record producer ids in the metadata log");
    }
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 4);
    msgpack_pack_int64(&pk, pid);
    msgpack_pack_int16(&pk, epoch);
    return finish(conn, out);
}

/* ---- consumer groups ---- */

static int int_field(const msgpack_object *o, int64_t min, int64_t max, int64_t *v) {
    return sl_mp_int(o, v) || *v < min || *v > max ? SL_EPROTO : 0;
}

/* Copies a msgpack string into a NUL-terminated buffer. */
static int str_field(const msgpack_object *o, char *out, size_t len) {
    return sl_mp_strcpy(o, out, len);
}

static int handle_join(sl_coordinator *coord, sl_conn *conn, sl_native_req *req) {
    const msgpack_object *a = req->body, *protos;
    size_t np;
    char member[300], client[300], ptype[64];
    int64_t session, rebalance;
    if (str_field(&a[1], member, sizeof(member)) || str_field(&a[2], client, sizeof(client)) ||
        int_field(&a[3], 0, INT32_MAX, &session) || int_field(&a[4], 0, INT32_MAX, &rebalance) ||
        str_field(&a[5], ptype, sizeof(ptype)) || sl_mp_array(&a[6], 1, &protos, &np) ||
        np > 64)
        return reply_status(conn, req->id, SL_EPROTO, "malformed join request");
    sl_join_protocol p[64];
    char names[64][64];
    for (size_t i = 0; i < np; i++) {
        const msgpack_object *f;
        size_t fn;
        if (sl_mp_array(&protos[i], 2, &f, &fn) || str_field(&f[0], names[i], sizeof(names[i])) ||
            f[1].type != MSGPACK_OBJECT_BIN)
            return reply_status(conn, req->id, SL_EPROTO, "malformed join protocol");
        p[i] = (sl_join_protocol){names[i], (const uint8_t *)f[1].via.bin.ptr, f[1].via.bin.size};
    }
    sl_join_request jr = {req->name, member, client, sl_conn_peer(conn), (int32_t)session,
                          (int32_t)rebalance, ptype, p, np};
    sl_join_result res;
    int rc = sl_coord_join(coord, &jr, &res);
    if (rc)
        return reply_status(conn, req->id, rc, NULL);
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 7);
    msgpack_pack_int32(&pk, res.generation);
    sl_mp_pack_str(&pk, res.protocol);
    sl_mp_pack_str(&pk, res.leader);
    sl_mp_pack_str(&pk, res.member_id);
    msgpack_pack_array(&pk, res.nmembers);
    for (size_t i = 0; i < res.nmembers; i++) {
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, res.members[i].member_id);
        msgpack_pack_bin(&pk, res.members[i].len);
        msgpack_pack_bin_body(&pk, res.members[i].metadata, res.members[i].len);
    }
    sl_join_result_free(&res);
    return finish(conn, out);
}

static int handle_sync(sl_coordinator *coord, sl_conn *conn, sl_native_req *req) {
    const msgpack_object *a = req->body, *list;
    size_t n;
    char member[300];
    int64_t generation;
    if (int_field(&a[1], INT32_MIN, INT32_MAX, &generation) ||
        str_field(&a[2], member, sizeof(member)) || sl_mp_array(&a[3], 0, &list, &n) ||
        n > 100000)
        return reply_status(conn, req->id, SL_EPROTO, "malformed sync request");
    sl_member_assignment *as = calloc(n ? n : 1, sizeof(*as));
    char(*ids)[300] = calloc(n ? n : 1, sizeof(*ids));
    int rc = as && ids ? 0 : SL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const msgpack_object *f;
        size_t fn;
        if (sl_mp_array(&list[i], 2, &f, &fn) || str_field(&f[0], ids[i], sizeof(ids[i])) ||
            f[1].type != MSGPACK_OBJECT_BIN)
            rc = SL_EPROTO;
        else
            as[i] = (sl_member_assignment){ids[i], (const uint8_t *)f[1].via.bin.ptr,
                                           f[1].via.bin.size};
    }
    sl_buf assignment = SL_BUF_INIT;
    if (rc == 0)
        rc = sl_coord_sync(coord, req->name, (int32_t)generation, member, as, n, &assignment);
    free(as);
    free(ids);
    if (rc) {
        sl_buf_free(&assignment);
        return reply_status(conn, req->id, rc, NULL);
    }
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 3);
    msgpack_pack_bin(&pk, assignment.len);
    msgpack_pack_bin_body(&pk, assignment.data, assignment.len);
    sl_buf_free(&assignment);
    return finish(conn, out);
}

/* Offsets of a commit request, [[topic, [[partition, offset, md]...]]...], decoded; the
 * strings live in 'names' and 'mds'. */
typedef struct offset_list {
    sl_offset_commit *o;
    size_t n;
    char (*names)[SL_TOPIC_NAME_MAX + 1];
    char (*mds)[256];
} offset_list;

static void offset_list_free(offset_list *l) {
    free(l->o);
    free(l->names);
    free(l->mds);
}

static int decode_offsets(const msgpack_object *obj, offset_list *l) {
    const msgpack_object *topics;
    size_t nt, total = 0;
    memset(l, 0, sizeof(*l));
    if (sl_mp_array(obj, 0, &topics, &nt))
        return SL_EPROTO;
    for (size_t i = 0; i < nt; i++) {
        const msgpack_object *t, *parts;
        size_t tn, np;
        if (sl_mp_array(&topics[i], 2, &t, &tn) || sl_mp_array(&t[1], 0, &parts, &np))
            return SL_EPROTO;
        total += np;
    }
    if (total > 1000000)
        return SL_EPROTO;
    l->o = calloc(total ? total : 1, sizeof(*l->o));
    l->names = calloc(nt ? nt : 1, sizeof(*l->names));
    l->mds = calloc(total ? total : 1, sizeof(*l->mds));
    int rc = l->o && l->names && l->mds ? 0 : SL_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < nt; i++) {
        const msgpack_object *t = topics[i].via.array.ptr, *parts;
        size_t np;
        sl_mp_array(&t[1], 0, &parts, &np);
        if (str_field(&t[0], l->names[i], sizeof(l->names[i])))
            rc = SL_EPROTO;
        for (size_t j = 0; rc == 0 && j < np; j++) {
            const msgpack_object *f;
            size_t fn;
            int64_t partition, offset;
            if (sl_mp_array(&parts[j], 2, &f, &fn) ||
                int_field(&f[0], 0, INT32_MAX, &partition) ||
                int_field(&f[1], 0, INT64_MAX, &offset) ||
                (fn > 2 && f[2].type == MSGPACK_OBJECT_STR &&
                 str_field(&f[2], l->mds[k], sizeof(l->mds[k]))))
                rc = SL_EPROTO;
            else
                l->o[k] = (sl_offset_commit){l->names[i], (int32_t)partition, offset, l->mds[k]};
            k++;
        }
    }
    l->n = k;
    return rc;
}

static int handle_commit(sl_coordinator *coord, sl_conn *conn, sl_native_req *req) {
    const msgpack_object *a = req->body;
    char member[300];
    int64_t generation;
    offset_list l;
    if (int_field(&a[1], INT32_MIN, INT32_MAX, &generation) ||
        str_field(&a[2], member, sizeof(member)))
        return reply_status(conn, req->id, SL_EPROTO, "malformed commit request");
    int rc = decode_offsets(&a[3], &l);
    if (rc == 0)
        rc = sl_coord_commit(coord, req->name, (int32_t)generation, member, l.o, l.n);
    offset_list_free(&l);
    char msg[300] = "";
    if (rc == SL_EPROTO)
        snprintf(msg, sizeof(msg), "malformed commit request");
    if (rc == SL_EGROUPNOTEMPTY)
        snprintf(msg, sizeof(msg), "group \"%s\" has active members; stop them first",
                 req->name);
    return reply_status(conn, req->id, rc, msg);
}

/* ---- cluster ---- */

/* [0, nil, value]: an answer of one integer. */
static int reply_value(sl_conn *conn, uint32_t id, int64_t value) {
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, id, 3);
    msgpack_pack_int64(&pk, value);
    return finish(conn, out);
}

static sl_cluster *cluster_of(sl_native_ctx *ctx) {
    return atomic_load(&ctx->cluster_ready) ? ctx->cluster : NULL;
}

static int handle_cluster_register(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    int64_t id;
    char url[256], kafka[128] = "";
    if (int_field(&req->body[0], 1, INT32_MAX, &id) ||
        str_field(&req->body[1], url, sizeof(url)) ||
        (req->nbody > 2 && str_field(&req->body[2], kafka, sizeof(kafka))))
        return reply_status(conn, req->id, SL_EPROTO, "malformed cluster registration");
    sl_cluster *cluster = cluster_of(ctx);
    uint64_t applied = 0;
    int rc = cluster ? sl_cluster_heartbeat(cluster, (int32_t)id, url, kafka, &applied)
                     : SL_EUNSUPPORTED;
    char msg[400] = "";
    if (rc == SL_EUNSUPPORTED)
        snprintf(msg, sizeof(msg), "this node runs without --controllers");
    else if (rc == SL_EINVAL)
        snprintf(msg, sizeof(msg), "node %" PRId64 " is not one of the controllers, or \"%s\" is "
                 "not a tcp:// or ipc:// address", id, url);
    else if (rc == SL_ENOTLEADER)
        snprintf(msg, sizeof(msg), "this node does not lead the metadata quorum");
    if (rc)
        return reply_status(conn, req->id, rc, msg);
    return reply_value(conn, req->id, (int64_t)applied);
}

static int handle_alter_isr(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    char topic[SL_TOPIC_NAME_MAX + 1];
    int64_t p, leader, epoch, version, id;
    const msgpack_object *ids;
    size_t n;
    int32_t isr[SL_MAX_REPLICAS];
    if (str_field(&req->body[0], topic, sizeof(topic)) ||
        int_field(&req->body[1], 0, INT32_MAX, &p) ||
        int_field(&req->body[2], 1, INT32_MAX, &leader) ||
        int_field(&req->body[3], 0, INT32_MAX, &epoch) ||
        int_field(&req->body[4], 0, INT32_MAX, &version) ||
        sl_mp_array(&req->body[5], 1, &ids, &n) || n > SL_MAX_REPLICAS)
        return reply_status(conn, req->id, SL_EPROTO, "malformed ISR change");
    for (size_t i = 0; i < n; i++) {
        if (int_field(&ids[i], 1, INT32_MAX, &id))
            return reply_status(conn, req->id, SL_EPROTO, "malformed ISR change");
        isr[i] = (int32_t)id;
    }
    sl_cluster *cluster = cluster_of(ctx);
    int rc = cluster ? sl_cluster_alter_isr(cluster, topic, (int32_t)p, (int32_t)leader,
                                            (int32_t)epoch, (int32_t)version, isr, n)
                     : SL_EUNSUPPORTED;
    return reply_status(conn, req->id, rc, NULL);
}

static int handle_rebalance(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    sl_node *node = atomic_load(&ctx->node);
    if (node == NULL)
        return reply_status(conn, req->id, SL_EUNSUPPORTED,
                            cluster_of(ctx) ? "this node is still joining its cluster"
                                            : "this node runs without --controllers: there is "
                                              "nothing to rebalance");
    char err[256] = "";
    int32_t moving = 0;
    int rc = sl_node_rebalance(node, &moving, err, sizeof(err));
    if (rc)
        return reply_status(conn, req->id, rc, err);
    return reply_value(conn, req->id, moving);
}

/* One partition of a follower's fetch. */
typedef struct replica_part {
    char topic[SL_TOPIC_NAME_MAX + 1];
    int64_t partition, epoch, offset, last_epoch;
} replica_part;

static int replica_pass(sl_broker *b, sl_native_req *req, int32_t replica, size_t max_bytes,
                        const replica_part *parts, size_t n, sl_buf *out) {
    msgpack_packer pk;
    size_t total = 0;
    bool news = false;
    begin_ok(out, &pk, req->id, 3);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        const replica_part *rp = &parts[i];
        sl_read_result res = {0};
        int32_t div_epoch = -1;
        int64_t div_end = -1;
        sl_buf data = SL_BUF_INIT;
        size_t want = max_bytes > total ? max_bytes - total : 0;
        int rc = sl_broker_replica_fetch(b, rp->topic, (int32_t)rp->partition, replica,
                                         (int32_t)rp->epoch, rp->offset, (int32_t)rp->last_epoch,
                                         want ? want : 1, &data, &res, &div_epoch, &div_end);
        /* Fields: topic, partition, status, hw, log start, diverging epoch and end, batches
         * (read into a buffer of their own first: the status comes before them). */
        msgpack_pack_array(&pk, 8);
        sl_mp_pack_str(&pk, rp->topic);
        msgpack_pack_int32(&pk, (int32_t)rp->partition);
        msgpack_pack_int(&pk, rc);
        msgpack_pack_int64(&pk, res.high_watermark);
        msgpack_pack_int64(&pk, res.log_start_offset);
        msgpack_pack_int32(&pk, div_epoch);
        msgpack_pack_int64(&pk, div_end);
        msgpack_pack_bin(&pk, data.len);
        msgpack_pack_bin_body(&pk, data.data, data.len);
        total += data.len;
        sl_buf_free(&data);
        news |= rc != 0 || div_end >= 0; /* a refusal or a cut: the follower acts on it now */
    }
    return (int)(total > 0 || news);
}

/* A follower's fetch: long-polls up to max_wait_ms for something to copy. */
static int handle_replica_fetch(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    int64_t replica, max_wait, max_bytes;
    const msgpack_object *list;
    size_t n;
    if (int_field(&req->body[0], 1, INT32_MAX, &replica) ||
        int_field(&req->body[1], 0, 60000, &max_wait) ||
        int_field(&req->body[2], 1, INT32_MAX, &max_bytes) ||
        sl_mp_array(&req->body[3], 0, &list, &n))
        return reply_status(conn, req->id, SL_EPROTO, "malformed replica fetch");
    replica_part *parts = calloc(n ? n : 1, sizeof(*parts));
    if (parts == NULL)
        return reply_status(conn, req->id, SL_ENOMEM, NULL);
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *f;
        size_t nf;
        if (sl_mp_array(&list[i], 5, &f, &nf) || str_field(&f[0], parts[i].topic,
                                                           sizeof(parts[i].topic)) ||
            int_field(&f[1], 0, INT32_MAX, &parts[i].partition) ||
            int_field(&f[2], 0, INT32_MAX, &parts[i].epoch) ||
            int_field(&f[3], 0, INT64_MAX, &parts[i].offset) ||
            int_field(&f[4], -1, INT32_MAX, &parts[i].last_epoch)) {
            free(parts);
            return reply_status(conn, req->id, SL_EPROTO, "malformed replica fetch");
        }
    }
    sl_broker *b = ctx->broker;
    sl_buf *out = sl_conn_buffer(conn);
    int64_t deadline = sl_clock_mono_ms() + max_wait;
    for (;;) {
        uint64_t version = sl_broker_log_version(b);
        out->len = 0;
        int got = replica_pass(b, req, (int32_t)replica, (size_t)max_bytes, parts, n, out);
        if (got || sl_clock_mono_ms() >= deadline || sl_broker_stopping(b))
            break;
        sl_broker_wait_for_log(b, version, deadline);
    }
    free(parts);
    return finish(conn, out);
}

static int handle_cluster_status(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    sl_cluster_member self = {.id = sl_broker_node_id(ctx->broker)}, *members = &self;
    size_t n = 1, voters = 0;
    int32_t leader = 0;
    bool ready = atomic_load(&ctx->cluster_ready);
    snprintf(self.url, sizeof(self.url), "%s", ready ? ctx->url : "");
    if (ready && ctx->cluster &&
        sl_cluster_members(ctx->cluster, &members, &n, &leader, &voters) != 0)
        return reply_status(conn, req->id, SL_ENOMEM, NULL);
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 6);
    msgpack_pack_int32(&pk, sl_broker_node_id(ctx->broker));
    msgpack_pack_int32(&pk, leader);
    msgpack_pack_uint64(&pk, voters);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_int32(&pk, members[i].id);
        sl_mp_pack_str(&pk, members[i].url);
    }
    if (members != &self)
        free(members);
    return finish(conn, out);
}

/* ---- transactions ---- */

/* The producer fields shared by TXN_OFFSET_COMMIT and END_TXN: [id, pid, epoch, ...]. */
static int txn_producer(const sl_native_req *req, int64_t *pid, int16_t *epoch) {
    int64_t e;
    if (int_field(&req->body[1], 0, INT64_MAX, pid) || int_field(&req->body[2], 0, INT16_MAX, &e))
        return SL_EPROTO;
    *epoch = (int16_t)e;
    return 0;
}

static int txn_reply(sl_conn *conn, const sl_native_req *req, int rc, const char *what) {
    char msg[400] = "";
    if (rc == SL_EFENCED)
        snprintf(msg, sizeof(msg), "%s for \"%s\" refused: a newer producer with this "
                 "transactional id fenced this one", what, req->name);
    else if (rc == SL_EINVAL)
        snprintf(msg, sizeof(msg), "%s for \"%s\" refused: unknown transactional id, a producer "
                 "id or epoch that is not its current one, or an abort of a transaction whose "
                 "commit has begun", what, req->name);
    else if (rc == SL_EGENERATION || rc == SL_EUNKNOWNMEMBER)
        snprintf(msg, sizeof(msg), "%s for \"%s\" refused: the consumer is no longer a member "
                 "of its group's current generation (its partitions went to another member)",
                 what, req->name);
    else if (rc)
        snprintf(msg, sizeof(msg), "%s for \"%s\" failed: %s", what, req->name, sl_strerror(rc));
    return reply_status(conn, req->id, rc, msg);
}

static int handle_end_txn(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    int64_t pid;
    int16_t epoch;
    if (txn_producer(req, &pid, &epoch) || req->body[3].type != MSGPACK_OBJECT_BOOLEAN)
        return reply_status(conn, req->id, SL_EPROTO, "malformed EndTxn request");
    bool commit = req->body[3].via.boolean;
    int rc = ctx->txn ? sl_txn_end(ctx->txn, req->name, pid, epoch, commit) : SL_EUNSUPPORTED;
    return txn_reply(conn, req, rc, commit ? "commit" : "abort");
}

static int handle_txn_offset_commit(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    const msgpack_object *a = req->body;
    int64_t pid, generation;
    int16_t epoch;
    char group[300], member[300];
    offset_list l = {0};
    int rc = txn_producer(req, &pid, &epoch);
    if (rc == 0 && (str_field(&a[3], group, sizeof(group)) ||
                    int_field(&a[4], INT32_MIN, INT32_MAX, &generation) ||
                    str_field(&a[5], member, sizeof(member))))
        rc = SL_EPROTO;
    if (rc == 0)
        rc = decode_offsets(&a[6], &l);
    if (rc == SL_EPROTO) {
        offset_list_free(&l);
        return reply_status(conn, req->id, rc, "malformed TxnOffsetCommit request");
    }
    if (rc == 0)
        rc = ctx->txn ? sl_txn_commit_offsets(ctx->txn, req->name, pid, epoch, group,
                                              (int32_t)generation, member, l.o, l.n)
                      : SL_EUNSUPPORTED;
    offset_list_free(&l);
    return txn_reply(conn, req, rc, "offset commit");
}

static int pack_fetch_topic(sl_broker *b, sl_coordinator *coord, msgpack_packer *pk,
                            const char *group, const char *topic, const msgpack_object *parts,
                            size_t np, bool all) {
    int32_t count = 0;
    if (all && sl_broker_partition_count(b, topic, &count) != 0)
        count = 0;
    size_t n = all ? (size_t)count : np;
    int unstable = 0;
    msgpack_pack_array(pk, 2);
    sl_mp_pack_str(pk, topic);
    msgpack_pack_array(pk, n);
    for (size_t j = 0; j < n; j++) {
        int64_t partition = (int64_t)j, offset = -1;
        if (!all && int_field(&parts[j], 0, INT32_MAX, &partition))
            return SL_EPROTO;
        int rc = sl_coord_committed(coord, group, topic, (int32_t)partition, &offset);
        if (rc == SL_ENOTCOORD || rc == SL_ECOORDLOADING)
            return rc;
        if (rc == SL_EUNSTABLE)
            unstable = SL_EUNSTABLE;
        msgpack_pack_array(pk, 2);
        msgpack_pack_int32(pk, (int32_t)partition);
        msgpack_pack_int64(pk, offset);
    }
    return unstable;
}

static int handle_offset_fetch(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    const msgpack_object *topics = NULL;
    size_t nt = 0;
    if (req->body[1].type != MSGPACK_OBJECT_NIL && sl_mp_array(&req->body[1], 0, &topics, &nt))
        return reply_status(conn, req->id, SL_EPROTO, "malformed offset fetch");
    sl_group_desc d;
    bool all = topics == NULL;
    int drc = all ? sl_coord_describe(ctx->coord, req->name, &d) : SL_ENOENT;
    if (drc == SL_ENOTCOORD || drc == SL_ECOORDLOADING)
        return reply_status(conn, req->id, drc, NULL);
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 3);
    int rc = 0;
    if (all) {
        /* Every committed offset of the group, one topic entry each. */
        size_t n = drc == 0 ? d.noffsets : 0;
        msgpack_pack_array(&pk, n);
        for (size_t i = 0; i < n; i++) {
            msgpack_pack_array(&pk, 2);
            sl_mp_pack_str(&pk, d.offsets[i].topic);
            msgpack_pack_array(&pk, 1);
            msgpack_pack_array(&pk, 2);
            msgpack_pack_int32(&pk, d.offsets[i].partition);
            msgpack_pack_int64(&pk, d.offsets[i].committed);
        }
        if (drc == 0)
            sl_group_desc_free(&d);
    } else {
        msgpack_pack_array(&pk, nt);
        for (size_t i = 0; rc == 0 && i < nt; i++) {
            const msgpack_object *t, *parts = NULL;
            size_t tn, np = 0;
            char topic[SL_TOPIC_NAME_MAX + 1];
            bool every = false;
            if (sl_mp_array(&topics[i], 2, &t, &tn) || str_field(&t[0], topic, sizeof(topic)))
                rc = SL_EPROTO;
            else if (t[1].type == MSGPACK_OBJECT_NIL)
                every = true;
            else if (sl_mp_array(&t[1], 0, &parts, &np))
                rc = SL_EPROTO;
            if (rc == 0)
                rc = pack_fetch_topic(ctx->broker, ctx->coord, &pk, req->name, topic, parts, np,
                                      every);
        }
    }
    if (rc == SL_EUNSTABLE) {
        char msg[400];
        snprintf(msg, sizeof(msg), "offsets of group \"%s\" are part of a transaction not "
                 "decided yet: ask again", req->name);
        return reply_status(conn, req->id, rc, msg);
    }
    if (rc == SL_ENOTCOORD || rc == SL_ECOORDLOADING)
        return reply_status(conn, req->id, rc, NULL);
    if (rc)
        return reply_status(conn, req->id, rc, "malformed offset fetch");
    return finish(conn, out);
}

static int handle_list_groups(sl_coordinator *coord, sl_conn *conn, sl_native_req *req) {
    char **names;
    size_t count;
    if (sl_coord_list(coord, &names, &count))
        return reply_status(conn, req->id, SL_ENOMEM, NULL);
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 3);
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < count; i++) {
        sl_group_desc d;
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, names[i]);
        if (sl_coord_describe(coord, names[i], &d) == 0) {
            sl_mp_pack_str(&pk, d.state);
            sl_group_desc_free(&d);
        } else {
            sl_mp_pack_str(&pk, "Dead");
        }
    }
    sl_broker_free_names(names, count);
    return finish(conn, out);
}

static int handle_describe_group(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    sl_group_desc d;
    int rc = sl_coord_describe(ctx->coord, req->name, &d);
    if (rc) {
        char msg[300];
        snprintf(msg, sizeof(msg), "group \"%s\" does not exist", req->name);
        return reply_status(conn, req->id, rc, rc == SL_ENOENT ? msg : NULL);
    }
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 8);
    sl_mp_pack_str(&pk, d.group);
    sl_mp_pack_str(&pk, d.state);
    sl_mp_pack_str(&pk, d.protocol);
    msgpack_pack_int32(&pk, d.generation);
    msgpack_pack_array(&pk, d.nmembers);
    for (size_t i = 0; i < d.nmembers; i++) {
        msgpack_pack_array(&pk, 4);
        sl_mp_pack_str(&pk, d.members[i].member_id);
        sl_mp_pack_str(&pk, d.members[i].client_id);
        sl_mp_pack_str(&pk, d.members[i].client_host);
        msgpack_pack_bin(&pk, d.members[i].assignment_len);
        msgpack_pack_bin_body(&pk, d.members[i].assignment, d.members[i].assignment_len);
    }
    int64_t now = sl_clock_wall_ms();
    msgpack_pack_array(&pk, d.noffsets);
    for (size_t i = 0; i < d.noffsets; i++) {
        sl_group_offset_desc *o = &d.offsets[i];
        int64_t end = -1, ts = -1, lag = 0, lag_ms = 0;
        sl_broker_replica_hw(ctx->broker, o->topic, o->partition, &end);
        if (end > o->committed) {
            lag = end - o->committed;
            /* Lag as time: the age of the oldest record the group has not consumed. */
            if (sl_broker_record_timestamp(ctx->broker, o->topic, o->partition, o->committed,
                                           &ts) == 0 &&
                ts > 0 && now > ts)
                lag_ms = now - ts;
        }
        msgpack_pack_array(&pk, 6);
        sl_mp_pack_str(&pk, o->topic);
        msgpack_pack_int32(&pk, o->partition);
        msgpack_pack_int64(&pk, o->committed);
        msgpack_pack_int64(&pk, end);
        msgpack_pack_int64(&pk, lag);
        msgpack_pack_int64(&pk, lag_ms);
    }
    sl_group_desc_free(&d);
    return finish(conn, out);
}

static int handle_find_coordinator(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    char err[256] = "", url[256] = "";
    int32_t node;
    int rc = sl_coord_find(ctx->coord, req->name, &node, err, sizeof(err));
    /* Outside a cluster: "" for "the broker you asked", as a wildcard address it listens on
     * is no address to dial. */
    bool clustered = atomic_load(&ctx->cluster_ready) && ctx->cluster;
    if (rc == 0 && node == sl_broker_node_id(ctx->broker))
        snprintf(url, sizeof(url), "%s", clustered ? ctx->url : "");
    else if (rc == 0 && (!clustered || sl_cluster_member_url(ctx->cluster, node, url,
                                                             sizeof(url)) != 0))
        rc = SL_ECOORDLOADING;
    if (rc)
        return reply_status(conn, req->id, rc, err);
    sl_buf *out = sl_conn_buffer(conn);
    msgpack_packer pk;
    begin_ok(out, &pk, req->id, 4);
    msgpack_pack_int32(&pk, node);
    sl_mp_pack_str(&pk, url);
    return finish(conn, out);
}

static int handle_group(sl_native_ctx *ctx, sl_conn *conn, sl_native_req *req) {
    const msgpack_object *a = req->body;
    char member[300] = "", msg[300] = "";
    int64_t generation = 0;
    int rc;
    switch (req->api) {
    case SL_API_JOIN_GROUP: return handle_join(ctx->coord, conn, req);
    case SL_API_SYNC_GROUP: return handle_sync(ctx->coord, conn, req);
    case SL_API_OFFSET_COMMIT: return handle_commit(ctx->coord, conn, req);
    case SL_API_OFFSET_FETCH: return handle_offset_fetch(ctx, conn, req);
    case SL_API_LIST_GROUPS: return handle_list_groups(ctx->coord, conn, req);
    case SL_API_DESCRIBE_GROUP: return handle_describe_group(ctx, conn, req);
    case SL_API_FIND_COORDINATOR: return handle_find_coordinator(ctx, conn, req);
    case SL_API_HEARTBEAT:
        if (int_field(&a[1], INT32_MIN, INT32_MAX, &generation) ||
            str_field(&a[2], member, sizeof(member)))
            return reply_status(conn, req->id, SL_EPROTO, "malformed heartbeat");
        return reply_status(conn, req->id,
                            sl_coord_heartbeat(ctx->coord, req->name, (int32_t)generation, member),
                            NULL);
    case SL_API_LEAVE_GROUP:
        if (str_field(&a[1], member, sizeof(member)))
            return reply_status(conn, req->id, SL_EPROTO, "malformed leave request");
        return reply_status(conn, req->id, sl_coord_leave(ctx->coord, req->name, member), NULL);
    case SL_API_DELETE_GROUP:
        rc = sl_coord_delete(ctx->coord, req->name);
        if (rc == SL_ENOENT)
            snprintf(msg, sizeof(msg), "group \"%s\" does not exist", req->name);
        else if (rc == SL_EGROUPNOTEMPTY)
            snprintf(msg, sizeof(msg), "group \"%s\" has active members; stop them first",
                     req->name);
        return reply_status(conn, req->id, rc, msg);
    }
    return reply_status(conn, req->id, SL_EUNSUPPORTED, NULL);
}

static enum sl_request_kind kind_of(uint16_t api) {
    if (api == SL_API_REPLICA_FETCH)
        return SL_REQ_FETCH;
    if (api == SL_API_FIND_COORDINATOR)
        return SL_REQ_GROUP;
    if (api >= SL_API_END_TXN)
        return SL_REQ_ADMIN;
    if (api >= SL_API_JOIN_GROUP)
        return SL_REQ_GROUP;
    switch (api) {
    case SL_API_PRODUCE: return SL_REQ_PRODUCE;
    case SL_API_FETCH: return SL_REQ_FETCH;
    case SL_API_LIST_OFFSETS: return SL_REQ_LIST_OFFSETS;
    case SL_API_METADATA: return SL_REQ_METADATA;
    default: return SL_REQ_ADMIN;
    }
}

int sl_native_handle_frame(void *arg, sl_conn *conn, uint8_t *frame, size_t len) {
    sl_native_ctx *ctx = arg;
    sl_broker *b = ctx->broker;
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
    case SL_API_METADATA: rc = handle_metadata(ctx, conn, &req); break;
    case SL_API_DESCRIBE_TOPIC: rc = handle_describe(b, conn, &req); break;
    case SL_API_LIST_TOPICS: rc = handle_list_topics(b, conn, &req); break;
    case SL_API_INIT_PRODUCER_ID: rc = handle_init_producer_id(ctx, conn, &req); break;
    case SL_API_END_TXN: rc = handle_end_txn(ctx, conn, &req); break;
    case SL_API_TXN_OFFSET_COMMIT: rc = handle_txn_offset_commit(ctx, conn, &req); break;
    case SL_API_CLUSTER_REGISTER: rc = handle_cluster_register(ctx, conn, &req); break;
    case SL_API_CLUSTER_STATUS: rc = handle_cluster_status(ctx, conn, &req); break;
    case SL_API_REPLICA_FETCH: rc = handle_replica_fetch(ctx, conn, &req); break;
    case SL_API_ALTER_ISR: rc = handle_alter_isr(ctx, conn, &req); break;
    case SL_API_CLUSTER_REBALANCE: rc = handle_rebalance(ctx, conn, &req); break;
    default: rc = handle_group(ctx, conn, &req); break;
    case SL_API_CREATE_TOPIC:
        rc = sl_broker_create_topic(b, req.name, req.partitions, req.replication, kv,
                                    req.nconfigs, err, sizeof(err));
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
    sl_broker_observe(b, ctx->ipc ? 2 : 0, kind_of(req.api), sl_clock_mono_ns() - start);
    sl_native_req_free(&req);
    return rc ? -1 : 0;
}

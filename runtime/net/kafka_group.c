/* Kafka's consumer-group and committed-offset APIs over the group coordinator: FindCoordinator,
 * JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups and
 * DescribeGroups, at the versions of profile M (shared/KAFKA_PROTOCOL.md, deltas in §1.6).
 * This single broker coordinates every group.
 *
 * Handlers return -1 for a malformed request and also when memory runs out, as the dispatcher
 * does for a full writer: the connection is closed and the client reconnects. Error answers
 * follow Kafka's broker where our coordinator words a case differently (noted where it does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/kafka.h"
#include "sluice/err.h"

#define GROUP_ID_MAX 255  /* the coordinator's limit */
#define MEMBER_ID_MAX 319 /* coordinator ids are "<client id>-<16 hex digits>": at most 272 */
#define NAME_MAX_LEN 255  /* topic and protocol names; topics longer than 249 cannot exist */
#define METADATA_MAX 4096 /* Kafka's offset.metadata.max.bytes */

/* Caps on what one request may make us allocate, far above what clients send: each array
 * element costs several times its wire size here. More is treated as a malformed request. */
#define MAX_PROTOCOLS 1000
#define MAX_ASSIGNMENTS 100000
#define MAX_COMMIT_PARTITIONS 1000000



/* A copy of the next string (NULL when out of memory; the reader may be in error). */
static char *read_dup(sl_kreader *r, size_t max, bool *bad) {
    char buf[MEMBER_ID_MAX + 1];
    sl_kr_string_flagged(r, buf, max + 1 < sizeof(buf) ? max + 1 : sizeof(buf), bad);
    return strdup(buf);
}

/* Kafka answers INVALID_GROUP_ID for an empty group id on the membership APIs. */
static bool group_ok(const char *group, bool bad) {
    return !bad && group[0] != '\0';
}

/* throttle_time_ms: this broker has no quotas. */
static void no_throttle(sl_kwriter *w) {
    sl_kw_i32(w, 0);
}

/* ---- FindCoordinator (10) v0-2 ---- */

int sl_kafka_find_coordinator(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char key[GROUP_ID_MAX + 1];
    bool bad;
    sl_kr_string_flagged(r, key, sizeof(key), &bad);
    int8_t type = req->api_version >= 1 ? sl_kr_i8(r) : 0;
    if (r->error)
        return -1;
    /* 0 is a group, 1 a transactional id; Kafka refuses other types as an invalid request.
     * A group goes to the leader of its partition of __consumer_offsets; transactions are
     * coordinated by the node a producer asks. */
    int16_t err = type == 0 || type == 1 ? KERR_NONE : KERR_INVALID_REQUEST;
    int32_t node = ctx->node_id;
    char host[256];
    int32_t port = ctx->port;
    snprintf(host, sizeof(host), "%s", ctx->host);
    if (err == KERR_NONE && type == 0 && !bad) {
        char why[256];
        int rc = sl_coord_find(ctx->coord, key, &node, why, sizeof(why));
        if (rc == 0 && node != ctx->node_id &&
            sl_kafka_broker_address(ctx, node, host, sizeof(host), &port) != 0)
            rc = SL_ECOORDLOADING;
        if (rc)
            err = KERR_COORDINATOR_NOT_AVAILABLE; /* the client asks again */
    }
    if (req->api_version >= 1) {
        no_throttle(w);
        sl_kw_i16(w, err);
        sl_kw_string(w, err ? "unknown coordinator key type" : NULL);
    } else {
        sl_kw_i16(w, err);
    }
    sl_kw_i32(w, err ? -1 : node);
    sl_kw_string(w, err ? "" : host);
    sl_kw_i32(w, err ? -1 : port);
    return 0;
}

/* ---- JoinGroup (11) v0-2 ---- */

typedef struct join_in {
    char group[GROUP_ID_MAX + 1], member[MEMBER_ID_MAX + 1], ptype[NAME_MAX_LEN + 1];
    bool group_bad, member_bad, ptype_bad;
    int32_t session_ms, rebalance_ms;
    sl_join_protocol *protos; /* names owned, metadata points into the frame */
    size_t n;
} join_in;

static void join_in_free(join_in *in) {
    for (size_t i = 0; i < in->n; i++)
        free((char *)in->protos[i].name);
    free(in->protos);
}

static int read_join(sl_kafka_req *req, join_in *in) {
    sl_kreader *r = &req->body;
    sl_kr_string_flagged(r, in->group, sizeof(in->group), &in->group_bad);
    in->session_ms = sl_kr_i32(r);
    /* v0 has no rebalance timeout: Kafka uses the session timeout for it. */
    in->rebalance_ms = req->api_version >= 1 ? sl_kr_i32(r) : in->session_ms;
    sl_kr_string_flagged(r, in->member, sizeof(in->member), &in->member_bad);
    sl_kr_string_flagged(r, in->ptype, sizeof(in->ptype), &in->ptype_bad);
    int32_t n = sl_kr_array(r, 6); /* name (2) + metadata (4) */
    if (n > MAX_PROTOCOLS)
        return -1;
    if (n > 0 && (in->protos = calloc((size_t)n, sizeof(*in->protos))) == NULL)
        return -1;
    for (int32_t i = 0; i < n && !r->error; i++) {
        bool bad;
        char *name = read_dup(r, NAME_MAX_LEN, &bad);
        if (name == NULL)
            return -1;
        int32_t len;
        const uint8_t *meta = sl_kr_bytes(r, &len);
        in->protos[in->n++] = (sl_join_protocol){name, meta, len > 0 ? (size_t)len : 0};
    }
    return r->error ? -1 : 0;
}

static int16_t join_precheck(const join_in *in) {
    if (!group_ok(in->group, in->group_bad))
        return KERR_INVALID_GROUP_ID;
    if (in->member_bad)
        return KERR_UNKNOWN_MEMBER_ID;
    if (in->ptype_bad || in->ptype[0] == '\0' || in->n == 0)
        return KERR_INCONSISTENT_GROUP_PROTOCOL; /* Kafka's answer to no type or protocols */
    return KERR_NONE;
}

/* On error: generation -1, empty names and members, the request's member id echoed. */
static void write_join(sl_kafka_req *req, sl_kwriter *w, int16_t err, const sl_join_result *res,
                       const char *member) {
    if (req->api_version >= 2)
        no_throttle(w);
    sl_kw_i16(w, err);
    sl_kw_i32(w, err ? -1 : res->generation);
    sl_kw_string(w, err ? "" : res->protocol);
    sl_kw_string(w, err ? "" : res->leader);
    sl_kw_string(w, err ? member : res->member_id);
    size_t n = err ? 0 : res->nmembers; /* filled for the leader only */
    sl_kw_i32(w, (int32_t)n);
    for (size_t i = 0; i < n; i++) {
        sl_kw_string(w, res->members[i].member_id);
        sl_kw_bytes(w, res->members[i].metadata, (int32_t)res->members[i].len);
    }
}

int sl_kafka_join_group(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    join_in in = {0};
    if (read_join(req, &in)) {
        join_in_free(&in);
        return -1;
    }
    sl_join_result res = {0};
    int16_t err = join_precheck(&in);
    if (err == KERR_NONE) {
        sl_join_request jr = {.group = in.group,
                              .member_id = in.member,
                              .client_id = req->client_id,
                              .client_host = req->peer,
                              .session_timeout_ms = in.session_ms,
                              .rebalance_timeout_ms = in.rebalance_ms,
                              .protocol_type = in.ptype,
                              .protocols = in.protos,
                              .nprotocols = in.n};
        /* Blocks until the rebalance resolves. Group id and protocols are checked above, so
         * SL_EINVAL here can only be a timeout out of the coordinator's bounds. */
        int rc = ctx->decode_only ? SL_ESTOPPED : sl_coord_join(ctx->coord, &jr, &res);
        err = rc == SL_EINVAL ? KERR_INVALID_SESSION_TIMEOUT : sl_kafka_error(rc);
    }
    write_join(req, w, err, &res, in.member);
    sl_join_result_free(&res);
    join_in_free(&in);
    return 0;
}

/* ---- SyncGroup (14) v0-1 ---- */

typedef struct sync_in {
    char group[GROUP_ID_MAX + 1], member[MEMBER_ID_MAX + 1];
    bool group_bad, member_bad;
    int32_t generation;
    sl_member_assignment *as; /* member ids owned, data points into the frame */
    size_t n;
} sync_in;

static void sync_in_free(sync_in *in) {
    for (size_t i = 0; i < in->n; i++)
        free((char *)in->as[i].member_id);
    free(in->as);
}

static int read_sync(sl_kreader *r, sync_in *in) {
    sl_kr_string_flagged(r, in->group, sizeof(in->group), &in->group_bad);
    in->generation = sl_kr_i32(r);
    sl_kr_string_flagged(r, in->member, sizeof(in->member), &in->member_bad);
    int32_t n = sl_kr_array(r, 6); /* member id (2) + assignment (4) */
    if (n > MAX_ASSIGNMENTS)
        return -1;
    if (n > 0 && (in->as = calloc((size_t)n, sizeof(*in->as))) == NULL)
        return -1;
    for (int32_t i = 0; i < n && !r->error; i++) {
        bool bad; /* a cut id matches no member: the coordinator skips it */
        char *id = read_dup(r, MEMBER_ID_MAX, &bad);
        if (id == NULL)
            return -1;
        int32_t len;
        const uint8_t *data = sl_kr_bytes(r, &len);
        in->as[in->n++] = (sl_member_assignment){id, data, len > 0 ? (size_t)len : 0};
    }
    return r->error ? -1 : 0;
}

int sl_kafka_sync_group(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sync_in in = {0};
    if (read_sync(&req->body, &in)) {
        sync_in_free(&in);
        return -1;
    }
    sl_buf assignment = SL_BUF_INIT;
    int16_t err = KERR_NONE;
    if (!group_ok(in.group, in.group_bad))
        err = KERR_INVALID_GROUP_ID;
    else if (in.member_bad)
        err = KERR_UNKNOWN_MEMBER_ID;
    else if (ctx->decode_only)
        err = KERR_COORDINATOR_NOT_AVAILABLE;
    else /* followers block here until the leader's assignment arrives */
        err = sl_kafka_error(sl_coord_sync(ctx->coord, in.group, in.generation, in.member, in.as,
                                           in.n, &assignment));
    if (req->api_version >= 1)
        no_throttle(w);
    sl_kw_i16(w, err);
    sl_kw_bytes(w, assignment.data, err ? 0 : (int32_t)assignment.len);
    sl_buf_free(&assignment);
    sync_in_free(&in);
    return 0;
}

/* ---- Heartbeat (12) v0-1, LeaveGroup (13) v0-1 ---- */

static int answer_status(sl_kafka_req *req, sl_kwriter *w, int16_t err) {
    if (req->api_version >= 1)
        no_throttle(w);
    sl_kw_i16(w, err);
    return 0;
}

int sl_kafka_heartbeat(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char group[GROUP_ID_MAX + 1], member[MEMBER_ID_MAX + 1];
    bool group_bad, member_bad;
    sl_kr_string_flagged(r, group, sizeof(group), &group_bad);
    int32_t generation = sl_kr_i32(r);
    sl_kr_string_flagged(r, member, sizeof(member), &member_bad);
    if (r->error)
        return -1;
    if (!group_ok(group, group_bad))
        return answer_status(req, w, KERR_INVALID_GROUP_ID);
    if (member_bad)
        return answer_status(req, w, KERR_UNKNOWN_MEMBER_ID);
    return answer_status(req, w,
                         sl_kafka_error(sl_coord_heartbeat(ctx->coord, group, generation, member)));
}

int sl_kafka_leave_group(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char group[GROUP_ID_MAX + 1], member[MEMBER_ID_MAX + 1];
    bool group_bad, member_bad;
    sl_kr_string_flagged(r, group, sizeof(group), &group_bad);
    sl_kr_string_flagged(r, member, sizeof(member), &member_bad);
    if (r->error)
        return -1;
    if (!group_ok(group, group_bad))
        return answer_status(req, w, KERR_INVALID_GROUP_ID);
    if (member_bad)
        return answer_status(req, w, KERR_UNKNOWN_MEMBER_ID);
    return answer_status(req, w, sl_kafka_error(sl_coord_leave(ctx->coord, group, member)));
}

/* ---- OffsetCommit (8) v0-2 ---- */

/* The request's topics and partitions in order, each partition with its answer. */
typedef struct commit_in {
    size_t ntopics, nparts;
    char **topics;
    int32_t *tparts;         /* partitions per topic */
    sl_offset_commit *parts; /* topic pointers into 'topics'; metadata owned */
    int16_t *errs;
} commit_in;

static void commit_in_free(commit_in *in) {
    for (size_t i = 0; i < in->ntopics; i++)
        free(in->topics ? in->topics[i] : NULL);
    for (size_t i = 0; in->parts && i < in->nparts; i++)
        free((char *)in->parts[i].metadata);
    free(in->topics);
    free(in->tparts);
    free(in->parts);
    free(in->errs);
}

static int commit_alloc(commit_in *in) {
    size_t nt = in->ntopics ? in->ntopics : 1, np = in->nparts ? in->nparts : 1;
    in->topics = calloc(nt, sizeof(*in->topics));
    in->tparts = calloc(nt, sizeof(*in->tparts));
    in->parts = calloc(np, sizeof(*in->parts));
    in->errs = calloc(np, sizeof(*in->errs));
    return in->topics && in->tparts && in->parts && in->errs ? 0 : -1;
}

/* What is wrong with one partition of a commit before asking the coordinator. */
static int16_t part_precheck(bool name_bad, bool md_bad, int64_t offset) {
    if (name_bad)
        return KERR_UNKNOWN_TOPIC_OR_PARTITION; /* no topic has such a name */
    if (md_bad)
        return KERR_OFFSET_METADATA_TOO_LARGE;
    if (offset < 0)
        return KERR_INVALID_REQUEST; /* Kafka would store it; the coordinator refuses it */
    return KERR_NONE;
}

/* Reads the topics array. Without 'in->parts' it only counts topics and partitions (a first
 * pass to size the arrays); with it, it fills them. -1: out of memory. */
static int walk_commit(sl_kreader *r, int16_t version, commit_in *in) {
    bool fill = in->parts != NULL;
    size_t k = 0;
    /* Per partition: index (4), offset (8), v1's commit timestamp (8), metadata (2). */
    int32_t nt = sl_kr_array(r, 6);
    for (int32_t i = 0; i < nt && !r->error; i++) {
        char name[NAME_MAX_LEN + 1], md[METADATA_MAX + 1];
        bool name_bad, md_bad;
        sl_kr_string_flagged(r, name, sizeof(name), &name_bad);
        int32_t np = sl_kr_array(r, version == 1 ? 22 : 14);
        if (fill && ((in->topics[i] = strdup(name)) == NULL))
            return -1;
        if (fill)
            in->tparts[i] = np;
        for (int32_t j = 0; j < np && !r->error; j++, k++) {
            int32_t partition = sl_kr_i32(r);
            int64_t offset = sl_kr_i64(r);
            if (version == 1)
                sl_kr_i64(r); /* commit_timestamp: the coordinator stamps commits itself */
            sl_kr_string_flagged(r, md, sizeof(md), &md_bad);
            if (!fill)
                continue;
            char *mdup = md[0] ? strdup(md) : NULL; /* NULL: no metadata */
            if (md[0] && mdup == NULL)
                return -1;
            in->parts[k] = (sl_offset_commit){in->topics[i], partition, offset, mdup};
            in->errs[k] = part_precheck(name_bad, md_bad, offset);
        }
    }
    if (!fill) {
        in->ntopics = nt > 0 ? (size_t)nt : 0;
        in->nparts = k;
    }
    return 0;
}

/* Kafka refuses commits to partitions that do not exist. */
static void check_partitions(sl_kafka_ctx *ctx, commit_in *in) {
    for (size_t i = 0; i < in->nparts; i++) {
        int32_t count = 0;
        if (in->errs[i] == KERR_NONE &&
            (sl_broker_partition_count(ctx->broker, in->parts[i].topic, &count) != 0 ||
             in->parts[i].partition < 0 || in->parts[i].partition >= count))
            in->errs[i] = KERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
}

/* Commits every partition without an error yet in one call; its outcome is theirs. */
static int commit_valid(sl_kafka_ctx *ctx, commit_in *in, const char *group, int32_t generation,
                        const char *member) {
    sl_offset_commit *ok = calloc(in->nparts ? in->nparts : 1, sizeof(*ok));
    if (ok == NULL)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < in->nparts; i++)
        if (in->errs[i] == KERR_NONE)
            ok[n++] = in->parts[i];
    int rc = n ? sl_coord_commit(ctx->coord, group, generation, member, ok, n) : 0;
    /* A tool commit (generation -1) to a group with live members: Kafka says unknown member. */
    int16_t err = rc == SL_EGROUPNOTEMPTY ? KERR_UNKNOWN_MEMBER_ID : sl_kafka_error(rc);
    for (size_t i = 0; i < in->nparts; i++)
        if (in->errs[i] == KERR_NONE)
            in->errs[i] = err;
    free(ok);
    return 0;
}

static void write_commit(sl_kwriter *w, const commit_in *in) {
    size_t k = 0;
    sl_kw_i32(w, (int32_t)in->ntopics);
    for (size_t i = 0; i < in->ntopics; i++) {
        sl_kw_string(w, in->topics[i]);
        sl_kw_i32(w, in->tparts[i] > 0 ? in->tparts[i] : 0);
        for (int32_t j = 0; j < in->tparts[i]; j++, k++) {
            sl_kw_i32(w, in->parts[k].partition);
            sl_kw_i16(w, in->errs[k]);
        }
    }
}

int sl_kafka_offset_commit(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char group[GROUP_ID_MAX + 1], member[MEMBER_ID_MAX + 1] = "";
    bool group_bad, member_bad = false;
    int32_t generation = -1; /* v0 commits are tool commits */
    sl_kr_string_flagged(r, group, sizeof(group), &group_bad);
    if (req->api_version >= 1) {
        generation = sl_kr_i32(r);
        sl_kr_string_flagged(r, member, sizeof(member), &member_bad);
    }
    if (req->api_version >= 2)
        sl_kr_i64(r); /* retention_time_ms: committed offsets are kept until deleted */
    commit_in in = {0};
    sl_kreader topics = *r;
    walk_commit(r, req->api_version, &in); /* counts only */
    if (r->error || in.nparts > MAX_COMMIT_PARTITIONS || commit_alloc(&in) ||
        walk_commit(&topics, req->api_version, &in)) {
        commit_in_free(&in);
        return -1;
    }
    int rc = 0;
    if (!group_ok(group, group_bad) || member_bad) {
        int16_t err = group_ok(group, group_bad) ? KERR_UNKNOWN_MEMBER_ID : KERR_INVALID_GROUP_ID;
        for (size_t i = 0; i < in.nparts; i++)
            in.errs[i] = err;
    } else {
        check_partitions(ctx, &in);
        rc = commit_valid(ctx, &in, group, generation, member);
    }
    if (rc == 0)
        write_commit(w, &in);
    commit_in_free(&in);
    return rc;
}

/* ---- OffsetFetch (9) v0-1 ---- */

static void fetch_topic(sl_kafka_ctx *ctx, sl_kreader *r, sl_kwriter *w, const char *group,
                        int16_t group_err) {
    char name[NAME_MAX_LEN + 1];
    bool name_bad;
    sl_kr_string_flagged(r, name, sizeof(name), &name_bad);
    int32_t np = sl_kr_array(r, 4);
    sl_kw_string(w, name);
    sl_kw_i32(w, np > 0 ? np : 0);
    for (int32_t j = 0; j < np && !r->error; j++) {
        int32_t partition = sl_kr_i32(r);
        int64_t offset = -1; /* Kafka's answer for a partition without a commit */
        int16_t err = group_err;
        if (err == KERR_NONE && !name_bad) {
            int rc = sl_coord_committed(ctx->coord, group, name, partition, &offset);
            if (rc == SL_ENOTCOORD || rc == SL_ECOORDLOADING)
                err = sl_kafka_error(rc); /* the client finds the coordinator again */
        }
        sl_kw_i32(w, partition);
        sl_kw_i64(w, offset);
        sl_kw_string(w, ""); /* the coordinator does not hand metadata back */
        sl_kw_i16(w, err);
    }
}

int sl_kafka_offset_fetch(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char group[GROUP_ID_MAX + 1];
    bool group_bad;
    sl_kr_string_flagged(r, group, sizeof(group), &group_bad);
    /* Kafka accepts an empty group id on the offset APIs; v0-1 have no top-level error, so a
     * group id we cannot hold is reported on every partition. */
    int16_t group_err = group_bad ? KERR_INVALID_GROUP_ID : KERR_NONE;
    int32_t nt = sl_kr_array(r, 6); /* name (2) + partitions (4); null ("all", v2+) as none */
    sl_kw_i32(w, nt > 0 ? nt : 0);
    for (int32_t i = 0; i < nt && !r->error; i++)
        fetch_topic(ctx, r, w, group, group_err);
    return r->error ? -1 : 0;
}

/* ---- ListGroups (16) v0, DescribeGroups (15) v0 ---- */

/* Membership is not persisted, so a group known only by its offsets has no protocol type;
 * Kafka persists it, and every group here is a consumer group in practice. */
static const char *protocol_type_of(const sl_group_desc *d) {
    return d->protocol_type && d->protocol_type[0] ? d->protocol_type : "consumer";
}

int sl_kafka_list_groups(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    (void)req; /* v0 has an empty body */
    char **names = NULL;
    size_t n = 0;
    int rc = sl_coord_list(ctx->coord, &names, &n);
    sl_kw_i16(w, sl_kafka_error(rc));
    if (rc) {
        sl_kw_i32(w, 0);
        return 0;
    }
    sl_kw_i32(w, (int32_t)n);
    for (size_t i = 0; i < n; i++) {
        sl_group_desc d;
        bool known = sl_coord_describe(ctx->coord, names[i], &d) == 0;
        sl_kw_string(w, names[i]);
        sl_kw_string(w, known ? protocol_type_of(&d) : "consumer");
        if (known)
            sl_group_desc_free(&d);
    }
    sl_broker_free_names(names, n);
    return 0;
}

/* Kafka's answer for a group it does not know is no error and the state "Dead". */
static void describe_dead(sl_kwriter *w, int16_t err, const char *group) {
    sl_kw_i16(w, err);
    sl_kw_string(w, group);
    sl_kw_string(w, "Dead");
    sl_kw_string(w, "");
    sl_kw_string(w, "");
    sl_kw_i32(w, 0);
}

static void describe_group(sl_kafka_ctx *ctx, sl_kwriter *w, const char *group, bool bad) {
    sl_group_desc d;
    int rc = bad ? SL_ENOENT : sl_coord_describe(ctx->coord, group, &d);
    if (rc) {
        describe_dead(w, rc == SL_ENOENT ? KERR_NONE : sl_kafka_error(rc), group);
        return;
    }
    /* As in Kafka, the protocol and assignments are shown only once the group is stable. */
    bool stable = strcmp(d.state, "Stable") == 0;
    sl_kw_i16(w, KERR_NONE);
    sl_kw_string(w, d.group);
    sl_kw_string(w, d.state);
    sl_kw_string(w, protocol_type_of(&d));
    sl_kw_string(w, stable ? d.protocol : "");
    sl_kw_i32(w, (int32_t)d.nmembers);
    for (size_t i = 0; i < d.nmembers; i++) {
        const sl_group_member_desc *m = &d.members[i];
        sl_kw_string(w, m->member_id);
        sl_kw_string(w, m->client_id);
        sl_kw_string(w, m->client_host);
        sl_kw_bytes(w, NULL, 0); /* member_metadata: the coordinator does not describe it */
        sl_kw_bytes(w, m->assignment, stable ? (int32_t)m->assignment_len : 0);
    }
    sl_group_desc_free(&d);
}

int sl_kafka_describe_groups(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    int32_t n = sl_kr_array(r, 2);
    sl_kw_i32(w, n > 0 ? n : 0);
    for (int32_t i = 0; i < n && !r->error; i++) {
        char group[GROUP_ID_MAX + 1];
        bool bad;
        sl_kr_string_flagged(r, group, sizeof(group), &bad);
        if (!r->error)
            describe_group(ctx, w, group, bad);
    }
    return r->error ? -1 : 0;
}

/* A consumer's membership of a group, Kafka's classic protocol seen from the member.
 *
 * The group work happens inside sl_consumer_poll, on the application's thread, so rebalance
 * callbacks run there and an application that stops polling stops consuming: join, the
 * leader's assignment, sync, then the new partitions start at the group's committed offsets.
 * A heartbeat thread keeps the session alive and notices rebalances (and a poll loop stuck for
 * max.poll.interval.ms, after which it leaves the group so others take over).
 *
 * Eager strategies (range, roundrobin) give every partition back before joining. The
 * cooperative one keeps consuming what it owns: after the sync it revokes only what moved,
 * and rejoins at once so the withheld partitions reach their new owners. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "client/assignor.h"
#include "client/consumer_internal.h"

/* Margin over the rebalance timeout for a join's answer: the coordinator may wait that long. */
#define JOIN_MARGIN_MS 5000

/* ---- the coordinator connection ---- */

/* Asks the bootstrap brokers which node coordinates the group: its address into 'url'. */
static int find_coordinator(sl_consumer *c, char *url, size_t len) {
    char err[256];
    sl_rpc *probe;
    int32_t node;
    int rc = sl_cl_connect(&c->v, &probe, err, sizeof(err));
    if (rc == 0) {
        rc = sl_cl_find_coordinator(probe, &c->v, c->v.group_id, url, len, &node);
        sl_rpc_close(probe);
    }
    return rc;
}

/* Points the coordinator connection at the node that coordinates the group now: in a cluster
 * it moves with the leader of the group's partition of __consumer_offsets. */
static void locate_coordinator(sl_consumer *c) {
    char url[256];
    int rc = find_coordinator(c, url, sizeof(url));
    pthread_mutex_lock(&c->coord_lock);
    if (rc == 0)
        rc = sl_rpc_retarget(c->coord, url, c->v.request_timeout_ms);
    else
        sl_rpc_reconnect(c->coord, c->v.request_timeout_ms);
    pthread_mutex_unlock(&c->coord_lock);
    if (rc == 0)
        sl_debug("consumer", "group %s: coordinator at %s", c->v.group_id, url);
}

/* The coordinator connection, made on first use: to a bootstrap broker, then moved to the
 * group's coordinator (when that fails, the first request that fails moves it). */
static int coord_connect(sl_consumer *c) {
    if (c->coord)
        return 0;
    char err[256];
    int rc = sl_cl_connect(&c->v, &c->coord, err, sizeof(err));
    if (rc == 0)
        locate_coordinator(c);
    return rc;
}

static int group_call(sl_consumer *c, sl_buf *req, uint32_t id, int timeout_ms, sl_buf *resp,
                      msgpack_unpacked *up, size_t min, const msgpack_object **items, size_t *n) {
    char err[256];
    int rc = sl_cl_call(c->coord, req, id, timeout_ms, resp, up, min, items, n, err, sizeof(err));
    /* The coordinator died or its partition moved (or is loading on a new leader): find it
     * again; the caller's retry goes there. */
    if (rc == SL_ECLOSED || rc == SL_ENOTCOORD || rc == SL_ECOORDLOADING)
        locate_coordinator(c);
    return rc;
}

void sl_group_pack_offsets(msgpack_packer *pk, const sl_topic_partition *parts, size_t n) {
    /* One topic entry per partition: simple, and the coordinator accepts repeats. */
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_array(pk, 2);
        sl_mp_pack_str(pk, parts[i].topic);
        msgpack_pack_array(pk, 1);
        msgpack_pack_array(pk, 3);
        msgpack_pack_int32(pk, parts[i].partition);
        msgpack_pack_int64(pk, parts[i].offset);
        sl_mp_pack_str(pk, "");
    }
}

void sl_group_identity(sl_consumer *c, int32_t *generation, char *member, size_t len) {
    pthread_mutex_lock(&c->lock);
    *generation = c->grouped ? c->group_generation : -1;
    snprintf(member, len, "%s", c->member_id);
    pthread_mutex_unlock(&c->lock);
}

static void commit_done(void *arg, int status, const uint8_t *body, size_t len) {
    char *group = arg;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    int st = status;
    msgpack_unpacked_init(&up);
    if (st == 0 &&
        sl_native_decode_response(body, len, &up, 2, &items, &n, &st, NULL, 0) != 0)
        st = SL_EPROTO;
    if (st)
        sl_warn("consumer", "asynchronous commit for group %s failed: %s", group,
                sl_strerror(st));
    msgpack_unpacked_destroy(&up);
    free(group);
}

static int commit(sl_consumer *c, const sl_topic_partition *parts, size_t n, bool async) {
    if (c->v.group_id[0] == '\0')
        return SL_EINVAL;
    if (n == 0)
        return 0;
    int rc = coord_connect(c);
    if (rc)
        return rc;
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(c->coord);
    pthread_mutex_lock(&c->lock);
    int32_t generation = c->grouped ? c->group_generation : -1;
    char member[300];
    snprintf(member, sizeof(member), "%s", c->member_id);
    pthread_mutex_unlock(&c->lock);
    sl_cl_begin(&req, id, SL_API_OFFSET_COMMIT, &pk);
    msgpack_pack_array(&pk, 4);
    sl_mp_pack_str(&pk, c->v.group_id);
    msgpack_pack_int32(&pk, generation);
    sl_mp_pack_str(&pk, member);
    sl_group_pack_offsets(&pk, parts, n);
    if (async) {
        sl_rpc_frame_end(&req);
        char *group = strdup(c->v.group_id);
        rc = group ? sl_rpc_send(c->coord, id, req.data, req.len, c->v.request_timeout_ms,
                                 commit_done, group)
                   : SL_ENOMEM;
        if (rc)
            free(group);
    } else {
        msgpack_unpacked up;
        const msgpack_object *items;
        size_t k;
        msgpack_unpacked_init(&up);
        rc = group_call(c, &req, id, c->v.request_timeout_ms, &resp, &up, 2, &items, &k);
        msgpack_unpacked_destroy(&up);
    }
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

int sl_consumer_commit_offsets(sl_consumer *c, const sl_topic_partition *offsets, size_t n,
                               int async) {
    return commit(c, offsets, n, async != 0);
}

int sl_consumer_commit(sl_consumer *c, int async) {
    sl_topic_partition *parts;
    size_t n;
    int rc = sl_consumer_positions(c, &parts, &n);
    if (rc)
        return rc;
    rc = commit(c, parts, n, async != 0);
    sl_topic_partitions_free(parts, n);
    return rc;
}

/* The committed offsets of 'set' into 'out' (one per partition, -1 when none). */
static int fetch_committed(sl_consumer *c, const sl_partition_set *set, sl_topic_partition *out) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *topics;
    size_t n, nt, k = 0;
    uint32_t id = sl_rpc_next_id(c->coord);
    sl_cl_begin(&req, id, SL_API_OFFSET_FETCH, &pk);
    msgpack_pack_array(&pk, 2);
    sl_mp_pack_str(&pk, c->v.group_id);
    msgpack_pack_array(&pk, set->ntopics);
    for (size_t i = 0; i < set->ntopics; i++) {
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, set->topics[i].topic);
        msgpack_pack_array(&pk, set->topics[i].n);
        for (size_t j = 0; j < set->topics[i].n; j++)
            msgpack_pack_int32(&pk, set->topics[i].partitions[j]);
    }
    msgpack_unpacked_init(&up);
    int rc = group_call(c, &req, id, c->v.request_timeout_ms, &resp, &up, 3, &items, &n);
    if (rc == 0 && (sl_mp_array(&items[2], 0, &topics, &nt) || nt != set->ntopics))
        rc = SL_EPROTO;
    for (size_t i = 0; rc == 0 && i < nt; i++) {
        const msgpack_object *t, *parts;
        size_t tn, np;
        if (sl_mp_array(&topics[i], 2, &t, &tn) || sl_mp_array(&t[1], 0, &parts, &np) ||
            np != set->topics[i].n) {
            rc = SL_EPROTO;
            break;
        }
        for (size_t j = 0; rc == 0 && j < np; j++) {
            const msgpack_object *f;
            size_t fn;
            int64_t off;
            if (sl_mp_array(&parts[j], 2, &f, &fn) || sl_mp_int(&f[1], &off))
                rc = SL_EPROTO;
            else
                out[k++] = (sl_topic_partition){set->topics[i].topic,
                                                set->topics[i].partitions[j], off};
        }
    }
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

int sl_consumer_committed(sl_consumer *c, const char *topic, int32_t partition,
                          int64_t *offset) {
    if (c->v.group_id[0] == '\0')
        return SL_EINVAL;
    int rc = coord_connect(c);
    if (rc)
        return rc;
    sl_partition_set one = {0};
    sl_topic_partition out;
    rc = sl_pset_add(&one, topic, partition);
    if (rc == 0)
        rc = fetch_committed(c, &one, &out);
    if (rc == 0)
        *offset = out.offset;
    sl_pset_free(&one);
    return rc;
}

/* ---- rebalance callbacks ---- */

static void notify(sl_consumer *c, sl_rebalance_event ev, const sl_partition_set *set) {
    size_t n = sl_pset_count(set);
    /* As in Kafka, an assignment is reported even when empty: the member knows it has joined. */
    if (c->rebalance_cb == NULL || (n == 0 && ev != SL_PARTITIONS_ASSIGNED))
        return;
    sl_topic_partition *parts = calloc(n ? n : 1, sizeof(*parts));
    if (parts == NULL)
        return;
    size_t k = 0;
    for (size_t i = 0; i < set->ntopics; i++)
        for (size_t j = 0; j < set->topics[i].n; j++)
            parts[k++] = (sl_topic_partition){set->topics[i].topic, set->topics[i].partitions[j],
                                              -1};
    c->rebalance_cb(c->rebalance_opaque, ev, parts, n);
    free(parts);
}

/* The partitions currently consumed, as a set. */
static int owned_set(sl_consumer *c, sl_partition_set *set) {
    sl_topic_partition *parts;
    size_t n;
    memset(set, 0, sizeof(*set));
    int rc = sl_consumer_positions(c, &parts, &n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = sl_pset_add(set, parts[i].topic, parts[i].partition);
    if (rc == 0)
        sl_topic_partitions_free(parts, n);
    return rc;
}

/* Commits (with auto commit) and gives up 'set' (NULL: everything). */
static void give_up(sl_consumer *c, const sl_partition_set *set, sl_rebalance_event ev) {
    sl_partition_set all = {0};
    if (set == NULL) {
        if (owned_set(c, &all))
            return;
        set = &all;
    }
    if (sl_pset_count(set) == 0) {
        sl_pset_free(&all);
        return;
    }
    if (ev == SL_PARTITIONS_REVOKED && c->v.auto_commit) {
        sl_topic_partition *parts;
        size_t n;
        if (sl_consumer_positions(c, &parts, &n) == 0) {
            sl_topic_partition *chosen = calloc(n ? n : 1, sizeof(*chosen));
            size_t k = 0;
            for (size_t i = 0; chosen && i < n; i++)
                if (sl_pset_contains(set, parts[i].topic, parts[i].partition))
                    chosen[k++] = parts[i]; /* borrowed from parts */
            int rc = chosen ? commit(c, chosen, k, false) : SL_ENOMEM;
            if (rc)
                sl_warn("consumer", "group %s: commit before revocation failed: %s",
                        c->v.group_id, sl_strerror(rc));
            free(chosen);
            sl_topic_partitions_free(parts, n);
        }
    }
    notify(c, ev, set);
    sl_consumer_remove_partitions(c, set);
    sl_pset_free(&all);
}

/* ---- join and sync ---- */

typedef struct join_answer {
    int32_t generation;
    char protocol[64];
    char leader[300];
    char member_id[300];
    sl_assign_member *members;
    sl_subscription *subs;
    size_t nmembers;
} join_answer;

static void join_answer_free(join_answer *ja) {
    for (size_t i = 0; i < ja->nmembers; i++) {
        free((char *)ja->members[i].member_id);
        sl_subscription_free(&ja->subs[i]);
    }
    free(ja->members);
    free(ja->subs);
    memset(ja, 0, sizeof(*ja));
}

static int join(sl_consumer *c, join_answer *ja) {
    sl_subscription sub = {c->subscription, c->nsubscription, {0}};
    sl_buf meta = SL_BUF_INIT, req = SL_BUF_INIT, resp = SL_BUF_INIT;
    int rc = 0;
    if (sl_assignor_is_cooperative(c->v.assignor))
        rc = owned_set(c, &sub.owned);
    if (rc == 0)
        rc = sl_subscription_encode(&sub, &meta);
    sl_pset_free(&sub.owned);
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(c->coord);
    sl_cl_begin(&req, id, SL_API_JOIN_GROUP, &pk);
    msgpack_pack_array(&pk, 7);
    sl_mp_pack_str(&pk, c->v.group_id);
    sl_mp_pack_str(&pk, c->member_id);
    sl_mp_pack_str(&pk, c->v.client_id);
    msgpack_pack_int32(&pk, c->v.session_timeout_ms);
    msgpack_pack_int32(&pk, c->v.max_poll_interval_ms);
    sl_mp_pack_str(&pk, "consumer");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    sl_mp_pack_str(&pk, c->v.assignor);
    msgpack_pack_bin(&pk, meta.len);
    msgpack_pack_bin_body(&pk, meta.data, meta.len);
    msgpack_unpacked up;
    const msgpack_object *items, *members;
    size_t n, nm;
    msgpack_unpacked_init(&up);
    memset(ja, 0, sizeof(*ja));
    if (rc == 0)
        rc = group_call(c, &req, id, c->v.max_poll_interval_ms + JOIN_MARGIN_MS, &resp, &up, 7,
                        &items, &n);
    int64_t generation;
    if (rc == 0 &&
        (sl_mp_int(&items[2], &generation) ||
         sl_mp_strcpy(&items[3], ja->protocol, sizeof(ja->protocol)) ||
         sl_mp_strcpy(&items[4], ja->leader, sizeof(ja->leader)) ||
         sl_mp_strcpy(&items[5], ja->member_id, sizeof(ja->member_id)) ||
         sl_mp_array(&items[6], 0, &members, &nm)))
        rc = SL_EPROTO;
    if (rc == 0) {
        ja->generation = (int32_t)generation;
        ja->members = calloc(nm ? nm : 1, sizeof(*ja->members));
        ja->subs = calloc(nm ? nm : 1, sizeof(*ja->subs));
        if (!ja->members || !ja->subs)
            rc = SL_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < nm; i++) {
        const msgpack_object *f;
        size_t fn;
        const char *mid;
        size_t mlen;
        if (sl_mp_array(&members[i], 2, &f, &fn) || sl_mp_str(&f[0], &mid, &mlen) ||
            f[1].type != MSGPACK_OBJECT_BIN ||
            sl_subscription_decode((const uint8_t *)f[1].via.bin.ptr, f[1].via.bin.size,
                                   &ja->subs[i]) != 0) {
            rc = SL_EPROTO;
            break;
        }
        ja->members[i].member_id = strndup(mid, mlen);
        ja->members[i].sub = &ja->subs[i];
        ja->nmembers++;
        if (ja->members[i].member_id == NULL)
            rc = SL_ENOMEM;
    }
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&meta);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    if (rc)
        join_answer_free(ja);
    return rc;
}

/* As leader: every member's assignment, encoded, in join order. */
static int lead(sl_consumer *c, const join_answer *ja, sl_buf *encoded) {
    sl_topic_count *topics = NULL;
    size_t nt = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ja->nmembers; i++) {
        for (size_t t = 0; rc == 0 && t < ja->subs[i].ntopics; t++) {
            const char *name = ja->subs[i].topics[t];
            bool seen = false;
            for (size_t k = 0; k < nt && !seen; k++)
                seen = strcmp(topics[k].topic, name) == 0;
            if (seen)
                continue;
            int32_t count;
            if (sl_cl_partition_count(c->rpc, c->v.request_timeout_ms, name, &count) != 0)
                continue; /* a topic that does not exist has nothing to assign */
            sl_topic_count *v = realloc(topics, (nt + 1) * sizeof(*v));
            if (v == NULL) {
                rc = SL_ENOMEM;
                break;
            }
            topics = v;
            topics[nt++] = (sl_topic_count){name, count};
        }
    }
    sl_partition_set *out = calloc(ja->nmembers ? ja->nmembers : 1, sizeof(*out));
    if (rc == 0 && out == NULL)
        rc = SL_ENOMEM;
    if (rc == 0)
        rc = sl_assign(ja->protocol, ja->members, ja->nmembers, topics, nt, out);
    for (size_t i = 0; rc == 0 && i < ja->nmembers; i++) {
        encoded[i].len = 0;
        rc = sl_assignment_encode(&out[i], &encoded[i]);
    }
    for (size_t i = 0; out && i < ja->nmembers; i++)
        sl_pset_free(&out[i]);
    free(out);
    free(topics);
    return rc;
}

static int sync_group(sl_consumer *c, const join_answer *ja, const sl_buf *encoded,
                      sl_partition_set *mine) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    bool leader = strcmp(ja->leader, ja->member_id) == 0;
    uint32_t id = sl_rpc_next_id(c->coord);
    sl_cl_begin(&req, id, SL_API_SYNC_GROUP, &pk);
    msgpack_pack_array(&pk, 4);
    sl_mp_pack_str(&pk, c->v.group_id);
    msgpack_pack_int32(&pk, ja->generation);
    sl_mp_pack_str(&pk, ja->member_id);
    msgpack_pack_array(&pk, leader ? ja->nmembers : 0);
    for (size_t i = 0; leader && i < ja->nmembers; i++) {
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, ja->members[i].member_id);
        msgpack_pack_bin(&pk, encoded[i].len);
        msgpack_pack_bin_body(&pk, encoded[i].data, encoded[i].len);
    }
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    msgpack_unpacked_init(&up);
    int rc = group_call(c, &req, id, c->v.max_poll_interval_ms + JOIN_MARGIN_MS, &resp, &up, 3,
                        &items, &n);
    if (rc == 0 && items[2].type != MSGPACK_OBJECT_BIN)
        rc = SL_EPROTO;
    if (rc == 0)
        rc = sl_assignment_decode((const uint8_t *)items[2].via.bin.ptr, items[2].via.bin.size,
                                  mine);
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

/* Starts consuming 'added' at the group's committed offsets (or auto.offset.reset). */
static int take_over(sl_consumer *c, const sl_partition_set *added) {
    size_t n = sl_pset_count(added);
    if (n == 0) {
        notify(c, SL_PARTITIONS_ASSIGNED, added);
        return 0;
    }
    sl_topic_partition *committed = calloc(n, sizeof(*committed));
    if (committed == NULL)
        return SL_ENOMEM;
    int rc = fetch_committed(c, added, committed);
    /* A transaction of the partitions' previous owner is not decided yet: starting now could
     * redo what it is about to commit. Its producer or the broker's timeout settles it. */
    int64_t deadline = sl_clock_mono_ms() + 120000;
    while (rc == SL_EUNSTABLE && sl_clock_mono_ms() < deadline && !c->closing) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        rc = fetch_committed(c, added, committed);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t start = committed[i].offset >= 0 ? committed[i].offset : c->v.auto_offset_reset;
        rc = sl_consumer_add_partition(c, committed[i].topic, committed[i].partition, start);
    }
    free(committed);
    if (rc == 0)
        notify(c, SL_PARTITIONS_ASSIGNED, added);
    return rc;
}

/* One rebalance: join, sync, then revoke and take over what changed. */
static int rebalance(sl_consumer *c) {
    bool cooperative = sl_assignor_is_cooperative(c->v.assignor);
    if (!cooperative)
        give_up(c, NULL, SL_PARTITIONS_REVOKED);
    pthread_mutex_lock(&c->lock);
    c->joining = true;
    c->need_rejoin = false;
    pthread_mutex_unlock(&c->lock);

    join_answer ja;
    int rc = join(c, &ja);
    if (rc == SL_EUNKNOWNMEMBER || rc == SL_EGENERATION) {
        c->member_id[0] = '\0'; /* forgotten by the coordinator: join as a new member */
        rc = join(c, &ja);
    }
    sl_buf *encoded = NULL;
    if (rc == 0 && strcmp(ja.leader, ja.member_id) == 0) {
        encoded = calloc(ja.nmembers ? ja.nmembers : 1, sizeof(*encoded));
        rc = encoded ? lead(c, &ja, encoded) : SL_ENOMEM;
    }
    sl_partition_set mine = {0}, owned = {0}, revoked = {0}, added = {0};
    if (rc == 0) {
        snprintf(c->member_id, sizeof(c->member_id), "%s", ja.member_id);
        rc = sync_group(c, &ja, encoded, &mine);
    }
    for (size_t i = 0; encoded && i < ja.nmembers; i++)
        sl_buf_free(&encoded[i]);
    free(encoded);
    if (rc == 0)
        rc = owned_set(c, &owned);
    for (size_t i = 0; rc == 0 && i < owned.ntopics; i++)
        for (size_t j = 0; rc == 0 && j < owned.topics[i].n; j++)
            if (!sl_pset_contains(&mine, owned.topics[i].topic, owned.topics[i].partitions[j]))
                rc = sl_pset_add(&revoked, owned.topics[i].topic, owned.topics[i].partitions[j]);
    for (size_t i = 0; rc == 0 && i < mine.ntopics; i++)
        for (size_t j = 0; rc == 0 && j < mine.topics[i].n; j++)
            if (!sl_pset_contains(&owned, mine.topics[i].topic, mine.topics[i].partitions[j]))
                rc = sl_pset_add(&added, mine.topics[i].topic, mine.topics[i].partitions[j]);
    if (rc == 0) {
        pthread_mutex_lock(&c->lock);
        c->group_generation = ja.generation;
        c->joining = false;
        pthread_mutex_unlock(&c->lock);
        sl_debug("consumer", "group %s: generation %d, %zu partition%s assigned to %s",
                c->v.group_id, ja.generation, sl_pset_count(&mine),
                sl_pset_count(&mine) == 1 ? "" : "s", c->member_id);
        give_up(c, &revoked, SL_PARTITIONS_REVOKED);
        rc = take_over(c, &added);
        if (cooperative && sl_pset_count(&revoked) > 0) {
            /* What we gave up is waiting for its new owner: let the group hand it over. */
            pthread_mutex_lock(&c->lock);
            c->need_rejoin = true;
            pthread_mutex_unlock(&c->lock);
        }
    } else {
        pthread_mutex_lock(&c->lock);
        c->joining = false;
        c->need_rejoin = true; /* try again on the next poll */
        pthread_mutex_unlock(&c->lock);
    }
    sl_pset_free(&mine);
    sl_pset_free(&owned);
    sl_pset_free(&revoked);
    sl_pset_free(&added);
    join_answer_free(&ja);
    return rc;
}

/* ---- heartbeats ---- */

static int send_simple(sl_consumer *c, uint16_t api, int32_t generation, const char *member) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(c->coord);
    sl_cl_begin(&req, id, api, &pk);
    if (api == SL_API_HEARTBEAT) {
        msgpack_pack_array(&pk, 3);
        sl_mp_pack_str(&pk, c->v.group_id);
        msgpack_pack_int32(&pk, generation);
    } else {
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, c->v.group_id);
    }
    sl_mp_pack_str(&pk, member);
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    msgpack_unpacked_init(&up);
    int rc = group_call(c, &req, id, c->v.session_timeout_ms, &resp, &up, 2, &items, &n);
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

static void *heartbeat_main(void *arg) {
    sl_consumer *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->closing) {
        struct timespec ts = sl_clock_deadline(c->v.heartbeat_interval_ms);
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        if (c->closing)
            break;
        if (c->group_generation < 0 || c->joining || c->need_rejoin)
            continue;
        char member[300];
        int32_t generation = c->group_generation;
        snprintf(member, sizeof(member), "%s", c->member_id);
        bool stuck = sl_clock_mono_ms() - c->last_poll_ms > c->v.max_poll_interval_ms;
        pthread_mutex_unlock(&c->lock);
        int rc;
        if (stuck) {
            sl_warn("consumer", "group %s: poll was not called for max.poll.interval.ms (%d ms); "
                                "leaving the group so others take over",
                    c->v.group_id, c->v.max_poll_interval_ms);
            send_simple(c, SL_API_LEAVE_GROUP, 0, member);
            rc = SL_EUNKNOWNMEMBER;
        } else {
            rc = send_simple(c, SL_API_HEARTBEAT, generation, member);
        }
        pthread_mutex_lock(&c->lock);
        if (rc == SL_EREBALANCE) {
            c->need_rejoin = true;
        } else if (rc == SL_EUNKNOWNMEMBER || rc == SL_EGENERATION) {
            /* Expelled: what we hold may already be someone else's. */
            c->lost = true;
            c->need_rejoin = true;
            c->group_generation = -1;
            if (rc == SL_EUNKNOWNMEMBER)
                c->member_id[0] = '\0';
        }
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- the public entry points ---- */

int sl_consumer_subscribe(sl_consumer *c, const char *const *topics, size_t ntopics,
                          sl_rebalance_cb cb, void *opaque) {
    if (c->v.group_id[0] == '\0' || ntopics == 0 || c->grouped)
        return SL_EINVAL;
    pthread_mutex_lock(&c->lock);
    bool assigned = c->nasg > 0;
    pthread_mutex_unlock(&c->lock);
    if (assigned)
        return SL_EINVAL;
    if ((c->subscription = calloc(ntopics, sizeof(char *))) == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < ntopics; i++) {
        if ((c->subscription[i] = strdup(topics[i])) == NULL)
            return SL_ENOMEM;
        c->nsubscription++;
    }
    int rc = coord_connect(c);
    if (rc)
        return rc;
    c->rebalance_cb = cb;
    c->rebalance_opaque = opaque;
    c->group_generation = -1;
    c->need_rejoin = true;
    c->last_poll_ms = sl_clock_mono_ms();
    c->next_auto_commit_ms = c->last_poll_ms + c->v.auto_commit_interval_ms;
    if (pthread_create(&c->heartbeat, NULL, heartbeat_main, c) != 0)
        return SL_ENOMEM;
    c->heartbeat_running = true;
    c->grouped = true;
    return 0;
}

int sl_group_poll(sl_consumer *c) {
    int64_t now = sl_clock_mono_ms();
    pthread_mutex_lock(&c->lock);
    c->last_poll_ms = now;
    bool lost = c->lost, rejoin = c->need_rejoin, closed = c->closed;
    c->lost = false;
    pthread_mutex_unlock(&c->lock);
    if (closed)
        return SL_ECLOSED;
    if (lost) {
        sl_warn("consumer", "group %s: this member was expelled; its partitions are lost",
                c->v.group_id);
        give_up(c, NULL, SL_PARTITIONS_LOST);
    }
    if (rejoin) {
        int rc = rebalance(c);
        if (rc == SL_ESTOPPED || rc == SL_EGROUPPROTOCOL || rc == SL_EINVAL) {
            sl_error("consumer", "group %s: cannot join: %s", c->v.group_id, sl_strerror(rc));
            return rc;
        }
        if (rc) {
            sl_debug("consumer", "group %s: rebalance failed (%s); retrying", c->v.group_id,
                     sl_strerror(rc));
            struct timespec pause = {0, 100 * 1000000};
            nanosleep(&pause, NULL);
        }
    }
    if (c->v.auto_commit && now >= c->next_auto_commit_ms && c->group_generation >= 0) {
        c->next_auto_commit_ms = now + c->v.auto_commit_interval_ms;
        sl_consumer_commit(c, 1);
    }
    return 0;
}

int sl_group_close(sl_consumer *c) {
    pthread_mutex_lock(&c->lock);
    bool done = c->closed;
    c->closed = true;
    int32_t generation = c->group_generation;
    pthread_mutex_unlock(&c->lock);
    if (done)
        return 0;
    if (generation >= 0) {
        give_up(c, NULL, SL_PARTITIONS_REVOKED);
        send_simple(c, SL_API_LEAVE_GROUP, 0, c->member_id);
    }
    return 0;
}

void sl_group_destroy(sl_consumer *c) {
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (c->heartbeat_running)
        pthread_join(c->heartbeat, NULL);
    c->heartbeat_running = false;
    if (c->coord)
        sl_rpc_close(c->coord);
    c->coord = NULL;
}

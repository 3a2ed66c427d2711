#include "cluster/node.h"

#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mp.h"
#include "net/native.h"
#include "net/rpc.h"
#include "sluice/err.h"

#define HEARTBEAT_MS 300
/* How long a heartbeat's answer lets the node lead: less than the controller's session
 * timeout (3 s), counted from the send, so the lease always ends before the controller can
 * fence the node and elect other leaders. */
#define LEASE_MS 2000
#define ISR_PER_ROUND 16 /* ISR changes sent between two heartbeats */
#define CALL_TIMEOUT_MS 3000
#define CONNECT_TIMEOUT_MS 1000
#define FETCH_WAIT_MS 500
#define FETCH_MAX_BYTES (8 << 20)
#define MAX_FOLLOWERS 16
#define ISR_QUEUE_MAX 1024

typedef struct isr_request {
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
    sl_partition_state state;
} isr_request;

/* A connection to another node that follows it to a new address. */
typedef struct peer_conn {
    sl_rpc *rpc;
    char url[256];
} peer_conn;

typedef struct follower {
    struct sl_node *node;
    int32_t leader;
    pthread_t thread;
} follower;

struct sl_node {
    sl_cluster *cluster;
    sl_broker *broker;
    int32_t id;
    char url[256];
    char kafka[128];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    pthread_t channel;
    isr_request *isr_queue; /* under lock */
    size_t nisr;
    follower followers[MAX_FOLLOWERS];
    size_t nfollowers; /* under lock */
};

/* ---- talking to other nodes ---- */

static void peer_close(peer_conn *pc) {
    if (pc->rpc)
        sl_rpc_close(pc->rpc);
    pc->rpc = NULL;
    pc->url[0] = '\0';
}

static int peer_ensure(peer_conn *pc, const char *url) {
    if (pc->rpc && (strcmp(pc->url, url) != 0 || sl_rpc_is_closed(pc->rpc)))
        peer_close(pc);
    if (pc->rpc)
        return 0;
    int rc = sl_rpc_connect(url, CONNECT_TIMEOUT_MS, &pc->rpc);
    if (rc == 0)
        snprintf(pc->url, sizeof(pc->url), "%s", url);
    return rc;
}

static void begin(sl_buf *b, uint32_t id, uint16_t api, msgpack_packer *pk) {
    b->len = 0;
    sl_rpc_frame_begin(b, id);
    uint8_t a[2];
    sl_be16_put(a, api);
    sl_buf_append(b, a, 2);
    sl_mp_packer_init(pk, b);
}

/* Sends the request in 'req' and decodes the answer into 'up': its status (message into
 * errbuf), or a transport error (the connection is then closed). */
static int call(peer_conn *pc, sl_buf *req, uint32_t id, int timeout_ms, sl_buf *resp,
                msgpack_unpacked *up, const msgpack_object **items, size_t *n, char *errbuf,
                size_t errlen) {
    sl_rpc_frame_end(req);
    resp->len = 0;
    int rc = sl_rpc_call(pc->rpc, id, req->data, req->len, timeout_ms, resp);
    if (rc) {
        snprintf(errbuf, errlen, "%s: %s", pc->url, sl_strerror(rc));
        peer_close(pc);
        return rc;
    }
    int status;
    if (sl_native_decode_response(resp->data, resp->len, up, 2, items, n, &status, errbuf,
                                  errlen)) {
        snprintf(errbuf, errlen, "%s: malformed answer", pc->url);
        peer_close(pc);
        return SL_EPROTO;
    }
    return status;
}

/* The controller's address; SL_ENOTLEADER when there is none right now. */
static int controller_url(sl_node *n, char *url, size_t len, int32_t *id) {
    *id = sl_cluster_controller(n->cluster);
    if (*id == 0 || sl_cluster_member_url(n->cluster, *id, url, len) != 0)
        return SL_ENOTLEADER;
    return 0;
}

/* ---- the controller channel ---- */

/* Writes a request's body. */
typedef void (*pack_fn)(msgpack_packer *pk, const void *arg);

/* One request to another node and its status (a message into errbuf); '*value', when not
 * NULL, gets the answer's integer after the status and message. */
static int request(peer_conn *pc, uint16_t api, pack_fn pack, const void *arg, int timeout_ms,
                   int64_t *value, char *errbuf, size_t errlen) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t ni;
    uint32_t id = sl_rpc_next_id(pc->rpc);
    begin(&req, id, api, &pk);
    pack(&pk, arg);
    msgpack_unpacked_init(&up);
    int rc = call(pc, &req, id, timeout_ms, &resp, &up, &items, &ni, errbuf, errlen);
    if (rc == 0 && value && (ni < 3 || sl_mp_int(&items[2], value)))
        rc = SL_EPROTO;
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

static void pack_heartbeat(msgpack_packer *pk, const void *arg) {
    const sl_node *n = arg;
    msgpack_pack_array(pk, 3);
    msgpack_pack_int32(pk, n->id);
    sl_mp_pack_str(pk, n->url);
    sl_mp_pack_str(pk, n->kafka);
}

static int send_heartbeat(sl_node *n, peer_conn *pc, uint64_t *applied) {
    char url[256], err[256];
    int32_t ctl;
    if (controller_url(n, url, sizeof(url), &ctl) != 0) {
        ctl = sl_cluster_controller(n->cluster);
        /* The controller itself may not have registered yet: its own heartbeat does it. */
        return ctl == n->id ? sl_cluster_heartbeat(n->cluster, n->id, n->url, n->kafka, applied)
                            : SL_ENOTLEADER;
    }
    if (ctl == n->id)
        return sl_cluster_heartbeat(n->cluster, n->id, n->url, n->kafka, applied);
    int rc = peer_ensure(pc, url);
    int64_t v = 0;
    if (rc == 0)
        rc = request(pc, SL_API_CLUSTER_REGISTER, pack_heartbeat, n, CALL_TIMEOUT_MS, &v, err,
                     sizeof(err));
    if (rc == 0 && v < 0)
        rc = SL_EPROTO;
    if (rc == 0)
        *applied = (uint64_t)v;
    return rc;
}

static void pack_isr(msgpack_packer *pk, const void *arg) {
    const isr_request *r = arg;
    const sl_partition_state *st = &r->state;
    msgpack_pack_array(pk, 6);
    sl_mp_pack_str(pk, r->topic);
    msgpack_pack_int32(pk, r->partition);
    msgpack_pack_int32(pk, st->leader);
    msgpack_pack_int32(pk, st->epoch);
    msgpack_pack_int32(pk, st->version);
    msgpack_pack_array(pk, (size_t)st->nisr);
    for (int32_t i = 0; i < st->nisr; i++)
        msgpack_pack_int32(pk, st->isr[i]);
}

static int send_isr(sl_node *n, peer_conn *pc, const isr_request *r) {
    char url[256], err[256];
    int32_t ctl;
    const sl_partition_state *st = &r->state;
    int rc = controller_url(n, url, sizeof(url), &ctl);
    if (rc == 0 && ctl == n->id)
        return sl_cluster_alter_isr(n->cluster, r->topic, r->partition, st->leader, st->epoch,
                                    st->version, st->isr, (size_t)st->nisr);
    if (rc == 0)
        rc = peer_ensure(pc, url);
    if (rc == 0)
        rc = request(pc, SL_API_ALTER_ISR, pack_isr, r, CALL_TIMEOUT_MS, NULL, err, sizeof(err));
    return rc;
}

static void *follower_main(void *arg);

/* A follower for every other registered broker (they may lead partitions this node holds). */
static void start_followers(sl_node *n) {
    sl_cluster_member *m;
    size_t count, voters;
    int32_t leader;
    if (sl_cluster_members(n->cluster, &m, &count, &leader, &voters) != 0)
        return;
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < count && !n->stop; i++) {
        bool have = m[i].id == n->id;
        for (size_t k = 0; k < n->nfollowers && !have; k++)
            have = n->followers[k].leader == m[i].id;
        if (have || n->nfollowers == MAX_FOLLOWERS)
            continue;
        follower *f = &n->followers[n->nfollowers];
        f->node = n;
        f->leader = m[i].id;
        if (pthread_create(&f->thread, NULL, follower_main, f) == 0)
            n->nfollowers++;
    }
    pthread_mutex_unlock(&n->lock);
    free(m);
}

static void *channel_main(void *arg) {
    sl_node *n = arg;
    peer_conn pc = {0};
    bool registered = false;
    int64_t last_ok = sl_clock_mono_ms(), last_warn = 0, last_lapse = 0;
    pthread_mutex_lock(&n->lock);
    while (!n->stop) {
        /* ISR changes first (a leader waits on them to ack acks=all writes), a few a round so
         * the heartbeat that keeps this node alive is never starved. */
        for (int sent_isr = 0; n->nisr > 0 && !n->stop && sent_isr < ISR_PER_ROUND; sent_isr++) {
            isr_request r = n->isr_queue[0];
            memmove(n->isr_queue, n->isr_queue + 1, (n->nisr - 1) * sizeof(r));
            n->nisr--;
            pthread_mutex_unlock(&n->lock);
            int rc = send_isr(n, &pc, &r);
            if (rc && rc != SL_EFENCED) /* fenced: the leader learns the newer state */
                sl_debug("node", "ISR change of %s-%d not made: %s", r.topic, r.partition,
                         sl_strerror(rc));
            pthread_mutex_lock(&n->lock);
        }
        pthread_mutex_unlock(&n->lock);
        uint64_t applied = 0;
        int wake = 0;
        int64_t sent = sl_clock_mono_ms();
        int rc = send_heartbeat(n, &pc, &applied);
        int64_t now = sl_clock_mono_ms();
        if (rc == 0) {
            last_ok = now;
            if (!registered)
                sl_info("node", "registered in the cluster as broker %" PRId32 " at %s", n->id,
                        n->url);
            registered = true;
            if (sl_cluster_applied(n->cluster) >= applied)
                sl_broker_renew_lease(n->broker, sent + LEASE_MS);
            else
                wake = 20; /* catching up: look again soon */
            start_followers(n);
        } else if (now - last_ok > LEASE_MS && last_ok >= last_lapse) {
            sl_warn("node", "no answer from the controller for %" PRId64 " ms: leading nothing "
                    "until it answers (it may have moved this node's partitions)",
                    now - last_ok);
            last_lapse = now;
        } else if (now - last_ok > 10000 && now - last_warn > 10000) {
            sl_warn("node", "no heartbeat reached the controller for %" PRId64 " s (%s)",
                    (now - last_ok) / 1000,
                    rc == SL_ENOTLEADER ? "the metadata quorum has no leader" : sl_strerror(rc));
            last_warn = now;
        }
        pthread_mutex_lock(&n->lock);
        if (!n->stop && n->nisr == 0) {
            struct timespec ts = sl_clock_deadline(wake ? wake
                                                   : rc == 0 && registered ? HEARTBEAT_MS
                                                                           : 100);
            pthread_cond_timedwait(&n->cond, &n->lock, &ts);
        }
    }
    pthread_mutex_unlock(&n->lock);
    peer_close(&pc);
    return NULL;
}

static void isr_propose(void *arg, const char *topic, int32_t partition,
                        const sl_partition_state *proposed) {
    sl_node *n = arg;
    pthread_mutex_lock(&n->lock);
    if (n->nisr < ISR_QUEUE_MAX) { /* else dropped: the leader asks again a second later */
        isr_request *r = &n->isr_queue[n->nisr++];
        snprintf(r->topic, sizeof(r->topic), "%s", topic);
        r->partition = partition;
        r->state = *proposed;
        pthread_cond_broadcast(&n->cond);
    }
    pthread_mutex_unlock(&n->lock);
}

/* ---- following ---- */

/* One answer's partition: check, cut or append. Returns whether it made progress. */
static bool take_part(sl_node *n, const sl_followed *f, const msgpack_object *a, size_t na) {
    int64_t status, hw, log_start, div_epoch, div_end;
    if (na < 8 || sl_mp_int(&a[2], &status) || sl_mp_int(&a[3], &hw) ||
        sl_mp_int(&a[4], &log_start) || sl_mp_int(&a[5], &div_epoch) ||
        sl_mp_int(&a[6], &div_end) || a[7].type != MSGPACK_OBJECT_BIN)
        return false;
    if (status == SL_ERANGE && f->log_end < log_start)
        /* Retention on the leader deleted what this replica lacks: start over at its start. */
        return sl_broker_replica_reset(n->broker, f->topic, f->partition, f->epoch,
                                       log_start) == 0;
    if (status)
        return false; /* not the leader yet, or a newer epoch: metadata will tell */
    if (div_end >= 0) {
        /* The logs part: cut where both agree the newest common epoch ends. */
        int32_t own_epoch;
        int64_t own_end;
        if (sl_broker_epoch_end(n->broker, f->topic, f->partition, (int32_t)div_epoch,
                                &own_epoch, &own_end) == 0)
            sl_broker_replica_truncate(n->broker, f->topic, f->partition, f->epoch,
                                       own_end < div_end ? own_end : div_end);
        return true; /* checked again on the next fetch */
    }
    if (!f->checked)
        sl_broker_replica_checked(n->broker, f->topic, f->partition, f->epoch);
    int rc = sl_broker_replica_append(n->broker, f->topic, f->partition, f->epoch,
                                      (const uint8_t *)a[7].via.bin.ptr, a[7].via.bin.size, hw);
    if (rc && rc != SL_EFENCED)
        sl_warn("node", "%s-%d: cannot append the leader's batches: %s", f->topic, f->partition,
                sl_strerror(rc));
    return rc == 0;
}

static int fetch_once(sl_node *n, peer_conn *pc, const sl_followed *list, size_t count) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *parts;
    size_t ni, np;
    char err[256];
    uint32_t id = sl_rpc_next_id(pc->rpc);
    begin(&req, id, SL_API_REPLICA_FETCH, &pk);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int32(&pk, n->id);
    msgpack_pack_int(&pk, FETCH_WAIT_MS);
    msgpack_pack_int(&pk, FETCH_MAX_BYTES);
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < count; i++) {
        const sl_followed *f = &list[i];
        msgpack_pack_array(&pk, 5);
        sl_mp_pack_str(&pk, f->topic);
        msgpack_pack_int32(&pk, f->partition);
        msgpack_pack_int32(&pk, f->epoch);
        msgpack_pack_int64(&pk, f->log_end);
        msgpack_pack_int32(&pk, f->checked || f->last_epoch < 0 ? -1 : f->last_epoch);
    }
    msgpack_unpacked_init(&up);
    int rc = call(pc, &req, id, FETCH_WAIT_MS + CALL_TIMEOUT_MS, &resp, &up, &items, &ni, err,
                  sizeof(err));
    if (rc == 0 && (ni < 3 || sl_mp_array(&items[2], 0, &parts, &np) || np != count))
        rc = SL_EPROTO;
    size_t progressed = 0;
    for (size_t i = 0; rc == 0 && i < np; i++) {
        const msgpack_object *a;
        size_t na;
        if (sl_mp_array(&parts[i], 8, &a, &na) == 0 && take_part(n, &list[i], a, na))
            progressed++;
    }
    if (rc == 0 && progressed == 0)
        rc = SL_ERETRY; /* every partition refused (an election under way): pause */
    if (rc && rc != SL_ECLOSED && rc != SL_ERETRY)
        sl_debug("node", "replica fetch from %s: %s", pc->url, err);
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

static bool stopping(sl_node *n, int64_t wait_ms) {
    pthread_mutex_lock(&n->lock);
    if (!n->stop && wait_ms > 0) {
        struct timespec ts = sl_clock_deadline(wait_ms);
        pthread_cond_timedwait(&n->cond, &n->lock, &ts);
    }
    bool stop = n->stop;
    pthread_mutex_unlock(&n->lock);
    return stop;
}

static void *follower_main(void *arg) {
    follower *fw = arg;
    sl_node *n = fw->node;
    peer_conn pc = {0};
    int64_t wait = 0;
    while (!stopping(n, wait)) {
        sl_followed *list = NULL;
        size_t count = 0;
        char url[256];
        wait = 100;
        if (sl_broker_followed(n->broker, fw->leader, &list, &count) != 0 || count == 0 ||
            sl_cluster_member_url(n->cluster, fw->leader, url, sizeof(url)) != 0 ||
            peer_ensure(&pc, url) != 0) {
            free(list);
            continue;
        }
        if (fetch_once(n, &pc, list, count) == 0)
            wait = 0; /* the leader long-polls: ask again at once */
        free(list);
    }
    peer_close(&pc);
    return NULL;
}

/* ---- admin, through the controller ---- */

/* A topic admin request as the controller takes it. */
typedef struct admin_request {
    uint16_t api;
    const char *name;
    int32_t partitions, replication;
    const sl_config_kv *configs;
    size_t nconfigs;
} admin_request;

static void pack_admin(msgpack_packer *pk, const void *arg) {
    const admin_request *a = arg;
    msgpack_pack_array(pk, a->api == SL_API_CREATE_TOPIC ? 4 : a->api == SL_API_ALTER_TOPIC ? 2
                                                                                          : 1);
    sl_mp_pack_str(pk, a->name);
    if (a->api == SL_API_CREATE_TOPIC)
        msgpack_pack_int32(pk, a->partitions);
    if (a->api != SL_API_DELETE_TOPIC) {
        msgpack_pack_map(pk, a->nconfigs);
        for (size_t i = 0; i < a->nconfigs; i++) {
            sl_mp_pack_str(pk, a->configs[i].key);
            sl_mp_pack_str(pk, a->configs[i].value);
        }
    }
    if (a->api == SL_API_CREATE_TOPIC)
        msgpack_pack_int32(pk, a->replication);
}

/* One request to the controller, on a connection of its own (admin is rare). */
static int to_controller(sl_node *n, uint16_t api, pack_fn pack, const void *arg, int64_t *value,
                         char *errbuf, size_t errlen) {
    char url[256];
    int32_t ctl;
    if (controller_url(n, url, sizeof(url), &ctl) != 0 || ctl == n->id) {
        snprintf(errbuf, errlen, "the cluster has no controller right now: try again");
        return SL_ENOTLEADER;
    }
    peer_conn pc = {0};
    int rc = peer_ensure(&pc, url);
    if (rc) {
        snprintf(errbuf, errlen, "cannot reach the controller at %s: %s", url, sl_strerror(rc));
        return rc;
    }
    rc = request(&pc, api, pack, arg, 10000, value, errbuf, errlen);
    peer_close(&pc);
    return rc;
}

static int forward_admin(sl_node *n, const admin_request *a, char *errbuf, size_t errlen) {
    return to_controller(n, a->api, pack_admin, a, NULL, errbuf, errlen);
}

static void pack_empty(msgpack_packer *pk, const void *arg) {
    (void)arg;
    msgpack_pack_array(pk, 0);
}

int sl_node_rebalance(sl_node *n, int32_t *moving, char *errbuf, size_t errlen) {
    int rc = sl_cluster_rebalance(n->cluster, moving, errbuf, errlen);
    if (rc != SL_ENOTLEADER)
        return rc;
    int64_t v = 0;
    rc = to_controller(n, SL_API_CLUSTER_REBALANCE, pack_empty, NULL, &v, errbuf, errlen);
    *moving = (int32_t)v;
    return rc;
}

/* After a change made on the controller, this node's own image catches up within a moment:
 * wait for it, so the client that asked here sees what it did. */
static void await_topic(sl_node *n, const char *name, bool present) {
    for (int i = 0; i < 150; i++) {
        int32_t count;
        if ((sl_broker_partition_count(n->broker, name, &count) == 0) == present)
            return;
        if (stopping(n, 20))
            return;
    }
}

/* Runs a topic change on the controller: here when this node is it, else forwarded. A
 * controller just elected takes a moment to take control, and an election a moment without
 * one: retried for a few seconds rather than failed. */
static int on_controller(sl_node *n, const admin_request *a, char *errbuf, size_t errlen) {
    int64_t deadline = sl_clock_mono_ms() + 3000;
    for (;;) {
        int rc;
        if (a->api == SL_API_CREATE_TOPIC)
            rc = sl_cluster_create_topic(n->cluster, a->name, a->partitions, a->replication,
                                         a->configs, a->nconfigs, errbuf, errlen);
        else if (a->api == SL_API_DELETE_TOPIC)
            rc = sl_cluster_delete_topic(n->cluster, a->name, errbuf, errlen);
        else
            rc = sl_cluster_alter_topic(n->cluster, a->name, a->configs, a->nconfigs, errbuf,
                                        errlen);
        if (rc == SL_ENOTLEADER)
            rc = forward_admin(n, a, errbuf, errlen);
        if (rc != SL_ENOTLEADER || sl_clock_mono_ms() >= deadline || stopping(n, 50))
            return rc;
    }
}

static int admin_create(void *arg, const char *name, int32_t partitions, int32_t replication,
                        const sl_config_kv *configs, size_t nconfigs, char *errbuf,
                        size_t errlen) {
    sl_node *n = arg;
    admin_request a = {SL_API_CREATE_TOPIC, name, partitions, replication, configs, nconfigs};
    int rc = on_controller(n, &a, errbuf, errlen);
    if (rc == 0)
        await_topic(n, name, true);
    return rc;
}

static int admin_remove(void *arg, const char *name, char *errbuf, size_t errlen) {
    sl_node *n = arg;
    admin_request a = {SL_API_DELETE_TOPIC, name, 0, 0, NULL, 0};
    int rc = on_controller(n, &a, errbuf, errlen);
    if (rc == 0)
        await_topic(n, name, false);
    return rc;
}

static int admin_alter(void *arg, const char *name, const sl_config_kv *configs, size_t nconfigs,
                       char *errbuf, size_t errlen) {
    admin_request a = {SL_API_ALTER_TOPIC, name, 0, 0, configs, nconfigs};
    return on_controller(arg, &a, errbuf, errlen);
}

/* ---- start and stop ---- */

int sl_node_start(const sl_node_conf *conf, sl_node **out) {
    sl_node *n = calloc(1, sizeof(*n));
    if (n == NULL || (n->isr_queue = calloc(ISR_QUEUE_MAX, sizeof(*n->isr_queue))) == NULL) {
        free(n);
        return SL_ENOMEM;
    }
    n->cluster = conf->cluster;
    n->broker = conf->broker;
    n->id = conf->node_id;
    snprintf(n->url, sizeof(n->url), "%s", conf->url);
    snprintf(n->kafka, sizeof(n->kafka), "%s", conf->kafka ? conf->kafka : "");
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    sl_admin_hook admin = {admin_create, admin_remove, admin_alter, n};
    sl_isr_hook isr = {isr_propose, n};
    sl_broker_set_admin_hook(n->broker, &admin);
    sl_broker_set_isr_hook(n->broker, &isr);
    if (pthread_create(&n->channel, NULL, channel_main, n) != 0) {
        pthread_mutex_destroy(&n->lock);
        pthread_cond_destroy(&n->cond);
        free(n->isr_queue);
        free(n);
        return SL_ENOMEM;
    }
    *out = n;
    return 0;
}

void sl_node_stop(sl_node *n) {
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->lock);
    n->stop = true;
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->channel, NULL);
    /* No follower starts once 'stop' is set (start_followers checks it under the lock). */
    for (size_t i = 0; i < n->nfollowers; i++)
        pthread_join(n->followers[i].thread, NULL);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    free(n->isr_queue);
    free(n);
}

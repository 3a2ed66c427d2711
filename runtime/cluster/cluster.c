#include "cluster/cluster.h"

#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/murmur2.h"
#include "cluster/quorum.h"
#include "sluice/err.h"

#define MAX_CONTROLLERS 16
#define PROPOSE_TIMEOUT_MS 3000
#define CONTROLLER_TICK_MS 200
#define DEFAULT_SESSION_MS 3000

/* Where a partition's replicas are being moved (n 0: nowhere). */
typedef struct ctarget {
    int32_t n;
    int32_t ids[SL_MAX_REPLICAS];
} ctarget;

/* The image of the metadata log: topics and where their partitions live. */
typedef struct ctopic {
    char *name;
    uint64_t id;
    int32_t npartitions;
    sl_partition_state *parts;
    ctarget *targets;
    sl_config_kv *configs; /* the overrides */
    size_t nconfigs;
    struct ctopic *next;
} ctopic;

struct sl_cluster {
    int32_t node_id;
    sl_broker *broker;
    sl_quorum *quorum;
    int64_t session_ms;
    int32_t default_replication;
    size_t voters;
    int32_t voter_ids[MAX_CONTROLLERS];
    pthread_mutex_t lock; /* the image, the registry and the controller's view */
    sl_cluster_member *members;
    size_t nmembers, cap;
    ctopic *topics;
    /* The controller's view (meaningful while this node leads the quorum). */
    bool controlling;
    int64_t last_seen[MAX_CONTROLLERS]; /* by voter index, monotonic ms */
    bool fenced[MAX_CONTROLLERS];
    pthread_mutex_t admin_lock; /* topic changes: checked then proposed, one at a time */
    pthread_t thread;
    pthread_cond_t cond;
    bool stop;
};

static int voter_index(const sl_cluster *c, int32_t id) {
    for (size_t i = 0; i < c->voters; i++)
        if (c->voter_ids[i] == id)
            return (int)i;
    return -1;
}

static ctopic *find_ctopic(sl_cluster *c, const char *name) {
    for (ctopic *t = c->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static void ctopic_free(ctopic *t) {
    for (size_t i = 0; i < t->nconfigs; i++) {
        free(t->configs[i].key);
        free(t->configs[i].value);
    }
    free(t->configs);
    free(t->parts);
    free(t->targets);
    free(t->name);
    free(t);
}

/* ---- applying the log (on the quorum's thread, on every node, in log order) ---- */

static void apply_member(sl_cluster *c, const sl_cluster_member *m) {
    pthread_mutex_lock(&c->lock);
    size_t i = 0;
    while (i < c->nmembers && c->members[i].id < m->id)
        i++;
    bool changed = true;
    if (i < c->nmembers && c->members[i].id == m->id) {
        changed = strcmp(c->members[i].url, m->url) != 0 ||
                  strcmp(c->members[i].kafka, m->kafka) != 0;
        c->members[i] = *m;
    } else {
        if (c->nmembers == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 8;
            sl_cluster_member *p = realloc(c->members, cap * sizeof(*p));
            if (p == NULL) {
                pthread_mutex_unlock(&c->lock);
                sl_error("cluster", "out of memory registering broker %" PRId32, m->id);
                return;
            }
            c->members = p;
            c->cap = cap;
        }
        memmove(c->members + i + 1, c->members + i, (c->nmembers - i) * sizeof(*m));
        c->members[i] = *m;
        c->nmembers++;
    }
    pthread_mutex_unlock(&c->lock);
    if (changed)
        sl_info("cluster", "broker %" PRId32 " is at %s", m->id, m->url);
}

/* Takes the record's arrays into the image. */
static void apply_topic(sl_cluster *c, sl_cluster_record *r) {
    pthread_mutex_lock(&c->lock);
    ctopic *t = find_ctopic(c, r->name) ? NULL : calloc(1, sizeof(*t));
    if (t && (t->name = strdup(r->name)) != NULL &&
        (t->targets = calloc((size_t)r->npartitions, sizeof(*t->targets))) != NULL) {
        t->npartitions = r->npartitions;
        t->id = r->topic_id;
        t->parts = r->parts;
        t->configs = r->configs;
        t->nconfigs = r->nconfigs;
        r->parts = NULL;
        r->configs = NULL;
        r->nconfigs = 0;
        t->next = c->topics;
        c->topics = t;
    } else if (t) {
        free(t->name);
        free(t);
        t = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    /* Only this thread changes the image, so 't' stays valid without the lock. */
    if (t && sl_broker_apply_topic(c->broker, t->name, t->id, t->npartitions, t->configs,
                                   t->nconfigs, t->parts) != 0)
        sl_error("cluster", "cannot open the partitions of topic %s here", t->name);
}

static void apply_delete(sl_cluster *c, const char *name) {
    pthread_mutex_lock(&c->lock);
    ctopic *t = NULL;
    for (ctopic **pp = &c->topics; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            t = *pp;
            *pp = t->next;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (t) {
        ctopic_free(t);
        sl_broker_apply_delete(c->broker, name);
    }
}

static void apply_config(sl_cluster *c, sl_cluster_record *r) {
    pthread_mutex_lock(&c->lock);
    ctopic *t = find_ctopic(c, r->name);
    if (t) {
        sl_config_kv *old = t->configs;
        size_t nold = t->nconfigs;
        t->configs = r->configs;
        t->nconfigs = r->nconfigs;
        r->configs = old;
        r->nconfigs = nold;
    }
    pthread_mutex_unlock(&c->lock);
    if (t)
        sl_broker_apply_config(c->broker, t->name, t->configs, t->nconfigs);
}

static bool state_has(const int32_t *ids, int32_t n, int32_t id) {
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* A change is taken only over the version it was made from, so of two proposals made from the
 * same state (the controller's and a leader's, say) the second is dropped on every node. */
static void apply_partition(sl_cluster *c, const sl_cluster_record *r) {
    pthread_mutex_lock(&c->lock);
    ctopic *t = find_ctopic(c, r->name);
    sl_partition_state *st = t && r->partition < t->npartitions ? &t->parts[r->partition] : NULL;
    const sl_partition_state *reps = r->has_replicas ? &r->state : st;
    bool ok = st && r->state.version > st->version && r->state.epoch >= st->epoch &&
              (r->state.leader == -1 || state_has(r->state.isr, r->state.nisr, r->state.leader));
    for (int32_t i = 0; ok && i < r->state.nisr; i++)
        ok = state_has(reps->replicas, reps->nreplicas, r->state.isr[i]);
    sl_partition_state next;
    if (ok) {
        next = *st;
        next.leader = r->state.leader;
        next.epoch = r->state.epoch;
        next.version = r->state.version;
        next.nisr = r->state.nisr;
        memcpy(next.isr, r->state.isr, sizeof(next.isr));
        if (r->has_replicas) {
            next.nreplicas = r->state.nreplicas;
            memcpy(next.replicas, r->state.replicas, sizeof(next.replicas));
        }
        *st = next;
        if (r->has_target) {
            ctarget *target = &t->targets[r->partition];
            target->n = r->ntarget;
            memcpy(target->ids, r->target, sizeof(target->ids));
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (ok)
        sl_broker_apply_partition(c->broker, r->name, r->partition, &next);
}

static void apply(void *arg, const uint8_t *data, size_t len) {
    sl_cluster *c = arg;
    sl_cluster_record r;
    if (sl_cluster_decode_record(data, len, &r) != 0) {
        sl_warn("cluster", "a metadata record of %zu bytes is not understood: skipped", len);
        return;
    }
    switch (r.type) {
    case SL_CREC_BROKER: apply_member(c, &r.member); break;
    case SL_CREC_TOPIC: apply_topic(c, &r); break;
    case SL_CREC_DELETE: apply_delete(c, r.name); break;
    case SL_CREC_CONFIG: apply_config(c, &r); break;
    case SL_CREC_PARTITION: apply_partition(c, &r); break;
    }
    sl_cluster_record_free(&r);
}

static int propose(sl_cluster *c, const sl_cluster_record *r) {
    sl_buf b = SL_BUF_INIT;
    int rc = sl_cluster_encode_record(r, &b);
    if (rc == 0)
        rc = sl_quorum_propose(c->quorum, b.data, b.len, PROPOSE_TIMEOUT_MS);
    sl_buf_free(&b);
    return rc;
}

/* This node leads the quorum and its image is whole (control() committed an entry of its own
 * term): it may decide. */
static bool in_control(sl_cluster *c) {
    pthread_mutex_lock(&c->lock);
    bool yes = c->controlling;
    pthread_mutex_unlock(&c->lock);
    return yes && sl_quorum_leader(c->quorum) == c->node_id;
}

/* Appends a partition record of 'topic'-'p' in state 'st' to a growing array; NULL when out of
 * memory. */
static sl_cluster_record *add_partition_record(sl_cluster_record **v, size_t *n, size_t *cap,
                                               const char *topic, int32_t p,
                                               const sl_partition_state *st) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        sl_cluster_record *nv = realloc(*v, c * sizeof(*nv));
        if (nv == NULL)
            return NULL;
        *v = nv;
        *cap = c;
    }
    sl_cluster_record *r = &(*v)[(*n)++];
    memset(r, 0, sizeof(*r));
    r->type = SL_CREC_PARTITION;
    snprintf(r->name, sizeof(r->name), "%s", topic);
    r->partition = p;
    r->state = *st;
    return r;
}

/* ---- the controller ---- */

static bool alive(const sl_cluster *c, int32_t id, int64_t now) {
    int i = voter_index(c, id);
    return i >= 0 && now - c->last_seen[i] < c->session_ms;
}

/* What a partition becomes with the live brokers: dead ones leave the ISR (never its last
 * member, which a clean election needs), and a dead or missing leader is replaced by the first
 * live member of the ISR at the next epoch. Lock held. */
static bool next_state(const sl_cluster *c, const sl_partition_state *st, int64_t now,
                       sl_partition_state *next) {
    *next = *st;
    next->nisr = 0;
    for (int32_t i = 0; i < st->nisr; i++)
        if (alive(c, st->isr[i], now))
            next->isr[next->nisr++] = st->isr[i];
    bool leader_ok = st->leader != -1 && alive(c, st->leader, now);
    if (!leader_ok) {
        next->leader = next->nisr > 0 ? next->isr[0] : -1;
        if (next->leader != st->leader)
            next->epoch = st->epoch + 1;
    }
    if (next->nisr == 0) { /* nobody in sync is alive: keep the ISR for when one returns */
        next->nisr = st->nisr;
        memcpy(next->isr, st->isr, sizeof(next->isr));
    }
    bool changed = next->leader != st->leader || next->nisr != st->nisr ||
                   memcmp(next->isr, st->isr, (size_t)st->nisr * sizeof(int32_t)) != 0;
    if (changed)
        next->version = st->version + 1;
    return changed;
}

/* A move whose target replicas are all in sync ends: the replicas become the target (the
 * others stop following), the first of them leads if it can, and the target is cleared. Lock
 * held. */
static bool finish_move(const sl_partition_state *st, const ctarget *target,
                        sl_partition_state *next) {
    if (target->n == 0)
        return false;
    for (int32_t i = 0; i < target->n; i++)
        if (!state_has(st->isr, st->nisr, target->ids[i]))
            return false; /* still catching up */
    *next = *st;
    next->nreplicas = target->n;
    memcpy(next->replicas, target->ids, sizeof(next->replicas));
    next->nisr = 0;
    for (int32_t i = 0; i < st->nisr; i++)
        if (state_has(target->ids, target->n, st->isr[i]))
            next->isr[next->nisr++] = st->isr[i];
    /* The preferred leader (the target's first) takes over, which spreads leaders evenly. */
    if (next->leader != target->ids[0]) {
        next->leader = target->ids[0];
        next->epoch = st->epoch + 1;
    }
    next->version = st->version + 1;
    return true;
}

static void control(sl_cluster *c) {
    bool leading = sl_quorum_leader(c->quorum) == c->node_id;
    int64_t now = sl_clock_mono_ms();
    pthread_mutex_lock(&c->lock);
    if (!leading) {
        c->controlling = false;
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (!c->controlling) {
        /* A new leader may not have applied everything committed before its term: commit an
         * entry of its own first (its registration again), after which its image is whole. */
        sl_cluster_record self = {.type = SL_CREC_BROKER, .member = {.id = c->node_id}};
        for (size_t i = 0; i < c->nmembers; i++)
            if (c->members[i].id == c->node_id)
                self.member = c->members[i];
        pthread_mutex_unlock(&c->lock);
        if (self.member.url[0] == '\0' || propose(c, &self) != 0)
            return; /* not registered yet (its heartbeat does it), or lost the lead: later */
        now = sl_clock_mono_ms();
        pthread_mutex_lock(&c->lock);
        /* Every broker gets a full session to show itself to a new controller. */
        c->controlling = true;
        for (size_t i = 0; i < c->voters; i++) {
            c->last_seen[i] = now;
            c->fenced[i] = false;
        }
        sl_info("cluster", "this node is the controller");
    }
    c->last_seen[voter_index(c, c->node_id)] = now;
    for (size_t i = 0; i < c->voters; i++) {
        bool dead = now - c->last_seen[i] >= c->session_ms;
        if (dead && !c->fenced[i])
            sl_info("cluster", "broker %" PRId32 " sent no heartbeat for %" PRId64 " ms: "
                    "fenced, its partitions move", c->voter_ids[i], now - c->last_seen[i]);
        else if (!dead && c->fenced[i])
            sl_info("cluster", "broker %" PRId32 " is back", c->voter_ids[i]);
        c->fenced[i] = dead;
    }
    size_t n = 0, cap = 0;
    sl_cluster_record *changes = NULL;
    for (ctopic *t = c->topics; t; t = t->next) {
        for (int32_t p = 0; p < t->npartitions; p++) {
            sl_partition_state next;
            bool done_moving = false;
            if (!next_state(c, &t->parts[p], now, &next) &&
                !(done_moving = finish_move(&t->parts[p], &t->targets[p], &next)))
                continue;
            sl_cluster_record *r = add_partition_record(&changes, &n, &cap, t->name, p, &next);
            if (r == NULL)
                break;
            r->has_replicas = r->has_target = done_moving;
            if (done_moving)
                sl_info("cluster", "%s-%d: moved, its replicas are now the %d asked for", t->name,
                        p, next.nreplicas);
            if (next.leader != t->parts[p].leader)
                sl_info("cluster", "%s-%d: leader %" PRId32 " -> %" PRId32 " at epoch %" PRId32,
                        t->name, p, t->parts[p].leader, next.leader, next.epoch);
        }
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++)
        if (propose(c, &changes[i]) != 0)
            break; /* not the leader any more, or stopping: the next tick sees */
    free(changes);
}

static void *controller_main(void *arg) {
    sl_cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        struct timespec ts = sl_clock_deadline(CONTROLLER_TICK_MS);
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->lock);
        control(c);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static bool url_ok(const char *url) {
    return url && strlen(url) < sizeof(((sl_cluster_member *)0)->url) &&
           (strncmp(url, "tcp://", 6) == 0 || strncmp(url, "ipc://", 6) == 0) &&
           strpbrk(url, "\"\\ \t\r\n") == NULL;
}

int sl_cluster_heartbeat(sl_cluster *c, int32_t id, const char *url, const char *kafka,
                         uint64_t *applied) {
    /* Every node is a controller: an id outside the quorum is nobody's, and a registration that
     * is not an address would break forwarding for every follower. */
    int vi = voter_index(c, id);
    if (vi < 0 || !url_ok(url) || (kafka && strlen(kafka) >= sizeof(c->members[0].kafka)))
        return SL_EINVAL;
    if (sl_quorum_leader(c->quorum) != c->node_id)
        return SL_ENOTLEADER;
    pthread_mutex_lock(&c->lock);
    c->last_seen[vi] = sl_clock_mono_ms();
    bool known = false;
    for (size_t i = 0; i < c->nmembers; i++)
        if (c->members[i].id == id)
            known = strcmp(c->members[i].url, url) == 0 &&
                    strcmp(c->members[i].kafka, kafka ? kafka : "") == 0;
    pthread_mutex_unlock(&c->lock);
    int rc = 0;
    if (!known) {
        sl_cluster_record r = {.type = SL_CREC_BROKER, .member = {.id = id}};
        snprintf(r.member.url, sizeof(r.member.url), "%s", url);
        snprintf(r.member.kafka, sizeof(r.member.kafka), "%s", kafka ? kafka : "");
        rc = propose(c, &r);
    }
    /* The controller's whole log (its commits among it): a broker, the controller included,
     * that has applied as far knows every committed change. */
    *applied = sl_quorum_last_index(c->quorum);
    return rc;
}

uint64_t sl_cluster_applied(sl_cluster *c) {
    return sl_quorum_applied(c->quorum);
}

int32_t sl_cluster_controller(sl_cluster *c) {
    return sl_quorum_leader(c->quorum);
}

/* ---- topics ---- */

/* The live brokers by id into 'live' (room for MAX_CONTROLLERS). Lock held. */
static size_t live_brokers(const sl_cluster *c, int64_t now, int32_t *live) {
    size_t n = 0;
    for (size_t i = 0; i < c->nmembers; i++) /* sorted by id */
        if (alive(c, c->members[i].id, now))
            live[n++] = c->members[i].id;
    return n;
}

/* Where partition 'p' of 'name' goes with 'replication' replicas on these brokers:
 * consecutive brokers from a point the name picks, so a partition's replicas are on different
 * brokers and leaders (the first replica) spread evenly. */
static void place(const char *name, int32_t p, int32_t replication, const int32_t *live,
                  size_t nlive, int32_t *out) {
    size_t start = sl_murmur2(name, strlen(name)) % nlive;
    for (int32_t k = 0; k < replication; k++)
        out[k] = live[(start + (size_t)p + (size_t)k) % nlive];
}

static bool same_set(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    if (na != nb)
        return false;
    for (int32_t i = 0; i < na; i++)
        if (!state_has(b, nb, a[i]))
            return false;
    return true;
}

int sl_cluster_create_topic(sl_cluster *c, const char *name, int32_t partitions,
                            int32_t replication, const sl_config_kv *configs, size_t nconfigs,
                            char *errbuf, size_t errlen) {
    bool internal = replication == SL_REPLICATION_INTERNAL;
    int rc = sl_broker_check_new_topic(name, internal, partitions, configs, nconfigs, errbuf,
                                       errlen);
    if (rc)
        return rc;
    if (!in_control(c))
        return SL_ENOTLEADER;
    if (replication <= 0 && !internal)
        replication = c->default_replication;
    /* Which incarnation of the name: its partition directories say, so replaying the log
     * through an earlier one never opens (nor deletes) a later one's data. */
    uint64_t id = ((uint64_t)sl_clock_wall_ms() << 16 | (sl_clock_mono_ns() & 0xffff)) & INT64_MAX;
    sl_cluster_record r = {.type = SL_CREC_TOPIC, .npartitions = partitions,
                           .topic_id = id ? id : 1};
    snprintf(r.name, sizeof(r.name), "%s", name);
    r.parts = calloc((size_t)partitions, sizeof(*r.parts));
    r.configs = (sl_config_kv *)configs;
    r.nconfigs = nconfigs;
    if (r.parts == NULL)
        return SL_ENOMEM;
    pthread_mutex_lock(&c->admin_lock);
    pthread_mutex_lock(&c->lock);
    int32_t live[MAX_CONTROLLERS];
    size_t nlive = live_brokers(c, sl_clock_mono_ms(), live);
    /* Kafka's offsets.topic.replication.factor: 3, or every node of a smaller cluster. A
     * forming cluster waits for them rather than keep its internal topics on fewer. */
    if (internal)
        replication = c->voters < 3 ? (int32_t)c->voters : 3;
    if (find_ctopic(c, name)) {
        snprintf(errbuf, errlen, "topic \"%s\" already exists", name);
        rc = SL_EEXIST;
    } else if (internal && (int32_t)nlive < replication) {
        snprintf(errbuf, errlen, "internal topic \"%s\" waits for %d live brokers (%zu now)",
                 name, replication, nlive);
        rc = SL_ENOTENOUGHREPLICAS;
    } else if (replication > (int32_t)nlive || replication > SL_MAX_REPLICAS) {
        snprintf(errbuf, errlen, "replication factor %d is more than the %zu live broker%s",
                 replication, nlive, nlive == 1 ? "" : "s");
        rc = SL_EINVAL;
    }
    pthread_mutex_unlock(&c->lock);
    if (rc == 0) {
        for (int32_t p = 0; p < partitions; p++) {
            r.parts[p].nreplicas = replication;
            place(name, p, replication, live, nlive, r.parts[p].replicas);
        }
        rc = propose(c, &r);
        if (rc == 0)
            sl_info("cluster", "created topic %s: %d partition%s, %d replica%s each", name,
                    partitions, partitions == 1 ? "" : "s", replication,
                    replication == 1 ? "" : "s");
    }
    pthread_mutex_unlock(&c->admin_lock);
    free(r.parts);
    return rc;
}

int sl_cluster_rebalance(sl_cluster *c, int32_t *moving, char *errbuf, size_t errlen) {
    if (!in_control(c))
        return SL_ENOTLEADER;
    pthread_mutex_lock(&c->admin_lock);
    pthread_mutex_lock(&c->lock);
    int32_t live[MAX_CONTROLLERS];
    size_t nlive = live_brokers(c, sl_clock_mono_ms(), live);
    size_t n = 0, cap = 0;
    sl_cluster_record *moves = NULL;
    int32_t pending = 0;
    int rc = 0;
    for (ctopic *t = c->topics; t && nlive > 0 && rc == 0; t = t->next) {
        for (int32_t p = 0; p < t->npartitions && rc == 0; p++) {
            const sl_partition_state *st = &t->parts[p];
            const ctarget *now_to = &t->targets[p];
            int32_t replication = now_to->n ? now_to->n : st->nreplicas;
            if (replication > (int32_t)nlive)
                replication = (int32_t)nlive;
            int32_t target[SL_MAX_REPLICAS];
            place(t->name, p, replication, live, nlive, target);
            bool in_place = same_set(target, replication, st->replicas, st->nreplicas);
            bool preferred = st->leader == target[0] ||
                             !state_has(st->isr, st->nisr, target[0]);
            if (now_to->n ? same_set(target, replication, now_to->ids, now_to->n)
                          : in_place && preferred) {
                pending += now_to->n > 0;
                continue;
            }
            sl_partition_state next = *st;
            if (in_place && now_to->n == 0) {
                /* Where it belongs, led by another replica: the preferred one (the first)
                 * takes over, which spreads leaders evenly. */
                memcpy(next.replicas, target, sizeof(next.replicas));
                next.leader = target[0];
                next.epoch = st->epoch + 1;
                replication = 0; /* no move: the target stays empty */
            }
            /* Else first the union, so the new replicas catch up while the old ones still
             * serve; the controller drops the old ones once the new ones are in sync. */
            for (int32_t k = 0; k < replication; k++)
                if (!state_has(next.replicas, next.nreplicas, target[k]) &&
                    next.nreplicas < SL_MAX_REPLICAS)
                    next.replicas[next.nreplicas++] = target[k];
            next.version = st->version + 1;
            sl_cluster_record *r = add_partition_record(&moves, &n, &cap, t->name, p, &next);
            if (r == NULL) {
                rc = SL_ENOMEM;
                break;
            }
            r->has_replicas = r->has_target = true;
            r->ntarget = replication;
            memcpy(r->target, target, sizeof(r->target));
            pending += replication > 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = propose(c, &moves[i]);
    pthread_mutex_unlock(&c->admin_lock);
    free(moves);
    if (rc)
        snprintf(errbuf, errlen, "cannot start moving replicas: %s", sl_strerror(rc));
    else if (n > 0)
        sl_info("cluster", "rebalance: %zu partition%s change over %zu brokers (%d moving)", n,
                n == 1 ? "" : "s", nlive, pending);
    *moving = pending;
    return rc;
}

int sl_cluster_delete_topic(sl_cluster *c, const char *name, char *errbuf, size_t errlen) {
    if (!in_control(c))
        return SL_ENOTLEADER;
    pthread_mutex_lock(&c->admin_lock);
    pthread_mutex_lock(&c->lock);
    bool exists = find_ctopic(c, name) != NULL;
    pthread_mutex_unlock(&c->lock);
    int rc = SL_ENOENT;
    if (exists) {
        sl_cluster_record r = {.type = SL_CREC_DELETE};
        snprintf(r.name, sizeof(r.name), "%s", name);
        rc = propose(c, &r);
    } else {
        snprintf(errbuf, errlen, "topic \"%s\" does not exist", name);
    }
    pthread_mutex_unlock(&c->admin_lock);
    return rc;
}

int sl_cluster_alter_topic(sl_cluster *c, const char *name, const sl_config_kv *configs,
                           size_t nconfigs, char *errbuf, size_t errlen) {
    for (size_t i = 0; i < nconfigs; i++) {
        int rc = sl_topic_config_check(configs[i].key, configs[i].value, errbuf, errlen);
        if (rc)
            return rc;
    }
    if (!in_control(c))
        return SL_ENOTLEADER;
    pthread_mutex_lock(&c->admin_lock);
    pthread_mutex_lock(&c->lock);
    ctopic *t = find_ctopic(c, name);
    /* The new overrides: the old ones with these set (a later key wins). */
    sl_cluster_record r = {.type = SL_CREC_CONFIG};
    snprintf(r.name, sizeof(r.name), "%s", name);
    int rc = t ? 0 : SL_ENOENT;
    size_t cap = (t ? t->nconfigs : 0) + nconfigs;
    r.configs = calloc(cap ? cap : 1, sizeof(*r.configs));
    if (rc == 0 && r.configs == NULL)
        rc = SL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < cap; i++) {
        const sl_config_kv *kv = i < t->nconfigs ? &t->configs[i] : &configs[i - t->nconfigs];
        size_t j = 0;
        while (j < r.nconfigs && strcmp(r.configs[j].key, kv->key) != 0)
            j++;
        if (j == r.nconfigs) {
            r.configs[j].key = strdup(kv->key);
            r.nconfigs++;
        }
        free(r.configs[j].value);
        r.configs[j].value = strdup(kv->value);
        if (r.configs[j].key == NULL || r.configs[j].value == NULL)
            rc = SL_ENOMEM;
    }
    pthread_mutex_unlock(&c->lock);
    if (rc == SL_ENOENT)
        snprintf(errbuf, errlen, "topic \"%s\" does not exist", name);
    if (rc == 0)
        rc = propose(c, &r);
    pthread_mutex_unlock(&c->admin_lock);
    sl_cluster_record_free(&r);
    return rc;
}

int sl_cluster_alter_isr(sl_cluster *c, const char *topic, int32_t partition, int32_t leader,
                         int32_t epoch, int32_t version, const int32_t *isr, size_t nisr) {
    if (!in_control(c))
        return SL_ENOTLEADER;
    if (nisr == 0 || nisr > SL_MAX_REPLICAS || !state_has(isr, (int32_t)nisr, leader))
        return SL_EINVAL;
    pthread_mutex_lock(&c->lock);
    ctopic *t = find_ctopic(c, topic);
    sl_partition_state *st = t && partition >= 0 && partition < t->npartitions
                                 ? &t->parts[partition]
                                 : NULL;
    int rc = st ? 0 : SL_ENOENT;
    if (st && (st->leader != leader || st->epoch != epoch || st->version != version))
        rc = SL_EFENCED;
    for (size_t i = 0; rc == 0 && i < nisr; i++)
        if (!state_has(st->replicas, st->nreplicas, isr[i]) ||
            (isr[i] != leader && !state_has(st->isr, st->nisr, isr[i]) &&
             !alive(c, isr[i], sl_clock_mono_ms())))
            rc = SL_EINVAL; /* a fenced broker does not rejoin before it heartbeats again */
    sl_cluster_record r = {.type = SL_CREC_PARTITION, .partition = partition};
    if (rc == 0) {
        snprintf(r.name, sizeof(r.name), "%s", topic);
        r.state = *st;
        r.state.version = version + 1;
        r.state.nisr = (int32_t)nisr;
        memcpy(r.state.isr, isr, nisr * sizeof(*isr));
    }
    pthread_mutex_unlock(&c->lock);
    if (rc == 0) {
        rc = propose(c, &r);
        if (rc == 0)
            sl_info("cluster", "%s-%d: ISR now has %zu of %d replicas", topic, partition, nisr,
                    r.state.nreplicas);
    }
    return rc;
}

/* ---- start and stop ---- */

int sl_cluster_start(const sl_cluster_conf *conf, sl_cluster **out, char *errbuf, size_t errlen) {
    sl_quorum_peer peers[MAX_CONTROLLERS];
    size_t n;
    int rc = sl_quorum_parse_peers(conf->controllers, peers, MAX_CONTROLLERS, &n, errbuf, errlen);
    if (rc)
        return rc;
    const sl_quorum_peer *self = NULL;
    for (size_t i = 0; i < n; i++)
        if (peers[i].id == conf->node_id)
            self = &peers[i];
    if (self == NULL) {
        snprintf(errbuf, errlen, "--controllers does not name this node (--node-id %" PRId32
                 "); every node of a cluster is a controller", conf->node_id);
        return SL_EINVAL;
    }
    if (conf->controller_listen && strcmp(conf->controller_listen, self->address) != 0) {
        snprintf(errbuf, errlen, "--controller-listen %s differs from this node's entry in "
                 "--controllers (%s)", conf->controller_listen, self->address);
        return SL_EINVAL;
    }
    sl_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SL_ENOMEM;
    c->node_id = conf->node_id;
    c->broker = conf->broker;
    c->session_ms = conf->session_timeout_ms > 0 ? conf->session_timeout_ms : DEFAULT_SESSION_MS;
    c->default_replication = conf->default_replication > 0 ? conf->default_replication : 1;
    c->voters = n;
    for (size_t i = 0; i < n; i++)
        c->voter_ids[i] = peers[i].id;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->admin_lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    char dir[4096], marker[4200];
    snprintf(dir, sizeof(dir), "%s/quorum", conf->data_dir);
    snprintf(marker, sizeof(marker), "%s/quorum.joined", conf->data_dir);
    /* A node that was a voter and lost its quorum files would bootstrap as a fresh voter with
     * no log and no vote, and could help elect a leader that lacks committed entries. */
    struct stat st;
    if (stat(marker, &st) == 0 && stat(dir, &st) != 0) {
        snprintf(errbuf, errlen, "%s is gone although this node has been a voter (%s): restore "
                 "it, or remove %s to join as a new voter knowing that risk", dir, marker,
                 marker);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->admin_lock);
        pthread_cond_destroy(&c->cond);
        free(c);
        return SL_EINVAL;
    }
    sl_quorum_conf qc = {conf->node_id, peers, n, dir, apply, c};
    rc = sl_quorum_start(&qc, &c->quorum, errbuf, errlen);
    if (rc == 0 && stat(marker, &st) != 0 &&
        sl_fs_write_atomic(marker, conf->controllers, strlen(conf->controllers)) != 0)
        sl_warn("cluster", "cannot write %s", marker);
    if (rc == 0 && pthread_create(&c->thread, NULL, controller_main, c) != 0) {
        sl_quorum_stop(c->quorum);
        rc = SL_ENOMEM;
    }
    if (rc) {
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->admin_lock);
        pthread_cond_destroy(&c->cond);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sl_cluster_stop(sl_cluster *c) {
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    sl_quorum_stop(c->quorum);
    while (c->topics) {
        ctopic *t = c->topics;
        c->topics = t->next;
        ctopic_free(t);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->admin_lock);
    pthread_cond_destroy(&c->cond);
    free(c->members);
    free(c);
}

int sl_cluster_members(sl_cluster *c, sl_cluster_member **out, size_t *n, int32_t *leader,
                       size_t *voters) {
    pthread_mutex_lock(&c->lock);
    *n = c->nmembers;
    *out = malloc((c->nmembers ? c->nmembers : 1) * sizeof(**out));
    if (*out && c->nmembers)
        memcpy(*out, c->members, c->nmembers * sizeof(**out));
    pthread_mutex_unlock(&c->lock);
    *leader = sl_quorum_leader(c->quorum);
    *voters = c->voters;
    return *out ? 0 : SL_ENOMEM;
}

int sl_cluster_member_url(sl_cluster *c, int32_t id, char *url, size_t len) {
    int rc = SL_ENOENT;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nmembers; i++) {
        if (c->members[i].id == id) {
            snprintf(url, len, "%s", c->members[i].url);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

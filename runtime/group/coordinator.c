#include "group/coordinator.h"

#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mp.h"
#include "base/mpcheck.h"
#include "base/murmur2.h"
#include "log/batch.h"
#include "sluice/err.h"

#define OFFSETS_PARTITIONS SL_OFFSETS_PARTITIONS
#define MIN_SESSION_MS 1000     /* group.min.session.timeout.ms (Kafka: 6000; tests want less) */
#define MAX_SESSION_MS 1800000  /* group.max.session.timeout.ms */
#define EXPIRY_TICK_MS 100      /* how often silent members and overdue rebalances are checked */
#define MAX_GROUP_ID 255
#define COMMIT_TIMEOUT_MS 5000  /* offsets.commit.timeout.ms */

enum group_state { EMPTY, PREPARING, COMPLETING, STABLE };
static const char *const state_names[] = {"Empty", "PreparingRebalance", "CompletingRebalance",
                                          "Stable"};

typedef struct proto {
    char *name;
    uint8_t *metadata;
    size_t len;
} proto;

typedef struct member {
    char *id, *client_id, *host;
    int32_t session_timeout_ms, rebalance_timeout_ms;
    proto *protocols;
    size_t nprotocols;
    uint8_t *assignment;
    size_t assignment_len;
    int64_t last_seen_ms; /* monotonic */
    bool joined;          /* has joined in the rebalance under way */
    struct member *next;
} member;

typedef struct offset_entry {
    char *topic;
    int32_t partition;
    int64_t offset;
    char *metadata;
    int64_t commit_ms;
} offset_entry;

typedef struct group {
    char *id;
    enum group_state state;
    int32_t generation;
    char *protocol_type;
    char *protocol;
    char *leader;
    member *members;
    int64_t rebalance_deadline_ms; /* monotonic, while PREPARING */
    uint64_t rebalance_seq;        /* bumped when a rebalance completes */
    uint64_t sync_seq;             /* bumped when the leader's assignment arrives */
    offset_entry *offsets;
    size_t noffsets, offcap;
    struct group *next;
} group;

/* An offset committed inside a transaction: it takes effect when the transaction commits. */
typedef struct pending_offset {
    int64_t pid;
    char *group, *topic, *metadata;
    char *member;       /* who committed it, in which generation (-1: a tool) */
    int32_t generation;
    int32_t partition;
    int64_t offset;
    struct pending_offset *next;
} pending_offset;

struct sl_coordinator {
    sl_broker *broker;
    pending_offset *pending; /* under 'lock' */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* join and sync waiters; broadcast on any group change */
    group *groups;
    bool stopping;
    pthread_t expiry;
    unsigned rand_state;
    /* In a cluster this node coordinates the groups of the partitions of __consumer_offsets it
     * leads: the leader epoch at which it loaded each one, -1 for those it does not hold. */
    bool clustered;
    int32_t loaded_epoch[OFFSETS_PARTITIONS];
};

/* ---- small helpers ---- */

static member *find_member(group *g, const char *id) {
    for (member *m = g->members; m; m = m->next)
        if (strcmp(m->id, id) == 0)
            return m;
    return NULL;
}

static size_t member_count(const group *g) {
    size_t n = 0;
    for (member *m = g->members; m; m = m->next)
        n++;
    return n;
}

static group *find_group(sl_coordinator *c, const char *id) {
    for (group *g = c->groups; g; g = g->next)
        if (strcmp(g->id, id) == 0)
            return g;
    return NULL;
}

static group *get_group(sl_coordinator *c, const char *id) {
    group *g = find_group(c, id);
    if (g || (g = calloc(1, sizeof(*g))) == NULL)
        return g;
    if ((g->id = strdup(id)) == NULL) {
        free(g);
        return NULL;
    }
    g->state = EMPTY;
    g->next = c->groups;
    c->groups = g;
    return g;
}

static void free_protocols(member *m) {
    for (size_t i = 0; i < m->nprotocols; i++) {
        free(m->protocols[i].name);
        free(m->protocols[i].metadata);
    }
    free(m->protocols);
    m->protocols = NULL;
    m->nprotocols = 0;
}

static void member_free(member *m) {
    free_protocols(m);
    free(m->id);
    free(m->client_id);
    free(m->host);
    free(m->assignment);
    free(m);
}

static void remove_member(group *g, member *gone) {
    for (member **pp = &g->members; *pp; pp = &(*pp)->next) {
        if (*pp == gone) {
            *pp = gone->next;
            member_free(gone);
            return;
        }
    }
}

static void group_free(group *g) {
    while (g->members) {
        member *m = g->members;
        g->members = m->next;
        member_free(m);
    }
    for (size_t i = 0; i < g->noffsets; i++) {
        free(g->offsets[i].topic);
        free(g->offsets[i].metadata);
    }
    free(g->offsets);
    free(g->protocol_type);
    free(g->protocol);
    free(g->leader);
    free(g->id);
    free(g);
}

static int copy_bytes(uint8_t **dst, size_t *dlen, const uint8_t *src, size_t len) {
    *dst = NULL;
    *dlen = 0;
    if (len == 0)
        return 0;
    if ((*dst = malloc(len)) == NULL)
        return SL_ENOMEM;
    memcpy(*dst, src, len);
    *dlen = len;
    return 0;
}

static bool member_supports(const member *m, const char *protocol) {
    for (size_t i = 0; i < m->nprotocols; i++)
        if (strcmp(m->protocols[i].name, protocol) == 0)
            return true;
    return false;
}

static const proto *member_protocol(const member *m, const char *protocol) {
    for (size_t i = 0; i < m->nprotocols; i++)
        if (strcmp(m->protocols[i].name, protocol) == 0)
            return &m->protocols[i];
    return NULL;
}

/* ---- the rebalance state machine (lock held) ---- */

static void prepare_rebalance(sl_coordinator *c, group *g) {
    int64_t timeout = 0;
    for (member *m = g->members; m; m = m->next)
        if (m->rebalance_timeout_ms > timeout)
            timeout = m->rebalance_timeout_ms;
    if (g->state != PREPARING)
        sl_info("group", "group %s is rebalancing (generation %d, %zu member%s)", g->id,
                g->generation, member_count(g), member_count(g) == 1 ? "" : "s");
    g->state = PREPARING;
    g->rebalance_deadline_ms = sl_clock_mono_ms() + timeout;
    pthread_cond_broadcast(&c->cond);
}

/* Ends the join phase: members that did not join again are dropped, the generation moves on,
 * a protocol every member supports is chosen, and join waiters are released. */
static void complete_rebalance(sl_coordinator *c, group *g) {
    for (member *m = g->members, *next; m; m = next) {
        next = m->next;
        if (!m->joined) {
            sl_info("group", "group %s: member %s did not rejoin in time and was removed", g->id,
                    m->id);
            remove_member(g, m);
        }
    }
    g->generation++;
    free(g->protocol);
    g->protocol = NULL;
    if (g->members == NULL) {
        g->state = EMPTY;
        free(g->leader);
        g->leader = NULL;
    } else {
        if (g->leader == NULL || find_member(g, g->leader) == NULL) {
            free(g->leader);
            g->leader = strdup(g->members->id);
        }
        /* The leader's first preference that everybody supports. */
        const member *lead = find_member(g, g->leader);
        for (size_t i = 0; lead && i < lead->nprotocols && g->protocol == NULL; i++) {
            bool everyone = true;
            for (member *m = g->members; m && everyone; m = m->next)
                everyone = member_supports(m, lead->protocols[i].name);
            if (everyone)
                g->protocol = strdup(lead->protocols[i].name);
        }
        g->state = COMPLETING;
        for (member *m = g->members; m; m = m->next) {
            m->joined = false;
            m->last_seen_ms = sl_clock_mono_ms();
            free(m->assignment);
            m->assignment = NULL;
            m->assignment_len = 0;
        }
        sl_info("group", "group %s: generation %d with %zu member%s, leader %s, strategy %s",
                g->id, g->generation, member_count(g), member_count(g) == 1 ? "" : "s",
                g->leader, g->protocol ? g->protocol : "(none)");
    }
    g->rebalance_seq++;
    pthread_cond_broadcast(&c->cond);
}

static void try_complete(sl_coordinator *c, group *g) {
    if (g->state != PREPARING)
        return;
    for (member *m = g->members; m; m = m->next)
        if (!m->joined)
            return;
    complete_rebalance(c, g);
}

static void follow_leadership(sl_coordinator *c);

static void *expiry_main(void *arg) {
    sl_coordinator *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        struct timespec ts = sl_clock_deadline(EXPIRY_TICK_MS);
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        if (c->clustered)
            follow_leadership(c);
        int64_t now = sl_clock_mono_ms();
        for (group *g = c->groups; g; g = g->next) {
            for (member *m = g->members, *next; m; m = next) {
                next = m->next;
                /* A member waiting in a join is alive; the rebalance deadline covers it. */
                if (m->joined && g->state == PREPARING)
                    continue;
                if (now - m->last_seen_ms > m->session_timeout_ms) {
                    sl_info("group", "group %s: member %s (%s) sent no heartbeat for %d ms and "
                                     "was removed",
                            g->id, m->id, m->client_id, m->session_timeout_ms);
                    remove_member(g, m);
                    if (g->members)
                        prepare_rebalance(c, g);
                    else
                        complete_rebalance(c, g);
                }
            }
            if (g->state == PREPARING && now >= g->rebalance_deadline_ms)
                complete_rebalance(c, g);
            else
                try_complete(c, g);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- which groups this node coordinates ---- */

static int32_t offsets_partition(const char *group_id) {
    /* The same key-hash as producers use, so the layout does not depend on this process. */
    return (int32_t)((sl_murmur2(group_id, strlen(group_id)) & 0x7fffffff) % OFFSETS_PARTITIONS);
}

int32_t sl_coord_partition_for(const char *group_id) {
    return offsets_partition(group_id);
}

int sl_coord_find(sl_coordinator *c, const char *group_id, int32_t *node_id, char *errbuf,
                  size_t errlen) {
    *node_id = sl_broker_node_id(c->broker);
    if (!c->clustered)
        return 0;
    int rc = sl_broker_ensure_internal_topic(c->broker, SL_OFFSETS_TOPIC, OFFSETS_PARTITIONS,
                                             true, errbuf, errlen);
    sl_partition_state st;
    if (rc == 0 &&
        sl_broker_partition_state(c->broker, SL_OFFSETS_TOPIC, offsets_partition(group_id),
                                  &st) != 0)
        rc = SL_ECOORDLOADING; /* created, not yet applied here */
    if (rc == 0 && st.leader <= 0)
        rc = SL_ECOORDLOADING;
    if (rc == 0)
        *node_id = st.leader;
    else if (rc == SL_ENOTLEADER || rc == SL_ENOTENOUGHREPLICAS) /* no controller, or too few
                                                                 * brokers yet: ask again */
        rc = SL_ECOORDLOADING;
    return rc;
}

/* 0 when this node coordinates the group now: it leads the group's partition (under a lease)
 * at the epoch it loaded it at. SL_ECOORDLOADING while it leads it but has not loaded it yet,
 * SL_ENOTCOORD when another node leads it. Lock held. */
static int coordinates(sl_coordinator *c, const char *group_id) {
    if (!c->clustered)
        return 0;
    int32_t p = offsets_partition(group_id), epoch;
    sl_read_result r;
    if (sl_broker_led_offsets(c->broker, SL_OFFSETS_TOPIC, p, &epoch, &r) != 0)
        return SL_ENOTCOORD;
    return c->loaded_epoch[p] == epoch ? 0 : SL_ECOORDLOADING;
}

/* ---- join, sync, heartbeat, leave ---- */

static int fill_join_result(group *g, const member *me, sl_join_result *res) {
    memset(res, 0, sizeof(*res));
    res->generation = g->generation;
    res->protocol = strdup(g->protocol ? g->protocol : "");
    res->leader = strdup(g->leader ? g->leader : "");
    res->member_id = strdup(me->id);
    if (!res->protocol || !res->leader || !res->member_id)
        return SL_ENOMEM;
    if (g->leader == NULL || strcmp(g->leader, me->id) != 0)
        return 0;
    size_t n = member_count(g);
    if ((res->members = calloc(n, sizeof(*res->members))) == NULL)
        return SL_ENOMEM;
    for (member *m = g->members; m; m = m->next) {
        sl_join_member *jm = &res->members[res->nmembers++];
        const proto *p = member_protocol(m, g->protocol);
        if ((jm->member_id = strdup(m->id)) == NULL ||
            (p && copy_bytes(&jm->metadata, &jm->len, p->metadata, p->len)))
            return SL_ENOMEM;
    }
    return 0;
}

void sl_join_result_free(sl_join_result *res) {
    for (size_t i = 0; i < res->nmembers; i++) {
        free(res->members[i].member_id);
        free(res->members[i].metadata);
    }
    free(res->members);
    free(res->protocol);
    free(res->leader);
    free(res->member_id);
    memset(res, 0, sizeof(*res));
}

/* Updates a member's protocols from its join request. */
static int set_protocols(member *m, const sl_join_request *req) {
    free_protocols(m);
    if ((m->protocols = calloc(req->nprotocols, sizeof(*m->protocols))) == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < req->nprotocols; i++) {
        proto *p = &m->protocols[m->nprotocols++];
        if ((p->name = strdup(req->protocols[i].name)) == NULL ||
            copy_bytes(&p->metadata, &p->len, req->protocols[i].metadata,
                       req->protocols[i].len))
            return SL_ENOMEM;
    }
    return 0;
}

/* Whether a joining member shares a protocol type and a protocol with the group. */
static bool compatible(const group *g, const sl_join_request *req) {
    if (g->members == NULL)
        return true;
    if (g->protocol_type && strcmp(g->protocol_type, req->protocol_type) != 0)
        return false;
    for (size_t i = 0; i < req->nprotocols; i++) {
        bool everyone = true;
        for (member *m = g->members; m && everyone; m = m->next)
            everyone = member_supports(m, req->protocols[i].name);
        if (everyone)
            return true;
    }
    return false;
}

static member *new_member(sl_coordinator *c, group *g, const sl_join_request *req) {
    member *m = calloc(1, sizeof(*m));
    char id[400];
    if (m == NULL)
        return NULL;
    snprintf(id, sizeof(id), "%s-%08x%08x", req->client_id[0] ? req->client_id : "member",
             (unsigned)rand_r(&c->rand_state), (unsigned)rand_r(&c->rand_state));
    m->id = strdup(id);
    m->client_id = strdup(req->client_id);
    m->host = strdup(req->client_host ? req->client_host : "");
    if (!m->id || !m->client_id || !m->host) {
        member_free(m);
        return NULL;
    }
    /* Joining members go last, so the oldest member stays leader across rebalances. */
    member **pp = &g->members;
    while (*pp)
        pp = &(*pp)->next;
    *pp = m;
    return m;
}

int sl_coord_join(sl_coordinator *c, const sl_join_request *req, sl_join_result *res) {
    memset(res, 0, sizeof(*res));
    if (req->group[0] == '\0' || strlen(req->group) > MAX_GROUP_ID || req->nprotocols == 0 ||
        req->session_timeout_ms < MIN_SESSION_MS || req->session_timeout_ms > MAX_SESSION_MS ||
        req->rebalance_timeout_ms < 0)
        return SL_EINVAL;
    pthread_mutex_lock(&c->lock);
    int rc = c->stopping ? SL_ESTOPPED : coordinates(c, req->group);
    group *g = rc ? NULL : get_group(c, req->group);
    member *me = NULL;
    if (rc == 0 && g == NULL)
        rc = SL_ENOMEM;
    if (rc == 0 && req->member_id[0] != '\0' && (me = find_member(g, req->member_id)) == NULL)
        rc = SL_EUNKNOWNMEMBER;
    if (rc == 0 && !compatible(g, req))
        rc = SL_EGROUPPROTOCOL;
    if (rc == 0 && me == NULL && (me = new_member(c, g, req)) == NULL)
        rc = SL_ENOMEM;
    if (rc == 0)
        rc = set_protocols(me, req);
    if (rc == 0) {
        if (g->members == me || g->protocol_type == NULL) {
            free(g->protocol_type);
            g->protocol_type = strdup(req->protocol_type);
        }
        me->session_timeout_ms = req->session_timeout_ms;
        me->rebalance_timeout_ms = req->rebalance_timeout_ms ? req->rebalance_timeout_ms
                                                             : req->session_timeout_ms;
        me->last_seen_ms = sl_clock_mono_ms();
        me->joined = true;
        if (g->state != PREPARING)
            prepare_rebalance(c, g);
        try_complete(c, g);
        /* Wait for the rebalance this join is part of. Group and member are looked up again
         * after every wake-up: either may be gone by then. */
        char *my_id = strdup(me->id);
        while (my_id && (g = find_group(c, req->group)) != NULL &&
               (me = find_member(g, my_id)) != NULL && me->joined && !c->stopping)
            pthread_cond_wait(&c->cond, &c->lock);
        g = find_group(c, req->group);
        me = my_id && g ? find_member(g, my_id) : NULL;
        free(my_id);
        if (c->stopping)
            rc = SL_ESTOPPED;
        else if (me == NULL)
            rc = coordinates(c, req->group) ? SL_ENOTCOORD : SL_EUNKNOWNMEMBER;
        else
            rc = fill_join_result(g, me, res);
    }
    pthread_mutex_unlock(&c->lock);
    if (rc)
        sl_join_result_free(res);
    return rc;
}

/* Finds group and member for a request of the current generation. Lock held. */
static int check_member(sl_coordinator *c, const char *group_id, int32_t generation,
                        const char *member_id, group **gp, member **mp) {
    int rc = coordinates(c, group_id);
    if (rc) {
        *gp = NULL;
        *mp = NULL;
        return rc;
    }
    group *g = find_group(c, group_id);
    member *m = g ? find_member(g, member_id) : NULL;
    *gp = g;
    *mp = m;
    if (m == NULL)
        return SL_EUNKNOWNMEMBER;
    if (generation != g->generation)
        return SL_EGENERATION;
    return 0;
}

int sl_coord_sync(sl_coordinator *c, const char *group_id, int32_t generation,
                  const char *member_id, const sl_member_assignment *assignments, size_t n,
                  sl_buf *assignment) {
    group *g;
    member *me;
    pthread_mutex_lock(&c->lock);
    int rc = check_member(c, group_id, generation, member_id, &g, &me);
    if (rc == 0 && g->state == PREPARING)
        rc = SL_EREBALANCE;
    if (rc == 0 && g->state == COMPLETING && strcmp(g->leader, member_id) == 0) {
        for (size_t i = 0; rc == 0 && i < n; i++) {
            member *m = find_member(g, assignments[i].member_id);
            if (m) {
                free(m->assignment);
                rc = copy_bytes(&m->assignment, &m->assignment_len, assignments[i].data,
                                assignments[i].len);
            }
        }
        if (rc == 0) {
            g->state = STABLE;
            g->sync_seq++;
            pthread_cond_broadcast(&c->cond);
        }
    }
    uint64_t rebalance = g && rc == 0 ? g->rebalance_seq : 0;
    /* Followers wait for the leader's assignment; the group is looked up again after every
     * wake-up, as it may be gone. */
    while (rc == 0 && (g = find_group(c, group_id)) != NULL && g->state == COMPLETING &&
           g->rebalance_seq == rebalance && !c->stopping)
        pthread_cond_wait(&c->cond, &c->lock);
    if (rc == 0) {
        me = g ? find_member(g, member_id) : NULL;
        if (c->stopping)
            rc = SL_ESTOPPED;
        else if (me == NULL)
            rc = coordinates(c, group_id) ? SL_ENOTCOORD : SL_EUNKNOWNMEMBER;
        else if (g->rebalance_seq != rebalance || g->state != STABLE)
            rc = SL_EREBALANCE;
    }
    if (rc == 0) {
        me->last_seen_ms = sl_clock_mono_ms();
        assignment->len = 0;
        rc = sl_buf_append(assignment, me->assignment, me->assignment_len);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int sl_coord_heartbeat(sl_coordinator *c, const char *group_id, int32_t generation,
                       const char *member_id) {
    group *g;
    member *m;
    pthread_mutex_lock(&c->lock);
    int rc = check_member(c, group_id, generation, member_id, &g, &m);
    if (m)
        m->last_seen_ms = sl_clock_mono_ms();
    if ((rc == 0 || rc == SL_EGENERATION) && g->state == PREPARING)
        rc = SL_EREBALANCE;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int sl_coord_leave(sl_coordinator *c, const char *group_id, const char *member_id) {
    pthread_mutex_lock(&c->lock);
    int rc = coordinates(c, group_id);
    group *g = rc ? NULL : find_group(c, group_id);
    member *m = g ? find_member(g, member_id) : NULL;
    if (rc == 0 && m == NULL)
        rc = SL_EUNKNOWNMEMBER;
    if (m) {
        sl_info("group", "group %s: member %s left", g->id, m->id);
        remove_member(g, m);
        if (g->members)
            prepare_rebalance(c, g);
        else
            complete_rebalance(c, g);
        try_complete(c, g);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- committed offsets ---- */

static offset_entry *find_offset(group *g, const char *topic, int32_t partition) {
    for (size_t i = 0; i < g->noffsets; i++)
        if (g->offsets[i].partition == partition && strcmp(g->offsets[i].topic, topic) == 0)
            return &g->offsets[i];
    return NULL;
}

/* Sets (offset >= 0) or removes (offset < 0) an offset in memory. Lock held. */
static int apply_offset(group *g, const char *topic, int32_t partition, int64_t offset,
                        const char *metadata, int64_t commit_ms) {
    offset_entry *e = find_offset(g, topic, partition);
    if (offset < 0) {
        if (e) {
            free(e->topic);
            free(e->metadata);
            *e = g->offsets[--g->noffsets];
        }
        return 0;
    }
    if (e == NULL) {
        if (g->noffsets == g->offcap) {
            size_t cap = g->offcap ? g->offcap * 2 : 16;
            offset_entry *v = realloc(g->offsets, cap * sizeof(*v));
            if (v == NULL)
                return SL_ENOMEM;
            g->offsets = v;
            g->offcap = cap;
        }
        e = &g->offsets[g->noffsets];
        memset(e, 0, sizeof(*e));
        if ((e->topic = strdup(topic)) == NULL)
            return SL_ENOMEM;
        e->partition = partition;
        g->noffsets++;
    }
    char *md = strdup(metadata ? metadata : "");
    if (md == NULL)
        return SL_ENOMEM;
    free(e->metadata);
    e->metadata = md;
    e->offset = offset;
    e->commit_ms = commit_ms;
    return 0;
}

/* Writes offset records (value NULL offsets: tombstones) to the group's partition of
 * __consumer_offsets and waits until they are appended. */
static int write_offsets(sl_coordinator *c, const char *group_id, const sl_offset_commit *o,
                         size_t n, bool tombstones, int64_t now, int64_t pid, int16_t epoch) {
    sl_batch_builder b = {0};
    sl_buf key = SL_BUF_INIT, value = SL_BUF_INIT;
    msgpack_packer kp, vp;
    int rc = 0;
    sl_batch_builder_reset(&b);
    if (pid >= 0) {
        /* Part of the producer's transaction; no sequence: we write it, nobody retries it. */
        b.producer_id = pid;
        b.producer_epoch = epoch;
        b.flags = SL_BATCH_ATTR_TRANSACTIONAL;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        key.len = value.len = 0;
        sl_mp_packer_init(&kp, &key);
        msgpack_pack_array(&kp, 3);
        sl_mp_pack_str(&kp, group_id);
        sl_mp_pack_str(&kp, o[i].topic);
        msgpack_pack_int32(&kp, o[i].partition);
        if (!tombstones) {
            sl_mp_packer_init(&vp, &value);
            msgpack_pack_array(&vp, 3);
            msgpack_pack_int64(&vp, o[i].offset);
            sl_mp_pack_str(&vp, o[i].metadata ? o[i].metadata : "");
            msgpack_pack_int64(&vp, now);
        }
        rc = sl_batch_builder_add(&b, now, key.data, key.len, tombstones ? NULL : value.data,
                                  value.len, NULL, 0);
    }
    if (rc == 0 && n > 0) {
        sl_batch_builder_finish(&b);
        sl_append_result res;
        char err[256];
        int32_t p = offsets_partition(group_id);
        err[0] = '\0';
        rc = sl_broker_produce(c->broker, SL_OFFSETS_TOPIC, p, b.buf.data, b.buf.len, &res, err,
                               sizeof(err));
        /* In a cluster a commit is acknowledged once every in-sync replica holds it, so a new
         * coordinator loads it after a failover (Kafka's offsets.commit.required.acks=-1). */
        if (rc == 0 && c->clustered)
            rc = sl_broker_wait_replicated(c->broker, SL_OFFSETS_TOPIC, p, res.last_offset,
                                           res.leader_epoch,
                                           sl_clock_mono_ms() + COMMIT_TIMEOUT_MS);
        if (rc == SL_ENOTLEADER || rc == SL_ENOENT)
            rc = SL_ENOTCOORD; /* the partition moved: the client finds its new coordinator */
        else if (rc)
            sl_error("group", "cannot write offsets of group %s: %s", group_id,
                     err[0] ? err : sl_strerror(rc));
    }
    sl_batch_builder_free(&b);
    sl_buf_free(&key);
    sl_buf_free(&value);
    return rc;
}

/* Whether the commit may happen: a member of the current generation (a zombie that lost its
 * partitions to a rebalance may not), a tool (generation -1) while the group is empty, or
 * anyone with SL_COORD_UNCHECKED. */
static int may_commit(sl_coordinator *c, const char *group_id, int32_t generation,
                      const char *member_id, const sl_offset_commit *offsets, size_t n) {
    if (group_id[0] == '\0' || strlen(group_id) > MAX_GROUP_ID)
        return SL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (offsets[i].offset < 0 || offsets[i].partition < 0)
            return SL_EINVAL;
    pthread_mutex_lock(&c->lock);
    int rc = coordinates(c, group_id);
    if (rc || generation == SL_COORD_UNCHECKED) {
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    group *g = get_group(c, group_id);
    rc = g ? 0 : SL_ENOMEM;
    if (rc == 0 && generation < 0) {
        if (g->members)
            rc = SL_EGROUPNOTEMPTY; /* tools may not move offsets under live members */
    } else if (rc == 0) {
        member *m;
        rc = check_member(c, group_id, generation, member_id, &g, &m);
        if (rc == 0)
            m->last_seen_ms = sl_clock_mono_ms();
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int sl_coord_commit(sl_coordinator *c, const char *group_id, int32_t generation,
                    const char *member_id, const sl_offset_commit *offsets, size_t n) {
    int rc = may_commit(c, group_id, generation, member_id, offsets, n);
    /* The write happens outside the lock: it waits for the disk, and heartbeats must not. */
    int64_t now = sl_clock_wall_ms();
    if (rc == 0)
        rc = write_offsets(c, group_id, offsets, n, false, now, -1, 0);
    pthread_mutex_lock(&c->lock);
    group *g = find_group(c, group_id);
    for (size_t i = 0; rc == 0 && g && i < n; i++)
        rc = apply_offset(g, offsets[i].topic, offsets[i].partition, offsets[i].offset,
                          offsets[i].metadata, now);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void pending_free(pending_offset *po) {
    free(po->member);
    free(po->group);
    free(po->topic);
    free(po->metadata);
    free(po);
}

int sl_coord_txn_commit(sl_coordinator *c, const char *group_id, int32_t generation,
                        const char *member_id, int64_t pid, int16_t epoch,
                        const sl_offset_commit *offsets, size_t n) {
    int rc = may_commit(c, group_id, generation, member_id, offsets, n);
    int64_t now = sl_clock_wall_ms();
    if (rc == 0)
        rc = write_offsets(c, group_id, offsets, n, false, now, pid, epoch);
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        pending_offset *po = NULL;
        for (pending_offset *q = c->pending; q && !po; q = q->next)
            if (q->pid == pid && q->partition == offsets[i].partition &&
                strcmp(q->group, group_id) == 0 && strcmp(q->topic, offsets[i].topic) == 0)
                po = q;
        if (po == NULL) {
            po = calloc(1, sizeof(*po));
            if (po == NULL || (po->group = strdup(group_id)) == NULL ||
                (po->topic = strdup(offsets[i].topic)) == NULL) {
                if (po)
                    pending_free(po);
                rc = SL_ENOMEM;
                break;
            }
            po->pid = pid;
            po->partition = offsets[i].partition;
            po->next = c->pending;
            c->pending = po;
        }
        char *md = strdup(offsets[i].metadata ? offsets[i].metadata : "");
        char *who = strdup(member_id);
        if (md == NULL || who == NULL) {
            free(md);
            free(who);
            rc = SL_ENOMEM;
            break;
        }
        free(po->metadata);
        free(po->member);
        po->metadata = md;
        po->member = who;
        po->generation = generation;
        po->offset = offsets[i].offset;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int sl_coord_txn_check(sl_coordinator *c, int64_t pid) {
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    for (pending_offset *po = c->pending; po && rc == 0; po = po->next) {
        if (po->pid != pid || po->generation < 0)
            continue;
        group *g;
        member *m;
        rc = check_member(c, po->group, po->generation, po->member, &g, &m);
        if (rc)
            sl_warn("group", "group %s: member %s of generation %d may no longer commit "
                    "(a rebalance gave its partitions away); its transaction cannot commit",
                    po->group, po->member, po->generation);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void sl_coord_txn_end(sl_coordinator *c, int64_t pid, bool commit) {
    int64_t now = sl_clock_wall_ms();
    pthread_mutex_lock(&c->lock);
    for (pending_offset **pp = &c->pending; *pp;) {
        pending_offset *po = *pp;
        if (po->pid != pid) {
            pp = &po->next;
            continue;
        }
        *pp = po->next;
        group *g = commit ? get_group(c, po->group) : NULL;
        if (g && apply_offset(g, po->topic, po->partition, po->offset, po->metadata, now))
            sl_error("group", "out of memory applying the offsets of a transaction of group %s "
                     "(they are on disk and come back at restart)", po->group);
        pending_free(po);
    }
    pthread_mutex_unlock(&c->lock);
}

int sl_coord_committed(sl_coordinator *c, const char *group_id, const char *topic,
                       int32_t partition, int64_t *offset) {
    pthread_mutex_lock(&c->lock);
    int rc = coordinates(c, group_id);
    group *g = rc ? NULL : find_group(c, group_id);
    offset_entry *e = g ? find_offset(g, topic, partition) : NULL;
    *offset = e ? e->offset : -1;
    for (pending_offset *po = c->pending; po && rc == 0; po = po->next)
        if (po->partition == partition && strcmp(po->topic, topic) == 0 &&
            strcmp(po->group, group_id) == 0)
            rc = SL_EUNSTABLE;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- loading __consumer_offsets ---- */

static int load_record(sl_coordinator *c, const sl_record_view *rv) {
    msgpack_unpacked ku, vu;
    msgpack_unpacked_init(&ku);
    msgpack_unpacked_init(&vu);
    size_t off = 0;
    int rc = SL_ECORRUPT;
    char gid[MAX_GROUP_ID + 1], topic[256];
    if (rv->key == NULL || sl_mp_check(rv->key, rv->key_len) ||
        msgpack_unpack_next(&ku, (const char *)rv->key, rv->key_len, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        ku.data.type != MSGPACK_OBJECT_ARRAY || ku.data.via.array.size != 3)
        goto out;
    msgpack_object *k = ku.data.via.array.ptr;
    if (k[0].type != MSGPACK_OBJECT_STR || k[0].via.str.size > MAX_GROUP_ID ||
        k[1].type != MSGPACK_OBJECT_STR || k[1].via.str.size >= sizeof(topic) ||
        k[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER || k[2].via.u64 > INT32_MAX)
        goto out;
    snprintf(gid, sizeof(gid), "%.*s", (int)k[0].via.str.size, k[0].via.str.ptr);
    snprintf(topic, sizeof(topic), "%.*s", (int)k[1].via.str.size, k[1].via.str.ptr);
    int64_t offset = -1, commit_ms = 0;
    char md[256] = "";
    if (rv->value) {
        off = 0;
        if (sl_mp_check(rv->value, rv->value_len) ||
            msgpack_unpack_next(&vu, (const char *)rv->value, rv->value_len, &off) !=
                MSGPACK_UNPACK_SUCCESS ||
            vu.data.type != MSGPACK_OBJECT_ARRAY || vu.data.via.array.size < 3)
            goto out;
        msgpack_object *v = vu.data.via.array.ptr;
        if (v[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || v[1].type != MSGPACK_OBJECT_STR ||
            (v[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
             v[2].type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
            goto out;
        offset = (int64_t)v[0].via.u64;
        snprintf(md, sizeof(md), "%.*s", (int)v[1].via.str.size,
                 v[1].via.str.size ? v[1].via.str.ptr : "");
        commit_ms = v[2].via.i64;
    }
    group *g = get_group(c, gid);
    rc = g ? apply_offset(g, topic, (int32_t)k[2].via.u64, offset, md, commit_ms) : SL_ENOMEM;
out:
    msgpack_unpacked_destroy(&ku);
    msgpack_unpacked_destroy(&vu);
    return rc;
}

typedef struct loader {
    sl_coordinator *c;
    int32_t partition;
} loader;

static void load_one(void *arg, const sl_record_view *rv) {
    loader *l = arg;
    if (load_record(l->c, rv) != 0)
        sl_warn("group", "%s-%d: offset record %" PRId64 " is not understood", SL_OFFSETS_TOPIC,
                l->partition, rv->offset);
}

/* Read as committed: the transaction coordinator has decided every transaction before we
 * load, and the offsets of aborted ones never count. */
static int load_partition(sl_coordinator *c, int32_t p) {
    loader l = {c, p};
    return sl_broker_replay(c->broker, SL_OFFSETS_TOPIC, p, load_one, &l);
}

static void free_groups(group *g) {
    while (g) {
        group *next = g->next;
        group_free(g);
        g = next;
    }
}

/* This node no longer leads the partition: its groups go (members waiting in a join or sync
 * wake up and are told to find the new coordinator, which loads the offsets from its copy).
 * Lock held. */
static void unload_partition(sl_coordinator *c, int32_t p) {
    size_t n = 0;
    for (group **pp = &c->groups; *pp;) {
        group *g = *pp;
        if (offsets_partition(g->id) == p) {
            *pp = g->next;
            group_free(g);
            n++;
        } else {
            pp = &g->next;
        }
    }
    c->loaded_epoch[p] = -1;
    pthread_cond_broadcast(&c->cond);
    sl_info("group", "no longer coordinating the groups of %s-%d (%zu group%s handed over)",
            SL_OFFSETS_TOPIC, p, n, n == 1 ? "" : "s");
}

/* In a cluster, every tick: hands over the groups of partitions this node no longer leads,
 * and loads those it has come to lead once their high watermark has reached their log end
 * (then every commit its predecessor acknowledged is in). Lock held; released while a
 * partition loads, which group requests for it meanwhile answer SL_ECOORDLOADING. */
static void follow_leadership(sl_coordinator *c) {
    for (int32_t p = 0; p < OFFSETS_PARTITIONS && !c->stopping; p++) {
        int32_t epoch, now_epoch;
        sl_read_result r;
        bool leads = sl_broker_led_offsets(c->broker, SL_OFFSETS_TOPIC, p, &epoch, &r) == 0;
        if (c->loaded_epoch[p] >= 0 && (!leads || epoch != c->loaded_epoch[p]))
            unload_partition(c, p);
        if (!leads || c->loaded_epoch[p] >= 0 || r.high_watermark < r.log_end_offset)
            continue;
        sl_coordinator scratch = {.broker = c->broker};
        int64_t started = sl_clock_mono_ms();
        pthread_mutex_unlock(&c->lock);
        int rc = load_partition(&scratch, p);
        pthread_mutex_lock(&c->lock);
        if (rc == 0 && sl_broker_led_offsets(c->broker, SL_OFFSETS_TOPIC, p, &now_epoch, &r) == 0 &&
            now_epoch == epoch) {
            size_t n = 0;
            for (group *g = scratch.groups, *next; g; g = next) {
                next = g->next;
                g->next = c->groups;
                c->groups = g;
                n++;
            }
            c->loaded_epoch[p] = epoch;
            /* A partition with groups is news; fifty empty ones on creation are not. */
            sl_log(n ? SL_LOG_INFO : SL_LOG_DEBUG, "group", "coordinating the groups of %s-%d (leader epoch %d): loaded the "
                    "offsets of %zu group%s in %" PRId64 " ms", SL_OFFSETS_TOPIC, p, epoch, n,
                    n == 1 ? "" : "s", sl_clock_mono_ms() - started);
        } else {
            free_groups(scratch.groups);
            if (rc)
                sl_warn("group", "cannot load %s-%d: %s; trying again", SL_OFFSETS_TOPIC, p,
                        sl_strerror(rc));
        }
    }
}

/* Drops groups that have neither members nor offsets (after deletes). Lock held. */
static void sweep_groups(sl_coordinator *c) {
    for (group **pp = &c->groups; *pp;) {
        group *g = *pp;
        if (g->members == NULL && g->noffsets == 0 && g->state == EMPTY) {
            *pp = g->next;
            group_free(g);
        } else {
            pp = &g->next;
        }
    }
}

int sl_coord_open(sl_broker *b, sl_coordinator **out) {
    sl_coordinator *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SL_ENOMEM;
    c->broker = b;
    c->rand_state = (unsigned)sl_clock_mono_ns();
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    /* In a cluster the partitions are loaded as this node comes to lead them: the topic is
     * created through the controller when a client first looks for a coordinator. */
    c->clustered = sl_broker_clustered(b);
    for (int32_t p = 0; p < OFFSETS_PARTITIONS; p++)
        c->loaded_epoch[p] = -1;
    char err[256] = "";
    int rc = c->clustered ? 0
                          : sl_broker_ensure_internal_topic(b, SL_OFFSETS_TOPIC,
                                                            OFFSETS_PARTITIONS, true, err,
                                                            sizeof(err));
    if (rc)
        sl_error("group", "cannot create %s: %s", SL_OFFSETS_TOPIC,
                 err[0] ? err : sl_strerror(rc));
    for (int32_t p = 0; rc == 0 && !c->clustered && p < OFFSETS_PARTITIONS; p++)
        rc = load_partition(c, p);
    if (rc == 0 && !c->clustered) {
        sweep_groups(c);
        size_t n = 0;
        for (group *g = c->groups; g; g = g->next)
            n++;
        sl_info("group", "loaded committed offsets of %zu group%s", n, n == 1 ? "" : "s");
    }
    if (rc == 0 && pthread_create(&c->expiry, NULL, expiry_main, c) != 0)
        rc = SL_ENOMEM;
    if (rc) {
        while (c->groups) {
            group *g = c->groups;
            c->groups = g->next;
            group_free(g);
        }
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sl_coord_shutdown(sl_coordinator *c) {
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void sl_coord_close(sl_coordinator *c) {
    sl_coord_shutdown(c);
    pthread_join(c->expiry, NULL);
    while (c->groups) {
        group *g = c->groups;
        c->groups = g->next;
        group_free(g);
    }
    while (c->pending) {
        pending_offset *po = c->pending;
        c->pending = po->next;
        pending_free(po);
    }
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- describe, list, delete, metrics ---- */

void sl_group_desc_free(sl_group_desc *d) {
    for (size_t i = 0; i < d->nmembers; i++) {
        free(d->members[i].member_id);
        free(d->members[i].client_id);
        free(d->members[i].client_host);
        free(d->members[i].assignment);
    }
    free(d->members);
    for (size_t i = 0; i < d->noffsets; i++)
        free(d->offsets[i].topic);
    free(d->offsets);
    free(d->group);
    free(d->protocol_type);
    free(d->protocol);
    memset(d, 0, sizeof(*d));
}

int sl_coord_describe(sl_coordinator *c, const char *group_id, sl_group_desc *out) {
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&c->lock);
    int rc = coordinates(c, group_id);
    group *g = rc ? NULL : find_group(c, group_id);
    if (rc == 0 && g == NULL)
        rc = SL_ENOENT;
    if (rc == 0) {
        out->group = strdup(g->id);
        out->state = state_names[g->state];
        out->protocol_type = strdup(g->protocol_type ? g->protocol_type : "");
        out->protocol = strdup(g->protocol ? g->protocol : "");
        out->generation = g->generation;
        size_t nm = member_count(g);
        out->members = calloc(nm ? nm : 1, sizeof(*out->members));
        out->offsets = calloc(g->noffsets ? g->noffsets : 1, sizeof(*out->offsets));
        if (!out->group || !out->protocol_type || !out->protocol || !out->members ||
            !out->offsets)
            rc = SL_ENOMEM;
        for (member *m = g->members; rc == 0 && m; m = m->next) {
            sl_group_member_desc *d = &out->members[out->nmembers++];
            if (!(d->member_id = strdup(m->id)) || !(d->client_id = strdup(m->client_id)) ||
                !(d->client_host = strdup(m->host)) ||
                copy_bytes(&d->assignment, &d->assignment_len, m->assignment, m->assignment_len))
                rc = SL_ENOMEM;
        }
        for (size_t i = 0; rc == 0 && i < g->noffsets; i++) {
            sl_group_offset_desc *d = &out->offsets[out->noffsets++];
            if ((d->topic = strdup(g->offsets[i].topic)) == NULL)
                rc = SL_ENOMEM;
            d->partition = g->offsets[i].partition;
            d->committed = g->offsets[i].offset;
            d->commit_ms = g->offsets[i].commit_ms;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (rc && g)
        sl_group_desc_free(out);
    return rc;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sl_coord_list(sl_coordinator *c, char ***names, size_t *count) {
    pthread_mutex_lock(&c->lock);
    sweep_groups(c);
    size_t n = 0;
    for (group *g = c->groups; g; g = g->next)
        n++;
    char **v = calloc(n ? n : 1, sizeof(*v));
    size_t k = 0;
    int rc = v ? 0 : SL_ENOMEM;
    for (group *g = c->groups; rc == 0 && g; g = g->next)
        if ((v[k++] = strdup(g->id)) == NULL)
            rc = SL_ENOMEM;
    pthread_mutex_unlock(&c->lock);
    if (rc) {
        sl_broker_free_names(v, k);
        return rc;
    }
    qsort(v, k, sizeof(*v), cmp_names);
    *names = v;
    *count = k;
    return 0;
}

int sl_coord_delete(sl_coordinator *c, const char *group_id) {
    pthread_mutex_lock(&c->lock);
    int rc = coordinates(c, group_id);
    group *g = rc ? NULL : find_group(c, group_id);
    if (rc == 0 && g == NULL)
        rc = SL_ENOENT;
    if (rc == 0 && g->members)
        rc = SL_EGROUPNOTEMPTY;
    sl_offset_commit *o = NULL;
    size_t n = 0;
    if (rc == 0 && g->noffsets && (o = calloc(g->noffsets, sizeof(*o))) == NULL)
        rc = SL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < g->noffsets; i++) {
        o[i].topic = strdup(g->offsets[i].topic);
        o[i].partition = g->offsets[i].partition;
        n++;
        if (o[i].topic == NULL)
            rc = SL_ENOMEM;
    }
    pthread_mutex_unlock(&c->lock);
    if (rc == 0)
        rc = write_offsets(c, group_id, o, n, true, sl_clock_wall_ms(), -1, 0);
    pthread_mutex_lock(&c->lock);
    if (rc == 0 && (g = find_group(c, group_id)) != NULL && g->members == NULL) {
        for (size_t i = 0; i < n; i++)
            apply_offset(g, o[i].topic, o[i].partition, -1, NULL, 0);
        sweep_groups(c);
        sl_info("group", "deleted group %s", group_id);
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++)
        free((char *)o[i].topic);
    free(o);
    return rc;
}

int sl_coord_metrics(sl_coordinator *c, sl_buf *out) {
    static const char head[] =
        "# HELP sluice_group_lag_records Records between a group's committed offset and the high "
        "watermark.\n# TYPE sluice_group_lag_records gauge\n";
    if (sl_buf_append(out, head, sizeof(head) - 1))
        return SL_ENOMEM;
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    for (group *g = c->groups; rc == 0 && g; g = g->next) {
        for (size_t i = 0; rc == 0 && i < g->noffsets; i++) {
            offset_entry *e = &g->offsets[i];
            int64_t hw;
            if (sl_broker_replica_hw(c->broker, e->topic, e->partition, &hw) != 0)
                continue;
            char line[700];
            int n = snprintf(line, sizeof(line),
                             "sluice_group_lag_records{group=\"%s\",topic=\"%s\",partition=\"%d\"} "
                             "%" PRId64 "\n",
                             g->id, e->topic, e->partition, hw > e->offset ? hw - e->offset : 0);
            if (n > 0 && (size_t)n < sizeof(line))
                rc = sl_buf_append(out, line, (size_t)n);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* The client's map of partition leaders and node connections (metadata.h). */
#include "client/metadata.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"

typedef struct mtopic {
    char *name;
    int32_t npartitions;
    int32_t *leaders;
    bool loaded; /* an answer carried its leaders */
    int status;  /* the last answer's status for it (SL_ENOENT: gone) */
    struct mtopic *next;
} mtopic;

typedef struct mnode {
    int32_t id;
    char *url;
    sl_rpc *rpc; /* NULL until first needed */
    struct mnode *next;
} mnode;

struct sl_cl_meta {
    sl_rpc *bootstrap;
    int timeout_ms;
    int64_t backoff_ms, backoff_max_ms;
    /* Written with both locks held, read with either: the node list, node urls and
     * connections, 'known', 'clustered'. The rest is under 'lock' alone. */
    pthread_mutex_t lock;
    pthread_mutex_t io_lock; /* dials, redials and METADATA requests; 'req' and 'resp' */
    mtopic *topics;
    mnode *nodes;
    /* Connections to addresses their nodes left: closed at the end only, since a sender may
     * still hold one. */
    mnode *retired;
    bool known; /* an answer arrived, so 'clustered' means something */
    bool clustered;
    bool stale;
    bool urgent;          /* a topic never fetched: refresh without waiting */
    int64_t refreshed_ms; /* the last refresh attempt */
    int64_t interval_ms;  /* between refreshes: doubles while leaders stay missing */
    atomic_uint_fast64_t version;
    sl_buf req, resp;
    int32_t local_node; /* reached at local_url (ipc://) rather than where it registered */
    char local_url[300];
};

int sl_cl_meta_new(const sl_conf_values *v, sl_rpc *bootstrap, sl_cl_meta **out) {
    sl_cl_meta *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return SL_ENOMEM;
    m->bootstrap = bootstrap;
    m->timeout_ms = v->request_timeout_ms;
    m->backoff_ms = v->retry_backoff_ms;
    m->backoff_max_ms = v->retry_backoff_max_ms;
    m->interval_ms = m->backoff_ms;
    m->local_node = v->local_node;
    snprintf(m->local_url, sizeof(m->local_url), "%s", v->local_url ? v->local_url : "");
    atomic_init(&m->version, 1);
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->io_lock, NULL);
    *out = m;
    return 0;
}

static void free_nodes(mnode *n) {
    while (n) {
        mnode *next = n->next;
        free(n->url);
        free(n);
        n = next;
    }
}

void sl_cl_meta_destroy(sl_cl_meta *m) {
    if (m == NULL)
        return;
    /* No lock while closing: the callbacks that run may note statuses. */
    for (mnode *n = m->nodes; n; n = n->next)
        if (n->rpc)
            sl_rpc_close(n->rpc);
    for (mnode *n = m->retired; n; n = n->next)
        sl_rpc_close(n->rpc);
    free_nodes(m->nodes);
    free_nodes(m->retired);
    while (m->topics) {
        mtopic *t = m->topics;
        m->topics = t->next;
        free(t->leaders);
        free(t->name);
        free(t);
    }
    sl_buf_free(&m->req);
    sl_buf_free(&m->resp);
    pthread_mutex_destroy(&m->io_lock);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static mtopic *find_topic(sl_cl_meta *m, const char *name) {
    for (mtopic *t = m->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* Lock held. */
static mtopic *add_topic(sl_cl_meta *m, const char *name) {
    mtopic *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->name = strdup(name)) == NULL) {
        free(t);
        return NULL;
    }
    t->next = m->topics;
    m->topics = t;
    return t;
}

static mnode *find_node(sl_cl_meta *m, int32_t id) {
    for (mnode *n = m->nodes; n; n = n->next)
        if (n->id == id)
            return n;
    return NULL;
}

bool sl_cl_meta_changed(sl_cl_meta *m, uint64_t *seen) {
    uint64_t version = atomic_load(&m->version);
    if (version == *seen)
        return false;
    *seen = version;
    return true;
}

static int32_t leader_locked(sl_cl_meta *m, const char *topic, int32_t partition, int *status) {
    *status = 0;
    if (m->known && !m->clustered)
        return SL_CL_META_BOOTSTRAP;
    int32_t leader = SL_CL_META_NO_LEADER;
    mtopic *t = find_topic(m, topic);
    if (t == NULL && (t = add_topic(m, topic)) != NULL)
        m->urgent = true;
    if (t && t->loaded && partition >= 0 && partition < t->npartitions)
        leader = t->leaders[partition];
    if (t)
        *status = t->status;
    if (leader == SL_CL_META_NO_LEADER)
        m->stale = true;
    return leader;
}

int32_t sl_cl_meta_leader(sl_cl_meta *m, const char *topic, int32_t partition) {
    int status;
    pthread_mutex_lock(&m->lock);
    int32_t leader = leader_locked(m, topic, partition, &status);
    pthread_mutex_unlock(&m->lock);
    return leader;
}

bool sl_cl_meta_note(sl_cl_meta *m, int status) {
    /* A leader that does not know the topic yet has not applied its creation: ask again. */
    bool moved = status == SL_ENOTLEADER || status == SL_ENOENT;
    bool lost = status == SL_ECLOSED || status == SL_ECONNREFUSED;
    if (!moved && !lost && status != SL_ETIMEDOUT) /* a frozen node times out */
        return false;
    pthread_mutex_lock(&m->lock);
    if (moved || m->clustered) {
        m->stale = true;
        m->interval_ms = m->backoff_ms; /* news, not a leader still missing: ask soon */
    }
    pthread_mutex_unlock(&m->lock);
    return moved || lost;
}

static int64_t due_locked(const sl_cl_meta *m) {
    if (m->urgent)
        return 0;
    return m->stale ? m->refreshed_ms + m->interval_ms : -1;
}

int64_t sl_cl_meta_refresh_due(sl_cl_meta *m) {
    pthread_mutex_lock(&m->lock);
    int64_t due = due_locked(m);
    pthread_mutex_unlock(&m->lock);
    return due;
}

/* ---- talking to nodes (io_lock held) ---- */

static bool connection_lost(int status) {
    return status == SL_ECLOSED || status == SL_ECONNREFUSED || status == SL_ETIMEDOUT;
}

/* Opens, or reopens, the connection to a node. */
static int dial(sl_cl_meta *m, mnode *n, sl_rpc **out) {
    int rc;
    if (n->rpc) {
        bool was_closed = sl_rpc_is_closed(n->rpc);
        rc = sl_rpc_reconnect(n->rpc, SL_CL_CONNECT_TIMEOUT_MS);
        if (rc == 0 && was_closed)
            sl_debug("client", "reconnected to node %d at %s", (int)n->id, n->url);
    } else {
        sl_rpc *rpc;
        rc = sl_rpc_connect(n->url, SL_CL_CONNECT_TIMEOUT_MS, &rpc);
        if (rc == 0) {
            pthread_mutex_lock(&m->lock);
            n->rpc = rpc;
            pthread_mutex_unlock(&m->lock);
        }
    }
    if (rc) {
        sl_debug("client", "node %d at %s cannot be reached: %s", (int)n->id, n->url,
                 sl_strerror(rc));
        return rc == SL_ENOMEM ? rc : SL_ECONNREFUSED;
    }
    *out = n->rpc;
    return 0;
}

static int redial_bootstrap(sl_cl_meta *m) {
    if (!sl_rpc_is_closed(m->bootstrap))
        return 0;
    int rc = sl_rpc_reconnect(m->bootstrap, SL_CL_CONNECT_TIMEOUT_MS);
    if (rc == 0)
        sl_debug("client", "reconnected to the bootstrap broker");
    return rc == SL_ENOMEM ? rc : rc ? SL_ECONNREFUSED : 0;
}

/* Sends the METADATA request built in 'req' (its id is patched per connection): to the
 * bootstrap broker, and inside a cluster, when that fails, to each node in turn. */
static int ask(sl_cl_meta *m, msgpack_unpacked *up, const msgpack_object **items, size_t *n) {
    char err[256];
    int rc = redial_bootstrap(m);
    sl_rpc *rpc = m->bootstrap;
    mnode *next = m->clustered ? m->nodes : NULL;
    for (;;) {
        if (rc == 0) {
            uint32_t id = sl_rpc_next_id(rpc);
            sl_be32_put(m->req.data + 4, id);
            rc = sl_cl_call(rpc, &m->req, id, m->timeout_ms, &m->resp, up, 4, items, n, err,
                            sizeof(err));
        }
        if (rc == 0 || !connection_lost(rc) || next == NULL)
            return rc;
        rc = dial(m, next, &rpc);
        next = next->next;
    }
}

/* ---- taking in an answer (io_lock held) ---- */

static void update_node(sl_cl_meta *m, int32_t id, const char *url, size_t len, bool *changed) {
    if (id == m->local_node && m->local_url[0]) { /* the node beside us: over ipc:// */
        url = m->local_url;
        len = strlen(url);
    }
    mnode *n = find_node(m, id);
    if (n && strlen(n->url) == len && memcmp(n->url, url, len) == 0)
        return;
    char *copy = strndup(url, len);
    if (copy == NULL)
        return;
    if (n == NULL) {
        if ((n = calloc(1, sizeof(*n))) == NULL) {
            free(copy);
            return;
        }
        n->id = id;
        n->url = copy;
        pthread_mutex_lock(&m->lock);
        n->next = m->nodes;
        m->nodes = n;
        pthread_mutex_unlock(&m->lock);
        return;
    }
    /* The node came back elsewhere: later requests dial the new address. */
    sl_debug("client", "node %d moved from %s to %s", (int)id, n->url, copy);
    mnode *old = calloc(1, sizeof(*old));
    pthread_mutex_lock(&m->lock);
    if (n->rpc && old) {
        old->rpc = n->rpc;
        old->next = m->retired;
        m->retired = old;
        old = NULL;
        n->rpc = NULL;
    }
    free(n->url);
    n->url = copy;
    pthread_mutex_unlock(&m->lock);
    free(old);
    *changed = true;
}

/* Stores a topic's leaders; lock held. Sets *missing when a partition has none. */
static int update_topic(sl_cl_meta *m, const char *name, const msgpack_object *leaders, size_t np,
                        bool *changed, bool *missing) {
    mtopic *t = find_topic(m, name);
    if (t == NULL && (t = add_topic(m, name)) == NULL)
        return SL_ENOMEM;
    if ((size_t)t->npartitions != np) {
        int32_t *v = realloc(t->leaders, (np ? np : 1) * sizeof(*v));
        if (v == NULL)
            return SL_ENOMEM;
        for (size_t p = (size_t)t->npartitions; p < np; p++)
            v[p] = SL_CL_META_NO_LEADER;
        t->leaders = v;
        t->npartitions = (int32_t)np;
        *changed = true;
    }
    for (size_t p = 0; p < np; p++) {
        int64_t leader;
        if (sl_mp_int(&leaders[p], &leader))
            return SL_EPROTO;
        if (leader < 0)
            leader = SL_CL_META_NO_LEADER;
        if (leader == SL_CL_META_NO_LEADER)
            *missing = true;
        if (t->leaders[p] == (int32_t)leader)
            continue;
        if (t->loaded && m->clustered)
            sl_debug("client", "%s-%zu: leader %d -> %d", name, p, (int)t->leaders[p],
                     (int)leader);
        t->leaders[p] = (int32_t)leader;
        *changed = true;
    }
    t->loaded = true;
    t->status = 0;
    return 0;
}

/* Takes in a METADATA answer: [0, nil, node_id, topics, brokers]. 'all': it answered for every
 * cached topic, so it decides whether the map is still stale. */
static int apply(sl_cl_meta *m, const msgpack_object *items, size_t n, bool all) {
    const msgpack_object *topics, *brokers = NULL;
    size_t nt, nb = 0;
    if (sl_mp_array(&items[3], 0, &topics, &nt) ||
        (n >= 5 && sl_mp_array(&items[4], 0, &brokers, &nb)))
        return SL_EPROTO;
    bool changed = false, missing = false;
    for (size_t i = 0; i < nb; i++) {
        const msgpack_object *f;
        size_t fn, len;
        int64_t id;
        const char *url;
        if (sl_mp_array(&brokers[i], 2, &f, &fn) || sl_mp_int(&f[0], &id) ||
            sl_mp_str(&f[1], &url, &len))
            return SL_EPROTO;
        update_node(m, (int32_t)id, url, len, &changed);
    }
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    if (!m->known || m->clustered != (nb > 0)) {
        if (m->known)
            sl_info("client", "the brokers %s a cluster now", nb > 0 ? "form" : "no longer form");
        m->known = true;
        m->clustered = nb > 0;
        changed = true;
    }
    for (size_t i = 0; rc == 0 && i < nt; i++) {
        const msgpack_object *f, *leaders;
        size_t fn, np;
        int64_t status;
        char name[SL_TOPIC_NAME_MAX + 1];
        if (sl_mp_array(&topics[i], 3, &f, &fn) || sl_mp_strcpy(&f[0], name, sizeof(name)) ||
            sl_mp_int(&f[1], &status) || sl_mp_array(&f[2], 0, &leaders, &np)) {
            rc = SL_EPROTO;
        } else if (status) {
            mtopic *t = find_topic(m, name);
            if (t)
                t->status = (int)status;
        } else {
            rc = update_topic(m, name, leaders, np, &changed, &missing);
        }
    }
    if (all && rc == 0) {
        for (mtopic *t = m->topics; t; t = t->next)
            missing |= !t->loaded;
        m->stale = m->clustered && missing;
        /* Leaders still missing (an election): ask again, less often each time. */
        int64_t longer = m->interval_ms * 2;
        if (longer > m->backoff_max_ms)
            longer = m->backoff_max_ms;
        m->interval_ms = missing && longer > m->backoff_ms ? longer : m->backoff_ms;
    }
    if (changed)
        atomic_fetch_add(&m->version, 1);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int sl_cl_meta_partition_count(sl_cl_meta *m, const char *topic, int32_t *count) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *leaders;
    size_t n, np;
    int64_t status;
    pthread_mutex_lock(&m->io_lock);
    sl_cl_begin(&m->req, 0, SL_API_METADATA, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 1);
    sl_mp_pack_str(&pk, topic);
    msgpack_unpacked_init(&up);
    int rc = ask(m, &up, &items, &n);
    if (rc == 0)
        rc = sl_cl_first_topic(items, n, &status, &leaders, &np);
    if (rc == 0)
        rc = (int)status;
    if (rc == 0)
        rc = apply(m, items, n, false);
    if (rc == 0)
        *count = (int32_t)np;
    msgpack_unpacked_destroy(&up);
    pthread_mutex_unlock(&m->io_lock);
    return rc;
}

int sl_cl_meta_refresh(sl_cl_meta *m) {
    int64_t now = sl_clock_mono_ms();
    int64_t due = sl_cl_meta_refresh_due(m);
    if (due < 0 || due > now)
        return 0;
    pthread_mutex_lock(&m->io_lock);
    pthread_mutex_lock(&m->lock);
    due = due_locked(m); /* another thread may have refreshed while we waited */
    size_t nt = 0;
    for (mtopic *t = m->topics; t; t = t->next)
        nt++;
    if (due < 0 || due > now || nt == 0) {
        if (nt == 0)
            m->stale = m->urgent = false;
        pthread_mutex_unlock(&m->lock);
        pthread_mutex_unlock(&m->io_lock);
        return 0;
    }
    /* Cleared before asking: news arriving meanwhile asks again. */
    m->stale = m->urgent = false;
    m->refreshed_ms = now;
    msgpack_packer pk;
    sl_cl_begin(&m->req, 0, SL_API_METADATA, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, nt);
    for (mtopic *t = m->topics; t; t = t->next)
        sl_mp_pack_str(&pk, t->name);
    pthread_mutex_unlock(&m->lock);

    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    msgpack_unpacked_init(&up);
    int rc = ask(m, &up, &items, &n);
    if (rc == 0)
        rc = apply(m, items, n, true);
    msgpack_unpacked_destroy(&up);
    if (rc) {
        pthread_mutex_lock(&m->lock);
        m->stale = true;
        pthread_mutex_unlock(&m->lock);
        sl_debug("client", "metadata refresh failed: %s", sl_strerror(rc));
    }
    pthread_mutex_unlock(&m->io_lock);
    return rc;
}

int sl_cl_meta_connect(sl_cl_meta *m, int32_t node, sl_rpc **rpc) {
    int rc;
    if (node == SL_CL_META_BOOTSTRAP) {
        if (!sl_rpc_is_closed(m->bootstrap)) {
            *rpc = m->bootstrap;
            return 0;
        }
        pthread_mutex_lock(&m->io_lock);
        rc = redial_bootstrap(m);
        pthread_mutex_unlock(&m->io_lock);
        if (rc == 0)
            *rpc = m->bootstrap;
        return rc;
    }
    pthread_mutex_lock(&m->lock);
    mnode *n = find_node(m, node);
    sl_rpc *open = n ? n->rpc : NULL;
    pthread_mutex_unlock(&m->lock);
    if (n == NULL)
        return SL_ECONNREFUSED; /* not in the brokers list: wait for metadata that names it */
    if (open && !sl_rpc_is_closed(open)) {
        *rpc = open;
        return 0;
    }
    pthread_mutex_lock(&m->io_lock);
    rc = dial(m, n, rpc);
    pthread_mutex_unlock(&m->io_lock);
    return rc;
}

int sl_cl_meta_list_offset(sl_cl_meta *m, const char *topic, int32_t partition, int64_t when,
                           int wait_ms, int64_t *offset) {
    int64_t deadline = sl_clock_mono_ms() + wait_ms;
    for (;;) {
        int status;
        sl_cl_meta_refresh(m);
        pthread_mutex_lock(&m->lock);
        int32_t leader = leader_locked(m, topic, partition, &status);
        pthread_mutex_unlock(&m->lock);
        if (leader == SL_CL_META_NO_LEADER) {
            sl_cl_meta_refresh(m); /* at once for a topic never fetched */
            pthread_mutex_lock(&m->lock);
            leader = leader_locked(m, topic, partition, &status);
            pthread_mutex_unlock(&m->lock);
        }
        if (leader == SL_CL_META_NO_LEADER && status)
            return status; /* the topic does not exist */
        sl_rpc *rpc;
        int rc = leader == SL_CL_META_NO_LEADER ? SL_ENOTLEADER
                                                : sl_cl_meta_connect(m, leader, &rpc);
        if (rc == 0)
            rc = sl_cl_list_offset(rpc, m->timeout_ms, topic, partition, when, offset);
        /* Outside a cluster a failure is the caller's, as it always was. */
        if (!sl_cl_meta_note(m, rc) || leader == SL_CL_META_BOOTSTRAP)
            return rc;
        int64_t left = deadline - sl_clock_mono_ms();
        if (left <= 0)
            return rc;
        int64_t pause = m->backoff_ms < left ? m->backoff_ms : left;
        if (pause < 1)
            pause = 1;
        struct timespec ts = {pause / 1000, (pause % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* ---- peers ---- */

sl_cl_peer *sl_cl_peer_get(sl_cl_peer **list, int32_t node) {
    for (sl_cl_peer *p = *list; p; p = p->next)
        if (p->node == node)
            return p;
    sl_cl_peer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->node = node;
    p->next = *list;
    *list = p;
    return p;
}

sl_cl_peer *sl_cl_peer_of(sl_cl_meta *m, sl_cl_peer **list, const char *topic,
                          int32_t partition) {
    int32_t node = sl_cl_meta_leader(m, topic, partition);
    return node == SL_CL_META_NO_LEADER ? NULL : sl_cl_peer_get(list, node);
}

void sl_cl_peer_failed(sl_cl_meta *m, sl_cl_peer *peer, int64_t now) {
    int64_t b = peer->backoff_ms ? peer->backoff_ms * 2 : m->backoff_ms;
    peer->backoff_ms = b < m->backoff_max_ms ? b : m->backoff_max_ms;
    if (peer->backoff_ms < 1)
        peer->backoff_ms = 1;
    peer->down_until = now + peer->backoff_ms;
    sl_cl_meta_note(m, SL_ECONNREFUSED);
}

void sl_cl_peer_ok(sl_cl_peer *peer) {
    peer->backoff_ms = 0;
    peer->down_until = 0;
}

int64_t sl_cl_peers_next_up(const sl_cl_peer *list, int64_t now, int64_t next) {
    for (const sl_cl_peer *p = list; p; p = p->next)
        if (p->down_until > now && (next < 0 || p->down_until < next))
            next = p->down_until;
    return next;
}

void sl_cl_peers_free(sl_cl_peer *list) {
    while (list) {
        sl_cl_peer *next = list->next;
        free(list);
        list = next;
    }
}

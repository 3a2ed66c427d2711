#include "cluster/quorum.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "sluice/err.h"

/* Leader elections take 1.3-1.7 s with these (measured with libraft 0.15 on these machines). */
#define ELECTION_MS 500
#define HEARTBEAT_MS 50
#define TICK_MS 100 /* how often the leader is looked at */

/* A proposal travels from a caller's thread to the loop thread and back. */
typedef struct sl_quorum sl_quorum;

typedef struct proposal {
    sl_quorum *q;
    struct raft_apply req;
    struct raft_buffer buf;
    int status;
    bool done;
    bool abandoned; /* the caller timed out: the completion frees it */
    struct proposal *next;
} proposal;

struct sl_quorum {
    int32_t id;
    sl_quorum_apply_fn apply;
    void *arg;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft raft;
    struct raft_fsm fsm;
    pthread_t thread;
    pthread_mutex_t lock; /* queue, stopping, and each proposal's done/status */
    pthread_cond_t cond;
    proposal *queue, *queue_tail; /* in proposal order */
    bool stopping;
    bool closing; /* loop thread only: raft_close was called */
    atomic_int_fast32_t leader;
    atomic_uint_fast64_t applied;    /* the index of the last entry applied here */
    atomic_uint_fast64_t last_index; /* the index of the last entry in the local log */
    int32_t logged_leader; /* loop thread only */
};

int sl_quorum_parse_peers(const char *text, sl_quorum_peer *peers, size_t max, size_t *n,
                          char *errbuf, size_t errlen) {
    *n = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[128];
        if (len == 0 || len >= sizeof(item)) {
            snprintf(errbuf, errlen, "controllers: an empty or overlong entry in \"%s\"", text);
            return SL_EINVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *at = strchr(item, '@'), *colon = at ? strrchr(at, ':') : NULL, *id_end = NULL,
             *port_end = NULL;
        long id = at ? strtol(item, &id_end, 10) : 0;
        long port = colon ? strtol(colon + 1, &port_end, 10) : 0;
        struct in_addr addr;
        if (at == NULL || colon == NULL || id_end != at || id <= 0 || id > INT32_MAX ||
            port <= 0 || port > 65535 || *port_end != '\0') {
            snprintf(errbuf, errlen, "controllers: \"%s\" is not ID@HOST:PORT (ID a positive "
                     "node id)", item);
            return SL_EINVAL;
        }
        *colon = '\0';
        if (inet_pton(AF_INET, at + 1, &addr) != 1) {
            snprintf(errbuf, errlen, "controllers: \"%s\" must be a numeric IPv4 address (Raft's "
                     "transport resolves no names)", at + 1);
            return SL_EINVAL;
        }
        for (size_t i = 0; i < *n; i++)
            if (peers[i].id == (int32_t)id) {
                snprintf(errbuf, errlen, "controllers: node id %ld appears twice", id);
                return SL_EINVAL;
            }
        if (*n == max) {
            snprintf(errbuf, errlen, "controllers: more than %zu", max);
            return SL_EINVAL;
        }
        peers[*n].id = (int32_t)id;
        snprintf(peers[*n].address, sizeof(peers[*n].address), "%s:%ld", at + 1, port);
        (*n)++;
        p += len + (end ? 1 : 0);
    }
    if (*n == 0) {
        snprintf(errbuf, errlen, "controllers: none given");
        return SL_EINVAL;
    }
    return 0;
}

/* ---- the state machine: entries are [u32 length][data][zeros to a multiple of 8] ---- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result) {
    sl_quorum *q = fsm->data;
    *result = NULL;
    if (buf->len < 4)
        return 0; /* a logical error must not stall the cluster: never fail an apply */
    uint32_t len = sl_be32_get(buf->base);
    if (len > buf->len - 4) {
        sl_error("quorum", "a metadata entry of %zu bytes says it holds %u: skipped", buf->len,
                 len);
        return 0;
    }
    q->apply(q->arg, (const uint8_t *)buf->base + 4, len);
    /* libraft moves last_applied after this returns: this entry is the next one. */
    atomic_store(&q->applied, (uint64_t)raft_last_applied(&q->raft) + 1);
    return 0;
}

/* The log is never snapshotted (the threshold is out of reach); should libraft ask anyway,
 * it is told no. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n) {
    (void)fsm;
    (void)bufs;
    (void)n;
    return RAFT_NOMEM;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf) {
    (void)fsm;
    (void)buf;
    return RAFT_NOMEM;
}

/* ---- the loop thread ---- */

static void finish(sl_quorum *q, proposal *p, int status) {
    pthread_mutex_lock(&q->lock);
    bool abandoned = p->abandoned;
    p->status = status;
    p->done = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (abandoned)
        free(p);
}

static void applied(struct raft_apply *req, int status, void *result) {
    (void)result;
    proposal *p = req->data;
    int rc = 0;
    if (status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST)
        rc = SL_ENOTLEADER;
    else if (status == RAFT_IOERR || status == RAFT_NOSPACE) {
        /* libraft 0.15 cannot recover a leader from a failed write: stop rather than serve a
         * log this node can no longer keep. */
        sl_error("quorum", "the metadata log cannot be written (%s): stopping this node",
                 raft_strerror(status));
        _exit(1);
    } else if (status)
        rc = SL_EIO;
    finish(p->q, p, rc);
}

static void submit(sl_quorum *q, proposal *p) {
    if (raft_state(&q->raft) != RAFT_LEADER) {
        raft_free(p->buf.base);
        finish(q, p, SL_ENOTLEADER);
        return;
    }
    p->req.data = p;
    p->q = q;
    int rv = raft_apply(&q->raft, &p->req, &p->buf, 1, applied);
    if (rv == RAFT_IOERR || rv == RAFT_NOSPACE) {
        sl_error("quorum", "the metadata log cannot be written (%s): stopping this node",
                 raft_strerror(rv));
        _exit(1);
    }
    if (rv) {
        /* Refused as not leader before the entry was taken: the buffer is still ours. Any
         * later failure inside raft_apply has freed it already. */
        if (rv == RAFT_NOTLEADER)
            raft_free(p->buf.base);
        finish(q, p, rv == RAFT_NOTLEADER ? SL_ENOTLEADER : SL_EIO);
    }
}

static void closed(struct raft *r) {
    sl_quorum *q = r->data;
    raft_uv_close(&q->io);
    raft_uv_tcp_close(&q->transport);
    uv_close((uv_handle_t *)&q->wake, NULL);
    uv_close((uv_handle_t *)&q->tick, NULL);
}

static void on_wake(uv_async_t *h) {
    sl_quorum *q = h->data;
    pthread_mutex_lock(&q->lock);
    proposal *list = q->queue;
    q->queue = q->queue_tail = NULL;
    bool stopping = q->stopping;
    pthread_mutex_unlock(&q->lock);
    while (list) {
        proposal *p = list;
        list = p->next;
        if (stopping) {
            raft_free(p->buf.base);
            finish(q, p, SL_ESTOPPED);
        } else {
            submit(q, p);
        }
    }
    if (stopping && !q->closing) {
        q->closing = true;
        uv_timer_stop(&q->tick);
        raft_close(&q->raft, closed);
    }
}

static void on_tick(uv_timer_t *t) {
    sl_quorum *q = t->data;
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&q->raft, &id, &addr);
    atomic_store(&q->leader, (int32_t)id);
    atomic_store(&q->applied, (uint64_t)raft_last_applied(&q->raft));
    atomic_store(&q->last_index, (uint64_t)raft_last_index(&q->raft));
    if ((int32_t)id != q->logged_leader) {
        if (id)
            sl_info("quorum", "controller %" PRId32 " leads the metadata quorum (term %llu)%s",
                    (int32_t)id, (unsigned long long)q->raft.current_term,
                    (int32_t)id == q->id ? ": this node" : "");
        else
            sl_warn("quorum", "the metadata quorum has no leader");
        q->logged_leader = (int32_t)id;
    }
}

static void *loop_main(void *arg) {
    sl_quorum *q = arg;
    uv_run(&q->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- the API ---- */

static const sl_quorum_peer *find_peer(const sl_quorum_conf *c, int32_t id) {
    for (size_t i = 0; i < c->npeers; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    return NULL;
}

int sl_quorum_start(const sl_quorum_conf *conf, sl_quorum **out, char *errbuf, size_t errlen) {
    const sl_quorum_peer *self = find_peer(conf, conf->id);
    if (self == NULL) {
        snprintf(errbuf, errlen, "node %" PRId32 " is not among the controllers", conf->id);
        return SL_EINVAL;
    }
    int rc = sl_fs_mkdirs(conf->dir);
    if (rc) {
        snprintf(errbuf, errlen, "cannot create %s", conf->dir);
        return rc;
    }
    sl_quorum *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return SL_ENOMEM;
    q->id = conf->id;
    q->apply = conf->apply;
    q->arg = conf->arg;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->fsm = (struct raft_fsm){.version = 1, .data = q, .apply = fsm_apply,
                               .snapshot = fsm_snapshot, .restore = fsm_restore};
    const char *step = "uv_loop_init";
    int rv = uv_loop_init(&q->loop);
    if (rv == 0 && (step = "raft_uv_tcp_init", rv = raft_uv_tcp_init(&q->transport, &q->loop)) == 0 &&
        (step = "raft_uv_init", rv = raft_uv_init(&q->io, &q->loop, conf->dir, &q->transport)) == 0 &&
        (step = "raft_init", rv = raft_init(&q->raft, &q->io, &q->fsm, (raft_id)conf->id,
                                            self->address)) == 0) {
        q->raft.data = q;
        raft_set_election_timeout(&q->raft, ELECTION_MS);
        raft_set_heartbeat_timeout(&q->raft, HEARTBEAT_MS);
        raft_set_snapshot_threshold(&q->raft, UINT32_MAX / 2);
        struct raft_configuration cfg;
        raft_configuration_init(&cfg);
        for (size_t i = 0; rv == 0 && i < conf->npeers; i++)
            rv = raft_configuration_add(&cfg, (raft_id)conf->peers[i].id, conf->peers[i].address,
                                        RAFT_VOTER);
        step = "raft_bootstrap";
        if (rv == 0) {
            /* Every start: only the very first one takes; later ones find the log there. */
            rv = raft_bootstrap(&q->raft, &cfg);
            if (rv == RAFT_CANTBOOTSTRAP)
                rv = 0;
        }
        raft_configuration_close(&cfg);
        if (rv == 0 && (step = "raft_start", rv = raft_start(&q->raft)) == 0) {
            uv_async_init(&q->loop, &q->wake, on_wake);
            q->wake.data = q;
            uv_timer_init(&q->loop, &q->tick);
            q->tick.data = q;
            uv_timer_start(&q->tick, on_tick, TICK_MS, TICK_MS);
            if (pthread_create(&q->thread, NULL, loop_main, q) == 0) {
                sl_info("quorum", "controller %" PRId32 " of %zu on %s, log in %s", conf->id,
                        conf->npeers, self->address, conf->dir);
                *out = q;
                return 0;
            }
            rv = RAFT_NOMEM;
        }
    }
    /* A half-made libraft instance is not safely torn down: this is a start-up failure, and
     * the process exits on it, so the memory is left to the exit. */
    snprintf(errbuf, errlen, "cannot start the metadata quorum (%s): %s%s%s%s", step,
             rv ? raft_strerror(rv) : "?",
             strcmp(step, "raft_start") == 0 ? " (is " : "",
             strcmp(step, "raft_start") == 0 ? self->address : "",
             strcmp(step, "raft_start") == 0 ? " in use, or not an address of this host?)" : "");
    return SL_EIO;
}

int sl_quorum_propose(sl_quorum *q, const void *data, size_t len, int timeout_ms) {
    if (len > UINT32_MAX - 16)
        return SL_ETOOLARGE;
    proposal *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return SL_ENOMEM;
    size_t padded = (4 + len + 7) & ~(size_t)7;
    p->buf.base = raft_malloc(padded);
    if (p->buf.base == NULL) {
        free(p);
        return SL_ENOMEM;
    }
    p->buf.len = padded;
    memset(p->buf.base, 0, padded);
    sl_be32_put(p->buf.base, (uint32_t)len);
    if (len)
        memcpy((uint8_t *)p->buf.base + 4, data, len);
    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        pthread_mutex_unlock(&q->lock);
        raft_free(p->buf.base);
        free(p);
        return SL_ESTOPPED;
    }
    if (q->queue_tail)
        q->queue_tail->next = p;
    else
        q->queue = p;
    q->queue_tail = p;
    uv_async_send(&q->wake);
    int64_t deadline = sl_clock_mono_ms() + timeout_ms;
    while (!p->done) {
        int64_t left = deadline - sl_clock_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts = sl_clock_deadline(left);
        pthread_cond_timedwait(&q->cond, &q->lock, &ts);
    }
    int rc = p->done ? p->status : SL_ETIMEDOUT;
    if (p->done)
        free(p);
    else
        p->abandoned = true; /* its completion frees it */
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int32_t sl_quorum_leader(sl_quorum *q) {
    return (int32_t)atomic_load(&q->leader);
}

uint64_t sl_quorum_applied(sl_quorum *q) {
    return atomic_load(&q->applied);
}

uint64_t sl_quorum_last_index(sl_quorum *q) {
    return atomic_load(&q->last_index);
}

void sl_quorum_stop(sl_quorum *q) {
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    uv_async_send(&q->wake);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    uv_loop_close(&q->loop);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q);
}

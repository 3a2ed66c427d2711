/* sl_producer: records go into a RecordBatch v2 builder per partition; a batch is closed when it
 * reaches batch.size or has waited linger.ms; a sender thread packs closed batches into produce
 * requests and keeps up to max.in.flight of them on the wire; answers arrive on the connection's
 * reader thread, which runs the delivery reports.
 *
 * Delivery guarantees:
 * - Idempotence: the producer gets an id from the broker; each batch carries it and a sequence
 *   number per partition, fixed when the batch is closed. A retried batch is written once: the
 *   broker answers a duplicate with the offsets of the first write.
 * - Retries: a batch that failed for a transient reason goes to the retry queue (ordered by
 *   when it was closed) with exponential backoff and jitter, until delivery.timeout.ms. A
 *   partition sends nothing new while it has batches waiting to be retried, and a retry waits
 *   for the partition's batches in flight, so order per partition is kept.
 * - Back pressure: send waits (up to max.block.ms) while buffer.memory bytes are held.
 * - Leaders: a request carries batches of partitions led by one node and goes to that node's
 *   connection, with up to max.in.flight requests per connection. A batch refused with
 *   SL_ENOTLEADER or lost with its connection is retried like any other, after the metadata
 *   has been refreshed; partitions without a leader, or whose leader's node cannot be reached,
 *   wait (until delivery.timeout.ms) for metadata naming one. Outside a cluster everything
 *   goes to the bootstrap connection.
 *
 * Lock order: the producer lock is never held while calling user callbacks or doing I/O. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "client/consumer_internal.h"
#include "client/internal.h"
#include "client/metadata.h"
#include "log/batch.h"
#include "log/compression.h"

/* Batch bytes per produce request: large enough to amortize a round trip, small enough that
 * several requests are in flight at once. */
#define REQUEST_MAX_BYTES (4u * 1024 * 1024)
/* Bytes charged per record on top of key, value and headers (varints, attributes). */
#define RECORD_OVERHEAD 24
/* Idempotence can only tell a retry from a new batch among the last five (the broker keeps
 * five per producer and partition). */
#define MAX_IN_FLIGHT_IDEMPOTENT 5

typedef struct delivery {
    sl_delivery_cb cb;
    void *opaque;
} delivery;

typedef struct ptopic ptopic;

typedef struct pbatch {
    ptopic *topic;
    int32_t partition;
    sl_batch_builder bb;
    delivery *dl;
    size_t ndl, dlcap;
    int64_t opened_ms;    /* monotonic: linger.ms and delivery.timeout.ms count from here */
    int64_t not_before;   /* monotonic: a retry waits until then */
    uint64_t order;       /* closing order: retries go back in this order */
    int32_t base_seq;     /* idempotence: sequence of the first record */
    int attempts;
    int last_error;
    int64_t mem;          /* bytes charged against buffer.memory */
    bool finished;        /* header, sequence and CRC written (once: retries resend as is) */
    struct pbatch *next;
} pbatch;

typedef struct ppart {
    pbatch *open;       /* the batch being filled */
    int32_t next_seq;   /* idempotence: sequence of the next record */
    int inflight;       /* batches on the wire */
    int retrying;       /* batches in the retry queue */
    uint64_t picked;    /* the request being built already has a batch of this partition */
    sl_cl_peer *leader; /* where its batches go; NULL while no leader is known */
} ppart;

struct ptopic {
    char *name;
    int32_t npartitions;
    ppart *parts;
    int32_t sticky;
    ptopic *next;
};

struct sl_producer {
    sl_conf *conf;
    sl_conf_values v;
    sl_rpc *rpc; /* the bootstrap connection: metadata, producer id, transactions */
    sl_cl_meta *meta;
    sl_cl_peer *peers;       /* the nodes batches go to */
    uint64_t routed_version; /* the metadata version partitions point at; 0: look again */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ptopic *topics;
    pbatch *ready_head, *ready_tail; /* closed, never sent; FIFO */
    pbatch *retry_head;              /* failed transiently; sorted by 'order' */
    pbatch *free_list;
    uint64_t next_order;
    uint64_t request_gen; /* numbers requests being built, for ppart.picked */
    uint64_t unreported; /* records given to send whose report has not run */
    int64_t buffered;    /* bytes charged against buffer.memory */
    int flushers;
    bool closing;
    int64_t producer_id; /* -1 without idempotence */
    int16_t epoch;
    bool transactional;    /* transactional.id is set: batches carry the transactional flag */
    atomic_bool in_txn;    /* something was sent (records or offsets) since the last end */
    uint64_t failed_at_txn; /* 'failed' when the current transaction began */
    enum sl_codec codec;
    sl_buf scratch; /* the sender thread's, for compression */
    pthread_t sender;
    atomic_uint_fast64_t failed;
    unsigned rand_state;
};

typedef struct request {
    sl_producer *p;
    sl_cl_peer *peer;
    pbatch **batches;
    size_t n;
} request;

static ptopic *find_topic(sl_producer *p, const char *name) {
    for (ptopic *t = p->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static pbatch *batch_get(sl_producer *p, ptopic *t, int32_t partition) {
    pbatch *b = p->free_list;
    if (b)
        p->free_list = b->next;
    else if ((b = calloc(1, sizeof(*b))) == NULL)
        return NULL;
    b->topic = t;
    b->partition = partition;
    b->ndl = 0;
    b->next = NULL;
    b->opened_ms = sl_clock_mono_ms();
    b->not_before = 0;
    b->attempts = 0;
    b->last_error = 0;
    b->mem = 0;
    b->finished = false;
    sl_batch_builder_reset(&b->bb);
    return b;
}

static void batch_put(sl_producer *p, pbatch *b) {
    b->next = p->free_list;
    p->free_list = b;
}

static void batch_destroy(pbatch *b) {
    sl_batch_builder_free(&b->bb);
    free(b->dl);
    free(b);
}

static bool is_retriable(int status) {
    switch (status) {
    case SL_ECLOSED:
    case SL_ETIMEDOUT:
    case SL_ESTOPPED:
    case SL_ECONNREFUSED:
    case SL_ENOTLEADER:
    case SL_ENOTENOUGHREPLICAS:
    case SL_ENOENT: /* known here, so not yet to its leader: a topic just created (as Kafka) */
    case SL_EIO:
    case SL_EOUTOFORDER: /* an earlier batch of the partition failed and is being retried */
        return true;
    default:
        return false;
    }
}

/* Moves the open batch of a partition to the ready queue and fixes its sequence. Lock held. */
static void close_batch(sl_producer *p, ptopic *t, int32_t partition) {
    ppart *pp = &t->parts[partition];
    pbatch *b = pp->open;
    if (b == NULL)
        return;
    pp->open = NULL;
    b->order = p->next_order++;
    b->base_seq = pp->next_seq;
    /* Sequences wrap at INT32_MAX, as Kafka's do. */
    pp->next_seq = (int32_t)(((int64_t)pp->next_seq + b->bb.count) % ((int64_t)INT32_MAX + 1));
    if (p->ready_tail)
        p->ready_tail->next = b;
    else
        p->ready_head = b;
    p->ready_tail = b;
    if (partition == t->sticky && t->npartitions > 1) {
        /* Kafka's sticky partitioner: records without a key fill one partition's batch, then
         * move to another partition, so batches stay large. */
        int32_t next = (int32_t)(rand_r(&p->rand_state) % (unsigned)(t->npartitions - 1));
        t->sticky = next >= partition ? next + 1 : next;
    }
    pthread_cond_broadcast(&p->cond);
}

static void report(pbatch *b, int status, int64_t base_offset) {
    for (size_t i = 0; i < b->ndl; i++)
        if (b->dl[i].cb)
            b->dl[i].cb(b->dl[i].opaque, status, b->topic->name, b->partition,
                        status ? -1 : base_offset < 0 ? -1 : base_offset + (int64_t)i);
}

/* Inserts a failed batch into the retry queue by closing order, with its backoff. Lock held. */
static void schedule_retry(sl_producer *p, pbatch *b, int status) {
    int64_t backoff = p->v.retry_backoff_ms;
    for (int i = 1; i < b->attempts && backoff < p->v.retry_backoff_max_ms; i++)
        backoff *= 2;
    if (backoff > p->v.retry_backoff_max_ms)
        backoff = p->v.retry_backoff_max_ms;
    /* +-20% jitter, so producers that failed together do not retry together. */
    int64_t jitter = backoff / 5;
    if (jitter > 0)
        backoff += (int64_t)(rand_r(&p->rand_state) % (unsigned)(2 * jitter + 1)) - jitter;
    b->not_before = sl_clock_mono_ms() + backoff;
    b->last_error = status;
    b->topic->parts[b->partition].retrying++;
    pbatch **pp = &p->retry_head;
    while (*pp && (*pp)->order < b->order)
        pp = &(*pp)->next;
    b->next = *pp;
    *pp = b;
}

/* Reports each finished batch (status in last_error, base offset in not_before), then returns
 * the batches to the pool and releases their share of the buffer. Called without the lock, since
 * delivery reports run user code. */
static void settle(sl_producer *p, pbatch *list) {
    uint64_t records = 0, failed = 0;
    int64_t mem = 0;
    for (pbatch *b = list; b; b = b->next) {
        report(b, b->last_error, b->not_before);
        records += b->ndl;
        mem += b->mem;
        if (b->last_error)
            failed += b->ndl;
    }
    atomic_fetch_add(&p->failed, failed);
    pthread_mutex_lock(&p->lock);
    while (list) {
        pbatch *next = list->next;
        batch_put(p, list);
        list = next;
    }
    p->unreported -= records;
    p->buffered -= mem;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Settles a request's batches: reports what is final, requeues what is retriable. Called
 * without the lock. With 'status' NULL every batch gets 'all_status'. */
static void finish_request(request *r, const int *status, const int64_t *base, int all_status) {
    sl_producer *p = r->p;
    int64_t now = sl_clock_mono_ms();
    pbatch *final = NULL;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < r->n; i++) {
        pbatch *b = r->batches[i];
        int st = status ? status[i] : all_status;
        b->topic->parts[b->partition].inflight--;
        if (st)
            sl_cl_meta_note(p->meta, st); /* a moved leader or a lost node: refresh */
        if (st && is_retriable(st) && !p->closing &&
            now - b->opened_ms < p->v.delivery_timeout_ms) {
            schedule_retry(p, b, st);
            continue;
        }
        b->last_error = st;
        b->not_before = base ? base[i] : -1; /* reused to carry the offset to the report */
        b->next = final;
        final = b;
    }
    r->peer->inflight--;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);

    settle(p, final);
    free(r->batches);
    free(r);
}

/* The broker's answer: one entry per batch, in request order (one topic entry per batch). */
static void on_answer(void *arg, int status, const uint8_t *body, size_t len) {
    request *r = arg;
    int *st = calloc(r->n, sizeof(*st));
    int64_t *base = calloc(r->n, sizeof(*base));
    if (st == NULL || base == NULL) {
        free(st);
        free(base);
        finish_request(r, NULL, NULL, SL_ENOMEM);
        return;
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    const msgpack_object *items, *topics;
    size_t n, nt = 0;
    int rs = status;
    if (rs == 0) {
        if (sl_native_decode_response(body, len, &up, 3, &items, &n, &rs, NULL, 0) == 0 &&
            rs == 0 && sl_mp_array(&items[2], 0, &topics, &nt) == 0 && nt == r->n) {
            for (size_t i = 0; i < r->n; i++) {
                const msgpack_object *t, *parts, *f;
                size_t k;
                int64_t s = SL_EPROTO, off = -1;
                if (sl_mp_array(&topics[i], 2, &t, &k) == 0 &&
                    sl_mp_array(&t[1], 1, &parts, &k) == 0 &&
                    sl_mp_array(&parts[0], 3, &f, &k) == 0 && sl_mp_int(&f[1], &s) == 0)
                    sl_mp_int(&f[2], &off);
                st[i] = (int)s;
                base[i] = off;
            }
        } else if (rs == 0) {
            rs = SL_EPROTO;
        }
    }
    if (rs)
        for (size_t i = 0; i < r->n; i++)
            st[i] = rs;
    msgpack_unpacked_destroy(&up);
    finish_request(r, st, base, 0);
    free(st);
    free(base);
}

/* Compresses the records and writes the header, the idempotence fields and the CRC: once per
 * batch, on the sender thread, so that a retry resends the very same bytes. */
static void finish_batch(sl_producer *p, pbatch *b) {
    if (b->finished)
        return;
    if (p->producer_id >= 0) {
        b->bb.producer_id = p->producer_id;
        b->bb.producer_epoch = p->epoch;
        b->bb.base_sequence = b->base_seq;
        b->bb.flags = p->transactional ? SL_BATCH_ATTR_TRANSACTIONAL : 0;
    }
    if (sl_batch_builder_finish_codec(&b->bb, p->codec, &p->scratch) != 0)
        sl_batch_builder_finish(&b->bb); /* out of memory to compress: send it as it is */
    b->finished = true;
}

/* Whether batch 'b' may join the request being built for 'peer' (NULL until its first batch
 * chooses one). One batch per partition per request, and (with idempotence) at most five on the
 * wire per partition: the broker recognises a retried batch only among the last five it wrote
 * for the producer and partition, so a request carrying more would, once retried, look like a
 * gap forever. */
static bool can_pick(const sl_producer *p, const pbatch *b, const sl_cl_peer *peer, size_t n,
                     size_t bytes, int64_t now) {
    const ppart *part = &b->topic->parts[b->partition];
    if (part->picked == p->request_gen)
        return false;
    const sl_cl_peer *leader = part->leader;
    if (leader == NULL || leader->down_until > now)
        return false; /* waits for metadata naming a leader, or for the leader's node */
    if (peer ? leader != peer : leader->inflight >= p->v.max_in_flight)
        return false;
    if (p->producer_id >= 0 && part->inflight >= MAX_IN_FLIGHT_IDEMPOTENT)
        return false;
    return n == 0 || bytes + b->bb.buf.len <= REQUEST_MAX_BYTES;
}

static void pick(sl_producer *p, pbatch *b, pbatch **out, size_t *n, size_t *bytes) {
    ppart *part = &b->topic->parts[b->partition];
    part->picked = p->request_gen;
    part->inflight++;
    out[(*n)++] = b;
    *bytes += b->bb.buf.len;
}

/* Takes the batches of the next request off the queues: all for the node that leads the first
 * one that can go, returned in 'peer'. Retries come first, in order, once due and once their
 * partition has nothing in flight; new batches wait while their partition has retries pending.
 * Lock held. Returns the number taken into 'out' (room for 'cap'). */
static size_t take_batches(sl_producer *p, pbatch **out, size_t cap, int64_t now,
                           sl_cl_peer **peer) {
    size_t n = 0, bytes = 0;
    p->request_gen++;
    *peer = NULL;
    for (pbatch **pp = &p->retry_head; *pp && n < cap;) {
        pbatch *b = *pp;
        ppart *part = &b->topic->parts[b->partition];
        if (b->not_before > now || part->inflight > 0 || !can_pick(p, b, *peer, n, bytes, now)) {
            /* Nothing later of this partition may overtake it: a later retry sent first could
             * be written while this one (written before, acknowledgement lost) slides out of
             * the broker's window of five and is refused as out of order for ever. */
            part->picked = p->request_gen;
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        part->retrying--;
        *peer = part->leader;
        pick(p, b, out, &n, &bytes);
    }
    pbatch *prev = NULL;
    for (pbatch *b = p->ready_head; b && n < cap;) {
        pbatch *next = b->next;
        ppart *part = &b->topic->parts[b->partition];
        if (part->retrying > 0 || !can_pick(p, b, *peer, n, bytes, now)) {
            part->picked = p->request_gen; /* a later batch of it must not overtake this one */
            prev = b;
            b = next;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            p->ready_head = next;
        if (p->ready_tail == b)
            p->ready_tail = prev;
        *peer = part->leader;
        pick(p, b, out, &n, &bytes);
        b = next;
    }
    return n;
}

/* Builds and sends one produce request. Lock held; dropped while building and sending. Returns
 * false when nothing could be sent now. */
static bool send_some(sl_producer *p, sl_buf *frame, int64_t now) {
    pbatch *picked[256];
    sl_cl_peer *peer;
    size_t n = take_batches(p, picked, 256, now, &peer);
    if (n == 0)
        return false;
    request *r = malloc(sizeof(*r));
    pbatch **batches = malloc(n * sizeof(*batches));
    if (r == NULL || batches == NULL) {
        free(r);
        free(batches);
        for (size_t i = 0; i < n; i++) {
            picked[i]->topic->parts[picked[i]->partition].inflight--;
            schedule_retry(p, picked[i], SL_ENOMEM);
        }
        return false;
    }
    memcpy(batches, picked, n * sizeof(*batches));
    peer->inflight++;
    pthread_mutex_unlock(&p->lock);

    *r = (request){p, peer, batches, n};
    sl_rpc *rpc;
    int rc = sl_cl_meta_connect(p->meta, peer->node, &rpc);
    if (rc) {
        /* The leader's node cannot be reached: its batches wait as retries, and the node's
         * partitions until it is back or the metadata names other leaders. */
        finish_request(r, NULL, NULL, rc);
        pthread_mutex_lock(&p->lock);
        sl_cl_peer_failed(p->meta, peer, sl_clock_mono_ms());
        return true;
    }
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(rpc);
    sl_cl_begin(frame, id, SL_API_PRODUCE, &pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, p->v.acks);
    msgpack_pack_int(&pk, p->v.request_timeout_ms);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        pbatch *b = batches[i];
        finish_batch(p, b);
        b->attempts++;
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, b->topic->name);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_int32(&pk, b->partition);
        msgpack_pack_bin(&pk, b->bb.buf.len);
        msgpack_pack_bin_body(&pk, b->bb.buf.data, b->bb.buf.len);
    }
    sl_rpc_frame_end(frame);
    bool want_answer = p->v.acks != 0;
    rc = sl_rpc_send(rpc, id, frame->data, frame->len, p->v.request_timeout_ms,
                     want_answer ? on_answer : NULL, r);
    if (rc || !want_answer)
        finish_request(r, NULL, NULL, rc); /* acks=0: sent is all we will know */
    pthread_mutex_lock(&p->lock);
    sl_cl_peer_ok(peer);
    return true;
}

/* The earlier of two monotonic times, -1 meaning none. */
static int64_t earliest(int64_t a, int64_t b) {
    return a < 0 || (b >= 0 && b < a) ? b : a;
}

/* Closes open batches whose linger has passed (all of them when flushing or closing) and
 * returns the earliest time something is due (a linger, a retry, an expiry), or -1. Lock
 * held. */
static int64_t close_lingered(sl_producer *p, int64_t now) {
    int64_t next = -1;
    bool all = p->flushers > 0 || p->closing;
    for (ptopic *t = p->topics; t; t = t->next) {
        for (int32_t i = 0; i < t->npartitions; i++) {
            pbatch *b = t->parts[i].open;
            if (b == NULL)
                continue;
            int64_t due = b->opened_ms + p->v.linger_ms;
            if (all || due <= now)
                close_batch(p, t, i);
            else if (next < 0 || due < next)
                next = due;
        }
    }
    /* A retry already due but held back (its partition has batches in flight, no leader, or
     * a leader out of reach) is woken by the answer, the refresh or the node's backoff. */
    for (pbatch *b = p->retry_head; b; b = b->next)
        if (b->not_before > now && (next < 0 || b->not_before < next))
            next = b->not_before;
    /* Held-back batches still expire on time. */
    if (p->ready_head)
        next = earliest(next, p->ready_head->opened_ms + p->v.delivery_timeout_ms);
    if (p->retry_head)
        next = earliest(next, p->retry_head->opened_ms + p->v.delivery_timeout_ms);
    return next;
}

/* Fails queued batches older than delivery.timeout.ms (they cannot be sent: the broker is
 * away). Lock held; dropped to report. */
static void expire_queued(sl_producer *p, int64_t now) {
    pbatch *expired = NULL;
    for (pbatch **pp = &p->retry_head; *pp;) {
        pbatch *b = *pp;
        if (now - b->opened_ms >= p->v.delivery_timeout_ms) {
            *pp = b->next;
            b->topic->parts[b->partition].retrying--;
            b->next = expired;
            expired = b;
        } else {
            pp = &b->next;
        }
    }
    pbatch *prev = NULL;
    for (pbatch *b = p->ready_head; b;) {
        pbatch *next = b->next;
        if (now - b->opened_ms >= p->v.delivery_timeout_ms) {
            if (prev)
                prev->next = next;
            else
                p->ready_head = next;
            if (p->ready_tail == b)
                p->ready_tail = prev;
            if (b->last_error == 0)
                b->last_error = SL_ETIMEDOUT;
            b->not_before = -1;
            b->next = expired;
            expired = b;
        } else {
            prev = b;
        }
        b = next;
    }
    if (expired == NULL)
        return;
    pthread_mutex_unlock(&p->lock);
    settle(p, expired);
    pthread_mutex_lock(&p->lock);
}

/* Points each partition at its leader's peer once the metadata changed. Lock held. */
static void route_partitions(sl_producer *p) {
    if (!sl_cl_meta_changed(p->meta, &p->routed_version))
        return;
    for (ptopic *t = p->topics; t; t = t->next)
        for (int32_t i = 0; i < t->npartitions; i++)
            t->parts[i].leader = sl_cl_peer_of(p->meta, &p->peers, t->name, i);
}

/* Sends while something can go; a node that cannot be reached waits out its backoff (its
 * batches expire after delivery.timeout.ms), and stale metadata is refreshed here, off the
 * lock. */
static void *sender_main(void *arg) {
    sl_producer *p = arg;
    sl_buf frame = SL_BUF_INIT;
    pthread_mutex_lock(&p->lock);
    while (!p->closing) {
        int64_t now = sl_clock_mono_ms();
        int64_t next = close_lingered(p, now);
        expire_queued(p, now);
        int64_t due = sl_cl_meta_refresh_due(p->meta);
        if (due >= 0 && due <= now) {
            pthread_mutex_unlock(&p->lock);
            sl_cl_meta_refresh(p->meta);
            pthread_mutex_lock(&p->lock);
            due = sl_cl_meta_refresh_due(p->meta);
        }
        route_partitions(p);
        if (send_some(p, &frame, now))
            continue;
        next = sl_cl_peers_next_up(p->peers, now, earliest(next, due));
        if (next < 0) {
            pthread_cond_wait(&p->cond, &p->lock);
        } else {
            int64_t wait = next - sl_clock_mono_ms();
            struct timespec ts = sl_clock_deadline(wait > 0 ? wait : 0);
            pthread_cond_timedwait(&p->cond, &p->lock, &ts);
        }
    }
    pthread_mutex_unlock(&p->lock);
    sl_buf_free(&frame);
    sl_buf_free(&p->scratch);
    return NULL;
}

static int init_producer_id(sl_producer *p, char *errbuf, size_t errlen) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    int64_t pid, epoch;
    uint32_t id = sl_rpc_next_id(p->rpc);
    sl_cl_begin(&req, id, SL_API_INIT_PRODUCER_ID, &pk);
    if (p->transactional) {
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, p->v.transactional_id);
        msgpack_pack_int(&pk, p->v.transaction_timeout_ms);
    } else {
        msgpack_pack_array(&pk, 0);
    }
    msgpack_unpacked_init(&up);
    int rc = sl_cl_call(p->rpc, &req, id, p->v.request_timeout_ms, &resp, &up, 4, &items, &n,
                        errbuf, errlen);
    if (rc == 0 && (sl_mp_int(&items[2], &pid) || sl_mp_int(&items[3], &epoch)))
        rc = SL_EPROTO;
    if (rc == 0) {
        p->producer_id = pid;
        p->epoch = (int16_t)epoch;
    }
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

int sl_producer_new(sl_conf *conf, sl_producer **out, char *errbuf, size_t errlen) {
    sl_producer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return SL_ENOMEM;
    sl_conf_values_get(conf, &p->v);
    p->producer_id = -1;
    if (sl_codec_parse(p->v.compression, &p->codec) != 0) {
        snprintf(errbuf, errlen, "unknown compression.type \"%s\"", p->v.compression);
        free(p);
        return SL_EBADCONFIG;
    }
    if (p->v.idempotence && p->v.max_in_flight > MAX_IN_FLIGHT_IDEMPOTENT) {
        snprintf(errbuf, errlen, "max.in.flight must be at most %d with enable.idempotence",
                 MAX_IN_FLIGHT_IDEMPOTENT);
        free(p);
        return SL_EBADCONFIG;
    }
    p->transactional = p->v.transactional_id[0] != '\0';
    if (p->transactional && !p->v.idempotence) {
        snprintf(errbuf, errlen, "transactional.id needs enable.idempotence=true");
        free(p);
        return SL_EBADCONFIG;
    }
    int rc = sl_cl_connect(&p->v, &p->rpc, errbuf, errlen);
    if (rc == 0)
        rc = sl_cl_meta_new(&p->v, p->rpc, &p->meta);
    if (rc == 0 && p->v.idempotence)
        rc = init_producer_id(p, errbuf, errlen);
    if (rc) {
        sl_cl_meta_destroy(p->meta);
        if (p->rpc)
            sl_rpc_close(p->rpc);
        free(p);
        return rc;
    }
    p->conf = conf;
    p->rand_state = (unsigned)sl_clock_mono_ns();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->sender, NULL, sender_main, p) != 0) {
        sl_cl_meta_destroy(p->meta);
        sl_rpc_close(p->rpc);
        free(p);
        return SL_ENOMEM;
    }
    *out = p;
    return 0;
}

/* The cached topic, asking the broker for its partition count the first time. */
static int topic_for(sl_producer *p, const char *name, ptopic **out) {
    pthread_mutex_lock(&p->lock);
    ptopic *t = find_topic(p, name);
    pthread_mutex_unlock(&p->lock);
    if (t) {
        *out = t;
        return 0;
    }
    int32_t n;
    int rc = sl_cl_meta_partition_count(p->meta, name, &n);
    if (rc)
        return rc;
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->name = strdup(name)) == NULL ||
        (t->parts = calloc((size_t)n, sizeof(*t->parts))) == NULL) {
        if (t)
            free(t->name);
        free(t);
        return SL_ENOMEM;
    }
    t->npartitions = n;
    t->sticky = (int32_t)(sl_clock_mono_ns() % n);
    pthread_mutex_lock(&p->lock);
    ptopic *raced = find_topic(p, name);
    if (raced) {
        free(t->parts);
        free(t->name);
        free(t);
        t = raced;
    } else {
        t->next = p->topics;
        p->topics = t;
        p->routed_version = 0; /* its partitions need their leaders */
    }
    pthread_mutex_unlock(&p->lock);
    *out = t;
    return 0;
}

/* Waits for room in buffer.memory. Lock held. */
static int wait_for_room(sl_producer *p, int64_t need) {
    if (p->buffered + need <= p->v.buffer_memory || p->buffered == 0)
        return 0; /* an empty producer always takes one record, however large */
    if (p->v.max_block_ms == 0)
        return SL_EFULL;
    int64_t deadline = sl_clock_mono_ms() + p->v.max_block_ms;
    while (p->buffered > 0 && p->buffered + need > p->v.buffer_memory && !p->closing) {
        int64_t left = deadline - sl_clock_mono_ms();
        if (left <= 0)
            return SL_EFULL;
        struct timespec ts = sl_clock_deadline(left);
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    return p->closing ? SL_ECLOSED : 0;
}

int sl_producer_send(sl_producer *p, const sl_produce_record *rec) {
    if (rec->topic == NULL || rec->nheaders > 10000)
        return SL_EINVAL;
    if (p->transactional)
        atomic_store(&p->in_txn, true); /* erring on the side of ending it */
    ptopic *t;
    int rc = topic_for(p, rec->topic, &t);
    if (rc)
        return rc;
    int32_t part = rec->partition;
    if (part == SL_PARTITION_ANY && rec->key)
        part = sl_partition_for_key(rec->key, rec->key_len, t->npartitions);
    if (part != SL_PARTITION_ANY && (part < 0 || part >= t->npartitions))
        return SL_EINVAL;
    sl_batch_header_kv hdrs[16], *hv = hdrs;
    if (rec->nheaders > 16 && (hv = malloc(rec->nheaders * sizeof(*hv))) == NULL)
        return SL_ENOMEM;
    int64_t mem = (int64_t)(rec->key_len + rec->value_len) + RECORD_OVERHEAD;
    for (size_t i = 0; i < rec->nheaders; i++) {
        hv[i] = (sl_batch_header_kv){rec->headers[i].key, strlen(rec->headers[i].key),
                                     rec->headers[i].value, rec->headers[i].value_len};
        mem += (int64_t)(hv[i].key_len + hv[i].value_len) + 4;
    }
    int64_t ts = rec->timestamp ? rec->timestamp : sl_clock_wall_ms();

    pthread_mutex_lock(&p->lock);
    rc = p->closing ? SL_ECLOSED : wait_for_room(p, mem);
    if (rc)
        goto out;
    if (part == SL_PARTITION_ANY)
        part = t->sticky;
    ppart *pp = &t->parts[part];
    pbatch *b = pp->open;
    if (b && b->bb.count > 0) {
        size_t need = sl_batch_record_size(ts - b->bb.base_timestamp, b->bb.count, rec->key_len,
                                           rec->key == NULL, rec->value_len, rec->value == NULL,
                                           hv, rec->nheaders);
        if (b->bb.buf.len + need > (size_t)p->v.batch_size) {
            close_batch(p, t, part);
            b = NULL;
        }
    }
    bool opened = false;
    if (b == NULL) {
        if ((b = batch_get(p, t, part)) == NULL) {
            rc = SL_ENOMEM;
            goto out;
        }
        pp->open = b;
        opened = true;
    }
    if (b->ndl == b->dlcap) {
        size_t cap = b->dlcap ? b->dlcap * 2 : 64;
        delivery *d = realloc(b->dl, cap * sizeof(*d));
        if (d == NULL) {
            rc = SL_ENOMEM;
            goto out;
        }
        b->dl = d;
        b->dlcap = cap;
    }
    rc = sl_batch_builder_add(&b->bb, ts, rec->key, rec->key_len, rec->value, rec->value_len, hv,
                              rec->nheaders);
    if (rc)
        goto out;
    b->dl[b->ndl++] = (delivery){rec->cb, rec->opaque};
    b->mem += mem;
    p->buffered += mem;
    p->unreported++;
    if (b->bb.buf.len >= (size_t)p->v.batch_size)
        close_batch(p, t, part);
    else if (opened)
        pthread_cond_broadcast(&p->cond); /* the sender learns the new linger deadline */
out:
    pthread_mutex_unlock(&p->lock);
    if (hv != hdrs)
        free(hv);
    return rc;
}

int sl_producer_send_batch(sl_producer *p, const sl_produce_record *recs, size_t n) {
    if (n == 0)
        return 0;
    const char *topic = recs[0].topic;
    int32_t part = recs[0].partition;
    if (topic == NULL || part < 0)
        return SL_EINVAL;
    if (p->transactional)
        atomic_store(&p->in_txn, true);
    int64_t mem = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].topic == NULL || strcmp(recs[i].topic, topic) != 0 ||
            recs[i].partition != part || recs[i].nheaders != 0)
            return SL_EINVAL;
        mem += (int64_t)(recs[i].key_len + recs[i].value_len) + RECORD_OVERHEAD;
    }
    ptopic *t;
    int rc = topic_for(p, topic, &t);
    if (rc)
        return rc;
    if (part >= t->npartitions)
        return SL_EINVAL;
    int64_t now = sl_clock_wall_ms();
    pthread_mutex_lock(&p->lock);
    rc = p->closing ? SL_ECLOSED : wait_for_room(p, mem);
    pbatch *b = NULL;
    if (rc == 0) {
        close_batch(p, t, part); /* what is open goes first, as a batch of its own */
        if ((b = batch_get(p, t, part)) == NULL)
            rc = SL_ENOMEM;
    }
    if (rc == 0 && b->dlcap < n) {
        delivery *d = realloc(b->dl, n * sizeof(*d));
        if (d == NULL)
            rc = SL_ENOMEM;
        else
            b->dl = d, b->dlcap = n;
    }
    /* All under the lock, and closed at once: the sender cannot take the batch half built. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const sl_produce_record *r = &recs[i];
        rc = sl_batch_builder_add(&b->bb, r->timestamp ? r->timestamp : now, r->key, r->key_len,
                                  r->value, r->value_len, NULL, 0);
        if (rc == 0)
            b->dl[b->ndl++] = (delivery){r->cb, r->opaque};
    }
    if (rc == 0) {
        b->mem = mem;
        p->buffered += mem;
        p->unreported += n;
        t->parts[part].open = b;
        close_batch(p, t, part);
    } else if (b) {
        batch_put(p, b); /* none of it was queued */
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int sl_producer_flush(sl_producer *p, int timeout_ms) {
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : sl_clock_mono_ms() + timeout_ms;
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    p->flushers++;
    pthread_cond_broadcast(&p->cond);
    while (p->unreported > 0) {
        int64_t left = deadline - sl_clock_mono_ms();
        if (left <= 0) {
            rc = SL_ETIMEDOUT;
            break;
        }
        struct timespec ts = sl_clock_deadline(left < 1000 ? left : 1000);
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    p->flushers--;
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* ---- transactions ---- */

/* Sends a transaction request whose body starts [transactional_id, producer_id, epoch] and
 * waits for its status. */
static int txn_call(sl_producer *p, uint16_t api, sl_buf *req, uint32_t id, int timeout_ms,
                    char *errbuf, size_t errlen) {
    sl_buf resp = SL_BUF_INIT;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    msgpack_unpacked_init(&up);
    int rc = sl_cl_call(p->rpc, req, id, timeout_ms, &resp, &up, 2, &items, &n, errbuf, errlen);
    if (rc && errbuf[0] == '\0')
        snprintf(errbuf, errlen, "%s failed: %s",
                 api == SL_API_END_TXN ? "ending the transaction" : "committing offsets",
                 sl_strerror(rc));
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&resp);
    return rc;
}

static void txn_begin(sl_producer *p, sl_buf *req, uint32_t id, uint16_t api, size_t nfields,
                      msgpack_packer *pk) {
    sl_cl_begin(req, id, api, pk);
    msgpack_pack_array(pk, nfields);
    sl_mp_pack_str(pk, p->v.transactional_id);
    msgpack_pack_int64(pk, p->producer_id);
    msgpack_pack_int16(pk, p->epoch);
}

int sl_producer_send_offsets_to_transaction(sl_producer *p, sl_consumer *c,
                                            const sl_topic_partition *offsets, size_t n,
                                            char *errbuf, size_t errlen) {
    errbuf[0] = '\0';
    if (!p->transactional) {
        snprintf(errbuf, errlen, "the producer has no transactional.id");
        return SL_EINVAL;
    }
    if (c->v.group_id[0] == '\0') {
        snprintf(errbuf, errlen, "the consumer has no group.id");
        return SL_EINVAL;
    }
    int32_t generation;
    char member[300];
    sl_group_identity(c, &generation, member, sizeof(member));
    sl_buf req = SL_BUF_INIT;
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(p->rpc);
    txn_begin(p, &req, id, SL_API_TXN_OFFSET_COMMIT, 7, &pk);
    sl_mp_pack_str(&pk, c->v.group_id);
    msgpack_pack_int32(&pk, generation);
    sl_mp_pack_str(&pk, member);
    sl_group_pack_offsets(&pk, offsets, n);
    int rc = txn_call(p, SL_API_TXN_OFFSET_COMMIT, &req, id, p->v.request_timeout_ms, errbuf,
                      errlen);
    sl_buf_free(&req);
    if (rc == 0)
        atomic_store(&p->in_txn, true);
    return rc;
}

static int end_txn(sl_producer *p, bool commit, int timeout_ms, char *errbuf, size_t errlen) {
    errbuf[0] = '\0';
    if (!p->transactional) {
        snprintf(errbuf, errlen, "the producer has no transactional.id");
        return SL_EINVAL;
    }
    /* Every record of the transaction must be acknowledged before its markers go out. */
    int rc = sl_producer_flush(p, timeout_ms);
    if (rc) {
        snprintf(errbuf, errlen, "records of the transaction are still unacknowledged");
        return rc;
    }
    uint64_t failed = atomic_load(&p->failed);
    if (!atomic_load(&p->in_txn) && failed == p->failed_at_txn)
        return 0; /* nothing was written in it: no transaction to end */
    if (commit && failed != p->failed_at_txn) {
        snprintf(errbuf, errlen, "%" PRIu64 " record%s of the transaction failed: abort it",
                 failed - p->failed_at_txn, failed - p->failed_at_txn == 1 ? "" : "s");
        return SL_EIO;
    }
    sl_buf req = SL_BUF_INIT;
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(p->rpc);
    txn_begin(p, &req, id, SL_API_END_TXN, 4, &pk);
    if (commit)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    rc = txn_call(p, SL_API_END_TXN, &req, id, timeout_ms < 0 ? p->v.request_timeout_ms
                                                               : timeout_ms,
                  errbuf, errlen);
    sl_buf_free(&req);
    if (rc == 0) {
        p->failed_at_txn = failed;
        atomic_store(&p->in_txn, false);
    }
    return rc;
}

int sl_producer_commit_transaction(sl_producer *p, int timeout_ms, char *errbuf, size_t errlen) {
    return end_txn(p, true, timeout_ms, errbuf, errlen);
}

int sl_producer_abort_transaction(sl_producer *p, int timeout_ms, char *errbuf, size_t errlen) {
    return end_txn(p, false, timeout_ms, errbuf, errlen);
}

uint64_t sl_producer_failed_count(sl_producer *p) {
    return atomic_load(&p->failed);
}

static void fail_queue(sl_producer *p, pbatch *list) {
    while (list) {
        pbatch *b = list;
        list = b->next;
        report(b, SL_ECLOSED, -1);
        atomic_fetch_add(&p->failed, b->ndl);
        batch_destroy(b);
    }
}

void sl_producer_destroy(sl_producer *p) {
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->sender, NULL);
    /* In-flight requests fail with SL_ECLOSED through their callbacks (not retried: closing),
     * which still note statuses in the metadata: it goes last. */
    sl_rpc_close(p->rpc);
    sl_cl_meta_destroy(p->meta);
    /* What never left: report it as not delivered. */
    close_lingered(p, INT64_MAX);
    fail_queue(p, p->retry_head);
    fail_queue(p, p->ready_head);
    while (p->free_list) { /* recycled batches: nothing to report */
        pbatch *b = p->free_list;
        p->free_list = b->next;
        batch_destroy(b);
    }
    while (p->topics) {
        ptopic *t = p->topics;
        p->topics = t->next;
        free(t->parts);
        free(t->name);
        free(t);
    }
    sl_cl_peers_free(p->peers);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    sl_conf_destroy(p->conf);
    free(p);
}

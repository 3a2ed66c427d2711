/* sl_producer: records go into a RecordBatch v2 builder per partition; a batch is closed when it
 * reaches batch.size or has waited linger.ms; a sender thread packs closed batches into produce
 * requests and keeps up to max.in.flight of them on the wire; answers arrive on the connection's
 * reader thread, which runs the delivery reports.
 *
 * Lock order: the producer lock is never held while calling user callbacks or waiting on I/O. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "client/internal.h"
#include "log/batch.h"

/* Batch bytes per produce request: large enough to amortize a round trip, small enough that
 * several requests are in flight at once. */
#define REQUEST_MAX_BYTES (4u * 1024 * 1024)

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
    int64_t opened_ms; /* monotonic, for linger.ms */
    struct pbatch *next;
} pbatch;

struct ptopic {
    char *name;
    int32_t npartitions;
    pbatch **open; /* the batch being filled, per partition */
    int32_t sticky;
    ptopic *next;
};

struct sl_producer {
    sl_conf *conf;
    sl_conf_values v;
    sl_rpc *rpc;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ptopic *topics;
    pbatch *ready_head, *ready_tail;
    pbatch *free_list;
    int inflight;
    uint64_t unreported; /* records sent to the producer whose report has not run yet */
    int flushers;
    bool closing;
    pthread_t sender;
    atomic_uint_fast64_t failed;
    unsigned rand_state;
};

typedef struct request {
    sl_producer *p;
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

/* Moves the open batch of a partition to the ready queue. */
static void close_batch(sl_producer *p, ptopic *t, int32_t partition) {
    pbatch *b = t->open[partition];
    if (b == NULL)
        return;
    t->open[partition] = NULL;
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

/* Runs the reports of a finished request and gives its batches back. Called without the lock.
 * With 'status' NULL every batch gets 'all_status'. */
static void finish_request(request *r, const int *status, const int64_t *base, int all_status) {
    sl_producer *p = r->p;
    uint64_t records = 0, failed = 0;
    for (size_t i = 0; i < r->n; i++) {
        int st = status ? status[i] : all_status;
        report(r->batches[i], st, base ? base[i] : -1);
        records += r->batches[i]->ndl;
        if (st)
            failed += r->batches[i]->ndl;
    }
    atomic_fetch_add(&p->failed, failed);
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < r->n; i++)
        batch_put(p, r->batches[i]);
    p->inflight--;
    p->unreported -= records;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
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

/* Builds and sends one produce request from the ready queue. Called with the lock held; drops
 * it while building and sending. */
static void send_ready(sl_producer *p, sl_buf *frame) {
    size_t n = 0, bytes = 0;
    for (pbatch *b = p->ready_head; b && (n == 0 || bytes + b->bb.buf.len <= REQUEST_MAX_BYTES);
         b = b->next) {
        n++;
        bytes += b->bb.buf.len;
    }
    request *r = malloc(sizeof(*r));
    pbatch **batches = malloc(n * sizeof(*batches));
    if (r == NULL || batches == NULL) {
        free(r);
        free(batches);
        return; /* try again on the next wake-up */
    }
    for (size_t i = 0; i < n; i++) {
        batches[i] = p->ready_head;
        p->ready_head = p->ready_head->next;
    }
    if (p->ready_head == NULL)
        p->ready_tail = NULL;
    p->inflight++;
    pthread_mutex_unlock(&p->lock);

    *r = (request){p, batches, n};
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(p->rpc);
    sl_cl_begin(frame, id, SL_API_PRODUCE, &pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, p->v.acks);
    msgpack_pack_int(&pk, p->v.request_timeout_ms);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        pbatch *b = batches[i];
        sl_batch_builder_finish(&b->bb);
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
    int rc = sl_rpc_send(p->rpc, id, frame->data, frame->len, p->v.request_timeout_ms,
                         want_answer ? on_answer : NULL, r);
    if (rc || !want_answer)
        finish_request(r, NULL, NULL, rc); /* acks=0: sent is all we will know */
    pthread_mutex_lock(&p->lock);
}

/* Closes open batches whose linger has passed (all of them when flushing or closing) and
 * returns the earliest deadline among those still open, or -1. */
static int64_t close_lingered(sl_producer *p, int64_t now) {
    int64_t next = -1;
    bool all = p->flushers > 0 || p->closing;
    for (ptopic *t = p->topics; t; t = t->next) {
        for (int32_t i = 0; i < t->npartitions; i++) {
            pbatch *b = t->open[i];
            if (b == NULL)
                continue;
            int64_t due = b->opened_ms + p->v.linger_ms;
            if (all || due <= now)
                close_batch(p, t, i);
            else if (next < 0 || due < next)
                next = due;
        }
    }
    return next;
}

static void *sender_main(void *arg) {
    sl_producer *p = arg;
    sl_buf frame = SL_BUF_INIT;
    pthread_mutex_lock(&p->lock);
    while (!p->closing) {
        int64_t next = close_lingered(p, sl_clock_mono_ms());
        if (p->ready_head && p->inflight < p->v.max_in_flight) {
            send_ready(p, &frame);
            continue;
        }
        if (next < 0 || p->ready_head) {
            pthread_cond_wait(&p->cond, &p->lock);
        } else {
            struct timespec ts = sl_clock_deadline(next - sl_clock_mono_ms());
            pthread_cond_timedwait(&p->cond, &p->lock, &ts);
        }
    }
    pthread_mutex_unlock(&p->lock);
    sl_buf_free(&frame);
    return NULL;
}

int sl_producer_new(sl_conf *conf, sl_producer **out, char *errbuf, size_t errlen) {
    sl_producer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return SL_ENOMEM;
    sl_conf_values_get(conf, &p->v);
    int rc = sl_cl_connect(&p->v, &p->rpc, errbuf, errlen);
    if (rc) {
        free(p);
        return rc;
    }
    p->conf = conf;
    p->rand_state = (unsigned)sl_clock_mono_ns();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->sender, NULL, sender_main, p) != 0) {
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
    int rc = sl_cl_partition_count(p->rpc, p->v.request_timeout_ms, name, &n);
    if (rc)
        return rc;
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->name = strdup(name)) == NULL ||
        (t->open = calloc((size_t)n, sizeof(*t->open))) == NULL) {
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
        free(t->open);
        free(t->name);
        free(t);
        t = raced;
    } else {
        t->next = p->topics;
        p->topics = t;
    }
    pthread_mutex_unlock(&p->lock);
    *out = t;
    return 0;
}

int sl_producer_send(sl_producer *p, const sl_produce_record *rec) {
    if (rec->topic == NULL || rec->nheaders > 10000)
        return SL_EINVAL;
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
    for (size_t i = 0; i < rec->nheaders; i++)
        hv[i] = (sl_batch_header_kv){rec->headers[i].key, strlen(rec->headers[i].key),
                                     rec->headers[i].value, rec->headers[i].value_len};
    int64_t ts = rec->timestamp ? rec->timestamp : sl_clock_wall_ms();

    pthread_mutex_lock(&p->lock);
    if (p->closing) {
        pthread_mutex_unlock(&p->lock);
        if (hv != hdrs)
            free(hv);
        return SL_ECLOSED;
    }
    if (part == SL_PARTITION_ANY)
        part = t->sticky;
    pbatch *b = t->open[part];
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
        t->open[part] = b;
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

uint64_t sl_producer_failed_count(sl_producer *p) {
    return atomic_load(&p->failed);
}

void sl_producer_destroy(sl_producer *p) {
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->sender, NULL);
    /* In-flight requests fail with SL_ECLOSED through their callbacks. */
    sl_rpc_close(p->rpc);
    /* What never left: report it as not delivered. */
    close_lingered(p, INT64_MAX);
    while (p->ready_head) {
        pbatch *b = p->ready_head;
        p->ready_head = b->next;
        report(b, SL_ECLOSED, -1);
        atomic_fetch_add(&p->failed, b->ndl);
        batch_destroy(b);
    }
    while (p->free_list) {
        pbatch *b = p->free_list;
        p->free_list = b->next;
        batch_destroy(b);
    }
    while (p->topics) {
        ptopic *t = p->topics;
        p->topics = t->next;
        free(t->open);
        free(t->name);
        free(t);
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    sl_conf_destroy(p->conf);
    free(p);
}

/* sl_consumer: fetches its assigned partitions and hands records out one at a time.
 *
 * Each partition is fetched from its leader: one fetch per leader node is kept in flight while
 * the application works through earlier answers, so the brokers' long-polls and the
 * application's processing overlap, and nodes are fetched from side by side. A partition whose
 * leader moved (SL_ENOTLEADER), has none yet, or whose node's connection is lost waits for
 * fresh metadata (retry.backoff.ms apart) and is fetched from the new leader; the application
 * sees none of it. Outside a cluster the bootstrap connection serves everything.
 *
 * Each partition has two positions: 'fetch_pos' (where the next fetch starts, moved when an
 * answer arrives) and 'position' (the next record poll returns). A seek bumps the generation:
 * answers to older fetches are dropped and every fetch position goes back to its partition's
 * position. Two answers may carry the same records (a leader moved while a fetch was out):
 * records below 'position' are skipped. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "client/consumer_internal.h"

int sl_consumer_new(sl_conf *conf, sl_consumer **out, char *errbuf, size_t errlen) {
    sl_consumer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SL_ENOMEM;
    sl_conf_values_get(conf, &c->v);
    int rc = sl_cl_connect(&c->v, &c->rpc, errbuf, errlen);
    if (rc == 0 && (rc = sl_cl_meta_new(&c->v, c->rpc, &c->meta)) != 0)
        sl_rpc_close(c->rpc);
    if (rc) {
        free(c);
        return rc;
    }
    c->conf = conf;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->coord_lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    *out = c;
    return 0;
}

static void answer_free(answer *a) {
    if (a == NULL)
        return;
    msgpack_unpacked_destroy(&a->up);
    sl_buf_free(&a->body);
    free(a->aborted);
    free(a);
}

/* Drops prefetched answers and rewinds fetch positions; called with the lock held. */
static void invalidate(sl_consumer *c) {
    c->generation++;
    while (c->ready_head) {
        answer *a = c->ready_head;
        c->ready_head = a->next;
        answer_free(a);
    }
    c->ready_tail = NULL;
    for (size_t i = 0; i < c->nasg; i++)
        c->asg[i].fetch_pos = c->asg[i].position;
}

static assignment *find_asg(sl_consumer *c, const char *topic, int32_t partition) {
    for (size_t i = 0; i < c->nasg; i++)
        if (c->asg[i].partition == partition && strcmp(c->asg[i].topic, topic) == 0)
            return &c->asg[i];
    return NULL;
}

/* Resolves SL_OFFSET_BEGINNING/END or a timestamp (when 'by_time') to an offset, asking the
 * partition's leader; a leader being elected or moving is waited out for up to wait_ms. */
static int resolve(sl_consumer *c, const char *topic, int32_t partition, int64_t what,
                   bool by_time, int wait_ms, int64_t *offset) {
    if (!by_time && what >= 0) {
        *offset = what;
        return 0;
    }
    if (!by_time && what == SL_OFFSET_END && c->v.read_committed)
        what = SL_CL_OFFSET_STABLE;
    return sl_cl_meta_list_offset(c->meta, topic, partition, what, wait_ms, offset);
}

/* Partitions named by (topic, partition); SL_PARTITION_ANY means all of the topic's. */
static int partition_range(sl_consumer *c, const char *topic, int32_t partition, int32_t *first,
                           int32_t *last) {
    if (partition != SL_PARTITION_ANY) {
        *first = *last = partition;
        return 0;
    }
    int32_t n;
    int rc = sl_cl_meta_partition_count(c->meta, topic, &n);
    if (rc)
        return rc;
    *first = 0;
    *last = n - 1;
    return 0;
}

/* Adds (or moves) a partition at 'pos'. Lock held. */
static int add_locked(sl_consumer *c, const char *topic, int32_t p, int64_t pos) {
    assignment *a = find_asg(c, topic, p);
    if (a == NULL) {
        if (c->nasg == c->asgcap) {
            size_t cap = c->asgcap ? c->asgcap * 2 : 16;
            assignment *v = realloc(c->asg, cap * sizeof(*v));
            if (v == NULL)
                return SL_ENOMEM;
            c->asg = v;
            c->asgcap = cap;
        }
        a = &c->asg[c->nasg];
        memset(a, 0, sizeof(*a));
        if ((a->topic = strdup(topic)) == NULL)
            return SL_ENOMEM;
        a->partition = p;
        a->high_watermark = -1;
        c->nasg++;
        c->routed_version = 0; /* it needs its leader */
    }
    a->position = pos;
    invalidate(c);
    return 0;
}

/* The answer being read points into the assignment table, which may have moved. */
static void drop_current(sl_consumer *c) {
    answer_free(c->current);
    c->current = NULL;
}

int sl_consumer_add_partition(sl_consumer *c, const char *topic, int32_t partition,
                              int64_t offset) {
    int64_t pos;
    int rc = resolve(c, topic, partition, offset, false, c->v.request_timeout_ms, &pos);
    if (rc)
        return rc;
    pthread_mutex_lock(&c->lock);
    rc = add_locked(c, topic, partition, pos);
    pthread_mutex_unlock(&c->lock);
    drop_current(c);
    return rc;
}

void sl_consumer_remove_partitions(sl_consumer *c, const sl_partition_set *set) {
    pthread_mutex_lock(&c->lock);
    size_t keep = 0;
    for (size_t i = 0; i < c->nasg; i++) {
        if (set == NULL || sl_pset_contains(set, c->asg[i].topic, c->asg[i].partition))
            free(c->asg[i].topic);
        else
            c->asg[keep++] = c->asg[i];
    }
    c->nasg = keep;
    invalidate(c);
    pthread_mutex_unlock(&c->lock);
    drop_current(c);
}

int sl_consumer_positions(sl_consumer *c, sl_topic_partition **parts, size_t *n) {
    pthread_mutex_lock(&c->lock);
    size_t count = c->nasg;
    sl_topic_partition *v = calloc(count ? count : 1, sizeof(*v));
    int rc = v ? 0 : SL_ENOMEM;
    size_t k = 0;
    for (; rc == 0 && k < count; k++) {
        char *t = strdup(c->asg[k].topic);
        if (t == NULL) {
            rc = SL_ENOMEM;
            break;
        }
        v[k] = (sl_topic_partition){t, c->asg[k].partition, c->asg[k].position};
    }
    pthread_mutex_unlock(&c->lock);
    if (rc) {
        sl_topic_partitions_free(v, k);
        return rc;
    }
    *parts = v;
    *n = count;
    return 0;
}

int sl_consumer_assignment(sl_consumer *c, sl_topic_partition **parts, size_t *n) {
    return sl_consumer_positions(c, parts, n);
}

void sl_topic_partitions_free(sl_topic_partition *parts, size_t n) {
    if (parts == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free((char *)parts[i].topic);
    free(parts);
}

static int set_paused(sl_consumer *c, const char *topic, int32_t partition, bool paused) {
    pthread_mutex_lock(&c->lock);
    assignment *a = find_asg(c, topic, partition);
    if (a) {
        a->paused = paused;
        invalidate(c); /* prefetched records of a paused partition must not be handed out */
    }
    pthread_mutex_unlock(&c->lock);
    if (a)
        drop_current(c);
    return a ? 0 : SL_ENOENT;
}

int sl_consumer_pause(sl_consumer *c, const char *topic, int32_t partition) {
    return set_paused(c, topic, partition, true);
}

int sl_consumer_resume(sl_consumer *c, const char *topic, int32_t partition) {
    return set_paused(c, topic, partition, false);
}

int sl_consumer_assign(sl_consumer *c, const char *topic, int32_t partition, int64_t offset) {
    if (c->grouped)
        return SL_EINVAL; /* the group decides the partitions of a subscribed consumer */
    int32_t first, last, count;
    int rc = sl_cl_meta_partition_count(c->meta, topic, &count);
    if (rc)
        return rc;
    if (partition != SL_PARTITION_ANY && (partition < 0 || partition >= count))
        return SL_ENOENT;
    if ((rc = partition_range(c, topic, partition, &first, &last)) != 0)
        return rc;
    for (int32_t p = first; p <= last; p++) {
        int64_t pos;
        if ((rc = resolve(c, topic, p, offset, false, c->v.request_timeout_ms, &pos)) != 0)
            return rc;
        pthread_mutex_lock(&c->lock);
        rc = add_locked(c, topic, p, pos);
        pthread_mutex_unlock(&c->lock);
        if (rc)
            break;
    }
    drop_current(c);
    return rc;
}

static int seek_common(sl_consumer *c, const char *topic, int32_t partition, int64_t what,
                       bool by_time) {
    int32_t first, last;
    int rc = partition_range(c, topic, partition, &first, &last);
    for (int32_t p = first; rc == 0 && p <= last; p++) {
        int64_t pos;
        pthread_mutex_lock(&c->lock);
        bool assigned = find_asg(c, topic, p) != NULL;
        pthread_mutex_unlock(&c->lock);
        if (!assigned)
            return SL_ENOENT;
        if ((rc = resolve(c, topic, p, what, by_time, c->v.request_timeout_ms, &pos)) != 0)
            return rc;
        pthread_mutex_lock(&c->lock);
        assignment *a = find_asg(c, topic, p);
        a->position = pos;
        invalidate(c);
        pthread_mutex_unlock(&c->lock);
    }
    /* The record being iterated may belong to a moved partition: start over from positions. */
    answer_free(c->current);
    c->current = NULL;
    return rc;
}

int sl_consumer_seek(sl_consumer *c, const char *topic, int32_t partition, int64_t offset) {
    return seek_common(c, topic, partition, offset, false);
}

int sl_consumer_seek_time(sl_consumer *c, const char *topic, int32_t partition,
                          int64_t timestamp_ms) {
    if (timestamp_ms < 0)
        return SL_EINVAL;
    return seek_common(c, topic, partition, timestamp_ms, true);
}

int sl_consumer_position(sl_consumer *c, const char *topic, int32_t partition,
                         int64_t *next_offset) {
    pthread_mutex_lock(&c->lock);
    assignment *a = find_asg(c, topic, partition);
    if (a)
        *next_offset = a->position;
    pthread_mutex_unlock(&c->lock);
    return a ? 0 : SL_ENOENT;
}

int sl_consumer_partition_count(sl_consumer *c, const char *topic, int32_t *count) {
    return sl_cl_meta_partition_count(c->meta, topic, count);
}

/* ---- fetching ---- */

typedef struct fetch_ctx {
    sl_consumer *c;
    uint64_t generation;
    sl_cl_peer *peer;
} fetch_ctx;

/* Moves fetch positions past the whole batches an answer carries, so the next fetch can go out
 * before the application has read them. Lock held. */
static int advance_fetch_positions(sl_consumer *c, answer *a) {
    const msgpack_object *items, *topics;
    size_t n, nt;
    int status;
    if (sl_native_decode_response(a->body.data, a->body.len, &a->up, 3, &items, &n, &status,
                                  NULL, 0))
        return SL_EPROTO;
    if (status)
        return status;
    if (sl_mp_array(&items[2], 0, &topics, &nt))
        return SL_EPROTO;
    for (size_t i = 0; i < nt; i++) {
        const msgpack_object *t, *parts;
        size_t tn, np;
        char name[SL_TOPIC_NAME_MAX + 1];
        if (sl_mp_array(&topics[i], 2, &t, &tn) || sl_mp_strcpy(&t[0], name, sizeof(name)) ||
            sl_mp_array(&t[1], 0, &parts, &np))
            return SL_EPROTO;
        for (size_t j = 0; j < np; j++) {
            const msgpack_object *f;
            size_t fn;
            int64_t partition, st, hw;
            if (sl_mp_array(&parts[j], 5, &f, &fn) || sl_mp_int(&f[0], &partition) ||
                f[1].type != MSGPACK_OBJECT_BIN || sl_mp_int(&f[2], &st) || sl_mp_int(&f[3], &hw))
                return SL_EPROTO;
            assignment *as = find_asg(c, name, (int32_t)partition);
            if (as == NULL)
                continue;
            if (st == SL_ERANGE) {
                /* Our position is gone (retention) or beyond the end: apply auto.offset.reset
                 * on the next poll by resolving it there. */
                as->fetch_pos = as->position = c->v.auto_offset_reset;
                continue;
            }
            if (st) {
                if (sl_cl_meta_note(c->meta, (int)st)) /* refresh, and ask the new leader */
                    as->retry_at = sl_clock_mono_ms() + c->v.retry_backoff_ms;
                continue;
            }
            if (hw >= 0)
                as->high_watermark = hw;
            const uint8_t *p = (const uint8_t *)f[1].via.bin.ptr;
            size_t len = f[1].via.bin.size, pos = 0;
            while (pos < len) {
                size_t total = sl_batch_total_size(p + pos, len - pos);
                sl_batch_header h;
                if (total == 0 || pos + total > len || sl_batch_header_parse(p + pos, total, &h))
                    break;
                int64_t next = h.base_offset + h.last_offset_delta + 1;
                if (next > as->fetch_pos)
                    as->fetch_pos = next;
                pos += total;
            }
        }
    }
    return 0;
}

static void on_fetch(void *arg, int status, const uint8_t *body, size_t len) {
    fetch_ctx *fc = arg;
    sl_consumer *c = fc->c;
    answer *a = NULL;
    if (status == 0 && (a = calloc(1, sizeof(*a))) != NULL) {
        msgpack_unpacked_init(&a->up);
        a->generation = fc->generation;
        if (sl_buf_append(&a->body, body, len)) {
            answer_free(a);
            a = NULL;
            status = SL_ENOMEM;
        }
    }
    pthread_mutex_lock(&c->lock);
    fc->peer->inflight = 0;
    if (status == 0 && a && fc->generation == c->generation) {
        int rc = advance_fetch_positions(c, a);
        if (rc) {
            if (!sl_cl_meta_note(c->meta, rc))
                c->fetch_error = rc;
            answer_free(a);
        } else {
            if (c->ready_tail)
                c->ready_tail->next = a;
            else
                c->ready_head = a;
            c->ready_tail = a;
        }
    } else {
        /* A lost connection is dialled again by the next round; a timeout just asks again. */
        if (status && !sl_cl_meta_note(c->meta, status) && status != SL_ETIMEDOUT)
            c->fetch_error = status;
        answer_free(a);
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    free(fc);
}

static bool fetchable(const assignment *as, const sl_cl_peer *peer, int64_t now) {
    return !as->paused && as->leader == peer && as->fetch_pos >= 0 && as->retry_at <= now;
}

/* Sends 'peer' one fetch for the partitions it leads, from their fetch positions. Lock held. */
static int send_fetch(sl_consumer *c, sl_cl_peer *peer, sl_rpc *rpc, int64_t now) {
    size_t active = 0;
    for (size_t i = 0; i < c->nasg; i++)
        active += fetchable(&c->asg[i], peer, now);
    if (active == 0) {
        peer->inflight = 0;
        return 0;
    }
    fetch_ctx *fc = malloc(sizeof(*fc));
    if (fc == NULL)
        return SL_ENOMEM;
    *fc = (fetch_ctx){c, c->generation, peer};
    msgpack_packer pk;
    uint32_t id = sl_rpc_next_id(rpc);
    sl_cl_begin(&c->req, id, SL_API_FETCH, &pk);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_int(&pk, c->v.fetch_max_wait_ms);
    msgpack_pack_int(&pk, c->v.fetch_min_bytes);
    msgpack_pack_int(&pk, c->v.fetch_max_bytes);
    /* One topic entry per partition keeps this simple; the broker accepts repeats. */
    msgpack_pack_array(&pk, active);
    for (size_t i = 0; i < c->nasg; i++) {
        if (!fetchable(&c->asg[i], peer, now))
            continue;
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, c->asg[i].topic);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_int32(&pk, c->asg[i].partition);
        msgpack_pack_int64(&pk, c->asg[i].fetch_pos);
        msgpack_pack_int(&pk, c->v.max_partition_fetch_bytes);
    }
    msgpack_pack_int(&pk, c->v.read_committed ? 1 : 0);
    sl_rpc_frame_end(&c->req);
    int rc = sl_rpc_send(rpc, id, c->req.data, c->req.len,
                         c->v.fetch_max_wait_ms + c->v.request_timeout_ms, on_fetch, fc);
    if (rc)
        free(fc);
    return rc;
}

/* Resolves positions left symbolic by an out-of-range answer (auto.offset.reset). Lock not
 * held. One whose leader cannot answer now is tried again next round. */
static int resolve_pending(sl_consumer *c) {
    for (size_t i = 0;; i++) {
        pthread_mutex_lock(&c->lock);
        while (i < c->nasg && c->asg[i].fetch_pos >= 0)
            i++;
        if (i >= c->nasg) {
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        char topic[SL_TOPIC_NAME_MAX + 1];
        snprintf(topic, sizeof(topic), "%s", c->asg[i].topic);
        int32_t partition = c->asg[i].partition;
        int64_t what = c->asg[i].fetch_pos, pos;
        pthread_mutex_unlock(&c->lock);
        int rc = resolve(c, topic, partition, what, false, 0, &pos);
        if (rc && sl_cl_meta_note(c->meta, rc))
            continue;
        if (rc)
            return rc;
        pthread_mutex_lock(&c->lock);
        assignment *as = find_asg(c, topic, partition);
        if (as && as->fetch_pos == what)
            as->fetch_pos = as->position = pos;
        pthread_mutex_unlock(&c->lock);
    }
}

/* Points each assigned partition at its leader's peer once the metadata changed. Lock held. */
static void route_assignments(sl_consumer *c) {
    if (!sl_cl_meta_changed(c->meta, &c->routed_version))
        return;
    for (size_t i = 0; i < c->nasg; i++)
        c->asg[i].leader = sl_cl_peer_of(c->meta, &c->peers, c->asg[i].topic, c->asg[i].partition);
}

/* Sends a fetch to each leader of assigned partitions that has none in flight. Lock not held:
 * metadata may need refreshing, offsets resolving and nodes dialling. Lost connections and
 * moved leaders are not errors: their partitions wait (fetch_waiting) for the next round. */
static int fetch_round(sl_consumer *c) {
    sl_cl_meta_refresh(c->meta);
    int rc = resolve_pending(c);
    if (rc)
        return rc;
    int64_t now = sl_clock_mono_ms();
    sl_cl_peer *claimed[64];
    size_t nclaimed = 0;
    pthread_mutex_lock(&c->lock);
    route_assignments(c);
    c->fetch_waiting = false;
    for (size_t i = 0; i < c->nasg; i++) {
        assignment *as = &c->asg[i];
        sl_cl_peer *peer = as->leader;
        if (as->paused)
            continue;
        if (peer == NULL || as->fetch_pos < 0 || as->retry_at > now || peer->down_until > now) {
            c->fetch_waiting = true;
            continue;
        }
        if (peer->inflight || nclaimed == sizeof(claimed) / sizeof(claimed[0]))
            continue;
        peer->inflight = 1; /* claimed: its fetch is built below */
        claimed[nclaimed++] = peer;
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t k = 0; k < nclaimed; k++) {
        sl_cl_peer *peer = claimed[k];
        sl_rpc *rpc;
        int crc = sl_cl_meta_connect(c->meta, peer->node, &rpc);
        pthread_mutex_lock(&c->lock);
        if (crc) {
            sl_cl_peer_failed(c->meta, peer, sl_clock_mono_ms());
        } else {
            sl_cl_peer_ok(peer);
            crc = send_fetch(c, peer, rpc, now);
        }
        if (crc) {
            peer->inflight = 0;
            c->fetch_waiting = true;
            if (!sl_cl_meta_note(c->meta, crc) && rc == 0)
                rc = crc;
        }
        pthread_mutex_unlock(&c->lock);
    }
    return rc;
}

/* ---- handing out records ---- */

static int fill_headers(sl_consumer *c, const sl_record_view *rv) {
    size_t n = (size_t)rv->nheaders;
    if (n > c->hdrcap) {
        sl_header *h = realloc(c->hdrs, n * sizeof(*h));
        if (h == NULL)
            return SL_ENOMEM;
        c->hdrs = h;
        c->hdrcap = n;
    }
    /* Header keys are not NUL-terminated in the batch: copy them once into one buffer. */
    c->hdr_keys.len = 0;
    const uint8_t *pos = rv->headers;
    size_t offs[n ? n : 1];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *k, *v;
        size_t kl, vl;
        if (sl_record_header_next(&pos, rv->headers_end, &k, &kl, &v, &vl) != 1)
            return SL_ECORRUPT;
        offs[i] = c->hdr_keys.len;
        if (sl_buf_append(&c->hdr_keys, k, kl) || sl_buf_append(&c->hdr_keys, "", 1))
            return SL_ENOMEM;
        c->hdrs[i].value = v;
        c->hdrs[i].value_len = vl;
    }
    for (size_t i = 0; i < n; i++)
        c->hdrs[i].key = (const char *)c->hdr_keys.data + offs[i];
    c->msg.headers = n ? c->hdrs : NULL;
    c->msg.nheaders = n;
    return 0;
}

/* [[producer_id, first_offset, marker_offset]...]: what a read_committed fetch skips. */
static int decode_aborted(answer *a, const msgpack_object *o) {
    const msgpack_object *v;
    size_t n;
    if (sl_mp_array(o, 0, &v, &n))
        return SL_EPROTO;
    if (n > a->aborted_cap) {
        sl_txn_range *p = realloc(a->aborted, n * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        a->aborted = p;
        a->aborted_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *f;
        size_t fn;
        sl_txn_range *r = &a->aborted[i];
        if (sl_mp_array(&v[i], 3, &f, &fn) || sl_mp_int(&f[0], &r->producer_id) ||
            sl_mp_int(&f[1], &r->first_offset) || sl_mp_int(&f[2], &r->last_offset))
            return SL_EPROTO;
    }
    a->naborted = n;
    return 0;
}

/* Moves to the next partition entry of the answer that has batches. 0 at the end. */
static int next_partition(sl_consumer *c, answer *a) {
    for (;;) {
        if (a->parts && a->pi < a->nparts) {
            const msgpack_object *f;
            size_t fn;
            int64_t partition, st;
            const msgpack_object *pe = &a->parts[a->pi++];
            if (sl_mp_array(pe, 5, &f, &fn) || sl_mp_int(&f[0], &partition) ||
                sl_mp_int(&f[2], &st))
                return SL_EPROTO;
            const msgpack_object *t = &a->topics[a->ti - 1].via.array.ptr[0];
            char name[SL_TOPIC_NAME_MAX + 1];
            if (sl_mp_strcpy(t, name, sizeof(name)))
                return SL_EPROTO;
            pthread_mutex_lock(&c->lock);
            a->cur = find_asg(c, name, (int32_t)partition);
            pthread_mutex_unlock(&c->lock);
            if (st || a->cur == NULL || f[1].via.bin.size == 0)
                continue;
            a->naborted = 0;
            if (fn >= 7 && decode_aborted(a, &f[6]))
                return SL_EPROTO;
            a->data = (const uint8_t *)f[1].via.bin.ptr;
            a->data_end = a->data + f[1].via.bin.size;
            a->in_batch = false;
            return 1;
        }
        if (a->ti >= a->ntopics)
            return 0;
        const msgpack_object *t;
        size_t tn;
        if (sl_mp_array(&a->topics[a->ti++], 2, &t, &tn) ||
            sl_mp_array(&t[1], 0, &a->parts, &a->nparts))
            return SL_EPROTO;
        a->pi = 0;
    }
}

/* The next record of the current answer: 1 with c->msg filled, 0 when it is used up. */
static int next_record(sl_consumer *c, answer *a) {
    for (;;) {
        if (a->cur && a->in_batch) {
            sl_record_view rv;
            int r = sl_record_iter_next(&a->it, &rv);
            if (r < 0)
                return r;
            if (r == 1) {
                if (rv.offset < a->cur->position)
                    continue; /* the fetch returned the whole batch holding our position */
                c->msg.topic = a->cur->topic;
                c->msg.partition = a->cur->partition;
                c->msg.offset = rv.offset;
                c->msg.timestamp = rv.timestamp;
                c->msg.key = rv.key;
                c->msg.key_len = rv.key_len;
                c->msg.value = rv.value;
                c->msg.value_len = rv.value_len;
                int rc = fill_headers(c, &rv);
                if (rc)
                    return rc;
                pthread_mutex_lock(&c->lock);
                a->cur->position = rv.offset + 1;
                pthread_mutex_unlock(&c->lock);
                return 1;
            }
            a->in_batch = false;
        }
        if (a->cur && a->data < a->data_end) {
            size_t left = (size_t)(a->data_end - a->data);
            size_t total = sl_batch_total_size(a->data, left);
            if (total == 0 || total > left) {
                a->data = a->data_end; /* a partial trailing batch: fetched again next time */
                continue;
            }
            sl_batch_header h;
            if (sl_batch_header_parse(a->data, total, &h) == 0 &&
                ((h.attributes & SL_BATCH_ATTR_CONTROL) ||
                 sl_txn_batch_aborted(a->aborted, a->naborted, &h))) {
                /* A transaction marker, or a batch of an aborted transaction (the broker names
                 * those only to read_committed readers): not for the application, but passed. */
                int64_t next = h.base_offset + h.last_offset_delta + 1;
                pthread_mutex_lock(&c->lock);
                if (next > a->cur->position)
                    a->cur->position = next;
                pthread_mutex_unlock(&c->lock);
                a->data += total;
                continue;
            }
            int rc = sl_record_iter_start_decompress(&a->it, a->data, total, &c->records,
                                                     MAX_BATCH_RECORDS_BYTES);
            a->data += total;
            if (rc)
                return rc;
            a->in_batch = true;
            continue;
        }
        int r = next_partition(c, a);
        if (r <= 0)
            return r;
    }
}

static int start_answer(answer *a) {
    const msgpack_object *items;
    if (a->up.data.type != MSGPACK_OBJECT_ARRAY || a->up.data.via.array.size < 3)
        return SL_EPROTO;
    items = a->up.data.via.array.ptr;
    if (sl_mp_array(&items[2], 0, &a->topics, &a->ntopics))
        return SL_EPROTO;
    a->ti = 0;
    a->parts = NULL;
    a->cur = NULL;
    return 0;
}

int sl_consumer_poll(sl_consumer *c, int timeout_ms, const sl_message **msg) {
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : sl_clock_mono_ms() + timeout_ms;
    for (;;) {
        if (c->grouped) {
            int grc = sl_group_poll(c);
            if (grc)
                return grc;
        }
        if (c->current) {
            int r = next_record(c, c->current);
            if (r == 1) {
                *msg = &c->msg;
                return 0;
            }
            answer_free(c->current);
            c->current = NULL;
            if (r < 0)
                return r;
        }
        pthread_mutex_lock(&c->lock);
        if (c->nasg == 0 && !c->grouped) {
            pthread_mutex_unlock(&c->lock);
            return SL_EINVAL;
        }
        int rc = 0;
        bool regroup = false;
        while (c->ready_head == NULL && c->fetch_error == 0) {
            pthread_mutex_unlock(&c->lock);
            rc = fetch_round(c);
            pthread_mutex_lock(&c->lock);
            if (rc || c->ready_head || c->fetch_error)
                break;
            if (c->grouped && (c->need_rejoin || c->lost)) {
                regroup = true; /* the heartbeat thread says the group is rebalancing */
                break;
            }
            int64_t left = deadline - sl_clock_mono_ms();
            if (left <= 0) {
                rc = SL_ETIMEDOUT;
                break;
            }
            int64_t wait = left < 1000 ? left : 1000;
            if (c->fetch_waiting && wait > c->v.retry_backoff_ms)
                wait = c->v.retry_backoff_ms > 0 ? c->v.retry_backoff_ms : 1;
            struct timespec ts = sl_clock_deadline(wait);
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        }
        if (regroup) {
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        if (rc == 0 && c->fetch_error) {
            rc = c->fetch_error;
            c->fetch_error = 0;
        }
        answer *a = NULL;
        if (rc == 0) {
            a = c->ready_head;
            c->ready_head = a->next;
            if (c->ready_head == NULL)
                c->ready_tail = NULL;
            a->next = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (rc)
            return rc;
        fetch_round(c); /* prefetch: the next answers are on their way while this one is read */
        if ((rc = start_answer(a)) != 0) {
            answer_free(a);
            return rc;
        }
        c->current = a;
    }
}

int sl_consumer_close(sl_consumer *c) {
    return c->grouped ? sl_group_close(c) : 0;
}

void sl_consumer_destroy(sl_consumer *c) {
    if (c == NULL)
        return;
    if (c->grouped)
        sl_group_close(c);
    sl_group_destroy(c); /* also closes the connection a commit by a non-member opened */
    /* In-flight fetches end with SL_ECLOSED; their callbacks still use the metadata. */
    sl_rpc_close(c->rpc);
    sl_cl_meta_destroy(c->meta);
    answer_free(c->current);
    pthread_mutex_lock(&c->lock);
    invalidate(c);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < c->nasg; i++)
        free(c->asg[i].topic);
    free(c->asg);
    sl_cl_peers_free(c->peers);
    free(c->hdrs);
    sl_buf_free(&c->hdr_keys);
    sl_buf_free(&c->req);
    sl_buf_free(&c->records);
    for (size_t i = 0; i < c->nsubscription; i++)
        free(c->subscription[i]);
    free(c->subscription);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->coord_lock);
    sl_conf_destroy(c->conf);
    free(c);
}

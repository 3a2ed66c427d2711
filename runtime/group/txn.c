#include "group/txn.h"

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
#include "log/batch.h"
#include "sluice/err.h"

#define STATE_EMPTY 0    /* no transaction being decided */
#define STATE_PREPARED 1 /* committing: markers being written */
#define EXPIRY_TICK_MS 200
#define ID_EXPIRATION_MS 604800000 /* Kafka's transactional.id.expiration.ms: 7 days */

typedef struct tpart {
    char *topic;
    int32_t partition;
} tpart;

typedef struct txn {
    char *id;
    int64_t pid;
    int16_t epoch;
    int32_t timeout_ms;
    bool ongoing;
    int64_t started_ms; /* monotonic, when it opened */
    int64_t used_ms;    /* monotonic, when its producer last did anything */
    tpart *parts;       /* partitions it wrote */
    size_t nparts, cap;
    bool committing; /* the prepared record is down: only a commit may end it now */
    bool orphan;     /* recovery only: open in a partition under a producer id we never gave */
    struct txn *next;
} txn;

struct sl_txn_coord {
    sl_broker *b;
    sl_coordinator *groups;
    /* Recursive: a transactional offset commit writes to __consumer_offsets through the
     * broker's produce path, whose hook takes it again. */
    pthread_mutex_t lock;
    txn *txns;
    pthread_t expiry;
    bool expiry_running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stopping;
    int64_t id_expiration_ms; /* under 'lock' */
};

static txn *find_id(sl_txn_coord *t, const char *id) {
    for (txn *x = t->txns; x; x = x->next)
        if (strcmp(x->id, id) == 0)
            return x;
    return NULL;
}

static txn *find_pid(sl_txn_coord *t, int64_t pid) {
    for (txn *x = t->txns; x; x = x->next)
        if (x->pid == pid)
            return x;
    return NULL;
}

static txn *add_txn(sl_txn_coord *t, const char *id) {
    txn *x = calloc(1, sizeof(*x));
    if (x == NULL || (x->id = strdup(id)) == NULL) {
        free(x);
        return NULL;
    }
    x->pid = -1;
    x->used_ms = sl_clock_mono_ms();
    x->next = t->txns;
    t->txns = x;
    return x;
}

static void free_txn(txn *x) {
    for (size_t i = 0; i < x->nparts; i++)
        free(x->parts[i].topic);
    free(x->parts);
    free(x->id);
    free(x);
}

static void clear_parts(txn *x) {
    for (size_t i = 0; i < x->nparts; i++)
        free(x->parts[i].topic);
    x->nparts = 0;
}

static int add_part(txn *x, const char *topic, int32_t partition) {
    for (size_t i = 0; i < x->nparts; i++)
        if (x->parts[i].partition == partition && strcmp(x->parts[i].topic, topic) == 0)
            return 0;
    if (x->nparts == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        tpart *p = realloc(x->parts, cap * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        x->parts = p;
        x->cap = cap;
    }
    char *name = strdup(topic);
    if (name == NULL)
        return SL_ENOMEM;
    x->parts[x->nparts++] = (tpart){name, partition};
    return 0;
}

/* Writes the id's durable record and waits until it is appended. */
static int write_state(sl_txn_coord *t, const txn *x, int state) {
    sl_batch_builder bb = {0};
    sl_buf value = SL_BUF_INIT;
    msgpack_packer pk;
    sl_mp_packer_init(&pk, &value);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int64(&pk, x->pid);
    msgpack_pack_int16(&pk, x->epoch);
    msgpack_pack_int(&pk, state);
    msgpack_pack_int32(&pk, x->timeout_ms);
    int64_t now = sl_clock_wall_ms();
    sl_batch_builder_reset(&bb);
    int rc = sl_batch_builder_add(&bb, now, x->id, strlen(x->id), value.data, value.len, NULL, 0);
    char err[256] = "";
    if (rc == 0) {
        sl_batch_builder_finish(&bb);
        sl_append_result res;
        rc = sl_broker_produce(t->b, SL_TXN_STATE_TOPIC, 0, bb.buf.data, bb.buf.len, &res, err,
                               sizeof(err));
    }
    if (rc)
        sl_error("txn", "cannot record the state of transactional id \"%s\": %s", x->id,
                 err[0] ? err : sl_strerror(rc));
    sl_batch_builder_free(&bb);
    sl_buf_free(&value);
    return rc;
}

/* Writes marker 'type' with 'epoch' to every partition the transaction wrote, tells the group
 * coordinator, and records the id as settled. Lock held. */
static int settle(sl_txn_coord *t, txn *x, int type, int16_t epoch) {
    for (size_t i = 0; i < x->nparts; i++) {
        int rc = sl_broker_write_marker(t->b, x->parts[i].topic, x->parts[i].partition, x->pid,
                                        epoch, type);
        if (rc == SL_ENOENT)
            continue; /* the topic was deleted meanwhile: nothing left to decide there */
        if (rc) {
            sl_error("txn", "cannot write the %s marker of \"%s\" to %s-%d: %s",
                     type == SL_CONTROL_COMMIT ? "commit" : "abort", x->id, x->parts[i].topic,
                     x->parts[i].partition, sl_strerror(rc));
            return rc;
        }
    }
    if (t->groups)
        sl_coord_txn_end(t->groups, x->pid, type == SL_CONTROL_COMMIT);
    x->epoch = epoch;
    int rc = write_state(t, x, STATE_EMPTY);
    if (rc)
        return rc;
    clear_parts(x);
    x->ongoing = false;
    x->committing = false;
    return 0;
}

/* Ends the open transaction for good under the next epoch, so its producer can write no more:
 * aborted, or committed when its commit was prepared already (that decision stands). The new
 * epoch is recorded before any marker, so a crash half-way never brings the old one back. */
static int end_fenced(sl_txn_coord *t, txn *x, const char *why) {
    size_t n = x->nparts;
    int16_t epoch = x->epoch;
    x->epoch = (int16_t)(epoch + 1);
    int rc = write_state(t, x, x->committing ? STATE_PREPARED : STATE_EMPTY);
    if (rc) {
        x->epoch = epoch;
        return rc;
    }
    rc = settle(t, x, x->committing ? SL_CONTROL_COMMIT : SL_CONTROL_ABORT, x->epoch);
    if (rc == 0)
        sl_info("txn", "%s the transaction of \"%s\" (producer %" PRId64 ") over %zu "
                "partition%s: %s", x->committing ? "committed" : "aborted", x->id, x->pid, n,
                n == 1 ? "" : "s", why);
    return rc;
}

/* ---- the broker's produce hook ---- */

static int hook_check(void *arg, const char *topic, int32_t partition, int64_t pid,
                      int16_t epoch) {
    sl_txn_coord *t = arg;
    pthread_mutex_lock(&t->lock); /* held until hook_done */
    txn *x = find_pid(t, pid);
    if (x == NULL)
        return SL_ENOENT; /* no InitProducerId with a transactional id gave it out */
    if (epoch < x->epoch)
        return SL_EFENCED;
    if (epoch > x->epoch || x->committing)
        return SL_EINVAL; /* an epoch never given out; or writing while it commits */
    x->used_ms = sl_clock_mono_ms();
    int rc = add_part(x, topic, partition);
    if (rc == 0 && !x->ongoing) {
        x->ongoing = true;
        x->started_ms = sl_clock_mono_ms();
    }
    return rc;
}

static void hook_done(void *arg) {
    sl_txn_coord *t = arg;
    pthread_mutex_unlock(&t->lock);
}

/* ---- requests ---- */

static int check_producer(txn *x, int64_t pid, int16_t epoch) {
    if (x == NULL || x->pid != pid)
        return SL_EINVAL;
    if (epoch < x->epoch)
        return SL_EFENCED;
    return epoch == x->epoch ? 0 : SL_EINVAL;
}

int sl_txn_init_producer(sl_txn_coord *t, const char *txn_id, int32_t timeout_ms,
                         int64_t *pid, int16_t *epoch) {
    if (txn_id[0] == '\0' || strlen(txn_id) > SL_TXN_ID_MAX || timeout_ms <= 0 ||
        timeout_ms > SL_TXN_MAX_TIMEOUT_MS)
        return SL_EINVAL;
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    txn *x = find_id(t, txn_id);
    if (x == NULL && (x = add_txn(t, txn_id)) == NULL)
        rc = SL_ENOMEM;
    if (rc == 0 && x->ongoing)
        rc = end_fenced(t, x, "its producer started again");
    if (rc == 0) {
        if (x->pid < 0 || x->epoch >= INT16_MAX - 1) {
            /* A new id, or its epochs are used up: a fresh producer id. */
            rc = sl_broker_init_producer_id(t->b, &x->pid, &x->epoch);
        } else {
            x->epoch++;
        }
    }
    if (rc == 0) {
        x->timeout_ms = timeout_ms;
        x->used_ms = sl_clock_mono_ms();
        rc = write_state(t, x, STATE_EMPTY);
    }
    if (rc == 0) {
        *pid = x->pid;
        *epoch = x->epoch;
        sl_debug("txn", "transactional id \"%s\" is producer %" PRId64 " epoch %d", txn_id,
                 x->pid, x->epoch);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int sl_txn_check_producer(sl_txn_coord *t, const char *txn_id, int64_t pid, int16_t epoch) {
    pthread_mutex_lock(&t->lock);
    int rc = check_producer(find_id(t, txn_id), pid, epoch);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int sl_txn_commit_offsets(sl_txn_coord *t, const char *txn_id, int64_t pid, int16_t epoch,
                          const char *group, int32_t generation, const char *member_id,
                          const sl_offset_commit *offsets, size_t n) {
    if (t->groups == NULL)
        return SL_EUNSUPPORTED;
    pthread_mutex_lock(&t->lock);
    int rc = check_producer(find_id(t, txn_id), pid, epoch);
    if (rc == 0)
        rc = sl_coord_txn_commit(t->groups, group, generation, member_id, pid, epoch, offsets, n);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int sl_txn_end(sl_txn_coord *t, const char *txn_id, int64_t pid, int16_t epoch, bool commit) {
    pthread_mutex_lock(&t->lock);
    txn *x = find_id(t, txn_id);
    int rc = check_producer(x, pid, epoch);
    if (rc == 0)
        x->used_ms = sl_clock_mono_ms();
    if (rc == 0 && x->committing && !commit)
        rc = SL_EINVAL; /* a commit was begun: it is finished, never undone */
    if (rc == 0 && commit && !x->committing && x->ongoing && t->groups)
        rc = sl_coord_txn_check(t->groups, x->pid); /* a zombie's offsets must not commit */
    if (rc == 0 && x->ongoing) {
        /* Once the prepared record is down, the commit happens even if we crash now or a
         * marker fails: the next start, a retry or the timeout writes the remaining ones. */
        if (commit && !x->committing && (rc = write_state(t, x, STATE_PREPARED)) == 0)
            x->committing = true;
        if (rc == 0)
            rc = settle(t, x, x->committing ? SL_CONTROL_COMMIT : SL_CONTROL_ABORT, x->epoch);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* ---- timeouts ---- */

/* Forgets ids whose producers have done nothing for the expiration (with nothing open): a
 * tombstone in __transaction_state, so a restart forgets them too. Lock held. */
static void expire_ids(sl_txn_coord *t, int64_t now) {
    for (txn **pp = &t->txns; *pp;) {
        txn *x = *pp;
        if (x->ongoing || x->committing || now - x->used_ms <= t->id_expiration_ms) {
            pp = &x->next;
            continue;
        }
        sl_batch_builder bb = {0};
        sl_batch_builder_reset(&bb);
        sl_append_result res;
        char err[256] = "";
        int rc = sl_batch_builder_add(&bb, sl_clock_wall_ms(), x->id, strlen(x->id), NULL, 0,
                                      NULL, 0);
        if (rc == 0) {
            sl_batch_builder_finish(&bb);
            rc = sl_broker_produce(t->b, SL_TXN_STATE_TOPIC, 0, bb.buf.data, bb.buf.len, &res,
                                   err, sizeof(err));
        }
        sl_batch_builder_free(&bb);
        if (rc) {
            x->used_ms = now; /* tried again an expiration later */
            pp = &x->next;
            continue;
        }
        sl_info("txn", "forgot transactional id \"%s\" (producer %" PRId64 "): unused for %"
                PRId64 " ms", x->id, x->pid, now - x->used_ms);
        *pp = x->next;
        free_txn(x);
    }
}

void sl_txn_set_id_expiration(sl_txn_coord *t, int64_t ms) {
    pthread_mutex_lock(&t->lock);
    t->id_expiration_ms = ms;
    pthread_mutex_unlock(&t->lock);
}

static void *expiry_main(void *arg) {
    sl_txn_coord *t = arg;
    pthread_mutex_lock(&t->stop_lock);
    while (!t->stopping) {
        struct timespec ts = sl_clock_deadline(EXPIRY_TICK_MS);
        pthread_cond_timedwait(&t->stop_cond, &t->stop_lock, &ts);
        if (t->stopping)
            break;
        pthread_mutex_unlock(&t->stop_lock);
        pthread_mutex_lock(&t->lock);
        int64_t now = sl_clock_mono_ms();
        expire_ids(t, now);
        for (txn *x = t->txns; x; x = x->next) {
            if (x->ongoing && now - x->started_ms > x->timeout_ms) {
                char why[96];
                snprintf(why, sizeof(why), "open longer than its timeout (%d ms)",
                         x->timeout_ms);
                if (end_fenced(t, x, why) != 0)
                    x->started_ms = now; /* logged; tried again a timeout later */
            }
        }
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_lock(&t->stop_lock);
    }
    pthread_mutex_unlock(&t->stop_lock);
    return NULL;
}

/* ---- loading and recovery ---- */

static int load_record(sl_txn_coord *t, const sl_record_view *rv) {
    char id[SL_TXN_ID_MAX + 1];
    if (rv->key == NULL || rv->key_len == 0 || rv->key_len > SL_TXN_ID_MAX ||
        memchr(rv->key, '\0', rv->key_len))
        return SL_ECORRUPT;
    memcpy(id, rv->key, rv->key_len);
    id[rv->key_len] = '\0';
    if (rv->value == NULL) { /* a tombstone: the id expired */
        for (txn **pp = &t->txns; *pp; pp = &(*pp)->next)
            if (strcmp((*pp)->id, id) == 0) {
                txn *x = *pp;
                *pp = x->next;
                free_txn(x);
                break;
            }
        return 0;
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int64_t f[4];
    int rc = SL_ECORRUPT;
    if (sl_mp_check(rv->value, rv->value_len) == 0 &&
        msgpack_unpack_next(&up, (const char *)rv->value, rv->value_len, &off) ==
            MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_ARRAY && up.data.via.array.size >= 4) {
        rc = 0;
        for (int i = 0; i < 4 && rc == 0; i++) {
            const msgpack_object *o = &up.data.via.array.ptr[i];
            if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
                f[i] = (int64_t)o->via.u64;
            else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                f[i] = o->via.i64;
            else
                rc = SL_ECORRUPT;
        }
        if (rc == 0 && (f[0] < 0 || f[1] < 0 || f[1] > INT16_MAX))
            rc = SL_ECORRUPT;
    }
    msgpack_unpacked_destroy(&up);
    if (rc)
        return rc;
    txn *x = find_id(t, id);
    if (x == NULL && (x = add_txn(t, id)) == NULL)
        return SL_ENOMEM;
    x->pid = f[0];
    x->epoch = (int16_t)f[1];
    x->committing = f[2] == STATE_PREPARED;
    x->timeout_ms = (int32_t)(f[3] > 0 && f[3] <= SL_TXN_MAX_TIMEOUT_MS ? f[3] : 60000);
    return 0;
}

static void load_one(void *arg, const sl_record_view *rv) {
    if (load_record(arg, rv) != 0)
        sl_warn("txn", "%s record %" PRId64 " is not understood; skipped", SL_TXN_STATE_TOPIC,
                rv->offset);
}

static int load_state(sl_txn_coord *t) {
    return sl_broker_replay(t->b, SL_TXN_STATE_TOPIC, 0, load_one, t);
}

typedef struct open_list {
    sl_txn_coord *t;
    int rc;
} open_list;

/* Recovery, first pass: every open transaction joins its id's partition list. */
static int collect_open(void *arg, const char *topic, int32_t partition, const sl_txn_range *r) {
    open_list *l = arg;
    txn *x = find_pid(l->t, r->producer_id);
    if (x == NULL) {
        /* Written by a producer whose id we never recorded (its record was lost): abort it
         * under a made-up id, with an epoch past its own. */
        char id[64];
        snprintf(id, sizeof(id), "__orphan-%" PRId64, r->producer_id);
        if ((x = add_txn(l->t, id)) == NULL)
            return SL_ENOMEM;
        x->orphan = true;
        x->pid = r->producer_id;
        x->epoch = r->epoch;
        x->timeout_ms = 60000;
    }
    if (r->epoch > x->epoch)
        x->epoch = r->epoch;
    x->ongoing = true;
    return add_part(x, topic, partition);
}

static int recover(sl_txn_coord *t) {
    open_list l = {t, 0};
    int rc = sl_broker_foreach_open_txn(t->b, collect_open, &l);
    size_t committed = 0, aborted = 0;
    /* A transaction that cannot be settled now (a disk error) is left to the expiry thread,
     * which tries again: the broker still starts and serves everything else. */
    for (txn *x = t->txns; rc == 0 && x; x = x->next) {
        int src = 0;
        if (x->committing) {
            /* The commit was decided before the crash: finish writing its markers. */
            x->ongoing = true;
            src = settle(t, x, SL_CONTROL_COMMIT, x->epoch);
            committed++;
        } else if (x->ongoing) {
            src = end_fenced(t, x, "left open by a crash");
            aborted++;
        }
        if (src == SL_ENOMEM)
            rc = src;
        else if (src)
            sl_error("txn", "the transaction of \"%s\" could not be settled at start (%s); "
                     "trying again at its timeout", x->id, sl_strerror(src));
        if (src && x->orphan)
            x->orphan = false; /* keep it, so the expiry thread can settle it */
        if (src)
            x->started_ms = sl_clock_mono_ms();
    }
    /* Orphans were only needed to write their markers. */
    for (txn **pp = &t->txns; *pp;) {
        txn *x = *pp;
        if (x->orphan) {
            *pp = x->next;
            free_txn(x);
        } else {
            pp = &x->next;
        }
    }
    if (rc == 0 && (committed || aborted))
        sl_info("txn", "recovery: %zu transaction%s committed, %zu aborted", committed,
                committed == 1 ? "" : "s", aborted);
    return rc;
}

static void free_all(sl_txn_coord *t) {
    while (t->txns) {
        txn *x = t->txns;
        t->txns = x->next;
        free_txn(x);
    }
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->stop_lock);
    pthread_cond_destroy(&t->stop_cond);
    free(t);
}

int sl_txn_open(sl_broker *b, sl_txn_coord **out) {
    sl_txn_coord *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return SL_ENOMEM;
    t->b = b;
    t->id_expiration_ms = ID_EXPIRATION_MS;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&t->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&t->stop_lock, NULL);
    pthread_cond_init(&t->stop_cond, NULL);
    char err[256] = "";
    int rc = sl_broker_ensure_internal_topic(b, SL_TXN_STATE_TOPIC, 1, true, err, sizeof(err));
    if (rc)
        sl_error("txn", "cannot create %s: %s", SL_TXN_STATE_TOPIC,
                 err[0] ? err : sl_strerror(rc));
    if (rc == 0)
        rc = load_state(t);
    if (rc == 0) {
        /* Before anyone can produce: the hook must know every producer id recovery fences. */
        sl_txn_hook hook = {hook_check, hook_done, t};
        sl_broker_set_txn_hook(b, &hook);
        pthread_mutex_lock(&t->lock);
        rc = recover(t);
        pthread_mutex_unlock(&t->lock);
    }
    if (rc == 0 && pthread_create(&t->expiry, NULL, expiry_main, t) == 0)
        t->expiry_running = true;
    else if (rc == 0)
        rc = SL_ENOMEM;
    if (rc) {
        sl_txn_hook none = {0};
        sl_broker_set_txn_hook(b, &none);
        free_all(t);
        return rc;
    }
    *out = t;
    return 0;
}

void sl_txn_attach(sl_txn_coord *t, sl_coordinator *groups) {
    pthread_mutex_lock(&t->lock);
    t->groups = groups;
    pthread_mutex_unlock(&t->lock);
}

void sl_txn_close(sl_txn_coord *t) {
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->stop_lock);
    t->stopping = true;
    pthread_cond_broadcast(&t->stop_cond);
    pthread_mutex_unlock(&t->stop_lock);
    if (t->expiry_running)
        pthread_join(t->expiry, NULL);
    sl_txn_hook none = {0};
    sl_broker_set_txn_hook(t->b, &none);
    free_all(t);
}

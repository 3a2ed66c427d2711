#include "log/partlog.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/log.h"
#include "log/batch.h"
#include "log/compact.h"
#include "log/producer_state.h"
#include "log/segment.h"
#include "sluice/err.h"

struct sl_partlog {
    pthread_mutex_t lock;
    char *dir;
    char *name;
    sl_logconf conf;
    sl_segment **segs; /* ordered by base offset; the last is the active one */
    size_t nsegs, cap;
    int64_t hw;
    int64_t hw_pos; /* byte position of the HW in the segment holding it */
    size_t hw_seg;  /* index in segs of the segment holding the HW */
    int64_t unflushed_records;
    int64_t oldest_unflushed_ms;
    sl_producer_state *producers;
    sl_txn_index txns;
    atomic_int refs;
    bool closed;          /* sl_partlog_close was called: the cleaner swaps nothing more */
    bool cleaning;        /* a compaction pass is running */
    bool clean_broken;    /* a swap failed half-way, or unreadable data: no more passes */
    int64_t cleaned_upto; /* the compaction clean point (log/compact.c) */
};

void sl_logconf_defaults(sl_logconf *conf) {
    conf->segment_bytes = 1073741824;
    conf->segment_ms = 604800000;
    conf->retention_ms = 604800000;
    conf->retention_bytes = -1;
    conf->flush_messages = INT64_MAX;
    conf->flush_ms = INT64_MAX;
    conf->index_interval_bytes = 4096;
    conf->max_message_bytes = 1048588;
    conf->log_append_time = false;
    conf->compact = false;
    conf->delete_retention = true;
    conf->delete_retention_ms = 86400000;
    conf->min_cleanable_dirty_ratio = 0.5;
    conf->min_compaction_lag_ms = 0;
}

static sl_segment *active(sl_partlog *pl) {
    return pl->segs[pl->nsegs - 1];
}

static int push_segment(sl_partlog *pl, sl_segment *seg) {
    if (pl->nsegs == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 8;
        sl_segment **p = realloc(pl->segs, cap * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        pl->segs = p;
        pl->cap = cap;
    }
    pl->segs[pl->nsegs++] = seg;
    return 0;
}

static int cmp_offsets(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Base offsets of the '.log' files in 'dir', sorted. Removes leftovers of interrupted work. */
static int list_segments(const char *dir, int64_t **out, size_t *count) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return SL_EIO;
    int64_t *offs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0) {
            char path[4400];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            remove(path);
            continue;
        }
        if (len != 24 || strcmp(e->d_name + 20, ".log") != 0)
            continue;
        char *end;
        long long base = strtoll(e->d_name, &end, 10);
        if (end != e->d_name + 20 || base < 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *p = realloc(offs, cap * sizeof(*p));
            if (p == NULL) {
                rc = SL_ENOMEM;
                break;
            }
            offs = p;
        }
        offs[n++] = base;
    }
    closedir(d);
    if (rc) {
        free(offs);
        return rc;
    }
    if (n > 1) /* an empty directory leaves 'offs' NULL, which qsort may not be given */
        qsort(offs, n, sizeof(*offs), cmp_offsets);
    *out = offs;
    *count = n;
    return 0;
}

static void set_hw_at_end(sl_partlog *pl) {
    pl->hw = active(pl)->next_offset;
    pl->hw_seg = pl->nsegs - 1;
    pl->hw_pos = active(pl)->size;
}

/* The type of the control batch at 'pos' of 'seg' (small: one record). */
static int read_control_type(sl_segment *seg, int64_t pos, const sl_batch_header *h) {
    size_t total = (size_t)h->length + SL_BATCH_LOG_OVERHEAD;
    if (total > 4096)
        return SL_ECORRUPT;
    sl_buf b = SL_BUF_INIT;
    int rc = sl_segment_read(seg, pos, total, &b);
    if (rc == 0)
        rc = sl_batch_control_type(b.data, b.len);
    sl_buf_free(&b);
    return rc;
}

/* Marker 'h' (of 'type') as written: its transaction ends; a newer epoch fences. Lock held. */
static int note_marker(sl_partlog *pl, const sl_batch_header *h, int type) {
    int rc = sl_producer_state_bump_epoch(pl->producers, h->producer_id, h->producer_epoch);
    return rc ? rc : sl_txn_index_note(&pl->txns, h, type);
}

typedef struct recovery_walk {
    sl_partlog *pl;
    sl_segment *seg;
} recovery_walk;

static int remember_batch(void *arg, const sl_batch_header *h, int64_t pos) {
    recovery_walk *w = arg;
    if (h->producer_id < 0)
        return 0;
    if (!(h->attributes & SL_BATCH_ATTR_CONTROL)) {
        int rc = sl_producer_state_update(w->pl->producers, h);
        return rc ? rc : sl_txn_index_note(&w->pl->txns, h, 0);
    }
    int type = read_control_type(w->seg, pos, h);
    if (type < 0) {
        sl_error("log", "%s: unreadable transaction marker at offset %" PRId64, w->pl->name,
                 h->base_offset);
        return type;
    }
    return note_marker(w->pl, h, type);
}

int sl_partlog_open(const char *dir, const char *name, const sl_logconf *conf, sl_partlog **out) {
    int rc = sl_fs_mkdirs(dir);
    if (rc) {
        sl_error("log", "cannot create partition directory %s", dir);
        return rc;
    }
    sl_partlog *pl = calloc(1, sizeof(*pl));
    if (pl == NULL)
        return SL_ENOMEM;
    pthread_mutex_init(&pl->lock, NULL);
    atomic_init(&pl->refs, 1);
    pl->dir = strdup(dir);
    pl->name = strdup(name);
    pl->conf = *conf;
    pl->oldest_unflushed_ms = -1;
    sl_txn_index_init(&pl->txns);
    int64_t *bases = NULL;
    size_t n = 0;
    rc = (pl->dir && pl->name) ? 0 : SL_ENOMEM;
    /* Before listing: a compaction swap interrupted by a crash is completed or undone. */
    if (rc == 0)
        rc = sl_compact_recover_dir(dir, name);
    if (rc == 0)
        rc = list_segments(dir, &bases, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sl_segment *seg;
        sl_segment_recovery rec;
        bool last = i + 1 == n;
        rc = sl_segment_open(dir, bases[i], last, &seg, &rec);
        if (rc == 0 && pl->nsegs && active(pl)->next_offset > seg->base_offset) {
            sl_error("log", "%s: segment %020" PRId64 " overlaps the one before it", name,
                     bases[i]);
            sl_segment_unref(seg);
            rc = SL_ECORRUPT;
        }
        if (rc == 0)
            rc = push_segment(pl, seg);
        if (rc == 0 && rec.truncated_bytes)
            sl_warn("log", "%s: recovered from a torn tail: cut %" PRId64 " bytes, log ends at "
                           "offset %" PRId64,
                    name, rec.truncated_bytes, seg->next_offset);
    }
    free(bases);
    if (rc == 0)
        rc = sl_producer_state_new(&pl->producers);
    for (size_t i = 0; rc == 0 && i < pl->nsegs; i++) {
        recovery_walk w = {pl, pl->segs[i]};
        rc = sl_segment_walk(pl->segs[i], pl->segs[i]->size, remember_batch, &w);
    }
    if (rc == 0 && pl->txns.nopen)
        sl_debug("log", "%s: %zu transaction%s open at the log end", name, pl->txns.nopen,
                pl->txns.nopen == 1 ? "" : "s");
    if (rc == 0 && pl->nsegs == 0) {
        sl_segment *seg;
        rc = sl_segment_create(dir, 0, &seg);
        if (rc == 0)
            rc = push_segment(pl, seg);
    }
    if (rc) {
        sl_partlog_close(pl);
        return rc;
    }
    set_hw_at_end(pl);
    if (sl_compact_read_checkpoint(dir, name, &pl->cleaned_upto) == 1 &&
        pl->cleaned_upto > pl->hw) {
        sl_warn("log", "%s: cleaner checkpoint %" PRId64 " is past the log end %" PRId64
                       "; compacting the whole log again",
                name, pl->cleaned_upto, pl->hw);
        pl->cleaned_upto = 0;
    }
    *out = pl;
    return 0;
}

void sl_partlog_ref(sl_partlog *pl) {
    atomic_fetch_add(&pl->refs, 1);
}

void sl_partlog_close(sl_partlog *pl) {
    pthread_mutex_lock(&pl->lock);
    pl->closed = true;
    pthread_mutex_unlock(&pl->lock);
    sl_partlog_unref(pl);
}

void sl_partlog_unref(sl_partlog *pl) {
    if (atomic_fetch_sub(&pl->refs, 1) != 1)
        return;
    for (size_t i = 0; i < pl->nsegs; i++)
        sl_segment_unref(pl->segs[i]);
    free(pl->segs);
    sl_producer_state_free(pl->producers);
    sl_txn_index_free(&pl->txns);
    free(pl->dir);
    free(pl->name);
    pthread_mutex_destroy(&pl->lock);
    free(pl);
}

void sl_partlog_set_conf(sl_partlog *pl, const sl_logconf *conf) {
    pthread_mutex_lock(&pl->lock);
    pl->conf = *conf;
    pthread_mutex_unlock(&pl->lock);
}

/* Largest records region the produce check of a compacted log decompresses from one batch. */
#define KEY_CHECK_MAX_RECORDS_BYTES (64u * 1024 * 1024)

/* Every record of the batch at byte 'at' of a request must have a key and the offset delta of
 * its place (compacted logs). */
static int check_keys(const sl_partlog *pl, const uint8_t *batch, size_t total, size_t at,
                      sl_buf *scratch, char *errbuf, size_t errlen) {
    sl_record_iter it;
    sl_record_view rv;
    int rc =
        sl_record_iter_start_decompress(&it, batch, total, scratch, KEY_CHECK_MAX_RECORDS_BYTES);
    if (rc == SL_ENOMEM)
        return rc;
    int32_t n = 0;
    while (rc == 0 && (rc = sl_record_iter_next(&it, &rv)) == 1) {
        /* Compaction keys records by their offsets, so these must be what they claim. */
        if ((uint64_t)rv.offset - (uint64_t)it.hdr.base_offset != (uint64_t)n) {
            snprintf(errbuf, errlen,
                     "record %d of the batch at byte %zu for %s has offset delta %" PRId64, n,
                     at, pl->name, (int64_t)((uint64_t)rv.offset - (uint64_t)it.hdr.base_offset));
            return SL_ECORRUPT;
        }
        if (rv.key == NULL) {
            snprintf(errbuf, errlen,
                     "%s is compacted (cleanup.policy=compact) and every record needs a key: "
                     "record %d of the batch at byte %zu has none",
                     pl->name, n, at);
            return SL_EINVAL;
        }
        n++;
        rc = 0;
    }
    if (rc < 0 || n != it.hdr.records_count || it.pos != it.end) {
        snprintf(errbuf, errlen, "malformed records in the batch at byte %zu for %s", at, pl->name);
        return SL_ECORRUPT;
    }
    return 0;
}

int sl_partlog_validate(sl_partlog *pl, const uint8_t *data, size_t len, int64_t *records,
                        char *errbuf, size_t errlen) {
    pthread_mutex_lock(&pl->lock); /* a topic alter may be changing the config */
    int64_t max_bytes = pl->conf.max_message_bytes;
    bool compact = pl->conf.compact;
    pthread_mutex_unlock(&pl->lock);
    sl_buf scratch = SL_BUF_INIT;
    int rc = 0;
    size_t pos = 0;
    int64_t count = 0;
    if (len == 0) {
        snprintf(errbuf, errlen, "empty produce request for %s", pl->name);
        return SL_ECORRUPT;
    }
    while (rc == 0 && pos < len) {
        sl_batch_header h;
        size_t total = sl_batch_total_size(data + pos, len - pos);
        if (total > (size_t)max_bytes) {
            snprintf(errbuf, errlen,
                     "record batch of %zu bytes is larger than max.message.bytes (%" PRId64
                     ") of %s",
                     total, max_bytes, pl->name);
            rc = SL_ETOOLARGE;
        } else if (sl_batch_validate(data + pos, len - pos, &h)) {
            snprintf(errbuf, errlen, "corrupt record batch at byte %zu for %s", pos, pl->name);
            rc = SL_ECORRUPT;
        } else if (h.attributes & SL_BATCH_ATTR_CONTROL) {
            snprintf(errbuf, errlen, "control batches are written by the transaction "
                                     "coordinator, not by producers (%s)", pl->name);
            rc = SL_EINVAL;
        } else if ((h.attributes & SL_BATCH_ATTR_TRANSACTIONAL) && h.producer_id < 0) {
            snprintf(errbuf, errlen, "a transactional batch needs a producer id (%s)", pl->name);
            rc = SL_EINVAL;
        } else if (h.producer_id >= 0 && (pos != 0 || total != len)) {
            /* Duplicate detection works per batch: an idempotent batch travels alone. */
            snprintf(errbuf, errlen, "a batch with a producer id must be the only batch sent to "
                                     "%s in its request",
                     pl->name);
            rc = SL_EINVAL;
        } else if (compact) {
            /* Compaction keys every record: a record without one could never be cleaned
             * (Kafka refuses them too). Per-record work, but only on compacted logs. */
            rc = check_keys(pl, data + pos, total, pos, &scratch, errbuf, errlen);
        }
        if (rc == 0) {
            count += h.records_count;
            pos += total;
        }
    }
    sl_buf_free(&scratch);
    if (rc)
        return rc;
    *records = count;
    return 0;
}

static int roll(sl_partlog *pl) {
    sl_segment *old = active(pl), *seg;
    if (old->size == 0)
        return 0;
    /* The old segment is never written again: make it durable so recovery only ever needs to
     * check the active segment. */
    int rc = sl_segment_flush(old);
    if (rc == 0)
        rc = sl_segment_create(pl->dir, old->next_offset, &seg);
    if (rc == 0)
        rc = push_segment(pl, seg);
    if (rc == 0) {
        sl_debug("log", "%s: rolled to segment %020" PRId64, pl->name, seg->base_offset);
        if (pl->hw == seg->base_offset) {
            pl->hw_seg = pl->nsegs - 1;
            pl->hw_pos = 0;
        }
    }
    return rc;
}

static bool segment_too_old(const sl_partlog *pl, const sl_segment *seg, int64_t now_ms) {
    return seg->size > 0 && seg->first_timestamp >= 0 &&
           now_ms - seg->first_timestamp >= pl->conf.segment_ms;
}

static int flush_locked(sl_partlog *pl) {
    int rc = sl_segment_flush(active(pl));
    if (rc == 0) {
        pl->unflushed_records = 0;
        pl->oldest_unflushed_ms = -1;
    }
    return rc;
}

/* For an idempotent batch: 0 to append, 1 when it is a duplicate (res filled), or an error. */
static int check_sequence(sl_partlog *pl, const uint8_t *data, size_t len, sl_append_result *res) {
    sl_batch_header h;
    sl_batch_header_parse(data, len, &h);
    if (h.producer_id < 0)
        return 0;
    int64_t first, last;
    int rc = sl_producer_state_check(pl->producers, &h, &first, &last);
    if (rc == 1) {
        memset(res, 0, sizeof(*res));
        res->base_offset = first;
        res->last_offset = last;
        res->log_start_offset = pl->segs[0]->base_offset;
        res->records = 0;
        res->append_time = -1;
        res->duplicate = true;
    }
    return rc;
}

/* Appends checked batches at the LEO. 'marker' >= 0: 'data' is one control batch of that type.
 * Lock held. */
static int append_locked(sl_partlog *pl, uint8_t *data, size_t len, int32_t leader_epoch,
                         int64_t now_ms, int marker, sl_append_result *res) {
    int rc = 0;
    res->duplicate = false;
    sl_segment *seg = active(pl);
    int64_t limit = pl->conf.segment_bytes < SL_SEGMENT_MAX_BYTES ? pl->conf.segment_bytes
                                                                  : SL_SEGMENT_MAX_BYTES;
    if (seg->size > 0 && (seg->size + (int64_t)len > limit || segment_too_old(pl, seg, now_ms))) {
        rc = roll(pl);
        seg = active(pl);
    }
    int64_t next = seg->next_offset, records = 0;
    for (size_t pos = 0; rc == 0 && pos < len;) {
        uint8_t *b = data + pos;
        sl_batch_header h;
        sl_batch_header_parse(b, len - pos, &h);
        sl_batch_set_base_offset(b, next);
        sl_batch_set_leader_epoch(b, leader_epoch);
        if (pl->conf.log_append_time) {
            size_t total = (size_t)h.length + SL_BATCH_LOG_OVERHEAD;
            sl_be16_put(b + SL_BATCH_OFF_ATTRIBUTES,
                        (uint16_t)(h.attributes | SL_BATCH_ATTR_LOG_APPEND_TIME));
            sl_be64_put(b + SL_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)now_ms);
            sl_be32_put(b + SL_BATCH_OFF_CRC, sl_batch_compute_crc(b, total));
        }
        next += h.last_offset_delta + 1;
        records += h.records_count;
        pos += (size_t)h.length + SL_BATCH_LOG_OVERHEAD;
    }
    if (rc == 0) {
        res->base_offset = seg->next_offset;
        rc = sl_segment_append(seg, data, len, pl->conf.index_interval_bytes);
    }
    if (rc == 0) {
        res->last_offset = next - 1;
        res->log_start_offset = pl->segs[0]->base_offset;
        res->records = records;
        res->append_time = pl->conf.log_append_time ? now_ms : -1;
        sl_batch_header h;
        sl_batch_header_parse(data, len, &h);
        if (marker >= 0) {
            rc = note_marker(pl, &h, marker);
        } else if (h.producer_id >= 0) {
            rc = sl_producer_state_update(pl->producers, &h);
            if (rc == 0)
                rc = sl_txn_index_note(&pl->txns, &h, 0);
        }
        if (pl->oldest_unflushed_ms < 0)
            pl->oldest_unflushed_ms = now_ms;
        pl->unflushed_records += records;
        if (pl->conf.flush_messages > 0 && pl->unflushed_records >= pl->conf.flush_messages)
            rc = flush_locked(pl);
    }
    return rc;
}

int sl_partlog_append(sl_partlog *pl, uint8_t *data, size_t len, int32_t leader_epoch,
                      int64_t now_ms, sl_append_result *res) {
    pthread_mutex_lock(&pl->lock);
    int rc = check_sequence(pl, data, len, res);
    if (rc == 0)
        rc = append_locked(pl, data, len, leader_epoch, now_ms, -1, res);
    pthread_mutex_unlock(&pl->lock);
    return rc == 1 ? 0 : rc;
}

int sl_partlog_append_marker(sl_partlog *pl, int64_t pid, int16_t epoch, int type,
                             int32_t leader_epoch, int64_t now_ms, int64_t *offset) {
    sl_batch_builder bb = {0};
    int rc = sl_batch_build_control(&bb, pid, epoch, type, now_ms);
    if (rc) {
        sl_batch_builder_free(&bb);
        return rc;
    }
    sl_batch_header h;
    sl_batch_header_parse(bb.buf.data, bb.buf.len, &h);
    pthread_mutex_lock(&pl->lock);
    /* Not checked against the producer's epoch: the coordinator's word is final, and a batch
     * that slipped in with some newer epoch must not leave a transaction undecidable. */
    sl_append_result res;
    rc = append_locked(pl, bb.buf.data, bb.buf.len, leader_epoch, now_ms, type, &res);
    pthread_mutex_unlock(&pl->lock);
    if (rc == 0)
        *offset = res.base_offset;
    sl_batch_builder_free(&bb);
    return rc;
}

int sl_partlog_append_replica(sl_partlog *pl, const uint8_t *data, size_t len, int64_t now_ms) {
    int64_t expected = -1, records = 0;
    for (size_t pos = 0; pos < len;) {
        sl_batch_header h;
        size_t total = sl_batch_total_size(data + pos, len - pos);
        if (total == 0 || total > len - pos ||
            sl_batch_validate_stored(data + pos, total, &h) != 0)
            return SL_ECORRUPT;
        if (h.base_offset < expected)
            return SL_ERANGE;
        expected = h.base_offset + h.last_offset_delta + 1;
        records += h.records_count;
        pos += total;
    }
    if (len == 0)
        return 0;
    pthread_mutex_lock(&pl->lock);
    sl_segment *seg = active(pl);
    int rc = (int64_t)sl_be64_get(data + SL_BATCH_OFF_BASE_OFFSET) < seg->next_offset ? SL_ERANGE
                                                                                      : 0;
    int64_t limit = pl->conf.segment_bytes < SL_SEGMENT_MAX_BYTES ? pl->conf.segment_bytes
                                                                  : SL_SEGMENT_MAX_BYTES;
    if (rc == 0 && seg->size > 0 &&
        (seg->size + (int64_t)len > limit || segment_too_old(pl, seg, now_ms))) {
        rc = roll(pl);
        seg = active(pl);
    }
    if (rc == 0)
        rc = sl_segment_append(seg, data, len, pl->conf.index_interval_bytes);
    for (size_t pos = 0; rc == 0 && pos < len;) {
        sl_batch_header h;
        size_t total = sl_batch_total_size(data + pos, len - pos);
        sl_batch_header_parse(data + pos, total, &h);
        if (h.producer_id >= 0 && (h.attributes & SL_BATCH_ATTR_CONTROL)) {
            int type = sl_batch_control_type(data + pos, total);
            rc = type < 0 ? type : note_marker(pl, &h, type);
        } else if (h.producer_id >= 0) {
            rc = sl_producer_state_update(pl->producers, &h);
            if (rc == 0)
                rc = sl_txn_index_note(&pl->txns, &h, 0);
        }
        pos += total;
    }
    if (rc == 0) {
        if (pl->oldest_unflushed_ms < 0)
            pl->oldest_unflushed_ms = now_ms;
        pl->unflushed_records += records;
        if (pl->conf.flush_messages > 0 && pl->unflushed_records >= pl->conf.flush_messages)
            rc = flush_locked(pl);
    }
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

static size_t segment_for(sl_partlog *pl, int64_t offset);

/* Producer and transaction state from the whole log again (after a truncation). Lock held. */
static int rebuild_state(sl_partlog *pl) {
    sl_producer_state *fresh;
    int rc = sl_producer_state_new(&fresh);
    if (rc)
        return rc;
    sl_producer_state_free(pl->producers);
    pl->producers = fresh;
    sl_txn_index_free(&pl->txns);
    sl_txn_index_init(&pl->txns);
    for (size_t i = 0; rc == 0 && i < pl->nsegs; i++) {
        recovery_walk w = {pl, pl->segs[i]};
        rc = sl_segment_walk(pl->segs[i], pl->segs[i]->size, remember_batch, &w);
    }
    return rc;
}

int sl_partlog_reset(sl_partlog *pl, int64_t offset) {
    pthread_mutex_lock(&pl->lock);
    if (offset < active(pl)->next_offset) {
        pthread_mutex_unlock(&pl->lock);
        return SL_EINVAL; /* it would drop records the log may need: truncate instead */
    }
    if (pl->cleaning) { /* a compaction pass holds segments to swap: next round */
        pthread_mutex_unlock(&pl->lock);
        return SL_ERETRY;
    }
    sl_segment *fresh;
    int rc = sl_segment_create(pl->dir, offset, &fresh);
    sl_segment **doomed = rc == 0 ? malloc(pl->nsegs * sizeof(*doomed)) : NULL;
    size_t ndoomed = pl->nsegs;
    if (rc == 0 && doomed == NULL) {
        sl_segment_unref(fresh);
        rc = SL_ENOMEM;
    }
    if (rc == 0) {
        memcpy(doomed, pl->segs, ndoomed * sizeof(*doomed));
        pl->nsegs = 0;
        push_segment(pl, fresh); /* cannot fail: the array had room */
        set_hw_at_end(pl);
        pl->unflushed_records = 0;
        pl->oldest_unflushed_ms = -1;
        pl->cleaned_upto = offset;
        rc = rebuild_state(pl); /* nothing left: no producers, no open transactions */
    }
    pthread_mutex_unlock(&pl->lock);
    for (size_t i = 0; doomed && i < ndoomed; i++) {
        sl_segment_unlink(doomed[i]);
        sl_segment_unref(doomed[i]);
    }
    free(doomed);
    if (rc == 0)
        sl_info("log", "%s: emptied to start at offset %" PRId64 ", the leader's log start",
                pl->name, offset);
    return rc;
}

int sl_partlog_truncate(sl_partlog *pl, int64_t offset) {
    pthread_mutex_lock(&pl->lock);
    if (offset < pl->segs[0]->base_offset) {
        pthread_mutex_unlock(&pl->lock);
        return SL_ERANGE;
    }
    if (offset >= active(pl)->next_offset) {
        pthread_mutex_unlock(&pl->lock);
        return 0;
    }
    size_t keep = segment_for(pl, offset) + 1;
    sl_segment **doomed = NULL;
    size_t ndoomed = pl->nsegs - keep;
    if (ndoomed) {
        doomed = malloc(ndoomed * sizeof(*doomed));
        if (doomed == NULL) {
            pthread_mutex_unlock(&pl->lock);
            return SL_ENOMEM;
        }
        memcpy(doomed, pl->segs + keep, ndoomed * sizeof(*doomed));
        pl->nsegs = keep;
    }
    int rc = sl_segment_truncate(active(pl), offset, pl->conf.index_interval_bytes);
    if (rc == 0)
        rc = rebuild_state(pl);
    int64_t end = active(pl)->next_offset;
    if (pl->hw >= end || pl->hw_seg >= pl->nsegs)
        set_hw_at_end(pl);
    if (pl->cleaned_upto > end)
        pl->cleaned_upto = end;
    pthread_mutex_unlock(&pl->lock);
    for (size_t i = 0; i < ndoomed; i++) {
        sl_segment_unlink(doomed[i]);
        sl_segment_unref(doomed[i]);
    }
    free(doomed);
    if (rc == 0)
        sl_info("log", "%s: truncated to offset %" PRId64 " (asked for %" PRId64 ")", pl->name,
                end, offset);
    return rc;
}

int sl_partlog_open_txns(sl_partlog *pl, sl_txn_range **out, size_t *n) {
    pthread_mutex_lock(&pl->lock);
    int rc = 0;
    *out = NULL;
    *n = pl->txns.nopen;
    if (*n) {
        *out = malloc(*n * sizeof(**out));
        if (*out)
            memcpy(*out, pl->txns.open, *n * sizeof(**out));
        else
            rc = SL_ENOMEM;
    }
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

int sl_partlog_aborted_txns(sl_partlog *pl, int64_t from, int64_t to, sl_txn_range **out,
                            size_t *n) {
    pthread_mutex_lock(&pl->lock);
    int rc = sl_txn_index_aborted(&pl->txns, from, to, out, n);
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

/* Index of the segment holding 'offset' (the last with base <= offset). */
static size_t segment_for(sl_partlog *pl, int64_t offset) {
    size_t lo = 0, hi = pl->nsegs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (pl->segs[mid]->base_offset <= offset)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Bytes of segment 'i' that lie below the HW. */
static int64_t readable_limit(sl_partlog *pl, size_t i) {
    if (i < pl->hw_seg)
        return pl->segs[i]->size;
    return i == pl->hw_seg ? pl->hw_pos : 0;
}

/* Moves the HW to 'hw' (clamped to the log); backwards only when 'lower'. */
static int set_hw(sl_partlog *pl, int64_t hw, bool lower) {
    int rc = 0;
    pthread_mutex_lock(&pl->lock);
    sl_segment *seg = active(pl);
    if (hw > seg->next_offset)
        hw = seg->next_offset;
    if (hw < pl->segs[0]->base_offset)
        hw = pl->segs[0]->base_offset;
    if (hw == seg->next_offset) {
        pl->hw = hw;
        pl->hw_seg = pl->nsegs - 1;
        pl->hw_pos = seg->size;
    } else if (hw > pl->hw || (lower && hw < pl->hw)) {
        size_t i = segment_for(pl, hw);
        int64_t pos;
        rc = sl_segment_find(pl->segs[i], hw, pl->segs[i]->size, &pos);
        if (rc == 0) {
            pl->hw = hw;
            pl->hw_seg = i;
            pl->hw_pos = pos;
        }
    }
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

int sl_partlog_set_high_watermark(sl_partlog *pl, int64_t hw) {
    return set_hw(pl, hw, false);
}

int sl_partlog_restore_high_watermark(sl_partlog *pl, int64_t hw) {
    return set_hw(pl, hw, true);
}

static void offsets_locked(sl_partlog *pl, sl_read_result *res) {
    res->high_watermark = pl->hw;
    res->last_stable_offset = sl_txn_index_first_unstable(&pl->txns, pl->hw);
    res->log_start_offset = pl->segs[0]->base_offset;
    res->log_end_offset = active(pl)->next_offset;
}

void sl_partlog_offsets(sl_partlog *pl, sl_read_result *res) {
    pthread_mutex_lock(&pl->lock);
    offsets_locked(pl, res);
    pthread_mutex_unlock(&pl->lock);
}

/* Cuts 'out' back so it ends on a batch boundary, before any batch from offset 'stop' on. */
static void trim_partial(sl_buf *out, size_t start, int64_t stop) {
    size_t pos = start;
    while (pos < out->len) {
        size_t total = sl_batch_total_size(out->data + pos, out->len - pos);
        if (total == 0 || pos + total > out->len ||
            (int64_t)sl_be64_get(out->data + pos + SL_BATCH_OFF_BASE_OFFSET) >= stop)
            break;
        pos += total;
    }
    out->len = pos;
}

/* How far a read may go: the HW (consumers), the last stable offset (read_committed consumers)
 * or the LEO (followers, which copy what the leader has before it is committed). */
enum read_bound { READ_TO_HW, READ_TO_LSO, READ_TO_LEO };

/* A read up to 'bound'. For READ_TO_LSO, 'aborted' gets the aborted transactions of
 * [offset, LSO), taken under the same lock as the read so that retention cannot prune them in
 * between. */
static int read_upto(sl_partlog *pl, int64_t offset, size_t max_bytes, enum read_bound bound,
                     sl_buf *out, sl_read_result *res, sl_txn_range **aborted, size_t *naborted) {
    pthread_mutex_lock(&pl->lock);
    offsets_locked(pl, res);
    bool leo = bound == READ_TO_LEO;
    int64_t end = leo ? res->log_end_offset : pl->hw;
    int64_t stop = bound == READ_TO_LSO ? res->last_stable_offset : end;
    /* Between the HW and the LEO is a range the log holds but may not show yet (a new leader's
     * HW catches up with what its followers have): nothing now, not out of range. */
    if (offset < res->log_start_offset || offset > res->log_end_offset) {
        pthread_mutex_unlock(&pl->lock);
        return SL_ERANGE;
    }
    if (offset > end)
        offset = end;
    if (bound == READ_TO_LSO && offset < stop) {
        int rc = sl_txn_index_aborted(&pl->txns, offset, stop, aborted, naborted);
        if (rc) {
            pthread_mutex_unlock(&pl->lock);
            return rc;
        }
    }
    if (offset >= stop) {
        pthread_mutex_unlock(&pl->lock);
        return 0;
    }
    /* To the LEO: a segment's size as seen under the lock, since appends only add after it. */
    size_t i = segment_for(pl, offset);
    int64_t limit = leo ? pl->segs[i]->size : readable_limit(pl, i), pos;
    int rc = sl_segment_find(pl->segs[i], offset, limit, &pos);
    while (rc == SL_ERANGE && i + 1 < pl->nsegs) {
        /* 'offset' falls in a gap after this segment (compaction may leave one): read on. Past
         * the HW segment the readable limit is 0, so this never reads beyond the HW (nor, with
         * the segments' sizes as limits, beyond the LEO). */
        i++;
        limit = leo ? pl->segs[i]->size : readable_limit(pl, i);
        rc = sl_segment_find(pl->segs[i], pl->segs[i]->base_offset, limit, &pos);
    }
    sl_segment *seg = pl->segs[i];
    if (rc == 0)
        sl_segment_ref(seg);
    pthread_mutex_unlock(&pl->lock);
    if (rc)
        return rc == SL_ERANGE ? 0 : rc;

    int64_t first;
    size_t start = out->len;
    rc = sl_segment_batch_size_at(seg, pos, &first);
    if (rc == 0) {
        int64_t want = first > (int64_t)max_bytes ? first : (int64_t)max_bytes;
        if (want > limit - pos)
            want = limit - pos;
        rc = sl_segment_read(seg, pos, (size_t)want, out);
    }
    sl_segment_unref(seg);
    if (rc == 0)
        trim_partial(out, start, stop);
    return rc;
}

int sl_partlog_read(sl_partlog *pl, int64_t offset, size_t max_bytes, sl_buf *out,
                    sl_read_result *res) {
    return read_upto(pl, offset, max_bytes, READ_TO_HW, out, res, NULL, NULL);
}

int sl_partlog_read_replica(sl_partlog *pl, int64_t offset, size_t max_bytes, sl_buf *out,
                            sl_read_result *res) {
    return read_upto(pl, offset, max_bytes, READ_TO_LEO, out, res, NULL, NULL);
}

int sl_partlog_read_committed(sl_partlog *pl, int64_t offset, size_t max_bytes, sl_buf *out,
                              sl_read_result *res, sl_txn_range **aborted, size_t *naborted) {
    *aborted = NULL;
    *naborted = 0;
    int rc = read_upto(pl, offset, max_bytes, READ_TO_LSO, out, res, aborted, naborted);
    if (rc) {
        free(*aborted);
        *aborted = NULL;
        *naborted = 0;
    }
    return rc;
}

/* The last non-empty segment whose first batch has an epoch <= 'epoch' into '*at': 1, or 0 when
 * there is none. Epochs never decrease along the log, so a binary search on first batches finds
 * it; an empty segment (a fresh active one, one truncated to nothing) is stepped over. Lock
 * held. */
static int epoch_segment(sl_partlog *pl, int32_t epoch, size_t *at) {
    size_t lo = 0, hi = pl->nsegs;
    int found = 0;
    /* Non-empty segments below 'lo' start at or below 'epoch', those from 'hi' on above it. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2, j = mid;
        while (j < hi && pl->segs[j]->size == 0)
            j++;
        if (j == hi) {
            hi = mid;
            continue;
        }
        sl_batch_header h;
        int r = sl_segment_header_at(pl->segs[j], 0, pl->segs[j]->size, &h);
        if (r <= 0)
            return SL_ECORRUPT; /* a non-empty segment starts with a whole batch */
        if (h.leader_epoch <= epoch) {
            *at = j;
            found = 1;
            lo = j + 1;
        } else {
            hi = mid;
        }
    }
    return found;
}

int sl_partlog_epoch_end(sl_partlog *pl, int32_t epoch, int32_t *found_epoch,
                         int64_t *end_offset) {
    int32_t found = -1;
    size_t i = 0;
    /* Under the lock, as lookups by time are: a few header reads at index entries, and neither
     * an append nor a truncation can move the log from under the answer. */
    pthread_mutex_lock(&pl->lock);
    int64_t start = pl->segs[0]->base_offset, end = start;
    int rc = epoch < 0 ? 0 : epoch_segment(pl, epoch, &i); /* -1 asks for no epoch */
    if (rc == 1) /* else every batch is of a later epoch, or there is none */
        rc = sl_segment_epoch_end(pl->segs[i], epoch, pl->segs[i]->size, &found, &end);
    if (rc == 0 && found >= 0) {
        /* The epoch runs to the end of segment i: it ends where the next batch starts, which
         * opens the next non-empty segment, or at the LEO. */
        end = active(pl)->next_offset;
        while (++i < pl->nsegs && pl->segs[i]->size == 0)
            ;
        sl_batch_header h;
        if (i < pl->nsegs && sl_segment_header_at(pl->segs[i], 0, pl->segs[i]->size, &h) != 1)
            rc = SL_ECORRUPT;
        else if (i < pl->nsegs)
            end = h.base_offset;
    }
    pthread_mutex_unlock(&pl->lock);
    if (rc < 0) {
        sl_error("log", "%s: unreadable batch header looking up the end of leader epoch %" PRId32,
                 pl->name, epoch);
        return rc;
    }
    if (found < 0)
        end = start; /* only batches without an epoch (-1) at or below it count as none */
    *found_epoch = found;
    *end_offset = end;
    return 0;
}

int sl_partlog_offset_for_time(sl_partlog *pl, int64_t ts, int64_t *offset) {
    int rc = SL_ERANGE;
    pthread_mutex_lock(&pl->lock);
    for (size_t i = 0; i < pl->nsegs && rc == SL_ERANGE; i++) {
        int64_t limit = readable_limit(pl, i);
        if (limit > 0)
            rc = sl_segment_find_time(pl->segs[i], ts, limit, offset);
    }
    if (rc == SL_ERANGE) {
        *offset = pl->hw;
        rc = 0;
    }
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

const char *sl_partlog_name(const sl_partlog *pl) {
    return pl->name;
}

int64_t sl_partlog_size_bytes(sl_partlog *pl) {
    int64_t total = 0;
    pthread_mutex_lock(&pl->lock);
    for (size_t i = 0; i < pl->nsegs; i++)
        total += pl->segs[i]->size;
    pthread_mutex_unlock(&pl->lock);
    return total;
}

size_t sl_partlog_segment_count(sl_partlog *pl) {
    pthread_mutex_lock(&pl->lock);
    size_t n = pl->nsegs;
    pthread_mutex_unlock(&pl->lock);
    return n;
}

int sl_partlog_enforce_retention(sl_partlog *pl, int64_t now_ms) {
    sl_segment *doomed[64];
    size_t ndoomed = 0;
    const char *reason = NULL;
    pthread_mutex_lock(&pl->lock);
    const sl_logconf *c = &pl->conf;
    if (!c->delete_retention) { /* cleanup.policy=compact: compaction alone removes records */
        pthread_mutex_unlock(&pl->lock);
        return 0;
    }
    if (c->retention_ms >= 0 && active(pl)->size > 0 && active(pl)->next_offset == pl->hw &&
        active(pl)->max_timestamp < now_ms - c->retention_ms) {
        /* Everything has expired: start a fresh segment so the old one can go. */
        if (roll(pl) != 0) {
            pthread_mutex_unlock(&pl->lock);
            return 0;
        }
    }
    int64_t total = 0;
    for (size_t i = 0; i < pl->nsegs; i++)
        total += pl->segs[i]->size;
    size_t keep_from = 0;
    /* An open transaction keeps its first batch: its marker must find it to end it. */
    int64_t stable = sl_txn_index_first_unstable(&pl->txns, pl->hw);
    while (keep_from + 1 < pl->nsegs && ndoomed < 64) {
        sl_segment *seg = pl->segs[keep_from];
        if (seg->next_offset > stable)
            break;
        bool expired = c->retention_ms >= 0 && seg->max_timestamp < now_ms - c->retention_ms;
        bool too_big = c->retention_bytes >= 0 && total - seg->size >= c->retention_bytes;
        if (!expired && !too_big)
            break;
        reason = expired ? "retention.ms" : "retention.bytes";
        total -= seg->size;
        doomed[ndoomed++] = seg;
        keep_from++;
    }
    if (keep_from) {
        memmove(pl->segs, pl->segs + keep_from, (pl->nsegs - keep_from) * sizeof(*pl->segs));
        pl->nsegs -= keep_from;
        pl->hw_seg -= keep_from;
    }
    int64_t start = pl->segs[0]->base_offset;
    sl_txn_index_prune(&pl->txns, start);
    pthread_mutex_unlock(&pl->lock);
    for (size_t i = 0; i < ndoomed; i++) {
        sl_segment_unlink(doomed[i]);
        sl_segment_unref(doomed[i]);
    }
    if (ndoomed)
        sl_info("log", "%s: deleted %zu old segment%s (%s); log start offset is now %" PRId64,
                pl->name, ndoomed, ndoomed == 1 ? "" : "s", reason, start);
    return (int)ndoomed;
}

int sl_partlog_flush(sl_partlog *pl) {
    pthread_mutex_lock(&pl->lock);
    int rc = flush_locked(pl);
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

int sl_partlog_flush_if_due(sl_partlog *pl, int64_t now_ms) {
    int rc = 0;
    pthread_mutex_lock(&pl->lock);
    if (pl->oldest_unflushed_ms >= 0 && pl->conf.flush_ms >= 0 &&
        now_ms - pl->oldest_unflushed_ms >= pl->conf.flush_ms)
        rc = flush_locked(pl);
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

int sl_partlog_roll_if_due(sl_partlog *pl, int64_t now_ms) {
    int rc = 0;
    pthread_mutex_lock(&pl->lock);
    if (segment_too_old(pl, active(pl), now_ms))
        rc = roll(pl);
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

/* ---- the cleaner's access (log/compact.h) ---- */

int sl_partlog_clean_begin(sl_partlog *pl, int64_t now_ms, sl_clean_view *v) {
    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&pl->lock);
    v->cleaned_upto = pl->cleaned_upto;
    if (!pl->conf.compact || pl->closed || pl->cleaning || pl->clean_broken) {
        pthread_mutex_unlock(&pl->lock);
        return 1;
    }
    /* Whole segments below the active one and the HW segment: they no longer change. And below
     * the last stable offset: an undecided transaction's records may yet be aborted. */
    size_t n = pl->nsegs - 1;
    if (pl->hw_seg < n)
        n = pl->hw_seg;
    int64_t stable = sl_txn_index_first_unstable(&pl->txns, pl->hw);
    while (n > 0 && pl->segs[n - 1]->next_offset > stable)
        n--;
    if (pl->conf.min_compaction_lag_ms > 0) {
        int64_t newest; /* records newer than this are too young to compact */
        if (__builtin_sub_overflow(now_ms, pl->conf.min_compaction_lag_ms, &newest))
            newest = INT64_MIN;
        for (size_t i = 0; i < n; i++) {
            if (pl->segs[i]->max_timestamp > newest) {
                n = i; /* a prefix only: what follows is younger still, or about as young */
                break;
            }
        }
    }
    if (n == 0) {
        pthread_mutex_unlock(&pl->lock);
        return 1;
    }
    v->segs = malloc(n * sizeof(*v->segs));
    if (v->segs == NULL) {
        pthread_mutex_unlock(&pl->lock);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        v->segs[i] = pl->segs[i];
        sl_segment_ref(v->segs[i]);
    }
    v->nsegs = n;
    v->end_offset = pl->segs[n]->base_offset;
    if (sl_txn_index_aborted(&pl->txns, pl->segs[0]->base_offset, v->end_offset, &v->aborted,
                             &v->naborted)) {
        for (size_t i = 0; i < n; i++)
            sl_segment_unref(v->segs[i]);
        free(v->segs);
        v->segs = NULL;
        pthread_mutex_unlock(&pl->lock);
        return SL_ENOMEM;
    }
    v->conf = pl->conf;
    v->dir = pl->dir;
    v->name = pl->name;
    pl->cleaning = true;
    pthread_mutex_unlock(&pl->lock);
    return 0;
}

void sl_partlog_clean_end(sl_partlog *pl, sl_clean_view *v, int status, int64_t cleaned_upto) {
    pthread_mutex_lock(&pl->lock);
    if (status == 0) {
        pl->cleaned_upto = cleaned_upto;
        /* Under the lock, so a topic deleted and made again meanwhile never gets our file. A
         * checkpoint that fails to be written only makes a later start compact more. */
        if (!pl->closed)
            sl_compact_write_checkpoint(pl->dir, pl->name, cleaned_upto);
    } else if (status == SL_ECORRUPT) {
        pl->clean_broken = true;
    }
    pl->cleaning = false;
    pthread_mutex_unlock(&pl->lock);
    for (size_t i = 0; i < v->nsegs; i++)
        sl_segment_unref(v->segs[i]);
    free(v->segs);
    free(v->aborted);
    v->segs = NULL;
    v->aborted = NULL;
    v->nsegs = v->naborted = 0;
}

int sl_partlog_clean_swap(sl_partlog *pl, sl_segment *const *old, size_t nold, sl_segment *fresh,
                          int64_t end_offset) {
    pthread_mutex_lock(&pl->lock);
    if (pl->closed) {
        pthread_mutex_unlock(&pl->lock);
        return SL_ECLOSED;
    }
    /* Retention may have removed some of them meanwhile (compact,delete). */
    size_t at = 0;
    while (at < pl->nsegs && pl->segs[at] != old[0])
        at++;
    bool same = at + nold < pl->nsegs && at + nold <= pl->hw_seg;
    for (size_t j = 0; same && j < nold; j++)
        same = pl->segs[at + j] == old[j];
    if (!same) {
        pthread_mutex_unlock(&pl->lock);
        return SL_ERETRY;
    }
    int64_t base = old[0]->base_offset;
    /* Allocation first: past the commit point nothing may fail for want of memory. */
    char path[4096];
    sl_segment_path(path, sizeof(path), pl->dir, base);
    char *canonical = strdup(path);
    int rc = canonical ? sl_compact_commit_swap(pl->dir, base, end_offset) : SL_ENOMEM;
    if (rc) {
        /* A failed commit may still have renamed the file: let a reopen sort it out. */
        if (canonical)
            pl->clean_broken = true;
        pthread_mutex_unlock(&pl->lock);
        free(canonical);
        return rc;
    }
    /* Committed: the old files go, the new ones take their names. Readers that hold the old
     * segments keep reading their open files. */
    for (size_t j = 0; j < nold; j++)
        sl_segment_unlink(old[j]);
    rc = sl_compact_finish_swap(pl->dir, base, end_offset);
    if (rc) {
        /* The disk is half-way; a reopen completes the swap from the .swap file. Until then
         * the old segments stay in memory (their files are open) and no pass runs. */
        pl->clean_broken = true;
        pthread_mutex_unlock(&pl->lock);
        free(canonical);
        return rc;
    }
    free(fresh->path);
    fresh->path = canonical;
    pl->segs[at] = fresh;
    memmove(pl->segs + at + 1, pl->segs + at + nold, (pl->nsegs - at - nold) * sizeof(*pl->segs));
    pl->nsegs -= nold - 1;
    pl->hw_seg -= nold - 1;
    pthread_mutex_unlock(&pl->lock);
    for (size_t j = 0; j < nold; j++)
        sl_segment_unref(old[j]);
    return 0;
}

bool sl_partlog_clean_is_producer_tail(sl_partlog *pl, int64_t pid, int64_t last_offset) {
    int64_t last;
    pthread_mutex_lock(&pl->lock);
    bool tail =
        sl_producer_state_last_offset(pl->producers, pid, &last) == 1 && last == last_offset;
    pthread_mutex_unlock(&pl->lock);
    return tail;
}

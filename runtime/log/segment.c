#include "log/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "log/batch.h"
#include "sluice/err.h"

#define INDEX_ENTRY_SIZE 8
#define TIME_ENTRY_SIZE 12

void sl_segment_path(char *out, size_t outlen, const char *dir, int64_t base_offset) {
    snprintf(out, outlen, "%s/%020" PRId64, dir, base_offset);
}

static int open_file(const char *base, const char *ext, int flags) {
    char path[4200];
    snprintf(path, sizeof(path), "%s%s", base, ext);
    return open(path, flags | O_CLOEXEC, 0644);
}

static void segment_free(sl_segment *seg) {
    if (seg->log_fd >= 0)
        close(seg->log_fd);
    if (seg->index_fd >= 0)
        close(seg->index_fd);
    if (seg->time_fd >= 0)
        close(seg->time_fd);
    free(seg->idx);
    free(seg->tidx);
    free(seg->path);
    free(seg);
}

static sl_segment *segment_alloc(const char *dir, int64_t base_offset) {
    sl_segment *seg = calloc(1, sizeof(*seg));
    char path[4096];
    if (seg == NULL)
        return NULL;
    sl_segment_path(path, sizeof(path), dir, base_offset);
    seg->path = strdup(path);
    if (seg->path == NULL) {
        free(seg);
        return NULL;
    }
    seg->base_offset = base_offset;
    seg->next_offset = base_offset;
    seg->max_timestamp = -1;
    seg->first_timestamp = -1;
    seg->log_fd = seg->index_fd = seg->time_fd = -1;
    atomic_init(&seg->refs, 1);
    return seg;
}

static int open_all(sl_segment *seg, int flags) {
    seg->log_fd = open_file(seg->path, ".log", O_RDWR | O_CREAT | flags);
    seg->index_fd = open_file(seg->path, ".index", O_RDWR | O_CREAT | flags);
    seg->time_fd = open_file(seg->path, ".timeindex", O_RDWR | O_CREAT | flags);
    if (seg->log_fd < 0 || seg->index_fd < 0 || seg->time_fd < 0) {
        sl_error("log", "cannot open segment %s: %s", seg->path, strerror(errno));
        return SL_EIO;
    }
    return 0;
}

int sl_segment_create(const char *dir, int64_t base_offset, sl_segment **out) {
    return sl_segment_create_tagged(dir, base_offset, "", out);
}

int sl_segment_create_tagged(const char *dir, int64_t base_offset, const char *tag,
                             sl_segment **out) {
    sl_segment *seg = segment_alloc(dir, base_offset);
    if (seg == NULL)
        return SL_ENOMEM;
    if (tag[0]) {
        char *path = NULL;
        if (asprintf(&path, "%s%s", seg->path, tag) < 0) {
            segment_free(seg);
            return SL_ENOMEM;
        }
        free(seg->path);
        seg->path = path;
    }
    int rc = open_all(seg, O_TRUNC);
    if (rc) {
        segment_free(seg);
        return rc;
    }
    *out = seg;
    return 0;
}

/* ---- in-memory indexes ---- */

static int idx_push(sl_segment *seg, uint32_t rel, uint32_t pos) {
    if (seg->nidx == seg->idx_cap) {
        size_t cap = seg->idx_cap ? seg->idx_cap * 2 : 64;
        sl_index_entry *p = realloc(seg->idx, cap * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        seg->idx = p;
        seg->idx_cap = cap;
    }
    seg->idx[seg->nidx++] = (sl_index_entry){rel, pos};
    return 0;
}

static int tidx_push(sl_segment *seg, int64_t ts, uint32_t rel) {
    if (seg->ntidx == seg->tidx_cap) {
        size_t cap = seg->tidx_cap ? seg->tidx_cap * 2 : 64;
        sl_time_entry *p = realloc(seg->tidx, cap * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        seg->tidx = p;
        seg->tidx_cap = cap;
    }
    seg->tidx[seg->ntidx++] = (sl_time_entry){ts, rel};
    return 0;
}

/* Records one batch in the in-memory state and, when an index interval has passed, in both
 * indexes. 'write_files' is false while rebuilding (the files are written in one go after). */
static int note_batch(sl_segment *seg, const sl_batch_header *h, int64_t pos, int64_t total,
                      int64_t interval, bool write_files) {
    int64_t last = h->base_offset + h->last_offset_delta;
    if (seg->first_timestamp < 0)
        seg->first_timestamp = h->base_timestamp;
    bool new_max = h->max_timestamp > seg->max_timestamp;
    if (new_max)
        seg->max_timestamp = h->max_timestamp;
    if (seg->nidx == 0 || seg->bytes_since_index >= interval) {
        uint32_t rel = (uint32_t)(h->base_offset - seg->base_offset);
        int rc = idx_push(seg, rel, (uint32_t)pos);
        if (rc)
            return rc;
        if (write_files) {
            uint8_t e[INDEX_ENTRY_SIZE];
            sl_be32_put(e, rel);
            sl_be32_put(e + 4, (uint32_t)pos);
            if (sl_fs_write_all(seg->index_fd, e, sizeof(e)))
                return SL_EIO;
        }
        if (seg->ntidx == 0 || seg->max_timestamp > seg->tidx[seg->ntidx - 1].timestamp) {
            uint32_t trel = (uint32_t)(last - seg->base_offset);
            rc = tidx_push(seg, seg->max_timestamp, trel);
            if (rc)
                return rc;
            if (write_files) {
                uint8_t t[TIME_ENTRY_SIZE];
                sl_be64_put(t, (uint64_t)seg->max_timestamp);
                sl_be32_put(t + 8, trel);
                if (sl_fs_write_all(seg->time_fd, t, sizeof(t)))
                    return SL_EIO;
            }
        }
        seg->bytes_since_index = 0;
    }
    seg->bytes_since_index += total;
    seg->next_offset = last + 1;
    return 0;
}

static int write_indexes(sl_segment *seg) {
    if (ftruncate(seg->index_fd, 0) || ftruncate(seg->time_fd, 0))
        return SL_EIO;
    if (lseek(seg->index_fd, 0, SEEK_SET) < 0 || lseek(seg->time_fd, 0, SEEK_SET) < 0)
        return SL_EIO;
    sl_buf b = SL_BUF_INIT;
    int rc = sl_buf_reserve(&b, seg->nidx * INDEX_ENTRY_SIZE + seg->ntidx * TIME_ENTRY_SIZE);
    if (rc)
        return rc;
    for (size_t i = 0; i < seg->nidx; i++) {
        sl_be32_put(b.data + i * 8, seg->idx[i].rel_offset);
        sl_be32_put(b.data + i * 8 + 4, seg->idx[i].position);
    }
    rc = sl_fs_write_all(seg->index_fd, b.data, seg->nidx * INDEX_ENTRY_SIZE);
    for (size_t i = 0; rc == 0 && i < seg->ntidx; i++) {
        sl_be64_put(b.data + i * 12, (uint64_t)seg->tidx[i].timestamp);
        sl_be32_put(b.data + i * 12 + 8, seg->tidx[i].rel_offset);
    }
    if (rc == 0)
        rc = sl_fs_write_all(seg->time_fd, b.data, seg->ntidx * TIME_ENTRY_SIZE);
    sl_buf_free(&b);
    return rc;
}

/* Reads the batch header at 'pos'. Returns 1 with the header, 0 at a clean end of file, or
 * SL_ECORRUPT for a partial or invalid header. */
static int header_at(sl_segment *seg, int64_t pos, int64_t file_size, sl_batch_header *h) {
    uint8_t buf[SL_BATCH_HEADER_SIZE];
    if (pos == file_size)
        return 0;
    if (file_size - pos < SL_BATCH_HEADER_SIZE)
        return SL_ECORRUPT;
    if (sl_fs_pread_all(seg->log_fd, buf, sizeof(buf), pos))
        return SL_ECORRUPT;
    if (sl_batch_header_parse(buf, sizeof(buf), h))
        return SL_ECORRUPT;
    if (pos + h->length + SL_BATCH_LOG_OVERHEAD > file_size)
        return SL_ECORRUPT;
    return 1;
}

/* Walks every batch from the start, rebuilding the indexes; with 'check_crc' each batch is
 * verified too. Cuts the file at the first bad batch. */
static int scan_and_rebuild(sl_segment *seg, bool check_crc, int64_t interval,
                            sl_segment_recovery *rec) {
    struct stat st;
    if (fstat(seg->log_fd, &st))
        return SL_EIO;
    int64_t file_size = st.st_size, pos = 0, expected = seg->base_offset;
    sl_buf batch = SL_BUF_INIT;
    const char *why = NULL;
    seg->nidx = seg->ntidx = 0;
    seg->bytes_since_index = 0;
    seg->next_offset = seg->base_offset;
    seg->max_timestamp = seg->first_timestamp = -1;
    for (;;) {
        sl_batch_header h;
        int r = header_at(seg, pos, file_size, &h);
        if (r == 0)
            break;
        if (r < 0) {
            why = "torn or invalid batch header";
            break;
        }
        int64_t total = h.length + SL_BATCH_LOG_OVERHEAD;
        /* Compaction leaves gaps between batches and batches with fewer records than their
         * offset range (even none): offsets only have to grow. */
        if (h.base_offset < expected || h.records_count < 0 || h.last_offset_delta < 0 ||
            h.records_count - 1 > h.last_offset_delta) {
            why = "batch offsets out of sequence";
            break;
        }
        if (check_crc) {
            batch.len = 0;
            if (sl_segment_read(seg, pos, (size_t)total, &batch) ||
                sl_batch_validate_stored(batch.data, batch.len, &h)) {
                why = "batch fails its CRC-32C";
                break;
            }
        }
        int rc = note_batch(seg, &h, pos, total, interval, false);
        if (rc) {
            sl_buf_free(&batch);
            return rc;
        }
        expected = h.base_offset + h.last_offset_delta + 1;
        pos += total;
    }
    sl_buf_free(&batch);
    if (pos < file_size) {
        sl_warn("log", "segment %s.log: %s at byte %" PRId64 "; cutting %" PRId64
                       " bytes, the log now ends at offset %" PRId64,
                seg->path, why, pos, file_size - pos, seg->next_offset);
        if (ftruncate(seg->log_fd, pos))
            return SL_EIO;
        if (rec)
            rec->truncated_bytes = file_size - pos;
    }
    seg->size = pos;
    if (rec)
        rec->index_rebuilt = true;
    return write_indexes(seg);
}

/* Loads the index files and checks them against the log; SL_ECORRUPT when they do not fit. */
static int load_indexes(sl_segment *seg, int64_t log_size) {
    struct stat st;
    if (fstat(seg->index_fd, &st) || st.st_size % INDEX_ENTRY_SIZE || st.st_size == 0)
        return SL_ECORRUPT;
    size_t n = (size_t)st.st_size / INDEX_ENTRY_SIZE;
    sl_buf b = SL_BUF_INIT;
    int rc = sl_buf_reserve(&b, (size_t)st.st_size);
    if (rc == 0)
        rc = sl_fs_pread_all(seg->index_fd, b.data, (size_t)st.st_size, 0);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint32_t rel = sl_be32_get(b.data + i * 8), pos = sl_be32_get(b.data + i * 8 + 4);
        if ((int64_t)pos >= log_size ||
            (seg->nidx && (rel <= seg->idx[seg->nidx - 1].rel_offset ||
                           pos <= seg->idx[seg->nidx - 1].position)) ||
            (i == 0 && pos != 0)) /* rel may be > 0: compaction may drop the first batch */
            rc = SL_ECORRUPT;
        else
            rc = idx_push(seg, rel, pos);
    }
    /* Empty is damaged too: a segment's first index entry always comes with a time entry, and
     * without them max_timestamp would be learnt from the tail alone. */
    if (rc == 0 && (fstat(seg->time_fd, &st) || st.st_size % TIME_ENTRY_SIZE || st.st_size == 0))
        rc = SL_ECORRUPT;
    size_t tn = rc == 0 ? (size_t)st.st_size / TIME_ENTRY_SIZE : 0;
    if (rc == 0 && tn) {
        b.len = 0;
        rc = sl_buf_reserve(&b, (size_t)st.st_size);
        if (rc == 0)
            rc = sl_fs_pread_all(seg->time_fd, b.data, (size_t)st.st_size, 0);
    }
    for (size_t i = 0; rc == 0 && i < tn; i++) {
        int64_t ts = (int64_t)sl_be64_get(b.data + i * 12);
        uint32_t rel = sl_be32_get(b.data + i * 12 + 8);
        if (seg->ntidx && (ts <= seg->tidx[seg->ntidx - 1].timestamp ||
                           rel < seg->tidx[seg->ntidx - 1].rel_offset))
            rc = SL_ECORRUPT;
        else
            rc = tidx_push(seg, ts, rel);
    }
    sl_buf_free(&b);
    return rc;
}

/* With indexes loaded, walks batch headers from the last index entry to the end of the log to
 * learn next_offset, max_timestamp and where the next index entry is due. */
static int scan_tail(sl_segment *seg, int64_t log_size, int64_t interval) {
    sl_index_entry last = seg->idx[seg->nidx - 1];
    int64_t pos = last.position;
    sl_batch_header h;
    int r = header_at(seg, 0, log_size, &h);
    if (r <= 0)
        return SL_ECORRUPT;
    seg->first_timestamp = h.base_timestamp;
    seg->max_timestamp = seg->ntidx ? seg->tidx[seg->ntidx - 1].timestamp : -1;
    seg->bytes_since_index = 0;
    bool first = true;
    while ((r = header_at(seg, pos, log_size, &h)) == 1) {
        int64_t total = h.length + SL_BATCH_LOG_OVERHEAD;
        if (first && h.base_offset != seg->base_offset + last.rel_offset)
            return SL_ECORRUPT;
        first = false;
        if (h.max_timestamp > seg->max_timestamp)
            seg->max_timestamp = h.max_timestamp;
        seg->bytes_since_index += total;
        seg->next_offset = h.base_offset + h.last_offset_delta + 1;
        pos += total;
    }
    if (r < 0 || first)
        return SL_ECORRUPT;
    /* The newest time entry (its timestamp seeds max_timestamp) must name an offset held here. */
    if (seg->ntidx == 0 ||
        seg->tidx[seg->ntidx - 1].rel_offset >= seg->next_offset - seg->base_offset)
        return SL_ECORRUPT;
    seg->size = pos;
    (void)interval;
    return 0;
}

int sl_segment_open(const char *dir, int64_t base_offset, bool full_check, sl_segment **out,
                    sl_segment_recovery *rec) {
    sl_segment *seg = segment_alloc(dir, base_offset);
    if (seg == NULL)
        return SL_ENOMEM;
    if (rec)
        memset(rec, 0, sizeof(*rec));
    int rc = open_all(seg, 0);
    /* Index entries are not written by recovery at the configured interval but at the default
     * one: Kafka does the same, and lookups stay bounded either way. */
    const int64_t interval = 4096;
    struct stat st;
    if (rc == 0 && fstat(seg->log_fd, &st))
        rc = SL_EIO;
    if (rc == 0) {
        if (full_check || st.st_size == 0) {
            rc = scan_and_rebuild(seg, true, interval, rec);
        } else if (load_indexes(seg, st.st_size) || scan_tail(seg, st.st_size, interval)) {
            sl_warn("log", "segment %s: index missing or damaged, rebuilding it from the log",
                    seg->path);
            rc = scan_and_rebuild(seg, false, interval, rec);
        }
    }
    if (rc == 0 && (lseek(seg->log_fd, seg->size, SEEK_SET) < 0 ||
                    lseek(seg->index_fd, 0, SEEK_END) < 0 || lseek(seg->time_fd, 0, SEEK_END) < 0))
        rc = SL_EIO;
    if (rc) {
        segment_free(seg);
        return rc;
    }
    *out = seg;
    return 0;
}

int sl_segment_append(sl_segment *seg, const uint8_t *data, size_t len,
                      int64_t index_interval_bytes) {
    if (sl_fs_write_all(seg->log_fd, data, len)) {
        sl_error("log", "write to %s.log failed: %s", seg->path, strerror(errno));
        /* Leave the file as the in-memory state describes it, so a retry appends cleanly. */
        if (ftruncate(seg->log_fd, seg->size) == 0)
            (void)lseek(seg->log_fd, seg->size, SEEK_SET);
        return SL_EIO;
    }
    size_t pos = 0;
    while (pos < len) {
        sl_batch_header h;
        sl_batch_header_parse(data + pos, len - pos, &h); /* validated by the caller */
        int64_t total = h.length + SL_BATCH_LOG_OVERHEAD;
        int rc = note_batch(seg, &h, seg->size + (int64_t)pos, total, index_interval_bytes, true);
        if (rc)
            return rc;
        pos += (size_t)total;
    }
    seg->size += (int64_t)len;
    return 0;
}

/* Index of the last entry whose relative offset is <= rel, or 0 (entry 0 is at position 0, so
 * a scan from it finds any offset below it too). */
static size_t idx_floor(const sl_segment *seg, uint32_t rel) {
    size_t lo = 0, hi = seg->nidx;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (seg->idx[mid].rel_offset <= rel)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int sl_segment_find(sl_segment *seg, int64_t offset, int64_t limit, int64_t *pos) {
    if (seg->nidx == 0 || offset >= seg->next_offset)
        return SL_ERANGE;
    int64_t p = 0;
    if (offset > seg->base_offset)
        p = seg->idx[idx_floor(seg, (uint32_t)(offset - seg->base_offset))].position;
    sl_batch_header h;
    int r;
    while ((r = header_at(seg, p, limit, &h)) == 1) {
        if (h.base_offset + h.last_offset_delta >= offset) {
            *pos = p;
            return 0;
        }
        p += h.length + SL_BATCH_LOG_OVERHEAD;
    }
    return r < 0 ? SL_ECORRUPT : SL_ERANGE;
}

/* Largest records region a time lookup decompresses from one batch. */
#define TIME_LOOKUP_MAX_RECORDS_BYTES (256u * 1024 * 1024)

/* First record in the batch at 'pos' with timestamp >= ts into '*found': 1. A batch that cannot
 * be read record by record answers with its base offset. 0 when the batch has no such record:
 * compaction may have removed the records that made its maxTimestamp (Kafka then reads on). */
static int first_at_or_after(sl_segment *seg, int64_t pos, const sl_batch_header *h, int64_t ts,
                             int64_t *found) {
    sl_buf b = SL_BUF_INIT, records = SL_BUF_INIT;
    sl_record_iter it;
    int r = 1;
    *found = h->base_offset;
    if (sl_segment_read(seg, pos, (size_t)h->length + SL_BATCH_LOG_OVERHEAD, &b) == 0 &&
        sl_record_iter_start_decompress(&it, b.data, b.len, &records,
                                        TIME_LOOKUP_MAX_RECORDS_BYTES) == 0) {
        sl_record_view rv;
        while ((r = sl_record_iter_next(&it, &rv)) == 1) {
            if (rv.timestamp >= ts) {
                *found = rv.offset;
                break;
            }
        }
        r = r < 0 ? 1 : r; /* a malformed record: the base offset, as for an unreadable batch */
    }
    sl_buf_free(&records);
    sl_buf_free(&b);
    return r;
}

int sl_segment_find_time(sl_segment *seg, int64_t ts, int64_t limit, int64_t *offset) {
    if (seg->max_timestamp < ts)
        return SL_ERANGE;
    /* Start after the last time entry below ts: every record up to it is older than ts. */
    int64_t p = 0;
    size_t lo = 0, hi = seg->ntidx;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (seg->tidx[mid].timestamp < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0) {
        int64_t after = seg->base_offset + seg->tidx[lo - 1].rel_offset;
        if (sl_segment_find(seg, after, limit, &p))
            p = 0;
    }
    sl_batch_header h;
    int r;
    while ((r = header_at(seg, p, limit, &h)) == 1) {
        if (h.max_timestamp >= ts && first_at_or_after(seg, p, &h, ts, offset) == 1)
            return 0;
        p += h.length + SL_BATCH_LOG_OVERHEAD;
    }
    return r < 0 ? SL_ECORRUPT : SL_ERANGE;
}

int sl_segment_header_at(sl_segment *seg, int64_t pos, int64_t limit, sl_batch_header *h) {
    return header_at(seg, pos, limit, h);
}

int sl_segment_epoch_end(sl_segment *seg, int32_t epoch, int64_t limit, int32_t *found_epoch,
                         int64_t *end_offset) {
    /* The last index entry whose batch has an epoch <= 'epoch' (entry 0 is at position 0, so a
     * scan from it sees every batch before it too); the scan from there stops at the next entry
     * at the latest, so it reads about index.interval.bytes of headers. */
    size_t lo = 0, hi = seg->nidx;
    while (hi > 0 && seg->idx[hi - 1].position >= limit)
        hi--;
    sl_batch_header h;
    int r;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((r = header_at(seg, seg->idx[mid].position, limit, &h)) != 1)
            return SL_ECORRUPT;
        if (h.leader_epoch <= epoch)
            lo = mid;
        else
            hi = mid;
    }
    int64_t p = seg->nidx ? seg->idx[lo].position : 0;
    *found_epoch = -1;
    while ((r = header_at(seg, p, limit, &h)) == 1) {
        if (h.leader_epoch > epoch) {
            *end_offset = h.base_offset;
            return 1;
        }
        if (h.leader_epoch >= 0) /* -1: a batch written without an epoch */
            *found_epoch = h.leader_epoch;
        p += h.length + SL_BATCH_LOG_OVERHEAD;
    }
    return r < 0 ? SL_ECORRUPT : 0;
}

int sl_segment_walk(sl_segment *seg, int64_t limit,
                    int (*fn)(void *arg, const sl_batch_header *h, int64_t pos), void *arg) {
    sl_batch_header h;
    int64_t pos = 0;
    int r;
    while ((r = header_at(seg, pos, limit, &h)) == 1) {
        int rc = fn(arg, &h, pos);
        if (rc)
            return rc;
        pos += h.length + SL_BATCH_LOG_OVERHEAD;
    }
    return r < 0 ? SL_ECORRUPT : 0;
}

int sl_segment_truncate(sl_segment *seg, int64_t offset, int64_t index_interval_bytes) {
    sl_batch_header h;
    int64_t pos = 0;
    int r;
    while ((r = header_at(seg, pos, seg->size, &h)) == 1 &&
           h.base_offset + h.last_offset_delta < offset)
        pos += h.length + SL_BATCH_LOG_OVERHEAD;
    if (r < 0)
        return SL_ECORRUPT;
    if (pos == seg->size)
        return 0;
    if (ftruncate(seg->log_fd, pos))
        return SL_EIO;
    int rc = scan_and_rebuild(seg, false, index_interval_bytes, NULL);
    if (rc == 0 && lseek(seg->log_fd, seg->size, SEEK_SET) < 0)
        rc = SL_EIO;
    return rc;
}

int sl_segment_read(sl_segment *seg, int64_t pos, size_t len, sl_buf *out) {
    int rc = sl_buf_reserve(out, len);
    if (rc)
        return rc;
    rc = sl_fs_pread_all(seg->log_fd, out->data + out->len, len, pos);
    if (rc) {
        sl_error("log", "read of %zu bytes at %" PRId64 " of %s.log failed", len, pos, seg->path);
        return rc;
    }
    out->len += len;
    return 0;
}

int sl_segment_batch_size_at(sl_segment *seg, int64_t pos, int64_t *size) {
    uint8_t hdr[SL_BATCH_LOG_OVERHEAD];
    int rc = sl_fs_pread_all(seg->log_fd, hdr, sizeof(hdr), pos);
    if (rc)
        return rc;
    size_t total = sl_batch_total_size(hdr, sizeof(hdr));
    if (total == 0)
        return SL_ECORRUPT;
    *size = (int64_t)total;
    return 0;
}

int sl_segment_flush(sl_segment *seg) {
    if (fdatasync(seg->log_fd) || fdatasync(seg->index_fd) || fdatasync(seg->time_fd)) {
        sl_error("log", "fsync of %s failed: %s", seg->path, strerror(errno));
        return SL_EIO;
    }
    return 0;
}

void sl_segment_ref(sl_segment *seg) {
    atomic_fetch_add(&seg->refs, 1);
}

void sl_segment_unref(sl_segment *seg) {
    if (atomic_fetch_sub(&seg->refs, 1) == 1)
        segment_free(seg);
}

void sl_segment_unlink(sl_segment *seg) {
    static const char *const exts[] = {".log", ".index", ".timeindex"};
    char path[4200];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", seg->path, exts[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            sl_warn("log", "cannot remove %s: %s", path, strerror(errno));
    }
}

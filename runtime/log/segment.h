/* A log segment: one '<20-digit base offset>.log' file of whole record batches, and the two
 * sparse indexes Kafka keeps beside it:
 *
 *   .index      8-byte entries: relative offset (u32 BE), file position (u32 BE)
 *   .timeindex 12-byte entries: max timestamp so far (i64 BE), relative offset (u32 BE)
 *
 * An entry is added when index.interval.bytes of log have passed since the last one, so a lookup
 * reads at most that much beyond an entry. Both indexes are also held in memory.
 *
 * Concurrency: one writer (the partition, under its lock) appends; readers that hold a reference
 * may pread whole batches below the size they observed under the partition lock, because bytes
 * once written are never changed. A segment removed by retention is unlinked at once and freed
 * when its last reference goes; compaction replaces segments the same way.
 *
 * After compaction a segment may have gaps between its batches, may start after its base
 * offset, and may hold batches with fewer records (even none) than their offset range: each
 * batch keeps its baseOffset and lastOffsetDelta, so next_offset never moves back. */
#ifndef SL_LOG_SEGMENT_H
#define SL_LOG_SEGMENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "log/batch.h"

/* Relative offsets and positions are 32-bit in Kafka's index format; a segment never grows past
 * this so its positions fit. */
#define SL_SEGMENT_MAX_BYTES 0x7fffffffLL

typedef struct sl_index_entry {
    uint32_t rel_offset;
    uint32_t position;
} sl_index_entry;

typedef struct sl_time_entry {
    int64_t timestamp;
    uint32_t rel_offset;
} sl_time_entry;

typedef struct sl_segment {
    int64_t base_offset;
    int64_t next_offset;     /* one past the last offset held */
    int64_t size;            /* bytes of whole batches in the .log file */
    int64_t max_timestamp;   /* largest batch maxTimestamp, -1 while empty */
    int64_t first_timestamp; /* baseTimestamp of the first batch, for segment.ms; -1 if empty */
    int log_fd;
    int index_fd;
    int time_fd;
    sl_index_entry *idx;
    size_t nidx, idx_cap;
    sl_time_entry *tidx;
    size_t ntidx, tidx_cap;
    int64_t bytes_since_index;
    atomic_int refs;
    char *path; /* "<dir>/<20-digit base offset>", without extension */
} sl_segment;

/* What recovery found in a segment. */
typedef struct sl_segment_recovery {
    int64_t truncated_bytes; /* torn or corrupt tail cut off */
    bool index_rebuilt;
} sl_segment_recovery;

/* Creates an empty segment (files truncated). The caller holds the one reference. */
int sl_segment_create(const char *dir, int64_t base_offset, sl_segment **out);

/* Like sl_segment_create, with files named "<dir>/<20-digit base offset><tag>.log" and so on
 * (compaction writes "<base>.cleaned.log" beside the live segment). */
int sl_segment_create_tagged(const char *dir, int64_t base_offset, const char *tag,
                             sl_segment **out);

/* Opens an existing segment. With 'full_check' (the active segment after a restart) every batch
 * is verified, CRC included; a torn or corrupt tail is cut back to the last whole batch and the
 * indexes are rebuilt. Otherwise the indexes are loaded and checked against the log, and rebuilt
 * from the log when missing or damaged. 'rec' may be NULL. */
int sl_segment_open(const char *dir, int64_t base_offset, bool full_check, sl_segment **out,
                    sl_segment_recovery *rec);

/* Appends validated batches (offsets already assigned) and updates the indexes. */
int sl_segment_append(sl_segment *seg, const uint8_t *data, size_t len,
                      int64_t index_interval_bytes);

/* File position of the batch holding 'offset' (the first whose last offset is >= offset), looking
 * at bytes below 'limit' only. SL_ERANGE if no such batch lies below 'limit'. */
int sl_segment_find(sl_segment *seg, int64_t offset, int64_t limit, int64_t *pos);

/* The first offset whose record timestamp is >= ts, among bytes below 'limit'. SL_ERANGE if
 * none. */
int sl_segment_find_time(sl_segment *seg, int64_t ts, int64_t limit, int64_t *offset);

/* Calls 'fn' with the header and file position of every whole batch below 'limit', in order; a
 * non-zero return stops the walk and is returned. Reads headers only (producer and transaction
 * state are rebuilt this way). */
int sl_segment_walk(sl_segment *seg, int64_t limit,
                    int (*fn)(void *arg, const sl_batch_header *h, int64_t pos), void *arg);

/* The header of the batch at 'pos': 1, 0 when 'pos' is 'limit' (no batch there), or
 * SL_ECORRUPT when no whole batch starts at 'pos' below 'limit'. */
int sl_segment_header_at(sl_segment *seg, int64_t pos, int64_t limit, sl_batch_header *h);

/* Among the batches below 'limit', whose leader epochs never decrease: the first with an epoch
 * above 'epoch' (a binary search over the offset index, then headers from the entry found).
 * 1 with its base offset in '*end_offset'; 0 when there is none. Either way '*found_epoch' gets
 * the largest epoch <= 'epoch' of a batch before it, or -1 (batches without an epoch, -1, do not
 * count). SL_ECORRUPT. */
int sl_segment_epoch_end(sl_segment *seg, int32_t epoch, int64_t limit, int32_t *found_epoch,
                         int64_t *end_offset);

/* Cuts the segment before the first batch whose last offset is >= 'offset' (whole batches: the
 * batch holding 'offset' goes too), and rebuilds its indexes. A replica truncating a tail its
 * leader does not have. */
int sl_segment_truncate(sl_segment *seg, int64_t offset, int64_t index_interval_bytes);

/* Appends 'len' bytes of the log from 'pos' to 'out'. */
int sl_segment_read(sl_segment *seg, int64_t pos, size_t len, sl_buf *out);

/* Total size of the batch at 'pos' (reads its header). */
int sl_segment_batch_size_at(sl_segment *seg, int64_t pos, int64_t *size);

/* fsync of the log and index files. */
int sl_segment_flush(sl_segment *seg);

/* Takes and drops references; the last drop closes the files and frees the segment. */
void sl_segment_ref(sl_segment *seg);
void sl_segment_unref(sl_segment *seg);

/* Unlinks the segment's files (retention, topic deletion). Readers holding a reference keep
 * reading the open files. */
void sl_segment_unlink(sl_segment *seg);

/* "<dir>/<20-digit offset>" */
void sl_segment_path(char *out, size_t outlen, const char *dir, int64_t base_offset);

#endif

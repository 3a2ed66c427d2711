/* Log compaction (cleanup.policy=compact): keeps the latest record of every key, and a tombstone
 * (a record with a null value) only for delete.retention.ms. It runs beside appends: segments are
 * read and rewritten with no partition lock held, then swapped in under the lock in a moment.
 * The on-disk protocol (file names, crash recovery, the checkpoint) is described at the top of
 * compact.c. */
#ifndef SL_LOG_COMPACT_H
#define SL_LOG_COMPACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/partlog.h"
#include "log/segment.h"

/* What one call of sl_partlog_compact did. */
typedef struct sl_compact_stats {
    bool ran;                   /* the dirty ratio was reached and a pass was made */
    double dirty_ratio;         /* dirty bytes / cleanable bytes when looked at; 0 if none */
    int64_t cleaned_upto;       /* after the call: offsets below it are compacted */
    int64_t segments_rewritten; /* old segments replaced */
    int64_t segments_written;   /* new segments that took their place */
    int64_t records_before;     /* records in the segments the pass looked at */
    int64_t records_after;      /* of which kept */
    int64_t bytes_before;       /* size of the segments the pass looked at */
    int64_t bytes_after;        /* their size after it */
} sl_compact_stats;

/* Compacts 'pl' once if its configuration says compact and enough of it is dirty: only segments
 * wholly below the active segment and the high watermark, whose newest record is at least
 * min.compaction.lag.ms older than 'now_ms', are cleaned, and only when the bytes written since
 * the last clean point are at least min.cleanable.dirty.ratio of them. Appends and reads go on
 * meanwhile. Returns 0 (see stats->ran and stats->segments_rewritten for what happened; 'stats'
 * may be NULL), or a negative status after a failure, which leaves a readable log and is logged
 * here. Safe to call from any thread; calls for the same partition do not overlap (a second
 * one returns 0 at once). */
int sl_partlog_compact(sl_partlog *pl, int64_t now_ms, sl_compact_stats *stats);

/* Upper bound, in bytes, of the key map one pass builds (keys plus slots); like Kafka's
 * log.cleaner.dedupe.buffer.size. When the dirty part has more distinct keys, a pass cleans the
 * part whose keys fit and the next pass the rest. Process-wide; default 128 MiB. */
void sl_compact_set_memory_limit(size_t bytes);

/* "compacted 4 segments: kept 120 of 5000 records, 2.3 MiB -> 41.2 KiB" into 'out'. */
void sl_compact_stats_format(const sl_compact_stats *s, char *out, size_t len);

/* ---- used by partlog.c ---- */

/* At open, before the segments are listed: finishes a swap that a crash interrupted after its
 * commit point and removes the files of one it interrupted before. 'name' is for log lines. */
int sl_compact_recover_dir(const char *dir, const char *name);

/* The clean point kept in '<dir>/cleaner-offset-checkpoint' into '*offset': 1 found, 0 absent or
 * unreadable (logged; everything is then dirty, which is safe). */
int sl_compact_read_checkpoint(const char *dir, const char *name, int64_t *offset);

/* Writes the clean point to '<dir>/cleaner-offset-checkpoint' atomically. Logs a failure. */
int sl_compact_write_checkpoint(const char *dir, const char *name, int64_t offset);

/* Commit point of a swap: renames '<base>.cleaned.log' to '<base>.<end>.swap' and makes that
 * durable. From then on the new segment replaces the old ones [base, end), even after a crash. */
int sl_compact_commit_swap(const char *dir, int64_t base, int64_t end);

/* Completes a committed swap once the old segments' files are gone: the cleaned indexes and the
 * swap file take the names '<base>.index', '<base>.timeindex' and '<base>.log'. */
int sl_compact_finish_swap(const char *dir, int64_t base, int64_t end);

/* ---- implemented in partlog.c: the cleaner's access to a partition ---- */

/* What a pass may clean, taken under the partition lock. */
typedef struct sl_clean_view {
    sl_logconf conf;
    sl_segment **segs; /* the cleanable segments, oldest first, one reference each */
    size_t nsegs;
    int64_t end_offset;   /* base offset of the first segment that is not cleanable */
    int64_t cleaned_upto; /* the clean point: offsets below it were compacted */
    sl_txn_range *aborted; /* aborted transactions in the segments: their records go */
    size_t naborted;
    const char *dir;      /* the partition's own strings: valid while it is open */
    const char *name;
} sl_clean_view;

/* Fills 'v' and marks a pass as running: 0. 1 when there is nothing to do (not a compacted
 * topic, nothing cleanable, a pass already running, closed, or given up on until reopened);
 * v->cleaned_upto is filled then too. SL_ENOMEM. */
int sl_partlog_clean_begin(sl_partlog *pl, int64_t now_ms, sl_clean_view *v);

/* Ends the pass begun by sl_partlog_clean_begin, dropping the view's references. 'status' 0:
 * the clean point becomes 'cleaned_upto', in memory and (unless the log was closed meanwhile:
 * its directory may already belong to a new topic of the same name) in the checkpoint file.
 * SL_ECORRUPT: the log holds data the cleaner cannot read, so no pass runs until it is reopened
 * (as Kafka marks such a partition uncleanable). Other failures change nothing. */
void sl_partlog_clean_end(sl_partlog *pl, sl_clean_view *v, int status, int64_t cleaned_upto);

/* Under the partition lock: if old[0 .. nold) are still consecutive segments below the active
 * one and the HW, replaces them by 'fresh' (written as '<base>.cleaned.*' and flushed, base the
 * base offset of old[0], covering offsets up to 'end_offset'), on disk and in memory, and takes
 * over the caller's reference to 'fresh'. SL_ERETRY when the segments changed meanwhile
 * (retention) and SL_ECLOSED when the log is closing: nothing was done then. Other errors leave
 * the log readable; further passes are refused until it is reopened, which completes the swap. */
int sl_partlog_clean_swap(sl_partlog *pl, sl_segment *const *old, size_t nold, sl_segment *fresh,
                          int64_t end_offset);

/* Whether the batch of producer 'pid' ending at 'last_offset' is that producer's latest: such a
 * batch is kept, if need be without records, so its sequence state survives a restart. */
bool sl_partlog_clean_is_producer_tail(sl_partlog *pl, int64_t pid, int64_t last_offset);

#endif

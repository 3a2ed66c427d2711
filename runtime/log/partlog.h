/* A partition's log: the ordered segments of one '<topic>-<partition>' directory.
 *
 * The log end offset (LEO) is the next offset to assign; the high watermark (HW) is the end of
 * what readers may see. On a single node the broker moves the HW to the LEO after each append;
 * with replication it moves when followers have the records. Reads never go past the HW, but
 * a follower's (sl_partlog_read_replica) goes to the LEO.
 *
 * Thread-safety: every function may be called from any thread. Appends serialize on the
 * partition lock; reads copy batch bytes without holding it. */
#ifndef SL_LOG_PARTLOG_H
#define SL_LOG_PARTLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "log/txn_index.h"

typedef struct sl_logconf {
    int64_t segment_bytes;        /* roll when the active segment would pass this */
    int64_t segment_ms;           /* roll when the active segment's first record is this old */
    int64_t retention_ms;         /* delete segments whose newest record is older; -1: never */
    int64_t retention_bytes;      /* delete oldest segments while the log is larger; -1: never */
    int64_t flush_messages;       /* fsync after this many records; <= 0 or huge: leave to OS */
    int64_t flush_ms;             /* fsync when unflushed data is this old */
    int64_t index_interval_bytes; /* bytes between sparse index entries */
    int64_t max_message_bytes;    /* largest batch accepted */
    bool log_append_time;         /* stamp batches with the broker's clock */
    /* cleanup.policy: 'compact' keeps the latest record per key (log/compact.h) and refuses
     * records without a key; 'delete_retention' applies retention.ms and retention.bytes.
     * "compact" alone sets only the first, "compact,delete" both, "delete" only the second. */
    bool compact;
    bool delete_retention;
    int64_t delete_retention_ms;      /* how long compaction keeps a tombstone */
    double min_cleanable_dirty_ratio; /* compact once this share of the cleanable log is dirty */
    int64_t min_compaction_lag_ms;    /* records younger than this are not compacted */
} sl_logconf;

/* The defaults Kafka uses. */
void sl_logconf_defaults(sl_logconf *conf);

typedef struct sl_partlog sl_partlog;

/* What an append did. */
typedef struct sl_append_result {
    int64_t base_offset;
    int64_t last_offset;
    int64_t log_start_offset;
    int64_t records;
    int64_t append_time; /* the broker's clock, or -1 when batches keep CreateTime */
    bool duplicate;      /* an idempotent producer's retry: already written at these offsets */
    int32_t leader_epoch; /* the broker's: the leader epoch the append was made under */
} sl_append_result;

typedef struct sl_read_result {
    int64_t high_watermark;
    int64_t log_start_offset;
    int64_t log_end_offset;
    int64_t last_stable_offset; /* below it every transaction is decided; <= the HW */
} sl_read_result;

/* Opens (creating if needed) the log in 'dir', recovering the active segment: a torn tail is cut
 * back to the last whole batch and logged. 'name' ("orders-3") is used in log lines. */
int sl_partlog_open(const char *dir, const char *name, const sl_logconf *conf, sl_partlog **out);

/* Closes the log: it is freed, its files closed, once the last reference is dropped (at once
 * unless the cleaner holds one; a pass still running then stops before its next swap). Readers
 * must be done. */
void sl_partlog_close(sl_partlog *pl);

/* References for a caller that uses the log without holding whatever keeps it open (the
 * broker's cleaner, while a topic may be deleted): the log stays allocated until unref. */
void sl_partlog_ref(sl_partlog *pl);
void sl_partlog_unref(sl_partlog *pl);

/* Replaces the configuration (topic alter). */
void sl_partlog_set_conf(sl_partlog *pl, const sl_logconf *conf);

/* Checks every batch in 'data' (one or more, as a producer sent them): sizes, magic, CRC-32C,
 * counts; and each against max.message.bytes. On a compacted log every record must have a key,
 * which takes reading the records (decompressing them): SL_EINVAL otherwise. Needs no lock: call
 * before append. SL_ECORRUPT or SL_ETOOLARGE with a sentence in errbuf. '*records' gets the
 * record count. */
int sl_partlog_validate(sl_partlog *pl, const uint8_t *data, size_t len, int64_t *records,
                        char *errbuf, size_t errlen);

/* Appends validated batches: assigns offsets from the LEO by writing each batch's baseOffset
 * and partitionLeaderEpoch in place (and, for LogAppendTime topics, the timestamp and CRC),
 * rolling the segment when due and flushing as configured. A batch of an idempotent producer
 * (which validate makes travel alone) is checked against the producer's sequence: a duplicate
 * is answered with its first offsets and res->duplicate, not written; SL_EOUTOFORDER and
 * SL_EFENCED refuse it. */
int sl_partlog_append(sl_partlog *pl, uint8_t *data, size_t len, int32_t leader_epoch,
                      int64_t now_ms, sl_append_result *res);

/* Transactions (Kafka's): a producer's transactional batches stay undecided until the control
 * batch (marker) its coordinator appends here commits or aborts them. Validate refuses control
 * batches from producers; this is the only way in. A marker with a newer epoch fences the
 * producer's older one. '*offset' gets the marker's offset. */
int sl_partlog_append_marker(sl_partlog *pl, int64_t pid, int16_t epoch, int type,
                             int32_t leader_epoch, int64_t now_ms, int64_t *offset);

/* The transactions open in this partition, into a malloc'd *out (NULL when none). */
int sl_partlog_open_txns(sl_partlog *pl, sl_txn_range **out, size_t *n);

/* Aborted transactions overlapping [from, to): what a read_committed reader of that range must
 * skip (see sl_txn_index_aborted). */
int sl_partlog_aborted_txns(sl_partlog *pl, int64_t from, int64_t to, sl_txn_range **out,
                            size_t *n);

/* ---- replicas (the cluster's followers) ---- */

/* Appends batches exactly as the leader stored them: offsets, leader epochs and timestamps
 * kept, each checked (CRC, layout); the first must start at or after the LEO and each after the
 * one before. Producer and transaction state follow them. The HW does not move: the leader
 * says where it is. SL_ERANGE when they do not continue the log, SL_ECORRUPT. */
int sl_partlog_append_replica(sl_partlog *pl, const uint8_t *data, size_t len, int64_t now_ms);

/* Removes every batch from the one holding 'offset' on (a tail the leader does not have, after
 * a change of leader): whole segments, then part of one; the LEO becomes that batch's base
 * offset and the HW never stays past it. SL_ERANGE for an offset before the log start. */
/* A follower whose log ends before the leader's log start (retention deleted what it lacks):
 * drops every segment and starts empty at 'offset', as Kafka's truncateFullyAndStartAt. */
int sl_partlog_reset(sl_partlog *pl, int64_t offset);

int sl_partlog_truncate(sl_partlog *pl, int64_t offset);

/* sl_partlog_read for a follower: bounded by the LEO instead of the HW, since a follower copies
 * what the leader has written before it is committed. Whole batches from the one holding
 * 'offset', up to about 'max_bytes' (at least one whole batch), from one segment; nothing is
 * appended when offset == LEO. SL_ERANGE when offset is below the log start or past the LEO.
 * 'res' gets the offsets of the log either way. */
int sl_partlog_read_replica(sl_partlog *pl, int64_t offset, size_t max_bytes, sl_buf *out,
                            sl_read_result *res);

/* Kafka's OffsetsForLeaderEpoch on this log: '*found_epoch' gets the largest leader epoch
 * <= 'epoch' that a batch in the log carries (control batches too), '*end_offset' the base
 * offset of the first batch of a later epoch, or the LEO when there is none. When no batch has
 * such an epoch (an empty log, one whose older epochs retention deleted, 'epoch' < 0),
 * *found_epoch is -1 and *end_offset the log start. Relies on epochs never decreasing along the
 * log, as appends and replica appends keep them. SL_ECORRUPT for an unreadable batch header. */
int sl_partlog_epoch_end(sl_partlog *pl, int32_t epoch, int32_t *found_epoch,
                         int64_t *end_offset);

/* Moves the high watermark (never backwards, never past the LEO). */
int sl_partlog_set_high_watermark(sl_partlog *pl, int64_t hw);

/* At open, for a replica: the log opens with its HW at the LEO, as a single node's does, but a
 * replica's tail may not be committed; this puts the HW back to 'hw', the last one it knew
 * (clamped to the log). Call before serving reads. */
int sl_partlog_restore_high_watermark(sl_partlog *pl, int64_t hw);

/* Appends to 'out' whole batches from the one holding 'offset', up to about 'max_bytes' (at least
 * one whole batch, so a large batch never stalls a reader), below the high watermark, from one
 * segment. Nothing is appended from the HW to the LEO (a new leader's HW catches up with its
 * followers: a reader there waits, it is not out of range). SL_ERANGE when offset is below the
 * log start or past the LEO. 'res' gets the offsets of the log either way. */
int sl_partlog_read(sl_partlog *pl, int64_t offset, size_t max_bytes, sl_buf *out,
                    sl_read_result *res);

/* sl_partlog_read for a read_committed reader: nothing at or past the last stable offset, and
 * into a malloc'd '*aborted' (NULL when none) the aborted transactions from 'offset' to it,
 * which the reader skips. */
int sl_partlog_read_committed(sl_partlog *pl, int64_t offset, size_t max_bytes, sl_buf *out,
                              sl_read_result *res, sl_txn_range **aborted, size_t *naborted);

/* The first offset whose record timestamp is >= ts, or the HW if none. */
int sl_partlog_offset_for_time(sl_partlog *pl, int64_t ts, int64_t *offset);

void sl_partlog_offsets(sl_partlog *pl, sl_read_result *res);

/* The name given at open ("orders-3"); valid while the log is. */
const char *sl_partlog_name(const sl_partlog *pl);
int64_t sl_partlog_size_bytes(sl_partlog *pl);
size_t sl_partlog_segment_count(sl_partlog *pl);

/* Deletes old segments per retention.ms and retention.bytes (never past the HW), rolling an
 * expired active segment first; nothing on a log whose cleanup.policy lacks "delete". Returns the
 * number of segments deleted. */
int sl_partlog_enforce_retention(sl_partlog *pl, int64_t now_ms);

/* fsync now, or only if flush.ms has passed since the oldest unflushed append. */
int sl_partlog_flush(sl_partlog *pl);
int sl_partlog_flush_if_due(sl_partlog *pl, int64_t now_ms);

/* Rolls the active segment when segment.ms has passed (appends roll on their own). */
int sl_partlog_roll_if_due(sl_partlog *pl, int64_t now_ms);

#endif

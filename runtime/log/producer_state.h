/* Idempotent producers, per partition: for each producer id, its epoch and its last few batches
 * (sequence range and the offsets they were written at). A retried batch that matches one of them
 * is a duplicate and is answered with its original offsets instead of being written again; a
 * batch whose first sequence does not follow the last one is refused, so a gap is never hidden.
 *
 * The state is rebuilt at start from the batch headers in the log, which carry producer id,
 * epoch and base sequence, so nothing else needs to be stored. Not thread-safe: the partition
 * lock guards it. */
#ifndef SL_LOG_PRODUCER_STATE_H
#define SL_LOG_PRODUCER_STATE_H

#include <stdint.h>

#include "log/batch.h"

/* A producer has at most this many requests in flight (max.in.flight with idempotence), so a
 * retried batch is always among the last five it wrote. */
#define SL_PRODUCER_BATCHES_KEPT 5

typedef struct sl_producer_state sl_producer_state;

int sl_producer_state_new(sl_producer_state **out);
void sl_producer_state_free(sl_producer_state *ps);

/* Decides what to do with batch 'h' (producer_id >= 0): 0 append it (always, past the epoch
 * check, for a batch without sequence (-1): one the transaction coordinator writes for it); 1 it is a duplicate of a
 * batch written at [*first_offset, *last_offset]; SL_EOUTOFORDER for a sequence gap;
 * SL_EFENCED for an epoch older than the producer's latest. */
int sl_producer_state_check(const sl_producer_state *ps, const sl_batch_header *h,
                            int64_t *first_offset, int64_t *last_offset);

/* Records batch 'h' as written (its base_offset is the assigned one). */
int sl_producer_state_update(sl_producer_state *ps, const sl_batch_header *h);

/* The last offset of the latest batch of producer 'pid' into '*last_offset': 1 if the producer is
 * known, 0 if not. Compaction keeps that batch (emptied if need be) so the state survives. */
int sl_producer_state_last_offset(const sl_producer_state *ps, int64_t pid, int64_t *last_offset);

/* A coordinator ended 'pid's transaction with a newer epoch (fencing its old self): batches of
 * older epochs are refused from now on. */
int sl_producer_state_bump_epoch(sl_producer_state *ps, int64_t pid, int16_t epoch);

/* Producers known. */
size_t sl_producer_state_count(const sl_producer_state *ps);

#endif

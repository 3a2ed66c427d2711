/* A partition's transactions: which producers have one open (and from which offset), and which
 * ended aborted (the offsets they spanned). From these come the last stable offset (LSO), below
 * which every transaction is decided, and the aborted ranges a read_committed reader must skip.
 *
 * A transaction opens with its producer's first transactional batch and ends with the control
 * batch (marker) the coordinator writes. The index is rebuilt at open from the batch headers
 * and markers in the log, so nothing else is stored. Not thread-safe: the partition lock guards
 * it. */
#ifndef SL_LOG_TXN_INDEX_H
#define SL_LOG_TXN_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/batch.h"

typedef struct sl_txn_range {
    int64_t producer_id;
    int16_t epoch;
    int64_t first_offset; /* its first batch */
    int64_t last_offset;  /* aborted ones: the offset of the abort marker */
} sl_txn_range;

typedef struct sl_txn_index {
    sl_txn_range *open; /* at most one per producer, in no order */
    size_t nopen, open_cap;
    sl_txn_range *aborted; /* by marker offset */
    size_t naborted, aborted_cap;
} sl_txn_index;

void sl_txn_index_init(sl_txn_index *x);
void sl_txn_index_free(sl_txn_index *x);

/* Notes batch 'h' (its offsets assigned) as written. 'control_type' is SL_CONTROL_ABORT or
 * SL_CONTROL_COMMIT for a control batch and ignored otherwise. SL_ENOMEM. */
int sl_txn_index_note(sl_txn_index *x, const sl_batch_header *h, int control_type);

/* The first offset of the oldest open transaction, or 'end' when none is open. */
int64_t sl_txn_index_first_unstable(const sl_txn_index *x, int64_t end);

/* The open transaction of 'pid', if any, into *out: true when there is one. */
bool sl_txn_index_open_of(const sl_txn_index *x, int64_t pid, sl_txn_range *out);

/* Aborted transactions that overlap [from, to), oldest first, into a malloc'd *out (NULL when
 * none; free it). SL_ENOMEM. */
int sl_txn_index_aborted(const sl_txn_index *x, int64_t from, int64_t to, sl_txn_range **out,
                         size_t *n);

/* Whether a reader skips batch 'h': a data batch of a transaction that 'aborted' (as given by
 * sl_txn_index_aborted) says ended aborted. Markers are skipped by their attribute alone. */
bool sl_txn_batch_aborted(const sl_txn_range *aborted, size_t n, const sl_batch_header *h);

/* Aborted ranges wholly below 'log_start' are forgotten (retention removed them). */
void sl_txn_index_prune(sl_txn_index *x, int64_t log_start);

#endif

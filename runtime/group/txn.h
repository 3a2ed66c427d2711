/* The transaction coordinator, as Kafka's: it gives each transactional id a producer id and an
 * epoch, learns which partitions a transaction writes, and ends it by appending a commit or
 * abort marker to each of them, so that read_committed readers see all of a transaction or none.
 *
 * Durable state: the internal compacted topic __transaction_state holds, per transactional id,
 * msgpack [producer_id, epoch, state, timeout_ms] with state 0 (no transaction being decided)
 * or 1 (prepared to commit: the markers are being written); a tombstone forgets an id unused
 * for its expiration. A transaction's partitions are not
 * stored: the partitions themselves know which transactions are open in them (log/txn_index.h).
 * At open every transaction a crash left undecided is settled: committed if it was prepared,
 * aborted (with a new epoch, fencing its producer) otherwise.
 *
 * A transaction that stays open longer than its timeout is aborted the same way, so a producer
 * that died never holds readers back for long. A new InitProducerId for the same transactional
 * id aborts what the previous incarnation left open and fences it.
 *
 * Every function is thread-safe. */
#ifndef SL_GROUP_TXN_H
#define SL_GROUP_TXN_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "group/coordinator.h"

#define SL_TXN_ID_MAX 249 /* as a topic name: the native protocol carries both alike */
#define SL_TXN_MAX_TIMEOUT_MS 900000 /* Kafka's transaction.max.timeout.ms */

typedef struct sl_txn_coord sl_txn_coord;

/* Creates __transaction_state when missing, loads it, settles what a crash left undecided in
 * any partition, and hooks the broker's produce path. Call before sl_coord_open, which then
 * loads offsets that are all decided. */
int sl_txn_open(sl_broker *b, sl_txn_coord **out);

/* Offsets in transactions go through 'groups' (not owned). Set once, before serving. */
void sl_txn_attach(sl_txn_coord *t, sl_coordinator *groups);

void sl_txn_close(sl_txn_coord *t);

/* How long an id whose producer does nothing (and has nothing open) is kept: Kafka's
 * transactional.id.expiration.ms, 7 days unless set (tests set less). */
void sl_txn_set_id_expiration(sl_txn_coord *t, int64_t ms);

/* InitProducerId with a transactional id: the id's producer id and a new epoch, after aborting
 * whatever the id's earlier producer left open. SL_EINVAL for an empty or too long id or a
 * timeout outside 1 .. SL_TXN_MAX_TIMEOUT_MS. */
int sl_txn_init_producer(sl_txn_coord *t, const char *txn_id, int32_t timeout_ms,
                         int64_t *pid, int16_t *epoch);

/* Whether 'pid' at 'epoch' is the current producer of 'txn_id': 0, SL_EFENCED (an older
 * epoch) or SL_EINVAL (not its producer). Kafka's AddPartitionsToTxn and AddOffsetsToTxn. */
int sl_txn_check_producer(sl_txn_coord *t, const char *txn_id, int64_t pid, int16_t epoch);

/* TxnOffsetCommit: the group's offsets become part of the transaction (see
 * sl_coord_txn_commit). SL_EFENCED for an old epoch, SL_EINVAL for a producer that is not the
 * id's, group errors as sl_coord_commit has them. */
int sl_txn_commit_offsets(sl_txn_coord *t, const char *txn_id, int64_t pid, int16_t epoch,
                          const char *group, int32_t generation, const char *member_id,
                          const sl_offset_commit *offsets, size_t n);

/* EndTxn: commits or aborts the open transaction (nothing open: nothing to do). Returns once
 * every marker is written. SL_EFENCED, SL_EINVAL as above. */
int sl_txn_end(sl_txn_coord *t, const char *txn_id, int64_t pid, int16_t epoch, bool commit);

#endif

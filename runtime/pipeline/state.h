/* A stage instance's state store: key-value tables, one per input partition, kept in memory and
 * made durable in a compacted changelog topic (one changelog partition per input partition).
 *
 * Each commit writes, to changelog partition p, the entries of p changed since the last commit
 * and then one position record, as one record batch (which the broker appends whole or not at
 * all):
 *
 *   key "s" + user key   value: the new value, or null when the key was deleted
 *   key "p"              value: "<topic> <next offset>\n" for every input topic of partition p
 *                        (empty when state changed with no record read)
 *
 * The prefixes keep state keys and the position key apart under compaction, and the one
 * position key always holds every input's position. Restoring replays the partition in order and
 * applies everything up to the last position record. Entries after it would belong to a commit
 * that never completed, which whole batches rule out; should a writer ever leave one, it is
 * dropped and its keys marked changed, so that the next commit writes their restored values over
 * it. State and input position therefore come from the same commit. */
#ifndef SL_PIPELINE_STATE_H
#define SL_PIPELINE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_state sl_state;

int sl_state_new(sl_state **out);
void sl_state_free(sl_state *s);

/* SL_ENOENT when absent. The value is borrowed until the next put or drop of its partition. */
int sl_state_get(sl_state *s, int32_t partition, const void *key, size_t key_len,
                 const void **value, size_t *value_len);
/* Copies key and value; a NULL value deletes. The key is marked changed either way. Keys longer
 * than SL_STATE_MAX_KEY and values longer than SL_STATE_MAX_VALUE are refused (SL_ETOOLARGE): the
 * changelog could not take them. */
int sl_state_put(sl_state *s, int32_t partition, const void *key, size_t key_len,
                 const void *value, size_t value_len);

/* A plugin call's changes can be taken back when the call fails, so that a failed record
 * (retried, dead-lettered) leaves no trace in state: between begin_call and end_call, the first
 * put of each key keeps the value it replaces, and undo_call puts those back. */
void sl_state_begin_call(sl_state *s);
int sl_state_undo_call(sl_state *s); /* SL_ENOMEM: the log was lost; restart instead */
void sl_state_end_call(sl_state *s);

/* Every live entry of a partition, in no particular order. Stops at the first nonzero return. */
typedef int (*sl_state_entry_fn)(void *opaque, const void *key, size_t key_len,
                                 const void *value, size_t value_len);
int sl_state_foreach(sl_state *s, int32_t partition, sl_state_entry_fn fn, void *opaque);

/* Live keys over all partitions, and the bytes of their keys and values. */
void sl_state_size(const sl_state *s, uint64_t *keys, uint64_t *bytes);

/* Whether any partition has changes not yet written. */
bool sl_state_dirty(const sl_state *s);
/* The changed entries of a partition (value NULL: deleted), for the changelog. */
int sl_state_foreach_changed(sl_state *s, int32_t partition, sl_state_entry_fn fn,
                             void *opaque);
/* The partitions' changes are durable: forget they were changes. */
void sl_state_mark_written(sl_state *s, int32_t partition);

/* Forgets a partition (moved to another instance, or about to be restored). */
void sl_state_drop(sl_state *s, int32_t partition);
bool sl_state_loaded(const sl_state *s, int32_t partition);

/* Restoring a partition from its changelog: begin, one call per changelog record in offset
 * order (key with its prefix; value NULL for a tombstone), then end. The positions of each
 * position record are handed to 'on_position' (topic, next offset) as it is applied; a later
 * record's positions replace an earlier one's. Malformed records are skipped. */
typedef void (*sl_state_position_fn)(void *opaque, const char *topic, int64_t next_offset);
void sl_state_restore_begin(sl_state *s, int32_t partition);
int sl_state_restore_record(sl_state *s, int32_t partition, const void *key, size_t key_len,
                            const void *value, size_t value_len, sl_state_position_fn on_position,
                            void *opaque);
/* Returns how many trailing records of an unfinished commit were dropped. */
size_t sl_state_restore_end(sl_state *s, int32_t partition);

#define SL_STATE_KEY_PREFIX 's'
#define SL_STATE_POSITION_KEY 'p'
#define SL_STATE_MAX_KEY (16 << 10)
#define SL_STATE_MAX_VALUE (512 << 10) /* well under the changelog's max.message.bytes */

#endif

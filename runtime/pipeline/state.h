/* A stage instance's state store: key-value tables, one per input partition, kept in memory and
 * made durable in a compacted changelog topic (one changelog partition per input partition).
 *
 * Each commit writes, to changelog partition p, the entries of p changed since the last commit
 * and then the input positions of p, as consecutive records:
 *
 *   key "s" + user key   value: the new value, or null when the key was deleted
 *   key "p" + topic      value: the next input offset of (topic, p), in decimal
 *
 * The prefixes keep state keys and position keys apart under compaction. Restoring replays the
 * partition in order and applies everything up to the last position record: entries after it
 * belong to a commit that never completed (the task died between its records), so they are
 * dropped, and their keys are marked changed so that the next commit writes their restored
 * values over them. State and input position therefore always come from the same commit. */
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
/* Copies key and value; a NULL value deletes. The key is marked changed either way. */
int sl_state_put(sl_state *s, int32_t partition, const void *key, size_t key_len,
                 const void *value, size_t value_len);

/* Every live entry of a partition, in no particular order. Stops at the first nonzero return. */
typedef int (*sl_state_entry_fn)(void *opaque, const void *key, size_t key_len,
                                 const void *value, size_t value_len);
int sl_state_foreach(sl_state *s, int32_t partition, sl_state_entry_fn fn, void *opaque);

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
 * order (key with its prefix; value NULL for a tombstone), then end. Position records are handed
 * to 'on_position' (topic, next offset) as they are applied. */
typedef void (*sl_state_position_fn)(void *opaque, const char *topic, int64_t next_offset);
void sl_state_restore_begin(sl_state *s, int32_t partition);
int sl_state_restore_record(sl_state *s, int32_t partition, const void *key, size_t key_len,
                            const void *value, size_t value_len, sl_state_position_fn on_position,
                            void *opaque);
/* Returns how many trailing records of an unfinished commit were dropped. */
size_t sl_state_restore_end(sl_state *s, int32_t partition);

#define SL_STATE_KEY_PREFIX 's'
#define SL_STATE_POSITION_PREFIX 'p'

#endif

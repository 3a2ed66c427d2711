/* Topic configuration: one table of the keys a topic accepts, their defaults and bounds. The
 * same table validates create/alter requests (an unknown key or bad value names itself), fills
 * the log's settings, and lists every effective value for describe. */
#ifndef SL_BROKER_TOPIC_CONFIG_H
#define SL_BROKER_TOPIC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/partlog.h"

typedef struct sl_config_kv {
    char *key;
    char *value;
} sl_config_kv;

/* A topic's explicit settings (overrides of the defaults), owned strings. */
typedef struct sl_topic_config {
    sl_config_kv *items;
    size_t n;
} sl_topic_config;

/* Checks one setting. SL_EBADCONFIG with a sentence in errbuf. */
int sl_topic_config_check(const char *key, const char *value, char *errbuf, size_t errlen);

/* Sets or replaces 'key' in 'cfg' (copies). An empty value removes the override. */
int sl_topic_config_set(sl_topic_config *cfg, const char *key, const char *value);

/* The effective value of 'key': the override or the default. NULL for an unknown key. */
const char *sl_topic_config_get(const sl_topic_config *cfg, const char *key);

/* min.insync.replicas: an acks=all write is refused while fewer replicas are in sync. */
int32_t sl_topic_config_min_insync(const sl_topic_config *cfg);

/* Whether cleanup.policy includes "compact". */
bool sl_topic_config_compacted(const sl_topic_config *cfg);

/* The codec a topic's compression.type forces, or -1 for "producer" (store as produced). */
int sl_topic_config_forced_codec(const sl_topic_config *cfg);

/* Fills a log configuration from the effective values. */
void sl_topic_config_to_log(const sl_topic_config *cfg, sl_logconf *out);

/* Number of known keys, and the i-th key (for listing every effective value). */
size_t sl_topic_config_key_count(void);
const char *sl_topic_config_key(size_t i);

int sl_topic_config_copy(const sl_topic_config *from, sl_topic_config *to);
void sl_topic_config_free(sl_topic_config *cfg);

#endif

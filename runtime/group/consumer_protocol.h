/* Kafka's consumer protocol: how group members describe what they want (Subscription) and are
 * told what they get (Assignment), inside the opaque metadata bytes of JoinGroup and SyncGroup.
 * We use Kafka's encoding, so the broker can show any member's partitions, whether the member is
 * our client or a Kafka one.
 *
 *   Subscription v1: version i16, topics [string], user_data bytes,
 *                    owned_partitions [topic string, partitions [i32]]
 *   Assignment v1:   version i16, partitions [topic string, partitions [i32]], user_data bytes
 *
 * Big-endian; string = i16 length + bytes; array = i32 count; bytes = i32 length (-1: null).
 * Version 0 of either lacks owned_partitions; decoders accept any version >= 0 and ignore
 * trailing fields they do not know, as Kafka's do. */
#ifndef SL_GROUP_CONSUMER_PROTOCOL_H
#define SL_GROUP_CONSUMER_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct sl_topic_parts {
    char *topic;
    int32_t *partitions;
    size_t n;
} sl_topic_parts;

/* A set of partitions grouped by topic; owned strings and arrays. */
typedef struct sl_partition_set {
    sl_topic_parts *topics;
    size_t ntopics;
} sl_partition_set;

int sl_pset_add(sl_partition_set *s, const char *topic, int32_t partition);
int sl_pset_contains(const sl_partition_set *s, const char *topic, int32_t partition);
size_t sl_pset_count(const sl_partition_set *s);
void sl_pset_free(sl_partition_set *s);

typedef struct sl_subscription {
    char **topics;
    size_t ntopics;
    sl_partition_set owned;
} sl_subscription;

int sl_subscription_encode(const sl_subscription *sub, sl_buf *out);
/* SL_EPROTO for malformed bytes; the result is owned: sl_subscription_free. */
int sl_subscription_decode(const uint8_t *p, size_t len, sl_subscription *sub);
void sl_subscription_free(sl_subscription *sub);

int sl_assignment_encode(const sl_partition_set *parts, sl_buf *out);
int sl_assignment_decode(const uint8_t *p, size_t len, sl_partition_set *parts);

#endif

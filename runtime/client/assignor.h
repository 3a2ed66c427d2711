/* Partition assignors, run by the group leader (a client, as in Kafka): given every member's
 * subscription and each topic's partition count, who consumes what.
 *
 *   range               per topic, consecutive partitions to members in member-id order
 *   roundrobin          all partitions, dealt in turn to the members subscribed to them
 *   cooperative-sticky  members keep what they own where balance allows; only the surplus
 *                       moves. With the cooperative protocol a partition another member still
 *                       owns is withheld this round: its owner revokes it and rejoins, and the
 *                       next rebalance hands it over, so no partition ever has two owners. */
#ifndef SL_CLIENT_ASSIGNOR_H
#define SL_CLIENT_ASSIGNOR_H

#include <stdbool.h>

#include "group/consumer_protocol.h"

typedef struct sl_assign_member {
    const char *member_id;
    const sl_subscription *sub;
} sl_assign_member;

typedef struct sl_topic_count {
    const char *topic;
    int32_t partitions;
} sl_topic_count;

/* Fills out[i] (zeroed by the caller) with member i's partitions. SL_EINVAL for an unknown
 * strategy. */
int sl_assign(const char *strategy, const sl_assign_member *members, size_t n,
              const sl_topic_count *topics, size_t ntopics, sl_partition_set *out);

/* Whether the strategy uses the cooperative protocol (incremental revocation). */
bool sl_assignor_is_cooperative(const char *strategy);

#endif

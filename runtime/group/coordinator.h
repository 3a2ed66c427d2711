/* The consumer group coordinator, as Kafka's classic group protocol has it.
 *
 * Members join (JoinGroup), the coordinator waits until every known member has joined again or
 * the rebalance timeout passes, bumps the generation and names a leader; the leader computes the
 * assignment with the strategy all members support and hands it over (SyncGroup); everyone then
 * heartbeats. A member that stops heartbeating for session.timeout.ms is removed and the others
 * rebalance. The assignment bytes are opaque here (Kafka's consumer protocol, decoded only to
 * describe a group).
 *
 * Committed offsets are records of the internal compacted topic __consumer_offsets
 * (key msgpack [group, topic, partition], value msgpack [offset, metadata, commit_ms], a null
 * value deletes), in the partition chosen by the group id, and are kept in memory; the topic is
 * replayed at start. Group membership itself is not persisted: after a restart members rejoin.
 *
 * In a cluster __consumer_offsets is replicated, and a group's coordinator is the node that
 * leads its partition: that node loads the partition when it comes to lead it, answers
 * SL_ECOORDLOADING until it has, SL_ENOTCOORD for the groups of partitions it does not lead,
 * and acknowledges a commit once every in-sync replica holds it. When the partition moves, its
 * groups move: members find the new coordinator (sl_coord_partition_for, then the partition's
 * leader) and join again.
 *
 * Join and sync block the calling connection thread until the rebalance resolves; shutdown wakes
 * them. Every function is thread-safe. */
#ifndef SL_GROUP_COORDINATOR_H
#define SL_GROUP_COORDINATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "broker/broker.h"

typedef struct sl_coordinator sl_coordinator;

/* The partition of SL_OFFSETS_TOPIC that holds the group's offsets: its leader coordinates it. */
int32_t sl_coord_partition_for(const char *group_id);

/* Which node coordinates the group: this one outside a cluster; in a cluster the leader of
 * the group's partition, SL_OFFSETS_TOPIC being created (through the controller) when the
 * first client asks, as Kafka does. SL_ECOORDLOADING while the partition has no leader yet. */
int sl_coord_find(sl_coordinator *c, const char *group_id, int32_t *node_id, char *errbuf,
                  size_t errlen);

/* Creates __consumer_offsets when missing and loads the committed offsets. */
int sl_coord_open(sl_broker *b, sl_coordinator **out);
void sl_coord_shutdown(sl_coordinator *c);
void sl_coord_close(sl_coordinator *c);

typedef struct sl_join_protocol {
    const char *name;
    const uint8_t *metadata;
    size_t len;
} sl_join_protocol;

typedef struct sl_join_request {
    const char *group;
    const char *member_id; /* "" for a new member */
    const char *client_id;
    const char *client_host;
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms;
    const char *protocol_type; /* "consumer" */
    const sl_join_protocol *protocols;
    size_t nprotocols;
} sl_join_request;

typedef struct sl_join_member {
    char *member_id;
    uint8_t *metadata; /* of the chosen protocol */
    size_t len;
} sl_join_member;

/* Owned by the caller: sl_join_result_free. 'members' is filled for the leader only. */
typedef struct sl_join_result {
    int32_t generation;
    char *protocol;
    char *leader;
    char *member_id;
    sl_join_member *members;
    size_t nmembers;
} sl_join_result;

/* Blocks until the rebalance this join belongs to completes (or fails). SL_EUNKNOWNMEMBER,
 * SL_EGROUPPROTOCOL, SL_EINVAL (bad timeouts or empty group id), SL_ESTOPPED. */
int sl_coord_join(sl_coordinator *c, const sl_join_request *req, sl_join_result *res);
void sl_join_result_free(sl_join_result *res);

typedef struct sl_member_assignment {
    const char *member_id;
    const uint8_t *data;
    size_t len;
} sl_member_assignment;

/* The leader passes every member's assignment; followers pass none and block until the leader
 * has synced. '*assignment' gets this member's bytes. SL_EGENERATION, SL_EREBALANCE,
 * SL_EUNKNOWNMEMBER. */
int sl_coord_sync(sl_coordinator *c, const char *group, int32_t generation, const char *member_id,
                  const sl_member_assignment *assignments, size_t n, sl_buf *assignment);

/* SL_EREBALANCE tells the member to join again. */
int sl_coord_heartbeat(sl_coordinator *c, const char *group, int32_t generation,
                       const char *member_id);
int sl_coord_leave(sl_coordinator *c, const char *group, const char *member_id);

typedef struct sl_offset_commit {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *metadata; /* may be NULL */
} sl_offset_commit;

/* Commits offsets for the group. A member commits with its generation; generation -1 commits as
 * an administrator, allowed only while the group has no members (Kafka's rule for tools). The
 * offsets are durable in __consumer_offsets when this returns. */
int sl_coord_commit(sl_coordinator *c, const char *group, int32_t generation,
                    const char *member_id, const sl_offset_commit *offsets, size_t n);

/* A generation for sl_coord_txn_commit that checks no membership: Kafka's TxnOffsetCommit
 * before v3 carries no member. */
#define SL_COORD_UNCHECKED (-2)

/* Offsets committed inside producer 'pid's transaction (Kafka's TxnOffsetCommit): checked as
 * sl_coord_commit checks them (not at all with SL_COORD_UNCHECKED), written to __consumer_offsets as part of the transaction, and
 * applied only when sl_coord_txn_end says it committed. Call with the transaction coordinator's
 * lock held (group/txn.h). */
int sl_coord_txn_commit(sl_coordinator *c, const char *group, int32_t generation,
                        const char *member_id, int64_t pid, int16_t epoch,
                        const sl_offset_commit *offsets, size_t n);

/* Before a commit: SL_EGENERATION or SL_EUNKNOWNMEMBER when a member whose offsets are in
 * 'pid's transaction has since lost its place in its group (a zombie), 0 otherwise. */
int sl_coord_txn_check(sl_coordinator *c, int64_t pid);

/* Producer 'pid's transaction ended: its offsets apply (commit) or are forgotten. */
void sl_coord_txn_end(sl_coordinator *c, int64_t pid, bool commit);

/* The committed offset, or -1 when there is none. SL_EUNSTABLE (with the offset filled all the
 * same) while a transaction not yet decided holds an offset for it: a new owner of the
 * partition asks again rather than start before what that transaction may commit (KIP-447). */
int sl_coord_committed(sl_coordinator *c, const char *group, const char *topic, int32_t partition,
                       int64_t *offset);

typedef struct sl_group_member_desc {
    char *member_id;
    char *client_id;
    char *client_host;
    uint8_t *assignment;
    size_t assignment_len;
} sl_group_member_desc;

typedef struct sl_group_offset_desc {
    char *topic;
    int32_t partition;
    int64_t committed;
    int64_t commit_ms;
} sl_group_offset_desc;

typedef struct sl_group_desc {
    char *group;
    const char *state; /* "Empty", "PreparingRebalance", "CompletingRebalance", "Stable" */
    char *protocol_type;
    char *protocol;
    int32_t generation;
    sl_group_member_desc *members;
    size_t nmembers;
    sl_group_offset_desc *offsets;
    size_t noffsets;
} sl_group_desc;

/* SL_ENOENT for a group with neither members nor offsets. */
int sl_coord_describe(sl_coordinator *c, const char *group, sl_group_desc *out);
void sl_group_desc_free(sl_group_desc *d);

/* Sorted names of groups with members or committed offsets (in a cluster, of the groups this
 * node coordinates). */
int sl_coord_list(sl_coordinator *c, char ***names, size_t *count);

/* Deletes the group's offsets; SL_EGROUPNOTEMPTY while it has members. */
int sl_coord_delete(sl_coordinator *c, const char *group);

/* Appends consumer lag per group and partition to a Prometheus text exposition. */
int sl_coord_metrics(sl_coordinator *c, sl_buf *out);

#endif

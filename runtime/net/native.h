/* The native protocol: how our client and our nodes talk to a broker.
 *
 *   request  = u32 size | u32 correlation id | u16 api | msgpack body
 *   response = u32 size | u32 correlation id | msgpack body, an array [status, message, ...]
 *
 * Record batches travel as msgpack bin values holding the RecordBatch v2 bytes unchanged, so a
 * produce request's batches are appended straight from the receive buffer and a fetch answer
 * carries segment bytes as read. Bodies by api (arrays; "parts" nest per topic):
 *
 *   PRODUCE         [acks, timeout_ms, [[topic, [[partition, bin batches]...]]...]]
 *                -> [0, nil, [[topic, [[partition, status, base_offset, log_start, msg]...]]...]]
 *   FETCH           [max_wait_ms, min_bytes, max_bytes,
 *                    [[topic, [[partition, offset, max_bytes]...]]...], isolation]
 *                -> [0, nil, [[topic, [[partition, bin, status, hw, log_start, lso,
 *                                       [[producer_id, first_offset, marker_offset]...]]...]]...]]
 *                   isolation (optional) 0 read_uncommitted, 1 read_committed: batches stop at
 *                   the last stable offset (lso) and the list names the aborted transactions
 *                   among them, which the reader skips (with every control batch)
 *   LIST_OFFSETS    [[[topic, [[partition, when]...]]...]]   when: -1 end, -2 start,
 *                                                -3 last stable offset, else ms
 *                -> [0, nil, [[topic, [[partition, status, offset]...]]...]]
 *   METADATA        [[topic...] or nil for all]
 *                -> [0, nil, node_id, [[topic, status, [leader per partition]]...],
 *                    [[node_id, url]...]]
 *                   leader -1: none right now (an election is under way; ask again). The
 *                   brokers list is empty on a node outside a cluster: it serves everything.
 *   CREATE_TOPIC    [name, partitions, {key: value}, replication (optional)]
 *                                                        -> [status, msg]
 *   DELETE_TOPIC    [name]                                -> [status, msg]
 *   ALTER_TOPIC     [name, {key: value}]                  -> [status, msg]
 *   DESCRIBE_TOPIC  [name] -> [status, msg, name, [[partition, leader, start, end, size,
 *                              [replica...], [in-sync replica...]]...], {key: value}]
 *                   (start, end and size -1 for a partition with no replica on this node)
 *   LIST_TOPICS     []     -> [0, nil, [name...]]
 *   INIT_PRODUCER_ID [transactional_id, timeout_ms] (both optional)
 *                          -> [0, nil, producer_id, epoch]
 *
 * Transactions (Kafka's; partitions join a transaction by being written with its producer id):
 *   TXN_OFFSET_COMMIT [transactional_id, producer_id, epoch, group, generation, member_id,
 *                      [[topic, [[partition, offset, md]...]]...]]     -> [status, msg]
 *   END_TXN         [transactional_id, producer_id, epoch, commit]     -> [status, msg]
 *
 * Cluster (cluster/cluster.h; between nodes):
 *   CLUSTER_REGISTER [node_id, url, kafka]  -> [0, nil, applied]   a broker's heartbeat, to
 *                    the controller only (kafka: its Kafka listener HOST:PORT, optional);
 *                    'applied' is how far the controller applied the log
 *   CLUSTER_STATUS   []  -> [0, nil, node_id, leader_id, voters, [[node_id, url]...]]
 *                    (a node without --controllers: itself only, leader 0, voters 0)
 *   REPLICA_FETCH    [replica_id, max_wait_ms, max_bytes,
 *                     [[topic, partition, leader_epoch, offset, last_epoch]...]]
 *                -> [0, nil, [[topic, partition, status, hw, log_start, diverging_epoch,
 *                              diverging_end, bin batches]...]]
 *                    a follower's fetch from the leader, up to its log end; 'offset' is the
 *                    follower's log end; last_epoch >= 0 asks the leader to check the
 *                    follower's log first (diverging_end >= 0: the logs part there, see
 *                    sl_broker_replica_fetch)
 *   ALTER_ISR        [topic, partition, leader, leader_epoch, version, [node_id...]]
 *                -> [status, msg]       a leader's ISR change, to the controller only
 *   CLUSTER_REBALANCE [] -> [0, nil, moving]   place every partition again and move the
 *                    replicas that differ; 'moving': partitions still moving
 *
 * Consumer groups (Kafka's classic protocol; metadata and assignments are Kafka's consumer
 * protocol bytes):
 *   JOIN_GROUP      [group, member_id, client_id, session_ms, rebalance_ms, protocol_type,
 *                    [[protocol, bin metadata]...]]
 *                -> [0, nil, generation, protocol, leader, member_id, [[member_id, bin]...]]
 *   SYNC_GROUP      [group, generation, member_id, [[member_id, bin assignment]...]]
 *                -> [0, nil, bin assignment]
 *   HEARTBEAT       [group, generation, member_id]                  -> [status, msg]
 *   LEAVE_GROUP     [group, member_id]                              -> [status, msg]
 *   OFFSET_COMMIT   [group, generation, member_id, [[topic, [[partition, offset, md]...]]...]]
 *                -> [status, msg]          (generation -1: a tool, only for an empty group)
 *   OFFSET_FETCH    [group, [[topic, [partition...]]...] or nil for all]
 *                -> [0, nil, [[topic, [[partition, offset]...]]...]]   (offset -1: none)
 *   LIST_GROUPS     []      -> [0, nil, [[group, state]...]]
 *   DESCRIBE_GROUP  [group] -> [status, msg, group, state, protocol, generation,
 *                               [[member_id, client_id, host, bin assignment]...],
 *                               [[topic, partition, committed, end, lag, lag_ms]...]]
 *   DELETE_GROUP    [group] -> [status, msg]
 *   FIND_COORDINATOR [group] -> [0, nil, node_id, url]   the node to send the group's requests
 *                    to (in a cluster the leader of its partition of __consumer_offsets; url
 *                    "" outside a cluster: the broker asked);
 *                    those sent elsewhere get SL_ENOTCOORD, and SL_ECOORDLOADING means ask
 *                    again shortly
 *
 * Status values are SL_E* codes. Produce with acks=0 gets no response at all. */
#ifndef SL_NET_NATIVE_H
#define SL_NET_NATIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "base/buf.h"
#include "base/mp.h"
#include "base/mpcheck.h"
#include "broker/broker.h" /* SL_TOPIC_NAME_MAX */

enum sl_native_api {
    SL_API_PRODUCE = 1,
    SL_API_FETCH = 2,
    SL_API_LIST_OFFSETS = 3,
    SL_API_METADATA = 4,
    SL_API_CREATE_TOPIC = 5,
    SL_API_DELETE_TOPIC = 6,
    SL_API_ALTER_TOPIC = 7,
    SL_API_DESCRIBE_TOPIC = 8,
    SL_API_LIST_TOPICS = 9,
    SL_API_INIT_PRODUCER_ID = 10,
    SL_API_JOIN_GROUP = 11,
    SL_API_SYNC_GROUP = 12,
    SL_API_HEARTBEAT = 13,
    SL_API_LEAVE_GROUP = 14,
    SL_API_OFFSET_COMMIT = 15,
    SL_API_OFFSET_FETCH = 16,
    SL_API_LIST_GROUPS = 17,
    SL_API_DESCRIBE_GROUP = 18,
    SL_API_DELETE_GROUP = 19,
    SL_API_END_TXN = 20,
    SL_API_TXN_OFFSET_COMMIT = 21,
    SL_API_CLUSTER_REGISTER = 22,
    SL_API_CLUSTER_STATUS = 23,
    SL_API_REPLICA_FETCH = 24,
    SL_API_ALTER_ISR = 25,
    SL_API_CLUSTER_REBALANCE = 26,
    SL_API_FIND_COORDINATOR = 27,
};

typedef struct sl_native_part {
    int32_t partition;
    int64_t offset;    /* FETCH: fetch offset; LIST_OFFSETS: when */
    int32_t max_bytes; /* FETCH */
    uint8_t *data;     /* PRODUCE: batches, pointing into the request frame (writable) */
    size_t len;
} sl_native_part;

typedef struct sl_native_topic {
    char name[SL_TOPIC_NAME_MAX + 1];
    sl_native_part *parts;
    size_t nparts;
} sl_native_topic;

typedef struct sl_native_kv {
    char *key;
    char *value;
} sl_native_kv;

/* A decoded request. Strings are copied (NUL-terminated); batch bytes point into the frame. */
typedef struct sl_native_req {
    uint32_t id;
    uint16_t api;
    int32_t acks, timeout_ms, max_wait_ms, min_bytes, max_bytes, partitions;
    int32_t replication; /* CREATE_TOPIC: 0 for the default */
    int32_t isolation; /* FETCH: 1 read_committed */
    char name[SL_TOPIC_NAME_MAX + 1]; /* admin requests */
    sl_native_topic *topics;
    size_t ntopics;
    bool all_topics; /* METADATA with nil */
    sl_native_kv *configs;
    size_t nconfigs;
    /* Group and transaction requests (and INIT_PRODUCER_ID): the body array, checked for shape; fields are read by the handler with
     * the sl_mp_* accessors. Points into 'unpacked'. */
    const msgpack_object *body;
    size_t nbody;
    msgpack_unpacked unpacked;
} sl_native_req;

/* Decodes a request frame (after the size prefix). SL_EPROTO for anything malformed, with the
 * request left safe to free; SL_EUNSUPPORTED for an unknown api (req->id is set). */
int sl_native_decode_request(uint8_t *frame, size_t len, sl_native_req *req);
void sl_native_req_free(sl_native_req *req);

/* ---- msgpack into an sl_buf ---- */

/* Starts a bin value whose bytes the caller appends to 'b' directly; returns the position of
 * its length field, to patch with sl_mp_bin_end once the size is known. */
size_t sl_mp_bin_begin(sl_buf *b);
void sl_mp_bin_end(sl_buf *b, size_t at);

/* Parses a response body: checks it is an array of at least 'min' items, returns the status in
 * items[0] and the message in 'msg' (borrowed from 'unpacked', may be NULL). */
int sl_native_decode_response(const uint8_t *body, size_t len, msgpack_unpacked *unpacked,
                              size_t min, const msgpack_object **items, size_t *n, int *status,
                              char *msg, size_t msglen);

#endif

/* The client's map of the cluster: which node leads each partition, where each node listens, and
 * one connection per node, opened when first needed. Producer, consumer and admin handle each
 * own one.
 *
 * Outside a cluster (the METADATA answer has no brokers list, or an empty one) every partition
 * is served by the bootstrap connection: sl_cl_meta_leader answers SL_CL_META_BOOTSTRAP and
 * sl_cl_meta_connect hands back that connection, so the single-node path is today's.
 *
 * Leaders go stale when a broker answers SL_ENOTLEADER, when a node's connection is lost, or
 * while a partition has no leader (-1, an election under way). A stale map is refreshed at most
 * once per retry.backoff.ms (doubling up to retry.backoff.max.ms while leaders stay missing);
 * a topic never seen is fetched at once.
 *
 * Thread-safe. Locks: the map's own lock is held briefly and never during I/O, so it may be
 * taken from connection callbacks and under a caller's lock; dialling and refreshing are
 * serialized by a second lock, which callers must not hold their own locks around (a reconnect
 * waits for the old connection's reader thread, which runs callbacks). */
#ifndef SL_CLIENT_METADATA_H
#define SL_CLIENT_METADATA_H

#include <stdbool.h>
#include <stdint.h>

#include "client/internal.h"

/* Leader values besides node ids. */
#define SL_CL_META_NO_LEADER -1 /* unknown, or none right now: wait for a refresh */
#define SL_CL_META_BOOTSTRAP -2 /* outside a cluster: the bootstrap connection */

typedef struct sl_cl_meta sl_cl_meta;

/* A handle's view of one node it sends to: requests in flight and backoff after failures.
 * Guarded by the owning handle's lock; allocated once per node and kept until the handle
 * goes, so partitions may point at it. */
typedef struct sl_cl_peer {
    int32_t node; /* a node id, or SL_CL_META_BOOTSTRAP */
    int inflight;
    int64_t down_until; /* monotonic ms: do not dial before then */
    int64_t backoff_ms;
    struct sl_cl_peer *next;
} sl_cl_peer;

/* 'bootstrap' is borrowed: it must outlive the map. 'v' is copied from. */
int sl_cl_meta_new(const sl_conf_values *v, sl_rpc *bootstrap, sl_cl_meta **out);
/* Closes the node connections (their pending callbacks run with SL_ECLOSED and may still use
 * the map), then frees it. The bootstrap connection is the caller's. */
void sl_cl_meta_destroy(sl_cl_meta *m);

/* Asks for 'topic' now and caches its leaders. SL_ENOENT if it does not exist. */
int sl_cl_meta_partition_count(sl_cl_meta *m, const char *topic, int32_t *count);

/* The leader of a partition from the cache, without I/O: SL_CL_META_BOOTSTRAP outside a
 * cluster, a node id, or SL_CL_META_NO_LEADER (and the topic is then queued for a refresh). */
int32_t sl_cl_meta_leader(sl_cl_meta *m, const char *topic, int32_t partition);

/* Whether a leader, a node's address or the cluster/no-cluster mode changed since the version
 * in *seen (0 at first), which is then brought up to date: who caches leaders looks them up
 * again. */
bool sl_cl_meta_changed(sl_cl_meta *m, uint64_t *seen);

/* Whether 'status' says the leader moved or its node is gone (SL_ENOTLEADER or SL_ENOENT, a
 * lost or refused connection); if so the map is marked stale, as it is after SL_ETIMEDOUT (a node frozen or cut
 * off), though that is not counted as such. Outside a cluster only SL_ENOTLEADER marks it. */
bool sl_cl_meta_note(sl_cl_meta *m, int status);

/* When a refresh may run (monotonic ms), or -1 when the map is fresh. */
int64_t sl_cl_meta_refresh_due(sl_cl_meta *m);
/* Refreshes every cached topic if due; otherwise returns at once. */
int sl_cl_meta_refresh(sl_cl_meta *m);

/* The connection to 'node' (a node id or SL_CL_META_BOOTSTRAP), dialled or redialled when it is
 * not open. The connection stays the map's. SL_ECONNREFUSED when the node cannot be reached. */
int sl_cl_meta_connect(sl_cl_meta *m, int32_t node, sl_rpc **rpc);

/* sl_cl_list_offset sent to the partition's leader. Inside a cluster, leader changes and lost
 * nodes are waited out (refreshing) for up to wait_ms; 0 tries once. */
int sl_cl_meta_list_offset(sl_cl_meta *m, const char *topic, int32_t partition, int64_t when,
                           int wait_ms, int64_t *offset);

/* ---- peers (caller's lock held) ---- */

/* The peer for 'node' in 'list', added when new; NULL without memory. */
sl_cl_peer *sl_cl_peer_get(sl_cl_peer **list, int32_t node);
/* The peer of the partition's leader (sl_cl_meta_leader), or NULL while it has none. */
sl_cl_peer *sl_cl_peer_of(sl_cl_meta *m, sl_cl_peer **list, const char *topic,
                          int32_t partition);
/* A dial failed: back off (retry.backoff.ms doubling to its max) and mark the map stale. */
void sl_cl_peer_failed(sl_cl_meta *m, sl_cl_peer *peer, int64_t now);
/* A dial worked: no backoff. */
void sl_cl_peer_ok(sl_cl_peer *peer);
/* The earliest down_until after 'now' among 'list', folded into 'next' (-1: none). */
int64_t sl_cl_peers_next_up(const sl_cl_peer *list, int64_t now, int64_t next);
void sl_cl_peers_free(sl_cl_peer *list);

#endif

/* The consumer's private state, shared by its fetching half (consumer.c) and its group
 * membership half (group_member.c). */
#ifndef SL_CLIENT_CONSUMER_INTERNAL_H
#define SL_CLIENT_CONSUMER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "client/internal.h"
#include "client/metadata.h"
#include "group/consumer_protocol.h"
#include "log/batch.h"
#include "log/txn_index.h"

/* Largest decompressed records region accepted from one batch: a compressed batch that would
 * expand past this is refused rather than allowed to exhaust memory. */
#define MAX_BATCH_RECORDS_BYTES (256u * 1024 * 1024)

typedef struct assignment {
    char *topic;
    int32_t partition;
    int64_t position;
    int64_t fetch_pos;
    int64_t high_watermark;
    int64_t retry_at;   /* monotonic ms: its leader said it leads it no more; fetch after */
    sl_cl_peer *leader; /* where it is fetched from; NULL while no leader is known */
    bool paused;
} assignment;

/* One fetch answer, copied from the connection, with its records being handed out. */
typedef struct answer {
    sl_buf body;
    uint64_t generation;
    msgpack_unpacked up;
    /* iteration state */
    const msgpack_object *topics;
    size_t ntopics, ti, pi;
    const msgpack_object *parts;
    size_t nparts;
    assignment *cur; /* partition whose batches are being read */
    const uint8_t *data, *data_end;
    sl_record_iter it;
    bool in_batch;
    sl_txn_range *aborted; /* read_committed: the current partition's aborted transactions */
    size_t naborted, aborted_cap;
    struct answer *next;
} answer;

struct sl_consumer {
    sl_conf *conf;
    sl_conf_values v;
    sl_rpc *rpc; /* the bootstrap connection: metadata and admin requests */
    sl_cl_meta *meta;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    assignment *asg;
    size_t nasg, asgcap;
    uint64_t generation;
    sl_cl_peer *peers;       /* the leaders fetched from; 'inflight' is 1 while a fetch is out */
    uint64_t routed_version; /* the metadata version assignments point at; 0: look again */
    bool fetch_waiting;      /* a partition could not be fetched (no leader, node down) */
    int fetch_error;         /* a failed fetch, reported by the next poll */
    answer *ready_head, *ready_tail;
    answer *current; /* owned by the polling thread */
    sl_message msg;
    sl_header *hdrs;
    size_t hdrcap;
    sl_buf hdr_keys;
    sl_buf req;
    sl_buf records; /* a compressed batch's records, decompressed */

    /* Group membership (group_member.c); guarded by 'lock' where the heartbeat thread shares
     * it. */
    bool grouped; /* subscribed */
    char **subscription;
    size_t nsubscription;
    sl_rebalance_cb rebalance_cb;
    void *rebalance_opaque;
    sl_rpc *coord; /* group requests: a join blocks its connection, so it is not 'rpc' */
    pthread_mutex_t coord_lock; /* one thread at a time reconnects or moves 'coord' */
    char member_id[300];
    int32_t group_generation; /* -1 outside a generation */
    bool need_rejoin;
    bool lost;    /* expelled: partitions are lost, not revoked */
    bool joining; /* heartbeats wait */
    bool closing;
    bool closed;
    int64_t last_poll_ms;
    int64_t next_auto_commit_ms;
    pthread_t heartbeat;
    bool heartbeat_running;
};

/* ---- consumer.c, for group_member.c ---- */

/* Adds a partition at a resolved offset. Lock not held. */
int sl_consumer_add_partition(sl_consumer *c, const char *topic, int32_t partition,
                              int64_t offset);
/* Removes the partitions in 'set' (or all with NULL), dropping prefetched data. Lock not held. */
void sl_consumer_remove_partitions(sl_consumer *c, const sl_partition_set *set);
/* The assigned partitions and their positions. Lock not held. */
int sl_consumer_positions(sl_consumer *c, sl_topic_partition **parts, size_t *n);

/* ---- group_member.c, for consumer.c ---- */

/* The group's share of a poll: rejoin when needed, auto commit when due. */
int sl_group_poll(sl_consumer *c);
/* Leaves the group (commit, revoke, leave); idempotent. */
int sl_group_close(sl_consumer *c);
/* Packs offsets as OFFSET_COMMIT and TXN_OFFSET_COMMIT carry them. */
void sl_group_pack_offsets(msgpack_packer *pk, const sl_topic_partition *parts, size_t n);
/* The member's generation (-1 outside the group) and id, for commits made for it elsewhere (a
 * transactional producer's). Lock not held. */
void sl_group_identity(sl_consumer *c, int32_t *generation, char *member, size_t len);
/* Stops the heartbeat thread and closes the coordinator connection. */
void sl_group_destroy(sl_consumer *c);

#endif

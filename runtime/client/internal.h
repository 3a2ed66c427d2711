/* What the client handles share: the configuration table and the request helpers. */
#ifndef SL_CLIENT_INTERNAL_H
#define SL_CLIENT_INTERNAL_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "net/native.h"
#include "net/rpc.h"
#include "sluice/client.h"

/* Typed view of an sl_conf, read once when a handle is made. */
typedef struct sl_conf_values {
    const char *servers;
    const char *client_id;
    int request_timeout_ms;
    int acks;
    int64_t batch_size;
    int linger_ms;
    int fetch_max_wait_ms;
    int fetch_min_bytes;
    int fetch_max_bytes;
    int max_partition_fetch_bytes;
    int max_in_flight;
    int64_t auto_offset_reset; /* SL_OFFSET_BEGINNING or SL_OFFSET_END */
    const char *compression;   /* none, gzip, snappy, lz4, zstd */
    bool idempotence;
    int64_t delivery_timeout_ms;
    int64_t retry_backoff_ms;
    int64_t retry_backoff_max_ms;
    int64_t buffer_memory;
    int64_t max_block_ms;
    const char *group_id; /* "" when none */
    int session_timeout_ms;
    int heartbeat_interval_ms;
    int max_poll_interval_ms;
    const char *assignor;
    bool auto_commit;
    int64_t auto_commit_interval_ms;
    const char *transactional_id; /* "" when none */
    int transaction_timeout_ms;
    bool read_committed;
    int32_t local_node;    /* local.broker: this node is reached at local_url; -1: none */
    const char *local_url;
} sl_conf_values;

void sl_conf_values_get(const sl_conf *conf, sl_conf_values *v);

/* How long to wait for a TCP connection before saying a broker cannot be reached. */
#define SL_CL_CONNECT_TIMEOUT_MS 5000

/* Connects to the first reachable broker in conf's bootstrap.servers (comma-separated). */
int sl_cl_connect(const sl_conf_values *v, sl_rpc **rpc, char *errbuf, size_t errlen);

/* Asks the broker at 'rpc' which node coordinates 'group': its id, and the address to reach it
 * at ('rpc's own when it is that node outside a cluster; local.broker's for this node). */
int sl_cl_find_coordinator(sl_rpc *rpc, const sl_conf_values *v, const char *group, char *url,
                           size_t len, int32_t *node);

/* Starts a request frame: size, id, api; returns a packer for the body. */
void sl_cl_begin(sl_buf *b, uint32_t id, uint16_t api, msgpack_packer *pk);

/* Sends the frame in 'req' and waits; parses the answer into 'up' and checks it is an array of at
 * least 'min' items with status 0. On a non-zero status, its message goes to errbuf. */
int sl_cl_call(sl_rpc *rpc, sl_buf *req, uint32_t id, int timeout_ms, sl_buf *resp,
               msgpack_unpacked *up, size_t min, const msgpack_object **items, size_t *n,
               char *errbuf, size_t errlen);

/* The first topic entry of a METADATA answer's items: its status and its leaders (borrowed
 * from the answer). */
int sl_cl_first_topic(const msgpack_object *items, size_t n, int64_t *status,
                      const msgpack_object **leaders, size_t *nleaders);

/* Partition count of 'topic' from the broker's metadata. SL_ENOENT if it does not exist. */
int sl_cl_partition_count(sl_rpc *rpc, int timeout_ms, const char *topic, int32_t *count);

/* ListOffsets' "end" for a read_committed reader: the last stable offset. */
#define SL_CL_OFFSET_STABLE -3

/* One offset of one partition (when: SL_OFFSET_END, SL_CL_OFFSET_STABLE, SL_OFFSET_BEGINNING or
 * a timestamp). */
int sl_cl_list_offset(sl_rpc *rpc, int timeout_ms, const char *topic, int32_t partition,
                      int64_t when, int64_t *offset);

#endif

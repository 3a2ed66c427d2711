/* A node's part in its cluster, over the network (cluster.h is the part inside the metadata
 * quorum). It runs:
 *   - the controller channel: a heartbeat to the controller every 300 ms (which registers the
 *     broker, keeps it alive there, and tells it how far the controller applied the metadata
 *     log, so the broker leads nothing before it has caught up), and the ISR changes the
 *     broker's partition leaders ask for;
 *   - one follower per other broker: it fetches the partitions that broker leads and this one
 *     follows (REPLICA_FETCH, the same batch bytes), checks the local log against a new leader's
 *     first (leader epochs: a divergent tail is cut) and appends what it gets;
 *   - the broker's admin hook: topic changes go to the controller, forwarded to it when it is
 *     another node.
 * The controller channel and the followers talk to other nodes through net/rpc: the one place
 * where cluster/ uses the network. */
#ifndef SL_CLUSTER_NODE_H
#define SL_CLUSTER_NODE_H

#include <stdint.h>

#include "broker/broker.h"
#include "cluster/cluster.h"

typedef struct sl_node sl_node;

typedef struct sl_node_conf {
    sl_cluster *cluster;
    sl_broker *broker;
    int32_t node_id;
    const char *url;   /* this broker's native address, as registered */
    const char *kafka; /* its Kafka listener, HOST:PORT as advertised; NULL: none */
} sl_node_conf;

/* Starts the threads and sets the broker's admin and ISR hooks (call before serving). */
int sl_node_start(const sl_node_conf *conf, sl_node **out);

/* sl_cluster_rebalance on the controller, wherever it is. */
int sl_node_rebalance(sl_node *n, int32_t *moving, char *errbuf, size_t errlen);

/* Stops the threads; the broker's hooks must not be called afterwards (stop the servers
 * first). */
void sl_node_stop(sl_node *n);

#endif

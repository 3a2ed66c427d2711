/* The cluster's metadata and its controller. Every node of a cluster is one of the voters of
 * the metadata quorum (cluster/quorum.h). The replicated log holds who the brokers are, which
 * topics exist, where each partition's replicas live, and each partition's leader, leader epoch
 * and in-sync replicas (ISR). Every node applies the log to its image and to its broker
 * (sl_broker_apply_*), which opens the partitions the node hosts and takes up the role the
 * log gives it.
 *
 * The node that leads the quorum is the controller: it places new topics, and it watches the
 * brokers' heartbeats. A broker silent for longer than the session timeout is fenced: it leaves
 * every ISR, and each partition it led gets a new leader from its ISR (never from outside it:
 * no unclean election) with the next leader epoch. A partition whose ISR has no live member
 * keeps no leader until one comes back.
 *
 * The records of the log are cluster/record.h's.
 *
 * Every function is thread-safe. */
#ifndef SL_CLUSTER_CLUSTER_H
#define SL_CLUSTER_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "cluster/record.h"

typedef struct sl_cluster sl_cluster;

typedef struct sl_cluster_conf {
    int32_t node_id;
    const char *url;               /* this broker's native address, as bound */
    const char *controllers;       /* "1@127.0.0.1:9500,2@..." */
    const char *controller_listen; /* "HOST:PORT": must be this node's entry; NULL: take it */
    const char *data_dir;          /* the quorum's files go to <data_dir>/quorum */
    sl_broker *broker;             /* where the log is applied */
    int64_t session_timeout_ms;    /* a broker this long without a heartbeat is fenced; <= 0:
                                    * 3000 */
    int32_t default_replication;   /* for topics created without one; <= 0: 1 */
} sl_cluster_conf;

int sl_cluster_start(const sl_cluster_conf *conf, sl_cluster **out, char *errbuf, size_t errlen);
void sl_cluster_stop(sl_cluster *c);

/* The controller's side of a broker's heartbeat: broker 'id' is alive at 'url' and 'kafka'
 * (its Kafka listener, HOST:PORT, or NULL), registered again when they moved; '*applied' gets how far the controller has applied the log (the broker
 * serves as a leader only once it has applied as far: sl_cluster_applied). SL_ENOTLEADER on a
 * node that is not the controller, SL_EINVAL for an id that is not a controller's or a url
 * that is not tcp:// or ipc:// (nor holds quotes, backslashes or white space). */
int sl_cluster_heartbeat(sl_cluster *c, int32_t id, const char *url, const char *kafka,
                         uint64_t *applied);
uint64_t sl_cluster_applied(sl_cluster *c);

/* The controller's node id (the quorum's leader), 0 when none is known. */
int32_t sl_cluster_controller(sl_cluster *c);

/* ---- topics (on the controller; SL_ENOTLEADER elsewhere: forward to it) ---- */

/* Places 'partitions' partitions of 'replication' replicas each on the live brokers (a
 * partition's replicas on different brokers, leaders spread evenly) and waits until the topic
 * is in the log. 'replication' <= 0 takes the cluster default; SL_REPLICATION_INTERNAL
 * (an internal topic) takes 3, or every voter of a smaller quorum, and answers
 * SL_ENOTENOUGHREPLICAS while fewer brokers are live. */
int sl_cluster_create_topic(sl_cluster *c, const char *name, int32_t partitions,
                            int32_t replication, const sl_config_kv *configs, size_t nconfigs,
                            char *errbuf, size_t errlen);
int sl_cluster_delete_topic(sl_cluster *c, const char *name, char *errbuf, size_t errlen);
int sl_cluster_alter_topic(sl_cluster *c, const char *name, const sl_config_kv *configs,
                           size_t nconfigs, char *errbuf, size_t errlen);

/* `cluster rebalance`: places every partition again over the live brokers (as a new topic
 * would be) and starts moving those whose replicas differ: new replicas join and catch up
 * while the old ones serve, then the controller drops the old ones and the first new one
 * leads. Producers and consumers go on meanwhile. '*moving' gets how many partitions are
 * moving (those still moving from an earlier call included: call again until it is 0). */
int sl_cluster_rebalance(sl_cluster *c, int32_t *moving, char *errbuf, size_t errlen);

/* A partition leader's request to change its ISR to 'isr' ('leader', 'epoch' and 'version' are
 * the state it knows). SL_EFENCED when the state has moved on (the leader learns the new one
 * from the log), SL_EINVAL when 'isr' lacks the leader or names a non-replica. */
int sl_cluster_alter_isr(sl_cluster *c, const char *topic, int32_t partition, int32_t leader,
                         int32_t epoch, int32_t version, const int32_t *isr, size_t nisr);

/* ---- reading the image ---- */

/* The registered brokers by id, into a malloc'd array; the leading controller's id (0: none
 * known) and how many voters the quorum has. */
int sl_cluster_members(sl_cluster *c, sl_cluster_member **out, size_t *n, int32_t *leader,
                       size_t *voters);

/* The url of broker 'id' into 'url' (SL_ENOENT when it never registered). */
int sl_cluster_member_url(sl_cluster *c, int32_t id, char *url, size_t len);

#endif

/* Cluster membership: a node started with --controllers is one of the voters of the metadata
 * quorum (cluster/quorum.h) and registers its broker address in the replicated metadata log,
 * where every node learns every other's. A follower's registration is forwarded to the
 * leader's broker (CLUSTER_REGISTER), whose address the leader registered first. A restarted
 * node registers again if its address changed; the latest registration of an id wins.
 *
 * Records of the log: msgpack map {"t": "broker", "id": int, "url": str}. Topics, placement
 * and replication do not go through the quorum yet: each node keeps its own topics.
 *
 * Every function is thread-safe. */
#ifndef SL_CLUSTER_CLUSTER_H
#define SL_CLUSTER_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_cluster sl_cluster;

typedef struct sl_cluster_conf {
    int32_t node_id;
    const char *url;               /* this broker's native address, as bound */
    const char *controllers;       /* "1@127.0.0.1:9500,2@..." */
    const char *controller_listen; /* "HOST:PORT": must be this node's entry; NULL: take it */
    const char *data_dir;          /* the quorum's files go to <data_dir>/quorum */
} sl_cluster_conf;

int sl_cluster_start(const sl_cluster_conf *conf, sl_cluster **out, char *errbuf, size_t errlen);
void sl_cluster_stop(sl_cluster *c);

/* Registers broker 'id' at 'url' through the quorum. SL_ENOTLEADER on a follower, SL_EINVAL
 * for an id that is not a controller's or a url that is not tcp:// or ipc:// (nor holds quotes,
 * backslashes or white space). */
int sl_cluster_register(sl_cluster *c, int32_t id, const char *url);

typedef struct sl_cluster_member {
    int32_t id;
    char url[256];
} sl_cluster_member;

/* The registered brokers by id, into a malloc'd array; the leading controller's id (0: none
 * known) and how many voters the quorum has. */
int sl_cluster_members(sl_cluster *c, sl_cluster_member **out, size_t *n, int32_t *leader,
                       size_t *voters);

/* Decodes one record of the log: 0 and the member, SL_EINVAL for anything else (records this
 * version does not know are skipped by the caller). Exposed for the fuzzer. */
int sl_cluster_decode_record(const uint8_t *data, size_t len, sl_cluster_member *m);

#endif

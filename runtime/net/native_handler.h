/* Serves the native protocol: decodes each request frame, runs it against the broker, and
 * writes the answer on the same connection. */
#ifndef SL_NET_NATIVE_HANDLER_H
#define SL_NET_NATIVE_HANDLER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "cluster/cluster.h"
#include "cluster/node.h"
#include "group/coordinator.h"
#include "group/txn.h"
#include "net/server.h"

/* What native requests are served from. */
typedef struct sl_native_ctx {
    sl_broker *broker;
    sl_coordinator *coord;
    sl_txn_coord *txn;
    /* Set once the listener is bound, then 'cluster_ready' (release): the cluster requests read
     * them only after seeing it (acquire), since the server is serving by then. */
    sl_cluster *cluster; /* NULL on a node without --controllers */
    char url[256];       /* this broker's native address, as bound */
    atomic_bool cluster_ready;
    /* The node's cluster threads (forwarding to the controller), set once they run. */
    _Atomic(sl_node *) node;
    bool ipc; /* the ipc:// listener's copy: its requests are counted apart */
} sl_native_ctx;

/* An sl_frame_handler; 'ctx' is an sl_native_ctx. */
int sl_native_handle_frame(void *ctx, sl_conn *conn, uint8_t *frame, size_t len);

#endif

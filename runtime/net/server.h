/* A listener that serves each connection on a thread of its own: the thread reads a frame,
 * hands it to the protocol's handler, and the handler answers before the next frame is read.
 * Requests on one connection are therefore answered in order (the Kafka protocol demands it),
 * while a client that wants parallelism pipelines requests or opens more connections. */
#ifndef SL_NET_SERVER_H
#define SL_NET_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "net/stream.h"

typedef struct sl_server sl_server;
typedef struct sl_conn sl_conn;

/* Called on the connection's thread for every frame. 'frame' is writable and valid until the
 * handler returns. A negative return closes this connection (after the handler has logged why);
 * other connections are not affected. */
typedef int (*sl_frame_handler)(void *ctx, sl_conn *conn, uint8_t *frame, size_t len);

/* Called when a connection ends, to free what the handler kept in sl_conn_set_state. */
typedef void (*sl_conn_state_free)(void *state);

/* Listens on 'url' (port 0 picks a free port). 'bound' gets the URL with the real port.
 * 'proto' ("native", "kafka") names the protocol in log lines. */
int sl_server_start(const char *url, const char *proto, sl_frame_handler handler, void *ctx,
                    sl_conn_state_free state_free, sl_server **out, char *bound, size_t boundlen);

/* Stops accepting, closes every connection, waits for their threads, frees the server. */
void sl_server_stop(sl_server *srv);

/* Sends bytes on the connection (a whole response, length prefix included). */
int sl_conn_writev(sl_conn *conn, const nng_iov *iov, unsigned n);

const char *sl_conn_peer(const sl_conn *conn);

/* A buffer for building responses, owned by the connection and reused across its requests, so
 * a warm connection allocates nothing per request. Only the connection's thread may use it. */
sl_buf *sl_conn_buffer(sl_conn *conn);
void *sl_conn_state(const sl_conn *conn);
void sl_conn_set_state(sl_conn *conn, void *state);

#endif

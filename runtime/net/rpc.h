/* The client side of a framed connection: many requests in flight, answers matched to them by
 * correlation id. A native frame is [u32 size][u32 correlation id][body]; the RPC layer looks
 * only at the id, so the body is the protocol's business.
 *
 * A reader thread receives answers and runs each request's callback; callbacks must not block
 * on this same connection. */
#ifndef SL_NET_RPC_H
#define SL_NET_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct sl_rpc sl_rpc;

/* The answer to one request: status 0 and the body (valid during the call only), or an SL_E*
 * status (SL_ECLOSED when the connection died, SL_ETIMEDOUT) and no body. */
typedef void (*sl_rpc_cb)(void *arg, int status, const uint8_t *body, size_t len);

/* SL_ECONNREFUSED when nothing answers at 'url' within timeout_ms. */
int sl_rpc_connect(const char *url, int timeout_ms, sl_rpc **out);

/* A fresh correlation id. */
uint32_t sl_rpc_next_id(sl_rpc *rpc);

/* Sends 'frame' (size prefix and id included, as sl_rpc_frame_begin/_end make it). With cb NULL
 * no answer is expected (acks=0). If this returns an error, cb is never called. 'timeout_ms'
 * bounds the wait for the answer (cb gets SL_ETIMEDOUT). */
int sl_rpc_send(sl_rpc *rpc, uint32_t id, const uint8_t *frame, size_t len, int timeout_ms,
                sl_rpc_cb cb, void *arg);

/* Sends and waits for the answer, copying its body into 'resp'. */
int sl_rpc_call(sl_rpc *rpc, uint32_t id, const uint8_t *frame, size_t len, int timeout_ms,
                sl_buf *resp);

/* Starts a frame in 'b': room for the size, then the id. Finish with sl_rpc_frame_end. */
void sl_rpc_frame_begin(sl_buf *b, uint32_t id);
void sl_rpc_frame_end(sl_buf *b);

/* True once the connection has failed; every later send fails with SL_ECLOSED until a
 * reconnect succeeds. */
int sl_rpc_is_closed(sl_rpc *rpc);

/* After the connection failed: dials the same URL again (the handle stays valid for every
 * thread that holds it). SL_ECONNREFUSED if nothing answers within timeout_ms. */
int sl_rpc_reconnect(sl_rpc *rpc, int timeout_ms);

/* The URL the handle dials. */
const char *sl_rpc_url(const sl_rpc *rpc);

/* Points the handle at another URL (a consumer group's coordinator moved): closes the
 * connection, failing what is pending with SL_ECLOSED, and dials 'url'. Call it, like
 * sl_rpc_reconnect, from one thread at a time. */
int sl_rpc_retarget(sl_rpc *rpc, const char *url, int timeout_ms);

/* Closes the connection: pending callbacks run with SL_ECLOSED; frees everything. */
void sl_rpc_close(sl_rpc *rpc);

#endif

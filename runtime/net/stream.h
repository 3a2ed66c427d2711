/* Length-prefixed frames over an nng byte stream (tcp:// or ipc://), as both the native and the
 * Kafka protocol frame their messages: a 4-byte big-endian size, then that many bytes.
 *
 * nng's stream API runs close to plain TCP on our machines, unlike its SP sockets (about 200 us
 * per request/reply round trip), and
 * reading into a large buffer lets many pipelined frames arrive per wake-up. */
#ifndef SL_NET_STREAM_H
#define SL_NET_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "base/buf.h"

/* A frame larger than this is refused and its connection closed: a hostile size field must not
 * make us allocate gigabytes. Produce requests are bounded by max.message.bytes well below it. */
#define SL_NET_MAX_FRAME (128u * 1024 * 1024)

typedef struct sl_stream sl_stream;

/* Maps an nng error to an SL_E* status. */
int sl_err_from_nng(int rv);

/* Dials 'url' ("tcp://127.0.0.1:9400", "ipc:///tmp/x"). SL_ECONNREFUSED when nothing answers
 * within timeout_ms. */
int sl_stream_dial(const char *url, int timeout_ms, sl_stream **out);

/* Takes ownership of an accepted nng stream. */
int sl_stream_wrap(nng_stream *ns, sl_stream **out);

/* Reads the next frame. '*frame' points into the stream's buffer and stays valid (and writable)
 * until the next read. SL_ECLOSED at end of stream, SL_EPROTO for an oversized frame. Only one
 * thread may read. */
int sl_stream_read_frame(sl_stream *st, uint8_t **frame, size_t *len);

/* Writes all the bytes of 'n' buffers. Thread-safe: concurrent writers are serialized. */
int sl_stream_writev(sl_stream *st, const nng_iov *iov, unsigned n);
int sl_stream_write(sl_stream *st, const void *data, size_t len);

/* Aborts pending reads and writes and fails later ones, from any thread; may wait for an
 * operation in progress to finish aborting. The stream stays allocated. */
void sl_stream_close(sl_stream *st);

/* "127.0.0.1:53122", for log lines. */
const char *sl_stream_peer(const sl_stream *st);

void sl_stream_free(sl_stream *st);

#endif

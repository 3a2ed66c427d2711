/* Record-batch compression: the four Kafka codecs, framed as real clients frame them.
 *
 *   gzip    a gzip stream (RFC 1952); concatenated members are read as one stream
 *   snappy  written raw (as librdkafka does); read raw or xerial-framed (kafka-python, the Java
 *           client): "\x82SNAPPY\0", two int32 (version, compat), then [u32 BE len][raw chunk]...
 *   lz4     the LZ4 frame format with independent blocks (the Java client needs them)
 *   zstd    a zstd frame; frames without a content size are read by streaming
 *
 * In a RecordBatch the whole records region is one compressed stream (see log/batch.h).
 * Decoders refuse malformed input and output beyond a caller-given bound, without allocating
 * more than about that bound: input is data from the network. Any thread may call these.
 * Codec contexts are made per call, except zstd's: each thread keeps one of each kind (they
 * cost more to make than a small batch costs to decode; at most 16 MiB each, usually a few),
 * freed when the thread exits. */
#ifndef SL_LOG_COMPRESSION_H
#define SL_LOG_COMPRESSION_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* The values are those of attributes bits 0-2 of a RecordBatch. */
enum sl_codec {
    SL_CODEC_NONE = 0,
    SL_CODEC_GZIP = 1,
    SL_CODEC_SNAPPY = 2,
    SL_CODEC_LZ4 = 3,
    SL_CODEC_ZSTD = 4,
};

#define SL_CODEC_MAX SL_CODEC_ZSTD

/* "none", "gzip", "snappy", "lz4" or "zstd" (exact, lower case, as Kafka's compression.type)
 * into '*out'. SL_EINVAL for anything else or NULL. */
int sl_codec_parse(const char *name, enum sl_codec *out);

/* The name sl_codec_parse accepts, or "unknown". Static storage, never NULL. */
const char *sl_codec_name(enum sl_codec codec);

/* Compresses in[0 .. len) and appends the result to 'out' (the caller owns both; 'in' may be
 * NULL when len is 0). SL_CODEC_NONE appends a copy. Returns 0, SL_EINVAL for an unknown codec
 * or an input the codec cannot take (snappy: 4 GiB and over), SL_ENOMEM. On failure out->len is
 * unchanged. */
int sl_compress(enum sl_codec codec, const uint8_t *in, size_t len, sl_buf *out);

/* Decompresses in[0 .. len) and appends the result to 'out'. Refuses with SL_ECORRUPT input that
 * is malformed, truncated or followed by trailing bytes, and input that would produce more than
 * 'max_out' bytes (a decompression bomb: decoding stops there, so at most about max_out bytes
 * are ever allocated). SL_CODEC_NONE appends a copy (SL_ECORRUPT beyond max_out). SL_EINVAL for
 * an unknown codec, SL_ENOMEM. On failure out->len is unchanged (its capacity may have grown). */
int sl_decompress(enum sl_codec codec, const uint8_t *in, size_t len, size_t max_out, sl_buf *out);

#endif

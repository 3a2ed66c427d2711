/* Kafka RecordBatch v2 (magic 2): the one format records travel and rest in.
 *
 *   off size field                     off size field
 *     0  8  baseOffset (broker sets)    27  8  baseTimestamp
 *     8  4  batchLength (bytes after)   35  8  maxTimestamp
 *    12  4  partitionLeaderEpoch        43  8  producerId
 *    16  1  magic = 2                   51  2  producerEpoch
 *    17  4  crc: CRC-32C of [21, end)   53  4  baseSequence
 *    21  2  attributes                  57  4  recordsCount
 *    23  4  lastOffsetDelta             61  .. records (one stream, compressed as a whole)
 *
 * A record: varint length, int8 attributes, varlong timestampDelta, varint offsetDelta,
 * varint keyLength (-1 null) + key, varint valueLength (-1 null) + value, varint headerCount,
 * then per header varint keyLength + key, varint valueLength (-1 null) + value.
 * All integers in the header are big-endian; varints are zigzag. The broker never needs to
 * decode records: it checks the header and CRC, then writes baseOffset and the leader epoch,
 * which the CRC does not cover. */
#ifndef SL_LOG_BATCH_H
#define SL_LOG_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "log/compression.h"

#define SL_BATCH_HEADER_SIZE 61
#define SL_BATCH_LOG_OVERHEAD 12 /* baseOffset + batchLength: what batchLength does not count */
#define SL_BATCH_MAGIC 2
#define SL_BATCH_CRC_START 21

#define SL_BATCH_OFF_BASE_OFFSET 0
#define SL_BATCH_OFF_LENGTH 8
#define SL_BATCH_OFF_LEADER_EPOCH 12
#define SL_BATCH_OFF_MAGIC 16
#define SL_BATCH_OFF_CRC 17
#define SL_BATCH_OFF_ATTRIBUTES 21
#define SL_BATCH_OFF_LAST_OFFSET_DELTA 23
#define SL_BATCH_OFF_BASE_TIMESTAMP 27
#define SL_BATCH_OFF_MAX_TIMESTAMP 35
#define SL_BATCH_OFF_PRODUCER_ID 43
#define SL_BATCH_OFF_RECORDS_COUNT 57

#define SL_BATCH_ATTR_COMPRESSION_MASK 0x07
#define SL_BATCH_ATTR_LOG_APPEND_TIME 0x08
#define SL_BATCH_ATTR_TRANSACTIONAL 0x10
#define SL_BATCH_ATTR_CONTROL 0x20

/* The fixed header, decoded. */
typedef struct sl_batch_header {
    int64_t base_offset;
    int32_t length; /* batchLength: total size is length + SL_BATCH_LOG_OVERHEAD */
    int32_t leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
} sl_batch_header;

/* Decodes the header at 'p' ('len' bytes available, at least SL_BATCH_HEADER_SIZE). Checks
 * magic and that batchLength covers the header; not the CRC. SL_ECORRUPT on failure. */
int sl_batch_header_parse(const uint8_t *p, size_t len, sl_batch_header *h);

/* Total bytes of the batch starting at 'p' from its length field, or 0 when fewer than
 * SL_BATCH_LOG_OVERHEAD bytes are there or the length is impossible. */
size_t sl_batch_total_size(const uint8_t *p, size_t len);

/* Full check of one batch as the broker does before appending: header, size within 'len',
 * CRC-32C, record count and lastOffsetDelta agree. Fills 'h'. SL_ECORRUPT otherwise. */
int sl_batch_validate(const uint8_t *p, size_t len, sl_batch_header *h);

/* Check of one batch as it may lie on disk: as sl_batch_validate, except that compaction may
 * have removed records, so recordsCount may be anything from 0 to lastOffsetDelta + 1 (the
 * batch keeps its offset range; the records keep their offsetDelta). Fills 'h'. SL_ECORRUPT
 * otherwise. Producers' batches are checked with sl_batch_validate, which wants them whole. */
int sl_batch_validate_stored(const uint8_t *p, size_t len, sl_batch_header *h);

/* The codec in the attributes of the batch at 'p' (at least SL_BATCH_HEADER_SIZE bytes). May be
 * 5..7, which no codec has: callers refuse those. */
enum sl_codec sl_batch_codec(const uint8_t *p);

/* CRC-32C of the bytes the batch CRC covers. */
uint32_t sl_batch_compute_crc(const uint8_t *p, size_t total);

/* Writes the broker-assigned fields (outside the CRC). */
void sl_batch_set_base_offset(uint8_t *p, int64_t base_offset);
void sl_batch_set_leader_epoch(uint8_t *p, int32_t epoch);

/* ---- building batches (producers) ---- */

typedef struct sl_batch_header_kv {
    const char *key;
    size_t key_len;
    const void *value; /* NULL: null */
    size_t value_len;
} sl_batch_header_kv;

typedef struct sl_batch_builder {
    sl_buf buf;
    int32_t count;
    int64_t base_timestamp;
    int64_t max_timestamp;
    /* An idempotent producer's identity, written by finish; reset sets -1 (none). */
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    uint16_t flags; /* SL_BATCH_ATTR_TRANSACTIONAL / _CONTROL, ORed in by finish; reset clears */
} sl_batch_builder;

/* Starts an empty batch in 'b' (reusing its buffer). */
void sl_batch_builder_reset(sl_batch_builder *b);

/* Appends one record. key/value NULL mean null. Returns 0 or SL_ENOMEM. */
int sl_batch_builder_add(sl_batch_builder *b, int64_t timestamp, const void *key, size_t key_len,
                         const void *value, size_t value_len, const sl_batch_header_kv *headers,
                         size_t nheaders);

/* Bytes 'b' would hold after adding such a record (for batch.size decisions). */
size_t sl_batch_record_size(int64_t ts_delta, int32_t offset_delta, size_t key_len, bool key_null,
                            size_t value_len, bool value_null, const sl_batch_header_kv *headers,
                            size_t nheaders);

/* Completes the header and CRC. The batch is b->buf.data[0 .. b->buf.len). */
void sl_batch_builder_finish(sl_batch_builder *b);

/* Like sl_batch_builder_finish, with the records region compressed as one 'codec' stream: it is
 * compressed into 'scratch' (the caller's, reset first, reusable across batches) and copied back
 * after the header, then the codec goes into the attributes and the length and CRC (over the
 * compressed bytes) are written. The codec is used even when it does not make the batch smaller,
 * as Kafka does. SL_CODEC_NONE is sl_batch_builder_finish. Returns 0; SL_EINVAL for an unknown
 * codec, SL_ENOMEM, SL_ETOOLARGE when batchLength would not fit an int32; and then 'b' still
 * holds its records, uncompressed and unfinished. Once finished with a codec, 'b' takes no more
 * records until it is reset. */
int sl_batch_builder_finish_codec(sl_batch_builder *b, enum sl_codec codec, sl_buf *scratch);

void sl_batch_builder_free(sl_batch_builder *b);

/* ---- control batches (transaction markers) ---- */

/* A control record's key is [int16 version 0, int16 type]; these are the types. */
#define SL_CONTROL_ABORT 0
#define SL_CONTROL_COMMIT 1

/* Builds in 'b' the control batch that ends producer 'pid's transaction: one record, no
 * compression, attributes transactional and control, timestamp 'ts'. SL_ENOMEM. */
int sl_batch_build_control(sl_batch_builder *b, int64_t pid, int16_t epoch, int type, int64_t ts);

/* The type of the control batch at 'batch' (validated, 'total' bytes, uncompressed as every
 * marker is): SL_CONTROL_ABORT or SL_CONTROL_COMMIT, or SL_ECORRUPT for anything else. */
int sl_batch_control_type(const uint8_t *batch, size_t total);

/* Appends to 'out' the batch at 'batch' (validated, 'total' bytes) with its records region
 * compressed with 'codec' instead (SL_CODEC_NONE: uncompressed); every other header field stays,
 * attributes, length and CRC are rewritten. For a topic whose compression.type forces a codec.
 * 'scratch' is the caller's working space. */
int sl_batch_recompress(const uint8_t *batch, size_t total, enum sl_codec codec, sl_buf *out,
                        sl_buf *scratch);

/* ---- reading records (consumers, the Lua host, compaction) ---- */

typedef struct sl_record_view {
    int64_t offset;
    int64_t timestamp;
    const uint8_t *key; /* NULL: null */
    size_t key_len;
    const uint8_t *value; /* NULL: null */
    size_t value_len;
    int32_t nheaders;
    const uint8_t *headers; /* encoded headers; walk them with sl_record_header_next */
    const uint8_t *headers_end;
} sl_record_view;

typedef struct sl_record_iter {
    sl_batch_header hdr;
    const uint8_t *pos;
    const uint8_t *end;
    int32_t remaining;
} sl_record_iter;

/* Starts reading the records of a validated batch. SL_EUNSUPPORTED for a compressed batch
 * (the caller decompresses first: sl_record_iter_start_decompress). */
int sl_record_iter_start(sl_record_iter *it, const uint8_t *batch, size_t total);

/* Starts reading the records of a validated batch, compressed or not. A compressed records
 * region is decompressed into 'scratch' (the caller's, reset first; at most 'max_out' bytes of
 * records are accepted) and the record views then point into scratch, so it must outlive the
 * walk and not be reused during it. An uncompressed batch is read in place, as by
 * sl_record_iter_start, and scratch is left alone. SL_ECORRUPT for a malformed or too large
 * compressed region, SL_EUNSUPPORTED for codecs 5..7, SL_ENOMEM. */
int sl_record_iter_start_decompress(sl_record_iter *it, const uint8_t *batch, size_t total,
                                    sl_buf *scratch, size_t max_out);

/* 1 and 'rec' filled, 0 at the end, SL_ECORRUPT for a malformed record. */
int sl_record_iter_next(sl_record_iter *it, sl_record_view *rec);

/* Walks encoded headers: 1 and the fields, 0 at the end, SL_ECORRUPT if malformed.
 * '*pos' starts at rec->headers. value NULL: null. */
int sl_record_header_next(const uint8_t **pos, const uint8_t *end, const uint8_t **key,
                          size_t *key_len, const uint8_t **value, size_t *value_len);

#endif

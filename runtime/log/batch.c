#include "log/batch.h"

#include "base/crc32c.h"
#include "base/varint.h"
#include "sluice/err.h"

int sl_batch_header_parse(const uint8_t *p, size_t len, sl_batch_header *h) {
    if (len < SL_BATCH_HEADER_SIZE)
        return SL_ECORRUPT;
    h->base_offset = (int64_t)sl_be64_get(p);
    h->length = (int32_t)sl_be32_get(p + SL_BATCH_OFF_LENGTH);
    h->leader_epoch = (int32_t)sl_be32_get(p + SL_BATCH_OFF_LEADER_EPOCH);
    h->magic = (int8_t)p[SL_BATCH_OFF_MAGIC];
    h->crc = sl_be32_get(p + SL_BATCH_OFF_CRC);
    h->attributes = (int16_t)sl_be16_get(p + SL_BATCH_OFF_ATTRIBUTES);
    h->last_offset_delta = (int32_t)sl_be32_get(p + SL_BATCH_OFF_LAST_OFFSET_DELTA);
    h->base_timestamp = (int64_t)sl_be64_get(p + SL_BATCH_OFF_BASE_TIMESTAMP);
    h->max_timestamp = (int64_t)sl_be64_get(p + SL_BATCH_OFF_MAX_TIMESTAMP);
    h->producer_id = (int64_t)sl_be64_get(p + SL_BATCH_OFF_PRODUCER_ID);
    h->producer_epoch = (int16_t)sl_be16_get(p + 51);
    h->base_sequence = (int32_t)sl_be32_get(p + 53);
    h->records_count = (int32_t)sl_be32_get(p + SL_BATCH_OFF_RECORDS_COUNT);
    if (h->magic != SL_BATCH_MAGIC)
        return SL_ECORRUPT;
    if (h->length < SL_BATCH_HEADER_SIZE - SL_BATCH_LOG_OVERHEAD)
        return SL_ECORRUPT;
    return 0;
}

size_t sl_batch_total_size(const uint8_t *p, size_t len) {
    if (len < SL_BATCH_LOG_OVERHEAD)
        return 0;
    int32_t length = (int32_t)sl_be32_get(p + SL_BATCH_OFF_LENGTH);
    if (length < SL_BATCH_HEADER_SIZE - SL_BATCH_LOG_OVERHEAD)
        return 0;
    return (size_t)length + SL_BATCH_LOG_OVERHEAD;
}

enum sl_codec sl_batch_codec(const uint8_t *p) {
    return (enum sl_codec)(p[SL_BATCH_OFF_ATTRIBUTES + 1] & SL_BATCH_ATTR_COMPRESSION_MASK);
}

uint32_t sl_batch_compute_crc(const uint8_t *p, size_t total) {
    return sl_crc32c(0, p + SL_BATCH_CRC_START, total - SL_BATCH_CRC_START);
}

int sl_batch_validate(const uint8_t *p, size_t len, sl_batch_header *h) {
    int rc = sl_batch_header_parse(p, len, h);
    if (rc)
        return rc;
    size_t total = (size_t)h->length + SL_BATCH_LOG_OVERHEAD;
    if (total > len)
        return SL_ECORRUPT;
    if (h->records_count < 1 || h->last_offset_delta != h->records_count - 1)
        return SL_ECORRUPT;
    if (sl_batch_compute_crc(p, total) != h->crc)
        return SL_ECORRUPT;
    return 0;
}

int sl_batch_validate_stored(const uint8_t *p, size_t len, sl_batch_header *h) {
    int rc = sl_batch_header_parse(p, len, h);
    if (rc)
        return rc;
    size_t total = (size_t)h->length + SL_BATCH_LOG_OVERHEAD;
    if (total > len)
        return SL_ECORRUPT;
    if (h->records_count < 0 || h->last_offset_delta < 0 ||
        h->records_count - 1 > h->last_offset_delta)
        return SL_ECORRUPT;
    if (sl_batch_compute_crc(p, total) != h->crc)
        return SL_ECORRUPT;
    return 0;
}

void sl_batch_set_base_offset(uint8_t *p, int64_t base_offset) {
    sl_be64_put(p + SL_BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
}

void sl_batch_set_leader_epoch(uint8_t *p, int32_t epoch) {
    sl_be32_put(p + SL_BATCH_OFF_LEADER_EPOCH, (uint32_t)epoch);
}

/* ---- builder ---- */

void sl_batch_builder_reset(sl_batch_builder *b) {
    b->buf.len = 0;
    b->count = 0;
    b->base_timestamp = 0;
    b->max_timestamp = 0;
    b->producer_id = -1;
    b->producer_epoch = -1;
    b->base_sequence = -1;
    b->flags = 0;
    if (sl_buf_reserve(&b->buf, SL_BATCH_HEADER_SIZE) == 0) {
        memset(b->buf.data, 0, SL_BATCH_HEADER_SIZE);
        b->buf.len = SL_BATCH_HEADER_SIZE;
    }
}

static size_t bytes_field_size(size_t len, bool null) {
    return null ? sl_varint_size(-1) : sl_varint_size((int64_t)len) + len;
}

static size_t record_body_size(int64_t ts_delta, int32_t offset_delta, size_t key_len,
                               bool key_null, size_t value_len, bool value_null,
                               const sl_batch_header_kv *headers, size_t nheaders) {
    size_t n = 1 + sl_varint_size(ts_delta) + sl_varint_size(offset_delta) +
               bytes_field_size(key_len, key_null) + bytes_field_size(value_len, value_null) +
               sl_varint_size((int64_t)nheaders);
    for (size_t i = 0; i < nheaders; i++)
        n += bytes_field_size(headers[i].key_len, false) +
             bytes_field_size(headers[i].value_len, headers[i].value == NULL);
    return n;
}

size_t sl_batch_record_size(int64_t ts_delta, int32_t offset_delta, size_t key_len, bool key_null,
                            size_t value_len, bool value_null, const sl_batch_header_kv *headers,
                            size_t nheaders) {
    size_t body = record_body_size(ts_delta, offset_delta, key_len, key_null, value_len,
                                   value_null, headers, nheaders);
    return sl_varint_size((int64_t)body) + body;
}

static uint8_t *put_bytes(uint8_t *w, const void *data, size_t len, bool null) {
    if (null)
        return w + sl_varint_put(w, -1);
    w += sl_varint_put(w, (int64_t)len);
    if (len)
        memcpy(w, data, len);
    return w + len;
}

int sl_batch_builder_add(sl_batch_builder *b, int64_t timestamp, const void *key, size_t key_len,
                         const void *value, size_t value_len, const sl_batch_header_kv *headers,
                         size_t nheaders) {
    if (b->buf.len < SL_BATCH_HEADER_SIZE)
        return SL_ENOMEM; /* reset could not allocate the header */
    if (b->count == 0) {
        b->base_timestamp = timestamp;
        b->max_timestamp = timestamp;
    }
    int64_t ts_delta = timestamp - b->base_timestamp;
    size_t body = record_body_size(ts_delta, b->count, key_len, key == NULL, value_len,
                                   value == NULL, headers, nheaders);
    int rc = sl_buf_reserve(&b->buf, sl_varint_size((int64_t)body) + body);
    if (rc)
        return rc;
    uint8_t *w = b->buf.data + b->buf.len;
    w += sl_varint_put(w, (int64_t)body);
    *w++ = 0; /* record attributes: unused */
    w += sl_varint_put(w, ts_delta);
    w += sl_varint_put(w, b->count);
    w = put_bytes(w, key, key_len, key == NULL);
    w = put_bytes(w, value, value_len, value == NULL);
    w += sl_varint_put(w, (int64_t)nheaders);
    for (size_t i = 0; i < nheaders; i++) {
        w = put_bytes(w, headers[i].key, headers[i].key_len, false);
        w = put_bytes(w, headers[i].value, headers[i].value_len, headers[i].value == NULL);
    }
    b->buf.len = (size_t)(w - b->buf.data);
    if (timestamp > b->max_timestamp)
        b->max_timestamp = timestamp;
    b->count++;
    return 0;
}

/* Writes every header field of the batch in b->buf (records already final), then the CRC. */
static void finish_header(sl_batch_builder *b, uint16_t attributes) {
    uint8_t *p = b->buf.data;
    sl_be64_put(p + SL_BATCH_OFF_BASE_OFFSET, 0);
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)(b->buf.len - SL_BATCH_LOG_OVERHEAD));
    sl_be32_put(p + SL_BATCH_OFF_LEADER_EPOCH, (uint32_t)-1);
    p[SL_BATCH_OFF_MAGIC] = SL_BATCH_MAGIC;
    sl_be16_put(p + SL_BATCH_OFF_ATTRIBUTES, attributes);
    sl_be32_put(p + SL_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)(b->count - 1));
    sl_be64_put(p + SL_BATCH_OFF_BASE_TIMESTAMP, (uint64_t)b->base_timestamp);
    sl_be64_put(p + SL_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)b->max_timestamp);
    sl_be64_put(p + SL_BATCH_OFF_PRODUCER_ID, (uint64_t)b->producer_id);
    sl_be16_put(p + 51, (uint16_t)b->producer_epoch);
    sl_be32_put(p + 53, (uint32_t)b->base_sequence);
    sl_be32_put(p + SL_BATCH_OFF_RECORDS_COUNT, (uint32_t)b->count);
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, b->buf.len));
}

void sl_batch_builder_finish(sl_batch_builder *b) {
    finish_header(b, b->flags);
}

int sl_batch_builder_finish_codec(sl_batch_builder *b, enum sl_codec codec, sl_buf *scratch) {
    if ((unsigned)codec > SL_CODEC_MAX)
        return SL_EINVAL;
    if (b->buf.len < SL_BATCH_HEADER_SIZE)
        return SL_ENOMEM; /* reset could not allocate the header */
    if (codec == SL_CODEC_NONE) {
        sl_batch_builder_finish(b);
        return 0;
    }
    size_t rlen = b->buf.len - SL_BATCH_HEADER_SIZE;
    sl_buf_reset(scratch);
    int rc = sl_compress(codec, b->buf.data + SL_BATCH_HEADER_SIZE, rlen, scratch);
    if (rc)
        return rc;
    if (scratch->len > (size_t)INT32_MAX - (SL_BATCH_HEADER_SIZE - SL_BATCH_LOG_OVERHEAD))
        return SL_ETOOLARGE;
    /* Room first (incompressible records grow), so a failure leaves the records intact. */
    if (scratch->len > rlen && sl_buf_reserve(&b->buf, scratch->len - rlen))
        return SL_ENOMEM;
    memcpy(b->buf.data + SL_BATCH_HEADER_SIZE, scratch->data, scratch->len);
    b->buf.len = SL_BATCH_HEADER_SIZE + scratch->len;
    finish_header(b, (uint16_t)(b->flags | (uint16_t)codec));
    return 0;
}

int sl_batch_recompress(const uint8_t *batch, size_t total, enum sl_codec codec, sl_buf *out,
                        sl_buf *scratch) {
    /* Records are the same bytes whatever the codec: only the region's compression changes. */
    const uint8_t *records = batch + SL_BATCH_HEADER_SIZE;
    size_t rlen = total - SL_BATCH_HEADER_SIZE;
    enum sl_codec from = sl_batch_codec(batch);
    sl_buf_reset(scratch);
    int rc = 0;
    if (from != SL_CODEC_NONE) {
        /* A produced batch is at most max.message.bytes; its records may expand a lot. */
        rc = sl_decompress(from, records, rlen, 256u * 1024 * 1024, scratch);
        records = scratch->data;
        rlen = scratch->len;
    }
    size_t start = out->len;
    if (rc == 0)
        rc = sl_buf_append(out, batch, SL_BATCH_HEADER_SIZE);
    if (rc == 0)
        rc = codec == SL_CODEC_NONE ? sl_buf_append(out, records, rlen)
                                    : sl_compress(codec, records, rlen, out);
    if (rc) {
        out->len = start;
        return rc;
    }
    uint8_t *p = out->data + start;
    size_t len = out->len - start;
    uint16_t attributes = sl_be16_get(p + SL_BATCH_OFF_ATTRIBUTES);
    attributes = (uint16_t)((attributes & ~SL_BATCH_ATTR_COMPRESSION_MASK) | codec);
    sl_be16_put(p + SL_BATCH_OFF_ATTRIBUTES, attributes);
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)(len - SL_BATCH_LOG_OVERHEAD));
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, len));
    return 0;
}

void sl_batch_builder_free(sl_batch_builder *b) {
    sl_buf_free(&b->buf);
}

/* ---- record iterator ---- */

int sl_record_iter_start(sl_record_iter *it, const uint8_t *batch, size_t total) {
    int rc = sl_batch_header_parse(batch, total, &it->hdr);
    if (rc)
        return rc;
    if ((size_t)it->hdr.length + SL_BATCH_LOG_OVERHEAD > total)
        return SL_ECORRUPT;
    if (it->hdr.attributes & SL_BATCH_ATTR_COMPRESSION_MASK)
        return SL_EUNSUPPORTED;
    it->pos = batch + SL_BATCH_HEADER_SIZE;
    it->end = batch + it->hdr.length + SL_BATCH_LOG_OVERHEAD;
    it->remaining = it->hdr.records_count;
    return 0;
}

int sl_record_iter_start_decompress(sl_record_iter *it, const uint8_t *batch, size_t total,
                                    sl_buf *scratch, size_t max_out) {
    int rc = sl_record_iter_start(it, batch, total);
    if (rc != SL_EUNSUPPORTED)
        return rc; /* uncompressed (or malformed): as sl_record_iter_start has it */
    enum sl_codec codec = sl_batch_codec(batch);
    if ((unsigned)codec > SL_CODEC_MAX)
        return SL_EUNSUPPORTED;
    const uint8_t *records = batch + SL_BATCH_HEADER_SIZE;
    size_t rlen = (size_t)it->hdr.length + SL_BATCH_LOG_OVERHEAD - SL_BATCH_HEADER_SIZE;
    sl_buf_reset(scratch);
    if ((rc = sl_decompress(codec, records, rlen, max_out, scratch)))
        return rc;
    /* Never a NULL base, even for no records: the walk does pointer arithmetic on it. */
    if (scratch->data == NULL && sl_buf_reserve(scratch, 1))
        return SL_ENOMEM;
    it->pos = scratch->data;
    it->end = scratch->data + scratch->len;
    it->remaining = it->hdr.records_count;
    return 0;
}

/* Reads a varint length-prefixed byte field; -1 means null. */
static int get_bytes(const uint8_t **pos, const uint8_t *end, const uint8_t **data, size_t *len) {
    int64_t n;
    size_t k = sl_varint_get(*pos, end, &n);
    if (k == 0 || n < -1)
        return SL_ECORRUPT;
    *pos += k;
    if (n == -1) {
        *data = NULL;
        *len = 0;
        return 0;
    }
    if ((uint64_t)n > (uint64_t)(end - *pos))
        return SL_ECORRUPT;
    *data = *pos;
    *len = (size_t)n;
    *pos += n;
    return 0;
}

int sl_record_iter_next(sl_record_iter *it, sl_record_view *rec) {
    if (it->remaining <= 0)
        return 0;
    int64_t len, ts_delta, off_delta, nheaders;
    size_t k = sl_varint_get(it->pos, it->end, &len);
    if (k == 0 || len < 1 || len > it->end - it->pos - (ptrdiff_t)k)
        return SL_ECORRUPT;
    const uint8_t *p = it->pos + k;
    const uint8_t *rend = p + len;
    p++; /* attributes */
    if ((k = sl_varint_get(p, rend, &ts_delta)) == 0)
        return SL_ECORRUPT;
    p += k;
    if ((k = sl_varint_get(p, rend, &off_delta)) == 0)
        return SL_ECORRUPT;
    p += k;
    if (get_bytes(&p, rend, &rec->key, &rec->key_len) ||
        get_bytes(&p, rend, &rec->value, &rec->value_len))
        return SL_ECORRUPT;
    if ((k = sl_varint_get(p, rend, &nheaders)) == 0 || nheaders < 0 || nheaders > len)
        return SL_ECORRUPT;
    p += k;
    /* Summed as unsigned: hostile deltas wrap (as Kafka's Java longs do) instead of being
     * undefined behaviour. */
    rec->offset = (int64_t)((uint64_t)it->hdr.base_offset + (uint64_t)off_delta);
    rec->timestamp = (it->hdr.attributes & SL_BATCH_ATTR_LOG_APPEND_TIME)
                         ? it->hdr.max_timestamp
                         : (int64_t)((uint64_t)it->hdr.base_timestamp + (uint64_t)ts_delta);
    rec->nheaders = (int32_t)nheaders;
    rec->headers = p;
    rec->headers_end = rend;
    it->pos = rend;
    it->remaining--;
    return 1;
}

int sl_record_header_next(const uint8_t **pos, const uint8_t *end, const uint8_t **key,
                          size_t *key_len, const uint8_t **value, size_t *value_len) {
    if (*pos >= end)
        return 0;
    if (get_bytes(pos, end, key, key_len) || *key == NULL)
        return SL_ECORRUPT;
    if (get_bytes(pos, end, value, value_len))
        return SL_ECORRUPT;
    return 1;
}

int sl_batch_build_control(sl_batch_builder *b, int64_t pid, int16_t epoch, int type, int64_t ts) {
    /* Key [version 0, type]; value [version 0, coordinator epoch 0], as Kafka writes them. */
    uint8_t key[4] = {0, 0, 0, (uint8_t)type}, value[6] = {0};
    sl_batch_builder_reset(b);
    int rc = sl_batch_builder_add(b, ts, key, sizeof(key), value, sizeof(value), NULL, 0);
    if (rc)
        return rc;
    b->producer_id = pid;
    b->producer_epoch = epoch;
    b->base_sequence = -1;
    b->flags = SL_BATCH_ATTR_TRANSACTIONAL | SL_BATCH_ATTR_CONTROL;
    sl_batch_builder_finish(b);
    return 0;
}

int sl_batch_control_type(const uint8_t *batch, size_t total) {
    sl_record_iter it;
    sl_record_view rv;
    if (sl_record_iter_start(&it, batch, total) || sl_record_iter_next(&it, &rv) != 1 ||
        rv.key == NULL || rv.key_len < 4 || rv.key[0] != 0 || rv.key[1] != 0)
        return SL_ECORRUPT;
    int type = (rv.key[2] << 8) | rv.key[3];
    return type == SL_CONTROL_ABORT || type == SL_CONTROL_COMMIT ? type : SL_ECORRUPT;
}

/* RecordBatch v2 codec: builder, header checks, CRC-32C, record iterator, varints. Runs under
 * ASan in CI, so every "never reads out of bounds" case copies its input into a heap block of
 * exactly the length under test: one byte too far is a reported overflow, not a silent pass. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/varint.h"
#include "log/batch.h"
#include "sl_test.h"

/* ---- helpers ---- */

/* A heap copy of exactly 'len' bytes (at least one byte is allocated so malloc(0) is not NULL). */
static uint8_t *exact_copy(const uint8_t *p, size_t len) {
    uint8_t *c = malloc(len ? len : 1);
    SL_TRUE(c != NULL);
    if (len)
        memcpy(c, p, len);
    return c;
}

/* Bitwise CRC-32C, written from the polynomial alone, to check the table/SSE4.2 code against. */
static uint32_t crc32c_reference(const uint8_t *p, size_t len) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void) { /* xorshift64*: deterministic, so failures reproduce */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* A finished batch of 'n' records "k<i>" -> "value-<i>" at ts 1000 + i. */
static void build_simple(sl_batch_builder *b, int n) {
    char key[32], val[32];
    sl_batch_builder_reset(b);
    for (int i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof(key), "k%d", i);
        int vl = snprintf(val, sizeof(val), "value-%d", i);
        SL_PASS(sl_batch_builder_add(b, 1000 + i, key, (size_t)kl, val, (size_t)vl, NULL, 0));
    }
    sl_batch_builder_finish(b);
}

/* Wraps hand-made record bytes in a header with a correct CRC, so only the records are wrong.
 * Returns an exact-size heap block. */
static uint8_t *wrap_records(const uint8_t *recs, size_t rlen, int32_t count, size_t *total) {
    size_t n = SL_BATCH_HEADER_SIZE + rlen;
    uint8_t *p = calloc(1, n);
    SL_TRUE(p != NULL);
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)(n - SL_BATCH_LOG_OVERHEAD));
    sl_be32_put(p + SL_BATCH_OFF_LEADER_EPOCH, (uint32_t)-1);
    p[SL_BATCH_OFF_MAGIC] = SL_BATCH_MAGIC;
    sl_be32_put(p + SL_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)(count - 1));
    sl_be64_put(p + SL_BATCH_OFF_BASE_TIMESTAMP, 5000);
    sl_be64_put(p + SL_BATCH_OFF_MAX_TIMESTAMP, 5000);
    sl_be64_put(p + SL_BATCH_OFF_PRODUCER_ID, (uint64_t)-1);
    sl_be32_put(p + SL_BATCH_OFF_RECORDS_COUNT, (uint32_t)count);
    if (rlen)
        memcpy(p + SL_BATCH_HEADER_SIZE, recs, rlen);
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, n));
    *total = n;
    return p;
}

/* Runs the iterator (and the header walker on each record) to the end; returns the first
 * non-1 result of next() and the number of records read before it. */
static int drain(const uint8_t *batch, size_t total, int *nread) {
    sl_record_iter it;
    sl_record_view rv;
    int rc = sl_record_iter_start(&it, batch, total);
    *nread = 0;
    if (rc)
        return rc;
    while ((rc = sl_record_iter_next(&it, &rv)) == 1) {
        const uint8_t *hp = rv.headers, *k, *v;
        size_t kl, vl;
        int hr;
        while ((hr = sl_record_header_next(&hp, rv.headers_end, &k, &kl, &v, &vl)) == 1) {
            SL_TRUE(k >= batch && k + kl <= batch + total);
            SL_TRUE(v == NULL || (v >= batch && v + vl <= batch + total));
        }
        if (rv.key)
            SL_TRUE(rv.key >= batch && rv.key + rv.key_len <= batch + total);
        if (rv.value)
            SL_TRUE(rv.value >= batch && rv.value + rv.value_len <= batch + total);
        (*nread)++;
    }
    return rc;
}

/* ---- CRC-32C ---- */

static void crc32c_known_vector(void) {
    SL_EQ(sl_crc32c(0, "123456789", 9), 0xe3069283u);
    SL_EQ(crc32c_reference((const uint8_t *)"123456789", 9), 0xe3069283u);
    SL_EQ(sl_crc32c(0, "", 0), 0);
    /* 32 zero bytes and 32 0xff bytes: the iSCSI test vectors of RFC 3720, B.4. */
    uint8_t z[32], f[32];
    memset(z, 0, sizeof(z));
    memset(f, 0xff, sizeof(f));
    SL_EQ(sl_crc32c(0, z, sizeof(z)), 0x8a9136aau);
    SL_EQ(sl_crc32c(0, f, sizeof(f)), 0x62a8ab43u);
}

static void crc32c_matches_reference_at_every_length_and_alignment(void) {
    uint8_t data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)rng();
    for (size_t start = 0; start < 9; start++) {
        for (size_t len = 0; start + len <= sizeof(data); len++) {
            uint32_t want = crc32c_reference(data + start, len);
            SL_EQ(sl_crc32c(0, data + start, len), want);
            /* Extending in two pieces gives the one-shot answer. */
            size_t cut = len / 3;
            SL_EQ(sl_crc32c(sl_crc32c(0, data + start, cut), data + start + cut, len - cut), want);
        }
    }
}

/* ---- varints ---- */

static void varint_round_trips(void) {
    static const int64_t values[] = {0,
                                     1,
                                     -1,
                                     63,
                                     -64,
                                     64,
                                     -65,
                                     8191,
                                     8192,
                                     -8193,
                                     INT32_MAX,
                                     INT32_MIN,
                                     (int64_t)INT32_MAX + 1,
                                     (int64_t)INT32_MIN - 1,
                                     INT64_C(1) << 62,
                                     -(INT64_C(1) << 62),
                                     INT64_MAX - 1,
                                     INT64_MIN + 1,
                                     INT64_MAX,
                                     INT64_MIN};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        uint8_t buf[SL_VARINT_MAX + 4];
        memset(buf, 0xee, sizeof(buf));
        size_t n = sl_varint_put(buf, values[i]);
        SL_TRUE(n >= 1 && n <= SL_VARINT_MAX);
        SL_EQ(n, sl_varint_size(values[i]));
        SL_EQ(buf[n], 0xee); /* wrote no more than it said */
        int64_t back = 0;
        SL_EQ(sl_varint_get(buf, buf + n, &back), n);
        SL_EQ(back, values[i]);
        /* Every shorter input is refused, reading only what it was given. */
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *c = exact_copy(buf, cut);
            SL_EQ(sl_varint_get(c, c + cut, &back), 0);
            free(c);
        }
    }
    /* Generated values across every group boundary. */
    for (int bit = 0; bit < 64; bit++) {
        uint64_t u = (uint64_t)1 << bit; /* unsigned: -(1 << 63) must not overflow */
        int64_t tries[] = {(int64_t)u, (int64_t)(u - 1), (int64_t)(0 - u), (int64_t)(0 - u - 1)};
        for (int t = 0; t < 4; t++) {
            uint8_t buf[SL_VARINT_MAX];
            int64_t back;
            size_t n = sl_varint_put(buf, tries[t]);
            SL_EQ(sl_varint_get(buf, buf + n, &back), n);
            SL_EQ(back, tries[t]);
        }
    }
}

static void varint_known_encodings(void) {
    uint8_t buf[SL_VARINT_MAX];
    /* zigzag: 0->0, -1->1, 1->2, -64->127, 64->128 */
    SL_EQ(sl_varint_put(buf, 0), 1);
    SL_EQ(buf[0], 0x00);
    SL_EQ(sl_varint_put(buf, -1), 1);
    SL_EQ(buf[0], 0x01);
    SL_EQ(sl_varint_put(buf, 1), 1);
    SL_EQ(buf[0], 0x02);
    SL_EQ(sl_varint_put(buf, -64), 1);
    SL_EQ(buf[0], 0x7f);
    SL_EQ(sl_varint_put(buf, 64), 2);
    SL_EQ(buf[0], 0x80);
    SL_EQ(buf[1], 0x01);
    /* INT64_MAX zigzags to 0xfff...fe, INT64_MIN to 0xfff...ff: ten bytes each. */
    SL_EQ(sl_varint_put(buf, INT64_MAX), 10);
    SL_EQ(buf[0], 0xfe);
    for (int i = 1; i < 9; i++)
        SL_EQ(buf[i], 0xff);
    SL_EQ(buf[9], 0x01);
    SL_EQ(sl_varint_put(buf, INT64_MIN), 10);
    for (int i = 0; i < 9; i++)
        SL_EQ(buf[i], 0xff);
    SL_EQ(buf[9], 0x01);
    SL_EQ(sl_uvarint_put(buf, UINT64_MAX), 10);
    uint64_t u;
    SL_EQ(sl_uvarint_get(buf, buf + 10, &u), 10);
    SL_TRUE(u == UINT64_MAX);
}

static void varint_ten_byte_limit(void) {
    /* Ten bytes is the longest varlong; an eleventh continuation is refused even when the
     * input goes on and ends properly. */
    uint8_t eleven[11];
    memset(eleven, 0x80, 10);
    eleven[10] = 0x00;
    int64_t v;
    uint64_t u;
    SL_EQ(sl_varint_get(eleven, eleven + sizeof(eleven), &v), 0);
    SL_EQ(sl_uvarint_get(eleven, eleven + sizeof(eleven), &u), 0);
    uint8_t ten[10];
    memset(ten, 0x80, 9);
    ten[9] = 0x01;
    SL_EQ(sl_uvarint_get(ten, ten + sizeof(ten), &u), 10);
    SL_TRUE(u == (uint64_t)1 << 63);
    /* All continuation bits and nothing after: refused without reading past 'end'. */
    uint8_t *c = exact_copy(eleven, 10);
    SL_EQ(sl_varint_get(c, c + 10, &v), 0);
    free(c);
    SL_EQ(sl_varint_get(ten, ten, &v), 0); /* empty input */
}

/* ---- builder ---- */

struct want_rec {
    int64_t ts;
    const char *key; /* NULL: null */
    size_t key_len;
    const char *value; /* NULL: null */
    size_t value_len;
    const sl_batch_header_kv *headers;
    size_t nheaders;
};

static void check_record(const sl_record_view *rv, const struct want_rec *w, int64_t offset) {
    SL_EQ(rv->offset, offset);
    SL_EQ(rv->timestamp, w->ts);
    if (w->key == NULL) {
        SL_TRUE(rv->key == NULL);
    } else {
        SL_TRUE(rv->key != NULL);
        SL_EQ(rv->key_len, w->key_len);
        SL_TRUE(memcmp(rv->key, w->key, w->key_len) == 0);
    }
    if (w->value == NULL) {
        SL_TRUE(rv->value == NULL);
    } else {
        SL_TRUE(rv->value != NULL); /* an empty value is not a null one */
        SL_EQ(rv->value_len, w->value_len);
        SL_TRUE(memcmp(rv->value, w->value, w->value_len) == 0);
    }
    SL_EQ(rv->nheaders, w->nheaders);
    const uint8_t *hp = rv->headers, *k, *v;
    size_t kl, vl;
    for (size_t i = 0; i < w->nheaders; i++) {
        SL_EQ(sl_record_header_next(&hp, rv->headers_end, &k, &kl, &v, &vl), 1);
        SL_EQ(kl, w->headers[i].key_len);
        SL_TRUE(memcmp(k, w->headers[i].key, kl) == 0);
        if (w->headers[i].value == NULL) {
            SL_TRUE(v == NULL);
        } else {
            SL_TRUE(v != NULL);
            SL_EQ(vl, w->headers[i].value_len);
            SL_TRUE(memcmp(v, w->headers[i].value, vl) == 0);
        }
    }
    SL_EQ(sl_record_header_next(&hp, rv->headers_end, &k, &kl, &v, &vl), 0);
}

static void builder_round_trip(void) {
    static const sl_batch_header_kv h1[] = {
        {"trace", 5, "abc", 3},
        {"null-value", 10, NULL, 0},
        {"", 0, "empty key", 9},
        {"empty-value", 11, "", 0},
    };
    static const sl_batch_header_kv h2[] = {{"tenant", 6, "7", 1}};
    const struct want_rec recs[] = {
        {1700000000000, "user-1", 6, "hello world", 11, h1, 4},
        {1700000000005, NULL, 0, "null key", 8, NULL, 0},
        {1699999999990, "null value", 10, NULL, 0, h2, 1}, /* before the base: negative delta */
        {1700000000100, "empty value", 11, "", 0, NULL, 0},
        {1700000000050, "", 0, "empty key", 9, NULL, 0},
        {1700000000001, NULL, 0, NULL, 0, NULL, 0},
    };
    const size_t n = sizeof(recs) / sizeof(recs[0]);
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    for (size_t i = 0; i < n; i++) {
        size_t before = b.buf.len;
        size_t predicted = sl_batch_record_size(
            recs[i].ts - recs[0].ts, (int32_t)i, recs[i].key_len, recs[i].key == NULL,
            recs[i].value_len, recs[i].value == NULL, recs[i].headers, recs[i].nheaders);
        SL_PASS(sl_batch_builder_add(&b, recs[i].ts, recs[i].key, recs[i].key_len, recs[i].value,
                                     recs[i].value_len, recs[i].headers, recs[i].nheaders));
        SL_EQ(b.buf.len - before, predicted);
    }
    sl_batch_builder_finish(&b);

    uint8_t *p = exact_copy(b.buf.data, b.buf.len);
    size_t total = b.buf.len;
    sl_batch_header h;
    SL_PASS(sl_batch_validate(p, total, &h));
    SL_EQ(h.base_offset, 0);
    SL_EQ(h.length, total - SL_BATCH_LOG_OVERHEAD);
    SL_EQ(sl_batch_total_size(p, total), total);
    SL_EQ(h.leader_epoch, -1);
    SL_EQ(h.magic, 2);
    SL_EQ(h.attributes, 0);
    SL_EQ(h.records_count, n);
    SL_EQ(h.last_offset_delta, n - 1);
    SL_EQ(h.base_timestamp, 1700000000000);
    SL_EQ(h.max_timestamp, 1700000000100);
    SL_EQ(h.producer_id, -1);
    SL_EQ(h.producer_epoch, -1);
    SL_EQ(h.base_sequence, -1);
    SL_EQ(h.crc, crc32c_reference(p + SL_BATCH_CRC_START, total - SL_BATCH_CRC_START));

    /* The broker assigns the offset and epoch; records report offsets from the new base. */
    sl_batch_set_base_offset(p, 4200);
    sl_batch_set_leader_epoch(p, 3);
    SL_PASS(sl_batch_validate(p, total, &h));
    SL_EQ(h.base_offset, 4200);
    SL_EQ(h.leader_epoch, 3);
    sl_record_iter it;
    sl_record_view rv;
    SL_PASS(sl_record_iter_start(&it, p, total));
    for (size_t i = 0; i < n; i++) {
        SL_EQ(sl_record_iter_next(&it, &rv), 1);
        check_record(&rv, &recs[i], 4200 + (int64_t)i);
    }
    SL_EQ(sl_record_iter_next(&it, &rv), 0);
    SL_EQ(sl_record_iter_next(&it, &rv), 0); /* stays at the end */
    free(p);

    /* Reset reuses the buffer and starts a fresh batch. */
    sl_batch_builder_reset(&b);
    SL_EQ(b.count, 0);
    SL_PASS(sl_batch_builder_add(&b, 7, "x", 1, "y", 1, NULL, 0));
    sl_batch_builder_finish(&b);
    SL_PASS(sl_batch_validate(b.buf.data, b.buf.len, &h));
    SL_EQ(h.records_count, 1);
    SL_EQ(h.base_timestamp, 7);
    SL_EQ(h.max_timestamp, 7);
    sl_batch_builder_free(&b);
}

static void builder_many_records(void) {
    /* Sizes cross the one/two/three-byte varint boundaries of the record length and fields. */
    enum { N = 5000 };
    static uint8_t value[20000];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)(i * 31 + 7);
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    int64_t max_ts = INT64_MIN;
    for (int i = 0; i < N; i++) {
        size_t vl = (size_t)((i * 37) % 200);
        if (i % 1000 == 999)
            vl = 8000 + (size_t)i; /* a few long ones */
        int64_t ts = 1000000 + (int64_t)((i * 7919) % 10007) - 5000;
        if (ts > max_ts)
            max_ts = ts;
        char key[16];
        int kl = snprintf(key, sizeof(key), "%d", i);
        SL_PASS(sl_batch_builder_add(&b, ts, key, (size_t)kl, value, vl, NULL, 0));
    }
    sl_batch_builder_finish(&b);
    sl_batch_header h;
    SL_PASS(sl_batch_validate(b.buf.data, b.buf.len, &h));
    SL_EQ(h.records_count, N);
    SL_EQ(h.last_offset_delta, N - 1);
    SL_EQ(h.max_timestamp, max_ts);
    sl_record_iter it;
    sl_record_view rv;
    SL_PASS(sl_record_iter_start(&it, b.buf.data, b.buf.len));
    for (int i = 0; i < N; i++) {
        SL_EQ(sl_record_iter_next(&it, &rv), 1);
        size_t vl = (size_t)((i * 37) % 200);
        if (i % 1000 == 999)
            vl = 8000 + (size_t)i;
        char key[16];
        int kl = snprintf(key, sizeof(key), "%d", i);
        SL_EQ(rv.offset, i);
        SL_EQ(rv.timestamp, 1000000 + (int64_t)((i * 7919) % 10007) - 5000);
        SL_EQ(rv.key_len, kl);
        SL_TRUE(memcmp(rv.key, key, (size_t)kl) == 0);
        SL_EQ(rv.value_len, vl);
        SL_TRUE(memcmp(rv.value, value, vl) == 0);
    }
    SL_EQ(sl_record_iter_next(&it, &rv), 0);
    sl_batch_builder_free(&b);
}

/* The batch below is written field by field from the Kafka spec (KAFKA_PROTOCOL.md section 2)
 * and checked with an independent bitwise CRC-32C: a producer's first batch with two records.
 *   record 0: ts 1700000000000, key "k", value "hello", header "h"="v"
 *   record 1: ts +5, null key, empty value, header "n"=null */
static const uint8_t kafka_batch[] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* baseOffset 0 */
    0x00, 0x00, 0x00, 0x4c,                         /* batchLength 76 (88 - 12) */
    0xff, 0xff, 0xff, 0xff,                         /* partitionLeaderEpoch -1 */
    0x02,                                           /* magic */
    0x80, 0xda, 0xfe, 0x41,                         /* crc */
    0x00, 0x00,                                     /* attributes: none, CreateTime */
    0x00, 0x00, 0x00, 0x01,                         /* lastOffsetDelta 1 */
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, /* baseTimestamp 1700000000000 */
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05, /* maxTimestamp +5 */
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* producerId -1 */
    0xff, 0xff,                                     /* producerEpoch -1 */
    0xff, 0xff, 0xff, 0xff,                         /* baseSequence -1 */
    0x00, 0x00, 0x00, 0x02,                         /* recordsCount 2 */
    /* record 0: length 16, attributes, tsDelta 0, offsetDelta 0, key, value, 1 header */
    0x20, 0x00, 0x00, 0x00, 0x02, 'k', 0x0a, 'h', 'e', 'l', 'l', 'o', 0x02, 0x02, 'h', 0x02, 'v',
    /* record 1: length 9, attributes, tsDelta 5, offsetDelta 1, key -1, value len 0, header */
    0x12, 0x00, 0x0a, 0x02, 0x01, 0x00, 0x02, 0x02, 'n', 0x01};

static void builder_matches_hand_made_kafka_batch(void) {
    static const sl_batch_header_kv h0[] = {{"h", 1, "v", 1}};
    static const sl_batch_header_kv h1[] = {{"n", 1, NULL, 0}};
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    SL_PASS(sl_batch_builder_add(&b, 1700000000000, "k", 1, "hello", 5, h0, 1));
    SL_PASS(sl_batch_builder_add(&b, 1700000000005, NULL, 0, "", 0, h1, 1));
    sl_batch_builder_finish(&b);
    SL_EQ(b.buf.len, sizeof(kafka_batch));
    for (size_t i = 0; i < sizeof(kafka_batch); i++)
        if (b.buf.data[i] != kafka_batch[i])
            SL_TEST_FAIL_("byte %zu is 0x%02x, expected 0x%02x", i, b.buf.data[i], kafka_batch[i]);
    sl_batch_header h;
    SL_PASS(sl_batch_validate(kafka_batch, sizeof(kafka_batch), &h));
    SL_EQ(h.crc, 0x80dafe41u);
    sl_batch_builder_free(&b);
}

/* ---- header and CRC checks ---- */

static void crc_covers_every_byte_after_it(void) {
    sl_batch_builder b = {0};
    static const sl_batch_header_kv hk[] = {{"hk", 2, "hv", 2}};
    sl_batch_builder_reset(&b);
    SL_PASS(sl_batch_builder_add(&b, 100, "key", 3, "value", 5, hk, 1));
    SL_PASS(sl_batch_builder_add(&b, 90, NULL, 0, "v2", 2, NULL, 0));
    sl_batch_builder_finish(&b);
    uint8_t *p = exact_copy(b.buf.data, b.buf.len);
    size_t total = b.buf.len;
    sl_batch_header h;
    for (size_t i = SL_BATCH_CRC_START; i < total; i++) {
        for (int bit = 0; bit < 8; bit++) {
            p[i] ^= (uint8_t)(1u << bit);
            if (sl_batch_validate(p, total, &h) != SL_ECORRUPT)
                SL_TEST_FAIL_("flipping bit %d of byte %zu went unnoticed", bit, i);
            p[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* The stored CRC itself. */
    for (size_t i = SL_BATCH_OFF_CRC; i < SL_BATCH_CRC_START; i++) {
        p[i] ^= 0x10;
        SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
        p[i] ^= 0x10;
    }
    SL_PASS(sl_batch_validate(p, total, &h));
    /* Fields the broker writes lie outside the CRC: any value keeps the batch valid. */
    static const int64_t offsets[] = {0, 1, 123456789, INT64_MAX - 10};
    for (size_t i = 0; i < 4; i++) {
        sl_batch_set_base_offset(p, offsets[i]);
        SL_PASS(sl_batch_validate(p, total, &h));
        SL_EQ(h.base_offset, offsets[i]);
    }
    static const int32_t epochs[] = {-1, 0, 7, INT32_MAX};
    for (size_t i = 0; i < 4; i++) {
        sl_batch_set_leader_epoch(p, epochs[i]);
        SL_PASS(sl_batch_validate(p, total, &h));
        SL_EQ(h.leader_epoch, epochs[i]);
    }
    SL_EQ(sl_batch_compute_crc(p, total), h.crc);
    free(p);
    sl_batch_builder_free(&b);
}

static void wrong_magic_is_refused(void) {
    sl_batch_builder b = {0};
    build_simple(&b, 3);
    sl_batch_header h;
    static const uint8_t magics[] = {0, 1, 3, 0x82, 0xff};
    for (size_t i = 0; i < sizeof(magics); i++) {
        b.buf.data[SL_BATCH_OFF_MAGIC] = magics[i];
        SL_FAIL(sl_batch_header_parse(b.buf.data, b.buf.len, &h), SL_ECORRUPT);
        SL_FAIL(sl_batch_validate(b.buf.data, b.buf.len, &h), SL_ECORRUPT);
        sl_record_iter it;
        SL_FAIL(sl_record_iter_start(&it, b.buf.data, b.buf.len), SL_ECORRUPT);
    }
    b.buf.data[SL_BATCH_OFF_MAGIC] = SL_BATCH_MAGIC;
    SL_PASS(sl_batch_validate(b.buf.data, b.buf.len, &h));
    sl_batch_builder_free(&b);
}

static void batch_length_too_short_or_too_long(void) {
    sl_batch_builder b = {0};
    build_simple(&b, 3);
    size_t total = b.buf.len;
    uint8_t *p = exact_copy(b.buf.data, total);
    int32_t good = (int32_t)(total - SL_BATCH_LOG_OVERHEAD);
    sl_batch_header h;
    /* Shorter than the header after the length field: refused by every entry point. */
    static const int32_t too_short[] = {0, 1, 48, -1, INT32_MIN};
    for (size_t i = 0; i < sizeof(too_short) / sizeof(too_short[0]); i++) {
        sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)too_short[i]);
        SL_FAIL(sl_batch_header_parse(p, total, &h), SL_ECORRUPT);
        SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
        SL_EQ(sl_batch_total_size(p, total), 0);
    }
    /* 49 is a header with no records: parses, but the CRC over it is wrong. */
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, 49);
    SL_PASS(sl_batch_header_parse(p, total, &h));
    SL_EQ(sl_batch_total_size(p, total), SL_BATCH_HEADER_SIZE);
    SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
    /* Longer than the bytes there: refused without reading them. */
    static const int32_t too_long[] = {1, 2, 1000, INT32_MAX};
    for (size_t i = 0; i < sizeof(too_long) / sizeof(too_long[0]); i++) {
        int32_t len = too_long[i] == INT32_MAX ? INT32_MAX : good + too_long[i];
        sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)len);
        SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
        sl_record_iter it;
        SL_FAIL(sl_record_iter_start(&it, p, total), SL_ECORRUPT);
        SL_EQ(sl_batch_total_size(p, total), (size_t)len + SL_BATCH_LOG_OVERHEAD);
    }
    /* One byte short of the real length: the CRC no longer matches. */
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)(good - 1));
    SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)good);
    SL_PASS(sl_batch_validate(p, total, &h));
    /* Fewer than 12 bytes: no size can be known. */
    for (size_t len = 0; len < SL_BATCH_LOG_OVERHEAD; len++)
        SL_EQ(sl_batch_total_size(p, len), 0);
    SL_EQ(sl_batch_total_size(p, SL_BATCH_LOG_OVERHEAD), total);
    free(p);
    sl_batch_builder_free(&b);
}

/* Sets lastOffsetDelta and recordsCount and re-signs, so only the count check can object. */
static void set_counts(uint8_t *p, size_t total, int32_t last_delta, int32_t count) {
    sl_be32_put(p + SL_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)last_delta);
    sl_be32_put(p + SL_BATCH_OFF_RECORDS_COUNT, (uint32_t)count);
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, total));
}

static void last_offset_delta_must_match_count(void) {
    sl_batch_builder b = {0};
    build_simple(&b, 3);
    uint8_t *p = b.buf.data;
    size_t total = b.buf.len;
    sl_batch_header h;
    set_counts(p, total, 3, 3);
    SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
    set_counts(p, total, 1, 3);
    SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
    set_counts(p, total, -1, 0); /* consistent, but a batch holds at least one record */
    SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
    set_counts(p, total, INT32_MAX, INT32_MIN);
    SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
    set_counts(p, total, -2, -1);
    SL_FAIL(sl_batch_validate(p, total, &h), SL_ECORRUPT);
    set_counts(p, total, 2, 3);
    SL_PASS(sl_batch_validate(p, total, &h));
    sl_batch_builder_free(&b);
}

static void truncated_input_at_every_length(void) {
    sl_batch_builder b = {0};
    static const sl_batch_header_kv hk[] = {{"a", 1, "b", 1}, {"c", 1, NULL, 0}};
    sl_batch_builder_reset(&b);
    for (int i = 0; i < 5; i++)
        SL_PASS(sl_batch_builder_add(&b, 10 + i, "key", 3, "some value", 10, hk, 2));
    sl_batch_builder_finish(&b);
    size_t total = b.buf.len;
    for (size_t len = 0; len < total; len++) {
        uint8_t *c = exact_copy(b.buf.data, len);
        sl_batch_header h;
        sl_record_iter it;
        SL_FAIL(sl_batch_validate(c, len, &h), SL_ECORRUPT);
        if (len < SL_BATCH_HEADER_SIZE)
            SL_FAIL(sl_batch_header_parse(c, len, &h), SL_ECORRUPT);
        else
            SL_PASS(sl_batch_header_parse(c, len, &h)); /* the header alone is whole */
        SL_FAIL(sl_record_iter_start(&it, c, len), SL_ECORRUPT);
        size_t ts = sl_batch_total_size(c, len);
        SL_TRUE(ts == 0 || ts == total);
        free(c);
    }
    /* The records cut short by a smaller batchLength (a producer's bug that the CRC would
     * catch): the iterator, which skips the CRC, stops with SL_ECORRUPT or reads fewer
     * records, and never leaves the batch. */
    for (size_t len = SL_BATCH_HEADER_SIZE; len <= total; len++) {
        uint8_t *c = exact_copy(b.buf.data, len);
        sl_be32_put(c + SL_BATCH_OFF_LENGTH, (uint32_t)(len - SL_BATCH_LOG_OVERHEAD));
        int n;
        int rc = drain(c, len, &n);
        if (len == total) {
            SL_EQ(rc, 0);
            SL_EQ(n, 5);
        } else {
            SL_EQ(rc, SL_ECORRUPT);
            SL_TRUE(n < 5);
        }
        free(c);
    }
    sl_batch_builder_free(&b);
}

static void compressed_batches_are_not_iterated(void) {
    sl_batch_builder b = {0};
    build_simple(&b, 2);
    for (int codec = 1; codec <= 4; codec++) {
        sl_be16_put(b.buf.data + SL_BATCH_OFF_ATTRIBUTES, (uint16_t)codec);
        sl_record_iter it;
        SL_FAIL(sl_record_iter_start(&it, b.buf.data, b.buf.len), SL_EUNSUPPORTED);
    }
    sl_batch_builder_free(&b);
}

static void log_append_time_reports_max_timestamp(void) {
    sl_batch_builder b = {0};
    build_simple(&b, 3);
    sl_be16_put(b.buf.data + SL_BATCH_OFF_ATTRIBUTES, SL_BATCH_ATTR_LOG_APPEND_TIME);
    sl_be64_put(b.buf.data + SL_BATCH_OFF_MAX_TIMESTAMP, 999999);
    sl_record_iter it;
    sl_record_view rv;
    SL_PASS(sl_record_iter_start(&it, b.buf.data, b.buf.len));
    for (int i = 0; i < 3; i++) {
        SL_EQ(sl_record_iter_next(&it, &rv), 1);
        SL_EQ(rv.timestamp, 999999);
    }
    sl_batch_builder_free(&b);
}

/* ---- malformed records ---- */

static int iterate_raw(const uint8_t *recs, size_t rlen, int32_t count, int *nread) {
    size_t total;
    uint8_t *p = wrap_records(recs, rlen, count, &total);
    sl_batch_header h;
    SL_PASS(sl_batch_validate(p, total, &h)); /* the header is fine; only records are bad */
    int rc = drain(p, total, nread);
    free(p);
    return rc;
}

static void iterator_refuses_malformed_records(void) {
    int n;
    /* A good record to start from: length 7; attributes, tsDelta 0, offsetDelta 0, null key,
     * value "x", no headers. */
    static const uint8_t good[] = {0x0e, 0x00, 0x00, 0x00, 0x01, 0x02, 'x', 0x00};
    SL_EQ(iterate_raw(good, sizeof(good), 1, &n), 0);
    SL_EQ(n, 1);

    struct bad {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    };
    static const struct bad cases[] = {
        {"record length past the end", {0x10, 0x00, 0x00, 0x00, 0x01, 0x02, 'x', 0x00}, 8},
        {"record length huge", {0xfe, 0xff, 0xff, 0xff, 0x0f, 0x00}, 6},
        {"record length zero", {0x00}, 1},
        {"record length negative", {0x01, 0x00}, 2},
        {"record length unterminated", {0x80, 0x80}, 2},
        {"no records at all", {0}, 0},
        {"key length past the record", {0x0e, 0x00, 0x00, 0x00, 0x0a, 0x02, 'x', 0x00}, 8},
        {"key length below -1", {0x0e, 0x00, 0x00, 0x00, 0x03, 0x02, 'x', 0x00}, 8},
        {"value length past the record", {0x0e, 0x00, 0x00, 0x00, 0x01, 0x06, 'x', 0x00}, 8},
        {"value length below -1", {0x0e, 0x00, 0x00, 0x00, 0x01, 0x05, 'x', 0x00}, 8},
        {"header count missing", {0x0c, 0x00, 0x00, 0x00, 0x01, 0x02, 'x', 0x00}, 8},
        {"header count negative", {0x0e, 0x00, 0x00, 0x00, 0x01, 0x02, 'x', 0x03}, 8},
        {"timestamp delta cut by the record end", {0x02, 0x00, 0x80, 0x00}, 4},
        {"offset delta cut by the record end", {0x04, 0x00, 0x00, 0x80, 0x00}, 5},
        {"key cut by the record end", {0x08, 0x00, 0x00, 0x00, 0x06, 'a', 'b', 'c'}, 8},
        {"timestamp delta longer than 10 bytes",
         {0x1a, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x01,
          0x01},
         16},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = iterate_raw(cases[i].bytes, cases[i].len, 1, &n);
        if (rc != SL_ECORRUPT)
            SL_TEST_FAIL_("%s: iterator returned %d after %d records", cases[i].what, rc, n);
        SL_EQ(n, 0);
    }
    /* More records announced than there are. */
    SL_EQ(iterate_raw(good, sizeof(good), 2, &n), SL_ECORRUPT);
    SL_EQ(n, 1);
}

static void header_walker_refuses_malformed_headers(void) {
    struct bad {
        const char *what;
        uint8_t bytes[8];
        size_t len;
    };
    static const struct bad cases[] = {
        {"null header key", {0x01, 0x00}, 2},
        {"key length past the end", {0x08, 'a', 0x00}, 3},
        {"value length past the end", {0x02, 'a', 0x08, 'b'}, 4},
        {"value length missing", {0x02, 'a'}, 2},
        {"value length below -1", {0x02, 'a', 0x03}, 3},
        {"unterminated varint", {0x80}, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *c = exact_copy(cases[i].bytes, cases[i].len);
        const uint8_t *pos = c, *k, *v;
        size_t kl, vl;
        int rc = sl_record_header_next(&pos, c + cases[i].len, &k, &kl, &v, &vl);
        if (rc != SL_ECORRUPT)
            SL_TEST_FAIL_("%s: walker returned %d", cases[i].what, rc);
        free(c);
    }
    /* A well-formed pair, then the end. */
    static const uint8_t ok[] = {0x02, 'a', 0x01, 0x00, 0x00};
    const uint8_t *pos = ok, *k, *v;
    size_t kl, vl;
    SL_EQ(sl_record_header_next(&pos, ok + sizeof(ok), &k, &kl, &v, &vl), 1);
    SL_EQ(kl, 1);
    SL_TRUE(v == NULL);
    SL_EQ(sl_record_header_next(&pos, ok + sizeof(ok), &k, &kl, &v, &vl), 1);
    SL_EQ(kl, 0); /* an empty key is not a null one */
    SL_TRUE(k != NULL);
    SL_EQ(vl, 0);
    SL_TRUE(v != NULL);
    SL_EQ(sl_record_header_next(&pos, ok + sizeof(ok), &k, &kl, &v, &vl), 0);
}

static void extreme_deltas_wrap_without_overflow(void) {
    /* A CRC-valid batch can carry any base and delta; the sums must not be undefined
     * behaviour (UBSan stops this test if they are). Record: tsDelta INT64_MAX, offsetDelta
     * INT64_MIN, null key and value, no headers. */
    uint8_t recs[32];
    size_t n = 1;
    recs[n++] = 0; /* attributes */
    n += sl_varint_put(recs + n, INT64_MAX);
    n += sl_varint_put(recs + n, INT64_MIN);
    n += sl_varint_put(recs + n, -1);
    n += sl_varint_put(recs + n, -1);
    n += sl_varint_put(recs + n, 0);
    recs[0] = (uint8_t)((n - 1) * 2); /* zigzag length; fits one byte */
    size_t total;
    uint8_t *p = wrap_records(recs, n, 1, &total);
    sl_batch_set_base_offset(p, INT64_MAX);
    sl_be64_put(p + SL_BATCH_OFF_BASE_TIMESTAMP, (uint64_t)INT64_MAX);
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, total));
    sl_batch_header h;
    SL_PASS(sl_batch_validate(p, total, &h));
    sl_record_iter it;
    sl_record_view rv;
    SL_PASS(sl_record_iter_start(&it, p, total));
    SL_EQ(sl_record_iter_next(&it, &rv), 1);
    SL_EQ(rv.offset, -1);    /* INT64_MAX + INT64_MIN */
    SL_EQ(rv.timestamp, -2); /* INT64_MAX + INT64_MAX, wrapped */
    SL_EQ(sl_record_iter_next(&it, &rv), 0);
    free(p);
}

static void iterator_survives_random_record_bytes(void) {
    /* Random record regions inside a well-formed header: any answer is fine as long as it is
     * one of the documented ones and ASan sees no stray read. */
    for (int round = 0; round < 20000; round++) {
        uint8_t recs[64];
        size_t rlen = (size_t)(rng() % sizeof(recs));
        for (size_t i = 0; i < rlen; i++) {
            uint64_t r = rng();
            /* Mostly small varints, so records are often nearly valid and get deep. */
            recs[i] = (r & 3) ? (uint8_t)((r >> 8) % 24) : (uint8_t)(r >> 8);
        }
        int n;
        int rc = iterate_raw(recs, rlen, 1 + (int32_t)(rng() % 4), &n);
        SL_TRUE(rc == 0 || rc == SL_ECORRUPT);
    }
}

SL_TESTS({"crc32c known vectors", crc32c_known_vector},
         {"crc32c matches a bitwise reference at every length and alignment",
          crc32c_matches_reference_at_every_length_and_alignment},
         {"varint round trips incl. INT64_MIN/MAX, refusing every truncation", varint_round_trips},
         {"varint known encodings", varint_known_encodings},
         {"varint refuses more than 10 bytes", varint_ten_byte_limit},
         {"builder round trip: keys, values, nulls, empties, headers, timestamps",
          builder_round_trip},
         {"builder with many records of varied sizes", builder_many_records},
         {"builder output is byte-identical to a hand-made Kafka batch",
          builder_matches_hand_made_kafka_batch},
         {"crc covers every byte from attributes on, not offset or epoch",
          crc_covers_every_byte_after_it},
         {"wrong magic is refused", wrong_magic_is_refused},
         {"batchLength too short or too long is refused", batch_length_too_short_or_too_long},
         {"lastOffsetDelta must be recordsCount - 1", last_offset_delta_must_match_count},
         {"truncated input at every length is refused in bounds", truncated_input_at_every_length},
         {"compressed batches are not iterated", compressed_batches_are_not_iterated},
         {"LogAppendTime records report maxTimestamp", log_append_time_reports_max_timestamp},
         {"iterator refuses malformed records", iterator_refuses_malformed_records},
         {"header walker refuses malformed headers", header_walker_refuses_malformed_headers},
         {"extreme deltas wrap without overflow", extreme_deltas_wrap_without_overflow},
         {"iterator survives random record bytes", iterator_survives_random_record_bytes})

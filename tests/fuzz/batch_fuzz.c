/* libFuzzer target for the RecordBatch v2 codec: whatever the bytes, sl_batch_validate,
 * sl_batch_header_parse, sl_batch_total_size, the record iterator, the header walker and the
 * control-record reader must answer with one of their documented results and never read
 * outside the input; the transaction index takes any header it is given.
 *
 * The iterator is also run on batches that fail the CRC (straight after the header parse),
 * since a CRC check in front would keep the fuzzer from ever reaching the record decoder.
 *
 * Seeds: tests/fuzz/corpus/batch/. Built with -DSL_BATCH_FUZZ_SEEDS (no libFuzzer) this file
 * is instead a program that writes them: `batch_seeds <dir>`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "log/batch.h"
#include "log/txn_index.h"
#include "sluice/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Walks every record and header; checks that every pointer handed out lies inside the batch. */
static void walk_records(const uint8_t *p, size_t len) {
    sl_record_iter it;
    int rc = sl_record_iter_start(&it, p, len);
    CHECK(rc == 0 || rc == SL_ECORRUPT || rc == SL_EUNSUPPORTED);
    if (rc)
        return;
    const uint8_t *end = p + len;
    sl_record_view rv;
    int32_t n = 0;
    while ((rc = sl_record_iter_next(&it, &rv)) == 1) {
        n++;
        CHECK(rv.key == NULL || (rv.key >= p && rv.key_len <= (size_t)(end - rv.key)));
        CHECK(rv.value == NULL || (rv.value >= p && rv.value_len <= (size_t)(end - rv.value)));
        CHECK(rv.headers >= p && rv.headers <= rv.headers_end && rv.headers_end <= end);
        const uint8_t *hp = rv.headers, *k, *v;
        size_t kl, vl;
        int hr;
        while ((hr = sl_record_header_next(&hp, rv.headers_end, &k, &kl, &v, &vl)) == 1) {
            CHECK(k != NULL && k >= rv.headers && kl <= (size_t)(rv.headers_end - k));
            CHECK(v == NULL || (v >= rv.headers && vl <= (size_t)(rv.headers_end - v)));
            CHECK(hp <= rv.headers_end);
        }
        CHECK(hr == 0 || hr == SL_ECORRUPT);
    }
    CHECK(rc == 0 || rc == SL_ECORRUPT);
    /* Never more records than announced; a negative count means none. */
    CHECK(n <= (it.hdr.records_count > 0 ? it.hdr.records_count : 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exact-size copy: libFuzzer's buffer may have slack that would hide an over-read. */
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL)
        return 0;
    if (size)
        memcpy(p, data, size);

    sl_batch_header h;
    size_t total = sl_batch_total_size(p, size);
    CHECK(total == 0 || total >= SL_BATCH_HEADER_SIZE);

    int vrc = sl_batch_validate(p, size, &h);
    CHECK(vrc == 0 || vrc == SL_ECORRUPT);
    if (vrc == 0) {
        CHECK(h.magic == SL_BATCH_MAGIC && h.records_count >= 1);
        CHECK(total == (size_t)h.length + SL_BATCH_LOG_OVERHEAD && total <= size);
        CHECK(sl_batch_compute_crc(p, total) == h.crc);
    }

    int prc = sl_batch_header_parse(p, size, &h);
    CHECK(prc == 0 || prc == SL_ECORRUPT);
    if (prc == 0) {
        CHECK(total == (size_t)h.length + SL_BATCH_LOG_OVERHEAD);
        /* The records as given, CRC or not; then as the batch says it ends, when that is
         * shorter than the input (the iterator must keep within batchLength). */
        walk_records(p, size);
        if (total < size)
            walk_records(p, total);
        /* As recovery reads a marker from disk, then notes it. */
        int type = sl_batch_control_type(p, total < size ? total : size);
        CHECK(type == SL_CONTROL_ABORT || type == SL_CONTROL_COMMIT || type == SL_ECORRUPT);
        /* The index, fed the header as the data batch that opens a transaction and then as
         * its marker, must open and then close it, and keep an abort. */
        sl_txn_index x;
        sl_txn_index_init(&x);
        bool txn = h.producer_id >= 0;
        sl_batch_header data_h = h;
        data_h.attributes = (int16_t)((h.attributes | SL_BATCH_ATTR_TRANSACTIONAL) &
                                      ~SL_BATCH_ATTR_CONTROL);
        CHECK(sl_txn_index_note(&x, &data_h, 0) == 0);
        CHECK(x.nopen == (txn ? 1u : 0u));
        CHECK(sl_txn_index_first_unstable(&x, INT64_MAX) == (txn ? h.base_offset : INT64_MAX));
        if (type >= 0) {
            sl_batch_header marker_h = data_h;
            marker_h.attributes |= SL_BATCH_ATTR_CONTROL;
            CHECK(sl_txn_index_note(&x, &marker_h, type) == 0);
            CHECK(x.nopen == 0);
            CHECK(x.naborted == (txn && type == SL_CONTROL_ABORT ? 1u : 0u));
        }
        sl_txn_index_free(&x);
    }

    /* A stream of batches, as a produce request or a fetch answer holds them. */
    size_t pos = 0;
    while (pos < size) {
        size_t t = sl_batch_total_size(p + pos, size - pos);
        if (t == 0 || t > size - pos)
            break;
        if (sl_batch_validate(p + pos, size - pos, &h) == 0)
            walk_records(p + pos, t);
        pos += t;
    }
    free(p);
    return 0;
}

#ifdef SL_BATCH_FUZZ_SEEDS
#include <stdio.h>

static void put_seed(const char *dir, const char *name, const uint8_t *p, size_t len) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    static const sl_batch_header_kv hdrs[] = {{"trace", 5, "abc", 3}, {"n", 1, NULL, 0}};
    sl_batch_builder b = {0};
    sl_buf two = SL_BUF_INIT;

    sl_batch_builder_reset(&b); /* one plain record */
    sl_batch_builder_add(&b, 1700000000000, "k", 1, "hello", 5, NULL, 0);
    sl_batch_builder_finish(&b);
    put_seed(argv[1], "one_record", b.buf.data, b.buf.len);
    sl_buf_append(&two, b.buf.data, b.buf.len);

    sl_batch_builder_reset(&b); /* nulls, empties, headers, timestamps out of order */
    sl_batch_builder_add(&b, 1700000000000, "user-1", 6, "v", 1, hdrs, 2);
    sl_batch_builder_add(&b, 1699999999000, NULL, 0, "", 0, hdrs, 1);
    sl_batch_builder_add(&b, 1700000005000, "", 0, NULL, 0, NULL, 0);
    sl_batch_builder_finish(&b);
    sl_batch_set_base_offset(b.buf.data, 1234);
    sl_batch_set_leader_epoch(b.buf.data, 2);
    put_seed(argv[1], "mixed_records", b.buf.data, b.buf.len);
    sl_buf_append(&two, b.buf.data, b.buf.len);
    put_seed(argv[1], "two_batches", two.data, two.len);

    /* LogAppendTime, re-signed as the broker does. */
    sl_be16_put(b.buf.data + SL_BATCH_OFF_ATTRIBUTES, SL_BATCH_ATTR_LOG_APPEND_TIME);
    sl_be64_put(b.buf.data + SL_BATCH_OFF_MAX_TIMESTAMP, 1800000000000);
    sl_be32_put(b.buf.data + SL_BATCH_OFF_CRC, sl_batch_compute_crc(b.buf.data, b.buf.len));
    put_seed(argv[1], "log_append_time", b.buf.data, b.buf.len);

    sl_batch_builder_reset(&b); /* long enough for two-byte record lengths */
    static uint8_t big[300];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 4; i++)
        sl_batch_builder_add(&b, 1000 + i, "key", 3, big, sizeof(big) / (size_t)(i + 1), NULL, 0);
    sl_batch_builder_finish(&b);
    put_seed(argv[1], "long_records", b.buf.data, b.buf.len);

    /* A transaction's commit marker, as the coordinator writes it. */
    sl_batch_build_control(&b, 42, 3, SL_CONTROL_COMMIT, 1700000000000);
    put_seed(argv[1], "commit_marker", b.buf.data, b.buf.len);

    sl_buf_free(&two);
    sl_batch_builder_free(&b);
    return 0;
}
#endif

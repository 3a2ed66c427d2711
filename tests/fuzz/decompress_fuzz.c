/* libFuzzer target for record-batch decompression. The first byte picks the codec (bits 0-2,
 * so 5..7 must be refused) and a record count (bits 3-7); the rest is the compressed stream.
 * It goes to sl_decompress with a 4 MiB bound, then, wrapped in a RecordBatch with a good CRC,
 * to sl_record_iter_start_decompress and the record walk. Whatever the bytes: only documented
 * results, output within the bound, no more buffer than about the bound, nothing read outside
 * the input, and what decodes re-encodes and decodes to the same bytes.
 *
 * Seeds: tests/fuzz/corpus/decompress/. Built with -DSL_DECOMPRESS_FUZZ_SEEDS (no libFuzzer)
 * this file is instead a program that writes them: `decompress_seeds <dir>`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "log/batch.h"
#include "log/compression.h"
#include "sluice/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define MAX_OUT ((size_t)4 << 20)
/* The output buffer's capacity is a power of two at least the bytes written, which stop at
 * MAX_OUT + 1: so never more than this. */
#define MAX_CAP (2 * MAX_OUT + 2)
/* Re-encoding is checked on outputs up to this size, to keep runs fast. */
#define RECHECK_MAX 65536

/* Compresses 'p' again and checks that it decodes back to itself. */
static void recheck(enum sl_codec codec, const uint8_t *p, size_t len) {
    sl_buf c = SL_BUF_INIT, d = SL_BUF_INIT;
    CHECK(sl_compress(codec, p, len, &c) == 0);
    CHECK(sl_decompress(codec, c.data, c.len, len, &d) == 0);
    CHECK(d.len == len && (len == 0 || memcmp(d.data, p, len) == 0));
    sl_buf_free(&c);
    sl_buf_free(&d);
}

/* Walks the records of a batch whose records region is 'body', as a consumer would. */
static void walk_batch(enum sl_codec codec, int32_t count, const uint8_t *body, size_t len) {
    size_t total = SL_BATCH_HEADER_SIZE + len;
    uint8_t *p = calloc(1, total);
    if (p == NULL)
        return;
    if (len)
        memcpy(p + SL_BATCH_HEADER_SIZE, body, len);
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)(total - SL_BATCH_LOG_OVERHEAD));
    p[SL_BATCH_OFF_MAGIC] = SL_BATCH_MAGIC;
    sl_be16_put(p + SL_BATCH_OFF_ATTRIBUTES, (uint16_t)codec);
    sl_be32_put(p + SL_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)(count - 1));
    sl_be32_put(p + SL_BATCH_OFF_RECORDS_COUNT, (uint32_t)count);
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, total));

    sl_batch_header h;
    int vrc = sl_batch_validate(p, total, &h);
    CHECK(vrc == 0 || (vrc == SL_ECORRUPT && count < 1));
    CHECK(sl_batch_codec(p) == codec);

    sl_buf scratch = SL_BUF_INIT;
    sl_record_iter it;
    int rc = sl_record_iter_start_decompress(&it, p, total, &scratch, MAX_OUT);
    if (codec > SL_CODEC_MAX)
        CHECK(rc == SL_EUNSUPPORTED);
    else
        CHECK(rc == 0 || rc == SL_ECORRUPT);
    CHECK(scratch.cap <= MAX_CAP);
    if (rc == 0) {
        /* Views point into the batch (none) or into scratch (compressed). */
        const uint8_t *lo = codec == SL_CODEC_NONE ? p : scratch.data;
        const uint8_t *hi = codec == SL_CODEC_NONE ? p + total : scratch.data + scratch.len;
        sl_record_view rv;
        int32_t n = 0;
        while ((rc = sl_record_iter_next(&it, &rv)) == 1) {
            n++;
            CHECK(rv.key == NULL || (rv.key >= lo && rv.key_len <= (size_t)(hi - rv.key)));
            CHECK(rv.value == NULL || (rv.value >= lo && rv.value_len <= (size_t)(hi - rv.value)));
            CHECK(rv.headers >= lo && rv.headers <= rv.headers_end && rv.headers_end <= hi);
            const uint8_t *hp = rv.headers, *k, *v;
            size_t kl, vl;
            int hr;
            while ((hr = sl_record_header_next(&hp, rv.headers_end, &k, &kl, &v, &vl)) == 1) {
                CHECK(k != NULL && k >= lo && kl <= (size_t)(rv.headers_end - k));
                CHECK(v == NULL || (v >= lo && vl <= (size_t)(rv.headers_end - v)));
            }
            CHECK(hr == 0 || hr == SL_ECORRUPT);
        }
        CHECK(rc == 0 || rc == SL_ECORRUPT);
        CHECK(n <= count);
    }
    sl_buf_free(&scratch);
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    enum sl_codec codec = (enum sl_codec)(data[0] & 7);
    int32_t count = data[0] >> 3;
    size_t len = size - 1;
    /* An exact-size copy: libFuzzer's buffer may have slack that would hide an over-read. */
    uint8_t *in = malloc(len ? len : 1);
    if (in == NULL)
        return 0;
    if (len)
        memcpy(in, data + 1, len);

    sl_buf out = SL_BUF_INIT;
    int rc = sl_decompress(codec, in, len, MAX_OUT, &out);
    if (codec > SL_CODEC_MAX) {
        CHECK(rc == SL_EINVAL && out.len == 0);
    } else {
        CHECK(rc == 0 || rc == SL_ECORRUPT);
        CHECK(out.cap <= MAX_CAP);
        if (rc)
            CHECK(out.len == 0);
        else
            CHECK(out.len <= MAX_OUT);
        if (rc == 0 && out.len <= RECHECK_MAX)
            recheck(codec, out.data, out.len);
    }
    sl_buf_free(&out);

    walk_batch(codec, count, in, len);
    free(in);
    return 0;
}

#ifdef SL_DECOMPRESS_FUZZ_SEEDS
#include <stdio.h>

#include <lz4frame.h>
#include <zstd.h>

static void put_seed(const char *dir, const char *name, uint8_t first, const uint8_t *p,
                     size_t len) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fputc(first, f) == EOF || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    /* The records region of a small batch: what real streams hold. */
    static const sl_batch_header_kv hdrs[] = {{"trace", 5, "abc", 3}, {"n", 1, NULL, 0}};
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    sl_batch_builder_add(&b, 1700000000000, "user-1", 6, "{\"n\":1,\"ok\":true}", 17, hdrs, 2);
    sl_batch_builder_add(&b, 1699999999000, NULL, 0, "", 0, hdrs, 1);
    sl_batch_builder_add(&b, 1700000005000, "user-1", 6, "{\"n\":1,\"ok\":true}", 17, NULL, 0);
    const int32_t count = 3;
    const uint8_t *recs = b.buf.data + SL_BATCH_HEADER_SIZE;
    size_t rlen = b.buf.len - SL_BATCH_HEADER_SIZE;

    static const char *const names[] = {"none", "gzip", "snappy", "lz4", "zstd"};
    sl_buf c = SL_BUF_INIT;
    for (int codec = 0; codec <= SL_CODEC_MAX; codec++) {
        sl_buf_reset(&c);
        if (sl_compress((enum sl_codec)codec, recs, rlen, &c) != 0)
            return 1;
        put_seed(argv[1], names[codec], (uint8_t)(codec | count << 3), c.data, c.len);
    }

    /* Xerial-framed snappy (kafka-python, the Java client): two chunks. */
    static const uint8_t magic[16] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0,
                                      0,    0,   0,   1,   0,   0,   0,   1};
    sl_buf x = SL_BUF_INIT;
    sl_buf_append(&x, magic, sizeof(magic));
    size_t half = rlen / 2;
    for (int i = 0; i < 2; i++) {
        size_t at = x.len;
        uint8_t be[4] = {0};
        sl_buf_append(&x, be, 4);
        if (sl_compress(SL_CODEC_SNAPPY, recs + (i ? half : 0), i ? rlen - half : half, &x))
            return 1;
        sl_be32_put(x.data + at, (uint32_t)(x.len - at - 4));
    }
    put_seed(argv[1], "snappy_xerial", (uint8_t)(SL_CODEC_SNAPPY | count << 3), x.data, x.len);

    /* zstd as the Java client writes it (no content size, with a checksum), and LZ4 as the
     * lz4 tool does (linked blocks, checksums, content size): other paths of the decoders. */
    uint8_t tmp[1024];
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(zc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1);
    size_t n = ZSTD_compress2(zc, tmp, sizeof(tmp), recs, rlen);
    ZSTD_freeCCtx(zc);
    if (ZSTD_isError(n))
        return 1;
    put_seed(argv[1], "zstd_no_size", (uint8_t)(SL_CODEC_ZSTD | count << 3), tmp, n);
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
    prefs.frameInfo.contentSize = rlen;
    n = LZ4F_compressFrame(tmp, sizeof(tmp), recs, rlen, &prefs);
    if (LZ4F_isError(n))
        return 1;
    put_seed(argv[1], "lz4_checksums", (uint8_t)(SL_CODEC_LZ4 | count << 3), tmp, n);

    sl_buf_free(&x);
    sl_buf_free(&c);
    sl_batch_builder_free(&b);
    return 0;
}
#endif

/* Record-batch compression: the four codecs as raw streams (round trips, framing as other
 * clients write it, bounds, refusals) and as RecordBatch v2 records regions. Runs under ASan in
 * CI, so every decoder input is an exact-size heap copy: one byte read too far is reported. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader, to check the test's own frame */
#include <zstd.h>

#include "base/buf.h"
#include "log/batch.h"
#include "log/compression.h"
#include "sl_test.h"

/* ---- helpers ---- */

static const enum sl_codec all_codecs[] = {SL_CODEC_NONE, SL_CODEC_GZIP, SL_CODEC_SNAPPY,
                                           SL_CODEC_LZ4, SL_CODEC_ZSTD};
static const enum sl_codec real_codecs[] = {SL_CODEC_GZIP, SL_CODEC_SNAPPY, SL_CODEC_LZ4,
                                            SL_CODEC_ZSTD};
#define NCODECS(a) (sizeof(a) / sizeof((a)[0]))
#define MIB ((size_t)1 << 20)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void) { /* xorshift64*: deterministic, so failures reproduce */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static uint8_t *xmalloc(size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    SL_TRUE(p != NULL);
    return p;
}

/* A heap copy of exactly 'len' bytes. */
static uint8_t *exact_copy(const uint8_t *p, size_t len) {
    uint8_t *c = xmalloc(len);
    if (len)
        memcpy(c, p, len);
    return c;
}

static uint8_t *random_bytes(size_t len) {
    uint8_t *p = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)rng();
    return p;
}

/* One short line over and over: compresses extremely well. */
static uint8_t *repetitive_bytes(size_t len) {
    static const char line[] = "sensor=42 temperature=21.5 status=ok\n";
    uint8_t *p = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)line[i % (sizeof(line) - 1)];
    return p;
}

/* Words drawn at random from a small vocabulary: compressible, but not trivially. */
static uint8_t *texty_bytes(size_t len) {
    static const char *const words[] = {"alpha ", "beta ", "gamma ", "delta\n", "epsilon ",
                                        "zeta ",  "eta ",  "theta,", "iota ",   "kappa "};
    uint8_t *p = xmalloc(len);
    size_t i = 0;
    while (i < len) {
        const char *w = words[rng() % 10];
        for (size_t k = 0; w[k] && i < len; k++)
            p[i++] = (uint8_t)w[k];
    }
    return p;
}

/* Compresses with sl_compress into a fresh exact-size heap block. */
static uint8_t *compress_exact(enum sl_codec codec, const uint8_t *in, size_t len, size_t *clen) {
    sl_buf c = SL_BUF_INIT;
    SL_PASS(sl_compress(codec, in, len, &c));
    uint8_t *p = exact_copy(c.data, c.len);
    *clen = c.len;
    sl_buf_free(&c);
    return p;
}

/* sl_decompress of in[0 .. len) from an exact-size copy; the output buffer is freed. */
static int decompress_status(enum sl_codec codec, const uint8_t *in, size_t len, size_t max_out) {
    uint8_t *p = exact_copy(in, len);
    sl_buf d = SL_BUF_INIT;
    int rc = sl_decompress(codec, p, len, max_out, &d);
    if (rc)
        SL_EQ(d.len, 0); /* nothing appended on failure */
    sl_buf_free(&d);
    free(p);
    return rc;
}

/* ---- names ---- */

static void codec_names_parse_and_print(void) {
    static const char *const names[] = {"none", "gzip", "snappy", "lz4", "zstd"};
    for (int i = 0; i < 5; i++) {
        enum sl_codec c = SL_CODEC_ZSTD;
        SL_PASS(sl_codec_parse(names[i], &c));
        SL_EQ(c, i);
        SL_STREQ(sl_codec_name(c), names[i]);
    }
    enum sl_codec c = SL_CODEC_GZIP;
    SL_FAIL(sl_codec_parse("GZIP", &c), SL_EINVAL);
    SL_FAIL(sl_codec_parse("lz4hc", &c), SL_EINVAL);
    SL_FAIL(sl_codec_parse("", &c), SL_EINVAL);
    SL_FAIL(sl_codec_parse("producer", &c), SL_EINVAL);
    SL_FAIL(sl_codec_parse(NULL, &c), SL_EINVAL);
    SL_EQ(c, SL_CODEC_GZIP); /* untouched on failure */
    for (int i = 5; i < 8; i++)
        SL_STREQ(sl_codec_name((enum sl_codec)i), "unknown");
}

static void unknown_codecs_are_refused(void) {
    uint8_t data[16] = {1, 2, 3};
    sl_buf out = SL_BUF_INIT;
    sl_batch_builder b = {0};
    for (int i = 5; i < 8; i++) {
        SL_FAIL(sl_compress((enum sl_codec)i, data, sizeof(data), &out), SL_EINVAL);
        SL_FAIL(sl_decompress((enum sl_codec)i, data, sizeof(data), MIB, &out), SL_EINVAL);
        SL_EQ(out.len, 0);
        sl_batch_builder_reset(&b);
        SL_PASS(sl_batch_builder_add(&b, 1, "k", 1, "v", 1, NULL, 0));
        SL_FAIL(sl_batch_builder_finish_codec(&b, (enum sl_codec)i, &out), SL_EINVAL);
    }
    sl_batch_builder_free(&b);
    sl_buf_free(&out);
}

/* ---- round trips ---- */

/* Compresses and decompresses 'data' with 'codec', each time appending after bytes already in
 * the buffer; checks the max_out boundary exactly. */
static void round_trip(enum sl_codec codec, const uint8_t *data, size_t len) {
    sl_buf c = SL_BUF_INIT, d = SL_BUF_INIT;
    SL_PASS(sl_buf_append(&c, "pre", 3));
    SL_PASS(sl_compress(codec, data, len, &c));
    SL_TRUE(c.len > 3 || (codec == SL_CODEC_NONE && len == 0));
    SL_TRUE(memcmp(c.data, "pre", 3) == 0);
    size_t zlen = c.len - 3;
    uint8_t *z = exact_copy(c.data + 3, zlen);

    SL_PASS(sl_buf_append(&d, "xy", 2));
    SL_PASS(sl_decompress(codec, z, zlen, len, &d)); /* max_out == the size: accepted */
    SL_EQ(d.len, 2 + len);
    SL_TRUE(memcmp(d.data, "xy", 2) == 0);
    SL_TRUE(len == 0 || memcmp(d.data + 2, data, len) == 0);
    if (len > 0) { /* one byte less: refused, and nothing appended */
        SL_FAIL(sl_decompress(codec, z, zlen, len - 1, &d), SL_ECORRUPT);
        SL_EQ(d.len, 2 + len);
    }
    free(z);
    sl_buf_free(&c);
    sl_buf_free(&d);
}

static void round_trips_every_codec(void) {
    uint8_t *rnd = random_bytes(MIB), *rep = repetitive_bytes(MIB), *txt = texty_bytes(MIB);
    for (size_t i = 0; i < NCODECS(all_codecs); i++) {
        enum sl_codec codec = all_codecs[i];
        fprintf(stderr, "   %s\n", sl_codec_name(codec));
        round_trip(codec, NULL, 0);
        round_trip(codec, (const uint8_t *)"a", 1);
        round_trip(codec, (const uint8_t *)"hello, hello, hello", 19);
        round_trip(codec, rnd, MIB);
        round_trip(codec, rep, MIB);
        round_trip(codec, txt, MIB);
        round_trip(codec, txt, 65536 + 17); /* just over one LZ4 block */
    }
    free(rnd);
    free(rep);
    free(txt);
}

/* What other clients read: the framing on the wire is the one each library writes. */
static void output_is_framed_as_kafka_clients_expect(void) {
    uint8_t *txt = texty_bytes(200000);
    size_t n;
    uint8_t *z;

    /* gzip: a gzip member (1f 8b, deflate) that zlib's own gzip reader accepts. */
    z = compress_exact(SL_CODEC_GZIP, txt, 200000, &n);
    SL_TRUE(z[0] == 0x1f && z[1] == 0x8b && z[2] == 8);
    {
        uint8_t *back = xmalloc(200000);
        z_stream s;
        memset(&s, 0, sizeof(s));
        SL_EQ(inflateInit2(&s, 16 + MAX_WBITS), Z_OK);
        s.next_in = z;
        s.avail_in = (uInt)n;
        s.next_out = back;
        s.avail_out = 200000;
        SL_EQ(inflate(&s, Z_FINISH), Z_STREAM_END);
        SL_EQ(s.total_out, 200000);
        SL_TRUE(memcmp(back, txt, 200000) == 0);
        inflateEnd(&s);
        free(back);
    }
    free(z);

    /* snappy: raw (no xerial header), as librdkafka writes; the C API reads it directly. */
    z = compress_exact(SL_CODEC_SNAPPY, txt, 200000, &n);
    SL_TRUE(z[0] != 0x82);
    {
        size_t ulen = 0;
        SL_EQ(snappy_uncompressed_length((const char *)z, n, &ulen), SNAPPY_OK);
        SL_EQ(ulen, 200000);
        char *back = (char *)xmalloc(ulen);
        SL_EQ(snappy_uncompress((const char *)z, n, back, &ulen), SNAPPY_OK);
        SL_TRUE(memcmp(back, txt, 200000) == 0);
        free(back);
    }
    free(z);

    /* lz4: a frame (magic 04 22 4d 18), FLG version 01 with block independence set, which the
     * Java client's reader needs; liblz4's frame reader takes it. */
    z = compress_exact(SL_CODEC_LZ4, txt, 200000, &n);
    SL_TRUE(z[0] == 0x04 && z[1] == 0x22 && z[2] == 0x4d && z[3] == 0x18);
    SL_EQ(z[4] >> 6, 1);
    SL_TRUE(z[4] & 0x20);
    {
        LZ4F_dctx *d;
        SL_TRUE(!LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)));
        uint8_t *back = xmalloc(200000);
        size_t dst = 200000, src = n;
        SL_EQ(LZ4F_decompress(d, back, &dst, z, &src, NULL), 0);
        SL_EQ(dst, 200000);
        SL_EQ(src, n);
        SL_TRUE(memcmp(back, txt, 200000) == 0);
        LZ4F_freeDecompressionContext(d);
        free(back);
    }
    free(z);

    /* zstd: a frame (magic 28 b5 2f fd) that the one-shot API decodes. */
    z = compress_exact(SL_CODEC_ZSTD, txt, 200000, &n);
    SL_TRUE(z[0] == 0x28 && z[1] == 0xb5 && z[2] == 0x2f && z[3] == 0xfd);
    {
        uint8_t *back = xmalloc(200000);
        SL_EQ(ZSTD_decompress(back, 200000, z, n), 200000);
        SL_TRUE(memcmp(back, txt, 200000) == 0);
        free(back);
    }
    free(z);
    free(txt);
}

/* ---- streams as other writers make them ---- */

/* Xerial framing, built here by hand from raw chunks as the Java snappy library writes it:
 * magic, version 1, compatible version 1, then [u32 BE length][raw snappy] per 32 KiB. */
static uint8_t *xerial_frame(const uint8_t *data, size_t len, size_t chunk, size_t *out_len) {
    static const uint8_t magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
    sl_buf x = SL_BUF_INIT;
    uint8_t be[4];
    SL_PASS(sl_buf_append(&x, magic, 8));
    sl_be32_put(be, 1);
    SL_PASS(sl_buf_append(&x, be, 4));
    SL_PASS(sl_buf_append(&x, be, 4));
    for (size_t pos = 0; pos < len; pos += chunk) {
        size_t k = len - pos < chunk ? len - pos : chunk;
        size_t at = x.len;
        SL_PASS(sl_buf_append(&x, be, 4)); /* placeholder for the length */
        SL_PASS(sl_compress(SL_CODEC_SNAPPY, data + pos, k, &x));
        sl_be32_put(x.data + at, (uint32_t)(x.len - at - 4));
    }
    uint8_t *p = exact_copy(x.data, x.len);
    *out_len = x.len;
    sl_buf_free(&x);
    return p;
}

static void xerial_snappy_is_read(void) {
    size_t len = 300000, n;
    uint8_t *txt = texty_bytes(len);
    uint8_t *x = xerial_frame(txt, len, 32768, &n);
    sl_buf d = SL_BUF_INIT;
    SL_PASS(sl_decompress(SL_CODEC_SNAPPY, x, n, len, &d));
    SL_EQ(d.len, len);
    SL_TRUE(memcmp(d.data, txt, len) == 0);
    /* The bound holds across chunks: one byte less is refused. */
    SL_FAIL(sl_decompress(SL_CODEC_SNAPPY, x, n, len - 1, &d), SL_ECORRUPT);
    SL_EQ(d.len, len);

    /* A length prefix cut short, or pointing past the end, is refused. */
    SL_FAIL(decompress_status(SL_CODEC_SNAPPY, x, n - 1, len), SL_ECORRUPT);
    SL_FAIL(decompress_status(SL_CODEC_SNAPPY, x, 16 + 3, len), SL_ECORRUPT);
    uint8_t *bad = exact_copy(x, n);
    sl_be32_put(bad + 16, (uint32_t)n); /* first chunk longer than the stream */
    SL_FAIL(decompress_status(SL_CODEC_SNAPPY, bad, n, len), SL_ECORRUPT);
    sl_be32_put(bad + 16, 0); /* an empty chunk is not a snappy block */
    SL_FAIL(decompress_status(SL_CODEC_SNAPPY, bad, n, len), SL_ECORRUPT);
    free(bad);

    /* The header alone is an empty stream. */
    sl_buf_reset(&d);
    SL_PASS(sl_decompress(SL_CODEC_SNAPPY, x, 16, len, &d));
    SL_EQ(d.len, 0);

    /* One chunk holding everything (kafka-python writes 32 KiB chunks; others differ). */
    free(x);
    x = xerial_frame(txt, len, len, &n);
    sl_buf_reset(&d);
    SL_PASS(sl_decompress(SL_CODEC_SNAPPY, x, n, len, &d));
    SL_EQ(d.len, len);
    SL_TRUE(memcmp(d.data, txt, len) == 0);
    free(x);
    sl_buf_free(&d);
    free(txt);
}

/* A zstd frame as zstd-jni's output stream (the Java client) writes it: no content size. */
static uint8_t *zstd_without_size(const uint8_t *data, size_t len, size_t *out_len) {
    ZSTD_CCtx *c = ZSTD_createCCtx();
    SL_TRUE(c != NULL);
    SL_TRUE(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0)));
    SL_TRUE(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)));
    size_t cap = ZSTD_compressBound(len);
    uint8_t *tmp = xmalloc(cap);
    size_t n = ZSTD_compress2(c, tmp, cap, data, len);
    SL_TRUE(!ZSTD_isError(n));
    ZSTD_freeCCtx(c);
    SL_EQ(ZSTD_getFrameContentSize(tmp, n), ZSTD_CONTENTSIZE_UNKNOWN);
    uint8_t *p = exact_copy(tmp, n);
    free(tmp);
    *out_len = n;
    return p;
}

/* An LZ4 frame as the lz4 tool writes it: linked blocks, content size and checksum. */
static uint8_t *lz4_linked_with_checksum(const uint8_t *data, size_t len, size_t *out_len) {
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    prefs.frameInfo.blockMode = LZ4F_blockLinked;
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
    prefs.frameInfo.contentSize = len;
    size_t cap = LZ4F_compressFrameBound(len, &prefs);
    uint8_t *tmp = xmalloc(cap);
    size_t n = LZ4F_compressFrame(tmp, cap, data, len, &prefs);
    SL_TRUE(!LZ4F_isError(n));
    uint8_t *p = exact_copy(tmp, n);
    free(tmp);
    *out_len = n;
    return p;
}

static void other_writers_streams_are_read(void) {
    size_t len = 300000, n;
    uint8_t *txt = texty_bytes(len);
    sl_buf d = SL_BUF_INIT;

    uint8_t *z = zstd_without_size(txt, len, &n);
    SL_PASS(sl_decompress(SL_CODEC_ZSTD, z, n, len, &d));
    SL_EQ(d.len, len);
    SL_TRUE(memcmp(d.data, txt, len) == 0);
    SL_FAIL(decompress_status(SL_CODEC_ZSTD, z, n, len - 1), SL_ECORRUPT);
    z[n - 2] ^= 0x40; /* inside the content checksum */
    SL_FAIL(decompress_status(SL_CODEC_ZSTD, z, n, len), SL_ECORRUPT);
    free(z);

    z = lz4_linked_with_checksum(txt, len, &n);
    sl_buf_reset(&d);
    SL_PASS(sl_decompress(SL_CODEC_LZ4, z, n, len, &d));
    SL_EQ(d.len, len);
    SL_TRUE(memcmp(d.data, txt, len) == 0);
    z[n - 2] ^= 0x40; /* inside the content checksum */
    SL_FAIL(decompress_status(SL_CODEC_LZ4, z, n, len), SL_ECORRUPT);
    free(z);

    sl_buf_free(&d);
    free(txt);
}

/* Streams back to back: several gzip members, LZ4 frames or zstd frames read as one. */
static void concatenated_streams_are_one(void) {
    static const enum sl_codec codecs[] = {SL_CODEC_GZIP, SL_CODEC_LZ4, SL_CODEC_ZSTD};
    uint8_t *a = texty_bytes(70000), *b = random_bytes(5000);
    for (size_t i = 0; i < NCODECS(codecs); i++) {
        sl_buf c = SL_BUF_INIT, d = SL_BUF_INIT;
        SL_PASS(sl_compress(codecs[i], a, 70000, &c));
        SL_PASS(sl_compress(codecs[i], b, 5000, &c));
        uint8_t *z = exact_copy(c.data, c.len);
        SL_PASS(sl_decompress(codecs[i], z, c.len, 75000, &d));
        SL_EQ(d.len, 75000);
        SL_TRUE(memcmp(d.data, a, 70000) == 0 && memcmp(d.data + 70000, b, 5000) == 0);
        /* The bound counts the whole stream, not each part. */
        SL_FAIL(sl_decompress(codecs[i], z, c.len, 74999, &d), SL_ECORRUPT);
        free(z);
        sl_buf_free(&c);
        sl_buf_free(&d);
    }
    free(a);
    free(b);
}

/* A zstd frame whose header asks for a 2^25 window and states no size, as a streaming writer
 * with a large window makes it: the decoder must reserve the whole window. */
static uint8_t *zstd_big_window(const uint8_t *data, size_t len, size_t *out_len) {
    ZSTD_CCtx *c = ZSTD_createCCtx();
    SL_TRUE(c != NULL);
    SL_TRUE(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 25)));
    size_t cap = ZSTD_compressBound(len) + 64;
    uint8_t *tmp = xmalloc(cap);
    ZSTD_outBuffer ob = {tmp, cap, 0};
    ZSTD_inBuffer ib = {data, len, 0};
    /* 'continue' first, so the size is unknown when the header is written. */
    SL_TRUE(!ZSTD_isError(ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_continue)));
    ZSTD_inBuffer none = {NULL, 0, 0};
    SL_EQ(ZSTD_compressStream2(c, &ob, &none, ZSTD_e_end), 0);
    ZSTD_freeCCtx(c);
    ZSTD_frameHeader fh;
    SL_EQ(ZSTD_getFrameHeader(&fh, tmp, ob.pos), 0);
    SL_EQ(fh.windowSize, (size_t)1 << 25);
    SL_EQ(fh.frameContentSize, ZSTD_CONTENTSIZE_UNKNOWN);
    uint8_t *p = exact_copy(tmp, ob.pos);
    free(tmp);
    *out_len = ob.pos;
    return p;
}

/* Each thread keeps its own zstd contexts: threads working at once get their own, and a
 * thread's are freed when it exits (LeakSanitizer checks that at the end of this binary). */
static void *zstd_thread_work(void *arg) {
    uintptr_t seed = (uintptr_t)arg;
    uint8_t data[5000];
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)(seed * 131 + (uintptr_t)round * 37) % sizeof(data);
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)("abcdefgh"[(i * seed + (size_t)round) % 8]);
        sl_buf c = SL_BUF_INIT, d = SL_BUF_INIT;
        if (sl_compress(SL_CODEC_ZSTD, data, len, &c) ||
            sl_decompress(SL_CODEC_ZSTD, c.data, c.len, len, &d) || d.len != len ||
            (len && memcmp(d.data, data, len) != 0))
            return (void *)1;
        /* A failed call leaves the thread's context usable for the next. */
        if (c.len > 4 && sl_decompress(SL_CODEC_ZSTD, c.data, c.len - 3, len, &d) != SL_ECORRUPT)
            return (void *)1;
        sl_buf_free(&c);
        sl_buf_free(&d);
    }
    return NULL;
}

static void zstd_contexts_are_per_thread(void) {
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        SL_EQ(pthread_create(&t[i], NULL, zstd_thread_work, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++) {
        void *res;
        SL_EQ(pthread_join(t[i], &res), 0);
        SL_TRUE(res == NULL);
    }
    SL_TRUE(zstd_thread_work((void *)9) == NULL); /* and the main thread's */

    /* A context grown for a 32 MiB window is not kept, and the next call is unaffected. */
    size_t n, len = 100000;
    uint8_t *txt = texty_bytes(len);
    uint8_t *z = zstd_big_window(txt, len, &n);
    sl_buf d = SL_BUF_INIT;
    SL_PASS(sl_decompress(SL_CODEC_ZSTD, z, n, len, &d));
    SL_EQ(d.len, len);
    SL_TRUE(memcmp(d.data, txt, len) == 0);
    SL_TRUE(zstd_thread_work((void *)11) == NULL);
    sl_buf_free(&d);
    free(z);
    free(txt);
}

/* ---- refusals ---- */

static void empty_input_is_refused(void) {
    for (size_t i = 0; i < NCODECS(real_codecs); i++)
        SL_FAIL(decompress_status(real_codecs[i], (const uint8_t *)"", 0, MIB), SL_ECORRUPT);
    sl_buf d = SL_BUF_INIT; /* 'none' has nothing to check: no bytes are no bytes */
    SL_PASS(sl_decompress(SL_CODEC_NONE, NULL, 0, 0, &d));
    SL_EQ(d.len, 0);
}

/* Every proper prefix of a stream, and the stream with a byte after it, is refused. (Xerial
 * snappy has no end marker: cut between chunks it is a shorter valid stream, so only raw
 * snappy is checked here.) */
static void truncated_or_trailing_input_is_refused(void) {
    size_t len = 20000;
    uint8_t *txt = texty_bytes(len);
    for (size_t i = 0; i < NCODECS(real_codecs); i++) {
        enum sl_codec codec = real_codecs[i];
        size_t n;
        uint8_t *z = compress_exact(codec, txt, len, &n);
        fprintf(stderr, "   %s: %zu bytes, every prefix\n", sl_codec_name(codec), n);
        for (size_t cut = 0; cut < n; cut++)
            SL_FAIL(decompress_status(codec, z, cut, len), SL_ECORRUPT);
        uint8_t *longer = xmalloc(n + 1);
        memcpy(longer, z, n);
        for (int junk = 0; junk < 256; junk += 51) {
            longer[n] = (uint8_t)junk;
            SL_FAIL(decompress_status(codec, longer, n + 1, len), SL_ECORRUPT);
        }
        free(longer);
        free(z);
    }
    free(txt);
}

/* Damaged streams are refused where the format can tell (magic, headers, gzip's CRC-32) and
 * otherwise decode to something; never a crash or a read out of bounds. Snappy, and LZ4 and
 * zstd frames without checksums (as Kafka clients write them), carry nothing that catches a
 * changed literal: that is the batch CRC's job, which covers the compressed bytes. */
static void corrupted_input_is_refused_or_harmless(void) {
    size_t len = 20000;
    uint8_t *txt = texty_bytes(len);
    for (size_t i = 0; i < NCODECS(real_codecs); i++) {
        enum sl_codec codec = real_codecs[i];
        size_t n;
        uint8_t *z = compress_exact(codec, txt, len, &n);
        /* The first byte: magic (gzip, lz4, zstd), or snappy's length varint. */
        uint8_t *bad = exact_copy(z, n);
        bad[0] ^= 0x01;
        SL_FAIL(decompress_status(codec, bad, n, len + 64), SL_ECORRUPT);
        int refused = 0, decoded = 0;
        for (size_t pos = 0; pos < n; pos++) {
            memcpy(bad, z, n);
            bad[pos] ^= (uint8_t)(1 + rng() % 255);
            sl_buf d = SL_BUF_INIT;
            int rc = sl_decompress(codec, bad, n, len + 64, &d);
            SL_TRUE(rc == 0 || rc == SL_ECORRUPT);
            /* gzip's CRC-32 and length trailer: what decodes is the original. (Some changes do
             * decode: header bytes nobody checks, padding bits, a match distance pointing at
             * the same text elsewhere.) */
            if (codec == SL_CODEC_GZIP && rc == 0)
                SL_TRUE(d.len == len && memcmp(d.data, txt, len) == 0);
            rc == 0 ? decoded++ : refused++;
            sl_buf_free(&d);
        }
        fprintf(stderr, "   %s: %zu single-byte corruptions, %d refused, %d decoded\n",
                sl_codec_name(codec), n, refused, decoded);
        SL_TRUE(refused > 0);
        /* Random bytes of random lengths. */
        for (int k = 0; k < 300; k++) {
            size_t rl = (size_t)(rng() % 2000);
            uint8_t *r = random_bytes(rl);
            int rc = decompress_status(codec, r, rl, len);
            SL_TRUE(rc == 0 || rc == SL_ECORRUPT);
            free(r);
        }
        free(bad);
        free(z);
    }
    free(txt);
}

/* 100 MiB of zeros is a small stream in every codec; with max_out 1 MiB it is refused, and the
 * output buffer never grows anywhere near 100 MiB. */
static void decompression_bomb_is_refused(void) {
    size_t big = 100 * MIB;
    uint8_t *zeros = calloc(1, big);
    SL_TRUE(zeros != NULL);
    for (size_t i = 0; i < NCODECS(real_codecs); i++) {
        enum sl_codec codec = real_codecs[i];
        size_t n;
        uint8_t *z = compress_exact(codec, zeros, big, &n);
        sl_buf d = SL_BUF_INIT;
        SL_FAIL(sl_decompress(codec, z, n, MIB, &d), SL_ECORRUPT);
        SL_EQ(d.len, 0);
        fprintf(stderr, "   %s: %zu bytes, refused with %zu bytes of output buffer\n",
                sl_codec_name(codec), n, d.cap);
        SL_TRUE(d.cap <= 2 * MIB + 2);
        sl_buf_free(&d);
        free(z);
    }
    /* The streaming paths, where no size is stated up front. */
    size_t n;
    uint8_t *z = zstd_without_size(zeros, big, &n);
    sl_buf d = SL_BUF_INIT;
    SL_FAIL(sl_decompress(SL_CODEC_ZSTD, z, n, MIB, &d), SL_ECORRUPT);
    SL_TRUE(d.cap <= 2 * MIB + 2);
    free(z);
    z = xerial_frame(zeros, big, 32768, &n);
    SL_FAIL(sl_decompress(SL_CODEC_SNAPPY, z, n, MIB, &d), SL_ECORRUPT);
    SL_TRUE(d.cap <= 2 * MIB + 2);
    free(z);
    /* Raw snappy states its size first; a claim beyond what the input could expand to is
     * refused before any allocation. */
    static const uint8_t liar[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 'x'}; /* 4 GiB claimed */
    sl_buf_free(&d);
    SL_FAIL(sl_decompress(SL_CODEC_SNAPPY, liar, sizeof(liar), SIZE_MAX, &d), SL_ECORRUPT);
    SL_EQ(d.cap, 0);
    sl_buf_free(&d);
    free(zeros);
}

/* ---- record batches ---- */

#define NRECORDS 60

/* Builds the same NRECORDS records into 'b': keys, values, nulls, empties, headers, timestamps
 * out of order, one large value (so the region spans several LZ4 blocks and xerial chunks). */
static void build_records(sl_batch_builder *b, const uint8_t *big, size_t big_len) {
    static const sl_batch_header_kv hdrs[] = {
        {"trace", 5, "abc", 3}, {"null-valued", 11, NULL, 0}, {"e", 1, "", 0}};
    char key[32], val[64];
    sl_batch_builder_reset(b);
    for (int i = 0; i < NRECORDS; i++) {
        int kl = snprintf(key, sizeof(key), "user-%d", i % 7);
        int vl = snprintf(val, sizeof(val), "{\"n\":%d,\"status\":\"ok\"}", i);
        int64_t ts = 1700000000000 + (i % 5 == 0 ? -1000 * i : 10 * i);
        const void *k = i % 9 == 3 ? NULL : key;
        const void *v = i % 11 == 4 ? NULL : val;
        size_t vlen = (size_t)vl;
        if (i == 17) {
            v = big;
            vlen = big_len;
        }
        SL_PASS(sl_batch_builder_add(b, ts, k, (size_t)kl, v, vlen, hdrs, (size_t)(i % 4)));
    }
}

/* Two record views hold the same record. */
static void same_record(const sl_record_view *a, const sl_record_view *b) {
    SL_EQ(a->offset, b->offset);
    SL_EQ(a->timestamp, b->timestamp);
    SL_EQ(a->key == NULL, b->key == NULL);
    SL_EQ(a->key_len, b->key_len);
    SL_TRUE(a->key_len == 0 || memcmp(a->key, b->key, a->key_len) == 0);
    SL_EQ(a->value == NULL, b->value == NULL);
    SL_EQ(a->value_len, b->value_len);
    SL_TRUE(a->value_len == 0 || memcmp(a->value, b->value, a->value_len) == 0);
    SL_EQ(a->nheaders, b->nheaders);
    const uint8_t *pa = a->headers, *pb = b->headers;
    const uint8_t *ka, *kb, *va, *vb;
    size_t kla, klb, vla, vlb;
    int ra, rb, n = 0;
    while ((ra = sl_record_header_next(&pa, a->headers_end, &ka, &kla, &va, &vla)) == 1) {
        rb = sl_record_header_next(&pb, b->headers_end, &kb, &klb, &vb, &vlb);
        SL_EQ(rb, 1);
        SL_EQ(kla, klb);
        SL_TRUE(memcmp(ka, kb, kla) == 0);
        SL_EQ(va == NULL, vb == NULL);
        SL_EQ(vla, vlb);
        SL_TRUE(vla == 0 || memcmp(va, vb, vla) == 0);
        n++;
    }
    SL_EQ(ra, 0);
    SL_EQ(sl_record_header_next(&pb, b->headers_end, &kb, &klb, &vb, &vlb), 0);
    SL_EQ(n, a->nheaders);
}

/* A batch of 'big' records with every codec: validates, says its codec, and iterates back to
 * exactly the records of the uncompressed batch, pointing into scratch. */
static void batch_round_trip(const uint8_t *big, size_t big_len) {
    sl_batch_builder plain = {0}, b = {0};
    sl_buf scratch = SL_BUF_INIT, dscratch = SL_BUF_INIT;
    sl_batch_header h;
    build_records(&plain, big, big_len);
    sl_batch_builder_finish(&plain);
    sl_batch_set_base_offset(plain.buf.data, 5000);
    sl_batch_set_leader_epoch(plain.buf.data, 3);
    size_t records_len = plain.buf.len - SL_BATCH_HEADER_SIZE;

    for (size_t i = 0; i < NCODECS(all_codecs); i++) {
        enum sl_codec codec = all_codecs[i];
        build_records(&b, big, big_len);
        SL_PASS(sl_batch_builder_finish_codec(&b, codec, &scratch));
        sl_batch_set_base_offset(b.buf.data, 5000);
        sl_batch_set_leader_epoch(b.buf.data, 3);
        uint8_t *batch = exact_copy(b.buf.data, b.buf.len);
        size_t total = b.buf.len;
        fprintf(stderr, "   %s: records %zu -> %zu bytes\n", sl_codec_name(codec), records_len,
                total - SL_BATCH_HEADER_SIZE);

        SL_PASS(sl_batch_validate(batch, total, &h));
        SL_EQ(h.attributes, codec);
        SL_EQ(sl_batch_codec(batch), codec);
        SL_EQ(h.records_count, NRECORDS);
        SL_EQ(h.last_offset_delta, NRECORDS - 1);
        SL_EQ(h.length, total - SL_BATCH_LOG_OVERHEAD);
        if (codec == SL_CODEC_NONE) {
            SL_EQ(total, plain.buf.len); /* byte for byte what finish() makes */
            SL_TRUE(memcmp(batch, plain.buf.data, total) == 0);
        } else {
            sl_record_iter plain_it;
            SL_FAIL(sl_record_iter_start(&plain_it, batch, total), SL_EUNSUPPORTED);
            /* The CRC covers the compressed bytes as stored. */
            batch[total - 1] ^= 1;
            SL_FAIL(sl_batch_validate(batch, total, &h), SL_ECORRUPT);
            batch[total - 1] ^= 1;
        }

        sl_record_iter it, pit;
        sl_record_view rv, pv;
        SL_PASS(sl_buf_append(&dscratch, "stale", 5)); /* reset first, so never seen */
        SL_PASS(sl_record_iter_start_decompress(&it, batch, total, &dscratch, records_len));
        SL_PASS(sl_record_iter_start(&pit, plain.buf.data, plain.buf.len));
        const uint8_t *lo = codec == SL_CODEC_NONE ? batch : dscratch.data;
        const uint8_t *hi = codec == SL_CODEC_NONE ? batch + total : dscratch.data + dscratch.len;
        if (codec != SL_CODEC_NONE)
            SL_EQ(dscratch.len, records_len);
        int n = 0;
        while (sl_record_iter_next(&it, &rv) == 1) {
            SL_EQ(sl_record_iter_next(&pit, &pv), 1);
            same_record(&rv, &pv);
            SL_EQ(rv.offset, 5000 + n);
            SL_TRUE(rv.headers >= lo && rv.headers_end <= hi);
            SL_TRUE(rv.value == NULL || (rv.value >= lo && rv.value + rv.value_len <= hi));
            n++;
        }
        SL_EQ(n, NRECORDS);
        SL_EQ(sl_record_iter_next(&pit, &pv), 0);

        if (codec != SL_CODEC_NONE) /* records larger than max_out: refused */
            SL_FAIL(sl_record_iter_start_decompress(&it, batch, total, &dscratch, records_len - 1),
                    SL_ECORRUPT);
        free(batch);
        sl_buf_reset(&dscratch);
    }
    sl_batch_builder_free(&plain);
    sl_batch_builder_free(&b);
    sl_buf_free(&scratch);
    sl_buf_free(&dscratch);
}

static void batches_round_trip_every_codec(void) {
    uint8_t *txt = texty_bytes(300000), *rnd = random_bytes(MIB);
    batch_round_trip((const uint8_t *)"short", 5);
    batch_round_trip(txt, 300000);
    batch_round_trip(rnd, MIB); /* mostly incompressible */
    free(txt);
    free(rnd);
}

/* One record of random bytes: every codec makes the region larger, and the batch still says
 * that codec (Kafka does not fall back to 'none'); the builder's buffer grows for it. */
static void incompressible_batch_keeps_its_codec(void) {
    uint8_t *rnd = random_bytes(100000);
    sl_batch_builder b = {0};
    sl_buf scratch = SL_BUF_INIT, dscratch = SL_BUF_INIT;
    for (size_t i = 0; i < NCODECS(real_codecs); i++) {
        sl_batch_builder_reset(&b);
        SL_PASS(sl_batch_builder_add(&b, 42, "k", 1, rnd, 100000, NULL, 0));
        size_t plain_len = b.buf.len;
        SL_PASS(sl_batch_builder_finish_codec(&b, real_codecs[i], &scratch));
        SL_TRUE(b.buf.len > plain_len);
        sl_batch_header h;
        SL_PASS(sl_batch_validate(b.buf.data, b.buf.len, &h));
        SL_EQ(sl_batch_codec(b.buf.data), real_codecs[i]);
        sl_record_iter it;
        sl_record_view rv;
        SL_PASS(sl_record_iter_start_decompress(&it, b.buf.data, b.buf.len, &dscratch, MIB));
        SL_EQ(sl_record_iter_next(&it, &rv), 1);
        SL_EQ(rv.timestamp, 42);
        SL_EQ(rv.value_len, 100000);
        SL_TRUE(memcmp(rv.value, rnd, 100000) == 0);
        SL_EQ(sl_record_iter_next(&it, &rv), 0);
    }
    sl_batch_builder_free(&b);
    sl_buf_free(&scratch);
    sl_buf_free(&dscratch);
    free(rnd);
}

/* An uncompressed batch is read in place: scratch is neither reset nor used, and max_out does
 * not apply. */
static void uncompressed_iteration_leaves_scratch_alone(void) {
    sl_batch_builder b = {0};
    sl_buf scratch = SL_BUF_INIT;
    build_records(&b, (const uint8_t *)"v", 1);
    SL_PASS(sl_batch_builder_finish_codec(&b, SL_CODEC_NONE, &scratch));
    SL_PASS(sl_buf_append(&scratch, "keep", 4));
    sl_record_iter it;
    sl_record_view rv;
    SL_PASS(sl_record_iter_start_decompress(&it, b.buf.data, b.buf.len, &scratch, 0));
    SL_EQ(scratch.len, 4);
    SL_EQ(sl_record_iter_next(&it, &rv), 1);
    SL_TRUE(rv.headers > b.buf.data && rv.headers < b.buf.data + b.buf.len);
    sl_batch_builder_free(&b);
    sl_buf_free(&scratch);
}

/* A batch whose attributes name codec 5, 6 or 7 (CRC re-signed, so it validates) is refused by
 * the decompressing iterator as unsupported. */
static void batch_with_unknown_codec_is_refused(void) {
    sl_batch_builder b = {0};
    sl_buf scratch = SL_BUF_INIT;
    build_records(&b, (const uint8_t *)"v", 1);
    SL_PASS(sl_batch_builder_finish_codec(&b, SL_CODEC_LZ4, &scratch));
    for (int c = 5; c < 8; c++) {
        sl_be16_put(b.buf.data + SL_BATCH_OFF_ATTRIBUTES, (uint16_t)c);
        sl_be32_put(b.buf.data + SL_BATCH_OFF_CRC, sl_batch_compute_crc(b.buf.data, b.buf.len));
        SL_EQ(sl_batch_codec(b.buf.data), c);
        sl_record_iter it;
        SL_FAIL(sl_record_iter_start_decompress(&it, b.buf.data, b.buf.len, &scratch, MIB),
                SL_EUNSUPPORTED);
    }
    sl_batch_builder_free(&b);
    sl_buf_free(&scratch);
}

/* Wraps 'recs' in a copy of 'header' with 'codec', the right length and a good CRC, so that only
 * the records region can be wrong. Returns an exact-size heap block. */
static uint8_t *wrap(const uint8_t *header, enum sl_codec codec, const uint8_t *recs, size_t rlen,
                     size_t *total) {
    size_t t = SL_BATCH_HEADER_SIZE + rlen;
    uint8_t *p = xmalloc(t);
    memcpy(p, header, SL_BATCH_HEADER_SIZE);
    if (rlen)
        memcpy(p + SL_BATCH_HEADER_SIZE, recs, rlen);
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)(t - SL_BATCH_LOG_OVERHEAD));
    sl_be16_put(p + SL_BATCH_OFF_ATTRIBUTES, (uint16_t)codec);
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, t));
    *total = t;
    return p;
}

/* Batches whose records region is broken in every way above: truncated streams (re-signed so
 * only the compression is wrong), a bomb, xerial framing as kafka-python writes it. */
static void batch_records_region_checks(void) {
    sl_batch_builder b = {0};
    sl_buf scratch = SL_BUF_INIT, region = SL_BUF_INIT;
    uint8_t *txt = texty_bytes(5000);
    build_records(&b, txt, 5000);
    sl_batch_builder_finish(&b);
    SL_PASS(sl_buf_append(&region, b.buf.data + SL_BATCH_HEADER_SIZE,
                          b.buf.len - SL_BATCH_HEADER_SIZE));
    uint8_t header[SL_BATCH_HEADER_SIZE];
    memcpy(header, b.buf.data, SL_BATCH_HEADER_SIZE);

    sl_record_iter it;
    sl_record_view rv;
    sl_batch_header h;
    size_t total, n;

    /* xerial-framed snappy records (kafka-python's default) iterate. */
    uint8_t *x = xerial_frame(region.data, region.len, 1024, &n);
    uint8_t *batch = wrap(header, SL_CODEC_SNAPPY, x, n, &total);
    SL_PASS(sl_batch_validate(batch, total, &h));
    SL_PASS(sl_record_iter_start_decompress(&it, batch, total, &scratch, MIB));
    int count = 0;
    while (sl_record_iter_next(&it, &rv) == 1)
        count++;
    SL_EQ(count, NRECORDS);
    free(batch);
    free(x);

    for (size_t i = 0; i < NCODECS(real_codecs); i++) {
        enum sl_codec codec = real_codecs[i];
        uint8_t *z = compress_exact(codec, region.data, region.len, &n);
        for (size_t cut = 0; cut < n; cut += 1 + n / 97) {
            batch = wrap(header, codec, z, cut, &total);
            SL_PASS(sl_batch_validate(batch, total, &h));
            SL_FAIL(sl_record_iter_start_decompress(&it, batch, total, &scratch, MIB), SL_ECORRUPT);
            free(batch);
        }
        free(z);
    }

    uint8_t *zeros = calloc(1, 100 * MIB);
    SL_TRUE(zeros != NULL);
    for (size_t i = 0; i < NCODECS(real_codecs); i++) {
        uint8_t *z = compress_exact(real_codecs[i], zeros, 100 * MIB, &n);
        batch = wrap(header, real_codecs[i], z, n, &total);
        sl_buf_free(&scratch);
        SL_FAIL(sl_record_iter_start_decompress(&it, batch, total, &scratch, MIB), SL_ECORRUPT);
        SL_TRUE(scratch.cap <= 2 * MIB + 2);
        free(batch);
        free(z);
    }
    free(zeros);
    free(txt);
    sl_batch_builder_free(&b);
    sl_buf_free(&scratch);
    sl_buf_free(&region);
}

SL_TESTS({"codec names parse and print", codec_names_parse_and_print},
         {"codecs 5..7 are refused", unknown_codecs_are_refused},
         {"round trips: empty, tiny, 1 MiB random, repetitive and text", round_trips_every_codec},
         {"output is framed as Kafka clients expect", output_is_framed_as_kafka_clients_expect},
         {"xerial-framed snappy is read", xerial_snappy_is_read},
         {"zstd without content size and checksummed lz4 are read", other_writers_streams_are_read},
         {"concatenated streams are one stream", concatenated_streams_are_one},
         {"zstd contexts are per thread, freed at exit", zstd_contexts_are_per_thread},
         {"empty input is refused", empty_input_is_refused},
         {"truncated or trailing input is refused", truncated_or_trailing_input_is_refused},
         {"corrupted input is refused or harmless", corrupted_input_is_refused_or_harmless},
         {"decompression bomb is refused within max_out", decompression_bomb_is_refused},
         {"batches round trip with every codec", batches_round_trip_every_codec},
         {"incompressible batch keeps its codec", incompressible_batch_keeps_its_codec},
         {"uncompressed iteration leaves scratch alone",
          uncompressed_iteration_leaves_scratch_alone},
         {"batch with codec 5..7 is refused", batch_with_unknown_codec_is_refused},
         {"batch records region: xerial, truncation, bomb", batch_records_region_checks})

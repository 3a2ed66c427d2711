#include "log/compression.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST /* next_in is const: the input is never written */
#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "sluice/err.h"

static const char *const codec_names[] = {"none", "gzip", "snappy", "lz4", "zstd"};

int sl_codec_parse(const char *name, enum sl_codec *out) {
    if (name == NULL)
        return SL_EINVAL;
    for (int i = 0; i <= SL_CODEC_MAX; i++) {
        if (strcmp(name, codec_names[i]) == 0) {
            *out = (enum sl_codec)i;
            return 0;
        }
    }
    return SL_EINVAL;
}

const char *sl_codec_name(enum sl_codec codec) {
    if ((unsigned)codec > SL_CODEC_MAX)
        return "unknown";
    return codec_names[codec];
}

static size_t min_size(size_t a, size_t b) {
    return a < b ? a : b;
}

/* ---- output for the streaming decoders ---- */

/* Decoded bytes go to buf from 'start' on; no more than max_out of them. */
typedef struct out_sink {
    sl_buf *buf;
    size_t start;
    size_t max_out;
} out_sink;

/* The first reservation: small outputs stay small; larger ones then double. */
#define SINK_FIRST_CHUNK 65536

/* Free space to decode into, at least one byte. The sink lets one byte past max_out be written:
 * a decoder that fills it proves the output is too large, which "the buffer is exactly full"
 * would not. SL_ECORRUPT once that byte is used, SL_ENOMEM. */
static int sink_room(out_sink *s, uint8_t **p, size_t *n) {
    size_t limit = s->max_out == SIZE_MAX ? SIZE_MAX : s->max_out + 1;
    size_t used = s->buf->len - s->start;
    if (used >= limit)
        return SL_ECORRUPT;
    size_t left = limit - used;
    size_t avail = s->buf->cap - s->buf->len;
    if (avail == 0) {
        /* Grow by what has been produced so far (so copies stay amortised), never past the
         * limit: a bomb is stopped having cost at most about twice max_out. */
        size_t want = min_size(used < SINK_FIRST_CHUNK ? SINK_FIRST_CHUNK : used, left);
        if (sl_buf_reserve(s->buf, want))
            return SL_ENOMEM;
        avail = s->buf->cap - s->buf->len;
    }
    *p = s->buf->data + s->buf->len;
    *n = min_size(avail, left);
    return 0;
}

/* ---- gzip ---- */

/* 16 + 15: a gzip wrapper (not zlib, not raw deflate) and the largest window, which any gzip
 * writer fits in. */
#define GZIP_WINDOW_BITS (16 + MAX_WBITS)

static int gzip_compress(const uint8_t *in, size_t len, sl_buf *out) {
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, GZIP_WINDOW_BITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return SL_ENOMEM;
    /* Room for the worst case up front, so the stream finishes without regrowing. */
    if (sl_buf_reserve(out, deflateBound(&z, (uLong)len))) {
        deflateEnd(&z);
        return SL_ENOMEM;
    }
    int rc = 0;
    size_t pos = 0;
    uint8_t *w = out->data + out->len, *wend = out->data + out->cap;
    while (rc == 0) {
        /* zlib counts in uInt: feed and drain in pieces of at most UINT_MAX. */
        if (z.avail_in == 0 && pos < len) {
            size_t k = min_size(len - pos, UINT_MAX);
            z.next_in = in + pos;
            z.avail_in = (uInt)k;
            pos += k;
        }
        if (z.avail_out == 0) {
            z.next_out = w;
            z.avail_out = (uInt)min_size((size_t)(wend - w), UINT_MAX);
        }
        int zr = deflate(&z, pos == len ? Z_FINISH : Z_NO_FLUSH);
        w = z.next_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr != Z_OK || (z.avail_out == 0 && w == wend))
            rc = SL_ENOMEM; /* with the bound reserved, only a failed allocation gets here */
    }
    if (rc == 0)
        out->len = (size_t)(w - out->data);
    deflateEnd(&z);
    return rc;
}

static int gzip_decompress(const uint8_t *in, size_t len, out_sink *s) {
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, GZIP_WINDOW_BITS) != Z_OK)
        return SL_ENOMEM;
    size_t pos = 0;
    int rc = 0;
    for (;;) {
        if (z.avail_in == 0 && pos < len) {
            size_t k = min_size(len - pos, UINT_MAX);
            z.next_in = in + pos;
            z.avail_in = (uInt)k;
            pos += k;
        }
        uint8_t *p;
        size_t n;
        if ((rc = sink_room(s, &p, &n)))
            break;
        z.next_out = p;
        z.avail_out = (uInt)min_size(n, UINT_MAX);
        uInt room = z.avail_out;
        int zr = inflate(&z, Z_NO_FLUSH);
        s->buf->len += room - z.avail_out;
        if (zr == Z_STREAM_END) {
            if (z.avail_in == 0 && pos == len)
                break;
            /* More input: another gzip member. RFC 1952 lets a stream hold several, and
             * Java's GZIPInputStream reads them as one; anything else fails its header. */
            if (inflateReset(&z) != Z_OK) {
                rc = SL_ECORRUPT;
                break;
            }
            continue;
        }
        if (zr == Z_OK)
            continue;
        /* Z_BUF_ERROR with room left: no progress, the input ended inside the stream. */
        rc = zr == Z_MEM_ERROR ? SL_ENOMEM : SL_ECORRUPT;
        break;
    }
    inflateEnd(&z);
    return rc;
}

/* ---- snappy ---- */

static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define XERIAL_HEADER_SIZE 16 /* magic, int32 version, int32 oldest compatible version */

/* Snappy's densest element is a 3-byte copy of 64 bytes, so a stream never expands more than
 * 64/3 times (plus nothing for its length varint). */
#define SNAPPY_MAX_RATIO 22

static int snappy_compress_raw(const uint8_t *in, size_t len, sl_buf *out) {
    if (len > UINT32_MAX)
        return SL_EINVAL; /* the length preamble is a varint32 */
    size_t n = snappy_max_compressed_length(len);
    if (sl_buf_reserve(out, n))
        return SL_ENOMEM;
    if (snappy_compress((const char *)in, len, (char *)out->data + out->len, &n) != SNAPPY_OK)
        return SL_ENOMEM; /* only a too-small output is reported, and the bound rules it out */
    out->len += n;
    return 0;
}

/* One raw snappy block: its stated size is checked against the bound (and against what its
 * input could possibly expand to) before anything is allocated for it. */
static int snappy_block(const uint8_t *in, size_t len, out_sink *s) {
    size_t ulen;
    if (snappy_uncompressed_length((const char *)in, len, &ulen) != SNAPPY_OK)
        return SL_ECORRUPT;
    if (ulen / SNAPPY_MAX_RATIO > len || ulen > s->max_out - (s->buf->len - s->start))
        return SL_ECORRUPT;
    if (sl_buf_reserve(s->buf, ulen ? ulen : 1))
        return SL_ENOMEM;
    size_t n = ulen;
    if (snappy_uncompress((const char *)in, len, (char *)s->buf->data + s->buf->len, &n) !=
            SNAPPY_OK ||
        n != ulen)
        return SL_ECORRUPT;
    s->buf->len += n;
    return 0;
}

/* Raw, or xerial framing (the Java snappy library's stream format), told apart by the magic as
 * librdkafka does. No valid raw stream starts with it: after the length varint 82 53, 'N' would
 * be a copy before any literal. Version fields are not checked: only version 1 exists, and
 * librdkafka does not check them either. */
static int snappy_decompress(const uint8_t *in, size_t len, out_sink *s) {
    if (len < XERIAL_HEADER_SIZE || memcmp(in, xerial_magic, sizeof(xerial_magic)) != 0)
        return snappy_block(in, len, s);
    size_t pos = XERIAL_HEADER_SIZE;
    while (pos < len) {
        if (len - pos < 4)
            return SL_ECORRUPT;
        uint32_t clen = sl_be32_get(in + pos);
        pos += 4;
        if (clen > len - pos)
            return SL_ECORRUPT;
        int rc = snappy_block(in + pos, clen, s);
        if (rc)
            return rc;
        pos += clen;
    }
    return 0;
}

/* ---- lz4 ---- */

static int lz4_compress(const uint8_t *in, size_t len, sl_buf *out) {
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    /* Independent blocks: the Java client's reader decodes each block alone (librdkafka sets
     * the same, "required by Kafka"). Default 64 KiB blocks, no checksums, no content size. */
    prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    size_t bound = LZ4F_compressFrameBound(len, &prefs);
    if (LZ4F_isError(bound))
        return SL_EINVAL;
    if (sl_buf_reserve(out, bound))
        return SL_ENOMEM;
    size_t n = LZ4F_compressFrame(out->data + out->len, bound, in, len, &prefs);
    if (LZ4F_isError(n))
        return SL_ENOMEM; /* the bound is reserved: only its context allocation can fail */
    out->len += n;
    return 0;
}

/* One frame, or several back to back (the frame format allows it; a lone partial frame or
 * trailing bytes are refused). */
static int lz4_decompress(const uint8_t *in, size_t len, out_sink *s) {
    LZ4F_dctx *d;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
        return SL_ENOMEM;
    size_t pos = 0, hint = 1; /* hint: input LZ4F still expects; 0 between frames */
    int rc = 0;
    while (pos < len || hint != 0) {
        uint8_t *p;
        size_t n;
        if ((rc = sink_room(s, &p, &n)))
            break;
        size_t src = len - pos, dst = n;
        hint = LZ4F_decompress(d, p, &dst, in + pos, &src, NULL);
        if (LZ4F_isError(hint)) {
            rc = SL_ECORRUPT;
            break;
        }
        pos += src;
        s->buf->len += dst;
        if (src == 0 && dst == 0) {
            rc = SL_ECORRUPT; /* no progress with room to write: the input ended mid-frame */
            break;
        }
    }
    LZ4F_freeDecompressionContext(d);
    return rc;
}

/* ---- zstd ---- */

/* Each thread keeps one compression and one decompression context: making a context costs
 * more than the work on a small batch (about 12 us against 2 us to decode 1 KB here). A
 * pthread key frees them when the thread exits (so code holding this file must not be unloaded
 * while such threads live); the main thread's stay reachable to the end. A context that has
 * grown past ZSTD_CTX_KEEP_MAX (a huge window, as a hostile frame header can ask for) is freed
 * after the call instead of being kept. */
#define ZSTD_CTX_KEEP_MAX ((size_t)16 << 20)

typedef struct zstd_ctxs {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
} zstd_ctxs;

static pthread_key_t zstd_key;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;
static bool zstd_key_ok;

static void zstd_ctxs_free(void *arg) {
    zstd_ctxs *z = arg;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
}

static void zstd_key_create(void) {
    zstd_key_ok = pthread_key_create(&zstd_key, zstd_ctxs_free) == 0;
}

/* This thread's slots, made on first use; NULL if that fails (callers then use contexts of
 * their own for the call). */
static zstd_ctxs *zstd_thread_ctxs(void) {
    pthread_once(&zstd_once, zstd_key_create);
    if (!zstd_key_ok)
        return NULL;
    zstd_ctxs *z = pthread_getspecific(zstd_key);
    if (z == NULL && (z = calloc(1, sizeof(*z))) != NULL && pthread_setspecific(zstd_key, z)) {
        free(z);
        z = NULL;
    }
    return z;
}

static ZSTD_DCtx *zstd_dctx_get(zstd_ctxs *z) {
    if (z == NULL || z->d == NULL)
        return ZSTD_createDCtx();
    ZSTD_DCtx *d = z->d;
    z->d = NULL; /* taken: not shared with a nested or failed call */
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    return d;
}

static void zstd_dctx_put(zstd_ctxs *z, ZSTD_DCtx *d) {
    if (z != NULL && z->d == NULL && ZSTD_sizeof_DCtx(d) <= ZSTD_CTX_KEEP_MAX)
        z->d = d;
    else
        ZSTD_freeDCtx(d);
}

static int zstd_compress(const uint8_t *in, size_t len, sl_buf *out) {
    size_t bound = ZSTD_compressBound(len);
    if (ZSTD_isError(bound))
        return SL_EINVAL;
    if (sl_buf_reserve(out, bound))
        return SL_ENOMEM;
    zstd_ctxs *z = zstd_thread_ctxs();
    ZSTD_CCtx *c = z != NULL && z->c != NULL ? z->c : ZSTD_createCCtx();
    if (c == NULL)
        return SL_ENOMEM;
    if (z != NULL)
        z->c = NULL;
    /* Level and parameters are given in full here, so nothing of a previous use carries over.
     * The frame states its content size, which lets readers size their output. */
    size_t n = ZSTD_compressCCtx(c, out->data + out->len, bound, in, len, ZSTD_CLEVEL_DEFAULT);
    if (z != NULL && z->c == NULL && ZSTD_sizeof_CCtx(c) <= ZSTD_CTX_KEEP_MAX)
        z->c = c;
    else
        ZSTD_freeCCtx(c);
    if (ZSTD_isError(n))
        return SL_ENOMEM; /* the bound is reserved: only an allocation can fail */
    out->len += n;
    return 0;
}

static int zstd_error(size_t code) {
    return ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation ? SL_ENOMEM : SL_ECORRUPT;
}

/* One frame that states its size (ZSTD_compress, librdkafka): decoded in one call straight into
 * place, without the streaming window buffer and its copy. zstd checks that the frame makes
 * exactly the size it states. */
static int zstd_decompress_sized(ZSTD_DCtx *d, const uint8_t *in, size_t len, size_t size,
                                 out_sink *s) {
    if (sl_buf_reserve(s->buf, size ? size : 1))
        return SL_ENOMEM;
    size_t n = ZSTD_decompressDCtx(d, s->buf->data + s->buf->len, size, in, len);
    if (ZSTD_isError(n))
        return zstd_error(n);
    if (n != size)
        return SL_ECORRUPT;
    s->buf->len += n;
    return 0;
}

/* Streaming: the Java client (zstd-jni's output stream) writes frames without a content size.
 * Several frames back to back are one stream, as for the zstd tool.
 *
 * The window limit stays zstd's default (2^27, what every other client's decoder accepts): a
 * hostile frame header can make the context reserve up to that much for the call, but only
 * output that fits max_out is ever written into it. */
static int zstd_decompress_stream(ZSTD_DCtx *d, const uint8_t *in, size_t len, out_sink *s) {
    ZSTD_inBuffer ib = {in, len, 0};
    size_t ret = 1; /* 0 once a frame is complete and flushed */
    while (ib.pos < ib.size || ret != 0) {
        uint8_t *p;
        size_t n;
        int rc = sink_room(s, &p, &n);
        if (rc)
            return rc;
        ZSTD_outBuffer ob = {p, n, 0};
        size_t before = ib.pos;
        ret = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(ret))
            return zstd_error(ret);
        s->buf->len += ob.pos;
        if (ib.pos == before && ob.pos == 0)
            return SL_ECORRUPT; /* no progress: the input ended mid-frame */
    }
    return 0;
}

static int zstd_decompress(const uint8_t *in, size_t len, out_sink *s) {
    /* A frame that states its size is judged at once, before any work. */
    unsigned long long fcs = ZSTD_getFrameContentSize(in, len);
    bool sized = fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != ZSTD_CONTENTSIZE_ERROR;
    if (sized && fcs > s->max_out)
        return SL_ECORRUPT;
    zstd_ctxs *z = zstd_thread_ctxs();
    ZSTD_DCtx *d = zstd_dctx_get(z);
    if (d == NULL)
        return SL_ENOMEM;
    int rc = sized && ZSTD_findFrameCompressedSize(in, len) == len
                 ? zstd_decompress_sized(d, in, len, (size_t)fcs, s)
                 : zstd_decompress_stream(d, in, len, s);
    zstd_dctx_put(z, d);
    return rc;
}

/* ---- entry points ---- */

/* Stands in for a NULL input of length 0, so that no library sees NULL (or NULL + 0). */
static const uint8_t empty_input[1];

int sl_compress(enum sl_codec codec, const uint8_t *in, size_t len, sl_buf *out) {
    if (len == 0)
        in = empty_input;
    size_t start = out->len;
    int rc;
    switch (codec) {
    case SL_CODEC_NONE:
        return sl_buf_append(out, in, len);
    case SL_CODEC_GZIP:
        rc = gzip_compress(in, len, out);
        break;
    case SL_CODEC_SNAPPY:
        rc = snappy_compress_raw(in, len, out);
        break;
    case SL_CODEC_LZ4:
        rc = lz4_compress(in, len, out);
        break;
    case SL_CODEC_ZSTD:
        rc = zstd_compress(in, len, out);
        break;
    default:
        return SL_EINVAL;
    }
    if (rc)
        out->len = start;
    return rc;
}

int sl_decompress(enum sl_codec codec, const uint8_t *in, size_t len, size_t max_out, sl_buf *out) {
    if (len == 0)
        in = empty_input; /* and every codec refuses it: each stream has a header */
    out_sink s = {out, out->len, max_out};
    int rc;
    switch (codec) {
    case SL_CODEC_NONE:
        return len > max_out ? SL_ECORRUPT : sl_buf_append(out, in, len);
    case SL_CODEC_GZIP:
        rc = gzip_decompress(in, len, &s);
        break;
    case SL_CODEC_SNAPPY:
        rc = snappy_decompress(in, len, &s);
        break;
    case SL_CODEC_LZ4:
        rc = lz4_decompress(in, len, &s);
        break;
    case SL_CODEC_ZSTD:
        rc = zstd_decompress(in, len, &s);
        break;
    default:
        return SL_EINVAL;
    }
    if (rc == 0 && out->len - s.start > max_out)
        rc = SL_ECORRUPT; /* the one byte of slack was used: the output is too large */
    if (rc)
        out->len = s.start;
    return rc;
}

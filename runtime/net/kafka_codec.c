#include "net/kafka_codec.h"

#include <string.h>

#include "base/varint.h"

static const uint8_t *take(sl_kreader *r, size_t n) {
    if (r->error || (size_t)(r->end - r->p) < n) {
        r->error = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

int8_t sl_kr_i8(sl_kreader *r) {
    const uint8_t *p = take(r, 1);
    return p ? (int8_t)p[0] : 0;
}

int16_t sl_kr_i16(sl_kreader *r) {
    const uint8_t *p = take(r, 2);
    return p ? (int16_t)sl_be16_get(p) : 0;
}

int32_t sl_kr_i32(sl_kreader *r) {
    const uint8_t *p = take(r, 4);
    return p ? (int32_t)sl_be32_get(p) : 0;
}

int64_t sl_kr_i64(sl_kreader *r) {
    const uint8_t *p = take(r, 8);
    return p ? (int64_t)sl_be64_get(p) : 0;
}

bool sl_kr_bool(sl_kreader *r) {
    return sl_kr_i8(r) != 0;
}

uint64_t sl_kr_uvarint(sl_kreader *r) {
    uint64_t v = 0;
    if (r->error)
        return 0;
    size_t n = sl_uvarint_get(r->p, r->end, &v);
    if (n == 0) {
        r->error = true;
        return 0;
    }
    r->p += n;
    return v;
}

static void copy_string(sl_kreader *r, size_t n, char *out, size_t outlen) {
    const uint8_t *p = take(r, n);
    if (p == NULL || n >= outlen) {
        r->error = true;
        if (outlen)
            out[0] = '\0';
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

void sl_kr_string(sl_kreader *r, char *out, size_t outlen, bool *is_null) {
    int16_t n = sl_kr_i16(r);
    if (is_null)
        *is_null = n == -1;
    if (n == -1 && !r->error) {
        if (outlen)
            out[0] = '\0';
        return;
    }
    if (n < 0) {
        r->error = true;
        n = 0;
    }
    copy_string(r, (size_t)n, out, outlen);
}

void sl_kr_compact_string(sl_kreader *r, char *out, size_t outlen) {
    uint64_t n = sl_kr_uvarint(r);
    if (n == 0) { /* null */
        if (outlen)
            out[0] = '\0';
        return;
    }
    if (n - 1 > (uint64_t)(r->end - r->p))
        r->error = true;
    copy_string(r, (size_t)(n - 1), out, outlen);
}

bool sl_kr_string_flagged(sl_kreader *r, char *out, size_t outlen, bool *bad) {
    if (outlen == 0) { /* no room even for the terminator: a caller's mistake */
        r->error = true;
        *bad = true;
        return false;
    }
    int16_t n = sl_kr_i16(r);
    out[0] = '\0';
    *bad = false;
    if (r->error || n == -1)
        return !r->error;
    if (n < 0 || (size_t)n > (size_t)(r->end - r->p)) {
        r->error = true;
        return false;
    }
    size_t keep = (size_t)n < outlen ? (size_t)n : outlen - 1;
    memcpy(out, r->p, keep);
    out[keep] = '\0';
    *bad = keep < (size_t)n || memchr(r->p, '\0', (size_t)n) != NULL;
    r->p += n;
    return false;
}

const uint8_t *sl_kr_bytes(sl_kreader *r, int32_t *len) {
    int32_t n = sl_kr_i32(r);
    *len = -1;
    if (r->error || n == -1)
        return NULL;
    if (n < 0) {
        r->error = true;
        return NULL;
    }
    const uint8_t *p = take(r, (size_t)n);
    if (p)
        *len = n;
    return p;
}

int32_t sl_kr_array(sl_kreader *r, size_t min_elem) {
    int32_t n = sl_kr_i32(r);
    if (r->error || n == -1)
        return r->error ? 0 : -1;
    if (n < 0 || (min_elem && (size_t)n > (size_t)(r->end - r->p) / min_elem)) {
        r->error = true;
        return 0;
    }
    return n;
}

int32_t sl_kr_compact_array(sl_kreader *r, size_t min_elem) {
    uint64_t n = sl_kr_uvarint(r);
    if (r->error || n == 0)
        return r->error ? 0 : -1;
    n--;
    if (n > INT32_MAX || (min_elem && n > (uint64_t)(r->end - r->p) / min_elem)) {
        r->error = true;
        return 0;
    }
    return (int32_t)n;
}

void sl_kr_tags(sl_kreader *r) {
    uint64_t count = sl_kr_uvarint(r);
    for (uint64_t i = 0; i < count && !r->error; i++) {
        sl_kr_uvarint(r); /* tag */
        uint64_t size = sl_kr_uvarint(r);
        if (size > (uint64_t)(r->end - r->p))
            r->error = true;
        else
            take(r, (size_t)size);
    }
}

/* ---- writing ---- */

void sl_kw_raw(sl_kwriter *w, const void *p, size_t len) {
    if (!w->oom && sl_buf_append(w->b, p, len))
        w->oom = true;
}

void sl_kw_i8(sl_kwriter *w, int8_t v) {
    sl_kw_raw(w, &v, 1);
}

void sl_kw_i16(sl_kwriter *w, int16_t v) {
    uint8_t x[2];
    sl_be16_put(x, (uint16_t)v);
    sl_kw_raw(w, x, 2);
}

void sl_kw_i32(sl_kwriter *w, int32_t v) {
    uint8_t x[4];
    sl_be32_put(x, (uint32_t)v);
    sl_kw_raw(w, x, 4);
}

void sl_kw_i64(sl_kwriter *w, int64_t v) {
    uint8_t x[8];
    sl_be64_put(x, (uint64_t)v);
    sl_kw_raw(w, x, 8);
}

void sl_kw_bool(sl_kwriter *w, bool v) {
    sl_kw_i8(w, v ? 1 : 0);
}

void sl_kw_uvarint(sl_kwriter *w, uint64_t v) {
    uint8_t x[SL_VARINT_MAX];
    sl_kw_raw(w, x, sl_uvarint_put(x, v));
}

void sl_kw_string(sl_kwriter *w, const char *s) {
    if (s == NULL) {
        sl_kw_i16(w, -1);
        return;
    }
    size_t n = strlen(s);
    sl_kw_i16(w, (int16_t)(n > INT16_MAX ? INT16_MAX : n));
    sl_kw_raw(w, s, n > INT16_MAX ? INT16_MAX : n);
}

void sl_kw_compact_string(sl_kwriter *w, const char *s) {
    if (s == NULL) {
        sl_kw_uvarint(w, 0);
        return;
    }
    size_t n = strlen(s);
    sl_kw_uvarint(w, n + 1);
    sl_kw_raw(w, s, n);
}

void sl_kw_bytes(sl_kwriter *w, const void *p, int32_t len) {
    sl_kw_i32(w, len);
    if (len > 0)
        sl_kw_raw(w, p, (size_t)len);
}

size_t sl_kw_reserve_i32(sl_kwriter *w) {
    size_t at = w->b->len;
    sl_kw_i32(w, 0);
    return at;
}

void sl_kw_patch_i32(sl_kwriter *w, size_t at, int32_t v) {
    if (!w->oom && at + 4 <= w->b->len)
        sl_be32_put(w->b->data + at, (uint32_t)v);
}

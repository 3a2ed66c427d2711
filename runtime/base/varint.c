#include "base/varint.h"

size_t sl_uvarint_put(uint8_t *out, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

size_t sl_uvarint_get(const uint8_t *p, const uint8_t *end, uint64_t *v) {
    uint64_t r = 0;
    for (size_t i = 0; i < SL_VARINT_MAX; i++) {
        if (p + i >= end)
            return 0;
        uint8_t b = p[i];
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

size_t sl_varint_put(uint8_t *out, int64_t v) {
    return sl_uvarint_put(out, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

size_t sl_varint_size(int64_t v) {
    uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 1;
    while (u >= 0x80) {
        u >>= 7;
        n++;
    }
    return n;
}

size_t sl_varint_get(const uint8_t *p, const uint8_t *end, int64_t *v) {
    uint64_t u;
    size_t n = sl_uvarint_get(p, end, &u);
    if (n)
        *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    return n;
}

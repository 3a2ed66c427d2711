#include "base/mpcheck.h"

#include "base/buf.h"
#include "sluice/err.h"

/* Size of a msgpack length field of 1, 2 or 4 bytes at p; 'avail' bytes are readable. */
static int read_len(const uint8_t *p, size_t avail, size_t width, uint64_t *n) {
    if (avail < width)
        return SL_EPROTO;
    *n = width == 1 ? p[0] : width == 2 ? sl_be16_get(p) : sl_be32_get(p);
    return 0;
}

int sl_mp_check(const uint8_t *p, size_t len) {
    size_t pos = 0;
    uint64_t pending = 1; /* values still to read; each takes at least one byte */
    while (pending > 0) {
        if (pos >= len)
            return SL_EPROTO;
        uint8_t t = p[pos++];
        size_t left = len - pos;
        uint64_t n = 0, skip = 0, children = 0;
        pending--;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            skip = 0;
        } else if (t >= 0x80 && t <= 0x8f) {
            children = 2u * (t & 0x0f);
        } else if (t >= 0x90 && t <= 0x9f) {
            children = t & 0x0f;
        } else if (t >= 0xa0 && t <= 0xbf) {
            skip = t & 0x1f;
        } else {
            switch (t) {
            case 0xc4: case 0xc5: case 0xc6: /* bin 8/16/32 */
            case 0xd9: case 0xda: case 0xdb: /* str 8/16/32 */ {
                size_t w = (t == 0xc4 || t == 0xd9) ? 1 : (t == 0xc5 || t == 0xda) ? 2 : 4;
                if (read_len(p + pos, left, w, &n))
                    return SL_EPROTO;
                skip = w + n;
                break;
            }
            case 0xc7: case 0xc8: case 0xc9: { /* ext 8/16/32: length, type, data */
                size_t w = t == 0xc7 ? 1 : t == 0xc8 ? 2 : 4;
                if (read_len(p + pos, left, w, &n))
                    return SL_EPROTO;
                skip = w + 1 + n;
                break;
            }
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: case 0xdd: case 0xde: case 0xdf: {
                size_t w = (t == 0xdc || t == 0xde) ? 2 : 4;
                if (read_len(p + pos, left, w, &n))
                    return SL_EPROTO;
                skip = w;
                children = (t == 0xde || t == 0xdf) ? 2 * n : n;
                break;
            }
            default: return SL_EPROTO; /* 0xc1 is never used */
            }
        }
        if (skip > left)
            return SL_EPROTO;
        pos += (size_t)skip;
        pending += children;
        if (pending > len - pos)
            return SL_EPROTO;
    }
    return pos == len ? 0 : SL_EPROTO;
}

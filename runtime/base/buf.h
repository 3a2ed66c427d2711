/* A growable byte buffer and big-endian field helpers, shared by every encoder. */
#ifndef SL_BASE_BUF_H
#define SL_BASE_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sl_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} sl_buf;

#define SL_BUF_INIT {NULL, 0, 0}

/* Makes room for 'extra' more bytes. Returns 0 or SL_ENOMEM (the buffer is unchanged). */
int sl_buf_reserve(sl_buf *b, size_t extra);

/* Appends 'len' bytes. Returns 0 or SL_ENOMEM. */
int sl_buf_append(sl_buf *b, const void *data, size_t len);

/* Frees the storage; the buffer is empty and reusable afterwards. */
void sl_buf_free(sl_buf *b);

static inline void sl_buf_reset(sl_buf *b) {
    b->len = 0;
}

static inline uint16_t sl_be16_get(const uint8_t *p) {
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t sl_be32_get(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t sl_be64_get(const uint8_t *p) {
    return ((uint64_t)sl_be32_get(p) << 32) | sl_be32_get(p + 4);
}
static inline void sl_be16_put(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void sl_be32_put(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void sl_be64_put(uint8_t *p, uint64_t v) {
    sl_be32_put(p, (uint32_t)(v >> 32));
    sl_be32_put(p + 4, (uint32_t)v);
}

#endif

#include "base/buf.h"

#include <stdlib.h>

#include "sluice/err.h"

int sl_buf_reserve(sl_buf *b, size_t extra) {
    if (b->cap - b->len >= extra)
        return 0;
    size_t need = b->len + extra;
    if (need < b->len)
        return SL_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return SL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sl_buf_append(sl_buf *b, const void *data, size_t len) {
    int rc = sl_buf_reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void sl_buf_free(sl_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

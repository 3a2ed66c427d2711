#include "base/mp.h"

#include <string.h>

static int buf_write(void *data, const char *p, size_t len) {
    return sl_buf_append(data, p, len) ? -1 : 0;
}

void sl_mp_packer_init(msgpack_packer *pk, sl_buf *b) {
    msgpack_packer_init(pk, b, buf_write);
}

void sl_mp_pack_str(msgpack_packer *pk, const char *s) {
    if (s == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

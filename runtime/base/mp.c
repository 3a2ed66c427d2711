#include "base/mp.h"

#include <stdint.h>
#include <string.h>

#include "sluice/err.h"

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

int sl_mp_int(const msgpack_object *o, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT64_MAX)
            return SL_EPROTO;
        *v = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    return SL_EPROTO;
}

int sl_mp_str(const msgpack_object *o, const char **s, size_t *len) {
    if (o->type != MSGPACK_OBJECT_STR)
        return SL_EPROTO;
    *s = o->via.str.ptr;
    *len = o->via.str.size;
    return 0;
}

int sl_mp_strcpy(const msgpack_object *o, char *out, size_t outlen) {
    const char *s;
    size_t n;
    if (sl_mp_str(o, &s, &n) || n >= outlen || (n > 0 && memchr(s, '\0', n)))
        return SL_EPROTO;
    if (n > 0) /* msgpack-c gives an empty string a NULL pointer */
        memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int sl_mp_array(const msgpack_object *o, size_t min, const msgpack_object **items, size_t *n) {
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < min)
        return SL_EPROTO;
    *items = o->via.array.ptr;
    *n = o->via.array.size;
    return 0;
}

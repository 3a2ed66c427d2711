/* Packing msgpack into an sl_buf, and reading msgpack objects safely: what every layer that
 * speaks msgpack (the metadata logs, the coordinators, both protocol codecs) shares. */
#ifndef SL_BASE_MP_H
#define SL_BASE_MP_H

#include <msgpack.h>

#include "base/buf.h"

/* A packer that appends to 'b'. */
void sl_mp_packer_init(msgpack_packer *pk, sl_buf *b);
void sl_mp_pack_str(msgpack_packer *pk, const char *s); /* NULL packs nil */

/* Safe accessors over msgpack objects: 0 or SL_EPROTO. */
int sl_mp_int(const msgpack_object *o, int64_t *v);
int sl_mp_str(const msgpack_object *o, const char **s, size_t *len);
int sl_mp_strcpy(const msgpack_object *o, char *out, size_t outlen); /* SL_EPROTO if too long */
int sl_mp_array(const msgpack_object *o, size_t min, const msgpack_object **items, size_t *n);

#endif

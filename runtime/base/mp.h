/* Packing msgpack into an sl_buf: what every layer that writes msgpack (the metadata log, the
 * coordinator, both protocol codecs) shares. */
#ifndef SL_BASE_MP_H
#define SL_BASE_MP_H

#include <msgpack.h>

#include "base/buf.h"

/* A packer that appends to 'b'. */
void sl_mp_packer_init(msgpack_packer *pk, sl_buf *b);
void sl_mp_pack_str(msgpack_packer *pk, const char *s); /* NULL packs nil */

#endif

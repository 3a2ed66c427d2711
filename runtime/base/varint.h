/* Zigzag varints as Kafka records use them (protobuf style, least significant group first),
 * and the unsigned varints of Kafka's flexible protocol versions. Every decoder is bounded by
 * the end of its input and reports malformed input instead of reading past it. */
#ifndef SL_BASE_VARINT_H
#define SL_BASE_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define SL_VARINT_MAX 10 /* bytes of the longest varlong */

/* Encodes 'v' zigzagged at 'out' (room for SL_VARINT_MAX bytes); returns the bytes written. */
size_t sl_varint_put(uint8_t *out, int64_t v);

/* Bytes sl_varint_put would write for 'v'. */
size_t sl_varint_size(int64_t v);

/* Decodes a zigzag varlong from [p, end). Returns the bytes read, or 0 when the input ends
 * early or the varint is longer than 10 bytes. */
size_t sl_varint_get(const uint8_t *p, const uint8_t *end, int64_t *v);

/* Unsigned varint (no zigzag). Same conventions. */
size_t sl_uvarint_put(uint8_t *out, uint64_t v);
size_t sl_uvarint_get(const uint8_t *p, const uint8_t *end, uint64_t *v);

#endif

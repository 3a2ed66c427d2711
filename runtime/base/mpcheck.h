/* A structural check of msgpack bytes, before msgpack-c unpacks them. */
#ifndef SL_BASE_MPCHECK_H
#define SL_BASE_MPCHECK_H

#include <stddef.h>
#include <stdint.h>

/* Walks one msgpack value at p[0..len) without allocating and checks it is well formed, exactly
 * 'len' bytes long, and that no container declares more elements than the bytes left could
 * hold. msgpack-c allocates for the declared count before reading the elements, so without this
 * a 25-byte frame claiming billions of elements makes it ask for gigabytes. 0 or SL_EPROTO. */
int sl_mp_check(const uint8_t *p, size_t len);

#endif

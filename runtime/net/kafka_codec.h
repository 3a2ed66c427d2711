/* Kafka's wire encoding: big-endian integers, strings and arrays with int16/int32 lengths, and
 * for flexible versions (KIP-482) compact lengths (unsigned varint of N+1, 0 for null) and
 * tagged fields. Readers never read past their frame: a short or malformed request sets the
 * reader's error flag and every later read returns zero values, so decoders check once at the
 * end. */
#ifndef SL_NET_KAFKA_CODEC_H
#define SL_NET_KAFKA_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct sl_kreader {
    const uint8_t *p, *end;
    bool error;
} sl_kreader;

int8_t sl_kr_i8(sl_kreader *r);
int16_t sl_kr_i16(sl_kreader *r);
int32_t sl_kr_i32(sl_kreader *r);
int64_t sl_kr_i64(sl_kreader *r);
bool sl_kr_bool(sl_kreader *r);
uint64_t sl_kr_uvarint(sl_kreader *r);

/* A string copied into 'out' (NUL-terminated); null reads as "" with *is_null set (may be
 * NULL). Too long for 'out', or malformed: the error flag. */
void sl_kr_string(sl_kreader *r, char *out, size_t outlen, bool *is_null);
void sl_kr_compact_string(sl_kreader *r, char *out, size_t outlen);

/* Like sl_kr_string, but a string too long for 'out' or holding a NUL byte is cut and flagged in
 * *bad instead of failing the whole request, so an API can answer it with an error code. Null
 * reads as "". Returns whether it was null. */
bool sl_kr_string_flagged(sl_kreader *r, char *out, size_t outlen, bool *bad);

/* Bytes (int32 length, -1 null): a pointer into the frame and the length (-1 for null). */
const uint8_t *sl_kr_bytes(sl_kreader *r, int32_t *len);

/* An array count (int32, -1 null), checked against the bytes left (every element takes at
 * least 'min_elem' bytes), so a hostile count never drives a loop or an allocation. */
int32_t sl_kr_array(sl_kreader *r, size_t min_elem);
int32_t sl_kr_compact_array(sl_kreader *r, size_t min_elem);

/* Skips a tagged-field section (flexible versions). */
void sl_kr_tags(sl_kreader *r);

/* ---- writing into an sl_buf (allocation failure is sticky in 'oom') ---- */

typedef struct sl_kwriter {
    sl_buf *b;
    bool oom;
} sl_kwriter;

void sl_kw_i8(sl_kwriter *w, int8_t v);
void sl_kw_i16(sl_kwriter *w, int16_t v);
void sl_kw_i32(sl_kwriter *w, int32_t v);
void sl_kw_i64(sl_kwriter *w, int64_t v);
void sl_kw_bool(sl_kwriter *w, bool v);
void sl_kw_uvarint(sl_kwriter *w, uint64_t v);
void sl_kw_string(sl_kwriter *w, const char *s);          /* NULL writes a null string */
void sl_kw_compact_string(sl_kwriter *w, const char *s);  /* NULL writes a null string */
void sl_kw_bytes(sl_kwriter *w, const void *p, int32_t len); /* len -1: null */
void sl_kw_raw(sl_kwriter *w, const void *p, size_t len);
/* Reserves room for an int32 and returns its position, for lengths known only later. */
size_t sl_kw_reserve_i32(sl_kwriter *w);
void sl_kw_patch_i32(sl_kwriter *w, size_t at, int32_t v);

#endif

/* libFuzzer target: restoring a state store reads changelog records from the broker, which any
 * client could have written to. Whatever they hold, restoring must not crash or leak, must
 * leave the store usable, and must apply no state record that a position record does not
 * follow. The input is a sequence of records: [key length][key][value length or 255: null]
 * [value], lengths one byte each. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/state.h"

static void on_position(void *opaque, const char *topic, int64_t next) {
    (void)topic;
    if (next < 0)
        abort(); /* the parser promised a non-negative offset */
    (*(int *)opaque)++;
}

static int count_entry(void *opaque, const void *k, size_t kl, const void *v, size_t vl) {
    (void)k, (void)kl, (void)v, (void)vl;
    (*(size_t *)opaque)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sl_state *s;
    if (sl_state_new(&s) != 0)
        return 0;
    int positions = 0;
    size_t state_records = 0;
    sl_state_restore_begin(s, 0);
    size_t at = 0;
    while (at < size) {
        size_t klen = data[at++];
        if (at + klen > size)
            break;
        const uint8_t *key = data + at;
        at += klen;
        if (at >= size)
            break;
        size_t vlen = data[at++];
        const uint8_t *value = NULL;
        if (vlen != 255) {
            if (at + vlen > size)
                break;
            value = data + at;
            at += vlen;
        } else {
            vlen = 0;
        }
        if (klen && key[0] == SL_STATE_KEY_PREFIX)
            state_records++;
        if (sl_state_restore_record(s, 0, key, klen, value, vlen, on_position, &positions) != 0)
            break;
    }
    sl_state_restore_end(s, 0);
    size_t live = 0;
    sl_state_foreach(s, 0, count_entry, &live);
    if (live > state_records)
        abort(); /* more keys than state records were fed */
    /* The store stays usable after whatever it was fed. */
    sl_state_put(s, 0, "k", 1, "v", 1);
    sl_state_mark_written(s, 0);
    const void *v;
    size_t vl;
    if (sl_state_get(s, 0, "k", 1, &v, &vl) != 0 || vl != 1 || memcmp(v, "v", 1) != 0)
        abort();
    sl_state_free(s);
    return 0;
}

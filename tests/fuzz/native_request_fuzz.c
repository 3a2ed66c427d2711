/* libFuzzer target: every request frame a client can send the broker goes through
 * sl_native_decode_request first; it must refuse, never crash or read out of bounds. The same
 * bytes are also read as a response body, as the client does with what a broker sends. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/native.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The decoder writes nothing, but it hands out writable batch pointers: give it a copy. */
    uint8_t *frame = malloc(size ? size : 1);
    if (frame == NULL)
        return 0;
    memcpy(frame, data, size);
    sl_native_req req;
    if (sl_native_decode_request(frame, size, &req) == 0) {
        /* Touch everything the handlers would touch. */
        size_t sum = 0;
        for (size_t i = 0; i < req.ntopics; i++) {
            sum += strlen(req.topics[i].name);
            for (size_t j = 0; j < req.topics[i].nparts; j++) {
                sl_native_part *p = &req.topics[i].parts[j];
                if (p->len)
                    sum += p->data[0] + p->data[p->len - 1];
            }
        }
        for (size_t i = 0; i < req.nconfigs; i++)
            sum += strlen(req.configs[i].key) + strlen(req.configs[i].value);
        if (sum == 1)
            frame[0] ^= 1; /* keep 'sum' alive */
    }
    sl_native_req_free(&req);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    const msgpack_object *items;
    size_t n;
    int status;
    char msg[64];
    sl_native_decode_response(frame, size, &up, 2, &items, &n, &status, msg, sizeof(msg));
    msgpack_unpacked_destroy(&up);
    free(frame);
    return 0;
}

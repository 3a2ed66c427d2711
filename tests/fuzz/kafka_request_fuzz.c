/* libFuzzer target: every Kafka request a client can send goes through sl_kafka_process, which
 * decodes the header and then the API's body. It runs against a real broker and coordinator in
 * a temporary directory, so each API's decoder is reached with everything behind it. Malformed
 * input must be refused (a closed connection), never crash or read out of bounds.
 *
 * Kept out of reach: CreateTopics (key 19), which would fill the disk with partition
 * directories at fuzzing speed; JoinGroup and SyncGroup (11, 14), which by design wait for the
 * group's other members (up to their rebalance timeout), so a fuzzer would mostly wait;
 * long-polls (the fetch wait is capped); auto-creation. Their decoders are exercised by
 * tests/unit/kafka_group_test.c and the integration tests with real clients. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/log.h"
#include "net/kafka.h"

static sl_kafka_ctx ctx;
static sl_buf out;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static char dir[] = "/tmp/sl_kafka_fuzz.XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    sl_log_set_level(SL_LOG_ERROR);
    sl_broker_conf bc = {.data_dir = dir, .node_id = 1, .retention_check_ms = 60000};
    sl_broker *b;
    sl_coordinator *coord;
    if (sl_broker_open(&bc, &b) || sl_coord_open(b, &coord))
        abort();
    char err[256];
    if (sl_broker_create_topic(b, "t", 2, NULL, 0, err, sizeof(err)))
        abort();
    ctx = (sl_kafka_ctx){b, coord, 1, "127.0.0.1", 9092, false, 1, 1};
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 2 && data[0] == 0 && (data[1] == 19 || data[1] == 11 || data[1] == 14))
        return 0; /* see above */
    uint8_t *frame = malloc(size ? size : 1);
    if (frame == NULL)
        return 0;
    memcpy(frame, data, size);
    out.len = 0;
    sl_kafka_process(&ctx, "fuzz", frame, size, &out);
    free(frame);
    return 0;
}

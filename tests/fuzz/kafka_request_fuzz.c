/* libFuzzer target: every Kafka request a client can send goes through sl_kafka_process, which
 * decodes the header and then the API's body. It runs against a real broker and coordinator in
 * a temporary directory, so each API's decoder is reached with everything behind it. Malformed
 * input must be refused (a closed connection), never crash or read out of bounds.
 *
 * The context is in decode_only mode: CreateTopics is decoded in full but only validated (it
 * would fill the disk with partition directories at fuzzing speed), and JoinGroup and
 * SyncGroup are decoded in full but not handed to the coordinator (where they wait for the
 * group's other members by design). Long-polls are capped; auto-creation is off. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/log.h"
#include "net/kafka.h"

static sl_kafka_ctx ctx;
static sl_buf out;
static char dir[] = "/tmp/sl_kafka_fuzz.XXXXXX";

static void remove_dir(void) {
    sl_fs_remove_tree(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (mkdtemp(dir) == NULL)
        abort();
    atexit(remove_dir); /* libFuzzer exits through exit(): the data goes with it */
    sl_log_set_level(SL_LOG_ERROR);
    sl_broker_conf bc = {.data_dir = dir, .node_id = 1, .retention_check_ms = 60000};
    sl_broker *b;
    sl_coordinator *coord;
    if (sl_broker_open(&bc, &b) || sl_coord_open(b, &coord))
        abort();
    char err[256];
    if (sl_broker_create_topic(b, "t", 2, 0, NULL, 0, err, sizeof(err)))
        abort();
    ctx = (sl_kafka_ctx){b, coord, 1, "127.0.0.1", 9092, false, 1, 1, true, NULL, NULL, false};
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *frame = malloc(size ? size : 1);
    if (frame == NULL)
        return 0;
    memcpy(frame, data, size);
    out.len = 0;
    sl_kafka_process(&ctx, "fuzz", frame, size, &out);
    free(frame);
    return 0;
}

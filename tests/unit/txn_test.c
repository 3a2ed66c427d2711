/* The transaction coordinator (group/txn.c) over a real broker and group coordinator in a
 * temporary directory: producer ids and epochs, fencing, offsets that wait for their
 * transaction (and make a new owner wait: SL_EUNSTABLE), and a restart that settles what was
 * left open. Produces go through sl_broker_produce as a network request's would. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fs.h"
#include "broker/broker.h"
#include "group/coordinator.h"
#include "group/txn.h"
#include "log/batch.h"
#include "sl_test.h"

static char dir[] = "/tmp/sl_txn_test.XXXXXX";
static sl_broker *broker;
static sl_txn_coord *txn;
static sl_coordinator *coord;

static void start(void) {
    sl_broker_conf conf = {.data_dir = dir, .node_id = 1, .retention_check_ms = 60000};
    SL_PASS(sl_broker_open(&conf, &broker));
    SL_PASS(sl_txn_open(broker, &txn));
    SL_PASS(sl_coord_open(broker, &coord));
    sl_txn_attach(txn, coord);
}

static void stop(void) {
    sl_txn_close(txn);
    sl_coord_close(coord);
    sl_broker_close(broker);
}

/* Produces one transactional record to t-0; returns the broker's status. */
static int put(int64_t pid, int16_t epoch, int32_t seq, const char *value) {
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    SL_PASS(sl_batch_builder_add(&b, 1000, "k", 1, value, strlen(value), NULL, 0));
    b.producer_id = pid;
    b.producer_epoch = epoch;
    b.base_sequence = seq;
    b.flags = SL_BATCH_ATTR_TRANSACTIONAL;
    sl_batch_builder_finish(&b);
    sl_append_result res;
    char err[256];
    int rc = sl_broker_produce(broker, "t", 0, b.buf.data, b.buf.len, &res, err, sizeof(err));
    sl_batch_builder_free(&b);
    return rc;
}

static int64_t lso(void) {
    int64_t off;
    SL_PASS(sl_broker_list_offset(broker, "t", 0, -3, &off));
    return off;
}

static void commits_aborts_offsets_and_fencing(void) {
    SL_TRUE(mkdtemp(dir) != NULL);
    start();
    char err[256];
    SL_PASS(sl_broker_create_topic(broker, "t", 1, 0, NULL, 0, err, sizeof(err)));
    int64_t pid, pid2;
    int16_t epoch, epoch2;
    SL_FAIL(sl_txn_init_producer(txn, "", 1000, &pid, &epoch), SL_EINVAL);
    SL_FAIL(sl_txn_init_producer(txn, "a", 0, &pid, &epoch), SL_EINVAL);
    SL_PASS(sl_txn_init_producer(txn, "a", 10000, &pid, &epoch));
    SL_EQ(put(pid, epoch, 0, "one"), 0);
    SL_EQ(put(pid + 1000, 0, 0, "stranger"), SL_EINVAL); /* no transactional id has it */
    SL_EQ(lso(), 0);
    /* Offsets in the transaction: a new owner is told to wait until it is decided. */
    sl_offset_commit oc = {"t", 0, 1, NULL};
    SL_PASS(sl_txn_commit_offsets(txn, "a", pid, epoch, "g", -1, "", &oc, 1));
    int64_t committed;
    SL_EQ(sl_coord_committed(coord, "g", "t", 0, &committed), SL_EUNSTABLE);
    SL_EQ(committed, -1);
    SL_PASS(sl_txn_end(txn, "a", pid, epoch, true));
    SL_EQ(sl_coord_committed(coord, "g", "t", 0, &committed), 0);
    SL_EQ(committed, 1);
    SL_EQ(lso(), 2); /* the record and its commit marker */

    /* An aborted transaction's offsets never apply. */
    SL_EQ(put(pid, epoch, 1, "two"), 0);
    oc.offset = 2;
    SL_PASS(sl_txn_commit_offsets(txn, "a", pid, epoch, "g", -1, "", &oc, 1));
    SL_PASS(sl_txn_end(txn, "a", pid, epoch, false));
    SL_EQ(sl_coord_committed(coord, "g", "t", 0, &committed), 0);
    SL_EQ(committed, 1);

    /* A second producer with the id fences the first and aborts what it left open. */
    SL_EQ(put(pid, epoch, 2, "three"), 0);
    SL_PASS(sl_txn_init_producer(txn, "a", 10000, &pid2, &epoch2));
    SL_EQ(pid2, pid);
    SL_TRUE(epoch2 > epoch + 1); /* one bump for the abort, one for the new producer */
    SL_EQ(lso(), 6);
    SL_EQ(put(pid, epoch, 3, "zombie"), SL_EFENCED);
    SL_FAIL(sl_txn_end(txn, "a", pid, epoch, true), SL_EFENCED);
    SL_FAIL(sl_txn_commit_offsets(txn, "a", pid, epoch, "g", -1, "", &oc, 1), SL_EFENCED);

    /* Left open at a restart: aborted then, and the id's next producer is fenced past it. */
    SL_EQ(put(pid2, epoch2, 0, "four"), 0);
    oc.offset = 9;
    SL_PASS(sl_txn_commit_offsets(txn, "a", pid2, epoch2, "g", -1, "", &oc, 1));
    SL_EQ(lso(), 6);
    stop();
    start();
    SL_EQ(lso(), 8); /* "four" and its abort marker */
    SL_EQ(sl_coord_committed(coord, "g", "t", 0, &committed), 0);
    SL_EQ(committed, 1);
    SL_EQ(put(pid2, epoch2, 1, "late"), SL_EFENCED);
    int64_t pid3;
    int16_t epoch3;
    SL_PASS(sl_txn_init_producer(txn, "a", 10000, &pid3, &epoch3));
    SL_TRUE(epoch3 > epoch2 + 1);
    SL_EQ(put(pid3, epoch3, 0, "five"), 0);
    SL_PASS(sl_txn_end(txn, "a", pid3, epoch3, true));
    SL_EQ(lso(), 10);

    /* An id unused for its expiration is forgotten, across a restart too: the next producer
     * with it starts afresh. */
    sl_txn_set_id_expiration(txn, 100);
    struct timespec ts = {0, 600 * 1000000L};
    nanosleep(&ts, NULL);
    stop();
    start();
    int64_t pid4;
    int16_t epoch4;
    SL_PASS(sl_txn_init_producer(txn, "a", 10000, &pid4, &epoch4));
    SL_TRUE(pid4 != pid3);
    SL_EQ(epoch4, 0);
    stop();
    SL_PASS(sl_fs_remove_tree(dir));
}

SL_TESTS({"commits, aborts, offsets, fencing and a restart",
          commits_aborts_offsets_and_fencing})

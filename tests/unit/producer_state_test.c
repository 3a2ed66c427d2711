/* Idempotent producers in the partition log: a retried batch is written once and answered with
 * its first offsets, a gap or a stale epoch is refused, and all of it survives a reopen because
 * the state is rebuilt from the batch headers. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "log/batch.h"
#include "log/partlog.h"
#include "log/producer_state.h"
#include "sl_test.h"

/* A batch of 'count' records from producer 'pid' starting at sequence 'seq'. */
static void make_batch(sl_buf *out, int64_t pid, int16_t epoch, int32_t seq, int count) {
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    for (int i = 0; i < count; i++) {
        char v[32];
        int n = snprintf(v, sizeof(v), "pid%lld-seq%d", (long long)pid, seq + i);
        SL_PASS(sl_batch_builder_add(&b, 1700000000000 + i, NULL, 0, v, (size_t)n, NULL, 0));
    }
    sl_batch_builder_finish(&b);
    uint8_t *h = b.buf.data;
    sl_be64_put(h + SL_BATCH_OFF_PRODUCER_ID, (uint64_t)pid);
    sl_be16_put(h + SL_BATCH_OFF_PRODUCER_ID + 8, (uint16_t)epoch);
    sl_be32_put(h + SL_BATCH_OFF_PRODUCER_ID + 10, (uint32_t)seq);
    sl_be32_put(h + SL_BATCH_OFF_CRC, sl_batch_compute_crc(h, b.buf.len));
    out->len = 0;
    SL_PASS(sl_buf_append(out, b.buf.data, b.buf.len));
    sl_batch_builder_free(&b);
}

static char dir[256];

static sl_partlog *open_log(void) {
    sl_logconf conf;
    sl_logconf_defaults(&conf);
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "idem-0", &conf, &pl));
    return pl;
}

/* Appends the batch; returns the status and fills res. */
static int append(sl_partlog *pl, sl_buf *b, sl_append_result *res) {
    int64_t records;
    char err[256];
    int rc = sl_partlog_validate(pl, b->data, b->len, &records, err, sizeof(err));
    if (rc)
        return rc;
    rc = sl_partlog_append(pl, b->data, b->len, 0, 1700000000000, res);
    if (rc == 0)
        SL_PASS(sl_partlog_set_high_watermark(pl, res->last_offset + 1));
    return rc;
}

static void setup(void) {
    snprintf(dir, sizeof(dir), "/tmp/sl_pstate_test.%d/idem-0", (int)getpid());
}

static void teardown(void) {
    char top[256];
    snprintf(top, sizeof(top), "/tmp/sl_pstate_test.%d", (int)getpid());
    SL_PASS(sl_fs_remove_tree(top));
}

static void retried_batches_are_written_once(void) {
    setup();
    sl_partlog *pl = open_log();
    sl_buf b = SL_BUF_INIT;
    sl_append_result res;
    /* Five batches in a row, then each of them again: the retries are recognised. */
    for (int i = 0; i < 5; i++) {
        make_batch(&b, 7, 0, i * 10, 10);
        SL_PASS(append(pl, &b, &res));
        SL_EQ(res.base_offset, i * 10);
        SL_TRUE(!res.duplicate);
    }
    for (int i = 0; i < 5; i++) {
        make_batch(&b, 7, 0, i * 10, 10);
        SL_PASS(append(pl, &b, &res));
        SL_TRUE(res.duplicate);
        SL_EQ(res.base_offset, i * 10);
        SL_EQ(res.last_offset, i * 10 + 9);
    }
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_end_offset, 50);
    /* The next batch in sequence is appended. */
    make_batch(&b, 7, 0, 50, 3);
    SL_PASS(append(pl, &b, &res));
    SL_EQ(res.base_offset, 50);
    sl_partlog_close(pl);
    sl_buf_free(&b);
    teardown();
}

static void gaps_and_stale_epochs_are_refused(void) {
    setup();
    sl_partlog *pl = open_log();
    sl_buf b = SL_BUF_INIT;
    sl_append_result res;
    make_batch(&b, 9, 2, 0, 4);
    SL_PASS(append(pl, &b, &res));
    make_batch(&b, 9, 2, 5, 4); /* sequence 4 is missing */
    SL_FAIL(append(pl, &b, &res), SL_EOUTOFORDER);
    make_batch(&b, 9, 1, 4, 4); /* an older epoch: a zombie instance */
    SL_FAIL(append(pl, &b, &res), SL_EFENCED);
    make_batch(&b, 9, 3, 4, 4); /* a newer epoch must start again at 0 */
    SL_FAIL(append(pl, &b, &res), SL_EOUTOFORDER);
    make_batch(&b, 9, 3, 0, 4);
    SL_PASS(append(pl, &b, &res));
    SL_EQ(res.base_offset, 4);
    /* Nothing refused was written. */
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_end_offset, 8);
    /* An idempotent batch travels alone. */
    sl_buf two = SL_BUF_INIT;
    make_batch(&b, 9, 3, 4, 1);
    sl_buf_append(&two, b.data, b.len);
    make_batch(&b, 9, 3, 5, 1);
    sl_buf_append(&two, b.data, b.len);
    int64_t records;
    char err[256];
    SL_FAIL(sl_partlog_validate(pl, two.data, two.len, &records, err, sizeof(err)), SL_EINVAL);
    SL_TRUE(strstr(err, "only batch") != NULL);
    sl_buf_free(&two);
    sl_partlog_close(pl);
    sl_buf_free(&b);
    teardown();
}

static void state_is_rebuilt_from_the_log(void) {
    setup();
    sl_partlog *pl = open_log();
    sl_buf b = SL_BUF_INIT;
    sl_append_result res;
    for (int i = 0; i < 8; i++) {
        make_batch(&b, 11, 0, i * 2, 2);
        SL_PASS(append(pl, &b, &res));
        make_batch(&b, 12, 0, i, 1); /* a second producer interleaved */
        SL_PASS(append(pl, &b, &res));
    }
    sl_partlog_close(pl);
    pl = open_log();
    /* The last five batches of each producer are still recognised... */
    make_batch(&b, 11, 0, 14, 2);
    SL_PASS(append(pl, &b, &res));
    SL_TRUE(res.duplicate);
    SL_EQ(res.base_offset, 21);
    make_batch(&b, 12, 0, 3, 1);
    SL_PASS(append(pl, &b, &res));
    SL_TRUE(res.duplicate);
    SL_EQ(res.base_offset, 11);
    /* ...older ones are out of the window and refused rather than written twice... */
    make_batch(&b, 11, 0, 0, 2);
    SL_FAIL(append(pl, &b, &res), SL_EOUTOFORDER);
    /* ...and the sequence continues where it stopped. */
    make_batch(&b, 11, 0, 16, 2);
    SL_PASS(append(pl, &b, &res));
    SL_TRUE(!res.duplicate);
    SL_EQ(res.base_offset, 24);
    sl_partlog_close(pl);
    sl_buf_free(&b);
    teardown();
}

static void sequences_wrap_at_int32_max(void) {
    sl_producer_state *ps;
    SL_PASS(sl_producer_state_new(&ps));
    sl_batch_header h = {.producer_id = 5, .producer_epoch = 0, .base_sequence = INT32_MAX - 1,
                         .last_offset_delta = 1, .base_offset = 100};
    int64_t f, l;
    SL_EQ(sl_producer_state_check(ps, &h, &f, &l), 0);
    SL_PASS(sl_producer_state_update(ps, &h));
    h.base_sequence = 0; /* follows INT32_MAX */
    h.base_offset = 102;
    SL_EQ(sl_producer_state_check(ps, &h, &f, &l), 0);
    SL_PASS(sl_producer_state_update(ps, &h));
    /* Many producers: the table grows and keeps every one. */
    for (int64_t pid = 1000; pid < 3000; pid++) {
        sl_batch_header g = {.producer_id = pid, .base_sequence = 0, .last_offset_delta = 0,
                             .base_offset = pid};
        SL_PASS(sl_producer_state_update(ps, &g));
    }
    SL_EQ(sl_producer_state_count(ps), 2001);
    sl_batch_header g = {.producer_id = 2500, .base_sequence = 0, .last_offset_delta = 0};
    SL_EQ(sl_producer_state_check(ps, &g, &f, &l), 1);
    SL_EQ(f, 2500);
    sl_producer_state_free(ps);
}

SL_TESTS({"retried batches are written once", retried_batches_are_written_once},
         {"gaps and stale epochs are refused", gaps_and_stale_epochs_are_refused},
         {"producer state is rebuilt from the log", state_is_rebuilt_from_the_log},
         {"sequences wrap at INT32_MAX and many producers fit", sequences_wrap_at_int32_max})

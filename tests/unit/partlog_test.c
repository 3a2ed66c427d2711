/* The partition log: offsets, high watermark, reads, lookups by time, rolling, retention,
 * recovery after a crash, validation and LogAppendTime. Each test works in its own temporary
 * directory and checks what the log returns against a model of what was appended. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "log/batch.h"
#include "log/partlog.h"
#include "sl_fixture.h"
#include "sl_test.h"

/* ---- helpers ---- */

static char *make_dir(void) { /* sl_partlog_open creates the partition directory */
    return sl_fixture_dir("sl_partlog_test", "orders-3");
}

static void drop_dir(char *dir) {
    sl_fixture_drop_dir(dir);
}

static sl_rng rng_gen = {0x243f6a8885a308d3ull};

static uint64_t rng(void) { /* deterministic, so failures reproduce */
    return sl_rng_next(&rng_gen);
}

static sl_logconf test_conf(void) {
    sl_logconf c;
    sl_logconf_defaults(&c);
    return c;
}

#define MAX_BATCHES 4000
#define MAX_RECORDS 16000

/* Every batch the log took, as stored (offsets and epoch written), back to back. */
typedef struct model {
    sl_buf all;
    int64_t base[MAX_BATCHES];
    int64_t count[MAX_BATCHES];
    size_t pos[MAX_BATCHES]; /* into 'all' */
    size_t size[MAX_BATCHES];
    size_t nbatches;
    int64_t ts[MAX_RECORDS]; /* record timestamps by offset */
    int64_t leo;
} model;

static model *model_new(void) {
    model *m = calloc(1, sizeof(*m));
    SL_TRUE(m != NULL);
    return m;
}

static void model_free(model *m) {
    sl_buf_free(&m->all);
    free(m);
}

/* Forgets every batch from index 'keep' on (a torn tail took them). */
static void model_cut(model *m, size_t keep) {
    m->nbatches = keep;
    m->all.len = keep ? m->pos[keep - 1] + m->size[keep - 1] : 0;
    m->leo = keep ? m->base[keep - 1] + m->count[keep - 1] : 0;
}

/* Adds to 'req' one producer batch of 'n' records; timestamps from 'ts' or ts0 + i. */
static void build(sl_buf *req, int n, const int64_t *ts, int64_t ts0, size_t value_len) {
    static uint8_t value[8192];
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    for (int i = 0; i < n; i++) {
        char key[16];
        int kl = snprintf(key, sizeof(key), "k%d", i);
        memset(value, 'a' + i % 26, value_len);
        SL_PASS(sl_batch_builder_add(&b, ts ? ts[i] : ts0 + i, key, (size_t)kl, value, value_len,
                                     NULL, 0));
    }
    sl_batch_builder_finish(&b);
    SL_PASS(sl_buf_append(req, b.buf.data, b.buf.len));
    sl_batch_builder_free(&b);
}

/* Validates and appends a request, as the broker does, and records the stored batches. */
static sl_append_result send(sl_partlog *pl, model *m, sl_buf *req, int32_t epoch, int64_t now) {
    int64_t records = -1;
    char err[256];
    SL_PASS(sl_partlog_validate(pl, req->data, req->len, &records, err, sizeof(err)));
    sl_append_result res;
    memset(&res, 0xab, sizeof(res));
    SL_PASS(sl_partlog_append(pl, req->data, req->len, epoch, now, &res));
    SL_EQ(res.base_offset, m->leo);
    SL_EQ(res.records, records);
    size_t pos = 0;
    while (pos < req->len) {
        sl_batch_header h;
        SL_PASS(sl_batch_validate(req->data + pos, req->len - pos, &h)); /* CRC still good */
        SL_EQ(h.base_offset, m->leo); /* written into the caller's bytes too */
        SL_EQ(h.leader_epoch, epoch);
        size_t total = (size_t)h.length + SL_BATCH_LOG_OVERHEAD;
        SL_TRUE(m->nbatches < MAX_BATCHES);
        m->base[m->nbatches] = h.base_offset;
        m->count[m->nbatches] = h.records_count;
        m->pos[m->nbatches] = m->all.len;
        m->size[m->nbatches] = total;
        m->nbatches++;
        sl_record_iter it;
        sl_record_view rv;
        SL_PASS(sl_record_iter_start(&it, req->data + pos, total));
        while (sl_record_iter_next(&it, &rv) == 1) {
            SL_TRUE(rv.offset < MAX_RECORDS);
            m->ts[rv.offset] = rv.timestamp;
        }
        SL_PASS(sl_buf_append(&m->all, req->data + pos, total));
        m->leo += h.records_count;
        pos += total;
    }
    SL_EQ(res.last_offset, m->leo - 1);
    req->len = 0;
    return res;
}

/* One batch of 'n' records at timestamps ts0.. appended with epoch 1 at 'now'. */
static sl_append_result produce(sl_partlog *pl, model *m, int n, int64_t ts0, size_t value_len,
                                int64_t now) {
    sl_buf req = SL_BUF_INIT;
    build(&req, n, NULL, ts0, value_len);
    sl_append_result r = send(pl, m, &req, 1, now);
    sl_buf_free(&req);
    return r;
}

static void commit(sl_partlog *pl) {
    sl_read_result o;
    sl_partlog_offsets(pl, &o);
    SL_PASS(sl_partlog_set_high_watermark(pl, o.log_end_offset));
}

static size_t batch_of(const model *m, int64_t offset) {
    size_t lo = 0, hi = m->nbatches;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (m->base[mid] <= offset)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Checks that 'out' holds whole stored batches, back to back, the first holding 'offset'.
 * Returns the number of batches. */
static size_t check_read(const model *m, int64_t offset, const sl_buf *out) {
    size_t bi = batch_of(m, offset), pos = 0, n = 0;
    SL_TRUE(m->base[bi] <= offset && offset < m->base[bi] + m->count[bi]);
    while (pos < out->len) {
        sl_batch_header h;
        SL_PASS(sl_batch_validate(out->data + pos, out->len - pos, &h));
        SL_TRUE(bi + n < m->nbatches);
        SL_EQ(h.base_offset, m->base[bi + n]);
        SL_EQ((size_t)h.length + SL_BATCH_LOG_OVERHEAD, m->size[bi + n]);
        SL_TRUE(memcmp(out->data + pos, m->all.data + m->pos[bi + n], m->size[bi + n]) == 0);
        pos += m->size[bi + n];
        n++;
    }
    SL_EQ(pos, out->len); /* no partial batch at the end */
    return n;
}

/* Reads from every offset in [from, m->leo) and checks each answer. */
static void check_all_reads(sl_partlog *pl, const model *m, int64_t from) {
    for (int64_t off = from; off < m->leo; off++) {
        sl_buf out = SL_BUF_INIT;
        sl_read_result rr;
        SL_PASS(sl_partlog_read(pl, off, 1, &out, &rr));
        SL_EQ(check_read(m, off, &out), 1);
        sl_buf_free(&out);
    }
}

/* The model's answer to offset_for_time among offsets [start, hw). */
static int64_t model_offset_for_time(const model *m, int64_t start, int64_t hw, int64_t ts) {
    for (int64_t off = start; off < hw; off++)
        if (m->ts[off] >= ts)
            return off;
    return hw;
}

static void check_all_times(sl_partlog *pl, const model *m) {
    sl_read_result o;
    sl_partlog_offsets(pl, &o);
    for (int64_t off = o.log_start_offset; off < o.high_watermark; off++) {
        for (int64_t d = -1; d <= 1; d++) {
            int64_t ts = m->ts[off] + d, got = -7;
            SL_PASS(sl_partlog_offset_for_time(pl, ts, &got));
            int64_t want = model_offset_for_time(m, o.log_start_offset, o.high_watermark, ts);
            if (got != want)
                SL_TEST_FAIL_("offset_for_time(%lld) = %lld, expected %lld", (long long)ts,
                              (long long)got, (long long)want);
        }
    }
}

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void seg_file(char *out, size_t len, const char *dir, int64_t base, const char *ext) {
    snprintf(out, len, "%s/%020" PRId64 "%s", dir, base, ext);
}

/* Base offsets of the .log files in 'dir', ascending (their names sort as numbers). */
static size_t list_bases(const char *dir, int64_t *bases, size_t max) {
    DIR *d = opendir(dir);
    SL_TRUE(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len == 24 && strcmp(e->d_name + 20, ".log") == 0) {
            SL_TRUE(n < max);
            bases[n++] = strtoll(e->d_name, NULL, 10);
        }
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (size_t j = i; j > 0 && bases[j - 1] > bases[j]; j--) {
            int64_t t = bases[j];
            bases[j] = bases[j - 1];
            bases[j - 1] = t;
        }
    return n;
}

static void write_at(const char *path, int64_t off, const void *data, size_t len) {
    int fd = open(path, O_WRONLY);
    SL_TRUE(fd >= 0);
    SL_EQ(pwrite(fd, data, len, off), (ssize_t)len);
    SL_EQ(close(fd), 0);
}

static void append_to(const char *path, const void *data, size_t len) {
    write_at(path, file_size(path), data, len);
}

/* ---- appends and reads ---- */

static void append_assigns_offsets_and_reads_back(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 0);
    SL_EQ(rr.log_end_offset, 0);
    SL_EQ(rr.high_watermark, 0);

    sl_append_result r = produce(pl, m, 3, 1000, 20, 5000);
    SL_EQ(r.base_offset, 0);
    SL_EQ(r.last_offset, 2);
    SL_EQ(r.records, 3);
    SL_EQ(r.log_start_offset, 0);
    SL_EQ(r.append_time, -1); /* CreateTime */
    r = produce(pl, m, 1, 2000, 20, 5000);
    SL_EQ(r.base_offset, 3);
    SL_EQ(r.last_offset, 3);
    /* Two batches in one request, with another leader epoch. */
    sl_buf req = SL_BUF_INIT;
    build(&req, 2, NULL, 3000, 20);
    build(&req, 4, NULL, 4000, 20);
    r = send(pl, m, &req, 7, 5000);
    SL_EQ(r.base_offset, 4);
    SL_EQ(r.last_offset, 9);
    SL_EQ(r.records, 6);
    sl_buf_free(&req);

    /* Nothing is readable until the high watermark moves. */
    sl_buf out = SL_BUF_INIT;
    SL_PASS(sl_partlog_read(pl, 0, 1 << 20, &out, &rr));
    SL_EQ(out.len, 0);
    SL_EQ(rr.high_watermark, 0);
    SL_EQ(rr.log_end_offset, 10);
    /* Held but not yet committed: nothing, not out of range (a reader there waits). */
    SL_PASS(sl_partlog_read(pl, 1, 1 << 20, &out, &rr));
    SL_EQ(out.len, 0);
    SL_FAIL(sl_partlog_read(pl, 11, 1 << 20, &out, &rr), SL_ERANGE);
    SL_EQ(rr.log_end_offset, 10); /* filled on refusal too */

    commit(pl);
    SL_PASS(sl_partlog_read(pl, 0, 1 << 20, &out, &rr));
    SL_EQ(rr.high_watermark, 10);
    SL_EQ(check_read(m, 0, &out), 4);
    SL_EQ(out.len, m->all.len);
    /* Inside a batch: that whole batch first. */
    for (int64_t off = 0; off < 10; off++) {
        out.len = 0;
        SL_PASS(sl_partlog_read(pl, off, 1 << 20, &out, &rr));
        check_read(m, off, &out);
        SL_EQ(out.data[SL_BATCH_OFF_BASE_OFFSET + 7], m->base[batch_of(m, off)]);
    }
    /* At the HW: empty. Past it: out of range. */
    out.len = 0;
    SL_PASS(sl_partlog_read(pl, 10, 1 << 20, &out, &rr));
    SL_EQ(out.len, 0);
    SL_FAIL(sl_partlog_read(pl, 11, 1 << 20, &out, &rr), SL_ERANGE);
    SL_FAIL(sl_partlog_read(pl, -1, 1 << 20, &out, &rr), SL_ERANGE);
    SL_EQ(out.len, 0);
    SL_EQ(sl_partlog_size_bytes(pl), (int64_t)m->all.len);
    SL_EQ(sl_partlog_segment_count(pl), 1);
    sl_buf_free(&out);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

static void high_watermark_bounds_reads(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    for (int i = 0; i < 5; i++)
        produce(pl, m, 2, 1000 + 10 * i, 30, 5000); /* batches at 0, 2, 4, 6, 8 */
    sl_read_result rr;
    sl_buf out = SL_BUF_INIT;
    SL_PASS(sl_partlog_set_high_watermark(pl, 4));
    SL_PASS(sl_partlog_read(pl, 0, 1 << 20, &out, &rr));
    SL_EQ(rr.high_watermark, 4);
    SL_EQ(check_read(m, 0, &out), 2);
    /* Never backwards. */
    SL_PASS(sl_partlog_set_high_watermark(pl, 2));
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.high_watermark, 4);
    /* Inside a batch: that batch stays hidden until the HW passes its end. */
    SL_PASS(sl_partlog_set_high_watermark(pl, 7));
    out.len = 0;
    SL_PASS(sl_partlog_read(pl, 0, 1 << 20, &out, &rr));
    SL_EQ(rr.high_watermark, 7);
    SL_EQ(check_read(m, 0, &out), 3);
    int64_t off;
    SL_PASS(sl_partlog_offset_for_time(pl, 1040, &off)); /* only offsets 8-9 have it */
    SL_EQ(off, 7);
    /* Never past the LEO. */
    SL_PASS(sl_partlog_set_high_watermark(pl, 1000));
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.high_watermark, 10);
    out.len = 0;
    SL_PASS(sl_partlog_read(pl, 0, 1 << 20, &out, &rr));
    SL_EQ(check_read(m, 0, &out), 5);
    SL_PASS(sl_partlog_offset_for_time(pl, 1040, &off));
    SL_EQ(off, 8);
    sl_buf_free(&out);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

static void max_bytes_is_a_soft_limit(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    for (int i = 0; i < 4; i++)
        produce(pl, m, 3, 1000, 500, 5000);
    commit(pl);
    sl_buf out = SL_BUF_INIT;
    sl_read_result rr;
    /* Smaller than the first batch: still that whole batch. */
    static const size_t tiny[] = {0, 1, 61};
    for (size_t i = 0; i < 3; i++) {
        out.len = 0;
        SL_PASS(sl_partlog_read(pl, 0, tiny[i], &out, &rr));
        SL_EQ(check_read(m, 0, &out), 1);
    }
    /* One batch and a half: the partial second one is trimmed. */
    out.len = 0;
    SL_PASS(sl_partlog_read(pl, 0, m->size[0] + m->size[1] / 2, &out, &rr));
    SL_EQ(check_read(m, 0, &out), 1);
    /* Exactly two, and one byte short of three. */
    out.len = 0;
    SL_PASS(sl_partlog_read(pl, 3, m->size[1] + m->size[2], &out, &rr));
    SL_EQ(check_read(m, 3, &out), 2);
    out.len = 0;
    SL_PASS(sl_partlog_read(pl, 3, m->size[1] + m->size[2] + m->size[3] - 1, &out, &rr));
    SL_EQ(check_read(m, 3, &out), 2);
    /* More than there is: up to the HW. */
    out.len = 0;
    SL_PASS(sl_partlog_read(pl, 5, 1 << 30, &out, &rr));
    SL_EQ(check_read(m, 5, &out), 3);
    /* Reads append to what the buffer already holds. */
    out.len = 0;
    SL_PASS(sl_buf_append(&out, "prefix", 6));
    SL_PASS(sl_partlog_read(pl, 11, 1, &out, &rr));
    SL_EQ(out.len, 6 + m->size[3]);
    SL_TRUE(memcmp(out.data, "prefix", 6) == 0);
    SL_TRUE(memcmp(out.data + 6, m->all.data + m->pos[3], m->size[3]) == 0);
    sl_buf_free(&out);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

static void lookups_use_the_offset_index(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.index_interval_bytes = 256;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    for (int i = 0; i < 600; i++)
        produce(pl, m, 1 + i % 4, 1000 + i, 40, 5000);
    commit(pl);
    char path[4200];
    seg_file(path, sizeof(path), dir, 0, ".index");
    int64_t isize = file_size(path);
    SL_TRUE(isize > 8 && isize % 8 == 0); /* more than one entry */
    SL_TRUE(isize / 8 >= (int64_t)m->all.len / 256 / 2);
    SL_TRUE(isize / 8 <= (int64_t)m->all.len / 256 + 1);
    seg_file(path, sizeof(path), dir, 0, ".timeindex");
    SL_TRUE(file_size(path) > 12);
    check_all_reads(pl, m, 0);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

/* ---- time ---- */

static void offset_for_time_across_segments(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 1500;
    conf.index_interval_bytes = 200;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    /* Timestamps jump back and forth inside batches and across batches and segments. */
    for (int i = 0; i < 120; i++) {
        int n = 1 + (int)(rng() % 4);
        int64_t ts[4];
        for (int k = 0; k < n; k++)
            ts[k] = 10000 + i * 50 + (int64_t)(rng() % 400) - 200;
        if (i == 30)
            ts[0] = 50000; /* the newest, early on */
        sl_buf req = SL_BUF_INIT;
        build(&req, n, ts, 0, 60);
        send(pl, m, &req, 1, 20000);
        sl_buf_free(&req);
    }
    SL_TRUE(sl_partlog_segment_count(pl) > 5);
    commit(pl);
    check_all_times(pl, m);
    int64_t off;
    SL_PASS(sl_partlog_offset_for_time(pl, INT64_MIN, &off)); /* before everything: start */
    SL_EQ(off, 0);
    SL_PASS(sl_partlog_offset_for_time(pl, 50001, &off)); /* after everything: HW */
    SL_EQ(off, m->leo);
    SL_PASS(sl_partlog_offset_for_time(pl, INT64_MAX, &off));
    SL_EQ(off, m->leo);
    /* The same after a reopen, from the loaded time indexes. */
    sl_partlog_close(pl);
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    check_all_times(pl, m);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

/* ---- rolling ---- */

static void segments_roll_at_segment_bytes(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 2000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    for (int i = 0; i < 40; i++)
        produce(pl, m, 1 + i % 3, 1000 + i, 100 + (size_t)i * 5, 5000);
    commit(pl);
    int64_t bases[64];
    size_t n = list_bases(dir, bases, 64);
    SL_EQ(n, sl_partlog_segment_count(pl));
    SL_TRUE(n >= 5);
    SL_EQ(bases[0], 0);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        /* Kafka's names: the base offset in 20 digits, three files each. */
        seg_file(path, sizeof(path), dir, bases[i], ".index");
        SL_TRUE(file_size(path) >= 8);
        seg_file(path, sizeof(path), dir, bases[i], ".timeindex");
        SL_TRUE(file_size(path) >= 12);
        seg_file(path, sizeof(path), dir, bases[i], ".log");
        int64_t size = file_size(path);
        total += size;
        SL_TRUE(size <= 2000);
        /* Each starts at a batch, and the one before had no room for it. */
        size_t bi = batch_of(m, bases[i]);
        SL_EQ(m->base[bi], bases[i]);
        if (i + 1 < n)
            SL_TRUE(size + (int64_t)m->size[batch_of(m, bases[i + 1])] > 2000);
    }
    SL_EQ(total, (int64_t)m->all.len);
    SL_EQ(sl_partlog_size_bytes(pl), total);
    check_all_reads(pl, m, 0);
    /* A read stays within one segment: from a segment's first offset with a large max_bytes
     * it ends at the next segment's base. */
    sl_buf out = SL_BUF_INIT;
    sl_read_result rr;
    SL_PASS(sl_partlog_read(pl, bases[1], 1 << 20, &out, &rr));
    check_read(m, bases[1], &out);
    SL_EQ(out.len, m->pos[batch_of(m, bases[2])] - m->pos[batch_of(m, bases[1])]);
    /* A batch larger than segment.bytes still goes in: into a segment of its own. */
    size_t before = sl_partlog_segment_count(pl);
    produce(pl, m, 1, 9999, 3000, 5000);
    produce(pl, m, 1, 9999, 10, 5000);
    SL_EQ(sl_partlog_segment_count(pl), before + 2);
    commit(pl);
    check_all_reads(pl, m, 0);
    sl_buf_free(&out);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

static void segments_roll_at_segment_ms(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_ms = 1000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    /* The age is that of the segment's first record. */
    produce(pl, m, 1, 10000, 10, 10000);
    produce(pl, m, 1, 10500, 10, 10999);
    SL_EQ(sl_partlog_segment_count(pl), 1);
    sl_append_result r = produce(pl, m, 1, 11000, 10, 11000);
    SL_EQ(sl_partlog_segment_count(pl), 2);
    int64_t bases[8];
    SL_EQ(list_bases(dir, bases, 8), 2);
    SL_EQ(bases[1], r.base_offset);
    /* Without appends, roll_if_due does it, and only once the time has come. */
    SL_PASS(sl_partlog_roll_if_due(pl, 11999));
    SL_EQ(sl_partlog_segment_count(pl), 2);
    SL_PASS(sl_partlog_roll_if_due(pl, 12000));
    SL_EQ(sl_partlog_segment_count(pl), 3);
    /* An empty active segment has no age. */
    SL_PASS(sl_partlog_roll_if_due(pl, 99999999));
    SL_EQ(sl_partlog_segment_count(pl), 3);
    SL_EQ(list_bases(dir, bases, 8), 3);
    SL_EQ(bases[2], m->leo);
    r = produce(pl, m, 2, 13000, 10, 13000);
    SL_EQ(r.base_offset, 3);
    commit(pl);
    check_all_reads(pl, m, 0);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

/* ---- retention ---- */

/* A log of 'nseg' closed segments of 3 batches each, batch i at timestamp 1000 * (i + 1), and
 * an active segment with one batch. */
static sl_partlog *segmented_log(const char *dir, model *m, sl_logconf *conf, int nseg) {
    sl_partlog *pl;
    conf->segment_ms = 1000000000;
    SL_PASS(sl_partlog_open(dir, "orders-3", conf, &pl));
    for (int s = 0; s < nseg; s++) {
        for (int i = 0; i < 3; i++) {
            int64_t ts = 1000 * (int64_t)(m->nbatches + 1);
            produce(pl, m, 2, ts, 100, ts);
        }
        SL_PASS(sl_partlog_roll_if_due(pl, INT64_MAX / 2));
    }
    int64_t ts = 1000 * (int64_t)(m->nbatches + 1);
    produce(pl, m, 2, ts, 100, ts);
    SL_EQ(sl_partlog_segment_count(pl), (size_t)nseg + 1);
    return pl;
}

static void retention_by_time(void) {
    char *dir = make_dir();
    model *m = model_new();
    sl_logconf conf = test_conf();
    conf.retention_ms = 1000;
    sl_partlog *pl = segmented_log(dir, m, &conf, 4); /* segments at 0, 6, 12, 18; active 24 */
    commit(pl);
    /* Segment 0's newest record is at 3001: it expires once now - 1000 > 3001. */
    SL_EQ(sl_partlog_enforce_retention(pl, 4001), 0);
    SL_EQ(sl_partlog_enforce_retention(pl, 4002), 1);
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 6);
    char path[4200];
    static const char *const exts[] = {".log", ".index", ".timeindex"};
    for (int i = 0; i < 3; i++) {
        seg_file(path, sizeof(path), dir, 0, exts[i]);
        SL_EQ(file_size(path), -1);
    }
    sl_buf out = SL_BUF_INIT;
    SL_FAIL(sl_partlog_read(pl, 5, 1 << 20, &out, &rr), SL_ERANGE); /* below the start */
    SL_EQ(rr.log_start_offset, 6);
    int64_t off;
    SL_PASS(sl_partlog_offset_for_time(pl, 0, &off));
    SL_EQ(off, 6);
    check_all_reads(pl, m, 6);

    /* Far in the future everything expires: the active segment is rolled so it can go, and
     * the log starts at its end. */
    SL_EQ(sl_partlog_enforce_retention(pl, INT64_C(1) << 50), 4);
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 26);
    SL_EQ(rr.log_end_offset, 26);
    SL_EQ(rr.high_watermark, 26);
    SL_EQ(sl_partlog_segment_count(pl), 1);
    SL_EQ(sl_partlog_size_bytes(pl), 0);
    int64_t bases[8];
    SL_EQ(list_bases(dir, bases, 8), 1);
    SL_EQ(bases[0], 26);
    SL_FAIL(sl_partlog_read(pl, 25, 1 << 20, &out, &rr), SL_ERANGE);
    SL_PASS(sl_partlog_read(pl, 26, 1 << 20, &out, &rr));
    SL_EQ(out.len, 0);
    SL_PASS(sl_partlog_offset_for_time(pl, 0, &off));
    SL_EQ(off, 26);
    sl_append_result r = produce(pl, m, 1, 5, 10, 5);
    SL_EQ(r.base_offset, 26);
    SL_EQ(r.log_start_offset, 26);
    sl_buf_free(&out);
    sl_partlog_close(pl);

    /* The start survives a restart. */
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 26);
    SL_EQ(rr.log_end_offset, 27);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

static void retention_keeps_what_is_above_the_high_watermark(void) {
    char *dir = make_dir();
    model *m = model_new();
    sl_logconf conf = test_conf();
    conf.retention_ms = 1000;
    conf.retention_bytes = 0;
    sl_partlog *pl = segmented_log(dir, m, &conf, 3); /* 0, 6, 12; active 18 */
    SL_PASS(sl_partlog_set_high_watermark(pl, 8));    /* inside segment 6 */
    /* Only segment 0 lies wholly below the HW; the others wait for readers. */
    SL_EQ(sl_partlog_enforce_retention(pl, INT64_C(1) << 50), 1);
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 6);
    SL_EQ(rr.log_end_offset, 20);
    SL_EQ(sl_partlog_segment_count(pl), 3);
    SL_EQ(sl_partlog_enforce_retention(pl, INT64_C(1) << 50), 0);
    /* The active segment holds records not yet below the HW: it is not rolled away. */
    SL_PASS(sl_partlog_set_high_watermark(pl, 19));
    SL_EQ(sl_partlog_enforce_retention(pl, INT64_C(1) << 50), 2);
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 18);
    SL_EQ(sl_partlog_segment_count(pl), 1);
    commit(pl);
    check_all_reads(pl, m, 18);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

static void retention_by_bytes(void) {
    char *dir = make_dir();
    model *m = model_new();
    sl_logconf conf = test_conf();
    conf.retention_ms = -1;
    sl_partlog *pl = segmented_log(dir, m, &conf, 5); /* 0, 6, 12, 18, 24; active 30 */
    commit(pl);
    int64_t bases[8], sizes[8], total = 0;
    size_t n = list_bases(dir, bases, 8);
    SL_EQ(n, 6);
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        seg_file(path, sizeof(path), dir, bases[i], ".log");
        sizes[i] = file_size(path);
        total += sizes[i];
    }
    /* Oldest first, while what remains is still at least retention.bytes. */
    conf.retention_bytes = total - sizes[0] - sizes[1];
    sl_partlog_set_conf(pl, &conf);
    SL_EQ(sl_partlog_enforce_retention(pl, 0), 2);
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 12);
    SL_EQ(sl_partlog_size_bytes(pl), conf.retention_bytes);
    SL_EQ(list_bases(dir, bases, 8), 4);
    SL_EQ(bases[0], 12);
    /* One byte more than would remain after the next deletion: keep it. */
    conf.retention_bytes = total - sizes[0] - sizes[1] - sizes[2] + 1;
    sl_partlog_set_conf(pl, &conf);
    SL_EQ(sl_partlog_enforce_retention(pl, 0), 0);
    /* Zero: every closed segment goes, the active one stays. */
    conf.retention_bytes = 0;
    sl_partlog_set_conf(pl, &conf);
    SL_EQ(sl_partlog_enforce_retention(pl, 0), 3);
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 30);
    SL_EQ(rr.log_end_offset, 32);
    SL_EQ(sl_partlog_segment_count(pl), 1);
    check_all_reads(pl, m, 30);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

/* ---- restarts ---- */

static void reopen_gives_the_same_log(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 3000;
    conf.index_interval_bytes = 300;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    for (int i = 0; i < 60; i++)
        produce(pl, m, 1 + i % 3, 1000 + i * 10, 80, 5000);
    commit(pl);
    size_t nseg = sl_partlog_segment_count(pl);
    int64_t size = sl_partlog_size_bytes(pl);
    sl_partlog_close(pl);

    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, 0);
    SL_EQ(rr.log_end_offset, m->leo);
    SL_EQ(rr.high_watermark, m->leo); /* on one node, what was written is committed */
    SL_EQ(sl_partlog_segment_count(pl), nseg);
    SL_EQ(sl_partlog_size_bytes(pl), size);
    check_all_reads(pl, m, 0);
    check_all_times(pl, m);
    sl_append_result r = produce(pl, m, 2, 5000, 10, 5000);
    SL_EQ(r.base_offset, rr.log_end_offset);
    commit(pl);
    check_all_reads(pl, m, 0);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

enum tear {
    TEAR_IN_PREFIX,
    TEAR_IN_HEADER,
    TEAR_IN_RECORDS,
    TEAR_GARBAGE,
    TEAR_BIT_FLIP,
    TEAR_ZERO_FILLED
};

static const char *const tear_names[] = {"in prefix",    "in header", "in records",
                                         "garbage tail", "bit flip",  "zero-filled tail"};

/* Damages the active segment's .log as a crash could; returns how many of the model's batches
 * survive. 'next' is a batch that was being written (its bytes, not yet in the model). */
static size_t tear_active(const char *path, enum tear kind, const model *m, const sl_buf *next) {
    uint8_t junk[1000];
    switch (kind) {
    case TEAR_IN_PREFIX:
        append_to(path, next->data, 5);
        break;
    case TEAR_IN_HEADER:
        append_to(path, next->data, 40);
        break;
    case TEAR_IN_RECORDS:
        append_to(path, next->data, next->len - 1);
        break;
    case TEAR_GARBAGE:
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)rng();
        append_to(path, junk, sizeof(junk));
        break;
    case TEAR_BIT_FLIP: { /* inside the last batch's records */
        int64_t at = file_size(path) - 10;
        uint8_t b = m->all.data[m->all.len - 10] ^ 0x20;
        write_at(path, at, &b, 1);
        return m->nbatches - 1;
    }
    case TEAR_ZERO_FILLED:
        memset(junk, 0, sizeof(junk));
        for (int i = 0; i < 4; i++)
            append_to(path, junk, sizeof(junk));
        break;
    }
    return m->nbatches;
}

static void recovery_from_torn_tails(void) {
    for (int kind = TEAR_IN_PREFIX; kind <= TEAR_ZERO_FILLED; kind++) {
        /* Twice each: with a few batches in the active segment, and with only the one that
         * gets damaged (so a bit flip empties it). */
        for (int lone = 0; lone < 2; lone++) {
            fprintf(stderr, "   tear: %s%s\n", tear_names[kind], lone ? ", lone batch" : "");
            char *dir = make_dir();
            sl_logconf conf = test_conf();
            conf.segment_bytes = 2500;
            sl_partlog *pl;
            SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
            model *m = model_new();
            for (int i = 0; i < 30; i++)
                produce(pl, m, 1 + i % 4, 1000 + i, 90, 5000);
            if (lone) {
                SL_PASS(sl_partlog_roll_if_due(pl, INT64_MAX / 2));
                produce(pl, m, 3, 2000, 90, 5000);
            }
            SL_TRUE(sl_partlog_segment_count(pl) >= 3);
            int64_t bases[32];
            size_t nseg = list_bases(dir, bases, 32);
            sl_partlog_close(pl); /* what a crash leaves behind, plus the damage below */

            char path[4200];
            seg_file(path, sizeof(path), dir, bases[nseg - 1], ".log");
            sl_buf next = SL_BUF_INIT;
            build(&next, 3, NULL, 3000, 90);
            size_t keep = tear_active(path, (enum tear)kind, m, &next);
            sl_buf_free(&next);
            model_cut(m, keep);

            SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
            sl_read_result rr;
            sl_partlog_offsets(pl, &rr);
            SL_EQ(rr.log_end_offset, m->leo);
            SL_EQ(rr.high_watermark, m->leo);
            SL_EQ(rr.log_start_offset, 0);
            SL_EQ(sl_partlog_size_bytes(pl), (int64_t)m->all.len);
            SL_EQ(list_bases(dir, bases, 32), nseg); /* no segment lost or added */
            check_all_reads(pl, m, 0);
            sl_append_result r = produce(pl, m, 2, 4000, 90, 5000);
            SL_EQ(r.base_offset, rr.log_end_offset);
            commit(pl);
            check_all_reads(pl, m, 0);
            sl_partlog_close(pl);

            SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
            sl_partlog_offsets(pl, &rr);
            SL_EQ(rr.log_end_offset, m->leo);
            check_all_reads(pl, m, 0);
            sl_partlog_close(pl);
            model_free(m);
            drop_dir(dir);
        }
    }
}

static void damaged_indexes_of_closed_segments_are_rebuilt(void) {
    static const char *const what[] = {"deleted .index", "deleted .timeindex", "garbage .index",
                                       "garbage .timeindex"};
    for (int kind = 0; kind < 4; kind++) {
        fprintf(stderr, "   damage: %s\n", what[kind]);
        char *dir = make_dir();
        sl_logconf conf = test_conf();
        conf.segment_bytes = 6000;
        conf.index_interval_bytes = 200;
        sl_partlog *pl;
        SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
        model *m = model_new();
        for (int i = 0; i < 80; i++) {
            int64_t ts = 1000 + i * 10;
            if (i == 3)
                ts = 90000; /* the newest record early in the first segment */
            produce(pl, m, 2, ts, 100, 5000);
        }
        commit(pl);
        SL_TRUE(sl_partlog_segment_count(pl) >= 3);
        sl_partlog_close(pl);
        char path[4200];
        seg_file(path, sizeof(path), dir, 0, kind % 2 ? ".timeindex" : ".index");
        int64_t size = file_size(path);
        SL_TRUE(size > 0);
        if (kind < 2) {
            SL_EQ(unlink(path), 0);
        } else {
            uint8_t *junk = malloc((size_t)size);
            SL_TRUE(junk != NULL);
            for (int64_t i = 0; i < size; i++)
                junk[i] = (uint8_t)rng();
            write_at(path, 0, junk, (size_t)size);
            free(junk);
        }
        SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
        SL_TRUE(file_size(path) > 0); /* written again */
        check_all_reads(pl, m, 0);
        check_all_times(pl, m);
        int64_t off;
        SL_PASS(sl_partlog_offset_for_time(pl, 50000, &off));
        SL_EQ(off, 6);
        sl_partlog_close(pl);
        model_free(m);
        drop_dir(dir);
    }
}

/* ---- validation, flushing, LogAppendTime ---- */

static void validate_refuses_what_it_must(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.max_message_bytes = 1000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    char err[256];
    int64_t records = -1;
    sl_buf req = SL_BUF_INIT;

    /* Exactly max.message.bytes is fine; one byte more is not. */
    size_t vlen = 1000 - 61 - 20;
    for (;;) {
        req.len = 0;
        build(&req, 1, NULL, 0, vlen);
        if (req.len == 1000)
            break;
        vlen += req.len < 1000 ? 1 : (size_t)-1;
    }
    SL_PASS(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)));
    SL_EQ(records, 1);
    req.len = 0;
    build(&req, 1, NULL, 0, vlen + 1);
    SL_EQ(req.len, 1001);
    err[0] = '\0';
    SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)), SL_ETOOLARGE);
    SL_TRUE(strstr(err, "max.message.bytes") != NULL);
    SL_TRUE(strstr(err, "1001") != NULL && strstr(err, "1000") != NULL);
    SL_TRUE(strstr(err, "orders-3") != NULL);
    /* The size is judged before the CRC, and for each batch of a request. */
    req.data[req.len - 1] ^= 1;
    SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)), SL_ETOOLARGE);
    req.len = 0;
    build(&req, 2, NULL, 0, 10);
    build(&req, 1, NULL, 0, vlen + 1);
    SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)), SL_ETOOLARGE);

    /* Several batches: records add up. */
    req.len = 0;
    build(&req, 2, NULL, 0, 10);
    build(&req, 5, NULL, 0, 10);
    SL_PASS(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)));
    SL_EQ(records, 7);
    /* A CRC failure in the second batch names where it is. */
    size_t first = sl_batch_total_size(req.data, req.len);
    req.data[req.len - 2] ^= 0x40;
    SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)), SL_ECORRUPT);
    char at[64];
    snprintf(at, sizeof(at), "byte %zu", first);
    SL_TRUE(strstr(err, at) != NULL);
    req.data[req.len - 2] ^= 0x40;
    /* Trailing bytes that are no batch, a cut batch, an empty request. */
    SL_PASS(sl_buf_append(&req, "\0\0\0", 3));
    SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)), SL_ECORRUPT);
    SL_FAIL(sl_partlog_validate(pl, req.data, req.len - 4, &records, err, sizeof(err)),
            SL_ECORRUPT);
    SL_FAIL(sl_partlog_validate(pl, req.data, 0, &records, err, sizeof(err)), SL_ECORRUPT);
    /* A transactional batch without a producer id, and any control batch: only the
     * transaction coordinator writes markers. */
    static const uint16_t attrs[] = {SL_BATCH_ATTR_TRANSACTIONAL, SL_BATCH_ATTR_CONTROL};
    for (int i = 0; i < 2; i++) {
        req.len = 0;
        build(&req, 1, NULL, 0, 10);
        sl_be16_put(req.data + SL_BATCH_OFF_ATTRIBUTES, attrs[i]);
        sl_be32_put(req.data + SL_BATCH_OFF_CRC, sl_batch_compute_crc(req.data, req.len));
        SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)),
                SL_EINVAL);
    }
    /* A raised limit takes effect. */
    conf.max_message_bytes = 2000;
    sl_partlog_set_conf(pl, &conf);
    req.len = 0;
    build(&req, 1, NULL, 0, vlen + 1);
    SL_PASS(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)));
    sl_buf_free(&req);
    sl_partlog_close(pl);
    drop_dir(dir);
}

static void flushing_as_configured(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.flush_messages = 1; /* fsync after every append */
    conf.segment_bytes = 1000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    for (int i = 0; i < 10; i++)
        produce(pl, m, 2, 1000 + i, 100, 5000);
    SL_PASS(sl_partlog_flush(pl));
    conf.flush_messages = INT64_MAX;
    conf.flush_ms = 100;
    sl_partlog_set_conf(pl, &conf);
    produce(pl, m, 1, 2000, 10, 7000);
    SL_PASS(sl_partlog_flush_if_due(pl, 7050));
    SL_PASS(sl_partlog_flush_if_due(pl, 7100));
    commit(pl);
    check_all_reads(pl, m, 0);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

static void log_append_time_restamps_batches(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.log_append_time = true;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    produce(pl, m, 2, 1000, 10, 5000);
    sl_append_result r = produce(pl, m, 3, 1000, 10, 777777);
    SL_EQ(r.append_time, 777777);
    SL_EQ(r.base_offset, 2);
    commit(pl);
    sl_buf out = SL_BUF_INIT;
    sl_read_result rr;
    SL_PASS(sl_partlog_read(pl, 2, 1, &out, &rr));
    sl_batch_header h;
    SL_PASS(sl_batch_validate(out.data, out.len, &h)); /* re-signed: the CRC holds */
    SL_TRUE(h.attributes & SL_BATCH_ATTR_LOG_APPEND_TIME);
    SL_EQ(h.max_timestamp, 777777);
    SL_EQ(h.base_timestamp, 1000); /* the producer's, kept */
    sl_record_iter it;
    sl_record_view rv;
    SL_PASS(sl_record_iter_start(&it, out.data, out.len));
    int n = 0;
    while (sl_record_iter_next(&it, &rv) == 1) {
        SL_EQ(rv.timestamp, 777777);
        n++;
    }
    SL_EQ(n, 3);
    /* Lookups by time see the broker's clock. */
    int64_t off;
    SL_PASS(sl_partlog_offset_for_time(pl, 5001, &off));
    SL_EQ(off, 2);
    SL_PASS(sl_partlog_offset_for_time(pl, 777778, &off));
    SL_EQ(off, 5);
    check_all_times(pl, m);
    sl_buf_free(&out);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

/* ---- a reader racing the writer ---- */

struct race {
    sl_partlog *pl;
    atomic_llong target; /* the reader stops on reaching it; -1 while unknown */
    int64_t batches_seen;
    bool replica;              /* read as a follower does: to the LEO, the HW lagging behind */
    atomic_llong epoch2_start; /* where leader epoch 2 begins; -1 until it does */
};

static void *race_reader(void *arg) {
    struct race *r = arg;
    int64_t next = 0;
    sl_buf out = SL_BUF_INIT;
    for (;;) {
        long long target = atomic_load(&r->target);
        if (target >= 0 && next >= target)
            break;
        sl_read_result rr;
        out.len = 0;
        int rc = r->replica ? sl_partlog_read_replica(r->pl, next, 3000, &out, &rr)
                            : sl_partlog_read(r->pl, next, 3000, &out, &rr);
        if (r->replica) {
            /* Epoch 1 never ends anywhere but where epoch 2 begins. */
            long long e2 = atomic_load(&r->epoch2_start);
            int32_t found;
            int64_t end;
            SL_PASS(sl_partlog_epoch_end(r->pl, 1, &found, &end));
            SL_TRUE(found <= 1);
            if (found == 1 && e2 >= 0)
                SL_EQ(end, e2);
        }
        if (rc == SL_ERANGE && next < rr.log_start_offset) {
            next = rr.log_start_offset; /* retention passed us: skip ahead, as consumers do */
            continue;
        }
        SL_PASS(rc);
        if (out.len == 0) {
            sched_yield(); /* caught up with the HW */
            continue;
        }
        size_t pos = 0;
        while (pos < out.len) {
            sl_batch_header h;
            SL_PASS(sl_batch_validate(out.data + pos, out.len - pos, &h));
            /* Batches come in order, the first holding 'next', without gaps. */
            SL_TRUE(h.base_offset <= next && next <= h.base_offset + h.last_offset_delta);
            next = h.base_offset + h.last_offset_delta + 1;
            pos += (size_t)h.length + SL_BATCH_LOG_OVERHEAD;
            r->batches_seen++;
        }
        SL_TRUE(next <= (r->replica ? rr.log_end_offset : rr.high_watermark));
    }
    sl_buf_free(&out);
    return NULL;
}

static void race_appends(bool replica) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 8000;
    conf.retention_bytes = 40000;
    conf.retention_ms = -1;
    conf.index_interval_bytes = 512;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    struct race r = {pl, -1, 0, replica, -1};
    pthread_t t;
    SL_EQ(pthread_create(&t, NULL, race_reader, &r), 0);
    int64_t leo = 0;
    sl_buf req = SL_BUF_INIT;
    for (int i = 0; i < 3000; i++) {
        req.len = 0;
        build(&req, 1 + i % 5, NULL, 1000 + i, 50 + (size_t)(i % 7) * 20);
        sl_append_result res;
        /* A follower reads behind a lagging HW, across leader epochs 0 to 4. */
        int32_t epoch = replica ? i / 600 : 1;
        SL_PASS(sl_partlog_append(pl, req.data, req.len, epoch, 5000, &res));
        SL_EQ(res.base_offset, leo);
        if (replica && epoch == 2 && atomic_load(&r.epoch2_start) < 0)
            atomic_store(&r.epoch2_start, res.base_offset);
        SL_PASS(sl_partlog_set_high_watermark(pl, replica ? leo : res.last_offset + 1));
        leo = res.last_offset + 1;
        if (i % 50 == 0)
            sl_partlog_enforce_retention(pl, 5000);
    }
    atomic_store(&r.target, leo);
    SL_EQ(pthread_join(t, NULL), 0);
    SL_TRUE(r.batches_seen > 0);
    SL_TRUE(sl_partlog_segment_count(pl) > 1);
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_TRUE(rr.log_start_offset > 0); /* retention did run while the reader read */
    sl_buf_free(&req);
    sl_partlog_close(pl);
    drop_dir(dir);
}

static void reads_race_appends_rolls_and_retention(void) {
    race_appends(false);
}

static void replica_reads_race_appends_rolls_and_retention(void) {
    race_appends(true);
}

/* ---- transactions ---- */

/* Appends one transactional batch of 'n' records for (pid, epoch) with sequence 'seq'. */
static int64_t append_txn(sl_partlog *pl, int64_t pid, int16_t epoch, int32_t seq, int n) {
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    for (int i = 0; i < n; i++)
        SL_PASS(sl_batch_builder_add(&b, 1000 + i, "k", 1, "v", 1, NULL, 0));
    b.producer_id = pid;
    b.producer_epoch = epoch;
    b.base_sequence = seq;
    b.flags = SL_BATCH_ATTR_TRANSACTIONAL;
    sl_batch_builder_finish(&b);
    int64_t records;
    char err[256];
    SL_PASS(sl_partlog_validate(pl, b.buf.data, b.buf.len, &records, err, sizeof(err)));
    sl_append_result res;
    int rc = sl_partlog_append(pl, b.buf.data, b.buf.len, 0, 1000, &res);
    sl_batch_builder_free(&b);
    if (rc)
        return rc;
    SL_PASS(sl_partlog_set_high_watermark(pl, res.last_offset + 1));
    return res.base_offset;
}

static int64_t marker(sl_partlog *pl, int64_t pid, int16_t epoch, int type) {
    int64_t off;
    int rc = sl_partlog_append_marker(pl, pid, epoch, type, 0, 1000, &off);
    if (rc)
        return rc;
    SL_PASS(sl_partlog_set_high_watermark(pl, off + 1));
    return off;
}

/* The base offsets of the batches a read_committed reader gets from 'from' on. */
static size_t committed_batches(sl_partlog *pl, int64_t from, int64_t *bases, size_t cap) {
    sl_buf out = SL_BUF_INIT;
    sl_read_result res;
    sl_txn_range *ab;
    size_t nab;
    SL_PASS(sl_partlog_read_committed(pl, from, 1 << 20, &out, &res, &ab, &nab));
    free(ab);
    size_t n = 0;
    for (size_t pos = 0; pos < out.len && n < cap;) {
        sl_batch_header h;
        size_t total = sl_batch_total_size(out.data + pos, out.len - pos);
        SL_PASS(sl_batch_header_parse(out.data + pos, total, &h));
        bases[n++] = h.base_offset;
        pos += total;
    }
    sl_buf_free(&out);
    return n;
}

static void transactions_bound_reads_and_survive_reopen(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    sl_read_result rr;
    /* Producer 7 opens a transaction at 0; producer 8 one at 2; 7 commits, 8 aborts. */
    SL_EQ(append_txn(pl, 7, 0, 0, 2), 0);
    SL_EQ(append_txn(pl, 8, 0, 0, 1), 2);
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.last_stable_offset, 0);
    SL_EQ(rr.high_watermark, 3);
    int64_t bases[16];
    SL_EQ(committed_batches(pl, 0, bases, 16), 0); /* nothing is decided yet */
    SL_EQ(marker(pl, 7, 0, SL_CONTROL_COMMIT), 3);
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.last_stable_offset, 2); /* 8's transaction still holds readers back */
    SL_EQ(committed_batches(pl, 0, bases, 16), 1);
    SL_EQ(bases[0], 0);
    SL_EQ(marker(pl, 8, 0, SL_CONTROL_ABORT), 4);
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.last_stable_offset, 5);
    SL_EQ(committed_batches(pl, 0, bases, 16), 4); /* data and markers: the reader filters */
    sl_txn_range *ab;
    size_t nab;
    SL_PASS(sl_partlog_aborted_txns(pl, 0, 5, &ab, &nab));
    SL_EQ(nab, 1);
    SL_EQ(ab[0].producer_id, 8);
    SL_EQ(ab[0].first_offset, 2);
    SL_EQ(ab[0].last_offset, 4);
    sl_batch_header h = {.attributes = SL_BATCH_ATTR_TRANSACTIONAL, .producer_id = 8,
                         .base_offset = 2};
    SL_TRUE(sl_txn_batch_aborted(ab, nab, &h));
    h.producer_id = 7;
    h.base_offset = 0;
    SL_TRUE(!sl_txn_batch_aborted(ab, nab, &h));
    free(ab);
    SL_PASS(sl_partlog_aborted_txns(pl, 5, 6, &ab, &nab));
    SL_EQ(nab, 0); /* the range ended before */

    /* 7 opens another transaction; the coordinator aborts it with a newer epoch, fencing 7's
     * epoch 0: its next batch is refused. */
    SL_EQ(append_txn(pl, 7, 0, 2, 1), 5);
    SL_EQ(marker(pl, 7, 1, SL_CONTROL_ABORT), 6);
    SL_EQ(append_txn(pl, 7, 0, 3, 1), SL_EFENCED);
    /* And an open transaction across a reopen: the index comes back from the log. */
    SL_EQ(append_txn(pl, 9, 0, 0, 3), 7);
    sl_partlog_close(pl);
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.last_stable_offset, 7);
    sl_txn_range *open;
    size_t nopen;
    SL_PASS(sl_partlog_open_txns(pl, &open, &nopen));
    SL_EQ(nopen, 1);
    SL_EQ(open[0].producer_id, 9);
    SL_EQ(open[0].first_offset, 7);
    free(open);
    SL_PASS(sl_partlog_aborted_txns(pl, 0, 10, &ab, &nab));
    SL_EQ(nab, 2);
    free(ab);
    SL_EQ(append_txn(pl, 7, 0, 4, 1), SL_EFENCED); /* the fence survived too */
    SL_EQ(marker(pl, 9, 0, SL_CONTROL_COMMIT), 10);
    SL_EQ(marker(pl, 7, 0, SL_CONTROL_ABORT), 11); /* the coordinator's word is final */
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.last_stable_offset, 12);
    sl_partlog_close(pl);
    drop_dir(dir);
}

/* ---- replicas ---- */

/* Every stored byte of 'pl' from 'from' to its HW. */
static void read_all(sl_partlog *pl, int64_t from, sl_buf *out) {
    sl_read_result rr;
    out->len = 0;
    for (;;) {
        size_t before = out->len;
        SL_PASS(sl_partlog_read(pl, from, 1 << 20, out, &rr));
        if (out->len == before)
            return;
        for (size_t pos = before; pos < out->len;) {
            sl_batch_header h;
            size_t total = sl_batch_total_size(out->data + pos, out->len - pos);
            SL_PASS(sl_batch_header_parse(out->data + pos, total, &h));
            from = h.base_offset + h.last_offset_delta + 1;
            pos += total;
        }
    }
}

static void replicas_copy_bytes_and_truncate_divergent_tails(void) {
    char *leader_dir = make_dir(), *follower_dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 700; /* several segments */
    sl_partlog *leader, *follower;
    SL_PASS(sl_partlog_open(leader_dir, "orders-3", &conf, &leader));
    SL_PASS(sl_partlog_open(follower_dir, "orders-3", &conf, &follower));
    sl_buf req = SL_BUF_INIT;
    for (int i = 0; i < 12; i++) {
        req.len = 0;
        build(&req, 1 + i % 3, NULL, 1000 * i, 40);
        sl_append_result res;
        SL_PASS(sl_partlog_append(leader, req.data, req.len, 3, 5000, &res));
        SL_PASS(sl_partlog_set_high_watermark(leader, res.last_offset + 1));
    }
    SL_EQ(append_txn(leader, 7, 0, 0, 2), 24);
    SL_EQ(marker(leader, 7, 0, SL_CONTROL_ABORT), 26);
    sl_buf all = SL_BUF_INIT, copy = SL_BUF_INIT;
    read_all(leader, 0, &all);
    /* The follower takes the leader's bytes in two fetches; they must continue its log (a gap
     * is allowed: compaction leaves them). */
    size_t half = 0;
    while (half < all.len / 2)
        half += sl_batch_total_size(all.data + half, all.len - half);
    SL_PASS(sl_partlog_append_replica(follower, all.data, half, 5000));
    SL_EQ(sl_partlog_append_replica(follower, all.data, half, 5000), SL_ERANGE); /* again */
    for (size_t pos = half; pos < all.len;) { /* then a batch a fetch: segments roll */
        size_t total = sl_batch_total_size(all.data + pos, all.len - pos);
        SL_PASS(sl_partlog_append_replica(follower, all.data + pos, total, 5000));
        pos += total;
    }
    sl_read_result lr, fr;
    sl_partlog_offsets(leader, &lr);
    SL_PASS(sl_partlog_set_high_watermark(follower, lr.high_watermark));
    read_all(follower, 0, &copy);
    SL_EQ(copy.len, all.len);
    SL_TRUE(memcmp(copy.data, all.data, all.len) == 0); /* byte for byte, epochs included */
    sl_partlog_offsets(follower, &fr);
    SL_EQ(fr.last_stable_offset, lr.last_stable_offset);
    sl_txn_range *ab;
    size_t nab;
    SL_PASS(sl_partlog_aborted_txns(follower, 0, fr.high_watermark, &ab, &nab));
    SL_EQ(nab, 1);
    free(ab);
    SL_TRUE(sl_partlog_segment_count(follower) > 2);
    /* A corrupt batch is refused whole. */
    all.data[all.len - 3] ^= 1;
    SL_EQ(sl_partlog_append_replica(follower, all.data, all.len, 5000), SL_ECORRUPT);
    all.data[all.len - 3] ^= 1;

    /* A divergent tail: truncate in the middle of a batch (it goes whole), across segments. */
    size_t segs = sl_partlog_segment_count(follower);
    SL_PASS(sl_partlog_truncate(follower, 17));
    sl_partlog_offsets(follower, &fr);
    SL_TRUE(fr.log_end_offset <= 17 && fr.log_end_offset >= 15);
    SL_TRUE(fr.high_watermark <= fr.log_end_offset);
    SL_TRUE(sl_partlog_segment_count(follower) < segs);
    SL_EQ(sl_partlog_truncate(follower, -1), SL_ERANGE);
    /* It catches up again from its LEO, and the result is the leader's log again, also after a
     * reopen. */
    size_t from = 0;
    while (from < all.len) {
        sl_batch_header h;
        size_t total = sl_batch_total_size(all.data + from, all.len - from);
        SL_PASS(sl_batch_header_parse(all.data + from, total, &h));
        if (h.base_offset >= fr.log_end_offset)
            break;
        from += total;
    }
    SL_PASS(sl_partlog_append_replica(follower, all.data + from, all.len - from, 5000));
    sl_partlog_close(follower);
    SL_PASS(sl_partlog_open(follower_dir, "orders-3", &conf, &follower));
    read_all(follower, 0, &copy);
    SL_EQ(copy.len, all.len);
    SL_TRUE(memcmp(copy.data, all.data, all.len) == 0);
    sl_partlog_offsets(follower, &fr);
    SL_EQ(fr.last_stable_offset, lr.last_stable_offset);
    sl_buf_free(&req);
    sl_buf_free(&all);
    sl_buf_free(&copy);
    sl_partlog_close(leader);
    sl_partlog_close(follower);
    drop_dir(leader_dir);
    drop_dir(follower_dir);
}

/* Everything a replica fetching from 'from' gets from 'pl', one fetch after another (each stops
 * at a segment's end). */
static sl_buf replica_copy(sl_partlog *pl, int64_t from, size_t *fetches) {
    sl_buf copy = SL_BUF_INIT;
    sl_read_result rr;
    for (*fetches = 0;; ++*fetches) {
        size_t before = copy.len;
        SL_PASS(sl_partlog_read_replica(pl, from, 1 << 20, &copy, &rr));
        if (copy.len == before)
            return copy;
        for (size_t pos = before; pos < copy.len;) {
            sl_batch_header h;
            size_t total = sl_batch_total_size(copy.data + pos, copy.len - pos);
            SL_PASS(sl_batch_header_parse(copy.data + pos, total, &h));
            from = h.base_offset + h.last_offset_delta + 1;
            pos += total;
        }
    }
}

/* A follower whose log ends before the leader's log start empties itself to start there, then
 * copies the leader's bytes from that point; a reopen keeps the new start. */
static void reset_starts_empty_at_the_leaders_log_start(void) {
    char *ldir = make_dir(), *fdir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 600;
    sl_partlog *leader, *follower;
    SL_PASS(sl_partlog_open(ldir, "t-0", &conf, &leader));
    SL_PASS(sl_partlog_open(fdir, "t-0", &conf, &follower));
    model *lm = model_new(), *fm = model_new();
    for (int i = 0; i < 10; i++)
        produce(leader, lm, 1 + i % 3, 1000 * i, 60, 5000);
    produce(follower, fm, 2, 0, 60, 5000); /* what the follower had: to be dropped */
    sl_read_result rr;
    size_t fetches;
    sl_buf all = replica_copy(leader, 0, &fetches);
    SL_EQ(all.len, lm->all.len);
    /* The leader's "log start": the base of its fourth batch. */
    size_t pos = 0;
    sl_batch_header h;
    for (int k = 0; k < 4; k++) {
        size_t total = sl_batch_total_size(all.data + pos, all.len - pos);
        SL_PASS(sl_batch_header_parse(all.data + pos, total, &h));
        if (k < 3)
            pos += total;
    }
    int64_t start = h.base_offset;
    SL_TRUE(start > fm->leo);
    SL_FAIL(sl_partlog_reset(follower, fm->leo - 1), SL_EINVAL); /* would drop what it has */
    SL_PASS(sl_partlog_reset(follower, start));
    sl_partlog_offsets(follower, &rr);
    SL_EQ(rr.log_start_offset, start);
    SL_EQ(rr.log_end_offset, start);
    SL_EQ(rr.high_watermark, start);
    int64_t bases[8];
    SL_EQ(list_bases(fdir, bases, 8), 1);
    SL_EQ(bases[0], start);
    sl_buf out = SL_BUF_INIT;
    SL_FAIL(sl_partlog_read_replica(follower, start - 1, 1 << 20, &out, &rr), SL_ERANGE);
    /* The leader's batches from 'start' on append as they are. */
    sl_buf rest = replica_copy(leader, start, &fetches);
    SL_PASS(sl_partlog_append_replica(follower, rest.data, rest.len, 0));
    SL_EQ(rest.len, all.len - pos);
    SL_TRUE(memcmp(rest.data, all.data + pos, rest.len) == 0);
    sl_partlog_close(follower);
    SL_PASS(sl_partlog_open(fdir, "t-0", &conf, &follower));
    sl_partlog_offsets(follower, &rr);
    SL_EQ(rr.log_start_offset, start);
    SL_EQ(rr.log_end_offset, lm->leo);
    sl_buf_free(&all);
    sl_buf_free(&rest);
    sl_buf_free(&out);
    sl_partlog_close(follower);
    sl_partlog_close(leader);
    model_free(lm);
    model_free(fm);
    drop_dir(ldir);
    drop_dir(fdir);
}

static void read_replica_goes_past_the_high_watermark_to_the_leo(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 600; /* several segments */
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    model *m = model_new();
    sl_read_result rr;
    sl_buf out = SL_BUF_INIT;
    /* An empty log: nothing at the LEO, out of range past it, the offsets filled either way. */
    SL_PASS(sl_partlog_read_replica(pl, 0, 1 << 20, &out, &rr));
    SL_EQ(out.len, 0);
    memset(&rr, 0xab, sizeof(rr));
    SL_FAIL(sl_partlog_read_replica(pl, 1, 1 << 20, &out, &rr), SL_ERANGE);
    SL_EQ(rr.log_end_offset, 0);
    SL_EQ(rr.log_start_offset, 0);
    for (int i = 0; i < 12; i++) {
        produce(pl, m, 1 + i % 3, 1000 * i, 60, 5000);
        if (i == 4)
            commit(pl); /* the HW stays in an early segment */
    }
    sl_partlog_offsets(pl, &rr);
    int64_t hw = rr.high_watermark;
    SL_EQ(rr.log_end_offset, m->leo);
    SL_TRUE(hw > 0 && hw < m->leo);
    size_t segs = sl_partlog_segment_count(pl);
    SL_TRUE(segs > 2);
    /* From every offset, the whole batch holding it, past the HW too; a consumer's read stops
     * at the HW. */
    for (int64_t off = 0; off < m->leo; off++) {
        out.len = 0;
        SL_PASS(sl_partlog_read_replica(pl, off, 1, &out, &rr));
        SL_EQ(check_read(m, off, &out), 1);
        SL_EQ(rr.high_watermark, hw);
        SL_EQ(rr.log_end_offset, m->leo);
        out.len = 0;
        /* Past the HW a reader gets nothing (yet), not an error. */
        SL_PASS(sl_partlog_read(pl, off, 1, &out, &rr));
        SL_EQ(out.len == 0, off >= hw);
    }
    /* Large fetches take the log a segment at a time, byte for byte, and stop at the LEO. */
    size_t fetches;
    sl_buf copy = replica_copy(pl, 0, &fetches);
    int64_t from = m->leo;
    SL_EQ(fetches, segs);
    SL_EQ(copy.len, m->all.len);
    SL_TRUE(memcmp(copy.data, m->all.data, m->all.len) == 0);
    out.len = 0;
    SL_FAIL(sl_partlog_read_replica(pl, m->leo + 1, 1 << 20, &out, &rr), SL_ERANGE);
    SL_FAIL(sl_partlog_read_replica(pl, -1, 1 << 20, &out, &rr), SL_ERANGE);
    SL_EQ(out.len, 0);
    /* What is appended is readable at once, without the HW moving. */
    produce(pl, m, 2, 20000, 60, 5000);
    SL_PASS(sl_partlog_read_replica(pl, from, 1 << 20, &out, &rr));
    SL_EQ(check_read(m, from, &out), 1);
    SL_EQ(rr.high_watermark, hw);
    sl_buf_free(&copy);
    sl_buf_free(&out);
    sl_partlog_close(pl);
    model_free(m);
    drop_dir(dir);
}

/* The batches of a log by base offset and leader epoch: the oracle for epoch_end. */
typedef struct epoch_log {
    int64_t base[256];
    int32_t epoch[256];
    size_t n;
} epoch_log;

static void epoch_log_add(epoch_log *el, int64_t base, int32_t epoch) {
    SL_TRUE(el->n < 256);
    el->base[el->n] = base;
    el->epoch[el->n++] = epoch;
}

/* Forgets the batches a truncation to 'leo' removed. */
static void epoch_log_cut(epoch_log *el, int64_t leo) {
    while (el->n > 0 && el->base[el->n - 1] >= leo)
        el->n--;
}

/* One batch of 'n' records appended as leader of 'epoch'; returns its base offset. */
static int64_t epoch_batch(sl_partlog *pl, epoch_log *el, int32_t epoch, int n, int64_t ts) {
    sl_buf req = SL_BUF_INIT;
    build(&req, n, NULL, ts, 60);
    sl_append_result res;
    SL_PASS(sl_partlog_append(pl, req.data, req.len, epoch, ts, &res));
    epoch_log_add(el, res.base_offset, epoch);
    sl_buf_free(&req);
    return res.base_offset;
}

static void expect_epoch_end(sl_partlog *pl, int32_t epoch, int32_t want_epoch,
                             int64_t want_end) {
    int32_t found = -7;
    int64_t end = -7;
    SL_PASS(sl_partlog_epoch_end(pl, epoch, &found, &end));
    if (found != want_epoch || end != want_end)
        SL_TEST_FAIL_("epoch_end(%d) = (%d, %lld), expected (%d, %lld)", (int)epoch, (int)found,
                      (long long)end, (int)want_epoch, (long long)want_end);
}

/* Every epoch from -1 to 9 against a scan of the batches the log still holds (which does not
 * rely on epochs being ordered). */
static void check_epoch_ends(sl_partlog *pl, const epoch_log *el) {
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    for (int32_t e = -1; e <= 9; e++) {
        int32_t found = -1;
        for (size_t i = 0; i < el->n; i++)
            if (el->base[i] >= rr.log_start_offset && el->epoch[i] <= e && el->epoch[i] > found)
                found = el->epoch[i];
        int64_t end = found < 0 ? rr.log_start_offset : rr.log_end_offset;
        for (size_t i = 0; found >= 0 && i < el->n; i++) {
            if (el->base[i] >= rr.log_start_offset && el->epoch[i] > found) {
                end = el->base[i];
                break;
            }
        }
        expect_epoch_end(pl, e, found, end);
    }
}

static bool is_segment_base(const char *dir, int64_t offset) {
    int64_t bases[64];
    size_t n = list_bases(dir, bases, 64);
    for (size_t i = 0; i < n; i++)
        if (bases[i] == offset)
            return true;
    return false;
}

static void epoch_end_answers_offsets_for_leader_epoch(void) {
    char *dir = make_dir();
    sl_logconf conf = test_conf();
    conf.segment_bytes = 700; /* several segments */
    conf.index_interval_bytes = 400; /* index entries in each, batches between them */
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    epoch_log el = {0};
    /* An empty log knows no epoch. */
    expect_epoch_end(pl, 0, -1, 0);
    expect_epoch_end(pl, 5, -1, 0);
    expect_epoch_end(pl, -1, -1, 0);

    /* Epoch 0, then epoch 2 from a segment's start; in epoch 2 a transaction whose marker, the
     * first batch of epoch 5, lies inside a segment. */
    for (int i = 0; i < 7; i++)
        epoch_batch(pl, &el, 0, 1 + i % 3, 1000 + 100 * i);
    SL_PASS(sl_partlog_roll_if_due(pl, INT64_MAX / 2));
    int64_t b2 = epoch_batch(pl, &el, 2, 2, 100000);
    for (int i = 1; i < 5; i++)
        epoch_batch(pl, &el, 2, 1 + i % 3, 100000 + 100 * i);
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    SL_PASS(sl_batch_builder_add(&b, 101000, "k", 1, "v", 1, NULL, 0));
    b.producer_id = 7;
    b.producer_epoch = 0;
    b.base_sequence = 0;
    b.flags = SL_BATCH_ATTR_TRANSACTIONAL;
    sl_batch_builder_finish(&b);
    sl_append_result res;
    SL_PASS(sl_partlog_append(pl, b.buf.data, b.buf.len, 2, 101000, &res));
    sl_batch_builder_free(&b);
    epoch_log_add(&el, res.base_offset, 2);
    int64_t b5;
    SL_PASS(sl_partlog_append_marker(pl, 7, 0, SL_CONTROL_COMMIT, 5, 200000, &b5));
    epoch_log_add(&el, b5, 5);
    for (int i = 0; i < 5; i++)
        epoch_batch(pl, &el, 5, 1 + i % 3, 200000 + 100 * i);
    SL_PASS(sl_partlog_roll_if_due(pl, INT64_MAX / 2)); /* an empty active segment at the end */
    commit(pl);
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    int64_t leo = rr.log_end_offset;
    SL_TRUE(sl_partlog_segment_count(pl) > 4);
    SL_TRUE(is_segment_base(dir, b2));
    SL_TRUE(!is_segment_base(dir, b5));
    SL_TRUE(is_segment_base(dir, leo));

    for (int pass = 0; pass < 2; pass++) { /* and the same after a reopen */
        expect_epoch_end(pl, 0, 0, b2);
        expect_epoch_end(pl, 1, 0, b2);
        expect_epoch_end(pl, 2, 2, b5); /* the marker counts */
        expect_epoch_end(pl, 3, 2, b5);
        expect_epoch_end(pl, 5, 5, leo);
        expect_epoch_end(pl, 7, 5, leo);
        expect_epoch_end(pl, -1, -1, 0);
        check_epoch_ends(pl, &el);
        sl_partlog_close(pl);
        SL_PASS(sl_partlog_open(dir, "orders-3", &conf, &pl));
    }

    /* Retention deletes the segments of epoch 0: the log now starts with epoch 2. */
    conf.retention_ms = 200000;
    sl_partlog_set_conf(pl, &conf);
    SL_TRUE(sl_partlog_enforce_retention(pl, 250000) >= 2);
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_start_offset, b2);
    expect_epoch_end(pl, 0, -1, b2);
    expect_epoch_end(pl, 1, -1, b2);
    expect_epoch_end(pl, 2, 2, b5);
    expect_epoch_end(pl, 7, 5, leo);
    expect_epoch_end(pl, -1, -1, b2);
    check_epoch_ends(pl, &el);
    sl_buf out = SL_BUF_INIT;
    SL_FAIL(sl_partlog_read_replica(pl, b2 - 1, 1 << 20, &out, &rr), SL_ERANGE);

    /* Truncations: epoch 5 down to its marker, then gone, then part of epoch 2. */
    SL_PASS(sl_partlog_truncate(pl, b5 + 1));
    epoch_log_cut(&el, b5 + 1);
    expect_epoch_end(pl, 5, 5, b5 + 1);
    expect_epoch_end(pl, 9, 5, b5 + 1);
    expect_epoch_end(pl, 4, 2, b5);
    check_epoch_ends(pl, &el);
    SL_PASS(sl_partlog_truncate(pl, b5));
    epoch_log_cut(&el, b5);
    expect_epoch_end(pl, 5, 2, b5);
    expect_epoch_end(pl, 2, 2, b5);
    check_epoch_ends(pl, &el);
    int64_t cut = el.base[el.n - 4]; /* a batch of epoch 2 inside the log */
    SL_TRUE(cut > b2);
    SL_PASS(sl_partlog_truncate(pl, cut));
    epoch_log_cut(&el, cut);
    expect_epoch_end(pl, 7, 2, cut);
    check_epoch_ends(pl, &el);
    /* To the log start: an empty log that does not start at 0. */
    SL_PASS(sl_partlog_truncate(pl, b2));
    epoch_log_cut(&el, b2);
    expect_epoch_end(pl, 2, -1, b2);
    expect_epoch_end(pl, 7, -1, b2);
    expect_epoch_end(pl, -1, -1, b2);
    /* A new leader's epoch follows on. */
    epoch_batch(pl, &el, 9, 2, 300000);
    int64_t b9 = epoch_batch(pl, &el, 9, 3, 300100);
    SL_EQ(b9, b2 + 2);
    expect_epoch_end(pl, 9, 9, b2 + 5);
    expect_epoch_end(pl, 8, -1, b2);
    check_epoch_ends(pl, &el);
    sl_buf_free(&out);
    sl_partlog_close(pl);
    drop_dir(dir);
}

SL_TESTS({"append assigns offsets and reads return stored batches",
          append_assigns_offsets_and_reads_back},
         {"high watermark bounds reads and only moves forward", high_watermark_bounds_reads},
         {"max_bytes is a soft limit: one whole batch at least, no partial ones",
          max_bytes_is_a_soft_limit},
         {"lookups by offset use the sparse index", lookups_use_the_offset_index},
         {"offset_for_time across segments with out-of-order timestamps",
          offset_for_time_across_segments},
         {"segments roll at segment.bytes", segments_roll_at_segment_bytes},
         {"segments roll at segment.ms", segments_roll_at_segment_ms},
         {"retention by time moves the log start and deletes files", retention_by_time},
         {"retention keeps what is above the high watermark",
          retention_keeps_what_is_above_the_high_watermark},
         {"retention by bytes", retention_by_bytes},
         {"reopen gives the same log", reopen_gives_the_same_log},
         {"recovery from torn tails", recovery_from_torn_tails},
         {"damaged indexes of closed segments are rebuilt",
          damaged_indexes_of_closed_segments_are_rebuilt},
         {"validate refuses what it must", validate_refuses_what_it_must},
         {"flushing as configured", flushing_as_configured},
         {"LogAppendTime restamps batches and keeps the CRC valid",
          log_append_time_restamps_batches},
         {"reads race appends, rolls and retention", reads_race_appends_rolls_and_retention},
         {"replica reads and epoch lookups race appends, rolls and retention",
          replica_reads_race_appends_rolls_and_retention},
         {"transactions bound reads and survive a reopen",
          transactions_bound_reads_and_survive_reopen},
         {"replicas copy the leader's bytes and truncate divergent tails",
          replicas_copy_bytes_and_truncate_divergent_tails},
         {"read_replica goes past the high watermark to the LEO",
          read_replica_goes_past_the_high_watermark_to_the_leo},
         {"epoch_end answers OffsetsForLeaderEpoch", epoch_end_answers_offsets_for_leader_epoch},
         {"reset starts an empty log at the leader's log start",
          reset_starts_empty_at_the_leaders_log_start})

/* Log segments: appends, lookups by offset and by time through the sparse indexes, reopening,
 * recovery of torn tails and rebuilding of damaged indexes. Each test works in its own
 * temporary directory and checks results against a model of what it appended. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "log/batch.h"
#include "log/segment.h"
#include "sl_test.h"

/* ---- helpers ---- */

static char *make_dir(void) {
    char tmpl[] = "/tmp/sl_segment_test.XXXXXX";
    SL_TRUE(mkdtemp(tmpl) != NULL);
    char *d = strdup(tmpl);
    SL_TRUE(d != NULL);
    return d;
}

static void drop_dir(char *dir) {
    SL_PASS(sl_fs_remove_tree(dir));
    struct stat st;
    SL_TRUE(stat(dir, &st) != 0);
    free(dir);
}

static uint64_t rng_state;

static uint64_t rng(void) { /* xorshift64*: deterministic, so failures reproduce */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

#define MAX_BATCHES 2000
#define MAX_RECORDS 20000

/* What a test appended, to check the segment against. */
typedef struct model {
    int64_t base;
    int64_t next;
    sl_buf bytes; /* the whole .log as it should be */
    int64_t batch_base[MAX_BATCHES];
    int64_t batch_pos[MAX_BATCHES];
    int64_t batch_size[MAX_BATCHES];
    size_t nbatches;
    int64_t ts[MAX_RECORDS]; /* record timestamps by offset - base */
} model;

static model *model_new(int64_t base) {
    model *m = calloc(1, sizeof(*m));
    SL_TRUE(m != NULL);
    m->base = m->next = base;
    return m;
}

static void model_free(model *m) {
    sl_buf_free(&m->bytes);
    free(m);
}

/* Builds one batch of 'n' records with the given timestamps (NULL: 1000 + offset), assigns it
 * the next offset and appends it to 'seg' and the model. */
static void append_batch(sl_segment *seg, model *m, int n, const int64_t *ts, size_t value_len,
                         int64_t interval) {
    static uint8_t value[4096];
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    for (int i = 0; i < n; i++) {
        int64_t off = m->next + i;
        int64_t t = ts ? ts[i] : 1000 + off;
        char key[24];
        int kl = snprintf(key, sizeof(key), "key-%lld", (long long)off);
        memset(value, 'a' + (int)(off % 26), value_len);
        SL_PASS(sl_batch_builder_add(&b, t, key, (size_t)kl, value, value_len, NULL, 0));
        m->ts[off - m->base] = t;
    }
    sl_batch_builder_finish(&b);
    sl_batch_set_base_offset(b.buf.data, m->next);
    SL_PASS(sl_segment_append(seg, b.buf.data, b.buf.len, interval));
    SL_TRUE(m->nbatches < MAX_BATCHES);
    m->batch_base[m->nbatches] = m->next;
    m->batch_pos[m->nbatches] = (int64_t)m->bytes.len;
    m->batch_size[m->nbatches] = (int64_t)b.buf.len;
    m->nbatches++;
    SL_PASS(sl_buf_append(&m->bytes, b.buf.data, b.buf.len));
    m->next += n;
    sl_batch_builder_free(&b);
}

/* Index in the model of the batch holding 'offset'. */
static size_t batch_of(const model *m, int64_t offset) {
    size_t i = 0;
    while (i + 1 < m->nbatches && m->batch_base[i + 1] <= offset)
        i++;
    return i;
}

/* First offset among the first 'nbatches' batches whose timestamp is >= ts, or -1. */
static int64_t model_find_time(const model *m, size_t nbatches, int64_t ts) {
    int64_t end = nbatches < m->nbatches ? m->batch_base[nbatches] : m->next;
    for (int64_t off = m->base; off < end; off++)
        if (m->ts[off - m->base] >= ts)
            return off;
    return -1;
}

/* Every lookup a segment answers agrees with the model. */
static void check_against_model(sl_segment *seg, const model *m) {
    SL_EQ(seg->base_offset, m->base);
    SL_EQ(seg->next_offset, m->next);
    SL_EQ(seg->size, (int64_t)m->bytes.len);
    sl_buf all = SL_BUF_INIT;
    if (m->bytes.len) {
        SL_PASS(sl_segment_read(seg, 0, m->bytes.len, &all));
        SL_TRUE(memcmp(all.data, m->bytes.data, m->bytes.len) == 0);
    }
    sl_buf_free(&all);
    for (int64_t off = m->base; off < m->next; off++) {
        int64_t pos = -1;
        SL_PASS(sl_segment_find(seg, off, seg->size, &pos));
        size_t bi = batch_of(m, off);
        if (pos != m->batch_pos[bi])
            SL_TEST_FAIL_("offset %lld found at %lld, expected %lld", (long long)off,
                          (long long)pos, (long long)m->batch_pos[bi]);
    }
    int64_t pos;
    SL_FAIL(sl_segment_find(seg, m->next, seg->size, &pos), SL_ERANGE);
    /* By time: every timestamp in the segment, one below and one above each. */
    int64_t max_ts = -1;
    for (int64_t off = m->base; off < m->next; off++)
        if (m->ts[off - m->base] > max_ts)
            max_ts = m->ts[off - m->base];
    if (m->next > m->base)
        SL_EQ(seg->max_timestamp, max_ts);
    for (int64_t off = m->base; off < m->next; off++) {
        for (int64_t d = -1; d <= 1; d++) {
            int64_t q = m->ts[off - m->base] + d, got = -7;
            int64_t want = model_find_time(m, m->nbatches, q);
            int rc = sl_segment_find_time(seg, q, seg->size, &got);
            if (want < 0 ? rc != SL_ERANGE : (rc != 0 || got != want))
                SL_TEST_FAIL_("find_time(%lld): rc %d offset %lld, expected %lld", (long long)q, rc,
                              (long long)got, (long long)want);
        }
    }
}

static void file_path(char *out, size_t len, const sl_segment *seg, const char *ext) {
    snprintf(out, len, "%s%s", seg->path, ext);
}

static int64_t file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (int64_t)st.st_size;
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

static void truncate_to(const char *path, int64_t size) {
    SL_EQ(truncate(path, size), 0);
}

/* A segment of 'nbatches' batches of 1-4 records with timestamps out of order inside and across
 * batches. The newest of them is a third of the way in, so the time index grows and then stops,
 * and the maximum lies well before the last index entry. */
static sl_segment *filled_segment(const char *dir, int64_t base, model *m, int nbatches,
                                  int64_t interval) {
    sl_segment *seg;
    SL_PASS(sl_segment_create(dir, base, &seg));
    rng_state = 0x1234567u + (uint64_t)base;
    for (int i = 0; i < nbatches; i++) {
        int n = 1 + (int)(rng() % 4);
        int64_t ts[4];
        for (int k = 0; k < n; k++)
            ts[k] = 100000 + (int64_t)i * 10 + (int64_t)(rng() % 40) - 20;
        if (i == nbatches / 3)
            ts[0] = 900000; /* newer than everything after it */
        append_batch(seg, m, n, ts, 20 + (size_t)(rng() % 200), interval);
    }
    return seg;
}

/* ---- tests ---- */

static void files_have_kafka_names(void) {
    char *dir = make_dir();
    char path[4200];
    sl_segment_path(path, sizeof(path), dir, 42);
    char want[4200];
    snprintf(want, sizeof(want), "%s/00000000000000000042", dir);
    SL_STREQ(path, want);
    sl_segment_path(path, sizeof(path), dir, INT64_MAX);
    snprintf(want, sizeof(want), "%s/09223372036854775807", dir);
    SL_STREQ(path, want);

    sl_segment *seg;
    SL_PASS(sl_segment_create(dir, 1234567, &seg));
    static const char *const exts[] = {".log", ".index", ".timeindex"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/00000000000001234567%s", dir, exts[i]);
        SL_EQ(file_size(path), 0);
    }
    SL_EQ(seg->next_offset, 1234567);
    SL_EQ(seg->size, 0);
    SL_EQ(seg->max_timestamp, -1);
    SL_EQ(seg->first_timestamp, -1);
    sl_segment_unref(seg);
    drop_dir(dir);
}

static void append_and_read_back(void) {
    char *dir = make_dir();
    model *m = model_new(100);
    sl_segment *seg;
    SL_PASS(sl_segment_create(dir, 100, &seg));
    for (int i = 0; i < 5; i++)
        append_batch(seg, m, 3, NULL, 50, 4096);
    SL_EQ(seg->next_offset, 115);
    SL_EQ(seg->first_timestamp, 1100);
    SL_EQ(seg->max_timestamp, 1114);
    check_against_model(seg, m);
    char path[4200];
    file_path(path, sizeof(path), seg, ".log");
    SL_EQ(file_size(path), (int64_t)m->bytes.len);

    /* The stored batches carry their assigned base offsets and remain valid. */
    for (size_t i = 0; i < m->nbatches; i++) {
        int64_t size;
        SL_PASS(sl_segment_batch_size_at(seg, m->batch_pos[i], &size));
        SL_EQ(size, m->batch_size[i]);
        sl_buf b = SL_BUF_INIT;
        SL_PASS(sl_segment_read(seg, m->batch_pos[i], (size_t)size, &b));
        sl_batch_header h;
        SL_PASS(sl_batch_validate(b.data, b.len, &h));
        SL_EQ(h.base_offset, 100 + 3 * (int64_t)i);
        sl_buf_free(&b);
    }
    /* Reads append to what the buffer holds. */
    sl_buf b = SL_BUF_INIT;
    SL_PASS(sl_buf_append(&b, "xy", 2));
    SL_PASS(sl_segment_read(seg, m->batch_pos[1], 10, &b));
    SL_EQ(b.len, 12);
    SL_TRUE(memcmp(b.data + 2, m->bytes.data + m->batch_pos[1], 10) == 0);
    SL_FAIL(sl_segment_read(seg, seg->size - 4, 10, &b), SL_ECORRUPT); /* past the end */
    sl_buf_free(&b);

    int64_t pos;
    /* Below the base: the first batch. */
    SL_PASS(sl_segment_find(seg, 50, seg->size, &pos));
    SL_EQ(pos, 0);
    /* 'limit' hides the batches at and after it. */
    SL_FAIL(sl_segment_find(seg, 109, m->batch_pos[3], &pos), SL_ERANGE);
    SL_PASS(sl_segment_find(seg, 109, m->batch_pos[3] + m->batch_size[3], &pos));
    SL_EQ(pos, m->batch_pos[3]);
    SL_FAIL(sl_segment_find_time(seg, 1110, m->batch_pos[3], &pos), SL_ERANGE);
    SL_PASS(sl_segment_find_time(seg, 1110, m->batch_pos[4], &pos));
    SL_EQ(pos, 110);
    SL_FAIL(sl_segment_find_time(seg, 1115, seg->size, &pos), SL_ERANGE);
    SL_PASS(sl_segment_flush(seg));
    sl_segment_unref(seg);
    model_free(m);
    drop_dir(dir);
}

static void lookups_go_through_the_index(void) {
    char *dir = make_dir();
    model *m = model_new(0);
    sl_segment *seg;
    SL_PASS(sl_segment_create(dir, 0, &seg));
    for (int i = 0; i < 400; i++)
        append_batch(seg, m, 1 + i % 3, NULL, 100, 512);
    SL_TRUE(seg->nidx > 10);
    SL_TRUE(seg->ntidx > 10);
    /* Entries are sparse: about one per 512 bytes, each at a batch start with its offset. */
    SL_TRUE(seg->nidx < m->nbatches / 2);
    SL_TRUE((int64_t)seg->nidx <= seg->size / 512 + 1);
    SL_EQ(seg->idx[0].rel_offset, 0);
    SL_EQ(seg->idx[0].position, 0);
    for (size_t i = 0; i < seg->nidx; i++) {
        size_t bi = batch_of(m, seg->idx[i].rel_offset);
        SL_EQ(m->batch_base[bi], seg->idx[i].rel_offset);
        SL_EQ(m->batch_pos[bi], seg->idx[i].position);
        if (i > 0)
            SL_TRUE(seg->idx[i].position - seg->idx[i - 1].position >= 512);
    }
    char path[4200];
    file_path(path, sizeof(path), seg, ".index");
    SL_EQ(file_size(path), (int64_t)seg->nidx * 8);
    file_path(path, sizeof(path), seg, ".timeindex");
    SL_EQ(file_size(path), (int64_t)seg->ntidx * 12);
    check_against_model(seg, m);

    /* Spoil the first batch's magic on disk. A lookup that used the index starts past it and
     * still succeeds; only one that scans from the start meets it. */
    file_path(path, sizeof(path), seg, ".log");
    uint8_t bad = 0x7f;
    write_at(path, SL_BATCH_OFF_MAGIC, &bad, 1);
    int64_t pos;
    SL_FAIL(sl_segment_find(seg, 0, seg->size, &pos), SL_ECORRUPT);
    for (int64_t off = seg->idx[1].rel_offset; off < m->next; off++) {
        SL_PASS(sl_segment_find(seg, off, seg->size, &pos));
        SL_EQ(pos, m->batch_pos[batch_of(m, off)]);
    }
    sl_segment_unref(seg);
    model_free(m);
    drop_dir(dir);
}

static void find_time_with_out_of_order_timestamps(void) {
    char *dir = make_dir();
    model *m = model_new(5000);
    sl_segment *seg = filled_segment(dir, 5000, m, 300, 256);
    SL_TRUE(seg->ntidx > 1);
    SL_EQ(seg->max_timestamp, 900000);
    check_against_model(seg, m);
    /* Before everything: the first offset. After everything: none. */
    int64_t off;
    SL_PASS(sl_segment_find_time(seg, INT64_MIN, seg->size, &off));
    SL_EQ(off, 5000);
    SL_FAIL(sl_segment_find_time(seg, 900001, seg->size, &off), SL_ERANGE);
    SL_FAIL(sl_segment_find_time(seg, INT64_MAX, seg->size, &off), SL_ERANGE);

    /* A hand-made case: inside a batch the first record at or after ts wins, not the
     * smallest timestamp above it. */
    model *m2 = model_new(0);
    sl_segment *s2;
    char sub[4200];
    snprintf(sub, sizeof(sub), "%s/b", dir);
    SL_PASS(sl_fs_mkdirs(sub));
    SL_PASS(sl_segment_create(sub, 0, &s2));
    static const int64_t a[] = {50, 40};             /* offsets 0-1 */
    static const int64_t b[] = {100, 300, 200, 250}; /* offsets 2-5 */
    static const int64_t c[] = {600};                /* offset 6 */
    append_batch(s2, m2, 2, a, 10, 1);
    append_batch(s2, m2, 4, b, 10, 1);
    append_batch(s2, m2, 1, c, 10, 1);
    static const struct {
        int64_t ts, want;
    } q[] = {{0, 0}, {45, 0}, {50, 0}, {51, 2}, {150, 3}, {210, 3}, {300, 3}, {301, 6}, {600, 6}};
    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
        SL_PASS(sl_segment_find_time(s2, q[i].ts, s2->size, &off));
        SL_EQ(off, q[i].want);
    }
    SL_FAIL(sl_segment_find_time(s2, 601, s2->size, &off), SL_ERANGE);
    /* Only bytes below 'limit' count. */
    SL_PASS(sl_segment_find_time(s2, 250, m2->batch_pos[2], &off));
    SL_EQ(off, 3);
    SL_FAIL(sl_segment_find_time(s2, 301, m2->batch_pos[2], &off), SL_ERANGE);
    SL_FAIL(sl_segment_find_time(s2, 51, m2->batch_pos[1], &off), SL_ERANGE);
    check_against_model(s2, m2);
    sl_segment_unref(s2);
    model_free(m2);

    sl_segment_unref(seg);
    model_free(m);
    drop_dir(dir);
}

static void reopen_loads_the_same_state(void) {
    char *dir = make_dir();
    model *m = model_new(77);
    sl_segment *seg = filled_segment(dir, 77, m, 200, 300);
    size_t nidx = seg->nidx, ntidx = seg->ntidx;
    sl_index_entry *idx = malloc(nidx * sizeof(*idx));
    SL_TRUE(idx != NULL);
    memcpy(idx, seg->idx, nidx * sizeof(*idx));
    int64_t first_ts = seg->first_timestamp;
    sl_segment_unref(seg);

    sl_segment_recovery rec;
    SL_PASS(sl_segment_open(dir, 77, false, &seg, &rec));
    SL_TRUE(!rec.index_rebuilt); /* the files were good: loaded, not rebuilt */
    SL_EQ(rec.truncated_bytes, 0);
    SL_EQ(seg->nidx, nidx);
    SL_EQ(seg->ntidx, ntidx);
    SL_TRUE(memcmp(seg->idx, idx, nidx * sizeof(*idx)) == 0);
    SL_EQ(seg->first_timestamp, first_ts);
    check_against_model(seg, m);

    /* Appends after a reopen continue the file and the index where they left off. */
    for (int i = 0; i < 50; i++)
        append_batch(seg, m, 2, NULL, 100, 300);
    check_against_model(seg, m);
    sl_segment_unref(seg);
    SL_PASS(sl_segment_open(dir, 77, false, &seg, &rec));
    SL_TRUE(!rec.index_rebuilt);
    check_against_model(seg, m);
    for (size_t i = 1; i < seg->nidx; i++)
        SL_TRUE(seg->idx[i].position - seg->idx[i - 1].position >= 300);
    sl_segment_unref(seg);

    /* The full check (the active segment after a restart) finds the same log. */
    SL_PASS(sl_segment_open(dir, 77, true, &seg, &rec));
    SL_TRUE(rec.index_rebuilt);
    SL_EQ(rec.truncated_bytes, 0);
    check_against_model(seg, m);
    sl_segment_unref(seg);
    SL_PASS(sl_segment_open(dir, 77, false, &seg, NULL)); /* 'rec' may be NULL */
    check_against_model(seg, m);
    sl_segment_unref(seg);
    free(idx);
    model_free(m);
    drop_dir(dir);
}

static void empty_segment_reopens_empty(void) {
    char *dir = make_dir();
    sl_segment *seg;
    SL_PASS(sl_segment_create(dir, 10, &seg));
    sl_segment_unref(seg);
    for (int full = 0; full < 2; full++) {
        sl_segment_recovery rec;
        SL_PASS(sl_segment_open(dir, 10, full, &seg, &rec));
        SL_EQ(seg->next_offset, 10);
        SL_EQ(seg->size, 0);
        SL_EQ(seg->max_timestamp, -1);
        SL_EQ(rec.truncated_bytes, 0);
        int64_t x;
        SL_FAIL(sl_segment_find(seg, 10, 0, &x), SL_ERANGE);
        SL_FAIL(sl_segment_find_time(seg, 0, 0, &x), SL_ERANGE);
        sl_segment_unref(seg);
    }
    drop_dir(dir);
}

/* ---- torn tails ---- */

enum tear {
    TEAR_IN_PREFIX,   /* fewer than 12 bytes of a new batch */
    TEAR_IN_HEADER,   /* part of a new batch's 61-byte header */
    TEAR_IN_RECORDS,  /* a whole header, part of the records */
    TEAR_GARBAGE,     /* random bytes after the last batch */
    TEAR_BIT_FLIP,    /* the last batch's CRC fails */
    TEAR_ZERO_FILLED, /* blocks allocated but never written, as after a crash */
};

static const char *const tear_names[] = {"in prefix",    "in header", "in records",
                                         "garbage tail", "bit flip",  "zero-filled tail"};

/* Damages the .log of a closed segment; 'last' is a copy of its last batch, which lies at
 * 'pos' and is 'size' bytes long. Partial batches are written as copies of that one. */
static void tear(const char *log_path, enum tear kind, const uint8_t *last, int64_t pos,
                 int64_t size) {
    uint8_t junk[700];
    switch (kind) {
    case TEAR_IN_PREFIX:
        append_to(log_path, last, 7);
        break;
    case TEAR_IN_HEADER:
        append_to(log_path, last, 30);
        break;
    case TEAR_IN_RECORDS:
        append_to(log_path, last, (size_t)size - 5);
        break;
    case TEAR_GARBAGE:
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)rng();
        append_to(log_path, junk, sizeof(junk));
        break;
    case TEAR_BIT_FLIP: {
        uint8_t b = last[size - 3] ^ 0x04;
        write_at(log_path, pos + size - 3, &b, 1);
        break;
    }
    case TEAR_ZERO_FILLED:
        memset(junk, 0, sizeof(junk));
        append_to(log_path, junk, sizeof(junk));
        append_to(log_path, junk, sizeof(junk));
        break;
    }
}

static void torn_tails_are_cut_back(void) {
    for (int kind = TEAR_IN_PREFIX; kind <= TEAR_ZERO_FILLED; kind++) {
        fprintf(stderr, "   tear: %s\n", tear_names[kind]);
        char *dir = make_dir();
        model *m = model_new(1000);
        sl_segment *seg = filled_segment(dir, 1000, m, 40, 400);
        char log_path[4200];
        file_path(log_path, sizeof(log_path), seg, ".log");
        sl_segment_unref(seg);
        int64_t whole = (int64_t)m->bytes.len;
        size_t last = m->nbatches - 1;
        const uint8_t *last_bytes = m->bytes.data + m->batch_pos[last];
        int64_t torn_from = whole;
        tear(log_path, (enum tear)kind, last_bytes, m->batch_pos[last], m->batch_size[last]);
        if (kind == TEAR_BIT_FLIP) {
            /* The damaged batch goes: the model forgets it. */
            torn_from = m->batch_pos[last];
            m->next = m->batch_base[last];
            m->bytes.len = (size_t)torn_from;
            m->nbatches--;
        }
        int64_t damaged = file_size(log_path);
        SL_TRUE(damaged != whole || kind == TEAR_BIT_FLIP);

        sl_segment_recovery rec;
        SL_PASS(sl_segment_open(dir, 1000, true, &seg, &rec));
        SL_EQ(rec.truncated_bytes, damaged - torn_from);
        SL_TRUE(rec.index_rebuilt);
        SL_EQ(file_size(log_path), torn_from); /* cut on disk too */
        check_against_model(seg, m);

        /* The next append continues at the right offset, right after the last whole batch. */
        int64_t next = seg->next_offset;
        append_batch(seg, m, 3, NULL, 40, 400);
        SL_EQ(m->batch_base[m->nbatches - 1], next);
        SL_EQ(m->batch_pos[m->nbatches - 1], torn_from);
        check_against_model(seg, m);
        sl_segment_unref(seg);
        SL_PASS(sl_segment_open(dir, 1000, true, &seg, &rec));
        SL_EQ(rec.truncated_bytes, 0);
        check_against_model(seg, m);
        sl_segment_unref(seg);
        model_free(m);
        drop_dir(dir);
    }
}

static void torn_tail_of_a_closed_segment_is_cut_without_full_check(void) {
    /* A segment that is not the active one is not CRC-checked on open, but a tail that does
     * not even parse must still go rather than leave lookups reading past it. */
    for (int kind = TEAR_IN_PREFIX; kind <= TEAR_ZERO_FILLED; kind++) {
        if (kind == TEAR_BIT_FLIP || kind == TEAR_GARBAGE)
            continue; /* only the CRC can tell these apart from good data */
        char *dir = make_dir();
        model *m = model_new(0);
        sl_segment *seg = filled_segment(dir, 0, m, 30, 400);
        char log_path[4200];
        file_path(log_path, sizeof(log_path), seg, ".log");
        sl_segment_unref(seg);
        size_t last = m->nbatches - 1;
        tear(log_path, (enum tear)kind, m->bytes.data + m->batch_pos[last], m->batch_pos[last],
             m->batch_size[last]);
        sl_segment_recovery rec;
        SL_PASS(sl_segment_open(dir, 0, false, &seg, &rec));
        SL_TRUE(rec.truncated_bytes > 0);
        SL_EQ(file_size(log_path), (int64_t)m->bytes.len);
        check_against_model(seg, m);
        sl_segment_unref(seg);
        model_free(m);
        drop_dir(dir);
    }
}

/* ---- damaged indexes ---- */

enum damage {
    DELETE_INDEX,
    DELETE_TIMEINDEX,
    GARBAGE_INDEX,
    GARBAGE_TIMEINDEX,
    EMPTY_INDEX,
    EMPTY_TIMEINDEX,
    ODD_SIZED_INDEX,
    INDEX_PAST_THE_LOG,
    TIMEINDEX_PAST_THE_SEGMENT,
};

static const char *const damage_names[] = {"deleted .index",
                                           "deleted .timeindex",
                                           "garbage .index",
                                           "garbage .timeindex",
                                           "empty .index",
                                           "empty .timeindex",
                                           "odd-sized .index",
                                           ".index entry past the log",
                                           ".timeindex entry past the segment"};

static void fill_garbage(const char *path) {
    int64_t n = file_size(path);
    SL_TRUE(n > 0);
    uint8_t *junk = malloc((size_t)n);
    SL_TRUE(junk != NULL);
    for (int64_t i = 0; i < n; i++)
        junk[i] = (uint8_t)rng();
    write_at(path, 0, junk, (size_t)n);
    free(junk);
}

static void damaged_indexes_are_rebuilt(void) {
    for (int kind = DELETE_INDEX; kind <= TIMEINDEX_PAST_THE_SEGMENT; kind++) {
        fprintf(stderr, "   damage: %s\n", damage_names[kind]);
        char *dir = make_dir();
        model *m = model_new(300);
        sl_segment *seg = filled_segment(dir, 300, m, 250, 200);
        SL_TRUE(seg->nidx > 4 && seg->ntidx > 1);
        char idx_path[4200], tidx_path[4200];
        file_path(idx_path, sizeof(idx_path), seg, ".index");
        file_path(tidx_path, sizeof(tidx_path), seg, ".timeindex");
        sl_segment_unref(seg);
        rng_state = 0xfeedbeefu + (uint64_t)kind;
        uint8_t e[12];
        switch ((enum damage)kind) {
        case DELETE_INDEX:
            SL_EQ(unlink(idx_path), 0);
            break;
        case DELETE_TIMEINDEX:
            SL_EQ(unlink(tidx_path), 0);
            break;
        case GARBAGE_INDEX:
            fill_garbage(idx_path);
            break;
        case GARBAGE_TIMEINDEX:
            fill_garbage(tidx_path);
            break;
        case EMPTY_INDEX:
            truncate_to(idx_path, 0);
            break;
        case EMPTY_TIMEINDEX:
            truncate_to(tidx_path, 0);
            break;
        case ODD_SIZED_INDEX:
            append_to(idx_path, "abc", 3);
            break;
        case INDEX_PAST_THE_LOG: /* a last entry beyond the end of the log */
            sl_be32_put(e, 0x7fff0000u);
            sl_be32_put(e + 4, 0x7fff0000u);
            append_to(idx_path, e, 8);
            break;
        case TIMEINDEX_PAST_THE_SEGMENT: /* a newest entry naming an offset not in it */
            sl_be64_put(e, (uint64_t)INT64_MAX);
            sl_be32_put(e + 8, 0x7fff0000u);
            append_to(tidx_path, e, 12);
            break;
        }
        sl_segment_recovery rec;
        SL_PASS(sl_segment_open(dir, 300, false, &seg, &rec));
        SL_TRUE(rec.index_rebuilt);
        SL_EQ(rec.truncated_bytes, 0);
        SL_TRUE(seg->nidx > 1);
        check_against_model(seg, m);
        /* The files on disk are whole again: a second open just loads them. */
        SL_EQ(file_size(idx_path), (int64_t)seg->nidx * 8);
        SL_EQ(file_size(tidx_path), (int64_t)seg->ntidx * 12);
        sl_segment_unref(seg);
        SL_PASS(sl_segment_open(dir, 300, false, &seg, &rec));
        SL_TRUE(!rec.index_rebuilt);
        check_against_model(seg, m);
        sl_segment_unref(seg);
        model_free(m);
        drop_dir(dir);
    }
}

static void index_missing_its_newest_entries_still_answers(void) {
    /* As if the process died between writing the log and the index: the entries that are
     * there are right, only the newest are missing. Lookups scan on from the last one. */
    char *dir = make_dir();
    model *m = model_new(0);
    sl_segment *seg = filled_segment(dir, 0, m, 200, 200);
    size_t nidx = seg->nidx;
    char idx_path[4200];
    file_path(idx_path, sizeof(idx_path), seg, ".index");
    sl_segment_unref(seg);
    truncate_to(idx_path, (int64_t)(nidx / 2) * 8);
    sl_segment_recovery rec;
    SL_PASS(sl_segment_open(dir, 0, false, &seg, &rec));
    SL_EQ(seg->nidx, nidx / 2);
    check_against_model(seg, m);
    /* New entries follow the interval from the last one that is there. */
    append_batch(seg, m, 1, NULL, 10, 200);
    SL_TRUE(seg->nidx == nidx / 2 + 1);
    check_against_model(seg, m);
    sl_segment_unref(seg);
    model_free(m);
    drop_dir(dir);
}

static void unlinked_segment_stays_readable_while_referenced(void) {
    char *dir = make_dir();
    model *m = model_new(0);
    sl_segment *seg = filled_segment(dir, 0, m, 10, 4096);
    char paths[3][4200];
    file_path(paths[0], sizeof(paths[0]), seg, ".log");
    file_path(paths[1], sizeof(paths[1]), seg, ".index");
    file_path(paths[2], sizeof(paths[2]), seg, ".timeindex");
    sl_segment_ref(seg); /* a reader */
    sl_segment_unlink(seg);
    for (int i = 0; i < 3; i++)
        SL_EQ(file_size(paths[i]), -1);
    sl_segment_unref(seg); /* the partition lets go */
    check_against_model(seg, m);
    sl_segment_unlink(seg); /* again: nothing left to remove, nothing to complain about */
    sl_segment_unref(seg);  /* the reader: freed now (ASan reports a leak otherwise) */
    model_free(m);
    drop_dir(dir);
}

SL_TESTS({"segment files have Kafka's names", files_have_kafka_names},
         {"segment append and read back", append_and_read_back},
         {"segment lookups go through the sparse index", lookups_go_through_the_index},
         {"segment find_time with out-of-order timestamps", find_time_with_out_of_order_timestamps},
         {"segment reopen loads the same state", reopen_loads_the_same_state},
         {"empty segment reopens empty", empty_segment_reopens_empty},
         {"segment torn tails are cut back to the last whole batch", torn_tails_are_cut_back},
         {"torn tail of a closed segment is cut without the full check",
          torn_tail_of_a_closed_segment_is_cut_without_full_check},
         {"segment damaged indexes are rebuilt", damaged_indexes_are_rebuilt},
         {"index missing its newest entries still answers",
          index_missing_its_newest_entries_still_answers},
         {"unlinked segment stays readable while referenced",
          unlinked_segment_stays_readable_while_referenced})

/* Log compaction: random workloads checked against a model of every record ever appended (each
 * value names its own offset, so a record read back is checked byte for byte), tombstones and
 * delete.retention.ms, every codec, readers and appends racing the cleaner, reopening, crash
 * leftovers, dirty-ratio gating and the refusal of records without a key. */
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
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "log/batch.h"
#include "log/compact.h"
#include "log/compression.h"
#include "log/partlog.h"
#include "sl_fixture.h"
#include "sl_test.h"

/* ---- helpers ---- */

static char *make_dir(void) { /* sl_partlog_open creates the partition directory */
    return sl_fixture_dir("sl_compact_test", "users-0");
}

static void drop_dir(char *dir) {
    sl_fixture_drop_dir(dir);
}

static sl_rng rng_gen = {0x9e3779b97f4a7c15ull};

static uint64_t rng(void) { /* deterministic, so failures reproduce */
    return sl_rng_next(&rng_gen);
}

static sl_logconf compact_conf(void) {
    sl_logconf c;
    sl_logconf_defaults(&c);
    c.compact = true;
    c.delete_retention = false;
    c.segment_bytes = 16384;
    c.index_interval_bytes = 1024;
    return c;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the model: every record appended, by offset ---- */

#define MAX_OFFSETS 200000

typedef struct model {
    int32_t key[MAX_OFFSETS]; /* -1: no key */
    bool tomb[MAX_OFFSETS];
    int64_t ts[MAX_OFFSETS];
    uint16_t vlen[MAX_OFFSETS];
    int64_t leo;
} model;

static model *model_new(void) {
    model *m = calloc(1, sizeof(*m));
    SL_TRUE(m != NULL);
    return m;
}

static int key_text(char *out, int32_t key) {
    return sprintf(out, "user-%d", key);
}

/* The value of the record at 'off': names the offset and key, padded to 'len'. */
static size_t value_text(char *out, int64_t off, int32_t key, size_t len) {
    int n = sprintf(out, "o%" PRId64 "k%d:", off, key);
    for (size_t i = (size_t)n; i < len; i++)
        out[i] = (char)('a' + (off + (int64_t)i) % 26);
    return len > (size_t)n ? len : (size_t)n;
}

typedef struct rec_spec {
    int32_t key; /* -1: none */
    bool tomb;
    int64_t ts;
    size_t vlen;
} rec_spec;

typedef struct producer {
    int64_t pid; /* -1: not idempotent */
    int16_t epoch;
    int32_t next_seq;
} producer;

/* One batch of 'n' records (offsets from m->leo) into 'req'. */
static void build_batch(sl_buf *req, const model *m, const rec_spec *r, int n, enum sl_codec codec,
                        const producer *p) {
    sl_batch_builder b = {0};
    sl_buf scratch = SL_BUF_INIT;
    sl_batch_builder_reset(&b);
    char key[32], value[4096];
    for (int i = 0; i < n; i++) {
        int kl = r[i].key >= 0 ? key_text(key, r[i].key) : 0;
        size_t vl = value_text(value, m->leo + i, r[i].key, r[i].vlen);
        SL_PASS(sl_batch_builder_add(&b, r[i].ts, r[i].key >= 0 ? key : NULL, (size_t)kl,
                                     r[i].tomb ? NULL : value, vl, NULL, 0));
    }
    if (p && p->pid >= 0) {
        b.producer_id = p->pid;
        b.producer_epoch = p->epoch;
        b.base_sequence = p->next_seq;
    }
    SL_PASS(sl_batch_builder_finish_codec(&b, codec, &scratch));
    SL_PASS(sl_buf_append(req, b.buf.data, b.buf.len));
    sl_batch_builder_free(&b);
    sl_buf_free(&scratch);
}

/* Validates and appends one batch as the broker does, moves the HW and records the batch. */
static sl_append_result append_batch(sl_partlog *pl, model *m, const rec_spec *r, int n,
                                     enum sl_codec codec, producer *p, int64_t now) {
    sl_buf req = SL_BUF_INIT;
    build_batch(&req, m, r, n, codec, p);
    int64_t records;
    char err[256];
    SL_PASS(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)));
    sl_append_result res;
    SL_PASS(sl_partlog_append(pl, req.data, req.len, 0, now, &res));
    SL_TRUE(!res.duplicate);
    SL_EQ(res.base_offset, m->leo);
    SL_EQ(res.last_offset, m->leo + n - 1);
    SL_PASS(sl_partlog_set_high_watermark(pl, res.last_offset + 1));
    SL_TRUE(m->leo + n <= MAX_OFFSETS);
    for (int i = 0; i < n; i++) {
        int64_t off = m->leo + i;
        char tmp[4096];
        m->key[off] = r[i].key;
        m->tomb[off] = r[i].tomb;
        m->ts[off] = r[i].ts;
        m->vlen[off] = (uint16_t)value_text(tmp, off, r[i].key, r[i].vlen);
    }
    m->leo += n;
    if (p && p->pid >= 0)
        p->next_seq += n;
    sl_buf_free(&req);
    return res;
}

/* ---- reading the whole log back ---- */

typedef struct scan {
    uint8_t *present; /* by offset */
    int64_t *bbase, *blast;
    size_t nbatches, cap;
    int64_t records;
    int64_t codecs[8]; /* non-empty batches per codec */
} scan;

static void scan_free(scan *s) {
    free(s->present);
    free(s->bbase);
    free(s->blast);
    memset(s, 0, sizeof(*s));
}

/* Checks one record read back against the model. */
static void check_record(const model *m, const sl_record_view *rv) {
    SL_TRUE(rv->offset >= 0 && rv->offset < m->leo);
    int64_t off = rv->offset;
    char key[32], value[4096];
    if (m->key[off] < 0) {
        SL_TRUE(rv->key == NULL);
    } else {
        int kl = key_text(key, m->key[off]);
        SL_TRUE(rv->key != NULL);
        SL_EQ(rv->key_len, kl);
        SL_TRUE(memcmp(rv->key, key, (size_t)kl) == 0);
    }
    if (m->tomb[off]) {
        SL_TRUE(rv->value == NULL);
    } else {
        size_t vl = value_text(value, off, m->key[off], m->vlen[off]);
        SL_TRUE(rv->value != NULL);
        SL_EQ(rv->value_len, vl);
        if (memcmp(rv->value, value, vl) != 0)
            SL_TEST_FAIL_("offset %" PRId64 " holds another value", off);
    }
    SL_EQ(rv->timestamp, m->ts[off]);
}

/* Reads the log from its start to the HW (or the model's end, if other records follow) as a
 * consumer does, checking every batch (CRC, offsets in order) and every record against the
 * model. */
static void scan_log(sl_partlog *pl, const model *m, scan *s) {
    memset(s, 0, sizeof(*s));
    s->present = calloc((size_t)m->leo + 1, 1);
    SL_TRUE(s->present != NULL);
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    int64_t next = rr.log_start_offset, prev = -1;
    int64_t end = rr.high_watermark < m->leo ? rr.high_watermark : m->leo;
    sl_buf out = SL_BUF_INIT, scratch = SL_BUF_INIT;
    while (next < end) {
        out.len = 0;
        SL_PASS(sl_partlog_read(pl, next, 65536, &out, &rr));
        SL_TRUE(out.len > 0); /* a gap never stalls a reader */
        size_t pos = 0;
        while (pos < out.len && next < end) {
            sl_batch_header h;
            SL_PASS(sl_batch_validate_stored(out.data + pos, out.len - pos, &h));
            size_t total = (size_t)h.length + SL_BATCH_LOG_OVERHEAD;
            int64_t last = h.base_offset + h.last_offset_delta;
            SL_TRUE(last >= next);
            SL_TRUE(h.base_offset > prev);
            if (s->nbatches == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 1024;
                s->bbase = realloc(s->bbase, s->cap * sizeof(int64_t));
                s->blast = realloc(s->blast, s->cap * sizeof(int64_t));
                SL_TRUE(s->bbase && s->blast);
            }
            s->bbase[s->nbatches] = h.base_offset;
            s->blast[s->nbatches++] = last;
            if (h.records_count)
                s->codecs[sl_batch_codec(out.data + pos)]++;
            sl_record_iter it;
            sl_record_view rv;
            SL_PASS(
                sl_record_iter_start_decompress(&it, out.data + pos, total, &scratch, 1u << 26));
            int r, n = 0;
            while ((r = sl_record_iter_next(&it, &rv)) == 1) {
                SL_TRUE(rv.offset > prev && rv.offset >= h.base_offset && rv.offset <= last);
                prev = rv.offset;
                check_record(m, &rv);
                s->present[rv.offset] = 1;
                n++;
            }
            SL_EQ(r, 0);
            SL_EQ(n, h.records_count);
            s->records += n;
            prev = last;
            next = last + 1;
            pos += total;
        }
    }
    SL_EQ(next, end);
    sl_buf_free(&out);
    sl_buf_free(&scratch);
}

/* What must survive: every record at or above the clean point 'cp'; below it, for each key only
 * its latest record below cp, and that one unless it is a tombstone older than 'horizon' (or,
 * with 'partial', a newer record of the key lies above cp); records without a key. Then, as a
 * consumer reading everything sees it, every key's last value is its latest one. */
static void check_survivors(const model *m, const scan *s, int64_t cp, int64_t horizon,
                            bool partial) {
    int32_t nkeys = 0;
    for (int64_t off = 0; off < m->leo; off++)
        if (m->key[off] + 1 > nkeys)
            nkeys = m->key[off] + 1;
    int64_t *latest_below = malloc(((size_t)nkeys + 1) * sizeof(int64_t));
    int64_t *latest = malloc(((size_t)nkeys + 1) * sizeof(int64_t));
    int64_t *seen_last = malloc(((size_t)nkeys + 1) * sizeof(int64_t));
    bool *after = calloc((size_t)nkeys + 1, 1);
    SL_TRUE(latest_below && latest && seen_last && after);
    for (int32_t k = 0; k < nkeys; k++)
        latest_below[k] = latest[k] = seen_last[k] = -1;
    for (int64_t off = 0; off < m->leo; off++) {
        int32_t k = m->key[off];
        if (k < 0)
            continue;
        latest[k] = off;
        if (off < cp)
            latest_below[k] = off;
        else
            after[k] = true;
    }
    for (int64_t off = 0; off < m->leo; off++) {
        int32_t k = m->key[off];
        bool want;
        if (off >= cp || k < 0) {
            want = true;
        } else if (off != latest_below[k]) {
            want = false;
        } else if (m->tomb[off] && m->ts[off] < horizon) {
            want = false;
        } else {
            if (partial && after[k])
                goto next; /* either way */
            want = true;
        }
        if (want != (s->present[off] != 0))
            SL_TEST_FAIL_("offset %" PRId64 " (key %d%s, clean point %" PRId64 ") should %s", off,
                          k, m->tomb[off] ? ", tombstone" : "", cp,
                          want ? "have survived" : "have gone");
    next:
        if (k >= 0 && s->present[off])
            seen_last[k] = off;
    }
    /* Never the wrong value: the last one a full read sees is the latest written. */
    for (int32_t k = 0; k < nkeys; k++) {
        if (latest[k] < 0)
            continue;
        if (m->tomb[latest[k]])
            SL_TRUE(seen_last[k] == latest[k] || seen_last[k] == -1);
        else if (seen_last[k] != latest[k])
            SL_TEST_FAIL_("key %d: a full read ends at offset %" PRId64 ", not %" PRId64, k,
                          seen_last[k], latest[k]);
    }
    free(latest_below);
    free(latest);
    free(seen_last);
    free(after);
}

/* Every lookup by offset answers with the first batch that reaches it, and lookups by time with
 * the first record at or after the time (or an offset just before it in a gap). */
static void check_lookups(sl_partlog *pl, const model *m, const scan *s) {
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    sl_buf out = SL_BUF_INIT;
    size_t bi = 0;
    for (int64_t off = rr.log_start_offset; off < rr.high_watermark; off++) {
        while (bi < s->nbatches && s->blast[bi] < off)
            bi++;
        SL_TRUE(bi < s->nbatches);
        out.len = 0;
        SL_PASS(sl_partlog_read(pl, off, 1, &out, &rr));
        sl_batch_header h;
        SL_PASS(sl_batch_header_parse(out.data, out.len, &h));
        if (h.base_offset != s->bbase[bi])
            SL_TEST_FAIL_("read at %" PRId64 " starts at batch %" PRId64 ", not %" PRId64, off,
                          h.base_offset, s->bbase[bi]);
    }
    sl_buf_free(&out);
    for (int i = 0; i < 200 && m->leo > 0; i++) {
        int64_t target = m->ts[rng() % (uint64_t)m->leo] + (int64_t)(rng() % 3) - 1, got;
        SL_PASS(sl_partlog_offset_for_time(pl, target, &got));
        int64_t want = rr.high_watermark;
        for (int64_t off = rr.log_start_offset; off < rr.high_watermark; off++)
            if (s->present[off] && m->ts[off] >= target) {
                want = off;
                break;
            }
        SL_TRUE(got <= want);
        for (int64_t off = got; off < want; off++)
            SL_TRUE(!s->present[off]);
    }
}

static void check_all(sl_partlog *pl, const model *m, int64_t cp, int64_t horizon, bool partial,
                      bool lookups) {
    scan s;
    scan_log(pl, m, &s);
    check_survivors(m, &s, cp, horizon, partial);
    if (lookups)
        check_lookups(pl, m, &s);
    scan_free(&s);
}

static int64_t compact(sl_partlog *pl, int64_t now, sl_compact_stats *st) {
    SL_PASS(sl_partlog_compact(pl, now, st));
    return st->cleaned_upto;
}

/* Appends 'nrecords' random records: keys in [key0, key0 + nkeys), some tombstones, batches of
 * 1 to 'max_batch' records with random codecs, timestamps from '*ts' on. */
static void random_appends(sl_partlog *pl, model *m, int nrecords, int32_t key0, int32_t nkeys,
                           int max_batch, int tomb_pct, bool codecs, int64_t *ts) {
    rec_spec r[64];
    while (nrecords > 0) {
        int n = 1 + (int)(rng() % (uint64_t)max_batch);
        if (n > nrecords)
            n = nrecords;
        for (int i = 0; i < n; i++) {
            r[i].key = key0 + (int32_t)(rng() % (uint64_t)nkeys);
            r[i].tomb = (int)(rng() % 100) < tomb_pct;
            r[i].ts = (*ts)++;
            r[i].vlen = 8 + rng() % 120;
        }
        enum sl_codec codec = codecs ? (enum sl_codec)(rng() % 5) : SL_CODEC_NONE;
        append_batch(pl, m, r, n, codec, NULL, *ts);
        nrecords -= n;
    }
}

/* ---- tests ---- */

static void random_workload(bool small_map) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.delete_retention_ms = 3000;
    conf.min_cleanable_dirty_ratio = 0.2;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    sl_compact_stats st;
    int64_t ts = 1000000, cp = 0, horizon = INT64_MIN, before = 0;
    bool shrunk = false;
    /* A tiny map makes passes stop part-way and leave the rest to the next one. */
    sl_compact_set_memory_limit(small_map ? 40000 : 128u << 20);
    for (int round = 0; round < 12; round++) {
        random_appends(pl, m, 2500, 0, 300, 20, 10, true, &ts);
        size_t segs = sl_partlog_segment_count(pl);
        cp = compact(pl, ts, &st);
        if (st.ran)
            horizon = ts - conf.delete_retention_ms;
        if (st.segments_rewritten > 0) {
            SL_TRUE(st.records_after < st.records_before);
            SL_TRUE(st.bytes_after < st.bytes_before);
            SL_TRUE(sl_partlog_segment_count(pl) <= segs);
            shrunk |= sl_partlog_segment_count(pl) < segs; /* small segments were merged */
        }
        check_all(pl, m, cp, horizon, small_map, round == 11);
        sl_read_result rr;
        sl_partlog_offsets(pl, &rr);
        SL_EQ(rr.log_end_offset, m->leo); /* compaction never moves the end */
        SL_EQ(rr.high_watermark, m->leo);
        SL_EQ(rr.log_start_offset, 0);
    }
    SL_TRUE(cp > 0);
    SL_TRUE(shrunk);
    /* Compacting again with nothing new: nothing to do. */
    before = sl_partlog_size_bytes(pl);
    sl_compact_stats again;
    compact(pl, ts, &again);
    if (!small_map) {
        SL_TRUE(!again.ran);
        SL_EQ(sl_partlog_size_bytes(pl), before);
    }
    /* Reopened: the same log, indexes loaded from their files, the clean point kept. */
    sl_partlog_close(pl);
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    check_all(pl, m, cp, horizon, small_map, true);
    compact(pl, ts, &again);
    SL_TRUE(again.cleaned_upto >= cp);
    sl_partlog_close(pl);
    sl_compact_set_memory_limit(128u << 20);
    free(m);
    drop_dir(dir);
}

static void random_workload_matches_the_model(void) {
    random_workload(false);
}

static void a_small_key_map_cleans_in_several_passes(void) {
    random_workload(true);
}

static void tombstones_live_for_delete_retention_ms(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.delete_retention_ms = 10000;
    conf.min_cleanable_dirty_ratio = 0;
    conf.segment_bytes = 1000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    rec_spec r[4] = {{1, false, 5000, 50}, {2, false, 5001, 50}, {1, true, 6000, 0}};
    append_batch(pl, m, r, 3, SL_CODEC_NONE, NULL, 6000); /* 0: k1, 1: k2, 2: k1 deleted */
    int64_t ts = 7000;
    random_appends(pl, m, 60, 10, 5, 3, 0, false, &ts); /* other keys, to roll segments */
    sl_compact_stats st;
    /* Inside delete.retention.ms: the tombstone stays, the value it deletes goes. */
    int64_t cp = compact(pl, 6000 + 9999, &st);
    SL_TRUE(st.ran && cp > 3);
    check_all(pl, m, cp, 6000 + 9999 - 10000, false, true);
    scan s;
    scan_log(pl, m, &s);
    SL_TRUE(!s.present[0] && s.present[1] && s.present[2]);
    scan_free(&s);
    /* After it: the tombstone goes too, and no older value comes back. */
    random_appends(pl, m, 60, 10, 5, 3, 0, false, &ts);
    cp = compact(pl, 6000 + 10001, &st);
    SL_TRUE(st.ran);
    check_all(pl, m, cp, 6000 + 10001 - 10000, false, true);
    scan_log(pl, m, &s);
    SL_TRUE(!s.present[0] && s.present[1] && !s.present[2]);
    scan_free(&s);
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

static void every_codec_survives(void) {
    for (int codec = 0; codec <= SL_CODEC_MAX; codec++) {
        char *dir = make_dir();
        sl_logconf conf = compact_conf();
        conf.segment_bytes = 4000;
        sl_partlog *pl;
        SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
        model *m = model_new();
        rec_spec r[30];
        int64_t ts = 1000;
        for (int b = 0; b < 60; b++) {
            for (int i = 0; i < 30; i++)
                r[i] = (rec_spec){(int32_t)(rng() % 40), rng() % 10 == 0, ts++, 40};
            append_batch(pl, m, r, 30, (enum sl_codec)codec, NULL, ts);
        }
        sl_compact_stats st;
        int64_t cp = compact(pl, ts, &st);
        SL_TRUE(st.segments_rewritten > 0);
        check_all(pl, m, cp, ts - conf.delete_retention_ms, false, true);
        scan s;
        scan_log(pl, m, &s);
        for (int c = 0; c <= SL_CODEC_MAX; c++) /* batches keep their codec */
            SL_TRUE(c == codec || s.codecs[c] == 0);
        SL_TRUE(s.codecs[codec] > 0);
        scan_free(&s);
        sl_partlog_close(pl);
        free(m);
        drop_dir(dir);
    }
}

/* ---- racing the cleaner ---- */

struct race {
    sl_partlog *pl;
    const model *m;
    atomic_bool stop;
    atomic_long reads;
};

static void *reader_main(void *arg) {
    struct race *r = arg;
    while (!atomic_load(&r->stop)) {
        scan s;
        scan_log(r->pl, r->m, &s); /* whatever it sees must be true to the model */
        scan_free(&s);
        atomic_fetch_add(&r->reads, 1);
    }
    return NULL;
}

static void readers_keep_reading_while_segments_are_swapped(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 8000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    int64_t ts = 1000;
    random_appends(pl, m, 12000, 0, 500, 10, 5, true, &ts);
    struct race r = {pl, m, false, 0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        SL_EQ(pthread_create(&t[i], NULL, reader_main, &r), 0);
    /* Many small passes, so that swaps happen while the readers hold segments. */
    sl_compact_set_memory_limit(40000);
    sl_compact_stats st;
    int64_t cp = 0, swaps = 0;
    for (int i = 0; i < 200 && cp < m->leo - 1000; i++) {
        cp = compact(pl, ts, &st);
        swaps += st.segments_written;
    }
    while (atomic_load(&r.reads) < 4)
        sched_yield();
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++)
        SL_EQ(pthread_join(t[i], NULL), 0);
    SL_TRUE(swaps > 5);
    check_all(pl, m, cp, ts - conf.delete_retention_ms, true, true);
    sl_compact_set_memory_limit(128u << 20);
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

struct appender {
    sl_partlog *pl;
    atomic_bool compacting, done;
    int64_t during;      /* appends that both started and ended while the pass ran */
    int64_t longest_ms;  /* the slowest append while it ran */
    int64_t base_offset; /* of the first append */
    atomic_llong appended;
};

static void *appender_main(void *arg) {
    struct appender *a = arg;
    sl_buf req = SL_BUF_INIT;
    char key[32];
    int64_t i = 0;
    a->base_offset = -1;
    while (!atomic_load(&a->done)) {
        sl_batch_builder b = {0};
        sl_batch_builder_reset(&b);
        int kl = sprintf(key, "appender-%" PRId64, i);
        SL_PASS(sl_batch_builder_add(&b, 5000000 + i, key, (size_t)kl, "v", 1, NULL, 0));
        sl_batch_builder_finish(&b);
        bool before = atomic_load(&a->compacting);
        int64_t t0 = mono_ms();
        sl_append_result res;
        SL_PASS(sl_partlog_append(a->pl, b.buf.data, b.buf.len, 0, 5000000, &res));
        SL_PASS(sl_partlog_set_high_watermark(a->pl, res.last_offset + 1));
        int64_t took = mono_ms() - t0;
        if (before && atomic_load(&a->compacting)) {
            a->during++;
            if (took > a->longest_ms)
                a->longest_ms = took;
        }
        if (a->base_offset < 0)
            a->base_offset = res.base_offset;
        atomic_fetch_add(&a->appended, 1);
        sl_batch_builder_free(&b);
        i++;
        if (i % 64 == 0)
            sched_yield();
    }
    sl_buf_free(&req);
    return NULL;
}

static void appends_go_on_during_a_pass(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 1 << 20;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    int64_t ts = 1000;
    random_appends(pl, m, 60000, 0, 20000, 50, 5, true, &ts);
    int64_t leo = m->leo;
    struct appender a = {.pl = pl};
    pthread_t t;
    SL_EQ(pthread_create(&t, NULL, appender_main, &a), 0);
    while (atomic_load(&a.appended) < 10)
        sched_yield();
    atomic_store(&a.compacting, true);
    int64_t t0 = mono_ms();
    sl_compact_stats st;
    int64_t cp = compact(pl, ts, &st);
    int64_t took = mono_ms() - t0;
    atomic_store(&a.compacting, false);
    atomic_store(&a.done, true);
    SL_EQ(pthread_join(t, NULL), 0);
    SL_TRUE(st.segments_rewritten > 0);
    fprintf(stderr,
            "   pass of %" PRId64 " ms over %" PRId64 " records; %" PRId64
            " appends meanwhile, the slowest %" PRId64 " ms\n",
            took, st.records_before, a.during, a.longest_ms);
    /* Appends went on: many started and completed while the pass ran (none could, were the
     * partition locked for the pass), and none waited for the whole of it. */
    SL_TRUE(a.during >= 20);
    SL_TRUE(a.longest_ms < took);
    SL_TRUE(a.base_offset >= leo);
    /* The appender's records are all there after the model's, in order. */
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.log_end_offset, leo + atomic_load(&a.appended));
    sl_partlog_close(pl);
    /* Reopened: the model's records compacted as they should be, then the appender's all. */
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    check_all(pl, m, cp, ts - conf.delete_retention_ms, false, false);
    sl_buf out = SL_BUF_INIT;
    int64_t next = leo, seen = 0;
    while (next < rr.log_end_offset) {
        out.len = 0;
        SL_PASS(sl_partlog_read(pl, next, 1 << 20, &out, &rr));
        SL_TRUE(out.len > 0);
        for (size_t pos = 0; pos < out.len;) {
            sl_batch_header h;
            SL_PASS(sl_batch_validate_stored(out.data + pos, out.len - pos, &h));
            SL_EQ(h.base_offset, next);
            seen += h.records_count;
            next = h.base_offset + h.last_offset_delta + 1;
            pos += (size_t)h.length + SL_BATCH_LOG_OVERHEAD;
        }
    }
    SL_EQ(seen, atomic_load(&a.appended));
    sl_buf_free(&out);
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

struct cleaner_loop {
    sl_partlog *pl;
    atomic_bool stop;
    atomic_long passes, swaps;
};

static void *cleaner_main(void *arg) {
    struct cleaner_loop *c = arg;
    while (!atomic_load(&c->stop)) {
        sl_compact_stats st;
        SL_PASS(sl_partlog_compact(c->pl, 1 << 30, &st)); /* a lost race is not an error */
        atomic_fetch_add(&c->passes, 1);
        atomic_fetch_add(&c->swaps, st.segments_written);
        sched_yield();
    }
    return NULL;
}

static void retention_races_the_cleaner(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.delete_retention = true; /* compact,delete */
    conf.segment_bytes = 2000;
    conf.retention_ms = -1;
    conf.retention_bytes = 60000;
    conf.min_cleanable_dirty_ratio = 0;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    struct cleaner_loop c = {.pl = pl};
    pthread_t t;
    SL_EQ(pthread_create(&t, NULL, cleaner_main, &c), 0);
    int64_t ts = 1000, deleted = 0;
    for (int i = 0; i < 300; i++) {
        random_appends(pl, m, 40, 0, 100, 8, 5, i % 2 == 0, &ts);
        deleted += sl_partlog_enforce_retention(pl, ts);
    }
    while (atomic_load(&c.passes) < 10)
        sched_yield();
    atomic_store(&c.stop, true);
    SL_EQ(pthread_join(t, NULL), 0);
    SL_TRUE(deleted > 0 && atomic_load(&c.swaps) > 0);
    fprintf(stderr, "   %ld passes, %ld segments written, %" PRId64 " deleted by retention\n",
            atomic_load(&c.passes), atomic_load(&c.swaps), deleted);
    /* Whatever raced, a full read is true to the model and ends, per key still in the log, on
     * its latest value. */
    for (int reopen = 0; reopen < 2; reopen++) {
        scan s;
        scan_log(pl, m, &s);
        sl_read_result rr;
        sl_partlog_offsets(pl, &rr);
        SL_EQ(rr.log_end_offset, m->leo);
        int64_t last[100];
        for (int k = 0; k < 100; k++)
            last[k] = -1;
        for (int64_t off = rr.log_start_offset; off < m->leo; off++)
            if (s.present[off])
                last[m->key[off]] = off;
        int64_t latest[100];
        for (int k = 0; k < 100; k++)
            latest[k] = -1;
        for (int64_t off = 0; off < m->leo; off++)
            latest[m->key[off]] = off;
        for (int k = 0; k < 100; k++) {
            if (latest[k] < rr.log_start_offset)
                SL_EQ(last[k], -1);
            else if (m->tomb[latest[k]]) /* deleted: the tombstone, or nothing at all */
                SL_TRUE(last[k] == latest[k] || last[k] == -1);
            else if (last[k] != latest[k])
                SL_TEST_FAIL_("key %d: a read ends on offset %" PRId64 ", not %" PRId64, k, last[k],
                              latest[k]);
        }
        scan_free(&s);
        sl_partlog_close(pl);
        SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    }
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

/* ---- reopening, producers ---- */

static void reopen_keeps_offsets_indexes_and_producers(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 2000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    producer p = {77, 3, 0};
    int64_t ts = 1000;
    /* Batches of producer 77 whose records are all overwritten later, the last one too. */
    for (int b = 0; b < 20; b++) {
        rec_spec r[5];
        for (int i = 0; i < 5; i++)
            r[i] = (rec_spec){i, false, ts++, 60};
        append_batch(pl, m, r, 5, b % 2 ? SL_CODEC_LZ4 : SL_CODEC_NONE, &p, ts);
    }
    int64_t tail_base = m->leo - 5;
    random_appends(pl, m, 400, 0, 5, 5, 0, false, &ts); /* the same keys, not idempotent */
    sl_compact_stats st;
    int64_t cp = compact(pl, ts, &st);
    SL_TRUE(cp > tail_base + 5);
    scan s;
    scan_log(pl, m, &s);
    for (int64_t off = 0; off < tail_base + 5; off++)
        SL_TRUE(!s.present[off]);
    /* The producer's last batch is still there, empty, for its sequence state. */
    bool kept = false;
    for (size_t i = 0; i < s.nbatches; i++)
        kept |= s.bbase[i] == tail_base && s.blast[i] == tail_base + 4;
    SL_TRUE(kept);
    scan_free(&s);
    sl_read_result before, after;
    sl_partlog_offsets(pl, &before);
    size_t segs = sl_partlog_segment_count(pl);
    sl_partlog_close(pl);

    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    sl_partlog_offsets(pl, &after);
    SL_EQ(after.log_start_offset, before.log_start_offset);
    SL_EQ(after.log_end_offset, before.log_end_offset);
    SL_EQ(after.high_watermark, before.high_watermark);
    SL_EQ(sl_partlog_segment_count(pl), segs);
    check_all(pl, m, cp, ts - conf.delete_retention_ms, false, true);
    /* A retry of the producer's last batch is a duplicate with its first offsets... */
    producer retry = {77, 3, p.next_seq - 5};
    rec_spec r[5];
    for (int i = 0; i < 5; i++)
        r[i] = (rec_spec){i, false, ts, 60};
    sl_buf req = SL_BUF_INIT;
    build_batch(&req, m, r, 5, SL_CODEC_NONE, &retry);
    sl_append_result res;
    SL_PASS(sl_partlog_append(pl, req.data, req.len, 0, ts, &res));
    SL_TRUE(res.duplicate);
    SL_EQ(res.base_offset, tail_base);
    /* ...and its next batch follows on without a sequence error. */
    append_batch(pl, m, r, 5, SL_CODEC_NONE, &p, ts);
    sl_buf_free(&req);
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

/* ---- crashes ---- */

static void write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    SL_TRUE(fd >= 0);
    SL_EQ(write(fd, data, len), (ssize_t)len);
    SL_EQ(close(fd), 0);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY);
    SL_TRUE(in >= 0);
    struct stat st;
    SL_EQ(fstat(in, &st), 0);
    char *buf = malloc((size_t)st.st_size + 1);
    SL_TRUE(buf != NULL);
    SL_EQ(read(in, buf, (size_t)st.st_size), st.st_size);
    close(in);
    write_file(to, buf, (size_t)st.st_size);
    free(buf);
}

/* Base offsets of the live segments in 'dir', ascending. */
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
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && bases[j - 1] > bases[j]; j--) {
            int64_t t = bases[j];
            bases[j] = bases[j - 1];
            bases[j - 1] = t;
        }
    return n;
}

static void seg_file(char *out, const char *dir, int64_t base, const char *ext) {
    sprintf(out, "%s/%020" PRId64 "%s", dir, base, ext);
}

static void copy_dir(const char *from, const char *to) {
    SL_PASS(sl_fs_mkdirs(to));
    DIR *d = opendir(from);
    SL_TRUE(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char a[4600], b[4600];
        snprintf(a, sizeof(a), "%s/%s", from, e->d_name);
        snprintf(b, sizeof(b), "%s/%s", to, e->d_name);
        copy_file(a, b);
    }
    closedir(d);
}

static void crash_leftovers_are_cleaned_up(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 3000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    int64_t ts = 1000;
    sl_compact_stats st;
    random_appends(pl, m, 3000, 0, 50, 8, 5, true, &ts);
    int64_t cp1 = compact(pl, ts, &st), horizon1 = ts - conf.delete_retention_ms;
    random_appends(pl, m, 3000, 0, 50, 8, 5, true, &ts); /* dirty again */
    sl_partlog_close(pl);

    /* 1. A pass that stopped before its commit: its scratch goes, the log is as it was. */
    char path[4300], path2[4300];
    int64_t bases[1024];
    size_t n = list_bases(dir, bases, 1024);
    SL_TRUE(n > 4);
    seg_file(path, dir, bases[1], ".cleaned.log");
    write_file(path, "half a segment", 14);
    seg_file(path2, dir, bases[1], ".cleaned.index");
    write_file(path2, "12345678", 8);
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    SL_TRUE(!exists(path) && !exists(path2));
    SL_EQ(list_bases(dir, bases, 1024), n);
    check_all(pl, m, cp1, horizon1, false, true);
    scan before;
    scan_log(pl, m, &before);
    sl_partlog_close(pl);
    char copy[4200];
    sprintf(copy, "%s-copy", dir);
    copy_dir(dir, copy); /* the log as the second pass finds it */

    /* 2. A pass that stopped after its commit: the reopen completes the swap. */
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    int64_t cp2 = compact(pl, ts, &st);
    SL_TRUE(cp2 > cp1);
    scan after;
    scan_log(pl, m, &after);
    sl_partlog_close(pl);
    int64_t cbases[1024];
    SL_TRUE(list_bases(dir, cbases, 1024) > 1);
    int64_t b = cbases[0], e = cbases[1];
    SL_EQ(b, bases[0]);
    SL_TRUE(bases[1] < e); /* the first group merged several segments into one */
    char swap[4300];
    sprintf(swap, "%s/%020" PRId64 ".%020" PRId64 ".swap", copy, b, e);
    seg_file(path, dir, b, ".log");
    copy_file(path, swap);
    seg_file(path, dir, b, ".index");
    seg_file(path2, copy, b, ".cleaned.index");
    copy_file(path, path2);
    char path3[4300];
    seg_file(path, dir, b, ".timeindex");
    seg_file(path3, copy, b, ".cleaned.timeindex");
    copy_file(path, path3);
    /* The crash came after the first old segment was deleted, before the others were. */
    seg_file(path, copy, bases[0], ".log");
    SL_EQ(unlink(path), 0);
    SL_PASS(sl_partlog_open(copy, "users-0", &conf, &pl));
    SL_TRUE(!exists(swap) && !exists(path2) && !exists(path3));
    int64_t rbases[1024];
    size_t rn = list_bases(copy, rbases, 1024), j = 0;
    SL_EQ(rbases[0], b);
    for (size_t i = 0; i < n; i++) /* the old segments of the group are gone, the rest stay */
        if (bases[i] >= e)
            SL_EQ(rbases[1 + j++], bases[i]);
    SL_EQ(rn, 1 + j);
    scan s;
    scan_log(pl, m, &s);
    for (int64_t off = 0; off < m->leo; off++)
        SL_EQ(s.present[off], off < e ? after.present[off] : before.present[off]);
    check_lookups(pl, m, &s);
    scan_free(&s);
    scan_free(&before);
    scan_free(&after);
    sl_partlog_close(pl);

    /* 3. A checkpoint that is not one is ignored: the whole log counts as dirty again. */
    sprintf(path, "%s/cleaner-offset-checkpoint", dir);
    write_file(path, "0\n12x\n", 6);
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    compact(pl, ts, &st);
    SL_TRUE(st.ran);
    SL_TRUE(st.dirty_ratio == 1.0);
    SL_EQ(st.cleaned_upto, cp2);
    check_all(pl, m, cp2, ts - conf.delete_retention_ms, false, true);
    sl_partlog_close(pl);
    free(m);
    SL_PASS(sl_fs_remove_tree(copy));
    drop_dir(dir);
}

static void the_checkpoint_is_read_strictly(void) {
    char *dir = make_dir();
    SL_PASS(sl_fs_mkdirs(dir));
    char path[4300];
    sprintf(path, "%s/cleaner-offset-checkpoint", dir);
    int64_t off = -7;
    SL_EQ(sl_compact_read_checkpoint(dir, "users-0", &off), 0); /* absent */
    static const struct {
        const char *text;
        int found;
        int64_t offset;
    } cases[] = {
        {"0\n5\n", 1, 5},
        {"0\n0\n", 1, 0},
        {"0\n9223372036854775807\n", 1, INT64_MAX},
        {"0\n9223372036854775808\n", 0, 0},
        {"0\n99999999999999999999\n", 0, 0},
        {"0\n-1\n", 0, 0},
        {"0\n\n", 0, 0},
        {"0\n5", 0, 0},
        {"1\n5\n", 0, 0},
        {"0\n5\n\n", 0, 0},
        {"0\n 5\n", 0, 0},
        {"0\n5\nmore", 0, 0},
        {"", 0, 0},
        {"0\n00000000000000000000000000000000000000000000000000000000000000001\n", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(path, cases[i].text, strlen(cases[i].text));
        off = -7;
        if (sl_compact_read_checkpoint(dir, "users-0", &off) != cases[i].found)
            SL_TEST_FAIL_("checkpoint %zu (\"%s\") misread", i, cases[i].text);
        if (cases[i].found)
            SL_EQ(off, cases[i].offset);
        else
            SL_EQ(off, -7);
    }
    /* What the cleaner writes, it reads. */
    SL_PASS(sl_compact_write_checkpoint(dir, "users-0", 123456789));
    SL_EQ(sl_compact_read_checkpoint(dir, "users-0", &off), 1);
    SL_EQ(off, 123456789);
    drop_dir(dir);
}

/* ---- gating and refusals ---- */

static void the_dirty_ratio_and_the_lag_gate_passes(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 4000;
    conf.min_cleanable_dirty_ratio = 0.5;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    int64_t ts = 1000;
    random_appends(pl, m, 3000, 0, 1000, 10, 0, false, &ts); /* few duplicates: shrinks little */
    sl_compact_stats st;
    int64_t cp = compact(pl, ts, &st);
    SL_TRUE(st.ran && st.dirty_ratio == 1.0);
    /* A little more: under the ratio, nothing runs. */
    random_appends(pl, m, 200, 0, 1000, 10, 0, false, &ts);
    SL_EQ(compact(pl, ts, &st), cp);
    SL_TRUE(!st.ran && st.dirty_ratio < 0.5);
    check_all(pl, m, cp, INT64_MIN, false, false);
    /* Much more: it runs. */
    random_appends(pl, m, 4000, 0, 1000, 10, 0, false, &ts);
    cp = compact(pl, ts, &st);
    SL_TRUE(st.ran && st.dirty_ratio >= 0.5);
    check_all(pl, m, cp, INT64_MIN, false, false);
    /* min.compaction.lag.ms: segments with records younger than the lag wait. */
    conf.min_compaction_lag_ms = 100000;
    conf.min_cleanable_dirty_ratio = 0;
    sl_partlog_set_conf(pl, &conf);
    random_appends(pl, m, 2000, 0, 1000, 10, 0, false, &ts);
    SL_EQ(compact(pl, ts, &st), cp);
    SL_TRUE(!st.ran);
    cp = compact(pl, ts + 100000, &st);
    SL_TRUE(st.ran && cp > 0);
    check_all(pl, m, cp, INT64_MIN, false, true);
    /* A log that is not compacted is never touched. */
    conf.compact = false;
    sl_partlog_set_conf(pl, &conf);
    random_appends(pl, m, 2000, 0, 10, 10, 0, false, &ts);
    int64_t size = sl_partlog_size_bytes(pl);
    SL_EQ(compact(pl, ts + 100000, &st), cp);
    SL_TRUE(!st.ran && sl_partlog_size_bytes(pl) == size);
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

static void records_without_a_key_are_refused(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.compact = false;
    conf.delete_retention = true;
    conf.segment_bytes = 1000;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    /* Taken while the log is not compacted... */
    rec_spec r[3] = {{-1, false, 100, 20}, {1, false, 101, 20}, {-1, false, 102, 20}};
    append_batch(pl, m, r, 3, SL_CODEC_NONE, NULL, 200);
    append_batch(pl, m, r, 3, SL_CODEC_ZSTD, NULL, 200);
    conf.compact = true;
    conf.delete_retention = false;
    sl_partlog_set_conf(pl, &conf);
    /* ...refused once it is, compressed or not, naming the reason. */
    for (int codec = 0; codec <= SL_CODEC_MAX; codec++) {
        sl_buf req = SL_BUF_INIT;
        build_batch(&req, m, r, 3, (enum sl_codec)codec, NULL);
        int64_t records;
        char err[256] = "";
        SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)), SL_EINVAL);
        SL_TRUE(strstr(err, "key") != NULL && strstr(err, "users-0") != NULL);
        sl_buf_free(&req);
    }
    rec_spec keyed[2] = {{1, false, 103, 20}, {2, true, 104, 0}};
    for (int i = 0; i < 20; i++)
        append_batch(pl, m, keyed, 2, SL_CODEC_SNAPPY, NULL, 200);
    /* The old records without a key are kept as they are by compaction. */
    sl_compact_stats st;
    int64_t cp = compact(pl, 200, &st);
    SL_TRUE(st.segments_rewritten > 0);
    check_all(pl, m, cp, INT64_MIN, false, true);
    scan s;
    scan_log(pl, m, &s);
    SL_TRUE(s.present[0] && s.present[2] && s.present[3] && s.present[5] && !s.present[1]);
    scan_free(&s);
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

/* A one-record batch whose record claims offset delta 1 (the batch holds offset 0 only). */
static void build_bad_delta(sl_buf *req) {
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    SL_PASS(sl_batch_builder_add(&b, 100, "k", 1, "v", 1, NULL, 0));
    sl_batch_builder_finish(&b);
    /* length varint, attributes, timestampDelta 0, then offsetDelta (zigzag 0 -> 1: 0x02) */
    SL_EQ(b.buf.data[SL_BATCH_HEADER_SIZE + 3], 0);
    b.buf.data[SL_BATCH_HEADER_SIZE + 3] = 2;
    sl_be32_put(b.buf.data + SL_BATCH_OFF_CRC, sl_batch_compute_crc(b.buf.data, b.buf.len));
    SL_PASS(sl_buf_append(req, b.buf.data, b.buf.len));
    sl_batch_builder_free(&b);
}

static void records_with_wrong_offsets_stop_the_cleaner(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 500;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    sl_buf req = SL_BUF_INIT;
    build_bad_delta(&req);
    int64_t records;
    char err[256] = "";
    SL_FAIL(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)), SL_ECORRUPT);
    SL_TRUE(strstr(err, "offset delta 1") != NULL);
    /* A log that was not compacted took it; once it is, the cleaner refuses to guess. */
    conf.compact = false;
    sl_partlog_set_conf(pl, &conf);
    SL_PASS(sl_partlog_validate(pl, req.data, req.len, &records, err, sizeof(err)));
    sl_append_result res;
    SL_PASS(sl_partlog_append(pl, req.data, req.len, 0, 200, &res));
    model *m = model_new();
    m->key[0] = 0;
    m->leo = 1;
    int64_t ts = 1000;
    random_appends(pl, m, 200, 0, 10, 5, 0, false, &ts);
    conf.compact = true;
    sl_partlog_set_conf(pl, &conf);
    int64_t size = sl_partlog_size_bytes(pl);
    sl_compact_stats st;
    SL_FAIL(sl_partlog_compact(pl, ts, &st), SL_ECORRUPT);
    SL_PASS(sl_partlog_compact(pl, ts, &st)); /* given up on until reopened: no more errors */
    SL_TRUE(!st.ran);
    SL_EQ(sl_partlog_size_bytes(pl), size);
    /* A reference keeps a closed log alive, and a closed log is not compacted. */
    sl_partlog_ref(pl);
    sl_partlog_close(pl);
    SL_PASS(sl_partlog_compact(pl, ts, &st));
    SL_TRUE(!st.ran);
    sl_partlog_unref(pl);
    sl_buf_free(&req);
    free(m);
    drop_dir(dir);
}

static void retention_leaves_compact_only_logs_alone(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 1000;
    conf.retention_ms = 1000;
    conf.retention_bytes = 100;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    model *m = model_new();
    int64_t ts = 1000;
    random_appends(pl, m, 300, 0, 20, 5, 0, false, &ts);
    size_t segs = sl_partlog_segment_count(pl);
    SL_TRUE(segs > 3);
    SL_EQ(sl_partlog_enforce_retention(pl, ts + 1000000), 0); /* compact */
    SL_EQ(sl_partlog_segment_count(pl), segs);
    conf.delete_retention = true; /* compact,delete */
    sl_partlog_set_conf(pl, &conf);
    SL_TRUE(sl_partlog_enforce_retention(pl, ts + 1000000) > 0);
    sl_partlog_close(pl);
    free(m);
    drop_dir(dir);
}

/* ---- transactions ---- */

/* Appends one batch of a single record key=value; transactional for pid >= 0 (sequence
 * 'seq'). Returns its offset. */
static int64_t txn_put(sl_partlog *pl, int64_t pid, int32_t seq, const char *key,
                       const char *value) {
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    SL_PASS(sl_batch_builder_add(&b, 1000, key, strlen(key), value, strlen(value), NULL, 0));
    if (pid >= 0) {
        b.producer_id = pid;
        b.producer_epoch = 0;
        b.base_sequence = seq;
        b.flags = SL_BATCH_ATTR_TRANSACTIONAL;
    }
    sl_batch_builder_finish(&b);
    sl_append_result res;
    SL_PASS(sl_partlog_append(pl, b.buf.data, b.buf.len, 0, 1000, &res));
    SL_PASS(sl_partlog_set_high_watermark(pl, res.last_offset + 1));
    sl_batch_builder_free(&b);
    return res.base_offset;
}

static void txn_end(sl_partlog *pl, int64_t pid, int type) {
    int64_t off;
    SL_PASS(sl_partlog_append_marker(pl, pid, 0, type, 0, 1000, &off));
    SL_PASS(sl_partlog_set_high_watermark(pl, off + 1));
}

/* What the log holds now: each value found into 'values' ("key=value" lines), and how many
 * control batches. */
static int txn_scan(sl_partlog *pl, sl_buf *values) {
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    int64_t at = rr.log_start_offset;
    int markers = 0;
    sl_buf out = SL_BUF_INIT;
    values->len = 0;
    while (at < rr.high_watermark) {
        out.len = 0;
        SL_PASS(sl_partlog_read(pl, at, 1 << 20, &out, &rr));
        SL_TRUE(out.len > 0);
        for (size_t pos = 0; pos < out.len;) {
            sl_batch_header h;
            size_t total = sl_batch_total_size(out.data + pos, out.len - pos);
            SL_PASS(sl_batch_header_parse(out.data + pos, total, &h));
            markers += (h.attributes & SL_BATCH_ATTR_CONTROL) != 0;
            sl_record_iter it;
            sl_record_view rv;
            SL_PASS(sl_record_iter_start(&it, out.data + pos, total));
            while (!(h.attributes & SL_BATCH_ATTR_CONTROL) && sl_record_iter_next(&it, &rv) == 1) {
                SL_PASS(sl_buf_append(values, rv.key, rv.key_len));
                SL_PASS(sl_buf_append(values, "=", 1));
                SL_PASS(sl_buf_append(values, rv.value, rv.value_len));
                SL_PASS(sl_buf_append(values, "\n", 1));
            }
            at = h.base_offset + h.last_offset_delta + 1;
            pos += total;
        }
    }
    SL_PASS(sl_buf_append(values, "", 1));
    sl_buf_free(&out);
    return markers;
}

static void compaction_respects_transactions(void) {
    char *dir = make_dir();
    sl_logconf conf = compact_conf();
    conf.segment_bytes = 600;
    conf.min_cleanable_dirty_ratio = 0;
    sl_partlog *pl;
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    txn_put(pl, -1, 0, "k1", "plain");
    txn_put(pl, 5, 0, "k1", "aborted"); /* must not count as k1's latest value */
    txn_end(pl, 5, SL_CONTROL_ABORT);
    txn_put(pl, 6, 0, "k2", "committed");
    txn_end(pl, 6, SL_CONTROL_COMMIT);
    char key[16], value[64];
    for (int i = 0; i < 30; i++) { /* other keys: segments roll */
        snprintf(key, sizeof(key), "f%d", i);
        snprintf(value, sizeof(value), "filler-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i);
        txn_put(pl, -1, 0, key, value);
    }
    txn_put(pl, 7, 0, "k2", "open"); /* undecided: the cleaner stops before it */
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof(key), "g%d", i);
        snprintf(value, sizeof(value), "filler-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i);
        txn_put(pl, -1, 0, key, value);
    }
    SL_TRUE(sl_partlog_segment_count(pl) > 4);
    sl_compact_stats st;
    compact(pl, 2000, &st);
    SL_TRUE(st.ran);
    sl_buf v = SL_BUF_INIT;
    SL_EQ(txn_scan(pl, &v), 2); /* markers stay: they end their transactions at the next open */
    const char *text = (const char *)v.data;
    SL_TRUE(strstr(text, "k1=plain\n") != NULL);
    SL_TRUE(strstr(text, "k1=aborted") == NULL); /* dropped */
    SL_TRUE(strstr(text, "k2=committed\n") != NULL);
    SL_TRUE(strstr(text, "k2=open\n") != NULL);
    /* Once it commits, the open transaction's value is k2's latest. */
    txn_end(pl, 7, SL_CONTROL_COMMIT);
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof(key), "h%d", i);
        snprintf(value, sizeof(value), "filler-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i);
        txn_put(pl, -1, 0, key, value);
    }
    compact(pl, 3000, &st);
    txn_scan(pl, &v);
    text = (const char *)v.data;
    SL_TRUE(strstr(text, "k2=committed") == NULL);
    SL_TRUE(strstr(text, "k2=open\n") != NULL);
    SL_TRUE(strstr(text, "k1=plain\n") != NULL);
    /* And the index comes back the same from the cleaned log. */
    sl_partlog_close(pl);
    SL_PASS(sl_partlog_open(dir, "users-0", &conf, &pl));
    sl_read_result rr;
    sl_partlog_offsets(pl, &rr);
    SL_EQ(rr.last_stable_offset, rr.high_watermark);
    sl_txn_range *ab;
    size_t nab;
    SL_PASS(sl_partlog_aborted_txns(pl, 0, rr.high_watermark, &ab, &nab));
    free(ab);
    SL_TRUE(nab <= 1); /* pid 5's range, if its (emptied) batch was kept */
    sl_buf_free(&v);
    sl_partlog_close(pl);
    drop_dir(dir);
}

SL_TESTS({"random workloads: the latest value per key survives, nothing older",
          random_workload_matches_the_model},
         {"a small key map cleans the log in several passes",
          a_small_key_map_cleans_in_several_passes},
         {"tombstones live for delete.retention.ms", tombstones_live_for_delete_retention_ms},
         {"compressed batches of every codec survive compaction", every_codec_survives},
         {"readers keep reading while segments are swapped",
          readers_keep_reading_while_segments_are_swapped},
         {"appends go on during a pass", appends_go_on_during_a_pass},
         {"retention (compact,delete) races the cleaner", retention_races_the_cleaner},
         {"reopening keeps offsets, indexes and producer state",
          reopen_keeps_offsets_indexes_and_producers},
         {"crash leftovers are cleaned up or completed", crash_leftovers_are_cleaned_up},
         {"the cleaner checkpoint is read strictly", the_checkpoint_is_read_strictly},
         {"the dirty ratio and min.compaction.lag.ms gate passes",
          the_dirty_ratio_and_the_lag_gate_passes},
         {"records without a key are refused on compacted logs", records_without_a_key_are_refused},
         {"records with wrong offsets are refused and stop the cleaner",
          records_with_wrong_offsets_stop_the_cleaner},
         {"retention leaves compact-only logs alone", retention_leaves_compact_only_logs_alone},
         {"compaction respects transactions", compaction_respects_transactions})

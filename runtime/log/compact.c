/* Log compaction, after Kafka's log cleaner.
 *
 * A pass
 *   1. takes, under the partition lock, references to the cleanable segments: the ones wholly
 *      below the active segment and the HW whose newest record is min.compaction.lag.ms old. The
 *      clean point C splits them: segments ending at or below C were compacted by an earlier
 *      pass, so no key appears twice among their records; the rest are dirty. Nothing happens
 *      unless dirty bytes / cleanable bytes >= min.cleanable.dirty.ratio.
 *   2. maps every key of the dirty segments to its latest offset (key bytes stored, so a hash
 *      collision never decides anything), oldest segment first, until the map reaches its memory
 *      limit; the mapped segments end at E. Entries of a segment mapped only in part stay: each
 *      says truly that a newer record of its key exists.
 *   3. rewrites the segments below E, grouped so that neighbours whose sizes add up to at most
 *      segment.bytes become one segment. A record is kept unless a newer record of its key is in
 *      the map, or it is a tombstone whose timestamp is older than now - delete.retention.ms
 *      (Kafka counts the delete horizon from when the tombstone's segment was first cleaned; the
 *      record's own timestamp is the simpler rule). Records without a key are kept as they are
 *      (compacted logs refuse them, but a log switched to compact may hold some). A single
 *      segment that loses nothing is left alone.
 *   4. swaps each rewritten group in under the lock, oldest group first (so a tombstone never
 *      goes before the older values it hides), then records E as the new clean point.
 * Nothing is held locked while reading and writing, so appends and reads go on; readers that hold
 * an old segment keep reading its unlinked files.
 *
 * Batches keep their place. A batch that keeps some records keeps its baseOffset,
 * baseTimestamp, lastOffsetDelta, producer id, epoch and base sequence; its records keep their
 * bytes (so their offset and timestamp deltas), recordsCount shrinks, maxTimestamp becomes that
 * of the kept records (CreateTime), a compressed batch is compressed again with its codec, and
 * the CRC is computed anew. A batch that keeps nothing is dropped, except (emptied, uncompressed,
 * recordsCount 0) the last batch of each group, so that every segment still ends where it ended
 * and the log end offset can never move back, and the latest batch of each idempotent producer,
 * so that its sequence state is rebuilt after a restart.
 *
 * Files, in the partition directory:
 *   <base>.cleaned.log, <base>.cleaned.index, <base>.cleaned.timeindex
 *       a segment being written (same formats as a live segment, log/segment.h); <base> is the
 *       20-digit base offset of the first segment of its group. Scratch until committed: a
 *       reopen deletes it.
 *   <base>.<end>.swap
 *       the commit point: '<base>.cleaned.log', written in full and fsynced with its indexes,
 *       renamed (then the directory fsynced). It replaces every segment whose base offset is in
 *       [base, end). The swap then deletes those segments' files, renames the cleaned indexes
 *       to '<base>.index' and '<base>.timeindex' and the swap file to '<base>.log'. A reopen that
 *       finds a swap file does the same (a missing index is rebuilt from the log), so a crash at
 *       any step leaves either the old segments or the new one, never neither.
 *   cleaner-offset-checkpoint
 *       the clean point, as text written atomically (temporary file, fsync, rename): the line
 *       "0" (the format version) and the offset as a decimal line, nothing else. Read strictly;
 *       a file that does not parse is ignored with a warning, which only makes the next pass
 *       treat the whole log as dirty. It is written after the swaps, so it never claims more
 *       than is done. */
#include "log/compact.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "log/batch.h"
#include "log/compression.h"
#include "sluice/err.h"

#define CHECKPOINT_FILE "cleaner-offset-checkpoint"
#define CHECKPOINT_MAX_BYTES 64
#define OFFSET_DIGITS 20

/* Largest records region one batch may decompress to (the consumer's bound too). */
#define CLEAN_MAX_RECORDS_BYTES (256u * 1024 * 1024)
#define READ_CHUNK (1u << 20)  /* segments are read this much at a time */
#define WRITE_CHUNK (1u << 20) /* and written */

static atomic_size_t memory_limit = 128u * 1024 * 1024;

void sl_compact_set_memory_limit(size_t bytes) {
    atomic_store(&memory_limit, bytes);
}

/* ---- SipHash-2-4: keys come from producers, so the map's hash is keyed (no flooding) ---- */

static uint64_t rotl64(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl64(v1, 13);                                                                       \
        v1 ^= v0;                                                                                  \
        v0 = rotl64(v0, 32);                                                                       \
        v2 += v3;                                                                                  \
        v3 = rotl64(v3, 16);                                                                       \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl64(v3, 21);                                                                       \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl64(v1, 17);                                                                       \
        v1 ^= v2;                                                                                  \
        v2 = rotl64(v2, 32);                                                                       \
    } while (0)

static uint64_t siphash(const uint8_t *in, size_t len, uint64_t k0, uint64_t k1) {
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the offset map: key bytes -> latest offset ---- */

typedef struct map_slot {
    uint64_t hash;   /* 0: empty (real hashes are made non-zero) */
    uint64_t key_at; /* where the key's bytes start in the arena */
    int64_t offset;
    uint32_t key_len;
} map_slot;

typedef struct offset_map {
    map_slot *slots;
    size_t cap; /* a power of two */
    size_t count;
    sl_buf keys; /* every key's bytes, back to back */
    uint64_t k0, k1;
} offset_map;

static int map_init(offset_map *m) {
    memset(m, 0, sizeof(*m));
    uint64_t seed[2];
    if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        /* No entropy yet (early boot): a weaker seed only weakens flooding resistance. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)m;
        seed[1] = (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32);
    }
    m->k0 = seed[0];
    m->k1 = seed[1];
    m->cap = 1024;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    return m->slots ? 0 : SL_ENOMEM;
}

static void map_free(offset_map *m) {
    free(m->slots);
    sl_buf_free(&m->keys);
}

static size_t map_bytes(const offset_map *m) {
    return m->cap * sizeof(map_slot) + m->keys.cap;
}

static uint64_t map_hash(const offset_map *m, const uint8_t *key, size_t len) {
    uint64_t h = siphash(key, len, m->k0, m->k1);
    return h ? h : 1;
}

/* The slot holding 'key', or the empty slot where it would go. */
static map_slot *map_slot_for(const offset_map *m, uint64_t h, const uint8_t *key, size_t len) {
    for (size_t i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        map_slot *s = &m->slots[i];
        if (s->hash == 0)
            return s;
        if (s->hash == h && s->key_len == len &&
            (len == 0 || memcmp(m->keys.data + s->key_at, key, len) == 0))
            return s;
    }
}

static int map_grow(offset_map *m) {
    size_t cap = m->cap * 2;
    map_slot *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].hash == 0)
            continue;
        size_t j = (size_t)m->slots[i].hash & (cap - 1);
        while (slots[j].hash)
            j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

static int map_put(offset_map *m, const uint8_t *key, size_t len, int64_t offset) {
    if ((m->count + 1) * 2 > m->cap) { /* at most half full: probes stay short */
        int rc = map_grow(m);
        if (rc)
            return rc;
    }
    uint64_t h = map_hash(m, key, len);
    map_slot *s = map_slot_for(m, h, key, len);
    if (s->hash) {
        if (offset > s->offset)
            s->offset = offset;
        return 0;
    }
    size_t at = m->keys.len;
    int rc = sl_buf_append(&m->keys, key, len);
    if (rc)
        return rc;
    *s = (map_slot){h, at, offset, (uint32_t)len};
    m->count++;
    return 0;
}

static bool map_get(const offset_map *m, const uint8_t *key, size_t len, int64_t *offset) {
    map_slot *s = map_slot_for(m, map_hash(m, key, len), key, len);
    if (s->hash == 0)
        return false;
    *offset = s->offset;
    return true;
}

/* ---- reading a segment batch by batch ---- */

typedef struct seg_reader {
    sl_segment *seg;
    int64_t end;     /* bytes of the segment to read */
    int64_t buf_pos; /* file position of buf.data[0] */
    size_t at;       /* the next batch, in buf */
    sl_buf buf;
} seg_reader;

static void reader_init(seg_reader *r, sl_segment *seg, int64_t end) {
    memset(r, 0, sizeof(*r));
    r->seg = seg;
    r->end = end;
}

/* 1 and the next batch, checked with its CRC (valid until the next call); 0 at the end;
 * SL_ECORRUPT, SL_EIO or SL_ENOMEM. The segment is sealed, so whole batches fill it. */
static int reader_next(seg_reader *r, const uint8_t **batch, size_t *total, int64_t *file_pos,
                       sl_batch_header *h) {
    int64_t pos = r->buf_pos + (int64_t)r->at;
    if (pos >= r->end)
        return 0;
    size_t need = SL_BATCH_HEADER_SIZE;
    for (;;) {
        size_t have = r->buf.len - r->at;
        if (have >= SL_BATCH_LOG_OVERHEAD) {
            size_t t = sl_batch_total_size(r->buf.data + r->at, have);
            if (t < SL_BATCH_HEADER_SIZE || (int64_t)t > r->end - pos)
                return SL_ECORRUPT;
            need = t;
        }
        if (have >= need)
            break;
        if (have && r->at)
            memmove(r->buf.data, r->buf.data + r->at, have);
        r->buf.len = have;
        r->buf_pos = pos;
        r->at = 0;
        int64_t left = r->end - pos - (int64_t)have;
        size_t want = need - have > READ_CHUNK ? need - have : READ_CHUNK;
        if ((int64_t)want > left)
            want = (size_t)left;
        if (want == 0)
            return SL_ECORRUPT;
        int rc = sl_segment_read(r->seg, pos + (int64_t)have, want, &r->buf);
        if (rc)
            return rc;
    }
    const uint8_t *p = r->buf.data + r->at;
    if (sl_batch_validate_stored(p, need, h))
        return SL_ECORRUPT;
    *batch = p;
    *total = need;
    *file_pos = pos;
    r->at += need;
    return 1;
}

static void reader_free(seg_reader *r) {
    sl_buf_free(&r->buf);
}

/* ---- the checkpoint ---- */

/* 20 decimal digits of a file name into a non-negative int64. */
static bool parse_offset20(const char *s, int64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < OFFSET_DIGITS; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v > ((uint64_t)INT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = (int64_t)v;
    return true;
}

int sl_compact_read_checkpoint(const char *dir, const char *name, int64_t *offset) {
    char path[4200], text[CHECKPOINT_MAX_BYTES + 1];
    snprintf(path, sizeof(path), "%s/%s", dir, CHECKPOINT_FILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            sl_warn("log", "%s: cannot read %s (%s): the whole log counts as dirty", name, path,
                    strerror(errno));
        return 0;
    }
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(text) && (r = read(fd, text + n, sizeof(text) - n)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            n = sizeof(text); /* an error reads as an impossible file */
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    /* Exactly "0\n" then 1 to 19 digits then "\n". */
    bool ok = n < sizeof(text) && n >= 4 && text[0] == '0' && text[1] == '\n' &&
              text[n - 1] == '\n' && n - 3 <= 19;
    uint64_t v = 0;
    for (size_t i = 2; ok && i < n - 1; i++) {
        if (text[i] < '0' || text[i] > '9' ||
            v > ((uint64_t)INT64_MAX - (uint64_t)(text[i] - '0')) / 10)
            ok = false;
        else
            v = v * 10 + (uint64_t)(text[i] - '0');
    }
    if (!ok) {
        sl_warn("log",
                "%s: %s is not a cleaner checkpoint; ignoring it (the whole log counts as "
                "dirty)",
                name, path);
        return 0;
    }
    *offset = (int64_t)v;
    return 1;
}

int sl_compact_write_checkpoint(const char *dir, const char *name, int64_t offset) {
    char path[4200], text[64];
    snprintf(path, sizeof(path), "%s/%s", dir, CHECKPOINT_FILE);
    int n = snprintf(text, sizeof(text), "0\n%" PRId64 "\n", offset);
    int rc = sl_fs_write_atomic(path, text, (size_t)n);
    if (rc)
        sl_warn("log", "%s: cannot write %s: %s (the next start compacts more than needed)", name,
                path, strerror(errno));
    return rc;
}

/* ---- swapping on disk ---- */

static void file_path(char *out, size_t len, const char *dir, int64_t base, const char *ext) {
    snprintf(out, len, "%s/%020" PRId64 "%s", dir, base, ext);
}

static void swap_path(char *out, size_t len, const char *dir, int64_t base, int64_t end) {
    snprintf(out, len, "%s/%020" PRId64 ".%020" PRId64 ".swap", dir, base, end);
}

int sl_compact_commit_swap(const char *dir, int64_t base, int64_t end) {
    char from[4200], to[4200];
    file_path(from, sizeof(from), dir, base, ".cleaned.log");
    swap_path(to, sizeof(to), dir, base, end);
    if (rename(from, to) != 0) {
        sl_error("log", "cannot rename %s to %s: %s", from, to, strerror(errno));
        return SL_EIO;
    }
    if (sl_fs_sync_dir(dir)) {
        sl_error("log", "fsync of %s failed: %s", dir, strerror(errno));
        return SL_EIO;
    }
    return 0;
}

/* rename(from, to), where a missing 'from' is fine when 'optional'. */
static int rename_file(const char *dir, int64_t base, const char *from_ext, const char *to_ext,
                       bool optional) {
    char from[4200], to[4200];
    file_path(from, sizeof(from), dir, base, from_ext);
    file_path(to, sizeof(to), dir, base, to_ext);
    if (rename(from, to) == 0 || (optional && errno == ENOENT))
        return 0;
    sl_error("log", "cannot rename %s to %s: %s", from, to, strerror(errno));
    return SL_EIO;
}

int sl_compact_finish_swap(const char *dir, int64_t base, int64_t end) {
    char swap[4200], live[4200];
    int rc = rename_file(dir, base, ".cleaned.index", ".index", true);
    if (rc == 0)
        rc = rename_file(dir, base, ".cleaned.timeindex", ".timeindex", true);
    if (rc)
        return rc;
    swap_path(swap, sizeof(swap), dir, base, end);
    file_path(live, sizeof(live), dir, base, ".log");
    if (rename(swap, live) != 0) {
        sl_error("log", "cannot rename %s to %s: %s", swap, live, strerror(errno));
        return SL_EIO;
    }
    if (sl_fs_sync_dir(dir)) {
        sl_error("log", "fsync of %s failed: %s", dir, strerror(errno));
        return SL_EIO;
    }
    return 0;
}

/* ---- recovery at open ---- */

typedef struct name_list {
    char **names;
    size_t n, cap;
} name_list;

static int names_add(name_list *l, const char *name) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **p = realloc(l->names, cap * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        l->names = p;
        l->cap = cap;
    }
    if ((l->names[l->n] = strdup(name)) == NULL)
        return SL_ENOMEM;
    l->n++;
    return 0;
}

static void names_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
}

/* "<20 digits>.<20 digits>.swap" */
static bool parse_swap_name(const char *s, int64_t *base, int64_t *end) {
    return strlen(s) == 2 * OFFSET_DIGITS + 6 && s[OFFSET_DIGITS] == '.' &&
           strcmp(s + 2 * OFFSET_DIGITS + 1, ".swap") == 0 && parse_offset20(s, base) &&
           parse_offset20(s + OFFSET_DIGITS + 1, end) && *base < *end;
}

/* A live segment file, "<20 digits>" and ".log", ".index" or ".timeindex": its base offset. */
static bool parse_segment_file(const char *s, int64_t *base) {
    const char *ext = s + OFFSET_DIGITS;
    return strlen(s) > OFFSET_DIGITS &&
           (strcmp(ext, ".log") == 0 || strcmp(ext, ".index") == 0 ||
            strcmp(ext, ".timeindex") == 0) &&
           parse_offset20(s, base);
}

/* "<20 digits>.cleaned.log" and its indexes: the scratch of an uncommitted pass. */
static bool is_cleaned_file(const char *s) {
    int64_t base;
    const char *ext = s + OFFSET_DIGITS;
    return strlen(s) > OFFSET_DIGITS &&
           (strcmp(ext, ".cleaned.log") == 0 || strcmp(ext, ".cleaned.index") == 0 ||
            strcmp(ext, ".cleaned.timeindex") == 0) &&
           parse_offset20(s, &base);
}

int sl_compact_recover_dir(const char *dir, const char *name) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        sl_error("log", "%s: cannot list %s: %s", name, dir, strerror(errno));
        return SL_EIO;
    }
    name_list swaps = {0}, segfiles = {0}, scratch = {0};
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        int64_t a, b;
        if (parse_swap_name(e->d_name, &a, &b))
            rc = names_add(&swaps, e->d_name);
        else if (parse_segment_file(e->d_name, &a))
            rc = names_add(&segfiles, e->d_name);
        else if (is_cleaned_file(e->d_name))
            rc = names_add(&scratch, e->d_name);
    }
    closedir(d);
    bool changed = false;
    for (size_t i = 0; rc == 0 && i < swaps.n; i++) {
        int64_t base, end, seg;
        parse_swap_name(swaps.names[i], &base, &end);
        /* Committed: the old segments in [base, end) go, whatever is left of them. */
        for (size_t j = 0; j < segfiles.n; j++) {
            char path[4400];
            if (!parse_segment_file(segfiles.names[j], &seg) || seg < base || seg >= end)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, segfiles.names[j]);
            if (unlink(path) != 0 && errno != ENOENT) {
                sl_error("log", "%s: cannot remove %s: %s", name, path, strerror(errno));
                rc = SL_EIO;
            }
        }
        if (rc == 0)
            rc = sl_compact_finish_swap(dir, base, end);
        if (rc == 0)
            sl_warn("log",
                    "%s: completed a compaction swap that a stop interrupted: segment "
                    "%020" PRId64 " now holds offsets %" PRId64 " to %" PRId64,
                    name, base, base, end - 1);
        changed = true;
    }
    for (size_t i = 0; rc == 0 && i < scratch.n; i++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, scratch.names[i]);
        if (unlink(path) == 0) {
            sl_info("log", "%s: removed %s, left by an unfinished compaction", name,
                    scratch.names[i]);
            changed = true;
        } else if (errno != ENOENT) {
            sl_error("log", "%s: cannot remove %s: %s", name, path, strerror(errno));
            rc = SL_EIO;
        }
    }
    if (rc == 0 && changed && sl_fs_sync_dir(dir))
        rc = SL_EIO;
    names_free(&swaps);
    names_free(&segfiles);
    names_free(&scratch);
    return rc;
}

/* ---- a pass ---- */

typedef struct cleaner {
    sl_partlog *pl;
    const sl_clean_view *v;
    offset_map map;
    int64_t horizon; /* tombstones with a timestamp below it go */
    sl_buf records;  /* the decompressed records of the batch at hand */
    sl_buf kept;     /* the bytes of its records that stay, back to back */
    sl_buf batch;    /* a batch rebuilt from them */
    sl_buf zbuf;     /* compression scratch */
    sl_buf out;      /* batches not yet appended to the new segment */
    sl_segment *seg; /* the new segment of the group at hand, NULL until needed */
    sl_compact_stats *st;
} cleaner;

/* Records must lie within their batch's offsets, in order: the map trusts their offsets (a
 * producer's nonsense could otherwise hide every other record of its key). Compacted logs check
 * this at produce time; a log switched to compact may hold older batches. */
static bool record_offset_ok(const sl_batch_header *h, const sl_record_view *rv, int64_t *prev) {
    if (rv->offset <= *prev || rv->offset > h->base_offset + h->last_offset_delta)
        return false;
    *prev = rv->offset;
    return true;
}

/* A batch of an aborted transaction: no reader sees its records, so they neither count as a
 * key's latest value nor stay. */
static bool aborted_batch(const cleaner *c, const sl_batch_header *h) {
    return sl_txn_batch_aborted(c->v->aborted, c->v->naborted, h);
}

/* Adds the keys of one dirty segment to the map. With 'may_stop', stops early once the map is
 * over its memory limit and says so in '*partial'. */
static int map_segment(cleaner *c, sl_segment *seg, bool may_stop, bool *partial) {
    seg_reader r;
    const uint8_t *b;
    size_t total;
    int64_t pos = 0;
    sl_batch_header h;
    int rc;
    size_t limit = atomic_load(&memory_limit);
    *partial = false;
    reader_init(&r, seg, seg->size);
    while ((rc = reader_next(&r, &b, &total, &pos, &h)) == 1) {
        sl_record_iter it;
        sl_record_view rv;
        if ((h.attributes & SL_BATCH_ATTR_CONTROL) || aborted_batch(c, &h))
            continue; /* markers are not keyed data; aborted records are no one's latest */
        rc = sl_record_iter_start_decompress(&it, b, total, &c->records, CLEAN_MAX_RECORDS_BYTES);
        int64_t prev = h.base_offset - 1;
        while (rc == 0 && (rc = sl_record_iter_next(&it, &rv)) == 1) {
            if (!record_offset_ok(&h, &rv, &prev))
                rc = SL_ECORRUPT;
            else if (rv.key)
                rc = map_put(&c->map, rv.key, rv.key_len, rv.offset);
            else
                rc = 0;
        }
        if (rc < 0)
            break;
        if (may_stop && map_bytes(&c->map) > limit) {
            *partial = true;
            rc = 0;
            break;
        }
    }
    reader_free(&r);
    if (rc < 0)
        sl_error("log", "%s: compaction cannot read the batch at byte %" PRId64 " of %s.log: %s",
                 c->v->name, pos, seg->path, sl_strerror(rc));
    return rc < 0 ? rc : 0;
}

static bool keep_record(const cleaner *c, const sl_record_view *rv) {
    int64_t latest;
    if (rv->key == NULL)
        return true;
    if (map_get(&c->map, rv->key, rv->key_len, &latest) && latest > rv->offset)
        return false; /* a newer record of the key exists */
    return rv->value != NULL || rv->timestamp >= c->horizon;
}

/* Decides the records of one batch: their kept bytes into c->kept. */
static int filter_batch(cleaner *c, const uint8_t *b, size_t total, const sl_batch_header *h,
                        int32_t *nkept, int64_t *max_ts) {
    sl_record_iter it;
    sl_record_view rv;
    int rc = sl_record_iter_start_decompress(&it, b, total, &c->records, CLEAN_MAX_RECORDS_BYTES);
    if (rc)
        return rc;
    sl_buf_reset(&c->kept);
    bool aborted = aborted_batch(c, h);
    int32_t n = 0, kept = 0;
    int64_t mts = INT64_MIN, prev = h->base_offset - 1;
    for (;;) {
        const uint8_t *start = it.pos;
        int r = sl_record_iter_next(&it, &rv);
        if (r == 0)
            break;
        if (r < 0)
            return r;
        if (!record_offset_ok(h, &rv, &prev))
            return SL_ECORRUPT;
        n++;
        /* Markers stay: they end their transactions when the log is read again at start. */
        if (!(h->attributes & SL_BATCH_ATTR_CONTROL) && (aborted || !keep_record(c, &rv)))
            continue;
        if ((rc = sl_buf_append(&c->kept, start, (size_t)(it.pos - start))) != 0)
            return rc;
        kept++;
        if (rv.timestamp > mts)
            mts = rv.timestamp;
    }
    if (n != h->records_count || it.pos != it.end)
        return SL_ECORRUPT;
    *nkept = kept;
    *max_ts = mts;
    return 0;
}

/* Rebuilds the batch 'src' with the records in c->kept (none: an empty, uncompressed batch). */
static int rebuild_batch(cleaner *c, const uint8_t *src, const sl_batch_header *h, int32_t nkept,
                         int64_t max_ts) {
    sl_buf *o = &c->batch;
    sl_buf_reset(o);
    enum sl_codec codec = nkept ? sl_batch_codec(src) : SL_CODEC_NONE;
    int rc = sl_buf_append(o, src, SL_BATCH_HEADER_SIZE);
    if (rc == 0 && codec == SL_CODEC_NONE) {
        rc = sl_buf_append(o, c->kept.data, c->kept.len);
    } else if (rc == 0) {
        sl_buf_reset(&c->zbuf);
        rc = sl_compress(codec, c->kept.data, c->kept.len, &c->zbuf);
        if (rc == 0)
            rc = sl_buf_append(o, c->zbuf.data, c->zbuf.len);
    }
    if (rc)
        return rc;
    if (o->len - SL_BATCH_LOG_OVERHEAD > (size_t)INT32_MAX)
        return SL_ETOOLARGE;
    uint8_t *p = o->data;
    uint16_t attrs =
        (uint16_t)(((uint16_t)h->attributes & ~SL_BATCH_ATTR_COMPRESSION_MASK) | (uint16_t)codec);
    sl_be32_put(p + SL_BATCH_OFF_LENGTH, (uint32_t)(o->len - SL_BATCH_LOG_OVERHEAD));
    sl_be16_put(p + SL_BATCH_OFF_ATTRIBUTES, attrs);
    sl_be32_put(p + SL_BATCH_OFF_RECORDS_COUNT, (uint32_t)nkept);
    /* LogAppendTime batches keep the broker's time; an empty batch keeps its old maximum. */
    if (nkept && !(h->attributes & SL_BATCH_ATTR_LOG_APPEND_TIME))
        sl_be64_put(p + SL_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)max_ts);
    sl_be32_put(p + SL_BATCH_OFF_CRC, sl_batch_compute_crc(p, o->len));
    return 0;
}

static int flush_out(cleaner *c) {
    if (c->out.len == 0)
        return 0;
    int rc = sl_segment_append(c->seg, c->out.data, c->out.len, c->v->conf.index_interval_bytes);
    c->out.len = 0;
    return rc;
}

static int emit(cleaner *c, const uint8_t *b, size_t len) {
    int rc = sl_buf_append(&c->out, b, len);
    if (rc == 0 && c->out.len >= WRITE_CHUNK)
        rc = flush_out(c);
    return rc;
}

/* Starts the new segment of a group at 'base', copying the first 'upto' bytes of 'first' as
 * they are (a single segment kept everything up to there). */
static int start_output(cleaner *c, int64_t base, sl_segment *first, int64_t upto) {
    int rc = sl_segment_create_tagged(c->v->dir, base, ".cleaned", &c->seg);
    if (rc) {
        c->seg = NULL;
        return rc;
    }
    if (upto == 0)
        return 0;
    seg_reader r;
    const uint8_t *b;
    size_t total;
    int64_t pos;
    sl_batch_header h;
    reader_init(&r, first, upto);
    while ((rc = reader_next(&r, &b, &total, &pos, &h)) == 1)
        if ((rc = emit(c, b, total)) != 0)
            break;
    reader_free(&r);
    return rc;
}

static void drop_output(cleaner *c) {
    if (c->seg) {
        sl_segment_unlink(c->seg);
        sl_segment_unref(c->seg);
        c->seg = NULL;
    }
    c->out.len = 0;
}

/* Cleans one group of consecutive segments into one, ending at offset 'end'. */
static int clean_group(cleaner *c, sl_segment *const *segs, size_t k, int64_t end) {
    sl_compact_stats *st = c->st;
    int64_t before = 0, tail = segs[0]->base_offset; /* where the group's last batch ends */
    int rc = 0;
    for (size_t s = 0; s < k; s++) {
        before += segs[s]->size;
        if (segs[s]->size > 0)
            tail = segs[s]->next_offset;
    }
    /* Several segments are always merged; a single one is rewritten only if it changes. */
    if (k > 1)
        rc = start_output(c, segs[0]->base_offset, NULL, 0);
    int64_t records_before = 0, records_after = 0;
    for (size_t s = 0; rc == 0 && s < k; s++) {
        seg_reader r;
        const uint8_t *b;
        size_t total;
        int64_t pos = 0;
        sl_batch_header h;
        reader_init(&r, segs[s], segs[s]->size);
        while ((rc = reader_next(&r, &b, &total, &pos, &h)) == 1) {
            int32_t nkept;
            int64_t max_ts;
            if ((rc = filter_batch(c, b, total, &h, &nkept, &max_ts)) != 0)
                break;
            records_before += h.records_count;
            records_after += nkept;
            if (nkept == h.records_count) {
                rc = c->seg ? emit(c, b, total) : 0;
                if (rc)
                    break;
                continue;
            }
            bool last = h.base_offset + h.last_offset_delta + 1 == tail;
            bool keep = nkept > 0 || last ||
                        (h.producer_id >= 0 &&
                         sl_partlog_clean_is_producer_tail(c->pl, h.producer_id,
                                                           h.base_offset + h.last_offset_delta));
            if (c->seg == NULL && (rc = start_output(c, segs[0]->base_offset, segs[0], pos)))
                break;
            if (keep && ((rc = rebuild_batch(c, b, &h, nkept, max_ts)) != 0 ||
                         (rc = emit(c, c->batch.data, c->batch.len)) != 0))
                break;
        }
        reader_free(&r);
        if (rc < 0)
            sl_error("log",
                     "%s: compaction cannot rewrite the batch at byte %" PRId64 " of %s.log: %s",
                     c->v->name, pos, segs[s]->path, sl_strerror(rc));
    }
    if (rc == 0 && c->seg == NULL) { /* nothing to remove */
        st->records_before += records_before;
        st->records_after += records_after;
        st->bytes_before += before;
        st->bytes_after += before;
        return 0;
    }
    if (rc == 0)
        rc = flush_out(c);
    if (rc == 0)
        rc = sl_segment_flush(c->seg);
    /* The last batch stays, so the segment ends where the old ones did. */
    if (rc == 0 && c->seg->next_offset != tail) {
        sl_error("log", "%s: compacted segment %020" PRId64 " ends at %" PRId64 ", not %" PRId64,
                 c->v->name, segs[0]->base_offset, c->seg->next_offset, tail);
        rc = SL_ECORRUPT;
    }
    int64_t after = rc == 0 ? c->seg->size : 0;
    if (rc == 0)
        rc = sl_partlog_clean_swap(c->pl, segs, k, c->seg, end);
    if (rc) {
        drop_output(c);
        return rc;
    }
    c->seg = NULL; /* the partition has it now */
    st->segments_rewritten += (int64_t)k;
    st->segments_written++;
    st->records_before += records_before;
    st->records_after += records_after;
    st->bytes_before += before;
    st->bytes_after += after;
    return 0;
}

static void cleaner_free(cleaner *c) {
    drop_output(c);
    map_free(&c->map);
    sl_buf_free(&c->records);
    sl_buf_free(&c->kept);
    sl_buf_free(&c->batch);
    sl_buf_free(&c->zbuf);
    sl_buf_free(&c->out);
}

int sl_partlog_compact(sl_partlog *pl, int64_t now_ms, sl_compact_stats *stats) {
    sl_compact_stats local;
    sl_compact_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof(*st));
    sl_clean_view v;
    int rc = sl_partlog_clean_begin(pl, now_ms, &v);
    st->cleaned_upto = v.cleaned_upto;
    if (rc)
        return rc == 1 ? 0 : rc;

    /* Dirty: the segments from the first one that reaches past the clean point. */
    size_t d = 0;
    while (d < v.nsegs && v.segs[d]->next_offset <= v.cleaned_upto)
        d++;
    int64_t total = 0, dirty = 0;
    for (size_t i = 0; i < v.nsegs; i++) {
        total += v.segs[i]->size;
        if (i >= d)
            dirty += v.segs[i]->size;
    }
    st->dirty_ratio = total ? (double)dirty / (double)total : 0;
    if (dirty == 0 || st->dirty_ratio < v.conf.min_cleanable_dirty_ratio) {
        sl_partlog_clean_end(pl, &v, SL_ERETRY, 0);
        return 0;
    }
    st->ran = true;

    cleaner c = {.pl = pl, .v = &v, .st = st};
    if (__builtin_sub_overflow(now_ms, v.conf.delete_retention_ms, &c.horizon))
        c.horizon = INT64_MIN;
    rc = map_init(&c.map);
    size_t e = d;
    while (rc == 0 && e < v.nsegs) {
        bool partial;
        rc = map_segment(&c, v.segs[e], e > d, &partial);
        if (rc || partial)
            break;
        e++;
        if (map_bytes(&c.map) > atomic_load(&memory_limit))
            break;
    }
    if (rc == 0 && e < v.nsegs)
        sl_info("log",
                "%s: the key map is full (%zu keys): compacting up to offset %" PRId64
                " now, the rest in a later pass",
                v.name, c.map.count, v.segs[e]->base_offset);

    /* Rewrite [0, e) in groups, oldest first, stopping at the first failure: a later group
     * may hold the tombstone of a value in an earlier one. */
    for (size_t i = 0; rc == 0 && i < e;) {
        size_t k = 1;
        int64_t bytes = v.segs[i]->size;
        while (i + k < e) {
            int64_t end = i + k + 1 < v.nsegs ? v.segs[i + k + 1]->base_offset : v.end_offset;
            if (bytes + v.segs[i + k]->size > v.conf.segment_bytes ||
                end - v.segs[i]->base_offset > INT32_MAX) /* index offsets are 32-bit */
                break;
            bytes += v.segs[i + k]->size;
            k++;
        }
        int64_t end = i + k < v.nsegs ? v.segs[i + k]->base_offset : v.end_offset;
        rc = clean_group(&c, v.segs + i, k, end);
        i += k;
    }
    int64_t upto = e < v.nsegs ? v.segs[e]->base_offset : v.end_offset;
    if (rc == 0)
        st->cleaned_upto = upto;
    else if (rc == SL_ECORRUPT)
        sl_error("log",
                 "%s: compaction stopped: the log holds a batch it cannot read; no more "
                 "passes until the partition is reopened",
                 v.name);
    else if (rc == SL_ERETRY)
        sl_debug("log", "%s: retention removed segments during the pass; compacting the rest later",
                 v.name);
    else if (rc != SL_ECLOSED)
        sl_error("log", "%s: compaction stopped: %s", v.name, sl_strerror(rc));
    cleaner_free(&c);
    sl_partlog_clean_end(pl, &v, rc, upto);
    /* Retention or a topic deletion got there first: nothing is wrong. */
    return rc == SL_ERETRY || rc == SL_ECLOSED ? 0 : rc;
}

static void format_bytes(char *out, size_t len, int64_t n) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(out, len, "%" PRId64 " B", n);
        return;
    }
    double v = (double)n / 1024;
    int u = 0;
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, "%.1f %s", v, units[u]);
}

void sl_compact_stats_format(const sl_compact_stats *s, char *out, size_t len) {
    char before[32], after[32];
    format_bytes(before, sizeof(before), s->bytes_before);
    format_bytes(after, sizeof(after), s->bytes_after);
    snprintf(out, len,
             "compacted %" PRId64 " segment%s: kept %" PRId64 " of %" PRId64 " records, %s -> %s",
             s->segments_rewritten, s->segments_rewritten == 1 ? "" : "s", s->records_after,
             s->records_before, before, after);
}

/* A stage instance. The loop: poll a batch of input records, run each through the plugin or
 * script (or hand them to a script's process_batch, up to 1,024 at a time), keep what it emits
 * until the call has succeeded, route failures by the stage's policy, then flush the producer,
 * write the changed state and input positions to the changelog, and commit the input offsets
 * the batch covered. Records of a retry topic that are not due yet pause their partition (seek
 * back + pause) instead of the whole instance, so the main topic keeps flowing behind them. */
#include "pipeline/task.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "pipeline/admin.h"
#include "pipeline/pipeline.h"
#include "pipeline/state.h"
#include "plugin/loader.h"
#include "plugin/lua_host.h"
#include "sluice/client.h"

#define BATCH_RECORDS 10000
#define BATCH_MS 100
#define STATUS_EVERY_MS 2000
#define POISON_CRASHES 3
#define MAX_OUT_HEADERS 80
#ifndef SL_SCRIPT_DIRS
#define SL_SCRIPT_DIRS ""
#endif
#define LUA_BATCH 1024 /* records per process_batch call */
#define LUA_BATCH_SHARE 8 /* a batch's bytes stay under 1/8 of the script's memory limit */
#define EOS_TXN_TIMEOUT_MS 10000 /* transaction.timeout.ms of an exactly-once instance */
#define EOS_RETRY_MS (EOS_TXN_TIMEOUT_MS / 2)

/* A record emitted during the current call: offsets into the task's arena. */
typedef struct pending {
    size_t topic, key, value; /* SIZE_MAX: null / absent */
    size_t key_len, value_len;
    size_t first_header, nheaders;
    int32_t partition;
    int64_t timestamp;
} pending;

typedef struct pending_header {
    size_t key, value, value_len; /* value SIZE_MAX: null */
} pending_header;

typedef struct position {
    char *topic;
    int32_t partition;
    int64_t next;   /* the offset to commit: the next record to process */
    int64_t logged; /* 'next' as last written to the changelog (-1: never) */
    int64_t committed; /* eos: 'next' as last committed in a transaction (-1: never) */
} position;

/* A record waiting for the next process_batch call: key and value copied into the batch arena
 * (the consumer's message is gone at the next poll). */
typedef struct batched {
    const char *topic; /* the position's copy: stable while the partition is ours */
    int32_t partition;
    int64_t offset, timestamp;
    size_t key, value; /* offsets into the arena; SIZE_MAX: null */
    size_t key_len, value_len;
    size_t first_header, nheaders; /* into batch_hdr: kept for the dead-letter topic */
} batched;

typedef struct deferral {
    char *topic;
    int32_t partition;
    int64_t resume_ms;
} deferral;

typedef struct poison {
    char *topic;
    int32_t partition;
    int64_t offset;
} poison;

typedef struct metric {
    char *name;
    int64_t value;
} metric;

struct sl_plugin_ctx {
    const sl_task_conf *conf;
    sl_pipeline *pipeline;
    const sl_pl_stage *stage;
    char label[256];    /* pipeline/stage/instance, for log lines and status keys */
    char stage_id[256]; /* pipeline/stage: whose retry and replayed records are whose */
    sl_producer *producer; /* transactional when 'eos' */
    sl_producer *status_producer; /* eos: status records stay outside the transactions */
    sl_consumer *consumer;
    bool eos;              /* exactly once: one transaction per commit point */
    uint64_t out_at_commit; /* eos: records_out when the last transaction committed */
    sl_plugin_lib *lib;
    void *plugin_state;
    bool plugin_started; /* init succeeded: close is owed */
    sl_lua_proc *lua;
    sl_plugin_host host;

    sl_buf arena;
    pending *pend;
    size_t npend, cappend;
    pending_header *phdr;
    size_t nphdr, capphdr;

    position *pos;
    size_t npos;
    deferral *defer;
    size_t ndefer;
    poison *poisons;
    size_t npoisons;
    char poison_path[4096];
    struct timespec poison_mtime;
    poison *isolated;       /* process_batch: (topic, partition) up to an offset, one at a time */
    size_t nisolated;
    char isolate_path[4096];
    struct timespec isolate_mtime;
    sl_task_inflight *inflight;

    sl_state *store;        /* per input partition, restored from the changelog */
    int32_t cur_partition;  /* of the record being processed; -1 between records */
    char changelog[512];    /* <pipeline>.<stage>.changelog */
    int32_t changelog_parts; /* its partitions; 0: not made yet (no state written so far) */
    int64_t seeks;          /* input seeks made by restores, to notice one under a message */
    bool changelog_absent;  /* looked up in the assignment being handled, and not there */
    bool in_assignment;
    sl_client *admin;       /* looks the changelog up and makes it */
    batched *batch;         /* process_batch: records collected for the next call */
    size_t nbatch;
    sl_buf batch_arena;
    sl_plugin_record *batch_recs;
    pending_header *batch_hdr;
    size_t nbatch_hdr, capbatch_hdr;
    metric *metrics;
    size_t nmetrics;

    char error[1024];     /* set_error of the current call */
    char traceback[4096]; /* of the current Lua failure */
    bool failed;          /* a fatal error: the process exits 1 */
    bool commit_asked;    /* host->commit during a call: done once the call has returned */
    int64_t batch_clock_ms; /* CLOCK_MONOTONIC when the current batch began */
    bool stop_for_good;   /* errors_tolerance = "none" met a failed record: exit 3 */
    char *position;       /* sources: set by the plugin, not stored yet (NULL: unchanged) */
    char *resume_position; /* sources: the one stored, handed to init */
    _Atomic uint64_t undelivered; /* outputs the broker did not take (producer's thread) */

    uint64_t records_in, records_out, errors, retried, dead_lettered;
    char last_error[1024];
    int64_t last_status_ms;
};

typedef struct sl_plugin_ctx task;

/* ---- the host function table ---- */

/* Copies n bytes into the arena; their offset in *at. NULL p stores nothing: *at = SIZE_MAX. */
static int arena_put(sl_buf *arena, const void *p, size_t n, size_t *at) {
    if (p == NULL) {
        *at = SIZE_MAX;
        return 0;
    }
    *at = arena->len;
    return sl_buf_append(arena, p, n);
}

static int host_emit(task *t, const sl_plugin_record *r) {
    if (t->npend == t->cappend) {
        size_t cap = t->cappend ? t->cappend * 2 : 16;
        pending *np = realloc(t->pend, cap * sizeof(*np));
        if (np == NULL)
            return SL_ENOMEM;
        t->pend = np;
        t->cappend = cap;
    }
    if (t->nphdr + r->nheaders > t->capphdr) {
        size_t cap = t->capphdr ? t->capphdr * 2 : 16;
        while (cap < t->nphdr + r->nheaders)
            cap *= 2;
        pending_header *nh = realloc(t->phdr, cap * sizeof(*nh));
        if (nh == NULL)
            return SL_ENOMEM;
        t->phdr = nh;
        t->capphdr = cap;
    }
    const char *topic = r->topic ? r->topic
                        : t->stage->noutputs ? t->stage->outputs[0] : NULL;
    if (topic == NULL)
        return SL_EINVAL;
    pending *p = &t->pend[t->npend];
    *p = (pending){.key_len = r->key_len, .value_len = r->value_len, .first_header = t->nphdr,
                   .nheaders = r->nheaders, .partition = r->partition,
                   .timestamp = r->timestamp};
    if (arena_put(&t->arena, topic, strlen(topic) + 1, &p->topic) ||
        arena_put(&t->arena, r->key, r->key_len, &p->key) ||
        arena_put(&t->arena, r->value, r->value_len, &p->value))
        return SL_ENOMEM;
    size_t kept = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const sl_plugin_header *h = &r->headers[i];
        /* The routing headers describe the input's journey, not the output's: a record that
         * succeeded on its second attempt must not leave with sluice.error on it. */
        if (strncmp(h->key, "sluice.", 7) == 0)
            continue;
        pending_header *ph = &t->phdr[t->nphdr + kept++];
        ph->value_len = h->value_len;
        if (arena_put(&t->arena, h->key, strlen(h->key) + 1, &ph->key) ||
            arena_put(&t->arena, h->value, h->value_len, &ph->value))
            return SL_ENOMEM;
    }
    p->nheaders = kept;
    t->nphdr += kept;
    t->npend++;
    return 0;
}

static const char *host_config(task *t, const char *key) {
    for (size_t i = 0; i < t->stage->nconfig; i++)
        if (strcmp(t->stage->config_keys[i], key) == 0)
            return t->stage->config_values[i];
    return NULL;
}

static void host_log(task *t, sl_plugin_log_level level, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    enum sl_log_level l = level == SL_PLUGIN_LOG_DEBUG  ? SL_LOG_DEBUG
                          : level == SL_PLUGIN_LOG_INFO ? SL_LOG_INFO
                          : level == SL_PLUGIN_LOG_WARN ? SL_LOG_WARN
                                                        : SL_LOG_ERROR;
    sl_log(l, "pipeline", "%s: %s", t->label, msg);
}

static void host_set_error(task *t, const char *reason) {
    snprintf(t->error, sizeof(t->error), "%s", reason ? reason : "");
}

static void host_metric_add(task *t, const char *name, int64_t delta) {
    for (size_t i = 0; i < t->nmetrics; i++)
        if (strcmp(t->metrics[i].name, name) == 0) {
            t->metrics[i].value += delta;
            return;
        }
    metric *nm = realloc(t->metrics, (t->nmetrics + 1) * sizeof(*nm));
    if (nm == NULL)
        return;
    t->metrics = nm;
    if ((nm[t->nmetrics].name = strdup(name)) != NULL)
        nm[t->nmetrics++].value = delta;
}

/* The state store of a named partition, only of those this instance holds: state written for
 * another would land in its owner's changelog partition. */
static int host_state_get_partition(task *t, int32_t partition, const void *key, size_t klen,
                                    const void **v, size_t *vlen) {
    if (!sl_state_loaded(t->store, partition))
        return SL_EINVAL;
    return sl_state_get(t->store, partition, key, klen, v, vlen);
}

static int host_state_put_partition(task *t, int32_t partition, const void *key, size_t klen,
                                    const void *v, size_t vlen) {
    if (!sl_state_loaded(t->store, partition))
        return SL_EINVAL;
    return sl_state_put(t->store, partition, key, klen, v, vlen);
}

static int host_state_get(task *t, const void *key, size_t klen, const void **v, size_t *vlen) {
    return host_state_get_partition(t, t->cur_partition, key, klen, v, vlen);
}

static int host_state_put(task *t, const void *key, size_t klen, const void *v, size_t vlen) {
    return host_state_put_partition(t, t->cur_partition, key, klen, v, vlen);
}

static int commit_point(task *t);

/* Asked from inside a callback: honoured once the call has returned (the plugin is not called
 * again from within itself, and what the call emitted is not sent before it succeeds). */
static int host_commit(task *t) {
    t->commit_asked = true;
    return 0;
}

static int host_instance(task *t, int *count) {
    *count = t->stage->instances;
    return t->conf->instance;
}

static int host_set_position(task *t, const char *position) {
    char *copy = strdup(position ? position : "");
    if (copy == NULL)
        return SL_ENOMEM;
    free(t->position);
    t->position = copy;
    return 0;
}

static const char *host_get_position(task *t) {
    return t->resume_position;
}

static int route(task *t, const sl_message *m, const char *topic, int32_t partition,
                 size_t attempt, int64_t not_before, const char *error);

static int host_report_errant(task *t, const sl_plugin_record *r, const char *reason) {
    sl_header hs[MAX_OUT_HEADERS];
    size_t n = r->nheaders < MAX_OUT_HEADERS ? r->nheaders : MAX_OUT_HEADERS;
    for (size_t i = 0; i < n; i++)
        hs[i] = (sl_header){r->headers[i].key, r->headers[i].value, r->headers[i].value_len};
    sl_message m = {r->topic ? r->topic : "", r->partition, r->offset, r->timestamp, r->key,
                    r->key_len, r->value, r->value_len, hs, n};
    t->errors++;
    snprintf(t->last_error, sizeof(t->last_error), "%s-%d@%" PRId64 ": %s", m.topic,
             m.partition, m.offset, reason ? reason : "refused");
    if (t->stage->tolerate_none) {
        sl_error("pipeline", "%s: record %s-%d@%" PRId64 " refused (%s) and errors_tolerance "
                 "is \"none\": the stage stops", t->label, m.topic, m.partition, m.offset,
                 reason ? reason : "");
        t->stop_for_good = t->failed = true;
        return SL_ECLOSED;
    }
    t->traceback[0] = '\0';
    t->dead_lettered++;
    return route(t, &m, t->stage->dlq, SL_PARTITION_ANY, 1, 0, reason ? reason : "refused");
}

static void init_host(task *t) {
    t->host = (sl_plugin_host){
        .struct_size = sizeof(sl_plugin_host),
        .abi_version = SL_PLUGIN_ABI_VERSION,
        .emit = host_emit,
        .config = host_config,
        .log = host_log,
        .set_error = host_set_error,
        .metric_add = host_metric_add,
        .state_get = host_state_get,
        .state_put = host_state_put,
        .commit = host_commit,
        .instance = host_instance,
        .set_position = host_set_position,
        .get_position = host_get_position,
        .report_errant = host_report_errant,
        .state_get_partition = host_state_get_partition,
        .state_put_partition = host_state_put_partition,
    };
}

/* ---- sending ---- */

static void on_delivery(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset) {
    (void)offset;
    task *t = opaque;
    if (status != 0)
        t->undelivered++;
    if (status != 0)
        sl_error("pipeline", "%s: a record for %s-%d was not delivered: %s", t->label, topic,
                 partition, sl_strerror(status));
}

/* Sends what the call emitted. A send refused at once (no such topic, a full buffer) makes the
 * record a failed one, routed by the stage's policy; what was sent before it stays sent (at
 * least once). A send that fails later, in the background, fails the task before it commits. */
static int flush_pending(task *t) {
    int rc = 0;
    sl_header hs[MAX_OUT_HEADERS];
    for (size_t i = 0; rc == 0 && i < t->npend; i++) {
        const pending *p = &t->pend[i];
        const char *base = (const char *)t->arena.data;
        size_t nh = p->nheaders < MAX_OUT_HEADERS ? p->nheaders : MAX_OUT_HEADERS;
        for (size_t h = 0; h < nh; h++) {
            const pending_header *ph = &t->phdr[p->first_header + h];
            hs[h] = (sl_header){base + ph->key, ph->value == SIZE_MAX ? NULL : base + ph->value,
                                ph->value_len};
        }
        sl_produce_record r = {
            .topic = base + p->topic,
            .partition = p->partition,
            .key = p->key == SIZE_MAX ? NULL : base + p->key,
            .key_len = p->key_len,
            .value = p->value == SIZE_MAX ? NULL : base + p->value,
            .value_len = p->value_len,
            .timestamp = p->timestamp,
            .headers = hs,
            .nheaders = nh,
            .cb = on_delivery,
            .opaque = t,
        };
        rc = sl_producer_send(t->producer, &r);
        if (rc)
            snprintf(t->error, sizeof(t->error), "cannot send to %s: %s", r.topic,
                     sl_strerror(rc));
        else
            t->records_out++;
        if (rc && t->eos && i > 0) {
            /* Part of the call's outputs is in the transaction: routing the record now would
             * commit that part with it. Abort instead, and redo it from the last commit. */
            sl_error("pipeline", "%s: %s after %zu of the call's outputs; restarting from the "
                     "last committed transaction", t->label, t->error, i);
            t->failed = true;
        }
    }
    return rc;
}

static void drop_pending(task *t) {
    t->npend = t->nphdr = 0;
    sl_buf_reset(&t->arena);
}

/* ---- positions, deferrals, poison records ---- */

static position *position_of(task *t, const char *topic, int32_t partition, bool add) {
    for (size_t i = 0; i < t->npos; i++)
        if (t->pos[i].partition == partition && strcmp(t->pos[i].topic, topic) == 0)
            return &t->pos[i];
    if (!add)
        return NULL;
    position *np = realloc(t->pos, (t->npos + 1) * sizeof(*np));
    if (np == NULL)
        return NULL;
    t->pos = np;
    np[t->npos] = (position){strdup(topic), partition, -1, -1, -1};
    if (np[t->npos].topic == NULL)
        return NULL;
    return &np[t->npos++];
}

static void advance(task *t, const sl_message *m) {
    position *p = position_of(t, m->topic, m->partition, true);
    if (p)
        p->next = m->offset + 1;
    else
        t->failed = true; /* out of memory: better restart than commit wrongly */
}

/* Reads lines "topic partition offset" of 'path' into *list when the file changed. */
static void load_marks(const char *path, struct timespec *mtime, poison **list, size_t *n) {
    struct stat st;
    if (stat(path, &st) != 0 ||
        (st.st_mtim.tv_sec == mtime->tv_sec && st.st_mtim.tv_nsec == mtime->tv_nsec))
        return;
    *mtime = st.st_mtim;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    for (size_t i = 0; i < *n; i++)
        free((*list)[i].topic);
    *n = 0;
    char topic[256];
    int partition;
    long long offset;
    while (fscanf(f, "%255s %d %lld", topic, &partition, &offset) == 3) {
        poison *np = realloc(*list, (*n + 1) * sizeof(*np));
        if (np == NULL)
            break;
        *list = np;
        np[*n] = (poison){strdup(topic), partition, offset};
        if (np[*n].topic)
            (*n)++;
    }
    fclose(f);
}

static void load_poisons(task *t) {
    load_marks(t->poison_path, &t->poison_mtime, &t->poisons, &t->npoisons);
    if (t->batch)
        load_marks(t->isolate_path, &t->isolate_mtime, &t->isolated, &t->nisolated);
}

/* Whether a record is in a range that failed a process_batch call: such records go to the
 * script one at a time, so that the one that fails is found and routed like any failed record. */
static bool is_isolated(task *t, const char *topic, int32_t partition, int64_t offset) {
    for (size_t i = 0; i < t->nisolated; i++) {
        poison *iso = &t->isolated[i];
        if (iso->partition != partition || strcmp(iso->topic, topic) != 0)
            continue;
        if (offset <= iso->offset)
            return true;
        /* Passed: forgotten here (the file keeps it until it changes and is read again). */
        free(iso->topic);
        t->isolated[i--] = t->isolated[--t->nisolated];
    }
    return false;
}

/* Notes the batch's ranges in the stage's isolate file (one write per line: O_APPEND keeps
 * the lines of several instances whole). */
static void isolate_batch(task *t) {
    int fd = open(t->isolate_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    for (size_t i = 0; i < t->nbatch; i++) {
        bool last_of_partition = true;
        for (size_t j = i + 1; j < t->nbatch && last_of_partition; j++)
            last_of_partition = t->batch[j].partition != t->batch[i].partition ||
                                strcmp(t->batch[j].topic, t->batch[i].topic) != 0;
        if (!last_of_partition)
            continue;
        char line[400];
        int n = snprintf(line, sizeof(line), "%s %d %" PRId64 "\n", t->batch[i].topic,
                         t->batch[i].partition, t->batch[i].offset);
        if (write(fd, line, (size_t)n) != n)
            break;
    }
    close(fd);
}

static bool is_poison(task *t, const sl_message *m) {
    for (size_t i = 0; i < t->npoisons; i++)
        if (t->poisons[i].offset == m->offset && t->poisons[i].partition == m->partition &&
            strcmp(t->poisons[i].topic, m->topic) == 0)
            return true;
    return false;
}

static void defer(task *t, const sl_message *m, int64_t resume_ms) {
    deferral *nd = realloc(t->defer, (t->ndefer + 1) * sizeof(*nd));
    char *topic = strdup(m->topic);
    if (nd == NULL || topic == NULL) {
        free(topic);
        if (nd)
            t->defer = nd;
        t->failed = true;
        return;
    }
    t->defer = nd;
    nd[t->ndefer++] = (deferral){topic, m->partition, resume_ms};
    int32_t partition = m->partition;
    int64_t offset = m->offset;
    /* m is invalid after the seek: copy what we need first. */
    if (sl_consumer_seek(t->consumer, topic, partition, offset) != 0 ||
        sl_consumer_pause(t->consumer, topic, partition) != 0)
        t->failed = true;
}

static int64_t resume_due(task *t, int64_t now) {
    int64_t next = INT64_MAX;
    size_t keep = 0;
    for (size_t i = 0; i < t->ndefer; i++) {
        deferral *d = &t->defer[i];
        if (d->resume_ms <= now) {
            sl_consumer_resume(t->consumer, d->topic, d->partition);
            free(d->topic);
        } else {
            next = d->resume_ms < next ? d->resume_ms : next;
            t->defer[keep++] = *d;
        }
    }
    t->ndefer = keep;
    return next;
}

/* ---- routing failures ---- */

static const char *header_value(const sl_message *m, const char *key, size_t *len) {
    for (size_t i = m->nheaders; i-- > 0;)
        if (strcmp(m->headers[i].key, key) == 0 && m->headers[i].value) {
            *len = m->headers[i].value_len;
            return m->headers[i].value;
        }
    return NULL;
}

static int64_t header_int(const sl_message *m, const char *key, int64_t dflt) {
    size_t len;
    const char *v = header_value(m, key, &len);
    char buf[32];
    if (v == NULL || len == 0 || len >= sizeof(buf))
        return dflt;
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *end;
    long long x = strtoll(buf, &end, 10);
    return *end ? dflt : x;
}

/* The retry level of a topic: n for "<input>.retry.<n>" of one of the stage's inputs, else 0. */
static size_t retry_level(const task *t, const char *topic, const char **input) {
    for (size_t i = 0; i < t->stage->ninputs; i++) {
        const char *in = t->stage->inputs[i];
        size_t n = strlen(in);
        if (strncmp(topic, in, n) == 0 && strncmp(topic + n, ".retry.", 7) == 0) {
            *input = in;
            return (size_t)strtoul(topic + n + 7, NULL, 10);
        }
    }
    *input = topic;
    return 0;
}

/* Writes m to 'topic' with its own headers (less earlier sluice.* routing ones) and the
 * routing headers; straight to the producer, nothing else of the call is kept. */
static int route(task *t, const sl_message *m, const char *topic, int32_t partition,
                 size_t attempt, int64_t not_before, const char *error) {
    sl_header hs[MAX_OUT_HEADERS];
    size_t n = 0;
    static const char *const ours[] = {"sluice.attempt", "sluice.not_before", "sluice.error",
                                       "sluice.traceback", "sluice.stage",
                                       "sluice.replay_for", NULL};
    for (size_t i = 0; i < m->nheaders && n < MAX_OUT_HEADERS - 8; i++) {
        bool skip = false;
        for (const char *const *o = ours; *o && !skip; o++)
            skip = strcmp(m->headers[i].key, *o) == 0;
        if (!skip)
            hs[n++] = m->headers[i];
    }
    char attempt_s[24], nb_s[24], part_s[24], off_s[24];
    snprintf(attempt_s, sizeof(attempt_s), "%zu", attempt);
    hs[n++] = (sl_header){"sluice.attempt", attempt_s, strlen(attempt_s)};
    if (not_before > 0) {
        snprintf(nb_s, sizeof(nb_s), "%" PRId64, not_before);
        hs[n++] = (sl_header){"sluice.not_before", nb_s, strlen(nb_s)};
    }
    hs[n++] = (sl_header){"sluice.error", error, strlen(error)};
    if (t->traceback[0])
        hs[n++] = (sl_header){"sluice.traceback", t->traceback, strlen(t->traceback)};
    hs[n++] = (sl_header){"sluice.stage", t->stage_id, strlen(t->stage_id)};
    size_t len;
    if (header_value(m, "sluice.original_topic", &len) == NULL) {
        snprintf(part_s, sizeof(part_s), "%d", m->partition);
        snprintf(off_s, sizeof(off_s), "%" PRId64, m->offset);
        hs[n++] = (sl_header){"sluice.original_topic", m->topic, strlen(m->topic)};
        hs[n++] = (sl_header){"sluice.original_partition", part_s, strlen(part_s)};
        hs[n++] = (sl_header){"sluice.original_offset", off_s, strlen(off_s)};
    }
    sl_produce_record r = {topic, partition, m->key, m->key_len, m->value, m->value_len,
                           m->timestamp, hs, n, on_delivery, t};
    int rc = sl_producer_send(t->producer, &r);
    if (rc == SL_EINVAL && partition != SL_PARTITION_ANY) {
        r.partition = SL_PARTITION_ANY; /* the retry topic has fewer partitions than the input */
        rc = sl_producer_send(t->producer, &r);
    }
    if (rc) {
        sl_error("pipeline", "%s: cannot route a failed record to %s: %s", t->label, topic,
                 sl_strerror(rc));
        t->failed = true;
    }
    return rc;
}

static void note_error(task *t, const sl_message *m, const char *what, const char *error) {
    t->errors++;
    snprintf(t->last_error, sizeof(t->last_error), "%s-%d@%" PRId64 ": %s", m->topic,
             m->partition, m->offset, error);
    /* Once per distinct message, so a bad batch does not flood the log. */
    static char last_logged[256];
    if (strncmp(last_logged, error, sizeof(last_logged) - 1) != 0) {
        sl_warn("pipeline", "%s: record %s-%d@%" PRId64 " %s: %s", t->label, m->topic,
                m->partition, m->offset, what, error);
        snprintf(last_logged, sizeof(last_logged), "%s", error);
    }
}

/* 0, or the failure of the send that routes it (the task then fails without committing). */
static int fail_record(task *t, const sl_message *m, int status) {
    const char *input;
    size_t level = retry_level(t, m->topic, &input);
    const char *error = t->error[0] ? t->error : sl_strerror(status);
    char err[1024];
    snprintf(err, sizeof(err), "%s", error);
    if (status != SL_EREJECT && level < t->stage->nretries) {
        char topic[300];
        snprintf(topic, sizeof(topic), "%s.retry.%zu", input, level + 1);
        int64_t nb = sl_clock_wall_ms() + t->stage->retry_delays_ms[level];
        note_error(t, m, "failed, retrying later", err);
        t->retried++;
        return route(t, m, topic, m->partition, level + 1, nb, err);
    }
    note_error(t, m, status == SL_EREJECT ? "rejected" : "failed for good", err);
    t->dead_lettered++;
    return route(t, m, t->stage->dlq, SL_PARTITION_ANY, level + 1, 0, err);
}

/* ---- calling the plugin ---- */

static void to_plugin_record(const sl_message *m, sl_plugin_record *r, sl_plugin_header *hs,
                             size_t cap) {
    size_t n = m->nheaders < cap ? m->nheaders : cap;
    for (size_t i = 0; i < n; i++)
        hs[i] = (sl_plugin_header){m->headers[i].key, m->headers[i].value,
                                   m->headers[i].value_len};
    *r = (sl_plugin_record){m->topic, m->partition, m->offset, m->timestamp, m->key,
                            m->key_len, m->value, m->value_len, hs, n};
}

static int invoke(task *t, const sl_plugin_record *r) {
    t->error[0] = t->traceback[0] = '\0';
    drop_pending(t);
    if (t->lua)
        return sl_lua_proc_process(t->lua, r, t->error, sizeof(t->error), t->traceback,
                                   sizeof(t->traceback));
    if (t->lib->desc.process)
        return t->lib->desc.process(t->plugin_state, r);
    size_t done = 0;
    int rc = t->lib->desc.process_batch(t->plugin_state, r, 1, &done);
    return rc == 0 && done != 1 ? SL_EINVAL : rc;
}

/* Retry topics are per input, shared by every stage that reads it, and a replayed dead letter
 * goes back to the input of every stage: each record of either kind is only for the stage
 * named in its headers. */
static bool for_another_stage(const task *t, const sl_message *m, size_t level) {
    size_t len;
    const char *stage = level > 0 ? header_value(m, "sluice.stage", &len)
                                  : header_value(m, "sluice.replay_for", &len);
    return stage && (len != strlen(t->stage_id) || memcmp(stage, t->stage_id, len) != 0);
}

/* errors_tolerance = "none" met a failed record: the stage stops, not to be restarted. */
static void stop_for_good(task *t, const sl_message *m, const char *reason) {
    char why[1100];
    snprintf(why, sizeof(why), "%.1000s (errors_tolerance is \"none\": the stage stops)",
             reason);
    note_error(t, m, "failed", why);
    t->stop_for_good = t->failed = true;
}

static int ensure_restored(task *t, int32_t partition);
static sl_conf *client_conf(task *t, const char *group);
static void run_batch(task *t);

/* Whether m is for the plugin: records of other stages, poison records and retries not due
 * yet are dealt with here. */
static bool admit(task *t, const sl_message *m) {
    if (!sl_state_loaded(t->store, m->partition)) {
        /* Restored here when the partition's state was dropped while the partition stayed
         * ours. Restoring may seek the partition past m (the state already holds it): m is
         * then gone, and must not be touched. */
        int64_t before = t->seeks;
        if (ensure_restored(t, m->partition) != 0 || t->seeks != before)
            return false;
    }
    const char *input;
    size_t level = retry_level(t, m->topic, &input);
    if (for_another_stage(t, m, level)) {
        advance(t, m);
        return false;
    }
    t->records_in++;
    if (is_poison(t, m)) {
        /* Collected records before it come first: the commit below must not pass them. */
        run_batch(t);
        snprintf(t->error, sizeof(t->error), "this record crashed the stage %d times",
                 POISON_CRASHES);
        t->traceback[0] = '\0';
        note_error(t, m, "poison", t->error);
        t->dead_lettered++;
        if (route(t, m, t->stage->dlq, SL_PARTITION_ANY, 1, 0, t->error) == 0) {
            advance(t, m);
            commit_point(t); /* a crash further on must not send it to the DLQ again */
        }
        return false;
    }
    if (level > 0) {
        int64_t nb = header_int(m, "sluice.not_before", 0);
        if (nb > sl_clock_wall_ms()) {
            t->records_in--;
            defer(t, m, nb);
            return false;
        }
    }
    return true;
}

static void handle(task *t, const sl_message *m) {
    if (!admit(t, m))
        return;
    sl_plugin_header hs[MAX_OUT_HEADERS];
    sl_plugin_record r;
    to_plugin_record(m, &r, hs, MAX_OUT_HEADERS);
    t->inflight->partition = m->partition;
    t->inflight->offset = m->offset;
    t->inflight->started_ms = t->batch_clock_ms; /* the batch's start: the watchdog's grain */
    if (strncmp(t->inflight->topic, m->topic, sizeof(t->inflight->topic)) != 0)
        snprintf(t->inflight->topic, sizeof(t->inflight->topic), "%s", m->topic);
    __atomic_store_n(&t->inflight->active, 1, __ATOMIC_SEQ_CST);
    t->cur_partition = m->partition;
    sl_state_begin_call(t->store); /* a failed call's puts are taken back */
    int rc = invoke(t, &r);
    int64_t backoff = 100, deadline = 0;
    /* With exactly once, a transaction stays open while we wait: keep within half of its
     * 10 s timeout, or the broker aborts it under us. */
    int64_t retry_ms = t->eos && t->stage->transient_retry_ms > EOS_RETRY_MS
                           ? EOS_RETRY_MS
                           : t->stage->transient_retry_ms;
    if (rc == SL_ERETRY)
        deadline = sl_clock_mono_ms() + retry_ms;
    while (rc == SL_ERETRY && !*t->conf->stop && sl_clock_mono_ms() < deadline) {
        t->retried++;
        /* Waiting between attempts is not a call: the watchdog must not take a long outage of
         * the target for a stuck plugin. */
        __atomic_store_n(&t->inflight->active, 0, __ATOMIC_SEQ_CST);
        struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        t->inflight->started_ms = sl_clock_mono_ms();
        __atomic_store_n(&t->inflight->active, 1, __ATOMIC_SEQ_CST);
        if (sl_state_undo_call(t->store) != 0) /* each attempt starts from the same state */
            break;
        rc = invoke(t, &r);
    }
    t->cur_partition = -1;
    __atomic_store_n(&t->inflight->active, 0, __ATOMIC_SEQ_CST);
    if (rc == 0 && flush_pending(t) == 0) {
        sl_state_end_call(t->store);
        drop_pending(t);
        advance(t, m);
    } else {
        drop_pending(t);
        int undone = sl_state_undo_call(t->store);
        sl_state_end_call(t->store);
        if (undone != 0) {
            sl_error("pipeline", "%s: out of memory taking back a failed call's state: "
                     "restarting from the last commit", t->label);
            t->failed = true;
            return;
        }
        if (rc == SL_ERETRY && *t->conf->stop) {
            t->records_in--;
            return; /* stopping: leave the record to whoever has the partition next */
        }
        if (rc == SL_ERETRY && t->stage->kind == SL_PLUGIN_SINK) {
            /* A sink's target stayed unavailable: not the record's fault. Restart from the
             * last commit (with the supervisor's backoff) rather than dead-letter it. */
            sl_error("pipeline", "%s: gave up retrying record %s-%d@%" PRId64 " after %.0f s "
                     "(%s): restarting from the last commit", t->label, m->topic,
                     m->partition, m->offset, (double)retry_ms / 1000,
                     t->error[0] ? t->error : "the target is unavailable");
            t->records_in--;
            t->failed = true;
            return;
        }
        if (t->stage->tolerate_none) {
            stop_for_good(t, m, t->error[0] ? t->error : sl_strerror(rc ? rc : SL_EINVAL));
            return;
        }
        if (fail_record(t, m, rc ? rc : SL_EINVAL) != 0)
            return;
        advance(t, m);
        /* Committed at once: failures are rare, and a crash on a later record of the batch
         * would otherwise route this one a second time. */
        t->commit_asked = true;
    }
    if (t->commit_asked) {
        t->commit_asked = false;
        commit_point(t);
    }
}

/* ---- process_batch: Lua scripts that take records many at a time ---- */

static void collect(task *t, const sl_message *m) {
    if (!admit(t, m))
        return;
    bool alone = t->nisolated && is_isolated(t, m->topic, m->partition, m->offset);
    if (alone)
        run_batch(t); /* the records before it first: it goes to the script by itself */
    if (t->failed)
        return;
    position *pos = position_of(t, m->topic, m->partition, true);
    size_t nh = m->nheaders < MAX_OUT_HEADERS ? m->nheaders : MAX_OUT_HEADERS;
    if (t->nbatch_hdr + nh > t->capbatch_hdr) {
        size_t cap = t->capbatch_hdr ? t->capbatch_hdr * 2 : 256;
        while (cap < t->nbatch_hdr + nh)
            cap *= 2;
        pending_header *h = realloc(t->batch_hdr, cap * sizeof(*h));
        if (h != NULL) {
            t->batch_hdr = h;
            t->capbatch_hdr = cap;
        }
    }
    batched *b = &t->batch[t->nbatch];
    *b = (batched){pos ? pos->topic : NULL, m->partition, m->offset, m->timestamp, SIZE_MAX,
                   SIZE_MAX, m->key_len, m->value_len, t->nbatch_hdr, nh};
    sl_buf *arena = &t->batch_arena;
    int rc = pos && t->nbatch_hdr + nh <= t->capbatch_hdr ? 0 : SL_ENOMEM;
    if (rc == 0)
        rc = arena_put(arena, m->key, m->key_len, &b->key);
    if (rc == 0)
        rc = arena_put(arena, m->value, m->value_len, &b->value);
    for (size_t i = 0; rc == 0 && i < nh; i++) {
        const sl_header *mh = &m->headers[i];
        pending_header *ph = &t->batch_hdr[t->nbatch_hdr + i];
        ph->value_len = mh->value_len;
        if ((rc = arena_put(arena, mh->key, strlen(mh->key) + 1, &ph->key)) == 0)
            rc = arena_put(arena, mh->value, mh->value_len, &ph->value);
    }
    if (rc) {
        t->failed = true; /* out of memory: restart rather than skip a record */
        return;
    }
    t->nbatch_hdr += nh;
    t->nbatch++;
    if (alone)
        run_batch(t);
}

static void reset_batch(task *t) {
    t->nbatch = t->nbatch_hdr = 0;
    sl_buf_reset(&t->batch_arena);
}

/* Record i of the batch as a message, headers included, for routing it. */
static sl_message batch_message(const task *t, size_t i, sl_header *hs) {
    const batched *b = &t->batch[i];
    const sl_plugin_record *r = &t->batch_recs[i];
    const char *base = (const char *)t->batch_arena.data;
    for (size_t h = 0; h < b->nheaders; h++) {
        const pending_header *ph = &t->batch_hdr[b->first_header + h];
        hs[h] = (sl_header){base + ph->key, ph->value == SIZE_MAX ? NULL : base + ph->value,
                            ph->value_len};
    }
    return (sl_message){r->topic, r->partition, r->offset, r->timestamp, r->key, r->key_len,
                        r->value, r->value_len, hs, b->nheaders};
}

/* One process_batch call over what was collected. A record the script dead-letters goes to
 * the DLQ; a failure of the call fails the instance, which restarts from its last commit with
 * the state committed with it, so a half-processed batch leaves no trace. */
static void run_batch(task *t) {
    if (t->nbatch == 0 || t->failed) {
        reset_batch(t);
        return;
    }
    const char *base = (const char *)t->batch_arena.data;
    for (size_t i = 0; i < t->nbatch; i++) {
        const batched *b = &t->batch[i];
        t->batch_recs[i] = (sl_plugin_record){
            b->topic, b->partition, b->offset, b->timestamp,
            b->key == SIZE_MAX ? NULL : base + b->key, b->key_len,
            b->value == SIZE_MAX ? NULL : base + b->value, b->value_len, NULL, 0};
    }
    t->error[0] = t->traceback[0] = '\0';
    drop_pending(t);
    t->inflight->partition = t->batch[0].partition;
    t->inflight->offset = t->batch[0].offset;
    t->inflight->started_ms = t->batch_clock_ms;
    if (strncmp(t->inflight->topic, t->batch[0].topic, sizeof(t->inflight->topic)) != 0)
        snprintf(t->inflight->topic, sizeof(t->inflight->topic), "%s", t->batch[0].topic);
    __atomic_store_n(&t->inflight->active, 1, __ATOMIC_SEQ_CST);
    sl_state_begin_call(t->store);
    const sl_lua_dead_letter *dead;
    size_t ndead;
    int rc = sl_lua_proc_process_batch(t->lua, t->batch_recs, t->nbatch, &dead, &ndead,
                                       t->error, sizeof(t->error), t->traceback,
                                       sizeof(t->traceback));
    __atomic_store_n(&t->inflight->active, 0, __ATOMIC_SEQ_CST);
    if (rc == 0)
        rc = flush_pending(t);
    drop_pending(t);
    int undone = rc != 0 ? sl_state_undo_call(t->store) : 0;
    sl_state_end_call(t->store);
    if (rc != 0 && t->nbatch == 1 && undone == 0) {
        /* A record alone: its failure, routed by the stage's policy like any other. */
        sl_header hs[MAX_OUT_HEADERS];
        sl_message m = batch_message(t, 0, hs);
        if (t->stage->tolerate_none) {
            stop_for_good(t, &m, t->error);
        } else if (fail_record(t, &m, rc) == 0) {
            position *pos = position_of(t, m.topic, m.partition, false);
            if (pos && pos->next < m.offset + 1)
                pos->next = m.offset + 1;
            t->commit_asked = true; /* never routed twice */
        }
        reset_batch(t);
        if (t->commit_asked && !t->failed) {
            t->commit_asked = false;
            commit_point(t);
        }
        return;
    }
    if (rc != 0) {
        /* The script's state may hold part of the batch: restart from the last commit (state
         * restored with it), and take these records one at a time then, to find the bad one. */
        const batched *b = &t->batch[0];
        t->errors++;
        snprintf(t->last_error, sizeof(t->last_error), "process_batch: %.1000s", t->error);
        sl_error("pipeline", "%s: process_batch failed on the %zu records from %s-%d@%" PRId64
                 ": %s%s%s; restarting from the last commit, then taking them one at a time",
                 t->label, t->nbatch, b->topic, b->partition, b->offset, t->error,
                 t->traceback[0] ? "\n" : "", t->traceback);
        isolate_batch(t);
        t->failed = true;
        reset_batch(t);
        return;
    }
    for (size_t i = 0; i < ndead && !t->failed; i++) {
        sl_header hs[MAX_OUT_HEADERS];
        sl_message m = batch_message(t, dead[i].index, hs);
        snprintf(t->error, sizeof(t->error), "%s", dead[i].reason);
        t->traceback[0] = '\0';
        if (t->stage->tolerate_none) {
            stop_for_good(t, &m, dead[i].reason);
            break;
        }
        fail_record(t, &m, SL_EREJECT);
    }
    for (size_t i = 0; i < t->nbatch && !t->failed; i++) {
        position *pos = position_of(t, t->batch[i].topic, t->batch[i].partition, false);
        if (pos && pos->next < t->batch[i].offset + 1) /* never back: a skip may be ahead */
            pos->next = t->batch[i].offset + 1;
    }
    reset_batch(t);
    if (ndead)
        commit_point(t); /* as handle() does after a failure: never route one twice */
}

/* ---- the changelog: state and input positions, committed together ---- */

static int open_admin(task *t) {
    if (t->admin)
        return 0;
    char err[256] = "out of memory";
    sl_conf *c = client_conf(t, NULL);
    /* The end of a changelog is its high watermark even with exactly once: a restore reads up
     * to it, so it waits for a transaction still open there (a previous owner's, which its
     * producer or the broker's timeout settles) instead of restoring without it. */
    int rc = c ? sl_conf_set(c, "isolation.level", "read_uncommitted", err, sizeof(err)) : 0;
    rc = rc == 0 && c ? sl_client_new(c, &t->admin, err, sizeof(err)) : rc ? rc : SL_ENOMEM;
    if (rc) {
        sl_conf_destroy(c);
        sl_error("pipeline", "%s: cannot reach the broker for the changelog: %s", t->label,
                 err);
    }
    return rc;
}

/* Whether the changelog exists yet (another instance may have made it since we looked). */
static int lookup_changelog(task *t) {
    if (t->changelog_parts > 0 || t->changelog_absent)
        return 0;
    int rc = open_admin(t);
    if (rc)
        return rc;
    sl_topic_info *info;
    char err[256];
    rc = sl_topic_describe(t->admin, t->changelog, &info, err, sizeof(err));
    if (rc == SL_ENOENT) {
        t->changelog_absent = t->in_assignment; /* one lookup per assignment, not per partition */
        return 0;
    }
    if (rc)
        return rc;
    t->changelog_parts = info->npartitions;
    sl_topic_info_free(info);
    return 0;
}

/* Made on the first state written: compacted, one partition per input partition. */
static int ensure_changelog(task *t) {
    int rc = lookup_changelog(t);
    if (rc || t->changelog_parts > 0)
        return rc;
    /* State is kept by partition number, so the inputs must be co-partitioned: with different
     * partition counts the group would give partition p of two inputs to two instances. */
    int32_t parts = 0;
    for (size_t i = 0; i < t->stage->ninputs; i++) {
        int32_t n = 0;
        if ((rc = sl_consumer_partition_count(t->consumer, t->stage->inputs[i], &n)) != 0)
            return rc;
        if (parts && n != parts) {
            sl_error("pipeline", "%s: a stage with state needs inputs with the same number of "
                     "partitions (co-partitioned), but %s has %d and %s has %d", t->label,
                     t->stage->inputs[0], parts, t->stage->inputs[i], n);
            t->stop_for_good = true; /* a restart cannot fix it: a redeploy can */
            return SL_EINVAL;
        }
        parts = n;
    }
    if (parts <= 0)
        return SL_ENOENT;
    /* A commit is one batch, so the topic takes batches as large as a busy commit makes. */
    static const char *const configs[] = {"cleanup.policy=compact",
                                          "max.message.bytes=67108864"};
    char err[256];
    rc = sl_topic_create(t->admin, t->changelog, parts, configs, 2, err, sizeof(err));
    if (rc == SL_EEXIST)
        return lookup_changelog(t);
    if (rc) {
        sl_error("pipeline", "%s: cannot make the changelog %s: %s", t->label, t->changelog, err);
        return rc;
    }
    sl_info("pipeline", "%s: made the changelog %s (%d partitions, compacted)", t->label,
            t->changelog, parts);
    t->changelog_parts = parts;
    return 0;
}

/* One commit's records for one changelog partition. Keys are copied into 'keys' (with their
 * prefix) and the records hold their offsets there until sent, as the buffer may move; values
 * are borrowed from the store until the commit is written. */
typedef struct changelog_commit {
    sl_buf keys;
    sl_produce_record *recs;
    size_t n, cap;
} changelog_commit;

static int commit_add(changelog_commit *c, char prefix, const void *key, size_t key_len,
                      const void *value, size_t value_len) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        sl_produce_record *r = realloc(c->recs, cap * sizeof(*r));
        if (r == NULL)
            return SL_ENOMEM;
        c->recs = r;
        c->cap = cap;
    }
    c->recs[c->n] = (sl_produce_record){.key = (const void *)(uintptr_t)c->keys.len,
                                        .key_len = key_len + 1, .value = value,
                                        .value_len = value_len};
    if (sl_buf_append(&c->keys, &prefix, 1) || sl_buf_append(&c->keys, key, key_len))
        return SL_ENOMEM;
    c->n++;
    return 0;
}

static int add_changed(void *opaque, const void *key, size_t key_len, const void *value,
                       size_t value_len) {
    return commit_add(opaque, SL_STATE_KEY_PREFIX, key, key_len, value, value_len);
}

/* Sends a partition's commit as one record batch: the broker appends it whole or not at all,
 * so no restore (and no compaction) ever sees half a commit. */
static int send_commit(task *t, int32_t p, changelog_commit *c) {
    const char *keys = (const char *)c->keys.data;
    for (size_t i = 0; i < c->n; i++) {
        sl_produce_record *r = &c->recs[i];
        r->key = keys + (uintptr_t)r->key;
        r->topic = t->changelog;
        r->partition = p;
        r->cb = on_delivery;
        r->opaque = t;
    }
    return sl_producer_send_batch(t->producer, c->recs, c->n);
}

/* Writes, for each partition, its changed state and then one position record holding the
 * positions of all its inputs, as one batch. Positions go out with every commit that moved
 * them, so the changelog alone says where to resume. */
static int write_changelog(task *t) {
    bool moved = false;
    for (size_t i = 0; i < t->npos && !moved; i++)
        moved = t->pos[i].next >= 0 && t->pos[i].next != t->pos[i].logged;
    if (!sl_state_dirty(t->store) && (!moved || t->changelog_parts == 0))
        return 0;
    int rc = ensure_changelog(t);
    if (rc)
        return rc;
    changelog_commit c = {0};
    sl_buf positions = {0};
    for (int32_t p = 0; rc == 0 && p < t->changelog_parts; p++) {
        c.n = 0;
        c.keys.len = 0;
        rc = sl_state_foreach_changed(t->store, p, add_changed, &c);
        size_t changed = c.n;
        bool moved_here = false;
        positions.len = 0;
        for (size_t i = 0; rc == 0 && i < t->npos; i++) {
            const position *pos = &t->pos[i];
            if (pos->partition != p || pos->next < 0)
                continue;
            moved_here |= pos->next != pos->logged;
            char line[300];
            int n = snprintf(line, sizeof(line), "%s %" PRId64 "\n", pos->topic, pos->next);
            if (sl_buf_append(&positions, line, (size_t)n) != 0)
                rc = SL_ENOMEM;
        }
        if (rc || (changed == 0 && !moved_here))
            continue;
        /* The position record closes the commit; empty when state changed with no record read
         * (by tick, say). */
        rc = commit_add(&c, SL_STATE_POSITION_KEY, "", 0,
                        positions.len ? positions.data : (const void *)"", positions.len);
        if (rc == 0)
            rc = send_commit(t, p, &c);
    }
    sl_buf_free(&c.keys);
    free(c.recs);
    sl_buf_free(&positions);
    if (rc == 0 && (rc = sl_producer_flush(t->producer, -1)) == 0 && t->undelivered)
        rc = SL_EIO;
    if (rc == 0) {
        for (int32_t p = 0; p < t->changelog_parts; p++)
            sl_state_mark_written(t->store, p);
        for (size_t i = 0; i < t->npos; i++)
            t->pos[i].logged = t->pos[i].next;
        if (sl_state_dirty(t->store)) {
            sl_error("pipeline", "%s: state was written for a partition the changelog %s "
                     "(%d partitions) does not have", t->label, t->changelog,
                     t->changelog_parts);
            rc = SL_EINVAL;
        }
    }
    if (rc)
        sl_error("pipeline", "%s: cannot write the changelog %s: %s", t->label, t->changelog,
                 sl_strerror(rc));
    return rc;
}

typedef struct restored_position {
    char topic[256];
    int64_t next;
} restored_position;

typedef struct restorer {
    restored_position *pos;
    size_t npos;
    bool failed;
} restorer;

static void on_restored_position(void *opaque, const char *topic, int64_t next) {
    restorer *r = opaque;
    for (size_t i = 0; i < r->npos; i++)
        if (strcmp(r->pos[i].topic, topic) == 0) {
            r->pos[i].next = next;
            return;
        }
    restored_position *np = realloc(r->pos, (r->npos + 1) * sizeof(*np));
    if (np == NULL) {
        r->failed = true;
        return;
    }
    r->pos = np;
    snprintf(np[r->npos].topic, sizeof(np[r->npos].topic), "%s", topic);
    np[r->npos++].next = next;
}

typedef struct entry_list {
    sl_plugin_record *recs;
    size_t n, cap;
} entry_list;

static int list_entry(void *opaque, const void *key, size_t key_len, const void *value,
                      size_t value_len) {
    entry_list *l = opaque;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        sl_plugin_record *nr = realloc(l->recs, cap * sizeof(*nr));
        if (nr == NULL)
            return SL_ENOMEM;
        l->recs = nr;
        l->cap = cap;
    }
    l->recs[l->n++] = (sl_plugin_record){.key = key, .key_len = key_len, .value = value,
                                         .value_len = value_len};
    return 0;
}

/* Reads changelog partition p into the store, and moves every input of partition p that we
 * read to the position committed with that state, when the group's offset lags it. */
static int restore_partition(task *t, int32_t p) {
    int64_t started = sl_clock_mono_ms();
    int rc = lookup_changelog(t);
    restorer r = {0};
    size_t records = 0, dropped = 0;
    sl_state_restore_begin(t->store, p);
    if (rc == 0 && t->changelog_parts > 0 && p >= t->changelog_parts) {
        sl_error("pipeline", "%s: partition %d has no changelog partition (%s has %d)",
                 t->label, p, t->changelog, t->changelog_parts);
        rc = SL_EINVAL;
    }
    if (rc == 0 && t->changelog_parts > 0) {
        int64_t end = 0;
        sl_consumer *c = NULL;
        char err[256];
        sl_conf *cc = client_conf(t, NULL);
        rc = sl_list_offset(t->admin, t->changelog, p, SL_OFFSET_END, &end);
        if (rc == 0)
            rc = cc ? sl_consumer_new(cc, &c, err, sizeof(err)) : SL_ENOMEM;
        if (rc && c == NULL)
            sl_conf_destroy(cc); /* the consumer takes it only when it is made */
        if (rc == 0)
            rc = sl_consumer_assign(c, t->changelog, p, SL_OFFSET_BEGINNING);
        int64_t deadline = sl_clock_mono_ms() + 60000, at = 0;
        while (rc == 0 && sl_consumer_position(c, t->changelog, p, &at) == 0 && at < end) {
            const sl_message *m;
            /* Short: a restore that ends on a marker or an aborted batch has no record to wait
             * for; the position moves past them and the loop sees it. */
            int prc = sl_consumer_poll(c, 20, &m);
            if (prc == 0 && m->offset < end) {
                records++;
                rc = sl_state_restore_record(t->store, p, m->key, m->key_len, m->value,
                                             m->value_len, on_restored_position, &r);
            } else if (prc != 0 && prc != SL_ETIMEDOUT) {
                rc = prc; /* a bad batch, a broken connection: fail, do not spin */
            } else if (sl_clock_mono_ms() > deadline) {
                rc = SL_ETIMEDOUT;
            }
        }
        if (c)
            sl_consumer_destroy(c);
    }
    if (r.failed)
        rc = SL_ENOMEM;
    dropped = sl_state_restore_end(t->store, p);
    for (size_t i = 0; rc == 0 && i < r.npos; i++) {
        int64_t now;
        if (sl_consumer_position(t->consumer, r.pos[i].topic, p, &now) != 0)
            continue; /* not one of ours (any more) */
        position *pos = position_of(t, r.pos[i].topic, p, true);
        if (pos == NULL) {
            rc = SL_ENOMEM;
            break;
        }
        pos->logged = r.pos[i].next;
        if (now < r.pos[i].next) {
            pos->next = r.pos[i].next;
            t->seeks++;
            rc = sl_consumer_seek(t->consumer, r.pos[i].topic, p, r.pos[i].next);
        }
    }
    entry_list l = {0};
    if (rc == 0 && (rc = sl_state_foreach(t->store, p, list_entry, &l)) == 0 && t->lua) {
        char err[1024];
        rc = sl_lua_proc_restore(t->lua, p, l.recs, l.n, err, sizeof(err));
        if (rc)
            sl_error("pipeline", "%s: restore(%d) failed: %s", t->label, p, err);
    }
    size_t live = l.n;
    free(l.recs);
    if (rc) {
        sl_error("pipeline", "%s: cannot restore the state of partition %d: %s", t->label, p,
                 sl_strerror(rc));
        sl_state_drop(t->store, p);
        t->failed = true;
    } else if (records) {
        char resume[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < r.npos && used < sizeof(resume) - 64; i++)
            used += (size_t)snprintf(resume + used, sizeof(resume) - used, "%s%s-%d@%" PRId64,
                                     used ? ", " : "", r.pos[i].topic, p, r.pos[i].next);
        sl_info("pipeline", "%s: restored partition %d: %zu keys from %zu changelog records in "
                "%" PRId64 " ms%s%s%s", t->label, p, live, records, sl_clock_mono_ms() - started,
                used ? ", resuming at " : "", resume,
                dropped ? " (an unfinished commit was dropped)" : "");
    }
    free(r.pos);
    return rc;
}

static int ensure_restored(task *t, int32_t partition) {
    return sl_state_loaded(t->store, partition) ? 0 : restore_partition(t, partition);
}

/* ---- commits and status ---- */

/* A source's position, once what it emitted before it is acknowledged (commit_point has
 * waited for that). */
static int store_position(task *t) {
    if (t->position == NULL)
        return 0;
    sl_produce_record r = {.topic = SL_CONNECT_OFFSETS_TOPIC, .partition = 0, .key = t->label,
                           .key_len = strlen(t->label), .value = t->position,
                           .value_len = strlen(t->position), .cb = on_delivery, .opaque = t};
    int rc = sl_producer_send(t->producer, &r);
    if (rc == 0)
        rc = sl_producer_flush(t->producer, -1);
    if (rc || t->undelivered) {
        sl_error("pipeline", "%s: cannot store the source position: %s", t->label,
                 sl_strerror(rc ? rc : SL_EIO));
        t->failed = true;
        return rc ? rc : SL_EIO;
    }
    free(t->position);
    t->position = NULL;
    return 0;
}

/* Exactly once: the input offsets join the transaction that holds the outputs and changelog
 * writes since the last commit, and it commits. Any failure (a rebalance that made us a zombie,
 * a fence, a lost output) fails the instance: its restart aborts the transaction and resumes
 * from the last one committed. */
static int commit_transaction(task *t, const sl_topic_partition *tp, size_t n) {
    char err[512] = "";
    int rc = n ? sl_producer_send_offsets_to_transaction(t->producer, t->consumer, tp, n, err,
                                                         sizeof(err))
               : 0;
    if (rc == 0)
        rc = sl_producer_commit_transaction(t->producer, -1, err, sizeof(err));
    if (rc == 0)
        t->out_at_commit = t->records_out;
    if (rc) {
        sl_error("pipeline", "%s: cannot commit the transaction: %s; restarting from the last "
                 "one committed", t->label, err[0] ? err : sl_strerror(rc));
        t->failed = true;
    }
    return rc;
}

static int commit_point(task *t) {
    if (t->failed)
        return SL_EIO; /* never commit past a record that was neither processed nor routed */
    int rc = 0;
    char err[1024] = "";
    if (t->lua)
        rc = sl_lua_proc_flush(t->lua, err, sizeof(err));
    else if (t->lib && t->lib->desc.flush)
        rc = t->lib->desc.flush(t->plugin_state);
    if (rc == 0)
        rc = flush_pending(t); /* what flush emitted */
    drop_pending(t);
    if (rc) {
        sl_error("pipeline", "%s: flush failed: %s", t->label,
                 err[0] ? err : t->error[0] ? t->error : sl_strerror(rc));
        t->failed = true;
        return rc;
    }
    if ((rc = sl_producer_flush(t->producer, -1)) != 0 || t->undelivered != 0) {
        sl_error("pipeline", "%s: outputs were not all acknowledged: not committing", t->label);
        t->failed = true;
        return rc ? rc : SL_EIO;
    }
    if (t->consumer == NULL)
        return store_position(t);
    if ((rc = write_changelog(t)) != 0) {
        t->failed = true; /* offsets must not move past state that is not durable */
        return rc;
    }
    sl_topic_partition *tp = calloc(t->npos ? t->npos : 1, sizeof(*tp));
    size_t n = 0;
    if (tp == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < t->npos; i++)
        if (t->pos[i].next >= 0)
            tp[n++] = (sl_topic_partition){t->pos[i].topic, t->pos[i].partition, t->pos[i].next};
    if (t->eos) {
        /* Only positions that moved: an instance that has done nothing since its last commit
         * (a rebalance right after one, a close) opens no transaction. */
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) {
            position *pos = position_of(t, tp[i].topic, tp[i].partition, false);
            if (pos == NULL || pos->committed != tp[i].offset)
                tp[moved++] = tp[i];
        }
        rc = commit_transaction(t, tp, moved);
        for (size_t i = 0; rc == 0 && i < moved; i++) {
            position *pos = position_of(t, tp[i].topic, tp[i].partition, false);
            if (pos)
                pos->committed = tp[i].offset;
        }
        free(tp);
        return rc;
    }
    rc = n ? sl_consumer_commit_offsets(t->consumer, tp, n, 0) : 0;
    free(tp);
    if (rc)
        sl_warn("pipeline", "%s: commit failed: %s (the records will be processed again)",
                t->label, sl_strerror(rc));
    return rc;
}

static void forget(task *t, const char *topic, int32_t partition) {
    for (size_t i = 0; i < t->npos; i++)
        if (t->pos[i].partition == partition && strcmp(t->pos[i].topic, topic) == 0) {
            free(t->pos[i].topic);
            t->pos[i] = t->pos[--t->npos];
            break;
        }
    for (size_t i = 0; i < t->ndefer; i++)
        if (t->defer[i].partition == partition && strcmp(t->defer[i].topic, topic) == 0) {
            free(t->defer[i].topic);
            t->defer[i] = t->defer[--t->ndefer];
            break;
        }
}

static void on_rebalance(void *opaque, sl_rebalance_event ev, const sl_topic_partition *parts,
                         size_t n) {
    task *t = opaque;
    t->last_status_ms = 0; /* the status shows the new partitions at the next turn */
    if (ev == SL_PARTITIONS_REVOKED) {
        run_batch(t); /* what was collected is ours to finish */
        commit_point(t); /* the next owner starts exactly after what we processed */
    }
    if (ev == SL_PARTITIONS_LOST)
        reset_batch(t); /* another member has them already: the new owner redoes it */
    if (ev == SL_PARTITIONS_LOST && t->eos) {
        /* The open transaction holds work on partitions that are someone else's now: it can
         * only be aborted, and the rest of it redone from the last commit. */
        sl_warn("pipeline", "%s: partitions lost to a rebalance; restarting from the last "
                "committed transaction", t->label);
        t->failed = true;
    }
    if (ev == SL_PARTITIONS_ASSIGNED) {
        if (n)
            sl_info("pipeline", "%s: assigned %zu partition%s", t->label, n, n == 1 ? "" : "s");
        /* State first: restoring may move the partitions' positions. */
        t->in_assignment = true;
        for (size_t i = 0; i < n && !t->failed; i++)
            ensure_restored(t, parts[i].partition);
        t->in_assignment = t->changelog_absent = false;
        return;
    }
    for (size_t i = 0; i < n; i++)
        forget(t, parts[i].topic, parts[i].partition);
    /* The state goes with its partition: the next owner restores it from the changelog. */
    for (size_t i = 0; i < n; i++) {
        if (!sl_state_loaded(t->store, parts[i].partition))
            continue;
        sl_state_drop(t->store, parts[i].partition);
        char err[1024];
        if (t->lua && sl_lua_proc_revoke(t->lua, parts[i].partition, err, sizeof(err)) != 0) {
            sl_error("pipeline", "%s: revoke(%d) failed: %s", t->label, parts[i].partition, err);
            t->failed = true;
        }
    }
}

static void json_string(sl_buf *b, const char *s) {
    sl_buf_append(b, "\"", 1);
    for (; *s; s++) {
        char esc[8];
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sl_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            sl_buf_append(b, esc, 6);
        } else {
            sl_buf_append(b, s, 1);
        }
    }
    sl_buf_append(b, "\"", 1);
}

static void appendf(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(sl_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sl_buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* The instance's status as a JSON record in __pipeline_status, keyed pipeline/stage/instance. */
static void publish_status(task *t, const char *state) {
    sl_buf b = SL_BUF_INIT;
    appendf(&b, "{\"state\":\"%s\",\"node\":%d,\"pid\":%ld,\"restarts\":%d,\"kind\":\"%s\",\"records_in\":%" PRIu64
                ",\"records_out\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"retried\":%" PRIu64
                ",\"dead_lettered\":%" PRIu64 ",\"updated_ms\":%" PRId64 ",\"last_error\":",
            state, t->conf->node_id, (long)getpid(), t->conf->restarts, sl_plugin_kind_name(t->stage->kind), t->records_in,
            t->records_out, t->errors, t->retried, t->dead_lettered, sl_clock_wall_ms());
    json_string(&b, t->last_error);
    appendf(&b, ",\"partitions\":[");
    sl_topic_partition *parts = NULL;
    size_t n = 0;
    if (t->consumer && sl_consumer_assignment(t->consumer, &parts, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            appendf(&b, "%s\"%s-%d\"", i ? "," : "", parts[i].topic, parts[i].partition);
        sl_topic_partitions_free(parts, n);
    }
    appendf(&b, "],\"metrics\":{");
    for (size_t i = 0; i < t->nmetrics; i++) {
        appendf(&b, "%s", i ? "," : "");
        json_string(&b, t->metrics[i].name);
        appendf(&b, ":%" PRId64, t->metrics[i].value);
    }
    if (t->lua)
        appendf(&b, "%s\"lua_memory_bytes\":%" PRId64, t->nmetrics ? "," : "",
                sl_lua_proc_memory(t->lua));
    uint64_t keys, bytes;
    sl_state_size(t->store, &keys, &bytes); /* every 2 s: a walk over the keys is fine */
    appendf(&b, "},\"state_keys\":%" PRIu64 ",\"state_bytes\":%" PRIu64 ",\"changelog\":",
            keys, bytes);
    json_string(&b, t->changelog_parts > 0 ? t->changelog : "");
    appendf(&b, "}");
    sl_produce_record r = {.topic = SL_PIPELINE_STATUS_TOPIC, .partition = 0,
                           .key = t->label, .key_len = strlen(t->label),
                           .value = b.data, .value_len = b.len};
    if (sl_producer_send(t->status_producer ? t->status_producer : t->producer, &r) != 0)
        sl_debug("pipeline", "%s: status not published", t->label);
    sl_buf_free(&b);
    t->last_status_ms = sl_clock_mono_ms();
}

/* ---- setting up ---- */

void sl_task_inflight_path(const char *data_dir, const char *pipeline, const char *stage,
                           int instance, int64_t version, char *buf, size_t len) {
    snprintf(buf, len, "%s/pipelines/tasks/%s.%s.%d.v%" PRId64 ".inflight", data_dir, pipeline,
             stage, instance, version);
}

void sl_task_poison_path(const char *data_dir, const char *pipeline, const char *stage,
                         char *buf, size_t len) {
    snprintf(buf, len, "%s/pipelines/tasks/%s.%s.poison", data_dir, pipeline, stage);
}

static int map_inflight(task *t) {
    char path[4096], dir[4096];
    snprintf(dir, sizeof(dir), "%s/pipelines/tasks", t->conf->data_dir);
    if (sl_fs_mkdirs(dir) != 0)
        return SL_EIO;
    sl_task_inflight_path(t->conf->data_dir, t->pipeline->name, t->stage->name,
                          t->conf->instance, t->conf->version, path, sizeof(path));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, sizeof(sl_task_inflight)) != 0) {
        if (fd >= 0)
            close(fd);
        return SL_EIO;
    }
    void *m = mmap(NULL, sizeof(sl_task_inflight), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return SL_EIO;
    t->inflight = m;
    t->inflight->active = 0;
    sl_task_poison_path(t->conf->data_dir, t->pipeline->name, t->stage->name, t->poison_path,
                        sizeof(t->poison_path));
    snprintf(t->isolate_path, sizeof(t->isolate_path), "%s/pipelines/tasks/%s.%s.isolate",
             t->conf->data_dir, t->pipeline->name, t->stage->name);
    return 0;
}

static sl_conf *client_conf(task *t, const char *group) {
    sl_conf *c = sl_conf_new();
    char err[256];
    int rc = c ? 0 : SL_ENOMEM;
    if (rc == 0)
        rc = sl_conf_set(c, "bootstrap.servers", t->conf->broker, err, sizeof(err));
    if (rc == 0)
        rc = sl_conf_set(c, "client.id", t->label, err, sizeof(err));
    if (rc == 0 && t->conf->local_broker)
        rc = sl_conf_set(c, "local.broker", t->conf->local_broker, err, sizeof(err));
    if (rc == 0 && t->eos) /* consumers see only committed outputs and changelog writes */
        rc = sl_conf_set(c, "isolation.level", "read_committed", err, sizeof(err));
    if (rc == 0 && group) {
        const char *kv[][2] = {{"group.id", group},
                               {"enable.auto.commit", "false"},
                               {"auto.offset.reset", "earliest"},
                               {"session.timeout.ms", "6000"},
                               {"heartbeat.interval.ms", "1000"}};
        for (size_t i = 0; rc == 0 && i < sizeof(kv) / sizeof(kv[0]); i++)
            rc = sl_conf_set(c, kv[i][0], kv[i][1], err, sizeof(err));
    }
    if (rc) {
        sl_error("pipeline", "%s: %s", t->label, err);
        sl_conf_destroy(c);
        return NULL;
    }
    return c;
}

static int start_impl(task *t) {
    const sl_pl_stage *s = t->stage;
    char err[1024] = "";
    int rc;
    if (s->script) {
        sl_lua_settings ls = {s->script, s->lua_instructions, s->lua_memory, s->lua_unsandboxed,
                              (const char *const *)s->config_keys,
                              (const char *const *)s->config_values, s->nconfig,
                              SL_SCRIPT_DIRS};
        rc = sl_lua_proc_new(&ls, &t->host, t, &t->lua, err, sizeof(err));
        if (rc == 0 && sl_lua_proc_has_batch(t->lua) &&
            ((t->batch = calloc(LUA_BATCH, sizeof(*t->batch))) == NULL ||
             (t->batch_recs = calloc(LUA_BATCH, sizeof(*t->batch_recs))) == NULL)) {
            snprintf(err, sizeof(err), "out of memory");
            rc = SL_ENOMEM;
        }
    } else if ((rc = sl_plugin_load(s->plugin, &t->lib, err, sizeof(err))) == 0 &&
               t->lib->desc.kind != (uint32_t)s->kind) {
        snprintf(err, sizeof(err), "plugin %s is a %s, not a %s", t->lib->desc.name,
                 sl_plugin_kind_name(t->lib->desc.kind), sl_plugin_kind_name(s->kind));
        rc = SL_EINVAL;
    } else if (rc == 0) {
        t->error[0] = '\0';
        rc = t->lib->desc.init(&t->host, t, &t->plugin_state);
        t->plugin_started = rc == 0;
        if (rc)
            snprintf(err, sizeof(err), "plugin %s failed to start: %.900s", t->lib->desc.name,
                     t->error[0] ? t->error : sl_strerror(rc));
    }
    if (rc) {
        /* Said once: a restarted instance failing the same way shows it in its status. */
        sl_log(t->conf->restarts ? SL_LOG_DEBUG : SL_LOG_ERROR, "pipeline", "%s: %s", t->label,
               err);
        snprintf(t->last_error, sizeof(t->last_error), "%s", err);
    }
    return rc;
}

static int subscribe(task *t) {
    const sl_pl_stage *s = t->stage;
    size_t n = s->ninputs * (1 + s->nretries), k = 0;
    char **topics = calloc(n, sizeof(*topics));
    int rc = topics ? 0 : SL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < s->ninputs; i++) {
        topics[k++] = strdup(s->inputs[i]);
        for (size_t r = 1; r <= s->nretries; r++) {
            char name[300];
            snprintf(name, sizeof(name), "%s.retry.%zu", s->inputs[i], r);
            topics[k++] = strdup(name);
        }
    }
    for (size_t i = 0; rc == 0 && i < k; i++)
        if (topics[i] == NULL)
            rc = SL_ENOMEM;
    if (rc == 0)
        rc = sl_consumer_subscribe(t->consumer, (const char *const *)topics, k, on_rebalance, t);
    for (size_t i = 0; topics && i < k; i++)
        free(topics[i]);
    free(topics);
    return rc;
}

/* The script's tick(now_ms, ctx): wall-clock punctuation, after each batch. */
static void tick(task *t) {
    char err[1024] = "";
    drop_pending(t);
    t->error[0] = '\0';
    int rc = sl_lua_proc_tick(t->lua, sl_clock_wall_ms(), err, sizeof(err));
    if (rc == 0)
        rc = flush_pending(t);
    drop_pending(t);
    if (rc) {
        snprintf(t->last_error, sizeof(t->last_error), "tick: %.1000s",
                 err[0] ? err : t->error);
        sl_error("pipeline", "%s: %s", t->label, t->last_error);
        t->failed = true;
    }
}

static void run_processor(task *t) {
    int64_t next_resume = INT64_MAX;
    while (!*t->conf->stop && !t->failed) {
        int64_t now = sl_clock_wall_ms();
        if (t->ndefer && next_resume <= now)
            next_resume = resume_due(t, now);
        load_poisons(t);
        int64_t started = t->batch_clock_ms = sl_clock_mono_ms();
        size_t n = 0;
        while (n < BATCH_RECORDS && !*t->conf->stop && !t->failed) {
            /* The clock is read every 64 records: a batch ends within BATCH_MS either way. */
            if ((n & 63) == 0)
                t->batch_clock_ms = sl_clock_mono_ms();
            int64_t left = BATCH_MS - (t->batch_clock_ms - started);
            if (next_resume != INT64_MAX) {
                int64_t until = next_resume - sl_clock_wall_ms();
                left = until < left ? (until > 0 ? until : 0) : left;
            }
            if (left <= 0)
                break;
            const sl_message *m;
            int rc = sl_consumer_poll(t->consumer, (int)left, &m);
            if (rc == SL_ETIMEDOUT)
                break;
            if (rc) {
                sl_warn("pipeline", "%s: poll failed: %s", t->label, sl_strerror(rc));
                break;
            }
            size_t before = t->ndefer;
            if (t->batch) {
                collect(t, m);
                int64_t memory = t->stage->lua_memory > 0 ? t->stage->lua_memory
                                                          : SL_LUA_DEFAULT_MEMORY;
                if (t->nbatch == LUA_BATCH ||
                    (int64_t)t->batch_arena.len >= memory / LUA_BATCH_SHARE)
                    run_batch(t);
            } else {
                handle(t, m);
            }
            if (t->ndefer > before && t->defer[t->ndefer - 1].resume_ms < next_resume)
                next_resume = t->defer[t->ndefer - 1].resume_ms;
            n++;
        }
        run_batch(t);
        if (t->lua && !t->failed)
            tick(t);
        /* With exactly once, what tick or a resumed retry emitted is in the open transaction
         * even when no record came in: it commits now, not at the broker's timeout. */
        bool emitted = t->eos && t->records_out != t->out_at_commit;
        if ((n || emitted || sl_state_dirty(t->store)) && !t->failed)
            commit_point(t);
        if (sl_clock_mono_ms() - t->last_status_ms >= STATUS_EVERY_MS)
            publish_status(t, "running");
    }
}

/* A source: poll, send what it emitted, and store its position once that is acknowledged,
 * so that a restart repeats at most the last poll whose records were not all acknowledged. */
static void run_source(task *t) {
    int64_t backoff = 100;
    while (!*t->conf->stop && !t->failed) {
        drop_pending(t);
        t->error[0] = '\0';
        int rc = t->lib->desc.poll(t->plugin_state, 100);
        if (rc == 0) {
            backoff = 100;
            size_t emitted = t->npend;
            t->records_in += emitted;
            rc = flush_pending(t);
            drop_pending(t);
            if (rc != 0) {
                sl_error("pipeline", "%s: %s", t->label, t->error);
                t->failed = true;
            } else if (emitted || t->position) {
                commit_point(t);
            }
        } else {
            t->errors++;
            snprintf(t->last_error, sizeof(t->last_error), "poll: %.1000s",
                     t->error[0] ? t->error : sl_strerror(rc));
            sl_warn("pipeline", "%s: %s; polling again in %" PRId64 " ms", t->label,
                    t->last_error, backoff);
            struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
        }
        if (sl_clock_mono_ms() - t->last_status_ms >= STATUS_EVERY_MS)
            publish_status(t, "running");
    }
}

/* The position stored for this instance, if any. */
static int load_position(task *t) {
    char **keys, **values, err[512];
    size_t n;
    int rc = sl_pl_read_latest(t->conf->broker, SL_CONNECT_OFFSETS_TOPIC, t->label, &keys,
                               &values, &n, err, sizeof(err));
    if (rc) {
        sl_error("pipeline", "%s: cannot read the stored source position: %s", t->label, err);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], t->label) == 0 && (t->resume_position = strdup(values[i])) == NULL)
            rc = SL_ENOMEM;
    sl_topic_list_free(keys, n);
    sl_topic_list_free(values, n);
    if (t->resume_position)
        sl_info("pipeline", "%s: resuming from position %s", t->label, t->resume_position);
    return rc;
}

static void free_task(task *t) {
    if (t->consumer)
        sl_consumer_destroy(t->consumer);
    if (t->lua)
        sl_lua_proc_free(t->lua);
    if (t->lib) {
        if (t->plugin_started)
            t->lib->desc.close(t->plugin_state);
        sl_plugin_unload(t->lib);
    }
    if (t->producer)
        sl_producer_destroy(t->producer);
    if (t->status_producer)
        sl_producer_destroy(t->status_producer);
    if (t->inflight)
        munmap(t->inflight, sizeof(sl_task_inflight));
    sl_buf_free(&t->arena);
    free(t->pend);
    free(t->phdr);
    for (size_t i = 0; i < t->npos; i++)
        free(t->pos[i].topic);
    free(t->pos);
    for (size_t i = 0; i < t->ndefer; i++)
        free(t->defer[i].topic);
    free(t->defer);
    for (size_t i = 0; i < t->npoisons; i++)
        free(t->poisons[i].topic);
    free(t->poisons);
    for (size_t i = 0; i < t->nisolated; i++)
        free(t->isolated[i].topic);
    free(t->isolated);
    sl_state_free(t->store);
    if (t->admin)
        sl_client_destroy(t->admin);
    free(t->batch);
    free(t->batch_recs);
    free(t->batch_hdr);
    sl_buf_free(&t->batch_arena);
    for (size_t i = 0; i < t->nmetrics; i++)
        free(t->metrics[i].name);
    free(t->metrics);
    free(t->position);
    free(t->resume_position);
    sl_pipeline_free(t->pipeline);
    free(t);
}

int sl_task_run(const sl_task_conf *conf) {
    task *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return 1;
    t->conf = conf;
    t->cur_partition = -1;
    init_host(t);
    if (sl_state_new(&t->store) != 0) {
        free(t);
        return 1;
    }
    char err[2048] = "";
    char *source = NULL;
    if (conf->source_file) {
        FILE *f = fopen(conf->source_file, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            source = n >= 0 ? calloc(1, (size_t)n + 1) : NULL;
            if (source && fread(source, 1, (size_t)n, f) != (size_t)n) {
                free(source);
                source = NULL;
            }
            fclose(f);
        }
        if (source == NULL) {
            sl_error("pipeline", "cannot read %s", conf->source_file);
            free_task(t);
            return 2;
        }
    }
    char pathbuf[8192];
    int rc = sl_pipeline_load(conf->pipeline_file, source,
                              sl_plugin_search_path(conf->plugin_path, pathbuf, sizeof(pathbuf)),
                              &t->pipeline, err, sizeof(err));
    free(source);
    if (rc) {
        sl_error("pipeline", "%s", err);
        free_task(t);
        return 2;
    }
    if ((t->stage = sl_pipeline_stage(t->pipeline, conf->stage)) == NULL) {
        sl_error("pipeline", "pipeline %s has no stage %s", t->pipeline->name, conf->stage);
        free_task(t);
        return 2;
    }
    snprintf(t->label, sizeof(t->label), "%s/%s/%d", t->pipeline->name, t->stage->name,
             conf->instance);
    snprintf(t->stage_id, sizeof(t->stage_id), "%s/%s", t->pipeline->name, t->stage->name);
    snprintf(t->changelog, sizeof(t->changelog), "%s.%s.changelog", t->pipeline->name,
             t->stage->name);
    char group[512];
    sl_pipeline_group(t->pipeline, t->stage, group, sizeof(group));
    t->eos = t->pipeline->exactly_once && t->stage->kind != SL_PLUGIN_SOURCE;
    sl_conf *pc = client_conf(t, NULL);
    rc = pc ? sl_conf_set(pc, "acks", "all", err, sizeof(err)) : SL_ENOMEM;
    if (rc == 0 && t->eos) {
        /* One id per instance and version: a restarted instance fences its previous self and
         * aborts what it left open; an old version draining beside a new one keeps its own.
         * A short timeout bounds how long an instance that died holds readers back. */
        char txn_id[600];
        snprintf(txn_id, sizeof(txn_id), "%s.%s.%d.v%" PRId64, t->pipeline->name,
                 t->stage->name, conf->instance, conf->version);
        if ((rc = sl_conf_set(pc, "transactional.id", txn_id, err, sizeof(err))) == 0)
            rc = sl_conf_set(pc, "transaction.timeout.ms", "10000", /* EOS_TXN_TIMEOUT_MS */
                             err, sizeof(err));
    }
    if (rc == 0 && (rc = sl_producer_new(pc, &t->producer, err, sizeof(err))) == 0)
        pc = NULL; /* taken */
    if (rc == 0 && t->eos) {
        sl_conf *sc = client_conf(t, NULL);
        if (sc == NULL || (rc = sl_producer_new(sc, &t->status_producer, err, sizeof(err))))
            sl_conf_destroy(sc);
    }
    if (rc)
        sl_error("pipeline", "%s: %s", t->label, err);
    sl_conf_destroy(pc);
    if (t->producer == NULL || (t->eos && t->status_producer == NULL) || map_inflight(t) != 0) {
        sl_error("pipeline", "%s: cannot start (producer or %s/pipelines unusable)", t->label,
                 conf->data_dir);
        free_task(t);
        return 1;
    }
    if (t->stage->kind == SL_PLUGIN_SOURCE && load_position(t) != 0) {
        free_task(t);
        return 1;
    }
    if ((rc = start_impl(t)) != 0) {
        publish_status(t, "failed");
        sl_producer_flush(t->producer, 5000);
        free_task(t);
        return rc == SL_EINVAL ? 2 : 1;
    }
    if (t->stage->kind != SL_PLUGIN_SOURCE) {
        sl_conf *cc = client_conf(t, group);
        if (cc == NULL || (rc = sl_consumer_new(cc, &t->consumer, err, sizeof(err))) != 0 ||
            (rc = subscribe(t)) != 0) {
            sl_error("pipeline", "%s: cannot join group %s: %s", t->label, group,
                     cc ? err : "bad configuration");
            if (cc && t->consumer == NULL)
                sl_conf_destroy(cc);
            free_task(t);
            return 1;
        }
    }
    sl_info("pipeline", "%s: started (%s %s, group %s)", t->label,
            t->lua ? "script" : "plugin", t->lua ? t->stage->script : t->stage->plugin, group);
    publish_status(t, "running");
    if (t->stage->kind == SL_PLUGIN_SOURCE)
        run_source(t);
    else
        run_processor(t);
    if (!t->failed)
        commit_point(t);
    if (t->eos && t->failed) {
        /* Readers need not wait for the broker's timeout: what this instance wrote since its
         * last commit is aborted now (a fenced or unreachable producer cannot, and then the
         * next incarnation or the timeout does it). */
        char err[512];
        if (sl_producer_abort_transaction(t->producer, 5000, err, sizeof(err)) == 0)
            sl_info("pipeline", "%s: aborted the open transaction", t->label);
    }
    if (t->consumer && !t->failed)
        sl_consumer_close(t->consumer);
    publish_status(t, t->failed ? "failed" : "stopped");
    sl_producer_flush(t->producer, 5000);
    if (t->status_producer)
        sl_producer_flush(t->status_producer, 5000);
    bool failed = t->failed, for_good = t->stop_for_good;
    sl_info("pipeline", "%s: %s after %" PRIu64 " records in, %" PRIu64 " out, %" PRIu64
            " errors", t->label, failed ? "failed" : "stopped", t->records_in, t->records_out,
            t->errors);
    free_task(t);
    return for_good ? SL_TASK_EXIT_STOPPED : failed ? 1 : 0;
}

#include "broker/broker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "broker/metadata.h"
#include "log/batch.h"
#include "log/compression.h"
#include "log/compact.h"
#include "sluice/err.h"

#define MAX_PARTITIONS 10000   /* per topic: bounds a create request and the files it makes */
#define MAINT_TICK_MS 1000     /* flush.ms and segment.ms are checked at least this often */
#define FORMAT_VERSION 1       /* of the data directory, in meta.properties */
#define PID_BLOCK 1000         /* producer ids reserved per metadata record */
#define JOIN_WAIT_MS 3000      /* a follower asked into the ISR that stops asking (dead) stops
                                * holding the HW back after this */

/* Latency histogram bounds in seconds (Prometheus "le" labels). */
static const double latency_bounds[] = {0.0001, 0.0005, 0.001, 0.005, 0.01,
                                        0.05,   0.1,    0.5,   1.0,   5.0};
#define NBOUNDS (sizeof(latency_bounds) / sizeof(latency_bounds[0]))

/* A follower's position as its leader sees it. */
typedef struct follower_pos {
    int64_t log_end;      /* -1: not known yet (no fetch since this node took the lead) */
    int64_t caught_up_ms; /* when it last fetched from the log end (monotonic) */
} follower_pos;

typedef struct partition {
    int32_t id;
    sl_partlog *log; /* NULL: no replica of it on this node */
    atomic_uint_fast64_t records_in, bytes_in, records_out, bytes_out;
    /* Replication, under state_lock. Outside a cluster: led here alone, at epoch 0. */
    pthread_mutex_t state_lock;
    sl_partition_state state;
    int64_t epoch_start;               /* leader: its log end when it took the lead */
    follower_pos pos[SL_MAX_REPLICAS]; /* leader: by index in state.replicas */
    int32_t isr_asked_version;         /* leader: the state an ISR change was asked on */
    int64_t isr_asked_ms;
    int32_t joining; /* leader: a follower asked into the ISR, counted for the HW already */
    int32_t checked_epoch; /* follower: log checked against this epoch's leader; -1: not yet */
    bool replicated;       /* from the cluster's metadata log (not a node-local topic) */
    int64_t hw_saved;      /* replicated: the HW last written to hw.checkpoint */
} partition;

typedef struct topic {
    char *name;
    uint64_t id; /* a cluster's topics: which incarnation of the name (0: none given) */
    int32_t npartitions;
    partition *parts;
    sl_topic_config config;
    struct topic *next;
} topic;

/* Long-poll waiters and the counter they wait on. */
typedef struct waitq {
    atomic_uint_fast64_t version;
    atomic_int waiters;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} waitq;

typedef struct request_stats {
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_ns;
    atomic_uint_fast64_t buckets[NBOUNDS];
} request_stats;

struct sl_broker {
    char *data_dir;
    int32_t node_id;
    int64_t retention_check_ms;
    int64_t cleaner_interval_ms;
    int lock_fd;

    /* Readers (produce, read, describe) hold it shared while they use a topic's partitions;
     * create, delete and alter take it exclusively to change the registry. */
    pthread_rwlock_t topics_lock;
    topic *topics;
    pthread_mutex_t admin_lock; /* one admin change at a time, in metadata log order */
    sl_metalog *meta;
    int64_t next_pid;      /* under admin_lock */
    int64_t pid_block_end; /* ids below this are recorded as handed out */

    /* Long-polls: readers wait for what they may see (the HW) to move, followers for the log
     * to grow, so neither is woken by the other's news. */
    waitq visible, appended;

    atomic_bool stopping;
    pthread_t maint_thread;
    pthread_mutex_t maint_lock;
    pthread_cond_t maint_cond;

    request_stats stats[2][SL_REQ_KINDS];
    atomic_uint_fast64_t native_requests[2]; /* over tcp://, over ipc:// */
    sl_txn_hook txn_hook;
    bool clustered;
    int64_t replica_lag_max_ms;
    /* Set once while serving already (the node's threads start after the listeners): read
     * only after the flag (acquire) says so. */
    sl_isr_hook isr_hook;
    sl_admin_hook admin_hook;
    atomic_bool isr_hook_set, admin_hook_set;
    /* Until when (monotonic ms) this node may lead: the metadata log was applied as far as the
     * controller's at a heartbeat the controller answered. */
    atomic_int_fast64_t lease_until;
};

static int advance_hw(sl_broker *b, struct partition *part);

/* ---- registry ---- */

static topic *find_topic(sl_broker *b, const char *name) {
    for (topic *t = b->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* Takes topic 'name' out of the registry and returns it (NULL when there is none). Topics lock
 * held exclusively (or not yet shared: at open). */
static topic *unlink_topic(sl_broker *b, const char *name) {
    for (topic **pp = &b->topics; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            topic *t = *pp;
            *pp = t->next;
            return t;
        }
    }
    return NULL;
}

static partition *find_partition(sl_broker *b, const char *name, int32_t p, int *status) {
    topic *t = find_topic(b, name);
    if (t == NULL || p < 0 || p >= t->npartitions) {
        *status = SL_ENOENT;
        return NULL;
    }
    return &t->parts[p];
}

/* This node leads the partition (outside a cluster it leads them all): its leader epoch. */
static bool leads(sl_broker *b, partition *part, int32_t *epoch) {
    if (!part->replicated) {
        *epoch = 0;
        return true;
    }
    /* Without a lease an old record may still name this node: it was cut off (or frozen)
     * long enough for the controller to have moved its partitions, or it is catching up. */
    pthread_mutex_lock(&part->state_lock);
    bool yes = part->log && part->state.leader == b->node_id &&
               sl_clock_mono_ms() < atomic_load(&b->lease_until);
    *epoch = part->state.epoch;
    pthread_mutex_unlock(&part->state_lock);
    return yes;
}

/* A partition for readers and writers: SL_ENOTLEADER when another node leads it. */
static partition *find_led(sl_broker *b, const char *name, int32_t p, int32_t *epoch,
                           int *status) {
    partition *part = find_partition(b, name, p, status);
    if (part && !leads(b, part, epoch)) {
        *status = SL_ENOTLEADER;
        return NULL;
    }
    return part;
}

static void partition_dir(const sl_broker *b, const char *name, int32_t p, char *out,
                          size_t len) {
    snprintf(out, len, "%s/%s-%d", b->data_dir, name, p);
}

static void topic_free(topic *t) {
    for (int32_t i = 0; i < t->npartitions; i++) {
        if (t->parts[i].log)
            sl_partlog_close(t->parts[i].log);
        pthread_mutex_destroy(&t->parts[i].state_lock);
    }
    free(t->parts);
    sl_topic_config_free(&t->config);
    free(t->name);
    free(t);
}

static topic *topic_new(const sl_broker *b, const char *name, int32_t npartitions,
                        const sl_topic_config *config) {
    topic *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->name = strdup(name);
    t->parts = calloc((size_t)npartitions, sizeof(*t->parts));
    if (t->name == NULL || t->parts == NULL ||
        (config && sl_topic_config_copy(config, &t->config))) {
        free(t->name);
        free(t->parts);
        free(t);
        return NULL;
    }
    t->npartitions = npartitions;
    for (int32_t i = 0; i < npartitions; i++) {
        partition *p = &t->parts[i];
        p->id = i;
        pthread_mutex_init(&p->state_lock, NULL);
        p->state = (sl_partition_state){.leader = b->node_id, .nreplicas = 1, .nisr = 1};
        p->state.replicas[0] = p->state.isr[0] = b->node_id;
        p->checked_epoch = -1;
    }
    return t;
}

static bool has_replica(const sl_partition_state *st, int32_t node) {
    for (int32_t i = 0; i < st->nreplicas; i++)
        if (st->replicas[i] == node)
            return true;
    return false;
}

static bool in_isr(const sl_partition_state *st, int32_t node) {
    for (int32_t i = 0; i < st->nisr; i++)
        if (st->isr[i] == node)
            return true;
    return false;
}

/* Opens the logs of the partitions of 't' with a replica here; 'fresh' removes what a deleted
 * namesake may have left. */
/* A replica's HW survives a restart in '<dir>/hw.checkpoint' (a log opens with its HW at the
 * LEO, which for a replica may hold records not committed). -1 when there is none. */
static int64_t read_hw_checkpoint(const char *dir) {
    char path[4200], text[32] = "";
    snprintf(path, sizeof(path), "%s/hw.checkpoint", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    if (fgets(text, sizeof(text), f) == NULL)
        text[0] = '\0';
    fclose(f);
    return text[0] ? strtoll(text, NULL, 10) : -1;
}

/* Writes the HW of each replicated partition whose HW moved. Topics lock held. */
static void save_hw_checkpoints(sl_broker *b) {
    for (topic *t = b->topics; t; t = t->next) {
        for (int32_t i = 0; i < t->npartitions; i++) {
            partition *part = &t->parts[i];
            if (part->log == NULL || !part->replicated)
                continue;
            sl_read_result r;
            sl_partlog_offsets(part->log, &r);
            if (r.high_watermark == part->hw_saved)
                continue;
            char dir[4096], path[4200], text[32];
            partition_dir(b, t->name, i, dir, sizeof(dir));
            snprintf(path, sizeof(path), "%s/hw.checkpoint", dir);
            int n = snprintf(text, sizeof(text), "%" PRId64 "\n", r.high_watermark);
            if (sl_fs_write_atomic(path, text, (size_t)n) == 0)
                part->hw_saved = r.high_watermark;
        }
    }
}

/* Which incarnation of its topic a partition directory holds (a cluster's topics): 0 when it
 * does not say. */
static uint64_t dir_topic_id(const char *dir) {
    char path[4200], text[32] = "";
    snprintf(path, sizeof(path), "%s/topic.id", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(text, sizeof(text), f) == NULL)
        text[0] = '\0';
    fclose(f);
    return strtoull(text, NULL, 10);
}

static int topic_open_logs(sl_broker *b, topic *t, bool fresh) {
    sl_logconf lc;
    sl_topic_config_to_log(&t->config, &lc);
    for (int32_t i = 0; i < t->npartitions; i++) {
        if (t->parts[i].log || !has_replica(&t->parts[i].state, b->node_id))
            continue;
        char dir[4096], name[512];
        partition_dir(b, t->name, i, dir, sizeof(dir));
        snprintf(name, sizeof(name), "%s-%d", t->name, i);
        if (fresh)
            sl_fs_remove_tree(dir);
        /* Replaying a cluster's metadata log passes through earlier incarnations of a name:
         * a directory a later one owns is not theirs to open (nor, then, to delete). */
        uint64_t owner = t->id ? dir_topic_id(dir) : 0;
        if (owner && owner != t->id)
            continue;
        int rc = sl_partlog_open(dir, name, &lc, &t->parts[i].log);
        if (rc) {
            sl_error("broker", "cannot open partition %s: %s", name, sl_strerror(rc));
            return rc;
        }
        if (t->id && owner == 0) {
            char path[4200], text[32];
            snprintf(path, sizeof(path), "%s/topic.id", dir);
            int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", t->id);
            if ((rc = sl_fs_write_atomic(path, text, (size_t)n)) != 0)
                return rc;
        }
    }
    return 0;
}

static void remove_partition_dir(sl_broker *b, const char *name, int32_t p) {
    char dir[4096], doomed[4200];
    partition_dir(b, name, p, dir, sizeof(dir));
    /* Rename first, so a crash mid-removal never leaves a half-deleted live directory. */
    snprintf(doomed, sizeof(doomed), "%s.deleted", dir);
    if (rename(dir, doomed) == 0)
        sl_fs_remove_tree(doomed);
    else
        sl_fs_remove_tree(dir);
}

static void remove_topic_dirs(sl_broker *b, const char *name, int32_t npartitions) {
    for (int32_t i = 0; i < npartitions; i++)
        remove_partition_dir(b, name, i);
}

/* ---- validation ---- */

static int check_topic_name(const char *name, char *errbuf, size_t errlen) {
    size_t n = strlen(name);
    if (n == 0 || n > SL_TOPIC_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(errbuf, errlen, "topic name must be 1 to %d characters, not \".\" or \"..\"",
                 SL_TOPIC_NAME_MAX);
        return SL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            snprintf(errbuf, errlen,
                     "topic name \"%s\" has '%c'; use letters, digits, '.', '_' and '-'", name, c);
            return SL_EINVAL;
        }
    }
    if (strncmp(name, "__", 2) == 0) {
        snprintf(errbuf, errlen, "topic names starting with \"__\" are reserved for Sluice");
        return SL_EINVAL;
    }
    return 0;
}

static int check_configs(const sl_config_kv *configs, size_t n, char *errbuf, size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        int rc = sl_topic_config_check(configs[i].key, configs[i].value, errbuf, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- admin ---- */

static int create_topic(sl_broker *b, const char *name, int32_t partitions,
                        const sl_config_kv *configs, size_t nconfigs, bool internal, char *errbuf,
                        size_t errlen) {
    int rc = internal ? 0 : check_topic_name(name, errbuf, errlen);
    if (rc)
        return rc;
    if (partitions < 1 || partitions > MAX_PARTITIONS) {
        snprintf(errbuf, errlen, "partitions must be between 1 and %d", MAX_PARTITIONS);
        return SL_EINVAL;
    }
    if ((rc = check_configs(configs, nconfigs, errbuf, errlen)) != 0)
        return rc;
    if (atomic_load(&b->stopping))
        return SL_ESTOPPED;
    sl_topic_config cfg = {0};
    for (size_t i = 0; i < nconfigs && rc == 0; i++)
        rc = sl_topic_config_set(&cfg, configs[i].key, configs[i].value);
    pthread_mutex_lock(&b->admin_lock);
    pthread_rwlock_rdlock(&b->topics_lock);
    bool exists = find_topic(b, name) != NULL;
    pthread_rwlock_unlock(&b->topics_lock);
    topic *t = NULL;
    if (rc == 0 && exists) {
        snprintf(errbuf, errlen, "topic \"%s\" already exists", name);
        rc = SL_EEXIST;
    }
    if (rc == 0 && (t = topic_new(b, name, partitions, &cfg)) == NULL)
        rc = SL_ENOMEM;
    sl_meta_record rec = {.type = SL_META_CREATE, .name = name, .partitions = partitions,
                          .configs = &cfg};
    if (rc == 0)
        rc = sl_metalog_append(b->meta, &rec);
    if (rc == 0 && (rc = topic_open_logs(b, t, true)) != 0) {
        /* The record is written but the files are not there: take the topic back out. */
        sl_meta_record undo = {.type = SL_META_DELETE, .name = name};
        sl_metalog_append(b->meta, &undo);
        remove_topic_dirs(b, name, partitions);
        snprintf(errbuf, errlen, "cannot create the partition directories of \"%s\"", name);
    }
    if (rc == 0) {
        pthread_rwlock_wrlock(&b->topics_lock);
        t->next = b->topics;
        b->topics = t;
        pthread_rwlock_unlock(&b->topics_lock);
        sl_info("broker", "created topic %s with %d partition%s", name, partitions,
                partitions == 1 ? "" : "s");
    } else if (t) {
        topic_free(t);
    }
    pthread_mutex_unlock(&b->admin_lock);
    sl_topic_config_free(&cfg);
    return rc;
}

static bool admin_hooked(sl_broker *b) {
    return atomic_load_explicit(&b->admin_hook_set, memory_order_acquire);
}

/* A node of a cluster before its admin hook is set. */
static int still_joining(char *errbuf, size_t errlen) {
    snprintf(errbuf, errlen, "this node is still joining its cluster: try again");
    return SL_ENOTLEADER;
}

int sl_broker_create_topic(sl_broker *b, const char *name, int32_t partitions,
                           int32_t replication, const sl_config_kv *configs, size_t nconfigs,
                           char *errbuf, size_t errlen) {
    if (admin_hooked(b))
        return b->admin_hook.create(b->admin_hook.arg, name, partitions, replication, configs,
                                    nconfigs, errbuf, errlen);
    if (b->clustered)
        return still_joining(errbuf, errlen);
    if (replication > 1) {
        snprintf(errbuf, errlen, "replication factor %d needs a cluster: this node is alone",
                 replication);
        return SL_EINVAL;
    }
    return create_topic(b, name, partitions, configs, nconfigs, false, errbuf, errlen);
}

void sl_broker_set_admin_hook(sl_broker *b, const sl_admin_hook *hook) {
    b->admin_hook = *hook;
    atomic_store_explicit(&b->admin_hook_set, true, memory_order_release);
}

/* A user topic on a node of a cluster: its admin goes through the metadata log. */
static bool replicated_topic(sl_broker *b, const char *name) {
    return b->clustered && strcmp(name, SL_TXN_STATE_TOPIC) != 0;
}

bool sl_broker_clustered(const sl_broker *b) {
    return b->clustered;
}

int sl_broker_ensure_internal_topic(sl_broker *b, const char *name, int32_t partitions,
                                    bool compacted, char *errbuf, size_t errlen) {
    int32_t n;
    if (sl_broker_partition_count(b, name, &n) == 0)
        return 0;
    /* Internal topics are the source of truth for what they hold: never expired by age;
     * compacted ones keep the latest record per key. */
    sl_config_kv configs[] = {{(char *)"retention.ms", (char *)"-1"},
                              {(char *)"cleanup.policy", (char *)"compact"}};
    if (replicated_topic(b, name)) {
        int rc = admin_hooked(b) ? b->admin_hook.create(b->admin_hook.arg, name, partitions,
                                                             SL_REPLICATION_INTERNAL, configs,
                                                             compacted ? 2 : 1, errbuf, errlen)
                                      : still_joining(errbuf, errlen);
        return rc == SL_EEXIST ? 0 : rc;
    }
    int rc = create_topic(b, name, partitions, configs, compacted ? 2 : 1, true, errbuf, errlen);
    return rc == SL_EEXIST ? 0 : rc;
}

int sl_broker_delete_topic(sl_broker *b, const char *name, char *errbuf, size_t errlen) {
    if (replicated_topic(b, name))
        return admin_hooked(b) ? b->admin_hook.remove(b->admin_hook.arg, name, errbuf, errlen)
                                    : still_joining(errbuf, errlen);
    pthread_mutex_lock(&b->admin_lock);
    pthread_rwlock_rdlock(&b->topics_lock);
    bool exists = find_topic(b, name) != NULL;
    pthread_rwlock_unlock(&b->topics_lock);
    int rc = 0;
    if (!exists) {
        snprintf(errbuf, errlen, "topic \"%s\" does not exist", name);
        rc = SL_ENOENT;
    }
    sl_meta_record rec = {.type = SL_META_DELETE, .name = name};
    if (rc == 0)
        rc = sl_metalog_append(b->meta, &rec);
    topic *t = NULL;
    if (rc == 0) {
        pthread_rwlock_wrlock(&b->topics_lock);
        t = unlink_topic(b, name);
        pthread_rwlock_unlock(&b->topics_lock);
    }
    if (t) {
        int32_t n = t->npartitions;
        topic_free(t);
        remove_topic_dirs(b, name, n);
        sl_info("broker", "deleted topic %s and its %d partition%s", name, n, n == 1 ? "" : "s");
    }
    pthread_mutex_unlock(&b->admin_lock);
    return rc;
}

/* Gives 't' the configs in '*cfg' (which gets the old ones) and its logs the settings. Topics
 * lock held exclusively. */
static void swap_config(topic *t, sl_topic_config *cfg) {
    sl_logconf lc;
    sl_topic_config_to_log(cfg, &lc);
    sl_topic_config old = t->config;
    t->config = *cfg;
    *cfg = old;
    for (int32_t i = 0; i < t->npartitions; i++)
        if (t->parts[i].log)
            sl_partlog_set_conf(t->parts[i].log, &lc);
}

int sl_broker_alter_topic(sl_broker *b, const char *name, const sl_config_kv *configs,
                          size_t nconfigs, char *errbuf, size_t errlen) {
    if (replicated_topic(b, name))
        return admin_hooked(b) ? b->admin_hook.alter(b->admin_hook.arg, name, configs,
                                                         nconfigs, errbuf, errlen)
                                   : still_joining(errbuf, errlen);
    int rc = check_configs(configs, nconfigs, errbuf, errlen);
    if (rc)
        return rc;
    pthread_mutex_lock(&b->admin_lock);
    pthread_rwlock_rdlock(&b->topics_lock);
    topic *t = find_topic(b, name);
    sl_topic_config cfg = {0};
    if (t == NULL) {
        snprintf(errbuf, errlen, "topic \"%s\" does not exist", name);
        rc = SL_ENOENT;
    } else {
        /* Only the admin lock holder changes t->config, so reading it here is safe. */
        rc = sl_topic_config_copy(&t->config, &cfg);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    for (size_t i = 0; i < nconfigs && rc == 0; i++)
        rc = sl_topic_config_set(&cfg, configs[i].key, configs[i].value);
    sl_meta_record rec = {.type = SL_META_CONFIG, .name = name, .configs = &cfg};
    if (rc == 0)
        rc = sl_metalog_append(b->meta, &rec);
    if (rc == 0) {
        pthread_rwlock_wrlock(&b->topics_lock);
        swap_config(t, &cfg);
        pthread_rwlock_unlock(&b->topics_lock);
        for (size_t i = 0; i < nconfigs; i++)
            sl_info("broker", "topic %s: %s set to %s", name, configs[i].key, configs[i].value);
    }
    sl_topic_config_free(&cfg);
    pthread_mutex_unlock(&b->admin_lock);
    return rc;
}

int sl_broker_describe_topic(sl_broker *b, const char *name, sl_topic_desc *out) {
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&b->topics_lock);
    topic *t = find_topic(b, name);
    int rc = t ? 0 : SL_ENOENT;
    if (rc == 0) {
        size_t nk = sl_topic_config_key_count();
        out->name = strdup(t->name);
        out->npartitions = t->npartitions;
        out->partitions = calloc((size_t)t->npartitions, sizeof(*out->partitions));
        out->configs = calloc(nk, sizeof(*out->configs));
        if (out->name == NULL || out->partitions == NULL || out->configs == NULL)
            rc = SL_ENOMEM;
        for (int32_t i = 0; rc == 0 && i < t->npartitions; i++) {
            partition *part = &t->parts[i];
            sl_read_result r = {-1, -1, -1, -1};
            if (part->log)
                sl_partlog_offsets(part->log, &r);
            sl_partition_desc *d = &out->partitions[i];
            d->partition = i;
            pthread_mutex_lock(&part->state_lock);
            d->state = part->state;
            pthread_mutex_unlock(&part->state_lock);
            d->leader = d->state.leader;
            d->start_offset = r.log_start_offset;
            d->end_offset = r.high_watermark;
            d->size_bytes = part->log ? sl_partlog_size_bytes(part->log) : -1;
        }
        for (size_t i = 0; rc == 0 && i < nk; i++) {
            const char *key = sl_topic_config_key(i);
            out->configs[i].key = strdup(key);
            out->configs[i].value = strdup(sl_topic_config_get(&t->config, key));
            out->nconfigs = i + 1;
            if (out->configs[i].key == NULL || out->configs[i].value == NULL)
                rc = SL_ENOMEM;
        }
    }
    pthread_rwlock_unlock(&b->topics_lock);
    if (rc && rc != SL_ENOENT)
        sl_topic_desc_free(out);
    return rc;
}

void sl_topic_desc_free(sl_topic_desc *d) {
    for (size_t i = 0; i < d->nconfigs; i++) {
        free(d->configs[i].key);
        free(d->configs[i].value);
    }
    free(d->configs);
    free(d->partitions);
    free(d->name);
    memset(d, 0, sizeof(*d));
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sl_broker_list_topics(sl_broker *b, bool internal, char ***names, size_t *count) {
    pthread_rwlock_rdlock(&b->topics_lock);
    size_t n = 0;
    for (topic *t = b->topics; t; t = t->next)
        n++;
    char **v = calloc(n ? n : 1, sizeof(*v));
    size_t k = 0;
    int rc = v ? 0 : SL_ENOMEM;
    for (topic *t = b->topics; rc == 0 && t; t = t->next) {
        if (!internal && strncmp(t->name, "__", 2) == 0)
            continue;
        if ((v[k] = strdup(t->name)) == NULL)
            rc = SL_ENOMEM;
        else
            k++;
    }
    pthread_rwlock_unlock(&b->topics_lock);
    if (rc) {
        sl_broker_free_names(v, k);
        return rc;
    }
    qsort(v, k, sizeof(*v), cmp_names);
    *names = v;
    *count = k;
    return 0;
}

void sl_broker_free_names(char **names, size_t count) {
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

int sl_broker_partition_count(sl_broker *b, const char *name, int32_t *count) {
    pthread_rwlock_rdlock(&b->topics_lock);
    topic *t = find_topic(b, name);
    if (t)
        *count = t->npartitions;
    pthread_rwlock_unlock(&b->topics_lock);
    return t ? 0 : SL_ENOENT;
}

int sl_broker_init_producer_id(sl_broker *b, int64_t *producer_id, int16_t *epoch) {
    int rc = 0;
    pthread_mutex_lock(&b->admin_lock);
    if (b->next_pid >= b->pid_block_end) {
        sl_meta_record rec = {.type = SL_META_PIDS, .name = "producer-ids",
                              .pid_end = b->next_pid + PID_BLOCK};
        rc = sl_metalog_append(b->meta, &rec);
        if (rc == 0)
            b->pid_block_end = rec.pid_end;
    }
    if (rc == 0) {
        /* Blocks come from this node's own log: in a cluster the node id goes in the high
         * bits, or two nodes would hand out the same id, and one producer's batches would pass
         * for another's retries (acknowledged as duplicates, never written). */
        *producer_id = b->clustered ? (int64_t)b->node_id << 40 | b->next_pid : b->next_pid;
        b->next_pid++;
        *epoch = 0;
    }
    pthread_mutex_unlock(&b->admin_lock);
    return rc;
}

/* ---- data ---- */

static void waitq_signal(waitq *q) {
    atomic_fetch_add(&q->version, 1);
    if (atomic_load(&q->waiters) > 0) {
        pthread_mutex_lock(&q->lock);
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
    }
}

static void waitq_wait(sl_broker *b, waitq *q, uint64_t version, int64_t deadline_mono_ms) {
    pthread_mutex_lock(&q->lock);
    atomic_fetch_add(&q->waiters, 1);
    while (atomic_load(&q->version) == version && !atomic_load(&b->stopping)) {
        int64_t left = deadline_mono_ms - sl_clock_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts = sl_clock_deadline(left);
        pthread_cond_timedwait(&q->cond, &q->lock, &ts);
    }
    atomic_fetch_sub(&q->waiters, 1);
    pthread_mutex_unlock(&q->lock);
}

/* Anything changed (a topic, a partition's state): every waiter looks again. */
static void signal_data(sl_broker *b) {
    waitq_signal(&b->visible);
    waitq_signal(&b->appended);
}

/* An append: followers look; readers too when the HW moved with it. */
static void signal_append(sl_broker *b, bool hw_moved) {
    waitq_signal(&b->appended);
    if (hw_moved)
        waitq_signal(&b->visible);
}

/* A topic whose compression.type names a codec stores every batch with it, as Kafka does: the
 * batches of 'data' that use another codec are rewritten into 'out'. Per-record work, paid only
 * by such topics. Returns 1 when 'out' holds the batches to append instead of 'data'. */
static int force_codec(int codec, const uint8_t *data, size_t len, sl_buf *out) {
    bool differs = false;
    for (size_t pos = 0; pos < len && !differs;) {
        size_t total = sl_batch_total_size(data + pos, len - pos);
        differs = (int)sl_batch_codec(data + pos) != codec;
        pos += total;
    }
    if (!differs)
        return 0;
    sl_buf scratch = SL_BUF_INIT;
    int rc = 0;
    for (size_t pos = 0; rc == 0 && pos < len;) {
        size_t total = sl_batch_total_size(data + pos, len - pos);
        rc = sl_batch_recompress(data + pos, total, (enum sl_codec)codec, out, &scratch);
        pos += total;
    }
    sl_buf_free(&scratch);
    return rc ? rc : 1;
}

/* A transactional batch is first shown to the coordinator, which may refuse it and holds its
 * lock until hook_done; asked before the registry lock, as the coordinator takes that lock
 * itself while it holds its own. 1: hooked. */
static int hook_check(sl_broker *b, const char *topic_name, int32_t p, const uint8_t *data,
                      size_t len, char *errbuf, size_t errlen) {
    if (len < SL_BATCH_HEADER_SIZE ||
        !(sl_be16_get(data + SL_BATCH_OFF_ATTRIBUTES) & SL_BATCH_ATTR_TRANSACTIONAL) ||
        (sl_be16_get(data + SL_BATCH_OFF_ATTRIBUTES) & SL_BATCH_ATTR_CONTROL))
        return 0; /* not transactional (or malformed, or a control batch: validate refuses) */
    if (b->txn_hook.check == NULL) {
        snprintf(errbuf, errlen, "this broker has no transaction coordinator");
        return SL_EUNSUPPORTED;
    }
    int64_t pid = (int64_t)sl_be64_get(data + SL_BATCH_OFF_PRODUCER_ID);
    int16_t epoch = (int16_t)sl_be16_get(data + SL_BATCH_OFF_PRODUCER_ID + 8);
    int rc = b->txn_hook.check(b->txn_hook.arg, topic_name, p, pid, epoch);
    if (rc) {
        b->txn_hook.done(b->txn_hook.arg);
        snprintf(errbuf, errlen, "transactional producer %" PRId64 " (epoch %d) may not write "
                 "to %s-%d: %s", pid, epoch, topic_name, p,
                 rc == SL_EFENCED  ? "a newer producer with its transactional id fenced it"
                 : rc == SL_ENOENT ? "no transactional id has this producer id (InitProducerId "
                                     "with a transactional id gives one)"
                 : rc == SL_EINVAL ? "its epoch is not the current one, or its transaction is "
                                     "committing"
                                   : sl_strerror(rc));
        if (rc == SL_ENOENT)
            rc = SL_EINVAL;
        return rc;
    }
    return 1;
}

int sl_broker_produce(sl_broker *b, const char *topic_name, int32_t p, uint8_t *data, size_t len,
                      sl_append_result *res, char *errbuf, size_t errlen) {
    if (atomic_load(&b->stopping))
        return SL_ESTOPPED;
    int hooked = hook_check(b, topic_name, p, data, len, errbuf, errlen);
    if (hooked < 0)
        return hooked;
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    int32_t leader_epoch = 0;
    partition *part = find_led(b, topic_name, p, &leader_epoch, &rc);
    int64_t records = 0;
    if (rc == SL_ENOTLEADER)
        snprintf(errbuf, errlen, "this node does not lead %s-%d", topic_name, p);
    else if (part == NULL)
        snprintf(errbuf, errlen, "topic \"%s\" or its partition %d does not exist", topic_name, p);
    else
        rc = sl_partlog_validate(part->log, data, len, &records, errbuf, errlen);
    sl_buf converted = SL_BUF_INIT;
    if (rc == 0) {
        int forced = sl_topic_config_forced_codec(&find_topic(b, topic_name)->config);
        int conv = forced >= 0 ? force_codec(forced, data, len, &converted) : 0;
        if (conv < 0) {
            snprintf(errbuf, errlen, "cannot recompress a batch for %s-%d: %s", topic_name, p,
                     sl_strerror(conv));
            rc = conv;
        } else if (conv == 1) {
            data = converted.data;
            len = converted.len;
        }
    }
    if (rc == 0)
        rc = sl_partlog_append(part->log, data, len, leader_epoch, sl_clock_wall_ms(), res);
    if (rc == 0)
        res->leader_epoch = leader_epoch;
    bool moved = false;
    if (rc == 0 && (rc = advance_hw(b, part)) > 0) {
        moved = true;
        rc = 0;
    }
    if (rc == 0 && !res->duplicate) {
        atomic_fetch_add(&part->records_in, (uint64_t)records);
        atomic_fetch_add(&part->bytes_in, len);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    if (hooked)
        b->txn_hook.done(b->txn_hook.arg);
    sl_buf_free(&converted);
    if (rc == 0)
        signal_append(b, moved);
    return rc;
}

static uint64_t count_records(const uint8_t *p, size_t len) {
    uint64_t n = 0;
    for (size_t pos = 0; pos + SL_BATCH_HEADER_SIZE <= len;) {
        size_t total = sl_batch_total_size(p + pos, len - pos);
        if (total == 0)
            break;
        n += sl_be32_get(p + pos + SL_BATCH_OFF_RECORDS_COUNT);
        pos += total;
    }
    return n;
}

/* A read for either kind of reader; a read_committed one ('aborted' not NULL) also gets the
 * aborted transactions overlapping what it read. */
static int read_partition(sl_broker *b, const char *topic_name, int32_t p, int64_t offset,
                          size_t max_bytes, sl_buf *out, sl_read_result *res,
                          sl_txn_range **aborted, size_t *naborted) {
    int rc = 0;
    memset(res, 0, sizeof(*res));
    pthread_rwlock_rdlock(&b->topics_lock);
    int32_t epoch;
    partition *part = find_led(b, topic_name, p, &epoch, &rc);
    if (part) {
        size_t before = out->len;
        rc = aborted ? sl_partlog_read_committed(part->log, offset, max_bytes, out, res, aborted,
                                                 naborted)
                     : sl_partlog_read(part->log, offset, max_bytes, out, res);
        if (rc == 0 && out->len > before) {
            atomic_fetch_add(&part->bytes_out, out->len - before);
            atomic_fetch_add(&part->records_out,
                             count_records(out->data + before, out->len - before));
        }
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_read(sl_broker *b, const char *topic_name, int32_t p, int64_t offset,
                   size_t max_bytes, sl_buf *out, sl_read_result *res) {
    return read_partition(b, topic_name, p, offset, max_bytes, out, res, NULL, NULL);
}

int sl_broker_read_committed(sl_broker *b, const char *topic_name, int32_t p, int64_t offset,
                             size_t max_bytes, sl_buf *out, sl_read_result *res,
                             sl_txn_range **aborted, size_t *naborted) {
    *aborted = NULL;
    *naborted = 0;
    return read_partition(b, topic_name, p, offset, max_bytes, out, res, aborted, naborted);
}

int sl_broker_replay(sl_broker *b, const char *topic, int32_t p,
                     void (*fn)(void *arg, const sl_record_view *rv), void *arg) {
    int64_t offset = 0, end = 0;
    int rc = sl_broker_list_offset(b, topic, p, -2, &offset);
    if (rc == 0)
        rc = sl_broker_list_offset(b, topic, p, -3, &end);
    sl_buf buf = SL_BUF_INIT, records = SL_BUF_INIT;
    while (rc == 0 && offset < end) {
        sl_read_result res;
        sl_txn_range *aborted;
        size_t naborted;
        buf.len = 0;
        rc = sl_broker_read_committed(b, topic, p, offset, 1 << 20, &buf, &res, &aborted,
                                      &naborted);
        if (rc || buf.len == 0) {
            free(aborted);
            break;
        }
        for (size_t pos = 0; rc == 0 && pos < buf.len;) {
            size_t total = sl_batch_total_size(buf.data + pos, buf.len - pos);
            sl_batch_header h;
            sl_record_iter it;
            sl_record_view rv;
            rc = sl_batch_header_parse(buf.data + pos, total, &h);
            bool skip = rc == 0 && ((h.attributes & SL_BATCH_ATTR_CONTROL) ||
                                    sl_txn_batch_aborted(aborted, naborted, &h));
            if (rc == 0 && !skip)
                rc = sl_record_iter_start_decompress(&it, buf.data + pos, total, &records,
                                                     64 << 20);
            while (rc == 0 && !skip && sl_record_iter_next(&it, &rv) == 1)
                if (rv.offset >= offset) /* the first batch may begin before it */
                    fn(arg, &rv);
            if (rc == 0)
                offset = h.base_offset + h.last_offset_delta + 1;
            pos += total;
        }
        free(aborted);
    }
    sl_buf_free(&buf);
    sl_buf_free(&records);
    return rc;
}

int sl_broker_write_marker(sl_broker *b, const char *topic_name, int32_t p, int64_t pid,
                           int16_t epoch, int type) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    int32_t leader_epoch;
    partition *part = find_led(b, topic_name, p, &leader_epoch, &rc);
    int64_t offset = -1;
    if (part)
        rc = sl_partlog_append_marker(part->log, pid, epoch, type, leader_epoch,
                                      sl_clock_wall_ms(), &offset);
    bool moved = false;
    if (rc == 0 && (rc = advance_hw(b, part)) > 0) {
        moved = true;
        rc = 0;
    }
    pthread_rwlock_unlock(&b->topics_lock);
    if (rc == 0)
        signal_append(b, moved);
    return rc;
}

int sl_broker_foreach_open_txn(sl_broker *b,
                               int (*fn)(void *arg, const char *topic, int32_t partition,
                                         const sl_txn_range *txn),
                               void *arg) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    for (topic *t = b->topics; t && rc == 0; t = t->next) {
        for (int32_t p = 0; p < t->npartitions && rc == 0; p++) {
            sl_txn_range *open;
            size_t n;
            int32_t epoch;
            if (!leads(b, &t->parts[p], &epoch))
                continue; /* its leader settles it */
            rc = sl_partlog_open_txns(t->parts[p].log, &open, &n);
            for (size_t i = 0; rc == 0 && i < n; i++)
                rc = fn(arg, t->name, p, &open[i]);
            free(open);
        }
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

void sl_broker_set_txn_hook(sl_broker *b, const sl_txn_hook *hook) {
    b->txn_hook = *hook;
}

/* ---- replication ---- */

/* Moves a led partition's high watermark to what every in-sync replica holds: at once when the
 * leader is alone in its ISR (and outside a cluster). 1 when it moved, 0 when not, or an error. */
static int advance_hw(sl_broker *b, partition *part) {
    int64_t now = sl_clock_mono_ms();
    sl_read_result r;
    sl_partlog_offsets(part->log, &r);
    int64_t hw = r.log_end_offset;
    pthread_mutex_lock(&part->state_lock);
    for (int32_t i = 0; i < part->state.nreplicas; i++) {
        int32_t id = part->state.replicas[i];
        /* A follower on its way into the ISR counts from the moment it is asked in (Kafka's
         * maximal ISR): once the controller adds it, it may be elected, so it must hold
         * everything the HW passed meanwhile. */
        bool counted = in_isr(&part->state, id) ||
                       (id == part->joining && now - part->isr_asked_ms < JOIN_WAIT_MS);
        if (id != b->node_id && counted && part->pos[i].log_end < hw)
            hw = part->pos[i].log_end; /* -1 (not known yet) holds it where it is */
    }
    pthread_mutex_unlock(&part->state_lock);
    if (hw <= r.high_watermark)
        return 0;
    int rc = sl_partlog_set_high_watermark(part->log, hw);
    return rc ? rc : 1;
}

void sl_broker_set_isr_hook(sl_broker *b, const sl_isr_hook *hook) {
    b->isr_hook = *hook;
    atomic_store_explicit(&b->isr_hook_set, true, memory_order_release);
}

void sl_broker_renew_lease(sl_broker *b, int64_t until_mono_ms) {
    int64_t before = atomic_exchange(&b->lease_until, until_mono_ms);
    if (before <= sl_clock_mono_ms()) {
        sl_info("broker", "the metadata log is applied as far as the controller's: leading the "
                "partitions it names this node leader of");
        signal_data(b);
    }
}

/* Asks the controller for 'proposed' unless the same state was asked about within a second.
 * State lock held; the hook queues, it does not block. */
static void ask_isr_change(sl_broker *b, const char *topic_name, partition *part,
                           const sl_partition_state *proposed) {
    int64_t now = sl_clock_mono_ms();
    if (!atomic_load_explicit(&b->isr_hook_set, memory_order_acquire) ||
        (part->isr_asked_version == part->state.version && now - part->isr_asked_ms < 1000))
        return;
    part->isr_asked_version = part->state.version;
    part->isr_asked_ms = now;
    b->isr_hook.propose(b->isr_hook.arg, topic_name, part->id, proposed);
}

int sl_broker_check_new_topic(const char *name, bool internal, int32_t partitions,
                              const sl_config_kv *configs, size_t nconfigs, char *errbuf,
                              size_t errlen) {
    int rc = internal ? (strncmp(name, "__", 2) == 0 ? 0 : SL_EINVAL)
                      : check_topic_name(name, errbuf, errlen);
    if (rc && internal)
        snprintf(errbuf, errlen, "internal topic \"%s\" must start with \"__\"", name);
    if (rc)
        return rc;
    if (partitions < 1 || partitions > MAX_PARTITIONS) {
        snprintf(errbuf, errlen, "partitions must be between 1 and %d", MAX_PARTITIONS);
        return SL_EINVAL;
    }
    return check_configs(configs, nconfigs, errbuf, errlen);
}

static int config_from_kvs(const sl_config_kv *configs, size_t n, sl_topic_config *cfg) {
    int rc = 0;
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = sl_topic_config_set(cfg, configs[i].key, configs[i].value);
    return rc;
}

int sl_broker_apply_topic(sl_broker *b, const char *name, uint64_t id, int32_t npartitions,
                          const sl_config_kv *configs, size_t nconfigs,
                          const sl_partition_state *states) {
    sl_topic_config cfg;
    int rc = config_from_kvs(configs, nconfigs, &cfg);
    pthread_mutex_lock(&b->admin_lock);
    pthread_rwlock_rdlock(&b->topics_lock);
    bool exists = find_topic(b, name) != NULL;
    pthread_rwlock_unlock(&b->topics_lock);
    topic *t = NULL;
    if (rc == 0 && !exists && (t = topic_new(b, name, npartitions, &cfg)) == NULL)
        rc = SL_ENOMEM;
    if (t)
        t->id = id;
    for (int32_t i = 0; t && i < npartitions; i++) {
        t->parts[i].state = states[i];
        t->parts[i].replicated = true;
        /* Followers' positions are unknown until they fetch; their lag counts from now. */
        for (int32_t k = 0; k < SL_MAX_REPLICAS; k++)
            t->parts[i].pos[k] = (follower_pos){-1, sl_clock_mono_ms()};
    }
    /* What is on disk is this topic's: the log replays its deletion before any namesake. */
    if (t && rc == 0)
        rc = topic_open_logs(b, t, false);
    for (int32_t i = 0; t && rc == 0 && i < npartitions; i++) {
        partition *part = &t->parts[i];
        if (part->log == NULL)
            continue;
        char dir[4096];
        partition_dir(b, name, i, dir, sizeof(dir));
        int64_t hw = read_hw_checkpoint(dir); /* none: nothing known committed yet */
        part->hw_saved = hw;
        rc = sl_partlog_restore_high_watermark(part->log, hw < 0 ? 0 : hw);
        if (rc == 0 && part->state.leader == b->node_id && (rc = advance_hw(b, part)) > 0)
            rc = 0; /* led alone: all of it is committed */
    }
    if (t && rc == 0) {
        pthread_rwlock_wrlock(&b->topics_lock);
        t->next = b->topics;
        b->topics = t;
        pthread_rwlock_unlock(&b->topics_lock);
        int hosted = 0;
        for (int32_t i = 0; i < npartitions; i++)
            hosted += t->parts[i].log != NULL;
        sl_info("broker", "topic %s: %d partition%s, %d with a replica here", name, npartitions,
                npartitions == 1 ? "" : "s", hosted);
    } else if (t) {
        topic_free(t);
    }
    pthread_mutex_unlock(&b->admin_lock);
    sl_topic_config_free(&cfg);
    if (rc == 0)
        signal_data(b);
    return rc;
}

int sl_broker_apply_delete(sl_broker *b, const char *name) {
    pthread_mutex_lock(&b->admin_lock);
    pthread_rwlock_wrlock(&b->topics_lock);
    topic *t = unlink_topic(b, name);
    pthread_rwlock_unlock(&b->topics_lock);
    if (t) {
        /* Only the directories this incarnation opened: a later one may own the others. */
        for (int32_t i = 0; i < t->npartitions; i++) {
            if (t->parts[i].log == NULL)
                continue;
            sl_partlog_close(t->parts[i].log);
            t->parts[i].log = NULL;
            remove_partition_dir(b, name, i);
        }
        topic_free(t);
        sl_info("broker", "deleted topic %s", name);
    }
    pthread_mutex_unlock(&b->admin_lock);
    signal_data(b); /* waiters on its partitions see it gone */
    return 0;
}

int sl_broker_apply_config(sl_broker *b, const char *name, const sl_config_kv *configs,
                           size_t nconfigs) {
    sl_topic_config cfg;
    int rc = config_from_kvs(configs, nconfigs, &cfg);
    pthread_mutex_lock(&b->admin_lock);
    pthread_rwlock_wrlock(&b->topics_lock);
    topic *t = find_topic(b, name);
    if (rc == 0 && t)
        swap_config(t, &cfg);
    pthread_rwlock_unlock(&b->topics_lock);
    pthread_mutex_unlock(&b->admin_lock);
    sl_topic_config_free(&cfg);
    return rc;
}

static const char *role_name(const sl_broker *b, const sl_partition_state *st) {
    return st->leader == b->node_id              ? "leader"
           : has_replica(st, b->node_id)         ? "follower"
                                                 : "no replica";
}

int sl_broker_apply_partition(sl_broker *b, const char *topic_name, int32_t p,
                              const sl_partition_state *st) {
    int rc = 0;
    /* Exclusively only when a new replica here opens its log: this runs on the quorum's
     * thread, which must not wait long (nor, the lock preferring writers, hold up readers). Only
     * this thread opens logs, so the answer holds until the lock is taken again. */
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_partition(b, topic_name, p, &rc);
    bool opens = part && part->log == NULL && has_replica(st, b->node_id);
    bool drops = part && part->log != NULL && !has_replica(st, b->node_id);
    pthread_rwlock_unlock(&b->topics_lock);
    if (opens || drops)
        pthread_rwlock_wrlock(&b->topics_lock);
    else
        pthread_rwlock_rdlock(&b->topics_lock);
    part = find_partition(b, topic_name, p, &rc);
    topic *t = part ? find_topic(b, topic_name) : NULL;
    if (part) {
        pthread_mutex_lock(&part->state_lock);
        bool new_leader = st->leader != part->state.leader || st->epoch != part->state.epoch;
        bool was_leader = part->state.leader == b->node_id;
        follower_pos old[SL_MAX_REPLICAS];
        sl_partition_state prev = part->state;
        memcpy(old, part->pos, sizeof(old));
        part->state = *st;
        part->joining = 0; /* in the ISR now, or asked again on its next fetch */
        for (int32_t i = 0; i < st->nreplicas; i++) {
            /* A follower's position survives a change of ISR, not a change of leader. */
            part->pos[i] = (follower_pos){-1, sl_clock_mono_ms()};
            for (int32_t j = 0; !new_leader && j < prev.nreplicas; j++)
                if (prev.replicas[j] == st->replicas[i])
                    part->pos[i] = old[j];
        }
        pthread_mutex_unlock(&part->state_lock);
        if (part->log == NULL && has_replica(st, b->node_id))
            rc = topic_open_logs(b, t, false);
        if (drops && part->log) {
            /* Moved away (cluster rebalance): its copy here is nobody's now. */
            sl_partlog_close(part->log);
            part->log = NULL;
            remove_partition_dir(b, topic_name, p);
            sl_info("broker", "%s-%d: its replica moved away from this node: removed", topic_name,
                    p);
        }
        if (rc == 0 && part->log && new_leader) {
            sl_read_result r;
            sl_partlog_offsets(part->log, &r);
            pthread_mutex_lock(&part->state_lock);
            part->epoch_start = r.log_end_offset;
            part->checked_epoch = -1;
            pthread_mutex_unlock(&part->state_lock);
            if (st->leader == b->node_id || was_leader)
                sl_info("broker", "%s-%d: %s at epoch %d (log end %" PRId64 ", high watermark "
                        "%" PRId64 ")", topic_name, p, role_name(b, st), st->epoch,
                        r.log_end_offset, r.high_watermark);
        }
        if (rc == 0 && part->log && st->leader == b->node_id && (rc = advance_hw(b, part)) > 0)
            rc = 0; /* a smaller ISR let it move */
    }
    pthread_rwlock_unlock(&b->topics_lock);
    signal_data(b); /* acks=all waiters and follower fetches look again */
    return rc == SL_ENOENT ? 0 : rc;
}

int sl_broker_partition_state(sl_broker *b, const char *topic_name, int32_t p,
                              sl_partition_state *out) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_partition(b, topic_name, p, &rc);
    if (part) {
        pthread_mutex_lock(&part->state_lock);
        *out = part->state;
        pthread_mutex_unlock(&part->state_lock);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_check_insync(sl_broker *b, const char *topic_name, int32_t p) {
    int rc = 0;
    int32_t epoch;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_led(b, topic_name, p, &epoch, &rc);
    if (part) {
        int32_t min = sl_topic_config_min_insync(&find_topic(b, topic_name)->config);
        pthread_mutex_lock(&part->state_lock);
        if (part->state.nisr < min)
            rc = SL_ENOTENOUGHREPLICAS;
        pthread_mutex_unlock(&part->state_lock);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_wait_replicated(sl_broker *b, const char *topic_name, int32_t p, int64_t offset,
                              int32_t leader_epoch, int64_t deadline_mono_ms) {
    for (;;) {
        uint64_t version = sl_broker_data_version(b);
        int rc = 0;
        int32_t epoch, nisr = 0, min_insync = 1;
        pthread_rwlock_rdlock(&b->topics_lock);
        partition *part = find_led(b, topic_name, p, &epoch, &rc);
        sl_read_result r;
        if (part) {
            sl_partlog_offsets(part->log, &r);
            min_insync = sl_topic_config_min_insync(&find_topic(b, topic_name)->config);
            pthread_mutex_lock(&part->state_lock);
            nisr = part->state.nisr;
            pthread_mutex_unlock(&part->state_lock);
        }
        pthread_rwlock_unlock(&b->topics_lock);
        /* Led again after losing the lead, the record may have been cut meanwhile: the
         * offset now holds another. */
        if (rc == 0 && epoch != leader_epoch)
            rc = SL_ENOTLEADER;
        if (rc)
            return rc;
        if (r.high_watermark > offset) /* committed, but by fewer copies than asked? */
            return nisr < min_insync ? SL_ENOTENOUGHREPLICAS : 0;
        if (atomic_load(&b->stopping))
            return SL_ESTOPPED;
        if (sl_clock_mono_ms() >= deadline_mono_ms)
            return SL_ETIMEDOUT;
        sl_broker_wait_for_data(b, version, deadline_mono_ms);
    }
}

int sl_broker_replica_hw(sl_broker *b, const char *topic_name, int32_t p, int64_t *hw) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_partition(b, topic_name, p, &rc);
    sl_read_result r;
    if (part && part->log)
        sl_partlog_offsets(part->log, &r);
    else if (part)
        rc = SL_ENOENT;
    pthread_rwlock_unlock(&b->topics_lock);
    if (rc == 0)
        *hw = r.high_watermark;
    return rc;
}

int sl_broker_led_offsets(sl_broker *b, const char *topic_name, int32_t p, int32_t *epoch,
                          sl_read_result *offsets) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_led(b, topic_name, p, epoch, &rc);
    if (part)
        sl_partlog_offsets(part->log, offsets);
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_replica_fetch(sl_broker *b, const char *topic_name, int32_t p, int32_t replica,
                            int32_t epoch, int64_t offset, int32_t last_epoch, size_t max_bytes,
                            sl_buf *out, sl_read_result *res, int32_t *diverging_epoch,
                            int64_t *diverging_end) {
    int rc = 0;
    int32_t leader_epoch;
    *diverging_epoch = -1;
    *diverging_end = -1;
    memset(res, 0, sizeof(*res));
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_led(b, topic_name, p, &leader_epoch, &rc);
    if (part && epoch != leader_epoch)
        rc = epoch > leader_epoch ? SL_ENOTLEADER : SL_EFENCED;
    if (rc == 0) {
        /* A follower past this log's end holds records this leader does not (it lost a tail
         * in a crash, say): it must check its log, whatever it believes. */
        sl_read_result r;
        sl_partlog_offsets(part->log, &r);
        if (offset > r.log_end_offset && last_epoch < 0)
            last_epoch = INT32_MAX;
    }
    if (rc == 0 && last_epoch >= 0) {
        int32_t found;
        int64_t end;
        rc = sl_partlog_epoch_end(part->log, last_epoch, &found, &end);
        if (rc == 0 && (found != last_epoch || end < offset)) {
            *diverging_epoch = found;
            *diverging_end = end;
            sl_partlog_offsets(part->log, res);
            pthread_rwlock_unlock(&b->topics_lock);
            return 0;
        }
    }
    if (rc == 0) {
        sl_read_result r;
        sl_partlog_offsets(part->log, &r);
        int64_t now = sl_clock_mono_ms();
        pthread_mutex_lock(&part->state_lock);
        for (int32_t i = 0; i < part->state.nreplicas; i++) {
            if (part->state.replicas[i] != replica)
                continue;
            part->pos[i].log_end = offset;
            if (offset >= r.log_end_offset)
                part->pos[i].caught_up_ms = now;
            /* Back in sync once it holds everything committed, this epoch's start included. */
            if (!in_isr(&part->state, replica) && offset >= r.high_watermark &&
                offset >= part->epoch_start && part->state.nisr < SL_MAX_REPLICAS) {
                sl_partition_state proposed = part->state;
                proposed.isr[proposed.nisr++] = replica;
                part->joining = replica;
                ask_isr_change(b, topic_name, part, &proposed);
            }
        }
        pthread_mutex_unlock(&part->state_lock);
        rc = advance_hw(b, part);
    }
    bool moved = rc > 0;
    if (rc >= 0)
        rc = sl_partlog_read_replica(part->log, offset, max_bytes, out, res);
    pthread_rwlock_unlock(&b->topics_lock);
    /* Only a move wakes anyone: the follower's own long-poll waits on the same signal. */
    if (moved) /* acks=all waiters and readers at the high watermark look */
        waitq_signal(&b->visible);
    return rc;
}

/* The ISR's laggards: a follower that has not fetched up to the log end for longer than
 * replica_lag_max_ms leaves the ISR, so acks=all writes do not wait on it. Topics lock held. */
static void shrink_isrs(sl_broker *b) {
    int64_t now = sl_clock_mono_ms();
    for (topic *t = b->topics; t; t = t->next) {
        for (int32_t i = 0; i < t->npartitions; i++) {
            partition *part = &t->parts[i];
            if (part->log == NULL)
                continue;
            sl_read_result r;
            sl_partlog_offsets(part->log, &r);
            pthread_mutex_lock(&part->state_lock);
            sl_partition_state proposed = part->state;
            if (proposed.leader == b->node_id) {
                proposed.nisr = 0;
                for (int32_t k = 0; k < part->state.nreplicas; k++) {
                    int32_t id = part->state.replicas[k];
                    bool lagging = id != b->node_id && part->pos[k].log_end < r.log_end_offset &&
                                   now - part->pos[k].caught_up_ms > b->replica_lag_max_ms;
                    if (in_isr(&part->state, id) && !lagging)
                        proposed.isr[proposed.nisr++] = id;
                }
                if (proposed.nisr < part->state.nisr) {
                    sl_warn("broker", "%s-%d: a follower is more than %" PRId64 " ms behind: "
                            "asking to take it out of the ISR", t->name, i,
                            b->replica_lag_max_ms);
                    ask_isr_change(b, t->name, part, &proposed);
                }
            }
            pthread_mutex_unlock(&part->state_lock);
        }
    }
}

int sl_broker_followed(sl_broker *b, int32_t leader, sl_followed **out, size_t *n) {
    size_t cap = 0, k = 0;
    sl_followed *v = NULL;
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    for (topic *t = b->topics; t && rc == 0; t = t->next) {
        for (int32_t i = 0; i < t->npartitions && rc == 0; i++) {
            partition *part = &t->parts[i];
            if (part->log == NULL)
                continue;
            pthread_mutex_lock(&part->state_lock);
            bool mine = part->state.leader == leader && leader != b->node_id &&
                        has_replica(&part->state, b->node_id); /* not a replica moved away */
            sl_followed f = {.partition = i, .epoch = part->state.epoch,
                             .checked = part->checked_epoch == part->state.epoch};
            pthread_mutex_unlock(&part->state_lock);
            if (!mine)
                continue;
            if (k == cap) {
                cap = cap ? cap * 2 : 16;
                sl_followed *nv = realloc(v, cap * sizeof(*nv));
                if (nv == NULL) {
                    rc = SL_ENOMEM;
                    break;
                }
                v = nv;
            }
            snprintf(f.topic, sizeof(f.topic), "%s", t->name);
            sl_read_result r;
            sl_partlog_offsets(part->log, &r);
            f.log_end = r.log_end_offset;
            int64_t end;
            f.last_epoch = -1; /* only a check needs it */
            if (!f.checked && sl_partlog_epoch_end(part->log, INT32_MAX, &f.last_epoch, &end))
                f.last_epoch = -1;
            v[k++] = f;
        }
    }
    pthread_rwlock_unlock(&b->topics_lock);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

/* A partition this node follows at 'epoch', or NULL with SL_EFENCED. Topics lock held. */
static partition *find_followed(sl_broker *b, const char *topic_name, int32_t p, int32_t epoch,
                                int *status) {
    partition *part = find_partition(b, topic_name, p, status);
    if (part == NULL)
        return NULL;
    pthread_mutex_lock(&part->state_lock);
    bool ok = part->log && part->state.epoch == epoch && part->state.leader != b->node_id;
    pthread_mutex_unlock(&part->state_lock);
    if (!ok)
        *status = SL_EFENCED;
    return ok ? part : NULL;
}

int sl_broker_replica_append(sl_broker *b, const char *topic_name, int32_t p, int32_t epoch,
                             const uint8_t *data, size_t len, int64_t leader_hw) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_followed(b, topic_name, p, epoch, &rc);
    if (part && len > 0)
        rc = sl_partlog_append_replica(part->log, data, len, sl_clock_wall_ms());
    if (part && rc == 0) {
        sl_read_result r;
        sl_partlog_offsets(part->log, &r);
        int64_t hw = leader_hw < r.log_end_offset ? leader_hw : r.log_end_offset;
        if (hw > r.high_watermark)
            rc = sl_partlog_set_high_watermark(part->log, hw);
        if (len > 0) {
            atomic_fetch_add(&part->records_in, count_records(data, len));
            atomic_fetch_add(&part->bytes_in, len);
        }
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

/* A partition this node follows at 'epoch', with its offsets; the topics lock is held (read)
 * when this returns, found or not. */
static partition *lock_followed(sl_broker *b, const char *topic_name, int32_t p, int32_t epoch,
                                sl_read_result *r, int *rc) {
    *rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_followed(b, topic_name, p, epoch, rc);
    if (part)
        sl_partlog_offsets(part->log, r);
    return part;
}

int sl_broker_replica_truncate(sl_broker *b, const char *topic_name, int32_t p, int32_t epoch,
                               int64_t offset) {
    int rc;
    sl_read_result r;
    partition *part = lock_followed(b, topic_name, p, epoch, &r, &rc);
    if (part && offset < r.log_end_offset) {
        sl_warn("broker", "%s-%d: cutting %" PRId64 " offsets from %" PRId64 " that the leader "
                "of epoch %d does not have", topic_name, p, r.log_end_offset - offset, offset,
                epoch);
        rc = sl_partlog_truncate(part->log, offset < r.log_start_offset ? r.log_start_offset
                                                                         : offset);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_replica_reset(sl_broker *b, const char *topic_name, int32_t p, int32_t epoch,
                            int64_t log_start) {
    int rc;
    sl_read_result r;
    partition *part = lock_followed(b, topic_name, p, epoch, &r, &rc);
    if (part && r.log_end_offset < log_start) {
        sl_warn("broker", "%s-%d: the leader's log now starts at %" PRId64 ", past this "
                "replica's end %" PRId64 ": starting over from there", topic_name, p, log_start,
                r.log_end_offset);
        rc = sl_partlog_reset(part->log, log_start);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_replica_checked(sl_broker *b, const char *topic_name, int32_t p, int32_t epoch) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_followed(b, topic_name, p, epoch, &rc);
    if (part) {
        pthread_mutex_lock(&part->state_lock);
        part->checked_epoch = epoch;
        pthread_mutex_unlock(&part->state_lock);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_epoch_end(sl_broker *b, const char *topic_name, int32_t p, int32_t epoch,
                        int32_t *found_epoch, int64_t *end_offset) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    partition *part = find_partition(b, topic_name, p, &rc);
    if (part && part->log == NULL)
        rc = SL_ENOTLEADER;
    if (rc == 0)
        rc = sl_partlog_epoch_end(part->log, epoch, found_epoch, end_offset);
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_list_offset(sl_broker *b, const char *topic_name, int32_t p, int64_t when,
                          int64_t *offset) {
    int rc = 0;
    pthread_rwlock_rdlock(&b->topics_lock);
    int32_t epoch;
    partition *part = find_led(b, topic_name, p, &epoch, &rc);
    if (part) {
        sl_read_result r;
        sl_partlog_offsets(part->log, &r);
        if (when == -1)
            *offset = r.high_watermark;
        else if (when == -3)
            *offset = r.last_stable_offset;
        else if (when == -2)
            *offset = r.log_start_offset;
        else if (when < 0)
            rc = SL_EINVAL;
        else
            rc = sl_partlog_offset_for_time(part->log, when, offset);
    }
    pthread_rwlock_unlock(&b->topics_lock);
    return rc;
}

int sl_broker_record_timestamp(sl_broker *b, const char *topic, int32_t partition, int64_t offset,
                               int64_t *timestamp) {
    sl_buf buf = SL_BUF_INIT, records = SL_BUF_INIT;
    sl_read_result res;
    /* The first batch at 'offset' is all that is needed: read little. */
    int rc = sl_broker_read(b, topic, partition, offset, 1, &buf, &res);
    if (rc == 0 && buf.len == 0)
        rc = SL_ERANGE;
    sl_record_iter it;
    sl_record_view rv;
    if (rc == 0)
        rc = sl_record_iter_start_decompress(&it, buf.data, buf.len, &records, 256u << 20);
    if (rc == 0) {
        rc = SL_ERANGE;
        while (sl_record_iter_next(&it, &rv) == 1) {
            if (rv.offset >= offset) {
                *timestamp = rv.timestamp;
                rc = 0;
                break;
            }
        }
    }
    sl_buf_free(&buf);
    sl_buf_free(&records);
    return rc;
}

uint64_t sl_broker_data_version(sl_broker *b) {
    return atomic_load(&b->visible.version);
}

void sl_broker_wait_for_data(sl_broker *b, uint64_t version, int64_t deadline_mono_ms) {
    waitq_wait(b, &b->visible, version, deadline_mono_ms);
}

uint64_t sl_broker_log_version(sl_broker *b) {
    return atomic_load(&b->appended.version);
}

void sl_broker_wait_for_log(sl_broker *b, uint64_t version, int64_t deadline_mono_ms) {
    waitq_wait(b, &b->appended, version, deadline_mono_ms);
}

bool sl_broker_stopping(sl_broker *b) {
    return atomic_load(&b->stopping);
}

int32_t sl_broker_node_id(const sl_broker *b) {
    return b->node_id;
}

/* ---- observability ---- */

void sl_broker_observe(sl_broker *b, int protocol, enum sl_request_kind kind, int64_t ns) {
    request_stats *s = &b->stats[protocol == 1][kind];
    if (protocol != 1)
        atomic_fetch_add(&b->native_requests[protocol == 2], 1);
    atomic_fetch_add(&s->count, 1);
    atomic_fetch_add(&s->sum_ns, (uint64_t)ns);
    double secs = (double)ns / 1e9;
    for (size_t i = 0; i < NBOUNDS; i++) {
        if (secs <= latency_bounds[i]) {
            atomic_fetch_add(&s->buckets[i], 1);
            break;
        }
    }
}

#define APPEND(...)                                                                                \
    do {                                                                                           \
        char line_[1024];                                                                          \
        int n_ = snprintf(line_, sizeof(line_), __VA_ARGS__);                                      \
        if (n_ > 0 && sl_buf_append(out, line_, (size_t)n_ < sizeof(line_) ? (size_t)n_ : 0))    \
            return SL_ENOMEM;                                                                      \
    } while (0)

static const char *const kind_names[] = {"produce",  "fetch", "list_offsets",
                                         "metadata", "admin", "group"};
static const char *const proto_names[] = {"native", "kafka"};

static int metrics_partitions(sl_broker *b, sl_buf *out) {
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"sluice_partition_records_in_total", "counter", "Records appended to the partition."},
        {"sluice_partition_bytes_in_total", "counter", "Batch bytes appended to the partition."},
        {"sluice_partition_records_out_total", "counter", "Records sent to readers."},
        {"sluice_partition_bytes_out_total", "counter", "Batch bytes sent to readers."},
        {"sluice_partition_log_size_bytes", "gauge", "Bytes of the partition's segments."},
        {"sluice_partition_log_start_offset", "gauge", "First offset still held."},
        {"sluice_partition_high_watermark", "gauge", "Next offset to be written and read."},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        APPEND("# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name,
               fams[f].type);
        for (topic *t = b->topics; t; t = t->next) {
            for (int32_t i = 0; i < t->npartitions; i++) {
                partition *p = &t->parts[i];
                sl_read_result r;
                uint64_t v = 0;
                if (p->log == NULL)
                    continue;
                switch (f) {
                case 0: v = atomic_load(&p->records_in); break;
                case 1: v = atomic_load(&p->bytes_in); break;
                case 2: v = atomic_load(&p->records_out); break;
                case 3: v = atomic_load(&p->bytes_out); break;
                case 4: v = (uint64_t)sl_partlog_size_bytes(p->log); break;
                default:
                    sl_partlog_offsets(p->log, &r);
                    v = (uint64_t)(f == 5 ? r.log_start_offset : r.high_watermark);
                }
                APPEND("%s{topic=\"%s\",partition=\"%d\"} %" PRIu64 "\n", fams[f].name, t->name, i,
                       v);
            }
        }
    }
    return 0;
}

static int metrics_requests(sl_broker *b, sl_buf *out) {
    APPEND("# HELP sluice_native_requests_total Native protocol requests by transport (ipc: "
           "pipeline instances on this node).\n# TYPE sluice_native_requests_total counter\n");
    for (int t = 0; t < 2; t++)
        APPEND("sluice_native_requests_total{transport=\"%s\"} %" PRIu64 "\n", t ? "ipc" : "tcp",
               (uint64_t)atomic_load(&b->native_requests[t]));
    APPEND("# HELP sluice_request_duration_seconds Time to answer a request.\n"
           "# TYPE sluice_request_duration_seconds histogram\n");
    for (int pr = 0; pr < 2; pr++) {
        for (int k = 0; k < SL_REQ_KINDS; k++) {
            request_stats *s = &b->stats[pr][k];
            uint64_t count = atomic_load(&s->count), cum = 0;
            if (count == 0)
                continue;
            const char *lbl = kind_names[k], *pn = proto_names[pr];
            for (size_t i = 0; i < NBOUNDS; i++) {
                cum += atomic_load(&s->buckets[i]);
                APPEND("sluice_request_duration_seconds_bucket{protocol=\"%s\",request=\"%s\","
                       "le=\"%g\"} %" PRIu64 "\n",
                       pn, lbl, latency_bounds[i], cum);
            }
            APPEND("sluice_request_duration_seconds_bucket{protocol=\"%s\",request=\"%s\","
                   "le=\"+Inf\"} %" PRIu64 "\n",
                   pn, lbl, count);
            APPEND("sluice_request_duration_seconds_sum{protocol=\"%s\",request=\"%s\"} %.6f\n",
                   pn, lbl, (double)atomic_load(&s->sum_ns) / 1e9);
            APPEND("sluice_request_duration_seconds_count{protocol=\"%s\",request=\"%s\"} "
                   "%" PRIu64 "\n",
                   pn, lbl, count);
        }
    }
    return 0;
}

int sl_broker_metrics(sl_broker *b, sl_buf *out) {
    APPEND("# HELP sluice_up The broker is serving.\n# TYPE sluice_up gauge\nsluice_up 1\n");
    pthread_rwlock_rdlock(&b->topics_lock);
    int rc = metrics_partitions(b, out);
    pthread_rwlock_unlock(&b->topics_lock);
    if (rc == 0)
        rc = metrics_requests(b, out);
    return rc;
}

/* ---- maintenance: retention, flush.ms, segment.ms, compaction ---- */

/* Takes a reference to every partition of a compacted topic, so that a topic deletion during
 * the pass cannot free it. Topics lock held. */
static size_t collect_compacted(sl_broker *b, sl_partlog ***logs) {
    size_t n = 0, cap = 0;
    *logs = NULL;
    for (topic *t = b->topics; t; t = t->next) {
        if (!sl_topic_config_compacted(&t->config))
            continue;
        for (int32_t i = 0; i < t->npartitions; i++) {
            if (t->parts[i].log == NULL)
                continue;
            if (n == cap) {
                size_t c = cap ? cap * 2 : 16;
                sl_partlog **p = realloc(*logs, c * sizeof(*p));
                if (p == NULL)
                    return n; /* the rest waits for the next round */
                *logs = p;
                cap = c;
            }
            sl_partlog_ref(t->parts[i].log);
            (*logs)[n++] = t->parts[i].log;
        }
    }
    return n;
}

/* Compacts what was collected, without the topics lock: a long pass must not hold up topic
 * admin (nor, the lock preferring writers, every produce queued behind a waiting admin). */
static void run_cleaner(sl_broker *b, sl_partlog **logs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        sl_compact_stats st;
        if (!atomic_load(&b->stopping) &&
            sl_partlog_compact(logs[i], sl_clock_wall_ms(), &st) == 0 &&
            st.segments_rewritten > 0) {
            char line[256];
            sl_compact_stats_format(&st, line, sizeof(line));
            sl_info("broker", "%s: %s", sl_partlog_name(logs[i]), line);
        }
        sl_partlog_unref(logs[i]);
    }
    free(logs);
}

static void *maint_main(void *arg) {
    sl_broker *b = arg;
    int64_t tick = b->retention_check_ms < MAINT_TICK_MS ? b->retention_check_ms : MAINT_TICK_MS;
    if (b->cleaner_interval_ms < tick)
        tick = b->cleaner_interval_ms;
    int64_t next_retention = sl_clock_mono_ms() + b->retention_check_ms;
    int64_t next_clean = sl_clock_mono_ms() + b->cleaner_interval_ms;
    pthread_mutex_lock(&b->maint_lock);
    while (!atomic_load(&b->stopping)) {
        struct timespec ts = sl_clock_deadline(tick);
        pthread_cond_timedwait(&b->maint_cond, &b->maint_lock, &ts);
        if (atomic_load(&b->stopping))
            break;
        pthread_mutex_unlock(&b->maint_lock);
        int64_t now = sl_clock_wall_ms();
        bool retention = sl_clock_mono_ms() >= next_retention;
        if (retention)
            next_retention = sl_clock_mono_ms() + b->retention_check_ms;
        bool clean = sl_clock_mono_ms() >= next_clean;
        sl_partlog **logs = NULL;
        size_t nlogs = 0;
        pthread_rwlock_rdlock(&b->topics_lock);
        for (topic *t = b->topics; t; t = t->next) {
            for (int32_t i = 0; i < t->npartitions; i++) {
                if (t->parts[i].log == NULL)
                    continue;
                sl_partlog_flush_if_due(t->parts[i].log, now);
                sl_partlog_roll_if_due(t->parts[i].log, now);
                if (retention)
                    sl_partlog_enforce_retention(t->parts[i].log, now);
            }
        }
        if (b->clustered) {
            shrink_isrs(b);
            save_hw_checkpoints(b);
        }
        if (clean)
            nlogs = collect_compacted(b, &logs);
        pthread_rwlock_unlock(&b->topics_lock);
        if (clean) {
            run_cleaner(b, logs, nlogs);
            /* Counted from the end of a pass, so a long one is not followed by another at once. */
            next_clean = sl_clock_mono_ms() + b->cleaner_interval_ms;
        }
        pthread_mutex_lock(&b->maint_lock);
    }
    pthread_mutex_unlock(&b->maint_lock);
    return NULL;
}

/* ---- open and close ---- */

static int check_meta_properties(sl_broker *b) {
    char path[4200], buf[512];
    snprintf(path, sizeof(path), "%s/meta.properties", b->data_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        char text[256];
        int n = snprintf(text, sizeof(text),
                         "# Sluice data directory: do not edit\nversion=%d\nnode.id=%d\n",
                         FORMAT_VERSION, b->node_id);
        return sl_fs_write_atomic(path, text, (size_t)n);
    }
    int version = -1, node = -1;
    while (fgets(buf, sizeof(buf), f)) {
        sscanf(buf, "version=%d", &version);
        sscanf(buf, "node.id=%d", &node);
    }
    fclose(f);
    if (version != FORMAT_VERSION) {
        sl_error("broker", "%s: data directory format version %d is not %d", path, version,
                 FORMAT_VERSION);
        return SL_ECORRUPT;
    }
    if (node != b->node_id) {
        sl_error("broker", "%s: the data directory belongs to node %d, not node %d", path, node,
                 b->node_id);
        return SL_EINVAL;
    }
    return 0;
}

static int replay_apply(void *ctx, const sl_meta_record *rec) {
    sl_broker *b = ctx;
    topic *t = find_topic(b, rec->name);
    switch (rec->type) {
    case SL_META_CREATE:
        if (t)
            return 0; /* a repeated create changes nothing */
        if ((t = topic_new(b, rec->name, rec->partitions, rec->configs)) == NULL)
            return SL_ENOMEM;
        t->next = b->topics;
        b->topics = t;
        return 0;
    case SL_META_DELETE:
        if ((t = unlink_topic(b, rec->name)) != NULL)
            topic_free(t);
        return 0;
    case SL_META_PIDS:
        if (rec->pid_end > b->pid_block_end)
            b->pid_block_end = rec->pid_end;
        return 0;
    case SL_META_CONFIG:
        if (t && rec->configs) {
            sl_topic_config_free(&t->config);
            return sl_topic_config_copy(rec->configs, &t->config);
        }
        return 0;
    }
    return 0;
}

/* Removes what an interrupted topic deletion left behind. */
static void sweep_deleted_dirs(sl_broker *b) {
    DIR *d = opendir(b->data_dir);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 8 && strcmp(e->d_name + n - 8, ".deleted") == 0) {
            char path[4400];
            snprintf(path, sizeof(path), "%s/%s", b->data_dir, e->d_name);
            sl_fs_remove_tree(path);
        }
    }
    closedir(d);
}

int sl_broker_open(const sl_broker_conf *conf, sl_broker **out) {
    sl_broker *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return SL_ENOMEM;
    b->data_dir = strdup(conf->data_dir);
    b->node_id = conf->node_id;
    b->retention_check_ms = conf->retention_check_ms > 0 ? conf->retention_check_ms : 5000;
    b->cleaner_interval_ms = conf->cleaner_interval_ms > 0 ? conf->cleaner_interval_ms : 15000;
    b->clustered = conf->clustered;
    b->replica_lag_max_ms = conf->replica_lag_max_ms > 0 ? conf->replica_lag_max_ms : 10000;
    b->lock_fd = -1;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Admin changes must not starve behind a steady stream of produce and fetch requests. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&b->topics_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&b->admin_lock, NULL);
    pthread_mutex_init(&b->visible.lock, NULL);
    pthread_cond_init(&b->visible.cond, NULL);
    pthread_mutex_init(&b->appended.lock, NULL);
    pthread_cond_init(&b->appended.cond, NULL);
    pthread_mutex_init(&b->maint_lock, NULL);
    pthread_cond_init(&b->maint_cond, NULL);

    int rc = b->data_dir ? sl_fs_mkdirs(b->data_dir) : SL_ENOMEM;
    if (rc)
        sl_error("broker", "cannot create data directory %s: %s", conf->data_dir,
                 strerror(errno));
    if (rc == 0) {
        char lock_path[4200];
        snprintf(lock_path, sizeof(lock_path), "%s/.lock", b->data_dir);
        b->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (b->lock_fd < 0 || flock(b->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            sl_error("broker", "data directory %s is in use by another sluiced", b->data_dir);
            rc = SL_EEXIST;
        }
    }
    if (rc == 0)
        rc = check_meta_properties(b);
    if (rc == 0)
        sweep_deleted_dirs(b);
    if (rc == 0)
        rc = sl_metalog_open(b->data_dir, &b->meta);
    if (rc == 0)
        rc = sl_metalog_replay(b->meta, replay_apply, b);
    /* Ids of a block that was being handed out when the broker stopped are skipped, not reused. */
    b->next_pid = b->pid_block_end;
    size_t ntopics = 0, nparts = 0;
    for (topic *t = b->topics; rc == 0 && t; t = t->next) {
        rc = topic_open_logs(b, t, false);
        ntopics++;
        nparts += (size_t)t->npartitions;
    }
    if (rc == 0 && pthread_create(&b->maint_thread, NULL, maint_main, b) != 0)
        rc = SL_ENOMEM;
    if (rc) {
        atomic_store(&b->stopping, true);
        b->maint_thread = 0;
        sl_broker_close(b);
        return rc;
    }
    sl_info("broker", "node %d opened %s: %zu topic%s, %zu partition%s", b->node_id, b->data_dir,
            ntopics, ntopics == 1 ? "" : "s", nparts, nparts == 1 ? "" : "s");
    *out = b;
    return 0;
}

void sl_broker_shutdown(sl_broker *b) {
    atomic_store(&b->stopping, true);
    signal_data(b);
    pthread_mutex_lock(&b->maint_lock);
    pthread_cond_broadcast(&b->maint_cond);
    pthread_mutex_unlock(&b->maint_lock);
}

void sl_broker_close(sl_broker *b) {
    sl_broker_shutdown(b);
    if (b->maint_thread)
        pthread_join(b->maint_thread, NULL);
    while (b->topics) {
        topic *t = b->topics;
        b->topics = t->next;
        for (int32_t i = 0; i < t->npartitions; i++)
            if (t->parts[i].log)
                sl_partlog_flush(t->parts[i].log);
        topic_free(t);
    }
    sl_metalog_close(b->meta);
    if (b->lock_fd >= 0)
        close(b->lock_fd);
    pthread_rwlock_destroy(&b->topics_lock);
    pthread_mutex_destroy(&b->admin_lock);
    pthread_mutex_destroy(&b->visible.lock);
    pthread_cond_destroy(&b->visible.cond);
    pthread_mutex_destroy(&b->appended.lock);
    pthread_cond_destroy(&b->appended.cond);
    pthread_mutex_destroy(&b->maint_lock);
    pthread_cond_destroy(&b->maint_cond);
    free(b->data_dir);
    free(b);
}

/* Pipeline management over the client API only: nothing here needs more of the broker than a
 * producer, a consumer and the admin calls any tool has. */
#include "pipeline/admin.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

#define READ_TIMEOUT_MS 15000

static sl_conf *make_conf(const char *broker, const char *group, char *errbuf, size_t errlen) {
    sl_conf *c = sl_conf_new();
    if (c == NULL)
        return NULL;
    int rc = sl_conf_set(c, "bootstrap.servers", broker, errbuf, errlen);
    if (rc == 0)
        rc = sl_conf_set(c, "client.id", "sluice-pipeline-admin", errbuf, errlen);
    if (rc == 0 && group) {
        rc = sl_conf_set(c, "group.id", group, errbuf, errlen);
        if (rc == 0)
            rc = sl_conf_set(c, "enable.auto.commit", "false", errbuf, errlen);
    }
    if (rc) {
        sl_conf_destroy(c);
        return NULL;
    }
    return c;
}

static int open_client(const char *broker, sl_client **cl, char *errbuf, size_t errlen) {
    sl_conf *c = make_conf(broker, NULL, errbuf, errlen);
    if (c == NULL)
        return SL_EINVAL;
    int rc = sl_client_new(c, cl, errbuf, errlen);
    if (rc)
        sl_conf_destroy(c);
    return rc;
}

typedef void (*record_fn)(void *opaque, const sl_message *m);

/* Reads every partition of 'topic' from its start ('group' set: from the group's committed
 * offsets) to the end it had when the call began. 'ends' (may be NULL) receives the ends. */
static int read_to_end(const char *broker, const char *topic, const char *group, record_fn fn,
                       void *opaque, sl_consumer **keep, int64_t **ends_out, int32_t *nparts_out,
                       char *errbuf, size_t errlen) {
    sl_client *cl;
    int rc = open_client(broker, &cl, errbuf, errlen);
    if (rc)
        return rc;
    sl_topic_info *info;
    rc = sl_topic_describe(cl, topic, &info, errbuf, errlen);
    sl_client_destroy(cl);
    if (rc)
        return rc;
    int32_t np = info->npartitions;
    int64_t *ends = calloc((size_t)np, sizeof(*ends));
    bool *done = calloc((size_t)np, sizeof(*done));
    sl_conf *c = make_conf(broker, group, errbuf, errlen);
    sl_consumer *cons = NULL;
    rc = ends && done && c ? sl_consumer_new(c, &cons, errbuf, errlen) : SL_ENOMEM;
    if (rc && c)
        sl_conf_destroy(c);
    size_t left = 0;
    for (int32_t p = 0; rc == 0 && p < np; p++) {
        ends[p] = info->partitions[p].end_offset;
        int64_t from = SL_OFFSET_BEGINNING;
        if (group) {
            int64_t committed = -1;
            if ((rc = sl_consumer_assign(cons, topic, p, SL_OFFSET_BEGINNING)) == 0 &&
                (rc = sl_consumer_committed(cons, topic, p, &committed)) == 0 && committed >= 0)
                rc = sl_consumer_seek(cons, topic, p, committed);
            from = committed;
        } else {
            rc = sl_consumer_assign(cons, topic, p, from);
        }
        int64_t pos = 0;
        if (rc == 0 && sl_consumer_position(cons, topic, p, &pos) == 0 && pos >= ends[p])
            done[p] = true;
        else
            left++;
    }
    sl_topic_info_free(info);
    int64_t deadline = sl_clock_mono_ms() + READ_TIMEOUT_MS;
    while (rc == 0 && left > 0) {
        const sl_message *m;
        int prc = sl_consumer_poll(cons, 200, &m);
        if (prc == 0) {
            if (m->offset < ends[m->partition])
                fn(opaque, m);
            if (!done[m->partition] && m->offset + 1 >= ends[m->partition]) {
                done[m->partition] = true;
                left--;
            }
            continue;
        }
        /* Compaction leaves gaps: a partition is read when its position reaches its end. */
        for (int32_t p = 0; p < np; p++) {
            int64_t pos;
            if (!done[p] && sl_consumer_position(cons, topic, p, &pos) == 0 && pos >= ends[p]) {
                done[p] = true;
                left--;
            }
        }
        if (left && sl_clock_mono_ms() > deadline) {
            snprintf(errbuf, errlen, "timed out reading %s", topic);
            rc = SL_ETIMEDOUT;
        }
    }
    free(done);
    if (rc == 0 && ends_out) {
        *ends_out = ends;
        *nparts_out = np;
    } else {
        free(ends);
    }
    if (rc == 0 && keep)
        *keep = cons;
    else if (cons)
        sl_consumer_destroy(cons);
    return rc;
}

/* ---- latest record per key ---- */

typedef struct latest {
    const char *prefix;
    char **keys, **values;
    int64_t *offsets, *timestamps;
    char **files, **paused;
    size_t n, cap;
    bool failed;
} latest;

static char *dup_bytes(const void *p, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p ? p : "", n);
        s[n] = '\0';
    }
    return s;
}

static void keep_latest(void *opaque, const sl_message *m) {
    latest *l = opaque;
    size_t plen = strlen(l->prefix);
    if (m->key == NULL || m->key_len < plen || memcmp(m->key, l->prefix, plen) != 0)
        return;
    size_t i = 0;
    while (i < l->n && (strlen(l->keys[i]) != m->key_len ||
                        memcmp(l->keys[i], m->key, m->key_len) != 0))
        i++;
    if (i < l->n) { /* replaced or deleted: drop the old one */
        free(l->keys[i]);
        free(l->values[i]);
        free(l->files[i]);
        free(l->paused[i]);
        l->n--;
        l->keys[i] = l->keys[l->n];
        l->values[i] = l->values[l->n];
        l->files[i] = l->files[l->n];
        l->paused[i] = l->paused[l->n];
        l->offsets[i] = l->offsets[l->n];
        l->timestamps[i] = l->timestamps[l->n];
    }
    if (m->value == NULL)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **k = realloc(l->keys, cap * sizeof(*k));
        if (k) l->keys = k;
        char **v = realloc(l->values, cap * sizeof(*v));
        if (v) l->values = v;
        char **f = realloc(l->files, cap * sizeof(*f));
        if (f) l->files = f;
        char **pz = realloc(l->paused, cap * sizeof(*pz));
        if (pz) l->paused = pz;
        int64_t *o = realloc(l->offsets, cap * sizeof(*o));
        if (o) l->offsets = o;
        int64_t *t = realloc(l->timestamps, cap * sizeof(*t));
        if (t) l->timestamps = t;
        if (!k || !v || !f || !pz || !o || !t) {
            l->failed = true;
            return;
        }
        l->cap = cap;
    }
    const char *file = "", *paused = "";
    size_t flen = 0, pauselen = 0;
    for (size_t h = 0; h < m->nheaders; h++) {
        if (m->headers[h].value == NULL)
            continue;
        if (strcmp(m->headers[h].key, SL_PIPELINE_FILE_HEADER) == 0)
            file = m->headers[h].value, flen = m->headers[h].value_len;
        else if (strcmp(m->headers[h].key, SL_PIPELINE_PAUSED_HEADER) == 0)
            paused = m->headers[h].value, pauselen = m->headers[h].value_len;
    }
    l->keys[l->n] = dup_bytes(m->key, m->key_len);
    l->values[l->n] = dup_bytes(m->value, m->value_len);
    l->files[l->n] = dup_bytes(file, flen);
    l->paused[l->n] = dup_bytes(paused, pauselen);
    l->offsets[l->n] = m->offset;
    l->timestamps[l->n] = m->timestamp;
    if (!l->keys[l->n] || !l->values[l->n] || !l->files[l->n] || !l->paused[l->n])
        l->failed = true;
    l->n++;
}

static void latest_free(latest *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->keys[i]);
        free(l->values[i]);
        free(l->files[i]);
        free(l->paused[i]);
    }
    free(l->keys);
    free(l->values);
    free(l->files);
    free(l->paused);
    free(l->offsets);
    free(l->timestamps);
}

static int read_latest(const char *broker, const char *topic, const char *prefix, latest *l,
                       char *errbuf, size_t errlen) {
    memset(l, 0, sizeof(*l));
    l->prefix = prefix;
    int rc = read_to_end(broker, topic, NULL, keep_latest, l, NULL, NULL, NULL, errbuf, errlen);
    if (rc == 0 && l->failed)
        rc = SL_ENOMEM;
    if (rc)
        latest_free(l);
    return rc;
}

static int cmp_index_by_key(const void *a, const void *b, void *keys) {
    char **k = keys;
    return strcmp(k[*(const size_t *)a], k[*(const size_t *)b]);
}

int sl_pl_read_latest(const char *broker, const char *topic, const char *prefix, char ***keys,
                      char ***values, size_t *n, char *errbuf, size_t errlen) {
    latest l;
    int rc = read_latest(broker, topic, prefix, &l, errbuf, errlen);
    if (rc)
        return rc;
    size_t *order = malloc((l.n ? l.n : 1) * sizeof(*order));
    char **k = calloc(l.n ? l.n : 1, sizeof(*k)), **v = calloc(l.n ? l.n : 1, sizeof(*v));
    if (!order || !k || !v) {
        free(order);
        free(k);
        free(v);
        latest_free(&l);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < l.n; i++)
        order[i] = i;
    qsort_r(order, l.n, sizeof(*order), cmp_index_by_key, l.keys);
    for (size_t i = 0; i < l.n; i++) {
        k[i] = l.keys[order[i]];
        v[i] = l.values[order[i]];
        l.keys[order[i]] = l.values[order[i]] = NULL;
    }
    free(order);
    latest_free(&l);
    *keys = k;
    *values = v;
    *n = l.n;
    return 0;
}

/* ---- list, stop ---- */

static int cmp_deployed(const void *a, const void *b) {
    return strcmp(((const sl_pl_deployed *)a)->name, ((const sl_pl_deployed *)b)->name);
}

int sl_pl_list(const char *broker, sl_pl_deployed **out, size_t *n, char *errbuf,
               size_t errlen) {
    latest l;
    int rc = read_latest(broker, SL_PIPELINES_TOPIC, "", &l, errbuf, errlen);
    if (rc)
        return rc;
    sl_pl_deployed *d = calloc(l.n ? l.n : 1, sizeof(*d));
    if (d == NULL) {
        latest_free(&l);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < l.n; i++) {
        d[i] = (sl_pl_deployed){l.keys[i], l.files[i], l.values[i], l.offsets[i],
                                l.timestamps[i], l.paused[i]};
        l.keys[i] = l.files[i] = l.values[i] = l.paused[i] = NULL;
    }
    qsort(d, l.n, sizeof(*d), cmp_deployed);
    *out = d;
    *n = l.n;
    latest_free(&l);
    return 0;
}

void sl_pl_deployed_free(sl_pl_deployed *d, size_t n) {
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].name);
        free(d[i].file);
        free(d[i].source);
        free(d[i].paused);
    }
    free(d);
}

typedef struct delivery {
    int status;
    int64_t offset;
} delivery;

static void on_delivered(void *opaque, int status, const char *topic, int32_t partition,
                         int64_t offset) {
    (void)topic;
    (void)partition;
    delivery *d = opaque;
    d->status = status;
    d->offset = offset;
}

/* Writes one record to partition 0 of an internal topic and waits for its acknowledgement. */
static int put_record(const char *broker, const char *topic, const char *key, const char *value,
                      const sl_header *headers, size_t nheaders, int64_t *offset, char *errbuf,
                      size_t errlen) {
    sl_conf *c = make_conf(broker, NULL, errbuf, errlen);
    sl_producer *p;
    int rc = c ? sl_producer_new(c, &p, errbuf, errlen) : SL_EINVAL;
    if (rc) {
        sl_conf_destroy(c);
        return rc;
    }
    delivery d = {SL_ETIMEDOUT, -1};
    sl_produce_record r = {topic, 0, key, strlen(key), value, value ? strlen(value) : 0, 0,
                           headers, nheaders, on_delivered, &d};
    rc = sl_producer_send(p, &r);
    if (rc == 0)
        rc = sl_producer_flush(p, 30000);
    if (rc == 0)
        rc = d.status;
    sl_producer_destroy(p);
    if (rc)
        snprintf(errbuf, errlen, "cannot write to %s: %s", topic, sl_strerror(rc));
    else if (offset)
        *offset = d.offset;
    return rc;
}

int sl_pl_stop(const char *broker, const char *name, char *errbuf, size_t errlen) {
    sl_pl_deployed *d;
    size_t n;
    int rc = sl_pl_list(broker, &d, &n, errbuf, errlen);
    if (rc)
        return rc;
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(d[i].name, name) == 0;
    sl_pl_deployed_free(d, n);
    if (!found) {
        snprintf(errbuf, errlen, "no pipeline named \"%s\" is running", name);
        return SL_ENOENT;
    }
    return put_record(broker, SL_PIPELINES_TOPIC, name, NULL, NULL, 0, NULL, errbuf, errlen);
}

/* ---- deploy ---- */

static const sl_pl_topic *declared(const sl_pipeline *p, const char *name) {
    for (size_t i = 0; i < p->ntopics; i++)
        if (strcmp(p->topics[i].name, name) == 0)
            return &p->topics[i];
    return NULL;
}

/* Partitions of 'name': declared (and > 0) or existing; 0 when neither. */
static int32_t partitions_of(sl_client *cl, const sl_pipeline *p, const char *name) {
    const sl_pl_topic *t = declared(p, name);
    if (t && t->partitions > 0)
        return t->partitions;
    sl_topic_info *info;
    char err[256];
    if (sl_topic_describe(cl, name, &info, err, sizeof(err)) != 0)
        return 0;
    int32_t n = info->npartitions;
    sl_topic_info_free(info);
    return n;
}

/* The topic a retry or dead-letter topic takes its partition count from. */
static const char *derived_from(const sl_pipeline *p, const char *name) {
    for (size_t i = 0; i < p->nstages; i++) {
        const sl_pl_stage *s = &p->stages[i];
        for (size_t in = 0; in < s->ninputs; in++) {
            size_t n = strlen(s->inputs[in]);
            if (strncmp(name, s->inputs[in], n) == 0 && strncmp(name + n, ".retry.", 7) == 0)
                return s->inputs[in];
        }
        if (s->dlq && strcmp(s->dlq, name) == 0 && s->ninputs)
            return s->inputs[0];
    }
    return NULL;
}

int sl_pl_deploy(const char *broker, const sl_pipeline *p, const char *source, int64_t *version,
                 char *errbuf, size_t errlen) {
    sl_client *cl;
    int rc = open_client(broker, &cl, errbuf, errlen);
    if (rc)
        return rc;
    /* Everything the stages read or write must exist or be declared: checked before any
     * topic is made, so a refused pipeline changes nothing. */
    for (size_t i = 0; rc == 0 && i < p->nstages; i++) {
        const sl_pl_stage *s = &p->stages[i];
        for (int side = 0; rc == 0 && side < 2; side++) {
            char **names = side ? s->outputs : s->inputs;
            size_t n = side ? s->noutputs : s->ninputs;
            for (size_t k = 0; rc == 0 && k < n; k++)
                if (partitions_of(cl, p, names[k]) == 0) {
                    snprintf(errbuf, errlen,
                             "%s:%d: %s \"%s\": %s topic \"%s\" does not exist and the pipeline "
                             "does not declare it", p->file, s->line,
                             s->kind == SL_PLUGIN_SINK ? "sink" : s->kind == SL_PLUGIN_SOURCE
                                                                      ? "source" : "processor",
                             s->name, side ? "output" : "input", names[k]);
                    rc = SL_ENOENT;
                }
        }
    }
    for (size_t i = 0; rc == 0 && i < p->ntopics; i++) {
        const sl_pl_topic *t = &p->topics[i];
        int32_t parts = t->partitions;
        if (parts == 0) {
            const char *from = derived_from(p, t->name);
            parts = from ? partitions_of(cl, p, from) : 1;
        }
        rc = sl_topic_create(cl, t->name, parts > 0 ? parts : 1,
                             (const char *const *)t->configs, t->nconfigs, errbuf, errlen);
        if (rc == SL_EEXIST)
            rc = 0;
        else if (rc && errbuf[0] == '\0')
            snprintf(errbuf, errlen, "cannot create topic %s: %s", t->name, sl_strerror(rc));
    }
    sl_client_destroy(cl);
    if (rc)
        return rc;
    /* Paused stages stay paused across a redeploy. */
    sl_pl_deployed *d;
    size_t n;
    char *paused = NULL;
    if ((rc = sl_pl_list(broker, &d, &n, errbuf, errlen)) != 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (strcmp(d[i].name, p->name) == 0 && d[i].paused[0])
            paused = strdup(d[i].paused);
    sl_pl_deployed_free(d, n);
    sl_header h[2] = {{SL_PIPELINE_FILE_HEADER, p->file, strlen(p->file)},
                      {SL_PIPELINE_PAUSED_HEADER, paused, paused ? strlen(paused) : 0}};
    rc = put_record(broker, SL_PIPELINES_TOPIC, p->name, source, h, paused ? 2 : 1, version,
                    errbuf, errlen);
    free(paused);
    return rc;
}

int sl_pl_control(const char *broker, const char *pipeline, const char *stage,
                  const char *action, char *errbuf, size_t errlen) {
    sl_pl_deployed *d;
    size_t n;
    int rc = sl_pl_list(broker, &d, &n, errbuf, errlen);
    if (rc)
        return rc;
    sl_pl_deployed *mine = NULL;
    for (size_t i = 0; i < n && !mine; i++)
        if (strcmp(d[i].name, pipeline) == 0)
            mine = &d[i];
    sl_pipeline *p = NULL;
    if (mine == NULL) {
        snprintf(errbuf, errlen, "no pipeline named \"%s\" is running", pipeline);
        rc = SL_ENOENT;
    } else if ((rc = sl_pipeline_load(mine->file, mine->source, NULL, &p, errbuf, errlen)) ==
               0 && sl_pipeline_stage(p, stage) == NULL) {
        snprintf(errbuf, errlen, "pipeline \"%s\" has no stage \"%s\"", pipeline, stage);
        rc = SL_ENOENT;
    }
    /* The paused list as ",a,b,": rebuilt without the stage, then with it when pausing. */
    char paused[4096] = ",";
    if (rc == 0) {
        char *list = strdup(mine->paused), *save = NULL;
        for (char *tok = list ? strtok_r(list, ",", &save) : NULL; tok;
             tok = strtok_r(NULL, ",", &save))
            if (strcmp(tok, stage) != 0 && strlen(paused) + strlen(tok) + 2 < sizeof(paused))
                strcat(strcat(paused, tok), ",");
        free(list);
        if (strcmp(action, "pause") == 0 && strlen(paused) + strlen(stage) + 2 < sizeof(paused))
            strcat(strcat(paused, stage), ",");
        const char *restart = strcmp(action, "restart") == 0 ? stage : "";
        sl_header h[3] = {{SL_PIPELINE_FILE_HEADER, mine->file, strlen(mine->file)},
                          {SL_PIPELINE_PAUSED_HEADER, paused, strlen(paused)},
                          {SL_PIPELINE_RESTART_HEADER, restart, strlen(restart)}};
        rc = put_record(broker, SL_PIPELINES_TOPIC, mine->name, mine->source, h, 3, NULL,
                        errbuf, errlen);
    }
    sl_pipeline_free(p);
    sl_pl_deployed_free(d, n);
    return rc;
}

/* ---- dead-letter replay ---- */

typedef struct replay {
    sl_producer *producer;
    sl_client *cl;
    uint64_t sent, skipped;
    int status;
} replay;

static void on_replayed(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset) {
    (void)topic;
    (void)partition;
    (void)offset;
    replay *r = opaque;
    if (status && r->status == 0)
        r->status = status;
}

static void replay_one(void *opaque, const sl_message *m) {
    replay *r = opaque;
    char topic[256] = "";
    int32_t partition = SL_PARTITION_ANY;
    sl_header hs[65];
    size_t n = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        const sl_header *h = &m->headers[i];
        if (strcmp(h->key, "sluice.stage") == 0 && h->value && n < 64) {
            /* Only the stage that gave up on it takes it again, not every reader of the
             * topic. */
            hs[n++] = (sl_header){"sluice.replay_for", h->value, h->value_len};
            continue;
        }
        if (strcmp(h->key, "sluice.original_topic") == 0 && h->value && h->value_len < 256) {
            memcpy(topic, h->value, h->value_len);
            topic[h->value_len] = '\0';
        } else if (strcmp(h->key, "sluice.original_partition") == 0 && h->value &&
                   h->value_len < 12) {
            char num[12];
            memcpy(num, h->value, h->value_len);
            num[h->value_len] = '\0';
            partition = (int32_t)atoi(num);
        } else if (strncmp(h->key, "sluice.", 7) != 0 && n < 64) {
            hs[n++] = *h;
        }
    }
    if (topic[0] == '\0') {
        r->skipped++;
        return;
    }
    sl_produce_record rec = {topic, partition, m->key, m->key_len, m->value, m->value_len,
                             m->timestamp, hs, n, on_replayed, r};
    int rc = sl_producer_send(r->producer, &rec);
    if (rc == SL_EINVAL) { /* the original partition is gone: let the key choose */
        rec.partition = SL_PARTITION_ANY;
        rc = sl_producer_send(r->producer, &rec);
    }
    if (rc && r->status == 0)
        r->status = rc;
    if (rc == 0)
        r->sent++;
}

int sl_pl_dlq_replay(const char *broker, const char *dlq, uint64_t *replayed, uint64_t *skipped,
                     char *errbuf, size_t errlen) {
    replay r = {0};
    sl_conf *c = make_conf(broker, NULL, errbuf, errlen);
    int rc = c ? sl_conf_set(c, "acks", "all", errbuf, errlen) : SL_EINVAL;
    if (rc == 0)
        rc = sl_producer_new(c, &r.producer, errbuf, errlen);
    if (rc) {
        sl_conf_destroy(c);
        return rc;
    }
    sl_consumer *cons = NULL;
    int64_t *ends = NULL;
    int32_t np = 0;
    rc = read_to_end(broker, dlq, "sluice.dlq-replay", replay_one, &r, &cons, &ends, &np,
                     errbuf, errlen);
    if (rc == 0)
        rc = sl_producer_flush(r.producer, 60000);
    if (rc == 0 && r.status) {
        rc = r.status;
        snprintf(errbuf, errlen, "a replayed record was not delivered: %s", sl_strerror(rc));
    }
    if (rc == 0 && np > 0) {
        /* Only once every record is back on its topic: a failed replay replays again. */
        sl_topic_partition *tp = calloc((size_t)np, sizeof(*tp));
        for (int32_t p = 0; tp && p < np; p++)
            tp[p] = (sl_topic_partition){dlq, p, ends[p]};
        rc = tp ? sl_consumer_commit_offsets(cons, tp, (size_t)np, 0) : SL_ENOMEM;
        free(tp);
    }
    if (cons)
        sl_consumer_destroy(cons);
    free(ends);
    sl_producer_destroy(r.producer);
    *replayed = r.sent;
    *skipped = r.skipped;
    return rc;
}

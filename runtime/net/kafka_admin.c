/* Kafka's topic admin APIs over the broker: CreateTopics, DeleteTopics and DescribeConfigs, at
 * the versions of profile M (shared/KAFKA_PROTOCOL.md, deltas in §1.6). This is one node, so a
 * topic has one replica and manual replica assignments are refused.
 *
 * Nothing is created or deleted before the whole request has been read (CreateTopics'
 * validate_only comes after the topics). Handlers return -1 for a malformed request and also
 * when memory runs out, as the dispatcher does for a full writer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/kafka.h"
#include "sluice/err.h"

#define NAME_MAX_LEN 255     /* buffers for names; longer ones are refused, not fatal */
#define VALUE_MAX_LEN 1023   /* config values: every known one is far shorter */
#define TOPIC_NAME_MAX 249   /* Kafka's limit, and the broker's */
#define MAX_PARTITIONS 10000 /* the broker's limit (broker.c), so validate_only agrees */
#define MAX_CONFIGS 1000     /* per topic: kept configs cost many times their wire size */

enum { RESOURCE_TOPIC = 2, RESOURCE_BROKER = 4 };
enum { SOURCE_DYNAMIC_TOPIC = 1, SOURCE_DEFAULT = 5 }; /* DescribeConfigs v1 config_source */


/* ---- CreateTopics (19) v0-3 ---- */

typedef struct topic_spec {
    char name[NAME_MAX_LEN + 1];
    bool name_bad;
    int32_t partitions;
    int16_t replication;
    int32_t nassignments;
    sl_config_kv *configs;
    size_t nconfigs;
    char config_error[NAME_MAX_LEN + 64]; /* a config that cannot even be checked */
} topic_spec;

static void spec_free(topic_spec *t) {
    for (size_t i = 0; i < t->nconfigs; i++) {
        free(t->configs[i].key);
        free(t->configs[i].value);
    }
    free(t->configs);
    t->configs = NULL;
    t->nconfigs = 0;
}

/* Skips the assignments array, keeping its count. */
static int32_t skip_assignments(sl_kreader *r) {
    int32_t n = sl_kr_array(r, 8); /* partition (4) + broker ids (4) */
    for (int32_t i = 0; i < n && !r->error; i++) {
        sl_kr_i32(r);
        int32_t nb = sl_kr_array(r, 4);
        for (int32_t j = 0; j < nb && !r->error; j++)
            sl_kr_i32(r);
    }
    return n;
}

static int read_config(sl_kreader *r, topic_spec *t) {
    char key[NAME_MAX_LEN + 1], value[VALUE_MAX_LEN + 1];
    bool key_bad, value_bad;
    sl_kr_string_flagged(r, key, sizeof(key), &key_bad);
    bool null = sl_kr_string_flagged(r, value, sizeof(value), &value_bad);
    /* Kafka refuses null values in CreateTopics ("Null value not supported"). */
    const char *why = key_bad ? "a malformed name" : value_bad ? "a malformed value" : NULL;
    if (null && why == NULL)
        why = "a null value";
    if (why && t->config_error[0] == '\0')
        snprintf(t->config_error, sizeof(t->config_error), "config \"%s\" has %s", key, why);
    sl_config_kv *kv = &t->configs[t->nconfigs++];
    kv->key = strdup(key);
    kv->value = strdup(value);
    return kv->key && kv->value ? 0 : -1;
}

/* Reads and drops 'n' config pairs. */
static void skip_configs(sl_kreader *r, int32_t n) {
    char skip[VALUE_MAX_LEN + 1];
    bool bad;
    for (int32_t i = 0; i < n && !r->error; i++) {
        sl_kr_string_flagged(r, skip, sizeof(skip), &bad);
        sl_kr_string_flagged(r, skip, sizeof(skip), &bad);
    }
}

/* Reads one topic of the request. -1: malformed or out of memory. */
static int read_spec(sl_kreader *r, topic_spec *t) {
    memset(t, 0, sizeof(*t));
    sl_kr_string_flagged(r, t->name, sizeof(t->name), &t->name_bad);
    t->partitions = sl_kr_i32(r);
    t->replication = sl_kr_i16(r);
    t->nassignments = skip_assignments(r);
    int32_t nc = sl_kr_array(r, 4); /* name (2) + value (2) */
    if (nc > MAX_CONFIGS) {
        snprintf(t->config_error, sizeof(t->config_error), "more than %d configs", MAX_CONFIGS);
        skip_configs(r, nc);
        return r->error ? -1 : 0;
    }
    if (nc > 0 && (t->configs = calloc((size_t)nc, sizeof(*t->configs))) == NULL)
        return -1;
    for (int32_t i = 0; i < nc && !r->error; i++)
        if (read_config(r, t))
            return -1;
    return r->error ? -1 : 0;
}

/* Kafka's rule (letters, digits, '.', '_', '-'; 1-249; not "." or "..") plus the broker's:
 * "__" names are internal. */
static int16_t check_name(const topic_spec *t, char *msg, size_t len) {
    size_t n = strlen(t->name);
    if (t->name_bad || n == 0 || n > TOPIC_NAME_MAX || strcmp(t->name, ".") == 0 ||
        strcmp(t->name, "..") == 0) {
        snprintf(msg, len, "topic name must be 1 to %d characters, not \".\" or \"..\"",
                 TOPIC_NAME_MAX);
        return KERR_INVALID_TOPIC;
    }
    if (strspn(t->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n) {
        snprintf(msg, len, "topic name \"%s\" may hold only letters, digits, '.', '_' and '-'",
                 t->name);
        return KERR_INVALID_TOPIC;
    }
    if (strncmp(t->name, "__", 2) == 0) {
        snprintf(msg, len, "topic names starting with \"__\" are reserved for internal topics");
        return KERR_INVALID_TOPIC;
    }
    return KERR_NONE;
}

static int16_t check_configs(const topic_spec *t, char *msg, size_t len) {
    if (t->config_error[0]) {
        snprintf(msg, len, "%s", t->config_error);
        return KERR_INVALID_CONFIG;
    }
    for (size_t i = 0; i < t->nconfigs; i++)
        if (sl_topic_config_check(t->configs[i].key, t->configs[i].value, msg, len))
            return KERR_INVALID_CONFIG;
    return KERR_NONE;
}

/* Every check CreateTopics makes, in Kafka's order of concern; 'partitions' has the default
 * applied. validate_only answers from these alone. */
static int16_t check_spec(sl_kafka_ctx *ctx, const topic_spec *t, int32_t partitions, char *msg,
                          size_t len) {
    int32_t existing;
    int16_t err = check_name(t, msg, len);
    if (err)
        return err;
    if (sl_broker_partition_count(ctx->broker, t->name, &existing) == 0) {
        snprintf(msg, len, "topic \"%s\" already exists", t->name);
        return KERR_TOPIC_ALREADY_EXISTS;
    }
    if (t->nassignments > 0) {
        snprintf(msg, len, "manual replica assignments are not supported: this is one broker");
        return KERR_INVALID_REQUEST;
    }
    if (partitions < 1 || partitions > MAX_PARTITIONS) {
        snprintf(msg, len, "partitions must be between 1 and %d (or -1 for the default)",
                 MAX_PARTITIONS);
        return KERR_INVALID_PARTITIONS;
    }
    if (t->replication == 0 || t->replication < -1 || t->replication > SL_MAX_REPLICAS) {
        snprintf(msg, len, "replication factor must be 1 to %d (or -1 for the default)",
                 SL_MAX_REPLICAS);
        return KERR_INVALID_REPLICATION_FACTOR;
    }
    if (ctx->cluster == NULL && t->replication > 1) {
        snprintf(msg, len, "replication factor %d needs a cluster: this broker is alone",
                 t->replication);
        return KERR_INVALID_REPLICATION_FACTOR;
    }
    return check_configs(t, msg, len);
}

static int16_t create_one(sl_kafka_ctx *ctx, const topic_spec *t, bool validate_only, char *msg,
                          size_t len) {
    int32_t partitions = t->partitions == -1 ? ctx->default_partitions : t->partitions;
    int16_t err = check_spec(ctx, t, partitions, msg, len);
    if (err || validate_only)
        return err;
    int rc =
        sl_broker_create_topic(ctx->broker, t->name, partitions,
                               t->replication > 0 ? t->replication : 0, t->configs,
                               t->nconfigs, msg, len);
    if (rc == 0)
        msg[0] = '\0';
    return sl_kafka_error(rc);
}

/* The first pass: the whole request is well-formed, and whether it only validates. */
static int read_create_tail(sl_kreader *r, int16_t version, bool *validate_only) {
    int32_t n = sl_kr_array(r, 16); /* name 2, partitions 4, replicas 2, two arrays 4 each */
    for (int32_t i = 0; i < n && !r->error; i++) {
        topic_spec t;
        int rc = read_spec(r, &t);
        spec_free(&t);
        if (rc)
            return -1;
    }
    sl_kr_i32(r); /* timeout_ms: creation completes before the answer */
    *validate_only = version >= 1 && sl_kr_bool(r);
    return r->error ? -1 : 0;
}

int sl_kafka_create_topics(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader topics = req->body;
    bool validate_only;
    if (read_create_tail(&req->body, req->api_version, &validate_only))
        return -1;
    if (req->api_version >= 2)
        sl_kw_i32(w, 0); /* throttle_time_ms */
    int32_t n = sl_kr_array(&topics, 16);
    sl_kw_i32(w, n > 0 ? n : 0);
    for (int32_t i = 0; i < n; i++) {
        topic_spec t;
        char msg[512] = "";
        if (read_spec(&topics, &t)) {
            spec_free(&t);
            return -1; /* out of memory: the first pass read the same bytes */
        }
        int16_t err = create_one(ctx, &t, validate_only || ctx->decode_only, msg, sizeof(msg));
        sl_kw_string(w, t.name);
        sl_kw_i16(w, err);
        if (req->api_version >= 1)
            sl_kw_string(w, err && msg[0] ? msg : NULL);
        spec_free(&t);
    }
    return 0;
}

/* ---- DeleteTopics (20) v0-1 ---- */

static int16_t delete_one(sl_kafka_ctx *ctx, const char *name, bool bad) {
    int32_t count;
    char err[256] = "";
    if (bad || sl_broker_partition_count(ctx->broker, name, &count) != 0)
        return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    /* Internal topics hold state (__consumer_offsets: every group's offsets); users cannot
     * create them, so they may not delete them either. */
    if (strncmp(name, "__", 2) == 0)
        return KERR_INVALID_REQUEST;
    return sl_kafka_error(sl_broker_delete_topic(ctx->broker, name, err, sizeof(err)));
}

int sl_kafka_delete_topics(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    char name[NAME_MAX_LEN + 1];
    bool bad;
    int32_t n = sl_kr_array(r, 2);
    sl_kreader names = *r;
    for (int32_t i = 0; i < n && !r->error; i++)
        sl_kr_string_flagged(r, name, sizeof(name), &bad);
    sl_kr_i32(r); /* timeout_ms: deletion completes before the answer */
    if (r->error)
        return -1;
    if (req->api_version >= 1)
        sl_kw_i32(w, 0); /* throttle_time_ms */
    sl_kw_i32(w, n > 0 ? n : 0);
    for (int32_t i = 0; i < n; i++) {
        sl_kr_string_flagged(&names, name, sizeof(name), &bad);
        sl_kw_string(w, name);
        sl_kw_i16(w, delete_one(ctx, name, bad));
    }
    return 0;
}

/* ---- DescribeConfigs (32) v0-1 ---- */

/* Marks in 'wanted' (indexed like sl_topic_config_key) the keys asked for. Returns false when
 * every key is wanted: a null list, or an empty one as Kafka reads it. */
static bool read_wanted(sl_kreader *r, bool *wanted, size_t nk) {
    memset(wanted, 0, nk * sizeof(*wanted));
    int32_t n = sl_kr_array(r, 2);
    for (int32_t i = 0; i < n && !r->error; i++) {
        char key[NAME_MAX_LEN + 1];
        bool bad;
        sl_kr_string_flagged(r, key, sizeof(key), &bad);
        for (size_t j = 0; j < nk && !bad; j++)
            if (strcmp(sl_topic_config_key(j), key) == 0)
                wanted[j] = true;
    }
    return n > 0;
}

static bool is_wanted(const bool *wanted, const char *key) {
    size_t nk = sl_topic_config_key_count();
    for (size_t j = 0; wanted && j < nk; j++)
        if (strcmp(sl_topic_config_key(j), key) == 0)
            return wanted[j];
    return wanted == NULL;
}

/* A topic's effective configs; those equal to the default count as defaults (an override that
 * repeats the default is indistinguishable here). */
static void write_configs(sl_kwriter *w, int16_t version, const sl_topic_desc *d,
                          const bool *wanted) {
    static const sl_topic_config no_overrides = {NULL, 0};
    size_t at = sl_kw_reserve_i32(w);
    int32_t n = 0;
    for (size_t i = 0; i < d->nconfigs; i++) {
        const sl_config_kv *c = &d->configs[i];
        if (!is_wanted(wanted, c->key))
            continue;
        const char *def = sl_topic_config_get(&no_overrides, c->key);
        bool is_default = def && strcmp(def, c->value) == 0;
        sl_kw_string(w, c->key);
        sl_kw_string(w, c->value);
        sl_kw_bool(w, false); /* read_only: topic configs can be altered */
        if (version == 0)
            sl_kw_bool(w, is_default);
        else
            sl_kw_i8(w, is_default ? SOURCE_DEFAULT : SOURCE_DYNAMIC_TOPIC);
        sl_kw_bool(w, false); /* is_sensitive */
        if (version >= 1)
            sl_kw_i32(w, 0); /* synonyms: none are tracked */
        n++;
    }
    sl_kw_patch_i32(w, at, n);
}

static void describe_resource(sl_kafka_ctx *ctx, int16_t version, sl_kwriter *w, int8_t type,
                              const char *name, bool bad, const bool *wanted) {
    sl_topic_desc d = {0};
    int16_t err = KERR_NONE;
    char msg[NAME_MAX_LEN + 64] = "";
    if (type == RESOURCE_TOPIC) {
        int rc = bad ? SL_ENOENT : sl_broker_describe_topic(ctx->broker, name, &d);
        err = sl_kafka_error(rc);
        if (rc == SL_ENOENT)
            snprintf(msg, sizeof(msg), "topic \"%s\" does not exist", name);
    } else if (type != RESOURCE_BROKER) { /* a broker answers with no configs */
        err = KERR_INVALID_REQUEST;
        snprintf(msg, sizeof(msg), "resource type %d is not supported: 2 (topic) or 4 (broker)",
                 type);
    }
    sl_kw_i16(w, err);
    sl_kw_string(w, msg[0] ? msg : NULL);
    sl_kw_i8(w, type);
    sl_kw_string(w, name);
    write_configs(w, version, &d, wanted); /* no configs unless a topic was found */
    sl_topic_desc_free(&d);
}

int sl_kafka_describe_configs(sl_kafka_ctx *ctx, sl_kafka_req *req, sl_kwriter *w) {
    sl_kreader *r = &req->body;
    size_t nk = sl_topic_config_key_count();
    bool *wanted = calloc(nk ? nk : 1, sizeof(*wanted));
    if (wanted == NULL)
        return -1;
    sl_kw_i32(w, 0);               /* throttle_time_ms */
    int32_t n = sl_kr_array(r, 7); /* type (1) + name (2) + keys (4) */
    sl_kw_i32(w, n > 0 ? n : 0);
    for (int32_t i = 0; i < n && !r->error; i++) {
        char name[NAME_MAX_LEN + 1];
        bool bad;
        int8_t type = sl_kr_i8(r);
        sl_kr_string_flagged(r, name, sizeof(name), &bad);
        bool some = read_wanted(r, wanted, nk);
        if (!r->error)
            describe_resource(ctx, req->api_version, w, type, name, bad, some ? wanted : NULL);
    }
    if (req->api_version >= 1)
        sl_kr_bool(r); /* include_synonyms: there are none to include */
    free(wanted);
    return r->error ? -1 : 0;
}

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

enum conf_kind {
    CONF_STRING,
    CONF_INT,
    CONF_ACKS,
    CONF_RESET,
    CONF_BOOL,
    CONF_CODEC,
    CONF_ASSIGNOR,
    CONF_ISOLATION,
    CONF_LOCAL /* "ID=URL": the node this client runs beside, reached at URL (ipc://) */
};

struct conf_def {
    const char *key;
    enum conf_kind kind;
    const char *def;
    long long min, max;
};

static const struct conf_def conf_defs[] = {
    {"bootstrap.servers", CONF_STRING, SL_DEFAULT_BROKER, 0, 0},
    {"client.id", CONF_STRING, "sluice", 0, 0},
    {"request.timeout.ms", CONF_INT, "30000", 1, 3600000},
    {"acks", CONF_ACKS, "all", 0, 0},
    {"batch.size", CONF_INT, "131072", 1, 64 * 1024 * 1024},
    {"linger.ms", CONF_INT, "5", 0, 3600000},
    {"fetch.max.wait.ms", CONF_INT, "500", 0, 30000},
    {"fetch.min.bytes", CONF_INT, "1", 0, 100000000},
    {"fetch.max.bytes", CONF_INT, "52428800", 1024, 100000000},
    {"max.partition.fetch.bytes", CONF_INT, "1048576", 1024, 100000000},
    {"max.in.flight", CONF_INT, "5", 1, 100},
    {"auto.offset.reset", CONF_RESET, "latest", 0, 0},
    {"compression.type", CONF_CODEC, "none", 0, 0},
    {"enable.idempotence", CONF_BOOL, "true", 0, 0},
    {"delivery.timeout.ms", CONF_INT, "120000", 1, 86400000},
    {"retry.backoff.ms", CONF_INT, "100", 0, 3600000},
    {"retry.backoff.max.ms", CONF_INT, "1000", 0, 3600000},
    {"buffer.memory", CONF_INT, "33554432", 1024, 1LL << 40},
    {"max.block.ms", CONF_INT, "60000", 0, 86400000},
    {"group.id", CONF_STRING, "", 0, 0},
    {"session.timeout.ms", CONF_INT, "10000", 1000, 1800000},
    {"heartbeat.interval.ms", CONF_INT, "3000", 10, 1800000},
    {"max.poll.interval.ms", CONF_INT, "300000", 1000, 86400000},
    {"partition.assignment.strategy", CONF_ASSIGNOR, "range", 0, 0},
    {"enable.auto.commit", CONF_BOOL, "true", 0, 0},
    {"auto.commit.interval.ms", CONF_INT, "5000", 0, 86400000},
    {"transactional.id", CONF_STRING, "", 0, 0},
    {"transaction.timeout.ms", CONF_INT, "60000", 1, 900000},
    {"isolation.level", CONF_ISOLATION, "read_uncommitted", 0, 0},
    {"local.broker", CONF_LOCAL, "", 0, 0},
};
#define NDEFS (sizeof(conf_defs) / sizeof(conf_defs[0]))

struct sl_conf {
    char *values[NDEFS]; /* NULL: the default */
};

static int find_def(const char *key) {
    for (size_t i = 0; i < NDEFS; i++)
        if (strcmp(conf_defs[i].key, key) == 0)
            return (int)i;
    return -1;
}

sl_conf *sl_conf_new(void) {
    return calloc(1, sizeof(sl_conf));
}

int sl_conf_set(sl_conf *conf, const char *key, const char *value, char *errbuf, size_t errlen) {
    int i = find_def(key);
    if (i < 0) {
        snprintf(errbuf, errlen, "unknown configuration key \"%s\"", key);
        return SL_EBADCONFIG;
    }
    const struct conf_def *d = &conf_defs[i];
    if (d->kind == CONF_INT) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < d->min || v > d->max) {
            snprintf(errbuf, errlen, "%s must be a whole number from %lld to %lld, not \"%s\"",
                     key, d->min, d->max, value);
            return SL_EBADCONFIG;
        }
    } else if (d->kind == CONF_ACKS && strcmp(value, "0") && strcmp(value, "1") &&
               strcmp(value, "all") && strcmp(value, "-1")) {
        snprintf(errbuf, errlen, "acks must be 0, 1 or all, not \"%s\"", value);
        return SL_EBADCONFIG;
    } else if (d->kind == CONF_RESET && strcmp(value, "earliest") && strcmp(value, "latest")) {
        snprintf(errbuf, errlen, "auto.offset.reset must be earliest or latest, not \"%s\"",
                 value);
        return SL_EBADCONFIG;
    } else if (d->kind == CONF_BOOL && strcmp(value, "true") && strcmp(value, "false")) {
        snprintf(errbuf, errlen, "%s must be true or false, not \"%s\"", key, value);
        return SL_EBADCONFIG;
    } else if (d->kind == CONF_CODEC && strcmp(value, "none") && strcmp(value, "gzip") &&
               strcmp(value, "snappy") && strcmp(value, "lz4") && strcmp(value, "zstd")) {
        snprintf(errbuf, errlen,
                 "compression.type must be none, gzip, snappy, lz4 or zstd, not \"%s\"", value);
        return SL_EBADCONFIG;
    } else if (d->kind == CONF_ASSIGNOR && strcmp(value, "range") &&
               strcmp(value, "roundrobin") && strcmp(value, "cooperative-sticky")) {
        snprintf(errbuf, errlen,
                 "partition.assignment.strategy must be range, roundrobin or cooperative-sticky, "
                 "not \"%s\"",
                 value);
        return SL_EBADCONFIG;
    } else if (d->kind == CONF_ISOLATION && strcmp(value, "read_uncommitted") &&
               strcmp(value, "read_committed")) {
        snprintf(errbuf, errlen,
                 "isolation.level must be read_uncommitted or read_committed, not \"%s\"", value);
        return SL_EBADCONFIG;
    } else if (d->kind == CONF_LOCAL && value[0] &&
               (atoi(value) <= 0 || strchr(value, '=') == NULL ||
                strncmp(strchr(value, '=') + 1, "ipc://", 6) != 0)) {
        snprintf(errbuf, errlen, "local.broker must be NODE_ID=ipc://PATH, not \"%s\"", value);
        return SL_EBADCONFIG;
    } else if (d->kind == CONF_STRING && value[0] == '\0' && strcmp(key, "group.id") != 0 &&
               strcmp(key, "transactional.id") != 0) {
        snprintf(errbuf, errlen, "%s must not be empty", key);
        return SL_EBADCONFIG;
    }
    char *copy = strdup(value);
    if (copy == NULL)
        return SL_ENOMEM;
    free(conf->values[i]);
    conf->values[i] = copy;
    return 0;
}

const char *sl_conf_get(const sl_conf *conf, const char *key) {
    int i = find_def(key);
    if (i < 0)
        return NULL;
    return conf->values[i] ? conf->values[i] : conf_defs[i].def;
}

void sl_conf_destroy(sl_conf *conf) {
    if (conf == NULL)
        return;
    for (size_t i = 0; i < NDEFS; i++)
        free(conf->values[i]);
    free(conf);
}

static long long get_int(const sl_conf *conf, const char *key) {
    return strtoll(sl_conf_get(conf, key), NULL, 10);
}

void sl_conf_values_get(const sl_conf *conf, sl_conf_values *v) {
    const char *acks = sl_conf_get(conf, "acks");
    v->servers = sl_conf_get(conf, "bootstrap.servers");
    v->client_id = sl_conf_get(conf, "client.id");
    v->request_timeout_ms = (int)get_int(conf, "request.timeout.ms");
    v->acks = strcmp(acks, "all") == 0 ? -1 : atoi(acks);
    v->batch_size = get_int(conf, "batch.size");
    v->linger_ms = (int)get_int(conf, "linger.ms");
    v->fetch_max_wait_ms = (int)get_int(conf, "fetch.max.wait.ms");
    v->fetch_min_bytes = (int)get_int(conf, "fetch.min.bytes");
    v->fetch_max_bytes = (int)get_int(conf, "fetch.max.bytes");
    v->max_partition_fetch_bytes = (int)get_int(conf, "max.partition.fetch.bytes");
    v->max_in_flight = (int)get_int(conf, "max.in.flight");
    v->compression = sl_conf_get(conf, "compression.type");
    v->idempotence = strcmp(sl_conf_get(conf, "enable.idempotence"), "true") == 0;
    v->delivery_timeout_ms = get_int(conf, "delivery.timeout.ms");
    v->retry_backoff_ms = get_int(conf, "retry.backoff.ms");
    v->retry_backoff_max_ms = get_int(conf, "retry.backoff.max.ms");
    v->buffer_memory = get_int(conf, "buffer.memory");
    v->max_block_ms = get_int(conf, "max.block.ms");
    v->group_id = sl_conf_get(conf, "group.id");
    v->session_timeout_ms = (int)get_int(conf, "session.timeout.ms");
    v->heartbeat_interval_ms = (int)get_int(conf, "heartbeat.interval.ms");
    v->max_poll_interval_ms = (int)get_int(conf, "max.poll.interval.ms");
    v->assignor = sl_conf_get(conf, "partition.assignment.strategy");
    v->auto_commit = strcmp(sl_conf_get(conf, "enable.auto.commit"), "true") == 0;
    v->auto_commit_interval_ms = get_int(conf, "auto.commit.interval.ms");
    v->transactional_id = sl_conf_get(conf, "transactional.id");
    v->transaction_timeout_ms = (int)get_int(conf, "transaction.timeout.ms");
    v->read_committed = strcmp(sl_conf_get(conf, "isolation.level"), "read_committed") == 0;
    const char *local = sl_conf_get(conf, "local.broker");
    const char *eq = strchr(local, '=');
    v->local_node = eq ? atoi(local) : -1;
    v->local_url = eq ? eq + 1 : "";
    v->auto_offset_reset = strcmp(sl_conf_get(conf, "auto.offset.reset"), "earliest") == 0
                               ? SL_OFFSET_BEGINNING
                               : SL_OFFSET_END;
}

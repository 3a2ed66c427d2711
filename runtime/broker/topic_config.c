#include "broker/topic_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

enum cfg_type { CFG_LONG, CFG_DOUBLE, CFG_CHOICE };

struct cfg_def {
    const char *key;
    enum cfg_type type;
    const char *def;
    long long min, max;  /* bounds of a CFG_LONG or CFG_DOUBLE */
    const char *choices; /* '|'-separated, for CFG_CHOICE */
};

#define LMAX 9223372036854775807LL

/* Kafka's names and defaults, so an operator's habits carry over. */
static const struct cfg_def cfg_defs[] = {
    /* A list in Kafka: both orders of the pair mean the same. */
    {"cleanup.policy", CFG_CHOICE, "delete", 0, 0, "delete|compact|compact,delete|delete,compact"},
    {"compression.type", CFG_CHOICE, "producer", 0, 0,
     "producer|uncompressed|gzip|snappy|lz4|zstd"},
    {"delete.retention.ms", CFG_LONG, "86400000", 0, LMAX, NULL},
    {"flush.messages", CFG_LONG, "9223372036854775807", 1, LMAX, NULL},
    {"flush.ms", CFG_LONG, "9223372036854775807", 0, LMAX, NULL},
    {"index.interval.bytes", CFG_LONG, "4096", 0, 2147483647, NULL},
    {"max.message.bytes", CFG_LONG, "1048588", 0, 2147483647, NULL},
    {"message.timestamp.type", CFG_CHOICE, "CreateTime", 0, 0, "CreateTime|LogAppendTime"},
    {"min.cleanable.dirty.ratio", CFG_DOUBLE, "0.5", 0, 1, NULL},
    {"min.compaction.lag.ms", CFG_LONG, "0", 0, LMAX, NULL},
    {"min.insync.replicas", CFG_LONG, "1", 1, 2147483647, NULL},
    {"retention.bytes", CFG_LONG, "-1", -1, LMAX, NULL},
    {"retention.ms", CFG_LONG, "604800000", -1, LMAX, NULL},
    {"segment.bytes", CFG_LONG, "1073741824", 100, 2147483647, NULL},
    {"segment.ms", CFG_LONG, "604800000", 1, LMAX, NULL},
};
#define NDEFS (sizeof(cfg_defs) / sizeof(cfg_defs[0]))

static const struct cfg_def *find_def(const char *key) {
    for (size_t i = 0; i < NDEFS; i++)
        if (strcmp(cfg_defs[i].key, key) == 0)
            return &cfg_defs[i];
    return NULL;
}

static bool choice_ok(const char *choices, const char *value) {
    size_t n = strlen(value);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

int sl_topic_config_check(const char *key, const char *value, char *errbuf, size_t errlen) {
    const struct cfg_def *d = find_def(key);
    if (d == NULL) {
        snprintf(errbuf, errlen, "unknown topic config \"%s\"", key);
        return SL_EBADCONFIG;
    }
    if (d->type == CFG_CHOICE) {
        if (!choice_ok(d->choices, value)) {
            snprintf(errbuf, errlen, "%s must be one of %s, not \"%s\"", key, d->choices, value);
            return SL_EBADCONFIG;
        }
        return 0;
    }
    char *end;
    errno = 0;
    if (d->type == CFG_DOUBLE) {
        double v = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !isfinite(v)) {
            snprintf(errbuf, errlen, "%s must be a number, not \"%s\"", key, value);
            return SL_EBADCONFIG;
        }
        if (v < (double)d->min || v > (double)d->max) {
            snprintf(errbuf, errlen, "%s must be between %lld and %lld, not %s", key, d->min,
                     d->max, value);
            return SL_EBADCONFIG;
        }
        return 0;
    }
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end != '\0') {
        snprintf(errbuf, errlen, "%s must be a whole number, not \"%s\"", key, value);
        return SL_EBADCONFIG;
    }
    if (v < d->min || v > d->max) {
        snprintf(errbuf, errlen, "%s must be between %lld and %lld, not %lld", key, d->min,
                 d->max, v);
        return SL_EBADCONFIG;
    }
    return 0;
}

int sl_topic_config_set(sl_topic_config *cfg, const char *key, const char *value) {
    for (size_t i = 0; i < cfg->n; i++) {
        if (strcmp(cfg->items[i].key, key) != 0)
            continue;
        if (value[0] == '\0') {
            free(cfg->items[i].key);
            free(cfg->items[i].value);
            cfg->items[i] = cfg->items[--cfg->n];
            return 0;
        }
        char *v = strdup(value);
        if (v == NULL)
            return SL_ENOMEM;
        free(cfg->items[i].value);
        cfg->items[i].value = v;
        return 0;
    }
    if (value[0] == '\0')
        return 0;
    sl_config_kv *p = realloc(cfg->items, (cfg->n + 1) * sizeof(*p));
    if (p == NULL)
        return SL_ENOMEM;
    cfg->items = p;
    p[cfg->n].key = strdup(key);
    p[cfg->n].value = strdup(value);
    if (p[cfg->n].key == NULL || p[cfg->n].value == NULL) {
        free(p[cfg->n].key);
        free(p[cfg->n].value);
        return SL_ENOMEM;
    }
    cfg->n++;
    return 0;
}

const char *sl_topic_config_get(const sl_topic_config *cfg, const char *key) {
    for (size_t i = 0; cfg && i < cfg->n; i++)
        if (strcmp(cfg->items[i].key, key) == 0)
            return cfg->items[i].value;
    const struct cfg_def *d = find_def(key);
    return d ? d->def : NULL;
}

static long long get_long(const sl_topic_config *cfg, const char *key) {
    return strtoll(sl_topic_config_get(cfg, key), NULL, 10);
}

int32_t sl_topic_config_min_insync(const sl_topic_config *cfg) {
    return (int32_t)get_long(cfg, "min.insync.replicas");
}

bool sl_topic_config_compacted(const sl_topic_config *cfg) {
    return strstr(sl_topic_config_get(cfg, "cleanup.policy"), "compact") != NULL;
}

int sl_topic_config_forced_codec(const sl_topic_config *cfg) {
    static const char *const codecs[] = {"uncompressed", "gzip", "snappy", "lz4", "zstd"};
    const char *v = sl_topic_config_get(cfg, "compression.type");
    for (int i = 0; i < 5; i++)
        if (strcmp(v, codecs[i]) == 0)
            return i; /* SL_CODEC_NONE .. SL_CODEC_ZSTD, in order */
    return -1;
}

void sl_topic_config_to_log(const sl_topic_config *cfg, sl_logconf *out) {
    sl_logconf_defaults(out);
    out->segment_bytes = get_long(cfg, "segment.bytes");
    out->segment_ms = get_long(cfg, "segment.ms");
    out->retention_ms = get_long(cfg, "retention.ms");
    out->retention_bytes = get_long(cfg, "retention.bytes");
    out->flush_messages = get_long(cfg, "flush.messages");
    out->flush_ms = get_long(cfg, "flush.ms");
    out->index_interval_bytes = get_long(cfg, "index.interval.bytes");
    out->max_message_bytes = get_long(cfg, "max.message.bytes");
    out->log_append_time =
        strcmp(sl_topic_config_get(cfg, "message.timestamp.type"), "LogAppendTime") == 0;
    /* The values were checked: "delete", "compact" or both, in either order. */
    out->compact = sl_topic_config_compacted(cfg);
    out->delete_retention = strstr(sl_topic_config_get(cfg, "cleanup.policy"), "delete") != NULL;
    out->delete_retention_ms = get_long(cfg, "delete.retention.ms");
    out->min_cleanable_dirty_ratio =
        strtod(sl_topic_config_get(cfg, "min.cleanable.dirty.ratio"), NULL);
    out->min_compaction_lag_ms = get_long(cfg, "min.compaction.lag.ms");
}

size_t sl_topic_config_key_count(void) {
    return NDEFS;
}

const char *sl_topic_config_key(size_t i) {
    return i < NDEFS ? cfg_defs[i].key : NULL;
}

int sl_topic_config_copy(const sl_topic_config *from, sl_topic_config *to) {
    to->items = NULL;
    to->n = 0;
    for (size_t i = 0; i < from->n; i++) {
        int rc = sl_topic_config_set(to, from->items[i].key, from->items[i].value);
        if (rc) {
            sl_topic_config_free(to);
            return rc;
        }
    }
    return 0;
}

void sl_topic_config_free(sl_topic_config *cfg) {
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->items[i].key);
        free(cfg->items[i].value);
    }
    free(cfg->items);
    cfg->items = NULL;
    cfg->n = 0;
}

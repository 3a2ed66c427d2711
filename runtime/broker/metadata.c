#include "broker/metadata.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mp.h"
#include "base/mpcheck.h"
#include "log/batch.h"
#include "log/partlog.h"
#include "sluice/err.h"

struct sl_metalog {
    sl_partlog *log;
};

static const char *const type_names[] = {NULL, "create", "delete", "config", "pids"};

int sl_metalog_open(const char *data_dir, sl_metalog **out) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s-0", data_dir, SL_METADATA_TOPIC);
    sl_metalog *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return SL_ENOMEM;
    sl_logconf conf;
    sl_logconf_defaults(&conf);
    conf.retention_ms = -1; /* the metadata log is the source of truth: never expire it */
    conf.max_message_bytes = 64 * 1024 * 1024;
    int rc = sl_partlog_open(dir, SL_METADATA_TOPIC "-0", &conf, &m->log);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void sl_metalog_close(sl_metalog *m) {
    if (m) {
        sl_partlog_close(m->log);
        free(m);
    }
}

int sl_metalog_append(sl_metalog *m, const sl_meta_record *rec) {
    sl_buf value = SL_BUF_INIT;
    msgpack_packer pk;
    sl_mp_packer_init(&pk, &value);
    size_t nfields = 3 + (rec->type == SL_META_CREATE) + (rec->configs != NULL) +
                     (rec->type == SL_META_PIDS);
    msgpack_pack_map(&pk, nfields);
    sl_mp_pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    sl_mp_pack_str(&pk, "type");
    sl_mp_pack_str(&pk, type_names[rec->type]);
    sl_mp_pack_str(&pk, "name");
    sl_mp_pack_str(&pk, rec->name);
    if (rec->type == SL_META_CREATE) {
        sl_mp_pack_str(&pk, "partitions");
        msgpack_pack_int32(&pk, rec->partitions);
    }
    if (rec->type == SL_META_PIDS) {
        sl_mp_pack_str(&pk, "end");
        msgpack_pack_int64(&pk, rec->pid_end);
    }
    if (rec->configs) {
        sl_mp_pack_str(&pk, "configs");
        msgpack_pack_map(&pk, rec->configs->n);
        for (size_t i = 0; i < rec->configs->n; i++) {
            sl_mp_pack_str(&pk, rec->configs->items[i].key);
            sl_mp_pack_str(&pk, rec->configs->items[i].value);
        }
    }
    sl_batch_builder b = {0};
    sl_batch_builder_reset(&b);
    int rc = sl_batch_builder_add(&b, sl_clock_wall_ms(), rec->name, strlen(rec->name),
                                  value.data, value.len, NULL, 0);
    sl_buf_free(&value);
    if (rc == 0) {
        sl_batch_builder_finish(&b);
        sl_append_result res;
        rc = sl_partlog_append(m->log, b.buf.data, b.buf.len, 0, sl_clock_wall_ms(), &res);
        if (rc == 0)
            rc = sl_partlog_flush(m->log);
        if (rc == 0)
            rc = sl_partlog_set_high_watermark(m->log, res.last_offset + 1);
    }
    sl_batch_builder_free(&b);
    if (rc)
        sl_error("broker", "cannot write the metadata log: %s", sl_strerror(rc));
    return rc;
}

/* Finds 'key' in a msgpack map. */
static const msgpack_object *map_get(const msgpack_object *map, const char *key) {
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static char *obj_strdup(const msgpack_object *o) {
    if (o == NULL || o->type != MSGPACK_OBJECT_STR)
        return NULL;
    return o->via.str.size > 0 ? strndup(o->via.str.ptr, o->via.str.size) : strdup("");
}

static int apply_value(const uint8_t *value, size_t len, int64_t offset, sl_meta_apply_fn apply,
                       void *ctx) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = SL_ECORRUPT;
    sl_topic_config configs = {0};
    char *type = NULL, *name = NULL;
    if (sl_mp_check(value, len) ||
        msgpack_unpack_next(&up, (const char *)value, len, &off) != MSGPACK_UNPACK_SUCCESS)
        goto out;
    type = obj_strdup(map_get(&up.data, "type"));
    name = obj_strdup(map_get(&up.data, "name"));
    if (type == NULL || name == NULL)
        goto out;
    sl_meta_record rec = {.name = name};
    for (int t = SL_META_CREATE; t <= SL_META_PIDS; t++)
        if (strcmp(type, type_names[t]) == 0)
            rec.type = (enum sl_meta_type)t;
    const msgpack_object *parts = map_get(&up.data, "partitions");
    if (parts && parts->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        rec.partitions = (int32_t)parts->via.u64;
    const msgpack_object *end = map_get(&up.data, "end");
    if (end && end->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        rec.pid_end = (int64_t)end->via.u64;
    const msgpack_object *cfg = map_get(&up.data, "configs");
    if (cfg && cfg->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < cfg->via.map.size; i++) {
            char *k = obj_strdup(&cfg->via.map.ptr[i].key);
            char *v = obj_strdup(&cfg->via.map.ptr[i].val);
            if (k && v)
                sl_topic_config_set(&configs, k, v);
            free(k);
            free(v);
        }
        rec.configs = &configs;
    }
    if (rec.type == 0 || (rec.type == SL_META_CREATE && rec.partitions < 1))
        goto out;
    rc = apply(ctx, &rec);
out:
    if (rc == SL_ECORRUPT)
        sl_error("broker", "metadata log record at offset %" PRId64 " is not understood", offset);
    free(type);
    free(name);
    sl_topic_config_free(&configs);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int sl_metalog_replay(sl_metalog *m, sl_meta_apply_fn apply, void *ctx) {
    sl_read_result res;
    sl_partlog_offsets(m->log, &res);
    int64_t offset = res.log_start_offset;
    sl_buf buf = SL_BUF_INIT;
    int rc = 0;
    while (rc == 0 && offset < res.high_watermark) {
        buf.len = 0;
        rc = sl_partlog_read(m->log, offset, 1 << 20, &buf, &res);
        if (rc || buf.len == 0)
            break;
        for (size_t pos = 0; rc == 0 && pos < buf.len;) {
            size_t total = sl_batch_total_size(buf.data + pos, buf.len - pos);
            sl_record_iter it;
            sl_record_view rv;
            rc = sl_record_iter_start(&it, buf.data + pos, total);
            while (rc == 0 && sl_record_iter_next(&it, &rv) == 1) {
                if (rv.offset >= offset && rv.value)
                    rc = apply_value(rv.value, rv.value_len, rv.offset, apply, ctx);
                offset = rv.offset + 1;
            }
            pos += total;
        }
    }
    sl_buf_free(&buf);
    return rc;
}

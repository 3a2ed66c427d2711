#include "cluster/record.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/mp.h"
#include "base/mpcheck.h"
#include "sluice/err.h"

#define MAX_RECORD_PARTITIONS 10000 /* the broker's own limit per topic */

static bool key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static int get_i32(const msgpack_object *o, int32_t min, int32_t *out) {
    int64_t v;
    if (sl_mp_int(o, &v) || v < min || v > INT32_MAX)
        return SL_EINVAL;
    *out = (int32_t)v;
    return 0;
}

/* A list of distinct node ids (>= 1), at most SL_MAX_REPLICAS. */
static int get_nodes(const msgpack_object *o, int32_t *ids, int32_t *n) {
    const msgpack_object *items;
    size_t count;
    if (sl_mp_array(o, 0, &items, &count) || count > SL_MAX_REPLICAS)
        return SL_EINVAL;
    for (size_t i = 0; i < count; i++) {
        if (get_i32(&items[i], 1, &ids[i]))
            return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (ids[j] == ids[i])
                return SL_EINVAL;
    }
    *n = (int32_t)count;
    return 0;
}

static int get_configs(const msgpack_object *o, sl_cluster_record *r) {
    if (o->type != MSGPACK_OBJECT_MAP)
        return SL_EINVAL;
    const msgpack_object_map *m = &o->via.map;
    if (m->size == 0)
        return 0;
    if ((r->configs = calloc(m->size, sizeof(*r->configs))) == NULL)
        return SL_ENOMEM;
    for (uint32_t i = 0; i < m->size; i++) {
        char key[128], value[256];
        if (sl_mp_strcpy(&m->ptr[i].key, key, sizeof(key)) ||
            sl_mp_strcpy(&m->ptr[i].val, value, sizeof(value)))
            return SL_EINVAL;
        r->configs[i].key = strdup(key);
        r->configs[i].value = strdup(value);
        r->nconfigs = i + 1;
        if (r->configs[i].key == NULL || r->configs[i].value == NULL)
            return SL_ENOMEM;
    }
    return 0;
}

static int get_assignment(const msgpack_object *o, sl_cluster_record *r) {
    const msgpack_object *items;
    size_t count;
    if (sl_mp_array(o, 1, &items, &count) || count > MAX_RECORD_PARTITIONS)
        return SL_EINVAL;
    if ((r->parts = calloc(count, sizeof(*r->parts))) == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        sl_partition_state *st = &r->parts[i];
        if (get_nodes(&items[i], st->replicas, &st->nreplicas) || st->nreplicas == 0)
            return SL_EINVAL;
        st->leader = st->replicas[0];
        st->nisr = st->nreplicas;
        memcpy(st->isr, st->replicas, sizeof(st->isr));
    }
    r->npartitions = (int32_t)count;
    return 0;
}

static const char *const type_names[] = {NULL, "broker", "topic", "delete", "config", "part"};

static int decode_map(const msgpack_object_map *map, sl_cluster_record *r) {
    unsigned have = 0; /* a bit per field seen */
    enum { T = 1, ID = 2, URL = 4, NAME = 8, P = 16, LEADER = 32, EPOCH = 64, VERSION = 128,
           ISR = 256, CONFIGS = 512, REPLICAS = 1024, TARGET = 2048 };
    int rc = 0;
    for (uint32_t i = 0; i < map->size && rc == 0; i++) {
        const msgpack_object *k = &map->ptr[i].key, *v = &map->ptr[i].val;
        if (key_is(k, "t")) {
            rc = SL_EINVAL;
            for (int t = SL_CREC_BROKER; t <= SL_CREC_PARTITION; t++) {
                if (v->type == MSGPACK_OBJECT_STR && key_is(v, type_names[t])) {
                    r->type = (enum sl_cluster_record_type)t;
                    rc = 0;
                }
            }
            have |= T;
        } else if (key_is(k, "id")) {
            /* A broker's id (an int32 >= 1), or a topic's incarnation (any positive integer). */
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0) {
                rc = SL_EINVAL;
            } else {
                r->topic_id = v->via.u64;
                r->member.id = v->via.u64 <= INT32_MAX ? (int32_t)v->via.u64 : 0;
            }
            have |= ID;
        } else if (key_is(k, "url")) {
            rc = sl_mp_strcpy(v, r->member.url, sizeof(r->member.url)) || v->via.str.size == 0
                     ? SL_EINVAL
                     : 0;
            have |= URL;
        } else if (key_is(k, "kafka")) {
            rc = sl_mp_strcpy(v, r->member.kafka, sizeof(r->member.kafka)) ? SL_EINVAL : 0;
        } else if (key_is(k, "name")) {
            rc = sl_mp_strcpy(v, r->name, sizeof(r->name)) || v->via.str.size == 0 ? SL_EINVAL
                                                                                   : 0;
            have |= NAME;
        } else if (key_is(k, "p")) {
            rc = get_i32(v, 0, &r->partition);
            have |= P;
        } else if (key_is(k, "leader")) {
            rc = get_i32(v, -1, &r->state.leader);
            rc = rc == 0 && r->state.leader == 0 ? SL_EINVAL : rc;
            have |= LEADER;
        } else if (key_is(k, "epoch")) {
            rc = get_i32(v, 0, &r->state.epoch);
            have |= EPOCH;
        } else if (key_is(k, "version")) {
            rc = get_i32(v, 0, &r->state.version);
            have |= VERSION;
        } else if (key_is(k, "isr")) {
            rc = get_nodes(v, r->state.isr, &r->state.nisr);
            have |= ISR;
        } else if (key_is(k, "configs") && !(have & CONFIGS)) {
            rc = get_configs(v, r);
            have |= CONFIGS;
        } else if (key_is(k, "replicas") && !(have & REPLICAS)) {
            /* A topic's: one list per partition; a partition's: one list. */
            bool nested = v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size > 0 &&
                          v->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY;
            if (nested) {
                rc = get_assignment(v, r);
            } else {
                rc = get_nodes(v, r->state.replicas, &r->state.nreplicas);
                r->has_replicas = rc == 0;
            }
            have |= REPLICAS;
        } else if (key_is(k, "target")) {
            rc = get_nodes(v, r->target, &r->ntarget);
            r->has_target = rc == 0;
            have |= TARGET;
        }
    }
    if (rc)
        return rc;
    unsigned need[] = {0, T | ID | URL, T | NAME | CONFIGS | REPLICAS, T | NAME,
                       T | NAME | CONFIGS, T | NAME | P | LEADER | EPOCH | VERSION | ISR};
    if (!(have & T) || (have & need[r->type]) != need[r->type])
        return SL_EINVAL;
    /* Fields another kind of record carries mean nothing here: keep only this kind's. */
    sl_cluster_record kept = {.type = r->type};
    if (r->type == SL_CREC_BROKER && r->member.id < 1)
        return SL_EINVAL;
    if (r->type == SL_CREC_BROKER)
        kept.member = r->member;
    else
        memcpy(kept.name, r->name, sizeof(kept.name));
    if (r->type == SL_CREC_PARTITION) {
        if (r->parts || (r->has_replicas && r->state.nreplicas == 0))
            return SL_EINVAL; /* a topic's assignment, or no replica at all */
        kept.partition = r->partition;
        kept.state = r->state;
        kept.has_replicas = r->has_replicas;
        kept.has_target = r->has_target;
        kept.ntarget = r->ntarget;
        memcpy(kept.target, r->target, sizeof(kept.target));
    }
    if (r->type == SL_CREC_TOPIC && r->parts == NULL)
        return SL_EINVAL;
    if (r->type == SL_CREC_TOPIC) {
        kept.topic_id = r->topic_id;
        kept.npartitions = r->npartitions;
        kept.parts = r->parts;
        r->parts = NULL;
    }
    if (r->type == SL_CREC_TOPIC || r->type == SL_CREC_CONFIG) {
        kept.configs = r->configs;
        kept.nconfigs = r->nconfigs;
        r->configs = NULL;
        r->nconfigs = 0;
    }
    sl_cluster_record_free(r);
    *r = kept;
    return 0;
}

int sl_cluster_decode_record(const uint8_t *data, size_t len, sl_cluster_record *r) {
    memset(r, 0, sizeof(*r));
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = SL_EINVAL;
    if (sl_mp_check(data, len) == 0 &&
        msgpack_unpack_next(&up, (const char *)data, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_MAP)
        rc = decode_map(&up.data.via.map, r);
    msgpack_unpacked_destroy(&up);
    if (rc)
        sl_cluster_record_free(r);
    return rc;
}

void sl_cluster_record_free(sl_cluster_record *r) {
    for (size_t i = 0; i < r->nconfigs; i++) {
        free(r->configs[i].key);
        free(r->configs[i].value);
    }
    free(r->configs);
    free(r->parts);
    r->configs = NULL;
    r->parts = NULL;
    r->nconfigs = 0;
    r->npartitions = 0;
}

static void pack_nodes(msgpack_packer *pk, const int32_t *ids, int32_t n) {
    msgpack_pack_array(pk, (size_t)n);
    for (int32_t i = 0; i < n; i++)
        msgpack_pack_int32(pk, ids[i]);
}

static void pack_configs(msgpack_packer *pk, const sl_cluster_record *r) {
    msgpack_pack_map(pk, r->nconfigs);
    for (size_t i = 0; i < r->nconfigs; i++) {
        sl_mp_pack_str(pk, r->configs[i].key);
        sl_mp_pack_str(pk, r->configs[i].value);
    }
}

int sl_cluster_encode_record(const sl_cluster_record *r, sl_buf *out) {
    if (r->type < SL_CREC_BROKER || r->type > SL_CREC_PARTITION)
        return SL_EINVAL;
    msgpack_packer pk;
    sl_mp_packer_init(&pk, out);
    static const uint32_t fields[] = {0, 3, 4, 2, 3, 7};
    bool kafka = r->type == SL_CREC_BROKER && r->member.kafka[0];
    bool part = r->type == SL_CREC_PARTITION;
    bool tid = r->type == SL_CREC_TOPIC && r->topic_id != 0;
    msgpack_pack_map(&pk, fields[r->type] + (kafka ? 1 : 0) + (part && r->has_replicas) +
                              (part && r->has_target) + tid);
    sl_mp_pack_str(&pk, "t");
    sl_mp_pack_str(&pk, type_names[r->type]);
    if (r->type == SL_CREC_BROKER) {
        sl_mp_pack_str(&pk, "id");
        msgpack_pack_int32(&pk, r->member.id);
        sl_mp_pack_str(&pk, "url");
        sl_mp_pack_str(&pk, r->member.url);
        if (kafka) {
            sl_mp_pack_str(&pk, "kafka");
            sl_mp_pack_str(&pk, r->member.kafka);
        }
        return 0;
    }
    sl_mp_pack_str(&pk, "name");
    sl_mp_pack_str(&pk, r->name);
    if (r->type == SL_CREC_TOPIC || r->type == SL_CREC_CONFIG) {
        sl_mp_pack_str(&pk, "configs");
        pack_configs(&pk, r);
    }
    if (tid) {
        sl_mp_pack_str(&pk, "id");
        msgpack_pack_uint64(&pk, r->topic_id);
    }
    if (r->type == SL_CREC_TOPIC) {
        sl_mp_pack_str(&pk, "replicas");
        msgpack_pack_array(&pk, (size_t)r->npartitions);
        for (int32_t i = 0; i < r->npartitions; i++)
            pack_nodes(&pk, r->parts[i].replicas, r->parts[i].nreplicas);
    }
    if (r->type == SL_CREC_PARTITION) {
        sl_mp_pack_str(&pk, "p");
        msgpack_pack_int32(&pk, r->partition);
        sl_mp_pack_str(&pk, "leader");
        msgpack_pack_int32(&pk, r->state.leader);
        sl_mp_pack_str(&pk, "epoch");
        msgpack_pack_int32(&pk, r->state.epoch);
        sl_mp_pack_str(&pk, "version");
        msgpack_pack_int32(&pk, r->state.version);
        sl_mp_pack_str(&pk, "isr");
        pack_nodes(&pk, r->state.isr, r->state.nisr);
        if (r->has_replicas) {
            sl_mp_pack_str(&pk, "replicas");
            pack_nodes(&pk, r->state.replicas, r->state.nreplicas);
        }
        if (r->has_target) {
            sl_mp_pack_str(&pk, "target");
            pack_nodes(&pk, r->target, r->ntarget);
        }
    }
    return 0;
}

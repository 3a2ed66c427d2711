/* sl_client: admin operations, and the request helpers every handle uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "client/internal.h"
#include "client/metadata.h"
#include "group/consumer_protocol.h"

struct sl_client {
    sl_conf *conf;
    sl_conf_values v;
    sl_rpc *rpc;
    sl_cl_meta *meta; /* partition leaders, for list offsets */
    sl_buf req, resp;
};

int sl_cl_connect(const sl_conf_values *v, sl_rpc **rpc, char *errbuf, size_t errlen) {
    char list[2048];
    snprintf(list, sizeof(list), "%s", v->servers);
    int rc = SL_EINVAL;
    char *save = NULL;
    for (char *url = strtok_r(list, ",", &save); url; url = strtok_r(NULL, ",", &save)) {
        while (*url == ' ')
            url++;
        rc = sl_rpc_connect(url, SL_CL_CONNECT_TIMEOUT_MS, rpc);
        if (rc == 0)
            return 0;
    }
    if (rc == SL_EINVAL)
        snprintf(errbuf, errlen, "bad broker address \"%s\" (expected tcp://HOST:PORT)",
                 v->servers);
    else
        snprintf(errbuf, errlen, "cannot reach broker at %s", v->servers);
    return rc == SL_EINVAL ? SL_EINVAL : SL_ECONNREFUSED;
}

void sl_cl_begin(sl_buf *b, uint32_t id, uint16_t api, msgpack_packer *pk) {
    sl_rpc_frame_begin(b, id);
    uint8_t a[2];
    sl_be16_put(a, api);
    sl_buf_append(b, a, 2);
    sl_mp_packer_init(pk, b);
}

int sl_cl_call(sl_rpc *rpc, sl_buf *req, uint32_t id, int timeout_ms, sl_buf *resp,
               msgpack_unpacked *up, size_t min, const msgpack_object **items, size_t *n,
               char *errbuf, size_t errlen) {
    sl_rpc_frame_end(req);
    int rc = sl_rpc_call(rpc, id, req->data, req->len, timeout_ms, resp);
    if (rc) {
        snprintf(errbuf, errlen, "%s", rc == SL_ECLOSED ? "the broker closed the connection"
                                                        : sl_strerror(rc));
        return rc;
    }
    int status;
    char msg[512];
    if (sl_native_decode_response(resp->data, resp->len, up, 2, items, n, &status, msg,
                                  sizeof(msg))) {
        snprintf(errbuf, errlen, "malformed answer from the broker");
        return SL_EPROTO;
    }
    if (status) {
        snprintf(errbuf, errlen, "%s", msg[0] ? msg : sl_strerror(status));
        return status;
    }
    if (*n < min) {
        snprintf(errbuf, errlen, "malformed answer from the broker");
        return SL_EPROTO;
    }
    return 0;
}

int sl_cl_find_coordinator(sl_rpc *rpc, const sl_conf_values *v, const char *group, char *url,
                           size_t len, int32_t *node) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    char err[256];
    uint32_t id = sl_rpc_next_id(rpc);
    sl_cl_begin(&req, id, SL_API_FIND_COORDINATOR, &pk);
    msgpack_pack_array(&pk, 1);
    sl_mp_pack_str(&pk, group);
    msgpack_unpacked_init(&up);
    int rc = sl_cl_call(rpc, &req, id, v->request_timeout_ms, &resp, &up, 4, &items, &n, err,
                        sizeof(err));
    int64_t id64 = 0;
    if (rc == 0 && (sl_mp_int(&items[2], &id64) || sl_mp_strcpy(&items[3], url, len)))
        rc = SL_EPROTO;
    *node = (int32_t)id64;
    if (rc == 0 && url[0] == '\0') /* the broker asked */
        snprintf(url, len, "%s", sl_rpc_url(rpc));
    else if (rc == 0 && *node == v->local_node && v->local_url[0])
        snprintf(url, len, "%s", v->local_url); /* the node beside us: over ipc:// */
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

/* Per-partition results nest as [[topic, [[partition, ...]...]]...]: the first partition entry
 * of the first topic, for single-partition requests. */
static int first_part(const msgpack_object *topics, size_t min, const msgpack_object **fields) {
    const msgpack_object *t, *tp, *parts;
    size_t n;
    if (sl_mp_array(topics, 1, &t, &n) || sl_mp_array(&t[0], 2, &tp, &n) ||
        sl_mp_array(&tp[1], 1, &parts, &n) || sl_mp_array(&parts[0], min, fields, &n))
        return SL_EPROTO;
    return 0;
}

int sl_cl_first_topic(const msgpack_object *items, size_t n, int64_t *status,
                      const msgpack_object **leaders, size_t *nleaders) {
    const msgpack_object *topics, *t;
    size_t nt, tn;
    if (n < 4 || sl_mp_array(&items[3], 1, &topics, &nt) || sl_mp_array(&topics[0], 3, &t, &tn) ||
        sl_mp_int(&t[1], status) || sl_mp_array(&t[2], 0, leaders, nleaders))
        return SL_EPROTO;
    return 0;
}

int sl_cl_partition_count(sl_rpc *rpc, int timeout_ms, const char *topic, int32_t *count) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *leaders;
    size_t n, np;
    char err[256];
    uint32_t id = sl_rpc_next_id(rpc);
    sl_cl_begin(&req, id, SL_API_METADATA, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 1);
    sl_mp_pack_str(&pk, topic);
    msgpack_unpacked_init(&up);
    int rc = sl_cl_call(rpc, &req, id, timeout_ms, &resp, &up, 4, &items, &n, err, sizeof(err));
    int64_t status;
    if (rc == 0)
        rc = sl_cl_first_topic(items, n, &status, &leaders, &np);
    if (rc == 0 && status)
        rc = (int)status;
    if (rc == 0)
        *count = (int32_t)np;
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

int sl_cl_list_offset(sl_rpc *rpc, int timeout_ms, const char *topic, int32_t partition,
                      int64_t when, int64_t *offset) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *f;
    size_t n;
    char err[256];
    uint32_t id = sl_rpc_next_id(rpc);
    sl_cl_begin(&req, id, SL_API_LIST_OFFSETS, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    sl_mp_pack_str(&pk, topic);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int32(&pk, partition);
    msgpack_pack_int64(&pk, when);
    msgpack_unpacked_init(&up);
    int rc = sl_cl_call(rpc, &req, id, timeout_ms, &resp, &up, 3, &items, &n, err, sizeof(err));
    int64_t status = 0;
    if (rc == 0 && (first_part(&items[2], 3, &f) || sl_mp_int(&f[1], &status) ||
                    sl_mp_int(&f[2], offset)))
        rc = SL_EPROTO;
    if (rc == 0)
        rc = (int)status;
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

/* ---- sl_client ---- */

int sl_client_new(sl_conf *conf, sl_client **out, char *errbuf, size_t errlen) {
    sl_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return SL_ENOMEM;
    sl_conf_values_get(conf, &cl->v);
    int rc = sl_cl_connect(&cl->v, &cl->rpc, errbuf, errlen);
    if (rc == 0 && (rc = sl_cl_meta_new(&cl->v, cl->rpc, &cl->meta)) != 0)
        sl_rpc_close(cl->rpc);
    if (rc) {
        free(cl);
        return rc;
    }
    cl->conf = conf;
    *out = cl;
    return 0;
}

void sl_client_destroy(sl_client *cl) {
    if (cl == NULL)
        return;
    sl_cl_meta_destroy(cl->meta);
    sl_rpc_close(cl->rpc);
    sl_buf_free(&cl->req);
    sl_buf_free(&cl->resp);
    sl_conf_destroy(cl->conf);
    free(cl);
}

/* Packs "key=value" strings as a map; SL_EINVAL names a string without '='. */
static int pack_configs(msgpack_packer *pk, const char *const *configs, size_t n, char *errbuf,
                        size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        if (strchr(configs[i], '=') == NULL) {
            snprintf(errbuf, errlen, "config \"%s\" is not key=value", configs[i]);
            return SL_EINVAL;
        }
    }
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(configs[i], '=');
        msgpack_pack_str(pk, (size_t)(eq - configs[i]));
        msgpack_pack_str_body(pk, configs[i], (size_t)(eq - configs[i]));
        sl_mp_pack_str(pk, eq + 1);
    }
    return 0;
}

static int admin_call(sl_client *cl, uint32_t id, msgpack_unpacked *up, size_t min,
                      const msgpack_object **items, size_t *n, char *errbuf, size_t errlen) {
    char scratch[256];
    if (errbuf == NULL || errlen == 0) {
        errbuf = scratch;
        errlen = sizeof(scratch);
    }
    return sl_cl_call(cl->rpc, &cl->req, id, cl->v.request_timeout_ms, &cl->resp, up, min, items,
                      n, errbuf, errlen);
}

int sl_topic_create(sl_client *cl, const char *name, int32_t partitions,
                    const char *const *configs, size_t nconfigs, char *errbuf, size_t errlen) {
    return sl_topic_create_replicated(cl, name, partitions, 0, configs, nconfigs, errbuf, errlen);
}

int sl_topic_create_replicated(sl_client *cl, const char *name, int32_t partitions,
                               int32_t replication, const char *const *configs, size_t nconfigs,
                               char *errbuf, size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_CREATE_TOPIC, &pk);
    /* Without a replication factor the request is the one older brokers know. */
    msgpack_pack_array(&pk, replication > 0 ? 4 : 3);
    sl_mp_pack_str(&pk, name);
    msgpack_pack_int32(&pk, partitions);
    int rc = pack_configs(&pk, configs, nconfigs, errbuf, errlen);
    if (rc)
        return rc;
    if (replication > 0)
        msgpack_pack_int32(&pk, replication);
    msgpack_unpacked_init(&up);
    rc = admin_call(cl, id, &up, 2, &items, &n, errbuf, errlen);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int sl_topic_alter(sl_client *cl, const char *name, const char *const *configs, size_t nconfigs,
                   char *errbuf, size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_ALTER_TOPIC, &pk);
    msgpack_pack_array(&pk, 2);
    sl_mp_pack_str(&pk, name);
    int rc = pack_configs(&pk, configs, nconfigs, errbuf, errlen);
    if (rc)
        return rc;
    msgpack_unpacked_init(&up);
    rc = admin_call(cl, id, &up, 2, &items, &n, errbuf, errlen);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int sl_topic_delete(sl_client *cl, const char *name, char *errbuf, size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_DELETE_TOPIC, &pk);
    msgpack_pack_array(&pk, 1);
    sl_mp_pack_str(&pk, name);
    msgpack_unpacked_init(&up);
    int rc = admin_call(cl, id, &up, 2, &items, &n, errbuf, errlen);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int sl_topic_list(sl_client *cl, char ***names, size_t *count) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *list;
    size_t n, nn;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_LIST_TOPICS, &pk);
    msgpack_pack_array(&pk, 0);
    msgpack_unpacked_init(&up);
    int rc = admin_call(cl, id, &up, 3, &items, &n, NULL, 0);
    if (rc == 0 && sl_mp_array(&items[2], 0, &list, &nn))
        rc = SL_EPROTO;
    char **v = NULL;
    size_t k = 0;
    if (rc == 0 && (v = calloc(nn ? nn : 1, sizeof(*v))) == NULL)
        rc = SL_ENOMEM;
    for (; rc == 0 && k < nn; k++) {
        const char *s;
        size_t len;
        if (sl_mp_str(&list[k], &s, &len))
            rc = SL_EPROTO;
        else if ((v[k] = len ? strndup(s, len) : strdup("")) == NULL)
            rc = SL_ENOMEM;
    }
    msgpack_unpacked_destroy(&up);
    if (rc) {
        sl_topic_list_free(v, k);
        return rc;
    }
    *names = v;
    *count = nn;
    return 0;
}

void sl_topic_list_free(char **names, size_t count) {
    if (names == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static char *obj_strdup(const msgpack_object *o) {
    const char *s;
    size_t n;
    if (sl_mp_str(o, &s, &n))
        return NULL;
    return n > 0 ? strndup(s, n) : strdup("");
}

/* A list of node ids into a fixed array of eight (more are not kept). */
static int node_ids(const msgpack_object *o, int32_t ids[8], int32_t *count) {
    const msgpack_object *v;
    size_t n;
    if (sl_mp_array(o, 0, &v, &n))
        return SL_EPROTO;
    *count = 0;
    for (size_t k = 0; k < n && k < 8; k++) {
        int64_t id;
        if (sl_mp_int(&v[k], &id))
            return SL_EPROTO;
        ids[(*count)++] = (int32_t)id;
    }
    return 0;
}

int sl_topic_describe(sl_client *cl, const char *name, sl_topic_info **out, char *errbuf,
                      size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *parts;
    size_t n, np;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_DESCRIBE_TOPIC, &pk);
    msgpack_pack_array(&pk, 1);
    sl_mp_pack_str(&pk, name);
    msgpack_unpacked_init(&up);
    int rc = admin_call(cl, id, &up, 5, &items, &n, errbuf, errlen);
    sl_topic_info *info = NULL;
    if (rc == 0 && (sl_mp_array(&items[3], 0, &parts, &np) || items[4].type != MSGPACK_OBJECT_MAP))
        rc = SL_EPROTO;
    if (rc == 0 && (info = calloc(1, sizeof(*info))) == NULL)
        rc = SL_ENOMEM;
    if (rc == 0) {
        size_t nc = items[4].via.map.size;
        info->name = obj_strdup(&items[2]);
        info->partitions = calloc(np ? np : 1, sizeof(*info->partitions));
        info->configs = calloc(nc ? nc : 1, sizeof(*info->configs));
        if (info->name == NULL || info->partitions == NULL || info->configs == NULL)
            rc = SL_ENOMEM;
        for (size_t i = 0; rc == 0 && i < np; i++) {
            const msgpack_object *f;
            size_t fn;
            int64_t v[5];
            if (sl_mp_array(&parts[i], 5, &f, &fn))
                rc = SL_EPROTO;
            for (int k = 0; rc == 0 && k < 5; k++)
                rc = sl_mp_int(&f[k], &v[k]);
            if (rc == 0) {
                sl_partition_info *pi = &info->partitions[i];
                *pi = (sl_partition_info){.partition = (int32_t)v[0],
                                          .leader = (int32_t)v[1],
                                          .start_offset = v[2],
                                          .end_offset = v[3],
                                          .size_bytes = v[4]};
                if (fn >= 7) {
                    rc = node_ids(&f[5], pi->replicas, &pi->nreplicas);
                    if (rc == 0)
                        rc = node_ids(&f[6], pi->isr, &pi->nisr);
                } else { /* a broker before replication: the leader is the one replica */
                    pi->replicas[0] = pi->isr[0] = pi->leader;
                    pi->nreplicas = pi->nisr = 1;
                }
            }
            info->npartitions = (int32_t)(i + 1);
        }
        for (size_t i = 0; rc == 0 && i < nc; i++) {
            info->configs[i].key = obj_strdup(&items[4].via.map.ptr[i].key);
            info->configs[i].value = obj_strdup(&items[4].via.map.ptr[i].val);
            info->nconfigs = i + 1;
            if (info->configs[i].key == NULL || info->configs[i].value == NULL)
                rc = SL_EPROTO;
        }
    }
    msgpack_unpacked_destroy(&up);
    if (rc) {
        sl_topic_info_free(info);
        if (rc == SL_EPROTO && errbuf && errlen)
            snprintf(errbuf, errlen, "malformed answer from the broker");
        return rc;
    }
    *out = info;
    return 0;
}

void sl_topic_info_free(sl_topic_info *info) {
    if (info == NULL)
        return;
    for (size_t i = 0; i < info->nconfigs; i++) {
        free(info->configs[i].key);
        free(info->configs[i].value);
    }
    free(info->configs);
    free(info->partitions);
    free(info->name);
    free(info);
}

int sl_list_offset(sl_client *cl, const char *topic, int32_t partition, int64_t when,
                   int64_t *offset) {
    if (when == SL_OFFSET_END && cl->v.read_committed)
        when = SL_CL_OFFSET_STABLE;
    return sl_cl_meta_list_offset(cl->meta, topic, partition, when, cl->v.request_timeout_ms,
                                  offset);
}

/* ---- cluster ---- */

void sl_cluster_info_free(sl_cluster_info *info) {
    for (size_t i = 0; info->nodes && i < info->nnodes; i++)
        free(info->nodes[i].url);
    free(info->nodes);
    memset(info, 0, sizeof(*info));
}

int sl_cluster_rebalance_replicas(sl_client *cl, int32_t *moving, char *errbuf,
                                  size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    int64_t count;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_CLUSTER_REBALANCE, &pk);
    msgpack_pack_array(&pk, 0);
    msgpack_unpacked_init(&up);
    int rc = admin_call(cl, id, &up, 3, &items, &n, errbuf, errlen);
    if (rc == 0 && sl_mp_int(&items[2], &count))
        rc = SL_EPROTO;
    if (rc == 0)
        *moving = (int32_t)count;
    msgpack_unpacked_destroy(&up);
    return rc;
}

int sl_cluster_describe(sl_client *cl, sl_cluster_info *out) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *list;
    size_t n, nn = 0;
    int64_t self, leader, voters;
    memset(out, 0, sizeof(*out));
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_CLUSTER_STATUS, &pk);
    msgpack_pack_array(&pk, 0);
    msgpack_unpacked_init(&up);
    int rc = admin_call(cl, id, &up, 6, &items, &n, NULL, 0);
    if (rc == 0 && (sl_mp_int(&items[2], &self) || sl_mp_int(&items[3], &leader) ||
                    sl_mp_int(&items[4], &voters) || sl_mp_array(&items[5], 0, &list, &nn)))
        rc = SL_EPROTO;
    if (rc == 0 && (out->nodes = calloc(nn ? nn : 1, sizeof(*out->nodes))) == NULL)
        rc = SL_ENOMEM;
    for (size_t k = 0; rc == 0 && k < nn; k++) {
        const msgpack_object *f;
        size_t fn;
        int64_t node;
        if (sl_mp_array(&list[k], 2, &f, &fn) || sl_mp_int(&f[0], &node))
            rc = SL_EPROTO;
        else if ((out->nodes[k].url = obj_strdup(&f[1])) == NULL)
            rc = SL_ENOMEM;
        else
            out->nodes[k].node_id = (int32_t)node;
        out->nnodes = k + 1;
    }
    msgpack_unpacked_destroy(&up);
    if (rc) {
        sl_cluster_info_free(out);
        return rc;
    }
    out->node_id = (int32_t)self;
    out->controller = (int32_t)leader;
    out->voters = (size_t)voters;
    return 0;
}

/* ---- group admin ---- */

/* admin_call for a group's request (built in cl->req): sent to the group's coordinator, found
 * again while it moves or loads (in a cluster it is the leader of the group's partition of
 * __consumer_offsets), for up to the request timeout. */
static int coordinator_call(sl_client *cl, const char *group, uint32_t id, msgpack_unpacked *up,
                            size_t min, const msgpack_object **items, size_t *n, char *errbuf,
                            size_t errlen, int32_t *node) {
    char scratch[256], url[256];
    int32_t ignored;
    if (node == NULL)
        node = &ignored;
    if (errbuf == NULL || errlen == 0) {
        errbuf = scratch;
        errlen = sizeof(scratch);
    }
    int rc = 0;
    int64_t deadline = sl_clock_mono_ms() + cl->v.request_timeout_ms;
    for (;;) {
        sl_rpc *coord = NULL;
        errbuf[0] = '\0';
        rc = sl_cl_find_coordinator(cl->rpc, &cl->v, group, url, sizeof(url), node);
        bool here = rc == 0 && strcmp(url, sl_rpc_url(cl->rpc)) == 0;
        if (rc == 0)
            rc = here ? 0 : sl_rpc_connect(url, SL_CL_CONNECT_TIMEOUT_MS, &coord);
        if (rc == 0) {
            msgpack_unpacked_destroy(up); /* a failed attempt may have filled it */
            msgpack_unpacked_init(up);
            rc = sl_cl_call(here ? cl->rpc : coord, &cl->req, id, cl->v.request_timeout_ms,
                            &cl->resp, up, min, items, n, errbuf, errlen);
            if (coord)
                sl_rpc_close(coord);
        }
        bool again = rc == SL_ENOTCOORD || rc == SL_ECOORDLOADING || rc == SL_ECLOSED ||
                     rc == SL_ECONNREFUSED;
        if (!again || sl_clock_mono_ms() >= deadline)
            break;
        struct timespec pause = {0, 200 * 1000000};
        nanosleep(&pause, NULL);
    }
    if (rc && errbuf[0] == '\0')
        snprintf(errbuf, errlen, "%s", sl_strerror(rc));
    return rc;
}

/* Appends the groups one broker coordinates to names/states (grown as needed). */
static int list_groups_on(sl_client *cl, sl_rpc *rpc, char ***names, char ***states,
                          size_t *count) {
    sl_buf req = SL_BUF_INIT, resp = SL_BUF_INIT;
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *list;
    size_t n, nn = 0;
    char err[256];
    uint32_t id = sl_rpc_next_id(rpc);
    sl_cl_begin(&req, id, SL_API_LIST_GROUPS, &pk);
    msgpack_pack_array(&pk, 0);
    msgpack_unpacked_init(&up);
    int rc = sl_cl_call(rpc, &req, id, cl->v.request_timeout_ms, &resp, &up, 3, &items, &n, err,
                        sizeof(err));
    if (rc == 0 && sl_mp_array(&items[2], 0, &list, &nn))
        rc = SL_EPROTO;
    char **v = rc == 0 ? realloc(*names, (*count + nn + 1) * sizeof(*v)) : NULL;
    if (v)
        *names = v;
    char **st = v ? realloc(*states, (*count + nn + 1) * sizeof(*st)) : NULL;
    if (st)
        *states = st;
    if (rc == 0 && (v == NULL || st == NULL))
        rc = SL_ENOMEM;
    for (size_t k = 0; rc == 0 && k < nn; k++) {
        const msgpack_object *f;
        size_t fn;
        char *name = NULL, *state = NULL;
        if (sl_mp_array(&list[k], 2, &f, &fn))
            rc = SL_EPROTO;
        else if ((name = obj_strdup(&f[0])) == NULL || (state = obj_strdup(&f[1])) == NULL)
            rc = SL_ENOMEM;
        if (rc) {
            free(name);
            break;
        }
        (*names)[*count] = name;
        (*states)[*count] = state;
        (*count)++;
    }
    msgpack_unpacked_destroy(&up);
    sl_buf_free(&req);
    sl_buf_free(&resp);
    return rc;
}

typedef struct group_entry {
    char *name, *state;
} group_entry;

static int cmp_group_entries(const void *a, const void *b) {
    return strcmp(((const group_entry *)a)->name, ((const group_entry *)b)->name);
}

int sl_group_list(sl_client *cl, char ***names, char ***states, size_t *count) {
    char **v = NULL, **s = NULL;
    size_t k = 0;
    sl_cluster_info ci;
    bool clustered = sl_cluster_describe(cl, &ci) == 0;
    int rc = 0;
    if (clustered && ci.voters > 0) {
        /* Each node lists the groups it coordinates. */
        for (size_t i = 0; rc == 0 && i < ci.nnodes; i++) {
            sl_rpc *rpc;
            if (sl_rpc_connect(ci.nodes[i].url, SL_CL_CONNECT_TIMEOUT_MS, &rpc) != 0)
                continue; /* a dead node: its groups are being taken over */
            rc = list_groups_on(cl, rpc, &v, &s, &k);
            sl_rpc_close(rpc);
        }
    } else {
        rc = list_groups_on(cl, cl->rpc, &v, &s, &k);
    }
    if (clustered)
        sl_cluster_info_free(&ci);
    group_entry *e = rc == 0 ? calloc(k ? k : 1, sizeof(*e)) : NULL;
    char **sv = e ? calloc(k + 1, sizeof(*sv)) : NULL, **ss = sv ? calloc(k + 1, sizeof(*ss)) : NULL;
    if (ss == NULL) {
        free(e);
        free(sv);
        sl_topic_list_free(v, k);
        sl_topic_list_free(s, k);
        return rc ? rc : SL_ENOMEM;
    }
    for (size_t i = 0; i < k; i++)
        e[i] = (group_entry){v[i], s[i]};
    qsort(e, k, sizeof(*e), cmp_group_entries);
    for (size_t i = 0; i < k; i++) {
        sv[i] = e[i].name;
        ss[i] = e[i].state;
    }
    free(e);
    free(v);
    free(s);
    *names = sv;
    *states = ss;
    *count = k;
    return 0;
}

/* Decodes a member's assignment bytes (Kafka's consumer protocol) into its partitions. */
static int member_partitions(const msgpack_object *bin, sl_group_member_info *m) {
    sl_partition_set set = {0};
    if (bin->type != MSGPACK_OBJECT_BIN)
        return SL_EPROTO;
    int rc = sl_assignment_decode((const uint8_t *)bin->via.bin.ptr, bin->via.bin.size, &set);
    size_t n = rc == 0 ? sl_pset_count(&set) : 0;
    if (rc == 0 && (m->partitions = calloc(n ? n : 1, sizeof(*m->partitions))) == NULL)
        rc = SL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < set.ntopics; i++) {
        for (size_t j = 0; rc == 0 && j < set.topics[i].n; j++) {
            char *t = strdup(set.topics[i].topic);
            if (t == NULL)
                rc = SL_ENOMEM;
            else
                m->partitions[m->npartitions++] =
                    (sl_topic_partition){t, set.topics[i].partitions[j], -1};
        }
    }
    sl_pset_free(&set);
    return rc;
}

int sl_group_describe(sl_client *cl, const char *group, sl_group_info **out, char *errbuf,
                      size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items, *members, *offsets;
    size_t n, nm = 0, no = 0;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_DESCRIBE_GROUP, &pk);
    msgpack_pack_array(&pk, 1);
    sl_mp_pack_str(&pk, group);
    msgpack_unpacked_init(&up);
    int32_t coordinator = 0;
    int rc = coordinator_call(cl, group, id, &up, 8, &items, &n, errbuf, errlen, &coordinator);
    int64_t generation = 0;
    if (rc == 0 && (sl_mp_int(&items[5], &generation) || sl_mp_array(&items[6], 0, &members, &nm) ||
                    sl_mp_array(&items[7], 0, &offsets, &no)))
        rc = SL_EPROTO;
    sl_group_info *info = NULL;
    if (rc == 0 && (info = calloc(1, sizeof(*info))) == NULL)
        rc = SL_ENOMEM;
    if (rc == 0) {
        info->group = obj_strdup(&items[2]);
        info->state = obj_strdup(&items[3]);
        info->protocol = obj_strdup(&items[4]);
        info->generation = (int32_t)generation;
        info->coordinator = coordinator;
        info->members = calloc(nm ? nm : 1, sizeof(*info->members));
        info->offsets = calloc(no ? no : 1, sizeof(*info->offsets));
        if (!info->group || !info->state || !info->protocol || !info->members || !info->offsets)
            rc = SL_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < nm; i++) {
        const msgpack_object *f;
        size_t fn;
        sl_group_member_info *m = &info->members[info->nmembers++];
        if (sl_mp_array(&members[i], 4, &f, &fn)) {
            rc = SL_EPROTO;
            break;
        }
        m->member_id = obj_strdup(&f[0]);
        m->client_id = obj_strdup(&f[1]);
        m->host = obj_strdup(&f[2]);
        if (!m->member_id || !m->client_id || !m->host)
            rc = SL_EPROTO;
        else
            rc = member_partitions(&f[3], m);
    }
    for (size_t i = 0; rc == 0 && i < no; i++) {
        const msgpack_object *f;
        size_t fn;
        int64_t v[5];
        sl_group_offset_info *o = &info->offsets[info->noffsets++];
        if (sl_mp_array(&offsets[i], 6, &f, &fn) || (o->topic = obj_strdup(&f[0])) == NULL) {
            rc = SL_EPROTO;
            break;
        }
        for (int k = 0; rc == 0 && k < 5; k++)
            rc = sl_mp_int(&f[k + 1], &v[k]);
        o->partition = (int32_t)v[0];
        o->committed = v[1];
        o->end_offset = v[2];
        o->lag = v[3];
        o->lag_ms = v[4];
    }
    msgpack_unpacked_destroy(&up);
    if (rc) {
        sl_group_info_free(info);
        if (rc == SL_EPROTO && errbuf && errlen)
            snprintf(errbuf, errlen, "malformed answer from the broker");
        return rc;
    }
    *out = info;
    return 0;
}

void sl_group_info_free(sl_group_info *info) {
    if (info == NULL)
        return;
    for (size_t i = 0; i < info->nmembers; i++) {
        free(info->members[i].member_id);
        free(info->members[i].client_id);
        free(info->members[i].host);
        sl_topic_partitions_free(info->members[i].partitions, info->members[i].npartitions);
    }
    free(info->members);
    for (size_t i = 0; i < info->noffsets; i++)
        free(info->offsets[i].topic);
    free(info->offsets);
    free(info->group);
    free(info->state);
    free(info->protocol);
    free(info);
}

int sl_group_delete(sl_client *cl, const char *group, char *errbuf, size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t n;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_DELETE_GROUP, &pk);
    msgpack_pack_array(&pk, 1);
    sl_mp_pack_str(&pk, group);
    msgpack_unpacked_init(&up);
    int rc = coordinator_call(cl, group, id, &up, 2, &items, &n, errbuf, errlen, NULL);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int sl_group_set_offsets(sl_client *cl, const char *group, const sl_topic_partition *offsets,
                         size_t n, char *errbuf, size_t errlen) {
    msgpack_packer pk;
    msgpack_unpacked up;
    const msgpack_object *items;
    size_t k;
    uint32_t id = sl_rpc_next_id(cl->rpc);
    sl_cl_begin(&cl->req, id, SL_API_OFFSET_COMMIT, &pk);
    msgpack_pack_array(&pk, 4);
    sl_mp_pack_str(&pk, group);
    msgpack_pack_int32(&pk, -1); /* a tool, not a member: only for a group with no members */
    sl_mp_pack_str(&pk, "");
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_array(&pk, 2);
        sl_mp_pack_str(&pk, offsets[i].topic);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_int32(&pk, offsets[i].partition);
        msgpack_pack_int64(&pk, offsets[i].offset);
        sl_mp_pack_str(&pk, "");
    }
    msgpack_unpacked_init(&up);
    int rc = coordinator_call(cl, group, id, &up, 2, &items, &k, errbuf, errlen, NULL);
    msgpack_unpacked_destroy(&up);
    return rc;
}

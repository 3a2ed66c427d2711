#include "net/native.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

/* Bounds on what one request may ask for: a hostile request must not make the broker allocate
 * without limit. */
#define MAX_TOPICS_PER_REQUEST 10000
#define MAX_PARTS_PER_TOPIC 100000
#define MAX_CONFIGS 1000

size_t sl_mp_bin_begin(sl_buf *b) {
    uint8_t hdr[5] = {0xc6, 0, 0, 0, 0}; /* bin 32: fixed size, so it can be patched */
    size_t at = b->len;
    sl_buf_append(b, hdr, sizeof(hdr));
    return at;
}

void sl_mp_bin_end(sl_buf *b, size_t at) {
    if (at + 5 <= b->len)
        sl_be32_put(b->data + at + 1, (uint32_t)(b->len - at - 5));
}

static int mp_i32(const msgpack_object *o, int32_t *v) {
    int64_t x;
    if (sl_mp_int(o, &x) || x < INT32_MIN || x > INT32_MAX)
        return SL_EPROTO;
    *v = (int32_t)x;
    return 0;
}

static char *mp_strdup(const msgpack_object *o) {
    const char *s;
    size_t n;
    if (sl_mp_str(o, &s, &n) || (n > 0 && memchr(s, '\0', n)))
        return NULL;
    return n > 0 ? strndup(s, n) : strdup("");
}

/* [[topic, [part...]]...] where each part is an array decoded by 'fields'. */
typedef int (*part_decoder)(const msgpack_object *items, size_t n, sl_native_part *part);

static int decode_topics(const msgpack_object *o, sl_native_req *req, size_t part_fields,
                         part_decoder decode_part) {
    const msgpack_object *topics;
    size_t nt;
    if (sl_mp_array(o, 0, &topics, &nt) || nt > MAX_TOPICS_PER_REQUEST)
        return SL_EPROTO;
    req->topics = calloc(nt ? nt : 1, sizeof(*req->topics));
    if (req->topics == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < nt; i++) {
        const msgpack_object *t, *parts;
        size_t tn, np;
        sl_native_topic *topic = &req->topics[i];
        if (sl_mp_array(&topics[i], 2, &t, &tn) ||
            sl_mp_strcpy(&t[0], topic->name, sizeof(topic->name)) ||
            sl_mp_array(&t[1], 0, &parts, &np) || np > MAX_PARTS_PER_TOPIC)
            return SL_EPROTO;
        req->ntopics = i + 1;
        topic->parts = calloc(np ? np : 1, sizeof(*topic->parts));
        if (topic->parts == NULL)
            return SL_ENOMEM;
        for (size_t j = 0; j < np; j++) {
            const msgpack_object *p;
            size_t pn;
            if (sl_mp_array(&parts[j], part_fields, &p, &pn) ||
                mp_i32(&p[0], &topic->parts[j].partition) || decode_part(p, pn, &topic->parts[j]))
                return SL_EPROTO;
            topic->nparts = j + 1;
        }
    }
    return 0;
}

static int produce_part(const msgpack_object *p, size_t n, sl_native_part *part) {
    (void)n;
    if (p[1].type != MSGPACK_OBJECT_BIN)
        return SL_EPROTO;
    /* The bin points into the request frame, which the handler owns and may change. */
    part->data = (uint8_t *)p[1].via.bin.ptr;
    part->len = p[1].via.bin.size;
    return 0;
}

static int fetch_part(const msgpack_object *p, size_t n, sl_native_part *part) {
    (void)n;
    if (sl_mp_int(&p[1], &part->offset) || mp_i32(&p[2], &part->max_bytes) || part->max_bytes < 0)
        return SL_EPROTO;
    return 0;
}

static int list_part(const msgpack_object *p, size_t n, sl_native_part *part) {
    (void)n;
    return sl_mp_int(&p[1], &part->offset);
}

static int decode_configs(const msgpack_object *o, sl_native_req *req) {
    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size > MAX_CONFIGS)
        return SL_EPROTO;
    size_t n = o->via.map.size;
    req->configs = calloc(n ? n : 1, sizeof(*req->configs));
    if (req->configs == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        req->configs[i].key = mp_strdup(&o->via.map.ptr[i].key);
        req->configs[i].value = mp_strdup(&o->via.map.ptr[i].val);
        req->nconfigs = i + 1;
        if (req->configs[i].key == NULL || req->configs[i].value == NULL)
            return SL_EPROTO;
    }
    return 0;
}

static int decode_body(sl_native_req *req, const msgpack_object *a, size_t n) {
    switch (req->api) {
    case SL_API_PRODUCE:
        if (n < 3 || mp_i32(&a[0], &req->acks) || mp_i32(&a[1], &req->timeout_ms))
            return SL_EPROTO;
        if (req->acks != 0 && req->acks != 1 && req->acks != -1)
            return SL_EPROTO;
        return decode_topics(&a[2], req, 2, produce_part);
    case SL_API_FETCH:
        if (n < 4 || mp_i32(&a[0], &req->max_wait_ms) || mp_i32(&a[1], &req->min_bytes) ||
            mp_i32(&a[2], &req->max_bytes) || req->max_wait_ms < 0 || req->max_bytes < 0 ||
            (n > 4 && (mp_i32(&a[4], &req->isolation) || req->isolation < 0 ||
                       req->isolation > 1)))
            return SL_EPROTO;
        return decode_topics(&a[3], req, 3, fetch_part);
    case SL_API_LIST_OFFSETS:
        if (n < 1)
            return SL_EPROTO;
        return decode_topics(&a[0], req, 2, list_part);
    case SL_API_METADATA:
        if (n < 1)
            return SL_EPROTO;
        if (a[0].type == MSGPACK_OBJECT_NIL) {
            req->all_topics = true;
            return 0;
        }
        {
            const msgpack_object *names;
            size_t nn;
            if (sl_mp_array(&a[0], 0, &names, &nn) || nn > MAX_TOPICS_PER_REQUEST)
                return SL_EPROTO;
            req->topics = calloc(nn ? nn : 1, sizeof(*req->topics));
            if (req->topics == NULL)
                return SL_ENOMEM;
            for (size_t i = 0; i < nn; i++) {
                if (sl_mp_strcpy(&names[i], req->topics[i].name, sizeof(req->topics[i].name)))
                    return SL_EPROTO;
                req->ntopics = i + 1;
            }
        }
        return 0;
    case SL_API_CREATE_TOPIC:
        if (n < 3 || sl_mp_strcpy(&a[0], req->name, sizeof(req->name)) ||
            mp_i32(&a[1], &req->partitions) || (n > 3 && mp_i32(&a[3], &req->replication)))
            return SL_EPROTO;
        return decode_configs(&a[2], req);
    case SL_API_ALTER_TOPIC:
        if (n < 2 || sl_mp_strcpy(&a[0], req->name, sizeof(req->name)))
            return SL_EPROTO;
        return decode_configs(&a[1], req);
    case SL_API_DELETE_TOPIC:
    case SL_API_DESCRIBE_TOPIC:
    case SL_API_FIND_COORDINATOR:
        if (n < 1 || sl_mp_strcpy(&a[0], req->name, sizeof(req->name)))
            return SL_EPROTO;
        return 0;
    case SL_API_LIST_TOPICS:
        return 0;
    case SL_API_INIT_PRODUCER_ID:
    case SL_API_CLUSTER_STATUS:
    case SL_API_CLUSTER_REBALANCE:
        req->body = a;
        req->nbody = n;
        return 0;
    case SL_API_CLUSTER_REGISTER:
    case SL_API_REPLICA_FETCH:
    case SL_API_ALTER_ISR:
        if (n < (req->api == SL_API_CLUSTER_REGISTER ? 2u : req->api == SL_API_ALTER_ISR ? 6u : 4u))
            return SL_EPROTO;
        req->body = a;
        req->nbody = n;
        return 0;
    case SL_API_END_TXN:
    case SL_API_TXN_OFFSET_COMMIT:
        if (n < (req->api == SL_API_END_TXN ? 4u : 7u) ||
            sl_mp_strcpy(&a[0], req->name, sizeof(req->name))) /* the transactional id */
            return SL_EPROTO;
        req->body = a;
        req->nbody = n;
        return 0;
    case SL_API_JOIN_GROUP:
    case SL_API_SYNC_GROUP:
    case SL_API_HEARTBEAT:
    case SL_API_LEAVE_GROUP:
    case SL_API_OFFSET_COMMIT:
    case SL_API_OFFSET_FETCH:
    case SL_API_LIST_GROUPS:
    case SL_API_DESCRIBE_GROUP:
    case SL_API_DELETE_GROUP: {
        static const size_t min_fields[] = {7, 4, 3, 2, 4, 2, 0, 1, 1};
        if (n < min_fields[req->api - SL_API_JOIN_GROUP])
            return SL_EPROTO;
        if (req->api != SL_API_LIST_GROUPS &&
            sl_mp_strcpy(&a[0], req->name, sizeof(req->name))) /* the group id */
            return SL_EPROTO;
        req->body = a;
        req->nbody = n;
        return 0;
    }
    default:
        return SL_EUNSUPPORTED;
    }
}

int sl_native_decode_request(uint8_t *frame, size_t len, sl_native_req *req) {
    memset(req, 0, sizeof(*req));
    msgpack_unpacked_init(&req->unpacked);
    if (len < 6)
        return SL_EPROTO;
    req->id = sl_be32_get(frame);
    req->api = sl_be16_get(frame + 4);
    size_t off = 0;
    if (sl_mp_check(frame + 6, len - 6) ||
        msgpack_unpack_next(&req->unpacked, (const char *)frame + 6, len - 6, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != len - 6)
        return SL_EPROTO;
    const msgpack_object *a;
    size_t n;
    if (sl_mp_array(&req->unpacked.data, 0, &a, &n))
        return SL_EPROTO;
    return decode_body(req, a, n);
}

void sl_native_req_free(sl_native_req *req) {
    for (size_t i = 0; i < req->ntopics; i++)
        free(req->topics[i].parts);
    free(req->topics);
    for (size_t i = 0; i < req->nconfigs; i++) {
        free(req->configs[i].key);
        free(req->configs[i].value);
    }
    free(req->configs);
    msgpack_unpacked_destroy(&req->unpacked);
    memset(req, 0, sizeof(*req));
}

int sl_native_decode_response(const uint8_t *body, size_t len, msgpack_unpacked *unpacked,
                              size_t min, const msgpack_object **items, size_t *n, int *status,
                              char *msg, size_t msglen) {
    size_t off = 0;
    int64_t st;
    if (msglen)
        msg[0] = '\0';
    if (sl_mp_check(body, len) ||
        msgpack_unpack_next(unpacked, (const char *)body, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        sl_mp_array(&unpacked->data, min < 2 ? 2 : min, items, n) || sl_mp_int(&(*items)[0], &st))
        return SL_EPROTO;
    *status = (int)st;
    const char *s;
    size_t sn;
    if (msglen && sl_mp_str(&(*items)[1], &s, &sn) == 0) {
        if (sn >= msglen)
            sn = msglen - 1;
        if (sn > 0) /* an empty string's pointer is NULL */
            memcpy(msg, s, sn);
        msg[sn] = '\0';
    }
    return 0;
}

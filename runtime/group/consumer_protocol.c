#include "group/consumer_protocol.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

/* Bounds on what a decoder accepts: metadata comes from clients. */
#define MAX_TOPICS 100000
#define MAX_PARTITIONS 1000000

int sl_pset_add(sl_partition_set *s, const char *topic, int32_t partition) {
    sl_topic_parts *t = NULL;
    for (size_t i = 0; i < s->ntopics; i++)
        if (strcmp(s->topics[i].topic, topic) == 0)
            t = &s->topics[i];
    if (t == NULL) {
        sl_topic_parts *v = realloc(s->topics, (s->ntopics + 1) * sizeof(*v));
        if (v == NULL)
            return SL_ENOMEM;
        s->topics = v;
        t = &v[s->ntopics];
        memset(t, 0, sizeof(*t));
        if ((t->topic = strdup(topic)) == NULL)
            return SL_ENOMEM;
        s->ntopics++;
    }
    for (size_t i = 0; i < t->n; i++)
        if (t->partitions[i] == partition)
            return 0;
    int32_t *p = realloc(t->partitions, (t->n + 1) * sizeof(*p));
    if (p == NULL)
        return SL_ENOMEM;
    t->partitions = p;
    p[t->n++] = partition;
    return 0;
}

int sl_pset_contains(const sl_partition_set *s, const char *topic, int32_t partition) {
    for (size_t i = 0; i < s->ntopics; i++) {
        if (strcmp(s->topics[i].topic, topic) != 0)
            continue;
        for (size_t j = 0; j < s->topics[i].n; j++)
            if (s->topics[i].partitions[j] == partition)
                return 1;
    }
    return 0;
}

size_t sl_pset_count(const sl_partition_set *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->ntopics; i++)
        n += s->topics[i].n;
    return n;
}

void sl_pset_free(sl_partition_set *s) {
    for (size_t i = 0; i < s->ntopics; i++) {
        free(s->topics[i].topic);
        free(s->topics[i].partitions);
    }
    free(s->topics);
    s->topics = NULL;
    s->ntopics = 0;
}

/* ---- writing ---- */

static int put16(sl_buf *b, int16_t v) {
    uint8_t x[2];
    sl_be16_put(x, (uint16_t)v);
    return sl_buf_append(b, x, 2);
}

static int put32(sl_buf *b, int32_t v) {
    uint8_t x[4];
    sl_be32_put(x, (uint32_t)v);
    return sl_buf_append(b, x, 4);
}

static int put_string(sl_buf *b, const char *s) {
    size_t n = strlen(s);
    if (n > INT16_MAX)
        return SL_EINVAL;
    int rc = put16(b, (int16_t)n);
    return rc ? rc : sl_buf_append(b, s, n);
}

static int put_pset(sl_buf *b, const sl_partition_set *s) {
    int rc = put32(b, (int32_t)s->ntopics);
    for (size_t i = 0; rc == 0 && i < s->ntopics; i++) {
        rc = put_string(b, s->topics[i].topic);
        if (rc == 0)
            rc = put32(b, (int32_t)s->topics[i].n);
        for (size_t j = 0; rc == 0 && j < s->topics[i].n; j++)
            rc = put32(b, s->topics[i].partitions[j]);
    }
    return rc;
}

int sl_subscription_encode(const sl_subscription *sub, sl_buf *out) {
    int rc = put16(out, 1);
    if (rc == 0)
        rc = put32(out, (int32_t)sub->ntopics);
    for (size_t i = 0; rc == 0 && i < sub->ntopics; i++)
        rc = put_string(out, sub->topics[i]);
    if (rc == 0)
        rc = put32(out, -1); /* user_data: null */
    if (rc == 0)
        rc = put_pset(out, &sub->owned);
    return rc;
}

int sl_assignment_encode(const sl_partition_set *parts, sl_buf *out) {
    int rc = put16(out, 1);
    if (rc == 0)
        rc = put_pset(out, parts);
    if (rc == 0)
        rc = put32(out, -1); /* user_data: null */
    return rc;
}

/* ---- reading ---- */

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static int get16(reader *r, int16_t *v) {
    if (r->end - r->p < 2)
        return SL_EPROTO;
    *v = (int16_t)sl_be16_get(r->p);
    r->p += 2;
    return 0;
}

static int get32(reader *r, int32_t *v) {
    if (r->end - r->p < 4)
        return SL_EPROTO;
    *v = (int32_t)sl_be32_get(r->p);
    r->p += 4;
    return 0;
}

static int get_string(reader *r, char **s) {
    int16_t n;
    if (get16(r, &n) || n < 0 || r->end - r->p < n)
        return SL_EPROTO;
    if (memchr(r->p, '\0', (size_t)n))
        return SL_EPROTO;
    if ((*s = strndup((const char *)r->p, (size_t)n)) == NULL)
        return SL_ENOMEM;
    r->p += n;
    return 0;
}

static int skip_bytes(reader *r) {
    int32_t n;
    if (get32(r, &n) || n < -1 || (n > 0 && r->end - r->p < n))
        return SL_EPROTO;
    if (n > 0)
        r->p += n;
    return 0;
}

static int get_pset(reader *r, sl_partition_set *s) {
    int32_t nt;
    if (get32(r, &nt) || nt < 0 || nt > MAX_TOPICS || nt > r->end - r->p)
        return SL_EPROTO;
    for (int32_t i = 0; i < nt; i++) {
        char *topic;
        int32_t np;
        int rc = get_string(r, &topic);
        if (rc)
            return rc;
        if (get32(r, &np) || np < 0 || np > MAX_PARTITIONS || np > (r->end - r->p) / 4) {
            free(topic);
            return SL_EPROTO;
        }
        for (int32_t j = 0; rc == 0 && j < np; j++) {
            int32_t part;
            rc = get32(r, &part);
            if (rc == 0)
                rc = sl_pset_add(s, topic, part);
        }
        free(topic);
        if (rc)
            return rc;
    }
    return 0;
}

int sl_subscription_decode(const uint8_t *p, size_t len, sl_subscription *sub) {
    reader r = {p, p + len};
    int16_t version;
    int32_t n;
    memset(sub, 0, sizeof(*sub));
    int rc = get16(&r, &version);
    if (rc == 0 && (version < 0 || get32(&r, &n) || n < 0 || n > MAX_TOPICS || n > r.end - r.p))
        rc = SL_EPROTO;
    if (rc == 0 && (sub->topics = calloc((size_t)n + 1, sizeof(char *))) == NULL)
        rc = SL_ENOMEM;
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        rc = get_string(&r, &sub->topics[i]);
        if (rc == 0)
            sub->ntopics++;
    }
    if (rc == 0)
        rc = skip_bytes(&r);
    if (rc == 0 && version >= 1 && r.p < r.end)
        rc = get_pset(&r, &sub->owned);
    if (rc)
        sl_subscription_free(sub);
    return rc;
}

void sl_subscription_free(sl_subscription *sub) {
    for (size_t i = 0; i < sub->ntopics; i++)
        free(sub->topics[i]);
    free(sub->topics);
    sl_pset_free(&sub->owned);
    memset(sub, 0, sizeof(*sub));
}

int sl_assignment_decode(const uint8_t *p, size_t len, sl_partition_set *parts) {
    reader r = {p, p + len};
    int16_t version;
    memset(parts, 0, sizeof(*parts));
    if (len == 0)
        return 0; /* an empty assignment (Kafka sends zero bytes for "nothing") */
    int rc = get16(&r, &version);
    if (rc == 0 && version < 0)
        rc = SL_EPROTO;
    if (rc == 0)
        rc = get_pset(&r, parts);
    if (rc)
        sl_pset_free(parts);
    return rc;
}

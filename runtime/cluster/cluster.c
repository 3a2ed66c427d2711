#include "cluster/cluster.h"

#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/mp.h"
#include "base/mpcheck.h"
#include "cluster/quorum.h"
#include "sluice/err.h"

#define MAX_CONTROLLERS 16
#define PROPOSE_TIMEOUT_MS 3000

struct sl_cluster {
    int32_t node_id;
    sl_quorum *quorum;
    size_t voters;
    int32_t voter_ids[MAX_CONTROLLERS];
    pthread_mutex_t lock; /* the registry */
    sl_cluster_member *members;
    size_t nmembers, cap;
};

int sl_cluster_decode_record(const uint8_t *data, size_t len, sl_cluster_member *m) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = SL_EINVAL;
    bool type_ok = false, id_ok = false, url_ok = false;
    if (sl_mp_check(data, len) == 0 &&
        msgpack_unpack_next(&up, (const char *)data, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &up.data.via.map;
        for (uint32_t i = 0; i < map->size; i++) {
            const msgpack_object *k = &map->ptr[i].key, *v = &map->ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR)
                continue;
            const char *ks = k->via.str.ptr;
            size_t kl = k->via.str.size;
            if (kl == 1 && ks[0] == 't')
                type_ok = v->type == MSGPACK_OBJECT_STR && v->via.str.size == 6 &&
                          memcmp(v->via.str.ptr, "broker", 6) == 0;
            else if (kl == 2 && memcmp(ks, "id", 2) == 0 &&
                     v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= 1 &&
                     v->via.u64 <= INT32_MAX) {
                m->id = (int32_t)v->via.u64;
                id_ok = true;
            } else if (kl == 3 && memcmp(ks, "url", 3) == 0 && v->type == MSGPACK_OBJECT_STR &&
                       v->via.str.size > 0 && v->via.str.size < sizeof(m->url) &&
                       memchr(v->via.str.ptr, '\0', v->via.str.size) == NULL) {
                memcpy(m->url, v->via.str.ptr, v->via.str.size);
                m->url[v->via.str.size] = '\0';
                url_ok = true;
            }
        }
        if (type_ok && id_ok && url_ok)
            rc = 0;
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* On the quorum's thread, for every committed record, on every node. */
static void apply(void *arg, const uint8_t *data, size_t len) {
    sl_cluster *c = arg;
    sl_cluster_member m;
    if (sl_cluster_decode_record(data, len, &m) != 0) {
        sl_warn("cluster", "a metadata record of %zu bytes is not understood: skipped", len);
        return;
    }
    pthread_mutex_lock(&c->lock);
    size_t i = 0;
    while (i < c->nmembers && c->members[i].id < m.id)
        i++;
    bool changed = true;
    if (i < c->nmembers && c->members[i].id == m.id) {
        changed = strcmp(c->members[i].url, m.url) != 0;
        c->members[i] = m;
    } else {
        if (c->nmembers == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 8;
            sl_cluster_member *p = realloc(c->members, cap * sizeof(*p));
            if (p == NULL) {
                pthread_mutex_unlock(&c->lock);
                sl_error("cluster", "out of memory registering broker %" PRId32, m.id);
                return;
            }
            c->members = p;
            c->cap = cap;
        }
        memmove(c->members + i + 1, c->members + i, (c->nmembers - i) * sizeof(m));
        c->members[i] = m;
        c->nmembers++;
    }
    pthread_mutex_unlock(&c->lock);
    if (changed)
        sl_info("cluster", "broker %" PRId32 " is at %s", m.id, m.url);
}

int sl_cluster_start(const sl_cluster_conf *conf, sl_cluster **out, char *errbuf, size_t errlen) {
    sl_quorum_peer peers[MAX_CONTROLLERS];
    size_t n;
    int rc = sl_quorum_parse_peers(conf->controllers, peers, MAX_CONTROLLERS, &n, errbuf, errlen);
    if (rc)
        return rc;
    const sl_quorum_peer *self = NULL;
    for (size_t i = 0; i < n; i++)
        if (peers[i].id == conf->node_id)
            self = &peers[i];
    if (self == NULL) {
        snprintf(errbuf, errlen, "--controllers does not name this node (--node-id %" PRId32
                 "); every node of a cluster is a controller", conf->node_id);
        return SL_EINVAL;
    }
    if (conf->controller_listen && strcmp(conf->controller_listen, self->address) != 0) {
        snprintf(errbuf, errlen, "--controller-listen %s differs from this node's entry in "
                 "--controllers (%s)", conf->controller_listen, self->address);
        return SL_EINVAL;
    }
    sl_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SL_ENOMEM;
    c->node_id = conf->node_id;
    c->voters = n;
    for (size_t i = 0; i < n; i++)
        c->voter_ids[i] = peers[i].id;
    pthread_mutex_init(&c->lock, NULL);
    char dir[4096], marker[4200];
    snprintf(dir, sizeof(dir), "%s/quorum", conf->data_dir);
    snprintf(marker, sizeof(marker), "%s/quorum.joined", conf->data_dir);
    /* A node that was a voter and lost its quorum files would bootstrap as a fresh voter with
     * no log and no vote, and could help elect a leader that lacks committed entries. */
    struct stat st;
    if (stat(marker, &st) == 0 && stat(dir, &st) != 0) {
        snprintf(errbuf, errlen, "%s is gone although this node has been a voter (%s): restore "
                 "it, or remove %s to join as a new voter knowing that risk", dir, marker,
                 marker);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return SL_EINVAL;
    }
    sl_quorum_conf qc = {conf->node_id, peers, n, dir, apply, c};
    rc = sl_quorum_start(&qc, &c->quorum, errbuf, errlen);
    if (rc == 0 && stat(marker, &st) != 0 &&
        sl_fs_write_atomic(marker, conf->controllers, strlen(conf->controllers)) != 0)
        sl_warn("cluster", "cannot write %s", marker);
    if (rc) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sl_cluster_stop(sl_cluster *c) {
    if (c == NULL)
        return;
    sl_quorum_stop(c->quorum);
    pthread_mutex_destroy(&c->lock);
    free(c->members);
    free(c);
}

static bool is_voter(const sl_cluster *c, int32_t id) {
    for (size_t i = 0; i < c->voters; i++)
        if (c->voter_ids[i] == id)
            return true;
    return false;
}

int sl_cluster_register(sl_cluster *c, int32_t id, const char *url) {
    /* Every node is a controller: an id outside the quorum is nobody's, and a registration that
     * is not an address would break forwarding for every follower. */
    if (!is_voter(c, id) || url == NULL || strlen(url) >= sizeof(((sl_cluster_member *)0)->url) ||
        (strncmp(url, "tcp://", 6) != 0 && strncmp(url, "ipc://", 6) != 0) ||
        strpbrk(url, "\"\\ \t\r\n") != NULL)
        return SL_EINVAL;
    if (sl_quorum_leader(c->quorum) != c->node_id)
        return SL_ENOTLEADER;
    sl_buf b = SL_BUF_INIT;
    msgpack_packer pk;
    sl_mp_packer_init(&pk, &b);
    msgpack_pack_map(&pk, 3);
    sl_mp_pack_str(&pk, "t");
    sl_mp_pack_str(&pk, "broker");
    sl_mp_pack_str(&pk, "id");
    msgpack_pack_int32(&pk, id);
    sl_mp_pack_str(&pk, "url");
    sl_mp_pack_str(&pk, url);
    int rc = sl_quorum_propose(c->quorum, b.data, b.len, PROPOSE_TIMEOUT_MS);
    sl_buf_free(&b);
    return rc;
}

int sl_cluster_members(sl_cluster *c, sl_cluster_member **out, size_t *n, int32_t *leader,
                       size_t *voters) {
    pthread_mutex_lock(&c->lock);
    *n = c->nmembers;
    *out = malloc((c->nmembers ? c->nmembers : 1) * sizeof(**out));
    if (*out && c->nmembers)
        memcpy(*out, c->members, c->nmembers * sizeof(**out));
    pthread_mutex_unlock(&c->lock);
    *leader = sl_quorum_leader(c->quorum);
    *voters = c->voters;
    return *out ? 0 : SL_ENOMEM;
}

/* libFuzzer target for what the cluster reads from its Raft log and its command line: a
 * metadata record (sl_cluster_decode_record) and a --controllers list
 * (sl_quorum_parse_peers). Whatever the bytes, each answers 0 with a well-formed result or
 * SL_EINVAL, and never reads outside the input; a record that decodes encodes again to the
 * same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "cluster/record.h"
#include "cluster/quorum.h"
#include "sluice/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *p = malloc(size ? size : 1); /* exact size: an over-read shows */
    if (p == NULL)
        return 0;
    if (size)
        memcpy(p, data, size);
    sl_cluster_record r;
    int rc = sl_cluster_decode_record(p, size, &r);
    CHECK(rc == 0 || rc == SL_EINVAL || rc == SL_ENOMEM);
    if (rc == 0) {
        if (r.type == SL_CREC_BROKER)
            CHECK(r.member.id >= 1 && r.member.url[0] != '\0');
        else
            CHECK(r.name[0] != '\0' && memchr(r.name, '\0', sizeof(r.name)) != NULL);
        if (r.type == SL_CREC_TOPIC)
            for (int32_t i = 0; i < r.npartitions; i++)
                CHECK(r.parts[i].nreplicas >= 1 && r.parts[i].nreplicas <= SL_MAX_REPLICAS &&
                      r.parts[i].leader == r.parts[i].replicas[0]);
        /* What decodes encodes again to a record that decodes the same. */
        sl_buf again = SL_BUF_INIT;
        sl_cluster_record r2;
        CHECK(sl_cluster_encode_record(&r, &again) == 0);
        CHECK(sl_cluster_decode_record(again.data, again.len, &r2) == 0);
        CHECK(r2.type == r.type && strcmp(r2.name, r.name) == 0 &&
              r2.member.id == r.member.id && r2.npartitions == r.npartitions &&
              r2.nconfigs == r.nconfigs && r2.state.leader == r.state.leader &&
              r2.state.nisr == r.state.nisr);
        sl_cluster_record_free(&r2);
        sl_buf_free(&again);
        sl_cluster_record_free(&r);
    }
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
        sl_quorum_peer peers[8];
        size_t n = 0;
        char err[256];
        rc = sl_quorum_parse_peers(text, peers, 8, &n, err, sizeof(err));
        CHECK(rc == 0 || rc == SL_EINVAL);
        if (rc == 0)
            for (size_t i = 0; i < n; i++)
                CHECK(peers[i].id >= 1 && memchr(peers[i].address, '\0', 64) != NULL);
        free(text);
    }
    free(p);
    return 0;
}

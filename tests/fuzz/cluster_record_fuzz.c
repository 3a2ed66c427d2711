/* libFuzzer target for what the cluster reads from its Raft log and its command line: a
 * metadata record (sl_cluster_decode_record) and a --controllers list
 * (sl_quorum_parse_peers). Whatever the bytes, each answers 0 with a well-formed result or
 * SL_EINVAL, and never reads outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
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
    sl_cluster_member m;
    int rc = sl_cluster_decode_record(p, size, &m);
    CHECK(rc == 0 || rc == SL_EINVAL);
    if (rc == 0)
        CHECK(m.id >= 1 && m.url[0] != '\0' && memchr(m.url, '\0', sizeof(m.url)) != NULL);
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

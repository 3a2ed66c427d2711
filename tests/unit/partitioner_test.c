/* Keys must land where Kafka's Java client and librdkafka's murmur2 partitioner put them. */
#include "sl_test.h"
#include "sluice/client.h"

/* Expected partitions computed from Kafka's murmur2 (Utils.murmur2 & 0x7fffffff) % n, whose
 * published test vectors are: "21" -> -973932308, "foobar" -> -790332482,
 * "a-little-bit-long-string" -> -985981536, "a-little-bit-longer-string" -> -1486304829,
 * "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8" -> -58897971, "abc" -> 479470107. */
static void murmur2_matches_kafka(void) {
    static const struct {
        const char *key;
        int32_t hash;
    } vectors[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        uint32_t positive = (uint32_t)vectors[i].hash & 0x7fffffff;
        /* A prime count larger than any hash bit pattern would hide: use INT32_MAX. */
        SL_EQ(sl_partition_for_key(vectors[i].key, strlen(vectors[i].key), INT32_MAX),
              (int32_t)(positive % INT32_MAX));
        SL_EQ(sl_partition_for_key(vectors[i].key, strlen(vectors[i].key), 6),
              (int32_t)(positive % 6));
    }
}

static void same_key_same_partition(void) {
    for (int32_t n = 1; n < 50; n++) {
        int32_t p = sl_partition_for_key("user-42", 7, n);
        SL_TRUE(p >= 0 && p < n);
        SL_EQ(sl_partition_for_key("user-42", 7, n), p);
    }
    SL_EQ(sl_partition_for_key("", 0, 6), sl_partition_for_key("", 0, 6));
}

static void conf_refuses_bad_values(void) {
    char err[256];
    sl_conf *c = sl_conf_new();
    SL_FAIL(sl_conf_set(c, "no.such.key", "1", err, sizeof(err)), SL_EBADCONFIG);
    SL_TRUE(strstr(err, "no.such.key") != NULL);
    SL_FAIL(sl_conf_set(c, "acks", "2", err, sizeof(err)), SL_EBADCONFIG);
    SL_FAIL(sl_conf_set(c, "linger.ms", "-1", err, sizeof(err)), SL_EBADCONFIG);
    SL_FAIL(sl_conf_set(c, "batch.size", "12x", err, sizeof(err)), SL_EBADCONFIG);
    SL_STREQ(sl_conf_get(c, "acks"), "all");
    SL_PASS(sl_conf_set(c, "acks", "1", err, sizeof(err)));
    SL_STREQ(sl_conf_get(c, "acks"), "1");
    SL_TRUE(sl_conf_get(c, "nope") == NULL);
    sl_conf_destroy(c);
}

static void connect_refused_names_the_broker(void) {
    char err[256];
    sl_conf *c = sl_conf_new();
    sl_client *cl;
    /* Port 1 on loopback: nothing listens there. */
    SL_PASS(sl_conf_set(c, "bootstrap.servers", "tcp://127.0.0.1:1", err, sizeof(err)));
    SL_FAIL(sl_client_new(c, &cl, err, sizeof(err)), SL_ECONNREFUSED);
    SL_STREQ(err, "cannot reach broker at tcp://127.0.0.1:1");
    sl_conf_destroy(c);
}

SL_TESTS({"murmur2 matches Kafka's test vectors", murmur2_matches_kafka},
         {"the same key always gets the same partition", same_key_same_partition},
         {"client config refuses unknown keys and bad values", conf_refuses_bad_values},
         {"connecting to nothing names the broker", connect_refused_names_the_broker})

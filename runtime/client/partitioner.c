/* Kafka's default partitioner for keyed records: murmur2 of the key bytes, sign bit cleared,
 * modulo the partition count. The Java client and librdkafka's murmur2_random agree on it, so a
 * key lands on the same partition whichever client wrote it. */
#include "base/murmur2.h"
#include "sluice/client.h"

int32_t sl_partition_for_key(const void *key, size_t key_len, int32_t npartitions) {
    if (npartitions <= 0)
        return 0;
    return (int32_t)((sl_murmur2(key, key_len) & 0x7fffffff) % (uint32_t)npartitions);
}

/* Kafka's murmur2 hash of a key: the Java client's and librdkafka's default partitioner use it,
 * so a key lands on the same partition whichever client wrote it. */
#ifndef SL_BASE_MURMUR2_H
#define SL_BASE_MURMUR2_H

#include <stddef.h>
#include <stdint.h>

uint32_t sl_murmur2(const void *key, size_t len);

#endif

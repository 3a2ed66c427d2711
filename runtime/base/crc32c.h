/* CRC-32C (Castagnoli), the checksum of Kafka's RecordBatch v2. Uses the SSE4.2 instruction
 * when the CPU has it (several GB/s) and a slicing-by-8 table otherwise. */
#ifndef SL_BASE_CRC32C_H
#define SL_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends 'crc' (0 to start) over 'len' bytes of 'data'. */
uint32_t sl_crc32c(uint32_t crc, const void *data, size_t len);

#endif

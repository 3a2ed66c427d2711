/* Clocks: wall time for record timestamps and retention, monotonic time for timeouts. */
#ifndef SL_BASE_CLOCK_H
#define SL_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch (wall clock). */
int64_t sl_clock_wall_ms(void);

/* Monotonic milliseconds and nanoseconds, for deadlines and latencies. */
int64_t sl_clock_mono_ms(void);
int64_t sl_clock_mono_ns(void);

/* A CLOCK_REALTIME deadline 'ms' from now, for pthread_cond_timedwait. */
struct timespec sl_clock_deadline(int64_t ms);

#endif

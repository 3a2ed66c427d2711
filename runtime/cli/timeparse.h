/* Points in time as people type them on the command line (`sluice consume --from-time`). */
#ifndef SL_CLI_TIMEPARSE_H
#define SL_CLI_TIMEPARSE_H

#include <stdint.h>

/* Parses 's' into milliseconds since the Unix epoch. Accepted forms:
 *   ISO 8601        2026-11-24T10:00:00Z, 2026-11-24T10:00:00.123Z, 2026-11-24T10:00:00+01:00,
 *                   2026-11-24 10:00:00 (UTC), 2026-11-24 (midnight UTC); seconds may be left
 *                   out (10:00), a time without a zone is UTC, fractions beyond ms are dropped;
 *   epoch ms        1795514400000 (digits only);
 *   relative        -5h, -30m, -10s, -2d, -500ms: that long before 'now_ms'.
 * Returns 0 and sets *out_ms, or SL_EINVAL (and leaves *out_ms alone) for anything else. */
int sl_cli_parse_time(const char *s, int64_t now_ms, int64_t *out_ms);

#endif

/* Log lines for people: "2026-11-24T10:00:00.123Z INFO  log: rolled segment orders-3 at 1200".
 * Thread-safe; one line is written with a single write(2) so lines never interleave. */
#ifndef SL_BASE_LOG_H
#define SL_BASE_LOG_H

enum sl_log_level { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR };

/* Lines below 'level' are dropped. Default: SL_LOG_INFO. */
void sl_log_set_level(enum sl_log_level level);

/* Parses "debug", "info", "warn" or "error"; returns 0 or SL_EINVAL. */
int sl_log_parse_level(const char *name, enum sl_log_level *level);

/* 'module' names the part of the runtime that speaks ("log", "broker", "net"). */
void sl_log(enum sl_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sl_debug(mod, ...) sl_log(SL_LOG_DEBUG, mod, __VA_ARGS__)
#define sl_info(mod, ...) sl_log(SL_LOG_INFO, mod, __VA_ARGS__)
#define sl_warn(mod, ...) sl_log(SL_LOG_WARN, mod, __VA_ARGS__)
#define sl_error(mod, ...) sl_log(SL_LOG_ERROR, mod, __VA_ARGS__)

#endif

/* The broker's HTTP endpoint (nng's HTTP server): GET /health answers {"status":"ok"} while
 * the broker serves; GET /metrics answers every metric in Prometheus text format. */
#ifndef SL_NET_HTTP_H
#define SL_NET_HTTP_H

#include <stddef.h>

#include "net/native_handler.h"

typedef struct sl_http sl_http;

/* 'addr' is "host:port" (port 0 picks a free port); 'bound' gets "host:port" as bound. 'ctx'
 * (broker and group coordinator) must outlive the server. */
int sl_http_start(sl_native_ctx *ctx, const char *addr, sl_http **out, char *bound,
                  size_t boundlen);
void sl_http_stop(sl_http *h);

#endif

#include "net/http.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "base/log.h"
#include "sluice/err.h"

struct sl_http {
    nng_http_server *srv;
    nng_url *url;
};

static void reply(nng_aio *aio, uint16_t status, const char *type, const void *body, size_t len) {
    nng_http_res *res;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, status);
    nng_http_res_set_header(res, "Content-Type", type);
    nng_http_res_copy_data(res, body, len);
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void on_health(nng_aio *aio) {
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    sl_native_ctx *ctx = nng_http_handler_get_data(h);
    if (sl_broker_stopping(ctx->broker)) {
        static const char body[] = "{\"status\":\"stopping\"}\n";
        reply(aio, 503, "application/json", body, sizeof(body) - 1);
        return;
    }
    static const char body[] = "{\"status\":\"ok\"}\n";
    reply(aio, 200, "application/json", body, sizeof(body) - 1);
}

static void on_metrics(nng_aio *aio) {
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    sl_native_ctx *ctx = nng_http_handler_get_data(h);
    sl_buf out = SL_BUF_INIT;
    if (sl_broker_metrics(ctx->broker, &out) == 0 && sl_coord_metrics(ctx->coord, &out) == 0)
        reply(aio, 200, "text/plain; version=0.0.4", out.data, out.len);
    else
        reply(aio, 500, "text/plain", "out of memory\n", 14);
    sl_buf_free(&out);
}

static int add_handler(nng_http_server *srv, const char *path, void (*fn)(nng_aio *),
                       sl_native_ctx *ctx) {
    nng_http_handler *h;
    int rv = nng_http_handler_alloc(&h, path, fn);
    if (rv == 0)
        rv = nng_http_handler_set_method(h, "GET");
    if (rv == 0)
        rv = nng_http_handler_set_data(h, ctx, NULL);
    if (rv == 0)
        rv = nng_http_server_add_handler(srv, h);
    return rv;
}

int sl_http_start(sl_native_ctx *ctx, const char *addr, sl_http **out, char *bound,
                  size_t boundlen) {
    sl_http *h = calloc(1, sizeof(*h));
    char urlstr[300];
    if (h == NULL)
        return SL_ENOMEM;
    snprintf(urlstr, sizeof(urlstr), "http://%s", addr);
    int rv = nng_url_parse(&h->url, urlstr);
    if (rv == 0)
        rv = nng_http_server_hold(&h->srv, h->url);
    if (rv == 0)
        rv = add_handler(h->srv, "/health", on_health, ctx);
    if (rv == 0)
        rv = add_handler(h->srv, "/metrics", on_metrics, ctx);
    if (rv == 0)
        rv = nng_http_server_start(h->srv);
    if (rv) {
        sl_error("http", "cannot serve HTTP on %s: %s", addr, nng_strerror(rv));
        if (h->srv)
            nng_http_server_release(h->srv);
        if (h->url)
            nng_url_free(h->url);
        free(h);
        return SL_EINVAL;
    }
    nng_sockaddr sa;
    if (nng_http_server_get_addr(h->srv, &sa) == 0 && sa.s_family == NNG_AF_INET) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
        snprintf(bound, boundlen, "%s:%u", ip, ntohs(sa.s_in.sa_port));
    } else {
        snprintf(bound, boundlen, "%s", addr);
    }
    *out = h;
    return 0;
}

void sl_http_stop(sl_http *h) {
    if (h == NULL)
        return;
    nng_http_server_stop(h->srv);
    nng_http_server_release(h->srv);
    nng_url_free(h->url);
    free(h);
}

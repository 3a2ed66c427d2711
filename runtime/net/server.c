#include "net/server.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/supplemental/util/platform.h>

#include "base/log.h"
#include "sluice/err.h"

struct sl_conn {
    sl_server *srv;
    sl_stream *st;
    sl_buf out;
    void *state;
    sl_conn *next;
};

struct sl_server {
    nng_stream_listener *listener;
    pthread_t accept_thread;
    sl_frame_handler handler;
    sl_conn_state_free state_free;
    void *ctx;
    const char *proto;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when the last connection thread ends */
    sl_conn *conns;
    int nthreads;
    bool stopping;
};

static void unlink_conn(sl_server *srv, sl_conn *conn) {
    for (sl_conn **pp = &srv->conns; *pp; pp = &(*pp)->next) {
        if (*pp == conn) {
            *pp = conn->next;
            return;
        }
    }
}

static void *conn_main(void *arg) {
    sl_conn *conn = arg;
    sl_server *srv = conn->srv;
    for (;;) {
        uint8_t *frame;
        size_t len;
        int rc = sl_stream_read_frame(conn->st, &frame, &len);
        if (rc == SL_EPROTO)
            sl_warn("net", "%s client %s sent a frame over %u bytes; closing its connection",
                    srv->proto, sl_stream_peer(conn->st), SL_NET_MAX_FRAME);
        if (rc)
            break;
        if (srv->handler(srv->ctx, conn, frame, len) < 0)
            break;
    }
    sl_debug("net", "%s client %s disconnected", srv->proto, sl_stream_peer(conn->st));
    pthread_mutex_lock(&srv->lock);
    unlink_conn(srv, conn);
    pthread_mutex_unlock(&srv->lock);
    if (conn->state && srv->state_free)
        srv->state_free(conn->state);
    sl_stream_free(conn->st);
    sl_buf_free(&conn->out);
    free(conn);
    pthread_mutex_lock(&srv->lock);
    if (--srv->nthreads == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

static void *accept_main(void *arg) {
    sl_server *srv = arg;
    nng_aio *aio;
    if (nng_aio_alloc(&aio, NULL, NULL))
        return NULL;
    for (;;) {
        nng_stream_listener_accept(srv->listener, aio);
        nng_aio_wait(aio);
        int rv = nng_aio_result(aio);
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
            break;
        if (rv) {
            sl_warn("net", "%s accept failed: %s", srv->proto, nng_strerror(rv));
            nng_msleep(10);
            continue;
        }
        nng_stream *ns = nng_aio_get_output(aio, 0);
        sl_conn *conn = calloc(1, sizeof(*conn));
        if (conn == NULL || sl_stream_wrap(ns, &conn->st) != 0) {
            free(conn);
            nng_stream_free(ns);
            continue;
        }
        conn->srv = srv;
        pthread_mutex_lock(&srv->lock);
        if (srv->stopping) {
            pthread_mutex_unlock(&srv->lock);
            sl_stream_free(conn->st);
            free(conn);
            break;
        }
        conn->next = srv->conns;
        srv->conns = conn;
        srv->nthreads++;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, conn_main, conn) != 0) {
            unlink_conn(srv, conn);
            srv->nthreads--;
            sl_stream_free(conn->st);
            free(conn);
            sl_error("net", "cannot start a thread for a %s connection", srv->proto);
        }
        pthread_attr_destroy(&attr);
        pthread_mutex_unlock(&srv->lock);
    }
    nng_aio_free(aio);
    return NULL;
}

int sl_server_start(const char *url, const char *proto, sl_frame_handler handler, void *ctx,
                    sl_conn_state_free state_free, sl_server **out, char *bound,
                    size_t boundlen) {
    sl_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return SL_ENOMEM;
    srv->handler = handler;
    srv->ctx = ctx;
    srv->proto = proto;
    srv->state_free = state_free;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->idle, NULL);
    int rv = nng_stream_listener_alloc(&srv->listener, url);
    if (rv == 0)
        rv = nng_stream_listener_listen(srv->listener);
    if (rv) {
        sl_error("net", "cannot listen on %s for the %s protocol: %s", url, proto,
                 nng_strerror(rv));
        if (srv->listener)
            nng_stream_listener_free(srv->listener);
        free(srv);
        return rv == NNG_EADDRINUSE ? SL_EEXIST : SL_EINVAL;
    }
    int port = 0;
    if (strncmp(url, "tcp://", 6) == 0 &&
        nng_stream_listener_get_int(srv->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0) {
        const char *host = url + 6;
        const char *colon = strrchr(host, ':');
        int hostlen = colon ? (int)(colon - host) : (int)strlen(host);
        snprintf(bound, boundlen, "tcp://%.*s:%d", hostlen, host, port);
    } else {
        snprintf(bound, boundlen, "%s", url);
    }
    if (pthread_create(&srv->accept_thread, NULL, accept_main, srv) != 0) {
        nng_stream_listener_free(srv->listener);
        free(srv);
        return SL_ENOMEM;
    }
    *out = srv;
    return 0;
}

void sl_server_stop(sl_server *srv) {
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    pthread_mutex_unlock(&srv->lock);
    nng_stream_listener_close(srv->listener);
    pthread_join(srv->accept_thread, NULL);
    pthread_mutex_lock(&srv->lock);
    for (sl_conn *c = srv->conns; c; c = c->next)
        sl_stream_close(c->st);
    while (srv->nthreads > 0)
        pthread_cond_wait(&srv->idle, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
    nng_stream_listener_free(srv->listener);
    pthread_cond_destroy(&srv->idle);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

int sl_conn_writev(sl_conn *conn, const nng_iov *iov, unsigned n) {
    return sl_stream_writev(conn->st, iov, n);
}

sl_buf *sl_conn_buffer(sl_conn *conn) {
    return &conn->out;
}

const char *sl_conn_peer(const sl_conn *conn) {
    return sl_stream_peer(conn->st);
}

void *sl_conn_state(const sl_conn *conn) {
    return conn->state;
}

void sl_conn_set_state(sl_conn *conn, void *state) {
    conn->state = state;
}

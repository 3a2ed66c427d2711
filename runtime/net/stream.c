#include "net/stream.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice/err.h"

/* Smallest read posted to the socket: big enough that a burst of pipelined frames arrives in one
 * wake-up. */
#define RX_CHUNK (256u * 1024)

struct sl_stream {
    nng_stream *ns;
    nng_aio *rx_aio;
    nng_aio *tx_aio;
    pthread_mutex_t tx_lock;
    sl_buf rx;
    size_t rx_off; /* start of unread bytes in rx */
    char peer[64];
};

int sl_err_from_nng(int rv) {
    switch (rv) {
    case 0:
        return 0;
    case NNG_ECLOSED:
    case NNG_ECONNSHUT:
    case NNG_ECONNRESET:
    case NNG_ECANCELED:
        return SL_ECLOSED;
    case NNG_ETIMEDOUT:
        return SL_ETIMEDOUT;
    case NNG_ECONNREFUSED:
    case NNG_EADDRINVAL:
    case NNG_EUNREACHABLE:
        return SL_ECONNREFUSED;
    case NNG_ENOMEM:
        return SL_ENOMEM;
    case NNG_EINVAL:
        return SL_EINVAL;
    default:
        return SL_EIO;
    }
}

static void describe_peer(sl_stream *st) {
    nng_sockaddr sa;
    snprintf(st->peer, sizeof(st->peer), "local");
    if (nng_stream_get_addr(st->ns, NNG_OPT_REMADDR, &sa) != 0)
        return;
    if (sa.s_family == NNG_AF_INET) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
        snprintf(st->peer, sizeof(st->peer), "%s:%u", ip, ntohs(sa.s_in.sa_port));
    }
}

int sl_stream_wrap(nng_stream *ns, sl_stream **out) {
    sl_stream *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return SL_ENOMEM;
    if (nng_aio_alloc(&st->rx_aio, NULL, NULL) || nng_aio_alloc(&st->tx_aio, NULL, NULL)) {
        nng_aio_free(st->rx_aio);
        free(st);
        return SL_ENOMEM;
    }
    pthread_mutex_init(&st->tx_lock, NULL);
    st->ns = ns;
    /* Small responses must not wait for Nagle's timer. Not every transport has the option. */
    (void)nng_stream_set_bool(ns, NNG_OPT_TCP_NODELAY, true);
    describe_peer(st);
    *out = st;
    return 0;
}

int sl_stream_dial(const char *url, int timeout_ms, sl_stream **out) {
    nng_stream_dialer *d;
    nng_aio *aio;
    int rv = nng_stream_dialer_alloc(&d, url);
    if (rv)
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? SL_EINVAL : sl_err_from_nng(rv);
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_stream_dialer_free(d);
        return SL_ENOMEM;
    }
    nng_aio_set_timeout(aio, timeout_ms);
    nng_stream_dialer_dial(d, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    nng_stream *ns = rv == 0 ? nng_aio_get_output(aio, 0) : NULL;
    nng_aio_free(aio);
    nng_stream_dialer_free(d);
    if (rv)
        return rv == NNG_ETIMEDOUT ? SL_ECONNREFUSED : sl_err_from_nng(rv);
    int rc = sl_stream_wrap(ns, out);
    if (rc)
        nng_stream_free(ns);
    return rc;
}

static int rx_fill(sl_stream *st, size_t need) {
    /* Keep the unread bytes at the front so the buffer does not grow without bound. */
    if (st->rx_off > 0 && (st->rx_off > st->rx.cap / 2 || st->rx.len == st->rx_off)) {
        memmove(st->rx.data, st->rx.data + st->rx_off, st->rx.len - st->rx_off);
        st->rx.len -= st->rx_off;
        st->rx_off = 0;
    }
    while (st->rx.len - st->rx_off < need) {
        size_t want = need - (st->rx.len - st->rx_off);
        int rc = sl_buf_reserve(&st->rx, want > RX_CHUNK ? want : RX_CHUNK);
        if (rc)
            return rc;
        nng_iov iov = {st->rx.data + st->rx.len, st->rx.cap - st->rx.len};
        nng_aio_set_iov(st->rx_aio, 1, &iov);
        nng_stream_recv(st->ns, st->rx_aio);
        nng_aio_wait(st->rx_aio);
        int rv = nng_aio_result(st->rx_aio);
        if (rv)
            return sl_err_from_nng(rv);
        size_t n = nng_aio_count(st->rx_aio);
        if (n == 0)
            return SL_ECLOSED;
        st->rx.len += n;
    }
    return 0;
}

int sl_stream_read_frame(sl_stream *st, uint8_t **frame, size_t *len) {
    int rc = rx_fill(st, 4);
    if (rc)
        return rc;
    uint32_t size = sl_be32_get(st->rx.data + st->rx_off);
    if (size > SL_NET_MAX_FRAME)
        return SL_EPROTO;
    if ((rc = rx_fill(st, 4 + (size_t)size)) != 0)
        return rc;
    *frame = st->rx.data + st->rx_off + 4;
    *len = size;
    st->rx_off += 4 + (size_t)size;
    return 0;
}

int sl_stream_writev(sl_stream *st, const nng_iov *iov_in, unsigned n) {
    nng_iov iov[8];
    if (n > 8)
        return SL_EINVAL;
    memcpy(iov, iov_in, n * sizeof(*iov));
    pthread_mutex_lock(&st->tx_lock);
    int rc = 0;
    unsigned first = 0;
    while (first < n) {
        nng_aio_set_iov(st->tx_aio, n - first, iov + first);
        nng_stream_send(st->ns, st->tx_aio);
        nng_aio_wait(st->tx_aio);
        int rv = nng_aio_result(st->tx_aio);
        if (rv) {
            rc = sl_err_from_nng(rv);
            break;
        }
        /* A short write: skip what went out and send the rest. */
        size_t sent = nng_aio_count(st->tx_aio);
        while (first < n && sent >= iov[first].iov_len)
            sent -= iov[first++].iov_len;
        if (first < n) {
            iov[first].iov_buf = (uint8_t *)iov[first].iov_buf + sent;
            iov[first].iov_len -= sent;
        }
        while (first < n && iov[first].iov_len == 0)
            first++;
    }
    pthread_mutex_unlock(&st->tx_lock);
    return rc;
}

int sl_stream_write(sl_stream *st, const void *data, size_t len) {
    nng_iov iov = {(void *)data, len};
    return sl_stream_writev(st, &iov, 1);
}

void sl_stream_close(sl_stream *st) {
    nng_stream_close(st->ns);
    /* Closing the stream aborts only operations already posted: a thread about to post its next
     * receive would then wait forever. Stopping the aios also fails every later operation. */
    nng_aio_stop(st->rx_aio);
    nng_aio_stop(st->tx_aio);
}

const char *sl_stream_peer(const sl_stream *st) {
    return st->peer;
}

void sl_stream_free(sl_stream *st) {
    if (st == NULL)
        return;
    nng_stream_close(st->ns);
    nng_aio_free(st->rx_aio);
    nng_aio_free(st->tx_aio);
    nng_stream_free(st->ns);
    pthread_mutex_destroy(&st->tx_lock);
    sl_buf_free(&st->rx);
    free(st);
}

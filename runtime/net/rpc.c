#include "net/rpc.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "net/stream.h"
#include "sluice/err.h"

typedef struct pending {
    uint32_t id;
    int64_t deadline_ms; /* monotonic */
    sl_rpc_cb cb;
    void *arg;
    struct pending *next;
} pending;

struct sl_rpc {
    char *url;
    /* Writers hold it shared while they use 'st'; a reconnect holds it exclusively to swap it. */
    pthread_rwlock_t st_lock;
    sl_stream *st;
    pthread_t reader;
    pthread_t reaper; /* fails requests whose answer is overdue */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pending *head;
    uint32_t next_id;
    bool closed;
    bool stopping;
    bool reader_running; /* a reader thread exists and must be joined */
};

static pending *take(sl_rpc *rpc, uint32_t id) {
    for (pending **pp = &rpc->head; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            pending *p = *pp;
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

static void fail_all(sl_rpc *rpc, int status) {
    pthread_mutex_lock(&rpc->lock);
    pending *list = rpc->head;
    rpc->head = NULL;
    rpc->closed = true;
    pthread_cond_broadcast(&rpc->cond);
    pthread_mutex_unlock(&rpc->lock);
    while (list) {
        pending *next = list->next;
        list->cb(list->arg, status, NULL, 0);
        free(list);
        list = next;
    }
}

static void *reader_main(void *arg) {
    sl_rpc *rpc = arg;
    for (;;) {
        uint8_t *frame;
        size_t len;
        if (sl_stream_read_frame(rpc->st, &frame, &len) != 0 || len < 4)
            break;
        pthread_mutex_lock(&rpc->lock);
        pending *p = take(rpc, sl_be32_get(frame));
        pthread_mutex_unlock(&rpc->lock);
        if (p) {
            p->cb(p->arg, 0, frame + 4, len - 4);
            free(p);
        }
    }
    fail_all(rpc, SL_ECLOSED);
    return NULL;
}

static void *reaper_main(void *arg) {
    sl_rpc *rpc = arg;
    pthread_mutex_lock(&rpc->lock);
    while (!rpc->stopping) {
        struct timespec ts = sl_clock_deadline(100);
        pthread_cond_timedwait(&rpc->cond, &rpc->lock, &ts);
        int64_t now = sl_clock_mono_ms();
        pending *expired = NULL;
        for (pending **pp = &rpc->head; *pp;) {
            if ((*pp)->deadline_ms <= now) {
                pending *p = *pp;
                *pp = p->next;
                p->next = expired;
                expired = p;
            } else {
                pp = &(*pp)->next;
            }
        }
        pthread_mutex_unlock(&rpc->lock);
        while (expired) {
            pending *next = expired->next;
            expired->cb(expired->arg, SL_ETIMEDOUT, NULL, 0);
            free(expired);
            expired = next;
        }
        pthread_mutex_lock(&rpc->lock);
    }
    pthread_mutex_unlock(&rpc->lock);
    return NULL;
}

int sl_rpc_connect(const char *url, int timeout_ms, sl_rpc **out) {
    sl_rpc *rpc = calloc(1, sizeof(*rpc));
    if (rpc == NULL || (rpc->url = strdup(url)) == NULL) {
        free(rpc);
        return SL_ENOMEM;
    }
    int rc = sl_stream_dial(url, timeout_ms, &rpc->st);
    if (rc) {
        free(rpc->url);
        free(rpc);
        return rc;
    }
    pthread_rwlock_init(&rpc->st_lock, NULL);
    pthread_mutex_init(&rpc->lock, NULL);
    pthread_cond_init(&rpc->cond, NULL);
    rpc->next_id = 1;
    if (pthread_create(&rpc->reader, NULL, reader_main, rpc) != 0) {
        sl_stream_free(rpc->st);
        free(rpc->url);
        free(rpc);
        return SL_ENOMEM;
    }
    rpc->reader_running = true;
    if (pthread_create(&rpc->reaper, NULL, reaper_main, rpc) != 0) {
        sl_stream_close(rpc->st);
        pthread_join(rpc->reader, NULL);
        sl_stream_free(rpc->st);
        free(rpc->url);
        free(rpc);
        return SL_ENOMEM;
    }
    *out = rpc;
    return 0;
}

uint32_t sl_rpc_next_id(sl_rpc *rpc) {
    pthread_mutex_lock(&rpc->lock);
    uint32_t id = rpc->next_id++;
    pthread_mutex_unlock(&rpc->lock);
    return id;
}

int sl_rpc_send(sl_rpc *rpc, uint32_t id, const uint8_t *frame, size_t len, int timeout_ms,
                sl_rpc_cb cb, void *arg) {
    pending *p = NULL;
    if (cb) {
        p = malloc(sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        *p = (pending){id, sl_clock_mono_ms() + (timeout_ms < 0 ? INT32_MAX : timeout_ms), cb, arg,
                       NULL};
    }
    pthread_mutex_lock(&rpc->lock);
    if (rpc->closed) {
        pthread_mutex_unlock(&rpc->lock);
        free(p);
        return SL_ECLOSED;
    }
    if (p) {
        p->next = rpc->head;
        rpc->head = p;
    }
    pthread_mutex_unlock(&rpc->lock);
    pthread_rwlock_rdlock(&rpc->st_lock);
    int rc = sl_stream_write(rpc->st, frame, len);
    pthread_rwlock_unlock(&rpc->st_lock);
    if (rc && p) {
        /* Unless the reader already failed it, the request is still ours to withdraw. */
        pthread_mutex_lock(&rpc->lock);
        pending *mine = take(rpc, id);
        pthread_mutex_unlock(&rpc->lock);
        if (mine == NULL)
            return 0; /* its callback has run or will run with the failure */
        free(mine);
    }
    return rc;
}

struct call_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
    sl_buf *resp;
};

static void call_done(void *arg, int status, const uint8_t *body, size_t len) {
    struct call_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->status = status;
    if (status == 0) {
        w->resp->len = 0;
        w->status = sl_buf_append(w->resp, body, len);
    }
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int sl_rpc_call(sl_rpc *rpc, uint32_t id, const uint8_t *frame, size_t len, int timeout_ms,
                sl_buf *resp) {
    struct call_wait w = {.done = false, .resp = resp};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    int rc = sl_rpc_send(rpc, id, frame, len, timeout_ms, call_done, &w);
    if (rc == 0) {
        pthread_mutex_lock(&w.lock);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        rc = w.status;
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return rc;
}

void sl_rpc_frame_begin(sl_buf *b, uint32_t id) {
    b->len = 0;
    if (sl_buf_reserve(b, 8) == 0) {
        sl_be32_put(b->data + 4, id);
        b->len = 8;
    }
}

void sl_rpc_frame_end(sl_buf *b) {
    if (b->len >= 4)
        sl_be32_put(b->data, (uint32_t)(b->len - 4));
}

int sl_rpc_is_closed(sl_rpc *rpc) {
    pthread_mutex_lock(&rpc->lock);
    int closed = rpc->closed;
    pthread_mutex_unlock(&rpc->lock);
    return closed;
}

int sl_rpc_reconnect(sl_rpc *rpc, int timeout_ms) {
    if (!sl_rpc_is_closed(rpc))
        return 0;
    sl_stream *fresh;
    int rc = sl_stream_dial(rpc->url, timeout_ms, &fresh);
    if (rc)
        return rc;
    /* The old reader has failed what was pending and is ending, or has ended. Only the one
     * thread that reconnects touches reader_running outside close. */
    if (rpc->reader_running) {
        pthread_join(rpc->reader, NULL);
        rpc->reader_running = false;
    }
    pthread_rwlock_wrlock(&rpc->st_lock);
    sl_stream *old = rpc->st;
    rpc->st = fresh;
    pthread_rwlock_unlock(&rpc->st_lock);
    sl_stream_free(old);
    /* Open before the reader starts: a reader that fails at once must leave it closed. */
    pthread_mutex_lock(&rpc->lock);
    rpc->closed = false;
    pthread_mutex_unlock(&rpc->lock);
    if (pthread_create(&rpc->reader, NULL, reader_main, rpc) != 0) {
        fail_all(rpc, SL_ECLOSED); /* closed again; a later reconnect tries again */
        return SL_ENOMEM;
    }
    rpc->reader_running = true;
    return 0;
}

const char *sl_rpc_url(const sl_rpc *rpc) {
    return rpc->url;
}

int sl_rpc_retarget(sl_rpc *rpc, const char *url, int timeout_ms) {
    if (strcmp(rpc->url, url) != 0) {
        char *fresh = strdup(url);
        if (fresh == NULL)
            return SL_ENOMEM;
        free(rpc->url);
        rpc->url = fresh;
        pthread_rwlock_rdlock(&rpc->st_lock);
        sl_stream_close(rpc->st);
        pthread_rwlock_unlock(&rpc->st_lock);
        if (rpc->reader_running) { /* it fails what is pending, marks the handle closed */
            pthread_join(rpc->reader, NULL);
            rpc->reader_running = false;
        }
    }
    return sl_rpc_reconnect(rpc, timeout_ms);
}

void sl_rpc_close(sl_rpc *rpc) {
    sl_stream_close(rpc->st);
    if (rpc->reader_running)
        pthread_join(rpc->reader, NULL); /* the reader fails what is pending */
    pthread_mutex_lock(&rpc->lock);
    rpc->stopping = true;
    pthread_cond_broadcast(&rpc->cond);
    pthread_mutex_unlock(&rpc->lock);
    pthread_join(rpc->reaper, NULL);
    sl_stream_free(rpc->st);
    pthread_rwlock_destroy(&rpc->st_lock);
    pthread_cond_destroy(&rpc->cond);
    pthread_mutex_destroy(&rpc->lock);
    free(rpc->url);
    free(rpc);
}

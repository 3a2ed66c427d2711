/* file_source: tails a file, one record per line (without its newline), following rotation.
 *
 * Config: path (required), batch (lines per poll, default 1000).
 * Position: "<inode>:<byte offset>" after the last line emitted. On restart the source goes
 * back to that file, also when it has been renamed since (found by its inode in the same
 * folder), reads it to its end, then continues with the file now at 'path'. A file cut shorter
 * than the position (copytruncate) is read again from its start. A last line without its
 * newline is emitted only once the file has been rotated away (it is complete then). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sluice/plugin.h"

#define CHUNK (256 * 1024)
#define MAX_LINE (1024 * 1024)

typedef struct tail {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    char path[PATH_MAX];
    long batch;
    int fd;          /* -1: waiting for the file */
    bool idle;       /* not instance 0: one file is read by one task */
    ino_t ino;
    off_t offset;    /* of the first byte not emitted yet */
    char *buf;       /* bytes read from offset on */
    size_t len;
} tail;

static int open_at(tail *t, const char *path, off_t offset) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    if (t->fd >= 0)
        close(t->fd);
    t->fd = fd;
    t->ino = st.st_ino;
    t->offset = offset <= st.st_size ? offset : 0; /* cut shorter: start again */
    t->len = 0;
    return 0;
}

/* The file in path's folder with inode 'ino' (a rotated one), into 'out'. */
static int find_inode(const char *path, ino_t ino, char *out, size_t outlen) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    int rc = -1;
    while (rc != 0 && (e = readdir(d)) != NULL)
        if (e->d_ino == ino) {
            snprintf(out, outlen, "%.2000s/%.1000s", dir, e->d_name);
            rc = 0;
        }
    closedir(d);
    return rc;
}

static int source_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    const char *path = host->config(ctx, "path");
    if (path == NULL || *path == '\0') {
        host->set_error(ctx, "config 'path' (the file to tail) is missing");
        return SL_EBADCONFIG;
    }
    const char *batch = host->config(ctx, "batch");
    tail *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->buf = malloc(CHUNK + MAX_LINE)) == NULL) {
        free(t);
        return SL_ENOMEM;
    }
    t->host = host;
    t->ctx = ctx;
    t->fd = -1;
    t->batch = batch ? atol(batch) : 1000;
    if (t->batch <= 0)
        t->batch = 1000;
    snprintf(t->path, sizeof(t->path), "%s", path);
    int instances;
    if (host->instance(ctx, &instances) > 0) {
        host->log(ctx, SL_PLUGIN_LOG_INFO, "one file is read by one task: this instance idles");
        t->idle = true;
    }
    const char *pos = host->get_position(ctx);
    unsigned long long ino, off;
    if (pos && sscanf(pos, "%llu:%llu", &ino, &off) == 2) {
        char where[PATH_MAX];
        struct stat st;
        if (stat(t->path, &st) == 0 && st.st_ino == (ino_t)ino)
            open_at(t, t->path, (off_t)off);
        else if (find_inode(t->path, (ino_t)ino, where, sizeof(where)) == 0)
            open_at(t, where, (off_t)off); /* rotated while we were down: finish it first */
        else
            host->log(ctx, SL_PLUGIN_LOG_WARN, "the file at position %s is gone: reading %s "
                      "from its start", pos, t->path);
    }
    *state = t;
    return SL_OK;
}

static void emit_line(tail *t, const char *line, size_t n) {
    sl_plugin_record r = {.partition = -1, .value = line, .value_len = n};
    t->host->emit(t->ctx, &r);
}

static void set_position(tail *t) {
    char pos[64];
    snprintf(pos, sizeof(pos), "%llu:%llu", (unsigned long long)t->ino,
             (unsigned long long)t->offset);
    t->host->set_position(t->ctx, pos);
}

/* Emits up to 'batch' complete lines from the buffer; returns how many. */
static long emit_lines(tail *t, bool final) {
    long n = 0;
    size_t start = 0;
    while (n < t->batch) {
        char *nl = memchr(t->buf + start, '\n', t->len - start);
        if (nl == NULL)
            break;
        emit_line(t, t->buf + start, (size_t)(nl - (t->buf + start)));
        start = (size_t)(nl - t->buf) + 1;
        n++;
    }
    if (final && n < t->batch && start < t->len) { /* the rotated file's unterminated end */
        emit_line(t, t->buf + start, t->len - start);
        start = t->len;
        n++;
    }
    if (start > 0 || (t->len == MAX_LINE + CHUNK)) {
        if (start == 0) { /* a line longer than the buffer: emit what we have */
            emit_line(t, t->buf, t->len);
            start = t->len;
            n++;
        }
        memmove(t->buf, t->buf + start, t->len - start);
        t->len -= start;
        t->offset += (off_t)start;
    }
    if (n)
        set_position(t);
    return n;
}

static void nap(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int source_poll(void *state, int timeout_ms) {
    tail *t = state;
    if (t->idle || (t->fd < 0 && open_at(t, t->path, 0) != 0)) {
        nap(timeout_ms); /* not there yet */
        return SL_OK;
    }
    if (emit_lines(t, false) > 0)
        return SL_OK;
    ssize_t got = pread(t->fd, t->buf + t->len, CHUNK + MAX_LINE - t->len,
                        t->offset + (off_t)t->len);
    if (got < 0) {
        t->host->set_error(t->ctx, strerror(errno));
        return SL_EIO;
    }
    t->len += (size_t)got;
    if (emit_lines(t, false) > 0 || got > 0)
        return SL_OK;
    /* At the end of the file: has it been rotated, or cut? */
    struct stat now, cur;
    bool rotated = stat(t->path, &now) != 0 || now.st_ino != t->ino;
    if (!rotated && fstat(t->fd, &cur) == 0 && cur.st_size < t->offset + (off_t)t->len) {
        t->host->log(t->ctx, SL_PLUGIN_LOG_INFO, "%s was truncated: reading from its start",
                     t->path);
        t->offset = 0;
        t->len = 0;
        return SL_OK;
    }
    if (rotated && stat(t->path, &now) == 0) {
        emit_lines(t, true); /* the old file is complete */
        if (t->len == 0) {
            open_at(t, t->path, 0);
            set_position(t);
        }
        return SL_OK;
    }
    nap(timeout_ms < 50 ? timeout_ms : 50);
    return SL_OK;
}

static void source_close(void *state) {
    tail *t = state;
    if (t->fd >= 0)
        close(t->fd);
    free(t->buf);
    free(t);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SOURCE, .name = "file_source", .version = "1.0.0",
                 .description = "tails a file, one record per line, following rotation",
                 .init = source_init, .poll = source_poll, .close = source_close)

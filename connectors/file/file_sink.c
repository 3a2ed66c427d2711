/* file_sink: appends each record's value and a newline to a file. flush makes the lines
 * durable (fsync) before the host commits the input offsets they came from, so after a crash
 * the file holds every committed record, and at most the records after the last commit twice.
 * A line cut short by a crash (no newline at the end of the file) is removed at start: its
 * record was not committed and comes again.
 *
 * Config: path (required). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/plugin.h"

typedef struct sink {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    FILE *f;
} sink;

/* Cuts the file back to its last newline. */
static int drop_torn_line(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    off_t end = st.st_size;
    char buf[4096];
    while (end > 0) {
        size_t n = end < (off_t)sizeof(buf) ? (size_t)end : sizeof(buf);
        if (pread(fd, buf, n, end - (off_t)n) != (ssize_t)n)
            return -1;
        size_t i = n;
        while (i > 0 && buf[i - 1] != '\n')
            i--;
        if (i > 0) {
            end = end - (off_t)n + (off_t)i;
            break;
        }
        end -= (off_t)n;
    }
    return end == st.st_size ? 0 : ftruncate(fd, end);
}

static int sink_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    const char *path = host->config(ctx, "path");
    if (path == NULL || *path == '\0') {
        host->set_error(ctx, "config 'path' (the file to write) is missing");
        return SL_EBADCONFIG;
    }
    sink *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SL_ENOMEM;
    s->host = host;
    s->ctx = ctx;
    if ((s->f = fopen(path, "a+e")) == NULL || drop_torn_line(fileno(s->f)) != 0) {
        char why[512];
        snprintf(why, sizeof(why), "cannot open %s: %s", path, strerror(errno));
        host->set_error(ctx, why);
        if (s->f)
            fclose(s->f);
        free(s);
        return SL_EIO;
    }
    *state = s;
    return SL_OK;
}

static int sink_put(void *state, const sl_plugin_record *rec) {
    sink *s = state;
    if ((rec->value_len && fwrite(rec->value, 1, rec->value_len, s->f) != rec->value_len) ||
        fputc('\n', s->f) == EOF) {
        s->host->set_error(s->ctx, strerror(errno));
        return SL_ERETRY; /* a full disk may clear; the host retries, then stops */
    }
    return SL_OK;
}

static int sink_flush(void *state) {
    sink *s = state;
    if (fflush(s->f) != 0 || fsync(fileno(s->f)) != 0) {
        s->host->set_error(s->ctx, strerror(errno));
        return SL_EIO;
    }
    return SL_OK;
}

static void sink_close(void *state) {
    sink *s = state;
    fclose(s->f);
    free(s);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SINK, .name = "file_sink", .version = "1.0.0",
                 .description = "appends record values to a file, one per line",
                 .init = sink_init, .process = sink_put, .flush = sink_flush,
                 .close = sink_close)

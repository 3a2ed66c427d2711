/* generator: synthetic records at a chosen rate, from templates, for examples and benchmarks.
 *
 * Config (defaults):
 *   rate       records per second per instance (1000; 0: as fast as the broker takes them)
 *   count      records per instance before it stops emitting (0: no end)
 *   key        key template ("k{rand:100}"); "" for null keys
 *   value      value template ("{\"seq\":{seq},\"key\":\"{key}\",\"ts\":{ts}}")
 *   hot_key    a key that gets hot_ratio of the records instead of the template's (none)
 *   hot_ratio  0 to 1 (0.0)
 * Templates: {seq} (this instance's record number), {ts} (ms since the epoch), {key} (the
 * record's key), {rand:N} (0 .. N-1), {instance}. Position: the next {seq}, so a restarted
 * generator continues its numbering. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/plugin.h"

#define MAX_PER_POLL 20000

typedef struct gen {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    double rate;
    long long count, seq, started_seq;
    const char *key_tpl, *value_tpl, *hot_key;
    double hot_ratio;
    int instance;
    unsigned long long rng;
    long long t0_ms;
    char key[512], value[8192];
} gen;

static long long now_ms(int clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned long long next_rand(gen *g) { /* xorshift64* */
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * 0x2545f4914f6cdd1dULL;
}

static size_t expand(gen *g, const char *tpl, char *out, size_t cap) {
    size_t n = 0;
    for (const char *c = tpl; *c && n + 32 < cap;) {
        long long num;
        if (strncmp(c, "{seq}", 5) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%lld", g->seq);
            c += 5;
        } else if (strncmp(c, "{ts}", 4) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%lld", now_ms(CLOCK_REALTIME));
            c += 4;
        } else if (strncmp(c, "{key}", 5) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%s", g->key);
            c += 5;
        } else if (strncmp(c, "{instance}", 10) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%d", g->instance);
            c += 10;
        } else if (sscanf(c, "{rand:%lld}", &num) == 1 && num > 0 && strchr(c, '}')) {
            n += (size_t)snprintf(out + n, cap - n, "%llu", next_rand(g) % (unsigned long long)num);
            c = strchr(c, '}') + 1;
        } else {
            out[n++] = *c++;
        }
    }
    out[n] = '\0';
    return n;
}

static const char *conf(const sl_plugin_host *h, sl_plugin_ctx *ctx, const char *k,
                        const char *dflt) {
    const char *v = h->config(ctx, k);
    return v ? v : dflt;
}

static int gen_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return SL_ENOMEM;
    g->host = host;
    g->ctx = ctx;
    g->rate = atof(conf(host, ctx, "rate", "1000"));
    g->count = atoll(conf(host, ctx, "count", "0"));
    g->key_tpl = conf(host, ctx, "key", "k{rand:100}");
    g->value_tpl = conf(host, ctx, "value", "{\"seq\":{seq},\"key\":\"{key}\",\"ts\":{ts}}");
    g->hot_key = host->config(ctx, "hot_key");
    g->hot_ratio = atof(conf(host, ctx, "hot_ratio", "0"));
    int instances;
    g->instance = host->instance(ctx, &instances);
    g->rng = 0x9e3779b97f4a7c15ULL ^ (unsigned long long)(g->instance + 1);
    const char *pos = host->get_position(ctx);
    g->seq = g->started_seq = pos ? atoll(pos) : 0;
    g->t0_ms = now_ms(CLOCK_MONOTONIC);
    if (g->rate < 0 || g->hot_ratio < 0 || g->hot_ratio > 1) {
        host->set_error(ctx, "rate must be >= 0 and hot_ratio between 0 and 1");
        free(g);
        return SL_EBADCONFIG;
    }
    *state = g;
    return SL_OK;
}

static int gen_poll(void *state, int timeout_ms) {
    gen *g = state;
    long long due = MAX_PER_POLL;
    if (g->rate > 0) {
        long long elapsed = now_ms(CLOCK_MONOTONIC) - g->t0_ms;
        due = (long long)((double)elapsed * g->rate / 1000.0) - (g->seq - g->started_seq);
        if (due <= 0) {
            long long wait = (long long)(1000.0 / g->rate) + 1;
            struct timespec ts = {0, (wait < timeout_ms ? wait : timeout_ms) * 1000000L};
            nanosleep(&ts, NULL);
            return SL_OK;
        }
        if (due > MAX_PER_POLL)
            due = MAX_PER_POLL;
    }
    if (g->count > 0 && g->seq + due > g->count)
        due = g->count - g->seq;
    if (due <= 0) { /* done: nothing more to emit */
        struct timespec ts = {0, timeout_ms * 1000000L};
        nanosleep(&ts, NULL);
        return SL_OK;
    }
    for (long long i = 0; i < due; i++) {
        bool hot = g->hot_key && (double)(next_rand(g) % 1000000) / 1e6 < g->hot_ratio;
        if (hot)
            snprintf(g->key, sizeof(g->key), "%s", g->hot_key);
        else
            expand(g, g->key_tpl, g->key, sizeof(g->key));
        size_t vlen = expand(g, g->value_tpl, g->value, sizeof(g->value));
        sl_plugin_record r = {.partition = -1, .key = g->key_tpl[0] || hot ? g->key : NULL,
                              .key_len = strlen(g->key), .value = g->value, .value_len = vlen};
        int rc = g->host->emit(g->ctx, &r);
        if (rc)
            return rc;
        g->seq++;
    }
    char pos[32];
    snprintf(pos, sizeof(pos), "%lld", g->seq);
    g->host->set_position(g->ctx, pos);
    return SL_OK;
}

static void gen_close(void *state) {
    free(state);
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SOURCE, .name = "generator", .version = "1.0.0",
                 .description = "synthetic records at a chosen rate, from templates",
                 .init = gen_init, .poll = gen_poll, .close = gen_close)

/* sluice bench: produce and consume benchmarks through libsluice.
 *
 *   sluice bench produce TOPIC --records N [--size BYTES] [--acks 0|1|all] [--compression C]
 *                        [--batch-bytes B] [--linger-ms L] [--rate R] [--json]
 *   sluice bench consume TOPIC --records N [--json]
 *
 * produce sends N records of BYTES-byte values (no key: the sticky partitioner) through one
 * sl_producer and counts only records the broker acknowledged. The time of each send is kept in
 * a preallocated array indexed by the record's sequence number, which travels as the delivery
 * report's opaque pointer; the report turns it into the send-to-acknowledgement latency. Values
 * are slices of one buffer made once, so the send loop allocates nothing.
 *
 * consume reads N records of the topic from the beginning of every partition through one
 * sl_consumer, touching every value so that every record is really decoded.
 *
 * Exit status as for every sluice command: 0 success, 1 failure, 2 usage error. */
#include "cli/bench.h"

#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "base/clock.h"
#include "sluice/client.h"

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL

/* Progress lines start once a run has lasted this long, then come once per PROGRESS_EVERY. */
#define PROGRESS_AFTER_NS (2 * NS_PER_S)
#define PROGRESS_EVERY_NS NS_PER_S

/* consume gives up when no record has arrived for this long. */
#define CONSUME_QUIET_LIMIT_NS (10 * NS_PER_S)
#define CONSUME_POLL_MS 500

/* Values are BYTES-byte slices of a pool this much longer than BYTES, at varying starts, so
 * records differ (compression sees text, not one repeated value). */
#define VALUE_POOL_SPREAD 4096

#define MAX_RECORDS 1000000000LL
#define MAX_VALUE_BYTES (16LL * 1024 * 1024)

/* Long options without a short form. */
enum {
    OPT_ACKS = 256,
    OPT_COMPRESSION,
    OPT_BATCH_BYTES,
    OPT_LINGER_MS,
    OPT_RATE,
    OPT_JSON,
};

/* ---- option parsing ---------------------------------------------------------------------- */

static int parse_acks(const struct cli *b, const char *text, const char **acks) {
    if (strcmp(text, "0") != 0 && strcmp(text, "1") != 0 && strcmp(text, "all") != 0)
        return cli_usage_error(b, "--acks wants 0, 1 or all, not \"%s\"", text);
    *acks = text;
    return CLI_GO_ON;
}

/* The topic operand, and --records, which both subcommands need. */
static int topic_and_records(const struct cli *b, int argc, char **argv, int64_t records,
                             const char **topic) {
    if (optind >= argc)
        return cli_usage_error(b, "missing topic name");
    if (optind + 1 < argc)
        return cli_usage_error(b, "unexpected argument \"%s\"", argv[optind + 1]);
    if (records < 0)
        return cli_usage_error(b, "missing --records N");
    *topic = argv[optind];
    return CLI_GO_ON;
}

/* ---- shared ------------------------------------------------------------------------------ */

static double seconds_of(int64_t ns) {
    return (double)ns / (double)NS_PER_S;
}

/* Records/s and MB/s (10^6 bytes) over 'ns'; 0 when no time passed. */
static void rates(uint64_t records, uint64_t bytes, int64_t ns, double *rps, double *mbps) {
    double s = seconds_of(ns);
    *rps = s > 0 ? (double)records / s : 0;
    *mbps = s > 0 ? (double)bytes / s / 1e6 : 0;
}

/* Sleeps until the monotonic time 'ns'. */
static void sleep_until(int64_t ns) {
    struct timespec ts = {.tv_sec = ns / NS_PER_S, .tv_nsec = ns % NS_PER_S};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* A progress line on stderr when it is due; returns when the next one is. */
static int64_t progress_line(const char *what, int64_t start_ns, int64_t now_ns, uint64_t done,
                             uint64_t *done_before, int64_t *before_ns, const char *extra) {
    double interval = seconds_of(now_ns - *before_ns);
    double recent = interval > 0 ? (double)(done - *done_before) / interval : 0;
    fprintf(stderr, "sluice: bench %s: %.1f s: %" PRIu64 " records%s, %.0f records/s\n", what,
            seconds_of(now_ns - start_ns), done, extra, recent);
    *done_before = done;
    *before_ns = now_ns;
    return now_ns + PROGRESS_EVERY_NS;
}

/* ---- produce ----------------------------------------------------------------------------- */

static const char produce_help[] =
    "Usage: sluice bench produce TOPIC --records N [OPTIONS]\n"
    "\n"
    "Sends N records with values of --size bytes and no key to TOPIC (which must exist) as\n"
    "fast as the producer goes, or at --rate records/s, and prints records/s and MB/s (10^6\n"
    "value bytes per second) over acknowledged records from the first send to the last\n"
    "acknowledgement, and the send-to-acknowledgement latency p50, p99 and p99.9. Exits 1 if\n"
    "any record was not delivered. Without --rate the latency includes the time a record waits\n"
    "in the producer behind earlier ones; use --rate for latency at a given load.\n"
    "\n"
    "Options:\n"
    "  -n, --records N        records to send (required)\n"
    "  -s, --size BYTES       value size in bytes (default 100)\n"
    "      --acks 0|1|all     acknowledgements to wait for (default all)\n"
    "      --compression C    compression.type of the producer (default: the library's)\n"
    "      --batch-bytes B    batch.size: bytes per partition batch (default 131072)\n"
    "      --linger-ms L      linger.ms: how long a batch waits to fill (default 5)\n"
    "      --rate R           offer R records/s, evenly paced (default: as fast as possible)\n"
    "      --json             print one JSON object: records, bytes, seconds, errors,\n"
    "                         records_per_sec, mb_per_sec, p50_ms, p99_ms, p999_ms\n"
    "                         (no progress lines)\n" COMMON_OPTIONS_HELP;

struct produce_args {
    const char *topic;
    int64_t records; /* -1: not given */
    int64_t size;
    const char *acks;        /* NULL: the library default */
    const char *compression; /* NULL: the library default */
    int64_t batch_bytes;     /* -1: the library default */
    int64_t linger_ms;       /* -1: the library default */
    int64_t rate;            /* 0: unlimited */
    bool json;
};

/* What the delivery reports tell. They run on the producer's thread and find this through a
 * static, since their opaque pointer is the record's sequence number. */
struct produce_tally {
    /* Per record: the send time (monotonic ns), replaced by the latency once acknowledged,
     * or by -1 if the record failed. */
    int64_t *times;
    atomic_uint_fast64_t acked;
    atomic_uint_fast64_t failed;
    atomic_int first_error;
    atomic_int_fast64_t last_ack_ns;
};

static struct produce_tally tally;

static void on_delivery(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset) {
    size_t seq = (size_t)(uintptr_t)opaque;
    int64_t now = sl_clock_mono_ns();
    (void)topic;
    (void)partition;
    (void)offset;
    if (status != 0) {
        int none = 0;
        tally.times[seq] = -1;
        atomic_fetch_add_explicit(&tally.failed, 1, memory_order_relaxed);
        atomic_compare_exchange_strong(&tally.first_error, &none, status);
        return;
    }
    tally.times[seq] = now - tally.times[seq];
    atomic_fetch_add_explicit(&tally.acked, 1, memory_order_relaxed);
    int_fast64_t last = atomic_load_explicit(&tally.last_ack_ns, memory_order_relaxed);
    while (now > last &&
           !atomic_compare_exchange_weak_explicit(&tally.last_ack_ns, &last, now,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static int produce_option(struct cli *b, int opt, char **argv, struct produce_args *args) {
    switch (opt) {
    case 'h':
        return cli_show_help(produce_help);
    case 'n':
        return cli_parse_number(b, "--records", optarg, 1, MAX_RECORDS, &args->records);
    case 's':
        return cli_parse_number(b, "--size", optarg, 0, MAX_VALUE_BYTES, &args->size);
    case OPT_ACKS:
        return parse_acks(b, optarg, &args->acks);
    case OPT_COMPRESSION:
        args->compression = optarg;
        return CLI_GO_ON;
    case OPT_BATCH_BYTES:
        return cli_parse_number(b, "--batch-bytes", optarg, 1, INT32_MAX, &args->batch_bytes);
    case OPT_LINGER_MS:
        return cli_parse_number(b, "--linger-ms", optarg, 0, INT32_MAX, &args->linger_ms);
    case OPT_RATE:
        return cli_parse_number(b, "--rate", optarg, 1, 1000000000, &args->rate);
    case OPT_JSON:
        args->json = true;
        return CLI_GO_ON;
    default:
        return cli_common_option(b, opt, argv);
    }
}

static int parse_produce(struct cli *b, int argc, char **argv, struct produce_args *args) {
    static const struct option options[] = {
        {"records", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"acks", required_argument, NULL, OPT_ACKS},
        {"compression", required_argument, NULL, OPT_COMPRESSION},
        {"batch-bytes", required_argument, NULL, OPT_BATCH_BYTES},
        {"linger-ms", required_argument, NULL, OPT_LINGER_MS},
        {"rate", required_argument, NULL, OPT_RATE},
        {"json", no_argument, NULL, OPT_JSON},
        COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    cli_start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":n:s:b:X:h", options, NULL)) != -1)
        rc = produce_option(b, opt, argv, args);
    return rc == CLI_GO_ON ? topic_and_records(b, argc, argv, args->records, &args->topic) : rc;
}

/* The producer's effective settings, for the heading. */
static void describe_settings(const sl_conf *conf, const struct produce_args *args, char *buf,
                              size_t len) {
    const char *compression = sl_conf_get(conf, "compression.type");
    char rate[48];
    if (args->rate > 0)
        snprintf(rate, sizeof(rate), "%" PRId64 " records/s", args->rate);
    else
        snprintf(rate, sizeof(rate), "unlimited");
    snprintf(buf, len, "acks=%s, linger.ms=%s, batch.size=%s, compression.type=%s, rate %s",
             sl_conf_get(conf, "acks"), sl_conf_get(conf, "linger.ms"),
             sl_conf_get(conf, "batch.size"), compression ? compression : "none", rate);
}

static int open_producer(const struct cli *b, const struct produce_args *args, sl_producer **out,
                         char *settings, size_t settings_len) {
    char errbuf[ERRBUF_SIZE] = "", number[24];
    sl_conf *conf = cli_broker_conf(b);
    bool ok = conf != NULL;
    if (ok && args->acks != NULL)
        ok = cli_conf_set(conf, "acks", args->acks);
    if (ok && args->linger_ms >= 0) {
        snprintf(number, sizeof(number), "%" PRId64, args->linger_ms);
        ok = cli_conf_set(conf, "linger.ms", number);
    }
    if (ok && args->batch_bytes >= 0) {
        snprintf(number, sizeof(number), "%" PRId64, args->batch_bytes);
        ok = cli_conf_set(conf, "batch.size", number);
    }
    if (ok && args->compression != NULL)
        ok = cli_conf_set(conf, "compression.type", args->compression);
    if (!ok) {
        sl_conf_destroy(conf);
        return CLI_FAILED;
    }
    describe_settings(conf, args, settings, settings_len);
    int status = sl_producer_new(conf, out, errbuf, sizeof(errbuf));
    if (status == 0)
        return CLI_GO_ON;
    sl_conf_destroy(conf);
    return cli_report_failure(b, status, errbuf, NULL, "cannot start a producer");
}

/* BYTES + VALUE_POOL_SPREAD printable characters from a fixed-seed generator. */
static char *make_value_pool(size_t size) {
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    size_t len = size + VALUE_POOL_SPREAD;
    char *pool = malloc(len);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    if (pool == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pool[i] = alphabet[x % (sizeof(alphabet) - 1)];
    }
    return pool;
}

struct produce_run {
    const struct cli *b;
    const struct produce_args *args;
    sl_producer *producer;
    char *pool;
    uint64_t sent;
    int64_t first_send_ns;
    /* progress */
    bool progress;
    int64_t next_progress_ns;
    uint64_t acked_before;
    int64_t before_ns;
};

static void produce_progress(struct produce_run *run, int64_t now) {
    char extra[64];
    if (!run->progress || now < run->next_progress_ns)
        return;
    snprintf(extra, sizeof(extra), " acknowledged of %" PRIu64 " sent", run->sent);
    run->next_progress_ns =
        progress_line("produce", run->first_send_ns, now, atomic_load(&tally.acked),
                      &run->acked_before, &run->before_ns, extra);
}

/* Sends every record, paced when --rate asks. Returns CLI_GO_ON, or the exit status after a
 * refused send. */
static int send_records(struct produce_run *run) {
    const struct produce_args *args = run->args;
    sl_produce_record rec = {.topic = args->topic,
                             .partition = SL_PARTITION_ANY,
                             .value_len = (size_t)args->size,
                             .cb = on_delivery};
    uint64_t n = (uint64_t)args->records;
    double ns_per_record = args->rate > 0 ? (double)NS_PER_S / (double)args->rate : 0;
    int64_t start = sl_clock_mono_ns();
    run->first_send_ns = run->before_ns = start;
    run->next_progress_ns = start + PROGRESS_AFTER_NS;
    for (uint64_t i = 0; i < n; i++) {
        if (args->rate > 0) {
            /* Record i is due at start + i/R: sleep if early; when late (a sleep overran),
             * send at once, so the records due meanwhile go out as a small burst. */
            int64_t due = start + (int64_t)((double)i * ns_per_record);
            if (sl_clock_mono_ns() < due)
                sleep_until(due);
        }
        int64_t now = sl_clock_mono_ns();
        rec.value = run->pool + (i * 61) % VALUE_POOL_SPREAD;
        rec.opaque = (void *)(uintptr_t)i;
        tally.times[i] = now;
        int status = sl_producer_send(run->producer, &rec);
        if (status != 0)
            return cli_report_failure(run->b, status, NULL, args->topic, "cannot send a record");
        run->sent++;
        produce_progress(run, now);
    }
    return CLI_GO_ON;
}

static int compare_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values, in ms. */
static double percentile_ms(const int64_t *sorted, size_t n, double p) {
    size_t rank = (size_t)(p * (double)n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / (double)NS_PER_MS;
}

struct produce_result {
    uint64_t acked, failed, bytes;
    int64_t ns;
    double rps, mbps;
    bool have_latency;
    double p50, p99, p999;
};

/* Latencies of the acknowledged records, gathered to the front of tally.times and sorted. */
static int compute_latency(struct produce_result *r, uint64_t sent) {
    size_t n = 0;
    for (uint64_t i = 0; i < sent; i++)
        if (tally.times[i] >= 0)
            tally.times[n++] = tally.times[i];
    if (n == 0)
        return 0;
    qsort(tally.times, n, sizeof(*tally.times), compare_int64);
    r->have_latency = true;
    r->p50 = percentile_ms(tally.times, n, 0.50);
    r->p99 = percentile_ms(tally.times, n, 0.99);
    r->p999 = percentile_ms(tally.times, n, 0.999);
    return 0;
}

static void print_produce_json(const struct produce_result *r) {
    printf("{\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.6f,\"errors\":%" PRIu64
           ",\"records_per_sec\":%.1f,\"mb_per_sec\":%.3f",
           r->acked, r->bytes, seconds_of(r->ns), r->failed, r->rps, r->mbps);
    if (r->have_latency)
        printf(",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f}\n", r->p50, r->p99, r->p999);
    else
        printf(",\"p50_ms\":null,\"p99_ms\":null,\"p999_ms\":null}\n");
}

static void print_produce_table(const struct produce_args *args, const char *settings,
                                const struct produce_result *r) {
    printf("bench produce: %" PRId64 " records of %" PRId64 " bytes to \"%s\"\n(%s)\n\n",
           args->records, args->size, args->topic, settings);
    printf("%-16s %14" PRIu64 "\n", "acknowledged", r->acked);
    printf("%-16s %14" PRIu64 "\n", "errors", r->failed);
    printf("%-16s %14.3f\n", "seconds", seconds_of(r->ns));
    printf("%-16s %14.0f\n", "records/s", r->rps);
    printf("%-16s %14.2f\n", "MB/s", r->mbps);
    if (r->have_latency) {
        printf("%-16s %14.3f\n", "latency p50 ms", r->p50);
        printf("%-16s %14.3f\n", "latency p99 ms", r->p99);
        printf("%-16s %14.3f\n", "latency p99.9 ms", r->p999);
    }
}

/* Waits for every report, with progress lines while it waits. */
static void wait_for_reports(struct produce_run *run) {
    while (sl_producer_flush(run->producer, run->progress ? 200 : -1) == SL_ETIMEDOUT)
        produce_progress(run, sl_clock_mono_ns());
}

static int report_produce(struct produce_run *run, const char *settings) {
    const struct produce_args *args = run->args;
    struct produce_result r = {0};
    r.acked = atomic_load(&tally.acked);
    r.failed = atomic_load(&tally.failed);
    r.bytes = r.acked * (uint64_t)args->size;
    r.ns = r.acked > 0 ? atomic_load(&tally.last_ack_ns) - run->first_send_ns : 0;
    rates(r.acked, r.bytes, r.ns, &r.rps, &r.mbps);
    compute_latency(&r, run->sent);
    if (args->json)
        print_produce_json(&r);
    else
        print_produce_table(args, settings, &r);
    if (r.failed > 0 || r.acked != run->sent) {
        uint64_t lost = run->sent - r.acked;
        int cause = atomic_load(&tally.first_error);
        fflush(stdout);
        return cli_fail("%" PRIu64 " of %" PRIu64 " records were not delivered: %s", lost, run->sent,
                    cause != 0 ? sl_strerror(cause) : "no delivery report arrived");
    }
    return CLI_OK;
}

static int run_produce(const struct cli *b, const struct produce_args *args) {
    char settings[256];
    struct produce_run run = {.b = b, .args = args, .progress = !args->json};
    int rc;
    tally.times = malloc((size_t)args->records * sizeof(*tally.times));
    run.pool = make_value_pool((size_t)args->size);
    if (tally.times == NULL || run.pool == NULL) {
        rc = cli_fail("not enough memory for %" PRId64 " records of %" PRId64 " bytes", args->records,
                  args->size);
        goto out;
    }
    /* Page the array in now rather than inside the timed loop. */
    memset(tally.times, 0, (size_t)args->records * sizeof(*tally.times));
    if (args->rate > 0)
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* sleeps end on time, for even pacing */
    rc = open_producer(b, args, &run.producer, settings, sizeof(settings));
    if (rc != CLI_GO_ON)
        goto out;
    rc = send_records(&run);
    if (rc == CLI_GO_ON) {
        wait_for_reports(&run);
        rc = report_produce(&run, settings);
    }
    /* After a refused send, whatever is queued is abandoned: its reports say SL_ECLOSED. */
    sl_producer_destroy(run.producer);
out:
    free(run.pool);
    free(tally.times);
    tally.times = NULL;
    return rc;
}

static int bench_produce(struct cli *b, int argc, char **argv) {
    struct produce_args args = {.records = -1, .size = 100, .batch_bytes = -1, .linger_ms = -1};
    int rc = parse_produce(b, argc, argv, &args);
    if (rc != CLI_GO_ON)
        return rc;
    return run_produce(b, &args);
}

/* ---- consume ----------------------------------------------------------------------------- */

static const char consume_help[] =
    "Usage: sluice bench consume TOPIC --records N [OPTIONS]\n"
    "\n"
    "Reads N records of TOPIC from the beginning of every partition, decoding each one through\n"
    "the client library and reading the first byte of its value, and prints records/s and MB/s\n"
    "(10^6 value bytes per second) from the first poll to the Nth record. Fails if no record\n"
    "arrives for 10 s before N have been read.\n"
    "\n"
    "Options:\n"
    "  -n, --records N        records to read (required)\n"
    "      --json             print one JSON object: records, bytes, seconds,\n"
    "                         records_per_sec, mb_per_sec\n" COMMON_OPTIONS_HELP;

struct consume_args {
    const char *topic;
    int64_t records;
    bool json;
};

/* Keeps the sum of value bytes alive, so that reading them cannot be optimized away. */
static volatile uint64_t value_sink;

static int parse_consume(struct cli *b, int argc, char **argv, struct consume_args *args) {
    static const struct option options[] = {{"records", required_argument, NULL, 'n'},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    cli_start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":n:b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(consume_help);
        if (opt == 'n')
            rc = cli_parse_number(b, "--records", optarg, 1, INT64_MAX, &args->records);
        else if (opt == OPT_JSON)
            args->json = true;
        else
            rc = cli_common_option(b, opt, argv);
    }
    return rc == CLI_GO_ON ? topic_and_records(b, argc, argv, args->records, &args->topic) : rc;
}

static int open_consumer(const struct cli *b, const char *topic, sl_consumer **out) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_conf *conf = cli_broker_conf(b);
    if (conf == NULL)
        return CLI_FAILED;
    int status = sl_consumer_new(conf, out, errbuf, sizeof(errbuf));
    if (status != 0) {
        sl_conf_destroy(conf);
        return cli_report_failure(b, status, errbuf, NULL, "cannot start a consumer");
    }
    status = sl_consumer_assign(*out, topic, SL_PARTITION_ANY, SL_OFFSET_BEGINNING);
    if (status != 0)
        return cli_report_failure(b, status, NULL, topic, "cannot assign the topic's partitions");
    return CLI_GO_ON;
}

struct consume_totals {
    uint64_t records, bytes;
    int64_t ns;
};

static int consume_records(const struct cli *b, const struct consume_args *args, sl_consumer *c,
                           struct consume_totals *t) {
    uint64_t n = (uint64_t)args->records, sum = 0, done_before = 0, at_quiet_check = 0;
    int64_t start = sl_clock_mono_ns(), before_ns = start, quiet_since = start;
    int64_t next_progress = start + PROGRESS_AFTER_NS;
    while (t->records < n) {
        const sl_message *m;
        int status = sl_consumer_poll(c, CONSUME_POLL_MS, &m);
        if (status == 0) {
            t->records++;
            t->bytes += m->value_len;
            if (m->value_len > 0)
                sum += *(const unsigned char *)m->value;
            /* The clock is read once per 64Ki records, not per record. */
            if ((t->records & 0xffff) != 0 || args->json)
                continue;
        } else if (status != SL_ETIMEDOUT) {
            return cli_report_failure(b, status, NULL, args->topic, "cannot read the topic");
        }
        int64_t now = sl_clock_mono_ns();
        if (status == SL_ETIMEDOUT) {
            if (t->records != at_quiet_check) {
                at_quiet_check = t->records;
                quiet_since = now - CONSUME_POLL_MS * NS_PER_MS;
            }
            if (now - quiet_since >= CONSUME_QUIET_LIMIT_NS)
                return cli_fail("only %" PRIu64 " of %" PRIu64 " records of topic \"%s\" arrived: "
                            "none came in the last %lld s (does the topic hold %" PRIu64
                            " records?)",
                            t->records, n, args->topic, CONSUME_QUIET_LIMIT_NS / NS_PER_S, n);
        }
        if (!args->json && now >= next_progress)
            next_progress =
                progress_line("consume", start, now, t->records, &done_before, &before_ns, " read");
    }
    t->ns = sl_clock_mono_ns() - start;
    value_sink = sum;
    return CLI_GO_ON;
}

static void print_consume(const struct consume_args *args, const struct consume_totals *t) {
    double rps, mbps;
    rates(t->records, t->bytes, t->ns, &rps, &mbps);
    if (args->json) {
        printf("{\"records\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"seconds\":%.6f,\"records_per_sec\":%.1f,\"mb_per_sec\":%.3f}\n",
               t->records, t->bytes, seconds_of(t->ns), rps, mbps);
        return;
    }
    printf("bench consume: %" PRIu64 " records of \"%s\" from the beginning\n\n", t->records,
           args->topic);
    printf("%-16s %14" PRIu64 "\n", "records", t->records);
    printf("%-16s %14" PRIu64 "\n", "value bytes", t->bytes);
    printf("%-16s %14.3f\n", "seconds", seconds_of(t->ns));
    printf("%-16s %14.0f\n", "records/s", rps);
    printf("%-16s %14.2f\n", "MB/s", mbps);
}

static int bench_consume(struct cli *b, int argc, char **argv) {
    struct consume_args args = {.records = -1};
    struct consume_totals totals = {0};
    sl_consumer *c = NULL;
    int rc = parse_consume(b, argc, argv, &args);
    if (rc != CLI_GO_ON)
        return rc;
    rc = open_consumer(b, args.topic, &c);
    if (rc == CLI_GO_ON)
        rc = consume_records(b, &args, c, &totals);
    if (rc == CLI_GO_ON) {
        print_consume(&args, &totals);
        rc = CLI_OK;
    }
    sl_consumer_destroy(c);
    return rc;
}

/* ---- bench ------------------------------------------------------------------------------- */


static const struct cli_command bench_commands[] = {
    {"produce", bench_produce, "send records as fast as possible (or at --rate)"},
    {"consume", bench_consume, "read records from the beginning"},
};

static const struct cli_group bench_group = {
    "sluice bench [OPTIONS] COMMAND [ARGS]...",
    "Measures throughput and latency against a running broker.",
    bench_commands,
    sizeof(bench_commands) / sizeof(bench_commands[0]),
};

int sl_cli_bench(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &bench_group, argc, argv);
}

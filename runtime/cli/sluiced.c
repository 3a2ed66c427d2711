/* sluiced: the Sluice broker. Opens the data directory, serves the native protocol and the HTTP
 * endpoint, and stops cleanly on SIGTERM or SIGINT (stop accepting, flush, exit 0). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/mp.h"
#include "broker/broker.h"
#include "client/internal.h"
#include "cluster/cluster.h"
#include "cluster/node.h"
#include "net/http.h"
#include "net/kafka.h"
#include "net/native_handler.h"
#include "net/server.h"
#include "pipeline/admin.h"
#include "pipeline/pipeline.h"
#include "pipeline/supervisor.h"
#include "pipeline/task.h"
#include "plugin/loader.h"
#include "sluice/client.h"

#define DEFAULT_DATA_DIR "./data"
#define DEFAULT_LISTEN "tcp://127.0.0.1:9400"
#define DEFAULT_HTTP "127.0.0.1:9402"
#define DEFAULT_KAFKA "127.0.0.1:9092"

struct options {
    const char *data_dir;
    const char *listen;
    const char *http;
    const char *ready_file;
    int node_id;
    long retention_check_ms;
    long cleaner_interval_ms;
    const char *kafka;
    bool auto_create;
    int num_partitions;
    const char *pipelines[16]; /* --pipeline FILE, deployed once serving */
    int npipelines;
    const char *plugin_path;
    const char *log_level;
    const char *controllers;       /* --controllers: run as one node of a cluster */
    const char *controller_listen; /* --controller-listen */
    int default_replication;       /* --default-replication */
    long replica_lag_ms;           /* --replica-lag-max-ms */
};

static void usage(FILE *out) {
    fprintf(out,
            "Usage: sluiced [OPTIONS]\n"
            "\n"
            "Runs a Sluice broker: a partitioned, persistent log served over the native protocol.\n"
            "\n"
            "Options:\n"
            "  --data-dir DIR         where partitions and metadata live (default %s)\n"
            "  --listen URL           native protocol address, tcp://HOST:PORT or ipc:///PATH\n"
            "                         (default %s; port 0 picks a free port)\n"
            "  --http-listen ADDR     /health and /metrics, HOST:PORT or 'none'\n"
            "                         (default %s; port 0 picks a free port)\n"
            "  --ready-file PATH      once serving, write the bound addresses there as JSON\n"
            "  --node-id N            this node's id (default 1)\n"
            "  --retention-check-interval-ms N\n"
            "                         how often retention is enforced (default 5000)\n"
            "  --cleaner-interval-ms N\n"
            "                         how often compacted topics are compacted when dirty enough\n"
            "                         (default 15000)\n"
            "  --kafka-listen ADDR    the Kafka protocol (kcat, librdkafka, ...), HOST:PORT or\n"
            "                         'none' (default %s; port 0 picks a free port)\n"
            "  --auto-create-topics yes|no\n"
            "                         create a topic a Kafka client names that does not exist\n"
            "                         (auto.create.topics.enable; default yes)\n"
            "  --num-partitions N     partitions of such topics (num.partitions; default 1)\n"
            "  --pipeline FILE        deploy this pipeline file once serving (checked first: a\n"
            "                         bad file stops sluiced before it starts); may be repeated\n"
            "  --plugin-path DIRS     ':'-separated folders searched for plugins before the\n"
            "                         installed and built ones (plugin.path)\n"
            "  --log-level LEVEL      debug, info, warn or error (default info)\n"
            "  --controllers LIST     run as a node of a cluster whose metadata quorum (Raft) is\n"
            "                         these controllers: ID@HOST:PORT,... with numeric IPv4\n"
            "                         hosts, this node (--node-id) among them; every node\n"
            "                         registers its --listen address there and learns the others'\n"
            "  --controller-listen HOST:PORT\n"
            "                         this node's quorum address (default: its --controllers entry)\n"
            "  --default-replication N\n"
            "                         replicas of a topic created without a replication factor\n"
            "                         (default.replication.factor; default 1)\n"
            "  --replica-lag-max-ms N a follower that has not caught up for this long leaves the\n"
            "                         in-sync replicas (replica.lag.time.max.ms; default 10000)\n"
            "  --config FILE          read options from FILE first: one per line, 'name = value'\n"
            "                         or 'name value' (the long option's name without '--'; '#'\n"
            "                         starts a comment); the command line overrides them\n"
            "  -h, --help             show this help\n"
            "  -V, --version          show the version\n"
            "\n"
            "SIGTERM or SIGINT stops the broker cleanly: it stops accepting, flushes and exits 0.\n",
            DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_HTTP, DEFAULT_KAFKA);
}

static int parse_long(const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o) {
    enum { OPT_KAFKA = 900, OPT_AUTO, OPT_NPART, OPT_PIPELINE, OPT_PLUGIN_PATH, OPT_CONTROLLERS,
           OPT_CONTROLLER_LISTEN, OPT_REPLICATION, OPT_REPLICA_LAG };
    enum { OPT_DATA = 1000, OPT_LISTEN, OPT_HTTP, OPT_READY, OPT_NODE, OPT_RET, OPT_CLEAN,
           OPT_LOG };
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, OPT_DATA},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"http-listen", required_argument, NULL, OPT_HTTP},
        {"ready-file", required_argument, NULL, OPT_READY},
        {"node-id", required_argument, NULL, OPT_NODE},
        {"retention-check-interval-ms", required_argument, NULL, OPT_RET},
        {"cleaner-interval-ms", required_argument, NULL, OPT_CLEAN},
        {"kafka-listen", required_argument, NULL, OPT_KAFKA},
        {"auto-create-topics", required_argument, NULL, OPT_AUTO},
        {"num-partitions", required_argument, NULL, OPT_NPART},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"plugin-path", required_argument, NULL, OPT_PLUGIN_PATH},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"controllers", required_argument, NULL, OPT_CONTROLLERS},
        {"controller-listen", required_argument, NULL, OPT_CONTROLLER_LISTEN},
        {"default-replication", required_argument, NULL, OPT_REPLICATION},
        {"replica-lag-max-ms", required_argument, NULL, OPT_REPLICA_LAG},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_HTTP, NULL, 1, 5000, 15000,
                          DEFAULT_KAFKA, true, 1, {NULL}, 0, NULL, "info", NULL, NULL, 1,
                          10000};
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA: o->data_dir = optarg; break;
        case OPT_LISTEN: o->listen = optarg; break;
        case OPT_HTTP: o->http = optarg; break;
        case OPT_READY: o->ready_file = optarg; break;
        case OPT_NODE:
            /* Producer ids carry the node id above bit 40 in a cluster (broker.h). */
            if (parse_long(optarg, 0, 1000000, &v)) {
                fprintf(stderr, "sluiced: --node-id must be a number from 0 to 1000000, not "
                        "\"%s\"\n", optarg);
                return 2;
            }
            o->node_id = (int)v;
            break;
        case OPT_RET:
            if (parse_long(optarg, 1, 86400000L, &v)) {
                fprintf(stderr, "sluiced: --retention-check-interval-ms must be 1 to 86400000\n");
                return 2;
            }
            o->retention_check_ms = v;
            break;
        case OPT_CLEAN:
            if (parse_long(optarg, 1, 86400000L, &v)) {
                fprintf(stderr, "sluiced: --cleaner-interval-ms must be 1 to 86400000\n");
                return 2;
            }
            o->cleaner_interval_ms = v;
            break;
        case OPT_LOG: {
            enum sl_log_level level;
            if (sl_log_parse_level(optarg, &level)) {
                fprintf(stderr, "sluiced: --log-level must be debug, info, warn or error\n");
                return 2;
            }
            sl_log_set_level(level);
            o->log_level = optarg;
            break;
        }
        case OPT_PIPELINE:
            if (o->npipelines == (int)(sizeof(o->pipelines) / sizeof(o->pipelines[0]))) {
                fprintf(stderr, "sluiced: at most 16 --pipeline files\n");
                return 2;
            }
            o->pipelines[o->npipelines++] = optarg;
            break;
        case OPT_PLUGIN_PATH: o->plugin_path = optarg; break;
        case OPT_CONTROLLERS: o->controllers = optarg; break;
        case OPT_CONTROLLER_LISTEN: o->controller_listen = optarg; break;
        case OPT_REPLICATION:
            if (parse_long(optarg, 1, SL_MAX_REPLICAS, &v)) {
                fprintf(stderr, "sluiced: --default-replication must be 1 to %d\n",
                        SL_MAX_REPLICAS);
                return 2;
            }
            o->default_replication = (int)v;
            break;
        case OPT_REPLICA_LAG:
            if (parse_long(optarg, 100, 86400000L, &v)) {
                fprintf(stderr, "sluiced: --replica-lag-max-ms must be 100 to 86400000\n");
                return 2;
            }
            o->replica_lag_ms = v;
            break;
        case OPT_KAFKA: o->kafka = optarg; break;
        case OPT_AUTO:
            if (strcmp(optarg, "yes") && strcmp(optarg, "no")) {
                fprintf(stderr, "sluiced: --auto-create-topics must be yes or no\n");
                return 2;
            }
            o->auto_create = strcmp(optarg, "yes") == 0;
            break;
        case OPT_NPART:
            if (parse_long(optarg, 1, 10000, &v)) {
                fprintf(stderr, "sluiced: --num-partitions must be 1 to 10000\n");
                return 2;
            }
            o->num_partitions = (int)v;
            break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("sluiced %s\n", sl_version()); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluiced: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (o->controller_listen && o->controllers == NULL) {
        fprintf(stderr, "sluiced: --controller-listen needs --controllers\n");
        return 2;
    }
    return 0;
}

static int write_ready_file(const char *path, const char *listen, const char *http,
                            const char *kafka, int node) {
    char text[1024];
    int n = snprintf(text, sizeof(text),
                     "{\"listen\":\"%s\",\"http\":\"%s\",\"kafka\":\"%s\",\"node_id\":%d,"
                     "\"pid\":%ld}\n",
                     listen, http, kafka, node, (long)getpid());
    return sl_fs_write_atomic(path, text, (size_t)n);
}

/* ---- --run-task: one pipeline stage instance, started by the supervisor ---- */

static volatile sig_atomic_t task_stop;

static void on_task_signal(int sig) {
    (void)sig;
    task_stop = 1;
}

static int run_task(int argc, char **argv) {
    enum { T_BROKER = 1100, T_DATA, T_FILE, T_SOURCE, T_STAGE, T_INSTANCE, T_RESTARTS, T_LOG,
           T_PLUGINS, T_VERSION, T_LOCAL, T_NODE };
    static const struct option longopts[] = {
        {"run-task", no_argument, NULL, 'r'},
        {"broker", required_argument, NULL, T_BROKER},
        {"local-broker", required_argument, NULL, T_LOCAL},
        {"node-id", required_argument, NULL, T_NODE},
        {"data-dir", required_argument, NULL, T_DATA},
        {"pipeline-file", required_argument, NULL, T_FILE},
        {"pipeline-source", required_argument, NULL, T_SOURCE},
        {"stage", required_argument, NULL, T_STAGE},
        {"instance", required_argument, NULL, T_INSTANCE},
        {"restarts", required_argument, NULL, T_RESTARTS},
        {"log-level", required_argument, NULL, T_LOG},
        {"plugin-path", required_argument, NULL, T_PLUGINS},
        {"version", required_argument, NULL, T_VERSION},
        {NULL, 0, NULL, 0},
    };
    sl_task_conf tc = {.broker = DEFAULT_LISTEN, .data_dir = DEFAULT_DATA_DIR, .stop = &task_stop};
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': break;
        case T_BROKER: tc.broker = optarg; break;
        case T_LOCAL: tc.local_broker = optarg; break;
        case T_DATA: tc.data_dir = optarg; break;
        case T_FILE: tc.pipeline_file = optarg; break;
        case T_SOURCE: tc.source_file = optarg; break;
        case T_STAGE: tc.stage = optarg; break;
        case T_NODE:
        case T_INSTANCE:
        case T_RESTARTS:
            if (parse_long(optarg, 0, 1000000, &v)) {
                fprintf(stderr, "sluiced: --node-id, --instance and --restarts take a number\n");
                return 2;
            }
            *(c == T_INSTANCE ? &tc.instance : c == T_NODE ? &tc.node_id : &tc.restarts) = (int)v;
            break;
        case T_LOG: {
            enum sl_log_level level;
            if (sl_log_parse_level(optarg, &level) == 0)
                sl_log_set_level(level);
            break;
        }
        case T_PLUGINS: tc.plugin_path = optarg; break;
        case T_VERSION:
            if (parse_long(optarg, 0, LONG_MAX, &v)) {
                fprintf(stderr, "sluiced: --version takes a number\n");
                return 2;
            }
            tc.version = v;
            break;
        default: return 2;
        }
    }
    if (tc.pipeline_file == NULL || tc.stage == NULL) {
        fprintf(stderr, "sluiced: --run-task needs --pipeline-file and --stage\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_task_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return sl_task_run(&tc);
}

/* The node's second native listener, ipc://DATA_DIR/native.sock: pipeline instances reach their
 * own node there without the TCP stack. '*url' stays "" (and instances use TCP) when the path is
 * too long for a Unix socket. */
static int start_ipc_listener(const char *data_dir, sl_native_ctx *ictx, sl_server **out,
                              char *url, size_t len) {
    char dir[PATH_MAX], path[PATH_MAX + 32], bound[PATH_MAX + 64];
    url[0] = '\0';
    if (realpath(data_dir, dir) == NULL)
        return SL_EIO;
    snprintf(path, sizeof(path), "%s/native.sock", dir);
    if (strlen(path) >= 100) { /* sun_path holds 108 bytes */
        sl_warn("sluiced", "no ipc:// listener: %s is too long a socket path; pipeline "
                "instances reach this node over TCP", path);
        return 0;
    }
    unlink(path); /* left by a node that was killed */
    char want[PATH_MAX + 40];
    snprintf(want, sizeof(want), "ipc://%s", path);
    int rc = sl_server_start(want, "native", sl_native_handle_frame, ictx, NULL, out, bound,
                             sizeof(bound));
    if (rc == 0)
        snprintf(url, len, "%s", want);
    return rc;
}

/* Checks every --pipeline file before anything starts. */
static int check_pipelines(const struct options *o, char **sources) {
    char pathbuf[8192], err[2048];
    const char *path = sl_plugin_search_path(o->plugin_path, pathbuf, sizeof(pathbuf));
    for (int i = 0; i < o->npipelines; i++) {
        sl_pipeline *p;
        if (sl_pipeline_read_file(o->pipelines[i], &sources[i]) != 0) {
            fprintf(stderr, "sluiced: cannot read pipeline file %s: %s\n", o->pipelines[i],
                    strerror(errno));
            return 2;
        }
        if (sl_pipeline_load(o->pipelines[i], sources[i], path, &p, err, sizeof(err)) != 0) {
            fprintf(stderr, "sluiced: pipeline refused: %s\n", err);
            return 2;
        }
        sl_pipeline_free(p);
    }
    return 0;
}

static int deploy_pipelines(const struct options *o, char **sources, const char *broker) {
    char pathbuf[8192], err[2048];
    const char *path = sl_plugin_search_path(o->plugin_path, pathbuf, sizeof(pathbuf));
    for (int i = 0; i < o->npipelines; i++) {
        sl_pipeline *p;
        int64_t version;
        int rc = sl_pipeline_load(o->pipelines[i], sources[i], path, &p, err, sizeof(err));
        if (rc == 0) {
            rc = sl_pl_deploy(broker, p, sources[i], &version, err, sizeof(err));
            if (rc == 0)
                sl_info("sluiced", "pipeline %s deployed from %s (version %lld)", p->name,
                        o->pipelines[i], (long long)version);
            sl_pipeline_free(p);
        }
        if (rc) {
            sl_error("sluiced", "pipeline %s refused: %s", o->pipelines[i], err);
            return rc;
        }
    }
    return 0;
}

/* The pipeline topics, then the --pipeline files deployed. */
typedef struct pipeline_setup {
    sl_broker *broker;
    const struct options *o;
    char **sources; /* freed by the thread */
    const char *broker_url;
    atomic_bool stop;
    pthread_t thread;
    bool retrying; /* on the thread: a controller may not be elected yet */
} pipeline_setup;

static int set_up_pipelines(pipeline_setup *ps) {
    static const char *const topics[] = {SL_PIPELINES_TOPIC, SL_PIPELINE_STATUS_TOPIC,
                                         SL_CONNECT_OFFSETS_TOPIC};
    char err[256];
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        int rc = sl_broker_ensure_internal_topic(ps->broker, topics[i], 1, true, err,
                                                 sizeof(err));
        if (rc) {
            sl_log(ps->retrying ? SL_LOG_DEBUG : SL_LOG_ERROR, "sluiced", "cannot create %s: %s",
                   topics[i], err);
            return rc;
        }
    }
    return deploy_pipelines(ps->o, ps->sources, ps->broker_url);
}

static void *set_up_pipelines_main(void *arg) {
    pipeline_setup *ps = arg;
    ps->retrying = true;
    int rc = SL_ENOTLEADER;
    for (int tries = 0; !atomic_load(&ps->stop); tries++) {
        rc = set_up_pipelines(ps);
        if (rc != SL_ENOTLEADER && rc != SL_ETIMEDOUT && rc != SL_ECONNREFUSED &&
            rc != SL_ENOTENOUGHREPLICAS)
            break;
        if (tries == 20)
            sl_info("sluiced", "waiting for a controller and enough live brokers to create "
                    "the pipeline topics");
        struct timespec pause = {0, 500 * 1000000};
        nanosleep(&pause, NULL);
    }
    if (rc && !atomic_load(&ps->stop))
        sl_error("sluiced", "cannot set up pipelines: %s (pipelines do not run on this node)",
                 sl_strerror(rc));
    for (int i = 0; i < ps->o->npipelines; i++)
        free(ps->sources[i]);
    return NULL;
}

/* ---- --config FILE ---- */

/* The options a config file may set: every long option that takes a value. */
static const char *const config_names[] = {
    "data-dir", "listen", "http-listen", "ready-file", "node-id", "retention-check-interval-ms",
    "cleaner-interval-ms", "kafka-listen", "auto-create-topics", "num-partitions", "pipeline",
    "plugin-path", "log-level", "controllers", "controller-listen", NULL};

/* The arguments built from the config file; kept for the process's life (options point in). */
static char **config_args;

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* Rewrites argv as argv[0], the config file's options, then the rest of the command line
 * (which thus wins). 0, or 2 with the reason on stderr. */
static int expand_config(int *argc, char ***argv) {
    const char *path = NULL;
    int skip = -1, nskip = 0;
    for (int i = 1; i < *argc && path == NULL; i++) {
        if (strcmp((*argv)[i], "--config") == 0 && i + 1 < *argc) {
            path = (*argv)[i + 1];
            skip = i;
            nskip = 2;
        } else if (strncmp((*argv)[i], "--config=", 9) == 0) {
            path = (*argv)[i] + 9;
            skip = i;
            nskip = 1;
        } else if (strcmp((*argv)[i], "--config") == 0) {
            fprintf(stderr, "sluiced: --config needs a file\n");
            return 2;
        }
    }
    if (path == NULL)
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "sluiced: cannot read config file %s: %s\n", path, strerror(errno));
        return 2;
    }
    size_t cap = (size_t)*argc + 16, n = 0;
    char **args = calloc(cap, sizeof(*args));
    char line[4096];
    int lineno = 0, rc = args ? 0 : 2;
    if (args)
        args[n++] = (*argv)[0];
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *key = trim(line), *value;
        if (*key == '\0')
            continue;
        size_t klen = strcspn(key, "= \t");
        value = key + klen;
        if (*value)
            *value++ = '\0';
        value = trim(value);
        if (*value == '=')
            value = trim(value + 1);
        bool known = false;
        for (int i = 0; config_names[i] && !known; i++)
            known = strcmp(config_names[i], key) == 0;
        if (!known || *value == '\0') {
            fprintf(stderr, "sluiced: %s:%d: %s \"%s\"\n", path, lineno,
                    known ? "no value for" : "unknown option", key);
            rc = 2;
            break;
        }
        if (n + 2 >= cap) {
            cap *= 2;
            char **p = realloc(args, cap * sizeof(*p));
            if (p == NULL) {
                rc = 2;
                break;
            }
            args = p;
        }
        char opt[128];
        snprintf(opt, sizeof(opt), "--%s", key);
        if ((args[n] = strdup(opt)) == NULL || (args[n + 1] = strdup(value)) == NULL)
            rc = 2;
        n += 2;
    }
    fclose(f);
    if (rc) {
        for (size_t i = 1; args && i < n; i++)
            free(args[i]);
        free(args);
        return 2;
    }
    if (n + (size_t)*argc + 1 > cap) {
        char **p = realloc(args, (n + (size_t)*argc + 1) * sizeof(*p));
        if (p == NULL)
            return 2;
        args = p;
    }
    for (int i = 1; i < *argc; i++)
        if (i < skip || i >= skip + nskip)
            args[n++] = (*argv)[i];
    args[n] = NULL;
    config_args = args;
    *argc = (int)n;
    *argv = args;
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--run-task") == 0)
        return run_task(argc, argv);
    struct options o;
    int rc = expand_config(&argc, &argv);
    if (rc == 0)
        rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    char *sources[16] = {NULL};
    if ((rc = check_pipelines(&o, sources)) != 0) {
        for (int i = 0; i < o.npipelines; i++)
            free(sources[i]);
        return rc;
    }

    /* Every thread started from here on inherits the blocked set; main waits for the signals. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    sl_broker_conf bc = {o.data_dir, o.node_id, o.retention_check_ms, o.cleaner_interval_ms,
                         o.controllers != NULL, o.replica_lag_ms};
    sl_broker *broker;
    if ((rc = sl_broker_open(&bc, &broker)) != 0) {
        sl_error("sluiced", "cannot open data directory %s: %s", o.data_dir, sl_strerror(rc));
        return 1;
    }
    char listen_bound[300], http_bound[300] = "none";
    sl_server *native = NULL;
    sl_http *http = NULL;
    sl_native_ctx ctx = {broker, NULL, NULL, NULL, "", false, NULL, false};
    /* Transactions first: it settles what a crash left open, so the group coordinator then
     * loads only decided offsets. */
    if ((rc = sl_txn_open(broker, &ctx.txn)) != 0)
        sl_error("sluiced", "cannot start the transaction coordinator: %s", sl_strerror(rc));
    if (rc == 0 && (rc = sl_coord_open(broker, &ctx.coord)) != 0)
        sl_error("sluiced", "cannot start the group coordinator: %s", sl_strerror(rc));
    if (rc == 0)
        sl_txn_attach(ctx.txn, ctx.coord);
    if (rc == 0)
        rc = sl_server_start(o.listen, "native", sl_native_handle_frame, &ctx, NULL, &native,
                             listen_bound, sizeof(listen_bound));
    snprintf(ctx.url, sizeof(ctx.url), "%.*s", (int)sizeof(ctx.url) - 1, rc == 0 ? listen_bound : "");
    sl_node *node = NULL;
    if (rc == 0 && o.controllers &&
        (strstr(listen_bound, "://0.0.0.0:") || strstr(listen_bound, "://[::]:"))) {
        sl_error("sluiced", "--listen %s: a node of a cluster registers its address for the "
                 "others to reach it, so it must name this host's address, not a wildcard",
                 listen_bound);
        rc = SL_EINVAL;
    }
    if (rc == 0 && o.controllers) {
        char err[512] = "";
        sl_cluster_conf cc = {o.node_id, listen_bound, o.controllers, o.controller_listen,
                              o.data_dir, broker, 0, o.default_replication};
        if ((rc = sl_cluster_start(&cc, &ctx.cluster, err, sizeof(err))) != 0)
            sl_error("sluiced", "%s", err);
    }
    atomic_store(&ctx.cluster_ready, true); /* url and cluster are set: handlers may read them */
    if (rc == 0 && strcmp(o.http, "none") != 0)
        rc = sl_http_start(&ctx, o.http, &http, http_bound, sizeof(http_bound));
    char kafka_bound[320] = "none";
    sl_server *kafka = NULL;
    sl_kafka_ctx kctx = {broker, ctx.coord, o.node_id, "", 0, o.auto_create, o.num_partitions, 0,
                         false, ctx.txn, ctx.cluster, false};
    if (rc == 0 && strcmp(o.kafka, "none") != 0) {
        char url[320], bound[320];
        atomic_store(&kctx.address_pending, true);
        snprintf(url, sizeof(url), "tcp://%s", o.kafka);
        rc = sl_server_start(url, "kafka", sl_kafka_handle_frame, &kctx, NULL, &kafka, bound,
                             sizeof(bound));
        /* Clients are told to come back to the address they reached: the one bound. */
        const char *hostport = bound + strlen("tcp://");
        const char *colon = strrchr(hostport, ':');
        if (rc == 0 && colon) {
            snprintf(kctx.host, sizeof(kctx.host), "%.*s", (int)(colon - hostport), hostport);
            kctx.port = atoi(colon + 1);
            snprintf(kafka_bound, sizeof(kafka_bound), "%s", hostport);
        }
        atomic_store_explicit(&kctx.address_pending, false, memory_order_release);
    }
    /* The node's threads start once both addresses it registers are known. */
    if (rc == 0 && ctx.cluster) {
        sl_node_conf nc = {ctx.cluster, broker, o.node_id, ctx.url,
                           kafka ? kafka_bound : NULL};
        if ((rc = sl_node_start(&nc, &node)) != 0)
            sl_error("sluiced", "cannot start the cluster threads: %s", sl_strerror(rc));
        else
            atomic_store(&ctx.node, node);
    }
    sl_server *ipc = NULL;
    char ipc_url[PATH_MAX + 40] = "";
    sl_native_ctx ictx = ctx; /* final by now: the node is set */
    ictx.ipc = true;
    if (rc == 0 && (rc = start_ipc_listener(o.data_dir, &ictx, &ipc, ipc_url,
                                            sizeof(ipc_url))) != 0)
        sl_error("sluiced", "cannot listen on ipc:// in %s: %s", o.data_dir, sl_strerror(rc));
    sl_supervisor *supervisor = NULL;
    pipeline_setup setup = {broker, &o, sources, listen_bound, false, 0, false};
    if (rc == 0 && !ctx.cluster)
        rc = set_up_pipelines(&setup); /* says why it failed */
    if (rc == 0) {
        sl_supervisor_conf sc = {listen_bound, o.data_dir, o.plugin_path, o.log_level,
                                 o.node_id, ipc_url[0] ? ipc_url : NULL, ctx.cluster != NULL};
        rc = sl_supervisor_start(&sc, &supervisor);
    }
    /* A node of a cluster cannot create the (replicated) pipeline topics before a controller
     * is elected, which may wait for nodes started after it: it does so on a thread. */
    bool setup_thread = false;
    if (rc == 0 && ctx.cluster)
        setup_thread = pthread_create(&setup.thread, NULL, set_up_pipelines_main, &setup) == 0;
    if (rc == 0 && ctx.cluster && !setup_thread)
        rc = SL_ENOMEM;
    if (!setup_thread)
        for (int i = 0; i < o.npipelines; i++)
            free(sources[i]);
    if (rc == 0 && o.ready_file &&
        (rc = write_ready_file(o.ready_file, listen_bound, http_bound, kafka_bound, o.node_id)) !=
            0)
        sl_error("sluiced", "cannot write ready file %s", o.ready_file);
    if (rc == 0) {
        sl_info("sluiced",
                "sluiced %s serving: native protocol on %s, Kafka protocol on %s, HTTP on %s, "
                "data in %s",
                sl_version(), listen_bound, kafka_bound, http_bound, o.data_dir);
        int sig;
        sigwait(&stop_signals, &sig);
        sl_info("sluiced", "%s received: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    if (setup_thread) {
        atomic_store(&setup.stop, true);
        pthread_join(setup.thread, NULL);
    }
    /* Pipeline instances commit and leave their groups while the broker still serves. */
    sl_supervisor_stop(supervisor);
    sl_broker_shutdown(broker);
    if (ctx.coord)
        sl_coord_shutdown(ctx.coord); /* wakes members waiting in a join or sync */
    if (http)
        sl_http_stop(http);
    if (kafka)
        sl_server_stop(kafka);
    if (ipc)
        sl_server_stop(ipc);
    if (native)
        sl_server_stop(native);
    atomic_store(&ctx.node, NULL);
    sl_node_stop(node);
    sl_cluster_stop(ctx.cluster);
    sl_txn_close(ctx.txn);
    if (ctx.coord)
        sl_coord_close(ctx.coord);
    sl_broker_close(broker);
    if (o.ready_file)
        unlink(o.ready_file);
    if (rc == 0)
        sl_info("sluiced", "stopped cleanly");
    return rc ? 1 : 0;
}

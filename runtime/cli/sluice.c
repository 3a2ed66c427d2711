/* sluice: the command-line client of a Sluice broker.
 *
 *   sluice [-b URL] COMMAND [SUBCOMMAND] [ARGS]...
 *
 * Commands live in dispatch tables of {name, function, summary}; a group such as 'topic' is a
 * command whose function dispatches again through its own table. Adding a command is one row
 * and one cmd_* function.
 *
 * Exit status: 0 success, 1 failure (printed as "sluice: <cause>" on stderr), 2 usage error. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "base/clock.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/cluster_cmd.h"
#include "cli/group_cmd.h"
#include "cli/pipeline_cmd.h"
#include "cli/format.h"
#include "cli/timeparse.h"
#include "sluice/client.h"

/* How long one consumer poll waits, so that signals and the end of input are noticed soon. */
#define POLL_INTERVAL_MS 200

/* Long options without a short form. */
enum {
    OPT_FROM_BEGINNING = 256,
    OPT_FROM_TIME,
    OPT_JSON,
    OPT_ACKS,
    OPT_LINGER_MS,
    OPT_BATCH_SIZE,
};


/* ---- topic create ------------------------------------------------------------------------ */

static const char topic_create_help[] =
    "Usage: sluice topic create NAME [--partitions N] [--replication N] [--config KEY=VALUE]...\n"
    "\n"
    "Creates the topic NAME.\n"
    "\n"
    "Options:\n"
    "  -p, --partitions N     number of partitions, at least 1 (default 1)\n"
    "  -r, --replication N    replicas of each partition, on different brokers of a cluster\n"
    "                         (default: the cluster's --default-replication)\n"
    "  -c, --config K=V       set topic config K to V, e.g. retention.ms=86400000;\n"
    "                         may be repeated\n" COMMON_OPTIONS_HELP;

struct topic_create_args {
    const char *name;
    int32_t partitions;
    int32_t replication;
    struct pair_list configs;
};

static int parse_topic_create(struct cli *cli, int argc, char **argv,
                              struct topic_create_args *args) {
    static const struct option options[] = {{"partitions", required_argument, NULL, 'p'},
                                            {"replication", required_argument, NULL, 'r'},
                                            {"config", required_argument, NULL, 'c'},
                                            COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    cli_start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":p:r:c:b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(topic_create_help);
        else if (opt == 'p')
            rc = cli_parse_int32(cli, "--partitions", optarg, 1, &args->partitions);
        else if (opt == 'r')
            rc = cli_parse_int32(cli, "--replication", optarg, 1, &args->replication);
        else if (opt == 'c')
            rc = cli_pair_list_add(cli, &args->configs, "--config", optarg);
        else
            rc = cli_common_option(cli, opt, argv);
    }
    return rc == CLI_GO_ON ? cli_one_operand(cli, argc, argv, "topic name", &args->name) : rc;
}

static int run_topic_create(const struct cli *cli, const struct topic_create_args *args) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_client *admin;
    int rc = cli_open_admin(cli, &admin);
    if (rc != CLI_GO_ON)
        return rc;
    int status = sl_topic_create_replicated(admin, args->name, args->partitions,
                                            args->replication, args->configs.items,
                                            args->configs.count, errbuf, sizeof(errbuf));
    if (status == 0) {
        printf("created topic \"%s\" with %" PRId32 " %s\n", args->name, args->partitions,
               cli_plural((uint64_t)args->partitions, "partition", "partitions"));
        rc = CLI_OK;
    } else {
        rc = cli_report_failure(cli, status, errbuf, NULL, "cannot create topic \"%s\"", args->name);
    }
    sl_client_destroy(admin);
    return rc;
}

static int cmd_topic_create(struct cli *cli, int argc, char **argv) {
    struct topic_create_args args = {.partitions = 1};
    int rc = cli_pair_list_init(&args.configs, argc);
    if (rc == CLI_GO_ON)
        rc = parse_topic_create(cli, argc, argv, &args);
    if (rc == CLI_GO_ON)
        rc = run_topic_create(cli, &args);
    free(args.configs.items);
    return rc;
}

/* ---- topic list -------------------------------------------------------------------------- */

static const char topic_list_help[] = "Usage: sluice topic list\n"
                                      "\n"
                                      "Prints the name of every topic, one per line, sorted.\n"
                                      "\n"
                                      "Options:\n" COMMON_OPTIONS_HELP;

static int cmd_topic_list(struct cli *cli, int argc, char **argv) {
    static const struct option options[] = {COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(topic_list_help);
        if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = cli_no_operands(cli, argc, argv)) != CLI_GO_ON)
        return rc;

    sl_client *admin;
    char **names;
    size_t count;
    if ((rc = cli_open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    int status = sl_topic_list(admin, &names, &count);
    if (status == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", names[i]);
        sl_topic_list_free(names, count);
        rc = CLI_OK;
    } else {
        rc = cli_report_failure(cli, status, NULL, NULL, "cannot list topics");
    }
    sl_client_destroy(admin);
    return rc;
}

/* ---- topic describe ---------------------------------------------------------------------- */

static const char topic_describe_help[] =
    "Usage: sluice topic describe NAME [--json]\n"
    "\n"
    "Shows each partition of topic NAME (leader, replicas, in-sync replicas, start and end\n"
    "offsets, size on disk) and the topic's effective configs. Offsets and sizes are the node's\n"
    "asked (-1 and '-' where it holds no replica).\n"
    "\n"
    "Options:\n"
    "      --json             print one JSON object instead of tables; sizes are exact bytes\n"
    "                         and every config value is a string\n" COMMON_OPTIONS_HELP;

static void print_topic_json(const sl_topic_info *info) {
    fputs("{\"name\":", stdout);
    cli_write_json_string(stdout, info->name);
    fputs(",\"partitions\":[", stdout);
    for (int32_t i = 0; i < info->npartitions; i++) {
        const sl_partition_info *p = &info->partitions[i];
        printf("%s{\"partition\":%" PRId32 ",\"leader\":%" PRId32 ",\"replicas\":[",
               i > 0 ? "," : "", p->partition, p->leader);
        for (int32_t k = 0; k < p->nreplicas; k++)
            printf("%s%" PRId32, k ? "," : "", p->replicas[k]);
        fputs("],\"isr\":[", stdout);
        for (int32_t k = 0; k < p->nisr; k++)
            printf("%s%" PRId32, k ? "," : "", p->isr[k]);
        printf("],\"start_offset\":%" PRId64 ",\"end_offset\":%" PRId64
               ",\"size_bytes\":%" PRId64 "}",
               p->start_offset, p->end_offset, p->size_bytes);
    }
    fputs("],\"config\":{", stdout);
    for (size_t i = 0; i < info->nconfigs; i++) {
        if (i > 0)
            fputc(',', stdout);
        cli_write_json_string(stdout, info->configs[i].key);
        fputc(':', stdout);
        cli_write_json_string(stdout, info->configs[i].value);
    }
    fputs("}}\n", stdout);
}

static void print_topic_table(const sl_topic_info *info) {
    char size[32];
    int key_width = (int)strlen("CONFIG");
    printf("topic \"%s\": %" PRId32 " %s\n\n", info->name, info->npartitions,
           cli_plural((uint64_t)info->npartitions, "partition", "partitions"));
    printf("%-9s  %-6s  %-8s  %-8s  %-12s  %-12s  %s\n", "PARTITION", "LEADER", "REPLICAS", "ISR",
           "START OFFSET", "END OFFSET", "SIZE");
    for (int32_t i = 0; i < info->npartitions; i++) {
        const sl_partition_info *p = &info->partitions[i];
        char replicas[64], isr[64];
        cli_format_ids(p->replicas, p->nreplicas, replicas, sizeof(replicas));
        cli_format_ids(p->isr, p->nisr, isr, sizeof(isr));
        if (p->size_bytes < 0)
            snprintf(size, sizeof(size), "-");
        else
            cli_format_size(p->size_bytes, size, sizeof(size));
        printf("%-9" PRId32 "  %-6" PRId32 "  %-8s  %-8s  %-12" PRId64 "  %-12" PRId64 "  %s\n",
               p->partition, p->leader, replicas, isr, p->start_offset, p->end_offset, size);
    }
    if (info->nconfigs == 0)
        return;
    for (size_t i = 0; i < info->nconfigs; i++)
        if ((int)strlen(info->configs[i].key) > key_width)
            key_width = (int)strlen(info->configs[i].key);
    printf("\n%-*s  %s\n", key_width, "CONFIG", "VALUE");
    for (size_t i = 0; i < info->nconfigs; i++)
        printf("%-*s  %s\n", key_width, info->configs[i].key, info->configs[i].value);
}

static int describe_topic(const struct cli *cli, const char *name, bool json) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_client *admin;
    sl_topic_info *info;
    int rc = cli_open_admin(cli, &admin);
    if (rc != CLI_GO_ON)
        return rc;
    int status = sl_topic_describe(admin, name, &info, errbuf, sizeof(errbuf));
    if (status == 0) {
        if (json)
            print_topic_json(info);
        else
            print_topic_table(info);
        sl_topic_info_free(info);
        rc = CLI_OK;
    } else {
        rc = cli_report_failure(cli, status, errbuf, name, "cannot describe topic \"%s\"", name);
    }
    sl_client_destroy(admin);
    return rc;
}

static int cmd_topic_describe(struct cli *cli, int argc, char **argv) {
    static const struct option options[] = {
        {"json", no_argument, NULL, OPT_JSON}, COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    const char *name;
    bool json = false;
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(topic_describe_help);
        if (opt == OPT_JSON)
            json = true;
        else if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = cli_one_operand(cli, argc, argv, "topic name", &name)) != CLI_GO_ON)
        return rc;
    return describe_topic(cli, name, json);
}

/* ---- topic alter ------------------------------------------------------------------------- */

static const char topic_alter_help[] =
    "Usage: sluice topic alter NAME --config KEY=VALUE [--config KEY=VALUE]...\n"
    "\n"
    "Changes configs of topic NAME. The broker checks every change first: if one is refused,\n"
    "none is made.\n"
    "\n"
    "Options:\n"
    "  -c, --config K=V       set topic config K to V; may be repeated, at least one\n"
    "                         is needed\n" COMMON_OPTIONS_HELP;

static int parse_topic_alter(struct cli *cli, int argc, char **argv, const char **name,
                             struct pair_list *configs) {
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    cli_start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":c:b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(topic_alter_help);
        else if (opt == 'c')
            rc = cli_pair_list_add(cli, configs, "--config", optarg);
        else
            rc = cli_common_option(cli, opt, argv);
    }
    if (rc == CLI_GO_ON)
        rc = cli_one_operand(cli, argc, argv, "topic name", name);
    if (rc == CLI_GO_ON && configs->count == 0)
        rc = cli_usage_error(cli, "nothing to change: give at least one --config KEY=VALUE");
    return rc;
}

static int run_topic_alter(const struct cli *cli, const char *name,
                           const struct pair_list *configs) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_client *admin;
    int rc = cli_open_admin(cli, &admin);
    if (rc != CLI_GO_ON)
        return rc;
    int status =
        sl_topic_alter(admin, name, configs->items, configs->count, errbuf, sizeof(errbuf));
    if (status == 0) {
        printf("altered topic \"%s\"\n", name);
        rc = CLI_OK;
    } else {
        rc = cli_report_failure(cli, status, errbuf, name, "cannot alter topic \"%s\"", name);
    }
    sl_client_destroy(admin);
    return rc;
}

static int cmd_topic_alter(struct cli *cli, int argc, char **argv) {
    struct pair_list configs;
    const char *name = NULL;
    int rc = cli_pair_list_init(&configs, argc);
    if (rc == CLI_GO_ON)
        rc = parse_topic_alter(cli, argc, argv, &name, &configs);
    if (rc == CLI_GO_ON)
        rc = run_topic_alter(cli, name, &configs);
    free(configs.items);
    return rc;
}

/* ---- topic delete ------------------------------------------------------------------------ */

static const char topic_delete_help[] = "Usage: sluice topic delete NAME\n"
                                        "\n"
                                        "Deletes topic NAME and all its records.\n"
                                        "\n"
                                        "Options:\n" COMMON_OPTIONS_HELP;

static int cmd_topic_delete(struct cli *cli, int argc, char **argv) {
    static const struct option options[] = {COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    char errbuf[ERRBUF_SIZE] = "";
    const char *name;
    sl_client *admin;
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(topic_delete_help);
        if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = cli_one_operand(cli, argc, argv, "topic name", &name)) != CLI_GO_ON)
        return rc;
    if ((rc = cli_open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    int status = sl_topic_delete(admin, name, errbuf, sizeof(errbuf));
    if (status == 0) {
        printf("deleted topic \"%s\"\n", name);
        rc = CLI_OK;
    } else {
        rc = cli_report_failure(cli, status, errbuf, name, "cannot delete topic \"%s\"", name);
    }
    sl_client_destroy(admin);
    return rc;
}

/* ---- topic ------------------------------------------------------------------------------- */

static const struct cli_command topic_commands[] = {
    {"create", cmd_topic_create, "create a topic"},
    {"list", cmd_topic_list, "print the names of all topics"},
    {"describe", cmd_topic_describe, "show a topic's partitions, offsets, sizes and configs"},
    {"alter", cmd_topic_alter, "change a topic's configs"},
    {"delete", cmd_topic_delete, "delete a topic and its records"},
};

static const struct cli_group topic_group = {
    "sluice topic [OPTIONS] COMMAND [ARGS]...",
    "Manages topics.",
    topic_commands,
    sizeof(topic_commands) / sizeof(topic_commands[0]),
};

static int cmd_topic(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &topic_group, argc, argv);
}

/* ---- produce ----------------------------------------------------------------------------- */

static const char produce_help[] =
    "Usage: sluice produce TOPIC [OPTIONS] < LINES\n"
    "\n"
    "Sends each line of standard input to TOPIC as one record (without its newline). Exits 0\n"
    "once the broker has acknowledged every record, 1 if any record was not delivered.\n"
    "\n"
    "Options:\n"
    "  -k, --key-sep C        the key is the text before the first C, the value the text\n"
    "                         after it; a line without C has a null key. C is one character,\n"
    "                         or \\t for a tab (default: no key)\n"
    "  -p, --partition P      send every record to partition P (default: chosen by key,\n"
    "                         or the same partition for a while when there is no key)\n"
    "      --acks 0|1|all     acknowledgements to wait for: none, the leader's, or all\n"
    "                         replicas' (default all)\n"
    "  -H, --header K=V       add header K with value V to every record; may be repeated\n"
    "      --linger-ms N      how long, in ms, a batch waits to fill before it is sent\n"
    "                         (default 5)\n"
    "      --batch-size B     bytes per partition batch before it is sent (default 131072)\n"
    "  -v, --verbose          print how many records were produced\n" COMMON_OPTIONS_HELP;

struct produce_args {
    const char *topic;
    int32_t partition; /* SL_PARTITION_ANY unless --partition */
    int key_sep;       /* the separator byte, or -1 for no keys */
    const char *acks;  /* NULL: the library default */
    int64_t linger_ms; /* -1: the library default */
    int64_t batch_size;
    struct pair_list header_texts; /* "k=v" as typed */
    sl_header *headers;            /* built from header_texts; keys are malloc'd */
    size_t nheaders;
    bool verbose;
};

static int parse_key_sep(const struct cli *cli, const char *text, int *key_sep) {
    if (strcmp(text, "\\t") == 0)
        *key_sep = '\t';
    else if (strlen(text) == 1)
        *key_sep = (unsigned char)text[0];
    else
        return cli_usage_error(cli, "--key-sep wants one character, not \"%s\"", text);
    return CLI_GO_ON;
}

static int parse_acks(const struct cli *cli, const char *text, const char **acks) {
    if (strcmp(text, "0") != 0 && strcmp(text, "1") != 0 && strcmp(text, "all") != 0)
        return cli_usage_error(cli, "--acks wants 0, 1 or all, not \"%s\"", text);
    *acks = text;
    return CLI_GO_ON;
}

/* Handles one produce option. Returns CLI_GO_ON, or an exit status (CLI_OK after --help). */
static int produce_option(struct cli *cli, int opt, char **argv, struct produce_args *args) {
    switch (opt) {
    case 'h':
        return cli_show_help(produce_help);
    case 'k':
        return parse_key_sep(cli, optarg, &args->key_sep);
    case 'p':
        return cli_parse_int32(cli, "--partition", optarg, 0, &args->partition);
    case 'H':
        return cli_pair_list_add(cli, &args->header_texts, "--header", optarg);
    case 'v':
        args->verbose = true;
        return CLI_GO_ON;
    case OPT_ACKS:
        return parse_acks(cli, optarg, &args->acks);
    case OPT_LINGER_MS:
        return cli_parse_number(cli, "--linger-ms", optarg, 0, INT32_MAX, &args->linger_ms);
    case OPT_BATCH_SIZE:
        return cli_parse_number(cli, "--batch-size", optarg, 1, INT32_MAX, &args->batch_size);
    default:
        return cli_common_option(cli, opt, argv);
    }
}

static int parse_produce(struct cli *cli, int argc, char **argv, struct produce_args *args) {
    static const struct option options[] = {{"key-sep", required_argument, NULL, 'k'},
                                            {"partition", required_argument, NULL, 'p'},
                                            {"acks", required_argument, NULL, OPT_ACKS},
                                            {"header", required_argument, NULL, 'H'},
                                            {"linger-ms", required_argument, NULL, OPT_LINGER_MS},
                                            {"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
                                            {"verbose", no_argument, NULL, 'v'},
                                            COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    cli_start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":k:p:H:vb:X:h", options, NULL)) != -1)
        rc = produce_option(cli, opt, argv, args);
    return rc == CLI_GO_ON ? cli_one_operand(cli, argc, argv, "topic name", &args->topic) : rc;
}

/* Splits the --header texts into sl_headers; the record copies them on every send. */
static int build_headers(struct produce_args *args) {
    size_t n = args->header_texts.count;
    if (n == 0)
        return CLI_GO_ON;
    args->headers = calloc(n, sizeof(*args->headers));
    if (args->headers == NULL)
        return cli_fail("%s", sl_strerror(SL_ENOMEM));
    for (; args->nheaders < n; args->nheaders++) {
        const char *text = args->header_texts.items[args->nheaders];
        const char *eq = strchr(text, '=');
        sl_header *h = &args->headers[args->nheaders];
        h->key = strndup(text, (size_t)(eq - text));
        if (h->key == NULL)
            return cli_fail("%s", sl_strerror(SL_ENOMEM));
        h->value = eq + 1;
        h->value_len = strlen(eq + 1);
    }
    return CLI_GO_ON;
}

static void free_produce_args(struct produce_args *args) {
    for (size_t i = 0; i < args->nheaders; i++)
        free((char *)args->headers[i].key);
    free(args->headers);
    free(args->header_texts.items);
}

/* Delivery reports arrive on the producer's thread, hence the atomics. */
struct delivery_tally {
    atomic_uint_fast64_t delivered;
    atomic_int first_error; /* 0 until a record fails */
};

static void count_delivery(void *opaque, int status, const char *topic, int32_t partition,
                           int64_t offset) {
    struct delivery_tally *tally = opaque;
    int no_error_yet = 0;
    (void)topic;
    (void)partition;
    (void)offset;
    if (status == 0) {
        atomic_fetch_add(&tally->delivered, 1);
        return;
    }
    atomic_compare_exchange_strong(&tally->first_error, &no_error_yet, status);
}

static int open_producer(const struct cli *cli, const struct produce_args *args,
                         sl_producer **out) {
    char errbuf[ERRBUF_SIZE] = "", number[24];
    sl_conf *conf = cli_broker_conf(cli);
    bool ok = conf != NULL;
    if (ok && args->acks != NULL)
        ok = cli_conf_set(conf, "acks", args->acks);
    if (ok && args->linger_ms >= 0) {
        snprintf(number, sizeof(number), "%" PRId64, args->linger_ms);
        ok = cli_conf_set(conf, "linger.ms", number);
    }
    if (ok && args->batch_size >= 0) {
        snprintf(number, sizeof(number), "%" PRId64, args->batch_size);
        ok = cli_conf_set(conf, "batch.size", number);
    }
    if (!ok) {
        sl_conf_destroy(conf);
        return CLI_FAILED;
    }
    int status = sl_producer_new(conf, out, errbuf, sizeof(errbuf));
    if (status == 0)
        return CLI_GO_ON;
    sl_conf_destroy(conf);
    return cli_report_failure(cli, status, errbuf, NULL, "cannot start a producer");
}

/* Points the record's key and value into 'line': the key is what precedes the first separator. */
static void split_line(int key_sep, char *line, size_t len, sl_produce_record *rec) {
    char *sep = key_sep >= 0 ? memchr(line, key_sep, len) : NULL;
    if (sep == NULL) {
        rec->key = NULL;
        rec->key_len = 0;
        rec->value = line;
        rec->value_len = len;
        return;
    }
    rec->key = line;
    rec->key_len = (size_t)(sep - line);
    rec->value = sep + 1;
    rec->value_len = len - rec->key_len - 1;
}

static int report_send_failure(const struct cli *cli, const struct produce_args *args, int status) {
    if (status == SL_EINVAL && args->partition != SL_PARTITION_ANY)
        return cli_fail("partition %" PRId32 " of topic \"%s\" does not exist", args->partition,
                    args->topic);
    return cli_report_failure(cli, status, NULL, args->topic, "cannot send to topic \"%s\"",
                          args->topic);
}

/* Sends every line of stdin; counts them in *sent. Returns CLI_GO_ON at end of input. */
static int send_lines(const struct cli *cli, const struct produce_args *args, sl_producer *p,
                      struct delivery_tally *tally, uint64_t *sent) {
    sl_produce_record rec = {.topic = args->topic,
                             .partition = args->partition,
                             .headers = args->headers,
                             .nheaders = args->nheaders,
                             .cb = count_delivery,
                             .opaque = tally};
    char *line = NULL;
    size_t capacity = 0;
    ssize_t len;
    int rc = CLI_GO_ON;
    while ((len = getline(&line, &capacity, stdin)) != -1) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        split_line(args->key_sep, line, (size_t)len, &rec);
        int status = sl_producer_send(p, &rec);
        if (status != 0) {
            rc = report_send_failure(cli, args, status);
            break;
        }
        (*sent)++;
    }
    if (rc == CLI_GO_ON && ferror(stdin))
        rc = cli_fail("cannot read standard input: %s", strerror(errno));
    free(line);
    return rc;
}

/* The verdict once every report is in: all delivered, or how many were not and why. */
static int report_deliveries(const struct produce_args *args, uint64_t sent,
                             struct delivery_tally *tally, int flush_status) {
    uint64_t delivered = atomic_load(&tally->delivered);
    int cause = atomic_load(&tally->first_error);
    if (delivered == sent && flush_status == 0) {
        if (args->verbose)
            printf("produced %" PRIu64 " %s\n", sent, cli_plural(sent, "record", "records"));
        return CLI_OK;
    }
    if (cause == 0)
        cause = flush_status;
    return cli_fail("%" PRIu64 " of %" PRIu64 " %s %s not delivered: %s", sent - delivered, sent,
                cli_plural(sent, "record", "records"), cli_plural(sent - delivered, "was", "were"),
                cause != 0 ? sl_strerror(cause) : "no delivery report arrived");
}

static int run_produce(const struct cli *cli, const struct produce_args *args) {
    struct delivery_tally tally;
    sl_producer *producer;
    uint64_t sent = 0;
    atomic_init(&tally.delivered, 0);
    atomic_init(&tally.first_error, 0);
    int rc = open_producer(cli, args, &producer);
    if (rc != CLI_GO_ON)
        return rc;
    rc = send_lines(cli, args, producer, &tally, &sent);
    /* A refused send ends the run at once; after a read error, what was read still goes out. */
    bool send_refused = rc != CLI_GO_ON && !ferror(stdin);
    if (!send_refused) {
        int flush_status = sl_producer_flush(producer, -1);
        int verdict = report_deliveries(args, sent, &tally, flush_status);
        rc = rc == CLI_GO_ON ? verdict : rc;
    }
    sl_producer_destroy(producer);
    return rc;
}

static int cmd_produce(struct cli *cli, int argc, char **argv) {
    struct produce_args args = {
        .partition = SL_PARTITION_ANY, .key_sep = -1, .linger_ms = -1, .batch_size = -1};
    int rc = cli_pair_list_init(&args.header_texts, argc);
    if (rc == CLI_GO_ON)
        rc = parse_produce(cli, argc, argv, &args);
    if (rc == CLI_GO_ON)
        rc = build_headers(&args);
    if (rc == CLI_GO_ON)
        rc = run_produce(cli, &args);
    free_produce_args(&args);
    return rc;
}

/* ---- consume ----------------------------------------------------------------------------- */

static const char consume_help[] =
    "Usage: sluice consume TOPIC [OPTIONS]\n"
    "\n"
    "Writes the records of TOPIC to standard output. Without --follow it stops, with status 0,\n"
    "once it has read every partition up to the end offset it had when it started. With\n"
    "--follow it waits for new records until interrupted (Ctrl-C or SIGTERM), then exits 0.\n"
    "Give at most one of --from-beginning, --offset and --from-time. With\n"
    "-X isolation.level=read_committed it reads only committed transactions' records (and\n"
    "those written outside transactions), up to the last stable offset.\n"
    "\n"
    "Options:\n"
    "  -p, --partition P      read only partition P (default: every partition)\n"
    "      --from-beginning   start at the first record (the default without --follow)\n"
    "  -o, --offset N         start at offset N; a negative N starts N records before the end\n"
    "                         of each partition\n"
    "      --from-time TIME   start at the first record whose timestamp is TIME or later:\n"
    "                         ISO 8601 (2026-11-24T10:00:00Z, 2026-11-24T10:00:00+01:00,\n"
    "                         \"2026-11-24 10:00:00\" in UTC, 2026-11-24), ms since the epoch,\n"
    "                         or back from now (-500ms, -10s, -30m, -5h, -2d)\n"
    "  -n, --max N            stop after N records\n"
    "  -g, --group G          read as a member of consumer group G: the group shares the\n"
    "                         partitions among its members and each starts where the group\n"
    "                         last committed (else at the beginning); what is read is committed\n"
    "                         as it goes and at exit, so the next run continues from there\n"
    "  -v, --verbose          with --group, say on stderr which partitions the group assigns\n"
    "                         and takes away\n"
    "  -f, --follow           wait for new records; starts at the end unless --from-beginning,\n"
    "                         --offset or --from-time says otherwise\n"
    "  -F, --format FMT       how each record is printed (default \"%v\\n\"):\n"
    "                         %t topic, %p partition, %o offset, %k key, %v value,\n"
    "                         %T timestamp in ms, %h headers as k=v,k2=v2, %% a percent sign;\n"
    "                         \\n newline, \\t tab, \\\\ backslash\n" COMMON_OPTIONS_HELP;

enum consume_start { START_DEFAULT, START_BEGINNING, START_OFFSET, START_TIME };

struct consume_args {
    const char *topic;
    int32_t partition; /* SL_PARTITION_ANY: every partition */
    enum consume_start start;
    int64_t offset;  /* START_OFFSET: an offset, or minus a count back from the end */
    int64_t time_ms; /* START_TIME */
    int64_t max;     /* -1: no limit */
    bool follow;
    const char *format;
    const char *group; /* --group: consume as a member of this consumer group */
    bool verbose;      /* say on stderr what the group assigns and revokes */
};

static int set_start(const struct cli *cli, struct consume_args *args, enum consume_start start) {
    if (args->start != START_DEFAULT && args->start != start)
        return cli_usage_error(cli, "choose only one of --from-beginning, --offset and --from-time");
    args->start = start;
    return CLI_GO_ON;
}

static int parse_start_time(const struct cli *cli, struct consume_args *args, const char *text) {
    if (sl_cli_parse_time(text, sl_clock_wall_ms(), &args->time_ms) != 0)
        return cli_usage_error(cli,
                           "--from-time wants an ISO 8601 time, ms since the epoch or a time "
                           "back from now such as -5h, not \"%s\"",
                           text);
    return set_start(cli, args, START_TIME);
}

static int parse_start_offset(const struct cli *cli, struct consume_args *args, const char *text) {
    int rc = cli_parse_number(cli, "--offset", text, -INT64_MAX, INT64_MAX, &args->offset);
    return rc == CLI_GO_ON ? set_start(cli, args, START_OFFSET) : rc;
}

static int check_format(const struct cli *cli, const char *format) {
    char errbuf[ERRBUF_SIZE];
    if (sl_cli_format_check(format, errbuf, sizeof(errbuf)) != 0)
        return cli_usage_error(cli, "%s", errbuf);
    return CLI_GO_ON;
}

/* Handles one consume option. Returns CLI_GO_ON, or an exit status (CLI_OK after --help). */
static int consume_option(struct cli *cli, int opt, char **argv, struct consume_args *args) {
    switch (opt) {
    case 'h':
        return cli_show_help(consume_help);
    case 'p':
        return cli_parse_int32(cli, "--partition", optarg, 0, &args->partition);
    case OPT_FROM_BEGINNING:
        return set_start(cli, args, START_BEGINNING);
    case 'o':
        return parse_start_offset(cli, args, optarg);
    case OPT_FROM_TIME:
        return parse_start_time(cli, args, optarg);
    case 'n':
        return cli_parse_number(cli, "--max", optarg, 0, INT64_MAX, &args->max);
    case 'f':
        args->follow = true;
        return CLI_GO_ON;
    case 'g':
        args->group = optarg;
        return CLI_GO_ON;
    case 'v':
        args->verbose = true;
        return CLI_GO_ON;
    case 'F':
        args->format = optarg;
        return check_format(cli, optarg);
    default:
        return cli_common_option(cli, opt, argv);
    }
}

static int parse_consume(struct cli *cli, int argc, char **argv, struct consume_args *args) {
    static const struct option options[] = {
        {"partition", required_argument, NULL, 'p'},
        {"from-beginning", no_argument, NULL, OPT_FROM_BEGINNING},
        {"offset", required_argument, NULL, 'o'},
        {"from-time", required_argument, NULL, OPT_FROM_TIME},
        {"max", required_argument, NULL, 'n'},
        {"follow", no_argument, NULL, 'f'},
        {"group", required_argument, NULL, 'g'},
        {"verbose", no_argument, NULL, 'v'},
        {"format", required_argument, NULL, 'F'},
        COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    cli_start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":p:o:n:fg:vF:b:X:h", options, NULL)) != -1)
        rc = consume_option(cli, opt, argv, args);
    return rc == CLI_GO_ON ? cli_one_operand(cli, argc, argv, "topic name", &args->topic) : rc;
}

/* One partition being read, and (without --follow) where reading it stops. */
struct partition_progress {
    int32_t partition;
    int64_t end; /* the end offset when reading began */
    bool done;
    bool assigned; /* with --group: the group gave it to this member */
};

struct consume_run {
    const struct cli *cli;
    const struct consume_args *args;
    sl_consumer *consumer;
    sl_client *admin; /* for list-offsets while setting up; closed before reading */
    struct partition_progress *parts;
    size_t nparts;
    bool joined; /* with --group: the first assignment has arrived */
    size_t ndone;
    int64_t printed;
};

static volatile sig_atomic_t stop_requested;

static void request_stop(int signo) {
    (void)signo;
    stop_requested = 1;
}

/* SIGINT and SIGTERM end a --follow run between two polls, so output is flushed and the
 * consumer closed properly. No SA_RESTART: nothing here needs interrupted calls resumed. */
static void catch_stop_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = request_stop;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
}

static void mark_done(struct consume_run *run, struct partition_progress *part) {
    if (!part->done) {
        part->done = true;
        run->ndone++;
    }
}

static int open_consumer(const struct cli *cli, const char *group, sl_consumer **out) {
    char errbuf[ERRBUF_SIZE] = "";
    /* A position retention has deleted moves to the oldest record still held, never past
     * records nobody has read (-X auto.offset.reset=latest chooses otherwise). */
    sl_conf *conf = cli_broker_conf_with(cli, "auto.offset.reset", "earliest");
    if (conf == NULL)
        return CLI_FAILED;
    if (group != NULL && !cli_conf_set(conf, "group.id", group)) {
        sl_conf_destroy(conf);
        return CLI_FAILED;
    }
    int status = sl_consumer_new(conf, out, errbuf, sizeof(errbuf));
    if (status == 0)
        return CLI_GO_ON;
    sl_conf_destroy(conf);
    return cli_report_failure(cli, status, errbuf, NULL, "cannot start a consumer");
}

/* Fills run->parts with the partitions to read: the one asked for, or all of them. */
static int choose_partitions(struct consume_run *run) {
    const struct consume_args *args = run->args;
    int32_t count;
    int status = sl_consumer_partition_count(run->consumer, args->topic, &count);
    if (status != 0)
        return cli_report_failure(run->cli, status, NULL, args->topic,
                              "cannot read the partitions of topic \"%s\"", args->topic);
    if (args->partition != SL_PARTITION_ANY && args->partition >= count)
        return cli_fail("partition %" PRId32 " of topic \"%s\" does not exist (it has %" PRId32 " %s)",
                    args->partition, args->topic, count,
                    cli_plural((uint64_t)count, "partition", "partitions"));
    run->nparts = args->partition == SL_PARTITION_ANY ? (size_t)count : 1;
    run->parts = calloc(run->nparts > 0 ? run->nparts : 1, sizeof(*run->parts));
    if (run->parts == NULL)
        return cli_fail("%s", sl_strerror(SL_ENOMEM));
    for (size_t i = 0; i < run->nparts; i++)
        run->parts[i].partition =
            args->partition == SL_PARTITION_ANY ? (int32_t)i : args->partition;
    return CLI_GO_ON;
}

/* The offset 'count' records before the end, but not before the log start. */
static int offset_before_end(const struct consume_run *run, int32_t partition, int64_t count,
                             int64_t *offset) {
    const char *topic = run->args->topic;
    int64_t first, end;
    int status = sl_list_offset(run->admin, topic, partition, SL_OFFSET_BEGINNING, &first);
    if (status == 0)
        status = sl_list_offset(run->admin, topic, partition, SL_OFFSET_END, &end);
    if (status == 0)
        *offset = end - count > first ? end - count : first;
    return status;
}

/* Where to assign a partition: an offset, SL_OFFSET_BEGINNING or SL_OFFSET_END. --from-time
 * starts at the beginning and then seeks by time. */
static int assign_offset(const struct consume_run *run, int32_t partition, int64_t *offset) {
    const struct consume_args *args = run->args;
    switch (args->start) {
    case START_DEFAULT:
        *offset = args->follow ? SL_OFFSET_END : SL_OFFSET_BEGINNING;
        return 0;
    case START_OFFSET:
        if (args->offset < 0)
            return offset_before_end(run, partition, -args->offset, offset);
        *offset = args->offset;
        return 0;
    case START_BEGINNING:
    case START_TIME:
    default:
        *offset = SL_OFFSET_BEGINNING;
        return 0;
    }
}

/* The first offset reading will return, as a number, so that a partition with nothing to read
 * is known to be done without waiting for a record that will never come. */
static int first_offset(const struct consume_run *run, int32_t partition, int64_t assigned,
                        int64_t *first) {
    const char *topic = run->args->topic;
    if (run->args->start == START_TIME)
        return sl_list_offset(run->admin, topic, partition, run->args->time_ms, first);
    if (assigned == SL_OFFSET_BEGINNING || assigned == SL_OFFSET_END)
        return sl_list_offset(run->admin, topic, partition, assigned, first);
    *first = assigned;
    return 0;
}

/* Without --follow: records the end offset, and whether there is anything to read at all. */
static int note_end(struct consume_run *run, struct partition_progress *part, int64_t assigned) {
    int64_t first;
    int status =
        sl_list_offset(run->admin, run->args->topic, part->partition, SL_OFFSET_END, &part->end);
    if (status == 0)
        status = first_offset(run, part->partition, assigned, &first);
    if (status == 0 && first >= part->end)
        mark_done(run, part);
    return status;
}

static int start_partition(struct consume_run *run, struct partition_progress *part) {
    const struct consume_args *args = run->args;
    int64_t offset;
    int status = assign_offset(run, part->partition, &offset);
    if (status == 0 && !args->follow)
        status = note_end(run, part, offset);
    if (status == 0)
        status = sl_consumer_assign(run->consumer, args->topic, part->partition, offset);
    if (status == 0 && args->start == START_TIME)
        status = sl_consumer_seek_time(run->consumer, args->topic, part->partition, args->time_ms);
    if (status != 0)
        return cli_report_failure(run->cli, status, NULL, args->topic,
                              "cannot start reading partition %" PRId32 " of topic \"%s\"",
                              part->partition, args->topic);
    return CLI_GO_ON;
}

/* Marks partitions whose position has reached the end noted at the start. */
static void check_positions(struct consume_run *run) {
    for (size_t i = 0; i < run->nparts; i++) {
        struct partition_progress *part = &run->parts[i];
        int64_t next;
        if (part->done || (run->args->group != NULL && !part->assigned))
            continue;
        if (sl_consumer_position(run->consumer, run->args->topic, part->partition, &next) == 0 &&
            next >= part->end)
            mark_done(run, part);
    }
}

static struct partition_progress *find_partition(struct consume_run *run, int32_t partition) {
    for (size_t i = 0; i < run->nparts; i++)
        if (run->parts[i].partition == partition)
            return &run->parts[i];
    return NULL;
}

/* Without --follow, whether 'm' lies before the end noted at the start (later records, which
 * still arrive for partitions that are done, are not printed). Notes partitions that finish. */
static bool before_noted_end(struct consume_run *run, const sl_message *m) {
    struct partition_progress *part = find_partition(run, m->partition);
    if (part == NULL)
        return false;
    if (m->offset + 1 >= part->end)
        mark_done(run, part);
    return m->offset < part->end;
}

static bool consume_finished(const struct consume_run *run) {
    const struct consume_args *args = run->args;
    if (stop_requested)
        return true;
    if (args->max >= 0 && run->printed >= args->max)
        return true;
    if (args->follow)
        return false;
    if (args->group == NULL)
        return run->ndone == run->nparts;
    /* A member is done when every partition the group gave it is read to its noted end. */
    if (!run->joined)
        return false;
    for (size_t i = 0; i < run->nparts; i++)
        if (run->parts[i].assigned && !run->parts[i].done)
            return false;
    return true;
}

/* With --group: follows what the group gives this member and takes away. */
static void on_rebalance(void *opaque, sl_rebalance_event event, const sl_topic_partition *parts,
                         size_t n) {
    struct consume_run *run = opaque;
    if (event == SL_PARTITIONS_ASSIGNED)
        run->joined = true;
    if (run->args->verbose) {
        static const char *const words[] = {"assigned", "revoked", "lost"};
        fprintf(stderr, "sluice: group \"%s\": %s", run->args->group, words[event]);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "%s%s-%" PRId32, i ? "," : " ", parts[i].topic, parts[i].partition);
        fputs(n ? "\n" : " (nothing)\n", stderr);
    }
    for (size_t i = 0; i < n; i++) {
        struct partition_progress *part = find_partition(run, parts[i].partition);
        if (part == NULL)
            continue;
        part->assigned = event == SL_PARTITIONS_ASSIGNED;
        if (part->done && part->assigned) { /* it may have moved back: look again */
            part->done = false;
            run->ndone--;
        }
    }
    if (!run->args->follow)
        check_positions(run);
}

static int consume_records(struct consume_run *run) {
    const struct consume_args *args = run->args;
    while (!consume_finished(run)) {
        const sl_message *m;
        int status = sl_consumer_poll(run->consumer, 0, &m);
        if (status == SL_ETIMEDOUT) {
            /* Nothing more at hand: let a reader downstream see what we have so far. */
            fflush(stdout);
            status = sl_consumer_poll(run->consumer, POLL_INTERVAL_MS, &m);
        }
        if (status == SL_ETIMEDOUT) {
            if (!args->follow)
                check_positions(run);
            continue;
        }
        if (status != 0)
            return cli_report_failure(run->cli, status, NULL, args->topic, "cannot read topic \"%s\"",
                                  args->topic);
        /* A member prints all it reads: what it reads is committed, so skipping a record past
         * the noted end would lose it for the next run. */
        if (!args->follow && args->group == NULL && !before_noted_end(run, m))
            continue;
        if (sl_cli_format(stdout, args->format, m) != 0)
            return cli_fail("cannot write standard output: %s", strerror(errno));
        run->printed++;
    }
    return CLI_OK;
}

/* With --group: notes every partition's end (without --follow) and subscribes; the group says
 * which partitions are this member's, and from where (its committed offsets). */
static int start_group(struct consume_run *run) {
    const struct consume_args *args = run->args;
    if (args->partition != SL_PARTITION_ANY || args->start != START_DEFAULT)
        return cli_usage_error(run->cli, "--group reads where the group left off: it does not "
                                         "go with --partition, --from-beginning, --offset or "
                                         "--from-time (see 'sluice group reset')");
    for (size_t i = 0; !args->follow && i < run->nparts; i++) {
        int status = sl_list_offset(run->admin, args->topic, run->parts[i].partition,
                                    SL_OFFSET_END, &run->parts[i].end);
        if (status)
            return cli_report_failure(run->cli, status, NULL, args->topic,
                                      "cannot read the end of topic \"%s\"", args->topic);
    }
    const char *topics[] = {args->topic};
    int status = sl_consumer_subscribe(run->consumer, topics, 1, on_rebalance, run);
    if (status)
        return cli_report_failure(run->cli, status, NULL, args->topic,
                                  "cannot join group \"%s\"", args->group);
    return CLI_GO_ON;
}

static int setup_and_consume(struct consume_run *run) {
    int rc = open_consumer(run->cli, run->args->group, &run->consumer);
    if (rc == CLI_GO_ON)
        rc = choose_partitions(run);
    if (rc == CLI_GO_ON)
        rc = cli_open_admin(run->cli, &run->admin);
    if (run->args->group != NULL)
        rc = rc == CLI_GO_ON ? start_group(run) : rc;
    for (size_t i = 0; rc == CLI_GO_ON && run->args->group == NULL && i < run->nparts; i++)
        rc = start_partition(run, &run->parts[i]);
    if (run->admin != NULL) {
        sl_client_destroy(run->admin);
        run->admin = NULL;
    }
    if (rc != CLI_GO_ON)
        return rc;
    if (!run->args->follow)
        check_positions(run);
    else
        catch_stop_signals();
    return consume_records(run);
}

static int cmd_consume(struct cli *cli, int argc, char **argv) {
    struct consume_args args = {
        .partition = SL_PARTITION_ANY, .start = START_DEFAULT, .max = -1, .format = "%v\\n"};
    struct consume_run run = {.cli = cli, .args = &args};
    int rc = parse_consume(cli, argc, argv, &args);
    if (rc != CLI_GO_ON)
        return rc;
    rc = setup_and_consume(&run);
    if (run.consumer != NULL && args.group != NULL) {
        /* Commit what was printed, then leave so the others take over at once. */
        fflush(stdout);
        int status = sl_consumer_commit(run.consumer, 0);
        if (status != 0 && rc == CLI_OK)
            rc = cli_report_failure(cli, status, NULL, NULL, "cannot commit to group \"%s\"",
                                    args.group);
        sl_consumer_close(run.consumer);
    }
    if (run.consumer != NULL)
        sl_consumer_destroy(run.consumer);
    free(run.parts);
    return rc;
}

/* ---- version ----------------------------------------------------------------------------- */

static const char version_help[] = "Usage: sluice version\n"
                                   "\n"
                                   "Prints the version of sluice.\n"
                                   "\n"
                                   "Options:\n" COMMON_OPTIONS_HELP;

static int cmd_version(struct cli *cli, int argc, char **argv) {
    static const struct option options[] = {COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(version_help);
        if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = cli_no_operands(cli, argc, argv)) != CLI_GO_ON)
        return rc;
    printf("sluice %s\n", sl_version());
    return CLI_OK;
}

/* ---- main -------------------------------------------------------------------------------- */

/* Every command, in the order 'sluice --help' lists them. Later commands (bench, group,
 * pipeline, dlq, plugin, cluster, connector) each add a row here; a command with subcommands
 * gets its own table and cli_group, as 'topic' does. */
static const struct cli_command top_commands[] = {
    {"topic", cmd_topic, "create, list, describe, alter and delete topics"},
    {"produce", cmd_produce, "send lines of standard input to a topic as records"},
    {"consume", cmd_consume, "print the records of a topic"},
    {"group", sl_cli_group, "list, describe, reset and delete consumer groups"},
    {"pipeline", sl_cli_pipeline, "deploy, list, inspect and stop pipelines"},
    {"connector", sl_cli_connector, "pause, resume or restart a stage of a pipeline"},
    {"dlq", sl_cli_dlq, "replay dead-lettered records"},
    {"plugin", sl_cli_plugin, "list the plugins found on the plugin path"},
    {"bench", sl_cli_bench, "measure produce and consume throughput and latency"},
    {"cluster", sl_cli_cluster, "the brokers of a cluster and its metadata quorum"},
    {"version", cmd_version, "print the version of sluice"},
};

static const struct cli_group top_group = {
    "sluice [OPTIONS] COMMAND [ARGS]...",
    "The command-line client of a Sluice broker.",
    top_commands,
    sizeof(top_commands) / sizeof(top_commands[0]),
};

int main(int argc, char **argv) {
    const char *env_broker = getenv("SLUICE_BROKER");
    struct cli cli = {.broker = env_broker != NULL && env_broker[0] != '\0' ? env_broker
                                                                            : SL_DEFAULT_BROKER};
    int rc = cli_run_group(&cli, &top_group, argc, argv);
    /* Output is buffered: a full disk or closed pipe shows up only now. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_fail("cannot write standard output: %s", strerror(errno));
        return rc == CLI_OK ? CLI_FAILED : rc;
    }
    return rc;
}

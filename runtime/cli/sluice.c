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
#include "cli/format.h"
#include "cli/timeparse.h"
#include "sluice/client.h"

enum {
    CLI_OK = 0,
    CLI_FAILED = 1,
    CLI_USAGE = 2,
    /* Returned by parsing helpers when all is well and the command should carry on. */
    CLI_GO_ON = -1,
};

#define ERRBUF_SIZE 512

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

/* State shared by every command. */
/* Client properties one invocation may set with -X. */
#define MAX_PROPERTIES 64

struct cli {
    const char *broker; /* -b, else $SLUICE_BROKER, else SL_DEFAULT_BROKER */
    char path[64];      /* the command being run, "topic create", for messages */
    const char *properties[MAX_PROPERTIES]; /* -X KEY=VALUE, as typed */
    size_t nproperties;
};

typedef int (*cli_command_fn)(struct cli *cli, int argc, char **argv);

struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary;
};

/* A command that only chooses a subcommand ("sluice", "sluice topic"). */
struct cli_group {
    const char *usage;
    const char *description;
    const struct cli_command *commands;
    size_t ncommands;
};

/* The options every command takes, for its getopt_long table. */
#define BROKER_OPTION                                                                              \
    { "broker", required_argument, NULL, 'b' }
#define HELP_OPTION                                                                                \
    { "help", no_argument, NULL, 'h' }
#define PROPERTY_OPTION                                                                            \
    { "property", required_argument, NULL, 'X' }
#define COMMON_LONG_OPTIONS BROKER_OPTION, PROPERTY_OPTION, HELP_OPTION

#define COMMON_OPTIONS_HELP                                                                        \
    "  -b, --broker URL       the broker to talk to (default: $SLUICE_BROKER, else\n"              \
    "                         " SL_DEFAULT_BROKER ")\n"                                            \
    "  -X, --property K=V     set a client configuration property (acks, linger.ms,\n"        \
    "                         compression.type, enable.idempotence, buffer.memory, ...);\n"   \
    "                         may be repeated\n"                                               \
    "  -h, --help             show this help and exit\n"

/* ---- messages ---------------------------------------------------------------------------- */

static void vsay(const char *fmt, va_list ap) {
    fputs("sluice: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* Prints "sluice: <sentence>" on stderr. Returns CLI_FAILED. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    return CLI_FAILED;
}

/* Prints the complaint and where to find help. Returns CLI_USAGE. */
__attribute__((format(printf, 2, 3))) static int usage_error(const struct cli *cli, const char *fmt,
                                                             ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'sluice%s%s --help'.\n", cli->path[0] ? " " : "", cli->path);
    return CLI_USAGE;
}

/* Says why a library call failed: the sentence the library wrote in 'errbuf' when there is one,
 * else one built from 'status'. 'topic' (may be NULL) names the topic SL_ENOENT is about;
 * 'doing' ("cannot list topics") introduces statuses that have no sentence of their own.
 * Returns CLI_FAILED. */
__attribute__((format(printf, 5, 6))) static int report_failure(const struct cli *cli, int status,
                                                                const char *errbuf,
                                                                const char *topic,
                                                                const char *doing, ...) {
    char context[256];
    va_list ap;
    if (errbuf != NULL && errbuf[0] != '\0')
        return fail("%s", errbuf);
    if (status == SL_ENOENT && topic != NULL)
        return fail("topic \"%s\" does not exist", topic);
    if (status == SL_ECONNREFUSED)
        return fail("cannot reach broker at %s", cli->broker);
    va_start(ap, doing);
    vsnprintf(context, sizeof(context), doing, ap);
    va_end(ap);
    return fail("%s: %s", context, sl_strerror(status));
}

static const char *plural(uint64_t n, const char *one, const char *many) {
    return n == 1 ? one : many;
}

/* ---- option parsing ---------------------------------------------------------------------- */

/* Resets getopt for a new argument vector; glibc re-initialises fully when optind is 0. */
static void start_options(void) {
    optind = 0;
    opterr = 0;
}

/* The option getopt just complained about, as the user typed it (without "=value"). */
static void bad_option_text(char **argv, char *buf, size_t len) {
    if (optopt != 0) {
        snprintf(buf, len, "-%c", optopt);
        return;
    }
    snprintf(buf, len, "%.*s", (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
}

/* Handles what every command shares: -b and getopt's complaints (-h is each command's own).
 * Returns CLI_GO_ON or CLI_USAGE. */
static int common_option(struct cli *cli, int opt, char **argv) {
    char text[64];
    switch (opt) {
    case 'b':
        cli->broker = optarg;
        return CLI_GO_ON;
    case 'X':
        if (strchr(optarg, '=') == NULL || optarg[0] == '=')
            return usage_error(cli, "-X wants KEY=VALUE, not \"%s\"", optarg);
        if (cli->nproperties == MAX_PROPERTIES)
            return usage_error(cli, "at most %d -X properties", MAX_PROPERTIES);
        cli->properties[cli->nproperties++] = optarg;
        return CLI_GO_ON;
    case ':':
        /* For a missing value getopt leaves the option itself just before optind. */
        return usage_error(cli, "option \"%s\" needs a value", argv[optind - 1]);
    default:
        bad_option_text(argv, text, sizeof(text));
        return usage_error(cli, "unknown option \"%s\"", text);
    }
}

static int show_help(const char *help) {
    fputs(help, stdout);
    return CLI_OK;
}

/* Parses a whole decimal number in [min, max] given to option 'name'. */
static int parse_number(const struct cli *cli, const char *name, const char *text, int64_t min,
                        int64_t max, int64_t *out) {
    char *end;
    long long value;
    errno = 0;
    value = strtoll(text, &end, 10);
    bool is_number = (text[0] == '-' || (text[0] >= '0' && text[0] <= '9')) && end != text &&
                     *end == '\0' && errno == 0;
    if (is_number && value >= min && value <= max) {
        *out = value;
        return CLI_GO_ON;
    }
    if (max == INT64_MAX)
        return usage_error(cli, "%s wants a whole number of at least %" PRId64 ", not \"%s\"", name,
                           min, text);
    return usage_error(cli, "%s wants a whole number from %" PRId64 " to %" PRId64 ", not \"%s\"",
                       name, min, max, text);
}

static int parse_int32(const struct cli *cli, const char *name, const char *text, int32_t min,
                       int32_t *out) {
    int64_t value;
    int rc = parse_number(cli, name, text, min, INT32_MAX, &value);
    if (rc == CLI_GO_ON)
        *out = (int32_t)value;
    return rc;
}

/* The single operand (topic name) left after the options. */
static int one_operand(const struct cli *cli, int argc, char **argv, const char *what,
                       const char **out) {
    if (optind >= argc)
        return usage_error(cli, "missing %s", what);
    if (optind + 1 < argc)
        return usage_error(cli, "unexpected argument \"%s\"", argv[optind + 1]);
    *out = argv[optind];
    return CLI_GO_ON;
}

static int no_operands(const struct cli *cli, int argc, char **argv) {
    if (optind < argc)
        return usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
    return CLI_GO_ON;
}

/* Repeated KEY=VALUE options (--config, --header). The strings point into argv; 'items' has
 * room for every argument, which bounds how many there can be. */
struct pair_list {
    const char **items;
    size_t count;
};

static int pair_list_init(struct pair_list *list, int argc) {
    list->count = 0;
    list->items = calloc((size_t)argc, sizeof(*list->items));
    return list->items != NULL ? CLI_GO_ON : fail("%s", sl_strerror(SL_ENOMEM));
}

static int pair_list_add(const struct cli *cli, struct pair_list *list, const char *option,
                         const char *text) {
    const char *eq = strchr(text, '=');
    if (eq == NULL || eq == text)
        return usage_error(cli, "%s wants KEY=VALUE, not \"%s\"", option, text);
    list->items[list->count++] = text;
    return CLI_GO_ON;
}

/* ---- connecting -------------------------------------------------------------------------- */

static bool conf_set(sl_conf *conf, const char *key, const char *value) {
    char errbuf[ERRBUF_SIZE] = "";
    if (sl_conf_set(conf, key, value, errbuf, sizeof(errbuf)) == 0)
        return true;
    fail("%s", errbuf[0] ? errbuf : sl_strerror(SL_EBADCONFIG));
    return false;
}

/* A configuration for the chosen broker with the -X properties, or NULL after saying why not.
 * 'key' = 'value' (when key is not NULL) is this command's own default, set before the -X
 * properties so that they can change it. */
static sl_conf *broker_conf_with(const struct cli *cli, const char *key, const char *value) {
    sl_conf *conf = sl_conf_new();
    if (conf == NULL) {
        fail("%s", sl_strerror(SL_ENOMEM));
        return NULL;
    }
    bool ok = conf_set(conf, "bootstrap.servers", cli->broker);
    if (ok && key != NULL)
        ok = conf_set(conf, key, value);
    for (size_t i = 0; ok && i < cli->nproperties; i++) {
        char name[256];
        const char *eq = strchr(cli->properties[i], '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq - cli->properties[i]), cli->properties[i]);
        ok = conf_set(conf, name, eq + 1);
    }
    if (!ok) {
        sl_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static sl_conf *broker_conf(const struct cli *cli) {
    return broker_conf_with(cli, NULL, NULL);
}

static int open_admin(const struct cli *cli, sl_client **out) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_conf *conf = broker_conf(cli);
    if (conf == NULL)
        return CLI_FAILED;
    int status = sl_client_new(conf, out, errbuf, sizeof(errbuf));
    if (status == 0)
        return CLI_GO_ON;
    sl_conf_destroy(conf); /* still ours: *_new only takes it on success */
    return report_failure(cli, status, errbuf, NULL, "cannot connect to %s", cli->broker);
}

/* ---- groups ------------------------------------------------------------------------------ */

static void print_group_help(const struct cli *cli, const struct cli_group *group, FILE *out) {
    fprintf(out, "Usage: %s\n\n%s\n\nCommands:\n", group->usage, group->description);
    for (size_t i = 0; i < group->ncommands; i++)
        fprintf(out, "  %-10s %s\n", group->commands[i].name, group->commands[i].summary);
    fputs("\nOptions:\n" COMMON_OPTIONS_HELP, out);
    fprintf(out, "\nRun 'sluice%s%s COMMAND --help' for the options of a command.\n",
            cli->path[0] ? " " : "", cli->path);
}

static const struct cli_command *find_command(const struct cli_group *group, const char *name) {
    for (size_t i = 0; i < group->ncommands; i++)
        if (strcmp(group->commands[i].name, name) == 0)
            return &group->commands[i];
    return NULL;
}

/* Appends a command name to cli->path, for help hints and messages. */
static void enter_command(struct cli *cli, const char *name) {
    size_t used = strlen(cli->path);
    snprintf(cli->path + used, sizeof(cli->path) - used, "%s%s", used ? " " : "", name);
}

/* Reads the group's options (which stop at the first operand), then runs the subcommand. */
static int run_group(struct cli *cli, const struct cli_group *group, int argc, char **argv) {
    static const struct option options[] = {COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc;
    start_options();
    while ((opt = getopt_long(argc, argv, "+:b:X:h", options, NULL)) != -1) {
        if (opt == 'h') {
            print_group_help(cli, group, stdout);
            return CLI_OK;
        }
        if ((rc = common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if (optind >= argc) {
        fail("missing command");
        print_group_help(cli, group, stderr);
        return CLI_USAGE;
    }
    const struct cli_command *command = find_command(group, argv[optind]);
    if (command == NULL)
        return usage_error(cli, "unknown command \"%s\"", argv[optind]);
    enter_command(cli, command->name);
    return command->run(cli, argc - optind, argv + optind);
}

/* ---- topic create ------------------------------------------------------------------------ */

static const char topic_create_help[] =
    "Usage: sluice topic create NAME [--partitions N] [--config KEY=VALUE]...\n"
    "\n"
    "Creates the topic NAME.\n"
    "\n"
    "Options:\n"
    "  -p, --partitions N     number of partitions, at least 1 (default 1)\n"
    "  -c, --config K=V       set topic config K to V, e.g. retention.ms=86400000;\n"
    "                         may be repeated\n" COMMON_OPTIONS_HELP;

struct topic_create_args {
    const char *name;
    int32_t partitions;
    struct pair_list configs;
};

static int parse_topic_create(struct cli *cli, int argc, char **argv,
                              struct topic_create_args *args) {
    static const struct option options[] = {{"partitions", required_argument, NULL, 'p'},
                                            {"config", required_argument, NULL, 'c'},
                                            COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":p:c:b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return show_help(topic_create_help);
        else if (opt == 'p')
            rc = parse_int32(cli, "--partitions", optarg, 1, &args->partitions);
        else if (opt == 'c')
            rc = pair_list_add(cli, &args->configs, "--config", optarg);
        else
            rc = common_option(cli, opt, argv);
    }
    return rc == CLI_GO_ON ? one_operand(cli, argc, argv, "topic name", &args->name) : rc;
}

static int run_topic_create(const struct cli *cli, const struct topic_create_args *args) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_client *admin;
    int rc = open_admin(cli, &admin);
    if (rc != CLI_GO_ON)
        return rc;
    int status = sl_topic_create(admin, args->name, args->partitions, args->configs.items,
                                 args->configs.count, errbuf, sizeof(errbuf));
    if (status == 0) {
        printf("created topic \"%s\" with %" PRId32 " %s\n", args->name, args->partitions,
               plural((uint64_t)args->partitions, "partition", "partitions"));
        rc = CLI_OK;
    } else {
        rc = report_failure(cli, status, errbuf, NULL, "cannot create topic \"%s\"", args->name);
    }
    sl_client_destroy(admin);
    return rc;
}

static int cmd_topic_create(struct cli *cli, int argc, char **argv) {
    struct topic_create_args args = {.partitions = 1};
    int rc = pair_list_init(&args.configs, argc);
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
    start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return show_help(topic_list_help);
        if ((rc = common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = no_operands(cli, argc, argv)) != CLI_GO_ON)
        return rc;

    sl_client *admin;
    char **names;
    size_t count;
    if ((rc = open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    int status = sl_topic_list(admin, &names, &count);
    if (status == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", names[i]);
        sl_topic_list_free(names, count);
        rc = CLI_OK;
    } else {
        rc = report_failure(cli, status, NULL, NULL, "cannot list topics");
    }
    sl_client_destroy(admin);
    return rc;
}

/* ---- topic describe ---------------------------------------------------------------------- */

static const char topic_describe_help[] =
    "Usage: sluice topic describe NAME [--json]\n"
    "\n"
    "Shows each partition of topic NAME (leader, start and end offsets, size on disk) and the\n"
    "topic's effective configs.\n"
    "\n"
    "Options:\n"
    "      --json             print one JSON object instead of tables; sizes are exact bytes\n"
    "                         and every config value is a string\n" COMMON_OPTIONS_HELP;

/* Writes 's' as a JSON string literal. Bytes from 0x80 up are passed on (UTF-8 stays UTF-8). */
static void write_json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\r')
            fputs("\\r", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void print_topic_json(const sl_topic_info *info) {
    fputs("{\"name\":", stdout);
    write_json_string(stdout, info->name);
    fputs(",\"partitions\":[", stdout);
    for (int32_t i = 0; i < info->npartitions; i++) {
        const sl_partition_info *p = &info->partitions[i];
        printf("%s{\"partition\":%" PRId32 ",\"leader\":%" PRId32 ",\"start_offset\":%" PRId64
               ",\"end_offset\":%" PRId64 ",\"size_bytes\":%" PRId64 "}",
               i > 0 ? "," : "", p->partition, p->leader, p->start_offset, p->end_offset,
               p->size_bytes);
    }
    fputs("],\"config\":{", stdout);
    for (size_t i = 0; i < info->nconfigs; i++) {
        if (i > 0)
            fputc(',', stdout);
        write_json_string(stdout, info->configs[i].key);
        fputc(':', stdout);
        write_json_string(stdout, info->configs[i].value);
    }
    fputs("}}\n", stdout);
}

/* "512 B", "1.2 MiB": binary units with one decimal. */
static void format_size(int64_t bytes, char *buf, size_t len) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    size_t unit = 0;
    if (bytes < 1024) {
        snprintf(buf, len, "%" PRId64 " B", bytes);
        return;
    }
    /* Move up a unit before the value would print as "1024.0". */
    double value = (double)bytes / 1024;
    while (value >= 1023.95 && unit + 1 < sizeof(units) / sizeof(units[0])) {
        value /= 1024;
        unit++;
    }
    snprintf(buf, len, "%.1f %s", value, units[unit]);
}

static void print_topic_table(const sl_topic_info *info) {
    char size[32];
    int key_width = (int)strlen("CONFIG");
    printf("topic \"%s\": %" PRId32 " %s\n\n", info->name, info->npartitions,
           plural((uint64_t)info->npartitions, "partition", "partitions"));
    printf("%-9s  %-6s  %-12s  %-12s  %s\n", "PARTITION", "LEADER", "START OFFSET", "END OFFSET",
           "SIZE");
    for (int32_t i = 0; i < info->npartitions; i++) {
        const sl_partition_info *p = &info->partitions[i];
        format_size(p->size_bytes, size, sizeof(size));
        printf("%-9" PRId32 "  %-6" PRId32 "  %-12" PRId64 "  %-12" PRId64 "  %s\n", p->partition,
               p->leader, p->start_offset, p->end_offset, size);
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
    int rc = open_admin(cli, &admin);
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
        rc = report_failure(cli, status, errbuf, name, "cannot describe topic \"%s\"", name);
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
    start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return show_help(topic_describe_help);
        if (opt == OPT_JSON)
            json = true;
        else if ((rc = common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = one_operand(cli, argc, argv, "topic name", &name)) != CLI_GO_ON)
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
    start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":c:b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return show_help(topic_alter_help);
        else if (opt == 'c')
            rc = pair_list_add(cli, configs, "--config", optarg);
        else
            rc = common_option(cli, opt, argv);
    }
    if (rc == CLI_GO_ON)
        rc = one_operand(cli, argc, argv, "topic name", name);
    if (rc == CLI_GO_ON && configs->count == 0)
        rc = usage_error(cli, "nothing to change: give at least one --config KEY=VALUE");
    return rc;
}

static int run_topic_alter(const struct cli *cli, const char *name,
                           const struct pair_list *configs) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_client *admin;
    int rc = open_admin(cli, &admin);
    if (rc != CLI_GO_ON)
        return rc;
    int status =
        sl_topic_alter(admin, name, configs->items, configs->count, errbuf, sizeof(errbuf));
    if (status == 0) {
        printf("altered topic \"%s\"\n", name);
        rc = CLI_OK;
    } else {
        rc = report_failure(cli, status, errbuf, name, "cannot alter topic \"%s\"", name);
    }
    sl_client_destroy(admin);
    return rc;
}

static int cmd_topic_alter(struct cli *cli, int argc, char **argv) {
    struct pair_list configs;
    const char *name = NULL;
    int rc = pair_list_init(&configs, argc);
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
    start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return show_help(topic_delete_help);
        if ((rc = common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = one_operand(cli, argc, argv, "topic name", &name)) != CLI_GO_ON)
        return rc;
    if ((rc = open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    int status = sl_topic_delete(admin, name, errbuf, sizeof(errbuf));
    if (status == 0) {
        printf("deleted topic \"%s\"\n", name);
        rc = CLI_OK;
    } else {
        rc = report_failure(cli, status, errbuf, name, "cannot delete topic \"%s\"", name);
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
    return run_group(cli, &topic_group, argc, argv);
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
        return usage_error(cli, "--key-sep wants one character, not \"%s\"", text);
    return CLI_GO_ON;
}

static int parse_acks(const struct cli *cli, const char *text, const char **acks) {
    if (strcmp(text, "0") != 0 && strcmp(text, "1") != 0 && strcmp(text, "all") != 0)
        return usage_error(cli, "--acks wants 0, 1 or all, not \"%s\"", text);
    *acks = text;
    return CLI_GO_ON;
}

/* Handles one produce option. Returns CLI_GO_ON, or an exit status (CLI_OK after --help). */
static int produce_option(struct cli *cli, int opt, char **argv, struct produce_args *args) {
    switch (opt) {
    case 'h':
        return show_help(produce_help);
    case 'k':
        return parse_key_sep(cli, optarg, &args->key_sep);
    case 'p':
        return parse_int32(cli, "--partition", optarg, 0, &args->partition);
    case 'H':
        return pair_list_add(cli, &args->header_texts, "--header", optarg);
    case 'v':
        args->verbose = true;
        return CLI_GO_ON;
    case OPT_ACKS:
        return parse_acks(cli, optarg, &args->acks);
    case OPT_LINGER_MS:
        return parse_number(cli, "--linger-ms", optarg, 0, INT32_MAX, &args->linger_ms);
    case OPT_BATCH_SIZE:
        return parse_number(cli, "--batch-size", optarg, 1, INT32_MAX, &args->batch_size);
    default:
        return common_option(cli, opt, argv);
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
    start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":k:p:H:vb:X:h", options, NULL)) != -1)
        rc = produce_option(cli, opt, argv, args);
    return rc == CLI_GO_ON ? one_operand(cli, argc, argv, "topic name", &args->topic) : rc;
}

/* Splits the --header texts into sl_headers; the record copies them on every send. */
static int build_headers(struct produce_args *args) {
    size_t n = args->header_texts.count;
    if (n == 0)
        return CLI_GO_ON;
    args->headers = calloc(n, sizeof(*args->headers));
    if (args->headers == NULL)
        return fail("%s", sl_strerror(SL_ENOMEM));
    for (; args->nheaders < n; args->nheaders++) {
        const char *text = args->header_texts.items[args->nheaders];
        const char *eq = strchr(text, '=');
        sl_header *h = &args->headers[args->nheaders];
        h->key = strndup(text, (size_t)(eq - text));
        if (h->key == NULL)
            return fail("%s", sl_strerror(SL_ENOMEM));
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
    sl_conf *conf = broker_conf(cli);
    bool ok = conf != NULL;
    if (ok && args->acks != NULL)
        ok = conf_set(conf, "acks", args->acks);
    if (ok && args->linger_ms >= 0) {
        snprintf(number, sizeof(number), "%" PRId64, args->linger_ms);
        ok = conf_set(conf, "linger.ms", number);
    }
    if (ok && args->batch_size >= 0) {
        snprintf(number, sizeof(number), "%" PRId64, args->batch_size);
        ok = conf_set(conf, "batch.size", number);
    }
    if (!ok) {
        sl_conf_destroy(conf);
        return CLI_FAILED;
    }
    int status = sl_producer_new(conf, out, errbuf, sizeof(errbuf));
    if (status == 0)
        return CLI_GO_ON;
    sl_conf_destroy(conf);
    return report_failure(cli, status, errbuf, NULL, "cannot start a producer");
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
        return fail("partition %" PRId32 " of topic \"%s\" does not exist", args->partition,
                    args->topic);
    return report_failure(cli, status, NULL, args->topic, "cannot send to topic \"%s\"",
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
        rc = fail("cannot read standard input: %s", strerror(errno));
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
            printf("produced %" PRIu64 " %s\n", sent, plural(sent, "record", "records"));
        return CLI_OK;
    }
    if (cause == 0)
        cause = flush_status;
    return fail("%" PRIu64 " of %" PRIu64 " %s %s not delivered: %s", sent - delivered, sent,
                plural(sent, "record", "records"), plural(sent - delivered, "was", "were"),
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
    int rc = pair_list_init(&args.header_texts, argc);
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
    "Give at most one of --from-beginning, --offset and --from-time.\n"
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
};

static int set_start(const struct cli *cli, struct consume_args *args, enum consume_start start) {
    if (args->start != START_DEFAULT && args->start != start)
        return usage_error(cli, "choose only one of --from-beginning, --offset and --from-time");
    args->start = start;
    return CLI_GO_ON;
}

static int parse_start_time(const struct cli *cli, struct consume_args *args, const char *text) {
    if (sl_cli_parse_time(text, sl_clock_wall_ms(), &args->time_ms) != 0)
        return usage_error(cli,
                           "--from-time wants an ISO 8601 time, ms since the epoch or a time "
                           "back from now such as -5h, not \"%s\"",
                           text);
    return set_start(cli, args, START_TIME);
}

static int parse_start_offset(const struct cli *cli, struct consume_args *args, const char *text) {
    int rc = parse_number(cli, "--offset", text, -INT64_MAX, INT64_MAX, &args->offset);
    return rc == CLI_GO_ON ? set_start(cli, args, START_OFFSET) : rc;
}

static int check_format(const struct cli *cli, const char *format) {
    char errbuf[ERRBUF_SIZE];
    if (sl_cli_format_check(format, errbuf, sizeof(errbuf)) != 0)
        return usage_error(cli, "%s", errbuf);
    return CLI_GO_ON;
}

/* Handles one consume option. Returns CLI_GO_ON, or an exit status (CLI_OK after --help). */
static int consume_option(struct cli *cli, int opt, char **argv, struct consume_args *args) {
    switch (opt) {
    case 'h':
        return show_help(consume_help);
    case 'p':
        return parse_int32(cli, "--partition", optarg, 0, &args->partition);
    case OPT_FROM_BEGINNING:
        return set_start(cli, args, START_BEGINNING);
    case 'o':
        return parse_start_offset(cli, args, optarg);
    case OPT_FROM_TIME:
        return parse_start_time(cli, args, optarg);
    case 'n':
        return parse_number(cli, "--max", optarg, 0, INT64_MAX, &args->max);
    case 'f':
        args->follow = true;
        return CLI_GO_ON;
    case 'F':
        args->format = optarg;
        return check_format(cli, optarg);
    default:
        return common_option(cli, opt, argv);
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
        {"format", required_argument, NULL, 'F'},
        COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":p:o:n:fF:b:X:h", options, NULL)) != -1)
        rc = consume_option(cli, opt, argv, args);
    return rc == CLI_GO_ON ? one_operand(cli, argc, argv, "topic name", &args->topic) : rc;
}

/* One partition being read, and (without --follow) where reading it stops. */
struct partition_progress {
    int32_t partition;
    int64_t end; /* the end offset when reading began */
    bool done;
};

struct consume_run {
    const struct cli *cli;
    const struct consume_args *args;
    sl_consumer *consumer;
    sl_client *admin; /* for list-offsets while setting up; closed before reading */
    struct partition_progress *parts;
    size_t nparts;
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

static int open_consumer(const struct cli *cli, sl_consumer **out) {
    char errbuf[ERRBUF_SIZE] = "";
    /* A position retention has deleted moves to the oldest record still held, never past
     * records nobody has read (-X auto.offset.reset=latest chooses otherwise). */
    sl_conf *conf = broker_conf_with(cli, "auto.offset.reset", "earliest");
    if (conf == NULL)
        return CLI_FAILED;
    int status = sl_consumer_new(conf, out, errbuf, sizeof(errbuf));
    if (status == 0)
        return CLI_GO_ON;
    sl_conf_destroy(conf);
    return report_failure(cli, status, errbuf, NULL, "cannot start a consumer");
}

/* Fills run->parts with the partitions to read: the one asked for, or all of them. */
static int choose_partitions(struct consume_run *run) {
    const struct consume_args *args = run->args;
    int32_t count;
    int status = sl_consumer_partition_count(run->consumer, args->topic, &count);
    if (status != 0)
        return report_failure(run->cli, status, NULL, args->topic,
                              "cannot read the partitions of topic \"%s\"", args->topic);
    if (args->partition != SL_PARTITION_ANY && args->partition >= count)
        return fail("partition %" PRId32 " of topic \"%s\" does not exist (it has %" PRId32 " %s)",
                    args->partition, args->topic, count,
                    plural((uint64_t)count, "partition", "partitions"));
    run->nparts = args->partition == SL_PARTITION_ANY ? (size_t)count : 1;
    run->parts = calloc(run->nparts > 0 ? run->nparts : 1, sizeof(*run->parts));
    if (run->parts == NULL)
        return fail("%s", sl_strerror(SL_ENOMEM));
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
        return report_failure(run->cli, status, NULL, args->topic,
                              "cannot start reading partition %" PRId32 " of topic \"%s\"",
                              part->partition, args->topic);
    return CLI_GO_ON;
}

/* Marks partitions whose position has reached the end noted at the start. */
static void check_positions(struct consume_run *run) {
    for (size_t i = 0; i < run->nparts; i++) {
        struct partition_progress *part = &run->parts[i];
        int64_t next;
        if (part->done)
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
    return !args->follow && run->ndone == run->nparts;
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
            return report_failure(run->cli, status, NULL, args->topic, "cannot read topic \"%s\"",
                                  args->topic);
        if (!args->follow && !before_noted_end(run, m))
            continue;
        if (sl_cli_format(stdout, args->format, m) != 0)
            return fail("cannot write standard output: %s", strerror(errno));
        run->printed++;
    }
    return CLI_OK;
}

static int setup_and_consume(struct consume_run *run) {
    int rc = open_consumer(run->cli, &run->consumer);
    if (rc == CLI_GO_ON)
        rc = choose_partitions(run);
    if (rc == CLI_GO_ON)
        rc = open_admin(run->cli, &run->admin);
    for (size_t i = 0; rc == CLI_GO_ON && i < run->nparts; i++)
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
    if (run.consumer != NULL)
        sl_consumer_destroy(run.consumer);
    free(run.parts);
    return rc;
}

/* ---- bench ------------------------------------------------------------------------------- */

/* Lives in bench.c; it takes the broker chosen so far and reads its own options. */
static int cmd_bench(struct cli *cli, int argc, char **argv) {
    return sl_cli_bench(argc, argv, cli->broker);
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
    start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return show_help(version_help);
        if ((rc = common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if ((rc = no_operands(cli, argc, argv)) != CLI_GO_ON)
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
    {"bench", cmd_bench, "measure produce and consume throughput and latency"},
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
    int rc = run_group(&cli, &top_group, argc, argv);
    /* Output is buffered: a full disk or closed pipe shows up only now. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fail("cannot write standard output: %s", strerror(errno));
        return rc == CLI_OK ? CLI_FAILED : rc;
    }
    return rc;
}

#include "cli/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ---------------------------------------------------------------------------- */

static void cli_vsay(const char *fmt, va_list ap) {
    fputs("sluice: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* Prints "sluice: <sentence>" on stderr. Returns CLI_FAILED. */
__attribute__((format(printf, 1, 2))) int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_vsay(fmt, ap);
    va_end(ap);
    return CLI_FAILED;
}

/* Prints the complaint and where to find help. Returns CLI_USAGE. */
__attribute__((format(printf, 2, 3))) int cli_usage_error(const struct cli *cli, const char *fmt,
                                                             ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_vsay(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'sluice%s%s --help'.\n", cli->path[0] ? " " : "", cli->path);
    return CLI_USAGE;
}

/* Says why a library call failed: the sentence the library wrote in 'errbuf' when there is one,
 * else one built from 'status'. 'topic' (may be NULL) names the topic SL_ENOENT is about;
 * 'doing' ("cannot list topics") introduces statuses that have no sentence of their own.
 * Returns CLI_FAILED. */
__attribute__((format(printf, 5, 6))) int cli_report_failure(const struct cli *cli, int status,
                                                                const char *errbuf,
                                                                const char *topic,
                                                                const char *doing, ...) {
    char context[256];
    va_list ap;
    if (errbuf != NULL && errbuf[0] != '\0')
        return cli_fail("%s", errbuf);
    if (status == SL_ENOENT && topic != NULL)
        return cli_fail("topic \"%s\" does not exist", topic);
    if (status == SL_ECONNREFUSED)
        return cli_fail("cannot reach broker at %s", cli->broker);
    va_start(ap, doing);
    vsnprintf(context, sizeof(context), doing, ap);
    va_end(ap);
    return cli_fail("%s: %s", context, sl_strerror(status));
}

const char *cli_plural(uint64_t n, const char *one, const char *many) {
    return n == 1 ? one : many;
}

/* ---- option parsing ---------------------------------------------------------------------- */

/* Resets getopt for a new argument vector; glibc re-initialises fully when optind is 0. */
void cli_start_options(void) {
    optind = 0;
    opterr = 0;
}

/* The option getopt just complained about, as the user typed it (without "=value"). */
static void cli_bad_option_text(char **argv, char *buf, size_t len) {
    if (optopt != 0) {
        snprintf(buf, len, "-%c", optopt);
        return;
    }
    snprintf(buf, len, "%.*s", (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
}

/* Handles what every command shares: -b and getopt's complaints (-h is each command's own).
 * Returns CLI_GO_ON or CLI_USAGE. */
int cli_common_option(struct cli *cli, int opt, char **argv) {
    char text[64];
    switch (opt) {
    case 'b':
        cli->broker = optarg;
        return CLI_GO_ON;
    case 'X':
        if (strchr(optarg, '=') == NULL || optarg[0] == '=')
            return cli_usage_error(cli, "-X wants KEY=VALUE, not \"%s\"", optarg);
        if (cli->nproperties == MAX_PROPERTIES)
            return cli_usage_error(cli, "at most %d -X properties", MAX_PROPERTIES);
        cli->properties[cli->nproperties++] = optarg;
        return CLI_GO_ON;
    case ':':
        /* For a missing value getopt leaves the option itself just before optind. */
        return cli_usage_error(cli, "option \"%s\" needs a value", argv[optind - 1]);
    default:
        cli_bad_option_text(argv, text, sizeof(text));
        return cli_usage_error(cli, "unknown option \"%s\"", text);
    }
}

int cli_show_help(const char *help) {
    fputs(help, stdout);
    return CLI_OK;
}

/* Parses a whole decimal number in [min, max] given to option 'name'. */
int cli_parse_number(const struct cli *cli, const char *name, const char *text, int64_t min,
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
        return cli_usage_error(cli, "%s wants a whole number of at least %" PRId64 ", not \"%s\"", name,
                           min, text);
    return cli_usage_error(cli, "%s wants a whole number from %" PRId64 " to %" PRId64 ", not \"%s\"",
                       name, min, max, text);
}

int cli_parse_int32(const struct cli *cli, const char *name, const char *text, int32_t min,
                       int32_t *out) {
    int64_t value;
    int rc = cli_parse_number(cli, name, text, min, INT32_MAX, &value);
    if (rc == CLI_GO_ON)
        *out = (int32_t)value;
    return rc;
}

/* The single operand (topic name) left after the options. */
int cli_one_operand(const struct cli *cli, int argc, char **argv, const char *what,
                       const char **out) {
    if (optind >= argc)
        return cli_usage_error(cli, "missing %s", what);
    if (optind + 1 < argc)
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind + 1]);
    *out = argv[optind];
    return CLI_GO_ON;
}

int cli_no_operands(const struct cli *cli, int argc, char **argv) {
    if (optind < argc)
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
    return CLI_GO_ON;
}

int cli_pair_list_init(struct pair_list *list, int argc) {
    list->count = 0;
    list->items = calloc((size_t)argc, sizeof(*list->items));
    return list->items != NULL ? CLI_GO_ON : cli_fail("%s", sl_strerror(SL_ENOMEM));
}

int cli_pair_list_add(const struct cli *cli, struct pair_list *list, const char *option,
                         const char *text) {
    const char *eq = strchr(text, '=');
    if (eq == NULL || eq == text)
        return cli_usage_error(cli, "%s wants KEY=VALUE, not \"%s\"", option, text);
    list->items[list->count++] = text;
    return CLI_GO_ON;
}

/* ---- connecting -------------------------------------------------------------------------- */

bool cli_conf_set(sl_conf *conf, const char *key, const char *value) {
    char errbuf[ERRBUF_SIZE] = "";
    if (sl_conf_set(conf, key, value, errbuf, sizeof(errbuf)) == 0)
        return true;
    cli_fail("%s", errbuf[0] ? errbuf : sl_strerror(SL_EBADCONFIG));
    return false;
}

/* A configuration for the chosen broker with the -X properties, or NULL after saying why not.
 * 'key' = 'value' (when key is not NULL) is this command's own default, set before the -X
 * properties so that they can change it. */
sl_conf *cli_broker_conf_with(const struct cli *cli, const char *key, const char *value) {
    sl_conf *conf = sl_conf_new();
    if (conf == NULL) {
        cli_fail("%s", sl_strerror(SL_ENOMEM));
        return NULL;
    }
    bool ok = cli_conf_set(conf, "bootstrap.servers", cli->broker);
    if (ok && key != NULL)
        ok = cli_conf_set(conf, key, value);
    for (size_t i = 0; ok && i < cli->nproperties; i++) {
        char name[256];
        const char *eq = strchr(cli->properties[i], '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq - cli->properties[i]), cli->properties[i]);
        ok = cli_conf_set(conf, name, eq + 1);
    }
    if (!ok) {
        sl_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

sl_conf *cli_broker_conf(const struct cli *cli) {
    return cli_broker_conf_with(cli, NULL, NULL);
}

int cli_open_admin(const struct cli *cli, sl_client **out) {
    char errbuf[ERRBUF_SIZE] = "";
    sl_conf *conf = cli_broker_conf(cli);
    if (conf == NULL)
        return CLI_FAILED;
    int status = sl_client_new(conf, out, errbuf, sizeof(errbuf));
    if (status == 0)
        return CLI_GO_ON;
    sl_conf_destroy(conf); /* still ours: *_new only takes it on success */
    return cli_report_failure(cli, status, errbuf, NULL, "cannot connect to %s", cli->broker);
}

/* ---- groups ------------------------------------------------------------------------------ */

static void cli_print_group_help(const struct cli *cli, const struct cli_group *group, FILE *out) {
    fprintf(out, "Usage: %s\n\n%s\n\nCommands:\n", group->usage, group->description);
    for (size_t i = 0; i < group->ncommands; i++)
        fprintf(out, "  %-10s %s\n", group->commands[i].name, group->commands[i].summary);
    fputs("\nOptions:\n" COMMON_OPTIONS_HELP, out);
    fprintf(out, "\nRun 'sluice%s%s COMMAND --help' for the options of a command.\n",
            cli->path[0] ? " " : "", cli->path);
}

static const struct cli_command *cli_find_command(const struct cli_group *group, const char *name) {
    for (size_t i = 0; i < group->ncommands; i++)
        if (strcmp(group->commands[i].name, name) == 0)
            return &group->commands[i];
    return NULL;
}

/* Appends a command name to cli->path, for help hints and messages. */
static void cli_enter_command(struct cli *cli, const char *name) {
    size_t used = strlen(cli->path);
    snprintf(cli->path + used, sizeof(cli->path) - used, "%s%s", used ? " " : "", name);
}

/* Reads the group's options (which stop at the first operand), then runs the subcommand. */
int cli_run_group(struct cli *cli, const struct cli_group *group, int argc, char **argv) {
    static const struct option options[] = {COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, "+:b:X:h", options, NULL)) != -1) {
        if (opt == 'h') {
            cli_print_group_help(cli, group, stdout);
            return CLI_OK;
        }
        if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if (optind >= argc) {
        cli_fail("missing command");
        cli_print_group_help(cli, group, stderr);
        return CLI_USAGE;
    }
    const struct cli_command *command = cli_find_command(group, argv[optind]);
    if (command == NULL)
        return cli_usage_error(cli, "unknown command \"%s\"", argv[optind]);
    cli_enter_command(cli, command->name);
    return command->run(cli, argc - optind, argv + optind);
}

/* Writes 's' as a JSON string literal. Bytes from 0x80 up are passed on (UTF-8 stays UTF-8). */
void cli_write_json_string(FILE *out, const char *s) {
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

/* "512 B", "1.2 MiB": binary units with one decimal. */
void cli_format_size(int64_t bytes, char *buf, size_t len) {
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

void cli_format_ids(const int32_t *ids, int32_t n, char *buf, size_t len) {
    size_t used = 0;
    snprintf(buf, len, "-");
    for (int32_t i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%d", i ? "," : "", (int)ids[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* What every sluice command shares: the invocation's state (broker, -X properties), messages
 * in one voice ("sluice: <sentence>"), option parsing with the same exit statuses everywhere,
 * client configurations, command groups and small output helpers. */
#ifndef SL_CLI_CLI_H
#define SL_CLI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/client.h"

enum {
    CLI_OK = 0,
    CLI_FAILED = 1,
    CLI_USAGE = 2,
    /* Returned by parsing helpers when all is well and the command should carry on. */
    CLI_GO_ON = -1,
};

#define ERRBUF_SIZE 512

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

/* Repeated KEY=VALUE options (--config, --header). The strings point into argv; 'items' has
 * room for every argument, which bounds how many there can be. */
struct pair_list {
    const char **items;
    size_t count;
};


/* ---- messages (stderr, "sluice: <sentence>") ---- */

/* Prints the sentence. Returns CLI_FAILED. */
__attribute__((format(printf, 1, 2))) int cli_fail(const char *fmt, ...);

/* Prints the complaint and where to find help. Returns CLI_USAGE. */
__attribute__((format(printf, 2, 3))) int cli_usage_error(const struct cli *cli, const char *fmt,
                                                         ...);

/* Says why a library call failed: the library's sentence in 'errbuf' when there is one, else
 * one built from 'status'. 'topic' (may be NULL) names the topic SL_ENOENT is about; 'doing'
 * ("cannot list topics") introduces statuses with no sentence of their own. CLI_FAILED. */
__attribute__((format(printf, 5, 6))) int cli_report_failure(const struct cli *cli, int status,
                                                            const char *errbuf,
                                                            const char *topic,
                                                            const char *doing, ...);

/* 'one' or 'many' by n. */
const char *cli_plural(uint64_t n, const char *one, const char *many);

/* ---- options: each returns CLI_GO_ON, or the exit status to end with ---- */

/* Resets getopt for a new argument vector. */
void cli_start_options(void);
/* -b, -X and getopt's complaints (-h is each command's own). */
int cli_common_option(struct cli *cli, int opt, char **argv);
/* Prints a help text to stdout; CLI_OK. */
int cli_show_help(const char *help);
/* A whole decimal number in [min, max] given to option 'name'. */
int cli_parse_number(const struct cli *cli, const char *name, const char *text, int64_t min,
                     int64_t max, int64_t *out);
int cli_parse_int32(const struct cli *cli, const char *name, const char *text, int32_t min,
                    int32_t *out);
/* The single operand left after the options ('what' names it in the complaint). */
int cli_one_operand(const struct cli *cli, int argc, char **argv, const char *what,
                    const char **out);
int cli_no_operands(const struct cli *cli, int argc, char **argv);
int cli_pair_list_init(struct pair_list *list, int argc);
int cli_pair_list_add(const struct cli *cli, struct pair_list *list, const char *option,
                      const char *text);

/* Runs the subcommand of a command group (its options stop at the first operand). */
int cli_run_group(struct cli *cli, const struct cli_group *group, int argc, char **argv);

/* ---- clients ---- */

/* Sets one property; false after saying why not. */
bool cli_conf_set(sl_conf *conf, const char *key, const char *value);

/* A configuration for the chosen broker with the -X properties, or NULL after saying why not.
 * 'key' = 'value' (when key is not NULL) is this command's own default, set before the -X
 * properties so that they can change it. */
sl_conf *cli_broker_conf_with(const struct cli *cli, const char *key, const char *value);
sl_conf *cli_broker_conf(const struct cli *cli);

/* An admin client for the chosen broker; CLI_GO_ON or the failure, said. */
int cli_open_admin(const struct cli *cli, sl_client **out);

/* ---- output ---- */

/* Writes 's' as a JSON string literal (UTF-8 passes through). */
void cli_write_json_string(FILE *out, const char *s);
/* "512 B", "1.2 MiB": binary units with one decimal. */
void cli_format_size(int64_t bytes, char *buf, size_t len);
/* Node ids as "1,2,3" ("-" for none). */
void cli_format_ids(const int32_t *ids, int32_t n, char *buf, size_t len);

#endif

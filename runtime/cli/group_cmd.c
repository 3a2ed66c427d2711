/* sluice group: list, describe, reset and delete consumer groups. */
#include "cli/group_cmd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/timeparse.h"

enum { OPT_JSON = 256, OPT_TOPIC, OPT_EARLIEST, OPT_LATEST, OPT_TO_OFFSET, OPT_TO_TIME,
       OPT_BY_DURATION, OPT_SHIFT_BY, OPT_DRY_RUN };

/* "3.2s", "4m10s", "2h05m", "3d4h": a lag as a person reads it. */
static void format_duration(int64_t ms, char *buf, size_t len) {
    if (ms < 60000)
        snprintf(buf, len, "%.1fs", (double)ms / 1000);
    else if (ms < 3600000)
        snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", ms / 60000, ms / 1000 % 60);
    else if (ms < 86400000)
        snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, ms / 60000 % 60);
    else
        snprintf(buf, len, "%" PRId64 "d%" PRId64 "h", ms / 86400000, ms / 3600000 % 24);
}

/* Parses the group operand and the common options; 'json' may be NULL when not allowed. */
static int parse_simple(struct cli *cli, int argc, char **argv, const char *help, bool *json,
                        const char **group) {
    static const struct option options[] = {
        {"json", no_argument, NULL, OPT_JSON}, COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(help);
        if (opt == OPT_JSON && json != NULL)
            *json = true;
        else if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if (group == NULL)
        return cli_no_operands(cli, argc, argv);
    return cli_one_operand(cli, argc, argv, "group name", group);
}

/* ---- list ---- */

static const char list_help[] = "Usage: sluice group list\n"
                                "\n"
                                "Lists consumer groups (with members or committed offsets) and "
                                "their states.\n"
                                "\n"
                                "Options:\n" COMMON_OPTIONS_HELP;

static int cmd_list(struct cli *cli, int argc, char **argv) {
    int rc = parse_simple(cli, argc, argv, list_help, NULL, NULL);
    if (rc != CLI_GO_ON)
        return rc;
    sl_client *admin;
    if ((rc = cli_open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    char **names, **states;
    size_t n;
    int status = sl_group_list(admin, &names, &states, &n);
    sl_client_destroy(admin);
    if (status)
        return cli_report_failure(cli, status, NULL, NULL, "cannot list groups");
    for (size_t i = 0; i < n; i++)
        printf("%s\t%s\n", names[i], states[i]);
    sl_topic_list_free(names, n);
    sl_topic_list_free(states, n);
    return CLI_OK;
}

/* ---- describe ---- */

static const char describe_help[] =
    "Usage: sluice group describe GROUP [--json]\n"
    "\n"
    "Shows the group's state and members with their partitions, and for every partition it has\n"
    "committed: the committed offset, the end offset, the lag in records and the lag as time\n"
    "(the age of the oldest record the group has not consumed).\n"
    "\n"
    "Options:\n"
    "      --json             print one JSON object: group, state, protocol, generation,\n"
    "                         coordinator (node id), members [{id, client, host,\n"
    "                         partitions}], offsets [{topic, partition, committed_offset,\n"
    "                         end_offset, lag, lag_ms}]\n" COMMON_OPTIONS_HELP;

static void print_group_json(const sl_group_info *g) {
    fputs("{\"group\":", stdout);
    cli_write_json_string(stdout, g->group);
    fputs(",\"state\":", stdout);
    cli_write_json_string(stdout, g->state);
    fputs(",\"protocol\":", stdout);
    cli_write_json_string(stdout, g->protocol);
    printf(",\"generation\":%" PRId32 ",\"coordinator\":%" PRId32 ",\"members\":[",
           g->generation, g->coordinator);
    for (size_t i = 0; i < g->nmembers; i++) {
        const sl_group_member_info *m = &g->members[i];
        fputs(i ? ",{\"id\":" : "{\"id\":", stdout);
        cli_write_json_string(stdout, m->member_id);
        fputs(",\"client\":", stdout);
        cli_write_json_string(stdout, m->client_id);
        fputs(",\"host\":", stdout);
        cli_write_json_string(stdout, m->host);
        fputs(",\"partitions\":[", stdout);
        for (size_t j = 0; j < m->npartitions; j++) {
            fputs(j ? ",{\"topic\":" : "{\"topic\":", stdout);
            cli_write_json_string(stdout, m->partitions[j].topic);
            printf(",\"partition\":%" PRId32 "}", m->partitions[j].partition);
        }
        fputs("]}", stdout);
    }
    fputs("],\"offsets\":[", stdout);
    for (size_t i = 0; i < g->noffsets; i++) {
        const sl_group_offset_info *o = &g->offsets[i];
        fputs(i ? ",{\"topic\":" : "{\"topic\":", stdout);
        cli_write_json_string(stdout, o->topic);
        printf(",\"partition\":%" PRId32 ",\"committed_offset\":%" PRId64 ",\"end_offset\":%" PRId64
               ",\"lag\":%" PRId64 ",\"lag_ms\":%" PRId64 "}",
               o->partition, o->committed, o->end_offset, o->lag, o->lag_ms);
    }
    fputs("]}\n", stdout);
}

static int cmp_offsets(const void *a, const void *b) {
    const sl_group_offset_info *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

static void print_group_table(const sl_group_info *g) {
    printf("group \"%s\": %s, %zu %s", g->group, g->state, g->nmembers,
           cli_plural(g->nmembers, "member", "members"));
    if (g->protocol[0])
        printf(", strategy %s, generation %" PRId32, g->protocol, g->generation);
    printf(", coordinator node %" PRId32 "\n", g->coordinator);
    if (g->nmembers) {
        printf("\n%-40s  %-16s  %-21s  %s\n", "MEMBER", "CLIENT", "HOST", "PARTITIONS");
        for (size_t i = 0; i < g->nmembers; i++) {
            const sl_group_member_info *m = &g->members[i];
            printf("%-40s  %-16s  %-21s  ", m->member_id, m->client_id, m->host);
            for (size_t j = 0; j < m->npartitions; j++)
                printf("%s%s-%" PRId32, j ? "," : "", m->partitions[j].topic,
                       m->partitions[j].partition);
            fputs(m->npartitions ? "\n" : "(none)\n", stdout);
        }
    }
    if (g->noffsets) {
        sl_group_offset_info *sorted = malloc(g->noffsets * sizeof(*sorted));
        if (sorted == NULL)
            return;
        memcpy(sorted, g->offsets, g->noffsets * sizeof(*sorted));
        qsort(sorted, g->noffsets, sizeof(*sorted), cmp_offsets);
        printf("\n%-20s  %-9s  %-12s  %-12s  %-10s  %s\n", "TOPIC", "PARTITION", "COMMITTED",
               "END", "LAG", "LAG TIME");
        for (size_t i = 0; i < g->noffsets; i++) {
            char age[32];
            format_duration(sorted[i].lag_ms, age, sizeof(age));
            printf("%-20s  %-9" PRId32 "  %-12" PRId64 "  %-12" PRId64 "  %-10" PRId64 "  %s\n",
                   sorted[i].topic, sorted[i].partition, sorted[i].committed,
                   sorted[i].end_offset, sorted[i].lag, age);
        }
        free(sorted);
    }
}

static int cmd_describe(struct cli *cli, int argc, char **argv) {
    const char *group;
    bool json = false;
    int rc = parse_simple(cli, argc, argv, describe_help, &json, &group);
    if (rc != CLI_GO_ON)
        return rc;
    sl_client *admin;
    if ((rc = cli_open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    char errbuf[ERRBUF_SIZE] = "";
    sl_group_info *info;
    int status = sl_group_describe(admin, group, &info, errbuf, sizeof(errbuf));
    sl_client_destroy(admin);
    if (status)
        return cli_report_failure(cli, status, errbuf, NULL, "cannot describe group \"%s\"",
                                  group);
    if (json)
        print_group_json(info);
    else
        print_group_table(info);
    sl_group_info_free(info);
    return CLI_OK;
}

/* ---- delete ---- */

static const char delete_help[] =
    "Usage: sluice group delete GROUP\n"
    "\n"
    "Deletes the group's committed offsets. Refused while the group has members.\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_HELP;

static int cmd_delete(struct cli *cli, int argc, char **argv) {
    const char *group;
    int rc = parse_simple(cli, argc, argv, delete_help, NULL, &group);
    if (rc != CLI_GO_ON)
        return rc;
    sl_client *admin;
    if ((rc = cli_open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    char errbuf[ERRBUF_SIZE] = "";
    int status = sl_group_delete(admin, group, errbuf, sizeof(errbuf));
    sl_client_destroy(admin);
    if (status)
        return cli_report_failure(cli, status, errbuf, NULL, "cannot delete group \"%s\"", group);
    printf("deleted group \"%s\"\n", group);
    return CLI_OK;
}

/* ---- reset ---- */

static const char reset_help[] =
    "Usage: sluice group reset GROUP --topic TOPIC WHERE [--dry-run]\n"
    "\n"
    "Moves the group's committed offsets on every partition of TOPIC, so that its members\n"
    "replay (or skip) records when they next start. Refused while the group has members.\n"
    "\n"
    "WHERE is one of:\n"
    "      --to-earliest      the oldest record still held\n"
    "      --to-latest        the end: skip everything written so far\n"
    "      --to-offset N      offset N (kept within each partition's start and end)\n"
    "      --to-datetime TIME the first record at or after TIME: ISO 8601, ms since the epoch,\n"
    "                         or back from now (-5h)\n"
    "      --by-duration D    the first record written in the last D (5h, 30m, 2d)\n"
    "      --shift-by N       N records forward (or back, when negative) from the committed\n"
    "                         offset\n"
    "\n"
    "Options:\n"
    "  -t, --topic TOPIC      the topic whose offsets move (required)\n"
    "      --dry-run          show the plan (current and new offset per partition) and change\n"
    "                         nothing\n" COMMON_OPTIONS_HELP;

enum reset_mode { RESET_NONE, RESET_EARLIEST, RESET_LATEST, RESET_OFFSET, RESET_TIME, RESET_SHIFT };

struct reset_args {
    const char *group, *topic;
    enum reset_mode mode;
    int64_t value; /* offset, time (ms) or shift */
    bool dry_run;
};

static int set_mode(struct cli *cli, struct reset_args *a, enum reset_mode mode) {
    if (a->mode != RESET_NONE)
        return cli_usage_error(cli, "choose one of --to-earliest, --to-latest, --to-offset, "
                                    "--to-datetime, --by-duration and --shift-by");
    a->mode = mode;
    return CLI_GO_ON;
}

static int reset_option(struct cli *cli, int opt, char **argv, struct reset_args *a) {
    int rc;
    switch (opt) {
    case 'h': return cli_show_help(reset_help);
    case 't': a->topic = optarg; return CLI_GO_ON;
    case OPT_DRY_RUN: a->dry_run = true; return CLI_GO_ON;
    case OPT_EARLIEST: return set_mode(cli, a, RESET_EARLIEST);
    case OPT_LATEST: return set_mode(cli, a, RESET_LATEST);
    case OPT_TO_OFFSET:
        rc = cli_parse_number(cli, "--to-offset", optarg, 0, INT64_MAX, &a->value);
        return rc == CLI_GO_ON ? set_mode(cli, a, RESET_OFFSET) : rc;
    case OPT_SHIFT_BY:
        rc = cli_parse_number(cli, "--shift-by", optarg, -INT64_MAX, INT64_MAX, &a->value);
        return rc == CLI_GO_ON ? set_mode(cli, a, RESET_SHIFT) : rc;
    case OPT_TO_TIME:
        if (sl_cli_parse_time(optarg, sl_clock_wall_ms(), &a->value) != 0)
            return cli_usage_error(cli, "--to-datetime wants an ISO 8601 time, ms since the "
                                        "epoch or a time back from now, not \"%s\"",
                                   optarg);
        return set_mode(cli, a, RESET_TIME);
    case OPT_BY_DURATION: {
        /* "5h" means the same as "-5h" for --to-datetime. */
        char back[64];
        snprintf(back, sizeof(back), "-%s", optarg);
        if (optarg[0] == '-' || sl_cli_parse_time(back, sl_clock_wall_ms(), &a->value) != 0)
            return cli_usage_error(cli, "--by-duration wants a duration such as 5h, 30m or 2d, "
                                        "not \"%s\"",
                                   optarg);
        return set_mode(cli, a, RESET_TIME);
    }
    default: return cli_common_option(cli, opt, argv);
    }
}

static int parse_reset(struct cli *cli, int argc, char **argv, struct reset_args *a) {
    static const struct option options[] = {{"topic", required_argument, NULL, 't'},
                                            {"to-earliest", no_argument, NULL, OPT_EARLIEST},
                                            {"to-latest", no_argument, NULL, OPT_LATEST},
                                            {"to-offset", required_argument, NULL, OPT_TO_OFFSET},
                                            {"to-datetime", required_argument, NULL, OPT_TO_TIME},
                                            {"by-duration", required_argument, NULL,
                                             OPT_BY_DURATION},
                                            {"shift-by", required_argument, NULL, OPT_SHIFT_BY},
                                            {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                            COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    int opt, rc = CLI_GO_ON;
    cli_start_options();
    while (rc == CLI_GO_ON && (opt = getopt_long(argc, argv, ":t:b:X:h", options, NULL)) != -1)
        rc = reset_option(cli, opt, argv, a);
    if (rc == CLI_GO_ON)
        rc = cli_one_operand(cli, argc, argv, "group name", &a->group);
    if (rc == CLI_GO_ON && a->topic == NULL)
        rc = cli_usage_error(cli, "--topic is required");
    if (rc == CLI_GO_ON && a->mode == RESET_NONE)
        rc = cli_usage_error(cli, "say where to: --to-earliest, --to-latest, --to-offset N, "
                                  "--to-datetime TIME, --by-duration D or --shift-by N");
    return rc;
}

/* The committed offset of a partition in the description, or -1. */
static int64_t committed_of(const sl_group_info *g, const char *topic, int32_t partition) {
    for (size_t i = 0; g && i < g->noffsets; i++)
        if (g->offsets[i].partition == partition && strcmp(g->offsets[i].topic, topic) == 0)
            return g->offsets[i].committed;
    return -1;
}

/* The new offset of one partition, within [start, end]. */
static int target_offset(sl_client *admin, const struct reset_args *a, int32_t p,
                         int64_t current, int64_t start, int64_t end, int64_t *out) {
    int64_t t;
    switch (a->mode) {
    case RESET_EARLIEST: t = start; break;
    case RESET_LATEST: t = end; break;
    case RESET_OFFSET: t = a->value; break;
    case RESET_SHIFT: t = (current >= 0 ? current : end) + a->value; break;
    case RESET_TIME: {
        int status = sl_list_offset(admin, a->topic, p, a->value, &t);
        if (status)
            return status;
        break;
    }
    default: return SL_EINVAL;
    }
    *out = t < start ? start : t > end ? end : t;
    return 0;
}

static int run_reset(const struct cli *cli, const struct reset_args *a) {
    sl_client *admin;
    int rc = cli_open_admin(cli, &admin);
    if (rc != CLI_GO_ON)
        return rc;
    char errbuf[ERRBUF_SIZE] = "";
    sl_topic_info *topic = NULL;
    sl_group_info *group = NULL;
    sl_topic_partition *plan = NULL;
    int status = sl_topic_describe(admin, a->topic, &topic, errbuf, sizeof(errbuf));
    if (status == 0) {
        int gs = sl_group_describe(admin, a->group, &group, NULL, 0);
        if (gs == 0 && group->nmembers > 0) {
            snprintf(errbuf, sizeof(errbuf),
                     "group \"%s\" has %zu active %s; stop them before resetting its offsets",
                     a->group, group->nmembers, cli_plural(group->nmembers, "member", "members"));
            status = SL_EGROUPNOTEMPTY;
        } else if (gs != 0 && gs != SL_ENOENT) {
            status = gs;
        }
    }
    if (status == 0 && (plan = calloc((size_t)topic->npartitions + 1, sizeof(*plan))) == NULL)
        status = SL_ENOMEM;
    if (status == 0 && !a->dry_run)
        printf("resetting group \"%s\" on topic \"%s\":\n", a->group, a->topic);
    if (status == 0)
        printf("%-20s  %-9s  %-12s  %s\n", "TOPIC", "PARTITION", "CURRENT", "NEW");
    for (int32_t i = 0; status == 0 && i < topic->npartitions; i++) {
        const sl_partition_info *p = &topic->partitions[i];
        int64_t current = committed_of(group, a->topic, p->partition), target;
        status = target_offset(admin, a, p->partition, current, p->start_offset, p->end_offset,
                               &target);
        if (status)
            break;
        plan[i] = (sl_topic_partition){a->topic, p->partition, target};
        char cur[32];
        snprintf(cur, sizeof(cur), current >= 0 ? "%" PRId64 : "-", current);
        printf("%-20s  %-9" PRId32 "  %-12s  %" PRId64 "\n", a->topic, p->partition, cur, target);
    }
    if (status == 0 && !a->dry_run)
        status = sl_group_set_offsets(admin, a->group, plan, (size_t)topic->npartitions, errbuf,
                                      sizeof(errbuf));
    if (status == 0)
        printf(a->dry_run ? "(dry run: nothing changed)\n" : "done\n");
    free(plan);
    sl_topic_info_free(topic);
    sl_group_info_free(group);
    sl_client_destroy(admin);
    if (status)
        return cli_report_failure(cli, status, errbuf, a->topic, "cannot reset group \"%s\"",
                                  a->group);
    return CLI_OK;
}

static int cmd_reset(struct cli *cli, int argc, char **argv) {
    struct reset_args a = {0};
    int rc = parse_reset(cli, argc, argv, &a);
    return rc == CLI_GO_ON ? run_reset(cli, &a) : rc;
}

/* ---- the group command ---- */

static const struct cli_command group_commands[] = {
    {"list", cmd_list, "list consumer groups and their states"},
    {"describe", cmd_describe, "members, partitions, committed offsets and lag of a group"},
    {"reset", cmd_reset, "move a group's committed offsets (replay or skip records)"},
    {"delete", cmd_delete, "delete a group's committed offsets"},
};

static const struct cli_group group_group = {
    "sluice group [OPTIONS] COMMAND [ARGS]...",
    "Inspects and manages consumer groups.",
    group_commands,
    sizeof(group_commands) / sizeof(group_commands[0]),
};

int sl_cli_group(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &group_group, argc, argv);
}

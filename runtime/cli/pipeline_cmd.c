/* sluice pipeline, dlq and plugin: thin front ends over runtime/pipeline/admin.h and the
 * plugin loader. Deploy checks the file here first, so a bad file is refused with its line
 * before anything reaches the broker. */
#include "cli/pipeline_cmd.h"

#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/admin.h"
#include "pipeline/pipeline.h"
#include "plugin/loader.h"

enum { OPT_JSON = 256, OPT_PLUGIN_PATH };

/* Options: -b, -X, -h, --json (when 'json' is not NULL), --plugin-path (when 'plugin_path' is
 * not NULL); then one operand named 'what' (NULL: none). */
static int parse(struct cli *cli, int argc, char **argv, const char *help, bool *json,
                 const char **plugin_path, const char *what, const char **operand) {
    static const struct option options[] = {{"json", no_argument, NULL, OPT_JSON},
                                            {"plugin-path", required_argument, NULL,
                                             OPT_PLUGIN_PATH},
                                            COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(help);
        if (opt == OPT_JSON && json)
            *json = true;
        else if (opt == OPT_PLUGIN_PATH && plugin_path)
            *plugin_path = optarg;
        else if (opt == OPT_JSON || opt == OPT_PLUGIN_PATH)
            return cli_usage_error(cli, "unknown option \"%s\"", argv[optind - 1]);
        else if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if (what == NULL)
        return cli_no_operands(cli, argc, argv);
    return cli_one_operand(cli, argc, argv, what, operand);
}

static void format_time(int64_t ms, char *buf, size_t len) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* ---- deploy ---- */

static const char deploy_help[] =
    "Usage: sluice pipeline deploy FILE\n"
    "\n"
    "Checks the pipeline file (a Lua file returning topics, sources, processors and sinks),\n"
    "creates the topics it declares and the retry and dead-letter topics its stages need, and\n"
    "hands it to the broker, which starts every stage instance as a member of the stage's\n"
    "consumer group. Deploying a pipeline that runs already replaces it with the new version\n"
    "(changed scripts included): the old instances commit and leave, the new ones continue from\n"
    "their commits. A bad file is refused whole, with its line and the reason.\n"
    "\n"
    "Options:\n"
    "      --plugin-path DIRS ':'-separated folders searched for plugins first (the broker\n"
    "                         looks in its own --plugin-path)\n" COMMON_OPTIONS_HELP;

static int cmd_deploy(struct cli *cli, int argc, char **argv) {
    const char *file, *plugin_path = NULL;
    int rc = parse(cli, argc, argv, deploy_help, NULL, &plugin_path, "pipeline file", &file);
    if (rc != CLI_GO_ON)
        return rc;
    char *source, pathbuf[8192], err[2048] = "";
    if (sl_pipeline_read_file(file, &source) != 0)
        return cli_fail("cannot read pipeline file %s", file);
    sl_pipeline *p;
    int status = sl_pipeline_load(file, source,
                                  sl_plugin_search_path(plugin_path, pathbuf, sizeof(pathbuf)),
                                  &p, err, sizeof(err));
    if (status == 0 && (status = sl_pipeline_check_plugins(p, err, sizeof(err))) != 0)
        sl_pipeline_free(p);
    if (status) {
        free(source);
        return cli_fail("pipeline refused: %s", err);
    }
    int64_t version;
    status = sl_pl_deploy(cli->broker, p, source, &version, err, sizeof(err));
    free(source);
    if (status) {
        sl_pipeline_free(p);
        return cli_report_failure(cli, status, err, NULL, "cannot deploy %s", file);
    }
    int instances = 0;
    for (size_t i = 0; i < p->nstages; i++)
        instances += p->stages[i].instances;
    printf("pipeline \"%s\" deployed (version %" PRId64 "): %zu %s, %d %s\n", p->name, version,
           p->nstages, cli_plural(p->nstages, "stage", "stages"), instances,
           cli_plural((uint64_t)instances, "instance", "instances"));
    for (size_t i = 0; i < p->nstages; i++) {
        const sl_pl_stage *s = &p->stages[i];
        printf("  %-9s %-20s ", sl_plugin_kind_name(s->kind), s->name);
        for (size_t k = 0; k < s->ninputs; k++)
            printf("%s%s", k ? "," : "", s->inputs[k]);
        printf(" -> ");
        for (size_t k = 0; k < s->noutputs; k++)
            printf("%s%s", k ? "," : "", s->outputs[k]);
        if (s->nretries)
            printf("  (%zu retry %s, dead letters to %s)", s->nretries,
                   cli_plural(s->nretries, "level", "levels"), s->dlq);
        printf("\n");
    }
    sl_pipeline_free(p);
    return CLI_OK;
}

/* ---- list ---- */

static const char list_help[] =
    "Usage: sluice pipeline list [--json]\n"
    "\n"
    "Lists the pipelines the broker runs: name, version, when and from which file each was\n"
    "deployed.\n"
    "\n"
    "Options:\n"
    "      --json             print a JSON array of {name, version, deployed_ms, file}\n"
    COMMON_OPTIONS_HELP;

static int cmd_list(struct cli *cli, int argc, char **argv) {
    bool json = false;
    int rc = parse(cli, argc, argv, list_help, &json, NULL, NULL, NULL);
    if (rc != CLI_GO_ON)
        return rc;
    sl_pl_deployed *d;
    size_t n;
    char err[1024] = "";
    int status = sl_pl_list(cli->broker, &d, &n, err, sizeof(err));
    if (status)
        return cli_report_failure(cli, status, err, NULL, "cannot list pipelines");
    if (json) {
        fputs("[", stdout);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
            cli_write_json_string(stdout, d[i].name);
            printf(",\"version\":%" PRId64 ",\"deployed_ms\":%" PRId64 ",\"file\":",
                   d[i].version, d[i].deployed_ms);
            cli_write_json_string(stdout, d[i].file);
            fputs("}", stdout);
        }
        fputs("]\n", stdout);
    } else if (n == 0) {
        printf("no pipelines\n");
    } else {
        printf("%-20s  %-8s  %-20s  %s\n", "NAME", "VERSION", "DEPLOYED", "FILE");
        for (size_t i = 0; i < n; i++) {
            char when[32];
            format_time(d[i].deployed_ms, when, sizeof(when));
            printf("%-20s  %-8" PRId64 "  %-20s  %s\n", d[i].name, d[i].version, when,
                   d[i].file);
        }
    }
    sl_pl_deployed_free(d, n);
    return CLI_OK;
}

/* ---- status ---- */

static const char status_help[] =
    "Usage: sluice pipeline status NAME [--json]\n"
    "\n"
    "Shows each stage of a running pipeline: its consumer group and total lag, and for each\n"
    "instance its state (running, restarting, failed, stopped), node, process, partitions, records\n"
    "in and out, errors, records sent to retry and dead-letter topics, restarts and the last\n"
    "error.\n"
    "\n"
    "Options:\n"
    "      --json             print one JSON object: name, version, file, stages [{name, kind,\n"
    "                         group, lag, instances [{instance, state, node, pid, partitions,\n"
    "                         records_in, records_out, errors, retried, dead_lettered,\n"
    "                         restarts, last_error, metrics {name: count}, state_keys,\n"
    "                         state_bytes, changelog, ...}]}]\n" COMMON_OPTIONS_HELP;

/* "name value, name value" of the status's metrics object (the counters scripts and plugins
 * keep), less the host's own lua_memory_bytes; empty when there are none. */
static void json_metrics(const char *json, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    const char *at = strstr(json, "\"metrics\":{");
    if (at == NULL)
        return;
    at += strlen("\"metrics\":{");
    while (*at == '"' && used + 1 < len) {
        const char *end = strchr(at + 1, '"');
        if (end == NULL || end[1] != ':')
            return;
        long long v = strtoll(end + 2, NULL, 10);
        int nlen = (int)(end - at - 1);
        if (strncmp(at + 1, "lua_memory_bytes", (size_t)nlen) != 0 || nlen != 16)
            used += (size_t)snprintf(buf + used, len - used, "%s%.*s %lld", used ? ", " : "",
                                     nlen, at + 1, v);
        at = end + 2;
        while (*at && *at != ',' && *at != '}')
            at++;
        if (*at != ',')
            return;
        at++;
    }
}

/* Reads number field 'key' of one of our own flat status objects. */
static int64_t json_number(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *at = strstr(json, pat);
    return at ? strtoll(at + strlen(pat), NULL, 10) : 0;
}

static void json_text(const char *json, const char *key, char *buf, size_t len) {
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *at = strstr(json, pat);
    size_t n = 0;
    if (at)
        for (const char *c = at + strlen(pat); *c && *c != '"' && n + 1 < len; c++) {
            if (*c == '\\' && c[1])
                c++;
            buf[n++] = *c;
        }
    buf[n] = '\0';
}

/* The partitions array as "a-0,a-1". */
static void json_partitions(const char *json, char *buf, size_t len) {
    const char *at = strstr(json, "\"partitions\":[");
    size_t n = 0;
    if (at)
        for (const char *c = at + 14; *c && *c != ']' && n + 1 < len; c++)
            if (*c != '"')
                buf[n++] = *c;
    buf[n] = '\0';
    if (n == 0)
        snprintf(buf, len, "-");
}

static int64_t stage_lag(sl_client *admin, const char *group) {
    sl_group_info *g;
    char err[256];
    if (admin == NULL || sl_group_describe(admin, group, &g, err, sizeof(err)) != 0)
        return -1;
    int64_t lag = 0;
    for (size_t i = 0; i < g->noffsets; i++)
        lag += g->offsets[i].lag > 0 ? g->offsets[i].lag : 0;
    sl_group_info_free(g);
    return lag;
}

static int cmd_status(struct cli *cli, int argc, char **argv) {
    const char *name;
    bool json = false;
    int rc = parse(cli, argc, argv, status_help, &json, NULL, "pipeline name", &name);
    if (rc != CLI_GO_ON)
        return rc;
    sl_pl_deployed *d;
    size_t n;
    char err[2048] = "";
    int status = sl_pl_list(cli->broker, &d, &n, err, sizeof(err));
    if (status)
        return cli_report_failure(cli, status, err, NULL, "cannot read pipelines");
    const sl_pl_deployed *mine = NULL;
    for (size_t i = 0; i < n && !mine; i++)
        if (strcmp(d[i].name, name) == 0)
            mine = &d[i];
    sl_pipeline *p = NULL;
    if (mine == NULL) {
        sl_pl_deployed_free(d, n);
        return cli_fail("no pipeline named \"%s\" is running (see sluice pipeline list)", name);
    }
    if (sl_pipeline_load(mine->file, mine->source, NULL, &p, err, sizeof(err)) != 0) {
        sl_pl_deployed_free(d, n);
        return cli_fail("cannot read the deployed pipeline: %s", err);
    }
    char prefix[300], **keys = NULL, **values = NULL;
    size_t ns = 0;
    snprintf(prefix, sizeof(prefix), "%s/", name);
    status = sl_pl_read_latest(cli->broker, SL_PIPELINE_STATUS_TOPIC, prefix, &keys, &values,
                               &ns, err, sizeof(err));
    sl_client *admin = NULL;
    if (status == 0 && cli_open_admin(cli, &admin) != CLI_GO_ON)
        admin = NULL;
    if (status == 0 && json) {
        fputs("{\"name\":", stdout);
        cli_write_json_string(stdout, p->name);
        printf(",\"version\":%" PRId64 ",\"file\":", mine->version);
        cli_write_json_string(stdout, mine->file);
        fputs(",\"stages\":[", stdout);
    } else if (status == 0) {
        char when[32];
        format_time(mine->deployed_ms, when, sizeof(when));
        printf("pipeline \"%s\": version %" PRId64 ", deployed %s from %s\n", p->name,
               mine->version, when, mine->file);
    }
    for (size_t i = 0; status == 0 && i < p->nstages; i++) {
        const sl_pl_stage *s = &p->stages[i];
        char group[512], sp[300];
        sl_pipeline_group(p, s, group, sizeof(group));
        int64_t lag = s->kind == SL_PLUGIN_SOURCE ? 0 : stage_lag(admin, group);
        snprintf(sp, sizeof(sp), "%s/%s/", p->name, s->name);
        if (json) {
            fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
            cli_write_json_string(stdout, s->name);
            printf(",\"kind\":\"%s\",\"group\":", sl_plugin_kind_name(s->kind));
            cli_write_json_string(stdout, group);
            printf(",\"lag\":%" PRId64 ",\"instances\":[", lag);
        } else {
            printf("\n%s \"%s\": group %s, lag %" PRId64 " %s\n", sl_plugin_kind_name(s->kind),
                   s->name, group, lag < 0 ? 0 : lag,
                   cli_plural((uint64_t)(lag < 0 ? 0 : lag), "record", "records"));
            printf("  %-8s  %-10s  %-4s  %-7s  %-10s  %-10s  %-7s  %-7s  %-5s  %-8s  %s\n",
                   "INSTANCE", "STATE", "NODE", "PID", "IN", "OUT", "ERRORS", "DLQ", "RETRY", "RESTARTS",
                   "PARTITIONS");
        }
        size_t shown = 0;
        for (size_t k = 0; k < ns; k++) {
            if (strncmp(keys[k], sp, strlen(sp)) != 0)
                continue;
            int index = atoi(keys[k] + strlen(sp));
            if (index >= s->instances)
                continue; /* an instance of an earlier version with more of them */
            if (json) {
                printf("%s{\"instance\":%d,%s", shown ? "," : "", index, values[k] + 1);
            } else {
                char state[32], parts[1024], last[512];
                json_text(values[k], "state", state, sizeof(state));
                json_partitions(values[k], parts, sizeof(parts));
                json_text(values[k], "last_error", last, sizeof(last));
                printf("  %-8d  %-10s  %-4" PRId64 "  %-7" PRId64 "  %-10" PRId64 "  %-10" PRId64
                       "  %-7" PRId64 "  %-7" PRId64 "  %-5" PRId64 "  %-8" PRId64 "  %s\n",
                       index, state, json_number(values[k], "node"), json_number(values[k], "pid"),
                       json_number(values[k], "records_in"), json_number(values[k], "records_out"),
                       json_number(values[k], "errors"), json_number(values[k], "dead_lettered"),
                       json_number(values[k], "retried"), json_number(values[k], "restarts"),
                       parts);
                if (last[0])
                    printf("            last error: %s\n", last);
                char metrics[512];
                json_metrics(values[k], metrics, sizeof(metrics));
                if (metrics[0])
                    printf("            metrics: %s\n", metrics);
                char changelog[512], size[32];
                json_text(values[k], "changelog", changelog, sizeof(changelog));
                int64_t keys = json_number(values[k], "state_keys");
                if (keys > 0 || changelog[0]) {
                    cli_format_size(json_number(values[k], "state_bytes"), size, sizeof(size));
                    printf("            state: %" PRId64 " %s, %s%s%s\n", keys,
                           cli_plural((uint64_t)keys, "key", "keys"), size,
                           changelog[0] ? ", changelog " : "", changelog);
                }
            }
            shown++;
        }
        if (json)
            fputs("]}", stdout);
        else if (shown == 0)
            printf("  (no instance has reported yet)\n");
    }
    if (status == 0 && json)
        fputs("]}\n", stdout);
    if (admin)
        sl_client_destroy(admin);
    sl_topic_list_free(keys, ns);
    sl_topic_list_free(values, ns);
    sl_pipeline_free(p);
    sl_pl_deployed_free(d, n);
    if (status)
        return cli_report_failure(cli, status, err, NULL, "cannot read pipeline status");
    return CLI_OK;
}

/* ---- stop ---- */

static const char stop_help[] =
    "Usage: sluice pipeline stop NAME\n"
    "\n"
    "Stops a running pipeline: its instances commit what they processed, leave their groups\n"
    "and exit. Its topics and committed offsets stay, so deploying it again continues where\n"
    "it stopped.\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_HELP;

static int cmd_stop(struct cli *cli, int argc, char **argv) {
    const char *name;
    int rc = parse(cli, argc, argv, stop_help, NULL, NULL, "pipeline name", &name);
    if (rc != CLI_GO_ON)
        return rc;
    char err[1024] = "";
    int status = sl_pl_stop(cli->broker, name, err, sizeof(err));
    if (status)
        return cli_report_failure(cli, status, err, NULL, "cannot stop pipeline \"%s\"", name);
    printf("pipeline \"%s\" stopped\n", name);
    return CLI_OK;
}

static const struct cli_command pipeline_commands[] = {
    {"deploy", cmd_deploy, "check a pipeline file and run it (or its new version)"},
    {"list", cmd_list, "list running pipelines"},
    {"status", cmd_status, "instances, partitions, lag, records and errors of a pipeline"},
    {"stop", cmd_stop, "stop a pipeline"},
};

static const struct cli_group pipeline_group = {
    "sluice pipeline [OPTIONS] COMMAND [ARGS]...",
    "Runs and inspects pipelines: sources, processors and sinks declared in a Lua file.",
    pipeline_commands,
    sizeof(pipeline_commands) / sizeof(pipeline_commands[0]),
};

int sl_cli_pipeline(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &pipeline_group, argc, argv);
}

/* ---- connector pause, resume, restart ---- */

static const char control_help[] =
    "Usage: sluice connector pause|resume|restart PIPELINE STAGE\n"
    "\n"
    "pause: the stage's instances commit what they processed and stop; they stay stopped\n"
    "(redeploys included) until resumed, and the pipeline's other stages go on.\n"
    "resume: starts them again, from their commits (a source from its stored position).\n"
    "restart: stops and starts them (a failed stage included).\n"
    "Works on any stage: sources, sinks and processors.\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_HELP;

static int control(struct cli *cli, int argc, char **argv, const char *action) {
    static const struct option options[] = {COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(control_help);
        if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    if (argc - optind != 2)
        return cli_usage_error(cli, "give the pipeline and the stage");
    const char *pipeline = argv[optind], *stage = argv[optind + 1];
    char err[1024] = "";
    int status = sl_pl_control(cli->broker, pipeline, stage, action, err, sizeof(err));
    if (status)
        return cli_report_failure(cli, status, err, NULL, "cannot %s %s/%s", action, pipeline,
                                  stage);
    printf("%s/%s: %s\n", pipeline, stage,
           strcmp(action, "pause") == 0    ? "paused"
           : strcmp(action, "resume") == 0 ? "resumed"
                                           : "restarting");
    return CLI_OK;
}

static int cmd_pause(struct cli *cli, int argc, char **argv) {
    return control(cli, argc, argv, "pause");
}

static int cmd_resume(struct cli *cli, int argc, char **argv) {
    return control(cli, argc, argv, "resume");
}

static int cmd_restart(struct cli *cli, int argc, char **argv) {
    return control(cli, argc, argv, "restart");
}

static const struct cli_command connector_commands[] = {
    {"pause", cmd_pause, "stop a stage's instances until resumed"},
    {"resume", cmd_resume, "start a paused stage again"},
    {"restart", cmd_restart, "stop and start a stage's instances"},
};

static const struct cli_group connector_group = {
    "sluice connector [OPTIONS] COMMAND PIPELINE STAGE",
    "Pauses, resumes and restarts the stages of running pipelines (connectors included).",
    connector_commands,
    sizeof(connector_commands) / sizeof(connector_commands[0]),
};

int sl_cli_connector(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &connector_group, argc, argv);
}

/* ---- dlq replay ---- */

static const char replay_help[] =
    "Usage: sluice dlq replay TOPIC\n"
    "\n"
    "Sends the records of dead-letter topic TOPIC back to the topic and partition they first\n"
    "failed on (their sluice.original_topic and sluice.original_partition headers), without\n"
    "the sluice.* routing headers, so they are processed again. What was replayed is\n"
    "remembered (consumer group sluice.dlq-replay): a second run sends only newer records.\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_HELP;

static int cmd_replay(struct cli *cli, int argc, char **argv) {
    const char *topic;
    int rc = parse(cli, argc, argv, replay_help, NULL, NULL, "topic", &topic);
    if (rc != CLI_GO_ON)
        return rc;
    char err[1024] = "";
    uint64_t sent = 0, skipped = 0;
    int status = sl_pl_dlq_replay(cli->broker, topic, &sent, &skipped, err, sizeof(err));
    if (status)
        return cli_report_failure(cli, status, err, topic, "cannot replay %s", topic);
    printf("replayed %" PRIu64 " %s from %s\n", sent, cli_plural(sent, "record", "records"),
           topic);
    if (skipped)
        printf("left %" PRIu64 " %s without a sluice.original_topic header\n", skipped,
               cli_plural(skipped, "record", "records"));
    return CLI_OK;
}

static const struct cli_command dlq_commands[] = {
    {"replay", cmd_replay, "send dead-lettered records back to their original topic"},
};

static const struct cli_group dlq_group = {
    "sluice dlq [OPTIONS] COMMAND [ARGS]...",
    "Works with dead-letter topics.",
    dlq_commands,
    sizeof(dlq_commands) / sizeof(dlq_commands[0]),
};

int sl_cli_dlq(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &dlq_group, argc, argv);
}

/* ---- plugin list ---- */

static const char plugin_list_help[] =
    "Usage: sluice plugin list [--plugin-path DIRS] [--json]\n"
    "\n"
    "Lists every plugin (.so) found on the plugin path: its name, kind, version, ABI version\n"
    "and file; a file that is not a usable plugin is listed with the reason.\n"
    "\n"
    "Options:\n"
    "      --plugin-path DIRS ':'-separated folders searched before the installed and built\n"
    "                         ones\n"
    "      --json             print a JSON array of {name, kind, version, abi, file} (or\n"
    "                         {file, error})\n" COMMON_OPTIONS_HELP;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_plugin_list(struct cli *cli, int argc, char **argv) {
    bool json = false;
    const char *plugin_path = NULL;
    int rc = parse(cli, argc, argv, plugin_list_help, &json, &plugin_path, NULL, NULL);
    if (rc != CLI_GO_ON)
        return rc;
    char pathbuf[8192];
    const char *search = sl_plugin_search_path(plugin_path, pathbuf, sizeof(pathbuf));
    size_t shown = 0;
    if (json)
        fputs("[", stdout);
    else
        printf("%-20s  %-9s  %-10s  %-3s  %s\n", "NAME", "KIND", "VERSION", "ABI", "FILE");
    for (const char *p = search; *p;) {
        const char *end = strchr(p, ':');
        size_t dl = end ? (size_t)(end - p) : strlen(p);
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%.*s", (int)dl, p);
        p += dl + (end != NULL);
        DIR *dh = dl ? opendir(dir) : NULL;
        if (dh == NULL)
            continue;
        char *names[512];
        size_t nn = 0;
        struct dirent *e;
        while ((e = readdir(dh)) != NULL && nn < 512) {
            size_t len = strlen(e->d_name);
            if (len > 3 && strcmp(e->d_name + len - 3, ".so") == 0)
                names[nn++] = strdup(e->d_name);
        }
        closedir(dh);
        qsort(names, nn, sizeof(*names), cmp_str);
        for (size_t i = 0; i < nn; i++) {
            char file[PATH_MAX * 2], err[1024];
            snprintf(file, sizeof(file), "%s/%s", dir, names[i]);
            free(names[i]);
            sl_plugin_lib *lib;
            int status = sl_plugin_load(file, &lib, err, sizeof(err));
            if (json) {
                fputs(shown ? ",{" : "{", stdout);
                if (status == 0) {
                    fputs("\"name\":", stdout);
                    cli_write_json_string(stdout, lib->desc.name);
                    printf(",\"kind\":\"%s\",\"version\":", sl_plugin_kind_name(lib->desc.kind));
                    cli_write_json_string(stdout, lib->desc.version ? lib->desc.version : "");
                    printf(",\"abi\":%u,\"file\":", lib->desc.abi_version);
                    cli_write_json_string(stdout, file);
                } else {
                    fputs("\"file\":", stdout);
                    cli_write_json_string(stdout, file);
                    fputs(",\"error\":", stdout);
                    cli_write_json_string(stdout, err);
                }
                fputs("}", stdout);
            } else if (status == 0) {
                printf("%-20s  %-9s  %-10s  %-3u  %s\n", lib->desc.name,
                       sl_plugin_kind_name(lib->desc.kind),
                       lib->desc.version ? lib->desc.version : "-", lib->desc.abi_version, file);
            } else {
                printf("%-20s  %-9s  %-10s  %-3s  %s\n    %s\n", "(refused)", "-", "-", "-", file,
                       err);
            }
            if (status == 0)
                sl_plugin_unload(lib);
            shown++;
        }
    }
    if (json)
        fputs("]\n", stdout);
    else if (shown == 0)
        printf("(no plugins in %s)\n", search);
    return CLI_OK;
}

static const struct cli_command plugin_commands[] = {
    {"list", cmd_plugin_list, "list the plugins found on the plugin path"},
};

static const struct cli_group plugin_group = {
    "sluice plugin [OPTIONS] COMMAND [ARGS]...",
    "Inspects plugins (C processors, sources and sinks).",
    plugin_commands,
    sizeof(plugin_commands) / sizeof(plugin_commands[0]),
};

int sl_cli_plugin(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &plugin_group, argc, argv);
}

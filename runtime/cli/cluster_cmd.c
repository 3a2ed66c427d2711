/* sluice cluster status: which brokers the cluster has, whether each answers, and which node
 * leads the metadata quorum. */
#include "cli/cluster_cmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { OPT_FLAG = 256 };

static const char status_help[] =
    "Usage: sluice cluster status [--json]\n"
    "\n"
    "Lists the brokers registered in the cluster (as the broker given with -b knows them), asks\n"
    "each whether it is up, and names the node that leads the metadata quorum. A broker started\n"
    "without --controllers is a cluster of one.\n"
    "\n"
    "LEADS is how many partitions of user topics each broker leads.\n"
    "\n"
    "Options:\n"
    "      --json             print a JSON object: controller, voters, and nodes with node_id,\n"
    "                         url, status (up or down), the controller each one sees and\n"
    "                         partitions_led (-1 when down)\n" COMMON_OPTIONS_HELP;

/* For a tcp://IPv4:PORT address: whether anything accepts a connection there within a second.
 * A plain socket first, so that a broker that is down costs no client set-up. Other
 * addresses: true (the probe proper decides). */
static bool tcp_reachable(const char *url) {
    char host[64];
    unsigned port;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (sscanf(url, "tcp://%63[0-9.]:%u", host, &port) != 2 || port > 65535 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return true;
    sa.sin_port = htons((uint16_t)port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true;
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (!ok && errno == EINPROGRESS) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof(err);
        ok = poll(&pfd, 1, 1000) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    close(fd);
    return ok;
}

/* The partitions of user topics that broker 'node' leads, as 'cl' (connected to it) says. */
static int64_t partitions_led(sl_client *cl, int32_t node) {
    char **names;
    size_t n;
    int64_t led = 0;
    if (sl_topic_list(cl, &names, &n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        sl_topic_info *t;
        char err[256];
        if (sl_topic_describe(cl, names[i], &t, err, sizeof(err)) != 0)
            continue;
        for (int32_t p = 0; p < t->npartitions; p++)
            led += t->partitions[p].leader == node;
        sl_topic_info_free(t);
    }
    sl_topic_list_free(names, n);
    return led;
}

/* Asks the broker at 'url' for its view and how many partitions it leads; false when it does
 * not answer within a second. */
static bool probe(const struct cli *cli, const char *url, int32_t *controller, int64_t *led) {
    if (!tcp_reachable(url))
        return false;
    struct cli one = *cli;
    one.broker = url;
    sl_conf *conf = cli_broker_conf_with(&one, "request.timeout.ms", "1000");
    if (conf == NULL)
        return false;
    char err[256];
    sl_client *cl;
    if (sl_client_new(conf, &cl, err, sizeof(err)) != 0) {
        sl_conf_destroy(conf);
        return false;
    }
    sl_cluster_info info;
    bool up = sl_cluster_describe(cl, &info) == 0;
    if (up) {
        *controller = info.controller;
        *led = partitions_led(cl, info.node_id);
        sl_cluster_info_free(&info);
    }
    sl_client_destroy(cl);
    return up;
}

/* The options of a command that takes one flag ('--name') besides the common ones, and no
 * operands. */
static int parse_flag_only(struct cli *cli, int argc, char **argv, const char *help,
                           const char *name, bool *flag) {
    const struct option options[] = {
        {name, no_argument, NULL, OPT_FLAG}, COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, rc;
    cli_start_options();
    while ((opt = getopt_long(argc, argv, ":b:X:h", options, NULL)) != -1) {
        if (opt == 'h')
            return cli_show_help(help);
        if (opt == OPT_FLAG)
            *flag = true;
        else if ((rc = cli_common_option(cli, opt, argv)) != CLI_GO_ON)
            return rc;
    }
    return cli_no_operands(cli, argc, argv);
}

static int cmd_status(struct cli *cli, int argc, char **argv) {
    bool json = false;
    int rc = parse_flag_only(cli, argc, argv, status_help, "json", &json);
    if (rc != CLI_GO_ON)
        return rc;
    sl_client *admin;
    if ((rc = cli_open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    sl_cluster_info info;
    int status = sl_cluster_describe(admin, &info);
    sl_client_destroy(admin);
    if (status)
        return cli_report_failure(cli, status, NULL, NULL, "cannot read the cluster's members");
    bool *up = calloc(info.nnodes ? info.nnodes : 1, sizeof(*up));
    int32_t *sees = calloc(info.nnodes ? info.nnodes : 1, sizeof(*sees));
    int64_t *led = calloc(info.nnodes ? info.nnodes : 1, sizeof(*led));
    if (up == NULL || sees == NULL || led == NULL) {
        free(up);
        free(sees);
        free(led);
        sl_cluster_info_free(&info);
        return cli_fail("%s", sl_strerror(SL_ENOMEM));
    }
    size_t nup = 0;
    for (size_t i = 0; i < info.nnodes; i++)
        nup += up[i] = probe(cli, info.nodes[i].url, &sees[i], &led[i]);
    if (json) {
        printf("{\"node_id\":%" PRId32 ",\"controller\":%" PRId32 ",\"voters\":%zu,\"nodes\":[",
               info.node_id, info.controller, info.voters);
        for (size_t i = 0; i < info.nnodes; i++) {
            printf("%s{\"node_id\":%" PRId32 ",\"url\":", i ? "," : "", info.nodes[i].node_id);
            cli_write_json_string(stdout, info.nodes[i].url); /* as a broker reported it */
            printf(",\"status\":\"%s\",\"controller\":%" PRId32 ",\"partitions_led\":%" PRId64
                   "}",
                   up[i] ? "up" : "down", up[i] ? sees[i] : 0, up[i] ? led[i] : -1);
        }
        printf("]}\n");
    } else {
        if (info.voters == 0)
            printf("a single node (no --controllers)\n");
        else if (info.controller)
            printf("metadata quorum: %zu controllers, node %" PRId32 " leads\n", info.voters,
                   info.controller);
        else
            printf("metadata quorum: %zu controllers, no leader (fewer than a majority up?)\n",
                   info.voters);
        printf("%zu of %zu brokers up\n\n", nup, info.nnodes);
        printf("%-6s %-32s %-6s %-6s %s\n", "NODE", "ADDRESS", "STATUS", "LEADS", "ROLE");
        for (size_t i = 0; i < info.nnodes; i++) {
            char leads[24] = "-";
            if (up[i] && led[i] >= 0)
                snprintf(leads, sizeof(leads), "%" PRId64, led[i]);
            printf("%-6" PRId32 " %-32s %-6s %-6s %s\n", info.nodes[i].node_id, info.nodes[i].url,
                   up[i] ? "up" : "down", leads,
                   info.voters == 0 ? "broker"
                   : info.nodes[i].node_id == info.controller ? "controller (leader), broker"
                                                             : "controller, broker");
        }
    }
    free(up);
    free(sees);
    free(led);
    sl_cluster_info_free(&info);
    return CLI_OK;
}

static const char rebalance_help[] =
    "Usage: sluice cluster rebalance [--wait]\n"
    "\n"
    "Places every partition again over the brokers that are up, as a new topic would be, and\n"
    "moves the replicas that differ: a broker just added takes its share. New replicas copy the\n"
    "partition while the old ones serve; once they are in sync the old ones are dropped and the\n"
    "first new replica leads. Producers and consumers go on meanwhile.\n"
    "\n"
    "Options:\n"
    "      --wait             wait until every move is done, printing progress\n" COMMON_OPTIONS_HELP;

static int cmd_rebalance(struct cli *cli, int argc, char **argv) {
    bool wait = false;
    int rc = parse_flag_only(cli, argc, argv, rebalance_help, "wait", &wait);
    if (rc != CLI_GO_ON)
        return rc;
    sl_client *admin;
    if ((rc = cli_open_admin(cli, &admin)) != CLI_GO_ON)
        return rc;
    char errbuf[256] = "";
    int32_t moving = 0, last = -1;
    int status = sl_cluster_rebalance_replicas(admin, &moving, errbuf, sizeof(errbuf));
    if (status == 0)
        printf("%" PRId32 " %s moving\n", moving, cli_plural((uint64_t)moving, "partition is",
                                                            "partitions are"));
    /* Asking again starts nothing new while the placement is the same: it counts. */
    while (status == 0 && wait && moving > 0) {
        if (moving != last && last >= 0)
            printf("%" PRId32 " still moving\n", moving);
        fflush(stdout);
        last = moving;
        usleep(500 * 1000);
        status = sl_cluster_rebalance_replicas(admin, &moving, errbuf, sizeof(errbuf));
    }
    if (status == 0 && wait)
        printf("every partition is where it belongs\n");
    sl_client_destroy(admin);
    if (status)
        return cli_report_failure(cli, status, errbuf, NULL, "cannot rebalance the cluster");
    return CLI_OK;
}

static const struct cli_command cluster_commands[] = {
    {"status", cmd_status, "the brokers, whether they are up, and the quorum's leader"},
    {"rebalance", cmd_rebalance, "move replicas so every broker holds its share"},
};

static const struct cli_group cluster_group = {
    "sluice cluster [OPTIONS] COMMAND [ARGS]...",
    "Shows the nodes of a cluster and moves replicas between them.",
    cluster_commands,
    sizeof(cluster_commands) / sizeof(cluster_commands[0]),
};

int sl_cli_cluster(struct cli *cli, int argc, char **argv) {
    return cli_run_group(cli, &cluster_group, argc, argv);
}

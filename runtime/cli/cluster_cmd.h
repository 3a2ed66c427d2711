/* sluice cluster: the brokers of a cluster and the metadata quorum. */
#ifndef SL_CLI_CLUSTER_CMD_H
#define SL_CLI_CLUSTER_CMD_H

#include "cli/cli.h"

/* The 'cluster' command: dispatches to its subcommands. */
int sl_cli_cluster(struct cli *cli, int argc, char **argv);

#endif

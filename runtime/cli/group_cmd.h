/* sluice group: list, describe, reset and delete consumer groups. */
#ifndef SL_CLI_GROUP_CMD_H
#define SL_CLI_GROUP_CMD_H

#include "cli/cli.h"

/* The 'group' command: dispatches to its subcommands. */
int sl_cli_group(struct cli *cli, int argc, char **argv);

#endif

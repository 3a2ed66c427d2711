/* sluice pipeline (deploy, list, status, stop), connector (pause, resume, restart), dlq (replay)
 * and plugin (list). */
#ifndef SL_CLI_PIPELINE_CMD_H
#define SL_CLI_PIPELINE_CMD_H

#include "cli/cli.h"

int sl_cli_pipeline(struct cli *cli, int argc, char **argv);
int sl_cli_dlq(struct cli *cli, int argc, char **argv);
int sl_cli_connector(struct cli *cli, int argc, char **argv);
int sl_cli_plugin(struct cli *cli, int argc, char **argv);

#endif

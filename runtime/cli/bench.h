/* sluice bench: produce and consume benchmarks against a running broker. */
#ifndef SL_CLI_BENCH_H
#define SL_CLI_BENCH_H

#include "cli/cli.h"

/* The 'bench' command: dispatches to "produce" and "consume". Returns the exit status. */
int sl_cli_bench(struct cli *cli, int argc, char **argv);

#endif

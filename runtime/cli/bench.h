/* sluice bench: produce and consume benchmarks against a running broker. */
#ifndef SL_CLI_BENCH_H
#define SL_CLI_BENCH_H

/* Runs "sluice bench ...": argv[0] is "bench", the rest its options and subcommand. 'broker' is
 * the URL chosen so far (-b before the command, $SLUICE_BROKER, or the default); a -b after
 * "bench" overrides it. Borrowed. Returns the exit status: 0 success, 1 failure, 2 usage. */
int sl_cli_bench(int argc, char **argv, const char *broker);

#endif

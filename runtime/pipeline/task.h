/* One instance of one pipeline stage, run in its own process: a member of the stage's consumer
 * group that feeds its partitions' records to a C plugin or a Lua script, sends what they emit,
 * routes what fails to retry and dead-letter topics, and commits input offsets only after the
 * outputs made from them are acknowledged (at least once). The state the plugin or script keeps
 * per input partition goes to the stage's changelog topic with the input positions before the
 * offsets move, and comes back with them when a partition is assigned (pipeline/state.h). */
#ifndef SL_PIPELINE_TASK_H
#define SL_PIPELINE_TASK_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_task_conf {
    const char *broker;        /* bootstrap.servers */
    const char *local_broker;  /* local.broker ("ID=ipc://..."): this node; NULL: none */
    int node_id;               /* the node it runs on (shown in its status) */
    const char *data_dir;      /* the node's data directory (crash markers live there) */
    const char *pipeline_file; /* the pipeline file as deployed (its folder resolves scripts) */
    const char *source_file;   /* the deployed text of it; NULL: pipeline_file itself */
    const char *stage;
    int instance;
    const char *plugin_path;   /* plugin.path; NULL: the default */
    int restarts;              /* how often the supervisor restarted this instance */
    int64_t version;           /* the pipeline's version (its offset in __pipelines) */
    volatile sig_atomic_t *stop; /* set by a signal handler: finish, commit, leave */
} sl_task_conf;

/* Runs the instance until *stop. Returns the process exit status: 0 after a clean stop, 1 when
 * the instance failed (logged) and should be restarted, 2 for a bad configuration,
 * SL_TASK_EXIT_STOPPED when errors_tolerance = "none" met a failed record (not restarted). */
#define SL_TASK_EXIT_STOPPED 3
int sl_task_run(const sl_task_conf *conf);

/* What a task writes before each plugin call and clears after: the supervisor reads it when the
 * process dies of a crash, to find a record that kills every instance that touches it. The file
 * is mapped shared, so it survives the crash of its writer. */
typedef struct sl_task_inflight {
    volatile uint32_t active;
    int32_t partition;
    int64_t offset;
    int64_t started_ms; /* CLOCK_MONOTONIC: the supervisor kills a call stuck too long */
    char topic[256];
} sl_task_inflight;

/* <data_dir>/pipelines/tasks/<pipeline>.<stage>.<instance>.v<version>.inflight (one per
 * version: an old instance draining beside its successor keeps its own) and
 * <data_dir>/pipelines/tasks/<pipeline>.<stage>.poison (lines "topic partition offset" of
 * records that crashed the stage 3 times). */
void sl_task_inflight_path(const char *data_dir, const char *pipeline, const char *stage,
                           int instance, int64_t version, char *buf, size_t len);
void sl_task_poison_path(const char *data_dir, const char *pipeline, const char *stage,
                         char *buf, size_t len);

#endif

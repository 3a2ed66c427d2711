/* The pipeline supervisor inside sluiced: follows __pipelines and keeps one child process per
 * stage instance running (in a cluster, per instance placed on this node: instance k of a stage
 * goes to the (hash(pipeline/stage) + k)-th of the nodes that answer, and instances move when a
 * node stops or starts answering), restarting crashed ones with backoff, rolling them over to a new
 * version on redeploy, pausing, resuming and restarting single stages, killing a call stuck
 * past its stage's call_timeout, and sending a record that crashes its stage three times to
 * the dead-letter topic. Plugin code never runs in the broker's process. */
#ifndef SL_PIPELINE_SUPERVISOR_H
#define SL_PIPELINE_SUPERVISOR_H

#include <stdbool.h>

typedef struct sl_supervisor_conf {
    const char *broker;      /* the node's own native address */
    const char *data_dir;
    const char *plugin_path; /* NULL: the default */
    const char *log_level;   /* passed on to the instances */
    int node_id;             /* this node's */
    const char *ipc;         /* the node's ipc:// address, where instances reach it; NULL:
                              * they use 'broker' */
    bool clustered;          /* a node of a cluster: it runs its share of the instances */
} sl_supervisor_conf;

typedef struct sl_supervisor sl_supervisor;

/* Starts following __pipelines (which must exist) on a thread of its own. */
int sl_supervisor_start(const sl_supervisor_conf *conf, sl_supervisor **out);

/* Stops every instance (SIGTERM: they commit and leave their groups; SIGKILL after 15 s) and
 * the thread. */
void sl_supervisor_stop(sl_supervisor *s);

#endif

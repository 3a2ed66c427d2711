/* The metadata quorum: the controllers of a cluster keep one replicated log with Raft (Debian's
 * libraft, canonical raft 0.15, over its own TCP transport on --controller-listen). Each
 * committed entry is handed, in log order, to the owner's apply function on every controller,
 * the proposer's included; a restarted controller gets every entry again from the start.
 *
 * libraft runs on one libuv loop thread of its own; every other thread talks to it through a
 * queue, so the functions here may be called from any thread (sl_quorum_stop excepted). Traps of libraft 0.15 this
 * module handles: entries are padded to a multiple of 8 bytes (otherwise a restart drops
 * committed ones), addresses are numeric IPv4, and a disk error stops the node (crash-stop)
 * rather than let it run on with a log it cannot write. */
#ifndef SL_CLUSTER_QUORUM_H
#define SL_CLUSTER_QUORUM_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_quorum sl_quorum;

typedef struct sl_quorum_peer {
    int32_t id;
    char address[64]; /* numeric "IPv4:port" */
} sl_quorum_peer;

/* Called on the quorum's thread for each committed entry, in log order; 'data' is borrowed. */
typedef void (*sl_quorum_apply_fn)(void *arg, const uint8_t *data, size_t len);

typedef struct sl_quorum_conf {
    int32_t id;                  /* this controller, one of 'peers' */
    const sl_quorum_peer *peers; /* every voter, this one included */
    size_t npeers;
    const char *dir;             /* the Raft log and term/vote files */
    sl_quorum_apply_fn apply;
    void *arg;
} sl_quorum_conf;

/* Parses "1@127.0.0.1:9500,2@127.0.0.1:9501" into at most 'max' peers. SL_EINVAL with a
 * sentence in errbuf (a bad id, a host that is not a numeric IPv4 address, a repeated id). */
int sl_quorum_parse_peers(const char *text, sl_quorum_peer *peers, size_t max, size_t *n,
                          char *errbuf, size_t errlen);

/* Starts this controller: joins (or, the first time, bootstraps) the configuration of
 * 'peers' and begins to take part in elections. */
int sl_quorum_start(const sl_quorum_conf *conf, sl_quorum **out, char *errbuf, size_t errlen);

/* Appends 'data' to the replicated log and waits until it is committed and applied here.
 * SL_ENOTLEADER when this controller is not the leader (ask sl_quorum_leader who is),
 * SL_ETIMEDOUT, SL_ESTOPPED. */
int sl_quorum_propose(sl_quorum *q, const void *data, size_t len, int timeout_ms);

/* The current leader's id (0 when none is known) and whether it is this controller. */
int32_t sl_quorum_leader(sl_quorum *q);

/* The index of the last entry applied here: a node whose index has reached the one the leader
 * reported has applied everything the leader had (indexes are positions in the one log). */
uint64_t sl_quorum_applied(sl_quorum *q);

/* The index of the last entry in this node's log (as of the last tick, every 100 ms). On the
 * leader it covers every committed entry: once applied that far, a node knows all the leader
 * knew. */
uint64_t sl_quorum_last_index(sl_quorum *q);

/* Leaves the quorum and frees it. Call once nothing else uses it (no propose under way). */
void sl_quorum_stop(sl_quorum *q);

#endif

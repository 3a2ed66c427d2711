#include "sluice/err.h"

struct err_desc {
    const char *name;
    const char *text;
};

/* Indexed by -status. */
static const struct err_desc err_table[] = {
    {"SL_OK", "success"},
    {"SL_EINVAL", "invalid argument"},
    {"SL_ENOMEM", "out of memory"},
    {"SL_EIO", "input/output error"},
    {"SL_ECORRUPT", "corrupt data"},
    {"SL_ENOENT", "does not exist"},
    {"SL_EEXIST", "already exists"},
    {"SL_ETOOLARGE", "record batch is larger than max.message.bytes"},
    {"SL_ETIMEDOUT", "timed out"},
    {"SL_ECLOSED", "closed"},
    {"SL_EPROTO", "malformed protocol message"},
    {"SL_ECONNREFUSED", "cannot reach broker"},
    {"SL_ERANGE", "offset out of range"},
    {"SL_ENOTLEADER", "not the leader for this partition"},
    {"SL_EUNSUPPORTED", "not supported"},
    {"SL_EFULL", "buffer full"},
    {"SL_ERETRY", "transient failure, retry"},
    {"SL_EREJECT", "record rejected"},
    {"SL_EBADCONFIG", "bad configuration"},
    {"SL_ESTOPPED", "broker is shutting down"},
    {"SL_EOUTOFORDER", "out-of-order sequence number: a batch before it is missing"},
    {"SL_EFENCED", "producer fenced: a newer instance with the same producer id exists"},
    {"SL_EUNKNOWNMEMBER", "unknown group member: it left, expired or never joined"},
    {"SL_EGENERATION", "stale group generation: the group has rebalanced since"},
    {"SL_EREBALANCE", "the group is rebalancing: join again"},
    {"SL_EGROUPPROTOCOL", "no assignment strategy in common with the group's other members"},
    {"SL_EGROUPNOTEMPTY", "the group has active members"},
    {"SL_EUNSTABLE", "an undecided transaction holds offsets of the group: ask again"},
    {"SL_ENOTENOUGHREPLICAS", "not enough in-sync replicas for acks=all"},
    {"SL_ENOTCOORD", "this broker is not the group's coordinator"},
    {"SL_ECOORDLOADING", "the group's coordinator is loading its offsets"},
};

const char *sl_strerror(int status) {
    if (status > 0 || status < SL_E_LAST)
        return "unknown error";
    return err_table[-status].text;
}

const char *sl_errname(int status) {
    if (status > 0 || status < SL_E_LAST)
        return "SL_E?";
    return err_table[-status].name;
}

/* Sluice status codes, shared by the client API and the plugin ABI.
 *
 * Every function that can fail returns an int: 0 on success or one of the negative SL_E* codes
 * below. The numbers are part of the native wire protocol and the plugin ABI: append only. */
#ifndef SLUICE_ERR_H
#define SLUICE_ERR_H

#define SL_OK 0
#define SL_EINVAL -1        /* invalid argument or request */
#define SL_ENOMEM -2        /* out of memory */
#define SL_EIO -3           /* an operating-system I/O call failed */
#define SL_ECORRUPT -4      /* data on disk or on the wire failed a check (CRC, length, layout) */
#define SL_ENOENT -5        /* no such topic, partition or object */
#define SL_EEXIST -6        /* it already exists */
#define SL_ETOOLARGE -7     /* record batch larger than max.message.bytes */
#define SL_ETIMEDOUT -8     /* the operation did not finish in time */
#define SL_ECLOSED -9       /* the object or connection is closed */
#define SL_EPROTO -10       /* malformed or unexpected protocol message */
#define SL_ECONNREFUSED -11 /* the broker could not be reached */
#define SL_ERANGE -12       /* offset out of range */
#define SL_ENOTLEADER -13   /* this broker does not lead that partition */
#define SL_EUNSUPPORTED -14 /* unknown request type or feature */
#define SL_EFULL -15        /* a bounded buffer or queue is full */
#define SL_ERETRY -16       /* transient failure: try again (plugin callbacks) */
#define SL_EREJECT -17      /* this record is bad: route it to the dead-letter topic */
#define SL_EBADCONFIG -18   /* unknown configuration key or bad value */
#define SL_ESTOPPED -19     /* the broker is shutting down */
#define SL_EOUTOFORDER -20  /* idempotent producer: a batch's sequence leaves a gap */
#define SL_EFENCED -21      /* idempotent producer: a newer epoch of this producer exists */
#define SL_EUNKNOWNMEMBER -22 /* consumer group: no such member (expired or never joined) */
#define SL_EGENERATION -23    /* consumer group: the member's generation is not the group's */
#define SL_EREBALANCE -24     /* consumer group: a rebalance is under way; join again */
#define SL_EGROUPPROTOCOL -25 /* consumer group: the member's protocols match no other member's */
#define SL_EGROUPNOTEMPTY -26 /* consumer group: it has live members */
#define SL_EUNSTABLE -27      /* consumer group: an undecided transaction holds offsets for it */
#define SL_ENOTENOUGHREPLICAS -28 /* acks=all: fewer in-sync replicas than min.insync.replicas */
#define SL_ENOTCOORD -29       /* consumer group: this broker does not coordinate it; find it again */
#define SL_ECOORDLOADING -30   /* consumer group: its coordinator is loading its offsets; retry */
#define SL_E_LAST -30

#ifdef __cplusplus
extern "C" {
#endif

/* A short sentence describing 'status' ("does not exist"). Never NULL; static storage. */
__attribute__((visibility("default"))) const char *sl_strerror(int status);

/* The symbolic name of 'status' ("SL_ENOENT"). Never NULL; static storage. */
__attribute__((visibility("default"))) const char *sl_errname(int status);

#ifdef __cplusplus
}
#endif
#endif

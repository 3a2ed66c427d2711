#include "log/producer_state.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

typedef struct kept_batch {
    int32_t first_seq, last_seq;
    int64_t first_offset, last_offset;
} kept_batch;

typedef struct entry {
    int64_t pid; /* -1: free slot */
    int16_t epoch;
    int nkept;
    kept_batch kept[SL_PRODUCER_BATCHES_KEPT]; /* oldest first */
} entry;

/* Open addressing on the producer id: producers are never removed, so no tombstones. */
struct sl_producer_state {
    entry *slots;
    size_t cap; /* a power of two */
    size_t count;
};

static size_t slot_of(int64_t pid, size_t cap) {
    uint64_t h = (uint64_t)pid * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (cap - 1);
}

static entry *lookup(const sl_producer_state *ps, int64_t pid) {
    for (size_t i = slot_of(pid, ps->cap);; i = (i + 1) & (ps->cap - 1)) {
        if (ps->slots[i].pid == pid || ps->slots[i].pid < 0)
            return &ps->slots[i];
    }
}

static int grow(sl_producer_state *ps) {
    size_t cap = ps->cap * 2;
    entry *slots = malloc(cap * sizeof(*slots));
    if (slots == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        slots[i].pid = -1;
    sl_producer_state old = *ps;
    ps->slots = slots;
    ps->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].pid >= 0)
            *lookup(ps, old.slots[i].pid) = old.slots[i];
    free(old.slots);
    return 0;
}

int sl_producer_state_new(sl_producer_state **out) {
    sl_producer_state *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return SL_ENOMEM;
    ps->cap = 16;
    ps->slots = malloc(ps->cap * sizeof(*ps->slots));
    if (ps->slots == NULL) {
        free(ps);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < ps->cap; i++)
        ps->slots[i].pid = -1;
    *out = ps;
    return 0;
}

void sl_producer_state_free(sl_producer_state *ps) {
    if (ps) {
        free(ps->slots);
        free(ps);
    }
}

size_t sl_producer_state_count(const sl_producer_state *ps) {
    return ps->count;
}

/* Sequences wrap from INT32_MAX to 0, as in Kafka. */
static int32_t seq_add(int32_t seq, int32_t n) {
    int64_t s = (int64_t)seq + n;
    return (int32_t)(s > INT32_MAX ? s - INT32_MAX - 1 : s);
}

int sl_producer_state_check(const sl_producer_state *ps, const sl_batch_header *h,
                            int64_t *first_offset, int64_t *last_offset) {
    const entry *e = lookup(ps, h->producer_id);
    if (e->pid < 0)
        return 0; /* a producer we do not know (new, or its state expired): take it as is */
    if (h->producer_epoch < e->epoch)
        return SL_EFENCED;
    if (h->base_sequence < 0)
        return 0; /* written for the producer by its coordinator: no sequence to check */
    if (h->producer_epoch > e->epoch)
        return h->base_sequence == 0 ? 0 : SL_EOUTOFORDER;
    int32_t last_seq = seq_add(h->base_sequence, h->last_offset_delta);
    for (int i = 0; i < e->nkept; i++) {
        const kept_batch *k = &e->kept[i];
        if (k->first_seq == h->base_sequence && k->last_seq == last_seq) {
            *first_offset = k->first_offset;
            *last_offset = k->last_offset;
            return 1;
        }
    }
    if (e->nkept == 0 || h->base_sequence == seq_add(e->kept[e->nkept - 1].last_seq, 1))
        return 0;
    return SL_EOUTOFORDER;
}

int sl_producer_state_update(sl_producer_state *ps, const sl_batch_header *h) {
    if (h->base_sequence < 0)
        return sl_producer_state_bump_epoch(ps, h->producer_id, h->producer_epoch);
    entry *e = lookup(ps, h->producer_id);
    if (e->pid < 0) {
        /* Keep the table at most half full so probes stay short. */
        if ((ps->count + 1) * 2 > ps->cap) {
            int rc = grow(ps);
            if (rc)
                return rc;
            e = lookup(ps, h->producer_id);
        }
        memset(e, 0, sizeof(*e));
        e->pid = h->producer_id;
        e->epoch = h->producer_epoch;
        ps->count++;
    }
    if (h->producer_epoch != e->epoch) {
        e->epoch = h->producer_epoch;
        e->nkept = 0;
    }
    if (e->nkept == SL_PRODUCER_BATCHES_KEPT) {
        memmove(&e->kept[0], &e->kept[1], (SL_PRODUCER_BATCHES_KEPT - 1) * sizeof(kept_batch));
        e->nkept--;
    }
    e->kept[e->nkept++] = (kept_batch){h->base_sequence,
                                       seq_add(h->base_sequence, h->last_offset_delta),
                                       h->base_offset, h->base_offset + h->last_offset_delta};
    return 0;
}

int sl_producer_state_bump_epoch(sl_producer_state *ps, int64_t pid, int16_t epoch) {
    entry *e = lookup(ps, pid);
    if (e->pid >= 0 && epoch <= e->epoch)
        return 0;
    if (e->pid < 0) {
        if ((ps->count + 1) * 2 > ps->cap) {
            int rc = grow(ps);
            if (rc)
                return rc;
            e = lookup(ps, pid);
        }
        memset(e, 0, sizeof(*e));
        e->pid = pid;
        ps->count++;
    }
    e->epoch = epoch;
    e->nkept = 0;
    return 0;
}

int sl_producer_state_last_offset(const sl_producer_state *ps, int64_t pid, int64_t *last_offset) {
    if (pid < 0)
        return 0;
    const entry *e = lookup(ps, pid);
    if (e->pid < 0 || e->nkept == 0)
        return 0;
    *last_offset = e->kept[e->nkept - 1].last_offset;
    return 1;
}

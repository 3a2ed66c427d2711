#include "log/txn_index.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

void sl_txn_index_init(sl_txn_index *x) {
    memset(x, 0, sizeof(*x));
}

void sl_txn_index_free(sl_txn_index *x) {
    free(x->open);
    free(x->aborted);
    memset(x, 0, sizeof(*x));
}

static int push(sl_txn_range **v, size_t *n, size_t *cap, const sl_txn_range *r) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        sl_txn_range *p = realloc(*v, c * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = *r;
    return 0;
}

static sl_txn_range *find_open(const sl_txn_index *x, int64_t pid) {
    for (size_t i = 0; i < x->nopen; i++)
        if (x->open[i].producer_id == pid)
            return &x->open[i];
    return NULL;
}

int sl_txn_index_note(sl_txn_index *x, const sl_batch_header *h, int control_type) {
    if (!(h->attributes & SL_BATCH_ATTR_TRANSACTIONAL) || h->producer_id < 0)
        return 0;
    sl_txn_range *o = find_open(x, h->producer_id);
    if (!(h->attributes & SL_BATCH_ATTR_CONTROL)) {
        if (o != NULL)
            return 0;
        sl_txn_range r = {h->producer_id, h->producer_epoch, h->base_offset, -1};
        return push(&x->open, &x->nopen, &x->open_cap, &r);
    }
    if (o == NULL)
        return 0; /* a marker for a partition the transaction never wrote: nothing to end */
    sl_txn_range ended = *o;
    *o = x->open[--x->nopen];
    if (control_type != SL_CONTROL_ABORT)
        return 0;
    ended.last_offset = h->base_offset;
    return push(&x->aborted, &x->naborted, &x->aborted_cap, &ended);
}

int64_t sl_txn_index_first_unstable(const sl_txn_index *x, int64_t end) {
    int64_t first = end;
    for (size_t i = 0; i < x->nopen; i++)
        if (x->open[i].first_offset < first)
            first = x->open[i].first_offset;
    return first;
}

bool sl_txn_index_open_of(const sl_txn_index *x, int64_t pid, sl_txn_range *out) {
    const sl_txn_range *o = find_open(x, pid);
    if (o && out)
        *out = *o;
    return o != NULL;
}

int sl_txn_index_aborted(const sl_txn_index *x, int64_t from, int64_t to, sl_txn_range **out,
                         size_t *n) {
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    /* Sorted by marker offset: skip those that ended before 'from'. */
    size_t lo = 0, hi = x->naborted;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x->aborted[mid].last_offset < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < x->naborted; i++) {
        if (x->aborted[i].first_offset >= to)
            continue; /* began after the range (a later one may still overlap: keep looking) */
        if (push(out, n, &cap, &x->aborted[i])) {
            free(*out);
            *out = NULL;
            *n = 0;
            return SL_ENOMEM;
        }
    }
    return 0;
}

bool sl_txn_batch_aborted(const sl_txn_range *aborted, size_t n, const sl_batch_header *h) {
    if (!(h->attributes & SL_BATCH_ATTR_TRANSACTIONAL) || (h->attributes & SL_BATCH_ATTR_CONTROL))
        return false;
    for (size_t i = 0; i < n; i++)
        if (aborted[i].producer_id == h->producer_id && h->base_offset >= aborted[i].first_offset &&
            h->base_offset < aborted[i].last_offset)
            return true;
    return false;
}

void sl_txn_index_prune(sl_txn_index *x, int64_t log_start) {
    size_t k = 0;
    while (k < x->naborted && x->aborted[k].last_offset < log_start)
        k++;
    if (k) {
        memmove(x->aborted, x->aborted + k, (x->naborted - k) * sizeof(*x->aborted));
        x->naborted -= k;
    }
}

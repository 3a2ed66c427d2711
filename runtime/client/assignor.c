#include "client/assignor.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

static bool subscribed(const sl_subscription *sub, const char *topic) {
    for (size_t i = 0; i < sub->ntopics; i++)
        if (strcmp(sub->topics[i], topic) == 0)
            return true;
    return false;
}

/* Member indices sorted by member id, for an order every leader computes alike. */
static const sl_assign_member *sort_base;
static int by_member_id(const void *a, const void *b) {
    return strcmp(sort_base[*(const size_t *)a].member_id, sort_base[*(const size_t *)b].member_id);
}

static size_t *sorted_members(const sl_assign_member *m, size_t n) {
    size_t *order = malloc((n ? n : 1) * sizeof(*order));
    if (order == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sort_base = m; /* assignors run on the polling thread only */
    qsort(order, n, sizeof(*order), by_member_id);
    return order;
}

static int assign_range(const sl_assign_member *m, size_t n, const sl_topic_count *topics,
                        size_t nt, const size_t *order, sl_partition_set *out) {
    int rc = 0;
    size_t *subs = malloc((n ? n : 1) * sizeof(*subs));
    if (subs == NULL)
        return SL_ENOMEM;
    for (size_t t = 0; rc == 0 && t < nt; t++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (subscribed(m[order[i]].sub, topics[t].topic))
                subs[k++] = order[i];
        if (k == 0)
            continue;
        int32_t per = topics[t].partitions / (int32_t)k, extra = topics[t].partitions % (int32_t)k;
        int32_t next = 0;
        for (size_t i = 0; rc == 0 && i < k; i++) {
            int32_t count = per + ((int32_t)i < extra ? 1 : 0);
            for (int32_t p = 0; rc == 0 && p < count; p++)
                rc = sl_pset_add(&out[subs[i]], topics[t].topic, next++);
        }
    }
    free(subs);
    return rc;
}

static int cmp_topics(const void *a, const void *b) {
    return strcmp(((const sl_topic_count *)a)->topic, ((const sl_topic_count *)b)->topic);
}

static int assign_roundrobin(const sl_assign_member *m, size_t n, const sl_topic_count *topics,
                             size_t nt, const size_t *order, sl_partition_set *out) {
    sl_topic_count *sorted = malloc((nt ? nt : 1) * sizeof(*sorted));
    if (sorted == NULL)
        return SL_ENOMEM;
    memcpy(sorted, topics, nt * sizeof(*sorted));
    qsort(sorted, nt, sizeof(*sorted), cmp_topics);
    int rc = 0;
    size_t turn = 0;
    for (size_t t = 0; rc == 0 && t < nt; t++) {
        for (int32_t p = 0; rc == 0 && p < sorted[t].partitions; p++) {
            /* The next member in turn that is subscribed to this topic. */
            for (size_t tries = 0; tries < n; tries++, turn = (turn + 1) % n) {
                if (subscribed(m[order[turn]].sub, sorted[t].topic)) {
                    rc = sl_pset_add(&out[order[turn]], sorted[t].topic, p);
                    turn = (turn + 1) % n;
                    break;
                }
            }
        }
    }
    free(sorted);
    return rc;
}

/* ---- cooperative-sticky ---- */

typedef struct owned_slot {
    const char *topic;
    int32_t partition;
    long owner; /* member index, -1: nobody */
} owned_slot;

static size_t count_of(const long *owners, size_t nslots, long member) {
    size_t c = 0;
    for (size_t i = 0; i < nslots; i++)
        c += owners[i] == member;
    return c;
}

static int assign_sticky(const sl_assign_member *m, size_t n, const sl_topic_count *topics,
                         size_t nt, const size_t *order, sl_partition_set *out) {
    size_t nslots = 0;
    for (size_t t = 0; t < nt; t++)
        nslots += (size_t)topics[t].partitions;
    owned_slot *slots = calloc(nslots ? nslots : 1, sizeof(*slots));
    long *owners = calloc(nslots ? nslots : 1, sizeof(*owners));
    if (slots == NULL || owners == NULL) {
        free(slots);
        free(owners);
        return SL_ENOMEM;
    }
    size_t k = 0;
    for (size_t t = 0; t < nt; t++)
        for (int32_t p = 0; p < topics[t].partitions; p++)
            slots[k++] = (owned_slot){topics[t].topic, p, -1};
    for (size_t i = 0; i < nslots; i++)
        owners[i] = -1;
    /* 1. Everyone keeps what they own and still subscribe to (first claim wins). */
    for (size_t oi = 0; oi < n; oi++) {
        size_t i = order[oi];
        for (size_t s = 0; s < nslots; s++)
            if (owners[s] < 0 && subscribed(m[i].sub, slots[s].topic) &&
                sl_pset_contains(&m[i].sub->owned, slots[s].topic, slots[s].partition))
                owners[s] = (long)i;
    }
    /* 2. Members above the fair share give up their surplus, highest partitions first. */
    size_t ceil_share = n ? (nslots + n - 1) / n : 0;
    for (size_t i = 0; i < n; i++)
        for (size_t s = nslots; s-- > 0 && count_of(owners, nslots, (long)i) > ceil_share;)
            if (owners[s] == (long)i)
                owners[s] = -1;
    /* 3. The rest goes to whoever subscribed has least. */
    for (size_t s = 0; s < nslots; s++) {
        if (owners[s] >= 0)
            continue;
        long best = -1;
        size_t best_count = 0;
        for (size_t oi = 0; oi < n; oi++) {
            size_t i = order[oi];
            size_t c = count_of(owners, nslots, (long)i);
            if (subscribed(m[i].sub, slots[s].topic) && (best < 0 || c < best_count)) {
                best = (long)i;
                best_count = c;
            }
        }
        owners[s] = best;
    }
    /* 4. Even out: move one partition at a time from the fullest to the emptiest member. */
    for (int moves = 0; moves < (int)nslots; moves++) {
        long hi = -1, lo = -1;
        size_t hic = 0, loc = 0;
        for (size_t i = 0; i < n; i++) {
            size_t c = count_of(owners, nslots, (long)i);
            if (hi < 0 || c > hic) {
                hi = (long)i;
                hic = c;
            }
            if (lo < 0 || c < loc) {
                lo = (long)i;
                loc = c;
            }
        }
        if (hi < 0 || hic <= loc + 1)
            break;
        bool moved = false;
        for (size_t s = nslots; s-- > 0 && !moved;) {
            if (owners[s] == hi && subscribed(m[lo].sub, slots[s].topic)) {
                owners[s] = lo;
                moved = true;
            }
        }
        if (!moved)
            break;
    }
    int rc = 0;
    for (size_t s = 0; rc == 0 && s < nslots; s++)
        if (owners[s] >= 0)
            rc = sl_pset_add(&out[owners[s]], slots[s].topic, slots[s].partition);
    /* 5. Cooperative protocol: withhold what another member still owns. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sl_partition_set kept = {0};
        for (size_t t = 0; rc == 0 && t < out[i].ntopics; t++) {
            for (size_t j = 0; rc == 0 && j < out[i].topics[t].n; j++) {
                const char *topic = out[i].topics[t].topic;
                int32_t p = out[i].topics[t].partitions[j];
                bool elsewhere = false;
                for (size_t o = 0; o < n && !elsewhere; o++)
                    elsewhere = o != i && sl_pset_contains(&m[o].sub->owned, topic, p);
                if (!elsewhere)
                    rc = sl_pset_add(&kept, topic, p);
            }
        }
        sl_pset_free(&out[i]);
        out[i] = kept;
    }
    free(slots);
    free(owners);
    return rc;
}

bool sl_assignor_is_cooperative(const char *strategy) {
    return strcmp(strategy, "cooperative-sticky") == 0;
}

int sl_assign(const char *strategy, const sl_assign_member *members, size_t n,
              const sl_topic_count *topics, size_t ntopics, sl_partition_set *out) {
    size_t *order = sorted_members(members, n);
    if (order == NULL)
        return SL_ENOMEM;
    int rc;
    if (strcmp(strategy, "range") == 0)
        rc = assign_range(members, n, topics, ntopics, order, out);
    else if (strcmp(strategy, "roundrobin") == 0)
        rc = assign_roundrobin(members, n, topics, ntopics, order, out);
    else if (strcmp(strategy, "cooperative-sticky") == 0)
        rc = assign_sticky(members, n, topics, ntopics, order, out);
    else
        rc = SL_EINVAL;
    free(order);
    return rc;
}

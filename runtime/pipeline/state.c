/* The state store: one chained hash table per input partition, and per partition the list of
 * keys changed since the last commit. Deleted keys stay as tombstone entries until their
 * deletion is written to the changelog. */
#include "pipeline/state.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    uint64_t undo_call; /* the call whose undo log has this key's earlier value */
    bool changed; /* listed in part.changed */
    bool deleted; /* a tombstone, kept until its deletion is written */
    size_t key_len, value_len;
    uint8_t *value;
    uint8_t key[];
} entry;

typedef struct held {
    uint8_t *key, *value; /* value NULL: a tombstone */
    size_t key_len, value_len;
} held;

typedef struct part {
    entry **buckets;
    size_t nbuckets, count;
    entry **changed;
    size_t nchanged, capchanged;
    bool loaded;
    held *tail; /* restoring: records not yet followed by a position record */
    size_t ntail, captail;
} part;

/* A key's value before the current call first changed it. */
typedef struct undo {
    int32_t partition;
    uint8_t *key, *value; /* value NULL: the key was absent */
    size_t key_len, value_len;
} undo;

struct sl_state {
    part *parts;
    int32_t nparts;
    uint64_t call; /* nonzero during a call: its number */
    uint64_t calls;
    undo *undo;
    size_t nundo, capundo;
    bool undo_lost; /* out of memory keeping the log: the call cannot be undone */
};

int sl_state_new(sl_state **out) {
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : SL_ENOMEM;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ULL;
    return h;
}

static void clear_tail(part *pt) {
    for (size_t i = 0; i < pt->ntail; i++) {
        free(pt->tail[i].key);
        free(pt->tail[i].value);
    }
    pt->ntail = 0;
}

static void clear_part(part *pt) {
    for (size_t b = 0; b < pt->nbuckets; b++)
        for (entry *e = pt->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e->value);
            free(e);
        }
    clear_tail(pt);
    free(pt->tail);
    free(pt->buckets);
    free(pt->changed);
    memset(pt, 0, sizeof(*pt));
}

static void clear_undo(sl_state *s) {
    for (size_t i = 0; i < s->nundo; i++) {
        free(s->undo[i].key);
        free(s->undo[i].value);
    }
    s->nundo = 0;
    s->undo_lost = false;
}

void sl_state_free(sl_state *s) {
    if (s == NULL)
        return;
    clear_undo(s);
    free(s->undo);
    for (int32_t p = 0; p < s->nparts; p++)
        clear_part(&s->parts[p]);
    free(s->parts);
    free(s);
}

static part *part_of(sl_state *s, int32_t partition, bool add) {
    if (partition < 0)
        return NULL;
    if (partition >= s->nparts) {
        if (!add)
            return NULL;
        part *np = realloc(s->parts, (size_t)(partition + 1) * sizeof(*np));
        if (np == NULL)
            return NULL;
        memset(np + s->nparts, 0, (size_t)(partition + 1 - s->nparts) * sizeof(*np));
        s->parts = np;
        s->nparts = partition + 1;
    }
    return &s->parts[partition];
}

static entry **find(part *pt, const void *key, size_t key_len, uint64_t h) {
    if (pt->nbuckets == 0)
        return NULL;
    entry **e = &pt->buckets[h & (pt->nbuckets - 1)];
    while (*e && ((*e)->hash != h || (*e)->key_len != key_len ||
                  memcmp((*e)->key, key, key_len) != 0))
        e = &(*e)->next;
    return e;
}

static int grow(part *pt) {
    size_t n = pt->nbuckets ? pt->nbuckets * 2 : 64;
    entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < pt->nbuckets; i++)
        for (entry *e = pt->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(pt->buckets);
    pt->buckets = b;
    pt->nbuckets = n;
    return 0;
}

static int note_changed(part *pt, entry *e) {
    if (e->changed)
        return 0;
    if (pt->nchanged == pt->capchanged) {
        size_t cap = pt->capchanged ? pt->capchanged * 2 : 64;
        entry **c = realloc(pt->changed, cap * sizeof(*c));
        if (c == NULL)
            return SL_ENOMEM;
        pt->changed = c;
        pt->capchanged = cap;
    }
    pt->changed[pt->nchanged++] = e;
    e->changed = true;
    return 0;
}

int sl_state_get(sl_state *s, int32_t partition, const void *key, size_t key_len,
                 const void **value, size_t *value_len) {
    part *pt = part_of(s, partition, false);
    entry **e = pt ? find(pt, key, key_len, hash_bytes(key, key_len)) : NULL;
    if (e == NULL || *e == NULL || (*e)->deleted)
        return SL_ENOENT;
    *value = (*e)->value;
    *value_len = (*e)->value_len;
    return 0;
}

/* The entry for key, made if absent (as a tombstone: the caller fills it in). */
static int upsert(part *pt, const void *key, size_t key_len, entry **out) {
    uint64_t h = hash_bytes(key, key_len);
    entry **slot = find(pt, key, key_len, h);
    if (slot && *slot) {
        *out = *slot;
        return 0;
    }
    if (pt->count + 1 > pt->nbuckets * 3 / 4 && grow(pt) != 0)
        return SL_ENOMEM;
    entry *e = calloc(1, sizeof(*e) + key_len);
    if (e == NULL)
        return SL_ENOMEM;
    memcpy(e->key, key, key_len);
    e->key_len = key_len;
    e->hash = h;
    e->deleted = true;
    entry **head = &pt->buckets[h & (pt->nbuckets - 1)];
    e->next = *head;
    *head = e;
    pt->count++;
    *out = e;
    return 0;
}

static int set_value(entry *e, const void *value, size_t value_len) {
    if (value == NULL) {
        free(e->value);
        e->value = NULL;
        e->value_len = 0;
        e->deleted = true;
        return 0;
    }
    uint8_t *v = e->value;
    if (value_len > e->value_len || v == NULL) {
        v = malloc(value_len ? value_len : 1);
        if (v == NULL)
            return SL_ENOMEM;
        free(e->value);
    }
    memcpy(v, value, value_len);
    e->value = v;
    e->value_len = value_len;
    e->deleted = false;
    return 0;
}

static uint8_t *copy_bytes(const void *p, size_t n);

/* Keeps e's value before the current call first changes it. */
static void remember(sl_state *s, int32_t partition, entry *e) {
    if (s->call == 0 || e->undo_call == s->call)
        return;
    e->undo_call = s->call;
    if (s->nundo == s->capundo) {
        size_t cap = s->capundo ? s->capundo * 2 : 16;
        undo *u = realloc(s->undo, cap * sizeof(*u));
        if (u == NULL) {
            s->undo_lost = true;
            return;
        }
        s->undo = u;
        s->capundo = cap;
    }
    undo *u = &s->undo[s->nundo];
    *u = (undo){partition, copy_bytes(e->key, e->key_len), NULL, e->key_len, e->value_len};
    if (u->key && !e->deleted && (u->value = copy_bytes(e->value, e->value_len)) == NULL) {
        free(u->key);
        u->key = NULL;
    }
    if (u->key == NULL) {
        s->undo_lost = true;
        return;
    }
    s->nundo++;
}

void sl_state_begin_call(sl_state *s) {
    clear_undo(s);
    s->call = ++s->calls;
}

void sl_state_end_call(sl_state *s) {
    clear_undo(s);
    s->call = 0;
}

int sl_state_undo_call(sl_state *s) {
    uint64_t call = s->call;
    int rc = s->undo_lost ? SL_ENOMEM : 0;
    s->call = 0; /* the puts below are not to be remembered */
    for (size_t i = s->nundo; i-- > 0;) {
        undo *u = &s->undo[i];
        int prc = sl_state_put(s, u->partition, u->key, u->key_len, u->value, u->value_len);
        rc = rc ? rc : prc;
    }
    clear_undo(s);
    s->call = ++s->calls; /* a new log: entries remembered in the old one are stale */
    (void)call;
    return rc;
}

int sl_state_put(sl_state *s, int32_t partition, const void *key, size_t key_len,
                 const void *value, size_t value_len) {
    if (key_len > SL_STATE_MAX_KEY || (value && value_len > SL_STATE_MAX_VALUE))
        return SL_ETOOLARGE;
    part *pt = part_of(s, partition, true);
    if (pt == NULL)
        return partition < 0 ? SL_EINVAL : SL_ENOMEM;
    entry *e;
    int rc = upsert(pt, key, key_len, &e);
    if (rc == 0)
        remember(s, partition, e);
    if (rc == 0)
        rc = note_changed(pt, e); /* first: a failure leaves the old value in place */
    if (rc == 0)
        rc = set_value(e, value, value_len);
    return rc;
}

int sl_state_foreach(sl_state *s, int32_t partition, sl_state_entry_fn fn, void *opaque) {
    part *pt = part_of(s, partition, false);
    for (size_t b = 0; pt && b < pt->nbuckets; b++)
        for (entry *e = pt->buckets[b]; e; e = e->next)
            if (!e->deleted) {
                int rc = fn(opaque, e->key, e->key_len, e->value, e->value_len);
                if (rc)
                    return rc;
            }
    return 0;
}

void sl_state_size(const sl_state *s, uint64_t *keys, uint64_t *bytes) {
    *keys = *bytes = 0;
    for (int32_t p = 0; p < s->nparts; p++) {
        const part *pt = &s->parts[p];
        for (size_t b = 0; b < pt->nbuckets; b++)
            for (const entry *e = pt->buckets[b]; e; e = e->next)
                if (!e->deleted) {
                    (*keys)++;
                    *bytes += e->key_len + e->value_len;
                }
    }
}

bool sl_state_dirty(const sl_state *s) {
    for (int32_t p = 0; p < s->nparts; p++)
        if (s->parts[p].nchanged)
            return true;
    return false;
}

int sl_state_foreach_changed(sl_state *s, int32_t partition, sl_state_entry_fn fn,
                             void *opaque) {
    part *pt = part_of(s, partition, false);
    for (size_t i = 0; pt && i < pt->nchanged; i++) {
        const entry *e = pt->changed[i];
        int rc = fn(opaque, e->key, e->key_len, e->deleted ? NULL : e->value, e->value_len);
        if (rc)
            return rc;
    }
    return 0;
}

static void unlink_entry(part *pt, entry *e) {
    entry **slot = &pt->buckets[e->hash & (pt->nbuckets - 1)];
    while (*slot != e)
        slot = &(*slot)->next;
    *slot = e->next;
    pt->count--;
    free(e->value);
    free(e);
}

void sl_state_mark_written(sl_state *s, int32_t partition) {
    part *pt = part_of(s, partition, false);
    if (pt == NULL)
        return;
    for (size_t i = 0; i < pt->nchanged; i++) {
        entry *e = pt->changed[i];
        e->changed = false;
        if (e->deleted)
            unlink_entry(pt, e); /* its tombstone is in the changelog now */
    }
    pt->nchanged = 0;
}

void sl_state_drop(sl_state *s, int32_t partition) {
    part *pt = part_of(s, partition, false);
    if (pt)
        clear_part(pt);
}

bool sl_state_loaded(const sl_state *s, int32_t partition) {
    return partition >= 0 && partition < s->nparts && s->parts[partition].loaded;
}

void sl_state_restore_begin(sl_state *s, int32_t partition) {
    sl_state_drop(s, partition);
}

/* Applies the held records: a position record has shown their commit completed. */
static int apply_tail(part *pt) {
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < pt->ntail; i++) {
        held *h = &pt->tail[i];
        entry *e;
        if ((rc = upsert(pt, h->key, h->key_len, &e)) == 0)
            rc = set_value(e, h->value, h->value_len);
        if (rc == 0 && e->deleted && !e->changed)
            unlink_entry(pt, e); /* an applied tombstone is final: nothing to write for it */
    }
    clear_tail(pt);
    return rc;
}

static uint8_t *copy_bytes(const void *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    if (c)
        memcpy(c, p, n);
    return c;
}

int sl_state_restore_record(sl_state *s, int32_t partition, const void *key, size_t key_len,
                            const void *value, size_t value_len, sl_state_position_fn on_position,
                            void *opaque) {
    part *pt = part_of(s, partition, true);
    if (pt == NULL)
        return SL_ENOMEM;
    const char *k = key;
    if (key_len < 1)
        return 0; /* not ours: skipped */
    if (key_len == 1 && k[0] == SL_STATE_POSITION_KEY) {
        int rc = apply_tail(pt);
        if (rc || value == NULL)
            return rc;
        /* Lines "<topic> <next offset>"; a malformed line is skipped. */
        const char *v = value, *end = v + value_len;
        while (v < end) {
            const char *nl = memchr(v, '\n', (size_t)(end - v));
            const char *line_end = nl ? nl : end;
            const char *sp = memchr(v, ' ', (size_t)(line_end - v));
            char topic[256], num[24];
            size_t tlen = sp ? (size_t)(sp - v) : 0, nlen = sp ? (size_t)(line_end - sp - 1) : 0;
            if (sp && tlen > 0 && tlen < sizeof(topic) && nlen > 0 && nlen < 19) {
                memcpy(topic, v, tlen);
                topic[tlen] = '\0';
                memcpy(num, sp + 1, nlen);
                num[nlen] = '\0';
                char *num_end;
                long long next = strtoll(num, &num_end, 10);
                if (*num_end == '\0' && next >= 0)
                    on_position(opaque, topic, next);
            }
            v = line_end + 1;
        }
        return 0;
    }
    if (k[0] != SL_STATE_KEY_PREFIX)
        return 0;
    if (pt->ntail == pt->captail) {
        size_t cap = pt->captail ? pt->captail * 2 : 64;
        held *t = realloc(pt->tail, cap * sizeof(*t));
        if (t == NULL)
            return SL_ENOMEM;
        pt->tail = t;
        pt->captail = cap;
    }
    held *h = &pt->tail[pt->ntail];
    *h = (held){copy_bytes(k + 1, key_len - 1), value ? copy_bytes(value, value_len) : NULL,
                key_len - 1, value_len};
    if (h->key == NULL || (value && h->value == NULL)) {
        free(h->key);
        free(h->value);
        return SL_ENOMEM;
    }
    pt->ntail++;
    return 0;
}

size_t sl_state_restore_end(sl_state *s, int32_t partition) {
    part *pt = part_of(s, partition, true);
    if (pt == NULL)
        return 0;
    size_t dropped = pt->ntail;
    /* The unfinished commit's keys get their restored values written again, over it. */
    for (size_t i = 0; i < pt->ntail; i++) {
        entry *e;
        if (upsert(pt, pt->tail[i].key, pt->tail[i].key_len, &e) == 0)
            note_changed(pt, e);
    }
    clear_tail(pt);
    pt->loaded = true;
    return dropped;
}

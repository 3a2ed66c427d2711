/* The state store: per-partition tables, changed-key tracking, and restoring from changelog
 * records, where only commits closed by a position record count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/state.h"
#include "sl_test.h"

static int count_entry(void *opaque, const void *k, size_t kl, const void *v, size_t vl) {
    (void)k, (void)kl, (void)v, (void)vl;
    (*(int *)opaque)++;
    return 0;
}

static int count(sl_state *s, int32_t p) {
    int n = 0;
    SL_PASS(sl_state_foreach(s, p, count_entry, &n));
    return n;
}

static void value_is(sl_state *s, int32_t p, const char *key, const char *want) {
    const void *v;
    size_t vl;
    int rc = sl_state_get(s, p, key, strlen(key), &v, &vl);
    if (want == NULL) {
        SL_EQ(rc, SL_ENOENT);
        return;
    }
    SL_PASS(rc);
    SL_EQ(vl, strlen(want));
    SL_TRUE(memcmp(v, want, vl) == 0);
}

static void partitions_are_apart(void) {
    sl_state *s;
    SL_PASS(sl_state_new(&s));
    SL_PASS(sl_state_put(s, 0, "k", 1, "zero", 4));
    SL_PASS(sl_state_put(s, 3, "k", 1, "three", 5));
    value_is(s, 0, "k", "zero");
    value_is(s, 3, "k", "three");
    value_is(s, 1, "k", NULL);
    SL_FAIL(sl_state_put(s, -1, "k", 1, "x", 1), SL_EINVAL);
    /* Many keys: the table grows and keeps them all. */
    for (int i = 0; i < 5000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key%d", i);
        SL_PASS(sl_state_put(s, 0, k, strlen(k), k, strlen(k)));
    }
    SL_EQ(count(s, 0), 5001);
    value_is(s, 0, "key4321", "key4321");
    sl_state_drop(s, 3);
    value_is(s, 3, "k", NULL);
    sl_state_free(s);
}

typedef struct collected {
    int n, deleted;
} collected;

static int collect_changed(void *opaque, const void *k, size_t kl, const void *v, size_t vl) {
    (void)k, (void)kl, (void)vl;
    collected *c = opaque;
    c->n++;
    c->deleted += v == NULL;
    return 0;
}

static void changes_are_tracked_until_written(void) {
    sl_state *s;
    SL_PASS(sl_state_new(&s));
    SL_TRUE(!sl_state_dirty(s));
    SL_PASS(sl_state_put(s, 2, "a", 1, "1", 1));
    SL_PASS(sl_state_put(s, 2, "a", 1, "22", 2)); /* changed twice: listed once */
    SL_PASS(sl_state_put(s, 2, "b", 1, "3", 1));
    SL_TRUE(sl_state_dirty(s));
    collected c = {0};
    SL_PASS(sl_state_foreach_changed(s, 2, collect_changed, &c));
    SL_EQ(c.n, 2);
    sl_state_mark_written(s, 2);
    SL_TRUE(!sl_state_dirty(s));
    SL_PASS(sl_state_put(s, 2, "b", 1, NULL, 0)); /* a deletion is a change: a tombstone */
    value_is(s, 2, "b", NULL);
    c = (collected){0};
    SL_PASS(sl_state_foreach_changed(s, 2, collect_changed, &c));
    SL_EQ(c.n, 1);
    SL_EQ(c.deleted, 1);
    sl_state_mark_written(s, 2);
    SL_EQ(count(s, 2), 1);
    value_is(s, 2, "a", "22");
    sl_state_free(s);
}

typedef struct positions {
    char topic[64];
    long long next;
    int n;
} positions;

static void on_position(void *opaque, const char *topic, int64_t next) {
    positions *p = opaque;
    snprintf(p->topic, sizeof(p->topic), "%s", topic);
    p->next = next;
    p->n++;
}

static void feed(sl_state *s, int32_t p, const char *key, const char *value, positions *pos) {
    SL_PASS(sl_state_restore_record(s, p, key, strlen(key), value, value ? strlen(value) : 0,
                                    on_position, pos));
}

static void restore_applies_only_closed_commits(void) {
    sl_state *s;
    SL_PASS(sl_state_new(&s));
    positions pos = {0};
    sl_state_restore_begin(s, 1);
    /* commit 1: a=1, b=1 at clicks offset 10 */
    feed(s, 1, "sa", "1", &pos);
    feed(s, 1, "sb", "1", &pos);
    feed(s, 1, "p", "clicks 10\n", &pos);
    /* commit 2: a=2, b deleted at 20, and the retry topic at 7 */
    feed(s, 1, "sa", "2", &pos);
    feed(s, 1, "sb", NULL, &pos);
    feed(s, 1, "p", "clicks 20\nclicks.retry.1 7\n", &pos);
    /* commit 3 never finished: a=3, c=3, no position */
    feed(s, 1, "sa", "3", &pos);
    feed(s, 1, "sc", "3", &pos);
    feed(s, 1, "xjunk", "?", &pos);  /* a key of neither kind is skipped */
    feed(s, 1, "pjunk", "x 1\n", &pos); /* not the position key: skipped, closes nothing */
    SL_EQ(sl_state_restore_end(s, 1), 2);
    SL_TRUE(sl_state_loaded(s, 1));
    SL_EQ(pos.n, 3);
    SL_STREQ(pos.topic, "clicks.retry.1");
    SL_EQ(pos.next, 7);
    value_is(s, 1, "a", "2");
    value_is(s, 1, "b", NULL);
    value_is(s, 1, "c", NULL);
    SL_EQ(count(s, 1), 1);
    /* The unfinished commit's keys are written again with their restored values: a=2, and a
     * tombstone for c, so a later restore cannot pick up the stray records. */
    collected c = {0};
    SL_PASS(sl_state_foreach_changed(s, 1, collect_changed, &c));
    SL_EQ(c.n, 2);
    SL_EQ(c.deleted, 1);
    /* Malformed position lines are skipped, the good ones kept. */
    pos = (positions){0};
    sl_state_restore_begin(s, 2);
    feed(s, 2, "p", "nospace\n 5\nt x\nt 99999999999999999999\nok 3", &pos);
    sl_state_restore_end(s, 2);
    SL_EQ(pos.n, 1);
    SL_STREQ(pos.topic, "ok");
    /* Oversized values are refused at put, before they could stall the changelog. */
    char *big = calloc(1, SL_STATE_MAX_VALUE + 1);
    SL_FAIL(sl_state_put(s, 2, "k", 1, big, SL_STATE_MAX_VALUE + 1), SL_ETOOLARGE);
    free(big);
    sl_state_free(s);
}

static void a_failed_call_is_taken_back(void) {
    sl_state *s;
    SL_PASS(sl_state_new(&s));
    SL_PASS(sl_state_put(s, 0, "a", 1, "1", 1));
    SL_PASS(sl_state_put(s, 0, "gone", 4, "x", 1));
    sl_state_begin_call(s);
    SL_PASS(sl_state_put(s, 0, "a", 1, "2", 1));
    SL_PASS(sl_state_put(s, 0, "a", 1, "3", 1)); /* the first change is what is remembered */
    SL_PASS(sl_state_put(s, 0, "new", 3, "n", 1));
    SL_PASS(sl_state_put(s, 0, "gone", 4, NULL, 0));
    SL_PASS(sl_state_undo_call(s));
    value_is(s, 0, "a", "1");
    value_is(s, 0, "new", NULL);
    value_is(s, 0, "gone", "x");
    /* After an undo the call goes on with a fresh log (a retry of the call). */
    SL_PASS(sl_state_put(s, 0, "a", 1, "4", 1));
    SL_PASS(sl_state_undo_call(s));
    value_is(s, 0, "a", "1");
    sl_state_end_call(s);
    /* A successful call keeps its changes. */
    sl_state_begin_call(s);
    SL_PASS(sl_state_put(s, 0, "a", 1, "5", 1));
    sl_state_end_call(s);
    value_is(s, 0, "a", "5");
    sl_state_free(s);
}

SL_TESTS({"partitions are apart", partitions_are_apart},
         {"changes are tracked until written", changes_are_tracked_until_written},
         {"restore applies only closed commits", restore_applies_only_closed_commits},
         {"a failed call is taken back", a_failed_call_is_taken_back})

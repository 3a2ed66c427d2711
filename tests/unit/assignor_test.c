/* Kafka's consumer protocol codec and the three assignors: every partition is owned by exactly
 * one subscribed member, load is balanced, and cooperative-sticky moves only what it must. */
#include "client/assignor.h"
#include "sl_test.h"

static sl_subscription sub_of(char **topics, size_t n) {
    sl_subscription s = {topics, n, {0}};
    return s;
}

/* Checks that every partition of every topic has exactly one owner among 'out'. */
static void each_partition_once(const sl_partition_set *out, size_t n, const sl_topic_count *t,
                                size_t nt) {
    for (size_t i = 0; i < nt; i++) {
        for (int32_t p = 0; p < t[i].partitions; p++) {
            int owners = 0;
            for (size_t m = 0; m < n; m++)
                owners += sl_pset_contains(&out[m], t[i].topic, p);
            SL_EQ(owners, 1);
        }
    }
}

static void subscription_and_assignment_round_trip(void) {
    char *topics[] = {"orders", "clicks"};
    sl_subscription sub = sub_of(topics, 2), back;
    SL_PASS(sl_pset_add(&sub.owned, "orders", 3));
    SL_PASS(sl_pset_add(&sub.owned, "orders", 1));
    sl_buf b = SL_BUF_INIT;
    SL_PASS(sl_subscription_encode(&sub, &b));
    SL_PASS(sl_subscription_decode(b.data, b.len, &back));
    SL_EQ(back.ntopics, 2);
    SL_STREQ(back.topics[1], "clicks");
    SL_TRUE(sl_pset_contains(&back.owned, "orders", 1) && sl_pset_contains(&back.owned, "orders", 3));
    /* Every truncation is refused, never read past (ASan watches). */
    for (size_t len = 0; len < b.len; len++) {
        sl_subscription s;
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, b.data, len);
        int rc = sl_subscription_decode(copy, len, &s);
        if (rc == 0)
            sl_subscription_free(&s);
        else
            SL_EQ(rc, SL_EPROTO);
        free(copy);
    }
    sl_subscription_free(&back);
    sl_partition_set parts = {0}, got;
    SL_PASS(sl_pset_add(&parts, "orders", 0));
    SL_PASS(sl_pset_add(&parts, "clicks", 5));
    b.len = 0;
    SL_PASS(sl_assignment_encode(&parts, &b));
    SL_PASS(sl_assignment_decode(b.data, b.len, &got));
    SL_EQ(sl_pset_count(&got), 2);
    SL_TRUE(sl_pset_contains(&got, "clicks", 5));
    /* A count larger than the bytes could hold is refused before allocating. */
    uint8_t hostile[] = {0, 1, 0x7f, 0xff, 0xff, 0xff};
    sl_partition_set h;
    SL_FAIL(sl_assignment_decode(hostile, sizeof(hostile), &h), SL_EPROTO);
    sl_pset_free(&got);
    sl_pset_free(&parts);
    sl_pset_free(&sub.owned);
    sl_buf_free(&b);
}

static void range_and_roundrobin_share_everything(void) {
    char *t1[] = {"a", "b"};
    sl_subscription s = sub_of(t1, 2);
    sl_assign_member m[3] = {{"m-c", &s}, {"m-a", &s}, {"m-b", &s}};
    sl_topic_count topics[] = {{"a", 7}, {"b", 2}};
    const char *strategies[] = {"range", "roundrobin", "cooperative-sticky"};
    for (int k = 0; k < 3; k++) {
        sl_partition_set out[3] = {{0}};
        SL_PASS(sl_assign(strategies[k], m, 3, topics, 2, out));
        each_partition_once(out, 3, topics, 2);
        if (k > 0) { /* 9 partitions over 3 members: 3 each */
            for (int i = 0; i < 3; i++)
                SL_EQ(sl_pset_count(&out[i]), 3);
        }
        for (int i = 0; i < 3; i++)
            sl_pset_free(&out[i]);
    }
    /* range: per topic, in member-id order: m-a gets a-0..a-2 and b-0. */
    sl_partition_set out[3] = {{0}};
    SL_PASS(sl_assign("range", m, 3, topics, 2, out));
    SL_TRUE(sl_pset_contains(&out[1], "a", 0) && sl_pset_contains(&out[1], "a", 2) &&
            sl_pset_contains(&out[1], "b", 0));
    for (int i = 0; i < 3; i++)
        sl_pset_free(&out[i]);
    SL_FAIL(sl_assign("nope", m, 3, topics, 2, out), SL_EINVAL);
}

static void only_subscribers_get_a_topic(void) {
    char *ta[] = {"a"}, *tb[] = {"b"};
    sl_subscription sa = sub_of(ta, 1), sb = sub_of(tb, 1);
    sl_assign_member m[2] = {{"x", &sa}, {"y", &sb}};
    sl_topic_count topics[] = {{"a", 4}, {"b", 4}};
    const char *strategies[] = {"range", "roundrobin", "cooperative-sticky"};
    for (int k = 0; k < 3; k++) {
        sl_partition_set out[2] = {{0}};
        SL_PASS(sl_assign(strategies[k], m, 2, topics, 2, out));
        SL_EQ(sl_pset_count(&out[0]), 4);
        SL_TRUE(sl_pset_contains(&out[0], "a", 3) && !sl_pset_contains(&out[0], "b", 0));
        SL_TRUE(sl_pset_contains(&out[1], "b", 0));
        sl_pset_free(&out[0]);
        sl_pset_free(&out[1]);
    }
}

static void cooperative_sticky_moves_only_what_it_must(void) {
    char *t[] = {"t"};
    sl_subscription a = sub_of(t, 1), b = sub_of(t, 1), c = sub_of(t, 1);
    for (int32_t p = 0; p < 3; p++)
        SL_PASS(sl_pset_add(&a.owned, "t", p));
    for (int32_t p = 3; p < 6; p++)
        SL_PASS(sl_pset_add(&b.owned, "t", p));
    sl_assign_member m[3] = {{"a", &a}, {"b", &b}, {"c", &c}};
    sl_topic_count topics[] = {{"t", 6}};
    sl_partition_set out[3] = {{0}};
    SL_PASS(sl_assign("cooperative-sticky", m, 3, topics, 1, out));
    /* The newcomer gets nothing yet: what it will get is still owned by a and b, who keep
     * everything else and give up one partition each. */
    SL_EQ(sl_pset_count(&out[2]), 0);
    SL_EQ(sl_pset_count(&out[0]), 2);
    SL_EQ(sl_pset_count(&out[1]), 2);
    for (int32_t p = 0; p < 6; p++) {
        SL_TRUE(!sl_pset_contains(&out[0], "t", p) || sl_pset_contains(&a.owned, "t", p));
        SL_TRUE(!sl_pset_contains(&out[1], "t", p) || sl_pset_contains(&b.owned, "t", p));
    }
    /* Next round, after a and b revoked: the freed partitions go to c. */
    sl_pset_free(&a.owned);
    sl_pset_free(&b.owned);
    a.owned = out[0];
    b.owned = out[1];
    sl_partition_set next[3] = {{0}};
    SL_PASS(sl_assign("cooperative-sticky", m, 3, topics, 1, next));
    each_partition_once(next, 3, topics, 1);
    for (int i = 0; i < 3; i++)
        SL_EQ(sl_pset_count(&next[i]), 2);
    SL_EQ(sl_pset_count(&next[0]) + 0, 2);
    for (int i = 0; i < 3; i++) {
        sl_pset_free(&next[i]);
        sl_pset_free(&out[i]);
    }
}

SL_TESTS({"subscription and assignment round trip; bad bytes refused",
          subscription_and_assignment_round_trip},
         {"every strategy gives every partition exactly one owner",
          range_and_roundrobin_share_everything},
         {"only subscribers get a topic", only_subscribers_get_a_topic},
         {"cooperative-sticky moves only what it must", cooperative_sticky_moves_only_what_it_must})

/* The Kafka group, offset and admin handlers (net/kafka_group.c, net/kafka_admin.c) called
 * directly over a real broker and coordinator in a temporary directory: requests encoded as the
 * Kafka clients do, answers decoded field by field, malformed requests refused. */
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "net/kafka.h"
#include "sl_test.h"

static sl_kafka_ctx ctx;
static char dir[] = "/tmp/sl_kafka_group_test.XXXXXX";
static sl_buf body = SL_BUF_INIT, out = SL_BUF_INIT;
static sl_kwriter q = {&body, false}; /* the request being built */
static sl_kreader a;                  /* the answer of the last call */

static void open_broker(void) {
    SL_TRUE(mkdtemp(dir) != NULL);
    sl_broker_conf conf = {.data_dir = dir, .node_id = 7, .retention_check_ms = 60000};
    SL_PASS(sl_broker_open(&conf, &ctx.broker));
    SL_PASS(sl_coord_open(ctx.broker, &ctx.coord));
    ctx.node_id = 7;
    strcpy(ctx.host, "broker.example");
    ctx.port = 9092;
    ctx.default_partitions = 3;
}

static void close_broker(void) {
    sl_coord_close(ctx.coord);
    sl_broker_close(ctx.broker);
    SL_PASS(sl_fs_remove_tree(dir));
    sl_buf_free(&body);
    sl_buf_free(&out);
}

/* Sends the request built in 'body' (then empties it); the answer is read from 'a'. */
static int call(sl_kafka_api_fn fn, int16_t version) {
    sl_kafka_req req = {.api_version = version,
                        .client_id = "test-client",
                        .body = {body.data, body.data + body.len, false},
                        .peer = "10.0.0.1:5555"};
    sl_kwriter w = {&out, false};
    out.len = 0;
    int rc = fn(&ctx, &req, &w);
    body.len = 0;
    a = (sl_kreader){out.data, out.data + out.len, false};
    return rc;
}

static void expect_str(const char *want) {
    char s[512];
    sl_kr_string(&a, s, sizeof(s), NULL);
    SL_STREQ(s, want);
}

static void expect_end(void) {
    SL_TRUE(!a.error);
    SL_TRUE(a.p == a.end);
}

/* ---- FindCoordinator ---- */

static void find_coordinator_answers_itself(void) {
    sl_kw_string(&q, "g");
    SL_PASS(call(sl_kafka_find_coordinator, 0));
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    SL_EQ(sl_kr_i32(&a), 7);
    expect_str("broker.example");
    SL_EQ(sl_kr_i32(&a), 9092);
    expect_end();

    sl_kw_string(&q, "g");
    sl_kw_i8(&q, 0);
    SL_PASS(call(sl_kafka_find_coordinator, 2));
    SL_EQ(sl_kr_i32(&a), 0); /* throttle */
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    SL_EQ(sl_kr_i16(&a), -1); /* null error message */
    SL_EQ(sl_kr_i32(&a), 7);
    expect_str("broker.example");
    SL_EQ(sl_kr_i32(&a), 9092);
    expect_end();
}

/* ---- admin ---- */

static void put_topic(const char *name, int32_t partitions, int16_t replicas, const char *key,
                      const char *value) {
    sl_kw_string(&q, name);
    sl_kw_i32(&q, partitions);
    sl_kw_i16(&q, replicas);
    sl_kw_i32(&q, 0); /* assignments */
    sl_kw_i32(&q, key ? 1 : 0);
    if (key) {
        sl_kw_string(&q, key);
        sl_kw_string(&q, value);
    }
}

static void expect_topic_result(const char *name, int16_t err) {
    expect_str(name);
    SL_EQ(sl_kr_i16(&a), err);
    char msg[512];
    bool null;
    sl_kr_string(&a, msg, sizeof(msg), &null);
    SL_TRUE(null == (err == KERR_NONE));
}

static void create_topics_checks_and_creates(void) {
    sl_kw_i32(&q, 6);
    put_topic("orders", -1, -1, "retention.ms", "1000");
    put_topic("bad name", 1, 1, NULL, NULL);
    put_topic("zero", 0, 1, NULL, NULL);
    put_topic("three", 1, 3, NULL, NULL);
    put_topic("conf", 1, 1, "retention.ms", NULL);
    put_topic("orders", 1, 1, NULL, NULL);
    sl_kw_i32(&q, 30000);
    sl_kw_bool(&q, false);
    SL_PASS(call(sl_kafka_create_topics, 3));
    SL_EQ(sl_kr_i32(&a), 0);
    SL_EQ(sl_kr_i32(&a), 6);
    expect_topic_result("orders", KERR_NONE);
    expect_topic_result("bad name", KERR_INVALID_TOPIC);
    expect_topic_result("zero", KERR_INVALID_PARTITIONS);
    expect_topic_result("three", KERR_INVALID_REPLICATION_FACTOR);
    expect_topic_result("conf", KERR_INVALID_CONFIG);
    expect_topic_result("orders", KERR_TOPIC_ALREADY_EXISTS);
    expect_end();
    int32_t n;
    SL_PASS(sl_broker_partition_count(ctx.broker, "orders", &n));
    SL_EQ(n, 3); /* -1: the broker default */

    /* validate_only checks without creating */
    sl_kw_i32(&q, 1);
    put_topic("dry", 2, 1, NULL, NULL);
    sl_kw_i32(&q, 30000);
    sl_kw_bool(&q, true);
    SL_PASS(call(sl_kafka_create_topics, 1));
    SL_EQ(sl_kr_i32(&a), 1);
    expect_topic_result("dry", KERR_NONE);
    expect_end();
    SL_FAIL(sl_broker_partition_count(ctx.broker, "dry", &n), SL_ENOENT);
}

static void describe_configs_filters_and_marks_defaults(void) {
    sl_kw_i32(&q, 2);
    sl_kw_i8(&q, 2);
    sl_kw_string(&q, "orders");
    sl_kw_i32(&q, 2);
    sl_kw_string(&q, "retention.ms");
    sl_kw_string(&q, "segment.ms");
    sl_kw_i8(&q, 2);
    sl_kw_string(&q, "missing");
    sl_kw_i32(&q, -1);
    sl_kw_bool(&q, false);
    SL_PASS(call(sl_kafka_describe_configs, 1));
    SL_EQ(sl_kr_i32(&a), 0);
    SL_EQ(sl_kr_i32(&a), 2);
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    SL_EQ(sl_kr_i16(&a), -1);
    SL_EQ(sl_kr_i8(&a), 2);
    expect_str("orders");
    SL_EQ(sl_kr_i32(&a), 2);
    const char *want[2][3] = {{"retention.ms", "1000", "\1"}, {"segment.ms", "604800000", "\5"}};
    for (int i = 0; i < 2; i++) {
        expect_str(want[i][0]);
        expect_str(want[i][1]);
        SL_EQ(sl_kr_bool(&a), false);       /* read_only */
        SL_EQ(sl_kr_i8(&a), want[i][2][0]); /* config_source */
        SL_EQ(sl_kr_bool(&a), false);       /* is_sensitive */
        SL_EQ(sl_kr_i32(&a), 0);            /* synonyms */
    }
    SL_EQ(sl_kr_i16(&a), KERR_UNKNOWN_TOPIC_OR_PARTITION);
    expect_str("topic \"missing\" does not exist");
    SL_EQ(sl_kr_i8(&a), 2);
    expect_str("missing");
    SL_EQ(sl_kr_i32(&a), 0);
    expect_end();
}

static void delete_topics_spares_internal_ones(void) {
    sl_kw_i32(&q, 3);
    sl_kw_string(&q, "orders");
    sl_kw_string(&q, "orders");
    sl_kw_string(&q, SL_OFFSETS_TOPIC);
    sl_kw_i32(&q, 30000);
    SL_PASS(call(sl_kafka_delete_topics, 1));
    SL_EQ(sl_kr_i32(&a), 0);
    SL_EQ(sl_kr_i32(&a), 3);
    expect_str("orders");
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    expect_str("orders");
    SL_EQ(sl_kr_i16(&a), KERR_UNKNOWN_TOPIC_OR_PARTITION);
    expect_str(SL_OFFSETS_TOPIC);
    SL_EQ(sl_kr_i16(&a), KERR_INVALID_REQUEST);
    expect_end();
}

/* ---- a group of one member ---- */

static char member[300];
static int32_t generation;

static void join_makes_a_leader(void) {
    sl_kw_string(&q, "g1");
    sl_kw_i32(&q, 6000);
    sl_kw_i32(&q, 1000);
    sl_kw_string(&q, "");
    sl_kw_string(&q, "consumer");
    sl_kw_i32(&q, 1);
    sl_kw_string(&q, "range");
    sl_kw_bytes(&q, "sub", 3);
    SL_PASS(call(sl_kafka_join_group, 2));
    SL_EQ(sl_kr_i32(&a), 0);
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    generation = sl_kr_i32(&a);
    SL_TRUE(generation >= 1);
    expect_str("range");
    char leader[300];
    sl_kr_string(&a, leader, sizeof(leader), NULL);
    sl_kr_string(&a, member, sizeof(member), NULL);
    SL_STREQ(leader, member);
    SL_EQ(sl_kr_i32(&a), 1);
    expect_str(member);
    int32_t len;
    const uint8_t *meta = sl_kr_bytes(&a, &len);
    SL_EQ(len, 3);
    SL_TRUE(memcmp(meta, "sub", 3) == 0);
    expect_end();
}

static void join_refusals(void) {
    struct {
        const char *group;
        int32_t session;
        int32_t nprotocols;
        int16_t err;
    } cases[] = {{"", 6000, 1, KERR_INVALID_GROUP_ID},
                 {"g2", 10, 1, KERR_INVALID_SESSION_TIMEOUT},
                 {"g2", 6000, 0, KERR_INCONSISTENT_GROUP_PROTOCOL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_kw_string(&q, cases[i].group);
        sl_kw_i32(&q, cases[i].session);
        sl_kw_string(&q, "m-1");
        sl_kw_string(&q, "consumer");
        sl_kw_i32(&q, cases[i].nprotocols);
        if (cases[i].nprotocols) {
            sl_kw_string(&q, "range");
            sl_kw_bytes(&q, NULL, -1);
        }
        SL_PASS(call(sl_kafka_join_group, 0)); /* v0: no rebalance timeout, no throttle */
        SL_EQ(sl_kr_i16(&a), cases[i].err);
        SL_EQ(sl_kr_i32(&a), -1);
        expect_str("");
        expect_str("");
        expect_str("m-1"); /* the request's member id, echoed */
        SL_EQ(sl_kr_i32(&a), 0);
        expect_end();
    }
}

static void sync_and_heartbeat(void) {
    sl_kw_string(&q, "g1");
    sl_kw_i32(&q, generation);
    sl_kw_string(&q, member);
    sl_kw_i32(&q, 1);
    sl_kw_string(&q, member);
    sl_kw_bytes(&q, "assigned", 8);
    SL_PASS(call(sl_kafka_sync_group, 1));
    SL_EQ(sl_kr_i32(&a), 0);
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    int32_t len;
    const uint8_t *p = sl_kr_bytes(&a, &len);
    SL_EQ(len, 8);
    SL_TRUE(memcmp(p, "assigned", 8) == 0);
    expect_end();

    sl_kw_string(&q, "g1");
    sl_kw_i32(&q, generation + 1);
    sl_kw_string(&q, member);
    SL_PASS(call(sl_kafka_heartbeat, 0));
    SL_EQ(sl_kr_i16(&a), KERR_ILLEGAL_GENERATION);
    expect_end();
}

static void put_commit(int16_t version, int32_t gen, const char *memb, const char *topic) {
    sl_kw_string(&q, "g1");
    if (version >= 1) {
        sl_kw_i32(&q, gen);
        sl_kw_string(&q, memb);
    }
    if (version >= 2)
        sl_kw_i64(&q, -1);
    sl_kw_i32(&q, 1);
    sl_kw_string(&q, topic);
    sl_kw_i32(&q, 2);
    for (int32_t p = 0; p < 2; p++) {
        sl_kw_i32(&q, p == 0 ? 1 : 9); /* partition 9 does not exist */
        sl_kw_i64(&q, 42);
        if (version == 1)
            sl_kw_i64(&q, -1);
        sl_kw_string(&q, "md");
    }
}

static void expect_commit(const char *topic, int16_t err1, int16_t err9) {
    SL_EQ(sl_kr_i32(&a), 1);
    expect_str(topic);
    SL_EQ(sl_kr_i32(&a), 2);
    SL_EQ(sl_kr_i32(&a), 1);
    SL_EQ(sl_kr_i16(&a), err1);
    SL_EQ(sl_kr_i32(&a), 9);
    SL_EQ(sl_kr_i16(&a), err9);
    expect_end();
}

static void commit_and_fetch_offsets(void) {
    int32_t n;
    char err[256];
    SL_PASS(sl_broker_create_topic(ctx.broker, "events", 2, 0, NULL, 0, err, sizeof(err)));
    SL_PASS(sl_broker_partition_count(ctx.broker, "events", &n));
    put_commit(2, generation, member, "events");
    SL_PASS(call(sl_kafka_offset_commit, 2));
    expect_commit("events", KERR_NONE, KERR_UNKNOWN_TOPIC_OR_PARTITION);
    put_commit(1, generation + 3, member, "events");
    SL_PASS(call(sl_kafka_offset_commit, 1));
    expect_commit("events", KERR_ILLEGAL_GENERATION, KERR_UNKNOWN_TOPIC_OR_PARTITION);
    /* v0 is a tool commit: refused while the group has members, as Kafka does */
    put_commit(0, -1, "", "events");
    SL_PASS(call(sl_kafka_offset_commit, 0));
    expect_commit("events", KERR_UNKNOWN_MEMBER_ID, KERR_UNKNOWN_TOPIC_OR_PARTITION);

    sl_kw_string(&q, "g1");
    sl_kw_i32(&q, 1);
    sl_kw_string(&q, "events");
    sl_kw_i32(&q, 2);
    sl_kw_i32(&q, 0);
    sl_kw_i32(&q, 1);
    SL_PASS(call(sl_kafka_offset_fetch, 1));
    SL_EQ(sl_kr_i32(&a), 1);
    expect_str("events");
    SL_EQ(sl_kr_i32(&a), 2);
    for (int32_t p = 0; p < 2; p++) {
        SL_EQ(sl_kr_i32(&a), p);
        SL_EQ(sl_kr_i64(&a), p == 0 ? -1 : 42);
        expect_str("");
        SL_EQ(sl_kr_i16(&a), KERR_NONE);
    }
    expect_end();
}

static void list_and_describe_groups(void) {
    SL_PASS(call(sl_kafka_list_groups, 0));
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    SL_EQ(sl_kr_i32(&a), 1);
    expect_str("g1");
    expect_str("consumer");
    expect_end();

    sl_kw_i32(&q, 2);
    sl_kw_string(&q, "g1");
    sl_kw_string(&q, "nobody");
    SL_PASS(call(sl_kafka_describe_groups, 0));
    SL_EQ(sl_kr_i32(&a), 2);
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    expect_str("g1");
    expect_str("Stable");
    expect_str("consumer");
    expect_str("range");
    SL_EQ(sl_kr_i32(&a), 1);
    expect_str(member);
    expect_str("test-client");
    expect_str("10.0.0.1:5555");
    int32_t len;
    sl_kr_bytes(&a, &len);
    SL_EQ(len, 0); /* member metadata is not kept */
    sl_kr_bytes(&a, &len);
    SL_EQ(len, 8);
    SL_EQ(sl_kr_i16(&a), KERR_NONE); /* Kafka: an unknown group is "Dead", not an error */
    expect_str("nobody");
    expect_str("Dead");
    expect_str("");
    expect_str("");
    SL_EQ(sl_kr_i32(&a), 0);
    expect_end();
}

static void leave_then_tool_commit(void) {
    sl_kw_string(&q, "g1");
    sl_kw_string(&q, member);
    SL_PASS(call(sl_kafka_leave_group, 1));
    SL_EQ(sl_kr_i32(&a), 0);
    SL_EQ(sl_kr_i16(&a), KERR_NONE);
    expect_end();
    put_commit(0, -1, "", "events");
    SL_PASS(call(sl_kafka_offset_commit, 0));
    expect_commit("events", KERR_NONE, KERR_UNKNOWN_TOPIC_OR_PARTITION);
}

/* ---- malformed requests close the connection ---- */

static void malformed_requests_are_refused(void) {
    sl_kw_string(&q, "g1"); /* heartbeat cut short */
    sl_kw_i32(&q, 1);
    SL_EQ(call(sl_kafka_heartbeat, 1), -1);
    sl_kw_i32(&q, 0x7fffffff); /* a hostile count */
    SL_EQ(call(sl_kafka_describe_groups, 0), -1);
    sl_kw_string(&q, "g1");
    sl_kw_i32(&q, 1000000);
    sl_kw_i32(&q, 0);
    SL_EQ(call(sl_kafka_offset_commit, 0), -1);
    sl_kw_i32(&q, 1); /* CreateTopics without validate_only: nothing may be created */
    put_topic("never", 1, 1, NULL, NULL);
    sl_kw_i32(&q, 30000);
    SL_EQ(call(sl_kafka_create_topics, 1), -1);
    int32_t n;
    SL_FAIL(sl_broker_partition_count(ctx.broker, "never", &n), SL_ENOENT);
    sl_kw_i32(&q, 1); /* DescribeConfigs v1 without include_synonyms */
    sl_kw_i8(&q, 4);
    sl_kw_string(&q, "7");
    sl_kw_i32(&q, -1);
    SL_EQ(call(sl_kafka_describe_configs, 1), -1);
}

static void all_in_order(void) {
    open_broker();
    find_coordinator_answers_itself();
    create_topics_checks_and_creates();
    describe_configs_filters_and_marks_defaults();
    delete_topics_spares_internal_ones();
    join_makes_a_leader();
    join_refusals();
    sync_and_heartbeat();
    commit_and_fetch_offsets();
    list_and_describe_groups();
    leave_then_tool_commit();
    malformed_requests_are_refused();
    close_broker();
}

SL_TESTS({"kafka group, offset and admin APIs over one broker", all_in_order})

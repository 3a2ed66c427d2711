/* A librdkafka client for the Kafka-compatibility tests, in C as applications use it:
 *
 *   rdkafka_client produce BOOTSTRAP TOPIC N      idempotent, acks=all; prints delivered count
 *   rdkafka_client consume BOOTSTRAP TOPIC GROUP N  subscribes, reads up to N records (or until
 *                                                  5 s pass with nothing new), commits
 *                                                  on revocation and at the end, prints
 *                                                  "<records> <partitions,...>" and exits */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (failures++ < 3)
            fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

static rd_kafka_conf_t *conf_for(const char *bootstrap) {
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    return c;
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v) {
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", k, err);
        exit(2);
    }
}

static int produce(const char *bootstrap, const char *topic, int n) {
    char err[256], key[32], value[64];
    rd_kafka_conf_t *c = conf_for(bootstrap);
    set(c, "enable.idempotence", "true");
    set(c, "acks", "all");
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "k%d", i % 13);
        snprintf(value, sizeof(value), "r%d", i);
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                 RD_KAFKA_V_VALUE(value, strlen(value)),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 30000);
    rd_kafka_destroy(rk);
    printf("%d\n", n - failures);
    return failures ? 1 : 0;
}

/* What careful applications do: commit what was consumed before giving partitions up, so the
 * next owner starts exactly there (without it, a rebalance replays the uncommitted records). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        return;
    }
    rd_kafka_commit(rk, NULL, 0);
    rd_kafka_assign(rk, NULL);
}

static int consume(const char *bootstrap, const char *topic, const char *group, int n) {
    char err[256];
    rd_kafka_conf_t *c = conf_for(bootstrap);
    set(c, "group.id", group);
    set(c, "auto.offset.reset", "earliest");
    set(c, "enable.auto.commit", "false");
    set(c, "session.timeout.ms", "6000");
    rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    int got = 0, idle = 0;
    while (got < n && idle < 50) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL) {
            idle++;
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            got++;
            idle = 0;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_assignment(rk, &parts);
    rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
    printf("%d ", got);
    for (int i = 0; i < parts->cnt; i++)
        printf("%s%d", i ? "," : "", parts->elems[i].partition);
    printf("\n");
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        fprintf(stderr, "commit failed: %s\n", rd_kafka_err2str(cerr));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "produce") == 0)
        return produce(argv[2], argv[3], atoi(argv[4]));
    if (argc == 6 && strcmp(argv[1], "consume") == 0)
        return consume(argv[2], argv[3], argv[4], atoi(argv[5]));
    fprintf(stderr, "usage: rdkafka_client produce BOOTSTRAP TOPIC N | consume BOOTSTRAP TOPIC "
                    "GROUP N\n");
    return 2;
}

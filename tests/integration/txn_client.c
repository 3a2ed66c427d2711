/* A transactional producer driven by the integration tests (test_transactions.py), through
 * the public client API only.
 *
 *   txn_client BROKER TXN_ID TOPIC COUNT MODE [LABEL]
 *
 * Sends COUNT records keyed "k<i>" with value "<LABEL>-<i>" in one transaction, then by MODE:
 *   commit   commits it
 *   abort    aborts it
 *   hang     prints "sent" once every record is acknowledged and sleeps (the test kills it)
 *   fenced   makes a second producer with the same id before committing: the first one's
 *            commit must fail with SL_EFENCED, and the second commits records "<LABEL>b-<i>"
 *   offsets  also consumes TOPIC's partition 0 as group "txn-group" and commits its position
 *            inside the transaction, then commits
 *   zombie   as offsets, but the consumer leaves its group before the commit: the commit must
 *            be refused (prints "refused: <why>"), and the transaction is aborted
 * Prints "committed", "aborted" or "fenced" and exits 0 when the step did what it should. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/client.h"

static sl_producer *make_producer(const char *broker, const char *txn_id) {
    char err[512];
    sl_conf *conf = sl_conf_new();
    if (sl_conf_set(conf, "bootstrap.servers", broker, err, sizeof(err)) ||
        sl_conf_set(conf, "transactional.id", txn_id, err, sizeof(err)) ||
        sl_conf_set(conf, "transaction.timeout.ms", "10000", err, sizeof(err))) {
        fprintf(stderr, "txn_client: %s\n", err);
        exit(2);
    }
    sl_producer *p;
    if (sl_producer_new(conf, &p, err, sizeof(err))) {
        fprintf(stderr, "txn_client: cannot make the producer: %s\n", err);
        exit(2);
    }
    return p;
}

static int send_all(sl_producer *p, const char *topic, long count, const char *label) {
    for (long i = 0; i < count; i++) {
        char key[32], value[128];
        snprintf(key, sizeof(key), "k%ld", i);
        snprintf(value, sizeof(value), "%s-%ld", label, i);
        sl_produce_record r = {.topic = topic, .partition = SL_PARTITION_ANY, .key = key,
                               .key_len = strlen(key), .value = value, .value_len = strlen(value)};
        int rc = sl_producer_send(p, &r);
        if (rc) {
            fprintf(stderr, "txn_client: send failed: %s\n", sl_strerror(rc));
            return rc;
        }
    }
    return sl_producer_flush(p, 30000);
}

/* Joins group "txn-group", reads one record of partition 0 and puts the offset after it in the
 * transaction. The consumer stays a member until the transaction commits ('*out'): a member
 * that left may no longer commit. */
static int commit_consumed_offsets(sl_producer *p, const char *broker, const char *topic,
                                   sl_consumer **out) {
    char err[512];
    sl_conf *conf = sl_conf_new();
    if (sl_conf_set(conf, "bootstrap.servers", broker, err, sizeof(err)) ||
        sl_conf_set(conf, "group.id", "txn-group", err, sizeof(err)) ||
        sl_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) ||
        sl_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)))
        return 2;
    sl_consumer *c;
    if (sl_consumer_new(conf, &c, err, sizeof(err))) {
        fprintf(stderr, "txn_client: %s\n", err);
        return 2;
    }
    const char *topics[] = {topic};
    int rc = sl_consumer_subscribe(c, topics, 1, NULL, NULL);
    int64_t last = -1;
    for (int polls = 0; rc == 0 && polls < 100 && last < 0; polls++) {
        const sl_message *m;
        int prc = sl_consumer_poll(c, 100, &m);
        if (prc == 0 && m->partition == 0)
            last = m->offset;
    }
    if (rc == 0 && last >= 0) {
        sl_topic_partition tp = {topic, 0, last + 1};
        rc = sl_producer_send_offsets_to_transaction(p, c, &tp, 1, err, sizeof(err));
        if (rc)
            fprintf(stderr, "txn_client: send offsets: %s\n", err);
        else
            printf("offset %" PRId64 "\n", last + 1);
    }
    *out = c;
    return rc ? rc : last < 0 ? 3 : 0;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: txn_client BROKER TXN_ID TOPIC COUNT MODE [LABEL]\n");
        return 2;
    }
    const char *broker = argv[1], *txn_id = argv[2], *topic = argv[3], *mode = argv[5];
    const char *label = argc > 6 ? argv[6] : "v";
    long count = atol(argv[4]);
    char err[512];
    sl_producer *p = make_producer(broker, txn_id);
    if (send_all(p, topic, count, label))
        return 1;
    int rc = 0;
    if (strcmp(mode, "commit") == 0 || strcmp(mode, "offsets") == 0) {
        sl_consumer *c = NULL;
        if (strcmp(mode, "offsets") == 0 && commit_consumed_offsets(p, broker, topic, &c))
            return 1;
        rc = sl_producer_commit_transaction(p, 30000, err, sizeof(err));
        puts(rc ? err : "committed");
        if (c) {
            sl_consumer_close(c);
            sl_consumer_destroy(c);
        }
    } else if (strcmp(mode, "zombie") == 0) {
        sl_consumer *c = NULL;
        if (commit_consumed_offsets(p, broker, topic, &c))
            return 1;
        sl_consumer_close(c);
        sl_consumer_destroy(c);
        if (sl_producer_commit_transaction(p, 30000, err, sizeof(err)) == 0) {
            fprintf(stderr, "txn_client: a commit with a departed member's offsets went through\n");
            return 1;
        }
        printf("refused: %s\n", err);
        rc = sl_producer_abort_transaction(p, 30000, err, sizeof(err));
        puts(rc ? err : "aborted");
    } else if (strcmp(mode, "abort") == 0) {
        rc = sl_producer_abort_transaction(p, 30000, err, sizeof(err));
        puts(rc ? err : "aborted");
    } else if (strcmp(mode, "hang") == 0) {
        puts("sent");
        fflush(stdout);
        for (;;)
            pause();
    } else if (strcmp(mode, "fenced") == 0) {
        sl_producer *q = make_producer(broker, txn_id);
        int old = sl_producer_commit_transaction(p, 30000, err, sizeof(err));
        if (old != SL_EFENCED) {
            fprintf(stderr, "txn_client: the fenced producer's commit gave %s\n",
                    sl_strerror(old));
            return 1;
        }
        puts("fenced");
        char label2[128];
        snprintf(label2, sizeof(label2), "%sb", label);
        rc = send_all(q, topic, count, label2);
        if (rc == 0)
            rc = sl_producer_commit_transaction(q, 30000, err, sizeof(err));
        puts(rc ? err : "committed");
        sl_producer_destroy(q);
    } else {
        fprintf(stderr, "txn_client: unknown mode %s\n", mode);
        return 2;
    }
    fflush(stdout);
    sl_producer_destroy(p);
    return rc ? 1 : 0;
}

"""Transactions against a real broker: a read_committed consumer sees a committed transaction
whole and an aborted one not at all, never reads past a transaction still open, and a crash, a
dead producer or a second producer with the same transactional id all settle the open
transaction by aborting it. Offsets committed inside a transaction move with it."""

import os
import signal
import subprocess
import textwrap
import time
import unittest

from harness import BrokerTestCase, wait_until


def txn_client():
    return os.path.join(os.environ.get("SLUICE_TEST_BIN_DIR",
                                       os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "build", "tests")), "txn_client")


COMMITTED = ("-X", "isolation.level=read_committed")

# A Kafka transactional producer (librdkafka through python3-confluent-kafka, Debian's, under
# /usr/bin/python3): commit, abort, and consume-transform-produce with the consumer's offset
# in the transaction. Prints what a read_committed reader sees, then the group's offset.
CONFLUENT_TXN = textwrap.dedent('''
    import sys
    from confluent_kafka import Producer, Consumer, TopicPartition
    B, T = sys.argv[1], sys.argv[2]
    p = Producer({"bootstrap.servers": B, "transactional.id": "kafka-txn"})
    p.init_transactions(10)
    p.begin_transaction()
    for i in range(10):
        p.produce(T, key=b"k%d" % i, value=b"C-%d" % i)
    p.commit_transaction(10)
    p.begin_transaction()
    for i in range(10):
        p.produce(T, key=b"k%d" % i, value=b"A-%d" % i)
    p.abort_transaction(10)
    c = Consumer({"bootstrap.servers": B, "group.id": "kg", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(T, 0)])
    m = None
    while m is None or m.error():
        m = c.poll(2)
    p.begin_transaction()
    p.produce(T, key=b"x", value=b"T-0")
    p.send_offsets_to_transaction([TopicPartition(T, 0, m.offset() + 1)],
                                  c.consumer_group_metadata(), 10)
    p.commit_transaction(10)
    c.close()
    r = Consumer({"bootstrap.servers": B, "group.id": "reader", "isolation.level": "read_committed"})
    r.assign([TopicPartition(T, i, 0) for i in range(3)])
    seen, idle = [], 0
    while idle < 6:
        m = r.poll(0.5)
        if m is None:
            idle += 1
        elif not m.error():
            seen.append(m.value().decode())
    print(" ".join(sorted(seen)))
    g = Consumer({"bootstrap.servers": B, "group.id": "kg"})
    print(g.committed([TopicPartition(T, 0)], 10)[0].offset)
''')


class TransactionTest(BrokerTestCase):
    def run_txn(self, txn_id, topic, count, mode, label):
        p = subprocess.run([txn_client(), self.broker.url, txn_id, topic, str(count), mode, label],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, text=True)
        self.assertEqual(p.returncode, 0, "txn_client %s %s: %s%s" % (txn_id, mode, p.stdout,
                                                                      p.stderr))
        return p.stdout

    def spawn_hanging(self, txn_id, topic, count, label):
        """A producer that leaves its transaction open; returns once its records are acked."""
        p = subprocess.Popen([txn_client(), self.broker.url, txn_id, topic, str(count), "hang",
                              label], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._procs.append(p)
        self.assertEqual(p.stdout.readline().strip(), "sent", p.stderr.read() if p.poll() else "")
        return p

    def values(self, topic, *opts):
        return sorted(self.consume(topic, *opts, fmt=r"%v\n"))

    def test_commit_and_abort(self):
        self.start_broker()
        self.create_topic("t", partitions=3)
        self.assertIn("committed", self.run_txn("tx-a", "t", 50, "commit", "A"))
        self.assertIn("aborted", self.run_txn("tx-a", "t", 50, "abort", "B"))
        self.assertIn("committed", self.run_txn("tx-a", "t", 20, "commit", "C"))
        expect = sorted(["A-%d" % i for i in range(50)] + ["C-%d" % i for i in range(20)])
        self.assertEqual(self.values("t", *COMMITTED), expect)
        # read_uncommitted sees everything written, aborted records included; markers never.
        self.assertEqual(len(self.values("t")), 120)
        offsets = [int(line.split()[1]) for line in self.consume("t", fmt=r"%p %o\n")]
        self.assertEqual(len(offsets), 120)
        # Each partition's log holds its records plus one marker per transaction.
        ends = sum(p["end_offset"] for p in self.describe("t")["partitions"])
        self.assertEqual(ends, 120 + 3 * 3)

    def test_open_transaction_holds_readers_and_a_crash_aborts_it(self):
        b = self.start_broker()
        self.create_topic("t", partitions=2)
        self.run_txn("tx-before", "t", 10, "commit", "A")
        hanging = self.spawn_hanging("tx-open", "t", 10, "H")
        self.run_txn("tx-after", "t", 10, "commit", "D")
        # Committed records behind the open transaction wait for it, as in Kafka.
        seen = self.values("t", *COMMITTED)
        self.assertTrue(all(v.startswith("A-") for v in seen), seen)
        self.assertEqual(len(seen), 10)
        hanging.kill()
        b.kill9()
        b.restart()
        self.assertIn("left open by a crash", b.log_text(since_start=True))
        expect = sorted(["A-%d" % i for i in range(10)] + ["D-%d" % i for i in range(10)])
        self.assertEqual(self.values("t", *COMMITTED), expect)

    def test_a_dead_producer_is_aborted_after_its_timeout(self):
        b = self.start_broker()
        self.create_topic("t", partitions=2)
        hanging = self.spawn_hanging("tx-dead", "t", 5, "H")
        self.run_txn("tx-live", "t", 5, "commit", "L")
        hanging.send_signal(signal.SIGKILL)
        hanging.wait()
        began = time.monotonic()
        wait_until(lambda: "open longer than its timeout" in b.log_text(), 30,
                   "the broker to abort the dead producer's transaction")
        took = time.monotonic() - began
        self.assertLess(took, 15)  # transaction.timeout.ms is 10 s in txn_client
        self.assertEqual(self.values("t", *COMMITTED), ["L-%d" % i for i in range(5)])

    def test_a_new_producer_fences_the_old_one(self):
        self.start_broker()
        self.create_topic("t", partitions=2)
        out = self.run_txn("tx-f", "t", 10, "fenced", "F")
        self.assertEqual(out.split(), ["fenced", "committed"])
        self.assertEqual(self.values("t", *COMMITTED), sorted("Fb-%d" % i for i in range(10)))
        # A producer that starts again aborts what its previous incarnation left open.
        self.spawn_hanging("tx-g", "t", 4, "G").kill()
        self.run_txn("tx-g", "t", 4, "commit", "G2")
        self.assertIn("its producer started again", self.broker.log_text())
        self.assertEqual(self.values("t", *COMMITTED),
                         sorted(["Fb-%d" % i for i in range(10)] + ["G2-%d" % i for i in range(4)]))

    def test_kafka_clients_read_committed(self):
        """kcat (librdkafka) with isolation.level=read_committed skips the aborted transaction
        and the markers, through the Kafka protocol's last stable offset and aborted list."""
        self.start_broker()
        self.create_topic("t", partitions=2)
        self.run_txn("tx-k", "t", 20, "commit", "A")
        self.run_txn("tx-k", "t", 20, "abort", "B")
        self.run_txn("tx-k", "t", 10, "commit", "C")

        def kcat(*isolation):
            p = subprocess.run(["kcat", "-b", self.broker.kafka, "-C", "-t", "t", "-e", "-q",
                                "-o", "beginning", "-f", "%s\n"] + list(isolation),
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            return sorted(p.stdout.split())

        self.assertEqual(kcat("-X", "isolation.level=read_committed"),
                         sorted(["A-%d" % i for i in range(20)] + ["C-%d" % i for i in range(10)]))
        self.assertEqual(len(kcat("-X", "isolation.level=read_uncommitted")), 50)

    def test_kafka_transactional_producer(self):
        """librdkafka's transactional producer, unchanged: its committed transaction and the
        offset it sent are there, its aborted one is not."""
        self.start_broker()
        self.create_topic("kt", partitions=3)
        p = subprocess.run(["/usr/bin/python3", "-c", CONFLUENT_TXN, self.broker.kafka, "kt"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        seen, offset = p.stdout.strip().split("\n")
        self.assertEqual(seen.split(), sorted(["C-%d" % i for i in range(10)] + ["T-0"]))
        self.assertGreater(int(offset), 0)
        self.assertIn('"committed_offset":%d' % int(offset),
                      self.cli_ok("group", "describe", "kg", "--json").replace(" ", ""))

    def test_offsets_commit_with_the_transaction(self):
        b = self.start_broker()
        self.create_topic("t", partitions=1)
        out = self.run_txn("tx-o", "t", 10, "offsets", "O")
        committed = int(out.split("offset ")[1].split()[0])
        self.assertGreater(committed, 0)
        desc = self.cli_ok("group", "describe", "txn-group", "--json")
        self.assertIn('"committed_offset":%d' % committed, desc.replace(" ", ""))
        # A member that left its group (a zombie, for the group) may not commit offsets.
        out = self.run_txn("tx-z", "t", 5, "zombie", "Z")
        self.assertIn("no longer a member of its group's current generation", out)
        self.assertIn("aborted", out)
        self.assertNotIn("Z-0", self.values("t", *COMMITTED))
        desc = self.cli_ok("group", "describe", "txn-group", "--json")
        self.assertIn('"committed_offset":%d' % committed, desc.replace(" ", ""))
        # The offset lives in __consumer_offsets inside the transaction: it survives a restart.
        b.stop()
        b.restart()
        desc = self.cli_ok("group", "describe", "txn-group", "--json")
        self.assertIn('"committed_offset":%d' % committed, desc.replace(" ", ""))


if __name__ == "__main__":
    unittest.main()

"""A queue workload in the spirit of Jepsen on three real nodes: an idempotent Kafka producer
(librdkafka, acks=all) sends numbered records while a fault loop, every few seconds, either
kills a random broker with -9 and starts it again, or freezes one (SIGSTOP) for longer than the
cluster's session timeout, which cuts it off from the others as a partition would, and lets it
go on as a leader that has been replaced. Afterwards every partition is read to its end.

Every acknowledged record is there exactly once, at the offset it was acknowledged with
(so no two leaders ever served different records at one offset); per key the order is the
order sent; offsets only go forward; and once the ISRs are whole again every replica holds the
same bytes."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import unittest

from harness import wait_until
from test_cluster import ClusterCase

# Sends records 0..N-1 (key "k<i mod 10>", value "<i>") at about RATE/s and prints one JSON
# line per delivery report: [i, partition, offset] when acknowledged, [i, null, error] when not.
PRODUCER = textwrap.dedent('''
    import json, sys, time
    from confluent_kafka import Producer
    servers, topic, n, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    p = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": 60000, "retry.backoff.ms": 100,
                  "request.timeout.ms": 5000, "socket.timeout.ms": 5000,
                  "topic.metadata.refresh.interval.ms": 1000})
    def report(err, msg):
        i = int(msg.value())
        if err is None:
            print(json.dumps([i, msg.partition(), msg.offset()]), flush=True)
        else:
            print(json.dumps([i, None, str(err)]), flush=True)
    start = time.monotonic()
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=b"k%d" % (i % 10), value=str(i).encode(), on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        ahead = start + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    left = p.flush(90)
    print(json.dumps(["left", left]), flush=True)
''')


class FaultTest(ClusterCase):

    def test_kills_lose_no_acknowledged_record(self):
        nodes = self.start_cluster()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        self.cli_ok("topic", "create", "queue", "--partitions", "3", "--replication", "3",
                    "--config", "min.insync.replicas=2", broker=nodes[0])
        for b in nodes:
            wait_until(lambda: self.in_sync("queue", b, 3), 20, "the topic on every node",
                       interval=0.2)
        records, rate = 30000, 1500.0
        producer = subprocess.Popen(
            ["/usr/bin/python3", "-c", PRODUCER, ",".join(b.kafka for b in nodes), "queue",
             str(records), str(rate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Faults while it sends: a random node killed and started again two seconds later, or
        # frozen for four (past the 3 s session timeout: fenced, its partitions moved).
        seed = int(os.environ.get("SLUICE_FAULT_SEED", "7"))  # another seed, other faults
        rng = random.Random(seed)
        kills = freezes = 0
        deadline = time.monotonic() + records / rate - 4
        while time.monotonic() < deadline and producer.poll() is None:
            time.sleep(2)
            victim = rng.choice(nodes)
            if (kills + freezes) % 2 == 0:
                victim.kill9()
                kills += 1
                time.sleep(2)
                victim.restart()
            else:
                victim.proc.send_signal(signal.SIGSTOP)
                freezes += 1
                time.sleep(4)
                victim.proc.send_signal(signal.SIGCONT)
        out, err = producer.communicate(timeout=180)
        self.assertEqual(producer.returncode, 0, err[-2000:])
        acked, failed = {}, 0
        for line in out.splitlines():
            report = json.loads(line)
            if report[0] == "left":
                self.assertEqual(report[1], 0, "records left unsent")
                continue
            i, partition, offset = report
            if partition is None:
                failed += 1
            else:
                acked[i] = (partition, offset)
        self.assertGreaterEqual(kills, 2)
        self.assertGreaterEqual(freezes, 2)
        self.assertGreater(len(acked), records // 2, "%d failed" % failed)
        # Read every partition to its end once every ISR is whole again.
        for b in nodes:
            wait_until(lambda: self.in_sync("queue", b, 3), 60, "the ISRs whole again",
                       interval=0.3)
        everyone = ",".join(b.url for b in nodes)
        rc, text, err = self.cli("consume", "queue", "--format", r"%p %o %k %v\n", url=everyone,
                                 timeout=120)
        self.assertEqual(rc, 0, err)
        at, seen, last_offset, by_key = {}, {}, {}, {}
        for line in text.splitlines():
            p, o, k, v = line.split(" ", 3)
            p, o, v = int(p), int(o), int(v)
            self.assertGreater(o, last_offset.get(p, -1), "offsets go forward in %d" % p)
            last_offset[p] = o
            at[(p, o)] = v
            seen[v] = seen.get(v, 0) + 1
            by_key.setdefault(k, []).append(v)
        for i, where in acked.items():
            self.assertEqual(seen.get(i), 1, "acknowledged record %d read %s times"
                             % (i, seen.get(i)))
            self.assertEqual(at.get(where), i, "acknowledged at %s, found %s there"
                             % (where, at.get(where)))
        for k, vs in by_key.items():
            self.assertEqual(vs, sorted(vs), "order of key %s" % k)
        print("faults (seed %d): %d kills, %d freezes; %d of %d records acknowledged, %d failed, "
              "%d read" % (seed, kills, freezes, len(acked), records, failed, len(seen)),
              file=sys.stderr)
        self.assertEqual([v for v, n in seen.items() if n > 1], [], "duplicates")
        for p in range(3):
            copies = [self.partition_bytes(b, "queue", p) for b in nodes]
            self.assertEqual(copies[0], copies[1], "queue-%d differs" % p)
            self.assertEqual(copies[0], copies[2], "queue-%d differs" % p)


if __name__ == "__main__":
    unittest.main()

"""Integration tests of Sluice: real sluiced brokers, the real sluice CLI, 127.0.0.1 only.

Run from this directory:  /usr/bin/python3 -m unittest -v test_broker
or as a script:           /usr/bin/python3 test_broker.py --bin-dir ../../build/runtime [-v]
The binaries come from $SLUICE_BIN_DIR when set (CMake sets it for ctest).
"""

import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (BrokerTestCase, LineReader, binary, frame, free_port, now_ms,  # noqa: E402
                     proc_cpu_seconds, recv_response_or_close, wait_until)

FIRST_SEGMENT = "00000000000000000000"

# Native protocol api numbers (runtime/net/native.h).
API_PRODUCE = 1
API_LIST_TOPICS = 9


def log_files(part_dir):
    return sorted(f for f in os.listdir(part_dir) if f.endswith(".log"))


# ---- producing and consuming ---------------------------------------------------------------

class ProduceConsumeTest(BrokerTestCase):

    def test_newcomer_walkthrough(self):
        """The README's first steps: keyed records land per key on one partition, in order."""
        self.start_broker()
        self.create_topic("orders", partitions=6)
        self.produce("orders", ["user1:order-1", "user2:order-2", "user1:order-3"],
                     "--key-sep", ":")
        records = self.consume_records("orders", "--from-beginning")
        self.assertEqual(len(records), 3, records)
        self.assertEqual(sorted((k, v) for _, _, k, v in records),
                         [("user1", "order-1"), ("user1", "order-3"), ("user2", "order-2")])
        user1 = [r for r in records if r[2] == "user1"]
        self.assertEqual(user1[0][3], "order-1", "order-1 must be printed before order-3")
        self.assertEqual(user1[1][3], "order-3")
        self.assertEqual(user1[0][0], user1[1][0], "user1's records on different partitions")
        self.assertLess(user1[0][1], user1[1][1], "offsets of user1's records must increase")

    def test_order_per_key_at_volume(self):
        """20,000 records over 50 keys: one partition per key, produced order kept, no loss or
        duplicate."""
        self.start_broker()
        self.create_topic("volume", partitions=8)
        rng = random.Random(7)
        keys = ["key%02d" % i for i in range(50)]
        seq = {k: 0 for k in keys}
        lines = []
        for _ in range(20000):
            k = rng.choice(keys)
            lines.append("%s:%s-%d" % (k, k, seq[k]))
            seq[k] += 1
        self.produce("volume", lines, "--key-sep", ":")

        records = self.consume_records("volume", "--from-beginning")
        self.assertEqual(len(records), len(lines))
        produced = sorted(tuple(line.split(":", 1)) for line in lines)
        self.assertEqual(sorted((k, v) for _, _, k, v in records), produced,
                         "consumed records differ from the produced ones")
        partition_of, next_seq, last_offset, per_partition = {}, {}, {}, {}
        for p, o, k, v in records:
            self.assertEqual(partition_of.setdefault(k, p), p, "key %s on two partitions" % k)
            n = int(v.rsplit("-", 1)[1])
            self.assertEqual(n, next_seq.get(k, 0), "key %s out of order at %r" % (k, v))
            next_seq[k] = n + 1
            self.assertGreater(o, last_offset.get(p, -1), "offsets not increasing on %d" % p)
            last_offset[p] = o
            per_partition[p] = per_partition.get(p, 0) + 1
        for p, count in per_partition.items():
            self.assertEqual(last_offset[p], count - 1, "gap in the offsets of partition %d" % p)
        self.assertGreaterEqual(len(per_partition), 4, "50 keys should spread over partitions")
        described = self.describe("volume")
        self.assertEqual(sum(p["end_offset"] for p in described["partitions"]), len(lines))

    def test_oversized_record_refused(self):
        """A record over max.message.bytes is refused with a clear message; others still go."""
        self.start_broker()
        self.create_topic("small", configs=["max.message.bytes=1000"])
        rc, _, err = self.cli("produce", "small", input="x" * 5000 + "\n")
        self.assertNotEqual(rc, 0, "a 5000-byte record went into a topic with a 1000-byte limit")
        self.assertTrue("max.message.bytes" in err or "larger" in err,
                        "stderr does not say why: %r" % err)
        self.produce("small", ["tiny"])
        self.assertEqual(self.consume("small", "--from-beginning", fmt=r"%o %v\n"), ["0 tiny"])
        self.assertEqual(self.describe("small")["partitions"][0]["end_offset"], 1)

    def test_data_layout(self):
        """Partition directories hold the three files of their first segment; metadata too."""
        b = self.start_broker()
        self.create_topic("orders", partitions=6)
        self.produce("orders", ["k%d:v%d" % (i, i) for i in range(60)], "--key-sep", ":")
        part = os.path.join(b.data_dir, "orders-3")
        for ext in (".log", ".index", ".timeindex"):
            self.assertTrue(os.path.isfile(os.path.join(part, FIRST_SEGMENT + ext)),
                            "missing %s in %s: %s" % (ext, part, os.listdir(part)))
        for p in range(6):
            self.assertTrue(os.path.isdir(os.path.join(b.data_dir, "orders-%d" % p)))
        self.assertFalse(os.path.exists(os.path.join(b.data_dir, "orders-6")))
        self.assertTrue(os.path.isdir(os.path.join(b.data_dir, "__cluster_metadata-0")))
        with open(os.path.join(b.data_dir, "meta.properties")) as f:
            props = f.read()
        self.assertRegex(props, r"(?m)^version=\d+$")
        self.assertRegex(props, r"(?m)^node\.id=1$")
        sizes = sum(os.path.getsize(os.path.join(b.data_dir, "orders-%d" % p, FIRST_SEGMENT +
                                                 ".log")) for p in range(6))
        described = self.describe("orders")
        self.assertEqual(sum(p["size_bytes"] for p in described["partitions"]), sizes)


# ---- surviving crashes and restarts --------------------------------------------------------

class DurabilityTest(BrokerTestCase):

    def test_kill9_keeps_acknowledged_records(self):
        b = self.start_broker()
        self.create_topic("events")
        n = 5000
        self.produce("events", ["rec-%05d" % i for i in range(n)])  # exit 0: all acknowledged
        b.kill9()
        self.assertEqual(b.proc.returncode, -9)
        b.restart()
        self.assertEqual(self.consume("events", "--from-beginning", fmt=r"%o %v\n"),
                         ["%d rec-%05d" % (i, i) for i in range(n)])
        self.produce("events", ["after-1", "after-2"])
        self.assertEqual(self.consume("events", "--offset", str(n), fmt=r"%o %v\n"),
                         ["%d after-1" % n, "%d after-2" % (n + 1)])

    def _prepare_torn_tail(self):
        """A stopped broker whose 'torn' topic holds 10 records then one more, as two batches.
        Returns (broker, active segment path, its size after the 10)."""
        b = self.start_broker()
        self.create_topic("torn")
        self.produce("torn", ["whole-%d" % i for i in range(10)])
        size_after_ten = self.describe("torn")["partitions"][0]["size_bytes"]
        self.produce("torn", ["last"])
        b.stop()
        seg = os.path.join(b.data_dir, "torn-0", FIRST_SEGMENT + ".log")
        self.assertGreater(os.path.getsize(seg), size_after_ten)
        return b, seg, size_after_ten

    def test_torn_tail_garbage_appended(self):
        b, seg, _ = self._prepare_torn_tail()
        garbage = b"\xde\xad\xbe\xef" * 9 + b"garbage"
        with open(seg, "ab") as f:
            f.write(garbage)
        b.restart()
        log = b.log_text(since_start=True)
        self.assertIn("torn tail", log)
        self.assertIn("cut %d bytes" % len(garbage), log)
        expected = ["%d whole-%d" % (i, i) for i in range(10)] + ["10 last"]
        self.assertEqual(self.consume("torn", "--from-beginning", fmt=r"%o %v\n"), expected)
        self.produce("torn", ["new"])
        self.assertEqual(self.consume("torn", "--offset", "11", fmt=r"%o %v\n"), ["11 new"])
        # and the repaired log survives another restart as it is
        b.stop()
        b.restart()
        self.assertNotIn("torn tail", b.log_text(since_start=True))
        self.assertEqual(self.consume("torn", "--from-beginning", fmt=r"%o %v\n"),
                         expected + ["11 new"])

    def test_torn_tail_truncated(self):
        b, seg, size_after_ten = self._prepare_torn_tail()
        size = os.path.getsize(seg)
        os.truncate(seg, size - 3)  # the last batch ('last') loses its final bytes
        b.restart()
        log = b.log_text(since_start=True)
        self.assertIn("torn tail", log)
        self.assertIn("cut %d bytes" % (size - 3 - size_after_ten), log)
        self.assertEqual(self.consume("torn", "--from-beginning", fmt=r"%o %v\n"),
                         ["%d whole-%d" % (i, i) for i in range(10)])
        self.produce("torn", ["new"])
        self.assertEqual(self.consume("torn", "--from-beginning", fmt=r"%o %v\n")[-1], "10 new")
        self.assertEqual(self.describe("torn")["partitions"][0]["end_offset"], 11)

    def test_sigterm_clean_stop_and_restart(self):
        b = self.start_broker()
        self.create_topic("keep", partitions=2)
        self.produce("keep", ["a:1", "b:2", "c:3", "d:4"], "--key-sep", ":")
        before = sorted(self.consume("keep", "--from-beginning"))
        # a consumer parked in a long poll must not hold the shutdown up
        follower = self.spawn_cli("consume", "keep", "--follow")
        LineReader(follower.stdout)
        took = b.stop()
        self.assertLess(took, 5.0, "SIGTERM took %.1f s" % took)
        self.assertFalse(os.path.exists(b.ready_file), "ready file left behind after SIGTERM")
        self.assertIn("stopped cleanly", b.log_text(since_start=True))
        b.restart()
        self.assertEqual(sorted(self.consume("keep", "--from-beginning")), before)
        self.assertEqual(self.describe("keep")["config"]["retention.ms"], "604800000")

    def test_second_broker_on_same_data_dir_refused(self):
        b = self.start_broker()
        self.create_topic("mine")
        other_ready = os.path.join(b.root, "other-ready.json")
        try:
            p = subprocess.run(b.argv(ready_file=other_ready), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        except subprocess.TimeoutExpired:
            self.fail("a second sluiced on the same data directory kept running")
        err = p.stderr.decode("utf-8", "replace")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("in use", err)
        self.assertFalse(os.path.exists(other_ready))
        self.assertTrue(b.running())
        self.assertEqual(self.cli_ok("topic", "list").split(), ["mine"])


# ---- long polling --------------------------------------------------------------------------

class LongPollTest(BrokerTestCase):

    def test_follow_wakes_on_data_and_idles_quietly(self):
        b = self.start_broker()
        self.create_topic("live")
        self.produce("live", ["old"])  # before the consumer: --follow starts at the end
        consumer = self.spawn_cli("consume", "live", "--follow", "--format", r"%v\n")
        lines = LineReader(consumer.stdout)

        # The consumer is attached once a record produced after its start shows up.
        def attached():
            self.produce("live", ["warm-up"])
            try:
                return lines.get(timeout=1.0)[1]
            except AssertionError:
                return None
        first = wait_until(attached, 15, "the following consumer to print anything")
        self.assertEqual(first, "warm-up", "--follow printed a record from before it started")

        latencies = []
        for i in range(5):
            began = time.monotonic()
            self.produce("live", ["rec-%d" % i])
            arrived, text = lines.get(timeout=2.0)
            while text == "warm-up":  # a late echo of an earlier attempt
                arrived, text = lines.get(timeout=2.0)
            self.assertEqual(text, "rec-%d" % i)
            latencies.append(arrived - began)
        median = statistics.median(latencies)
        self.assertLess(median, 0.300,
                        "records took %s s from produce to output (median %.3f s): the long "
                        "poll does not wake on new data"
                        % (["%.3f" % x for x in latencies], median))

        # Idle with the follower attached: neither process may spin.
        broker_cpu, consumer_cpu, began = (proc_cpu_seconds(b.proc.pid),
                                           proc_cpu_seconds(consumer.pid), time.monotonic())
        time.sleep(2.0)  # the measurement window itself
        elapsed = time.monotonic() - began
        broker_used = (proc_cpu_seconds(b.proc.pid) - broker_cpu) / elapsed
        consumer_used = (proc_cpu_seconds(consumer.pid) - consumer_cpu) / elapsed
        self.assertLess(broker_used, 0.10, "idle sluiced used %.0f%% of a core" % (broker_used * 100))
        self.assertLess(consumer_used, 0.10,
                        "idle 'sluice consume --follow' used %.0f%% of a core" % (consumer_used * 100))
        self.assertIsNone(consumer.poll(), "the following consumer exited")
        self.assertFalse(lines.pending(), "unexpected output while idle")


# ---- admin ---------------------------------------------------------------------------------

class AdminTest(BrokerTestCase):

    def test_topic_admin(self):
        b = self.start_broker()
        self.create_topic("cfg", partitions=3)
        self.produce("cfg", ["a:1", "b:2"], "--key-sep", ":")
        d = self.describe("cfg")
        self.assertEqual(set(d), {"name", "partitions", "config"})
        self.assertEqual(d["name"], "cfg")
        self.assertEqual([p["partition"] for p in d["partitions"]], [0, 1, 2])
        for p in d["partitions"]:
            # 'leader', 'replicas' and 'isr' (the cluster issue's keys) with node ids: one
            # replica, the leader, on a single node
            self.assertEqual(set(p), {"partition", "leader", "replicas", "isr", "start_offset",
                                      "end_offset", "size_bytes"})
            self.assertEqual((p["replicas"], p["isr"]), ([p["leader"]], [p["leader"]]))
            for key in ("start_offset", "end_offset", "size_bytes"):
                self.assertIsInstance(p[key], int)
            self.assertEqual(p["start_offset"], 0)
        self.assertEqual(sum(p["end_offset"] for p in d["partitions"]), 2)
        self.assertTrue(all(isinstance(v, str) for v in d["config"].values()), d["config"])
        self.assertEqual(d["config"]["retention.ms"], "604800000")
        self.assertEqual(d["config"]["cleanup.policy"], "delete")

        out = self.cli_ok("topic", "alter", "cfg", "--config", "retention.ms=3600000")
        self.assertIn('altered topic "cfg"', out)
        self.assertEqual(self.describe("cfg")["config"]["retention.ms"], "3600000")

        rc, _, err = self.cli("topic", "alter", "cfg", "--config", "no.such.key=1")
        self.assertEqual(rc, 1, err)
        self.assertIn("no.such.key", err)
        rc, _, err = self.cli("topic", "alter", "cfg", "--config", "retention.ms=soon",
                              "--config", "segment.bytes=5000")
        self.assertEqual(rc, 1, err)
        self.assertIn("retention.ms", err)
        self.assertEqual(self.describe("cfg")["config"]["segment.bytes"], "1073741824",
                         "a refused alter changed another config")
        rc, _, err = self.cli("topic", "create", "other", "--config", "bogus.key=1")
        self.assertEqual(rc, 1, err)
        self.assertIn("bogus.key", err)
        self.assertNotIn("other", self.cli_ok("topic", "list").split())

        b.stop()
        b.restart()
        self.assertEqual(self.describe("cfg")["config"]["retention.ms"], "3600000",
                         "altered config lost over a restart")

        rc, _, err = self.cli("topic", "create", "cfg")
        self.assertEqual(rc, 1)
        self.assertIn('topic "cfg" already exists', err)

        for bad in ("bad/name", "bad name", "..", "__reserved"):
            rc, _, err = self.cli("topic", "create", bad)
            self.assertEqual(rc, 1, "topic %r was accepted" % bad)
            self.assertIn("topic name", err)
        self.assertEqual(self.cli_ok("topic", "list").split(), ["cfg"])

        out = self.cli_ok("topic", "delete", "cfg")
        self.assertIn('deleted topic "cfg"', out)
        self.assertEqual(self.cli_ok("topic", "list").split(), [])
        leftovers = [e for e in os.listdir(b.data_dir) if e.startswith("cfg")]
        self.assertEqual(leftovers, [], "directories left after delete")
        rc, _, err = self.cli("topic", "delete", "cfg")
        self.assertEqual(rc, 1)
        self.assertIn('topic "cfg" does not exist', err)

        self.create_topic("cfg", partitions=2)
        d = self.describe("cfg")
        self.assertEqual(len(d["partitions"]), 2)
        self.assertEqual([(p["start_offset"], p["end_offset"]) for p in d["partitions"]],
                         [(0, 0), (0, 0)])
        self.assertEqual(d["config"]["retention.ms"], "604800000", "old config came back")
        self.assertEqual(self.consume("cfg", "--from-beginning"), [])
        b.stop()
        b.restart()
        self.assertEqual(len(self.describe("cfg")["partitions"]), 2)
        self.assertEqual(self.consume("cfg", "--from-beginning"), [])

    def test_retention_bytes(self):
        b = self.start_broker(extra_args=["--retention-check-interval-ms", "200"])
        self.create_topic("ret", configs=["segment.bytes=1000", "retention.bytes=3000"])
        n = 600
        self.produce("ret", ["record-%04d-%s" % (i, "x" * 20) for i in range(n)],
                     "--batch-size", "200", "--linger-ms", "0")
        part = os.path.join(b.data_dir, "ret-0")

        # Retention may run several passes while the producer is still writing, and a pass
        # unlinks its files just after it moves the log start; wait for the last pass.
        def trimmed():
            p = self.describe("ret")["partitions"][0]
            done = p["start_offset"] > 0 and p["size_bytes"] <= 3000 + 1500
            return p if done and len(log_files(part)) <= 5 else None
        p = wait_until(trimmed, 20, "retention.bytes to delete old segments", interval=0.1)
        self.assertEqual(p["end_offset"], n)
        self.assertIn("(retention.bytes)", b.log_text())
        # the first segment file is gone and the files left start at the start offset
        self.assertNotIn(FIRST_SEGMENT + ".log", log_files(part))
        self.assertEqual(int(log_files(part)[0][:-4]), p["start_offset"])
        metrics = http_get(b, "/metrics")[1]
        bytes_in = metric(metrics, "sluice_partition_bytes_in_total", topic="ret", partition="0")
        self.assertGreater(bytes_in, 10 * 1000, "too little was produced to need many segments")

        got = self.consume("ret", "--from-beginning", fmt=r"%o %v\n")
        start = self.describe("ret")["partitions"][0]["start_offset"]
        self.assertEqual(len(got), n - start)
        self.assertEqual(got[0], "%d record-%04d-%s" % (start, start, "x" * 20))
        self.assertEqual(got[-1], "%d record-%04d-%s" % (n - 1, n - 1, "x" * 20))

    def test_retention_ms(self):
        b = self.start_broker(extra_args=["--retention-check-interval-ms", "200"])
        self.create_topic("expire", configs=["segment.bytes=1000"])
        n = 200
        self.produce("expire", ["value-%04d-%s" % (i, "y" * 20) for i in range(n)],
                     "--batch-size", "200", "--linger-ms", "0")
        part = os.path.join(b.data_dir, "expire-0")
        self.assertGreaterEqual(len(log_files(part)), 3, log_files(part))
        self.assertEqual(self.describe("expire")["partitions"][0]["start_offset"], 0)

        self.cli_ok("topic", "alter", "expire", "--config", "retention.ms=1")

        def expired():
            p = self.describe("expire")["partitions"][0]
            return p if p["start_offset"] == p["end_offset"] else None
        p = wait_until(expired, 20, "retention.ms=1 to expire every record", interval=0.1)
        self.assertEqual(p["end_offset"], n)
        wait_until(lambda: len(log_files(part)) == 1, 10, "old segment files to be removed")
        self.assertEqual(log_files(part), ["%020d.log" % n])
        self.assertIn("(retention.ms)", b.log_text())
        self.assertEqual(self.consume("expire", "--from-beginning"), [])
        self.cli_ok("topic", "alter", "expire", "--config", "retention.ms=604800000")
        self.produce("expire", ["fresh"])
        self.assertEqual(self.consume("expire", "--from-beginning", fmt=r"%o %v\n"),
                         ["%d fresh" % n])


# ---- the CLI -------------------------------------------------------------------------------

class CliTest(BrokerTestCase):

    def test_usage_errors_and_help(self):
        for args in (["--bogus"], ["topic", "list", "--bogus"], ["consume"],
                     ["produce", "t", "--key-sep", "ab"], ["consume", "t", "--offset", "x"],
                     ["consume", "t", "--from-beginning", "--offset", "3"], ["nosuchcommand"]):
            rc, out, err = harness.run_cli(args, url="tcp://127.0.0.1:1")
            self.assertEqual(rc, 2, "sluice %s: exit %d, stderr %r" % (" ".join(args), rc, err))
            self.assertIn("sluice:", err)
        for args in (["--help"], ["topic", "--help"], ["produce", "--help"],
                     ["consume", "--help"], ["topic", "create", "--help"]):
            rc, out, err = harness.run_cli(args)
            self.assertEqual(rc, 0, "sluice %s: exit %d" % (" ".join(args), rc))
            self.assertTrue(out.startswith("Usage: "), out)
            self.assertEqual(err, "")

    def test_unreachable_broker(self):
        port = free_port()
        url = "tcp://127.0.0.1:%d" % port
        for args, stdin in ((["topic", "list"], None), (["consume", "t"], None),
                            (["produce", "t"], "x\n"), (["topic", "describe", "t"], None)):
            began = time.monotonic()
            rc, _, err = harness.run_cli(args, url=url, input=stdin, timeout=30)
            self.assertEqual(rc, 1, "sluice %s: %r" % (" ".join(args), err))
            self.assertIn("cannot reach broker at %s" % url, err)
            self.assertLess(time.monotonic() - began, 10)
        # and through $SLUICE_BROKER
        rc, _, err = harness.run_cli(["topic", "list"], env={"SLUICE_BROKER": url})
        self.assertEqual(rc, 1)
        self.assertIn("cannot reach broker at %s" % url, err)

    def test_missing_topic(self):
        self.start_broker()
        for args in (["consume", "nosuch"], ["topic", "describe", "nosuch"],
                     ["topic", "alter", "nosuch", "--config", "retention.ms=1"],
                     ["topic", "delete", "nosuch"]):
            rc, _, err = self.cli(*args)
            self.assertEqual(rc, 1, "sluice %s: %r" % (" ".join(args), err))
            self.assertIn('topic "nosuch" does not exist', err)

    def test_consume_positions(self):
        self.start_broker()
        self.create_topic("pos")
        self.produce("pos", ["early-%d" % i for i in range(5)])
        early_ts = [int(t) for t in self.consume("pos", fmt=r"%T\n")]
        self.assertEqual(len(early_ts), 5)
        # a time after every early record (the producer stamps records with the wall clock)
        noted = wait_until(lambda: now_ms() > max(early_ts) and now_ms(), 5, "the clock")
        wait_until(lambda: now_ms() > noted, 5, "the clock")
        self.produce("pos", ["late-%d" % i for i in range(5)])

        values = lambda *opts: self.consume("pos", *opts, fmt=r"%v\n")  # noqa: E731
        self.assertEqual(values(), ["early-%d" % i for i in range(5)] +
                         ["late-%d" % i for i in range(5)])
        self.assertEqual(values("--offset", "7"), ["late-2", "late-3", "late-4"])
        self.assertEqual(values("--offset", "-2"), ["late-3", "late-4"])
        self.assertEqual(values("--offset", "10"), [])
        self.assertEqual(values("--from-time", str(noted)), ["late-%d" % i for i in range(5)])
        self.assertEqual(values("--from-time", str(min(early_ts))),
                         ["early-%d" % i for i in range(5)] + ["late-%d" % i for i in range(5)])
        self.assertEqual(values("--from-time", "-1h"),
                         ["early-%d" % i for i in range(5)] + ["late-%d" % i for i in range(5)])
        self.assertEqual(values("--from-time", "2001-01-01T00:00:00Z"),
                         ["early-%d" % i for i in range(5)] + ["late-%d" % i for i in range(5)])
        self.assertEqual(values("--from-time", str(now_ms() + 3600 * 1000)), [])
        self.assertEqual(values("--max", "3"), ["early-0", "early-1", "early-2"])
        self.assertEqual(values("--offset", "4", "--max", "2"), ["early-4", "late-0"])
        self.assertEqual(values("--max", "0"), [])

        # relative times: records of 1.5 s ago are out of "-1s", those just made are in
        late_max = max(int(t) for t in self.consume("pos", fmt=r"%T\n"))
        wait_until(lambda: now_ms() > late_max + 1500, 5, "the clock", interval=0.05)
        self.produce("pos", ["newest"])
        self.assertEqual(values("--from-time", "-1s"), ["newest"])

        # --follow with --max stops by itself
        self.assertEqual(self.consume("pos", "--follow", "--offset", "0", "--max", "2",
                                      fmt=r"%v\n"), ["early-0", "early-1"])


# ---- HTTP ----------------------------------------------------------------------------------

def http_get(broker, path):
    url = "http://%s%s" % (broker.http, path)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode("utf-8"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), e.headers


def metric(text, name, **labels):
    """The value of one sample of the Prometheus text 'text', or None."""
    wanted = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"(?m)^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(wanted)), text)
    return float(m.group(1)) if m else None


class HttpTest(BrokerTestCase):

    def test_health_and_metrics(self):
        b = self.start_broker()
        status, body, headers = http_get(b, "/health")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"status": "ok"})
        self.assertIn("application/json", headers.get("Content-Type", ""))

        self.create_topic("orders", partitions=2)
        self.produce("orders", ["r%d" % i for i in range(7)], "--partition", "0")
        self.produce("orders", ["s%d" % i for i in range(3)], "--partition", "1")
        self.assertEqual(len(self.consume("orders", "--from-beginning")), 10)

        status, text, headers = http_get(b, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("text/plain", headers.get("Content-Type", ""))
        self.assertEqual(metric(text, "sluice_partition_records_in_total",
                                topic="orders", partition="0"), 7)
        self.assertEqual(metric(text, "sluice_partition_records_in_total",
                                topic="orders", partition="1"), 3)
        self.assertEqual(metric(text, "sluice_partition_high_watermark",
                                topic="orders", partition="0"), 7)
        self.assertEqual(metric(text, "sluice_partition_records_out_total",
                                topic="orders", partition="0"), 7)
        self.assertRegex(text, r"(?m)^sluice_request_duration_seconds_count\{[^}]*\} \d+$")
        produces = metric(text, "sluice_request_duration_seconds_count",
                          protocol="native", request="produce")
        self.assertIsNotNone(produces)
        self.assertGreaterEqual(produces, 2)
        self.assertRegex(text, r"(?m)^sluice_up 1$")

        status, _, _ = http_get(b, "/no/such/page")
        self.assertEqual(status, 404)


# ---- hostile input -------------------------------------------------------------------------

class GarbageTest(BrokerTestCase):

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.broker.native_port()), timeout=5)
        self.addCleanup(s.close)
        return s

    def assert_still_serving(self, tag):
        self.assertTrue(self.broker.running(), "sluiced died after %s" % tag)
        self.assertEqual(self.cli_ok("topic", "list", timeout=30).split(), ["alive"])
        self.produce("alive", ["ping-" + tag])
        self.assertEqual(self.consume("alive", "--offset", "-1", fmt=r"%v\n"), ["ping-" + tag])
        self.pings.append("ping-" + tag)

    def assert_answered_or_closed(self, sock, tag, correlation_id):
        kind, cid, body = recv_response_or_close(sock, 2.0)
        if kind == "frame":
            self.assertEqual(cid, correlation_id, "%s: answer for another request" % tag)
            self.assertTrue(len(body) >= 2 and body[0] in (0x92, 0x93, 0x94, 0x95, 0x96, 0xdc),
                            "%s: answer is not an array: %r" % (tag, body[:16]))
            self.assertNotEqual(body[1], 0x00, "%s: answered with status 0 (success)" % tag)
        return kind

    def test_garbage_requests(self):
        self.start_broker()
        self.create_topic("alive")
        self.pings = []
        follower = self.spawn_cli("consume", "alive", "--follow", "--offset", "0",
                                  "--format", r"%v\n")
        follower_lines = LineReader(follower.stdout)

        # sanity: a well-formed LIST_TOPICS frame gets its answer, so the framing is right
        s = self.connect()
        s.sendall(frame(API_LIST_TOPICS, b"\x90", correlation_id=77))
        kind, cid, body = recv_response_or_close(s, 5.0)
        self.assertEqual((kind, cid), ("frame", 77))
        self.assertIn(b"alive", body)
        s.close()

        # (a) random bytes
        s = self.connect()
        s.sendall(random.Random(1).randbytes(4096))
        s.close()
        self.assert_still_serving("random")

        # (b) a length prefix of 4 GiB - 1: over the frame limit, the broker hangs up
        s = self.connect()
        s.sendall(b"\xff\xff\xff\xff" + b"\x00" * 64)
        kind, _, _ = recv_response_or_close(s, 2.0)
        self.assertEqual(kind, "closed")
        s.close()
        self.assert_still_serving("huge-length")

        # (c) a valid frame around junk msgpack, for several apis
        for api in (API_PRODUCE, 2, 3, 4, 5, 6, 7, 8, API_LIST_TOPICS):
            junks = [b"\xc1\xc1\xc1junk", b"\x93\x01", b"\xa5hello", b"\x90trailing"]
            if api != API_LIST_TOPICS:  # its body is an array of nothing in particular
                junks.append(b"\x94\xff\xff\xff\x91\x92\xa5alive\x91\x92\x00\xc4\x03abc")
            for junk in junks:
                s = self.connect()
                s.sendall(frame(api, junk, correlation_id=1000 + api))
                self.assert_answered_or_closed(s, "junk for api %d" % api, 1000 + api)
                s.close()
        self.assert_still_serving("junk-msgpack")

        # (c') containers claiming billions of items in a few bytes
        for bomb in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                     b"\x91" * 5000, b"\xc6\xff\xff\xff\xf0ab"):
            s = self.connect()
            s.sendall(frame(API_PRODUCE, bomb, correlation_id=5))
            self.assert_answered_or_closed(s, "bomb %r" % bomb[:6], 5)
            s.close()
        self.assert_still_serving("msgpack-bombs")

        # (d) a truncated frame, then close
        s = self.connect()
        s.sendall((100).to_bytes(4, "big") + b"\x00\x00\x00\x09\x00\x01\x90")
        s.close()
        self.assert_still_serving("truncated")

        # (e) a well-formed frame for an api that does not exist
        s = self.connect()
        s.sendall(frame(999, b"\x90", correlation_id=4242))
        kind = self.assert_answered_or_closed(s, "api 999", 4242)
        if kind == "frame":
            # the connection is still usable afterwards
            s.sendall(frame(API_LIST_TOPICS, b"\x90", correlation_id=4243))
            kind2, cid2, _ = recv_response_or_close(s, 2.0)
            self.assertEqual((kind2, cid2), ("frame", 4243))
        s.close()
        self.assert_still_serving("unknown-api")

        # (f) frames too short to hold an id and an api
        for size in (0, 2, 5):
            s = self.connect()
            s.sendall(size.to_bytes(4, "big") + b"\x00" * size)
            self.assert_answered_or_closed(s, "%d-byte frame" % size, 0)
            s.close()
        self.assert_still_serving("short-frames")

        # (g) a well-formed produce request whose batch bytes are junk: refused, nothing stored
        end_before = self.describe("alive")["partitions"][0]["end_offset"]
        batch = b"\x00" * 16
        for acks in (b"\x01", b"\x00"):  # acks=1 is answered; acks=0 gets no answer at all
            # [acks, 5000, [["alive", [[0, bin(batch)]]]]]
            body = (b"\x93" + acks + b"\xcd\x13\x88\x91\x92\xa5alive\x91\x92\x00\xc4"
                    + bytes([len(batch)]) + batch)
            s = self.connect()
            s.sendall(frame(API_PRODUCE, body, correlation_id=31))
            if acks == b"\x01":
                kind, cid, answer = recv_response_or_close(s, 2.0)
                self.assertEqual((kind, cid), ("frame", 31))
                self.assertIn(b"corrupt", answer)
            # the connection still serves the next request
            s.sendall(frame(API_LIST_TOPICS, b"\x90", correlation_id=32))
            self.assertEqual(recv_response_or_close(s, 2.0)[:2], ("frame", 32))
            s.close()
        self.assertEqual(self.describe("alive")["partitions"][0]["end_offset"], end_before)
        self.assert_still_serving("corrupt-batch")

        # the consumer that was following all along saw every ping
        seen = []
        while len(seen) < len(self.pings):
            seen.append(follower_lines.get(timeout=5)[1])
        self.assertEqual(seen, self.pings)
        self.assertIsNone(follower.poll(), "the following consumer died")


def main(argv):
    rest = [argv[0]]
    i = 1
    while i < len(argv):
        if argv[i] == "--bin-dir" and i + 1 < len(argv):
            harness.set_bin_dir(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--bin-dir="):
            harness.set_bin_dir(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    unittest.main(module="__main__", argv=rest)


if __name__ == "__main__":
    main(sys.argv)

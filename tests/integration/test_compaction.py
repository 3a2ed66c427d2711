"""Integration test of log compaction: a real sluiced with a short cleaner interval, the real CLI.

Run from this directory:  /usr/bin/python3 -m unittest -v test_compaction
The binaries come from $SLUICE_BIN_DIR when set (CMake sets it for ctest).
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BrokerTestCase, wait_until  # noqa: E402

KEYS = 25
UPDATES = 40


class CompactionTest(BrokerTestCase):

    def read_all(self, topic):
        """[(offset, key, value)] of the whole topic, as a consumer from the beginning sees it."""
        records = []
        for line in self.consume(topic, "--from-beginning", fmt=r"%o %k %v\n"):
            o, k, v = line.split(" ", 2)
            records.append((int(o), k, v))
        return records

    def test_latest_value_per_key_survives(self):
        b = self.start_broker(extra_args=["--cleaner-interval-ms", "200"])
        # Small segments so there are several to clean; segment.ms rolls the last one too, so
        # that every update ends up in a cleanable segment, and a low dirty ratio lets the
        # cleaner take that last little segment as well.
        self.create_topic("kv", configs=["cleanup.policy=compact", "segment.bytes=2000",
                                         "segment.ms=1000", "min.cleanable.dirty.ratio=0.01"])
        self.assertEqual(self.describe("kv")["config"]["cleanup.policy"], "compact")
        lines, latest = [], {}
        for u in range(UPDATES):
            for k in range(KEYS):
                offset = u * KEYS + k  # one partition, produced in order
                key = "key-%02d" % k
                lines.append("%s:value-%03d-of-%s-%s" % (key, u, key, "z" * 20))
                latest[key] = (offset, lines[-1].split(":", 1)[1])
        self.produce("kv", lines, "--key-sep", ":", "--batch-size", "300", "--linger-ms", "0")
        total = len(lines)
        self.assertEqual(self.describe("kv")["partitions"][0]["end_offset"], total)

        def compacted():
            records = self.read_all("kv")
            keys = [k for _, k, _ in records]
            return records if len(keys) == len(set(keys)) == KEYS else None
        records = wait_until(compacted, 60, "the cleaner to keep one record per key",
                             interval=0.2)
        # Each key exactly once, with its newest value, at the offset it was written at.
        self.assertEqual({k: (o, v) for o, k, v in records}, latest)
        self.assertEqual([o for o, _, _ in records], sorted(latest[k][0] for k in latest))
        self.assertRegex(b.log_text(), r"kv-0: compacted \d+ segments?: kept \d+ of \d+ records")
        p = self.describe("kv")["partitions"][0]
        self.assertEqual((p["start_offset"], p["end_offset"]), (0, total))

        # New records after compaction get new offsets; the end never moved back.
        self.produce("kv", ["key-00:after"], "--key-sep", ":")
        self.assertEqual(self.read_all("kv")[-1], (total, "key-00", "after"))

        # A compacted topic refuses records without a key, saying why (in the broker's log: the
        # CLI reports the status only).
        rc, _, err = self.cli("produce", "kv", input="no key here\n")
        self.assertNotEqual(rc, 0)
        self.assertIn("not delivered", err)
        self.assertIn("every record needs a key", b.log_text())
        self.assertEqual(self.describe("kv")["partitions"][0]["end_offset"], total + 1)

        # Compaction is on disk: a restart reads the same.
        before = self.read_all("kv")
        b.stop()
        b.restart()
        self.assertEqual(self.read_all("kv"), before)
        part = os.path.join(b.data_dir, "kv-0")
        self.assertIn("cleaner-offset-checkpoint", os.listdir(part))
        self.assertEqual([f for f in os.listdir(part) if ".cleaned" in f or f.endswith(".swap")],
                         [])

    def test_cleanup_policy_values(self):
        self.start_broker(extra_args=["--cleaner-interval-ms", "200"])
        self.create_topic("both", configs=["cleanup.policy=delete,compact",
                                           "min.cleanable.dirty.ratio=0.25",
                                           "delete.retention.ms=1000",
                                           "min.compaction.lag.ms=0"])
        config = self.describe("both")["config"]
        self.assertEqual(config["cleanup.policy"], "delete,compact")
        self.assertEqual(config["min.cleanable.dirty.ratio"], "0.25")
        self.assertEqual(config["delete.retention.ms"], "1000")
        self.assertEqual(config["min.compaction.lag.ms"], "0")
        for bad in ("cleanup.policy=compacted", "min.cleanable.dirty.ratio=1.5",
                    "min.cleanable.dirty.ratio=half", "delete.retention.ms=-1"):
            rc, _, err = self.cli("topic", "alter", "both", "--config", bad)
            self.assertEqual(rc, 1, "%s was accepted" % bad)
            self.assertIn(bad.split("=")[0], err)
        self.cli_ok("topic", "alter", "both", "--config", "cleanup.policy=compact,delete")
        self.assertEqual(self.describe("both")["config"]["cleanup.policy"], "compact,delete")


if __name__ == "__main__":
    unittest.main()

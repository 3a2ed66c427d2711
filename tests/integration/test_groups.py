"""Consumer groups against a real broker and real `sluice consume --group` processes: sharing
partitions, independent groups, failover of a killed member, cooperative rebalancing, commits
that survive restarts, replay by reset, and the group admin commands."""

import json
import os
import re
import signal
import threading
import time
import unittest
import urllib.request

from harness import BrokerTestCase, LineReader, now_ms, wait_until

# Short timeouts so failover happens within a test: a member silent for 2 s is removed.
FAST = ["-X", "session.timeout.ms=2000", "-X", "heartbeat.interval.ms=200",
        "-X", "auto.commit.interval.ms=200"]


def keyed(count, keys=10, start=0):
    return ["k%d:%d" % (i % keys, i) for i in range(start, start + count)]


class StderrLines:
    """Collects a process's stderr lines on a thread (rebalance events with -v)."""

    def __init__(self, stream):
        self.lines = []
        self._lock = threading.Lock()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for raw in stream:
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def snapshot(self):
        with self._lock:
            return list(self.lines)


def events(lines):
    """The member's rebalance events in order: [("assigned"|"revoked"|"lost", set), ...]."""
    out = []
    for line in lines:
        m = re.search(r": (assigned|revoked|lost) (.*)$", line)
        if m:
            parts = set() if m.group(2) == "(nothing)" else set(m.group(2).split(","))
            out.append((m.group(1), parts))
    return out


def taken_back(evs):
    """Partitions a member revoked and was given again later: what an eager rebalance does
    and a cooperative one must not."""
    back = set()
    for i, (kind, parts) in enumerate(evs):
        if kind == "revoked":
            for later_kind, later in evs[i + 1:]:
                if later_kind == "assigned":
                    back |= parts & later
    return back


class GroupTest(BrokerTestCase):

    def member(self, group, topic, *extra):
        p = self.spawn_cli("consume", topic, "--group", group, "--follow", "-v",
                           "--format", r"%p %o %v\n", *FAST, *extra)
        return p, LineReader(p.stdout), StderrLines(p.stderr)

    def group_json(self, group):
        return json.loads(self.cli_ok("group", "describe", group, "--json"))

    def owned(self, group):
        """{member_id: set("topic-partition")} from group describe."""
        g = self.group_json(group)
        return {m["id"]: {"%s-%d" % (p["topic"], p["partition"]) for p in m["partitions"]}
                for m in g["members"]}

    def wait_stable(self, group, members, partitions, timeout=20):
        def ready():
            rc, out, _ = self.cli("group", "describe", group, "--json")
            if rc != 0:
                return False  # the first member has not reached the coordinator yet
            g = json.loads(out)
            owned = [p for m in g["members"] for p in m["partitions"]]
            return (g["state"] == "Stable" and len(g["members"]) == members and
                    len(owned) == partitions)
        wait_until(ready, timeout, "group %s to settle with %d members" % (group, members))

    def collect(self, reader, count, timeout=20):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(reader.get(0.2)[1])
            except Exception:
                continue
        return got

    def test_members_share_partitions_and_groups_are_independent(self):
        self.start_broker()
        self.create_topic("orders", partitions=6)
        a = self.member("logistics", "orders")
        b = self.member("logistics", "orders")
        self.wait_stable("logistics", 2, 6)
        owned = self.owned("logistics")
        sets = list(owned.values())
        self.assertEqual(len(sets[0] & sets[1]), 0, "a partition has two owners")
        self.assertEqual(len(sets[0]) + len(sets[1]), 6)
        self.assertEqual(sorted(len(s) for s in sets), [3, 3])
        self.produce("orders", keyed(600), "--key-sep", ":")
        got_a = self.collect(a[1], 600, timeout=5)
        got_b = self.collect(b[1], 600 - len(got_a), timeout=10)
        values = sorted(int(line.split()[2]) for line in got_a + got_b)
        self.assertEqual(values, list(range(600)), "each record once across the group")
        self.assertTrue(got_a and got_b, "both members consumed")
        # A second group reads everything on its own, from the beginning.
        out = self.cli_ok("consume", "orders", "--group", "analytics", "--format", r"%v\n")
        self.assertEqual(sorted(int(v) for v in out.split()), list(range(600)))

    def test_killed_member_partitions_move_without_skipping(self):
        self.start_broker()
        self.create_topic("orders", partitions=4)
        self.produce("orders", keyed(400), "--key-sep", ":")
        a = self.member("g", "orders")
        b = self.member("g", "orders")
        self.wait_stable("g", 2, 4)
        seen = self.collect(a[1], 400, timeout=4) + self.collect(b[1], 400, timeout=4)
        self.assertEqual(len(set(line.split()[2] for line in seen)), 400)
        time.sleep(0.6)  # auto commits (every 200 ms) record what was consumed
        os.kill(b[0].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        self.produce("orders", keyed(400, start=400), "--key-sep", ":")
        self.wait_stable("g", 1, 4, timeout=15)
        took = time.monotonic() - killed_at
        self.assertLess(took, 2.0 + 3.0, "failover took %.1f s" % took)
        after = self.collect(a[1], 400, timeout=15)
        values = {int(line.split()[2]) for line in after}
        # At least once: every record written after the kill reaches the survivor; duplicates
        # may only come from the last uncommitted poll of the dead member.
        self.assertTrue(set(range(400, 800)) <= values,
                        "records skipped: %s" % sorted(set(range(400, 800)) - values)[:10])
        self.assertTrue(all(v >= 300 for v in values), "replayed far more than uncommitted")

    def test_cooperative_join_revokes_nothing_kept(self):
        self.start_broker()
        self.create_topic("t", partitions=6)
        coop = ["-X", "partition.assignment.strategy=cooperative-sticky"]
        a = self.member("c", "t", *coop)
        self.wait_stable("c", 1, 6)
        b = self.member("c", "t", *coop)
        self.wait_stable("c", 2, 6)
        c = self.member("c", "t", *coop)
        self.wait_stable("c", 3, 6)
        owned = self.owned("c")
        self.assertEqual(sorted(len(p) for p in owned.values()), [2, 2, 2])
        for name, member in (("a", a), ("b", b)):
            evs = events(member[2].snapshot())
            self.assertTrue(any(k == "revoked" for k, _ in evs), "%s gave nothing up" % name)
            self.assertEqual(taken_back(evs), set(),
                             "member %s revoked partitions it kept: %s" % (name, evs))

    def test_eager_join_takes_everything_back(self):
        """The control for the test above: with range, joins revoke and reassign everything,
        which the same check sees."""
        self.start_broker()
        self.create_topic("t", partitions=6)
        a = self.member("e", "t")
        self.wait_stable("e", 1, 6)
        self.member("e", "t")
        self.wait_stable("e", 2, 6)
        wait_until(lambda: taken_back(events(a[2].snapshot())), 10, "a's rebalance events")

    def test_restarted_consumer_continues_from_its_commit(self):
        self.start_broker()
        self.create_topic("t", partitions=3)
        self.produce("t", keyed(90), "--key-sep", ":")
        first = self.cli_ok("consume", "t", "--group", "g", "--max", "40", "--format", r"%v\n")
        self.assertEqual(len(first.split()), 40)
        # The broker restarts in between: commits live in __consumer_offsets.
        self.broker.stop()
        self.broker.start()
        rest = self.cli_ok("consume", "t", "--group", "g", "--format", r"%v\n")
        values = sorted(int(v) for v in first.split() + rest.split())
        self.assertEqual(values, list(range(90)), "each record exactly once over the two runs")
        self.assertEqual(self.cli_ok("consume", "t", "--group", "g"), "")

    def test_reset_to_time_replays_exactly_from_then(self):
        self.start_broker()
        self.create_topic("t", partitions=2)
        self.produce("t", keyed(50), "--key-sep", ":")
        time.sleep(0.05)
        then = now_ms()
        time.sleep(0.05)
        self.produce("t", keyed(30, start=50), "--key-sep", ":")
        self.cli_ok("consume", "t", "--group", "g", "--format", r"%v\n")
        plan = self.cli_ok("group", "reset", "g", "--topic", "t", "--to-datetime", str(then),
                           "--dry-run")
        self.assertIn("dry run", plan)
        self.assertEqual(self.cli_ok("consume", "t", "--group", "g"), "", "dry run changed it")
        self.cli_ok("group", "reset", "g", "--topic", "t", "--to-datetime", str(then))
        replay = self.cli_ok("consume", "t", "--group", "g", "--format", r"%v\n").split()
        self.assertEqual(sorted(int(v) for v in replay), list(range(50, 80)))
        self.cli_ok("group", "reset", "g", "--topic", "t", "--to-earliest")
        self.assertEqual(len(self.cli_ok("consume", "t", "--group", "g").split()), 80)

    def test_admin_commands_and_refusals(self):
        self.start_broker()
        self.create_topic("t", partitions=2)
        self.produce("t", keyed(20), "--key-sep", ":")
        self.cli_ok("consume", "t", "--group", "g", "--max", "5")
        g = self.group_json("g")
        self.assertEqual(set(g), {"group", "state", "protocol", "generation", "coordinator",
                                  "members", "offsets"})
        self.assertEqual(g["state"], "Empty")
        self.assertEqual(g["coordinator"], 1, "a single broker coordinates every group")
        lag = sum(o["lag"] for o in g["offsets"])
        self.assertEqual(lag, 15)
        for o in g["offsets"]:
            self.assertEqual(set(o), {"topic", "partition", "committed_offset", "end_offset",
                                      "lag", "lag_ms"})
            self.assertEqual(o["lag"], o["end_offset"] - o["committed_offset"])
            if o["lag"]:
                self.assertGreater(o["lag_ms"], 0)
        metrics = urllib.request.urlopen("http://%s/metrics" % self.broker.http).read().decode()
        lines = [l for l in metrics.splitlines() if l.startswith('sluice_group_lag_records{group="g"')]
        self.assertEqual(sum(int(l.split()[-1]) for l in lines), 15)
        self.assertIn("g\tEmpty", self.cli_ok("group", "list"))
        # With a live member, reset and delete are refused.
        member = self.member("g", "t")
        self.wait_stable("g", 1, 2)
        rc, _, err = self.cli("group", "reset", "g", "--topic", "t", "--to-earliest")
        self.assertEqual(rc, 1)
        self.assertIn("active member", err)
        rc, _, err = self.cli("group", "delete", "g")
        self.assertEqual(rc, 1)
        self.assertIn("active member", err)
        member[0].send_signal(signal.SIGTERM)
        self.assertEqual(member[0].wait(10), 0)
        wait_until(lambda: self.group_json("g")["state"] == "Empty", 10, "the member to leave")
        self.assertIn('deleted group "g"', self.cli_ok("group", "delete", "g"))
        rc, _, err = self.cli("group", "describe", "g")
        self.assertEqual(rc, 1)
        self.assertIn('group "g" does not exist', err)
        rc, _, err = self.cli("consume", "t", "--group", "g", "--from-beginning")
        self.assertEqual(rc, 2)


if __name__ == "__main__":
    unittest.main()

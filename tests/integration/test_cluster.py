"""Cluster membership on three real sluiced processes: the controllers elect a leader of the
metadata quorum (Raft), every broker registers its address there and every node learns every
other's; a kill -9 of the leader gives the quorum a new one within seconds, and the node comes
back, registers its new address and is up again. Bad --controllers values are refused with a
sentence, and a node without them is a cluster of one."""

import json
import os
import re
import shutil
import socket
import subprocess
import signal
import time
import types
import unittest

from harness import BrokerTestCase, LineReader, binary, free_port, wait_until
from test_broker import http_get, metric
from test_pipelines import TEST_PLUGINS


class ClusterCase(BrokerTestCase):
    """Three nodes of a cluster on this machine, and how to look at them."""

    def start_cluster(self, n=3, extra=()):
        # The controller ports are picked free and bound a moment later by sluiced; another
        # test running beside may take one in between. Only that is retried.
        for attempt in range(3):
            ports = [free_port() for _ in range(n)]
            self.controllers = ",".join("%d@127.0.0.1:%d" % (i + 1, p)
                                        for i, p in enumerate(ports))
            self.nodes = []
            try:
                for i in range(n - 1):
                    self.nodes.append(self.start_broker(extra_args=[
                        "--node-id", str(i + 1), "--controllers", self.controllers] + list(extra)))
                # The last one takes the same from a config file.
                config = os.path.join(self.temp_dir(), "node.conf")
                with open(config, "w") as f:
                    f.write("# node %d\nnode-id = %d\ncontrollers %s\n"
                            % (n, n, self.controllers))
                self.nodes.append(self.start_broker(extra_args=["--config", config] +
                                                    list(extra)))
                return self.nodes
            except AssertionError as e:
                if attempt == 2 or "in use, or not an address of this host" not in str(e):
                    raise
                for b in self.nodes:
                    b.kill9()
                self.broker = None

    def status(self, node):
        rc, out, err = self.cli("cluster", "status", "--json", broker=node)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def settled(self, node, expect_up):
        """The status seen from 'node' once a leader is known and 'expect_up' brokers answer
        at the addresses they run on now."""
        s = self.status(node)
        urls = {b.node_id: b.url for b in self.nodes if b.running()}
        up = [m for m in s["nodes"] if m["status"] == "up" and urls.get(m["node_id"]) == m["url"]]
        return s if s["controller"] and len(up) == expect_up else None

    def in_sync(self, topic, node, replicas):
        """The topic as 'node' describes it once every partition has a leader and
        'replicas' in-sync replicas."""
        rc, out, _ = self.cli("topic", "describe", topic, "--json", broker=node)
        if rc != 0:
            return None  # not known there yet
        d = json.loads(out)
        ok = all(p["leader"] > 0 and len(p["isr"]) == replicas for p in d["partitions"])
        return d if ok else None

    def partition_bytes(self, node, topic, partition):
        """The concatenated segment files of a partition's replica on 'node'."""
        path = os.path.join(node.data_dir, "%s-%d" % (topic, partition))
        data = b""
        for name in sorted(os.listdir(path)):
            if name.endswith(".log"):
                with open(os.path.join(path, name), "rb") as f:
                    data += f.read()
        return data


    def shout_pipeline(self, partitions, instances):
        """Three nodes with the test plugins, topics words and loud (replicated 3 times, the
        leaders one per node) and pipeline "shout" upper-casing words into loud, deployed
        through node 1. The nodes."""
        nodes = self.start_cluster(extra=["--plugin-path", TEST_PLUGINS])
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        for topic in ("words", "loud"):
            self.cli_ok("topic", "create", topic, "--partitions", str(partitions),
                        "--replication", "3", broker=nodes[0])
            d = wait_until(lambda: self.in_sync(topic, nodes[1], 3), 20, topic + " in sync",
                           interval=0.2)
            self.assertEqual(sorted({p["leader"] for p in d["partitions"]}), [1, 2, 3])
        # Deployed once every supervisor sees the three nodes: instances are then placed
        # once, not moved as nodes come up.
        for b in nodes:
            wait_until(lambda: b.log_text().rsplit("nodes answering: ", 1)[-1].startswith(
                "1, 2, 3;"), 20, "node %d to see every node" % b.node_id, interval=0.2)
        path = os.path.join(self.temp_dir(), "shout.lua")
        with open(path, "w") as f:
            f.write('return { name = "shout", processors = {\n'
                    '  { name = "upper", input = "words", output = "loud", plugin = "upper",\n'
                    '    instances = %d } } }\n' % instances)
        self.cli_ok("pipeline", "deploy", path, "--plugin-path", TEST_PLUGINS, broker=nodes[0])
        return nodes

    def instance_nodes(self, url):
        """{instance: node} of the running instances of shout's stage, from pipeline status."""
        rc, out, _ = self.cli("pipeline", "status", "shout", "--json", url=url)
        if rc != 0:
            return {}
        return {i["instance"]: i["node"] for i in json.loads(out)["stages"][0]["instances"]
                if i["state"] == "running"}

    def ipc_requests(self, nodes):
        return [metric(http_get(b, "/metrics")[1], "sluice_native_requests_total",
                       transport="ipc") for b in nodes]


class ClusterTest(ClusterCase):

    def test_members_register_and_survive_the_leaders_death(self):
        nodes = self.start_cluster()
        s = wait_until(lambda: self.settled(nodes[2], 3), 20, "3 brokers up with a leader",
                       interval=0.2)
        self.assertEqual(s["voters"], 3)
        self.assertEqual(sorted(m["node_id"] for m in s["nodes"]), [1, 2, 3])
        # Topics go through the metadata log: every node knows them, and leaders are spread.
        self.create_topic("orders", partitions=3, broker=nodes[0])
        led = wait_until(lambda: (lambda x: x if sum(x.values()) == 3 else None)(
            {m["node_id"]: m["partitions_led"] for m in self.status(nodes[1])["nodes"]}), 10,
            "the new topic's leaders seen from another node", interval=0.1)
        self.assertEqual(led, {1: 1, 2: 1, 3: 1})
        # Every node knows every other's address, and the same leader.
        for b in nodes:
            other = self.status(b)
            self.assertEqual({m["node_id"]: m["url"] for m in other["nodes"]},
                             {m["node_id"]: m["url"] for m in s["nodes"]})
        leader = nodes[s["controller"] - 1]
        survivor = nodes[s["controller"] % 3]
        leader.kill9()
        began = time.monotonic()
        s2 = wait_until(lambda: (lambda x: x if x["controller"] not in (0, leader.node_id)
                                 else None)(self.status(survivor)), 10,
                        "a new leader of the metadata quorum", interval=0.1)
        took = time.monotonic() - began
        self.assertLess(took, 5, "failover took %.1f s" % took)
        down = [m for m in s2["nodes"] if m["status"] == "down"]
        self.assertEqual([m["node_id"] for m in down], [leader.node_id])
        # A client bootstraps from a list, passing over the dead node.
        rc, text, err = self.cli("cluster", "status", url="%s,%s" % (leader.url, survivor.url))
        self.assertEqual(rc, 0, err)
        self.assertIn("2 of 3 brokers up", text)
        self.assertIn("node %d leads" % s2["controller"], text)
        # It comes back on a new address, registers it through the new leader, and is up.
        leader.restart()
        s3 = wait_until(lambda: self.settled(survivor, 3), 20, "the old leader back, up",
                        interval=0.2)
        self.assertIn(leader.url, [m["url"] for m in s3["nodes"]])
        line = "registered in the cluster as broker %d at %s" % (leader.node_id, leader.url)
        wait_until(lambda: line in leader.log_text(since_start=True), 5, line, interval=0.1)

    def test_replicated_partitions_fail_over_without_losing_an_acknowledged_record(self):
        nodes = self.start_cluster()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        out = self.cli_ok("topic", "create", "events", "--partitions", "3", "--replication", "3",
                          broker=nodes[1])
        self.assertIn('created topic "events"', out)
        d = wait_until(lambda: self.in_sync("events", nodes[2], 3), 20, "3 in-sync replicas",
                       interval=0.2)
        self.assertEqual(sorted(p["leader"] for p in d["partitions"]), [1, 2, 3])
        for p in d["partitions"]:
            self.assertEqual(sorted(p["replicas"]), [1, 2, 3])
        everyone = ",".join(b.url for b in nodes)
        first = ["k%d v%d" % (i % 50, i) for i in range(3000)]
        self.cli_ok("produce", "events", "--key-sep", " ", "-X", "acks=all",
                    input="".join(l + "\n" for l in first), url=everyone)
        # Kill the leader of partition 0: a follower from its ISR takes over.
        victim = nodes[d["partitions"][0]["leader"] - 1]
        survivor = nodes[victim.node_id % 3]
        victim.kill9()
        began = time.monotonic()
        after = wait_until(lambda: (lambda x: x if x["partitions"][0]["leader"] not in
                                    (victim.node_id, -1) else None)(
                                        self.describe("events", broker=survivor)), 15,
                           "a new leader for events-0", interval=0.1)
        took = time.monotonic() - began
        self.assertLess(took, 8, "partition failover took %.1f s" % took)
        self.assertNotIn(victim.node_id, after["partitions"][0]["isr"])
        second = ["k%d w%d" % (i % 50, i) for i in range(3000)]
        alive = ",".join(b.url for b in nodes if b is not victim)
        self.cli_ok("produce", "events", "--key-sep", " ", "-X", "acks=all",
                    input="".join(l + "\n" for l in second), url=alive, timeout=60)
        rc, text, err = self.cli("consume", "events", "--format", r"%p %o %k %v\n",
                                 url=alive, timeout=60)
        self.assertEqual(rc, 0, err)
        values = [line.split(" ", 3)[3] for line in text.splitlines()]
        self.assertEqual(sorted(values), sorted(l.split(" ")[1] for l in first + second))
        # Per key, the order produced.
        by_key = {}
        for line in text.splitlines():
            p, o, k, v = line.split(" ", 3)
            by_key.setdefault(k, []).append(v)
        for k, vs in by_key.items():
            self.assertEqual(vs, [l.split(" ")[1] for l in first + second
                                  if l.split(" ")[0] == k], k)
        # It comes back, catches up and rejoins every ISR; then the replicas hold the same
        # bytes at the same offsets.
        victim.restart()
        wait_until(lambda: self.in_sync("events", survivor, 3), 30, "the ISRs whole again",
                   interval=0.3)
        for p in range(3):
            copies = [self.partition_bytes(b, "events", p) for b in nodes]
            self.assertTrue(copies[0], "events-%d is empty" % p)
            self.assertEqual(copies[0], copies[1], "events-%d differs" % p)
            self.assertEqual(copies[0], copies[2], "events-%d differs" % p)

    def test_group_coordinator_moves_with_its_offsets_partition(self):
        nodes = self.start_cluster()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        everyone = types.SimpleNamespace(url=",".join(b.url for b in nodes))
        self.cli_ok("topic", "create", "jobs", "--partitions", "4", "--replication", "3",
                    broker=nodes[0])
        wait_until(lambda: self.in_sync("jobs", nodes[1], 3), 20, "jobs in sync", interval=0.2)
        self.cli_ok("produce", "jobs", "-X", "acks=all", url=everyone.url,
                    input="".join("a%d\n" % i for i in range(400)))
        fast = ["-X", "session.timeout.ms=3000", "-X", "heartbeat.interval.ms=300",
                "-X", "auto.commit.interval.ms=200"]
        members = [self.spawn_cli("consume", "jobs", "--group", "g", "--follow",
                                  "--format", r"%p %o %v\n", *fast, broker=everyone)
                   for _ in range(2)]
        readers = [LineReader(m.stdout) for m in members]

        def group():
            rc, out, _ = self.cli("group", "describe", "g", "--json", url=everyone.url)
            return json.loads(out) if rc == 0 else None

        def stable_with(n):
            g = group()
            ok = (g and g["state"] == "Stable" and len(g["members"]) == n and
                  sum(len(m["partitions"]) for m in g["members"]) == 4)
            return g if ok else None

        g = wait_until(lambda: stable_with(2), 30, "the group to settle", interval=0.3)
        # __consumer_offsets was created through the controller, replicated like user topics.
        offsets = wait_until(lambda: self.in_sync("__consumer_offsets", nodes[0], 3), 20,
                             "__consumer_offsets in sync", interval=0.3)
        self.assertEqual(len(offsets["partitions"]), 50)
        coordinator = g["coordinator"]
        self.assertIn(coordinator, [1, 2, 3])
        seen = set()

        def drain():
            for r in readers:
                while r.pending():
                    line = r.get(0.05)[1]
                    if line is None:
                        break
                    seen.add(line.split()[2])
            return seen
        wait_until(lambda: len(drain()) >= 400, 30, "the first 400 records", interval=0.2)
        # Every partition committed to its end before the coordinator dies.
        wait_until(lambda: (lambda x: x and all(o["lag"] == 0 for o in x["offsets"]) and
                            len(x["offsets"]) == 4)(group()), 20, "commits of the first 400",
                   interval=0.3)
        victim = nodes[coordinator - 1]
        victim.kill9()
        alive = types.SimpleNamespace(url=",".join(b.url for b in nodes if b is not victim))
        began = time.monotonic()
        moved = wait_until(lambda: (lambda x: x if x and x["coordinator"] != coordinator
                                    else None)(stable_with(2)), 30,
                           "a new coordinator with both members back", interval=0.3)
        took = time.monotonic() - began
        self.assertNotEqual(moved["coordinator"], victim.node_id)
        # The new coordinator loaded the commits from its copy: nothing consumed is owed.
        self.assertEqual(len(moved["offsets"]), 4, moved)
        self.cli_ok("produce", "jobs", "-X", "acks=all", url=alive.url,
                    input="".join("b%d\n" % i for i in range(400)))
        wait_until(lambda: len(drain()) >= 800, 30, "the next 400 records", interval=0.2)
        self.assertEqual(seen, {"a%d" % i for i in range(400)} | {"b%d" % i for i in range(400)})
        wait_until(lambda: (lambda x: x and all(o["lag"] == 0 for o in x["offsets"]))(group()),
                   20, "commits of the next 400", interval=0.3)
        for m in members:
            m.send_signal(signal.SIGTERM)
            m.wait(timeout=20)
        # A new member of the group starts where the group left off: nothing left to read.
        self.assertEqual(self.cli_ok("consume", "jobs", "--group", "g", url=alive.url), "")
        rc, text, err = self.cli("group", "list", url=alive.url)
        self.assertEqual(rc, 0, err)
        self.assertIn("g\t", text)
        self.assertLess(took, 20, "the group took %.1f s to move" % took)

    def test_a_kafka_consumer_group_follows_its_coordinator(self):
        from confluent_kafka import Consumer, KafkaException
        nodes = self.start_cluster()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        self.cli_ok("topic", "create", "clicks", "--partitions", "3", "--replication", "3",
                    broker=nodes[0])
        wait_until(lambda: self.in_sync("clicks", nodes[1], 3), 20, "clicks in sync",
                   interval=0.2)
        everyone = ",".join(b.url for b in nodes)
        self.cli_ok("produce", "clicks", "-X", "acks=all", url=everyone,
                    input="".join("a%d\n" % i for i in range(300)))
        c = Consumer({"bootstrap.servers": ",".join(b.kafka for b in nodes), "group.id": "kg",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        try:
            c.subscribe(["clicks"])
            got = set()

            def settle(want, timeout):
                """Polls until 'want' distinct values came and a commit left no lag. A member
                the new coordinator does not know rejoins when it commits, and then reads
                again from the group's last commit (at least once)."""
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    m = c.poll(0.5)
                    if m is not None and not m.error():
                        got.add(m.value().decode())
                        continue
                    if len(got) < want:
                        continue
                    try:
                        c.commit(asynchronous=False)
                    except KafkaException:
                        continue  # NOT_COORDINATOR, or the rejoin comes first
                    rc, out, _ = self.cli("group", "describe", "kg", "--json", url=alive)
                    g = json.loads(out) if rc == 0 else None
                    if g and g["offsets"] and all(o["lag"] == 0 and o["end_offset"] >= 0
                                                  for o in g["offsets"]):
                        return g
                self.fail("the group did not settle: %d of %d values" % (len(got), want))

            alive = everyone
            g = settle(300, 60)
            self.assertEqual(got, {"a%d" % i for i in range(300)})
            self.assertEqual(sum(o["committed_offset"] for o in g["offsets"]), 300)
            victim = nodes[g["coordinator"] - 1]
            victim.kill9()
            alive = ",".join(b.url for b in nodes if b is not victim)
            self.cli_ok("produce", "clicks", "-X", "acks=all", url=alive, timeout=60,
                        input="".join("b%d\n" % i for i in range(300)))
            g = settle(600, 90)
            self.assertEqual(got, {"a%d" % i for i in range(300)} |
                             {"b%d" % i for i in range(300)})
        finally:
            c.close()
        # The new coordinator loaded the group's commits from its copy of __consumer_offsets.
        self.assertNotEqual(g["coordinator"], victim.node_id)
        self.assertEqual(sum(o["committed_offset"] for o in g["offsets"]), 600)

    def test_a_pipeline_instance_reads_its_own_node_over_ipc_and_the_others_over_tcp(self):
        nodes = self.shout_pipeline(partitions=3, instances=1)
        everyone = ",".join(b.url for b in nodes)
        self.cli_ok("produce", "words", "--key-sep", ":", "-X", "acks=all", url=everyone,
                    input="".join("k%d:w%d\n" % (i, i) for i in range(300)))
        got = wait_until(lambda: (lambda out: out if len(out) >= 300 else None)(
            self.cli_ok("consume", "loud", "--format", r"%v\n", url=everyone).split()), 60,
            "300 upper-cased records", interval=0.5)
        self.assertEqual(sorted(got), sorted("W%d" % i for i in range(300)))
        # The one instance runs on one node (placed there, whichever was deployed to). It read
        # the partition that node leads over ipc://; those the two others lead it can only have
        # reached over TCP.
        ipc = self.ipc_requests(nodes)
        self.assertEqual(sorted(v > 0 for v in ipc), [False, False, True], ipc)

    def test_pipeline_instances_spread_over_the_nodes_and_leave_a_dead_one(self):
        nodes = self.shout_pipeline(partitions=6, instances=3)
        everyone = ",".join(b.url for b in nodes)

        def loud(n):
            out = self.cli_ok("consume", "loud", "--format", r"%v\n", url=alive, timeout=60)
            return set(out.split()) if len(set(out.split())) >= n else None

        alive = everyone
        self.cli_ok("produce", "words", "--key-sep", ":", "-X", "acks=all", url=alive,
                    input="".join("k%d:a%d\n" % (i, i) for i in range(300)))
        got = wait_until(lambda: loud(300), 60, "300 records through", interval=0.5)
        self.assertEqual(got, {"A%d" % i for i in range(300)})
        # One instance on each node: each talks to its own node over ipc://.
        placed = wait_until(lambda: (lambda x: x if len(x) == 3 else None)(
            self.instance_nodes(alive)), 20, "3 instances running", interval=0.3)
        self.assertEqual(sorted(placed.values()), [1, 2, 3])
        ipc = self.ipc_requests(nodes)
        self.assertTrue(all(v > 0 for v in ipc), ipc)
        # A node dies: the survivors place its instance on one of them, and records go on
        # flowing (at least once: the dead instance's uncommitted records come again).
        victim = nodes[2]
        victim.kill9()
        alive = ",".join(b.url for b in nodes[:2])
        for b in nodes[:2]:
            wait_until(lambda: "nodes answering: 1, 2;" in b.log_text(), 20,
                       "node %d to see node 3 gone" % b.node_id, interval=0.3)
        self.cli_ok("produce", "words", "--key-sep", ":", "-X", "acks=all", url=alive,
                    timeout=60, input="".join("k%d:b%d\n" % (i, i) for i in range(300)))
        got = wait_until(lambda: loud(600), 90, "600 records through", interval=0.5)
        self.assertEqual(got, {"A%d" % i for i in range(300)} | {"B%d" % i for i in range(300)})
        # The dead node's instance started again on a survivor: all three run on nodes 1 and 2.
        started = set()
        for b in nodes[:2]:
            started |= set(re.findall(r"shout/upper/(\d): started", b.log_text()))
        self.assertEqual(started, {"0", "1", "2"})
        placed = wait_until(lambda: (lambda x: x if len(x) == 3 else None)(
            self.instance_nodes(alive)), 20, "3 instances running again", interval=0.3)
        self.assertEqual(set(placed.values()), {1, 2})

    def test_producers_bootstrapped_at_different_nodes_do_not_share_an_id(self):
        nodes = self.start_cluster()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        self.cli_ok("topic", "create", "one", "--replication", "3", broker=nodes[0])
        wait_until(lambda: self.in_sync("one", nodes[0], 3), 20, "one in sync", interval=0.2)
        # Each node hands out producer ids; the same id from two nodes would make the second
        # producer's batches look like retries of the first's, acknowledged and dropped.
        for b in nodes:
            self.cli_ok("produce", "one", "-X", "acks=all", broker=b,
                        input="".join("n%d-%d\n" % (b.node_id, i) for i in range(50)))
        got = self.cli_ok("consume", "one", "--format", r"%v\n", broker=nodes[0]).split()
        self.assertEqual(sorted(got), sorted("n%d-%d" % (b.node_id, i) for b in nodes
                                             for i in range(50)))

    def test_a_replica_behind_the_leaders_log_start_starts_over_there(self):
        nodes = self.start_cluster(extra=["--retention-check-interval-ms", "200"])
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        self.cli_ok("topic", "create", "short", "--replication", "3", "--config",
                    "segment.bytes=1000", "--config", "retention.bytes=3000", broker=nodes[0])
        d = wait_until(lambda: self.in_sync("short", nodes[0], 3), 20, "short in sync",
                       interval=0.2)
        leader = nodes[d["partitions"][0]["leader"] - 1]
        follower = next(b for b in nodes if b is not leader)
        follower.kill9()
        alive = ",".join(b.url for b in nodes if b is not follower)
        self.cli_ok("produce", "short", "-X", "acks=all", "-X", "batch.size=200",
                    "-X", "linger.ms=0", url=alive, timeout=60,
                    input="".join("r%04d-%s\n" % (i, "x" * 20) for i in range(600)))
        # Retention on the leader deletes the segments the follower never had.
        start = wait_until(lambda: (lambda p: p["start_offset"] if p["start_offset"] > 0
                                    else None)(self.describe("short", broker=leader)
                                               ["partitions"][0]),
                           20, "the leader's log to start past 0", interval=0.2)
        follower.restart()
        wait_until(lambda: self.in_sync("short", leader, 3), 30, "the follower back in the ISR",
                   interval=0.3)
        self.assertIn("starting over from there", follower.log_text())
        p = wait_until(lambda: (lambda x: x if x["end_offset"] == 600 else None)(
            self.describe("short", broker=follower)["partitions"][0]), 20,
            "the follower's copy to reach the end", interval=0.2)
        self.assertGreaterEqual(p["start_offset"], start)
        self.assertEqual(self.partition_bytes(follower, "short", 0)[-2000:],
                         self.partition_bytes(leader, "short", 0)[-2000:])

    def test_acks_all_is_refused_below_min_insync_replicas(self):
        nodes = self.start_cluster()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        self.cli_ok("topic", "create", "strict", "--replication", "3", "--config",
                    "min.insync.replicas=3", broker=nodes[0])
        d = wait_until(lambda: self.in_sync("strict", nodes[0], 3), 20, "3 in-sync replicas",
                       interval=0.2)
        leader = nodes[d["partitions"][0]["leader"] - 1]
        follower = [b for b in nodes if b is not leader][0]
        follower.kill9()
        wait_until(lambda: self.in_sync("strict", leader, 2), 15, "the ISR down to 2",
                   interval=0.2)
        rc, out, err = self.cli("produce", "strict", "-X", "acks=all", "-X",
                                "delivery.timeout.ms=2000", input="refused\n", url=leader.url)
        self.assertNotEqual(rc, 0)
        self.assertIn("not enough in-sync replicas", err)
        # acks=1 does not wait for the ISR.
        self.cli_ok("produce", "strict", "-X", "acks=1", input="taken\n", url=leader.url)
        follower.restart()
        wait_until(lambda: self.in_sync("strict", leader, 3), 30, "the ISR whole again",
                   interval=0.3)
        self.cli_ok("produce", "strict", "-X", "acks=all", input="accepted\n", url=leader.url)
        values = [r[3] for r in self.consume_records("strict", broker=leader)]
        self.assertEqual(values, ["taken", "accepted"])

    def test_rebalance_moves_replicas_onto_a_new_broker_while_producing(self):
        ports = [free_port() for _ in range(3)]
        controllers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(ports))
        self.nodes = [self.start_broker(extra_args=["--node-id", str(i + 1), "--controllers",
                                                    controllers]) for i in range(2)]
        wait_until(lambda: self.settled(self.nodes[0], 2), 20, "2 brokers up", interval=0.2)
        self.cli_ok("topic", "create", "grow", "--partitions", "6", "--replication", "2",
                    broker=self.nodes[0])
        first = ["%d" % i for i in range(20000)]
        self.cli_ok("produce", "grow", input="".join(v + "\n" for v in first),
                    url=self.nodes[0].url)
        # A third broker joins; the rebalance gives it its share while a producer goes on.
        self.nodes.append(self.start_broker(extra_args=["--node-id", "3", "--controllers",
                                                        controllers]))
        wait_until(lambda: self.settled(self.nodes[0], 3), 20, "3 brokers up", interval=0.2)
        everyone = ",".join(b.url for b in self.nodes)
        second = ["%d" % i for i in range(20000, 40000)]
        producer = subprocess.Popen(
            [binary("sluice"), "-b", everyone, "produce", "grow", "--acks", "all",
             "--linger-ms", "20"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        out = self.cli_ok("cluster", "rebalance", "--wait", url=everyone, timeout=60)
        self.assertIn("partitions are moving", out)
        self.assertIn("every partition is where it belongs", out)
        _, err = producer.communicate("".join(v + "\n" for v in second), timeout=60)
        self.assertEqual(producer.returncode, 0, err)
        d = wait_until(lambda: self.in_sync("grow", self.nodes[2], 2), 20, "ISRs of 2",
                       interval=0.2)
        held = {1: 0, 2: 0, 3: 0}
        led = {1: 0, 2: 0, 3: 0}
        for p in d["partitions"]:
            self.assertEqual(len(p["replicas"]), 2)
            self.assertEqual(sorted(p["isr"]), sorted(p["replicas"]))
            self.assertEqual(p["leader"], p["replicas"][0])
            led[p["leader"]] += 1
            for r in p["replicas"]:
                held[r] += 1
        self.assertEqual(held, {1: 4, 2: 4, 3: 4})
        # A node a replica moved away from removed its copy.
        for p in d["partitions"]:
            for b in self.nodes:
                path = os.path.join(b.data_dir, "grow-%d" % p["partition"])
                wait_until(lambda: os.path.isdir(path) == (b.node_id in p["replicas"]), 10,
                           "grow-%d on node %d only if a replica" % (p["partition"], b.node_id),
                           interval=0.1)
        self.assertEqual(led, {1: 2, 2: 2, 3: 2})
        values = [r[3] for r in self.consume_records("grow", broker=self.nodes[2])]
        self.assertEqual(sorted(values, key=int), first + second)
        # Asked again, nothing moves.
        self.assertIn("0 partitions are moving", self.cli_ok("cluster", "rebalance", url=everyone))

    def test_a_recreated_topic_survives_a_restart(self):
        nodes = self.start_cluster()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up", interval=0.2)
        everyone = ",".join(b.url for b in nodes)
        for values in (["old%d" % i for i in range(100)], ["new%d" % i for i in range(50)]):
            if values[0] == "new0":
                self.cli_ok("topic", "delete", "again", url=everyone)
                wait_until(lambda: all(self.cli("topic", "describe", "again", broker=b)[0] != 0
                                       for b in nodes), 10, "the topic gone everywhere",
                           interval=0.1)
            self.cli_ok("topic", "create", "again", "--replication", "3", url=everyone)
            for b in nodes:
                wait_until(lambda: self.in_sync("again", b, 3), 20, "the topic everywhere",
                           interval=0.1)
            self.cli_ok("produce", "again", "--acks", "all",
                        input="".join(v + "\n" for v in values), url=everyone)
        # The restarted node replays create, delete, create: the first must not take (nor the
        # delete remove) the directory the second owns.
        nodes[1].stop()
        nodes[1].restart()
        wait_until(lambda: self.settled(nodes[0], 3), 20, "3 brokers up again", interval=0.2)
        wait_until(lambda: self.in_sync("again", nodes[0], 3), 20, "the ISR whole", interval=0.2)
        copies = [self.partition_bytes(b, "again", 0) for b in nodes]
        self.assertTrue(copies[1])
        self.assertEqual(copies[1], copies[0])
        self.assertEqual(copies[1], copies[2])
        values = [r[3] for r in self.consume_records("again", broker=nodes[1])]
        self.assertEqual(values, ["new%d" % i for i in range(50)])

    def test_bad_controllers_are_refused_and_one_node_is_a_cluster_of_one(self):
        single = self.start_broker()
        text = self.cli_ok("cluster", "status", broker=single)
        self.assertIn("a single node", text)
        self.assertIn("1 of 1 brokers up", text)
        data = self.temp_dir()
        port = free_port()
        for listen, controllers, why in [
                ("127.0.0.1", "1@localhost:9500", "numeric IPv4"),
                ("127.0.0.1", "2@127.0.0.1:9500", "does not name this node"),
                ("127.0.0.1", "1@127.0.0.1:9500,1@127.0.0.1:9501", "appears twice"),
                ("127.0.0.1", "1@127.0.0.1", "not ID@HOST:PORT"),
                ("127.0.0.1", "1x@127.0.0.1:9500", "not ID@HOST:PORT"),
                ("0.0.0.0", "1@127.0.0.1:%d" % port, "not a wildcard")]:
            p = subprocess.run([binary("sluiced"), "--data-dir", data, "--node-id", "1",
                                "--listen", "tcp://%s:0" % listen, "--http-listen", "none",
                                "--kafka-listen", "none", "--controllers", controllers],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0, controllers)
            self.assertIn(why, p.stderr + p.stdout, controllers)
        # A controller address already taken says so.
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            taken = "127.0.0.1:%d" % held.getsockname()[1]
            p = subprocess.run([binary("sluiced"), "--data-dir", data, "--node-id", "1",
                                "--listen", "tcp://127.0.0.1:0", "--http-listen", "none",
                                "--kafka-listen", "none", "--controllers", "1@" + taken],
                               capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("is %s in use" % taken, p.stderr)
        bad = os.path.join(data, "bad.conf")
        with open(bad, "w") as f:
            f.write("node-id = 1\n\ncontrolers = 1@127.0.0.1:9500\n")
        p = subprocess.run([binary("sluiced"), "--config", bad], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad.conf:3: unknown option \"controlers\"", p.stderr)

    def test_a_voter_that_lost_its_quorum_files_does_not_rejoin_blindly(self):
        controllers = "1@127.0.0.1:%d" % free_port()
        b = self.start_broker(extra_args=["--node-id", "1", "--controllers", controllers])
        self.nodes = [b]
        wait_until(lambda: self.settled(b, 1), 20, "a one-node quorum", interval=0.2)
        b.stop()
        shutil.rmtree(os.path.join(b.data_dir, "quorum"))
        p = subprocess.run(b.argv(), capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("is gone although this node has been a voter", p.stderr + p.stdout)


if __name__ == "__main__":
    unittest.main()

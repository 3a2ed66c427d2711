"""Cluster membership on three real sluiced processes: the controllers elect a leader of the
metadata quorum (Raft), every broker registers its address there and every node learns every
other's; a kill -9 of the leader gives the quorum a new one within seconds, and the node comes
back, registers its new address and is up again. Bad --controllers values are refused with a
sentence, and a node without them is a cluster of one."""

import json
import os
import shutil
import socket
import subprocess
import time
import unittest

from harness import BrokerTestCase, binary, free_port, wait_until


class ClusterTest(BrokerTestCase):

    def start_cluster(self, n=3):
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
                        "--node-id", str(i + 1), "--controllers", self.controllers]))
                # The last one takes the same from a config file.
                config = os.path.join(self.temp_dir(), "node.conf")
                with open(config, "w") as f:
                    f.write("# node %d\nnode-id = %d\ncontrollers %s\n"
                            % (n, n, self.controllers))
                self.nodes.append(self.start_broker(extra_args=["--config", config]))
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

    def test_members_register_and_survive_the_leaders_death(self):
        nodes = self.start_cluster()
        s = wait_until(lambda: self.settled(nodes[2], 3), 20, "3 brokers up with a leader",
                       interval=0.2)
        self.assertEqual(s["voters"], 3)
        self.assertEqual(sorted(m["node_id"] for m in s["nodes"]), [1, 2, 3])
        # The leaders each broker holds (topics are still each node's own).
        self.create_topic("orders", partitions=3, broker=nodes[0])
        led = {m["node_id"]: m["partitions_led"] for m in self.status(nodes[1])["nodes"]}
        self.assertEqual(led, {1: 3, 2: 0, 3: 0})
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

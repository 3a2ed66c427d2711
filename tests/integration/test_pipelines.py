"""Pipelines on a real broker: files refused whole with their line, C plugins that crash or fail
kept away from the broker, Lua scripts that fail, loop or eat memory, retry topics and the
dead-letter topic with their headers and replay, an instance killed with -9, and a redeploy
under load. Records are read back with kcat -J, which shows headers exactly."""

import json
import os
import signal
import subprocess
import textwrap
import threading
import time
import unittest

from harness import BrokerTestCase, binary, wait_until

_HERE = os.path.dirname(os.path.abspath(__file__))
TEST_PLUGINS = os.path.join(
    os.environ.get("SLUICE_TEST_BIN_DIR",
                   os.path.join(os.path.dirname(os.path.dirname(_HERE)), "build", "tests")),
    "plugins")


def process_gone(pid):
    """Whether 'pid' has exited (a zombie not reaped yet counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class PipelineTestCase(BrokerTestCase):

    def start(self, *args):
        return self.start_broker(extra_args=["--plugin-path", TEST_PLUGINS] + list(args))

    def write(self, name, text):
        if not hasattr(self, "_dir"):
            self._dir = self.temp_dir()
        path = os.path.join(self._dir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def deploy(self, path):
        return self.cli_ok("pipeline", "deploy", path, "--plugin-path", TEST_PLUGINS)

    def records(self, topic):
        """Every record of 'topic': dicts with partition, offset, key, value, ts and headers."""
        p = subprocess.run(["kcat", "-b", self.broker.kafka, "-C", "-t", topic, "-e", "-q",
                            "-J"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        out = []
        for line in p.stdout.decode().splitlines():
            m = json.loads(line)
            h = m.get("headers") or []
            m["headers"] = dict(zip(h[0::2], h[1::2]))
            out.append(m)
        return out

    def values(self, topic):
        """The values of 'topic' up to the end it has now (kcat -e chases a growing topic)."""
        return self.consume(topic, fmt=r"%v\n")

    def wait_values(self, topic, count, timeout=60):
        return wait_until(lambda: len(self.values(topic)) >= count and self.values(topic),
                          timeout, "%d records in %s" % (count, topic), interval=0.3)

    def status(self, name):
        return json.loads(self.cli_ok("pipeline", "status", name, "--json"))

    def instance(self, name, stage, index=0):
        for s in self.status(name)["stages"]:
            if s["name"] == stage:
                for i in s["instances"]:
                    if i["instance"] == index:
                        return i
        return None

    def still_serving(self):
        """The broker answers as before: a record goes in and comes out."""
        self.create_topic("canary-%d" % time.monotonic_ns())
        topic = [t for t in self.cli_ok("topic", "list").split() if t.startswith("canary-")][-1]
        self.produce(topic, ["tweet"])
        self.assertEqual(self.values(topic), ["tweet"])


class PipelineFileTest(PipelineTestCase):

    def test_sluiced_refuses_a_bad_file_before_starting(self):
        path = self.write("bad.lua", """\
            return {
              processors = {
                { name = "a", input = "orders", output = "orders", plugin = "upper" },
              },
            }
            """)
        root = self.temp_dir()
        p = subprocess.run([binary("sluiced"), "--data-dir", os.path.join(root, "data"),
                            "--listen", "tcp://127.0.0.1:0", "--http-listen", "none",
                            "--kafka-listen", "none", "--pipeline", path],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        err = p.stderr.decode()
        self.assertIn("bad.lua:3:", err)
        self.assertIn("its own input", err)
        self.assertFalse(os.path.exists(os.path.join(root, "data")), "nothing may start")

    def test_deploy_refuses_whole_and_changes_nothing(self):
        self.start()
        syntax = self.write("syntax.lua", "return {\n  processors = {\n    { name = 'x' \n")
        rc, out, err = self.cli("pipeline", "deploy", syntax)
        self.assertEqual(rc, 1)
        self.assertIn("syntax.lua:4:", err)
        # Valid Lua, but its input neither exists nor is declared: refused before any topic
        # (its declared output, its DLQ) is made.
        missing = self.write("missing.lua", """\
            return {
              topics = { out = 2 },
              processors = {
                { name = "p", input = "nope", output = "out", plugin = "upper" },
              },
            }
            """)
        rc, out, err = self.cli("pipeline", "deploy", missing)
        self.assertEqual(rc, 1)
        self.assertIn("missing.lua:4:", err)
        self.assertIn('input topic "nope" does not exist', err)
        unknown = self.write("unknown.lua", """\
            return { processors = { { name = "p", input = "a", output = "b",
                                      plugin = "not_installed" } } }
            """)
        rc, out, err = self.cli("pipeline", "deploy", unknown)
        self.assertEqual(rc, 1)
        self.assertIn('no plugin named "not_installed"', err)
        self.assertEqual(self.cli_ok("topic", "list").split(), [])
        self.assertEqual(self.cli_ok("pipeline", "list").strip(), "no pipelines")

    def test_deploy_status_stop_with_the_example_plugin(self):
        self.start()
        path = self.write("shout.lua", """\
            return {
              name = "shout",
              topics = { words = 2, loud = 2 },
              processors = {
                { name = "upper", input = "words", output = "loud", plugin = "upper",
                  config = { prefix = "> " } },
              },
            }
            """)
        out = self.deploy(path)
        self.assertIn('pipeline "shout" deployed (version', out)
        self.produce("words", ["a:hello", "b:world", "c:"], "--key-sep", ":")
        loud = wait_until(lambda: len(self.records("loud")) >= 2 and self.records("loud"), 30,
                          "upper-cased records", interval=0.3)
        self.assertEqual(sorted(r["payload"] for r in loud), ["> HELLO", "> WORLD"])
        self.assertTrue(all(r["headers"].get("processed-by") == "upper" for r in loud))
        # The empty value was rejected by the plugin, with its reason.
        dead = wait_until(lambda: self.records("words.dlq"), 30, "the rejected record")
        self.assertEqual(dead[0]["key"], "c")
        self.assertIn("nothing to upper-case", dead[0]["headers"]["sluice.error"])

        inst = wait_until(lambda: (lambda i: i if i and i["records_in"] == 3 else None)(
            self.instance("shout", "upper")), 30, "status with 3 records in", interval=0.3)
        self.assertEqual(inst["state"], "running")
        self.assertEqual(inst["records_out"], 2)
        self.assertEqual(inst["dead_lettered"], 1)
        self.assertEqual(sorted(inst["partitions"]), ["words-0", "words-1"])
        table = self.cli_ok("pipeline", "status", "shout")
        self.assertIn("group sluice.shout.upper, lag 0 records", table)
        listed = json.loads(self.cli_ok("pipeline", "list", "--json"))
        self.assertEqual([p["name"] for p in listed], ["shout"])
        self.assertIn("upper", self.cli_ok("plugin", "list"))

        pid = inst["pid"]
        self.assertIn('pipeline "shout" stopped', self.cli_ok("pipeline", "stop", "shout"))
        wait_until(lambda: process_gone(pid), 30, "the instance process to exit")
        self.assertEqual(self.cli_ok("pipeline", "list").strip(), "no pipelines")
        rc, _, err = self.cli("pipeline", "stop", "shout")
        self.assertEqual(rc, 1)
        self.assertIn('no pipeline named "shout"', err)


class ShippedProcessorsTest(PipelineTestCase):

    def test_filter_map_route_and_salt(self):
        self.start()
        self.deploy(self.write("shipped.lua", """\
            return {
              name = "shipped",
              topics = { orders = 2, big = 1, cents = 1, ["orders-de"] = 1, ["orders-fr"] = 1,
                         salted = 4 },
              processors = {
                { name = "big", input = "orders", output = "big",
                  filter = "json.decode(record.value).amount > 100" },
                { name = "cents", input = "orders", output = "cents",
                  map = "{ id = json.decode(record.value).id, cents = json.decode(record.value).amount * 100 }" },
                { name = "country", input = "orders",
                  route = "'orders-' .. json.decode(record.value).country" },
                { name = "salt", input = "orders", output = "salted", script = "salt",
                  config = { keys = "hot", buckets = 3 } },
              },
            }
            """))
        orders = ['hot:{"id":%d,"amount":%d,"country":"%s"}' % (i, 60 * i, "de" if i % 2 else "fr")
                  for i in range(1, 7)] + ['cold:{"id":7,"amount":1,"country":"de"}']
        self.produce("orders", orders, "--key-sep", ":")
        big = self.wait_values("big", 5)
        self.assertEqual(sorted(json.loads(v)["id"] for v in big), [2, 3, 4, 5, 6])
        cents = [json.loads(v) for v in self.wait_values("cents", 7)]
        self.assertEqual(sorted((c["id"], c["cents"]) for c in cents),
                         [(i, 6000 * i) for i in range(1, 7)] + [(7, 100)])
        self.assertEqual(len(self.wait_values("orders-de", 4)), 4)
        self.assertEqual(len(self.wait_values("orders-fr", 3)), 3)
        salted = wait_until(lambda: len(self.records("salted")) >= 7 and self.records("salted"),
                            30, "salted records", interval=0.3)
        keys = sorted(r["key"] for r in salted)
        self.assertEqual(keys, ["cold", "hot_0", "hot_0", "hot_1", "hot_1", "hot_2", "hot_2"])


class PluginIsolationTest(PipelineTestCase):
    # The faulty plugin dies of SIGSEGV on purpose; under ASan that is a report.
    allowed_sanitizer_reports = ("AddressSanitizer: SEGV",)

    def faulty(self, mode=None, topics="a = 1, b = 1"):
        cfg = 'config = { mode = "%s" }, call_timeout = "1s",' % mode if mode else \
            'call_timeout = "1500ms",'
        return self.write("faulty-%s.lua" % (mode or "run"), """\
            return {
              name = "faulty",
              topics = { %s },
              processors = {
                { name = "f", input = "a", output = "b", plugin = "faulty", %s
                  transient_retry = "10s" },
              },
            }
            """ % (topics, cfg))

    def test_crash_in_init_is_isolated_and_restarted_with_backoff(self):
        self.start()
        self.deploy(self.faulty("crash-init"))
        inst = wait_until(lambda: (lambda i: i if i and i["restarts"] >= 2 else None)(
            self.instance("faulty", "f")), 30, "a second restart", interval=0.3)
        self.assertEqual(inst["state"], "restarting")
        self.still_serving()
        # Logged once, not once per restart.
        log = self.broker.log_text()
        self.assertEqual(log.count("faulty/f/0 exited with status") +
                         log.count("faulty/f/0 killed by signal"), 1, log)

    def test_failing_init_says_why(self):
        self.start()
        self.deploy(self.faulty("fail-init"))
        wait_until(lambda: "setting 'url' is missing" in self.broker.log_text(), 30,
                   "the plugin's reason in the log")
        wait_until(lambda: (self.instance("faulty", "f") or {}).get("restarts", 0) >= 1, 30,
                   "a restart")
        self.still_serving()

    def test_a_poison_record_ends_in_the_dlq_after_three_crashes(self):
        self.start()
        self.deploy(self.faulty())
        self.produce("a", ["one", "busy", "boom", "reject", "hang", "two"])
        out = wait_until(lambda: "two" in self.values("b") and self.values("b"), 120,
                         "the record after the poison one", interval=0.3)
        # At least once: what came before the poison record in its batch was redone after
        # each crash; "two", after it, once.
        self.assertEqual(sorted(set(out)), ["busy", "one", "two"])
        self.assertEqual(out.count("two"), 1)
        dead = self.records("a.dlq")
        self.assertEqual(sorted(r["payload"] for r in dead), ["boom", "hang", "reject"])
        by_value = {r["payload"]: r["headers"] for r in dead}
        self.assertIn("crashed the stage 3 times", by_value["boom"]["sluice.error"])
        self.assertEqual(by_value["boom"]["sluice.original_offset"], "2")
        self.assertEqual(by_value["reject"]["sluice.error"], "rejected on purpose")
        self.assertIn("record a-0@2 crashed the stage 3 times", self.broker.log_text())
        self.assertIn("stuck for 1.", self.broker.log_text())  # "hang" was killed each time
        self.assertIn("record a-0@4 crashed the stage 3 times", self.broker.log_text())
        inst = self.instance("faulty", "f")
        self.assertEqual(inst["restarts"], 6)
        self.still_serving()


class LuaFailureTest(PipelineTestCase):

    def test_error_endless_loop_and_memory_bomb_end_in_the_dlq(self):
        self.start()
        self.write("handler.lua", """\
            local function explode(v)
              error("kaboom: " .. v)
            end
            function process(record, ctx)
              local v = record.value
              if v == "error" then explode(v) end
              if v == "loop" then while true do end end
              if v == "bomb" then
                local t = {}
                for i = 1, 1e9 do t[i] = string.rep("x", 65536) .. i end
              end
              if v == "os" then return { value = tostring(os) } end
              return { key = record.key, value = v:upper() }
            end
            """)
        self.deploy(self.write("lua.lua", """\
            return {
              name = "lua",
              topics = { input = 1, output = 1 },
              processors = {
                { name = "h", input = "input", output = "output", script = "handler.lua",
                  limits = { instructions = 5000000, memory = 16777216 } },
              },
            }
            """))
        self.produce("input", ["a", "error", "b", "loop", "c", "bomb", "d", "os"])
        self.assertEqual(self.wait_values("output", 5), ["A", "B", "C", "D", "nil"])
        dead = {r["payload"]: r["headers"] for r in self.wait_values_records("input.dlq", 3)}
        self.assertEqual(sorted(dead), ["bomb", "error", "loop"])
        self.assertIn("handler.lua:2: kaboom: error", dead["error"]["sluice.error"])
        self.assertIn("explode", dead["error"]["sluice.traceback"])
        self.assertIn("instruction budget exceeded", dead["loop"]["sluice.error"])
        self.assertIn("memory limit of 16777216 bytes exceeded", dead["bomb"]["sluice.error"])
        for h in dead.values():
            self.assertEqual(h["sluice.original_topic"], "input")
            self.assertEqual(h["sluice.attempt"], "1")
        inst = wait_until(lambda: (lambda i: i if i and i["errors"] == 3 else None)(
            self.instance("lua", "h")), 30, "3 errors in the status", interval=0.3)
        self.assertEqual(inst["restarts"], 0)
        self.still_serving()

    def wait_values_records(self, topic, count):
        return wait_until(lambda: len(self.records(topic)) >= count and self.records(topic), 60,
                          "%d records in %s" % (count, topic), interval=0.3)


class RetryDlqTest(PipelineTestCase):

    def test_retries_wait_their_delays_dead_letters_and_replay(self):
        self.start()
        self.write("jobs.lua", """\
            function process(record, ctx)
              local attempt = tonumber(record.headers["sluice.attempt"] or "0")
              if record.value:find("^bad") then error("always fails") end
              if record.value:find("^flaky") and attempt < 2 then
                error("not yet (attempt " .. attempt .. ")")
              end
              ctx.emit(nil, record.key, record.value .. "@" .. attempt)
            end
            """)
        self.deploy(self.write("retry.lua", """\
            return {
              name = "jobs",
              topics = { jobs = 2, done = 1 },
              processors = {
                { name = "run", input = "jobs", output = "done", script = "jobs.lua",
                  retry = { delays = { "1s", "2s" }, dlq = "jobs.dlq" } },
              },
            }
            """))
        lines = ["k1:flaky-1", "k1:ok-1", "k2:flaky-2", "k2:bad-1", "k1:ok-2", "k2:ok-3",
                 "k1:bad-2"]
        self.produce("jobs", lines, "--key-sep", ":")
        done = wait_until(lambda: len(self.records("done")) >= 5 and self.records("done"), 60,
                          "5 processed records", interval=0.3)
        self.assertEqual(sorted(r["payload"] for r in done),
                         ["flaky-1@2", "flaky-2@2", "ok-1@0", "ok-2@0", "ok-3@0"])
        inputs = {r["payload"]: r for r in self.records("jobs")}
        for r in done:
            value = r["payload"].split("@")[0]
            waited = r["ts"] - inputs[value]["ts"]
            if value.startswith("flaky"):
                self.assertGreaterEqual(waited, 3000, "%s ran before its delays" % value)
            else:
                # The main topic was not held back by the records waiting behind it.
                self.assertLess(waited, 2500, "%s waited behind a retry" % value)

        dead = wait_until(lambda: len(self.records("jobs.dlq")) >= 2 and self.records("jobs.dlq"),
                          60, "2 dead letters", interval=0.3)
        self.assertEqual(sorted(r["payload"] for r in dead), ["bad-1", "bad-2"])
        for r in dead:
            h = r["headers"]
            original = inputs[r["payload"]]
            self.assertEqual(h["sluice.attempt"], "3")
            self.assertEqual(h["sluice.error"].split(": ", 1)[-1], "always fails")
            self.assertEqual(h["sluice.original_topic"], "jobs")
            self.assertEqual(h["sluice.original_partition"], str(original["partition"]))
            self.assertEqual(h["sluice.original_offset"], str(original["offset"]))
            self.assertIn("sluice.traceback", h)
            self.assertEqual(r["key"], original["key"])
        retried = self.records("jobs.retry.1") + self.records("jobs.retry.2")
        self.assertEqual(len(retried), 8)  # 2 flaky + 2 bad at level 1, the same at level 2
        self.assertTrue(all(int(r["headers"]["sluice.not_before"]) >= r["ts"] + 1000
                            for r in retried))

        out = self.cli_ok("dlq", "replay", "jobs.dlq")
        self.assertIn("replayed 2 records from jobs.dlq", out)
        back = [r for r in self.records("jobs") if r["payload"].startswith("bad")]
        self.assertEqual(sorted(r["payload"] for r in back), ["bad-1", "bad-1", "bad-2", "bad-2"])
        replayed = [r for r in back if r["headers"]]
        self.assertEqual([r["headers"] for r in replayed], [{"sluice.replay_for": "jobs/run"}] * 2)
        # They fail again, and a second replay sends only what is new since the first.
        wait_until(lambda: len(self.records("jobs.dlq")) >= 4, 60, "the replayed records to "
                   "fail again", interval=0.3)
        self.assertIn("replayed 2 records", self.cli_ok("dlq", "replay", "jobs.dlq"))
        self.assertIn("replayed 0 records", self.cli_ok("dlq", "replay", "jobs.dlq"))


    def test_stages_sharing_an_input_keep_their_retries_apart(self):
        self.start()
        self.write("second.lua", """\
            function process(record, ctx)
              if record.headers["sluice.attempt"] ~= "1" then error("first try fails") end
              return { key = record.key, value = record.value, headers = record.headers }
            end
            """)
        self.deploy(self.write("shared.lua", """\
            return {
              name = "shared",
              topics = { orders = 1, a = 1, b = 1, c = 1 },
              processors = {
                { name = "ok", input = "orders", output = "a", map = "record.value",
                  retry = { delays = { "300ms" } } },
                { name = "second", input = "orders", output = "b", script = "second.lua",
                  retry = { delays = { "300ms" } } },
                { name = "never", input = "orders", output = "c", filter = "error('nope')",
                  retry = { delays = { "300ms" } } },
              },
            }
            """))
        self.produce("orders", ["x1", "x2"])
        self.assertEqual(sorted(self.wait_values("b", 2)), ["x1", "x2"])
        dead = wait_until(lambda: len(self.records("orders.dlq")) >= 2 and
                          self.records("orders.dlq"), 30, "the never stage's dead letters",
                          interval=0.3)
        self.assertEqual({r["headers"]["sluice.stage"] for r in dead}, {"shared/never"})
        # Every stage saw each record once: the retries of one are not the input of another.
        self.assertEqual(sorted(self.values("a")), ["x1", "x2"])
        # Routing headers describe the input's journey, not the output's.
        self.assertFalse(any(k.startswith("sluice.") for r in self.records("b")
                             for k in r["headers"]))
        # A replayed dead letter is for the stage that gave up on it, not for the others.
        self.assertIn("replayed 2 records", self.cli_ok("dlq", "replay", "orders.dlq"))
        wait_until(lambda: len(self.records("orders.dlq")) >= 4, 30, "the replayed records to "
                   "fail again in 'never'", interval=0.3)
        self.assertEqual(sorted(self.values("a")), ["x1", "x2"])
        self.assertEqual(sorted(self.values("b")), ["x1", "x2"])


class FailoverTest(PipelineTestCase):

    def test_kill9_of_an_instance_loses_nothing(self):
        self.start()
        self.write("tag.lua", """\
            function process(record, ctx)
              return { key = record.key, value = "seen:" .. record.value }
            end
            """)
        self.deploy(self.write("tag-pipeline.lua", """\
            return {
              name = "tag",
              topics = { events = 4, tagged = 4 },
              processors = {
                { name = "t", input = "events", output = "tagged", script = "tag.lua",
                  instances = 2 },
              },
            }
            """))
        wait_until(lambda: all(i and i["partitions"] for i in
                               (self.instance("tag", "t", 0), self.instance("tag", "t", 1))),
                   30, "both instances to own partitions", interval=0.3)
        first = ["k%d:%d" % (i % 50, i) for i in range(2000)]
        self.produce("events", first, "--key-sep", ":")
        self.wait_values("tagged", 500)
        victim = self.instance("tag", "t", 0)["pid"]
        os.kill(victim, signal.SIGKILL)
        second = ["k%d:%d" % (i % 50, i) for i in range(2000, 4000)]
        self.produce("events", second, "--key-sep", ":")
        want = {"seen:%d" % i for i in range(4000)}
        wait_until(lambda: want <= set(self.values("tagged")), 90,
                   "every record processed after the kill", interval=0.5)
        self.assertIn("tag/t/0 killed by signal 9", self.broker.log_text())
        # Per key, the order of first appearance is the input order.
        firsts = {}
        for r in self.records("tagged"):
            n = int(r["payload"].split(":")[1])
            firsts.setdefault(r["key"], [])
            if n not in firsts[r["key"]]:
                firsts[r["key"]].append(n)
        for key, ns in firsts.items():
            self.assertEqual(ns, sorted(ns), "order of key %s" % key)


class RedeployTest(PipelineTestCase):

    def test_redeploying_a_changed_script_under_load_loses_nothing(self):
        self.start()
        script = self.write("ver.lua", """\
            function process(record, ctx)
              return { key = record.key, value = "v1:" .. record.value }
            end
            """)
        pipeline = self.write("ver-pipeline.lua", """\
            return {
              name = "ver",
              topics = { nums = 2, versioned = 2 },
              processors = {
                { name = "v", input = "nums", output = "versioned", script = "ver.lua",
                  instances = 2 },
              },
            }
            """)
        self.deploy(pipeline)
        producer = self.spawn_cli("produce", "nums", "--linger-ms", "1", stdin_pipe=True)
        stop = threading.Event()
        sent = []

        def feed():
            n = 0
            while not stop.is_set():
                producer.stdin.write(("%d\n" % n).encode())
                producer.stdin.flush()
                sent.append(n)
                n += 1
                time.sleep(0.002)
            producer.stdin.close()

        t = threading.Thread(target=feed)
        t.start()
        try:
            wait_until(lambda: len(self.values("versioned")) >= 200, 60, "v1 output",
                       interval=0.3)
            with open(script, "w") as f:
                f.write(textwrap.dedent("""\
                    function process(record, ctx)
                      return { key = record.key, value = "v2:" .. record.value }
                    end
                    """))
            self.deploy(pipeline)
            wait_until(lambda: any(v.startswith("v2:") for v in self.values("versioned")), 60,
                       "v2 output", interval=0.3)
            time.sleep(0.5)
        finally:
            stop.set()
            t.join()
        self.assertEqual(producer.wait(30), 0)
        want = set(range(len(sent)))
        wait_until(lambda: want <= {int(v[3:]) for v in self.values("versioned")}, 60,
                   "every number processed by one version or the other", interval=0.5)
        values = self.values("versioned")
        last = max(int(v[3:]) for v in values)
        self.assertTrue(any(v == "v2:%d" % last for v in values), "the newest came from v2")
        self.assertEqual(self.status("ver")["version"] > 0, True)


if __name__ == "__main__":
    unittest.main()

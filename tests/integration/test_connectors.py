"""Connectors on a real broker: the file source and sink round trip, a kill -9 of the node in
the middle (source positions stored only after their records are acknowledged, sink offsets
committed only after fsync), a rotated file, the generator resuming its numbering, and
errors_tolerance."""

import glob
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import unittest

from harness import wait_until
from test_pipelines import PipelineTestCase


def dedup(lines):
    seen, out = set(), []
    for line in lines:
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


class FileConnectorTest(PipelineTestCase):

    def copy_pipeline(self, src, dst):
        return self.write("copy.lua", """\
            return {
              name = "copy",
              topics = { lines = 1 },
              sources = { { name = "tail", output = "lines", plugin = "file_source",
                            config = { path = "%s", batch = "500" } } },
              sinks = { { name = "out", input = "lines", plugin = "file_sink",
                          config = { path = "%s" } } },
            }
            """ % (src, dst))

    def read_lines(self, path):
        try:
            with open(path, "rb") as f:
                return f.read().split(b"\n")[:-1]
        except OSError:
            return []

    def test_round_trip_is_byte_identical(self):
        self.start()
        d = self.temp_dir()
        src, dst = os.path.join(d, "in.txt"), os.path.join(d, "out.txt")
        with open(src, "wb") as f:
            for i in range(20000):
                f.write(b"line %d \xc3\xa9 tab\there, commas, \"quotes\" %s\n" % (i, b"x" * (i % 97)))
        self.deploy(self.copy_pipeline(src, dst))
        wait_until(lambda: os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src),
                   60, "the copy to be as long as the original", interval=0.3)
        with open(src, "rb") as a, open(dst, "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_kill9_of_the_node_loses_no_line_and_keeps_order(self):
        self.start()
        d = self.temp_dir()
        src, dst = os.path.join(d, "in.txt"), os.path.join(d, "out.txt")
        lines = [b"record %06d" % i for i in range(60000)]
        with open(src, "wb") as f:
            f.write(b"".join(line + b"\n" for line in lines[:30000]))
        self.deploy(self.copy_pipeline(src, dst))
        wait_until(lambda: len(self.read_lines(dst)) >= 5000, 60, "some lines copied",
                   interval=0.05)
        self.broker.kill9()
        with open(src, "ab") as f:
            f.write(b"".join(line + b"\n" for line in lines[30000:]))
        self.broker.restart()
        want = set(lines)
        wait_until(lambda: want <= set(self.read_lines(dst)), 90,
                   "every line copied after the restart", interval=0.3)
        out = self.read_lines(dst)
        self.assertEqual(dedup(out), lines)  # every line, in order
        # Repeats are what was not yet acknowledged at the kill: a poll or a sink batch.
        self.assertLess(len(out) - len(lines), 20000)
        self.assertIn("resuming from position", self.broker.log_text(since_start=True))

    def test_rotation_by_rename_loses_no_line(self):
        self.start()
        d = self.temp_dir()
        src, dst = os.path.join(d, "app.log"), os.path.join(d, "out.txt")
        with open(src, "w") as f:
            f.write("".join("first %d\n" % i for i in range(1000)))
        self.deploy(self.copy_pipeline(src, dst))
        wait_until(lambda: len(self.read_lines(dst)) >= 1000, 30, "the first file copied",
                   interval=0.1)
        with open(src, "a") as f:
            f.write("".join("first %d\n" % i for i in range(1000, 1500)))
            f.write("unterminated last line")
        os.rename(src, src + ".1")
        with open(src, "w") as f:
            f.write("".join("second %d\n" % i for i in range(700)))
        want = (["first %d" % i for i in range(1500)] + ["unterminated last line"] +
                ["second %d" % i for i in range(700)])
        wait_until(lambda: len(self.read_lines(dst)) >= len(want), 30, "both files copied",
                   interval=0.1)
        self.assertEqual([l.decode() for l in self.read_lines(dst)], want)


class GeneratorTest(PipelineTestCase):

    def test_generator_resumes_its_numbering_after_kill9(self):
        self.start()
        self.deploy(self.write("gen.lua", """\
            return {
              name = "gen",
              topics = { clicks = 3 },
              sources = { { name = "g", output = "clicks", plugin = "generator",
                            config = { rate = "4000", count = "20000", key = "a{rand:50}",
                                       value = '{"ad_id":"{key}","seq":{seq}}',
                                       hot_key = "a17", hot_ratio = "0.5" } } },
            }
            """))
        wait_until(lambda: sum(p["end_offset"] for p in self.describe("clicks")["partitions"])
                   >= 4000, 30, "a second of clicks", interval=0.2)
        self.broker.kill9()
        self.broker.restart()
        wait_until(lambda: sum(p["end_offset"] for p in self.describe("clicks")["partitions"])
                   >= 20000, 60, "all clicks", interval=0.3)
        recs = self.records("clicks")
        seqs = [int(r["payload"].split('"seq":')[1].rstrip("}")) for r in recs]
        self.assertEqual(set(seqs), set(range(20000)))  # none skipped, none beyond count
        self.assertLess(len(seqs) - 20000, 20000)  # at most the unacknowledged poll again
        hot = sum(1 for r in recs if r["key"] == "a17")
        self.assertGreater(hot / len(recs), 0.4)
        self.assertTrue(all(r["key"] in r["payload"] for r in recs))


class ErrorsToleranceTest(PipelineTestCase):

    def test_none_stops_the_stage_and_all_dead_letters(self):
        self.start()
        self.write("picky.lua", """\
            function process(record, ctx)
              if record.value == "bad" then error("cannot take this one") end
              return { value = record.value }
            end
            """)
        self.deploy(self.write("tol.lua", """\
            return {
              name = "tol",
              topics = { i = 1, strict = 1, lenient = 1 },
              processors = {
                { name = "strict", input = "i", output = "strict", script = "picky.lua",
                  errors_tolerance = "none" },
                { name = "lenient", input = "i", output = "lenient", script = "picky.lua",
                  errors_tolerance = "all" },
              },
            }
            """))
        self.produce("i", ["a", "bad", "b"])
        self.assertEqual(self.wait_values("lenient", 2), ["a", "b"])
        wait_until(lambda: (lambda i: i and i["state"] == "failed" and
                            "errors_tolerance" in i["last_error"])(
            self.instance("tol", "strict")), 30, "the strict stage to stop", interval=0.3)
        self.assertEqual(self.values("strict"), ["a"])
        dead = self.records("i.dlq")
        self.assertEqual([(r["payload"], r["headers"]["sluice.stage"]) for r in dead],
                         [("bad", "tol/lenient")])
        time.sleep(1.5)  # it is not restarted
        self.assertEqual(self.instance("tol", "strict")["state"], "failed")


class FlakyServer(http.server.ThreadingHTTPServer):
    """Answers 500 until 'healthy_at', then 400 to a batch holding a value with "refuse" in it
    and 200 to the rest, keeping the values it took."""

    def __init__(self, broken_for):
        self.healthy_at = time.monotonic() + broken_for
        self.taken, self.answers = [], []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if time.monotonic() < server.healthy_at:
                    code = 500
                elif any("refuse" in (r["value"] or "") for r in body):
                    code = 400
                else:
                    code = 200
                    with server.lock:
                        server.taken.extend(r["value"] for r in body)
                with server.lock:
                    server.answers.append(code)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class HttpSinkTest(PipelineTestCase):

    def test_5xx_retried_until_delivered_and_a_400_record_dead_lettered(self):
        server = FlakyServer(broken_for=2.0)
        self.addCleanup(server.shutdown)
        self.start()
        self.deploy(self.write("http.lua", """\
            return {
              name = "http",
              topics = { events = 1 },
              sinks = { { name = "post", input = "events", plugin = "http_sink",
                          config = { url = "http://127.0.0.1:%d/ingest", batch_size = "10",
                                     retry_timeout_ms = "30000" } } },
            }
            """ % server.server_address[1]))
        values = ["event-%d" % i for i in range(50)]
        values[23] = "refuse-me"
        self.produce("events", values)
        good = set(values) - {"refuse-me"}
        wait_until(lambda: good <= set(server.taken), 60, "every good record delivered",
                   interval=0.3)
        self.assertIn(500, server.answers)
        self.assertIn(400, server.answers)
        dead = wait_until(lambda: self.records("events.dlq"), 30, "the refused record")
        self.assertEqual([r["payload"] for r in dead], ["refuse-me"])
        self.assertIn("HTTP 400", dead[0]["headers"]["sluice.error"])
        self.assertEqual(dead[0]["headers"]["sluice.original_offset"], "23")
        self.assertNotIn("refuse-me", server.taken)
        self.assertEqual(self.instance("http", "post")["restarts"], 0)


class Postgres:
    """A PostgreSQL server from Debian's packages on a temporary data directory and free port,
    run as the postgres user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self, root, port):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise AssertionError("no initdb: scripts/deps.sh test installs postgresql")
        self.bin = os.path.dirname(bins[-1])
        self.root, self.port = root, port
        self.data = os.path.join(root, "pgdata")
        self.log = os.path.join(root, "pg.log")
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        else:
            self.prefix = []
        self.run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def run(self, tool, *args):
        p = subprocess.run(self.prefix + [os.path.join(self.bin, tool)] + list(args),
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError("%s failed: %s%s" % (tool, p.stdout.decode(), p.stderr.decode()))
        return p.stdout.decode()

    def start(self):
        self.run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-o",
                 "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.root),
                 "start")

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def query(self, sql):
        return self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-At", "-F", " ", "-c", sql)


class PostgresSinkTest(PipelineTestCase):

    def test_rows_hold_the_latest_value_per_key_across_a_database_restart(self):
        from harness import free_port
        pg = Postgres(self.temp_dir(), free_port())
        pg.start()
        self.addCleanup(lambda: subprocess.run(pg.prefix + [os.path.join(pg.bin, "pg_ctl"),
                                                            "-D", pg.data, "-m", "immediate",
                                                            "stop"], capture_output=True))
        self.start()
        self.deploy(self.write("pg.lua", """\
            return {
              name = "pg",
              topics = { kv = 2 },
              sinks = { { name = "rows", input = "kv", plugin = "postgres_sink",
                          config = { conninfo = "host=127.0.0.1 port=%d user=postgres dbname=postgres",
                                     table = "kv", batch_size = "50",
                                     retry_timeout_ms = "30000" } } },
            }
            """ % pg.port))
        def round_(r):
            self.produce("kv", ["k%d:v%d-%d" % (i % 100, r, i) for i in range(500)],
                         "--key-sep", ":")
        def count():
            try:
                return int(pg.query("select count(*) from kv"))
            except AssertionError:  # the sink has not made the table yet
                return -1
        round_(0)
        wait_until(lambda: count() == 100, 30, "the first rows", interval=0.3)
        pg.stop()  # the sink's writes fail while it is down, and are retried
        round_(1)
        time.sleep(1)
        pg.start()
        round_(2)
        latest = {}
        for line in self.consume("kv", fmt=r"%k %v\n"):  # per partition, in offset order
            k, v = line.split(" ", 1)
            latest[k] = v
        self.assertEqual(latest["k7"], "v2-407")
        def rows():
            try:
                return dict(line.split(" ", 1) for line in
                            pg.query("select key, value from kv").splitlines())
            except AssertionError:  # restarting
                return {}
        wait_until(lambda: rows() == latest, 60, "the table to equal the topic's latest values",
                   interval=0.5)
        self.assertEqual(self.records("kv.dlq"), [])


class StdioTest(PipelineTestCase):

    def test_stdin_to_stdout_through_a_topic(self):
        from harness import binary
        root = self.temp_dir()
        path = self.write("stdio.lua", """\
            return {
              name = "stdio",
              topics = { lines = 1 },
              sources = { { name = "in", output = "lines", plugin = "stdin_source" } },
              sinks = { { name = "out", input = "lines", plugin = "stdout_sink",
                          config = { format = "value" } } },
            }
            """)
        p = subprocess.Popen([binary("sluiced"), "--data-dir", os.path.join(root, "data"),
                              "--listen", "tcp://127.0.0.1:0", "--http-listen", "none",
                              "--kafka-listen", "none", "--pipeline", path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        self._procs.append(p)
        p.stdin.write(b"".join(b"line %d\n" % i for i in range(100)))
        p.stdin.flush()
        got = [p.stdout.readline().decode().rstrip("\n") for _ in range(100)]
        self.assertEqual(got, ["line %d" % i for i in range(100)])
        p.stdin.close()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(30), 0)


class ManagementTest(PipelineTestCase):

    def test_pause_resume_and_restart_a_stage(self):
        self.start()
        self.deploy(self.write("two.lua", """\
            return {
              name = "two",
              topics = { a = 1, b = 1, c = 1 },
              sources = { { name = "gen", output = "a", plugin = "generator",
                            config = { rate = "200", key = "" } } },
              processors = { { name = "one", input = "a", output = "b", map = "record.value" },
                             { name = "other", input = "a", output = "c",
                               map = "record.value" } },
            }
            """))
        self.wait_values("c", 20)
        self.assertIn("two/other: paused", self.cli_ok("connector", "pause", "two", "other"))
        wait_until(lambda: (self.instance("two", "other") or {}).get("state") == "paused", 30,
                   "the stage to show as paused", interval=0.3)
        frozen = len(self.values("c"))
        grown = len(self.values("b")) + 100
        self.wait_values("b", grown)  # the other stages go on
        self.assertEqual(len(self.values("c")), frozen)
        # A redeploy keeps it paused.
        self.deploy(os.path.join(self._dir, "two.lua"))
        self.wait_values("b", grown + 100)
        self.assertEqual(len(self.values("c")), frozen)
        self.assertIn("two/other: resumed", self.cli_ok("connector", "resume", "two", "other"))
        # It continues from its commit: everything "a" has, nothing skipped.
        wait_until(lambda: set(self.values("a")) <= set(self.values("c")), 30,
                   "the resumed stage to catch up", interval=0.3)
        before = self.instance("two", "gen")["pid"]
        self.assertIn("restarting", self.cli_ok("connector", "restart", "two", "gen"))
        wait_until(lambda: (self.instance("two", "gen") or {}).get("pid") not in (None, 0, before),
                   30, "a new generator process", interval=0.3)
        rc, _, err = self.cli("connector", "pause", "two", "nope")
        self.assertEqual(rc, 1)
        self.assertIn('has no stage "nope"', err)


if __name__ == "__main__":
    unittest.main()

"""Stateful processing and batches on a real broker. The ad-click aggregator (examples/adclick) counts clicks
per ad per minute while the node is killed with -9 mid-stream, or one of its instances is, so
that partitions move between instances. Its state lives in the stage's changelog, written with
the input position at every commit and restored with it. Afterwards every window that closed
is in the output with the count an independent computation gives, a window emitted twice
carries the same count both times, and the late clicks are set aside in clicks_late. A
stream-table join and a windowed stream-stream join run across two instances and a crash."""

import json
import os
import random
import signal
import time
import unittest

from harness import BrokerTestCase, wait_until

_HERE = os.path.dirname(os.path.abspath(__file__))
ADCLICK = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "examples", "adclick",
                       "pipeline.lua")
MINUTE = 60000
# A whole minute an hour ago: recent, so that retention (by record time) keeps the results,
# whose timestamps are their windows' ends.
BASE = (int(time.time() * 1000) // MINUTE - 60) * MINUTE
STEP_MS = 5           # event time advances 5 ms a click: 12,000 clicks a minute
JITTER_MS = 3000      # disorder, within the 5 s grace
LATE_EVERY = 997      # one click in this many is two minutes old: late in any partition


def make_clicks(first, count, rng):
    """Click lines 'ad<TAB>json' numbered first..first+count-1, and the late ones among them."""
    lines, late = [], []
    for i in range(first, first + count):
        ad = "a17" if rng.random() < 0.4 else "a%d" % rng.randrange(60)
        now = BASE + i * STEP_MS
        if i % LATE_EVERY == LATE_EVERY - 1:
            ts = now - 2 * MINUTE
        else:
            ts = now - rng.randrange(JITTER_MS)
        value = json.dumps({"ad_id": ad, "user_id": "u%d" % rng.randrange(1000), "ts": ts},
                           separators=(",", ":"))
        lines.append("%s\t%s" % (ad, value))
        if ts == now - 2 * MINUTE:
            late.append(value)
    return lines, late


def reference(lines, late):
    """Clicks per (ad, window start) of the clicks that are not late."""
    late = set(late)
    counts = {}
    for line in lines:
        ad, value = line.split("\t", 1)
        if value in late:
            continue
        ts = json.loads(value)["ts"]
        key = (ad, ts - ts % MINUTE)
        counts[key] = counts.get(key, 0) + 1
    return counts


def write_files(directory, files):
    """Writes {name: text} into directory; returns the path of the last one."""
    path = None
    for name, text in files.items():
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
    return path


def wait_for_owners(case, pipeline, count):
    """Until 'count' instances of the pipeline own partitions (the group has settled)."""
    def owners():
        status = json.loads(case.cli_ok("pipeline", "status", pipeline, "--json"))
        return len([i for s in status["stages"] for i in s["instances"] if i["partitions"]])
    wait_until(lambda: owners() == count, 30, "%d instances to own partitions" % count,
               interval=0.3)


class AdClickTestCase(BrokerTestCase):

    def status(self):
        return json.loads(self.cli_ok("pipeline", "status", "adclick", "--json"))

    def instances(self):
        return [i for s in self.status()["stages"] for i in s["instances"]]


    def produce_clicks(self, lines):
        self.produce("clicks", lines, "--key-sep", "\t")

    def close_everything(self, last_i):
        """A click far ahead in every partition: every window of the real clicks closes."""
        ts = BASE + last_i * STEP_MS + 5 * MINUTE
        for p in range(6):
            self.produce("clicks", ['zz\t{"ad_id":"zz","user_id":"u0","ts":%d}' % ts],
                         "--key-sep", "\t", "-p", str(p))

    def results(self, *opts):
        """(ad, window_start) -> [counts, as emitted] from ad_clicks_per_minute."""
        out = {}
        for line in self.consume("ad_clicks_per_minute", *opts, fmt=r"%v\n"):
            r = json.loads(line)
            self.assertEqual(r["window_end"] - r["window_start"], MINUTE, line)
            self.assertEqual(r["window_start"] % MINUTE, 0, line)
            out.setdefault((r["ad_id"], r["window_start"]), []).append(r["count"])
        return out

    def check(self, want, late):
        got = wait_until(lambda: (lambda r: set(want) <= set(r) and r)(self.results()), 120,
                         "every closed window in ad_clicks_per_minute", interval=1)
        conflicts = {k: v for k, v in got.items() if len(set(v)) > 1}
        self.assertEqual(conflicts, {}, "windows emitted with different counts")
        wrong = {k: (v[0], want.get(k)) for k, v in got.items() if v[0] != want.get(k)}
        self.assertEqual(wrong, {}, "(ad, window): (count emitted, count expected)")
        self.assertEqual(set(self.consume("clicks_late", fmt=r"%v\n")), set(late))
        return got


class CrashTest(AdClickTestCase):

    def test_kill9_of_the_node_mid_stream_keeps_every_count(self):
        self.start_broker(extra_args=["--pipeline", ADCLICK])
        wait_for_owners(self, "adclick", 2)
        rng = random.Random(11)
        first, late1 = make_clicks(0, 120000, rng)
        second, late2 = make_clicks(120000, 120000, rng)
        self.produce_clicks(first)
        # Kill as soon as some windows have closed: the aggregator is mid-stream then.
        wait_until(lambda: self.consume("ad_clicks_per_minute", fmt=r"%v\n"), 60,
                   "a first result", interval=0.05)
        self.broker.kill9()
        self.broker.restart()
        self.produce_clicks(second)
        self.close_everything(240000)
        want = reference(first + second, late1 + late2)
        got = self.check(want, late1 + late2)
        self.assertEqual(len(got), len(want))
        log = self.broker.log_text(since_start=True)
        self.assertIn("restored partition", log)
        # The hot ad is counted like any other: about 40% of each minute's 12,000 clicks.
        hot = [c for (ad, _), c in want.items() if ad == "a17"]
        self.assertTrue(all(c > 4000 for c in hot[1:-1]), hot)


class PartitionMoveTest(AdClickTestCase):

    def test_an_instance_killed_mid_stream_hands_its_windows_on(self):
        self.start_broker(extra_args=["--pipeline", ADCLICK])
        wait_for_owners(self, "adclick", 2)
        rng = random.Random(12)
        first, late1 = make_clicks(0, 100000, rng)
        second, late2 = make_clicks(100000, 100000, rng)
        self.produce_clicks(first)
        wait_until(lambda: self.consume("ad_clicks_per_minute", fmt=r"%v\n"), 60,
                   "a first result", interval=0.05)
        victim = [i for i in self.instances() if i["instance"] == 0][0]
        os.kill(victim["pid"], signal.SIGKILL)
        self.produce_clicks(second)
        self.close_everything(200000)
        want = reference(first + second, late1 + late2)
        self.check(want, late1 + late2)
        log = self.broker.log_text()
        self.assertIn("adclick/per_minute/0 killed by signal 9", log)
        self.assertIn("restored partition", log)


class ExactlyOnceTest(AdClickTestCase):
    """The aggregator with processing_guarantee = "exactly_once", killed with -9 again and again
    (the node three times, one instance once): read_committed, the output holds every window
    exactly once with the reference count, and every late click exactly once."""

    def test_repeated_kill9_gives_exactly_the_reference_output(self):
        here = self.temp_dir()
        with open(os.path.join(os.path.dirname(ADCLICK), "aggregate.lua")) as f:
            aggregate = f.read()
        with open(ADCLICK) as f:
            text = f.read().replace('name = "adclick",',
                                    'name = "adclick", processing_guarantee = "exactly_once",')
        self.assertIn("exactly_once", text)
        pipeline = write_files(here, {"aggregate.lua": aggregate, "pipeline.lua": text})
        self.start_broker(extra_args=["--pipeline", pipeline])
        wait_for_owners(self, "adclick", 2)
        rng = random.Random(13)
        chunks, late, lines = [], [], []
        for k in range(4):
            c, l = make_clicks(k * 60000, 60000, rng)
            chunks.append(c)
            late += l
            lines += c
        committed = ("-X", "isolation.level=read_committed")
        for k, chunk in enumerate(chunks):
            self.produce_clicks(chunk)
            if k == 0:
                # Mid-stream: as soon as a first window is out.
                wait_until(lambda: self.consume("ad_clicks_per_minute", fmt=r"%v\n"), 60,
                           "a first result", interval=0.05)
            else:
                time.sleep(0.3 * k)
            if k < 3:
                self.broker.kill9()
                self.broker.restart()
            else:
                wait_for_owners(self, "adclick", 2)
                victim = [i for i in self.instances() if i["instance"] == 1][0]
                os.kill(victim["pid"], signal.SIGKILL)
        self.close_everything(240000)
        want = reference(lines, late)
        got = wait_until(lambda: (lambda r: set(want) <= set(r) and r)(self.results(*committed)),
                         120, "every closed window, committed", interval=1)
        twice = {k: v for k, v in got.items() if len(v) != 1}
        self.assertEqual(twice, {}, "windows emitted more than once")
        wrong = {k: (v[0], want.get(k)) for k, v in got.items() if v[0] != want.get(k)}
        self.assertEqual(wrong, {}, "(ad, window): (count emitted, count expected)")
        self.assertEqual(sorted(self.consume("clicks_late", *committed, fmt=r"%v\n")),
                         sorted(late))
        log = self.broker.log_text()
        self.assertIn("restored partition", log)
        self.assertIn("adclick/per_minute/1 killed by signal 9", log)


class StreamTableJoinTest(BrokerTestCase):
    """Clicks enriched with their ad's row from a compacted topic, by two instances: partition p
    of both topics goes to the same instance (co-partitioning), and the table survives a kill
    -9 of the node in its changelog."""

    def group_caught_up(self, topic):
        g = json.loads(self.cli_ok("group", "describe", "sluice.ads.enrich", "--json"))
        offs = [o for o in g["offsets"] if o["topic"] == topic]
        return len(offs) == 3 and all(o["lag"] == 0 for o in offs)

    def enriched(self):
        return set(self.consume("enriched", fmt=r"%k %v\n"))

    def test_clicks_meet_their_ads_row_across_instances_and_a_crash(self):
        pipeline = write_files(self.temp_dir(), {
            "enrich.lua": 'require("joins").stream_table {\n'
                          '  stream = "clicks", table = "ads",\n'
                          '  join = function(click, ad, key) return click .. " by " .. ad end,\n'
                          '}:install()\n',
            "ads.lua": 'return { name = "ads",\n'
                       '  topics = { ads = { partitions = 3, config = { ["cleanup.policy"] = "compact" } },\n'
                       '             clicks = 3, enriched = 3 },\n'
                       '  processors = { { name = "enrich", input = { "ads", "clicks" },\n'
                       '                   output = "enriched", script = "enrich.lua", instances = 2 } } }\n'})
        self.start_broker(extra_args=["--pipeline", pipeline])
        wait_for_owners(self, "ads", 2)
        ads = ["ad%d:advertiser%d" % (i, i % 7) for i in range(40)]
        self.produce("ads", ads, "--key-sep", ":")
        wait_until(lambda: self.group_caught_up("ads"), 30, "the ads read", interval=0.3)
        clicks = ["ad%d:click%d" % (i % 50, i) for i in range(500)]  # ad40..ad49 have no row
        self.produce("clicks", clicks, "--key-sep", ":")
        want = {"ad%d click%d by advertiser%d" % (i % 50, i, (i % 50) % 7)
                for i in range(500) if i % 50 < 40}
        wait_until(lambda: self.enriched() >= want, 60, "every matched click enriched",
                   interval=0.5)
        self.assertEqual(self.enriched(), want, "unmatched clicks emit nothing (inner join)")
        # A row changes; then the node dies and the table must come back from the changelog.
        self.produce("ads", ["ad3:advertiser99"], "--key-sep", ":")
        wait_until(lambda: self.group_caught_up("ads"), 30, "the update read", interval=0.3)
        self.broker.kill9()
        self.broker.restart()
        self.produce("clicks", ["ad3:late-click", "ad5:late-click"], "--key-sep", ":")
        more = {"ad3 late-click by advertiser99", "ad5 late-click by advertiser5"}
        wait_until(lambda: self.enriched() >= want | more, 60, "clicks after the restart",
                   interval=0.5)
        self.assertIn("restored partition", self.broker.log_text(since_start=True))


class StreamStreamJoinTest(BrokerTestCase):
    """Impressions and clicks of the same ad joined when at most 10 s apart, by two instances,
    with the node killed -9 between the impressions and the clicks: the buffered impressions
    come back from the changelog, and the pairs are exactly those a reference computes."""

    def test_pairs_within_the_window_across_a_crash(self):
        pipeline = write_files(self.temp_dir(), {
            "pairs.lua": 'require("joins").stream_stream {\n'
                         '  left = "impressions", right = "clicks", within = 10000,\n'
                         '  grace = 3600000, time = "ts", decode = true,\n'
                         '  join = function(i, c) return i.id .. "|" .. c.id end,\n'
                         '}:install()\n',
            "pairs-pipeline.lua": 'return { name = "pairs",\n'
                                  '  topics = { impressions = 3, clicks = 3, pairs = 3 },\n'
                                  '  processors = { { name = "j", input = { "impressions", "clicks" },\n'
                                  '    output = "pairs", script = "pairs.lua", instances = 2 } } }\n'})
        self.start_broker(extra_args=["--pipeline", pipeline])
        wait_for_owners(self, "pairs", 2)
        rng = random.Random(5)
        base = BASE
        imps = [("a%d" % rng.randrange(30), "i%d" % n, base + rng.randrange(120000))
                for n in range(300)]
        clicks = [("a%d" % rng.randrange(30), "c%d" % n, base + rng.randrange(120000))
                  for n in range(300)]
        line = lambda ad, ident, ts: '%s\t{"id":"%s","ts":%d}' % (ad, ident, ts)
        self.produce("impressions", [line(*r) for r in imps], "--key-sep", "\t")

        def caught_up():
            g = json.loads(self.cli_ok("group", "describe", "sluice.pairs.j", "--json"))
            offs = [o for o in g["offsets"] if o["topic"] == "impressions"]
            return len(offs) == 3 and all(o["lag"] == 0 for o in offs)
        wait_until(caught_up, 30, "the impressions read", interval=0.3)
        self.broker.kill9()
        self.broker.restart()
        self.produce("clicks", [line(*r) for r in clicks], "--key-sep", "\t")
        want = {"%s|%s" % (i, c) for (ka, i, ti) in imps for (kb, c, tc) in clicks
                if ka == kb and abs(ti - tc) <= 10000}
        self.assertGreater(len(want), 50)
        got = wait_until(lambda: (lambda v: v >= want and v)(
            set(self.consume("pairs", fmt=r"%v\n"))), 60, "every pair", interval=0.5)
        self.assertEqual(got, want)
        self.assertIn("restored partition", self.broker.log_text(since_start=True))


class BatchFailureTest(BrokerTestCase):
    """A process_batch script that fails on one record: the instance restarts from its last
    commit and takes that range one record at a time, so the bad record goes to the dead-letter
    topic with its error and every other record is processed."""

    def test_a_record_failing_its_batch_is_found_and_dead_lettered(self):
        pipeline = write_files(self.temp_dir(), {
            "batchy.lua": 'function process_batch(b, ctx)\n'
                          '  for i = 1, b.n do\n'
                          '    if b.value[i] == "bad" then error("cannot take " .. b.value[i]) end\n'
                          '    ctx.emit(nil, b.key[i], "ok:" .. b.value[i])\n'
                          '  end\n'
                          'end\n',
            "batchy-pipeline.lua": 'return { name = "batchy", topics = { nums = 2, oks = 2 },\n'
                                   '  processors = { { name = "b", input = "nums", output = "oks",\n'
                                   '                   script = "batchy.lua" } } }\n'})
        self.start_broker(extra_args=["--pipeline", pipeline])
        lines = ["k%d:%s" % (i % 5, "bad" if i == 700 else str(i)) for i in range(1500)]
        self.produce("nums", lines, "--key-sep", ":", "-H", "trace=t1")
        want = {"ok:%d" % i for i in range(1500) if i != 700}
        wait_until(lambda: set(self.consume("oks", fmt=r"%v\n")) >= want, 90,
                   "every good record processed", interval=0.5)
        dead = wait_until(lambda: self.consume("nums.dlq", fmt=r"%v\n"), 30,
                          "the bad record dead-lettered", interval=0.3)
        self.assertEqual(dead, ["bad"])
        headers = "\n".join(self.consume("nums.dlq", fmt=r"%h\n"))
        self.assertIn("cannot take bad", headers)
        self.assertIn("trace=t1", headers) # the record's own headers go with it
        self.assertNotIn("ok:bad", self.consume("oks", fmt=r"%v\n"))
        self.assertIn("taking them one at a time", self.broker.log_text())


class FailedCallStateTest(BrokerTestCase):
    """A record whose call fails after it wrote state: the write is taken back, so the record,
    dead-lettered, leaves no trace in the counts."""

    def test_a_failed_call_leaves_no_state(self):
        pipeline = write_files(self.temp_dir(), {
            "count.lua": 'function process(r, ctx)\n'
                         '  local n = tonumber(ctx.get(r.key) or "0") + 1\n'
                         '  ctx.put(r.key, tostring(n))\n'
                         '  if r.value == "bad" then error("bad record") end\n'
                         '  return { key = r.key, value = tostring(n) }\n'
                         'end\n',
            "count-pipeline.lua": 'return { name = "count", topics = { words = 1, counts = 1 },\n'
                                  '  processors = { { name = "c", input = "words", output = "counts",\n'
                                  '                   script = "count.lua" } } }\n'})
        self.start_broker(extra_args=["--pipeline", pipeline])
        self.produce("words", ["k:a", "k:bad", "k:b", "k:bad", "k:c"], "--key-sep", ":")
        got = wait_until(lambda: (lambda v: len(v) >= 3 and v)(
            self.consume("counts", fmt=r"%k=%v\n")), 30, "three counts", interval=0.3)
        self.assertEqual(got, ["k=1", "k=2", "k=3"])
        self.assertEqual(self.consume("words.dlq", fmt=r"%v\n"), ["bad", "bad"])


if __name__ == "__main__":
    unittest.main()

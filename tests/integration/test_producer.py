"""The producer's delivery guarantees against a real broker: retries that never write a record
twice (idempotence), through lost acknowledgements and a broker killed mid-stream; back pressure
when the broker stops answering; and every compression codec end to end."""

import collections
import os
import signal
import socket
import threading
import time
import unittest

from harness import BrokerTestCase, free_port, wait_until


class AckDroppingProxy:
    """A TCP proxy in front of the broker that forwards requests but, once about 'budget' bytes
    of answers have passed on a connection, cuts it instead of forwarding the next answer. The
    broker has done the work; the producer never hears about it and must retry."""

    def __init__(self, target_port, budget):
        self.target_port = target_port
        self.budget = budget
        self.cuts = 0
        self._lock = threading.Lock()
        self._stop = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _pump(self, src, dst, cut):
        passed = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if cut and passed + len(data) > self.budget:
                    with self._lock:
                        self.cuts += 1
                    break
                passed += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _serve(self):
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                broker = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, broker, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker, client, True), daemon=True).start()

    def close(self):
        self._stop = True
        self._listener.close()
        self._thread.join(5)


def numbered_lines(count, keys):
    return ["k%d:%d" % (i % keys, i) for i in range(count)]


class IdempotenceTest(BrokerTestCase):

    def check_exactly_once_in_order(self, topic, count):
        seen = collections.Counter()
        last = {}
        for line in self.consume(topic, fmt=r"%k %v\n"):
            key, value = line.split(" ")
            value = int(value)
            seen[value] += 1
            self.assertGreater(value, last.get(key, -1), "order per key broken at %d" % value)
            last[key] = value
        duplicates = sum(n - 1 for n in seen.values() if n > 1)
        missing = count - len(seen)
        self.assertEqual((missing, duplicates), (0, 0), "records missing, duplicated")

    def test_lost_acknowledgements_are_retried_without_duplicates(self):
        self.start_broker()
        self.create_topic("orders", partitions=3)
        proxy = AckDroppingProxy(self.broker.native_port(), budget=600)
        self.addCleanup(proxy.close)
        count = 60000
        text = "".join(line + "\n" for line in numbered_lines(count, 7))
        rc, _, err = self.cli("produce", "orders", "--key-sep", ":", "--batch-size", "2000",
                              input=text, url="tcp://127.0.0.1:%d" % proxy.port, timeout=120)
        self.assertEqual(rc, 0, err)
        self.assertGreater(proxy.cuts, 10, "the proxy should have cut many connections")
        self.check_exactly_once_in_order("orders", count)

    def test_without_idempotence_the_same_faults_duplicate(self):
        """The control for the test above: it shows the proxy really makes duplicates."""
        self.start_broker()
        self.create_topic("orders", partitions=3)
        proxy = AckDroppingProxy(self.broker.native_port(), budget=600)
        self.addCleanup(proxy.close)
        count = 20000
        text = "".join(line + "\n" for line in numbered_lines(count, 7))
        rc, _, err = self.cli("produce", "orders", "--key-sep", ":", "--batch-size", "2000",
                              "-X", "enable.idempotence=false", input=text,
                              url="tcp://127.0.0.1:%d" % proxy.port, timeout=120)
        self.assertEqual(rc, 0, err)
        total = sum(p["end_offset"] for p in self.describe("orders")["partitions"])
        self.assertGreater(total, count, "no duplicates without idempotence: the fault did "
                                         "not hit acknowledged batches")

    def test_broker_killed_mid_stream(self):
        port = free_port()
        self.start_broker(extra_args=["--listen", "tcp://127.0.0.1:%d" % port])
        self.create_topic("orders", partitions=4)
        count = 300000
        producer = self.spawn_cli("produce", "orders", "--key-sep", ":", "--batch-size", "4000",
                                  "-X", "delivery.timeout.ms=60000", stdin_pipe=True)
        feeder = threading.Thread(
            target=lambda: (producer.stdin.write(
                "".join(line + "\n" for line in numbered_lines(count, 11)).encode()),
                producer.stdin.close()), daemon=True)
        feeder.start()
        wait_until(lambda: sum(p["end_offset"] for p in self.describe("orders")["partitions"])
                   > count // 10, 30, "the producer to get going")
        self.broker.kill9()
        self.broker.start()
        self.assertEqual(self.broker.native_port(), port)
        self.assertEqual(producer.wait(90), 0, producer.stderr.read().decode())
        feeder.join(5)
        self.check_exactly_once_in_order("orders", count)


class BackPressureTest(BrokerTestCase):
    """The broker is frozen (SIGSTOP) under a producer that is already running: its connection
    stays open but nothing is answered, so the producer's buffer fills."""

    def start_producer_then_freeze(self, *props):
        self.start_broker()
        self.create_topic("t", partitions=2)
        args = ["produce", "t", "-X", "buffer.memory=65536"]
        for prop in props:
            args += ["-X", prop]
        producer = self.spawn_cli(*args, stdin_pipe=True)
        producer.stdin.write(b"first\n")
        producer.stdin.flush()
        wait_until(lambda: self.consume("t", fmt=r"%v\n") == ["first"], 20,
                   "the first record to be acknowledged")
        os.kill(self.broker.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: os.kill(self.broker.proc.pid, signal.SIGCONT))
        return producer

    def feed(self, producer, count):
        def write():
            try:
                for i in range(count):
                    producer.stdin.write(b"%06d %s\n" % (i, b"x" * 200))
                producer.stdin.close()
            except OSError:
                pass  # the producer gave up (the fail-fast case)
        t = threading.Thread(target=write, daemon=True)
        t.start()
        return t

    def test_send_fails_fast_when_the_buffer_is_full(self):
        producer = self.start_producer_then_freeze("max.block.ms=500")
        began = time.monotonic()
        self.feed(producer, 5000)
        self.assertEqual(producer.wait(30), 1)
        self.assertLess(time.monotonic() - began, 10)
        self.assertIn("buffer full", producer.stderr.read().decode())

    def test_send_blocks_until_the_broker_is_back_and_loses_nothing(self):
        producer = self.start_producer_then_freeze("max.block.ms=60000")
        count = 5000
        feeder = self.feed(producer, count)
        time.sleep(1.5)  # long enough for a producer that ignores back pressure to be done
        self.assertIsNone(producer.poll(), "produce finished while the broker was frozen")
        self.assertTrue(feeder.is_alive(), "the producer took all input while frozen")
        os.kill(self.broker.proc.pid, signal.SIGCONT)
        self.assertEqual(producer.wait(60), 0, producer.stderr.read().decode())
        values = sorted(v.split(" ")[0] for v in self.consume("t", fmt=r"%v\n"))
        self.assertEqual(values, ["%06d" % i for i in range(count)] + ["first"])


class CompressionTest(BrokerTestCase):

    def test_each_codec_round_trips(self):
        self.start_broker()
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            topic = "c-" + codec
            self.create_topic(topic, partitions=2)
            lines = ["key%d:%s value %d %s" % (i % 5, codec, i, "abc" * (i % 40))
                     for i in range(3000)]
            self.produce(topic, lines, "--key-sep", ":", "-X", "compression.type=" + codec,
                         "--header", "codec=" + codec)
            got = self.consume(topic, fmt=r"%k:%v|%h\n")
            self.assertEqual(len(got), len(lines), codec)
            self.assertEqual(sorted(g.split("|")[0] for g in got), sorted(lines), codec)
            self.assertTrue(all(g.endswith("|codec=" + codec) for g in got), codec)
            size = sum(p["size_bytes"] for p in self.describe(topic)["partitions"])
            if codec == "none":
                plain = size
            else:
                self.assertLess(size, plain, "%s stored no smaller than uncompressed" % codec)


    def test_topic_compression_type_forces_the_stored_codec(self):
        self.start_broker()
        cases = (("zstd", "none", 4), ("uncompressed", "gzip", 0), ("producer", "lz4", 3))
        for forced, sent, expected in cases:
            topic = "forced-" + forced
            self.create_topic(topic, configs=["compression.type=" + forced])
            lines = ["k%d:value %d %s" % (i % 3, i, "xyz" * 20) for i in range(500)]
            self.produce(topic, lines, "--key-sep", ":", "-X", "compression.type=" + sent)
            self.assertEqual(sorted(self.consume(topic, fmt=r"%k:%v\n")), sorted(lines))
            path = os.path.join(self.broker.data_dir, topic + "-0", "0" * 20 + ".log")
            with open(path, "rb") as f:
                head = f.read(61)
            codec = int.from_bytes(head[21:23], "big") & 7
            self.assertEqual(codec, expected, "%s topic stored codec %d" % (forced, codec))


if __name__ == "__main__":
    unittest.main()

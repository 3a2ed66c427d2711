"""Helpers for Sluice's integration tests: real `sluiced` brokers and the real `sluice` CLI.

Standard library only (the tests run with Debian's /usr/bin/python3). Every broker runs on free
127.0.0.1 ports (port 0) in a fresh temporary directory and reports its addresses through
--ready-file. Nothing here sleeps for a fixed time: waits poll a condition with a deadline.

Where the binaries are: $SLUICE_BIN_DIR (CMake sets it), else the directory given with
--bin-dir to test_broker.py run as a script (see set_bin_dir), else build/runtime of the
repository holding this file.
"""

import errno
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_BIN_DIR = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "build", "runtime")
_bin_dir_override = None

# How long to keep retrying when a binary is missing or busy (another engineer rebuilding).
BINARY_RETRY_S = 30.0
READY_TIMEOUT_S = 20.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
STOP_TIMEOUT_S = 10.0


def set_bin_dir(path):
    """Uses 'path' for the binaries unless $SLUICE_BIN_DIR says otherwise."""
    global _bin_dir_override
    _bin_dir_override = os.path.abspath(path)


def bin_dir():
    env = os.environ.get("SLUICE_BIN_DIR")
    if env:
        return env
    if _bin_dir_override:
        return _bin_dir_override
    return _DEFAULT_BIN_DIR


def binary(name):
    return os.path.join(bin_dir(), name)


def now_ms():
    return int(time.time() * 1000)


def wait_until(condition, timeout, message="condition not met", interval=0.02):
    """Polls condition() until it returns something truthy (returned) or 'timeout' s pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s: %s" % (timeout, message))
        time.sleep(interval)


_binary_given_up = False


def _popen_retrying(argv, **kwargs):
    """Popen, retrying for a while when the binary is missing or being rewritten (a rebuild)."""
    global _binary_given_up
    if not os.path.isdir(os.path.dirname(argv[0])):
        raise AssertionError("no directory %s: build Sluice first, or set SLUICE_BIN_DIR or "
                             "--bin-dir" % os.path.dirname(argv[0]))
    deadline = time.monotonic() + (0 if _binary_given_up else BINARY_RETRY_S)
    while True:
        try:
            return subprocess.Popen(argv, **kwargs)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ETXTBSY, errno.ENOEXEC, errno.EACCES):
                raise
            if time.monotonic() >= deadline:
                _binary_given_up = True  # later tests fail at once instead of waiting again
                raise AssertionError("cannot run %s: %s" % (argv[0], e))
            time.sleep(0.2)


def free_port():
    """A 127.0.0.1 TCP port that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    # The command name may hold spaces; the fields after it start past the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# ---- the broker ----------------------------------------------------------------------------

class Broker:
    """One sluiced process over a data directory that outlives restarts.

    Attributes: url (tcp://127.0.0.1:PORT), http and kafka (127.0.0.1:PORT), data_dir, proc, log (the
    path of the log file, which collects the output of every run), ready_file, root."""

    def __init__(self, root=None, data_dir=None, extra_args=()):
        self.root = root or tempfile.mkdtemp(prefix="sluice-it-")
        self.data_dir = data_dir or os.path.join(self.root, "data")
        self.ready_file = os.path.join(self.root, "ready.json")
        self.log = os.path.join(self.root, "broker.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.url = None
        self.http = None
        self.kafka = None
        self.node_id = None
        self.runs = 0
        self._log_start = 0

    # -- starting and stopping --

    def argv(self, ready_file=None):
        return [binary("sluiced"), "--data-dir", self.data_dir,
                "--listen", "tcp://127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                "--kafka-listen", "127.0.0.1:0",
                "--ready-file", ready_file or self.ready_file] + self.extra_args

    def start(self):
        if self.running():
            raise AssertionError("broker already running (pid %d)" % self.proc.pid)
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        self.runs += 1
        with open(self.log, "ab") as f:
            f.write(("=== harness: start #%d of sluiced %s\n"
                     % (self.runs, " ".join(self.argv()))).encode())
            self._log_start = f.tell()
        logf = open(self.log, "ab")
        try:
            self.proc = _popen_retrying(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=logf)
        finally:
            logf.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("sluiced exited with %d before it was ready; log:\n%s"
                                     % (self.proc.returncode, self.log_text(since_start=True)))
            try:
                with open(self.ready_file) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return None  # not there yet (it is written atomically, but be lenient)

        info = wait_until(ready, READY_TIMEOUT_S, "sluiced to write its ready file")
        if info.get("pid") != self.proc.pid:
            raise AssertionError("ready file names pid %r, sluiced is %d"
                                 % (info.get("pid"), self.proc.pid))
        self.url = info["listen"]
        self.http = info["http"]
        self.kafka = info.get("kafka")  # host:port of the Kafka protocol listener
        self.node_id = info["node_id"]
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM; asserts a clean exit (status 0) within 'timeout' s. Returns the time taken."""
        if not self.running():
            raise AssertionError("broker is not running (exit status %r)"
                                 % (self.proc.returncode if self.proc else None))
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError("sluiced did not exit within %.0f s of SIGTERM" % timeout)
        took = time.monotonic() - began
        if rc != 0:
            raise AssertionError("sluiced exited with %d after SIGTERM; log:\n%s"
                                 % (rc, self.log_text(since_start=True)))
        return took

    def kill9(self):
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def restart(self):
        """Starts again on the same data directory (new ports: read .url afterwards)."""
        return self.start()

    def log_text(self, since_start=False):
        try:
            with open(self.log, "rb") as f:
                if since_start:
                    f.seek(self._log_start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def http_port(self):
        return int(self.http.rsplit(":", 1)[1])

    def native_port(self):
        return int(self.url.rsplit(":", 1)[1])

    def destroy(self):
        self.kill9()
        shutil.rmtree(self.root, ignore_errors=True)


# ---- the CLI -------------------------------------------------------------------------------

def run_cli(args, url=None, input=None, timeout=30, env=None):
    """Runs `sluice [-b url] args...`; returns (rc, stdout, stderr) as text."""
    argv = [binary("sluice")] + (["-b", url] if url else []) + list(args)
    full_env = dict(os.environ)
    full_env.pop("SLUICE_BROKER", None)
    if env:
        full_env.update(env)
    proc = _popen_retrying(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    try:
        out, err = proc.communicate(input.encode() if isinstance(input, str) else input,
                                    timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("sluice %s did not finish within %d s; stderr: %s"
                             % (" ".join(args), timeout, err.decode("utf-8", "replace")))
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


class LineReader:
    """Reads a subprocess's stdout on a thread; each line is queued with its arrival time."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            self.lines.put((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))
        self.lines.put((time.monotonic(), None))  # end of output

    def get(self, timeout):
        """(arrival time, line) or raises AssertionError after 'timeout' s; line None at EOF."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no output line within %.1f s" % timeout)

    def pending(self):
        return not self.lines.empty()


# ---- raw protocol --------------------------------------------------------------------------

def frame(api, body, correlation_id=1):
    """A native-protocol request: u32 size | u32 id | u16 api | body (size counts from id on)."""
    payload = correlation_id.to_bytes(4, "big") + api.to_bytes(2, "big") + body
    return len(payload).to_bytes(4, "big") + payload


def recv_response_or_close(sock, timeout):
    """Reads one response frame. Returns ('frame', correlation id, body), ('closed', None, b'')
    when the broker closes the connection, or raises AssertionError if neither happens in time."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while True:
            if len(data) >= 4:
                size = int.from_bytes(data[:4], "big")
                if len(data) >= 4 + size:
                    body = data[4:4 + size]
                    return "frame", int.from_bytes(body[:4], "big"), body[4:]
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return "closed", None, data
            data += chunk
    except ConnectionResetError:
        return "closed", None, data
    except socket.timeout:
        raise AssertionError("the broker neither answered nor closed the connection within "
                             "%.1f s (got %d bytes)" % (timeout, len(data)))


# ---- test case base ------------------------------------------------------------------------

class BrokerTestCase(unittest.TestCase):
    """Starts brokers and processes on request and cleans everything up, even on failure; prints
    the broker logs when the test failed. A sanitizer report in a broker's log fails the test,
    unless it contains one of 'allowed_sanitizer_reports' (a crash the test causes on purpose)."""

    allowed_sanitizer_reports = ()

    def setUp(self):
        self._brokers = []
        self._procs = []
        self._dirs = []
        self.broker = None
        self.addCleanup(self._cleanup_all)

    def _failed(self):
        """Whether this test has failed so far (read from the unittest result)."""
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        if result is not None:
            for test, _ in list(result.failures) + list(result.errors):
                if test is self:
                    return True
        # Python < 3.11 collects errors on the outcome instead.
        for _test, exc in getattr(outcome, "errors", []) or []:
            if exc is not None:
                return True
        return False

    def _cleanup_all(self):
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        failed = self._failed()
        reports = []
        for b in self._brokers:
            b.kill9()
            # Pipeline instances are the broker's children and log where it logs: a sanitizer
            # report from one of them (a leak at exit, a data race) fails the test too.
            for line in b.log_text().splitlines():
                if (any(m in line for m in SANITIZER_MARKERS) and
                        not any(a in line for a in self.allowed_sanitizer_reports)):
                    reports.append("%s (in %s)" % (line.strip(), b.log))
            if failed or reports:
                sys.stderr.write("\n----- broker log %s (%s) -----\n%s----- end of broker log -----\n"
                                 % (b.log, self.id(), b.log_text()))
        for b in self._brokers:
            b.destroy()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        if reports:
            raise AssertionError("sanitizer reports: " + "; ".join(reports))

    # -- helpers --

    def temp_dir(self):
        d = tempfile.mkdtemp(prefix="sluice-it-")
        self._dirs.append(d)
        return d

    def start_broker(self, extra_args=(), **kwargs):
        b = Broker(extra_args=extra_args, **kwargs)
        self._brokers.append(b)
        b.start()
        if self.broker is None:
            self.broker = b
        return b

    def cli(self, *args, input=None, broker=None, url=None, timeout=30, env=None):
        """(rc, stdout, stderr) of `sluice -b <broker url> args...`."""
        if url is None:
            url = (broker or self.broker).url
        return run_cli(args, url=url, input=input, timeout=timeout, env=env)

    def cli_ok(self, *args, **kwargs):
        rc, out, err = self.cli(*args, **kwargs)
        self.assertEqual(rc, 0, "sluice %s failed (%d): %s" % (" ".join(args), rc, err))
        return out

    def create_topic(self, name, partitions=1, configs=(), broker=None):
        args = ["topic", "create", name, "--partitions", str(partitions)]
        for c in configs:
            args += ["--config", c]
        out = self.cli_ok(*args, broker=broker)
        self.assertIn('created topic "%s"' % name, out)

    def produce(self, topic, lines, *opts, broker=None):
        text = "".join(line + "\n" for line in lines)
        self.cli_ok("produce", topic, *opts, input=text, broker=broker)

    def consume(self, topic, *opts, fmt=r"%p %o %k %v\n", broker=None):
        """The records of 'topic' (from the beginning unless opts say otherwise), as lines."""
        out = self.cli_ok("consume", topic, "--format", fmt, *opts, broker=broker)
        return out.splitlines()

    def consume_records(self, topic, *opts, broker=None):
        """[(partition, offset, key, value)] from consume --format '%p %o %k %v\\n'."""
        records = []
        for line in self.consume(topic, *opts, broker=broker):
            p, o, k, v = line.split(" ", 3)
            records.append((int(p), int(o), k, v))
        return records

    def describe(self, topic, broker=None):
        return json.loads(self.cli_ok("topic", "describe", topic, "--json", broker=broker))

    def spawn_cli(self, *args, broker=None, stdin_pipe=False):
        """Starts `sluice -b URL args...` with stdout piped (and stdin too with stdin_pipe);
        killed at cleanup."""
        argv = [binary("sluice"), "-b", (broker or self.broker).url] + list(args)
        env = dict(os.environ)
        env.pop("SLUICE_BROKER", None)
        p = _popen_retrying(argv, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._procs.append(p)
        return p

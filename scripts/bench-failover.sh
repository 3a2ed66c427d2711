#!/usr/bin/env bash
# How long a partition goes without a leader when its leader dies: three brokers on this
# machine, a topic of 3 partitions with 3 replicas, then kill -9 of the node leading one of
# them, and the time until `sluice topic describe` on a survivor names another leader (polled
# every 50 ms). The controller fences a broker after 3 s without a heartbeat. The node killed
# is not the controller, unless --kill-controller (then a quorum election comes first).
#
#   scripts/bench-failover.sh [--runs K] [--kill-controller]
#
# Private brokers (from build/, or SL_BUILD_DIR) in a temporary directory, a new cluster per
# run. Prints each run and the median.
set -euo pipefail

BENCH_NAME=bench-failover
# shellcheck source=bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
RUNS=3
KILL_CONTROLLER=0

while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --kill-controller) KILL_CONTROLLER=1; shift ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

[ -x "$SLUICED" ] || die "no $SLUICED: build first"
WORK=$(mktemp -d "/tmp/sluice-$BENCH_NAME.XXXXXX")
SLUICE=$SLUICE SLUICED=$SLUICED WORK=$WORK RUNS=$RUNS KILL_CONTROLLER=$KILL_CONTROLLER \
    /usr/bin/python3 - <<'PYEOF'
import json, os, signal, socket, subprocess, sys, time

sluice, sluiced, work = os.environ["SLUICE"], os.environ["SLUICED"], os.environ["WORK"]

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def describe(url):
    p = subprocess.run([sluice, "-b", url, "topic", "describe", "f", "--json"],
                       capture_output=True, text=True)
    return json.loads(p.stdout) if p.returncode == 0 else None

took = []
for run in range(int(os.environ["RUNS"])):
    controllers = ",".join("%d@127.0.0.1:%d" % (i, free_port()) for i in (1, 2, 3))
    procs, urls = [], []
    for i in (1, 2, 3):
        d = "%s/run%d/n%d" % (work, run, i)
        os.makedirs(d)
        procs.append(subprocess.Popen(
            [sluiced, "--node-id", str(i), "--controllers", controllers, "--data-dir", d,
             "--listen", "tcp://127.0.0.1:0", "--http-listen", "none", "--kafka-listen", "none",
             "--ready-file", d + "/ready.json"], stdout=subprocess.DEVNULL,
            stderr=open(d + ".log", "w")))
    for i in (1, 2, 3):
        ready = "%s/run%d/n%d/ready.json" % (work, run, i)
        while not os.path.exists(ready) or os.path.getsize(ready) == 0:
            time.sleep(0.05)
        urls.append(json.load(open(ready))["listen"])
    everyone = ",".join(urls)
    while subprocess.run([sluice, "-b", everyone, "topic", "create", "f", "-p", "3", "-r", "3"],
                         capture_output=True).returncode != 0:
        time.sleep(0.2)
    while True:
        d = describe(everyone)
        if d and all(len(p["isr"]) == 3 for p in d["partitions"]):
            break
        time.sleep(0.1)
    status = json.loads(subprocess.run([sluice, "-b", everyone, "cluster", "status", "--json"],
                                       capture_output=True, text=True).stdout)
    controller = status["controller"]
    want_controller = os.environ["KILL_CONTROLLER"] == "1"
    p = next(i for i, part in enumerate(d["partitions"])
             if (part["leader"] == controller) == want_controller)
    victim = d["partitions"][p]["leader"]
    survivor = urls[victim % 3]
    procs[victim - 1].send_signal(signal.SIGKILL)
    began = time.monotonic()
    while True:
        d = describe(survivor)
        if d and d["partitions"][p]["leader"] not in (victim, -1):
            break
        time.sleep(0.05)
    took.append(time.monotonic() - began)
    print("bench-failover: run %d: node %d (%s) killed, node %d leads f-%d after %.2f s"
          % (run + 1, victim, "the controller" if want_controller else "not the controller",
             d["partitions"][p]["leader"], p, took[-1]), file=sys.stderr)
    for p in procs:
        p.kill()
        p.wait()
took.sort()
print("bench-failover: median %.2f s over %d runs" % (took[len(took) // 2], len(took)),
      file=sys.stderr)
PYEOF

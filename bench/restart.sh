#!/usr/bin/env bash
# Rollout time of an app without a SIGTERM handler (issue 13): `paas restart` wall time, under
# a light load through the router (4 connections), for examples/node-hello with its SIGTERM
# handler removed and a Procfile `web: node server.js` (what most sample servers look like),
# and, as the reference in the same run, the unchanged node-hello (`npm start`), which exits
# on SIGTERM by itself. Prints the median and max
# of RUNS restarts per app and the requests that failed meanwhile.
# Without an init as PID 1 the kernel drops SIGTERM for the handler-less app and every
# rollout waits out the grace period (30 s) before SIGKILL; with one, both rows are alike.
# Usage: [PAAS_BIN_DIR=DIR] bench/restart.sh [RUNS] (default 3). Needs root and the npm
#   registry. PAAS_BIN_DIR runs other paasd/paas binaries (e.g. an older build) against
#   this checkout's buildpacks and examples; default: a release build of this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR/.. disable=SC1091 # followed with shellcheck -x
. scripts/lib.sh
need_root
RUNS=${1:-3}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
ensure_packages curl python3 procps iproute2 nftables
ensure_stack_runtimes
if [[ -z "${PAAS_BIN_DIR:-}" ]]; then
  ensure_rust
  cargo build --locked --release -q -p paasd -p paas-cli
  PAAS_BIN_DIR=$PWD/target/release
fi

. bench/paasd.sh
bench_paasd restart 10.217.0.0/24 "$PAAS_BIN_DIR/paasd"

python3 - "$RUNS" "$dir" "$PAAS_BIN_DIR" <<'PY'
import http.client, json, os, shutil, statistics, subprocess, sys, threading, time
runs, d, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sock = os.path.join(d, "s.sock")
paas = [os.path.join(bins, "paas"), "--socket", sock]
health = subprocess.run(["curl", "-s", "--unix-socket", sock, "http://paasd/api/v1/health"],
                        check=True, capture_output=True, text=True).stdout
host, port = json.loads(health)["router"].rsplit(":", 1)

def run(*args):
    return subprocess.run(paas + list(args), check=True, capture_output=True, text=True)

def source(name, handler):
    src = os.path.join(d, name)
    shutil.copytree("examples/node-hello", src)
    if not handler:
        path = os.path.join(src, "server.js")
        text = open(path).read()
        cut = text.index("for (const signal of ['SIGTERM', 'SIGINT'])")
        open(path, "w").write(text[:cut])
    # Like most sample apps: bash execs the lone command, so node is the container's first
    # process (PID 1 without an init).
    open(os.path.join(src, "Procfile"), "w").write("web: node server.js\n")
    return src

def load(app, stop, counts):
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            c.request("GET", "/", headers={"Host": f"{app}.paas.localhost"})
            r = c.getresponse(); r.read(); c.close()
            counts["ok" if r.status == 200 else "failed"] += 1
        except Exception:
            counts["failed"] += 1

rows = []
for app, handler in (("noterm", False), ("hasterm", True)):
    run("create", app)
    run("deploy", app, "--source", source(app, handler))
    times, counts = [], {"ok": 0, "failed": 0}
    stop = threading.Event()
    threads = [threading.Thread(target=load, args=(app, stop, counts)) for _ in range(4)]
    for t in threads: t.start()
    time.sleep(1)
    for _ in range(runs):
        t0 = time.monotonic()
        run("restart", app)
        times.append(time.monotonic() - t0)
    stop.set()
    for t in threads: t.join()
    label = ("node-hello without a SIGTERM handler" if not handler
             else "node-hello with its SIGTERM handler (reference)")
    rows.append((label, statistics.median(times), max(times), counts))

print(f"{'paas restart, ' + str(runs) + ' runs':50} {'median s':>9} {'max s':>7}  requests ok/failed")
for label, med, mx, c in rows:
    print(f"{label:50} {med:9.2f} {mx:7.2f}  {c['ok']}/{c['failed']}")
PY

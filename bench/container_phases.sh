#!/usr/bin/env bash
# Where container start time goes: runs the container_start example (as bench/container.sh
# does, without crun) with PAAS_RUNTIME_TIMING=1 and prints, per phase mark of paasd and the
# helper (one CLOCK_MONOTONIC timeline), the median, p10 and p90 of the step from the previous
# mark and the median time since the start of the run. The first 3 runs are warm-up.
# Usage: [MODE=no-spare] bench/container_phases.sh [N] (default 50). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
N=${1:-50}
ensure_packages python3
ensure_rust
cargo build --locked --release -q -p paas-runtime --example container_start

dir=$(mktemp -d /tmp/paas-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
PAAS_RUNTIME_TIMING=1 target/release/examples/container_start "$dir/state" "$N" "${MODE:-spare}" 2>"$dir/timing.log" >"$dir/result"
python3 -c 'import statistics, sys; v = sorted(float(l.split()[0]) for l in open(sys.argv[1])); print(f"spawn to exit: median {statistics.median(v):.2f} ms, p90 {v[round((len(v) - 1) * 0.9)]:.2f} ms (with timing on)")' "$dir/result"
python3 - "$dir/timing.log" <<'PY'
import collections, statistics, sys
runs, cur = [], None
for line in open(sys.argv[1]):
    if not line.startswith("@paas-timing "):
        continue
    _, _pid, ns, phase = line.rstrip("\n").split(" ", 3)
    if phase == "run":
        cur = []
        runs.append(cur)
    if cur is not None:
        cur.append((int(ns), phase))
runs = runs[3:]
steps = collections.defaultdict(list)
for r in runs:
    r.sort()
    t0 = prev = r[0][0]
    for ns, phase in r:
        steps[phase].append(((ns - prev) / 1e6, (ns - t0) / 1e6))
        prev = ns
def q(v, f):
    return v[min(len(v) - 1, int(len(v) * f))]
order = sorted(steps, key=lambda p: statistics.median(x[1] for x in steps[p]))
print(f"{'phase':28} {'step med':>9} {'p10':>7} {'p90':>7} {'at med':>8}   ms, {len(runs)} runs")
for p in order:
    st = sorted(x[0] for x in steps[p])
    at = sorted(x[1] for x in steps[p])
    print(f"{p:28} {statistics.median(st):9.2f} {q(st, 0.1):7.2f} {q(st, 0.9):7.2f} {statistics.median(at):8.2f}")
PY

#!/usr/bin/env bash
# API latency and daemon footprint (issue 2). Prints, side by side in one run:
#   - `paas apps --json` wall time, process spawn to exit, median of N runs (target < 10 ms)
#   - the same request with `curl --unix-socket` (reference client) and `/bin/true` (spawn floor)
#   - paasd's idle RSS after the runs (target < 20 MB)
# Usage: bench/api.sh [RUNS] (default 20). Uses release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-20}
ensure_packages curl python3 procps iproute2 nftables
ensure_rust
cargo build --locked --release -q -p paasd -p paas-cli

. bench/paasd.sh
bench_paasd api 10.215.0.0/24 target/release/paasd
P="target/release/paas --socket $dir/s.sock"
for i in $(seq 1 10); do $P create "bench-$i" >/dev/null 2>&1; $P env set "bench-$i" A=1 B=2 >/dev/null 2>&1; done

python3 - "$RUNS" "$dir/s.sock" <<'PY'
import os, statistics, subprocess, sys, time
runs, sock = int(sys.argv[1]), sys.argv[2]
def median_ms(argv):
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts), max(ts)
rows = [
    ("paas apps --json", ["target/release/paas", "--socket", sock, "apps", "--json"]),
    ("curl --unix-socket (ref)", ["curl", "-sf", "--unix-socket", sock, "http://paasd/api/v1/apps"]),
    ("/bin/true (spawn floor)", ["/bin/true"]),
]
res = {name: median_ms(argv) for name, argv in rows}
print(f"{'command':28} {'median ms':>10} {'max ms':>8}   ({runs} runs, 10 apps)")
for name, (med, mx) in res.items():
    print(f"{name:28} {med:10.2f} {mx:8.2f}")
ours, ref = res[rows[0][0]][0], res[rows[1][0]][0]
print(f"ratio paas/curl: {ours / ref:.2f}   target: paas median < 10 ms -> {'MET' if ours < 10 else 'MISSED'}")
PY
sleep 1
rss_kb=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
hwm_kb=$(awk '/^VmHWM/ {print $2}' /proc/$pid/status)
# The router runs in paasd's edge process: the daemon's footprint is both. Together as PSS
# (each shared page split between the processes mapping it): the two map the same binary,
# which RSS would count twice.
edge=$(pgrep -P "$pid" -f __edge | head -n 1)
edge_kb=$(awk '/^VmRSS/ {print $2}' "/proc/${edge:-0}/status" 2>/dev/null || echo 0)
pss_kb=0
for p in "$pid" ${edge:+"$edge"}; do
  pss_kb=$((pss_kb + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
done
python3 -c "import sys; r, h, e, t = (int(a) / 1024 for a in sys.argv[1:5]); \
print(f'paasd idle RSS: {r:.1f} MB (peak {h:.1f} MB), its edge {e:.1f} MB; together (PSS) {t:.1f} MB   target < 20 MB -> {\"MET\" if t < 20 else \"MISSED\"}')" \
  "$rss_kb" "$hwm_kb" "${edge_kb:-0}" "$pss_kb"

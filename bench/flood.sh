#!/usr/bin/env bash
# The router and the daemon under abuse (issue 14): IDLE idle TCP connections (default
# 20,000, never sending a byte, from source addresses 127.0.0.2.. so the per-address cap
# does not refuse them all) and then SLOW slowloris connections (default 200, a request head
# one byte at a time), with a normal user alongside. Prints `paas apps --json` latency and a
# normal `GET /`'s p50/p95 (idle, under the flood, under slowloris), the edge's RSS idle / with
# the flood / peak / after closing (and how long it took to get back under 2x idle; the edge is
# the router's process, which holds the connections), its
# open descriptors, and whether any instance was restarted. Loopback only; every phase is
# bounded. The driver is bench/flood.py.
#
# Usage: [IDLE=20000] [SLOW=200] [NOFILE=N] [ROUTER_TOML='max_connections = 25000']
#        [PAAS_BIN_DIR=target/debug] bench/flood.sh
#   NOFILE      paasd's RLIMIT_NOFILE (soft and hard; default: this shell's hard limit,
#               raised to 1048576 as systemd/paasd.service does when NOFILE=systemd).
#   ROUTER_TOML lines for paasd.toml's [router] table (empty for binaries without the keys).
#   PAAS_BIN_DIR where paasd and paas are (default: a release build made here).
# Needs root (paasd).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
IDLE=${IDLE:-20000}
SLOW=${SLOW:-200}
ensure_packages python3 procps iproute2 nftables
if [[ -z "${PAAS_BIN_DIR:-}" ]]; then
  ensure_rust
  cargo build --locked --release -q -p paasd -p paas-cli
  PAAS_BIN_DIR=target/release
fi
case "${NOFILE:-}" in
  "") ;;
  systemd) ulimit -Hn 1048576; ulimit -Sn 1048576 ;;
  *) ulimit -Hn "$NOFILE" 2>/dev/null || true; ulimit -Sn "$NOFILE" ;;
esac

BENCH_PAASD_TOML=""
if [[ -n "${ROUTER_TOML:-}" ]]; then
  BENCH_PAASD_TOML=$(printf '[router]\n%s\n' "$ROUTER_TOML")
fi
export BENCH_PAASD_TOML
. bench/paasd.sh
bench_paasd flood 10.217.0.0/24 "$PAAS_BIN_DIR/paasd"
P="$PAAS_BIN_DIR/paas --socket $dir/s.sock"
step "deploying examples/procfile-hello as hello"
$P apps create hello >/dev/null
$P deploy hello --source examples/procfile-hello >"$dir/deploy.log" 2>&1 \
  || { cat "$dir/deploy.log"; die "deploy failed"; }
router=$(curl -sf --unix-socket "$dir/s.sock" http://paasd/api/v1/health \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["router"])')
# The edge (`paasd __edge STATE_DIR`) holds the router's connections, their descriptors and
# their memory: its RSS and descriptors are what the flood moves, not paasd's.
edge=$(pgrep -f -- "__edge $dir/state\$" | head -1)
[[ -n "$edge" ]] || die "no edge process for $dir/state"
step "load average before: $(cut -d' ' -f1-3 /proc/loadavg); edge $(grep 'open files' /proc/$edge/limits)"
python3 bench/flood.py --router "$router" --host hello.paas.localhost --app hello \
  --paas "$P" --pid "$edge" --idle "$IDLE" --slow "$SLOW" --socket "$dir/s.sock"
step "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -ciE 'EMFILE|Too many open files' "$dir/paasd.log" | sed 's/^/paasd log lines mentioning EMFILE: /' || true
grep -E 'RLIMIT_NOFILE|client connections|heap trimmed|inconclusive' "$dir/paasd.log" | head -8 || true

#!/usr/bin/env bash
# HTTP router vs nginx, in front of the SAME upstream instances, side by side in one run
# (issue: router throughput at least nginx's, p99 no worse). For each of 100 and 500
# keep-alive connections: wrk's requests/s, p50 and p99, and the proxy's CPU time per
# request, for both, then the ratios ours/nginx.
#
# Usage: [ROUNDS=5] [NGINX_KEEPALIVE=512] bench/router.sh [--standalone | --paasd] [SECONDS]
#   Each of ROUNDS rounds runs every (connections, proxy) pair for SECONDS (default 10) after a
#   2 s warm-up, alternating which proxy goes first; the table shows medians.
#   --paasd       real paasd (release build): deploys examples/go-hello as `gob`, scales it
#                 to web=2, reads the instance addresses from `paas ps gob --json`, and
#                 compares paasd's own router (`--http`) with nginx in front of them.
#                 The default when this build's `paas` has a `ps` command.
#   --standalone  no supervisor needed: two `hello_upstream` servers (hyper, one thread
#                 each) on loopback; our side is `paasd::router::Router` in the `router`
#                 example binary with a static table.
#
# Fairness, on a 2-core machine:
#   - CPU 0 runs the proxy under test and nothing else: nginx with one worker process,
#     ours with one runtime thread (standalone: `--threads 1`; paasd mode: every paasd
#     thread pinned to CPU 0). Only one proxy runs at a time.
#   - CPU 1 runs wrk (one thread) and, in standalone mode, both upstreams.
#     In paasd mode the go-hello instances and their monitors are moved there too.
#   - Access logs: off for both. nginx has `access_log off`; the standalone router's sink
#     only counts lines. In paasd mode paasd's sink is whatever paasd wires (the logs
#     module), so there ours does more work than nginx.
#   - paasd mode: paasd runs one tokio worker thread (TOKIO_WORKER_THREADS, PAASD_WORKERS to
#     change it), as nginx runs one worker; go-hello runs with LOG_REQUESTS=false so that
#     the app's own per-request lines (relayed by paasd on CPU 0 whichever proxy is measured)
#     do not count against either proxy.
#   - Both add X-Forwarded-For/Proto/Host and X-Request-Id and keep Host; both keep
#     keep-alive connections to the upstreams (nginx `keepalive $NGINX_KEEPALIVE`, default
#     512 so it does not churn connections at 500 clients; ours keeps up to 256 idle per
#     upstream) and to clients, with no per-connection request limit on either side.
# Needs root for apt-get (wrk, nginx) and for paasd mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MODE=auto
SECS=10
ROUNDS=${ROUNDS:-5}
for a in "$@"; do
  case "$a" in
    --standalone) MODE=standalone ;;
    --paasd) MODE=paasd ;;
    [0-9]*) SECS=$a ;;
    *) die "usage: bench/router.sh [--standalone|--paasd] [SECONDS]" ;;
  esac
done
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-512}
CONNS=(100 500)
PROXY_CPU=0
LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { PROXY_CPU=0; LOAD_CPU=0; }

command -v wrk >/dev/null 2>&1 || { need_root; ensure_packages wrk; }
if ! command -v nginx >/dev/null 2>&1; then
  need_root
  ensure_packages nginx
  # The benchmark only needs the binary; a packaged nginx left on :80 would take paasd's port.
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
ensure_packages python3 procps curl
ensure_rust
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$MODE" = auto ]; then
  cargo build --locked --release -q -p paas-cli
  if target/release/paas ps --help >/dev/null 2>&1; then MODE=paasd; else MODE=standalone; fi
fi

dir=$(mktemp -d /tmp/paas-bench-router-XXXXXX)
pids=()
paasd_pid=
# paasd mode: a bridge, subnet and cgroup parent of the benchmark's own, removed at the end
# (instances outlive paasd by design, so the app is destroyed before paasd stops).
bridge="pbrt$$"; bridge=${bridge:0:15}
cgparent="paas-bench-router-$$"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$paasd_pid" ]; then
    target/release/paas --socket "$dir/s.sock" apps destroy gob --confirm gob >/dev/null 2>&1 || true
    kill "$paasd_pid" 2>/dev/null || true
    wait "$paasd_pid" 2>/dev/null || true
    ip link del "$bridge" 2>/dev/null || true
    nft delete table inet "paas_$bridge" 2>/dev/null || true
    find /sys/fs/cgroup/*/"$cgparent" /sys/fs/cgroup/"$cgparent" -depth -type d \
      -exec rmdir {} + 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # HOST PORT
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  die "nothing listens on $1:$2"
}

HOST=gob.paas.test
OUR_PORT=$(free_port)
NGINX_PORT=$(free_port)

if [ "$MODE" = standalone ]; then
  step "standalone mode: building the router and upstream examples"
  cargo build --locked --release -q -p paas-router --example router --example hello_upstream
  UPSTREAMS=()
  for name in web.1 web.2; do
    port=$(free_port)
    taskset -c "$LOAD_CPU" target/release/examples/hello_upstream --listen "127.0.0.1:$port" \
      --name "$name" &
    pids+=($!)
    wait_port 127.0.0.1 "$port"
    UPSTREAMS+=("127.0.0.1:$port")
  done
  taskset -c "$PROXY_CPU" target/release/examples/router --listen "127.0.0.1:$OUR_PORT" \
    --threads 1 --route "$HOST=$(IFS=,; echo "${UPSTREAMS[*]}")" 2>"$dir/router.log" &
  our_pid=$!
  pids+=("$our_pid")
  wait_port 127.0.0.1 "$OUR_PORT"
  OURS_LABEL="router (example, 1 thread)"
else
  need_root
  step "paasd mode: building the workspace"
  cargo build --locked --release -q --workspace
  : > "$dir/paasd.toml"
  # One runtime thread, as nginx gets one worker process: both proxies alone on one CPU.
  TOKIO_WORKER_THREADS=${PAASD_WORKERS:-1} \
  target/release/paasd --config "$dir/paasd.toml" --socket "$dir/s.sock" --state-dir "$dir/state" \
    --http "127.0.0.1:$OUR_PORT" --base-domain paas.test --buildpacks-dir "$PWD/buildpacks" \
    --bridge "$bridge" --subnet 10.216.0.0/24 --cgroup-parent "$cgparent" \
    2>"$dir/paasd.log" &
  paasd_pid=$!
  for _ in $(seq 1 200); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
  P="target/release/paas --socket $dir/s.sock"
  step "deploying examples/go-hello as gob, web=2"
  $P apps create gob >/dev/null
  $P deploy gob --source examples/go-hello >"$dir/deploy.log" 2>&1 || { cat "$dir/deploy.log"; die "deploy failed"; }
  # go-hello logs a line per request, which paasd relays into the log stream on the proxy's
  # CPU during both proxies' runs but which would count as ours: the app stays quiet.
  $P env set gob LOG_REQUESTS=false >/dev/null
  $P scale gob web=2 >/dev/null
  UPSTREAMS=()
  for _ in $(seq 1 300); do
    mapfile -t UPSTREAMS < <($P ps gob --json | python3 -c '
import json, sys
for i in json.load(sys.stdin)["instances"]:
    if i["name"].startswith("web.") and i["state"] == "up" and i.get("address"):
        print(i["address"])')
    [ "${#UPSTREAMS[@]}" -ge 2 ] && break
    sleep 0.2
  done
  [ "${#UPSTREAMS[@]}" -ge 2 ] || die "gob did not get two web instances up: $($P ps gob 2>&1)"
  wait_port 127.0.0.1 "$OUR_PORT"
  # Every paasd thread on the proxy CPU (threads started later inherit it).
  taskset -a -cp "$PROXY_CPU" "$paasd_pid" >/dev/null
  # The instances (and their monitors) run with wrk on the other CPU, as the upstreams do in
  # standalone mode: left to the kernel they land on the proxy's CPU and preempt whichever
  # proxy is measured (thousands of involuntary switches a second).
  for f in /sys/fs/cgroup/cpu/"$cgparent"/*/cgroup.procs /sys/fs/cgroup/"$cgparent"/*/cgroup.procs; do
    [ -f "$f" ] || continue
    for p in $(cat "$f"); do taskset -a -cp "$LOAD_CPU" "$p" >/dev/null 2>&1 || true; done
  done
  for p in $(pgrep -P "$paasd_pid" -f __runtime-helper); do taskset -a -cp "$LOAD_CPU" "$p" >/dev/null 2>&1 || true; done
  our_pid=$paasd_pid
  OURS_LABEL="paasd --http (its router)"
fi
echo "upstreams: ${UPSTREAMS[*]}" >&2

# nginx: one worker on the proxy CPU, configured like ours.
{
  echo "worker_processes 1;"
  echo "pid $dir/nginx.pid;"
  echo "error_log $dir/nginx-error.log warn;"
  echo "events { worker_connections 8192; }"
  echo "http {"
  echo "  access_log off;"
  echo "  client_body_temp_path $dir/nginx-body; proxy_temp_path $dir/nginx-proxy;"
  echo "  keepalive_timeout 75s; keepalive_requests 1000000000;"
  echo "  upstream apps {"
  for u in "${UPSTREAMS[@]}"; do echo "    server $u;"; done
  echo "    keepalive $NGINX_KEEPALIVE; keepalive_requests 1000000000; keepalive_timeout 60s;"
  echo "  }"
  echo "  server {"
  echo "    listen 127.0.0.1:$NGINX_PORT;"
  echo "    location / {"
  echo "      proxy_pass http://apps;"
  echo "      proxy_http_version 1.1;"
  echo "      proxy_set_header Connection \"\";"
  echo "      proxy_set_header Host \$http_host;"
  echo "      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
  echo "      proxy_set_header X-Forwarded-Proto \$scheme;"
  echo "      proxy_set_header X-Forwarded-Host \$http_host;"
  echo "      proxy_set_header X-Request-Id \$request_id;"
  echo "    }"
  echo "  }"
  echo "}"
} > "$dir/nginx.conf"
taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
pids+=("$nginx_pid")
wait_port 127.0.0.1 "$NGINX_PORT"

for port in "$OUR_PORT" "$NGINX_PORT"; do
  out=$(curl -s -H "Host: $HOST" "http://127.0.0.1:$port/") || die "no answer through port $port"
  echo "through :$port -> $out" >&2
done

# CPU ticks (user+system) of a process and its children threads; for nginx, master + workers.
cpu_ticks() {
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
proxy_pids() { # NAME
  if [ "$1" = nginx ]; then echo "$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"; else echo "$our_pid"; fi
}

# run NAME PORT CONNS -> "rps p50_ms p99_ms cpu_us_per_req"
run() {
  local name=$1 port=$2 c=$3 before after out
  # Warm up: connections to the upstreams, caches, the CPU frequency.
  taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d2s -H "Host: $HOST" "http://127.0.0.1:$port/" >/dev/null
  # shellcheck disable=SC2046
  before=$(cpu_ticks $(proxy_pids "$name"))
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${SECS}s" --latency -H "Host: $HOST" "http://127.0.0.1:$port/")
  # shellcheck disable=SC2046
  after=$(cpu_ticks $(proxy_pids "$name"))
  echo "$out" > "$dir/wrk-$name-$c.txt"
  echo "$out" | python3 -c '
import re, sys
text = sys.stdin.read()
ticks, hz = int(sys.argv[1]), int(sys.argv[2])
def ms(v):
    n, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
reqs = int(re.search(r"(\d+) requests in", text).group(1))
errs = re.search(r"Socket errors: (.*)", text)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errs or non2xx:
    print("warning: " + (errs.group(0) if errs else "") + " " + (non2xx.group(0) if non2xx else ""), file=sys.stderr)
cpu_us = ticks / hz * 1e6 / max(reqs, 1)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {cpu_us:.1f}")
' "$((after - before))" "$(getconf CLK_TCK)"
}

step "wrk -t1 -cN -d${SECS}s --latency x $ROUNDS rounds (interleaved), proxy on CPU $PROXY_CPU, wrk + upstreams on CPU $LOAD_CPU"
: > "$dir/results"
for r in $(seq 1 "$ROUNDS"); do
  for c in "${CONNS[@]}"; do
    # Alternate who goes first: the machine's speed drifts (other tenants, CPU frequency).
    if [ $((r % 2)) -eq 1 ]; then order=(nginx ours); else order=(ours nginx); fi
    for who in "${order[@]}"; do
      if [ "$who" = nginx ]; then port=$NGINX_PORT; else port=$OUR_PORT; fi
      line="$c $who $(run "$who" "$port" "$c")"
      echo "round $r: $line" >&2
      echo "$line" >> "$dir/results"
    done
  done
done

echo
echo "mode: $MODE ($OURS_LABEL vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')), $(nproc) CPUs,"
echo "median of $ROUNDS interleaved runs of ${SECS}s each"
python3 - "$dir/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    c, who, *vals = line.split()
    rows.setdefault((int(c), who), []).append(list(map(float, vals)))
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
print(f"{'conns':<6} {'proxy':<8} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU us/req':>11}")
for c in sorted({c for c, _ in med}):
    o, n = med[(c, "ours")], med[(c, "nginx")]
    for who, v in (("ours", o), ("nginx", n)):
        print(f"{c:<6} {who:<8} {v[0]:10.0f} {v[1]:9.2f} {v[2]:9.2f} {v[3]:11.1f}")
    r = [a / b if b else float("nan") for a, b in zip(o, n)]
    verdict = "MET" if r[0] >= 1.0 and r[2] <= 1.0 else "MISSED"
    print(f"{c:<6} {'ours/ng':<8} {r[0]:10.2f} {r[1]:9.2f} {r[2]:9.2f} {r[3]:11.2f}"
          f"   target req/s >= 1 and p99 <= 1: {verdict}")
PY

#!/usr/bin/env bash
# HTTP router vs nginx, in front of the SAME upstream instances, side by side in one run
# (issue 15: throughput and handshake rate at least nginx's at every concurrency, p99 no
# worse, memory at 2,000 connections within 2x nginx's). For each count of keep-alive
# connections (CONNS) and, with --tls, over plain HTTP and over TLS 1.3: wrk's requests/s,
# p50 and p99, the proxy's CPU time per request and how busy its CPU was, for both proxies,
# then the ratios ours/nginx. Also the proxy's memory (PSS from /proc/PID/smaps_rollup,
# nginx's master + worker): idle before the first run, the highest seen during the runs at
# the largest count (sampled every 0.2 s) and AFTER_SECS after such a run. With --tls, also
# new TLS connections per second (a full handshake each) and CPU per handshake.
#
# Usage: [ROUNDS=5] [CONNS="100 500 2000"] [NGINX_KEEPALIVE=2000] [HS_SECS=SECONDS]
#        [AFTER_SECS=3] [HS_CAP=40] [PACED=1] [PACED_LOAD=70] [PACED_ROUNDS=3]
#        bench/router.sh [--standalone | --paasd] [--tls] [SECONDS]
#   Each of ROUNDS rounds runs every (protocol, connections, proxy) cell for SECONDS (default
#   10) after a 2 s warm-up, alternating which proxy goes first; the tables show medians.
#   --tls runs the keep-alive cells twice, plain HTTP and HTTPS, plus the handshake test,
#   and so defaults to ROUNDS=5 and SECONDS=8 (about 22 minutes with the paced cells).
#   Five, not three: on a 2-CPU VM a cell at 2,000 connections runs in one of two states
#   (see docs/benchmarks.md) for either proxy, and three rounds let one unlucky round decide.
#   --paasd       real paasd (release build): deploys examples/go-hello as `gob`, scales it
#                 to web=2, reads the instance addresses from `paas ps gob --json`, and
#                 compares paasd's own router (`--http`) with nginx in front of them.
#                 The default when this build's `paas` has a `ps` command. Plain HTTP only:
#                 TLS there needs paasd's HTTPS listener and `paas certs`, which this script
#                 does not set up (the router code is the same as in standalone mode).
#   --standalone  no supervisor needed: two `hello_upstream` servers (hyper, one thread
#                 each) on loopback; our side is `paas_router::Router` in the `router`
#                 example binary with a static table (and, with --tls, its TLS listener).
#                 The default with --tls.
#
# Fairness, on a 2-core machine:
#   - CPU 0 runs the proxy under test and nothing else: nginx with one worker process,
#     ours with one runtime thread (standalone: `--threads 1`; paasd mode: every paasd
#     thread pinned to CPU 0). Only one proxy runs at a time.
#   - With --tls each proxy runs one process per protocol (ours: a second `router` with the
#     TLS listener; nginx: a second nginx with the TLS server), so that a protocol's CPU and
#     memory figures are its own (nginx keeps the memory of 2,000 TLS connections long after
#     they close, which would otherwise show in its plain-HTTP figures). paasd serves both
#     from one process.
#   - CPU 1 runs the client (wrk, one thread; h2load for handshakes) and, in standalone
#     mode, both upstreams. In paasd mode the go-hello instances and their monitors are
#     moved there too.
#   - Access logs: off for both. nginx has `access_log off`; the standalone router's sink
#     only counts lines. In paasd mode the edge process sends every access line to paasd,
#     which writes it to the app's log (the logs module): there ours does more work than
#     nginx, and both processes count as ours.
#   - paasd mode: paasd runs one tokio worker thread (TOKIO_WORKER_THREADS, PAASD_WORKERS to
#     change it), as nginx runs one worker; go-hello runs with LOG_REQUESTS=false so that
#     the app's own per-request lines (relayed by paasd on CPU 0 whichever proxy is measured)
#     do not count against either proxy.
#   - Both add X-Forwarded-For/Proto/Host and X-Request-Id and keep Host; both keep
#     keep-alive connections to the upstreams and to clients, with no per-connection request
#     limit on either side. Idle upstream connections kept: nginx `keepalive
#     $NGINX_KEEPALIVE` (in all), default the largest count of CONNS but at least 512, so
#     that neither churns connections (with 2,000 clients and 512 kept, ours opens and
#     closes thousands a second, which cost it a fifth of its throughput on 2026-12-06, and
#     the TIME_WAIT sockets left behind slow later connects of both); ours
#     `--max-idle-per-upstream` half of it for each of the two upstreams (standalone; paasd
#     keeps its default: every connection, until its idle timeout). Ours drops an idle
#     upstream connection after 4 s, nginx after 60 s.
#   - No per-client-address cap on either: all of wrk's connections come from 127.0.0.1, so
#     ours gets `max_connections_per_ip` 10,000 (standalone: the example's flag; paasd:
#     `[router]` in its config); the default, 256, would refuse most of them.
#   - TLS: one ECDSA P-256 certificate made with openssl at the start of the run, served by
#     both; TLS 1.3 (nginx `ssl_protocols TLSv1.3`; ours offers 1.2 and 1.3 and the clients
#     pick 1.3); the key exchange and cipher the client prefers (X25519; wrk AES-256-GCM,
#     h2load AES-128-GCM, the same for both proxies); HTTP/1.1 (wrk and h2load --h1 offer
#     only http/1.1, so ours never speaks HTTP/2 here and nginx has no `http2`). Resumption
#     is on for both as each is deployed (nginx: tickets and a 10 MB shared session cache;
#     ours: tickets and a 4,096-entry cache) but unused: neither client resumes. wrk talks
#     to https://localhost:PORT with `Host: gob.paas.test`: SNI `localhost`, which the router
#     example serves the certificate for (ours picks certificates by SNI; nginx's one TLS
#     server is the default for every name).
#   - Keep-alive TLS cells include their connections' handshakes (each wrk run opens its N
#     connections anew): at 2,000 connections that is 2,000 handshakes in the measured run.
#   - Handshakes: h2load (nghttp2-client; C, one event loop, OpenSSL) with
#     `--h1 -H 'Connection: close'` makes every request a new TCP connection and a full TLS
#     1.3 handshake (no resumption), HS_CONC (100) at a time, one request each, proxied to
#     the upstreams. Chosen over wrk with the same header (the same OpenSSL work, but no
#     count of failed handshakes), `openssl s_time` (one connection at a time) and Python's
#     ssl (the same OpenSSL work plus an interpreter). It needs 200-260 us of CPU 1 per
#     connection (OpenSSL 3 and the kernel's loopback work), so it drives about 4,000
#     connections/s: enough to saturate a proxy that spends more than that per handshake
#     (nginx, ~230 us), not one that spends less. The table therefore also gives the proxy's
#     CPU busy share and the client's CPU per handshake: a busy share well under 100% means
#     the rate is the client's limit and the proxy's is about 1e6 / (CPU us per handshake).
#     (h2load -D hangs with reconnecting clients in 1.52, so a 1,000-connection warm-up
#     gauges the rate and the measured run asks for HS_SECS seconds' worth.)
#   - Handshakes with a client that is not the bottleneck: on two CPUs the client cannot get
#     more than one, so the test runs a second time with each proxy held to HS_CAP percent
#     (default 40) of one CPU by a CPU cgroup of the benchmark's own (cgroup v2 `cpu.max`,
#     or v1 `cpu.cfs_quota_us`). The proxy is then the limit for both (the table shows the
#     client's CPU share, which must stay well under 100%), and the rates compare what each
#     proxy does with the same CPU. Uncapped, a proxy that is idle half the time also makes
#     the client pay more per connection: each of the client's sends must wake the proxy's
#     sleeping thread on the other CPU (an inter-processor interrupt, costly in a VM), which
#     a proxy that is always busy never needs (2026-12-06: h2load spent 198 us per connection
#     against ours, 176 us against nginx, the difference in `_raw_spin_unlock_irqrestore`
#     under `sock_def_readable`).
#   - Latency at the same load (PACED, default on; PACED=0 skips it): wrk keeps N requests in
#     flight (a closed loop), so a faster proxy also loads the client's and the upstreams'
#     CPU more, and its p99 there includes that queueing. After the keep-alive rounds, each
#     (protocol, count) cell runs again for both proxies with h2load (--h1, N connections,
#     one thread) sending at a fixed rate, `--rps`: PACED_LOAD percent (default 70) of the
#     slower proxy's keep-alive median. Both proxies then get the same requests per second,
#     and p50 / p99 / p99.9 come from h2load's per-request log. PACED_ROUNDS (default 3)
#     interleaved rounds of SECONDS each after a 2 s warm-up; medians. Each run opens its N
#     connections anew (and with TLS does N handshakes at once), so the requests of its
#     first PACED_SKIP seconds (default 2) are not counted: with 2,000 TLS connections that
#     burst alone made the p99 (ours 232 ms, nginx 186 ms over the whole run; 73 and 77 ms
#     after its first 1.5 s).
# Needs root for apt-get (wrk, nginx, nghttp2-client) and for paasd mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MODE=auto
SECS=
TLS=false
for a in "$@"; do
  case "$a" in
    --standalone) MODE=standalone ;;
    --paasd) MODE=paasd ;;
    --tls) TLS=true ;;
    [0-9]*) SECS=$a ;;
    *) die "usage: bench/router.sh [--standalone|--paasd] [--tls] [SECONDS]" ;;
  esac
done
if $TLS; then
  [ "$MODE" = paasd ] && die "--tls is measured in --standalone mode only (see the header)"
  MODE=standalone
  PROTOS=(http https)
  SECS=${SECS:-8}
  ROUNDS=${ROUNDS:-5}
else
  PROTOS=(http)
  SECS=${SECS:-10}
  ROUNDS=${ROUNDS:-5}
fi
read -r -a CONN_COUNTS <<< "${CONNS:-100 500 2000}"
[ "${#CONN_COUNTS[@]}" -gt 0 ] || die "CONNS is empty"
# Memory is sampled during the runs at the largest count.
MEM_CONNS=$(printf '%s\n' "${CONN_COUNTS[@]}" | sort -n | tail -1)
# Idle upstream connections: enough for the largest count, so that neither proxy churns them.
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-$((MEM_CONNS > 512 ? MEM_CONNS : 512))}
HS_SECS=${HS_SECS:-$SECS}
HS_CONC=${HS_CONC:-100}
HS_CAP=${HS_CAP:-40}
AFTER_SECS=${AFTER_SECS:-3}
PACED=${PACED:-1}
PACED_LOAD=${PACED_LOAD:-70}
PACED_ROUNDS=${PACED_ROUNDS:-3}
PACED_SKIP=${PACED_SKIP:-2}
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
if $TLS || [ "$PACED" != 0 ]; then
  command -v h2load >/dev/null 2>&1 || { need_root; ensure_packages nghttp2-client; }
fi
if $TLS; then
  command -v openssl >/dev/null 2>&1 || { need_root; ensure_packages openssl; }
  [ -x /usr/bin/time ] || { need_root; ensure_packages time; }
fi
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
capdir=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$capdir" ]; then
    wait 2>/dev/null || true
    rmdir "$capdir" 2>/dev/null || true
  fi
  if [ -n "$paasd_pid" ]; then
    target/release/paas --socket "$dir/s.sock" apps destroy gob --confirm gob >/dev/null 2>&1 || true
    # SIGINT: a full stop (SIGTERM would be a restart: the edge would serve on).
    kill -INT "$paasd_pid" 2>/dev/null || true
    wait "$paasd_pid" 2>/dev/null || true
    pkill -KILL -f "__edge $dir/state" 2>/dev/null || true
    ip link del "$bridge" 2>/dev/null || true
    nft delete table inet "paas_$bridge" 2>/dev/null || true
    find /sys/fs/cgroup/*/"$cgparent" /sys/fs/cgroup/"$cgparent" -depth -type d \
      -exec rmdir {} + 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT


HOST=gob.paas.test
OUR_PORT=$(free_port)
NGINX_PORT=$(free_port)
OUR_TLS_PORT=$(free_port)
NGINX_TLS_PORT=$(free_port)
if $TLS; then
  # One ECDSA P-256 certificate for both proxies, made for this run.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST,DNS:localhost" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
fi

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
  router=(taskset -c "$PROXY_CPU" target/release/examples/router --threads 1
    --max-connections-per-ip 10000 --max-idle-per-upstream $(((NGINX_KEEPALIVE + 1) / 2))
    --route "$HOST=$(IFS=,; echo "${UPSTREAMS[*]}")")
  "${router[@]}" --listen "127.0.0.1:$OUR_PORT" 2>"$dir/router.log" &
  our_pid=$!
  pids+=("$our_pid")
  wait_port 127.0.0.1 "$OUR_PORT"
  if $TLS; then
    # A process of its own (its plain listener unused), as nginx's TLS server below: the
    # memory and CPU of each protocol are then its own.
    "${router[@]}" --listen "127.0.0.1:$(free_port)" --tls-listen "127.0.0.1:$OUR_TLS_PORT" \
      --cert "$dir/cert.pem" --key "$dir/key.pem" 2>"$dir/router-tls.log" &
    our_tls_pid=$!
    pids+=("$our_tls_pid")
    wait_port 127.0.0.1 "$OUR_TLS_PORT"
  fi
  OURS_LABEL="router (example, 1 thread)"
else
  need_root
  step "paasd mode: building the workspace"
  cargo build --locked --release -q --workspace
  # No per-address cap: every wrk connection comes from 127.0.0.1 (nginx has none either).
  printf '[router]\nmax_connections_per_ip = 10000\n' > "$dir/paasd.toml"
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
  # The router runs in paasd's edge process; paasd itself turns its access lines into the
  # app's log. Both count as ours (CPU and memory), both on the proxy CPU.
  edge_pid=$(pgrep -P "$paasd_pid" -f __edge | head -n 1)
  [ -n "$edge_pid" ] || die "paasd started no edge process"
  taskset -a -cp "$PROXY_CPU" "$edge_pid" >/dev/null
  our_pid="$edge_pid $paasd_pid"
  OURS_LABEL="paasd --http (its edge + paasd)"
fi
echo "upstreams: ${UPSTREAMS[*]}" >&2

# nginx: one worker on the proxy CPU, configured like ours; with --tls a second nginx serves
# TLS (as ours runs a second router).
nginx_conf() { # NAME SERVER-LINES
  echo "worker_processes 1;"
  echo "pid $dir/$1.pid;"
  echo "error_log $dir/$1-error.log warn;"
  echo "events { worker_connections 8192; }"
  echo "http {"
  echo "  access_log off;"
  echo "  client_body_temp_path $dir/$1-body; proxy_temp_path $dir/$1-proxy;"
  echo "  keepalive_timeout 75s; keepalive_requests 1000000000;"
  echo "  upstream apps {"
  for u in "${UPSTREAMS[@]}"; do echo "    server $u;"; done
  echo "    keepalive $NGINX_KEEPALIVE; keepalive_requests 1000000000; keepalive_timeout 60s;"
  echo "  }"
  echo "  server {"
  echo "$2"
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
}
nginx_conf nginx "    listen 127.0.0.1:$NGINX_PORT;" > "$dir/nginx.conf"
taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
pids+=("$nginx_pid")
wait_port 127.0.0.1 "$NGINX_PORT"
if $TLS; then
  nginx_conf nginx-tls "    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.3;
    ssl_session_tickets on;
    ssl_session_cache shared:SSL:10m;" > "$dir/nginx-tls.conf"
  taskset -c "$PROXY_CPU" nginx -c "$dir/nginx-tls.conf" -g 'daemon off;' &
  nginx_tls_pid=$!
  pids+=("$nginx_tls_pid")
  wait_port 127.0.0.1 "$NGINX_TLS_PORT"
fi

url() { # PROTO PORT
  if [ "$1" = https ]; then echo "https://localhost:$2/"; else echo "http://127.0.0.1:$2/"; fi
}
port_of() { # PROTO NAME
  case "$1-$2" in
    http-ours) echo "$OUR_PORT" ;;
    http-nginx) echo "$NGINX_PORT" ;;
    https-ours) echo "$OUR_TLS_PORT" ;;
    https-nginx) echo "$NGINX_TLS_PORT" ;;
  esac
}
for proto in "${PROTOS[@]}"; do
  for who in ours nginx; do
    port=$(port_of "$proto" "$who")
    out=$(curl -sk --http1.1 -H "Host: $HOST" "$(url "$proto" "$port")") || true
    case "$out" in
      "Hello from"*) ;;
      *) die "no answer from the upstreams through $who over $proto (port $port): $out" ;;
    esac
    echo "$who over $proto (:$port) -> $out" >&2
    if [ "$proto" = https ]; then
      # What the clients get: protocol, cipher, key exchange, signature.
      openssl s_client -connect "127.0.0.1:$port" -servername localhost -alpn http/1.1 \
        </dev/null 2>/dev/null |
        grep -E '^(New,|Server Temp Key|Peer signature type|ALPN protocol)' | sed 's/^/    /' >&2
    fi
  done
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
proxy_pids() { # PROTO NAME
  case "$1-$2" in
    http-nginx) echo "$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')" ;;
    https-nginx) echo "$nginx_tls_pid $(pgrep -P "$nginx_tls_pid" | tr '\n' ' ')" ;;
    http-ours) echo "$our_pid" ;;
    https-ours) echo "$our_tls_pid" ;;
  esac
}

# Memory in kB of the proxy's processes: their PSS (resident pages, each shared page split
# between the processes that map it), so that nginx's master and worker, which share their
# binary, libraries and config, add up to what they take together; for ours, one process,
# it equals its RSS.
rss_kb() { # PROTO NAME
  local total=0 p k v rest
  # shellcheck disable=SC2046
  for p in $(proxy_pids "$1" "$2"); do
    [ -r "/proc/$p/smaps_rollup" ] || continue
    while read -r k v rest; do
      if [ "$k" = Pss: ]; then total=$((total + v)); fi
    done < "/proc/$p/smaps_rollup"
  done
  echo "$total"
}
# Writes the highest memory seen into FILE every 0.2 s until killed.
sample_rss() { # PROTO NAME FILE
  local peak=0 now
  while :; do
    now=$(rss_kb "$1" "$2")
    # Renamed into place: the sampler is killed at any moment.
    if [ "$now" -gt "$peak" ]; then peak=$now; echo "$peak" > "$3.new"; mv "$3.new" "$3"; fi
    sleep 0.2
  done
}

# run PROTO NAME CONNS -> "rps p50_ms p99_ms cpu_us_per_req cpu_busy_pct errors peak_kb after_kb"
# (peak and after are 0 but at MEM_CONNS)
run() {
  local proto=$1 name=$2 c=$3 before after out u sampler=
  u=$(url "$proto" "$(port_of "$proto" "$name")")
  # Warm up: connections to the upstreams, caches, the CPU frequency.
  taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d2s -H "Host: $HOST" "$u" >/dev/null
  echo 0 > "$dir/peak"
  if [ "$c" = "$MEM_CONNS" ]; then
    sample_rss "$proto" "$name" "$dir/peak" >/dev/null &
    sampler=$!
    taskset -cp "$LOAD_CPU" "$sampler" >/dev/null
  fi
  # shellcheck disable=SC2046
  before=$(cpu_ticks $(proxy_pids "$proto" "$name"))
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${SECS}s" --latency -H "Host: $HOST" "$u")
  # shellcheck disable=SC2046
  after=$(cpu_ticks $(proxy_pids "$proto" "$name"))
  local peak=0 rest=0
  if [ -n "$sampler" ]; then
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    peak=$(cat "$dir/peak")
    sleep "$AFTER_SECS"
    rest=$(rss_kb "$proto" "$name")
  fi
  echo "$out" > "$dir/wrk-$proto-$name-$c.txt"
  echo "$out" | python3 -c '
import re, sys
text = sys.stdin.read()
ticks, hz, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def ms(v):
    n, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
reqs = int(re.search(r"(\d+) requests in", text).group(1))
errs = re.search(r"Socket errors: (.*)", text)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
nerr = sum(int(n) for n in re.findall(r"\d+", errs.group(1))) if errs else 0
nerr += int(non2xx.group(1)) if non2xx else 0
if nerr:
    print("warning: " + (errs.group(0) if errs else "") + " " + (non2xx.group(0) if non2xx else ""), file=sys.stderr)
cpu_us = ticks / hz * 1e6 / max(reqs, 1)
busy = 100 * ticks / hz / secs
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {cpu_us:.1f} {busy:.0f} {nerr} {sys.argv[4]} {sys.argv[5]}")
' "$((after - before))" "$(getconf CLK_TCK)" "$SECS" "$peak" "$rest"
}

# The CPU cgroup that holds a proxy to HS_CAP percent of one CPU (see the header): v2's
# cpu.max, or v1's CFS quota on hybrid hosts. Sets capdir and caproot (the hierarchy's root).
cap_setup() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    caproot=/sys/fs/cgroup
    grep -qw cpu "$caproot/cgroup.subtree_control" || echo +cpu > "$caproot/cgroup.subtree_control"
    capdir="$caproot/paas-bench-hs-$$"
    mkdir "$capdir"
    echo "$((HS_CAP * 1000)) 100000" > "$capdir/cpu.max"
  elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    caproot=/sys/fs/cgroup/cpu
    capdir="$caproot/paas-bench-hs-$$"
    mkdir "$capdir"
    echo 100000 > "$capdir/cpu.cfs_period_us"
    echo "$((HS_CAP * 1000))" > "$capdir/cpu.cfs_quota_us"
  else
    die "no CPU cgroup controller to hold the proxies to HS_CAP=$HS_CAP% for the handshake test"
  fi
}

# cap on|off PIDS...: into the capped cgroup, or back to the one each came from.
declare -A cap_from
cap() {
  local how=$1 p rel
  shift
  for p in "$@"; do
    if [ "$how" = on ]; then
      if [ "$caproot" = /sys/fs/cgroup ]; then
        rel=$(sed -n 's/^0:://p' "/proc/$p/cgroup")
      else
        rel=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}cpu\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p' "/proc/$p/cgroup")
      fi
      cap_from[$p]="$caproot${rel%/}"
      echo "$p" > "$capdir/cgroup.procs"
    else
      echo "$p" > "${cap_from[$p]}/cgroup.procs"
    fi
  done
}

# handshakes NAME -> "conns_per_s cpu_us_per_conn cpu_busy_pct client_cpu_us_per_conn failed"
# New TLS connections, one request each (see the header).
handshakes() {
  local name=$1 u out before after n rate
  u=$(url https "$(port_of https "$name")")
  local h2=(taskset -c "$LOAD_CPU" h2load --h1 -t1 -c"$HS_CONC" -H 'Connection: close'
    -H ":authority: $HOST")
  # Warm-up, and the rate to size the measured run by.
  out=$("${h2[@]}" -n 1000 "$u")
  rate=$(echo "$out" | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p')
  n=$(python3 -c "import sys; print(max(2000, int(float(sys.argv[1] or 0) * float(sys.argv[2]))))" \
    "$rate" "$HS_SECS")
  # shellcheck disable=SC2046
  before=$(cpu_ticks $(proxy_pids https "$name"))
  out=$(/usr/bin/time -f 'client-cpu %U %S' "${h2[@]}" -n "$n" "$u" 2>&1)
  # shellcheck disable=SC2046
  after=$(cpu_ticks $(proxy_pids https "$name"))
  echo "$out" > "$dir/h2load-$name.txt"
  echo "$out" | python3 -c '
import re, sys
text = sys.stdin.read()
ticks, hz = int(sys.argv[1]), int(sys.argv[2])
m = re.search(r"finished in ([\d.]+)(ms|s),", text)
secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
ok = int(re.search(r"(\d+) succeeded", text).group(1))
bad = sum(int(x) for x in re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", text).groups())
if "TLSv1.3" not in text:
    print("warning: h2load did not report TLSv1.3", file=sys.stderr)
if bad:
    print(f"warning: {bad} connections failed", file=sys.stderr)
cu, cs = map(float, re.search(r"client-cpu ([\d.]+) ([\d.]+)", text).groups())
cpu_us = ticks / hz * 1e6 / max(ok, 1)
print(f"{ok / secs:.0f} {cpu_us:.1f} {100 * ticks / hz / secs:.0f} {(cu + cs) * 1e6 / max(ok, 1):.1f} {bad}")
' "$((after - before))" "$(getconf CLK_TCK)"
}

# paced PROTO NAME CONNS RATE -> "rps p50_ms p99_ms p999_ms failed"
# RATE requests/s in all, spread over CONNS connections (see the header).
paced() {
  local proto=$1 name=$2 c=$3 rate=$4 u per log out
  u=$(url "$proto" "$(port_of "$proto" "$name")")
  per=$(python3 -c "import sys; print(max(1, round(float(sys.argv[1]) / int(sys.argv[2]))))" "$rate" "$c")
  local h2=(taskset -c "$LOAD_CPU" h2load --h1 -t1 -c"$c" -H ":authority: $HOST")
  "${h2[@]}" -D 2 "$u" >/dev/null 2>&1
  log="$dir/paced-$proto-$name-$c.log"
  rm -f "$log"
  # New connections open at once, each with its handshake: their first requests wait behind
  # that burst. The first PACED_SKIP seconds are sent but not counted: steady state only.
  out=$("${h2[@]}" --rps "$per" -D "$((SECS + PACED_SKIP))" --log-file "$log" "$u" 2>&1)
  echo "$out" > "$dir/h2load-paced-$proto-$name-$c.txt"
  python3 - "$log" "$SECS" "$PACED_SKIP" <<'PY'
import sys
# h2load's log: start (us since epoch), status, duration (us); failed requests show status -1.
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
if rows:
    t0 = min(int(r[0]) for r in rows)
    rows = [r for r in rows if int(r[0]) - t0 >= float(sys.argv[3]) * 1e6]
ok = sorted(int(r[2]) for r in rows if r[1].startswith(("2", "3")))
failed = len(rows) - len(ok)
q = lambda f: ok[min(len(ok) - 1, int(f * len(ok)))] / 1000 if ok else float("nan")
print(f"{len(ok) / float(sys.argv[2]):.0f} {q(0.5):.3f} {q(0.99):.3f} {q(0.999):.3f} {failed}")
PY
}

for proto in "${PROTOS[@]}"; do
  echo "$proto $(rss_kb "$proto" ours) $(rss_kb "$proto" nginx)"
done > "$dir/memory"
step "wrk -t1 -cN -d${SECS}s --latency for N in ${CONN_COUNTS[*]} over ${PROTOS[*]}, x $ROUNDS rounds (interleaved), proxy on CPU $PROXY_CPU, clients + upstreams on CPU $LOAD_CPU"
: > "$dir/results"
: > "$dir/handshakes"
: > "$dir/handshakes-capped"
if $TLS; then cap_setup; fi
for r in $(seq 1 "$ROUNDS"); do
  # Alternate who goes first: the machine's speed drifts (other tenants, CPU frequency).
  if [ $((r % 2)) -eq 1 ]; then order=(nginx ours); else order=(ours nginx); fi
  for proto in "${PROTOS[@]}"; do
    for c in "${CONN_COUNTS[@]}"; do
      for who in "${order[@]}"; do
        line="$proto $c $who $(run "$proto" "$who" "$c")"
        echo "round $r: $line" >&2
        echo "$line" >> "$dir/results"
      done
    done
  done
  if $TLS; then
    for who in "${order[@]}"; do
      line="$who $(handshakes "$who")"
      echo "round $r: handshakes $line" >&2
      echo "$line" >> "$dir/handshakes"
    done
    for who in "${order[@]}"; do
      # shellcheck disable=SC2046
      cap on $(proxy_pids https "$who")
      line="$who $(handshakes "$who")"
      # shellcheck disable=SC2046
      cap off $(proxy_pids https "$who")
      echo "round $r: handshakes at ${HS_CAP}% of a CPU $line" >&2
      echo "$line" >> "$dir/handshakes-capped"
    done
  fi
done

: > "$dir/paced"
if [ "$PACED" != 0 ]; then
  step "h2load --h1 -cN --rps: ${PACED_LOAD}% of the slower proxy's keep-alive rate, both proxies, x $PACED_ROUNDS rounds"
  for r in $(seq 1 "$PACED_ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order=(nginx ours); else order=(ours nginx); fi
    for proto in "${PROTOS[@]}"; do
      for c in "${CONN_COUNTS[@]}"; do
        rate=$(python3 - "$dir/results" "$proto" "$c" "$PACED_LOAD" <<'PY'
import statistics, sys
rps = {}
for line in open(sys.argv[1]):
    proto, c, who, v, *_ = line.split()
    if proto == sys.argv[2] and c == sys.argv[3]:
        rps.setdefault(who, []).append(float(v))
print(round(min(statistics.median(v) for v in rps.values()) * float(sys.argv[4]) / 100))
PY
)
        for who in "${order[@]}"; do
          line="$proto $c $who $rate $(paced "$proto" "$who" "$c" "$rate")"
          echo "round $r: paced $line" >&2
          echo "$line" >> "$dir/paced"
        done
      done
    done
  done
fi

echo
echo "mode: $MODE ($OURS_LABEL vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')), $(nproc) CPUs,"
echo "median of $ROUNDS interleaved runs of ${SECS}s each; $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)"
python3 - "$dir/results" "$dir/handshakes" "$dir/memory" "$MEM_CONNS" "$AFTER_SECS" \
  "$dir/handshakes-capped" "$HS_CAP" "$HS_SECS" "$dir/paced" "$PACED_LOAD" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    proto, c, who, *vals = line.split()
    rows.setdefault((proto, int(c), who), []).append(list(map(float, vals)))
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
errors = {k: sum(v[5] for v in vs) for k, vs in rows.items()}
mem_conns, after_secs = int(sys.argv[4]), sys.argv[5]
protos = [p for p in ("http", "https") if any(k[0] == p for k in med)]
print()
print(f"{'proto':<6} {'conns':<6} {'proxy':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
      f"{'CPU us/req':>10} {'CPU %':>6} {'errors':>7}")
for proto in protos:
    for c in sorted({k[1] for k in med if k[0] == proto}):
        o, n = med[(proto, c, "ours")], med[(proto, c, "nginx")]
        for who, v in (("ours", o), ("nginx", n)):
            print(f"{proto:<6} {c:<6} {who:<8} {v[0]:9.0f} {v[1]:8.2f} {v[2]:8.2f} {v[3]:10.1f} "
                  f"{v[4]:6.0f} {errors[(proto, c, who)]:7.0f}")
        r = [a / b if b else float("nan") for a, b in zip(o, n)]
        verdict = "MET" if r[0] >= 1.0 and r[2] <= 1.0 else "MISSED"
        print(f"{proto:<6} {c:<6} {'ours/ng':<8} {r[0]:9.2f} {r[1]:8.2f} {r[2]:8.2f} {r[3]:10.2f}"
              f"          target req/s >= 1 and p99 <= 1: {verdict}")
paced = {}
for line in open(sys.argv[9]):
    proto, c, who, rate, *vals = line.split()
    paced.setdefault((proto, int(c)), {}).setdefault(who, []).append(list(map(float, vals)))
if paced:
    print()
    print(f"Latency at the same offered load (h2load --h1 --rps: {sys.argv[10]}% of the slower "
          "proxy's keep-alive req/s above, the same rate for both):")
    print(f"{'proto':<6} {'conns':<6} {'proxy':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'p99.9 ms':>9} {'failed':>7}")
    for (proto, c), by in sorted(paced.items()):
        m = {w: [statistics.median(col) for col in zip(*v)] for w, v in by.items()}
        for who in ("ours", "nginx"):
            v = m[who]
            print(f"{proto:<6} {c:<6} {who:<8} {v[0]:9.0f} {v[1]:8.2f} {v[2]:8.2f} {v[3]:9.2f} "
                  f"{sum(x[4] for x in by[who]):7.0f}")
        o, n = m["ours"], m["nginx"]
        r = [a / b if b else float("nan") for a, b in zip(o, n)]
        verdict = "MET" if r[2] <= 1.0 else "MISSED"
        print(f"{proto:<6} {c:<6} {'ours/ng':<8} {r[0]:9.2f} {r[1]:8.2f} {r[2]:8.2f} {r[3]:9.2f}"
              f"          target p99 <= 1: {verdict}")
if "https" in protos:
    print()
    print("TLS / plain (req/s, CPU per request):")
    for c in sorted({k[1] for k in med if k[0] == "https"}):
        for who in ("ours", "nginx"):
            t, p = med[("https", c, who)], med[("http", c, who)]
            print(f"  {c:<6} {who:<6} req/s {t[0] / p[0]:.2f}x   CPU/req {t[3] / p[3]:.2f}x")

idle = {l.split()[0]: [int(x) / 1024 for x in l.split()[1:]] for l in open(sys.argv[3])}
print()
print("Memory (PSS, MB; nginx = master + worker; one process per protocol for each proxy)")
print(f"{'proto':<6} {'proxy':<8} {'idle before':>12} {'peak at ' + str(mem_conns):>14} "
      f"{after_secs + ' s after':>12}")
for proto in protos:
    peaks = {}
    for who in ("ours", "nginx"):
        vs = rows[(proto, mem_conns, who)]
        peak = max(v[6] for v in vs) / 1024
        after = statistics.median(v[7] for v in vs) / 1024
        peaks[who] = (peak, after)
        print(f"{proto:<6} {who:<8} {idle[proto][who == 'nginx']:12.1f} {peak:14.1f} {after:12.1f}")
    (po, ao), (pn, an) = peaks["ours"], peaks["nginx"]
    verdict = "MET" if po <= 2 * pn else "MISSED"
    print(f"{proto:<6} {'ours/ng':<8} {'':>12} {po / pn:14.2f} {ao / an:12.2f}   target peak <= 2: {verdict}")

hs = {}
for line in open(sys.argv[2]):
    who, *vals = line.split()
    hs.setdefault(who, []).append(list(map(float, vals)))
if hs:
    hmed = {k: [statistics.median(col) for col in zip(*v)] for k, v in hs.items()}
    print()
    print("New TLS 1.3 connections (full handshake + one request each, h2load --h1, "
          "Connection: close):")
    print(f"{'proxy':<8} {'conns/s':>9} {'CPU us/conn':>12} {'CPU %':>6} {'client us/conn':>15} "
          f"{'failed':>7} {'1e6/CPU us':>11}")
    for who in ("ours", "nginx"):
        v = hmed[who]
        print(f"{who:<8} {v[0]:9.0f} {v[1]:12.1f} {v[2]:6.0f} {v[3]:15.1f} "
              f"{sum(x[4] for x in hs[who]):7.0f} {1e6 / v[1]:11.0f}")
    o, n = hmed["ours"], hmed["nginx"]
    bound = o[2] < 90
    verdict = "MET" if o[0] >= n[0] else "MISSED"
    print(f"{'ours/ng':<8} {o[0] / n[0]:9.2f} {o[1] / n[1]:12.2f}   target conns/s >= 1: {verdict}"
          + ("  (ours client-bound: CPU % < 90; see the capped run)" if bound else ""))

capped = {}
for line in open(sys.argv[6]):
    who, *vals = line.split()
    capped.setdefault(who, []).append(list(map(float, vals)))
if capped:
    cap = float(sys.argv[7])
    cmed = {k: [statistics.median(col) for col in zip(*v)] for k, v in capped.items()}
    print()
    print(f"The same, each proxy held to {cap:.0f}% of one CPU (a CPU cgroup), so that the proxy "
          "and not the client is the limit:")
    print(f"{'proxy':<8} {'conns/s':>9} {'CPU us/conn':>12} {'CPU %':>6} {'client us/conn':>15} "
          f"{'client %':>9} {'failed':>7}")
    for who in ("ours", "nginx"):
        v = cmed[who]
        client_pct = v[0] * v[3] / 1e4
        print(f"{who:<8} {v[0]:9.0f} {v[1]:12.1f} {v[2]:6.0f} {v[3]:15.1f} {client_pct:9.0f} "
              f"{sum(x[4] for x in capped[who]):7.0f}")
    o, n = cmed["ours"], cmed["nginx"]
    proxy_bound = all(cmed[w][2] >= 0.9 * cap and cmed[w][0] * cmed[w][3] / 1e4 < 90
                      for w in ("ours", "nginx"))
    verdict = "MET" if o[0] >= n[0] else "MISSED"
    print(f"{'ours/ng':<8} {o[0] / n[0]:9.2f} {o[1] / n[1]:12.2f}   target conns/s >= 1: {verdict}"
          + ("" if proxy_bound else "  (WARNING: not proxy-bound: a proxy under 90% of its cap "
             "or the client over 90%)"))
PY

#!/usr/bin/env bash
# User-space work per proxied request, ours vs nginx, counted rather than timed: each proxy
# runs under valgrind's cachegrind (instructions, and the data cache misses of a simulated
# cache: first level, and last-level read misses) while h2load sends N, then 2N, keep-alive
# requests over C connections; the difference between the two runs divided by N is the cost of one request,
# without the process's start and stop.
#
# Why: on a 2-vCPU VM the timed benchmark (bench/router.sh) moves by +-10% between runs, and
# CPU time per request is read in 10 ms ticks, so a change of a few percent in the router's
# own code cannot be seen there. Instruction counts repeat within ~0.5% from run to run
# (D1 misses within a few percent: they depend on how requests batch up).
# The simulated last-level cache is 2 MB, about this VM's L2 (its 32 MB L3 is shared with
# other guests): at 2,000 connections the state of the requests in flight does not fit, and
# a read that misses there is what stalls a proxy (write misses mostly do not).
# They say nothing about the kernel's share (~70% of a request's CPU for both proxies: the
# TCP stack over loopback), nor about time: a cache miss costs more than an instruction.
#
# Usage: [N=20000] [C=2000] [ROUTER=PATH] bench/instructions.sh
#   ROUTER: another build of the `router` example to count instead of this tree's (to compare
#   a change with the commit before it: build that commit's examples into another target
#   directory).
#   Same setup as bench/router.sh --standalone: two `hello_upstream` servers, our `router`
#   example (one thread) and nginx (one worker, `master_process off` so that valgrind sees
#   the process that proxies), configured alike (forwarding headers, request id, keep-alive
#   both ways). Under valgrind a proxy runs ~50x slower, so each run takes a few seconds.
# Needs root for apt-get (valgrind, nginx, nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${N:-20000}
C=${C:-2000}
command -v valgrind >/dev/null 2>&1 || { need_root; ensure_packages valgrind; }
command -v h2load >/dev/null 2>&1 || { need_root; ensure_packages nghttp2-client; }
if ! command -v nginx >/dev/null 2>&1; then
  need_root
  ensure_packages nginx
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
ensure_packages python3 curl
ensure_rust
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --locked --release -q -p paas-router --examples
bin=target/release/examples
ROUTER=${ROUTER:-$bin/router}

dir=$(mktemp -d /tmp/paas-bench-instructions-XXXXXX)
pids=()
cleanup() {
  exec 2>/dev/null # the shell's "Killed" notices
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

UP1=$(free_port); UP2=$(free_port); PORT=$(free_port)
for u in "$UP1:web.1" "$UP2:web.2"; do
  taskset -c 1 "$bin/hello_upstream" --listen "127.0.0.1:${u%%:*}" --name "${u#*:}" >/dev/null 2>&1 &
  pids+=($!)
done
wait_port 127.0.0.1 "$UP1"
wait_port 127.0.0.1 "$UP2"

cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  keepalive_timeout 75s; keepalive_requests 1000000000;
  upstream apps {
    server 127.0.0.1:$UP1; server 127.0.0.1:$UP2;
    keepalive $C; keepalive_requests 1000000000; keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$PORT;
    location / {
      proxy_pass http://apps;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
EOF

# count PROXY REQUESTS: prints "instructions D1-misses" of the whole run.
count() {
  local out="$dir/cg.$1.$2"
  local cmd
  case $1 in
    ours) cmd=("$ROUTER" --threads 1 --max-connections-per-ip 100000
      --max-idle-per-upstream "$C" --route "gob.paas.test=127.0.0.1:$UP1,127.0.0.1:$UP2"
      --listen "127.0.0.1:$PORT") ;;
    nginx) cmd=(nginx -c "$dir/nginx.conf" -g 'daemon off; master_process off;') ;;
  esac
  taskset -c 0 valgrind --tool=cachegrind --cache-sim=yes --LL=2097152,16,64 --cachegrind-out-file="$out" \
    "${cmd[@]}" >/dev/null 2>"$out.log" &
  local pid=$!
  pids+=("$pid")
  local i
  for i in $(seq 120); do
    curl -s -o /dev/null -H "Host: gob.paas.test" "http://127.0.0.1:$PORT/" && break
    sleep 0.5
  done
  local got
  got=$(taskset -c 1 h2load --h1 -n "$2" -c "$C" -t1 -H ":authority: gob.paas.test" \
    "http://127.0.0.1:$PORT/" 2>&1 | awk '/^requests:/ {print $8}')
  [ "$got" = "$2" ] || die "$1: $got of $2 requests succeeded (see $out.log)"
  # Each one's graceful stop (nginx: SIGQUIT; the router: SIGTERM); valgrind writes its
  # counts when the process exits.
  if [ "$1" = nginx ]; then kill -QUIT "$pid"; else kill -TERM "$pid"; fi
  wait "$pid" 2>/dev/null || true
  python3 - "$out.log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def num(label):
    m = re.search(label + r"\s*:\s*([\d,]+)", text)
    if not m:
        sys.exit("no '%s' in %s" % (label, sys.argv[1]))
    return int(m.group(1).replace(",", ""))
ll = re.search(r"LLd misses:\s*[\d,]+\s*\(\s*([\d,]+) rd", text)
if not ll:
    sys.exit("no 'LLd misses' in %s" % sys.argv[1])
print(num("I   refs"), num("D1  misses"), int(ll.group(1).replace(",", "")))
PY
}

echo "==> cachegrind, $N and $((2 * N)) keep-alive requests over $C connections, each proxy" >&2
declare -A per
for p in ours nginx; do
  a=$(count "$p" "$N")
  b=$(count "$p" $((2 * N)))
  per[$p]=$(python3 -c "a='$a'.split(); b='$b'.split(); print(' '.join('%.0f' % ((int(y) - int(x)) / $N) for x, y in zip(a, b)))")
done

echo
echo "user-space work per request (cachegrind; $N requests, $C connections; $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ))"
python3 - "${per[ours]}" "${per[nginx]}" <<'PY'
import sys
o = [float(x) for x in sys.argv[1].split()]
n = [float(x) for x in sys.argv[2].split()]
print("%-8s %14s %12s %16s" % ("proxy", "instructions", "D1 misses", "LL read misses"))
print("%-8s %14.0f %12.1f %16.1f" % ("ours", o[0], o[1], o[2]))
print("%-8s %14.0f %12.1f %16.1f" % ("nginx", n[0], n[1], n[2]))
print("%-8s %14.2f %12.2f %16.2f" % ("ours/ng", o[0] / n[0], o[1] / n[1], o[2] / max(n[2], 0.1)))
PY

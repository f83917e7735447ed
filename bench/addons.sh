#!/usr/bin/env bash
# Add-on services (issue 17): how long `paas addons create APP postgres` takes (start of the
# container, initdb, first answer, link, config release), and an app's query latency to its
# database: N `SELECT 1` round trips on one connection from a one-off of the app (pg8000 from
# its slug; app container -> bridge -> nft -> the add-on's container), side by side with the
# same script on the host against a host-local PostgreSQL on loopback, in the same run.
# Prints median/max creation time and p50/p99 per path.
# Usage: [PAAS_BIN_DIR=DIR] bench/addons.sh [CREATES] [QUERIES] (default 3, 2000). Needs
#   root, PostgreSQL from Debian's packages and PyPI (the example's pg8000).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR/.. disable=SC1091 # followed with shellcheck -x
. scripts/lib.sh
need_root
CREATES=${1:-3}
QUERIES=${2:-2000}
ensure_packages curl python3 procps iproute2 nftables
ensure_stack_runtimes
ensure_addon_servers
if [[ -z "${PAAS_BIN_DIR:-}" ]]; then
  ensure_rust
  cargo build --locked --release -q -p paasd -p paas-cli
  PAAS_BIN_DIR=$PWD/target/release
fi

. bench/paasd.sh
bench_paasd addons 10.218.0.0/24 "$PAAS_BIN_DIR/paasd"

# The reference: a throwaway cluster on the host, loopback only, run by the postgres user.
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
# (Its own dir: the benchmark's is root's alone.)
ref=$(mktemp -d /tmp/paas-bench-pgref-XXXXXX)
chown postgres:postgres "$ref"
runuser -u postgres -- "$pgbin/initdb" -D "$ref/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$ref/data" -l "$ref/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=55439 -c unix_socket_directories=$ref" start >/dev/null
stop_ref() {
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$ref/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$ref"
}
trap 'stop_ref; bench_paasd_cleanup' EXIT

python3 - "$CREATES" "$QUERIES" "$dir" "$PAAS_BIN_DIR" <<'PY'
import glob, json, os, statistics, subprocess, sys, time
creates, queries, d, bins = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
paas = [os.path.join(bins, "paas"), "--socket", os.path.join(d, "s.sock")]

def run(*args):
    return subprocess.run(paas + list(args), check=True, capture_output=True, text=True).stdout

run("create", "b")
times = []
for i in range(creates):
    t0 = time.monotonic()
    run("addons", "create", "b", "postgres", "--as", f"pg{i}")
    times.append(time.monotonic() - t0)
    if i + 1 < creates:
        run("addons", "destroy", f"pg{i}", "--confirm", f"pg{i}")
keep = f"pg{creates - 1}"
run("deploy", "b", "--source", "examples/python-postgres")

PROBE = r'''
import json, os, sys, time, urllib.parse
import pg8000.native
u = urllib.parse.urlparse(os.environ["URL"])
c = pg8000.native.Connection(urllib.parse.unquote(u.username), password=urllib.parse.unquote(u.password or "") or None,
                             host=u.hostname, port=u.port, database=u.path.lstrip("/"))
n = int(sys.argv[1]); lat = []
for _ in range(50): c.run("SELECT 1")
for _ in range(n):
    t = time.perf_counter(); c.run("SELECT 1"); lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print(json.dumps({"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99) - 1], "mean": sum(lat) / len(lat)}))
'''
inside = json.loads(run("run", "b", "--", "sh", "-c", f'URL="$DATABASE_URL" python -c \'{PROBE}\' {queries}').strip().splitlines()[-1])
site = glob.glob(os.path.join(d, "state/slugs/b/*/app/.venv/lib/python3*/site-packages"))[0]
host = json.loads(subprocess.run(["python3", "-c", PROBE, str(queries)], check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": site,
                                      "URL": "postgres://postgres@127.0.0.1:55439/postgres"}).stdout)
print(f"add-on creation (postgres, {creates} runs): median {statistics.median(times):.2f} s, max {max(times):.2f} s")
print(f"SELECT 1 round trips ({queries} on one connection, pg8000):")
print(f"  app one-off -> its add-on (bridge, nft): p50 {inside['p50']:.0f} us  p99 {inside['p99']:.0f} us  mean {inside['mean']:.0f} us")
print(f"  host -> host-local PostgreSQL (loopback): p50 {host['p50']:.0f} us  p99 {host['p99']:.0f} us  mean {host['mean']:.0f} us")
print(f"  ratio p50 {inside['p50'] / host['p50']:.2f}x  p99 {inside['p99'] / host['p99']:.2f}x")
PY

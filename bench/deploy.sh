#!/usr/bin/env bash
# Deploy time (issue 4): `paas deploy` wall time, process spawn to exit (the CLI exits once
# the release exists), for examples/node-hello and examples/node-express, cold and warm:
#   cold: a fresh app (new name, so an empty build cache: npm downloads every package)
#   warm: the same app deployed again, unchanged (the buildpack must say it reused its cached
#         node_modules, else the run fails: the figure would not be a warm one)
# Per row: median and max of RUNS deploys, and the median ms of each deployment phase from
# `paas releases info APP vN --json` (receive, extract, detect, compile, slug, release_phase;
# "other" = wall time minus the phases: CLI start, packing and upload overlap, the reply).
# Reference in the same run: `npm ci --prefer-offline` of the same app on the host, in a temp
# dir, npm cache warmed by one priming run: what a cold build cannot beat (a warm one skips it).
# Target: node-hello warm median under 3 s on a 2-core machine.
# Usage: bench/deploy.sh [RUNS] (default 3). Needs root and the npm registry. Release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR/.. disable=SC1091 # followed with shellcheck -x
. scripts/lib.sh
need_root
RUNS=${1:-3}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
ensure_packages curl python3 procps iproute2 nftables
ensure_stack_runtimes
ensure_rust
cargo build --locked --release -q -p paasd -p paas-cli

. bench/paasd.sh
bench_paasd deploy 10.216.0.0/24 target/release/paasd

python3 - "$RUNS" "$dir" "$$" <<'PY'
import json, os, re, shutil, statistics, subprocess, sys, time
runs, d, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
paas = ["target/release/paas", "--socket", os.path.join(d, "s.sock")]
apps = ["node-hello", "node-express"]
phase_names = ["receive", "extract", "detect", "compile", "slug", "release_phase"]
REUSED = "-----> Reusing cached node_modules (dependencies unchanged)"
INSTALLED = "-----> Installing dependencies"

def fail(msg, run=None):
    print(f"bench/deploy.sh: {msg}", file=sys.stderr)
    if run is not None:
        print(f"--- stdout\n{run.stdout}--- stderr\n{run.stderr}", file=sys.stderr)
    sys.exit(1)

def paas_ok(*args):
    run = subprocess.run(paas + list(args), capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"paas {' '.join(args)} exited {run.returncode}", run)
    return run.stdout

def deploy(app, src, must_say, must_not_say):
    """One timed `paas deploy`; returns (seconds, {phase: ms})."""
    t = time.perf_counter()
    run = subprocess.run(paas + ["deploy", app, "--source", src], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    secs = time.perf_counter() - t
    m = re.search(rf"^Released (v\d+) of {re.escape(app)}$", run.stdout, re.M)
    if run.returncode != 0 or not m:
        fail(f"deploy of {app} failed (exit {run.returncode})", run)
    if must_say not in run.stderr or must_not_say in run.stderr:
        fail(f"deploy of {app}: expected '{must_say}' and no '{must_not_say}' in the build log", run)
    info = json.loads(paas_ok("releases", "info", app, m.group(1), "--json"))
    phases = {p["phase"]: p["ms"] for p in info["deployment"]["phases"]}
    return secs, phases

rows = {}  # (app, kind) -> [(secs, phases)]
for app in apps:
    src = os.path.abspath(os.path.join("examples", app))
    for i in range(runs):
        name = f"bd{tag}-{app}-{i}"[:30]
        paas_ok("create", name)
        rows.setdefault((app, "cold"), []).append(deploy(name, src, INSTALLED, REUSED))
        rows.setdefault((app, "warm"), []).append(deploy(name, src, REUSED, INSTALLED))
        print(f"  {app} run {i + 1}/{runs}: cold {rows[(app, 'cold')][-1][0]:.2f} s, "
              f"warm {rows[(app, 'warm')][-1][0]:.2f} s", file=sys.stderr)
        subprocess.run(paas + ["apps", "destroy", name, "--confirm", name],
                       capture_output=True, stdin=subprocess.DEVNULL)

# Reference: npm ci on the host, same lockfile, warm npm cache of its own.
npm_env = dict(os.environ, npm_config_cache=os.path.join(d, "npm-cache"),
               npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false", npm_config_progress="false",
               npm_config_loglevel="warn")
ref = {}
for app in apps:
    work = os.path.join(d, "ref", app)
    os.makedirs(work)
    for f in ["package.json", "package-lock.json"]:
        shutil.copy(os.path.join("examples", app, f), work)
    argv = ["npm", "ci", "--prefer-offline", "--userconfig=/dev/null"]
    subprocess.run(argv, cwd=work, env=npm_env, check=True, capture_output=True)  # primes the cache
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, cwd=work, env=npm_env, check=True, capture_output=True)
        ts.append(time.perf_counter() - t)
    ref[app] = ts

med = statistics.median
cols = phase_names + ["other"]
width = {c: max(7, len(c)) for c in cols}
print(f"\n`paas deploy` spawn to exit, {runs} runs per row (cold: new app, empty build cache; "
      f"warm: same app again, unchanged, cache reused); then each phase's median ms")
print(f"{'app':13} {'cache':5} {'median s':>9} {'max s':>7} |"
      + "".join(f" {c:>{width[c]}}" for c in cols))
for (app, kind), samples in rows.items():
    secs = [s for s, _ in samples]
    per = {c: f"{med([p.get(c, 0) for _, p in samples]):.0f}"
           if any(c in p for _, p in samples) else "-" for c in phase_names}
    per["other"] = f"{med([s * 1000 - sum(p.values()) for s, p in samples]):.0f}"
    print(f"{app:13} {kind:5} {med(secs):9.2f} {max(secs):7.2f} |"
          + "".join(f" {per[c]:>{width[c]}}" for c in cols))
print("(release_phase: only apps with a release command; other: wall time minus the phases, i.e. "
      "CLI start and packing, build setup, bin/release, the release record, the reply)")
npm_v = subprocess.run(["npm", "--version"], capture_output=True, text=True).stdout.strip()
print(f"\nreference: npm {npm_v} ci --prefer-offline on the host, warm npm cache, {runs} runs")
for app in apps:
    print(f"{app:13} {'':5} {med(ref[app]):9.2f} {max(ref[app]):7.2f}")
w = med([s for s, _ in rows[("node-hello", "warm")]])
print(f"\ntarget: node-hello warm median < 3 s -> {'MET' if w < 3 else 'MISSED'} ({w:.2f} s)")
PY

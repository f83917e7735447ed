#!/usr/bin/env bash
# Container start (issue 3): spawn to exit of /bin/true with full setup, ours vs crun, same
# machine, same run. Prints median and p90 (ms) and the ratio. Target: ours <= half of crun's.
#   ours: paasd::runtime (helper, pid/mount/uts/ipc/net/cgroup namespaces, overlay rootfs
#         over the host stack with read-only binds, /proc /sys /dev /tmp, pivot_root, cgroup
#         with memory/cpu/pids limits, veth on a bridge with address and route (isolated
#         port, the nft policy table in place), an app uid (1900000000), the writable layer
#         on a 256 MB tmpfs (the disk quota), no capabilities, no_new_privs, seccomp)
#   crun: `crun run` of a bundle with the same root (our host-stack skeleton, read-only), the
#         same read-only binds, the same namespaces, uid 1900000000, /bin/true.
# On hybrid cgroup hosts crun refuses to run while /sys/fs/cgroup/unified is visible, so it
# runs inside a private mount namespace with that mount detached.
# crun's figure includes its own cleanup (it removes its cgroup before exiting), so compare
# it with both of ours. Ours also attaches a veth to the bridge; crun's has no network.
# Ours runs twice: as paasd runs it, with a spare helper process started ahead of each
# container (the exec of the helper and its pid and network namespaces are off the start),
# and with no spare (every start execs its helper). Everything else is made per start in both.
# The three take turns in rounds (ROUNDS, default 4, each N/ROUNDS starts of each), so that
# load from elsewhere on the machine falls on all of them alike; statistics pool the rounds.
# Usage: [ROUNDS=4] bench/container.sh [N] (default 50). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
N=${1:-50}
ROUNDS=${ROUNDS:-4}
per=$(((N + ROUNDS - 1) / ROUNDS))
ensure_packages crun python3 util-linux
ensure_rust
cargo build --locked --release -q -p paas-runtime --example container_start

dir=$(mktemp -d /tmp/paas-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT

# crun's bundle mirrors what our host stack shows (made by our first run).
make_bundle() {
  python3 - "$dir" <<'PY'
import json, os, subprocess, sys
d = sys.argv[1]
spec = json.loads(subprocess.run(["sh", "-c", f"cd {d} && crun spec && cat config.json"], capture_output=True, text=True, check=True).stdout)
skel = os.path.join(d, "state/stacks/host")
spec["root"] = {"path": skel, "readonly": True}
spec["process"]["args"] = ["/bin/true"]
spec["process"]["terminal"] = False
spec["process"]["user"] = {"uid": 1900000000, "gid": 1900000000}
spec["process"]["env"] = ["PATH=/usr/bin:/bin"]
spec["hostname"] = "bench"
mounts = spec["mounts"]
for p in ["/usr", "/etc/ssl", "/etc/ld.so.cache", "/etc/alternatives"]:
    if os.path.exists(p):
        mounts.append({"destination": p, "type": "bind", "source": p, "options": ["rbind", "ro", "nosuid"]})
mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
ns = spec["linux"]["namespaces"]
if not any(n["type"] == "cgroup" for n in ns):
    ns.append({"type": "cgroup"})
json.dump(spec, open(os.path.join(d, "config.json"), "w"))
PY
}

# One line per start (ms), 3 unrecorded first, like ours.
run_crun() {
  unshare -m --propagation private sh -c "
    umount -l /sys/fs/cgroup/unified 2>/dev/null || true
    python3 - '$dir' '$1' '$2' <<'PY'
import subprocess, sys, time
d, n, r = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n + 3):
    t = time.perf_counter()
    subprocess.run(['crun', 'run', '--bundle', d, f'paas-bench-{r}-{i}'], check=True, stdin=subprocess.DEVNULL)
    if i >= 3:
        print(f'{(time.perf_counter() - t) * 1000:.3f}')
PY"
}

for r in $(seq "$ROUNDS"); do
  target/release/examples/container_start "$dir/state" "$per" spare >>"$dir/spare"
  target/release/examples/container_start "$dir/state" "$per" no-spare >>"$dir/no-spare"
  [ -f "$dir/config.json" ] || make_bundle
  run_crun "$per" "$r" >>"$dir/crun"
done

# What paasd adds around each instance besides the runtime: the address joins its app's group
# in the policy and leaves it (nfnetlink). A run of its own, after the rounds: an expel's
# RCU work must not land on anyone's container start.
PAAS_BENCH_MEMBERSHIP=100 target/release/examples/container_start "$dir/state" 1 spare >/dev/null

python3 - "$dir" "$(crun --version | awk 'NR==1{print $3}')" "$ROUNDS" "$per" <<'PY'
import statistics, sys
d, crun_version, rounds, per = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def col(name, i):
    return sorted(float(l.split()[i]) for l in open(f"{d}/{name}") if l.strip())
def stats(v):
    return statistics.median(v), v[round((len(v) - 1) * 0.9)]
rows = [
    ("paas: spawn to exit", col("spare", 0)),
    ("paas: spawn to all removed", col("spare", 1)),
    ("paas, no spare helper: spawn to exit", col("no-spare", 0)),
    ("paas, no spare helper: to all removed", col("no-spare", 1)),
    (f"crun {crun_version} run (incl. its cleanup)", col("crun", 0)),
]
n = len(rows[0][1])
print(f"{'container start':40} {'median ms':>10} {'p90 ms':>8}   ({n} runs each in {rounds} rounds, /bin/true)")
for label, v in rows:
    med, p90 = stats(v)
    print(f"{label:40} {med:10.2f} {p90:8.2f}")
crun = statistics.median(rows[4][1])
for label, v in [("paas/crun", rows[0][1]), ("paas, no spare helper/crun", rows[2][1])]:
    ratio = statistics.median(v) / crun
    print(f"ratio {label}: {ratio:.2f}   target <= 0.50 -> {'MET' if ratio <= 0.5 else 'MISSED'}")
PY

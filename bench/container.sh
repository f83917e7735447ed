#!/usr/bin/env bash
# Container start (issue 3): spawn to exit of /bin/true with full setup, ours vs crun, same
# machine, same run. Prints median and p90 (ms) and the ratio. Target: ours <= half of crun's.
#   ours: paasd::runtime (helper, pid/mount/uts/ipc/net/cgroup namespaces, overlay rootfs
#         over the host stack with read-only binds, /proc /sys /dev /tmp, pivot_root, cgroup
#         with memory/cpu/pids limits, veth on a bridge with address and route, uid 10000, no
#         capabilities, no_new_privs, seccomp)
#   crun: `crun run` of a bundle with the same root (our host-stack skeleton, read-only), the
#         same read-only binds, the same namespaces, uid 10000, /bin/true.
# On hybrid cgroup hosts crun refuses to run while /sys/fs/cgroup/unified is visible, so it
# runs inside a private mount namespace with that mount detached.
# crun's figure includes its own cleanup (it removes its cgroup before exiting), so compare
# it with both of ours. Ours also attaches a veth to the bridge; crun's has no network.
# Ours runs twice: as paasd runs it, with a spare helper process started ahead of each
# container (the exec of the helper is off the start), and with no spare (every start execs
# its helper). Everything else is made per start in both.
# Usage: bench/container.sh [N] (default 50). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
N=${1:-50}
ensure_packages crun python3 util-linux
ensure_rust
cargo build --locked --release -q -p paasd --example container_start

dir=$(mktemp -d /tmp/paas-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
read -r ours_med ours_p90 clean_med clean_p90 < <(target/release/examples/container_start "$dir/state" "$N" spare)
read -r cold_med cold_p90 cold_clean_med cold_clean_p90 < <(target/release/examples/container_start "$dir/state-cold" "$N" no-spare)

# The crun bundle mirrors what our host stack shows.
python3 - "$dir" <<'PY'
import json, os, subprocess, sys
d = sys.argv[1]
spec = json.loads(subprocess.run(["crun", "spec", "--rootless"] if False else ["sh", "-c", f"cd {d} && crun spec && cat config.json"], capture_output=True, text=True, check=True).stdout)
skel = os.path.join(d, "state/stacks/host")
spec["root"] = {"path": skel, "readonly": True}
spec["process"]["args"] = ["/bin/true"]
spec["process"]["terminal"] = False
spec["process"]["user"] = {"uid": 10000, "gid": 10000}
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
read -r crun_med crun_p90 < <(unshare -m --propagation private sh -c "
  umount -l /sys/fs/cgroup/unified 2>/dev/null || true
  python3 - '$dir' '$N' <<'PY'
import statistics, subprocess, sys, time
d, n = sys.argv[1], int(sys.argv[2])
ts = []
for i in range(n + 3):
    t = time.perf_counter()
    subprocess.run(['crun', 'run', '--bundle', d, f'paas-bench-{i}'], check=True, stdin=subprocess.DEVNULL)
    if i >= 3:
        ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print(f'{statistics.median(ts):.2f} {ts[round((len(ts) - 1) * 0.9)]:.2f}')
PY")

printf '%-40s %10s %8s   (%s runs, /bin/true)\n' "container start" "median ms" "p90 ms" "$N"
printf '%-40s %10s %8s\n' "paas: spawn to exit" "$ours_med" "$ours_p90" \
  "paas: spawn to all removed" "$clean_med" "$clean_p90" \
  "paas, no spare helper: spawn to exit" "$cold_med" "$cold_p90" \
  "paas, no spare helper: to all removed" "$cold_clean_med" "$cold_clean_p90" \
  "crun $(crun --version | awk 'NR==1{print $3}') run (incl. its cleanup)" "$crun_med" "$crun_p90"
python3 - "$ours_med" "$cold_med" "$crun_med" <<'PY'
import sys
ours, cold, crun = map(float, sys.argv[1:])
for label, v in [("paas/crun", ours), ("paas, no spare helper/crun", cold)]:
    print(f"ratio {label}: {v / crun:.2f}   target <= 0.50 -> {'MET' if v / crun <= 0.5 else 'MISSED'}")
PY

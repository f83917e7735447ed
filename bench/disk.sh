#!/usr/bin/env bash
# The disk quota mechanisms (issue 14), per container or build, measured side by side in the
# same run:
#   tmpfs:  mount(2) of a size-limited tmpfs and umount(2): what every instance's writable
#           layer costs (the helper does it inside the container's mount namespace);
#   image:  a sparse ext4 image of SIZE_MB: create, mkfs.ext4 (no journal, lazy tables),
#           `mount -o loop`, `umount -l`: what a build's scratch dir costs (build/disk.rs),
#           and what it would cost per instance start;
#   mkdir:  a plain directory on the state dir's disk (no quota at all), the reference.
# Prints median and p90 in ms per mechanism, and the bytes an image takes on disk.
# Usage: [SIZE_MB=4096] bench/disk.sh [N] (default 30). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
ensure_packages python3 e2fsprogs util-linux
N=${1:-30}
dir=$(mktemp -d /var/tmp/paas-bench-disk-XXXXXX)
trap 'umount -l "$dir"/m* 2>/dev/null || true; rm -rf "$dir"' EXIT
python3 - "$dir" "$N" "${SIZE_MB:-4096}" <<'PY'
import ctypes, os, statistics, subprocess, sys, time
d, n, size_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
def tmpfs(i):
    m = f"{d}/mt{i}"; os.mkdir(m)
    if libc.mount(b"tmpfs", m.encode(), b"tmpfs", 0, f"mode=755,size={256 << 20}".encode()) != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs")
    for s in ("upper", "work", "tmp"): os.mkdir(f"{m}/{s}")
    if libc.umount2(m.encode(), 2) != 0: raise OSError(ctypes.get_errno(), "umount")
    os.rmdir(m)
def image(i):
    img, m = f"{d}/i{i}.img", f"{d}/mi{i}"; os.mkdir(m)
    with open(img, "wb") as f: f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E",
                    "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", img], check=True)
    subprocess.run(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noatime", img, m], check=True)
    image.on_disk = os.stat(img).st_blocks * 512
    subprocess.run(["umount", "-l", m], check=True)
    os.remove(img); os.rmdir(m)
def plain(i):
    m = f"{d}/md{i}"; os.mkdir(m)
    for s in ("upper", "work", "tmp"): os.mkdir(f"{m}/{s}")
    for s in ("upper", "work", "tmp"): os.rmdir(f"{m}/{s}")
    os.rmdir(m)
res = {k: [] for k in ("tmpfs", "image", "mkdir")}
for i in range(n + 2):  # rounds alternate, so load from elsewhere falls on all alike
    for name, f in (("tmpfs", tmpfs), ("image", image), ("mkdir", plain)):
        t = time.perf_counter(); f(i); dt = (time.perf_counter() - t) * 1000
        if i >= 2: res[name].append(dt)
print(f"{'disk quota mechanism':42} {'median ms':>10} {'p90 ms':>8}   ({n} runs each)")
for name, label in (("tmpfs", f"tmpfs of 256 MB (instance writable layer)"),
                    ("image", f"ext4 image of {size_mb} MB (build scratch dir)"),
                    ("mkdir", "plain dirs, no quota (reference)")):
    v = sorted(res[name])
    print(f"{label:42} {statistics.median(v):10.3f} {v[round((len(v) - 1) * 0.9)]:8.3f}")
print(f"an unwritten {size_mb} MB image takes {image.on_disk / 1024:.0f} KiB on disk")
PY

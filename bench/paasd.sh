# A paasd of a benchmark's own, for bench/api.sh, deploy.sh and restart.sh. Sourced, not run.
# bench_paasd TAG SUBNET PAASD: starts PAASD on a temp socket and state dir with a bridge,
# subnet and cgroup parent named after TAG and this shell's pid (paasd keeps its network
# across restarts and leaves its cgroup parent directories, so the benchmark removes them
# itself, on any exit), and waits for its socket. Sets `dir` (the temp dir; the socket is
# $dir/s.sock, paasd's log $dir/paasd.log) and `pid`.
bench_paasd() {
  local tag=$1 subnet=$2 paasd=$3
  dir=$(mktemp -d "/tmp/paas-bench-$tag-XXXXXX")
  pid=
  bench_bridge="pb$tag$$"; bench_bridge=${bench_bridge:0:15}
  bench_cgparent="paas-bench-$tag-$$"
  trap bench_paasd_cleanup EXIT
  # BENCH_PAASD_TOML: the config file's text (default empty).
  printf '%s\n' "${BENCH_PAASD_TOML:-}" >"$dir/paasd.toml"
  "$paasd" --config "$dir/paasd.toml" --socket "$dir/s.sock" --state-dir "$dir/state" \
    --http 127.0.0.1:0 --bridge "$bench_bridge" --subnet "$subnet" \
    --cgroup-parent "$bench_cgparent" --buildpacks-dir "$PWD/buildpacks" 2>"$dir/paasd.log" &
  pid=$!
  for _ in $(seq 1 100); do [[ -S "$dir/s.sock" ]] && break; sleep 0.05; done
  [[ -S "$dir/s.sock" ]] || { cat "$dir/paasd.log" >&2; die "paasd did not start"; }
}

bench_paasd_cleanup() {
  if [[ -n "$pid" ]]; then
    # SIGINT stops paasd and its apps; SIGTERM would be a restart (apps left running).
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  # Add-on data disks and volumes a killed paasd left mounted.
  awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ip link del "$bench_bridge" 2>/dev/null || true
  nft delete table inet "paas_$bench_bridge" 2>/dev/null || true
  # Children first (containers paasd did not get to remove), then the parents.
  find /sys/fs/cgroup/*/"$bench_cgparent" /sys/fs/cgroup/"$bench_cgparent" -depth -type d \
    -exec rmdir {} + 2>/dev/null || true
  rm -rf "$dir"
}

#!/usr/bin/env bash
# Installs paas on this Debian/Ubuntu server and starts paasd. Idempotent: a second run
# changes nothing and succeeds.
#   ./install.sh                     build (release), install, start paasd, create the demo app
#   ./install.sh --uninstall [--purge]   stop paasd, remove binaries (and, with --purge, all state)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/lib.sh

PREFIX=${PREFIX:-/usr/local}
ETC=/etc/paas
STATE=/var/lib/paas
SOCKET=/run/paas/paasd.sock
LOG=/var/log/paasd.log
DEMO_APP=${DEMO_APP:-hello}
BUILDPACKS=$PREFIX/share/paas/buildpacks

paasd_pids() { pgrep -x paasd || true; }

stop_paasd() {
  local pids; pids=$(paasd_pids)
  [ -z "$pids" ] && return 0
  step "stopping paasd ($pids)"
  kill -TERM $pids
  for _ in $(seq 1 100); do [ -z "$(paasd_pids)" ] && return 0; sleep 0.1; done
  die "paasd did not stop within 10 s"
}

do_uninstall() {
  local purge=$1
  need_root
  stop_paasd
  rm -f "$PREFIX/bin/paasd" "$PREFIX/bin/paas" "$SOCKET"
  rm -rf "$BUILDPACKS"; rmdir "$PREFIX/share/paas" 2>/dev/null || true
  rmdir "$(dirname "$SOCKET")" 2>/dev/null || true
  # paasd keeps its bridge and NAT table across restarts (running apps need them).
  ip link del paas0 2>/dev/null || true
  nft delete table inet paas_paas0 2>/dev/null || true
  for d in /sys/fs/cgroup/*/paas /sys/fs/cgroup/paas; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done; true
  if [ "$purge" = yes ]; then
    step "purging $STATE and $ETC"
    rm -rf "$STATE" "$ETC" "$LOG"
    getent group paas >/dev/null && groupdel paas
  fi
  echo "paas uninstalled${purge:+ (purge=$purge)}"
}

do_install() {
  need_root
  ensure_packages ca-certificates gcc git sqlite3 procps iproute2 nftables python3 curl
  # The built-in buildpacks take node, python and go from the host (the `host` stack).
  ensure_stack_runtimes
  if [ -x bin/paasd ] && [ -x bin/paas ]; then
    step "using prebuilt binaries in ./bin"
    BIN=bin
  else
    ensure_rust
    step "building (release)"
    cargo build --locked --release -p paasd -p paas-cli
    BIN=target/release
  fi

  step "installing binaries to $PREFIX/bin"
  # install(1) writes a new inode, so a running paasd keeps its old binary until restarted.
  install -m 0755 "$BIN/paasd" "$PREFIX/bin/paasd"
  install -m 0755 "$BIN/paas" "$PREFIX/bin/paas"

  step "installing buildpacks to $BUILDPACKS"
  # Replaced as a whole (a removed file must not linger); builds copy them, never run them in place.
  rm -rf "$BUILDPACKS.new"
  mkdir -p "$(dirname "$BUILDPACKS")"
  cp -a buildpacks "$BUILDPACKS.new"
  rm -rf "$BUILDPACKS.new/test"
  rm -rf "$BUILDPACKS" && mv "$BUILDPACKS.new" "$BUILDPACKS"

  getent group paas >/dev/null || groupadd --system paas
  install -d -m 0755 "$ETC" "$STATE"
  if [ ! -f "$ETC/paasd.toml" ]; then
    cat > "$ETC/paasd.toml" <<'TOML'
# paasd configuration. Every key is optional; command-line flags of the same name win.
# socket = "/run/paas/paasd.sock"
# state_dir = "/var/lib/paas"
# socket_group = "paas"
# http = "0.0.0.0:80"
# base_domain = "paas.localhost"
# buildpacks_dir = "/usr/local/share/paas/buildpacks"
# [build]                 # limits of one deploy
# memory_mb = 2048        # build container memory (no swap)
# cpu_percent = 200       # CPU quota, % of one CPU
# timeout_secs = 1200     # the whole build
# max_upload_mb = 512     # compressed upload
# max_source_mb = 2048    # unpacked source
# max_source_files = 200000
# min_free_disk_mb = 1024 # deploys are refused below this much free space
# keep_releases = 10      # slugs kept for rollback
# [logs]                  # each app's log stream (paas logs)
# max_mb_per_app = 32     # disk per app; the oldest lines go first
# segment_mb = 4          # rotation unit (at most a quarter of the cap)
TOML
  fi

  if "$PREFIX/bin/paas" apps >/dev/null 2>&1; then
    step "paasd is already running"
  else
    # systemd unit and socket hand-over arrive with the VPS issue; until then, a background daemon.
    step "starting paasd in the background (log: $LOG)"
    # setsid: paasd must not keep the admin's terminal as its controlling terminal.
    setsid -f "$PREFIX/bin/paasd" --buildpacks-dir "$BUILDPACKS" >>"$LOG" 2>&1 < /dev/null
    for _ in $(seq 1 100); do "$PREFIX/bin/paas" apps >/dev/null 2>&1 && break; sleep 0.1; done
    "$PREFIX/bin/paas" apps >/dev/null || die "paasd did not come up; see $LOG"
  fi

  if ! "$PREFIX/bin/paas" info "$DEMO_APP" >/dev/null 2>&1; then
    "$PREFIX/bin/paas" create "$DEMO_APP"
  fi
  if [ "$("$PREFIX/bin/paas" info "$DEMO_APP" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" != deployed ]; then
    step "deploying examples/node-hello as $DEMO_APP"
    "$PREFIX/bin/paas" deploy "$DEMO_APP" --source examples/node-hello
  fi
  step "paasd is up; the demo app:"
  "$PREFIX/bin/paas" info "$DEMO_APP"
  local url="http://$DEMO_APP.paas.localhost/"
  step "the demo app answers at $url (through paasd's router on :80):"
  local answer=""
  for _ in $(seq 1 100); do
    answer=$(curl -fsS --max-time 5 -H "Host: $DEMO_APP.paas.localhost" http://127.0.0.1/ 2>/dev/null) && break
    sleep 0.2
  done
  [ -n "$answer" ] || die "the demo app did not answer through the router; see $LOG and 'paas ps $DEMO_APP'"
  echo "$answer"
  echo "$url"
  cat <<MSG

Next: curl $url · paas ps $DEMO_APP · paas scale $DEMO_APP web=3 · paas logs $DEMO_APP --follow
      paas env set $DEMO_APP GREETING=hi · paas rollback $DEMO_APP · paas releases info $DEMO_APP v2
(*.localhost resolves to this machine; set base_domain in /etc/paas/paasd.toml for a real domain.
 git push arrives with the next issue; see README.)
MSG
}

case "${1:-}" in
  --uninstall) do_uninstall "$([ "${2:-}" = --purge ] && echo yes || echo no)" ;;
  "") do_install ;;
  -h|--help) sed -n '2,6p' "$0" ;;
  *) die "unknown option $1 (see --help)" ;;
esac

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
  ensure_packages ca-certificates gcc git sqlite3 procps iproute2 nftables python3
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
TOML
  fi

  if "$PREFIX/bin/paas" apps >/dev/null 2>&1; then
    step "paasd is already running"
  else
    # systemd unit and socket hand-over arrive with the VPS issue; until then, a background daemon.
    step "starting paasd in the background (log: $LOG)"
    # setsid: paasd must not keep the admin's terminal as its controlling terminal.
    setsid -f "$PREFIX/bin/paasd" >>"$LOG" 2>&1 < /dev/null
    for _ in $(seq 1 100); do "$PREFIX/bin/paas" apps >/dev/null 2>&1 && break; sleep 0.1; done
    "$PREFIX/bin/paas" apps >/dev/null || die "paasd did not come up; see $LOG"
  fi

  if ! "$PREFIX/bin/paas" info "$DEMO_APP" >/dev/null 2>&1; then
    "$PREFIX/bin/paas" create "$DEMO_APP"
  fi
  step "paasd is up; the demo app:"
  "$PREFIX/bin/paas" info "$DEMO_APP"
  cat <<MSG

Next: paas env set $DEMO_APP GREETING=hi · paas run $DEMO_APP -- sh -c 'echo \$GREETING; id'
      paas releases $DEMO_APP
(Builds, routing and git push arrive with the next issues; see README.)
MSG
}

case "${1:-}" in
  --uninstall) do_uninstall "$([ "${2:-}" = --purge ] && echo yes || echo no)" ;;
  "") do_install ;;
  -h|--help) sed -n '2,6p' "$0" ;;
  *) die "unknown option $1 (see --help)" ;;
esac

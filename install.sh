#!/usr/bin/env bash
# Installs paas on this Debian/Ubuntu server and starts paasd. Idempotent: a second run
# changes nothing and says so; a changed paasd binary is installed and paasd restarted.
#   ./install.sh                         build (release) unless ./bin holds prebuilt binaries,
#                                        install, start paasd, deploy the demo app `hello`
#   ./install.sh --uninstall [--purge]   stop paasd, remove binaries, unit, bridge, NAT table,
#                                        cgroups and mounts (--purge: also state, config, user)
#   ./install.sh --unit                  print the systemd unit as it would be installed
# Every location can be overridden (tests install into a temp dir); the defaults are the
# production paths: PREFIX=/usr/local PAAS_ETC=/etc/paas PAAS_STATE=/var/lib/paas
# PAAS_SOCKET=/run/paas/paasd.sock PAAS_HTTP=0.0.0.0:80 PAAS_HTTPS=0.0.0.0:443
# PAAS_USER=paas PAAS_HOME=/home/paas
# PAAS_BRIDGE=paas0 PAAS_SUBNET=10.88.0.0/16 PAAS_CGROUP_PARENT=paas PAAS_LOG=/var/log/paasd.log
# PAAS_SYSTEMD=auto|yes|no (no: run paasd in the background even when systemd is PID 1)
# PAAS_UNIT_DIR=/etc/systemd/system
# DEMO_APP=hello DEMO_SOURCE=examples/procfile-hello (the demo needs no package registry)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/lib.sh

PREFIX=${PREFIX:-/usr/local}
PAAS_ETC=${PAAS_ETC:-/etc/paas}
PAAS_STATE=${PAAS_STATE:-/var/lib/paas}
PAAS_SOCKET=${PAAS_SOCKET:-/run/paas/paasd.sock}
PAAS_HTTP=${PAAS_HTTP:-0.0.0.0:80}
PAAS_HTTPS=${PAAS_HTTPS:-0.0.0.0:443}
PAAS_USER=${PAAS_USER:-paas}
PAAS_HOME=${PAAS_HOME:-/home/$PAAS_USER}
PAAS_BRIDGE=${PAAS_BRIDGE:-paas0}
PAAS_SUBNET=${PAAS_SUBNET:-10.88.0.0/16}
PAAS_CGROUP_PARENT=${PAAS_CGROUP_PARENT:-paas}
PAAS_LOG=${PAAS_LOG:-/var/log/paasd.log}
PAAS_SYSTEMD=${PAAS_SYSTEMD:-auto}
DEMO_APP=${DEMO_APP:-hello}
# The demo needs nothing from a package registry (a Procfile and python3's standard library),
# so install.sh succeeds on a host with restricted egress.
DEMO_SOURCE=${DEMO_SOURCE:-examples/procfile-hello}
# Said in the next steps when sshd could not be started here.
SSHD_NOTE=
BUILDPACKS=$PREFIX/share/paas/buildpacks
UNIT_NAME=paasd.service
PAAS_UNIT_DIR=${PAAS_UNIT_DIR:-/etc/systemd/system}
UNIT=$PAAS_UNIT_DIR/$UNIT_NAME
# paas-git-shell is sshd's forced command for `git push`; optional only while a build lacks it.
BINARIES=(paasd paas paas-git-shell)

case $PAAS_CGROUP_PARENT in
  "" | /* | *..* | *[!A-Za-z0-9._/-]*) die "PAAS_CGROUP_PARENT '$PAAS_CGROUP_PARENT' must be a relative cgroup path" ;;
  # --uninstall kills everything below it: never a systemd unit's cgroup.
  *.slice | *.scope | *.service) die "PAAS_CGROUP_PARENT '$PAAS_CGROUP_PARENT' must be paasd's own subtree, not a systemd unit" ;;
esac
# --purge deletes these recursively: absolute, and never a system directory.
for d in "$PAAS_ETC" "$PAAS_STATE" "$PAAS_HOME"; do
  case ${d%/} in
    "" | [!/]* | */.. | */../* | /bin | /boot | /dev | /etc | /home | /lib* | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /usr/* | /var | /var/lib | /var/log)
      die "'$d' cannot be a paas directory (PAAS_ETC, PAAS_STATE, PAAS_HOME)" ;;
  esac
done
[[ $PAAS_USER =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || die "PAAS_USER '$PAAS_USER' is not a valid user name"
# The git user's group may use the whole API, and its authorized_keys belong to paasd.
[ "$PAAS_USER" != root ] || die "PAAS_USER cannot be root: pushes log in as a user of their own"
# The comment install.sh gives the user it creates: only such a user is deleted by --purge.
USER_COMMENT="paas (git push)"
case $PAAS_SYSTEMD in auto | yes | no) ;; *) die "PAAS_SYSTEMD must be auto, yes or no" ;; esac

# What this run changed, reported at the end ("nothing changed" on a second run).
CHANGES=()
changed() { CHANGES+=("$*"); step "$*"; }

paas() { "$PREFIX/bin/paas" --socket "$PAAS_SOCKET" "$@"; }

# systemd is the service manager here (PAAS_SYSTEMD=yes asserts it).
systemd_is_up() { [ "$PAAS_SYSTEMD" = yes ] || [ -d /run/systemd/system ]; }

use_systemd() {
  case $PAAS_SYSTEMD in
    yes) return 0 ;;
    no) return 1 ;;
    *) [ -d /run/systemd/system ] ;;
  esac
}

# paasd's flags: only the locations that differ from the defaults, so that on a default install
# /etc/paas/paasd.toml stays in charge (a flag would override the key of the same name).
paasd_flags() {
  FLAGS=()
  [ "$PAAS_ETC" != /etc/paas ] && FLAGS+=(--config "$PAAS_ETC/paasd.toml" --key-file "$PAAS_ETC/secret.key")
  [ "$PAAS_SOCKET" != /run/paas/paasd.sock ] && FLAGS+=(--socket "$PAAS_SOCKET")
  [ "$PAAS_STATE" != /var/lib/paas ] && FLAGS+=(--state-dir "$PAAS_STATE")
  [ "$PAAS_HTTP" != 0.0.0.0:80 ] && FLAGS+=(--http "$PAAS_HTTP")
  [ "$PAAS_HTTPS" != 0.0.0.0:443 ] && FLAGS+=(--https "$PAAS_HTTPS")
  [ "$PAAS_USER" != paas ] && FLAGS+=(--socket-group "$PAAS_USER" --git-user "$PAAS_USER")
  [ "$PAAS_BRIDGE" != paas0 ] && FLAGS+=(--bridge "$PAAS_BRIDGE")
  [ "$PAAS_SUBNET" != 10.88.0.0/16 ] && FLAGS+=(--subnet "$PAAS_SUBNET")
  [ "$PAAS_CGROUP_PARENT" != paas ] && FLAGS+=(--cgroup-parent "$PAAS_CGROUP_PARENT")
  [ "$BUILDPACKS" != /usr/local/share/paas/buildpacks ] && FLAGS+=(--buildpacks-dir "$BUILDPACKS")
  return 0
}

# The pid of the paasd that holds $PAAS_STATE (it writes its pid into the lock it holds), if
# that process is still a paasd. Never matches by name: other daemons (tests) may be running.
state_pid() {
  local pid exe
  pid=$(cat "$PAAS_STATE/paasd.lock" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [ "${exe##*/}" = paasd ] || return 1
  echo "$pid"
}

# True when process $1 runs exactly the installed binary with exactly the flags we would give.
runs_installed() {
  local pid=$1
  cmp -s "/proc/$pid/exe" "$PREFIX/bin/paasd" || return 1
  paasd_flags
  [ "$(tr '\0' '\n' < "/proc/$pid/cmdline")" = "$(printf '%s\n' "$PREFIX/bin/paasd" "${FLAGS[@]}")" ]
}

# Signal, then wait. TERM is a restart (an upgrade): paasd finishes the requests in flight and
# exits, and the app instances keep running for the next paasd, which adopts them. INT stops
# everything: paasd drains the router and stops its instances (SIGTERM, grace, SIGKILL).
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  if [ "$sig" = TERM ]; then
    step "restarting paasd (pid $pid): its apps keep running"
  else
    step "stopping paasd (pid $pid) and its apps"
  fi
  kill -"$sig" "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 900); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  echo "paasd (pid $pid) did not stop within 90 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  die "paasd (pid $pid) does not go away"
}

wait_for_api() {
  for _ in $(seq 1 300); do paas apps >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "paasd did not answer on $PAAS_SOCKET within 30 s; see ${1:-$PAAS_LOG}"
}

# install -D when the target is missing or different; true when it copied.
install_if_changed() {
  local mode=$1 src=$2 dst=$3
  [ -f "$dst" ] && cmp -s "$src" "$dst" && return 1
  # install(1) writes a new inode, so a running paasd keeps its old binary until restarted.
  install -D -m "$mode" "$src" "$dst"
}

# A directory with this mode and owner; created or fixed (and reported) when it differs.
ensure_dir() {
  local dir=$1 mode=$2 owner=$3
  # The git user owns some of these: never follow a link it may have planted.
  [ ! -L "$dir" ] || die "$dir is a symbolic link; refusing to follow it (remove it and run again)"
  if [ ! -d "$dir" ]; then
    install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$dir"
    changed "created $dir"
  elif [ "$(stat -c '%a %U:%G' "$dir")" != "${mode#0} $owner" ]; then
    chmod "$mode" "$dir" && chown -h "$owner" "$dir"
    changed "set $dir to $mode $owner"
  fi
}

ensure_file() {
  local file=$1 mode=$2 owner=$3
  [ ! -L "$file" ] || die "$file is a symbolic link; refusing to follow it (remove it and run again)"
  if [ ! -f "$file" ]; then
    install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" /dev/null "$file"
    changed "created $file"
  elif [ "$(stat -c '%a %U:%G' "$file")" != "${mode#0} $owner" ]; then
    chmod "$mode" "$file" && chown -h "$owner" "$file"
    changed "set $file to $mode $owner"
  fi
}

install_binaries() {
  local bin=$1 b
  for b in "${BINARIES[@]}"; do
    if [ ! -x "$bin/$b" ]; then
      # Required once the workspace declares it (a source build always has it then).
      if [ "$b" = paas-git-shell ] && ! grep -qs 'name = "paas-git-shell"' paas-cli/Cargo.toml; then
        step "this build has no $b (git push over ssh); skipped"
        continue
      fi
      die "$bin/$b is missing"
    fi
    if install_if_changed 0755 "$bin/$b" "$PREFIX/bin/$b"; then changed "installed $PREFIX/bin/$b"; fi
  done
}

install_buildpacks() {
  # Replaced as a whole when anything differs (a removed file must not linger); builds copy
  # them, never run them in place.
  local new=$BUILDPACKS.new
  rm -rf "$new"
  mkdir -p "$(dirname "$BUILDPACKS")"
  cp -a buildpacks "$new"
  rm -rf "$new/test"
  if [ -d "$BUILDPACKS" ] && diff -r "$new" "$BUILDPACKS" >/dev/null 2>&1; then
    rm -rf "$new"
  else
    rm -rf "$BUILDPACKS" && mv "$new" "$BUILDPACKS"
    changed "installed buildpacks to $BUILDPACKS"
  fi
}

# The git user: sshd runs paas-git-shell as this user for `git push paas@HOST:APP`. Its group
# is also the API socket's group (root:paas 0660).
ensure_user() {
  if ! getent group "$PAAS_USER" >/dev/null; then
    groupadd --system "$PAAS_USER"
    changed "created group $PAAS_USER"
  fi
  if ! getent passwd "$PAAS_USER" >/dev/null; then
    # /bin/sh: sshd runs the forced command through the user's shell, so it must be a real one.
    # Password '*': no password login, but not "locked" ('!'), which sshd refuses even for
    # keys when UsePAM is off.
    useradd --system --gid "$PAAS_USER" --home-dir "$PAAS_HOME" --no-create-home \
      --shell /bin/sh --password '*' --comment "$USER_COMMENT" "$PAAS_USER"
    changed "created user $PAAS_USER (home $PAAS_HOME)"
  else
    local shell
    [ "$(getent passwd "$PAAS_USER" | cut -d: -f5)" = "$USER_COMMENT" ] ||
      echo "warning: using the existing user $PAAS_USER for git push; its group may use the paas API, and --purge will not delete it" >&2
    shell=$(getent passwd "$PAAS_USER" | cut -d: -f7)
    case $shell in
      */nologin | */false) echo "warning: user $PAAS_USER has shell $shell; git push over ssh needs a real shell (usermod -s /bin/sh $PAAS_USER)" >&2 ;;
    esac
  fi
  local owner="$PAAS_USER:$PAAS_USER"
  ensure_dir "$PAAS_HOME" 0755 "$owner"
  ensure_dir "$PAAS_HOME/.ssh" 0700 "$owner"
  ensure_file "$PAAS_HOME/.ssh/authorized_keys" 0600 "$owner"
}

write_config() {
  [ -f "$PAAS_ETC/paasd.toml" ] && return 0
  cat > "$PAAS_ETC/paasd.toml" <<'TOML'
# paasd configuration. Every key is optional; command-line flags of the same name win.
# socket = "/run/paas/paasd.sock"
# state_dir = "/var/lib/paas"
# socket_group = "paas"
# http = "0.0.0.0:80"
https = "0.0.0.0:443"     # the router's HTTPS; certificates: `paas certs`, and [acme] below
# base_domain = "paas.localhost"
# buildpacks_dir = "/usr/local/share/paas/buildpacks"
# backups_dir = "/var/lib/paas/backups"  # add-on and volume backups (another disk, a mounted share)
# [build]                 # limits of one deploy
# memory_mb = 2048        # build container memory (no swap)
# cpu_percent = 200       # CPU quota, % of one CPU
# disk_mb = 4096          # what one build may write (source, slug, cache: ext4 images)
# timeout_secs = 1200     # the whole build
# max_upload_mb = 512     # compressed upload
# max_source_mb = 2048    # unpacked source
# max_source_files = 200000
# min_free_disk_mb = 1024 # deploys are refused below this much free space
# keep_releases = 10      # slugs kept for rollback
# [instances]             # defaults of every instance; `paas resources` overrides per app
# memory_mb = 512
# cpu_percent = 100
# pids = 512
# disk_mb = 256           # writable layer (/app, /tmp, ...): a tmpfs, counts against memory
# [users]                 # the uids apps run as, one each, and (the last) the edge's; no host account may use them
# first_uid = 1900000000
# count = 100000
# [logs]                  # each app's log stream (paas logs)
# max_mb_per_app = 32     # disk per app for its output and router lines; the oldest go first
# platform_mb_per_app = 8 # disk per app for platform events and build output, apart from the above
# segment_mb = 4          # rotation unit (at most a quarter of the cap)
# lines_per_sec = 2000    # output lines per process and second (5 s worth at once); beyond: dropped, counted
# [git]                   # git push over the system's sshd (paas-git-shell)
# user = "paas"
# authorized_keys = "/home/paas/.ssh/authorized_keys"
# create_on_push = true   # pushing to an unknown app creates it
# branches = ["main", "master"]
# [acme]                  # a certificate for every app domain, renewed at a third of its life
# enabled = true
# directory_url = "https://acme-v02.api.letsencrypt.org/directory"
#                         # staging: https://acme-staging-v02.api.letsencrypt.org/directory
# email = "you@example.com"
# challenge = "http-01"   # or "tls-alpn-01": validated on :443, for hosts whose port 80 is closed
# [router]
# trusted_proxies = []    # CIDRs of proxies in front whose X-Forwarded-* / Forwarded are kept
# max_connections = 10000 # client connections at once (also kept within the fd budget)
# max_connections_per_ip = 256  # from one address (an IPv6 /64); a proxy in front is one
# header_timeout_secs = 10      # for a request head, from its first byte
# idle_timeout_secs = 60        # keep-alive between requests
# upgrade_idle_timeout_secs = 60  # a WebSocket with no byte either way (apps ping to stay open)
TOML
  changed "wrote $PAAS_ETC/paasd.toml"
}

# The unit as installed: the repo's, with ExecStart pointing at $PREFIX and carrying the
# flags of any overridden location.
render_unit() {
  paasd_flags
  local exec="ExecStart=$PREFIX/bin/paasd" f line
  for f in "${FLAGS[@]}"; do
    if [[ $f =~ ^[A-Za-z0-9_./:,+=-]+$ ]]; then
      exec+=" $f"
    else # systemd's quoting; specifiers are %%, variables $$
      f=${f//%/%%}
      f=${f//\\/\\\\}
      f=${f//\"/\\\"}
      exec+=" \"${f//\$/\$\$}\""
    fi
  done
  local sd_version
  sd_version=$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 + 0 }')
  while IFS= read -r line; do
    [[ $line == ExecStart=* ]] && line=$exec
    # DelegateSubgroup= and FileDescriptorStorePreserve= are systemd 254+; older ones warn
    # about them (see the unit's comments for what paasd does without them).
    if [[ $line == DelegateSubgroup=* || $line == FileDescriptorStorePreserve=* ]] \
      && [ "${sd_version:-0}" -lt 254 ]; then continue; fi
    printf '%s\n' "$line"
  done < "systemd/$UNIT_NAME"
}

start_with_systemd() {
  local unit_changed=no rendered
  rendered=$(render_unit)
  if [ ! -f "$UNIT" ] || [ "$(cat "$UNIT")" != "$rendered" ]; then
    printf '%s\n' "$rendered" > "$UNIT.new" && chmod 0644 "$UNIT.new" && mv "$UNIT.new" "$UNIT"
    systemctl daemon-reload
    unit_changed=yes
    changed "installed $UNIT"
  fi
  if ! systemctl is-enabled -q "$UNIT_NAME" 2>/dev/null; then
    systemctl enable -q "$UNIT_NAME"
    changed "enabled $UNIT_NAME"
  fi
  if systemctl is-active -q "$UNIT_NAME"; then
    local main
    main=$(systemctl show -p MainPID --value "$UNIT_NAME")
    if [ "$unit_changed" = yes ] || ! cmp -s "/proc/$main/exe" "$PREFIX/bin/paasd"; then
      # Type=notify: returns once the restarted paasd is ready.
      systemctl restart "$UNIT_NAME"
      changed "restarted paasd (systemd)"
    fi
  else
    # An earlier install in background mode may still hold the state dir.
    local pid
    if pid=$(state_pid); then stop_pid "$pid"; fi
    systemctl start "$UNIT_NAME"
    changed "started paasd (systemd unit $UNIT_NAME)"
  fi
  wait_for_api "journalctl -u paasd"
}

start_in_background() {
  local pid
  if pid=$(state_pid); then
    if runs_installed "$pid"; then
      step "paasd is running (pid $pid, $PREFIX/bin/paasd)"
      wait_for_api
      return 0
    fi
    step "the running paasd (pid $pid) is not the installed binary with these settings"
    stop_pid "$pid"
    changed "stopped the old paasd (pid $pid)"
  fi
  paasd_flags
  mkdir -p "$(dirname "$PAAS_LOG")"
  # setsid: paasd must not keep the admin's terminal as its controlling terminal.
  setsid -f "$PREFIX/bin/paasd" "${FLAGS[@]}" >>"$PAAS_LOG" 2>&1 </dev/null
  wait_for_api
  pid=$(state_pid) || die "paasd answers but holds no lock in $PAAS_STATE"
  changed "started paasd in the background (pid $pid, log $PAAS_LOG)"
}

# The router's address from GET /api/v1/health, as a client on this machine reaches it.
router_addr() {
  local addr
  addr=$(curl -fsS --max-time 5 --unix-socket "$PAAS_SOCKET" http://paasd/api/v1/health |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("router") or "")')
  case $addr in
    0.0.0.0:*) addr=127.0.0.1:${addr#*:} ;;
    "[::]:"*) addr="[::1]:${addr##*:}" ;;
  esac
  echo "$addr"
}

# Both return non-zero (having said why) instead of stopping install.sh: paas is installed and
# running by then, and the next steps are still due.
deploy_demo() {
  if ! paas info "$DEMO_APP" >/dev/null 2>&1; then
    paas create "$DEMO_APP" || return 1
    changed "created app $DEMO_APP"
  fi
  local info
  info=$(paas info "$DEMO_APP" --json) || return 1
  if [ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' <<<"$info")" != deployed ]; then
    step "deploying $DEMO_SOURCE as $DEMO_APP"
    paas deploy "$DEMO_APP" --source "$DEMO_SOURCE" || return 1
    changed "deployed $DEMO_APP"
  fi
}

check_demo() {
  local url host addr answer=""
  url=$(paas info "$DEMO_APP" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["urls"][0])') || return 1
  host=${url#*://}
  host=${host%%/*}
  addr=$(router_addr)
  if [ -z "$addr" ]; then
    echo "install.sh: paasd reports no router address" >&2
    return 1
  fi
  step "the demo app at $url (through paasd's router on $addr):"
  for _ in $(seq 1 150); do
    answer=$(curl -fsS --max-time 5 -H "Host: $host" "http://$addr/" 2>/dev/null) && break
    sleep 0.2
  done
  if [ -z "$answer" ]; then
    echo "install.sh: the demo app did not answer through the router; see 'paas ps $DEMO_APP' and 'paas logs $DEMO_APP'" >&2
    return 1
  fi
  echo "$answer"
  echo "$url"
}

# `git push` arrives over the system's sshd: start it if this run installed it and it is not
# running; otherwise the next steps say how.
ensure_sshd() {
  pgrep -x sshd >/dev/null 2>&1 && return 0
  local installed=no
  [[ " ${INSTALLED_PACKAGES[*]} " == *" openssh-server "* ]] && installed=yes
  if use_systemd; then
    if [ "$installed" = yes ] && systemctl enable --now ssh; then
      changed "started and enabled sshd (ssh.service)"
      return 0
    fi
    SSHD_NOTE="sshd is not running, so git push cannot reach this server: systemctl enable --now ssh"
  else
    if [ "$installed" = yes ] && mkdir -p /run/sshd && /usr/sbin/sshd; then
      changed "started sshd (/usr/sbin/sshd; without systemd it does not start again after a reboot)"
      return 0
    fi
    SSHD_NOTE="sshd is not running, so git push cannot reach this server: mkdir -p /run/sshd && /usr/sbin/sshd (or: service ssh start)"
  fi
}

next_steps() {
  local host url_port=""
  host=$(hostname -f 2>/dev/null || hostname)
  [ "${PAAS_HTTP##*:}" = 80 ] || url_port=" (the router listens on $PAAS_HTTP)"
  cat <<MSG

Next steps (README "On a VPS"):
  1. On this server, allow your SSH key to push (copy your public key here first):
       paas keys add NAME ~/.ssh/id_ed25519.pub
  2. On your machine, in your app's git repository:
       git remote add paas $PAAS_USER@$host:APP
       git push paas main
  3. Serve apps under your own domain: point a wildcard DNS record (*.example.com) at this
     server, set base_domain = "example.com" in $PAAS_ETC/paasd.toml and restart paasd
     ($(use_systemd && echo "systemctl restart paasd" || echo "kill \$(cat $PAAS_STATE/paasd.lock), then ./install.sh again")).
     Apps answer at http://APP.<base_domain>/$url_port; until then APP.paas.localhost works on
     this machine.
  Also: paas ps $DEMO_APP · paas scale $DEMO_APP web=2 · paas logs $DEMO_APP --follow · paas env set $DEMO_APP GREETING=hi
MSG
  if [ -n "$SSHD_NOTE" ]; then
    echo "  Note: $SSHD_NOTE"
  fi
}

do_install() {
  need_root
  # openssh-server + git: `git push` arrives over the system's sshd.
  ensure_packages ca-certificates gcc git openssh-server sqlite3 procps iproute2 nftables python3 curl util-linux e2fsprogs
  # The built-in buildpacks take node, python and go from the host (the `host` stack).
  ensure_stack_runtimes
  # `paas addons create APP postgres|redis` runs the host's PostgreSQL and Redis binaries.
  ensure_addon_servers
  [ ${#INSTALLED_PACKAGES[@]} -eq 0 ] || changed "installed packages: ${INSTALLED_PACKAGES[*]}"
  ensure_sshd

  local bin
  if [ -x bin/paasd ] && [ -x bin/paas ]; then
    step "using prebuilt binaries in ./bin"
    bin=bin
  else
    ensure_rust
    step "building (release)"
    cargo build --locked --release -p paasd -p paas-cli
    bin=target/release
  fi
  install_binaries "$bin"
  install_buildpacks
  ensure_user
  ensure_dir "$PAAS_ETC" 0755 root:root
  ensure_dir "$PAAS_STATE" 0755 root:root
  write_config

  record_ip_forward
  networkd_hands_off
  if use_systemd; then
    start_with_systemd
  else
    if [ "$PAAS_SYSTEMD" = auto ]; then
      step "systemd is not PID 1 here: running paasd in the background (it does not restart after a crash or reboot; run ./install.sh again)"
    else
      step "PAAS_SYSTEMD=no: running paasd in the background"
    fi
    start_in_background
  fi

  local demo=ok
  if ! { deploy_demo && check_demo; }; then
    demo=failed
  fi
  next_steps
  echo
  if [ "$demo" = failed ]; then
    echo "install.sh: paas is installed and running, but the demo app $DEMO_APP from $DEMO_SOURCE failed (see above); retry with ./install.sh or 'paas deploy $DEMO_APP --source $DEMO_SOURCE'" >&2
  fi
  if [ ${#CHANGES[@]} -eq 0 ]; then
    echo "install.sh: nothing changed; paas is installed and running"
  else
    echo "install.sh: ${#CHANGES[@]} change(s):"
    printf '  - %s\n' "${CHANGES[@]}"
  fi
}

# Our cgroup subtrees in every mounted cgroup hierarchy (v1 controllers, v2, name=systemd).
cgroup_trees() {
  local m
  findmnt -rn -t cgroup,cgroup2 -o TARGET | while IFS= read -r m; do
    m=$(printf '%b' "$m")
    if [ -d "$m/$PAAS_CGROUP_PARENT" ]; then printf '%s\n' "$m/$PAAS_CGROUP_PARENT"; fi
  done
  return 0
}

# Kills what is left in our cgroups (instances outlive paasd by design) and removes them,
# children first. A frozen cgroup is thawed first: SIGKILL does not take effect while frozen.
remove_cgroups() {
  local trees cg pid
  mapfile -t trees < <(cgroup_trees)
  [ ${#trees[@]} -eq 0 ] && return 0
  step "removing cgroups ${trees[*]}"
  # Parents before children (find's order), so nothing is frozen again from above.
  while IFS= read -r cg; do
    if [ -f "$cg/freezer.state" ] && [ "$(cat "$cg/freezer.state")" != THAWED ]; then
      echo THAWED > "$cg/freezer.state" || true
    fi
    if [ -f "$cg/cgroup.freeze" ]; then echo 0 > "$cg/cgroup.freeze" || true; fi
  done < <(find "${trees[@]}" -type d)
  while IFS= read -r cg; do
    if [ -f "$cg/cgroup.kill" ]; then
      echo 1 > "$cg/cgroup.kill" || true
    else
      while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done < "$cg/cgroup.procs"
    fi
  done < <(find "${trees[@]}" -type d)
  for _ in $(seq 1 100); do
    find "${trees[@]}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    mapfile -t trees < <(cgroup_trees)
    [ ${#trees[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  echo "warning: could not remove ${trees[*]}" >&2
}

# Container monitors of this install: paasd re-executed as `paasd __runtime-helper STATE`
# (one per instance, plus a spare), and its edge (the router's process, `paasd __edge STATE`),
# which a full stop ends but a killed paasd leaves serving. Before 2026-12-06 paasd recorded
# the monitors in STATE/instances/ID/helper.pid instead.
kill_monitors() {
  local state f pid exe
  state=$(realpath -m "$PAAS_STATE")
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    # NUL-separated argv: exe, __runtime-helper or __edge, state dir.
    # (A process may be gone by now: its cmdline cannot be opened, quietly.)
    case "$({ tr '\0' '\n' <"$f"; } 2>/dev/null | sed -n '2,3p' | tr '\n' ' ')" in
      "__runtime-helper $state " | "__edge $state ") kill -KILL "$pid" 2>/dev/null || true ;;
    esac
  done
  for f in "$PAAS_STATE"/instances/*/helper.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    exe=${exe% (deleted)}
    if [ "${exe##*/}" = paasd ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# Mounts at or below the state dir, deepest first.
state_mounts() {
  local state m
  state=$(realpath -m "$PAAS_STATE")
  findmnt -rn -o TARGET | while IFS= read -r m; do
    m=$(printf '%b' "$m")
    case $m in "$state" | "$state"/*) printf '%s\t%s\n' "${#m}" "$m" ;; esac
  done | sort -rn | cut -f2-
}

unmount_state() {
  local m
  for _ in 1 2 3 4 5; do # stacked mounts need one pass per layer
    local mounts=()
    mapfile -t mounts < <(state_mounts)
    [ ${#mounts[@]} -eq 0 ] && return 0
    for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  done
  [ -z "$(state_mounts)" ] || echo "warning: still mounted under $PAAS_STATE: $(state_mounts | tr '\n' ' ')" >&2
}

# systemd-networkd configures every link one of its .network files matches; a broad match
# (Type=ether, Name=*) takes paasd's bridge and the containers' veths too and flushes their
# addresses (seen: "No route to host" to every instance). A first-matching file marks them
# unmanaged. Only where networkd runs.
NETWORKD_FILE=${PAAS_NETWORKD_DIR:-/etc/systemd/network}/00-paas-$PAAS_BRIDGE.network
networkd_hands_off() {
  [ -d /run/systemd/netif ] || return 0
  local content
  content=$(printf '%s\n' "# Written by paas install.sh: paasd's bridge and its containers' veths are paasd's." \
    "[Match]" "Name=$PAAS_BRIDGE vp[0-9a-f]*x[0-9a-f]*" "" "[Link]" "Unmanaged=yes")
  [ -f "$NETWORKD_FILE" ] && [ "$(cat "$NETWORKD_FILE")" = "$content" ] && return 0
  mkdir -p "$(dirname "$NETWORKD_FILE")"
  printf '%s\n' "$content" > "$NETWORKD_FILE"
  networkctl reload 2>/dev/null || true
  changed "told systemd-networkd to leave $PAAS_BRIDGE and the containers' veths alone ($NETWORKD_FILE)"
}

# paasd turns on net.ipv4.ip_forward (its apps reach the world through NAT). The value from
# before the first install is kept in the state dir, and --uninstall puts it back.
IP_FORWARD=/proc/sys/net/ipv4/ip_forward
record_ip_forward() {
  local before=$PAAS_STATE/ip_forward.before
  [ -e "$before" ] || [ ! -r "$IP_FORWARD" ] && return 0
  cat "$IP_FORWARD" > "$before"
}

restore_ip_forward() {
  local before=$PAAS_STATE/ip_forward.before value others
  [ -r "$before" ] || return 0
  value=$(tr -dc 0-9 < "$before")
  [ "$value" = 0 ] && [ "$(cat "$IP_FORWARD" 2>/dev/null)" = 1 ] || return 0
  # Another paasd (a second install, a test) still needs forwarding. Zombies do not count: a
  # killed paasd may wait for a slow init to reap it.
  # (pgrep finding none exits 1, which pipefail and set -e would make fatal.)
  others=$({ pgrep -x paasd || true; } | while read -r p; do
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] || printf '%s ' "$p"
  done)
  if [ -n "$others" ]; then
    echo "note: left net.ipv4.ip_forward=1 (it was 0 before paas): another paasd runs (pid ${others% })" >&2
    return 0
  fi
  echo 0 > "$IP_FORWARD"
  echo "restored net.ipv4.ip_forward=0 (as before paas)"
}

do_uninstall() {
  local purge=$1 pid b
  need_root
  if [ -f "$UNIT" ] && systemd_is_up; then
    step "stopping and disabling $UNIT_NAME"
    systemctl disable --now "$UNIT_NAME" || true
  fi
  if pid=$(state_pid); then stop_pid "$pid" INT; fi
  if [ -f "$UNIT" ]; then
    rm -f "$UNIT"
    if systemd_is_up; then
      systemctl daemon-reload
      systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
    fi
  fi
  # Instances and their mounts outlive paasd by design; paasd also keeps its bridge and NAT
  # table across restarts (running apps need them).
  kill_monitors
  remove_cgroups
  unmount_state
  if ip link show "$PAAS_BRIDGE" >/dev/null 2>&1; then ip link del "$PAAS_BRIDGE"; fi
  if nft list table inet "paas_$PAAS_BRIDGE" >/dev/null 2>&1; then nft delete table inet "paas_$PAAS_BRIDGE"; fi
  if [ -f "$NETWORKD_FILE" ]; then rm -f "$NETWORKD_FILE"; networkctl reload 2>/dev/null || true; fi
  for b in "${BINARIES[@]}"; do rm -f "$PREFIX/bin/$b"; done
  rm -rf "$BUILDPACKS" "$BUILDPACKS.new"
  rmdir "$PREFIX/share/paas" 2>/dev/null || true
  if [ -S "$PAAS_SOCKET" ]; then rm -f "$PAAS_SOCKET"; fi
  rmdir "$(dirname "$PAAS_SOCKET")" 2>/dev/null || true
  restore_ip_forward
  if [ "$purge" = yes ]; then
    [ -z "$(state_mounts)" ] || die "refusing to delete $PAAS_STATE: something is still mounted below it"
    step "purging $PAAS_STATE, $PAAS_ETC, $PAAS_LOG and user $PAAS_USER"
    rm -rf --one-file-system "$PAAS_STATE"
    rm -rf "$PAAS_ETC"
    rm -f "$PAAS_LOG"
    # Only the user (and its group) install.sh created: never an account that was there before.
    if [ "$(getent passwd "$PAAS_USER" | cut -d: -f5)" = "$USER_COMMENT" ]; then
      # -r: with its home (~/.ssh/authorized_keys) and mail spool.
      userdel -r "$PAAS_USER" 2>/dev/null || userdel "$PAAS_USER"
      if getent group "$PAAS_USER" >/dev/null; then groupdel "$PAAS_USER"; fi
    elif getent passwd "$PAAS_USER" >/dev/null; then
      echo "note: user $PAAS_USER was not created by install.sh; left in place" >&2
    fi
  fi
  echo "paas uninstalled$([ "$purge" = yes ] && echo " (purged state, config and user $PAAS_USER)")"
}

case "${1:-}" in
  --uninstall)
    case "${2:-}" in
      "") do_uninstall no ;;
      --purge) do_uninstall yes ;;
      *) die "unknown option $2 (see --help)" ;;
    esac ;;
  "") do_install ;;
  --unit) render_unit ;;
  -h | --help) sed -n '2,16p' "$0" ;;
  *) die "unknown option $1 (see --help)" ;;
esac

# Shared helpers for install.sh, scripts/test.sh and bench/: idempotent package and toolchain
# setup. Sourced, not run.

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "run this as root (sudo $0)"
}

# Installs the Debian packages that are missing; runs apt-get update at most once. Appends
# what it installed to INSTALLED_PACKAGES (install.sh reports what it changed).
INSTALLED_PACKAGES=()
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  INSTALLED_PACKAGES+=("${missing[@]}")
}

# PostgreSQL and Redis for add-on services (paasd runs them in containers of its own, from
# these binaries). Debian would also start a system-wide cluster and redis-server.service:
# a paas host needs neither, so no main cluster is made (postgresql-common's createcluster.d,
# only when postgresql-common comes with us) and a redis-server.service we installed is
# disabled. An admin's existing PostgreSQL or Redis is left as it is.
ensure_addon_servers() {
  if ! dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null | grep -q 'install ok installed'; then
    mkdir -p /etc/postgresql-common/createcluster.d
    printf '%s\n' '# paas: add-on services run their own clusters; no system-wide one.' \
      'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/paas.conf
  fi
  local had_redis=1
  dpkg-query -W -f='${Status}' redis-server 2>/dev/null | grep -q 'install ok installed' || had_redis=0
  ensure_packages postgresql postgresql-client redis-server redis-tools
  if [ "$had_redis" = 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now redis-server.service >/dev/null 2>&1 || true
  fi
}

# QEMU (software emulation) and debootstrap for the VM tier (tests/vm/). A qemu-utils from
# backports (newer than the release's qemu-system) blocks Debian's qemu-system-x86: then the
# release's matching pair is installed (qemu-img keeps working; only its version goes back).
ensure_qemu() {
  ensure_packages debootstrap
  command -v qemu-system-x86_64 >/dev/null 2>&1 && return 0
  step "installing qemu-system-x86"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils 2>/dev/null; then
    return 0
  fi
  local sys utils
  sys=$(apt-cache madison qemu-system-x86 | awk '$3 !~ /bpo/ { print $3; exit }')
  utils=$(apt-cache madison qemu-utils | awk '$3 !~ /bpo/ { print $3; exit }')
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "qemu-system-x86=$sys" "qemu-utils=$utils"
}

# Puts cargo on PATH: an existing rustup install, else rustup from its official installer.
ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if ! command -v cargo >/dev/null 2>&1; then
    ensure_packages curl
    step "installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    . "$HOME/.cargo/env"
  fi
  cargo --version >&2
}

# The language runtimes the built-in buildpacks take from the host stack
# (../docs/design.md section 8): node + npm (the distribution's unless one is already
# installed), python3 with venv, go.
ensure_stack_runtimes() {
  local want=(python3 python3-venv golang-go)
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
  ensure_packages "${want[@]}"
}

# A TCP port free on loopback now (bench/: the proxies and upstreams it starts).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # HOST PORT
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  die "nothing listens on $1:$2"
}

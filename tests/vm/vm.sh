#!/usr/bin/env bash
# Throwaway Debian VMs (13, trixie, by default) for integration tests that need what the host cannot give: systemd as
# PID 1 and a pure cgroup v2 hierarchy (the host has hybrid cgroups).
#
#   tests/vm/vm.sh boot NAME [PORT]          start VM NAME, wait until ssh answers (<= 300 s)
#   tests/vm/vm.sh ssh NAME CMD...           run CMD as root in the guest (stdin is passed on)
#   tests/vm/vm.sh copy NAME LOCAL REMOTE    scp -r LOCAL to the guest's REMOTE
#   tests/vm/vm.sh reboot NAME               clean guest shutdown + cold start on the same disk,
#                                            wait until ssh answers again
#   tests/vm/vm.sh stop NAME                 kill the VM and remove its overlay (safe to repeat)
#   tests/vm/vm.sh port NAME                 print the host port forwarded to the guest's sshd
#   tests/vm/vm.sh save NAME TAG             snapshot the running VM (memory and disk) as TAG
#   tests/vm/vm.sh restore NAME TAG          go back to snapshot TAG, wait until ssh answers
#
# Environment: PAAS_VM_CACHE (default /var/cache/paas-vm), where tests/vm/image.sh keeps the
# image; `boot` runs image.sh first, which returns at once when the image is up to date.
# Optional: PAAS_VM_MEM (MiB, 2048), PAAS_VM_SMP (2), PAAS_VM_BOOT_TIMEOUT (s, 300),
# PAAS_VM_APPEND (extra kernel arguments), PAAS_VM_ACCEL (tcg,thread=single).
#
# How the VM runs, and why:
# - QEMU software emulation (TCG, -accel tcg,thread=single): /dev/kvm exists on these machines
#   but is not usable. Everything is slow inside (fork/exec ~65x slower), so boot takes tens of
#   seconds and tests should batch their commands into few ssh calls.
# - The kernel and initrd are booted directly; the root disk is a qcow2 overlay per VM
#   (CACHE/run/NAME.qcow2) backed by the shared read-only rootfs.img, so each VM starts clean
#   and `stop` throws its changes away.
# - User-mode networking with restrict=on: the guest cannot reach anything outside; the only way
#   in is sshd forwarded on 127.0.0.1:PORT. CMD strings are run by the guest's shell, as ssh does.
# - Serial console goes to CACHE/run/NAME.serial.log (kept after `stop`, for post-mortems).
# - Snapshots (`save`/`restore`): QEMU's internal snapshots in the overlay (savevm/loadvm over
#   QMP at CACHE/run/NAME.qmp): memory, devices and disk. A test boots and installs once,
#   saves, and starts each scenario from that snapshot in seconds instead of another boot
#   (tens of seconds under TCG), so one scenario cannot leave anything for the next.
set -euo pipefail

CACHE=${PAAS_VM_CACHE:-/var/cache/paas-vm}
RUN=$CACHE/run
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
QEMU=${PAAS_VM_QEMU:-qemu-system-x86_64}
MEM=${PAAS_VM_MEM:-2048}
SMP=${PAAS_VM_SMP:-2}
BOOT_TIMEOUT=${PAAS_VM_BOOT_TIMEOUT:-300}
APPEND=${PAAS_VM_APPEND:-} # extra kernel arguments, e.g. quiet
# One host thread runs every vCPU: with thread=multi the guest kernel died ("Oops: int3" in
# put_prev_entity) when paasd's first cpu.max write flipped a static key, a cross-modified
# code race of multi-threaded TCG. The guest still has SMP vCPUs.
ACCEL=${PAAS_VM_ACCEL:-tcg,thread=single}
KEY=$CACHE/id_ed25519

SSH_OPTS=(-i "$KEY" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=10
  -o ServerAliveInterval=15 -o ServerAliveCountMax=8)

die() { printf 'vm.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'vm.sh: %s\n' "$*" >&2; }
usage() { sed -n '5,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2; }
now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
fmt_ms() { printf '%d.%01ds' $(($1 / 1000)) $(($1 % 1000 / 100)); }

check_name() {
  [[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad VM name '${1:-}' (letters, digits, _ . -)"
}
overlay() { echo "$RUN/$1.qcow2"; }
pidfile() { echo "$RUN/$1.pid"; }
portfile() { echo "$RUN/$1.port"; }
serial_log() { echo "$RUN/$1.serial.log"; }
qmp_socket() { echo "$RUN/$1.qmp"; }

# The pid of NAME's qemu, if it runs (checked against its command line: pids get reused).
qemu_pid() {
  local pid
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(overlay "$1")" || return 1
  echo "$pid"
}

port_of() {
  local port
  port=$(cat "$(portfile "$1")" 2>/dev/null) || die "VM '$1' is not running (no $(portfile "$1"))"
  echo "$port"
}

# A free TCP port on the host, not promised to another VM either.
pick_port() {
  local used p _
  used=$(ss -Htln 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}'; cat "$RUN"/*.port 2>/dev/null || true)
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    grep -qx "$p" <<<"$used" || { echo "$p"; return 0; }
  done
  die "found no free port"
}

ssh_vm() {
  local name=$1 port
  shift
  port=$(port_of "$name")
  ssh "${SSH_OPTS[@]}" -p "$port" root@127.0.0.1 "$@"
}

# The guest's boot id once ssh answers; fails while it does not.
boot_id() {
  local port
  port=$(port_of "$1")
  ssh "${SSH_OPTS[@]}" -o ConnectTimeout=5 -p "$port" root@127.0.0.1 \
    cat /proc/sys/kernel/random/boot_id </dev/null 2>/dev/null
}

# Waits until ssh answers with a boot id other than $2 (empty: any). Fails on timeout or when
# qemu has died, showing the end of the serial log.
wait_ssh() {
  local name=$1 old=${2:-} deadline id
  deadline=$((SECONDS + BOOT_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! qemu_pid "$name" >/dev/null; then
      say "qemu for '$name' exited; end of $(serial_log "$name"):"
      tail -n 30 "$(serial_log "$name")" >&2 || true
      return 1
    fi
    if id=$(boot_id "$name") && [ -n "$id" ] && [ "$id" != "$old" ]; then
      return 0
    fi
    sleep 1
  done
  say "ssh did not answer within ${BOOT_TIMEOUT}s; end of $(serial_log "$name"):"
  tail -n 30 "$(serial_log "$name")" >&2 || true
  return 1
}

# Removes what a VM leaves in RUN, except the serial log.
remove_files() {
  rm -f "$(overlay "$1")" "$(pidfile "$1")" "$(portfile "$1")" "$RUN/$1.qemu.log" "$(qmp_socket "$1")"
}

# Starts qemu for NAME on its existing overlay, ssh forwarded from 127.0.0.1:PORT; returns once
# qemu runs (daemonized), not once the guest is up.
start_qemu() {
  local name=$1 port=$2
  if ! "$QEMU" -name "paas-vm-$name" \
    -accel "$ACCEL" -cpu max -m "$MEM" -smp "$SMP" \
    -nodefaults -no-user-config -display none -vga none \
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 $APPEND" \
    -drive "file=$(overlay "$name"),if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
    -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" \
    -device virtio-net-pci,netdev=net0 \
    -device virtio-rng-pci \
    -chardev "file,id=serial0,path=$(serial_log "$name"),append=on" -serial chardev:serial0 \
    -qmp "unix:$(qmp_socket "$name"),server=on,wait=off" \
    -pidfile "$(pidfile "$name")" -daemonize \
    >"$RUN/$name.qemu.log" 2>&1; then
    cat "$RUN/$name.qemu.log" >&2
    return 1
  fi
}

cmd_boot() {
  local name=${1:-} port=${2:-} t0 pid
  check_name "$name"
  [ "$(id -u)" -eq 0 ] || die "run as root (the image cache is root's)"
  command -v "$QEMU" >/dev/null || die "$QEMU is missing (apt-get install qemu-system-x86 qemu-utils)"
  "$HERE/image.sh" "$CACHE"
  mkdir -p "$RUN"
  if pid=$(qemu_pid "$name"); then
    die "VM '$name' already runs (pid $pid, port $(cat "$(portfile "$name")")); 'vm.sh stop $name' first"
  fi
  remove_files "$name" # leftovers of a VM that died
  if [ -n "$port" ]; then
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "bad port '$port'"; fi
  else
    port=$(pick_port)
  fi
  echo "$port" >"$(portfile "$name")"

  qemu-img create -q -f qcow2 -F raw -b "$CACHE/rootfs.img" "$(overlay "$name")"
  : >"$(serial_log "$name")"
  t0=$(now_ms)
  say "booting '$name' (ssh on 127.0.0.1:$port, serial log $(serial_log "$name"))"
  if ! start_qemu "$name" "$port"; then
    remove_files "$name"
    die "qemu failed to start '$name' (is port $port taken?)"
  fi
  if ! wait_ssh "$name"; then
    cmd_stop "$name"
    die "VM '$name' did not come up"
  fi
  say "'$name' is up: ssh answered after $(fmt_ms $(($(now_ms) - t0))) (port $port)"
}

cmd_ssh() {
  local name=${1:-}
  check_name "$name"
  shift
  [ $# -gt 0 ] || die "usage: vm.sh ssh NAME CMD..."
  ssh_vm "$name" -- "$@"
}

cmd_copy() {
  local name=${1:-} src=${2:-} dst=${3:-} port
  check_name "$name"
  if [ -z "$src" ] || [ -z "$dst" ]; then die "usage: vm.sh copy NAME LOCAL_PATH REMOTE_PATH"; fi
  port=$(port_of "$name")
  scp -q -r "${SSH_OPTS[@]}" -P "$port" -- "$src" "root@127.0.0.1:$dst"
}

# A clean guest shutdown, then a cold start of a new qemu on the same overlay: to the guest this
# is a reboot (every unit stopped, the disk kept, a fresh kernel). A warm reset inside the same
# qemu (`systemctl reboot`, which also works) measured ~10 s slower under TCG: the second boot
# runs at about half speed while the emulator's old translated code gets invalidated.
cmd_reboot() {
  local name=${1:-} pid port t0 deadline
  check_name "$name"
  pid=$(qemu_pid "$name") || die "VM '$name' is not running"
  port=$(port_of "$name")
  boot_id "$name" >/dev/null || die "VM '$name' does not answer ssh"
  t0=$(now_ms)
  say "rebooting '$name' (guest poweroff, then a new qemu on the same disk)"
  # --no-block: systemctl returns at once, so ssh is not cut off mid-command.
  ssh_vm "$name" systemctl --no-block poweroff </dev/null || true
  deadline=$((SECONDS + 120))
  while qemu_pid "$name" >/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if pid=$(qemu_pid "$name"); then
    say "guest did not power off within 120s; killing qemu (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  say "'$name' is down after $(fmt_ms $(($(now_ms) - t0))); starting it again"
  start_qemu "$name" "$port" || die "qemu failed to restart '$name'"
  wait_ssh "$name" || die "VM '$name' did not come back after reboot"
  say "'$name' rebooted: ssh answered after $(fmt_ms $(($(now_ms) - t0)))"
}

cmd_stop() {
  local name=${1:-} pid _
  check_name "$name"
  if pid=$(qemu_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if qemu_pid "$name" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    say "stopped '$name' (pid $pid)"
  else
    say "'$name' was not running"
  fi
  remove_files "$name"
}

# Runs one human-monitor command (savevm, loadvm) over NAME's QMP socket; prints its output,
# which is empty on success.
hmp() { # NAME COMMAND
  python3 - "$(qmp_socket "$1")" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
def reply():
    while True:
        line = f.readline()
        if not line:
            sys.exit("qmp: connection closed")
        msg = json.loads(line)
        if "return" in msg or "error" in msg:
            return msg
json.loads(f.readline())  # the greeting
for cmd in ({"execute": "qmp_capabilities"},
            {"execute": "human-monitor-command", "arguments": {"command-line": sys.argv[2]}}):
    f.write(json.dumps(cmd).encode() + b"\n")
    f.flush()
    msg = reply()
    if "error" in msg:
        sys.exit("qmp: " + msg["error"].get("desc", str(msg)))
print(msg["return"].strip())
PY
}

# `savevm TAG` (save) or `loadvm TAG` (restore) on NAME; a restore waits for ssh again.
snapshot() { # VERB NAME TAG
  local verb=$1 name=${2:-} tag=${3:-} t0 out
  check_name "$name"
  check_name "$tag"
  qemu_pid "$name" >/dev/null || die "VM '$name' is not running"
  t0=$(now_ms)
  out=$(hmp "$name" "$verb $tag") || die "$verb $tag: $out"
  [ -z "$out" ] || die "$verb $tag: $out"
  if [ "$verb" = loadvm ]; then
    wait_ssh "$name" || die "VM '$name' does not answer after loadvm $tag"
  fi
  say "$verb '$tag' on '$name' took $(fmt_ms $(($(now_ms) - t0)))"
}

cmd_port() {
  check_name "${1:-}"
  port_of "$1"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  boot) cmd_boot "$@" ;;
  ssh) cmd_ssh "$@" ;;
  copy) cmd_copy "$@" ;;
  reboot) cmd_reboot "$@" ;;
  stop) cmd_stop "$@" ;;
  port) cmd_port "$@" ;;
  save) snapshot savevm "$@" ;;
  restore) snapshot loadvm "$@" ;;
  -h | --help | help) usage ;;
  *) die "unknown command '$cmd' (boot, ssh, copy, reboot, stop, port, save, restore)" ;;
esac

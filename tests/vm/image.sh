#!/usr/bin/env bash
# Builds the disk image for throwaway integration-test VMs: Debian 13 (trixie; its systemd 257
# has DelegateSubgroup= and FileDescriptorStorePreserve=, which paasd.service uses) with systemd
# as PID 1 and a pure cgroup v2 hierarchy, which the host (hybrid cgroups) cannot give us.
#
#   tests/vm/image.sh [CACHE_DIR]      default CACHE_DIR: $PAAS_VM_CACHE or /var/cache/paas-vm
#
# Outputs in CACHE_DIR, used by tests/vm/vm.sh:
#   vmlinuz, initrd.img   booted directly by QEMU (-kernel/-initrd): no bootloader, no partitions
#   rootfs.img            ext4 filesystem (4G sparse) made with `mkfs.ext4 -d`: no loop mount
#   id_ed25519            root's ssh key (its public half is baked into the image)
#   image.stamp           sha256 of this script: the image is reused while this file (and so
#                         the package list below) is unchanged; edit the script to rebuild
#
# Why it looks like this:
# - The guest has no network (QEMU user-mode net with restrict=on), so every package the code
#   under test needs is baked in here; only this build talks to Debian's mirror.
# - The VM runs under software emulation (TCG: /dev/kvm is not usable here), where fork/exec is
#   ~65x slower, so boot is trimmed: a slim initrd (MODULES=list) and no timers/units that only
#   cost time (wait-online, e2scrub, apt, fstrim).
# - Networking in the guest: systemd-networkd DHCP on the virtio NIC (QEMU gives 10.0.2.15),
#   static /etc/resolv.conf pointing at QEMU's resolver 10.0.2.3; no systemd-resolved.
# - The image is for tests only: root has no password (serial console login) and ssh accepts
#   root by key only; the ssh port is only ever forwarded on 127.0.0.1.
set -euo pipefail

CACHE=${1:-${PAAS_VM_CACHE:-/var/cache/paas-vm}}
SUITE=${PAAS_VM_SUITE:-trixie}
MIRROR=${PAAS_VM_MIRROR:-http://deb.debian.org/debian}
IMAGE_SIZE=4G
HOSTNAME_=paasvm

# Boot, init and ssh basics.
BASE_PACKAGES=(systemd-sysv udev dbus linux-image-cloud-amd64 initramfs-tools zstd openssh-server
  iproute2 ca-certificates procps kmod netbase)
# What the code under test needs (the packages scripts/test.sh and install.sh rely on), plus
# small conveniences for debugging inside the guest.
# What install.sh installs (scripts/lib.sh: ensure_packages, ensure_stack_runtimes): the guest
# cannot fetch anything.
TEST_PACKAGES=(gcc git sqlite3 nftables python3 python3-venv golang-go nodejs npm curl util-linux
  e2fsprogs openssh-server iputils-ping less postgresql postgresql-client redis-server redis-tools)
# Units that only slow a TCG boot down or fail for lack of network.
MASKED_UNITS=(systemd-networkd-wait-online.service e2scrub_reap.service e2scrub_all.timer
  apt-daily.timer apt-daily-upgrade.timer fstrim.timer man-db.timer)

die() { printf 'image.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'image.sh: %s\n' "$*" >&2; }
now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
fmt_ms() { printf '%d.%01ds' $(($1 / 1000)) $(($1 % 1000 / 100)); }
# step NAME CMD...: runs CMD and prints how long it took.
step() {
  local name=$1 t0
  shift
  say "$name ..."
  t0=$(now_ms)
  "$@"
  say "$name: done in $(fmt_ms $(($(now_ms) - t0)))"
}

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot and mkfs need it)"
for tool in debootstrap mkfs.ext4 sha256sum ssh-keygen flock; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap e2fsprogs openssh-client util-linux)"
done

SELF=$(readlink -f "${BASH_SOURCE[0]}")
KEY=$({ cat "$SELF"; echo "suite=$SUITE"; } | sha256sum | cut -d" " -f1)
STAMP=$CACHE/image.stamp
OUTPUTS=(vmlinuz initrd.img rootfs.img id_ed25519 id_ed25519.pub)

mkdir -p "$CACHE"
# One build at a time (vm.sh boot calls this script too).
exec 9>"$CACHE/.image.lock"
flock 9

cache_valid() {
  [ -f "$STAMP" ] || return 1
  [ "$(cat "$STAMP")" = "$KEY" ] || return 1
  local f
  for f in "${OUTPUTS[@]}"; do [ -s "$CACHE/$f" ] || return 1; done
}

if cache_valid; then
  say "image is up to date in $CACHE (key ${KEY:0:12}), nothing to do"
  exit 0
fi

T_START=$(now_ms)
say "building image in $CACHE (key ${KEY:0:12}); log: $CACHE/build.log"
ROOT=$CACHE/build.rootfs
LOG=$CACHE/build.log
: >"$LOG"

umount_chroot() {
  local m
  for m in dev/pts dev proc sys; do
    if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m" || true; fi
  done
}
cleanup() {
  local rc=$?
  umount_chroot
  rm -rf "$ROOT"
  rm -f "$CACHE"/*.tmp
  if [ "$rc" -ne 0 ]; then
    say "FAILED (exit $rc); last lines of $LOG:"
    tail -n 20 "$LOG" >&2 || true
  fi
}
trap cleanup EXIT

# Leftovers of an interrupted build.
umount_chroot
rm -rf "$ROOT"
rm -f "$STAMP"

# Runs a command inside the chroot, output to the log.
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@" >>"$LOG" 2>&1; }

do_debootstrap() {
  local include
  include=$(IFS=,; echo "${BASE_PACKAGES[*]}")
  debootstrap --variant=minbase --include="$include" "$SUITE" "$ROOT" "$MIRROR" >>"$LOG" 2>&1
}

# The rest with apt in the chroot: debootstrap's own resolver gives up on large trees (npm's
# hundreds of node-* packages).
do_packages() {
  echo "deb $MIRROR $SUITE main" >"$ROOT/etc/apt/sources.list"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mount -t proc proc "$ROOT/proc"
  # As install.sh's ensure_addon_servers: no system-wide PostgreSQL cluster or Redis.
  mkdir -p "$ROOT/etc/postgresql-common/createcluster.d"
  echo 'create_main_cluster = false' >"$ROOT/etc/postgresql-common/createcluster.d/paas.conf"
  in_root apt-get update
  in_root apt-get install -y --no-install-recommends "${TEST_PACKAGES[@]}"
  in_root systemctl disable redis-server.service
  in_root apt-get clean
  umount_chroot
}

do_ssh_key() {
  if [ ! -s "$CACHE/id_ed25519" ] || [ ! -s "$CACHE/id_ed25519.pub" ]; then
    rm -f "$CACHE/id_ed25519" "$CACHE/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C "root@paas-vm-tests" -f "$CACHE/id_ed25519"
  fi
  chmod 600 "$CACHE/id_ed25519"
}

do_configure() {
  echo "$HOSTNAME_" >"$ROOT/etc/hostname"
  cat >"$ROOT/etc/hosts" <<EOF
127.0.0.1 localhost
127.0.1.1 $HOSTNAME_
::1 localhost ip6-localhost ip6-loopback
EOF
  echo '/dev/vda / ext4 rw,relatime 0 1' >"$ROOT/etc/fstab"
  # A plain file: there is no systemd-resolved; 10.0.2.3 is QEMU user-net's resolver.
  rm -f "$ROOT/etc/resolv.conf"
  echo 'nameserver 10.0.2.3' >"$ROOT/etc/resolv.conf"

  mkdir -p "$ROOT/etc/systemd/network"
  cat >"$ROOT/etc/systemd/network/20-wired.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
  in_root systemctl enable systemd-networkd.service
  in_root systemctl mask "${MASKED_UNITS[@]}"
  in_root systemctl set-default multi-user.target
  # -cpu max offers VMX/SVM, so udev would load KVM (useless nested in TCG, and slow to load).
  printf 'blacklist %s\n' kvm kvm_intel kvm_amd >"$ROOT/etc/modprobe.d/paas-vm.conf"
  echo 'LANG=C.UTF-8' >"$ROOT/etc/default/locale"

  install -d -m 700 "$ROOT/root/.ssh"
  install -m 600 "$CACHE/id_ed25519.pub" "$ROOT/root/.ssh/authorized_keys"
  cat >"$ROOT/etc/ssh/sshd_config.d/paas-vm.conf" <<'EOF'
# Test VM: root by key only; the port is forwarded on the host's 127.0.0.1 only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
  # Serial console login without a password (debugging a VM that ssh cannot reach).
  in_root passwd -d root

  # Slim initrd: only what mounting /dev/vda needs (the default MODULES=most takes far longer
  # to load under emulation).
  sed -i 's/^MODULES=.*/MODULES=list/' "$ROOT/etc/initramfs-tools/initramfs.conf"
  cat >>"$ROOT/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_net
ext4
crc32c_generic
EOF
  # Only the apt indexes and caches: the guest has no network, they are dead weight.
  in_root apt-get clean
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/log/*.log
}

do_initramfs() {
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sysfs "$ROOT/sys"
  mount --bind /dev "$ROOT/dev"
  in_root update-initramfs -u -k all
  umount_chroot
  local kernel initrd
  kernel=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
  initrd=$(find "$ROOT/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
  if [ -z "$kernel" ] || [ -z "$initrd" ]; then die "no kernel/initrd in $ROOT/boot"; fi
  say "kernel ${kernel##*/}, initrd $(du -h "$initrd" | cut -f1)"
  cp "$kernel" "$CACHE/vmlinuz.tmp"
  cp "$initrd" "$CACHE/initrd.img.tmp"
}

do_mkfs() {
  umount_chroot # never copy the host's /dev, /proc or /sys into the image
  rm -f "$CACHE/rootfs.img.tmp"
  mkfs.ext4 -q -F -L paasroot -d "$ROOT" "$CACHE/rootfs.img.tmp" "$IMAGE_SIZE" >>"$LOG" 2>&1
}

do_install() {
  mv -f "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
  mv -f "$CACHE/initrd.img.tmp" "$CACHE/initrd.img"
  mv -f "$CACHE/rootfs.img.tmp" "$CACHE/rootfs.img"
  rm -rf "$ROOT"
  echo "$KEY" >"$STAMP"
}

step "debootstrap $SUITE (${#BASE_PACKAGES[@]}+${#TEST_PACKAGES[@]} packages + deps)" do_debootstrap
step "apt-get install ${#TEST_PACKAGES[@]} packages + deps" do_packages
step "ssh key" do_ssh_key
step "configure guest" do_configure
step "update-initramfs (MODULES=list)" do_initramfs
step "mkfs.ext4 -d ($IMAGE_SIZE sparse)" do_mkfs
step "install outputs, remove chroot" do_install
say "image ready in $CACHE: $(du -h --apparent-size "$CACHE/rootfs.img" | cut -f1) apparent, $(du -h "$CACHE/rootfs.img" | cut -f1) used; total $(fmt_ms $(($(now_ms) - T_START)))"

#!/usr/bin/env bash
# sandbox.sh ROOT APP CACHE ENV BUILDPACKS [K=V...] CMD [ARG...]
#
# Runs CMD the way paasd runs a build step on the `host` stack, closely enough to test the
# buildpacks without paasd: a private mount namespace (run this under `unshare -m`), a root
# made of the host's /usr (read-only, with the merged-/usr symlinks), the /etc files paasd's
# host stack copies plus its passwd/group/hosts, a tmpfs /tmp, APP on /app, CACHE on /cache,
# ENV read-only on /env, BUILDPACKS on /buildpacks; uid/gid 10000, no capabilities,
# no_new_privs, a clean environment (the contract's build env plus the K=V given). The host
# network is shared, as in builds. ROOT is an empty directory to mount the root on.
#
# Every step is an exec, so the caller's `$!` is CMD's pid (to send it SIGTERM).
set -euo pipefail

[[ $(id -u) == 0 ]] || { echo "sandbox.sh: needs root (mount, chroot)" >&2; exit 2; }
root=$1 app=$2 cache=$3 envd=$4 bps=$5
shift 5

mount --make-rprivate /
mount -t tmpfs -o mode=0755 sandbox "$root"
cd "$root"
mkdir -p usr app cache env buildpacks etc tmp dev proc home run var/tmp root
chmod 1777 var/tmp
for d in bin sbin lib lib32 lib64 libx32; do
  if [[ -L /$d ]]; then
    ln -s "$(readlink "/$d")" "$d"
  elif [[ -d /$d ]]; then
    mkdir "$d"
    mount --bind "/$d" "$d"
    mount -o remount,bind,ro "$d"
  fi
done
mount --rbind /usr usr
mount -o remount,bind,ro usr

# The same /etc entries as paasd's host stack (paasd/src/runtime/stack.rs) plus the files
# every container gets (paasd/src/runtime/mod.rs).
for e in alternatives bash.bashrc ca-certificates ca-certificates.conf debian_version gai.conf \
  host.conf inputrc ld.so.cache ld.so.conf ld.so.conf.d localtime mime.types nsswitch.conf \
  os-release profile protocols services ssl timezone; do
  [[ -e /etc/$e ]] && cp -a "/etc/$e" etc/
done
printf 'sandbox\n' >etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\tsandbox\n' >etc/hosts
cp /etc/resolv.conf etc/resolv.conf
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:10000:10000:app:/app:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >etc/passwd
printf 'root:x:0:\napp:x:10000:\nnogroup:x:65534:\n' >etc/group

mount -t tmpfs -o mode=1777 tmp tmp
mount --rbind /dev dev
mount --rbind /proc proc
mount --bind "$app" app
mount --bind "$cache" cache
mount --bind "$envd" env
mount -o remount,bind,ro env
mount --bind "$bps" buildpacks
mount -o remount,bind,ro "$root"

ca=/etc/ssl/certs/ca-certificates.crt
exec chroot "$root" /usr/bin/setpriv --reuid=10000 --regid=10000 --clear-groups \
  --no-new-privs --inh-caps=-all --bounding-set=-all \
  /usr/bin/env -i PATH=/app/bin:/usr/local/bin:/usr/bin:/bin HOME=/app STACK=host \
  SSL_CERT_FILE=$ca NODE_EXTRA_CA_CERTS=$ca PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca \
  "$@"

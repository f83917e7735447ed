#!/usr/bin/env bash
# The whole test suite, as README gives it and .ci/run calls it. Run as root on Debian/Ubuntu.
# Installs what it needs (idempotently), then: fmt check, clippy, build, unit + integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
# nftables: egress NAT for instances; python3: the HTTP server the network tests run in a namespace;
# openssh-server: the git push tests go through a real sshd; systemd: systemd-analyze verifies
# the unit (the machine need not boot with systemd); curl: install.sh checks the demo app; pebble:
# the ACME tests' server (with pebble-challtestsrv as its DNS); openssl: they make pebble's HTTPS
# certificate and check the certificates it issues.
ensure_packages ca-certificates gcc git sqlite3 procps iproute2 util-linux e2fsprogs nftables python3 \
  openssh-server systemd curl pebble openssl
# Builds in the tests use the built-in buildpacks, which take their runtimes from the host.
ensure_stack_runtimes
# The add-on tests run real PostgreSQL and Redis (tests/tests/addons.rs).
ensure_addon_servers
# The VM tier (tests/tests/vm.rs): QEMU and debootstrap build and boot a Debian VM.
ensure_qemu
ensure_rust

step "cargo fmt --check"; cargo fmt --all -- --check
step "cargo clippy"; cargo clippy --locked --workspace --all-targets -- -D warnings
# Integration tests run the real binaries from target/debug, so build them first.
step "cargo build"; cargo build --locked --workspace
# The VM tier installs release binaries in its guest (debug ones crawl under emulation), and
# its image is built (or found in its cache) before the tests start.
step "cargo build --release (for the VM tier)"; cargo build --locked --release -p paasd -p paas-cli
step "VM image (tests/vm/image.sh)"; tests/vm/image.sh
step "buildpack helper tests (python)"; python3 -m unittest buildpacks/test/test_static_server.py buildpacks/test/test_versions.py
step "cargo test"; cargo test --locked --workspace -- --test-threads "${PAAS_TEST_THREADS:-4}"

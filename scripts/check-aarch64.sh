#!/usr/bin/env bash
# Cross-checks rbench for aarch64 (NEON kernels) on an x86-64 Debian machine:
# clippy for the target, then the kernel tests run under qemu-user.
#
#   scripts/check-aarch64.sh            # root or sudo for apt-get the first time
#
# Installs gcc/g++-aarch64-linux-gnu and qemu-user (Debian packages) and the
# Rust standard library for the target. ggml is cross-built without
# GGML_NATIVE (RUSTFLAGS replaces the x86 `target-cpu=native` of
# .cargo/config.toml). Emulated timings mean nothing; this checks
# correctness only.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user
fi
rustup target add aarch64-unknown-linux-gnu

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/aarch64-cross"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export RUSTFLAGS="-Cdebuginfo=0"

cargo clippy --target aarch64-unknown-linux-gnu --all-targets -- -D warnings
cargo test --target aarch64-unknown-linux-gnu --lib kernels::

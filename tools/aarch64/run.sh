#!/usr/bin/env bash
# The NEON fast paths on aarch64, checked on this x86-64 machine: cross-compiles the library's
# unit tests and the kernel tests of the suite to aarch64-unknown-linux-gnu and runs them
# under qemu-user. On aarch64 `simd::dispatch` runs `Neon` (4 lanes with FMA), so every test
# that checks the fast paths "on every instruction set this CPU has" checks NEON and scalar.
#
# Needs (Debian, as root; `.ci/run` installs them):
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
#     libc6-dev-arm64-cross qemu-user-static
# Debian's `/usr/bin/cargo` and `/usr/bin/rustc` build it (rustup's toolchain has no aarch64
# standard library here, and the registries are all this machine reaches).
#
# Statically linked: a dynamically linked aarch64 program hangs in glibc's pthread_create
# under qemu-user here (qemu 7.2 and 10.0), and libtest runs every test on a thread. Linked
# with `+crt-static` the same tests run on threads, in parallel.
#
# Usage: tools/aarch64/run.sh   (from anywhere; uses target/aarch64-qemu)
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR=target/aarch64-qemu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
cargo=/usr/bin/cargo
target=aarch64-unknown-linux-gnu
$cargo --version
# The library's unit tests: the Simd trait lane by lane (`simd::tests`), the kernels' own tests.
$cargo test -p constnet --target $target --lib
# The suite's kernel tests, on NEON and scalar:
# - every kernel against its reference on LeNet-5's layers and the six networks' geometries
#   (fast_paths, conv_kernels, blocks, max_pool, norm, block_nets);
# - LeNet-5's PyTorch golden numbers and the trained model (pytorch_golden, pytorch_trained),
#   and the later blocks' PyTorch numbers in f32 (blocks_golden);
# - no allocation in a pass and the 2 MiB stack (no_alloc, stack).
# Not `lanes`: the lane layout runs on AVX-512 only (see `Lanes::runs_in_lanes`), so on
# aarch64 both sides of those tests are the per-sample path.
$cargo test -p constnet --target $target --test suite -- \
  fast_paths:: conv_kernels:: blocks:: max_pool:: norm:: block_nets:: \
  pytorch_golden:: pytorch_trained:: blocks_golden:: no_alloc:: stack::

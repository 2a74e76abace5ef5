#!/usr/bin/env bash
# Each later network's share of a release build: builds the crate and this package's library
# once (the `none` binary), then each network's binary alone, then `all`, timing each.
# Usage: tools/compile_shares/run.sh   (from anywhere; uses its own target directory)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
rm -rf "$CARGO_TARGET_DIR/release"
/usr/bin/time -f "none (constnet and dependencies, clean): %e s wall, %U s user" cargo build -q --release --bin none
for b in alexnet alexnet2012 zfnet vgg16 resnet18 resnet20 googlenet densenet121 all; do
  /usr/bin/time -f "$b: %e s wall, %U s user" cargo build -q --release --bin "$b"
done

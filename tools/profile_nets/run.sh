#!/usr/bin/env bash
# Where each case of `cargo bench --bench nets` spends its time: builds the bench with frame
# pointers and v0 symbol mangling (so each SIMD kernel's symbol names its kernel type), runs
# each case under `perf record`, and prints the symbols with at least 1% of the samples.
# Usage: tools/profile_nets/run.sh [case ...]   (default: the issue's table; needs perf)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=target/profile-nets
RUSTFLAGS="-C force-frame-pointers=yes -C symbol-mangling-version=v0" \
  cargo bench -q --bench nets --no-run
bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/nets-* | grep -v '\.d$' | grep -v '\.o$' | head -1)
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(resnet18/infer/1 vgg16/infer/1 alexnet/infer/1 googlenet/infer/1
  densenet121/infer/1 resnet18/train/8 resnet20/infer/64 resnet20/train/64 lenet5/infer/64 lenet5/train/64)
data=$(mktemp)
trap 'rm -f "$data"' EXIT
for case in "${cases[@]}"; do
  echo "## $case"
  perf record -q -F 999 -o "$data" "$bin" "$case" >/dev/null
  perf report -i "$data" --no-children --sort symbol 2>/dev/null | grep -v '^#' | grep '%' \
    | awk '$1 + 0 >= 1.0' \
    | sed -e 's/\[\.\] //' -e 's/constnet::simd::x86::run_avx512::<\(.*\)>/\1 (AVX-512)/' \
          -e 's/constnet:://g' | cut -c1-150 || echo "(no samples: is '$case' a case of the bench?)"
done

#!/usr/bin/env bash
# Remakes the IDX seeds in fuzz/seeds/ from the bundled test set (data/mnist-10k): its first
# ten images and labels, raw and gzip-compressed, and empty files of each kind. The weights
# and safetensors targets need no copies: .ci/run seeds them with data/embedded/ and
# tests/data/pytorch-lenet-mnist10k/ as they are.
set -euo pipefail
cd "$(dirname "$0")"
data=../data/mnist-10k
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gzip -dc "$data/t10k-images-idx3-ubyte.gz" > "$tmp/images"
gzip -dc "$data/t10k-labels-idx1-ubyte.gz" > "$tmp/labels"
mkdir -p seeds/idx_images seeds/idx_labels seeds/idx_gzip
# Headers declaring 10 items (and 0), then the first ten items of the real files.
{ printf '\x00\x00\x08\x03\x00\x00\x00\x0a\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c 7856 "$tmp/images" | tail -c 7840; } > seeds/idx_images/ten-images
{ printf '\x00\x00\x08\x01\x00\x00\x00\x0a'; head -c 18 "$tmp/labels" | tail -c 10; } > seeds/idx_labels/ten-labels
printf '\x00\x00\x08\x03\x00\x00\x00\x00\x00\x00\x00\x1c\x00\x00\x00\x1c' > seeds/idx_images/empty-images
printf '\x00\x00\x08\x01\x00\x00\x00\x00' > seeds/idx_labels/empty-labels
for f in seeds/idx_images/* seeds/idx_labels/*; do
    gzip -9nc "$f" > "seeds/idx_gzip/$(basename "$f").gz"
done

#!/usr/bin/env bash
# Runs the fuzz targets, each for a fixed number of inputs, under AddressSanitizer and
# memory limits: fuzz/run.sh [RUNS [TARGET...]] (default: 20000 runs of every target).
# Exits non-zero on the first crash, leak, panic or over-limit allocation; libFuzzer leaves
# the input in fuzz/artifacts/TARGET/. Needs cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}
shift || true
# Each target's seeds: fuzz/seeds/TARGET (see make-seeds.sh) or the repository's own files.
# A new target (e.g. a web request parser) gets a line here.
declare -A seeds=(
    [idx_images]=fuzz/seeds/idx_images
    [idx_labels]=fuzz/seeds/idx_labels
    [idx_gzip]=fuzz/seeds/idx_gzip
    [weights]=data/embedded
    [safetensors]=tests/data/pytorch-lenet-mnist10k
    [live_request]=fuzz/seeds/live_request
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx_images idx_labels idx_gzip weights safetensors live_request)
# cargo-fuzz needs nightly-only flags (-Zsanitizer=address); the stable toolchain takes them
# with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for t in "${targets[@]}"; do
    [ -n "${seeds[$t]:-}" ] || { echo "fuzz/run.sh: no target named $t" >&2; exit 2; }
    # New inputs go to fuzz/corpus/TARGET (not committed); inputs that once found a bug
    # stay in fuzz/regressions/TARGET and run first, every time.
    mkdir -p "fuzz/corpus/$t"
    dirs=("fuzz/corpus/$t" "${seeds[$t]}")
    [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
    start=$SECONDS
    log=$(mktemp)
    # A single allocation over 64 MB is a crash: the inputs are at most a few hundred KB, so
    # such an allocation would be made on the word of a header (or a gzip bomb's).
    if cargo fuzz run "$t" "${dirs[@]}" -- -runs="$runs" -rss_limit_mb=2048 -malloc_limit_mb=64 \
        >"$log" 2>&1; then
        echo "fuzz target $t: $(grep -E '^Done' "$log" | tail -n 1), no crash ($((SECONDS - start)) s)"
        rm -f "$log"
    else
        status=$?
        tail -n 80 "$log" >&2
        echo "fuzz target $t failed (exit $status): the input is in fuzz/artifacts/$t/" >&2
        rm -f "$log"
        exit 1
    fi
done

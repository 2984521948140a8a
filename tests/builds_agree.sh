#!/bin/sh
# builds_agree.sh NATIVE_BUILD OTHER_BUILD...: each other build (the portable
# one, -DMST_NATIVE=OFF, which the container image ships; its baseline code
# alone, -DMST_CPU_NO_CLONES; another vector width, -DMST_VEC=N) passes the
# invariance suites, which hold it to the recorded bits, and gives the native
# build's logits bit for bit on the shipped models, SNN and ANN, on the CPU.
# .ci/run calls it.
set -eu
native=$1
shift
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
logits() { # BUILD MODEL OPTIONS... -> $tmp/out.npy
    b=$1
    m=$2
    shift 2
    if ! "$b/mst" run --device cpu --model "$m" "$@" --logits "$tmp/out.npy" tests/data/fmnist16_input.npy \
        >"$tmp/log" 2>&1; then
        cat "$tmp/log" >&2
        exit 1
    fi
}
for other in "$@"; do
    echo "== $other"
    for t in test_linear test_invariance; do
        "$other/tests/$t" -j1
    done
    for model in weights/fmnist_p75.safetensors weights/fmnist_p00.safetensors; do
        for mode in "--timesteps 32 --mask-ratio 0.75 --batch 5 --time-chunk 3" "--mode ann --batch 16"; do
            # shellcheck disable=SC2086 # $mode is a list of options
            logits "$native" "$model" $mode
            mv "$tmp/out.npy" "$tmp/native.npy"
            # shellcheck disable=SC2086
            logits "$other" "$model" $mode
            if ! cmp -s "$tmp/native.npy" "$tmp/out.npy"; then
                echo "builds_agree: $model $mode: $other's logits differ from $native's" >&2
                exit 1
            fi
            echo "same logits as $native: $model $mode"
        done
    done
done

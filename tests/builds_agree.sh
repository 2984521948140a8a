#!/bin/sh
# builds_agree.sh NATIVE_BUILD PORTABLE_BUILD: the portable build (-DMST_NATIVE=OFF,
# the container image's) passes the invariance suites, which hold it to the
# recorded bits, and gives the native build's logits bit for bit on the
# shipped models, SNN and ANN. .ci/run calls it.
set -eu
native=$1
portable=$2
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in test_linear test_invariance; do
    "$portable/tests/$t" -j1
done
in=tests/data/fmnist16_input.npy
for model in weights/fmnist_p75.safetensors weights/fmnist_p00.safetensors; do
    for mode in "--timesteps 32 --mask-ratio 0.75 --batch 5 --time-chunk 3" "--mode ann --batch 16"; do
        for b in native portable; do
            eval dir=\$$b
            if ! "$dir/mst" run --model "$model" $mode --logits "$tmp/$b.npy" "$in" >"$tmp/log" 2>&1; then
                cat "$tmp/log" >&2
                exit 1
            fi
        done
        if ! cmp -s "$tmp/native.npy" "$tmp/portable.npy"; then
            echo "builds_agree: $model $mode: the portable build's logits differ from the native build's" >&2
            exit 1
        fi
        echo "same logits: $model $mode"
    done
done

#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for
# SECONDS (default 30) from the committed seeds, after replaying every
# regression input once. Fails on any crash, leak, hang (10 s), sanitizer
# report or allocation over 2 GiB. Usage: tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
build=${2:-build-fuzz}
CC=clang cmake -S . -B "$build" -DMST_FUZZ=ON -DMST_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets="pth pickle safetensors npy idx image devkit cli"
cmake --build "$build" -j2 --target $(printf 'fuzz_%s ' $targets) >/dev/null
declare -A seeds=([pth]=tests/data/pth [pickle]=tests/fuzz/corpus/pickle [safetensors]=tests/data/pth
                  [npy]=tests/data/pth [idx]=tests/fuzz/corpus/idx [image]=tests/data/images
                  [devkit]=tests/fuzz/corpus/devkit [cli]=tests/fuzz/corpus/cli)
declare -A dicts=([pth]=tests/fuzz/zip.dict [pickle]=tests/fuzz/pickle.dict [safetensors]=tests/fuzz/safetensors.dict
                  [npy]=tests/fuzz/npy.dict [devkit]=tests/fuzz/devkit.dict [cli]=tests/fuzz/cli.dict)
for t in $targets; do
    bin=$build/tests/fuzz/fuzz_$t
    shopt -s nullglob
    regressions=(tests/fuzz/regressions/$t/*)
    shopt -u nullglob
    [ ${#regressions[@]} -eq 0 ] || "$bin" -rss_limit_mb=2048 -timeout=10 "${regressions[@]}"
    work=$(mktemp -d)
    mkdir "$work/corpus"
    dict=()
    [ -z "${dicts[$t]:-}" ] || dict=(-dict="${dicts[$t]}")
    status=0
    "$bin" -rss_limit_mb=2048 -timeout=10 -max_total_time="$secs" -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$work/" "$work/corpus" "${seeds[$t]}" >"$work/log" 2>&1 || status=$?
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$work/log" || true
    # a finding ends the run with a non-zero status and leaves its input
    found=$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \))
    if [ "$status" -ne 0 ] || [ -n "$found" ]; then
        grep -A40 -E "^==[0-9]+==|runtime error|ERROR: libFuzzer" "$work/log" | head -60 >&2 || true
        echo "fuzz_$t: finding (exit status $status): $found" >&2
        exit 1
    fi
    rm -rf "$work"
done

#!/bin/bash
# The GPU check: what a GPU machine has to tell about mst, in two parts that
# each fit one command of 600 s, most valuable first.
#
#   benchmarks/gpu-pack.sh          here: builds build-gpu/, which goes along
#   benchmarks/gpu-check.sh 1       there (at most 360 s): the machine, the CUDA
#                                   tests, compute-sanitizer, fp32/fp16/bf16 top-1,
#                                   the wgmma synapse against the two-kernel path
#   benchmarks/gpu-check.sh 2       there (at most 330 s): Swin-T at T = 128 (the
#                                   wgmma synapse beside the others, and the
#                                   performance model's prediction beside each),
#                                   the spike-count atomics, batch 64 in one chunk
#                                   of 128 steps, the PyTorch loop
#
# Planned device time: 360 + 330 s of commands, ~120 s for the machine to
# start and the copies: ~810 s, inside 15 minutes with ~90 s to spare.
#
# Each part runs against a deadline (MST_GPU_CHECK_SECONDS, default its own
# budget above; both parts in one call: 570 s): every step gets at most the
# time left, less what packing the logs takes, and a step that no longer fits
# is listed as skipped. Logs go to a temporary folder; $OUT receives
# summary.txt and logs.tgz (every log and bench JSON), nothing else, so a part
# cut short still returns what it measured. Models come from the seeded
# generator (mst bench --arch); nothing large is carried or returned.
#
# MST_GPU_CHECK_DRY=cpu runs every step on the CPU at small sizes and skips
# what only a GPU can run, saying so (CI runs it, with MST_GPU_CHECK_BUILD=build).
# Exit status 1 when a step failed.
set -u
parts=${*:-1 2}
want() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
dry=${MST_GPU_CHECK_DRY:-}
case "$dry" in "" | cpu) ;; *) echo "gpu-check.sh: MST_GPU_CHECK_DRY must be cpu or unset" >&2; exit 2 ;; esac
budget=0
want 1 && budget=$((budget + 360))
want 2 && budget=$((budget + 330))
[ "$budget" -gt 570 ] && budget=570
budget=${MST_GPU_CHECK_SECONDS:-$budget}
deadline=$((SECONDS + budget))
reserve=15 # seconds kept for packing the logs
OUT=${OUT:-/tmp/mst-gpu-check}
mkdir -p "$OUT"
logs=$(mktemp -d)
summary=$OUT/summary.txt
: >"$summary"
failed=0
pack() { tar -C "$logs" -czf "$OUT/logs.tgz" . && rm -rf "$logs"; }
trap 'pack; exit $failed' EXIT
trap 'failed=1; exit 1' INT TERM

say() { echo "$*" | tee -a "$summary"; }
here=$(pwd)
B=${MST_GPU_CHECK_BUILD:-build-gpu}
case "$B" in /*) bin=$B ;; *) bin=$here/$B ;; esac
PY=${PY:-python3}
DEV=cuda
[ -n "$dry" ] && DEV=cpu
say "gpu-check parts: $parts; budget ${budget} s; device $DEV${dry:+ (dry run: small sizes, GPU-only steps skipped)}; build $B"

# step NAME MAX_SECONDS CMD...: CMD under the time left (at most MAX), its
# output in NAME.log; returns CMD's status (124: out of time, 125: skipped).
step() {
    local name=$1 max=$2 left rc
    shift 2
    left=$((deadline - SECONDS - reserve))
    if [ "$left" -lt 5 ]; then
        echo "skipped: no time left" >"$logs/$name.log"
        say "$name: skipped, no time left"
        [ -n "$dry" ] && failed=1 # the dry run has all the time it needs: a skip means a step ran too long
        return 125
    fi
    [ "$left" -gt "$max" ] && left=$max
    timeout -k 5 "$left" "$@" >"$logs/$name.log" 2>&1
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        say "$name: timed out after ${left} s: $(tail -n 1 "$logs/$name.log")"
        failed=1
        return 124
    fi
    [ $rc -ne 0 ] && failed=1
    return $rc
}
gpu_only() { say "$1: skipped (runs on a GPU only)"; }

# The binaries' RPATH and the tests' data paths name the checkout gpu-pack.sh
# built them in: make that path lead here.
if [ -f "$B/source-dir" ]; then
    src=$(cat "$B/source-dir")
    if [ "$src" != "$here" ] && [ ! -e "$src" ]; then
        mkdir -p "$(dirname "$src")" && ln -s "$here" "$src" || say "cannot link $src to $here"
    fi
fi
# Libraries the loader misses (build-gpu/deps comes through the RPATH) are
# looked for and given to mst's programs only, never to Python.
libpath=""
missing=$(ldd "$B/mst" "$B"/libmstcore.so "$B/tests/test_cuda" 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
for lib in $missing; do
    f=$(find /usr/local /usr/lib /opt -name "$lib" 2>/dev/null | head -n 1)
    [ -n "$f" ] && libpath="$libpath:$(dirname "$f")"
done
libpath=${libpath#:}
[ -n "$missing" ] && say "libraries the loader missed: $missing${libpath:+; found in $libpath}"
# (arrays, not functions: timeout runs programs)
withlibs=(env)
[ -n "$libpath" ] && withlibs=(env "LD_LIBRARY_PATH=$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
mst=("${withlibs[@]}" "$B/mst")
{
    echo '#!/bin/sh'
    [ -n "$libpath" ] && echo "export LD_LIBRARY_PATH=\"$libpath\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "exec \"$bin/mst\" \"\$@\""
} >"$logs/mst-run"
chmod +x "$logs/mst-run"

machine() {
    { nvidia-smi; nvcc --version; lscpu; } >"$logs/env.txt" 2>&1
    say "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>/dev/null ||
        echo "no GPU (nvidia-smi: none)"); $(nproc) CPUs"
}

# ---- part 1 -----------------------------------------------------------------

tests() { # every CUDA op against its CPU twin; the engine on the device
    for t in cuda engine; do
        [ -x "$B/tests/test_$t" ] || { say "test_$t: not built here (no CUDA toolkit, or MST_TESTS=OFF)"; continue; }
        step "test_$t" 240 "${withlibs[@]}" "$B/tests/test_$t" -j1 --verbose
        [ $? -eq 125 ] && continue
        say "test_$t: $(grep -c '^\[SKIP\]' "$logs/test_$t.log") skipped; $(tail -n 1 "$logs/test_$t.log")"
        grep -E '^\[(FAIL|SKIP)\]' "$logs/test_$t.log" | head -n 12 | tee -a "$summary"
    done
}

# compute-sanitizer on a small model (tests/data/tiny_bn, T = 16 in chunks of
# 4: one chunk run plainly, one captured, two replayed): every tool on the
# fused synapse in bf16 with graphs, masking at every site (the MLP's too)
# and the spike counters' atomics; memcheck and initcheck on the fp32
# two-kernel path and on ANN mode. The dry
# run runs the commands that need no GPU without the sanitizer.
sanitizer() {
    local m="--model tests/data/tiny_bn.safetensors --timesteps 16 --time-chunk 4 --batch 2 --device $DEV"
    local fast="--precision bf16 --fused-synapse --cuda-graphs --mask-ratio 0.75 --mask-sites all --stats" cs
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    local wgmma="--precision bf16 --fused-synapse=wgmma --cuda-graphs --mask-ratio 0.75 --mask-sites all --stats"
    set -- memcheck "$fast" racecheck "$fast" synccheck "$fast" initcheck "$fast" \
        memcheck "--mask-ratio 0.75 --mask-sites all --stats" initcheck "--mask-ratio 0.75" \
        memcheck "--mode ann --mask-ratio 0.75 --mask-sites all" memcheck "$wgmma" racecheck "$wgmma"
    [ -z "$dry" ] && [ -z "$cs" ] && { say "compute-sanitizer: not installed here"; failed=1; return; }
    while [ $# -ge 2 ]; do
        local tool=$1 opts=$2 name rc
        shift 2
        name="sanitizer_${tool}_$(echo "$opts" | tr -cd 'a-z0-9')"
        if [ -n "$dry" ]; then
            case "$opts" in *bf16*) gpu_only "compute-sanitizer $tool ($opts)"; continue ;; esac
            # shellcheck disable=SC2086 # $m and $opts are option lists
            step "$name" 120 "${mst[@]}" run $m $opts tests/data/tiny_bn_input.npy
            rc=$?
            [ $rc -eq 125 ] && return
            say "$tool's command, without the sanitizer ($opts): exit $rc"
            continue
        fi
        # shellcheck disable=SC2086
        step "$name" 120 "${withlibs[@]}" "$cs" --tool "$tool" --print-limit 50 --error-exitcode 9 "$B/mst" run $m $opts \
            tests/data/tiny_bn_input.npy
        rc=$?
        [ $rc -eq 125 ] && return
        say "compute-sanitizer $tool ($opts): exit $rc $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$name.log" ||
            tail -n 1 "$logs/$name.log")"
        grep -q -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$name.log" || {
            say "compute-sanitizer gave no summary (no access to the GPU's debugger?): the rest skipped"
            return
        }
    done
}

# design.md: a faster precision must keep top-1 within 0.1 % of fp32 on a real
# evaluation set: the shipped p = 0.75 model on the Fashion-MNIST test set.
precision() {
    local data=${MST_GPU_CHECK_DATA:-$B/data/fashion-mnist} limit=""
    [ -n "$dry" ] && { data=/usr/share/datasets/fashion-mnist; limit="--limit 200"; }
    say "top-1, fmnist_p75 at T=64, p=0.75, on $data ${limit:-(10 000 images)}"
    for run in fp32 bf16-fused fp16-fused bf16 fp16 bf16-wgmma; do
        local p=${run%-*} fused=""
        case "$run" in *-fused) fused=--fused-synapse ;; *-wgmma) fused=--fused-synapse=wgmma ;; *) p=$run ;; esac
        [ -n "$dry" ] && [ "$p" != fp32 ] && { gpu_only "top-1 $run"; continue; }
        # shellcheck disable=SC2086 # $fused and $limit are empty or options
        step "eval_$run" 120 "${mst[@]}" eval --device "$DEV" --precision "$p" $fused --model weights/fmnist_p75.safetensors \
            --data "$data" $limit --timesteps 64 --mask-ratio 0.75 --batch 250 --report-steps 16,32,64 \
            --results-file "$logs/eval_$run.json"
        [ $? -eq 125 ] && return
        if [ -s "$logs/eval_$run.json" ]; then
            $PY - "$logs" "$run" <<'EOF' | tee -a "$summary"
import json, os, sys
d, run = sys.argv[1:]
r = json.load(open(os.path.join(d, "eval_%s.json" % run)))
f = os.path.join(d, "eval_fp32.json")
ref = json.load(open(f))["top1"] if os.path.exists(f) else float("nan")
line = "  %-11s top-1 %6.2f %%  (%+.2f vs fp32)  %9.1f images/s" % (run, r["top1"], r["top1"] - ref, r["images_per_second"])
if run == "bf16-wgmma":  # design.md's 0.1 %, against fp32 and the two-kernel bf16 path
    f2 = os.path.join(d, "eval_bf16.json")
    two = json.load(open(f2))["top1"] if os.path.exists(f2) else float("nan")
    ok = abs(r["top1"] - ref) <= 0.1 and abs(r["top1"] - two) <= 0.1
    line += "  (%+.2f vs bf16 two-kernel): %s" % (r["top1"] - two, "within 0.1 %" if ok else "NOT within 0.1 %")
print(line)
EOF
        else
            say "  $run: failed: $(tail -n 1 "$logs/eval_$run.log")"
        fi
    done
}

# The wgmma synapse (opt-in until this check passes): the same top-1 as the
# two-kernel bf16 path at every reported step on the shipped samples.
wgmma_samples() {
    say "wgmma synapse against the two-kernel bf16 path: fmnist_p75 on the shipped samples, T=64, p=0.75"
    [ -n "$dry" ] && { gpu_only "wgmma samples"; return; }
    for run in bf16 wgmma; do
        local fused=""
        [ "$run" = wgmma ] && fused=--fused-synapse=wgmma
        # shellcheck disable=SC2086 # $fused is empty or one option
        step "samples_$run" 60 "${mst[@]}" eval --device cuda --precision bf16 $fused --model weights/fmnist_p75.safetensors \
            --data weights/samples --timesteps 64 --mask-ratio 0.75 --report-steps 4,8,16,32,64 \
            --results-file "$logs/samples_$run.json"
        [ $? -eq 125 ] && return
    done
    $PY - "$logs" <<'EOF' | tee -a "$summary"
import json, os, sys
d = sys.argv[1]
try:
    a, b = [json.load(open(os.path.join(d, "samples_%s.json" % r))) for r in ("bf16", "wgmma")]
except (OSError, ValueError) as e:
    print("  samples: no results to compare (%s)" % e)
    sys.exit(0)
same = a["step_top1"] == b["step_top1"] and a["step_top5"] == b["step_top5"]
print("  samples top-1: two-kernel %.2f %%, wgmma %.2f %%: %s" % (a["top1"], b["top1"], "the same at every step" if same else "DIFFERENT"))
EOF
}

# ---- part 2 -----------------------------------------------------------------

# bench NAME ARGS...: mst bench on the Swin-T shape (seeded weights made on
# the spot), its JSON kept, one line in the summary.
bench() {
    local name=$1
    shift
    local size="--timesteps 128 --time-chunk 16 --batch 64 --warmup 1 --iters 4"
    [ -n "$dry" ] && size="--timesteps 2 --time-chunk 2 --batch 2 --warmup 0 --iters 1"
    # shellcheck disable=SC2086 # $size is an option list
    step "bench_$name" 150 "${mst[@]}" bench --device "$DEV" --arch swin-t --mask-ratio 0.75 $size "$@" \
        --json "$logs/bench_$name.json"
    [ $? -eq 125 ] && return
    if [ -s "$logs/bench_$name.json" ]; then
        $PY - "$logs/bench_$name.json" "$name" <<'EOF' | tee -a "$summary"
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
print("  %-24s T=%-3d chunk %-3d b=%-2d p50 %9.2f ms  device %9.2f ms  %9.2f images/s  %5.1f %% of floor  %8.0f MiB"
      % (sys.argv[2], r["timesteps"], r["time_chunk"], r["batch"], l["p50"], l["device_compute"],
         r["images_per_second"], 100 * r["floor_fraction"], r["peak_bytes"] / 2**20))
EOF
    else
        say "  $name: failed: $(tail -n 1 "$logs/bench_$name.log")"
    fi
}

swin() {
    say "Swin-T shape, p=0.75: batch-1 latency and throughput at batch 64 (dense-equivalent FLOPs against the measured matrix-product floor)"
    if [ -n "$dry" ]; then
        bench fp32 --precision fp32
        gpu_only "fp16/bf16, fused synapse and CUDA graphs"
        return
    fi
    bench bf16_fused_graphs --precision bf16 --fused-synapse --cuda-graphs
    bench bf16_graphs --precision bf16 --cuda-graphs
    bench bf16_wgmma_graphs --precision bf16 --fused-synapse=wgmma --cuda-graphs
    bench fp16_fused_graphs --precision fp16 --fused-synapse --cuda-graphs
    bench fp16_graphs --precision fp16 --cuda-graphs
    bench fp32_graphs --precision fp32 --cuda-graphs
}

# benchmarks/gpu_model.py's prediction for the paths benched above, from the
# SASS counts gpu-pack.sh read off this build (the GPU machine needs no
# disassembler): the first run calibrates the model.
prediction() {
    say "performance model (benchmarks/gpu_model.py), Swin-T T=128 batch 64 bf16, beside the measurements above:"
    local sass=$B/sass.json args
    if [ -s "$sass" ]; then
        args=(--sass-json "$sass")
    elif $PY benchmarks/gpu_model.py --build "$B" --write-sass "$logs/sass.json" >/dev/null 2>&1; then
        args=(--sass-json "$logs/sass.json")
    else
        say "  skipped: no SASS counts (gpu-pack.sh found no cuobjdump, and there is none here)"
        return
    fi
    for path in two-kernel wgmma; do
        step "model_$path" 30 $PY benchmarks/gpu_model.py "${args[@]}" --path "$path" --json "$logs/model_$path.json"
        [ $? -eq 125 ] && return
        say "  $path: $(tail -n 1 "$logs/model_$path.log")"
    done
}

atomics() { # the same run with and without the spike counters
    say "spike-count atomics (--stats) on and off"
    if [ -n "$dry" ]; then
        bench fp32_counts --precision fp32 --stats
        return
    fi
    bench bf16_fused_graphs_counts --precision bf16 --fused-synapse --cuda-graphs --stats
}

# batch 64 with all 128 steps in one chunk: the fp32 plan that did not fit an
# H200 before the engine sized bufH for what it holds (108 GiB now)
chunk128() {
    say "Swin-T, batch 64, fp32, one chunk of 128 steps"
    [ -n "$dry" ] && { gpu_only "chunk128"; return; }
    bench fp32_chunk128 --precision fp32 --time-chunk 128
}

baseline() {
    say "baseline: the PyTorch reference loop beside mst (Swin-T shape, T=32, batch 8)"
    if ! $PY -c 'import torch' 2>/dev/null; then
        say "  skipped: no torch here"
        return
    fi
    local size="--timesteps 32 --batch 8 --iters 5"
    [ -n "$dry" ] && size="--timesteps 2 --batch 1 --iters 1 --baseline-iters 1"
    # shellcheck disable=SC2086
    step baseline 300 $PY benchmarks/baseline/compare.py --mst "$logs/mst-run" --device "$DEV" --arch swin-t \
        --model weights/fmnist_p75.safetensors $size
    [ $? -eq 125 ] || tail -n 6 "$logs/baseline.log" | tee -a "$summary"
}

machine
if want 1; then
    tests
    sanitizer
    precision
    wgmma_samples
fi
if want 2; then
    swin
    prediction
    atomics
    chunk128
    baseline
fi
say "done in $SECONDS s of $budget"

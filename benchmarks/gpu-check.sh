#!/bin/bash
# The GPU check of issues 4 and 6, run on the lent H200 by the device tool after
# benchmarks/gpu-pack.sh built build-gpu/ here (see that script). Writes every
# log under $OUT and prints a short table last.
#
#   1. the machine: nvidia-smi, nvcc;
#   2. the GPU test suites (every CUDA op against its CPU twin, RSM draws,
#      the engine's goldens on the GPU, fp16/bf16 top-1 agreement);
#   3. compute-sanitizer memcheck and racecheck on a small model;
#   4. fp32/fp16/bf16 top-1 of the shipped model on the Fashion-MNIST test
#      set (design.md: a faster mode must stay within 0.1 % of fp32);
#   5. Swin-T shape (224x224, seeded random weights from tools/make_model.py):
#      mst bench at T = 32 and 128 in fp32, fp16 and bf16: batch-1 latency,
#      throughput at batch 64, the ratio to the measured dense bf16 floor;
#   6. issue 6's baseline: the PyTorch reference loop on the GPU beside mst.
#
# All of it may take longer than one device call allows (600 s): name parts
# to run them alone, e.g. `gpu-check.sh tests sanitizer precision`, then
# `gpu-check.sh bench baseline` (default: all). Logs of both land in $OUT.
set -u
parts=${*:-tests sanitizer precision bench baseline}
want() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
OUT=${OUT:-/tmp/mst-gpu-check}
mkdir -p "$OUT"
here=$(pwd)
B=build-gpu
src=$(cat $B/source-dir)
PY=${PY:-python3}
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
# the binaries' RPATH and the tests' data paths name the checkout they were
# built in: make that path lead here
if [ "$src" != "$here" ] && [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")" && ln -s "$here" "$src" || log "cannot link $src to $here: the binaries will not find their libraries"
fi

# build-gpu/deps comes through the RPATH (gpu-pack.sh); cuBLAS and the CUDA
# runtime are this machine's. Any library the loader still misses is looked
# for and added to LD_LIBRARY_PATH for mst's programs only (never for Python,
# whose torch brings its own CUDA libraries).
libpath=""
missing=$(ldd $B/mst $B/libmstcore.so $B/tests/test_cuda 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
for lib in $missing; do
    f=$(find /usr/local /usr/lib /opt -name "$lib" 2>/dev/null | head -n 1)
    [ -n "$f" ] && libpath="$libpath:$(dirname "$f")"
done
log "libraries the loader missed: ${missing:-none}${libpath:+; found in ${libpath#:}}"
libpath=${libpath#:}
withlibs() {
    if [ -n "$libpath" ]; then LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; else "$@"; fi
}
{
    echo '#!/bin/sh'
    [ -n "$libpath" ] && echo "export LD_LIBRARY_PATH=\"$libpath\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "exec \"$here/$B/mst\" \"\$@\""
} > $B/mst-run
chmod +x $B/mst-run

log "machine"
{ nvidia-smi; nvcc --version; $PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'; } > "$OUT/env.txt" 2>&1
grep -m1 -o 'NVIDIA H[0-9A-Za-z ]*' "$OUT/env.txt" | tee -a "$OUT/summary.txt"
grep -m1 'Driver Version' "$OUT/env.txt" | tee -a "$OUT/summary.txt"

want tests && log "tests" &&
for t in cuda engine cli philox if_scan attention synapse linear window data safetensors weights; do
    [ -x $B/tests/test_$t ] || continue
    withlibs timeout 300 $B/tests/test_$t -j1 --verbose > "$OUT/test_$t.log" 2>&1
    echo "test_$t: exit $? $(tail -n 1 "$OUT/test_$t.log")" | tee -a "$OUT/summary.txt"
done

# (where the runtime gives compute-sanitizer no access, as on gVisor, the
# first run says so and the rest are skipped)
want sanitizer && log "compute-sanitizer on tests/data/tiny_bn (T=4, p=0.75, SNN and ANN)" &&
for tool in memcheck racecheck; do
    for mode in snn ann; do
        [ -n "${sanitizer_broken:-}" ] && continue
        withlibs timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $B/mst run --device cuda --mode $mode \
            --model tests/data/tiny_bn.safetensors --timesteps 4 --mask-ratio 0.75 tests/data/tiny_bn_input.npy \
            > "$OUT/sanitizer_${tool}_$mode.log" 2>&1
        echo "$tool $mode: exit $? $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_${tool}_$mode.log")" | tee -a "$OUT/summary.txt"
        if ! grep -q -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_${tool}_$mode.log"; then
            sanitizer_broken=1
            echo "compute-sanitizer gave no summary: $(tail -n 1 "$OUT/sanitizer_${tool}_$mode.log"); skipping the rest" | tee -a "$OUT/summary.txt"
        fi
    done
done

want precision && {
log "precision: top-1 on the Fashion-MNIST test set (10 000 images), fmnist_p75, T=64, p=0.75, per precision"
printf '%-10s %8s %8s %10s\n' run "top-1" "vs fp32" "images/s" | tee -a "$OUT/summary.txt"
for run in fp32 fp16 bf16 fp16-fused bf16-fused; do
    p=${run%-fused}
    fused=""; [ "$run" != "$p" ] && fused=--fused-synapse
    j=$OUT/eval_fmnist_$run.json
    withlibs timeout 300 $B/mst eval --device cuda --precision $p $fused --model weights/fmnist_p75.safetensors \
        --data $B/data/fashion-mnist --timesteps 64 --mask-ratio 0.75 --batch 250 --report-steps 16,32,64 \
        --results-file "$j" > "$OUT/eval_fmnist_$run.log" 2>&1
    if [ -s "$j" ]; then
        $PY -c "import json; r=json.load(open('$j')); f=json.load(open('$OUT/eval_fmnist_fp32.json'))['top1']; print('%-10s %8.2f %+8.2f %10.1f' % ('$run', r['top1'], r['top1']-f, r['images_per_second']))" | tee -a "$OUT/summary.txt"
    else
        echo "$run: failed: $(tail -n 1 "$OUT/eval_fmnist_$run.log")" | tee -a "$OUT/summary.txt"
    fi
done

}

want bench && {
# one row of the table from a bench JSON file, or the failure's last line
bench_row() { # JSON LABEL LOG
    if [ -s "$1" ]; then
        $PY -c 'import json, sys; r = json.load(open(sys.argv[1])); l = r["latency_ms"]
print("%-5d %-5s %10.3f %10.3f %10.3f %12.2f %9.1f%% %10.1f %s" % (r["timesteps"], r["precision"], l["p50"], l["p99"],
      l["device_compute"], r["images_per_second"], 100 * r["floor_fraction"], r["peak_bytes"] / 2**20, sys.argv[2]))' "$1" "$2"
    else
        echo "$2: failed: $(tail -n 1 "$3")"
    fi | tee -a "$OUT/summary.txt"
}
swin() { # NAME ARGS...: mst bench on the Swin-T shape
    name=$1; shift
    withlibs timeout 400 $B/mst bench --device cuda --model "$OUT/swin_t.safetensors" --mask-ratio 0.75 --warmup 2 \
        --iters 10 --json "$OUT/bench_$name.json" "$@" > "$OUT/bench_$name.log" 2>&1
    bench_row "$OUT/bench_$name.json" "$name" "$OUT/bench_$name.log"
}
log "Swin-T shape: mst bench (batch 1 latency, throughput at batch B, floor = measured bf16 GEMM rate)"
$PY tools/make_model.py --arch swin-t --seed 0 --out "$OUT/swin_t.safetensors" > "$OUT/make_model.log" 2>&1 || cat "$OUT/make_model.log"
printf '%-5s %-5s %10s %10s %10s %12s %10s %10s %s\n' T prec "p50 ms" "p99 ms" "device ms" "images/s" "of floor" "peak MiB" run |
    tee -a "$OUT/summary.txt"
for T in 32 128; do
    for p in fp32 fp16 bf16; do
        swin "T${T}_$p" --timesteps $T --precision $p --batch 64 --time-chunk 16
    done
done
# each time chunk captured once and replayed
for p in fp32 bf16; do swin "T128_${p}_graphs" --timesteps 128 --precision $p --batch 64 --time-chunk 16 --cuda-graphs; done
# the fused synapse (GEMM + IF scan in one kernel) against the two kernels above
for p in fp16 bf16; do swin "T128_${p}_fused" --timesteps 128 --precision $p --batch 64 --time-chunk 16 --fused-synapse; done
swin "T128_bf16_fused_graphs" --timesteps 128 --precision bf16 --batch 64 --time-chunk 16 --fused-synapse --cuda-graphs
# batch-1 latency with all 128 steps in one chunk: each layer launched once per image
for g in "" --cuda-graphs; do swin "T128_bf16_b1_chunk128${g:+_graphs}" --timesteps 128 --precision bf16 --batch 1 --time-chunk 128 $g; done
}

want baseline && {
log "baseline: the PyTorch reference loop on the GPU beside mst (T=32, batch 8)"
timeout 600 $PY benchmarks/baseline/compare.py --mst $B/mst-run --device cuda --arch swin-t --model weights/fmnist_p75.safetensors \
    --timesteps 32 --batch 8 --iters 5 > "$OUT/baseline.log" 2>&1
tail -n 8 "$OUT/baseline.log" | tee -a "$OUT/summary.txt"
}

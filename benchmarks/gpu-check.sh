#!/bin/bash
# The GPU check of issue 4, run on the lent H200 by the device tool after
# benchmarks/gpu-pack.sh built build-gpu/ here (see that script). Writes every
# log under $OUT and prints a short table last.
#
#   1. the machine: nvidia-smi, nvcc;
#   2. the GPU test suites (every CUDA op against its CPU twin, RSM draws,
#      the engine's goldens on the GPU, fp16/bf16 top-1 agreement);
#   3. compute-sanitizer memcheck and racecheck on a small model;
#   4. Swin-T shape (224x224, seeded random weights from tools/make_model.py):
#      throughput at batch 64 and latency at batch 1, T = 32 and 128, in fp32,
#      fp16 and bf16, with the dense FLOPs and the ratio to the bf16 floor.
set -u
OUT=${OUT:-/tmp/mst-gpu-check}
mkdir -p "$OUT"
here=$(pwd)
B=build-gpu
src=$(cat $B/source-dir)
if [ "$src" != "$here" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$here" "$src"; fi
export LD_LIBRARY_PATH="$here/$B/deps${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PY=${PY:-python3}
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

log "machine"
{ nvidia-smi; nvcc --version; $PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'; } > "$OUT/env.txt" 2>&1
grep -m1 -o 'NVIDIA H[0-9A-Za-z ]*' "$OUT/env.txt" | tee -a "$OUT/summary.txt"
grep -m1 'Driver Version' "$OUT/env.txt" | tee -a "$OUT/summary.txt"

log "tests"
for t in cuda engine cli philox if_scan attention synapse linear window data safetensors weights; do
    [ -x $B/tests/test_$t ] || continue
    timeout 300 $B/tests/test_$t -j1 --verbose > "$OUT/test_$t.log" 2>&1
    echo "test_$t: exit $? $(tail -n 1 "$OUT/test_$t.log")" | tee -a "$OUT/summary.txt"
done

log "compute-sanitizer on tests/data/tiny_bn (T=4, p=0.75, SNN and ANN)"
for tool in memcheck racecheck; do
    for mode in snn ann; do
        timeout 300 compute-sanitizer --tool $tool --error-exitcode 9 $B/mst run --device cuda --mode $mode \
            --model tests/data/tiny_bn.safetensors --timesteps 4 --mask-ratio 0.75 tests/data/tiny_bn_input.npy \
            > "$OUT/sanitizer_${tool}_$mode.log" 2>&1
        echo "$tool $mode: exit $? $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_${tool}_$mode.log")" | tee -a "$OUT/summary.txt"
    done
done

log "Swin-T shape"
$PY tools/make_model.py --arch swin-t --seed 0 --out "$OUT/swin_t.safetensors" > "$OUT/make_model.log" 2>&1 || cat "$OUT/make_model.log"
$PY -c "import numpy as np; np.save('$OUT/x64.npy', np.random.default_rng(1).standard_normal((64, 3, 224, 224), dtype=np.float32)); np.save('$OUT/x8.npy', np.random.default_rng(2).standard_normal((8, 3, 224, 224), dtype=np.float32))"
printf '%-5s %-5s %-5s %12s %12s %10s\n' T prec batch "images/s" "ms/image" "of floor" | tee -a "$OUT/summary.txt"
for T in 32 128; do
    floor=$($PY benchmarks/flops.py "$OUT/swin_t.safetensors" --timesteps $T | $PY -c 'import json,sys; print(json.load(sys.stdin)["floor_images_per_s"])')
    for p in fp32 fp16 bf16; do
        for batch in 64 1; do
            x=$OUT/x64.npy; [ $batch = 1 ] && x=$OUT/x8.npy
            timeout 300 $B/mst run --device cuda --precision $p --model "$OUT/swin_t.safetensors" --timesteps $T \
                --mask-ratio 0.75 --batch $batch --time-chunk 16 "$x" > "$OUT/swin_T${T}_${p}_b$batch.log" 2>&1
            rate=$(grep -o '[0-9.]* images/s' "$OUT/swin_T${T}_${p}_b$batch.log" | cut -d' ' -f1)
            if [ -n "$rate" ]; then
                printf '%-5s %-5s %-5s %12.2f %12.3f %9.1f%%\n' $T $p $batch "$rate" "$($PY -c "print(1000/$rate)")" \
                    "$($PY -c "print(100*$rate/$floor)")" | tee -a "$OUT/summary.txt"
            else
                echo "$T $p $batch: failed: $(tail -n 1 "$OUT/swin_T${T}_${p}_b$batch.log")" | tee -a "$OUT/summary.txt"
            fi
        done
    done
done
echo "(floor: dense bf16 at 790 TFLOP/s, benchmarks/flops.py; batch-1 rate includes the first, cold image)" | tee -a "$OUT/summary.txt"
cat "$OUT/summary.txt" > /dev/null

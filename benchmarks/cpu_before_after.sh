#!/bin/sh
# cpu_before_after.sh BEFORE_BUILD AFTER_BUILD [PORTABLE_BEFORE PORTABLE_AFTER]:
# mst bench on the CPU, two builds alternating in one run (the shipped model
# and the Swin-T shape, SNN twice, then ANN), then the portable builds, then
# the analog GEMM beside OpenBLAS. Each BUILD is a build folder holding `mst`
# (and, for AFTER, `bench_linear`). Raw output on stdout.
set -eu
[ $# -ge 2 ] || { echo "usage: cpu_before_after.sh BEFORE_BUILD AFTER_BUILD [PORTABLE_BEFORE PORTABLE_AFTER]" >&2; exit 2; }
cd "$(dirname "$0")/.."
snn() {
    echo "\$ mst bench --model weights/fmnist_p75.safetensors --timesteps 8 --batch 32 --mask-ratio 0.75 --iters 20"
    "$1/mst" bench --model weights/fmnist_p75.safetensors --timesteps 8 --batch 32 --mask-ratio 0.75 --iters 20 2>&1
    echo "\$ mst bench --arch swin-t --timesteps 4 --batch 2 --mask-ratio 0.75 --iters 3 --warmup 1"
    "$1/mst" bench --arch swin-t --timesteps 4 --batch 2 --mask-ratio 0.75 --iters 3 --warmup 1 2>&1
}
for rep in 1 2; do
    for b in "$1" "$2"; do
        echo "### $b rep $rep"
        snn "$b"
    done
done
for rep in 1 2 3; do
    for b in "$1" "$2"; do
        echo "### $b ANN rep $rep"
        echo "\$ mst bench --model weights/fmnist_p75.safetensors --mode ann --batch 32 --iters 20"
        "$b/mst" bench --model weights/fmnist_p75.safetensors --mode ann --batch 32 --iters 20 2>&1
        echo "\$ mst bench --arch swin-t --mode ann --batch 2 --iters 3 --warmup 1"
        "$b/mst" bench --arch swin-t --mode ann --batch 2 --iters 3 --warmup 1 2>&1
    done
done
if [ $# -ge 4 ]; then
    for b in "$3" "$4"; do
        echo "### $b (portable build)"
        snn "$b"
    done
fi
echo "### $2/bench_linear 10"
"$2/bench_linear" 10

#!/bin/sh
# Measures the numbers of weights/README.md (the model card) for the shipped
# models on the full Fashion-MNIST test set, and draws its plots:
#
#   tools/model_card.sh            (after building build/mst; about 20 minutes on 2 cores)
#
# writes weights/results/*.json (mst eval results files), weights/plots/*.png and
# weights/results/samples_*.json (the Python reference on the shipped images).
set -eu
cd "$(dirname "$0")/.."
MST=${MST:-build/mst}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
T=${T:-128}
mkdir -p weights/results weights/plots
for tag in p00 p50 p75; do
    model=weights/fmnist_$tag.safetensors
    ratio=$(case $tag in p00) echo 0 ;; p50) echo 0.5 ;; *) echo 0.75 ;; esac)
    "$MST" eval --model $model --data "$DATA" --mode ann --mask-ratio $ratio \
        --results-file weights/results/${tag}_ann.json
    "$MST" eval --model $model --data "$DATA" --timesteps $T --mask-ratio $ratio --stats \
        --report-steps 1,2,4,8,16,32,64,128 --results-file weights/results/${tag}_snn.json
    # inference at other masking ratios than the trained one (energy/accuracy
    # plot): T = 64 on the first 2000 test images
    for p in 0 0.25 0.5 0.75; do
        "$MST" eval --model $model --data "$DATA" --timesteps 64 --mask-ratio $p --stats --limit 2000 \
            --report-steps 64 --results-file weights/results/${tag}_sweep_$p.json >/dev/null
    done
    /usr/bin/python3 tools/reference_samples.py --model $model --samples weights/samples --timesteps 64 \
        --out weights/results/samples_$tag.json
done
/usr/bin/python3 tools/plots.py --out weights/plots weights/results/p00_snn.json weights/results/p50_snn.json \
    weights/results/p75_snn.json --ann weights/results/p00_ann.json weights/results/p50_ann.json weights/results/p75_ann.json
/usr/bin/python3 tools/plots.py --out weights/plots weights/results/p*_sweep_*.json

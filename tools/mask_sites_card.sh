#!/bin/sh
# The mask-site measurements of weights/README.md (where Random Spike Masking
# drops spikes, and what that saves):
#
#   tools/mask_sites_card.sh fmnist [TAG...]   the trained Fashion-MNIST models on the full test set
#                                              (TAG: p00 p75 p75_fc1 p75_all, default all four)
#   tools/mask_sites_card.sh swin-t    a Swin-T-shaped model (calibrated random weights), energy only
#
# Needs build/mst, and /usr/bin/python3 with Debian's python3-torch for the
# Swin-T checkpoint. Writes weights/results/sites_*.json, swint_*.json and
# the plots in weights/plots; tools/model_card_tables.py prints the tables.
set -eu
cd "$(dirname "$0")/.."
MST=${MST:-build/mst}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
R=weights/results
mkdir -p $R weights/plots

fmnist() {
    tags=${*:-p00 p75 p75_fc1 p75_all}
    # each model at the ratio and sites it was trained with, T = 128, energy by module
    for spec in "p00 0 q,k,attn" "p75 0.75 q,k,attn" "p75_fc1 0.75 q,k,attn,fc1" "p75_all 0.75 all"; do
        set -- $spec
        case " $tags " in *" $1 "*) ;; *) continue ;; esac
        "$MST" eval --model weights/fmnist_$1.safetensors --data "$DATA" --timesteps 128 --mask-ratio $2 \
            --mask-sites $3 --stats --report-steps 1,2,4,8,16,32,64,128 --results-file $R/sites_$1_snn.json
        [ -f $R/$1_ann.json ] && [ $1 != p75_fc1 ] && [ $1 != p75_all ] ||
            "$MST" eval --model weights/fmnist_$1.safetensors --data "$DATA" --mode ann --mask-ratio $2 \
                --mask-sites $3 --results-file $R/$1_ann.json
    done
}

swint() {
    # Swin-T's shape (the released checkpoints'), thresholds and BatchNorms
    # calibrated on random images; inference-time masking; T = 32, 2 images
    model=${TMPDIR:-/tmp}/mst_swin_t.safetensors
    input=${TMPDIR:-/tmp}/mst_swin_t_input.npy
    [ -f $model ] || /usr/bin/python3 tools/make_model.py --arch swin-t --seed 0 --out $model
    /usr/bin/python3 -c "import numpy as np; np.save('$input', np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32))"
    "$MST" run --model $model --timesteps 32 --mask-ratio 0 --stats --batch 2 --results-file $R/swint_none_0.json $input >/dev/null
    for sites in q,k,attn fc1 q,k,attn,fc1 all; do
        for p in 0.25 0.5 0.75; do
            "$MST" run --model $model --timesteps 32 --mask-ratio $p --mask-sites $sites --stats --batch 2 \
                --results-file $R/swint_${sites}_$p.json $input >/dev/null
        done
    done
}

case "${1:-}" in
fmnist) shift; fmnist "$@" ;;
swin-t) swint ;;
*) echo "usage: $0 fmnist|swin-t" >&2; exit 2 ;;
esac
# shellcheck disable=SC2046 # the file list
/usr/bin/python3 tools/plots.py --out weights/plots --sites $(ls $R/swint_*.json 2>/dev/null)

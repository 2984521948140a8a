#!/usr/bin/env python3
"""The model card's tables (markdown) from the results files tools/model_card.sh
writes, so that every number on the card comes from a command:

  /usr/bin/python3 tools/model_card_tables.py weights/results
"""
import json
import os
import sys


def load(d, name):
    with open(os.path.join(d, name)) as f:
        return json.load(f)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "weights/results"
    tags = [("p00", "fmnist_p00 (trained at p = 0)"), ("p50", "fmnist_p50 (trained at p = 0.5)"),
            ("p75", "fmnist_p75 (trained at p = 0.75)")]
    tags = [(t, name) for t, name in tags if os.path.exists(os.path.join(d, f"{t}_snn.json"))]
    snn = {t: load(d, f"{t}_snn.json") for t, _ in tags}
    ann = {t: load(d, f"{t}_ann.json") for t, _ in tags}
    steps = snn["p00"]["steps"]
    print("| model, run at its own p | ANN (QCFS) | " + " | ".join(f"T={s}" for s in steps) + " |")
    print("|---|---|" + "---|" * len(steps))
    for t, name in tags:
        print(f"| {name} | {ann[t]['top1']:.2f} | " + " | ".join(f"{v:.2f}" for v in snn[t]["step_top1"]) + " |")
    print()
    print("| model | p | SOPs / image | MACs / image | energy / image (mJ) | gap to ANN at T=64 | at T=128 |")
    print("|---|---|---|---|---|---|---|")
    for t, name in tags:
        e, r = snn[t]["energy"], snn[t]
        at = dict(zip(r["steps"], r["step_top1"]))
        print(f"| {name.split(' ')[0]} | {r['mask_ratio']:g} | {e['sops_per_image']:.4g} | {e['macs_per_image']:.4g} | "
              f"{e['energy_mj_per_image']:.4f} | {ann[t]['top1'] - at[64]:.2f} | {ann[t]['top1'] - at[128]:.2f} |")
    ratio = snn["p75"]["energy"]["energy_mj_per_image"] / snn["p00"]["energy"]["energy_mj_per_image"]
    sops = snn["p75"]["energy"]["sops_per_image"] / snn["p00"]["energy"]["sops_per_image"]
    print(f"\nenergy(p = 0.75 model) / energy(p = 0 model) = {ratio:.3f} (paper, CIFAR-10 Swin-T: 0.74); "
          f"SOPs alone: {sops:.3f}")
    print("\nInference-time masking sweep (T = 64, first 2000 test images):\n")
    tags = [(t, name) for t, name in tags if os.path.exists(os.path.join(d, f"{t}_sweep_0.json"))]
    print("| model | p at inference | top-1 | SOPs / image | energy / image (mJ) |")
    print("|---|---|---|---|---|")
    for t, name in tags:
        for p in ("0", "0.25", "0.5", "0.75"):
            r = load(d, f"{t}_sweep_{p}.json")
            print(f"| {name.split(' ')[0]} | {p} | {r['top1']:.2f} | {r['energy']['sops_per_image']:.4g} | "
                  f"{r['energy']['energy_mj_per_image']:.4f} |")


if __name__ == "__main__":
    main()

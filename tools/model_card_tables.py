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


def groups(e):
    """Energy per image (mJ) by module group, from a results file's "energy"."""
    out = {}
    for m in e["modules"]:
        if m["in_total"]:
            out[m["group"]] = out.get(m["group"], 0.0) + m["energy_mj"]
    return out


GROUPS = ("patch embedding", "attention", "MLP", "patch merging")


def sites_tables(d):
    """Trained with each mask-site set: accuracy, energy by module, reduction against the unmasked model."""
    runs = [("p00", "fmnist_p00", "none (p = 0)"), ("p75", "fmnist_p75", "q,k,attn at 0.75"),
            ("p75_fc1", "fmnist_p75_fc1", "q,k,attn,fc1 at 0.75"), ("p75_all", "fmnist_p75_all", "all at 0.75")]
    runs = [r for r in runs if os.path.exists(os.path.join(d, f"sites_{r[0]}_snn.json"))]
    if not runs:
        return
    snn = {t: load(d, f"sites_{t}_snn.json") for t, _, _ in runs}
    ann = {t: load(d, f"{t}_ann.json") if os.path.exists(os.path.join(d, f"{t}_ann.json")) else None
           for t, _, _ in runs}
    base = snn["p00"]["energy"]
    print("\nTrained and run with each mask-site set (full test set, top-1 in %, energy per image at T = 128):\n")
    print("| model | RSM (training = inference) | ANN | T=32 | T=64 | T=128 | SOPs / image | SOPs vs p00 | "
          + " | ".join(f"{g} (mJ)" for g in GROUPS) + " | energy (mJ) | energy vs p00 |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(GROUPS) + "---|---|")
    for t, name, rsm in runs:
        r, e = snn[t], snn[t]["energy"]
        at, g = dict(zip(r["steps"], r["step_top1"])), groups(e)
        a = f"{ann[t]['top1']:.2f}" if ann[t] else "not run"
        print(f"| {name} | {rsm} | {a} | {at[32]:.2f} | {at[64]:.2f} | {at[128]:.2f} | "
              f"{e['sops_per_image']:.4g} | {100 * (e['sops_per_image'] / base['sops_per_image'] - 1):+.1f} % | "
              + " | ".join(f"{g.get(k, 0):.4f}" for k in GROUPS)
              + f" | {e['energy_mj_per_image']:.4f} | {100 * (e['energy_mj_per_image'] / base['energy_mj_per_image'] - 1):+.1f} % |")
    print("\nThe paper (CIFAR-10, Swin-T, masks on the attention and the MLP at p = 0.75): top-1 97.29 % against"
          " 97.27 % unmasked (spec section 7), power figure 2.9 against 3.9: -26.8 %.")


def swint_table(d):
    """Swin-T shape, calibrated random weights, inference-time masking: energy only."""
    path = os.path.join(d, "swint_none_0.json")
    if not os.path.exists(path):
        return
    base = load(d, "swint_none_0.json")["energy"]
    print(f"\nSwin-T shape (calibrated random weights, 2 random images, T = {load(d, 'swint_none_0.json')['timesteps']}),"
          " masking at inference only; energy per image:\n")
    print("| mask sites | p | SOPs / image | " + " | ".join(f"{g} (mJ)" for g in GROUPS)
          + " | energy (mJ) | SOPs vs p = 0 | energy vs p = 0 |")
    print("|---|---|---|" + "---|" * len(GROUPS) + "---|---|---|")
    rows = [("none", "0", base)]
    for sites in ("q,k,attn", "fc1", "q,k,attn,fc1", "all"):
        for p in ("0.25", "0.5", "0.75"):
            f = os.path.join(d, f"swint_{sites}_{p}.json")
            if os.path.exists(f):
                rows.append((sites, p, load(d, f"swint_{sites}_{p}.json")["energy"]))
    for sites, p, e in rows:
        g = groups(e)
        print(f"| {sites} | {p} | {e['sops_per_image']:.4g} | " + " | ".join(f"{g.get(k, 0):.4f}" for k in GROUPS)
              + f" | {e['energy_mj_per_image']:.4f} | {100 * (e['sops_per_image'] / base['sops_per_image'] - 1):+.1f} % | "
              f"{100 * (e['energy_mj_per_image'] / base['energy_mj_per_image'] - 1):+.1f} % |")


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "weights/results"
    sites_tables(d)
    swint_table(d)
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

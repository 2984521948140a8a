#!/usr/bin/env python3
"""PNG plots from `mst eval --results-file X.json` files.

  /usr/bin/python3 tools/plots.py --out plots/ snn_p00.json snn_p75.json [--ann ann_p00.json ...]

* accuracy.png: SNN top-1 versus timestep for every results file that
  reports more than one step, with the
  ANN (QCFS) accuracy of the files given with --ann drawn as horizontal lines;
* masking.png (when one model's files differ in mask ratio and ran with
  --stats): final top-1 and energy per image versus the masking ratio, per model;
* sites.png (--sites: eval or `mst run --stats --results-file` files of one or
  more models at several ratios and mask sites): energy per image relative to
  the same model at p = 0, versus the ratio, one line per site set.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def label(r):
    return f"{os.path.basename(r['model'])}, p = {r['mask_ratio']:g}"


def accuracy(snn, ann, out):
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in snn:
        ax.plot(r["steps"], r["step_top1"], marker="o", label=f"SNN {label(r)}")
    for r in ann:
        ax.axhline(r["top1"], linestyle="--", color="gray", label=f"ANN (QCFS) {label(r)}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timestep T")
    ax.set_ylabel("top-1 (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy.png"), dpi=120)


def masking(snn, out):
    """One pair of lines per model: energy (left axis) and top-1 (right axis)
    against the masking ratio it was run at."""
    by_model = {}
    for r in snn:
        if "energy" in r:
            by_model.setdefault(os.path.basename(r["model"]), []).append(
                (r["mask_ratio"], r["top1"], r["energy"]["energy_mj_per_image"]))
    if not any(len({p for p, _, _ in rows}) > 1 for rows in by_model.values()):
        return False
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax2 = ax.twinx()
    for i, (name, rows) in enumerate(sorted(by_model.items())):
        rows.sort()
        ax.plot([p for p, _, _ in rows], [e for _, _, e in rows], marker="s", color=f"C{2 * i}",
                label=f"energy, {name}")
        ax2.plot([p for p, _, _ in rows], [a for _, a, _ in rows], marker="o", linestyle="--", color=f"C{2 * i + 1}",
                 label=f"top-1, {name}")
    ax.set_xlabel("masking ratio p at inference")
    ax.set_ylabel("energy per image (mJ)")
    ax2.set_ylabel("top-1 at the last step (%)")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="center left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "masking.png"), dpi=120)
    return True


def sites(files, out):
    by_model = {}
    for r in files:
        by_model.setdefault(os.path.basename(r["model"]), []).append(r)
    fig, axes = plt.subplots(1, len(by_model), figsize=(5.5 * len(by_model), 4), squeeze=False)
    for ax, (name, runs) in zip(axes[0], sorted(by_model.items())):
        base = [r for r in runs if r["mask_ratio"] == 0]
        if not base:
            raise SystemExit(f"plots: {name} has no run at p = 0 to compare with")
        e0 = base[0]["energy"]["energy_mj_per_image"]
        sets = sorted({r["mask_sites"] for r in runs if r["mask_ratio"] > 0}, key=lambda s: (len(s), s))
        for i, s in enumerate(sets):
            pts = sorted([(0.0, e0)] + [(r["mask_ratio"], r["energy"]["energy_mj_per_image"]) for r in runs
                                        if r["mask_sites"] == s and r["mask_ratio"] > 0])
            ax.plot([p for p, _ in pts], [100 * e / e0 for _, e in pts], marker="o", color=f"C{i}", label=s)
        ax.axhline(100 - 26.8, linestyle="--", color="gray", label="paper: -26.8 % at p = 0.75")
        ax.set_title(f"{name}: energy vs masking ratio", fontsize=9)
        ax.set_xlabel("masking ratio p at inference")
        ax.set_ylabel("energy per image (% of p = 0)")
        ax.grid(True, alpha=0.3)
        ax.legend(title="mask sites", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "sites.png"), dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="SNN results files")
    ap.add_argument("--ann", nargs="*", default=[], help="ANN (--mode ann) results files")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sites", action="store_true", help="the files are a mask-site sweep: draw sites.png only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.sites:
        sites([json.load(open(p)) for p in args.results], args.out)
        print(f"wrote {os.path.join(args.out, 'sites.png')}")
        return
    snn = [json.load(open(p)) for p in args.results]
    ann = [json.load(open(p)) for p in args.ann]
    curves = [r for r in snn if len(r["steps"]) > 1]
    if curves:
        accuracy(curves, ann, args.out)
    wrote = (["accuracy.png"] if curves else []) + (["masking.png"] if masking(snn, args.out) else [])
    print("wrote " + ", ".join(os.path.join(args.out, w) for w in wrote))


if __name__ == "__main__":
    main()

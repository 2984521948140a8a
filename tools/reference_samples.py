#!/usr/bin/env python3
"""The Python reference's per-image run on the shipped sample images: the
numbers the model card quotes and tests/test_weights.c checks `mst` against.

  /usr/bin/python3 tools/reference_samples.py --model weights/fmnist_p75.safetensors \\
      --samples weights/samples --timesteps 64 --out weights/results/samples_p75.json

Images are decoded by Pillow, resized and normalised as the checkpoint's
__metadata__ says (tools/train.py's preprocessing), taken in the order
`mst eval` takes them (class folders, then file names, both sorted), and run
through tools/mst_ref.py: the whole network once per timestep, masks from
Philox keyed by that order, at the sites the checkpoint's metadata names.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mst_ref  # noqa: E402


def samples(root):
    """(relative path, label) in mst's dataset order."""
    out = []
    for label, folder in enumerate(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            out.append((os.path.join(folder, name), label))
    return out


def preprocess(paths, meta):
    size = int(meta["img_size"])
    mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
    mode = "L" if len(mean) == 1 else "RGB"
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert(mode), dtype=np.float32).copy()) for p in paths])
    x = (x / 255.0).reshape(len(paths), -1, *x.shape[1:3]) if mode == "L" else (x / 255.0).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--timesteps", type=int, default=64)
    ap.add_argument("--mask-ratio", type=float, help="default: the checkpoint's own (its __metadata__ mask_ratio)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model, meta = mst_ref.load(args.model)
    ratio = args.mask_ratio if args.mask_ratio is not None else float(meta.get("mask_ratio", 0))
    sites = mst_ref.parse_mask_sites(meta.get("mask_sites", ",".join(mst_ref.DEFAULT_MASK_SITES)))
    items = samples(args.samples)
    x = preprocess([os.path.join(args.samples, p) for p, _ in items], meta)
    labels = torch.tensor([y for _, y in items])
    cum = mst_ref.run(model, x, mode="snn", timesteps=args.timesteps, mask_ratio=ratio, seed=args.seed,
                      mask_sites=sites)
    ann = mst_ref.run(model, x, mode="ann", mask_ratio=ratio, seed=args.seed, mask_sites=sites)[0]
    pred = cum.argmax(-1)  # [T, N]
    out = {"model": os.path.basename(args.model), "timesteps": args.timesteps, "mask_ratio": ratio,
           "mask_sites": ",".join(sites), "seed": args.seed,
           "images": [p for p, _ in items], "labels": labels.tolist(),
           "top1": [100.0 * (pred[t] == labels).float().mean().item() for t in range(args.timesteps)],
           "prediction_at_T": pred[-1].tolist(), "ann_top1": 100.0 * (ann.argmax(-1) == labels).float().mean().item(),
           "ann_prediction": ann.argmax(-1).tolist()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{args.out}: SNN top-1 at T={args.timesteps} {out['top1'][-1]:.1f} %, ANN {out['ann_top1']:.1f} %")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Convert an MST checkpoint (.pth: a bare state_dict, or a training checkpoint
with a `model` key) into a safetensors file `mst` loads, with __metadata__.

  python3 tools/convert_pth.py IN.pth OUT.safetensors --dataset imagenet
"""
import argparse
import json
import math
import re
import sys

import numpy as np

from mst_io import write_safetensors

NORMALISATION = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "cifar100": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
}
# ImageNet: shorter side to 256 (= floor(224 / 0.875)) with Pillow's bicubic,
# centre crop 224; CIFAR: the 32x32 image to 224 with Pillow's bilinear.
EVAL_TRANSFORM = {"imagenet": ("bicubic", "0.875"), "cifar10": ("bilinear", "1.0"), "cifar100": ("bilinear", "1.0")}
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def state_dict_of(ckpt):
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict) or "patch_embed.proj.weight" not in {k.replace("module.", "", 1) for k in ckpt}:
        raise SystemExit("convert_pth: no patch_embed.proj.weight: not an MST state_dict")
    return {k[7:] if k.startswith("module.") else k: v for k, v in ckpt.items()}


def infer_arch(sd):
    """The architecture summary stored in __metadata__ (the C loader infers it again)."""
    stages = sorted({int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.blocks\.0\.attn\.qkv", k))})
    arch = {"patch": sd["patch_embed.proj.weight"].shape[-1], "in_chans": sd["patch_embed.proj.weight"].shape[1],
            "embed_dim": sd["patch_embed.proj.weight"].shape[0], "depths": [], "heads": [], "window": [],
            "num_classes": sd["head.weight"].shape[0], "mlp_bn": "layers.0.blocks.0.mlp.norm1.weight" in sd}
    for s in stages:
        depth = len({k.split(".")[3] for k in sd if k.startswith(f"layers.{s}.blocks.")})
        table = sd[f"layers.{s}.blocks.0.attn.relative_position_bias_table"].shape
        arch["depths"].append(depth)
        arch["heads"].append(int(table[1]))
        arch["window"].append((int(math.isqrt(table[0])) + 1) // 2)
    return {k: (int(v) if isinstance(v, (np.integer,)) else v) for k, v in arch.items()}


def convert(sd, out, dataset=None, img_size=None, class_names=None, drop_buffers=False, dtype="f32", extra=None):
    tensors = {}
    for k, v in sd.items():
        if drop_buffers and k.endswith(("attn_mask", "relative_position_index", "num_batches_tracked")):
            continue
        a = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        if a.dtype.kind == "f":
            a = a.astype(np.float16 if dtype == "f16" else np.float32)
        tensors[k] = a
    meta = {"format": "mst", "arch": json.dumps(infer_arch(sd))}
    if img_size:
        meta["img_size"] = str(img_size)
    if dataset:
        meta["dataset"] = dataset
        if dataset in NORMALISATION:
            meta["mean"], meta["std"] = (json.dumps(x) for x in NORMALISATION[dataset])
        if dataset in EVAL_TRANSFORM:  # spec section 5, in timm's names
            meta["interpolation"], meta["crop_pct"] = EVAL_TRANSFORM[dataset]
    if class_names is None and dataset == "cifar10":
        class_names = CIFAR10
    if class_names:
        meta["class_names"] = json.dumps(class_names)
    meta.update(extra or {})
    bf16 = {k for k, a in tensors.items() if a.dtype == np.float32} if dtype == "bf16" else ()
    write_safetensors(out, tensors, meta, bf16=bf16)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--dataset", help="imagenet, cifar10, cifar100 or another name")
    ap.add_argument("--img-size", type=int, help="stored in __metadata__ (needed when attn_mask is absent)")
    ap.add_argument("--class-names", help="a text file, one class name per line")
    ap.add_argument("--drop-buffers", action="store_true", help="leave out attn_mask and index buffers")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    args = ap.parse_args()
    import torch

    ckpt = torch.load(args.input, map_location="cpu")
    names = open(args.class_names).read().split("\n") if args.class_names else None
    names = [n for n in names if n] if names else None
    convert(state_dict_of(ckpt), args.output, args.dataset, args.img_size, names, args.drop_buffers, args.dtype)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A calibrated random MST checkpoint of a named shape, for benchmarks and tests.

  /usr/bin/python3 tools/make_model.py --arch swin-t --seed 0 --out /tmp/swin_t.safetensors

Weights come from a seeded generator; BatchNorm statistics and IF thresholds
are calibrated on random images (mst_ref.calibrate) so that the spiking
network fires at realistic rates. Not a trained model: accuracy is meaningless.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_pth  # noqa: E402
import mst_ref  # noqa: E402

ARCHS = {
    # the released checkpoints' shape (ImageNet variant: MLP BatchNorm)
    "swin-t": dict(img_size=224, patch=4, in_chans=3, embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24),
                   window=7, mlp_ratio=4.0, num_classes=1000, mlp_bn=True),
    # a small member of the family (the shape issue 3 trains on 32x32 inputs)
    # many tokens, narrow channels: 16x16 = 256 tokens of 24 channels (the CPU-speed issue's shape)
    "tiny": dict(img_size=32, patch=2, in_chans=3, embed_dim=24, depths=(2, 2), heads=(2, 4),
                 window=4, mlp_ratio=4.0, num_classes=10, mlp_bn=True),
    "small": dict(img_size=32, patch=2, in_chans=3, embed_dim=48, depths=(2, 2, 2), heads=(3, 6, 12),
                  window=4, mlp_ratio=4.0, num_classes=10, mlp_bn=False),
}


def build(arch, seed, out, calib_images=2):
    """Writes the checkpoint to `out`; returns the torch model and its config."""
    cfg = ARCHS[arch] if arch in ARCHS else json.loads(arch)
    model = mst_ref.random_model(seed, **cfg)
    x = torch.randn(calib_images, cfg["in_chans"], cfg["img_size"], cfg["img_size"],
                    generator=torch.Generator().manual_seed(seed + 1))
    mst_ref.calibrate(model, x, seed=seed)
    convert_pth.convert(model.state_dict(), out, dataset="random", img_size=cfg["img_size"])
    return model, cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="swin-t", help=f"one of {', '.join(ARCHS)} or a JSON config")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib-images", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model, _ = build(args.arch, args.seed, args.out, args.calib_images)
    print(f"wrote {args.out}: {sum(p.numel() for p in model.parameters())} parameters", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Dense-equivalent work of one MST checkpoint: multiply-accumulates per image
and timestep (every matmul counted as if its spike operand were dense, the
way a GEMM runs it), and the floor that sets at a given matrix-product rate.

  python3 benchmarks/flops.py MODEL.safetensors [--timesteps T] [--tflops 790]

Swin-T (224x224): about 4.5 GMAC per step (design.md).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import mst_io  # noqa: E402


def image_size(t, meta, arch):
    """As mst infers it: __metadata__, else the first shifted block's attn_mask."""
    if "img_size" in meta:
        return int(meta["img_size"])
    mask = t.get("layers.0.blocks.1.attn_mask")
    if mask is None:
        raise SystemExit("no img_size in __metadata__ and no attn_mask: cannot tell the image size")
    return int(round(mask.shape[0] ** 0.5)) * arch["window"][0] * arch["patch"]


def macs_per_step(path):
    """(MACs per image-step of the time loop, MACs once per image: the patch embedding)."""
    t, meta = mst_io.read_safetensors(path)
    arch = json.loads(meta["arch"])
    P, C = arch["patch"], arch["embed_dim"]
    res = image_size(t, meta, arch) // P
    once = res * res * arch["in_chans"] * P * P * C
    per = 0
    for s, (depth, heads, window) in enumerate(zip(arch["depths"], arch["heads"], arch["window"])):
        n_t, hidden = res * res, t[f"layers.{s}.blocks.0.mlp.fc1.weight"].shape[0]
        n = min(window, res) ** 2
        per += depth * n_t * (3 * C * C + 2 * n * C + C * C + 2 * C * hidden)
        if f"layers.{s}.downsample.reduction.weight" in t:
            per += (res // 2) ** 2 * 4 * C * 2 * C
            res, C = res // 2, 2 * C
    per += C * arch["num_classes"]
    return per, once


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--timesteps", type=int, default=128)
    ap.add_argument("--tflops", type=float, default=790.0, help="matrix-product rate of the floor (H200 bf16, measured)")
    args = ap.parse_args()
    per, once = macs_per_step(args.model)
    flop = 2.0 * (per * args.timesteps + once)
    floor_s = flop / (args.tflops * 1e12)
    print(json.dumps({"macs_per_step": per, "macs_once": once, "timesteps": args.timesteps,
                      "flop_per_image": flop, "floor_ms_per_image": floor_s * 1e3,
                      "floor_images_per_s": 1.0 / floor_s, "tflops": args.tflops}))


if __name__ == "__main__":
    main()

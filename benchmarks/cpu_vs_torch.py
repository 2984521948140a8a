#!/usr/bin/env python3
"""mst against the PyTorch reference loop, side by side, same model/inputs/T.

  /usr/bin/python3 benchmarks/cpu_vs_torch.py [--arch swin-t --arch small] [--timesteps 8]

The baseline is tools/mst_ref.py run the way the authors' validation runs:
fp32, the whole network once per timestep, masks from torch's global RNG.
Both get this machine's cores; mst runs first, so the baseline's idle OpenMP
threads cannot spin against it. Agreement is checked on the first steps
against the reference with mst's own (Philox) masks.
Prints the FLOPs counted (dense, per the reference loop), each side's time,
the ratio, and the distance to the dense floor set by a measured sgemm rate.
"""
import argparse
import copy
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_model  # noqa: E402
import mst_ref  # noqa: E402


CHECK_STEPS = 4


def dense_flops_per_step(cfg):
    """FLOPs of one timestep of one image as the reference loop computes it."""
    P, C, res = cfg["patch"], cfg["embed_dim"], cfg["img_size"] // cfg["patch"]
    f = 2 * res * res * C * cfg["in_chans"] * P * P
    for i, depth in enumerate(cfg["depths"]):
        N, w = res * res, min(cfg["window"], res)
        hidden = int(C * cfg["mlp_ratio"])
        per_block = 2 * N * C * 3 * C + 2 * 2 * N * w * w * C + 2 * N * C * C + 2 * 2 * N * C * hidden
        f += depth * per_block
        if i < len(cfg["depths"]) - 1:
            f += 2 * (N // 4) * 4 * C * 2 * C
            res, C = res // 2, C * 2
    return f + 2 * C * cfg["num_classes"]


def sgemm_rate(n=2048, reps=5):
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - t)


def run_mst(model_path, input_path, out_path, T, p, seed, batch):
    cmd = [os.path.join(ROOT, "build", "mst"), "run", "--model", model_path, "--timesteps", str(T),
           "--mask-ratio", str(p), "--seed", str(seed), "--batch", str(batch), "--logits", out_path, input_path]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    compute = float(re.search(r"in ([0-9.]+) s", r.stderr).group(1))
    return compute, wall  # wall includes loading the model


def bench(arch, T, images, p, seed, batch, threads, tmp, floor_rate, repeat):
    path = os.path.join(tmp, f"{arch}.safetensors")
    model, cfg = make_model.build(arch, seed, path)
    x = torch.randn(images, cfg["in_chans"], cfg["img_size"], cfg["img_size"],
                    generator=torch.Generator().manual_seed(seed + 7))
    np.save(os.path.join(tmp, "x.npy"), x.numpy())
    t_mst = min(run_mst(path, os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy"), T, p, seed, batch)[0]
                for _ in range(repeat))
    got = np.load(os.path.join(tmp, "y.npy"))
    torch.set_num_threads(threads)
    t_ref = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        mst_ref.run(model, x, mode="snn", timesteps=T, mask_ratio=p, seed=seed, mask_rng="torch")
        t_ref = min(t_ref, time.perf_counter() - t)
    steps = min(T, CHECK_STEPS)
    ref = mst_ref.run(model, x, mode="snn", timesteps=steps, mask_ratio=p, seed=seed).numpy()
    dev = np.abs(got[:steps] - ref).max() / np.abs(ref).max()
    agree = (got[steps - 1].argmax(-1) == ref[-1].argmax(-1)).mean()
    # the yardstick: the same reference in float64, i.e. how far rounding alone moves this model
    ref64 = mst_ref.run(copy.deepcopy(model).double(), x.double(), mode="snn", timesteps=steps, mask_ratio=p,
                        seed=seed).numpy()
    dev64 = np.abs(ref - ref64).max() / np.abs(ref64).max()
    flops = dense_flops_per_step(cfg) * T * images
    floor = flops / floor_rate
    return dict(arch=arch, T=T, images=images, p=p, gflop=flops / 1e9, torch_s=t_ref, mst_s=t_mst,
                speedup=t_ref / t_mst, floor_s=floor, mst_vs_floor=t_mst / floor, dev=dev, agree=agree, dev64=dev64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", action="append", help="make_model.py names (default: swin-t and small)")
    ap.add_argument("--timesteps", type=int, default=8)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="each side's time is the best of this many runs")
    args = ap.parse_args()
    threads = len(os.sched_getaffinity(0))
    rate = sgemm_rate()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {threads} cores; measured sgemm (numpy/OpenBLAS, 2048^3): {rate / 1e9:.1f} GFLOP/s; "
          f"torch {torch.__version__} with {threads} threads")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch or ["swin-t", "small"]:
            rows.append(bench(arch, args.timesteps, args.images, args.mask_ratio, args.seed, args.batch, threads,
                              tmp, rate, args.repeat))
    print(f"\n{'model':8} {'T':>4} {'imgs':>4} {'GFLOP':>8} {'torch s':>9} {'mst s':>8} {'speedup':>8} "
          f"{'floor s':>8} {'mst/floor':>9} {'dev@' + str(CHECK_STEPS):>9} {'top1 agree':>10} {'ref f32/f64':>11}")
    for r in rows:
        print(f"{r['arch']:8} {r['T']:4d} {r['images']:4d} {r['gflop']:8.1f} {r['torch_s']:9.3f} {r['mst_s']:8.3f} "
              f"{r['speedup']:7.1f}x {r['floor_s']:8.3f} {r['mst_vs_floor']:9.2f} {r['dev']:9.2e} {r['agree']:10.2f} {r['dev64']:11.2e}")
    print("\nGFLOP: dense work of the reference loop (patch embedding every step). floor: GFLOP / measured sgemm "
          "rate. Times: best of --repeat runs; mst s is the engine time `mst run` reports (model load excluded). dev: max |mst - reference| / max "
          f"|reference| over the first {CHECK_STEPS} steps with identical masks; top1 agree at that step. ref f32/f64: the "
          "same deviation between the reference in float32 and in float64: what rounding alone does to this model.")


if __name__ == "__main__":
    main()

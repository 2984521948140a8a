#!/usr/bin/env python3
"""mst against the PyTorch reference loop, side by side in one run: same
weights, inputs, T, batch and device; batch-1 latency and batch-B throughput
of each, the ratios, the dense work counted and the floor mst bench measured.

  /usr/bin/python3 benchmarks/baseline/compare.py --model weights/fmnist_p75.safetensors --arch swin-t \\
      --timesteps 16 --batch 8 [--device cpu|cuda] [--precision fp32]

--model takes checkpoints (mst_ref.load reads them back); --arch builds one
with tools/make_model.py (seeded, calibrated random weights). mst's numbers
come from `mst bench --model` on the same file; the agreement check runs the
reference with mst's own (Philox) masks for a few steps.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)
import make_model  # noqa: E402
import mst_ref  # noqa: E402
import torch_loop  # noqa: E402

CHECK_STEPS = 4
MST = os.path.join(ROOT, "build", "mst")  # --mst


def mst_bench(path, T, p, batch, device, precision, iters, seed):
    out = os.path.join(tempfile.gettempdir(), f"mst-compare-{os.getpid()}.json")
    cmd = [MST, "bench", "--model", path, "--timesteps", str(T), "--mask-ratio", str(p),
           "--batch", str(batch), "--device", device, "--precision", precision, "--iters", str(iters), "--seed",
           str(seed), "--json", out]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(out) as f:
        r = json.load(f)
    os.unlink(out)
    return r


def agreement(path, model, x, T, p, seed, tmp):
    """max |mst - reference| / max |reference| over the first steps, identical masks."""
    steps = min(T, CHECK_STEPS)
    np.save(os.path.join(tmp, "x.npy"), x.numpy())
    y = os.path.join(tmp, "y.npy")
    subprocess.run([MST, "run", "--device", "cpu", "--model", path, "--timesteps",
                    str(steps), "--mask-ratio", str(p), "--seed", str(seed), "--logits", y, os.path.join(tmp, "x.npy")],
                   check=True, capture_output=True)
    ref = mst_ref.run(model.to("cpu"), x, mode="snn", timesteps=steps, mask_ratio=p, seed=seed).numpy()
    return float(np.abs(np.load(y) - ref).max() / np.abs(ref).max())


def one(name, path, model, cfg, args, tmp):
    x = torch.randn(max(args.batch, 8), cfg["in_chans"], cfg["img_size"], cfg["img_size"],
                    generator=torch.Generator().manual_seed(args.seed + 7))
    m = mst_bench(path, args.timesteps, args.mask_ratio, args.batch, args.device, args.precision, args.iters, args.seed)
    lat = torch_loop.latency(model, x, args.timesteps, args.mask_ratio, args.seed, args.device, args.baseline_iters)
    thr = torch_loop.throughput(model, x[:args.batch], args.timesteps, args.mask_ratio, args.seed, args.device)
    return dict(name=name, T=args.timesteps, B=args.batch, gflop=m["flop_per_image"] / 1e9,
                torch_ms=lat["p50"], mst_ms=m["latency_ms"]["p50"], torch_ips=thr, mst_ips=m["images_per_second"],
                floor_frac=m["floor_fraction"], floor=m["floor_flops"], device=m["device"],
                dev=agreement(path, model, x[:2], args.timesteps, args.mask_ratio, args.seed, tmp))


def main():
    global MST
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="a checkpoint (repeatable)")
    ap.add_argument("--arch", action="append", default=[], help="a tools/make_model.py shape (repeatable)")
    ap.add_argument("--timesteps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    ap.add_argument("--precision", default="fp32", help="mst's precision (the baseline is fp32)")
    ap.add_argument("--iters", type=int, default=10, help="mst bench's timed runs")
    ap.add_argument("--baseline-iters", type=int, default=3, help="the baseline's batch-1 queries")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mst", default=MST, help="the mst binary (default: build/mst)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    MST = args.mst
    torch.set_num_threads(args.threads)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "-"
    print(f"machine: {cpu}, {args.threads} threads; GPU: {gpu}; torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.model:
            model, _ = mst_ref.load(path)
            rows.append(one(os.path.basename(path), path, model, model.config, args, tmp))
        for arch in args.arch:
            path = os.path.join(tmp, f"{arch}.safetensors")
            model, cfg = make_model.build(arch, args.seed, path)
            rows.append(one(arch, path, model, cfg, args, tmp))
    print(f"\n{'model':24} {'T':>4} {'B':>3} {'GFLOP/img':>9} | {'batch-1 p50 ms':>23} {'ratio':>6} | "
          f"{'images/s at batch B':>23} {'ratio':>6} | {'mst/floor':>9} {'dev@' + str(CHECK_STEPS):>9}")
    print(f"{'':24} {'':>4} {'':>3} {'':>9} | {'torch':>11} {'mst':>11} {'':>6} | {'torch':>11} {'mst':>11} {'':>6} |")
    for r in rows:
        print(f"{r['name']:24} {r['T']:4d} {r['B']:3d} {r['gflop']:9.3f} | {r['torch_ms']:11.2f} {r['mst_ms']:11.2f} "
              f"{r['torch_ms'] / r['mst_ms']:5.1f}x | {r['torch_ips']:11.2f} {r['mst_ips']:11.2f} "
              f"{r['mst_ips'] / r['torch_ips']:5.1f}x | {100 * r['floor_frac']:8.2f}% {r['dev']:9.2e}")
    print(f"\nmst on {rows[0]['device'] if rows else '?'}; floor: the matrix-product rate mst bench measured "
          f"({rows[0]['floor'] / 1e9 if rows else 0:.1f} GFLOP/s). GFLOP/img: dense-equivalent work at T. dev: max "
          f"|mst - reference| / max |reference| over the first {CHECK_STEPS} steps with identical masks.")


if __name__ == "__main__":
    main()

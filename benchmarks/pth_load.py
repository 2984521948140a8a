#!/usr/bin/env python3
"""Opening a Swin-T-shaped MST checkpoint: `mst info` on the .pth (zip, CRC-32
of every entry, unpickling, contiguous copies) and on the safetensors that
`mst convert` writes from it, against torch.load of the same .pth, in one run.
The floor is the bytes each must touch at the machine's measured copy rate.

  /usr/bin/python3 benchmarks/pth_load.py [build/mst] [--repeat 5]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import mst_ref  # noqa: E402


def checkpoint(path):
    """The authors' training checkpoint: model, AdamW state (two moments per
    parameter), scheduler, config stand-in. Thresholds at 1 (untrained)."""
    torch.manual_seed(0)
    model = mst_ref.MST()  # Swin-T: 224, embed 96, depths 2-2-6-2, 1000 classes
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": {"last_epoch": 300},
                "max_accuracy": 80.5, "epoch": 300, "config": {"MODEL": {"TYPE": "swin"}}}, path)
    return sum(v.numel() * v.element_size() for v in model.state_dict().values())


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def copy_rate():
    """A STREAM-like copy of 256 MiB: bytes read + written per second."""
    a = np.ones(1 << 26, dtype=np.float32)
    b = np.empty_like(a)
    t = best(lambda: np.copyto(b, a), 5)
    return 2 * a.nbytes / t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mst", nargs="?", default="build/mst")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    with tempfile.TemporaryDirectory() as tmp:
        pth, st = os.path.join(tmp, "mst_imagenet_p0.pth"), os.path.join(tmp, "mst_imagenet_p0.safetensors")
        model_bytes = checkpoint(pth)
        subprocess.run([args.mst, "convert", pth, st], check=True, capture_output=True)
        file_bytes, st_bytes = os.path.getsize(pth), os.path.getsize(st)
        mst_info = lambda f: subprocess.run([args.mst, "info", "--model", f], check=True, capture_output=True)  # noqa
        rate = copy_rate()
        rows = [
            # what, seconds, bytes it must touch: the model's storages read for their CRC-32, then copied
            # out (read + write); the optimizer's are never touched
            ("mst info, .pth", best(lambda: mst_info(pth), args.repeat), 3 * model_bytes),
            ("mst info, safetensors", best(lambda: mst_info(st), args.repeat), st_bytes),
            # torch.load copies every storage, the optimizer's too, and builds no model
            ("torch.load, .pth", best(lambda: torch.load(pth, map_location="cpu"), args.repeat), 2 * file_bytes),
        ]
    print(f"checkpoint: {file_bytes / 1e6:.1f} MB .pth (model {model_bytes / 1e6:.1f} MB + optimizer), "
          f"{st_bytes / 1e6:.1f} MB safetensors; copy rate {rate / 1e9:.2f} GB/s; best of {args.repeat}; "
          f"torch {torch.__version__}, {os.cpu_count()} threads")
    print("| what | seconds | bytes touched | floor (s) | share of floor |")
    print("|---|---|---|---|---|")
    for what, t, b in rows:
        print(f"| {what} | {t:.3f} | {b / 1e6:.0f} MB | {b / rate:.3f} | {b / rate / t:.0%} |")


if __name__ == "__main__":
    main()

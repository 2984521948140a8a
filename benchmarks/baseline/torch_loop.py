"""The baseline: tools/mst_ref.py run the way the authors' snn_validate runs
it: fp32, the whole network once per timestep, masks from torch's global
RNG, on the CPU or a CUDA device."""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import mst_ref  # noqa: E402


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(model, x, T, p, seed, device):
    out = mst_ref.run(model, x.to(device), mode="snn", timesteps=T, mask_ratio=p, seed=seed, mask_rng="torch")
    _sync(device)
    return out


def throughput(model, x, T, p, seed, device, repeat=2):
    """Images per second over the batch x, best of `repeat` after one warm-up step."""
    model.to(device)
    run(model, x[:1], 1, p, seed, device)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        run(model, x, T, p, seed, device)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def latency(model, x, T, p, seed, device, iters=5):
    """Batch-1 wall time per image (ms): p50, p90, p99, mean over `iters`."""
    model.to(device)
    run(model, x[:1], 1, p, seed, device)
    t = []
    for i in range(iters):
        t0 = time.perf_counter()
        run(model, x[i % len(x):i % len(x) + 1], T, p, seed, device)
        t.append((time.perf_counter() - t0) * 1e3)
    return {k: float(np.percentile(t, q)) for k, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {"mean": float(np.mean(t))}

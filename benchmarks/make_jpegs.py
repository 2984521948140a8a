#!/usr/bin/env python3
"""ImageNet-sized JPEGs for the input-pipeline benchmark: N variations (crops,
flips, colour shifts, JPEG quality 75-95, mostly 500x375 like the validation
set's typical image, some portrait and odd sizes, a few grayscale) of the
public-domain photograph in python-matplotlib-data, in `classes` folders.

  /usr/bin/python3 benchmarks/make_jpegs.py --count 200 --out /tmp/jpegs
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageOps

PHOTO = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    photo = Image.open(PHOTO).convert("RGB")
    sizes = [(500, 375)] * 6 + [(375, 500), (500, 333), (640, 480), (333, 500), (497, 351)]
    for i in range(args.count):
        w, h = sizes[rng.integers(len(sizes))]
        x0, y0 = rng.integers(0, 80, 2)
        img = photo.crop((int(x0), int(y0), int(x0) + 420, int(y0) + 500)).resize((w, h), Image.BICUBIC)
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        a = np.asarray(img, dtype=np.float32) * rng.uniform(0.7, 1.2, 3) + rng.normal(0, 3, (h, w, 3))
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        if i % 25 == 7:
            img = img.convert("L")
        folder = os.path.join(args.out, f"class_{i % args.classes}")
        os.makedirs(folder, exist_ok=True)
        img.save(os.path.join(folder, f"img_{i:05d}.jpg"), quality=int(rng.integers(75, 96)))
    print(f"wrote {args.count} JPEGs under {args.out}")


if __name__ == "__main__":
    main()

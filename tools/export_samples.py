#!/usr/bin/env python3
"""Writes the first N Fashion-MNIST test images of each class as PNG files,
one folder per class, named so that sorted order is label order:

  /usr/bin/python3 tools/export_samples.py --per-class 10 --out weights/samples

(`mst eval --data weights/samples` then evaluates them.)
"""
import argparse
import os
import re
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    x, y = train.load("test")
    for label, name in enumerate(train.CLASSES):
        folder = os.path.join(args.out, f"{label}_{re.sub(r'[^A-Za-z0-9]+', '-', name)}")
        os.makedirs(folder, exist_ok=True)
        for index in (y == label).nonzero()[:args.per_class, 0].tolist():
            Image.fromarray(x[index].numpy(), mode="L").save(os.path.join(folder, f"t10k-{index:05d}.png"))
    print(f"wrote {args.per_class} images per class under {args.out}")


if __name__ == "__main__":
    main()

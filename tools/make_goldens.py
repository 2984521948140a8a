#!/usr/bin/env python3
"""Writes the test models and the golden logits the C tests compare against.

  /usr/bin/python3 tools/make_goldens.py        (Debian's python3-torch)

Two small calibrated random models of the MST family go through the real
conversion path (.pth -> tools/convert_pth.py -> safetensors); the reference
loop in mst_ref.py then writes per-step cumulative logits for SNN and ANN
mode, masking 0 and 0.75. A third, 1-channel model and the first 16
Fashion-MNIST test images preprocessed in Python serve the eval tests (needs
the Debian package dataset-fashion-mnist).
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_pth  # noqa: E402
import mst_ref  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
T, N, SEED = 16, 4, 1234

MODELS = {
    # ImageNet variant (MLP BatchNorm); stage 1 shifted, stage 2 at res 4 == window: no shift
    "tiny_bn": dict(img_size=32, patch=2, in_chans=3, embed_dim=16, depths=(2, 2, 2), heads=(1, 2, 4),
                    window=4, mlp_ratio=3.0, num_classes=10, mlp_bn=True),
    # CIFAR variant (no MLP BatchNorm); odd window 7 (shift 3), stage 1 at res 7 == window
    "tiny_nobn": dict(img_size=28, patch=2, in_chans=3, embed_dim=12, depths=(2, 3), heads=(2, 3),
                      window=7, mlp_ratio=2.0, num_classes=7, mlp_bn=False),
}


def build(name, cfg, seed):
    torch.manual_seed(seed)
    model = mst_ref.random_model(seed, **cfg)
    x = torch.randn(N, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    mst_ref.calibrate(model, x, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        pth = os.path.join(tmp, "model.pth")
        # one as a training checkpoint, one as a bare state_dict: both are accepted
        torch.save({"model": model.state_dict(), "epoch": 1} if cfg["mlp_bn"] else model.state_dict(), pth)
        sd = convert_pth.state_dict_of(torch.load(pth, map_location="cpu"))
    # tiny_nobn drops the attn_mask buffers: its image size comes from __metadata__
    convert_pth.convert(sd, os.path.join(OUT, f"{name}.safetensors"), dataset="test",
                        img_size=None if cfg["mlp_bn"] else cfg["img_size"], drop_buffers=not cfg["mlp_bn"])
    np.save(os.path.join(OUT, f"{name}_input.npy"), x.numpy())
    return model, x


def fashion_mnist_fixtures():
    """A 1-channel model with Fashion-MNIST metadata, and the first 16 test
    images preprocessed as tools/train.py does (for the eval and transform tests)."""
    import train
    x, _ = train.load("test")
    inputs = train.preprocess(x[:16])
    np.save(os.path.join(OUT, "fmnist16_input.npy"), inputs.numpy())
    cfg = dict(img_size=32, patch=2, in_chans=1, embed_dim=16, depths=(2, 2), heads=(2, 4), window=4, mlp_ratio=2.0,
               num_classes=10, mlp_bn=False)
    model = mst_ref.random_model(200, **cfg)
    mst_ref.calibrate(model, inputs, seed=200)
    convert_pth.convert(model.state_dict(), os.path.join(OUT, "tiny_gray.safetensors"), dataset="fashion-mnist",
                        class_names=train.CLASSES,
                        extra={"mean": json.dumps([train.MEAN]), "std": json.dumps([train.STD]), "resize": "bilinear"})


def image_fixtures():
    """Small PNG and JPEG files in gray, RGB, RGBA, palette and CMYK, with the
    pixels Pillow decodes them to (convert("L") for gray files, else "RGB"),
    and broken files for the error paths."""
    from PIL import Image

    out = os.path.join(OUT, "images")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)
    specs = [("gray.png", "L", (13, 7), {}), ("rgb.png", "RGB", (9, 11), {}), ("rgba.png", "RGBA", (8, 5), {}),
             ("palette.png", "P", (6, 6), {}), ("gray.jpg", "L", (17, 9), {"quality": 90}),
             ("rgb.jpg", "RGB", (23, 15), {"quality": 90}), ("cmyk.jpg", "CMYK", (10, 12), {"quality": 95})]
    for name, mode, (w, h), kw in specs:
        bands = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "CMYK": 4}[mode]
        a = rng.integers(0, 256, size=(h, w, bands), dtype=np.uint8)
        a[: h // 2] //= 4  # some smooth, some busy content
        img = Image.fromarray(a[:, :, 0] if bands == 1 else a, mode="L" if mode == "P" else mode)
        if mode == "P":
            img = img.convert("P")
        img.save(os.path.join(out, name), **kw)
        back = Image.open(os.path.join(out, name))
        pix = np.asarray(back.convert("L" if back.mode == "L" else "RGB"), dtype=np.float32)
        np.save(os.path.join(out, name + ".npy"), pix.reshape(h, w, -1))
    with open(os.path.join(out, "rgb.jpg"), "rb") as f:
        jpg = f.read()
    with open(os.path.join(out, "truncated.jpg"), "wb") as f:
        f.write(jpg[: len(jpg) * 4 // 5])  # cut inside the entropy-coded data
    with open(os.path.join(out, "corrupt.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 100, dtype=np.uint8)))
    open(os.path.join(out, "empty.png"), "wb").close()


def main():
    os.makedirs(OUT, exist_ok=True)
    image_fixtures()
    fashion_mnist_fixtures()
    for i, (name, cfg) in enumerate(MODELS.items()):
        model, x = build(name, cfg, 100 + i)
        for mode in ("snn", "ann"):
            for p in (0.0, 0.75):
                out = mst_ref.run(model, x, mode=mode, timesteps=T, mask_ratio=p, seed=SEED)
                tag = f"{name}_{mode}_p{int(p * 100):02d}"
                np.save(os.path.join(OUT, f"{tag}.npy"), out.numpy().astype(np.float32))
                rates = [s.spikes / max(s.neurons, 1) for s in model.sites()] if mode == "snn" else []
                if mode == "snn":  # spikes and neuron-steps per IF site, for the energy-accounting test
                    counts = {n: [m.spikes, m.neurons] for n, m in model.named_modules() if isinstance(m, mst_ref.IFSite)}
                    with open(os.path.join(OUT, f"{tag}_spikes.json"), "w") as f:
                        json.dump(counts, f, indent=0)
                pred = out[-1].argmax(-1).tolist()
                print(f"{tag}: shape {tuple(out.shape)}, predictions {pred}"
                      + (f", firing rate {np.mean(rates):.3f}" if rates else ""))


if __name__ == "__main__":
    main()

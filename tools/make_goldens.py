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
    # junk before the SOS marker: libjpeg warns, Pillow decodes it all the same
    at = jpg.index(b"\xff\xda")
    with open(os.path.join(out, "extraneous.jpg"), "wb") as f:
        f.write(jpg[:at] + b"\x00\x17\x00" + jpg[at:])
    pix = np.asarray(Image.open(os.path.join(out, "extraneous.jpg")).convert("RGB"), dtype=np.float32)
    np.save(os.path.join(out, "extraneous.jpg.npy"), pix)
    with open(os.path.join(out, "corrupt.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 100, dtype=np.uint8)))
    open(os.path.join(out, "empty.png"), "wb").close()


PHOTO = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"  # Debian: python-matplotlib-data


def transform_fixtures():
    """Images for the eval-transform test and what Pillow + torchvision make of
    them (Resize(floor(size / crop_pct)) + CenterCrop(size), before ToTensor),
    saved as PNG; cases.json lists them. A real photograph (PHOTO, public
    domain), gray, CMYK and ImageNet-sized JPEGs made from it, and generated
    images of odd sizes, down- and upscaled."""
    import math

    import torchvision.transforms as T
    from PIL import Image

    out = os.path.join(OUT, "transforms")
    os.makedirs(out, exist_ok=True)
    photo = Image.open(PHOTO)
    photo.convert("L").save(os.path.join(out, "photo_gray.jpg"), quality=85)
    photo.resize((300, 256)).convert("CMYK").save(os.path.join(out, "photo_cmyk.jpg"), quality=90)
    photo.resize((500, 375)).save(os.path.join(out, "photo_500x375.jpg"), quality=90, progressive=True)
    rng = np.random.default_rng(9)
    for name, (h, w, c) in {"odd_gray.png": (53, 37, 1), "odd_rgb.png": (77, 131, 3), "cifar.png": (32, 32, 3)}.items():
        smooth = np.cumsum(np.cumsum(rng.normal(0, 4, (h, w, c)), 0), 1)
        a = np.clip(128 + smooth - smooth.mean() + rng.normal(0, 12, (h, w, c)), 0, 255).astype(np.uint8)
        Image.fromarray(a[:, :, 0] if c == 1 else a).save(os.path.join(out, name))
    cases = [(PHOTO, "RGB", 224, 0.875, "bicubic"), ("photo_gray.jpg", "RGB", 96, 0.875, "bicubic"),
             ("photo_cmyk.jpg", "RGB", 96, 0.9, "bicubic"), ("photo_500x375.jpg", "RGB", 224, 0.875, "bicubic"),
             ("photo_500x375.jpg", "L", 64, 0.95, "bilinear"), ("odd_gray.png", "L", 64, 1.0, "bilinear"),
             ("odd_rgb.png", "RGB", 48, 0.875, "bicubic"), ("odd_rgb.png", "RGB", 100, 0.5, "bilinear"),
             ("cifar.png", "RGB", 224, 1.0, "bilinear")]
    listed = []
    for i, (name, mode, size, crop, interp) in enumerate(cases):
        mode_i = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}[interp]
        tf = T.Compose([T.Resize(int(math.floor(size / crop)), interpolation=mode_i), T.CenterCrop(size)])
        img = Image.open(name if os.path.isabs(name) else os.path.join(out, name)).convert(mode)
        golden = f"golden_{i}.png"
        tf(img).save(os.path.join(out, golden))
        listed.append({"file": name, "channels": 1 if mode == "L" else 3, "size": size, "crop_pct": crop,
                       "interpolation": interp, "golden": golden})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(listed, f, indent=1)


# (mode, masking ratio, mask sites): the released code's sites at 0 and 0.75,
# and the MLP's sites (spec section 4b) alone and with all the others
RUNS = [(mode, p, "q,k,attn") for mode in ("snn", "ann") for p in (0.0, 0.75)] + \
       [("snn", 0.75, "fc1"), ("snn", 0.75, "fc2"), ("snn", 0.75, "all"), ("ann", 0.75, "all")]


def main():
    torch.set_num_threads(1)  # calibration's reductions round differently on more threads
    os.makedirs(OUT, exist_ok=True)
    image_fixtures()
    transform_fixtures()
    fashion_mnist_fixtures()
    for i, (name, cfg) in enumerate(MODELS.items()):
        model, x = build(name, cfg, 100 + i)
        for mode, p, sites in RUNS:
            out = mst_ref.run(model, x, mode=mode, timesteps=T, mask_ratio=p, seed=SEED,
                              mask_sites=mst_ref.parse_mask_sites(sites))
            tag = f"{name}_{mode}_p{int(p * 100):02d}" + ("" if sites == "q,k,attn" else f"_{sites}")
            np.save(os.path.join(OUT, f"{tag}.npy"), out.numpy().astype(np.float32))
            rates = [s.spikes / max(s.neurons, 1) for s in model.sites()] if mode == "snn" else []
            if mode == "snn":  # spikes and neuron-steps per IF site, for the energy-accounting test
                counts = {n: [m.spikes, m.neurons] for n, m in model.named_modules() if isinstance(m, mst_ref.IFSite)}
                with open(os.path.join(OUT, f"{tag}_spikes.json"), "w") as f:
                    json.dump(counts, f, indent=0)
                if sites != "q,k,attn":  # spikes into fc1 and fc2 after masking
                    mlp_in = {f"{n}.{j}": getattr(m, f"{j}_in") for n, m in model.named_modules()
                              if isinstance(m, mst_ref.Mlp) for j in ("fc1", "fc2")}
                    with open(os.path.join(OUT, f"{tag}_mlp_in.json"), "w") as f:
                        json.dump(mlp_in, f, indent=0)
            pred = out[-1].argmax(-1).tolist()
            print(f"{tag}: shape {tuple(out.shape)}, predictions {pred}"
                  + (f", firing rate {np.mean(rates):.3f}" if rates else ""))


if __name__ == "__main__":
    main()

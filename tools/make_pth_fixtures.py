#!/usr/bin/env python3
"""Writes tests/data/pth/: small checkpoints written by torch.save in the
forms a .pth takes (the authors' training checkpoint, a bare state_dict,
fp16, non-contiguous views, nn.DataParallel's prefix), what
tools/convert_pth.py makes of each (the tests compare `mst run` and
`mst convert` against them), and hostile files: pickles that would run code,
lying zip containers, broken tensor records. torch is needed to run this,
not the tests:

  /usr/bin/python3 tools/make_pth_fixtures.py      (torch, numpy, yacs: tools/requirements.txt)
"""
import collections
import io
import os
import pickle
import shutil
import struct
import sys
import types
import zipfile
import zlib

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_pth  # noqa: E402
import mst_ref  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "pth")
SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus", "pickle")
CONFIG = dict(img_size=16, patch=2, in_chans=3, embed_dim=8, depths=(2, 2), heads=(1, 2), window=4, mlp_ratio=2.0,
              num_classes=10, mlp_bn=True)


def path(name):
    return os.path.join(OUT, name)


def model_and_input():
    torch.manual_seed(7)
    model = mst_ref.random_model(7, **CONFIG)
    x = torch.randn(2, 3, 16, 16)
    mst_ref.calibrate(model, x, seed=7)
    np.save(path("input.npy"), x.numpy())
    return model


def training_checkpoint(model, sd):
    """What the authors' utils.save_checkpoint writes (Swin's training code)."""
    from yacs.config import CfgNode
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    config = CfgNode({"MODEL": CfgNode({"TYPE": "swin", "NAME": "mst_tiny"}), "DATA": CfgNode({"IMG_SIZE": 16})})
    return {"model": sd, "optimizer": opt.state_dict(),
            "lr_scheduler": {"t_initial": 300, "last_epoch": 3, "base_values": [1e-3]},
            "max_accuracy": np.float64(12.5),  # a numpy scalar: numpy's globals, opaque to mst
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 10},
            "epoch": 3, "config": config}


def noncontiguous(sd):
    """The same values through views: a transpose, a column slice of a wider
    storage, and two tensors sharing one storage at different offsets."""
    sd = collections.OrderedDict(sd)
    w = sd["layers.0.blocks.0.attn.qkv.weight"]
    sd["layers.0.blocks.0.attn.qkv.weight"] = w.t().contiguous().t()
    f = sd["layers.0.blocks.1.mlp.fc1.weight"]
    wide = torch.zeros(f.shape[0], f.shape[1] + 3)
    wide[:, :f.shape[1]] = f
    sd["layers.0.blocks.1.mlp.fc1.weight"] = wide[:, :f.shape[1]]
    hw, hb = sd["head.weight"], sd["head.bias"]
    both = torch.cat([hb, hw.reshape(-1)])
    sd["head.bias"], sd["head.weight"] = both[:hb.numel()], both[hb.numel():].view(hw.shape)
    assert not sd["layers.0.blocks.0.attn.qkv.weight"].is_contiguous()
    assert not sd["layers.0.blocks.1.mlp.fc1.weight"].is_contiguous()
    return sd


def good_fixtures(model):
    sd = model.state_dict()
    fixtures = {
        # (file, state or checkpoint, --dataset for convert_pth.py; the C side takes it from the name or the flag)
        "tiny_cifar10.pth": (sd, "cifar10"),
        "tiny_train_ckpt.pth": (training_checkpoint(model, sd), "imagenet"),
        "tiny_fp16.pth": (collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items()),
                          None),
        "tiny_views.pth": (noncontiguous(sd), "test"),
        "tiny_dataparallel.pth": ({"model": collections.OrderedDict(("module." + k, v) for k, v in sd.items())}, None),
    }
    for name, (obj, dataset) in fixtures.items():
        torch.save(obj, path(name))
        ckpt = torch.load(path(name), map_location="cpu")
        convert_pth.convert(convert_pth.state_dict_of(ckpt), path(name.replace(".pth", ".safetensors")), dataset)
    return sd


# ---- hostile pickles ---------------------------------------------------------

class Runs:
    """Pickles as a call of `fn(*args)`: what a hostile checkpoint embeds."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def arbitrary_class():
    """An instance of a class from a module mst has never heard of."""
    mod = types.ModuleType("payload")
    exec("class Gadget:\n    def __init__(self, cmd):\n        self.cmd = cmd\n    def __reduce__(self):\n"
         "        return (Gadget, (self.cmd,))\n", mod.__dict__)
    sys.modules["payload"] = mod
    return mod.Gadget("touch /tmp/mst-pwned")


def hostile_pickles(sd):
    def with_entry(value):  # the error must come at the entry, whatever surrounds it
        return collections.OrderedDict([("patch_embed.proj.weight", sd["patch_embed.proj.weight"]), ("head.bias", value)])
    torch.save(with_entry(Runs(os.system, "touch /tmp/mst-pwned")), path("evil_os_system.pth"))
    torch.save(with_entry(Runs(eval, "__import__('os').system('touch /tmp/mst-pwned')")), path("evil_eval.pth"))
    torch.save(with_entry(arbitrary_class()), path("evil_reduce_class.pth"))
    torch.save(Runs(os.system, "touch /tmp/mst-pwned"), path("evil_root.pth"))
    # beside the model, where nothing reads it: the checkpoint loads
    torch.save({"model": sd, "config": Runs(os.system, "touch /tmp/mst-pwned")}, path("evil_unused.pth"))


# ---- hand-made containers ------------------------------------------------------

def storage_record(key, numel, kind="FloatStorage", location="cpu"):
    """A persistent id as torch.save writes it."""
    return ("storage", getattr(torch, kind), key, location, numel)


class Tensor:
    """_rebuild_tensor_v2(storage, offset, size, stride, ...) with any arguments."""

    def __init__(self, key, numel, offset, size, stride, kind="FloatStorage", location="cpu"):
        self.record, self.args = storage_record(key, numel, kind, location), (offset, size, stride)

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.record, *self.args, False, collections.OrderedDict())


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj if isinstance(obj, tuple) and obj and obj[0] == "storage" else None


def data_pkl(obj):
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_zip(name, pkl, storages, extra=(), compress=zipfile.ZIP_STORED):
    entries = [("archive/data.pkl", pkl)] + [(f"archive/data/{k}", d) for k, d in storages.items()] + list(extra) + \
        [("archive/version", "3\n")]
    with zipfile.ZipFile(path(name), "w") as z:
        for entry, data in entries:  # a fixed timestamp: the same bytes on every run
            z.writestr(zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=compress)


def one_tensor(tensor):
    return data_pkl(collections.OrderedDict([("x", tensor)]))


def strided_views():
    """Views the C reader must copy in row-major order, from storages saved on
    a GPU: t[i][j] = 2 + i + 3 j (float32), h = [[0, 1], [2, 3]] read with
    strides (1, 2) (float16), and a 0-d tensor."""
    pkl = data_pkl(collections.OrderedDict([
        ("t", Tensor("0", 16, 2, (3, 4), (1, 3), location="cuda:0")),
        ("h", Tensor("1", 4, 0, (2, 2), (1, 2), kind="HalfStorage", location="cuda:1")),
        ("scalar", Tensor("0", 16, 5, (), ())),
    ]))
    write_zip("strided_views.pth", pkl, {"0": np.arange(16, dtype="<f4").tobytes(),
                                         "1": np.arange(4, dtype="<f2").tobytes()})


def broken_records():
    sixteen = {"0": np.arange(16, dtype="<f4").tobytes()}
    write_zip("bad_offset.pth", one_tensor(Tensor("0", 16, 16, (1,), (1,))), sixteen)
    write_zip("bad_stride.pth", one_tensor(Tensor("0", 16, 0, (4, 4), (5, 1))), sixteen)
    write_zip("bad_size_overflow.pth", one_tensor(Tensor("0", 16, 0, (1 << 40, 1 << 40), (1, 1))), sixteen)
    write_zip("bad_expanded.pth", one_tensor(Tensor("0", 16, 0, (1 << 20, 16), (0, 1))), sixteen)
    write_zip("bad_storage_size.pth", one_tensor(Tensor("0", 64, 0, (64,), (1,))), sixteen)
    write_zip("bad_storage_missing.pth", one_tensor(Tensor("7", 16, 0, (16,), (1,))), sixteen)
    write_zip("bad_storage_type.pth", one_tensor(Tensor("0", 8, 0, (8,), (1,), kind="ComplexFloatStorage")), sixteen)
    write_zip("bad_big_endian.pth", one_tensor(Tensor("0", 16, 0, (16,), (1,))), sixteen,
              extra=[("archive/byteorder", "big")])
    write_zip("bad_memo.pth", b"\x80\x02h\x05.", {})
    write_zip("bad_stack.pth", b"\x80\x02R.", {})
    write_zip("bad_opcode.pth", b"\x80\x02\xff.", {})
    write_zip("bad_no_stop.pth", b"\x80\x02}q\x00", {})
    write_zip("bad_not_dict.pth", data_pkl([1, 2, 3]), {})
    write_zip("bad_deflated.pth", one_tensor(Tensor("0", 16, 0, (16,), (1,))), sixteen, compress=zipfile.ZIP_DEFLATED)
    write_zip("bad_dotdot.pth", one_tensor(Tensor("0", 16, 0, (16,), (1,))), sixteen,
              extra=[("archive/../../../tmp/mst-pwned", "x")])


def lying_central_directory(src, dst, grow):
    """The central directory's sizes of data.pkl moved by `grow` bytes."""
    raw = bytearray(open(src, "rb").read())
    at = raw.rfind(b"PK\x01\x02", 0, raw.rfind(b"PK\x05\x06"))
    while at >= 0 and not raw[at + 46:at + 46 + struct.unpack_from("<H", raw, at + 28)[0]].endswith(b"data.pkl"):
        at = raw.rfind(b"PK\x01\x02", 0, at)
    size = struct.unpack_from("<I", raw, at + 20)[0]
    struct.pack_into("<II", raw, at + 20, size + grow, size + grow)
    open(path(dst), "wb").write(raw)


def overlapping_entries():
    """Entry b's local header and data lie inside entry a's data: both CRCs
    hold, and one byte range would be read as two entries."""
    def local(name, data):
        return struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                           len(name), 0) + name + data

    def central(name, data, offset):
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                           len(name), 0, 0, 0, 0, 0, offset) + name
    pkl = one_tensor(Tensor("0", 4, 0, (4,), (1,)))
    inner = local(b"archive/data/0", np.arange(4, dtype="<f4").tobytes())
    a = local(b"archive/data.pkl", pkl + inner)
    body = a + b""
    b_offset = len(a) - len(inner)
    cd = central(b"archive/data.pkl", pkl + inner, 0) + central(b"archive/data/0", np.arange(4, dtype="<f4").tobytes(),
                                                               b_offset)
    end = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 2, 2, len(cd), len(body), 0)
    open(path("bad_overlap.pth"), "wb").write(body + cd + end)


def pickle_seeds():
    """Every fixture's data.pkl, for the fuzz_pickle target (tests/fuzz)."""
    shutil.rmtree(SEEDS, ignore_errors=True)
    os.makedirs(SEEDS)
    for f in sorted(os.listdir(OUT)):
        if f.endswith(".pth") and zipfile.is_zipfile(path(f)):
            try:
                with zipfile.ZipFile(path(f)) as z:
                    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                    data = z.read(pkl)
            except (zipfile.BadZipFile, StopIteration, zlib.error, NotImplementedError):
                continue
            if len(data) <= 64 << 10:  # big seeds only slow the fuzzer down
                open(os.path.join(SEEDS, f.replace(".pth", ".pkl")), "wb").write(data)


def zip64_everywhere(src, dst):
    """src's entries rewritten with every size and offset in a zip64 extra
    field (32-bit fields all ones) and zip64 end records, as torch writes
    entries over 4 GiB: the reader must take the real values from there."""
    with zipfile.ZipFile(path(src)) as z:
        entries = [(i.filename.encode(), z.read(i)) for i in z.infolist()]
    body, cd = b"", b""
    for name, data in entries:
        offset, crc = len(body), zlib.crc32(data)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        body += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name),
                            len(extra)) + name + extra + data
        cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name),
                          len(cextra), 0, 0, 0, 0, 0xFFFFFFFF) + name + cextra
    n = len(entries)
    end64 = struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, n, n, len(cd), len(body))
    locator = struct.pack("<IIQI", 0x07064b50, 0, len(body) + len(cd), 1)
    end = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    open(path(dst), "wb").write(body + cd + end64 + locator + end)


def repeated_views():
    """One 16 KiB storage viewed whole by 2000 entries: 32 MB of copies from
    a file of about 100 KB."""
    sd = collections.OrderedDict((f"v{i}", Tensor("0", 4096, 0, (4096,), (1,))) for i in range(2000))
    write_zip("bad_repeated_views.pth", data_pkl(sd), {"0": np.zeros(4096, dtype="<f4").tobytes()})


def main():
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model = model_and_input()
    sd = good_fixtures(model)
    hostile_pickles(sd)
    broken_records()
    strided_views()
    zip64_everywhere("strided_views.pth", "zip64_strided_views.pth")
    repeated_views()
    lying_central_directory(path("tiny_cifar10.pth"), "bad_cd_smaller.pth", -8)
    lying_central_directory(path("tiny_cifar10.pth"), "bad_cd_larger.pth", 1 << 20)
    overlapping_entries()
    # (the legacy format keys storages by id(): this one file differs on every run)
    torch.save({"x": torch.zeros(1)}, path("legacy_format.pth"), _use_new_zipfile_serialization=False)
    pickle_seeds()
    for f in sorted(os.listdir(OUT)):
        print(f"{f}: {os.path.getsize(path(f))} bytes")


if __name__ == "__main__":
    main()

"""safetensors writing (the format is tiny: u64 header length, JSON, data)."""
import json
import struct

import numpy as np

DTYPES = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64",
          np.dtype("float64"): "F64", np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}


def bf16_bytes(a):
    """float32 -> bfloat16 bytes, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def write_safetensors(path, tensors, metadata=None, bf16=()):
    """tensors: name -> numpy array; names in `bf16` are stored as BF16."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])  # not ascontiguousarray: it makes a 0-d tensor 1-d
        a = a if a.flags.c_contiguous else np.ascontiguousarray(a)
        if name in bf16:
            blob, dtype = bf16_bytes(a), "BF16"
        else:
            blob, dtype = a.astype(a.dtype.newbyteorder("<")).tobytes(), DTYPES[a.dtype]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    """(name -> numpy array, __metadata__ dict) of a safetensors file; BF16 widened to float32."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        blob = raw[8 + n + a:8 + n + b]
        if e["dtype"] == "BF16":
            arr = (np.frombuffer(blob, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(blob, dtype=np.dtype(NP_DTYPES[e["dtype"]]).newbyteorder("<"))
        tensors[name] = arr.reshape(e["shape"]).copy()
    return tensors, meta

#!/usr/bin/env python3
"""A performance model of mst's CUDA kernels that can be checked: each
kernel's time on an H200 at the Swin-T shape (224 px, T = 128, batch 64, time
chunk 16, bf16), from the bytes and FLOPs it moves and the instructions its
hot loop issues per element, read from the SASS of the built kernels (so the
model follows the code), then a table by kernel and the images/s it implies.

  python3 benchmarks/gpu_model.py [--build build] [--sass-json FILE] [--write-sass FILE]
                                  [--path two-kernel|wgmma] [--batch 64] [--timesteps 128]

SASS comes from `cuobjdump -sass` over the build's CUDA objects ($CUOBJDUMP,
PATH, /usr/local/cuda/bin, or the nvidia-cuda-cuobjdump and -nvdisasm wheels pinned in
tools/requirements.txt), or from a JSON that an earlier run wrote with
--write-sass (benchmarks/gpu-pack.sh writes one beside the GPU build, so the
GPU machine needs no disassembler). benchmarks/gpu-check.sh prints this
prediction beside the measurement: the first GPU run calibrates it.

Each kernel's time is the largest of three floors, plus nothing for launches
(a CUDA graph replays the chunk):
  bytes / 4.3 TB/s (the device-to-device copy rate measured on an H200),
  FLOPs / 788 TFLOP/s (the bf16 product measured on random data),
  warp instructions / (132 SMs x 4 schedulers x 1.98 GHz), one instruction per
  scheduler per clock: the issue floor, reached only with enough warps in flight.
Instructions per element are the longest path through the kernel's hot loop
(the innermost loop holding a signature instruction, e.g. the ballot of the
IF scan), divided by the elements one iteration covers. A model, not a
measurement: where it and gpu-check disagree, the measurement wins and the
constants here are what to revisit.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys

# The H200's ceilings (measured on one, see the device notes in the README).
HBM = 4.3e12
BF16 = 788e12
ISSUE = 132 * 4 * 1.98e9  # warp instructions per second

# Swin-T: (tokens per side, channels, depth, heads) per stage; window 7.
STAGES = [(56, 96, 2, 3), (28, 192, 2, 6), (14, 384, 6, 12), (7, 768, 2, 24)]
WINDOW = 7

# kernel -> (function name pattern, [(signature instruction of the hot loop,
#            elements each one stands for, an instruction the loop must not
#            hold)], tried in order); elements are what the model counts:
#            neuron-steps, inputs, scores, multiply-adds. The later choices
#            read older kernels (the table before this model's changes).
KERNELS = {
    # IF kernels by <output, transform>: 0 = bits, 2 = residual fold, 3 = fold and the next site; 1 = affine,
    # 2 = bias (if_scan.cuh)
    "if_scan": (r"if_scan_kernel(ILi0ELi2EE|\d)", [("VOTE", 1, None)]),  # after a GEMM: a ballot a neuron-step
    "if_scan.affine": (r"if_scan_kernel(ILi0ELi1EE|\d)", [("VOTE", 1, None)]),  # sc1, sc2 (BatchNorm in)
    "if_scan.fold": (r"if_scan_kernelILi2ELi2EE", [("STG", 1, None)]),  # into the residual stream: a store each
    "if_scan.fold_next": (r"if_scan_kernelILi3ELi2EE", [("VOTE", 1, None)]),  # and the next site's ballot
    "unpack": (r"unpack_kernelI13__nv_bfloat16", [("STG.E.128", 8, None), ("STG.E.U16", 1, None)]),
    # window attention, per loop iteration (the model counts warp passes over a unit's work, attention_model)
    "attention.scores": (r"window_attention_kernel(ILb1E|\d)", [("POPC", 1, None, "FSET")]),  # the IF_attn step inside
    # softmax . v: the SNN loop (fused multiply-adds: v is 0 or 1), else any
    "attention.softmax_v": (r"window_attention_kernel(ILb1E|\d)", [("LDS.128", 1, None, "FFMA"), ("LDS.128", 1, None),
                                                         ("FMUL", 1, "POPC")]),
    "residual": (r"residual_kernel", [("STG", 1, None)]),
    "wgmma.epilogue": (r"synapse_wgmma_kernelI13__nv_bfloat16Li0E", [("VOTE", 1, None)]),  # one neuron-step
    "wgmma.mainloop": (r"synapse_wgmma_kernelI13__nv_bfloat16Li0E", [("HGMMA", 1 / 8, None)]),  # 8 a 64-input slot
    "wgmma.epilogue_fold": (r"synapse_wgmma_kernelI13__nv_bfloat16Li2E", [("STG", 1, None)]),
    "wgmma.epilogue_fold_next": (r"synapse_wgmma_kernelI13__nv_bfloat16Li3E", [("VOTE", 1, None)]),
}


def find_cuobjdump():
    for c in [os.environ.get("CUOBJDUMP"), shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump"]:
        if c and os.path.exists(c):
            return c
    try:  # the wheel of tools/requirements.txt
        import nvidia.cu13  # noqa: F401
        for p in nvidia.cu13.__path__:
            c = os.path.join(p, "bin", "cuobjdump")
            if os.path.exists(c):
                return c
    except ImportError:
        pass
    sys.exit("gpu_model.py: no cuobjdump (install the CUDA toolkit's, or pip install -r tools/requirements.txt, "
             "or pass --sass-json)")


LINE = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")


def read_sass(objects, cuobjdump):
    """{function: [(addr, predicated, opcode, operands)]} of the sm_90/sm_90a code."""
    funcs = {}
    for obj in objects:
        out = subprocess.run([cuobjdump, "-sass", obj], capture_output=True, text=True).stdout
        arch, name = None, None
        for line in out.splitlines():
            if "arch = " in line:
                arch = line.split("arch = ")[1].strip()
            elif "Function : " in line:
                name = line.split("Function : ")[1].strip()
                if arch and arch.startswith("sm_90"):
                    funcs[name] = []
                else:
                    name = None
            elif name:
                m = LINE.match(line)
                if m:
                    funcs[name].append((int(m.group(1), 16), bool(m.group(2)), m.group(3), m.group(4).strip()))
    return funcs


def main_end(code):
    """Where the kernel's own body ends: its first unpredicated EXIT. Past it
    lie out-of-line paths (divergent warp collectives, division
    subroutines) whose jumps back are not loops."""
    for addr, pred, op, _ in code:
        if op == "EXIT" and not pred:
            return addr
    return code[-1][0]


def loops(code):
    """(start, end) address pairs of the body's backward branches."""
    out, stop = [], main_end(code)
    for addr, _, op, args in code:
        if op.startswith("BRA") and addr < stop:
            t = re.search(r"0x([0-9a-f]+)", args)
            if t and int(t.group(1), 16) < addr:
                out.append((int(t.group(1), 16), addr))
    return out


def longest_path(code, start, end, sig):
    """The instructions on the forward path from start to the branch at end
    with the most signature instructions, the longest of those (an if/else
    counts its longer side unless the other holds the signature, as the
    variant a run takes does; an inner loop, one pass)."""
    def key(path):
        return (sum(op.startswith(sig) for op in path), len(path))

    body = [i for i in code if start <= i[0] <= end]
    addrs = [i[0] for i in body]
    best = {start: []}
    for k, (addr, pred, op, args) in enumerate(body):
        if addr not in best:
            continue
        path = best[addr] + ([] if op == "NOP" else [op])
        if addr == end:
            return path
        nxt = addrs[k + 1] if k + 1 < len(addrs) else None
        target = None
        if op.startswith("BRA"):
            t = re.search(r"0x([0-9a-f]+)", args)
            target = int(t.group(1), 16) if t else None
        for to, taken in [(target, target is not None and addr < target <= end),
                          (nxt, nxt is not None and not (op == "BRA" and not pred) and not (op == "EXIT" and not pred))]:
            if taken and (to not in best or key(path) > key(best[to])):
                best[to] = path
    return max(best.values(), key=key)


def per_element(funcs):
    """kernel -> instructions per element (thread level), with the loop used:
    the longest path through the innermost loop that holds the kernel's
    signature instruction, over the elements that path covers (its count of
    signature instructions, which follows the compiler's unrolling, times the
    elements each stands for)."""
    out = {}
    for kernel, (pattern, choices) in KERNELS.items():
        names = [f for f in funcs if re.search(pattern, f)]
        if not names:
            continue
        code = funcs[names[0]]
        for choice in choices:
            sig, per_sig, exclude = choice[:3]
            also = choice[3] if len(choice) > 3 else None  # an instruction the loop must hold too
            cands = []
            for s, e in loops(code):
                ops = [i[2] for i in code if s <= i[0] <= e]
                if any(o.startswith(sig) for o in ops) and not (exclude and any(o.startswith(exclude) for o in ops)) \
                        and not (also and not any(o.startswith(also) for o in ops)):
                    cands.append((e - s, s, e))
            if not cands:
                continue
            _, s, e = min(cands)
            path = longest_path(code, s, e, sig)
            sigs = sum(op.startswith(sig) for op in path)
            if sigs:
                out[kernel] = {"function": names[0], "loop": [hex(s), hex(e)], "instructions": len(path),
                               "signature": sig, "signatures": sigs, "per_element": len(path) / (sigs * per_sig)}
                break
    return out


def site_rows(B, steps):
    """Per block of each stage: (tokens over batch and steps, C, heads, side, last block of its stage)."""
    for res, C, depth, heads in STAGES:
        for b in range(depth):
            yield res * res * B * steps, C, heads, res, b == depth - 1


def softmax_queries():
    """Queries per thread in softmax . v (SOFTMAX_Q in kernels/cuda/attention.cu)."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels", "cuda", "attention.cu")
    m = re.search(r"#define SOFTMAX_Q (\d+)", open(src).read())
    return int(m.group(1)) if m else 1


def attention_warp_passes(ipe, d):
    """Warp instructions of one (image-step, window, head) unit of 128
    threads: each phase's loop iterations spread over warps of 32 (a warp
    with one live lane costs a whole pass), times the iteration's longest
    path. Scores: one iteration per 4 scores (a Philox group), a popcount
    per 32 channels inside; softmax . v: an iteration per as many keys as
    it loads float4 of v, for a block of queries x 4 channels."""
    n, q = WINDOW * WINDOW, softmax_queries()
    ceil = lambda a, b: -(-a // b)
    per = ipe["attention.scores"]["signatures"]  # scores an iteration covers (one popcount each at d <= 32)
    score = ceil(ceil(n * n, 4), 32) * ceil(4, per) * ipe["attention.scores"]["instructions"] * ceil(d, 32)
    items = ceil(n, q) * ceil(d, 4) if ipe["attention.softmax_v"]["signature"] == "LDS.128" else n * d
    keys = ipe["attention.softmax_v"]["signatures"]  # a float4 of v, or one multiply, per key
    soft = ceil(items, 32) * ceil(n, keys) * ipe["attention.softmax_v"]["instructions"]
    return score + soft


def model(ipe, B, steps, path):
    """Seconds per chunk of `steps` steps for each kernel family."""
    t = {}

    def add(name, byts, flops, instr):
        """instr: thread instructions"""
        secs = max(byts / HBM, flops / BF16, instr / 32 / ISSUE)
        row = t.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        row[0] += secs
        row[1] += byts
        row[2] += flops
        row[3] += instr

    ifi = ipe["if_scan"]["per_element"]
    fold = "if_scan.fold" in ipe  # proj and fc2 add into the residual stream themselves
    nxt = "if_scan.fold_next" in ipe  # ... and fire sc2 / the next block's sc1 (not after a stage's last block)
    for M, C, heads, res, last in site_rows(B, steps):
        # IF sites on analog inputs (floats in, bits out): attn_v always; sc1 and sc2 where no fold runs them
        sites = 1 + (0 if nxt else 2) + (1 if nxt and last else 0)
        for _ in range(sites):
            add("if_scan (sc1, attn_v, sc2)", M * C * 4 + M * C / 8, 0, M * C * ipe["if_scan.affine"]["per_element"])
        # spike-fed synapses: qkv (3C, bits out), proj (C, into the residual stream), fc1 (4C, bits), fc2 (C
        # from 4C, into the residual stream). Older builds wrote proj and fc2 as floats, then a residual kernel.
        for K, N, bits, next_site in [(C, 3 * C, True, False), (C, C, False, nxt), (C, 4 * C, True, False),
                                      (4 * C, C, False, nxt and not last)]:
            out = M * N / 8 if bits else M * N * (8 if fold else 4) + (M * N / 8 if next_site else 0)
            if path == "wgmma":
                kind = "wgmma.epilogue" if bits else "wgmma.epilogue_fold_next" if next_site else "wgmma.epilogue_fold"
                epi = ipe[kind]["per_element"] * M * N
                slots = M / (8 * 16) * ((N + 63) // 64) * ((K + 63) // 64)  # tiles of 8 tokens x 16 steps
                main = ipe["wgmma.mainloop"]["per_element"] * slots * 128
                add("wgmma synapse", M * K / 8 + out, 2 * M * K * N, epi + main)
            else:
                add("unpack", M * K / 8 + M * K * 2, 0, M * K * ipe["unpack"]["per_element"])
                add("cuBLAS GEMM", M * K * 2 + M * N * 4 + K * N * 2, 2 * M * K * N, 0)
                kind = "if_scan" if bits or not fold else "if_scan.fold_next" if next_site else "if_scan.fold"
                add("if_scan (after GEMM)", M * N * 4 + out, 0, M * N * ipe[kind]["per_element"])
            if not bits and not fold:
                add("residuals", M * C * 12, 0, M * C * ipe["residual"]["per_element"])
        units = M / (res * res) * (res // WINDOW) ** 2 * heads
        add("window attention", M * 3 * C / 8 + M * C * 4, 0, units * 32 * attention_warp_passes(ipe, C // heads))
    # the rest, memory-bound: the patch embedding's IF site (its input is the same every step, float
    # spikes out into the residual stream), each patch merging (a gather of 2x2 tokens, the reduction
    # from floats converted to bf16, its IF site writing the next stage's x), the final LayerNorm + mean
    first = STAGES[0]
    M0 = first[0] ** 2 * B * steps
    add("patch embedding, merging, head", M0 * first[1] * 8, 0, 0)
    for (res, C, _, _), nxt in zip(STAGES[:-1], STAGES[1:]):
        Mm = (res // 2) ** 2 * B * steps
        gather = Mm * 4 * C * 8  # read x, write the 4C patches
        reduce_ = Mm * 4 * C * (4 + 2 + 2) + Mm * 2 * C * 4  # convert to bf16, read it, write the 2C floats
        site = Mm * 2 * C * 8  # the IF site: floats in, scaled spikes out as the new x
        add("patch embedding, merging, head", gather + reduce_ + site, 2 * Mm * 4 * C * 2 * C, 0)
    last = STAGES[-1]
    add("patch embedding, merging, head", last[0] ** 2 * B * steps * last[1] * 4, 0, 0)
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="a CMake build folder with the CUDA objects")
    ap.add_argument("--objects", nargs="*", help="object files or binaries to disassemble instead")
    ap.add_argument("--sass-json", help="instructions per element from an earlier --write-sass")
    ap.add_argument("--write-sass", help="write the instructions per element read here")
    ap.add_argument("--path", choices=["two-kernel", "wgmma"], default="two-kernel")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--timesteps", type=int, default=128)
    ap.add_argument("--time-chunk", type=int, default=16)
    ap.add_argument("--json", help="write the table as JSON")
    args = ap.parse_args()
    if args.sass_json:
        ipe = json.load(open(args.sass_json))
    else:
        objs = args.objects or sorted(glob.glob(os.path.join(args.build, "CMakeFiles", "mst*.dir", "kernels", "cuda", "*.o")))
        if not objs:
            sys.exit("gpu_model.py: no CUDA objects under %s (build with the CUDA toolkit, or pass --objects)" % args.build)
        ipe = per_element(read_sass(objs, find_cuobjdump()))
    if args.write_sass:
        json.dump(ipe, open(args.write_sass, "w"), indent=1)
    need = ["if_scan", "if_scan.affine", "residual", "attention.scores", "attention.softmax_v"] + (
        ["wgmma.epilogue", "wgmma.mainloop", "wgmma.epilogue_fold", "wgmma.epilogue_fold_next"] if args.path == "wgmma"
        else ["unpack"])
    missing = [k for k in need if k not in ipe]
    if missing:
        sys.exit("gpu_model.py: no hot loop found for %s in the SASS" % ", ".join(missing))
    B, T, Tc = args.batch, args.timesteps, args.time_chunk
    t = model(ipe, B, Tc, args.path)
    image_steps = B * Tc
    total = sum(r[0] for r in t.values())
    flop_image = 2 * 4.5e9 * T  # design.md: ~4.5 GMAC per step
    floor = flop_image / BF16
    print("kernel model, Swin-T 224 px, T=%d, batch %d, chunk %d, bf16, %s path (H200: %.1f TB/s, %.0f TFLOP/s, "
          "issue %.2e warp-instr/s)" % (T, B, Tc, args.path, HBM / 1e12, BF16 / 1e12, ISSUE))
    print("%-28s %12s %10s %10s %12s  %s" % ("kernel", "us/img-step", "MB/img-st", "GFLOP/i-s", "instr/i-s", "bound"))
    rows = {}
    for name, (secs, byts, flops, instr) in sorted(t.items(), key=lambda kv: -kv[1][0]):
        bound = max([("memory", byts / HBM), ("tensor", flops / BF16), ("issue", instr / 32 / ISSUE)], key=lambda x: x[1])[0]
        us = secs / image_steps * 1e6
        rows[name] = {"us_per_image_step": us, "bytes": byts / image_steps, "flops": flops / image_steps,
                      "instructions": instr / image_steps, "bound": bound}
        print("%-28s %12.2f %10.2f %10.2f %12.3g  %s" % (name, us, byts / image_steps / 1e6, flops / image_steps / 1e9,
                                                         instr / image_steps, bound))
    for k, v in sorted(ipe.items()):
        print("  SASS %-20s %4d instructions, %2d %s, in loop %s-%s of %s: %.2f per element" %
              (k, v["instructions"], v["signatures"], v["signature"], v["loop"][0], v["loop"][1], v["function"][:40],
               v["per_element"]))
    per_image = total / image_steps * T
    ips = 1.0 / per_image
    print("predicted: %.0f images/s, %.0f %% of the bf16 floor (Swin-T, T=%d, batch %d)" %
          (ips, 100 * floor / per_image, T, B))
    if args.json:
        json.dump({"path": args.path, "kernels": rows, "sass": ipe, "images_per_second": ips,
                   "floor_fraction": floor / per_image}, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()

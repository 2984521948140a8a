"""Reference Masked Spiking Transformer in PyTorch, run the slow way.

The model is the paper's converted Swin Transformer with the authors' state_dict
key names (spec section 1). SNN mode runs the whole network once per timestep,
as the authors' validation loop does; ANN mode is the QCFS network. Random Spike
Masking draws its masks from Philox4x32-10 keyed as spec section 4 says, so the
C engine can reproduce them bit for bit. Written from ../shared/spec, not copied.
"""
import json
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

QCFS_LEVELS = 16
M32 = np.uint64(0xFFFFFFFF)


# ---------------------------------------------------------------- Philox / RSM

def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Random123's philox4x32-10 on uint64 arrays holding 32-bit words."""
    c0, c1, c2, c3 = (np.asarray(x, dtype=np.uint64) for x in (c0, c1, c2, c3))
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & M32
            k1 = (k1 + np.uint64(0xBB67AE85)) & M32
        p0 = c0 * np.uint64(0xD2511F53)
        p1 = c2 * np.uint64(0xCD9E8D57)
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & M32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & M32)
    return c0, c1, c2, c3


def curand_raw(seed, subsequences, count):
    """What curand_init(seed, sub, o) + curand() gives for o in [0, count),
    for each subsequence: uint64 array [len(subsequences), count]."""
    sub = np.asarray(subsequences, dtype=np.uint64)[:, None]
    blocks = np.arange((count + 3) // 4, dtype=np.uint64)[None, :]
    sub, blocks = np.broadcast_arrays(sub, blocks)
    out = philox4x32_10(blocks & M32, blocks >> np.uint64(32), sub & M32, sub >> np.uint64(32),
                        seed & 0xFFFFFFFF, seed >> 32)
    return np.stack(out, axis=-1).reshape(len(sub), -1)[:, :count]


# Where RSM may drop spikes (spec sections 4 and 4b): the released code masks
# the attention's q, k and scores; the paper's Figure 2e also the MLP's inputs.
MASK_SITES = ("q", "k", "attn", "fc1", "fc2")
DEFAULT_MASK_SITES = ("q", "k", "attn")


def parse_mask_sites(text):
    """'q,k,attn,fc1' or 'all' -> a tuple of site names in MASK_SITES order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return MASK_SITES
    bad = [n for n in names if n not in MASK_SITES]
    if bad or not names:
        raise ValueError(f"mask site {bad[0] if bad else repr(text)} is not one of {', '.join(MASK_SITES)} or all")
    return tuple(n for n in MASK_SITES if n in names)


class SpikeMasks:
    """RSM keep masks: a pure function of (seed, image index, site, t, element)."""

    def __init__(self, seed, ratio, sites=DEFAULT_MASK_SITES):
        self.seed, self.ratio, self.sites = int(seed), float(ratio), tuple(sites)
        self.threshold = 0 if ratio <= 0 else min(int(math.floor(ratio * 2.0**32)), 2**32)
        self.images = np.zeros(1, dtype=np.uint64)
        self.t = 0

    def keep(self, name, site, shape, device):
        """[B, *shape] of 0/1 for the batch's images, canonical element order;
        all ones where site kind `name` is not masked."""
        if self.threshold == 0 or name not in self.sites:
            return torch.ones((), device=device)
        subs = (self.images.astype(np.uint64) << np.uint64(32)) | np.uint64((site << 16) | self.t)
        raw = curand_raw(self.seed, subs, int(np.prod(shape)))
        keep = (raw >= np.uint64(self.threshold)).astype(np.float32)
        return torch.from_numpy(keep.reshape(len(self.images), *shape)).to(device)


class GlobalRngMasks:
    """The authors' masks: torch's global RNG, never reproducible. Same
    keep() as SpikeMasks; used to time the baseline the way it really runs."""

    def __init__(self, seed, ratio, sites=DEFAULT_MASK_SITES):
        self.ratio, self.t, self.sites = float(ratio), 0, tuple(sites)
        self.images = np.zeros(1, dtype=np.uint64)
        torch.manual_seed(seed)

    def keep(self, name, site, shape, device):
        if self.ratio <= 0 or name not in self.sites:
            return torch.ones((), device=device)
        return (torch.rand((len(self.images), *shape), device=device) >= self.ratio).float()


# ---------------------------------------------------------------- neurons

class QcfsSte(torch.autograd.Function):
    """QCFS with a straight-through floor (the value of floor, the gradient of
    identity), written out so that training keeps one saved tensor per site
    instead of autograd's chain of temporaries: the step that bounds training
    speed on a 2-core machine."""

    @staticmethod
    def forward(ctx, u, lam):
        ctx.save_for_backward(u, lam)
        return torch.clamp(torch.floor(u / lam * QCFS_LEVELS + 0.5) / QCFS_LEVELS, 0, 1) * lam

    @staticmethod
    def backward(ctx, grad):
        u, lam = ctx.saved_tensors
        level = torch.floor(u / lam * QCFS_LEVELS + 0.5)
        inside = ((level >= 0) & (level <= QCFS_LEVELS)).to(grad.dtype)
        q = torch.clamp(level, 0, QCFS_LEVELS) / QCFS_LEVELS
        grad_u = grad * inside
        grad_lam = (grad * (q - inside * u / lam)).sum().reshape(lam.shape)
        return grad_u, grad_lam


class IFSite(nn.Module):
    """A converted ReLU: QCFS in ANN mode, integrate-and-fire in SNN mode."""

    def __init__(self):
        super().__init__()
        self.up = nn.Parameter(torch.tensor([1.0]))
        self.snn = False
        self.v = None
        self.calibrate_q = None  # when set, the first input fixes the threshold
        self.relu = False  # training's warm start: a plain ReLU (QCFS from scratch learns far slower)
        self.spikes = 0
        self.neurons = 0

    def forward(self, u):
        if self.calibrate_q is not None:
            pos = u[u > 0].flatten().float()
            if pos.numel() > (1 << 24):
                pos = pos[torch.randperm(pos.numel())[: 1 << 24]]
            lam = torch.quantile(pos, self.calibrate_q).item() if pos.numel() else 1.0
            self.up.data.fill_(max(lam, 1e-3))
            self.calibrate_q = None
        lam = self.up
        if self.relu:
            return F.relu(u)
        if not self.snn:
            if self.training:
                return QcfsSte.apply(u, lam)
            return torch.clamp(torch.floor(u / lam * QCFS_LEVELS + 0.5) / QCFS_LEVELS, 0, 1) * lam
        if self.v is None:
            self.v = torch.full_like(u, 0.5)
        self.v = self.v + u / lam
        s = (self.v >= 1.0).to(u.dtype)
        self.v = self.v - s
        self.spikes += int(s.sum().item())
        self.neurons += s.numel()
        return s * lam


def bn_tokens(norm, x):
    """BatchNorm1d over the channels of [B, L, C] tokens."""
    return norm(x.transpose(1, 2)).transpose(1, 2)


def window_partition(x, w):
    B, H, W, C = x.shape
    x = x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, (H // w) * (W // w), w * w, C)


def window_reverse(win, w, H, W):
    B, C = win.shape[0], win.shape[-1]
    x = win.view(B, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, C)


# ---------------------------------------------------------------- model

class WindowAttention(nn.Module):
    def __init__(self, dim, window, heads):
        super().__init__()
        self.dim, self.window, self.heads = dim, window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        flat = coords.flatten(1)
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        for name in ("q_if", "k_if", "v_if", "attn_if", "attn_v_if", "proj_if"):
            setattr(self, name, IFSite())
        self.site = 0

    def forward(self, x, shift_mask, masks):
        B, nW, n, C = x.shape
        h, d = self.heads, C // self.heads
        qkv = self.qkv(x).reshape(B, nW, n, 3, h, d).permute(3, 0, 1, 4, 2, 5)
        q = self.q_if(qkv[0]) * masks.keep("q", self.site, (nW, h, n, d), x.device)
        k = self.k_if(qkv[1]) * masks.keep("k", self.site + 1, (nW, h, n, d), x.device)
        v = self.v_if(qkv[2])
        s = (q @ k.transpose(-2, -1)) * self.scale
        a = self.attn_if(s) * masks.keep("attn", self.site + 2, (nW, h, n, n), x.device)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        a = a + bias.view(n, n, h).permute(2, 0, 1)
        if shift_mask is not None:
            a = a + shift_mask[None, :, None]
        o = F.softmax(a, dim=-1) @ v
        o = o.permute(0, 1, 3, 2, 4).reshape(B, nW, n, C)
        return self.proj_if(self.proj(self.attn_v_if(o)))


class Mlp(nn.Module):
    def __init__(self, dim, hidden, with_bn):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.norm1 = nn.BatchNorm1d(hidden) if with_bn else None
        self.fc1_if = IFSite()
        self.fc2 = nn.Linear(hidden, dim)
        self.norm2 = nn.BatchNorm1d(dim) if with_bn else None
        self.fc2_if = IFSite()
        self.site = 0  # fc1's mask site; fc2's is the next (spec section 4b)
        self.fc1_in = self.fc2_in = 0  # SNN: spikes into fc1 and fc2 after masking

    def forward(self, x, masks):
        """x: [B, L, C] spikes, tokens row-major: the mask offset is token * C + channel."""
        B, L, C = x.shape
        x = x * masks.keep("fc1", self.site, (L, C), x.device)
        h = self.fc1(x)
        if self.norm1 is not None:
            h = bn_tokens(self.norm1, h)
        h = self.fc1_if(h)
        h = h * masks.keep("fc2", self.site + 1, tuple(h.shape[1:]), x.device)
        if self.fc1_if.snn:
            self.fc1_in += int((x != 0).sum().item())
            self.fc2_in += int((h != 0).sum().item())
        x = self.fc2(h)
        if self.norm2 is not None:
            x = bn_tokens(self.norm2, x)
        return self.fc2_if(x)


def swin_shift_mask(res, w, s):
    """Swin's -100 mask between the regions that a roll by -s brings together."""
    img = torch.zeros(1, res, res, 1)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    win = window_partition(img, w).view(-1, w * w)
    m = win[:, None, :] - win[:, :, None]
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


class Block(nn.Module):
    def __init__(self, dim, res, heads, window, shift, hidden, mlp_bn):
        super().__init__()
        if res <= window:
            window, shift = res, 0
        self.res, self.window, self.shift = res, window, shift
        self.norm1 = nn.BatchNorm1d(dim)
        self.shortcut1_if = IFSite()
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.BatchNorm1d(dim)
        self.shortcut2_if = IFSite()
        self.mlp = Mlp(dim, hidden, mlp_bn)
        self.register_buffer("attn_mask", swin_shift_mask(res, window, shift) if shift else None)

    def forward(self, x, masks):
        B, Lt, C = x.shape
        H = W = self.res
        a = self.shortcut1_if(bn_tokens(self.norm1, x)).view(B, H, W, C)
        if self.shift:
            a = torch.roll(a, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(a, self.window), self.attn_mask, masks)
        y = window_reverse(y, self.window, H, W)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(B, Lt, C)
        b = bn_tokens(self.norm2, x)
        return b + self.mlp(self.shortcut2_if(b), masks)


class PatchMerging(nn.Module):
    def __init__(self, res, dim):
        super().__init__()
        self.res = res
        self.norm = nn.BatchNorm1d(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.reduction_if = IFSite()

    def forward(self, x):
        B, _, C = x.shape
        x = x.view(B, self.res, self.res, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        x = bn_tokens(self.norm, x.view(B, -1, 4 * C))
        return self.reduction_if(self.reduction(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.norm = nn.BatchNorm1d(dim)
        self.proj_if = IFSite()

    def forward(self, img):
        x = self.norm(self.proj(img).flatten(2))
        return self.proj_if(x.transpose(1, 2))


class Stage(nn.Module):
    def __init__(self, dim, res, depth, heads, window, mlp_ratio, mlp_bn, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, res, heads, window, 0 if i % 2 == 0 else window // 2, int(dim * mlp_ratio), mlp_bn)
            for i in range(depth))
        self.downsample = PatchMerging(res, dim) if downsample else None


class MST(nn.Module):
    def __init__(self, img_size=224, patch=4, in_chans=3, embed_dim=96, depths=(2, 2, 6, 2),
                 heads=(3, 6, 12, 24), window=7, mlp_ratio=4.0, num_classes=1000, mlp_bn=True):
        super().__init__()
        self.config = dict(img_size=img_size, patch=patch, in_chans=in_chans, embed_dim=embed_dim,
                           depths=list(depths), heads=list(heads), window=window, mlp_ratio=mlp_ratio,
                           num_classes=num_classes, mlp_bn=mlp_bn)
        self.patch_embed = PatchEmbed(patch, in_chans, embed_dim)
        res, dim, layers = img_size // patch, embed_dim, []
        for i, (depth, h) in enumerate(zip(depths, heads)):
            last = i == len(depths) - 1
            layers.append(Stage(dim, res, depth, h, window, mlp_ratio, mlp_bn, not last))
            if not last:
                res, dim = res // 2, dim * 2
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        blocks = [blk for stage in self.layers for blk in stage.blocks]
        for b, blk in enumerate(blocks):
            blk.attn.site = 3 * b
            blk.mlp.site = 3 * len(blocks) + 2 * b

    def sites(self):
        return [m for m in self.modules() if isinstance(m, IFSite)]

    def forward(self, img, masks):
        x = self.patch_embed(img)
        for stage in self.layers:
            for blk in stage.blocks:
                x = blk(x, masks)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return self.head(self.norm(x).mean(1))


# ---------------------------------------------------------------- running

@torch.no_grad()
def run(model, images, mode="snn", timesteps=16, mask_ratio=0.0, seed=0, first_index=0, mask_rng="philox",
        mask_sites=DEFAULT_MASK_SITES):
    """Cumulative logits [T, N, classes] (SNN) or logits [1, N, classes] (ANN).
    mask_rng "philox": the masks mst draws; "torch": the authors' global RNG."""
    model.eval()
    masks = (SpikeMasks if mask_rng == "philox" else GlobalRngMasks)(seed, mask_ratio, mask_sites)
    masks.images = np.arange(first_index, first_index + images.shape[0], dtype=np.uint64)
    for s in model.sites():
        s.snn, s.v, s.spikes, s.neurons = mode == "snn", None, 0, 0
    for m in model.modules():
        if isinstance(m, Mlp):
            m.fc1_in = m.fc2_in = 0
    if mode == "ann":
        return model(images, masks)[None]
    cum, out = torch.zeros(()), []
    for t in range(timesteps):
        masks.t = t
        cum = cum + model(images, masks)
        out.append(cum)
    return torch.stack(out)


@torch.no_grad()
def calibrate(model, images, quantile=0.99, seed=0):
    """Makes a random model behave like a trained one: BatchNorm statistics from
    the data (perturbed), thresholds at a quantile of each site's input."""
    g = torch.Generator().manual_seed(seed)

    def bn_hook(mod, inp):
        x = inp[0]
        dims = [0] + list(range(2, x.dim()))
        mod.running_mean.copy_(x.mean(dims) + 0.1 * torch.randn(x.shape[1], generator=g))
        mod.running_var.copy_(x.var(dims) * (0.8 + 0.4 * torch.rand(x.shape[1], generator=g)) + 1e-3)
        mod.weight.copy_(0.8 + 0.4 * torch.rand(x.shape[1], generator=g))
        mod.bias.copy_(0.2 + 0.2 * torch.randn(x.shape[1], generator=g))

    hooks = [m.register_forward_pre_hook(bn_hook) for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for s in model.sites():
        s.calibrate_q = quantile
    run(model, images, mode="ann")
    for h in hooks:
        h.remove()


def random_model(seed, **config):
    torch.manual_seed(seed)
    model = MST(**config)
    for m in model.modules():
        if isinstance(m, WindowAttention):
            nn.init.normal_(m.relative_position_bias_table, std=0.5)
    return model


def load(path):
    """An MST from a safetensors checkpoint written by tools/convert_pth.py
    (architecture and image size from its __metadata__), and that metadata."""
    import mst_io
    tensors, meta = mst_io.read_safetensors(path)
    arch = json.loads(meta["arch"])
    model = MST(img_size=int(meta["img_size"]), patch=arch["patch"], in_chans=arch["in_chans"],
                embed_dim=arch["embed_dim"], depths=arch["depths"], heads=arch["heads"], window=arch["window"][0],
                mlp_ratio=tensors["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / arch["embed_dim"],
                num_classes=arch["num_classes"], mlp_bn=arch["mlp_bn"])
    state = {k: torch.from_numpy(v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("attn_mask", "relative_position_index", "num_batches_tracked"))]
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model, meta

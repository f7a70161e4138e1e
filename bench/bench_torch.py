"""The PyTorch side of `daed bench`: the same U-Nets (improved-diffusion's architecture, built
from the same TOML presets), the same cases and the same figures, written as the same JSON.

    python bench/bench_torch.py [--models tiny,recipe,fmnist,cifar10] [--cases train,sample,inception]
        [--batch N] [--micro-batch N] [--warmup 1] [--runs 3] [--threads 2] [--device cpu|cuda]
        [--variants eager,bf16,best,best-bf16] [--bf16] [--out DIR]

Cases (as daed's):
  train     forward, backward, AdamW and EMA of one batch: uniform t, q(x_t | x_0), simple loss
            (mean squared error of the noise), micro-batches accumulated like daed's trainer
  sample    one forward without gradients at the same batch (eval mode)
  inception pytorch-fid's FID Inception-v3 (bench/inception_torch.py) on random 299x299 input

The parameter counts printed must equal daed's (same network).

--variants times the U-Net cases once per variant, each a row named model + "-" + variant
("eager" keeps the bare model name):
  eager      the reference code's way: fp32, materialised attention weights, NCHW
  bf16       eager under CPU/GPU autocast to bfloat16
  best       what a PyTorch user tuning for speed would run: F.scaled_dot_product_attention and
             channels-last tensors (model and inputs), fp32
  best-bf16  best under bf16 autocast
--bf16 is short for adding "bf16". bench/compare.py sets each variant against daed's row.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PRESETS = {
    "tiny": ("configs/tiny.toml", 64),
    "recipe": ("configs/fashion_mnist_cpu.toml", 64),
    "fmnist": ("configs/fashion_mnist_ddgm_simple.toml", 128),
    "cifar10": ("configs/cifar10_ddgm_simple.toml", 32),
}
SHAPES = {"fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32),
          "cifar100": (3, 32, 32), "celeba": (3, 64, 64)}


# ---------------------------------------------------------------- the U-Net (as daed's nn/)
def norm(ch):
    g = min(32, ch)
    while ch % g:
        g -= 1
    return nn.GroupNorm(g, ch, eps=1e-5)


def conv(cin, cout, k, zero=False):
    c = nn.Conv2d(cin, cout, k, padding=k // 2)
    if zero:
        nn.init.zeros_(c.weight)
        nn.init.zeros_(c.bias)
    return c


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, dropout, scale_shift):
        super().__init__()
        self.in_norm, self.in_conv = norm(cin), conv(cin, cout, 3)
        self.emb_layer = nn.Linear(emb, 2 * cout if scale_shift else cout)
        self.out_norm, self.dropout = norm(cout), nn.Dropout(dropout)
        self.out_conv = conv(cout, cout, 3, zero=True)
        self.skip = conv(cin, cout, 1) if cin != cout else None
        self.scale_shift = scale_shift

    def forward(self, x, emb):  # emb already through SiLU
        h = self.in_conv(F.silu(self.in_norm(x)))
        e = self.emb_layer(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        h = self.out_conv(self.dropout(F.silu(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):  # improved-diffusion's AttentionBlock (materialised T x T weights)
    def __init__(self, ch, heads):
        super().__init__()
        self.norm, self.heads = norm(ch), heads
        self.sdpa = False  # set by the "best" variants: PyTorch's fused attention
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj_out = nn.Linear(ch, ch)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        t, nh = h * w, self.heads
        ch = c // nh
        seq = self.norm(x).reshape(b, c, t).transpose(1, 2)
        qkv = self.qkv(seq).reshape(b, t, nh, 3 * ch).transpose(1, 2)
        q, k, v = qkv.split(ch, dim=3)
        if self.sdpa:  # same maths (scale 1/sqrt(ch)), one fused kernel
            a = F.scaled_dot_product_attention(q, k, v)
        else:
            wts = torch.softmax(q @ k.transpose(2, 3) * (1.0 / math.sqrt(ch)), dim=3)
            a = wts @ v
        a = a.transpose(1, 2).reshape(b, t, c)
        return x + self.proj_out(a).transpose(1, 2).reshape(b, c, h, w)


class Level(nn.Module):
    def __init__(self, conv_=None, res=None, attn=None, down=None, up=None):
        super().__init__()
        self.conv, self.res, self.attn, self.down, self.up = conv_, res, attn, down, up

    def forward(self, h, emb, out_hw=None):
        if self.conv is not None:
            h = self.conv(h)
        if self.res is not None:
            h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        if self.down is not None:
            h = self.down(h)
        if self.up is not None:
            size = out_hw or (2 * h.shape[2], 2 * h.shape[3])
            h = self.up(F.interpolate(h, size=size, mode="nearest"))
        return h


def mults_for(size):
    return [1, 2, 2] if size <= 28 else [1, 2, 2, 2] if size <= 32 else [1, 2, 3, 4] if size <= 64 \
        else [1, 1, 2, 3, 4]


class UNet(nn.Module):
    def __init__(self, u, channels, size, out_channels):
        super().__init__()
        mc = u.get("model_channels", 64)
        emb = 4 * mc
        mults = u.get("channel_mult") or mults_for(size)
        nrb = u.get("num_res_blocks", 2)
        attn_ds = [size // r for r in u.get("attention_resolutions", [16, 8])]
        heads, dropout = u.get("num_heads", 4), u.get("dropout", 0.0)
        ss = u.get("use_scale_shift_norm", True)
        res = lambda a, b: ResBlock(a, b, emb, dropout, ss)
        self.mc = mc
        self.time_embed_0, self.time_embed_2 = nn.Linear(mc, emb), nn.Linear(emb, emb)
        inp = [Level(conv_=conv(channels, mc, 3))]
        chans, ch, ds = [mc], mc, 1
        for level, m in enumerate(mults):
            for _ in range(nrb):
                l = Level(res=res(ch, m * mc))
                ch = m * mc
                if ds in attn_ds:
                    l.attn = Attention(ch, heads)
                inp.append(l)
                chans.append(ch)
            if level + 1 != len(mults):
                inp.append(Level(down=nn.Conv2d(ch, ch, 3, stride=2, padding=1)))
                chans.append(ch)
                ds *= 2
        self.input_blocks = nn.ModuleList(inp)
        self.middle_res_0, self.middle_attn, self.middle_res_1 = res(ch, ch), Attention(ch, heads), res(ch, ch)
        out = []
        for level, m in reversed(list(enumerate(mults))):
            for i in range(nrb + 1):
                skip = chans.pop()
                l = Level(res=res(ch + skip, m * mc))
                ch = m * mc
                if ds in attn_ds:
                    l.attn = Attention(ch, heads)
                if level > 0 and i == nrb:
                    l.up = conv(ch, ch, 3)
                    ds //= 2
                out.append(l)
        self.output_blocks = nn.ModuleList(out)
        self.out_norm, self.out_conv = norm(ch), conv(ch, out_channels, 3, zero=True)

    def timestep_embedding(self, t):
        half = self.mc // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        args = t.double()[:, None] * freqs[None].to(t.device)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1).float()

    def forward(self, x, t):
        emb = F.silu(self.time_embed_2(F.silu(self.time_embed_0(self.timestep_embedding(t)))))
        h, skips = x, []
        for l in self.input_blocks:
            h = l(h, emb)
            skips.append(h)
        h = self.middle_res_1(self.middle_attn(self.middle_res_0(h, emb)), emb)
        for l in self.output_blocks:
            skip = skips.pop()
            nxt = tuple(skips[-1].shape[2:]) if skips else None
            h = l(torch.cat([h, skip], 1), emb, nxt)
        return self.out_conv(F.silu(self.out_norm(h)))


# ---------------------------------------------------------------- diffusion and the step
def betas(d):
    steps = d.get("steps", 1000)
    if d.get("schedule", "linear") == "cosine":
        f = lambda t: math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(steps)], dtype=torch.float64)
    scale = 1000.0 / steps if d.get("scale_betas", True) else 1.0
    return torch.linspace(scale * d.get("beta_start", 1e-4), scale * d.get("beta_end", 0.02), steps,
                          dtype=torch.float64)


VARIANTS = {  # name: (autocast to bf16, scaled_dot_product_attention, channels-last)
    "eager": (False, False, False),
    "bf16": (True, False, False),
    "best": (False, True, True),
    "best-bf16": (True, True, True),
}


class Case:
    def __init__(self, name, cfg, batch, micro, device, sdpa=False, channels_last=False):
        self.name, self.batch, self.device = name, batch, device
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        d = cfg.get("diffusion", {})
        self.shape = SHAPES[cfg.get("data", {}).get("dataset", "fashion-mnist")]
        out = 2 * self.shape[0] if d.get("learn_sigma", False) else self.shape[0]
        torch.manual_seed(cfg.get("train", {}).get("seed", 0))
        self.model = UNet(cfg.get("unet", {}), self.shape[0], self.shape[1], out).to(device)
        self.model = self.model.to(memory_format=self.fmt)
        for m in self.model.modules():
            if isinstance(m, Attention):
                m.sdpa = sdpa
        self.params = sum(p.numel() for p in self.model.parameters())
        tr = cfg.get("train", {})
        self.micro = micro if micro is not None else tr.get("micro_batch", 0)
        self.ema_rate = tr.get("ema_rate", 0.9999)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tr.get("lr", 1e-4),
                                     weight_decay=tr.get("weight_decay", 0.0), eps=1e-8)
        self.ema = [p.detach().clone() for p in self.model.parameters()]
        ab = torch.cumprod(1 - betas(d), 0)
        self.sqrt_ab, self.sqrt_1mab = ab.sqrt().float().to(device), (1 - ab).sqrt().float().to(device)
        self.steps = len(ab)

    def train_step(self, autocast):
        self.model.train()
        b = self.batch
        x0 = (torch.rand(b, *self.shape, device=self.device) * 2 - 1).contiguous(memory_format=self.fmt)
        t = torch.randint(0, self.steps, (b,), device=self.device)
        eps = torch.randn_like(x0)
        mb = b if self.micro in (0, None) else min(self.micro, b)
        self.opt.zero_grad(set_to_none=True)
        for s in range(0, b, mb):
            sl = slice(s, s + mb)
            xt = self.sqrt_ab[t[sl]].view(-1, 1, 1, 1) * x0[sl] + self.sqrt_1mab[t[sl]].view(-1, 1, 1, 1) * eps[sl]
            with autocast():
                out = self.model(xt, t[sl].float())
            loss = ((out.float() - eps[sl]) ** 2).mean(dim=(1, 2, 3)).sum() / b
            loss.backward()
        self.opt.step()
        with torch.no_grad():
            for e, p in zip(self.ema, self.model.parameters()):
                e.lerp_(p.detach(), 1 - self.ema_rate)
        loss.item()

    def sample_forward(self, autocast):
        self.model.eval()
        b = self.batch
        with torch.no_grad(), autocast():
            x = torch.randn(b, *self.shape, device=self.device).contiguous(memory_format=self.fmt)
            t = torch.arange(b, device=self.device).mul(97).remainder(self.steps).float()
            self.model(x, t)[0, 0, 0, 0].item()


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def vmhwm_mib():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mib()


def measure(model, kind, params, batch, warmup, runs, fn, device):
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    reset_peak()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        fn()
    sync()
    c0, w0 = time.process_time(), time.perf_counter()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - w0
    med = statistics.median(times)
    r = {"model": model, "kind": kind, "params": params, "batch": batch, "times_s": times,
         "median_s": med, "images_per_s": batch / med, "peak_rss_mib": vmhwm_mib(),
         "cores_busy": (time.process_time() - c0) / wall}
    if device.startswith("cuda"):
        r["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(f"  {model:<14} {kind:<9} batch {batch:>3}: median {med:.3f} s ({batch / med:.1f} images/s), "
          f"peak {r['peak_rss_mib']:.0f} MiB, cores busy {r['cores_busy']:.2f}", file=sys.stderr)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,fmnist,cifar10")
    ap.add_argument("--cases", default="train,sample,inception")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--micro-batch", type=int)
    ap.add_argument("--inception-batch", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="eager", help="comma-separated: " + ", ".join(VARIANTS))
    ap.add_argument("--bf16", action="store_true", help="also time the U-Net cases under bf16 autocast")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if a.bf16 and "bf16" not in variants:
        variants.append("bf16")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    print(f"bench_torch: torch {torch.__version__}, device {a.device}, {a.threads} threads, "
          f"{a.warmup} warm-up + {a.runs} timed runs", file=sys.stderr)
    results = []
    for m in [m.strip() for m in a.models.split(",") if m.strip()]:
        path, batch = PRESETS[m]
        with open(os.path.join(ROOT, path), "rb") as f:
            cfg = tomllib.load(f)
        dt = "cuda" if a.device.startswith("cuda") else "cpu"
        for v in variants:
            bf16, sdpa, cl = VARIANTS[v]
            case = Case(m, cfg, a.batch or batch, a.micro_batch, a.device, sdpa, cl)
            ac = (lambda: torch.autocast(dt, dtype=torch.bfloat16)) if bf16 else \
                (lambda: torch.autocast(dt, enabled=False))
            name = m if v == "eager" else f"{m}-{v}"
            for k in cases:
                if k == "train":
                    fn = lambda: case.train_step(ac)
                elif k == "sample":
                    fn = lambda: case.sample_forward(ac)
                else:
                    continue
                results.append(measure(name, k, case.params, case.batch, a.warmup, a.runs, fn, a.device))
    if "inception" in cases:
        sys.path.insert(0, HERE)
        from inception_torch import FIDInception, load  # noqa: E402
        net = load(FIDInception()).to(a.device).eval()
        def inc():
            with torch.no_grad():
                x = torch.rand(a.inception_batch, 3, 299, 299, device=a.device) * 2 - 1
                net(x)[0, 0].item()
        results.append(measure("inception", "inception", None, a.inception_batch, a.warmup, a.runs, inc, a.device))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "bench.json"), "w") as f:
            json.dump(results, f, indent=1)
    for r in results:
        print(f"| {r['model']} | {r['kind']} | {r['params'] or '-'} | {r['batch']} | {r['median_s']:.4f} | "
              f"{r['images_per_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['cores_busy']:.2f} |")


if __name__ == "__main__":
    main()

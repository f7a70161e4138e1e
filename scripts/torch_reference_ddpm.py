#!/usr/bin/env python3
"""Train a small DDPM on Fashion-MNIST with the paper's own PyTorch code, for daed's importer.

The model, the diffusion and the loss all come from the reference repository
(Deja et al., "On Analyzing Generative and Denoising Capabilities of Diffusion-based Deep
Generative Models", code `analysing_ddgm`, package `guided_diffusion`, MIT licence). Nothing of
it is copied here: it is imported from --ref (default ../shared/reference/analysing_ddgm).

Writes, in the repository's checkpoint layout (the guided-diffusion naming without a task id):
  OUT/model{step:06d}.pt          torch.save(model.state_dict())
  OUT/ema_0.999_{step:06d}.pt     the same state dict with the EMA values of the parameters
  OUT/flags.txt                   the flags string the model was built from
  OUT/train_log.txt               loss every 50 steps, with elapsed time
  OUT/torch_samples.png           16 ancestral samples of the EMA model (p_sample_loop)

CPU only. Usage:
  python scripts/torch_reference_ddpm.py --out /tmp/torch-demo --minutes 20 [--threads 2] [--seed 0]
  python scripts/torch_reference_ddpm.py --out /tmp/torch-demo --sample-only [--sample-weights model] [--ddim 50]
"""

import argparse
import gzip
import importlib.machinery
import os
import random
import shlex
import struct
import sys
import time
import types
import zlib

import numpy as np

FLAGS = (
    "--image_size 28 --in_channels 1 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2,2 "
    "--attention_resolutions 7 --learn_sigma False --dropout 0.1 --diffusion_steps 500 "
    "--noise_schedule linear --use_kl False --dataset FashionMNIST --lr 2e-4 --batch_size 64"
)
# Flags of the repository's training script (image_train.py), not of create_model_and_diffusion.
TRAINING_DEFAULTS = dict(dataset="FashionMNIST", lr=2e-4, batch_size=64)
EMA_RATE = 0.999
LOG_EVERY = 50

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REF = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "reference", "analysing_ddgm"))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "fashion-mnist"))


class _Stub(types.ModuleType):
    """A module whose every attribute is a do-nothing callable (for imports the code never uses here)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubObj()


class _StubObj:
    def __call__(self, *a, **k):
        return _StubObj()

    def __getattr__(self, name):
        return _StubObj()


def _stub_missing_modules():
    """The reference imports mpi4py, blobfile, wandb, matplotlib, PIL at module level; stub the absent ones."""
    groups = {
        "mpi4py": ["mpi4py", "mpi4py.MPI"],
        "blobfile": ["blobfile"],
        "wandb": ["wandb"],
        "matplotlib": ["matplotlib", "matplotlib.pyplot", "matplotlib.gridspec", "matplotlib.colors"],
        "PIL": ["PIL", "PIL.Image"],
    }
    for top, names in groups.items():
        try:
            __import__(top)
        except ImportError:
            for n in names:
                m = _Stub(n)
                m.__spec__ = importlib.machinery.ModuleSpec(n, None)  # torch._dynamo calls find_spec on these
                sys.modules[n] = m
            for n in names:
                if "." in n:
                    parent, child = n.rsplit(".", 1)
                    setattr(sys.modules[parent], child, sys.modules[n])


def import_reference(ref):
    if not os.path.isdir(os.path.join(ref, "guided_diffusion")):
        sys.exit(f"reference code not found: {ref}/guided_diffusion")
    sys.path.insert(0, ref)
    _stub_missing_modules()
    from guided_diffusion import script_util, resample, nn as gnn
    return script_util, resample, gnn


def parse_flags(script_util, flags):
    """The repository's own argparse helpers: defaults -> parser -> args -> dict of model/diffusion kwargs."""
    defaults = dict(TRAINING_DEFAULTS)
    defaults.update(script_util.model_and_diffusion_defaults())
    parser = argparse.ArgumentParser()
    script_util.add_dict_to_argparser(parser, defaults)
    args = parser.parse_args(shlex.split(flags))
    md = script_util.args_to_dict(args, script_util.model_and_diffusion_defaults().keys())
    return args, md


def load_idx_images(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 2051:
        sys.exit(f"{path}: not an IDX image file (magic {magic})")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)
    return (x.astype(np.float32) / 127.5 - 1.0)


def find_train_images(data):
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        p = os.path.join(data, name)
        if os.path.exists(p):
            return p
    sys.exit(f"no train-images-idx3-ubyte(.gz) in {data}")


def write_png_gray(path, img):
    """img: HxW uint8. A minimal PNG writer (8-bit grayscale, zlib)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def grid(images, nrow=4, pad=2, scale=3):
    """images: N x 1 x H x W in [-1, 1] -> uint8 grid, each image upscaled by `scale`."""
    x = ((np.clip(images, -1, 1) + 1) * 127.5).round().astype(np.uint8)[:, 0]
    x = x.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w = x.shape
    ncol = (n + nrow - 1) // nrow
    out = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i]
    return out


def seed_everything(seed):
    import torch
    random.seed(seed)
    np.random.seed(seed)  # the repository's ScheduleSampler draws timesteps with np.random
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def log_line(f, msg):
    print(msg, flush=True)
    f.write(msg + "\n")
    f.flush()


def sample(script_util, md, out, seed, n, log=None, which="ema", ddim=0):
    """Sample n images from the last checkpoint in `out` (which: "ema" or "model").

    ddim=0: the repository's p_sample_loop over all diffusion steps (ancestral DDPM);
    ddim=K: its ddim_sample_loop (eta 0) over K respaced steps (timestep_respacing "ddimK")."""
    import torch
    prefix = f"ema_{EMA_RATE}_" if which == "ema" else "model"
    ckpts = sorted(p for p in os.listdir(out) if p.startswith(prefix) and p.endswith(".pt"))
    if not ckpts:
        sys.exit(f"no {prefix}*.pt in {out}")
    md = dict(md)
    if ddim:
        md["timestep_respacing"] = f"ddim{ddim}"
    model, diffusion = script_util.create_model_and_diffusion(**md)
    model.load_state_dict(torch.load(os.path.join(out, ckpts[-1]), map_location="cpu"))
    model.eval()
    torch.manual_seed(seed + 1)
    t0 = time.time()
    shape = (n, md["in_channels"], md["image_size"], md["image_size"])
    with torch.no_grad():
        if ddim:
            x = diffusion.ddim_sample_loop(model, shape, clip_denoised=True, device=torch.device("cpu"))
        else:
            x = diffusion.p_sample_loop(model, shape, clip_denoised=True, device=torch.device("cpu"))
    x = x.cpu().numpy()
    name = "torch_samples.png" if (which == "ema" and not ddim) else f"torch_samples_{which}_{'ddim%d' % ddim if ddim else 'ddpm'}.png"
    path = os.path.join(out, name)
    write_png_gray(path, grid(x))
    how = f"ddim_sample_loop ({ddim} steps)" if ddim else f"p_sample_loop ({diffusion.num_timesteps} steps)"
    msg = (f"sampled {n} images from {ckpts[-1]} with {how} "
           f"in {time.time() - t0:.1f}s: mean {x.mean():.3f} std {x.std():.3f} -> {path}")
    if log is not None:
        log_line(log, msg)
    else:
        print(msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=0, help="also stop after this many steps (0: no limit)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref", default=DEFAULT_REF, help="the analysing_ddgm checkout")
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder with train-images-idx3-ubyte(.gz)")
    ap.add_argument("--samples", type=int, default=16, help="images to sample after training (0: none)")
    ap.add_argument("--sample-only", action="store_true", help="skip training; sample from the last checkpoint in --out")
    ap.add_argument("--sample-weights", choices=["ema", "model"], default="ema", help="with --sample-only")
    ap.add_argument("--ddim", type=int, default=0, help="with --sample-only: DDIM over this many steps (0: full DDPM)")
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    script_util, resample, gnn = import_reference(a.ref)
    targs, md = parse_flags(script_util, FLAGS)
    os.makedirs(a.out, exist_ok=True)

    if a.sample_only:
        sample(script_util, md, a.out, a.seed, a.samples, which=a.sample_weights, ddim=a.ddim)
        return

    with open(os.path.join(a.out, "flags.txt"), "w") as f:
        f.write(FLAGS + "\n")
    log = open(os.path.join(a.out, "train_log.txt"), "w")
    log_line(log, f"flags: {FLAGS}")
    log_line(log, f"seed {a.seed}, threads {a.threads}, budget {a.minutes} min, torch {torch.__version__}")

    seed_everything(a.seed)
    x_all = load_idx_images(find_train_images(a.data))
    if x_all.shape[2] != md["image_size"] or x_all.shape[1] != md["in_channels"]:
        sys.exit(f"data shape {x_all.shape} does not match the flags")
    log_line(log, f"data: {x_all.shape[0]} images, range [{x_all.min():.1f}, {x_all.max():.1f}]")

    model, diffusion = script_util.create_model_and_diffusion(**md)
    model.train()
    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    log_line(log, f"model: {type(model).__name__}, {sum(p.numel() for p in params)} parameters; "
                  f"diffusion: {diffusion.num_timesteps} steps, {diffusion.loss_type}, {diffusion.model_mean_type}")
    opt = torch.optim.AdamW(params, lr=targs.lr, weight_decay=0.0)
    sampler = resample.UniformSampler(diffusion)
    rng = np.random.RandomState(a.seed)
    bs = targs.batch_size

    t0 = time.time()
    budget = a.minutes * 60.0
    step, window, order, pos = 0, [], rng.permutation(len(x_all)), 0
    last_avg = float("nan")
    while True:
        if pos + bs > len(order):
            order, pos = rng.permutation(len(x_all)), 0
        x = torch.from_numpy(x_all[order[pos:pos + bs]])
        pos += bs
        t, weights = sampler.sample(bs, torch.device("cpu"))
        loss = (diffusion.training_losses(model, x, t)["loss"] * weights).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        gnn.update_ema(ema, params, rate=EMA_RATE)
        step += 1
        window.append(loss.item())
        elapsed = time.time() - t0
        done = elapsed >= budget or (a.max_steps and step >= a.max_steps)
        if step % LOG_EVERY == 0 or done:
            last_avg = float(np.mean(window))
            log_line(log, f"step {step:6d}  loss {last_avg:.5f}  (last {len(window)} steps)  "
                          f"elapsed {elapsed:7.1f}s  {step / elapsed:.2f} steps/s")
            window = []
        if done:
            break

    sd = model.state_dict()
    torch.save(sd, os.path.join(a.out, f"model{step:06d}.pt"))
    ema_sd = dict(sd)
    for (name, _), e in zip(model.named_parameters(), ema):
        ema_sd[name] = e
    torch.save(ema_sd, os.path.join(a.out, f"ema_{EMA_RATE}_{step:06d}.pt"))
    log_line(log, f"done: {step} steps in {time.time() - t0:.1f}s, final loss {last_avg:.5f}; "
                  f"saved model{step:06d}.pt and ema_{EMA_RATE}_{step:06d}.pt")
    if a.samples > 0:
        sample(script_util, md, a.out, a.seed, a.samples, log)
    log.close()


if __name__ == "__main__":
    main()

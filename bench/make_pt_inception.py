"""Writes the FID Inception weights as pytorch-fid's torchvision-named `.pth` state dict (the layout
of `pt_inception-2015-12-05-6726825d.pth`), from the TensorFlow-named safetensors of
shared/data/inception, to test daed's `.pth` reader (crates/daed-io/src/pth.rs) on a real-size file.

    /tmp/torchvenv/bin/python bench/make_pt_inception.py                 # -> /tmp/pt_inception_legacy.pth
    /tmp/torchvenv/bin/python bench/make_pt_inception.py --zip           # -> /tmp/pt_inception_zip.pth
        [--weights PATH.safetensors] [--out PATH.pth] [--no-check] [--threads 2]

Per layer (torchvision name `tv`, TensorFlow name `tf`; the pairs are those of `conv_bn(tv, tf, ..)`
in crates/daed-core/src/metrics/inception.rs, tabled in bench/inception_torch.py):
    tv.conv.weight = tf.weight              tv.bn.running_mean = tf.mean
    tv.bn.weight   = ones (no BN scale)     tv.bn.running_var  = tf.var
    tv.bn.bias     = tf.beta                tv.bn.num_batches_tracked = 0 (int64 scalar)
and `fc.weight` / `fc.bias` from `softmax.weights` (transposed) / `softmax.biases` when the file has
the logits layer. The variance is copied as is: the TensorFlow graph's batch-norm epsilon is 1e-3,
pytorch-fid's BasicConv2d uses `BatchNorm2d(eps=0.001)`, and daed's weights.rs folds both namings
with the same `BN_EPS = 1e-3`, so no epsilon correction is needed.

The legacy (pre-1.6, non-zip) format is the default, as pytorch-fid's 2019 file; --zip writes
torch's current zip format. Unless --no-check, the written file is loaded back with
`torch.load(weights_only=True)` into bench/inception_torch.py's network and run on
reference_outputs.npz (the pool3 features of a fixed image), which must match to 1e-4.
"""
import argparse
import collections
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inception_torch  # noqa: E402  (the network and the tv -> tf name table)

DATA = os.environ.get("DAED_DATA", "/work/shared/data")
WEIGHTS = f"{DATA}/inception/fid_inception_2015-12-05_pool3.safetensors"


def convert(tf):
    """TensorFlow-named tensors -> torchvision-named OrderedDict state dict."""
    model = inception_torch.FIDInception()
    state = collections.OrderedDict()
    used = set()

    def take(name):
        used.add(name)
        return tf[name].clone().contiguous()

    for key, like in model.state_dict().items():
        layer, module, part = key.rsplit(".", 2)
        t = inception_torch.tf_name(layer)
        if (module, part) == ("conv", "weight"):
            v = take(f"{t}.weight")
        elif (module, part) == ("bn", "weight"):
            v = torch.ones_like(like)
        elif (module, part) == ("bn", "bias"):
            v = take(f"{t}.beta")
        elif (module, part) == ("bn", "running_mean"):
            v = take(f"{t}.mean")
        elif (module, part) == ("bn", "running_var"):
            v = take(f"{t}.var")
        elif (module, part) == ("bn", "num_batches_tracked"):
            v = torch.tensor(0, dtype=torch.int64)
        else:
            raise SystemExit(f"unexpected parameter {key}")
        if v.shape != like.shape or v.dtype != like.dtype:
            raise SystemExit(f"{key}: {tuple(v.shape)} {v.dtype}, network wants {tuple(like.shape)} {like.dtype}")
        state[key] = v
    if "softmax.weights" in tf:  # the 1008-way logits layer, [2048, 1008] in TensorFlow
        state["fc.weight"] = take("softmax.weights").t().contiguous()
        state["fc.bias"] = take("softmax.biases") if "softmax.biases" in tf else torch.zeros(1008)
    unused = sorted(set(tf) - used)
    if unused:
        raise SystemExit(f"{len(unused)} tensors of the safetensors file unused, e.g. {unused[:5]}")
    return state


def check(path, weights):
    """Loads `path` back into the network and compares its pool3 features with the reference."""
    state = torch.load(path, weights_only=True)
    model = inception_torch.FIDInception()
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    model.eval()
    ref_path = os.path.join(os.path.dirname(weights), "reference_outputs.npz")
    if not os.path.exists(ref_path):
        print(f"check: loaded back ({len(state)} tensors); {ref_path} missing, no feature check")
        return
    ref = np.load(ref_path)
    with torch.inference_mode():
        out = model(torch.from_numpy(ref["gradient_in"]).float()[None])[0].numpy()
    diff = float(np.abs(out - ref["gradient_out"].reshape(-1)).max())
    print(f"check: loaded back {len(state)} tensors; pool3 vs reference max abs diff {diff:.3e}")
    if not diff < 1e-4:
        raise SystemExit("check FAILED")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=WEIGHTS, help="TensorFlow-named safetensors")
    ap.add_argument("--zip", action="store_true", help="torch's zip format (default: legacy)")
    ap.add_argument("--out", help="output .pth (default /tmp/pt_inception_{legacy,zip}.pth)")
    ap.add_argument("--no-check", action="store_true", help="skip loading the result back")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or f"/tmp/pt_inception_{'zip' if args.zip else 'legacy'}.pth"
    state = convert(load_file(args.weights))
    torch.save(state, out, _use_new_zipfile_serialization=args.zip)
    n_params = sum(v.numel() for v in state.values())
    print(f"wrote {out}: {len(state)} tensors, {n_params} values, "
          f"{'zip' if args.zip else 'legacy'} format, {os.path.getsize(out)} bytes")
    if not args.no_check:
        check(out, args.weights)


if __name__ == "__main__":
    main()

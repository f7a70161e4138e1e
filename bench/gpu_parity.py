#!/usr/bin/env python3
"""Helpers of bench/gpu_check.sh (numpy only; no daed code, no torch needed).

  gpu_parity.py config SRC.toml OUT.toml KEY=VALUE...   copy a daed config with overrides
                                                        (section.key=value; value as TOML)
  gpu_parity.py imagenet32 DIR N SEED                   N random 32x32 RGB images as an
                                                        Imagenet32 file (DIR/train_data_batch_1.npz)
  gpu_parity.py inputs OUT.npz N C S T SEED             x (float32 N x C x S x S), t (int64 < T)
  gpu_parity.py weights A.safetensors B.safetensors     max |a - b| / max |a| over all tensors
  gpu_parity.py npz A.npz B.npz KEY                     the same for one array of two .npz
Each comparison prints one line `rel_err=<value> max_abs=<value>` and exits 0.
"""
import json
import sys
import tomllib

import numpy as np


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r}")


def write_toml(d):
    top = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    out = "\n".join(top) + "\n"
    for k, v in d.items():
        if isinstance(v, dict):
            out += f"\n[{k}]\n" + "".join(f"{kk} = {toml_value(vv)}\n" for kk, vv in v.items())
    return out


def config(src, dst, *overrides):
    with open(src, "rb") as f:
        d = tomllib.load(f)
    for o in overrides:
        key, val = o.split("=", 1)
        parsed = tomllib.loads(f"v = {val}")["v"]
        sec, _, name = key.rpartition(".")
        (d.setdefault(sec, {}) if sec else d)[name] = parsed
    with open(dst, "w") as f:
        f.write(write_toml(d))


def imagenet32(dirname, n, seed):
    import os

    os.makedirs(dirname, exist_ok=True)
    rng = np.random.default_rng(int(seed))
    data = rng.integers(0, 256, size=(int(n), 3 * 32 * 32), dtype=np.uint8)
    labels = rng.integers(1, 1001, size=(int(n),))
    np.savez(f"{dirname}/train_data_batch_1.npz", data=data, labels=labels)
    np.savez(f"{dirname}/val_data.npz", data=data, labels=labels)


def inputs(out, n, c, s, t, seed):
    rng = np.random.default_rng(int(seed))
    x = rng.standard_normal((int(n), int(c), int(s), int(s))).astype(np.float32)
    ts = np.linspace(0, int(t) - 1, int(n)).astype(np.int64)
    np.savez(out, x=x, t=ts)


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    header = json.loads(b[8 : 8 + n])
    base = 8 + n
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        lo, hi = v["data_offsets"]
        assert v["dtype"] == "F32", (k, v["dtype"])
        out[k] = np.frombuffer(b[base + lo : base + hi], dtype="<f4").reshape(v["shape"])
    return out


def report(pairs):
    diff = max(float(np.abs(a - b).max()) for a, b in pairs)
    scale = max(float(np.abs(a).max()) for a, _ in pairs)
    print(f"rel_err={diff / max(scale, 1e-30):.3e} max_abs={diff:.3e}")


def weights(a, b):
    wa, wb = read_safetensors(a), read_safetensors(b)
    assert wa.keys() == wb.keys(), "different tensors"
    report([(wa[k], wb[k]) for k in sorted(wa)])


def npz(a, b, key):
    report([(np.load(a)[key], np.load(b)[key])])


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"config": config, "imagenet32": imagenet32, "inputs": inputs, "weights": weights, "npz": npz}[cmd](*args)

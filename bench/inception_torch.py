"""pytorch-fid's FID Inception-v3 (pool3 features) on the CPU: correctness check and images/s.

Usage: python bench/inception_torch.py [--threads 2] [--batch 50]
Weights: the TensorFlow-named safetensors of shared/data/inception, renamed to torchvision
names as in crates/daed-core/src/metrics/weights.rs / inception.rs (batch norm not folded).
"""
import argparse, os, statistics, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

DATA = os.environ.get("DAED_DATA", "/work/shared/data")
WEIGHTS = f"{DATA}/inception/fid_inception_2015-12-05_pool3.safetensors"
REFERENCE = f"{DATA}/inception/reference_outputs.npz"


class Conv(nn.Module):  # torchvision's BasicConv2d: conv (no bias) + BN (eps 1e-3) + ReLU
    def __init__(self, cin, cout, k, stride=1, same=True):
        super().__init__()
        k = (k, k) if isinstance(k, int) else k
        pad = (k[0] // 2, k[1] // 2) if same else 0
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def avg3(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class A(nn.Module):  # FIDInceptionA
    def __init__(self, cin, pf):
        super().__init__()
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = Conv(cin, 48, 1), Conv(48, 64, 5)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 64, 1), Conv(64, 96, 3)
        self.branch3x3dbl_3, self.branch_pool = Conv(96, 96, 3), Conv(cin, pf, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(avg3(x))], 1)


class B(nn.Module):  # InceptionB (Mixed_6a)
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, 2, same=False)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 64, 1), Conv(64, 96, 3)
        self.branch3x3dbl_3 = Conv(96, 96, 3, 2, same=False)

    def forward(self, x):
        return torch.cat([self.branch3x3(x),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class C(nn.Module):  # FIDInceptionC
    def __init__(self, cin, c7):
        super().__init__()
        h, v = (1, 7), (7, 1)
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = Conv(cin, c7, 1), Conv(c7, c7, h), Conv(c7, 192, v)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = Conv(cin, c7, 1), Conv(c7, c7, v)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = Conv(c7, c7, h), Conv(c7, c7, v)
        self.branch7x7dbl_5, self.branch_pool = Conv(c7, 192, h), Conv(cin, 192, 1)

    def forward(self, x):
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b, d, self.branch_pool(avg3(x))], 1)


class D(nn.Module):  # InceptionD (Mixed_7a)
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = Conv(cin, 192, 1), Conv(192, 320, 3, 2, same=False)
        self.branch7x7x3_1, self.branch7x7x3_2 = Conv(cin, 192, 1), Conv(192, 192, (1, 7))
        self.branch7x7x3_3, self.branch7x7x3_4 = Conv(192, 192, (7, 1)), Conv(192, 192, 3, 2, same=False)

    def forward(self, x):
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, 2)], 1)


class E(nn.Module):  # FIDInceptionE_1 (avg pool) / FIDInceptionE_2 (max pool)
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1, self.branch3x3_1 = Conv(cin, 320, 1), Conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = Conv(384, 384, (1, 3)), Conv(384, 384, (3, 1))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 448, 1), Conv(448, 384, 3)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = Conv(384, 384, (1, 3)), Conv(384, 384, (3, 1))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        t = self.branch3x3_1(x)
        u = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        p = F.max_pool2d(x, 3, 1, 1) if self.max_pool else avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(t), self.branch3x3_2b(t),
                          self.branch3x3dbl_3a(u), self.branch3x3dbl_3b(u), self.branch_pool(p)], 1)


class FIDInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, 2, same=False)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3, same=False)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3, same=False)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
        self.Mixed_6a = B(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = C(768, 128), C(768, 160), C(768, 160), C(768, 192)
        self.Mixed_7a = D(768)
        self.Mixed_7b, self.Mixed_7c = E(1280, False), E(2048, True)

    def forward(self, x):  # x: [B, 3, 299, 299] in [-1, 1] -> [B, 2048]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"]:
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))


# torchvision -> TensorFlow names (same table as crates/daed-core/src/metrics/inception.rs).
STEM = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
        "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4"}
MIXED = {"5b": "mixed", "5c": "mixed_1", "5d": "mixed_2", "6a": "mixed_3", "6b": "mixed_4",
         "6c": "mixed_5", "6d": "mixed_6", "6e": "mixed_7", "7a": "mixed_8", "7b": "mixed_9",
         "7c": "mixed_10"}
LEAF_A = {"branch1x1": "conv", "branch5x5_1": "tower.conv", "branch5x5_2": "tower.conv_1",
          "branch3x3dbl_1": "tower_1.conv", "branch3x3dbl_2": "tower_1.conv_1",
          "branch3x3dbl_3": "tower_1.conv_2", "branch_pool": "tower_2.conv"}
LEAF_B = {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv", "branch3x3dbl_2": "tower.conv_1",
          "branch3x3dbl_3": "tower.conv_2"}
LEAF_C = {"branch1x1": "conv", "branch_pool": "tower_2.conv",
          **{f"branch7x7_{i}": "tower.conv" + ("" if i == 1 else f"_{i - 1}") for i in (1, 2, 3)},
          **{f"branch7x7dbl_{i}": "tower_1.conv" + ("" if i == 1 else f"_{i - 1}") for i in range(1, 6)}}
LEAF_D = {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1",
          **{f"branch7x7x3_{i}": "tower_1.conv" + ("" if i == 1 else f"_{i - 1}") for i in range(1, 5)}}
LEAF_E = {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
          "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv",
          "branch3x3dbl_2": "tower_1_conv_1", "branch3x3dbl_3a": "tower_1_mixed_conv",
          "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"}
LEAVES = {"5": LEAF_A, "6a": LEAF_B, "6": LEAF_C, "7a": LEAF_D, "7": LEAF_E}


def tf_name(layer):  # "Mixed_6b.branch7x7_2" -> "mixed_4.tower.conv_1"
    if layer in STEM:
        return STEM[layer]
    block, leaf = layer.split(".")
    m = block[len("Mixed_"):]
    return f"{MIXED[m]}.{LEAVES.get(m, LEAVES[m[0]])[leaf]}"


def load(model):
    tf = load_file(WEIGHTS)
    state = {}
    for key, v in model.state_dict().items():
        layer, part = key.rsplit(".", 2)[0], key.rsplit(".", 2)[1:]
        t = tf_name(layer)
        src = {("conv", "weight"): "weight", ("bn", "bias"): "beta",
               ("bn", "running_mean"): "mean", ("bn", "running_var"): "var"}.get(tuple(part))
        if src is not None:
            state[key] = tf[f"{t}.{src}"]
        elif part == ["bn", "weight"]:
            state[key] = torch.ones_like(v)  # no batch-norm scale in the TF graph
        else:
            state[key] = v  # num_batches_tracked
    used = {f"{tf_name(k.rsplit('.', 2)[0])}.{s}" for k in state if k.endswith("conv.weight")
            for s in ("weight", "beta", "mean", "var")}
    assert used == set(tf), f"unused tensors: {sorted(set(tf) - used)[:5]}"
    model.load_state_dict(state)
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(FIDInception())
    ref = np.load(REFERENCE)
    with torch.inference_mode():
        out = model(torch.from_numpy(ref["gradient_in"]).float()[None])[0].numpy()
        diff = float(np.abs(out - ref["gradient_out"].reshape(-1)).max())
        print(f"torch: reference check max abs diff {diff:.3e} ({'ok' if diff < 1e-4 else 'FAIL'})")
        x = torch.rand(args.batch, 3, 299, 299) * 2 - 1
        model(x)  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: batch {args.batch}, "
          f"median of 3 = {med:.2f} s ({args.batch / med:.2f} images/s)")


if __name__ == "__main__":
    main()

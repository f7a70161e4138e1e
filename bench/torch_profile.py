"""Where PyTorch's time goes in one U-Net case, and how many FLOPs the case has: the reference
side of docs/performance.md's "Where the time goes" tables.

    python bench/torch_profile.py [--model cifar10] [--case train|sample] [--variant bf16]
        [--threads 2] [--rows 20]

Builds the model as bench/bench_torch.py does (same presets, same network), runs the case once
to warm up, once under torch.utils.flop_counter (FLOPs by operation: convolutions, matmuls),
and once under torch.profiler (self CPU time by operation). Prints the FLOP table, then the
profile's top rows, then the share of the profiled time spent in convolutions, matmuls, and
everything else.
"""
import argparse
import os
import sys
import time
import tomllib

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_torch as bt  # noqa: E402

CONV = ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::convolution",
        "aten::_convolution", "aten::conv2d")
MATMUL = ("aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::linear",
          "aten::baddbmm")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cifar10", choices=sorted(bt.PRESETS))
    ap.add_argument("--case", default="train", choices=["train", "sample"])
    ap.add_argument("--variant", default="bf16", choices=sorted(bt.VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    path, batch = bt.PRESETS[a.model]
    with open(os.path.join(bt.ROOT, path), "rb") as f:
        cfg = tomllib.load(f)
    bf16, sdpa, cl = bt.VARIANTS[a.variant]
    case = bt.Case(a.model, cfg, batch, None, "cpu", sdpa, cl)
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else \
        (lambda: torch.autocast("cpu", enabled=False))
    run = (lambda: case.train_step(ac)) if a.case == "train" else (lambda: case.sample_forward(ac))
    run()
    with FlopCounterMode(display=False) as fc:
        run()
    counts = fc.get_flop_counts()["Global"]
    total = fc.get_total_flops()
    print(f"{a.model} {a.case} ({a.variant}, batch {batch}, {a.threads} threads, torch "
          f"{torch.__version__}): {total / 1e9:.1f} GFLOP")
    print("| operation | GFLOP |\n|---|---|")
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v / 1e9:.1f} |")
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    wall = time.perf_counter() - t
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    whole = sum(e.self_cpu_time_total for e in rows) / 1e6
    print(f"\nprofiled run: {wall:.3f} s wall, {whole:.3f} s of self time on the calling thread")
    print("| operation | self s | share | calls |\n|---|---|---|---|")
    for e in rows[:a.rows]:
        s = e.self_cpu_time_total / 1e6
        print(f"| {e.key} | {s:.3f} | {100 * s / whole:.1f}% | {e.count} |")
    conv = sum(e.self_cpu_time_total for e in rows if e.key in CONV) / 1e6
    mm = sum(e.self_cpu_time_total for e in rows if e.key in MATMUL) / 1e6
    conv_flops = sum(v for k, v in counts.items() if "convolution" in str(k))
    print(f"\nconvolutions {conv:.3f} s ({100 * conv / whole:.1f}%, "
          f"{conv_flops / 1e9 / max(conv, 1e-9):.0f} GFLOP/s), matmuls {mm:.3f} s "
          f"({100 * mm / whole:.1f}%), the rest {whole - conv - mm:.3f} s "
          f"({100 * (whole - conv - mm) / whole:.1f}%)")


if __name__ == "__main__":
    main()

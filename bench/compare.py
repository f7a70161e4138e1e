"""Merges the bench.json files of bench/ab.sh into one table of medians and daed/torch ratios.

    python bench/compare.py RESULTS_DIR   (holds daed_1/, torch_1/, daed_2/, ...)

Per (model, case): the median over rounds of each side's median time, the ratio daed/torch
of time (below 1: daed is faster), and each round's ratio, so the spread between rounds shows.
PyTorch's variant rows (bench_torch.py --variants: `tiny-best`, `fmnist-bf16`, ...) are set
against daed's row of the same model and case: its bf16 row (`fmnist-bf16`, from
`DAED_PRECISIONS=f32,bf16`) for the bf16 variants when there is one, else the plain row.
"""
import glob
import json
import os
import statistics
import sys


def load(pattern):
    runs = {}
    for path in sorted(glob.glob(pattern)):
        for r in json.load(open(path)):
            runs.setdefault((r["model"], r["kind"]), []).append(r)
    return runs


def main():
    d = sys.argv[1]
    daed = load(os.path.join(d, "daed_*", "bench.json"))
    torch = load(os.path.join(d, "torch_*", "bench.json"))
    print("| model | case | params daed / torch | batch | daed s | torch s | daed/torch time | per round | "
          "daed peak MiB | torch peak MiB | daed cores | torch cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in list(daed) + [k for k in torch if k not in daed]:
        a, b = daed.get(key, []), torch.get(key, [])
        if not a and "-" in key[0]:  # a PyTorch variant: against daed's bf16 or plain row
            model, variant = key[0].split("-", 1)
            a = daed.get((model, key[1]), [])
            if variant.endswith("bf16") and (model + "-bf16", key[1]) in daed:
                a, model = daed[(model + "-bf16", key[1])], model + "-bf16"
            key = (f"{model} (torch {variant})", key[1])
        if not a or not b:
            side = a or b
            print(f"| {key[0]} | {key[1]} | {side[0]['params']} | {side[0]['batch']} | "
                  + ("| ".join(["-"] * 8)) + " |")
            continue
        ta = statistics.median(r["median_s"] for r in a)
        tb = statistics.median(r["median_s"] for r in b)
        rounds = ", ".join(f"{x['median_s'] / y['median_s']:.2f}" for x, y in zip(a, b))
        pa, pb = a[0]["params"], b[0]["params"]
        params = f"{pa} / {pb}" + ("" if pa == pb else " MISMATCH")
        mem = lambda rs: max(r["peak_rss_mib"] or 0 for r in rs)
        cores = lambda rs: statistics.median(r["cores_busy"] or 0 for r in rs)
        print(f"| {key[0]} | {key[1]} | {params} | {a[0]['batch']} | {ta:.4f} | {tb:.4f} | {ta / tb:.2f} | "
              f"{rounds} | {mem(a):.0f} | {mem(b):.0f} | {cores(a):.2f} | {cores(b):.2f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Variants of the CPU recipe trained for the same wall-clock budget, then compared by FID.

    python3 bench/recipe_search.py --budget 600 --out DIR [--variants NAME,...] [--n 1000]
    python3 bench/recipe_search.py --steps 1500 --out DIR --variants base,seed1,bf16 --weights ema

Each variant is the recipe (configs/fashion_mnist_cpu.toml) with a few keys changed (VARIANTS
below, or --variant 'name:table.key=value;table.key=value' for one of your own; a key the
recipe's table lacks is added to it). The script times one training step of every variant
(`daed bench --config ...`), gives each round(budget / step time) steps (or --steps each) with
the learning-rate anneal over the same share of the run as the recipe's (950 of 4,450 steps),
trains it, samples its EMA and its raw weights (--weights picks; 50 DDIM steps at eta 1) and
computes FID against the first N training images (`daed eval curve`): the EMA (0.995, started
from the initial weights) still holds 0.995^steps of them, which weighs on the shortest runs.
It writes DIR/search.md and DIR/search.csv. Standard library only; DAED (default:
target/release/daed of this checkout) names the binary.
"""
import argparse
import csv
import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RECIPE = os.path.join(ROOT, "configs", "fashion_mnist_cpu.toml")
# The recipe itself, network size, attention placement and batch: the default search.
SEARCH = {
    "base": {},
    "ch48": {"unet.model_channels": "48"},
    "rb2": {"unet.num_res_blocks": "2"},
    "noattn": {"unet.attention_resolutions": "[]"},
    "attn14": {"unet.attention_resolutions": "[14, 7]"},
    "b32": {"train.batch_size": "32"},
    "b128": {"train.batch_size": "128"},
}
# Named with --variants only: bf16 training (CPUs with AVX512-BF16) and a second training seed,
# the run-to-run noise bf16 is compared against.
VARIANTS = {**SEARCH, "bf16": {"train.precision": '"bf16"'}, "seed1": {"train.seed": "1"}}
ANNEAL_SHARE = 950 / 4450


def edit(text, changes):
    """The TOML text with `table.key = value` lines replaced (top-level keys: `key`); a key its
    table lacks (e.g. `train.precision`) is added at the end of that table."""
    out, table, seen = [], "", set()

    def add_missing(table):
        for name in changes:
            if name not in seen and "." in name and name.split(".", 1)[0] == table:
                blank = 1 if out and not out[-1].strip() else 0
                out.insert(len(out) - blank, f"{name.split('.', 1)[1]} = {changes[name]}")
                seen.add(name)

    for line in text.splitlines():
        m = re.match(r"^\[(\w+)\]\s*$", line)
        if m:
            add_missing(table)
            table = m.group(1)
        m = re.match(r"^(\w+)\s*=", line)
        name = m and (f"{table}.{m.group(1)}" if table else m.group(1))
        if name in changes:
            line = f"{m.group(1)} = {changes[name]}"
            seen.add(name)
        out.append(line)
    add_missing(table)
    missing = set(changes) - seen
    if missing:
        sys.exit(f"{RECIPE}: no table or key {', '.join(sorted(missing))} to change")
    return "\n".join(out) + "\n"


def parse_variant(spec):
    """`name:table.key=value;...` -> (name, {table.key: value})."""
    name, _, rest = spec.partition(":")
    changes = {}
    for item in filter(None, rest.split(";")):
        key, eq, value = item.partition("=")
        if not eq or "." not in key:
            sys.exit(f"--variant {spec!r}: expected table.key=value, got {item!r}")
        changes[key.strip()] = value.strip()
    if not re.fullmatch(r"\w+", name):
        sys.exit(f"--variant {spec!r}: the name must be letters, digits or _")
    return name, changes


def run(cmd, log):
    """Runs `cmd`, its output to `log`; exits with the log's path when it fails."""
    with open(log, "w") as f:
        if subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT) != 0:
            sys.exit(f"{' '.join(cmd)} failed: see {log}")


def write_config(path, name, changes, extra=None):
    """The recipe with a variant's changes (and `extra`), written to `path`; no sample grids."""
    changes = {**changes, "name": f'"{name}"', "train.sample_every": "0", **(extra or {})}
    with open(path, "w") as f:
        f.write(edit(open(RECIPE).read(), changes))


def step_times(daed, configs, out):
    """Median training-step seconds of every config, from one `daed bench` run."""
    cmd = [daed, "bench", "--models", "", "--cases", "train", "--runs", "5"]
    for c in configs.values():
        cmd += ["--config", c]
    run(cmd + ["--out", os.path.join(out, "bench")], os.path.join(out, "bench.log"))
    # A bf16 config's row is NAME-bf16 (variant names have no '-').
    rows = json.load(open(f"{out}/bench/bench.json"))
    return {r["model"].removesuffix("-bf16"): r["median_s"] for r in rows}


def train_and_score(daed, config, name, steps, a):
    """Trains one variant, then scores the weights `a.weights` names; the last curve point of
    each."""
    run_dir = os.path.join(a.out, "runs", name)
    run([daed, "train", "--config", config, "--out", run_dir],
        os.path.join(a.out, f"{name}.train.log"))
    points = {}
    for weights in a.weights:
        # One curve per folder: its .json is the only one there, whatever daed names it.
        out = os.path.join(run_dir, f"quality_{weights}")
        flag = ["--no-ema"] if weights == "raw" else []
        run([daed, "eval", "curve", "--run", run_dir, "--reference", "fashion-mnist",
             "--split", "train", "--n", str(a.n), "--steps", "50", "--ddim", "--eta", "1",
             "--sample-batch", "250", "--checkpoints", str(steps), "--out", out] + flag,
            os.path.join(a.out, f"{name}.eval_{weights}.log"))
        (curve,) = glob.glob(os.path.join(out, "*.json"))
        with open(curve) as f:
            points[weights] = json.load(f)["points"][-1]
    return points


def write_tables(rows, out):
    """search.csv in run order, search.md best first (by the better of its FIDs)."""
    with open(os.path.join(out, "search.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out, "search.md"), "w") as f:
        f.write(f"| {' | '.join(rows[0])} |\n|{'---|' * len(rows[0])}\n")
        fids = [k for k in rows[0] if k.startswith("fid_")]
        for r in sorted(rows, key=lambda r: min(r[k] for k in fids)):
            f.write(f"| {' | '.join(str(v) for v in r.values())} |\n")
    print(open(os.path.join(out, "search.md")).read())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--budget", type=float, help="training seconds per variant")
    length.add_argument("--steps", type=int, help="the same training steps for every variant")
    p.add_argument("--out", required=True)
    p.add_argument("--variants", default=",".join(SEARCH), help="names from VARIANTS")
    p.add_argument("--variant", action="append", default=[], help="name:table.key=value;...")
    p.add_argument("--n", type=int, default=1000, help="samples and reference images for FID")
    p.add_argument("--weights", default="ema,raw", help="weights to score: ema, raw or both")
    a = p.parse_args()
    a.weights = a.weights.split(",")
    if not set(a.weights) <= {"ema", "raw"}:
        sys.exit(f"--weights: expected ema, raw or ema,raw, got {','.join(a.weights)!r}")
    if (a.steps is not None and a.steps < 1) or (a.budget is not None and a.budget <= 0):
        sys.exit("--steps and --budget must be positive")
    daed = os.environ.get("DAED", os.path.join(ROOT, "target", "release", "daed"))
    chosen = {}
    for name in filter(None, a.variants.split(",")):
        if name not in VARIANTS:
            sys.exit(f"--variants: unknown {name!r} (known: {', '.join(VARIANTS)})")
        chosen[name] = VARIANTS[name]
    chosen.update(parse_variant(s) for s in a.variant)
    os.makedirs(a.out, exist_ok=True)
    configs = {name: os.path.join(a.out, f"{name}.toml") for name in chosen}
    for name, changes in chosen.items():
        write_config(configs[name], name, changes)
    step_s = step_times(daed, configs, a.out)

    rows = []
    for name, changes in chosen.items():
        steps = a.steps or max(1, round(a.budget / step_s[name]))
        anneal = max(1, round(steps * ANNEAL_SHARE))
        # The length, its anneal, and one checkpoint at the end.
        write_config(configs[name], name, changes, {
            "train.steps": str(steps), "train.lr_anneal_last": str(anneal),
            "train.checkpoint_every": str(steps)})
        points = train_and_score(daed, configs[name], name, steps, a)
        rows.append({"variant": name,
                     "changes": "; ".join(f"{k}={v}" for k, v in changes.items()) or "-",
                     "step_s": round(step_s[name], 4), "steps": steps,
                     "train_s": round(points[a.weights[0]]["train_s"]),
                     "loss": round(points[a.weights[0]]["loss"], 4),
                     **{f"fid_{w}": round(points[w]["fid"], 2) for w in a.weights}})
        print(rows[-1], flush=True)
    write_tables(rows, a.out)


if __name__ == "__main__":
    main()

"""What runs on one CPU while the other idles: the serial work of a daed (or any) process.

    perf record -e sched:sched_switch -e cpu-clock -a -F 999 -D 22000 -o idle.data -- \\
        daed bench --models cifar10 --cases train --warmup 1 --runs 2 --precision bf16
    perf script -i idle.data -F comm,tid,cpu,time,event,ip,sym --no-inline > idle.txt
    python bench/idle_samples.py idle.txt [--comm daed] [--rows 14]

Each cpu-clock sample of an idle CPU (comm `swapper`) is matched with the other CPU's sample
nearest in time (within 1.5 ms); where that one belongs to the process, its symbol is counted.
Prints how many of the process's samples fell while the other CPU idled, then the symbols, each
with its count among all of the process's samples. Two CPUs (0 and 1) are assumed, as on the
machines daed's figures come from. Standard library only.
"""
import argparse
import bisect
import collections
import re

HEAD = re.compile(r"(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):")


def samples(path):
    """cpu-clock samples as (cpu, time, comm, leaf symbol); the symbol is on the header line
    without call chains and on the next line with them."""
    out, cur = [], None
    for line in open(path):
        if not line.strip():
            continue
        m = None if line.startswith("\t") else HEAD.match(line)
        if m:
            rest = line[m.end():].split(None, 1)
            cur = None
            if m.group(5) == "cpu-clock":
                cur = [int(m.group(3)), float(m.group(4)), m.group(1).strip(),
                       rest[1].strip() if len(rest) > 1 else None]
                out.append(cur)
        elif cur is not None and cur[3] is None:
            cur[3] = line.strip().split(None, 1)[-1]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("script", help="output of `perf script -F comm,tid,cpu,time,event,ip,sym`")
    ap.add_argument("--comm", default="daed", help="the process's command name (a prefix)")
    ap.add_argument("--rows", type=int, default=14)
    a = ap.parse_args()
    short = lambda s: re.sub(r"<.*?>", "", s or "?")[:90]
    per = {0: [], 1: []}
    for s in samples(a.script):
        per.setdefault(s[0], []).append(s)
    times = {c: [s[1] for s in per[c]] for c in per}
    ours = lambda s: s[2].startswith(a.comm)
    every = collections.Counter(short(s[3]) for c in per for s in per[c] if ours(s))
    serial = collections.Counter()
    for c in (0, 1):
        other = per[1 - c]
        for s in per[c]:
            if s[2] != "swapper":
                continue
            i = bisect.bisect_left(times[1 - c], s[1])
            near = [other[j] for j in (i - 1, i)
                    if 0 <= j < len(other) and abs(other[j][1] - s[1]) < 0.0015]
            if near:
                d = min(near, key=lambda x: abs(x[1] - s[1]))
                if ours(d):
                    serial[short(d[3])] += 1
    print(f"{sum(serial.values())} of {sum(every.values())} samples of {a.comm} ran while the "
          f"other CPU idled")
    print("| symbol | while the other idled | in all |\n|---|---|---|")
    for k, v in serial.most_common(a.rows):
        print(f"| {k} | {v} | {every[k]} |")


if __name__ == "__main__":
    main()

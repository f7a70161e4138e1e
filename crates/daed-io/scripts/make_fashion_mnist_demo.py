#!/usr/bin/env python3
"""Regenerate data/fashion-mnist-demo/: the first 2,000 Fashion-MNIST TEST images and labels.

Usage: python3 scripts/make_fashion_mnist_demo.py [SRC_DIR]
SRC_DIR holds the original t10k-*-idx*-ubyte.gz files (default ../../../shared/data/fashion-mnist).
Output is deterministic (gzip mtime 0), so re-running gives identical bytes.
"""
import gzip, os, struct, sys

N = 2000
here = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../../../shared/data/fashion-mnist")
dst = os.path.join(here, "../data/fashion-mnist-demo")

def write(name, data):
    with open(os.path.join(dst, name), "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as g:
            g.write(data)

img = gzip.open(os.path.join(src, "t10k-images-idx3-ubyte.gz")).read()
magic, n, h, w = struct.unpack(">IIII", img[:16])
assert magic == 0x803 and n >= N
write("t10k-images-idx3-ubyte.gz", struct.pack(">IIII", magic, N, h, w) + img[16:16 + N * h * w])

lab = gzip.open(os.path.join(src, "t10k-labels-idx1-ubyte.gz")).read()
magic, n = struct.unpack(">II", lab[:8])
assert magic == 0x801 and n >= N
write("t10k-labels-idx1-ubyte.gz", struct.pack(">II", magic, N) + lab[8:8 + N])

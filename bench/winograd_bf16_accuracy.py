"""How much accuracy bf16 loses in a Winograd convolution, against direct (im2col) bf16.

A numerical model, not daed's kernels: for random SiLU-like activations (C = 128 channels, 64
tiles) and 3x3 weights of std 1/sqrt(9C), it builds each F(m x m, 3 x 3) from its interpolation
points (A^T, G from the points; B^T solved so the 1-D correlation is exact, checked), rounds the
transformed operands U = G g G^T and V = B^T d B to bf16 (to nearest even) after an f32
transform, sums their products over channels exactly, and compares with an f64 direct
convolution. Printed per algorithm: the RMS error over the output's RMS, and the largest error
over the sum of the magnitudes of an output's terms; the f32 column rounds to f32 instead.

    .venv-bench/bin/python bench/winograd_bf16_accuracy.py     # numpy only; a few seconds
"""
import numpy as np

rng = np.random.default_rng(0)


def bf16(x):
    """Rounds to bfloat16 (nearest even), returned as float64."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def f32(x):
    return np.asarray(x, np.float32).astype(np.float64)


def matrices(m, r, points):
    """A^T (m x n), G (n x r), B^T (n x n) of F(m, r) over `points` plus infinity."""
    n = m + r - 1
    assert len(points) == n - 1
    at, g = np.zeros((m, n)), np.zeros((n, r))
    for j, p in enumerate(points):
        at[:, j] = [p**i for i in range(m)]
        norm = np.prod([p - q for q in points if q != p])
        g[j] = [p**k / norm for k in range(r)]
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1.0
    bt = np.zeros((n, n))
    rows = [at[i, :] * g[:, k] for i in range(m) for k in range(r)]
    for col in range(n):
        rhs = [1.0 if col == i + k else 0.0 for i in range(m) for k in range(r)]
        bt[:, col] = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    d, w = rng.standard_normal(n), rng.standard_normal(r)
    want = [sum(w[k] * d[i + k] for k in range(r)) for i in range(m)]
    assert np.allclose(at @ ((g @ w) * (bt @ d)), want), "not a correlation"
    return at, g, bt


def direct(d, w, m):
    out = np.zeros((d.shape[1], m, m))
    for a in range(m):
        for b in range(m):
            out[:, a, b] = np.einsum("ctij,cij->t", d[:, :, a : a + 3, b : b + 3], w)
    return out


def error(m, points, rounding, channels=128, tiles=64):
    n = m + 2
    d = rng.standard_normal((channels, tiles, n, n))
    d = d / (1 + np.exp(-d))  # SiLU-like activations
    w = rng.standard_normal((channels, 3, 3)) / np.sqrt(9 * channels)
    y, scale = direct(d, w, m), direct(np.abs(d), np.abs(w), m)
    if points is None:
        e = direct(rounding(d), rounding(w), m) - y
    else:
        at, g, bt = matrices(m, 3, points)
        u = np.einsum("ij,cjk,lk->cil", g, w, g)
        v = np.einsum("ij,ctjk,lk->ctil", bt, d, bt)
        prod = np.einsum("cil,ctil->til", rounding(f32(u)), rounding(f32(v)))
        e = np.einsum("ij,tjk,lk->til", at, prod, at) - y
    return np.sqrt((e**2).mean() / (y**2).mean()), np.abs(e / scale).max()


def main():
    cases = [
        ("direct (im2col)", 4, None),
        ("F(2x2,3x3) {0, 1, -1}", 2, [0, 1, -1]),
        ("F(3x3,3x3) {0, 1, -1, 2}", 3, [0, 1, -1, 2]),
        ("F(3x3,3x3) {0, 1, -1, 1/2}", 3, [0, 1, -1, 0.5]),
        ("F(4x4,3x3) {0, ±1, ±2} (daed's f32)", 4, [0, 1, -1, 2, -2]),
        ("F(4x4,3x3) {0, ±1, ±1/2}", 4, [0, 1, -1, 0.5, -0.5]),
        ("F(4x4,3x3) {0, ±1, 1/2, -2}", 4, [0, 1, -1, 0.5, -2]),
        ("F(4x4,3x3) {0, ±1, 2, -1/2}", 4, [0, 1, -1, 2, -0.5]),
    ]
    print("| algorithm | bf16: RMS error / RMS | bf16: max error / term sum | f32: RMS error / RMS |")
    print("|---|---|---|---|")
    for name, m, points in cases:
        rms, worst = error(m, points, bf16)
        rms32, _ = error(m, points, f32)
        print(f"| {name} | {rms:.2e} | {worst:.2e} | {rms32:.2e} |")


if __name__ == "__main__":
    main()

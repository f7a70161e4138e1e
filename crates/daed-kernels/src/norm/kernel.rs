//! GroupNorm statistics and the per-channel multiply-add (+ SiLU) on raw f32 slices, forward and
//! backward, parallel over groups / channel planes.
//!
//! `x` is `[b, c, hw]` row-major. The statistics of group `g` of image `b` cover the contiguous
//! block of channels `g * c/G .. (g + 1) * c/G`.
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::zeros::fill_from;

/// At least this many elements per rayon task, so small planes (4x4) are not scheduled one by one.
const MIN_TASK: usize = 16 * 1024;

/// Elements of a plane whose SiLU gradient factors are computed together.
const SPAN: usize = 256;

/// Planes of `plane` elements per rayon task.
fn planes_per_task(plane: usize) -> usize {
    MIN_TASK.div_ceil(plane.max(1)).max(1)
}

/// Mean and `1 / sqrt(var + eps)` (biased variance) of each block of `block` elements:
/// `[mean, rstd]` pairs, one per block.
pub fn group_stats(x: &[f32], block: usize, eps: f64) -> Vec<f32> {
    assert!(
        block > 0 && x.len().is_multiple_of(block),
        "group stats: length"
    );
    let mut out = vec![0.0f32; 2 * (x.len() / block)];
    out.par_chunks_mut(2)
        .zip(x.par_chunks(block))
        .for_each(|(o, xs)| {
            let n = xs.len() as f64;
            let mean = sum8(xs.len(), |i| xs[i] as f64) / n;
            let var = sum8(xs.len(), |i| (xs[i] as f64 - mean).powi(2)) / n;
            o[0] = mean as f32;
            o[1] = (1.0 / (var + eps).sqrt()) as f32;
        });
    out
}

/// `f(0) + ... + f(n - 1)` in f64, in eight running sums (term `i` into sum `i % 8`) added
/// pairwise at the end: a fixed order (the same bits on every CPU and thread count) whose eight
/// chains of adds run side by side instead of one after the other.
#[inline(always)]
fn sum8(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let whole = n - n % 8;
    for i0 in (0..whole).step_by(8) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += f(i0 + k);
        }
    }
    for (a, i) in acc.iter_mut().zip(whole..n) {
        *a += f(i);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Input gradient of [`group_stats`] given the gradients of its outputs (`[dmean, drstd]` pairs)
/// and the outputs themselves.
pub fn group_stats_backward(x: &[f32], block: usize, stats: &[f32], grad: &[f32]) -> Vec<f32> {
    assert!(
        block > 0 && x.len().is_multiple_of(block),
        "group stats backward: length"
    );
    assert_eq!(
        stats.len(),
        2 * (x.len() / block),
        "group stats backward: stats"
    );
    assert_eq!(grad.len(), stats.len(), "group stats backward: gradient");
    let fill = |dx: &mut [MaybeUninit<f32>]| {
        dx.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .zip(stats.par_chunks(2).zip(grad.par_chunks(2)))
            .for_each(|((d, xs), (s, gr))| {
                let n = block as f32;
                let (mean, rstd) = (s[0], s[1]);
                // d rstd / d x_i = -rstd^3 (x_i - mean) / n; d mean / d x_i = 1 / n
                let c0 = gr[0] / n;
                let c1 = -gr[1] * rstd * rstd * rstd / n;
                fill_from(d, xs.iter().map(|&v| c0 + c1 * (v - mean)));
            })
    };
    // SAFETY: every block of `dx` is written from its block of `x`.
    unsafe { crate::zeros::written(x.len(), fill) }
}

/// Per-plane coefficients of `act((x - m) * a + o)`, one of each per plane.
#[derive(Clone, Copy)]
pub struct Coefs<'a> {
    pub m: &'a [f32],
    pub a: &'a [f32],
    pub o: &'a [f32],
}

impl Coefs<'_> {
    fn check(&self, x: &[f32], plane: usize) {
        let n = self.a.len();
        assert!(
            plane > 0 && x.len() == n * plane && self.m.len() == n && self.o.len() == n,
            "affine: lengths"
        );
    }
}

/// `y = act((x - m) * a + o)` with one `m`, `a`, `o` per plane of `plane` elements; `act` is
/// SiLU or the identity. Centring before the multiply keeps a large mean from costing
/// precision.
pub fn affine_act(x: &[f32], plane: usize, c: Coefs, silu: bool) -> Vec<f32> {
    c.check(x, plane);
    let per = planes_per_task(plane);
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(plane * per)
            .zip(x.par_chunks(plane * per))
            .enumerate()
            .for_each(|(k, (ys, xs))| {
                for (j, (yp, xp)) in ys.chunks_mut(plane).zip(xs.chunks(plane)).enumerate() {
                    let q = k * per + j;
                    let (m, a, o) = (c.m[q], c.a[q], c.o[q]);
                    let yp = fill_from(yp, xp.iter().map(|&x| (x - m) * a + o));
                    if silu {
                        crate::vexp::silu_in_place(yp);
                    }
                }
            })
    };
    // SAFETY: every value is written from `x` before the SiLU reads it.
    unsafe { crate::zeros::written(x.len(), fill) }
}

/// Gradients of [`affine_act`] (each only when asked for).
pub struct AffineGrads {
    pub x: Option<Vec<f32>>,
    pub m: Option<Vec<f32>>,
    pub a: Option<Vec<f32>>,
    pub o: Option<Vec<f32>>,
}

/// Backward of [`affine_act`] given the output gradient `dy`; `need` is `[x, m, a, o]`.
pub fn affine_act_backward(
    x: &[f32],
    plane: usize,
    c: Coefs,
    silu: bool,
    dy: &[f32],
    need: [bool; 4],
) -> AffineGrads {
    c.check(x, plane);
    assert_eq!(dy.len(), x.len(), "affine backward: gradient length");
    let n = c.a.len();
    let mut dx = if need[0] {
        crate::zeros::zeros(x.len())
    } else {
        Vec::new()
    };
    // Per plane: sum(dz * (x - m)) and sum(dz).
    let (mut sa, mut so) = (vec![0.0f32; n], vec![0.0f32; n]);
    let per = planes_per_task(plane);
    let body = |dx: Option<&mut [f32]>, sa: &mut [f32], so: &mut [f32], k: usize| {
        let first = k * per;
        let count = sa.len();
        let xs = &x[first * plane..][..count * plane];
        let dys = &dy[first * plane..][..count * plane];
        let mut dxp = dx.map(|d| d.chunks_mut(plane));
        // SiLU's pre-activation and sigmoid and the gradient before it, a span of a plane at a time.
        let (mut zs, mut ss, mut dzs) = ([0.0f32; SPAN], [0.0f32; SPAN], [0.0f32; SPAN]);
        for j in 0..count {
            let (xp, dyp) = (&xs[j * plane..][..plane], &dys[j * plane..][..plane]);
            let (mv, av, ov) = (c.m[first + j], c.a[first + j], c.o[first + j]);
            let mut dxj = dxp.as_mut().and_then(|it| it.next());
            let (mut acc_a, mut acc_o) = (0.0f64, 0.0f64);
            for i0 in (0..plane).step_by(SPAN) {
                let span = SPAN.min(plane - i0);
                let (z, s) = (&mut zs[..span], &mut ss[..span]);
                if silu {
                    for (z, &x) in z.iter_mut().zip(&xp[i0..]) {
                        *z = (x - mv) * av + ov;
                    }
                    crate::vexp::sigmoid_into(z, s);
                }
                let dz = &mut dzs[..span];
                for (k, dz) in dz.iter_mut().enumerate() {
                    let i = i0 + k;
                    *dz = if silu {
                        dyp[i] * s[k] * (1.0 + z[k] * (1.0 - s[k]))
                    } else {
                        dyp[i]
                    };
                }
                acc_a += sum8(span, |k| (dz[k] * (xp[i0 + k] - mv)) as f64);
                acc_o += sum8(span, |k| dz[k] as f64);
                if let Some(d) = dxj.as_deref_mut() {
                    for (d, &dz) in d[i0..][..span].iter_mut().zip(dz.iter()) {
                        *d = dz * av;
                    }
                }
            }
            sa[j] = acc_a as f32;
            so[j] = acc_o as f32;
        }
    };
    if need[0] {
        dx.par_chunks_mut(plane * per)
            .zip(sa.par_chunks_mut(per).zip(so.par_chunks_mut(per)))
            .enumerate()
            .for_each(|(k, (dx, (sa, so)))| body(Some(dx), sa, so, k));
    } else {
        sa.par_chunks_mut(per)
            .zip(so.par_chunks_mut(per))
            .enumerate()
            .for_each(|(k, (sa, so))| body(None, sa, so, k));
    }
    let dm = need[1].then(|| so.iter().zip(c.a).map(|(s, a)| -s * a).collect());
    AffineGrads {
        x: need[0].then_some(dx),
        m: dm,
        a: need[2].then_some(sa),
        o: need[3].then_some(so),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 2001) as f32 / 500.0 - 2.0
            })
            .collect()
    }

    /// Central finite differences in f64 of a scalar function of `v` at every coordinate.
    fn numeric(v: &[f32], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let base: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        (0..v.len())
            .map(|i| {
                let (mut p, mut m) = (base.clone(), base.clone());
                p[i] += 1e-5;
                m[i] -= 1e-5;
                (f(&p) - f(&m)) / 2e-5
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f64], tol: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= tol * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn eight_running_sums_add_every_term_once() {
        for n in [0, 1, 7, 8, 9, 16, 29, 300] {
            // Distinct powers of two: any term dropped or added twice changes the sum.
            let got = sum8(n, |i| (2.0f64).powi(i as i32 % 40) * (1 + i / 40) as f64);
            let want: f64 = (0..n)
                .map(|i| (2.0f64).powi(i as i32 % 40) * (1 + i / 40) as f64)
                .sum();
            assert_eq!(got, want, "n = {n}");
        }
    }

    #[test]
    fn stats_and_their_gradient() {
        let (block, eps) = (12, 1e-5);
        let x = data(3 * block, 1);
        let st = group_stats(&x, block, eps);
        for (g, xs) in x.chunks(block).enumerate() {
            let m = xs.iter().map(|&v| v as f64).sum::<f64>() / block as f64;
            let v = xs.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / block as f64;
            assert!((st[2 * g] as f64 - m).abs() < 1e-6);
            assert!((st[2 * g + 1] as f64 - 1.0 / (v + eps).sqrt()).abs() < 1e-5);
        }
        let gr = data(st.len(), 2);
        let dx = group_stats_backward(&x, block, &st, &gr);
        let want = numeric(&x, |x| {
            x.chunks(block)
                .enumerate()
                .map(|(g, xs)| {
                    let m = xs.iter().sum::<f64>() / block as f64;
                    let v = xs.iter().map(|v| (v - m).powi(2)).sum::<f64>() / block as f64;
                    gr[2 * g] as f64 * m + gr[2 * g + 1] as f64 / (v + eps).sqrt()
                })
                .sum()
        });
        close(&dx, &want, 1e-3, "dx");
    }

    #[test]
    fn affine_silu_and_its_gradients() {
        let plane = 5;
        let (x, m, a, o) = (data(4 * plane, 3), data(4, 7), data(4, 4), data(4, 5));
        let dy = data(4 * plane, 6);
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        for silu in [false, true] {
            let act = |z: f64| if silu { z / (1.0 + (-z).exp()) } else { z };
            let c = Coefs {
                m: &m,
                a: &a,
                o: &o,
            };
            let y = affine_act(&x, plane, c, silu);
            let z = |v: f64, q: usize, m: &[f64], a: &[f64], o: &[f64]| (v - m[q]) * a[q] + o[q];
            let (md, ad, od) = (f64s(&m), f64s(&a), f64s(&o));
            let want: Vec<f64> = (0..x.len())
                .map(|i| act(z(x[i] as f64, i / plane, &md, &ad, &od)))
                .collect();
            close(&y, &want, 1e-5, "y");
            let loss = |x: &[f64], m: &[f64], a: &[f64], o: &[f64]| {
                (0..x.len())
                    .map(|i| dy[i] as f64 * act(z(x[i], i / plane, m, a, o)))
                    .sum::<f64>()
            };
            let xd = f64s(&x);
            let g = affine_act_backward(&x, plane, c, silu, &dy, [true; 4]);
            let want_x = numeric(&x, |x| loss(x, &md, &ad, &od));
            close(g.x.as_deref().unwrap(), &want_x, 1e-3, "dx");
            let want_m = numeric(&m, |m| loss(&xd, m, &ad, &od));
            close(g.m.as_deref().unwrap(), &want_m, 1e-3, "dm");
            let want_a = numeric(&a, |a| loss(&xd, &md, a, &od));
            close(g.a.as_deref().unwrap(), &want_a, 1e-3, "da");
            let want_o = numeric(&o, |o| loss(&xd, &md, &ad, o));
            close(g.o.as_deref().unwrap(), &want_o, 1e-3, "do");
            let only = affine_act_backward(&x, plane, c, silu, &dy, [false, false, true, false]);
            assert!(only.x.is_none() && only.m.is_none() && only.o.is_none());
            close(only.a.as_deref().unwrap(), &want_a, 1e-3, "da alone");
        }
    }
}

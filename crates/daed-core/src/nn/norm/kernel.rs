//! GroupNorm statistics and the per-channel multiply-add (+ SiLU) on raw f32 slices, forward and
//! backward, parallel over groups / channel planes.
//!
//! `x` is `[b, c, hw]` row-major. The statistics of group `g` of image `b` cover the contiguous
//! block of channels `g * c/G .. (g + 1) * c/G`.
use rayon::prelude::*;

/// At least this many elements per rayon task, so small planes (4x4) are not scheduled one by one.
const MIN_TASK: usize = 16 * 1024;

/// Planes of `plane` elements per rayon task.
fn planes_per_task(plane: usize) -> usize {
    MIN_TASK.div_ceil(plane.max(1)).max(1)
}

/// Mean and `1 / sqrt(var + eps)` (biased variance) of each block of `block` elements:
/// `[mean, rstd]` pairs, one per block.
pub fn group_stats(x: &[f32], block: usize, eps: f64) -> Vec<f32> {
    assert!(block > 0 && x.len() % block == 0, "group stats: length");
    let mut out = vec![0.0f32; 2 * (x.len() / block)];
    out.par_chunks_mut(2)
        .zip(x.par_chunks(block))
        .for_each(|(o, xs)| {
            let n = xs.len() as f64;
            let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            o[0] = mean as f32;
            o[1] = (1.0 / (var + eps).sqrt()) as f32;
        });
    out
}

/// Input gradient of [`group_stats`] given the gradients of its outputs (`[dmean, drstd]` pairs)
/// and the outputs themselves.
pub fn group_stats_backward(x: &[f32], block: usize, stats: &[f32], grad: &[f32]) -> Vec<f32> {
    assert!(
        block > 0 && x.len() % block == 0,
        "group stats backward: length"
    );
    assert_eq!(
        stats.len(),
        2 * (x.len() / block),
        "group stats backward: stats"
    );
    assert_eq!(grad.len(), stats.len(), "group stats backward: gradient");
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(stats.par_chunks(2).zip(grad.par_chunks(2)))
        .for_each(|((d, xs), (s, gr))| {
            let n = block as f32;
            let (mean, rstd) = (s[0], s[1]);
            // d rstd / d x_i = -rstd^3 (x_i - mean) / n; d mean / d x_i = 1 / n
            let c0 = gr[0] / n;
            let c1 = -gr[1] * rstd * rstd * rstd / n;
            for (d, &v) in d.iter_mut().zip(xs) {
                *d = c0 + c1 * (v - mean);
            }
        });
    dx
}

#[inline]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// `y = act(x * a + o)` with one `a`, `o` per plane of `plane` elements; `act` is SiLU or the
/// identity.
pub fn affine_act(x: &[f32], plane: usize, a: &[f32], o: &[f32], silu: bool) -> Vec<f32> {
    assert!(
        plane > 0 && x.len() == a.len() * plane && a.len() == o.len(),
        "affine: lengths"
    );
    let mut y = vec![0.0f32; x.len()];
    let per = planes_per_task(plane);
    y.par_chunks_mut(plane * per)
        .zip(x.par_chunks(plane * per))
        .zip(a.par_chunks(per).zip(o.par_chunks(per)))
        .for_each(|((ys, xs), (a, o))| {
            for (((yp, xp), &a), &o) in ys.chunks_mut(plane).zip(xs.chunks(plane)).zip(a).zip(o) {
                if silu {
                    for (y, &x) in yp.iter_mut().zip(xp) {
                        let z = x * a + o;
                        *y = z * sigmoid(z);
                    }
                } else {
                    for (y, &x) in yp.iter_mut().zip(xp) {
                        *y = x * a + o;
                    }
                }
            }
        });
    y
}

/// Gradients of [`affine_act`]: `dx`, `da`, `do` (each only when asked for).
pub struct AffineGrads {
    pub x: Option<Vec<f32>>,
    pub a: Option<Vec<f32>>,
    pub o: Option<Vec<f32>>,
}

/// Backward of [`affine_act`] given the output gradient `dy`; `need` is `[x, a, o]`.
pub fn affine_act_backward(
    x: &[f32],
    plane: usize,
    a: &[f32],
    o: &[f32],
    silu: bool,
    dy: &[f32],
    need: [bool; 3],
) -> AffineGrads {
    assert!(
        plane > 0 && x.len() == a.len() * plane && a.len() == o.len(),
        "affine: lengths"
    );
    assert_eq!(dy.len(), x.len(), "affine backward: gradient length");
    let mut dx = if need[0] {
        vec![0.0f32; x.len()]
    } else {
        Vec::new()
    };
    let (mut da, mut d_o) = (vec![0.0f32; a.len()], vec![0.0f32; a.len()]);
    let per = planes_per_task(plane);
    let body = |dx: Option<&mut [f32]>, da: &mut [f32], d_o: &mut [f32], k: usize| {
        let first = k * per;
        let count = da.len();
        let xs = &x[first * plane..][..count * plane];
        let dys = &dy[first * plane..][..count * plane];
        let mut dxp = dx.map(|d| d.chunks_mut(plane));
        for j in 0..count {
            let (xp, dyp) = (&xs[j * plane..][..plane], &dys[j * plane..][..plane]);
            let (av, ov) = (a[first + j], o[first + j]);
            let mut dxj = dxp.as_mut().and_then(|it| it.next());
            let (mut sa, mut so) = (0.0f64, 0.0f64);
            for i in 0..plane {
                let dz = if silu {
                    let z = xp[i] * av + ov;
                    let s = sigmoid(z);
                    dyp[i] * s * (1.0 + z * (1.0 - s))
                } else {
                    dyp[i]
                };
                sa += (dz * xp[i]) as f64;
                so += dz as f64;
                if let Some(d) = dxj.as_deref_mut() {
                    d[i] = dz * av;
                }
            }
            da[j] = sa as f32;
            d_o[j] = so as f32;
        }
    };
    if need[0] {
        dx.par_chunks_mut(plane * per)
            .zip(da.par_chunks_mut(per).zip(d_o.par_chunks_mut(per)))
            .enumerate()
            .for_each(|(k, (dx, (da, d_o)))| body(Some(dx), da, d_o, k));
    } else {
        da.par_chunks_mut(per)
            .zip(d_o.par_chunks_mut(per))
            .enumerate()
            .for_each(|(k, (da, d_o))| body(None, da, d_o, k));
    }
    AffineGrads {
        x: need[0].then_some(dx),
        a: need[1].then_some(da),
        o: need[2].then_some(d_o),
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
        let (x, a, o) = (data(4 * plane, 3), data(4, 4), data(4, 5));
        let dy = data(4 * plane, 6);
        for silu in [false, true] {
            let act = |z: f64| if silu { z / (1.0 + (-z).exp()) } else { z };
            let y = affine_act(&x, plane, &a, &o, silu);
            let want: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| act(v as f64 * a[i / plane] as f64 + o[i / plane] as f64))
                .collect();
            close(&y, &want, 1e-5, "y");
            let loss = |x: &[f64], a: &[f64], o: &[f64]| {
                x.iter()
                    .enumerate()
                    .map(|(i, v)| dy[i] as f64 * act(v * a[i / plane] + o[i / plane]))
                    .sum::<f64>()
            };
            let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let g = affine_act_backward(&x, plane, &a, &o, silu, &dy, [true, true, true]);
            close(
                g.x.as_deref().unwrap(),
                &numeric(&x, |x| loss(x, &f64s(&a), &f64s(&o))),
                1e-3,
                "dx",
            );
            close(
                g.a.as_deref().unwrap(),
                &numeric(&a, |a| loss(&f64s(&x), a, &f64s(&o))),
                1e-3,
                "da",
            );
            close(
                g.o.as_deref().unwrap(),
                &numeric(&o, |o| loss(&f64s(&x), &f64s(&a), o)),
                1e-3,
                "do",
            );
            let only = affine_act_backward(&x, plane, &a, &o, silu, &dy, [false, true, false]);
            assert!(only.x.is_none() && only.o.is_none());
            close(
                only.a.as_deref().unwrap(),
                &numeric(&a, |a| loss(&f64s(&x), a, &f64s(&o))),
                1e-3,
                "da alone",
            );
        }
    }
}

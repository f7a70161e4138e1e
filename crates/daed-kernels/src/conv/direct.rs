//! Direct convolution for layers with few output channels: a U-Net's last layer (128 -> 3,
//! 32 -> 1), stride 1.
//!
//! im2col + GEMM does badly there: the GEMM has 1 to 4 rows (forward) or an inner dimension of 1
//! to 4 (input gradient), while the im2col buffer is `9 * ci` times the image. The CIFAR-10
//! U-Net's output convolution took 15 ms forward and 55 ms backward per training step that way
//! (8-15 GFLOP/s). Here each image is laid on a zero-padded grid (`h + 2 ph` rows of `w + 2 pw`),
//! and outputs are computed on rows of the same width (the extra columns dropped at the end), so
//! that every kernel tap is one long contiguous run: `y += w * x[shifted]` for the forward, the
//! same with the roles swapped for the input gradient, and one dot product per weight (in 16
//! fixed lanes) for the weight gradient. Images run in parallel and each sum has one fixed order
//! (weight-gradient chunks of images fixed by their number), so the bits do not depend on the
//! thread count; plain multiplies and adds, so they do not depend on the CPU's features either.
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::kernel::{fixed_chunks, sum_in_order, Geom};
use crate::lanes::{axpy, dot_into, LANES};
use crate::zeros::{copy_into, fill_from};

/// At most this many output channels.
const MAX_OUT: usize = 4;

/// Whether a convolution of this geometry runs here: at most [`MAX_OUT`] output channels,
/// stride 1.
pub fn applies(g: &Geom) -> bool {
    g.co <= MAX_OUT && (g.sh, g.sw) == (1, 1)
}

/// The padded grid of a geometry.
struct Grid {
    /// Row length: `w + 2 pw`.
    wp: usize,
    /// One padded plane: `(h + 2 ph) * wp` values and `kw` zeros of slack, so that the last
    /// tap's run stays inside.
    plane: usize,
    /// One output plane on the grid's rows: `ho * wp` (columns `wo..wp` of each row unused).
    run: usize,
    /// Kernel taps.
    taps: usize,
}

impl Grid {
    fn new(g: &Geom) -> Self {
        let wp = g.w + 2 * g.pw;
        Self {
            wp,
            plane: (g.h + 2 * g.ph) * wp + g.kw,
            run: g.ho * wp,
            taps: g.kh * g.kw,
        }
    }

    /// Where tap `t` (row-major) of the kernel starts its run in a padded plane.
    fn shift(&self, g: &Geom, t: usize) -> usize {
        (t / g.kw) * self.wp + t % g.kw
    }

    /// Image `xi`'s `ci` planes onto the padded grid, in `out`.
    fn pad(&self, g: &Geom, xi: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.resize(g.ci * self.plane, 0.0);
        for (src, dst) in xi
            .chunks_exact(g.h * g.w)
            .zip(out.chunks_exact_mut(self.plane))
        {
            for (row, from) in src.chunks_exact(g.w).enumerate() {
                dst[(row + g.ph) * self.wp + g.pw..][..g.w].copy_from_slice(from);
            }
        }
    }

    /// `ho x wo` planes onto the grid's rows (zeros in the unused columns), in `out`.
    fn widen(&self, g: &Geom, planes: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.resize(planes.len() / g.p() * self.run, 0.0);
        for (src, dst) in planes
            .chunks_exact(g.p())
            .zip(out.chunks_exact_mut(self.run))
        {
            for (from, to) in src.chunks_exact(g.wo).zip(dst.chunks_exact_mut(self.wp)) {
                to[..g.wo].copy_from_slice(from);
            }
        }
    }
}

/// Forward convolution (`n * co * ho * wo`).
pub fn forward(g: &Geom, x: &[f32], wt: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert!(
        applies(g),
        "direct convolution: more than {MAX_OUT} outputs or stride > 1"
    );
    assert_eq!(x.len(), g.n * g.x_len(), "direct convolution: input length");
    assert_eq!(wt.len(), g.co * g.k(), "direct convolution: weight length");
    let grid = Grid::new(g);
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(g.y_len())
            .zip(x.par_chunks(g.x_len()))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(xp, yw), (yi, xi)| {
                    grid.pad(g, xi, xp);
                    yw.clear();
                    yw.resize(g.co * grid.run, 0.0);
                    for (c, xc) in xp.chunks_exact(grid.plane).enumerate() {
                        for t in 0..grid.taps {
                            let src = &xc[grid.shift(g, t)..][..grid.run];
                            for (o, yo) in yw.chunks_exact_mut(grid.run).enumerate() {
                                axpy(yo, wt[(o * g.ci + c) * grid.taps + t], src);
                            }
                        }
                    }
                    for (o, (dst, src)) in yi
                        .chunks_exact_mut(g.p())
                        .zip(yw.chunks_exact(grid.run))
                        .enumerate()
                    {
                        let b = bias.map_or(0.0, |b| b[o]);
                        for (to, from) in dst.chunks_exact_mut(g.wo).zip(src.chunks_exact(grid.wp))
                        {
                            fill_from(to, from.iter().map(|s| s + b));
                        }
                    }
                },
            );
    };
    // SAFETY: every image's `co` planes are written row by row (`ho` rows of `wo`).
    unsafe { crate::zeros::written(g.n * g.y_len(), fill) }
}

/// The input gradient (`n * ci * h * w`) given the output gradient `dy`.
pub fn input_gradient(g: &Geom, wt: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(
        applies(g),
        "direct convolution: more than {MAX_OUT} outputs or stride > 1"
    );
    assert_eq!(
        dy.len(),
        g.n * g.y_len(),
        "direct convolution: gradient length"
    );
    let grid = Grid::new(g);
    let fill = |dx: &mut [MaybeUninit<f32>]| {
        dx.par_chunks_mut(g.x_len())
            .zip(dy.par_chunks(g.y_len()))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(dyw, dxp), (dxi, dyi)| {
                    grid.widen(g, dyi, dyw);
                    dxp.clear();
                    dxp.resize(g.ci * grid.plane, 0.0);
                    for (c, dc) in dxp.chunks_exact_mut(grid.plane).enumerate() {
                        for t in 0..grid.taps {
                            let dst = &mut dc[grid.shift(g, t)..][..grid.run];
                            for (o, dyo) in dyw.chunks_exact(grid.run).enumerate() {
                                axpy(dst, wt[(o * g.ci + c) * grid.taps + t], dyo);
                            }
                        }
                    }
                    for (dst, src) in dxi
                        .chunks_exact_mut(g.h * g.w)
                        .zip(dxp.chunks_exact(grid.plane))
                    {
                        for (row, to) in dst.chunks_exact_mut(g.w).enumerate() {
                            copy_into(to, &src[(row + g.ph) * grid.wp + g.pw..][..g.w]);
                        }
                    }
                },
            );
    };
    // SAFETY: every image's `ci` planes are written row by row (`h` rows of `w`).
    unsafe { crate::zeros::written(g.n * g.x_len(), fill) }
}

/// The weight gradient (`co * ci * kh * kw`): fixed chunks of images, each summed in order on
/// one thread ([`LANES`] lanes per weight), then the chunks in order.
pub fn weight_gradient(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(
        applies(g),
        "direct convolution: more than {MAX_OUT} outputs or stride > 1"
    );
    assert_eq!(x.len(), g.n * g.x_len(), "direct convolution: input length");
    assert_eq!(
        dy.len(),
        g.n * g.y_len(),
        "direct convolution: gradient length"
    );
    let grid = Grid::new(g);
    let (per_chunk, chunks) = fixed_chunks(g.n);
    let partial: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|chunk| {
            let mut lanes = vec![[0.0f32; LANES]; g.co * g.k()];
            let (mut xp, mut dyw) = (Vec::new(), Vec::new());
            for img in chunk * per_chunk..((chunk + 1) * per_chunk).min(g.n) {
                grid.pad(g, &x[img * g.x_len()..][..g.x_len()], &mut xp);
                grid.widen(g, &dy[img * g.y_len()..][..g.y_len()], &mut dyw);
                for (c, xc) in xp.chunks_exact(grid.plane).enumerate() {
                    for (o, dyo) in dyw.chunks_exact(grid.run).enumerate() {
                        for t in 0..grid.taps {
                            let acc = &mut lanes[(o * g.ci + c) * grid.taps + t];
                            dot_into(acc, dyo, &xc[grid.shift(g, t)..][..grid.run]);
                        }
                    }
                }
            }
            lanes.iter().map(|l| l.iter().sum()).collect()
        })
        .collect();
    sum_in_order(partial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::kernel::{backward_grouped, forward_grouped, Engine, Need};

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 1999) as f32 / 999.5) - 1.0)
            .collect()
    }

    /// Input shape, weight shape, padding: the U-Nets' output layers, an odd side, a kernel
    /// wider than tall, a 1x1, and padding larger than the kernel reaches.
    const CASES: [([usize; 4], [usize; 4], [usize; 2]); 5] = [
        ([3, 40, 8, 8], [3, 40, 3, 3], [1, 1]),
        ([2, 16, 7, 7], [1, 16, 3, 3], [1, 1]),
        ([2, 5, 6, 9], [4, 5, 1, 5], [0, 2]),
        ([3, 6, 5, 5], [2, 6, 1, 1], [0, 0]),
        ([1, 3, 4, 4], [2, 3, 3, 3], [2, 2]),
    ];

    /// Agreement to `1e-5` of the sum of the absolute terms' scale (the largest `|value|`).
    fn close(ours: &[f32], theirs: &[f32], what: &str) {
        assert_eq!(ours.len(), theirs.len(), "{what}: length");
        let scale = theirs.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{what}[{i}]: {a} against {b}"
            );
        }
    }

    #[test]
    fn forward_and_gradients_match_im2col() {
        for (xs, ws, pad) in CASES {
            let g = Geom::new(xs, ws, [1, 1], pad).unwrap();
            assert!(applies(&g), "{xs:?} {ws:?}");
            let (x, w, b, dy) = (
                data(g.n * g.x_len(), 1),
                data(g.co * g.k(), 2),
                data(g.co, 3),
                data(g.n * g.y_len(), 4),
            );
            let engine = Engine::for_jobs(g.n);
            let y = forward_grouped(&g, &x, &w, Some(&b), 1, engine);
            close(
                &forward(&g, &x, &w, Some(&b)),
                &y,
                &format!("{xs:?} forward"),
            );
            let need = Need {
                x: true,
                weight: true,
                bias: false,
            };
            let grads = backward_grouped(&g, &x, &w, &dy, need, 1, engine);
            let dx = input_gradient(&g, &w, &dy);
            close(&dx, &grads.x.unwrap(), &format!("{xs:?} input gradient"));
            let dw = weight_gradient(&g, &x, &dy);
            close(
                &dw,
                &grads.weight.unwrap(),
                &format!("{xs:?} weight gradient"),
            );
        }
    }

    #[test]
    fn bits_do_not_depend_on_threads() {
        let g = Geom::new([13, 8, 9, 9], [3, 8, 3, 3], [1, 1], [1, 1]).unwrap();
        let (x, w, dy) = (
            data(g.n * g.x_len(), 5),
            data(g.co * g.k(), 6),
            data(g.n * g.y_len(), 7),
        );
        let run = |threads: usize| {
            crate::parallel::on_threads(threads, || {
                [
                    forward(&g, &x, &w, None),
                    input_gradient(&g, &w, &dy),
                    weight_gradient(&g, &x, &dy),
                ]
                .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert_eq!(one, run(threads), "at {threads} threads");
        }
    }

    #[test]
    fn only_few_outputs_at_stride_one_fit() {
        let fits = |ws: [usize; 4], stride: usize| {
            applies(&Geom::new([1, 4, 8, 8], ws, [stride, stride], [1, 1]).unwrap())
        };
        assert!(fits([4, 4, 3, 3], 1));
        assert!(!fits([5, 4, 3, 3], 1));
        assert!(!fits([3, 4, 3, 3], 2));
    }
}

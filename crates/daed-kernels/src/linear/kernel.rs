//! The linear layer on f32 slices: one GEMM per image (forward and input gradient), the weight
//! gradient summed over fixed chunks of images in order, so the bits do not depend on the
//! thread count.
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::Layout;
use crate::conv::kernel::{fixed_chunks, matmul_strided, sum_in_order, Engine, Mat, Need};
use crate::zeros::fill_from;

impl Layout {
    /// One image's values `s` as a `T x C` matrix (token by channel).
    fn view(self, s: &[f32], [t, c]: [usize; 2]) -> Mat {
        match self {
            Layout::Tokens => Mat::rows(s, c),
            Layout::Channels => Mat::transposed(s, t),
        }
    }
}

/// The sizes and layouts of one call.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    /// Images.
    pub n: usize,
    /// Tokens per image.
    pub t: usize,
    /// Input channels.
    pub ci: usize,
    /// Output channels.
    pub co: usize,
    /// `[input, output]` layouts.
    pub layouts: [Layout; 2],
}

impl Dims {
    fn x_len(&self) -> usize {
        self.t * self.ci
    }

    fn y_len(&self) -> usize {
        self.t * self.co
    }

    /// Image `x`'s input as `T x C_in`.
    fn x_view(&self, x: &[f32]) -> Mat {
        self.layouts[0].view(x, [self.t, self.ci])
    }

    /// Image `y`'s output (or output gradient) as `T x C_out`.
    fn y_view(&self, y: &[f32]) -> Mat {
        self.layouts[1].view(y, [self.t, self.co])
    }

    /// The GEMMs' engine for `jobs` pieces of work: bf16 when the caller's scope is.
    fn engine(&self, jobs: usize) -> Engine {
        Engine {
            bf16: crate::precision::bf16_active(),
            ..Engine::for_jobs(jobs)
        }
    }
}

/// `dst (rows x cols, row-major) += lhs (rows x k) * rhs (k x cols)`.
fn gemm(dst: &mut [f32], [rows, cols, k]: [usize; 3], acc: bool, lhs: Mat, rhs: Mat, e: Engine) {
    matmul_strided(dst, cols, [rows, cols, k], acc, lhs, rhs, e);
}

/// `x W + b`: `n` images of `x_len` inputs, `w` as `C_in x C_out` rows, `b` of `C_out`.
pub(super) fn forward(d: &Dims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), d.n * d.x_len(), "linear: input length");
    assert_eq!(w.len(), d.ci * d.co, "linear: weight length");
    assert_eq!(b.len(), d.co, "linear: bias length");
    let engine = d.engine(d.n);
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(d.y_len())
            .zip(x.par_chunks(d.x_len()))
            .for_each(|(slots, xi)| {
                let (t, ci, co) = (d.t, d.ci, d.co);
                let xv = d.x_view(xi);
                match d.layouts[1] {
                    Layout::Tokens => {
                        let yi = fill_from(slots, b.iter().copied().cycle());
                        gemm(yi, [t, co, ci], true, xv, Mat::rows(w, co), engine);
                    }
                    Layout::Channels => {
                        let bias = b.iter().flat_map(|&v| std::iter::repeat_n(v, t));
                        let yi = fill_from(slots, bias);
                        gemm(
                            yi,
                            [co, t, ci],
                            true,
                            Mat::transposed(w, co),
                            xv.t(),
                            engine,
                        );
                    }
                }
            });
    };
    // SAFETY: every image's slots are written by `fill_from` (the bias) before its GEMM.
    unsafe { crate::zeros::written(d.n * d.y_len(), fill) }
}

/// The gradients of [`forward`] with respect to its input, weight and bias.
pub(super) struct Grads {
    pub x: Option<Vec<f32>>,
    pub weight: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// The gradients of [`forward`] given the output gradient `dy` (laid out as the output).
pub(super) fn backward(d: &Dims, x: &[f32], w: &[f32], dy: &[f32], need: Need) -> Grads {
    assert_eq!(x.len(), d.n * d.x_len(), "linear: input length");
    assert_eq!(w.len(), d.ci * d.co, "linear: weight length");
    assert_eq!(dy.len(), d.n * d.y_len(), "linear: gradient length");
    Grads {
        x: need.x.then(|| input_gradient(d, w, dy)),
        weight: need.weight.then(|| weight_gradient(d, x, dy)),
        bias: need.bias.then(|| bias_gradient(d, dy)),
    }
}

/// `dy W^T`, laid out as the input.
fn input_gradient(d: &Dims, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let engine = d.engine(d.n);
    let mut dx = crate::zeros::zeros(d.n * d.x_len());
    dx.par_chunks_mut(d.x_len())
        .zip(dy.par_chunks(d.y_len()))
        .for_each(|(dxi, dyi)| {
            let (t, ci, co) = (d.t, d.ci, d.co);
            let dyv = d.y_view(dyi);
            match d.layouts[0] {
                Layout::Tokens => {
                    gemm(dxi, [t, ci, co], false, dyv, Mat::transposed(w, co), engine)
                }
                Layout::Channels => {
                    gemm(dxi, [ci, t, co], false, Mat::rows(w, co), dyv.t(), engine)
                }
            }
        });
    dx
}

/// `sum over images of x^T dy` (`C_in x C_out`): fixed chunks of images, each summed in order on
/// one thread, then the chunks in order.
fn weight_gradient(d: &Dims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (per_chunk, chunks) = fixed_chunks(d.n);
    let engine = d.engine(chunks);
    let partial: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut dw = crate::zeros::zeros(d.ci * d.co);
            for i in c * per_chunk..((c + 1) * per_chunk).min(d.n) {
                let xv = d.x_view(&x[i * d.x_len()..][..d.x_len()]);
                let dyv = d.y_view(&dy[i * d.y_len()..][..d.y_len()]);
                gemm(&mut dw, [d.ci, d.co, d.t], true, xv.t(), dyv, engine);
            }
            dw
        })
        .collect();
    sum_in_order(partial)
}

/// `sum over images and tokens of dy`: each output channel summed in a fixed order.
fn bias_gradient(d: &Dims, dy: &[f32]) -> Vec<f32> {
    let mut db = vec![0.0f32; d.co];
    match d.layouts[1] {
        Layout::Channels => db.par_iter_mut().enumerate().for_each(|(o, s)| {
            for img in dy.chunks_exact(d.y_len()) {
                *s += crate::lanes::sum(&img[o * d.t..][..d.t]);
            }
        }),
        Layout::Tokens => {
            const COLUMNS: usize = 64;
            db.par_chunks_mut(COLUMNS).enumerate().for_each(|(j, s)| {
                for row in dy.chunks_exact(d.co) {
                    for (a, v) in s.iter_mut().zip(&row[j * COLUMNS..]) {
                        *a += v;
                    }
                }
            });
        }
    }
    db
}

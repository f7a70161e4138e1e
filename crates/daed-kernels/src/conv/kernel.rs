//! Convolution on raw f32 slices (NCHW, one group, no dilation): im2col + one GEMM per image
//! forward, and one pass that gives the input, weight and bias gradients.
//!
//! The images of a batch are shared out over rayon's threads, each with its own im2col buffer and
//! a single-threaded GEMM; a batch smaller than the thread count runs image by image with the
//! GEMM itself parallel. Output is written in NCHW directly: no layout transposes, and the
//! weights are read in place (`[C_out, C_in * kh * kw]` row-major is the GEMM's left operand).
use std::ops::Range;

use rayon::prelude::*;

/// Shapes of one convolution: input `[n, ci, h, w]`, weight `[co, ci, kh, kw]`, output
/// `[n, co, ho, wo]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    /// The geometry for these shapes, stride and symmetric padding; `None` when they do not fit
    /// (channel mismatch, a zero stride, kernel, channel count or image side, or an empty output).
    pub fn new(x: [usize; 4], wt: [usize; 4], stride: [usize; 2], pad: [usize; 2]) -> Option<Self> {
        let [n, ci, h, w] = x;
        let [co, wci, kh, kw] = wt;
        if wci != ci || stride.contains(&0) || [kh, kw, co, ci, h, w].contains(&0) {
            return None;
        }
        let span = |len: usize, k: usize, p: usize, s: usize| {
            (len + 2 * p).checked_sub(k).map(|r| r / s + 1)
        };
        let ho = span(h, kh, pad[0], stride[0])?;
        let wo = span(w, kw, pad[1], stride[1])?;
        Some(Self {
            n,
            ci,
            h,
            w,
            co,
            kh,
            kw,
            sh: stride[0],
            sw: stride[1],
            ph: pad[0],
            pw: pad[1],
            ho,
            wo,
        })
    }

    /// Rows of the im2col matrix: `ci * kh * kw`.
    pub fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }

    /// Output pixels per image: `ho * wo`.
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of one input image.
    pub fn x_len(&self) -> usize {
        self.ci * self.h * self.w
    }

    /// Elements of one output image.
    pub fn y_len(&self) -> usize {
        self.co * self.p()
    }

    /// A 1x1, stride-1, unpadded convolution: the image itself is the im2col matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Output columns `[lo, hi)` whose input column `ox * sw + kx - pw` lies inside the image.
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let lo = self.pw.saturating_sub(kx).div_ceil(self.sw).min(self.wo);
        let hi = (self.w + self.pw)
            .saturating_sub(kx)
            .div_ceil(self.sw)
            .min(self.wo);
        (lo, hi.max(lo))
    }
}

/// Writes image `x` (`ci * h * w`) into the `k x p` im2col block of `col`, whose rows are `ld`
/// elements apart (`ld > p` when several images sit side by side).
fn im2col(g: &Geom, x: &[f32], col: &mut [f32], ld: usize) {
    im2col_rows(g, x, col, ld, 0..g.ho);
}

/// [`im2col`] for the output rows `rows` only: a `k x (rows.len() * wo)` block.
fn im2col_rows(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, rows: Range<usize>) {
    let span = rows.len() * g.wo;
    for c in 0..g.ci {
        let plane = &x[c * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut col[((c * g.kh + ky) * g.kw + kx) * ld..][..span];
                let (lo, hi) = g.valid_cols(kx);
                for (oy, out) in rows.clone().zip(row.chunks_exact_mut(g.wo)) {
                    let iy = (oy * g.sh + ky).wrapping_sub(g.ph);
                    if iy >= g.h {
                        out.fill(0.0);
                        continue;
                    }
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    let src = &plane[iy * g.w..][..g.w];
                    if lo == hi {
                        continue;
                    }
                    if g.sw == 1 {
                        let ix = lo + kx - g.pw;
                        out[lo..hi].copy_from_slice(&src[ix..ix + hi - lo]);
                    } else {
                        for (ox, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                            *o = src[ox * g.sw + kx - g.pw];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the `k x p` block of `col` (rows `ld` apart) back onto image `dx` (the adjoint of
/// [`im2col`]).
fn col2im(g: &Geom, col: &[f32], ld: usize, dx: &mut [f32]) {
    let p = g.p();
    for c in 0..g.ci {
        let plane = &mut dx[c * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &col[((c * g.kh + ky) * g.kw + kx) * ld..][..p];
                let (lo, hi) = g.valid_cols(kx);
                for (oy, src) in row.chunks_exact(g.wo).enumerate() {
                    let iy = (oy * g.sh + ky).wrapping_sub(g.ph);
                    if iy >= g.h {
                        continue;
                    }
                    let dst = &mut plane[iy * g.w..][..g.w];
                    if lo == hi {
                        continue;
                    }
                    if g.sw == 1 {
                        let ix = lo + kx - g.pw;
                        for (d, s) in dst[ix..ix + hi - lo].iter_mut().zip(&src[lo..hi]) {
                            *d += s;
                        }
                    } else {
                        for (ox, s) in src.iter().enumerate().take(hi).skip(lo) {
                            dst[ox * g.sw + kx - g.pw] += s;
                        }
                    }
                }
            }
        }
    }
}

/// The `k x (imgs * p)` im2col matrix of the images in `xs`, side by side: `xs` itself for one
/// image of a 1x1 convolution, else built in `col`.
fn group_columns<'a>(g: &Geom, xs: &'a [f32], col: &'a mut Vec<f32>) -> &'a [f32] {
    let (xl, p) = (g.x_len(), g.p());
    let ld = xs.len() / xl * p;
    if ld == p && g.pointwise() {
        return xs;
    }
    col.resize(g.k() * ld, 0.0);
    for (j, xi) in xs.chunks_exact(xl).enumerate() {
        im2col(g, xi, &mut col[j * p..], ld);
    }
    col
}

/// A row-major matrix operand: base pointer, row stride and column stride (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub(crate) ptr: *const f32,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

impl Mat {
    /// The matrix in `s` whose rows are `cols` elements apart (its row length where packed).
    pub(crate) fn rows(s: &[f32], cols: usize) -> Self {
        Self {
            ptr: s.as_ptr(),
            rs: cols as isize,
            cs: 1,
        }
    }

    /// The transpose of the row-major `rows x cols` matrix in `s`.
    pub(crate) fn transposed(s: &[f32], cols: usize) -> Self {
        Self {
            ptr: s.as_ptr(),
            rs: 1,
            cs: cols as isize,
        }
    }

    /// This matrix transposed (the strides swapped).
    pub(crate) fn t(self) -> Self {
        Self {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// How the GEMMs of one convolution run: their own parallelism (see [`plan`]) and whether in
/// bf16 ([`crate::bf16`], taken from [`crate::precision`] on the calling thread).
#[derive(Clone, Copy, Debug)]
pub struct Engine {
    /// The GEMM's own threads.
    pub par: gemm::Parallelism,
    /// bf16 products with f32 sums instead of f32 throughout.
    pub bf16: bool,
}

impl Engine {
    /// Single-threaded f32 GEMMs.
    pub const F32: Self = Self {
        par: gemm::Parallelism::None,
        bf16: false,
    };

    /// f32 GEMMs for `jobs` independent pieces of work shared out over rayon's threads:
    /// single-threaded when there are at least as many jobs as threads, else each GEMM on all
    /// threads (gemm splits only output tiles over threads, so its sums do not depend on their
    /// number).
    pub fn for_jobs(jobs: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let par = if jobs < threads && threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        Self { par, bf16: false }
    }
}

/// `dst (m x n, row-major) [+]= lhs (m x k) * rhs (k x n)`, with `[m, n, k] = mnk`.
pub(super) fn matmul(
    dst: &mut [f32],
    [m, n, k]: [usize; 3],
    acc: bool,
    lhs: Mat,
    rhs: Mat,
    engine: Engine,
) {
    matmul_strided(dst, n, [m, n, k], acc, lhs, rhs, engine);
}

/// [`matmul`] into a destination whose rows are `ldd >= n` elements apart.
pub(crate) fn matmul_strided(
    dst: &mut [f32],
    ldd: usize,
    [m, n, k]: [usize; 3],
    acc: bool,
    lhs: Mat,
    rhs: Mat,
    engine: Engine,
) {
    assert!(
        ldd >= n && (m == 0 || dst.len() >= (m - 1) * ldd + n),
        "matmul: destination too small"
    );
    let par = engine.par;
    if engine.bf16 {
        let threads = match par {
            gemm::Parallelism::Rayon(0) => rayon::current_num_threads(),
            gemm::Parallelism::Rayon(t) => t,
            gemm::Parallelism::None => 1,
        };
        return crate::bf16::matmul(dst, ldd, [m, n, k], acc, lhs, rhs, threads);
    }
    // SAFETY: `dst` holds m rows of n elements, `ldd` apart (checked), borrowed mutably; the
    // callers build `lhs` and `rhs` from slices holding m x k and k x n elements with the
    // strides given.
    unsafe { matmul_raw(dst.as_mut_ptr(), ldd, [m, n, k], acc, lhs, rhs, par) }
}

/// The f32 [`matmul_strided`] into raw memory: for destinations whose rows interleave with
/// those of other products written at the same time (Winograd's entries).
///
/// # Safety
/// `dst` is valid for `m` rows of `n` elements `ldd` apart, which nothing else reads or writes
/// during the call; `lhs` and `rhs` point at `m x k` and `k x n` readable elements with their
/// strides.
pub(crate) unsafe fn matmul_raw(
    dst: *mut f32,
    ldd: usize,
    [m, n, k]: [usize; 3],
    acc: bool,
    lhs: Mat,
    rhs: Mat,
    par: gemm::Parallelism,
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldd as isize,
            acc,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Output columns a backward GEMM aims for. The weight gradient of one image is a product
/// with only `p` inner terms, which at 8x8 pixels re-reads and re-writes the whole `co x k`
/// accumulator for every 64 columns; grouping images side by side makes that term longer. The
/// forward pass and large images do better one image per GEMM (measured with
/// `examples/conv_probe.rs`).
const BACKWARD_COLUMNS: usize = 128;

/// Groups of several images keep their im2col buffer under this many elements (64 MiB); one
/// image alone may need more.
const MAX_COL: usize = 16 << 20;

/// The weight gradient is summed in at most this many fixed chunks of image groups (one partial
/// `co x k` sum each), so its bits do not depend on the threads that run them.
const DW_CHUNKS: usize = 8;

/// How the batch is cut: images per GEMM (aiming at `columns` GEMM columns) and the GEMM's own
/// parallelism. Groups are shared out over rayon's threads; with fewer images than threads, the
/// GEMM itself runs on all of them (gemm splits only output tiles over threads, so its sums do
/// not depend on their number).
fn plan(g: &Geom, columns: usize) -> (usize, Engine) {
    let by_size = (MAX_COL / (g.k() * g.p()).max(1)).max(1);
    // Independent of the thread count: the group sets the weight gradient's summation order.
    let group = columns.div_ceil(g.p()).min(by_size).max(1);
    let bf16 = crate::precision::bf16_active();
    (
        group,
        Engine {
            bf16,
            ..Engine::for_jobs(g.n)
        },
    )
}

/// How `items` are cut into at most [`DW_CHUNKS`] contiguous chunks, fixed by their number
/// alone: `(items per chunk, chunks)`.
pub(crate) fn fixed_chunks(items: usize) -> (usize, usize) {
    let per_chunk = items.div_ceil(items.clamp(1, DW_CHUNKS)).max(1);
    (per_chunk, items.div_ceil(per_chunk))
}

/// The element-wise sum of `parts`, each element's terms added in the order of `parts`
/// (elements in parallel): the same bits at any thread count.
pub(crate) fn sum_in_order(mut parts: Vec<Vec<f32>>) -> Vec<f32> {
    let rest = parts.split_off(1.min(parts.len()));
    let mut sum = parts.pop().unwrap_or_default();
    const CHUNK: usize = 1 << 14;
    sum.par_chunks_mut(CHUNK).enumerate().for_each(|(i, dst)| {
        for part in &rest {
            for (d, v) in dst.iter_mut().zip(&part[i * CHUNK..]) {
                *d += v;
            }
        }
    });
    sum
}

/// A raw pointer to an output buffer, written by several threads at disjoint offsets: of values
/// (`f32`), or of slots not yet written (`MaybeUninit<f32>`).
pub(super) struct SharedOut<T = f32>(pub(super) *mut T);
impl<T> Clone for SharedOut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedOut<T> {}
// SAFETY: every writer writes only its own elements of the buffer.
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// The address `offset` elements in.
    ///
    /// # Safety
    /// `offset` lies inside the buffer (or one past its end).
    pub(super) unsafe fn at(&self, offset: usize) -> *mut T {
        unsafe { self.0.add(offset) }
    }

    /// The `len` elements at `offset`.
    ///
    /// # Safety
    /// The range lies inside the buffer, which outlives the slice, and no other slice overlaps it.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn slice(&self, offset: usize, len: usize) -> &mut [T] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(offset), len) }
    }
}

/// Per-thread scratch buffers.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    out: Vec<f32>,
    dw: Vec<f32>,
}

/// Forward convolution of `x` (`n` images) with `wt` and an optional bias: `n * co * ho * wo`.
/// 3x3, stride-1, padding-1 convolutions run as Winograd F(4x4, 3x3) ([`super::winograd`]).
pub fn forward(g: &Geom, x: &[f32], wt: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if super::winograd::applies(g) {
        return super::winograd::forward(g, x, wt, bias);
    }
    if super::direct::applies(g) {
        return super::direct::forward(g, x, wt, bias);
    }
    let (group, engine) = plan(g, 1);
    forward_grouped(g, x, wt, bias, group, engine)
}

/// [`forward`] with `group` images per GEMM (1: one GEMM per image).
pub fn forward_grouped(
    g: &Geom,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    group: usize,
    par: Engine,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.x_len(), "conv forward: input length");
    assert_eq!(wt.len(), g.co * g.k(), "conv forward: weight length");
    let (k, p, xl, yl, group) = (g.k(), g.p(), g.x_len(), g.y_len(), group.max(1));
    let mut y = crate::zeros::zeros(g.n * yl);
    let one = |s: &mut Scratch, ys: &mut [f32], xs: &[f32]| {
        let imgs = xs.len() / xl;
        let ld = imgs * p;
        if imgs == 1 {
            return forward_image(g, xs, wt, bias, ys, &mut s.col, par);
        }
        let rhs = group_columns(g, xs, &mut s.col);
        s.out.resize(g.co * ld, 0.0);
        matmul(
            &mut s.out,
            [g.co, ld, k],
            false,
            Mat::rows(wt, k),
            Mat::rows(rhs, ld),
            par,
        );
        for (j, yi) in ys.chunks_exact_mut(yl).enumerate() {
            for (co, row) in yi.chunks_exact_mut(p).enumerate() {
                let src = &s.out[co * ld + j * p..][..p];
                let b = bias.map_or(0.0, |b| b[co]);
                for (d, v) in row.iter_mut().zip(src) {
                    *d = v + b;
                }
            }
        }
    };
    if g.n > 0 {
        y.par_chunks_mut(group * yl)
            .zip(x.par_chunks(group * xl))
            .for_each_init(Scratch::default, |s, (ys, xs)| one(s, ys, xs));
    }
    y
}

/// Elements of an im2col block that stays in the per-core cache (1 MiB); one large image whose
/// im2col matrix is larger (the FID Inception's stem: 288 x 21609 floats) is convolved in bands
/// of output rows of about this size, so the GEMM reads its right operand from cache instead of
/// memory. Timed at batch 50 (forward only): 32 -> 32 channels at 149x149 went from 397 ms to
/// 200-236 ms, 32 -> 64 at 147x147 from 429 ms to 336-423 ms; `examples/conv_probe.rs` has both.
const TILE: usize = 256 * 1024;

/// Only images of at least this many output pixels are banded: for the U-Net's 32x32 and
/// smaller, A B A B runs showed no clear difference either way.
const TILE_MIN_PIXELS: usize = 64 * 64;

/// One image straight into its NCHW output: the bias first, then the GEMM accumulating onto it,
/// over the whole image or, for large images, in bands of output rows (see [`TILE`]).
fn forward_image(
    g: &Geom,
    xi: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    yi: &mut [f32],
    col: &mut Vec<f32>,
    par: Engine,
) {
    let (k, p) = (g.k(), g.p());
    if let Some(b) = bias {
        for (row, &bv) in yi.chunks_exact_mut(p).zip(b) {
            row.fill(bv);
        }
    }
    let lhs = Mat::rows(wt, k);
    if g.pointwise() {
        return matmul(yi, [g.co, p, k], bias.is_some(), lhs, Mat::rows(xi, p), par);
    }
    let band = if k * p > TILE && p >= TILE_MIN_PIXELS {
        (TILE / (k * g.wo)).max(1)
    } else {
        g.ho
    };
    for oy0 in (0..g.ho).step_by(band) {
        let rows = oy0..(oy0 + band).min(g.ho);
        let n = rows.len() * g.wo;
        col.resize(k * n, 0.0);
        im2col_rows(g, xi, col, n, rows);
        let dst = &mut yi[oy0 * g.wo..];
        matmul_strided(
            dst,
            p,
            [g.co, n, k],
            bias.is_some(),
            lhs,
            Mat::rows(col, n),
            par,
        );
    }
}

/// Which gradients [`backward`] computes.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    pub x: bool,
    pub weight: bool,
    pub bias: bool,
}

/// Gradients of a convolution; each present when asked for.
#[derive(Debug, Default)]
pub struct Grads {
    pub x: Option<Vec<f32>>,
    pub weight: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// The gradients with respect to the input, weight and bias, given the output gradient `dy`.
/// The input and weight gradients of a 3x3, stride-1, padding-1 convolution run as Winograd
/// ([`super::winograd`]), those of a layer with few outputs as a direct convolution
/// ([`super::direct`]).
pub fn backward(g: &Geom, x: &[f32], wt: &[f32], dy: &[f32], need: Need) -> Grads {
    /// An algorithm's input gradient `(g, wt, dy)` and weight gradient `(g, x, dy)`.
    type Pair = (
        fn(&Geom, &[f32], &[f32]) -> Vec<f32>,
        fn(&Geom, &[f32], &[f32]) -> Vec<f32>,
    );
    let own: Option<Pair> = if super::winograd::applies(g) {
        Some((
            super::winograd::input_gradient,
            super::winograd::weight_gradient,
        ))
    } else if super::direct::applies(g) {
        Some((
            super::direct::input_gradient,
            super::direct::weight_gradient,
        ))
    } else {
        None
    };
    if let Some((input_gradient, weight_gradient)) = own {
        return Grads {
            x: need.x.then(|| input_gradient(g, wt, dy)),
            weight: need.weight.then(|| weight_gradient(g, x, dy)),
            bias: need.bias.then(|| bias_gradient(g, dy)),
        };
    }
    let (group, engine) = plan(g, BACKWARD_COLUMNS);
    backward_grouped(g, x, wt, dy, need, group, engine)
}

/// [`backward`] with `group` images per GEMM.
pub fn backward_grouped(
    g: &Geom,
    x: &[f32],
    wt: &[f32],
    dy: &[f32],
    need: Need,
    group: usize,
    par: Engine,
) -> Grads {
    assert_eq!(x.len(), g.n * g.x_len(), "conv backward: input length");
    assert_eq!(wt.len(), g.co * g.k(), "conv backward: weight length");
    assert_eq!(dy.len(), g.n * g.y_len(), "conv backward: gradient length");
    let (k, p, xl, yl, group) = (g.k(), g.p(), g.x_len(), g.y_len(), group.max(1));
    let mut dx = if need.x {
        crate::zeros::zeros(g.n * xl)
    } else {
        Vec::new()
    };
    let dx_ptr = SharedOut(dx.as_mut_ptr());
    let one = |mut s: Scratch, first: usize| {
        let imgs = group.min(g.n - first);
        let ld = imgs * p;
        let (xs, dys) = (
            &x[first * xl..][..imgs * xl],
            &dy[first * yl..][..imgs * yl],
        );
        // The output gradient of the group as one `co x (imgs * p)` matrix.
        let d = if imgs == 1 {
            dys
        } else {
            s.out.resize(g.co * ld, 0.0);
            for (j, dyi) in dys.chunks_exact(yl).enumerate() {
                for (co, row) in dyi.chunks_exact(p).enumerate() {
                    s.out[co * ld + j * p..][..p].copy_from_slice(row);
                }
            }
            &s.out[..]
        };
        if need.weight {
            let colx = group_columns(g, xs, &mut s.col);
            if s.dw.is_empty() {
                s.dw = vec![0.0; g.co * k];
            }
            // dW (co x k) += D (co x ld) * col^T (ld x k)
            matmul(
                &mut s.dw,
                [g.co, k, ld],
                true,
                Mat::rows(d, ld),
                Mat::transposed(colx, ld),
                par,
            );
        }
        if need.x {
            // SAFETY: this group owns elements [first * xl, (first + imgs) * xl) of `dx`, which
            // outlives the parallel loop; no other group touches them.
            let dxs = unsafe { dx_ptr.slice(first * xl, imgs * xl) };
            let wt_t = Mat::transposed(wt, k);
            if imgs == 1 && g.pointwise() {
                matmul(dxs, [k, p, g.co], false, wt_t, Mat::rows(d, p), par);
            } else {
                s.col.resize(k * ld, 0.0);
                matmul(
                    &mut s.col,
                    [k, ld, g.co],
                    false,
                    wt_t,
                    Mat::rows(d, ld),
                    par,
                );
                for (j, dxi) in dxs.chunks_exact_mut(xl).enumerate() {
                    col2im(g, &s.col[j * p..], ld, dxi);
                }
            }
        }
        s
    };
    // A fixed split of the groups into contiguous chunks, each summed in order on one thread,
    // then the chunks summed in order: the same bits on every run and at any thread count.
    let groups = g.n.div_ceil(group);
    let (per_chunk, chunks) = fixed_chunks(groups);
    let partial: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let end = ((c + 1) * per_chunk).min(groups);
            (c * per_chunk..end)
                .fold(Scratch::default(), |s, i| one(s, i * group))
                .dw
        })
        .collect();
    let partial: Vec<Vec<f32>> = partial.into_iter().filter(|dw| !dw.is_empty()).collect();
    let dw = (!partial.is_empty()).then(|| sum_in_order(partial));
    let bias = need.bias.then(|| bias_gradient(g, dy));
    Grads {
        x: need.x.then_some(dx),
        weight: need
            .weight
            .then(|| dw.unwrap_or_else(|| vec![0.0; g.co * k])),
        bias,
    }
}

/// The bias gradient: each channel's sum on one thread, image by image in order (the same bits
/// at any thread count).
fn bias_gradient(g: &Geom, dy: &[f32]) -> Vec<f32> {
    let (p, yl) = (g.p(), g.y_len());
    let mut db = vec![0.0f32; g.co];
    db.par_iter_mut().enumerate().for_each(|(co, d)| {
        for img in dy.chunks_exact(yl) {
            *d += crate::lanes::sum(&img[co * p..][..p]);
        }
    });
    db
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Direct convolution in f64, the reference.
    fn naive(g: &Geom, x: &[f32], wt: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
        let mut y = vec![0.0f64; g.n * g.y_len()];
        for n in 0..g.n {
            for co in 0..g.co {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let mut s = bias.map_or(0.0, |b| b[co] as f64);
                        for c in 0..g.ci {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.sh + ky) as isize - g.ph as isize;
                                    let ix = (ox * g.sw + kx) as isize - g.pw as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((n * g.ci + c) * g.h + iy as usize) * g.w + ix as usize];
                                    let wv = wt[((co * g.ci + c) * g.kh + ky) * g.kw + kx];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * g.co + co) * g.ho + oy) * g.wo + ox] = s;
                    }
                }
            }
        }
        y
    }

    /// `len` values in [-1, 1] from a xorshift seeded with `seed`.
    pub(in crate::conv) fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    /// Input shape, weight shape, stride, padding.
    type Case = ([usize; 4], [usize; 4], [usize; 2], [usize; 2]);

    const CASES: [Case; 10] = [
        ([1, 1, 4, 1], [1, 1, 5, 5], [1, 1], [2, 2]),
        ([2, 2, 3, 2], [3, 2, 1, 7], [1, 1], [0, 3]),
        ([1, 2, 5, 3], [2, 2, 3, 7], [2, 1], [1, 2]),
        ([3, 4, 7, 6], [5, 4, 3, 3], [1, 1], [1, 1]),
        ([2, 3, 8, 8], [4, 3, 3, 3], [2, 2], [1, 1]),
        ([2, 6, 5, 5], [3, 6, 1, 1], [1, 1], [0, 0]),
        ([1, 2, 9, 7], [3, 2, 1, 7], [1, 1], [0, 3]),
        ([4, 2, 7, 9], [2, 2, 7, 1], [1, 1], [3, 0]),
        ([1, 3, 9, 9], [2, 3, 3, 3], [2, 2], [0, 0]),
        ([2, 1, 6, 6], [2, 1, 5, 5], [1, 1], [2, 2]),
    ];

    #[test]
    fn forward_matches_direct_convolution() {
        for (i, (xs, ws, s, p)) in CASES.iter().enumerate() {
            let g = Geom::new(*xs, *ws, *s, *p).unwrap();
            let x = data(g.n * g.x_len(), i as u32);
            let w = data(g.co * g.k(), 100 + i as u32);
            let b = data(g.co, 200 + i as u32);
            close(
                &forward(&g, &x, &w, Some(&b)),
                &naive(&g, &x, &w, Some(&b)),
                "y",
            );
            close(
                &forward(&g, &x, &w, None),
                &naive(&g, &x, &w, None),
                "y (no bias)",
            );
        }
    }

    /// Each gradient against the finite-free adjoint identity: for a random `dy`,
    /// `<dy, conv(x + e_j)> - <dy, conv(x)>` is the j-th input gradient (the map is linear).
    #[test]
    fn gradients_match_the_adjoint_of_the_forward() {
        for (i, (xs, ws, s, p)) in CASES.iter().enumerate() {
            let g = Geom::new(*xs, *ws, *s, *p).unwrap();
            let x = data(g.n * g.x_len(), i as u32);
            let w = data(g.co * g.k(), 100 + i as u32);
            let dy = data(g.n * g.y_len(), 300 + i as u32);
            let all = Need {
                x: true,
                weight: true,
                bias: true,
            };
            let gr = backward(&g, &x, &w, &dy, all);
            let dot = |y: &[f64]| y.iter().zip(&dy).map(|(a, b)| a * *b as f64).sum::<f64>();
            let unit = |len: usize, j: usize| {
                let mut e = vec![0.0f32; len];
                e[j] = 1.0;
                e
            };
            let want_x: Vec<f64> = (0..x.len())
                .map(|j| dot(&naive(&g, &unit(x.len(), j), &w, None)))
                .collect();
            let want_w: Vec<f64> = (0..w.len())
                .map(|j| dot(&naive(&g, &x, &unit(w.len(), j), None)))
                .collect();
            let want_b: Vec<f64> = (0..g.co)
                .map(|j| {
                    dot(&naive(
                        &g,
                        &vec![0.0; x.len()],
                        &vec![0.0; w.len()],
                        Some(&unit(g.co, j)),
                    ))
                })
                .collect();
            close(gr.x.as_deref().unwrap(), &want_x, "dx");
            close(gr.weight.as_deref().unwrap(), &want_w, "dw");
            close(gr.bias.as_deref().unwrap(), &want_b, "db");
            let only_w = backward(
                &g,
                &x,
                &w,
                &dy,
                Need {
                    x: false,
                    weight: true,
                    bias: false,
                },
            );
            assert!(only_w.x.is_none() && only_w.bias.is_none());
            close(only_w.weight.as_deref().unwrap(), &want_w, "dw alone");
            for group in [1, 2, 3] {
                let gr = backward_grouped(&g, &x, &w, &dy, all, group, Engine::F32);
                close(gr.x.as_deref().unwrap(), &want_x, "dx (grouped)");
                close(gr.weight.as_deref().unwrap(), &want_w, "dw (grouped)");
            }
        }
    }

    /// Large images are convolved in bands of output rows (see `TILE`): same result.
    #[test]
    fn banded_forward_matches_direct_convolution() {
        for (i, (xs, ws, s, p)) in [
            ([1, 8, 66, 66], [2, 8, 3, 3], [1, 1], [1, 1]),
            ([2, 16, 139, 140], [3, 16, 3, 3], [2, 2], [0, 0]),
        ]
        .into_iter()
        .enumerate()
        {
            let g = Geom::new(xs, ws, s, p).unwrap();
            assert!(
                g.k() * g.p() > TILE && g.p() >= TILE_MIN_PIXELS,
                "case {i} is banded"
            );
            let x = data(g.n * g.x_len(), 50 + i as u32);
            let w = data(g.co * g.k(), 60 + i as u32);
            let b = data(g.co, 70 + i as u32);
            close(
                &forward(&g, &x, &w, Some(&b)),
                &naive(&g, &x, &w, Some(&b)),
                "banded y",
            );
        }
    }

    /// In a bf16 scope (on CPUs with AVX512-BF16) the output and the input and weight
    /// gradients stay within bf16 rounding of the f32 kernel's (two roundings of 2^-9 per
    /// product), differ from its bits (bf16 really ran), and the bias gradient, a plain f32 sum,
    /// is the same bits.
    #[test]
    fn bf16_scope_stays_within_bf16_rounding_of_f32() {
        use crate::precision::{bf16_supported, scope, Precision};
        if !bf16_supported() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let all = Need {
            x: true,
            weight: true,
            bias: true,
        };
        let mut differs = false;
        for (i, (xs, ws, s, p)) in CASES.iter().enumerate() {
            let g = Geom::new(*xs, *ws, *s, *p).unwrap();
            let x = data(g.n * g.x_len(), i as u32);
            let w = data(g.co * g.k(), 100 + i as u32);
            let b = data(g.co, 200 + i as u32);
            let dy = data(g.n * g.y_len(), 300 + i as u32);
            let run = || {
                (
                    forward(&g, &x, &w, Some(&b)),
                    backward(&g, &x, &w, &dy, all),
                )
            };
            let (y32, g32) = run();
            let (y16, g16) = scope(Precision::Bf16, run);
            // Values lie in [-1, 1]: a sum of `terms` products is off by at most terms * 2^-8.
            let near = |a: &[f32], b: &[f32], terms: usize, what: &str| {
                for (e, (a, b)) in a.iter().zip(b).enumerate() {
                    let tol = terms as f32 * 4e-3 + 1e-5;
                    assert!((a - b).abs() <= tol, "case {i} {what}[{e}]: {a} vs {b}");
                }
                a.iter().zip(b).any(|(a, b)| a != b)
            };
            differs |= near(&y16, &y32, g.k(), "y");
            let dx_terms = g.co * g.kh * g.kw;
            differs |= near(
                g16.x.as_ref().unwrap(),
                g32.x.as_ref().unwrap(),
                dx_terms,
                "dx",
            );
            let dw_terms = g.n * g.p();
            differs |= near(
                g16.weight.as_ref().unwrap(),
                g32.weight.as_ref().unwrap(),
                dw_terms,
                "dw",
            );
            assert_eq!(
                g16.bias, g32.bias,
                "case {i}: the bias gradient is an f32 sum"
            );
        }
        assert!(differs, "the bf16 scope changed no bit: bf16 did not run");
    }

    #[test]
    fn geometry_rejects_what_does_not_fit() {
        assert!(Geom::new([1, 3, 4, 4], [2, 4, 3, 3], [1, 1], [1, 1]).is_none());
        assert!(Geom::new([1, 3, 2, 2], [2, 3, 5, 5], [1, 1], [0, 0]).is_none());
        assert!(Geom::new([1, 3, 4, 4], [2, 3, 3, 3], [0, 1], [1, 1]).is_none());
        assert!(Geom::new([1, 3, 0, 4], [2, 3, 1, 1], [1, 1], [1, 1]).is_none());
        let g = Geom::new([2, 3, 32, 32], [8, 3, 3, 3], [2, 2], [1, 1]).unwrap();
        assert_eq!((g.ho, g.wo), (16, 16));
    }
    /// The weight gradient is the same bits at 1, 2 and 3 threads and on every repeat: the
    /// images are grouped and summed in an order fixed by the shapes alone.
    #[test]
    fn backward_bits_do_not_depend_on_threads() {
        let need = Need {
            x: true,
            weight: true,
            bias: true,
        };
        for (xs, ws) in [
            ([37, 8, 8, 8], [16, 8, 3, 3]),
            ([6, 4, 16, 16], [8, 4, 3, 3]),
            ([64, 8, 4, 4], [8, 8, 1, 1]),
            // Fewer images than threads: the GEMM itself runs on several threads.
            ([1, 8, 16, 16], [16, 8, 3, 3]),
            ([2, 16, 8, 8], [16, 16, 3, 3]),
        ] {
            let g = Geom::new(xs, ws, [1, 1], [ws[2] / 2, ws[3] / 2]).unwrap();
            let x = data(g.n * g.x_len(), 3);
            let wt = data(g.co * g.k(), 4);
            let dy = data(g.n * g.y_len(), 5);
            let run = |threads: usize| {
                crate::parallel::on_threads(threads, || backward(&g, &x, &wt, &dy, need))
            };
            let bits = |v: &Option<Vec<f32>>| -> Vec<u32> {
                v.as_ref().unwrap().iter().map(|f| f.to_bits()).collect()
            };
            let one = run(1);
            for threads in [2, 3, 4, 2] {
                let other = run(threads);
                assert_eq!(
                    bits(&one.weight),
                    bits(&other.weight),
                    "{xs:?}: dW at {threads}"
                );
                assert_eq!(bits(&one.x), bits(&other.x), "{xs:?}: dx at {threads}");
                assert_eq!(
                    bits(&one.bias),
                    bits(&other.bias),
                    "{xs:?}: db at {threads}"
                );
            }
        }
    }
}

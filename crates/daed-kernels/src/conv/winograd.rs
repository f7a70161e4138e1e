//! Winograd F(4x4, 3x3): 3x3, stride-1, padding-1 convolutions with 36 products per 4x4 output
//! tile and input channel instead of im2col's 144 (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", CVPR 2016; interpolation points 0, 1, -1, 2, -2, infinity).
//!
//! The 4x4 output tiles of the whole batch are cut into blocks of [`BLOCK`] tiles. Per block, the
//! 6x6 input patch of every tile and channel is transformed (`B^T d B`), 36 GEMMs multiply the
//! transformed weights (`G g G^T`, one `co x ci` matrix per entry) by the transformed patches,
//! and each output channel's 36 products go back to a 4x4 tile (`A^T m A`). Blocks are fixed by
//! the shapes alone and each output is one GEMM sum inside one block, so the bits do not depend
//! on the thread count; the transforms use no fused multiply-adds, so they do not depend on the
//! CPU's features either.
//!
//! The input gradient of such a convolution is the same convolution of the output gradient with
//! the kernels flipped and the channel axes swapped ([`input_gradient`]). The weight gradient
//! ([`weight_gradient`]) is the adjoint of the forward: since `y = A^T (U . V) A` per tile, the
//! gradient of `U` is `(A dy A^T) . V` summed over tiles (36 GEMMs of `co x tiles` by
//! `tiles x ci`), and that of the kernel `G^T dU G`. `DAED_WINOGRAD=0` turns this path off
//! (the im2col path runs instead).
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::kernel::{fixed_chunks, matmul_raw, sum_in_order, Engine, Geom, Mat, SharedOut};
use crate::zeros::{copy_into, fill_from};

/// The output's slots, written once each by the thread that owns them.
type Slots = SharedOut<MaybeUninit<f32>>;

/// Side of an input patch.
const TILE: usize = 6;
/// Side of an output tile.
const OUT: usize = 4;
/// Entries of a transformed patch: one GEMM each.
const E: usize = TILE * TILE;
/// Tiles transformed together (one SIMD register of f32 with AVX).
const LANES: usize = 8;
/// Tiles per block: the GEMMs' column count (a multiple of [`LANES`]).
const BLOCK: usize = 64;
/// Tiles per block of the weight gradient: the GEMMs' inner dimension, longer so that each
/// pass over the `co x ci` accumulators does more work; half as long where neither side has more
/// than [`NARROW`] channels (see [`block_dw`]).
const BLOCK_DW: usize = 256;
/// Channel count up to which the weight gradient takes blocks of `BLOCK_DW / 2` tiles.
const NARROW: usize = 128;
/// Fewer channels than this in or out: im2col's longer GEMM does better.
const MIN_CHANNELS: usize = 16;

/// `B^T`: input patch -> transformed patch (rows) .
const BT: [[f32; TILE]; TILE] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// `G`: 3x3 kernel -> transformed kernel (rows).
const G: [[f32; 3]; TILE] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `A^T`: products -> output tile (rows).
const AT: [[f32; TILE]; OUT] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// `$plain(args)`, or its AVX2 twin `$wide(args)` where the CPU has AVX2.
macro_rules! wide {
    ($plain:ident, $wide:ident, $($arg:expr),* $(,)?) => {{
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2.
            unsafe { $wide($($arg),*) }
        } else {
            $plain($($arg),*)
        }
        #[cfg(not(target_arch = "x86_64"))]
        $plain($($arg),*)
    }};
}

/// Whether a convolution of this geometry runs here: 3x3, stride 1, padding 1, at least
/// [`MIN_CHANNELS`] channels in and out, not turned off. In a bf16 scope too, and then in f32:
/// Winograd reduces the products 4x, and its 36 transformed-domain GEMMs in bf16 were 36 times
/// further from f32 than bf16 im2col (the transformed operands, with coefficients up to 8 and
/// cancellations, lose more to bf16 rounding than pixels and weights do).
pub fn applies(g: &Geom) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("DAED_WINOGRAD").map_or(true, |v| v.trim() != "0")) && fits(g)
}

/// The geometry part of [`applies`].
fn fits(g: &Geom) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (3, 3, 1, 1, 1, 1)
        && g.ci >= MIN_CHANNELS
        && g.co >= MIN_CHANNELS
}

/// Panics unless `g` [`fits`] (a caller's error: [`applies`] says which calls come here).
fn assert_fits(g: &Geom) {
    assert!(
        fits(g),
        "winograd: not a 3x3, stride-1, padding-1 convolution"
    );
}

/// Forward convolution (`n * co * ho * wo`), for a geometry that [`fits`].
pub fn forward(g: &Geom, x: &[f32], wt: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    forward_transformed(g, x, &transformed_weights(g, wt), bias)
}

/// The forward's transformed weights (`36 * co * ci` values): what [`forward_transformed`] takes,
/// for callers that keep them across calls with the same weights.
pub fn transformed_weights(g: &Geom, wt: &[f32]) -> Vec<f32> {
    assert_fits(g);
    assert_eq!(wt.len(), g.co * g.k(), "winograd: weight length");
    transform_weights(g.co, g.ci, Kernels::AsGiven(wt))
}

/// [`forward`] with the weights already transformed by [`transformed_weights`].
pub fn forward_transformed(g: &Geom, x: &[f32], u: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_fits(g);
    assert_eq!(x.len(), g.n * g.x_len(), "winograd: input length");
    assert_eq!(
        u.len(),
        E * g.co * g.ci,
        "winograd: transformed weight length"
    );
    convolve(g, x, u, bias)
}

/// The input gradient (`n * ci * h * w`) given the output gradient `dy`: the convolution of `dy`
/// with `w'[i][o] = w[o][i]` flipped in both spatial axes (flipped while it is transformed).
pub fn input_gradient(g: &Geom, wt: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_fits(g);
    assert_eq!(wt.len(), g.co * g.k(), "winograd: weight length");
    assert_eq!(dy.len(), g.n * g.y_len(), "winograd: gradient length");
    let gt = Geom::new([g.n, g.co, g.ho, g.wo], [g.ci, g.co, 3, 3], [1, 1], [1, 1])
        .expect("winograd: the transposed geometry of a fitting one fits");
    let u = transform_weights(g.ci, g.co, Kernels::Flipped(wt));
    convolve(&gt, dy, &u, None)
}

/// The weight gradient (`co * ci * 3 * 3`) given the input `x` and the output gradient `dy`.
pub fn weight_gradient(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_fits(g);
    assert_eq!(x.len(), g.n * g.x_len(), "winograd: input length");
    assert_eq!(dy.len(), g.n * g.y_len(), "winograd: gradient length");
    let tiles = Tiles::new(g);
    // Fixed chunks of blocks, each summed on one thread, then the chunks in order: the same
    // bits at any thread count.
    let block_len = block_dw(g);
    let blocks = tiles.count.div_ceil(block_len);
    let (per_chunk, chunks) = fixed_chunks(blocks);
    let engine = Engine::for_jobs(chunks);
    let partial: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut du = crate::zeros::zeros(E * g.co * g.ci);
            Scratch::with(|s| {
                for b in c * per_chunk..((c + 1) * per_chunk).min(blocks) {
                    tiles.block(b, block_len, &mut s.pos);
                    dw_block(g, x, dy, s, &mut du, engine);
                }
            });
            kernel_gradient(g.co, g.ci, &du)
        })
        .collect();
    sum_in_order(partial)
}

/// Tiles per block of the weight gradient: [`BLOCK_DW`], or half of it where neither side has
/// more than [`NARROW`] channels. Measured with `conv_probe winograd 32`, three alternating
/// rounds: 128->128 at 32x32 26.1-28.0 ms in blocks of 128 against 29.0-36.0 ms in blocks of 256,
/// 64->64 at 28x28 7.1-8.9 against 8.2-9.2 (one noisy round 11.1-11.3); 256->256 at 16x16 did
/// better in blocks of 256. Fixed by the shapes alone, as the bits need.
fn block_dw(g: &Geom) -> usize {
    if g.ci.max(g.co) <= NARROW {
        BLOCK_DW / 2
    } else {
        BLOCK_DW
    }
}

/// `m` (or its transpose) in the top-left corner of a 6x6 matrix of zeros, for [`left`] and
/// [`right`].
const fn padded<const R: usize, const C: usize>(
    m: [[f32; C]; R],
    transpose: bool,
) -> [[f32; TILE]; TILE] {
    let mut out = [[0.0f32; TILE]; TILE];
    let mut r = 0;
    while r < R {
        let mut c = 0;
        while c < C {
            if transpose {
                out[c][r] = m[r][c];
            } else {
                out[r][c] = m[r][c];
            }
            c += 1;
        }
        r += 1;
    }
    out
}

/// `G` (6x3) with zero columns.
const G6: [[f32; TILE]; TILE] = padded(G, false);
/// `A` (6x4, `A^T` transposed) with zero columns.
const A6: [[f32; TILE]; TILE] = padded(AT, true);
/// `G^T` (3x6) with zero rows.
const GT6: [[f32; TILE]; TILE] = padded(G, true);

/// The 3x3 kernels a Winograd convolution transforms.
#[derive(Clone, Copy)]
enum Kernels<'a> {
    /// `co x ci x 3 x 3`, kernel `[o][i]` as it is.
    AsGiven(&'a [f32]),
    /// A forward convolution's `ci x co x 3 x 3` weights seen from its input gradient: kernel
    /// `[o][i]` is the forward's `[i][o]` turned by 180 degrees.
    Flipped(&'a [f32]),
}

impl<'a> Kernels<'a> {
    /// Kernel `[o][i]` of a transformed convolution with `dims = [co, ci]`, and whether its
    /// taps run backwards.
    #[inline(always)]
    fn kernel(self, [co, ci]: [usize; 2], o: usize, i: usize) -> (&'a [f32; 9], bool) {
        let (wt, at, flipped) = match self {
            Kernels::AsGiven(wt) => (wt, o * ci + i, false),
            Kernels::Flipped(wt) => (wt, i * co + o, true),
        };
        let kernel = <&[f32; 9]>::try_from(&wt[at * 9..][..9]).expect("nine taps");
        (kernel, flipped)
    }
}

/// `U[o][e][i]`: kernel `[o][i]` of `kernels` as `G g G^T`, output channel by output channel
/// (each writes its own 36 rows of `ci` together; entry `e`'s `co x ci` GEMM operand has rows
/// `36 * ci` apart). Output channels in parallel, [`LANES`] input channels at a time.
fn transform_weights(co: usize, ci: usize, kernels: Kernels) -> Vec<f32> {
    let plane = co * ci;
    let fill = |u: &mut [MaybeUninit<f32>]| {
        let out = SharedOut(u.as_mut_ptr());
        (0..co)
            .into_par_iter()
            .for_each(|o| wide!(weights_of, weights_avx2, kernels, [co, ci], o, out));
    };
    // SAFETY: each output channel writes its 36 rows of `ci` entries.
    unsafe { crate::zeros::written(E * plane, fill) }
}

/// [`weights_of`] for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weights_avx2(kernels: Kernels, dims: [usize; 2], o: usize, out: Slots) {
    weights_of(kernels, dims, o, out)
}

/// The transformed kernels of output channel `o` (of `dims = [co, ci]`) into `out`. The 3x3
/// corner of `k` is rewritten for every group of lanes and the rest stays zero; a full group's
/// entries are written as fixed-size arrays (no `memcpy` call for 32 bytes).
#[inline(always)]
fn weights_of(kernels: Kernels, dims: [usize; 2], o: usize, out: Slots) {
    let ci = dims[1];
    let (mut k, mut t1, mut t) = (ZERO_PATCH, ZERO_PATCH, ZERO_PATCH);
    for i0 in (0..ci).step_by(LANES) {
        let lanes = LANES.min(ci - i0);
        if lanes < LANES {
            k = ZERO_PATCH;
        }
        for (lane, i) in (i0..i0 + lanes).enumerate() {
            let (kernel, flipped) = kernels.kernel(dims, o, i);
            for (tap, &v) in kernel.iter().enumerate() {
                let at = if flipped { 8 - tap } else { tap };
                k[at / 3][at % 3][lane] = v;
            }
        }
        left(&G6, &k, &mut t1);
        right(&t1, &G6, &mut t);
        for (e, val) in t.iter().flatten().enumerate() {
            // SAFETY: entries (o, e, i0..i0 + lanes) belong to this call alone.
            let dst = unsafe { out.slice((o * E + e) * ci + i0, lanes) };
            match <&mut [MaybeUninit<f32>; LANES]>::try_from(&mut *dst) {
                Ok(full) => *full = val.map(MaybeUninit::new),
                Err(_) => drop(copy_into(dst, &val[..lanes])),
            }
        }
    }
}

/// Where one output tile sits: its image and its top-left output pixel.
#[derive(Clone, Copy)]
struct Pos {
    img: usize,
    oy: usize,
    ox: usize,
}

/// The 4x4 output tiles of a batch, numbered image by image, row by row.
struct Tiles {
    th: usize,
    tw: usize,
    count: usize,
}

impl Tiles {
    fn new(g: &Geom) -> Self {
        let (th, tw) = (g.ho.div_ceil(OUT), g.wo.div_ceil(OUT));
        Self {
            th,
            tw,
            count: g.n * th * tw,
        }
    }

    /// Where tile `t` sits.
    fn pos(&self, t: usize) -> Pos {
        let per_image = self.th * self.tw;
        Pos {
            img: t / per_image,
            oy: t % per_image / self.tw * OUT,
            ox: t % self.tw * OUT,
        }
    }

    /// The positions of block `b` of `len` tiles, into `pos`.
    fn block(&self, b: usize, len: usize, pos: &mut Vec<Pos>) {
        pos.clear();
        pos.extend((b * len..((b + 1) * len).min(self.count)).map(|t| self.pos(t)));
    }
}

/// The convolution of `x` with the transformed weights `u`, block by block.
fn convolve(g: &Geom, x: &[f32], u: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let tiles = Tiles::new(g);
    let blocks = tiles.count.div_ceil(BLOCK);
    let engine = Engine::for_jobs(blocks);
    let fill = |y: &mut [MaybeUninit<f32>]| {
        let out = SharedOut(y.as_mut_ptr());
        (0..blocks).into_par_iter().for_each(|b| {
            Scratch::with(|s| {
                tiles.block(b, BLOCK, &mut s.pos);
                block(g, x, u, bias, s, engine, out);
            })
        });
    };
    // SAFETY: the tiles cover the output, and `transform_output` writes every one of their
    // pixels that lies inside it.
    unsafe { crate::zeros::written(g.n * g.y_len(), fill) }
}

/// Values between one channel's 36 rows and the next's beyond the rows themselves: with `36 *
/// ld` alone, a multiple of 1,024 for blocks of 128 and 256 tiles, the GEMMs' operand rows fell
/// on the same cache sets (the weight gradient took 1.3-1.5x as long).
const SLAB_PAD: usize = 16;

/// One channel's share of [`Scratch`]'s `v` and `m` for blocks of `ld` (padded) tiles.
fn slab(ld: usize) -> usize {
    E * ld + SLAB_PAD
}

/// Per-thread buffers: tile positions, transformed patches, products.
///
/// `v` and `m` are channel-major: entry `e` of channel `c` for the block's `ld` tiles at
/// `c * slab(ld) + e * ld`, so a transform writes (or reads) one channel's 36 rows close
/// together, and entry `e`'s GEMM operand is the matrix of rows `slab(ld)` apart from `e * ld`.
/// (With the entries outermost, each transform's 36 accesses per lane group went to 36 planes far
/// apart: a third of the recipe's step profile sat on those stores and loads.)
#[derive(Default)]
struct Scratch {
    pos: Vec<Pos>,
    v: Vec<f32>,
    m: Vec<f32>,
}

thread_local! {
    /// Each thread's [`Scratch`], kept between blocks and calls: sized (and zeroed) once, not
    /// once per rayon task.
    static SCRATCH: Cell<Scratch> = Cell::default();
}

impl Scratch {
    /// Runs `f` with this thread's scratch (a fresh one if a block that this thread interrupted
    /// to run `f`'s caller holds it: rayon may run another task while a GEMM waits).
    fn with<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut s = SCRATCH.take();
        let r = f(&mut s);
        SCRATCH.set(s);
        r
    }

    /// Sizes `v` and `m` for the tiles in `pos` and transforms their input patches into `v`;
    /// returns the padded tile count (the planes' row length).
    fn patches(&mut self, g: &Geom, x: &[f32]) -> usize {
        let ld = self.pos.len().next_multiple_of(LANES);
        self.v.resize(slab(ld) * g.ci, 0.0);
        self.m.resize(slab(ld) * g.co, 0.0);
        let (pos, v) = (&self.pos, &mut self.v);
        wide!(transform_input, transform_input_avx2, g, x, pos, v, ld);
        ld
    }
}

/// One block of tiles: transform, 36 GEMMs, transform back into `out`.
fn block(
    g: &Geom,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    s: &mut Scratch,
    engine: Engine,
    out: Slots,
) {
    let (ci, co, ld) = (g.ci, g.co, s.patches(g, x));
    let (v, slab) = (&s.v, slab(ld));
    // m[e] = U[e] V[e]: U[e]'s rows `36 * ci` apart from `e * ci`, V[e]'s and m[e]'s `slab`
    // apart from `e * ld`.
    entries(engine, &mut s.m, [ld, slab], [co, ld, ci], false, |e| {
        (
            Mat::rows(&u[e * ci..], E * ci),
            Mat::rows(&v[e * ld..], slab),
        )
    });
    wide!(
        transform_output,
        transform_output_avx2,
        g,
        &s.m,
        ld,
        &s.pos,
        bias,
        out
    );
}

/// One block of the weight gradient: the block's transformed patches `V` and transformed output
/// gradients `A dy A^T`, and `du[e] += (A dy A^T)[e] V[e]^T` for each of the 36 entries (`du`
/// laid out as the transformed weights are, `[o][e][i]`).
fn dw_block(g: &Geom, x: &[f32], dy: &[f32], s: &mut Scratch, du: &mut [f32], engine: Engine) {
    let (ci, co, ld) = (g.ci, g.co, s.patches(g, x));
    wide!(
        transform_grad,
        transform_grad_avx2,
        g,
        dy,
        &s.pos,
        &mut s.m,
        ld
    );
    let (m, v, slab) = (&s.m, &s.v, slab(ld));
    // du[e] += M[e] V[e]^T: M[e]'s and V[e]'s rows `slab` apart from `e * ld`, du[e]'s `36 * ci`
    // apart from `e * ci`.
    entries(engine, du, [ci, E * ci], [co, ci, ld], true, |e| {
        (
            Mat::rows(&m[e * ld..], slab),
            Mat::transposed(&v[e * ld..], slab),
        )
    });
}

/// The 36 entries' products `dst[e] (+)= lhs[e] rhs[e]` (`[m, n, k] = mnk`), `operands(e)` giving
/// `(lhs[e], rhs[e])`, into one buffer where entry `e`'s `m` rows of `n` values start at
/// `e * step` and lie `ldd` apart (`[step, ldd] = at`): the entries' rows interleave, each
/// entry's own values apart from the others' (checked). Where the block has the threads to itself
/// (`engine` parallel: fewer blocks than threads, as for 4x4 and 8x8 images), the entries are
/// shared out over the threads, each GEMM on one: 36 small GEMMs split this way wait less than
/// each split over all threads. The sums are the same either way (gemm splits only output
/// tiles), so are the bits.
fn entries(
    engine: Engine,
    dst: &mut [f32],
    [step, ldd]: [usize; 2],
    [m, n, k]: [usize; 3],
    acc: bool,
    operands: impl Fn(usize) -> (Mat, Mat) + Sync,
) {
    assert!(
        n <= step && (E - 1) * step + n <= ldd && (m - 1) * ldd + (E - 1) * step + n <= dst.len(),
        "winograd: entries' rows overlap or overrun their buffer"
    );
    let out = SharedOut(dst.as_mut_ptr());
    let gemm = |e: usize| {
        let (lhs, rhs) = operands(e);
        // SAFETY: entry `e`'s rows lie inside `dst` and apart from every other entry's (the
        // assertion above), and `dst` is borrowed mutably for the call; the callers build the
        // operands from slices holding them with the strides given.
        unsafe {
            let at = out.at(e * step);
            matmul_raw(at, ldd, [m, n, k], acc, lhs, rhs, gemm::Parallelism::None)
        }
    };
    if matches!(engine.par, gemm::Parallelism::None) {
        (0..E).for_each(gemm);
    } else {
        (0..E).into_par_iter().for_each(gemm);
    }
}

/// Whether the CPU has AVX2: the transforms then run compiled for it (wider registers for the
/// same operations, no fused multiply-adds: the same bits).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`transform_input`] for AVX2, with the same arithmetic (so the same bits) but without the
/// patch rows in memory: each of the six patch rows of eight tiles is loaded straight from the
/// image (a masked load, zero outside it) and transposed in registers into the lanes of `d`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_input_avx2(g: &Geom, x: &[f32], pos: &[Pos], v: &mut [f32], ld: usize) {
    use std::arch::x86_64::*;
    let (ci, hw, slab) = (g.ci, g.h * g.w, slab(ld));
    let mut d = ZERO_PATCH;
    let (mut t1, mut t) = (ZERO_PATCH, ZERO_PATCH);
    let mut masks = [_mm256_setzero_si256(); LANES];
    for c in 0..ci {
        for (l0, chunk) in (0..ld).step_by(LANES).zip(pos.chunks(LANES)) {
            for (mask, p) in masks.iter_mut().zip(chunk) {
                *mask = patch_columns(g, p);
            }
            for (r, dr) in d.iter_mut().enumerate() {
                let rows: [__m256; LANES] = std::array::from_fn(|l| match chunk.get(l) {
                    // SAFETY: the CPU has AVX2; `patch_row_avx` reads only the patch row's
                    // columns inside the image (`masks[l]`), of a row inside it.
                    Some(p) => unsafe {
                        patch_row_avx(g, &x[(p.img * ci + c) * hw..][..hw], p, r, masks[l])
                    },
                    None => _mm256_setzero_ps(),
                });
                let cols = transpose8_regs(rows);
                for (q, lanes) in dr.iter_mut().enumerate() {
                    // SAFETY: `lanes` holds 8 floats.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), cols[q]) };
                }
            }
            right(&d, &BT, &mut t1);
            left(&BT, &t1, &mut t);
            for (e, val) in t.iter().flatten().enumerate() {
                v[c * slab + e * ld + l0..][..LANES].copy_from_slice(val);
            }
        }
    }
}

/// The lanes (patch columns `q < 6`) of tile `p`'s patch that lie inside the image, as a mask
/// for `_mm256_maskload_ps`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn patch_columns(g: &Geom, p: &Pos) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // The patch starts one pixel left of the tile (padding 1): columns q with 0 <= ox - 1 + q < w.
    let first = 1usize.saturating_sub(p.ox) as i32;
    let end = (g.w + 1 - p.ox).min(TILE) as i32;
    let q = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_and_si256(
        _mm256_cmpgt_epi32(q, _mm256_set1_epi32(first - 1)),
        _mm256_cmpgt_epi32(_mm256_set1_epi32(end), q),
    )
}

/// Row `r` of tile `p`'s 6x6 patch in `plane` (lanes 0..6; zero outside the image and in lanes
/// 6 and 7), loaded with `columns` (from [`patch_columns`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn patch_row_avx(
    g: &Geom,
    plane: &[f32],
    p: &Pos,
    r: usize,
    columns: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // The patch starts one pixel above the tile (padding 1).
    let y = (p.oy + r).wrapping_sub(1);
    if y >= g.h {
        return _mm256_setzero_ps();
    }
    let start = (y * g.w + p.ox) as isize - 1;
    if p.ox >= 1 && p.ox + OUT < g.w && start as usize + LANES <= plane.len() {
        // All six columns inside the image, and eight values inside the plane: a plain load
        // (lanes 6 and 7 are not used).
        // SAFETY: `start + 8 <= plane.len()`.
        return unsafe { _mm256_loadu_ps(plane.as_ptr().add(start as usize)) };
    }
    // SAFETY: the masked-in lanes are the row's pixels ox - 1 + q inside 0..w, so inside `plane`;
    // the masked-out ones are not read.
    unsafe { _mm256_maskload_ps(plane.as_ptr().wrapping_offset(start), columns) }
}

/// [`transform_grad`] for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_grad_avx2(g: &Geom, dy: &[f32], pos: &[Pos], m: &mut [f32], ld: usize) {
    transform_grad(g, dy, pos, m, ld)
}

/// [`kernel_gradient_of`] for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_gradient_avx2(du: &[f32], o: usize, ci: usize, dw: &mut [f32]) {
    kernel_gradient_of(du, o, ci, dw)
}

/// [`transform_output`] for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_output_avx2(
    g: &Geom,
    m: &[f32],
    ld: usize,
    pos: &[Pos],
    bias: Option<&[f32]>,
    out: Slots,
) {
    transform_output(g, m, ld, pos, bias, out)
}

/// `LANES` tiles' worth of one matrix entry.
type Lanes = [f32; LANES];

/// `LANES` tiles' 6x6 matrices, all zero.
const ZERO_PATCH: [[Lanes; TILE]; TILE] = [[[0.0; LANES]; TILE]; TILE];

/// `rows x TILE` lanes `m` times `TILE x TILE` (or `OUT x TILE`) matrix `mt` transposed, into
/// `out`: `out[r][j] = sum_q m[r][q] * mt[j][q]`, terms in order of `q`, zero entries skipped.
/// (Written into `out` rather than returned: a returned array of lanes was copied with a call
/// to `memcpy` in each use.)
#[inline(always)]
fn right<const R: usize, const J: usize>(
    m: &[[Lanes; TILE]; R],
    mt: &[[f32; TILE]; J],
    out: &mut [[Lanes; J]; R],
) {
    for (orow, mrow) in out.iter_mut().zip(m) {
        for (o, coef) in orow.iter_mut().zip(mt) {
            let mut acc = [0.0f32; LANES];
            for (&c, v) in coef.iter().zip(mrow) {
                if c != 0.0 {
                    for (a, b) in acc.iter_mut().zip(v) {
                        *a += c * b;
                    }
                }
            }
            *o = acc;
        }
    }
}

/// `mt (J x TILE) * m (TILE x C)` lanes into `out`: `out[i][c] = sum_r mt[i][r] * m[r][c]`,
/// terms in order of `r`, zero entries skipped.
#[inline(always)]
fn left<const J: usize, const C: usize>(
    mt: &[[f32; TILE]; J],
    m: &[[Lanes; C]; TILE],
    out: &mut [[Lanes; C]; J],
) {
    for (orow, coef) in out.iter_mut().zip(mt) {
        for (col, o) in orow.iter_mut().enumerate() {
            let mut acc = [0.0f32; LANES];
            for (&c, mrow) in coef.iter().zip(m) {
                if c != 0.0 {
                    for (a, b) in acc.iter_mut().zip(&mrow[col]) {
                        *a += c * b;
                    }
                }
            }
            *o = acc;
        }
    }
}

/// `B^T d B` of every tile's 6x6 patch, channel by channel, into `v` (channel-major: see [`Scratch`]).
///
/// Each lane's patch is first copied into its own row of `rows`, a patch row (its part inside
/// the image) at a time, then the rows are transposed into the lanes of `d` with shuffles. The
/// version before wrote the lanes pixel by pixel, with a padding check per pixel; this function's
/// share of a CIFAR-10 training step's profile fell from 12.2% to 7.3%. The transposition moves
/// values only, so the bits are the same.
#[inline(always)]
fn transform_input(g: &Geom, x: &[f32], pos: &[Pos], v: &mut [f32], ld: usize) {
    let (ci, hw) = (g.ci, g.h * g.w);
    let mut rows = [[0.0f32; ROW]; LANES];
    let mut d = ZERO_PATCH;
    let (mut t1, mut t) = (ZERO_PATCH, ZERO_PATCH);
    for c in 0..ci {
        for (l0, chunk) in (0..ld).step_by(LANES).zip(pos.chunks(LANES)) {
            for (row, p) in rows.iter_mut().zip(chunk) {
                let plane = &x[(p.img * ci + c) * hw..][..hw];
                patch_row(g, plane, p, row);
            }
            lanes_from_rows(&mut rows, chunk.len(), &mut d);
            right(&d, &BT, &mut t1);
            left(&BT, &t1, &mut t);
            for (e, val) in t.iter().flatten().enumerate() {
                v[c * slab(ld) + e * ld + l0..][..LANES].copy_from_slice(val);
            }
        }
    }
}

/// A lane's 6x6 patch as one row (entry `r * 6 + q`), padded to a multiple of [`LANES`].
const ROW: usize = E.next_multiple_of(LANES);

/// The 6x6 patch of tile `p` into `row` (entry `r * 6 + q`): the part inside the image copied a
/// patch row at a time, the rest (the padding) zero.
#[inline(always)]
fn patch_row(g: &Geom, plane: &[f32], p: &Pos, row: &mut [f32; ROW]) {
    // The patch starts one pixel above and left of the tile (padding 1).
    let (y0, x0) = (p.oy as isize - 1, p.ox as isize - 1);
    let inside = |start: isize, side: usize| Range {
        start: (-start).max(0) as usize,
        end: (side as isize - start).min(TILE as isize) as usize,
    };
    let (rows, cols) = (inside(y0, g.h), inside(x0, g.w));
    if rows.len() < TILE || cols.len() < TILE {
        row[..E].fill(0.0);
    }
    for r in rows {
        let src = &plane[(y0 + r as isize) as usize * g.w..][..g.w];
        let from = (x0 + cols.start as isize) as usize;
        copy_short::<TILE>(
            &mut row[r * TILE..][cols.clone()],
            &src[from..][..cols.len()],
        );
    }
}

/// `dst.copy_from_slice(src)` for the few values of a patch row or a lane group: a copy of `N`
/// values when that is the length, which the compiler turns into a few moves, instead of a
/// call to `memmove` (which these copies of 4-8 values spent most of their time in).
#[inline(always)]
fn copy_short<const N: usize>(dst: &mut [f32], src: &[f32]) {
    match (
        <&mut [f32; N]>::try_from(&mut *dst),
        <&[f32; N]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

/// Entry `e` of every lane's row into lane `l` of `d[e / 6][e % 6]`, the rows past the first
/// `used` (past a block's last tile) zeroed first: an 8x8 transposition per eight entries (AVX
/// shuffles where the CPU has AVX2).
#[inline(always)]
fn lanes_from_rows(rows: &mut [[f32; ROW]; LANES], used: usize, d: &mut [[Lanes; TILE]; TILE]) {
    rows[used..].iter_mut().for_each(|r| r.fill(0.0));
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        for k in 0..ROW / LANES {
            // SAFETY: the CPU has AVX2 (so AVX).
            let block = unsafe { transpose8_avx(rows, k * LANES) };
            for (e, lanes) in (k * LANES..E).zip(block) {
                d[e / TILE][e % TILE] = lanes;
            }
        }
        return;
    }
    lanes_from_rows_plain(rows, d);
}

/// [`lanes_from_rows`] one value at a time.
#[inline(always)]
fn lanes_from_rows_plain(rows: &[[f32; ROW]; LANES], d: &mut [[Lanes; TILE]; TILE]) {
    for (e, lanes) in d.iter_mut().flatten().enumerate() {
        for (l, row) in rows.iter().enumerate() {
            lanes[l] = row[e];
        }
    }
}

const _: () = assert!(LANES == 8, "transpose8_avx moves eight lanes");

/// Columns `col..col + 8` of the eight rows, transposed: element `[i][l]` is `rows[l][col + i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn transpose8_avx(rows: &[[f32; ROW]; LANES], col: usize) -> [Lanes; LANES] {
    use std::arch::x86_64::*;
    let r: [__m256; LANES] = std::array::from_fn(|l| {
        let src = &rows[l][col..col + LANES];
        // SAFETY: `src` holds 8 floats.
        unsafe { _mm256_loadu_ps(src.as_ptr()) }
    });
    let o = transpose8_regs(r);
    let mut out = [[0.0f32; LANES]; LANES];
    for (dst, v) in out.iter_mut().zip(o) {
        // SAFETY: `dst` holds 8 floats.
        unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) };
    }
    out
}

/// Eight registers transposed: lane `l` of result `i` is lane `i` of `r[l]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn transpose8_regs(r: [std::arch::x86_64::__m256; LANES]) -> [std::arch::x86_64::__m256; LANES] {
    use std::arch::x86_64::*;
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves swapped across.
    let t: [__m256; LANES] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    let s: [__m256; LANES] = std::array::from_fn(|i| {
        let (a, b) = [(0, 2), (1, 3), (4, 6), (5, 7)][i / 2];
        if i % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(t[a], t[b])
        } else {
            _mm256_shuffle_ps::<0xEE>(t[a], t[b])
        }
    });
    std::array::from_fn(|i| {
        if i < 4 {
            _mm256_permute2f128_ps::<0x20>(s[i], s[i + 4])
        } else {
            _mm256_permute2f128_ps::<0x31>(s[i - 4], s[i])
        }
    })
}

/// `A^T m A` of every tile and output channel, plus the bias, into the inside of the output.
#[inline(always)]
fn transform_output(g: &Geom, m: &[f32], ld: usize, pos: &[Pos], bias: Option<&[f32]>, out: Slots) {
    let (co, p) = (g.co, g.p());
    let mut mm = ZERO_PATCH;
    let mut t1 = [[[0.0f32; LANES]; OUT]; TILE];
    let mut t = [[[0.0f32; LANES]; OUT]; OUT];
    for o in 0..co {
        let b = bias.map_or(0.0, |b| b[o]);
        for (l0, chunk) in (0..ld).step_by(LANES).zip(pos.chunks(LANES)) {
            for (e, val) in mm.iter_mut().flatten().enumerate() {
                val.copy_from_slice(&m[o * slab(ld) + e * ld + l0..][..LANES]);
            }
            right(&mm, &AT, &mut t1);
            left(&AT, &t1, &mut t);
            for (lane, pt) in chunk.iter().enumerate() {
                let base = (pt.img * co + o) * p;
                let cols = OUT.min(g.wo - pt.ox);
                for (i, row) in t.iter().enumerate().take(OUT.min(g.ho - pt.oy)) {
                    // SAFETY: this tile's pixels of channel `o` belong to this tile alone, and
                    // the `cols` pixels from (oy + i, ox) lie inside the output.
                    let dst = unsafe { out.slice(base + (pt.oy + i) * g.wo + pt.ox, cols) };
                    fill_from(dst, row.iter().map(|val| val[lane] + b));
                }
            }
        }
    }
}

/// `A dy A^T` of every tile's 4x4 output gradient (zero outside the output), channel by
/// channel, into `m` (channel-major: see [`Scratch`]).
#[inline(always)]
fn transform_grad(g: &Geom, dy: &[f32], pos: &[Pos], m: &mut [f32], ld: usize) {
    let (co, p) = (g.co, g.p());
    // Zeroed once: entries of rows and columns 4 and 5 are never written, each lane's 4x4
    // corner in full (zero outside the output), and `lanes_from_rows` clears the lanes past the
    // last tile.
    let mut rows = [[0.0f32; ROW]; LANES];
    let mut d = ZERO_PATCH;
    let (mut t1, mut t) = (ZERO_PATCH, ZERO_PATCH);
    for o in 0..co {
        for (l0, chunk) in (0..ld).step_by(LANES).zip(pos.chunks(LANES)) {
            for (row, pt) in rows.iter_mut().zip(chunk) {
                let plane = &dy[(pt.img * co + o) * p..][..p];
                let (inside, cols) = (OUT.min(g.ho - pt.oy), OUT.min(g.wo - pt.ox));
                for (i, dst) in row.chunks_exact_mut(TILE).take(OUT).enumerate() {
                    let src = if i < inside {
                        &plane[(pt.oy + i) * g.wo + pt.ox..][..cols]
                    } else {
                        &[]
                    };
                    copy_short::<OUT>(&mut dst[..src.len()], src);
                    dst[src.len()..OUT].fill(0.0);
                }
            }
            lanes_from_rows(&mut rows, chunk.len(), &mut d);
            left(&A6, &d, &mut t1);
            right(&t1, &A6, &mut t);
            for (e, val) in t.iter().flatten().enumerate() {
                m[o * slab(ld) + e * ld + l0..][..LANES].copy_from_slice(val);
            }
        }
    }
}

/// The kernels' gradient (`co * ci * 9`) from that of the transformed kernels, `G^T dU G`.
fn kernel_gradient(co: usize, ci: usize, du: &[f32]) -> Vec<f32> {
    let mut dw = crate::zeros::zeros(co * ci * 9);
    dw.par_chunks_mut(ci * 9)
        .enumerate()
        .for_each(|(o, dw)| wide!(kernel_gradient_of, kernel_gradient_avx2, du, o, ci, dw));
    dw
}

/// [`kernel_gradient`] for output channel `o`: its `ci` kernels' gradients into `dw`.
#[inline(always)]
fn kernel_gradient_of(du: &[f32], o: usize, ci: usize, dw: &mut [f32]) {
    let (mut t1, mut t) = (ZERO_PATCH, ZERO_PATCH);
    for i0 in (0..ci).step_by(LANES) {
        let lanes = LANES.min(ci - i0);
        let mut d = ZERO_PATCH;
        for (e, val) in d.iter_mut().flatten().enumerate() {
            copy_short::<LANES>(&mut val[..lanes], &du[(o * E + e) * ci + i0..][..lanes]);
        }
        left(&GT6, &d, &mut t1);
        right(&t1, &GT6, &mut t);
        for lane in 0..lanes {
            let kernel = &mut dw[(i0 + lane) * 9..][..9];
            for (r, row) in kernel.chunks_exact_mut(3).enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = t[r][c][lane];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::tests::data;
    use super::super::kernel::{backward_grouped, forward_grouped, Need};
    use super::*;

    /// Input and weight shapes: odd sides (tiles over the edge), one-pixel images, more tiles
    /// than a block, channel counts at and over the minimum.
    const CASES: [([usize; 4], [usize; 4]); 6] = [
        ([2, 16, 8, 8], [16, 16, 3, 3]),
        ([3, 17, 7, 7], [20, 17, 3, 3]),
        ([1, 16, 1, 1], [16, 16, 3, 3]),
        ([2, 24, 5, 11], [16, 24, 3, 3]),
        ([5, 16, 16, 14], [32, 16, 3, 3]),
        ([1, 32, 2, 3], [17, 32, 3, 3]),
    ];

    /// Agreement with im2col to `tol` of each output's scale: the sum of the magnitudes of its
    /// terms (computed as the convolution of |x| with |w|).
    fn close(ours: &[f32], im2col: &[f32], scale: &[f32], tol: f32, what: &str) {
        assert_eq!(ours.len(), im2col.len(), "{what}: length");
        for (i, ((a, b), s)) in ours.iter().zip(im2col).zip(scale).enumerate() {
            assert!(
                (a - b).abs() <= tol * (s + 1e-3),
                "{what}[{i}]: {a} vs {b} (scale {s})"
            );
        }
    }

    fn abs(v: &[f32]) -> Vec<f32> {
        v.iter().map(|v| v.abs()).collect()
    }

    #[test]
    fn forward_matches_im2col() {
        for (i, (xs, ws)) in CASES.into_iter().enumerate() {
            let g = Geom::new(xs, ws, [1, 1], [1, 1]).unwrap();
            assert!(fits(&g));
            let x = data(g.n * g.x_len(), i as u32);
            let w = data(g.co * g.k(), 50 + i as u32);
            let b = data(g.co, 90 + i as u32);
            let scale = forward_grouped(&g, &abs(&x), &abs(&w), None, 1, Engine::F32);
            let want = forward_grouped(&g, &x, &w, Some(&b), 1, Engine::F32);
            close(&forward(&g, &x, &w, Some(&b)), &want, &scale, 1e-5, "y");
            let want = forward_grouped(&g, &x, &w, None, 1, Engine::F32);
            close(
                &forward(&g, &x, &w, None),
                &want,
                &scale,
                1e-5,
                "y (no bias)",
            );
        }
    }

    #[test]
    fn input_gradient_matches_im2col() {
        let need = Need {
            x: true,
            weight: false,
            bias: false,
        };
        for (i, (xs, ws)) in CASES.into_iter().enumerate() {
            let g = Geom::new(xs, ws, [1, 1], [1, 1]).unwrap();
            let x = data(g.n * g.x_len(), i as u32);
            let w = data(g.co * g.k(), 50 + i as u32);
            let dy = data(g.n * g.y_len(), 70 + i as u32);
            let want = backward_grouped(&g, &x, &w, &dy, need, 1, Engine::F32).x;
            let scale = backward_grouped(&g, &x, &abs(&w), &abs(&dy), need, 1, Engine::F32).x;
            let ours = input_gradient(&g, &w, &dy);
            close(&ours, &want.unwrap(), &scale.unwrap(), 1e-5, "dx");
        }
    }

    /// The weight gradient's tolerance: its rounding is relative to the transformed patches and
    /// gradients (coefficients up to 8 and 25 after both passes), not to the few terms of a
    /// gradient whose image is mostly padding; the worst seen was 1.3e-5 of the scale, on the
    /// one-pixel image (the others at most 2.2e-6, as the forward and input gradient).
    const DW_TOL: f32 = 3e-5;

    /// The weight gradient of `g` against im2col's, on inputs drawn from `seed`.
    fn check_weight_gradient(g: &Geom, seed: u32) {
        let need = Need {
            x: false,
            weight: true,
            bias: false,
        };
        let x = data(g.n * g.x_len(), seed);
        let w = data(g.co * g.k(), 50 + seed);
        let dy = data(g.n * g.y_len(), 70 + seed);
        let want = backward_grouped(g, &x, &w, &dy, need, 1, Engine::F32).weight;
        let scale = backward_grouped(g, &abs(&x), &w, &abs(&dy), need, 1, Engine::F32).weight;
        let ours = weight_gradient(g, &x, &dy);
        close(&ours, &want.unwrap(), &scale.unwrap(), DW_TOL, "dw");
    }

    #[test]
    fn weight_gradient_matches_im2col() {
        for (i, (xs, ws)) in CASES.into_iter().enumerate() {
            check_weight_gradient(&Geom::new(xs, ws, [1, 1], [1, 1]).unwrap(), i as u32);
        }
    }

    /// A bf16 scope leaves Winograd in f32: the same bits as outside it, forward and both
    /// gradients.
    #[test]
    fn bf16_scope_keeps_winograd_in_f32() {
        use crate::precision::{scope, Precision};
        let g = Geom::new([2, 16, 8, 8], [24, 16, 3, 3], [1, 1], [1, 1]).unwrap();
        let x = data(g.n * g.x_len(), 1);
        let w = data(g.co * g.k(), 2);
        let dy = data(g.n * g.y_len(), 3);
        let run = || {
            (
                forward(&g, &x, &w, None),
                input_gradient(&g, &w, &dy),
                weight_gradient(&g, &x, &dy),
            )
        };
        assert!(run() == scope(Precision::Bf16, run));
    }

    /// More tiles than one chunk of weight-gradient blocks holds: the chunks' sum.
    #[test]
    fn weight_gradient_over_many_chunks_matches_im2col() {
        // 16 tiles per image, 150 images: 2400 tiles, 10 blocks, 5 chunks of 2.
        let g = Geom::new([150, 16, 13, 16], [16, 16, 3, 3], [1, 1], [1, 1]).unwrap();
        check_weight_gradient(&g, 5);
    }

    /// The AVX transposition against the plain one (the same function twice without AVX2).
    #[test]
    fn the_avx_transposition_moves_every_value_where_the_plain_one_does() {
        let mut rows = [[0.0f32; ROW]; LANES];
        for (l, row) in rows.iter_mut().enumerate() {
            for (e, v) in row.iter_mut().enumerate() {
                *v = (l * 100 + e) as f32;
            }
        }
        let (mut fast, mut plain) = (ZERO_PATCH, ZERO_PATCH);
        lanes_from_rows(&mut rows, LANES, &mut fast);
        lanes_from_rows_plain(&rows, &mut plain);
        assert_eq!(fast, plain);
        assert_eq!(plain[2][3][5], (5 * 100 + 2 * TILE + 3) as f32);
    }

    /// The AVX2 input transform (patch rows loaded masked, transposed in registers) gives the
    /// plain one's bits (zeros' signs included) in every block: odd sides, one-pixel images,
    /// tiles over the edge, a partial lane group.
    #[test]
    fn the_avx2_input_transform_gives_the_plain_bits() {
        if !avx2() {
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (seed, (xs, _)) in CASES.into_iter().enumerate() {
            let g = Geom::new(xs, [16, xs[1], 3, 3], [1, 1], [1, 1]).unwrap();
            let x = data(g.n * g.x_len(), seed as u32 + 4);
            let tiles = Tiles::new(&g);
            let mut pos = Vec::new();
            for b in 0..tiles.count.div_ceil(BLOCK) {
                tiles.block(b, BLOCK, &mut pos);
                let ld = pos.len().next_multiple_of(LANES);
                let (mut plain, mut wide) =
                    (vec![7.0; slab(ld) * g.ci], vec![7.0; slab(ld) * g.ci]);
                transform_input(&g, &x, &pos, &mut plain, ld);
                // SAFETY: the CPU has AVX2.
                unsafe { transform_input_avx2(&g, &x, &pos, &mut wide, ld) };
                assert!(bits(&plain) == bits(&wide), "{xs:?}, block {b}");
            }
        }
    }

    /// The same bits at 1, 2, 3 and 4 threads, with one block (the GEMMs on all threads) and
    /// with many.
    #[test]
    fn bits_do_not_depend_on_threads() {
        for (xs, ws) in [
            ([1, 16, 8, 8], [16, 16, 3, 3]),
            ([9, 16, 16, 16], [24, 16, 3, 3]),
            ([40, 16, 16, 16], [16, 16, 3, 3]),
        ] {
            let g = Geom::new(xs, ws, [1, 1], [1, 1]).unwrap();
            let x = data(g.n * g.x_len(), 1);
            let w = data(g.co * g.k(), 2);
            let dy = data(g.n * g.y_len(), 3);
            let run = |threads: usize| {
                crate::parallel::on_threads(threads, || {
                    (
                        forward(&g, &x, &w, None),
                        input_gradient(&g, &w, &dy),
                        weight_gradient(&g, &x, &dy),
                    )
                })
            };
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let one = run(1);
            for threads in [2, 3, 4] {
                let other = run(threads);
                assert_eq!(bits(&one.0), bits(&other.0), "{xs:?}: y at {threads}");
                assert_eq!(bits(&one.1), bits(&other.1), "{xs:?}: dx at {threads}");
                assert_eq!(bits(&one.2), bits(&other.2), "{xs:?}: dw at {threads}");
            }
        }
    }

    #[test]
    fn only_plain_3x3_convolutions_with_enough_channels_fit() {
        let fit = |xs, ws, s, p| fits(&Geom::new(xs, ws, s, p).unwrap());
        assert!(fit([1, 16, 4, 4], [16, 16, 3, 3], [1, 1], [1, 1]));
        assert!(!fit([1, 15, 4, 4], [16, 15, 3, 3], [1, 1], [1, 1]));
        assert!(!fit([1, 16, 4, 4], [15, 16, 3, 3], [1, 1], [1, 1]));
        assert!(!fit([1, 16, 8, 8], [16, 16, 3, 3], [2, 2], [1, 1]));
        assert!(!fit([1, 16, 8, 8], [16, 16, 3, 3], [1, 1], [0, 0]));
        assert!(!fit([1, 16, 8, 8], [16, 16, 1, 1], [1, 1], [0, 0]));
        assert!(!fit([1, 16, 8, 8], [16, 16, 5, 5], [1, 1], [1, 1]));
    }
}

//! A bf16 GEMM for CPUs with AVX512-BF16: the f32 operands are rounded to bf16 (to nearest even,
//! by `vcvtne2ps2bf16`) while they are packed, and `vdpbf16ps` adds pairs of their products into
//! f32 accumulators. Input and output stay f32; only the products lose precision.
//!
//! Packing: the reduction index `k` is taken in pairs, one pair of bf16 per 32-bit lane. The left
//! operand is kept as pairs along each row (or, when it is stored column by column, as rows of
//! pairs), padded to [`MR`] rows; the right operand is cut into panels of [`NR`] columns, each
//! `k / 2` rows of `NR` pairs. An `MR x NR` tile of the product is summed over the whole `k` in
//! 16 registers and written once, so every output element has one fixed summation order: the
//! same bits at any thread count. The product is made in a buffer of its own and then added to
//! (or stored into) the destination.
use rayon::prelude::*;

use crate::conv::kernel::Mat;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of a tile.
const MR: usize = 8;
/// Columns of a tile (two vectors of 16 lanes).
const NR: usize = 32;

/// `dst (m x n, rows ldd apart) [+]= lhs (m x k) * rhs (k x n)` with bf16 products and f32
/// sums, on `threads` threads of rayon's current pool (1: the calling thread only).
///
/// `lhs` and `rhs` must describe valid `m x k` and `k x n` matrices (the caller,
/// `conv::kernel::matmul_strided`, also checks `dst`'s size; the write-out indexes it safely).
/// Panics on a CPU without AVX512-BF16 (callers check [`crate::precision::bf16_supported`]).
pub(crate) fn matmul(
    dst: &mut [f32],
    ldd: usize,
    [m, n, k]: [usize; 3],
    acc: bool,
    lhs: Mat,
    rhs: Mat,
    threads: usize,
) {
    assert!(
        crate::precision::bf16_supported(),
        "bf16 GEMM on a CPU without AVX512-BF16"
    );
    if m == 0 || n == 0 {
        return;
    }
    // Packing a right operand stored column by column is a scalar scatter: when that is the
    // larger operand, compute the transpose instead (C^T = rhs^T lhs^T).
    let swap = rhs.cs != 1 && (lhs.rs == 1 || m <= n);
    let (rows, cols, a, b) = if swap {
        (n, m, rhs.t(), lhs.t())
    } else {
        (m, n, lhs, rhs)
    };
    // SAFETY: the caller's matrices are valid (above); the AVX512-BF16 features are present.
    let c = unsafe {
        let a = pack_lhs(rows, k, a);
        let b = pack_rhs(k, cols, b);
        product(&a, &b, threads)
    };
    write_out(&c, dst, ldd, [m, n], acc, swap);
}

/// A product in panels: element `(i, j)` at `((j / NR) * rows_padded + i) * NR + j % NR`.
struct Panels {
    data: Vec<f32>,
    rows_padded: usize,
}

impl Panels {
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[((j / NR) * self.rows_padded + i) * NR + j % NR]
    }
}

/// Adds (or stores) the product into `dst`; `swap`: `c` holds the transpose.
fn write_out(c: &Panels, dst: &mut [f32], ldd: usize, [m, n]: [usize; 2], acc: bool, swap: bool) {
    for i in 0..m {
        let row = &mut dst[i * ldd..][..n];
        if swap {
            for (j, d) in row.iter_mut().enumerate() {
                let v = c.at(j, i);
                *d = if acc { *d + v } else { v };
            }
            continue;
        }
        for (p, d) in row.chunks_mut(NR).enumerate() {
            let src = &c.data[(p * c.rows_padded + i) * NR..][..d.len()];
            if acc {
                d.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                d.copy_from_slice(src);
            }
        }
    }
}

/// The left operand as bf16 pairs: pair `q` of row `i` at `data[i * rs + q * ks]`, rows padded
/// with zeros to a multiple of [`MR`].
struct PackedLhs {
    data: Vec<u32>,
    rs: usize,
    ks: usize,
    pairs: usize,
    padded: usize,
}

/// The right operand in panels of [`NR`] columns: pair `q` of column `j` at
/// `data[((j / NR) * pairs + q) * NR + j % NR]`, columns padded with zeros.
struct PackedRhs {
    data: Vec<u32>,
    pairs: usize,
    panels: usize,
}

/// Packs the `rows x k` left operand.
///
/// # Safety
/// `a` describes a valid matrix; the CPU has AVX512-F, -BW and -BF16.
unsafe fn pack_lhs(rows: usize, k: usize, a: Mat) -> PackedLhs {
    let pairs = k.div_ceil(2);
    let padded = rows.next_multiple_of(MR);
    let mut data = vec![0u32; padded * pairs];
    if a.rs == 1 && a.cs != 1 {
        // Stored column by column: rows 2q and 2q + 1 of a^T are contiguous, interleave them.
        for q in 0..pairs {
            let r0 = a.ptr.offset(2 * q as isize * a.cs);
            let r1 = (2 * q + 1 < k).then(|| a.ptr.offset((2 * q + 1) as isize * a.cs));
            interleave(r0, r1, rows, data.as_mut_ptr().add(q * padded));
        }
        return PackedLhs {
            data,
            rs: 1,
            ks: padded,
            pairs,
            padded,
        };
    }
    let mut tmp = Vec::new();
    for i in 0..rows {
        let row = contiguous(a.ptr.offset(i as isize * a.rs), a.cs, k, &mut tmp);
        convert(row, k, data.as_mut_ptr().add(i * pairs));
    }
    PackedLhs {
        data,
        rs: pairs,
        ks: 1,
        pairs,
        padded,
    }
}

/// Packs the `k x cols` right operand.
///
/// # Safety
/// As [`pack_lhs`].
unsafe fn pack_rhs(k: usize, cols: usize, b: Mat) -> PackedRhs {
    let pairs = k.div_ceil(2);
    let panels = cols.div_ceil(NR);
    let mut data = vec![0u32; panels * pairs * NR];
    if b.cs == 1 {
        for q in 0..pairs {
            let r0 = b.ptr.offset(2 * q as isize * b.rs);
            let r1 = (2 * q + 1 < k).then(|| b.ptr.offset((2 * q + 1) as isize * b.rs));
            for p in 0..panels {
                let j = p * NR;
                let dst = data.as_mut_ptr().add((p * pairs + q) * NR);
                interleave(r0.add(j), r1.map(|r| r.add(j)), NR.min(cols - j), dst);
            }
        }
        return PackedRhs {
            data,
            pairs,
            panels,
        };
    }
    // Any other layout: each column gathered, converted, and scattered into its panel.
    let (mut tmp, mut conv) = (Vec::new(), vec![0u32; pairs]);
    for j in 0..cols {
        let col = contiguous(b.ptr.offset(j as isize * b.cs), b.rs, k, &mut tmp);
        convert(col, k, conv.as_mut_ptr());
        let base = (j / NR) * pairs * NR + j % NR;
        for (q, &v) in conv.iter().enumerate() {
            data[base + q * NR] = v;
        }
    }
    PackedRhs {
        data,
        pairs,
        panels,
    }
}

/// `len` values `stride` apart from `ptr`, as a contiguous run: the memory itself when the
/// stride is 1, else gathered into `tmp`.
///
/// # Safety
/// The `len` values are readable.
unsafe fn contiguous(ptr: *const f32, stride: isize, len: usize, tmp: &mut Vec<f32>) -> *const f32 {
    if stride == 1 {
        return ptr;
    }
    tmp.clear();
    tmp.extend((0..len).map(|i| *ptr.offset(i as isize * stride)));
    tmp.as_ptr()
}

/// The tiles of the product, panel by panel (panels spread over `threads` threads).
///
/// # Safety
/// The CPU has AVX512-F and -BF16.
unsafe fn product(a: &PackedLhs, b: &PackedRhs, threads: usize) -> Panels {
    let rows_padded = a.padded;
    let mut data = vec![0.0f32; b.panels * rows_padded * NR];
    if a.pairs == 0 {
        return Panels { data, rows_padded };
    }
    let run = |(p, c): (usize, &mut [f32])| {
        let bp = b.data[p * b.pairs * NR..].as_ptr();
        for t in 0..rows_padded / MR {
            // SAFETY: tile t's rows and panel p's pairs lie inside the packed operands, and
            // the tile's MR x NR outputs inside this panel's block of the product.
            unsafe {
                let ap = a.data.as_ptr().add(t * MR * a.rs);
                tile(a.pairs, ap, a.rs, a.ks, bp, c.as_mut_ptr().add(t * MR * NR));
            }
        }
    };
    let block = (rows_padded * NR).max(1);
    if threads > 1 {
        data.par_chunks_mut(block).enumerate().for_each(run);
    } else {
        data.chunks_mut(block).enumerate().for_each(run);
    }
    Panels { data, rows_padded }
}

/// One `MR x NR` tile: `c[i * NR + j] = sum_q a(i, q) . b[q * NR + j]` over `pairs` pairs.
///
/// # Safety
/// `a + i * a_rs + q * a_ks` for `i < MR`, `q < pairs`, `b[..pairs * NR]` and `c[..MR * NR]` are
/// valid; the CPU has AVX512-F and -BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile(pairs: usize, a: *const u32, a_rs: usize, a_ks: usize, b: *const u32, c: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for q in 0..pairs {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(q * NR).cast()));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(q * NR + 16).cast()));
        let aq = a.add(q * a_ks);
        for (i, acc) in acc.iter_mut().enumerate() {
            let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*aq.add(i * a_rs) as i32));
            acc[0] = _mm512_dpbf16_ps(acc[0], ai, b0);
            acc[1] = _mm512_dpbf16_ps(acc[1], ai, b1);
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(i * NR), acc[0]);
        _mm512_storeu_ps(c.add(i * NR + 16), acc[1]);
    }
}

/// The first `n` bits set (n <= 16).
#[cfg(target_arch = "x86_64")]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Rounds `k` contiguous f32 at `src` to bf16 and writes them in order, as `k.div_ceil(2)`
/// pairs (the last one's upper half zero when `k` is odd).
///
/// # Safety
/// `src[..k]` is readable and `dst[..k.div_ceil(2)]` writable; the CPU has AVX512-F, -BW and
/// -BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn convert(src: *const f32, k: usize, dst: *mut u32) {
    let mut i = 0;
    while i < k {
        let left = k - i;
        let lo = _mm512_maskz_loadu_ps(lanes(left), src.add(i));
        let hi = match left > 16 {
            true => _mm512_maskz_loadu_ps(lanes(left - 16), src.add(i + 16)),
            false => _mm512_setzero_ps(),
        };
        let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_mask_storeu_epi32(dst.add(i / 2).cast(), lanes(left.min(32).div_ceil(2)), v);
        i += 32;
    }
}

/// Interleaves two f32 rows as bf16 pairs: `dst[j] = bf16(r1[j]) << 16 | bf16(r0[j])` for
/// `j < len` (`r1` absent: zeros).
///
/// # Safety
/// `r0[..len]`, `r1[..len]` are readable and `dst[..len]` writable; the CPU has AVX512-F, -BW
/// and -BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave(r0: *const f32, r1: Option<*const f32>, len: usize, dst: *mut u32) {
    // 16-bit lane 2l takes r0's l-th value (lane l), lane 2l + 1 r1's (lane 16 + l).
    const ORDER: [u16; 32] = {
        let mut o = [0u16; 32];
        let mut l = 0;
        while l < 16 {
            o[2 * l] = l as u16;
            o[2 * l + 1] = 16 + l as u16;
            l += 1;
        }
        o
    };
    let order = _mm512_loadu_si512(ORDER.as_ptr().cast());
    let mut j = 0;
    while j < len {
        let mask = lanes(len - j);
        let a = _mm512_maskz_loadu_ps(mask, r0.add(j));
        let b = r1.map_or(_mm512_setzero_ps(), |r| {
            _mm512_maskz_loadu_ps(mask, r.add(j))
        });
        let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(b, a));
        _mm512_mask_storeu_epi32(dst.add(j).cast(), mask, _mm512_permutexvar_epi16(order, v));
        j += 16;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile(_: usize, _: *const u32, _: usize, _: usize, _: *const u32, _: *mut f32) {
    unreachable!("bf16 kernels are x86-64 only (bf16_supported is false elsewhere)")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn convert(_: *const f32, _: usize, _: *mut u32) {
    unreachable!("bf16 kernels are x86-64 only (bf16_supported is false elsewhere)")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn interleave(_: *const f32, _: Option<*const f32>, _: usize, _: *mut u32) {
    unreachable!("bf16 kernels are x86-64 only (bf16_supported is false elsewhere)")
}

#[cfg(test)]
mod tests;

//! `exp` for f32 in eight lanes, and what is built on it: softmax rows and the SiLU.
//!
//! The attention softmax of the Fashion-MNIST U-Net (784 x 784 scores per head) called libm's
//! `expf` once per score: a profile of its sampling forward had 45% of the samples in flex's
//! softmax, `expf` included. Here `exp` is a polynomial over eight lanes, written once over the
//! `Lanes` operations: plain arrays everywhere, AVX2 registers where the CPU has AVX2. Only
//! additions, multiplications, divisions, comparisons and bit moves are used, none fused, so both
//! give the same bits; every row sums in one fixed order, so the bits do not depend on threads.
//!
//! Accuracy: within 2 ulp of the exact value on `[-87, 88]` (checked by the tests against f64);
//! below -87 the result is `exp(-87)`, above 88 it is `exp(88)`. NaN stays NaN.

/// Values per lane group.
pub const LANES: usize = 8;

/// Lower clamp: `exp(LO)` is still a normal f32.
const LO: f32 = -87.0;
/// Upper clamp: `exp(HI)` times the polynomial's largest value stays finite.
const HI: f32 = 88.0;
/// `ln 2` in two parts: `n * LN2_HI` is exact for `|n| <= 127`.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds to an integer that sits in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
/// Coefficients of `(exp(r) - 1 - r) / r^2` on `|r| <= ln 2 / 2`, highest power first
/// (the classic Cephes `expf` minimax fit).
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes: 5.0000001e-1, which rounds to 0.5 in f32
];

/// Eight f32 lanes and the operations `exp` and the row kernels need. Every operation is one
/// IEEE operation per lane (or a bit move), so all implementations give the same bits.
///
/// # Safety
/// Implementations may need a CPU feature; callers guarantee it (see [`twin`]).
trait Lanes: Copy {
    unsafe fn splat(v: f32) -> Self;
    /// The first [`LANES`] values of `s`.
    unsafe fn load(s: &[f32]) -> Self;
    /// Into the first [`LANES`] values of `s`.
    unsafe fn store(self, s: &mut [f32]);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    /// `o` where `o > self`, else `self` (NaN in `o` is passed over).
    unsafe fn max(self, o: Self) -> Self;
    /// `self` clamped to `[LO, HI]` by comparisons: NaN passes through.
    unsafe fn clamp(self) -> Self;
    /// `2^(bits(self) - bits(ROUND))`, for `self = n + ROUND` with integer `n` in `[-126, 127]`.
    unsafe fn pow2_of_rounded(self) -> Self;
}

/// The array implementation, compiled for whatever CPU the build targets.
#[derive(Clone, Copy)]
struct Plain([f32; LANES]);

impl Plain {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32) -> Self {
        // A loop, not `array::map`, which is not always inlined.
        let mut r = self.0;
        for r in &mut r {
            *r = f(*r);
        }
        Plain(r)
    }

    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        let mut r = self.0;
        for (r, o) in r.iter_mut().zip(o.0) {
            *r = f(*r, o);
        }
        Plain(r)
    }
}

impl Lanes for Plain {
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Plain([v; LANES])
    }
    #[inline(always)]
    unsafe fn load(s: &[f32]) -> Self {
        let mut r = [0.0; LANES];
        r.copy_from_slice(&s[..LANES]);
        Plain(r)
    }
    #[inline(always)]
    unsafe fn store(self, s: &mut [f32]) {
        s[..LANES].copy_from_slice(&self.0);
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        self.zip(o, |a, b| a * b)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a / b)
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        self.zip(o, |a, b| if b > a { b } else { a })
    }
    #[inline(always)]
    unsafe fn clamp(self) -> Self {
        self.map(|x| {
            let x = if x > HI { HI } else { x };
            if x < LO {
                LO
            } else {
                x
            }
        })
    }
    #[inline(always)]
    unsafe fn pow2_of_rounded(self) -> Self {
        self.map(|t| {
            let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
            f32::from_bits((k.wrapping_add(127) << 23) as u32)
        })
    }
}

/// The AVX2 implementation.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lanes, HI, LANES, LO, ROUND};
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256);

    impl Lanes for Avx2 {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn splat(v: f32) -> Self {
            Avx2(_mm256_set1_ps(v))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn load(s: &[f32]) -> Self {
            assert!(s.len() >= LANES);
            // SAFETY: at least LANES values; unaligned load.
            Avx2(unsafe { _mm256_loadu_ps(s.as_ptr()) })
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn store(self, s: &mut [f32]) {
            assert!(s.len() >= LANES);
            // SAFETY: at least LANES values; unaligned store.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn add(self, o: Self) -> Self {
            Avx2(_mm256_add_ps(self.0, o.0))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn sub(self, o: Self) -> Self {
            Avx2(_mm256_sub_ps(self.0, o.0))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn mul(self, o: Self) -> Self {
            Avx2(_mm256_mul_ps(self.0, o.0))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn div(self, o: Self) -> Self {
            Avx2(_mm256_div_ps(self.0, o.0))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn max(self, o: Self) -> Self {
            Avx2(_mm256_blendv_ps(
                self.0,
                o.0,
                _mm256_cmp_ps::<_CMP_GT_OQ>(o.0, self.0),
            ))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn clamp(self) -> Self {
            let (hi, lo) = (_mm256_set1_ps(HI), _mm256_set1_ps(LO));
            let x = _mm256_blendv_ps(self.0, hi, _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, hi));
            Avx2(_mm256_blendv_ps(x, lo, _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo)))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn pow2_of_rounded(self) -> Self {
            let k = _mm256_sub_epi32(
                _mm256_castps_si256(self.0),
                _mm256_set1_epi32(ROUND.to_bits() as i32),
            );
            let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(k, _mm256_set1_epi32(127)));
            Avx2(_mm256_castsi256_ps(bits))
        }
    }
}

/// `exp` of each lane.
#[inline(always)]
unsafe fn exp_v<V: Lanes>(x: V) -> V {
    unsafe {
        let x = x.clamp();
        let t = x
            .mul(V::splat(std::f32::consts::LOG2_E))
            .add(V::splat(ROUND));
        let n = t.sub(V::splat(ROUND));
        let r = x.sub(n.mul(V::splat(LN2_HI))).sub(n.mul(V::splat(LN2_LO)));
        let mut p = V::splat(P[0]);
        for &c in &P[1..] {
            p = p.mul(r).add(V::splat(c));
        }
        let y = p.mul(r.mul(r)).add(r).add(V::splat(1.0));
        y.mul(t.pow2_of_rounded())
    }
}

/// `1 / (1 + exp(-z))` of each lane.
#[inline(always)]
unsafe fn sigmoid_v<V: Lanes>(z: V) -> V {
    unsafe {
        let one = V::splat(1.0);
        one.div(one.add(exp_v(V::splat(0.0).sub(z))))
    }
}

/// A lane group holding `tail` (fewer than [`LANES`] values) and `fill` after it.
#[inline(always)]
fn padded(tail: &[f32], fill: f32) -> [f32; LANES] {
    let mut v = [fill; LANES];
    v[..tail.len()].copy_from_slice(tail);
    v
}

/// The sum of the lanes, in a fixed order.
#[inline(always)]
fn lane_sum(a: [f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `exp(x)` of one value: lane 0 of the lane computation.
pub fn exp(x: f32) -> f32 {
    // SAFETY: the plain lanes need no CPU feature.
    unsafe { exp_v(Plain([x; LANES])).0[0] }
}

/// `1 / (1 + exp(-z))` of one value, bit for bit the lanes' value.
pub fn sigmoid(z: f32) -> f32 {
    // SAFETY: as in `exp`.
    unsafe { sigmoid_v(Plain([z; LANES])).0[0] }
}

/// Whether the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// `$generic::<Avx2>` through `$wide` (compiled for AVX2) where the CPU has AVX2, else
/// `$generic::<Plain>`.
macro_rules! dispatch {
    ($generic:ident, $wide:ident, $($arg:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2.
            return unsafe { $wide($($arg),*) };
        }
        // SAFETY: the plain lanes need no CPU feature.
        unsafe { $generic::<Plain>($($arg),*) }
    }};
}

/// Softmax of each row of `row` values of `v`, in place (`v` holds a whole number of rows).
pub fn softmax_in_place(v: &mut [f32], row: usize) {
    assert!(
        row > 0 && v.len().is_multiple_of(row),
        "softmax rows: lengths"
    );
    dispatch!(softmax_rows, softmax_avx2, v, row)
}

/// [`softmax_rows`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_avx2(v: &mut [f32], row: usize) {
    unsafe { softmax_rows::<avx2::Avx2>(v, row) }
}

#[inline(always)]
unsafe fn softmax_rows<V: Lanes>(v: &mut [f32], row: usize) {
    for r in v.chunks_exact_mut(row) {
        unsafe { softmax_row::<V>(r) }
    }
}

/// One row: the maximum, `exp(x - max)` and their sum, then the scaling by `1 / sum`.
#[inline(always)]
unsafe fn softmax_row<V: Lanes>(r: &mut [f32]) {
    unsafe {
        let (body, tail) = r.split_at_mut(r.len() / LANES * LANES);
        let mut m = V::splat(f32::NEG_INFINITY);
        for c in body.chunks_exact(LANES) {
            m = m.max(V::load(c));
        }
        let mut lanes = [0.0f32; LANES];
        m.store(&mut lanes);
        let max = tail
            .iter()
            .chain(&lanes)
            .fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
        let shift = V::splat(max);
        let mut acc = V::splat(0.0);
        for c in body.chunks_exact_mut(LANES) {
            let e = exp_v(V::load(c).sub(shift));
            e.store(c);
            acc = acc.add(e);
        }
        acc.store(&mut lanes);
        let mut sum = lane_sum(lanes);
        if !tail.is_empty() {
            exp_v(V::load(&padded(tail, max)).sub(shift)).store(&mut lanes);
            for (t, &e) in tail.iter_mut().zip(&lanes) {
                *t = e;
                sum += e;
            }
        }
        let inv = 1.0 / sum;
        let inv_v = V::splat(inv);
        for c in body.chunks_exact_mut(LANES) {
            V::load(c).mul(inv_v).store(c);
        }
        for t in tail {
            *t *= inv;
        }
    }
}

/// Softmax backward of each row of `row` values: `g` holds the output gradient and becomes the
/// input gradient `y * (g - sum(g * y))`, for the softmax output `y`.
pub fn softmax_backward_in_place(y: &[f32], g: &mut [f32], row: usize) {
    assert!(
        row > 0 && y.len() == g.len() && y.len().is_multiple_of(row),
        "softmax backward rows: lengths"
    );
    dispatch!(softmax_backward_rows, softmax_backward_avx2, y, g, row)
}

/// [`softmax_backward_rows`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_backward_avx2(y: &[f32], g: &mut [f32], row: usize) {
    unsafe { softmax_backward_rows::<avx2::Avx2>(y, g, row) }
}

#[inline(always)]
unsafe fn softmax_backward_rows<V: Lanes>(y: &[f32], g: &mut [f32], row: usize) {
    for (y, g) in y.chunks_exact(row).zip(g.chunks_exact_mut(row)) {
        unsafe {
            let body = row / LANES * LANES;
            let mut acc = V::splat(0.0);
            for (yc, gc) in y[..body].chunks_exact(LANES).zip(g.chunks_exact(LANES)) {
                acc = acc.add(V::load(yc).mul(V::load(gc)));
            }
            let mut lanes = [0.0f32; LANES];
            acc.store(&mut lanes);
            let mut dot = lane_sum(lanes);
            for (a, b) in y[body..].iter().zip(&g[body..]) {
                dot += a * b;
            }
            let dot_v = V::splat(dot);
            for (yc, gc) in y[..body]
                .chunks_exact(LANES)
                .zip(g[..body].chunks_exact_mut(LANES))
            {
                V::load(yc).mul(V::load(gc).sub(dot_v)).store(gc);
            }
            for (a, b) in y[body..].iter().zip(&mut g[body..]) {
                *b = a * (*b - dot);
            }
        }
    }
}

/// `y = silu(y) = y * sigmoid(y)` in place.
pub fn silu_in_place(y: &mut [f32]) {
    dispatch!(silu_lanes, silu_avx2, y)
}

/// [`silu_lanes`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn silu_avx2(y: &mut [f32]) {
    unsafe { silu_lanes::<avx2::Avx2>(y) }
}

#[inline(always)]
unsafe fn silu_lanes<V: Lanes>(y: &mut [f32]) {
    unsafe {
        let (body, tail) = y.split_at_mut(y.len() / LANES * LANES);
        for c in body.chunks_exact_mut(LANES) {
            let z = V::load(c);
            z.mul(sigmoid_v(z)).store(c);
        }
        if !tail.is_empty() {
            let mut lanes = padded(tail, 0.0);
            let z = V::load(&lanes);
            z.mul(sigmoid_v(z)).store(&mut lanes);
            let n = tail.len();
            tail.copy_from_slice(&lanes[..n]);
        }
    }
}

/// `s[i] = sigmoid(z[i])` (same lengths).
pub fn sigmoid_into(z: &[f32], s: &mut [f32]) {
    assert_eq!(z.len(), s.len(), "sigmoid: lengths");
    dispatch!(sigmoid_lanes, sigmoid_avx2, z, s)
}

/// [`sigmoid_lanes`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sigmoid_avx2(z: &[f32], s: &mut [f32]) {
    unsafe { sigmoid_lanes::<avx2::Avx2>(z, s) }
}

#[inline(always)]
unsafe fn sigmoid_lanes<V: Lanes>(z: &[f32], s: &mut [f32]) {
    unsafe {
        let body = z.len() / LANES * LANES;
        for (c, o) in z[..body]
            .chunks_exact(LANES)
            .zip(s[..body].chunks_exact_mut(LANES))
        {
            sigmoid_v(V::load(c)).store(o);
        }
        if body < z.len() {
            let mut lanes = padded(&z[body..], 0.0);
            sigmoid_v(V::load(&lanes)).store(&mut lanes);
            let n = z.len() - body;
            s[body..].copy_from_slice(&lanes[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `a` and the f64 value `b`.
    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_within_two_ulp_over_its_range() {
        let mut worst = 0.0f64;
        let steps = 400_000;
        for i in 0..=steps {
            let x = LO + (HI - LO) * i as f32 / steps as f32;
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), exp(LO));
        assert_eq!(exp(1000.0), exp(HI));
        assert!(exp(HI).is_finite() && exp(LO) > 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(sigmoid(f32::NAN).is_nan());
    }

    fn data(len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * scale)
            .collect()
    }

    #[test]
    fn softmax_rows_match_f64() {
        for row in [1, 7, 8, 13, 784] {
            let x = data(3 * row, 40.0);
            let mut y = x.clone();
            softmax_in_place(&mut y, row);
            for (x, y) in x.chunks(row).zip(y.chunks(row)) {
                // The shift `x - max` is rounded to f32 as in any f32 softmax; the rest exact.
                let m = x.iter().fold(f32::MIN, |a, &v| a.max(v));
                let e: Vec<f64> = x.iter().map(|&v| ((v - m) as f64).exp()).collect();
                let s: f64 = e.iter().sum();
                // Each lane sums `row / LANES` values: the classic bound of a running sum, plus
                // the few roundings of `exp`, the reduction and the scaling.
                let tol = (6 + row / LANES) as f64 * f32::EPSILON as f64;
                for (a, b) in y.iter().zip(&e) {
                    let want = b / s;
                    let err = (*a as f64 - want).abs() / want;
                    assert!(err <= tol, "row {row}: {a} vs {want}, relative {err:e}");
                }
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn plain_and_dispatched_lanes_give_the_same_bits() {
        let x = data(5 * 37, 30.0);
        let (mut a, mut b) = (x.clone(), x.clone());
        // SAFETY: plain lanes need no CPU feature.
        unsafe { softmax_rows::<Plain>(&mut a, 37) };
        softmax_in_place(&mut b, 37);
        assert_eq!(bits(&a), bits(&b));
        let (mut a, mut b) = (x.clone(), x.clone());
        unsafe { silu_lanes::<Plain>(&mut a) };
        silu_in_place(&mut b);
        assert_eq!(bits(&a), bits(&b));
        let g = data(5 * 37, 3.0);
        let (mut a, mut b) = (g.clone(), g.clone());
        unsafe { softmax_backward_rows::<Plain>(&x, &mut a, 37) };
        softmax_backward_in_place(&x, &mut b, 37);
        assert_eq!(bits(&a), bits(&b));
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        unsafe { sigmoid_lanes::<Plain>(&x, &mut a) };
        sigmoid_into(&x, &mut b);
        assert_eq!(bits(&a), bits(&b));
        // The one-value path agrees with the lanes.
        for (v, s) in x.iter().zip(&b) {
            assert_eq!(sigmoid(*v).to_bits(), s.to_bits());
        }
    }

    #[test]
    fn silu_matches_f64() {
        let mut y = data(1003, 30.0);
        let want: Vec<f64> = y
            .iter()
            .map(|&z| z as f64 / (1.0 + (-(z as f64)).exp()))
            .collect();
        silu_in_place(&mut y);
        for (a, b) in y.iter().zip(&want) {
            assert!(
                (*a as f64 - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{a} vs {b}"
            );
        }
    }
}

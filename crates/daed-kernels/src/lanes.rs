//! Sums and products in a fixed number of lanes: vectorised (an AVX-512 build of the same
//! multiplies and adds where the CPU has it, no fused multiply-adds), yet one fixed order, so the
//! bits depend neither on the CPU's features nor on the thread count. Used by the direct
//! convolution ([`crate::conv::direct`]) and the bias gradients.

/// Lanes of the sums and dot products.
pub(crate) const LANES: usize = 16;

/// `dst += a * src`.
#[inline(always)]
fn axpy_plain(dst: &mut [f32], a: f32, src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += a * s;
    }
}

/// Adds the products `a[i] * b[i]` into `acc[i % LANES]`.
#[inline(always)]
fn dot_plain(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    let (a_full, a_rest) = a.split_at(a.len() / LANES * LANES);
    let (b_full, b_rest) = b.split_at(a_full.len());
    for (x, y) in a_full.chunks_exact(LANES).zip(b_full.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in a_rest.iter().zip(b_rest).enumerate() {
        acc[l] += x * y;
    }
}

/// [`axpy_plain`], [`dot_plain`] and [`sum_plain`] compiled for AVX-512 (wider registers for the same
/// multiplies and adds, no fused multiply-adds: the same bits).
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::LANES;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
        super::axpy_plain(dst, a, src)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
        super::dot_plain(acc, a, b)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum(acc: &mut [f32; LANES], v: &[f32]) {
        super::sum_plain(acc, v)
    }

    /// Whether the CPU has AVX-512 (F).
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }
}

/// `dst += a * src`, vectorised as wide as the CPU allows.
pub(crate) fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        // SAFETY: the CPU has AVX-512 (checked).
        return unsafe { wide::axpy(dst, a, src) };
    }
    axpy_plain(dst, a, src)
}

/// The sum of `v` in [`LANES`] fixed lanes (`v[i]` into lane `i % LANES`, the lanes then added
/// in order): one fixed order, vectorised as wide as the CPU allows (a plain `sum()` is one
/// serial chain of adds). For the bias gradients.
pub(crate) fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        // SAFETY: the CPU has AVX-512 (checked).
        unsafe { wide::sum(&mut acc, v) };
        return acc.iter().sum();
    }
    sum_plain(&mut acc, v);
    acc.iter().sum()
}

/// Adds `v[i]` into `acc[i % LANES]`.
#[inline(always)]
fn sum_plain(acc: &mut [f32; LANES], v: &[f32]) {
    let (full, rest) = v.split_at(v.len() / LANES * LANES);
    for x in full.chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    for (l, x) in rest.iter().enumerate() {
        acc[l] += x;
    }
}

/// `acc[i % LANES] += a[i] * b[i]`, vectorised as wide as the CPU allows.
pub(crate) fn dot_into(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        // SAFETY: the CPU has AVX-512 (checked).
        return unsafe { wide::dot(acc, a, b) };
    }
    dot_plain(acc, a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` values in [-1, 1), a different pattern per `seed`.
    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 37 + seed * 11) % 101) as f32 / 50.5 - 1.0)
            .collect()
    }

    /// The AVX-512 build of the loops gives the plain build's bits (no fused multiply-adds).
    #[test]
    fn wide_loops_give_the_plain_bits() {
        let (a, b) = (data(1037, 8), data(1037, 9));
        let (mut wide, mut plain) = (data(1037, 10), data(1037, 10));
        axpy(&mut wide, 0.37, &a);
        axpy_plain(&mut plain, 0.37, &a);
        assert_eq!(wide, plain);
        let (mut wide, mut plain) = ([0.5f32; LANES], [0.5f32; LANES]);
        dot_into(&mut wide, &a, &b);
        dot_plain(&mut plain, &a, &b);
        assert_eq!(wide.map(f32::to_bits), plain.map(f32::to_bits));
        let mut plain = [0.0f32; LANES];
        sum_plain(&mut plain, &a);
        assert_eq!(sum(&a).to_bits(), plain.iter().sum::<f32>().to_bits());
        let exact: f64 = a.iter().map(|&v| v as f64).sum();
        assert!(
            (sum(&a) as f64 - exact).abs() < 1e-3,
            "{} against {exact}",
            sum(&a)
        );
    }
}

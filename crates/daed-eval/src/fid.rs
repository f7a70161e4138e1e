//! Fréchet distance between Gaussians fitted to features (FID on `pool_3`, sFID on
//! `mixed_6/conv`), with streaming f64 statistics and pytorch-fid's `.npz` format.
//!
//! `d² = |mu1 - mu2|² + tr S1 + tr S2 - 2 tr sqrt(S1 S2)`. The trace of the square root is the sum
//! of the square roots of the eigenvalues of `Lᵀ S2 L` with `S1 = L Lᵀ` (a pivoted Cholesky
//! factor): the same non-zero eigenvalues as `S1 S2`, but of a symmetric PSD matrix, so no
//! complex arithmetic and no `sqrtm` iteration. Singular covariances (fewer samples than
//! dimensions, constant features) need nothing more: the exact value is what pytorch-fid reports
//! whenever scipy's `sqrtm` is finite (tested against its `calculate_frechet_distance`). As
//! pytorch-fid, `eps · I` (1e-6) is added to both covariances only when the square root is not
//! finite; the result says so.
use std::path::Path;

use daed_io::npz::{read_npz, write_npz, NpyArray};
use serde::Serialize;

use crate::error::{invalid, Error, Result};
use crate::linalg::{matmul_strided, pivoted_cholesky, symmetric_eigenvalues};

/// pytorch-fid's diagonal offset for a singular product.
pub const FID_EPS: f64 = 1e-6;

/// Mean and covariance (divisor N - 1, as `np.cov`) of `n` feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianStats {
    /// Feature dimension.
    pub dim: usize,
    /// Number of vectors the statistics came from (0 when unknown, e.g. read from a file).
    pub n: usize,
    /// Mean, `dim` values.
    pub mu: Vec<f64>,
    /// Covariance, `dim x dim` row-major.
    pub sigma: Vec<f64>,
}

/// Accumulates mean and covariance batch by batch in f64 (shifted by the first vector for
/// accuracy), so features never need to be held all at once.
#[derive(Clone, Debug)]
pub struct StatsAccumulator {
    dim: usize,
    n: usize,
    shift: Vec<f64>,
    sum: Vec<f64>,
    /// Σ (x - shift)(x - shift)ᵀ, `dim x dim`.
    outer: Vec<f64>,
}

impl StatsAccumulator {
    /// An empty accumulator for `dim`-dimensional features.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            n: 0,
            shift: Vec::new(),
            sum: vec![0.0; dim],
            outer: vec![0.0; dim * dim],
        }
    }

    /// Number of vectors so far.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Adds a batch of row-major `rows x dim` features; errors on a wrong length or a non-finite
    /// value (naming the row and column).
    pub fn add(&mut self, features: &[f32]) -> Result<()> {
        let d = self.dim;
        if d == 0 || !features.len().is_multiple_of(d) {
            return Err(invalid!(
                "{} values is not a whole number of {d}-dimensional feature vectors",
                features.len()
            ));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(invalid!(
                "feature {} of vector {} is {} (NaN or infinite features: check the images and the network)",
                i % d,
                self.n + i / d,
                features[i]
            ));
        }
        let rows = features.len() / d;
        if rows == 0 {
            return Ok(());
        }
        if self.shift.is_empty() {
            self.shift = features[..d].iter().map(|&v| v as f64).collect();
        }
        let mut x = vec![0.0f64; rows * d];
        for (r, row) in features.chunks_exact(d).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let c = v as f64 - self.shift[j];
                x[r * d + j] = c;
                self.sum[j] += c;
            }
        }
        // outer += Xᵀ X  (d x rows) · (rows x d)
        let xtx = matmul_strided(d, rows, d, &x, 1, d, &x, d, 1);
        for (o, v) in self.outer.iter_mut().zip(xtx) {
            *o += v;
        }
        self.n += rows;
        Ok(())
    }

    /// The statistics; at least two vectors are needed for a covariance.
    pub fn finish(&self) -> Result<GaussianStats> {
        let (d, n) = (self.dim, self.n);
        if n < 2 {
            return Err(invalid!(
                "{n} feature vector(s): at least 2 are needed for a covariance (empty image set?)"
            ));
        }
        let nf = n as f64;
        let m: Vec<f64> = self.sum.iter().map(|s| s / nf).collect();
        let mut sigma = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                sigma[i * d + j] = (self.outer[i * d + j] - nf * m[i] * m[j]) / (nf - 1.0);
            }
        }
        // Exact symmetry (the product above is symmetric up to rounding).
        for i in 0..d {
            for j in 0..i {
                let v = 0.5 * (sigma[i * d + j] + sigma[j * d + i]);
                sigma[i * d + j] = v;
                sigma[j * d + i] = v;
            }
        }
        let mu = m.iter().zip(&self.shift).map(|(a, b)| a + b).collect();
        Ok(GaussianStats {
            dim: d,
            n,
            mu,
            sigma,
        })
    }
}

impl GaussianStats {
    /// Statistics of row-major `rows x dim` features.
    pub fn from_features(features: &[f32], dim: usize) -> Result<Self> {
        let mut acc = StatsAccumulator::new(dim);
        acc.add(features)?;
        acc.finish()
    }

    /// Checks shapes and finiteness.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.mu.len() != self.dim || self.sigma.len() != self.dim * self.dim {
            return Err(invalid!(
                "statistics of dimension {} have a mean of {} and a covariance of {} values",
                self.dim,
                self.mu.len(),
                self.sigma.len()
            ));
        }
        if self.mu.iter().chain(&self.sigma).any(|v| !v.is_finite()) {
            return Err(invalid!("statistics contain NaN or infinite values"));
        }
        Ok(())
    }

    /// Reads `mu` and `sigma` (pytorch-fid) or, with `spatial`, `mu_s` and `sigma_s` (the
    /// guided-diffusion reference batches) from an `.npz` file.
    pub fn read_npz(path: &Path, spatial: bool) -> Result<Self> {
        let arrays = read_npz(path)?;
        let (km, ks) = if spatial {
            ("mu_s", "sigma_s")
        } else {
            ("mu", "sigma")
        };
        let bad = |msg: String| Error::Io(daed_io::Error::format(path, msg));
        let mu = arrays.get(km).ok_or_else(|| {
            bad(format!(
                "no `{km}` array (keys: {}); FID statistics files hold `mu` and `sigma`{}",
                arrays.keys().cloned().collect::<Vec<_>>().join(", "),
                if spatial {
                    ", sFID ones `mu_s` and `sigma_s`"
                } else {
                    ""
                }
            ))
        })?;
        let sigma = arrays
            .get(ks)
            .ok_or_else(|| bad(format!("`{km}` without `{ks}`")))?;
        let d = mu.len();
        if mu.shape.len() != 1 || sigma.shape != [d, d] {
            return Err(bad(format!(
                "`{km}` has shape {:?} and `{ks}` {:?}: expected [D] and [D, D]",
                mu.shape, sigma.shape
            )));
        }
        let n = arrays
            .get(if spatial { "n_s" } else { "n" })
            .and_then(|a| a.to_f64_vec().first().copied())
            .map_or(0, |v| v as usize);
        let s = Self {
            dim: d,
            n,
            mu: mu.to_f64_vec(),
            sigma: sigma.to_f64_vec(),
        };
        s.validate().map_err(|e| bad(e.to_string()))?;
        Ok(s)
    }

    /// The arrays to store under `mu`/`sigma` (or `mu_s`/`sigma_s`), float64 as numpy does.
    pub fn npz_arrays(&self, spatial: bool) -> Vec<(String, NpyArray)> {
        let sfx = if spatial { "_s" } else { "" };
        vec![
            (
                format!("mu{sfx}"),
                NpyArray::f64(&[self.dim], self.mu.clone()),
            ),
            (
                format!("sigma{sfx}"),
                NpyArray::f64(&[self.dim, self.dim], self.sigma.clone()),
            ),
            (format!("n{sfx}"), NpyArray::f64(&[], vec![self.n as f64])),
        ]
    }

    /// Writes pytorch-fid statistics (`mu`, `sigma`, plus `n`), and the sFID ones when given.
    pub fn write_npz(path: &Path, fid: &GaussianStats, sfid: Option<&GaussianStats>) -> Result<()> {
        let mut arrays = fid.npz_arrays(false);
        if let Some(s) = sfid {
            arrays.extend(s.npz_arrays(true));
        }
        let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(k, a)| (k.as_str(), a)).collect();
        write_npz(path, &refs)?;
        Ok(())
    }
}

/// A Fréchet distance and how it was computed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FrechetDistance {
    /// The distance (with pytorch-fid's offset when [`Self::eps_added`] is set).
    pub value: f64,
    /// The distance computed without any offset (exact for PSD covariances; equals `value` when
    /// no offset was needed).
    pub value_without_eps: f64,
    /// `|mu1 - mu2|²`.
    pub mean_term: f64,
    /// `tr S1 + tr S2 - 2 tr sqrt(S1 S2)`.
    pub cov_term: f64,
    /// Numerical ranks of the two covariances.
    pub ranks: [usize; 2],
    /// The diagonal offset added to both covariances because the square root was not finite
    /// (pytorch-fid's rule), or `None`.
    pub eps_added: Option<f64>,
}

/// `tr sqrt(A B)` for symmetric PSD `A`, `B` (`d x d`), and the ranks found on the way.
fn trace_sqrt_product(a: &[f64], b: &[f64], d: usize) -> Result<(f64, usize)> {
    let ch = pivoted_cholesky(a, d)?;
    let r = ch.rank;
    if r == 0 {
        return Ok((0.0, 0));
    }
    // T = B L (d x r), M = Lᵀ T (r x r).
    let t = matmul_strided(d, d, r, b, d, 1, &ch.l, d, 1);
    let mut m = matmul_strided(r, d, r, &ch.l, 1, d, &t, r, 1);
    for i in 0..r {
        for j in 0..i {
            let v = 0.5 * (m[i * r + j] + m[j * r + i]);
            m[i * r + j] = v;
            m[j * r + i] = v;
        }
    }
    let ev = symmetric_eigenvalues(m, r)?;
    Ok((ev.iter().map(|&l| l.max(0.0).sqrt()).sum(), r))
}

/// The Fréchet distance between two Gaussians (see the module docs for the method and the
/// singular case).
pub fn frechet_distance(s1: &GaussianStats, s2: &GaussianStats) -> Result<FrechetDistance> {
    s1.validate()?;
    s2.validate()?;
    if s1.dim != s2.dim {
        return Err(invalid!(
            "statistics have different dimensions: {} and {} (FID and sFID statistics mixed up?)",
            s1.dim,
            s2.dim
        ));
    }
    let d = s1.dim;
    let mean_term: f64 = s1
        .mu
        .iter()
        .zip(&s2.mu)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    let tr1: f64 = (0..d).map(|i| s1.sigma[i * d + i]).sum();
    let tr2: f64 = (0..d).map(|i| s2.sigma[i * d + i]).sum();
    let rank2 = pivoted_cholesky(&s2.sigma, d)?.rank;
    let (tr_sqrt_exact, rank1) = trace_sqrt_product(&s1.sigma, &s2.sigma, d)?;
    let mut tr_sqrt = tr_sqrt_exact;
    let mut eps_added = None;
    // pytorch-fid's rule: the offset only when the square root is not finite (a singular
    // covariance alone does not call for it).
    if !tr_sqrt_exact.is_finite() {
        let mut a = s1.sigma.clone();
        let mut b = s2.sigma.clone();
        for i in 0..d {
            a[i * d + i] += FID_EPS;
            b[i * d + i] += FID_EPS;
        }
        tr_sqrt = trace_sqrt_product(&a, &b, d)?.0;
        eps_added = Some(FID_EPS);
    }
    let cov_term = tr1 + tr2 - 2.0 * tr_sqrt;
    Ok(FrechetDistance {
        value: mean_term + cov_term,
        value_without_eps: mean_term + tr1 + tr2 - 2.0 * tr_sqrt_exact,
        mean_term,
        cov_term,
        ranks: [rank1, rank2],
        eps_added,
    })
}

/// `tr sqrt(S1 S2)` by the same route, exposed for tests and diagnostics.
pub fn trace_sqrt_of_product(s1: &[f64], s2: &[f64], d: usize) -> Result<f64> {
    Ok(trace_sqrt_product(s1, s2, d)?.0)
}

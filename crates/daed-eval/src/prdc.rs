//! Improved precision and recall (Kynkäänniemi et al. 2019) as the guided-diffusion evaluator's
//! `ManifoldEstimator` computes them: each set's manifold is the union of balls around its
//! points with radius the distance to the k-th nearest neighbour (k = 3, the point itself
//! counting as the 0-th), distances are squared Euclidean computed in blocks as
//! `|u|² - 2 u·v + |v|²` (clamped at 0); precision is the fraction of samples inside the
//! reference manifold, recall the fraction of reference points inside the sample manifold.
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{invalid, Result};
use crate::linalg::matmul_strided;

/// The neighbourhood size of the guided-diffusion evaluator.
pub const PR_K: usize = 3;

/// Rows per distance block (memory: `block x block` f64).
const BLOCK: usize = 2048;

/// Precision and recall.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PrecisionRecall {
    /// Fraction of samples inside the reference manifold.
    pub precision: f64,
    /// Fraction of reference points inside the sample manifold.
    pub recall: f64,
    /// The neighbourhood size used.
    pub k: usize,
}

fn check(features: &[f32], dim: usize, what: &str) -> Result<usize> {
    if dim == 0 || features.is_empty() || !features.len().is_multiple_of(dim) {
        return Err(invalid!(
            "{what}: {} values is not a non-empty whole number of {dim}-dimensional vectors",
            features.len()
        ));
    }
    if let Some(i) = features.iter().position(|v| !v.is_finite()) {
        return Err(invalid!(
            "{what}: feature {} of vector {} is not finite",
            i % dim,
            i / dim
        ));
    }
    Ok(features.len() / dim)
}

/// Squared distances between rows `a` (`na x d`) and `b` (`nb x d`), `na x nb` row-major.
fn sq_distances(a: &[f64], na: usize, b: &[f64], nb: usize, d: usize) -> Vec<f64> {
    let na2: Vec<f64> = a
        .chunks_exact(d)
        .map(|r| r.iter().map(|x| x * x).sum())
        .collect();
    let nb2: Vec<f64> = b
        .chunks_exact(d)
        .map(|r| r.iter().map(|x| x * x).sum())
        .collect();
    // a · bᵀ
    let mut g = matmul_strided(na, d, nb, a, d, 1, b, 1, d);
    g.par_chunks_mut(nb).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (na2[i] - 2.0 * *v + nb2[j]).max(0.0);
        }
    });
    g
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Squared radius of each point's manifold ball: the k-th smallest squared distance to the points
/// of the same set, the point itself included (so its k-th neighbour).
pub fn manifold_radii(features: &[f32], dim: usize, k: usize) -> Result<Vec<f64>> {
    let n = check(features, dim, "features")?;
    if n <= k {
        return Err(invalid!(
            "{n} feature vectors: the k-NN manifold with k = {k} needs at least {}",
            k + 1
        ));
    }
    let x = to_f64(features);
    let mut radii = vec![0.0; n];
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let dist = sq_distances(&x[start * dim..(start + rows) * dim], rows, &x, n, dim);
        radii[start..start + rows]
            .par_iter_mut()
            .zip(dist.par_chunks(n))
            .for_each(|(r, row)| {
                let mut row = row.to_vec();
                let (_, kth, _) = row.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
                *r = *kth;
            });
    }
    Ok(radii)
}

/// Precision and recall of `samples` against `reference` (both row-major, `dim` columns).
pub fn precision_recall(
    reference: &[f32],
    samples: &[f32],
    dim: usize,
    k: usize,
) -> Result<PrecisionRecall> {
    let nr = check(reference, dim, "reference features")?;
    let ns = check(samples, dim, "sample features")?;
    let r_ref = manifold_radii(reference, dim, k)?;
    let r_smp = manifold_radii(samples, dim, k)?;
    let xr = to_f64(reference);
    let xs = to_f64(samples);
    let mut ref_in = vec![false; nr];
    let mut smp_in = vec![false; ns];
    for rs in (0..nr).step_by(BLOCK) {
        let rr = BLOCK.min(nr - rs);
        for ss in (0..ns).step_by(BLOCK) {
            let sr = BLOCK.min(ns - ss);
            let dist = sq_distances(
                &xr[rs * dim..(rs + rr) * dim],
                rr,
                &xs[ss * dim..(ss + sr) * dim],
                sr,
                dim,
            );
            for i in 0..rr {
                let row = &dist[i * sr..(i + 1) * sr];
                for (j, &dij) in row.iter().enumerate() {
                    // sample j inside the ball of reference point i -> counts for precision
                    if dij <= r_ref[rs + i] {
                        smp_in[ss + j] = true;
                    }
                    // reference point i inside the ball of sample j -> counts for recall
                    if dij <= r_smp[ss + j] {
                        ref_in[rs + i] = true;
                    }
                }
            }
        }
    }
    let frac = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64 / v.len() as f64;
    Ok(PrecisionRecall {
        precision: frac(&smp_in),
        recall: frac(&ref_in),
        k,
    })
}

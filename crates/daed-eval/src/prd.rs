//! Precision and recall for distributions (PRD, Sajjadi et al. 2018) with its usual settings:
//! the union of both feature sets is clustered with k-means (20 clusters), the two histograms
//! over clusters give a PRD curve at 1,001 angles, curves of 10 clusterings are averaged, and
//! the summary is the pair (F8, F1/8): F8 weighs recall, F1/8 precision.
//!
//! The reference implementation clusters with scikit-learn's `MiniBatchKMeans(n_init=10)`, which
//! tries 10 k-means++ seedings, keeps the one of lowest inertia and optimises it once; here the
//! same, but the optimisation is full-batch Lloyd iterations (distances through `gemm`), from a
//! fixed seed: results are deterministic and differ from the reference's by the clustering's
//! randomness, as the reference's own runs differ from each other.
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{invalid, Result};
use crate::linalg::matmul_strided;

/// PRD settings.
#[derive(Clone, Debug)]
pub struct PrdOptions {
    /// Number of clusters (20).
    pub clusters: usize,
    /// Number of angles of the curve (1,001).
    pub angles: usize,
    /// Number of clusterings averaged (10).
    pub runs: usize,
    /// k-means++ seedings per clustering, the one of lowest inertia optimised (10).
    pub inits: usize,
    /// Lloyd iterations at most (100).
    pub max_iter: usize,
    /// Seed of the clusterings.
    pub seed: u64,
    /// Require both sets to have the same size, as the reference does (true).
    pub enforce_balance: bool,
}

impl Default for PrdOptions {
    fn default() -> Self {
        Self {
            clusters: 20,
            angles: 1001,
            runs: 10,
            inits: 10,
            max_iter: 100,
            seed: 0,
            enforce_balance: true,
        }
    }
}

/// The averaged PRD curve and its F-scores.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Prd {
    /// max F_8 over the curve (recall-weighted).
    pub f_8: f64,
    /// max F_1/8 over the curve (precision-weighted).
    pub f_1_8: f64,
    /// Precision along the curve.
    #[serde(skip)]
    pub precision: Vec<f64>,
    /// Recall along the curve.
    #[serde(skip)]
    pub recall: Vec<f64>,
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn sq(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Nearest centre and its squared distance, for every point (`|x|² - 2 x·c + |c|²`).
fn assign(x: &[f64], xn: &[f64], d: usize, centres: &[f64]) -> Vec<(usize, f64)> {
    let n = x.len() / d;
    let k = centres.len() / d;
    let cn: Vec<f64> = centres
        .chunks_exact(d)
        .map(|c| c.iter().map(|v| v * v).sum())
        .collect();
    let g = matmul_strided(n, d, k, x, d, 1, centres, 1, d);
    g.par_chunks(k)
        .zip(xn.par_iter())
        .map(|(row, &xx)| {
            row.iter()
                .enumerate()
                .map(|(c, &dot)| (c, (xx - 2.0 * dot + cn[c]).max(0.0)))
                .fold(
                    (0, f64::INFINITY),
                    |best, cur| if cur.1 < best.1 { cur } else { best },
                )
        })
        .collect()
}

/// k-means++ seeding: `k` centres drawn from the points.
fn seed_centres(x: &[f64], d: usize, k: usize, rng: &mut Rng) -> Vec<f64> {
    let n = x.len() / d;
    let mut centres = Vec::with_capacity(k * d);
    let first = (rng.next_u64() % n as u64) as usize;
    centres.extend_from_slice(&x[first * d..(first + 1) * d]);
    let mut best: Vec<f64> = x.par_chunks(d).map(|p| sq(p, &centres[..d])).collect();
    while centres.len() < k * d {
        let total: f64 = best.iter().sum();
        let pick = if total > 0.0 {
            let mut t = rng.uniform() * total;
            let mut idx = n - 1;
            for (i, &w) in best.iter().enumerate() {
                if t < w {
                    idx = i;
                    break;
                }
                t -= w;
            }
            idx
        } else {
            (rng.next_u64() % n as u64) as usize
        };
        let c = x[pick * d..(pick + 1) * d].to_vec();
        best.par_iter_mut()
            .zip(x.par_chunks(d))
            .for_each(|(b, p)| *b = b.min(sq(p, &c)));
        centres.extend_from_slice(&c);
    }
    centres
}

/// The best of `inits` k-means++ seedings (lowest inertia), then Lloyd iterations; returns labels.
fn kmeans(
    x: &[f64],
    d: usize,
    k: usize,
    inits: usize,
    max_iter: usize,
    rng: &mut Rng,
) -> Vec<usize> {
    let xn: Vec<f64> = x
        .par_chunks(d)
        .map(|p| p.iter().map(|v| v * v).sum())
        .collect();
    let mut centres = Vec::new();
    let mut best = f64::INFINITY;
    for _ in 0..inits.max(1) {
        let c = seed_centres(x, d, k, rng);
        let inertia: f64 = assign(x, &xn, d, &c).iter().map(|p| p.1).sum();
        if inertia < best {
            best = inertia;
            centres = c;
        }
    }
    let mut labels = vec![usize::MAX; x.len() / d];
    for _ in 0..max_iter.max(1) {
        let a = assign(x, &xn, d, &centres);
        let changed = a.iter().zip(&labels).any(|(p, &l)| p.0 != l);
        labels = a.iter().map(|p| p.0).collect();
        if !changed {
            break;
        }
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0usize; k];
        for (p, &l) in x.chunks_exact(d).zip(&labels) {
            counts[l] += 1;
            for (s, v) in sums[l * d..(l + 1) * d].iter_mut().zip(p) {
                *s += v;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centres[c * d + j] = sums[c * d + j] / counts[c] as f64;
                }
            } // an empty cluster keeps its centre
        }
    }
    labels
}

/// The PRD curve of two histograms (each summing to 1) at `angles` slopes.
pub fn prd_curve(
    eval_dist: &[f64],
    ref_dist: &[f64],
    angles: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if !(3..=1_000_000).contains(&angles) {
        return Err(invalid!(
            "the number of angles must be in [3, 1e6], got {angles}"
        ));
    }
    if eval_dist.len() != ref_dist.len() {
        return Err(invalid!(
            "histograms of {} and {} bins",
            eval_dist.len(),
            ref_dist.len()
        ));
    }
    let eps = 1e-10;
    let (mut p, mut r) = (Vec::with_capacity(angles), Vec::with_capacity(angles));
    for i in 0..angles {
        let a = eps + (std::f64::consts::FRAC_PI_2 - 2.0 * eps) * i as f64 / (angles - 1) as f64;
        let slope = a.tan();
        let prec: f64 = ref_dist
            .iter()
            .zip(eval_dist)
            .map(|(rd, ed)| (rd * slope).min(*ed))
            .sum();
        p.push(prec.clamp(0.0, 1.0));
        r.push((prec / slope).clamp(0.0, 1.0));
    }
    Ok((p, r))
}

fn f_beta(p: f64, r: f64, beta: f64) -> f64 {
    (1.0 + beta * beta) * p * r / (beta * beta * p + r + 1e-10)
}

/// PRD of `eval` against `reference` (row-major, `dim` columns).
pub fn prd(reference: &[f32], eval: &[f32], dim: usize, opts: &PrdOptions) -> Result<Prd> {
    if dim == 0 || reference.is_empty() || eval.is_empty() {
        return Err(invalid!("PRD needs non-empty feature sets"));
    }
    if !reference.len().is_multiple_of(dim) || !eval.len().is_multiple_of(dim) {
        return Err(invalid!(
            "feature lengths are not multiples of the dimension {dim}"
        ));
    }
    if reference.iter().chain(eval).any(|v| !v.is_finite()) {
        return Err(invalid!("PRD features contain NaN or infinite values"));
    }
    let (nr, ne) = (reference.len() / dim, eval.len() / dim);
    if opts.enforce_balance && nr != ne {
        return Err(invalid!(
            "PRD compares sets of equal size ({ne} samples vs {nr} reference images): use --n"
        ));
    }
    let k = opts.clusters;
    if k == 0 || k > nr + ne || opts.runs == 0 {
        return Err(invalid!(
            "{k} clusters / {} runs for {} points",
            opts.runs,
            nr + ne
        ));
    }
    let x: Vec<f64> = eval.iter().chain(reference).map(|&v| v as f64).collect();
    let mut rng = Rng(opts.seed ^ 0x5052_445F_5345_4544);
    let mut p_sum = vec![0.0; opts.angles];
    let mut r_sum = vec![0.0; opts.angles];
    for _ in 0..opts.runs {
        let labels = kmeans(&x, dim, k, opts.inits, opts.max_iter, &mut rng);
        let mut eh = vec![0.0; k];
        let mut rh = vec![0.0; k];
        for &l in &labels[..ne] {
            eh[l] += 1.0 / ne as f64;
        }
        for &l in &labels[ne..] {
            rh[l] += 1.0 / nr as f64;
        }
        let (p, r) = prd_curve(&eh, &rh, opts.angles)?;
        for i in 0..opts.angles {
            p_sum[i] += p[i];
            r_sum[i] += r[i];
        }
    }
    let runs = opts.runs as f64;
    let precision: Vec<f64> = p_sum.iter().map(|v| v / runs).collect();
    let recall: Vec<f64> = r_sum.iter().map(|v| v / runs).collect();
    let max_f = |beta: f64| {
        precision
            .iter()
            .zip(&recall)
            .map(|(&p, &r)| f_beta(p, r, beta))
            .fold(0.0, f64::max)
    };
    Ok(Prd {
        f_8: max_f(8.0),
        f_1_8: max_f(1.0 / 8.0),
        precision,
        recall,
    })
}

//! Inception Score from the 1008-way logits, as the guided-diffusion evaluator computes it:
//! softmax per image, then per split of `split_size` images `exp(mean_i KL(p_i || mean p))`,
//! averaged over the splits (splits of 5,000 images, the last one possibly shorter).
use serde::Serialize;

use crate::error::{invalid, Result};

/// The guided-diffusion evaluator's split size.
pub const IS_SPLIT_SIZE: usize = 5000;

/// The score and its spread over splits.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InceptionScore {
    /// Mean over splits.
    pub mean: f64,
    /// Standard deviation over splits (0 with one split).
    pub std: f64,
    /// Number of splits.
    pub splits: usize,
}

/// The score of `n x classes` row-major logits.
pub fn inception_score(
    logits: &[f32],
    classes: usize,
    split_size: usize,
) -> Result<InceptionScore> {
    if classes < 2 || split_size == 0 {
        return Err(invalid!(
            "need at least 2 classes and a split size of at least 1 (got {classes} and {split_size})"
        ));
    }
    if logits.is_empty() || !logits.len().is_multiple_of(classes) {
        return Err(invalid!(
            "{} logits is not a non-empty whole number of {classes}-way rows",
            logits.len()
        ));
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(invalid!(
            "logit {} of image {} is not finite",
            i % classes,
            i / classes
        ));
    }
    // Softmax in f64.
    let probs: Vec<f64> = logits
        .chunks_exact(classes)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / z)
        })
        .collect();
    let n = logits.len() / classes;
    let mut scores = Vec::new();
    for start in (0..n).step_by(split_size) {
        let part = &probs[start * classes..(start + split_size).min(n) * classes];
        let rows = part.len() / classes;
        let mut marginal = vec![0.0f64; classes];
        for row in part.chunks_exact(classes) {
            for (m, p) in marginal.iter_mut().zip(row) {
                *m += p;
            }
        }
        for m in &mut marginal {
            *m /= rows as f64;
        }
        let mut kl = 0.0;
        for row in part.chunks_exact(classes) {
            for (p, m) in row.iter().zip(&marginal) {
                if *p > 0.0 {
                    kl += p * (p.ln() - m.ln());
                }
            }
        }
        scores.push((kl / rows as f64).exp());
    }
    let k = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / k;
    let std = (scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / k).sqrt();
    Ok(InceptionScore {
        mean,
        std,
        splits: scores.len(),
    })
}

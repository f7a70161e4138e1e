//! Which diffusion steps a training batch uses, with importance weights 1 / (T p_t).
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// The step-sampling rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepSamplerKind {
    /// p_t = 1/T.
    Uniform,
    /// p_t proportional to beta_t (the paper's DAED sampler).
    BetaWeighted,
    /// p_t proportional to sqrt(E[L_t^2]) over the last 10 losses of each step, mixed with
    /// 0.001 uniform; uniform until every step has 10 losses (improved-diffusion).
    LossSecondMoment,
    /// DAED's sampler (the paper's `dae_uniform`): the first step (the DAE's) has weight
    /// beta_1 * T, every other step 1.
    DaeUniform,
    /// Only the first step (training a DAE alone).
    OnlyDae,
}

const HISTORY: usize = 10;
const UNIFORM_PROB: f64 = 0.001;

/// A step sampler with its (checkpointed) state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepSampler {
    /// The rule.
    pub kind: StepSamplerKind,
    /// Fixed weights (uniform / beta-weighted).
    weights: Vec<f64>,
    /// Loss history per step (loss-second-moment only).
    history: Vec<Vec<f64>>,
}

impl StepSampler {
    /// A sampler over the steps whose betas are given.
    pub fn new(kind: StepSamplerKind, betas: &[f64]) -> Self {
        let weights = match kind {
            StepSamplerKind::BetaWeighted => betas.to_vec(),
            StepSamplerKind::DaeUniform => {
                let mut w = vec![1.0; betas.len()];
                w[0] = betas[0] * betas.len() as f64;
                w
            }
            StepSamplerKind::OnlyDae => {
                let mut w = vec![0.0; betas.len()];
                w[0] = 1.0;
                w
            }
            _ => vec![1.0; betas.len()],
        };
        let history = match kind {
            StepSamplerKind::LossSecondMoment => vec![Vec::new(); betas.len()],
            _ => Vec::new(),
        };
        Self {
            kind,
            weights,
            history,
        }
    }

    /// Checks a sampler read from a file against a process of `steps` steps: the kind's
    /// weights or history for each step, every value finite and the weights non-negative with a
    /// positive sum.
    pub fn check(&self, steps: usize) -> Result<(), String> {
        let lsm = self.kind == StepSamplerKind::LossSecondMoment;
        if self.weights.len() != steps || (lsm && self.history.len() != steps) {
            return Err(format!(
                "step sampler state has {} weights and {} histories for {steps} steps",
                self.weights.len(),
                self.history.len()
            ));
        }
        let finite = |v: &f64| v.is_finite();
        let sum: f64 = self.weights.iter().sum();
        if !self.weights.iter().all(|w| finite(w) && *w >= 0.0) || sum <= 0.0 || sum.is_nan() {
            return Err("step sampler weights must be finite, >= 0, and not all 0".into());
        }
        if !self.history.iter().flatten().all(finite) {
            return Err("step sampler loss history holds non-finite values".into());
        }
        Ok(())
    }

    /// The current probabilities p_t.
    pub fn probabilities(&self) -> Vec<f64> {
        let w: Vec<f64> = if self.kind == StepSamplerKind::LossSecondMoment {
            if self.history.iter().any(|h| h.len() < HISTORY) {
                vec![1.0; self.history.len()]
            } else {
                let raw: Vec<f64> = self
                    .history
                    .iter()
                    .map(|h| (h.iter().map(|x| x * x).sum::<f64>() / h.len() as f64).sqrt())
                    .collect();
                let s: f64 = raw.iter().sum();
                let n = raw.len() as f64;
                raw.iter()
                    .map(|r| r / s * (1.0 - UNIFORM_PROB) + UNIFORM_PROB / n)
                    .collect()
            }
        } else {
            self.weights.clone()
        };
        let s: f64 = w.iter().sum();
        w.iter().map(|x| x / s).collect()
    }

    /// Draws `n` steps and their importance weights 1 / (T p_t).
    pub fn sample(&self, n: usize, rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
        let p = self.probabilities();
        let mut cdf = Vec::with_capacity(p.len());
        let mut acc = 0.0;
        for &x in &p {
            acc += x;
            cdf.push(acc);
        }
        let t_count = p.len() as f64;
        let mut ts = Vec::with_capacity(n);
        let mut ws = Vec::with_capacity(n);
        for _ in 0..n {
            let u = rng.next_f64() * acc;
            let i = cdf.partition_point(|&c| c <= u).min(p.len() - 1);
            ts.push(i);
            // Training a DAE alone is not an estimate of the full bound: weight 1.
            ws.push(if self.kind == StepSamplerKind::OnlyDae {
                1.0
            } else {
                1.0 / (t_count * p[i])
            });
        }
        (ts, ws)
    }

    /// Records per-sample losses (loss-second-moment learns from them; others ignore them).
    pub fn update(&mut self, ts: &[usize], losses: &[f64]) {
        if self.kind != StepSamplerKind::LossSecondMoment {
            return;
        }
        for (&t, &l) in ts.iter().zip(losses) {
            let h = &mut self.history[t];
            if h.len() == HISTORY {
                h.remove(0);
            }
            h.push(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_weights_make_the_estimate_unbiased() {
        let betas: Vec<f64> = (0..50).map(|i| 1e-3 + i as f64 * 1e-3).collect();
        let s = StepSampler::new(StepSamplerKind::BetaWeighted, &betas);
        let p = s.probabilities();
        assert!((p[49] / p[0] - betas[49] / betas[0]).abs() < 1e-9);
        // E_p[w_t f(t)] = mean_t f(t) for any f.
        let f = |t: usize| (t as f64).sin() + 2.0;
        let exact: f64 = (0..50).map(f).sum::<f64>() / 50.0;
        let mut rng = Rng::for_step(1, 0, 0);
        let (ts, ws) = s.sample(200_000, &mut rng);
        let est: f64 = ts.iter().zip(&ws).map(|(&t, &w)| w * f(t)).sum::<f64>() / ts.len() as f64;
        assert!((est - exact).abs() < 0.02, "{est} vs {exact}");
    }

    #[test]
    fn loss_second_moment_warms_up_then_follows_losses() {
        let mut s = StepSampler::new(StepSamplerKind::LossSecondMoment, &[0.1; 4]);
        assert_eq!(s.probabilities(), vec![0.25; 4]);
        for _ in 0..10 {
            s.update(&[0, 1, 2, 3], &[4.0, 1.0, 1.0, 1.0]);
        }
        let p = s.probabilities();
        assert!(p[0] > 0.55 && p[1] < 0.15, "{p:?}");
    }
}

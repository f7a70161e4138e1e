//! The forward process q and the model's backward process p (improved-diffusion semantics).
//!
//! Coefficients are f64 arrays indexed by step (0-based: index 0 is the paper's t = 1);
//! tensors are f32. The model predicts epsilon.
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::schedule::{alphas_cumprod, respaced_betas, ScheduleSpec};
use crate::Result;

/// How the backward variance is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelVarType {
    /// The posterior variance beta-tilde (clipped log).
    FixedSmall,
    /// beta_t (with beta-tilde_2 at the first step, as improved-diffusion).
    FixedLarge,
    /// Learned interpolation between the two in the log domain (`learn_sigma`).
    LearnedRange,
}

/// All per-step coefficients of one (possibly respaced) diffusion.
#[derive(Clone, Debug)]
pub struct GaussianDiffusion {
    /// beta_t for each step.
    pub betas: Vec<f64>,
    /// alpha-bar_t.
    pub alphas_cumprod: Vec<f64>,
    /// alpha-bar_{t-1} (1 at the first step).
    pub alphas_cumprod_prev: Vec<f64>,
    /// beta-tilde_t, the posterior variance.
    pub posterior_variance: Vec<f64>,
    /// log beta-tilde_t with the first value replaced by the second (as improved-diffusion).
    pub posterior_log_variance_clipped: Vec<f64>,
    /// Coefficient of x0 in the posterior mean.
    pub posterior_mean_coef1: Vec<f64>,
    /// Coefficient of x_t in the posterior mean.
    pub posterior_mean_coef2: Vec<f64>,
    /// Original step index of each step (identity unless respaced); fed to the model.
    pub timestep_map: Vec<usize>,
    /// The variance choice.
    pub var_type: ModelVarType,
}

/// The mean and variance of p(x_{t-1} | x_t) plus the predicted x0.
pub struct PMeanVar {
    /// Mean of the backward step.
    pub mean: Tensor<4>,
    /// Log variance, broadcastable to the mean.
    pub log_variance: Tensor<4>,
    /// The model's x0 estimate (clipped to [-1, 1] when asked).
    pub pred_xstart: Tensor<4>,
    /// The model's epsilon prediction.
    pub eps: Tensor<4>,
}

impl GaussianDiffusion {
    /// A diffusion over all steps of `spec`.
    pub fn new(spec: &ScheduleSpec, var_type: ModelVarType) -> Result<Self> {
        spec.validate()?;
        let betas = spec.betas();
        let map = (0..betas.len()).collect();
        Ok(Self::from_betas(betas, map, var_type))
    }

    /// A diffusion keeping only the original steps `kept` (sorted ascending).
    pub fn respaced(&self, kept: &[usize]) -> Self {
        let betas = respaced_betas(&self.alphas_cumprod, kept);
        let map = kept.iter().map(|&k| self.timestep_map[k]).collect();
        Self::from_betas(betas, map, self.var_type)
    }

    /// Builds every coefficient from the betas.
    pub fn from_betas(betas: Vec<f64>, timestep_map: Vec<usize>, var_type: ModelVarType) -> Self {
        let ac = alphas_cumprod(&betas);
        let mut prev = vec![1.0];
        prev.extend_from_slice(&ac[..ac.len() - 1]);
        let n = betas.len();
        let post_var: Vec<f64> = (0..n)
            .map(|i| betas[i] * (1.0 - prev[i]) / (1.0 - ac[i]))
            .collect();
        let post_log: Vec<f64> = (0..n)
            .map(|i| {
                let v = if i == 0 && n > 1 {
                    post_var[1]
                } else {
                    post_var[i]
                };
                v.max(1e-20).ln()
            })
            .collect();
        let c1 = (0..n)
            .map(|i| betas[i] * prev[i].sqrt() / (1.0 - ac[i]))
            .collect();
        let c2 = (0..n)
            .map(|i| (1.0 - prev[i]) * (1.0 - betas[i]).sqrt() / (1.0 - ac[i]))
            .collect();
        Self {
            betas,
            alphas_cumprod: ac,
            alphas_cumprod_prev: prev,
            posterior_variance: post_var,
            posterior_log_variance_clipped: post_log,
            posterior_mean_coef1: c1,
            posterior_mean_coef2: c2,
            timestep_map,
            var_type,
        }
    }

    /// Number of steps.
    pub fn num_steps(&self) -> usize {
        self.betas.len()
    }

    /// Model timesteps (original indices, as f32) for step indices `t`.
    pub fn model_timesteps(&self, t: &[usize], device: &Device) -> Tensor<1> {
        let v: Vec<f32> = t.iter().map(|&i| self.timestep_map[i] as f32).collect();
        Tensor::from_data(TensorData::new(v, [t.len()]), device)
    }

    /// Model timesteps for step indices `t`, as host floats.
    pub fn model_timesteps_f32(&self, t: &[usize]) -> Vec<f32> {
        t.iter().map(|&i| self.timestep_map[i] as f32).collect()
    }

    /// q(x_t | x0) sample: sqrt(abar) x0 + sqrt(1 - abar) noise (eq. 2).
    pub fn q_sample(&self, x0: Tensor<4>, t: &[usize], noise: Tensor<4>) -> Tensor<4> {
        let dev = x0.device();
        let a = coef(t, |i| self.alphas_cumprod[i].sqrt(), &dev);
        let b = coef(t, |i| (1.0 - self.alphas_cumprod[i]).sqrt(), &dev);
        x0 * a + noise * b
    }

    /// Mean and clipped log variance of the posterior q(x_{t-1} | x_t, x0) (eq. 3).
    pub fn q_posterior(&self, x0: Tensor<4>, xt: Tensor<4>, t: &[usize]) -> (Tensor<4>, Tensor<4>) {
        let dev = x0.device();
        let mean = x0 * coef(t, |i| self.posterior_mean_coef1[i], &dev)
            + xt * coef(t, |i| self.posterior_mean_coef2[i], &dev);
        let logv = coef(t, |i| self.posterior_log_variance_clipped[i], &dev);
        (mean, logv)
    }

    /// x0 from x_t and a predicted epsilon.
    pub fn predict_xstart_from_eps(&self, xt: Tensor<4>, t: &[usize], eps: Tensor<4>) -> Tensor<4> {
        let dev = xt.device();
        xt * coef(t, |i| (1.0 / self.alphas_cumprod[i]).sqrt(), &dev)
            - eps * coef(t, |i| (1.0 / self.alphas_cumprod[i] - 1.0).sqrt(), &dev)
    }

    /// epsilon from x_t and an x0 estimate.
    pub fn predict_eps_from_xstart(&self, xt: Tensor<4>, t: &[usize], x0: Tensor<4>) -> Tensor<4> {
        let dev = xt.device();
        (xt * coef(t, |i| (1.0 / self.alphas_cumprod[i]).sqrt(), &dev) - x0)
            / coef(t, |i| (1.0 / self.alphas_cumprod[i] - 1.0).sqrt(), &dev)
    }

    /// Number of output channels the model must produce for `channels` image channels.
    pub fn model_out_channels(&self, channels: usize) -> usize {
        if self.var_type == ModelVarType::LearnedRange {
            2 * channels
        } else {
            channels
        }
    }

    /// p(x_{t-1} | x_t) from the raw model output (eps, or eps and v when learned).
    pub fn p_mean_variance(
        &self,
        model_out: Tensor<4>,
        xt: Tensor<4>,
        t: &[usize],
        clip_denoised: bool,
    ) -> PMeanVar {
        let dev = xt.device();
        let c = xt.dims()[1];
        let (eps, log_variance) = match self.var_type {
            ModelVarType::LearnedRange => {
                let eps = model_out.clone().narrow(1, 0, c);
                let v = model_out.narrow(1, c, c);
                let min_log = coef(t, |i| self.posterior_log_variance_clipped[i], &dev);
                let max_log = coef(t, |i| self.betas[i].ln(), &dev);
                let frac = v.add_scalar(1.0).div_scalar(2.0);
                let logv = frac.clone() * max_log + frac.neg().add_scalar(1.0) * min_log;
                (eps, logv)
            }
            ModelVarType::FixedSmall => (
                model_out,
                coef(t, |i| self.posterior_log_variance_clipped[i], &dev),
            ),
            ModelVarType::FixedLarge => {
                let v = |i: usize| {
                    if i == 0 && self.num_steps() > 1 {
                        self.posterior_variance[1]
                    } else {
                        self.betas[i]
                    }
                };
                (model_out, coef(t, |i| v(i).ln(), &dev))
            }
        };
        let mut x0 = self.predict_xstart_from_eps(xt.clone(), t, eps.clone());
        if clip_denoised {
            x0 = x0.clamp(-1.0, 1.0);
        }
        let (mean, _) = self.q_posterior(x0.clone(), xt, t);
        PMeanVar {
            mean,
            log_variance,
            pred_xstart: x0,
            eps,
        }
    }
}

/// A [B, 1, 1, 1] tensor of per-sample coefficients `f(t_b)`.
pub fn coef(t: &[usize], f: impl Fn(usize) -> f64, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = t.iter().map(|&i| f(i) as f32).collect();
    Tensor::from_data(TensorData::new(v, [t.len(), 1, 1, 1]), device)
}

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

/// What the model's first C output channels predict (improved-diffusion's `ModelMeanType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelMeanType {
    /// The noise epsilon (the default).
    #[default]
    Epsilon,
    /// x0 itself (`predict_xstart`).
    StartX,
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
    /// What the model predicts.
    pub mean_type: ModelMeanType,
    /// Factor from original step index to the model's timestep input: 1, or 1000 / T of the
    /// original process with improved-diffusion's `rescale_timesteps`.
    pub timestep_scale: f32,
}

/// The mean and variance of p(x_{t-1} | x_t) plus the predicted x0.
pub struct PMeanVar {
    /// Mean of the backward step.
    pub mean: Tensor<4>,
    /// Log variance, broadcastable to the mean.
    pub log_variance: Tensor<4>,
    /// The model's x0 estimate (clipped to [-1, 1] when asked).
    pub pred_xstart: Tensor<4>,
    /// The model's epsilon prediction (derived from the clipped x0 for an x0-predicting model,
    /// as improved-diffusion's DDIM step does).
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
        Self {
            mean_type: self.mean_type,
            timestep_scale: self.timestep_scale,
            ..Self::from_betas(betas, map, self.var_type)
        }
    }

    /// The same process for a model that predicts `mean_type`, fed timesteps rescaled to
    /// 0..1000 over `original_steps` when `rescale` (improved-diffusion's `rescale_timesteps`).
    pub fn with_model_io(
        mut self,
        mean_type: ModelMeanType,
        rescale: bool,
        original_steps: usize,
    ) -> Self {
        self.mean_type = mean_type;
        self.timestep_scale = if rescale {
            (1000.0 / original_steps as f64) as f32
        } else {
            1.0
        };
        self
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
            mean_type: ModelMeanType::Epsilon,
            timestep_scale: 1.0,
        }
    }

    /// Number of steps.
    pub fn num_steps(&self) -> usize {
        self.betas.len()
    }

    /// Model timesteps for step indices `t`, as host floats: the original step index, times
    /// the rescaling factor in f32 (as improved-diffusion's `_scale_timesteps`).
    pub fn model_timesteps_f32(&self, t: &[usize]) -> Vec<f32> {
        t.iter()
            .map(|&i| self.timestep_map[i] as f32 * self.timestep_scale)
            .collect()
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
        let (x0, eps) = match self.mean_type {
            ModelMeanType::Epsilon => {
                let mut x0 = self.predict_xstart_from_eps(xt.clone(), t, eps.clone());
                if clip_denoised {
                    x0 = x0.clamp(-1.0, 1.0);
                }
                (x0, eps)
            }
            ModelMeanType::StartX => {
                let x0 = if clip_denoised {
                    eps.clamp(-1.0, 1.0)
                } else {
                    eps
                };
                let eps = self.predict_eps_from_xstart(xt.clone(), t, x0.clone());
                (x0, eps)
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::BetaSchedule;

    fn vals(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn diffusion(var: ModelVarType) -> GaussianDiffusion {
        let spec = ScheduleSpec {
            kind: BetaSchedule::Linear,
            steps: 50,
            ..Default::default()
        };
        GaussianDiffusion::new(&spec, var).unwrap()
    }

    #[test]
    fn q_sample_and_posterior_match_closed_forms() {
        let d = diffusion(ModelVarType::FixedSmall);
        let dev = Device::default();
        let x0 = Tensor::<4>::from_data(TensorData::new(vec![0.5f32, -0.25], [2, 1, 1, 1]), &dev);
        let eps = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, -2.0], [2, 1, 1, 1]), &dev);
        let t = [0usize, 30];
        let xt = vals(d.q_sample(x0.clone(), &t, eps.clone()));
        for (k, &ti) in t.iter().enumerate() {
            let ab: f64 = (0..=ti).map(|i| 1.0 - d.betas[i]).product();
            let want = ab.sqrt() * [0.5, -0.25][k] + (1.0 - ab).sqrt() * [1.0, -2.0][k];
            assert!((xt[k] as f64 - want).abs() < 1e-6);
        }
        // Posterior mean from eq. 3 with the betas directly.
        let xt_t = Tensor::<4>::from_data(TensorData::new(xt.clone(), [2, 1, 1, 1]), &dev);
        let (mean, logv) = d.q_posterior(x0.clone(), xt_t.clone(), &t);
        let (mean, logv) = (vals(mean), vals(logv));
        let ti = 30;
        let ab: f64 = (0..=ti).map(|i| 1.0 - d.betas[i]).product();
        let ab_prev = ab / (1.0 - d.betas[ti]);
        let b = d.betas[ti];
        let want = ab_prev.sqrt() * b / (1.0 - ab) * -0.25
            + (1.0 - b).sqrt() * (1.0 - ab_prev) / (1.0 - ab) * xt[1] as f64;
        assert!((mean[1] as f64 - want).abs() < 1e-6);
        let var = (1.0 - ab_prev) / (1.0 - ab) * b;
        assert!((logv[1] as f64 - var.ln()).abs() < 1e-5);
        // At the first step the posterior mean is x0 (coef2 = 0) and the log variance is clipped.
        assert!((mean[0] - 0.5).abs() < 1e-6);
        assert!((logv[0] as f64 - d.posterior_variance[1].ln()).abs() < 1e-5);
        // The oracle epsilon recovers x0 exactly.
        let x0_hat = vals(d.predict_xstart_from_eps(xt_t.clone(), &t, eps.clone()));
        assert!((x0_hat[0] - 0.5).abs() < 1e-5 && (x0_hat[1] + 0.25).abs() < 1e-5);
        let eps_hat = vals(d.predict_eps_from_xstart(xt_t, &t, x0));
        assert!((eps_hat[0] - 1.0).abs() < 1e-4 && (eps_hat[1] + 2.0).abs() < 1e-4);
    }

    /// An x0-predicting model (`predict_xstart`): its output is the x0 estimate, epsilon is
    /// derived from it, the mean is the posterior's, and the simple loss targets x0; timesteps
    /// are rescaled to 0..1000 over the original T.
    #[test]
    fn x0_prediction_and_rescaled_timesteps() {
        let eps_d = diffusion(ModelVarType::FixedSmall);
        let d = eps_d.clone().with_model_io(ModelMeanType::StartX, true, 50);
        let dev = Device::default();
        let t4 = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [2, 1, 1, 1]), &dev);
        let (x0, eps) = (t4(vec![0.5, -0.25]), t4(vec![1.0, -2.0]));
        let t = [3usize, 30];
        let xt = d.q_sample(x0.clone(), &t, eps.clone());
        let pm = d.p_mean_variance(x0.clone(), xt.clone(), &t, false);
        assert_eq!(vals(pm.pred_xstart), vals(x0.clone()));
        for (a, b) in vals(pm.eps).iter().zip(vals(eps.clone())) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        // The same step as an epsilon model given the true epsilon.
        let pe = eps_d.p_mean_variance(eps.clone(), xt.clone(), &t, false);
        for (a, b) in vals(pm.mean).iter().zip(vals(pe.mean)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let l = d.training_losses(
            crate::diffusion::loss::LossKind::Simple,
            x0.clone(),
            x0.clone(),
            xt,
            &t,
            eps,
        );
        assert_eq!(vals4(l.mse.unwrap()), vec![0.0, 0.0]);
        assert_eq!(d.model_timesteps_f32(&[0, 30, 49]), vec![0.0, 600.0, 980.0]);
        assert_eq!(eps_d.model_timesteps_f32(&[30]), vec![30.0]);
        // Respacing keeps both settings.
        let r = d.respaced(&[0, 30, 49]);
        assert_eq!(r.mean_type, ModelMeanType::StartX);
        assert_eq!(r.model_timesteps_f32(&[1]), vec![600.0]);
    }

    fn vals4(t: Tensor<1>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn learned_range_interpolates_between_the_fixed_variances() {
        let d = diffusion(ModelVarType::LearnedRange);
        let dev = Device::default();
        let xt = Tensor::<4>::zeros([1, 1, 1, 1], &dev);
        for (v, want) in [
            (-1.0f32, d.posterior_log_variance_clipped[20]),
            (1.0, d.betas[20].ln()),
        ] {
            let out = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, v], [1, 2, 1, 1]), &dev);
            let pm = d.p_mean_variance(out, xt.clone(), &[20], true);
            assert!((vals(pm.log_variance)[0] as f64 - want).abs() < 1e-5);
        }
        assert_eq!(d.model_out_channels(3), 6);
    }
}

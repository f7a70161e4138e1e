//! Training objectives: simple (eq. 8), VLB (eqs. 4-6, in bits per dimension) and hybrid.
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::process::{GaussianDiffusion, ModelVarType};

/// Which objective to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// MSE on epsilon (eq. 8). With a learned variance the VLB term is added for it, as
    /// improved-diffusion does (then identical to `hybrid`).
    Simple,
    /// The variational bound: one KL term (or the decoder NLL at the first step) times T
    /// (improved-diffusion's `use_kl`, RESCALED_KL).
    Vlb,
    /// MSE plus (T / 1000) x the VLB term with the mean detached (L_simple + 0.001 L_vlb).
    Hybrid,
}

const LN2: f64 = std::f64::consts::LN_2;

/// KL(N(m1, e^lv1) || N(m2, e^lv2)) elementwise, in nats.
pub fn normal_kl(m1: Tensor<4>, lv1: Tensor<4>, m2: Tensor<4>, lv2: Tensor<4>) -> Tensor<4> {
    let d = m1 - m2;
    (lv2.clone() - lv1.clone() + (lv1 - lv2.clone()).exp() + d.square() * lv2.neg().exp())
        .sub_scalar(1.0)
        .mul_scalar(0.5)
}

/// A fast approximation of the standard normal CDF (the one improved-diffusion uses).
pub fn approx_standard_normal_cdf(x: Tensor<4>) -> Tensor<4> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.powf_scalar(3.0).mul_scalar(0.044715)).mul_scalar(c);
    inner.tanh().add_scalar(1.0).mul_scalar(0.5)
}

/// log-likelihood (nats, elementwise) of data `x` in [-1, 1] with 256 bins under a Gaussian
/// discretised to bins of width 2/255, the edge bins open (eqs. 5-6).
pub fn discretized_gaussian_log_likelihood(
    x: Tensor<4>,
    means: Tensor<4>,
    log_scales: Tensor<4>,
) -> Tensor<4> {
    let centered = x.clone() - means;
    let inv_stdv = log_scales.neg().exp();
    let plus_in = (centered.clone().add_scalar(1.0 / 255.0)) * inv_stdv.clone();
    let min_in = (centered.sub_scalar(1.0 / 255.0)) * inv_stdv;
    let cdf_plus = approx_standard_normal_cdf(plus_in);
    let cdf_min = approx_standard_normal_cdf(min_in);
    let log_cdf_plus = cdf_plus.clone().clamp_min(1e-12).log();
    let log_one_minus_cdf_min = cdf_min.clone().neg().add_scalar(1.0).clamp_min(1e-12).log();
    let cdf_delta = cdf_plus - cdf_min;
    let mid = cdf_delta.clamp_min(1e-12).log();
    let low = x.clone().lower_elem(-0.999);
    let high = x.greater_elem(0.999);
    mid.mask_where(high, log_one_minus_cdf_min)
        .mask_where(low, log_cdf_plus)
}

/// Mean over all but the batch dimension: [B, C, H, W] -> [B].
pub fn mean_flat(x: Tensor<4>) -> Tensor<1> {
    let b = x.dims()[0];
    x.reshape([b as i32, -1]).mean_dim(1).reshape([b])
}

/// Per-sample loss terms of one batch.
pub struct LossTerms {
    /// The loss to minimise, per sample (before importance weights).
    pub loss: Tensor<1>,
    /// MSE on the model's target (epsilon, or x0 with `predict_xstart`), per sample.
    pub mse: Option<Tensor<1>>,
    /// The VLB term in bits per dimension, per sample (when computed).
    pub vb: Option<Tensor<1>>,
}

impl GaussianDiffusion {
    /// The VLB term L_{t-1} (KL, or decoder NLL at the first step) in bits/dim, per sample, as
    /// training computes it (x0 predictions not clipped).
    pub fn vb_terms_bpd(
        &self,
        model_out: Tensor<4>,
        x0: Tensor<4>,
        xt: Tensor<4>,
        t: &[usize],
    ) -> Tensor<1> {
        self.vb_terms_bpd_with(model_out, x0, xt, t, false)
    }

    /// The VLB term with the x0 prediction clipped to [-1, 1] or not: the bits/dim evaluation
    /// clips, as improved-diffusion's `calc_bpd_loop` and `image_nll.py` do by default.
    pub fn vb_terms_bpd_with(
        &self,
        model_out: Tensor<4>,
        x0: Tensor<4>,
        xt: Tensor<4>,
        t: &[usize],
        clip_denoised: bool,
    ) -> Tensor<1> {
        let (true_mean, true_logv) = self.q_posterior(x0.clone(), xt.clone(), t);
        let out = self.p_mean_variance(model_out, xt, t, clip_denoised);
        let kl = mean_flat(normal_kl(
            true_mean,
            true_logv,
            out.mean.clone(),
            out.log_variance.clone(),
        ))
        .div_scalar(LN2);
        let nll = mean_flat(
            discretized_gaussian_log_likelihood(x0, out.mean, out.log_variance.mul_scalar(0.5))
                .neg(),
        )
        .div_scalar(LN2);
        let dev = kl.device();
        let first: Vec<bool> = t.iter().map(|&i| i == 0).collect();
        let mask =
            Tensor::<1, burn::tensor::Bool>::from_data(TensorData::new(first, [t.len()]), &dev);
        kl.mask_where(mask, nll)
    }

    /// Loss terms for x0 at steps `t` with noise `noise`, given the model output on x_t.
    pub fn training_losses(
        &self,
        kind: LossKind,
        model_out: Tensor<4>,
        x0: Tensor<4>,
        xt: Tensor<4>,
        t: &[usize],
        noise: Tensor<4>,
    ) -> LossTerms {
        let n = self.num_steps() as f64;
        let c = x0.dims()[1];
        let learned = self.var_type == ModelVarType::LearnedRange;
        match kind {
            LossKind::Vlb => {
                let vb = self.vb_terms_bpd(model_out, x0, xt, t);
                LossTerms {
                    loss: vb.clone().mul_scalar(n),
                    mse: None,
                    vb: Some(vb),
                }
            }
            LossKind::Simple | LossKind::Hybrid => {
                let eps = if learned {
                    model_out.clone().narrow(1, 0, c)
                } else {
                    model_out.clone()
                };
                let target = match self.mean_type {
                    super::ModelMeanType::Epsilon => noise,
                    super::ModelMeanType::StartX => x0.clone(),
                };
                let mse = mean_flat((target - eps.clone()).square());
                if learned {
                    // The VLB term trains only the variance: the mean is detached.
                    let v = model_out.narrow(1, c, c);
                    let frozen = Tensor::cat(vec![eps.detach(), v], 1);
                    let vb = self.vb_terms_bpd(frozen, x0, xt, t);
                    let loss = mse.clone() + vb.clone().mul_scalar(n / 1000.0);
                    LossTerms {
                        loss,
                        mse: Some(mse),
                        vb: Some(vb),
                    }
                } else {
                    LossTerms {
                        loss: mse.clone(),
                        mse: Some(mse),
                        vb: None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn t4(v: Vec<f32>, shape: [usize; 4], d: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(v, shape), d)
    }

    #[test]
    fn kl_of_identical_gaussians_is_zero_and_matches_closed_form() {
        let d = Device::default();
        let m = t4(vec![0.3, -0.2, 1.0, 0.0], [1, 1, 2, 2], &d);
        let lv = t4(vec![-1.0, 0.5, 0.0, -3.0], [1, 1, 2, 2], &d);
        let kl = normal_kl(m.clone(), lv.clone(), m.clone(), lv.clone());
        let v = kl.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.abs() < 1e-6), "{v:?}");
        // N(0,1) vs N(1, e^1): 0.5 * (1 - 0 + e^-1 + 1 * e^-1 - 1)
        let kl = normal_kl(
            t4(vec![0.0], [1, 1, 1, 1], &d),
            t4(vec![0.0], [1, 1, 1, 1], &d),
            t4(vec![1.0], [1, 1, 1, 1], &d),
            t4(vec![1.0], [1, 1, 1, 1], &d),
        );
        let want = 0.5 * (1.0 + (-1.0f64).exp() + (-1.0f64).exp() - 1.0);
        assert!((kl.into_scalar::<f32>() as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn discretized_likelihood_sums_to_one_over_bins() {
        let d = Device::default();
        for (mean, log_scale) in [(0.0f32, -2.0f32), (0.7, -4.0), (-0.95, -1.0), (0.2, 0.5)] {
            let xs: Vec<f32> = (0..256).map(|k| k as f32 / 127.5 - 1.0).collect();
            let x = t4(xs, [1, 1, 1, 256], &d);
            let m = t4(vec![mean; 256], [1, 1, 1, 256], &d);
            let s = t4(vec![log_scale; 256], [1, 1, 1, 256], &d);
            let ll = discretized_gaussian_log_likelihood(x, m, s);
            let p: f64 = ll
                .exp()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .sum();
            assert!(
                (p - 1.0).abs() < 2e-3,
                "mean {mean} log_scale {log_scale}: total {p}"
            );
        }
    }
}

//! Ancestral DDPM sampling: x_{t-1} = mean + sigma_t z, with the model's (or the fixed) variance.
use burn::tensor::Tensor;

use super::Sampler;
use crate::diffusion::process::PMeanVar;
use crate::diffusion::GaussianDiffusion;

/// The ancestral update of Ho et al. (improved-diffusion's `p_sample`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ancestral;

impl Sampler for Ancestral {
    fn step(
        &self,
        _d: &GaussianDiffusion,
        _x: Tensor<4>,
        t: usize,
        pm: PMeanVar,
        z: Tensor<4>,
    ) -> Tensor<4> {
        if t == 0 {
            pm.mean
        } else {
            pm.mean + z * pm.log_variance.mul_scalar(0.5).exp()
        }
    }
}

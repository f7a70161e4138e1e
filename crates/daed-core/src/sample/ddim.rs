//! DDIM sampling (Song et al.): the update through the predicted x0, with `eta` times the
//! ancestral noise (improved-diffusion's `ddim_sample`).
use burn::tensor::Tensor;

use super::Sampler;
use crate::diffusion::process::PMeanVar;
use crate::diffusion::GaussianDiffusion;

/// The DDIM update with its eta (0: deterministic).
#[derive(Clone, Copy, Debug)]
pub struct Ddim {
    /// The amount of fresh noise.
    pub eta: f64,
}

impl Sampler for Ddim {
    fn step(
        &self,
        d: &GaussianDiffusion,
        x: Tensor<4>,
        t: usize,
        pm: PMeanVar,
        z: Tensor<4>,
    ) -> Tensor<4> {
        let ts = vec![t; x.dims()[0]];
        // Epsilon again from the (clipped) x0 estimate, as the reference does.
        let eps = d.predict_eps_from_xstart(x, &ts, pm.pred_xstart.clone());
        let ab = d.alphas_cumprod[t];
        let ab_prev = d.alphas_cumprod_prev[t];
        let sigma = self.eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
        let mean = pm.pred_xstart.mul_scalar(ab_prev.sqrt())
            + eps.mul_scalar((1.0 - ab_prev - sigma * sigma).max(0.0).sqrt());
        if t == 0 || sigma == 0.0 {
            mean
        } else {
            mean + z.mul_scalar(sigma)
        }
    }
}

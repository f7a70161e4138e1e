//! Sampling loops: ancestral DDPM over all or respaced steps, and DDIM (eta).
use burn::tensor::{Device, Distribution, Tensor};

use crate::diffusion::schedule::space_timesteps;
use crate::diffusion::GaussianDiffusion;
use crate::nn::EpsModel;
use crate::rng::mix;
use crate::Result;

/// How to sample.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Respacing spec ("" = every step).
    pub respacing: String,
    /// DDIM updates instead of ancestral.
    pub ddim: bool,
    /// DDIM eta.
    pub eta: f64,
    /// Clip x0 estimates to [-1, 1].
    pub clip_denoised: bool,
    /// Seed of all noise.
    pub seed: u64,
}

impl SampleOptions {
    /// The options a config's `[sample]` section describes.
    pub fn from_config(s: &crate::config::SampleConfig) -> Self {
        Self {
            respacing: s.respacing.clone(),
            ddim: s.ddim,
            eta: s.eta,
            clip_denoised: s.clip_denoised,
            seed: s.seed,
        }
    }

    /// Checks the values a user can set: eta finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        if !(self.eta.is_finite() && self.eta >= 0.0) {
            return Err(crate::Error::Invalid(format!(
                "eta must be a finite number >= 0, got {}",
                self.eta
            )));
        }
        Ok(())
    }

    /// Ancestral sampling over every step, x0 clipped: what the analyses use.
    pub fn ancestral(seed: u64) -> Self {
        Self {
            respacing: String::new(),
            ddim: false,
            eta: 0.0,
            clip_denoised: true,
            seed,
        }
    }
}

/// The (possibly respaced) process used for sampling.
pub fn sampling_diffusion(base: &GaussianDiffusion, respacing: &str) -> Result<GaussianDiffusion> {
    if respacing.trim().is_empty() {
        return Ok(base.clone());
    }
    let kept = space_timesteps(base.num_steps(), respacing)?;
    Ok(base.respaced(&kept))
}

/// Standard normal noise of `shape`, deterministic in `(seed, a, b)`.
pub fn noise(shape: [usize; 4], seed: u64, a: u64, b: u64, device: &Device) -> Tensor<4> {
    device.seed(mix(seed, a, b));
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// One backward step from step index `t` (same for the whole batch).
pub fn p_step(
    model: &dyn EpsModel,
    d: &GaussianDiffusion,
    x: Tensor<4>,
    t: usize,
    opts: &SampleOptions,
    z: Tensor<4>,
) -> Tensor<4> {
    let b = x.dims()[0];
    let ts = vec![t; b];
    let tt: Vec<f32> = vec![d.timestep_map[t] as f32; b];
    let out = model.predict(x.clone(), &tt);
    let pm = d.p_mean_variance(out, x.clone(), &ts, opts.clip_denoised);
    if opts.ddim {
        let eps = d.predict_eps_from_xstart(x, &ts, pm.pred_xstart.clone());
        let ab = d.alphas_cumprod[t];
        let ab_prev = d.alphas_cumprod_prev[t];
        let sigma = opts.eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
        let mean = pm.pred_xstart.mul_scalar(ab_prev.sqrt())
            + eps.mul_scalar((1.0 - ab_prev - sigma * sigma).max(0.0).sqrt());
        if t == 0 || sigma == 0.0 {
            mean
        } else {
            mean + z.mul_scalar(sigma)
        }
    } else if t == 0 {
        pm.mean
    } else {
        pm.mean + z * pm.log_variance.mul_scalar(0.5).exp()
    }
}

/// Runs the backward process from `x` at step index `from` (inclusive) down to x0.
/// `batch_id` keys the noise so separate batches get separate noise.
pub fn p_sample_loop_from(
    model: &dyn EpsModel,
    d: &GaussianDiffusion,
    mut x: Tensor<4>,
    from: usize,
    opts: &SampleOptions,
    batch_id: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Tensor<4> {
    let shape = x.dims();
    let dev = x.device();
    let total = from + 1;
    for (k, t) in (0..=from).rev().enumerate() {
        let z = if t > 0 {
            noise(shape, opts.seed, batch_id, 1 + t as u64, &dev)
        } else {
            x.zeros_like()
        };
        x = p_step(model, d, x, t, opts, z);
        progress(k + 1, total);
    }
    x
}

/// Draws `n` images [n, C, H, W] in [-1, 1] (batches of `batch`), from pure noise.
#[allow(clippy::too_many_arguments)]
pub fn sample_images(
    model: &dyn EpsModel,
    base: &GaussianDiffusion,
    shape: [usize; 3],
    n: usize,
    batch: usize,
    opts: &SampleOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    opts.validate()?;
    let d = sampling_diffusion(base, &opts.respacing)?;
    let steps = d.num_steps();
    batched(
        shape,
        n,
        batch,
        opts.seed,
        device,
        steps,
        progress,
        &mut |x, bi, p| p_sample_loop_from(model, &d, x, steps - 1, opts, bi, p),
    )
}

/// A sampling run over one batch: (noise, batch id, progress) -> images.
pub type BatchRun<'a> = dyn FnMut(Tensor<4>, u64, &mut dyn FnMut(usize, usize)) -> Tensor<4> + 'a;

/// Runs `run(noise, batch_id, progress)` over batches of pure noise and collects the images.
#[allow(clippy::too_many_arguments)]
pub fn batched(
    shape: [usize; 3],
    n: usize,
    batch: usize,
    seed: u64,
    device: &Device,
    steps: usize,
    progress: &mut dyn FnMut(usize, usize),
    run: &mut BatchRun,
) -> Result<Vec<f32>> {
    if n == 0 || batch == 0 {
        return Err(crate::Error::Invalid(
            "the number of images and the batch size must be at least 1".into(),
        ));
    }
    let nb = n.div_ceil(batch);
    let per: usize = shape.iter().product();
    let total = n.checked_mul(per).ok_or_else(|| {
        crate::Error::Invalid(format!("{n} images of {per} values cannot be counted"))
    })?;
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| {
        crate::Error::Invalid(format!(
            "cannot allocate {n} images ({:.1} GiB): ask for fewer",
            total as f64 * 4.0 / (1u64 << 30) as f64
        ))
    })?;
    for bi in 0..nb {
        let b = batch.min(n - bi * batch);
        let x = noise(
            [b, shape[0], shape[1], shape[2]],
            seed,
            bi as u64,
            0,
            device,
        );
        let done = bi * steps;
        let x = run(x, bi as u64, &mut |k, _| progress(done + k, nb * steps));
        let imgs = crate::tensor_io::to_vec(x.reshape([b * per]))?;
        if let Some(i) = imgs.iter().position(|v| !v.is_finite()) {
            return Err(crate::Error::Invalid(format!(
                "sampling produced a non-finite value (image {} of batch {bi}): the weights or \
                 the sampling options are broken; nothing was written",
                i / per
            )));
        }
        out.extend(imgs);
    }
    Ok(out)
}

//! DAED (Section 4, eqs. 12-13): a denoising auto-encoder for x1 -> x0 plus a diffusion generator
//! for x_T -> x1.
//!
//! For a DDGM schedule with T steps and a noise level beta1, the switch index k is the step whose
//! alpha-bar is closest to 1 - beta1. The DAED process has T - k + 1 steps: its first step has
//! beta = beta1 (the DAE's corruption q(x1 | x0) = N(sqrt(1 - beta1) x0, beta1 I)) and the others
//! are the DDGM's steps k+1..T unchanged, so alpha-bar matches the DDGM's from the switch on and a
//! trained DDGM *is* a DAED generator (two-stage training needs only the DAE).
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::config::{ExperimentConfig, ModelKind};
use crate::diffusion::loss::{discretized_gaussian_log_likelihood, mean_flat, LossTerms};
use crate::diffusion::step_sampler::StepSamplerKind;
use crate::diffusion::{GaussianDiffusion, ScheduleSpec};
use crate::model::{build_unet, Build, Generate, Objective};
use crate::nn::{dropout, EpsModel, UNet};
use crate::{Error, Result};

pub use crate::config::{DaeLoss, DaedMode, DaedProcess};

/// The switch index k (1-based): argmin_t |alpha_bar_t - (1 - beta1)| over t = 1..T.
pub fn switch_index(alphas_cumprod: &[f64], beta1: f64) -> usize {
    let target = 1.0 - beta1;
    let (i, _) = alphas_cumprod
        .iter()
        .enumerate()
        .fold((0, f64::INFINITY), |(bi, bd), (i, &a)| {
            if (a - target).abs() < bd {
                (i, (a - target).abs())
            } else {
                (bi, bd)
            }
        });
    i + 1
}

fn check_beta1(beta1: f64) -> Result<()> {
    if beta1 > 0.0 && beta1 < 1.0 {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "daed.beta1 must be in (0, 1), got {beta1}"
    )))
}

/// The DAED process for a DDGM schedule and beta1, and the switch index k.
pub fn daed_process(
    spec: &ScheduleSpec,
    beta1: f64,
    var: crate::diffusion::ModelVarType,
) -> Result<(GaussianDiffusion, usize)> {
    check_beta1(beta1)?;
    spec.validate()?;
    let base = spec.betas();
    let ab = crate::diffusion::schedule::alphas_cumprod(&base);
    let k = switch_index(&ab, beta1);
    if k >= base.len() {
        return Err(Error::Invalid(format!(
            "daed.beta1 = {beta1} leaves no generator steps (switch at {k} of {})",
            base.len()
        )));
    }
    let mut betas = vec![beta1];
    betas.extend_from_slice(&base[k..]);
    let mut map = vec![0];
    map.extend(k..base.len());
    Ok((GaussianDiffusion::from_betas(betas, map, var), k))
}

/// The paper code's `linear_combine` process: the linear schedule of `spec` with its first beta
/// replaced by beta1, every step kept (the DAE at step 0, the generator at 1..T-1).
pub fn linear_combine_process(
    spec: &ScheduleSpec,
    beta1: f64,
    var: crate::diffusion::ModelVarType,
) -> Result<GaussianDiffusion> {
    check_beta1(beta1)?;
    spec.validate()?;
    if spec.kind != crate::diffusion::BetaSchedule::Linear || spec.steps < 2 {
        return Err(Error::Invalid(
            "daed.process = \"linear-combine\" needs diffusion.schedule = \"linear\" and at \
             least 2 steps"
                .into(),
        ));
    }
    let mut betas = spec.betas();
    betas[0] = beta1;
    let map = (0..betas.len()).collect();
    Ok(GaussianDiffusion::from_betas(betas, map, var))
}

/// The DAED process a config describes (its `[daed] process`, beta1, and the network's
/// prediction and timestep scaling from `[diffusion]`).
pub fn process_for(cfg: &ExperimentConfig) -> Result<GaussianDiffusion> {
    let dc = &cfg.diffusion;
    let d = match cfg.daed.process {
        DaedProcess::Switch => daed_process(&dc.schedule_spec(), cfg.daed.beta1, dc.var_type())?.0,
        DaedProcess::LinearCombine => {
            linear_combine_process(&dc.schedule_spec(), cfg.daed.beta1, dc.var_type())?
        }
    };
    Ok(d.with_model_io(dc.mean_type(), dc.rescale_timesteps, dc.steps))
}

/// DAED's two networks: the generator (epsilon U-Net over the DAED process's steps 2..T') and the
/// DAE (a U-Net called with a fixed time 0; f(x1) = (x1 - sqrt(beta1) eps(x1)) / sqrt(1 - beta1)).
#[derive(Module, Debug)]
pub struct DaedNets {
    /// The diffusion generator.
    pub generator: UNet,
    /// The denoising auto-encoder.
    pub dae: UNet,
}

impl DaedNets {
    /// The DAE's reconstruction f(x1) of x0 (not clipped).
    pub fn denoise(&self, x1: Tensor<4>, beta1: f64) -> Tensor<4> {
        let b = x1.dims()[0];
        let eps = self.dae.forward_inference(x1.clone(), &vec![0.0; b]);
        (x1 - eps.mul_scalar(beta1.sqrt())).div_scalar((1.0 - beta1).sqrt())
    }
}

/// The generator as seen by the sampler (the DAE step is handled separately).
impl EpsModel for DaedNets {
    fn predict(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4> {
        self.generator.forward_inference(x, timesteps)
    }
}

impl Build for DaedNets {
    const KIND: ModelKind = ModelKind::Daed;

    fn process(cfg: &ExperimentConfig) -> Result<GaussianDiffusion> {
        process_for(cfg)
    }

    fn step_sampler(cfg: &ExperimentConfig) -> StepSamplerKind {
        match cfg.daed.mode {
            DaedMode::TwoStage => StepSamplerKind::OnlyDae,
            DaedMode::Joint => cfg.diffusion.step_sampler,
        }
    }

    fn build(
        cfg: &ExperimentConfig,
        d: &GaussianDiffusion,
        shape: [usize; 3],
        device: &Device,
    ) -> Result<Self> {
        // The DAE is never class-conditional (the paper code's unet_1 has no label_emb).
        let mut dae_cfg = cfg.clone();
        dae_cfg.unet.num_classes = None;
        Ok(Self {
            generator: build_unet(cfg, shape, d.model_out_channels(shape[0]), device)?,
            dae: build_unet(&dae_cfg, shape, shape[0], device)?,
        })
    }

    fn prepare(mut self, cfg: &ExperimentConfig, shape: [usize; 3]) -> Result<Self> {
        if cfg.daed.mode != DaedMode::TwoStage {
            return Ok(self);
        }
        let path = cfg
            .daed
            .ddgm
            .as_ref()
            .ok_or_else(|| Error::Invalid("daed.ddgm is not set".into()))?;
        let ck = crate::train::Checkpoint::open(path)?;
        let prefix = generator_prefix(&ck.config, cfg).map_err(|e| Error::ckpt(&ck.dir, e))?;
        check_compatible(&ck.config, ck.state.image_shape, cfg, shape)
            .map_err(|e| Error::ckpt(&ck.dir, e.to_string()))?;
        let arrays = ck.tensors(crate::train::checkpoint::TensorFile::Ema)?;
        self.generator = crate::tensor_io::load_module(
            self.generator,
            &arrays,
            prefix,
            &ck.dir
                .join(crate::train::checkpoint::TensorFile::Ema.name()),
        )?;
        Ok(self)
    }
}

/// The dropout layers of the DAE and of the generator are numbered apart (`nn::dropout::rows`),
/// so each network's masks are the same however a batch splits between them.
const DAE_NET: u64 = 1;
/// See [`DAE_NET`].
const GENERATOR_NET: u64 = 2;

impl Objective for DaedNets {
    fn losses(
        &self,
        cfg: &ExperimentConfig,
        d: &GaussianDiffusion,
        x0: Tensor<4>,
        ts: &[usize],
        eps: Tensor<4>,
    ) -> LossTerms {
        let n0 = ts.iter().take_while(|&&t| t == 0).count();
        let b = ts.len();
        let beta1 = d.betas[0];
        let mut parts = Vec::new();
        let mut mse_parts = Vec::new();
        if n0 > 0 {
            let x0d = x0.clone().narrow(0, 0, n0);
            let x1 = d.q_sample(x0d.clone(), &ts[..n0], eps.clone().narrow(0, 0, n0));
            let rec = dropout::rows(0, DAE_NET, || self.denoise(x1, beta1));
            let l = match cfg.daed.dae_loss {
                DaeLoss::Mse => mean_flat((rec - x0d).square()),
                DaeLoss::Discretized => {
                    let log_scale = rec.zeros_like().add_scalar(0.5 * beta1.ln());
                    mean_flat(discretized_gaussian_log_likelihood(x0d, rec, log_scale).neg())
                        .div_scalar(std::f64::consts::LN_2)
                }
            };
            parts.push(l.clone());
            mse_parts.push(l);
        }
        if n0 < b {
            let g = dropout::rows(n0, GENERATOR_NET, || {
                self.generator.losses(
                    cfg,
                    d,
                    x0.narrow(0, n0, b - n0),
                    &ts[n0..],
                    eps.narrow(0, n0, b - n0),
                )
            });
            parts.push(g.loss);
            if let Some(m) = g.mse {
                mse_parts.push(m);
            }
        }
        // The MSE only when every row has one (a generator without the epsilon MSE has none).
        let complete = mse_parts.len() == parts.len();
        LossTerms {
            loss: Tensor::cat(parts, 0),
            mse: complete.then(|| Tensor::cat(mse_parts, 0)),
            vb: None,
        }
    }
}

impl Generate for DaedNets {
    fn num_classes(&self) -> Option<usize> {
        self.generator.num_classes()
    }

    fn sampling_process(d: &GaussianDiffusion, respacing: &str) -> Result<GaussianDiffusion> {
        daed_sampling_process(d, respacing)
    }

    fn sample_chain(
        &self,
        d: &GaussianDiffusion,
        x: Tensor<4>,
        opts: &crate::sample::SampleOptions,
        chain: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Tensor<4> {
        daed_sample_batch(self, d, x, opts, chain, progress)
    }
}

/// The DAED process respaced over its generator steps (the DAE step is always kept).
pub fn daed_sampling_process(d: &GaussianDiffusion, respacing: &str) -> Result<GaussianDiffusion> {
    if respacing.trim().is_empty() {
        return Ok(d.clone());
    }
    let gen = crate::diffusion::schedule::space_timesteps(d.num_steps() - 1, respacing)?;
    let mut kept = vec![0];
    kept.extend(gen.iter().map(|&i| i + 1));
    Ok(d.respaced(&kept))
}

/// Samples from DAED: the generator from x_T' down to x1 (ancestral or respaced/DDIM via the
/// process), then x0 = f(x1), clipped to [-1, 1].
pub fn daed_sample_batch(
    nets: &DaedNets,
    d: &GaussianDiffusion,
    x: Tensor<4>,
    opts: &crate::sample::SampleOptions,
    batch_id: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Tensor<4> {
    let shape = x.dims();
    let dev = x.device();
    let last = d.num_steps() - 1;
    let labelled = opts.class.map(|class| crate::nn::WithClass {
        net: &nets.generator,
        class,
    });
    let model: &dyn EpsModel = match &labelled {
        Some(m) => m,
        None => nets,
    };
    let mut x = x;
    for (k, t) in (1..=last).rev().enumerate() {
        let stream = crate::rng::Stream::SampleStep {
            chain: batch_id,
            t: t as u64,
        };
        let z = crate::sample::noise(shape, opts.seed, stream, &dev);
        x = crate::sample::p_step(model, d, x, t, opts, z);
        progress(k + 1, last + 1);
    }
    let out = nets.denoise(x, d.betas[0]).clamp(-1.0, 1.0);
    progress(last + 1, last + 1);
    out
}

/// Where two-stage training finds the generator in `daed.ddgm`'s weights: a DDGM's whole
/// network for the `switch` process; the generator of a DAED run (e.g. an imported
/// analysing_ddgm model) over the same `linear-combine` process and beta1.
fn generator_prefix(
    source: &ExperimentConfig,
    cfg: &ExperimentConfig,
) -> std::result::Result<&'static str, String> {
    match (cfg.daed.process, source.model) {
        (DaedProcess::Switch, ModelKind::Ddgm) => Ok(""),
        (DaedProcess::LinearCombine, ModelKind::Daed)
            if source.daed.process == DaedProcess::LinearCombine
                && source.daed.beta1 == cfg.daed.beta1 =>
        {
            Ok("generator.")
        }
        (DaedProcess::Switch, kind) => Err(format!(
            "daed.ddgm must be a DDGM checkpoint, this one is `{kind}`"
        )),
        (DaedProcess::LinearCombine, _) => Err(format!(
            "with daed.process = \"linear-combine\", daed.ddgm must be a DAED run over the same \
             process and beta1 = {} (its generator is reused)",
            cfg.daed.beta1
        )),
    }
}

/// Checks that a DAE and a DDGM fit together: same image shape and schedule.
pub fn check_compatible(
    ddgm: &ExperimentConfig,
    ddgm_shape: [usize; 3],
    daed: &ExperimentConfig,
    shape: [usize; 3],
) -> Result<()> {
    if ddgm_shape != shape {
        return Err(Error::Invalid(format!(
            "the DDGM was trained on images {ddgm_shape:?} but the DAE data has {shape:?}"
        )));
    }
    if ddgm.diffusion.schedule_spec() != daed.diffusion.schedule_spec() {
        return Err(Error::Invalid(format!(
            "the DDGM's schedule ({} T={} beta {}..{}) differs from the DAED config's ({} T={} beta {}..{}): set [diffusion] to the DDGM's",
            ddgm.diffusion.schedule, ddgm.diffusion.steps, ddgm.diffusion.beta_start, ddgm.diffusion.beta_end,
            daed.diffusion.schedule, daed.diffusion.steps, daed.diffusion.beta_start, daed.diffusion.beta_end
        )));
    }
    let io = |c: &ExperimentConfig| (c.diffusion.mean_type(), c.diffusion.rescale_timesteps);
    if ddgm.diffusion.var_type() != daed.diffusion.var_type()
        || io(ddgm) != io(daed)
        || ddgm.unet != daed.unet
    {
        return Err(Error::Invalid("the DDGM's [unet] or variance settings differ from the DAED config's: the generator must be the DDGM's network".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::{BetaSchedule, ModelVarType};

    /// Independent computation: the linear schedule and its cumulative product, then a scan.
    fn k_naive(kind: BetaSchedule, steps: usize, start: f64, beta1: f64) -> usize {
        let betas: Vec<f64> = match kind {
            BetaSchedule::Linear => {
                let s = 1000.0 / steps as f64;
                (0..steps)
                    .map(|i| s * start + (s * 0.02 - s * start) * i as f64 / (steps - 1) as f64)
                    .collect()
            }
            BetaSchedule::Cosine => {
                let f = |t: f64| {
                    ((t / steps as f64 + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                        .cos()
                        .powi(2)
                };
                (1..=steps)
                    .map(|t| (1.0 - f(t as f64) / f(t as f64 - 1.0)).min(0.999))
                    .collect()
            }
        };
        let mut best = (0, f64::MAX);
        let mut a = 1.0;
        for (i, b) in betas.iter().enumerate() {
            a *= 1.0 - b;
            if (a - (1.0 - beta1)).abs() < best.1 {
                best = (i + 1, (a - (1.0 - beta1)).abs());
            }
        }
        best.0
    }

    #[test]
    fn switch_indices_match_an_independent_scan() {
        for kind in [BetaSchedule::Linear, BetaSchedule::Cosine] {
            for (steps, start) in [(500, 1e-3), (1000, 1e-4), (1000, 1e-3)] {
                let spec = ScheduleSpec {
                    kind,
                    steps,
                    beta_start: start,
                    ..Default::default()
                };
                let ab = crate::diffusion::schedule::alphas_cumprod(&spec.betas());
                for beta1 in [0.001, 0.025, 0.1, 0.2, 0.3] {
                    assert_eq!(
                        switch_index(&ab, beta1),
                        k_naive(kind, steps, start, beta1),
                        "{kind} T={steps} beta1={beta1}"
                    );
                }
            }
        }
        // The paper's Table 5 (Fashion-MNIST, T = 500, its code's linear schedule from 1e-3):
        // generator steps 489, 445, 426, 499 for beta1 = 0.025, 0.2, 0.3, 0.001.
        let spec = ScheduleSpec {
            steps: 500,
            beta_start: 1e-3,
            ..Default::default()
        };
        let ab = crate::diffusion::schedule::alphas_cumprod(&spec.betas());
        let gen: Vec<usize> = [0.025, 0.2, 0.3, 0.001]
            .iter()
            .map(|&b| 500 - switch_index(&ab, b))
            .collect();
        assert_eq!(gen, vec![489, 445, 426, 499]);
    }

    /// The paper code's `linear_combine`: its linear schedule (1e-3 .. 0.02 scaled) with the first
    /// beta replaced by beta1, every step kept and fed to the networks as is.
    #[test]
    fn linear_combine_replaces_the_first_beta() {
        let spec = ScheduleSpec {
            steps: 468,
            beta_start: 1e-3,
            ..Default::default()
        };
        let d = linear_combine_process(&spec, 0.1, ModelVarType::FixedLarge).unwrap();
        let base = spec.betas();
        assert_eq!(d.betas[0], 0.1);
        assert_eq!(&d.betas[1..], &base[1..]);
        assert_eq!(d.timestep_map, (0..468).collect::<Vec<_>>());
        let s = 1000.0 / 468.0;
        assert!((d.betas[467] - s * 0.02).abs() < 1e-12);
        let cosine = ScheduleSpec {
            kind: BetaSchedule::Cosine,
            ..spec
        };
        let e = linear_combine_process(&cosine, 0.1, ModelVarType::FixedLarge)
            .unwrap_err()
            .to_string();
        assert!(e.contains("linear-combine"), "{e}");
    }

    #[test]
    fn daed_process_keeps_the_ddgm_tail() {
        let spec = ScheduleSpec {
            steps: 500,
            beta_start: 1e-3,
            ..Default::default()
        };
        let (d, k) = daed_process(&spec, 0.1, ModelVarType::FixedLarge).unwrap();
        let ddgm = GaussianDiffusion::new(&spec, ModelVarType::FixedLarge).unwrap();
        assert_eq!(d.num_steps(), 500 - k + 1);
        assert!((d.alphas_cumprod[0] - 0.9).abs() < 1e-12);
        // From the switch on, alpha-bar differs from the DDGM's only by the ratio at the switch.
        let r = 0.9 / ddgm.alphas_cumprod[k - 1];
        for j in 1..d.num_steps() {
            assert!((d.alphas_cumprod[j] - r * ddgm.alphas_cumprod[k - 1 + j]).abs() < 1e-12);
            assert_eq!(d.timestep_map[j], k - 1 + j);
        }
        assert!(daed_process(&spec, 0.999999, ModelVarType::FixedLarge).is_err());
        assert!(daed_process(&spec, 1.0, ModelVarType::FixedLarge).is_err());
        assert!(daed_process(&spec, 0.0, ModelVarType::FixedLarge).is_err());
    }
}

//! What the trainer trains: a DDGM's U-Net, or DAED's generator and denoiser together.
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::config::{ExperimentConfig, ModelKind};
use crate::diffusion::loss::LossTerms;
use crate::diffusion::step_sampler::StepSamplerKind;
use crate::diffusion::GaussianDiffusion;
use crate::nn::UNet;
use crate::sample::SampleOptions;
use crate::{Error, Result};

/// What a diffusion model is and how it is built: its tag, its process, its step sampler and
/// its networks (from the config, for images of a shape).
pub trait Build: Module + Clone + Sized {
    /// The tag stored in checkpoints (`ddgm`, `daed`).
    const KIND: ModelKind;
    /// The diffusion process the model is trained on.
    fn process(cfg: &ExperimentConfig) -> Result<GaussianDiffusion>;
    /// The step sampler the config asks for (DAED's two-stage mode forces `only-dae`).
    fn step_sampler(cfg: &ExperimentConfig) -> StepSamplerKind {
        cfg.diffusion.step_sampler
    }
    /// Freshly initialised networks for images of `shape` [C, H, W].
    fn build(
        cfg: &ExperimentConfig,
        d: &GaussianDiffusion,
        shape: [usize; 3],
        device: &Device,
    ) -> Result<Self>;
    /// Completes freshly built networks before training (DAED two-stage loads the DDGM).
    fn prepare(self, _cfg: &ExperimentConfig, _shape: [usize; 3]) -> Result<Self> {
        Ok(self)
    }
}

/// What training minimises: the per-sample losses (and the VLB probe of the training dynamics).
pub trait Objective: Build {
    /// Per-sample losses of x0 at steps `ts` (sorted ascending) with noise `eps`.
    fn losses(
        &self,
        cfg: &ExperimentConfig,
        d: &GaussianDiffusion,
        x0: Tensor<4>,
        ts: &[usize],
        eps: Tensor<4>,
    ) -> LossTerms;
    /// The VLB term (bits/dim) per sample of x0 at steps `ts` with noise `eps`, when the model
    /// has one (a DDGM); used to record training dynamics.
    fn vlb_probe(
        &self,
        _d: &GaussianDiffusion,
        _x0: Tensor<4>,
        _ts: &[usize],
        _eps: Tensor<4>,
    ) -> Option<Tensor<1>> {
        None
    }
}

/// How the model draws images: its sampling process and the sampling itself.
pub trait Generate: Build {
    /// The process sampling runs over for a respacing spec ("" = every step); an invalid spec
    /// is an error here, so it can be checked before any work.
    fn sampling_process(d: &GaussianDiffusion, respacing: &str) -> Result<GaussianDiffusion> {
        crate::sample::sampling_diffusion(d, respacing)
    }
    /// The number of classes of a class-conditional model (None: unconditional).
    fn num_classes(&self) -> Option<usize> {
        None
    }
    /// Runs one batch's backward chain over the sampling process `d` from the pure noise `x`
    /// (noise keyed by `chain`) down to images in [-1, 1].
    fn sample_chain(
        &self,
        d: &GaussianDiffusion,
        x: Tensor<4>,
        opts: &SampleOptions,
        chain: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Tensor<4>;

    /// Draws `n` images [n, C, H, W] in [-1, 1] from pure noise, in batches of `batch`, over the
    /// model's process `d` respaced as `opts` asks.
    #[allow(clippy::too_many_arguments)]
    fn sample(
        &self,
        d: &GaussianDiffusion,
        shape: [usize; 3],
        n: usize,
        batch: usize,
        opts: &SampleOptions,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        opts.validate()?;
        opts.check_class(self.num_classes())?;
        let d = Self::sampling_process(d, &opts.respacing)?;
        let steps = d.num_steps();
        let precision = opts.precision.resolve("sample.precision", device)?;
        // The weights stay as they are while sampling: Winograd keeps their transforms.
        daed_kernels::conv::frozen_weights(|| {
            crate::precision::scope(precision, || {
                let plan = crate::sample::BatchPlan {
                    shape,
                    n,
                    batch,
                    seed: opts.seed,
                    steps,
                    keep: opts.keep.as_ref(),
                };
                crate::sample::batched(&plan, device, progress, &mut |x, chain, p| {
                    self.sample_chain(&d, x, opts, chain, p)
                })
            })
        })
    }
}

/// A whole diffusion model as the trainer, the checkpoints and the commands see it: the three
/// jobs above, each its own trait.
pub trait DiffusionNet: Build + Objective + Generate {}

impl<M: Build + Objective + Generate> DiffusionNet for M {}

/// Builds the U-Net a config describes for images of `shape` [C, H, W] with `out` outputs.
pub fn build_unet(
    cfg: &ExperimentConfig,
    shape: [usize; 3],
    out: usize,
    device: &Device,
) -> Result<UNet> {
    if shape[1] != shape[2] {
        return Err(Error::Invalid(format!(
            "images must be square, got {}x{}",
            shape[1], shape[2]
        )));
    }
    cfg.unet.init(shape[0], shape[1], out, device)
}

impl Build for UNet {
    const KIND: ModelKind = ModelKind::Ddgm;

    fn process(cfg: &ExperimentConfig) -> Result<GaussianDiffusion> {
        cfg.diffusion.process()
    }

    fn build(
        cfg: &ExperimentConfig,
        d: &GaussianDiffusion,
        shape: [usize; 3],
        device: &Device,
    ) -> Result<Self> {
        build_unet(cfg, shape, d.model_out_channels(shape[0]), device)
    }
}

impl Objective for UNet {
    fn losses(
        &self,
        cfg: &ExperimentConfig,
        d: &GaussianDiffusion,
        x0: Tensor<4>,
        ts: &[usize],
        eps: Tensor<4>,
    ) -> LossTerms {
        let xt = d.q_sample(x0.clone(), ts, eps.clone());
        let out = self.forward(xt.clone(), &d.model_timesteps_f32(ts));
        d.training_losses(cfg.diffusion.loss, out, x0, xt, ts, eps)
    }

    fn vlb_probe(
        &self,
        d: &GaussianDiffusion,
        x0: Tensor<4>,
        ts: &[usize],
        eps: Tensor<4>,
    ) -> Option<Tensor<1>> {
        let xt = d.q_sample(x0.clone(), ts, eps);
        let out = self.forward(xt.clone(), &d.model_timesteps_f32(ts));
        Some(d.vb_terms_bpd(out, x0, xt, ts))
    }
}

impl Generate for UNet {
    fn num_classes(&self) -> Option<usize> {
        UNet::num_classes(self)
    }

    fn sample_chain(
        &self,
        d: &GaussianDiffusion,
        x: Tensor<4>,
        opts: &SampleOptions,
        chain: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Tensor<4> {
        let last = d.num_steps() - 1;
        match opts.class {
            Some(class) => {
                let model = crate::nn::WithClass { net: self, class };
                crate::sample::p_sample_loop_from(&model, d, x, last, opts, chain, progress)
            }
            None => crate::sample::p_sample_loop_from(self, d, x, last, opts, chain, progress),
        }
    }
}

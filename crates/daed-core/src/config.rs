//! Experiment configuration: one TOML file per experiment; every field has a default.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diffusion::loss::LossKind;
use crate::diffusion::step_sampler::StepSamplerKind;
use crate::diffusion::{
    BetaSchedule, GaussianDiffusion, ModelMeanType, ModelVarType, ScheduleSpec,
};
use crate::nn::UNetConfig;
use crate::precision::PrecisionChoice;
use crate::{Error, Result};

/// Which kind of model an experiment trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A plain DDGM: one epsilon U-Net over all T steps.
    Ddgm,
    /// DAED: a denoising auto-encoder for x1 -> x0 plus a diffusion generator (Section 4).
    Daed,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ddgm => "ddgm",
            Self::Daed => "daed",
        })
    }
}

/// How DAED is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DaedMode {
    /// Generator and DAE trained together; steps sampled by `dae-uniform` (or the config's).
    Joint,
    /// The generator is a trained DDGM (frozen); only the DAE is trained.
    TwoStage,
}

impl std::str::FromStr for DaedMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "joint" => Ok(DaedMode::Joint),
            "two-stage" | "two_stage" => Ok(DaedMode::TwoStage),
            _ => Err(Error::Invalid(format!(
                "unknown DAED mode `{s}`; valid: joint, two-stage"
            ))),
        }
    }
}

/// The DAE's objective (eq. 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DaeLoss {
    /// Gaussian with identity covariance: ||x0 - f(x1)||^2 (mean over pixels).
    Mse,
    /// Discretized Gaussian (256 bins) around f(x1) with variance beta1, in bits/dim.
    Discretized,
}

/// Checks that `value` (named `name` in the error) is a finite number >= 0.
pub fn non_negative(name: &str, value: f64) -> std::result::Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a finite number >= 0, got {value}"))
    }
}

/// Largest image side a run or checkpoint may declare.
pub const MAX_IMAGE_SIDE: usize = 4096;

/// Checks an image shape `[C, H, W]` from data or a file: 1 or 3 channels, sides in
/// 1..=[`MAX_IMAGE_SIDE`].
pub fn check_image_shape([c, h, w]: [usize; 3]) -> std::result::Result<(), String> {
    if !(c == 1 || c == 3) {
        return Err(format!("image_shape has {c} channels (1 or 3 expected)"));
    }
    if !(1..=MAX_IMAGE_SIDE).contains(&h) || !(1..=MAX_IMAGE_SIDE).contains(&w) {
        return Err(format!(
            "image_shape {h}x{w} is out of range (sides from 1 to {MAX_IMAGE_SIDE})"
        ));
    }
    Ok(())
}

/// Which process a DAED runs over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DaedProcess {
    /// daed's: the DAE at beta1, then the DDGM's own steps from the switch index k (where
    /// alpha-bar is closest to 1 - beta1) on, so a trained DDGM is the generator.
    #[default]
    Switch,
    /// The paper code's `linear_combine` schedule: the linear schedule over `diffusion.steps`
    /// with its first beta replaced by beta1 (the DAE at step 0, the generator at 1..T-1).
    LinearCombine,
}

/// DAED settings (used when `model = "daed"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaedConfig {
    /// Noise level of the DAE's corruption q(x1 | x0) = N(sqrt(1 - beta1) x0, beta1 I).
    pub beta1: f64,
    /// `joint` (both networks in one run) or `two-stage` (DAE on top of a trained DDGM).
    pub mode: DaedMode,
    /// The DDGM checkpoint (or run directory) whose EMA weights are the generator (two-stage).
    pub ddgm: Option<PathBuf>,
    /// The DAE's objective: `mse` or `discretized` (eq. 9).
    pub dae_loss: DaeLoss,
    /// The process: `switch` (daed's, over a DDGM's schedule) or `linear-combine` (the
    /// paper's code).
    pub process: DaedProcess,
}

impl Default for DaedConfig {
    fn default() -> Self {
        Self {
            beta1: 0.1,
            mode: DaedMode::Joint,
            ddgm: None,
            dae_loss: DaeLoss::Mse,
            process: DaedProcess::Switch,
        }
    }
}

/// A whole experiment: data, diffusion, network, training and sampling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// A name for the run (used in the default output directory).
    pub name: String,
    /// Device: `auto`, `flex`, `torch`, `cuda` or `cuda:N`.
    pub device: String,
    /// `ddgm` or `daed`.
    pub model: ModelKind,
    /// Training data.
    pub data: DataConfig,
    /// The diffusion process and objective.
    pub diffusion: DiffusionConfig,
    /// The U-Net.
    pub unet: UNetConfig,
    /// The training loop.
    pub train: TrainConfig,
    /// Sampling defaults (also used for the grids written during training).
    pub sample: SampleConfig,
    /// DAED settings (when `model = "daed"`); [diffusion] then describes the DDGM schedule the
    /// split is taken from.
    pub daed: DaedConfig,
}

/// Which data to train on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset name: fashion-mnist, mnist, cifar10, cifar100, celeba, folder, demo.
    pub dataset: String,
    /// A file or directory holding it (else DAED_DATA, ./data, ../shared/data, system dirs).
    pub path: Option<PathBuf>,
    /// `train` or `test`.
    pub split: String,
    /// Use only the first N images.
    pub limit: Option<usize>,
    /// Centre-crop size for CelebA before resizing to 64x64.
    pub celeba_crop: u32,
}

/// The diffusion process and the objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionConfig {
    /// Number of diffusion steps T (`diffusion_steps`).
    pub steps: usize,
    /// `linear` or `cosine` (`noise_schedule`).
    pub schedule: BetaSchedule,
    /// First beta of the linear schedule, before scaling by 1000/T (improved-diffusion 1e-4;
    /// the paper's code 1e-3).
    pub beta_start: f64,
    /// Last beta of the linear schedule, before scaling.
    pub beta_end: f64,
    /// Scale the linear schedule's ends by 1000/T.
    pub scale_betas: bool,
    /// `simple`, `vlb` (`use_kl`) or `hybrid`.
    pub loss: LossKind,
    /// Learn the variance (`learn_sigma`): the model outputs 2C channels.
    pub learn_sigma: bool,
    /// Fixed variance when not learned: `fixed-small` (beta-tilde) or `fixed-large` (beta).
    pub sigma: ModelVarType,
    /// `uniform`, `beta-weighted` or `loss-second-moment` (`schedule_sampler`).
    pub step_sampler: StepSamplerKind,
    /// Feed the network t * 1000 / T instead of t (improved-diffusion's `rescale_timesteps`,
    /// needed by its public T = 4000 models).
    pub rescale_timesteps: bool,
    /// The network predicts x0 instead of epsilon (`predict_xstart`).
    pub predict_xstart: bool,
}

/// The training loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Number of optimiser steps.
    pub steps: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Split each batch into micro-batches of this size and accumulate the gradients (same
    /// update, less memory; 0 = the whole batch at once).
    pub micro_batch: usize,
    /// Data-parallel training: the devices that share each batch (`["cuda:0", "cuda:1"]`; the
    /// first holds the weights and the optimiser); empty = the run's `device` alone. Each device
    /// takes a contiguous part of the batch (in micro-batches of `micro_batch`) and the
    /// gradients are summed on the first: the same update as one device.
    pub devices: Vec<String>,
    /// Arithmetic of the training steps: "f32" or "bf16" (mixed precision on CPUs with
    /// AVX512-BF16, flex only; see `daed_core::precision`).
    pub precision: PrecisionChoice,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Anneal the learning rate linearly to 0 over `steps` (`lr_anneal_steps`).
    pub lr_anneal: bool,
    /// With `lr_anneal`: anneal over the last N steps only; the learning rate is `lr` until
    /// `steps - N` and falls linearly to 0 at `steps` (0, or N >= steps: the whole run).
    pub lr_anneal_last: u64,
    /// Clip the global gradient norm (0 = off; improved-diffusion does not clip).
    pub grad_clip: f64,
    /// EMA rate (`ema_rate`).
    pub ema_rate: f64,
    /// Seed of every random choice (data order, steps, noise, dropout).
    pub seed: u64,
    /// Write a log line every N steps.
    pub log_every: u64,
    /// Write a checkpoint every N steps (and at the end).
    pub checkpoint_every: u64,
    /// Keep the newest N checkpoints (0 = all).
    pub keep_checkpoints: usize,
    /// Write a sample grid every N steps (0 = only at the end).
    pub sample_every: u64,
    /// Record the VLB term at `dynamics_points` steps on a fixed batch every N steps into
    /// `dynamics.jsonl` (0 = off; Figure 13; DDGM only).
    pub dynamics_every: u64,
    /// Number of diffusion steps probed (log-spaced from t = 1 to T).
    pub dynamics_points: usize,
    /// Images in the fixed probe batch.
    pub dynamics_batch: usize,
    /// Output directory of the run (default runs/<name>).
    pub out_dir: Option<PathBuf>,
}

/// Sampling defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    /// Number of images.
    pub n: usize,
    /// Respacing (`timestep_respacing`): "" = all T steps, "50", "10,15,20" or "ddim50".
    pub respacing: String,
    /// Use DDIM updates (with `eta`) instead of ancestral ones.
    pub ddim: bool,
    /// DDIM eta (0 = deterministic).
    pub eta: f64,
    /// Sample from the EMA weights.
    pub use_ema: bool,
    /// Clip the x0 estimate to [-1, 1] at every step.
    pub clip_denoised: bool,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Seed of the initial noise and every step's noise.
    pub seed: u64,
    /// Arithmetic of the sampling passes (also the training grids): "f32" or "bf16" (see
    /// `train.precision`).
    pub precision: PrecisionChoice,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            name: "experiment".into(),
            device: "auto".into(),
            model: ModelKind::Ddgm,
            data: DataConfig::default(),
            diffusion: DiffusionConfig::default(),
            unet: UNetConfig::default(),
            train: TrainConfig::default(),
            sample: SampleConfig::default(),
            daed: DaedConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "fashion-mnist".into(),
            path: None,
            split: "train".into(),
            limit: None,
            celeba_crop: 140,
        }
    }
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            schedule: BetaSchedule::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            scale_betas: true,
            loss: LossKind::Simple,
            learn_sigma: false,
            sigma: ModelVarType::FixedLarge,
            step_sampler: StepSamplerKind::Uniform,
            rescale_timesteps: false,
            predict_xstart: false,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100_000,
            batch_size: 128,
            micro_batch: 0,
            devices: Vec::new(),
            precision: PrecisionChoice::F32,
            lr: 1e-4,
            weight_decay: 0.0,
            lr_anneal: false,
            lr_anneal_last: 0,
            grad_clip: 0.0,
            ema_rate: 0.9999,
            seed: 0,
            log_every: 100,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            sample_every: 0,
            dynamics_every: 0,
            dynamics_points: 20,
            dynamics_batch: 16,
            out_dir: None,
        }
    }
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            n: 64,
            respacing: String::new(),
            ddim: false,
            eta: 0.0,
            use_ema: true,
            clip_denoised: true,
            batch_size: 64,
            seed: 0,
            precision: PrecisionChoice::F32,
        }
    }
}

impl DiffusionConfig {
    /// The schedule this config describes.
    pub fn schedule_spec(&self) -> ScheduleSpec {
        ScheduleSpec {
            kind: self.schedule,
            steps: self.steps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            scale_to_steps: self.scale_betas,
        }
    }
    /// What the network predicts (`predict_xstart`).
    pub fn mean_type(&self) -> ModelMeanType {
        if self.predict_xstart {
            ModelMeanType::StartX
        } else {
            ModelMeanType::Epsilon
        }
    }

    /// The DDGM's diffusion process: the schedule, variance, prediction and timestep scaling.
    pub fn process(&self) -> Result<GaussianDiffusion> {
        Ok(
            GaussianDiffusion::new(&self.schedule_spec(), self.var_type())?.with_model_io(
                self.mean_type(),
                self.rescale_timesteps,
                self.steps,
            ),
        )
    }

    /// The variance type implied by `learn_sigma` and `sigma`.
    pub fn var_type(&self) -> ModelVarType {
        if self.learn_sigma {
            ModelVarType::LearnedRange
        } else {
            self.sigma
        }
    }
}

impl ExperimentConfig {
    /// The names of the devices that train this run: `train.devices`, or `device` alone. The
    /// first holds the weights.
    pub fn training_device_names(&self) -> &[String] {
        match self.train.devices.is_empty() {
            true => std::slice::from_ref(&self.device),
            false => &self.train.devices,
        }
    }

    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| Error::Config {
            origin: origin.into(),
            msg: e.to_string(),
        })?;
        cfg.validate().map_err(|e| match e {
            Error::Invalid(msg) => Error::Config {
                origin: origin.into(),
                msg,
            },
            other => Error::Config {
                origin: origin.into(),
                msg: other.to_string(),
            },
        })?;
        Ok(cfg)
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// The run directory.
    pub fn run_dir(&self) -> PathBuf {
        self.train
            .out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(&self.name))
    }

    /// The first section in which `other` would train a different model than `self` (`data`,
    /// `diffusion`, `unet`, `train.seed`, `train.batch_size`, then `model`/`daed`, with the
    /// DAED's DDGM compared as the same directory however it is spelled); None when the same.
    pub fn run_difference(&self, other: &Self) -> Option<&'static str> {
        let canon = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| std::fs::canonicalize(p).unwrap_or(p.clone()))
        };
        let daed = |c: &Self| DaedConfig {
            ddgm: canon(&c.daed.ddgm),
            ..c.daed.clone()
        };
        [
            ("data", self.data == other.data),
            ("diffusion", self.diffusion == other.diffusion),
            ("unet", self.unet == other.unet),
            ("train.seed", self.train.seed == other.train.seed),
            (
                "train.batch_size",
                self.train.batch_size == other.train.batch_size,
            ),
            (
                "model",
                self.model == other.model && daed(self) == daed(other),
            ),
        ]
        .into_iter()
        .find_map(|(name, same)| (!same).then_some(name))
    }

    /// The checks that need the data's image shape `[C, H, W]` (known once the data is read):
    /// the network's levels and attention placement.
    pub fn validate_for_shape(&self, shape: [usize; 3]) -> Result<()> {
        check_image_shape(shape).map_err(Error::Invalid)?;
        self.unet.validate(shape[1].max(shape[2]))
    }

    /// Range checks; each error names its key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        self.diffusion.schedule_spec().validate()?;
        if self.diffusion.loss == LossKind::Hybrid && !self.diffusion.learn_sigma {
            return bad("diffusion.loss = \"hybrid\" needs diffusion.learn_sigma = true".into());
        }
        if self.model == ModelKind::Daed && self.diffusion.predict_xstart {
            return bad(
                "diffusion.predict_xstart is not supported with model = \"daed\" (its DAE \
                 predicts epsilon)"
                    .into(),
            );
        }
        let t = &self.train;
        if t.batch_size == 0 {
            return bad("train.batch_size must be at least 1".into());
        }
        if t.devices.len() > t.batch_size {
            return bad(format!(
                "train.devices: {} devices share a batch of {} (train.batch_size): each needs at \
                 least one image",
                t.devices.len(),
                t.batch_size
            ));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad(format!("train.lr must be positive, got {}", t.lr));
        }
        if t.lr_anneal_last > 0 && !t.lr_anneal {
            return bad(format!(
                "train.lr_anneal_last = {} needs train.lr_anneal = true",
                t.lr_anneal_last
            ));
        }
        non_negative("train.weight_decay", t.weight_decay).map_err(Error::Invalid)?;
        non_negative("train.grad_clip (0 = off)", t.grad_clip).map_err(Error::Invalid)?;
        if !(0.0..1.0).contains(&t.ema_rate) {
            return bad(format!(
                "train.ema_rate must be in [0, 1), got {}",
                t.ema_rate
            ));
        }
        if t.log_every == 0 || t.checkpoint_every == 0 {
            return bad("train.log_every and train.checkpoint_every must be at least 1".into());
        }
        let s = &self.sample;
        if s.batch_size == 0 || s.n == 0 {
            return bad("sample.n and sample.batch_size must be at least 1".into());
        }
        non_negative("sample.eta", s.eta).map_err(Error::Invalid)?;
        if !["train", "test"].contains(&self.data.split.as_str()) {
            return bad(format!(
                "data.split must be train or test, got `{}`",
                self.data.split
            ));
        }
        self.data
            .dataset
            .parse::<daed_io::datasets::DatasetName>()
            .map_err(|e| Error::Invalid(format!("data.dataset: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = ExperimentConfig::from_toml("[train]\nbatch_sise = 3\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("batch_sise"), "{e}");
        let e = ExperimentConfig::from_toml("[train]\nlr = -1.0\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.lr"), "{e}");
        let e = ExperimentConfig::from_toml("[diffusion]\nschedule = \"quadratic\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("quadratic"), "{e}");
        let e = ExperimentConfig::from_toml("[train]\nema_rate = 1.5\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.ema_rate"), "{e}");
    }

    #[test]
    fn round_trip_and_every_shipped_config_parses() {
        let c = ExperimentConfig::default();
        assert_eq!(ExperimentConfig::from_toml(&c.to_toml(), "rt").unwrap(), c);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                ExperimentConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 2, "configs/ holds the presets");
    }
}

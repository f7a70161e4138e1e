//! The flags of improved-diffusion's and the paper code's (analysing_ddgm's) scripts, read as
//! their argparse reads them (each repo's own defaults for what is not given), and the daed
//! config they describe.
use std::collections::BTreeMap;

use crate::config::{DaedMode, DaedProcess, ExperimentConfig, ModelKind};
use crate::diffusion::loss::LossKind;
use crate::diffusion::step_sampler::StepSamplerKind;
use crate::diffusion::{BetaSchedule, ModelVarType};
use crate::nn::{AttentionOrder, LabelConditioning};
use crate::{Error, Result};

/// The PyTorch code base a checkpoint comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repo {
    /// openai/improved-diffusion.
    ImprovedDiffusion,
    /// KamilDeja/analysing_ddgm, the paper's guided-diffusion fork.
    AnalysingDdgm,
}

impl Repo {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Repo::ImprovedDiffusion => "improved-diffusion",
            Repo::AnalysingDdgm => "analysing-ddgm",
        }
    }

    /// The model and diffusion flags with the repo's defaults (`model_and_diffusion_defaults`;
    /// `channel_mult` is a daed extension for improved-diffusion, whose `create_model` picks it
    /// from the image size).
    fn defaults(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Repo::ImprovedDiffusion => &[
                ("image_size", "64"),
                ("num_channels", "128"),
                ("num_res_blocks", "2"),
                ("num_heads", "4"),
                ("num_heads_upsample", "-1"),
                ("attention_resolutions", "16,8"),
                ("dropout", "0.0"),
                ("learn_sigma", "False"),
                ("sigma_small", "False"),
                ("class_cond", "False"),
                ("diffusion_steps", "1000"),
                ("noise_schedule", "linear"),
                ("timestep_respacing", ""),
                ("use_kl", "False"),
                ("predict_xstart", "False"),
                ("rescale_timesteps", "True"),
                ("rescale_learned_sigmas", "True"),
                ("use_checkpoint", "False"),
                ("use_scale_shift_norm", "True"),
                ("channel_mult", ""),
            ],
            Repo::AnalysingDdgm => &[
                ("image_size", "32"),
                ("in_channels", "3"),
                ("num_channels", "128"),
                ("num_res_blocks", "2"),
                ("num_heads", "4"),
                ("num_heads_upsample", "-1"),
                ("num_head_channels", "-1"),
                ("attention_resolutions", "16,8"),
                ("channel_mult", ""),
                ("dropout", "0.0"),
                ("class_cond", "False"),
                ("num_classes", "None"),
                ("use_checkpoint", "False"),
                ("use_scale_shift_norm", "True"),
                ("resblock_updown", "False"),
                ("use_fp16", "False"),
                ("use_new_attention_order", "False"),
                ("model_name", "UNetModel"),
                ("model_switching_timestep", "30"),
                ("use_lap_loss", "False"),
                ("noise_marg_reg", "False"),
                ("learn_sigma", "False"),
                ("diffusion_steps", "1000"),
                ("noise_schedule", "linear"),
                ("first_step_beta", "None"),
                ("timestep_respacing", ""),
                ("use_kl", "False"),
                ("predict_xstart", "False"),
                ("rescale_timesteps", "False"),
                ("rescale_learned_sigmas", "False"),
            ],
        }
    }

    /// The channel multipliers the repo's `create_model` picks for an image size (None: it
    /// has none and needs `channel_mult`).
    pub fn default_channel_mult(self, size: usize) -> Option<&'static [usize]> {
        match (self, size) {
            (_, 256) => Some(&[1, 1, 2, 2, 4, 4]),
            (Repo::AnalysingDdgm, 128) => Some(&[1, 1, 2, 3, 4]),
            (_, 64) => Some(&[1, 2, 3, 4]),
            (_, 32) => Some(&[1, 2, 2, 2]),
            (Repo::AnalysingDdgm, 28) => Some(&[1, 2, 2]),
            _ => None,
        }
    }

    /// Flags of the repo's training and sampling scripts that daed reads (`lr`, ...) or that do
    /// not change the model (`log_interval`, ...): accepted, the first kind used.
    fn script_flags(self) -> &'static [&'static str] {
        const COMMON: &[&str] = &[
            "data_dir",
            "schedule_sampler",
            "lr",
            "weight_decay",
            "lr_anneal_steps",
            "batch_size",
            "microbatch",
            "ema_rate",
            "log_interval",
            "save_interval",
            "resume_checkpoint",
            "fp16_scale_growth",
            "clip_denoised",
            "num_samples",
            "use_ddim",
            "model_path",
        ];
        const PAPER: &[&str] = &[
            "seed",
            "wandb_api_key",
            "experiment_name",
            "dataroot",
            "dataset",
            "alpha",
            "beta",
            "snr_log_interval",
            "num_points_plot",
            "skip_save",
            "plot_interval",
            "gpu_id",
            "reverse",
            "dirichlet",
            "num_tasks",
            "limit_classes",
            "random_split",
            "train_aug",
            "limit_data",
            "num_steps",
            "scheduler_rate",
            "use_task_index",
            "skip_validation",
            "n_examples_validation",
            "validation_interval",
            "validate_on_train",
            "use_gpu_for_validation",
            "n_generated_examples_per_task",
            "first_task_num_steps",
            "skip_gradient_thr",
            "generate_previous_examples_at_start_of_new_task",
            "generate_previous_samples_continuously",
            "load_model_path",
            "load_pretrained_for_dae",
            "dae_path",
            "old_repo_compatible",
            "learn_sigma_1",
            "learn_sigma_2",
        ];
        match self {
            Repo::ImprovedDiffusion => COMMON,
            Repo::AnalysingDdgm => {
                static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
                ALL.get_or_init(|| COMMON.iter().chain(PAPER).copied().collect())
            }
        }
    }
}

impl std::str::FromStr for Repo {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "improved-diffusion" => Ok(Repo::ImprovedDiffusion),
            "analysing-ddgm" => Ok(Repo::AnalysingDdgm),
            _ => Err(Error::Invalid(format!(
                "unknown code base `{s}`; valid: improved-diffusion, analysing-ddgm"
            ))),
        }
    }
}

/// Splits a flags string as a POSIX shell would for these flags: whitespace separates, single
/// and double quotes group (`--attention_resolutions "16,8"`, `--timestep_respacing ''`).
pub fn split_words(text: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for ch in text.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::Invalid(format!(
            "--flags: unterminated quote in `{text}`"
        )));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A repo's flags after parsing: every model and diffusion flag (given or default), plus the
/// script flags that were given.
#[derive(Clone, Debug)]
pub struct TorchFlags {
    /// The code base.
    pub repo: Repo,
    values: BTreeMap<String, String>,
    given: Vec<String>,
}

impl TorchFlags {
    /// Parses `--key value` / `--key=value` pairs; an unknown flag is an error naming it.
    pub fn parse(repo: Repo, text: &str) -> Result<Self> {
        let mut values: BTreeMap<String, String> = repo
            .defaults()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut given = Vec::new();
        let words = split_words(text)?;
        let mut it = words.into_iter();
        while let Some(w) = it.next() {
            let Some(flag) = w.strip_prefix("--") else {
                return Err(Error::Invalid(format!(
                    "--flags: expected a `--name value` pair, found `{w}`"
                )));
            };
            let (key, value) = match flag.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = it.next().ok_or_else(|| {
                        Error::Invalid(format!("--flags: `--{flag}` has no value"))
                    })?;
                    (flag.to_string(), v)
                }
            };
            if !values.contains_key(&key) && !repo.script_flags().contains(&key.as_str()) {
                return Err(Error::Invalid(format!(
                    "--flags: `--{key}` is not a flag of {}'s scripts (model and diffusion flags: \
                     {})",
                    repo.name(),
                    repo.defaults()
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            given.push(key.clone());
            values.insert(key, value);
        }
        Ok(Self {
            repo,
            values,
            given,
        })
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn bad(&self, key: &str, what: &str) -> Error {
        Error::Invalid(format!(
            "--flags: `--{key} {}` {what}",
            self.raw(key).unwrap_or("")
        ))
    }

    /// A boolean flag as improved-diffusion's `str2bool` reads it.
    fn bool(&self, key: &str) -> Result<bool> {
        match self.raw(key).map(str::to_ascii_lowercase).as_deref() {
            Some("yes" | "true" | "t" | "y" | "1") => Ok(true),
            Some("no" | "false" | "f" | "n" | "0") | None => Ok(false),
            _ => Err(self.bad(key, "is not a boolean (True or False)")),
        }
    }

    fn int(&self, key: &str) -> Result<i64> {
        self.raw(key)
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| self.bad(key, "is not an integer"))
    }

    fn count(&self, key: &str) -> Result<usize> {
        match self.int(key)? {
            n if n >= 1 => Ok(n as usize),
            _ => Err(self.bad(key, "must be at least 1")),
        }
    }

    /// An optional count: -1 (or None) means unset.
    fn opt_count(&self, key: &str) -> Result<Option<usize>> {
        match self.raw(key) {
            None | Some("None") => Ok(None),
            _ if self.int(key)? == -1 => Ok(None),
            _ => self.count(key).map(Some),
        }
    }

    fn float(&self, key: &str) -> Result<f64> {
        self.raw(key)
            .unwrap_or("")
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.bad(key, "is not a number"))
    }

    fn was_given(&self, key: &str) -> bool {
        self.given.iter().any(|k| k == key)
    }

    /// The image shape `[C, H, W]` the network is for.
    pub fn image_shape(&self) -> Result<[usize; 3]> {
        let s = self.count("image_size")?;
        let c = match self.repo {
            Repo::ImprovedDiffusion => 3,
            Repo::AnalysingDdgm => self.count("in_channels")?,
        };
        Ok([c, s, s])
    }

    /// The channel multipliers: given, or the repo's rule by image size.
    fn channel_mult(&self, size: usize) -> Result<Vec<usize>> {
        let text = self.raw("channel_mult").unwrap_or("");
        if !text.trim().is_empty() {
            return text
                .split(',')
                .map(|m| m.trim().parse::<usize>().ok().filter(|&m| m > 0))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    self.bad("channel_mult", "must be positive integers, e.g. 1,2,2,2")
                });
        }
        self.repo
            .default_channel_mult(size)
            .map(<[usize]>::to_vec)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "--flags: {} has no channel_mult for image_size {size}: give --channel_mult",
                    self.repo.name()
                ))
            })
    }

    /// The daed config these flags describe, for images of [`image_shape`](Self::image_shape).
    pub fn to_config(&self) -> Result<ExperimentConfig> {
        for (key, what) in [
            ("resblock_updown", "residual up/downsampling"),
            ("use_lap_loss", "the Laplacian loss"),
            ("noise_marg_reg", "the noise-marginal regulariser"),
        ] {
            if self.raw(key).is_some() && self.bool(key)? {
                return Err(self.bad(key, &format!("({what}) is not supported by daed")));
            }
        }
        let [_, size, _] = self.image_shape()?;
        let mut cfg = ExperimentConfig::default();
        self.unet(&mut cfg, size)?;
        self.diffusion(&mut cfg)?;
        self.model(&mut cfg)?;
        self.training(&mut cfg)?;
        cfg.validate()?;
        cfg.unet.validate(size)?;
        Ok(cfg)
    }

    fn unet(&self, cfg: &mut ExperimentConfig, size: usize) -> Result<()> {
        let u = &mut cfg.unet;
        u.model_channels = self.count("num_channels")?;
        u.num_res_blocks = usize::try_from(self.int("num_res_blocks")?)
            .map_err(|_| self.bad("num_res_blocks", "must be 0 or more"))?;
        u.channel_mult = self.channel_mult(size)?;
        u.attention_resolutions = self
            .raw("attention_resolutions")
            .unwrap_or("")
            .split(',')
            .filter(|r| !r.trim().is_empty())
            .map(|r| r.trim().parse::<usize>().ok().filter(|&r| r > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.bad("attention_resolutions", "must be positive integers"))?;
        u.num_heads = self.count("num_heads")?;
        u.num_heads_upsample = self.opt_count("num_heads_upsample")?;
        u.num_head_channels = match self.repo {
            Repo::AnalysingDdgm => self.opt_count("num_head_channels")?,
            Repo::ImprovedDiffusion => None,
        };
        u.attention_order = match self.repo {
            Repo::AnalysingDdgm if self.bool("use_new_attention_order")? => AttentionOrder::New,
            _ => AttentionOrder::Legacy,
        };
        u.dropout = self.float("dropout")?;
        u.use_scale_shift_norm = self.bool("use_scale_shift_norm")?;
        u.num_classes = match (self.bool("class_cond")?, self.repo) {
            (false, _) => None,
            // improved-diffusion's NUM_CLASSES.
            (true, Repo::ImprovedDiffusion) => Some(1000),
            (true, Repo::AnalysingDdgm) => {
                Some(self.opt_count("num_classes")?.ok_or_else(|| {
                    self.bad("num_classes", "must be given with --class_cond True")
                })?)
            }
        };
        // The paper code appends the one-hot class to a shorter time embedding.
        if self.repo == Repo::AnalysingDdgm {
            u.label_conditioning = LabelConditioning::OneHot;
        }
        Ok(())
    }

    fn diffusion(&self, cfg: &mut ExperimentConfig) -> Result<()> {
        let d = &mut cfg.diffusion;
        d.steps = self.count("diffusion_steps")?;
        let schedule = self.raw("noise_schedule").unwrap_or("linear");
        d.schedule = match schedule {
            "linear" | "linear_combine" => BetaSchedule::Linear,
            "cosine" => BetaSchedule::Cosine,
            _ => return Err(self.bad("noise_schedule", "is not linear, cosine or linear_combine")),
        };
        match self.repo {
            // improved-diffusion: 1e-4 .. 0.02, scaled by 1000 / T.
            Repo::ImprovedDiffusion => {
                d.beta_start = 1e-4;
                d.beta_end = 0.02;
                d.scale_betas = true;
            }
            // The paper's code: 1e-3 .. 0.02 scaled by 1000 / T; below 10 steps 0.01 .. 0.02
            // scaled by 100 / T.
            Repo::AnalysingDdgm if d.steps < 10 => {
                let scale = 100.0 / d.steps as f64;
                d.beta_start = scale * 0.01;
                d.beta_end = scale * 0.02;
                d.scale_betas = false;
            }
            Repo::AnalysingDdgm => {
                d.beta_start = 1e-3;
                d.beta_end = 0.02;
                d.scale_betas = true;
            }
        }
        d.learn_sigma = self.bool("learn_sigma")?;
        d.sigma = if self.raw("sigma_small").is_some() && self.bool("sigma_small")? {
            ModelVarType::FixedSmall
        } else {
            ModelVarType::FixedLarge
        };
        d.loss = if self.bool("use_kl")? {
            LossKind::Vlb
        } else if d.learn_sigma {
            LossKind::Hybrid
        } else {
            LossKind::Simple
        };
        d.rescale_timesteps = self.bool("rescale_timesteps")?;
        d.predict_xstart = self.bool("predict_xstart")?;
        if self.was_given("schedule_sampler") {
            d.step_sampler = match self.raw("schedule_sampler").unwrap_or("") {
                "uniform" => StepSamplerKind::Uniform,
                "loss-second-moment" => StepSamplerKind::LossSecondMoment,
                "dae_uniform" | "uniform_dae" => StepSamplerKind::DaeUniform,
                "dae_only" => StepSamplerKind::OnlyDae,
                _ => return Err(self.bad("schedule_sampler", "is not a sampler daed has")),
            };
        }
        cfg.sample.respacing = self.raw("timestep_respacing").unwrap_or("").to_string();
        Ok(())
    }

    fn model(&self, cfg: &mut ExperimentConfig) -> Result<()> {
        let combine = self.raw("noise_schedule") == Some("linear_combine");
        let two_parts = match (self.repo, self.raw("model_name")) {
            (Repo::ImprovedDiffusion, _) | (_, Some("UNetModel")) => false,
            (_, Some("TwoPartsUNetModelDAE")) => true,
            _ => {
                return Err(self.bad(
                    "model_name",
                    "is not supported (daed imports UNetModel and TwoPartsUNetModelDAE)",
                ))
            }
        };
        if combine && !two_parts {
            return Err(self.bad(
                "noise_schedule",
                "(linear_combine) is the two-part DAED's schedule: it needs --model_name \
                 TwoPartsUNetModelDAE",
            ));
        }
        if !two_parts {
            cfg.model = ModelKind::Ddgm;
            return Ok(());
        }
        cfg.model = ModelKind::Daed;
        cfg.daed.mode = DaedMode::Joint;
        cfg.daed.process = DaedProcess::LinearCombine;
        cfg.daed.beta1 = if combine {
            match self.raw("first_step_beta") {
                None | Some("None") => {
                    return Err(self.bad("first_step_beta", "must be given with linear_combine"))
                }
                _ => self.float("first_step_beta")?,
            }
        } else {
            // A two-part model over the plain schedule: the DAE sits at its first beta.
            cfg.diffusion.schedule_spec().betas()[0]
        };
        Ok(())
    }

    fn training(&self, cfg: &mut ExperimentConfig) -> Result<()> {
        let t = &mut cfg.train;
        if self.was_given("lr") {
            t.lr = self.float("lr")?;
        }
        if self.was_given("weight_decay") {
            t.weight_decay = self.float("weight_decay")?;
        }
        if self.was_given("batch_size") {
            t.batch_size = self.count("batch_size")?;
        }
        if self.was_given("lr_anneal_steps") {
            t.lr_anneal = self.int("lr_anneal_steps")? > 0;
        }
        if self.was_given("ema_rate") {
            let first = self.raw("ema_rate").unwrap_or("").split(',').next();
            t.ema_rate = first
                .and_then(|r| r.trim().parse().ok())
                .ok_or_else(|| self.bad("ema_rate", "is not a rate"))?;
        }
        if self.was_given("seed") && self.raw("seed") != Some("None") {
            t.seed = self.int("seed")?.max(0) as u64;
        }
        if self.was_given("use_ddim") {
            cfg.sample.ddim = self.bool("use_ddim")?;
        }
        if self.was_given("clip_denoised") {
            cfg.sample.clip_denoised = self.bool("clip_denoised")?;
        }
        if self.was_given("dataset") {
            cfg.data.dataset = match self.raw("dataset").unwrap_or("") {
                "FashionMNIST" => "fashion-mnist",
                "MNIST" => "mnist",
                "CIFAR10" => "cifar10",
                "CIFAR100" => "cifar100",
                "CelebA" => "celeba",
                _ => return Err(self.bad("dataset", "is not a dataset daed reads")),
            }
            .into();
        }
        Ok(())
    }

    /// Whether `--dataset` was among the flags.
    pub fn names_dataset(&self) -> bool {
        self.was_given("dataset")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        let w = split_words("--a 1 --b \"16,8\" --c '' --d=x").unwrap();
        assert_eq!(w, ["--a", "1", "--b", "16,8", "--c", "", "--d=x"]);
        assert!(split_words("--a \"x").is_err());
    }

    #[test]
    fn the_readmes_cifar10_flags_give_improved_diffusions_model() {
        let f = TorchFlags::parse(
            Repo::ImprovedDiffusion,
            "--image_size 32 --num_channels 128 --num_res_blocks 3 --learn_sigma True \
             --dropout 0.3 --diffusion_steps 4000 --noise_schedule cosine",
        )
        .unwrap();
        let c = f.to_config().unwrap();
        assert_eq!(f.image_shape().unwrap(), [3, 32, 32]);
        assert_eq!(c.unet.channel_mult, vec![1, 2, 2, 2]);
        assert_eq!(c.unet.attention_resolutions, vec![16, 8]);
        assert!(c.diffusion.rescale_timesteps && c.diffusion.learn_sigma);
        assert_eq!(c.diffusion.loss, LossKind::Hybrid);
        assert_eq!(c.diffusion.schedule, BetaSchedule::Cosine);
    }

    #[test]
    fn the_papers_daed_flags_give_a_linear_combine_daed() {
        let f = TorchFlags::parse(
            Repo::AnalysingDdgm,
            "--experiment_name x --dataset FashionMNIST --num_channels 64 --num_res_blocks 3 \
             --learn_sigma False --dropout 0.3 --diffusion_steps 468 --noise_schedule \
             linear_combine --first_step_beta 0.1 --use_kl False --schedule_sampler dae_uniform \
             --lr 1e-4 --batch_size 128 --first_task_num_steps 100000 --model_name \
             TwoPartsUNetModelDAE --image_size 28 --in_channels 1",
        )
        .unwrap();
        let c = f.to_config().unwrap();
        assert_eq!(c.model, ModelKind::Daed);
        assert_eq!(c.daed.process, DaedProcess::LinearCombine);
        assert_eq!(c.daed.beta1, 0.1);
        assert_eq!(c.data.dataset, "fashion-mnist");
        assert!(!c.diffusion.rescale_timesteps);
        assert_eq!(c.diffusion.beta_start, 1e-3);
        assert_eq!(c.unet.channel_mult, vec![1, 2, 2]);
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = TorchFlags::parse(Repo::ImprovedDiffusion, "--num_chanels 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_chanels"), "{e}");
        let e = TorchFlags::parse(Repo::ImprovedDiffusion, "--learn_sigma maybe")
            .unwrap()
            .to_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("learn_sigma"), "{e}");
        let e = TorchFlags::parse(Repo::ImprovedDiffusion, "--image_size 48")
            .unwrap()
            .to_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("channel_mult"), "{e}");
    }
}

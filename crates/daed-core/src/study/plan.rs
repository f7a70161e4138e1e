//! What a study runs: a plan read from TOML. The scales (`micro`, `cpu`, `paper`) are plans kept
//! in `configs/study/` and compiled in, so a user can print one, copy it and edit it.
use serde::{Deserialize, Serialize};

use crate::analysis::switch::SwitchSettings;
use crate::config::{DaedMode, ExperimentConfig};
use crate::sample::SampleOptions;
use crate::{Error, Result};

/// A dataset's canonical name (the name itself when it is not one).
pub fn canonical_name(name: &str) -> String {
    name.parse::<daed_io::datasets::DatasetName>()
        .map_or_else(|_| name.to_string(), |d| d.as_str().to_string())
}

/// A preset plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Embedded data, tiny models, under two minutes: for tests and a first look.
    Micro,
    /// The best study two CPU cores allow in about an hour and three quarters.
    Cpu,
    /// The paper's own settings (Table 6, Appendix A.4): for a GPU.
    Paper,
}

impl std::str::FromStr for Scale {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "micro" => Ok(Scale::Micro),
            "cpu" => Ok(Scale::Cpu),
            "paper" => Ok(Scale::Paper),
            _ => Err(Error::Invalid(format!(
                "unknown scale `{s}`; valid: micro, cpu, paper"
            ))),
        }
    }
}

impl Scale {
    /// The preset's TOML text.
    pub fn toml(self) -> &'static str {
        match self {
            Scale::Micro => include_str!("../../../../configs/study/micro.toml"),
            Scale::Cpu => include_str!("../../../../configs/study/cpu.toml"),
            Scale::Paper => include_str!("../../../../configs/study/paper.toml"),
        }
    }

    /// The preset's plan.
    pub fn plan(self) -> Result<StudyPlan> {
        StudyPlan::from_toml(self.toml(), &format!("the {self:?} scale"))
    }
}

/// The DAEs of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaePlan {
    /// `two-stage` (a DAE on the DDGM: the paper's Figure 4) or `joint` (a DAED per beta1).
    pub mode: DaedMode,
    /// Training steps of each DAE (or joint DAED).
    pub steps: u64,
}

/// Reconstruction from step t (Figures 2 and 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconPlan {
    /// Images per dataset.
    pub n: usize,
    /// Steps on the grid.
    pub points: usize,
    /// The grid covers the first this fraction of T.
    pub until: f64,
}

/// Sampling and metrics of each model (Figure 4, Tables 1 and 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsPlan {
    /// Samples per model.
    pub n: usize,
    /// Training images used as the reference.
    pub reference_n: usize,
    /// Generator sampling steps (respacing); 0 = all.
    pub sample_steps: usize,
    /// Also sFID (Table 5).
    pub sfid: bool,
}

/// A whole study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyPlan {
    /// The preset's name, or the user's own.
    pub scale: String,
    /// Seed of every analysis's noise (the DDGM's training seed is `ddgm.train.seed`).
    pub seed: u64,
    /// Images per forward pass in the analyses and sampling.
    pub batch_size: usize,
    /// The DAEs' noise levels (Table 5: 0.001, 0.025, 0.1, 0.2, 0.3).
    pub beta1: Vec<f64>,
    /// The beta1 of the transfer table (Table 2: 0.1); one of `beta1`.
    pub transfer_beta1: f64,
    /// Other datasets, as `name` or `name:split` (reconstruction and transfer targets). One
    /// whose files are not at hand is left out with a note.
    pub targets: Vec<String>,
    /// Images per target in the transfer table.
    pub transfer_n: usize,
    /// Images in the per-step loss breakdown (Figure 14a).
    pub losses_n: usize,
    /// The DDGM trained when no `--ddgm` is given.
    pub ddgm: ExperimentConfig,
    /// The DAEs.
    pub dae: DaePlan,
    /// Reconstruction curves.
    pub recon: ReconPlan,
    /// Sampling and metrics.
    pub metrics: MetricsPlan,
}

impl StudyPlan {
    /// Parses a plan (`what` names it in errors).
    pub fn from_toml(text: &str, what: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Invalid(format!("{what}: {e}")))
    }

    /// Reads a plan file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The plan as TOML (what `--print-plan` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The plan for another dataset: the DDGM's data becomes `name` (the micro scale keeps its
    /// embedded Fashion-MNIST subset for `fashion-mnist`), and `name` leaves the targets.
    pub fn with_dataset(mut self, name: &str) -> Result<Self> {
        let parsed: daed_io::datasets::DatasetName = name.parse()?;
        let canonical = parsed.as_str().to_string();
        let embedded = canonical_name(&self.ddgm.data.dataset) == "fashion-mnist-demo";
        if !(embedded && canonical == "fashion-mnist") {
            self.ddgm.data.dataset = canonical.clone();
            if embedded {
                self.ddgm.data.limit = Some(2000);
            }
        }
        self.targets
            .retain(|t| canonical_name(t.split(':').next().unwrap_or_default()) != canonical);
        Ok(self)
    }

    /// The targets as (name, split).
    pub fn target_specs(&self) -> Vec<(String, String)> {
        self.targets
            .iter()
            .map(|t| match t.split_once(':') {
                Some((n, s)) => (n.trim().to_string(), s.trim().to_string()),
                None => (t.trim().to_string(), "test".to_string()),
            })
            .collect()
    }

    /// Every check that needs no data, before any work.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("study plan: {m}")));
        if self.beta1.is_empty() {
            return bad("beta1 is empty".into());
        }
        if let Some(b) = self.beta1.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
            return bad(format!("beta1 values must be in (0, 1), got {b}"));
        }
        if !self.beta1.contains(&self.transfer_beta1) {
            return bad(format!(
                "transfer_beta1 = {} is not one of beta1 {:?}",
                self.transfer_beta1, self.beta1
            ));
        }
        for (key, v) in [
            ("batch_size", self.batch_size),
            ("transfer_n", self.transfer_n),
            ("losses_n", self.losses_n),
            ("recon.n", self.recon.n),
            ("recon.points", self.recon.points),
        ] {
            if v == 0 {
                return bad(format!("{key} must be at least 1"));
            }
        }
        if !(self.recon.until > 0.0 && self.recon.until <= 1.0) {
            return bad(format!(
                "recon.until must be in (0, 1], got {}",
                self.recon.until
            ));
        }
        if self.dae.steps == 0 {
            return bad("dae.steps must be at least 1".into());
        }
        let mut seen = Vec::new();
        for (name, split) in self.target_specs() {
            name.parse::<daed_io::datasets::DatasetName>()
                .and_then(|_| split.parse::<daed_io::datasets::Split>())
                .map_err(|e| Error::Invalid(format!("study plan: targets: {e}")))?;
            let c = canonical_name(&name);
            if seen.contains(&c) {
                return bad(format!("targets: {c} is listed twice"));
            }
            seen.push(c);
        }
        self.ddgm.validate()?;
        self.switch_settings(std::path::Path::new("."), "flex")
            .validate()
    }

    /// The sweep's settings, with the DAE runs in `dir`.
    pub fn switch_settings(&self, dir: &std::path::Path, device: &str) -> SwitchSettings {
        let steps = (self.metrics.sample_steps > 0).then_some(self.metrics.sample_steps);
        SwitchSettings {
            beta1: self.beta1.clone(),
            dae_steps: self.dae.steps,
            n: self.metrics.n,
            reference_n: self.metrics.reference_n,
            sampling: SampleOptions::from_flags(steps, false, 0.0, self.seed)
                .unwrap_or_else(|_| SampleOptions::ancestral(self.seed)),
            batch_size: self.batch_size,
            device: device.to_string(),
            out: dir.to_path_buf(),
            mode: self.dae.mode,
            sfid: self.metrics.sfid,
        }
    }
}

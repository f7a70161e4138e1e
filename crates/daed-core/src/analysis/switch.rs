//! The switch-point sweep (paper Figures 4 and 5): on one trained DDGM, a DAE for each beta1
//! (two-stage), every model sampled from the same noise, scored with FID, precision and recall
//! against the training data, and placed by the log-SNR at its switch step.
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use daed_io::images::ImageSet;
use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{write_json, Table};
use serde::Serialize;

use crate::config::{DaeLoss, DaedMode, ModelKind};
use crate::daed::{switch_index, DaedNets};
use crate::metrics::evaluate::{
    compute_features, compute_metrics, MetricSet, SetFeatures, SetSummary,
};
use crate::metrics::{FidInception, Preprocess};
use crate::model::DiffusionNet;
use crate::sample::SampleOptions;
use crate::train::trainer::load_data;
use crate::train::{Checkpoint, Observer, Trainer};
use crate::{Error, Result};

/// What the sweep runs.
#[derive(Clone, Debug)]
pub struct SwitchSettings {
    /// The beta1 values, one DAE each.
    pub beta1: Vec<f64>,
    /// Training steps of each DAE (an existing DAE run with at least this many is reused).
    pub dae_steps: u64,
    /// Samples per model for the metrics.
    pub n: usize,
    /// Training images used as the reference.
    pub reference_n: usize,
    /// Sampling options (the same noise for every model).
    pub sampling: SampleOptions,
    /// Images per forward pass.
    pub batch_size: usize,
    /// The device name (auto, flex, cuda, ...).
    pub device: String,
    /// Where the DAE runs go (`DIR/dae_beta1_*`) and the outputs are written.
    pub out: PathBuf,
    /// `two-stage` (a DAE on the DDGM, the paper's sweep) or `joint` (a whole DAED per beta1,
    /// trained for `dae_steps` from scratch, in `DIR/daed_joint_beta1_*`).
    pub mode: DaedMode,
    /// Also compute sFID (Table 5).
    pub sfid: bool,
}

impl SwitchSettings {
    /// The sweep's metrics: FID and precision / recall (Figure 4), sFID on request (Table 5).
    pub fn metrics(&self) -> MetricSet {
        MetricSet {
            fid: true,
            sfid: self.sfid,
            is: false,
            pr: true,
            prd: false,
        }
    }

    /// The run directory of the DAE (or joint DAED) for `beta1`.
    pub fn dae_dir(&self, beta1: f64) -> PathBuf {
        match self.mode {
            DaedMode::TwoStage => self.out.join(format!("dae_beta1_{beta1}")),
            DaedMode::Joint => self.out.join(format!("daed_joint_beta1_{beta1}")),
        }
    }

    /// Checks the counts before any work.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.dae_steps == 0 {
            return Err(Error::Invalid(
                "--batch-size and --dae-steps must be at least 1".into(),
            ));
        }
        let set = |n| SetSummary {
            n,
            stats_only: false,
        };
        self.metrics()
            .check_sets(set(self.n), set(self.reference_n))?;
        if let Some(b) = self.beta1.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
            return Err(Error::Invalid(format!("beta1 must be in (0, 1), got {b}")));
        }
        self.sampling.validate()
    }
}

/// Progress of the sweep, for the caller to show.
pub trait SwitchProgress {
    /// The observer of one DAE's training.
    fn training(&mut self, beta1: f64, dir: &Path) -> Box<dyn Observer + '_>;
    /// `done` of `total` units of the stage `what` (sampling or features of one model).
    fn stage(&mut self, what: &str, done: usize, total: usize);
}

/// One model of the sweep: the DDGM itself (k = 0) or a DAED. (Fields in the order
/// `summary.json` has always written them.)
#[derive(Clone, Debug, Serialize)]
pub struct SwitchRow {
    /// The DAE's noise level (0 for the DDGM).
    pub beta1: f64,
    /// FID against the reference.
    pub fid: f64,
    /// sFID against the reference (when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sfid: Option<f64>,
    /// The switch step k (0 for the DDGM).
    pub k: usize,
    /// Mean log-SNR over the data at step k (None for the DDGM).
    pub log_snr: Option<f64>,
    /// `DDGM` or `beta1=B`.
    pub model: String,
    /// Improved precision.
    pub precision: f64,
    /// Improved recall.
    pub recall: f64,
    /// The samples (for the grids).
    #[serde(skip)]
    pub samples: ImageSet,
}

/// The sweep's result.
#[derive(Clone, Debug)]
pub struct SwitchStudy {
    /// The DDGM first, then one row per beta1.
    pub rows: Vec<SwitchRow>,
}

/// The two-stage DAED config for `beta1` on the DDGM `ck`, writing to `dir`.
fn dae_config(
    ck: &Checkpoint,
    b: f64,
    s: &SwitchSettings,
    dir: &Path,
) -> crate::config::ExperimentConfig {
    let mut cfg = ck.config.clone();
    cfg.name = format!("dae_beta1_{b}");
    cfg.model = ModelKind::Daed;
    cfg.daed.beta1 = b;
    cfg.daed.mode = s.mode;
    cfg.daed.ddgm = (s.mode == DaedMode::TwoStage).then(|| ck.dir.clone());
    cfg.daed.dae_loss = DaeLoss::Mse;
    cfg.train.steps = s.dae_steps;
    cfg.train.out_dir = Some(dir.to_path_buf());
    // Four checkpoints over the run: a DAE cut short resumes from the last one.
    cfg.train.checkpoint_every = (s.dae_steps / 4).max(1);
    cfg.train.sample_every = 0;
    cfg.sample.n = 16;
    cfg.sample.respacing = s.sampling.respacing.clone();
    cfg.device = s.device.clone();
    cfg
}

/// Refuses to reuse a DAE run made for another DDGM, beta1 or network.
fn same_dae(old: &Checkpoint, cfg: &crate::config::ExperimentConfig) -> Result<()> {
    if old.config.run_difference(cfg).is_none() {
        return Ok(());
    }
    Err(Error::ckpt(
        &old.dir,
        "holds a DAE made for another DDGM, beta1 or network than this sweep's: move it away or \
         write the sweep to another folder",
    ))
}

/// Trains the DAE for `b` unless a run with enough steps is there (a shorter one is resumed);
/// returns its directory.
pub fn ensure_dae(
    ck: &Checkpoint,
    b: f64,
    s: &SwitchSettings,
    data: &ImageSet,
    progress: &mut dyn SwitchProgress,
) -> Result<PathBuf> {
    let dir = s.dae_dir(b);
    let cfg = dae_config(ck, b, s, &dir);
    let mut t = match crate::train::checkpoint::list(&dir)?.last() {
        None => Trainer::<DaedNets>::new(cfg, data.clone())?,
        Some(_) => {
            let old = Checkpoint::open(&dir)?;
            same_dae(&old, &cfg)?;
            if old.state.step >= s.dae_steps {
                return Ok(dir);
            }
            Trainer::<DaedNets>::resume(cfg, data.clone(), &dir)?
        }
    };
    t.run(progress.training(b, &dir).as_mut())?;
    Ok(dir)
}

fn draw<M: DiffusionNet>(
    net: &M,
    d: &crate::diffusion::GaussianDiffusion,
    shape: [usize; 3],
    s: &SwitchSettings,
    device: &Device,
    what: &str,
    progress: &mut dyn SwitchProgress,
) -> Result<ImageSet> {
    let mut tick = |k, total| progress.stage(what, k, total);
    let imgs = net.sample(d, shape, s.n, s.batch_size, &s.sampling, device, &mut tick)?;
    Ok(ImageSet::from_f32(shape[0], shape[1], shape[2], &imgs))
}

fn features(
    net: &FidInception,
    set: &ImageSet,
    batch: usize,
    what: &str,
    progress: &mut dyn SwitchProgress,
) -> Result<SetFeatures> {
    let mut tick = |k, total| progress.stage(what, k, total);
    compute_features(
        net,
        Preprocess::PytorchFid,
        set,
        batch.min(50),
        true,
        false,
        &mut tick,
    )
}

/// The mean over the data of ln P(x0), from `daed_eval::snr::image_powers`.
pub fn mean_ln_power(powers: &[f64]) -> f64 {
    powers.iter().map(|x| x.ln()).sum::<f64>() / powers.len().max(1) as f64
}

/// Mean log-SNR over the data at step k: mean ln P(x0) + ln(abar_k / (1 - abar_k)).
pub fn mean_log_snr(mean_ln_p: f64, alphas_cumprod: &[f64], k: usize) -> f64 {
    let ab = alphas_cumprod[k - 1];
    mean_ln_p + (ab / (1.0 - ab)).ln()
}

/// Runs the sweep on the DDGM `ck` with the FID network `inception` (its weights named by
/// `weights` in messages).
pub fn run_switch(
    ck: &Checkpoint,
    inception: &FidInception,
    weights: &str,
    s: &SwitchSettings,
    progress: &mut dyn SwitchProgress,
) -> Result<SwitchStudy> {
    s.validate()?;
    if ck.config.model != ModelKind::Ddgm {
        return Err(Error::ckpt(&ck.dir, "the sweep needs a DDGM checkpoint"));
    }
    let device = crate::device::resolve(&s.device)?;
    let mut data_cfg = ck.config.clone();
    data_cfg.data.limit = None;
    let data = load_data(&data_cfg)?;
    // The DAEs train on the DDGM's own data: the set above unless the DDGM used a limit.
    let train_data = match ck.config.data.limit {
        None => data.clone(),
        Some(_) => load_data(&ck.config)?,
    };
    let shape = ck.state.image_shape;
    let (ddgm, d) = ck.load_unet(true, &device)?;
    let powers = daed_eval::snr::image_powers(&data);
    let mean_ln_p = mean_ln_power(&powers);
    let log_snr = |k: usize| mean_log_snr(mean_ln_p, &d.alphas_cumprod, k);
    let mut models = vec![(
        "DDGM".to_string(),
        0.0,
        0,
        draw(&ddgm, &d, shape, s, &device, "sample DDGM", progress)?,
    )];
    for &b in &s.beta1 {
        let dir = ensure_dae(ck, b, s, &train_data, progress)?;
        let (nets, dd) = Checkpoint::open(&dir)?.load_model::<DaedNets>(true, &device)?;
        let label = format!("beta1={b}");
        let samples = draw(
            &nets,
            &dd,
            shape,
            s,
            &device,
            &format!("sample {label}"),
            progress,
        )?;
        models.push((label, b, switch_index(&d.alphas_cumprod, b), samples));
    }
    let reference = data.take(s.reference_n);
    let ref_f = features(
        inception,
        &reference,
        s.batch_size,
        "inception reference",
        progress,
    )?;
    let mut rows = Vec::new();
    for (model, beta1, k, samples) in models {
        let what = format!("inception {model}");
        let f = features(inception, &samples, s.batch_size, &what, progress)?;
        let m = compute_metrics(&f, &ref_f, s.metrics(), weights)?;
        let pr = m.precision_recall.as_ref();
        rows.push(SwitchRow {
            model,
            beta1,
            k,
            log_snr: (k > 0).then(|| log_snr(k)),
            fid: m.fid.as_ref().map_or(f64::NAN, |x| x.value),
            sfid: m.sfid.as_ref().map(|x| x.value),
            precision: pr.map_or(f64::NAN, |x| x.precision),
            recall: pr.map_or(f64::NAN, |x| x.recall),
            samples,
        });
    }
    Ok(SwitchStudy { rows })
}

impl SwitchStudy {
    /// The table of `switch.csv` (an sFID column when it was computed).
    pub fn table(&self) -> Table {
        let with_sfid = self.rows.iter().any(|r| r.sfid.is_some());
        let mut head = vec!["beta1", "k", "log_snr", "fid", "precision", "recall"];
        if with_sfid {
            head.insert(4, "sfid");
        }
        let mut table = Table::new(head);
        for r in &self.rows {
            let mut row = vec![
                if r.k == 0 {
                    "ddgm".to_string()
                } else {
                    r.beta1.to_string()
                },
                r.k.to_string(),
                format!("{:.4}", r.log_snr.unwrap_or(f64::INFINITY)),
                format!("{:.3}", r.fid),
                format!("{:.4}", r.precision),
                format!("{:.4}", r.recall),
            ];
            if with_sfid {
                row.insert(4, format!("{:.3}", r.sfid.unwrap_or(f64::NAN)));
            }
            table.push(row);
        }
        table
    }

    /// FID against the log-SNR at the switch, the DDGM's FID as a dashed line (Figure 4).
    pub fn figure(&self) -> Figure {
        let daed: Vec<&SwitchRow> = self.rows.iter().filter(|r| r.k > 0).collect();
        Figure {
            panels: vec![Panel {
                title: "DAED: FID vs log-SNR at the switch".into(),
                x_label: "log SNR at the split".into(),
                y_label: "FID".into(),
                series: vec![Series {
                    name: "DAED".into(),
                    xs: daed.iter().filter_map(|r| r.log_snr).collect(),
                    ys: daed.iter().map(|r| r.fid).collect(),
                    band: None,
                }],
                log_y: false,
                hlines: self
                    .rows
                    .iter()
                    .filter(|r| r.k == 0)
                    .map(|r| r.fid)
                    .collect(),
            }],
            width: 800,
            height: 500,
        }
    }

    /// Writes `switch.csv`, `summary.json`, `switch.png` and `switch_grids.png` (16 samples of
    /// each model from the same noise, Figure 5) into `out`; returns their paths.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let paths = [
            "switch.csv",
            "summary.json",
            "switch.png",
            "switch_grids.png",
        ]
        .map(|f| out.join(f));
        self.table().write_csv(&paths[0])?;
        write_json(&paths[1], &self.rows)?;
        self.figure().save_png(&paths[2])?;
        let grids: Vec<(String, ImageSet)> = self
            .rows
            .iter()
            .map(|r| (r.model.clone(), r.samples.take(16)))
            .collect();
        let items: Vec<(&str, &ImageSet)> = grids.iter().map(|(l, s)| (l.as_str(), s)).collect();
        daed_io::grid::save_grids_side_by_side(&paths[3], &items, 4)?;
        Ok(paths.to_vec())
    }
}

//! `daed reproduce`: the paper's study in one run. A study is a fixed sequence of stages, one
//! module each (SNR, the DDGM, reconstruction, per-step losses, training dynamics, the DAEs,
//! the switch sweep, transfer, the suggested beta1), each writing its outputs and a stamp of
//! its inputs into `STUDY/<stage>/` (see [`record`]), then a report of all of them
//! ([`report`]). A rerun reuses every stage whose inputs are unchanged; an interrupted one
//! continues (training resumes from its latest checkpoint).
pub mod dae;
pub mod ddgm;
pub mod doc;
pub mod dynamics;
pub mod losses;
pub mod paper;
pub mod plan;
pub mod recon;
pub mod record;
pub mod report;
pub mod snr;
pub mod suggest;
pub mod sweep;
pub mod transfer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use daed_io::images::ImageSet;
use serde_json::Value;

pub use plan::{Scale, StudyPlan};
pub use record::{Provenance, StageRecord};

use crate::analysis::switch::SwitchProgress;
use crate::config::ExperimentConfig;
use crate::train::{Checkpoint, Observer};
use crate::{Error, Result};

/// What a study shows its user while it runs.
pub trait StudyProgress: SwitchProgress {
    /// Stage `index` (1-based) of `total` starts.
    fn stage_start(&mut self, index: usize, total: usize, name: &str, title: &str);
    /// A stage ended: reused from an earlier run, or run for `wall_s` seconds (or skipped).
    fn stage_end(&mut self, name: &str, reused: bool, wall_s: f64, skipped: Option<&str>);
    /// Something worth telling (a dataset left out, a conversion).
    fn note(&mut self, msg: &str);
    /// The observer of the DDGM's training.
    fn ddgm_training(&mut self) -> Box<dyn Observer + '_>;
}

/// How a study runs, besides its plan.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    /// The study folder.
    pub out: PathBuf,
    /// Device name (auto, flex, cuda, ...).
    pub device: String,
    /// A trained DDGM run or checkpoint to study instead of training one.
    pub ddgm: Option<PathBuf>,
    /// The FID Inception weights (None: the metrics stage is skipped, with the reason).
    pub inception: Option<PathBuf>,
    /// Tool and commit, recorded by every stage.
    pub provenance: Provenance,
}

/// Everything a stage may read: the plan, the study's options, the DDGM and the records of the
/// stages before it.
pub struct Ctx<'a> {
    /// The plan.
    pub plan: &'a StudyPlan,
    /// The options.
    pub opts: &'a StudyOptions,
    /// The resolved device.
    pub device: Device,
    /// The DDGM's run (or checkpoint) directory: `--ddgm`, or `STUDY/ddgm`.
    pub ddgm_dir: PathBuf,
    /// The DDGM's config (the plan's, or the imported run's).
    pub ddgm_cfg: ExperimentConfig,
    /// The other datasets at hand, each at most `max(recon.n, transfer_n)` images, unconverted.
    pub targets: Vec<(String, ImageSet)>,
    /// The records of the stages done so far, by name.
    pub records: BTreeMap<String, StageRecord>,
    /// Where the study shows its progress.
    pub progress: &'a mut dyn StudyProgress,
}

impl Ctx<'_> {
    /// The DDGM's latest checkpoint (after the `ddgm` stage).
    pub fn ddgm(&self) -> Result<Checkpoint> {
        Checkpoint::open(&self.ddgm_dir)
    }

    /// Where the DAE runs of this DDGM live: `STUDY/daed/for-ddgm-<its stamp>/`, so a changed
    /// DDGM gets new DAEs and the old ones are kept.
    pub fn dae_root(&self) -> PathBuf {
        let stamp = self
            .records
            .get("ddgm")
            .map_or("unknown", |r| r.stamp.get(..12).unwrap_or(&r.stamp));
        self.opts.out.join("daed").join(format!("for-ddgm-{stamp}"))
    }

    /// What the target datasets contribute to a stamp: those at hand with their sizes, and the
    /// plan's specs (so a changed split or size changes the stamp).
    pub fn targets_stamp(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|(n, s)| format!("{n}:{}", s.len()))
            .chain(self.plan.targets.iter().cloned())
            .collect()
    }

    /// The summary of an earlier stage (Null when it did not run).
    pub fn summary(&self, stage: &str) -> &Value {
        self.records.get(stage).map_or(&Value::Null, |r| &r.summary)
    }

    /// The first `n` images of the DDGM's own data.
    pub fn own_data(&self, n: usize) -> Result<ImageSet> {
        let mut cfg = self.ddgm_cfg.clone();
        cfg.data.limit = Some(n.min(cfg.data.limit.unwrap_or(usize::MAX)));
        crate::train::trainer::load_data(&cfg)
    }
}

/// What a stage produced.
#[derive(Default)]
pub struct Outcome {
    /// Files written, relative to the stage's folder.
    pub files: Vec<String>,
    /// Figures and numbers for the report.
    pub summary: Value,
    /// Notes for the report.
    pub notes: Vec<String>,
    /// Why the stage did nothing.
    pub skipped: Option<String>,
}

impl Outcome {
    /// A stage that had nothing to do, and why.
    pub fn skipped(why: impl Into<String>) -> Self {
        Outcome {
            skipped: Some(why.into()),
            ..Default::default()
        }
    }
}

/// What names a stage.
pub struct StageInfo {
    /// Its folder and key.
    pub name: &'static str,
    /// A line for the progress display.
    pub title: &'static str,
    /// The stages whose results it reads (their stamps go into its own).
    pub upstream: &'static [&'static str],
}

/// One stage of the study.
pub trait Stage {
    /// Its name, title and upstream stages.
    fn info(&self) -> &'static StageInfo;
    /// What its result depends on besides the upstream stages.
    fn inputs(&self, ctx: &Ctx) -> Result<Value>;
    /// Runs it, writing into `dir`.
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome>;
}

/// The stages, in order.
pub fn stages() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(snr::Snr),
        Box::new(ddgm::Ddgm),
        Box::new(recon::Recon),
        Box::new(losses::Losses),
        Box::new(dynamics::Dynamics),
        Box::new(dae::Daes),
        Box::new(sweep::Sweep),
        Box::new(transfer::Transfer),
        Box::new(suggest::Suggest),
    ]
}

/// A finished study: every stage's record, and the report's paths.
pub struct StudyResult {
    /// The records, in stage order.
    pub records: Vec<StageRecord>,
    /// How many stages were reused from an earlier run.
    pub reused: usize,
    /// `report.html` and `report.md`.
    pub report: [PathBuf; 2],
}

/// The study's lock file: one study writes a folder at a time.
fn lock(out: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let path = out.join(".lock");
    let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    f.try_lock().map_err(|_| {
        Error::Invalid(format!(
            "{}: another study is writing this folder (it holds {})",
            out.display(),
            path.display()
        ))
    })?;
    Ok(f)
}

/// The DDGM's directory and config: `--ddgm` (checked now) or the plan's, trained in `STUDY/ddgm`.
fn resolve_ddgm(plan: &StudyPlan, opts: &StudyOptions) -> Result<(PathBuf, ExperimentConfig)> {
    match &opts.ddgm {
        Some(p) => {
            let ck = Checkpoint::open(p)?;
            if ck.config.model != crate::config::ModelKind::Ddgm {
                return Err(Error::ckpt(&ck.dir, "--ddgm needs a DDGM run, not a DAED"));
            }
            let (own, want) = (
                plan::canonical_name(&ck.config.data.dataset),
                plan::canonical_name(&plan.ddgm.data.dataset),
            );
            if own != want {
                return Err(Error::ckpt(
                    &ck.dir,
                    format!("this DDGM was trained on {own}, the plan studies {want}: pass --dataset {own}"),
                ));
            }
            Ok((p.clone(), ck.config))
        }
        None => Ok((opts.out.join("ddgm"), plan.ddgm.clone())),
    }
}

/// The checks that need the DDGM's config: the Inception weights are a readable file, and every
/// generator has at least `metrics.sample_steps` steps.
fn check_inputs(plan: &StudyPlan, opts: &StudyOptions, cfg: &ExperimentConfig) -> Result<()> {
    if let Some(w) = &opts.inception {
        if !w.is_file() {
            return Err(Error::Invalid(format!(
                "{}: the FID Inception weights are not there (--inception / $DAED_INCEPTION)",
                w.display()
            )));
        }
    }
    let d = <crate::nn::UNet as crate::model::Build>::process(cfg)?;
    for &b in &plan.beta1 {
        let left = d.num_steps() - crate::daed::switch_index(&d.alphas_cumprod, b);
        if plan.metrics.sample_steps > left {
            return Err(Error::Invalid(format!(
                "study plan: metrics.sample_steps = {} but the generator for beta1 = {b} has {left} steps",
                plan.metrics.sample_steps
            )));
        }
    }
    Ok(())
}

/// Loads the plan's targets that are at hand; the others become notes.
fn load_targets(plan: &StudyPlan, own: &str) -> (Vec<(String, ImageSet)>, Vec<String>) {
    let limit = plan.recon.n.max(plan.transfer_n);
    let mut sets = Vec::new();
    let mut notes = Vec::new();
    let own = plan::canonical_name(own);
    for (name, split) in plan.target_specs() {
        if plan::canonical_name(&name) == own {
            continue;
        }
        match crate::analysis::load_set(&name, None, &split, Some(limit)) {
            Ok(set) => sets.push((name, set)),
            Err(e) => notes.push(format!("target {name} ({split}) left out: {e}")),
        }
    }
    (sets, notes)
}

/// Runs (or continues) the study of `plan`; everything is checked before any work.
pub fn run_study(
    plan: &StudyPlan,
    opts: &StudyOptions,
    progress: &mut dyn StudyProgress,
) -> Result<StudyResult> {
    plan.validate()?;
    let device = crate::device::resolve(&opts.device)?;
    let (ddgm_dir, ddgm_cfg) = resolve_ddgm(plan, opts)?;
    check_inputs(plan, opts, &ddgm_cfg)?;
    let _lock = lock(&opts.out)?;
    let (targets, notes) = load_targets(plan, &ddgm_cfg.data.dataset);
    for n in &notes {
        progress.note(n);
    }
    let mut ctx = Ctx {
        plan,
        opts,
        device,
        ddgm_dir,
        ddgm_cfg,
        targets,
        records: BTreeMap::new(),
        progress,
    };
    let all = stages();
    let mut reused = 0;
    for (i, stage) in all.iter().enumerate() {
        ctx.progress
            .stage_start(i + 1, all.len(), stage.info().name, stage.info().title);
        let (rec, was_reused) = run_one(stage.as_ref(), &mut ctx)?;
        reused += usize::from(was_reused);
        ctx.progress.stage_end(
            stage.info().name,
            was_reused,
            rec.wall_s,
            rec.skipped.as_deref(),
        );
        ctx.records.insert(rec.stage.clone(), rec);
    }
    let records: Vec<StageRecord> = all
        .iter()
        .filter_map(|s| ctx.records.get(s.info().name).cloned())
        .collect();
    let report = report::write(&opts.out, plan, opts, &records, &notes)?;
    Ok(StudyResult {
        records,
        reused,
        report,
    })
}

/// Runs one stage unless its record says it is done with the same inputs.
fn run_one(stage: &dyn Stage, ctx: &mut Ctx) -> Result<(StageRecord, bool)> {
    let dir = ctx.opts.out.join(stage.info().name);
    let inputs = stage.inputs(ctx)?;
    let upstream: Vec<&str> = stage
        .info()
        .upstream
        .iter()
        .filter_map(|u| ctx.records.get(*u).map(|r| r.stamp.as_str()))
        .collect();
    let stamp = record::stamp(stage.info().name, &inputs, &upstream);
    if let Some(rec) = StageRecord::read(&dir).filter(|r| r.reusable(&stamp, &dir)) {
        return Ok((rec, true));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // A record of other inputs must not outlive a run that stops half-way.
    let stale = dir.join(record::FILE);
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
    }
    let started = record::now_utc();
    let t0 = Instant::now();
    let out = stage.run(ctx, &dir)?;
    let rec = StageRecord {
        stage: stage.info().name.to_string(),
        stamp,
        inputs,
        provenance: ctx.opts.provenance.clone(),
        started,
        wall_s: t0.elapsed().as_secs_f64(),
        files: out.files,
        summary: out.summary,
        notes: out.notes,
        skipped: out.skipped,
    };
    rec.write(&dir)?;
    Ok((rec, false))
}

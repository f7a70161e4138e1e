//! Stage `ddgm`: the DDGM under study. With `--ddgm RUN` it is that run (its checkpoint is
//! fingerprinted); otherwise the plan's config is trained in `STUDY/ddgm`, resumed from its
//! latest checkpoint when interrupted.
use std::path::Path;

use serde_json::{json, Value};

use super::record::file_sha256;
use super::{Ctx, Outcome, Stage, StageInfo};
use crate::config::ExperimentConfig;
use crate::nn::UNet;
use crate::train::{checkpoint, trainer::load_data, Checkpoint, Trainer};
use crate::Result;

/// The DDGM stage.
pub struct Ddgm;

/// The config as it decides the result (where the run lives does not).
fn identity(cfg: &ExperimentConfig) -> ExperimentConfig {
    let mut c = cfg.clone();
    c.train.out_dir = None;
    c.name = String::new();
    c
}

impl Stage for Ddgm {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "ddgm",
            title: "the DDGM (trained, resumed or given)",
            upstream: &[],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        Ok(match &ctx.opts.ddgm {
            Some(p) => {
                let ck = Checkpoint::open(p)?;
                json!({"state_sha256": file_sha256(&ck.dir.join("state.json"))?})
            }
            None => json!({"config": identity(&ctx.plan.ddgm)}),
        })
    }
    fn run(&self, ctx: &mut Ctx, _dir: &Path) -> Result<Outcome> {
        if ctx.opts.ddgm.is_none() {
            train(ctx)?;
        }
        let ck = ctx.ddgm()?;
        let params = ck.load_unet(true, &ctx.device)?.0;
        let params = burn::module::Module::num_params(&params);
        let mut notes = Vec::new();
        if let Some(p) = &ctx.opts.ddgm {
            notes.push(format!("the DDGM is the given run {}", p.display()));
        }
        // A trained DDGM lives in this stage's folder: its latest checkpoint must stay there.
        let files = match ctx.opts.ddgm {
            None => vec!["checkpoints/latest".to_string()],
            Some(_) => vec![],
        };
        Ok(Outcome {
            files,
            summary: json!({
                "dir": ctx.ddgm_dir,
                "checkpoint": ck.dir,
                "step": ck.state.step,
                "parameters": params,
                "dataset": ck.config.data.dataset,
                "steps_T": ck.config.diffusion.steps,
                "schedule": ck.config.diffusion.schedule.to_string(),
                "loss": format!("{:?}", ck.config.diffusion.loss),
                "unet": ck.config.unet,
                "train": {"steps": ck.config.train.steps, "batch_size": ck.config.train.batch_size,
                          "lr": ck.config.train.lr, "seed": ck.config.train.seed},
                "train_wall_s": train_wall(&ctx.ddgm_dir),
            }),
            notes,
            skipped: None,
        })
    }
}

/// Trains the plan's DDGM, or resumes it, up to its steps.
fn train(ctx: &mut Ctx) -> Result<()> {
    let mut cfg = ctx.plan.ddgm.clone();
    cfg.train.out_dir = Some(ctx.ddgm_dir.clone());
    cfg.device = ctx.opts.device.clone();
    let started = checkpoint::list(&ctx.ddgm_dir)?.last().is_some();
    if started {
        same_run(&Checkpoint::open(&ctx.ddgm_dir)?, &cfg)?;
    }
    let data = load_data(&cfg)?;
    let mut t = if started {
        Trainer::<UNet>::resume(cfg, data, &ctx.ddgm_dir)?
    } else {
        Trainer::<UNet>::new(cfg, data)?
    };
    if t.step < t.cfg.train.steps {
        t.run(ctx.progress.ddgm_training().as_mut())?;
    }
    Ok(())
}

/// Refuses to continue a DDGM run made with another config, or one already past the plan's
/// steps (its weights would not be the plan's DDGM); a run cut short is fine.
fn same_run(old: &Checkpoint, cfg: &ExperimentConfig) -> Result<()> {
    let strip = |c: &ExperimentConfig| {
        let mut c = identity(c);
        c.train.steps = 0;
        c.device = String::new();
        c
    };
    let why = if strip(&old.config) != strip(cfg) {
        "was trained with another [ddgm] config than the plan's".to_string()
    } else if old.state.step > cfg.train.steps {
        format!(
            "has trained {} steps, more than the plan's {}",
            old.state.step, cfg.train.steps
        )
    } else {
        return Ok(());
    };
    Err(crate::Error::ckpt(
        &old.dir,
        format!("the study's DDGM {why}: move the study's ddgm folder away, or write the study to another --out"),
    ))
}

/// The training time the run's log shows, summed over its sessions (each restarts `elapsed_s`).
pub fn train_wall(run: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run.join("log.jsonl")).ok()?;
    let mut total = 0.0;
    let mut last = 0.0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).ok()?;
        let e = v.get("elapsed_s")?.as_f64()?;
        if e < last {
            total += last;
        }
        last = e;
    }
    Some(total + last)
}

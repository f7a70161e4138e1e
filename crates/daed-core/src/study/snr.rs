//! Stage `snr` (Figures 1 and 7): the mean log-SNR per step over the DDGM's data, for the linear
//! and the cosine schedule at the DDGM's T. No model needed.
use std::path::Path;

use serde_json::{json, Value};

use super::{Ctx, Outcome, Stage, StageInfo};
use crate::diffusion::schedule::alphas_cumprod;
use crate::diffusion::{BetaSchedule, ScheduleSpec};
use crate::Result;

/// The SNR stage.
pub struct Snr;

impl Stage for Snr {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "snr",
            title: "log-SNR per step, linear and cosine (Figures 1, 7)",
            upstream: &[],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        Ok(json!({"data": ctx.ddgm_cfg.data, "diffusion": ctx.ddgm_cfg.diffusion}))
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        let set = crate::train::trainer::load_data(&ctx.ddgm_cfg)?;
        let powers = daed_eval::snr::image_powers(&set);
        let d = &ctx.ddgm_cfg.diffusion;
        let mut curves = Vec::new();
        for kind in [BetaSchedule::Linear, BetaSchedule::Cosine] {
            let spec = ScheduleSpec {
                kind,
                steps: d.steps,
                beta_start: d.beta_start,
                beta_end: d.beta_end,
                scale_to_steps: d.scale_betas,
            };
            spec.validate()?;
            let ab = alphas_cumprod(&spec.betas());
            let label = format!("{kind} T={}", d.steps);
            curves.push(daed_eval::snr::snr_curve(&label, &powers, &ab)?);
        }
        daed_eval::snr::write_snr_outputs(dir, &curves)?;
        let summary: Vec<Value> = curves
            .iter()
            .map(|c| json!({"schedule": c.label, "summary": c.summary()}))
            .collect();
        Ok(Outcome {
            files: vec!["snr.csv".into(), "snr.png".into(), "summary.json".into()],
            summary: json!({"curves": summary, "images": set.len()}),
            ..Default::default()
        })
    }
}

//! Stage `sweep` (Figures 4 and 5, the rows of Tables 1 and 5): the DDGM and every DAED sampled
//! from the same noise, scored with FID, sFID, precision and recall against the training data.
//! Skipped, with the reason, when no FID Inception weights are at hand.
use std::path::Path;

use serde_json::{json, Value};

use super::{Ctx, Outcome, Stage, StageInfo};
use crate::analysis::switch::run_switch;
use crate::metrics::FidInception;
use crate::Result;

/// The switch-sweep stage.
pub struct Sweep;

impl Stage for Sweep {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "sweep",
            title: "samples and FID / precision / recall per model (Figures 4, 5; Tables 1, 5)",
            upstream: &["ddgm", "daed"],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        let weights = ctx.opts.inception.as_ref().map(|p| {
            let len = std::fs::metadata(p).map_or(0, |m| m.len());
            json!({"path": p, "bytes": len})
        });
        Ok(json!({"metrics": ctx.plan.metrics, "seed": ctx.plan.seed,
                  "batch_size": ctx.plan.batch_size, "inception": weights}))
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        let Some(weights) = ctx.opts.inception.clone() else {
            return Ok(Outcome::skipped(
                "no FID Inception weights (pass --inception FILE or set DAED_INCEPTION)",
            ));
        };
        let ck = ctx.ddgm()?;
        let settings = ctx.plan.switch_settings(&ctx.dae_root(), &ctx.opts.device);
        let inception = FidInception::open(&weights, &ctx.device)?;
        let study = run_switch(
            &ck,
            &inception,
            &weights.display().to_string(),
            &settings,
            ctx.progress,
        )?;
        let paths = study.write(dir)?;
        Ok(Outcome {
            files: paths
                .iter()
                .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .collect(),
            summary: json!({"rows": study.rows, "n": settings.n, "reference_n": settings.reference_n,
                            "sampling": settings.sampling.respacing}),
            ..Default::default()
        })
    }
}

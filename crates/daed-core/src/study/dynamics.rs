//! Stage `dynamics` (Figure 13): the per-step VLB recorded while the DDGM trained, over training
//! time; skipped when its run recorded none (`train.dynamics_every = 0`).
use std::path::Path;

use serde_json::{json, Value};

use super::record::file_sha256;
use super::{Ctx, Outcome, Stage, StageInfo};
use crate::train::dynamics;
use crate::Result;

/// The training-dynamics stage.
pub struct Dynamics;

impl Stage for Dynamics {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "dynamics",
            title: "per-step losses over training (Figure 13)",
            upstream: &["ddgm"],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        let f = ctx.ddgm_dir.join(dynamics::FILE);
        Ok(json!({"dynamics_sha256": file_sha256(&f).ok()}))
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        if !ctx.ddgm_dir.join(dynamics::FILE).exists() {
            return Ok(Outcome::skipped(
                "the DDGM's run recorded no training dynamics (train.dynamics_every = 0)",
            ));
        }
        let records = dynamics::read(&ctx.ddgm_dir)?;
        let paths = dynamics::write(dir, &records)?;
        Ok(Outcome {
            files: paths
                .iter()
                .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .collect(),
            summary: json!({"records": records.len()}),
            ..Default::default()
        })
    }
}

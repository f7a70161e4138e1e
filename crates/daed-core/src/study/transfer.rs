//! Stage `transfer` (Table 2, Figure 6): images of the other datasets noised with beta1, then
//! denoised by the DAE in one pass and by the DDGM over the equivalent k steps.
use std::path::Path;

use serde_json::{json, Value};

use super::{Ctx, Outcome, Stage, StageInfo};
use crate::analysis::transfer::TransferStudy;
use crate::analysis::NamedSets;
use crate::daed::DaedNets;
use crate::train::Checkpoint;
use crate::Result;

/// The transfer stage.
pub struct Transfer;

impl Stage for Transfer {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "transfer",
            title: "denoising other datasets: DAE vs DDGM (Table 2)",
            upstream: &["ddgm", "daed"],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        Ok(
            json!({"beta1": ctx.plan.transfer_beta1, "n": ctx.plan.transfer_n, "targets": ctx.targets_stamp(),
                  "seed": ctx.plan.seed, "batch_size": ctx.plan.batch_size}),
        )
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        if ctx.targets.is_empty() {
            return Ok(Outcome::skipped("no other dataset at hand"));
        }
        let ck = ctx.ddgm()?;
        let (ddgm, d) = ck.load_unet(true, &ctx.device)?;
        let b = ctx.plan.transfer_beta1;
        let settings = ctx.plan.switch_settings(&ctx.dae_root(), &ctx.opts.device);
        let dae_ck = Checkpoint::open(&settings.dae_dir(b))?;
        let (dae, _) = dae_ck.load_model::<DaedNets>(true, &ctx.device)?;
        let n = ctx.plan.transfer_n;
        let sets = ctx.targets.iter().map(|(s, set)| (s.clone(), set.take(n)));
        let sets = NamedSets::conformed(sets.collect(), ck.state.image_shape)?;
        ctx.progress.stage("transfer", 0, 1);
        let study = TransferStudy::run(
            &ddgm,
            &d,
            &dae,
            b,
            &sets.sets,
            ctx.plan.batch_size,
            ctx.plan.seed,
            &ctx.device,
        )?;
        ctx.progress.stage("transfer", 1, 1);
        study.write(dir)?;
        let rows: Vec<Value> = study
            .rows
            .iter()
            .map(|r| json!({"target": r.target, "k": r.k, "ddgm": r.ddgm, "dae": r.dae}))
            .collect();
        Ok(Outcome {
            files: vec![
                "transfer.csv".into(),
                "transfer.md".into(),
                "transfer.png".into(),
            ],
            summary: json!({"beta1": b, "rows": rows, "n": n}),
            notes: sets.notes,
            skipped: None,
        })
    }
}

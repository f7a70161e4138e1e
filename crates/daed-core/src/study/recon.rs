//! Stage `recon` (Figures 2 and 3): noise images to step t and let the DDGM denoise them back,
//! on its own data and on the other datasets at hand; MAE and MS-SSIM against t.
use std::path::Path;

use serde_json::{json, Value};

use super::{Ctx, Outcome, Stage, StageInfo};
use crate::analysis::recon::{reconstruction_curves, step_grid};
use crate::analysis::NamedSets;
use crate::Result;

/// The reconstruction stage.
pub struct Recon;

impl Stage for Recon {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "recon",
            title: "reconstruction from step t, own and other data (Figures 2, 3)",
            upstream: &["ddgm"],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        Ok(
            json!({"recon": ctx.plan.recon, "targets": ctx.targets_stamp(), "seed": ctx.plan.seed,
                  "batch_size": ctx.plan.batch_size}),
        )
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        let p = &ctx.plan.recon;
        let ck = ctx.ddgm()?;
        let (net, d) = ck.load_unet(true, &ctx.device)?;
        let steps = step_grid(d.num_steps(), p.until, p.points)?;
        let own = ctx.own_data(p.n)?;
        let mut sets = vec![(ck.config.data.dataset.clone(), own)];
        sets.extend(ctx.targets.iter().map(|(n, s)| (n.clone(), s.take(p.n))));
        let sets = NamedSets::conformed(sets, ck.state.image_shape)?;
        let progress = &mut *ctx.progress;
        let points = reconstruction_curves(
            &net,
            &d,
            &sets.sets,
            &steps,
            ctx.plan.batch_size,
            ctx.plan.seed,
            &ctx.device,
            &mut |name, k, total| progress.stage(&format!("recon {name}"), k, total),
        )?;
        daed_eval::recon::write_recon_outputs(dir, &points, d.num_steps())?;
        Ok(Outcome {
            files: vec![
                "recon.csv".into(),
                "recon.png".into(),
                "summary.json".into(),
            ],
            summary: json!({
                "points": points,
                "summary": daed_eval::recon::recon_summary(&points, d.num_steps()),
                "total_steps": d.num_steps(),
                "own": ck.config.data.dataset,
            }),
            notes: sets.notes,
            skipped: None,
        })
    }
}

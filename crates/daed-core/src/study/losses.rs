//! Stage `losses` (Figure 14a): every step's VLB term, epsilon MSE and x0 MSE on the DDGM's data.
use std::path::Path;

use serde_json::{json, Value};

use super::{Ctx, Outcome, Stage, StageInfo};
use crate::analysis::conform;
use crate::analysis::losses::loss_breakdown;
use crate::Result;

/// The per-step loss stage.
pub struct Losses;

impl Stage for Losses {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "losses",
            title: "per-step loss terms (Figure 14a)",
            upstream: &["ddgm"],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        Ok(
            json!({"n": ctx.plan.losses_n, "seed": ctx.plan.seed, "batch_size": ctx.plan.batch_size}),
        )
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        let ck = ctx.ddgm()?;
        let (net, d) = ck.load_unet(true, &ctx.device)?;
        let (set, _) = conform(
            &ctx.own_data(ctx.plan.losses_n)?,
            ck.state.image_shape,
            "own",
        )?;
        let progress = &mut *ctx.progress;
        let br = loss_breakdown(
            &net,
            &d,
            &set,
            ctx.plan.batch_size,
            ctx.plan.seed,
            &ctx.device,
            &mut |k, total| progress.stage("losses", k, total),
        )?;
        br.write(dir, set.len(), ck.state.step)?;
        let share = br.cumulative_share();
        let one = br.one_percent_steps();
        let ten = (br.steps.len() / 10).max(1);
        Ok(Outcome {
            files: vec![
                "losses.csv".into(),
                "losses.png".into(),
                "summary.json".into(),
            ],
            summary: json!({
                "total_bpd": br.total_bpd(),
                "prior_bpd": br.prior_bpd,
                "share_first_step": share[0],
                "first_1pct_steps": one,
                "share_first_1pct": share[one - 1],
                "first_10pct_steps": ten,
                "share_first_10pct": share[ten - 1],
                "images": set.len(),
            }),
            ..Default::default()
        })
    }
}

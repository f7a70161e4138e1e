//! Stage `daed`: a DAE for each beta1 of the plan (Table 5), two-stage on the DDGM by default or
//! a joint DAED on request; each with its switch step k, the generator's T - k steps and the
//! log-SNR over the data at k. A DAE run cut short is resumed.
use std::path::Path;

use serde_json::{json, Value};

use super::{Ctx, Outcome, Stage, StageInfo};
use crate::analysis::switch::{ensure_dae, mean_ln_power, mean_log_snr};
use crate::daed::switch_index;
use crate::train::trainer::load_data;
use crate::train::Checkpoint;
use crate::Result;

/// The DAE-training stage.
pub struct Daes;

/// The last `loss` a run logged.
fn last_loss(run: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run.join("log.jsonl")).ok()?;
    let line = text.lines().last()?;
    serde_json::from_str::<Value>(line)
        .ok()?
        .get("loss")?
        .as_f64()
}

impl Stage for Daes {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "daed",
            title: "a DAE per beta1 (Table 5)",
            upstream: &["ddgm"],
        }
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        Ok(json!({"beta1": ctx.plan.beta1, "dae": ctx.plan.dae}))
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        let ck = ctx.ddgm()?;
        let root = ctx.dae_root();
        let settings = ctx.plan.switch_settings(&root, &ctx.opts.device);
        let data = load_data(&ck.config)?;
        let mean_ln_p = mean_ln_power(&daed_eval::snr::image_powers(&data));
        let d = <crate::nn::UNet as crate::model::Build>::process(&ck.config)?;
        let total = d.num_steps();
        let mut rows = Vec::new();
        let mut files = Vec::new();
        for &b in &ctx.plan.beta1 {
            let run = ensure_dae(&ck, b, &settings, &data, ctx.progress)?;
            let k = switch_index(&d.alphas_cumprod, b);
            let trained = Checkpoint::open(&run)?.state.step;
            let rel = run.strip_prefix(dir).unwrap_or(&run).to_path_buf();
            files.push(rel.join("checkpoints").join("latest").display().to_string());
            rows.push(json!({
                "beta1": b,
                "k": k,
                "generator_steps": total - k,
                "log_snr": mean_log_snr(mean_ln_p, &d.alphas_cumprod, k),
                "dae_steps": trained,
                "final_loss": last_loss(&run),
                "run": rel,
            }));
        }
        Ok(Outcome {
            files,
            summary: json!({"rows": rows, "mode": ctx.plan.dae.mode, "total_steps": total}),
            ..Default::default()
        })
    }
}

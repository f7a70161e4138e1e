//! Stage `suggest` (beyond the paper): the beta1 the study recommends for this data and model.
//!
//! The rule, stated in the report with its numbers:
//! 1. the DDGM's own reconstruction curve marks its denoising regime: the steps up to the last
//!    grid step at which reconstructions from t keep MS-SSIM >= 0.9 (every earlier one too);
//!    a DAE should not take over more than that, so beta1 <= 1 - alpha_bar there;
//! 2. among those beta1, the largest whose DAED's FID is within 10% of the DDGM's (the most steps
//!    handed to the one-pass DAE at no measured cost); if none is, the one with the lowest FID;
//! 3. with no FID at hand, the largest beta1 allowed by 1.
use std::path::Path;

use burn::tensor::Device;
use daed_eval::recon::ReconPoint;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Ctx, Outcome, Stage, StageInfo};
use crate::analysis::recon::{reconstruction_curve, step_grid};
use crate::analysis::switch::{mean_ln_power, mean_log_snr};
use crate::daed::switch_index;
use crate::train::Checkpoint;
use crate::Result;

/// MS-SSIM a reconstruction must keep to count as denoised rather than regenerated.
pub const MSSSIM_FLOOR: f64 = 0.9;
/// How much worse than the DDGM's FID a DAED may be and still count as "as good".
pub const FID_TOLERANCE: f64 = 0.10;

/// One beta1 the rule may pick.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    /// The DAE's noise level.
    pub beta1: f64,
    /// Its switch step.
    pub k: usize,
    /// Mean log-SNR over the data at k.
    pub log_snr: f64,
    /// Its DAED's FID, when measured.
    pub fid: Option<f64>,
}

/// The recommendation and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Suggestion {
    /// The suggested beta1 (None when there was no candidate).
    pub beta1: Option<f64>,
    /// Its switch step k.
    pub k: Option<usize>,
    /// The mean log-SNR at k.
    pub log_snr: Option<f64>,
    /// The last step of the DDGM's denoising regime by its reconstruction curve.
    pub denoising_until_t: Option<usize>,
    /// 1 - alpha_bar at that step: the largest beta1 the curve allows.
    pub beta1_limit: Option<f64>,
    /// The reason, in a sentence or two.
    pub reason: String,
}

/// The last grid step t with MS-SSIM >= the floor at t and at every earlier grid step.
fn denoising_until(own: &[ReconPoint]) -> Option<usize> {
    let mut pts: Vec<&ReconPoint> = own.iter().collect();
    pts.sort_by_key(|p| p.t);
    pts.iter()
        .take_while(|p| p.msssim_mean >= MSSSIM_FLOOR)
        .last()
        .map(|p| p.t)
}

/// Applies the rule to the DDGM's own reconstruction points and the candidates.
pub fn suggest(
    own: &[ReconPoint],
    alphas_cumprod: &[f64],
    candidates: &[Candidate],
    ddgm_fid: Option<f64>,
) -> Suggestion {
    let until = denoising_until(own);
    let limit = until.map(|t| 1.0 - alphas_cumprod[t - 1]);
    let allowed: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| limit.is_some_and(|l| c.beta1 <= l + 1e-12))
        .collect();
    let last_t = own.iter().map(|p| p.t).max();
    let regime = match (until, limit) {
        (Some(t), Some(l)) if Some(t) == last_t => format!(
            "the DDGM's reconstructions keep MS-SSIM >= {MSSSIM_FLOOR} over the whole measured grid, up to t = {t} (beta1 <= {l:.4}; the regime may go further)"
        ),
        (Some(t), Some(l)) => format!(
            "the DDGM's reconstructions keep MS-SSIM >= {MSSSIM_FLOOR} up to t = {t} (beta1 <= {l:.4})"
        ),
        _ => format!(
            "the DDGM's reconstructions fall below MS-SSIM {MSSSIM_FLOOR} already at the first step measured, so no beta1 is inside its denoising regime"
        ),
    };
    let largest = |v: &[&Candidate]| {
        v.iter()
            .max_by(|a, b| a.beta1.total_cmp(&b.beta1))
            .map(|c| (*c).clone())
    };
    let lowest_fid = |v: &[&Candidate]| {
        v.iter()
            .filter(|c| c.fid.is_some_and(f64::is_finite))
            .min_by(|a, b| {
                a.fid
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&b.fid.unwrap_or(f64::INFINITY))
            })
            .map(|c| (*c).clone())
    };
    let measured =
        ddgm_fid.is_some_and(f64::is_finite) && candidates.iter().any(|c| c.fid.is_some());
    let (pick, why) = if allowed.is_empty() {
        // Nothing inside the regime: the smallest beta1 hands the DAE the least.
        let pick = candidates
            .iter()
            .min_by(|a, b| a.beta1.total_cmp(&b.beta1))
            .cloned();
        (
            pick,
            format!("{regime}; the smallest beta1 offered, the least denoising left to the DAE"),
        )
    } else if !measured {
        (
            largest(&allowed),
            format!("{regime}; no FID was measured, so the largest beta1 inside that regime"),
        )
    } else {
        let g = ddgm_fid.unwrap_or(f64::NAN);
        let good: Vec<&Candidate> = allowed
            .iter()
            .copied()
            .filter(|c| c.fid.is_some_and(|f| f <= g * (1.0 + FID_TOLERANCE)))
            .collect();
        if let Some(c) = largest(&good) {
            let why = format!(
                "{regime}, and its DAED's FID {:.2} is within {:.0}% of the DDGM's {g:.2}: the largest such beta1",
                c.fid.unwrap_or(f64::NAN),
                100.0 * FID_TOLERANCE
            );
            (Some(c), why)
        } else {
            let why = format!(
                "{regime}; no DAED there came within {:.0}% of the DDGM's FID {g:.2}, so the one there with the lowest FID",
                100.0 * FID_TOLERANCE
            );
            (lowest_fid(&allowed).or_else(|| largest(&allowed)), why)
        }
    };
    Suggestion {
        beta1: pick.as_ref().map(|c| c.beta1),
        k: pick.as_ref().map(|c| c.k),
        log_snr: pick.as_ref().map(|c| c.log_snr),
        denoising_until_t: until,
        beta1_limit: limit,
        reason: why,
    }
}

/// Suggests beta1 for the DDGM `ck` among `beta1s`: its reconstruction curve on `n` images of
/// its own data, and the FIDs of a sweep when given (beta1 -> FID, plus the DDGM's).
pub fn suggest_for_run(
    ck: &Checkpoint,
    beta1s: &[f64],
    fids: Option<(&[(f64, f64)], f64)>,
    n: usize,
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Suggestion> {
    let (net, d) = ck.load_unet(true, device)?;
    let mut cfg = ck.config.clone();
    cfg.data.limit = Some(n);
    let data = crate::train::trainer::load_data(&cfg)?;
    let (data, _) = crate::analysis::conform(&data, ck.state.image_shape, "own")?;
    let steps = step_grid(d.num_steps(), 0.2, 10)?;
    let own = reconstruction_curve(&net, &d, &data, "own", &steps, 64, seed, device, progress)?;
    let mean_ln_p = mean_ln_power(&daed_eval::snr::image_powers(&data));
    let candidates: Vec<Candidate> = beta1s
        .iter()
        .map(|&b| {
            let k = switch_index(&d.alphas_cumprod, b);
            Candidate {
                beta1: b,
                k,
                log_snr: mean_log_snr(mean_ln_p, &d.alphas_cumprod, k),
                fid: fids
                    .and_then(|(v, _)| v.iter().find(|(x, _)| (x - b).abs() < 1e-12).map(|p| p.1)),
            }
        })
        .collect();
    Ok(suggest(
        &own,
        &d.alphas_cumprod,
        &candidates,
        fids.map(|f| f.1),
    ))
}

/// The suggestion stage.
pub struct Suggest;

impl Stage for Suggest {
    fn info(&self) -> &'static StageInfo {
        &StageInfo {
            name: "suggest",
            title: "the suggested switch point",
            upstream: &["recon", "daed", "sweep"],
        }
    }
    fn inputs(&self, _ctx: &Ctx) -> Result<Value> {
        Ok(json!({"msssim_floor": MSSSIM_FLOOR, "fid_tolerance": FID_TOLERANCE}))
    }
    fn run(&self, ctx: &mut Ctx, dir: &Path) -> Result<Outcome> {
        let recon = ctx.summary("recon");
        let own_name = recon["own"].as_str().unwrap_or_default().to_string();
        let own: Vec<ReconPoint> =
            serde_json::from_value::<Vec<ReconPoint>>(recon["points"].clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.dataset == own_name)
                .collect();
        let sweep = ctx.summary("sweep")["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let fid_of = |b: f64, k0: bool| {
            sweep.iter().find_map(|r| {
                let is_ddgm = r["k"].as_u64() == Some(0);
                let same = (r["beta1"].as_f64()? - b).abs() < 1e-12;
                (is_ddgm == k0 && (k0 || same))
                    .then(|| r["fid"].as_f64())
                    .flatten()
            })
        };
        let candidates: Vec<Candidate> = ctx.summary("daed")["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let beta1 = r["beta1"].as_f64()?;
                Some(Candidate {
                    beta1,
                    k: r["k"].as_u64()? as usize,
                    log_snr: r["log_snr"].as_f64()?,
                    fid: fid_of(beta1, false),
                })
            })
            .collect();
        let d = <crate::nn::UNet as crate::model::Build>::process(&ctx.ddgm()?.config)?;
        let s = suggest(&own, &d.alphas_cumprod, &candidates, fid_of(0.0, true));
        daed_io::table::write_json(dir.join("suggest.json"), &s)?;
        Ok(Outcome {
            files: vec!["suggest.json".into()],
            summary: serde_json::to_value(&s).unwrap_or(Value::Null),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: usize, msssim: f64) -> ReconPoint {
        ReconPoint {
            dataset: "own".into(),
            t,
            mae_mean: 0.0,
            mae_std: 0.0,
            msssim_mean: msssim,
            msssim_std: 0.0,
        }
    }

    fn cand(beta1: f64, k: usize, fid: Option<f64>) -> Candidate {
        Candidate {
            beta1,
            k,
            log_snr: 0.0,
            fid,
        }
    }

    #[test]
    fn picks_the_largest_beta1_inside_the_regime_within_the_fid_tolerance() {
        // abar falls by 0.01 per step: t = 10 -> beta1 limit 0.1.
        let ab: Vec<f64> = (1..=100).map(|t| 1.0 - 0.01 * t as f64).collect();
        let own = [
            point(5, 0.99),
            point(10, 0.95),
            point(20, 0.85),
            point(30, 0.95),
        ];
        let c = [
            cand(0.025, 3, Some(10.5)),
            cand(0.1, 10, Some(10.9)),
            cand(0.2, 20, Some(10.0)),
        ];
        let s = suggest(&own, &ab, &c, Some(10.0));
        assert_eq!(s.denoising_until_t, Some(10));
        assert_eq!(s.beta1, Some(0.1), "{}", s.reason);
        // 0.1 now 20% worse: 0.025 is the largest within 10%.
        let c2 = [
            cand(0.025, 3, Some(10.5)),
            cand(0.1, 10, Some(12.0)),
            cand(0.2, 20, Some(10.0)),
        ];
        assert_eq!(suggest(&own, &ab, &c2, Some(10.0)).beta1, Some(0.025));
        // Nothing within 10%: the lowest FID inside the regime.
        let c3 = [cand(0.025, 3, Some(14.0)), cand(0.1, 10, Some(12.0))];
        assert_eq!(suggest(&own, &ab, &c3, Some(10.0)).beta1, Some(0.1));
        // Nothing inside the regime: the smallest beta1.
        let bad = [point(5, 0.5), point(10, 0.4)];
        assert_eq!(suggest(&bad, &ab, &c, Some(10.0)).beta1, Some(0.025));
        // No FIDs: the largest beta1 inside the regime.
        let c4 = [
            cand(0.025, 3, None),
            cand(0.1, 10, None),
            cand(0.2, 20, None),
        ];
        assert_eq!(suggest(&own, &ab, &c4, None).beta1, Some(0.1));
    }
}

//! Per-step loss terms (Figure 14a, Appendix A.3), as improved-diffusion's bits-per-dim loop
//! (`calc_bpd_loop`, x0 predictions clipped): for every t the VLB term (bits/dim), the epsilon
//! MSE and the x0 MSE, plus the prior term.
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use super::{image_batches, ImageBatch};
use crate::diffusion::loss::{mean_flat, normal_kl};
use crate::diffusion::GaussianDiffusion;
use crate::nn::EpsModel;
use crate::rng::Stream;
use crate::sample::noise;
use crate::tensor_io::to_vec;
use crate::{Error, Result};
use daed_io::images::ImageSet;
use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{write_json, Table};
use std::path::Path;

/// Mean terms of one step over the images.
#[derive(Clone, Debug, Serialize)]
pub struct StepTerms {
    /// The step, 1-based (t = 1 is the decoder term L_0).
    pub t: usize,
    /// The VLB term in bits per dimension.
    pub vlb_bpd: f64,
    /// MSE of the epsilon prediction.
    pub eps_mse: f64,
    /// MSE of the x0 prediction.
    pub x0_mse: f64,
}

/// Every step's terms plus the prior KL(q(x_T|x0) || N(0, I)) in bits/dim.
#[derive(Clone, Debug, Serialize)]
pub struct LossBreakdown {
    /// One entry per step, t = 1..T.
    pub steps: Vec<StepTerms>,
    /// The prior term.
    pub prior_bpd: f64,
}

impl LossBreakdown {
    /// Total bits/dim: the VLB terms plus the prior.
    pub fn total_bpd(&self) -> f64 {
        self.steps.iter().map(|s| s.vlb_bpd).sum::<f64>() + self.prior_bpd
    }
    /// Cumulative share of the summed VLB terms by step (ends at 1).
    pub fn cumulative_share(&self) -> Vec<f64> {
        let total: f64 = self.steps.iter().map(|s| s.vlb_bpd).sum();
        let mut acc = 0.0;
        self.steps
            .iter()
            .map(|s| {
                acc += s.vlb_bpd;
                if total > 0.0 {
                    acc / total
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Computes the breakdown over `set` in batches of `batch` (noise keyed by `seed`).
#[allow(clippy::too_many_arguments)]
pub fn loss_breakdown(
    model: &dyn EpsModel,
    d: &GaussianDiffusion,
    set: &ImageSet,
    batch: usize,
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LossBreakdown> {
    let [c, h, w] = [set.channels, set.height, set.width];
    let n = set.len();
    let tn = d.num_steps();
    let mut sums = vec![(0.0f64, 0.0f64, 0.0f64); tn];
    let mut prior = 0.0;
    let nb = n.div_ceil(batch);
    for ImageBatch { index, x0, .. } in image_batches(set, batch, device) {
        let (bi, b) = (index as usize, x0.dims()[0]);
        for t in (0..tn).rev() {
            let ts = vec![t; b];
            let stream = Stream::AnalysisNoise {
                batch: index,
                t: t as u64,
            };
            let eps = noise([b, c, h, w], seed, stream, device);
            let xt = d.q_sample(x0.clone(), &ts, eps.clone());
            let out = model.predict(xt.clone(), &d.model_timesteps_f32(&ts));
            // Clipped x0 predictions, as improved-diffusion's bits/dim evaluation.
            let vb = d.vb_terms_bpd_with(out.clone(), x0.clone(), xt.clone(), &ts, true);
            let pm = d.p_mean_variance(out, xt, &ts, true);
            let eps_mse = mean_flat((pm.eps - eps).square());
            let x0_mse = mean_flat((pm.pred_xstart - x0.clone()).square());
            // One read-back per step for the three sums.
            let s = to_vec(Tensor::cat(vec![vb.sum(), eps_mse.sum(), x0_mse.sum()], 0))?;
            sums[t].0 += s[0] as f64;
            sums[t].1 += s[1] as f64;
            sums[t].2 += s[2] as f64;
            progress(bi * tn + (tn - t), nb * tn);
        }
        // Prior: KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1)).
        let ab = d.alphas_cumprod[tn - 1];
        let mean = x0.clone().mul_scalar(ab.sqrt());
        let lv = x0.zeros_like().add_scalar((1.0 - ab).ln());
        let kl = mean_flat(normal_kl(mean, lv, x0.zeros_like(), x0.zeros_like()))
            .div_scalar(std::f64::consts::LN_2);
        prior += to_vec(kl.sum())?[0] as f64;
    }
    let nf = n as f64;
    Ok(LossBreakdown {
        steps: sums
            .iter()
            .enumerate()
            .map(|(t, s)| StepTerms {
                t: t + 1,
                vlb_bpd: s.0 / nf,
                eps_mse: s.1 / nf,
                x0_mse: s.2 / nf,
            })
            .collect(),
        prior_bpd: prior / nf,
    })
}

impl LossBreakdown {
    /// How many steps make the first 1% of the process (at least one).
    pub fn one_percent_steps(&self) -> usize {
        ((self.steps.len() as f64) * 0.01).ceil().max(1.0) as usize
    }

    /// Writes `losses.csv` (per step), `summary.json` and `losses.png` (Figure 14a) into `out`,
    /// for a breakdown over `images` images of a checkpoint at `checkpoint_step`.
    pub fn write(&self, out: &Path, images: usize, checkpoint_step: u64) -> Result<()> {
        let share = self.cumulative_share();
        let mut table = Table::new(vec!["t", "vlb_bpd", "eps_mse", "x0_mse", "cum_share"]);
        for (s, c) in self.steps.iter().zip(&share) {
            table.push(vec![
                s.t.to_string(),
                format!("{:.6e}", s.vlb_bpd),
                format!("{:.6e}", s.eps_mse),
                format!("{:.6e}", s.x0_mse),
                format!("{c:.6}"),
            ]);
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        table.write_csv(out.join("losses.csv"))?;
        let one_pct = self.one_percent_steps();
        let summary = serde_json::json!({
            "total_bpd": self.total_bpd(),
            "prior_bpd": self.prior_bpd,
            "share_first_step": share[0],
            "share_first_1pct_steps": share[one_pct - 1],
            "first_1pct_steps": one_pct,
            "images": images,
            "checkpoint_step": checkpoint_step,
        });
        write_json(out.join("summary.json"), &summary)?;
        let ts: Vec<f64> = self.steps.iter().map(|s| s.t as f64).collect();
        let series = |name: &str, ys: Vec<f64>| Series {
            name: name.into(),
            xs: ts.clone(),
            ys,
            band: None,
        };
        let fig = Figure {
            panels: vec![
                Panel {
                    title: "VLB term per step".into(),
                    x_label: "t".into(),
                    y_label: "bits/dim".into(),
                    series: vec![series(
                        "L_t",
                        self.steps.iter().map(|s| s.vlb_bpd.max(1e-8)).collect(),
                    )],
                    log_y: true,
                    hlines: vec![],
                },
                Panel {
                    title: "cumulative share of the VLB".into(),
                    x_label: "t".into(),
                    y_label: "share".into(),
                    series: vec![series("cum. share", share.clone())],
                    log_y: false,
                    hlines: vec![],
                },
                Panel {
                    title: "MSE per step".into(),
                    x_label: "t".into(),
                    y_label: "mse".into(),
                    series: vec![
                        series(
                            "eps",
                            self.steps.iter().map(|s| s.eps_mse.max(1e-8)).collect(),
                        ),
                        series(
                            "x0",
                            self.steps.iter().map(|s| s.x0_mse.max(1e-8)).collect(),
                        ),
                    ],
                    log_y: true,
                    hlines: vec![],
                },
            ],
            width: 1500,
            height: 450,
        };
        fig.save_png(out.join("losses.png"))?;
        Ok(())
    }
}

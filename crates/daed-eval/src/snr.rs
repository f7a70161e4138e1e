//! The log-SNR analysis of the forward diffusion (paper eq. 10, Figures 1 and 7).
//!
//! For an image `x0` with pixels in [-1, 1], its power is `P = mean(x0^2)` over all its pixels and
//! `log SNR(x0, t) = ln(abar_t P / (1 - abar_t)) = ln P + ln(abar_t / (1 - abar_t))`. So over a data
//! set the mean log-SNR at `t` is `mean(ln P) + ln(abar_t / (1 - abar_t))` and its standard deviation
//! is `std(ln P)` for every `t`: a curve costs O(N + T), not O(N T).

use crate::error::{invalid, Result};
use crate::stats::mean_std;
use daed_io::atomic::write_atomic;
use daed_io::images::ImageSet;
use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{write_json, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The mean log-SNR (over a data set) at every step of one noise schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct SnrCurve {
    /// Legend / CSV label, e.g. `fashion-mnist linear`.
    pub label: String,
    /// Steps 1..=T.
    pub t: Vec<usize>,
    /// Mean over images of log-SNR(x0, t).
    pub mean: Vec<f64>,
    /// Population std over images of log-SNR(x0, t) (the same at every t: std of ln P).
    pub std: Vec<f64>,
    /// `mean(t) - mean(t-1)`; NaN at t = 1 (log-SNR at t = 0 is +inf), written as an empty CSV cell.
    pub delta: Vec<f64>,
    /// Number of images averaged.
    pub n_images: usize,
}

/// Key numbers of an [`SnrCurve`], written to `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnrSummary {
    /// The first t whose mean log-SNR is below 0 (noise dominates), or `None` if it never is.
    pub zero_crossing_t: Option<usize>,
    /// `zero_crossing_t / T`.
    pub zero_crossing_fraction: Option<f64>,
    /// The step used for `log_snr_at_10pct`: `round(0.1 T)`, at least 1.
    pub t_10pct: usize,
    /// The mean log-SNR at `t_10pct`.
    pub log_snr_at_10pct: f64,
    /// Number of steps T.
    pub total_steps: usize,
    /// Number of images averaged.
    pub n_images: usize,
}

/// The power `mean(x^2)` of each image of `set`, with pixels mapped to [-1, 1] as `v / 127.5 - 1`
/// (computed in f64 through a 256-entry lookup table).
pub fn image_powers(set: &ImageSet) -> Vec<f64> {
    let lut: [f64; 256] = std::array::from_fn(|v| {
        let x = v as f64 / 127.5 - 1.0;
        x * x
    });
    let per = set.image_size();
    if per == 0 {
        return Vec::new();
    }
    set.pixels
        .chunks_exact(per)
        .map(|img| img.iter().map(|&v| lut[v as usize]).sum::<f64>() / per as f64)
        .collect()
}

/// The log-SNR curve of images with the given `powers` under `alphas_cumprod` (`abar_t` for
/// t = 1..=T at index t-1). Errors on no images, an empty schedule, an `abar_t` outside (0, 1), or a
/// power that is not finite and > 0 (P = 0 would give log-SNR -inf; u8 images can never have P = 0,
/// since no u8 value maps exactly to 0).
pub fn snr_curve(
    label: impl Into<String>,
    powers: &[f64],
    alphas_cumprod: &[f64],
) -> Result<SnrCurve> {
    let label = label.into();
    if powers.is_empty() {
        return Err(invalid!("log-SNR curve '{label}': no images"));
    }
    if alphas_cumprod.is_empty() {
        return Err(invalid!("log-SNR curve '{label}': empty noise schedule"));
    }
    if let Some((i, p)) = powers
        .iter()
        .enumerate()
        .find(|(_, p)| !(p.is_finite() && **p > 0.0))
    {
        return Err(invalid!(
            "log-SNR curve '{label}': image {i} has power {p}; log-SNR needs a finite power > 0"
        ));
    }
    if let Some((i, a)) = alphas_cumprod
        .iter()
        .enumerate()
        .find(|(_, a)| !(**a > 0.0 && **a < 1.0))
    {
        return Err(invalid!(
            "log-SNR curve '{label}': alpha_bar at t={} is {a}, outside (0, 1)",
            i + 1
        ));
    }
    let log_p: Vec<f64> = powers.iter().map(|p| p.ln()).collect();
    let (mean_lp, std_lp) = mean_std(&log_p);
    let mean: Vec<f64> = alphas_cumprod
        .iter()
        .map(|&a| mean_lp + a.ln() - (-a).ln_1p())
        .collect();
    let delta = (0..mean.len())
        .map(|i| {
            if i == 0 {
                f64::NAN
            } else {
                mean[i] - mean[i - 1]
            }
        })
        .collect();
    Ok(SnrCurve {
        label,
        t: (1..=alphas_cumprod.len()).collect(),
        std: vec![std_lp; mean.len()],
        mean,
        delta,
        n_images: powers.len(),
    })
}

impl SnrCurve {
    /// Number of steps T.
    pub fn total_steps(&self) -> usize {
        self.t.len()
    }

    /// The zero crossing and the log-SNR at 10% of the steps.
    pub fn summary(&self) -> SnrSummary {
        let total = self.total_steps();
        let zero = self
            .t
            .iter()
            .zip(&self.mean)
            .find(|(_, m)| **m < 0.0)
            .map(|(t, _)| *t);
        let t10 = ((0.1 * total as f64).round() as usize).clamp(1, total.max(1));
        SnrSummary {
            zero_crossing_t: zero,
            zero_crossing_fraction: zero.map(|t| t as f64 / total as f64),
            t_10pct: t10,
            log_snr_at_10pct: self.mean.get(t10 - 1).copied().unwrap_or(f64::NAN),
            total_steps: total,
            n_images: self.n_images,
        }
    }
}

fn check_curves(curves: &[SnrCurve]) -> Result<()> {
    if curves.is_empty() {
        return Err(invalid!("no log-SNR curves to write"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in curves {
        let n = c.t.len();
        if n == 0 || c.mean.len() != n || c.std.len() != n || c.delta.len() != n {
            return Err(invalid!(
                "log-SNR curve '{}': t, mean, std and delta must have the same non-zero length",
                c.label
            ));
        }
        if !seen.insert(c.label.as_str()) {
            return Err(invalid!("duplicate log-SNR curve label '{}'", c.label));
        }
    }
    Ok(())
}

/// The curves as a CSV table `label,t,mean,std,delta`, one block of T rows per curve (delta at t = 1
/// is an empty cell).
pub fn snr_table(curves: &[SnrCurve]) -> Table {
    let mut table = Table::new(["label", "t", "mean", "std", "delta"]);
    for c in curves {
        for i in 0..c.t.len() {
            let d = if c.delta[i].is_nan() {
                String::new()
            } else {
                c.delta[i].to_string()
            };
            table.push([
                c.label.clone(),
                c.t[i].to_string(),
                c.mean[i].to_string(),
                c.std[i].to_string(),
                d,
            ]);
        }
    }
    table
}

/// The two-panel figure: mean log-SNR with a +-1 std band and a line at 0 (left), the per-step
/// decrease `-delta` on a log axis (right; non-positive values are skipped). The x axis is t when
/// all curves have the same T, t/T otherwise.
pub fn snr_figure(curves: &[SnrCurve]) -> Figure {
    let same_t = curves.windows(2).all(|p| p[0].t.len() == p[1].t.len());
    let x_label = if same_t { "step t" } else { "t / T" };
    let mut left = Panel::new("log-SNR (mean +- std over images)", x_label, "log SNR");
    left.hlines.push(0.0);
    let mut right = Panel::new(
        "decrease of log-SNR per step (log scale)",
        x_label,
        "-delta log SNR",
    );
    right.log_y = true;
    for c in curves {
        let total = c.t.len() as f64;
        let xs: Vec<f64> =
            c.t.iter()
                .map(|&t| if same_t { t as f64 } else { t as f64 / total })
                .collect();
        let lo = c.mean.iter().zip(&c.std).map(|(m, s)| m - s).collect();
        let hi = c.mean.iter().zip(&c.std).map(|(m, s)| m + s).collect();
        left = left.with(Series::new(&c.label, xs.clone(), c.mean.clone()).with_band(lo, hi));
        // Unnamed: the left panel's legend serves both (same colour order).
        let drop = c.delta.iter().map(|d| -d).collect();
        right = right.with(Series::new("", xs, drop));
    }
    Figure::new(vec![left, right])
}

/// Writes `snr.csv` ([`snr_table`]), `snr.png` ([`snr_figure`]) and `summary.json` (label ->
/// [`SnrSummary`]) into `dir`, creating it. Errors on no curves, duplicate labels or ragged curves.
pub fn write_snr_outputs(dir: &Path, curves: &[SnrCurve]) -> Result<()> {
    check_curves(curves)?;
    write_atomic(dir.join("snr.csv"), snr_table(curves).to_csv().as_bytes())?;
    snr_figure(curves).save_png(dir.join("snr.png"))?;
    let summary: BTreeMap<&str, SnrSummary> = curves
        .iter()
        .map(|c| (c.label.as_str(), c.summary()))
        .collect();
    write_json(dir.join("summary.json"), &summary)?;
    Ok(())
}

//! Statistics of the reconstruction analysis (paper Figure 2): how well `x0` is recovered from
//! `x_t`, measured by MAE and MS-SSIM, per data set and step. No model here: the caller supplies the
//! originals and reconstructions as flat NCHW `f32` batches in [-1, 1].
//!
//! MAE is reported on the [0, 1] pixel scale, i.e. `mean |a - b| / 2` for images in [-1, 1], so the
//! paper's 0.1 threshold reads "10% of the pixel range". MS-SSIM uses [`MsSsimOptions::default`]
//! (data_range 2, data_min -1: the standard MS-SSIM of the images mapped to [0, 1], with the
//! small-image adaptation of [`crate::ssim::ms_ssim_plan`]).

use crate::error::{invalid, Result};
use crate::ssim::{batch_mean_std, ms_ssim, MsSsimOptions};
use daed_io::atomic::write_atomic;
use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{write_json, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// MAE threshold of the summary (on the [0, 1] pixel scale).
pub const MAE_THRESHOLD: f64 = 0.1;
/// MS-SSIM threshold of the summary.
pub const MSSSIM_THRESHOLD: f64 = 0.9;

/// Reconstruction quality of one data set at one step, as mean and population std over images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconPoint {
    /// Data set name (one line per data set in the plot).
    pub dataset: String,
    /// The step t from which `x0` was reconstructed.
    pub t: usize,
    /// Mean over images of the per-image MAE on the [0, 1] pixel scale.
    pub mae_mean: f64,
    /// Population std over images of the per-image MAE.
    pub mae_std: f64,
    /// Mean over images of the per-image MS-SSIM.
    pub msssim_mean: f64,
    /// Population std over images of the per-image MS-SSIM.
    pub msssim_std: f64,
}

/// Per data set: the first step where the mean MAE exceeds 0.1 and where the mean MS-SSIM drops
/// below 0.9 (`None`: never, among the points given).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconSummary {
    /// First t with `mae_mean > 0.1`.
    pub first_t_mae_above_0_1: Option<usize>,
    /// First t with `msssim_mean < 0.9`.
    pub first_t_msssim_below_0_9: Option<usize>,
    /// Total number of diffusion steps T (for reading t as a fraction).
    pub total_steps: usize,
}

/// MAE and MS-SSIM statistics of `recons` against `originals` (flat NCHW batches of `c x h x w`
/// images in [-1, 1]) at step `t`. Errors on mismatched or empty batches and images too small for
/// MS-SSIM.
pub fn recon_point(
    dataset: impl Into<String>,
    t: usize,
    originals: &[f32],
    recons: &[f32],
    c: usize,
    h: usize,
    w: usize,
) -> Result<ReconPoint> {
    let opts = MsSsimOptions::default();
    let mae = batch_mean_std(originals, recons, c, h, w, |a, b| {
        let s: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum();
        Ok(s / (2.0 * a.len() as f64))
    })?;
    let ms = batch_mean_std(originals, recons, c, h, w, |a, b| {
        ms_ssim(a, b, c, h, w, &opts)
    })?;
    Ok(ReconPoint {
        dataset: dataset.into(),
        t,
        mae_mean: mae.mean,
        mae_std: mae.std,
        msssim_mean: ms.mean,
        msssim_std: ms.std,
    })
}

/// The points grouped by data set (in order of first appearance), each group sorted by t.
fn by_dataset(points: &[ReconPoint]) -> Vec<(&str, Vec<&ReconPoint>)> {
    let mut groups: Vec<(&str, Vec<&ReconPoint>)> = Vec::new();
    for p in points {
        match groups.iter_mut().find(|(d, _)| *d == p.dataset) {
            Some((_, g)) => g.push(p),
            None => groups.push((p.dataset.as_str(), vec![p])),
        }
    }
    for (_, g) in &mut groups {
        g.sort_by_key(|p| p.t);
    }
    groups
}

/// Per data set (sorted by name) the first steps crossing the thresholds (points sorted by t).
pub fn recon_summary(points: &[ReconPoint], total_steps: usize) -> BTreeMap<String, ReconSummary> {
    by_dataset(points)
        .into_iter()
        .map(|(d, g)| {
            let first = |f: &dyn Fn(&ReconPoint) -> bool| g.iter().find(|p| f(p)).map(|p| p.t);
            let s = ReconSummary {
                first_t_mae_above_0_1: first(&|p| p.mae_mean > MAE_THRESHOLD),
                first_t_msssim_below_0_9: first(&|p| p.msssim_mean < MSSSIM_THRESHOLD),
                total_steps,
            };
            (d.to_string(), s)
        })
        .collect()
}

/// The CSV text: a comment line `# mae on [0,1] pixel scale ...`, then
/// `dataset,t,mae_mean,mae_std,msssim_mean,msssim_std`, points grouped by data set and sorted by t.
pub fn recon_csv(points: &[ReconPoint]) -> String {
    let mut table = Table::new([
        "dataset",
        "t",
        "mae_mean",
        "mae_std",
        "msssim_mean",
        "msssim_std",
    ]);
    for (_, g) in by_dataset(points) {
        for p in g {
            table.push([
                p.dataset.clone(),
                p.t.to_string(),
                p.mae_mean.to_string(),
                p.mae_std.to_string(),
                p.msssim_mean.to_string(),
                p.msssim_std.to_string(),
            ]);
        }
    }
    format!(
        "# mae on [0,1] pixel scale (|x0 - recon| / 2 for images in [-1,1]); ms-ssim of the images on [0,1] (data_range 1)\n{}",
        table.to_csv()
    )
}

/// The two-panel figure: MAE (left) and MS-SSIM (right) against t/T, one line per data set with a
/// +-1 std band and dashed lines at the 0.1 / 0.9 thresholds.
pub fn recon_figure(points: &[ReconPoint], total_steps: usize) -> Figure {
    let mut mae = Panel::new("reconstruction MAE ([0,1] pixel scale)", "t / T", "MAE");
    mae.hlines.push(MAE_THRESHOLD);
    let mut ms = Panel::new("reconstruction MS-SSIM", "t / T", "MS-SSIM");
    ms.hlines.push(MSSSIM_THRESHOLD);
    for (d, g) in by_dataset(points) {
        let xs: Vec<f64> = g.iter().map(|p| p.t as f64 / total_steps as f64).collect();
        let band = |m: fn(&ReconPoint) -> (f64, f64)| -> Series {
            let (ys, sd): (Vec<f64>, Vec<f64>) = g.iter().map(|p| m(p)).unzip();
            let lo = ys.iter().zip(&sd).map(|(y, s)| y - s).collect();
            let hi = ys.iter().zip(&sd).map(|(y, s)| y + s).collect();
            Series::new(d, xs.clone(), ys).with_band(lo, hi)
        };
        mae = mae.with(band(|p| (p.mae_mean, p.mae_std)));
        ms = ms.with(band(|p| (p.msssim_mean, p.msssim_std)));
    }
    Figure::new(vec![mae, ms])
}

/// Writes `recon.csv` ([`recon_csv`]), `recon.png` ([`recon_figure`]) and `summary.json` (data set
/// -> [`ReconSummary`]) into `dir`. Errors on no points, `total_steps` = 0, a `t` above
/// `total_steps`, or a repeated (data set, t) pair.
pub fn write_recon_outputs(dir: &Path, points: &[ReconPoint], total_steps: usize) -> Result<()> {
    if points.is_empty() {
        return Err(invalid!("no reconstruction points to write"));
    }
    if total_steps == 0 {
        return Err(invalid!("total_steps must be > 0"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in points {
        if p.t > total_steps {
            return Err(invalid!(
                "reconstruction point '{}' t={} is beyond total_steps {total_steps}",
                p.dataset,
                p.t
            ));
        }
        if !seen.insert((p.dataset.as_str(), p.t)) {
            return Err(invalid!(
                "duplicate reconstruction point '{}' t={}",
                p.dataset,
                p.t
            ));
        }
    }
    write_atomic(dir.join("recon.csv"), recon_csv(points).as_bytes())?;
    recon_figure(points, total_steps).save_png(dir.join("recon.png"))?;
    write_json(
        dir.join("summary.json"),
        &recon_summary(points, total_steps),
    )?;
    Ok(())
}

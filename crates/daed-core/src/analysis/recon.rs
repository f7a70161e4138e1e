//! Reconstruction error (Figures 2 and 3): noise x0 to step t, run the backward process from t
//! down to 0, compare with x0 (MAE on the [0,1] scale, MS-SSIM).
use burn::tensor::Device;
use daed_eval::recon::{recon_point, ReconPoint};
use daed_io::images::ImageSet;

use super::{image_batches, ImageBatch};
use crate::diffusion::GaussianDiffusion;
use crate::nn::EpsModel;
use crate::rng::{Stream, RECON_CHAINS};
use crate::sample::{noise, p_sample_loop_from, SampleOptions};
use crate::tensor_io::to_vec;
use crate::{Error, Result};

/// The steps (1-based, as in the paper) of a grid of `points` over the first `until` of T.
pub fn step_grid(total: usize, until: f64, points: usize) -> Result<Vec<usize>> {
    if !(until > 0.0 && until <= 1.0) {
        return Err(Error::Invalid(format!(
            "--until must be in (0, 1], got {until}"
        )));
    }
    if points == 0 {
        return Err(Error::Invalid("--points must be at least 1".into()));
    }
    let last = ((total as f64 * until).round() as usize).clamp(1, total);
    let mut v: Vec<usize> = (1..=points)
        .map(|k| ((last as f64 * k as f64 / points as f64).round() as usize).max(1))
        .collect();
    v.dedup();
    Ok(v)
}

/// Noises the images to each step of `steps` and reconstructs them; one point per step.
/// The same images and the same noise (keyed by `seed`) are used at every step.
#[allow(clippy::too_many_arguments)]
pub fn reconstruction_curve(
    model: &dyn EpsModel,
    d: &GaussianDiffusion,
    set: &ImageSet,
    label: &str,
    steps: &[usize],
    batch: usize,
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ReconPoint>> {
    let [c, h, w] = [set.channels, set.height, set.width];
    let n = set.len();
    let batches: Vec<ImageBatch> = image_batches(set, batch, device).collect();
    let originals: Vec<f32> = batches
        .iter()
        .flat_map(|b| b.host.iter().copied())
        .collect();
    let total_work: usize = steps.iter().sum::<usize>() * batches.len();
    let opts = SampleOptions::ancestral(seed);
    let mut done = 0;
    let mut points = Vec::new();
    for &t1 in steps {
        let t = t1 - 1; // 0-based step index
        let mut recons = Vec::with_capacity(n * c * h * w);
        for ib in &batches {
            let b = ib.x0.dims()[0];
            let stream = Stream::AnalysisNoise {
                batch: ib.index,
                t: 0,
            };
            let eps = noise([b, c, h, w], seed, stream, device);
            let xt = d.q_sample(ib.x0.clone(), &vec![t; b], eps);
            let base = done;
            let x = p_sample_loop_from(
                model,
                d,
                xt,
                t,
                &opts,
                RECON_CHAINS + ib.index,
                &mut |k, _| progress(base + k, total_work),
            );
            done += t1;
            recons.extend(to_vec(x.reshape([b * c * h * w]))?);
        }
        points.push(recon_point(label, t1, &originals, &recons, c, h, w)?);
    }
    Ok(points)
}

/// Reconstruction curves of several sets (the first usually the model's own data) on the same
/// grid of steps; `progress(name, done, total)` per set.
#[allow(clippy::too_many_arguments)]
pub fn reconstruction_curves(
    model: &dyn EpsModel,
    d: &GaussianDiffusion,
    sets: &[(String, ImageSet)],
    steps: &[usize],
    batch: usize,
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<ReconPoint>> {
    let mut points = Vec::new();
    for (name, set) in sets {
        let mut tick = |k, total| progress(name, k, total);
        points.extend(reconstruction_curve(
            model, d, set, name, steps, batch, seed, device, &mut tick,
        )?);
    }
    Ok(points)
}

//! Data-parallel gradients: a step's batch split across devices, each part run by a replica of
//! the model on its own thread, the gradients summed on the main device.
//!
//! This is burn's multi-device strategy (burn-train's `MultiDeviceOptim::OptimMainDevice`): the
//! replicas are `fork`s of the model (the same parameter ids, fresh autodiff leaves on their
//! device), `GradientsParams::to_device` brings each part's gradients to the main device and
//! the optimiser steps once there; the next step forks the updated weights again. Each part's
//! loss is already divided by the whole batch size, so the sum is the whole batch's gradient.
//!
//! The parts are contiguous rows of the batch, each run in micro-batches as one device would,
//! and summed in device order; with dropout keyed per sample ([`crate::nn::dropout`]), two
//! devices compute exactly what one device does with `micro_batch` = half the batch.
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::ExperimentConfig;
use crate::diffusion::GaussianDiffusion;
use crate::model::DiffusionNet;
use crate::nn::dropout;
use crate::precision::{self, Precision};
use crate::tensor_io::to_vec;
use crate::Result;

/// One training step's batch, on the main device, sorted by diffusion step.
pub(super) struct StepBatch<'a> {
    /// Clean images [B, C, H, W].
    pub x0: Tensor<4>,
    /// Their noise.
    pub eps: Tensor<4>,
    /// Diffusion step index per image.
    pub ts: &'a [usize],
    /// Importance weight per image.
    pub ws: &'a [f64],
    /// The run's seed and the optimiser step (they key dropout).
    pub seed: u64,
    /// The optimiser step.
    pub step: u64,
    /// The arithmetic of the network's passes, forward and backward.
    pub precision: Precision,
}

/// The whole batch's gradients and per-sample values, in batch order.
#[derive(Default)]
pub(super) struct BatchGrads {
    /// Gradients of the batch-mean weighted loss (on the main device).
    pub grads: Option<GradientsParams>,
    /// Weighted per-sample losses.
    pub weighted: Vec<f32>,
    /// Unweighted per-sample losses.
    pub raw: Vec<f32>,
    /// Per-sample epsilon MSE, when part of the objective.
    pub mse: Vec<f32>,
    /// Per-sample VLB term, when computed.
    pub vb: Vec<f32>,
}

/// Rows `first..first + len` of the batch, on `device`, where they run.
struct Part {
    first: usize,
    len: usize,
    device: Device,
    /// The part's images and noise, on its device.
    x0: Tensor<4>,
    eps: Tensor<4>,
}

/// Contiguous spans `(first, len)` of a batch of `b`, one per device, sizes differing by at
/// most one (the first ones larger). Needs `b >= n`, checked by the config.
fn split(b: usize, n: usize) -> Vec<(usize, usize)> {
    let n = n.max(1);
    let mut first = 0;
    (0..n)
        .map(|i| {
            let len = b / n + usize::from(i < b % n);
            first += len;
            (first - len, len)
        })
        .collect()
}

/// The batch's parts, their rows copied to their devices here, on the calling thread.
fn parts(batch: &StepBatch, devices: &[Device]) -> Vec<Part> {
    let b = batch.ts.len();
    let rows = |t: &Tensor<4>, first: usize, len: usize, device: &Device| match len == b {
        true => t.clone(),
        false => t.clone().narrow(0, first, len).to_device(device),
    };
    split(b, devices.len())
        .into_iter()
        .zip(devices)
        .map(|((first, len), device)| Part {
            first,
            len,
            device: device.clone(),
            x0: rows(&batch.x0, first, len, device),
            eps: rows(&batch.eps, first, len, device),
        })
        .collect()
}

/// Gradients of the whole batch: part 0 on the calling thread with `model` itself, the others
/// on threads of their own with forked replicas; summed on the main device in part order.
pub(super) fn gradients<M: DiffusionNet>(
    model: &M,
    cfg: &ExperimentConfig,
    diffusion: &GaussianDiffusion,
    batch: &StepBatch,
    devices: &[Device],
) -> Result<BatchGrads> {
    let mut parts = parts(batch, devices).into_iter();
    let main = parts.next().expect("at least one device");
    let main_device = main.device.clone();
    let results: Vec<Result<BatchGrads>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .map(|p| {
                let replica = model.clone().fork(&p.device);
                s.spawn(move || run_part(&replica, cfg, diffusion, batch, p))
            })
            .collect();
        let mut results = vec![run_part(model, cfg, diffusion, batch, main)];
        for h in handles {
            results.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        results
    });
    let mut acc = GradientsAccumulator::<M>::new();
    let mut all = BatchGrads::default();
    for r in results {
        let mut r = r?;
        let grads = r.grads.take().expect("every part has rows");
        acc.accumulate(model, grads.to_device(&main_device, model));
        all.append(r);
    }
    all.grads = Some(acc.grads());
    Ok(all)
}

impl BatchGrads {
    fn append(&mut self, other: BatchGrads) {
        self.weighted.extend(other.weighted);
        self.raw.extend(other.raw);
        self.mse.extend(other.mse);
        self.vb.extend(other.vb);
    }
}

/// One part's gradients, in micro-batches of `train.micro_batch` (0: the whole part at once),
/// at the batch's precision on this thread.
fn run_part<M: DiffusionNet>(
    model: &M,
    cfg: &ExperimentConfig,
    diffusion: &GaussianDiffusion,
    batch: &StepBatch,
    part: Part,
) -> Result<BatchGrads> {
    precision::scope(batch.precision, || {
        part_micro_batches(model, cfg, diffusion, batch, part)
    })
}

/// [`run_part`]'s micro-batches.
fn part_micro_batches<M: DiffusionNet>(
    model: &M,
    cfg: &ExperimentConfig,
    diffusion: &GaussianDiffusion,
    batch: &StepBatch,
    part: Part,
) -> Result<BatchGrads> {
    let b = batch.ts.len();
    let mb = match cfg.train.micro_batch {
        0 => part.len,
        m => m.min(part.len),
    };
    let rows = |t: &Tensor<4>, at: usize, n: usize| match n == part.len {
        true => t.clone(),
        false => t.clone().narrow(0, at, n),
    };
    let mut acc = GradientsAccumulator::<M>::new();
    let mut out = BatchGrads::default();
    for at in (0..part.len).step_by(mb.max(1)) {
        let n = mb.min(part.len - at);
        let (x0, eps) = (rows(&part.x0, at, n), rows(&part.eps, at, n));
        let s = part.first + at;
        let ts = &batch.ts[s..s + n];
        let terms = dropout::scope(batch.seed, batch.step, s, || {
            model.losses(cfg, diffusion, x0, ts, eps)
        });
        let wv: Vec<f32> = batch.ws[s..s + n].iter().map(|&x| x as f32).collect();
        let wt: Tensor<1> = Tensor::from_data(TensorData::new(wv, [n]), &part.device);
        let per_sample = terms.loss.clone() * wt;
        let loss = per_sample.clone().sum().div_scalar(b as f64);
        acc.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
        out.weighted.extend(to_vec(per_sample.inner())?);
        out.raw.extend(to_vec(terms.loss.inner())?);
        if let Some(m) = terms.mse {
            out.mse.extend(to_vec(m.inner())?);
        }
        if let Some(v) = terms.vb {
            out.vb.extend(to_vec(v.inner())?);
        }
    }
    out.grads = Some(acc.grads());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_batch_in_order() {
        assert_eq!(split(7, 3), [(0, 3), (3, 2), (5, 2)]);
        assert_eq!(split(4, 1), [(0, 4)]);
    }
}

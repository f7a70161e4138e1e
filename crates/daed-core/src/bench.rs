//! The timing harness behind `daed bench`: one training step, one sampling forward and the
//! FID Inception's features, each warmed up and then timed several times, with the median, the
//! peak resident memory and how busy the cores were.
//!
//! The same cases exist in `bench/bench_torch.py`, so the two can run side by side.
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use daed_io::ImageSet;
use serde::Serialize;

use crate::config::ExperimentConfig;
use crate::metrics::inception::FidInception;
use crate::model::Build;
use crate::nn::UNet;
use crate::rng::{Rng, Stream};
use crate::train::Trainer;
use crate::{Error, Result};

/// What a case times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchKind {
    /// Forward, backward, AdamW and EMA on one batch (the trainer's own step).
    Train,
    /// One forward of the network without gradients (one step of a sampler, as the samplers run
    /// it: on flex the two halves of the batch on two threads).
    Sample,
    /// The FID Inception-v3 forward on `[B, 3, 299, 299]` inputs (pool3 and friends).
    Inception,
}

/// How many runs: `warmup` untimed, then `runs` timed.
#[derive(Clone, Copy, Debug)]
pub struct Repeats {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs (the median is reported).
    pub runs: usize,
}

/// The figures of one case.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// The case's name (`tiny`, `fmnist`, `cifar10`, `inception`, or a config's name).
    pub model: String,
    /// What was timed.
    pub kind: BenchKind,
    /// Trainable parameters of the network (U-Nets; the Inception's batch norm is folded).
    pub params: Option<usize>,
    /// Batch size.
    pub batch: usize,
    /// Seconds of each timed run.
    pub times_s: Vec<f64>,
    /// Median of `times_s`.
    pub median_s: f64,
    /// Images per second at the median.
    pub images_per_s: f64,
    /// Peak resident memory of the process during the case (Linux), in MiB.
    pub peak_rss_mib: Option<f64>,
    /// CPU time over wall time during the timed runs (2.0 = both of two cores busy).
    pub cores_busy: Option<f64>,
}

/// The median of a non-empty list.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Resets the kernel's peak-RSS counter of this process (Linux; elsewhere a no-op).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the last reset, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU seconds (user + system) this process has used (Linux), for the cores-busy figure.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs `f` `warmup + runs` times and collects the figures of the timed runs.
fn measure(
    model: &str,
    kind: BenchKind,
    params: Option<usize>,
    batch: usize,
    reps: Repeats,
    mut f: impl FnMut() -> Result<()>,
) -> Result<BenchResult> {
    if reps.runs == 0 {
        return Err(Error::Invalid("bench: --runs must be at least 1".into()));
    }
    reset_peak_rss();
    for _ in 0..reps.warmup {
        f()?;
    }
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let mut times_s = Vec::with_capacity(reps.runs);
    for _ in 0..reps.runs {
        let t = Instant::now();
        f()?;
        times_s.push(t.elapsed().as_secs_f64());
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cores_busy = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) if wall > 0.0 => Some((b - a) / wall),
        _ => None,
    };
    let median_s = median(&times_s);
    Ok(BenchResult {
        model: model.to_string(),
        kind,
        params,
        batch,
        times_s,
        median_s,
        images_per_s: batch as f64 / median_s,
        peak_rss_mib: peak_rss_mib(),
        cores_busy,
    })
}

/// The image shape `[C, H, W]` a config's dataset has.
pub fn image_shape(cfg: &ExperimentConfig) -> Result<[usize; 3]> {
    let name: daed_io::datasets::DatasetName = cfg.data.dataset.parse()?;
    let (c, h, w) = name.shape().ok_or_else(|| {
        Error::Invalid(format!(
            "data.dataset: `{}` has no fixed image size to benchmark with",
            cfg.data.dataset
        ))
    })?;
    Ok([c, h, w])
}

/// Random images of `shape`, the same for every run with `seed`.
fn synthetic_images(n: usize, shape: [usize; 3], seed: u64) -> Result<ImageSet> {
    let [c, h, w] = shape;
    let mut rng = Rng::stream(seed, Stream::BenchImages);
    let pixels = (0..n * c * h * w)
        .map(|_| (rng.next_u64() >> 56) as u8)
        .collect();
    Ok(ImageSet::new(c, h, w, pixels, None)?)
}

/// Times the trainer's step of the DDGM `cfg` at `batch` (on synthetic images of its size, at
/// `train.precision`).
pub fn train_step(
    name: &str,
    cfg: &ExperimentConfig,
    batch: usize,
    reps: Repeats,
) -> Result<BenchResult> {
    let mut cfg = cfg.clone();
    cfg.model = UNet::KIND;
    cfg.train.batch_size = batch;
    let shape = image_shape(&cfg)?;
    let data = synthetic_images(batch, shape, cfg.train.seed)?;
    let mut trainer = Trainer::<UNet>::new(cfg, data)?;
    let params = Some(trainer.model.num_params());
    measure(name, BenchKind::Train, params, batch, reps, || {
        trainer.train_step().map(|_| ())
    })
}

/// Times one forward of the DDGM `cfg`'s network without gradients at `batch` (at
/// `sample.precision`).
pub fn sample_forward(
    name: &str,
    cfg: &ExperimentConfig,
    batch: usize,
    reps: Repeats,
) -> Result<BenchResult> {
    let device = crate::device::resolve(&cfg.device)?;
    device.seed(cfg.train.seed);
    let [c, h, w] = image_shape(cfg)?;
    let diffusion = UNet::process(cfg)?;
    let net = UNet::build(cfg, &diffusion, [c, h, w], &device)?;
    let params = Some(net.num_params());
    let steps = diffusion.num_steps();
    let ts: Vec<f32> = (0..batch).map(|i| ((i * 97) % steps) as f32).collect();
    let precision = cfg.sample.precision.resolve("sample.precision", &device)?;
    // As a sampler runs its steps: the weights' Winograd transforms kept from the warm-up on.
    daed_kernels::conv::frozen_weights(|| {
        measure(name, BenchKind::Sample, params, batch, reps, || {
            let x = Tensor::<4>::random([batch, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let y = crate::precision::scope(precision, || net.forward_inference(x, &ts));
            // Reading one value back waits for the whole forward (lazy backends).
            let _ = y.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();
            Ok(())
        })
    })
}

/// Times the FID Inception's forward on random `[batch, 3, 299, 299]` inputs in [-1, 1].
pub fn inception(weights: &Path, device: &str, batch: usize, reps: Repeats) -> Result<BenchResult> {
    let device = crate::device::resolve(device)?;
    let net = FidInception::open(weights, &device)?;
    measure("inception", BenchKind::Inception, None, batch, reps, || {
        let x = Tensor::<4>::random(
            [batch, 3, 299, 299],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let f = net.forward_inference(x);
        let _ = f.pool.slice([0..1, 0..1]).into_scalar::<f32>();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn peak_rss_grows_with_a_large_allocation() {
        reset_peak_rss();
        let before = peak_rss_mib();
        let v = vec![1u8; 64 << 20];
        std::hint::black_box(&v);
        let after = peak_rss_mib();
        if let (Some(a), Some(b)) = (before, after) {
            assert!(b >= a + 60.0, "peak {a} -> {b} MiB after touching 64 MiB");
        }
    }
}

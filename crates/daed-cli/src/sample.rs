//! `daed sample`: images from a checkpoint as a PNG grid and a guided-diffusion `.npz`.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use daed_core::precision::PrecisionChoice;
use daed_core::sample::SampleOptions;
use daed_core::train::Checkpoint;
use daed_io::images::ImageSet;

use crate::progress::bar;

#[derive(Args)]
pub struct SampleArgs {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    n: usize,
    #[command(flatten)]
    flags: SamplingFlags,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Device (auto, flex, torch, cuda).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory (default: CHECKPOINT/samples).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The class of every image (class-conditional models, e.g. imported with class_cond).
    #[arg(long)]
    class: Option<usize>,
    /// Arithmetic: f32 or bf16 (mixed precision on CPUs with AVX512-BF16; files tagged _bf16);
    /// default: the run's sample.precision.
    #[arg(long)]
    precision: Option<PrecisionChoice>,
}

/// How to sample, as `daed sample` and `daed eval curve` take it.
#[derive(Args)]
pub(crate) struct SamplingFlags {
    /// Sampling steps (respacing); default: every step of the model.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// DDIM updates (deterministic with --eta 0).
    #[arg(long)]
    pub(crate) ddim: bool,
    /// DDIM eta.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) eta: f64,
    /// Use the raw weights instead of the EMA (files tagged _raw).
    #[arg(long)]
    pub(crate) no_ema: bool,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

impl SamplingFlags {
    /// The sampling options these flags describe.
    pub(crate) fn options(&self) -> Result<SampleOptions> {
        Ok(SampleOptions::from_flags(
            self.steps, self.ddim, self.eta, self.seed,
        )?)
    }
}

pub fn run(a: SampleArgs) -> Result<()> {
    if a.n == 0 || a.batch_size == 0 {
        anyhow::bail!("--n and --batch-size must be at least 1");
    }
    let ck = Checkpoint::open(&a.checkpoint)?;
    let device = daed_core::device::resolve(&a.device)?;
    let ema = !a.flags.no_ema;
    let mut opts = a.flags.options()?;
    opts.class = a.class;
    opts.precision = a.precision.unwrap_or(ck.config.sample.precision);
    opts.precision.resolve("--precision", &device)?;
    let shape = ck.state.image_shape;
    daed_core::memory::check_sampling(&ck.config, shape, a.n, a.batch_size)?;
    let out = a.out.clone().unwrap_or_else(|| ck.dir.join("samples"));
    let npz = out.join(format!("{}.npz", opts.file_tag(a.n, ema)));
    let keep = daed_core::draw::keep_beside(&npz, &ck, ema, a.n, a.batch_size, &opts, &device)?;
    let kept = keep.open()?;
    let before = keep.seconds()?;
    if kept > 0 {
        println!(
            "continuing: {kept} of {} batches were drawn before (in {before:.1} s) and are kept in {}",
            a.n.div_ceil(a.batch_size),
            keep.dir().display()
        );
    }
    opts.keep = Some(keep.clone());
    let start = Instant::now();
    let mut pb: Option<indicatif::ProgressBar> = None;
    let mut progress = |k: usize, total: usize| {
        let p = pb.get_or_insert_with(|| bar(total as u64, "sample"));
        p.set_position(k as u64);
    };
    let (imgs, steps) =
        daed_core::draw::sample(&ck, ema, a.n, a.batch_size, &opts, &device, &mut progress)?;
    if let Some(p) = pb {
        p.finish();
    }
    let secs = start.elapsed().as_secs_f64();
    let set = ImageSet::from_f32(shape[0], shape[1], shape[2], &imgs);
    let labels = a.class.map(|c| vec![c as i64; set.len()]);
    let png = daed_core::draw::save(&npz, &set, labels.as_deref())?;
    keep.finish()?;
    let steps = match opts.respacing.as_str() {
        "" => steps.to_string(),
        r => r.to_string(),
    };
    let earlier = (before > 0.0).then(|| format!(", {before:.1} s of them in earlier runs"));
    println!(
        "{} images in {:.1} s{} ({steps} steps from step {} of the model)",
        a.n,
        before + secs,
        earlier.unwrap_or_default(),
        ck.state.step
    );
    println!("grid: {}", png.display());
    println!("npz:  {} (arr_0: uint8 NHWC)", npz.display());
    Ok(())
}

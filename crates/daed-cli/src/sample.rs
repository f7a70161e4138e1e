//! `daed sample`: images from a checkpoint as a PNG grid and a guided-diffusion `.npz`.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use daed_core::config::ModelKind;
use daed_core::daed::DaedNets;
use daed_core::model::DiffusionNet;
use daed_core::nn::UNet;
use daed_core::precision::{Precision, PrecisionChoice};
use daed_core::sample::SampleOptions;
use daed_core::train::Checkpoint;
use daed_io::images::ImageSet;
use daed_io::npz::{write_npz, NpyArray, NpyData};

use crate::progress::bar;

#[derive(Args)]
pub struct SampleArgs {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Sampling steps (respacing); default: every step of the model.
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM updates (deterministic with --eta 0).
    #[arg(long)]
    ddim: bool,
    /// DDIM eta.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// Use the raw weights instead of the EMA.
    #[arg(long)]
    no_ema: bool,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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

pub fn run(a: SampleArgs) -> Result<()> {
    if a.n == 0 || a.batch_size == 0 {
        anyhow::bail!("--n and --batch-size must be at least 1");
    }
    let ck = Checkpoint::open(&a.checkpoint)?;
    let device = daed_core::device::resolve(&a.device)?;
    let mut opts = SampleOptions::from_flags(a.steps, a.ddim, a.eta, a.seed)?;
    opts.class = a.class;
    opts.precision = a.precision.unwrap_or(ck.config.sample.precision);
    let precision = opts.precision.resolve("--precision", &device)?;
    let shape = ck.state.image_shape;
    daed_core::memory::check_sampling(&ck.config, shape, a.n, a.batch_size)?;
    let start = Instant::now();
    let mut pb: Option<indicatif::ProgressBar> = None;
    let mut progress = |k: usize, total: usize| {
        let p = pb.get_or_insert_with(|| bar(total as u64, "sample"));
        p.set_position(k as u64);
    };
    let (imgs, steps) = match ck.config.model {
        ModelKind::Ddgm => draw::<UNet>(&ck, &a, &opts, &device, &mut progress)?,
        ModelKind::Daed => draw::<DaedNets>(&ck, &a, &opts, &device, &mut progress)?,
    };
    if let Some(p) = pb {
        p.finish();
    }
    let secs = start.elapsed().as_secs_f64();
    let set = ImageSet::from_f32(shape[0], shape[1], shape[2], &imgs);
    let out = a.out.clone().unwrap_or_else(|| ck.dir.join("samples"));
    let tag = file_tag(&a, &opts, precision);
    let png = out.join(format!("{tag}.png"));
    daed_core::train::trainer::save_grid(&png, &set.take(a.n.min(256)))?;
    let npz = out.join(format!("{tag}.npz"));
    write_samples(&npz, &set, a.class)?;
    println!(
        "{} images in {secs:.1} s ({} steps from step {} of the model)",
        a.n,
        if opts.respacing.is_empty() {
            steps.to_string()
        } else {
            opts.respacing.clone()
        },
        ck.state.step
    );
    println!("grid: {}", png.display());
    println!("npz:  {} (arr_0: uint8 NHWC)", npz.display());
    Ok(())
}

/// The samples' file name: count, method, steps, seed, class and, for bf16, `_bf16`.
fn file_tag(a: &SampleArgs, opts: &SampleOptions, precision: Precision) -> String {
    format!(
        "n{}_{}{}_seed{}{}{}",
        a.n,
        opts.method.name(),
        a.steps.map(|s| s.to_string()).unwrap_or_default(),
        a.seed,
        a.class.map(|c| format!("_class{c}")).unwrap_or_default(),
        match precision {
            Precision::F32 => "",
            Precision::Bf16 => "_bf16",
        }
    )
}

/// The guided-diffusion `.npz`: `arr_0` uint8 NHWC, and `arr_1` the labels for a class (as its
/// image_sample.py writes them for a class-conditional model).
fn write_samples(npz: &std::path::Path, set: &ImageSet, class: Option<usize>) -> Result<()> {
    let arr = NpyArray {
        shape: vec![set.len(), set.height, set.width, set.channels],
        data: NpyData::U8(set.to_nhwc_u8()),
    };
    match class {
        Some(c) => {
            let labels = NpyArray {
                shape: vec![set.len()],
                data: NpyData::I64(vec![c as i64; set.len()]),
            };
            write_npz(npz, &[("arr_0", &arr), ("arr_1", &labels)])?
        }
        None => write_npz(npz, &[("arr_0", &arr)])?,
    }
    Ok(())
}

/// Loads the checkpoint as an `M` and draws the images; returns them and the model's step count.
fn draw<M: DiffusionNet>(
    ck: &Checkpoint,
    a: &SampleArgs,
    opts: &SampleOptions,
    device: &daed_core::burn::tensor::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f32>, usize)> {
    let (net, d) = ck.load_model::<M>(!a.no_ema, device)?;
    let imgs = net.sample(
        &d,
        ck.state.image_shape,
        a.n,
        a.batch_size,
        opts,
        device,
        progress,
    )?;
    Ok((imgs, d.num_steps()))
}

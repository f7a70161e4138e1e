//! `daed import`, `daed export`, `daed forward`: PyTorch models in and out.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use daed_core::port::{self, Repo, TorchFiles};
use daed_core::train::Checkpoint;

/// The PyTorch code bases daed reads.
#[derive(Clone, Copy, ValueEnum)]
pub enum RepoArg {
    /// openai/improved-diffusion (`model*.pt`, `ema_*.pt`).
    ImprovedDiffusion,
    /// KamilDeja/analysing_ddgm, the paper's code (also `*_part_1.pt` + `*_part_2.pt`).
    AnalysingDdgm,
}

impl From<RepoArg> for Repo {
    fn from(r: RepoArg) -> Self {
        match r {
            RepoArg::ImprovedDiffusion => Repo::ImprovedDiffusion,
            RepoArg::AnalysingDdgm => Repo::AnalysingDdgm,
        }
    }
}

#[derive(Args)]
pub struct ImportArgs {
    /// The code base the checkpoint comes from.
    repo: RepoArg,
    /// The flags exactly as given to the PyTorch scripts (MODEL_FLAGS DIFFUSION_FLAGS ...);
    /// what is not given takes that repo's defaults.
    #[arg(long, allow_hyphen_values = true)]
    flags: String,
    /// The network's weights (`model*.pt`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Its EMA weights (`ema_<rate>_<step>.pt`); without it the EMA is the weights.
    #[arg(long)]
    ema: Option<PathBuf>,
    /// The two-part DAED's DAE (`*_part_1.pt`).
    #[arg(long)]
    dae: Option<PathBuf>,
    /// The two-part DAED's generator (`*_part_2.pt`).
    #[arg(long)]
    generator: Option<PathBuf>,
    /// The dataset the run's analyses read (default: from the flags or the image shape).
    #[arg(long)]
    dataset: Option<String>,
    /// The run directory to create.
    #[arg(long)]
    out: PathBuf,
}

pub fn import(a: ImportArgs) -> Result<()> {
    let files = TorchFiles {
        model: a.model,
        ema: a.ema,
        dae: a.dae,
        generator: a.generator,
    };
    let r = port::import(
        a.repo.into(),
        &a.flags,
        &files,
        a.dataset.as_deref(),
        &a.out,
    )?;
    println!(
        "imported a {} for {:?} images ({} steps, {} schedule, dataset {})",
        r.config.model,
        r.shape,
        r.config.diffusion.steps,
        r.config.diffusion.schedule,
        r.config.data.dataset
    );
    for n in &r.notes {
        println!("note: {n}");
    }
    println!("checkpoint: {}", r.checkpoint.display());
    Ok(())
}

/// Export targets.
#[derive(Clone, Copy, ValueEnum)]
pub enum ExportTarget {
    /// improved-diffusion's UNetModel names and shapes (guided-diffusion's are the same).
    ImprovedDiffusion,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The format.
    target: ExportTarget,
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The .safetensors file to write (a DAED run writes <stem>_part_1 and _part_2).
    #[arg(long)]
    out: PathBuf,
    /// Export the raw weights instead of the EMA.
    #[arg(long)]
    no_ema: bool,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let ExportTarget::ImprovedDiffusion = a.target;
    let ck = Checkpoint::open(&a.checkpoint)?;
    let e = port::export(&ck, &a.out, !a.no_ema)?;
    for f in &e.files {
        println!("weights: {}", f.display());
    }
    println!("flags ({}): {}", e.repo.name(), e.flags_file.display());
    println!("{}", e.flags);
    for n in &e.notes {
        println!("note: {n}");
    }
    Ok(())
}

#[derive(Args)]
pub struct ForwardArgs {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// An .npz with `x` (float32 N x C x H x W), `t` (int64 step indices) and optionally `y`
    /// (int64 labels).
    #[arg(long)]
    input: PathBuf,
    /// The .npz to write: `out` (and `out_dae` for a DAED run).
    #[arg(long)]
    out: PathBuf,
    /// Use the raw weights instead of the EMA.
    #[arg(long)]
    no_ema: bool,
    /// Device (auto, flex, torch, cuda).
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn forward(a: ForwardArgs) -> Result<()> {
    let ck = Checkpoint::open(&a.checkpoint)?;
    let input = port::ForwardInput::read(&a.input)?;
    let device = daed_core::device::resolve(&a.device)?;
    let outs = port::forward(&ck, &input, !a.no_ema, &device)?;
    let refs: Vec<(&str, &daed_io::npz::NpyArray)> =
        outs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    daed_io::npz::write_npz(&a.out, &refs)?;
    for (k, v) in &outs {
        println!("{k}: {:?}", v.shape);
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

//! `daed train` and `daed demo`.
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use daed_core::config::{ExperimentConfig, ModelKind};
use daed_core::daed::DaedNets;
use daed_core::model::DiffusionNet;
use daed_core::nn::UNet;
use daed_core::precision::PrecisionChoice;
use daed_core::train::trainer::load_data;
use daed_core::train::Trainer;

use crate::progress::TrainBar;

#[derive(Args)]
pub struct TrainArgs {
    /// The experiment's TOML config.
    #[arg(long)]
    config: PathBuf,
    /// Resume: `latest` (this run's newest checkpoint) or a checkpoint / run directory.
    #[arg(long)]
    resume: Option<String>,
    /// Override train.steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Override the device (auto, flex, torch, cuda, cuda:N); trains on it alone.
    #[arg(long)]
    device: Option<String>,
    /// Data-parallel training on these devices, comma-separated (`cuda:0,cuda:1`; sets
    /// train.devices): each takes part of every batch, the update is one device's.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    devices: Option<Vec<String>>,
    /// Override train.precision: f32 or bf16 (mixed precision on CPUs with AVX512-BF16).
    #[arg(long)]
    precision: Option<PrecisionChoice>,
    /// Override the run directory (train.out_dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override the data path (data.path).
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let mut cfg = ExperimentConfig::load(&a.config)?;
    if let Some(s) = a.steps {
        cfg.train.steps = s;
    }
    if let Some(d) = a.device {
        cfg.device = d;
        cfg.train.devices.clear();
    }
    if let Some(d) = a.devices {
        cfg.train.devices = d;
    }
    if let Some(p) = a.precision {
        cfg.train.precision = p;
    }
    if let Some(o) = a.out {
        cfg.train.out_dir = Some(o);
    }
    if let Some(p) = a.data {
        cfg.data.path = Some(p);
    }
    cfg.validate()?;
    train_config(cfg, a.resume.as_deref())
}

fn train_config(cfg: ExperimentConfig, resume: Option<&str>) -> Result<()> {
    match cfg.model {
        ModelKind::Ddgm => train_as::<UNet>(cfg, resume),
        ModelKind::Daed => train_as::<DaedNets>(cfg, resume),
    }
}

fn train_as<M: DiffusionNet>(cfg: ExperimentConfig, resume: Option<&str>) -> Result<()> {
    let data = load_data(&cfg).context("loading the training data")?;
    eprintln!(
        "data: {} ({} images, {}x{}x{})",
        cfg.data.dataset,
        data.len(),
        data.channels,
        data.height,
        data.width
    );
    let run_dir = cfg.run_dir();
    let mut t = match resume {
        Some("latest") => Trainer::<M>::resume(cfg, data, &run_dir)?,
        Some(p) => Trainer::<M>::resume(cfg, data, std::path::Path::new(p))?,
        None => {
            if daed_core::train::checkpoint::list(&run_dir)?
                .last()
                .is_some()
            {
                anyhow::bail!(
                    "{} already holds checkpoints: pass --resume latest to continue, or --out DIR for a new run",
                    run_dir.display()
                );
            }
            Trainer::<M>::new(cfg, data)?
        }
    };
    eprintln!(
        "model: {} with {} parameters; run dir {}; starting at step {}",
        M::KIND,
        daed_core::burn::module::Module::num_params(&t.model),
        t.run_dir.display(),
        t.step
    );
    if t.cfg.train.precision != PrecisionChoice::F32 {
        eprintln!("precision: {} (train.precision)", t.precision().name());
    }
    if !t.cfg.train.devices.is_empty() {
        eprintln!(
            "data-parallel on {}: each takes part of every batch of {}",
            t.cfg.train.devices.join(", "),
            t.cfg.train.batch_size
        );
    }
    run_until_done_or_stopped(&mut t)
}

/// Trains `t` to its last step, or until Ctrl-C / SIGTERM (then with a checkpoint at the last
/// finished step, and exit status 130).
fn run_until_done_or_stopped<M: DiffusionNet>(t: &mut Trainer<M>) -> Result<()> {
    let start = Instant::now();
    let first = t.step;
    let stop = crate::progress::stop_on_signals()?;
    t.run(&mut TrainBar::new().stopping_on(Arc::clone(&stop)))?;
    let secs = start.elapsed().as_secs_f64();
    let done = t.step - first;
    if stop.load(Ordering::Relaxed) {
        eprintln!(
            "stopped by a signal after step {} ({done} steps in {secs:.1} s), with a checkpoint \
             there; continue with --resume latest",
            t.step
        );
        std::process::exit(130);
    }
    println!(
        "trained {done} steps in {secs:.1} s ({:.2} steps/s); outputs in {}",
        done as f64 / secs.max(1e-9),
        t.run_dir.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where to write the run (default: runs/demo, or runs/demo-2, -3, ... when taken). An
    /// existing, non-empty folder is refused: the demo never overwrites a run.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Training steps (the default takes a few minutes on 2 cores).
    #[arg(long)]
    steps: Option<u64>,
    /// Device (auto, flex, torch, cuda).
    #[arg(long)]
    device: Option<String>,
}

/// The tiny preset, compiled in so the demo needs no files.
const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");

/// A folder that does not exist or is empty.
fn is_free(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(!dir.exists(), |mut rd| rd.next().is_none())
}

/// The demo's run directory: `--out` if free, else the first free `runs/demo[-N]`.
fn demo_dir(out: Option<PathBuf>) -> Result<PathBuf> {
    match out {
        Some(o) if is_free(&o) => Ok(o),
        Some(o) => anyhow::bail!(
            "{} exists and is not empty: the demo writes a new run; pass another --out",
            o.display()
        ),
        None => (1..1000)
            .map(|i| match i {
                1 => PathBuf::from("runs/demo"),
                _ => PathBuf::from(format!("runs/demo-{i}")),
            })
            .find(|d| is_free(d))
            .context("runs/demo to runs/demo-999 are all taken: pass --out"),
    }
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let mut cfg = ExperimentConfig::from_toml(DEMO_CONFIG, "configs/demo.toml")?;
    let out = demo_dir(a.out)?;
    cfg.train.out_dir = Some(out.clone());
    if let Some(s) = a.steps {
        cfg.train.steps = s;
    }
    if let Some(d) = a.device {
        cfg.device = d;
    }
    let steps = cfg.train.steps;
    train_config(cfg, None)?;
    println!(
        "sample grid: {}",
        out.join("samples")
            .join(format!("step_{steps:08}.png"))
            .display()
    );
    println!("log: {}", out.join("log.jsonl").display());
    println!(
        "checkpoint: {} (try `daed sample --checkpoint {}`)",
        out.join("checkpoints").display(),
        out.display()
    );
    Ok(())
}

//! `daed`: train, sample and analyse diffusion models (DDGM and DAED) from the command line.
//!
//! A thin layer: it parses arguments and configs, calls daed-core, and prints what it returns.
mod analyze;
mod bench;
mod curve;
mod daed_cmd;
mod data;
mod doctor;
mod eval;
mod port;
mod progress;
mod reproduce;
mod sample;
mod switch;
mod train;

use clap::{Parser, Subcommand};
use daed_core::alloc::CachingAlloc;

/// Large freed tensors are kept for reuse (see `daed_core::alloc`); the cap is set in `main`.
#[global_allocator]
static ALLOC: CachingAlloc = CachingAlloc::new(0);

/// The allocator's cache cap: `DAED_ALLOC_CACHE_MB`, else half of the machine's memory.
fn alloc_cache_cap() -> usize {
    if let Some(mb) = std::env::var("DAED_ALLOC_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return mb << 20;
    }
    let total_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .unwrap_or(8 << 20);
    (total_kb << 10) / 2
}

/// Diffusion-based deep generative models: train, sample, analyse, evaluate.
#[derive(Parser)]
#[command(name = "daed", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model from a TOML config (resumable).
    Train(train::TrainArgs),
    /// Sample images from a checkpoint: PNG grid + guided-diffusion .npz (finished batches are
    /// kept in TAG.parts/ beside it: after Ctrl-C or a crash, the same command continues).
    Sample(sample::SampleArgs),
    /// Train a tiny model on the embedded Fashion-MNIST subset and sample a grid (a few minutes).
    Demo(train::DemoArgs),
    /// Analyses of where a DDGM switches from generating to denoising.
    #[command(subcommand)]
    Analyze(analyze::AnalyzeCmd),
    /// DAED helpers: the switch table.
    #[command(subcommand)]
    Daed(daed_cmd::DaedCmd),
    /// Sample quality: FID, sFID, IS, precision/recall, PRD (and `eval stats`).
    Eval(Box<eval::EvalArgs>),
    /// Time a training step, a sampling forward and the Inception features (medians, peak memory).
    Bench(Box<bench::BenchArgs>),
    /// Datasets: download, inspect.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// The paper's whole study in one command: SNR, a DDGM, reconstruction, per-step losses,
    /// DAEs, the switch sweep, transfer, a suggested beta1, and report.html (resumable).
    Reproduce(Box<reproduce::ReproduceArgs>),
    /// Check a run directory (checksums, latest, leftovers, non-finite weights, log); --repair
    /// fixes what can be fixed safely.
    Doctor(doctor::DoctorArgs),
    /// Import a PyTorch checkpoint (improved-diffusion, or the paper's analysing_ddgm) as a run.
    Import(port::ImportArgs),
    /// Export a run's network for PyTorch: safetensors with improved-diffusion's names + flags.
    Export(port::ExportArgs),
    /// Run a run's network on given inputs (x, t, y in an .npz) and write its raw output.
    Forward(port::ForwardArgs),
}

fn main() {
    ALLOC.set_cap(alloc_cache_cap());
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Train(a) => train::run(a),
        Cmd::Sample(a) => sample::run(a),
        Cmd::Demo(a) => train::demo(a),
        Cmd::Data(c) => data::run(c),
        Cmd::Eval(a) => eval::run(*a),
        Cmd::Analyze(c) => analyze::run(c),
        Cmd::Daed(c) => daed_cmd::run(c),
        Cmd::Bench(a) => bench::run(*a),
        Cmd::Doctor(a) => doctor::run(a),
        Cmd::Import(a) => port::import(a),
        Cmd::Export(a) => port::export(a),
        Cmd::Forward(a) => port::forward(a),
        Cmd::Reproduce(a) => reproduce::run(*a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

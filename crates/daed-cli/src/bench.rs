//! `daed bench`: times a training step, a sampling forward and the Inception features, and
//! writes the medians as a Markdown table and JSON (the PyTorch side is `bench/bench_torch.py`).
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use daed_core::bench::{self, BenchKind, BenchResult, Repeats};
use daed_core::config::ExperimentConfig;
use daed_core::metrics::{default_weights, INCEPTION_ENV};
use daed_core::precision::{Precision, PrecisionChoice};
use daed_io::table::Table;

/// The built-in U-Nets: name, config text and default batch size.
const PRESETS: [(&str, &str, usize); 4] = [
    ("tiny", include_str!("../../../configs/tiny.toml"), 64),
    (
        "recipe",
        include_str!("../../../configs/fashion_mnist_cpu.toml"),
        64,
    ),
    (
        "fmnist",
        include_str!("../../../configs/fashion_mnist_ddgm_simple.toml"),
        128,
    ),
    (
        "cifar10",
        include_str!("../../../configs/cifar10_ddgm_simple.toml"),
        32,
    ),
];

#[derive(Args)]
pub struct BenchArgs {
    /// Built-in U-Nets: tiny (configs/tiny.toml, batch 64), recipe (the CPU recipe,
    /// configs/fashion_mnist_cpu.toml, batch 64), fmnist (the paper's Fashion-MNIST U-Net, batch
    /// 128), cifar10 (the paper's CIFAR-10 U-Net, batch 32).
    #[arg(long, value_delimiter = ',', default_value = "tiny,fmnist,cifar10")]
    models: Vec<String>,
    /// Also (or instead, with --models '') benchmark these DDGM configs.
    #[arg(long)]
    config: Vec<PathBuf>,
    /// What to time: train (forward, backward, AdamW, EMA), sample (one forward, no
    /// gradients), inception (FID Inception-v3 features).
    #[arg(long, value_delimiter = ',', default_value = "train,sample,inception")]
    cases: Vec<String>,
    /// Batch size for every U-Net (default: the preset's, or the config's).
    #[arg(long)]
    batch: Option<usize>,
    /// Gradient-accumulation chunk of the training step (0: the whole batch at once;
    /// default: the config's `train.micro_batch`).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Batch of the Inception forward.
    #[arg(long, default_value_t = 50)]
    inception_batch: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Device (flex, cuda[:N], torch, auto).
    #[arg(long, default_value = "flex")]
    device: String,
    /// Arithmetic of the U-Net cases: f32 or bf16 (CPUs with AVX512-BF16; rows named
    /// NAME-bf16); default: f32 for the presets, a config's own train/sample.precision. The
    /// Inception stays f32.
    #[arg(long)]
    precision: Option<PrecisionChoice>,
    /// Inception weights (default: $DAED_INCEPTION or shared/data/inception).
    #[arg(long)]
    inception: Option<PathBuf>,
    /// Write bench.json and bench.md here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_kind(s: &str) -> Result<BenchKind> {
    Ok(match s.trim() {
        "train" => BenchKind::Train,
        "sample" => BenchKind::Sample,
        "inception" => BenchKind::Inception,
        o => bail!("--cases: unknown case `{o}` (train, sample, inception)"),
    })
}

/// The U-Nets to time: (name, config, batch).
fn unets(a: &BenchArgs) -> Result<Vec<(String, ExperimentConfig, usize)>> {
    let mut v = Vec::new();
    for m in a.models.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        let (name, text, batch) = PRESETS.iter().find(|(n, _, _)| *n == m).with_context(|| {
            format!("--models: unknown model `{m}` (tiny, recipe, fmnist, cifar10)")
        })?;
        let cfg = ExperimentConfig::from_toml(text, &format!("built-in preset {name}"))?;
        v.push((name.to_string(), cfg, a.batch.unwrap_or(*batch)));
    }
    for p in &a.config {
        let cfg = ExperimentConfig::load(p)?;
        let b = a.batch.unwrap_or(cfg.train.batch_size);
        v.push((cfg.name.clone(), cfg, b));
    }
    let device = daed_core::device::resolve(&a.device)?;
    for (name, cfg, _) in v.iter_mut() {
        cfg.device = a.device.clone();
        if let Some(p) = a.precision {
            cfg.train.precision = p;
            cfg.sample.precision = p;
        }
        if cfg.train.precision.resolve("--precision", &device)? == Precision::Bf16 {
            name.push_str("-bf16");
        }
        if let Some(m) = a.micro_batch {
            cfg.train.micro_batch = m;
        }
    }
    Ok(v)
}

pub fn run(a: BenchArgs) -> Result<()> {
    let kinds = a
        .cases
        .iter()
        .map(|s| parse_kind(s))
        .collect::<Result<Vec<_>>>()?;
    let reps = Repeats {
        warmup: a.warmup,
        runs: a.runs,
    };
    if reps.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let nets = unets(&a)?;
    eprintln!(
        "daed bench: device {}, {} warm-up + {} timed runs per case, {} rayon threads",
        a.device,
        reps.warmup,
        reps.runs,
        rayon_threads()
    );
    let mut results: Vec<BenchResult> = Vec::new();
    for (name, cfg, batch) in &nets {
        for k in &kinds {
            // Each case starts from an empty allocator cache, so its peak memory is its own.
            crate::ALLOC.release();
            let r = match k {
                BenchKind::Train => bench::train_step(name, cfg, *batch, reps),
                BenchKind::Sample => bench::sample_forward(name, cfg, *batch, reps),
                BenchKind::Inception => continue,
            }
            .with_context(|| format!("bench {name} {k:?}"))?;
            report(&r);
            results.push(r);
        }
    }
    if kinds.contains(&BenchKind::Inception) {
        let weights = a.inception.clone().or_else(default_weights).with_context(|| {
            format!("no Inception weights: pass --inception PATH or set {INCEPTION_ENV}, or drop `inception` from --cases")
        })?;
        crate::ALLOC.release();
        let r = bench::inception(&weights, &a.device, a.inception_batch, reps)?;
        report(&r);
        results.push(r);
    }
    write_results(&results, a.out.as_deref())
}

/// One line per case on stderr while the benchmark runs.
fn report(r: &BenchResult) {
    eprintln!(
        "  {:<10} {:<9} batch {:>3}: median {:.3} s ({:.1} images/s), peak {:.0} MiB, cores busy {:.2}",
        r.model,
        format!("{:?}", r.kind).to_lowercase(),
        r.batch,
        r.median_s,
        r.images_per_s,
        r.peak_rss_mib.unwrap_or(f64::NAN),
        r.cores_busy.unwrap_or(f64::NAN)
    );
}

/// Prints the table and, with `--out`, writes `bench.json` and `bench.md`.
fn write_results(results: &[BenchResult], out: Option<&std::path::Path>) -> Result<()> {
    let table = results_table(results);
    println!("{}", table.to_markdown());
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating output directory {}", dir.display()))?;
        daed_io::table::write_json(dir.join("bench.json"), &results)?;
        table.write_markdown(dir.join("bench.md"))?;
        eprintln!("wrote {}/bench.json and bench.md", dir.display());
    }
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into())
    })
}

fn results_table(results: &[BenchResult]) -> Table {
    let mut t = Table::new([
        "model",
        "case",
        "params",
        "batch",
        "median s",
        "images/s",
        "peak MiB",
        "cores busy",
    ]);
    for r in results {
        t.push(vec![
            r.model.clone(),
            format!("{:?}", r.kind).to_lowercase(),
            r.params
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            r.batch.to_string(),
            format!("{:.4}", r.median_s),
            format!("{:.1}", r.images_per_s),
            r.peak_rss_mib
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "-".into()),
            r.cores_busy
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

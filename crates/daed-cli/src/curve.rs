//! `daed eval curve`: the FID of a run's checkpoints against its training time.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use daed_core::metrics::curve::{CurvePlan, CurveSettings};
use daed_core::metrics::evaluate::SetSummary;

use crate::eval::{load_source, Common, Extractor};
use crate::progress::Stages;

#[derive(Args)]
pub struct CurveArgs {
    /// The run directory (its checkpoints/ and log.jsonl).
    #[arg(long)]
    run: PathBuf,
    /// Reference: a dataset name (with --split), .npz images or statistics, or a folder.
    #[arg(long)]
    reference: String,
    /// Checkpoint steps, comma-separated (default: every complete checkpoint).
    #[arg(long, value_delimiter = ',')]
    checkpoints: Vec<u64>,
    #[command(flatten)]
    flags: crate::sample::SamplingFlags,
    /// Images per sampling forward pass.
    #[arg(long, default_value_t = 64)]
    sample_batch: usize,
    /// Training hours past the last checkpoint, comma-separated, at which to extrapolate the
    /// FID (labelled so; the CSV gets rows with `-` for step and loss) with a
    /// power law fitted to log FID against log hours over the points at half the last point's
    /// training time or more; needs two such points.
    #[arg(long, value_delimiter = ',')]
    extrapolate_to: Vec<f64>,
    /// Output directory (default: RUN/quality); the curve is TAG.{md,csv,json,png} there (TAG the
    /// samples' file name stem), and a curve already there gains the new checkpoints.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

pub fn run(a: CurveArgs) -> Result<()> {
    let n = a.common.n.context(
        "--n is required: the images sampled at each checkpoint (and the first N of the reference)",
    )?;
    let settings = CurveSettings {
        n,
        sampling: a.flags.options()?,
        batch_size: a.sample_batch,
        ema: !a.flags.no_ema,
        steps: a.checkpoints.clone(),
        device: a.common.device.clone(),
        extrapolate_to: a.extrapolate_to.clone(),
    };
    let out = a.out.clone().unwrap_or_else(|| a.run.join("quality"));
    let plan = CurvePlan::new(&a.run, settings, &reference_label(&a, n), &out)?;
    for ck in &plan.checkpoints {
        daed_core::memory::check_sampling(&ck.config, ck.state.image_shape, n, a.sample_batch)?;
    }
    daed_io::atomic::check_writable_dir(&out)?;
    let reference = load_source(&a.reference, &a.common)?;
    let samples = SetSummary {
        n,
        stats_only: false,
    };
    daed_core::metrics::evaluate::MetricSet::parse(&["fid".to_string()])?
        .check_sets(samples, reference.summary())?;
    let ex = Extractor::new(&a.common)?;
    let (fr, _) = ex.source_features(reference, "reference")?;
    let mut features = |set: &daed_io::images::ImageSet, what: &str| {
        ex.features(set, what)
            .map(|(f, _, _)| f)
            .map_err(|e| daed_core::Error::Invalid(format!("{e:#}")))
    };
    let steps: Vec<String> = plan
        .checkpoints
        .iter()
        .map(|c| c.state.step.to_string())
        .collect();
    println!(
        "FID of {n} samples at steps {} of {}",
        steps.join(", "),
        a.run.display()
    );
    let mut bars = Stages::default();
    let curve = plan.run(&fr, &mut features, &mut bars)?;
    bars.finish();
    print!("{}", curve.table().to_markdown());
    println!("wrote {}", curve.path(&out, "{md,csv,json,png}").display());
    Ok(())
}

#[derive(Args)]
pub struct CompareArgs {
    /// A curve `daed eval curve` wrote (RUN/quality/TAG.json); give two or more. All must have
    /// the same N and reference.
    #[arg(long, required = true)]
    curve: Vec<PathBuf>,
    /// The curves' names in the legend and the table, one per --curve in the same order
    /// (default: each run directory's name).
    #[arg(long)]
    label: Vec<String>,
    /// Output path without extension: writes OUT.md, OUT.csv and OUT.png.
    #[arg(long)]
    out: PathBuf,
}

/// `daed eval compare`: the curves of several runs together.
pub fn compare(a: CompareArgs) -> Result<()> {
    let c = daed_core::metrics::compare::Comparison::load(&a.curve, &a.label)?;
    let written = c.write(&a.out)?;
    print!("{}", c.table().to_markdown());
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The reference as the curve records it: what was named and everything that changes its
/// features, so that curves against different references are never merged.
fn reference_label(a: &CurveArgs, n: usize) -> String {
    let c = &a.common;
    let split_given = std::path::Path::new(&a.reference).exists() || a.reference.contains(':');
    format!(
        "{}{}, first {n}, {} pre-processing, Inception {}",
        a.reference,
        if split_given {
            String::new()
        } else {
            format!(" ({} split)", c.split)
        },
        c.preprocess,
        c.inception
            .as_ref()
            .map_or("default".to_string(), |p| p.display().to_string())
    )
}

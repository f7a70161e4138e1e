//! `daed reproduce`: the paper's study in one command (the stages live in daed_core::study).
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use daed_core::metrics::default_weights;
use daed_core::study::{run_study, Provenance, Scale, StudyOptions, StudyPlan};

use crate::progress::Stages;

#[derive(Args)]
pub struct ReproduceArgs {
    /// The dataset studied (the plan's own when not given).
    #[arg(long)]
    dataset: Option<String>,
    /// micro (embedded data, under 2 minutes), cpu (about 1.75 hours on 2 cores), paper (a GPU).
    #[arg(long, default_value = "micro")]
    scale: String,
    /// A plan file instead of a scale (start from `--print-plan`).
    #[arg(long, conflicts_with = "scale")]
    plan: Option<PathBuf>,
    /// Study this DDGM (a daed run or checkpoint) instead of training one.
    #[arg(long)]
    ddgm: Option<PathBuf>,
    /// The study folder (a rerun reuses what is done there).
    #[arg(long, required_unless_present = "print_plan")]
    out: Option<PathBuf>,
    /// Device (auto, flex, cuda, ...).
    #[arg(long, default_value = "auto")]
    device: String,
    /// The FID Inception weights (default: $DAED_INCEPTION or shared/data/inception).
    #[arg(long)]
    inception: Option<PathBuf>,
    /// Print the plan as TOML and exit.
    #[arg(long)]
    print_plan: bool,
}

pub fn run(a: ReproduceArgs) -> Result<()> {
    let plan = match &a.plan {
        Some(p) => StudyPlan::load(p)?,
        None => a.scale.parse::<Scale>()?.plan()?,
    };
    let plan = match &a.dataset {
        Some(d) => plan.with_dataset(d)?,
        None => plan,
    };
    if a.print_plan {
        print!("{}", plan.to_toml());
        return Ok(());
    }
    let out = a.out.context("--out is required")?;
    let opts = StudyOptions {
        out: out.clone(),
        device: a.device,
        ddgm: a.ddgm,
        inception: a.inception.or_else(default_weights),
        provenance: Provenance {
            tool: format!("daed {}", env!("CARGO_PKG_VERSION")),
            commit: env!("DAED_COMMIT").to_string(),
        },
    };
    let mut bars = Stages::default();
    let r = run_study(&plan, &opts, &mut bars)?;
    println!(
        "{} stages, {} reused; report: {} (and {})",
        r.records.len(),
        r.reused,
        r.report[0].display(),
        r.report[1].display()
    );
    if let Some(s) = r.records.iter().find(|r| r.stage == "suggest") {
        if let Some(b) = s.summary["beta1"].as_f64() {
            println!(
                "suggested beta1 = {b}: {}",
                s.summary["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

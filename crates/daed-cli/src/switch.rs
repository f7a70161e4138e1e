//! `daed analyze switch` (Figures 4 and 5): DAEs with several beta1 on top of one DDGM, sampled
//! from the same noise, scored with FID / precision / recall against the training data.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use daed_core::analysis::switch::{run_switch, SwitchSettings};
use daed_core::metrics::{default_weights, FidInception};
use daed_core::sample::SampleOptions;
use daed_core::train::Checkpoint;

use crate::progress::Stages;

#[derive(Args)]
pub struct SwitchArgs {
    /// The trained DDGM (checkpoint or run directory).
    #[arg(long)]
    ddgm: PathBuf,
    /// The beta1 values (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    beta1: Vec<f64>,
    /// Training steps of each DAE (an existing DAE run in DIR with at least this many is reused).
    #[arg(long, default_value_t = 2000)]
    dae_steps: u64,
    /// Samples per model for the metrics.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Training images used as the reference.
    #[arg(long, default_value_t = 1000)]
    reference_n: usize,
    /// Generator sampling steps (respacing); 0 = all.
    #[arg(long, default_value_t = 100)]
    sample_steps: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Seed of the noise (the same for every beta1).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The FID Inception weights (default: $DAED_INCEPTION or shared/data/inception).
    #[arg(long)]
    inception: Option<PathBuf>,
    /// Device.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory (DAE runs go in DIR/dae_beta1_*).
    #[arg(long)]
    out: PathBuf,
    /// two-stage (a DAE on the DDGM) or joint (a whole DAED per beta1, --dae-steps each).
    #[arg(long, default_value = "two-stage")]
    mode: String,
    /// Also compute sFID.
    #[arg(long)]
    sfid: bool,
}

pub fn run(a: SwitchArgs) -> Result<()> {
    let steps = (a.sample_steps > 0).then_some(a.sample_steps);
    let settings = SwitchSettings {
        beta1: a.beta1,
        dae_steps: a.dae_steps,
        n: a.n,
        reference_n: a.reference_n,
        sampling: SampleOptions::from_flags(steps, false, 0.0, a.seed)?,
        batch_size: a.batch_size,
        device: a.device,
        out: a.out,
        mode: a.mode.parse()?,
        sfid: a.sfid,
    };
    settings.validate()?;
    let ck = Checkpoint::open(&a.ddgm)?;
    let weights = a
        .inception
        .or_else(default_weights)
        .context("no Inception weights: pass --inception FILE or set DAED_INCEPTION")?;
    let inception = FidInception::open(&weights, &daed_core::device::resolve(&settings.device)?)?;
    let mut bars = Stages::default();
    let study = run_switch(
        &ck,
        &inception,
        &weights.display().to_string(),
        &settings,
        &mut bars,
    )?;
    for r in &study.rows {
        println!(
            "{}: k = {}, log-SNR at the split {:.3}, FID {:.2}, precision {:.3}, recall {:.3}",
            r.model,
            r.k,
            r.log_snr.unwrap_or(f64::INFINITY),
            r.fid,
            r.precision,
            r.recall
        );
    }
    let paths = study.write(&settings.out)?;
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    println!("wrote {} (dashed line: the DDGM's FID)", names.join(", "));
    Ok(())
}

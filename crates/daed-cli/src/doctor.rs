//! `daed doctor RUN [--repair]`: what is wrong with a run directory, and how to repair it.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use daed_core::train::doctor::{inspect, repair, Severity};

#[derive(Args)]
pub struct DoctorArgs {
    /// The run directory (the one holding checkpoints/).
    run: PathBuf,
    /// Carry out the safe repairs (remove leftovers of killed writes, point `latest` at the
    /// newest sound checkpoint, drop log lines a resume wrote again). Checkpoints are never
    /// deleted.
    #[arg(long)]
    repair: bool,
}

pub fn run(a: DoctorArgs) -> Result<()> {
    let report = inspect(&a.run)?;
    for f in &report.findings {
        let tag = match f.severity {
            Severity::Info => "ok     ",
            Severity::Problem => "PROBLEM",
        };
        println!("{tag} {}", f.message);
    }
    if report.healthy() {
        println!("{}: healthy", a.run.display());
        return Ok(());
    }
    if !a.repair {
        bail!(
            "{}: problems found; run `daed doctor {} --repair` to fix what can be fixed safely",
            a.run.display(),
            a.run.display()
        );
    }
    for line in repair(&a.run, &report)? {
        println!("repaired: {line}");
    }
    let after = inspect(&a.run)?;
    if after.healthy() {
        println!("{}: healthy after repair", a.run.display());
        return Ok(());
    }
    bail!(
        "{}: problems remain that need you (see the PROBLEM lines above)",
        a.run.display()
    )
}

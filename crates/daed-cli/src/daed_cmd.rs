//! `daed daed`: DAED helpers (the switch table of Tables 1 and 5).
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use daed_core::daed::switch_index;
use daed_core::diffusion::schedule::alphas_cumprod;
use daed_core::diffusion::{BetaSchedule, ScheduleSpec};
use daed_io::table::Table;

#[derive(Subcommand)]
pub enum DaedCmd {
    /// For each beta1: the switch index k and the generator's step count T - k.
    SwitchTable(SwitchArgs),
    /// The beta1 to use for a DDGM: from its reconstruction curve and, when given, a sweep's FIDs.
    Suggest(SuggestArgs),
}

#[derive(Args)]
pub struct SuggestArgs {
    /// The DDGM (run or checkpoint directory).
    #[arg(long)]
    ddgm: std::path::PathBuf,
    /// Candidate beta1 values (default: Table 5's).
    #[arg(long, value_delimiter = ',', default_value = "0.001,0.025,0.1,0.2,0.3")]
    beta1: Vec<f64>,
    /// A sweep's summary.json (`daed analyze switch` or a study's sweep/) with the FIDs.
    #[arg(long)]
    sweep: Option<std::path::PathBuf>,
    /// Images of the DDGM's data for its reconstruction curve.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// (beta1, FID) of each DAED and the DDGM's FID, from a sweep's summary.json.
fn sweep_fids(path: &std::path::Path) -> Result<(Vec<(f64, f64)>, f64)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a sweep summary (a JSON list of rows)",
            path.display()
        )
    })?;
    let mut fids = Vec::new();
    let mut ddgm = None;
    for r in &rows {
        let (Some(b), Some(k), Some(f)) = (r["beta1"].as_f64(), r["k"].as_u64(), r["fid"].as_f64())
        else {
            anyhow::bail!("{}: a row lacks beta1, k or fid", path.display());
        };
        if k == 0 {
            ddgm = Some(f);
        } else {
            fids.push((b, f));
        }
    }
    let ddgm = ddgm.with_context(|| format!("{}: no DDGM row (k = 0)", path.display()))?;
    Ok((fids, ddgm))
}

fn suggest(a: SuggestArgs) -> Result<()> {
    if let Some(b) = a.beta1.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
        anyhow::bail!("--beta1 values must be in (0, 1), got {b}");
    }
    if a.n == 0 {
        anyhow::bail!("--n must be at least 1");
    }
    let fids = a.sweep.as_deref().map(sweep_fids).transpose()?;
    let device = daed_core::device::resolve(&a.device)?;
    let ck = daed_core::train::Checkpoint::open(&a.ddgm)?;
    let pb = crate::progress::bar(1, "recon");
    let s = daed_core::study::suggest::suggest_for_run(
        &ck,
        &a.beta1,
        fids.as_ref().map(|(v, g)| (v.as_slice(), *g)),
        a.n,
        a.seed,
        &device,
        &mut crate::progress::tracker(&pb),
    )?;
    pb.finish();
    match s.beta1 {
        Some(b) => println!(
            "suggested beta1 = {b} (k = {}, log-SNR {:.2}): {}",
            s.k.unwrap_or(0),
            s.log_snr.unwrap_or(f64::NAN),
            s.reason
        ),
        None => println!("no suggestion: {}", s.reason),
    }
    Ok(())
}

#[derive(Args)]
pub struct SwitchArgs {
    /// linear or cosine.
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// Number of DDGM steps T.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// First beta of the linear schedule before scaling by 1000/T (the paper's code: 1e-3).
    #[arg(long, default_value_t = 1e-4)]
    beta_start: f64,
    /// Last beta of the linear schedule before scaling.
    #[arg(long, default_value_t = 0.02)]
    beta_end: f64,
    /// The beta1 values (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.001,0.025,0.1,0.2,0.3")]
    beta1: Vec<f64>,
}

pub fn run(c: DaedCmd) -> Result<()> {
    match c {
        DaedCmd::Suggest(a) => suggest(a)?,
        DaedCmd::SwitchTable(a) => {
            let kind: BetaSchedule = a.schedule.parse()?;
            let spec = ScheduleSpec {
                kind,
                steps: a.steps,
                beta_start: a.beta_start,
                beta_end: a.beta_end,
                scale_to_steps: true,
            };
            spec.validate()?;
            let ab = alphas_cumprod(&spec.betas());
            let mut t = Table::new([
                "beta1",
                "k",
                "alpha_bar_k",
                "log(abar/(1-abar)) at k",
                "generator steps T-k",
            ]);
            for &b in &a.beta1 {
                if !(b > 0.0 && b < 1.0) {
                    anyhow::bail!("--beta1 values must be in (0, 1), got {b}");
                }
                let k = switch_index(&ab, b);
                let a_k = ab[k - 1];
                t.push([
                    format!("{b}"),
                    k.to_string(),
                    format!("{a_k:.5}"),
                    format!("{:.3}", (a_k / (1.0 - a_k)).ln()),
                    (a.steps - k).to_string(),
                ]);
            }
            println!(
                "{} schedule, T = {}, betas {}..{} scaled by 1000/T",
                kind, a.steps, a.beta_start, a.beta_end
            );
            print!("{}", t.to_markdown());
            println!("(the log-SNR at the split of a dataset adds its mean ln(power): see `daed analyze snr`)");
        }
    }
    Ok(())
}

//! `daed daed`: DAED helpers (the switch table of Tables 1 and 5).
use anyhow::Result;
use clap::{Args, Subcommand};
use daed_core::daed::switch_index;
use daed_core::diffusion::schedule::alphas_cumprod;
use daed_core::diffusion::{BetaSchedule, ScheduleSpec};
use daed_io::table::Table;

#[derive(Subcommand)]
pub enum DaedCmd {
    /// For each beta1: the switch index k and the generator's step count T - k.
    SwitchTable(SwitchArgs),
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

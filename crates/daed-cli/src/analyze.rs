//! `daed analyze`: SNR per step, reconstruction error from step t, per-step loss terms.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use daed_core::analysis::conform;
use daed_core::analysis::losses::loss_breakdown;
use daed_core::analysis::recon::{reconstruction_curves, step_grid};
use daed_core::analysis::transfer::TransferStudy;
use daed_core::analysis::NamedSets;
use daed_core::burn::tensor::Device;
use daed_core::daed::DaedNets;
use daed_core::diffusion::schedule::alphas_cumprod;
use daed_core::diffusion::GaussianDiffusion;
use daed_core::diffusion::{BetaSchedule, ScheduleSpec};
use daed_core::nn::UNet;
use daed_core::train::Checkpoint;
use daed_io::images::ImageSet;

use crate::progress::{bar, tracker, Stages};

#[derive(Subcommand)]
pub enum AnalyzeCmd {
    /// log-SNR per step over a dataset (Figures 1 and 7); no model needed.
    Snr(SnrArgs),
    /// Error of noising to step t and denoising back, MAE and MS-SSIM (Figures 2 and 3).
    Recon(ReconArgs),
    /// Per-step VLB term (bits/dim, x0 clipped as improved-diffusion evaluates), epsilon MSE and x0 MSE (Figure 14a).
    Losses(LossesArgs),
    /// The per-step VLB recorded during training (`train.dynamics_every`) over time (Figure 13).
    Dynamics {
        /// The run directory (holding dynamics.jsonl).
        run: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// DAEs with several beta1 on one DDGM: same-noise grids, FID vs log-SNR (Figures 4, 5).
    Switch(crate::switch::SwitchArgs),
    /// Denoise other datasets noised with beta1: DAE vs the DDGM's first k steps (Table 2).
    Transfer(TransferArgs),
}

#[derive(Args)]
pub struct TransferArgs {
    /// The DDGM checkpoint (or run).
    #[arg(long)]
    ddgm: PathBuf,
    /// The DAED checkpoint (or run) whose DAE is used.
    #[arg(long)]
    dae: PathBuf,
    /// Noise level; must equal the DAE's.
    #[arg(long)]
    beta1: Option<f64>,
    /// Target datasets (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    target: Vec<String>,
    /// train or test split of the targets.
    #[arg(long, default_value = "test")]
    split: String,
    /// Images per target.
    #[arg(long, default_value_t = 256)]
    n: usize,
    #[command(flatten)]
    run: RunOpts,
}

/// Options shared by the commands that run a model.
#[derive(Args)]
pub struct RunOpts {
    /// Images per forward pass.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the raw weights instead of the EMA.
    #[arg(long)]
    no_ema: bool,
    /// Device.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

impl RunOpts {
    /// Checks `n` and the batch size, resolves the device.
    fn device(&self, n: usize) -> Result<Device> {
        if n == 0 || self.batch_size == 0 {
            bail!("--n and --batch-size must be at least 1");
        }
        Ok(daed_core::device::resolve(&self.device)?)
    }
}

#[derive(Args)]
pub struct SnrArgs {
    /// Dataset name(s), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    dataset: Vec<String>,
    /// A file or directory holding the data (for a single dataset).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Schedule(s): linear, cosine (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "linear")]
    schedule: Vec<String>,
    /// Number(s) of steps T (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    steps: Vec<usize>,
    /// First beta of the linear schedule before scaling by 1000/T.
    #[arg(long, default_value_t = 1e-4)]
    beta_start: f64,
    /// Last beta of the linear schedule before scaling.
    #[arg(long, default_value_t = 0.02)]
    beta_end: f64,
    /// train or test.
    #[arg(long, default_value = "train")]
    split: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct ReconArgs {
    /// A checkpoint (or run) directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The model's dataset (its first curve).
    #[arg(long)]
    dataset: String,
    /// Other datasets to evaluate on (resized / converted to the model's images).
    #[arg(long, value_delimiter = ',')]
    eval_dataset: Vec<String>,
    /// A file or directory for --dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// train or test split of every dataset.
    #[arg(long, default_value = "test")]
    split: String,
    /// Cover the first this fraction of the steps.
    #[arg(long, default_value_t = 0.2)]
    until: f64,
    /// Number of steps on the grid.
    #[arg(long, default_value_t = 20)]
    points: usize,
    /// Images per dataset.
    #[arg(long, default_value_t = 256)]
    n: usize,
    #[command(flatten)]
    run: RunOpts,
}

#[derive(Args)]
pub struct LossesArgs {
    /// A checkpoint (or run) directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset to evaluate on.
    #[arg(long)]
    dataset: String,
    /// A file or directory holding it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// train or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[command(flatten)]
    run: RunOpts,
}

pub fn run(c: AnalyzeCmd) -> Result<()> {
    let start = Instant::now();
    match c {
        AnalyzeCmd::Snr(a) => snr(a)?,
        AnalyzeCmd::Recon(a) => recon(a)?,
        AnalyzeCmd::Losses(a) => losses(a)?,
        AnalyzeCmd::Transfer(a) => transfer(a)?,
        AnalyzeCmd::Switch(a) => crate::switch::run(a)?,
        AnalyzeCmd::Dynamics { run, out } => dynamics(&run, &out)?,
    }
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn load(name: &str, data: Option<&Path>, split: &str, limit: Option<usize>) -> Result<ImageSet> {
    daed_core::analysis::load_set(name, data, split, limit)
        .with_context(|| format!("loading {name}"))
}

fn snr(a: SnrArgs) -> Result<()> {
    if a.data.is_some() && a.dataset.len() > 1 {
        bail!("--data applies to a single --dataset; give one dataset per call or set DAED_DATA");
    }
    let mut curves = Vec::new();
    for ds in &a.dataset {
        let set = load(ds, a.data.as_deref(), &a.split, None)?;
        let powers = daed_eval::snr::image_powers(&set);
        for sch in &a.schedule {
            let kind: BetaSchedule = sch.parse()?;
            for &t in &a.steps {
                let spec = ScheduleSpec {
                    kind,
                    steps: t,
                    beta_start: a.beta_start,
                    beta_end: a.beta_end,
                    scale_to_steps: true,
                };
                spec.validate()?;
                let ab = alphas_cumprod(&spec.betas());
                let label = format!("{ds} {sch} T={t}");
                curves.push(daed_eval::snr::snr_curve(&label, &powers, &ab)?);
            }
        }
    }
    daed_eval::snr::write_snr_outputs(&a.out, &curves)?;
    for c in &curves {
        let s = c.summary();
        println!(
            "{}: {} images; log-SNR < 0 from t = {} ({}), log-SNR at 10% of T = {:.3}",
            c.label,
            c.n_images,
            s.zero_crossing_t
                .map(|t| t.to_string())
                .unwrap_or("-".into()),
            s.zero_crossing_fraction
                .map(|f| format!("{:.1}% of T", 100.0 * f))
                .unwrap_or("never".into()),
            s.log_snr_at_10pct
        );
    }
    println!("wrote {}/snr.csv, snr.png, summary.json", a.out.display());
    Ok(())
}

fn recon(a: ReconArgs) -> Result<()> {
    let device = a.run.device(a.n)?;
    let ck = Checkpoint::open(&a.checkpoint)?;
    let (net, d) = ck.load_unet(!a.run.no_ema, &device)?;
    let steps = step_grid(d.num_steps(), a.until, a.points)?;
    let mut names = vec![(a.dataset.clone(), a.data.clone())];
    names.extend(a.eval_dataset.iter().map(|n| (n.clone(), None)));
    let mut sets = Vec::new();
    for (name, path) in names {
        let set = load(&name, path.as_deref(), &a.split, Some(a.n))?;
        sets.push((name, set));
    }
    let sets = NamedSets::conformed(sets, ck.state.image_shape)?;
    for n in &sets.notes {
        println!("note: {n}");
    }
    let mut bars = Stages::default();
    let points = reconstruction_curves(
        &net,
        &d,
        &sets.sets,
        &steps,
        a.run.batch_size,
        a.run.seed,
        &device,
        &mut |name, k, total| bars.tick(&format!("recon {name}"), k, total),
    )?;
    bars.finish();
    daed_eval::recon::write_recon_outputs(&a.run.out, &points, d.num_steps())?;
    for (name, s) in daed_eval::recon::recon_summary(&points, d.num_steps()) {
        println!(
            "{name}: MAE > 0.1 first at t = {}, MS-SSIM < 0.9 first at t = {} (T = {})",
            s.first_t_mae_above_0_1
                .map(|t| t.to_string())
                .unwrap_or("never".into()),
            s.first_t_msssim_below_0_9
                .map(|t| t.to_string())
                .unwrap_or("never".into()),
            d.num_steps()
        );
    }
    println!(
        "wrote {}/recon.csv, recon.png, summary.json",
        a.run.out.display()
    );
    Ok(())
}

fn losses(a: LossesArgs) -> Result<()> {
    let device = a.run.device(a.n)?;
    let ck = Checkpoint::open(&a.checkpoint)?;
    let (net, d) = ck.load_unet(!a.run.no_ema, &device)?;
    let set = load(&a.dataset, a.data.as_deref(), &a.split, Some(a.n))?;
    let (set, note) = conform(&set, ck.state.image_shape, &a.dataset)?;
    if let Some(n) = note {
        println!("note: {n}");
    }
    let pb = bar(1, "losses");
    let br = loss_breakdown(
        &net,
        &d,
        &set,
        a.run.batch_size,
        a.run.seed,
        &device,
        &mut tracker(&pb),
    )?;
    pb.finish();
    br.write(&a.run.out, set.len(), ck.state.step)?;
    let share = br.cumulative_share();
    let one_pct = br.one_percent_steps();
    println!(
        "total {:.4} bits/dim; the first step holds {:.1}% of the VLB, the first {one_pct} step(s) (1%) {:.1}%",
        br.total_bpd(),
        100.0 * share[0],
        100.0 * share[one_pct - 1]
    );
    println!(
        "wrote {}/losses.csv, losses.png, summary.json",
        a.run.out.display()
    );
    Ok(())
}

/// The DDGM and the DAE of `transfer`, checked to fit together; with the DAE's beta1.
fn transfer_models(
    a: &TransferArgs,
    device: &Device,
) -> Result<(UNet, GaussianDiffusion, DaedNets, f64, [usize; 3])> {
    let ck_g = Checkpoint::open(&a.ddgm)?;
    let ck_d = Checkpoint::open(&a.dae)?;
    let (ddgm, d) = ck_g.load_unet(!a.run.no_ema, device)?;
    let (dae, _) = ck_d.load_model::<DaedNets>(!a.run.no_ema, device)?;
    let beta1 = ck_d.config.daed.beta1;
    if let Some(b) = a.beta1 {
        if (b - beta1).abs() > 1e-12 {
            bail!(
                "--beta1 {b} differs from the DAE's beta1 {beta1} ({})",
                ck_d.dir.display()
            );
        }
    }
    let shape = ck_g.state.image_shape;
    if ck_d.state.image_shape != shape {
        bail!(
            "the DDGM works on {:?} images, the DAE on {:?}",
            shape,
            ck_d.state.image_shape
        );
    }
    Ok((ddgm, d, dae, beta1, shape))
}

fn transfer(a: TransferArgs) -> Result<()> {
    let device = a.run.device(a.n)?;
    let (ddgm, d, dae, beta1, shape) = transfer_models(&a, &device)?;
    let mut sets = Vec::new();
    for name in &a.target {
        sets.push((name.clone(), load(name, None, &a.split, Some(a.n))?));
    }
    let sets = NamedSets::conformed(sets, shape)?;
    for n in &sets.notes {
        println!("note: {n}");
    }
    let study = TransferStudy::run(
        &ddgm,
        &d,
        &dae,
        beta1,
        &sets.sets,
        a.run.batch_size,
        a.run.seed,
        &device,
    )?;
    for r in &study.rows {
        println!(
            "{}: DDGM (k = {} steps) MAE {:.4} MS-SSIM {:.4}; DAE MAE {:.4} MS-SSIM {:.4}",
            r.target, r.k, r.ddgm.mae_mean, r.ddgm.msssim_mean, r.dae.mae_mean, r.dae.msssim_mean
        );
    }
    study.write(&a.run.out)?;
    print!("{}", study.markdown());
    println!(
        "wrote {}/transfer.csv, transfer.md, transfer.png",
        a.run.out.display()
    );
    Ok(())
}

fn dynamics(run: &Path, out: &Path) -> Result<()> {
    let records = daed_core::train::dynamics::read(run)?;
    let [csv, png] = daed_core::train::dynamics::write(out, &records)?;
    println!(
        "{} records; wrote {} and {}",
        records.len(),
        csv.display(),
        png.display()
    );
    Ok(())
}
